//! x86_64 kernel virtual → physical translation, for sources that hold physical memory (crash dumps,
//! snapshots): [`X86_64`] translates one address ([`Translate`]).
//!
//! Two rules, as the kernel itself maps its addresses:
//! - **The kernel image rule.** The kernel text mapping starts at `__START_KERNEL_map` (0xffffffff80000000)
//!   and spans `KERNEL_IMAGE_SIZE`; there `pa = va − 0xffffffff80000000 + phys_base`, with `phys_base`
//!   signed (negative when the kernel runs below its link address; given here wrapped modulo 2^64). This
//!   rule needs no memory read, which is how the top-level table `init_top_pgt` (= `swapper_pg_dir`) itself
//!   is found.
//! - **The page-table walk** for everything else (direct map, vmalloc, vmemmap, modules): from the top table,
//!   9 bits of the address per level and a 12-bit page offset. The levels are named as in the Intel SDM
//!   (Linux names in brackets), and a fault names the level whose entry was not present:
//!
//!   | level   | Linux | address bits | leaf?                          |
//!   |---------|-------|--------------|--------------------------------|
//!   | `PML5E` | pgd   | 56..48       | never (5-level paging only)    |
//!   | `PML4E` | p4d¹  | 47..39       | never                          |
//!   | `PDPTE` | pud   | 38..30       | 1 GiB page when PS (bit 7) set |
//!   | `PDE`   | pmd   | 29..21       | 2 MiB page when PS (bit 7) set |
//!   | `PTE`   | pte   | 20..12       | always: 4 KiB page             |
//!
//!   ¹ pgd with 4-level paging. Entries: bit 0 present; physical address bits 51..12
//!   (0x000f_ffff_ffff_f000) after removing the AMD SME bit; the base of a 2 MiB / 1 GiB page is aligned to
//!   its size, because bit 12 of a large-page entry is its PAT bit, not an address bit. At the PTE level
//!   bit 7 is PAT too, never PS.
//!
//! Addresses are canonical or rejected with [`ReadError::NonCanonical`] before any read: bits 63..47 must
//! copy bit 47 with 4 levels, bits 63..56 copy bit 56 with 5 levels.
//!
//! **Cache** ([`super::cache`]): the last-level result per 4 KiB, 2 MiB and 1 GiB virtual page, and the
//! physical address of the page table (PT) below each 2 MiB region and of the page directory (PD) below each
//! 1 GiB region; about 84 KiB, whatever is read. A second translation within a page reads no page table; a
//! first one in a 2 MiB region whose PT is known reads one entry. Do not share one [`X86_64`] between
//! different dumps.

use std::fmt;
use std::ops::Range;

use super::cache::{CacheStats, TranslationCache};
use super::{ConfigError, Machine, Mapping, PageKind, Translate};
use crate::memory::{PhysMemory, ReadError};
use crate::vmcoreinfo::VmcoreInfo;

/// `__START_KERNEL_map`: the virtual base of the kernel text mapping.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// `KERNEL_IMAGE_SIZE` when VMCOREINFO does not give it: 512 MiB, the value without
/// CONFIG_RANDOMIZE_BASE (with it, 1 GiB). Too small a range is only slower (the page tables map the image
/// too), whereas too large a range would apply the image rule to module addresses, which is wrong.
pub const DEFAULT_KERNEL_IMAGE_SIZE: u64 = 512 << 20;

/// Physical address bits 51..12 of a page-table entry.
const ENTRY_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// One past the largest physical address x86_64 can express (MAXPHYADDR ≤ 52).
const MAX_PHYS: u64 = 1 << 52;
const PRESENT: u64 = 1 << 0;
/// PS: a 1 GiB page in a PDPTE, a 2 MiB page in a PDE. Reserved in PML4E/PML5E, PAT in a PTE.
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Low bits of an entry that hold flags; a memory-encryption mask may not touch them.
const FLAG_BITS: u64 = 0xfff;
const ENTRIES_PER_TABLE: u64 = 512;
const ENTRY_SIZE: u64 = 8;
const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// VMCOREINFO symbols for the top-level table, most specific first: `init_top_pgt` (x86_64 arch part, since
/// 4.13's "x86/boot/64: Rename init_level4_pgt and early_level4_pgt"), the generic `swapper_pg_dir` (the
/// same table on x86_64), and `init_level4_pgt` as kernels before 4.13 exported it.
const TOP_TABLE_SYMBOLS: [&str; 3] = ["init_top_pgt", "swapper_pg_dir", "init_level4_pgt"];

/// One paging level of the walk.
#[derive(Clone, Copy, Debug)]
struct Level {
    /// Name in faults ([`ReadError::NotPresent`]).
    name: &'static str,
    /// The lowest virtual-address bit this level indexes.
    shift: u32,
    /// PS (bit 7) makes this entry a leaf (PDPTE: 1 GiB, PDE: 2 MiB).
    large: bool,
    /// Every present entry is a leaf (PTE).
    last: bool,
}

/// The five levels, top first. A 4-level walk starts at `PML4E`; a 5-level walk at `PML5E`.
const WALK: [Level; 5] = [
    // 5-level paging (LA57): 4.14, 77ef56e4f0fb "x86: Enable 5-level paging support via
    // CONFIG_X86_5LEVEL=y" (compile time); 4.17, 6657fca06e3f "x86/mm: Allow to boot without LA57 if
    // CONFIG_X86_5LEVEL=y" (boot time), which VMCOREINFO reports as NUMBER(pgtable_l5_enabled).
    Level {
        name: "PML5E",
        shift: 48,
        large: false,
        last: false,
    },
    Level {
        name: "PML4E",
        shift: 39,
        large: false,
        last: false,
    },
    Level {
        name: "PDPTE",
        shift: 30,
        large: true,
        last: false,
    },
    Level {
        name: "PDE",
        shift: 21,
        large: true,
        last: false,
    },
    Level {
        name: "PTE",
        shift: 12,
        large: false,
        last: true,
    },
];
/// Index in [`WALK`] of the PDE and PTE levels (where a cached PD or PT lets a walk start).
const PDE_LEVEL: usize = 3;
const PTE_LEVEL: usize = 4;
const PD_REGION_SHIFT: u32 = 30;
const PT_REGION_SHIFT: u32 = 21;

/// The paging levels VMCOREINFO describes: 5 when `NUMBER(pgtable_l5_enabled)=1`, 4 when it is 0 or absent
/// (older kernels).
pub fn paging_levels(info: &VmcoreInfo) -> Result<u8, ConfigError> {
    // 4.17, 6657fca06e3f "x86/mm: Allow to boot without LA57 if CONFIG_X86_5LEVEL=y": the boot-time choice,
    // which VMCOREINFO reports.
    match info.get("NUMBER(pgtable_l5_enabled)") {
        None => Ok(4),
        Some(raw) => match info.number("pgtable_l5_enabled") {
            Some(0) => Ok(4),
            Some(1) => Ok(5),
            _ => Err(ConfigError::BadValue {
                key: "NUMBER(pgtable_l5_enabled)",
                value: raw.to_string(),
            }),
        },
    }
}

/// The kernel image rule alone: `va − 0xffffffff80000000 + phys_base` (`phys_base` as a two's-complement
/// value wrapped modulo 2^64). `None` when `va` is below the text mapping or the result is not a physical
/// address (below 0, or 2^52 and above). The caller checks that `va` lies in the image range.
pub fn image_va_to_pa(va: u64, phys_base: u64) -> Option<u64> {
    let offset = va.checked_sub(START_KERNEL_MAP)?;
    // phys_base is signed in the kernel (`unsigned long` holding a negative value when the kernel runs
    // below its link address, printed with %ld); decide the sign rather than rely on wrapping.
    let pa = if (phys_base as i64) < 0 {
        offset.checked_sub(phys_base.wrapping_neg())?
    } else {
        offset.checked_add(phys_base)?
    };
    (pa < MAX_PHYS).then_some(pa)
}

/// The x86_64 MMU of one dumped kernel: its top-level table, paging mode, `phys_base`, SME mask and kernel
/// image range, with a translation cache.
pub struct X86_64 {
    /// Physical address of `init_top_pgt` (PML4, or PML5 with 5-level paging).
    top: u64,
    levels: u8,
    phys_base: u64,
    sme_mask: u64,
    image: Range<u64>,
    cache: TranslationCache,
}

