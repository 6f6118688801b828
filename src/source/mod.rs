//! The input formats. One file per format, each behind one trait:
//!
//! | file | format | memory |
//! |---|---|---|
//! | `kcore.rs` | `/proc/kcore` (live), or a file of its shape | kernel virtual ([`crate::memory::Memory`]) |
//! | `vmcore.rs` | ELF vmcore (kdump, `makedumpfile -E`, QEMU, `virsh dump`) | physical ([`PhysSource`]) |
//! | `kdump.rs` | kdump-compressed ("KDUMP   ", "DISKDUMP") | physical ([`PhysSource`]) |
//! | `flattened.rs` | makedumpfile's flattened stream of either | the file it describes ([`ByteSource`]) |
//! | `lime.rs` | LiME snapshots (and the record walk AVML shares) | physical ([`PhysSource`]) |
//! | `avml.rs` | AVML's compressed snapshots (Snappy-framed LiME records) | physical, through `lime.rs` |
//! | `raw.rs` | raw physical images (LiME `padded`, QEMU `pmemsave`, `/dev/mem` copies): only when asked | physical ([`PhysSource`]) |
//!
//! `elf.rs` is the one ELF header parser (kcore and vmcore), `bytes.rs` the byte layer under the readers
//! (a mapped file, `pread`, the flattened index).
//!
//! [`open`] tells the format from the file's first bytes (never from its name): `\x7fELF`, `KDUMP   ` /
//! `DISKDUMP`, `makedumpfile` (the flattened stream, whose records rebuild one of the other two), or a LiME
//! or AVML record header. A raw image has no magic: it is read as one only when the caller says so
//! ([`OpenOptions::raw`]), and an unrecognised file's error says that it may be one. The file
//! is opened read-only and memory-mapped, never read whole; a flattened stream is indexed once by its record
//! headers and then read in place, so the ELF and kdump readers see the same logical file either way.
//!
//! Everything in a file is untrusted: every offset and size is checked against the file before use, and a
//! damaged page costs the read that touches it ([`ReadError::Corrupt`] naming the pfn, the page descriptor
//! and its file offset), not the whole file. Only unusable headers fail [`open`]; damage found while opening
//! is a warning ([`Image::warnings`]), which reaches the report and its exit status.
//!
//! The file is mapped shared and read-only: if another process truncates it while we read, the kernel
//! raises SIGBUS, as for every mmap reader (crash maps kdump bitmaps the same way).

pub mod avml;
mod bytes;
mod elf;
mod flattened;
pub mod kcore;
mod kdump;
pub mod lime;
mod raw;
mod vmcore;

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use bytes::{ByteSource, SourceError};
pub use elf::ElfSegment;
pub use flattened::FlatError;
pub use kdump::{KdumpDump, KdumpInfo};
pub use lime::{Lime, LimeFormat};
pub use raw::Raw;
pub use vmcore::VmcoreDump;

use crate::arch::Machine;
use crate::memory::{PhysMemory, ReadError};
use bytes::MappedFile;
use flattened::Flattened;

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
    #[error("{}: {len} bytes: too short to be a dump or snapshot", path.display())]
    TooShort { path: PathBuf, len: u64 },
    #[error(
        "{}: not a dump or snapshot this tool recognises (first bytes {magic}): expected an ELF vmcore \
         (\\x7fELF), a kdump-compressed dump (\"KDUMP   \" or \"DISKDUMP\"), makedumpfile's flattened format \
         (\"makedumpfile\"), or a LiME or AVML snapshot. A raw physical memory image (LiME format=padded, \
         QEMU pmemsave, a copy of /dev/mem or /dev/crash) has no magic: if this is one, pass --raw",
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

/// The kind of file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatKind {
    /// ELF vmcore.
    Elf,
    /// kdump-compressed ("KDUMP   " signature).
    Kdump,
    /// The older diskdump layout ("DISKDUMP" signature).
    Diskdump,
    /// A LiME snapshot.
    Lime,
    /// An AVML compressed snapshot.
    Avml,
    /// A raw physical image (offset = physical address).
    Raw,
}

impl FormatKind {
    /// Snapshots carry no VMCOREINFO of their own: the kernel is found by scanning.
    pub fn is_snapshot(self) -> bool {
        matches!(self, FormatKind::Lime | FormatKind::Avml | FormatKind::Raw)
    }
}

/// What [`Image::format`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFormat {
    pub kind: FormatKind,
    /// Read through makedumpfile's flattened format.
    pub flattened: bool,
    /// kdump: the compressions the header announces and the page descriptors read so far use.
    pub compressions: Vec<&'static str>,
}

