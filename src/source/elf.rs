//! The one ELF core-file header parser, for `/proc/kcore` (virtual addresses) and ELF vmcores (physical
//! addresses): the ELF header, the program headers and the VMCOREINFO note. What the addresses mean is the
//! caller's business ([`super::kcore`], [`super::vmcore`]).
//!
//! With more than 65534 program headers (`makedumpfile -E` on a fragmented machine) `e_phnum` is `PN_XNUM`
//! and the count is in section header 0's `sh_info`. Everything is untrusted: every offset and size is
//! checked against the file; the header table is read through [`ByteSource::bytes`], which refuses reads
//! over its cap, so no allocation is sized by a header field alone.

use object::Endianness;
use object::elf::{
    ELFCLASS64, ET_CORE, FileHeader64, PN_XNUM, PT_LOAD, PT_NOTE, ProgramHeader64, SectionHeader64,
};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};

use super::HeaderError;
use super::bytes::ByteSource;

/// Program headers beyond this count are refused (a 1 TiB machine dumped with every excluded page split
/// out stays far below); the table must also fit in the file.
const MAX_PHDRS: u64 = 1 << 24;
/// Note segments beyond this size are not searched for VMCOREINFO (per-CPU notes are ~0.4 KiB each).
const MAX_NOTE_BYTES: u64 = 32 << 20;
const EHDR_SIZE: usize = std::mem::size_of::<FileHeader64<Endianness>>();
const PHDR_SIZE: usize = std::mem::size_of::<ProgramHeader64<Endianness>>();
const SHDR_SIZE: usize = std::mem::size_of::<SectionHeader64<Endianness>>();

/// One PT_LOAD, as found in its program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfSegment {
    /// Physical address of the first byte (kcore: real for RAM and the kernel image, −1 elsewhere).
    pub paddr: u64,
    /// Virtual address: kcore's kernel addresses; the direct map in kdump's /proc/vmcore; QEMU writes 0 or
    /// the physical address.
    pub vaddr: u64,
    /// File offset of the first byte (in the rebuilt file, for a flattened dump).
    pub offset: u64,
    /// Bytes present in the file (at most `memsz`).
    pub filesz: u64,
    pub memsz: u64,
}

/// The parsed headers of an ELF core file.
#[derive(Debug)]
pub struct ElfHeaders {
    /// `e_machine` (62 for x86_64, 183 for aarch64).
    pub machine: u16,
    /// Every PT_LOAD, in program-header order.
    pub loads: Vec<ElfSegment>,
    /// The first VMCOREINFO note of the PT_NOTE segments.
    pub vmcoreinfo: Option<String>,
    /// Damage found: truncated segments, oversized notes. The file is still usable.
    pub warnings: Vec<String>,
}

fn header_err(what: &'static str, offset: u64, msg: impl Into<String>) -> HeaderError {
    HeaderError {
        what,
        offset,
        msg: msg.into(),
    }
}

