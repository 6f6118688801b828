//! AVML's compressed snapshots: indexing and reading the Snappy stream inside each version-2 record.
//!
//! AVML (`avml --compress`; its `src/image.rs` and `src/io/snappy.rs`) writes LiME's 32-byte record header
//! with magic 0x4C4D5641 ("AVML" in the file) and version 2, then the record's `e_addr − s_addr + 1` bytes
//! as ONE complete stream in Snappy's framing format (the `snap` crate's `FrameEncoder`), then a u64 LE
//! holding that stream's length in bytes (`SnapCountWriter::finalize`), then the next record. There is no
//! index: AVML's own converter decompresses the records front to back. The record-header walk and the
//! physical index live in [`super::lime`], shared with raw LiME records; this module walks one stream's
//! chunks, and reads them.
//!
//! The framing format (Snappy's `framing_format.txt`) is a sequence of chunks {type u8, length u24 LE, body}:
//! - 0xff stream identifier, body "sNaPpY": first in a stream, and may repeat (concatenated streams);
//! - 0x00 compressed data: the masked CRC-32C (u32 LE) of the uncompressed data, then one raw Snappy block,
//!   whose varint preamble gives its uncompressed length;
//! - 0x01 uncompressed data: the masked CRC-32C, then the data;
//! - a data chunk holds at most 65536 uncompressed bytes (`snap`'s `FrameEncoder` cuts 65536-byte chunks and
//!   stores one uncompressed unless compression saves an eighth of it);
//! - 0xfe padding and 0x80–0xfd reserved skippable chunks are skipped; 0x02–0x7f are reserved unskippable,
//!   on which a decoder must fail;
//! - masked CRC = ((crc >> 15) | (crc << 17)) + 0xa282ead8, where crc is the CRC-32C (Castagnoli) of the
//!   uncompressed data.
//!
//! Indexing makes one pass and decompresses nothing: a data chunk's place in the record's bytes comes from
//! its block's preamble (`snap::raw::decompress_len`) or its data length. The stream ends where its chunks
//! have produced the header's length; the trailer must be there and hold the stream's length (padding or
//! skippable chunks may come first). A read decompresses only the chunks it touches, verifies each one's
//! CRC before using it, and keeps the last 64 (at most 4 MiB) in an LRU cache.
//!
//! Damage is a warning at index time, never a panic:
//! - A data chunk whose length cannot be known (unreadable preamble, shorter than its CRC), that claims
//!   more than 65536 bytes, or a reserved unskippable chunk (which may have carried data) loses the place
//!   of the chunks after it. The walk goes on over chunk headers to find the trailer (the walked length,
//!   followed by the end of the file or a record header); the chunks after the last bad one are then placed
//!   back from the record's end, since the stream must hold exactly the header's length, and the bytes in
//!   between fail reads with [`ReadError::Corrupt`]. A bad chunk that carried nothing (a reserved chunk
//!   between data chunks) so costs nothing but a warning.
//! - A bad CRC, or a block that does not decompress to its preamble's length, shows when a read needs that
//!   chunk: the read fails with [`ReadError::Corrupt`] naming the first physical address it wanted from the
//!   chunk; other chunks still read.
//! - Chunks holding fewer bytes than the header claims: the rest of the record fails reads
//!   ([`ReadError::Corrupt`]). More: the excess is ignored.
//! - A trailer that disagrees with the walked length: the next record header is looked for after the walked
//!   stream, else where the trailer points.
//! - A truncated stream or trailer keeps the chunks that are whole in the file; the walk of the file ends.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use super::lime::{RecordName, Warnings, header_at, u32_at, u64_at};
use crate::memory::{ReadError, read_in_pieces};

