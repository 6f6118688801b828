//! The commands — `report` (the default), `info` and `layout` — over one [`Session`], and their output.
//! The binary parses the command line into [`Options`] and maps [`Outcome::status`] to the exit status
//! (0 ok, 1 error, 2 result with warnings).

use std::io::Write;
use std::time::Instant;

use crate::arch;
use crate::discover::Discovery;
use crate::report::Report;
use crate::session::{Error, Session, SideFiles};
use crate::target::{Spec, Target, TargetError, VmcoreinfoOrigin};
use crate::vmcoreinfo::VmcoreInfo;
use crate::{doctor, metrics, privdrop, serve, watch};

/// Which command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Every listener's queues.
    Report,
    /// What synq finds in its source.
    Info,
    /// The struct layout resolved from BTF.
    Layout,
    /// The target's VMCOREINFO text, to save.
    Vmcoreinfo,
    /// A resident Prometheus exporter.
    Serve,
    /// What will work on this host, and what to do.
    Doctor,
}

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    /// The SYN-queue sum alone (report only).
    Total,
    /// The Prometheus text exposition format.
    Prometheus,
}

/// `--watch`: repeat every `interval`, `count` times (or until stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    pub interval: std::time::Duration,
    pub count: Option<u64>,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Options {
    pub command: Command,
    pub output: Output,
    pub target: Spec,
    pub side: SideFiles,
    /// The table also shows each network namespace (sysctls, counters, verdicts).
    pub wide: bool,
    /// List the half-open requests themselves (O(connections)).
    pub requests: bool,
    /// Repeat the report.
    pub watch: Option<Watch>,
    /// Prometheus output settings.
    pub metrics: metrics::Settings,
    /// Write the Prometheus output to this file, atomically.
    pub textfile: Option<std::path::PathBuf>,
    /// `synq serve`'s settings.
    pub serve: serve::ServeOptions,
}

/// What `run` leaves for `main`: text for stdout, warnings for stderr, and the exit status.
pub struct Outcome {
    pub stdout: String,
    pub warnings: Vec<String>,
    pub status: i32,
}

impl Outcome {
    /// Exit status 2 when there are warnings (a partial answer is never reported as complete).
    pub fn new(stdout: String, warnings: Vec<String>, json_holds_warnings: bool) -> Outcome {
        let status = if warnings.is_empty() { 0 } else { 2 };
        Outcome {
            stdout,
            warnings: if json_holds_warnings {
                Vec::new()
            } else {
                warnings
            },
            status,
        }
    }
}

struct Timer {
    on: bool,
    start: Instant,
    last: Instant,
    /// `/proc/self/status`, opened once (before the privilege drop forbids opening it) and re-read.
    status: Option<std::fs::File>,
}

impl Timer {
    fn new() -> Timer {
        let now = Instant::now();
        let on = std::env::var_os("SYNQ_TIMING").is_some_and(|v| v != "0");
        Timer {
            on,
            start: now,
            last: now,
            status: on
                .then(|| std::fs::File::open("/proc/self/status").ok())
                .flatten(),
        }
    }

    /// The process's status now (procfs regenerates it on every read from the start).
    fn status(&self) -> Option<String> {
        use std::os::unix::fs::FileExt;
        let f = self.status.as_ref()?;
        let mut buf = vec![0u8; 16 << 10];
        let n = f.read_at(&mut buf, 0).ok()?;
        buf.truncate(n);
        String::from_utf8(buf).ok()
    }

    /// With SYNQ_TIMING, also the memory use so far (resident anonymous, file-backed and shared pages).
    fn memory(&self) {
        if self.on
            && let Some(status) = self.status()
        {
            let keep = ["VmHWM", "RssAnon", "RssFile", "RssShmem"];
            let lines: Vec<String> = status
                .lines()
                .filter(|l| keep.iter().any(|k| l.starts_with(k)))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            eprintln!("synq memory: {}", lines.join(", "));
        }
    }

    fn note(&self, text: &str) {
        if self.on {
            eprintln!("synq timing: {text}");
        }
    }

