//! Finding `tcp_hashinfo` without its symbol. Kernels built without CONFIG_KALLSYMS_ALL (Debian's arm64 6.1)
//! list only functions in kallsyms, so no data symbol is known. `tcp_hashinfo` is a global of the kernel
//! image (`.bss`, after the init sections on x86_64 and arm64 alike), and its listening table carries a
//! signature no other object has: with hlist_nulls buckets (5.10+ `listening_hash`, 5.19+ `lhash2`), an
//! empty bucket `i` holds the nulls value `i + LISTENING_NULLS_BASE` (`(value << 1) | 1`), set once by
//! `inet_hashinfo2_init` / `inet_hashinfo_init`.
//!
//! [`scan`] reads the image from `__init_begin` on, in pieces (skipping the init sections where they are
//! unmapped, stopping at the first unreadable piece after data), and takes every 8-byte aligned place whose
//! table fields look right (a `lhash2_mask` of 2^k − 1, a kernel pointer to `lhash2`), then checks the
//! table's first buckets: each must be its own nulls value or a kernel pointer, and at least one must end in
//! its nulls value, directly or (on a host whose table has no empty bucket) at the end of its chain. Exactly one place must pass. Bounded: at most [`MAX_SCAN`] bytes read, at most
//! [`MAX_CHECKED`] candidates checked.

use crate::btf::{LISTENING_NULLS_BASE, Layout, Table};
use crate::memory::Memory;

/// Most bytes of the image read after `__init_begin`.
pub const MAX_SCAN: u64 = 64 << 20;
/// Bytes read at a time.
const CHUNK: u64 = 1 << 20;
/// Candidates whose buckets are read, at most.
const MAX_CHECKED: usize = 4096;
/// Buckets checked per candidate (fewer if the table is smaller).
const BUCKETS: u64 = 64;
/// The kernel's lhash2 holds 2^k buckets, k in 4..=16 here (`alloc_large_system_hash(..., 64 * 1024)`).
const MIN_LHASH2: u64 = 1 << 4;
const MAX_LHASH2: u64 = 1 << 16;
/// Most bytes of buckets read per candidate (64 buckets of the largest bucket any kernel has, 72 bytes with
/// lockdep, with room to spare).
const MAX_BUCKET_BYTES: u64 = 64 << 10;

/// What the scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub addr: u64,
    /// Bytes of the image read.
    pub scanned: u64,
}

