//! makedumpfile's flattened format (`makedumpfile -F`, and QEMU's `kdump-*` output): a stream of records
//! `{offset (be64), size (be64), data}` that `makedumpfile -R` would write at `offset` of a new file.
//! [`Flattened`] indexes those records once and serves the rebuilt file's bytes straight from the mapped
//! stream, as a [`ByteSource`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::bytes::{ByteSource, SourceError, copied, slice_at};
use crate::memory::read_in_pieces;

/// Size of the flattened format's header block (`MAX_SIZE_MDF_HEADER`).
pub const FLAT_HEADER_SIZE: u64 = 4096;
/// The flattened header's signature field: "makedumpfile" padded with NULs to 16 bytes.
pub const FLAT_SIGNATURE: &[u8] = b"makedumpfile";
/// Size of one record header: `{offset: be64, size: be64}`.
const FLAT_RECORD_HEADER: u64 = 16;

/// Reads a big-endian i64 at `off` of `data`.
fn be_i64(data: &[u8], off: u64) -> Option<i64> {
    let b = slice_at(data, off, 8).ok()?;
    Some(i64::from_be_bytes(b.try_into().ok()?))
}

/// One stretch of the logical file, served from the stream at `stream_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    /// Start in the logical file.
    start: u64,
    len: u64,
    /// Where its bytes are in the flattened stream.
    stream_off: u64,
}

impl Piece {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// Why a flattened stream cannot be used at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlatError {
    #[error("flattened header: {0}")]
    Header(String),
    #[error("the stream holds no data record")]
    Empty,
}

/// makedumpfile's flattened format over a mapped stream: an index of its records, later records overwriting
/// earlier ones where they overlap (as `makedumpfile -R` does).
pub struct Flattened<D> {
    data: D,
    /// Non-overlapping, sorted by `start`.
    pieces: Vec<Piece>,
    logical_len: u64,
    /// The stream ended with the end marker (offset −1): gaps between records read as zeros, as in the file
    /// `makedumpfile -R` rebuilds. Without it (a truncated stream), a gap is an error.
    complete: bool,
    records: u64,
    warnings: Vec<String>,
}

impl<D: AsRef<[u8]>> Flattened<D> {
    /// Indexes the record headers of the stream `data`. One pass, bounded by the stream's length; a damaged or
    /// truncated tail is a warning, and what came before it stays readable.
    #[cfg(test)]
    pub fn index(data: D) -> Result<Flattened<D>, FlatError> {
        Self::index_with(data, |_, _| {})
    }

