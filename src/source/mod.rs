//! Crash dumps, read by physical address: ELF vmcores, kdump-compressed dumps, and makedumpfile's flattened
//! form of either.
//!
//! [`open`] tells the format from the file's first bytes (never from its name): `\x7fELF`, `KDUMP   ` /
//! `DISKDUMP`, or `makedumpfile` (the flattened stream, whose records rebuild one of the other two). The file
//! is opened read-only and memory-mapped, never read whole; a flattened stream is indexed once by its record
//! headers and then read in place, so the ELF and kdump readers see the same logical file either way
//! ([`bytes::ByteSource`]).
//!
//! Everything in a dump is untrusted: every offset and size is checked against the file before use, and a
//! damaged page costs the read that touches it ([`ReadError::Corrupt`] naming the pfn, the page descriptor
//! and its file offset), not the whole dump. Only unusable headers fail [`open`].
//!
//! The file is mapped shared and read-only: if another process truncates it while we read, the kernel
//! raises SIGBUS, as for every mmap reader (crash maps kdump bitmaps the same way).

mod bytes;
pub mod kcore;
mod kdump;
mod vmcore;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testwriter;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use bytes::{ByteSource, FlatError, SourceError};
pub use kdump::KdumpInfo;
pub use vmcore::ElfSegment;

use crate::memory::{PhysMemory, ReadError};
use crate::vmcoreinfo::VmcoreInfo;
use bytes::Flattened;
use kdump::KdumpDump;
use vmcore::ElfDump;

/// The largest single read served; callers read structures and page-table pages, far below this.
const MAX_READ: usize = 16 << 20;
/// Page size assumed for an ELF vmcore whose VMCOREINFO does not say (x86_64).
const DEFAULT_PAGE_SIZE: u64 = 4096;
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Headers that cannot be used: what, where (file offset; in the rebuilt file for a flattened dump), why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} at offset {offset:#x}: {msg}")]
pub struct HeaderError {
    pub what: &'static str,
    pub offset: u64,
    pub msg: String,
}

/// Why a dump cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{}: {err}{}", path.display(), open_hint(err))]
    Open { path: PathBuf, err: std::io::Error },
    #[error("{}: not a regular file; save the dump (or the flattened stream) to a file first", path.display())]
    NotRegular { path: PathBuf },
    #[error("{}: {len} bytes: too short to be a crash dump", path.display())]
    TooShort { path: PathBuf, len: u64 },
    #[error(
        "{}: not a crash dump this tool reads (first bytes {magic}): expected an ELF vmcore (\\x7fELF), a \
         kdump-compressed dump (\"KDUMP   \" or \"DISKDUMP\") or makedumpfile's flattened format \
         (\"makedumpfile\")",
        path.display()
    )]
    UnknownFormat { path: PathBuf, magic: String },
    #[error("{}: mapping the file failed: {err}", path.display())]
    Map { path: PathBuf, err: std::io::Error },
    #[error("{}: flattened stream: {err}", path.display())]
    Flattened { path: PathBuf, err: FlatError },
    #[error("{}: {format}: {err}", path.display())]
    Format {
        path: PathBuf,
        format: &'static str,
        err: HeaderError,
    },
}

fn open_hint(err: &std::io::Error) -> &'static str {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        " (dumps are often readable by root only: run as root or make a readable copy)"
    } else {
        ""
    }
}

/// The kind of dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatKind {
    /// ELF vmcore.
    Elf,
    /// kdump-compressed ("KDUMP   " signature).
    Kdump,
    /// The older diskdump layout ("DISKDUMP" signature).
    Diskdump,
}

/// What [`Dump::format`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFormat {
    pub kind: FormatKind,
    /// Read through makedumpfile's flattened format.
    pub flattened: bool,
    /// kdump: the compressions the header announces and the page descriptors read so far use.
    pub compressions: Vec<&'static str>,
}

impl fmt::Display for DumpFormat {
    /// "elf", "kdump (zlib)", "flattened kdump (zlib, lzo)", "flattened elf", "diskdump".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flattened {
            f.write_str("flattened ")?;
        }
        f.write_str(match self.kind {
            FormatKind::Elf => "elf",
            FormatKind::Kdump => "kdump",
            FormatKind::Diskdump => "diskdump",
        })?;
        if !self.compressions.is_empty() {
            write!(f, " ({})", self.compressions.join(", "))?;
        }
        Ok(())
    }
}

/// The mapped file, plain or flattened.
enum Source {
    Plain(Plain<Mmap>),
    Flattened(Flattened<Mmap>),
}

