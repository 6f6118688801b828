//! The fuzz targets in `cargo test` (issue 7, "Fuzzing"): CI does not fuzz, it replays. Every seed
//! (`fuzz/seeds/<target>/`, real and synthetic inputs) and every regression input (`fuzz/regressions/<target>/`,
//! what a fuzz run found, kept forever and named after its bug) goes through the target's entry point in
//! `synq::fuzzing`, the very function the libFuzzer target calls (`fuzz/fuzz_targets/<target>.rs`).
//!
//! - Seeds are inputs synq reads: each must be accepted and reach what it holds (a layout, pages, listeners,
//!   symbols, a note), so that a change that breaks a parser on real input fails here, not only in a fuzz run.
//! - Regressions must return (no panic) within a deadline.
//! - The synthetic seeds are built here by the test writers (`tests/common/`) and must give exactly what was
//!   written; `SYNQ_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_replay` also writes them into `fuzz/seeds/`
//!   (the real ones come from `examples/fuzz_seeds.rs`; `fuzz/README.md` says how each was made).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::dumpwriter::{KdumpSpec, Seg, Store, flatten, write_elf, write_kdump};
use common::physwriter::{PhysImage, START_KERNEL_MAP, uts_namespace, vmcoreinfo_note};
use common::{Kernel, Sock};
use synq::fuzzing::{self, A64Header, TARGETS, Target, X86Header, encode_regions};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn target(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
        .1
}

/// Runs `f` on `data` in a thread; panics if it panics or takes longer than `limit`.
fn run_bounded(f: Target, data: Vec<u8>, limit: Duration, what: &str) -> Result<u64, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| f(&data));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => panic!("{what}: panicked"),
        Err(_) => panic!("{what}: still running after {:?}", started.elapsed()),
    }
}

#[test]
fn every_target_is_a_cargo_fuzz_target_with_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    // Its own workspace: the main crate's builds never build it.
    assert!(manifest.contains("[workspace]"), "fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            src.contains(&format!("synq::fuzzing::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs must call synq::fuzzing::{name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(seeds.len() >= 2, "fuzz/seeds/{name}: {} seeds", seeds.len());
    }
    // Nothing else under fuzz/fuzz_targets, fuzz/seeds or fuzz/regressions.
    let known = |p: &Path| {
        let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
        TARGETS.iter().any(|(n, _)| *n == stem)
    };
    for p in files(&fuzz_dir().join("fuzz_targets")) {
        assert!(known(&p), "{}: not a target of synq::fuzzing", p.display());
    }
    for sub in ["seeds", "regressions"] {
        if let Ok(rd) = std::fs::read_dir(fuzz_dir().join(sub)) {
            for e in rd {
                let p = e.unwrap().path();
                assert!(known(&p), "{}: not a target of synq::fuzzing", p.display());
            }
        }
    }
}

/// The least a seed must reach: what the target counts (layout members, pages read, entries, names, lookups,
/// listeners, notes). A seed cut from the head of a real dump opens, and reads what it still holds.
fn least(target: &str, seed: &str) -> u64 {
    if seed.contains("-head") {
        return 0;
    }
    match target {
        "btf" => 20,
        "kallsyms" => 3,
        "vmcoreinfo" => 5,
        _ => 1,
    }
}

#[test]
fn every_seed_is_read() {
    let mut n = 0;
    for (name, f) in TARGETS {
        for path in files(&fuzz_dir().join("seeds").join(name)) {
            let what = format!("{name}: {}", path.display());
            let data = std::fs::read(&path).unwrap();
            let seed = path.file_name().unwrap().to_str().unwrap();
            match run_bounded(f, data, Duration::from_secs(120), &what) {
                Ok(got) => assert!(
                    got >= least(name, seed),
                    "{what}: reached {got}, expected at least {}",
                    least(name, seed)
                ),
                Err(e) => panic!("{what}: refused: {e}"),
            }
            n += 1;
        }
    }
    assert!(n >= 2 * TARGETS.len(), "{n} seeds");
}

#[test]
fn every_regression_returns() {
    for (name, f) in TARGETS {
        for path in files(&fuzz_dir().join("regressions").join(name)) {
            let what = format!("{name}: {}", path.display());
            let data = std::fs::read(&path).unwrap();
            // Debug build: far slower than the fuzzers' release build, so the deadline is generous; a
            // regression of a hang or of unbounded work takes far longer than this.
            let _ = run_bounded(f, data, Duration::from_secs(60), &what);
        }
    }
}

