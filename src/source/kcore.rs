//! A kcore-shaped ELF core: `/proc/kcore` (live), or a file of the same shape.
//!
//! /proc/kcore claims about 128 TiB, so it is never mapped or read whole: the ELF header, the program headers
//! and the notes are read with `pread`, and every memory read is a `pread` at
//! `p_offset + (vaddr − p_vaddr)` of the PT_LOAD that covers the address.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::Endianness;
use object::elf::{FileHeader64, PT_LOAD, PT_NOTE, ProgramHeader64};
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader};

use crate::memory::{Memory, ReadError};

/// More program headers than any kcore has (a few dozen) and than any vmcore made with paging (65,726 for
/// 512 MiB) would need; bounds the allocation for the header table.
const MAX_PHDRS: u64 = 1 << 20;
/// Notes beyond this size are not read (VMCOREINFO is about 4 KiB).
const MAX_NOTE_BYTES: u64 = 1 << 20;
/// The largest single read we serve; callers read sockets and bucket arrays, far below this.
const MAX_READ: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: {err}")]
    Open { path: PathBuf, err: std::io::Error },
    #[error("{path}: reading the ELF headers failed: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a 64-bit little-endian ELF core file: {msg}")]
    Format { path: PathBuf, msg: String },
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

/// An open ELF core, served by virtual address.
pub struct ElfCore {
    file: File,
    path: PathBuf,
    /// PT_LOADs sorted by vaddr.
    segments: Vec<Segment>,
    /// The VMCOREINFO note text, when the core carries one (/proc/kcore since 4.19).
    pub vmcoreinfo: Option<String>,
}

impl ElfCore {
    /// Opens `path` read-only (`File::open` is O_RDONLY) and reads its headers and notes.
    pub fn open(path: &Path) -> Result<ElfCore, ElfError> {
        let file = File::open(path).map_err(|err| ElfError::Open {
            path: path.to_path_buf(),
            err,
        })?;
        let format = |msg: String| ElfError::Format {
            path: path.to_path_buf(),
            msg,
        };
        let read_at = |off: u64, len: u64| -> Result<Vec<u8>, ElfError> {
            let len = usize::try_from(len).map_err(|_| format("header length overflows".into()))?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, off)
                .map_err(|err| ElfError::Read {
                    path: path.to_path_buf(),
                    err,
                })?;
            Ok(buf)
        };

        let ehdr_bytes = read_at(0, std::mem::size_of::<FileHeader64<Endianness>>() as u64)?;
        let ehdr = FileHeader64::<Endianness>::parse(ehdr_bytes.as_slice())
            .map_err(|e| format(e.to_string()))?;
        let endian = ehdr.endian().map_err(|e| format(e.to_string()))?;
        if endian != Endianness::Little {
            return Err(format("big-endian".into()));
        }
        let phoff = ehdr.e_phoff(endian);
        let phnum = u64::from(ehdr.e_phnum(endian));
        let phentsize = u64::from(ehdr.e_phentsize(endian));
        if phentsize != std::mem::size_of::<ProgramHeader64<Endianness>>() as u64 {
            return Err(format(format!("program header size {phentsize}")));
        }
        if phnum == 0 || phnum > MAX_PHDRS {
            return Err(format(format!("{phnum} program headers")));
        }
        let table = read_at(phoff, phnum * phentsize)?;
        let (phdrs, _) =
            object::pod::slice_from_bytes::<ProgramHeader64<Endianness>>(&table, phnum as usize)
                .map_err(|_| format("program header table".into()))?;

        let mut segments = Vec::new();
        let mut vmcoreinfo = None;
        for ph in phdrs {
            match ph.p_type(endian) {
                PT_LOAD => {
                    let seg = Segment {
                        vaddr: ph.p_vaddr(endian),
                        offset: ph.p_offset(endian),
                        filesz: ph.p_filesz(endian),
                        memsz: ph.p_memsz(endian),
                    };
                    if seg.memsz > 0 && seg.vaddr.checked_add(seg.memsz).is_some() {
                        segments.push(seg);
                    }
                }
                PT_NOTE if vmcoreinfo.is_none() => {
                    let size = ph.p_filesz(endian);
                    if size == 0 || size > MAX_NOTE_BYTES {
                        continue;
                    }
                    let Ok(data) = read_at(ph.p_offset(endian), size) else {
                        continue;
                    };
                    vmcoreinfo = find_vmcoreinfo(endian, &data);
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(format("no PT_LOAD segments".into()));
        }
        segments.sort_by_key(|s| s.vaddr);
        Ok(ElfCore {
            file,
            path: path.to_path_buf(),
            segments,
            vmcoreinfo,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment that covers `addr`, if any.
    fn segment(&self, addr: u64) -> Option<&Segment> {
        let idx = self.segments.partition_point(|s| s.vaddr <= addr);
        let seg = self.segments.get(idx.checked_sub(1)?)?;
        (addr - seg.vaddr < seg.memsz).then_some(seg)
    }
}

fn find_vmcoreinfo(endian: Endianness, data: &[u8]) -> Option<String> {
    let mut notes = NoteIterator::<FileHeader64<Endianness>>::new(endian, 4, data).ok()?;
    while let Ok(Some(note)) = notes.next() {
        if note.name() == b"VMCOREINFO" {
            return Some(String::from_utf8_lossy(note.desc()).into_owned());
        }
    }
    None
}

impl Memory for ElfCore {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if buf.len() > MAX_READ {
            return Err(ReadError::TooLarge {
                addr,
                len: buf.len(),
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let cur = addr
                .checked_add(done as u64)
                .ok_or(ReadError::NotMapped { addr })?;
            let seg = self
                .segment(cur)
                .ok_or(ReadError::NotMapped { addr: cur })?;
            let within = cur - seg.vaddr;
            // kcore: memory past p_filesz is not in the file; treat it as a fault (a vmcore would read zeros).
            if within >= seg.filesz {
                return Err(ReadError::NotBacked { addr: cur });
            }
            let avail = seg.filesz - within;
            let rest = buf.len() - done;
            let n = usize::try_from(avail).map_or(rest, |a| a.min(rest));
            let off = seg
                .offset
                .checked_add(within)
                .ok_or(ReadError::NotMapped { addr: cur })?;
            let total = buf.len();
            let chunk = buf
                .get_mut(done..done + n)
                .ok_or(ReadError::TooLarge { addr, len: total })?;
            // Live kcore may fail one read with EFAULT or EIO (hole, poisoned page): that costs this read only.
            self.file
                .read_exact_at(chunk, off)
                .map_err(|e| ReadError::Io {
                    addr: cur,
                    msg: e.to_string(),
                })?;
            done += n;
        }
        Ok(())
    }
}
