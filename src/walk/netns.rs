//! The network namespaces (issue 8): `net_namespace_list`, each namespace's listen sysctls and its TcpExt
//! counters summed over every possible CPU, as `/proc/net/netstat` sums them.
//!
//! Like the listening-hash walk it reads a `Memory` and never knows the source. The list walk is capped and
//! detects cycles; a namespace whose counters cannot be read keeps its sysctls, with a warning.

use std::collections::HashSet;

use crate::btf::netns::NetnsLayout;
use crate::memory::{Memory, read_ptr};

/// Namespaces listed at most (a host with more is not one synq was built for; the rest is a warning).
pub const MAX_NAMESPACES: usize = 1 << 16;
/// CPUs summed at most (Debian's NR_CPUS is 8192).
pub const MAX_CPUS: u64 = 8192;

/// Where the per-CPU machinery and the list are, from the symbols.
#[derive(Clone, Copy, Debug)]
pub struct NetnsSymbols {
    /// `net_namespace_list` (a `struct list_head`).
    pub list: u64,
    /// `__per_cpu_offset` (an array of `unsigned long`, one per CPU), `nr_cpu_ids` (an `unsigned int`) and
    /// `__cpu_possible_mask` (a bitmap); `None` when any is missing (the counters are then not read).
    pub per_cpu: Option<(u64, u64, u64)>,
}

/// One namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub inum: u64,
    pub somaxconn: Option<u64>,
    pub max_syn_backlog: Option<u64>,
    pub syncookies: Option<u64>,
    pub synack_retries: Option<u64>,
    /// `(name, sum over CPUs)`, as `/proc/net/netstat` names them; `None` where not read.
    pub counters: Vec<(&'static str, Option<u64>)>,
    /// Its `inet_hashinfo` (the established table the requests are in), where the kernel says.
    pub hashinfo: Option<u64>,
}

#[derive(Debug, Default)]
pub struct NetnsResult {
    pub namespaces: Vec<Namespace>,
    pub warnings: Vec<String>,
}

/// Walks `net_namespace_list`.
pub fn walk(mem: &dyn Memory, layout: &NetnsLayout, syms: NetnsSymbols, ptr: u64) -> NetnsResult {
    let mut out = NetnsResult::default();
    let cpus = match syms.per_cpu {
        Some((offsets, nr, mask)) => match possible_cpus(mem, offsets, nr, mask, ptr) {
            Ok(c) => Some(c),
            Err(e) => {
                out.warnings.push(format!(
                    "per-CPU offsets unreadable ({e}): namespace counters not read"
                ));
                None
            }
        },
        None => None,
    };
    let head = syms.list;
    let mut node = match read_ptr(mem, head, ptr) {
        Ok(n) => n,
        Err(e) => {
            out.warnings
                .push(format!("net_namespace_list unreadable: {e}"));
            return out;
        }
    };
    let mut seen = HashSet::new();
    let span = usize::try_from(layout.span).unwrap_or(0);
    let mut buf = vec![0u8; span];
    while node != head {
        if out.namespaces.len() >= MAX_NAMESPACES || !seen.insert(node) {
            out.warnings.push(format!(
                "net_namespace_list: stopped after {} namespaces (a cycle, or more than {MAX_NAMESPACES}); \
                 the namespace list is partial",
                out.namespaces.len()
            ));
            break;
        }
        let net = node.wrapping_sub(layout.list);
        if let Err(e) = mem.read(net, &mut buf) {
            out.warnings.push(format!(
                "network namespace at {net:#x} unreadable ({e}); the namespace list is partial"
            ));
            break;
        }
        let get = |f: Option<crate::btf::Field>| f.and_then(|f| f.read(&buf, 0));
        let Some(inum) = layout.inum.read(&buf, 0) else {
            break;
        };
        let mut ns = Namespace {
            inum,
            somaxconn: get(layout.somaxconn),
            max_syn_backlog: get(layout.max_syn_backlog),
            syncookies: get(layout.syncookies),
            synack_retries: get(layout.synack_retries),
            counters: layout.counters.iter().map(|(n, _)| (*n, None)).collect(),
            hashinfo: get(layout.hashinfo).filter(|&h| h != 0),
        };
        if let (Some(cpus), Some(mib)) = (&cpus, get(layout.mib_ptr)) {
            match sum_counters(mem, layout, mib, cpus) {
                Ok(c) => ns.counters = c,
                Err(e) => out.warnings.push(format!(
                    "network namespace {inum}: counters unreadable ({e})"
                )),
            }
        }
        out.namespaces.push(ns);
        let Some(next) = crate::btf::Field::bytes(layout.list, ptr).read(&buf, 0) else {
            break;
        };
        node = next;
    }
    out
}

