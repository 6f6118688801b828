//! Byte sources: an input file, read by offset.
//!
//! A dump or snapshot file is memory-mapped read-only ([`Plain`]); `/proc/kcore`, which claims ~128 TiB, is
//! read with `pread` ([`FileBytes`]); makedumpfile's flattened stream is indexed and serves the file it
//! describes ([`super::flattened::Flattened`]). Format readers see only [`ByteSource`], so a flattened dump
//! reads exactly like the plain one.

use std::borrow::Cow;
use std::fs::File;
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
}

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

/// A file mapped (or held) in memory: its bytes are the logical file.
pub struct Plain<D>(pub D);

impl<D: AsRef<[u8]>> ByteSource for Plain<D> {
    fn len(&self) -> u64 {
        self.0.as_ref().len() as u64
    }

    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        slice_at(self.0.as_ref(), off, len).map(Cow::Borrowed)
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
