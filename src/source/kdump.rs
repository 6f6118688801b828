//! kdump-compressed dumps (makedumpfile `-c/-l/-p/-z`, QEMU `kdump-zlib/-lzo/-snappy`, old "DISKDUMP" files).
//!
//! Layout, in blocks of `block_size` bytes (the page size):
//! - block 0: `disk_dump_header` {signature[8], header_version i32, new_utsname (6 × 65 bytes), struct timeval
//!   (at 408, 16 bytes), status u32 (424), block_size i32 (428), sub_hdr_size i32 (432), bitmap_blocks u32
//!   (436), max_mapnr u32 (440), total_ram_blocks, device_blocks, written_blocks, current_cpu u32, nr_cpus i32
//!   (460)} — the x86_64 (LP64) layout;
//! - block 1: `kdump_sub_header` {phys_base u64 (0), dump_level i32 (8); v2+: split i32 (12), start_pfn u64
//!   (16), end_pfn u64 (24); v3+: offset_vmcoreinfo i64 (32), size_vmcoreinfo u64 (40); v4+: offset_note (48),
//!   size_note (56); v5+: offset_eraseinfo (64), size_eraseinfo (72); v6+: start_pfn_64 (80), end_pfn_64 (88),
//!   max_mapnr_64 (96)};
//! - from block `1 + sub_hdr_size`: `bitmap_blocks` blocks holding two bitmaps of equal size, bit `pfn % 8` of
//!   byte `pfn / 8` (the 1st: pfns that existed; the 2nd: pfns dumped) — or one bitmap serving as both when
//!   the blocks are too few for two (old diskdump, as crash reads it);
//! - then one `page_desc` {offset i64, size u32, flags u32, page_flags u64} (24 bytes) per dumped pfn, in pfn
//!   order; `flags` names the compression (zlib 0x1, lzo 0x2, snappy 0x4, zstd 0x20); `size == block_size` is a
//!   raw page.
//!
//! A pfn in the 1st bitmap but not the 2nd was excluded by the dump level and reads as zeros; a pfn in neither
//! is not in the dump. The descriptor of pfn N is found by counting the set bits of the 2nd bitmap before N,
//! from a prefix-count index built once per 4096 pfns (the index is 1/64 of the bitmap's size).
//! These facts follow makedumpfile's `diskdump_mod.h` and crash's `diskdump.c`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use std::any::Any;
use std::ops::Range;

use super::bytes::{ByteSource, SourceError};
use super::{DumpFormat, FormatKind, HeaderError, PhysSource};
use crate::arch::Machine;
use crate::memory::{PhysMemory, ReadError, read_split};
use crate::vmcoreinfo;

pub const SIG_KDUMP: &[u8] = b"KDUMP   ";
pub const SIG_DISKDUMP: &[u8] = b"DISKDUMP";

// disk_dump_header field offsets (LP64 producer).
const DH_VERSION: u64 = 8;
const DH_UTSNAME: u64 = 12;
const UTS_FIELD: u64 = 65;
const DH_STATUS: u64 = 424;
const DH_BLOCK_SIZE: u64 = 428;
const DH_SUB_HDR_SIZE: u64 = 432;
const DH_BITMAP_BLOCKS: u64 = 436;
const DH_MAX_MAPNR: u64 = 440;
const DH_NR_CPUS: u64 = 460;
/// Size of `disk_dump_header` without the trailing `tasks[]`.
pub const DH_SIZE: usize = 464;

// kdump_sub_header field offsets.
const SH_PHYS_BASE: u64 = 0;
const SH_DUMP_LEVEL: u64 = 8;
const SH_SPLIT: u64 = 12;
const SH_START_PFN: u64 = 16;
const SH_END_PFN: u64 = 24;
const SH_OFFSET_VMCOREINFO: u64 = 32;
const SH_SIZE_VMCOREINFO: u64 = 40;
const SH_OFFSET_NOTE: u64 = 48;
const SH_SIZE_NOTE: u64 = 56;
const SH_START_PFN_64: u64 = 80;
const SH_END_PFN_64: u64 = 88;
const SH_MAX_MAPNR_64: u64 = 96;
const SH_SIZE: usize = 104;

/// `page_desc` size.
pub const PAGE_DESC_SIZE: u64 = 24;

/// Page and header status flags.
pub const COMPRESS_ZLIB: u32 = 0x1;
pub const COMPRESS_LZO: u32 = 0x2;
pub const COMPRESS_SNAPPY: u32 = 0x4;
/// Header status only: makedumpfile ran out of space and the dump is incomplete.
pub const STATUS_INCOMPLETE: u32 = 0x8;
pub const COMPRESS_ZSTD: u32 = 0x20;
pub const COMPRESS_MASK: u32 = COMPRESS_ZLIB | COMPRESS_LZO | COMPRESS_SNAPPY | COMPRESS_ZSTD;

