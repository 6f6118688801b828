//! The translation cache every architecture shares, like a TLB plus the CPU's paging-structure caches: the
//! last-level result per virtual page of each leaf size, and the physical address of the table below each
//! region of the levels where a walk may start early.
//!
//! Dumps and snapshots do not change, so translations are cached. Each cache is direct-mapped (fixed slots,
//! a new entry replaces the one in its slot), so its memory is fixed whatever is read. Do not share one cache
//! between different dumps.

use std::cell::Cell;

use super::{Mapping, PageKind};
use crate::memory::ReadError;

/// One cache slot: a tag (virtual page or region number) and a value (physical frame or table address).
#[derive(Clone, Copy)]
struct Slot {
    tag: u64,
    value: u64,
}

/// Tags are virtual addresses shifted right by at least 12 bits, so they never reach `u64::MAX`.
const EMPTY: Slot = Slot {
    tag: u64::MAX,
    value: 0,
};

/// A direct-mapped cache of `2^bits` slots.
struct DirectMapped {
    slots: Box<[Cell<Slot>]>,
    bits: u32,
}

impl DirectMapped {
    fn new(bits: u32) -> DirectMapped {
        let bits = bits.clamp(1, 20);
        DirectMapped {
            slots: (0..1usize << bits).map(|_| Cell::new(EMPTY)).collect(),
            bits,
        }
    }

    fn slot(&self, tag: u64) -> Option<&Cell<Slot>> {
        // Fibonacci hashing: the top `bits` bits of tag × 2^64/φ spread neighbouring pages over the slots.
        let index = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits);
        self.slots.get(usize::try_from(index).ok()?)
    }

    fn get(&self, tag: u64) -> Option<u64> {
        let slot = self.slot(tag)?.get();
        (slot.tag == tag).then_some(slot.value)
    }

    fn put(&self, tag: u64, value: u64) {
        if let Some(cell) = self.slot(tag) {
            cell.set(Slot { tag, value });
        }
    }

    fn clear(&self) {
        for cell in self.slots.iter() {
            cell.set(EMPTY);
        }
    }

    fn occupied(&self) -> usize {
        self.slots
            .iter()
            .filter(|c| c.get().tag != EMPTY.tag)
            .count()
    }
}

/// Cache counters. Translations that need no table (a kernel image rule) count neither as hit nor as miss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Translations served from the last-level cache.
    pub hits: u64,
    /// Translations that needed a walk (whether it then succeeded or faulted).
    pub misses: u64,
    /// Page-table entries read.
    pub table_reads: u64,
}

/// The caches of one address space, and their counters.
pub struct TranslationCache {
    /// Per leaf page size (`1 << shift` bytes): virtual page number → physical frame number.
    leaves: Vec<(u32, DirectMapped)>,
    /// Per region size (`1 << shift` bytes): region number → physical address of the table that maps it.
    tables: Vec<(u32, DirectMapped)>,
    hits: Cell<u64>,
    misses: Cell<u64>,
    table_reads: Cell<u64>,
}

impl TranslationCache {
    /// `leaves`: (page shift, slot bits) per leaf page size; `tables`: (region shift, slot bits) per level
    /// whose table address is remembered. Memory is fixed: 16 bytes per slot.
    pub fn new(leaves: &[(u32, u32)], tables: &[(u32, u32)]) -> TranslationCache {
        let build = |spec: &[(u32, u32)]| {
            spec.iter()
                .map(|&(shift, bits)| (shift, DirectMapped::new(bits)))
                .collect()
        };
        TranslationCache {
            leaves: build(leaves),
            tables: build(tables),
            hits: Cell::new(0),
            misses: Cell::new(0),
            table_reads: Cell::new(0),
        }
    }

    /// A cached leaf translation of `vaddr`, counted as a hit.
    pub fn lookup(&self, vaddr: u64) -> Option<Mapping> {
        let m = self.leaves.iter().find_map(|(shift, cache)| {
            let frame = cache.get(vaddr >> shift)?;
            Some(Mapping::in_page(frame << shift, vaddr, *shift))
        })?;
        bump(&self.hits);
        Some(m)
    }

    /// Remembers a leaf translation (of a page size this cache holds).
    pub fn insert(&self, vaddr: u64, m: &Mapping) {
        if let PageKind::Page { shift } = m.kind
            && let Some((_, cache)) = self.leaves.iter().find(|(s, _)| *s == shift)
        {
            cache.put(vaddr >> shift, m.paddr >> shift);
        }
    }

    /// The remembered table below the `1 << shift`-byte region of `vaddr`.
    pub fn table(&self, shift: u32, vaddr: u64) -> Option<u64> {
        let (_, cache) = self.tables.iter().find(|(s, _)| *s == shift)?;
        cache.get(vaddr >> shift)
    }

    /// Remembers the table below the `1 << shift`-byte region of `vaddr` (a no-op for other shifts).
    pub fn put_table(&self, shift: u32, vaddr: u64, table: u64) {
        if let Some((_, cache)) = self.tables.iter().find(|(s, _)| *s == shift) {
            cache.put(vaddr >> shift, table);
        }
    }

    /// The cached translation of `vaddr`, or `walk`'s, counted as a miss and remembered when it succeeds:
    /// the one lookup path of every architecture.
    pub fn lookup_or_walk(
        &self,
        vaddr: u64,
        walk: impl FnOnce() -> Result<Mapping, ReadError>,
    ) -> Result<Mapping, ReadError> {
        if let Some(m) = self.lookup(vaddr) {
            return Ok(m);
        }
        self.count_miss();
        let m = walk()?;
        self.insert(vaddr, &m);
        Ok(m)
    }

    /// Counts a walk.
    pub fn count_miss(&self) {
        bump(&self.misses);
    }

    /// Counts a page-table entry read.
    pub fn count_table_read(&self) {
        bump(&self.table_reads);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            table_reads: self.table_reads.get(),
        }
    }

    /// Forgets every cached translation (the counters stay).
    pub fn clear(&self) {
        for (_, c) in self.leaves.iter().chain(self.tables.iter()) {
            c.clear();
        }
    }

    /// Occupied slots, and the fixed number of slots that bounds them.
    pub fn occupancy(&self) -> (usize, usize) {
        let all = || self.leaves.iter().chain(self.tables.iter());
        (
            all().map(|(_, c)| c.occupied()).sum(),
            all().map(|(_, c)| c.slots.len()).sum(),
        )
    }
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get().saturating_add(1));
}
