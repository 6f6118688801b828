//! Memory snapshots (LiME, AVML, raw) and dumps without VMCOREINFO, end to end: the physical memory of a
//! synthetic kernel (its listening table laid out with a real kernel's BTF, its own page tables, its
//! `init_uts_ns`, its VMCOREINFO note) is written in each format by an independent writer
//! (`common/physwriter.rs`), and `synq --core` must give the same listeners as the kcore image of the same
//! kernel. Decoy notes check that the scan validates before it trusts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::single_range_in_vec_init
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::physwriter::{PhysImage, START_KERNEL_MAP, uts_namespace, vmcoreinfo_note};
use common::*;

const BTF: &str = "cilium-ebpf-7.1-x86_64.btf.xz";
const RELEASE: &str = "6.99.0-synthetic";
const INIT_TOP_PGT: u64 = 0xffff_ffff_82a0_a000;
const INIT_UTS_NS: u64 = 0xffff_ffff_82c0_0000;
/// Where the kernel's own note sits: page-aligned, as `alloc_pages_exact` gives it.
const OWN_NOTE: u64 = 0x3000_0000;
const PHYS_BASE: u64 = 0x0100_0000;

fn vmcoreinfo(release: &str, top: u64) -> String {
    format!(
        "OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={INIT_UTS_NS:x}\n\
         SYMBOL(init_top_pgt)={top:x}\nNUMBER(phys_base)={PHYS_BASE}\nKERNELOFFSET=0\n\
         NUMBER(pgtable_l5_enabled)=0\n"
    )
}

/// A synthetic kernel with a few listeners, its kcore image and kallsyms (the reference), and its
/// physical memory with the kernel's own VMCOREINFO note.
struct World {
    dir: Scratch,
    mem: PhysImage,
    kallsyms: PathBuf,
    reference: Vec<Row>,
}

