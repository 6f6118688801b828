//! The half-open requests themselves (issue 8, `--requests`): every TCP_NEW_SYN_RECV entry of the
//! established tables, with its listener (`rsk_listener`, not the port), remote address and port,
//! SYN-ACK timeouts and timer.
//!
//! O(connections), so only when asked. Walked like the listening hash: chains capped, cycles detected, the
//! end marker checked against the bucket (an entry that moved to another chain while read leads to another
//! bucket's marker: the bucket is read again, twice at most), one budget for the whole walk.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::btf::requests::{RequestsLayout, TCP_NEW_SYN_RECV};
use crate::btf::{AF_INET, AF_INET6, Field};
use crate::memory::{Memory, read_ptr};

use super::Family;

/// Buckets accepted from `ehash_mask + 1` (the kernel sizes ehash from memory: millions on large hosts).
pub const MAX_BUCKETS: u64 = 1 << 26;
/// Entries followed in one chain.
pub const MAX_CHAIN: u64 = 1 << 16;
/// Entries followed in the whole walk, restarts included.
pub const MAX_ENTRIES: u64 = 1 << 25;
/// Requests kept.
pub const MAX_REQUESTS: usize = 1 << 22;
/// Bucket heads read per read.
const HEAD_CHUNK: u64 = 4096;
/// Re-reads of a bucket whose chain ended in another bucket's marker.
const RESTARTS: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The listener's sock (`rsk_listener`).
    pub listener: u64,
    pub family: Family,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub local_port: u16,
    /// SYN-ACK timeouts so far (`num_timeout`, `/proc/net/tcp`'s `retrnsmt`).
    pub retransmits: u64,
    /// Jiffies until the request's timer fires (negative: overdue), when `jiffies` was found.
    pub expires_in: Option<i64>,
}

#[derive(Debug, Default)]
pub struct RequestsResult {
    pub requests: Vec<Request>,
    pub warnings: Vec<String>,
    /// Established tables walked, their buckets, and the entries followed.
    pub tables: u64,
    pub buckets: u64,
    pub entries: u64,
}

/// Walks the established tables of `hashinfos` (each an `inet_hashinfo`; duplicates are walked once).
pub fn walk(
    mem: &dyn Memory,
    l: &RequestsLayout,
    hashinfos: &[u64],
    jiffies: Option<u64>,
    ptr: u64,
) -> RequestsResult {
    let mut out = RequestsResult::default();
    let mut budget = MAX_ENTRIES;
    let mut tables = HashSet::new();
    for &hi in hashinfos {
        let table = match (
            read_field(mem, hi, l.ehash, ptr),
            read_field(mem, hi, l.ehash_mask, ptr),
        ) {
            (Ok(t), Ok(m)) if t != 0 && m < MAX_BUCKETS && (m + 1) & m == 0 => (t, m + 1),
            (Ok(_), Ok(m)) => {
                out.warnings.push(format!(
                    "established table of inet_hashinfo {hi:#x}: ehash_mask {m:#x} or its pointer is not \
                     sane; its requests are not listed"
                ));
                continue;
            }
            (Err(e), _) | (_, Err(e)) => {
                out.warnings.push(format!(
                    "inet_hashinfo {hi:#x} unreadable ({e}); its requests are not listed"
                ));
                continue;
            }
        };
        if !tables.insert(table.0) {
            continue;
        }
        out.tables += 1;
        walk_table(mem, l, table, jiffies, ptr, &mut budget, &mut out);
        if budget == 0 {
            out.warnings.push(format!(
                "stopped after {MAX_ENTRIES} entries of the established tables: the request list is partial"
            ));
            break;
        }
    }
    out
}

