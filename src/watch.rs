//! `--watch SECONDS [--count N]`: the report again every interval, over one [`Prepared`] session (symbols,
//! BTF and layout resolved once; each interval is only the walks).
//!
//! Counters are shown as deltas over the interval — a listener's drops, a namespace's TcpExt counters —
//! and gauges (the queues) as they are. Listeners are matched across intervals by namespace, address, port
//! and inode, never by row: one that appears has no delta yet, one that went is simply no longer listed.
//! Owners are looked up again when a listener appears whose owners are not known, and at least every minute.
//! The loop ends after `--count` intervals, on SIGINT or SIGTERM (between two writes, so a JSON line is never
//! cut), or when stdout is closed.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::app::{Options, Outcome, Output, Prepared, Wants, Watch};
use crate::privdrop::{self, Profile};
use crate::report::Report;
use crate::session::{Error, Session};
use crate::walk::Listener;

/// A listener's identity across intervals.
type Key = (u64, std::net::IpAddr, u16, Option<u64>);

fn key(l: &Listener) -> Key {
    (l.netns, l.addr, l.port, l.inode)
}

/// Consecutive failed intervals before giving up.
const MAX_FAILURES: u32 = 3;

/// What the previous interval saw, to subtract.
#[derive(Default)]
pub struct Deltas {
    drops: HashMap<Key, u64>,
    counters: HashMap<(u64, &'static str), u64>,
    first: bool,
}

/// One interval's changes, in the report's own order.
pub struct Changes {
    /// Per listener (same index as `report.listeners`): drops since the previous interval; `None` for the
    /// first interval, a listener that just appeared, or one whose kernel has no drop counter.
    pub drops: Vec<Option<u64>>,
    /// Per namespace (same index as `report.namespaces`): counter deltas, as `(name, delta)`.
    pub counters: Vec<Vec<(&'static str, Option<u64>)>>,
    /// This is the first interval: there is nothing to subtract yet.
    pub first: bool,
}

impl Deltas {
    pub fn new() -> Deltas {
        Deltas {
            first: true,
            ..Deltas::default()
        }
    }