    /// [`Flattened::index`], calling `progress(data, pos)` after each record with the stream offset reached,
    /// so a caller can let go of what it has passed (the mapped pages of a large stream).
    pub fn index_with(
        data: D,
        mut progress: impl FnMut(&D, u64),
    ) -> Result<Flattened<D>, FlatError> {
        let bytes = data.as_ref();
        let sig = slice_at(bytes, 0, 16)
            .map_err(|_| FlatError::Header("shorter than its 16-byte signature".into()))?;
        let (name, pad) = sig.split_at(FLAT_SIGNATURE.len().min(sig.len()));
        if name != FLAT_SIGNATURE || pad.iter().any(|&b| b != 0) {
            return Err(FlatError::Header(
                "signature is not \"makedumpfile\"".into(),
            ));
        }
        let kind = be_i64(bytes, 16).ok_or_else(|| FlatError::Header("truncated".into()))?;
        let version = be_i64(bytes, 24).ok_or_else(|| FlatError::Header("truncated".into()))?;
        if kind != 1 {
            return Err(FlatError::Header(format!(
                "type {kind} (only type 1, the flattened format, is known)"
            )));
        }
        if version != 1 {
            return Err(FlatError::Header(format!(
                "version {version} (only version 1 is known)"
            )));
        }
        let stream_len = bytes.len() as u64;
        if stream_len < FLAT_HEADER_SIZE {
            return Err(FlatError::Header(format!(
                "the stream is {stream_len:#x} bytes, shorter than its {FLAT_HEADER_SIZE:#x}-byte header"
            )));
        }

        let mut map = PieceMap::default();
        let mut warnings = Vec::new();
        let mut complete = false;
        let mut records = 0u64;
        let mut pos = FLAT_HEADER_SIZE;
        // Each turn consumes at least a 16-byte record header, so this ends within stream_len / 16 turns.
        loop {
            let (Some(offset), Some(size)) =
                (be_i64(bytes, pos), be_i64(bytes, pos.saturating_add(8)))
            else {
                if pos < stream_len {
                    warnings.push(format!(
                        "flattened stream: a record header at stream offset {pos:#x} is cut short: truncated stream"
                    ));
                } else {
                    warnings.push(format!(
                        "flattened stream: no end marker after the record ending at stream offset {pos:#x}: \
                         truncated stream"
                    ));
                }
                break;
            };
            if offset == -1 {
                complete = true;
                break;
            }
            let (Ok(offset), Ok(size)) = (u64::try_from(offset), u64::try_from(size)) else {
                warnings.push(format!(
                    "flattened stream: record header at stream offset {pos:#x} is corrupt (offset {offset}, \
                     size {size}); the rest of the stream is ignored"
                ));
                break;
            };
            let data_off = pos.saturating_add(FLAT_RECORD_HEADER);
            let avail = stream_len.saturating_sub(data_off);
            if offset.checked_add(size).is_none() {
                warnings.push(format!(
                    "flattened stream: record at stream offset {pos:#x} overflows (offset {offset:#x}, \
                     size {size:#x}); the rest of the stream is ignored"
                ));
                break;
            }
            records = records.saturating_add(1);
            if size > avail {
                // Keep the part that is there.
                map.insert(Piece {
                    start: offset,
                    len: avail,
                    stream_off: data_off,
                });
                warnings.push(format!(
                    "flattened stream: record at stream offset {pos:#x} claims {size:#x} bytes, only {avail:#x} \
                     remain: truncated stream"
                ));
                break;
            }
            map.insert(Piece {
                start: offset,
                len: size,
                stream_off: data_off,
            });
            pos = data_off.saturating_add(size);
            progress(&data, pos);
        }
        let pieces = map.into_vec();
        let logical_len = pieces.last().map_or(0, Piece::end);
        if pieces.is_empty() {
            return Err(FlatError::Empty);
        }
        Ok(Flattened {
            data,
            pieces,
            logical_len,
            complete,
            records,
            warnings,
        })
    }

    /// Whether the stream ended with its end marker.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Number of data records indexed.
    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Index of the first piece that ends after `off`.
    fn first_piece_after(&self, off: u64) -> usize {
        self.pieces.partition_point(|p| p.end() <= off)
    }
}

impl<D: AsRef<[u8]>> ByteSource for Flattened<D> {
    fn len(&self) -> u64 {
        self.logical_len
    }

    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        // Fast path: inside one piece, borrow from the mapped stream.
        let idx = self.first_piece_after(off);
        if let Some(p) = self.pieces.get(idx)
            && p.start <= off
            && off.saturating_add(len as u64) <= p.end()
        {
            let at = p.stream_off.saturating_add(off - p.start);
            return slice_at(self.data.as_ref(), at, len).map(Cow::Borrowed);
        }
        copied(self, off, len)
    }

    /// The pieces the stream holds within `range`: gaps are not stored (they read as zeros, or, in a stream
    /// cut short, not at all).
    fn stored(&self, range: std::ops::Range<u64>) -> Vec<std::ops::Range<u64>> {
        let mut out = Vec::new();
        let mut idx = self.first_piece_after(range.start);
        while let Some(p) = self.pieces.get(idx) {
            if p.start >= range.end {
                break;
            }
            if out.len() >= super::bytes::MAX_EXTENTS {
                out.push(p.start.max(range.start)..range.end);
                break;
            }
            out.push(p.start.max(range.start)..p.end().min(range.end));
            idx += 1;
        }
        out
    }

    fn read_into(&self, off: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let len = buf.len() as u64;
        let end = off.checked_add(len).ok_or(SourceError::PastEnd {
            off,
            len,
            file_len: self.logical_len,
        })?;
        if end > self.logical_len {
            return Err(SourceError::PastEnd {
                off,
                len,
                file_len: self.logical_len,
            });
        }
        let stream = self.data.as_ref();
        let mut idx = self.first_piece_after(off);
        read_in_pieces(
            off,
            buf,
            |at| SourceError::TooLarge { off: at, len },
            |cur, rest| {
                let want = rest.len() as u64;
                let next = self.pieces.get(idx);
                if let Some(p) = next.filter(|p| p.start <= cur) {
                    let n = usize::try_from((p.end() - cur).min(want)).unwrap_or(rest.len());
                    let at = p.stream_off.saturating_add(cur - p.start);
                    let out = rest
                        .get_mut(..n)
                        .ok_or(SourceError::TooLarge { off, len })?;
                    out.copy_from_slice(slice_at(stream, at, n)?);
                    idx = idx.saturating_add(1);
                    return Ok(n);
                }
                // A gap up to the next piece (or the end): zeros in the file `makedumpfile -R` rebuilds,
                // unwritten bytes of a stream cut short.
                if !self.complete {
                    return Err(SourceError::Unwritten { off: cur });
                }
                let gap = next.map_or(want, |p| (p.start - cur).min(want));
                let n = usize::try_from(gap).unwrap_or(rest.len());
                rest.get_mut(..n)
                    .ok_or(SourceError::TooLarge { off, len })?
                    .fill(0);
                Ok(n)
            },
        )
    }
}

