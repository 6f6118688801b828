//! Output: the readable table, the JSON object and the one-number total.

use std::fmt::Write as _;

use serde::Serialize;

use crate::walk::Listener;

/// What a run found, ready to print.
pub struct Report {
    pub release: String,
    pub source: String,
    /// Where tcp_hashinfo's address came from.
    pub symbols: String,
    pub btf: String,
    pub era: String,
    pub listeners: Vec<Listener>,
    pub warnings: Vec<String>,
}

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
        self.listeners.sort_by(|a, b| {
            (a.netns, a.addr, a.port, a.sock).cmp(&(b.netns, b.addr, b.port, b.sock))
        });
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
        let t = self.totals();
        let doc = JsonDoc {
            kernel: JsonKernel {
                release: &self.release,
                source: &self.source,
                symbols: &self.symbols,
                btf: &self.btf,
                layout: &self.era,
            },
            listeners: self.listeners.iter().map(JsonListener::from).collect(),
            totals: t,
            warnings: &self.warnings,
        };
        serde_json::to_string(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 8]> = vec![[
            "NETNS".into(),
            "FAMILY".into(),
            "LOCAL ADDRESS:PORT".into(),
            "SYN-Q".into(),
            "YOUNG".into(),
            "ACCEPT-Q".into(),
            "BACKLOG".into(),
            "NOTE".into(),
        ]];
        for l in &self.listeners {
            let addr = match l.addr {
                std::net::IpAddr::V4(a) => format!("{a}:{}", l.port),
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", l.port),
            };
            let mut note = l.kind.label().unwrap_or("").to_string();
            if l.bound_dev_if != 0 {
                if !note.is_empty() {
                    note.push(' ');
                }
                let _ = write!(note, "ifindex={}", l.bound_dev_if);
            }
            rows.push([
                l.netns.to_string(),
                l.family.name().into(),
                addr,
                l.syn_queue.to_string(),
                l.syn_young.to_string(),
                l.accept_queue.to_string(),
                l.max_backlog.to_string(),
                note,
            ]);
        }
        let mut width = [0usize; 8];
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
                if (3..=6).contains(&i) {
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

#[derive(Serialize)]
struct JsonDoc<'a> {
    kernel: JsonKernel<'a>,
    listeners: Vec<JsonListener>,
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

#[derive(Serialize)]
struct JsonListener {
    netns: u64,
    family: &'static str,
    addr: String,
    port: u16,
    syn_queue: u64,
    syn_young: u64,
    accept_queue: u64,
    max_backlog: u64,
    bound_dev_if: u64,
    kind: Option<&'static str>,
    sock: String,
}

impl From<&Listener> for JsonListener {
    fn from(l: &Listener) -> Self {
        JsonListener {
            netns: l.netns,
            family: l.family.name(),
            addr: l.addr.to_string(),
            port: l.port,
            syn_queue: l.syn_queue,
            syn_young: l.syn_young,
            accept_queue: l.accept_queue,
            max_backlog: l.max_backlog,
            bound_dev_if: l.bound_dev_if,
            kind: l.kind.label(),
            sock: format!("{:#x}", l.sock),
        }
    }
}
