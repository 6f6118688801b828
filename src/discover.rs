//! Finding the kernel in a file that does not say where it is: a memory snapshot (LiME, AVML, raw) or a dump
//! made without VMCOREINFO (QEMU without `-device vmcoreinfo`, some `virsh dump`s).
//!
//! The kernel keeps its VMCOREINFO as an ELF note in memory (`vmcoreinfo_note`: page-aligned and physically
//! contiguous since 4.15, `alloc_pages_exact`). [`scan`] reads every physical range the file holds once, in
//! large pieces, and looks for such notes: name `VMCOREINFO`, text starting `OSRELEASE=`. A snapshot holds
//! several copies — freed ones (every read of kcore's note segment builds and frees one, so a snapshot taken
//! through /proc/kcore holds several), copies in the page cache (possibly split across pages that are not
//! contiguous), one in crashkernel memory, copies from another kernel — so each candidate is validated
//! before it is trusted ([`validate`]):
//! - its VMCOREINFO must describe a translation (x86_64: `init_top_pgt`, `phys_base`, paging levels);
//! - `SYMBOL(init_uts_ns)`, translated by the page tables alone, must land where the kernel image rule
//!   (`phys_base`, the KASLR `KERNELOFFSET` already in the symbol) puts it: the page tables are this kernel's;
//! - the release in `init_uts_ns`, read through that translation, must equal its `OSRELEASE`.
//!
//! The kernel's own note is preferred: the first page-aligned candidate that validates, else the first that
//! validates. Copies made by kcore's reader sit inside a buffer of notes, never at a page start.
//!
//! Bounded on any input: the scan reads each present byte once (in 8 MiB pieces; a piece that cannot be read
//! is retried page by page, skipping bad pages); at most [`MAX_CANDIDATES`] candidates are kept (the rest are
//! counted) and at most [`MAX_VALIDATED`] are validated; a note's text is read up to [`MAX_NOTE_TEXT`] bytes.

use std::ops::Range;

use memchr::memmem;

use crate::arch::{self, Machine, Translated};
use crate::memory::{Memory, PhysMemory};
use crate::vmcoreinfo::{self, VmcoreInfo};

/// The note's name as it sits in memory (11 bytes with its NUL, padded to 12), then the start of its text.
const PATTERN: &[u8] = b"VMCOREINFO\0\0OSRELEASE=";
/// An ELF note header: namesz, descsz, type (u32 each).
const NOTE_HEADER: u64 = 12;
/// The name field, padded to 4 bytes.
const NAME_FIELD: u64 = 12;
/// The kernel's VMCOREINFO text is at most a page (VMCOREINFO_BYTES); accept up to 16 KiB for 64K kernels'
/// notes, no more.
pub const MAX_NOTE_TEXT: u64 = 16 << 10;
/// Scan piece.
const PIECE: u64 = 8 << 20;
const PAGE: u64 = 4096;
/// Candidates kept for validation and for `synq info`.
pub const MAX_CANDIDATES: usize = 256;
/// Candidates validated, in scan order (each costs a few page-table reads).
pub const MAX_VALIDATED: usize = 64;

/// One note found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Physical address of the note header.
    pub paddr: u64,
    /// Its text (up to the first NUL, at most [`MAX_NOTE_TEXT`] bytes).
    pub text: String,
    /// Why it was not used (`None`: it validated).
    pub rejected: Option<String>,
}

/// What the scan found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Candidates in physical-address order (at most [`MAX_CANDIDATES`]).
    pub candidates: Vec<Candidate>,
    /// Candidates found beyond [`MAX_CANDIDATES`] (not kept).
    pub more: u64,
    /// Index in `candidates` of the one chosen.
    pub chosen: Option<usize>,
    /// Bytes of physical memory scanned, and pages that could not be read.
    pub scanned: u64,
    pub unreadable_pages: u64,
    /// The scan stopped at its budget (sized from the file) before the end of the ranges.
    pub budget_spent: bool,
    /// Time spent scanning, and validating the candidates.
    pub scan_time: std::time::Duration,
    pub validate_time: std::time::Duration,
}

impl Discovery {
    /// The chosen candidate.
    pub fn chosen(&self) -> Option<&Candidate> {
        self.candidates.get(self.chosen?)
    }

    /// Every candidate found, kept or not.
    pub fn found(&self) -> u64 {
        (self.candidates.len() as u64).saturating_add(self.more)
    }
}

