//! Test tool: cuts fuzz seeds (`fuzz/seeds/<target>/`) out of real inputs, small enough to commit.
//!
//! ```text
//! cargo run --release --example fuzz_seeds -- dump DIR TAG OUT
//! cargo run --release --example fuzz_seeds -- trim-btf IN OUT
//! ```
//!
//! `dump`: DIR holds a real guest's `vmcore.elf` and `vmcore.kdump-zlib` (QEMU's flattened stream), as
//! `SYNQ_KEEP_DUMPS=1 tests/realkernel/dump.sh` leaves them, and `side/btf` (the guest's BTF, from
//! `target/realkernel/dump-<id>/results/side/`, trimmed first into `fuzz/seeds/btf/TAG-trimmed.btf`). The kernel is read through synq's library while every read
//! is recorded; what was read becomes the seeds, named `TAG-*` under OUT/<target>/:
//! - `elf`: the dump's first 16 KiB (real headers and notes, PT_LOADs cut short), and an excerpt: the same
//!   ELF header and notes with one PT_LOAD per run of the pages below kept;
//! - `kdump`: an excerpt of the kdump file (de-flattened, as `makedumpfile -R` would): its header, sub-header,
//!   VMCOREINFO and notes unchanged but for `max_mapnr` and `bitmap_blocks` (the bitmaps end after the last
//!   page kept), the 2nd bitmap and the page descriptors reduced to the pages kept, their compressed data
//!   copied;
//! - `flattened`: both excerpts, flattened;
//! - `lime`, `avml`: the pages kept, as LiME records and as AVML Snappy frame streams;
//! - `vmcoreinfo`: the note's text, and the dump's PT_NOTE segment (every note, for `find_in_notes`);
//! - `kallsyms`: the real table cut down to a few hundred symbols (`kallsyms_subset`), with VMCOREINFO;
//! - `x86_64_walk`: the MMU configuration of VMCOREINFO, eight real addresses (image, direct map, the lhash2
//!   array, a socket...) and every page-table page their translation read;
//! - `discover`: the kernel's own VMCOREINFO note (found by the scan) and every page its validation read;
//! - `walk`: the guest's layout (its trimmed BTF, `fuzz/seeds/btf/TAG-trimmed.btf`, one of the walk target's
//!   layouts), then `tcp_hashinfo`
//!   and every byte of kernel memory the listening-hash walk read (buckets, sockets, namespaces).
//!
//! The pages kept: the first 4 pages of physical memory, and every page read while translating and reading
//! `init_uts_ns`, `_stext` and `tcp_hashinfo` (page tables included), so that each excerpt still opens,
//! translates and validates like the dump it comes from.
//!
//! `trim-btf`: the types `btf::resolve` needs from a raw BTF file (the structs it names, everything they embed;
//! pointers to anything else become `void *`), renumbered, with their strings: tens of KiB instead of
//! megabytes, and the same layout, which the tool checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use synq::arch::Translated;
use synq::arch::x86_64::X86_64;
use synq::btf::{Layout, Table};
use synq::fuzzing::{X86Header, encode_regions};
use synq::memory::{Memory, PhysMemory, ReadError};
use synq::symbols::kallsyms_mem::KallsymsTables;
use synq::vmcoreinfo::VmcoreInfo;

const PAGE: u64 = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dump", dir, tag, out] => dump(Path::new(dir), tag, Path::new(out)),
        ["trim-btf", input, out] => {
            let raw = std::fs::read(input).unwrap();
            let trimmed = trim_btf(&raw);
            check_trim(&raw, &trimmed, input);
            std::fs::write(out, &trimmed).unwrap();
            eprintln!(
                "{input}: {} bytes -> {out}: {} bytes, same layout",
                raw.len(),
                trimmed.len()
            );
        }
        _ => {
            eprintln!("usage: fuzz_seeds dump DIR TAG OUT | fuzz_seeds trim-btf IN OUT");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Recording memory.

/// Physical memory that records every read.
struct RecPhys<'a> {
    inner: &'a dyn PhysMemory,
    reads: RefCell<Vec<(u64, u64)>>,
}

impl<'a> RecPhys<'a> {
    fn new(inner: &'a dyn PhysMemory) -> Self {
        RecPhys {
            inner,
            reads: RefCell::new(Vec::new()),
        }
    }
    /// The pages touched by successful reads.
    fn pages(&self) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for &(a, len) in self.reads.borrow().iter() {
            let mut p = a & !(PAGE - 1);
            while p < a + len.max(1) {
                out.insert(p);
                p += PAGE;
            }
        }
        out
    }
}

