//! LiME snapshots, and the record walk and physical index shared with AVML's compressed snapshots.
//!
//! A LiME file (LiME's `lime` format; AVML without `--compress`) is a sequence of records, each a 32-byte
//! header and then its data. The header is LiME's `lime_mem_range_header` (`src/lime.h`), little-endian:
//! {magic u32 (0), version u32 (4), s_addr u64 (8), e_addr u64 (16), reserved [u8; 8] (24)}.
//! - magic 0x4C694D45 ("EMiL" in the file), version 1: `e_addr − s_addr + 1` raw bytes of physical memory
//!   follow. `e_addr` is inclusive: LiME's `write_lime_header` copies a `struct resource`'s start and end,
//!   and AVML's `Header::encode` (`src/image.rs`) writes `range.end − 1`.
//! - magic 0x4C4D5641 ("AVML" in the file), version 2: AVML's `--compress` form; the same bytes as one
//!   Snappy framing-format stream, then a u64 LE holding the stream's length. [`super::avml`] indexes and
//!   reads those streams; this module walks the headers of both kinds and keeps the physical index.
//! - reserved: zero (LiME zeroes the header; AVML's `Header::read` refuses anything else).
//!
//! Physical addresses in no record are not in the snapshot. LiME writes one record per "System RAM" range of
//! `/proc/iomem`. AVML (`Image::copy_block`) splits ranges into records of at most 16 MiB (`MAX_BLOCK_SIZE`
//! = 0x1000 × 0x1000) and writes no record for a block that is all zeros, so in AVML's output a gap may also
//! be RAM that held zeros. It still reads as not in the dump: the file cannot tell the two apart.
//!
//! Reader rules (the file is evidence and may be damaged: nothing here panics or trusts a length):
//! - One pass over the record headers builds the index. Raw data is never read; an AVML stream is walked
//!   by its chunk headers, never decompressed. Each record consumes at least 32 bytes of the file and each
//!   indexed chunk at least 9, so the index grows with the file, never with a header field (about 100 bytes
//!   per record and 16 per chunk: 256 KiB for 1 GiB of memory in 64 KiB chunks), and no allocation is
//!   sized by a header field.
//! - A file whose first header is not a LiME or AVML record header is not a snapshot: [`HeaderError`].
//! - After the first record, a bad magic or version ends the walk with a warning (the rest of the file is
//!   unreadable), and so do fewer than 32 bytes left over (trailing garbage).
//! - Records are indexed by physical address whatever their order in the file (out of order: a warning).
//!   Where records overlap, the later one in the file wins, as `makedumpfile -R` lets later data overwrite
//!   earlier (a warning per overlap).
//! - A record whose end is below its start holds no data (`e_addr = s_addr − 1` is a zero-length record;
//!   lower is an inverted range): a warning, and the next header is looked for right after it (for AVML,
//!   after its stream).
//! - A truncated last record keeps the bytes present. An address that a record claims but cannot serve (the
//!   file ends first, an AVML chunk is damaged) fails with [`ReadError::Corrupt`] naming the address and
//!   why; an address that no record claims fails with [`ReadError::NotInDump`]. A read spanning records or
//!   chunks fails at its first byte that cannot be served, and names that byte.
//! - A record ending at physical address 2^64 − 1 cannot be indexed by exclusive ranges (and no machine has
//!   memory there): a warning, and the walk stops.
//! - Warnings are collected (the first 64, then a count of the rest) and returned by [`Lime::warnings`].

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use super::avml::{self, AVML_MAGIC, AVML_VERSION, Chunk, ChunkCache};
use super::{DumpFormat, FormatKind, HeaderError, PhysSource};
use crate::arch::Machine;
use crate::memory::{PhysMemory, ReadError, read_split};