/// Scans `ranges` of `phys` for VMCOREINFO notes, validates them and chooses one. `machine`: what the file
/// names, if anything. `release` is called after each piece, to let go of what was read (memory stays
/// bounded by the piece, not by the file). At most `budget` bytes are read: the caller sizes it from the
/// file, so that overlapping or inflated ranges cannot make the work grow past the input.
pub fn scan(
    phys: &dyn PhysMemory,
    ranges: &[Range<u64>],
    machine: Option<&Machine>,
    release: &dyn Fn(),
    budget: u64,
) -> Discovery {
    let started = std::time::Instant::now();
    let mut d = Discovery::default();
    let finder = memmem::Finder::new(PATTERN);
    let overlap = PATTERN.len() as u64 - 1;
    let mut buf = Vec::new();
    'ranges: for r in ranges {
        let mut at = r.start;
        // Each turn moves `at` forward by at least one page (or to the end of the range).
        while at < r.end {
            if d.scanned >= budget {
                d.budget_spent = true;
                break 'ranges;
            }
            let len = (r.end - at).min(PIECE).min(budget - d.scanned);
            // Read a little past the piece so a pattern straddling the boundary is seen once, here.
            let want = (len + overlap).min(r.end - at);
            let Ok(n) = usize::try_from(want) else { break };
            buf.resize(n, 0);
            let readable = read_piece(phys, at, &mut buf, &mut d.unreadable_pages);
            for hit in finder.find_iter(&buf) {
                let hit = hit as u64;
                if hit >= len || !readable.iter().any(|p| p.contains(&hit)) {
                    continue;
                }
                let paddr = (at + hit).saturating_sub(NOTE_HEADER);
                if let Some(c) = candidate(phys, paddr) {
                    if d.candidates.len() < MAX_CANDIDATES {
                        d.candidates.push(c);
                    } else {
                        d.more = d.more.saturating_add(1);
                    }
                }
            }
            d.scanned = d.scanned.saturating_add(len);
            at = at.saturating_add(len);
            release();
        }
    }
    d.scan_time = started.elapsed();
    choose(phys, &mut d, machine);
    d.validate_time = started.elapsed().saturating_sub(d.scan_time);
    d
}

/// Reads `buf.len()` bytes at `at`; a piece that fails is read page by page, bad pages left as zeros.
/// Returns the byte ranges of `buf` that hold real data.
fn read_piece(phys: &dyn PhysMemory, at: u64, buf: &mut [u8], bad: &mut u64) -> Vec<Range<u64>> {
    let len = buf.len() as u64;
    if phys.read_phys(at, buf).is_ok() {
        return std::iter::once(0..len).collect();
    }
    let mut good: Vec<Range<u64>> = Vec::new();
    let mut off = 0u64;
    // Page by page from `at` (which need not be page-aligned): at most len / 4096 + 1 turns.
    while off < len {
        let page_end = ((at + off) | (PAGE - 1)) + 1 - at;
        let end = page_end.min(len);
        let (Ok(s), Ok(e)) = (usize::try_from(off), usize::try_from(end)) else {
            break;
        };
        let Some(part) = buf.get_mut(s..e) else { break };
        if phys.read_phys(at + off, part).is_ok() {
            match good.last_mut() {
                Some(g) if g.end == off => g.end = end,
                _ => good.push(off..end),
            }
        } else {
            part.fill(0);
            *bad = bad.saturating_add(1);
        }
        off = end;
    }
    good
}

/// The note whose header is at `paddr`, if its header is a VMCOREINFO note's.
fn candidate(phys: &dyn PhysMemory, paddr: u64) -> Option<Candidate> {
    let mut hdr = [0u8; (NOTE_HEADER + NAME_FIELD) as usize];
    phys.read_phys(paddr, &mut hdr).ok()?;
    let word =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(hdr.get(i..i + 4)?.try_into().ok()?)) };
    let (namesz, descsz, kind) = (word(0)?, word(4)?, word(8)?);
    if namesz != 11 || kind != 0 || descsz == 0 {
        return None;
    }
    let text_len = u64::from(descsz).min(MAX_NOTE_TEXT);
    let mut text = vec![0u8; usize::try_from(text_len).ok()?];
    let text_at = paddr + NOTE_HEADER + NAME_FIELD;
    if phys.read_phys(text_at, &mut text).is_err() {
        // The note runs into a page the file lacks: keep what the first page holds (validation decides).
        let first = usize::try_from((PAGE - text_at % PAGE).min(text_len)).ok()?;
        text.truncate(first);
        phys.read_phys(text_at, &mut text).ok()?;
    }
    Some(Candidate {
        paddr,
        text: vmcoreinfo::text_of(&text),
        rejected: None,
    })
}

