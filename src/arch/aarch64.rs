//! arm64 (AArch64, little-endian) kernel virtual → physical translation, for crash dumps and snapshots of
//! arm64 kernels, read on any host: [`Aarch64`] translates one address ([`Translate`]).
//!
//! Kernel addresses are translated through TTBR1's tables, which the kernel keeps in `swapper_pg_dir`:
//! - **The top-level table** is `SYMBOL(swapper_pg_dir)`, an address in the kernel image, whose physical
//!   address is `va − kimage_voffset` (`NUMBER(kimage_voffset)`; the image is linked at `KIMAGE_VADDR` and
//!   moved by KASLR, and this one offset covers both). This rule is used for the top table and for
//!   [`Translate::verify`]; everything else, the image included, goes through the page tables.
//! - **Geometry.** The granule is `PAGESIZE` (4K, 16K or 64K). Each level resolves `granule shift − 3` bits
//!   (9, 11, 13); the last level maps one page. The kernel's address range is `[−2^va_bits, 2^64)`, with
//!   `va_bits = 64 − TCR_EL1_T1SZ` (5.9, "arm64: mm: Add TCR_EL1_T1SZ to vmcoreinfo"; older kernels:
//!   `NUMBER(VA_BITS)`). The levels follow from those bits: 4K with 39/48/52 bits gives 3/4/5 levels, 16K with
//!   47/48/52 gives 3/4/4, 64K with 42/48/52 gives 2/3/3.
//!   - 4K and 16K kernels built for 52 bits that run on a CPU without LPA2 fold a level and run with 48 (4K)
//!     or 47 (16K) bits (6.9, "arm64: Enable LPA2 at boot if supported by the system"): T1SZ says which.
//!   - 64K kernels built for 52 bits keep 3 levels on a 48-bit CPU: TTBR1 then points into the last 64
//!     entries of the 1024-entry top table ("TTBR1_BADDR_4852_OFFSET", 5.4, "arm64: mm: Introduce 52-bit
//!     Kernel VAs"), so the top table is indexed with the built `VA_BITS`, which gives the same entry.
//! - **Descriptors.** Bit 0: valid. Bit 1: table (or page, at the last level) when set, block when clear.
//!   Output address bits 47..granule, and above 48 bits:
//!   - 64K pages (52-bit PA, FEAT_LPA; 4.16, "arm64: handle 52-bit addresses in TTBR"): PA 51:48 in bits
//!     15:12 — zero when physical memory lies below 2^48, so always decoded;
//!   - 4K and 16K pages with LPA2 (52-bit VA on those granules means LPA2; 6.9): PA 49:48 in bits 49:48 and
//!     PA 51:50 in bits 9:8, which without LPA2 hold the shareability field (so they are decoded only then).
//!
//!   Blocks: 4K at levels 1 (1 GiB) and 2 (2 MiB), with LPA2 also level 0 (512 GiB); 16K at level 2
//!   (32 MiB), with LPA2 also level 1 (64 GiB); 64K at level 2 (512 MiB) and level 1 (4 TiB, 52-bit PA).
//!   A block anywhere else, or the block encoding at the last level, is a reserved encoding: the walk fails
//!   with [`ReadError::Corrupt`] naming the entry.
//! - **Pointer authentication.** Where the kernel signs pointers (`NUMBER(KERNELPACMASK)` non-zero, 5.8,
//!   "arm64: kdump: add the KERNELPACMASK to vmcoreinfo"), a signed kernel pointer has its PAC in those
//!   bits; a kernel address (bit 55 set) has them set to 1 before translation, the way `xpaci` strips it.
//!
//! Faults name the address and the level (`level 2 (pmd)`), as the x86_64 walk does. Addresses outside
//! TTBR1's range are [`ReadError::NonCanonical`] before any read. The cache is the shared
//! [`super::cache`]: leaves per page and per block size, and the table below each last-level and
//! second-to-last-level region. Do not share one [`Aarch64`] between different dumps.

use std::fmt;

use super::cache::{CacheStats, TranslationCache};
use super::{ConfigError, Machine, Mapping, Translate};
use crate::memory::{PhysMemory, ReadError};
use crate::vmcoreinfo::VmcoreInfo;

/// One past the largest physical address (52 bits with FEAT_LPA / FEAT_LPA2).
const MAX_PHYS: u64 = 1 << 52;
const VALID: u64 = 1 << 0;
/// Set: a table (above the last level) or a page (at the last level). Clear: a block.
const TABLE_OR_PAGE: u64 = 1 << 1;
const ENTRY_SIZE: u64 = 8;
/// Output address bits 47..0 (cut below the granule where used).
const OA_LOW_48: u64 = 0x0000_ffff_ffff_ffff;
/// Output address bits 49..0 (LPA2).
const OA_LOW_50: u64 = 0x0003_ffff_ffff_ffff;

/// Level names per level count, top first: the ARM level number and the Linux table name.
const NAMES_5: [&str; 5] = [
    "level -1 (pgd)",
    "level 0 (p4d)",
    "level 1 (pud)",
    "level 2 (pmd)",
    "level 3 (pte)",
];
const NAMES_4: [&str; 4] = [
    "level 0 (pgd)",
    "level 1 (pud)",
    "level 2 (pmd)",
    "level 3 (pte)",
];
const NAMES_3: [&str; 3] = ["level 1 (pgd)", "level 2 (pmd)", "level 3 (pte)"];
const NAMES_2: [&str; 2] = ["level 2 (pgd)", "level 3 (pte)"];

/// The number of translation levels for a granule of `1 << granule_shift` bytes and `va_bits` of address.
pub fn levels_for(granule_shift: u32, va_bits: u32) -> Option<u8> {
    let per_level = granule_shift.checked_sub(3)?;
    let above = va_bits.checked_sub(granule_shift)?;
    if per_level == 0 || above == 0 {
        return None;
    }
    u8::try_from(above.div_ceil(per_level)).ok()
}

/// The arm64 MMU of one dumped kernel (TTBR1 only): its granule, address bits, levels, top-level table and
/// image offset, with a translation cache.
pub struct Aarch64 {
    /// 12, 14 or 16.
    granule_shift: u32,
    /// The kernel's address bits at run time (64 − T1SZ): addresses below −2^va_bits are refused.
    va_bits: u32,
    /// The bits the top table is indexed with: `va_bits`, or the built VA_BITS for 64K (see the module).
    walk_bits: u32,
    levels: u8,
    /// Physical address of swapper_pg_dir.
    top: u64,
    kimage_voffset: u64,
    phys_offset: Option<u64>,
    /// KERNELPACMASK (0: no pointer authentication).
    pac_mask: u64,
    /// 4K/16K with 52-bit addresses: PA 51:50 in descriptor bits 9:8.
    lpa2: bool,
    cache: TranslationCache,
}

impl fmt::Debug for Aarch64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aarch64")
            .field("granule", &(1u64 << self.granule_shift))
            .field("va_bits", &self.va_bits)
            .field("walk_bits", &self.walk_bits)
            .field("levels", &self.levels)
            .field("top", &format_args!("{:#x}", self.top))
            .field(
                "kimage_voffset",
                &format_args!("{:#x}", self.kimage_voffset),
            )
            .field("pac_mask", &format_args!("{:#x}", self.pac_mask))
            .field("lpa2", &self.lpa2)
            .field("cache", &self.cache_stats())
            .finish()
    }
}

