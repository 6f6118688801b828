//! ELF vmcores: kdump's `/proc/vmcore` copied out, `makedumpfile -E`, QEMU `dump-guest-memory`, `virsh dump`.
//!
//! Memory is served by physical address: a PT_LOAD's `p_paddr` is where its bytes were (QEMU sets `p_vaddr`
//! to 0; kdump's /proc/vmcore fills it with the direct-map address, kept in [`ElfSegment`] for a later layer).
//! Bytes between `p_filesz` and `p_memsz` were excluded by makedumpfile and read as zeros. With more than
//! 65534 program headers (`makedumpfile -E` on a fragmented machine) `e_phnum` is `PN_XNUM` and the count is
//! in section header 0's `sh_info`.

use object::Endianness;
use object::elf::{
    ELFCLASS64, ET_CORE, FileHeader64, PN_XNUM, PT_LOAD, PT_NOTE, ProgramHeader64, SectionHeader64,
};
use object::read::elf::{FileHeader, NoteIterator, ProgramHeader, SectionHeader};

use super::HeaderError;
use super::bytes::ByteSource;
use crate::memory::ReadError;

/// Program headers beyond this count are refused (a 1 TiB machine dumped with every excluded page split
/// out stays far below); the table must also fit in the file.
const MAX_PHDRS: u64 = 1 << 24;
/// Note segments beyond this size are not searched for VMCOREINFO (per-CPU notes are ~0.4 KiB each).
const MAX_NOTE_BYTES: u64 = 32 << 20;
const EHDR_SIZE: usize = std::mem::size_of::<FileHeader64<Endianness>>();
const PHDR_SIZE: usize = std::mem::size_of::<ProgramHeader64<Endianness>>();
const SHDR_SIZE: usize = std::mem::size_of::<SectionHeader64<Endianness>>();

/// One PT_LOAD of an ELF vmcore, as found in its program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfSegment {
    /// Physical address of the first byte.
    pub paddr: u64,
    /// Virtual address as the producer wrote it: the direct map in kdump's /proc/vmcore, 0 in QEMU's dumps.
    pub vaddr: u64,
    /// File offset of the first byte (in the rebuilt file, for a flattened dump).
    pub offset: u64,
    /// Bytes present in the file; `filesz..memsz` reads as zeros.
    pub filesz: u64,
    pub memsz: u64,
}

impl ElfSegment {
    fn paddr_end(&self) -> u64 {
        self.paddr.saturating_add(self.memsz)
    }
}

/// The parsed headers of an ELF vmcore.
#[derive(Debug)]
pub struct ElfDump {
    /// Every PT_LOAD, in program-header order.
    segments: Vec<ElfSegment>,
    /// Indices into `segments` of the usable ones, sorted by paddr.
    by_paddr: Vec<usize>,
    /// `max_end[i]`: the largest `paddr_end` among `by_paddr[..=i]`, so a lookup stops walking back early.
    max_end: Vec<u64>,
    pub machine: u16,
    pub vmcoreinfo: Option<String>,
    pub warnings: Vec<String>,
}

fn header_err(what: &'static str, offset: u64, msg: impl Into<String>) -> HeaderError {
    HeaderError {
        what,
        offset,
        msg: msg.into(),
    }
}