/// The trimmed BTF seeds resolve to the layout of the corpus file each was cut from (the `walk` target takes
/// its layouts from them).
#[test]
fn trimmed_btf_seeds_have_their_fixtures_layouts() {
    let mut n = 0;
    for path in files(&fuzz_dir().join("seeds/btf")) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let Some(base) = name.strip_suffix("-trimmed.btf") else {
            continue;
        };
        let fixture = common::fixture(&format!("{base}.btf.xz"));
        if !fixture.exists() {
            continue; // the test guests' BTF (debian-*): not in the corpus
        }
        let trimmed = synq::btf::parse_bytes(&std::fs::read(&path).unwrap(), &path).unwrap();
        let trimmed = synq::btf::resolve(&trimmed).unwrap();
        assert_eq!(
            trimmed.to_json(),
            common::layout_of(&format!("{base}.btf.xz")).to_json(),
            "{name}"
        );
        n += 1;
    }
    assert!(n >= 3, "{n} trimmed fixtures");
    for (i, layout) in fuzzing::walk_layouts().iter().enumerate() {
        assert!(layout.is_some(), "walk layout {i} does not resolve");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Synthetic seeds.

const RELEASE: &str = "6.99.0-synthetic";
const INIT_TOP_PGT: u64 = 0xffff_ffff_82a0_a000;
const INIT_UTS_NS: u64 = 0xffff_ffff_82c0_0000;
const OWN_NOTE: u64 = 0x3000_0000;
const DECOY_NOTE: u64 = 0x2000_0000;
const PHYS_BASE: u64 = 0x0100_0000;

fn vmcoreinfo_text(release: &str) -> String {
    format!(
        "OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={INIT_UTS_NS:x}\n\
         SYMBOL(init_top_pgt)={INIT_TOP_PGT:x}\nNUMBER(phys_base)={PHYS_BASE}\nKERNELOFFSET=0\n\
         NUMBER(pgtable_l5_enabled)=0\nOFFSET(uts_namespace.name)=0\n"
    )
}

/// A synthetic kernel with listeners in `layout`'s shape (one of the walk target's fixtures).
fn kernel(btf: &str) -> Kernel {
    let mut k = Kernel::new(btf, 16);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    k.add(3, Sock::listen("192.0.2.2", 443, 3, 0));
    k.add(3, Sock::listen("10.0.0.1", 22, 0, 1));
    if k.layout.v6_rcv_saddr.is_some() {
        let mut s = Sock::listen("2001:db8::1", 8080, 1, 1);
        s.netns = 1;
        k.add(5, s);
    }
    // A socket that is not listening, in a chain: skipped.
    let mut closed = Sock::listen("192.0.2.9", 9, 0, 0);
    closed.state = 7;
    k.add(1, closed);
    k
}

/// What a synthetic seed must reach: exactly (listeners, notes, names, entries), or at least (pages read,
/// where the count depends on how each format splits its ranges).
#[derive(Clone, Copy, Debug)]
enum Reach {
    Exactly(u64),
    AtLeast(u64),
}

type Seeds = BTreeMap<&'static str, Vec<(String, Vec<u8>, Reach)>>;

/// The seeds built here, by target.
fn synthetic() -> Seeds {
    let mut out = Seeds::new();
    let mut add = |t: &'static str, name: String, bytes: Vec<u8>, reach: Reach| {
        out.entry(t).or_default().push((name, bytes, reach));
    };
    use Reach::{AtLeast, Exactly};

    // walk: one kernel per fixture layout of the walk target (the 6.12 guest's is a real seed).
    let mut last_kernel = None;
    for (i, btf) in fuzzing::WALK_LAYOUTS.iter().enumerate().take(3) {
        let fixture = btf.replace("-trimmed.btf", ".btf.xz");
        let k = kernel(&fixture);
        let listening = k.socks.iter().filter(|s| s.state == 10).count() as u64;
        let regions = k.regions();
        let refs: Vec<(u64, &[u8])> = regions.iter().map(|(a, b)| (*a, b.as_slice())).collect();
        let mut seed = vec![i as u8];
        seed.extend(encode_regions(&refs));
        let name = btf.trim_end_matches("-trimmed.btf");
        add(
            "walk",
            format!("synthetic-{name}"),
            seed,
            Exactly(listening),
        );
        last_kernel = Some(k);
    }

    // The synthetic kernel's physical memory (as tests/snapshots.rs builds it), with a decoy note.
    let k = last_kernel.unwrap();
    let mut mem = PhysImage::new(PHYS_BASE, INIT_TOP_PGT, 0x1000_0000);
    for (vaddr, bytes) in k.regions() {
        if vaddr >= START_KERNEL_MAP {
            mem.place_image(vaddr, &bytes);
        } else {
            mem.place(vaddr, &bytes);
        }
    }
    mem.place_image(INIT_UTS_NS, &uts_namespace(RELEASE));
    let text = vmcoreinfo_text(RELEASE);
    mem.write_phys(
        DECOY_NOTE,
        &vmcoreinfo_note(&vmcoreinfo_text("5.0.0-decoy")),
    );
    mem.write_phys(OWN_NOTE, &vmcoreinfo_note(&text));

    let runs: Vec<(u64, Vec<u8>)> = mem
        .ranges()
        .iter()
        .map(|r| (r.start, mem.bytes(r)))
        .collect();
    let refs: Vec<(u64, &[u8])> = runs.iter().map(|(a, b)| (*a, b.as_slice())).collect();
    add(
        "discover",
        "synthetic-decoy".into(),
        encode_regions(&refs),
        Exactly(2),
    );
    let header = X86Header {
        top_table: mem.top,
        phys_base: PHYS_BASE,
        sme_mask: 0,
        levels: 4,
        image_pages: 0,
        addrs: [
            INIT_UTS_NS,
            k.sock_base,
            k.sock_base + k.stride,
            k.net_base,
            k.hashinfo,
            k.ls_base,
            k.unmapped,
            0xffff_8880_0000_0000,
        ],
    };
    let mut seed = header.encode();
    seed.extend(encode_regions(&refs));
    // Six of the eight addresses are mapped (the unmapped one and the direct map's start are not), each
    // looked up twice; of the fixed addresses, the kernel image rule maps one (0xffffffff81000000).
    add(
        "x86_64_walk",
        "synthetic-4level".into(),
        seed,
        Exactly(2 * 6 + 1),
    );
    // arm64: hand-built tables (4K pages, 48 bits; 64K pages built for 52 bits running with 48), a block
    // for the kernel image at one of the target's fixed addresses and one page; each mapped address of the
    // eight is looked up twice, the fixed image address once more.
    for (name, page, built, t1sz) in [
        ("synthetic-4k-48", 4096u64, 48u8, 16u8),
        ("synthetic-64k-52on48", 65536, 52, 16),
    ] {
        let (header, regions) = a64_tables(page, built, t1sz);
        let refs: Vec<(u64, &[u8])> = regions.iter().map(|(a, b)| (*a, b.as_slice())).collect();
        let mut seed = header.encode();
        seed.extend(encode_regions(&refs));
        add("aarch64_walk", name.into(), seed, Exactly(2 * 2 + 1));
    }
    // Snapshots and an ELF vmcore of the same memory: at least the first page of each range, and for the
    // ELF vmcore init_uts_ns too, through the kernel's page tables (not _stext nor tcp_hashinfo, which
    // this note does not name).
    let ranges = mem.ranges().len().min(16) as u64;
    add(
        "lime",
        "synthetic-kernel".into(),
        mem.to_lime(),
        AtLeast(ranges),
    );
    add(
        "avml",
        "synthetic-kernel".into(),
        mem.to_avml(),
        AtLeast(ranges),
    );
    let elf = mem.to_elf(Some(&text));
    add(
        "elf",
        "synthetic-kernel".into(),
        elf.clone(),
        AtLeast(ranges + 1),
    );
    add(
        "flattened",
        "synthetic-elf-decoys".into(),
        flatten(&elf, 7, true, true),
        AtLeast(ranges + 1),
    );

    // kdump: every compression, versions 1, 3 and 6, diskdump's single bitmap, a split dump.
    let stores = [
        Store::Zlib,
        Store::Lzo,
        Store::LzoByHand,
        Store::Snappy,
        Store::Zstd,
        Store::Raw,
    ];
    let spec = |version: i32| {
        let mut s = KdumpSpec::new(version);
        s.max_mapnr = 4200;
        for r in [0..24u64, 4090..4100] {
            s.ram.extend(r);
        }
        let ram: Vec<u64> = s.ram.iter().copied().collect();
        for (i, pfn) in ram.into_iter().enumerate() {
            if i % 5 != 4 {
                s.pages.insert(pfn, stores[i % stores.len()].clone());
            }
        }
        if version >= 3 {
            s.vmcoreinfo = Some(vmcoreinfo_text(RELEASE));
        }
        s
    };
    // Pages read: at least the first four and the last of ranges 0..24 and 4090..4100 (1st bitmap).
    for version in [1, 3, 6] {
        let dump = write_kdump(&spec(version));
        add(
            "kdump",
            format!("synthetic-v{version}-mixed"),
            dump.clone(),
            AtLeast(10),
        );
        if version == 6 {
            add(
                "flattened",
                "synthetic-kdump-v6-decoys".into(),
                flatten(&dump, 11, true, true),
                AtLeast(10),
            );
        }
    }
    let mut disk = spec(1);
    disk.signature = b"DISKDUMP";
    disk.single_bitmap = true;
    disk.pages = disk.ram.iter().map(|&p| (p, Store::Raw)).collect();
    add(
        "kdump",
        "synthetic-diskdump".into(),
        write_kdump(&disk),
        AtLeast(10),
    );
    let mut split = spec(6);
    split.split = Some((8, 4095));
    add(
        "kdump",
        "synthetic-v6-split".into(),
        write_kdump(&split),
        AtLeast(5),
    );

    // An ELF vmcore without VMCOREINFO, with excluded pages (p_filesz < p_memsz).
    let segs = vec![
        Seg {
            paddr: 0,
            vaddr: 0,
            data: vec![0x11; 8192],
            memsz: 16384,
        },
        Seg {
            paddr: 0x10_0000,
            vaddr: 0xffff_8880_0010_0000,
            data: vec![0x22; 4096],
            memsz: 4096,
        },
    ];
    // Present: 0..16 KiB (4 pages, and the last again) and 1 MiB (1, and again); backed: 0..8 KiB (2, and
    // the last again) and 1 MiB (1, and again). Excluded pages read as zeros.
    add(
        "elf",
        "synthetic-excluded".into(),
        write_elf(&segs, None, false),
        Exactly(12),
    );
    add(
        "elf",
        "synthetic-xnum".into(),
        write_elf(&segs, None, true),
        Exactly(12),
    );

    // vmcoreinfo: every value format, duplicates and a malformed line; and a note area.
    let text = format!(
        "{}SYMBOL(_stext)=ffffffff81000000\nNUMBER(sme_mask)=0x0\nNUMBER(KERNEL_IMAGE_SIZE)=1073741824\n\
         LENGTH(mem_section)=2048\nSIZE(page)=64\nBUILD-ID=0123456789abcdef0123456789abcdef01234567\n\
         NUMBER(phys_base)=-272629760\nnot a key value line\nCRASHTIME=1700000000\n",
        vmcoreinfo_text(RELEASE)
    );
    add(
        "vmcoreinfo",
        "synthetic.txt".into(),
        text.clone().into_bytes(),
        Exactly(16),
    );
    let mut notes = vmcoreinfo_note("decoy");
    notes.splice(12..22, b"NOTVMCORE\0".iter().copied());
    notes.extend(vmcoreinfo_note(&text));
    // The notes parse as text too: what is read is the text's lines plus the note's.
    let lines_in_notes =
        synq::vmcoreinfo::VmcoreInfo::parse(&String::from_utf8_lossy(&notes)).len();
    add(
        "vmcoreinfo",
        "synthetic-notes".into(),
        notes,
        Exactly((lines_in_notes + 16) as u64),
    );

    // kallsyms: a kernel before 6.0's layout with absolute addresses (every lookup a linear pass).
    add(
        "kallsyms",
        "synthetic-absolute".into(),
        kallsyms_absolute(),
        Exactly(6),
    );
    // symbols_text: a System.map with what the scan must skip (a module's symbol of a wanted name, a line
    // past the length cap, garbage, CRLF) around the six names synq looks up.
    let mut map = String::from(
        "0000000000000000 A __per_cpu_start\nffffffffc0000000 b tcp_hashinfo\t[decoy]\n",
    );
    map.push_str(&format!("ffffffff81000100 t {}\n", "x".repeat(5000)));
    map.push_str("not a symbol line\nffffffff81000000 T _stext\r\n");
    for (i, name) in [
        "tcp_hashinfo",
        "__start_BTF",
        "__stop_BTF",
        "init_net",
        "init_uts_ns",
    ]
    .iter()
    .enumerate()
    {
        map.push_str(&format!("ffffffff8240{i:04x} D {name}\n"));
    }
    map.push_str("ffffffff82500000 D tcp_hashinfo\n");
    add(
        "symbols_text",
        "synthetic-system-map".into(),
        map.into_bytes(),
        Exactly(6),
    );
    out
}

