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
            listeners: JsonListeners(&self.listeners),
            totals: t,
            warnings: &self.warnings,
        };
        // Serialization of these types cannot fail: they hold only strings and integers.
        let mut out = Vec::with_capacity(512 + 256 * self.listeners.len());
        let _ = serde_json::to_writer(&mut out, &doc);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 9]> = vec![[
            "NETNS".into(),
            "FAMILY".into(),
            "LOCAL ADDRESS:PORT".into(),
            "SYN-Q".into(),
            "YOUNG".into(),
            "ACCEPT-Q".into(),
            "BACKLOG".into(),
            "DROPS".into(),
            "NOTE".into(),
        ]];
        for l in &self.listeners {
            let addr = match l.addr {
                std::net::IpAddr::V4(a) => format!("{a}:{}", l.port),
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", l.port),
            };
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
                note,
            ]);
        }
        let mut width = [0usize; 9];
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

#[derive(Serialize)]
struct JsonDoc<'a> {
    kernel: JsonKernel<'a>,
    listeners: JsonListeners<'a>,
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
                let mut st = s.serialize_struct("Listener", 17)?;
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
