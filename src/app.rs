//! The command line: argument parsing, the run itself, and errors that say what to do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::arch::x86_64::X86_64;
use crate::arch::{ConfigError, Translated};
use crate::btf::{self, BtfLoadError, Layout, LayoutError};
use crate::memory::Memory;
use crate::report::Report;
use crate::source::kcore::{ElfError, Kcore as ElfCore};
use crate::source::{self as dump, DumpError};
use crate::symbols::kallsyms_mem::{KallsymsError, KallsymsTables};
use crate::symbols::text::{self as symbols, SymbolError};
use crate::symbols::vmlinux::{Vmlinux, VmlinuxError};
use crate::vmcoreinfo::VmcoreInfo;
use crate::walk::{self, Limits, WalkError};

pub const DEFAULT_KCORE: &str = "/proc/kcore";
pub const DEFAULT_BTF: &str = "/sys/kernel/btf/vmlinux";
pub const DEFAULT_KALLSYMS: &str = "/proc/kallsyms";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";

const ABOUT: &str = "What is sitting in your TCP listen queues: per-listener SYN queue (half-open), accept \
queue and backlog limit, read from kernel memory without loading any code into the kernel.";

const LONG_ABOUT: &str = "What is sitting in your TCP listen queues: per-listener SYN queue (half-open \
connections), its young part, the accept queue (completed, not yet accepted) and the backlog limit, for every \
TCP listening socket of every network namespace, and in total.

synq loads no module and no BPF program: it reads kernel memory strictly read-only through /proc/kcore \
(allowed under lockdown=integrity), finds tcp_hashinfo in the kernel's own kallsyms tables (located through \
kcore's VMCOREINFO on 6.0+, which also works under kptr_restrict) or in /proc/kallsyms, takes every struct \
layout from the kernel's BTF (/sys/kernel/btf/vmlinux) and walks the listening hash, one read per listener.

