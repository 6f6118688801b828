//! The listening-hash walk and the per-listener queue figures.
//!
//! One table per era (see [`crate::btf::Table`]). Every chain is capped, cycles are detected, entries are
//! validated (TCP_LISTEN, AF_INET/AF_INET6, IPPROTO_TCP) and, on nulls lists, the end marker is checked
//! against the bucket: a socket that moved to another chain while we read leads us to a different marker,
//! and the bucket is read again, a bounded number of times. A read fault costs the listener (or the rest of
//! its chain), with a warning, never the run.

pub mod find;
pub mod netns;
pub mod owners;
pub mod requests;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::btf::{
    AF_INET, AF_INET6, FastOpen, Field, IPPROTO_TCP, Inode, LISTENING_NULLS_BASE, Layout, Queue,
    TCP_LISTEN, Table,
};
use crate::memory::{Memory, ReadError, read_ptr};

/// Bounds for one walk. The defaults are far above anything a real host holds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Entries followed in one chain before giving up on it.
    pub max_chain: u64,
    /// Times one bucket is re-read after a wrong nulls marker.
    pub max_restarts: u32,
    /// Buckets accepted from `lhash2_mask + 1` (the kernel caps lhash2 at 64 Ki).
    pub max_buckets: u64,
    /// Listeners in total.
    pub max_listeners: usize,
    /// Chain entries followed in the whole walk, restarts included: `None` derives it from the table,
    /// [`Limits::budget`]. Per-chain caps alone let a damaged or aliased table of 4 Mi buckets whose
    /// chains never end properly cost 4 Mi × 9 passes × 2^20 entries.
    pub max_entries: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chain: 1 << 20,
            max_restarts: 8,
            max_buckets: 1 << 22,
            max_listeners: 1 << 22,
            max_entries: None,
        }
    }
}

