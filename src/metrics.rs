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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::report::Report;
use crate::session::Error;
use crate::walk::Listener;

/// The per-listener label names.
pub const LABELS: [&str; 5] = ["netns", "family", "addr", "port", "owner"];

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

/// The owner label of a listener: its first owner's comm, empty when it has none (or none were read).
fn owner(l: &Listener) -> String {
    l.owners
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.comm.clone())
        .unwrap_or_default()
}

/// The label values of a listener, in [`LABELS`] order.
fn labels(l: &Listener) -> [String; 5] {
    [
        l.netns.to_string(),
        l.family.name().to_string(),
        l.addr.to_string(),
        l.port.to_string(),
        owner(l),
    ]
}

/// The text exposition of `rep`.
pub fn render(rep: &Report, settings: &Settings, scrape: Scrape) -> String {
    match build(rep, settings, scrape) {
        Ok(text) => text,
        // Only a metric definition synq itself got wrong can fail; say so in the output, as a comment.
        Err(e) => format!("# synq: internal error building the metrics: {e}\n"),
    }
}

/// One metric family being filled: its samples as (label values, value).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    samples: Vec<(Vec<String>, f64)>,
}

impl Family {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            kind,
            labels,
            samples: Vec::new(),
        }
    }

    fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
        Family::new(name, help, MetricType::GAUGE, labels)
    }

    fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
        Family::new(name, help, MetricType::COUNTER, labels)
    }

    fn push(&mut self, values: &[String], v: f64) {
        self.samples.push((values.to_vec(), v));
    }

    /// Like `push`, taking the label values.
    fn push_owned(&mut self, values: Vec<String>, v: f64) {
        self.samples.push((values, v));
    }

    /// The family for the encoder: label pairs sorted by name, as Prometheus's own registries give them.
    fn into_proto(self) -> MetricFamily {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by_key(|&i| self.labels.get(i).copied().unwrap_or(""));
        let metrics = self
            .samples
            .into_iter()
            .map(|(values, v)| {
                let mut values: Vec<Option<String>> = values.into_iter().map(Some).collect();
                let label = order
                    .iter()
                    .filter_map(|&i| {
                        let mut p = LabelPair::default();
                        p.set_name((*self.labels.get(i)?).to_string());
                        p.set_value(values.get_mut(i)?.take()?);
                        Some(p)
                    })
                    .collect();
                let mut m = Metric::from_label(label);
                match self.kind {
                    MetricType::COUNTER => {
                        let mut c = Counter::default();
                        c.set_value(v);
                        m.set_counter(c);
                    }
                    _ => {
                        let mut g = Gauge::default();
                        g.set_value(v);
                        m.set_gauge(g);
                    }
                }
                m
            })
            .collect();
        let mut mf = MetricFamily::default();
        mf.set_name(self.name.to_string());
        mf.set_help(self.help.to_string());
        mf.set_field_type(self.kind);
        mf.set_metric(metrics);
        mf
    }
}

/// A count as a sample value (exact up to 2^53; the kernel's counts stay far below).
fn f(v: u64) -> f64 {
    v as f64
}