/// Builds the non-overlapping piece list; a later insert overwrites what it overlaps. Each insert removes the
/// pieces it covers (each piece is removed at most once) and splits at most two, so n inserts cost
/// O(n log n).
#[derive(Default)]
struct PieceMap {
    map: BTreeMap<u64, Piece>,
}

impl PieceMap {
    fn insert(&mut self, new: Piece) {
        if new.len == 0 {
            return;
        }
        let (s, e) = (new.start, new.end());
        // A piece starting before `s` that reaches into [s, e): keep its head, and its tail past `e`.
        let before = self.map.range(..s).next_back().map(|(_, &p)| p);
        if let Some(prev) = before.filter(|p| p.end() > s) {
            self.map.insert(
                prev.start,
                Piece {
                    len: s - prev.start,
                    ..prev
                },
            );
            if prev.end() > e {
                self.map.insert(
                    e,
                    Piece {
                        start: e,
                        len: prev.end() - e,
                        stream_off: prev.stream_off.saturating_add(e - prev.start),
                    },
                );
            }
        }
        // Pieces starting inside [s, e): drop them, keeping the tail of the last one past `e`.
        let inside: Vec<u64> = self.map.range(s..e).map(|(&k, _)| k).collect();
        for k in inside {
            if let Some(p) = self.map.remove(&k).filter(|p| p.end() > e) {
                self.map.insert(
                    e,
                    Piece {
                        start: e,
                        len: p.end() - e,
                        stream_off: p.stream_off.saturating_add(e - p.start),
                    },
                );
            }
        }
        self.map.insert(s, new);
    }