    fn phase(&mut self, name: &str) {
        if self.on {
            let now = Instant::now();
            let hwm = self
                .status()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmHWM"))
                        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                })
                .unwrap_or_default();
            eprintln!(
                "synq timing: {name:<10} {:>8.2} ms (total {:.2} ms, peak RSS so far {hwm})",
                (now - self.last).as_secs_f64() * 1e3,
                (now - self.start).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}

pub fn run(opts: &Options) -> Result<Outcome, Error> {
    let mut session = Session::new(opts.target.clone(), opts.side.clone());
    match opts.command {
        Command::Layout => layout(opts, &mut session),
        Command::Info => info(opts, &mut session),
        Command::Report if opts.watch.is_some() => watch::run(opts, session),
        Command::Report => report(opts, session),
        Command::Vmcoreinfo => vmcoreinfo(&mut session),
        Command::Serve => serve::run(opts, session),
        Command::Doctor => doctor::run(opts),
    }
}

/// `SYNQ_TEST_OPEN_AFTER_DROP=PATH` tries to open PATH after the privilege drop and says what happened (the
/// real-kernel test's proof that opening is refused).
fn test_open_after_drop() {
    if let Some(path) = std::env::var_os("SYNQ_TEST_OPEN_AFTER_DROP") {
        let what = match std::fs::File::open(&path) {
            Ok(_) => "succeeded".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        eprintln!(
            "synq: test: opening {} after the privilege drop {what}",
            std::path::Path::new(&path).display()
        );
    }
}

/// `synq vmcoreinfo`: the VMCOREINFO text, exactly as found, ending with a newline.
fn vmcoreinfo(session: &mut Session) -> Result<Outcome, Error> {
    let target = session.target()?;
    let text = target
        .vmcoreinfo_text()
        .ok_or_else(|| Error::NoVmcoreinfo(target.path().to_path_buf()))?;
    let mut stdout = text.trim_end_matches('\n').to_string();
    stdout.push('\n');
    Ok(Outcome::new(stdout, target.warnings().to_vec(), false))
}

/// The warnings of the target, if it was opened.
fn target_warnings(session: &mut Session, opened: bool) -> Vec<String> {
    if !opened {
        return Vec::new();
    }
    session
        .target()
        .map(|t| t.warnings().to_vec())
        .unwrap_or_default()
}

fn layout(opts: &Options, session: &mut Session) -> Result<Outcome, Error> {
    let mut layout = session.layout()?.to_json();
    let netns = session.netns_layout()?.map(|n| n.to_json());
    if let Some(o) = layout.as_object_mut() {
        o.insert("netns".into(), netns.unwrap_or_default());
    }
    let from = session.btf_source().unwrap_or_default().to_string();
    // Live, the layout needs only the BTF: the target is opened only for a dump (whose BTF it holds).
    let opened = matches!(opts.target, Spec::Core { .. });
    let warnings = target_warnings(session, opened);
    let json = opts.output == Output::Json;
    let stdout = if json {
        let mut v = layout;
        if let Some(o) = v.as_object_mut() {
            o.insert("btf".into(), from.into());
            o.insert("warnings".into(), warnings.clone().into());
        }
        format!("{v}\n")
    } else {
        let mut s = format!("layout resolved from {from}\n");
        if let Some(o) = layout.as_object() {
            for (k, val) in o {
                s.push_str(&format!("  {k:<24} {val}\n"));
            }
        }
        s
    };
    Ok(Outcome::new(stdout, warnings, json))
}

/// What a report reads besides the listening hash, decided once from the options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Each namespace's sysctls and counters (JSON, `--wide`, metrics).
    pub namespaces: bool,
    /// Each listener's owning processes: O(open files).
    pub owners: bool,
    /// The half-open requests themselves: O(connections).
    pub requests: bool,
}

impl Wants {
    pub fn of(opts: &Options) -> Wants {
        let metrics = opts.output == Output::Prometheus;
        Wants {
            namespaces: opts.output == Output::Json
                || metrics
                || (opts.output == Output::Table && opts.wide),
            owners: opts.output != Output::Total,
            requests: opts.requests && opts.output != Output::Total && !metrics,
        }
    }
}

/// A session made ready for repeated reports (`--watch`, `serve`): the target open, symbols, BTF and every
/// layout resolved, privileges dropped. Each [`Prepared::collect`] is then only the walks.
pub struct Prepared {
    session: Session,
    wants: Wants,
    release: String,
    era: String,
    symbols: String,
    btf: String,
    timer: Timer,
    /// With [`Prepared::reuse_owners`]: the last owners walk, reused while it covers every listener.
    owners_cache: Option<OwnersCache>,
    owners_max_age: Option<std::time::Duration>,
}

/// Owners found by the last walk: per sock or socket address asked for, its processes (empty: none).
struct OwnersCache {
    at: Instant,
    owners: std::collections::HashMap<u64, Vec<crate::walk::owners::Owner>>,
}

impl Prepared {
    /// Reuses the last owners walk (O(open files), the costliest part of a report on a busy host) for up to
    /// `max_age`, as long as it covers every listener found: a new listener, or a listener whose memory was
    /// reused, is looked up at once; a process that forks or exits is seen within `max_age`.
    pub fn reuse_owners(&mut self, max_age: std::time::Duration) {
        self.owners_max_age = Some(max_age);
    }