/// A small kallsyms table (`kallsyms_addresses`, names of one-character tokens, no sorted names) and the
/// VMCOREINFO that locates it, as a `kallsyms` input.
fn kallsyms_absolute() -> Vec<u8> {
    let mut syms: Vec<(u8, String, u64)> = vec![
        (b'T', "_stext".into(), 0xffff_ffff_8100_0000),
        (b'T', "start_kernel".into(), 0xffff_ffff_8100_1000),
    ];
    for i in 0..300u64 {
        syms.push((
            b't',
            format!("helper_{i:03}"),
            0xffff_ffff_8110_0000 + i * 64,
        ));
    }
    syms.push((b'D', "init_net".into(), 0xffff_ffff_8240_0000));
    syms.push((b'D', "init_uts_ns".into(), 0xffff_ffff_8240_2000));
    syms.push((b'D', "tcp_hashinfo".into(), 0xffff_ffff_8260_0000));
    syms.push((b'R', "__start_BTF".into(), 0xffff_ffff_8280_0000));
    syms.push((b'R', "__stop_BTF".into(), 0xffff_ffff_8290_0000));
    // Tokens: token i is the byte i.
    let mut token_table = Vec::new();
    let mut token_index = Vec::new();
    for b in 0..=255u8 {
        token_index.extend_from_slice(&(token_table.len() as u16).to_le_bytes());
        token_table.push(if b == 0 { b'?' } else { b });
        token_table.push(0);
    }
    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, (ty, name, _)) in syms.iter().enumerate() {
        if i % 256 == 0 {
            markers.extend_from_slice(&(names.len() as u32).to_le_bytes());
        }
        names.push(name.len() as u8 + 1);
        names.push(*ty);
        names.extend_from_slice(name.as_bytes());
    }
    let addresses: Vec<u8> = syms.iter().flat_map(|s| s.2.to_le_bytes()).collect();
    let base = 0xffff_ffff_8200_0000u64;
    let align = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(8) * 8, 0);
    // The order until 6.1: addresses, num_syms, names, markers, token_table, token_index.
    let mut image = addresses.clone();
    align(&mut image);
    let num_syms_at = base + image.len() as u64;
    image.extend_from_slice(&(syms.len() as u64).to_le_bytes());
    let names_at = base + image.len() as u64;
    image.extend_from_slice(&names);
    align(&mut image);
    image.extend_from_slice(&markers);
    align(&mut image);
    let token_table_at = base + image.len() as u64;
    image.extend_from_slice(&token_table);
    align(&mut image);
    let token_index_at = base + image.len() as u64;
    image.extend_from_slice(&token_index);
    let text = format!(
        "OSRELEASE=5.99.0-synthetic\nSYMBOL(_stext)=ffffffff81000000\nSYMBOL(kallsyms_addresses)={base:x}\n\
         SYMBOL(kallsyms_num_syms)={num_syms_at:x}\nSYMBOL(kallsyms_names)={names_at:x}\n\
         SYMBOL(kallsyms_token_table)={token_table_at:x}\nSYMBOL(kallsyms_token_index)={token_index_at:x}\n"
    );
    let mut seed = (text.len() as u16).to_le_bytes().to_vec();
    seed.extend_from_slice(text.as_bytes());
    seed.extend(encode_regions(&[(base, &image)]));
    seed
}

