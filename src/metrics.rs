//! Prometheus exposition of a [`Report`]: the text format (0.0.4) that `promtool`, node_exporter's textfile
//! collector and a Prometheus server all read, encoded by the `prometheus` crate (tikv/rust-prometheus, whose
//! text encoder writes counters under their full `_total` names; OpenMetrics-only encoders do not, which
//! node_exporter's textfile parser would misread).
//!
//! Names carry the `synq_` prefix and base units; a queue's length and its limit are separate metrics;
//! counters end in `_total`. Labels: `netns` (the namespace's inode number), `family`, `addr`, `port`, `owner`
//! (the first owning process's comm; empty for a kernel listener). The members of an SO_REUSEPORT group share
//! those labels: their figures are summed, and `synq_listener_sockets` says how many sockets a series holds.
//! `max_series` bounds the per-listener series; beyond it the fullest listeners are kept and
//! `synq_series_limit_exceeded` says so. No client timestamps.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::report::Report;
use crate::session::Error;
use crate::walk::Listener;

/// Series per listener key: sockets, syn_queue, syn_queue_young, accept_queue, accept_queue_limit, drops,
/// synflood_warned.
pub const SERIES_PER_LISTENER: usize = 7;

/// The default `--max-series`.
pub const DEFAULT_MAX_SERIES: usize = 100_000;

/// How to expose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Per-listener series at most (`--max-series`).
    pub max_series: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

/// What the caller knows about the scrape itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scrape {
    /// How long the walk took.
    pub duration: Duration,
    /// Warnings over the life of the process (one-shot: this run's).
    pub warnings_total: u64,
}

/// A namespace TcpExt counter (as `/proc/net/netstat` names it) → the metric's name.
const NETNS_COUNTERS: [(&str, &str, &str); 7] = [
    (
        "ListenOverflows",
        "synq_netns_listen_overflows_total",
        "Times an accept queue was full when a connection completed (TcpExt ListenOverflows).",
    ),
    (
        "ListenDrops",
        "synq_netns_listen_drops_total",
        "SYNs and completions dropped by listeners, overflows included (TcpExt ListenDrops).",
    ),
    (
        "SyncookiesSent",
        "synq_netns_syncookies_sent_total",
        "SYN cookies sent (TcpExt SyncookiesSent).",
    ),
    (
        "SyncookiesRecv",
        "synq_netns_syncookies_recv_total",
        "Valid SYN cookies received (TcpExt SyncookiesRecv).",
    ),
    (
        "SyncookiesFailed",
        "synq_netns_syncookies_failed_total",
        "Invalid SYN cookies received (TcpExt SyncookiesFailed).",
    ),
    (
        "TCPReqQFullDrop",
        "synq_netns_req_queue_full_drops_total",
        "SYNs dropped because a SYN queue was full and cookies were off (TcpExt TCPReqQFullDrop).",
    ),
    (
        "TCPReqQFullDoCookies",
        "synq_netns_req_queue_full_cookies_total",
        "SYN cookies sent because a SYN queue was full (TcpExt TCPReqQFullDoCookies).",
    ),
];

/// The text exposition of `rep` (one-shot: `--prometheus`, `--textfile`).
pub fn render(rep: &Report, settings: &Settings, scrape: Scrape) -> String {
    let mut out = String::new();
    Exposition::new(settings.clone()).render_into(rep, scrape, &mut out);
    out
}

/// The labels of a per-listener series, typed: they sort numerically and compare without allocating.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    netns: u64,
    family: crate::walk::Family,
    addr: IpAddr,
    port: u16,
    owner: &'a str,
}

impl Key<'_> {
    fn of(l: &Listener) -> Key<'_> {
        Key {
            netns: l.netns,
            family: l.family,
            addr: l.addr,
            port: l.port,
            owner: owner(l),
        }
    }

    /// The label pairs, sorted by name as Prometheus's own registries give them.
    fn label_pairs(&self) -> Vec<LabelPair> {
        vec![
            label("addr", self.addr.to_string()),
            label("family", self.family.name().to_string()),
            label("netns", self.netns.to_string()),
            label("owner", self.owner.to_string()),
            label("port", self.port.to_string()),
        ]
    }
}