/// LiME's `LIME_MAGIC` ("EMiL" as the file's bytes).
pub const LIME_MAGIC: u32 = 0x4C69_4D45;
/// The only version LiME writes.
pub const LIME_VERSION: u32 = 1;
/// Size of a record header (`sizeof(lime_mem_range_header)`).
pub const HEADER_LEN: u64 = 32;
/// Warnings kept; later ones are counted.
pub const MAX_WARNINGS: usize = 64;

/// The two members of the LiME family, told apart by a record header's magic and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimeFormat {
    /// LiME (magic 0x4C694D45, version 1): raw physical memory after each header.
    Lime,
    /// AVML's compressed form (magic 0x4C4D5641, version 2): a Snappy frame stream after each header.
    Avml,
}

impl LimeFormat {
    /// Name for display: "lime" or "avml (snappy)".
    pub fn name(self) -> &'static str {
        match self {
            LimeFormat::Lime => "lime",
            LimeFormat::Avml => "avml (snappy)",
        }
    }
}

impl fmt::Display for LimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Tells LiME from AVML by a file's first bytes (at least one 32-byte record header); `None` for anything
/// else, including a file shorter than one header.
pub fn recognise(head: &[u8]) -> Option<LimeFormat> {
    header_at(head, 0).map(|h| h.format)
}

/// One record header with a known magic and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) format: LimeFormat,
    /// First physical address.
    pub(super) start: u64,
    /// Last physical address (inclusive).
    pub(super) end: u64,
    pub(super) reserved: u64,
}

pub(super) fn u32_at(b: &[u8], off: u64) -> Option<u32> {
    let o = usize::try_from(off).ok()?;
    let s = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub(super) fn u64_at(b: &[u8], off: u64) -> Option<u64> {
    let o = usize::try_from(off).ok()?;
    let s = b.get(o..o.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// The record header at `off` of `file`, if 32 bytes are there and their magic and version are LiME's or
/// AVML's.
pub(super) fn header_at(file: &[u8], off: u64) -> Option<Header> {
    let magic = u32_at(file, off)?;
    let version = u32_at(file, off.checked_add(4)?)?;
    let format = match (magic, version) {
        (LIME_MAGIC, LIME_VERSION) => LimeFormat::Lime,
        (AVML_MAGIC, AVML_VERSION) => LimeFormat::Avml,
        _ => return None,
    };
    Some(Header {
        format,
        start: u64_at(file, off.checked_add(8)?)?,
        end: u64_at(file, off.checked_add(16)?)?,
        reserved: u64_at(file, off.checked_add(24)?)?,
    })
}

/// Why the bytes at `off` are not a record header.
fn not_a_header(file: &[u8], off: u64) -> String {
    let left = (file.len() as u64).saturating_sub(off);
    let (Some(magic), Some(version), true) = (
        u32_at(file, off),
        u32_at(file, off.saturating_add(4)),
        left >= HEADER_LEN,
    ) else {
        return format!("only {left} bytes, fewer than a {HEADER_LEN}-byte record header");
    };
    let hint = if [LIME_MAGIC, AVML_MAGIC].contains(&magic.swap_bytes()) {
        " (a big-endian snapshot? only little-endian ones are read)"
    } else {
        ""
    };
    format!(
        "magic {magic:#010x} version {version} is neither LiME's ({LIME_MAGIC:#010x}, version {LIME_VERSION}) \
         nor AVML's ({AVML_MAGIC:#010x}, version {AVML_VERSION}){hint}"
    )
}

/// Names a record in messages: "LiME record #3 (header at file offset 0x60)".
#[derive(Clone, Copy, Debug)]
pub(super) struct RecordName {
    pub(super) format: LimeFormat,
    pub(super) seq: usize,
    pub(super) header_off: u64,
}

impl fmt::Display for RecordName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.format {
            LimeFormat::Lime => "LiME",
            LimeFormat::Avml => "AVML",
        };
        write!(
            f,
            "{kind} record #{} (header at file offset {:#x})",
            self.seq, self.header_off
        )
    }
}

/// Warnings of one parse: the first [`MAX_WARNINGS`] kept, the rest counted.
#[derive(Debug, Default)]
pub(super) struct Warnings {
    list: Vec<String>,
    dropped: u64,
}

impl Warnings {
    pub(super) fn push(&mut self, w: String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(w);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.list
                .push(format!("… and {} more warnings not shown", self.dropped));
        }
        self.list
    }
}

