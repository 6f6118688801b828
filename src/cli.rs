//! The command line (clap): the binary's side. It parses arguments into the library's [`synq::app::Options`];
//! the library exports no clap types.

use std::io::Write;
use std::path::PathBuf;

use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use synq::app::{Command, Options, Output, Watch};
use synq::serve::ServeOptions;
use synq::session::SideFiles;
use synq::target::Spec;

/// The running kernel's memory.
const DEFAULT_KCORE: &str = "/proc/kcore";

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
accept-queue limit (listen(2)'s backlog, capped by net.core.somaxconn); DROPS = packets the listener dropped \
(sk_drops, as ss -ltm shows it: SYNs refused by a full queue); NOTE synflood = the listener has hit a full SYN \
queue. With SYN cookies in use, requests beyond a full SYN queue leave no trace in memory. --wide adds each \
network namespace's listen sysctls and TcpExt counters (ListenOverflows, ListenDrops, TCPReqQFull*, \
Syncookies*); --json has them all, and per listener Fast Open, TCP_DEFER_ACCEPT, SO_REUSEPORT group and inode.

--watch repeats the report every interval (the walk only: symbols, BTF and layout are resolved once), with \
the counters as deltas per interval; --prometheus prints the Prometheus text format, --textfile writes it \
atomically for node_exporter's textfile collector; `synq serve` is a resident exporter that drops every \
privilege after opening its source; `synq doctor` says what will work on this host and what to do.

Needs root (CAP_SYS_RAWIO for /proc/kcore). Exit status: 0 ok, 1 error, 2 result printed with warnings \
(the kernel changed while synq read it, or a page was unreadable), 64 usage error (a bad option or \
argument: nothing was read).";

const EXAMPLES: &str = "Examples:
  synq                         table of all listeners, then a totals line
  synq --total                 the number of half-open connections, nothing else
  synq --wide                  ... and per network namespace: sysctls, drop counters, verdicts
  synq --requests              ... and the half-open requests: who is sending the SYNs
  synq --json | jq '.listeners[] | select(.syn_queue > 0)'
  synq --btf vmlinux.btf.xz    kernel without /sys/kernel/btf/vmlinux (BTFHub file)
  synq --system-map System.map kallsyms lacks tcp_hashinfo (CONFIG_KALLSYMS_ALL=n)
  synq layout --json           the struct offsets synq resolved from BTF; reads no memory
  synq --core vmcore           the same report from a crash dump (ELF or kdump-compressed)
  synq --core mem.lime         ... from a memory snapshot (LiME, AVML); the kernel is found by scanning
  synq --core mem.raw --raw    ... from a raw physical image (LiME padded, QEMU pmemsave)
  synq info --core vmcore      format, release, KASLR offset, paging, symbol and BTF sources of a dump
  synq --watch 2               redraw every 2 s; drops as deltas per interval (Ctrl-C ends it)
  synq --watch 5 --json        one JSON object per interval (JSON lines), with timestamp and interval
  synq --textfile /var/lib/prometheus/node-exporter/synq.prom   for node_exporter's textfile collector
  synq serve --listen 127.0.0.1:9813   Prometheus exporter on /metrics, unprivileged after the open
  synq doctor                  will synq work here? one line per check, with the fix
  synq vmcoreinfo > host.vmci  save this boot's VMCOREINFO, for --core SNAPSHOT --vmcoreinfo host.vmci
Environment: SYNQ_TIMING=1 prints the time of each phase to stderr.";

#[derive(Parser, Debug)]
#[command(name = "synq", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Sub>,

    /// Print one JSON object (listeners, totals, kernel, warnings) instead of the table.
    #[arg(long, global = true)]
    pub json: bool,

    /// Under the table, each network namespace: its somaxconn, tcp_max_syn_backlog, tcp_syncookies and
    /// tcp_synack_retries, its TcpExt listen counters (ListenOverflows, ListenDrops, Syncookies*,
    /// TCPReqQFull*) summed over all CPUs, and verdicts ("SYN cookies in use", "queue at limit"). JSON
    /// always has them, under "namespaces".
    #[arg(long, conflicts_with_all = ["json", "total"])]
    pub wide: bool,

    /// List the half-open requests themselves: for each, its listener, remote address and port, SYN-ACK
    /// timeouts so far and its timer; per listener the remote prefixes (/24, /48) sending the most ("who is
    /// flooding me"). Walks the established tables: O(connections), so only when asked.
    #[arg(long, conflicts_with = "total")]
    pub requests: bool,

    /// Print only the total number of half-open connections (the SYN-queue sum), then exit.
    #[arg(long, conflicts_with = "json")]
    pub total: bool,

    /// Repeat every SECONDS (decimals allowed, at least 0.1): symbols, BTF and layout are resolved once, each
    /// interval only walks. The table redraws with DROPS (and, with --wide, the namespace counters) as
    /// deltas over the interval; --json prints one object per interval (JSON lines) with "timestamp",
    /// "interval" and per-listener "drops_delta". Listeners that appear or go are matched by address, port
    /// and inode. Ends on Ctrl-C, SIGTERM or a closed pipe.
    #[arg(long, value_name = "SECONDS", value_parser = parse_interval)]
    pub watch: Option<Duration>,

    /// With --watch: stop after N intervals.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Print the Prometheus text exposition format (metrics named synq_*, labels netns, family, addr, port,
    /// owner) instead of the table.
    #[arg(long, conflicts_with_all = ["json", "total", "wide", "requests"])]
    pub prometheus: bool,

    /// Write the Prometheus text format to PATH atomically (a temporary file in the same directory, then a
    /// rename), for node_exporter's --collector.textfile.directory. The name must end in .prom.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["json", "total", "wide", "requests", "watch"])]
    pub textfile: Option<PathBuf>,

    /// Prometheus output: at most N per-listener series (7 per listener address); beyond it the fullest
    /// listeners are kept and synq_series_limit_exceeded is 1.
    #[arg(long, value_name = "N", default_value_t = synq::metrics::DEFAULT_MAX_SERIES, global = true)]
    pub max_series: usize,

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

    /// Read a crash dump or memory snapshot instead of the live kernel: an ELF vmcore (kdump, makedumpfile -E,
    /// QEMU, virsh dump), a kdump-compressed one (also in makedumpfile's flattened form), a LiME or AVML
    /// snapshot; recognised by content. Kernels >= 6.0 need no other file: symbols and BTF come from the
    /// file itself, and a snapshot's kernel is found by scanning its memory.
    #[arg(long, value_name = "PATH", conflicts_with = "kcore", global = true)]
    pub core: Option<PathBuf>,

    /// With --core: the file is a raw physical memory image, byte N = physical address N (LiME
    /// format=padded, QEMU pmemsave, a copy of /dev/mem or /dev/crash). Such files have no magic, so they
    /// are read as raw only when asked.
    #[arg(long, requires = "core", global = true)]
    pub raw: bool,

    /// With --core: the VMCOREINFO of the same boot, as `synq vmcoreinfo` saved it on the host (or taken from
    /// another dump of that boot), instead of finding the kernel by scanning. It is checked against the
    /// memory before use.
    #[arg(long, value_name = "PATH", requires = "core", global = true)]
    pub vmcoreinfo: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Print the struct layout resolved from BTF (offsets, table, era). Live it reads only the BTF, not
    /// kernel memory; with --core, the dump's own BTF (or --btf/--vmlinux).
    Layout,
    /// Print the kernel's VMCOREINFO text (live: kcore's note), to save it for a snapshot taken later:
    /// `synq vmcoreinfo > host.vmcoreinfo`, then `synq --core SNAPSHOT --vmcoreinfo host.vmcoreinfo`.
    Vmcoreinfo,
    /// Print what synq finds in its source (live kernel, or --core DUMP): format, kernel release, build id,
    /// KASLR offset, phys_base, paging levels, where the symbols and the BTF come from, and the layout era.
    Info,
    /// A resident Prometheus exporter: opens its source once (the live kernel, or --core FILE), then drops
    /// every capability, switches to --user, sets no_new_privs and a seccomp filter, and serves /metrics
    /// (and a small page on /). One walk at a time, at most one per --min-interval; scrapes in between
    /// share the last result. Ends cleanly on SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on (host:port). Anything but loopback exposes kernel facts to the network.
        #[arg(long, value_name = "ADDR", default_value = synq::serve::DEFAULT_LISTEN)]
        listen: String,
        /// The unprivileged user to switch to after the open (root only): a name, or UID[:GID] where the host
        /// has no user database.
        #[arg(long, value_name = "USER", default_value = "nobody")]
        user: String,
        /// The least time between two walks, in seconds (0: a walk per scrape); a scrape sooner gets the
        /// last result.
        #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_min_interval)]
        min_interval: Duration,
    },
    /// Check this host (or --core FILE): root and capabilities, /proc/kcore, lockdown, kptr_restrict, BTF,
    /// tcp_hashinfo in kallsyms, VMCOREINFO, the in-memory kallsyms, System.map. One line per check (ok,
    /// warn, fail) with what to do; exit 0 when synq will work, 1 when it will not.
    Doctor,
    /// Print a shell completion script: `synq completions bash > /etc/bash_completion.d/synq`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `synq manpage > synq.1`.
    #[command(hide = true)]
    Manpage,
}