    fn into_vec(self) -> Vec<Piece> {
        self.map.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flattened stream of `records` (logical offset, data), with or without the end marker.
    fn stream(records: &[(u64, &[u8])], end: bool) -> Vec<u8> {
        let mut s = vec![0u8; FLAT_HEADER_SIZE as usize];
        s[..12].copy_from_slice(b"makedumpfile");
        s[16..24].copy_from_slice(&1i64.to_be_bytes());
        s[24..32].copy_from_slice(&1i64.to_be_bytes());
        for (off, data) in records {
            s.extend_from_slice(&(*off as i64).to_be_bytes());
            s.extend_from_slice(&(data.len() as i64).to_be_bytes());
            s.extend_from_slice(data);
        }
        if end {
            s.extend_from_slice(&(-1i64).to_be_bytes());
            s.extend_from_slice(&(-1i64).to_be_bytes());
        }
        s
    }

    fn read(f: &Flattened<Vec<u8>>, off: u64, len: usize) -> Result<Vec<u8>, SourceError> {
        let mut buf = vec![0xeeu8; len];
        f.read_into(off, &mut buf)?;
        assert_eq!(
            f.bytes(off, len)?.as_ref(),
            buf.as_slice(),
            "bytes() and read_into() agree"
        );
        Ok(buf)
    }

    /// `makedumpfile -R` semantics: a later record overwrites an earlier one where they overlap, and the
    /// unwritten gaps of a complete stream read as zeros.
    #[test]
    fn later_records_overwrite_earlier_ones_and_gaps_are_zero() {
        let s = stream(
            &[
                (10, b"AAAAAAAAAA"),  // 10..20
                (14, b"bb"),          // 14..16 inside it
                (0, b"cccccccccccc"), // 0..12, overlapping the head
                (18, b"dddd"),        // 18..22, overlapping the tail
                (30, b"e"),           // after a gap
            ],
            true,
        );
        let f = Flattened::index(s).unwrap();
        assert!(f.complete());
        assert_eq!(f.len(), 31);
        let want = b"ccccccccccccAAbbAAdddd\0\0\0\0\0\0\0\0e";
        assert_eq!(read(&f, 0, 31).unwrap(), want.to_vec());
        for off in 0..31u64 {
            for len in 0..(31 - off as usize) {
                assert_eq!(
                    read(&f, off, len).unwrap(),
                    want[off as usize..off as usize + len].to_vec(),
                    "off {off} len {len}"
                );
            }
        }
        assert!(matches!(read(&f, 30, 2), Err(SourceError::PastEnd { .. })));
        assert!(matches!(
            read(&f, u64::MAX, 2),
            Err(SourceError::PastEnd { .. })
        ));
    }

    /// Without the end marker, a gap is not known to be zeros: reading it fails instead of inventing data.
    #[test]
    fn truncated_stream_gap_is_an_error_not_zeros() {
        let s = stream(&[(0, b"abc"), (8, b"xyz")], false);
        let f = Flattened::index(s).unwrap();
        assert!(!f.complete());
        assert_eq!(f.warnings().len(), 1);
        assert_eq!(read(&f, 0, 3).unwrap(), b"abc".to_vec());
        assert_eq!(read(&f, 8, 3).unwrap(), b"xyz".to_vec());
        assert_eq!(read(&f, 2, 3), Err(SourceError::Unwritten { off: 3 }));
    }

    /// A record whose data is cut short keeps the bytes that are there.
    #[test]
    fn cut_record_keeps_its_present_bytes() {
        let mut s = stream(&[(0, b"abc"), (100, b"0123456789")], false);
        s.truncate(s.len() - 4);
        let f = Flattened::index(s).unwrap();
        assert_eq!(f.len(), 106);
        assert_eq!(read(&f, 100, 6).unwrap(), b"012345".to_vec());
        assert!(read(&f, 100, 7).is_err());
    }

    /// Negative offsets or sizes (other than the end marker) stop the index with a warning.
    #[test]
    fn corrupt_record_header_stops_the_index() {
        let mut s = stream(&[(0, b"abc")], false);
        s.extend_from_slice(&(-5i64).to_be_bytes());
        s.extend_from_slice(&3i64.to_be_bytes());
        s.extend_from_slice(b"zzz");
        let f = Flattened::index(s).unwrap();
        assert_eq!(f.len(), 3);
        assert!(f.warnings()[0].contains("corrupt"), "{:?}", f.warnings());
    }

    #[test]
    fn bad_flattened_headers_are_refused() {
        let good = stream(&[(0, b"abc")], true);
        let mut wrong_type = good.clone();
        wrong_type[16..24].copy_from_slice(&2i64.to_be_bytes());
        assert!(matches!(
            Flattened::index(wrong_type),
            Err(FlatError::Header(_))
        ));
        let mut wrong_sig = good.clone();
        wrong_sig[3] = b'X';
        assert!(matches!(
            Flattened::index(wrong_sig),
            Err(FlatError::Header(_))
        ));
        assert!(matches!(
            Flattened::index(good[..100].to_vec()),
            Err(FlatError::Header(_))
        ));
        assert_eq!(
            Flattened::index(stream(&[], true)).err(),
            Some(FlatError::Empty)
        );
    }

    /// Many overlapping inserts against a byte-array oracle.
    #[test]
    fn piece_map_matches_an_overwrite_oracle() {
        let mut oracle = [0u16; 200]; // 0 = unwritten, else record number
        let mut map = PieceMap::default();
        let mut x = 12345u64;
        for rec in 1..=300u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = (x >> 33) % 190;
            let len = (x >> 20) % 12;
            map.insert(Piece {
                start,
                len,
                stream_off: rec * 1000,
            });
            for i in start..start + len {
                oracle[i as usize] = rec as u16;
            }
        }
        let pieces = map.into_vec();
        for w in pieces.windows(2) {
            assert!(w[0].end() <= w[1].start, "sorted and disjoint: {w:?}");
        }
        for (i, &rec) in oracle.iter().enumerate() {
            let i = i as u64;
            let found = pieces.iter().find(|p| p.start <= i && i < p.end());
            match found {
                None => assert_eq!(rec, 0, "byte {i}"),
                Some(p) => {
                    // stream_off encodes record * 1000 + offset into that record's data.
                    let at = p.stream_off + (i - p.start);
                    assert_eq!(at / 1000, u64::from(rec), "byte {i}");
                }
            }
        }
    }
}