impl fmt::Debug for X86_64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X86_64")
            .field("top", &format_args!("{:#x}", self.top))
            .field("levels", &self.levels)
            .field("phys_base", &format_args!("{:#x}", self.phys_base))
            .field("sme_mask", &format_args!("{:#x}", self.sme_mask))
            .field(
                "image",
                &format_args!("{:#x}..{:#x}", self.image.start, self.image.end),
            )
            .field("cache", &self.cache_stats())
            .finish()
    }
}

impl X86_64 {
    /// From plain values: the physical address of the top-level table (`init_top_pgt` translated by
    /// [`image_va_to_pa`]), the number of paging levels (4, or 5 when `NUMBER(pgtable_l5_enabled)=1`),
    /// `phys_base` wrapped modulo 2^64, the SME mask carried by page-table entries (`NUMBER(sme_mask)`;
    /// `None` or `Some(0)` when memory is not encrypted) and the kernel image range (normally
    /// `0xffffffff80000000 .. + KERNEL_IMAGE_SIZE`; empty to disable the image rule).
    pub fn new(
        top_table: u64,
        levels: u8,
        phys_base: u64,
        sme_mask: Option<u64>,
        image: Range<u64>,
    ) -> Result<X86_64, ConfigError> {
        if levels != 4 && levels != 5 {
            return Err(ConfigError::Levels(levels));
        }
        if top_table & (PAGE_SIZE - 1) != 0 || top_table >= MAX_PHYS {
            return Err(ConfigError::TopTable(top_table));
        }
        let sme_mask = sme_mask.unwrap_or(0);
        if sme_mask & FLAG_BITS != 0 {
            return Err(ConfigError::SmeMask(sme_mask));
        }
        if image.start < START_KERNEL_MAP || image.end < image.start {
            return Err(ConfigError::Image {
                start: image.start,
                end: image.end,
            });
        }
        Ok(X86_64 {
            top: top_table,
            levels,
            phys_base,
            sme_mask,
            image,
            // Leaves: 4 KiB (4096 slots), 2 MiB (512), 1 GiB (64); tables: the PT of each 2 MiB region
            // (512), the PD of each 1 GiB region (64).
            cache: TranslationCache::new(
                &[(PAGE_SHIFT, 12), (PT_REGION_SHIFT, 9), (PD_REGION_SHIFT, 6)],
                &[(PT_REGION_SHIFT, 9), (PD_REGION_SHIFT, 6)],
            ),
        })
    }

    /// From a dump's VMCOREINFO: `SYMBOL(init_top_pgt)` (or `swapper_pg_dir`, or pre-4.13
    /// `init_level4_pgt`), `NUMBER(phys_base)`, `NUMBER(pgtable_l5_enabled)` (absent in older kernels: 4 levels),
    /// `NUMBER(sme_mask)` (absent in older kernels: none) and `NUMBER(KERNEL_IMAGE_SIZE)` (absent:
    /// [`DEFAULT_KERNEL_IMAGE_SIZE`]).
    ///
    /// Limit: kernels 4.14–4.16 built with CONFIG_X86_5LEVEL=y ran 5-level paging without saying so in
    /// VMCOREINFO; they are taken as 4-level.
    pub fn from_vmcoreinfo(info: &VmcoreInfo) -> Result<X86_64, ConfigError> {
        // Older kernels exported SYMBOL(phys_base), its address only: reading it would need the rule it
        // feeds, so such notes are refused here (a kdump sub-header also carries phys_base: use `new`).
        let phys_base = info
            .number_u64("phys_base")
            .ok_or(ConfigError::Missing("NUMBER(phys_base)"))?;
        let (symbol, top_va) = TOP_TABLE_SYMBOLS
            .iter()
            .find_map(|&name| info.symbol(name).map(|va| (name, va)))
            .ok_or(ConfigError::Missing(
                "SYMBOL(init_top_pgt) or SYMBOL(swapper_pg_dir)",
            ))?;
        let levels = paging_levels(info)?;
        // AMD SME (4.14) puts its C-bit into page-table entries; "x86/kdump: Export the SME mask to
        // vmcoreinfo" added NUMBER(sme_mask).
        let sme_mask = match info.get("NUMBER(sme_mask)") {
            None => None,
            Some(raw) => {
                Some(
                    info.number_u64("sme_mask")
                        .ok_or_else(|| ConfigError::BadValue {
                            key: "NUMBER(sme_mask)",
                            value: raw.to_string(),
                        })?,
                )
            }
        };
        let image_size = match info.get("NUMBER(KERNEL_IMAGE_SIZE)") {
            None => DEFAULT_KERNEL_IMAGE_SIZE,
            Some(raw) => info
                .number_u64("KERNEL_IMAGE_SIZE")
                .filter(|&s| s > 0)
                .ok_or_else(|| ConfigError::BadValue {
                    key: "NUMBER(KERNEL_IMAGE_SIZE)",
                    value: raw.to_string(),
                })?,
        };
        let image_end =
            START_KERNEL_MAP
                .checked_add(image_size)
                .ok_or_else(|| ConfigError::BadValue {
                    key: "NUMBER(KERNEL_IMAGE_SIZE)",
                    value: image_size.to_string(),
                })?;
        let image = START_KERNEL_MAP..image_end;
        let top = image_va_to_pa(top_va, phys_base)
            .filter(|_| image.contains(&top_va))
            .ok_or(ConfigError::TopTableOutsideImage {
                symbol,
                va: top_va,
                phys_base,
            })?;
        X86_64::new(top, levels, phys_base, sme_mask, image)
    }

    /// Paging levels: 4 or 5.
    pub fn levels(&self) -> u8 {
        self.levels
    }

    /// `phys_base`, wrapped modulo 2^64 (`as i64` gives the signed value).
    pub fn phys_base(&self) -> u64 {
        self.phys_base
    }

    /// The SME mask removed from every entry (0 when none).
    pub fn sme_mask(&self) -> u64 {
        self.sme_mask
    }

    /// Physical address of the top-level table.
    pub fn top_table(&self) -> u64 {
        self.top
    }