    /// Opens and resolves everything `wants` needs, then drops privileges as `drop` says (the caller may
    /// first open what it needs itself, for example a listening socket, and pass its own drop).
    pub fn new(
        mut session: Session,
        wants: Wants,
        drop: impl FnOnce() -> Result<privdrop::Dropped, String>,
    ) -> Result<Prepared, Error> {
        let mut timer = Timer::new();
        // The target first: "not root" and lockdown are the answers people need most, before anything else
        // fails.
        let target = session.target()?;
        if let Some(VmcoreinfoOrigin::Scan(d)) = target.vmcoreinfo_origin() {
            timer.note(&format!(
                "the target's time includes the VMCOREINFO scan: {:.2} ms over {} MiB, {:.2} ms validating {} candidates",
                d.scan_time.as_secs_f64() * 1e3,
                d.scanned >> 20,
                d.validate_time.as_secs_f64() * 1e3,
                d.found()
            ));
        }
        timer.phase("target");
        session.hashinfo()?;
        timer.phase("symbols");
        session.btf()?;
        timer.phase("btf-load");
        let era = session.layout()?.era();
        // The namespaces' BTF lookup scans the types once: only when they are wanted.
        if wants.namespaces || wants.requests {
            session.netns_layout()?;
        }
        if wants.owners {
            session.owners_layout()?;
        }
        if wants.requests {
            session.requests_layout()?;
        }
        timer.phase("layout");
        let release = session.target()?.release();
        let symbols = session.symbols()?.source.clone();
        let btf = session.btf_source().unwrap_or_default().to_string();
        // Everything is open, read or mapped: from here synq needs no privilege and opens nothing.
        match drop() {
            Ok(d) => timer.note(&format!(
                "privileges dropped (capabilities held before: {}, seccomp filter: {})",
                d.capabilities, d.seccomp
            )),
            Err(e) => {
                eprintln!("synq: note: could not drop privileges after opening the sources: {e}")
            }
        }
        test_open_after_drop();
        timer.phase("drop");
        Ok(Prepared {
            session,
            wants,
            release,
            era,
            symbols,
            btf,
            timer,
            owners_cache: None,
            owners_max_age: None,
        })
    }