    /// The changes since the previous call, and remembers `rep` for the next. A counter that went backwards
    /// (a listener closed and another took its inode, or a reading torn by the walk) gives no delta.
    pub fn update(&mut self, rep: &Report) -> Changes {
        let first = std::mem::replace(&mut self.first, false);
        let mut drops_now = HashMap::new();
        let drops = rep
            .listeners
            .iter()
            .map(|l| {
                let now = l.drops?;
                drops_now.insert(key(l), now);
                let before = self.drops.get(&key(l))?;
                now.checked_sub(*before)
            })
            .collect();
        let mut counters_now = HashMap::new();
        let counters = rep
            .namespaces
            .iter()
            .flatten()
            .map(|ns| {
                ns.counters
                    .iter()
                    .map(|(name, v)| {
                        let d = v.and_then(|now| {
                            counters_now.insert((ns.inum, *name), now);
                            now.checked_sub(*self.counters.get(&(ns.inum, *name))?)
                        });
                        (*name, d)
                    })
                    .collect()
            })
            .collect();
        self.drops = drops_now;
        self.counters = counters_now;
        Changes {
            drops,
            counters,
            first,
        }
    }
}

/// One interval as a JSON line: the report's object with `timestamp` (seconds since the epoch, UTC),
/// `interval` (seconds), `sequence` (from 1), each listener's `drops_delta` and each namespace's
/// `counters_delta` (`null` where there is nothing to subtract yet).
pub fn json_line(
    rep: &Report,
    ch: &Changes,
    seq: u64,
    interval: Duration,
    at: SystemTime,
) -> String {
    let mut v: serde_json::Value = match serde_json::from_str(&rep.to_json()) {
        Ok(v) => v,
        Err(_) => return rep.to_json(),
    };
    if let Some(o) = v.as_object_mut() {
        let ts = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        o.insert("timestamp".into(), ts.into());
        o.insert("interval".into(), interval.as_secs_f64().into());
        o.insert("sequence".into(), seq.into());
        if let Some(ls) = o.get_mut("listeners").and_then(|l| l.as_array_mut()) {
            for (l, d) in ls.iter_mut().zip(&ch.drops) {
                if let Some(lo) = l.as_object_mut() {
                    lo.insert("drops_delta".into(), (*d).into());
                }
            }
        }
        if let Some(ns) = o.get_mut("namespaces").and_then(|n| n.as_array_mut()) {
            for (n, d) in ns.iter_mut().zip(&ch.counters) {
                if let Some(no) = n.as_object_mut() {
                    let m: serde_json::Map<String, serde_json::Value> = d
                        .iter()
                        .map(|(k, v)| (k.to_string(), (*v).into()))
                        .collect();
                    no.insert(
                        "counters_delta".into(),
                        if ch.first {
                            serde_json::Value::Null
                        } else {
                            m.into()
                        },
                    );
                }
            }
        }
    }
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// One interval as a table: DROPS (and, with --wide, the namespace counters) replaced by their deltas after
/// the first interval; a heading line says which.
pub fn table(
    mut rep: Report,
    ch: &Changes,
    opts: &Options,
    seq: u64,
    interval: Duration,
) -> String {
    let heading = if ch.first {
        format!(
            "synq --watch {}s, interval {seq}: DROPS since each listener opened\n",
            interval.as_secs_f64()
        )
    } else {
        for (l, d) in rep.listeners.iter_mut().zip(&ch.drops) {
            l.drops = *d;
        }
        for (n, d) in rep.namespaces.iter_mut().flatten().zip(&ch.counters) {
            n.counters = d.clone();
        }
        format!(
            "synq --watch {}s, interval {seq}: DROPS{} during the last {}s (- for a listener new since)\n",
            interval.as_secs_f64(),
            if opts.wide { " and counters" } else { "" },
            interval.as_secs_f64()
        )
    };
    let mut out = heading;
    out.push_str(&rep.to_table_wide(opts.wide));
    out
}

/// Set by SIGINT or SIGTERM.
pub fn stop_flag() -> Result<Arc<AtomicBool>, Error> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .map_err(|e| Error::Serve(format!("installing the signal handler: {e}")))?;
    }
    Ok(flag)
}

/// Sleeps until `deadline` in short steps, so that a signal ends the wait soon. False when stopped.
pub fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// `--watch`: writes each interval as it comes; the outcome carries only the exit status (2 when an interval
/// had warnings, 1 when the walks kept failing).
pub fn run(opts: &Options, session: Session) -> Result<Outcome, Error> {
    let Some(Watch { interval, count }) = opts.watch else {
        return Err(Error::Internal("watch without an interval"));
    };
    // Signal handlers before the drop: installing them later would be refused.
    let stop = stop_flag()?;
    let mut p = Prepared::new(session, Wants::of(opts), || {
        privdrop::drop_privileges_with(Profile::Watch, None)
    })?;
    // Owners (every process's open files) are looked up again for a new listener, and at least every minute.
    p.reuse_owners(Duration::from_secs(60));
    let tty = std::io::stdout().is_terminal() && opts.output == Output::Table;
    let mut deltas = Deltas::new();
    let mut status = 0;
    let mut failures = 0;
    let mut next = Instant::now();
    let mut seq = 0u64;
    while count.is_none_or(|c| seq < c) {
        if seq > 0 && !sleep_until(next, &stop) {
            break;
        }
        next += interval;
        // A slow walk does not make the intervals pile up: the next starts one interval after now.
        let now = Instant::now();
        if next < now {
            next = now + interval;
        }
        seq += 1;
        let started = Instant::now();
        let rep = match p.collect() {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(e) => {
                failures += 1;
                eprintln!("synq: interval {seq}: {e}");
                status = 1;
                if failures >= MAX_FAILURES {
                    eprintln!("synq: {MAX_FAILURES} intervals in a row failed; stopping");
                    break;
                }
                continue;
            }
        };
        let ch = deltas.update(&rep);
        let warned = !rep.warnings.is_empty();
        let text = match opts.output {
            Output::Json => json_line(&rep, &ch, seq, interval, SystemTime::now()),
            Output::Table => {
                let warnings: Vec<String> = rep.warnings.clone();
                let mut t = table(rep, &ch, opts, seq, interval);
                if tty {
                    t.insert_str(0, "\x1b[H\x1b[2J");
                } else if seq > 1 {
                    t.insert(0, '\n');
                }
                for w in warnings {
                    t.push_str(&format!("warning: {w}\n"));
                }
                t
            }
            Output::Total => format!("{}\n", rep.totals().syn_queue),
            Output::Prometheus => {
                let scrape = crate::metrics::Scrape {
                    duration: started.elapsed(),
                    warnings_total: rep.warnings.len() as u64,
                };
                crate::app::render(opts, &rep, scrape)
            }
        };
        if warned && status == 0 {
            status = 2;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("synq: writing output: {e}");
                status = 1;
            }
            break;
        }
    }
    Ok(Outcome {
        stdout: String::new(),
        warnings: Vec::new(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::netns::Namespace;
    use crate::walk::{Family, Kind};

    fn listener(port: u16, inode: u64, drops: Option<u64>) -> Listener {
        Listener {
            sock: u64::from(port),
            netns: 1,
            family: Family::Inet,
            addr: std::net::IpAddr::from([127, 0, 0, 1]),
            port,
            bound_dev_if: 0,
            syn_queue: 0,
            syn_young: 0,
            accept_queue: 0,
            max_backlog: 1,
            kind: Kind::User,
            drops,
            synflood_warned: None,
            defer_accept: None,
            fastopen: None,
            reuseport: None,
            inode: Some(inode),
            owners: None,
            socket: 0,
        }
    }

    fn report(listeners: Vec<Listener>, drops_ns: u64) -> Report {
        Report {
            release: String::new(),
            source: String::new(),
            symbols: String::new(),
            btf: String::new(),
            era: String::new(),
            listeners,
            namespaces: Some(vec![Namespace {
                inum: 1,
                somaxconn: None,
                max_syn_backlog: None,
                syncookies: None,
                synack_retries: None,
                counters: vec![("ListenDrops", Some(drops_ns)), ("ListenOverflows", None)],
                hashinfo: None,
            }]),
            requests: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn deltas_follow_listeners_by_key_not_row() {
        let mut d = Deltas::new();
        let first = d.update(&report(
            vec![listener(80, 10, Some(5)), listener(81, 11, Some(1))],
            7,
        ));
        assert!(first.first);
        assert_eq!(first.drops, [None, None]);
        // 80 went, 79 appeared (before 81 in row order), 81 dropped 3 more; 81 reopened would have a new inode.
        let second = d.update(&report(
            vec![listener(79, 12, Some(9)), listener(81, 11, Some(4))],
            10,
        ));
        assert!(!second.first);
        assert_eq!(second.drops, [None, Some(3)]);
        assert_eq!(
            second.counters,
            [vec![("ListenDrops", Some(3)), ("ListenOverflows", None)]]
        );
        // Same port, new inode: a new listener, no delta; a counter that went back gives none either.
        let third = d.update(&report(vec![listener(81, 99, Some(0))], 2));
        assert_eq!(third.drops, [None]);
        assert_eq!(third.counters[0][0], ("ListenDrops", None));
    }

    #[test]
    fn json_lines_carry_time_interval_and_deltas() {
        let mut d = Deltas::new();
        d.update(&report(vec![listener(80, 10, Some(5))], 7));
        let rep = report(vec![listener(80, 10, Some(8))], 9);
        let ch = d.update(&rep);
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let line = json_line(&rep, &ch, 2, Duration::from_millis(2500), at);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["timestamp"], 1_700_000_000.0);
        assert_eq!(v["interval"], 2.5);
        assert_eq!(v["sequence"], 2);
        assert_eq!(v["listeners"][0]["drops_delta"], 3);
        assert_eq!(v["listeners"][0]["drops"], 8);
        assert_eq!(v["namespaces"][0]["counters_delta"]["ListenDrops"], 2);
    }

    #[test]
    fn sleep_ends_early_when_stopped() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(!sleep_until(
            Instant::now() + Duration::from_secs(30),
            &stop
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        let go = AtomicBool::new(false);
        assert!(sleep_until(Instant::now() + Duration::from_millis(20), &go));
    }
}