impl PhysMemory for RecPhys<'_> {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let r = self.inner.read_phys(paddr, buf);
        if r.is_ok() {
            self.reads.borrow_mut().push((paddr, buf.len() as u64));
        }
        r
    }
}

/// Kernel virtual memory that records every read.
struct RecMem<'a> {
    inner: &'a dyn Memory,
    reads: RefCell<Vec<(u64, u64)>>,
}

impl<'a> RecMem<'a> {
    fn new(inner: &'a dyn Memory) -> Self {
        RecMem {
            inner,
            reads: RefCell::new(Vec::new()),
        }
    }
    /// The byte ranges read, merged, each widened to `align`.
    fn ranges(&self, align: u64) -> Vec<(u64, u64)> {
        let mut rs: Vec<(u64, u64)> = self
            .reads
            .borrow()
            .iter()
            .map(|&(a, l)| (a & !(align - 1), (a + l).div_ceil(align) * align))
            .collect();
        rs.sort();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in rs {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    }
    /// The regions of `ranges`, read again (a range that cannot be read whole is read page by page).
    fn regions(&self, ranges: &[(u64, u64)]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for &(s, e) in ranges {
            let mut buf = vec![0u8; (e - s) as usize];
            if self.inner.read(s, &mut buf).is_ok() {
                out.push((s, buf));
                continue;
            }
            let mut a = s;
            while a < e {
                let n = (PAGE - a % PAGE).min(e - a);
                let mut b = vec![0u8; n as usize];
                if self.inner.read(a, &mut b).is_ok() {
                    out.push((a, b));
                }
                a += n;
            }
        }
        out
    }
}

impl Memory for RecMem<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let r = self.inner.read(addr, buf);
        if r.is_ok() {
            self.reads.borrow_mut().push((addr, buf.len() as u64));
        }
        r
    }
}

/// Merged runs of `pages`, with their bytes.
fn page_runs(phys: &dyn PhysMemory, pages: &BTreeSet<u64>) -> Vec<(u64, Vec<u8>)> {
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    for &p in pages {
        let mut buf = vec![0u8; PAGE as usize];
        if phys.read_phys(p, &mut buf).is_err() {
            continue;
        }
        match runs.last_mut() {
            Some((start, bytes)) if *start + bytes.len() as u64 == p => bytes.extend(buf),
            _ => runs.push((p, buf)),
        }
    }
    runs
}

fn regions_bytes(regions: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(u64, &[u8])> = regions.iter().map(|(a, b)| (*a, b.as_slice())).collect();
    encode_regions(&refs)
}

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    eprintln!("{}: {} bytes", p.display(), bytes.len());
}

// ---------------------------------------------------------------------------------------------------------
// The dump.

