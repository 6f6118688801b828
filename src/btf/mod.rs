//! Struct layouts from BTF.
//!
//! `resolve` turns the kernel's own type information into one plain [`Layout`] of offsets that the walker
//! uses. Every variant is detected from member names and types, never from a version number: distributions
//! backport freely (RHEL 7's 3.10 carries 4.x fields, 5.15.140+ dropped `listening_hash`). Every branch names
//! the upstream change it follows.

mod details;
pub mod index;
pub mod netns;
pub mod owners;
pub mod providers;
pub mod requests;
mod types;

pub use details::{Details, Drops, FastOpen, Inode, Reuseport};

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use btf_rs::Type;
use serde_json::{Value, json};

use types::{
    Found, as_struct, find_member, find_path, find_struct, size_of, struct_name_of, struct_via,
    type_by_id,
};

/// Largest BTF we accept, compressed or not. vmlinux BTF is 3–7 MiB today; 256 MiB leaves room for
/// non-deduplicated files (the 99-copies-of-`struct sock` kind) without letting a bad file eat memory.
pub const MAX_BTF_BYTES: u64 = 256 << 20;

/// TCP_LISTEN in `enum tcp_state`; stable since the beginning.
pub const TCP_LISTEN: u64 = 10;
/// Linux AF_INET and AF_INET6.
pub const AF_INET: u64 = 2;
pub const AF_INET6: u64 = 10;
/// IPPROTO_TCP.
pub const IPPROTO_TCP: u64 = 6;
/// `LISTENING_NULLS_BASE` in include/net/inet_hashtables.h: bucket `i` ends with the nulls value `i + BASE`.
pub const LISTENING_NULLS_BASE: u64 = 1 << 29;

#[derive(Debug, thiserror::Error)]
pub enum BtfLoadError {
    #[error(
        "{0}: no such file — this kernel exposes no BTF (CONFIG_DEBUG_INFO_BTF off?): pass --btf FILE with \
         the kernel's BTF (for example from BTFHub)"
    )]
    NotFound(PathBuf),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}: larger than {MAX_BTF_BYTES} bytes; not a vmlinux BTF file")]
    TooLarge(PathBuf),
    #[error("{path}: xz data is corrupt: {msg}")]
    Xz { path: PathBuf, msg: String },
    #[error(
        "{0}: not raw BTF (expected magic 9f eb, or an xz file holding raw BTF); an ELF vmlinux is not \
         supported here yet"
    )]
    NotBtf(PathBuf),
    #[error("{0}: big-endian BTF; synq reads little-endian kernels only (x86_64, arm64, i386)")]
    BigEndian(PathBuf),
    #[error("{path}: malformed BTF: {msg}")]
    Parse { path: PathBuf, msg: String },
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("struct {0} is not in the BTF")]
    MissingStruct(String),
    #[error("struct {strukt} has no member {member}")]
    MissingMember { strukt: String, member: String },
    #[error("struct inet_hashinfo has neither listening_hash nor lhash2")]
    NoListenTable,
    #[error("{0}")]
    Unsupported(String),
    #[error("malformed BTF: {0}")]
    Malformed(String),
}

/// Parsed BTF (btf-rs's lazily indexed backend, which every lookup goes through) and the ids of the structs
/// synq looks up by name, found in one pass when it was loaded ([`index`]).
pub struct Btf {
    inner: btf_rs::Btf,
    structs: index::StructIndex,
}

impl Btf {
    /// `inner`, with the struct ids found in `raw`, its bytes (none: every lookup scans, as btf-rs does).
    fn new(inner: btf_rs::Btf, raw: Option<&[u8]>) -> Btf {
        Btf {
            inner,
            structs: raw.map(index::StructIndex::scan).unwrap_or_default(),
        }
    }

    /// The ids of `struct NAME` as the load-time pass found them (a hint: check the names).
    pub fn struct_ids(&self, name: &str) -> Option<&[u32]> {
        self.structs.ids(name)
    }
}

impl std::ops::Deref for Btf {
    type Target = btf_rs::Btf;
    fn deref(&self) -> &btf_rs::Btf {
        &self.inner
    }
}

/// Parsed BTF plus where it came from, for messages.
pub struct LoadedBtf {
    pub btf: Btf,
    pub origin: PathBuf,
}