impl Limits {
    /// The whole walk's budget of chain entries for a table of `buckets` buckets: every listener a real host
    /// could hold (4 Mi), plus 16 entries per bucket for restarts and skipped sockets, at most 2^24. A real
    /// table (64 Ki buckets at most, a few listeners each) uses a small part of it.
    pub fn budget(&self, buckets: u64) -> u64 {
        self.max_entries.unwrap_or_else(|| {
            (1u64 << 22)
                .saturating_add(buckets.saturating_mul(16))
                .min(1 << 24)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
}

/// Who owns a listener, where BTF lets us tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    /// The TCP subflow listener of an MPTCP socket (tcp_sock.is_mptcp).
    MptcpSubflow,
    /// A kernel-internal listener (sk_kern_sock: nfsd, SMC, ksmbd...).
    Kernel,
}

impl Kind {
    pub fn label(self) -> Option<&'static str> {
        match self {
            Kind::User => None,
            Kind::MptcpSubflow => Some("mptcp-subflow"),
            Kind::Kernel => Some("kernel"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Kernel address of the socket.
    pub sock: u64,
    /// Inode number of the network namespace (0 when the kernel has none).
    pub netns: u64,
    pub family: Family,
    pub addr: IpAddr,
    pub port: u16,
    pub bound_dev_if: u64,
    /// Half-open requests (SYN_RECV): the SYN queue.
    pub syn_queue: u64,
    /// Of those, requests whose SYN-ACK was not retransmitted yet.
    pub syn_young: u64,
    /// Completed connections not yet accepted.
    pub accept_queue: u64,
    /// The backlog limit (listen(2)'s backlog, capped by somaxconn).
    pub max_backlog: u64,
    pub kind: Kind,
    /// Packets dropped by this listener (`sk_drops`: full accept queue, full SYN queue, no memory...).
    /// `None` where the kernel lacks it or it could not be read (each detail below alike).
    pub drops: Option<u64>,
    /// The listener has hit a full SYN queue (`synflood_warned`: the kernel logged "Possible SYN flooding").
    pub synflood_warned: Option<bool>,
    /// TCP_DEFER_ACCEPT, as the kernel keeps it: SYN-ACK retransmits a request may wait for data (0: off).
    pub defer_accept: Option<u64>,
    /// The Fast Open queue: `Some` once TCP_FASTOPEN is set on a kernel that keeps it per listener.
    pub fastopen: Option<FastOpenQueue>,
    /// The SO_REUSEPORT group, for its members.
    pub reuseport: Option<ReuseportGroup>,
    /// The socket inode (as in `/proc/net/tcp`); `None` for a socket without one (kernel listeners).
    pub inode: Option<u64>,
    /// The processes holding the listener, each once (`None`: not looked for; empty: none, a kernel
    /// listener). Filled by the owners walk ([`owners`]), not by the listening-hash walk.
    pub owners: Option<Vec<owners::Owner>>,
    /// The socket's `struct socket` (`sk_socket`), 0 when it has none or the kernel lacks the member.
    pub socket: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastOpenQueue {
    /// Fast Open requests outstanding (their children sit in the accept queue and are not counted here).
    pub qlen: u64,
    /// The limit set with TCP_FASTOPEN (the last column of `/proc/net/tcp` for a listener).
    pub max_qlen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReuseportGroup {
    /// The kernel address of the group (`struct sock_reuseport`): the same for every member.
    pub id: u64,
    /// Listeners in the group (`num_socks`).
    pub size: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub buckets: u64,
    pub entries: u64,
    pub restarts: u64,
    pub skipped: u64,
}

#[derive(Debug, Default)]
pub struct WalkResult {
    pub listeners: Vec<Listener>,
    pub warnings: Vec<String>,
    pub stats: Stats,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read tcp_hashinfo at {addr:#x}: {err}")]
    Hashinfo { addr: u64, err: ReadError },
    #[error(
        "the BTF does not match the memory being read ({0}); pass --btf with the BTF of the running kernel"
    )]
    Mismatch(String),
    #[error(
        "none of the {buckets} bucket heads of the listening table is readable (first: {err}); the memory \
         image is damaged or incomplete, or the BTF is not this kernel's"
    )]
    NoBuckets { buckets: u64, err: ReadError },
}

/// Bucket heads are read this many buckets at a time (one read instead of one per bucket: lhash2 has up to
/// 65,536 buckets).
const HEAD_CHUNK: u64 = 4096;

/// Keeps the warning list readable when thousands of entries fail the same way.
const MAX_WARNINGS: usize = 50;

struct Walker<'a> {
    mem: &'a dyn Memory,
    layout: &'a Layout,
    limits: Limits,
    warnings: Vec<String>,
    dropped_warnings: usize,
    netns_cache: HashMap<u64, Result<u64, ReadError>>,
    stats: Stats,
    skipped_state: u64,
    skipped_family: u64,
    skipped_proto: u64,
    /// Chain entries the walk may still follow ([`Limits::budget`]).
    budget_left: u64,
}

enum Entry {
    Listener(Listener),
    Skip,
    /// Listed, but one of its reads failed; carries the warning.
    Lost(String),
}

/// How a bucket's walk ended.
enum BucketEnd {
    Settled,
    /// Still ending in a foreign nulls marker after every restart.
    Moving,
    /// Its head pointer could not be read.
    NoHead,
    /// The walk's budget ran out in this bucket.
    Spent,
}

/// How a chain ended.
enum ChainEnd {
    /// The head pointer itself is unreadable.
    NoHead(String),
    /// The end marker (nulls value, or 0 for plain lists).
    End(u64),
    /// Given up; the warning says why. The entries read so far are kept.
    Broken(String),
    /// The walk's budget is spent: the whole walk stops here.
    Spent,
}

/// Walks the listening table at `hashinfo` (the address of `tcp_hashinfo`).
pub fn walk(
    mem: &dyn Memory,
    layout: &Layout,
    hashinfo: u64,
    limits: Limits,
) -> Result<WalkResult, WalkError> {
    let mut w = Walker {
        mem,
        layout,
        limits,
        warnings: Vec::new(),
        dropped_warnings: 0,
        netns_cache: HashMap::new(),
        stats: Stats::default(),
        skipped_state: 0,
        skipped_family: 0,
        skipped_proto: 0,
        budget_left: 0,
    };
    let (base, buckets) = w.table(hashinfo)?;
    w.stats.buckets = buckets;
    let budget = limits.budget(buckets);
    w.budget_left = budget;
    let mut walked = buckets;

    let mut listeners = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut moving_buckets = 0u64;
    let mut dead_heads = 0u64;
    let mut heads = Vec::new();
    for i in 0..buckets {
        let bucket = base.wrapping_add(i.wrapping_mul(layout.bucket_size));
        if i % HEAD_CHUNK == 0 {
            heads = w.heads(bucket, (buckets - i).min(HEAD_CHUNK));
        }
        let head = heads
            .get(usize::try_from(i % HEAD_CHUNK).unwrap_or(usize::MAX))
            .copied();
        let (found, end) = w.bucket(i, bucket, head);
        for l in found {
            // A socket that moved between chains while we read may show up twice: count it once.
            if seen.insert(l.sock) && listeners.len() < limits.max_listeners {
                listeners.push(l);
            }
        }
        match end {
            BucketEnd::Settled => {}
            BucketEnd::Moving => moving_buckets += 1,
            BucketEnd::NoHead => dead_heads += 1,
            BucketEnd::Spent => {
                walked = i + 1;
                break;
            }
        }
    }
    if walked < buckets || w.budget_left == 0 {
        w.warn(format!(
            "stopped after {budget} chain entries, the walk's budget for a table of {buckets} buckets \
             ({walked} walked): the table is damaged, aliased or changing faster than it can be read; the \
             listeners reported are a partial answer"
        ));
    }

    if dead_heads == buckets {
        let addr = base.wrapping_add(layout.bucket_head_offset);
        let err = read_ptr(mem, addr, layout.pointer_size)
            .err()
            .unwrap_or(ReadError::NotMapped { addr });
        return Err(WalkError::NoBuckets { buckets, err });
    }
    let skipped = w.skipped_state + w.skipped_family + w.skipped_proto;
    w.stats.skipped = skipped;
    if listeners.is_empty() && skipped > 0 {
        return Err(WalkError::Mismatch(format!(
            "none of the {skipped} entries in the listening table reads as a TCP listener"
        )));
    }
    if layout.nulls && buckets > 1 && moving_buckets == buckets {
        return Err(WalkError::Mismatch(format!(
            "no bucket of the {buckets} ends with its own nulls marker"
        )));
    }
    if skipped > 0 {
        w.warn(format!(
            "skipped {skipped} entries of the listening table that are not TCP listeners ({} not in \
             TCP_LISTEN, {} not AF_INET/AF_INET6, {} not IPPROTO_TCP): sockets changing state while read",
            w.skipped_state, w.skipped_family, w.skipped_proto
        ));
    }
    if listeners.len() >= limits.max_listeners {
        w.warn(format!("stopped at {} listeners", limits.max_listeners));
    }
    if w.dropped_warnings > 0 {
        let n = w.dropped_warnings;
        w.warnings.push(format!("... and {n} more warnings"));
    }
    Ok(WalkResult {
        listeners,
        warnings: w.warnings,
        stats: w.stats,
    })
}

impl Walker<'_> {
    fn warn(&mut self, msg: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        } else {
            self.dropped_warnings += 1;
        }
    }