Columns: SYN-Q = half-open requests (SYN received, SYN-ACK sent, no final ACK yet); YOUNG = those whose \
SYN-ACK was not retransmitted yet; ACCEPT-Q = completed connections waiting for accept(); BACKLOG = the \
accept-queue limit (listen(2)'s backlog, capped by net.core.somaxconn). With SYN cookies in use, requests \
beyond a full SYN queue leave no trace in memory.

Needs root (CAP_SYS_RAWIO for /proc/kcore). Exit status: 0 ok, 1 error, 2 result printed with warnings \
(the kernel changed while synq read it, or a page was unreadable).";

const EXAMPLES: &str = "Examples:
  synq                         table of all listeners, then a totals line
  synq --total                 the number of half-open connections, nothing else
  synq --json | jq '.listeners[] | select(.syn_queue > 0)'
  synq --btf vmlinux.btf.xz    kernel without /sys/kernel/btf/vmlinux (BTFHub file)
  synq --system-map System.map kallsyms lacks tcp_hashinfo (CONFIG_KALLSYMS_ALL=n)
  synq layout --json           the struct offsets synq resolved from BTF; reads no memory
  synq --core vmcore           the same report from a crash dump (ELF or kdump-compressed)
  synq info --core vmcore      format, release, KASLR offset, paging, symbol and BTF sources of a dump
Environment: SYNQ_TIMING=1 prints the time of each phase to stderr.";

#[derive(Parser, Debug)]
#[command(name = "synq", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Print one JSON object (listeners, totals, kernel, warnings) instead of the table.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only the total number of half-open connections (the SYN-queue sum), then exit.
    #[arg(long, conflicts_with = "json")]
    pub total: bool,

    /// BTF of the running kernel: raw BTF, or xz-compressed raw BTF. [default: /sys/kernel/btf/vmlinux]
    #[arg(long, value_name = "PATH", global = true)]
    pub btf: Option<PathBuf>,

    /// Symbol addresses of the running kernel, in /proc/kallsyms format. Given explicitly, it is the only
    /// symbol source; by default synq first looks in the kernel's in-memory kallsyms tables (6.0+), then in
    /// /proc/kallsyms.
    #[arg(long, value_name = "PATH", global = true)]
    pub kallsyms: Option<PathBuf>,

    /// System.map of the running kernel, for kernels whose kallsyms lacks tcp_hashinfo
    /// (CONFIG_KALLSYMS_ALL=n). The KASLR offset comes from _stext in kallsyms, or from the KERNELOFFSET of
    /// kcore's VMCOREINFO.
    #[arg(long, value_name = "PATH", global = true)]
    pub system_map: Option<PathBuf>,

    /// Kernel memory as a kcore-shaped ELF core.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_KCORE, global = true)]
    pub kcore: PathBuf,

    /// An ELF vmlinux of the kernel being read: its .BTF section is the BTF (unless --btf is given) and its
    /// symbol table gives link-time addresses (unless --kallsyms is given), shifted by the KASLR offset from
    /// kallsyms' _stext or VMCOREINFO's KERNELOFFSET.
    #[arg(long, value_name = "PATH", global = true)]
    pub vmlinux: Option<PathBuf>,

    /// Read a crash dump instead of the live kernel: an ELF vmcore (kdump, makedumpfile -E, QEMU, virsh
    /// dump) or a kdump-compressed one, also in makedumpfile's flattened form; recognised by content. Kernels
    /// >= 6.0 need no other file: symbols and BTF come from the dump itself.
    #[arg(long, value_name = "PATH", conflicts_with = "kcore", global = true)]
    pub core: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the struct layout resolved from BTF (offsets, table, era), without touching kernel memory.
    Layout,
    /// Print what synq finds in its source (live kernel, or --core DUMP): format, kernel release, build id,
    /// KASLR offset, phys_base, paging levels, where the symbols and the BTF come from, and the layout era.
    Info,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{0}: no such file — this kernel is built without CONFIG_PROC_KCORE, so its memory cannot be read \
         live; analyse a crash dump of it instead"
    )]
    NoKcore(PathBuf),
    #[error(
        "{0}: permission denied — not root: run synq as root (reading kernel memory needs CAP_SYS_RAWIO)"
    )]
    NotRoot(PathBuf),
    #[error(
        "{0}: operation not permitted — kernel lockdown=confidentiality forbids /proc/kcore; analyse a crash \
         dump instead, or boot with lockdown=integrity (which allows it)"
    )]
    Lockdown(PathBuf),
    #[error(
        "{0}: permission denied although running as root — the process lacks CAP_SYS_RAWIO (container or \
         capability bounding set?) or a security module refuses it"
    )]
    Denied(PathBuf),
    #[error(transparent)]
    Kcore(ElfError),
    #[error(transparent)]
    Symbols(#[from] SymbolError),
    #[error(
        "{kallsyms}: every address reads as 0 — kptr_restrict hides kallsyms addresses, and the in-memory \
         kallsyms tables failed too ({in_memory}); run with kernel.kptr_restrict ≤ 1, or pass --system-map"
    )]
    NoSymbols {
        kallsyms: PathBuf,
        in_memory: String,
    },
    #[error(
        "tcp_hashinfo is not in {0} (CONFIG_KALLSYMS_ALL is off): pass --system-map with the System.map of \
         this kernel"
    )]
    NoHashinfo(PathBuf),
    #[error("{path}: has no {symbol}; is it the System.map of the running kernel?")]
    SystemMapSymbol { path: PathBuf, symbol: String },
    #[error(
        "cannot tell the KASLR offset for --system-map: kallsyms has no usable _stext and {0} has no \
         VMCOREINFO KERNELOFFSET"
    )]
    NoKaslrOffset(PathBuf),
    #[error(transparent)]
    BtfLoad(#[from] BtfLoadError),
    #[error(
        "{err} (BTF from {origin}): this BTF cannot describe the TCP listening tables — is it the vmlinux BTF \
         of a kernel with TCP? Pass --btf with the running kernel's BTF"
    )]
    Layout { origin: PathBuf, err: LayoutError },
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Vmlinux(#[from] VmlinuxError),
    #[error("{path}: {err}")]
    DumpWalk { path: PathBuf, err: WalkError },
    #[error("{0}: has no .BTF section (built without CONFIG_DEBUG_INFO_BTF?); pass --btf")]
    VmlinuxNoBtf(PathBuf),
    #[error(
        "{0}: the dump carries no VMCOREINFO, which synq needs to translate its addresses (QEMU writes it only \
         with -device vmcoreinfo and the guest's qemu_fw_cfg module loaded)"
    )]
    NoVmcoreinfo(PathBuf),
    #[error("{path}: {err}")]
    Translation { path: PathBuf, err: ConfigError },
    #[error(
        "{path}: the kernel's own kallsyms tables cannot be used ({err}); if the dump is complete, pass \
         --kallsyms (or --system-map) with this kernel's symbols"
    )]
    DumpSymbols { path: PathBuf, err: KallsymsError },
    #[error(
        "{path}: no BTF in the dump ({why}); pass --btf with this kernel's BTF (kernels before 5.x, or built \
         without CONFIG_DEBUG_INFO_BTF)"
    )]
    NoDumpBtf { path: PathBuf, why: String },
}