/// AVML's record magic ("AVML" as the file's bytes).
pub const AVML_MAGIC: u32 = 0x4C4D_5641;
/// The record version of AVML's compressed form.
pub const AVML_VERSION: u32 = 2;
/// Most uncompressed bytes one data chunk may hold (`framing_format.txt`).
pub const MAX_CHUNK_DATA: u64 = 65536;
/// The u64 after each stream.
const TRAILER_LEN: u64 = 8;
const CHUNK_HEADER_LEN: u64 = 4;
const CRC_LEN: usize = 4;
const STREAM_BODY: &[u8] = b"sNaPpY";
const TYPE_COMPRESSED: u8 = 0x00;
const TYPE_UNCOMPRESSED: u8 = 0x01;
const TYPE_STREAM_ID: u8 = 0xff;
/// Chunks kept decompressed: at most 64 × 64 KiB = 4 MiB.
const CACHE_SLOTS: usize = 64;

/// CRC-32C: the `crc` crate's slice-by-16 tables (16 KiB), built at compile time.
static CASTAGNOLI: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// The framing format's masked CRC-32C of `data`.
pub(super) fn masked_crc32c(data: &[u8]) -> u32 {
    CASTAGNOLI
        .checksum(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One data chunk of a record's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    /// Offset of its first uncompressed byte in the record.
    pub(super) pos: u64,
    /// File offset of its chunk header.
    pub(super) file_off: u64,
}

/// A chunk as it lies in the file.
struct RawChunk<'a> {
    kind: u8,
    body: &'a [u8],
    /// File offset just past the body.
    end: u64,
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        TYPE_COMPRESSED => "compressed",
        TYPE_UNCOMPRESSED => "uncompressed",
        0x02..=0x7f => "reserved unskippable",
        0x80..=0xfd => "reserved skippable",
        0xfe => "padding",
        _ => "stream identifier",
    }
}

/// The chunk at file offset `off`, or why it is not whole in the file.
fn chunk_at(file: &[u8], off: u64) -> Result<RawChunk<'_>, String> {
    let file_len = file.len() as u64;
    let head = u32_at(file, off).ok_or_else(|| {
        format!(
            "chunk header at file offset {off:#x} is cut short by the end of the file ({file_len:#x} bytes)"
        )
    })?;
    let kind = (head & 0xff) as u8;
    let len = u64::from(head >> 8);
    let body_off = off.saturating_add(CHUNK_HEADER_LEN);
    let end = body_off.saturating_add(len);
    let body = usize::try_from(body_off)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(b, e)| file.get(b..e))
        .ok_or_else(|| {
            format!(
                "{} chunk at file offset {off:#x} ({len:#x} bytes) runs past the end of the file \
                 ({file_len:#x} bytes)",
                kind_name(kind)
            )
        })?;
    Ok(RawChunk { kind, body, end })
}

/// Uncompressed length of a data chunk, or why it cannot be known or used.
fn data_len(kind: u8, body: &[u8]) -> Result<u64, String> {
    let payload = body
        .get(CRC_LEN..)
        .ok_or_else(|| format!("is {} bytes long, shorter than its 4-byte CRC", body.len()))?;
    let n = if kind == TYPE_COMPRESSED {
        snap::raw::decompress_len(payload)
            .map_err(|e| format!("has an unreadable block preamble ({e})"))? as u64
    } else {
        payload.len() as u64
    };
    if n > MAX_CHUNK_DATA {
        return Err(format!(
            "claims {n:#x} uncompressed bytes, more than the {MAX_CHUNK_DATA:#x} a chunk may hold"
        ));
    }
    Ok(n)
}

/// What indexing one record's stream gives.
#[derive(Debug, Default)]
pub(super) struct StreamIndex {
    /// Data chunks, sorted by position.
    pub(super) chunks: Vec<Chunk>,
    /// Record-relative ranges the chunks serve.
    pub(super) served: Vec<Range<u64>>,
    /// Record-relative ranges the header claims but no chunk can serve, and why.
    pub(super) damaged: Vec<(Range<u64>, String)>,
    /// File offset of the next record header; `None`: the file walk ends (truncated).
    pub(super) next: Option<u64>,
}