/// The owner label of a listener: its first owner's comm, empty when it has none (or none were read).
fn owner(l: &Listener) -> &str {
    l.owners
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.comm.as_str())
        .unwrap_or_default()
}

/// The figures of one label set: its listeners (an SO_REUSEPORT group's members) summed.
struct Group<'a> {
    key: Key<'a>,
    sockets: u64,
    syn: u64,
    young: u64,
    accept: u64,
    limit: u64,
    /// Absent unless every member has the field (before 4.7 none has): no series rather than a false 0.
    drops: Option<u64>,
    flood: Option<bool>,
}

impl<'a> Group<'a> {
    fn new(key: Key<'a>) -> Group<'a> {
        Group {
            key,
            sockets: 0,
            syn: 0,
            young: 0,
            accept: 0,
            limit: 0,
            drops: Some(0),
            flood: Some(false),
        }
    }

    fn add(&mut self, l: &Listener) {
        self.sockets = self.sockets.saturating_add(1);
        self.syn = self.syn.saturating_add(l.syn_queue);
        self.young = self.young.saturating_add(l.syn_young);
        self.accept = self.accept.saturating_add(l.accept_queue);
        self.limit = self.limit.saturating_add(l.max_backlog);
        self.drops = self.drops.zip(l.drops).map(|(a, b)| a.saturating_add(b));
        self.flood = self.flood.zip(l.synflood_warned).map(|(a, b)| a || b);
    }

    /// Which listeners to keep when they must be cut to `--max-series`: the fullest, then the most dropping.
    fn weight(&self) -> (u64, u64) {
        (
            self.syn.saturating_add(self.accept),
            self.drops.unwrap_or(0),
        )
    }

    /// The per-listener families' values, in [`PER_LISTENER`] order (`None`: no series).
    fn values(&self) -> [Option<f64>; SERIES_PER_LISTENER] {
        [
            Some(f(self.sockets)),
            Some(f(self.syn)),
            Some(f(self.young)),
            Some(f(self.accept)),
            Some(f(self.limit)),
            self.drops.map(f),
            self.flood.map(|w| if w { 1.0 } else { 0.0 }),
        ]
    }
}

/// The per-listener families: name, help, counter (else gauge).
const PER_LISTENER: [(&str, &str, bool); SERIES_PER_LISTENER] = [
    (
        "synq_listener_sockets",
        "Listening sockets under these labels (an SO_REUSEPORT group has several).",
        false,
    ),
    (
        "synq_syn_queue",
        "Half-open requests (SYN received, SYN-ACK sent, no final ACK yet) in the SYN queue.",
        false,
    ),
    (
        "synq_syn_queue_young",
        "Half-open requests whose SYN-ACK was not retransmitted yet.",
        false,
    ),
    (
        "synq_accept_queue",
        "Completed connections waiting for accept().",
        false,
    ),
    (
        "synq_accept_queue_limit",
        "The accept-queue limit: listen(2)'s backlog, capped by net.core.somaxconn.",
        false,
    ),
    (
        "synq_listener_drops_total",
        "Packets the listener dropped (sk_drops; ss -ltm's d): SYNs refused by a full queue among them.",
        true,
    ),
    (
        "synq_listener_synflood_warned",
        "1 when the listener has hit a full SYN queue (the kernel's \"Possible SYN flooding\" warning).",
        false,
    ),
];

/// A sample's value, set in place.
fn set_value(m: &mut Metric, counter: bool, v: f64) {
    if counter {
        let mut c = Counter::default();
        c.set_value(v);
        m.set_counter(c);
    } else {
        let mut g = Gauge::default();
        g.set_value(v);
        m.set_gauge(g);
    }
}

/// A family of label-less or namespace samples, built anew on every scrape (they are few).
fn family(
    name: &str,
    help: &str,
    counter: bool,
    samples: Vec<(Vec<LabelPair>, f64)>,
) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(if counter {
        MetricType::COUNTER
    } else {
        MetricType::GAUGE
    });
    mf.set_metric(
        samples
            .into_iter()
            .map(|(label, v)| {
                let mut m = Metric::from_label(label);
                set_value(&mut m, counter, v);
                m
            })
            .collect(),
    );
    mf
}