/// What `run` leaves for `main`: text for stdout, and the exit status.
pub struct Outcome {
    pub stdout: String,
    pub warnings: Vec<String>,
    pub status: i32,
}

struct Timer {
    on: bool,
    start: Instant,
    last: Instant,
}

impl Timer {
    fn new() -> Timer {
        let now = Instant::now();
        Timer {
            on: std::env::var_os("SYNQ_TIMING").is_some_and(|v| v != "0"),
            start: now,
            last: now,
        }
    }
    /// With SYNQ_TIMING, also the memory use so far (resident anonymous, file-backed and shared pages).
    fn memory(&self) {
        if self.on {
            if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
                let keep = ["VmHWM", "RssAnon", "RssFile", "RssShmem"];
                let lines: Vec<String> = status
                    .lines()
                    .filter(|l| keep.iter().any(|k| l.starts_with(k)))
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect();
                eprintln!("synq memory: {}", lines.join(", "));
            }
        }
    }

    fn phase(&mut self, name: &str) {
        if self.on {
            let now = Instant::now();
            eprintln!(
                "synq timing: {name:<10} {:>8.2} ms (total {:.2} ms)",
                (now - self.last).as_secs_f64() * 1e3,
                (now - self.start).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}

pub fn run(cli: &Cli) -> Result<Outcome, Error> {
    match cli.command {
        Some(Command::Layout) => layout(cli),
        Some(Command::Info) => info(cli),
        None => report(cli),
    }
}

/// The BTF of --vmlinux's .BTF section.
fn vmlinux_btf(vm: &Path) -> Result<btf_rs::Btf, Error> {
    let v = Vmlinux::open(vm)?;
    let bytes = v
        .btf()?
        .ok_or_else(|| Error::VmlinuxNoBtf(vm.to_path_buf()))?;
    Ok(btf::parse_bytes(bytes, vm)?)
}

/// Where the BTF comes from: --btf, else --vmlinux, else (`None`) the source's own default: sysfs live,
/// __start_BTF..__stop_BTF in a dump.
fn explicit_btf(cli: &Cli) -> Option<Result<(btf_rs::Btf, String), Error>> {
    match (&cli.btf, &cli.vmlinux) {
        (Some(p), _) => Some(
            btf::load_file(p)
                .map(|l| (l.btf, p.display().to_string()))
                .map_err(Error::from),
        ),
        (None, Some(vm)) => Some(vmlinux_btf(vm).map(|b| (b, format!("{} (.BTF)", vm.display())))),
        (None, None) => None,
    }
}

/// A dump's BTF: --btf or --vmlinux when given, else from the dump itself.
fn core_btf(
    cli: &Cli,
    path: &Path,
    mem: &dyn Memory,
    syms: &SymbolMap,
) -> Result<(btf_rs::Btf, String), Error> {
    if let Some(b) = explicit_btf(cli) {
        return b;
    }
    let bytes = dump_btf(path, mem, syms)?;
    Ok((
        btf::parse_bytes(&bytes, path)?,
        format!("{} (__start_BTF..__stop_BTF)", path.display()),
    ))
}

fn resolve_from(btf: &btf_rs::Btf, origin: &str) -> Result<Layout, Error> {
    btf::resolve(btf).map_err(|err| Error::Layout {
        origin: PathBuf::from(origin),
        err,
    })
}

/// The live layout from --btf, else --vmlinux's .BTF section, else /sys/kernel/btf/vmlinux; and where it
/// came from.
fn load_layout_for(cli: &Cli, timer: &mut Timer) -> Result<(Layout, String), Error> {
    let (parsed, from) = match explicit_btf(cli) {
        Some(b) => b?,
        None => (
            btf::load_file(Path::new(DEFAULT_BTF))?.btf,
            DEFAULT_BTF.to_string(),
        ),
    };
    timer.phase("btf-load");
    let layout = resolve_from(&parsed, &from)?;
    timer.phase("layout");
    Ok((layout, from))
}

fn layout(cli: &Cli) -> Result<Outcome, Error> {
    let (layout, from) = load_layout_for(cli, &mut Timer::new())?;
    let stdout = if cli.json {
        let mut v = layout.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("btf".into(), from.into());
        }
        format!("{v}\n")
    } else {
        let v = layout.to_json();
        let mut s = format!("layout resolved from {from}\n");
        if let Some(o) = v.as_object() {
            for (k, val) in o {
                s.push_str(&format!("  {k:<24} {val}\n"));
            }
        }
        s
    };
    Ok(Outcome {
        stdout,
        warnings: Vec::new(),
        status: 0,
    })
}

/// Opens the memory source, telling "not root" from lockdown from a kernel without kcore.
fn open_kcore(path: &Path) -> Result<ElfCore, Error> {
    ElfCore::open(path).map_err(|e| match &e {
        ElfError::Open { err, .. } => match err.kind() {
            std::io::ErrorKind::NotFound => Error::NoKcore(path.to_path_buf()),
            std::io::ErrorKind::PermissionDenied => {
                // SAFETY: geteuid has no preconditions and cannot fail.
                let euid = unsafe { libc::geteuid() };
                if euid != 0 {
                    Error::NotRoot(path.to_path_buf())
                } else if lockdown_confidentiality() {
                    Error::Lockdown(path.to_path_buf())
                } else {
                    Error::Denied(path.to_path_buf())
                }
            }
            _ => Error::Kcore(e),
        },
        _ => Error::Kcore(e),
    })
}

/// `/sys/kernel/security/lockdown` reads "none integrity [confidentiality]" when locked down for
/// confidentiality (needs securityfs mounted).
fn lockdown_confidentiality() -> bool {
    std::fs::read_to_string(LOCKDOWN).is_ok_and(|s| s.contains("[confidentiality]"))
}

/// Where tcp_hashinfo's address came from, for the report.
struct Symbol {
    addr: u64,
    source: String,
}

/// The address of tcp_hashinfo: from System.map plus the KASLR offset when one is given; from an explicitly
/// given kallsyms file; else from the kernel's own in-memory kallsyms tables when VMCOREINFO locates them
/// (6.0+: one lookup instead of reading all of /proc/kallsyms, which takes 0.1–0.5 s on a slow machine and
/// reads zeros under kptr_restrict), falling back to /proc/kallsyms.
fn hashinfo_addr(cli: &Cli, core: &ElfCore, info: Option<&VmcoreInfo>) -> Result<Symbol, Error> {
    let explicit = cli.kallsyms.is_some();
    let kallsyms = cli
        .kallsyms
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KALLSYMS));
    if let Some(link) = link_time_symbols(cli, &["tcp_hashinfo", "_stext"]) {
        let (syms, from) = link?;
        return link_time_addr(&syms, &from, &kallsyms, core, info);
    }
    let mut in_memory_error = None;
    if !explicit {
        if let Some(info) = info.filter(|i| i.symbol("kallsyms_names").is_some()) {
            let found =
                KallsymsTables::new(core, info).and_then(|t| t.lookup(core, "tcp_hashinfo"));
            match found {
                Ok(Some(addr)) => {
                    return Ok(Symbol {
                        addr,
                        source: "kallsyms tables in kernel memory (located by VMCOREINFO)".into(),
                    });
                }
                // The in-memory tables are what /proc/kallsyms prints: the symbol is not there either.
                Ok(None) => return Err(Error::NoHashinfo(kallsyms)),
                Err(e) => in_memory_error = Some(e),
            }
        }
    }
    let found = symbols::scan(&kallsyms, &["tcp_hashinfo"])?;
    match found.symbols.get("tcp_hashinfo") {
        Some(&addr) if addr != 0 => Ok(Symbol {
            addr,
            source: kallsyms.display().to_string(),
        }),
        _ if !found.saw_nonzero => Err(match in_memory_error {
            Some(e) => Error::NoSymbols {
                kallsyms,
                in_memory: e.to_string(),
            },
            None => SymbolError::Restricted(kallsyms).into(),
        }),
        _ => Err(Error::NoHashinfo(kallsyms)),
    }
}

