//! Prints how long the Prometheus exposition and the JSON take for N synthetic listeners (bench aid).
use std::time::Instant;
use synq::metrics::{Scrape, Settings, render};
use synq::report::Report;
use synq::walk::owners::Owner;
use synq::walk::{Family, Kind, Listener};

fn main() {
    let n: u16 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let listeners = (0..n)
        .map(|p| Listener {
            sock: 0x1000 + u64::from(p),
            netns: 4026531840,
            family: Family::Inet,
            addr: std::net::IpAddr::from([127, 0, 0, 1]),
            port: p,
            bound_dev_if: 0,
            syn_queue: 1,
            syn_young: 0,
            accept_queue: 0,
            max_backlog: 128,
            kind: Kind::User,
            drops: Some(0),
            synflood_warned: Some(false),
            defer_accept: Some(0),
            fastopen: None,
            reuseport: None,
            inode: Some(1000 + u64::from(p)),
            owners: Some(vec![Owner {
                pid: 7,
                comm: "synq-fixture".into(),
            }]),
            socket: 0,
        })
        .collect();
    let mut rep = Report {
        release: "x".into(),
        source: "y".into(),
        symbols: String::new(),
        btf: String::new(),
        era: String::new(),
        listeners,
        namespaces: None,
        requests: None,
        warnings: Vec::new(),
    };
    let t = Instant::now();
    let text = render(&rep, &Settings::default(), Scrape::default());
    println!(
        "prometheus: {:.1} ms, {} bytes",
        t.elapsed().as_secs_f64() * 1e3,
        text.len()
    );
    // A resident exporter's later scrapes: the same listeners, the values set in place.
    let mut expo = synq::metrics::Exposition::new(Settings::default());
    let mut out = String::new();
    for i in 0..3 {
        let t = Instant::now();
        expo.render_into(&rep, Scrape::default(), &mut out);
        println!(
            "prometheus, resident, scrape {}: {:.1} ms, {} bytes",
            i + 1,
            t.elapsed().as_secs_f64() * 1e3,
            out.len()
        );
    }
    // The walk's order: hash buckets, not sorted.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..rep.listeners.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rep.listeners.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let t = Instant::now();
    rep.sort();
    println!("sort: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let j = rep.to_json();
    println!(
        "json: {:.1} ms, {} bytes",
        t.elapsed().as_secs_f64() * 1e3,
        j.len()
    );
}