    /// The address of the first bucket and the number of buckets.
    fn table(&mut self, hashinfo: u64) -> Result<(u64, u64), WalkError> {
        let l = self.layout;
        match l.table {
            Table::ListeningHash { offset, buckets } => {
                if buckets == 0 || buckets > self.limits.max_buckets {
                    return Err(WalkError::Mismatch(format!(
                        "listening_hash has {buckets} buckets"
                    )));
                }
                Ok((hashinfo.wrapping_add(offset), buckets))
            }
            Table::Lhash2 { ptr_offset, mask } => {
                let addr = hashinfo.wrapping_add(ptr_offset);
                let ptr = read_ptr(self.mem, addr, l.pointer_size)
                    .map_err(|err| WalkError::Hashinfo { addr, err })?;
                let mut buf = vec![0u8; usize::try_from(mask.size()).unwrap_or(8).min(8)];
                let mask_addr = hashinfo.wrapping_add(mask.offset());
                self.mem
                    .read(mask_addr, &mut buf)
                    .map_err(|err| WalkError::Hashinfo {
                        addr: mask_addr,
                        err,
                    })?;
                let m = mask.read(&buf, mask.offset()).unwrap_or(u64::MAX);
                // inet_hashinfo2_init_mod sizes lhash2 as a power of two: the mask is 2^k − 1.
                if m >= self.limits.max_buckets || (m + 1) & m != 0 {
                    return Err(WalkError::Mismatch(format!(
                        "lhash2_mask reads {m:#x}, not 2^k − 1"
                    )));
                }
                if ptr == 0 {
                    return Err(WalkError::Mismatch("lhash2 is a NULL pointer".into()));
                }
                Ok((ptr, m + 1))
            }
        }
    }

