//! Kernel virtual → physical address translation for sources that hold physical memory (crash dumps,
//! snapshots). One file per architecture behind [`Translate`]; [`cache`] is the translation cache they share;
//! [`Translated`] turns physical memory into kernel virtual memory ([`Memory`]) through one of them.
//!
//! The architecture comes from the file (ELF `e_machine`, kdump's utsname machine) or from VMCOREINFO's own
//! keys, never from the host: a dump of another machine is read the same way on any host.

pub mod aarch64;
pub mod cache;
pub mod x86_64;

use std::fmt;

use crate::memory::{Memory, PhysMemory, ReadError, read_split};
use crate::vmcoreinfo::VmcoreInfo;

/// An architecture as a file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Machine {
    X86_64,
    Aarch64,
    /// Anything else, as named (an ELF `e_machine` number, or a utsname machine string).
    Other(String),
}

impl Machine {
    /// From an ELF `e_machine`: 62 is EM_X86_64, 183 EM_AARCH64.
    pub fn from_elf(e_machine: u16) -> Machine {
        match e_machine {
            62 => Machine::X86_64,
            183 => Machine::Aarch64,
            n => Machine::Other(format!("ELF machine {n}")),
        }
    }

    /// From a utsname machine string (kdump's header); `None` when it names no machine: empty, or
    /// "Unknown", which QEMU 7.2 writes for arm64 guests (the architecture then comes from VMCOREINFO).
    pub fn from_uname(machine: &str) -> Option<Machine> {
        match machine {
            "" => None,
            m if m.eq_ignore_ascii_case("unknown") => None,
            "x86_64" => Some(Machine::X86_64),
            "aarch64" | "arm64" => Some(Machine::Aarch64),
            other => Some(Machine::Other(other.to_string())),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Machine::X86_64 => f.write_str("x86_64"),
            Machine::Aarch64 => f.write_str("aarch64"),
            Machine::Other(s) => f.write_str(s),
        }
    }
}

/// How an address was translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// A rule that needs no page table (x86_64's kernel image mapping).
    Image,
    /// A page (or block) of `1 << shift` bytes found by the page-table walk.
    Page { shift: u32 },
}

/// The physical address of one virtual address, and how far the translation holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub paddr: u64,
    /// Bytes from the address to the end of its page (for [`PageKind::Image`]: to the end of the image
    /// range), all physically contiguous. At least 1.
    pub len: u64,
    pub kind: PageKind,
}

impl Mapping {
    /// The mapping of `vaddr` inside a page of `1 << shift` bytes starting at physical `base`.
    pub fn in_page(base: u64, vaddr: u64, shift: u32) -> Mapping {
        let offset_mask = (1u64 << shift.min(63)) - 1;
        let offset = vaddr & offset_mask;
        Mapping {
            paddr: (base & !offset_mask) | offset,
            // offset ≤ offset_mask, so this is at least 1.
            len: (offset_mask - offset) + 1,
            kind: PageKind::Page { shift },
        }
    }
}

/// A configuration that cannot describe a running kernel of the architecture.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} paging levels: no kernel of this architecture runs with that many")]
    Levels(u8),
    #[error("top-level page table at physical {0:#x} is not a page-aligned address below 2^52")]
    TopTable(u64),
    #[error("sme_mask {0:#x} overlaps the page-table entry flags (bits 11..0)")]
    SmeMask(u64),
    #[error(
        "kernel image range {start:#x}..{end:#x} is not within the kernel text mapping \
         (0xffffffff80000000 and up)"
    )]
    Image { start: u64, end: u64 },
    #[error(
        "VMCOREINFO lacks {0}, which x86_64 address translation needs (the dump's note is damaged?)"
    )]
    Missing(&'static str),
    #[error(
        "VMCOREINFO lacks {1}, which {0} address translation needs (the dump's note is damaged?)"
    )]
    MissingFor(&'static str, &'static str),
    #[error("VMCOREINFO has {key}={value}, which is not a valid value")]
    BadValue { key: &'static str, value: String },
    #[error(
        "SYMBOL({symbol})={va:#x} is outside the kernel image mapping: cannot locate the top-level page \
         table (phys_base {phys_base:#x})"
    )]
    TopTableOutsideImage {
        symbol: &'static str,
        va: u64,
        phys_base: u64,
    },
    #[error(
        "the file holds a {0} kernel, which synq cannot read: it reads dumps and snapshots of x86_64 and of \
         little-endian aarch64 (arm64) kernels"
    )]
    Unsupported(Machine),
}

