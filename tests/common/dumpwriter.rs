//! A small writer of synthetic crash dumps for the tests, independent of the readers: every field is laid
//! out by hand from the format descriptions (makedumpfile's diskdump_mod.h, the ELF spec), not through the
//! reader's constants or the `object` crate.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// How one dumped page is stored.
#[derive(Clone, Debug)]
pub enum Store {
    Raw,
    Zlib,
    Lzo,
    /// LZO1X written by hand (literal runs and long matches), independent of any compressor.
    LzoByHand,
    Snappy,
    Zstd,
}

/// A kdump-compressed dump to write.
#[derive(Clone, Debug)]
pub struct KdumpSpec {
    pub signature: &'static [u8; 8],
    pub version: i32,
    pub block_size: u32,
    pub max_mapnr: u64,
    /// Overrides the 32-bit header max_mapnr (v6 readers must use the sub-header's 64-bit value).
    pub header_max_mapnr: Option<u32>,
    /// Pfns that existed (1st bitmap).
    pub ram: BTreeSet<u64>,
    /// Pfns dumped (2nd bitmap), with their storage; the rest of `ram` is excluded.
    pub pages: BTreeMap<u64, Store>,
    pub vmcoreinfo: Option<String>,
    /// v4+: put VMCOREINFO only in the ELF notes (offset_vmcoreinfo 0), as a reader's fallback.
    pub vmcoreinfo_only_in_notes: bool,
    pub status: u32,
    /// A split dump's pfn range: the 2nd bitmap and the descriptors cover only these pfns.
    pub split: Option<(u64, u64)>,
    /// Write one bitmap (old diskdump): every pfn in it is dumped, so `pages` must cover `ram`.
    pub single_bitmap: bool,
}

impl KdumpSpec {
    pub fn new(version: i32) -> KdumpSpec {
        KdumpSpec {
            signature: b"KDUMP   ",
            version,
            block_size: 4096,
            max_mapnr: 0,
            header_max_mapnr: None,
            ram: BTreeSet::new(),
            pages: BTreeMap::new(),
            vmcoreinfo: None,
            vmcoreinfo_only_in_notes: false,
            status: 0,
            split: None,
            single_bitmap: false,
        }
    }
}

/// The content of page `pfn`: compressible (a repeated 64-byte pattern) yet different for every pfn.
pub fn page_content(pfn: u64, size: usize) -> Vec<u8> {
    let mut pattern = [0u8; 64];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (pfn as u8)
            .wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(7))
            ^ (pfn >> 8) as u8;
    }
    let mut page: Vec<u8> = pattern.iter().copied().cycle().take(size).collect();
    for at in [0usize, size / 2, size - 8] {
        page[at..at + 8].copy_from_slice(&(pfn ^ 0x5eed_0000_0000).to_le_bytes());
    }
    page
}

fn flag_of(store: &Store) -> u32 {
    match store {
        Store::Raw => 0,
        Store::Zlib => 0x1,
        Store::Lzo | Store::LzoByHand => 0x2,
        Store::Snappy => 0x4,
        Store::Zstd => 0x20,
    }
}

/// LZO1X by hand, for a [`page_content`] page of 4096 bytes (a 64-byte pattern with 8-byte stamps at 0, 2048
/// and 4088): an initial literal run of 128 bytes (first byte 17 + 128), an M3 match of 1920 bytes at distance
/// 64 (instruction 32, seven zero bytes and 102 extend the length to 33 + 7 × 255 + 102, then le16
/// `(distance − 1) << 2`), 8 literals (instruction 5 = 8 − 3), an M3 match of 2032 bytes at distance 2048, 8
/// literals, and the end-of-stream marker 0x11 0x00 0x00.
pub fn lzo_by_hand(page: &[u8]) -> Vec<u8> {
    assert_eq!(page.len(), 4096);
    let mut out = vec![17 + 128];
    out.extend_from_slice(&page[..128]);
    let m3 = |out: &mut Vec<u8>, len: usize, dist: u16| {
        let mut ext = len - 33;
        out.push(32);
        while ext > 255 {
            out.push(0);
            ext -= 255;
        }
        out.push(ext as u8);
        out.extend_from_slice(&((dist - 1) << 2).to_le_bytes());
    };
    m3(&mut out, 2048 - 128, 64);
    out.push(5);
    out.extend_from_slice(&page[2048..2056]);
    m3(&mut out, 4088 - 2056, 2048);
    out.push(5);
    out.extend_from_slice(&page[4088..]);
    out.extend_from_slice(&[0x11, 0, 0]);
    out
}