/// Non-overlapping physical ranges, each mapped to a value; an insert wins over what was there before.
#[derive(Debug)]
struct RangeMap<V> {
    /// start → (end, value).
    map: BTreeMap<u64, (u64, V)>,
}

impl<V: Copy> RangeMap<V> {
    fn new() -> Self {
        RangeMap {
            map: BTreeMap::new(),
        }
    }

    /// Maps `range` to `v`, cutting it out of earlier entries; returns the parts displaced, in address
    /// order. Each insert adds at most three entries, and removes every entry it returns.
    fn insert(&mut self, range: Range<u64>, v: V) -> Vec<(Range<u64>, V)> {
        if range.start >= range.end {
            return Vec::new();
        }
        // Entries are disjoint and sorted: walking back from the last one starting below range.end, those
        // ending above range.start overlap, and the first that does not ends the overlapping run.
        let hit: Vec<u64> = self
            .map
            .range(..range.end)
            .rev()
            .take_while(|(_, (end, _))| *end > range.start)
            .map(|(&start, _)| start)
            .collect();
        let mut displaced = Vec::with_capacity(hit.len());
        for start in hit.into_iter().rev() {
            let Some((end, old)) = self.map.remove(&start) else {
                continue;
            };
            displaced.push((start.max(range.start)..end.min(range.end), old));
            if start < range.start {
                self.map.insert(start, (range.start, old));
            }
            if end > range.end {
                self.map.insert(range.end, (end, old));
            }
        }
        self.map.insert(range.start, (range.end, v));
        displaced
    }

    /// The entry holding `addr`.
    fn get(&self, addr: u64) -> Option<(Range<u64>, V)> {
        let (&start, &(end, v)) = self.map.range(..=addr).next_back()?;
        (addr < end).then_some((start..end, v))
    }

    fn iter(&self) -> impl Iterator<Item = (Range<u64>, V)> + '_ {
        self.map.iter().map(|(&start, &(end, v))| (start..end, v))
    }
}

/// Where a record's bytes are.
#[derive(Clone, Debug)]
enum Body {
    /// LiME: raw, from this file offset.
    Raw { data_off: u64 },
    /// AVML: these entries of [`Lime::chunks`].
    Snappy { chunks: Range<usize> },
}

#[derive(Clone, Debug)]
struct Record {
    name: RecordName,
    /// Physical address of the record's first byte.
    start: u64,
    body: Body,
}

/// A LiME or AVML snapshot, indexed by physical address.
pub struct Lime<D> {
    data: D,
    format: LimeFormat,
    records: Vec<Record>,
    /// Data chunks of every AVML record, each record's run sorted by position.
    chunks: Vec<Chunk>,
    /// Physical ranges the records serve → index into `records`.
    served: RangeMap<usize>,
    /// Physical ranges records claim but cannot serve → index into `damage`.
    damaged: RangeMap<usize>,
    damage: Vec<String>,
    warnings: Vec<String>,
    cache: ChunkCache,
}

impl<D> fmt::Debug for Lime<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lime")
            .field("format", &self.format)
            .field("records", &self.records.len())
            .field("chunks", &self.chunks.len())
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}

/// What one parse accumulates before it becomes a [`Lime`].
struct Index {
    records: Vec<Record>,
    chunks: Vec<Chunk>,
    served: RangeMap<usize>,
    damaged: RangeMap<usize>,
    damage: Vec<String>,
    warnings: Warnings,
    /// Warned once each.
    mixed_warned: bool,
    reserved_warned: bool,
    order_warned: bool,
    /// Physical start of the previous record in the file.
    prev_start: Option<u64>,
}