/// Symbol name → address.
type SymbolMap = std::collections::HashMap<String, u64>;

/// Link-time addresses of `names` from --system-map, or else from --vmlinux's symbol table when no kallsyms
/// file was given; `None` when neither applies.
fn link_time_symbols(cli: &Cli, names: &[&str]) -> Option<Result<(SymbolMap, PathBuf), Error>> {
    if let Some(map) = &cli.system_map {
        return Some(
            symbols::scan(map, names)
                .map(|m| (m.symbols, map.clone()))
                .map_err(Error::from),
        );
    }
    let vm = cli.vmlinux.as_ref().filter(|_| cli.kallsyms.is_none())?;
    Some(
        Vmlinux::open(vm)
            .and_then(|v| v.symbols(names))
            .map(|m| (m, vm.clone()))
            .map_err(Error::from),
    )
}

/// System.map and vmlinux hold link-time addresses; KASLR shifts the whole image by one offset, taken from
/// VMCOREINFO's KERNELOFFSET, or from `_stext` in kallsyms.
fn link_time_addr(
    link: &std::collections::HashMap<String, u64>,
    from: &Path,
    kallsyms: &Path,
    core: &ElfCore,
    info: Option<&VmcoreInfo>,
) -> Result<Symbol, Error> {
    let map = from;
    let get = |s: &str| {
        link.get(s).copied().ok_or_else(|| Error::SystemMapSymbol {
            path: map.to_path_buf(),
            symbol: s.into(),
        })
    };
    let link_hashinfo = get("tcp_hashinfo")?;
    let link_stext = get("_stext")?;
    // VMCOREINFO describes the very memory being read; kallsyms' _stext is the fallback for kernels before
    // 4.19, whose /proc/kcore has no VMCOREINFO note.
    let offset = match info.and_then(VmcoreInfo::kernel_offset) {
        Some(o) => o,
        None => {
            let ks = symbols::scan(kallsyms, &["_stext"]).ok();
            match ks.as_ref().and_then(|k| k.symbols.get("_stext")) {
                Some(&run) if run != 0 => run.wrapping_sub(link_stext),
                _ => return Err(Error::NoKaslrOffset(core.path().to_path_buf())),
            }
        }
    };
    Ok(Symbol {
        addr: link_hashinfo.wrapping_add(offset),
        source: format!("{} + KASLR offset {offset:#x}", map.display()),
    })
}