    /// One report: the walks, over memory as it is now.
    pub fn collect(&mut self) -> Result<Report, Error> {
        let (session, wants, timer) = (&mut self.session, self.wants, &mut self.timer);
        let (cache, max_age) = (&mut self.owners_cache, self.owners_max_age);
        let result = session.walk()?;
        timer.phase("walk");
        let ns = if wants.namespaces || wants.requests {
            session.namespaces()?
        } else {
            None
        };
        timer.phase("namespaces");
        let requests = if wants.requests {
            let extra: Vec<u64> = ns
                .iter()
                .flat_map(|n| n.namespaces.iter().filter_map(|x| x.hashinfo))
                .collect();
            session.requests(&extra)?
        } else {
            None
        };
        timer.phase("requests");
        let ns = if wants.namespaces { ns } else { None };
        let mut result = result;
        let mut owner_warnings = Vec::new();
        if wants.owners {
            let wanted: std::collections::HashSet<u64> = result
                .listeners
                .iter()
                .flat_map(|l| [l.sock, l.socket])
                .filter(|&a| a != 0)
                .collect();
            let reusable = cache.as_ref().is_some_and(|c| {
                max_age.is_some_and(|m| c.at.elapsed() < m)
                    && wanted.iter().all(|a| c.owners.contains_key(a))
            });
            if !reusable {
                *cache = None;
                // A listener without a known struct socket is found through each open socket's sk.
                let by_sk = result.listeners.iter().any(|l| l.socket == 0);
                if let Some(found) = session.owners(&wanted, by_sk)? {
                    let mut owners = found.owners;
                    // A walk with warnings is not kept: the next one tries again.
                    if max_age.is_some() && found.warnings.is_empty() {
                        // Every address looked for is in the cache, found or not (what reuse checks); a
                        // one-shot run needs no such entries (at 100,000 listeners, 200,000 of them).
                        for a in &wanted {
                            owners.entry(*a).or_default();
                        }
                        *cache = Some(OwnersCache {
                            at: Instant::now(),
                            owners: owners.clone(),
                        });
                    }
                    owner_warnings = found.warnings;
                    attach_owners(&mut result.listeners, &owners);
                }
            } else if let Some(c) = cache.as_ref() {
                attach_owners(&mut result.listeners, &c.owners);
            }
        }
        timer.phase("owners");

        let target = session.target()?;
        let mut warnings = target.warnings().to_vec();
        warnings.extend(result.warnings);
        warnings.extend(owner_warnings);
        let namespaces = ns.map(|n| {
            warnings.extend(n.warnings);
            n.namespaces
        });
        let requests = if wants.requests {
            match requests {
                Some(r) => {
                    warnings.extend(r.warnings);
                    Some(r.requests)
                }
                None => {
                    warnings.push(
                        "--requests: this kernel's BTF does not describe its request socks (before 4.4?); \
                         no request listed"
                            .into(),
                    );
                    None
                }
            }
        } else {
            None
        };
        let mut rep = Report {
            release: self.release.clone(),
            symbols: self.symbols.clone(),
            source: target.source_label(),
            btf: self.btf.clone(),
            era: self.era.clone(),
            listeners: result.listeners,
            namespaces,
            requests,
            warnings,
        };
        rep.sort();
        Ok(rep)
    }

    /// Frees the BTF: every layout `wants` needs was resolved in [`Prepared::new`]. For a one-shot run,
    /// whose walk, owners and output then peak with 5 MiB less.
    pub fn release_btf(&mut self) {
        self.session.release_btf();
    }

    /// With SYNQ_TIMING, a phase mark (output, for example).
    pub fn phase(&mut self, name: &str) {
        self.timer.phase(name);
    }

