//! Memory sources, symbols and address translation.
//!
//! Every source implements [`Memory`]: read bytes at a kernel virtual address. The walker never knows which
//! source it reads. Live, the source is a kcore-shaped ELF core (`/proc/kcore`, or a file of the same shape
//! given with `--kcore`), whose program headers are virtual. Dumps hold physical memory ([`PhysMemory`]);
//! a translation layer turns them into a [`Memory`].

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
}

/// Read-only access to physical memory: the pages of a crash dump or memory snapshot.
pub trait PhysMemory {
    /// Fills `buf` with the bytes at physical address `paddr`, or fails for the whole buffer.
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

/// Reads a little-endian pointer of `size` bytes (4 or 8).
pub fn read_ptr(mem: &dyn Memory, addr: u64, size: u64) -> Result<u64, ReadError> {
    let mut b = [0u8; 8];
    let n = if size == 4 { 4 } else { 8 };
    let slot = b.get_mut(..n).ok_or(ReadError::TooLarge { addr, len: n })?;
    mem.read(addr, slot)?;
    Ok(u64::from_le_bytes(b))
}