impl ElfDump {
    /// Parses the ELF header, the program headers and the notes of `src`.
    pub fn parse(src: &dyn ByteSource) -> Result<ElfDump, HeaderError> {
        let ehdr_bytes = src
            .bytes(0, EHDR_SIZE)
            .map_err(|e| header_err("ELF header", 0, e.to_string()))?;
        let ident = ehdr_bytes.get(..16).unwrap_or_default();
        if ident.get(4) != Some(&ELFCLASS64.0) {
            return Err(header_err(
                "ELF header",
                4,
                "not a 64-bit ELF file (32-bit vmcores are not supported)",
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
                "big-endian ELF (only little-endian vmcores are supported)",
            ));
        }
        let e_type = ehdr.e_type(endian);
        if e_type != ET_CORE {
            return Err(header_err(
                "ELF header",
                16,
                format!(
                    "e_type {} is not ET_CORE: this ELF file is not a vmcore",
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

        let mut segments = Vec::new();
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
                             the file ({file_len:#x} bytes): truncated dump, the missing part is unreadable",
                            seg.paddr, seg.offset, seg.filesz
                        )),
                    }
                    if seg.paddr.checked_add(seg.memsz).is_none() {
                        warnings.push(format!(
                            "PT_LOAD #{i}: paddr {:#x} + p_memsz {:#x} overflows: ignored",
                            seg.paddr, seg.memsz
                        ));
                    }
                    segments.push(seg);
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
                        Ok(data) => vmcoreinfo = find_vmcoreinfo_note(&data),
                        Err(e) => warnings.push(format!("PT_NOTE #{i}: {e}")),
                    }
                }
                _ => {}
            }
        }
        let mut by_paddr: Vec<usize> = segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.memsz > 0 && s.paddr.checked_add(s.memsz).is_some())
            .map(|(i, _)| i)
            .collect();
        if by_paddr.is_empty() {
            return Err(header_err(
                "ELF program headers",
                phoff,
                "no usable PT_LOAD segment",
            ));
        }
        by_paddr.sort_by_key(|&i| segments.get(i).map_or(0, |s| s.paddr));
        let mut max_end = Vec::with_capacity(by_paddr.len());
        let mut running = 0u64;
        for &i in &by_paddr {
            running = running.max(segments.get(i).map_or(0, ElfSegment::paddr_end));
            max_end.push(running);
        }
        let overlap = by_paddr.windows(2).any(|w| match w {
            [a, b] => match (segments.get(*a), segments.get(*b)) {
                (Some(a), Some(b)) => a.paddr_end() > b.paddr,
                _ => false,
            },
            _ => false,
        });
        if overlap {
            warnings.push(
                "PT_LOAD segments overlap in physical address: the one starting last wins".into(),
            );
        }
        Ok(ElfDump {
            segments,
            by_paddr,
            max_end,
            machine,
            vmcoreinfo,
            warnings,
        })
    }

    /// Every PT_LOAD, in program-header order.
    pub fn segments(&self) -> &[ElfSegment] {
        &self.segments
    }

    /// The physical ranges covered by PT_LOADs (`paddr..paddr + memsz`), sorted and merged.
    pub fn phys_ranges(&self) -> Vec<std::ops::Range<u64>> {
        let mut out: Vec<std::ops::Range<u64>> = Vec::new();
        for s in self.by_paddr.iter().filter_map(|&i| self.segments.get(i)) {
            match out.last_mut() {
                Some(last) if s.paddr <= last.end => last.end = last.end.max(s.paddr_end()),
                _ => out.push(s.paddr..s.paddr_end()),
            }
        }
        out
    }

    /// The segment covering `paddr`: the one starting last at or below it.
    fn segment(&self, paddr: u64) -> Option<&ElfSegment> {
        let n = self
            .by_paddr
            .partition_point(|&i| self.segments.get(i).is_some_and(|s| s.paddr <= paddr));
        // Walk back while an earlier segment could still reach `paddr`; bounded by the segment count.
        for k in (0..n).rev() {
            if self.max_end.get(k).is_none_or(|&e| e <= paddr) {
                return None;
            }
            let seg = self.by_paddr.get(k).and_then(|&i| self.segments.get(i))?;
            if paddr < seg.paddr_end() {
                return Some(seg);
            }
        }
        None
    }

    /// Fills `buf` from physical address `paddr`, across segments; excluded bytes read as zeros.
    pub fn read_phys(
        &self,
        src: &dyn ByteSource,
        paddr: u64,
        buf: &mut [u8],
    ) -> Result<(), ReadError> {
        let total = buf.len();
        let mut done = 0usize;
        // Each turn fills at least one byte or returns.
        while done < total {
            let cur = paddr
                .checked_add(done as u64)
                .ok_or(ReadError::NotInDump { paddr })?;
            let seg = self
                .segment(cur)
                .ok_or(ReadError::NotInDump { paddr: cur })?;
            let within = cur - seg.paddr;
            let rest = buf.get_mut(done..).ok_or(ReadError::TooLarge {
                addr: paddr,
                len: total,
            })?;
            let in_seg = usize::try_from(seg.memsz - within).unwrap_or(usize::MAX);
            let n = rest.len().min(in_seg);
            let chunk = rest.get_mut(..n).ok_or(ReadError::TooLarge {
                addr: paddr,
                len: total,
            })?;
            if within >= seg.filesz {
                chunk.fill(0);
            } else {
                let in_file = usize::try_from(seg.filesz - within).unwrap_or(usize::MAX);
                let (present, zeros) = chunk.split_at_mut(n.min(in_file));
                let off = seg
                    .offset
                    .checked_add(within)
                    .ok_or_else(|| ReadError::Corrupt {
                        paddr: cur,
                        msg: "segment file offset overflows".into(),
                    })?;
                src.read_into(off, present)
                    .map_err(|e| ReadError::Corrupt {
                        paddr: cur,
                        msg: format!("PT_LOAD data at file offset {off:#x}: {e}"),
                    })?;
                zeros.fill(0);
            }
            done = done.saturating_add(n);
        }
        Ok(())
    }
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

/// The text of the first note named "VMCOREINFO" in an ELF note area (also used for kdump's ELF notes).
pub fn find_vmcoreinfo_note(data: &[u8]) -> Option<String> {
    let mut notes =
        NoteIterator::<FileHeader64<Endianness>>::new(Endianness::Little, 4, data).ok()?;
    // The iterator consumes at least a note header per turn and stops for good after an error.
    while let Ok(Some(note)) = notes.next() {
        if note.name() == b"VMCOREINFO" {
            return Some(vmcoreinfo_text(note.desc()));
        }
    }
    None
}

/// VMCOREINFO bytes as text, without trailing NULs.
pub fn vmcoreinfo_text(raw: &[u8]) -> String {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}