/// State of one stream walk.
struct Walk<'w> {
    name: RecordName,
    warnings: &'w mut Warnings,
    /// Chunks placed from the record's start.
    prefix: Vec<Chunk>,
    /// Uncompressed bytes of `prefix`.
    total: u64,
    /// Set at the first chunk that loses the place of those after it: its record offset and why.
    lost: Option<(u64, String)>,
    /// Chunks after the last such chunk: (file offset, uncompressed length), placed from the end later.
    suffix: Vec<(u64, u64)>,
}

impl Walk<'_> {
    fn data(&mut self, file_off: u64, n: u64) {
        if n == 0 {
            return;
        }
        if self.lost.is_some() {
            self.suffix.push((file_off, n));
        } else {
            self.prefix.push(Chunk {
                pos: self.total,
                file_off,
            });
            self.total = self.total.saturating_add(n);
        }
    }

    /// A chunk whose uncompressed length is unknown or unusable, and why (naming the chunk).
    fn lose(&mut self, why: String) {
        let name = self.name;
        let msg = format!("{name}: {why}");
        if self.lost.is_none() {
            self.warnings.push(format!(
                "{msg}: the chunks after it are placed back from the record's end if the stream ends cleanly"
            ));
            self.lost = Some((self.total, msg));
        } else {
            self.warnings.push(format!(
                "{msg}: the chunks between it and the previous bad chunk cannot be placed"
            ));
            self.suffix.clear();
        }
    }
}

/// Indexes the stream starting at file offset `stream_off` of a version-2 record holding `len` bytes
/// (`None`: its header's range is empty or inverted, so nothing is served, but the stream is still walked
/// to find the next record).
pub(super) fn index_stream(
    file: &[u8],
    stream_off: u64,
    len: Option<u64>,
    name: RecordName,
    warnings: &mut Warnings,
) -> StreamIndex {
    let file_len = file.len() as u64;
    let mut w = Walk {
        name,
        warnings,
        prefix: Vec::new(),
        total: 0,
        lost: None,
        suffix: Vec::new(),
    };
    let mut pos = stream_off;
    let mut first = true;
    let next: Option<u64>;
    // Each turn consumes one whole chunk (at least 4 bytes of the file) or ends the walk.
    loop {
        let walked = pos.saturating_sub(stream_off);
        let trailer = u64_at(file, pos);
        let after_trailer = pos.saturating_add(TRAILER_LEN);
        if w.lost.is_none() && len.is_some_and(|l| w.total >= l) {
            // The chunks hold the header's length: the stream ends here.
            if trailer == Some(walked) {
                next = Some(after_trailer);
                break;
            }
            // Padding, skippable chunks or another stream identifier may come before the trailer.
            if let Ok(c) = chunk_at(file, pos)
                && c.kind >= 0x80
            {
                check_identifier(&mut w, &c, pos);
                pos = c.end;
                first = false;
                continue;
            }
            let Some(t) = trailer else {
                w.warnings.push(format!(
                    "{name}: the trailer at file offset {pos:#x} is cut short by the end of the file \
                     ({file_len:#x} bytes): truncated snapshot (the record's data is whole)"
                ));
                next = None;
                break;
            };
            let by_trailer = stream_off
                .checked_add(t)
                .and_then(|e| e.checked_add(TRAILER_LEN));
            let (at, how) = if header_at(file, after_trailer).is_some() || after_trailer == file_len
            {
                (after_trailer, "the walked length is trusted")
            } else if let Some(o) = by_trailer.filter(|&o| o > pos && header_at(file, o).is_some())
            {
                // Only forward, so the walk of the file never revisits bytes.
                (
                    o,
                    "a record header follows where the trailer points, so it is trusted",
                )
            } else {
                (after_trailer, "the walked length is trusted")
            };
            w.warnings.push(format!(
                "{name}: the trailer at file offset {pos:#x} says the stream is {t:#x} bytes, but its chunks \
                 take {walked:#x}: {how}"
            ));
            next = Some(at);
            break;
        }
        // A stream may also end before the header's length, or after a chunk that lost the count: its
        // trailer is the walked length followed by the end of the file or another record header.
        if trailer == Some(walked)
            && (after_trailer == file_len || header_at(file, after_trailer).is_some())
        {
            next = Some(after_trailer);
            break;
        }
        let c = match chunk_at(file, pos) {
            Ok(c) => c,
            Err(e) => {
                let e = if pos >= file_len {
                    format!(
                        "the file ends at {file_len:#x}, inside the stream and before its trailer"
                    )
                } else {
                    e
                };
                w.warnings.push(format!("{name}: {e}: truncated snapshot"));
                next = None;
                break;
            }
        };
        match c.kind {
            TYPE_COMPRESSED | TYPE_UNCOMPRESSED => match data_len(c.kind, c.body) {
                Ok(n) => w.data(pos, n),
                Err(e) => w.lose(format!(
                    "{} chunk at file offset {pos:#x} {e}",
                    kind_name(c.kind)
                )),
            },
            0x02..=0x7f => w.lose(format!(
                "reserved unskippable chunk type {:#04x} at file offset {pos:#x} ({:#x} bytes), which no \
                 decoder may skip",
                c.kind,
                c.body.len()
            )),
            _ => check_identifier(&mut w, &c, pos),
        }
        if first && c.kind != TYPE_STREAM_ID {
            w.warnings.push(format!(
                "{name}: the stream at file offset {stream_off:#x} does not start with a stream identifier \
                 chunk; read anyway"
            ));
        }
        first = false;
        pos = c.end;
    }
    finish(w, len, next)
}