/// Reads a raw BTF file, or an xz-compressed one (the `../shared/btf` corpus, BTFHub archives).
///
/// Parsing all of vmlinux BTF (130,000 types) into maps costs ~70 ms natively and ten times that under
/// emulation, for the dozen structs synq needs. So BTF is memory-mapped and indexed lazily (btf-rs's mmap
/// backend): straight from the file when the file can be mapped (`/sys/kernel/btf/vmlinux` since 6.16, any
/// regular file), else from an anonymous memory file holding a copy (older sysfs, decompressed xz).
pub fn load_file(path: &Path) -> Result<LoadedBtf, BtfLoadError> {
    let io = |err: std::io::Error| BtfLoadError::Io {
        path: path.to_path_buf(),
        err,
    };
    let mut file = crate::input::open_regular(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => BtfLoadError::NotFound(path.to_path_buf()),
        _ => io(err),
    })?;
    let mut head = [0u8; HEADER_LEN];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    let head = head.get(..n).unwrap_or(&[]);
    if !head.starts_with(XZ_MAGIC) {
        // The header's own checks first, so that a bad or truncated file says what is wrong with it.
        let size = file.metadata().map_err(io)?.len();
        check_header(head, size, path)?;
        // SAFETY: a read-only private mapping of a file opened read-only, to learn whether the file can be
        // mapped (sysfs before 6.16 cannot) and to find the struct ids; dropped once the BTF is parsed.
        let mapped = unsafe { memmap2::Mmap::map(&file) }.ok();
        let btf = if let Some(raw) = mapped {
            let inner = mmap_btf(path).map_err(|msg| BtfLoadError::Parse {
                path: path.to_path_buf(),
                msg,
            })?;
            Some(Btf::new(inner, Some(&raw)))
        } else {
            // Not mappable: let the kernel copy it into a memory file (std::io::copy uses
            // copy_file_range/sendfile where it can), then map that.
            memfd_copy_btf(&mut file, head, path)?
        };
        if let Some(btf) = btf {
            return Ok(LoadedBtf {
                btf,
                origin: path.to_path_buf(),
            });
        }
    }
    let mut raw = head.to_vec();
    file.take(MAX_BTF_BYTES + 1 - raw.len() as u64)
        .read_to_end(&mut raw)
        .map_err(io)?;
    if raw.len() as u64 > MAX_BTF_BYTES {
        return Err(BtfLoadError::TooLarge(path.to_path_buf()));
    }
    let btf = parse_bytes(&raw, path)?;
    Ok(LoadedBtf {
        btf,
        origin: path.to_path_buf(),
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(buf.get_mut(n..).unwrap_or(&mut [])) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn check_magic(raw: &[u8], origin: &Path) -> Result<(), BtfLoadError> {
    match raw.get(..2) {
        Some([0x9f, 0xeb]) => Ok(()),
        Some([0xeb, 0x9f]) => Err(BtfLoadError::BigEndian(origin.to_path_buf())),
        _ => Err(BtfLoadError::NotBtf(origin.to_path_buf())),
    }
}

/// `struct btf_header` (include/uapi/linux/btf.h): magic u16, version u8, flags u8, hdr_len u32, then the
/// type and string sections' offsets and lengths (u32 each), relative to the end of the header.
pub(crate) const HEADER_LEN: usize = 24;

/// The header of raw BTF `head` (its first bytes) in a file of `size` bytes: magic, version 1, flags 0, and
/// both sections inside the file. Each failure says what is wrong, before any parser sees the data.
pub(crate) fn check_header(head: &[u8], size: u64, origin: &Path) -> Result<(), BtfLoadError> {
    check_magic(head, origin)?;
    let bad = |msg: String| BtfLoadError::Parse {
        path: origin.to_path_buf(),
        msg,
    };
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let (
        Some(&version),
        Some(&flags),
        Some(hdr_len),
        Some(type_off),
        Some(type_len),
        Some(str_off),
        Some(str_len),
    ) = (
        head.get(2),
        head.get(3),
        u32_at(4),
        u32_at(8),
        u32_at(12),
        u32_at(16),
        u32_at(20),
    )
    else {
        return Err(bad(format!(
            "{size} bytes: shorter than the {HEADER_LEN}-byte BTF header: truncated BTF"
        )));
    };
    if version != 1 {
        return Err(bad(format!(
            "BTF header: version {version} (only version 1 exists)"
        )));
    }
    if flags != 0 {
        return Err(bad(format!("BTF header: flags {flags:#x} (must be 0)")));
    }
    if (hdr_len as usize) < HEADER_LEN || u64::from(hdr_len) > size {
        return Err(bad(format!(
            "BTF header: hdr_len {hdr_len} (must be {HEADER_LEN} or more, within the {size}-byte file)"
        )));
    }
    for (what, off, len) in [("type", type_off, type_len), ("string", str_off, str_len)] {
        let start = u64::from(hdr_len) + u64::from(off);
        let end = start + u64::from(len);
        if end > size {
            return Err(bad(format!(
                "the {what} section (bytes {start:#x}..{end:#x}) runs past the end of the file ({size:#x} \
                 bytes): truncated BTF"
            )));
        }
    }
    if str_len == 0 {
        return Err(bad("BTF header: empty string section".into()));
    }
    Ok(())
}

/// Lazily indexed BTF over a read-only mapping of `path`, or the parser's own error.
fn mmap_btf(path: &Path) -> Result<btf_rs::Btf, String> {
    // btf-rs asserts some invariants with `expect`: contain them (see parse_bytes).
    match std::panic::catch_unwind(|| {
        btf_rs::Btf::from_file_with_backend(path, btf_rs::Backend::Mmap)
    }) {
        Ok(Ok(btf)) => Ok(btf),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the BTF parser rejected the data".into()),
    }
}

/// Copies `file` (whose first bytes, `head`, were already read) into a memory file and maps that;
/// `Ok(None)` when memory files are unavailable.
fn memfd_copy_btf(file: &mut File, head: &[u8], path: &Path) -> Result<Option<Btf>, BtfLoadError> {
    use std::io::{Seek, SeekFrom};
    let io = |err: std::io::Error| BtfLoadError::Io {
        path: path.to_path_buf(),
        err,
    };
    let Some(mut memfd) = memfd() else {
        return Ok(None);
    };
    let size = file.metadata().map_err(io)?.len();
    if size > head.len() as u64 && size < MAX_BTF_BYTES {
        // sysfs states the BTF size: read straight into the memory file's pages (sysfs serves one page per
        // read; a copy through a buffer would double the system calls).
        if read_into(file, head, size, &memfd).map_err(io)? {
            return parse_memfd(&memfd, path).map(Some);
        }
        // The size was not what the file holds: start again, streaming.
        memfd.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(head.len() as u64)).map_err(io)?;
    }
    memfd.write_all(head).map_err(io)?;
    let copied = std::io::copy(&mut file.take(MAX_BTF_BYTES), &mut memfd).map_err(io)?;
    if copied + head.len() as u64 >= MAX_BTF_BYTES {
        return Err(BtfLoadError::TooLarge(path.to_path_buf()));
    }
    parse_memfd(&memfd, path).map(Some)
}

/// The BTF in a memory file, or the parser's error about `path`.
fn parse_memfd(memfd: &File, path: &Path) -> Result<Btf, BtfLoadError> {
    map_memfd(memfd).map_err(|msg| BtfLoadError::Parse {
        path: path.to_path_buf(),
        msg,
    })
}

/// Sizes `memfd` to `size` and fills it with `head` and the rest of `file`. `false` when the file does not
/// hold exactly `size` bytes.
fn read_into(file: &mut File, head: &[u8], size: u64, memfd: &File) -> std::io::Result<bool> {
    memfd.set_len(size)?;
    // SAFETY: the memory file is ours alone; nothing else maps or truncates it while this mapping lives.
    let mut map = unsafe { memmap2::MmapMut::map_mut(memfd) }?;
    let (first, rest) = map.split_at_mut(head.len().min(usize::try_from(size).unwrap_or(0)));
    if first.len() != head.len() {
        return Ok(false);
    }
    first.copy_from_slice(head);
    let n = read_up_to(file, rest)?;
    let mut extra = [0u8; 1];
    Ok(n == rest.len() && read_up_to(file, &mut extra)? == 0)
}

fn memfd() -> Option<File> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"synq-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Some(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// btf-rs maps files by path: hand it the memory file through /proc/self/fd.
fn map_memfd(memfd: &File) -> Result<Btf, String> {
    use std::os::fd::AsRawFd;
    let inner = mmap_btf(Path::new(&format!("/proc/self/fd/{}", memfd.as_raw_fd())))?;
    // SAFETY: the memory file is ours alone and no longer written; a read-only mapping for the struct ids.
    let raw = unsafe { memmap2::Mmap::map(memfd) }.ok();
    Ok(Btf::new(inner, raw.as_deref()))
}

/// Lazily indexed BTF over an anonymous memory file holding `raw`; `None` when memory files are unavailable.
fn memfd_btf(raw: &[u8]) -> Option<Result<Btf, String>> {
    let mut f = memfd()?;
    f.write_all(raw).ok()?;
    Some(map_memfd(&f))
}

/// BTF of `len` bytes that `fill` writes, parsed lazily: written straight into a memory file's pages (mapped
/// with its pages allocated up front, so no page faults one page at a time), which the parser then maps;
/// into a buffer when memory files are unavailable. The header is checked before the parser sees the data.
/// `fill`'s error is returned as it is.
pub fn parse_filled<E: From<BtfLoadError>>(
    len: usize,
    origin: &Path,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<Btf, E> {
    if len as u64 > MAX_BTF_BYTES {
        return Err(BtfLoadError::TooLarge(origin.to_path_buf()).into());
    }
    let parse_err = |msg: String| BtfLoadError::Parse {
        path: origin.to_path_buf(),
        msg,
    };
    if let Some(memfd) = memfd()
        && memfd.set_len(len as u64).is_ok()
        // SAFETY: the memory file is ours alone; nothing else maps or truncates it while this mapping lives.
        && let Ok(mut map) = unsafe { memmap2::MmapOptions::new().populate().map_mut(&memfd) }
    {
        fill(&mut map)?;
        check_header(&map, len as u64, origin)?;
        drop(map);
        return Ok(map_memfd(&memfd).map_err(parse_err)?);
    }
    let mut buf = vec![0u8; len];
    fill(&mut buf)?;
    Ok(parse_bytes(&buf, origin)?)
}

const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// Parses raw or xz-compressed BTF bytes. `origin` only names the source in errors.
pub fn parse_bytes(bytes: &[u8], origin: &Path) -> Result<Btf, BtfLoadError> {
    let decompressed;
    let raw = if bytes.starts_with(XZ_MAGIC) {
        decompressed = decompress_xz(bytes, origin)?;
        decompressed.as_slice()
    } else {
        bytes
    };
    check_header(raw, raw.len() as u64, origin)?;
    // Parsed once: through a memory file when there is one, else from the bytes.
    if let Some(parsed) = memfd_btf(raw) {
        return parsed.map_err(|msg| BtfLoadError::Parse {
            path: origin.to_path_buf(),
            msg,
        });
    }
    // btf-rs reads through a cursor and reports truncation as errors, but a few of its accessors assert
    // invariants with `expect`. Input is untrusted, so a broken file must become an error, not an abort.
    let parsed = std::panic::catch_unwind(|| btf_rs::Btf::from_bytes(raw));
    match parsed {
        Ok(Ok(btf)) => Ok(Btf::new(btf, Some(raw))),
        Ok(Err(e)) => Err(BtfLoadError::Parse {
            path: origin.to_path_buf(),
            msg: e.to_string(),
        }),
        Err(_) => Err(BtfLoadError::Parse {
            path: origin.to_path_buf(),
            msg: "the BTF parser rejected the data".into(),
        }),
    }
}

/// A `Write` that refuses to grow past a cap, so a small xz bomb cannot allocate gigabytes.
struct CappedVec {
    buf: Vec<u8>,
    cap: u64,
}

impl Write for CappedVec {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.cap {
            return Err(std::io::Error::other(
                "decompressed BTF exceeds the size limit",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn decompress_xz(bytes: &[u8], origin: &Path) -> Result<Vec<u8>, BtfLoadError> {
    let mut out = CappedVec {
        buf: Vec::new(),
        cap: MAX_BTF_BYTES,
    };
    lzma_rs::xz_decompress(&mut BufReader::new(bytes), &mut out).map_err(|e| BtfLoadError::Xz {
        path: origin.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(out.buf)
}

/// A field inside a struct: byte-aligned fields and bitfields alike, as a bit range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub bit_offset: u64,
    pub bits: u32,
}

impl Field {
    pub fn bytes(offset: u64, size: u64) -> Field {
        Field {
            bit_offset: offset.saturating_mul(8),
            bits: u32::try_from(size.saturating_mul(8)).unwrap_or(u32::MAX),
        }
    }
    pub fn offset(&self) -> u64 {
        self.bit_offset / 8
    }
    pub fn size(&self) -> u64 {
        u64::from(self.bits).div_ceil(8)
    }
    /// One past the last byte the field touches.
    pub fn end(&self) -> u64 {
        (self.bit_offset + u64::from(self.bits)).div_ceil(8)
    }
    pub fn shifted(&self, bytes: u64) -> Field {
        Field {
            bit_offset: self.bit_offset + bytes * 8,
            bits: self.bits,
        }
    }
    /// Reads the field, little-endian, from `buf`, which starts at byte `base` of the struct.
    /// `None` when the field lies outside `buf` or is wider than 64 bits.
    pub fn read(&self, buf: &[u8], base: u64) -> Option<u64> {
        if self.bits == 0 || self.bits > 64 {
            return None;
        }
        let start = usize::try_from(self.offset().checked_sub(base)?).ok()?;
        let len = usize::try_from(self.end() - self.offset()).ok()?;
        let bytes = buf.get(start..start.checked_add(len)?)?;
        let mut v: u128 = 0;
        for (i, b) in bytes.iter().enumerate() {
            v |= u128::from(*b) << (8 * i);
        }
        v >>= self.bit_offset % 8;
        let mask = if self.bits == 64 {
            u128::from(u64::MAX)
        } else {
            (1u128 << self.bits) - 1
        };
        u64::try_from(v & mask).ok()
    }
}

/// Which listening table the kernel has, and where it sits in `struct inet_hashinfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `listening_hash[buckets]`, embedded in inet_hashinfo (2.6.29 – 5.18).
    ListeningHash { offset: u64, buckets: u64 },
    /// `lhash2` pointer and `lhash2_mask` (the only listening table from 5.19).
    Lhash2 { ptr_offset: u64, mask: Field },
}

/// Where the SYN-queue length lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// 4.4 and later: `icsk_accept_queue.qlen` / `.young` are atomic_t in the socket itself.
    Atomic { qlen: Field, young: Field },
    /// 2.6.x – 4.0: `icsk_accept_queue.listen_opt` → `struct listen_sock { int qlen; int qlen_young; }`.
    ListenSock {
        listen_opt: Field,
        qlen: Field,
        young: Field,
    },
    /// 4.1 – 4.3: `listen_sock` counts with `qlen_inc − qlen_dec` (and `young_inc − young_dec`).
    ListenSockInc {
        listen_opt: Field,
        qlen_inc: Field,
        qlen_dec: Field,
        young_inc: Field,
        young_dec: Field,
    },
}

/// Everything the walker needs, as plain offsets. Socket offsets are relative to the start of `struct sock`
/// (which is also the start of inet_sock, inet_connection_sock and tcp_sock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub pointer_size: u64,
    pub hashinfo_size: u64,
    pub table: Table,
    pub bucket_size: u64,
    pub bucket_head_offset: u64,
    /// `inet_listen_hashbucket.count` (4.16 – 5.18): number of sockets in the bucket.
    pub bucket_count: Option<Field>,
    /// The list ends with a nulls marker (bit 0 set) instead of NULL.
    pub nulls: bool,
    /// Offset in `struct sock` of the list node the walk follows.
    pub link_offset: u64,
    /// Offset of `next` inside that list node.
    pub next_offset: u64,
    pub family: Field,
    pub state: Field,
    pub num: Field,
    pub rcv_saddr: Field,
    pub v6_rcv_saddr: Option<Field>,
    pub bound_dev_if: Option<Field>,
    /// The `struct net *` (inside possible_net_t from 4.1); `None` without network namespaces.
    pub net_ptr: Option<Field>,
    /// `net.ns.inum` (3.19+) or `net.proc_inum` (3.8 – 3.18), relative to `struct net`.
    pub net_inum: Option<Field>,
    pub ack_backlog: Field,
    pub max_ack_backlog: Field,
    pub protocol: Option<Field>,
    pub kern_sock: Option<Field>,
    pub is_mptcp: Option<Field>,
    /// `icsk_ulp_ops` (4.13+): non-NULL for sockets with an upper-layer protocol such as MPTCP's subflow.
    /// When it is known, `is_mptcp` (deep in tcp_sock) is read only for those sockets, which keeps the
    /// per-socket read to about half the size.
    pub ulp_ops: Option<Field>,
    pub queue: Queue,
    /// Drops, SYN-flood state, Fast Open, TCP_DEFER_ACCEPT, reuseport group, inode: each `None` where the
    /// kernel lacks it.
    pub details: Details,
    /// The byte range of `struct sock` that holds every field above, read in one go per socket.
    pub sock_span: u64,
}

impl Layout {
    pub fn table_name(&self) -> &'static str {
        match self.table {
            Table::ListeningHash { .. } => "listening_hash",
            Table::Lhash2 { .. } => "lhash2",
        }
    }

    /// A short human description of the layout era.
    pub fn era(&self) -> String {
        let table = match (self.table, self.nulls) {
            (Table::Lhash2 { .. }, _) => "lhash2 (5.19+)",
            (Table::ListeningHash { .. }, true) if self.bucket_count.is_some() => {
                "listening_hash, nulls list (5.5 – 5.18)"
            }
            (Table::ListeningHash { .. }, true) => "listening_hash, nulls list",
            (Table::ListeningHash { .. }, false) => "listening_hash, hlist (4.7 – 5.4)",
        };
        let queue = match self.queue {
            Queue::Atomic { .. } => "request_sock_queue.qlen (4.4+)",
            Queue::ListenSock { .. } => "listen_opt → listen_sock.qlen (≤ 4.0)",
            Queue::ListenSockInc { .. } => "listen_sock.qlen_inc (4.1 – 4.3)",
        };
        format!("{table}; {queue}; backlog u{}", self.ack_backlog.bits)
    }

    /// The `synq layout --json` object.
    pub fn to_json(&self) -> Value {
        let (lh_off, lh_buckets, l2_off, l2_mask) = match self.table {
            Table::ListeningHash { offset, buckets } => (Some(offset), Some(buckets), None, None),
            Table::Lhash2 { ptr_offset, mask } => {
                (None, None, Some(ptr_offset), Some(mask.offset()))
            }
        };
        let (qlen, young, listen_opt) = match self.queue {
            Queue::Atomic { qlen, young } => (Some(qlen.offset()), Some(young.offset()), None),
            Queue::ListenSock { listen_opt, .. } | Queue::ListenSockInc { listen_opt, .. } => {
                (None, None, Some(listen_opt.offset()))
            }
        };
        let listen_sock_qlen = match self.queue {
            Queue::ListenSock { qlen, .. } => Some(qlen.offset()),
            Queue::ListenSockInc { qlen_inc, .. } => Some(qlen_inc.offset()),
            Queue::Atomic { .. } => None,
        };
        json!({
            "table": self.table_name(),
            "era": self.era(),
            "bucket_size": self.bucket_size,
            "bucket_head_offset": self.bucket_head_offset,
            "bucket_count_offset": self.bucket_count.map(|f| f.offset()),
            "nulls": self.nulls,
            "link_offset": self.link_offset,
            "qlen_offset": qlen,
            "young_offset": young,
            "listen_opt_offset": listen_opt,
            "listen_sock_qlen_offset": listen_sock_qlen,
            "ack_backlog_offset": self.ack_backlog.offset(),
            "ack_backlog_size": self.ack_backlog.size(),
            "max_ack_backlog_offset": self.max_ack_backlog.offset(),
            "max_ack_backlog_size": self.max_ack_backlog.size(),
            "pointer_size": self.pointer_size,
            "hashinfo_size": self.hashinfo_size,
            "listening_hash_offset": lh_off,
            "listening_hash_buckets": lh_buckets,
            "lhash2_offset": l2_off,
            "lhash2_mask_offset": l2_mask,
            "family_offset": self.family.offset(),
            "state_offset": self.state.offset(),
            "num_offset": self.num.offset(),
            "rcv_saddr_offset": self.rcv_saddr.offset(),
            "v6_rcv_saddr_offset": self.v6_rcv_saddr.map(|f| f.offset()),
            "net_offset": self.net_ptr.map(|f| f.offset()),
            "net_inum_offset": self.net_inum.map(|f| f.offset()),
            "mptcp_label": self.is_mptcp.is_some(),
            "sock_read_bytes": self.sock_span,
            "kernel_sock_label": self.kern_sock.is_some(),
            "details": self.details.to_json(),
        })
    }
}

fn missing(strukt: &str, member: &str) -> LayoutError {
    LayoutError::MissingMember {
        strukt: strukt.into(),
        member: member.into(),
    }
}

/// A member as a [`Field`], sized from its type (or its bitfield width).
fn field_of(btf: &Btf, f: Found, ptr_size: u64) -> Result<Field, LayoutError> {
    let bits = match f.bitfield_size {
        Some(b) => b,
        None => {
            let ty = type_by_id(btf, f.type_id)?;
            let size = size_of(btf, &ty, ptr_size)?;
            u32::try_from(size * 8).map_err(|_| LayoutError::Malformed("field too large".into()))?
        }
    };
    Ok(Field {
        bit_offset: f.bit_offset,
        bits,
    })
}

fn req_path(
    btf: &Btf,
    s: &btf_rs::Struct,
    sname: &str,
    path: &[&str],
) -> Result<Found, LayoutError> {
    find_path(btf, s, path)?.ok_or_else(|| missing(sname, &path.join(".")))
}

fn byte_offset(f: &Found) -> Result<u64, LayoutError> {
    if f.bitfield_size.is_some() || !f.bit_offset.is_multiple_of(8) {
        return Err(LayoutError::Malformed(
            "expected a byte-aligned member".into(),
        ));
    }
    Ok(f.bit_offset / 8)
}

/// Resolves every offset synq needs from BTF.
pub fn resolve(btf: &Btf) -> Result<Layout, LayoutError> {
    // Two lookups by name; every other struct is reached through member types.
    let tcp_sock = find_struct(btf, "tcp_sock")?;
    let hashinfo = find_struct(btf, "inet_hashinfo")?;
    let icsk_m = req_path(btf, &tcp_sock, "tcp_sock", &["inet_conn"])?;
    let icsk = struct_via(btf, icsk_m.type_id, "inet_connection_sock")?;
    let icsk_inet = req_path(btf, &icsk, "inet_connection_sock", &["icsk_inet"])?;
    let inet = struct_via(btf, icsk_inet.type_id, "inet_sock")?;
    let inet_sk = req_path(btf, &inet, "inet_sock", &["sk"])?;
    let sock = struct_via(btf, inet_sk.type_id, "sock")?;

    // BTF does not state the pointer size; an hlist_node is exactly two pointers.
    let skc_node = req_path(btf, &sock, "sock", &["__sk_common", "skc_node"])?;
    let hlist_node = struct_via(btf, skc_node.type_id, "hlist_node")?;
    let pointer_size = hlist_node.size() as u64 / 2;
    if pointer_size != 4 && pointer_size != 8 {
        return Err(LayoutError::Unsupported(format!(
            "struct hlist_node has size {}, expected two 4- or 8-byte pointers",
            hlist_node.size()
        )));
    }

    // container_of: the walker treats one address as sock, inet_sock, inet_connection_sock and tcp_sock.
    if icsk_m.bit_offset != 0 || icsk_inet.bit_offset != 0 || inet_sk.bit_offset != 0 {
        return Err(LayoutError::Unsupported(
            "tcp_sock, inet_connection_sock, inet_sock and sock do not start at the same address"
                .into(),
        ));
    }

    // --- The table to walk: exactly one per era.
    let (table, bucket) = if let Some(lh) = find_member(btf, &hashinfo, "listening_hash")? {
        // 2.6.29 – 5.18: an embedded array of INET_LHTABLE_SIZE (32) buckets.
        let Type::Array(arr) = type_by_id(btf, lh.type_id)? else {
            return Err(LayoutError::Unsupported(
                "inet_hashinfo.listening_hash is not an array".into(),
            ));
        };
        let buckets = arr.len() as u64;
        (
            Table::ListeningHash {
                offset: byte_offset(&lh)?,
                buckets,
            },
            struct_via(btf, lh.type_id, "inet_listen_hashbucket")?,
        )
    } else if let Some(l2) = find_member(btf, &hashinfo, "lhash2")? {
        // 5.19, cae3873c5b3a ("net: inet: Retire port only listening_hash"): lhash2 is the only table.
        let mask = find_member(btf, &hashinfo, "lhash2_mask")?
            .ok_or_else(|| missing("inet_hashinfo", "lhash2_mask"))?;
        (
            Table::Lhash2 {
                ptr_offset: byte_offset(&l2)?,
                mask: field_of(btf, mask, pointer_size)?,
            },
            struct_via(btf, l2.type_id, "inet_listen_hashbucket")?,
        )
    } else {
        return Err(LayoutError::NoListenTable);
    };
    let (bucket_head_offset, nulls) = bucket_head(btf, &bucket)?;
    // A bucket is a lock and a head (and a count in 4.16 – 5.18): tens of bytes even with lockdep or
    // PREEMPT_RT locks. The walker sizes reads by it, so a malformed BTF must not make it huge.
    if bucket.size() as u64 > 4096 || bucket_head_offset + pointer_size > bucket.size() as u64 {
        return Err(LayoutError::Malformed(format!(
            "inet_listen_hashbucket of {} bytes with its head at {bucket_head_offset}",
            bucket.size()
        )));
    }

    let bucket_count = match find_member(btf, &bucket, "count")? {
        // 4.16, 61b7c691c731 ("inet: Add a 2nd listener hashtable (port+addr)") added the per-bucket count;
        // cae3873c5b3a (5.19) removed it with listening_hash.
        Some(c) => Some(field_of(btf, c, pointer_size)?),
        None => None,
    };

    // --- How a socket is linked into the chain.
    let (link_name, node_struct) = if nulls {
        ("skc_nulls_node", "hlist_nulls_node")
    } else {
        ("skc_node", "hlist_node")
    };
    let link = match find_path(btf, &sock, &["__sk_common", link_name])? {
        Some(f) => f,
        None if matches!(table, Table::Lhash2 { .. }) && !nulls => {
            // A plain-hlist lhash2 (4.16 – 5.18) links through icsk_listen_portaddr_node; we only walk lhash2
            // when listening_hash is gone, so this is a kernel we have never seen.
            req_path(
                btf,
                &icsk,
                "inet_connection_sock",
                &["icsk_listen_portaddr_node"],
            )?
        }
        None => return Err(missing("sock_common", link_name)),
    };
    let link_offset = byte_offset(&link)?;
    let node = struct_via(btf, link.type_id, node_struct)?;
    let next_offset = byte_offset(&req_path(btf, &node, node_struct, &["next"])?)?;

    // --- Identity of a listener.
    let sk_field = |path: &[&str]| -> Result<Field, LayoutError> {
        let f = req_path(btf, &sock, "sock", path)?;
        field_of(btf, f, pointer_size)
    };
    let sk_opt = |path: &[&str]| -> Result<Option<Field>, LayoutError> {
        match find_path(btf, &sock, path)? {
            Some(f) => Ok(Some(field_of(btf, f, pointer_size)?)),
            None => Ok(None),
        }
    };
    let family = sk_field(&["__sk_common", "skc_family"])?;
    let state = sk_field(&["__sk_common", "skc_state"])?;
    let num = sk_field(&["__sk_common", "skc_num"])?;
    let rcv_saddr = sk_field(&["__sk_common", "skc_rcv_saddr"])?;
    // 3.13, efe4208f47f9 ("ipv6: make lookups simpler and faster"): skc_v6_rcv_saddr in sock_common.
    let v6_rcv_saddr = sk_opt(&["__sk_common", "skc_v6_rcv_saddr"])?;
    let bound_dev_if = sk_opt(&["__sk_common", "skc_bound_dev_if"])?;

    // 4.1, 0c5c9fb55106 ("net: Introduce possible_pnet_t"): skc_net became possible_net_t { struct net *net }.
    let (net_ptr, net_inum) = match find_path(btf, &sock, &["__sk_common", "skc_net"])? {
        None => (None, None),
        Some(f) => {
            let ptr = match as_struct(btf, f.type_id)? {
                Some(pnet) => find_member(btf, &pnet, "net")?.map(|inner| Found {
                    bit_offset: f.bit_offset + inner.bit_offset,
                    ..inner
                }),
                None => Some(f),
            };
            let inum = match ptr {
                None => None,
                Some(p) => net_inum_field(btf, p.type_id, pointer_size)?,
            };
            (
                ptr.map(|p| Field::bytes(p.bit_offset / 8, pointer_size)),
                inum,
            )
        }
    };

    // 4.1 widened sk_ack_backlog/sk_max_ack_backlog from u16 to u32; take the size from BTF either way.
    let ack_backlog = sk_field(&["sk_ack_backlog"])?;
    let max_ack_backlog = sk_field(&["sk_max_ack_backlog"])?;
    // sk_protocol: an 8-bit bitfield up to 5.5, u16 from 5.6 (bf9765145b85, "sock: Make sk_protocol a 16-bit
    // value"); the bitfield offset comes from BTF.
    let protocol = sk_opt(&["sk_protocol"])?;
    let kern_sock = sk_opt(&["sk_kern_sock"])?;
    // 5.6, with MPTCP itself: tcp_sock.is_mptcp marks the TCP subflow of an MPTCP listener.
    let is_mptcp = match find_member(btf, &tcp_sock, "is_mptcp")? {
        Some(f) => Some(field_of(btf, f, pointer_size)?),
        None => None,
    };

    // 4.13, 734942cc4ea6 ("tcp: ULP infrastructure"): icsk_ulp_ops.
    // Only needed to gate the is_mptcp read.
    let ulp_ops = match find_member(btf, &icsk, "icsk_ulp_ops")? {
        Some(f) if is_mptcp.is_some() => Some(field_of(btf, f, pointer_size)?),
        _ => None,
    };

    // --- The queues.
    let aq = req_path(btf, &icsk, "inet_connection_sock", &["icsk_accept_queue"])?;
    let aq_off = byte_offset(&aq)?;
    let rsq = as_struct(btf, aq.type_id)?
        .ok_or_else(|| LayoutError::Unsupported("icsk_accept_queue is not a struct".into()))?;
    let queue = if let Some(qlen) = find_member(btf, &rsq, "qlen")? {
        // 4.4, ef547f2ac16b ("tcp/dccp: remove struct listen_sock"): qlen and young are atomic_t here.
        let young = find_member(btf, &rsq, "young")?
            .ok_or_else(|| missing("request_sock_queue", "young"))?;
        Queue::Atomic {
            qlen: atomic_field(btf, qlen, pointer_size)?.shifted(aq_off),
            young: atomic_field(btf, young, pointer_size)?.shifted(aq_off),
        }
    } else if let Some(lo) = find_member(btf, &rsq, "listen_opt")? {
        let listen_opt = Field::bytes(aq_off + byte_offset(&lo)?, pointer_size);
        let ls = struct_via(btf, lo.type_id, "listen_sock")?;
        let ls_field = |name: &str| -> Result<Field, LayoutError> {
            let f = find_member(btf, &ls, name)?.ok_or_else(|| missing("listen_sock", name))?;
            atomic_field(btf, f, pointer_size)
        };
        if find_member(btf, &ls, "qlen_inc")?.is_some() {
            // 4.1, fff1f3001cc5 ("tcp/dccp: get rid of central timer"): per-request timers; the counts are
            // split into an increment side and an atomic decrement side.
            Queue::ListenSockInc {
                listen_opt,
                qlen_inc: ls_field("qlen_inc")?,
                qlen_dec: ls_field("qlen_dec")?,
                young_inc: ls_field("young_inc")?,
                young_dec: ls_field("young_dec")?,
            }
        } else {
            // ≤ 4.0: listen_sock { int qlen; int qlen_young; }, NULL when the socket never listened.
            Queue::ListenSock {
                listen_opt,
                qlen: ls_field("qlen")?,
                young: ls_field("qlen_young")?,
            }
        }
    } else {
        return Err(missing("request_sock_queue", "qlen (or listen_opt)"));
    };

    let mut fields = vec![
        family,
        state,
        num,
        rcv_saddr,
        ack_backlog,
        max_ack_backlog,
        Field::bytes(link_offset + next_offset, pointer_size),
    ];
    fields.extend(
        [
            v6_rcv_saddr,
            bound_dev_if,
            net_ptr,
            protocol,
            kern_sock,
            ulp_ops,
            // Without icsk_ulp_ops to gate it, is_mptcp is read with everything else.
            is_mptcp.filter(|_| ulp_ops.is_none()),
        ]
        .into_iter()
        .flatten(),
    );
    let details = details::resolve(btf, &sock, &rsq, aq_off, pointer_size);
    fields.extend(details.sock_fields());
    match queue {
        Queue::Atomic { qlen, young } => fields.extend([qlen, young]),
        Queue::ListenSock { listen_opt, .. } | Queue::ListenSockInc { listen_opt, .. } => {
            fields.push(listen_opt)
        }
    }
    let sock_span = fields.iter().map(Field::end).max().unwrap_or(0);
    if sock_span > 1 << 16 {
        return Err(LayoutError::Malformed(format!(
            "socket fields span {sock_span} bytes"
        )));
    }

    Ok(Layout {
        pointer_size,
        hashinfo_size: hashinfo.size() as u64,
        table,
        bucket_size: bucket.size() as u64,
        bucket_head_offset,
        bucket_count,
        nulls,
        link_offset,
        next_offset,
        family,
        state,
        num,
        rcv_saddr,
        v6_rcv_saddr,
        bound_dev_if,
        net_ptr,
        net_inum,
        ack_backlog,
        max_ack_backlog,
        protocol,
        kern_sock,
        is_mptcp,
        ulp_ops,
        queue,
        details,
        sock_span,
    })
}

/// The head the walk starts from, inside `struct inet_listen_hashbucket`, and whether its list is a nulls list.
fn bucket_head(btf: &Btf, bucket: &btf_rs::Struct) -> Result<(u64, bool), LayoutError> {
    // 5.5, 8dbd76e79a16 ("tcp/dccp: fix possible race __inet_lookup_established()"): a union of `head` and
    // `nulls_head`; listeners are added with the nulls API, so walk `nulls_head` (also 4.14.y/4.19.y/5.4.y
    // backports, and the only member from 5.19 on).
    if let Some(nh) = find_member(btf, bucket, "nulls_head")? {
        return Ok((byte_offset(&nh)?, true));
    }
    let head = find_member(btf, bucket, "head")?
        .ok_or_else(|| missing("inet_listen_hashbucket", "head"))?;
    let off = byte_offset(&head)?;
    match struct_name_of(btf, head.type_id)?.as_deref() {
        // 2.6.29, c25eb3bfb972 ("inet: Convert listening_hash into a hlist_nulls"): nulls list up to 4.6.
        Some("hlist_nulls_head") => Ok((off, true)),
        // 4.7, 3b24d854cb35 ("tcp/dccp: do not touch listener sk_refcnt under synflood"): plain hlist_head,
        // NULL-terminated, linked through skc_node.
        Some("hlist_head") => Ok((off, false)),
        other => Err(LayoutError::Unsupported(format!(
            "inet_listen_hashbucket.head has type {}",
            other.unwrap_or("(not a struct)")
        ))),
    }
}

/// `atomic_t { int counter; }` members read as their counter; plain ints as themselves.
fn atomic_field(btf: &Btf, f: Found, ptr_size: u64) -> Result<Field, LayoutError> {
    if let Some(inner) = as_struct(btf, f.type_id)?
        && let Some(c) = find_member(btf, &inner, "counter")?
    {
        let field = field_of(btf, c, ptr_size)?;
        return Ok(Field {
            bit_offset: f.bit_offset + field.bit_offset,
            bits: field.bits,
        });
    }
    field_of(btf, f, ptr_size)
}

/// The namespace inode number inside `struct net`, reached from the `struct net *` member `net_ptr_type`.
fn net_inum_field(
    btf: &Btf,
    net_ptr_type: u32,
    ptr_size: u64,
) -> Result<Option<Field>, LayoutError> {
    let net = struct_via(btf, net_ptr_type, "net")?;
    // 3.19, 435d5f4bb2cc ("common object embedded into various struct ....ns"): net.ns.inum.
    if let Some(f) = find_path(btf, &net, &["ns", "inum"])? {
        return Ok(Some(field_of(btf, f, ptr_size)?));
    }
    // 3.8 – 3.18: net.proc_inum.
    if let Some(f) = find_member(btf, &net, "proc_inum")? {
        return Ok(Some(field_of(btf, f, ptr_size)?));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_fixture() -> Vec<u8> {
        let xz = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cilium-ebpf-7.1-x86_64.btf.xz"
        ))
        .unwrap();
        decompress_xz(&xz, Path::new("fixture")).unwrap()
    }

    #[test]
    fn copy_into_memory_file_gives_the_same_layout_as_mapping() {
        // Why: /sys/kernel/btf/vmlinux cannot be mapped before 6.16, so live hosts take this path.
        let raw = raw_fixture();
        let dir = std::env::temp_dir().join(format!("synq-btf-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmlinux");
        std::fs::write(&path, &raw).unwrap();
        let mut f = File::open(&path).unwrap();
        let mut head = [0u8; 6];
        assert_eq!(read_up_to(&mut f, &mut head).unwrap(), 6);
        let copied = memfd_copy_btf(&mut f, &head, &path).unwrap().unwrap();
        let mapped = Btf::new(mmap_btf(&path).unwrap(), None);
        assert_eq!(resolve(&copied).unwrap(), resolve(&mapped).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn field_reads_bitfields_and_rejects_out_of_range() {
        let buf = [0b1010_0000u8, 0x01, 0xff];
        let f = Field {
            bit_offset: 5,
            bits: 4,
        };
        assert_eq!(f.read(&buf, 0), Some(0b1101));
        assert_eq!(Field::bytes(1, 2).read(&buf, 0), Some(0xff01));
        assert_eq!(Field::bytes(2, 2).read(&buf, 0), None);
        assert_eq!(Field::bytes(0, 1).read(&buf, 1), None);
    }
}