impl Source {
    fn get(&self) -> &dyn ByteSource {
        match self {
            Source::Plain(p) => p,
            Source::Flattened(f) => f,
        }
    }
}

/// A plain file: its bytes are the logical file.
pub struct Plain<D>(pub D);

impl<D: AsRef<[u8]>> ByteSource for Plain<D> {
    fn len(&self) -> u64 {
        self.0.as_ref().len() as u64
    }

    fn bytes(&self, off: u64, len: usize) -> Result<std::borrow::Cow<'_, [u8]>, SourceError> {
        bytes::slice_at(self.0.as_ref(), off, len).map(std::borrow::Cow::Borrowed)
    }
}

enum Kind {
    Elf(ElfDump),
    Kdump(Box<KdumpDump>),
}

/// An open crash dump, read by physical address ([`PhysMemory`]).
pub struct Dump {
    path: PathBuf,
    /// Kept open (read-only) for the life of the mapping.
    _file: File,
    source: Source,
    kind: Kind,
    page_size: u64,
    warnings: Vec<String>,
}

/// Opens the crash dump at `path` read-only and reads its headers. The format comes from the content.
pub fn open(path: &Path) -> Result<Dump, DumpError> {
    let p = || path.to_path_buf();
    // O_RDONLY; O_NONBLOCK so that a FIFO given by mistake fails below instead of blocking the open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| DumpError::Open { path: p(), err })?;
    let meta = file
        .metadata()
        .map_err(|err| DumpError::Open { path: p(), err })?;
    if !meta.is_file() {
        return Err(DumpError::NotRegular { path: p() });
    }
    if meta.len() < 16 {
        return Err(DumpError::TooShort {
            path: p(),
            len: meta.len(),
        });
    }
    // SAFETY: the mapping is read-only (PROT_READ) over a file opened O_RDONLY, and we hand out only copies
    // of its bytes. Should another process truncate the file while it is mapped, reads past the new end
    // fault (SIGBUS), which no mmap reader can prevent; a concurrent writer can change bytes under us, which
    // every check here tolerates, since each value is validated where it is used.
    let map = unsafe { Mmap::map(&file) }.map_err(|err| DumpError::Map { path: p(), err })?;

    let head = map.get(..16).unwrap_or_default().to_vec();
    let (source, flattened) = if head.starts_with(bytes::FLAT_SIGNATURE) {
        // Indexing reads a record header every few pages of the stream, and the kernel maps file pages in
        // 64 KiB neighbourhoods around each fault: left alone, the whole stream ends up resident. Behind the
        // indexing front, let go of the mapped pages every 8 MiB; pages read later fault in again.
        const STEP: u64 = 8 << 20;
        let mut released = 0u64;
        let flat = Flattened::index_with(map, |m: &Mmap, pos| {
            let upto = pos & !(STEP - 1);
            if upto > released {
                let (Ok(off), Ok(len)) =
                    (usize::try_from(released), usize::try_from(upto - released))
                else {
                    return;
                };
                // SAFETY: DONTNEED on a read-only mapping of a file drops page-table entries only; the file's
                // bytes are unchanged and are read again from the page cache on the next access.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len)
                };
                released = upto;
            }
        })
        .map_err(|err| DumpError::Flattened { path: p(), err })?;
        (Source::Flattened(flat), true)
    } else {
        (Source::Plain(Plain(map)), false)
    };
    let mut warnings = match &source {
        Source::Flattened(f) => f.warnings().to_vec(),
        Source::Plain(_) => Vec::new(),
    };
    let src = source.get();
    let magic = src.bytes(0, 8).map(|b| b.into_owned()).unwrap_or_default();
    let kind = if magic.starts_with(ELF_MAGIC) {
        let name = if flattened {
            "flattened ELF vmcore"
        } else {
            "ELF vmcore"
        };
        let elf = ElfDump::parse(src).map_err(|err| DumpError::Format {
            path: p(),
            format: name,
            err,
        })?;
        Kind::Elf(elf)
    } else if magic == kdump::SIG_KDUMP || magic == kdump::SIG_DISKDUMP {
        let name = if flattened {
            "flattened kdump"
        } else {
            "kdump"
        };
        let kd = KdumpDump::parse(src).map_err(|err| DumpError::Format {
            path: p(),
            format: name,
            err,
        })?;
        Kind::Kdump(Box::new(kd))
    } else {
        let shown = if flattened { &magic } else { &head };
        return Err(DumpError::UnknownFormat {
            path: p(),
            magic: show_magic(shown, flattened),
        });
    };
    let (page_size, more) = match &kind {
        Kind::Elf(e) => (elf_page_size(e.vmcoreinfo.as_deref()), &e.warnings),
        Kind::Kdump(k) => (k.page_size(), &k.warnings),
    };
    warnings.extend(more.iter().cloned());
    Ok(Dump {
        path: p(),
        _file: file,
        source,
        kind,
        page_size,
        warnings,
    })
}