/// Warns about a stream identifier chunk whose body is not "sNaPpY".
fn check_identifier(w: &mut Walk<'_>, c: &RawChunk<'_>, pos: u64) {
    if c.kind == TYPE_STREAM_ID && c.body != STREAM_BODY {
        w.warnings.push(format!(
            "{}: stream identifier chunk at file offset {pos:#x} does not hold \"sNaPpY\"; skipped",
            w.name
        ));
    }
}

/// Places the walked chunks in a record of `len` bytes.
fn finish(w: Walk<'_>, len: Option<u64>, next: Option<u64>) -> StreamIndex {
    let name = w.name;
    let Some(len) = len else {
        return StreamIndex {
            next,
            ..StreamIndex::default()
        };
    };
    let mut out = StreamIndex {
        chunks: w.prefix,
        next,
        ..StreamIndex::default()
    };
    let Some((lost_at, why)) = w.lost else {
        let have = w.total.min(len);
        if have > 0 {
            out.served.push(0..have);
        }
        if w.total > len {
            w.warnings.push(format!(
                "{name}: its stream holds {:#x} bytes, more than the {len:#x} of its header: the excess is \
                 ignored",
                w.total
            ));
        } else if w.total < len {
            let msg = if next.is_none() {
                format!(
                    "{name}: the file ends inside its stream after {have:#x} of the record's {len:#x} bytes: \
                     truncated snapshot"
                )
            } else {
                format!(
                    "{name}: its stream holds {have:#x} bytes, fewer than the {len:#x} of its header: the rest \
                     is missing"
                )
            };
            w.warnings.push(format!(
                "{msg}; record offsets {have:#x}..{len:#x} are unreadable"
            ));
            out.damaged.push((have..len, msg));
        }
        return out;
    };
    let lost_at = lost_at.min(len);
    if lost_at > 0 {
        out.served.push(0..lost_at);
    }
    let suffix_len = w
        .suffix
        .iter()
        .try_fold(0u64, |acc, &(_, n)| acc.checked_add(n));
    // The stream must hold exactly `len` bytes, so the chunks after the last bad one end at `len`.
    let anchor = match (next, suffix_len) {
        (Some(_), Some(s)) => len.checked_sub(s).filter(|&a| a >= lost_at),
        _ => None,
    };
    match anchor {
        Some(anchor) => {
            let mut p = anchor;
            for &(file_off, n) in &w.suffix {
                out.chunks.push(Chunk { pos: p, file_off });
                p = p.saturating_add(n);
            }
            if anchor < len {
                out.served.push(anchor..len);
            }
            if lost_at < anchor {
                w.warnings.push(format!(
                    "{name}: record offsets {lost_at:#x}..{anchor:#x} are unreadable (damaged chunks); the \
                     chunks after them ({}) are placed from the record's end",
                    w.suffix.len()
                ));
                out.damaged.push((lost_at..anchor, why));
            } else {
                w.warnings.push(format!(
                    "{name}: the damaged chunks held no data: every byte of the record is placed"
                ));
            }
        }
        None => {
            w.warnings.push(format!(
                "{name}: the chunks after the damaged one cannot be placed (the stream does not end cleanly \
                 or holds more than the header's {len:#x} bytes): record offsets {lost_at:#x}..{len:#x} are \
                 unreadable"
            ));
            out.damaged.push((lost_at..len, why));
        }
    }
    out
}