fn dump(dir: &Path, tag: &str, out: &Path) {
    let elf_path = dir.join("vmcore.elf");
    let elf = std::fs::read(&elf_path).unwrap();
    let img = synq::source::open(&elf_path).unwrap();
    let text = img
        .vmcoreinfo()
        .expect("the ELF dump has VMCOREINFO")
        .to_string();
    let info = VmcoreInfo::parse(&text);
    let arch = X86_64::from_vmcoreinfo(&info).unwrap();
    let guest_btf = synq::btf::load_file(&dir.join("side/btf")).unwrap();
    let layout = synq::btf::resolve(&guest_btf.btf).unwrap();

    // The in-memory kallsyms tables: the names synq looks up, found by the sorted-name search.
    let mem = Translated::new(&img, X86_64::from_vmcoreinfo(&info).unwrap());
    let names = [
        "tcp_hashinfo",
        "__start_BTF",
        "__stop_BTF",
        "init_net",
        "_stext",
        "init_uts_ns",
    ];
    let tables = KallsymsTables::new(&mem, &info).unwrap();
    assert!(tables.has_sorted_names(), "{}", tables.sorted_note());
    let syms = tables.lookup_many(&mem, &names).unwrap();
    assert_eq!(syms.len(), names.len(), "{syms:?}");
    assert_eq!(tables.stats().linear_passes, 0);
    let hashinfo = syms["tcp_hashinfo"];
    let seed = kallsyms_subset(&mem, &info, &text, &names);
    {
        // The subset keeps the sorted-name search.
        let head = u16::from_le_bytes([seed[0], seed[1]]) as usize;
        let sub = VmcoreInfo::parse(std::str::from_utf8(&seed[2..2 + head]).unwrap());
        let regions = synq::fuzzing::Regions::parse(&seed[2 + head..]);
        let t = KallsymsTables::new(&regions, &sub).unwrap();
        assert!(t.has_sorted_names(), "subset: {}", t.sorted_note());
        assert_eq!(t.lookup_many(&regions, &names).unwrap(), syms);
        assert_eq!(t.stats().linear_passes, 0);
    }
    write(out, "kallsyms", &format!("{tag}-subset"), &seed);
    check(
        "kallsyms",
        synq::fuzzing::kallsyms(&seed),
        names.len() as u64,
    );

    // The listening-hash walk with the guest's own layout, recorded.
    let rec_w = RecMem::new(&mem);
    let walked =
        synq::walk::walk(&rec_w, &layout, hashinfo, synq::walk::Limits::default()).unwrap();
    eprintln!(
        "walk: {} listeners, {} warnings",
        walked.listeners.len(),
        walked.warnings.len()
    );
    assert!(!walked.listeners.is_empty());
    let mut head = vec![0u8; layout.hashinfo_size as usize];
    mem.read(hashinfo, &mut head).unwrap();
    let mut regions = vec![(hashinfo, head)];
    regions.extend(rec_w.regions(&rec_w.ranges(8)));
    let pick = synq::fuzzing::WALK_LAYOUTS
        .iter()
        .position(|n| *n == format!("{tag}-trimmed.btf"))
        .expect("the walk target has the guest's layout: add fuzz/seeds/btf/TAG-trimmed.btf to it");
    let mut seed = vec![pick as u8];
    seed.extend(regions_bytes(&regions));
    write(out, "walk", tag, &seed);
    check(
        "walk",
        synq::fuzzing::walk(&seed),
        walked.listeners.len() as u64,
    );

    // Addresses of every kind, and the page tables their translation reads.
    let lhash2 = match layout.table {
        Table::Lhash2 { ptr_offset, .. } => {
            let mut b = [0u8; 8];
            mem.read(hashinfo + ptr_offset, &mut b).unwrap();
            u64::from_le_bytes(b)
        }
        Table::ListeningHash { offset, .. } => hashinfo + offset,
    };
    let sock = walked.listeners[0].sock;
    let addrs = [
        syms["init_uts_ns"],
        sock,
        lhash2,
        hashinfo,
        syms["init_net"],
        sock + 0x1000,
        info.symbol("vmemmap").unwrap_or(0) + 0x40,
        info.symbol("mem_section").unwrap_or(0),
    ];
    let rec_t = RecPhys::new(&img);
    for a in addrs {
        let _ = arch.lookup(&rec_t, a);
    }
    let header = X86Header {
        top_table: arch.top_table(),
        phys_base: arch.phys_base(),
        sme_mask: arch.sme_mask(),
        levels: arch.levels(),
        image_pages: ((arch.image().end - arch.image().start) / PAGE) as u32,
        addrs,
    };
    let mut seed = header.encode();
    seed.extend(regions_bytes(&page_runs(&img, &rec_t.pages())));
    write(out, "x86_64_walk", tag, &seed);
    check("x86_64_walk", synq::fuzzing::x86_64_walk(&seed), 8);

    // The kernel's own VMCOREINFO note, and what validating it reads.
    let ranges = img.backed_ranges();
    let found = synq::discover::scan(
        &img,
        &ranges,
        img.machine().as_ref(),
        &|| img.release_pages(),
        img.file_len() * 64,
    );
    let note = found
        .chosen()
        .expect("the scan finds the kernel's note")
        .paddr;
    let rec_d = RecPhys::new(&img);
    synq::discover::validate(&rec_d, &info, img.machine().as_ref()).unwrap();
    let mut pages = rec_d.pages();
    for p in 0..2 {
        pages.insert((note & !(PAGE - 1)) + p * PAGE);
    }
    let seed = regions_bytes(&page_runs(&img, &pages));
    write(out, "discover", tag, &seed);
    check("discover", synq::fuzzing::discover(&seed), 1);

    // The pages every excerpt keeps.
    let rec_p = RecPhys::new(&img);
    {
        let m = Translated::new(&rec_p, X86_64::from_vmcoreinfo(&info).unwrap());
        let mut b = [0u8; 512];
        for a in [syms["init_uts_ns"], syms["_stext"], hashinfo] {
            m.read(a, &mut b).unwrap();
        }
    }
    let mut keep = rec_p.pages();
    let first = ranges.first().unwrap().start;
    keep.extend((0..4).map(|i| first + i * PAGE));
    let runs = page_runs(&img, &keep);

    // vmcoreinfo: the text, and the notes.
    write(out, "vmcoreinfo", &format!("{tag}.txt"), text.as_bytes());
    let (notes, phdrs) = elf_notes_and_loads(&elf);
    write(out, "vmcoreinfo", &format!("{tag}-notes"), &notes);

    // elf.
    write(out, "elf", &format!("{tag}-head16k"), &elf[..16 << 10]);
    check("elf", synq::fuzzing::elf(&elf[..16 << 10]), 0);
    let excerpt = elf_excerpt(&elf, &notes, &phdrs, &runs);
    write(out, "elf", &format!("{tag}-excerpt"), &excerpt);
    check("elf", synq::fuzzing::elf(&excerpt), 8);

    // kdump (QEMU writes it flattened).
    let flat = std::fs::read(dir.join("vmcore.kdump-zlib")).unwrap();
    assert!(flat.starts_with(b"makedumpfile"));
    let plain = deflatten(&flat);
    let kd = kdump_excerpt(&plain, &keep);
    write(out, "kdump", &format!("{tag}-zlib-excerpt"), &kd);
    check("kdump", synq::fuzzing::kdump(&kd), 8);
    let kd_flat = flatten(&kd);
    write(
        out,
        "flattened",
        &format!("{tag}-kdump-zlib-excerpt"),
        &kd_flat,
    );
    check("flattened", synq::fuzzing::flattened(&kd_flat), 8);
    let elf_flat = flatten(&excerpt);
    write(out, "flattened", &format!("{tag}-elf-excerpt"), &elf_flat);
    check("flattened", synq::fuzzing::flattened(&elf_flat), 8);

    // Snapshots of the same pages.
    let lime = to_lime(&runs);
    write(out, "lime", &format!("{tag}-pages"), &lime);
    check("lime", synq::fuzzing::lime(&lime), 8);
    let avml = to_avml(&runs);
    write(out, "avml", &format!("{tag}-pages"), &avml);
    check("avml", synq::fuzzing::avml(&avml), 8);
}