fn kernel_release(cli: &Cli, info: Option<&VmcoreInfo>) -> String {
    if let Some(r) = info.and_then(VmcoreInfo::osrelease) {
        return r.trim().to_string();
    }
    if cli.kcore == Path::new(DEFAULT_KCORE) {
        if let Ok(r) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            return r.trim().to_string();
        }
    }
    "unknown".into()
}

fn report(cli: &Cli) -> Result<Outcome, Error> {
    if let Some(path) = &cli.core {
        return report_core(cli, path);
    }
    let mut timer = Timer::new();
    // kcore first: "not root" and lockdown are the answers people need most, before anything else fails.
    let core = open_kcore(&cli.kcore)?;
    timer.phase("kcore");
    let info = core.vmcoreinfo.as_deref().map(VmcoreInfo::parse);
    let hashinfo = hashinfo_addr(cli, &core, info.as_ref())?;
    timer.phase("symbols");
    let (layout, btf) = load_layout_for(cli, &mut timer)?;
    let release = kernel_release(cli, info.as_ref());
    let source = cli.kcore.display().to_string();
    finish(cli, &core, &layout, hashinfo, release, source, btf, timer)
}

/// Walks `mem` and renders the report: the part live hosts and dumps share.
#[allow(clippy::too_many_arguments)]
fn finish(
    cli: &Cli,
    mem: &dyn Memory,
    layout: &Layout,
    hashinfo: Symbol,
    release: String,
    source: String,
    btf: String,
    mut timer: Timer,
) -> Result<Outcome, Error> {
    let result = walk::walk(mem, layout, hashinfo.addr, Limits::default())?;
    timer.phase("walk");

    let mut rep = Report {
        release,
        symbols: hashinfo.source,
        source,
        btf,
        era: layout.era(),
        listeners: result.listeners,
        warnings: result.warnings,
    };
    rep.sort();
    let stdout = if cli.total {
        format!("{}\n", rep.totals().syn_queue)
    } else if cli.json {
        let mut j = rep.to_json();
        j.push('\n');
        j
    } else {
        rep.to_table()
    };
    timer.phase("output");
    timer.memory();
    let status = if rep.warnings.is_empty() { 0 } else { 2 };
    // In JSON the warnings are part of the object; elsewhere they go to stderr.
    let warnings = if cli.json { Vec::new() } else { rep.warnings };
    Ok(Outcome {
        stdout,
        warnings,
        status,
    })
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
        // 4.14, 77ef56e4f0fb ("x86: Enable 5-level paging support via CONFIG_X86_5LEVEL=y").
        let levels = if info.number("pgtable_l5_enabled") == Some(1) {
            5
        } else {
            4
        };
        self.put("paging_levels", levels);
        self.put(
            "kallsyms_in_vmcoreinfo",
            info.symbol("kallsyms_names").is_some(),
        );
    }
    fn layout(&mut self, layout: Result<Layout, Error>) {
        match layout {
            Ok(l) => {
                self.put("table", l.table_name());
                self.put("layout", l.era());
            }
            Err(e) => self.put("layout_error", e.to_string()),
        }
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
        for (k, v) in &self.0 {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<24} {text}\n"));
        }
        out
    }
}