/// Fills `out` with the bytes of a record (`name`, first byte at physical `phys_start`) from record offset
/// `rec_off`, decompressing the chunks needed through `cache`. A fault names the first physical address of
/// `out` that could not be filled.
pub(super) fn read_stream(
    file: &[u8],
    chunks: &[Chunk],
    name: RecordName,
    phys_start: u64,
    rec_off: u64,
    out: &mut [u8],
    cache: &ChunkCache,
) -> Result<(), ReadError> {
    let start = phys_start.saturating_add(rec_off);
    let fault = |paddr: u64, msg: String| ReadError::Corrupt {
        paddr,
        msg: format!("{name}: {msg}"),
    };
    read_in_pieces(
        start,
        out,
        |paddr| fault(paddr, "no chunk serves this address".into()),
        |paddr, dst| {
            let at = paddr - phys_start;
            let chunk = chunks
                .partition_point(|c| c.pos <= at)
                .checked_sub(1)
                .and_then(|i| chunks.get(i))
                .ok_or_else(|| fault(paddr, format!("no chunk holds record offset {at:#x}")))?;
            cache
                .copy_out(file, chunk, at - chunk.pos, dst)
                .map_err(|e| {
                    fault(
                        paddr,
                        format!(
                            "chunk at file offset {:#x} (data from physical {:#x}): {e}",
                            chunk.file_off,
                            phys_start.saturating_add(chunk.pos)
                        ),
                    )
                })
        },
    )
}

/// A chunk whose CRC was checked.
enum Verified {
    /// A compressed chunk, decompressed.
    Owned(Box<[u8]>),
    /// An uncompressed chunk: its data, read in place (file offset, length).
    InFile(usize, usize),
}

impl Verified {
    fn bytes<'a>(&'a self, file: &'a [u8]) -> &'a [u8] {
        match self {
            Verified::Owned(b) => b,
            Verified::InFile(off, len) => off
                .checked_add(*len)
                .and_then(|end| file.get(*off..end))
                .unwrap_or_default(),
        }
    }
}