impl DumpFormat {
    /// `kind`, not flattened, no compression.
    pub fn plain(kind: FormatKind) -> DumpFormat {
        DumpFormat {
            kind,
            flattened: false,
            compressions: Vec::new(),
        }
    }
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
            FormatKind::Lime => "lime",
            FormatKind::Avml => "avml (snappy)",
            FormatKind::Raw => "raw",
        })?;
        if !self.compressions.is_empty() {
            write!(f, " ({})", self.compressions.join(", "))?;
        }
        Ok(())
    }
}

/// What every format that holds physical memory gives: the memory, and what the format knows of itself.
pub trait PhysSource: PhysMemory + Send + Sync {
    /// The format (without the flattened wrapper, which [`Image`] adds).
    fn format(&self) -> DumpFormat;
    /// The kernel's VMCOREINFO text, when the format carries it (an ELF note, the kdump sub-header).
    fn vmcoreinfo(&self) -> Option<&str>;
    /// The architecture the format's header names, when it names one.
    fn machine(&self) -> Option<Machine>;
    /// The page (block) size of the format.
    fn page_size(&self) -> u64;
    /// Physical ranges present (sorted, merged): reads inside them return data or zeros (excluded pages),
    /// reads outside are [`ReadError::NotInDump`].
    fn phys_ranges(&self) -> Vec<Range<u64>>;
    /// The part of [`PhysSource::phys_ranges`] whose bytes the file really holds (not excluded pages read as
    /// zeros, not what a header claims past the end of the file): what a pass over all the memory (the
    /// VMCOREINFO scan) reads, so that its work is bounded by the file, not by a header.
    fn backed_ranges(&self) -> Vec<Range<u64>> {
        self.phys_ranges()
    }
    /// Damage or oddities found while opening: the file is still readable, and the reads they affect fail
    /// one by one.
    fn warnings(&self) -> &[String];
    /// For format-specific facts ([`Image::kdump_info`]).
    fn as_any(&self) -> &dyn Any;
}

/// An open dump, read by physical address.
pub struct Image {
    path: PathBuf,
    /// Kept open (read-only) for the life of the mapping, unless the reader holds it.
    _file: Option<File>,
    /// The file's mapping (address, length), owned by `reader`: for [`Image::release_pages`]; `(0, 0)`
    /// for bytes in memory ([`open_bytes`]).
    mapping: (usize, usize),
    /// The file's length (or that of the bytes in memory).
    file_len: u64,
    reader: Box<dyn PhysSource>,
    /// For a flattened file: data records indexed, and whether the end marker was there.
    flattened: Option<(u64, bool)>,
    warnings: Vec<String>,
}

/// How to open a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Read the file as a raw physical image (byte N = physical address N), whatever its first bytes.
    pub raw: bool,
}

/// Opens the file at `path` read-only and reads its headers. The format comes from the content.
pub fn open(path: &Path) -> Result<Image, DumpError> {
    open_with(path, OpenOptions::default())
}

