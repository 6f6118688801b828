//! The two ways kernel memory is read, and why a read fails.
//!
//! Every source serves [`Memory`] (bytes at a kernel virtual address) or [`PhysMemory`] (bytes at a
//! physical address). Live, the source is a kcore-shaped ELF core whose program headers are virtual, so it is
//! a [`Memory`] itself; dumps and snapshots hold physical memory, which an architecture's translation
//! ([`crate::arch`]) turns into a [`Memory`]. The walker never knows which one it reads.
//!
//! Every source splits a read at its own boundaries (segments, records, pages, mappings) through one loop,
//! [`read_in_pieces`], and refuses reads over [`MAX_READ`].

/// The largest single read any source serves. Callers read sockets, bucket arrays and page-table entries, far
/// below this; the kernel's BTF is read in 1 MiB pieces.
pub const MAX_READ: usize = 16 << 20;

/// Why a read of kernel memory failed. A fault names its address and its cause, and is not an I/O error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{addr:#x}: not mapped by any PT_LOAD of the memory image")]
    NotMapped { addr: u64 },
    #[error("{addr:#x}: not backed by the file (p_filesz < p_memsz)")]
    NotBacked { addr: u64 },
    #[error("{addr:#x}: read failed: {msg}")]
    Io { addr: u64, msg: String },
    #[error("{addr:#x}: read of {len} bytes is too large")]
    TooLarge { addr: u64, len: usize },
    #[error("physical address {paddr:#x}: not in the dump")]
    NotInDump { paddr: u64 },
    #[error("physical address {paddr:#x}: page data is corrupt: {msg}")]
    Corrupt { paddr: u64, msg: String },
    #[error("{addr:#x}: page not present at {level}")]
    NotPresent { addr: u64, level: &'static str },
    #[error("{addr:#x}: non-canonical address")]
    NonCanonical { addr: u64 },
}

impl ReadError {
    pub fn addr(&self) -> u64 {
        match self {
            ReadError::NotMapped { addr }
            | ReadError::NotBacked { addr }
            | ReadError::Io { addr, .. }
            | ReadError::TooLarge { addr, .. }
            | ReadError::NotPresent { addr, .. }
            | ReadError::NonCanonical { addr } => *addr,
            ReadError::NotInDump { paddr } | ReadError::Corrupt { paddr, .. } => *paddr,
        }
    }
}

/// Read-only access to kernel memory by virtual address.
pub trait Memory {
    /// Fills `buf` with the bytes at `addr`, or fails for the whole buffer.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// [`Memory::read`] for one large read (the kernel's BTF: megabytes). A source whose pages cost CPU to
    /// produce (a compressed dump's) may share the work among threads; the bytes are the same.
    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.read(addr, buf)
    }
}

/// Read-only access to physical memory: the pages of a crash dump or memory snapshot.
pub trait PhysMemory {
    /// Fills `buf` with the bytes at physical address `paddr`, or fails for the whole buffer.
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

impl<T: Memory + ?Sized> Memory for &T {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read(addr, buf)
    }
    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_large(addr, buf)
    }
}

impl<T: Memory + ?Sized> Memory for Box<T> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read(addr, buf)
    }
    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_large(addr, buf)
    }
}

impl<T: PhysMemory + ?Sized> PhysMemory for &T {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_phys(paddr, buf)
    }
}

impl<T: PhysMemory + ?Sized> PhysMemory for Box<T> {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read_phys(paddr, buf)
    }
}

/// Reads a little-endian pointer of `size` bytes (4 or 8).
pub fn read_ptr(mem: &dyn Memory, addr: u64, size: u64) -> Result<u64, ReadError> {
    let mut b = [0u8; 8];
    let n = if size == 4 { 4 } else { 8 };
    let slot = b.get_mut(..n).ok_or(ReadError::TooLarge { addr, len: n })?;
    mem.read(addr, slot)?;
    Ok(u64::from_le_bytes(b))
}