fn build(rep: &Report, settings: &Settings, scrape: Scrape) -> prometheus::Result<String> {
    let l = &LABELS;
    let mut sockets = Family::gauge(
        "synq_listener_sockets",
        "Listening sockets under these labels (an SO_REUSEPORT group has several).",
        l,
    );
    let mut syn = Family::gauge(
        "synq_syn_queue",
        "Half-open requests (SYN received, SYN-ACK sent, no final ACK yet) in the SYN queue.",
        l,
    );
    let mut young = Family::gauge(
        "synq_syn_queue_young",
        "Half-open requests whose SYN-ACK was not retransmitted yet.",
        l,
    );
    let mut acc = Family::gauge(
        "synq_accept_queue",
        "Completed connections waiting for accept().",
        l,
    );
    let mut limit = Family::gauge(
        "synq_accept_queue_limit",
        "The accept-queue limit: listen(2)'s backlog, capped by net.core.somaxconn.",
        l,
    );
    let mut drops = Family::counter(
        "synq_listener_drops_total",
        "Packets the listener dropped (sk_drops; ss -ltm's d): SYNs refused by a full queue among them.",
        l,
    );
    let mut flood = Family::gauge(
        "synq_listener_synflood_warned",
        "1 when the listener has hit a full SYN queue (the kernel's \"Possible SYN flooding\" warning).",
        l,
    );

    // The listeners, fullest first when they must be cut to max_series.
    let mut keyed: BTreeMap<[String; 5], Vec<&Listener>> = BTreeMap::new();
    for li in &rep.listeners {
        keyed.entry(labels(li)).or_default().push(li);
    }
    let mut groups: Vec<([String; 5], Vec<&Listener>)> = keyed.into_iter().collect();
    let max_keys = settings.max_series / SERIES_PER_LISTENER;
    let omitted = groups.len().saturating_sub(max_keys);
    if omitted > 0 {
        let weight = |v: &Vec<&Listener>| -> (u64, u64) {
            let q = v
                .iter()
                .map(|l| l.syn_queue.saturating_add(l.accept_queue))
                .sum();
            (q, v.iter().filter_map(|l| l.drops).sum())
        };
        groups.sort_by(|a, b| weight(&b.1).cmp(&weight(&a.1)).then_with(|| a.0.cmp(&b.0)));
        groups.truncate(max_keys);
        groups.sort_by(|a, b| a.0.cmp(&b.0));
    }
    for (key, members) in groups {
        let sum = |f: fn(&Listener) -> u64| {
            members.iter().map(|l| f(l)).fold(0u64, u64::saturating_add) as f64
        };
        sockets.push(&key, members.len() as f64);
        syn.push(&key, sum(|l| l.syn_queue));
        young.push(&key, sum(|l| l.syn_young));
        acc.push(&key, sum(|l| l.accept_queue));
        // Absent where the kernel has no such field (before 4.7): no series rather than a false 0.
        if members.iter().all(|l| l.drops.is_some()) {
            drops.push(&key, sum(|l| l.drops.unwrap_or(0)));
        }
        if members.iter().all(|l| l.synflood_warned.is_some()) {
            let any = members.iter().any(|l| l.synflood_warned == Some(true));
            flood.push(&key, if any { 1.0 } else { 0.0 });
        }
        // The last family takes the label values themselves.
        limit.push_owned(key.into(), sum(|l| l.max_backlog));
    }
    let mut families = vec![sockets, syn, young, acc, limit, drops, flood];
    let mut exceeded = Family::gauge(
        "synq_series_limit_exceeded",
        "1 when there were more listeners than --max-series allows: the fullest were kept.",
        &[],
    );
    exceeded.push(&[], if omitted > 0 { 1.0 } else { 0.0 });
    let mut omitted_g = Family::gauge(
        "synq_listeners_omitted",
        "Listener label sets left out because of --max-series.",
        &[],
    );
    omitted_g.push(&[], omitted as f64);
    families.extend([exceeded, omitted_g]);

    // Per network namespace: the listen sysctls and the TcpExt counters.
    const NS: &[&str] = &["netns"];
    let mut sysctls = [
        Family::gauge(
            "synq_netns_somaxconn",
            "net.core.somaxconn: the cap on every listen(2) backlog.",
            NS,
        ),
        Family::gauge(
            "synq_netns_tcp_max_syn_backlog",
            "net.ipv4.tcp_max_syn_backlog.",
            NS,
        ),
        Family::gauge(
            "synq_netns_tcp_syncookies",
            "net.ipv4.tcp_syncookies: 0 off, 1 when a SYN queue overflows, 2 always.",
            NS,
        ),
        Family::gauge(
            "synq_netns_tcp_synack_retries",
            "net.ipv4.tcp_synack_retries: SYN-ACK retransmits before a request is dropped.",
            NS,
        ),
    ];
    let mut counters: Vec<Family> = NETNS_COUNTERS
        .iter()
        .map(|(_, name, help)| Family::counter(name, help, NS))
        .collect();
    for ns in rep.namespaces.iter().flatten() {
        let k = [ns.inum.to_string()];
        for (fam, val) in sysctls.iter_mut().zip([
            ns.somaxconn,
            ns.max_syn_backlog,
            ns.syncookies,
            ns.synack_retries,
        ]) {
            if let Some(val) = val {
                fam.push(&k, f(val));
            }
        }
        for (fam, (kernel_name, _, _)) in counters.iter_mut().zip(NETNS_COUNTERS) {
            let val = ns
                .counters
                .iter()
                .find(|(n, _)| *n == kernel_name)
                .and_then(|c| c.1);
            if let Some(val) = val {
                fam.push(&k, f(val));
            }
        }
    }
    families.extend(sysctls);
    families.extend(counters);

    // The scrape itself.
    let mut dur = Family::gauge(
        "synq_scrape_duration_seconds",
        "How long synq took to walk kernel memory for these figures.",
        &[],
    );
    dur.push(&[], scrape.duration.as_secs_f64());
    let mut warn = Family::counter(
        "synq_walk_warnings_total",
        "Warnings while walking (a page unreadable, the kernel changing under the walk): figures may be partial.",
        &[],
    );
    warn.push(&[], f(scrape.warnings_total));
    let mut info = Family::gauge(
        "synq_build_info",
        "synq's version, and the kernel it reads (always 1).",
        &["version", "release", "source"],
    );
    info.push(
        &[
            env!("CARGO_PKG_VERSION").to_string(),
            rep.release.clone(),
            rep.source.clone(),
        ],
        1.0,
    );
    families.extend([dur, warn, info]);

    // Families without a sample are left out (the encoder refuses them), as a registry's gather() does.
    let protos: Vec<MetricFamily> = families
        .into_iter()
        .filter(|fam| !fam.samples.is_empty())
        .map(Family::into_proto)
        .collect();
    let mut out =
        String::with_capacity(protos.iter().map(|p| p.get_metric().len()).sum::<usize>() * 128);
    prometheus::TextEncoder::new().encode_utf8(&protos, &mut out)?;
    Ok(out)
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
}