/// One label pair.
fn label(name: &str, value: String) -> LabelPair {
    let mut p = LabelPair::default();
    p.set_name(name.to_string());
    p.set_value(value);
    p
}

/// A label set seen by the last scrape, with which of the optional series it had.
#[derive(PartialEq, Eq)]
struct Shape {
    netns: u64,
    family: crate::walk::Family,
    addr: IpAddr,
    port: u16,
    owner: String,
    drops: bool,
    flood: bool,
}

impl Shape {
    fn matches(&self, g: &Group) -> bool {
        let k = &g.key;
        self.netns == k.netns
            && self.family == k.family
            && self.addr == k.addr
            && self.port == k.port
            && self.owner == k.owner
            && self.drops == g.drops.is_some()
            && self.flood == g.flood.is_some()
    }
}

/// The exposition kept between the scrapes of `synq serve`. Its per-listener part is the `prometheus`
/// crate's own encoding of the last label sets, kept as text with the position of every sample's value; while
/// the label sets stay the same, a scrape writes that text with only the values replaced, formatted as the
/// crate formats them (`f64`'s `Display`). Building and encoding 7 series of 5 labels for each listener is
/// otherwise nearly all of a scrape's cost (about 1 µs a sample natively).
pub struct Exposition {
    settings: Settings,
    /// The label sets of `text`, in order.
    shape: Vec<Shape>,
    /// The per-listener families as the crate encoded them.
    text: String,
    /// Where each sample's value lies in `text`, in encoding order (family by family).
    values: Vec<std::ops::Range<usize>>,
}

impl Exposition {
    pub fn new(settings: Settings) -> Exposition {
        Exposition {
            settings,
            shape: Vec::new(),
            text: String::new(),
            values: Vec::new(),
        }
    }