/// The newest header version known; later ones are read as this one, with a warning.
const KNOWN_VERSION: i32 = 6;
const MIN_BLOCK_SIZE: u32 = 512;
const MAX_BLOCK_SIZE: u32 = 64 << 10;
/// VMCOREINFO and note areas beyond this size are not read.
const MAX_INFO_BYTES: u64 = 32 << 20;
/// Bitmap bytes per rank-index entry (4096 pfns), at least.
const RANK_CHUNK: u64 = 512;
/// Most rank-index entries (24 MiB): a bitmap larger than 512 MiB gets larger chunks.
const MAX_CHECKPOINTS: u64 = 1 << 20;

/// Set bits of the 2nd bitmap before chunk `chunk` and through its end.
#[derive(Clone, Copy, Debug)]
struct Checkpoint {
    chunk: u64,
    before: u64,
    through: u64,
}
/// Decompressed pages kept (at most 64 × 64 KiB = 4 MiB).
const CACHE_PAGES: usize = 64;

/// What the headers of a kdump-compressed dump say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdumpInfo {
    /// "KDUMP" or "DISKDUMP".
    pub signature: &'static str,
    pub header_version: i32,
    /// Header status: the compressions used (`COMPRESS_*`) and `STATUS_INCOMPLETE`.
    pub status: u32,
    pub block_size: u32,
    pub sub_hdr_size: u32,
    pub bitmap_blocks: u32,
    /// Number of pfns the dump describes (v6+: the sub-header's 64-bit value).
    pub max_mapnr: u64,
    pub nr_cpus: i32,
    /// utsname fields; QEMU leaves them empty.
    pub nodename: String,
    pub release: String,
    pub machine: String,
    /// From the kdump sub-header (absent in DISKDUMP files); signed: QEMU writes negative values under KASLR.
    pub phys_base: Option<i64>,
    pub dump_level: Option<i32>,
    /// A split dump holds only pfns `start..end` (`makedumpfile --split`).
    pub split: Option<(u64, u64)>,
    /// Number of page descriptors (pfns in the 2nd bitmap, within the split range).
    pub dumped_pages: u64,
}

/// The parsed headers of a kdump-compressed dump, plus its page cache; read through the file's bytes given
/// to each call.
struct Headers {
    pub info: KdumpInfo,
    block_size: u64,
    block_shift: u32,
    bitmap1_off: u64,
    bitmap2_off: u64,
    /// Pfns held by this file: `0..pfn_limit`, or a split dump's range.
    pfn_lo: u64,
    pfn_hi: u64,
    /// Set bits of the 2nd bitmap before `pfn_lo`.
    rank_base: u64,
    /// Rank checkpoints, one per chunk of the 2nd bitmap that the file stores (holes and flattened gaps
    /// hold no set bit and get none), sorted by chunk.
    rank_index: Vec<Checkpoint>,
    /// Bytes of the 2nd bitmap per checkpoint: 512, or more for a huge bitmap, so that the index stays under
    /// [`MAX_CHECKPOINTS`].
    rank_chunk: u64,
    desc_off: u64,
    pub vmcoreinfo: Option<String>,
    pub warnings: Vec<String>,
    cache: Mutex<PageCache>,
    /// Decompression contexts not in use (at most [`MAX_DECODERS`]).
    decoders: Mutex<Vec<Decoders>>,
    /// Compression flags met in page descriptors so far.
    seen: AtomicU32,
}

fn herr(what: &'static str, offset: u64, msg: impl Into<String>) -> HeaderError {
    HeaderError {
        what,
        offset,
        msg: msg.into(),
    }
}

fn u32_at(b: &[u8], off: u64) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = usize::try_from(off)
        .ok()
        .and_then(|o| b.get(o..o.checked_add(4)?))
    {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], off: u64) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = usize::try_from(off)
        .ok()
        .and_then(|o| b.get(o..o.checked_add(8)?))
    {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

fn cstr_at(b: &[u8], off: u64, len: u64) -> String {
    let field = usize::try_from(off)
        .ok()
        .and_then(|o| b.get(o..o.checked_add(usize::try_from(len).ok()?)?))
        .unwrap_or_default();
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default()).into_owned()
}