pub fn compress(store: &Store, page: &[u8]) -> Vec<u8> {
    match store {
        Store::Raw => page.to_vec(),
        Store::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(page).unwrap();
            e.finish().unwrap()
        }
        Store::Lzo => lzokay_native::compress(page).unwrap(),
        Store::LzoByHand => lzo_by_hand(page),
        Store::Snappy => snap::raw::Encoder::new().compress_vec(page).unwrap(),
        Store::Zstd => zstd::bulk::compress(page, 3).unwrap(),
    }
}

fn put(buf: &mut Vec<u8>, off: usize, bytes: &[u8]) {
    if buf.len() < off + bytes.len() {
        buf.resize(off + bytes.len(), 0);
    }
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

fn set_bit(buf: &mut [u8], base: usize, pfn: u64) {
    buf[base + (pfn / 8) as usize] |= 1 << (pfn % 8);
}

/// One ELF note (4-byte aligned name and desc).
fn note(name: &str, ntype: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&ntype.to_le_bytes());
    n.extend_from_slice(name.as_bytes());
    n.push(0);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n.extend_from_slice(desc);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n
}

/// The notes a producer writes: a (dummy) NT_PRSTATUS and, if given, VMCOREINFO.
fn notes(vmcoreinfo: Option<&str>) -> Vec<u8> {
    let mut n = note("CORE", 1, &[0u8; 336]);
    if let Some(text) = vmcoreinfo {
        n.extend(note("VMCOREINFO", 0, text.as_bytes()));
    }
    n
}