    /// The listeners grouped by label set, in label order, cut to `--max-series`; and how many were cut.
    fn groups<'r>(&self, rep: &'r Report) -> (Vec<Group<'r>>, usize) {
        let mut keyed: Vec<(Key, &Listener)> =
            rep.listeners.iter().map(|l| (Key::of(l), l)).collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<Group> = Vec::new();
        for (key, l) in keyed {
            match groups.last_mut() {
                Some(g) if g.key == key => g.add(l),
                _ => {
                    let mut g = Group::new(key);
                    g.add(l);
                    groups.push(g);
                }
            }
        }
        let max_keys = self.settings.max_series / SERIES_PER_LISTENER;
        let omitted = groups.len().saturating_sub(max_keys);
        if omitted > 0 {
            groups.sort_by(|a, b| b.weight().cmp(&a.weight()).then_with(|| a.key.cmp(&b.key)));
            groups.truncate(max_keys);
            groups.sort_by(|a, b| a.key.cmp(&b.key));
        }
        (groups, omitted)
    }

    /// Writes the per-listener families of `groups` to `out`: the kept text with new values when the label
    /// sets are the last scrape's, else encoded anew (and kept).
    fn per_listener(&mut self, groups: &[Group], out: &mut String) {
        let same = self.shape.len() == groups.len()
            && self.shape.iter().zip(groups).all(|(s, g)| s.matches(g));
        if same && self.refill(groups, out) {
            return;
        }
        self.encode(groups);
        out.push_str(&self.text);
    }

    /// The kept text with the values of `groups` (false, writing nothing, if they do not fit it).
    fn refill(&self, groups: &[Group], out: &mut String) -> bool {
        use std::fmt::Write;
        let values = groups.iter().map(Group::values).collect::<Vec<_>>();
        let in_order = (0..SERIES_PER_LISTENER).flat_map(|i| {
            values
                .iter()
                .filter_map(move |v| v.get(i).copied().flatten())
        });
        if in_order.clone().count() != self.values.len() {
            return false;
        }
        let mut at = 0;
        for (v, range) in in_order.zip(&self.values) {
            out.push_str(self.text.get(at..range.start).unwrap_or_default());
            let _ = write!(out, "{v}");
            at = range.end;
        }
        out.push_str(self.text.get(at..).unwrap_or_default());
        true
    }

    /// Encodes the per-listener families of `groups` with the crate, keeping the text and where its values are.
    fn encode(&mut self, groups: &[Group]) {
        let mut samples: Vec<Vec<(Vec<LabelPair>, f64)>> = (0..SERIES_PER_LISTENER)
            .map(|_| Vec::with_capacity(groups.len()))
            .collect();
        for g in groups {
            let labels = g.key.label_pairs();
            for (v, s) in g.values().into_iter().zip(samples.iter_mut()) {
                if let Some(v) = v {
                    s.push((labels.clone(), v));
                }
            }
        }
        let families: Vec<MetricFamily> = PER_LISTENER
            .iter()
            .zip(samples)
            .map(|((name, help, counter), s)| family(name, help, *counter, s))
            .collect();
        self.text.clear();
        encode(&families, &mut self.text);
        drop(families);
        // A sample line is `name{labels} value`: the value follows the line's last space (label values may
        // hold spaces, but a newline in one is escaped, and the crate writes no timestamp).
        self.values.clear();
        let mut at = 0;
        for line in self.text.split_inclusive('\n') {
            let body = line.strip_suffix('\n').unwrap_or(line);
            if !body.starts_with('#')
                && let Some(space) = body.rfind(' ')
            {
                self.values.push(at + space + 1..at + body.len());
            }
            at += line.len();
        }
        self.shape = groups
            .iter()
            .map(|g| Shape {
                netns: g.key.netns,
                family: g.key.family,
                addr: g.key.addr,
                port: g.key.port,
                owner: g.key.owner.to_string(),
                drops: g.drops.is_some(),
                flood: g.flood.is_some(),
            })
            .collect();
    }

    /// The text exposition of `rep`, written over `out` (whose capacity a resident exporter keeps).
    pub fn render_into(&mut self, rep: &Report, scrape: Scrape, out: &mut String) {
        out.clear();
        let (groups, omitted) = self.groups(rep);
        self.per_listener(&groups, out);
        encode(&others(rep, scrape, omitted), out);
    }
}

/// Appends the crate's text encoding of `families` to `out`. Families without a sample are left out (the
/// encoder refuses them), as a registry's gather() does.
fn encode(families: &[MetricFamily], out: &mut String) {
    let encoder = prometheus::TextEncoder::new();
    for mf in families.iter().filter(|mf| !mf.get_metric().is_empty()) {
        if let Err(e) = encoder.encode_utf8(std::slice::from_ref(mf), out) {
            // Only a metric definition synq itself got wrong can fail; say so in the output.
            out.push_str(&format!(
                "# synq: internal error building the metrics: {e}\n"
            ));
        }
    }
}

/// A count as a sample value (exact up to 2^53; the kernel's counts stay far below).
fn f(v: u64) -> f64 {
    v as f64
}