/// Validates candidates in order (at most [`MAX_VALIDATED`]) and picks one: the first page-aligned one that
/// validates, else the first that validates.
fn choose(phys: &dyn PhysMemory, d: &mut Discovery, machine: Option<&Machine>) {
    let mut first_valid = None;
    for (i, c) in d.candidates.iter_mut().enumerate() {
        if i >= MAX_VALIDATED {
            c.rejected = Some(format!(
                "not validated (only the first {MAX_VALIDATED} are)"
            ));
            continue;
        }
        c.rejected = validate(phys, &VmcoreInfo::parse(&c.text), machine).err();
        if c.rejected.is_none() {
            if c.paddr % PAGE == 0 {
                d.chosen = Some(i);
                break;
            }
            first_valid.get_or_insert(i);
        }
    }
    if d.chosen.is_none() {
        d.chosen = first_valid;
    }
    // Say why the ones after the choice were not taken.
    if let Some(ch) = d.chosen {
        let at = d.candidates.get(ch).map_or(0, |c| c.paddr);
        for (i, c) in d.candidates.iter_mut().enumerate() {
            if i != ch && c.rejected.is_none() {
                c.rejected = Some(format!("valid, but the note at {at:#x} was preferred"));
            }
        }
    }
}

/// Whether `info` describes the kernel whose memory `phys` holds. `Err` says why not.
pub fn validate(
    phys: &dyn PhysMemory,
    info: &VmcoreInfo,
    machine: Option<&Machine>,
) -> Result<(), String> {
    let release = info.osrelease().ok_or("no OSRELEASE")?.trim().to_string();
    let arch = arch::from_vmcoreinfo(info, machine).map_err(|e| e.to_string())?;
    let uts = info
        .symbol("init_uts_ns")
        .ok_or("no SYMBOL(init_uts_ns) to check it against")?;
    arch.verify(phys, uts)
        .map_err(|e| format!("its page tables do not map init_uts_ns ({uts:#x}): {e}"))?;
    let mem = Translated::new(phys, arch);
    let found = kernel_release(&mem, info)?;
    if found != release {
        return Err(format!(
            "init_uts_ns says release {found:?}, the note says {release:?}: another kernel's note"
        ));
    }
    Ok(())
}

/// The release the kernel itself holds, in `init_uts_ns` (located by VMCOREINFO's `SYMBOL(init_uts_ns)`), read
/// through `mem`: what `uname -r` says, and what a dump's OSRELEASE line must agree with.
pub fn kernel_release(mem: &dyn Memory, info: &VmcoreInfo) -> Result<String, String> {
    let uts = info
        .symbol("init_uts_ns")
        .ok_or("no SYMBOL(init_uts_ns) to read it from")?;
    let mut uts_bytes = [0u8; 512];
    mem.read(uts, &mut uts_bytes)
        .map_err(|e| format!("init_uts_ns cannot be read: {e}"))?;
    uts_release(&uts_bytes, info.offset("uts_namespace.name"))
        .ok_or_else(|| "init_uts_ns holds no utsname".to_string())
}

/// The release in a `struct uts_namespace`: its `new_utsname` (six 65-byte strings: sysname, nodename,
/// release, …) is at `OFFSET(uts_namespace.name)` when VMCOREINFO gives it, else after the leading `kref`
/// of older kernels (offset 4 or 8) or at 0; sysname is "Linux".
fn uts_release(uts: &[u8], name_off: Option<u64>) -> Option<String> {
    const FIELD: usize = 65;
    let offsets: Vec<usize> = match name_off.and_then(|o| usize::try_from(o).ok()) {
        Some(o) => vec![o],
        None => vec![0, 4, 8],
    };
    offsets.into_iter().find_map(|o| {
        let name = uts.get(o..o.checked_add(3 * FIELD)?)?;
        if !name.starts_with(b"Linux\0") {
            return None;
        }
        let rel = name.get(2 * FIELD..3 * FIELD)?;
        let end = rel.iter().position(|&b| b == 0)?;
        String::from_utf8(rel.get(..end)?.to_vec()).ok()
    })
}