fn check(target: &str, got: Result<u64, String>, at_least: u64) {
    match got {
        Ok(n) if n >= at_least => eprintln!("{target}: {n}"),
        other => panic!("{target}: {other:?}, expected at least {at_least}"),
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// A PT_LOAD: (p_offset, p_vaddr, p_paddr, p_filesz, p_memsz).
type Load = (u64, u64, u64, u64, u64);

/// The PT_NOTE segment's bytes and the PT_LOADs of an ELF64 file.
fn elf_notes_and_loads(elf: &[u8]) -> (Vec<u8>, Vec<Load>) {
    let phoff = u64_at(elf, 32) as usize;
    let phnum = u16_at(elf, 56) as usize;
    let mut notes = Vec::new();
    let mut loads = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * 56;
        let (t, off, vaddr, paddr, filesz, memsz) = (
            u32_at(elf, p),
            u64_at(elf, p + 8),
            u64_at(elf, p + 16),
            u64_at(elf, p + 24),
            u64_at(elf, p + 32),
            u64_at(elf, p + 40),
        );
        match t {
            4 => notes.extend_from_slice(&elf[off as usize..(off + filesz) as usize]),
            1 => loads.push((off, vaddr, paddr, filesz, memsz)),
            _ => {}
        }
    }
    (notes, loads)
}

/// The ELF header of `elf` (e_machine and the rest), its notes, and one PT_LOAD per run.
fn elf_excerpt(elf: &[u8], notes: &[u8], loads: &[Load], runs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let phnum = runs.len() + 1;
    let mut out = elf[..64].to_vec();
    out[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    out[40..48].copy_from_slice(&0u64.to_le_bytes()); // e_shoff
    out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    out[60..64].copy_from_slice(&[0; 4]); // e_shnum, e_shstrndx
    let mut off = 64 + 56 * phnum as u64;
    let phdr = |out: &mut Vec<u8>, t: u32, off: u64, vaddr: u64, paddr: u64, size: u64| {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&7u32.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&paddr.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
    };
    phdr(&mut out, 4, off, 0, 0, notes.len() as u64);
    off += notes.len() as u64;
    for (paddr, bytes) in runs {
        // The original segment's vaddr shift (QEMU: 0, or paddr).
        let vaddr = loads
            .iter()
            .find(|l| l.2 <= *paddr && *paddr < l.2 + l.4)
            .map_or(0, |l| if l.1 == 0 { 0 } else { l.1 + (paddr - l.2) });
        phdr(&mut out, 1, off, vaddr, *paddr, bytes.len() as u64);
        off += bytes.len() as u64;
    }
    out.extend_from_slice(notes);
    for (_, bytes) in runs {
        out.extend_from_slice(bytes);
    }
    out
}

/// The file a flattened stream describes (gaps as zeros), as `makedumpfile -R` writes it.
fn deflatten(flat: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 4096usize;
    loop {
        let off = i64::from_be_bytes(flat[pos..pos + 8].try_into().unwrap());
        let size = i64::from_be_bytes(flat[pos + 8..pos + 16].try_into().unwrap());
        if off < 0 {
            break;
        }
        let (off, size) = (off as usize, size as usize);
        if out.len() < off + size {
            out.resize(off + size, 0);
        }
        out[off..off + size].copy_from_slice(&flat[pos + 16..pos + 16 + size]);
        pos += 16 + size;
    }
    out
}

/// makedumpfile's flattened form of `file`: records of at most 64 KiB, in order, and the end marker.
fn flatten(file: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    out[..12].copy_from_slice(b"makedumpfile");
    out[16..24].copy_from_slice(&1i64.to_be_bytes());
    out[24..32].copy_from_slice(&1i64.to_be_bytes());
    for (i, chunk) in file.chunks(64 << 10).enumerate() {
        out.extend_from_slice(&((i * (64 << 10)) as i64).to_be_bytes());
        out.extend_from_slice(&(chunk.len() as i64).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out
}

/// A kdump file reduced to the dumped pages of `keep`: header blocks as they are but for `max_mapnr` and
/// `bitmap_blocks` (the bitmaps end after the last page kept), the 1st bitmap's part that remains, the 2nd
/// bitmap and the descriptors reduced to the pages kept, their compressed data copied (shared data blocks
/// stay shared).
fn kdump_excerpt(kd: &[u8], keep: &BTreeSet<u64>) -> Vec<u8> {
    let bs = u32_at(kd, 428) as usize;
    let version = u32_at(kd, 8);
    let sub_hdr = u32_at(kd, 432) as usize;
    let bitmap_blocks = u32_at(kd, 436) as usize;
    let bitmap_off = (1 + sub_hdr) * bs;
    let half = bitmap_blocks * bs / 2;
    let desc_off = bitmap_off + bitmap_blocks * bs;
    let bm1 = &kd[bitmap_off..bitmap_off + half];
    let bm2 = &kd[bitmap_off + half..bitmap_off + 2 * half];
    // The new bitmaps: through the last page kept, in whole blocks.
    let last_pfn = keep.iter().next_back().unwrap() / bs as u64;
    let each = ((last_pfn + 1).div_ceil(8) as usize).div_ceil(bs) * bs;
    let max_mapnr = (each * 8) as u64;
    let mut out = kd[..bitmap_off].to_vec();
    out[436..440].copy_from_slice(&((2 * each / bs) as u32).to_le_bytes());
    out[440..444].copy_from_slice(&(max_mapnr as u32).to_le_bytes());
    if version >= 6 {
        out[bs + 96..bs + 104].copy_from_slice(&max_mapnr.to_le_bytes());
    }
    out.extend_from_slice(&bm1[..each]);
    let new_bm2 = out.len();
    out.resize(new_bm2 + each, 0);
    let mut descs = Vec::new();
    let mut rank = 0usize;
    for pfn in 0..(half * 8) as u64 {
        if bm2[(pfn / 8) as usize] & (1 << (pfn % 8)) == 0 {
            continue;
        }
        let d = &kd[desc_off + rank * 24..desc_off + rank * 24 + 24];
        rank += 1;
        if keep.contains(&(pfn * bs as u64)) {
            out[new_bm2 + (pfn / 8) as usize] |= 1 << (pfn % 8);
            descs.push(d.to_vec());
        }
    }
    let data_start = out.len() + descs.len() * 24;
    let mut data = Vec::new();
    let mut placed: HashMap<u64, u64> = HashMap::new();
    for d in &mut descs {
        let off = u64_at(d, 0);
        let size = u32_at(d, 8) as usize;
        let new = *placed.entry(off).or_insert_with(|| {
            let at = (data_start + data.len()) as u64;
            data.extend_from_slice(&kd[off as usize..off as usize + size]);
            at
        });
        d[..8].copy_from_slice(&new.to_le_bytes());
    }
    for d in descs {
        out.extend(d);
    }
    out.extend(data);
    out
}

/// Reads `len` bytes of kernel memory at `addr`.
fn read_mem(mem: &dyn Memory, addr: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    mem.read(addr, &mut b).unwrap();
    b
}

/// A real kallsyms table cut down to a few hundred symbols, as a `kallsyms` seed: the first 300 symbols and
/// the first of each of `wanted` and of the validators, with their real name bytes (token indices), the real
/// token table and index, their real `kallsyms_offsets` entries and `kallsyms_relative_base`; the markers and
/// the sorted name order (`kallsyms_seqs_of_names`) computed for the subset. Laid out in the 6.4+ order from
/// `kallsyms_num_syms` on, and VMCOREINFO's `SYMBOL(kallsyms_*)` lines rewritten to match.
fn kallsyms_subset(mem: &dyn Memory, info: &VmcoreInfo, text: &str, wanted: &[&str]) -> Vec<u8> {
    let sym = |n: &str| info.symbol(n).unwrap_or_else(|| panic!("SYMBOL({n})"));
    let (num_at, names_at) = (sym("kallsyms_num_syms"), sym("kallsyms_names"));
    let (tt_at, ti_at) = (sym("kallsyms_token_table"), sym("kallsyms_token_index"));
    let (offs_at, rb_at) = (sym("kallsyms_offsets"), sym("kallsyms_relative_base"));
    let n = u32_at(&read_mem(mem, num_at, 4), 0) as usize;
    let token_index = read_mem(mem, ti_at, 512);
    let tt_len = (0..256).map(|i| u16_at(&token_index, 2 * i)).max().unwrap() as usize + 64;
    let token_table = read_mem(mem, tt_at, tt_len);
    let token = |t: u8| -> &[u8] {
        let s = &token_table[u16_at(&token_index, 2 * t as usize) as usize..];
        &s[..s.iter().position(|&b| b == 0).unwrap()]
    };
    let token_table = token_table[..(0..=255u8)
        .map(|t| u16_at(&token_index, 2 * t as usize) as usize + token(t).len() + 1)
        .max()
        .unwrap()]
        .to_vec();
    // Every symbol: its encoded bytes and its name (type letter dropped).
    let names_len = (tt_at - names_at) as usize;
    let names = read_mem(mem, names_at, names_len);
    let mut syms: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n);
    let mut p = 0usize;
    for _ in 0..n {
        let (hdr, len) = if names[p] & 0x80 != 0 {
            (
                2,
                ((names[p] & 0x7f) as usize) | ((names[p + 1] as usize) << 7),
            )
        } else {
            (1, names[p] as usize)
        };
        let toks = &names[p + hdr..p + hdr + len];
        let decoded: Vec<u8> = toks.iter().flat_map(|&t| token(t).to_vec()).collect();
        syms.push((names[p..p + hdr + len].to_vec(), decoded[1..].to_vec()));
        p += hdr + len;
    }
    let mut pick: BTreeSet<usize> = (0..300).collect();
    for w in wanted
        .iter()
        .chain(&["_stext", "init_top_pgt", "swapper_pg_dir", "init_uts_ns"])
    {
        if let Some(i) = syms.iter().position(|s| s.1 == w.as_bytes()) {
            pick.insert(i);
        }
    }
    let pick: Vec<usize> = pick.into_iter().collect();
    let offsets = read_mem(mem, offs_at, 4 * n);
    let relative_base = read_mem(mem, rb_at, 8);

    let align = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(8) * 8, 0);
    let mut image = Vec::new();
    image.extend_from_slice(&(pick.len() as u32).to_le_bytes());
    align(&mut image);
    let new_names = num_at + image.len() as u64;
    let mut markers = Vec::new();
    let start = image.len();
    for (k, &i) in pick.iter().enumerate() {
        if k % 256 == 0 {
            markers.extend_from_slice(&((image.len() - start) as u32).to_le_bytes());
        }
        image.extend_from_slice(&syms[i].0);
    }
    align(&mut image);
    image.extend(markers);
    align(&mut image);
    let new_tt = num_at + image.len() as u64;
    image.extend_from_slice(&token_table);
    align(&mut image);
    let new_ti = num_at + image.len() as u64;
    image.extend_from_slice(&token_index);
    align(&mut image);
    let new_offs = num_at + image.len() as u64;
    for &i in &pick {
        image.extend_from_slice(&offsets[4 * i..4 * i + 4]);
    }
    align(&mut image);
    let new_rb = num_at + image.len() as u64;
    image.extend_from_slice(&relative_base);
    align(&mut image);
    // The name order: by name, then by address (the original order).
    let mut order: Vec<usize> = (0..pick.len()).collect();
    order.sort_by(|&a, &b| syms[pick[a]].1.cmp(&syms[pick[b]].1).then(a.cmp(&b)));
    for k in order {
        image.extend_from_slice(&(k as u32).to_be_bytes()[1..]);
    }
    let moved: HashMap<&str, u64> = [
        ("kallsyms_names", new_names),
        ("kallsyms_token_table", new_tt),
        ("kallsyms_token_index", new_ti),
        ("kallsyms_offsets", new_offs),
        ("kallsyms_relative_base", new_rb),
    ]
    .into_iter()
    .collect();
    let text: String = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("");
            match key
                .strip_prefix("SYMBOL(")
                .and_then(|k| k.strip_suffix(')'))
                .and_then(|k| moved.get(k))
            {
                Some(at) => format!("{key}={at:x}\n"),
                None => format!("{l}\n"),
            }
        })
        .collect();
    let mut seed = (text.len() as u16).to_le_bytes().to_vec();
    seed.extend_from_slice(text.as_bytes());
    seed.extend(encode_regions(&[(num_at, &image)]));
    seed
}