/// [`open`], with options.
pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Image, DumpError> {
    let p = || path.to_path_buf();
    // Read-only, never blocking, regular files only (a FIFO is refused, not waited on).
    let file = crate::input::open_regular(path).map_err(|err| {
        if crate::input::is_not_regular(&err) {
            DumpError::NotRegular { path: p() }
        } else {
            DumpError::Open { path: p(), err }
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|err| DumpError::Open { path: p(), err })?;
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
    let mapping = (map.as_ptr() as usize, map.len());
    open_data(p(), Data::Mapped(map), Some(file), mapping, opts)
}

/// [`open_with`] over bytes already in memory instead of a file: the same recognition by content and the
/// same readers, with `name` standing for the path in errors and in [`Image::path`]. For the fuzz targets
/// (`synq::fuzzing`) and for callers that hold a dump in memory. Nothing is mapped, so
/// [`Image::release_pages`] does nothing, and every byte counts as stored (no holes).
pub fn open_bytes(name: &Path, bytes: Vec<u8>, opts: OpenOptions) -> Result<Image, DumpError> {
    if bytes.len() < 16 {
        return Err(DumpError::TooShort {
            path: name.to_path_buf(),
            len: bytes.len() as u64,
        });
    }
    open_data(name.to_path_buf(), Data::Bytes(bytes), None, (0, 0), opts)
}

/// The bytes an [`Image`] reads: a file's read-only mapping, or bytes in memory ([`open_bytes`]).
enum Data {
    Mapped(Mmap),
    Bytes(Vec<u8>),
}

impl AsRef<[u8]> for Data {
    fn as_ref(&self) -> &[u8] {
        match self {
            Data::Mapped(map) => map,
            Data::Bytes(bytes) => bytes,
        }
    }
}

impl Data {
    /// Lets go of a mapping's pages behind a front-to-back pass ([`Behind`]); bytes in memory stay.
    fn release_behind(&self, behind: &mut Behind, pos: u64) {
        if let Data::Mapped(map) = self {
            behind.release(map, pos);
        }
    }
}

/// The logical file is the data itself; no holes are known, so all of it counts as stored.
impl ByteSource for Data {
    fn len(&self) -> u64 {
        self.as_ref().len() as u64
    }

    fn bytes(&self, off: u64, len: usize) -> Result<Cow<'_, [u8]>, SourceError> {
        bytes::slice_at(self.as_ref(), off, len).map(Cow::Borrowed)
    }
}

/// [`open_with`] past opening the file: recognises the format of `data` and reads its headers. `file` is the
/// file `data` maps (`None` for bytes in memory), `mapping` its address and length (`(0, 0)`: nothing to
/// release).
fn open_data(
    path: PathBuf,
    data: Data,
    file: Option<File>,
    mapping: (usize, usize),
    opts: OpenOptions,
) -> Result<Image, DumpError> {
    let p = || path.clone();
    let file_len = data.len();
    let head = data.as_ref().get(..32).unwrap_or_default().to_vec();
    let mut warnings = Vec::new();
    if opts.raw {
        let reader = Raw::new(data);
        return Ok(Image {
            path: p(),
            _file: file,
            mapping,
            file_len,
            reader: Box::new(reader),
            flattened: None,
            warnings,
        });
    }
    if lime::recognise(&head).is_some() {
        let name = match lime::recognise(&head) {
            Some(LimeFormat::Avml) => "AVML snapshot",
            _ => "LiME snapshot",
        };
        let mut behind = Behind::default();
        let reader = Lime::parse_with(data, |d: &Data, pos| d.release_behind(&mut behind, pos))
            .map_err(|err| DumpError::Format {
                path: p(),
                format: name,
                err,
            })?;
        warnings.extend(reader.warnings().iter().cloned());
        return Ok(Image {
            path: p(),
            _file: file,
            mapping,
            file_len,
            reader: Box::new(reader),
            flattened: None,
            warnings,
        });
    }
    let (source, flattened, keep): (Box<dyn ByteSource + Send + Sync>, _, _) = if head
        .starts_with(flattened::FLAT_SIGNATURE)
    {
        let flat = index_flattened(data).map_err(|err| DumpError::Flattened { path: p(), err })?;
        warnings.extend(flat.warnings().iter().cloned());
        let info = (flat.records(), flat.complete());
        (Box::new(flat), Some(info), file)
    } else {
        match (data, file) {
            // The reader holds the file (for its holes); the image keeps no second descriptor.
            (Data::Mapped(map), Some(file)) => (Box::new(MappedFile { map, file }), None, None),
            (data, file) => (Box::new(data), None, file),
        }
    };
    let magic = source
        .bytes(0, 8)
        .map(|b| b.into_owned())
        .unwrap_or_default();
    let is_flat = flattened.is_some();
    let format_err = |format: &'static str| {
        move |err| DumpError::Format {
            path: p(),
            format,
            err,
        }
    };
    let reader: Box<dyn PhysSource> = if magic.starts_with(ELF_MAGIC) {
        let name = if is_flat {
            "flattened ELF vmcore"
        } else {
            "ELF vmcore"
        };
        Box::new(VmcoreDump::parse(source).map_err(format_err(name))?)
    } else if magic == kdump::SIG_KDUMP || magic == kdump::SIG_DISKDUMP {
        let name = if is_flat { "flattened kdump" } else { "kdump" };
        Box::new(KdumpDump::parse(source).map_err(format_err(name))?)
    } else {
        let shown = if is_flat { &magic } else { &head };
        return Err(DumpError::UnknownFormat {
            path: p(),
            magic: show_magic(shown, is_flat),
        });
    };
    warnings.extend(reader.warnings().iter().cloned());
    Ok(Image {
        path: p(),
        _file: keep,
        mapping,
        file_len,
        reader,
        flattened,
        warnings,
    })
}

