//! Output: the readable table, the JSON object and the one-number total.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::walk::Listener;
use crate::walk::netns::Namespace;
use crate::walk::requests::{Request, prefix};

/// What a run found, ready to print.
pub struct Report {
    pub release: String,
    pub source: String,
    /// Where tcp_hashinfo's address came from.
    pub symbols: String,
    pub btf: String,
    pub era: String,
    pub listeners: Vec<Listener>,
    /// The network namespaces (JSON, and the table with `--wide`); `None` when not read.
    pub namespaces: Option<Vec<Namespace>>,
    /// The half-open requests (`--requests`); `None` when not asked or not readable.
    pub requests: Option<Vec<Request>>,
    pub warnings: Vec<String>,
}

/// How many prefixes the per-listener summary names.
const TOP_SOURCES: usize = 5;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub listeners: u64,
    pub syn_queue: u64,
    pub syn_young: u64,
    pub accept_queue: u64,
}

impl Report {
    /// Sorts listeners by network namespace, then address, then port (then socket, for a stable order).
    pub fn sort(&mut self) {
        // The order of (netns, addr, port, sock), with the address as one integer (IPv4 before IPv6, as
        // IpAddr orders them): comparing IpAddr enums made this 2.5 ms natively for 10,000 listeners, some
        // 70 ms under emulation. sock is unique, so no stability is needed.
        fn key(l: &Listener) -> (u64, u8, u128, u16, u64) {
            let (v6, addr) = match l.addr {
                IpAddr::V4(a) => (0, u128::from(u32::from(a))),
                IpAddr::V6(a) => (1, u128::from(a)),
            };
            (l.netns, v6, addr, l.port, l.sock)
        }
        self.listeners.sort_by_cached_key(key);
    }