/// Parses the ELF header, the program headers and the notes of `src`, a 64-bit little-endian ET_CORE file.
pub fn parse(src: &dyn ByteSource) -> Result<ElfHeaders, HeaderError> {
    let ehdr_bytes = src
        .bytes(0, EHDR_SIZE)
        .map_err(|e| header_err("ELF header", 0, e.to_string()))?;
    let ident = ehdr_bytes.get(..16).unwrap_or_default();
    if ident.get(4) != Some(&ELFCLASS64.0) {
        return Err(header_err(
            "ELF header",
            4,
            "not a 64-bit ELF file (32-bit cores are not supported)",
        ));
    }
    let ehdr = FileHeader64::<Endianness>::parse(ehdr_bytes.as_ref())
        .map_err(|e| header_err("ELF header", 0, e.to_string()))?;
    let endian = ehdr
        .endian()
        .map_err(|e| header_err("ELF header", 5, e.to_string()))?;
    if endian != Endianness::Little {
        return Err(header_err(
            "ELF header",
            5,
            "big-endian ELF (only little-endian cores are supported)",
        ));
    }
    let e_type = ehdr.e_type(endian);
    if e_type != ET_CORE {
        return Err(header_err(
            "ELF header",
            16,
            format!(
                "e_type {} is not ET_CORE: this ELF file is not a core file",
                e_type.0
            ),
        ));
    }
    let machine = ehdr.e_machine(endian).0;
    let phoff = ehdr.e_phoff(endian);
    let phentsize = ehdr.e_phentsize(endian);
    if usize::from(phentsize) != PHDR_SIZE {
        return Err(header_err(
            "ELF header",
            54,
            format!("e_phentsize {phentsize}, expected {PHDR_SIZE}"),
        ));
    }
    let mut phnum = u64::from(ehdr.e_phnum(endian));
    if phnum == u64::from(PN_XNUM) {
        phnum = xnum_phnum(src, endian, ehdr)?;
    }
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(header_err(
            "ELF program headers",
            phoff,
            format!("{phnum} program headers"),
        ));
    }
    let table_len = usize::try_from(phnum.saturating_mul(PHDR_SIZE as u64))
        .map_err(|_| header_err("ELF program headers", phoff, "table too large"))?;
    let table = src
        .bytes(phoff, table_len)
        .map_err(|e| header_err("ELF program headers", phoff, e.to_string()))?;
    let (phdrs, _) =
        object::pod::slice_from_bytes::<ProgramHeader64<Endianness>>(&table, phnum as usize)
            .map_err(|_| header_err("ELF program headers", phoff, "table cut short"))?;

    let mut loads = Vec::new();
    let mut warnings = Vec::new();
    let mut vmcoreinfo = None;
    let file_len = src.len();
    for (i, ph) in phdrs.iter().enumerate() {
        match ph.p_type(endian) {
            PT_LOAD => {
                let mut seg = ElfSegment {
                    paddr: ph.p_paddr(endian),
                    vaddr: ph.p_vaddr(endian),
                    offset: ph.p_offset(endian),
                    filesz: ph.p_filesz(endian),
                    memsz: ph.p_memsz(endian),
                };
                if seg.filesz > seg.memsz {
                    warnings.push(format!(
                        "PT_LOAD #{i}: p_filesz {:#x} > p_memsz {:#x}: only p_memsz bytes are memory",
                        seg.filesz, seg.memsz
                    ));
                    seg.filesz = seg.memsz;
                }
                match seg.offset.checked_add(seg.filesz) {
                    Some(end) if end <= file_len => {}
                    _ => warnings.push(format!(
                        "PT_LOAD #{i} (paddr {:#x}): its data at file offset {:#x}+{:#x} runs past the end of \
                         the file ({file_len:#x} bytes): truncated file, the missing part is unreadable",
                        seg.paddr, seg.offset, seg.filesz
                    )),
                }
                loads.push(seg);
            }
            PT_NOTE if vmcoreinfo.is_none() => {
                let (off, size) = (ph.p_offset(endian), ph.p_filesz(endian));
                if size == 0 {
                    continue;
                }
                if size > MAX_NOTE_BYTES {
                    warnings.push(format!(
                        "PT_NOTE #{i}: {size:#x} bytes, over {MAX_NOTE_BYTES:#x}: not searched for VMCOREINFO"
                    ));
                    continue;
                }
                match src.bytes(off, size as usize) {
                    Ok(data) => vmcoreinfo = crate::vmcoreinfo::find_in_notes(&data),
                    Err(e) => warnings.push(format!("PT_NOTE #{i}: {e}")),
                }
            }
            _ => {}
        }
    }
    Ok(ElfHeaders {
        machine,
        loads,
        vmcoreinfo,
        warnings,
    })
}

/// With `e_phnum == PN_XNUM`, the real count is in section header 0's `sh_info`.
fn xnum_phnum(
    src: &dyn ByteSource,
    endian: Endianness,
    ehdr: &FileHeader64<Endianness>,
) -> Result<u64, HeaderError> {
    let shoff = ehdr.e_shoff(endian);
    if shoff == 0 || usize::from(ehdr.e_shentsize(endian)) != SHDR_SIZE {
        return Err(header_err(
            "ELF header",
            0,
            "e_phnum is PN_XNUM but there is no section header 0 to hold the count",
        ));
    }
    let bytes = src
        .bytes(shoff, SHDR_SIZE)
        .map_err(|e| header_err("ELF section header 0", shoff, e.to_string()))?;
    let (sh, _) = object::pod::from_bytes::<SectionHeader64<Endianness>>(&bytes)
        .map_err(|_| header_err("ELF section header 0", shoff, "cut short"))?;
    Ok(u64::from(sh.sh_info(endian)))
}