/// What [`Aarch64::new`] is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The granule in bytes: 4096, 16384 or 65536 (`PAGESIZE`).
    pub page_size: u64,
    /// The built `VA_BITS` (`NUMBER(VA_BITS)`).
    pub va_bits: u32,
    /// `NUMBER(TCR_EL1_T1SZ)` when the kernel gives it (the run-time address bits are 64 − T1SZ).
    pub t1sz: Option<u32>,
    /// Physical address of `swapper_pg_dir`.
    pub top_table: u64,
    pub kimage_voffset: u64,
    pub phys_offset: Option<u64>,
    /// `NUMBER(KERNELPACMASK)`; 0 or `None` when pointers are not signed.
    pub pac_mask: Option<u64>,
}

impl Aarch64 {
    /// From plain values; refuses any that no arm64 kernel runs with.
    pub fn new(c: Config) -> Result<Aarch64, ConfigError> {
        let granule_shift = match c.page_size {
            4096 => 12,
            16384 => 14,
            65536 => 16,
            other => {
                return Err(ConfigError::BadValue {
                    key: "PAGESIZE",
                    value: format!("{other} (arm64 pages are 4096, 16384 or 65536 bytes)"),
                });
            }
        };
        let allowed: &[u32] = match granule_shift {
            12 => &[39, 48, 52],
            14 => &[36, 47, 48, 52],
            _ => &[42, 48, 52],
        };
        let bad_bits = |key: &'static str, v: u32| ConfigError::BadValue {
            key,
            value: format!(
                "{v} ({}: {} with {}K pages)",
                if key == "NUMBER(VA_BITS)" {
                    "VA_BITS"
                } else {
                    "64 − T1SZ"
                },
                allowed
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("/"),
                c.page_size >> 10
            ),
        };
        if !allowed.contains(&c.va_bits) {
            return Err(bad_bits("NUMBER(VA_BITS)", c.va_bits));
        }
        let va_bits = match c.t1sz {
            None => c.va_bits,
            Some(t1sz) => {
                let bits = 64u32.saturating_sub(t1sz);
                // The run-time bits never exceed the built ones (a 52-bit build may run with fewer).
                if !allowed.contains(&bits) || bits > c.va_bits {
                    return Err(bad_bits("NUMBER(TCR_EL1_T1SZ)", bits));
                }
                bits
            }
        };
        // 5.4, "arm64: mm: Introduce 52-bit Kernel VAs": 64K keeps its levels and offsets TTBR1 into the
        // built top table; 4K/16K with LPA2 (6.9) fold a level instead, so their table has run-time size.
        let walk_bits = if granule_shift == 16 {
            c.va_bits
        } else {
            va_bits
        };
        let levels = levels_for(granule_shift, walk_bits).ok_or(ConfigError::BadValue {
            key: "NUMBER(VA_BITS)",
            value: c.va_bits.to_string(),
        })?;
        if !(2..=5).contains(&levels) {
            return Err(ConfigError::Levels(levels));
        }
        if c.top_table & ((1u64 << granule_shift) - 1) != 0 || c.top_table >= MAX_PHYS {
            return Err(ConfigError::TopTable(c.top_table));
        }
        let pac_mask = c.pac_mask.unwrap_or(0);
        // The PAC sits in the bits above the address (GENMASK(63, vabits_actual), bit 55 included, which a
        // kernel address has set anyway), never in the address bits the walk uses.
        if pac_mask & ((1u64 << va_bits) - 1) != 0 {
            return Err(ConfigError::BadValue {
                key: "NUMBER(KERNELPACMASK)",
                value: format!("{pac_mask:#x} (overlaps the {va_bits} address bits)"),
            });
        }
        let lpa2 = granule_shift != 16 && va_bits == 52;
        let g = granule_shift;
        let b = g - 3;
        // Leaves: pages (4096 slots), last-level blocks (512), the block size above (64); tables: the last
        // level's table per block-sized region (512), the one above it (64).
        let cache = TranslationCache::new(
            &[(g, 12), (g + b, 9), (g + 2 * b, 6)],
            &[(g + b, 9), (g + 2 * b, 6)],
        );
        Ok(Aarch64 {
            granule_shift,
            va_bits,
            walk_bits,
            levels,
            top: c.top_table,
            kimage_voffset: c.kimage_voffset,
            phys_offset: c.phys_offset,
            pac_mask,
            lpa2,
            cache,
        })
    }

    /// From a dump's VMCOREINFO: `PAGESIZE`, `NUMBER(VA_BITS)`, `NUMBER(TCR_EL1_T1SZ)` (5.9+),
    /// `NUMBER(kimage_voffset)`, `SYMBOL(swapper_pg_dir)`, `NUMBER(PHYS_OFFSET)` and `NUMBER(KERNELPACMASK)`
    /// (5.8+, 0 without pointer authentication).
    pub fn from_vmcoreinfo(info: &VmcoreInfo) -> Result<Aarch64, ConfigError> {
        let missing = ConfigError::MissingFor;
        let page_size = match info.get("PAGESIZE") {
            None => return Err(missing("aarch64", "PAGESIZE")),
            Some(raw) => info.page_size().ok_or_else(|| ConfigError::BadValue {
                key: "PAGESIZE",
                value: raw.to_string(),
            })?,
        };
        let number = |key: &'static str, name: &str| -> Result<Option<u64>, ConfigError> {
            match info.get(key) {
                None => Ok(None),
                Some(raw) => info
                    .number_u64(name)
                    .map(Some)
                    .ok_or_else(|| ConfigError::BadValue {
                        key,
                        value: raw.to_string(),
                    }),
            }
        };
        let small = |key: &'static str, v: u64| {
            u32::try_from(v).map_err(|_| ConfigError::BadValue {
                key,
                value: v.to_string(),
            })
        };
        let va_bits =
            number("NUMBER(VA_BITS)", "VA_BITS")?.ok_or(missing("aarch64", "NUMBER(VA_BITS)"))?;
        let va_bits = small("NUMBER(VA_BITS)", va_bits)?;
        let t1sz = number("NUMBER(TCR_EL1_T1SZ)", "TCR_EL1_T1SZ")?
            .map(|v| small("NUMBER(TCR_EL1_T1SZ)", v))
            .transpose()?;
        let kimage_voffset = number("NUMBER(kimage_voffset)", "kimage_voffset")?
            .ok_or(missing("aarch64", "NUMBER(kimage_voffset)"))?;
        let phys_offset = number("NUMBER(PHYS_OFFSET)", "PHYS_OFFSET")?;
        let pac_mask = number("NUMBER(KERNELPACMASK)", "KERNELPACMASK")?;
        let swapper = info
            .symbol("swapper_pg_dir")
            .ok_or(missing("aarch64", "SYMBOL(swapper_pg_dir)"))?;
        let top_table = swapper.wrapping_sub(kimage_voffset);
        if swapper >> 55 & 1 == 0 || top_table >= MAX_PHYS {
            return Err(ConfigError::TopTableOutsideImage {
                symbol: "swapper_pg_dir",
                va: swapper,
                phys_base: kimage_voffset,
            });
        }
        Aarch64::new(Config {
            page_size,
            va_bits,
            t1sz,
            top_table,
            kimage_voffset,
            phys_offset,
            pac_mask,
        })
    }

    pub fn levels(&self) -> u8 {
        self.levels
    }

    pub fn page_size(&self) -> u64 {
        1 << self.granule_shift
    }

    /// The kernel's address bits at run time.
    pub fn va_bits(&self) -> u32 {
        self.va_bits
    }

    pub fn top_table(&self) -> u64 {
        self.top
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Occupied cache slots, and the fixed number of slots that bounds them.
    pub fn cache_occupancy(&self) -> (usize, usize) {
        self.cache.occupancy()
    }

    /// `vaddr` with a pointer-authentication code removed (kernel addresses only), then whether it lies in
    /// TTBR1's range.
    fn kernel_address(&self, vaddr: u64) -> Option<u64> {
        let v = if self.pac_mask != 0 && vaddr & (1 << 55) != 0 {
            vaddr | self.pac_mask
        } else {
            vaddr
        };
        // va_bits ≤ 52, so the shift is in range; every bit from va_bits up must be 1.
        (v >> self.va_bits == u64::MAX >> self.va_bits).then_some(v)
    }

    /// The output address of a descriptor (page, block or next table), bits below the granule cleared.
    fn output_address(&self, desc: u64) -> u64 {
        let granule_mask = !((1u64 << self.granule_shift) - 1);
        if self.granule_shift == 16 {
            // FEAT_LPA: PA 51:48 in bits 15:12.
            (desc & OA_LOW_48 & granule_mask) | ((desc >> 12 & 0xf) << 48)
        } else if self.lpa2 {
            // FEAT_LPA2: PA 49:48 in place, PA 51:50 in bits 9:8.
            (desc & OA_LOW_50 & granule_mask) | ((desc >> 8 & 0x3) << 50)
        } else {
            desc & OA_LOW_48 & granule_mask
        }
    }

    /// The largest block (as an address shift) this configuration allows.
    fn max_block_shift(&self) -> u32 {
        let g = self.granule_shift;
        let b = g - 3;
        match (g, self.lpa2) {
            // 4K: 1 GiB at level 1, and 512 GiB at level 0 with LPA2.
            (12, false) => g + 2 * b,
            (12, true) => g + 3 * b,
            // 16K: 32 MiB at level 2, and 64 GiB at level 1 with LPA2.
            (14, false) => g + b,
            (14, true) => g + 2 * b,
            // 64K: 512 MiB at level 2 and 4 TiB at level 1 (52-bit PA).
            _ => g + 2 * b,
        }
    }

    fn names(&self) -> &'static [&'static str] {
        match self.levels {
            5 => &NAMES_5,
            4 => &NAMES_4,
            3 => &NAMES_3,
            _ => &NAMES_2,
        }
    }

    /// The address shift of walk level `i` (0 = top).
    fn shift_of(&self, i: usize) -> u32 {
        let g = self.granule_shift;
        let below = (self.levels as u32).saturating_sub(1 + i as u32);
        g + (g - 3) * below
    }

    /// The physical address of `vaddr`. See [`Aarch64::lookup`].
    pub fn translate(&self, mem: &dyn PhysMemory, vaddr: u64) -> Result<u64, ReadError> {
        self.lookup(mem, vaddr).map(|m| m.paddr)
    }

    /// The physical address of `vaddr`, its page (or block) size and how many bytes from it are
    /// contiguous. Errors: [`ReadError::NonCanonical`] outside TTBR1's range; [`ReadError::NotPresent`]
    /// naming the level whose descriptor was invalid; a failed read of a table as `mem` reports it;
    /// [`ReadError::Corrupt`] for a reserved encoding.
    pub fn lookup(&self, mem: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError> {
        let va = self
            .kernel_address(vaddr)
            .ok_or(ReadError::NonCanonical { addr: vaddr })?;
        self.cache.lookup_or_walk(va, || self.walk(mem, va))
    }

    /// One step per level, so at most `levels` descriptors are read whatever the tables hold.
    fn walk(&self, mem: &dyn PhysMemory, va: u64) -> Result<Mapping, ReadError> {
        let n = self.levels as usize;
        let g = self.granule_shift;
        let b = g - 3;
        let (start, mut table) = if let Some(t) = self.cache.table(g + b, va) {
            (n - 1, t)
        } else if let Some(t) = self.cache.table(g + 2 * b, va).filter(|_| n >= 3) {
            (n - 2, t)
        } else {
            (0, self.top)
        };
        let names = self.names();
        for i in start..n {
            let shift = self.shift_of(i);
            let bits = if i == 0 { self.walk_bits - shift } else { b };
            let index = (va >> shift) & ((1u64 << bits) - 1);
            // table < 2^52 and index × 8 < 2^16: no overflow.
            let entry_pa = table.saturating_add(index * ENTRY_SIZE);
            let mut raw = [0u8; 8];
            mem.read_phys(entry_pa, &mut raw)?;
            self.cache.count_table_read();
            let desc = u64::from_le_bytes(raw);
            let name = names.get(i).copied().unwrap_or("level ?");
            if desc & VALID == 0 {
                return Err(ReadError::NotPresent {
                    addr: va,
                    level: name,
                });
            }
            let oa = self.output_address(desc);
            let last = i + 1 == n;
            if last {
                if desc & TABLE_OR_PAGE == 0 {
                    return Err(ReadError::Corrupt {
                        paddr: entry_pa,
                        msg: format!(
                            "{name} descriptor {desc:#018x} uses the block encoding, reserved at the \
                             last level (translating {va:#x})"
                        ),
                    });
                }
                return Ok(Mapping::in_page(oa, va, shift));
            }
            if desc & TABLE_OR_PAGE == 0 {
                if shift > self.max_block_shift() {
                    return Err(ReadError::Corrupt {
                        paddr: entry_pa,
                        msg: format!(
                            "{name} descriptor {desc:#018x} is a block of 2^{shift} bytes, which {}K \
                             pages do not allow (translating {va:#x})",
                            1u64 << (g - 10)
                        ),
                    });
                }
                return Ok(Mapping::in_page(oa, va, shift));
            }
            self.cache.put_table(shift, va, oa);
            table = oa;
        }
        Err(ReadError::Corrupt {
            paddr: table,
            msg: format!("page-table walk for {va:#x} ended above the last level"),
        })
    }
}

