//! The production modes on synthetic kernels (real BTF layouts, known queues): `--prometheus`, `--textfile`,
//! `--watch`, `synq serve`, the usage-error exit code, completions and the man page. Real kernels,
//! Prometheus, node_exporter and promtool check the same modes in tests/realkernel/prometheus.sh and in the
//! guests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const LHASH2: &str = "cilium-ebpf-7.1-x86_64.btf.xz";

/// A synthetic kernel with two listeners (5 and 7 half-open, 1 and 3 waiting); returns the source args.
fn kernel(name: &str) -> (Scratch, Vec<String>) {
    let dir = scratch(name);
    let mut k = Kernel::new(LHASH2, 4);
    k.add(0, Sock::listen("2001:db8::1", 443, 5, 1));
    k.add(1, Sock::listen("192.0.2.1", 80, 7, 3));
    let (core, ks) = write_kernel(&dir, &k);
    let args = vec![
        "--kcore".into(),
        core.display().to_string(),
        "--kallsyms".into(),
        ks.display().to_string(),
        "--btf".into(),
        fixture(LHASH2).display().to_string(),
    ];
    (dir, args)
}

fn synq_cmd(args: &[&str], src: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synq"));
    c.args(args).args(src);
    c
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_output_has_the_queues_of_every_listener() {
    let (_d, src) = kernel("prom");
    let out = synq_cmd(&["--prometheus"], &src).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v4 = r#"{addr="192.0.2.1",family="inet",netns="#;
    let line = |metric: &str, lbl: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{metric}{lbl}")) && l.contains("port=\"80\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(line("synq_syn_queue", v4), Some(7.0), "{text}");
    assert_eq!(line("synq_accept_queue", v4), Some(3.0), "{text}");
    let v6 = text
        .lines()
        .find(|l| l.starts_with("synq_syn_queue{") && l.contains("2001:db8::1"))
        .unwrap_or_default();
    assert!(v6.ends_with(" 5"), "{v6}");
    assert_eq!(sample(&text, "synq_build_info{"), Some(1.0));
    assert_eq!(sample(&text, "synq_walk_warnings_total"), Some(0.0));
    assert!(sample(&text, "synq_scrape_duration_seconds").is_some_and(|s| s > 0.0));
    for l in text
        .lines()
        .filter(|l| l.starts_with("# TYPE ") && l.ends_with(" counter"))
    {
        assert!(l.split(' ').nth(2).unwrap().ends_with("_total"), "{l}");
    }
}

#[test]
fn textfile_is_written_whole_and_no_temporary_is_left() {
    let (dir, src) = kernel("textfile");
    let path = dir.join("synq.prom");
    std::fs::write(&path, "old\n").unwrap();
    let out = synq_cmd(&["--textfile", path.to_str().unwrap()], &src)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# TYPE synq_syn_queue gauge"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("synq_syn_queue{"))
            .count(),
        2
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A name node_exporter would not read is refused, and nothing is written.
    let bad = dir.join("synq.txt");
    let out = synq_cmd(&["--textfile", bad.to_str().unwrap()], &src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".prom"));
    assert!(!bad.exists());
    // A missing directory is named.
    let out = synq_cmd(&["--textfile", "/nonexistent-synq-dir/x.prom"], &src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-synq-dir"));
}

#[test]
fn watch_json_prints_one_line_per_interval_with_time() {
    let (_d, src) = kernel("watch");
    let t = Instant::now();
    let out = synq_cmd(&["--watch", "0.2", "--count", "3", "--json"], &src)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() >= Duration::from_millis(400));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let mut last = 0.0;
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["sequence"], i as u64 + 1);
        assert_eq!(v["interval"], 0.2);
        assert_eq!(v["totals"]["syn_queue"], 12);
        let ts = v["timestamp"].as_f64().unwrap();
        assert!(ts > last);
        last = ts;
    }
}