    /// Walks one bucket, restarting on a foreign nulls marker. Returns the listeners and whether the walk
    /// ended on this bucket's own marker.
    /// The head pointers of `n` consecutive buckets from `first`, in one read; empty when that read fails
    /// (each bucket then reads its own head, and reports its own fault).
    fn heads(&self, first: u64, n: u64) -> Vec<u64> {
        let l = self.layout;
        let Some(len) = n
            .checked_mul(l.bucket_size)
            .and_then(|x| usize::try_from(x).ok())
        else {
            return Vec::new();
        };
        let mut buf = vec![0u8; len];
        if self.mem.read(first, &mut buf).is_err() {
            return Vec::new();
        }
        (0..n)
            .map_while(|i| {
                let f = Field::bytes(i * l.bucket_size + l.bucket_head_offset, l.pointer_size);
                f.read(&buf, 0)
            })
            .collect()
    }

    fn bucket(
        &mut self,
        index: u64,
        bucket: u64,
        first_head: Option<u64>,
    ) -> (Vec<Listener>, BucketEnd) {
        let l = self.layout;
        let head_addr = bucket.wrapping_add(l.bucket_head_offset);
        let expected = index.wrapping_add(LISTENING_NULLS_BASE);
        let mut last = Vec::new();
        for attempt in 0..=self.limits.max_restarts {
            if attempt > 0 {
                self.stats.restarts += 1;
            }
            // The first pass may use the head read with its neighbours; a restart reads it afresh.
            let known = if attempt == 0 { first_head } else { None };
            let (found, end) = self.chain(index, head_addr, known);
            match end {
                ChainEnd::NoHead(msg) => {
                    self.warn(msg);
                    return (found, BucketEnd::NoHead);
                }
                ChainEnd::Broken(msg) => {
                    self.warn(msg);
                    return (found, BucketEnd::Settled);
                }
                ChainEnd::Spent => return (found, BucketEnd::Spent),
                ChainEnd::End(marker) => {
                    if !l.nulls || marker == expected {
                        return (found, BucketEnd::Settled);
                    }
                    last = found;
                }
            }
        }
        self.warn(format!(
            "bucket {index}: the chain kept ending in another bucket's nulls marker after {} restarts \
             (sockets moving); its listeners may be incomplete",
            self.limits.max_restarts
        ));
        (last, BucketEnd::Moving)
    }