    /// With SYNQ_TIMING, the memory use so far.
    pub fn memory(&self) {
        self.timer.memory();
    }
}

/// Each listener's owners from `found` (by sock or socket address), each process once, by pid.
fn attach_owners(
    listeners: &mut [crate::walk::Listener],
    found: &std::collections::HashMap<u64, Vec<crate::walk::owners::Owner>>,
) {
    for l in listeners {
        // A file points at the socket; its sk is the listener, or (MPTCP) the socket's own sock.
        let mut v: Vec<_> = [l.sock, l.socket]
            .iter()
            .filter(|&&a| a != 0)
            .filter_map(|a| found.get(a))
            .flatten()
            .cloned()
            .collect();
        v.sort();
        v.dedup_by_key(|o| o.pid);
        l.owners = Some(v);
    }
}

fn report(opts: &Options, session: Session) -> Result<Outcome, Error> {
    // The textfile's directory is opened before the privilege drop forbids opening anything.
    let textfile = match &opts.textfile {
        Some(path) => Some(metrics::Textfile::prepare(path)?),
        None => None,
    };
    let profile = if textfile.is_some() {
        privdrop::Profile::Textfile
    } else {
        privdrop::Profile::Report
    };
    let mut p = Prepared::new(session, Wants::of(opts), || {
        privdrop::drop_privileges_with(profile, None)
    })?;
    p.release_btf();
    let started = Instant::now();
    let rep = p.collect()?;
    let scrape = metrics::Scrape {
        duration: started.elapsed(),
        warnings_total: rep.warnings.len() as u64,
    };
    let mut stdout = String::new();
    match textfile {
        Some(t) => t.write(render(opts, &rep, scrape).as_bytes())?,
        // JSON is streamed to stdout, not built as one string first (at 100,000 listeners the string alone
        // would be some 30 MiB of the peak memory).
        None if opts.output == Output::Json => write_json_stdout(&rep)?,
        None => stdout = render(opts, &rep, scrape),
    }
    p.phase("output");
    p.memory();
    // In JSON the warnings are part of the object; elsewhere they go to stderr.
    Ok(Outcome::new(
        stdout,
        rep.warnings,
        opts.output == Output::Json,
    ))
}

/// `rep` as JSON on stdout, through a buffer; a reader that closed the pipe is not an error.
fn write_json_stdout(rep: &Report) -> Result<(), Error> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    match rep
        .write_json(&mut w)
        .and_then(|_| w.write_all(b"\n"))
        .and_then(|_| w.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(()),
    }
}

/// A report as `opts.output` says.
pub fn render(opts: &Options, rep: &Report, scrape: metrics::Scrape) -> String {
    match opts.output {
        Output::Total => format!("{}\n", rep.totals().syn_queue),
        Output::Json => {
            let mut j = rep.to_json();
            j.push('\n');
            j
        }
        Output::Table => rep.to_table_wide(opts.wide),
        Output::Prometheus => metrics::render(rep, &opts.metrics, scrape),
    }
}

