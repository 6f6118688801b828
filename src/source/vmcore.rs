//! ELF vmcores: kdump's `/proc/vmcore` copied out, `makedumpfile -E`, QEMU `dump-guest-memory`, `virsh dump`.
//!
//! Memory is served by physical address: a PT_LOAD's `p_paddr` is where its bytes were (QEMU sets `p_vaddr`
//! to 0 or to `p_paddr`; kdump's /proc/vmcore fills it with the direct-map address, kept in [`ElfSegment`]).
//! Bytes between `p_filesz` and `p_memsz` were excluded by makedumpfile and read as zeros. The headers are
//! parsed by [`super::elf`], shared with the live kcore.

use std::any::Any;
use std::ops::Range;

use super::bytes::ByteSource;
use super::elf::{self, ElfSegment};
use super::{DumpFormat, FormatKind, HeaderError, PhysSource};
use crate::arch::Machine;
use crate::memory::{PhysMemory, ReadError, read_split};
use crate::vmcoreinfo::VmcoreInfo;

/// Page size assumed for an ELF vmcore whose VMCOREINFO does not say (x86_64).
const DEFAULT_PAGE_SIZE: u64 = 4096;

fn segment_end(s: &ElfSegment) -> u64 {
    s.paddr.saturating_add(s.memsz)
}

/// An ELF vmcore: its headers over the file's bytes.
pub struct VmcoreDump {
    src: Box<dyn ByteSource + Send + Sync>,
    /// Every PT_LOAD, in program-header order.
    segments: Vec<ElfSegment>,
    /// Indices into `segments` of the usable ones, sorted by paddr.
    by_paddr: Vec<usize>,
    /// `max_end[i]`: the largest segment end among `by_paddr[..=i]`, so a lookup stops walking back early.
    max_end: Vec<u64>,
    machine: u16,
    vmcoreinfo: Option<String>,
    page_size: u64,
    warnings: Vec<String>,
}

fn header_err(what: &'static str, offset: u64, msg: impl Into<String>) -> HeaderError {
    HeaderError {
        what,
        offset,
        msg: msg.into(),
    }
}

impl VmcoreDump {
    /// Parses the headers of the ELF vmcore `src`.
    pub fn parse(src: Box<dyn ByteSource + Send + Sync>) -> Result<VmcoreDump, HeaderError> {
        let parsed = elf::parse(src.as_ref())?;
        let segments = parsed.loads;
        let mut warnings = parsed.warnings;
        for (i, s) in segments.iter().enumerate() {
            if s.paddr.checked_add(s.memsz).is_none() {
                warnings.push(format!(
                    "PT_LOAD #{i}: paddr {:#x} + p_memsz {:#x} overflows: ignored",
                    s.paddr, s.memsz
                ));
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
                0,
                "no usable PT_LOAD segment",
            ));
        }
        by_paddr.sort_by_key(|&i| segments.get(i).map_or(0, |s| s.paddr));
        let mut max_end = Vec::with_capacity(by_paddr.len());
        let mut running = 0u64;
        for &i in &by_paddr {
            running = running.max(segments.get(i).map_or(0, segment_end));
            max_end.push(running);
        }
        let overlap = by_paddr.windows(2).any(|w| match w {
            [a, b] => match (segments.get(*a), segments.get(*b)) {
                (Some(a), Some(b)) => segment_end(a) > b.paddr,
                _ => false,
            },
            _ => false,
        });
        if overlap {
            warnings.push(
                "PT_LOAD segments overlap in physical address: the one starting last wins".into(),
            );
        }
        let page_size = parsed
            .vmcoreinfo
            .as_deref()
            .map(VmcoreInfo::parse)
            .and_then(|v| v.page_size())
            .filter(|s| s.is_power_of_two() && (512..=(1 << 20)).contains(s))
            .unwrap_or(DEFAULT_PAGE_SIZE);
        Ok(VmcoreDump {
            src,
            segments,
            by_paddr,
            max_end,
            machine: parsed.machine,
            vmcoreinfo: parsed.vmcoreinfo,
            page_size,
            warnings,
        })
    }

    /// Every PT_LOAD, in program-header order.
    pub fn segments(&self) -> &[ElfSegment] {
        &self.segments
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
            if paddr < segment_end(seg) {
                return Some(seg);
            }
        }
        None
    }
}

impl PhysMemory for VmcoreDump {
    /// Fills `buf` from physical address `paddr`, across segments; excluded bytes read as zeros.
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let total = buf.len();
        read_split(paddr, buf, |cur, rest| {
            let seg = self
                .segment(cur)
                .ok_or(ReadError::NotInDump { paddr: cur })?;
            let within = cur - seg.paddr;
            let n = usize::try_from(seg.memsz - within).map_or(rest.len(), |m| m.min(rest.len()));
            let chunk = rest.get_mut(..n).ok_or(ReadError::TooLarge {
                addr: cur,
                len: total,
            })?;
            if within >= seg.filesz {
                chunk.fill(0);
                return Ok(n);
            }
            let in_file = usize::try_from(seg.filesz - within).unwrap_or(usize::MAX);
            let (present, zeros) = chunk.split_at_mut(n.min(in_file));
            let off = seg
                .offset
                .checked_add(within)
                .ok_or_else(|| ReadError::Corrupt {
                    paddr: cur,
                    msg: "segment file offset overflows".into(),
                })?;
            self.src
                .read_into(off, present)
                .map_err(|e| ReadError::Corrupt {
                    paddr: cur,
                    msg: format!("PT_LOAD data at file offset {off:#x}: {e}"),
                })?;
            zeros.fill(0);
            Ok(n)
        })
    }
}

impl PhysSource for VmcoreDump {
    fn format(&self) -> DumpFormat {
        DumpFormat::plain(FormatKind::Elf)
    }

    fn vmcoreinfo(&self) -> Option<&str> {
        self.vmcoreinfo.as_deref()
    }

    fn machine(&self) -> Option<Machine> {
        Some(Machine::from_elf(self.machine))
    }

    fn page_size(&self) -> u64 {
        self.page_size
    }

    fn phys_ranges(&self) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for s in self.by_paddr.iter().filter_map(|&i| self.segments.get(i)) {
            match out.last_mut() {
                Some(last) if s.paddr <= last.end => last.end = last.end.max(segment_end(s)),
                _ => out.push(s.paddr..segment_end(s)),
            }
        }
        out
    }

    /// Each segment's bytes present in the file: `p_filesz`, cut at the end of the file.
    fn backed_ranges(&self) -> Vec<Range<u64>> {
        let file_len = self.src.len();
        let mut ranges: Vec<Range<u64>> = self
            .by_paddr
            .iter()
            .filter_map(|&i| self.segments.get(i))
            .filter_map(|s| {
                let in_file = file_len.saturating_sub(s.offset).min(s.filesz);
                (in_file > 0).then(|| s.paddr..s.paddr.saturating_add(in_file))
            })
            .collect();
        ranges.sort_by_key(|r| r.start);
        let mut out: Vec<Range<u64>> = Vec::new();
        for r in ranges {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        out
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