    /// Plain words for what a namespace's figures say, as the kernel would put them.
    pub fn verdicts(&self, ns: &Namespace) -> Vec<String> {
        let mut v = Vec::new();
        let counter = |name: &str| {
            ns.counters
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|c| c.1)
        };
        if ns.syncookies == Some(2) || counter("SyncookiesSent").is_some_and(|c| c > 0) {
            v.push("SYN cookies in use".to_string());
        }
        for l in self.listeners.iter().filter(|l| l.netns == ns.inum) {
            let full_syn = l.max_backlog > 0 && l.syn_queue >= l.max_backlog;
            let full_acc = l.max_backlog > 0 && l.accept_queue >= l.max_backlog;
            if full_syn || full_acc {
                let which = match (full_syn, full_acc) {
                    (true, true) => "SYN and accept queues",
                    (true, false) => "SYN queue",
                    _ => "accept queue",
                };
                v.push(format!("queue at limit: {} {which}", addr_port(l)));
            }
        }
        v
    }

    /// Per listener (by sock), its requests' remote prefixes by count, most first; and how many requests
    /// have no listener among those reported.
    pub fn sources(&self) -> (std::collections::HashMap<u64, Vec<(String, u64)>>, u64) {
        let mut per: std::collections::HashMap<u64, std::collections::BTreeMap<String, u64>> =
            std::collections::HashMap::new();
        let known: std::collections::HashSet<u64> = self.listeners.iter().map(|l| l.sock).collect();
        let mut orphans = 0;
        for r in self.requests.iter().flatten() {
            if !known.contains(&r.listener) {
                orphans += 1;
                continue;
            }
            *per.entry(r.listener)
                .or_default()
                .entry(prefix(r.remote))
                .or_default() += 1;
        }
        let out = per
            .into_iter()
            .map(|(sk, m)| {
                let mut v: Vec<(String, u64)> = m.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                (sk, v)
            })
            .collect();
        (out, orphans)
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for l in &self.listeners {
            t.listeners += 1;
            t.syn_queue = t.syn_queue.saturating_add(l.syn_queue);
            t.syn_young = t.syn_young.saturating_add(l.syn_young);
            t.accept_queue = t.accept_queue.saturating_add(l.accept_queue);
        }
        t
    }

    /// The `--json` object, serialized straight from borrowed data (no intermediate value tree: with
    /// 10,000 listeners that tree costs more than the walk itself under emulation).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512 + 256 * self.listeners.len());
        // Writing into a Vec cannot fail, nor can serializing strings and integers.
        let _ = self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The `--json` object written straight to `w` (no copy of the whole text in memory: at 100,000 listeners
    /// that is some 30 MiB).
    pub fn write_json<W: std::io::Write>(&self, w: W) -> std::io::Result<()> {
        let t = self.totals();
        let doc = JsonDoc {
            kernel: JsonKernel {
                release: &self.release,
                source: &self.source,
                symbols: &self.symbols,
                btf: &self.btf,
                layout: &self.era,
            },
            listeners: JsonListeners(&self.listeners),
            namespaces: self.namespaces.as_ref().map(|ns| {
                ns.iter()
                    .map(|n| JsonNamespace {
                        netns: n.inum,
                        somaxconn: n.somaxconn,
                        tcp_max_syn_backlog: n.max_syn_backlog,
                        tcp_syncookies: n.syncookies,
                        tcp_synack_retries: n.synack_retries,
                        counters: n.counters.iter().map(|(k, v)| (*k, *v)).collect(),
                        verdicts: self.verdicts(n),
                    })
                    .collect()
            }),
            requests: self.requests.as_ref().map(|list| {
                let (sources, orphans) = self.sources();
                JsonRequests {
                    count: list.len() as u64,
                    orphans,
                    top_sources: self
                        .listeners
                        .iter()
                        .filter_map(|l| {
                            sources.get(&l.sock).map(|v| JsonSources {
                                listener: format!("{:#x}", l.sock),
                                netns: l.netns,
                                addr: l.addr.to_string(),
                                port: l.port,
                                top: v
                                    .iter()
                                    .take(TOP_SOURCES)
                                    .map(|(p, c)| JsonPrefix {
                                        prefix: p.clone(),
                                        count: *c,
                                    })
                                    .collect(),
                            })
                        })
                        .collect(),
                    list: list
                        .iter()
                        .map(|r| JsonRequest {
                            listener: format!("{:#x}", r.listener),
                            family: r.family.name(),
                            remote_addr: r.remote.to_string(),
                            remote_port: r.remote_port,
                            local_port: r.local_port,
                            retransmits: r.retransmits,
                            expires_in_jiffies: r.expires_in,
                        })
                        .collect(),
                }
            }),
            totals: t,
            warnings: &self.warnings,
        };
        // Serialization of these types cannot fail (they hold only strings and integers): an error is the
        // writer's.
        serde_json::to_writer(w, &doc).map_err(std::io::Error::from)
    }

    /// The table; with `wide`, each namespace's sysctls, counters and verdicts under it; with requests,
    /// their count and each listener's top remote prefixes.
    pub fn to_table_wide(&self, wide: bool) -> String {
        let mut out = self.to_table();
        if let Some(list) = &self.requests {
            let (sources, orphans) = self.sources();
            let _ = writeln!(
                out,
                "half-open requests: {} listed ({orphans} whose listener was not found)",
                list.len()
            );
            for l in &self.listeners {
                if let Some(v) = sources.get(&l.sock) {
                    let n: u64 = v.iter().map(|x| x.1).sum();
                    let top: Vec<String> = v
                        .iter()
                        .take(TOP_SOURCES)
                        .map(|(p, c)| format!("{p} ({c})"))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  {} {}: {n} from {}",
                        l.netns,
                        addr_port(l),
                        top.join(", ")
                    );
                }
            }
        }
        if !wide {
            return out;
        }
        match &self.namespaces {
            None => {
                out.push_str("namespaces: not read (the BTF or the symbols do not describe them)\n")
            }
            Some(list) => {
                for ns in list {
                    let o = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
                    let _ = writeln!(
                        out,
                        "netns {}: somaxconn {}, tcp_max_syn_backlog {}, tcp_syncookies {}, tcp_synack_retries {}",
                        ns.inum,
                        o(ns.somaxconn),
                        o(ns.max_syn_backlog),
                        o(ns.syncookies),
                        o(ns.synack_retries)
                    );
                    let counters: Vec<String> = ns
                        .counters
                        .iter()
                        .map(|(n, v)| format!("{n} {}", o(*v)))
                        .collect();
                    let _ = writeln!(out, "  {}", counters.join(", "));
                    for v in self.verdicts(ns) {
                        let _ = writeln!(out, "  {v}");
                    }
                }
            }
        }
        out
    }

    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 10]> = vec![[
            "NETNS".into(),
            "FAMILY".into(),
            "LOCAL ADDRESS:PORT".into(),
            "SYN-Q".into(),
            "YOUNG".into(),
            "ACCEPT-Q".into(),
            "BACKLOG".into(),
            "DROPS".into(),
            "PROCESS".into(),
            "NOTE".into(),
        ]];
        for l in &self.listeners {
            let addr = addr_port(l);
            let mut note = l.kind.label().unwrap_or("").to_string();
            let add = |note: &mut String, text: std::fmt::Arguments| {
                if !note.is_empty() {
                    note.push(' ');
                }
                let _ = note.write_fmt(text);
            };
            if l.bound_dev_if != 0 {
                add(&mut note, format_args!("ifindex={}", l.bound_dev_if));
            }
            if l.synflood_warned == Some(true) {
                add(&mut note, format_args!("synflood"));
            }
            rows.push([
                l.netns.to_string(),
                l.family.name().into(),
                addr,
                l.syn_queue.to_string(),
                l.syn_young.to_string(),
                l.accept_queue.to_string(),
                l.max_backlog.to_string(),
                l.drops.map_or_else(|| "-".into(), |d| d.to_string()),
                process(l),
                note,
            ]);
        }
        let mut width = [0usize; 10];
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &rows {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(width.iter()).enumerate() {
                // Text columns left-aligned, numbers right-aligned.
                if (3..=7).contains(&i) {
                    let _ = write!(line, "{c:>w$}  ");
                } else {
                    let _ = write!(line, "{c:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let t = self.totals();
        let _ = writeln!(
            out,
            "total: {} listeners, {} half-open in SYN queues ({} young), {} waiting in accept queues",
            t.listeners, t.syn_queue, t.syn_young, t.accept_queue
        );
        out
    }
}

/// The PROCESS column: the first owner as `comm[pid]`, plus how many others; `-` when not looked for.
fn process(l: &Listener) -> String {
    match l.owners.as_deref() {
        None => "-".into(),
        Some([]) => String::new(),
        Some([first]) => format!("{}[{}]", first.comm, first.pid),
        Some([first, rest @ ..]) => format!("{}[{}] +{}", first.comm, first.pid, rest.len()),
    }
}

#[derive(Serialize)]
struct JsonOwner<'a> {
    pid: u64,
    comm: &'a str,
}

fn addr_port(l: &Listener) -> String {
    match l.addr {
        std::net::IpAddr::V4(a) => format!("{a}:{}", l.port),
        std::net::IpAddr::V6(a) => format!("[{a}]:{}", l.port),
    }
}

#[derive(Serialize)]
struct JsonRequests {
    count: u64,
    orphans: u64,
    top_sources: Vec<JsonSources>,
    list: Vec<JsonRequest>,
}

#[derive(Serialize)]
struct JsonSources {
    listener: String,
    netns: u64,
    addr: String,
    port: u16,
    top: Vec<JsonPrefix>,
}

#[derive(Serialize)]
struct JsonPrefix {
    prefix: String,
    count: u64,
}

#[derive(Serialize)]
struct JsonRequest {
    listener: String,
    family: &'static str,
    remote_addr: String,
    remote_port: u16,
    local_port: u16,
    retransmits: u64,
    expires_in_jiffies: Option<i64>,
}

#[derive(Serialize)]
struct JsonNamespace {
    netns: u64,
    somaxconn: Option<u64>,
    tcp_max_syn_backlog: Option<u64>,
    tcp_syncookies: Option<u64>,
    tcp_synack_retries: Option<u64>,
    counters: std::collections::BTreeMap<&'static str, Option<u64>>,
    verdicts: Vec<String>,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    kernel: JsonKernel<'a>,
    listeners: JsonListeners<'a>,
    namespaces: Option<Vec<JsonNamespace>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<JsonRequests>,
    totals: Totals,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct JsonKernel<'a> {
    release: &'a str,
    source: &'a str,
    symbols: &'a str,
    btf: &'a str,
    layout: &'a str,
}

/// Listeners serialized in place: addresses and socket pointers are written straight into the output,
/// without a string per field.
struct JsonListeners<'a>(&'a [Listener]);