/// Writes a kdump-compressed file as makedumpfile lays it out.
pub fn write_kdump(spec: &KdumpSpec) -> Vec<u8> {
    let bs = spec.block_size as usize;
    let v = spec.version;
    // Block 0: disk_dump_header (LP64).
    let mut f = vec![0u8; bs];
    put(&mut f, 0, spec.signature);
    put(&mut f, 8, &v.to_le_bytes());
    let uts = [
        "Linux",
        "synq-test",
        "6.1.0-test",
        "#1 SMP",
        "x86_64",
        "(none)",
    ];
    for (i, s) in uts.iter().enumerate() {
        put(&mut f, 12 + i * 65, s.as_bytes());
    }
    put(&mut f, 408, &1_700_000_000u64.to_le_bytes()); // tv_sec
    let status = spec.status | spec.pages.values().fold(0, |a, s| a | flag_of(s));
    put(&mut f, 424, &status.to_le_bytes());
    put(&mut f, 428, &(spec.block_size as i32).to_le_bytes());

    // Sub-header (block 1), then notes and VMCOREINFO text right after it, as makedumpfile does.
    let sub = bs;
    let mut extra = Vec::new();
    let (mut off_note, mut size_note, mut off_info, mut size_info) = (0u64, 0u64, 0u64, 0u64);
    if v >= 4 {
        // Real dumps carry VMCOREINFO among their ELF notes too.
        let n = notes(spec.vmcoreinfo.as_deref());
        off_note = (sub + 104) as u64;
        size_note = n.len() as u64;
        extra.extend(n);
    }
    if v >= 3
        && !spec.vmcoreinfo_only_in_notes
        && let Some(text) = &spec.vmcoreinfo
    {
        off_info = (sub + 104 + extra.len()) as u64;
        size_info = text.len() as u64;
        extra.extend_from_slice(text.as_bytes());
    }
    let sub_hdr_size = (104 + extra.len()).div_ceil(bs);
    put(&mut f, 432, &(sub_hdr_size as i32).to_le_bytes());
    let each_bitmap = (spec.max_mapnr.div_ceil(8) as usize).div_ceil(bs) * bs;
    let bitmaps = if spec.single_bitmap { 1 } else { 2 };
    let bitmap_blocks = bitmaps * each_bitmap / bs;
    put(&mut f, 436, &(bitmap_blocks as u32).to_le_bytes());
    let hdr_mapnr = spec
        .header_max_mapnr
        .unwrap_or(spec.max_mapnr.min(u32::MAX as u64) as u32);
    put(&mut f, 440, &hdr_mapnr.to_le_bytes());
    put(&mut f, 460, &1i32.to_le_bytes()); // nr_cpus

    f.resize(bs * (1 + sub_hdr_size), 0);
    if spec.signature == b"KDUMP   " {
        put(&mut f, sub, &0x1_0000_0000u64.to_le_bytes()); // phys_base
        put(&mut f, sub + 8, &31i32.to_le_bytes()); // dump_level
        if let Some((start, end)) = spec.split {
            put(&mut f, sub + 12, &1i32.to_le_bytes());
            if v >= 6 {
                // Deliberately wrong 32-bit fields: a v6 reader must use the 64-bit ones.
                put(&mut f, sub + 16, &0xdeadu64.to_le_bytes());
                put(&mut f, sub + 24, &0xbeefu64.to_le_bytes());
                put(&mut f, sub + 80, &start.to_le_bytes());
                put(&mut f, sub + 88, &end.to_le_bytes());
            } else {
                put(&mut f, sub + 16, &start.to_le_bytes());
                put(&mut f, sub + 24, &end.to_le_bytes());
            }
        }
        if v >= 3 {
            put(&mut f, sub + 32, &off_info.to_le_bytes());
            put(&mut f, sub + 40, &size_info.to_le_bytes());
        }
        if v >= 4 {
            put(&mut f, sub + 48, &off_note.to_le_bytes());
            put(&mut f, sub + 56, &size_note.to_le_bytes());
        }
        if v >= 6 {
            put(&mut f, sub + 96, &spec.max_mapnr.to_le_bytes());
        }
        put(&mut f, sub + 104, &extra);
    } else {
        // A DISKDUMP sub-header is architecture-specific (elf_regs): fill it with noise the reader must ignore.
        for i in 0..bs {
            f[sub + i] = (i * 7 + 3) as u8;
        }
    }

    // Bitmaps.
    let bm1 = f.len();
    let bm2 = if spec.single_bitmap {
        bm1
    } else {
        bm1 + each_bitmap
    };
    f.resize(bm2 + each_bitmap, 0);
    for &pfn in &spec.ram {
        set_bit(&mut f, bm1, pfn);
    }
    let in_split = |pfn: u64| spec.split.is_none_or(|(s, e)| pfn >= s && pfn < e);
    for &pfn in spec.pages.keys() {
        assert!(spec.ram.contains(&pfn), "dumped pfn {pfn} must exist");
        set_bit(&mut f, bm2, pfn);
    }

    // Page descriptors, then data, both in pfn order.
    let dumped: Vec<(u64, &Store)> = spec
        .pages
        .iter()
        .filter(|(p, _)| in_split(**p))
        .map(|(p, s)| (*p, s))
        .collect();
    let desc_base = f.len();
    let mut data_off = desc_base + dumped.len() * 24;
    let mut data = Vec::new();
    for (i, (pfn, store)) in dumped.iter().enumerate() {
        let page = page_content(*pfn, bs);
        let packed = compress(store, &page);
        let (packed, flags) = if matches!(store, Store::Raw) {
            (packed, 0u32)
        } else {
            assert!(packed.len() < bs, "{store:?} page {pfn} must compress");
            (packed, flag_of(store))
        };
        let mut d = Vec::new();
        d.extend_from_slice(&(data_off as i64).to_le_bytes());
        d.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&0u64.to_le_bytes());
        put(&mut f, desc_base + i * 24, &d);
        data_off += packed.len();
        data.extend(packed);
    }
    f.extend(data);
    f
}

/// One PT_LOAD to write: `data` is the file part (`p_filesz`), `memsz` the memory size.
#[derive(Clone, Debug)]
pub struct Seg {
    pub paddr: u64,
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
}