/// Seconds, decimals allowed, at least 0.1 and at most a day.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&v) {
        return Err(format!("{v} s is out of range: give 0.1 to 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Seconds, decimals allowed, 0 to a day.
fn parse_min_interval(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{v} s is out of range: give 0 to 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// What the binary does itself, without the library: help text of its own making.
pub enum Local {
    Completions(clap_complete::Shell),
    Manpage,
}

impl Cli {
    /// The commands the binary answers from the command-line definition alone.
    pub fn local(&self) -> Option<Local> {
        match &self.command {
            Some(Sub::Completions { shell }) => Some(Local::Completions(*shell)),
            Some(Sub::Manpage) => Some(Local::Manpage),
            _ => None,
        }
    }
}

/// The man page: clap_mangen's sections, but the commands as one section of this page (there are no
/// separate synq-serve(1) pages) and the examples kept line by line (no fill), with the environment after.
fn manpage(cmd: clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone().after_help(None::<&str>));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        out.extend_from_slice(
            format!(
                ".TP\n\\fBsynq {}\\fR\n{}\n",
                sub.get_name(),
                roff_text(&about)
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b".SH EXAMPLES\n.nf\n");
    for line in EXAMPLES.lines().skip(1) {
        if let Some(env) = line.strip_prefix("Environment: ") {
            out.extend_from_slice(
                format!(".fi\n.SH ENVIRONMENT\n{}\n.nf\n", roff_text(env)).as_bytes(),
            );
        } else {
            out.extend_from_slice(format!("{}\n", roff_text(line)).as_bytes());
        }
    }
    out.extend_from_slice(b".fi\n");
    man.render_version_section(out)?;
    Ok(())
}

/// Text for a roff line: backslashes doubled, and a leading dot or quote kept from becoming a request.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\\\");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Writes `local`'s output to stdout.
pub fn run_local(local: Local) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    // Into memory first: a closed pipe is then an error to report, not a panic inside the generator.
    let mut buf = Vec::new();
    match local {
        Local::Completions(shell) => clap_complete::generate(shell, &mut cmd, "synq", &mut buf),
        Local::Manpage => manpage(cmd, &mut buf)?,
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&buf)?;
    out.flush()
}

impl Cli {
    /// What to run, for the library.
    pub fn options(self) -> Options {
        let mut serve = ServeOptions::default();
        let command = match self.command {
            None | Some(Sub::Completions { .. }) | Some(Sub::Manpage) => Command::Report,
            Some(Sub::Layout) => Command::Layout,
            Some(Sub::Info) => Command::Info,
            Some(Sub::Vmcoreinfo) => Command::Vmcoreinfo,
            Some(Sub::Doctor) => Command::Doctor,
            Some(Sub::Serve {
                listen,
                user,
                min_interval,
            }) => {
                serve = ServeOptions {
                    listen,
                    user,
                    min_interval,
                };
                Command::Serve
            }
        };
        let output = if self.total {
            Output::Total
        } else if self.prometheus || self.textfile.is_some() {
            Output::Prometheus
        } else if self.json {
            Output::Json
        } else {
            Output::Table
        };
        let target = match self.core {
            Some(path) => Spec::Core {
                path,
                raw: self.raw,
                vmcoreinfo: self.vmcoreinfo,
            },
            None => Spec::Live { kcore: self.kcore },
        };
        Options {
            command,
            output,
            target,
            side: SideFiles {
                btf: self.btf,
                kallsyms: self.kallsyms,
                system_map: self.system_map,
                vmlinux: self.vmlinux,
            },
            wide: self.wide,
            requests: self.requests,
            watch: self.watch.map(|interval| Watch {
                interval,
                count: self.count,
            }),
            metrics: synq::metrics::Settings {
                max_series: self.max_series,
            },
            textfile: self.textfile,
            serve,
        }
    }
}