fn lime_header(magic: u32, version: u32, start: u64, end: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(&magic.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&end.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    h
}

fn to_lime(runs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (start, bytes) in runs {
        out.extend(lime_header(
            0x4C69_4D45,
            1,
            *start,
            start + bytes.len() as u64 - 1,
        ));
        out.extend_from_slice(bytes);
    }
    out
}

fn to_avml(runs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (start, bytes) in runs {
        out.extend(lime_header(
            0x4C4D_5641,
            2,
            *start,
            start + bytes.len() as u64 - 1,
        ));
        let mut enc = snap::write::FrameEncoder::new(Vec::new());
        enc.write_all(bytes).unwrap();
        let stream = enc.into_inner().unwrap();
        out.extend_from_slice(&stream);
        out.extend_from_slice(&(stream.len() as u64).to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// BTF trimming.

/// The structs `btf::resolve` looks up by name (directly, or when a member's pointer leads nowhere).
const BTF_ROOTS: [&str; 20] = [
    "tcp_sock",
    "inet_hashinfo",
    "inet_listen_hashbucket",
    "inet_connection_sock",
    "inet_sock",
    "sock",
    "sock_common",
    "hlist_node",
    "hlist_nulls_node",
    "request_sock_queue",
    "listen_sock",
    "net",
    "ns_common",
    "possible_net_t",
    // The per-listener details (btf/details.rs).
    "fastopen_queue",
    "sock_reuseport",
    "numa_drop_counters",
    "socket_alloc",
    "socket",
    "inode",
];

struct BtfType {
    name_off: u32,
    info: u32,
    size_type: u32,
    extra: Vec<u8>,
}

impl BtfType {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
}

fn parse_btf(raw: &[u8]) -> (Vec<BtfType>, &[u8]) {
    assert_eq!(u16_at(raw, 0), 0xeb9f, "not raw little-endian BTF");
    let hdr_len = u32_at(raw, 4) as usize;
    let (type_off, type_len) = (u32_at(raw, 8) as usize, u32_at(raw, 12) as usize);
    let (str_off, str_len) = (u32_at(raw, 16) as usize, u32_at(raw, 20) as usize);
    let types = &raw[hdr_len + type_off..hdr_len + type_off + type_len];
    let strings = &raw[hdr_len + str_off..hdr_len + str_off + str_len];
    let mut out = Vec::new();
    let mut p = 0;
    while p < types.len() {
        let (name_off, info, size_type) =
            (u32_at(types, p), u32_at(types, p + 4), u32_at(types, p + 8));
        p += 12;
        let vlen = (info & 0xffff) as usize;
        let extra = match (info >> 24) & 0x1f {
            1 | 14 | 17 => 4,   // INT, VAR, DECL_TAG
            3 => 12,            // ARRAY
            4 | 5 => 12 * vlen, // STRUCT, UNION
            6 => 8 * vlen,      // ENUM
            13 => 8 * vlen,     // FUNC_PROTO
            15 => 12 * vlen,    // DATASEC
            19 => 12 * vlen,    // ENUM64
            _ => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        };
        out.push(BtfType {
            name_off,
            info,
            size_type,
            extra: types[p..p + extra].to_vec(),
        });
        p += extra;
    }
    (out, strings)
}

fn btf_str(strings: &[u8], off: u32) -> &str {
    let s = &strings[off as usize..];
    std::str::from_utf8(&s[..s.iter().position(|&b| b == 0).unwrap()]).unwrap()
}

/// See the module documentation.
fn trim_btf(raw: &[u8]) -> Vec<u8> {
    let (types, strings) = parse_btf(raw);
    let ty = |id: u32| &types[id as usize - 1];
    // Type ids kept; pointers whose target is not kept become void *.
    let mut keep: BTreeSet<u32> = BTreeSet::new();
    let mut todo: Vec<u32> = (1..=types.len() as u32)
        .filter(|&id| {
            let t = ty(id);
            matches!(t.kind(), 4 | 5) && BTF_ROOTS.contains(&btf_str(strings, t.name_off))
        })
        .collect();
    while let Some(id) = todo.pop() {
        if id == 0 || !keep.insert(id) {
            continue;
        }
        let t = ty(id);
        match t.kind() {
            // PTR: followed only to a kept root (added above) or a scalar; else rewritten below.
            2 => {}
            3 => {
                todo.push(u32_at(&t.extra, 0));
                todo.push(u32_at(&t.extra, 4));
            }
            4 | 5 => {
                for m in 0..t.vlen() {
                    todo.push(u32_at(&t.extra, m * 12 + 4));
                }
            }
            8..=11 | 18 => todo.push(t.size_type),
            _ => {}
        }
    }
    // Pointers to kept types keep them; the rest point to void.
    let ptr_target = |id: u32| -> u32 {
        let target = ty(id).size_type;
        if keep.contains(&target) { target } else { 0 }
    };
    let ids: Vec<u32> = keep.iter().copied().collect();
    let new_id: HashMap<u32, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, &old)| (old, i as u32 + 1))
        .collect();
    let map = |old: u32| -> u32 { if old == 0 { 0 } else { new_id[&old] } };
    let mut strtab = vec![0u8];
    let mut str_of: BTreeMap<u32, u32> = BTreeMap::new();
    let mut string = |off: u32| -> u32 {
        if off == 0 {
            return 0;
        }
        *str_of.entry(off).or_insert_with(|| {
            let at = strtab.len() as u32;
            strtab.extend_from_slice(btf_str(strings, off).as_bytes());
            strtab.push(0);
            at
        })
    };
    let mut tsec = Vec::new();
    for &old in &ids {
        let t = ty(old);
        let mut extra = t.extra.clone();
        let size_type = match t.kind() {
            2 => map(ptr_target(old)),
            8..=11 | 18 => map(t.size_type),
            _ => t.size_type,
        };
        match t.kind() {
            3 => {
                let (e, i) = (u32_at(&extra, 0), u32_at(&extra, 4));
                extra[0..4].copy_from_slice(&map(e).to_le_bytes());
                extra[4..8].copy_from_slice(&map(i).to_le_bytes());
            }
            4 | 5 => {
                for m in 0..t.vlen() {
                    let (n, ty) = (u32_at(&extra, m * 12), u32_at(&extra, m * 12 + 4));
                    extra[m * 12..m * 12 + 4].copy_from_slice(&string(n).to_le_bytes());
                    extra[m * 12 + 4..m * 12 + 8].copy_from_slice(&map(ty).to_le_bytes());
                }
            }
            6 => {
                for m in 0..t.vlen() {
                    let n = u32_at(&extra, m * 8);
                    extra[m * 8..m * 8 + 4].copy_from_slice(&string(n).to_le_bytes());
                }
            }
            19 => {
                for m in 0..t.vlen() {
                    let n = u32_at(&extra, m * 12);
                    extra[m * 12..m * 12 + 4].copy_from_slice(&string(n).to_le_bytes());
                }
            }
            _ => {}
        }
        tsec.extend_from_slice(&string(t.name_off).to_le_bytes());
        tsec.extend_from_slice(&t.info.to_le_bytes());
        tsec.extend_from_slice(&size_type.to_le_bytes());
        tsec.extend(extra);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9fu16.to_le_bytes());
    out.push(1); // version
    out.push(0); // flags
    out.extend_from_slice(&24u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(tsec.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tsec.len() as u32).to_le_bytes());
    out.extend_from_slice(&(strtab.len() as u32).to_le_bytes());
    out.extend(tsec);
    out.extend(strtab);
    out
}

/// The trimmed BTF resolves to the layout of the original.
fn check_trim(raw: &[u8], trimmed: &[u8], name: &str) {
    let layout = |b: &[u8]| -> Layout {
        let btf = synq::btf::parse_bytes(b, &PathBuf::from(name)).unwrap();
        synq::btf::resolve(&btf).unwrap()
    };
    assert_eq!(
        layout(raw).to_json(),
        layout(trimmed).to_json(),
        "{name}: the trimmed BTF resolves to another layout"
    );
}