fn walk_table(
    mem: &dyn Memory,
    l: &RequestsLayout,
    (base, buckets): (u64, u64),
    jiffies: Option<u64>,
    ptr: u64,
    budget: &mut u64,
    out: &mut RequestsResult,
) {
    let mut heads: Vec<u64> = Vec::new();
    let mut buf = vec![0u8; usize::try_from(l.span).unwrap_or(0)];
    let mut lost = 0u64;
    for i in 0..buckets {
        if *budget == 0 {
            return;
        }
        if i % HEAD_CHUNK == 0 {
            let n = (buckets - i).min(HEAD_CHUNK);
            let mut raw = vec![0u8; usize::try_from(n * l.bucket_size).unwrap_or(0)];
            heads = match mem.read(base.wrapping_add(i * l.bucket_size), &mut raw) {
                Ok(()) => (0..n)
                    .filter_map(|k| Field::bytes(k * l.bucket_size + l.chain, ptr).read(&raw, 0))
                    .collect(),
                Err(e) => {
                    out.warnings.push(format!(
                        "established table at {base:#x}: buckets {i}..{} unreadable ({e}); their requests \
                         are not listed",
                        i + n
                    ));
                    Vec::new()
                }
            };
        }
        out.buckets += 1;
        let Some(&first) = heads.get(usize::try_from(i % HEAD_CHUNK).unwrap_or(usize::MAX)) else {
            continue;
        };
        let mut head = first;
        let mut settled = false;
        for attempt in 0..=RESTARTS {
            if attempt > 0 {
                match read_ptr(mem, base.wrapping_add(i * l.bucket_size + l.chain), ptr) {
                    Ok(h) => head = h,
                    Err(_) => break,
                }
            }
            let mut found = Vec::new();
            let end = chain(
                mem, l, head, jiffies, ptr, budget, &mut buf, &mut found, out,
            );
            match end {
                // ehash buckets end in their own index (INIT_HLIST_NULLS_HEAD(&ehash[i].chain, i)).
                Some(marker) if marker == i || attempt == RESTARTS => {
                    settled = marker == i;
                    for r in found {
                        if out.requests.len() < MAX_REQUESTS {
                            out.requests.push(r);
                        }
                    }
                    break;
                }
                Some(_) => {}
                None => {
                    lost += 1;
                    for r in found {
                        if out.requests.len() < MAX_REQUESTS {
                            out.requests.push(r);
                        }
                    }
                    settled = true;
                    break;
                }
            }
        }
        if !settled {
            lost += 1;
        }
    }
    if lost > 0 {
        out.warnings.push(format!(
            "established table at {base:#x}: {lost} chains could not be read to their end (changing, \
             unreadable or too long); the request list may be incomplete"
        ));
    }
}

/// Follows one chain; `Some(marker)` at its nulls end, `None` when cut (fault, cycle, cap, budget).
#[allow(clippy::too_many_arguments)]
fn chain(
    mem: &dyn Memory,
    l: &RequestsLayout,
    head: u64,
    jiffies: Option<u64>,
    ptr: u64,
    budget: &mut u64,
    buf: &mut [u8],
    found: &mut Vec<Request>,
    out: &mut RequestsResult,
) -> Option<u64> {
    let mut node = head;
    let mut seen = HashSet::new();
    let next_field = Field::bytes(l.link, ptr);
    for _ in 0..MAX_CHAIN {
        if node & 1 == 1 {
            return Some(node >> 1);
        }
        if *budget == 0 || node == 0 || !seen.insert(node) {
            return None;
        }
        *budget -= 1;
        out.entries += 1;
        let entry = node.wrapping_sub(l.link);
        mem.read(entry, buf).ok()?;
        let next = next_field.read(buf, 0)?;
        if l.state.read(buf, 0) == Some(TCP_NEW_SYN_RECV)
            && let Some(r) = request(l, buf, jiffies)
        {
            found.push(r);
        }
        node = next;
    }
    None
}