/// Starts `cmd` with piped stdout and stderr.
fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits up to `limit` for `child` to exit; kills it and fails otherwise.
fn wait_for(child: &mut Child, limit: Duration) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("synq did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn watch_ends_cleanly_on_sigterm_and_on_a_closed_pipe() {
    let (_d, src) = kernel("watch-stop");
    let mut child = spawn(synq_cmd(&["--watch", "0.2", "--json"], &src));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.ends_with("}\n"), "{first}");
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_for(&mut child, Duration::from_secs(5)), 0);
    // Whatever was written after the first line is whole lines.
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty() || rest.ends_with('\n'), "{rest:?}");

    // The reader goes away: the next write fails, and synq ends by itself.
    let mut child = spawn(synq_cmd(&["--watch", "0.2", "--json"], &src));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    assert_eq!(wait_for(&mut child, Duration::from_secs(5)), 0);
}

/// One HTTP request; returns (status, body).
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

/// Starts `synq serve` on a free loopback port; returns the child and its address.
fn serve(src: &[String], extra: &[&str]) -> (Child, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    let mut child = spawn(synq_cmd(&args, src));
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let t = Instant::now();
    while !line.contains("serving http://") {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 || t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("synq serve did not start: {line}");
        }
    }
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    (child, addr)
}

#[test]
fn serve_answers_metrics_index_and_errors_then_stops_on_sigterm() {
    let (_d, src) = kernel("serve");
    let (mut child, addr) = serve(&src, &["--min-interval", "30"]);
    let (status, body) = get(&addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("synq_syn_queue{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>(),
        12,
        "{body}"
    );
    // Within --min-interval the scrapes share one walk: the very same exposition.
    let (_, again) = get(&addr, "/metrics?x=1");
    assert_eq!(again, body);
    let (status, index) = get(&addr, "/");
    assert_eq!(status, 200);
    assert!(index.contains("href=\"/metrics\""), "{index}");
    assert_eq!(get(&addr, "/nope").0, 404);
    assert_eq!(http(&addr, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    let (status, head) = http(&addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((status, head.as_str()), (200, ""));
    assert_eq!(http(&addr, "garbage\r\n\r\n").0, 400);
    // A client that sends nothing does not hold the server forever (5 s timeout), and a huge head is refused.
    let idle = TcpStream::connect(&addr).unwrap();
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let t = Instant::now();
    assert_eq!(http(&addr, &big).0, 431);
    assert!(t.elapsed() < Duration::from_secs(8));
    drop(idle);
    signal(&child, libc::SIGTERM);
    assert_eq!(wait_for(&mut child, Duration::from_secs(5)), 0);
}

#[test]
fn serve_refuses_a_busy_address_and_says_so() {
    let (_d, src) = kernel("serve-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = synq_cmd(&["serve", "--listen", &addr], &src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
}

#[test]
fn usage_errors_exit_64_not_2() {
    let run = |args: &[&str]| synq_cmd(args, &[]).output().unwrap();
    for bad in [
        &["--bogus"][..],
        &["--watch", "0"],
        &["--count", "3"],
        &["--json", "--prometheus"],
    ] {
        let out = run(bad);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["--version"]).status.code(), Some(0));
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    let out = synq_cmd(&["completions", "bash"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("--watch") && text.contains("serve"),
        "{}",
        &text[..200.min(text.len())]
    );
    let out = synq_cmd(&["manpage"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH synq"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("prometheus"));
}

#[test]
fn watch_table_says_what_drops_mean_in_each_interval() {
    let (_d, src) = kernel("watch-table");
    let out = synq_cmd(&["--watch", "0.2", "--count", "2"], &src)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("interval 1: DROPS since each listener opened"),
        "{text}"
    );
    assert!(
        text.contains("interval 2: DROPS during the last 0.2s"),
        "{text}"
    );
    assert_eq!(text.matches("total: 2 listeners").count(), 2, "{text}");
    // Not a terminal: no screen clearing.
    assert!(!text.contains('\x1b'));
}