/// `synq info`: what synq finds in its source, step by step.
fn info(cli: &Cli) -> Result<Outcome, Error> {
    let mut f = Facts(Vec::new());
    if let Some(path) = &cli.core {
        let dump = dump::open(path)?;
        f.put("source", path.display().to_string());
        f.put("format", dump.format().to_string());
        let info = dump.vmcoreinfo().map(VmcoreInfo::parse);
        f.vmcoreinfo(info.as_ref());
        if let Some(info) = &info {
            match X86_64::from_vmcoreinfo(info) {
                Ok(mmu) => {
                    let mem = Translated::new(&dump, mmu);
                    let names = core_symbol_names(cli);
                    match dump_symbols(cli, path, &mem, info, &names) {
                        Ok((syms, source)) => {
                            f.put("symbols", source);
                            if let Some(a) = syms.get("tcp_hashinfo") {
                                f.put("tcp_hashinfo", format!("{a:#x}"));
                            }
                            match core_btf(cli, path, &mem, &syms) {
                                Ok((b, from)) => {
                                    f.layout(resolve_from(&b, &from));
                                    f.put("btf", from);
                                }
                                Err(e) => f.layout(Err(e)),
                            }
                        }
                        Err(e) => f.put("symbols_error", e.to_string()),
                    }
                }
                Err(e) => f.put("translation_error", e.to_string()),
            }
        }
    } else {
        let core = open_kcore(&cli.kcore)?;
        f.put("source", cli.kcore.display().to_string());
        f.put("format", "live kcore (ELF core, virtual addresses)");
        let info = core.vmcoreinfo.as_deref().map(VmcoreInfo::parse);
        f.vmcoreinfo(info.as_ref());
        if info.as_ref().and_then(|i| i.osrelease()).is_none() {
            f.put("release", kernel_release(cli, info.as_ref()));
        }
        match hashinfo_addr(cli, &core, info.as_ref()) {
            Ok(sym) => {
                f.put("symbols", sym.source);
                f.put("tcp_hashinfo", format!("{:#x}", sym.addr));
            }
            Err(e) => f.put("symbols_error", e.to_string()),
        }
        match load_layout_for(cli, &mut Timer::new()) {
            Ok((layout, from)) => {
                f.put("btf", from);
                f.layout(Ok(layout));
            }
            Err(e) => f.layout(Err(e)),
        }
    }
    Ok(Outcome {
        stdout: f.render(cli.json),
        warnings: Vec::new(),
        status: 0,
    })
}