/// Names of the compressions in `flags`.
pub fn compression_names(flags: u32) -> Vec<&'static str> {
    [
        (COMPRESS_ZLIB, "zlib"),
        (COMPRESS_LZO, "lzo"),
        (COMPRESS_SNAPPY, "snappy"),
        (COMPRESS_ZSTD, "zstd"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

impl Headers {
    /// Parses the headers, checks every region against the file, builds the rank index and finds VMCOREINFO.
    fn parse(src: &dyn ByteSource) -> Result<Headers, HeaderError> {
        let file_len = src.len();
        let dh = src
            .bytes(0, DH_SIZE)
            .map_err(|e| herr("kdump header", 0, e.to_string()))?;
        let signature = match dh.get(..8) {
            Some(s) if s == SIG_KDUMP => "KDUMP",
            Some(s) if s == SIG_DISKDUMP => "DISKDUMP",
            _ => {
                return Err(herr(
                    "kdump header",
                    0,
                    "signature is neither \"KDUMP   \" nor \"DISKDUMP\"",
                ));
            }
        };
        let kdump = signature == "KDUMP";
        let version = u32_at(&dh, DH_VERSION) as i32;
        if !(0..=1000).contains(&version) {
            let msg = if (1..=KNOWN_VERSION).contains(&(version.swap_bytes())) {
                format!(
                    "header_version {version:#x}: a big-endian dump (only little-endian dumps are supported)"
                )
            } else {
                format!("header_version {version} is not a kdump header version")
            };
            return Err(herr("kdump header", DH_VERSION, msg));
        }
        let mut warnings = Vec::new();
        if version > KNOWN_VERSION {
            warnings.push(format!(
                "kdump header_version {version} is newer than {KNOWN_VERSION}: read as version {KNOWN_VERSION}"
            ));
        }
        let status = u32_at(&dh, DH_STATUS);
        let block_size = u32_at(&dh, DH_BLOCK_SIZE);
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(herr(
                "kdump header",
                DH_BLOCK_SIZE,
                format!(
                    "block_size {block_size:#x} is not a power of two in {MIN_BLOCK_SIZE:#x}..={MAX_BLOCK_SIZE:#x}"
                ),
            ));
        }
        let bs = u64::from(block_size);
        let sub_hdr_size = u32_at(&dh, DH_SUB_HDR_SIZE);
        if sub_hdr_size > i32::MAX as u32 {
            return Err(herr(
                "kdump header",
                DH_SUB_HDR_SIZE,
                format!("sub_hdr_size {} is negative", sub_hdr_size as i32),
            ));
        }
        if kdump && sub_hdr_size == 0 {
            return Err(herr(
                "kdump header",
                DH_SUB_HDR_SIZE,
                "sub_hdr_size is 0: no room for the kdump sub-header",
            ));
        }
        let bitmap_blocks = u32_at(&dh, DH_BITMAP_BLOCKS);
        let mut max_mapnr = u64::from(u32_at(&dh, DH_MAX_MAPNR));
        let nr_cpus = u32_at(&dh, DH_NR_CPUS) as i32;
        let uts = |i: u64| cstr_at(&dh, DH_UTSNAME + i * UTS_FIELD, UTS_FIELD);
        let (nodename, release, machine) = (uts(1), uts(2), uts(4));

        let mut info = KdumpInfo {
            signature,
            header_version: version,
            status,
            block_size,
            sub_hdr_size,
            bitmap_blocks,
            max_mapnr,
            nr_cpus,
            nodename,
            release,
            machine,
            phys_base: None,
            dump_level: None,
            split: None,
            dumped_pages: 0,
        };

        // The kdump sub-header, one block in.
        let mut vmcoreinfo_loc = None;
        let mut notes_loc = None;
        let mut split = None;
        if kdump {
            let sh = src
                .bytes(bs, SH_SIZE.min(block_size as usize))
                .map_err(|e| herr("kdump sub-header", bs, e.to_string()))?;
            info.phys_base = Some(u64_at(&sh, SH_PHYS_BASE) as i64);
            info.dump_level = Some(u32_at(&sh, SH_DUMP_LEVEL) as i32);
            if version >= 2 && u32_at(&sh, SH_SPLIT) != 0 {
                split = Some(if version >= 6 {
                    (u64_at(&sh, SH_START_PFN_64), u64_at(&sh, SH_END_PFN_64))
                } else {
                    (u64_at(&sh, SH_START_PFN), u64_at(&sh, SH_END_PFN))
                });
            }
            if version >= 3 {
                vmcoreinfo_loc = Some((
                    u64_at(&sh, SH_OFFSET_VMCOREINFO),
                    u64_at(&sh, SH_SIZE_VMCOREINFO),
                ));
            }
            if version >= 4 {
                notes_loc = Some((u64_at(&sh, SH_OFFSET_NOTE), u64_at(&sh, SH_SIZE_NOTE)));
            }
            if version >= 6 {
                max_mapnr = u64_at(&sh, SH_MAX_MAPNR_64);
                info.max_mapnr = max_mapnr;
            }
        }

        // The bitmaps.
        let region = |blocks: u64| blocks.checked_mul(bs);
        let bitmap_off = region(1 + u64::from(sub_hdr_size))
            .ok_or_else(|| herr("kdump header", DH_SUB_HDR_SIZE, "bitmap offset overflows"))?;
        if bitmap_blocks == 0 {
            return Err(herr(
                "kdump header",
                DH_BITMAP_BLOCKS,
                "bitmap_blocks is 0: no page bitmap",
            ));
        }
        let bitmap_len = region(u64::from(bitmap_blocks))
            .ok_or_else(|| herr("kdump header", DH_BITMAP_BLOCKS, "bitmap size overflows"))?;
        let desc_off = bitmap_off
            .checked_add(bitmap_len)
            .ok_or_else(|| herr("kdump header", DH_BITMAP_BLOCKS, "bitmap size overflows"))?;
        if desc_off > file_len {
            return Err(herr(
                "kdump bitmaps",
                bitmap_off,
                format!(
                    "{bitmap_blocks} blocks of {block_size:#x} bytes end at {desc_off:#x}, past the end of the file \
                     ({file_len:#x} bytes): truncated dump"
                ),
            ));
        }
        // Two bitmaps when the blocks hold two of max_mapnr bits, else one serving as both (crash's rule).
        let one_bitmap_blocks = max_mapnr.div_ceil(8).div_ceil(bs);
        let (bitmap1_off, bitmap2_off, each_len) = if u64::from(bitmap_blocks)
            >= one_bitmap_blocks.saturating_mul(2)
        {
            (bitmap_off, bitmap_off + bitmap_len / 2, bitmap_len / 2)
        } else {
            warnings.push(format!(
                    "kdump bitmaps: {bitmap_blocks} blocks hold one bitmap of {max_mapnr:#x} pfns, not two: every \
                     pfn present is taken as dumped"
                ));
            (bitmap_off, bitmap_off, bitmap_len)
        };
        let bitmap_pfns = each_len.saturating_mul(8);
        let pfn_limit = max_mapnr.min(bitmap_pfns);
        if max_mapnr > bitmap_pfns {
            warnings.push(format!(
                "kdump header: max_mapnr {max_mapnr:#x} exceeds the {bitmap_pfns:#x} pfns the bitmaps describe: \
                 pfns past them are not in the dump"
            ));
        }

        // Rank index over the 2nd bitmap's whole bytes below pfn_limit: only over what the file stores, so a
        // bitmap in a hole of a sparse file or a gap of a flattened stream costs nothing.
        let full_bytes = pfn_limit / 8;
        let rank_chunk = RANK_CHUNK.max(full_bytes.div_ceil(MAX_CHECKPOINTS).next_power_of_two());
        let rank_index = rank_checkpoints(src, bitmap2_off, full_bytes, rank_chunk)
            .map_err(|e| herr("kdump 2nd bitmap", bitmap2_off, e.to_string()))?;

        let mut dump = Headers {
            info,
            block_size: bs,
            block_shift: block_size.trailing_zeros(),
            bitmap1_off,
            bitmap2_off,
            pfn_lo: 0,
            pfn_hi: pfn_limit,
            rank_base: 0,
            rank_index,
            rank_chunk,
            desc_off,
            vmcoreinfo: None,
            warnings,
            cache: Mutex::new(PageCache::default()),
            decoders: Mutex::new(Vec::new()),
            seen: AtomicU32::new(0),
        };

        if let Some((start, end)) = split {
            let hi = end.min(pfn_limit);
            if start > hi {
                return Err(herr(
                    "kdump sub-header",
                    bs + SH_SPLIT,
                    format!(
                        "split dump range {start:#x}..{end:#x} is empty or past max_mapnr {max_mapnr:#x}"
                    ),
                ));
            }
            dump.pfn_lo = start;
            dump.pfn_hi = hi;
            dump.info.split = Some((start, end));
            dump.rank_base = dump
                .rank(src, start)
                .map_err(|e| herr("kdump 2nd bitmap", bitmap2_off, e.to_string()))?;
            dump.warnings.push(format!(
                "split dump (makedumpfile --split): this file holds pfns {start:#x}..{end:#x} only"
            ));
        }
        let end_rank = dump
            .rank(src, dump.pfn_hi)
            .map_err(|e| herr("kdump 2nd bitmap", bitmap2_off, e.to_string()))?;
        dump.info.dumped_pages = end_rank.saturating_sub(dump.rank_base);
        let table_end = dump
            .info
            .dumped_pages
            .checked_mul(PAGE_DESC_SIZE)
            .and_then(|n| n.checked_add(desc_off));
        if table_end.is_none_or(|e| e > file_len) {
            dump.warnings.push(format!(
                "kdump page descriptors: {} descriptors from {desc_off:#x} run past the end of the file \
                 ({file_len:#x} bytes): truncated dump, the pages of the missing ones are unreadable",
                dump.info.dumped_pages
            ));
        } else if let Some(last) = dump.info.dumped_pages.checked_sub(1) {
            // Producers write page data in pfn order: the last descriptor's data ends the file.
            let at = desc_off.saturating_add(last.saturating_mul(PAGE_DESC_SIZE));
            if let Ok(d) = src.bytes(at, PAGE_DESC_SIZE as usize) {
                let end = u64_at(&d, 0).checked_add(u64::from(u32_at(&d, 8)));
                if end.is_none_or(|e| e > file_len) {
                    dump.warnings.push(format!(
                        "kdump page data: the last page's data (descriptor at {at:#x}) ends past the end of the \
                         file ({file_len:#x} bytes): truncated dump, pages whose data is missing are unreadable"
                    ));
                }
            }
        }
        if kdump && status & STATUS_INCOMPLETE != 0 {
            dump.warnings.push(
                "kdump header: the dump is marked incomplete (the producer ran out of space): pages it did not \
                 write are unreadable"
                    .into(),
            );
        }

        dump.vmcoreinfo = find_vmcoreinfo(src, vmcoreinfo_loc, notes_loc, &mut dump.warnings);
        Ok(dump)
    }

    /// Compression flags from the header status and the page descriptors read so far.
    fn compressions(&self) -> u32 {
        (self.info.status & COMPRESS_MASK) | self.seen.load(Ordering::Relaxed)
    }

    fn page_size(&self) -> u64 {
        self.block_size
    }

    /// Physical ranges of the pfns this file holds (1st bitmap, within max_mapnr and a split range): those
    /// that read as data or as zeros (excluded). Scans the 1st bitmap 4 KiB at a time; an unreadable stretch
    /// counts as absent.
    fn phys_ranges(&self, src: &dyn ByteSource) -> Vec<std::ops::Range<u64>> {
        self.bitmap_ranges(src, self.bitmap1_off)
    }

    /// Physical ranges of the pfns dumped (2nd bitmap): those whose data is in the file. Each has a 24-byte
    /// page descriptor in the file, so their number is bounded by the file's size.
    fn dumped_ranges(&self, src: &dyn ByteSource) -> Vec<std::ops::Range<u64>> {
        self.bitmap_ranges(src, self.bitmap2_off)
    }

    /// The runs of set bits of the bitmap at `bitmap_off`, as physical ranges.
    fn bitmap_ranges(&self, src: &dyn ByteSource, bitmap_off: u64) -> Vec<std::ops::Range<u64>> {
        const STEP: u64 = 4096;
        let mut out: Vec<std::ops::Range<u64>> = Vec::new();
        let mut run: Option<u64> = None;
        let to_addr = |p: u64| p.checked_shl(self.block_shift).unwrap_or(u64::MAX);
        let mut flush = |run: &mut Option<u64>, end: u64| {
            if let Some(start) = run.take() {
                out.push(to_addr(start)..to_addr(end));
            }
        };
        let mut last_end = self.pfn_lo / 8;
        let first_byte = self.pfn_lo / 8;
        let end_byte = self.pfn_hi.div_ceil(8);
        let region = bitmap_off.saturating_add(first_byte)..bitmap_off.saturating_add(end_byte);
        // Only the stored parts: a hole or gap holds no set bit and ends a run.
        for ext in src.stored(region) {
            let ext_first = ext.start.saturating_sub(bitmap_off);
            let ext_end = ext.end.saturating_sub(bitmap_off);
            if let Some(start) = run
                && start < ext_first * 8
            {
                // A run open at the end of the previous extent stops where that extent stopped.
                flush(&mut run, last_end * 8);
            }
            let mut at = ext_first;
            // One turn per 4 KiB of stored bitmap.
            while at < ext_end {
                let n = (ext_end - at).min(STEP);
                let chunk = src.bytes(bitmap_off.saturating_add(at), n as usize);
                let bytes: &[u8] = chunk.as_deref().unwrap_or(&[]);
                for i in 0..n {
                    let byte = bytes.get(i as usize).copied().unwrap_or(0);
                    let base = (at + i) * 8;
                    if base >= self.pfn_lo && base + 8 <= self.pfn_hi && (byte == 0 || byte == 0xff)
                    {
                        if byte == 0 {
                            flush(&mut run, base);
                        } else {
                            run.get_or_insert(base);
                        }
                        continue;
                    }
                    for bit in 0..8u64 {
                        let pfn = base + bit;
                        if pfn < self.pfn_lo || pfn >= self.pfn_hi {
                            continue;
                        }
                        if byte & (1 << bit) != 0 {
                            run.get_or_insert(pfn);
                        } else {
                            flush(&mut run, pfn);
                        }
                    }
                }
                at += n;
            }
            last_end = ext_end;
        }
        if last_end < end_byte {
            flush(&mut run, (last_end * 8).max(self.pfn_lo));
        }
        flush(&mut run, self.pfn_hi);
        out
    }

    /// Set bits of the 2nd bitmap below `pfn` (`pfn <= pfn_limit`).
    fn rank(&self, src: &dyn ByteSource, pfn: u64) -> Result<u64, SourceError> {
        let byte = pfn / 8;
        let chunk = byte / self.rank_chunk;
        let i = self.rank_index.partition_point(|c| c.chunk <= chunk);
        let Some(cp) = i.checked_sub(1).and_then(|i| self.rank_index.get(i)) else {
            return Ok(0);
        };
        if cp.chunk < chunk {
            // The pfn's chunk is not stored: zero bits up to it after the last stored one.
            return Ok(cp.through);
        }
        let chunk_start = self.bitmap2_off.saturating_add(chunk * self.rank_chunk);
        let whole_end = self.bitmap2_off.saturating_add(byte);
        let mut count = cp
            .before
            .saturating_add(popcount_stored(src, chunk_start..whole_end)?);
        let partial = pfn % 8;
        if partial != 0 {
            let last = src.bytes(whole_end, 1)?;
            if let Some(&b) = last.first() {
                count = count.saturating_add(u64::from((b & ((1u8 << partial) - 1)).count_ones()));
            }
        }
        Ok(count)
    }

    fn bit(src: &dyn ByteSource, base: u64, pfn: u64) -> Result<bool, SourceError> {
        let b = src.bytes(base.saturating_add(pfn / 8), 1)?;
        Ok(b.first().is_some_and(|&v| v & (1 << (pfn % 8)) != 0))
    }

    /// Fills `buf` from physical address `paddr`, page by page.
    fn read_phys(&self, src: &dyn ByteSource, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let total = buf.len();
        read_split(paddr, buf, |cur, rest| {
            let pfn = cur >> self.block_shift;
            let in_page = (cur & (self.block_size - 1)) as usize;
            let n = rest.len().min(self.block_size as usize - in_page);
            let out = rest.get_mut(..n).ok_or(ReadError::TooLarge {
                addr: cur,
                len: total,
            })?;
            self.read_in_page(src, pfn, in_page, out, cur)?;
            Ok(n)
        })
    }

    /// Fills `out` from byte `in_page` of page `pfn`; `paddr` names the fault.
    fn read_in_page(
        &self,
        src: &dyn ByteSource,
        pfn: u64,
        in_page: usize,
        out: &mut [u8],
        paddr: u64,
    ) -> Result<(), ReadError> {
        if pfn < self.pfn_lo || pfn >= self.pfn_hi {
            return Err(ReadError::NotInDump { paddr });
        }
        let corrupt = |msg: String| ReadError::Corrupt { paddr, msg };
        let exists = Self::bit(src, self.bitmap1_off, pfn)
            .map_err(|e| corrupt(format!("pfn {pfn:#x}: 1st bitmap: {e}")))?;
        if !exists {
            return Err(ReadError::NotInDump { paddr });
        }
        let dumped = Self::bit(src, self.bitmap2_off, pfn)
            .map_err(|e| corrupt(format!("pfn {pfn:#x}: 2nd bitmap: {e}")))?;
        if !dumped {
            // Excluded by the dump level (zero, cache, free or user page).
            out.fill(0);
            return Ok(());
        }
        if self.cache_lock().copy_out(pfn, in_page, out) {
            return Ok(());
        }

        let rank = self
            .rank(src, pfn)
            .map_err(|e| corrupt(format!("pfn {pfn:#x}: 2nd bitmap: {e}")))?;
        let idx = rank.saturating_sub(self.rank_base);
        let desc_at = idx
            .checked_mul(PAGE_DESC_SIZE)
            .and_then(|o| o.checked_add(self.desc_off))
            .ok_or_else(|| {
                corrupt(format!(
                    "pfn {pfn:#x}: page descriptor #{idx} offset overflows"
                ))
            })?;
        let where_ = format!("pfn {pfn:#x}: page descriptor #{idx} at file offset {desc_at:#x}");
        let desc = src
            .bytes(desc_at, PAGE_DESC_SIZE as usize)
            .map_err(|e| corrupt(format!("{where_}: {e}")))?;
        let data_off = u64_at(&desc, 0) as i64;
        let size = u32_at(&desc, 8);
        let flags = u32_at(&desc, 12);
        if data_off <= 0 {
            return Err(corrupt(format!(
                "{where_}: data offset {data_off} (an unwritten descriptor: incomplete dump?)"
            )));
        }
        let data_off = data_off as u64;
        let bs = self.block_size;
        if size == 0 || u64::from(size) > bs {
            return Err(corrupt(format!(
                "{where_}: size {size:#x} is not in 1..={bs:#x}"
            )));
        }
        if u64::from(size) == bs {
            // Stored raw: read just the part asked for.
            let at = data_off.saturating_add(in_page as u64);
            return src
                .read_into(at, out)
                .map_err(|e| corrupt(format!("{where_}: raw page data at {data_off:#x}: {e}")));
        }
        let method = flags & COMPRESS_MASK;
        if !method.is_power_of_two() {
            return Err(corrupt(format!(
                "{where_}: size {size:#x} < block size, but flags {flags:#x} name {} compression methods",
                method.count_ones()
            )));
        }
        self.seen.fetch_or(method, Ordering::Relaxed);
        let packed = src
            .bytes(data_off, size as usize)
            .map_err(|e| corrupt(format!("{where_}: page data: {e}")))?;
        // A context from the pool (or a new one), used without holding the lock: threads sharing a large
        // read inflate their pages at the same time.
        let mut decoders = self.decoders_lock().pop().unwrap_or_default();
        let page = decoders.decompress(method, &packed, bs as usize);
        {
            let mut pool = self.decoders_lock();
            if pool.len() < MAX_DECODERS {
                pool.push(decoders);
            }
        }
        let page = page.map_err(|e| {
            corrupt(format!(
                "{where_}: {} page data at file offset {data_off:#x} ({size:#x} bytes): {e}",
                compression_names(method).first().copied().unwrap_or("?")
            ))
        })?;
        let part = page
            .get(in_page..in_page.saturating_add(out.len()))
            .ok_or_else(|| corrupt(format!("{where_}: read past the page")))?;
        out.copy_from_slice(part);
        self.cache_lock().insert(pfn, page);
        Ok(())
    }

    /// Number of pages in the decompressed-page cache.
    fn cached_pages(&self) -> usize {
        self.cache_lock().slots.len()
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, PageCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decoders_lock(&self) -> std::sync::MutexGuard<'_, Vec<Decoders>> {
        self.decoders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The rank checkpoints of the 2nd bitmap (`len` whole bytes at `off`), in chunks of `chunk` bytes: one per
/// chunk that holds stored bytes. Work and memory follow what the file stores.
fn rank_checkpoints(
    src: &dyn ByteSource,
    off: u64,
    len: u64,
    chunk: u64,
) -> Result<Vec<Checkpoint>, SourceError> {
    let mut out: Vec<Checkpoint> = Vec::new();
    let mut count = 0u64;
    for ext in src.stored(off..off.saturating_add(len)) {
        let first = (ext.start - off) / chunk;
        let last = (ext.end.saturating_sub(1).max(ext.start) - off) / chunk;
        for c in first..=last {
            if out.last().is_some_and(|cp| cp.chunk >= c) {
                continue; // counted whole already (an extent boundary inside the chunk)
            }
            let start = off.saturating_add(c * chunk);
            let end = start.saturating_add(chunk).min(off.saturating_add(len));
            let bits = popcount_stored(src, start..end)?;
            out.push(Checkpoint {
                chunk: c,
                before: count,
                through: count.saturating_add(bits),
            });
            count = count.saturating_add(bits);
        }
    }
    Ok(out)
}

/// Set bits in the stored parts of `range` (the rest reads as zeros).
fn popcount_stored(src: &dyn ByteSource, range: std::ops::Range<u64>) -> Result<u64, SourceError> {
    let mut n = 0u64;
    for ext in src.stored(range) {
        let mut at = ext.start;
        while at < ext.end {
            let len = (ext.end - at).min(1 << 20);
            let bytes = src.bytes(at, len as usize)?;
            n = n.saturating_add(popcount(&bytes));
            at += len;
        }
    }
    Ok(n)
}

fn popcount(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut n: u64 = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        n += u64::from(u64::from_ne_bytes(w).count_ones());
    }
    n + chunks
        .remainder()
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum::<u64>()
}

/// VMCOREINFO from the sub-header's offset/size (v3+), else from a VMCOREINFO note among the ELF notes (v4+).
fn find_vmcoreinfo(
    src: &dyn ByteSource,
    info: Option<(u64, u64)>,
    notes: Option<(u64, u64)>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let mut read = |what: &str, (off, size): (u64, u64)| -> Option<Vec<u8>> {
        if off == 0 || size == 0 || off > i64::MAX as u64 {
            return None;
        }
        if size > MAX_INFO_BYTES {
            warnings.push(format!(
                "kdump {what}: {size:#x} bytes at {off:#x}, over {MAX_INFO_BYTES:#x}: not read"
            ));
            return None;
        }
        match src.bytes(off, size as usize) {
            Ok(b) => Some(b.into_owned()),
            Err(e) => {
                warnings.push(format!("kdump {what} at file offset {off:#x}: {e}"));
                None
            }
        }
    };
    if let Some(text) = info.and_then(|loc| read("VMCOREINFO", loc)) {
        return Some(vmcoreinfo::text_of(&text));
    }
    notes
        .and_then(|loc| read("ELF notes", loc))
        .and_then(|data| vmcoreinfo::find_in_notes(&data))
}

/// The last few decompressed pages, least recently used evicted first.
#[derive(Default)]
struct PageCache {
    slots: Vec<Slot>,
    tick: u64,
}

struct Slot {
    pfn: u64,
    used: u64,
    data: Box<[u8]>,
}

impl PageCache {
    fn copy_out(&mut self, pfn: u64, in_page: usize, out: &mut [u8]) -> bool {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        let Some(slot) = self.slots.iter_mut().find(|s| s.pfn == pfn) else {
            return false;
        };
        let Some(part) = slot.data.get(in_page..in_page.saturating_add(out.len())) else {
            return false;
        };
        out.copy_from_slice(part);
        slot.used = tick;
        true
    }

    fn insert(&mut self, pfn: u64, data: Box<[u8]>) {
        self.tick = self.tick.wrapping_add(1);
        let slot = Slot {
            pfn,
            used: self.tick,
            data,
        };
        if let Some(s) = self.slots.iter_mut().find(|s| s.pfn == pfn) {
            *s = slot;
        } else if self.slots.len() < CACHE_PAGES {
            self.slots.push(slot);
        } else if let Some(lru) = self.slots.iter_mut().min_by_key(|s| s.used) {
            *lru = slot;
        }
    }
}

/// Decompression contexts kept for reuse, at most (one per reading thread).
const MAX_DECODERS: usize = 4;

/// Reusable decompression contexts.
#[derive(Default)]
struct Decoders {
    zlib: Option<flate2::Decompress>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoders {
    /// Decompresses one page; its output must be exactly `page` bytes. Output is never larger than `page`.
    fn decompress(&mut self, method: u32, input: &[u8], page: usize) -> Result<Box<[u8]>, String> {
        let mut out = vec![0u8; page].into_boxed_slice();
        let n = match method {
            COMPRESS_ZLIB => {
                let z = self
                    .zlib
                    .get_or_insert_with(|| flate2::Decompress::new(true));
                z.reset(true);
                let status = z
                    .decompress(input, &mut out, flate2::FlushDecompress::Finish)
                    .map_err(|e| format!("zlib: {e}"))?;
                if status != flate2::Status::StreamEnd {
                    return Err(format!(
                        "zlib: stream does not end within {page:#x} bytes of output ({status:?})"
                    ));
                }
                usize::try_from(z.total_out()).unwrap_or(usize::MAX)
            }
            COMPRESS_LZO => lzo::decompress_into(input, &mut out).map_err(|e| e.to_string())?,
            COMPRESS_SNAPPY => {
                let len = snap::raw::decompress_len(input).map_err(|e| format!("snappy: {e}"))?;
                if len != page {
                    return Err(format!(
                        "snappy: uncompressed length {len:#x}, not {page:#x}"
                    ));
                }
                snap::raw::Decoder::new()
                    .decompress(input, &mut out)
                    .map_err(|e| format!("snappy: {e}"))?
            }
            COMPRESS_ZSTD => {
                if self.zstd.is_none() {
                    self.zstd = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| format!("zstd: context: {e}"))?,
                    );
                }
                let z = self.zstd.as_mut().ok_or("zstd: no context")?;
                z.decompress_to_buffer(input, &mut out[..])
                    .map_err(|e| format!("zstd: {e}"))?
            }
            other => return Err(format!("unknown compression flags {other:#x}")),
        };
        if n != page {
            return Err(format!(
                "decompressed to {n:#x} bytes, not a {page:#x}-byte page"
            ));
        }
        Ok(out)
    }
}

/// A kdump-compressed dump: its headers over the file's bytes.
pub struct KdumpDump {
    src: Box<dyn ByteSource + Send + Sync>,
    h: Headers,
}

impl KdumpDump {
    /// Parses the headers, checks every region against the file, builds the rank index and finds VMCOREINFO.
    pub fn parse(src: Box<dyn ByteSource + Send + Sync>) -> Result<KdumpDump, HeaderError> {
        let h = Headers::parse(src.as_ref())?;
        Ok(KdumpDump { src, h })
    }

    /// What the headers say.
    pub fn info(&self) -> &KdumpInfo {
        &self.h.info
    }

    /// Number of pages in the decompressed-page cache (bounded).
    pub fn cached_pages(&self) -> usize {
        self.h.cached_pages()
    }
}

impl PhysMemory for KdumpDump {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.h.read_phys(self.src.as_ref(), paddr, buf)
    }
}