/// The families that are not per listener: the --max-series state, the namespaces, the scrape itself.
fn others(rep: &Report, scrape: Scrape, omitted: usize) -> Vec<MetricFamily> {
    let mut families = vec![
        family(
            "synq_series_limit_exceeded",
            "1 when there were more listeners than --max-series allows: the fullest were kept.",
            false,
            vec![(Vec::new(), if omitted > 0 { 1.0 } else { 0.0 })],
        ),
        family(
            "synq_listeners_omitted",
            "Listener label sets left out because of --max-series.",
            false,
            vec![(Vec::new(), omitted as f64)],
        ),
    ];

    // Per network namespace: the listen sysctls and the TcpExt counters.
    const SYSCTLS: [(&str, &str); 4] = [
        (
            "synq_netns_somaxconn",
            "net.core.somaxconn: the cap on every listen(2) backlog.",
        ),
        (
            "synq_netns_tcp_max_syn_backlog",
            "net.ipv4.tcp_max_syn_backlog.",
        ),
        (
            "synq_netns_tcp_syncookies",
            "net.ipv4.tcp_syncookies: 0 off, 1 when a SYN queue overflows, 2 always.",
        ),
        (
            "synq_netns_tcp_synack_retries",
            "net.ipv4.tcp_synack_retries: SYN-ACK retransmits before a request is dropped.",
        ),
    ];
    let mut sysctls: [Vec<(Vec<LabelPair>, f64)>; 4] = Default::default();
    let mut counters: Vec<Vec<(Vec<LabelPair>, f64)>> =
        NETNS_COUNTERS.iter().map(|_| Vec::new()).collect();
    for ns in rep.namespaces.iter().flatten() {
        let k = || vec![label("netns", ns.inum.to_string())];
        for (s, val) in sysctls.iter_mut().zip([
            ns.somaxconn,
            ns.max_syn_backlog,
            ns.syncookies,
            ns.synack_retries,
        ]) {
            if let Some(val) = val {
                s.push((k(), f(val)));
            }
        }
        for (s, (kernel_name, _, _)) in counters.iter_mut().zip(NETNS_COUNTERS) {
            let val = ns
                .counters
                .iter()
                .find(|(n, _)| *n == kernel_name)
                .and_then(|c| c.1);
            if let Some(val) = val {
                s.push((k(), f(val)));
            }
        }
    }
    families.extend(
        SYSCTLS
            .iter()
            .zip(sysctls)
            .map(|((name, help), s)| family(name, help, false, s)),
    );
    families.extend(
        NETNS_COUNTERS
            .iter()
            .zip(counters)
            .map(|((_, name, help), s)| family(name, help, true, s)),
    );

    // The scrape itself.
    families.push(family(
        "synq_scrape_duration_seconds",
        "How long synq took to walk kernel memory for these figures.",
        false,
        vec![(Vec::new(), scrape.duration.as_secs_f64())],
    ));
    families.push(family(
        "synq_walk_warnings_total",
        "Warnings while walking (a page unreadable, the kernel changing under the walk): figures may be partial.",
        true,
        vec![(Vec::new(), f(scrape.warnings_total))],
    ));
    families.push(family(
        "synq_build_info",
        "synq's version, and the kernel it reads (always 1).",
        false,
        vec![(
            vec![
                label("release", rep.release.clone()),
                label("source", rep.source.clone()),
                label("version", env!("CARGO_PKG_VERSION").to_string()),
            ],
            1.0,
        )],
    ));
    families
}

