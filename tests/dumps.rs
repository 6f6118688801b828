//! The dump readers (`synq::source`) against synthetic dumps written by an independent writer
//! (`common/dumpwriter.rs`), compared with an
//! oracle derived from what was written: exact results for intact files (the right bytes, zeros for excluded
//! pages, `NotInDump` with the exact address for absent ones), and for truncated or garbled files: never a
//! panic or a hang, and never a wrong byte from a truncated file.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use test_case::test_case;

mod common;

use common::dumpwriter::{
    KdumpSpec, Rng, Seg, Store, flatten, page_content, write_elf, write_kdump,
};
use synq::arch::Machine;
use synq::memory::{MAX_READ, PhysMemory, ReadError};
use synq::source::{DumpError, FormatKind, Image, open};

const VMCOREINFO: &str = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff8ea0a000\n\
                          NUMBER(phys_base)=-2147483648\nKERNELOFFSET=d000000\n";

/// A scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synq-dump-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Data(Vec<u8>),
    Zero,
    Absent,
}

/// What each probed page must read as.
type Oracle = BTreeMap<u64, Expect>;

fn expect_bytes(e: &Expect, page: usize) -> Option<Vec<u8>> {
    match e {
        Expect::Data(d) => Some(d.clone()),
        Expect::Zero => Some(vec![0; page]),
        Expect::Absent => None,
    }
}

/// Intact dump: every probed page, and every read straddling two probed neighbours, reads exactly as the
/// oracle says; absent pages fail with `NotInDump` naming the first absent byte.
fn check_exact(dump: &Image, page: u64, oracle: &Oracle) {
    let ps = page as usize;
    for (&pfn, exp) in oracle {
        let paddr = pfn * page;
        let mut buf = vec![0xccu8; ps];
        let r = dump.read_phys(paddr, &mut buf);
        match expect_bytes(exp, ps) {
            Some(want) => {
                assert_eq!(r, Ok(()), "pfn {pfn:#x}");
                assert!(buf == want, "pfn {pfn:#x}: wrong bytes");
            }
            None => assert_eq!(r, Err(ReadError::NotInDump { paddr }), "pfn {pfn:#x}"),
        }
        // A small read in the middle of the page.
        let mut small = [0u8; 5];
        let r = dump.read_phys(paddr + 1000, &mut small);
        match expect_bytes(exp, ps) {
            Some(want) => {
                assert_eq!(r, Ok(()));
                assert_eq!(&small[..], &want[1000..1005], "pfn {pfn:#x}");
            }
            None => assert_eq!(
                r,
                Err(ReadError::NotInDump {
                    paddr: paddr + 1000
                })
            ),
        }
        // Straddling into the next pfn.
        if let Some(next) = oracle.get(&(pfn + 1)) {
            let mut buf = [0u8; 16];
            let r = dump.read_phys(paddr + page - 8, &mut buf);
            match (expect_bytes(exp, ps), expect_bytes(next, ps)) {
                (Some(a), Some(b)) => {
                    assert_eq!(r, Ok(()), "straddle {pfn:#x}");
                    assert_eq!(&buf[..8], &a[ps - 8..]);
                    assert_eq!(&buf[8..], &b[..8]);
                }
                (Some(_), None) => assert_eq!(
                    r,
                    Err(ReadError::NotInDump {
                        paddr: paddr + page
                    })
                ),
                (None, _) => assert_eq!(
                    r,
                    Err(ReadError::NotInDump {
                        paddr: paddr + page - 8
                    })
                ),
            }
        }
    }
}

/// Damaged dump: no read may return bytes other than the true ones, and absent pages never read.
fn check_never_wrong(dump: &Image, page: u64, oracle: &Oracle, context: &str) {
    let ps = page as usize;
    for (&pfn, exp) in oracle {
        let mut buf = vec![0xccu8; ps];
        if dump.read_phys(pfn * page, &mut buf).is_ok() {
            match expect_bytes(exp, ps) {
                Some(want) => assert!(buf == want, "{context}: pfn {pfn:#x} read wrong bytes"),
                None => panic!("{context}: absent pfn {pfn:#x} read Ok"),
            }
        }
    }
}