/// Indexes a flattened stream, letting go of the mapped pages behind the indexing front ([`Behind`]).
fn index_flattened(data: Data) -> Result<Flattened<Data>, FlatError> {
    let mut behind = Behind::default();
    Flattened::index_with(data, |d: &Data, pos| d.release_behind(&mut behind, pos))
}

/// Releases a mapping's pages behind a pass that walks the file front to back (indexing a flattened stream,
/// or AVML's chunk headers). The pass reads a header every few pages, and the kernel maps file pages in
/// 64 KiB neighbourhoods around each fault: left alone, the whole file ends up resident. Every 8 MiB, the
/// pages behind the front are let go; pages read later fault in again.
#[derive(Default)]
struct Behind {
    released: u64,
}

impl Behind {
    const STEP: u64 = 8 << 20;

    fn release(&mut self, m: &Mmap, pos: u64) {
        let upto = pos & !(Self::STEP - 1);
        if upto > self.released {
            let (Ok(off), Ok(len)) = (
                usize::try_from(self.released),
                usize::try_from(upto - self.released),
            ) else {
                return;
            };
            // SAFETY: DONTNEED on a read-only mapping of a file drops page-table entries only; the file's
            // bytes are unchanged and are read again from the page cache on the next access.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len) };
            self.released = upto;
        }
    }
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

impl Image {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format, and for kdump the compressions seen (announced by the header or met so far).
    pub fn format(&self) -> DumpFormat {
        DumpFormat {
            flattened: self.flattened.is_some(),
            ..self.reader.format()
        }
    }

    /// The raw VMCOREINFO text, when the format carries it.
    pub fn vmcoreinfo(&self) -> Option<&str> {
        self.reader.vmcoreinfo()
    }

    /// The architecture the file's header names, if any.
    pub fn machine(&self) -> Option<Machine> {
        self.reader.machine()
    }

    /// The page size: kdump's block size; for ELF, VMCOREINFO's PAGESIZE or 4096.
    pub fn page_size(&self) -> u64 {
        self.reader.page_size()
    }

    /// See [`PhysSource::phys_ranges`]. For kdump this scans the 1st bitmap.
    pub fn phys_ranges(&self) -> Vec<Range<u64>> {
        self.reader.phys_ranges()
    }

    /// The file's size on disk.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// See [`PhysSource::backed_ranges`].
    pub fn backed_ranges(&self) -> Vec<Range<u64>> {
        self.reader.backed_ranges()
    }

    /// An ELF vmcore's PT_LOADs as found (with `p_vaddr`, which kdump's /proc/vmcore fills with the direct
    /// map and QEMU leaves 0).
    pub fn elf_segments(&self) -> Option<&[ElfSegment]> {
        self.reader
            .as_any()
            .downcast_ref::<VmcoreDump>()
            .map(VmcoreDump::segments)
    }

    /// For a flattened file: the number of data records indexed, and whether the stream ended with its end
    /// marker (without it, the stream was cut short and bytes never written read as errors, not zeros).
    pub fn flattened_records(&self) -> Option<(u64, bool)> {
        self.flattened
    }

    /// A kdump-compressed dump's reader (its header fields, its cache).
    pub fn kdump(&self) -> Option<&KdumpDump> {
        self.reader.as_any().downcast_ref::<KdumpDump>()
    }

    /// A kdump-compressed dump's header fields.
    pub fn kdump_info(&self) -> Option<&KdumpInfo> {
        self.kdump().map(KdumpDump::info)
    }

    /// Damage or oddities found while opening (truncation, an incomplete dump, a split dump…): the file is
    /// still readable, and the reads they affect fail one by one.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Lets go of the file's pages mapped so far. A pass over the whole file (the scan for VMCOREINFO)
    /// would otherwise leave all of it resident: a 2 GiB snapshot would count 2 GiB towards the process's
    /// memory. Pages read later fault in again from the page cache.
    pub fn release_pages(&self) {
        let (addr, len) = self.mapping;
        if len == 0 {
            return;
        }
        // SAFETY: `addr..addr + len` is the read-only mapping of the file made in `open_with`, which
        // `self.reader` owns and keeps mapped for as long as `self` lives. MADV_DONTNEED on a file mapping
        // drops page-table entries only; the file's bytes are unchanged and are read again on the next access.
        let _ = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    }
}

impl PhysMemory for Image {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.reader.read_phys(paddr, buf)
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("format", &self.format().to_string())
            .field("page_size", &self.page_size())
            .finish_non_exhaustive()
    }
}