impl Translate for Aarch64 {
    fn lookup(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<Mapping, ReadError> {
        Aarch64::lookup(self, phys, vaddr)
    }

    fn machine(&self) -> Machine {
        Machine::Aarch64
    }

    fn facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut v = vec![
            ("paging_levels", self.levels.into()),
            ("page_size", self.page_size().into()),
            ("va_bits", self.va_bits.into()),
            ("top_table", format!("{:#x}", self.top).into()),
            (
                "kimage_voffset",
                format!("{:#x}", self.kimage_voffset).into(),
            ),
        ];
        if let Some(p) = self.phys_offset {
            v.push(("phys_offset", format!("{p:#x}").into()));
        }
        v.push(("pointer_auth", (self.pac_mask != 0).into()));
        v
    }

    /// The page tables must map `vaddr`, an address in the kernel image, where `kimage_voffset` puts it.
    fn verify(&self, phys: &dyn PhysMemory, vaddr: u64) -> Result<(), String> {
        let direct = vaddr.wrapping_sub(self.kimage_voffset);
        let m = self.lookup(phys, vaddr).map_err(|e| e.to_string())?;
        if m.paddr != direct {
            return Err(format!(
                "the page tables map it to {:#x}, kimage_voffset puts it at {direct:#x}",
                m.paddr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The walker against an independent oracle: a builder writes descriptors the way the architecture
    //! defines them (the hardware's view: TTBR1 with its offset, the run-time index width) and keeps its
    //! own record of what it mapped, from which the oracle answers without decoding any descriptor.
    use super::*;
    use crate::arch::{PageKind, Translated};
    use crate::memory::Memory;
    use std::collections::{BTreeSet, HashMap};
    use std::ops::Range;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Page-table attribute bits the kernel sets that must never reach an address: AF (10), nG (11),
    /// AttrIndx (4:2), AP (7:6), DBM (51), contiguous (52), PXN/UXN (53/54), software bits (55–58), PBHA
    /// (59–62). SH (9:8) is added only where those bits are not address bits.
    const ATTRS: u64 = (1 << 10)
        | (1 << 11)
        | (0b101 << 2)
        | (0b01 << 6)
        | (1 << 51)
        | (1 << 52)
        | (1 << 53)
        | (1 << 54)
        | (1 << 55)
        | (1 << 58)
        | (0b1010 << 59);
    const SH_INNER: u64 = 0b11 << 8;
    /// Table descriptor attributes: NSTable, APTable, UXNTable, PXNTable (63..59).
    const TABLE_ATTRS: u64 = 0b10111 << 59;
    /// KERNELPACMASK of a real 48-bit boot (Debian 6.1 under QEMU -cpu max): GENMASK(63, 48).
    const PAC_48: u64 = 0xffff_0000_0000_0000;

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

    fn ram_byte(paddr: u64) -> u8 {
        (paddr.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    }

    /// One configuration: granule bytes, built VA_BITS, run-time bits (64 − T1SZ).
    #[derive(Clone, Copy, Debug)]
    struct Cfg {
        page: u64,
        built: u32,
        run: u32,
    }

    impl Cfg {
        fn g(&self) -> u32 {
            self.page.trailing_zeros()
        }
        /// The level count as the table gives it, written out rather than computed.
        fn levels(&self) -> usize {
            let bits = if self.page == 65536 {
                self.built
            } else {
                self.run
            };
            match (self.page >> 10, bits) {
                (4, 39) => 3,
                (4, 48) => 4,
                (4, 52) => 5,
                (16, 36) => 2,
                (16, 47) => 3,
                (16, 48) => 4,
                (16, 52) => 4,
                (64, 42) => 2,
                (64, 48) => 3,
                (64, 52) => 3,
                other => panic!("no such configuration {other:?}"),
            }
        }
        fn lpa2(&self) -> bool {
            self.page != 65536 && self.run == 52
        }
        /// Whether physical addresses reach 52 bits (64K always can; 4K/16K with LPA2).
        fn pa52(&self) -> bool {
            self.page == 65536 || self.lpa2()
        }
        /// Block sizes (address shifts) the architecture allows, written out per granule.
        fn block_shifts(&self) -> Vec<u32> {
            let all: &[u32] = match (self.page >> 10, self.lpa2()) {
                (4, false) => &[21, 30],
                (4, true) => &[21, 30, 39],
                (16, false) => &[25],
                (16, true) => &[25, 36],
                _ => &[29, 42],
            };
            let shifts = self.shifts();
            all.iter()
                .copied()
                .filter(|s| shifts[..shifts.len() - 1].contains(s))
                .collect()
        }
        fn shifts(&self) -> Vec<u32> {
            let g = self.g();
            let n = self.levels();
            (0..n).map(|i| g + (g - 3) * (n - 1 - i) as u32).collect()
        }
        fn names(&self) -> &'static [&'static str] {
            match self.levels() {
                5 => &[
                    "level -1 (pgd)",
                    "level 0 (p4d)",
                    "level 1 (pud)",
                    "level 2 (pmd)",
                    "level 3 (pte)",
                ],
                4 => &[
                    "level 0 (pgd)",
                    "level 1 (pud)",
                    "level 2 (pmd)",
                    "level 3 (pte)",
                ],
                3 => &["level 1 (pgd)", "level 2 (pmd)", "level 3 (pte)"],
                _ => &["level 2 (pgd)", "level 3 (pte)"],
            }
        }
        /// The lowest kernel address: 2^64 − 2^run.
        fn base(&self) -> u64 {
            0u64.wrapping_sub(1u64 << self.run)
        }
        fn table_area(&self) -> u64 {
            if self.pa52() {
                0x000e_0000_0000_0000
            } else {
                0x9_0000_0000
            }
        }
        /// The descriptor's output-address bits for `pa`, as the architecture places them.
        fn encode(&self, pa: u64) -> u64 {
            assert!(pa < 1 << 52 && pa.is_multiple_of(self.page));
            if self.page == 65536 {
                (pa & 0x0000_ffff_ffff_0000) | ((pa >> 48) << 12)
            } else if self.lpa2() {
                (pa & 0x0003_ffff_ffff_f000) | ((pa >> 50) << 8)
            } else {
                assert!(pa < 1 << 48, "{pa:#x} needs 52-bit PA");
                pa
            }
        }
        fn leaf_attrs(&self) -> u64 {
            if self.lpa2() { ATTRS } else { ATTRS | SH_INNER }
        }
        fn mmu(&self, top: u64, pac: Option<u64>) -> Aarch64 {
            Aarch64::new(Config {
                page_size: self.page,
                va_bits: self.built,
                t1sz: Some(64 - self.run),
                top_table: top,
                kimage_voffset: 0,
                phys_offset: Some(0x4000_0000),
                pac_mask: pac,
            })
            .unwrap()
        }
    }

    const CFGS: [Cfg; 13] = [
        Cfg {
            page: 4096,
            built: 39,
            run: 39,
        },
        Cfg {
            page: 4096,
            built: 48,
            run: 48,
        },
        Cfg {
            page: 4096,
            built: 52,
            run: 52,
        },
        Cfg {
            page: 4096,
            built: 52,
            run: 48,
        },
        Cfg {
            page: 16384,
            built: 36,
            run: 36,
        },
        Cfg {
            page: 16384,
            built: 47,
            run: 47,
        },
        Cfg {
            page: 16384,
            built: 48,
            run: 48,
        },
        Cfg {
            page: 16384,
            built: 52,
            run: 52,
        },
        Cfg {
            page: 16384,
            built: 52,
            run: 47,
        },
        Cfg {
            page: 65536,
            built: 42,
            run: 42,
        },
        Cfg {
            page: 65536,
            built: 48,
            run: 48,
        },
        Cfg {
            page: 65536,
            built: 52,
            run: 52,
        },
        Cfg {
            page: 65536,
            built: 52,
            run: 48,
        },
    ];

    /// Physical memory: table pages by granule-aligned base, RAM ranges of `ram_byte`, nothing else.
    struct TestPhys {
        page: u64,
        tables: HashMap<u64, Vec<u8>>,
        ram: Vec<Range<u64>>,
        reads: AtomicUsize,
    }

    impl PhysMemory for TestPhys {
        fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            for (i, b) in buf.iter_mut().enumerate() {
                let p = paddr + i as u64;
                let base = p & !(self.page - 1);
                if let Some(t) = self.tables.get(&base) {
                    *b = t[(p - base) as usize];
                } else if self.ram.iter().any(|r| r.contains(&p)) {
                    *b = ram_byte(p);
                } else {
                    return Err(ReadError::NotInDump { paddr: p });
                }
            }
            Ok(())
        }
    }

    impl TestPhys {
        fn reads_during<T>(&self, f: impl FnOnce() -> T) -> (T, usize) {
            let before = self.reads.load(Ordering::Relaxed);
            let out = f();
            (out, self.reads.load(Ordering::Relaxed) - before)
        }
    }

    /// Writes the hardware's view of the tables and records what it mapped.
    struct Builder {
        cfg: Cfg,
        /// swapper_pg_dir: what the kernel (and VMCOREINFO) name.
        swapper: u64,
        tables: HashMap<u64, Vec<u8>>,
        /// (level, va >> shift) → the table the entry points to.
        children: HashMap<(usize, u64), u64>,
        /// (level, va >> shift) → the physical base of the page or block.
        leaves: HashMap<(usize, u64), u64>,
        next: u64,
    }

    impl Builder {
        fn new(cfg: Cfg) -> Builder {
            let swapper = cfg.table_area();
            let mut tables = HashMap::new();
            tables.insert(swapper, vec![0u8; cfg.page as usize]);
            Builder {
                cfg,
                swapper,
                tables,
                children: HashMap::new(),
                leaves: HashMap::new(),
                next: swapper + cfg.page,
            }
        }

        /// Where the hardware reads the level-`i` entry for `va` in `table`: TTBR1 = swapper_pg_dir plus,
        /// for a 64K kernel built for 52 bits running with 48, the offset of the last 2^(48 − shift)
        /// entries; the top index has the run-time width.
        fn slot(&self, i: usize, table: u64, va: u64) -> u64 {
            let shift = self.cfg.shifts()[i];
            if i == 0 {
                let width = self.cfg.run - shift;
                let mut ttbr = table;
                if self.cfg.page == 65536 && self.cfg.built == 52 && self.cfg.run == 48 {
                    ttbr += ((1u64 << (52 - shift)) - (1u64 << (48 - shift))) * 8;
                }
                ttbr + ((va >> shift) & ((1 << width) - 1)) * 8
            } else {
                table + ((va >> shift) & ((1 << (self.cfg.g() - 3)) - 1)) * 8
            }
        }

        fn write(&mut self, at: u64, value: u64) {
            let base = at & !(self.cfg.page - 1);
            let t = self.tables.get_mut(&base).expect("a table page");
            let o = (at - base) as usize;
            assert_eq!(&t[o..o + 8], &[0u8; 8], "slot {at:#x} written twice");
            t[o..o + 8].copy_from_slice(&value.to_le_bytes());
        }

        fn map(&mut self, va: u64, pa: u64, shift: u32) {
            let shifts = self.cfg.shifts();
            let last = shifts.len() - 1;
            let mut table = self.swapper;
            for (i, &s) in shifts.iter().enumerate() {
                let at = self.slot(i, table, va);
                if s == shift {
                    let kind = if i == last { 0b11 } else { 0b01 };
                    let desc = self.cfg.encode(pa) | self.cfg.leaf_attrs() | kind;
                    self.write(at, desc);
                    self.leaves.insert((i, va >> s), pa);
                    return;
                }
                assert!(
                    !self.leaves.contains_key(&(i, va >> s)),
                    "{va:#x} under a block"
                );
                table = match self.children.get(&(i, va >> s)) {
                    Some(&c) => c,
                    None => {
                        let c = self.next;
                        self.next += self.cfg.page;
                        self.tables.insert(c, vec![0u8; self.cfg.page as usize]);
                        self.write(at, self.cfg.encode(c) | TABLE_ATTRS | 0b11);
                        self.children.insert((i, va >> s), c);
                        c
                    }
                };
            }
            panic!("shift {shift} is no level of {:?}", self.cfg);
        }

        /// Every empty slot gets random bits with bit 0 clear: invalid, never followed.
        fn fill_junk(&mut self, rng: &mut Rng) {
            for t in self.tables.values_mut() {
                for slot in t.chunks_mut(8) {
                    if slot == [0u8; 8] {
                        slot.copy_from_slice(&(rng.next() & !VALID).to_le_bytes());
                    }
                }
            }
        }

        /// The oracle: from the record alone.
        fn oracle(&self, va: u64) -> Result<(u64, u32), String> {
            if va < self.cfg.base() {
                return Err("NonCanonical".into());
            }
            for (i, &s) in self.cfg.shifts().iter().enumerate() {
                if let Some(&pa) = self.leaves.get(&(i, va >> s)) {
                    return Ok((pa + (va & ((1u64 << s) - 1)), s));
                }
                if !self.children.contains_key(&(i, va >> s)) {
                    return Err(format!("NotPresent {}", self.cfg.names()[i]));
                }
            }
            unreachable!()
        }
    }

    fn outcome(r: &Result<Mapping, ReadError>) -> Result<(u64, u32), String> {
        match r {
            Ok(Mapping {
                paddr,
                kind: PageKind::Page { shift },
                ..
            }) => Ok((*paddr, *shift)),
            Ok(m) => Err(format!("unexpected kind {m:?}")),
            Err(ReadError::NonCanonical { .. }) => Err("NonCanonical".into()),
            Err(ReadError::NotPresent { level, .. }) => Err(format!("NotPresent {level}")),
            Err(e) => Err(format!("{e}")),
        }
    }

    /// Mappings for a configuration: blocks of every allowed size, scattered pages with holes, the first
    /// and last page of the range, and (where the PA can have 52 bits) memory above 2^48.
    fn build(cfg: Cfg, junk: bool) -> (Builder, Vec<Range<u64>>) {
        let mut b = Builder::new(cfg);
        let g = cfg.g();
        let page = cfg.page;
        let mut ram = Vec::new();
        let mut cursor = cfg.base();
        let high = if cfg.pa52() { 0x0008_0000_0000_0000 } else { 0 };
        let mut pa_cursor = 0x4000_0000u64 | high;
        let mut place = |b: &mut Builder, ram: &mut Vec<Range<u64>>, shift: u32| {
            let size = 1u64 << shift;
            cursor = cursor.div_ceil(size) * size;
            pa_cursor = pa_cursor.div_ceil(size) * size;
            b.map(cursor, pa_cursor, shift);
            ram.push(pa_cursor..pa_cursor + size);
            cursor += size;
            pa_cursor += size;
        };
        // The first page of the range, then two blocks of each size (physically adjacent, so a wrong
        // block base shows), then pages.
        place(&mut b, &mut ram, g);
        for s in cfg.block_shifts() {
            place(&mut b, &mut ram, s);
            place(&mut b, &mut ram, s);
        }
        // 300 pages over a few last-level tables, every 7th missing, physically shuffled.
        let region = 1u64 << (2 * g - 3);
        let start = (cursor.div_ceil(region) + 1) * region;
        let pages_pa = 0x2_0000_0000u64 | high;
        for k in 0..300u64 {
            if k % 7 != 3 {
                let pa = pages_pa + ((k * 37) % 512) * page;
                b.map(start + k * page * 3, pa, g);
                ram.push(pa..pa + page);
            }
        }
        // The last page of the address space, and one with the highest physical address bits set.
        let top_pa = if cfg.pa52() {
            0x000f_ff00_0000_0000
        } else {
            0x0000_ff00_0000_0000
        };
        b.map(0u64.wrapping_sub(page), top_pa, g);
        ram.push(top_pa..top_pa + page);
        if junk {
            b.fill_junk(&mut Rng(cfg.page ^ cfg.run as u64));
        }
        (b, ram)
    }

    fn phys(b: &Builder, ram: Vec<Range<u64>>) -> TestPhys {
        TestPhys {
            page: b.cfg.page,
            tables: b.tables.clone(),
            ram,
            reads: AtomicUsize::new(0),
        }
    }

    /// Addresses to try: both ends of every mapping and of its neighbours, random ones inside, random
    /// ones anywhere in the range, below it, and user addresses.
    fn sample(b: &Builder, rng: &mut Rng) -> Vec<u64> {
        let mut v = Vec::new();
        let shifts = b.cfg.shifts();
        for (&(i, tag), _) in b.leaves.iter() {
            let size = 1u64 << shifts[i];
            let va = tag << shifts[i];
            for a in [
                va,
                va + (size - 1),
                va.wrapping_sub(1),
                va.wrapping_add(size),
            ] {
                v.push(a);
            }
            for _ in 0..4 {
                v.push(va + rng.below(size));
            }
        }
        for _ in 0..500 {
            v.push(b.cfg.base() + rng.below(1u64 << b.cfg.run));
            v.push(rng.next());
        }
        v.extend([
            0,
            b.cfg.base() - 1,
            b.cfg.base(),
            u64::MAX,
            0x0000_ffff_ffff_f000,
        ]);
        v
    }

    #[test]
    fn level_counts_follow_granule_and_bits() {
        for cfg in CFGS {
            let m = cfg.mmu(cfg.table_area(), None);
            assert_eq!(m.levels() as usize, cfg.levels(), "{cfg:?}");
            assert_eq!(m.va_bits(), cfg.run, "{cfg:?}");
        }
        assert_eq!(levels_for(12, 48), Some(4));
        assert_eq!(levels_for(16, 42), Some(2));
        assert_eq!(levels_for(3, 48), None);
    }

    /// Every granule and level count: each sampled address translates as the oracle says, from a cold
    /// cache and from a warm one, with at most one table read per level.
    #[test]
    fn walk_agrees_with_independent_oracle() {
        for cfg in CFGS {
            let (b, ram) = build(cfg, true);
            let p = phys(&b, ram);
            let mmu = cfg.mmu(b.swapper, None);
            let addrs = sample(&b, &mut Rng(0x5eed ^ cfg.page ^ u64::from(cfg.run)));
            let mut seen = BTreeSet::new();
            for pass in 0..2 {
                for &va in &addrs {
                    let (got, reads) = p.reads_during(|| mmu.lookup(&p, va));
                    assert!(reads <= cfg.levels(), "{cfg:?} {va:#x}: {reads} reads");
                    let want = b.oracle(va);
                    assert_eq!(outcome(&got), want, "{cfg:?} va {va:#x} pass {pass}");
                    if let Ok(m) = &got {
                        let size = 1u64 << want.as_ref().unwrap().1;
                        assert_eq!(m.len, size - (va & (size - 1)), "{cfg:?} {va:#x}");
                    }
                    seen.insert(match want {
                        Ok((_, s)) => format!("leaf {s}"),
                        Err(e) => e,
                    });
                }
            }
            // Every leaf size and every level's not-present fault was met.
            let mut want: BTreeSet<String> = cfg
                .block_shifts()
                .iter()
                .chain([cfg.g()].iter())
                .map(|s| format!("leaf {s}"))
                .collect();
            want.insert("NonCanonical".into());
            for (i, name) in cfg.names().iter().enumerate() {
                // 16K with 48 bits: a two-entry top table, both in use (low half and last page).
                if i > 0 || cfg.run - cfg.shifts()[0] > 1 {
                    want.insert(format!("NotPresent {name}"));
                }
            }
            assert_eq!(seen, want, "{cfg:?}: every outcome is exercised");
            let stats = mmu.cache_stats();
            assert!(stats.hits > 0 && stats.misses > 0, "{cfg:?} {stats:?}");
        }
    }

    /// Blocks at each level the granule allows, and the 52-bit PA placements (64K: bits 15:12; LPA2:
    /// bits 9:8) give addresses above 2^48.
    #[test]
    fn blocks_and_52_bit_physical_addresses() {
        let mut block_levels = BTreeSet::new();
        for cfg in CFGS {
            let (b, ram) = build(cfg, false);
            let p = phys(&b, ram);
            let mmu = cfg.mmu(b.swapper, None);
            for (&(i, tag), &pa) in &b.leaves {
                let s = cfg.shifts()[i];
                let va = tag << s;
                let m = mmu.lookup(&p, va + 8).unwrap();
                assert_eq!(
                    (m.paddr, m.kind),
                    (pa + 8, PageKind::Page { shift: s }),
                    "{cfg:?}"
                );
                if s != cfg.g() {
                    block_levels.insert((cfg.page >> 10, cfg.lpa2(), s));
                }
                if cfg.pa52() {
                    assert!(pa >= 1 << 48, "{cfg:?}: {pa:#x} tests the high bits");
                }
            }
            // The last page of the space sits at the top physical page the configuration can express.
            let m = mmu.lookup(&p, u64::MAX).unwrap();
            let want = if cfg.pa52() {
                0x000f_ff00_0000_0000
            } else {
                0x0000_ff00_0000_0000
            };
            assert_eq!(m.paddr, want + cfg.page - 1, "{cfg:?}");
            // Tables above 2^48 were followed (their descriptors carry the high bits too).
            if cfg.pa52() {
                assert!(b.swapper >= 1 << 48);
            }
        }
        let want: BTreeSet<(u64, bool, u32)> = [
            (4, false, 21),
            (4, false, 30),
            (4, true, 21),
            (4, true, 30),
            (4, true, 39),
            (16, false, 25),
            (16, true, 25),
            (16, true, 36),
            (64, false, 29),
            (64, false, 42),
        ]
        .into_iter()
        .collect();
        assert_eq!(block_levels, want);
    }

    /// Without LPA2, bits 9:8 are the shareability field (set on every kernel mapping), not address bits;
    /// with 64K pages bits 15:12 are address bits whatever the VA size.
    #[test]
    fn shareability_bits_are_no_address_without_lpa2() {
        let cfg = CFGS[1]; // 4K, 48 bits
        let mmu = cfg.mmu(cfg.table_area(), None);
        let desc = 0x0000_1234_5678_9000 | SH_INNER | ATTRS | 0b11;
        assert_eq!(mmu.output_address(desc), 0x0000_1234_5678_9000);
        let lpa2 = CFGS[2].mmu(CFGS[2].table_area(), None);
        assert_eq!(lpa2.output_address(desc), 0x000c_1234_5678_9000);
        let k64 = CFGS[10].mmu(CFGS[10].table_area(), None);
        assert_eq!(
            k64.output_address(0x0000_1234_5678_0000 | (0xa << 12) | 0b11),
            0x000a_1234_5678_0000
        );
    }

    /// A fault at each level names it, after reading exactly the entries above it.
    #[test]
    fn not_present_at_each_level_names_it() {
        for cfg in CFGS {
            let n = cfg.levels();
            let shifts = cfg.shifts();
            for stop in 0..n {
                let mut b = Builder::new(cfg);
                // One page mapped, then ask for its neighbour under the table of level `stop`.
                let va = cfg.base() + (1u64 << shifts[0]).min(1u64 << (cfg.run - 1));
                b.map(va, 0x4000_0000, cfg.g());
                let other = if stop == 0 {
                    va + (1u64 << shifts[0]).min(1u64 << (cfg.run - 2))
                } else {
                    va ^ (1u64 << shifts[stop])
                };
                if stop == 0 && (other >> shifts[0]) == (va >> shifts[0]) {
                    continue; // a one-entry top table leaves no empty neighbour
                }
                let p = phys(
                    &b,
                    std::iter::once(0x4000_0000..0x4000_0000 + cfg.page).collect(),
                );
                let mmu = cfg.mmu(b.swapper, None);
                let (got, reads) = p.reads_during(|| mmu.lookup(&p, other));
                assert_eq!(
                    got,
                    Err(ReadError::NotPresent {
                        addr: other,
                        level: cfg.names()[stop]
                    }),
                    "{cfg:?} stop {stop}"
                );
                assert_eq!(reads, stop + 1, "{cfg:?} stop {stop}");
            }
        }
    }

    /// Addresses outside TTBR1's range are refused before any read: user addresses, the gap below the
    /// kernel's range, and for a 52-bit build running with 48 bits the part only 52 bits reach.
    #[test]
    fn addresses_outside_ttbr1_are_refused_without_reading() {
        for cfg in CFGS {
            let (b, ram) = build(cfg, false);
            let p = phys(&b, ram);
            let mmu = cfg.mmu(b.swapper, None);
            let mut outside = vec![
                0,
                0x0000_ffff_ffff_f000,
                0x7fff_ffff_ffff_ffff,
                cfg.base() - 1,
            ];
            if cfg.built > cfg.run {
                outside.push(0u64.wrapping_sub(1u64 << cfg.built));
            }
            for va in outside {
                let (got, reads) = p.reads_during(|| mmu.lookup(&p, va));
                assert_eq!(got, Err(ReadError::NonCanonical { addr: va }), "{cfg:?}");
                assert_eq!(reads, 0, "{cfg:?} {va:#x}");
            }
        }
    }

    /// Reserved encodings: the block encoding at the last level, and a block where the granule allows
    /// none (4K level 0 without LPA2, 16K level 1 without LPA2).
    #[test]
    fn reserved_encodings_are_corrupt() {
        for (cfg, level) in [(CFGS[1], 0usize), (CFGS[6], 1), (CFGS[6], 3), (CFGS[10], 2)] {
            let mut b = Builder::new(cfg);
            let va = cfg.base();
            let shifts = cfg.shifts();
            // Tables down to `level`, then a block-encoded descriptor there.
            let mut table = b.swapper;
            for i in 0..level {
                let c = b.next;
                b.next += cfg.page;
                b.tables.insert(c, vec![0u8; cfg.page as usize]);
                let at = b.slot(i, table, va);
                b.write(at, cfg.encode(c) | 0b11);
                table = c;
            }
            let at = b.slot(level, table, va);
            let size = 1u64 << shifts[level];
            let pa = size.max(1 << 30);
            b.write(at, cfg.encode(pa) | 0b01 | (1 << 10));
            let p = phys(&b, vec![]);
            let mmu = cfg.mmu(b.swapper, None);
            let got = mmu.lookup(&p, va);
            assert!(
                matches!(&got, Err(ReadError::Corrupt { paddr, .. }) if *paddr == at),
                "{cfg:?} level {level}: {got:?}"
            );
        }
    }

    /// A table entry that points back at its own table cannot make the walk loop.
    #[test]
    fn page_table_cycle_cannot_loop() {
        for cfg in CFGS {
            let mut b = Builder::new(cfg);
            let va = cfg.base();
            let at = b.slot(0, b.swapper, va);
            let swapper = b.swapper;
            b.write(at, cfg.encode(swapper) | 0b11);
            let p = phys(&b, vec![]);
            let mmu = cfg.mmu(b.swapper, None);
            let (got, reads) = p.reads_during(|| mmu.lookup(&p, va));
            assert!(got.is_err() || cfg.levels() >= 2, "{cfg:?}");
            assert!(reads <= cfg.levels(), "{cfg:?}: {reads}");
        }
    }

    /// With KERNELPACMASK, a signed kernel pointer translates as the plain one; without, it is outside the
    /// range.
    #[test]
    fn pointer_authentication_code_is_stripped() {
        let cfg = CFGS[1];
        let (b, ram) = build(cfg, false);
        let p = phys(&b, ram);
        let (&(i, tag), &pa) = b.leaves.iter().find(|(k, _)| k.0 == 3).unwrap();
        let va = (tag << cfg.shifts()[i]) + 0x10;
        let signed = (va & !PAC_48) | (1 << 55) | 0x0035_0000_0000_0000 | (0xa5 << 56);
        let plain = cfg.mmu(b.swapper, Some(0));
        assert_eq!(
            plain.lookup(&p, signed),
            Err(ReadError::NonCanonical { addr: signed })
        );
        let pac = cfg.mmu(b.swapper, Some(PAC_48));
        assert_eq!(pac.translate(&p, signed), Ok(pa + 0x10));
        assert_eq!(pac.translate(&p, va), Ok(pa + 0x10));
        // A user address stays a user address: bit 55 clear is never "stripped" into the kernel range.
        assert!(pac.lookup(&p, va & !(1 << 55)).is_err());
    }

    #[test]
    fn second_translation_of_a_page_reads_no_table() {
        let cfg = CFGS[6];
        let (b, ram) = build(cfg, false);
        let p = phys(&b, ram);
        let mmu = cfg.mmu(b.swapper, None);
        let (&(i, tag), _) = b
            .leaves
            .iter()
            .find(|(k, _)| k.0 == cfg.levels() - 1)
            .unwrap();
        let va = tag << cfg.shifts()[i];
        let (_, first) = p.reads_during(|| mmu.lookup(&p, va).unwrap());
        let (_, second) = p.reads_during(|| mmu.lookup(&p, va + 100).unwrap());
        assert_eq!((first, second), (cfg.levels(), 0));
        let (used, slots) = mmu.cache_occupancy();
        assert!(used > 0 && used <= slots);
    }

    /// A read through [`Translated`] joins 16K pages from their own physical places.
    #[test]
    fn translated_read_joins_pages() {
        let cfg = CFGS[6];
        let mut b = Builder::new(cfg);
        let va = cfg.base() + (1 << 30);
        let pas = [0x4000_0000u64 + 5 * cfg.page, 0x4000_0000 + 2 * cfg.page];
        b.map(va, pas[0], cfg.g());
        b.map(va + cfg.page, pas[1], cfg.g());
        let ram = pas.iter().map(|&p| p..p + cfg.page).collect();
        let p = phys(&b, ram);
        let mem = Translated::new(p, cfg.mmu(b.swapper, None));
        let mut buf = vec![0u8; 64];
        mem.read(va + cfg.page - 32, &mut buf).unwrap();
        let want: Vec<u8> = (0..64u64)
            .map(|k| {
                if k < 32 {
                    ram_byte(pas[0] + cfg.page - 32 + k)
                } else {
                    ram_byte(pas[1] + k - 32)
                }
            })
            .collect();
        assert_eq!(buf, want);
        assert_eq!(
            mem.read(va + 2 * cfg.page - 8, &mut buf),
            Err(ReadError::NotPresent {
                addr: va + 2 * cfg.page,
                level: "level 3 (pte)"
            })
        );
    }

    /// A Debian 6.1 arm64 note's keys (values of a real boot's shape).
    const NOTE_6_1: &str = "OSRELEASE=6.1.0-41-arm64\nPAGESIZE=4096\n\
        SYMBOL(swapper_pg_dir)=ffff80000a6b0000\nSYMBOL(init_uts_ns)=ffff80000a4c1d88\n\
        NUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0xffff7fffc8000000\n\
        NUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(TCR_EL1_T1SZ)=0x10\n\
        NUMBER(KERNELPACMASK)=0xffff000000000000\nKERNELOFFSET=2000000\n";

    #[test]
    fn from_vmcoreinfo_reads_the_arm64_keys() {
        let info = VmcoreInfo::parse(NOTE_6_1);
        let m = Aarch64::from_vmcoreinfo(&info).unwrap();
        assert_eq!(m.levels(), 4);
        assert_eq!(m.va_bits(), 48);
        assert_eq!(m.page_size(), 4096);
        assert_eq!(m.top_table(), 0xffff_8000_0a6b_0000 - 0xffff_7fff_c800_0000);
        assert_eq!(m.pac_mask, PAC_48);
        // The architecture comes from the keys when the file names none.
        let a = crate::arch::from_vmcoreinfo(&info, None).unwrap();
        assert_eq!(a.machine(), Machine::Aarch64);
        let facts: HashMap<_, _> = a.facts().into_iter().collect();
        assert_eq!(facts["paging_levels"], 4);
        assert_eq!(facts["page_size"], 4096);
        assert_eq!(facts["phys_offset"], "0x40000000");
    }

    #[test]
    fn from_vmcoreinfo_refuses_what_it_cannot_use() {
        let without = |key: &str| {
            let text: String = NOTE_6_1
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            Aarch64::from_vmcoreinfo(&VmcoreInfo::parse(&text)).unwrap_err()
        };
        assert_eq!(
            without("SYMBOL(swapper_pg_dir)"),
            ConfigError::MissingFor("aarch64", "SYMBOL(swapper_pg_dir)")
        );
        assert_eq!(
            without("NUMBER(kimage_voffset)"),
            ConfigError::MissingFor("aarch64", "NUMBER(kimage_voffset)")
        );
        assert_eq!(
            without("PAGESIZE"),
            ConfigError::MissingFor("aarch64", "PAGESIZE")
        );
        let with = |old: &str, new: &str| {
            Aarch64::from_vmcoreinfo(&VmcoreInfo::parse(&NOTE_6_1.replace(old, new)))
        };
        assert!(matches!(
            with("PAGESIZE=4096", "PAGESIZE=8192"),
            Err(ConfigError::BadValue {
                key: "PAGESIZE",
                ..
            })
        ));
        assert!(matches!(
            with("VA_BITS)=48", "VA_BITS)=47"),
            Err(ConfigError::BadValue {
                key: "NUMBER(VA_BITS)",
                ..
            })
        ));
        // 64 − 0xc = 52 bits at run time from a 48-bit build: impossible.
        assert!(matches!(
            with("T1SZ)=0x10", "T1SZ)=0xc"),
            Err(ConfigError::BadValue {
                key: "NUMBER(TCR_EL1_T1SZ)",
                ..
            })
        ));
        assert!(matches!(
            with(
                "KERNELPACMASK)=0xffff000000000000",
                "KERNELPACMASK)=0xffff800000000000"
            ),
            Err(ConfigError::BadValue {
                key: "NUMBER(KERNELPACMASK)",
                ..
            })
        ));
        assert!(matches!(
            with(
                "swapper_pg_dir)=ffff80000a6b0000",
                "swapper_pg_dir)=ffff80000a6b0800"
            ),
            Err(ConfigError::TopTable(_))
        ));
        assert!(matches!(
            with(
                "swapper_pg_dir)=ffff80000a6b0000",
                "swapper_pg_dir)=000000000a6b0000"
            ),
            Err(ConfigError::TopTableOutsideImage { .. })
        ));
        // No T1SZ (kernels before 5.9): VA_BITS alone.
        let m = Aarch64::from_vmcoreinfo(&VmcoreInfo::parse(
            &NOTE_6_1.replace("NUMBER(TCR_EL1_T1SZ)=0x10\n", ""),
        ))
        .unwrap();
        assert_eq!(m.va_bits(), 48);
    }

    /// verify(): the tables must put an image address where kimage_voffset does.
    #[test]
    fn verify_checks_the_tables_against_kimage_voffset() {
        let cfg = CFGS[1];
        let mut b = Builder::new(cfg);
        let image_va = 0xffff_8000_0800_0000u64;
        let image_pa = 0x4020_0000u64;
        b.map(image_va, image_pa, 21);
        let p = phys(
            &b,
            std::iter::once(image_pa..image_pa + (1 << 21)).collect(),
        );
        let mk = |voffset: u64| {
            Aarch64::new(Config {
                page_size: 4096,
                va_bits: 48,
                t1sz: Some(16),
                top_table: b.swapper,
                kimage_voffset: voffset,
                phys_offset: None,
                pac_mask: None,
            })
            .unwrap()
        };
        let good = mk(image_va - image_pa);
        assert_eq!(good.verify(&p, image_va + 0x1234), Ok(()));
        let bad = mk(image_va - image_pa - 0x20_0000);
        assert!(
            bad.verify(&p, image_va + 0x1234)
                .unwrap_err()
                .contains("kimage_voffset")
        );
        assert!(good.verify(&p, image_va + (1 << 21)).is_err());
    }
}