/// Checks the chunk at `file_off` and decompresses it if need be.
fn verify(file: &[u8], file_off: u64) -> Result<Verified, String> {
    let c = chunk_at(file, file_off)?;
    let n = data_len(c.kind, c.body)?;
    let (crc, payload) = c.body.split_at(CRC_LEN.min(c.body.len()));
    let stored = u32_at(crc, 0).ok_or("shorter than its CRC")?;
    let check = |data: &[u8]| {
        let computed = masked_crc32c(data);
        if computed == stored {
            Ok(())
        } else {
            Err(format!(
                "CRC-32C mismatch: the chunk stores {stored:#010x}, its {n:#x} bytes of data give \
                 {computed:#010x} (masked): corrupt data"
            ))
        }
    };
    match c.kind {
        TYPE_COMPRESSED => {
            // n <= MAX_CHUNK_DATA (data_len): a bounded allocation.
            let mut buf = vec![0u8; n as usize].into_boxed_slice();
            let got = snap::raw::Decoder::new()
                .decompress(payload, &mut buf)
                .map_err(|e| format!("snappy block: {e}"))?;
            if got as u64 != n {
                return Err(format!(
                    "snappy block decompressed to {got:#x} bytes, not the {n:#x} of its preamble"
                ));
            }
            check(&buf)?;
            Ok(Verified::Owned(buf))
        }
        TYPE_UNCOMPRESSED => {
            check(payload)?;
            let off = usize::try_from(c.end)
                .ok()
                .and_then(|e| e.checked_sub(payload.len()))
                .ok_or("data offset overflows")?;
            Ok(Verified::InFile(off, payload.len()))
        }
        other => Err(format!("{} chunk, not a data chunk", kind_name(other))),
    }
}

/// Verified chunks, least recently used evicted first.
pub(super) struct ChunkCache {
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    slots: Vec<Slot>,
    tick: u64,
}

struct Slot {
    /// File offset of the chunk.
    key: u64,
    used: u64,
    data: Verified,
}

impl ChunkCache {
    pub(super) fn new() -> Self {
        ChunkCache {
            lru: Mutex::new(Lru::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies bytes of the chunk from its offset `within` into `dst`, as many as it holds up to `dst.len()`;
    /// returns how many.
    fn copy_out(
        &self,
        file: &[u8],
        chunk: &Chunk,
        within: u64,
        dst: &mut [u8],
    ) -> Result<usize, String> {
        {
            let mut lru = self.lock();
            lru.tick = lru.tick.wrapping_add(1);
            let tick = lru.tick;
            if let Some(slot) = lru.slots.iter_mut().find(|s| s.key == chunk.file_off) {
                slot.used = tick;
                return Ok(copy_part(slot.data.bytes(file), within, dst));
            }
        }
        // Decompress without holding the lock.
        let data = verify(file, chunk.file_off)?;
        let n = copy_part(data.bytes(file), within, dst);
        self.lock().insert(chunk.file_off, data);
        Ok(n)
    }

    /// Chunks held, and the bytes held decompressed.
    pub(super) fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        let bytes = lru
            .slots
            .iter()
            .map(|s| match &s.data {
                Verified::Owned(b) => b.len(),
                Verified::InFile(..) => 0,
            })
            .sum();
        (lru.slots.len(), bytes)
    }
}

impl Lru {
    fn insert(&mut self, key: u64, data: Verified) {
        self.tick = self.tick.wrapping_add(1);
        let slot = Slot {
            key,
            used: self.tick,
            data,
        };
        if let Some(s) = self.slots.iter_mut().find(|s| s.key == key) {
            *s = slot;
        } else if self.slots.len() < CACHE_SLOTS {
            self.slots.push(slot);
        } else if let Some(lru) = self.slots.iter_mut().min_by_key(|s| s.used) {
            *lru = slot;
        }
    }
}

/// Copies `data[within..]` into `dst`, as much as both allow; returns the count.
fn copy_part(data: &[u8], within: u64, dst: &mut [u8]) -> usize {
    let Some(part) = usize::try_from(within).ok().and_then(|w| data.get(w..)) else {
        return 0;
    };
    let n = part.len().min(dst.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), part.get(..n)) {
        d.copy_from_slice(s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bitwise CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), independent of the table.
    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn reader_crc_agrees_with_an_independent_bitwise_crc32c() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        for len in [0usize, 1, 7, 64, 1000, 65536] {
            let d: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let want = crc32c(&d).rotate_right(15).wrapping_add(0xa282_ead8);
            assert_eq!(masked_crc32c(&d), want, "length {len}");
        }
    }
}