    /// Follows one chain from its head.
    fn chain(
        &mut self,
        index: u64,
        head_addr: u64,
        known: Option<u64>,
    ) -> (Vec<Listener>, ChainEnd) {
        let l = self.layout;
        let mut out = Vec::new();
        let head = match known {
            Some(h) => Ok(h),
            None => read_ptr(self.mem, head_addr, l.pointer_size),
        };
        let mut node = match head {
            Ok(p) => p,
            Err(e) => {
                return (
                    out,
                    ChainEnd::NoHead(format!("bucket {index}: head unreadable: {e}")),
                );
            }
        };
        let mut visited: HashSet<u64> = HashSet::new();
        let mut buf = vec![0u8; usize::try_from(l.sock_span).unwrap_or(0)];
        let mut steps: u64 = 0;
        loop {
            if l.nulls && node & 1 == 1 {
                return (out, ChainEnd::End(node >> 1));
            }
            if !l.nulls && node == 0 {
                return (out, ChainEnd::End(0));
            }
            if self.budget_left == 0 {
                return (out, ChainEnd::Spent);
            }
            self.budget_left -= 1;
            steps += 1;
            self.stats.entries += 1;
            if steps > self.limits.max_chain {
                let msg = format!(
                    "bucket {index}: chain longer than {} entries, cut",
                    self.limits.max_chain
                );
                return (out, ChainEnd::Broken(msg));
            }
            let sk = node.wrapping_sub(l.link_offset);
            if !visited.insert(sk) {
                let msg = format!("bucket {index}: cycle at socket {sk:#x}, chain cut");
                return (out, ChainEnd::Broken(msg));
            }
            if let Err(e) = self.mem.read(sk, &mut buf) {
                let msg = format!(
                    "bucket {index}: socket {sk:#x} unreadable ({e}); rest of the chain lost"
                );
                return (out, ChainEnd::Broken(msg));
            }
            let next_field = Field::bytes(l.link_offset + l.next_offset, l.pointer_size);
            let Some(next) = next_field.read(&buf, 0) else {
                return (
                    out,
                    ChainEnd::Broken(format!("bucket {index}: short socket read")),
                );
            };
            match self.entry(sk, &buf) {
                Entry::Listener(li) => out.push(li),
                Entry::Skip => {}
                Entry::Lost(msg) => self.warn(msg),
            }
            node = next;
        }
    }

    /// Reads one listed socket.
    fn entry(&mut self, sk: u64, buf: &[u8]) -> Entry {
        let l = self.layout;
        let get = |f: Field| f.read(buf, 0).unwrap_or(u64::MAX);
        if get(l.state) != TCP_LISTEN {
            self.skipped_state += 1;
            return Entry::Skip;
        }
        let family = match get(l.family) {
            AF_INET => Family::Inet,
            AF_INET6 => Family::Inet6,
            _ => {
                self.skipped_family += 1;
                return Entry::Skip;
            }
        };
        if let Some(p) = l.protocol
            && get(p) != IPPROTO_TCP
        {
            self.skipped_proto += 1;
            return Entry::Skip;
        }
        let addr = match family {
            Family::Inet => {
                let v = get(l.rcv_saddr);
                // skc_rcv_saddr is __be32: its bytes in memory are the address in network order.
                IpAddr::V4(Ipv4Addr::from(
                    (u32::try_from(v).unwrap_or(0)).to_le_bytes(),
                ))
            }
            Family::Inet6 => {
                let Some(f) = l.v6_rcv_saddr else {
                    return Entry::Lost(format!(
                        "socket {sk:#x}: AF_INET6 listener, but the BTF has no skc_v6_rcv_saddr (pre-3.13 kernel)"
                    ));
                };
                let start = usize::try_from(f.offset()).unwrap_or(usize::MAX);
                match buf
                    .get(start..start.saturating_add(16))
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                {
                    Some(b) => IpAddr::V6(Ipv6Addr::from(b)),
                    None => {
                        return Entry::Lost(format!(
                            "socket {sk:#x}: short read of the IPv6 address"
                        ));
                    }
                }
            }
        };
        let port = u16::try_from(get(l.num)).unwrap_or(0);
        // A listener always has a port (listen() binds one); port 0 in TCP_LISTEN is a socket being closed,
        // whose port the kernel released before its state changed: not a listener any more.
        if port == 0 {
            self.skipped_state += 1;
            return Entry::Skip;
        }
        let (syn_queue, syn_young) = match self.queues(buf) {
            Ok(q) => q,
            Err(e) => {
                return Entry::Lost(format!(
                    "socket {sk:#x} (port {port}): SYN queue unreadable: {e}"
                ));
            }
        };
        let netns = match l.net_ptr {
            None => 0,
            Some(f) => match self.netns(get(f)) {
                Ok(n) => n,
                Err(e) => {
                    return Entry::Lost(format!(
                        "socket {sk:#x} (port {port}): network namespace unreadable: {e}"
                    ));
                }
            },
        };
        let flag = |f: Option<Field>| {
            f.map(|f| get(f) != 0 && get(f) != u64::MAX)
                .unwrap_or(false)
        };
        let mptcp = match (l.is_mptcp, l.ulp_ops) {
            (Some(f), Some(ulp)) if f.end() > l.sock_span => {
                // Only sockets with an upper-layer protocol can be MPTCP subflows: one more small read.
                get(ulp) != 0 && self.read_field(sk, f).is_ok_and(|v| v != 0)
            }
            (f, _) => flag(f),
        };
        let kind = if mptcp {
            Kind::MptcpSubflow
        } else if flag(l.kern_sock) {
            Kind::Kernel
        } else {
            Kind::User
        };
        let d = self.details(sk, port, buf);
        Entry::Listener(Listener {
            sock: sk,
            netns,
            family,
            addr,
            port,
            bound_dev_if: l.bound_dev_if.map(get).unwrap_or(0),
            syn_queue,
            syn_young,
            accept_queue: get(l.ack_backlog),
            max_backlog: get(l.max_ack_backlog),
            kind,
            drops: d.drops,
            synflood_warned: d.synflood_warned,
            defer_accept: d.defer_accept,
            fastopen: d.fastopen,
            reuseport: d.reuseport,
            inode: d.inode,
            owners: None,
            socket: l.details.socket.and_then(|f| f.read(buf, 0)).unwrap_or(0),
        })
    }