fn request(l: &RequestsLayout, buf: &[u8], jiffies: Option<u64>) -> Option<Request> {
    let get = |f: Field| f.read(buf, 0);
    let (family, remote) = match get(l.family)? {
        AF_INET => {
            let v = u32::try_from(get(l.daddr)?).ok()?;
            // skc_daddr is __be32: its bytes in memory are the address in network order.
            (Family::Inet, IpAddr::V4(Ipv4Addr::from(v.to_le_bytes())))
        }
        AF_INET6 => {
            let f = l.v6_daddr?;
            let start = usize::try_from(f.offset()).ok()?;
            let b: [u8; 16] = buf.get(start..start.checked_add(16)?)?.try_into().ok()?;
            (Family::Inet6, IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => return None,
    };
    let dport = u16::try_from(get(l.dport)?).ok()?;
    let expires_in = match (l.expires.and_then(get), jiffies) {
        (Some(e), Some(j)) => Some(e.wrapping_sub(j) as i64),
        _ => None,
    };
    Some(Request {
        listener: get(l.listener)?,
        family,
        remote,
        // skc_dport is __be16.
        remote_port: u16::from_be(dport),
        local_port: u16::try_from(get(l.num)?).ok()?,
        retransmits: get(l.num_timeout)?,
        expires_in,
    })
}

fn read_field(
    mem: &dyn Memory,
    base: u64,
    f: Field,
    ptr: u64,
) -> Result<u64, crate::memory::ReadError> {
    let _ = ptr;
    let mut b = [0u8; 8];
    let len = usize::try_from(f.end() - f.offset()).unwrap_or(8).min(8);
    let slot = b.get_mut(..len).unwrap_or(&mut []);
    mem.read(base.wrapping_add(f.offset()), slot)?;
    Ok(f.read(slot, f.offset()).unwrap_or(u64::MAX))
}

/// The network prefix a remote address is counted under: /24 for IPv4, /48 for IPv6.
pub fn prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            format!("{}/48", Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::memory::Flat;

    const BASE: u64 = 0x3000_0000;

    /// Entries: link at 0 (next), state at 8 (u8), family at 10 (u16), local port at 12 (u16), daddr at 16
    /// (be32), dport at 20 (be16), listener at 24, num_timeout at 32 (u8), expires at 40.
    fn layout() -> RequestsLayout {
        RequestsLayout {
            ehash: Field::bytes(0, 8),
            ehash_mask: Field::bytes(8, 4),
            bucket_size: 8,
            chain: 0,
            link: 0,
            state: Field::bytes(8, 1),
            family: Field::bytes(10, 2),
            num: Field::bytes(12, 2),
            daddr: Field::bytes(16, 4),
            v6_daddr: None,
            dport: Field::bytes(20, 2),
            listener: Field::bytes(24, 8),
            num_timeout: Field::bytes(32, 1),
            expires: Some(Field::bytes(40, 8)),
            span: 48,
            netns_hashinfo: None,
        }
    }

    /// A table of 4 buckets at BASE + 0x100 (hashinfo at BASE); bucket 1 holds a request and an
    /// established socket, then ends in `end_marker`; the others are empty.
    fn image(end_marker: u64, cycle: bool) -> Flat {
        let mut m = Flat::zeroed(BASE, 0x2000);
        let table = BASE + 0x100;
        m.put(BASE, table, 8);
        m.put(BASE + 8, 3, 4);
        for i in 0..4 {
            m.put(table + 8 * i, (i << 1) | 1, 8);
        }
        let (req, est) = (BASE + 0x1000, BASE + 0x1100);
        m.put(table + 8, req, 8);
        m.put(req, est, 8);
        m.put(req + 8, TCP_NEW_SYN_RECV, 1);
        m.put(req + 10, AF_INET, 2);
        m.put(req + 12, 8001, 2);
        m.put(
            req + 16,
            u64::from(u32::from_le_bytes([198, 51, 100, 99])),
            4,
        );
        m.put(req + 20, u64::from(40000u16.to_be()), 2);
        m.put(req + 24, 0xffff_8888_0000_0000, 8);
        m.put(req + 32, 2, 1);
        m.put(req + 40, 1_000_500, 8);
        m.put(est, if cycle { req } else { (end_marker << 1) | 1 }, 8);
        m.put(est + 8, 1, 1); // TCP_ESTABLISHED
        m
    }

    #[test]
    fn requests_are_read_and_other_entries_skipped() {
        let m = image(1, false);
        let r = walk(&m, &layout(), &[BASE, BASE], Some(1_000_000), 8);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.tables, 1, "the same table twice is walked once");
        assert_eq!(r.buckets, 4);
        assert_eq!(r.entries, 2);
        assert_eq!(
            r.requests,
            vec![Request {
                listener: 0xffff_8888_0000_0000,
                family: Family::Inet,
                remote: "198.51.100.99".parse().unwrap(),
                remote_port: 40000,
                local_port: 8001,
                retransmits: 2,
                expires_in: Some(500),
            }]
        );
        assert_eq!(prefix(r.requests[0].remote), "198.51.100.0/24");
    }

    #[test]
    fn a_chain_ending_in_another_buckets_marker_is_reread_then_reported() {
        let m = image(3, false);
        let r = walk(&m, &layout(), &[BASE], None, 8);
        // Re-read twice, still foreign: kept, with a warning that the list may be incomplete.
        assert_eq!(r.entries, 6);
        assert_eq!(r.requests.len(), 1);
        assert_eq!(r.requests[0].expires_in, None);
        assert!(
            r.warnings.iter().any(|w| w.contains("incomplete")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn a_cycle_is_cut_with_a_warning() {
        let m = image(1, true);
        let r = walk(&m, &layout(), &[BASE], None, 8);
        assert!(r.entries <= 6, "{}", r.entries);
        assert!(
            r.warnings.iter().any(|w| w.contains("incomplete")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn an_insane_mask_is_refused_with_a_warning() {
        let mut m = image(1, false);
        m.put(BASE + 8, 5, 4);
        let r = walk(&m, &layout(), &[BASE], None, 8);
        assert_eq!(r.tables, 0);
        assert!(
            r.warnings.iter().any(|w| w.contains("not sane")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn prefixes_are_24_and_48_bits() {
        assert_eq!(prefix("2001:db8:1::99".parse().unwrap()), "2001:db8:1::/48");
        assert_eq!(prefix("192.0.2.99".parse().unwrap()), "192.0.2.0/24");
    }
}
