//! Byte sources: an input file, read by offset.
//!
//! A dump or snapshot file is memory-mapped read-only ([`MappedFile`], which also knows a sparse file's holes); `/proc/kcore`, which claims ~128 TiB, is
//! read with `pread` ([`FileBytes`]); makedumpfile's flattened stream is indexed and serves the file it
//! describes ([`super::flattened::Flattened`]). Format readers see only [`ByteSource`], so a flattened dump
//! reads exactly like the plain one.

use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
/// Largest single read a source serves (a page, a header table, a note segment).
pub const MAX_SOURCE_READ: usize = 64 << 20;

/// Why bytes of the logical file cannot be had. Offsets are in the logical (rebuilt) file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "bytes {off:#x}..{end:#x} lie past the end of the file ({file_len:#x} bytes): truncated dump",
        end = off.saturating_add(*len)
    )]
    PastEnd { off: u64, len: u64, file_len: u64 },
    #[error(
        "bytes at {off:#x} were never written by the flattened stream, which has no end marker: truncated dump"
    )]
    Unwritten { off: u64 },
    #[error("read of {len:#x} bytes at {off:#x} is too large")]
    TooLarge { off: u64, len: u64 },
    #[error("reading {len:#x} bytes at file offset {off:#x} failed: {msg}")]
    Io { off: u64, len: u64, msg: String },
}

/// Random access to the bytes of a dump file (or of the file a flattened stream describes).
pub trait ByteSource {
    /// Length of the (logical) file.
    fn len(&self) -> u64;

    /// The `len` bytes at `off`: borrowed where they are contiguous in memory, copied otherwise.
    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError>;

    /// Fills `buf` with the bytes at `off`.
    fn read_into(&self, off: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let data = self.bytes(off, buf.len())?;
        buf.copy_from_slice(&data);
        Ok(())
    }

    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts of `range` that the input really stores, sorted; bytes outside them read as zeros (a hole
    /// of a sparse file, a gap of a flattened stream) or not at all. A pass over a large region (a kdump
    /// bitmap) visits only these, so its work follows the input's real size, not what a header claims.
    /// Never more than [`MAX_EXTENTS`] pieces: past that, the rest counts as stored.
    fn stored(&self, range: Range<u64>) -> Vec<Range<u64>> {
        if range.is_empty() {
            return Vec::new();
        }
        std::iter::once(range).collect()
    }
}

/// Most extents [`ByteSource::stored`] reports for one range.
pub const MAX_EXTENTS: usize = 1 << 16;

/// `data[off..off + len]`, or why not.
pub fn slice_at(data: &[u8], off: u64, len: usize) -> Result<&[u8], SourceError> {
    let past_end = || SourceError::PastEnd {
        off,
        len: len as u64,
        file_len: data.len() as u64,
    };
    if len > MAX_SOURCE_READ {
        return Err(SourceError::TooLarge {
            off,
            len: len as u64,
        });
    }
    let start = usize::try_from(off).map_err(|_| past_end())?;
    let end = start.checked_add(len).ok_or_else(past_end)?;
    data.get(start..end).ok_or_else(past_end)
}

/// The `len` bytes at `off` of `src`, copied out through [`ByteSource::read_into`] (for sources that cannot
/// lend them): at most [`MAX_SOURCE_READ`].
pub fn copied<S: ByteSource + ?Sized>(
    src: &S,
    off: u64,
    len: usize,
) -> Result<Cow<'static, [u8]>, SourceError> {
    if len > MAX_SOURCE_READ {
        return Err(SourceError::TooLarge {
            off,
            len: len as u64,
        });
    }
    let mut buf = vec![0u8; len];
    src.read_into(off, &mut buf)?;
    Ok(Cow::Owned(buf))
}

/// A file mapped read-only: its bytes are the logical file, and its holes (a sparse file) are known.
pub struct MappedFile {
    pub map: memmap2::Mmap,
    pub file: File,
}

impl ByteSource for MappedFile {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        slice_at(&self.map, off, len).map(Cow::Borrowed)
    }

    /// The data extents of the file within `range` (`SEEK_DATA` / `SEEK_HOLE`); on a file system that does
    /// not tell, the whole range.
    fn stored(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let end = range.end.min(self.len());
        let mut out = Vec::new();
        let mut cur = range.start;
        let fd = self.file.as_raw_fd();
        while cur < end {
            if out.len() >= MAX_EXTENTS {
                out.push(cur..end);
                break;
            }
            let (Ok(at), Ok(_)) = (libc::off_t::try_from(cur), libc::off_t::try_from(end)) else {
                out.push(cur..end);
                break;
            };
            // SAFETY: lseek on a descriptor we own; it moves only the file position, which nothing here
            // uses (reads go through the mapping).
            let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
            let Ok(data) = u64::try_from(data) else {
                // ENXIO: no data from here to the end of the file. Another error: take it all as stored.
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENXIO) {
                    out.push(cur..end);
                }
                break;
            };
            if data >= end {
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
            let hole = u64::try_from(hole).unwrap_or(end).clamp(data + 1, end);
            out.push(data.max(cur)..hole);
            cur = hole;
        }
        out
    }
}

/// A file read with `pread`, never mapped: `/proc/kcore` (whose size is that of the address space it
/// describes) or a file of its shape. Bytes past `len` are refused.
pub struct FileBytes {
    file: File,
    len: u64,
}

impl FileBytes {
    /// `len` is the file's size as `stat` gives it; a file that claims size 0 is read to wherever `pread`
    /// reaches.
    pub fn new(file: File, len: u64) -> FileBytes {
        let len = if len == 0 { u64::MAX } else { len };
        FileBytes { file, len }
    }
}

impl ByteSource for FileBytes {
    fn len(&self) -> u64 {
        self.len
    }

    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        copied(self, off, len)
    }

    fn read_into(&self, off: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let len = buf.len() as u64;
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(SourceError::PastEnd {
                off,
                len,
                file_len: self.len,
            });
        }
        self.file
            .read_exact_at(buf, off)
            .map_err(|e| SourceError::Io {
                off,
                len,
                msg: e.to_string(),
            })
    }
}