    /// The optional details of a listener. A detail whose own read fails is `None`, with a warning; the
    /// listener and its queues stay.
    fn details(&mut self, sk: u64, port: u16, buf: &[u8]) -> Details {
        let d = &self.layout.details;
        let get = |f: Field| f.read(buf, 0);
        let mut out = Details::default();
        let mut lost: Vec<String> = Vec::new();
        if let Some(dr) = &d.drops {
            let numa = dr.numa.as_ref().and_then(|(p, c)| Some((get(*p)?, c)));
            out.drops = match numa {
                // 6.18: sk_drops_read() sums the per-NUMA counters when the socket has them.
                Some((ptr, counters)) if ptr != 0 => match self.read_struct(ptr, counters) {
                    Ok(b) => Some(counters.iter().fold(0u64, |acc, f| {
                        acc.saturating_add(counter(f.read(&b, 0).unwrap_or(0), f.bits))
                    })),
                    Err(e) => {
                        lost.push(format!("drop counters unreadable: {e}"));
                        None
                    }
                },
                _ => get(dr.sk_drops).map(|v| counter(v, dr.sk_drops.bits)),
            };
        }
        out.synflood_warned = d.synflood_warned.and_then(get).map(|v| v != 0);
        out.defer_accept = d.defer_accept.and_then(get);
        out.fastopen = match d.fastopen {
            None => None,
            Some(FastOpen::Embedded { qlen, max_qlen }) => match (get(qlen), get(max_qlen)) {
                (Some(q), Some(m)) => Some(FastOpenQueue {
                    qlen: counter(q, qlen.bits),
                    max_qlen: counter(m, max_qlen.bits),
                }),
                _ => None,
            },
            // 3.7 – 4.3: allocated when TCP_FASTOPEN is set; NULL means Fast Open is off here.
            Some(FastOpen::Pointer {
                ptr,
                qlen,
                max_qlen,
            }) => match get(ptr) {
                None | Some(0) => None,
                Some(p) => match self.read_struct(p, &[qlen, max_qlen]) {
                    Ok(b) => Some(FastOpenQueue {
                        qlen: counter(qlen.read(&b, 0).unwrap_or(0), qlen.bits),
                        max_qlen: counter(max_qlen.read(&b, 0).unwrap_or(0), max_qlen.bits),
                    }),
                    Err(e) => {
                        lost.push(format!("Fast Open queue unreadable: {e}"));
                        None
                    }
                },
            },
        };
        if let Some(r) = d.reuseport {
            out.reuseport = match get(r.cb) {
                None | Some(0) => None,
                Some(cb) => match self.read_field(cb, r.num_socks) {
                    Ok(n) => Some(ReuseportGroup { id: cb, size: n }),
                    Err(e) => {
                        lost.push(format!("reuseport group unreadable: {e}"));
                        None
                    }
                },
            };
        }
        out.inode = match d.inode {
            None => None,
            Some(Inode::Cached(f)) => get(f).filter(|&i| i != 0),
            Some(Inode::Socket { socket, ino }) => match get(socket) {
                None | Some(0) => None,
                Some(s) => match self.read_field(s, ino) {
                    Ok(i) => Some(i).filter(|&i| i != 0),
                    Err(e) => {
                        lost.push(format!("socket inode unreadable: {e}"));
                        None
                    }
                },
            },
        };
        for msg in lost {
            self.warn(format!("socket {sk:#x} (port {port}): {msg}"));
        }
        out
    }