/// Looks for `tcp_hashinfo` in `[from, from + MAX_SCAN)`; the scan stops at the first piece that cannot be
/// read (the end of the image). `Err` says why nothing (or more than one place) was found.
pub fn scan(mem: &dyn Memory, layout: &Layout, from: u64) -> Result<Found, String> {
    if !layout.nulls {
        return Err(
            "this kernel's listening buckets have no nulls values to recognize tcp_hashinfo by"
                .into(),
        );
    }
    let size = layout.hashinfo_size;
    if size == 0 || size > CHUNK / 2 {
        return Err(format!("inet_hashinfo of {size} bytes"));
    }
    let step = CHUNK - size.next_multiple_of(8);
    let mut buf = vec![0u8; CHUNK as usize];
    let mut found = Vec::new();
    let mut checked = 0usize;
    let mut budget = STEP_BUDGET;
    let mut scanned = 0u64;
    let mut at = from & !7;
    let mut seen_data = false;
    while scanned < MAX_SCAN {
        if mem.read(at, &mut buf).is_err() {
            // Pieces may be partly unmapped: arm64 unmaps the init sections once booted
            // (free_initmem), and the last piece runs past the image. Read what the pages hold; an
            // unreadable piece after readable ones is past the image's end.
            if read_pages(mem, at, &mut buf) == 0 {
                if seen_data {
                    break;
                }
                scanned += step;
                at = at.wrapping_add(step);
                continue;
            }
        }
        seen_data = true;
        scanned += step;
        let mut off = 0u64;
        while off + size <= CHUNK {
            if let Some(addr) = candidate(mem, layout, &buf, off, at, &mut budget) {
                checked += 1;
                if !found.contains(&addr) {
                    found.push(addr);
                }
            }
            if checked >= MAX_CHECKED {
                break;
            }
            off += 8;
        }
        if checked >= MAX_CHECKED {
            break;
        }
        at = at.wrapping_add(step);
    }
    match found.as_slice() {
        [one] => Ok(Found {
            addr: *one,
            scanned,
        }),
        [] => Err(format!(
            "no inet_hashinfo with a listening table was found in the {scanned} bytes after __init_begin \
             ({from:#x})"
        )),
        many => Err(format!(
            "{} places after __init_begin look like tcp_hashinfo ({})",
            many.len(),
            many.iter()
                .take(4)
                .map(|a| format!("{a:#x}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Fills `buf` from `at` page by page (4 KiB), zeros where a page cannot be read; the pages read.
fn read_pages(mem: &dyn Memory, at: u64, buf: &mut [u8]) -> usize {
    let mut read = 0;
    for (i, page) in buf.chunks_mut(4096).enumerate() {
        if mem.read(at.wrapping_add(i as u64 * 4096), page).is_ok() {
            read += 1;
        } else {
            page.fill(0);
        }
    }
    read
}

fn u64_at(buf: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    buf.get(at..at.checked_add(8)?)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
}

/// A kernel pointer to something 8-byte aligned (the top bit set on x86_64 and arm64 alike).
fn kernel_ptr(v: u64) -> bool {
    v >> 63 == 1 && v & 7 == 0 && v != !7
}

/// The address of a struct at `buf[off..]` (read from `base`) that passes as tcp_hashinfo.
fn candidate(
    mem: &dyn Memory,
    layout: &Layout,
    buf: &[u8],
    off: u64,
    base: u64,
    budget: &mut u32,
) -> Option<u64> {
    let addr = base.wrapping_add(off);
    match layout.table {
        Table::Lhash2 { ptr_offset, mask } => {
            let m = mask.shifted(off).read(buf, 0)?;
            let n = m.checked_add(1)?;
            if !n.is_power_of_two() || !(MIN_LHASH2..=MAX_LHASH2).contains(&n) {
                return None;
            }
            let table = u64_at(buf, off.checked_add(ptr_offset)?)?;
            if !kernel_ptr(table) {
                return None;
            }
            let count = n.min(BUCKETS);
            // bucket_size comes from the BTF: a size no bucket has is no table to read.
            let len = count
                .checked_mul(layout.bucket_size)
                .filter(|&l| l <= MAX_BUCKET_BYTES)
                .and_then(|l| usize::try_from(l).ok())?;
            let mut heads = vec![0u8; len];
            mem.read(table, &mut heads).ok()?;
            buckets_pass(mem, layout, &heads, count, budget).then_some(addr)
        }
        Table::ListeningHash { offset, buckets } => {
            let len = buckets.checked_mul(layout.bucket_size)?;
            let start = usize::try_from(off.checked_add(offset)?).ok()?;
            let heads = buf.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
            buckets_pass(mem, layout, heads, buckets, budget).then_some(addr)
        }
    }
}

/// Buckets whose chains are followed per candidate, and steps per chain (longer: inconclusive).
const CHAINS: u64 = 8;
const MAX_CHAIN: u32 = 64;
/// Chain steps the whole scan may take (each one 8-byte read): bounds the work a crafted image can cause.
/// Pointer-rich data before tcp_hashinfo (rings of list_heads) passes the first checks; a ring is cut when
/// it comes back to its start, a long chain after [`MAX_CHAIN`] steps, so many such places fit.
const STEP_BUDGET: u32 = 1 << 18;

/// Each of the `count` buckets in `heads` starts with its own nulls value or a kernel pointer, and at least
/// one bucket ends in its own nulls value: directly (empty), or at the end of its chain, followed for the
/// first [`CHAINS`] buckets (a busy host's table may have no empty bucket at all). A chain that ends in
/// another bucket's value, or in no nulls value, rejects the candidate.
fn buckets_pass(
    mem: &dyn Memory,
    layout: &Layout,
    heads: &[u8],
    count: u64,
    budget: &mut u32,
) -> bool {
    let mut markers = 0;
    for i in 0..count {
        let at = i
            .checked_mul(layout.bucket_size)
            .and_then(|o| o.checked_add(layout.bucket_head_offset));
        let Some(first) = at.and_then(|at| u64_at(heads, at)) else {
            return false;
        };
        let own = i + LISTENING_NULLS_BASE;
        if first & 1 == 1 {
            if first >> 1 != own {
                return false;
            }
            markers += 1;
        } else if !kernel_ptr(first) {
            return false;
        } else if i < CHAINS {
            match chain_end(mem, layout, first, budget) {
                Some(end) if end >> 1 == own => markers += 1,
                Some(_) => return false,
                None => {}
            }
        }
    }
    markers > 0
}

/// The nulls value a chain starting at node `first` ends in; `None` when it is too long, unreadable or the
/// budget is spent (inconclusive, not a contradiction).
fn chain_end(mem: &dyn Memory, layout: &Layout, first: u64, budget: &mut u32) -> Option<u64> {
    let mut node = first;
    for _ in 0..MAX_CHAIN {
        if node & 1 == 1 {
            return Some(node);
        }
        *budget = budget.checked_sub(1)?;
        let mut b = [0u8; 8];
        mem.read(node.wrapping_add(layout.next_offset), &mut b)
            .ok()?;
        let next = u64::from_le_bytes(b);
        // A nulls chain never comes back: a ring (a list_head's, a pointer to itself) is no bucket. Its
        // "end" is given as 0, which no bucket's nulls value equals.
        if next == first || next == node {
            return Some(0);
        }
        node = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Flat, ReadError};
    use std::path::Path;

    /// The layout of a real kernel's BTF (7.1, lhash2 with nulls buckets).
    fn layout() -> Layout {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cilium-ebpf-7.1-x86_64.btf.xz"
        );
        let loaded = crate::btf::load_file(Path::new(path)).unwrap();
        crate::btf::resolve(&loaded.btf).unwrap()
    }

    const IMAGE: u64 = 0xffff_8000_0a00_0000;
    const LHASH2: u64 = 0xffff_0000_0100_0000;
    const SOCK: u64 = 0xffff_0000_0200_0068;

    /// An image of `len` bytes at IMAGE with an inet_hashinfo at `at` whose lhash2 (16 buckets) is in a
    /// second region, bucket 3 holding a socket; unreadable below `hole_end`.
    struct Mem {
        image: Flat,
        table: Flat,
        /// Socket nodes, from SOCKS on.
        socks: Flat,
        hole_end: u64,
    }

    const SOCKS: u64 = 0xffff_0000_0300_0000;

    impl Memory for Mem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            if (IMAGE..self.hole_end).contains(&addr) {
                return Err(ReadError::NotPresent {
                    addr,
                    level: "test",
                });
            }
            if addr >= SOCKS && addr < SOCKS + self.socks.bytes.len() as u64 {
                self.socks.read(addr, buf)
            } else if addr >= LHASH2 && addr < LHASH2 + self.table.bytes.len() as u64 {
                self.table.read(addr, buf)
            } else {
                self.image.read(addr, buf)
            }
        }
    }

    fn world(l: &Layout, at: u64, buckets: u64, hole_end: u64) -> Mem {
        let mut image = Flat::zeroed(IMAGE, 6 << 20);
        let mut table = Flat::zeroed(LHASH2, (buckets * l.bucket_size) as usize);
        let Table::Lhash2 { ptr_offset, mask } = l.table else {
            panic!("an lhash2 layout")
        };
        image.put(at + ptr_offset, LHASH2, 8);
        image.put(at + mask.offset(), buckets - 1, mask.size() as usize);
        for i in 0..buckets {
            let head = LHASH2 + i * l.bucket_size + l.bucket_head_offset;
            let v = if i == 3 {
                SOCK
            } else {
                ((i + LISTENING_NULLS_BASE) << 1) | 1
            };
            table.put(head, v, 8);
        }
        Mem {
            image,
            table,
            socks: Flat::zeroed(SOCKS, 1 << 16),
            hole_end,
        }
    }

    #[test]
    fn finds_the_one_listening_table_past_unmapped_init_sections() {
        let l = layout();
        let at = IMAGE + (3 << 20) + 0x5c8;
        let mem = world(&l, at, 16, IMAGE + (1 << 20));
        let found = scan(&mem, &l, IMAGE).unwrap();
        assert_eq!(found.addr, at);
        assert!(found.scanned >= 3 << 20, "{found:?}");
    }

    #[test]
    fn wrong_nulls_values_or_masks_are_not_taken() {
        let l = layout();
        let at = IMAGE + (2 << 20) + 0x40;
        // A bucket whose nulls value names another bucket.
        let mut mem = world(&l, at, 16, 0);
        mem.table.put(
            LHASH2 + 5 * l.bucket_size + l.bucket_head_offset,
            ((9 + LISTENING_NULLS_BASE) << 1) | 1,
            8,
        );
        assert!(
            scan(&mem, &l, IMAGE)
                .unwrap_err()
                .contains("no inet_hashinfo")
        );
        // A mask that is not 2^k − 1.
        let mut mem = world(&l, at, 16, 0);
        let Table::Lhash2 { mask, .. } = l.table else {
            unreachable!()
        };
        mem.image.put(at + mask.offset(), 14, 4);
        assert!(scan(&mem, &l, IMAGE).is_err());
        // Every bucket a pointer: nothing proves it is the table.
        let mut mem = world(&l, at, 16, 0);
        for i in 0..16 {
            mem.table
                .put(LHASH2 + i * l.bucket_size + l.bucket_head_offset, SOCK, 8);
        }
        assert!(scan(&mem, &l, IMAGE).is_err());
    }

    /// A busy host: no bucket is empty; the chains of the first buckets end in their own nulls values.
    #[test]
    fn a_table_without_empty_buckets_is_known_by_its_chain_ends() {
        let l = layout();
        let at = IMAGE + (2 << 20) + 0x100;
        let mut mem = world(&l, at, 16, 0);
        let node = |i: u64, k: u64| SOCKS + (i * 4 + k) * 0x100;
        for i in 0..16 {
            // Two sockets per bucket: head -> node(i, 0) -> node(i, 1) -> nulls(i).
            let head = LHASH2 + i * l.bucket_size + l.bucket_head_offset;
            mem.table.put(head, node(i, 0), 8);
            mem.socks.put(node(i, 0) + l.next_offset, node(i, 1), 8);
            mem.socks.put(
                node(i, 1) + l.next_offset,
                ((i + LISTENING_NULLS_BASE) << 1) | 1,
                8,
            );
        }
        assert_eq!(scan(&mem, &l, IMAGE).unwrap().addr, at);
        // Rings of pointers before it (list_heads: each points to the next, the last back to the first)
        // whose "mask" and "lhash2" fields look right are passed over, however many.
        let ring = |k: u64| SOCKS + 0x8000 + k * l.bucket_size;
        for k in 0..48 {
            mem.socks
                .put(ring(k) + l.next_offset, ring((k + 1) % 48), 8);
        }
        let Table::Lhash2 { ptr_offset, mask } = l.table else {
            unreachable!()
        };
        for d in 0..300u64 {
            let decoy = IMAGE + (1 << 20) + d * 0x400;
            mem.image
                .put(decoy + ptr_offset, ring(d % 16) - l.bucket_head_offset, 8);
            mem.image.put(decoy + mask.offset(), 15, 4);
        }
        assert_eq!(scan(&mem, &l, IMAGE).unwrap().addr, at);
        // A chain that ends in another bucket's value is no listening table.
        mem.socks.put(
            node(2, 1) + l.next_offset,
            ((7 + LISTENING_NULLS_BASE) << 1) | 1,
            8,
        );
        assert!(scan(&mem, &l, IMAGE).is_err());
    }

    #[test]
    fn two_tables_are_ambiguous() {
        let l = layout();
        let at = IMAGE + (2 << 20);
        let mut mem = world(&l, at, 16, 0);
        let Table::Lhash2 { ptr_offset, mask } = l.table else {
            unreachable!()
        };
        let other = at + (1 << 20) + 0x100;
        mem.image.put(other + ptr_offset, LHASH2, 8);
        mem.image.put(other + mask.offset(), 15, 4);
        let e = scan(&mem, &l, IMAGE).unwrap_err();
        assert!(e.contains("2 places"), "{e}");
    }

    #[test]
    fn the_scan_is_bounded_by_unreadable_memory_after_data() {
        let l = layout();
        // Nothing to find: the scan reads the 6 MiB of image, then stops at the first unreadable piece.
        let mem = world(&l, IMAGE + 8, 16, 0);
        let Table::Lhash2 { ptr_offset, .. } = l.table else {
            unreachable!()
        };
        let mut mem = mem;
        mem.image.put(IMAGE + 8 + ptr_offset, 0, 8);
        let e = scan(&mem, &l, IMAGE).unwrap_err();
        assert!(e.contains("no inet_hashinfo"), "{e}");
        let scanned: u64 = e
            .split("in the ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(scanned < 8 << 20, "{scanned}");
    }
}