    /// Virtual range served by the kernel image rule.
    pub fn image(&self) -> Range<u64> {
        self.image.clone()
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Forgets every cached translation (the counters stay).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Occupied cache slots, and the fixed number of slots that bounds them.
    pub fn cache_occupancy(&self) -> (usize, usize) {
        self.cache.occupancy()
    }

    /// Whether `vaddr` is canonical for this paging mode.
    pub fn is_canonical(&self, vaddr: u64) -> bool {
        // The top implemented bit is 47 (4 levels) or 56 (5 levels); everything above must copy it.
        let unused = if self.levels == 5 { 7 } else { 16 };
        (((vaddr << unused) as i64) >> unused) as u64 == vaddr
    }

    /// The physical address of `vaddr`. See [`X86_64::lookup`].
    pub fn translate(&self, mem: &dyn PhysMemory, vaddr: u64) -> Result<u64, ReadError> {
        self.lookup(mem, vaddr).map(|m| m.paddr)
    }

    /// The physical address of `vaddr`, its page kind and how many bytes from it are contiguous.
    ///
    /// Errors: [`ReadError::NonCanonical`] for the hole; [`ReadError::NotPresent`] with `vaddr` and the
    /// level whose entry was not present; a failed read of a table entry as `mem` reports it (for a table
    /// outside the dump, [`ReadError::NotInDump`] with the entry's physical address, within that table);
    /// [`ReadError::Corrupt`] for PS set in a PML4E or PML5E (reserved there, never set by Linux).
    pub fn lookup(&self, mem: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError> {
        if !self.is_canonical(vaddr) {
            return Err(ReadError::NonCanonical { addr: vaddr });
        }
        if self.image.contains(&vaddr) {
            // Below the physical start of the image (negative phys_base) the rule gives no address; the
            // page tables then decide (they do not map it).
            if let Some(paddr) = image_va_to_pa(vaddr, self.phys_base) {
                return Ok(Mapping {
                    paddr,
                    // contains() guarantees end > vaddr.
                    len: self.image.end.saturating_sub(vaddr).max(1),
                    kind: PageKind::Image,
                });
            }
        }
        self.cache.lookup_or_walk(vaddr, || self.walk(mem, vaddr))
    }

    /// The page-table walk. One step per level, so at most `levels` entries are read, whatever the tables
    /// hold: an entry pointing back to its own or a higher-level table cannot make it loop.
    fn walk(&self, mem: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError> {
        let top_level = if self.levels == 5 { 0 } else { 1 };
        let (start, mut table) = if let Some(pt) = self.cache.table(PT_REGION_SHIFT, vaddr) {
            (PTE_LEVEL, pt)
        } else if let Some(pd) = self.cache.table(PD_REGION_SHIFT, vaddr) {
            (PDE_LEVEL, pd)
        } else {
            (top_level, self.top)
        };
        for level in WALK.get(start..).unwrap_or_default() {
            let index = (vaddr >> level.shift) & (ENTRIES_PER_TABLE - 1);
            // table < 2^52 (masked entry or checked top) and the offset < 4096: no overflow.
            let entry_pa = table.saturating_add(index * ENTRY_SIZE);
            let mut raw = [0u8; 8];
            mem.read_phys(entry_pa, &mut raw)?;
            self.cache.count_table_read();
            let raw = u64::from_le_bytes(raw);
            let entry = raw & !self.sme_mask;
            if entry & PRESENT == 0 {
                return Err(ReadError::NotPresent {
                    addr: vaddr,
                    level: level.name,
                });
            }
            let base = entry & ENTRY_ADDR_MASK;
            if level.last || (level.large && entry & PAGE_SIZE_BIT != 0) {
                return Ok(Mapping::in_page(base, vaddr, level.shift));
            }
            if entry & PAGE_SIZE_BIT != 0 {
                return Err(ReadError::Corrupt {
                    paddr: entry_pa,
                    msg: format!(
                        "{} {raw:#018x} has PS (bit 7) set, which is reserved at this level \
                         (translating {vaddr:#x})",
                        level.name
                    ),
                });
            }
            // The table below this entry maps the entry's region: a PD per 1 GiB, a PT per 2 MiB.
            self.cache.put_table(level.shift, vaddr, base);
            table = base;
        }
        // Unreachable: the PTE level always returns.
        Err(ReadError::Corrupt {
            paddr: table,
            msg: format!("page-table walk for {vaddr:#x} ended above the PTE level"),
        })
    }
}

impl Translate for X86_64 {
    fn lookup(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError> {
        X86_64::lookup(self, phys, vaddr)
    }

    fn machine(&self) -> Machine {
        Machine::X86_64
    }

    fn facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("paging_levels", self.levels.into()),
            ("top_table", format!("{:#x}", self.top).into()),
        ]
    }

    /// The page-table walk alone (the image rule switched off) must give what the image rule gives.
    fn verify(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<(), String> {
        let direct = image_va_to_pa(vaddr, self.phys_base)
            .filter(|_| self.image.contains(&vaddr))
            .ok_or_else(|| format!("{vaddr:#x} is not in the kernel image mapping"))?;
        let walker = X86_64::new(
            self.top,
            self.levels,
            self.phys_base,
            Some(self.sme_mask),
            START_KERNEL_MAP..START_KERNEL_MAP,
        )
        .map_err(|e| e.to_string())?;
        let m = walker.lookup(phys, vaddr).map_err(|e| e.to_string())?;
        if m.paddr != direct {
            return Err(format!(
                "the page tables map it to {:#x}, phys_base puts it at {direct:#x}",
                m.paddr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Translated;
    use crate::memory::{MAX_READ, Memory, read_ptr};
    use std::collections::{BTreeSet, HashMap};
    use test_case::test_case;

    const K4: u64 = 1 << 12;
    const M2: u64 = 1 << 21;
    const G1: u64 = 1 << 30;
    /// Where the builder puts page tables: away from every RAM range the tests use.
    const TABLE_AREA: u64 = 0x9_0000_0000;
    const SME_BIT: u64 = 1 << 47;
    const PAT_LARGE: u64 = 1 << 12;
    const NX: u64 = 1 << 63;
    const GLOBAL: u64 = 1 << 8;
    /// Present, writable, accessed, dirty: what the kernel's own entries carry.
    const FLAGS: u64 = 0x63;
    /// A vmalloc-like address, canonical with 4 and 5 levels.
    const VMALLOC: u64 = 0xffff_c900_0000_0000;
    const DIRECT: u64 = 0xffff_8880_0000_0000;
    /// Real 6.1 values: NUMBER(phys_base)=-272629760, SYMBOL(swapper_pg_dir)=ffffffff9a60a000.
    const NEG_PHYS_BASE: i64 = -272_629_760;

    /// splitmix64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Byte at physical `paddr` of the test RAM: a hash of the address, so bytes read from a wrong place
    /// show.
    fn ram_byte(paddr: u64) -> u8 {
        (paddr.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    }

    fn ram_bytes(paddr: u64, len: u64) -> Vec<u8> {
        (paddr..paddr + len).map(ram_byte).collect()
    }

    /// Physical memory for tests: page-table pages held as bytes, RAM ranges whose bytes are `ram_byte`,
    /// nothing else (NotInDump of the first missing byte). Counts reads that touch a table page.
    struct TestPhys {
        tables: HashMap<u64, Vec<u8>>,
        ram: Vec<Range<u64>>,
        table_reads: std::sync::atomic::AtomicUsize,
    }

    impl PhysMemory for TestPhys {
        fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            let mut touched_table = false;
            for (i, b) in buf.iter_mut().enumerate() {
                let p = paddr + i as u64;
                let page = p & !(K4 - 1);
                if let Some(t) = self.tables.get(&page) {
                    *b = t[(p - page) as usize];
                    touched_table = true;
                } else if self.ram.iter().any(|r| r.contains(&p)) {
                    *b = ram_byte(p);
                } else {
                    return Err(ReadError::NotInDump { paddr: p });
                }
            }
            if touched_table {
                self.table_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        }
    }

    impl TestPhys {
        fn reads_during<T>(&self, f: impl FnOnce() -> T) -> (T, usize) {
            let before = self.table_reads.load(std::sync::atomic::Ordering::Relaxed);
            let out = f();
            (
                out,
                self.table_reads.load(std::sync::atomic::Ordering::Relaxed) - before,
            )
        }
    }

    fn one(r: Range<u64>) -> Vec<Range<u64>> {
        vec![r]
    }

    /// Writes page tables for a list of mappings. It keeps its own record of the tables it allocated, so
    /// it never decodes an entry it wrote.
    struct Builder {
        levels: u8,
        sme: u64,
        tables: HashMap<u64, Vec<u8>>,
        /// (shift of the entry's level, va >> shift) → the table that entry points to.
        children: HashMap<(u32, u64), u64>,
        next: u64,
    }

    impl Builder {
        fn new(levels: u8, sme: u64) -> Builder {
            let mut tables = HashMap::new();
            tables.insert(TABLE_AREA, vec![0u8; 4096]);
            Builder {
                levels,
                sme,
                tables,
                children: HashMap::new(),
                next: TABLE_AREA + K4,
            }
        }

        fn shifts(&self) -> &'static [u32] {
            if self.levels == 5 {
                &[48, 39, 30, 21, 12]
            } else {
                &[39, 30, 21, 12]
            }
        }

        fn get(&self, table: u64, index: u64) -> u64 {
            let t = &self.tables[&table];
            let i = index as usize * 8;
            u64::from_le_bytes(t[i..i + 8].try_into().unwrap())
        }

        fn set(&mut self, table: u64, index: u64, value: u64) {
            let t = self.tables.get_mut(&table).unwrap();
            let i = index as usize * 8;
            t[i..i + 8].copy_from_slice(&value.to_le_bytes());
        }

        /// The table that the entry at level `shift` for `va` points to.
        fn child(&self, shift: u32, va: u64) -> u64 {
            self.children[&(shift, va >> shift)]
        }

        /// Maps one page of `size` (4K, 2M or 1G) with `extra` flag bits in its leaf entry.
        fn map(&mut self, va: u64, pa: u64, size: u64, extra: u64) {
            let mut table = TABLE_AREA;
            for &shift in self.shifts() {
                let index = (va >> shift) & 511;
                if 1u64 << shift == size {
                    assert_eq!(self.get(table, index), 0, "layout maps {va:#x} twice");
                    let ps = if size > K4 { PAGE_SIZE_BIT } else { 0 };
                    self.set(table, index, pa | FLAGS | ps | extra | self.sme);
                    return;
                }
                let key = (shift, va >> shift);
                let child = match self.children.get(&key) {
                    Some(&c) => c,
                    None => {
                        assert_eq!(self.get(table, index), 0, "{va:#x} under a large page");
                        let c = self.next;
                        self.next += K4;
                        self.tables.insert(c, vec![0u8; 4096]);
                        self.set(table, index, c | FLAGS | self.sme);
                        self.children.insert(key, c);
                        c
                    }
                };
                table = child;
            }
            panic!("page size {size:#x} is not 4K, 2M or 1G");
        }

        /// Fills every empty slot with a not-present entry whose other bits are random (address, PS, SME
        /// bit): the walker must stop at bit 0 and never follow them.
        fn fill_junk(&mut self, rng: &mut Rng) {
            for t in self.tables.values_mut() {
                for slot in t.chunks_mut(8) {
                    if slot == [0u8; 8] {
                        slot.copy_from_slice(&(rng.next() & !PRESENT).to_le_bytes());
                    }
                }
            }
        }

        fn finish(self, ram: Vec<Range<u64>>) -> TestPhys {
            TestPhys {
                tables: self.tables,
                ram,
                table_reads: std::sync::atomic::AtomicUsize::new(0),
            }
        }
    }

    /// One mapping of the test's own list: a virtual page, its physical base and its size.
    #[derive(Clone, Copy, Debug)]
    struct Map {
        va: u64,
        pa: u64,
        size: u64,
    }

    /// The mappings, each with flag bits for its leaf entry that must not leak into addresses: PAT (bit 12
    /// of a large-page entry, bit 7 of a PTE), NX, global, a software bit.
    fn layout(levels: u8) -> Vec<(Map, u64)> {
        let mut v = Vec::new();
        let mut add = |va, pa, size, extra| v.push((Map { va, pa, size }, extra));
        // Direct map: two 1 GiB pages, physically apart.
        add(DIRECT, 0, G1, GLOBAL);
        add(DIRECT + G1, 0x1_4000_0000, G1, PAT_LARGE | NX);
        // 2 MiB pages with a hole at k = 3, physically shuffled, then 4 KiB pages in the same PD.
        let m2 = DIRECT + 4 * G1;
        for k in 0..8u64 {
            if k != 3 {
                let extra = if k % 2 == 1 { PAT_LARGE | NX } else { GLOBAL };
                add(m2 + k * M2, 0x2_0000_0000 + ((k * 5) % 8) * M2, M2, extra);
            }
        }
        for k in 0..4u64 {
            add(m2 + 8 * M2 + k * K4, 0x3_8000_0000 + k * 2 * K4, K4, 0);
        }
        // vmalloc: 600 scattered 4 KiB pages over two page tables, every 7th missing.
        for k in 0..600u64 {
            if k % 7 != 3 {
                let extra = match k % 5 {
                    0 => PAGE_SIZE_BIT, // PAT at the PTE level
                    1 => NX | (1 << 52) | GLOBAL,
                    _ => 0,
                };
                add(
                    VMALLOC + k * K4,
                    0x3_0000_0000 + ((k * 37) % 1024) * K4,
                    K4,
                    extra,
                );
            }
        }
        // Both edges of the 4-level hole.
        add(0x0000_7fff_ffff_f000, 0x4_0000_0000, K4, 0);
        add(0xffff_8000_0000_0000, 0x4_0000_1000, K4, NX);
        if levels == 5 {
            // Both edges of the 5-level hole, an address only 5 levels can reach, the L5 direct map.
            add(0x00ff_ffff_ffff_f000, 0x4_0000_2000, K4, 0);
            add(0xff00_0000_0000_0000, 0x4_0000_3000, K4, 0);
            add(0x0080_0000_0000_0000, 0x4_0000_4000, K4, 0);
            add(0xff11_0000_0000_0000, 0x5_0000_0000, G1, GLOBAL);
            for k in 0..3u64 {
                add(
                    0xff11_0000_4000_0000 + k * M2,
                    0x5_4000_0000 + k * M2,
                    M2,
                    PAT_LARGE,
                );
            }
        }
        v
    }

    fn build(levels: u8, sme: u64, junk: bool) -> (TestPhys, Vec<Map>) {
        let entries = layout(levels);
        let mut b = Builder::new(levels, sme);
        for (m, extra) in &entries {
            b.map(m.va, m.pa, m.size, *extra);
        }
        if junk {
            b.fill_junk(&mut Rng(levels as u64 ^ sme));
        }
        let maps: Vec<Map> = entries.iter().map(|(m, _)| *m).collect();
        let ram = maps.iter().map(|m| m.pa..m.pa + m.size).collect();
        (b.finish(ram), maps)
    }

    /// An MMU without the image rule (empty image range): every address is walked.
    fn walker(levels: u8, sme: u64) -> X86_64 {
        X86_64::new(
            TABLE_AREA,
            levels,
            0,
            Some(sme),
            START_KERNEL_MAP..START_KERNEL_MAP,
        )
        .unwrap()
    }

    /// The expected translation of `va` — (physical address, page size) — from the mapping list and the
    /// architecture's geometry alone, never from the walker.
    fn oracle(maps: &[Map], levels: u8, va: u64) -> Result<(u64, u64), ReadError> {
        let canonical = if levels == 5 {
            !(1 << 56..0xff00_0000_0000_0000).contains(&va)
        } else {
            !(1 << 47..0xffff_8000_0000_0000).contains(&va)
        };
        if !canonical {
            return Err(ReadError::NonCanonical { addr: va });
        }
        if let Some(m) = maps.iter().find(|m| va >= m.va && va - m.va < m.size) {
            return Ok((m.pa + (va - m.va), m.size));
        }
        // Unmapped: the walk stops at the first level whose entry for `va` covers no mapping at all.
        let levels_named: &[(&'static str, u32)] = &[
            ("PML5E", 48),
            ("PML4E", 39),
            ("PDPTE", 30),
            ("PDE", 21),
            ("PTE", 12),
        ];
        let skip = if levels == 5 { 0 } else { 1 };
        for &(name, shift) in &levels_named[skip..] {
            let lo = ((va >> shift) << shift) as u128;
            let hi = lo + (1u128 << shift);
            let covers = |m: &&Map| (m.va as u128) < hi && m.va as u128 + m.size as u128 > lo;
            if !maps.iter().any(|m| covers(&m)) {
                return Err(ReadError::NotPresent {
                    addr: va,
                    level: name,
                });
            }
        }
        panic!("oracle: {va:#x} is neither mapped nor unmapped");
    }

    fn size_of(kind: PageKind) -> u64 {
        match kind {
            PageKind::Page { shift } => 1 << shift,
            PageKind::Image => 0,
        }
    }

    /// A few thousand addresses: every mapping's first and last byte, one past its end, one before its
    /// start, its neighbours at every level's stride, random offsets around mappings, random canonical
    /// addresses, random 64-bit values and both edges of both holes.
    fn sample(maps: &[Map], rng: &mut Rng) -> Vec<u64> {
        let mut v = Vec::new();
        for m in maps {
            v.extend([
                m.va,
                m.va + m.size - 1,
                m.va.wrapping_add(m.size),
                m.va.wrapping_sub(1),
                m.va + m.size / 2,
            ]);
            for shift in [12, 21, 30, 39, 48] {
                v.push(m.va.wrapping_add(1 << shift));
                v.push(m.va.wrapping_sub(1 << shift));
            }
        }
        for _ in 0..2000 {
            let m = maps[rng.below(maps.len() as u64) as usize];
            let off = rng.below(m.size + 8 * M2) as i64 - (4 * M2) as i64;
            v.push(m.va.wrapping_add_signed(off));
        }
        for _ in 0..500 {
            v.push(rng.next());
        }
        for top_bit in [47u32, 56] {
            for _ in 0..300 {
                let low = rng.next() & ((1u64 << top_bit) - 1);
                let high = !((1u64 << top_bit) - 1);
                v.push(if rng.next() & 1 == 1 { low | high } else { low });
            }
        }
        for edge in [
            1u64 << 47,
            0xffff_8000_0000_0000,
            1 << 56,
            0xff00_0000_0000_0000,
        ] {
            v.extend([edge, edge - 1]);
            for _ in 0..8 {
                let r = rng.below(1 << 20);
                v.extend([edge + r, edge - 1 - r]);
            }
        }
        v
    }

    fn outcome(r: &Result<Mapping, ReadError>) -> String {
        match r {
            Ok(m) => format!("{:?}", m.kind),
            Err(ReadError::NotPresent { level, .. }) => format!("NotPresent {level}"),
            Err(e) => format!("{e:?}"),
        }
    }

    /// The walk agrees with the oracle at thousands of addresses, with junk in every not-present entry:
    /// cold (cache cleared before each address, at most `levels` table reads each), then twice warm.
    #[test_case(4, 0 ; "4 levels")]
    #[test_case(4, SME_BIT ; "4 levels, SME bit 47")]
    #[test_case(5, 0 ; "5 levels")]
    #[test_case(5, 1 << 51 ; "5 levels, SME bit 51")]
    fn walk_agrees_with_independent_oracle(levels: u8, sme: u64) {
        let (phys, maps) = build(levels, sme, true);
        let mmu = walker(levels, sme);
        let addrs = sample(&maps, &mut Rng(0x5eed ^ levels as u64));
        assert!(addrs.len() > 3000, "{} addresses", addrs.len());
        let mut seen = BTreeSet::new();
        for pass in 0..3 {
            for &va in &addrs {
                if pass == 0 {
                    mmu.clear_cache();
                }
                let (got, reads) = phys.reads_during(|| mmu.lookup(&phys, va));
                assert!(reads <= levels as usize, "{va:#x}: {reads} table reads");
                let want = oracle(&maps, levels, va);
                seen.insert(outcome(&got));
                let got_cmp = got.map(|m| (m.paddr, size_of(m.kind), m.len));
                let want_cmp = want.map(|(pa, size)| (pa, size, size - (va & (size - 1))));
                assert_eq!(got_cmp, want_cmp, "va {va:#x}, pass {pass}");
            }
        }
        let mut expected: BTreeSet<String> = [
            "Page { shift: 12 }",
            "Page { shift: 21 }",
            "Page { shift: 30 }",
            "NonCanonical { addr: 0 }",
            "NotPresent PML4E",
            "NotPresent PDPTE",
            "NotPresent PDE",
            "NotPresent PTE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if levels == 5 {
            expected.insert("NotPresent PML5E".into());
        }
        let seen_kinds: BTreeSet<String> = seen
            .iter()
            .map(|s| {
                if s.starts_with("NonCanonical") {
                    "NonCanonical { addr: 0 }".to_string()
                } else {
                    s.clone()
                }
            })
            .collect();
        assert_eq!(seen_kinds, expected, "every outcome is exercised");
        let stats = mmu.cache_stats();
        assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    }

    /// A fault names the level whose entry is missing, and the walk read exactly the entries above it.
    #[test_case(4)]
    #[test_case(5)]
    fn not_present_names_each_level(levels: u8) {
        let mut b = Builder::new(levels, 0);
        b.map(VMALLOC, 0x3_0000_0000, K4, 0);
        let phys = b.finish(one(0x3_0000_0000..0x3_0000_1000));
        let mmu = walker(levels, 0);
        let depth = |k: usize| if levels == 5 { k + 1 } else { k };
        let mut cases = vec![
            (VMALLOC + K4, "PTE", depth(4)),
            (VMALLOC + M2, "PDE", depth(3)),
            (VMALLOC + G1, "PDPTE", depth(2)),
            (VMALLOC + (1 << 39), "PML4E", depth(1)),
        ];
        if levels == 5 {
            cases.push((VMALLOC - (1 << 48), "PML5E", 1));
        }
        for (va, level, reads) in cases {
            mmu.clear_cache();
            let (r, n) = phys.reads_during(|| mmu.translate(&phys, va));
            assert_eq!(r, Err(ReadError::NotPresent { addr: va, level }));
            assert_eq!(n, reads, "{level}");
        }
        assert_eq!(mmu.translate(&phys, VMALLOC + 5), Ok(0x3_0000_0005));
    }

    /// The last byte of each page size translates; the byte after it is not mapped, even right after the
    /// page was cached.
    #[test_case(4)]
    #[test_case(5)]
    fn just_past_the_end_of_each_page_size(levels: u8) {
        let (a, b4, c) = (VMALLOC + 5 * K4, VMALLOC + 4 * M2, VMALLOC + 2 * G1);
        let mut b = Builder::new(levels, 0);
        b.map(a, 0x1000_0000, K4, 0);
        b.map(b4, 0x2000_0000, M2, PAT_LARGE);
        b.map(c, 0x4000_0000, G1, PAT_LARGE);
        let phys = b.finish(vec![]);
        let mmu = walker(levels, 0);
        for (va, size, pa, level) in [
            (a, K4, 0x1000_0000, "PTE"),
            (b4, M2, 0x2000_0000, "PDE"),
            (c, G1, 0x4000_0000, "PDPTE"),
        ] {
            assert_eq!(mmu.translate(&phys, va), Ok(pa));
            assert_eq!(mmu.translate(&phys, va + size - 1), Ok(pa + size - 1));
            let end = va + size;
            assert_eq!(
                mmu.translate(&phys, end),
                Err(ReadError::NotPresent { addr: end, level })
            );
            assert_eq!(
                mmu.translate(&phys, va - 1),
                Err(ReadError::NotPresent {
                    addr: va - 1,
                    level
                })
            );
        }
    }

    /// Both sides of the hole are rejected without reading a table; the canonical addresses beside them
    /// are walked. 5-level paging moves the hole.
    #[test_case(4)]
    #[test_case(5)]
    fn non_canonical_hole_is_rejected_before_any_read(levels: u8) {
        let (phys, _) = build(levels, 0, false);
        let mmu = walker(levels, 0);
        let (bad, good): (Vec<u64>, Vec<u64>) = if levels == 4 {
            (
                vec![
                    0x0000_8000_0000_0000,
                    0xffff_7fff_ffff_ffff,
                    0x00ff_ffff_ffff_f000,
                    0xff00_0000_0000_0000,
                    0x8000_0000_0000_0000,
                    0x7fff_ffff_ffff_ffff,
                ],
                vec![0x0000_7fff_ffff_ffff, 0xffff_8000_0000_0000],
            )
        } else {
            (
                vec![
                    0x0100_0000_0000_0000,
                    0xfeff_ffff_ffff_ffff,
                    0x8000_0000_0000_0000,
                    0x7fff_ffff_ffff_ffff,
                ],
                vec![
                    0x00ff_ffff_ffff_ffff,
                    0xff00_0000_0000_0000,
                    0x0000_8000_0000_0000,
                    0xffff_7fff_ffff_ffff,
                ],
            )
        };
        for va in bad {
            let (r, n) = phys.reads_during(|| mmu.translate(&phys, va));
            assert_eq!(r, Err(ReadError::NonCanonical { addr: va }));
            assert_eq!(n, 0);
            assert!(!mmu.is_canonical(va));
        }
        for va in good {
            assert!(mmu.is_canonical(va));
            let r = mmu.translate(&phys, va);
            assert!(
                !matches!(r, Err(ReadError::NonCanonical { .. })),
                "{va:#x}: {r:?}"
            );
        }
        // The mapped edge pages.
        assert_eq!(
            mmu.translate(&phys, 0x0000_7fff_ffff_ffff),
            Ok(0x4_0000_0fff)
        );
        assert_eq!(
            mmu.translate(&phys, 0xffff_8000_0000_0000),
            Ok(0x4_0000_1000)
        );
    }

    /// Entries carry the SME C-bit; configured, it is removed; not configured, the walk follows a table
    /// address with the bit set, which is not in the dump.
    #[test]
    fn sme_bit_is_removed_from_every_entry() {
        let va = VMALLOC + 7 * K4 + 0x123;
        let mut b = Builder::new(4, SME_BIT);
        b.map(VMALLOC + 7 * K4, 0x3_0000_0000, K4, 0);
        let pdpt = b.child(39, va);
        let phys = b.finish(one(0x3_0000_0000..0x3_0000_1000));
        assert_eq!(walker(4, SME_BIT).translate(&phys, va), Ok(0x3_0000_0123));
        let no_mask = X86_64::new(TABLE_AREA, 4, 0, None, 0..0);
        assert!(
            no_mask.is_err(),
            "an image range below the text mapping is refused"
        );
        let no_mask = walker(4, 0);
        let entry = (pdpt | SME_BIT) + ((va >> 30) & 511) * 8;
        assert_eq!(
            no_mask.translate(&phys, va),
            Err(ReadError::NotInDump { paddr: entry })
        );
    }

    /// Large-page bases are aligned to the page size: PAT (bit 12) of a 2 MiB or 1 GiB entry is not an
    /// address bit; in a PTE, bit 7 is PAT and not PS.
    #[test]
    fn large_page_flags_do_not_leak_into_addresses() {
        let mut b = Builder::new(4, 0);
        b.map(VMALLOC, 0x4000_0000, G1, PAT_LARGE);
        b.map(VMALLOC + G1, 0x2_0020_0000, M2, PAT_LARGE | NX);
        b.map(VMALLOC + G1 + M2, 0x3_0000_0000, K4, PAGE_SIZE_BIT);
        let phys = b.finish(vec![]);
        let mmu = walker(4, 0);
        assert_eq!(mmu.translate(&phys, VMALLOC + 0x1234), Ok(0x4000_1234));
        assert_eq!(
            mmu.translate(&phys, VMALLOC + G1 + 0x5678),
            Ok(0x2_0020_5678)
        );
        let m = mmu.lookup(&phys, VMALLOC + G1 + M2 + 9).unwrap();
        assert_eq!(
            (m.paddr, m.kind, m.len),
            (0x3_0000_0009, PageKind::Page { shift: 12 }, K4 - 9)
        );
    }

    fn neg_phys_base() -> u64 {
        NEG_PHYS_BASE as u64
    }

    /// The image rule with a negative phys_base reads no page table; below the image's physical start and
    /// past the image range (modules) the page tables decide.
    #[test]
    fn kernel_image_rule_with_negative_phys_base() {
        let module = START_KERNEL_MAP + G1;
        let mut b = Builder::new(4, 0);
        b.map(module, 0x2000_0000, K4, NX);
        let phys = b.finish(one(0..0x4000_0000));
        let mmu = X86_64::new(
            TABLE_AREA,
            4,
            neg_phys_base(),
            None,
            START_KERNEL_MAP..START_KERNEL_MAP + G1,
        )
        .unwrap();
        let (r, reads) = phys.reads_during(|| {
            (
                mmu.translate(&phys, 0xffff_ffff_9800_0000),
                mmu.translate(&phys, 0xffff_ffff_9a60_a123),
                mmu.lookup(&phys, 0xffff_ffff_bfff_fff0),
            )
        });
        assert_eq!(r.0, Ok(0x07c0_0000));
        assert_eq!(r.1, Ok(0x0a20_a123));
        let last = r.2.unwrap();
        assert_eq!((last.kind, last.len), (PageKind::Image, 0x10));
        assert_eq!(reads, 0, "the image rule reads no page table");
        // Independent check of the rule at random image addresses, in 128-bit signed arithmetic.
        let mut rng = Rng(77);
        for _ in 0..500 {
            let va = START_KERNEL_MAP + rng.below(G1);
            let pa = va as i128 - START_KERNEL_MAP as i128 + NEG_PHYS_BASE as i128;
            let want = if pa >= 0 {
                Ok(pa as u64)
            } else {
                Err(ReadError::NotPresent {
                    addr: va,
                    level: "PDPTE",
                })
            };
            assert_eq!(mmu.translate(&phys, va), want, "{va:#x}");
        }
        // The first image address with a physical address, and the one before it.
        let first = START_KERNEL_MAP + 0x1040_0000;
        assert_eq!(mmu.translate(&phys, first), Ok(0));
        assert_eq!(
            mmu.translate(&phys, first - 1),
            Err(ReadError::NotPresent {
                addr: first - 1,
                level: "PDPTE"
            })
        );
        assert_eq!(image_va_to_pa(first - 1, neg_phys_base()), None);
        assert_eq!(image_va_to_pa(first, neg_phys_base()), Some(0));
        assert_eq!(image_va_to_pa(START_KERNEL_MAP - 1, 0), None);
        assert_eq!(image_va_to_pa(u64::MAX, 1 << 52), None, "beyond 2^52");
        // Modules, right after the image range: walked.
        assert_eq!(mmu.translate(&phys, module + 0x10), Ok(0x2000_0010));
        assert_eq!(
            mmu.translate(&phys, module + K4),
            Err(ReadError::NotPresent {
                addr: module + K4,
                level: "PTE"
            })
        );
    }

    const NOTE_6_1: &str = "OSRELEASE=6.1.0-50-amd64\nPAGESIZE=4096\n\
        SYMBOL(swapper_pg_dir)=ffffffff9a60a000\nSYMBOL(_stext)=ffffffff98000000\n\
        NUMBER(phys_base)=-272629760\nSYMBOL(init_top_pgt)=ffffffff9a60a000\n\
        NUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=17000000\nNUMBER(KERNEL_IMAGE_SIZE)=1073741824\n\
        NUMBER(sme_mask)=0\n";

    /// A note shaped like a real 6.1 one gives the top table by the image rule, 4 levels, no SME.
    #[test]
    fn from_vmcoreinfo_reads_a_real_note() {
        let mmu = X86_64::from_vmcoreinfo(&VmcoreInfo::parse(NOTE_6_1)).unwrap();
        assert_eq!(mmu.top_table(), 0x0a20_a000);
        assert_eq!(mmu.levels(), 4);
        assert_eq!(mmu.phys_base() as i64, NEG_PHYS_BASE);
        assert_eq!(mmu.sme_mask(), 0);
        assert_eq!(mmu.image(), START_KERNEL_MAP..0xffff_ffff_c000_0000);
    }

    /// 5-level paging and an SME mask as the kernel prints them (%d, %ld); without KERNEL_IMAGE_SIZE the
    /// image range is the conservative 512 MiB; swapper_pg_dir stands in for init_top_pgt.
    #[test]
    fn from_vmcoreinfo_five_levels_and_sme() {
        let note = "SYMBOL(swapper_pg_dir)=ffffffff8260a000\nNUMBER(phys_base)=0x1000000\n\
                    NUMBER(pgtable_l5_enabled)=1\nNUMBER(sme_mask)=140737488355328\n";
        let mmu = X86_64::from_vmcoreinfo(&VmcoreInfo::parse(note)).unwrap();
        assert_eq!(mmu.levels(), 5);
        assert_eq!(mmu.sme_mask(), SME_BIT);
        assert_eq!(mmu.top_table(), 0x0360_a000);
        assert_eq!(
            mmu.image(),
            START_KERNEL_MAP..START_KERNEL_MAP + DEFAULT_KERNEL_IMAGE_SIZE
        );
        let old = "SYMBOL(init_level4_pgt)=ffffffff81e0a000\nNUMBER(phys_base)=0\n";
        let mmu = X86_64::from_vmcoreinfo(&VmcoreInfo::parse(old)).unwrap();
        assert_eq!((mmu.top_table(), mmu.levels()), (0x01e0_a000, 4));
    }

    /// What cannot describe a kernel is refused with the key at fault.
    #[test]
    fn from_vmcoreinfo_refuses_what_it_cannot_use() {
        let err = |text: &str| X86_64::from_vmcoreinfo(&VmcoreInfo::parse(text)).unwrap_err();
        let top = "SYMBOL(init_top_pgt)=ffffffff9a60a000\n";
        assert_eq!(err(top), ConfigError::Missing("NUMBER(phys_base)"));
        assert!(matches!(
            err("NUMBER(phys_base)=0\n"),
            ConfigError::Missing(_)
        ));
        let with = |extra: &str| format!("{top}NUMBER(phys_base)=-272629760\n{extra}");
        assert!(matches!(
            err(&with("NUMBER(pgtable_l5_enabled)=2\n")),
            ConfigError::BadValue { .. }
        ));
        assert!(matches!(
            err(&with("NUMBER(sme_mask)=x\n")),
            ConfigError::BadValue { .. }
        ));
        assert!(matches!(
            err(&with("NUMBER(sme_mask)=2048\n")),
            ConfigError::SmeMask(2048)
        ));
        assert!(matches!(
            err(&with("NUMBER(KERNEL_IMAGE_SIZE)=0\n")),
            ConfigError::BadValue { .. }
        ));
        assert!(matches!(
            err("SYMBOL(init_top_pgt)=ffff888000000000\nNUMBER(phys_base)=0\n"),
            ConfigError::TopTableOutsideImage { .. }
        ));
        // In the image range, but below the physical start of a kernel with negative phys_base.
        assert!(matches!(
            err("SYMBOL(init_top_pgt)=ffffffff80001000\nNUMBER(phys_base)=-272629760\n"),
            ConfigError::TopTableOutsideImage { .. }
        ));
    }

    #[test]
    fn new_rejects_impossible_configurations() {
        let image = START_KERNEL_MAP..START_KERNEL_MAP + G1;
        let new = |top, levels, sme, image: Range<u64>| X86_64::new(top, levels, 0, sme, image);
        assert_eq!(
            new(0x1000, 3, None, image.clone()).unwrap_err(),
            ConfigError::Levels(3)
        );
        assert_eq!(
            new(0x1000, 6, None, image.clone()).unwrap_err(),
            ConfigError::Levels(6)
        );
        assert_eq!(
            new(0x1001, 4, None, image.clone()).unwrap_err(),
            ConfigError::TopTable(0x1001)
        );
        assert_eq!(
            new(1 << 52, 4, None, image.clone()).unwrap_err(),
            ConfigError::TopTable(1 << 52)
        );
        assert_eq!(
            new(0x1000, 4, Some(1 << 11), image.clone()).unwrap_err(),
            ConfigError::SmeMask(1 << 11)
        );
        assert!(matches!(
            new(0x1000, 4, None, START_KERNEL_MAP - 1..START_KERNEL_MAP),
            Err(ConfigError::Image { .. })
        ));
        assert!(matches!(
            new(
                0x1000,
                4,
                None,
                Range {
                    start: START_KERNEL_MAP + 1,
                    end: START_KERNEL_MAP
                }
            ),
            Err(ConfigError::Image { .. })
        ));
        assert!(new(0x1000, 5, Some(0), image).is_ok());
    }

    /// A table entry pointing outside the dump fails with NotInDump of the entry read in that table; so
    /// does a top-level table outside the dump.
    #[test]
    fn table_outside_the_dump_is_not_in_dump() {
        let va = VMALLOC + 3 * K4;
        let mut b = Builder::new(4, 0);
        b.map(va, 0x3_0000_0000, K4, 0);
        let pd = b.child(30, va);
        b.set(pd, (va >> 21) & 511, 0x7_0000_0000 | FLAGS);
        let phys = b.finish(vec![]);
        let entry = 0x7_0000_0000 + ((va >> 12) & 511) * 8;
        assert_eq!(
            walker(4, 0).translate(&phys, va),
            Err(ReadError::NotInDump { paddr: entry })
        );
        let lost = X86_64::new(
            0x8_0000_0000,
            4,
            0,
            None,
            START_KERNEL_MAP..START_KERNEL_MAP,
        )
        .unwrap();
        assert_eq!(
            lost.translate(&phys, va),
            Err(ReadError::NotInDump {
                paddr: 0x8_0000_0000 + ((va >> 39) & 511) * 8
            })
        );
    }

    /// A second translation in the same page reads no page table; a new 4 KiB page under a known PT reads
    /// one entry, a new 2 MiB page under a known PD one entry.
    #[test]
    fn second_translation_of_a_page_reads_no_page_table() {
        let (phys, _) = build(4, 0, true);
        let mmu = walker(4, 0);
        let m2 = DIRECT + 4 * G1;
        let steps: [(u64, usize, &str); 9] = [
            (VMALLOC + 0x10, 4, "first 4K page: full walk"),
            (VMALLOC + 0xff8, 0, "same 4K page"),
            (VMALLOC + K4 + 1, 1, "next 4K page, PT cached"),
            (m2 + 5, 3, "2M page: PML4E, PDPTE, PDE"),
            (m2 + M2 - 1, 0, "same 2M page"),
            (m2 + 2 * M2, 1, "next 2M page, PD cached"),
            (DIRECT + 3, 2, "1G page: PML4E, PDPTE"),
            (DIRECT + G1 - 8, 0, "same 1G page"),
            (VMALLOC + 0x20, 0, "first page again"),
        ];
        for (va, reads, what) in steps {
            let (r, n) = phys.reads_during(|| mmu.translate(&phys, va));
            assert!(r.is_ok(), "{what}: {r:?}");
            assert_eq!(n, reads, "{what}");
        }
        let s = mmu.cache_stats();
        assert_eq!((s.hits, s.misses, s.table_reads), (4, 5, 11));
        mmu.clear_cache();
        let (_, n) = phys.reads_during(|| mmu.translate(&phys, VMALLOC + 0x10));
        assert_eq!(n, 4, "cleared cache walks again");
    }

    /// Thousands of distinct pages keep the cache within its fixed slots, and every answer stays right.
    #[test]
    fn cache_stays_bounded_under_churn() {
        let mut b = Builder::new(4, 0);
        let pages = 6000u64;
        for k in 0..pages {
            b.map(
                VMALLOC + k * K4,
                0x1_0000_0000 + ((k * 7919) % pages) * K4,
                K4,
                0,
            );
        }
        let phys = b.finish(vec![]);
        let mmu = walker(4, 0);
        let (_, slots) = mmu.cache_occupancy();
        assert_eq!(slots, 4096 + 512 + 64 + 512 + 64);
        for round in 0..2 {
            for k in 0..pages {
                let want = 0x1_0000_0000 + ((k * 7919) % pages) * K4 + 0x42;
                assert_eq!(
                    mmu.translate(&phys, VMALLOC + k * K4 + 0x42),
                    Ok(want),
                    "page {k}, round {round}"
                );
            }
            let (used, total) = mmu.cache_occupancy();
            assert!(used <= total && total == slots, "{used}/{total}");
        }
        assert!(
            mmu.cache_stats().hits > 0,
            "some pages survive in the cache"
        );
    }

    /// An entry pointing back to its own table (or a higher one) cannot make the walk loop: it reads
    /// exactly `levels` entries, whatever the address.
    #[test_case(4)]
    #[test_case(5)]
    fn page_table_cycle_cannot_loop(levels: u8) {
        let mut b = Builder::new(levels, 0);
        for i in 0..512 {
            b.set(TABLE_AREA, i, TABLE_AREA | FLAGS);
        }
        let phys = b.finish(vec![]);
        let mmu = walker(levels, 0);
        let mut rng = Rng(levels as u64);
        let top_bit = if levels == 5 { 56 } else { 47 };
        for _ in 0..1000 {
            let low = rng.next() & ((1u64 << top_bit) - 1);
            let va = if rng.next() & 1 == 1 {
                low | !((1u64 << top_bit) - 1)
            } else {
                low
            };
            mmu.clear_cache();
            let (r, n) = phys.reads_during(|| mmu.translate(&phys, va));
            // Every level reads the same self-pointing table; the PTE level takes it as the page.
            assert_eq!(r, Ok(TABLE_AREA + (va & 0xfff)), "{va:#x}");
            assert_eq!(n, levels as usize, "{va:#x}: one read per level, no more");
        }
        // A PDE pointing back to the top table: the walk still ends after `levels` reads.
        let mut b = Builder::new(levels, 0);
        b.map(VMALLOC, 0x3_0000_0000, K4, 0);
        let pd = b.child(30, VMALLOC);
        b.set(pd, (VMALLOC >> 21) & 511, TABLE_AREA | FLAGS);
        let phys = b.finish(vec![]);
        let (r, n) = phys.reads_during(|| walker(levels, 0).translate(&phys, VMALLOC));
        assert_eq!(
            r,
            Err(ReadError::NotPresent {
                addr: VMALLOC,
                level: "PTE"
            })
        );
        assert_eq!(n, levels as usize);
    }

    /// PS is reserved in PML4E and PML5E: such an entry is reported as corrupt at its own address.
    #[test_case(4, 39)]
    #[test_case(5, 48)]
    #[test_case(5, 39)]
    fn ps_in_a_top_level_entry_is_corrupt(levels: u8, shift: u32) {
        let va = VMALLOC + 0x77;
        let mut b = Builder::new(levels, 0);
        b.map(va, 0x3_0000_0000, K4, 0);
        let table = if shift == 48 || levels == 4 {
            TABLE_AREA
        } else {
            b.child(48, va)
        };
        let index = (va >> shift) & 511;
        let old = b.get(table, index);
        b.set(table, index, old | PAGE_SIZE_BIT);
        let phys = b.finish(vec![]);
        match walker(levels, 0).translate(&phys, va) {
            Err(ReadError::Corrupt { paddr, msg }) => {
                assert_eq!(paddr, table + index * 8);
                assert!(msg.contains("PS"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Builds the small world of the `Translated` tests: 4K pages at VMALLOC (→ 0x3000_5000) and
    /// VMALLOC + 4K (→ 0x3000_1000, physically before it), nothing at VMALLOC + 8K; a 2 MiB page followed
    /// by a 4K page; the last page of the address space; an image with phys_base 16 MiB, and a module
    /// page right after it.
    fn translated_world() -> (TestPhys, X86_64) {
        let mut b = Builder::new(4, 0);
        b.map(VMALLOC, 0x3000_5000, K4, 0);
        b.map(VMALLOC + K4, 0x3000_1000, K4, 0);
        b.map(VMALLOC + 4 * M2, 0x4000_0000, M2, 0);
        b.map(VMALLOC + 5 * M2, 0x3000_9000, K4, 0);
        b.map(0xffff_ffff_ffff_f000, 0x3000_a000, K4, 0);
        b.map(START_KERNEL_MAP + G1, 0x3000_b000, K4, 0);
        let ram = vec![0x3000_0000..0x3001_0000, 0x4000_0000..0x4400_0000];
        let phys = b.finish(ram);
        let mmu = X86_64::new(
            TABLE_AREA,
            4,
            0x100_0000,
            None,
            START_KERNEL_MAP..START_KERNEL_MAP + G1,
        )
        .unwrap();
        (phys, mmu)
    }

    /// A read crossing page boundaries takes each page from its own physical place.
    #[test]
    fn translated_read_joins_pages_from_their_own_places() {
        let (phys, mmu) = translated_world();
        let mem = Translated::new(&phys, mmu);
        let dyn_mem: &dyn Memory = &mem;
        let mut buf = [0u8; 16];
        dyn_mem.read(VMALLOC + K4 - 8, &mut buf).unwrap();
        let want = [ram_bytes(0x3000_5ff8, 8), ram_bytes(0x3000_1000, 8)].concat();
        assert_eq!(buf.to_vec(), want);
        // 2 MiB page into a 4K page.
        dyn_mem.read(VMALLOC + 5 * M2 - 4, &mut buf[..12]).unwrap();
        let want = [
            ram_bytes(0x4000_0000 + M2 - 4, 4),
            ram_bytes(0x3000_9000, 8),
        ]
        .concat();
        assert_eq!(buf[..12].to_vec(), want);
        // A whole 2 MiB page in one read.
        let mut big = vec![0u8; M2 as usize];
        dyn_mem.read(VMALLOC + 4 * M2, &mut big).unwrap();
        assert!(big == ram_bytes(0x4000_0000, M2));
        // Out of the image (rule) into a module page (walk).
        dyn_mem
            .read(START_KERNEL_MAP + G1 - 4, &mut buf[..8])
            .unwrap();
        let want = [
            ram_bytes(0x4000_0000 + 0x100_0000 - 4, 4),
            ram_bytes(0x3000_b000, 4),
        ]
        .concat();
        assert_eq!(buf[..8].to_vec(), want);
        let ptr = [ram_bytes(0x3000_5ffc, 4), ram_bytes(0x3000_1000, 4)].concat();
        assert_eq!(
            read_ptr(dyn_mem, VMALLOC + K4 - 4, 8),
            Ok(u64::from_le_bytes(ptr.try_into().unwrap()))
        );
        assert_eq!(mem.translate(VMALLOC + K4), Ok(0x3000_1000));
        assert_eq!(dyn_mem.read(VMALLOC, &mut []), Ok(()));
    }

    /// A large read shared among threads gives the bytes, or the error, of one read.
    #[test]
    fn threaded_read_equals_one_read() {
        let (phys, mmu) = translated_world();
        let mem = Translated::new(&phys, mmu);
        let mut read_ok = 0;
        // A 2 MiB page, then the 4 KiB pages after it; and runs past what is mapped.
        for (at, len) in [
            (VMALLOC + 4 * M2, M2 as usize),
            (VMALLOC + 4 * M2 + 8, M2 as usize),
            (
                VMALLOC + 4 * M2 + M2 / 2,
                M2 as usize / 2 + 3 * K4 as usize + 5,
            ),
            (VMALLOC + 4 * M2, 4 * M2 as usize),
            (VMALLOC, M2 as usize),
        ] {
            let mut one = vec![0u8; len];
            let mut shared = vec![1u8; len];
            let r1 = mem.read(at, &mut one);
            let r2 = mem.read_threaded(at, &mut shared);
            assert_eq!(r1, r2, "{at:#x} + {len:#x}");
            if r1.is_ok() {
                assert!(one == shared, "{at:#x} + {len:#x}: bytes differ");
                read_ok += 1;
            }
        }
        assert!(read_ok >= 2, "only {read_ok} of the reads succeeded");
    }

    /// A read that runs into an unmapped page fails with that page's first address and level.
    #[test]
    fn translated_read_into_unmapped_page_names_its_first_address() {
        let (phys, mmu) = translated_world();
        let mem = Translated::new(&phys, mmu);
        let mut buf = [0u8; 8];
        assert_eq!(
            mem.read(VMALLOC + 2 * K4 - 4, &mut buf),
            Err(ReadError::NotPresent {
                addr: VMALLOC + 2 * K4,
                level: "PTE"
            })
        );
        let mut two_pages = vec![0u8; 2 * K4 as usize + 1];
        assert_eq!(
            mem.read(VMALLOC, &mut two_pages),
            Err(ReadError::NotPresent {
                addr: VMALLOC + 2 * K4,
                level: "PTE"
            })
        );
        // The data page itself outside the dump: the dump's own fault.
        let mut b = Builder::new(4, 0);
        b.map(VMALLOC, 0x6000_0000, K4, 0);
        let phys = b.finish(vec![]);
        let mem = Translated::new(&phys, walker(4, 0));
        assert_eq!(
            mem.read(VMALLOC + 8, &mut buf),
            Err(ReadError::NotInDump { paddr: 0x6000_0008 })
        );
    }

    /// The end of the address space and oversized reads are refused without panicking.
    #[test]
    fn translated_read_bounds() {
        let (phys, mmu) = translated_world();
        let mem = Translated::new(&phys, mmu);
        let top = 0xffff_ffff_ffff_fffc;
        let mut buf = [0u8; 8];
        assert_eq!(mem.read(top, &mut buf[..4]), Ok(()));
        assert_eq!(buf[..4].to_vec(), ram_bytes(0x3000_affc, 4));
        assert_eq!(
            mem.read(top, &mut buf),
            Err(ReadError::TooLarge { addr: top, len: 8 })
        );
        let mut huge = vec![0u8; MAX_READ + 1];
        assert_eq!(
            mem.read(VMALLOC, &mut huge),
            Err(ReadError::TooLarge {
                addr: VMALLOC,
                len: MAX_READ + 1
            })
        );
        assert_eq!(
            mem.read(0x0000_8000_0000_0000, &mut buf),
            Err(ReadError::NonCanonical {
                addr: 0x0000_8000_0000_0000
            })
        );
    }
}