/// Facts for `synq info`, in order; a step that fails records its error and the later steps that need it
/// are skipped.
struct Facts(Vec<(&'static str, serde_json::Value)>);

impl Facts {
    fn put(&mut self, key: &'static str, v: impl Into<serde_json::Value>) {
        self.0.push((key, v.into()));
    }
    fn vmcoreinfo(&mut self, info: Option<&VmcoreInfo>) {
        let Some(info) = info else {
            self.put("vmcoreinfo", "absent");
            return;
        };
        self.put("vmcoreinfo", "present");
        if let Some(r) = info.osrelease() {
            self.put("release", r.trim());
        }
        if let Some(b) = info.build_id() {
            self.put("build_id", b.trim());
        }
        if let Some(o) = info.kernel_offset() {
            self.put("kaslr_offset", format!("{o:#x}"));
        }
        if let Some(p) = info.number("phys_base") {
            self.put("phys_base", p);
        }
        // The architecture's own reading of VMCOREINFO (live too, where kcore needs no translation): the
        // machine its keys name, paging levels, page size...
        match arch::paging_facts(info) {
            Ok(facts) => {
                for (key, value) in facts {
                    self.put(key, value);
                }
            }
            Err(e) => self.put("paging_levels_error", e.to_string()),
        }
        self.put(
            "kallsyms_in_vmcoreinfo",
            info.symbol("kallsyms_names").is_some(),
        );
    }
    fn target(&mut self, t: &Target) {
        self.put("format", t.format());
        self.vmcoreinfo(t.vmcoreinfo());
        if t.vmcoreinfo().and_then(VmcoreInfo::osrelease).is_none() {
            self.put("release", t.release());
        }
        match t.vmcoreinfo_origin() {
            None => {}
            Some(VmcoreinfoOrigin::Kcore) => self.put("vmcoreinfo_source", "kcore note"),
            Some(VmcoreinfoOrigin::Header) => self.put("vmcoreinfo_source", "the dump's header"),
            Some(VmcoreinfoOrigin::File(f)) => {
                self.put("vmcoreinfo_source", format!("{} (checked)", f.display()));
            }
            Some(VmcoreinfoOrigin::Scan(d)) => {
                self.put("vmcoreinfo_source", "found by scanning physical memory");
                self.scan(d);
            }
        }
        if let Some(arch) = t.translation() {
            self.put("machine", arch.machine().to_string());
        }
    }
    /// What a VMCOREINFO scan saw: the chosen note, the candidates and why the others were not used.
    fn scan(&mut self, d: &Discovery) {
        if let Some(c) = d.chosen() {
            self.put("vmcoreinfo_paddr", format!("{:#x}", c.paddr));
        }
        self.put("vmcoreinfo_candidates", d.found());
        let rejected: Vec<String> = d
            .candidates
            .iter()
            .filter_map(|c| Some(format!("{:#x}: {}", c.paddr, c.rejected.as_ref()?)))
            .collect();
        self.put("vmcoreinfo_rejected", rejected);
        self.put("scanned_bytes", d.scanned);
        if d.budget_spent {
            self.put(
                "scan_stopped",
                "at its budget (64 bytes of memory per byte of the file): the file's ranges overlap or claim \
                 more than it holds",
            );
        }
        self.put("unreadable_pages", d.unreadable_pages);
    }

    fn render(&self, json: bool) -> String {
        if json {
            let map: serde_json::Map<String, serde_json::Value> = self
                .0
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            return format!("{}\n", serde_json::Value::Object(map));
        }
        let mut out = String::new();
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for (k, v) in &self.0 {
            match v {
                // A list: one item per line, under its key ("none" when empty).
                serde_json::Value::Array(items) => {
                    if items.is_empty() {
                        out.push_str(&format!("{k:<24} none\n"));
                    }
                    for (i, item) in items.iter().enumerate() {
                        let key = if i == 0 { *k } else { "" };
                        out.push_str(&format!("{key:<24} {}\n", text(item)));
                    }
                }
                other => out.push_str(&format!("{k:<24} {}\n", text(other))),
            }
        }
        out
    }
}

/// `synq info`: what synq finds in its source, step by step. A step that fails is recorded as
/// `<step>_error` and the steps that need it are skipped.
fn info(opts: &Options, session: &mut Session) -> Result<Outcome, Error> {
    let mut f = Facts(Vec::new());
    f.put("source", session.target_path().display().to_string());
    let json = opts.output == Output::Json;
    let target = match session.target() {
        Ok(t) => t,
        Err(e) => {
            // Nothing validated: the candidates and why each was rejected are what the user needs now.
            if let Error::Target(TargetError::NotFound {
                discovery, format, ..
            }) = &e
            {
                f.put("format", format.clone());
                f.put("vmcoreinfo", "not found");
                f.scan(discovery);
                f.put("error", e.to_string());
                return Ok(Outcome {
                    stdout: f.render(json),
                    warnings: Vec::new(),
                    status: 1,
                });
            }
            return Err(e);
        }
    };
    f.target(target);
    let warnings = target.warnings().to_vec();
    match session.hashinfo() {
        Ok(addr) => {
            let source = session
                .symbols()
                .map(|s| s.source.clone())
                .unwrap_or_default();
            f.put("symbols", source);
            f.put("tcp_hashinfo", format!("{addr:#x}"));
        }
        Err(e) => {
            if let Ok(s) = session.symbols() {
                f.put("symbols", s.source.clone());
            }
            f.put("symbols_error", e.to_string());
        }
    }
    // BTF from memory needs the symbols; a failure there was reported above.
    match session.layout() {
        Ok(l) => {
            let (table, era) = (l.table_name(), l.era());
            f.put("btf", session.btf_source().unwrap_or_default().to_string());
            f.put("table", table);
            f.put("layout", era);
        }
        Err(e) => {
            if let Some(from) = session.btf_source() {
                f.put("btf", from.to_string());
            }
            f.put("layout_error", e.to_string());
        }
    }
    f.put("warnings", warnings.clone());
    Ok(Outcome::new(f.render(json), warnings, json))
}

/// Writes the outcome. A closed pipe (`synq | head`) is not an error.
pub fn emit(out: &Outcome) -> i32 {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    if let Err(e) = lock
        .write_all(out.stdout.as_bytes())
        .and_then(|_| lock.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("synq: writing output: {e}");
        return 1;
    }
    for w in &out.warnings {
        eprintln!("synq: warning: {w}");
    }
    out.status
}