/// The per-CPU offsets of every possible CPU.
fn possible_cpus(
    mem: &dyn Memory,
    offsets: u64,
    nr: u64,
    mask: u64,
    ptr: u64,
) -> Result<Vec<u64>, crate::memory::ReadError> {
    let mut b = [0u8; 4];
    mem.read(nr, &mut b)?;
    let n = u64::from(u32::from_le_bytes(b)).clamp(1, MAX_CPUS);
    let words = n.div_ceil(64);
    let mut bits = vec![0u8; usize::try_from(words * 8).unwrap_or(0)];
    mem.read(mask, &mut bits)?;
    let mut offs = vec![0u8; usize::try_from(n * ptr).unwrap_or(0)];
    mem.read(offsets, &mut offs)?;
    let mut out = Vec::new();
    for cpu in 0..n {
        let byte = bits.get(usize::try_from(cpu / 8).unwrap_or(usize::MAX));
        if byte.is_some_and(|b| b & (1 << (cpu % 8)) != 0) {
            let f = crate::btf::Field::bytes(cpu * ptr, ptr);
            if let Some(o) = f.read(&offs, 0) {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// Sums the counters over the CPUs: `mibs[i]` of the per-CPU `struct linux_mib` at `mib + offset`.
fn sum_counters(
    mem: &dyn Memory,
    layout: &NetnsLayout,
    mib: u64,
    cpus: &[u64],
) -> Result<Vec<(&'static str, Option<u64>)>, crate::memory::ReadError> {
    let w = layout.mib_word;
    let max = layout.counters.iter().filter_map(|(_, i)| *i).max();
    let Some(max) = max else {
        return Ok(layout.counters.iter().map(|(n, _)| (*n, None)).collect());
    };
    let len = usize::try_from((max + 1) * w).unwrap_or(0);
    let mut sums = vec![0u64; layout.counters.len()];
    let mut buf = vec![0u8; len];
    for &off in cpus {
        mem.read(mib.wrapping_add(off), &mut buf)?;
        for (sum, (_, idx)) in sums.iter_mut().zip(&layout.counters) {
            if let Some(i) = idx {
                let v = crate::btf::Field::bytes(i * w, w)
                    .read(&buf, 0)
                    .unwrap_or(0);
                *sum = sum.wrapping_add(v);
            }
        }
    }
    Ok(layout
        .counters
        .iter()
        .zip(sums)
        .map(|((n, i), s)| (*n, i.map(|_| s)))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::btf::Field;
    use crate::memory::Flat;

    const BASE: u64 = 0x2000_0000;

    fn layout() -> NetnsLayout {
        NetnsLayout {
            list: 8,
            inum: Field::bytes(0, 4),
            somaxconn: Some(Field::bytes(24, 4)),
            max_syn_backlog: None,
            syncookies: Some(Field::bytes(28, 1)),
            synack_retries: None,
            mib_ptr: Some(Field::bytes(32, 8)),
            mib_word: 8,
            mib_len: 4,
            counters: vec![("ListenDrops", Some(2)), ("ListenOverflows", None)],
            hashinfo: None,
            span: 40,
        }
    }

    /// Two namespaces on the list at BASE; per-CPU offsets 0x100 and 0x200 for CPUs 0 and 2 (CPU 1 not
    /// possible); `head_back`: whether the second namespace links back to the head.
    fn image(head_back: bool) -> (Flat, NetnsSymbols) {
        let mut m = Flat::zeroed(BASE, 0x4000);
        let head = BASE;
        let (n1, n2) = (BASE + 0x1000, BASE + 0x2000);
        m.put(head, n1 + 8, 8);
        m.put(n1 + 8, n2 + 8, 8);
        m.put(n2 + 8, if head_back { head } else { n1 + 8 }, 8);
        for (n, inum, mib) in [(n1, 111, BASE + 0x3000), (n2, 222, BASE + 0x3400)] {
            m.put(n, inum, 8);
            m.put(n + 24, 4096 + inum, 8);
            m.put(n + 32, mib, 8);
            for (cpu_off, v) in [(0x100, 5), (0x200, 7), (0x180, 1000)] {
                m.put(mib + cpu_off + 16, v * inum, 8);
            }
        }
        let (offsets, nr, mask) = (BASE + 0x800, BASE + 0x900, BASE + 0x980);
        m.put(offsets, 0x100, 8);
        m.put(offsets + 8, 0x180, 8);
        m.put(offsets + 16, 0x200, 8);
        m.put(nr, 3, 8);
        m.put(mask, 0b101, 8);
        (
            m,
            NetnsSymbols {
                list: head,
                per_cpu: Some((offsets, nr, mask)),
            },
        )
    }

    #[test]
    fn counters_are_summed_over_the_possible_cpus_only() {
        let (m, syms) = image(true);
        let r = walk(&m, &layout(), syms, 8);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.namespaces.len(), 2);
        assert_eq!(r.namespaces[0].inum, 111);
        assert_eq!(r.namespaces[0].somaxconn, Some(4096 + 111));
        assert_eq!(r.namespaces[0].max_syn_backlog, None);
        assert_eq!(
            r.namespaces[1].counters,
            vec![("ListenDrops", Some(12 * 222)), ("ListenOverflows", None)]
        );
    }

    #[test]
    fn a_namespace_list_that_loops_is_cut_with_a_warning() {
        let (m, syms) = image(false);
        let r = walk(&m, &layout(), syms, 8);
        assert_eq!(r.namespaces.len(), 2);
        assert!(
            r.warnings.iter().any(|w| w.contains("partial")),
            "{:?}",
            r.warnings
        );
    }
}