/// `--textfile PATH`: a temporary file created beside PATH before the privilege drop (which forbids opening
/// files), then written and renamed over PATH, so node_exporter never reads half a file.
pub struct Textfile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl Textfile {
    /// Creates the temporary file (`.PATH-NAME.PID.tmp`, new, mode 0644 less the umask).
    pub fn prepare(path: &Path) -> Result<Textfile, Error> {
        let err = |why: String| Error::Textfile {
            path: path.to_path_buf(),
            why,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| err("not a file name".into()))?;
        if !name.ends_with(".prom") {
            return Err(err(
                "node_exporter's textfile collector reads only files named *.prom: give a name ending in .prom"
                    .into(),
            ));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::File::create_new(&tmp).map_err(|e| {
            err(format!(
                "cannot create {} beside it: {e} — the directory must exist and be writable (node_exporter's \
                 --collector.textfile.directory)",
                tmp.display()
            ))
        })?;
        Ok(Textfile {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// Writes `bytes` to the temporary file and renames it over the path.
    pub fn write(mut self, bytes: &[u8]) -> Result<(), Error> {
        use std::io::Write;
        let file = self.file.take();
        let result = file
            .ok_or_else(|| std::io::Error::other("already written"))
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        result.map_err(|e| Error::Textfile {
            path: self.path.clone(),
            why: format!("writing it through {}: {e}", self.tmp.display()),
        })
    }
}

impl Drop for Textfile {
    /// A temporary file left unrenamed (an error before the write) is removed.
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::netns::Namespace;
    use crate::walk::owners::Owner;
    use crate::walk::{Family, Kind};

    fn listener(port: u16, syn: u64, drops: Option<u64>) -> Listener {
        Listener {
            sock: 0x1000 + u64::from(port),
            netns: 4026531840,
            family: Family::Inet,
            addr: "192.0.2.1"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            port,
            bound_dev_if: 0,
            syn_queue: syn,
            syn_young: syn / 2,
            accept_queue: 1,
            max_backlog: 128,
            kind: Kind::User,
            drops,
            synflood_warned: Some(syn > 100),
            defer_accept: None,
            fastopen: None,
            reuseport: None,
            inode: None,
            owners: Some(vec![Owner {
                pid: 7,
                comm: "nginx".into(),
            }]),
            socket: 0,
        }
    }

    fn report(listeners: Vec<Listener>) -> Report {
        Report {
            release: "6.1.0".into(),
            source: "live".into(),
            symbols: String::new(),
            btf: String::new(),
            era: String::new(),
            listeners,
            namespaces: Some(vec![Namespace {
                inum: 4026531840,
                somaxconn: Some(4096),
                max_syn_backlog: Some(512),
                syncookies: Some(1),
                synack_retries: None,
                counters: vec![("ListenDrops", Some(9)), ("ListenOverflows", None)],
                hashinfo: None,
            }]),
            requests: None,
            warnings: Vec::new(),
        }
    }

    /// The value of the sample line that starts with `prefix`.
    fn sample(text: &str, prefix: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    }

    #[test]
    fn one_help_and_type_per_name_and_counters_end_in_total() {
        let text = render(
            &report(vec![listener(80, 3, Some(2))]),
            &Settings::default(),
            Scrape::default(),
        );
        let mut types = std::collections::HashMap::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut it = l.split(' ').skip(2);
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "two TYPE lines for {name}"
            );
            assert!(name.starts_with("synq_"), "{name}");
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
        }
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(helps, types.len());
        assert!(
            types.contains_key("synq_syn_queue") && types.contains_key("synq_accept_queue_limit")
        );
        assert!(
            !text.contains("# EOF"),
            "OpenMetrics trailer in the text format"
        );
    }

    #[test]
    fn figures_and_labels() {
        let text = render(
            &report(vec![listener(80, 3, Some(2))]),
            &Settings::default(),
            Scrape::default(),
        );
        let key = r#"{addr="192.0.2.1",family="inet",netns="4026531840",owner="nginx",port="80"}"#;
        assert_eq!(
            sample(&text, &format!("synq_syn_queue{key}")).as_deref(),
            Some("3")
        );
        assert_eq!(
            sample(&text, &format!("synq_accept_queue_limit{key}")).as_deref(),
            Some("128")
        );
        assert_eq!(
            sample(&text, &format!("synq_listener_drops_total{key}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                r#"synq_netns_listen_drops_total{netns="4026531840"}"#
            )
            .as_deref(),
            Some("9")
        );
        assert_eq!(
            sample(&text, r#"synq_netns_somaxconn{netns="4026531840"}"#).as_deref(),
            Some("4096")
        );
        // Not read: no series, never a 0.
        assert!(!text.contains("synq_netns_listen_overflows_total{"));
        assert!(!text.contains("synq_netns_tcp_synack_retries{"));
    }

    #[test]
    fn reuseport_members_are_summed_and_missing_drops_give_no_series() {
        let text = render(
            &report(vec![listener(80, 3, None), listener(80, 4, Some(1))]),
            &Settings::default(),
            Scrape::default(),
        );
        assert_eq!(
            sample(&text, "synq_listener_sockets{").as_deref(),
            Some("2")
        );
        assert_eq!(sample(&text, "synq_syn_queue{").as_deref(), Some("7"));
        assert!(!text.contains("synq_listener_drops_total{"), "{text}");
    }

    #[test]
    fn max_series_keeps_the_fullest_and_says_so() {
        let ls = (1..=10)
            .map(|p| listener(p, u64::from(p), Some(0)))
            .collect();
        let s = Settings {
            max_series: 3 * SERIES_PER_LISTENER,
        };
        let text = render(&report(ls), &s, Scrape::default());
        let ports: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("synq_syn_queue{"))
            .filter_map(|l| l.split("port=\"").nth(1)?.split('"').next())
            .collect();
        let mut ports = ports;
        ports.sort();
        assert_eq!(ports, ["10", "8", "9"]);
        assert_eq!(
            sample(&text, "synq_series_limit_exceeded").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "synq_listeners_omitted").as_deref(),
            Some("7")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut l = listener(80, 1, Some(0));
        l.owners = Some(vec![Owner {
            pid: 1,
            comm: "a\"b\\c\nd".into(),
        }]);
        let text = render(&report(vec![l]), &Settings::default(), Scrape::default());
        assert!(text.contains(r#"owner="a\"b\\c\nd""#), "{text}");
    }

    /// A resident exporter's scrape equals a fresh encoding of the same report, byte for byte: when only the
    /// values change (the kept text, refilled) and when the label sets change (encoded anew).
    #[test]
    fn resident_scrapes_equal_a_fresh_encoding() {
        let odd = |port, syn, drops, comm: &str| {
            let mut l = listener(port, syn, drops);
            l.owners = Some(vec![Owner {
                pid: 1,
                comm: comm.into(),
            }]);
            l
        };
        // Label values with spaces, quotes, backslashes and newlines: the value is still the last token.
        let base = || {
            vec![
                odd(80, 3, Some(2), "a b\"c"),
                odd(81, 0, Some(0), "x\ny\\ 1"),
                listener(443, 7, Some(1)),
                listener(443, 2, Some(5)),
            ]
        };
        let mut steps = vec![base()];
        // Values only: queues fill, drops grow, a fraction and a flood flag.
        let mut v = base();
        v[0].syn_queue = 129;
        v[1].drops = Some(1_000_000_007);
        v[2].accept_queue = 42;
        v[3].max_backlog = 4096;
        steps.push(v);
        // A listener comes; one goes; an owner changes; drops become unknown for one.
        let mut v = base();
        v.push(listener(8080, 1, Some(0)));
        steps.push(v);
        let mut v = base();
        v.remove(1);
        steps.push(v);
        let mut v = base();
        v[0].owners = None;
        steps.push(v);
        let mut v = base();
        v[2].drops = None;
        steps.push(v);
        steps.push(base());
        let settings = Settings { max_series: 14 };
        for settings in [Settings::default(), settings] {
            let mut expo = Exposition::new(settings.clone());
            let mut out = String::new();
            for (i, listeners) in steps.iter().enumerate() {
                let rep = report(listeners.clone());
                let scrape = Scrape {
                    duration: Duration::from_millis(i as u64 * 7),
                    warnings_total: i as u64,
                };
                expo.render_into(&rep, scrape, &mut out);
                assert_eq!(out, render(&rep, &settings, scrape), "step {i}");
                assert!(out.contains("synq_syn_queue{"), "step {i}: {out}");
            }
        }
        // The refilled text really carries the new values.
        let mut expo = Exposition::new(Settings::default());
        let mut out = String::new();
        expo.render_into(&report(steps[0].clone()), Scrape::default(), &mut out);
        expo.render_into(&report(steps[1].clone()), Scrape::default(), &mut out);
        assert!(out.contains("port=\"80\"} 129\n"), "{out}");
        assert!(out.contains("} 1000000007\n"), "{out}");
        // ... from the kept text, not a new encoding (which would have replaced it).
        assert!(!expo.text.contains("} 1000000007\n") && expo.text.contains("port=\"80\"} 3\n"));
    }
}