/// The largest BTF read out of a dump (vmlinux BTF is 3–7 MiB).
const MAX_DUMP_BTF: u64 = 64 << 20;

/// `synq --core DUMP`: the same report from a crash dump. Addresses are translated with the dump's
/// VMCOREINFO and page tables; symbols come from the dump's own kallsyms tables (6.0+) unless --kallsyms or
/// --system-map is given; BTF from the dump (between __start_BTF and __stop_BTF) unless --btf is given.
fn report_core(cli: &Cli, path: &Path) -> Result<Outcome, Error> {
    let mut timer = Timer::new();
    let dump = dump::open(path)?;
    let info = VmcoreInfo::parse(
        dump.vmcoreinfo()
            .ok_or_else(|| Error::NoVmcoreinfo(path.to_path_buf()))?,
    );
    let mmu = X86_64::from_vmcoreinfo(&info).map_err(|err| Error::Translation {
        path: path.to_path_buf(),
        err,
    })?;
    let mem = Translated::new(&dump, mmu);
    timer.phase("dump");

    let names = core_symbol_names(cli);
    let (syms, source) = dump_symbols(cli, path, &mem, &info, &names)?;
    let hashinfo = match syms.get("tcp_hashinfo") {
        Some(&addr) if addr != 0 => Symbol { addr, source },
        _ => return Err(Error::NoHashinfo(PathBuf::from(source))),
    };
    timer.phase("symbols");

    let (btf, btf_desc) = core_btf(cli, path, &mem, &syms)?;
    timer.phase("btf-load");
    let layout = resolve_from(&btf, &btf_desc)?;
    timer.phase("layout");
    let release = info
        .osrelease()
        .map_or_else(|| "unknown".to_string(), |r| r.trim().to_string());
    let source = format!("{} ({})", path.display(), dump.format());
    finish(
        cli, &mem, &layout, hashinfo, release, source, btf_desc, timer,
    )
    .map_err(|e| match e {
        Error::Walk(err) => Error::DumpWalk {
            path: path.to_path_buf(),
            err,
        },
        other => other,
    })
}

