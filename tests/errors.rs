//! Every failure a user can hit has its own message that says what to do, and exit status 1.
//! (Lockdown and a live kptr_restrict are checked inside real guests by tests/realkernel.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::*;

const BTF: &str = "cilium-ebpf-7.1-x86_64.btf.xz";

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synq"));
    for a in args {
        c.arg(a);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kernel(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut k = Kernel::new(BTF, 8);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    write_kernel(dir, &k)
}

#[test]
fn missing_kcore_names_config_proc_kcore() {
    let (code, out, err) = run(&[&"--kcore", &"/nonexistent/kcore"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("/nonexistent/kcore: no such file"), "{err}");
    assert!(err.contains("CONFIG_PROC_KCORE"), "{err}");
}

#[test]
fn unreadable_kcore_as_non_root_says_not_root() {
    // /proc/kcore is 0400 root: a non-root reader gets EACCES. Reproduce with a mode-000 file, dropping to
    // nobody when the test itself runs as root (root reads mode-000 files).
    let dir = scratch("notroot");
    let core = dir.join("kcore");
    std::fs::write(&core, b"\x7fELF").unwrap();
    std::fs::set_permissions(&core, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_synq"));
    c.arg("--kcore").arg(&core);
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied — not root"), "{err}");
    assert!(err.contains("CAP_SYS_RAWIO"), "{err}");
}

#[test]
fn zeroed_kallsyms_says_kptr_restrict() {
    let dir = scratch("kptr");
    let (core, _) = kernel(&dir);
    let ks = dir.join("kallsyms-zero");
    std::fs::write(
        &ks,
        "0000000000000000 T _stext\n0000000000000000 D tcp_hashinfo\n",
    )
    .unwrap();
    let (code, _, err) = run(&[
        &"--kcore",
        &core,
        &"--kallsyms",
        &ks,
        &"--btf",
        &fixture(BTF),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("kptr_restrict hides kallsyms addresses"),
        "{err}"
    );
}

#[test]
fn kallsyms_without_tcp_hashinfo_points_to_system_map() {
    let dir = scratch("nohashinfo");
    let (core, _) = kernel(&dir);
    let ks = dir.join("kallsyms-small");
    std::fs::write(
        &ks,
        "ffffffff81000000 T _stext\nffffffff81000010 T tcp_v4_rcv\n",
    )
    .unwrap();
    let (code, _, err) = run(&[
        &"--kcore",
        &core,
        &"--kallsyms",
        &ks,
        &"--btf",
        &fixture(BTF),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("tcp_hashinfo is not in")
            && err.contains("(CONFIG_KALLSYMS_ALL is off): pass --system-map"),
        "{err}"
    );
}

#[test]
fn system_map_plus_kaslr_offset_from_kallsyms_finds_tcp_hashinfo() {
    let dir = scratch("sysmap");
    let (core, _) = kernel(&dir);
    let shift = 0x1e00_0000u64; // KASLR slide
    let link_hashinfo = HASHINFO - shift;
    let map = dir.join("System.map");
    std::fs::write(
        &map,
        format!("ffffffff81000000 T _stext\n{link_hashinfo:016x} D tcp_hashinfo\n"),
    )
    .unwrap();
    let ks = dir.join("kallsyms-nohash");
    std::fs::write(
        &ks,
        format!("{:016x} T _stext\n", 0xffff_ffff_8100_0000u64 + shift),
    )
    .unwrap();
    let (code, out, err) = run(&[
        &"--total",
        &"--kcore",
        &core,
        &"--kallsyms",
        &ks,
        &"--system-map",
        &map,
        &"--btf",
        &fixture(BTF),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "6\n");
}

#[test]
fn system_map_with_restricted_kallsyms_uses_vmcoreinfo_kerneloffset() {
    let dir = scratch("sysmap-vmci");
    let mut k = Kernel::new(BTF, 8);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    let shift = 0x2a00_0000u64;
    let core = dir.join("kcore");
    write_core(
        &core,
        &k.regions(),
        &format!("OSRELEASE=6.99.0\nKERNELOFFSET={shift:x}\n"),
    );
    let map = dir.join("System.map");
    std::fs::write(
        &map,
        format!(
            "ffffffff81000000 T _stext\n{:016x} D tcp_hashinfo\n",
            HASHINFO - shift
        ),
    )
    .unwrap();
    let ks = dir.join("kallsyms-zero");
    std::fs::write(&ks, "0000000000000000 T _stext\n").unwrap();
    let (code, out, err) = run(&[
        &"--total",
        &"--kcore",
        &core,
        &"--kallsyms",
        &ks,
        &"--system-map",
        &map,
        &"--btf",
        &fixture(BTF),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "6\n");
}

#[test]
fn missing_btf_says_pass_btf() {
    let dir = scratch("nobtf");
    let (core, ks) = kernel(&dir);
    let (code, _, err) = run(&[
        &"--kcore",
        &core,
        &"--kallsyms",
        &ks,
        &"--btf",
        &"/nonexistent/vmlinux",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("CONFIG_DEBUG_INFO_BTF off?): pass --btf FILE"),
        "{err}"
    );
}

/// A valid raw BTF holding one `int` and nothing else.
fn tiny_btf() -> Vec<u8> {
    let strings = b"\0int\0";
    let mut types = Vec::new();
    types.extend_from_slice(&1u32.to_le_bytes()); // name_off "int"
    types.extend_from_slice(&(1u32 << 24).to_le_bytes()); // kind INT, vlen 0
    types.extend_from_slice(&4u32.to_le_bytes()); // size
    types.extend_from_slice(&((1u32 << 24) | 32).to_le_bytes()); // signed, 32 bits
    let mut b = Vec::new();
    b.extend_from_slice(&0xeb9fu16.to_le_bytes());
    b.push(1); // version
    b.push(0); // flags
    b.extend_from_slice(&24u32.to_le_bytes()); // hdr_len
    b.extend_from_slice(&0u32.to_le_bytes()); // type_off
    b.extend_from_slice(&(types.len() as u32).to_le_bytes());
    b.extend_from_slice(&(types.len() as u32).to_le_bytes()); // str_off
    b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    b.extend_from_slice(&types);
    b.extend_from_slice(strings);
    b
}

#[test]
fn btf_without_the_needed_structs_names_the_missing_struct() {
    let dir = scratch("tinybtf");
    let (core, ks) = kernel(&dir);
    let btf = dir.join("tiny.btf");
    std::fs::write(&btf, tiny_btf()).unwrap();
    let (code, _, err) = run(&[&"--kcore", &core, &"--kallsyms", &ks, &"--btf", &btf]);
    assert_eq!(code, 1);
    assert!(err.contains("struct tcp_sock is not in the BTF"), "{err}");
    assert!(
        err.contains("Pass --btf with the running kernel's BTF"),
        "{err}"
    );
    let (code, _, err) = run(&[&"layout", &"--btf", &btf]);
    assert_eq!(code, 1);
    assert!(err.contains("struct tcp_sock is not in the BTF"), "{err}");
}

#[test]
fn garbage_and_truncated_btf_are_errors_not_crashes() {
    let dir = scratch("badbtf");
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"this is not BTF at all").unwrap();
    let (code, _, err) = run(&[&"layout", &"--btf", &garbage]);
    assert_eq!(code, 1);
    assert!(err.contains("not raw BTF"), "{err}");

    let xz = std::fs::read(fixture(BTF)).unwrap();
    let cut = dir.join("cut.btf.xz");
    std::fs::write(&cut, &xz[..xz.len() / 2]).unwrap();
    let (code, _, err) = run(&[&"layout", &"--btf", &cut]);
    assert_eq!(code, 1);
    assert!(err.contains("xz data is corrupt"), "{err}");

    // Raw BTF cut at every 1/16th: always an error naming the truncation, never a panic or a bare i/o
    // error; the same bytes given as a file and read out of memory (xz, parsed from bytes) say the same.
    let mut raw = Vec::new();
    lzma_rs::xz_decompress(&mut &xz[..], &mut raw).unwrap();
    for i in 1..16 {
        let p = dir.join(format!("raw{i}"));
        std::fs::write(&p, &raw[..raw.len() * i / 16]).unwrap();
        let (code, out, err) = run(&[&"layout", &"--btf", &p]);
        assert_eq!(code, 1, "cut at {i}/16: {err}");
        assert!(out.is_empty(), "cut at {i}/16: {out}");
        assert!(err.starts_with("synq: "), "cut at {i}/16: {err}");
        assert!(!err.contains("panicked"), "cut at {i}/16: {err}");
        assert!(err.contains("truncated BTF"), "cut at {i}/16: {err}");
        assert!(
            !err.contains("failed to fill whole buffer"),
            "cut at {i}/16: {err}"
        );
    }
}

#[test]
fn truncated_kcore_is_an_error() {
    let dir = scratch("cutcore");
    let (core, ks) = kernel(&dir);
    let bytes = std::fs::read(&core).unwrap();
    for cut in [10usize, 64, 100] {
        let p = dir.join(format!("core{cut}"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let (code, _, err) = run(&[&"--kcore", &p, &"--kallsyms", &ks, &"--btf", &fixture(BTF)]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");
    }
}

#[test]
fn core_that_is_not_a_dump_is_refused_by_content() {
    let dir = scratch("notadump");
    let p = dir.join("vmcore");
    std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
    let (code, out, err) = run(&[&"--core", &p]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.starts_with("synq: ") && err.contains(&p.display().to_string()),
        "{err}"
    );
}

#[test]
fn core_without_vmcoreinfo_says_how_to_get_it() {
    // An ELF core whose only note is not VMCOREINFO (QEMU without -device vmcoreinfo writes such dumps).
    let dir = scratch("novmci");
    let p = dir.join("vmcore");
    write_core(&p, &[(0x1000, vec![0u8; 4096])], "");
    let bytes = std::fs::read(&p).unwrap();
    // Rename the note so no VMCOREINFO is found.
    let pos = bytes.windows(10).position(|w| w == b"VMCOREINFO").unwrap();
    let mut bytes = bytes;
    bytes[pos..pos + 10].copy_from_slice(b"NOTVMCINFO");
    // A vmcore's PT_LOAD carries a physical address (write_core leaves kcore's -1 there).
    let paddr_at = 64 + 56 + 24;
    bytes[paddr_at..paddr_at + 8].copy_from_slice(&0x1000u64.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let (code, _, err) = run(&[&"--core", &p]);
    assert_eq!(code, 1);
    assert!(
        err.contains("carries no VMCOREINFO") && err.contains("-device vmcoreinfo"),
        "{err}"
    );
}

/// An ELF vmlinux holding the raw BTF of `btf` in .BTF and the link-time symbols given.
fn write_vmlinux(path: &Path, btf: &str, syms: &[(&str, u64)]) {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };
    let xz = std::fs::read(fixture(btf)).unwrap();
    let mut raw = Vec::new();
    lzma_rs::xz_decompress(&mut &xz[..], &mut raw).unwrap();
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let sec = obj.add_section(Vec::new(), b".BTF".to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(sec, &raw, 4);
    for (name, value) in syms {
        obj.add_symbol(Symbol {
            name: name.as_bytes().to_vec(),
            value: *value,
            size: 0,
            kind: SymbolKind::Data,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Absolute,
            flags: SymbolFlags::None,
        });
    }
    std::fs::write(path, obj.write().unwrap()).unwrap();
}

#[test]
fn vmlinux_gives_btf_and_link_time_symbols_shifted_by_kaslr() {
    let dir = scratch("vmlinux");
    let (core, _) = kernel(&dir);
    let shift = 0x1c00_0000u64;
    let vm = dir.join("vmlinux");
    write_vmlinux(
        &vm,
        BTF,
        &[
            ("_stext", 0xffff_ffff_8100_0000),
            ("tcp_hashinfo", HASHINFO - shift),
        ],
    );
    // The layout alone, from the .BTF section.
    let (code, out, err) = run(&[&"layout", &"--json", &"--vmlinux", &vm]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"table\":\"lhash2\""), "{out}");
    // The KASLR offset from VMCOREINFO's KERNELOFFSET; no --btf: the BTF comes from the vmlinux too.
    let core2 = dir.join("kcore-ko");
    let mut k = Kernel::new(BTF, 8);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    write_core(
        &core2,
        &k.regions(),
        &format!("OSRELEASE=6.99.0\nKERNELOFFSET={shift:x}\n"),
    );
    let (code, out, err) = run(&[
        &"--total",
        &"--kcore",
        &core2,
        &"--vmlinux",
        &vm,
        &"--kallsyms",
        &"/nonexistent",
    ]);
    // --kallsyms given: it is the symbol source, and it is missing.
    assert_eq!(code, 1, "{out} {err}");
    let (code, out, err) = run(&[&"--total", &"--kcore", &core2, &"--vmlinux", &vm]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "6\n");
    let _ = core;
}

#[test]
fn vmlinux_without_btf_section_says_pass_btf() {
    let dir = scratch("vmlinux-nobtf");
    let vm = dir.join("vmlinux");
    use object::write::Object;
    use object::{Architecture, BinaryFormat, Endianness};
    let obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    std::fs::write(&vm, obj.write().unwrap()).unwrap();
    let (code, _, err) = run(&[&"layout", &"--vmlinux", &vm]);
    assert_eq!(code, 1);
    assert!(
        err.contains("has no .BTF section") && err.contains("pass --btf"),
        "{err}"
    );
}

/// Nested PT_LOADs, as arm64's /proc/kcore has them (the kernel image's segment inside the vmalloc one): an
/// address above the inner segment is read from the outer one, an address inside the inner one from it.
#[test]
fn nested_kcore_segments_serve_addresses_above_the_inner_one() {
    use synq::memory::Memory;
    let dir = scratch("nested-kcore");
    let p = dir.join("kcore");
    let outer_base = 0xffff_8000_8000_0000u64;
    let outer: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let inner_base = outer_base + 0x2000;
    let inner = vec![0xeeu8; 4096];
    write_core(&p, &[(outer_base, outer.clone()), (inner_base, inner)], "");
    let k = synq::source::kcore::Kcore::open(&p).unwrap();
    let mut b = [0u8; 8];
    k.read(outer_base + 0x8000, &mut b).unwrap();
    assert_eq!(&b[..], &outer[0x8000..0x8008]);
    k.read(inner_base + 16, &mut b).unwrap();
    assert_eq!(b, [0xee; 8]);
    k.read(outer_base + 0x10, &mut b).unwrap();
    assert_eq!(&b[..], &outer[0x10..0x18]);
    assert!(k.read(outer_base + 64 * 1024, &mut b).is_err());
}