/// One architecture's MMU, for one dumped kernel.
pub trait Translate {
    /// The physical address of `vaddr`, its page kind and how many bytes from it are physically contiguous.
    /// A fault names the address and why (the level whose entry was not present, a non-canonical address,
    /// or the failed read of a table entry).
    fn lookup(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError>;
    fn machine(&self) -> Machine;
    /// Facts for `synq info` (paging levels, phys_base…), in order.
    fn facts(&self) -> Vec<(&'static str, serde_json::Value)>;
    /// Checks that the page tables alone map `vaddr`, an address in the kernel image, where the kernel image
    /// rule puts it: that the page tables and the image offsets found belong to the same kernel. Used to
    /// validate a VMCOREINFO found by scanning.
    fn verify(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<(), String>;
}

impl<T: Translate + ?Sized> Translate for Box<T> {
    fn lookup(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError> {
        (**self).lookup(phys, vaddr)
    }
    fn machine(&self) -> Machine {
        (**self).machine()
    }
    fn facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        (**self).facts()
    }
    fn verify(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<(), String> {
        (**self).verify(phys, vaddr)
    }
}

/// The translation of the kernel that `info` describes, for the machine the file names (`None`: take it
/// from VMCOREINFO's own keys).
pub fn from_vmcoreinfo(
    info: &VmcoreInfo,
    machine: Option<&Machine>,
) -> Result<Box<dyn Translate>, ConfigError> {
    let machine = machine.cloned().unwrap_or_else(|| machine_of(info));
    match machine {
        Machine::X86_64 => Ok(Box::new(x86_64::X86_64::from_vmcoreinfo(info)?)),
        Machine::Aarch64 => Ok(Box::new(aarch64::Aarch64::from_vmcoreinfo(info)?)),
        other => Err(ConfigError::Unsupported(other)),
    }
}

/// The machine VMCOREINFO's own keys name: arm64 exports its own numbers (4.x, "arm64: vmcoreinfo: export
/// …"); x86_64 has neither.
pub fn machine_of(info: &VmcoreInfo) -> Machine {
    if info.get("NUMBER(VA_BITS)").is_some() || info.get("NUMBER(kimage_voffset)").is_some() {
        Machine::Aarch64
    } else {
        Machine::X86_64
    }
}

/// What `synq info` says about the paging of the kernel `info` describes (live too, where nothing is
/// translated): x86_64 its paging levels; arm64 its levels, page size, address bits and offsets.
pub fn paging_facts(
    info: &VmcoreInfo,
) -> Result<Vec<(&'static str, serde_json::Value)>, ConfigError> {
    match machine_of(info) {
        Machine::X86_64 => Ok(vec![("paging_levels", x86_64::paging_levels(info)?.into())]),
        _ => Ok(aarch64::Aarch64::from_vmcoreinfo(info)?.facts()),
    }
}

/// Kernel virtual memory of a physical-memory source, through an architecture's translation.
pub struct Translated<P, A> {
    phys: P,
    arch: A,
}

impl<P: PhysMemory, A: Translate> Translated<P, A> {
    pub fn new(phys: P, arch: A) -> Translated<P, A> {
        Translated { phys, arch }
    }

    pub fn arch(&self) -> &A {
        &self.arch
    }

    pub fn phys(&self) -> &P {
        &self.phys
    }

    /// The physical address of `vaddr`.
    pub fn translate(&self, vaddr: u64) -> Result<u64, ReadError> {
        self.arch.lookup(&self.phys, vaddr).map(|m| m.paddr)
    }
}

/// A physical address and a length.
type Piece = (u64, usize);

/// Threads a large read is shared among, at most.
const MAX_READ_THREADS: usize = 4;
/// Below this many bytes a read is not shared.
const MIN_SHARED_READ: usize = 256 << 10;

impl<P: PhysMemory + Sync, A: Translate> Translated<P, A> {
    /// [`Memory::read`], with the physical reads shared among up to [`MAX_READ_THREADS`] threads (as many
    /// as the machine has cores): the translation first, in order, then each thread fills its own part of
    /// `buf`. For a compressed dump, where each page must be inflated, this divides the time of reading the
    /// kernel's BTF. The first failure in address order is the error, as for `read`.
    pub fn read_threaded(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_READ_THREADS);
        if threads < 2 || buf.len() < MIN_SHARED_READ {
            return self.read(addr, buf);
        }
        // (physical address, length) of each piece, in order.
        let total = buf.len();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut at = 0usize;
        while at < total {
            let cur = addr
                .checked_add(at as u64)
                .ok_or(ReadError::TooLarge { addr, len: total })?;
            let m = self.arch.lookup(&self.phys, cur)?;
            let n = usize::try_from(m.len).map_or(total - at, |len| len.min(total - at));
            if n == 0 {
                return Err(ReadError::TooLarge { addr, len: total });
            }
            // A large physically contiguous piece (the kernel image is one) is cut, so threads can share it.
            let mut done = 0usize;
            while done < n {
                let part = (n - done).min(MIN_SHARED_READ);
                pieces.push((m.paddr.saturating_add(done as u64), part));
                done += part;
            }
            at += n;
        }
        // Contiguous runs of pieces of about equal bytes, one per thread.
        let share = total.div_ceil(threads);
        let mut groups: Vec<(Vec<Piece>, &mut [u8])> = Vec::new();
        let mut rest: &mut [u8] = buf;
        let mut group = Vec::new();
        let mut bytes = 0usize;
        for (i, &(paddr, n)) in pieces.iter().enumerate() {
            group.push((paddr, n));
            bytes += n;
            if bytes >= share || i + 1 == pieces.len() {
                let cut = bytes.min(rest.len());
                let (mine, later) = std::mem::take(&mut rest).split_at_mut(cut);
                groups.push((std::mem::take(&mut group), mine));
                rest = later;
                bytes = 0;
            }
        }
        let phys = &self.phys;
        let results: Vec<Result<(), ReadError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|(pieces, out)| {
                    scope.spawn(move || {
                        let mut off = 0usize;
                        for (paddr, n) in pieces {
                            let part = out
                                .get_mut(off..off + n)
                                .ok_or(ReadError::TooLarge { addr, len: total })?;
                            phys.read_phys(paddr, part)?;
                            off += n;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or(Err(ReadError::Corrupt {
                        paddr: 0,
                        msg: "a reading thread failed".into(),
                    }))
                })
                .collect()
        });
        results.into_iter().collect()
    }
}

impl<P: PhysMemory, A: Translate> Memory for Translated<P, A> {
    /// Translates page by page (a large page, or the image, is one piece), so a read that crosses into an
    /// unmapped page fails with that page's first address. A read running past the top of the address space
    /// is [`ReadError::TooLarge`].
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let total = buf.len();
        read_split(addr, buf, |cur, rest| {
            let m = self.arch.lookup(&self.phys, cur)?;
            let n = usize::try_from(m.len).map_or(rest.len(), |len| len.min(rest.len()));
            let piece = rest
                .get_mut(..n)
                .ok_or(ReadError::TooLarge { addr, len: total })?;
            self.phys.read_phys(m.paddr, piece)?;
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine a file names decides, whatever VMCOREINFO's keys say; anything but x86_64 and
    /// little-endian aarch64 is refused by name.
    #[test]
    fn other_machines_and_big_endian_arm64_are_refused_by_name() {
        let arm64_note = VmcoreInfo::parse(
            "OSRELEASE=6.1.0\nPAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0xffff800000000000\n\
             SYMBOL(swapper_pg_dir)=ffff800001000000\n",
        );
        for m in [
            Machine::from_uname("aarch64_be").unwrap(),
            Machine::from_uname("ppc64le").unwrap(),
            Machine::from_elf(243),
        ] {
            let e = match from_vmcoreinfo(&arm64_note, Some(&m)) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{m} accepted"),
            };
            assert!(
                e.contains(&m.to_string()) && e.contains("little-endian aarch64"),
                "{e}"
            );
        }
        assert_eq!(Machine::from_uname("arm64"), Some(Machine::Aarch64));
        assert_eq!(Machine::from_uname("Unknown"), None);
        assert_eq!(Machine::from_uname(""), None);
        assert_eq!(Machine::from_elf(183), Machine::Aarch64);
        assert_eq!(machine_of(&arm64_note), Machine::Aarch64);
        assert_eq!(
            from_vmcoreinfo(&arm64_note, None).map(|a| a.machine()).ok(),
            Some(Machine::Aarch64)
        );
    }
}