/// Symbol addresses for a dump, and where they came from.
fn dump_symbols(
    cli: &Cli,
    path: &Path,
    mem: &dyn Memory,
    info: &VmcoreInfo,
    names: &[&str],
) -> Result<(SymbolMap, String), Error> {
    if let Some(link) = link_time_symbols(cli, names) {
        // Link-time addresses (System.map, vmlinux): shift by the dump's KERNELOFFSET (KASLR).
        let (m, from) = link?;
        let offset = info
            .kernel_offset()
            .ok_or_else(|| Error::NoKaslrOffset(path.to_path_buf()))?;
        let syms = m
            .into_iter()
            .map(|(k, v)| (k, v.wrapping_add(offset)))
            .collect();
        return Ok((
            syms,
            format!("{} + KERNELOFFSET {offset:#x}", from.display()),
        ));
    }
    if let Some(ks) = &cli.kallsyms {
        let found = symbols::scan(ks, names)?;
        if !found.saw_nonzero {
            return Err(SymbolError::Restricted(ks.clone()).into());
        }
        return Ok((found.symbols, ks.display().to_string()));
    }
    let tables = KallsymsTables::new(mem, info).map_err(|err| Error::DumpSymbols {
        path: path.to_path_buf(),
        err,
    })?;
    let syms = tables
        .lookup_many(mem, names)
        .map_err(|err| Error::DumpSymbols {
            path: path.to_path_buf(),
            err,
        })?;
    Ok((
        syms,
        "kallsyms tables in the dump (located by VMCOREINFO)".into(),
    ))
}

/// The symbols a dump must give: tcp_hashinfo, and the BTF's bounds when the BTF comes from the dump.
fn core_symbol_names(cli: &Cli) -> Vec<&'static str> {
    let mut names = vec!["tcp_hashinfo"];
    if cli.btf.is_none() && cli.vmlinux.is_none() {
        names.extend(["__start_BTF", "__stop_BTF"]);
    }
    names
}

/// The kernel's BTF, read out of the dump between __start_BTF and __stop_BTF.
fn dump_btf(path: &Path, mem: &dyn Memory, syms: &SymbolMap) -> Result<Vec<u8>, Error> {
    let no_btf = |why: String| Error::NoDumpBtf {
        path: path.to_path_buf(),
        why,
    };
    let (Some(&start), Some(&stop)) = (syms.get("__start_BTF"), syms.get("__stop_BTF")) else {
        return Err(no_btf(
            "the symbol source has no __start_BTF/__stop_BTF".into(),
        ));
    };
    let len = stop
        .checked_sub(start)
        .filter(|&l| l > 0 && l <= MAX_DUMP_BTF)
        .ok_or_else(|| {
            no_btf(format!(
                "__start_BTF {start:#x} .. __stop_BTF {stop:#x} is not a sane range"
            ))
        })?;
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    for (i, chunk) in bytes.chunks_mut(1 << 20).enumerate() {
        let at = start.wrapping_add((i as u64) << 20);
        mem.read(at, chunk)
            .map_err(|e| no_btf(format!("reading it failed: {e}")))?;
    }
    Ok(bytes)
}

/// Writes the outcome. A closed pipe (`synq | head`) is not an error.
pub fn emit(out: &Outcome) -> i32 {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    if let Err(e) = lock
        .write_all(out.stdout.as_bytes())
        .and_then(|_| lock.flush())
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("synq: writing output: {e}");
            return 1;
        }
    }
    for w in &out.warnings {
        eprintln!("synq: warning: {w}");
    }
    out.status
}