/// `Err(TooLarge)` when a read of `len` bytes at `addr` is over [`MAX_READ`].
pub fn check_read_len(addr: u64, len: usize) -> Result<(), ReadError> {
    if len > MAX_READ {
        return Err(ReadError::TooLarge { addr, len });
    }
    Ok(())
}

/// The one read-splitting loop every source uses: fills `buf` with the bytes at `start`, piece by piece.
///
/// `piece(at, rest)` fills a prefix of `rest` with the bytes at address (or offset) `at` and returns its
/// length: up to the end of the segment, record, page or mapping that holds `at`. The loop ends: every turn
/// fills at least one byte, else it stops with `fault(at)`, which is also the error for a read running past
/// 2^64.
pub fn read_in_pieces<E>(
    start: u64,
    buf: &mut [u8],
    fault: impl Fn(u64) -> E,
    mut piece: impl FnMut(u64, &mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        let at = u64::try_from(done)
            .ok()
            .and_then(|d| start.checked_add(d))
            .ok_or_else(|| fault(start))?;
        let len = rest.len();
        let n = piece(at, rest)?;
        if n == 0 || n > len {
            return Err(fault(at));
        }
        done += n;
    }
    Ok(())
}

/// [`read_in_pieces`] for the memory sources: refuses reads over [`MAX_READ`], and names the address and
/// length of a read that runs past 2^64 or a piece that filled nothing ([`ReadError::TooLarge`]).
pub fn read_split(
    addr: u64,
    buf: &mut [u8],
    piece: impl FnMut(u64, &mut [u8]) -> Result<usize, ReadError>,
) -> Result<(), ReadError> {
    check_read_len(addr, buf.len())?;
    let len = buf.len();
    read_in_pieces(addr, buf, |at| ReadError::TooLarge { addr: at, len }, piece)
}

/// Kernel memory for unit tests: one flat buffer at `base`; anything outside it is not mapped.
#[cfg(test)]
pub(crate) struct Flat {
    pub base: u64,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
impl Flat {
    /// `len` zero bytes at `base`.
    pub fn zeroed(base: u64, len: usize) -> Flat {
        Flat {
            base,
            bytes: vec![0; len],
        }
    }

    /// Writes the low `len` bytes of `v` (little-endian) at `addr`.
    pub fn put(&mut self, addr: u64, v: u64, len: usize) {
        let i = (addr - self.base) as usize;
        self.bytes[i..i + len].copy_from_slice(&v.to_le_bytes()[..len]);
    }
}

#[cfg(test)]
impl Memory for Flat {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let start = usize::try_from(
            addr.checked_sub(self.base)
                .ok_or(ReadError::NotMapped { addr })?,
        )
        .map_err(|_| ReadError::NotMapped { addr })?;
        let src = self
            .bytes
            .get(start..start.saturating_add(buf.len()))
            .ok_or(ReadError::NotMapped { addr })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_buffer_in_order_and_stop_on_no_progress() {
        let mut buf = [0u8; 10];
        let mut seen = Vec::new();
        read_in_pieces(
            100,
            &mut buf,
            |a| a,
            |at, rest| {
                seen.push(at);
                let n = rest.len().min(3);
                rest[..n].fill(at as u8);
                Ok(n)
            },
        )
        .unwrap();
        assert_eq!(seen, [100, 103, 106, 109]);
        assert_eq!(buf, [100, 100, 100, 103, 103, 103, 106, 106, 106, 109]);
        // A piece that fills nothing, or claims more than it was given, faults at its address.
        assert_eq!(read_in_pieces(5, &mut buf, |a| a, |_, _| Ok(0)), Err(5));
        assert_eq!(
            read_in_pieces(5, &mut buf, |a| a, |_, r| Ok(r.len() + 1)),
            Err(5)
        );
        // Past 2^64: the fault names the start.
        let r = read_in_pieces(u64::MAX, &mut buf, |a| a, |_, _| Ok(1));
        assert_eq!(r, Err(u64::MAX));
        // An empty buffer reads nothing.
        read_in_pieces(0, &mut [], |a| a, |_, _| -> Result<usize, u64> { panic!() }).unwrap();
    }
}