/// arm64 tables for the `aarch64_walk` seeds: swapper_pg_dir, then one table per level down to a page at
/// 0xffff_0000_1234_5000 and a block (2 MiB for 4K, 512 MiB for 64K) holding the image address
/// 0xffff_8000_0800_0000. Descriptors: valid | table/page (0b11) or block (0b01), AF.
fn a64_tables(page: u64, built: u8, t1sz: u8) -> (A64Header, Vec<(u64, Vec<u8>)>) {
    let g = page.trailing_zeros();
    let run = 64 - u32::from(t1sz);
    let levels = (run - g).div_ceil(g - 3) as usize;
    let walk_bits = if page == 65536 { u32::from(built) } else { run };
    let shift = |i: usize| g + (g - 3) * (levels - 1 - i) as u32;
    let top = 0x4100_0000u64;
    let mut tables: Vec<(u64, Vec<u8>)> = vec![(top, vec![0; page as usize])];
    let mut next = top + page;
    let set = |tables: &mut Vec<(u64, Vec<u8>)>, table: u64, i: usize, va: u64, value: u64| {
        let bits = if i == 0 { walk_bits - shift(0) } else { g - 3 };
        let at = ((va >> shift(i)) & ((1 << bits) - 1)) as usize * 8;
        let t = &mut tables.iter_mut().find(|(a, _)| *a == table).unwrap().1;
        t[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    let page_va = 0xffff_0000_1234_5000u64 & !(page - 1);
    let page_pa = 0x4800_0000u64;
    let block_shift = shift(levels - 2);
    let image_va = 0xffff_8000_0800_0000u64;
    let block_va = image_va & !((1u64 << block_shift) - 1);
    let block_pa = 1u64 << block_shift.max(30);
    for (va, pa, leaf_level) in [
        (page_va, page_pa, levels - 1),
        (block_va, block_pa, levels - 2),
    ] {
        let mut table = top;
        for i in 0..leaf_level {
            let bits = if i == 0 { walk_bits - shift(0) } else { g - 3 };
            let at = ((va >> shift(i)) & ((1 << bits) - 1)) as usize * 8;
            let cur = &tables.iter().find(|(a, _)| *a == table).unwrap().1;
            let existing = u64::from_le_bytes(cur[at..at + 8].try_into().unwrap());
            table = if existing & 1 == 1 {
                existing & 0x0000_ffff_ffff_f000 & !(page - 1)
            } else {
                let t = next;
                next += page;
                tables.push((t, vec![0; page as usize]));
                set(&mut tables, table, i, va, t | 0b11);
                t
            };
        }
        let kind = if leaf_level == levels - 1 { 0b11 } else { 0b01 };
        set(&mut tables, table, leaf_level, va, pa | (1 << 10) | kind);
    }
    tables.push((page_pa, vec![0x5a; page as usize]));
    tables.push((block_pa + (image_va - block_va), vec![0xa5; 4096]));
    let header = A64Header {
        page_size: page as u32,
        va_bits: built,
        t1sz,
        top_table: top,
        kimage_voffset: block_va - block_pa,
        pac_mask: 0,
        addrs: [
            image_va + 0x10,
            page_va + 0x18,
            page_va + page,
            0xffff_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x1234,
            0xffff_7000_0000_0000,
            0xffff_ffff_ffff_f000,
        ],
    };
    (header, tables)
}

#[test]
fn synthetic_seeds_reach_what_they_hold() {
    let write = std::env::var_os("SYNQ_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1");
    let seeds = synthetic();
    for (t, list) in &seeds {
        for (name, bytes, reach) in list {
            let got = target(t)(bytes);
            match (*reach, &got) {
                (Reach::Exactly(n), Ok(g)) if *g == n => {}
                (Reach::AtLeast(n), Ok(g)) if *g >= n => {}
                _ => panic!("{t}: {name}: {got:?}, expected {reach:?}"),
            }
            if write {
                let dir = fuzz_dir().join("seeds").join(t);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
    let covered: Vec<&str> = seeds.keys().copied().collect();
    assert_eq!(
        covered,
        [
            "aarch64_walk",
            "avml",
            "discover",
            "elf",
            "flattened",
            "kallsyms",
            "kdump",
            "lime",
            "symbols_text",
            "vmcoreinfo",
            "walk",
            "x86_64_walk"
        ]
    );
}