fn show_magic(bytes: &[u8], flattened: bool) -> String {
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let inner = if flattened {
        " inside a flattened stream"
    } else {
        ""
    };
    format!("{}{inner}", hex.join(" "))
}

/// PAGESIZE from VMCOREINFO when it is a sane power of two, else 4 KiB.
fn elf_page_size(vmcoreinfo: Option<&str>) -> u64 {
    vmcoreinfo
        .map(VmcoreInfo::parse)
        .and_then(|v| v.page_size())
        .filter(|s| s.is_power_of_two() && (512..=(1 << 20)).contains(s))
        .unwrap_or(DEFAULT_PAGE_SIZE)
}

impl Dump {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dump's format, and for kdump the compressions seen (announced by the header or met so far).
    pub fn format(&self) -> DumpFormat {
        let flattened = matches!(self.source, Source::Flattened(_));
        match &self.kind {
            Kind::Elf(_) => DumpFormat {
                kind: FormatKind::Elf,
                flattened,
                compressions: Vec::new(),
            },
            Kind::Kdump(k) => DumpFormat {
                kind: if k.info.signature == "DISKDUMP" {
                    FormatKind::Diskdump
                } else {
                    FormatKind::Kdump
                },
                flattened,
                compressions: kdump::compression_names(k.compressions()),
            },
        }
    }

    /// The raw VMCOREINFO text: from the ELF `VMCOREINFO` note, or the kdump sub-header (v3+) or its ELF
    /// notes (v4+).
    pub fn vmcoreinfo(&self) -> Option<&str> {
        match &self.kind {
            Kind::Elf(e) => e.vmcoreinfo.as_deref(),
            Kind::Kdump(k) => k.vmcoreinfo.as_deref(),
        }
    }

    /// The page size: kdump's block size; for ELF, VMCOREINFO's PAGESIZE or 4096.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Physical ranges present in the dump (sorted, merged): reads inside them return data or zeros (pages
    /// excluded by the dump level, or past an ELF segment's `p_filesz`), reads outside are
    /// [`ReadError::NotInDump`]. For kdump this scans the 1st bitmap.
    pub fn phys_ranges(&self) -> Vec<Range<u64>> {
        match &self.kind {
            Kind::Elf(e) => e.phys_ranges(),
            Kind::Kdump(k) => k.phys_ranges(self.source.get()),
        }
    }

    /// An ELF vmcore's PT_LOADs as found (with `p_vaddr`, which kdump's /proc/vmcore fills with the direct
    /// map and QEMU leaves 0).
    pub fn elf_segments(&self) -> Option<&[ElfSegment]> {
        match &self.kind {
            Kind::Elf(e) => Some(e.segments()),
            Kind::Kdump(_) => None,
        }
    }

    /// The ELF header's `e_machine` (62 for x86_64).
    pub fn elf_machine(&self) -> Option<u16> {
        match &self.kind {
            Kind::Elf(e) => Some(e.machine),
            Kind::Kdump(_) => None,
        }
    }

    /// For a flattened dump: the number of data records indexed, and whether the stream ended with its end
    /// marker (without it, the stream was cut short and bytes never written read as errors, not zeros).
    pub fn flattened_records(&self) -> Option<(u64, bool)> {
        match &self.source {
            Source::Flattened(f) => Some((f.records(), f.complete())),
            Source::Plain(_) => None,
        }
    }

    /// A kdump-compressed dump's header fields.
    pub fn kdump_info(&self) -> Option<&KdumpInfo> {
        match &self.kind {
            Kind::Kdump(k) => Some(&k.info),
            Kind::Elf(_) => None,
        }
    }

    /// Damage or oddities found while opening (truncation, an incomplete dump, a split dump…): the dump is
    /// still readable, and the reads they affect fail one by one.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl PhysMemory for Dump {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if buf.len() > MAX_READ {
            return Err(ReadError::TooLarge {
                addr: paddr,
                len: buf.len(),
            });
        }
        let src = self.source.get();
        match &self.kind {
            Kind::Elf(e) => e.read_phys(src, paddr, buf),
            Kind::Kdump(k) => k.read_phys(src, paddr, buf),
        }
    }
}

impl fmt::Debug for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dump")
            .field("path", &self.path)
            .field("format", &self.format().to_string())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}