impl Index {
    /// Adds the record-relative range `rel` of record `seq` (whose first byte is at `start`) to the served
    /// map; warns where it overlaps earlier records.
    fn serve(&mut self, seq: usize, start: u64, rel: Range<u64>) {
        let phys = start.saturating_add(rel.start)..start.saturating_add(rel.end);
        let displaced = self.served.insert(phys.clone(), seq);
        let (Some(first), Some(last)) = (displaced.first(), displaced.last()) else {
            return;
        };
        let overlap = first.0.start..last.0.end;
        let mut others: Vec<usize> = displaced.iter().map(|(_, s)| *s).collect();
        others.dedup();
        let names: Vec<String> = others
            .iter()
            .take(3)
            .filter_map(|&s| self.records.get(s).map(|r| format!("#{}", r.name.seq)))
            .collect();
        let more = if others.len() > 3 { ", …" } else { "" };
        let name = self.records.get(seq).map(|r| r.name.to_string());
        self.warnings.push(format!(
            "{}: physical {:#x}..{:#x} overlaps earlier record(s) {}{more} at {:#x}..{:#x}: the later record's \
             bytes are read there (later data wins, as makedumpfile -R rebuilds a file)",
            name.unwrap_or_default(),
            phys.start,
            phys.end,
            names.join(", "),
            overlap.start,
            overlap.end,
        ));
    }

    /// Marks the record-relative range `rel` of a record starting at `start` as claimed but unreadable.
    fn damage(&mut self, start: u64, rel: Range<u64>, msg: String) {
        let phys = start.saturating_add(rel.start)..start.saturating_add(rel.end);
        if phys.is_empty() {
            return;
        }
        let id = self.damage.len();
        self.damage.push(msg);
        self.damaged.insert(phys, id);
    }

    /// Indexes one record whose header `h` is at `name.header_off`; returns the file offset of the next
    /// header, or `None` when the walk must stop.
    fn walk_record(&mut self, file: &[u8], h: Header, name: RecordName) -> Option<u64> {
        let file_len = file.len() as u64;
        let pos = name.header_off;
        let data_off = pos.checked_add(HEADER_LEN)?;
        if let Some(first) = self.records.first()
            && first.name.format != h.format
            && !self.mixed_warned
        {
            self.mixed_warned = true;
            self.warnings.push(format!(
                    "{name}: the file mixes LiME (version 1) and AVML (version 2) records; each is read by its \
                     own header"
                ));
        }
        if h.reserved != 0 && !self.reserved_warned {
            self.reserved_warned = true;
            self.warnings.push(format!(
                "{name}: reserved header field is {:#x}, not 0 (LiME and AVML write 0); read anyway",
                h.reserved
            ));
        }
        if h.end == u64::MAX {
            self.warnings.push(format!(
                "{name}: last physical address {:#x} is the top of the 64-bit space (no memory is there): a \
                 damaged header; the last {:#x} bytes of the file are not read",
                h.end,
                file_len.saturating_sub(pos)
            ));
            return None;
        }
        // end < u64::MAX, so end + 1 cannot overflow; None: the record holds nothing.
        let len = (h.end >= h.start).then(|| h.end - h.start + 1);
        if let Some(prev) = self.prev_start
            && len.is_some()
            && h.start < prev
            && !self.order_warned
        {
            self.order_warned = true;
            self.warnings.push(format!(
                    "{name}: physical {:#x} comes after a record at {prev:#x}: records are not in address \
                     order; the index sorts them",
                    h.start
                ));
        }
        if len.is_some() {
            self.prev_start = Some(h.start);
        }
        if len.is_none() {
            let what = if h.end.wrapping_add(1) == h.start {
                "a zero-length record (end = start − 1)"
            } else {
                "an inverted range (end < start)"
            };
            let after = match h.format {
                LimeFormat::Lime => "the next header is read right after this one",
                LimeFormat::Avml => "its stream is skipped",
            };
            self.warnings.push(format!(
                "{name}: physical {:#x}..={:#x} is {what}: no data; {after}",
                h.start, h.end
            ));
        }
        let seq = self.records.len();
        match h.format {
            LimeFormat::Lime => {
                self.records.push(Record {
                    name,
                    start: h.start,
                    body: Body::Raw { data_off },
                });
                let Some(len) = len else {
                    return Some(data_off);
                };
                let avail = len.min(file_len.saturating_sub(data_off));
                self.serve(seq, h.start, 0..avail);
                if avail < len {
                    let msg = format!(
                        "{name}: the file ends {avail:#x} bytes into the record's {len:#x} bytes (physical \
                         {:#x}..={:#x}): truncated snapshot",
                        h.start, h.end
                    );
                    self.warnings.push(format!(
                        "{msg}; physical {:#x}..={:#x} is unreadable",
                        h.start.saturating_add(avail),
                        h.end
                    ));
                    self.damage(h.start, avail..len, msg);
                    return None;
                }
                data_off.checked_add(len)
            }
            LimeFormat::Avml => {
                let s = avml::index_stream(file, data_off, len, name, &mut self.warnings);
                let first_chunk = self.chunks.len();
                self.chunks.extend(s.chunks);
                self.records.push(Record {
                    name,
                    start: h.start,
                    body: Body::Snappy {
                        chunks: first_chunk..self.chunks.len(),
                    },
                });
                for r in s.served {
                    self.serve(seq, h.start, r);
                }
                for (r, msg) in s.damaged {
                    self.damage(h.start, r, msg);
                }
                s.next
            }
        }
    }
}