fn world(name: &str) -> World {
    let dir = scratch(name);
    let mut k = Kernel::new(BTF, 16);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    k.add(3, Sock::listen("192.0.2.2", 443, 3, 0));
    k.add(3, Sock::listen("10.0.0.1", 22, 0, 1));
    let (code, v, err) = run_json(&dir, &k, BTF);
    assert_eq!(code, 0, "{err}");
    let reference = rows(&v);
    assert_eq!(reference.len(), 3);
    let (_, kallsyms) = write_kernel(&dir, &k);

    let mut mem = PhysImage::new(PHYS_BASE, INIT_TOP_PGT, 0x1000_0000);
    for (vaddr, bytes) in k.regions() {
        if vaddr >= START_KERNEL_MAP {
            mem.place_image(vaddr, &bytes);
        } else {
            mem.place(vaddr, &bytes);
        }
    }
    mem.place_image(INIT_UTS_NS, &uts_namespace(RELEASE));
    mem.write_phys(
        OWN_NOTE,
        &vmcoreinfo_note(&vmcoreinfo(RELEASE, INIT_TOP_PGT)),
    );
    World {
        dir,
        mem,
        kallsyms,
        reference,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn synq(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
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

/// `synq --core FILE --json` (plus `extra`) with the kernel's side files; the listeners.
fn report(w: &World, file: &Path, extra: &[&str]) -> Vec<Row> {
    let btf = fixture(BTF);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--json",
        &"--core",
        &file,
        &"--kallsyms",
        &w.kallsyms,
        &"--btf",
        &btf,
    ];
    for e in extra {
        args.push(e);
    }
    let (code, out, err) = synq(&args);
    assert_eq!(code, 0, "{}: {err}", file.display());
    rows(&serde_json::from_str(&out).unwrap())
}

fn info(file: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"info", &"--json", &"--core", &file];
    for e in extra {
        args.push(e);
    }
    let (code, out, err) = synq(&args);
    (
        code,
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
        err,
    )
}

/// Every snapshot kind, and an ELF dump without a VMCOREINFO note, gives the kcore image's listeners, with the
/// kernel found by scanning at its own note.
#[test]
fn every_snapshot_kind_gives_the_kcore_report() {
    let w = world("kinds");
    let files = [
        ("lime", w.mem.to_lime(), vec![], "lime"),
        ("avml", w.mem.to_avml(), vec![], "avml (snappy)"),
        ("raw", w.mem.to_raw(), vec!["--raw"], "raw"),
        ("elf-no-note", w.mem.to_elf(None), vec![], "elf"),
    ];
    for (name, bytes, extra, format) in files {
        let f = write(&w.dir, name, &bytes);
        assert_eq!(report(&w, &f, &extra), w.reference, "{name}");
        let (code, v, err) = info(&f, &extra);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(v["format"], format, "{name}");
        assert_eq!(v["release"], RELEASE, "{name}");
        assert_eq!(
            v["vmcoreinfo_source"], "found by scanning physical memory",
            "{name}"
        );
        assert_eq!(v["vmcoreinfo_paddr"], format!("{OWN_NOTE:#x}"), "{name}");
        assert_eq!(v["vmcoreinfo_candidates"], 1, "{name}");
    }
    // An ELF dump with its note does not scan.
    let f = write(
        &w.dir,
        "elf",
        &w.mem.to_elf(Some(&vmcoreinfo(RELEASE, INIT_TOP_PGT))),
    );
    assert_eq!(report(&w, &f, &[]), w.reference);
    let (_, v, _) = info(&f, &[]);
    assert_eq!(v["vmcoreinfo_source"], "the dump's header");
}

/// Decoys before the kernel's own note: another kernel's note (its release is not the memory's), a note
/// whose page tables are not this memory's, a valid copy that is not page-aligned (kcore's buffers), and a
/// valid copy straddling a page boundary. Each is rejected or passed over with its reason, and the
/// page-aligned note that validates is chosen.
#[test]
fn decoy_notes_are_rejected_and_the_kernels_own_note_is_chosen() {
    let mut w = world("decoys");
    w.mem.write_phys(
        0x2f00_0000,
        &vmcoreinfo_note(&vmcoreinfo("5.4.0-other", INIT_TOP_PGT)),
    );
    // init_top_pgt pointing at a page of zeros: nothing is mapped there.
    w.mem.write_phys(
        0x2f10_0000,
        &vmcoreinfo_note(&vmcoreinfo(RELEASE, INIT_TOP_PGT + 0x10_0000)),
    );
    w.mem.place_image(INIT_TOP_PGT + 0x10_0000, &[0u8; 4096]);
    w.mem.write_phys(
        0x2f20_0124,
        &vmcoreinfo_note(&vmcoreinfo(RELEASE, INIT_TOP_PGT)),
    );
    w.mem.write_phys(
        0x2f30_0ff0,
        &vmcoreinfo_note(&vmcoreinfo(RELEASE, INIT_TOP_PGT)),
    );
    for (name, bytes) in [("lime", w.mem.to_lime()), ("avml", w.mem.to_avml())] {
        let f = write(&w.dir, name, &bytes);
        assert_eq!(report(&w, &f, &[]), w.reference, "{name}");
        let (code, v, err) = info(&f, &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(v["vmcoreinfo_paddr"], format!("{OWN_NOTE:#x}"), "{name}");
        assert_eq!(v["vmcoreinfo_candidates"], 5, "{name}");
        let rejected: Vec<String> = v["vmcoreinfo_rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        assert_eq!(rejected.len(), 4, "{rejected:?}");
        assert!(
            rejected[0].starts_with("0x2f000000: ") && rejected[0].contains("another kernel"),
            "{rejected:?}"
        );
        assert!(
            rejected[1].starts_with("0x2f100000: ") && rejected[1].contains("page tables"),
            "{rejected:?}"
        );
        assert!(
            rejected[2].starts_with("0x2f200124: ") && rejected[2].contains("preferred"),
            "{rejected:?}"
        );
        assert!(
            rejected[3].starts_with("0x2f300ff0: ") && rejected[3].contains("preferred"),
            "{rejected:?}"
        );
    }
}

/// A note split across a page boundary is read whole when the pages are contiguous; when the next page is
/// not in the snapshot (a page-cache copy whose pages lie apart), what is left cannot validate.
#[test]
fn notes_across_page_boundaries() {
    let mut w = world("split");
    // Only a straddling copy: the kernel is still found (first valid, not page-aligned).
    let own = w.mem.pages.remove(&OWN_NOTE).unwrap();
    assert!(own.iter().any(|&b| b != 0));
    // The header and name end the page; the text runs on into the next.
    w.mem.write_phys(
        0x2f30_0fb0,
        &vmcoreinfo_note(&vmcoreinfo(RELEASE, INIT_TOP_PGT)),
    );
    let f = write(&w.dir, "straddle.lime", &w.mem.to_lime());
    assert_eq!(report(&w, &f, &[]), w.reference);
    let (_, v, _) = info(&f, &[]);
    assert_eq!(v["vmcoreinfo_paddr"], "0x2f300fb0");

    // The page after the note's first 80 bytes is missing: the scan finds the note, cannot validate what is
    // left of it, and says so.
    w.mem.pages.remove(&0x2f30_1000);
    let f = write(&w.dir, "torn.lime", &w.mem.to_lime());
    let (code, out, err) = synq(&[&"--core", &f]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("no kernel found"), "{err}");
    assert!(err.contains("none of the 1 VMCOREINFO notes"), "{err}");
    assert!(err.contains("0x2f300fb0"), "{err}");
    // `synq info` still lists what was found and why it was rejected (exit 1: no kernel).
    let (code, v, _) = info(&f, &[]);
    assert_eq!(code, 1);
    assert_eq!(v["vmcoreinfo"], "not found");
    assert_eq!(v["vmcoreinfo_candidates"], 1);
    let why = v["vmcoreinfo_rejected"][0].as_str().unwrap();
    assert!(why.starts_with("0x2f300fb0: "), "{why}");
    assert!(
        v["error"].as_str().unwrap().contains("no kernel found"),
        "{v}"
    );
}

/// With no VMCOREINFO anywhere, the error says what was scanned and what to do (--raw, --vmcoreinfo).
#[test]
fn snapshot_without_any_vmcoreinfo_says_what_to_do() {
    let mut w = world("none");
    w.mem.pages.remove(&OWN_NOTE);
    let f = write(&w.dir, "s.lime", &w.mem.to_lime());
    let (code, out, err) = synq(&[&"--core", &f, &"--json"]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    for needle in [
        "no kernel found",
        "the snapshot carries no VMCOREINFO",
        "none was found in its",
        "--raw",
        "--vmcoreinfo FILE",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // The same memory as an ELF dump without its note: the message names QEMU's -device vmcoreinfo.
    let f = write(&w.dir, "d.elf", &w.mem.to_elf(None));
    let (code, _, err) = synq(&[&"--core", &f]);
    assert_eq!(code, 1);
    assert!(err.contains("-device vmcoreinfo"), "{err}");
}

/// `--vmcoreinfo FILE` replaces the scan and is checked against the memory; `synq vmcoreinfo` saves it.
#[test]
fn saved_vmcoreinfo_replaces_the_scan_and_is_checked() {
    let mut w = world("given");
    w.mem.pages.remove(&OWN_NOTE);
    let f = write(&w.dir, "s.lime", &w.mem.to_lime());
    // Saved on the "host": the kcore image's note, printed by `synq vmcoreinfo`.
    let text = vmcoreinfo(RELEASE, INIT_TOP_PGT);
    let core = w.dir.join("kcore-with-note");
    write_core(&core, &[(0xffff_8880_0000_0000, vec![0u8; 64])], &text);
    let (code, saved, err) = synq(&[&"vmcoreinfo", &"--kcore", &core]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(saved, text);
    let saved_file = write(&w.dir, "host.vmcoreinfo", saved.as_bytes());

    assert_eq!(
        report(&w, &f, &["--vmcoreinfo", saved_file.to_str().unwrap()]),
        w.reference
    );
    let (_, v, _) = info(&f, &["--vmcoreinfo", saved_file.to_str().unwrap()]);
    assert_eq!(
        v["vmcoreinfo_source"],
        format!("{} (checked)", saved_file.display())
    );
    // Another boot's VMCOREINFO (its page tables elsewhere) is refused, not trusted.
    let other = write(
        &w.dir,
        "other.vmcoreinfo",
        vmcoreinfo(RELEASE, INIT_TOP_PGT + 0x20_0000).as_bytes(),
    );
    let (code, _, err) = synq(&[&"--core", &f, &"--vmcoreinfo", &other]);
    assert_eq!(code, 1);
    assert!(err.contains("does not describe the memory of"), "{err}");
    // A FIFO is refused at once, never waited on.
    let fifo = w.dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, _, err) = synq(&[&"--core", &f, &"--vmcoreinfo", &fifo]);
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
}

/// A file with no magic is refused, and the message says it may be a raw image; `--raw` reads it so.
#[test]
fn raw_images_are_read_only_when_asked() {
    let w = world("raw");
    let f = write(&w.dir, "mem.raw", &w.mem.to_raw());
    let (code, _, err) = synq(&[&"--core", &f]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a dump or snapshot this tool recognises"),
        "{err}"
    );
    assert!(err.contains("pass --raw"), "{err}");
    assert_eq!(report(&w, &f, &["--raw"]), w.reference);
    // --raw needs --core.
    let (code, _, err) = synq(&[&"--raw"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--core"), "{err}");
}

/// Reading a snapshot changes nothing in it.
#[test]
fn snapshots_are_left_unchanged() {
    let w = world("ro");
    for (name, bytes) in [("lime", w.mem.to_lime()), ("avml", w.mem.to_avml())] {
        let f = write(&w.dir, name, &bytes);
        let before = std::fs::metadata(&f).unwrap();
        assert_eq!(report(&w, &f, &[]), w.reference);
        let after = std::fs::metadata(&f).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), bytes, "{name}");
        assert_eq!(before.len(), after.len());
        assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    }
}

/// The scan reads memory in 8 MiB pieces: a note straddling a piece boundary is found once, as are notes at
/// the very start and end of a range; a range that cannot be read is skipped page by page and counted.
#[test]
fn scan_finds_notes_across_piece_boundaries_once() {
    const MIB: u64 = 1 << 20;
    let mut mem = vec![0u8; (24 * MIB) as usize];
    let note = vmcoreinfo_note("OSRELEASE=1.2.3\nSYMBOL(init_uts_ns)=ffffffff82c00000\n");
    let at = [0, 8 * MIB - 20, 16 * MIB - 1, 24 * MIB - note.len() as u64];
    for &a in &at {
        mem[a as usize..a as usize + note.len()].copy_from_slice(&note);
    }
    let raw = synq::source::Raw::new(mem);
    let d = synq::discover::scan(&raw, &[0..24 * MIB], None, &|| {}, u64::MAX);
    let found: Vec<u64> = d.candidates.iter().map(|c| c.paddr).collect();
    assert_eq!(found, at);
    assert_eq!(d.scanned, 24 * MIB);
    assert!(d.chosen.is_none());
    assert!(
        d.candidates
            .iter()
            .all(|c| c.text.starts_with("OSRELEASE=1.2.3\n"))
    );
    // Past the end of the memory: every page fails, none is read twice, nothing is found.
    let d = synq::discover::scan(&raw, &[24 * MIB..26 * MIB], None, &|| {}, u64::MAX);
    assert_eq!(d.unreadable_pages, 512);
    assert!(d.candidates.is_empty());
}

/// The scan's work is bounded by the file, not by its headers: an ELF dump without VMCOREINFO whose PT_LOAD
/// claims 1 TiB (`p_filesz` and `p_memsz`) in a file of 80 KiB scans what the file holds (its ranges now
/// overlap: at most 64 bytes per byte of file), never the terabyte; a budget stops the scan early.
#[test]
fn scan_reads_only_what_the_file_holds() {
    let w = world("bounded");
    let mut elf = w.mem.to_elf(None);
    let len = elf.len() as u64;
    // The first program header (a PT_LOAD: no note) at offset 64: p_filesz at +32, p_memsz at +40.
    elf[64 + 32..64 + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    elf[64 + 40..64 + 48].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let f = write(&w.dir, "huge.elf", &elf);
    let (code, v, err) = info(&f, &[]);
    assert!((0..=2).contains(&code), "{err}");
    let scanned = v["scanned_bytes"].as_u64().unwrap();
    assert!(
        scanned <= 3 * len,
        "scanned {scanned} bytes of a {len}-byte file"
    );
    assert!(scanned > 0);
    // The budget itself: a scan allowed 1 MiB of 24 stops there, and says so.
    let raw = synq::source::Raw::new(vec![0u8; 24 << 20]);
    let d = synq::discover::scan(&raw, &[0..24 << 20], None, &|| {}, 1 << 20);
    assert_eq!(d.scanned, 1 << 20);
    assert!(d.budget_spent);
}