/// Writes an ELF64 little-endian ET_CORE vmcore: header, PT_NOTE then the PT_LOADs, notes, page-aligned data.
/// With `xnum`, e_phnum is PN_XNUM and the count goes into section header 0's sh_info.
pub fn write_elf(segs: &[Seg], vmcoreinfo: Option<&str>, xnum: bool) -> Vec<u8> {
    let phnum = segs.len() + 1;
    let phoff = 64usize;
    let shoff = phoff + phnum * 56;
    let notes_off = shoff + if xnum { 64 } else { 0 };
    let n = notes(vmcoreinfo);
    let mut data_off = (notes_off + n.len()).div_ceil(4096) * 4096;

    let mut f = Vec::new();
    let mut ident = [0u8; 16];
    ident[..4].copy_from_slice(b"\x7fELF");
    ident[4] = 2; // ELFCLASS64
    ident[5] = 1; // ELFDATA2LSB
    ident[6] = 1; // EV_CURRENT
    f.extend_from_slice(&ident);
    f.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    f.extend_from_slice(&(phoff as u64).to_le_bytes());
    f.extend_from_slice(&(if xnum { shoff as u64 } else { 0 }).to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    let e_phnum: u16 = if xnum { 0xffff } else { phnum as u16 };
    f.extend_from_slice(&e_phnum.to_le_bytes());
    f.extend_from_slice(&(if xnum { 64u16 } else { 0 }).to_le_bytes()); // e_shentsize
    f.extend_from_slice(&(if xnum { 1u16 } else { 0 }).to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(f.len(), 64);

    let phdr =
        |f: &mut Vec<u8>, ptype: u32, off: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64| {
            f.extend_from_slice(&ptype.to_le_bytes());
            f.extend_from_slice(&(if ptype == 1 { 7u32 } else { 0 }).to_le_bytes()); // p_flags
            f.extend_from_slice(&off.to_le_bytes());
            f.extend_from_slice(&vaddr.to_le_bytes());
            f.extend_from_slice(&paddr.to_le_bytes());
            f.extend_from_slice(&filesz.to_le_bytes());
            f.extend_from_slice(&memsz.to_le_bytes());
            f.extend_from_slice(&0u64.to_le_bytes()); // p_align
        };
    phdr(&mut f, 4, notes_off as u64, 0, 0, n.len() as u64, 0);
    let mut offsets = Vec::new();
    for s in segs {
        offsets.push(data_off);
        phdr(
            &mut f,
            1,
            data_off as u64,
            s.vaddr,
            s.paddr,
            s.data.len() as u64,
            s.memsz,
        );
        data_off += s.data.len().div_ceil(4096) * 4096;
    }
    if xnum {
        let mut sh = [0u8; 64];
        sh[44..48].copy_from_slice(&(phnum as u32).to_le_bytes()); // sh_info
        f.extend_from_slice(&sh);
    }
    put(&mut f, notes_off, &n);
    for (s, off) in segs.iter().zip(offsets) {
        put(&mut f, off, &s.data);
    }
    f
}

/// A deterministic pseudo-random sequence (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// makedumpfile's flattened form of `file`: a 4096-byte header ("makedumpfile", type 1, version 1,
/// big-endian), records {offset be64, size be64, data} cut at pseudo-random sizes (so structures and pages
/// straddle records) and emitted in shuffled order, then the end marker. With `skip_zero`, all-zero records are
/// left out (except the last, which fixes the length), as gaps that read as zeros. With `decoys`, garbage records are written first over some ranges that
/// later records overwrite, as `makedumpfile -R` would resolve them.
pub fn flatten(file: &[u8], seed: u64, decoys: bool, skip_zero: bool) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut chunks = Vec::new();
    let mut at = 0usize;
    while at < file.len() {
        let len = (1 + rng.below(6000) as usize).min(file.len() - at);
        let last = at + len == file.len();
        if !skip_zero || last || file[at..at + len].iter().any(|&b| b != 0) {
            chunks.push((at, len));
        }
        at += len;
    }
    for i in (1..chunks.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        chunks.swap(i, j);
    }
    let mut out = vec![0u8; 4096];
    out[..12].copy_from_slice(b"makedumpfile");
    out[16..24].copy_from_slice(&1i64.to_be_bytes());
    out[24..32].copy_from_slice(&1i64.to_be_bytes());
    let record = |out: &mut Vec<u8>, off: usize, data: &[u8]| {
        out.extend_from_slice(&(off as i64).to_be_bytes());
        out.extend_from_slice(&(data.len() as i64).to_be_bytes());
        out.extend_from_slice(data);
    };
    if decoys {
        for &(off, len) in chunks.iter().step_by(3) {
            let garbage: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0xa5).collect();
            record(&mut out, off, &garbage);
        }
    }
    for &(off, len) in &chunks {
        record(&mut out, off, &file[off..off + len]);
    }
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out
}