impl<D: AsRef<[u8]>> Lime<D> {
    /// Indexes the snapshot `data` (a LiME or AVML file, usually memory-mapped) in one pass over its record
    /// headers. Fails only when the first record header is unusable; every later problem is a warning.
    pub fn parse(data: D) -> Result<Self, HeaderError> {
        Self::parse_with(data, |_, _| {})
    }

    /// [`Lime::parse`], calling `progress(data, pos)` after each record with the file offset reached, so a
    /// caller can let go of what it has passed (the mapped pages of a large file: walking an AVML stream's
    /// chunk headers touches every page of it).
    pub fn parse_with(data: D, mut progress: impl FnMut(&D, u64)) -> Result<Self, HeaderError> {
        let file = data.as_ref();
        let file_len = file.len() as u64;
        let first = header_at(file, 0).ok_or_else(|| HeaderError {
            what: "LiME/AVML record header",
            offset: 0,
            msg: not_a_header(file, 0),
        })?;
        let mut ix = Index {
            records: Vec::new(),
            chunks: Vec::new(),
            served: RangeMap::new(),
            damaged: RangeMap::new(),
            damage: Vec::new(),
            warnings: Warnings::default(),
            mixed_warned: false,
            reserved_warned: false,
            order_warned: false,
            prev_start: None,
        };
        let mut pos = 0u64;
        // Each turn consumes at least HEADER_LEN bytes (a header, then data or a stream whose end is past
        // the header) or ends the walk: at most file_len / 32 turns.
        while pos < file_len {
            let Some(h) = header_at(file, pos) else {
                ix.warnings.push(format!(
                    "file offset {pos:#x}: not a record header ({}): trailing garbage or a damaged header; the \
                     last {:#x} bytes of the file are not read",
                    not_a_header(file, pos),
                    file_len.saturating_sub(pos)
                ));
                break;
            };
            let name = RecordName {
                format: h.format,
                seq: ix.records.len(),
                header_off: pos,
            };
            let Some(next) = ix.walk_record(file, h, name) else {
                break;
            };
            if next <= pos {
                // Cannot happen (a record ends past its header); stop rather than loop.
                break;
            }
            pos = next;
            progress(&data, pos);
        }
        let Index {
            records,
            chunks,
            served,
            damaged,
            damage,
            warnings,
            ..
        } = ix;
        Ok(Lime {
            data,
            format: first.format,
            records,
            chunks,
            served,
            damaged,
            damage,
            warnings: warnings.finish(),
            cache: ChunkCache::new(),
        })
    }