impl PhysSource for KdumpDump {
    /// The signature's kind, and the compressions announced by the header or met in descriptors so far.
    fn format(&self) -> DumpFormat {
        let kind = if self.h.info.signature == "DISKDUMP" {
            FormatKind::Diskdump
        } else {
            FormatKind::Kdump
        };
        DumpFormat {
            compressions: compression_names(self.h.compressions()),
            ..DumpFormat::plain(kind)
        }
    }

    fn vmcoreinfo(&self) -> Option<&str> {
        self.h.vmcoreinfo.as_deref()
    }

    /// utsname's machine field; QEMU fills only this one (see [`Machine::from_uname`]).
    fn machine(&self) -> Option<Machine> {
        Machine::from_uname(&self.h.info.machine)
    }

    fn page_size(&self) -> u64 {
        self.h.page_size()
    }

    /// Scans the 1st bitmap.
    fn phys_ranges(&self) -> Vec<Range<u64>> {
        self.h.phys_ranges(self.src.as_ref())
    }

    /// The dumped pages (2nd bitmap): excluded pages read as zeros and hold nothing to find.
    fn backed_ranges(&self) -> Vec<Range<u64>> {
        self.h.dumped_ranges(self.src.as_ref())
    }

    fn warnings(&self) -> &[String] {
        &self.h.warnings
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