    /// SYN queue and young counts.
    fn queues(&mut self, buf: &[u8]) -> Result<(u64, u64), ReadError> {
        let l = self.layout;
        let get = |f: Field| f.read(buf, 0).unwrap_or(0);
        match l.queue {
            Queue::Atomic { qlen, young } => Ok((
                counter(get(qlen), qlen.bits),
                counter(get(young), young.bits),
            )),
            Queue::ListenSock {
                listen_opt,
                qlen,
                young,
            } => {
                let lopt = get(listen_opt);
                if lopt == 0 {
                    return Ok((0, 0)); // never had a SYN queue allocated
                }
                let ls = self.read_struct(lopt, &[qlen, young])?;
                Ok((
                    counter(qlen.read(&ls, 0).unwrap_or(0), qlen.bits),
                    counter(young.read(&ls, 0).unwrap_or(0), young.bits),
                ))
            }
            Queue::ListenSockInc {
                listen_opt,
                qlen_inc,
                qlen_dec,
                young_inc,
                young_dec,
            } => {
                let lopt = get(listen_opt);
                if lopt == 0 {
                    return Ok((0, 0));
                }
                let ls = self.read_struct(lopt, &[qlen_inc, qlen_dec, young_inc, young_dec])?;
                let r = |f: Field| f.read(&ls, 0).unwrap_or(0);
                let diff = |a: Field, b: Field| counter(r(a).wrapping_sub(r(b)), a.bits);
                Ok((diff(qlen_inc, qlen_dec), diff(young_inc, young_dec)))
            }
        }
    }

    /// Reads the bytes of a struct that cover `fields`.
    fn read_struct(&self, addr: u64, fields: &[Field]) -> Result<Vec<u8>, ReadError> {
        let end = fields.iter().map(Field::end).max().unwrap_or(0);
        let mut v = vec![0u8; usize::try_from(end).unwrap_or(0).min(1 << 16)];
        self.mem.read(addr, &mut v)?;
        Ok(v)
    }

    /// Reads one field of the struct at `addr`, and only its bytes.
    fn read_field(&self, addr: u64, f: Field) -> Result<u64, ReadError> {
        let mut b = [0u8; 9];
        let len = usize::try_from(f.end() - f.offset()).unwrap_or(usize::MAX);
        let slot = b.get_mut(..len).ok_or(ReadError::TooLarge { addr, len })?;
        self.mem.read(addr.wrapping_add(f.offset()), slot)?;
        f.read(slot, f.offset())
            .ok_or(ReadError::TooLarge { addr, len })
    }

    /// The namespace inode of a `struct net *`, cached per namespace.
    fn netns(&mut self, net: u64) -> Result<u64, ReadError> {
        if let Some(r) = self.netns_cache.get(&net) {
            return r.clone();
        }
        let r = match self.layout.net_inum {
            None => Ok(0),
            Some(f) => self
                .read_struct(net, &[f])
                .map(|b| f.read(&b, 0).unwrap_or(0)),
        };
        self.netns_cache.insert(net, r.clone());
        r
    }
}

/// The optional details of one listener, as [`Walker::details`] reads them.
#[derive(Default)]
struct Details {
    drops: Option<u64>,
    synflood_warned: Option<bool>,
    defer_accept: Option<u64>,
    fastopen: Option<FastOpenQueue>,
    reuseport: Option<ReuseportGroup>,
    inode: Option<u64>,
}

/// A kernel counter (int / atomic_t) as a count: negative values are transient races and read as 0.
fn counter(v: u64, bits: u32) -> u64 {
    if bits == 0 || bits >= 64 {
        return v;
    }
    let sign = 1u64 << (bits - 1);
    if v & sign != 0 { 0 } else { v }
}