    /// The format of the first record: "lime" or "avml (snappy)".
    pub fn format(&self) -> LimeFormat {
        self.format
    }

    /// Physical ranges that reads can serve: sorted, adjacent ranges merged.
    pub fn phys_ranges(&self) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for (r, _) in self.served.iter() {
            match out.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => out.push(r),
            }
        }
        out
    }

    /// What the parse found wrong but read around.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of record headers read (including empty and truncated records).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Why `paddr`, served by no record, cannot be read.
    fn miss(&self, paddr: u64) -> ReadError {
        match self
            .damaged
            .get(paddr)
            .and_then(|(_, id)| self.damage.get(id))
        {
            Some(msg) => ReadError::Corrupt {
                paddr,
                msg: msg.clone(),
            },
            None => ReadError::NotInDump { paddr },
        }
    }

    /// Decompressed chunks held by the cache, and their bytes (bounded).
    pub fn cache_usage(&self) -> (usize, usize) {
        self.cache.usage()
    }
}

impl<D: AsRef<[u8]>> PhysMemory for Lime<D> {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let file = self.data.as_ref();
        read_split(paddr, buf, |cur, out| {
            let (range, seq) = self.served.get(cur).ok_or_else(|| self.miss(cur))?;
            let rec = self.records.get(seq).ok_or_else(|| ReadError::Corrupt {
                paddr: cur,
                msg: format!("index names record #{seq}, which does not exist"),
            })?;
            let n = usize::try_from(range.end - cur).map_or(out.len(), |n| n.min(out.len()));
            let total = out.len();
            let out = out.get_mut(..n).ok_or(ReadError::TooLarge {
                addr: cur,
                len: total,
            })?;
            let rec_off = cur - rec.start;
            match &rec.body {
                Body::Raw { data_off } => {
                    let part = data_off
                        .checked_add(rec_off)
                        .and_then(|o| usize::try_from(o).ok())
                        .and_then(|o| file.get(o..o.checked_add(n)?))
                        .ok_or_else(|| ReadError::Corrupt {
                            paddr: cur,
                            msg: format!("{}: data lies past the end of the file", rec.name),
                        })?;
                    out.copy_from_slice(part);
                }
                Body::Snappy { chunks } => {
                    let chunks = self.chunks.get(chunks.clone()).unwrap_or_default();
                    avml::read_stream(
                        file,
                        chunks,
                        rec.name,
                        rec.start,
                        rec_off,
                        out,
                        &self.cache,
                    )?;
                }
            }
            Ok(n)
        })
    }
}

impl<D: AsRef<[u8]> + Send + Sync + 'static> PhysSource for Lime<D> {
    fn format(&self) -> DumpFormat {
        DumpFormat::plain(match self.format() {
            LimeFormat::Lime => FormatKind::Lime,
            LimeFormat::Avml => FormatKind::Avml,
        })
    }

    /// Snapshots carry no VMCOREINFO: the kernel is found by scanning.
    fn vmcoreinfo(&self) -> Option<&str> {
        None
    }

    /// Neither format names the machine.
    fn machine(&self) -> Option<Machine> {
        None
    }

    fn page_size(&self) -> u64 {
        4096
    }

    fn phys_ranges(&self) -> Vec<Range<u64>> {
        Lime::phys_ranges(self)
    }

    fn warnings(&self) -> &[String] {
        Lime::warnings(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
