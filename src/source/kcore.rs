//! Live kernel memory: `/proc/kcore`, or a file of the same shape (`--kcore`).
//!
//! An ELF core whose PT_LOADs are virtual: /proc/kcore claims about 128 TiB, so it is never mapped or read
//! whole. The headers and notes are read with `pread` ([`super::elf`]), and every memory read is a `pread`
//! at `p_offset + (vaddr − p_vaddr)` of the PT_LOAD that covers the address. Bytes past `p_filesz` are not in
//! the file: a fault here (a vmcore would read them as zeros). Since 4.19 kcore carries the kernel's
//! VMCOREINFO note.

use std::path::{Path, PathBuf};

use super::bytes::{ByteSource, FileBytes};
use super::elf::{self, ElfSegment};
use crate::memory::{Memory, ReadError, read_split};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: {err}")]
    Open { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a regular file; give the kernel's /proc/kcore or a copy of its shape")]
    NotRegular { path: PathBuf },
    #[error("{path}: not a 64-bit little-endian ELF core file: {msg}")]
    Format { path: PathBuf, msg: String },
}

/// An open kcore, served by virtual address.
pub struct Kcore {
    bytes: FileBytes,
    path: PathBuf,
    /// Usable PT_LOADs (non-empty, not wrapping past 2^64) sorted by vaddr.
    segments: Vec<ElfSegment>,
    /// The VMCOREINFO note text, when the core carries one (/proc/kcore since 4.19).
    pub vmcoreinfo: Option<String>,
    /// `e_machine` of the core.
    pub machine: u16,
    /// Damage found in the headers (a kcore-shaped file cut short).
    pub warnings: Vec<String>,
}

impl Kcore {
    /// Opens `path` read-only and reads its headers and notes. Only regular files are accepted (kcore is one),
    /// and the open never blocks: a FIFO given by mistake is refused instead of waiting for a writer.
    pub fn open(path: &Path) -> Result<Kcore, ElfError> {
        let open = |err| ElfError::Open {
            path: path.to_path_buf(),
            err,
        };
        let file = crate::input::open_regular(path).map_err(|err| {
            if crate::input::is_not_regular(&err) {
                ElfError::NotRegular {
                    path: path.to_path_buf(),
                }
            } else {
                open(err)
            }
        })?;
        let meta = file.metadata().map_err(open)?;
        let bytes = FileBytes::new(file, meta.len());
        let headers = elf::parse(&bytes).map_err(|e| ElfError::Format {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut segments: Vec<ElfSegment> = headers
            .loads
            .into_iter()
            // A segment that wraps past 2^64 serves nothing addressable; kcore never has one.
            .filter(|s| s.memsz > 0 && s.vaddr.checked_add(s.memsz).is_some())
            .collect();
        if segments.is_empty() {
            return Err(ElfError::Format {
                path: path.to_path_buf(),
                msg: "no PT_LOAD segments".into(),
            });
        }
        segments.sort_by_key(|s| s.vaddr);
        Ok(Kcore {
            bytes,
            path: path.to_path_buf(),
            segments,
            vmcoreinfo: headers.vmcoreinfo,
            machine: headers.machine,
            warnings: headers.warnings,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment that covers `addr`, if any.
    /// The segment that maps `addr`: of those starting at or below it, the nearest that reaches it.
    /// Segments may nest: arm64's kcore has the kernel image's segment inside the vmalloc one, so an
    /// address above the image is the vmalloc segment's although the image's starts nearer.
    fn segment(&self, addr: u64) -> Option<&ElfSegment> {
        let idx = self.segments.partition_point(|s| s.vaddr <= addr);
        self.segments
            .get(..idx)?
            .iter()
            .rev()
            .find(|seg| addr - seg.vaddr < seg.memsz)
    }
}

impl Memory for Kcore {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let total = buf.len();
        read_split(addr, buf, |cur, rest| {
            let seg = self
                .segment(cur)
                .ok_or(ReadError::NotMapped { addr: cur })?;
            let within = cur - seg.vaddr;
            // kcore: memory past p_filesz is not in the file; a fault (a vmcore would read zeros).
            if within >= seg.filesz {
                return Err(ReadError::NotBacked { addr: cur });
            }
            let n = usize::try_from(seg.filesz - within).map_or(rest.len(), |a| a.min(rest.len()));
            let off = seg
                .offset
                .checked_add(within)
                .ok_or(ReadError::NotMapped { addr: cur })?;
            let chunk = rest.get_mut(..n).ok_or(ReadError::TooLarge {
                addr: cur,
                len: total,
            })?;
            // Live kcore may fail one read with EFAULT or EIO (hole, poisoned page): that costs this read
            // only.
            self.bytes
                .read_into(off, chunk)
                .map_err(|e| ReadError::Io {
                    addr: cur,
                    msg: e.to_string(),
                })?;
            Ok(n)
        })
    }
}