impl Serialize for JsonListeners<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct One<'a>(&'a Listener);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let l = self.0;
                let mut st = s.serialize_struct("Listener", 18)?;
                st.serialize_field("netns", &l.netns)?;
                st.serialize_field("family", l.family.name())?;
                st.serialize_field("addr", &Display(&l.addr))?;
                st.serialize_field("port", &l.port)?;
                st.serialize_field("syn_queue", &l.syn_queue)?;
                st.serialize_field("syn_young", &l.syn_young)?;
                st.serialize_field("accept_queue", &l.accept_queue)?;
                st.serialize_field("max_backlog", &l.max_backlog)?;
                st.serialize_field("bound_dev_if", &l.bound_dev_if)?;
                st.serialize_field("kind", &l.kind.label())?;
                st.serialize_field("sock", &Display(&format_args!("{:#x}", l.sock)))?;
                st.serialize_field("drops", &l.drops)?;
                st.serialize_field("synflood_warned", &l.synflood_warned)?;
                st.serialize_field("defer_accept", &l.defer_accept)?;
                st.serialize_field(
                    "fastopen",
                    &l.fastopen.map(|f| JsonFastOpen {
                        qlen: f.qlen,
                        max_qlen: f.max_qlen,
                    }),
                )?;
                st.serialize_field(
                    "reuseport",
                    &l.reuseport.map(|r| JsonReuseport {
                        group: format!("{:#x}", r.id),
                        size: r.size,
                    }),
                )?;
                st.serialize_field("inode", &l.inode)?;
                st.serialize_field(
                    "owners",
                    &l.owners.as_ref().map(|v| {
                        v.iter()
                            .map(|o| JsonOwner {
                                pid: o.pid,
                                comm: &o.comm,
                            })
                            .collect::<Vec<_>>()
                    }),
                )?;
                st.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for l in self.0 {
            seq.serialize_element(&One(l))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct JsonFastOpen {
    qlen: u64,
    max_qlen: u64,
}

#[derive(Serialize)]
struct JsonReuseport {
    group: String,
    size: u64,
}

/// Any `Display` as a JSON string, formatted directly into the output.
struct Display<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for Display<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{Family, Kind};

    fn listener(netns: u64, addr: IpAddr, port: u16, sock: u64) -> Listener {
        Listener {
            sock,
            netns,
            family: if addr.is_ipv4() {
                Family::Inet
            } else {
                Family::Inet6
            },
            addr,
            port,
            bound_dev_if: 0,
            syn_queue: 0,
            syn_young: 0,
            accept_queue: 0,
            max_backlog: 0,
            kind: Kind::User,
            drops: None,
            synflood_warned: None,
            defer_accept: None,
            fastopen: None,
            reuseport: None,
            inode: None,
            owners: None,
            socket: 0,
        }
    }

    /// The integer key orders as (netns, addr, port, sock) with IpAddr's own order (IPv4 before IPv6).
    #[test]
    fn listeners_sort_as_netns_address_port_sock() {
        let addrs: [IpAddr; 5] = [
            "10.0.0.1".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "::".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        ];
        let mut all = Vec::new();
        let mut sock = 0u64;
        for netns in [7u64, 3] {
            for a in addrs.iter().rev() {
                for port in [443u16, 22, 8080] {
                    for _ in 0..2 {
                        sock = sock
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        all.push(listener(netns, *a, port, sock >> 8));
                    }
                }
            }
        }
        let mut want = all.clone();
        want.sort_by(|a, b| {
            (a.netns, a.addr, a.port, a.sock).cmp(&(b.netns, b.addr, b.port, b.sock))
        });
        let mut rep = Report {
            release: String::new(),
            source: String::new(),
            symbols: String::new(),
            btf: String::new(),
            era: String::new(),
            listeners: all,
            namespaces: None,
            requests: None,
            warnings: Vec::new(),
        };
        rep.sort();
        let order = |v: &[Listener]| {
            v.iter()
                .map(|l| (l.netns, l.addr, l.port, l.sock))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&rep.listeners), order(&want));
        assert_eq!(rep.listeners[0].addr, addrs[0]);
        assert!(rep.listeners.last().unwrap().addr.is_ipv6());
    }
}