/// Garbled dump: reads may fail or return anything, but must return. Returns (reads that succeeded, reads
/// that failed).
fn read_everything(dump: &Image, page: u64, pfns: impl Iterator<Item = u64>) -> (u64, u64) {
    let mut buf = vec![0u8; page as usize];
    let (mut ok, mut failed) = (0, 0);
    for pfn in pfns {
        match dump.read_phys(pfn * page, &mut buf) {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    let _ = dump.phys_ranges();
    let _ = dump.backed_ranges();
    let _ = dump.format().to_string();
    (ok, failed)
}

/// Runs `f` on a thread and fails if it has not returned after `secs` seconds (a hang, not a speed check:
/// the work takes milliseconds).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: still running after {secs} s: a hang"))
}

// ---------------------------------------------------------------------------------------------------------
// ELF vmcores

fn elf_segments() -> Vec<Seg> {
    let pages = |pfns: std::ops::Range<u64>| -> Vec<u8> {
        pfns.flat_map(|p| page_content(p, 4096)).collect()
    };
    vec![
        // kdump /proc/vmcore style: vaddr in the direct map.
        Seg {
            paddr: 0x1000,
            vaddr: 0xffff_8880_0000_1000,
            data: pages(1..4),
            memsz: 0x3000,
        },
        // Adjacent to the first: reads run across the boundary.
        Seg {
            paddr: 0x4000,
            vaddr: 0xffff_8880_0000_4000,
            data: pages(4..6),
            memsz: 0x2000,
        },
        // QEMU style (vaddr 0), with excluded pages: p_filesz < p_memsz.
        Seg {
            paddr: 0x10_0000,
            vaddr: 0,
            data: pages(0x100..0x102),
            memsz: 0x5000,
        },
    ]
}

fn elf_oracle() -> Oracle {
    let mut o = Oracle::new();
    for pfn in 1..6 {
        o.insert(pfn, Expect::Data(page_content(pfn, 4096)));
    }
    o.insert(0, Expect::Absent);
    o.insert(6, Expect::Absent);
    o.insert(0x100, Expect::Data(page_content(0x100, 4096)));
    o.insert(0x101, Expect::Data(page_content(0x101, 4096)));
    for pfn in 0x102..0x105 {
        o.insert(pfn, Expect::Zero);
    }
    o.insert(0x105, Expect::Absent);
    o.insert(0xfff, Expect::Absent);
    o
}

/// PT_LOAD p_paddr is the address served (vaddr is only reported), bytes past p_filesz read as zeros, gaps
/// are NotInDump with the exact address, and VMCOREINFO comes from the note — plain and flattened alike.
#[test]
fn elf_vmcore_reads_by_paddr_with_zero_fill_and_vmcoreinfo() {
    let dir = scratch("elf");
    let plain = write_elf(&elf_segments(), Some(VMCOREINFO), false);
    let files = [
        ("plain", write(&dir, "vmcore", &plain), false),
        (
            "flat",
            write(&dir, "vmcore.flat", &flatten(&plain, 7, true, true)),
            true,
        ),
        (
            "flat-dense",
            write(&dir, "vmcore.flat2", &flatten(&plain, 8, false, false)),
            true,
        ),
    ];
    for (name, path, flat) in files {
        let dump = open(&path).unwrap();
        assert_eq!(
            dump.format().to_string(),
            if flat { "flattened elf" } else { "elf" },
            "{name}"
        );
        assert_eq!(dump.vmcoreinfo(), Some(VMCOREINFO), "{name}");
        assert_eq!(dump.page_size(), 4096);
        assert_eq!(dump.machine(), Some(Machine::X86_64));
        assert!(dump.kdump_info().is_none());
        assert_eq!(
            dump.flattened_records().map(|(_, complete)| complete),
            flat.then_some(true)
        );
        let segs = dump.elf_segments().unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(
            (segs[0].paddr, segs[0].vaddr),
            (0x1000, 0xffff_8880_0000_1000)
        );
        assert_eq!(
            (segs[2].paddr, segs[2].vaddr, segs[2].filesz, segs[2].memsz),
            (0x10_0000, 0, 0x2000, 0x5000)
        );
        assert_eq!(
            dump.phys_ranges(),
            vec![0x1000..0x6000, 0x10_0000..0x10_5000]
        );
        assert!(dump.warnings().is_empty(), "{name}: {:?}", dump.warnings());
        check_exact(&dump, 4096, &elf_oracle());
        // A read across two adjacent segments.
        let mut buf = vec![0u8; 0x2000];
        dump.read_phys(0x3000, &mut buf).unwrap();
        assert_eq!(&buf[..0x1000], &page_content(3, 4096)[..]);
        assert_eq!(&buf[0x1000..], &page_content(4, 4096)[..]);
        // A read that starts in a segment and runs into the gap after it fails at the gap.
        let mut buf = vec![0u8; 0x2000];
        assert_eq!(
            dump.read_phys(0x5000, &mut buf),
            Err(ReadError::NotInDump { paddr: 0x6000 })
        );
        assert_eq!(
            dump.read_phys(u64::MAX - 3, &mut [0u8; 8]),
            Err(ReadError::NotInDump {
                paddr: u64::MAX - 3
            })
        );
    }
}

/// e_phnum == PN_XNUM: the count is in section header 0's sh_info (makedumpfile -E with ≥ 65535 segments).
#[test]
fn elf_pn_xnum_count_comes_from_section_header_0() {
    let dir = scratch("xnum");
    let small = write_elf(&elf_segments(), Some(VMCOREINFO), true);
    let dump = open(&write(&dir, "small", &small)).unwrap();
    assert_eq!(dump.elf_segments().unwrap().len(), 3);
    check_exact(&dump, 4096, &elf_oracle());

    // 70,000 PT_LOADs: most are excluded pages (p_filesz 0), every 1000th has data.
    let mut segs = Vec::new();
    for i in 0..70_000u64 {
        let pfn = 0x1000 + 2 * i;
        let data = if i % 1000 == 999 {
            page_content(pfn, 4096)
        } else {
            Vec::new()
        };
        segs.push(Seg {
            paddr: pfn * 4096,
            vaddr: 0,
            data,
            memsz: 4096,
        });
    }
    let big = write_elf(&segs, Some(VMCOREINFO), true);
    let dump = open(&write(&dir, "big", &big)).unwrap();
    assert_eq!(dump.elf_segments().unwrap().len(), 70_000);
    let mut o = Oracle::new();
    for i in [0u64, 1, 998, 999, 1999, 69_998, 69_999] {
        let pfn = 0x1000 + 2 * i;
        let e = if i % 1000 == 999 {
            Expect::Data(page_content(pfn, 4096))
        } else {
            Expect::Zero
        };
        o.insert(pfn, e);
        o.insert(pfn + 1, Expect::Absent);
    }
    check_exact(&dump, 4096, &o);
}

// ---------------------------------------------------------------------------------------------------------
// kdump-compressed

/// RAM in five stretches, across rank-index chunks (4096 pfns each) and up to a max_mapnr that is not a
/// multiple of 8; every third pfn excluded; every tenth dumped page stored raw (incompressible pages are).
fn standard_spec(version: i32, store: Store) -> KdumpSpec {
    let mut spec = KdumpSpec::new(version);
    spec.max_mapnr = 40_005;
    for r in [0..40u64, 200..230, 4090..4100, 8190..8200, 39_990..40_000] {
        spec.ram.extend(r);
    }
    for &pfn in &spec.ram {
        if pfn % 3 != 1 {
            let s = if pfn % 10 == 0 {
                Store::Raw
            } else {
                store.clone()
            };
            spec.pages.insert(pfn, s);
        }
    }
    if version >= 3 {
        spec.vmcoreinfo = Some(VMCOREINFO.to_string());
    }
    spec
}

fn kdump_oracle(spec: &KdumpSpec) -> Oracle {
    let bs = spec.block_size as usize;
    let in_split = |pfn: u64| spec.split.is_none_or(|(s, e)| pfn >= s && pfn < e);
    let mut o = Oracle::new();
    for &pfn in &spec.ram {
        let e = if !in_split(pfn) {
            Expect::Absent
        } else if spec.pages.contains_key(&pfn) {
            Expect::Data(page_content(pfn, bs))
        } else {
            Expect::Zero
        };
        o.insert(pfn, e);
    }
    for pfn in [
        40u64,
        199,
        230,
        4089,
        4100,
        40_000,
        40_004,
        40_005,
        40_006,
        1 << 40,
    ] {
        o.entry(pfn).or_insert(Expect::Absent);
    }
    o
}

/// Every header version × every compression, plain and flattened (records shuffled, split mid-structure,
/// decoys overwritten, zero gaps): exact reads, VMCOREINFO where the version has it, and the format named.
#[test_case(1, Store::Raw ; "v1 raw")]
#[test_case(1, Store::Zlib ; "v1 zlib")]
#[test_case(1, Store::Lzo ; "v1 lzo")]
#[test_case(1, Store::Snappy ; "v1 snappy")]
#[test_case(1, Store::Zstd ; "v1 zstd")]
#[test_case(3, Store::Raw ; "v3 raw")]
#[test_case(3, Store::Zlib ; "v3 zlib")]
#[test_case(3, Store::Lzo ; "v3 lzo")]
#[test_case(3, Store::Snappy ; "v3 snappy")]
#[test_case(3, Store::Zstd ; "v3 zstd")]
#[test_case(6, Store::Raw ; "v6 raw")]
#[test_case(6, Store::Zlib ; "v6 zlib")]
#[test_case(6, Store::Lzo ; "v6 lzo")]
#[test_case(6, Store::Snappy ; "v6 snappy")]
#[test_case(6, Store::Zstd ; "v6 zstd")]
fn kdump_reads_every_version_and_compression(version: i32, store: Store) {
    let name = format!("kdump-v{version}-{store:?}");
    let dir = scratch(&name);
    let spec = standard_spec(version, store.clone());
    let plain = write_kdump(&spec);
    let method = match store {
        Store::Raw => None,
        Store::Zlib => Some("zlib"),
        Store::Lzo | Store::LzoByHand => Some("lzo"),
        Store::Snappy => Some("snappy"),
        Store::Zstd => Some("zstd"),
    };
    let files = [
        (write(&dir, "plain", &plain), false),
        (
            write(&dir, "flat", &flatten(&plain, version as u64, true, true)),
            true,
        ),
        (
            write(&dir, "flat-dense", &flatten(&plain, 99, false, false)),
            true,
        ),
    ];
    for (path, flat) in files {
        let dump = open(&path).unwrap();
        let want = format!(
            "{}kdump{}",
            if flat { "flattened " } else { "" },
            method.map(|m| format!(" ({m})")).unwrap_or_default()
        );
        assert_eq!(dump.format().to_string(), want);
        assert_eq!(dump.page_size(), 4096);
        let info = dump.kdump_info().unwrap();
        assert_eq!(info.header_version, version);
        assert_eq!(info.max_mapnr, 40_005);
        assert_eq!(info.dumped_pages, spec.pages.len() as u64);
        assert_eq!(info.phys_base, Some(0x1_0000_0000));
        assert_eq!(info.dump_level, Some(31));
        assert_eq!(
            (info.release.as_str(), info.machine.as_str()),
            ("6.1.0-test", "x86_64")
        );
        assert_eq!(
            dump.vmcoreinfo(),
            (version >= 3).then_some(VMCOREINFO),
            "{path:?}"
        );
        assert!(dump.warnings().is_empty(), "{:?}", dump.warnings());
        assert_eq!(
            dump.phys_ranges(),
            vec![
                0..40 * 4096,
                200 * 4096..230 * 4096,
                4090 * 4096..4100 * 4096,
                8190 * 4096..8200 * 4096,
                39_990 * 4096..40_000 * 4096
            ]
        );
        check_exact(&dump, 4096, &kdump_oracle(&spec));
    }
}

/// Page flags are per page: one file may mix methods, including a hand-written LZO1X stream.
#[test]
fn kdump_mixes_compressions_page_by_page() {
    let dir = scratch("mixed");
    let mut spec = standard_spec(6, Store::Zlib);
    let methods = [
        Store::Raw,
        Store::Zlib,
        Store::Lzo,
        Store::LzoByHand,
        Store::Snappy,
        Store::Zstd,
    ];
    for (i, s) in spec.pages.values_mut().enumerate() {
        *s = methods[i % methods.len()].clone();
    }
    let plain = write_kdump(&spec);
    for path in [
        write(&dir, "plain", &plain),
        write(&dir, "flat", &flatten(&plain, 3, true, true)),
    ] {
        let dump = open(&path).unwrap();
        // The header announces all four; reading confirms them.
        assert!(
            dump.format()
                .to_string()
                .ends_with("kdump (zlib, lzo, snappy, zstd)"),
            "{}",
            dump.format()
        );
        check_exact(&dump, 4096, &kdump_oracle(&spec));
    }
}

/// The format named from pages met when the header announces none (header status 0).
#[test]
fn kdump_compressions_seen_are_reported() {
    let dir = scratch("seen");
    let spec = standard_spec(6, Store::Snappy);
    let mut file = write_kdump(&spec);
    file[424..428].copy_from_slice(&0u32.to_le_bytes());
    let dump = open(&write(&dir, "k", &file)).unwrap();
    assert_eq!(dump.format().to_string(), "kdump");
    let mut buf = [0u8; 8];
    dump.read_phys(2 * 4096, &mut buf).unwrap();
    assert_eq!(dump.format().to_string(), "kdump (snappy)");
}

/// v6: max_mapnr is the sub-header's 64-bit field, not the header's obsolete 32-bit one.
#[test]
fn kdump_v6_uses_the_64bit_max_mapnr() {
    let dir = scratch("v6mapnr");
    let mut spec = standard_spec(6, Store::Zstd);
    spec.header_max_mapnr = Some(1);
    let dump = open(&write(&dir, "k", &write_kdump(&spec))).unwrap();
    assert_eq!(dump.kdump_info().unwrap().max_mapnr, 40_005);
    check_exact(&dump, 4096, &kdump_oracle(&spec));

    // Before v6 the header's value rules: with max_mapnr 1, only pfn 0 is in the dump.
    let mut spec = standard_spec(5, Store::Zstd);
    spec.header_max_mapnr = Some(1);
    let dump = open(&write(&dir, "k5", &write_kdump(&spec))).unwrap();
    assert_eq!(dump.kdump_info().unwrap().max_mapnr, 1);
    let mut buf = [0u8; 8];
    dump.read_phys(0, &mut buf).unwrap();
    assert_eq!(
        dump.read_phys(4096 * 2, &mut buf),
        Err(ReadError::NotInDump { paddr: 8192 })
    );
}

/// v4+: with no VMCOREINFO offset in the sub-header, it is found among the ELF notes.
#[test]
fn kdump_vmcoreinfo_falls_back_to_the_elf_notes() {
    let dir = scratch("notes");
    let mut spec = standard_spec(6, Store::Zlib);
    spec.vmcoreinfo_only_in_notes = true;
    let dump = open(&write(&dir, "k", &write_kdump(&spec))).unwrap();
    assert_eq!(dump.vmcoreinfo(), Some(VMCOREINFO));
}

/// A split dump (makedumpfile --split) holds pfns start..end only, its descriptors counted from start; v6
/// takes the range from the 64-bit fields (the writer garbles the 32-bit ones), v2–v5 from the 32-bit ones.
#[test_case(6 ; "v6")]
#[test_case(5 ; "v5")]
fn kdump_split_dump_holds_only_its_range(version: i32) {
    let dir = scratch(&format!("split{version}"));
    let mut spec = standard_spec(version, Store::Lzo);
    spec.split = Some((210, 8195));
    let dump = open(&write(&dir, "k", &write_kdump(&spec))).unwrap();
    assert_eq!(dump.kdump_info().unwrap().split, Some((210, 8195)));
    assert!(dump.warnings().iter().any(|w| w.contains("split dump")));
    check_exact(&dump, 4096, &kdump_oracle(&spec));
    assert_eq!(dump.phys_ranges().first(), Some(&(210 * 4096..230 * 4096)));
}

/// The old "DISKDUMP" signature: no kdump sub-header is parsed (the writer fills it with noise).
#[test]
fn diskdump_signature_reads_without_a_kdump_subheader() {
    let dir = scratch("diskdump");
    let mut spec = standard_spec(1, Store::Zlib);
    spec.signature = b"DISKDUMP";
    let dump = open(&write(&dir, "d", &write_kdump(&spec))).unwrap();
    assert_eq!(dump.format().kind, FormatKind::Diskdump);
    assert_eq!(dump.kdump_info().unwrap().phys_base, None);
    assert_eq!(dump.vmcoreinfo(), None);
    check_exact(&dump, 4096, &kdump_oracle(&spec));
}

/// Too few bitmap blocks for two bitmaps (old diskdump): the one bitmap says both "existed" and "dumped".
#[test]
fn one_bitmap_serves_as_both() {
    let dir = scratch("onebitmap");
    let mut spec = standard_spec(1, Store::Zlib);
    spec.signature = b"DISKDUMP";
    spec.single_bitmap = true;
    let ram = spec.ram.clone();
    for pfn in ram {
        spec.pages.entry(pfn).or_insert(Store::Zlib);
    }
    let dump = open(&write(&dir, "d", &write_kdump(&spec))).unwrap();
    assert!(
        dump.warnings().iter().any(|w| w.contains("one bitmap")),
        "{:?}",
        dump.warnings()
    );
    check_exact(&dump, 4096, &kdump_oracle(&spec));
}

/// A 16 KiB block size (arm64 / ppc64 page sizes) works the same way.
#[test]
fn kdump_with_16k_blocks() {
    let dir = scratch("16k");
    let mut spec = standard_spec(6, Store::Zstd);
    spec.block_size = 16384;
    let dump = open(&write(&dir, "k", &write_kdump(&spec))).unwrap();
    assert_eq!(dump.page_size(), 16384);
    check_exact(&dump, 16384, &kdump_oracle(&spec));
}

/// The descriptor of pfn N is the rank of N in the 2nd bitmap: checked against a random bitmap over 50,000
/// pfns (13 rank-index chunks), each page carrying its own pfn.
#[test]
fn kdump_descriptor_rank_matches_a_random_bitmap() {
    let dir = scratch("rank");
    let mut rng = Rng(42);
    let mut spec = KdumpSpec::new(6);
    spec.max_mapnr = 50_000;
    for pfn in 0..50_000u64 {
        match rng.below(100) {
            0..=2 => {
                spec.ram.insert(pfn);
                spec.pages.insert(pfn, Store::Zstd);
            }
            3..=30 => {
                spec.ram.insert(pfn);
            }
            _ => {}
        }
    }
    let dump = open(&write(&dir, "k", &write_kdump(&spec))).unwrap();
    assert_eq!(
        dump.kdump_info().unwrap().dumped_pages,
        spec.pages.len() as u64
    );
    let mut oracle = kdump_oracle(&spec);
    // Probe every dumped page and a sample of the rest.
    oracle.retain(|pfn, e| matches!(e, Expect::Data(_)) || pfn % 97 == 0);
    check_exact(&dump, 4096, &oracle);
}

/// The decompressed-page cache stays bounded, and serves repeated reads of one page.
#[test]
fn kdump_page_cache_is_bounded() {
    let dir = scratch("cache");
    let mut spec = standard_spec(6, Store::Zlib);
    spec.pages.values_mut().for_each(|s| *s = Store::Zlib);
    let dump = open(&write(&dir, "k", &write_kdump(&spec))).unwrap();
    let k = dump.kdump().expect("kdump");
    let mut buf = [0u8; 8];
    for &pfn in spec.pages.keys() {
        for _ in 0..3 {
            dump.read_phys(pfn * 4096 + 16, &mut buf).unwrap();
            assert_eq!(buf, page_content(pfn, 4096)[16..24]);
        }
    }
    assert!(spec.pages.len() > 64);
    assert_eq!(k.cached_pages(), 64);
}

// ---------------------------------------------------------------------------------------------------------
// Damage

/// Overwrites the page descriptor of the `nth` dumped page (in pfn order) with `f(desc)`.
fn garble_desc(file: &mut [u8], spec: &KdumpSpec, nth: usize, f: impl Fn(&mut [u8])) {
    let bs = spec.block_size as usize;
    let sub_hdr_size = u32::from_le_bytes(file[432..436].try_into().unwrap()) as usize;
    let bitmap_blocks = u32::from_le_bytes(file[436..440].try_into().unwrap()) as usize;
    let at = (1 + sub_hdr_size + bitmap_blocks) * bs + nth * 24;
    f(&mut file[at..at + 24]);
}

/// A bad page descriptor or bad page data fails the read of that page with Corrupt, naming the pfn and the
/// descriptor's file offset; every other page still reads.
#[test]
fn garbled_page_descriptors_fail_only_their_page() {
    let dir = scratch("desc");
    let spec = standard_spec(6, Store::Zlib);
    let pfns: Vec<u64> = spec.pages.keys().copied().collect();
    type Garble = fn(&mut [u8]);
    let cases: [(&str, Garble, &str); 8] = [
        (
            "offset past the end",
            |d| d[..8].copy_from_slice(&(1i64 << 40).to_le_bytes()),
            "past the end",
        ),
        (
            "offset 0",
            |d| d[..8].copy_from_slice(&0i64.to_le_bytes()),
            "unwritten descriptor",
        ),
        (
            "negative offset",
            |d| d[..8].copy_from_slice(&(-4096i64).to_le_bytes()),
            "data offset -4096",
        ),
        (
            "size over the block",
            |d| d[8..12].copy_from_slice(&4097u32.to_le_bytes()),
            "size 0x1001",
        ),
        (
            "size 0",
            |d| d[8..12].copy_from_slice(&0u32.to_le_bytes()),
            "size 0x0",
        ),
        (
            "no method",
            |d| d[12..16].copy_from_slice(&0u32.to_le_bytes()),
            "0 compression methods",
        ),
        (
            "two methods",
            |d| d[12..16].copy_from_slice(&3u32.to_le_bytes()),
            "2 compression methods",
        ),
        (
            "wrong method",
            |d| d[12..16].copy_from_slice(&0x20u32.to_le_bytes()),
            "zstd",
        ),
    ];
    let victim = 5; // a zlib page (pfn 8)
    let pfn = pfns[victim];
    assert!(matches!(spec.pages[&pfn], Store::Zlib));
    let clean = write_kdump(&spec);
    for (name, garble, needle) in cases {
        let mut file = clean.clone();
        garble_desc(&mut file, &spec, victim, garble);
        let dump = open(&write(&dir, "k", &file)).unwrap();
        let mut buf = vec![0u8; 4096];
        match dump.read_phys(pfn * 4096, &mut buf) {
            Err(ReadError::Corrupt { paddr, msg }) => {
                assert_eq!(paddr, pfn * 4096, "{name}");
                assert!(msg.contains(&format!("pfn {pfn:#x}")), "{name}: {msg}");
                assert!(
                    msg.contains("page descriptor #5 at file offset"),
                    "{name}: {msg}"
                );
                assert!(msg.contains(needle), "{name}: {msg}");
            }
            other => panic!("{name}: {other:?}"),
        }
        let mut oracle = kdump_oracle(&spec);
        oracle.remove(&pfn);
        oracle.remove(&(pfn - 1));
        check_exact(&dump, 4096, &oracle);
    }

    // Damaged compressed bytes: zlib's checksum or structure catches them.
    let mut file = clean.clone();
    let desc_at = {
        let sub = u32::from_le_bytes(file[432..436].try_into().unwrap()) as usize;
        let bm = u32::from_le_bytes(file[436..440].try_into().unwrap()) as usize;
        (1 + sub + bm) * 4096 + victim * 24
    };
    let data_off = i64::from_le_bytes(file[desc_at..desc_at + 8].try_into().unwrap()) as usize;
    for b in &mut file[data_off + 2..data_off + 40] {
        *b ^= 0x5a;
    }
    let dump = open(&write(&dir, "k", &file)).unwrap();
    let r = dump.read_phys(pfn * 4096, &mut [0u8; 4096]);
    assert!(
        matches!(&r, Err(ReadError::Corrupt { msg, .. }) if msg.contains("zlib")),
        "{r:?}"
    );
}

/// The cut points of a file of `len` bytes: dense at the start (headers), spread over the rest.
fn cut_points(len: usize, dense: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..dense.min(len)).step_by(7).collect();
    cuts.extend((0..120).map(|i| dense + (len.saturating_sub(dense)) * i / 120));
    cuts.extend([len - 1, len]);
    cuts.retain(|&c| c <= len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// A dump cut short anywhere opens with an error, or opens and then every read returns the true bytes or an
/// error (Corrupt / NotInDump) — never a panic, a hang, or a wrong byte. Cut at the full length, it reads
/// exactly.
#[test]
fn truncated_dumps_fail_cleanly_and_never_return_wrong_bytes() {
    let dir = scratch("trunc");
    let mut mixed = standard_spec(6, Store::Zlib);
    let methods = [
        Store::Raw,
        Store::Zlib,
        Store::Lzo,
        Store::Snappy,
        Store::Zstd,
    ];
    for (i, s) in mixed.pages.values_mut().enumerate() {
        *s = methods[i % methods.len()].clone();
    }
    let elf = write_elf(&elf_segments(), Some(VMCOREINFO), false);
    let k1 = standard_spec(1, Store::Raw);
    let k3 = standard_spec(3, Store::Zlib);
    let cases: Vec<(&str, Vec<u8>, Oracle, usize)> = vec![
        ("elf", elf.clone(), elf_oracle(), 400),
        (
            "elf flattened",
            flatten(&elf, 5, false, false),
            elf_oracle(),
            4096 + 400,
        ),
        (
            "kdump v1 raw",
            write_kdump(&k1),
            kdump_oracle(&k1),
            3 * 4096,
        ),
        (
            "kdump v3 zlib",
            write_kdump(&k3),
            kdump_oracle(&k3),
            3 * 4096,
        ),
        (
            "kdump v6 mixed",
            write_kdump(&mixed),
            kdump_oracle(&mixed),
            3 * 4096,
        ),
        (
            "kdump v6 flattened",
            flatten(&write_kdump(&mixed), 6, false, false),
            kdump_oracle(&mixed),
            4096 + 600,
        ),
    ];
    for (name, file, oracle, dense) in cases {
        // Probe a sample of pages (every page at the full length).
        let sample: Oracle = oracle
            .iter()
            .step_by(4)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let (mut opened, mut failed) = (0, 0);
        for cut in cut_points(file.len(), dense) {
            let path = write(&dir, "cut", &file[..cut]);
            match open(&path) {
                Ok(dump) => {
                    opened += 1;
                    if cut == file.len() {
                        check_exact(&dump, 4096, &oracle);
                    } else {
                        assert!(
                            !dump.warnings().is_empty(),
                            "{name}: cut at {cut} opens without a warning"
                        );
                        check_never_wrong(&dump, 4096, &sample, &format!("{name} cut at {cut}"));
                    }
                }
                Err(e) => {
                    failed += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(
            opened > 10 && failed > 10,
            "{name}: {opened} opened, {failed} refused"
        );
    }
}

/// Garbled headers, sub-headers, bitmaps, page descriptors and flattened record headers — every byte
/// flipped in turn — give errors or odd data, never a panic or a hang.
#[test]
fn garbled_dumps_never_panic_or_hang() {
    let dir = scratch("garble");
    let spec = standard_spec(6, Store::Zstd);
    let kd = write_kdump(&spec);
    let elf = write_elf(&elf_segments(), Some(VMCOREINFO), false);
    let flat = flatten(&kd, 11, false, false);
    let descs = {
        let sub = u32::from_le_bytes(kd[432..436].try_into().unwrap()) as usize;
        let bm = u32::from_le_bytes(kd[436..440].try_into().unwrap()) as usize;
        (1 + sub + bm) * 4096
    };
    let probes: Vec<u64> = kdump_oracle(&spec).keys().copied().step_by(3).collect();
    let elf_probes: Vec<u64> = elf_oracle().keys().copied().collect();
    type Region<'a> = (&'a str, &'a Vec<u8>, std::ops::Range<usize>, &'a Vec<u64>);
    let regions: Vec<Region> = vec![
        ("kdump header", &kd, 0..464, &probes),
        ("kdump sub-header", &kd, 4096..4096 + 104, &probes),
        ("kdump bitmaps", &kd, 2 * 4096..2 * 4096 + 40, &probes),
        ("kdump descriptors", &kd, descs..descs + 24 * 20, &probes),
        ("elf headers", &elf, 0..64 + 4 * 56, &elf_probes),
        ("flattened header and records", &flat, 0..64, &probes),
        ("flattened record headers", &flat, 4096..4096 + 16, &probes),
    ];
    for (name, file, range, probes) in regions {
        // Outcomes over every flip of the region: opens refused, reads that failed, reads that succeeded.
        let (mut refused, mut failed, mut ok) = (0u64, 0u64, 0u64);
        for at in range {
            for x in [0xffu8, 0x80, 0x01] {
                let mut bad = file.clone();
                bad[at] ^= x;
                let path = write(&dir, "g", &bad);
                let probes = probes.clone();
                let what = format!("{name}: byte {at:#x} ^ {x:#x}");
                let outcome = within(30, &what, move || {
                    open(&path).ok().map(|dump| {
                        read_everything(&dump, dump.page_size().min(1 << 16), probes.into_iter())
                    })
                });
                match outcome {
                    None => refused += 1,
                    Some((o, f)) => {
                        ok += o;
                        failed += f;
                    }
                }
            }
        }
        // The damage is seen (a refusal or a failed read somewhere), and intact parts still read.
        assert!(refused + failed > 0, "{name}: no flip was noticed");
        assert!(ok > 0, "{name}: nothing read at all");
    }
    // Whole-field garbage at the places a reader trusts most.
    let fields: [(usize, &[u8]); 6] = [
        (428, &0x7fff_ffffu32.to_le_bytes()),       // block_size
        (428, &4097u32.to_le_bytes()),              // not a power of two
        (432, &(-1i32).to_le_bytes()),              // sub_hdr_size
        (436, &u32::MAX.to_le_bytes()),             // bitmap_blocks
        (4096 + 96, &u64::MAX.to_le_bytes()),       // max_mapnr_64
        (4096 + 32, &(i64::MAX - 5).to_le_bytes()), // offset_vmcoreinfo
    ];
    for (at, bytes) in fields {
        let mut bad = kd.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        let path = write(&dir, "f", &bad);
        let probes = probes.clone();
        let outcome = within(30, &format!("field at {at:#x}"), move || {
            open(&path)
                .ok()
                .map(|dump| read_everything(&dump, 4096, probes.into_iter()))
        });
        // Garbage in the fields a reader trusts most is refused, or every read it affects fails.
        if let Some((_, failed)) = outcome {
            assert!(
                failed > 0,
                "garbage at {at:#x}: accepted and every read succeeded"
            );
        }
    }
}

/// Headers that are unusable are refused at open with what and where.
#[test]
fn unusable_headers_are_refused_with_what_and_where() {
    let dir = scratch("refuse");
    let kd = write_kdump(&standard_spec(6, Store::Zlib));
    let mut bad_bs = kd.clone();
    bad_bs[428..432].copy_from_slice(&3000u32.to_le_bytes());
    let e = open(&write(&dir, "bs", &bad_bs)).unwrap_err().to_string();
    assert!(
        e.contains("kdump: kdump header at offset 0x1ac: block_size 0xbb8"),
        "{e}"
    );

    let mut big_endian = kd.clone();
    big_endian[8..12].copy_from_slice(&6i32.to_be_bytes());
    let e = open(&write(&dir, "be", &big_endian))
        .unwrap_err()
        .to_string();
    assert!(e.contains("big-endian"), "{e}");

    let e = open(&write(&dir, "short", &kd[..3 * 4096]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kdump bitmaps") && e.contains("truncated"),
        "{e}"
    );

    let mut not_core = write_elf(&elf_segments(), None, false);
    not_core[16] = 2; // ET_EXEC
    let e = open(&write(&dir, "exec", &not_core))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not ET_CORE"), "{e}");
}

/// The format comes from the content: a kdump file named like an ELF file is read as kdump; unknown content,
/// tiny files, directories and FIFOs are refused (a FIFO without blocking).
#[test]
fn format_is_detected_by_content_not_name() {
    let dir = scratch("detect");
    let kd = write_kdump(&standard_spec(3, Store::Zlib));
    let dump = open(&write(&dir, "vmcore.elf", &kd)).unwrap();
    assert_eq!(dump.format().kind, FormatKind::Kdump);
    let elf = write_elf(&elf_segments(), None, false);
    let dump = open(&write(&dir, "dump.kdump", &elf)).unwrap();
    assert_eq!(dump.format().kind, FormatKind::Elf);
    assert_eq!(dump.vmcoreinfo(), None);
    assert_eq!(dump.page_size(), 4096);

    let e = open(&write(&dir, "junk", &[0x42u8; 8192])).unwrap_err();
    assert!(matches!(e, DumpError::UnknownFormat { .. }), "{e}");
    assert!(e.to_string().contains("42 42 42 42"), "{e}");
    let e = open(&write(&dir, "tiny", b"KDUMP")).unwrap_err();
    assert!(matches!(e, DumpError::TooShort { len: 5, .. }), "{e}");
    // A flattened stream around something else.
    let e = open(&write(
        &dir,
        "flatjunk",
        &flatten(&[0x42u8; 8192], 1, false, false),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("inside a flattened stream"), "{e}");
    assert!(matches!(open(&dir), Err(DumpError::NotRegular { .. })));
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(open(&fifo), Err(DumpError::NotRegular { .. })));
    let e = open(&dir.join("missing")).unwrap_err();
    assert!(matches!(e, DumpError::Open { .. }));
}

/// The dump is opened O_RDONLY and mapped without write permission; its bytes and mtime are unchanged
/// after reading every page.
#[test]
fn dump_is_opened_read_only_and_left_unchanged() {
    let dir = scratch("readonly");
    let spec = standard_spec(6, Store::Zstd);
    let plain = write_kdump(&spec);
    let cases = [
        write(&dir, "kdump", &plain),
        write(&dir, "flat", &flatten(&plain, 2, true, true)),
        write(
            &dir,
            "elf",
            &write_elf(&elf_segments(), Some(VMCOREINFO), false),
        ),
    ];
    for path in cases {
        let before = std::fs::read(&path).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        {
            let dump = open(&path).unwrap();
            read_everything(&dump, 4096, 0..300);
            read_everything(&dump, 4096, 0x100..0x110);
            let canon = std::fs::canonicalize(&path).unwrap();
            // Every descriptor of this process open on the file is read-only.
            let mut fds = 0;
            for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
                if std::fs::read_link(fd.path()).ok().as_deref() != Some(canon.as_path()) {
                    continue;
                }
                let info = std::fs::read_to_string(format!(
                    "/proc/self/fdinfo/{}",
                    fd.file_name().to_string_lossy()
                ))
                .unwrap();
                let flags = info
                    .lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .unwrap()
                    .trim();
                let flags = u32::from_str_radix(flags, 8).unwrap();
                assert_eq!(
                    flags & libc::O_ACCMODE as u32,
                    libc::O_RDONLY as u32,
                    "{path:?}"
                );
                fds += 1;
            }
            assert_eq!(fds, 1, "{path:?}");
            // And every mapping of it is without write permission.
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let lines: Vec<&str> = maps
                .lines()
                .filter(|l| l.ends_with(canon.to_str().unwrap()))
                .collect();
            assert!(!lines.is_empty(), "{path:?} is mapped");
            for l in lines {
                let perms = l.split_whitespace().nth(1).unwrap();
                assert!(perms.starts_with("r-"), "{l}");
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "{path:?}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            mtime,
            "{path:?}"
        );
    }
}

/// A flattened stream cut short keeps what it has: the records present read, the rest fail, and a warning
/// says so.
#[test]
fn truncated_flattened_stream_warns_and_reads_what_it_has() {
    let dir = scratch("flattrunc");
    let elf = write_elf(&elf_segments(), Some(VMCOREINFO), false);
    let flat = flatten(&elf, 4, false, false);
    let dump = open(&write(&dir, "f", &flat[..flat.len() - 16])).unwrap();
    assert_eq!(
        dump.flattened_records().map(|(_, complete)| complete),
        Some(false)
    );
    assert!(
        dump.warnings().iter().any(|w| w.contains("no end marker")),
        "{:?}",
        dump.warnings()
    );
    check_exact(&dump, 4096, &elf_oracle());
}

/// Oversized reads are refused before any work.
#[test]
fn oversized_reads_are_refused() {
    let dir = scratch("big");
    let dump = open(&write(&dir, "e", &write_elf(&elf_segments(), None, false))).unwrap();
    let mut buf = vec![0u8; MAX_READ + 1];
    assert_eq!(
        dump.read_phys(0x1000, &mut buf),
        Err(ReadError::TooLarge {
            addr: 0x1000,
            len: MAX_READ + 1
        })
    );
}

#[test]
fn dump_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Image>();
}

// ---------------------------------------------------------------------------------------------------------
// What reaches the user

fn synq(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_synq"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Damage found while opening is never dropped: a PT_LOAD that runs past the end of the file is a warning
/// in `synq info --json` and in `synq layout` (exit 2), whereas the intact file gives none (exit 0).
#[test]
fn truncated_dump_warning_reaches_the_output_and_exit_status() {
    let dir = scratch("warn");
    // phys_base 0: the top table is inside the image mapping, so the target opens (nothing is read yet).
    let info = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff8ea0a000\n\
                NUMBER(phys_base)=0\nKERNELOFFSET=d000000\n";
    let whole = write_elf(&elf_segments(), Some(info), false);
    let intact = write(&dir, "intact", &whole);
    let cut = write(&dir, "cut", &whole[..whole.len() - 100]);

    let (code, out, err) = synq(&[
        "info".as_ref(),
        "--json".as_ref(),
        "--core".as_ref(),
        intact.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["warnings"], serde_json::json!([]), "{out}");
    assert_eq!(v["release"], "6.1.0-test");

    let (code, out, err) = synq(&[
        "info".as_ref(),
        "--json".as_ref(),
        "--core".as_ref(),
        cut.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let w = v["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("runs past the end of the file")),
        "{out}"
    );

    // Without a BTF in the (tiny) dump, layout fails; with --btf it succeeds, and still reports the damage.
    let btf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cilium-ebpf-7.1-x86_64.btf.xz");
    let (code, _, err) = synq(&[
        "layout".as_ref(),
        "--core".as_ref(),
        cut.as_os_str(),
        "--btf".as_ref(),
        btf.as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("warning: ") && err.contains("runs past the end of the file"),
        "{err}"
    );
}

/// `synq layout --core` opens the dump (a missing one is an error), not the host's BTF.
#[test]
fn layout_with_core_reads_the_dump_not_the_host() {
    let (code, out, err) = synq(&[
        "layout".as_ref(),
        "--core".as_ref(),
        "/nonexistent/vmcore".as_ref(),
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("/nonexistent/vmcore"), "{err}");
    let dir = scratch("layout-nobtf");
    let info = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff8ea0a000\n\
                NUMBER(phys_base)=0\n";
    let dump = write(
        &dir,
        "vmcore",
        &write_elf(&elf_segments(), Some(info), false),
    );
    let (code, out, err) = synq(&["layout".as_ref(), "--core".as_ref(), dump.as_os_str()]);
    // The dump has no kallsyms tables, so its BTF cannot be found: an error about the dump, never the host's
    // /sys/kernel/btf/vmlinux.
    assert_eq!(code, 1, "{out}");
    assert!(err.contains(&dump.display().to_string()), "{err}");
    assert!(!err.contains("/sys/kernel/btf"), "{err}");
}
