//! `synq doctor`: what will work on this host (or in a dump), one check per line, with what to do.
//!
//! Live, the checks read the host's facts ([`HostFacts`]: identity and capabilities, the kernel command line,
//! securityfs's lockdown file, Secure Boot, kptr_restrict, the BTF and symbol files), then ask the library
//! what it finds ([`LiveFindings`]: whether the kcore opens, its VMCOREINFO, which symbol source answers,
//! whether the layout resolves, the walk). A pure function turns both into checks ([`live_checks`]), so
//! every verdict is unit-tested on facts made up in the test. With `--core FILE` the dump is checked instead
//! ([`core_checks`]); the host's facts do not apply to it.
//!
//! Why `/proc/kcore` refuses to open is told apart here too ([`kcore_denied_cause`]), and the target's
//! open error says the same ([`crate::target`]).
//!
//! Every file is opened read-only, non-blocking, regular files only, and read at most [`MAX_FACT_FILE`]
//! bytes (the symbol files through [`crate::symbols::text::scan`], which has its own bound). Nothing is
//! written.

use std::path::{Path, PathBuf};

use crate::app::{Options, Outcome, Output};
use crate::btf::providers::{self, BtfChain};
use crate::session::{Error, HASHINFO, Session, SideFiles};
use crate::source::{self, OpenOptions};
use crate::symbols::kallsyms_mem::KallsymsTables;
use crate::symbols::{PROC_KALLSYMS, text};
use crate::target::{Spec, VmcoreinfoOrigin};

/// The capability `/proc/kcore`'s open checks (fs/proc/kcore.c: `capable(CAP_SYS_RAWIO)`).
pub const CAP_SYS_RAWIO: u32 = 17;
/// The capability that lets kptr_restrict=1 show addresses.
pub const CAP_SYSLOG: u32 = 34;
/// The most read of any /proc, /sys or efivarfs file.
pub const MAX_FACT_FILE: u64 = 64 << 10;
/// /proc/self/mounts can be long on a busy host (containers, Kubernetes); it is read this far.
const MAX_MOUNTS: u64 = 1 << 20;

/// securityfs's lockdown file: "none integrity [confidentiality]" (the bracketed word is in force).
pub const LOCKDOWN_FILE: &str = "sys/kernel/security/lockdown";
/// Where securityfs is mounted.
const SECURITYFS_DIR: &str = "/sys/kernel/security";
/// The EFI global variable SecureBoot: 4 attribute bytes, then the value (1 = on).
const SECURE_BOOT_VAR: &str =
    "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Exists when the kernel was booted through EFI.
const EFI_DIR: &str = "sys/firmware/efi";
/// The running kernel's BTF (CONFIG_DEBUG_INFO_BTF).
const SYSFS_BTF: &str = "sys/kernel/btf/vmlinux";

const MOUNT_SECURITYFS: &str = "mount -t securityfs securityfs /sys/kernel/security to know";
const FIX_DUMP: &str = "analyse a crash dump instead (synq --core FILE), or boot with lockdown=integrity (which allows it)";
const FIX_BTF: &str = "pass --btf with this kernel's BTF (BTFHub) or --vmlinux";
const FIX_ROOT: &str = "run as root (sudo synq, or as root)";
const FIX_RAWIO: &str = "give the process CAP_SYS_RAWIO (docker run --cap-add SYS_RAWIO; systemd \
     CapabilityBoundingSet= and AmbientCapabilities=CAP_SYS_RAWIO), or run synq on the host";

// ---------------------------------------------------------------------------------------------------------
// Host facts

/// A kernel lockdown mode, in the order the kernel only ever raises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    None,
    Integrity,
    Confidentiality,
}

impl Mode {
    fn parse(word: &str) -> Option<Mode> {
        match word {
            "none" => Some(Mode::None),
            "integrity" => Some(Mode::Integrity),
            "confidentiality" => Some(Mode::Confidentiality),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Integrity => "integrity",
            Mode::Confidentiality => "confidentiality",
        }
    }
}

/// What the host says about kernel lockdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lockdown {
    /// Read from securityfs: the mode in force.
    Known(Mode),
    /// securityfs is mounted but has no lockdown file: the kernel has no lockdown LSM.
    NoLsm,
    /// securityfs cannot be read; the kernel command line asks for this mode (the highest `lockdown=`).
    Cmdline(Mode),
    /// Nothing says.
    Unknown,
}

/// What decides whether `/proc/kcore` may be opened: identity, capabilities, lockdown, Secure Boot.
/// Cheap to gather (a few small files): the target's open error gathers it too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessFacts {
    /// The effective uid.
    pub euid: u32,
    /// The effective capabilities (CapEff in /proc/self/status), if readable.
    pub cap_eff: Option<u64>,
    /// /proc/cmdline, if readable.
    pub cmdline: Option<String>,
    /// Whether securityfs is mounted on /sys/kernel/security (`None`: /proc/self/mounts unreadable).
    pub securityfs: Option<bool>,
    /// /sys/kernel/security/lockdown, if readable.
    pub lockdown_file: Option<String>,
    /// Booted through EFI (/sys/firmware/efi exists).
    pub efi: bool,
    /// The SecureBoot EFI variable (`None`: efivarfs not mounted, or not EFI).
    pub secure_boot: Option<bool>,
}

impl AccessFacts {
    /// Reads the facts under `root` ("/" for the host; a directory of the same shape in tests).
    pub fn gather(root: &Path) -> AccessFacts {
        let status = read_small(&root.join("proc/self/status"), MAX_FACT_FILE).ok();
        let field = |name: &str| {
            status.as_deref().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            })
        };
        // Uid: real, effective, saved, filesystem.
        let euid = field("Uid:")
            .and_then(|v| v.split_whitespace().nth(1).and_then(|e| e.parse().ok()))
            // SAFETY: geteuid has no preconditions and cannot fail.
            .unwrap_or_else(|| unsafe { libc::geteuid() });
        let cap_eff = field("CapEff:").and_then(|v| u64::from_str_radix(&v, 16).ok());
        let securityfs = read_small(&root.join("proc/self/mounts"), MAX_MOUNTS)
            .ok()
            .map(|m| securityfs_mounted(&m));
        let secure_boot = std::fs::File::open(root.join(SECURE_BOOT_VAR))
            .ok()
            .and_then(|f| crate::input::read_capped(f, 5).ok())
            .and_then(|b| b.get(4).map(|&v| v == 1));
        AccessFacts {
            euid,
            cap_eff,
            cmdline: read_small(&root.join("proc/cmdline"), MAX_FACT_FILE).ok(),
            securityfs,
            lockdown_file: read_small(&root.join(LOCKDOWN_FILE), MAX_FACT_FILE).ok(),
            efi: root.join(EFI_DIR).is_dir(),
            secure_boot,
        }
    }

    /// Whether the effective capabilities hold `cap` (`None`: unknown).
    pub fn has_cap(&self, cap: u32) -> Option<bool> {
        self.cap_eff
            .map(|c| c.checked_shr(cap).is_some_and(|b| b & 1 == 1))
    }

    /// The lockdown mode as far as it can be told: securityfs first (authoritative), then the command line.
    pub fn lockdown(&self) -> Lockdown {
        if let Some(mode) = self.lockdown_file.as_deref().and_then(bracketed_mode) {
            return Lockdown::Known(mode);
        }
        if self.securityfs == Some(true) {
            return Lockdown::NoLsm;
        }
        match self.cmdline.as_deref().and_then(cmdline_lockdown) {
            Some(mode) => Lockdown::Cmdline(mode),
            None => Lockdown::Unknown,
        }
    }

    /// What could and could not be read about lockdown, for an unknown mode.
    fn lockdown_unknown(&self) -> String {
        let securityfs = match self.securityfs {
            Some(false) => {
                format!(
                    "lockdown cannot be read because securityfs is not mounted ({MOUNT_SECURITYFS})"
                )
            }
            Some(true) => {
                "securityfs is mounted but /sys/kernel/security/lockdown is unreadable".into()
            }
            None => format!(
                "/sys/kernel/security/lockdown is unreadable and /proc/self/mounts too ({MOUNT_SECURITYFS})"
            ),
        };
        let cmdline = if self.cmdline.is_some() {
            "no lockdown= on the kernel command line"
        } else {
            "/proc/cmdline is unreadable"
        };
        format!("{securityfs}; {cmdline}; {}", self.secure_boot_text())
    }

    fn secure_boot_text(&self) -> &'static str {
        match (self.efi, self.secure_boot) {
            (_, Some(true)) => {
                "Secure Boot is on (Debian and Ubuntu kernels then lock down to integrity, which allows \
                 /proc/kcore; kernels built with CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY to \
                 confidentiality)"
            }
            (_, Some(false)) => "Secure Boot is off",
            (false, None) => "not booted through EFI, so no Secure Boot",
            (true, None) => "Secure Boot state unknown (efivarfs not mounted)",
        }
    }
}

/// The mode in brackets in securityfs's lockdown file.
fn bracketed_mode(text: &str) -> Option<Mode> {
    let start = text.find('[')?;
    let rest = text.get(start.checked_add(1)?..)?;
    let end = rest.find(']')?;
    Mode::parse(rest.get(..end)?)
}

/// The mode the kernel command line asks for: the highest `lockdown=` (the kernel only raises it). Words
/// after "--" are init's, not the kernel's.
pub fn cmdline_lockdown(cmdline: &str) -> Option<Mode> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix("lockdown=").and_then(Mode::parse))
        .max()
}

/// Whether /proc/self/mounts lists securityfs on /sys/kernel/security.
fn securityfs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let _device = f.next();
        f.next() == Some(SECURITYFS_DIR) && f.next() == Some("securityfs")
    })
}

/// What a symbol file (/proc/kallsyms, a System.map) says about `tcp_hashinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymbolFile {
    /// The file is not there.
    Absent,
    /// It cannot be read: why.
    Unreadable(String),
    /// Read, and `tcp_hashinfo` is not listed.
    NoHashinfo,
    /// Listed, but every address reads 0.
    Hidden,
    /// Listed with its address.
    Listed,
}

impl SymbolFile {
    /// Scans `path` for tcp_hashinfo.
    pub fn scan(path: &Path) -> SymbolFile {
        match text::scan(path, &[HASHINFO]) {
            Ok(found) => match found.symbols.get(HASHINFO) {
                None => SymbolFile::NoHashinfo,
                Some(_) if !found.saw_nonzero => SymbolFile::Hidden,
                Some(_) => SymbolFile::Listed,
            },
            Err(text::SymbolError::Io { err, .. })
                if err.kind() == std::io::ErrorKind::NotFound =>
            {
                SymbolFile::Absent
            }
            Err(e) => SymbolFile::Unreadable(e.to_string()),
        }
    }
}

/// Everything the live checks read from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub access: AccessFacts,
    /// /proc/sys/kernel/kptr_restrict.
    pub kptr_restrict: Option<u32>,
    /// /proc/sys/kernel/osrelease.
    pub release: Option<String>,
    /// /sys/kernel/btf/vmlinux exists.
    pub btf_sysfs: bool,
    /// tcp_hashinfo in /proc/kallsyms.
    pub kallsyms: SymbolFile,
    /// /boot/System.map-RELEASE and what it lists (`None`: the release is unknown).
    pub system_map: Option<(PathBuf, SymbolFile)>,
}

impl HostFacts {
    /// Reads the facts under `root` ("/" for the host).
    pub fn gather(root: &Path) -> HostFacts {
        let release = read_small(&root.join("proc/sys/kernel/osrelease"), MAX_FACT_FILE)
            .ok()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let system_map = release.as_ref().map(|r| {
            let shown = PathBuf::from(format!("/boot/System.map-{r}"));
            let file = root.join(format!("boot/System.map-{r}"));
            (shown, SymbolFile::scan(&file))
        });
        HostFacts {
            access: AccessFacts::gather(root),
            kptr_restrict: read_small(&root.join("proc/sys/kernel/kptr_restrict"), MAX_FACT_FILE)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            release,
            btf_sysfs: root.join(SYSFS_BTF).is_file(),
            kallsyms: SymbolFile::scan(&root.join("proc/kallsyms")),
            system_map,
        }
    }
}

/// At most `max` bytes of a small text file (read-only, non-blocking, regular files only), as text.
fn read_small(path: &Path, max: u64) -> std::io::Result<String> {
    let bytes = crate::input::read_small(path, max)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

// ---------------------------------------------------------------------------------------------------------
// Why /proc/kcore refuses to open

/// Why opening the kcore was refused (EPERM or EACCES), from what can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeniedCause {
    /// Not root: /proc/kcore is 0400 root.
    NotRoot { euid: u32 },
    /// Root, but the effective capabilities lack CAP_SYS_RAWIO (checked before lockdown).
    NoRawio {
        cap_eff: u64,
        /// Lockdown=confidentiality is known too: it would refuse as well.
        lockdown_too: bool,
    },
    /// Kernel lockdown=confidentiality, as `evidence` shows.
    Lockdown { evidence: String },
    /// Root with CAP_SYS_RAWIO (or unknown), refused with EPERM, lockdown unreadable: lockdown is the
    /// likely cause, `why`.
    ProbablyLockdown { why: String },
    /// Root with CAP_SYS_RAWIO, and not lockdown: a security module or the file's permissions.
    Refused { why: String },
}

impl DeniedCause {
    /// What was found.
    pub fn explain(&self) -> String {
        match self {
            DeniedCause::NotRoot { euid } => format!("not root (euid {euid})"),
            DeniedCause::NoRawio {
                cap_eff,
                lockdown_too,
            } => format!(
                "the process lacks CAP_SYS_RAWIO (CapEff {cap_eff:#018x}): a container or the capability \
                 bounding set drops it{}",
                if *lockdown_too {
                    "; kernel lockdown=confidentiality would refuse /proc/kcore as well"
                } else {
                    ""
                }
            ),
            DeniedCause::Lockdown { evidence } => {
                format!("kernel lockdown=confidentiality forbids /proc/kcore ({evidence})")
            }
            DeniedCause::ProbablyLockdown { why } => {
                format!(
                    "probably kernel lockdown (confidentiality), which forbids /proc/kcore: {why}"
                )
            }
            DeniedCause::Refused { why } => why.clone(),
        }
    }

    /// What to do.
    pub fn fix(&self) -> String {
        match self {
            DeniedCause::NotRoot { .. } => FIX_ROOT.into(),
            DeniedCause::NoRawio { .. } => FIX_RAWIO.into(),
            DeniedCause::Lockdown { .. } => FIX_DUMP.into(),
            DeniedCause::ProbablyLockdown { .. } => format!("if so, {FIX_DUMP}"),
            DeniedCause::Refused { .. } => {
                "see the audit log (dmesg, ausearch -m avc) for what refused it".into()
            }
        }
    }
}

/// Why the kcore open was refused with `errno` (EPERM or EACCES; `None`: unknown). Lockdown is named
/// whenever it can be the cause. fs/proc/kcore.c checks CAP_SYS_RAWIO first (EPERM), then lockdown (EPERM);
/// file permissions and security modules refuse earlier, with EACCES.
pub fn kcore_denied_cause(facts: &AccessFacts, errno: Option<i32>) -> DeniedCause {
    if facts.euid != 0 {
        return DeniedCause::NotRoot { euid: facts.euid };
    }
    let lockdown = facts.lockdown();
    let confidentiality = matches!(
        lockdown,
        Lockdown::Known(Mode::Confidentiality) | Lockdown::Cmdline(Mode::Confidentiality)
    );
    if let (Some(cap_eff), Some(false)) = (facts.cap_eff, facts.has_cap(CAP_SYS_RAWIO)) {
        return DeniedCause::NoRawio {
            cap_eff,
            lockdown_too: confidentiality,
        };
    }
    let errno_says = match errno {
        Some(libc::EACCES) => {
            "the open gave EACCES, which lockdown never gives (it gives EPERM): file permissions or a \
             security module (SELinux, AppArmor) refuse it"
        }
        _ => "a security module (SELinux, AppArmor) refuses it",
    };
    match lockdown {
        Lockdown::Known(Mode::Confidentiality) => DeniedCause::Lockdown {
            evidence: "/sys/kernel/security/lockdown reads [confidentiality]".into(),
        },
        Lockdown::Known(mode) => DeniedCause::Refused {
            why: format!(
                "lockdown is {} (/sys/kernel/security/lockdown): {errno_says}",
                mode.name()
            ),
        },
        Lockdown::NoLsm => DeniedCause::Refused {
            why: format!(
                "the kernel has no lockdown LSM (securityfs has no lockdown file): {errno_says}"
            ),
        },
        Lockdown::Cmdline(Mode::Confidentiality) => DeniedCause::Lockdown {
            evidence: format!(
                "lockdown=confidentiality is on the kernel command line; {}",
                match facts.securityfs {
                    Some(false) =>
                        "securityfs is not mounted, so /sys/kernel/security/lockdown cannot confirm it",
                    _ => "/sys/kernel/security/lockdown cannot be read to confirm it",
                }
            ),
        },
        _ if errno == Some(libc::EACCES) => DeniedCause::Refused {
            why: errno_says.into(),
        },
        Lockdown::Cmdline(mode) => DeniedCause::ProbablyLockdown {
            why: format!(
                "the command line asks lockdown={}, but the kernel's configuration or a write to \
                 securityfs can raise it to confidentiality, and {}; {}",
                mode.name(),
                match facts.securityfs {
                    Some(false) => format!("securityfs is not mounted ({MOUNT_SECURITYFS})"),
                    _ => "/sys/kernel/security/lockdown cannot be read".into(),
                },
                facts.secure_boot_text()
            ),
        },
        Lockdown::Unknown => DeniedCause::ProbablyLockdown {
            why: facts.lockdown_unknown(),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------
// Checks

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the doctor's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub found: String,
    /// What to do.
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, found: impl Into<String>) -> Check {
        Check {
            name,
            status,
            found: found.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    /// "ok    NAME: FOUND — FIX".
    pub fn line(&self) -> String {
        let mut s = format!("{:<4}  {}: {}", self.status.name(), self.name, self.found);
        if let Some(fix) = &self.fix {
            s.push_str(" — ");
            s.push_str(fix);
        }
        s
    }
}

/// The checks and the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
    pub verdict: String,
    pub works: bool,
}

impl Report {
    /// The verdict: synq works when no check fails. `symbols` and `btf` name the sources that answered.
    pub fn new(checks: Vec<Check>, symbols: Option<&str>, btf: Option<&str>) -> Report {
        let first_fail = checks.iter().find(|c| c.status == Status::Fail);
        let verdict = match first_fail {
            None => format!(
                "synq will work here (symbols from {}, BTF from {})",
                symbols.unwrap_or("an unknown source"),
                btf.unwrap_or("an unknown source")
            ),
            Some(c) => {
                let mut v = format!("synq will not work here: {}: {}", c.name, c.found);
                if let Some(fix) = &c.fix {
                    v.push_str(" — ");
                    v.push_str(fix);
                }
                v
            }
        };
        Report {
            works: first_fail.is_none(),
            checks,
            verdict,
        }
    }

    /// One line per check, then the verdict.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s.push_str(&c.line());
            s.push('\n');
        }
        s.push_str(&self.verdict);
        s.push('\n');
        s
    }

    /// `{"checks":[{"check","status","found","fix"}],"verdict","works"}`, one line.
    pub fn json(&self) -> String {
        let checks: Vec<serde_json::Value> = self
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "check": c.name,
                    "status": c.status.name(),
                    "found": c.found,
                    "fix": c.fix,
                })
            })
            .collect();
        let v = serde_json::json!({
            "checks": checks,
            "verdict": self.verdict,
            "works": self.works,
        });
        format!("{v}\n")
    }

    /// The outcome: exit 0 when synq will work, 1 when it will not.
    pub fn outcome(&self, json: bool) -> Outcome {
        Outcome {
            stdout: if json { self.json() } else { self.text() },
            warnings: Vec::new(),
            status: if self.works { 0 } else { 1 },
        }
    }
}

/// How the kcore open went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KcoreOpen {
    /// Opened, and read as a kcore.
    Opened,
    /// No such file.
    Missing,
    /// Refused (EPERM, EACCES): the errno.
    Denied { errno: Option<i32> },
    /// Any other failure (not a kcore, an I/O error): the message.
    Failed(String),
}

/// The symbol source that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolsFound {
    /// As the report says it ([`crate::symbols::Symbols::source`]).
    pub source: String,
    /// The in-memory kallsyms tables answered.
    pub from_memory: bool,
}

/// What the library finds live. `None`: not tried, because an earlier step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFindings {
    /// The kcore read (`--kcore`, /proc/kcore by default).
    pub kcore_path: PathBuf,
    pub kcore: KcoreOpen,
    /// The kcore's VMCOREINFO: `Some(None)` absent, `Some(Some(release))` present.
    pub vmcoreinfo: Option<Option<String>>,
    /// The in-memory kallsyms tables probed directly: whether they list tcp_hashinfo, or why they cannot be
    /// used.
    pub in_memory: Option<Result<bool, String>>,
    /// tcp_hashinfo through the session's symbol chain.
    pub symbols: Option<Result<SymbolsFound, String>>,
    /// The layout through the session's BTF chain: the BTF's source, or the error.
    pub btf: Result<String, String>,
    /// With --btf or --vmlinux and the running kernel's own BTF present: whether both give the same layout.
    pub btf_matches_sysfs: Option<bool>,
    /// The listening-hash walk: listeners read and the walk's warnings.
    pub walk: Option<Result<(usize, Vec<String>), String>>,
}

/// The symbol files the user gave, as the chain uses them (the first is the source).
fn given_symbols(side: &SideFiles) -> Option<String> {
    let (flag, path) = match (&side.system_map, &side.vmlinux, &side.kallsyms) {
        (Some(p), _, _) => ("--system-map", p),
        (None, Some(p), None) => ("--vmlinux", p),
        (None, _, Some(p)) => ("--kallsyms", p),
        (None, None, None) => return None,
    };
    Some(format!("{flag} {}", path.display()))
}

/// The BTF file the user gave.
fn given_btf(side: &SideFiles) -> Option<String> {
    match (&side.btf, &side.vmlinux) {
        (Some(p), _) => Some(format!("--btf {}", p.display())),
        (None, Some(p)) => Some(format!("--vmlinux {}", p.display())),
        (None, None) => None,
    }
}

/// The live checks, from the host's facts and the library's findings.
pub fn live_checks(facts: &HostFacts, f: &LiveFindings, side: &SideFiles) -> Vec<Check> {
    let access = &facts.access;
    let opened = f.kcore == KcoreOpen::Opened;
    let kcore = f.kcore_path.display().to_string();
    let symbols_ok = match &f.symbols {
        Some(Ok(_)) => Some(true),
        Some(Err(_)) => Some(false),
        None => None,
    };
    // A symbol file's shortcoming fails only when the symbols do not resolve.
    let needed = |bad: bool| match (bad, symbols_ok) {
        (false, _) => Status::Ok,
        (true, Some(false)) => Status::Fail,
        (true, _) => Status::Warn,
    };
    let mut checks = Vec::new();

    // 1. Root and capabilities.
    let rawio = access.has_cap(CAP_SYS_RAWIO);
    let caps = match access.cap_eff {
        Some(c) => format!(
            "CapEff {c:#018x}, {} CAP_SYS_RAWIO",
            if rawio == Some(true) {
                "with"
            } else {
                "without"
            }
        ),
        None => "CapEff unreadable (/proc/self/status)".into(),
    };
    checks.push(if access.euid != 0 {
        let found = format!("not root (euid {}), {caps}", access.euid);
        if opened {
            Check::new(
                "root and capabilities",
                Status::Warn,
                format!("{found}; {kcore} opened anyway (/proc/kcore itself needs root)"),
            )
        } else {
            Check::new("root and capabilities", Status::Fail, found).fix(FIX_ROOT)
        }
    } else {
        match rawio {
            Some(true) => Check::new(
                "root and capabilities",
                Status::Ok,
                format!("euid 0, {caps}"),
            ),
            Some(false) if opened => Check::new(
                "root and capabilities",
                Status::Warn,
                format!("euid 0, {caps}; {kcore} opened anyway (/proc/kcore itself needs it)"),
            ),
            Some(false) => Check::new(
                "root and capabilities",
                Status::Fail,
                format!("euid 0, {caps}: a container or the capability bounding set drops it"),
            )
            .fix(FIX_RAWIO),
            None => Check::new(
                "root and capabilities",
                Status::Warn,
                format!("euid 0, {caps}"),
            ),
        }
    });

    // 2. The kcore.
    checks.push(match &f.kcore {
        KcoreOpen::Opened => Check::new("kcore", Status::Ok, format!("{kcore} present and opens")),
        KcoreOpen::Missing if f.kcore_path == Path::new("/proc/kcore") => Check::new(
            "kcore",
            Status::Fail,
            "/proc/kcore absent: the kernel is built without CONFIG_PROC_KCORE, so its memory cannot be read \
             live",
        )
        .fix("analyse a crash dump of it instead (synq --core FILE)"),
        KcoreOpen::Missing => Check::new("kcore", Status::Fail, format!("{kcore}: no such file"))
            .fix("give the kcore's path (--kcore), or drop --kcore for /proc/kcore"),
        KcoreOpen::Denied { errno } => {
            let cause = kcore_denied_cause(access, *errno);
            let what = match errno {
                Some(libc::EACCES) => "permission denied",
                _ => "operation not permitted",
            };
            Check::new(
                "kcore",
                Status::Fail,
                format!("{kcore}: {what} — {}", cause.explain()),
            )
            .fix(cause.fix())
        }
        KcoreOpen::Failed(e) => Check::new("kcore", Status::Fail, e.clone()),
    });

    // 3. Lockdown.
    checks.push(lockdown_check(access, &f.kcore));

    // 4. kptr_restrict.
    checks.push(kptr_check(facts, f, symbols_ok));

    // 5. BTF.
    checks.push(btf_check(facts, f, side));

    // 6. tcp_hashinfo in /proc/kallsyms.
    let ks = match &facts.kallsyms {
        SymbolFile::Listed => Check::new(
            "tcp_hashinfo in /proc/kallsyms",
            Status::Ok,
            "listed, with its address",
        ),
        SymbolFile::Hidden => Check::new(
            "tcp_hashinfo in /proc/kallsyms",
            needed(true),
            "listed, but every address reads 0: kptr_restrict hides kallsyms addresses",
        )
        .fix("sysctl kernel.kptr_restrict=1 and run as root, or pass --system-map"),
        SymbolFile::NoHashinfo => Check::new(
            "tcp_hashinfo in /proc/kallsyms",
            needed(true),
            "not listed: the kernel is built without CONFIG_KALLSYMS_ALL (its in-memory kallsyms lack it too)",
        )
        .fix(system_map_fix(facts)),
        SymbolFile::Absent => Check::new(
            "tcp_hashinfo in /proc/kallsyms",
            needed(true),
            "/proc/kallsyms absent: the kernel is built without CONFIG_KALLSYMS",
        )
        .fix(system_map_fix(facts)),
        SymbolFile::Unreadable(e) => {
            Check::new("tcp_hashinfo in /proc/kallsyms", needed(true), e.clone())
        }
    };
    checks.push(ks);

    // 7. VMCOREINFO.
    checks.push(match &f.vmcoreinfo {
        Some(Some(release)) => Check::new(
            "VMCOREINFO in kcore",
            Status::Ok,
            format!("present (OSRELEASE {release})"),
        ),
        Some(None) => Check::new(
            "VMCOREINFO in kcore",
            Status::Warn,
            "absent (kcore carries it since Linux 4.19): the in-memory kallsyms cannot be located, so the \
             symbols must come from /proc/kallsyms or --system-map",
        ),
        None => Check::new(
            "VMCOREINFO in kcore",
            Status::Warn,
            "not checked: the kcore did not open",
        ),
    });

    // 8. The in-memory kallsyms, through the session's symbol chain.
    checks.push(in_memory_check(f, side));

    // 9. System.map.
    checks.push(system_map_check(facts, side, symbols_ok));

    // 10. The walk itself.
    if let Some(w) = &f.walk {
        checks.push(walk_check(w));
    }
    checks
}

fn system_map_fix(facts: &HostFacts) -> String {
    match &facts.release {
        Some(r) => {
            format!("pass --system-map /boot/System.map-{r} (the full one, with data symbols)")
        }
        None => "pass --system-map with this kernel's System.map".into(),
    }
}

fn lockdown_check(access: &AccessFacts, kcore: &KcoreOpen) -> Check {
    const NAME: &str = "lockdown";
    let opened = *kcore == KcoreOpen::Opened;
    const ALLOWED: &str =
        "/proc/kcore is allowed; modules and BPF are not — which is what synq is for";
    match access.lockdown() {
        Lockdown::Known(Mode::Confidentiality) if opened => Check::new(
            NAME,
            Status::Warn,
            "confidentiality (/sys/kernel/security/lockdown), yet the kcore opened (not /proc/kcore?)",
        ),
        Lockdown::Known(Mode::Confidentiality) => Check::new(
            NAME,
            Status::Fail,
            "confidentiality (/sys/kernel/security/lockdown): /proc/kcore is forbidden",
        )
        .fix(FIX_DUMP),
        Lockdown::Known(Mode::Integrity) => Check::new(
            NAME,
            Status::Ok,
            format!("integrity (/sys/kernel/security/lockdown): {ALLOWED}"),
        ),
        Lockdown::Known(Mode::None) => {
            Check::new(NAME, Status::Ok, "none (/sys/kernel/security/lockdown)")
        }
        Lockdown::NoLsm => Check::new(
            NAME,
            Status::Ok,
            "none: securityfs is mounted and has no lockdown file (no lockdown LSM in this kernel)",
        ),
        Lockdown::Cmdline(Mode::Confidentiality) if opened => Check::new(
            NAME,
            Status::Warn,
            "lockdown=confidentiality on the kernel command line, yet the kcore opened: not in force (no \
             lockdown LSM?)",
        ),
        Lockdown::Cmdline(Mode::Confidentiality) => Check::new(
            NAME,
            Status::Fail,
            format!(
                "confidentiality (lockdown= on the kernel command line; {}): /proc/kcore is forbidden",
                match access.securityfs {
                    Some(false) => "securityfs is not mounted, so it cannot be confirmed",
                    _ => "/sys/kernel/security/lockdown cannot confirm it",
                }
            ),
        )
        .fix(FIX_DUMP),
        Lockdown::Cmdline(Mode::Integrity) => Check::new(
            NAME,
            Status::Ok,
            format!("integrity (lockdown= on the kernel command line): {ALLOWED}"),
        ),
        Lockdown::Cmdline(Mode::None) => Check::new(
            NAME,
            Status::Ok,
            "none (lockdown= on the kernel command line)",
        ),
        Lockdown::Unknown if opened => Check::new(
            NAME,
            Status::Ok,
            format!(
                "not confidentiality, since the kcore opened; the mode itself is unknown: {}",
                access.lockdown_unknown()
            ),
        ),
        Lockdown::Unknown => Check::new(
            NAME,
            Status::Warn,
            format!("unknown: {}", access.lockdown_unknown()),
        ),
    }
}

fn kptr_check(facts: &HostFacts, f: &LiveFindings, symbols_ok: Option<bool>) -> Check {
    const NAME: &str = "kptr_restrict";
    let syslog = facts.access.has_cap(CAP_SYSLOG) == Some(true);
    let Some(k) = facts.kptr_restrict else {
        return Check::new(
            NAME,
            Status::Warn,
            "/proc/sys/kernel/kptr_restrict unreadable",
        );
    };
    let hidden = match k {
        0 => None,
        1 if syslog => None,
        1 => Some("1: /proc/kallsyms shows zeros to a process without CAP_SYSLOG, as this one"),
        _ => Some("/proc/kallsyms shows zeros to everyone"),
    };
    let Some(hidden) = hidden else {
        return Check::new(
            NAME,
            Status::Ok,
            if k == 0 {
                "0: /proc/kallsyms shows addresses".to_string()
            } else {
                format!(
                    "{k}: /proc/kallsyms shows addresses to CAP_SYSLOG holders, as this process"
                )
            },
        );
    };
    let hidden = if k >= 2 {
        format!("{k}: {hidden}")
    } else {
        hidden.to_string()
    };
    match (&f.symbols, symbols_ok) {
        (Some(Ok(s)), _) => Check::new(
            NAME,
            Status::Warn,
            format!(
                "{hidden}; synq does not need it: the symbols come from {}",
                s.source
            ),
        ),
        (_, Some(false)) => Check::new(NAME, Status::Fail, hidden).fix(
            "sysctl kernel.kptr_restrict=1 and run as root (with CAP_SYSLOG), or pass --system-map",
        ),
        _ => Check::new(
            NAME,
            Status::Warn,
            format!(
                "{hidden}; synq needs it only when the in-memory kallsyms cannot be used (before 6.0)"
            ),
        ),
    }
}

fn btf_check(facts: &HostFacts, f: &LiveFindings, side: &SideFiles) -> Check {
    const NAME: &str = "BTF";
    let sysfs = if facts.btf_sysfs {
        "/sys/kernel/btf/vmlinux present"
    } else {
        "/sys/kernel/btf/vmlinux absent (CONFIG_DEBUG_INFO_BTF off)"
    };
    match (&f.btf, given_btf(side)) {
        (Ok(_), Some(given)) => match f.btf_matches_sysfs {
            Some(false) => Check::new(
                NAME,
                Status::Warn,
                format!(
                    "{given} used instead of /sys/kernel/btf/vmlinux: the layout resolves, but differs from \
                     the running kernel's own BTF's"
                ),
            )
            .fix("drop --btf/--vmlinux: the running kernel's own BTF describes it"),
            Some(true) => Check::new(
                NAME,
                Status::Ok,
                format!("{given} used instead of /sys/kernel/btf/vmlinux (same layout): the layout resolves"),
            ),
            None => Check::new(
                NAME,
                Status::Ok,
                format!("{given} used ({sysfs}): the layout resolves"),
            ),
        },
        (Ok(source), None) => Check::new(
            NAME,
            Status::Ok,
            format!("{source}, the running kernel's own: the layout resolves"),
        ),
        (Err(_), None) if !facts.btf_sysfs => Check::new(NAME, Status::Fail, sysfs).fix(FIX_BTF),
        (Err(e), given) => {
            let c = Check::new(NAME, Status::Fail, e.clone());
            if given.is_some() {
                c.fix("pass --btf with this kernel's BTF")
            } else {
                c
            }
        }
    }
}

fn in_memory_check(f: &LiveFindings, side: &SideFiles) -> Check {
    const NAME: &str = "in-memory kallsyms";
    let tables = match &f.in_memory {
        Some(Ok(true)) => "usable, tcp_hashinfo listed".to_string(),
        Some(Ok(false)) => {
            "usable, but tcp_hashinfo is not listed (CONFIG_KALLSYMS_ALL is off)".to_string()
        }
        Some(Err(e)) => format!("not usable ({e})"),
        None => "not usable: no VMCOREINFO locates them".to_string(),
    };
    match &f.symbols {
        None => Check::new(NAME, Status::Warn, "not checked: the kcore did not open"),
        Some(Ok(s)) if s.from_memory => Check::new(
            NAME,
            Status::Ok,
            format!("tcp_hashinfo found in the {}", s.source),
        ),
        Some(Ok(s)) => match given_symbols(side) {
            Some(given) => Check::new(
                NAME,
                Status::Ok,
                format!(
                    "not used: {given} given, tcp_hashinfo from {}; the tables: {tables}",
                    s.source
                ),
            ),
            None => Check::new(
                NAME,
                Status::Warn,
                format!("{tables}; tcp_hashinfo from {} instead", s.source),
            ),
        },
        Some(Err(e)) => Check::new(
            NAME,
            Status::Fail,
            format!("tcp_hashinfo not found: {e} (the in-memory tables: {tables})"),
        ),
    }
}

fn system_map_check(facts: &HostFacts, side: &SideFiles, symbols_ok: Option<bool>) -> Check {
    const NAME: &str = "System.map";
    if let Some(map) = &side.system_map {
        return Check::new(
            NAME,
            Status::Ok,
            format!(
                "--system-map {} given: the symbols come from it",
                map.display()
            ),
        );
    }
    // A fallback: its absence matters when the symbols do not resolve, or /proc/kallsyms lacks tcp_hashinfo
    // (CONFIG_KALLSYMS_ALL=n: the in-memory tables lack it too).
    let needed = symbols_ok == Some(false)
        || (symbols_ok.is_none()
            && matches!(facts.kallsyms, SymbolFile::NoHashinfo | SymbolFile::Absent));
    let status = |good: bool| {
        if good || !needed {
            Status::Ok
        } else {
            Status::Warn
        }
    };
    let when = if needed {
        "needed here, as --system-map: tcp_hashinfo is not in kallsyms"
    } else {
        "needed only with CONFIG_KALLSYMS_ALL=n, as --system-map"
    };
    match &facts.system_map {
        None => Check::new(
            NAME,
            status(false),
            "the kernel release is unknown (/proc/sys/kernel/osrelease unreadable)",
        ),
        Some((path, file)) => {
            let p = path.display();
            match file {
                SymbolFile::Listed | SymbolFile::Hidden => Check::new(
                    NAME,
                    Status::Ok,
                    format!(
                        "{p} lists tcp_hashinfo: read by default before /proc/kallsyms when its \
                         linux_banner is the running kernel's (kernels before 6.0); with CONFIG_KALLSYMS_ALL \
                         off on 6.0+, pass --system-map {p}"
                    ),
                ),
                SymbolFile::NoHashinfo => Check::new(
                    NAME,
                    status(false),
                    format!(
                        "{p} lists no tcp_hashinfo (Debian installs a placeholder; the full one is in the \
                         linux-image-…-dbg package); {when}"
                    ),
                ),
                SymbolFile::Absent => {
                    Check::new(NAME, status(false), format!("{p} absent; {when}"))
                }
                SymbolFile::Unreadable(e) => Check::new(NAME, status(false), e.clone()),
            }
        }
    }
}

fn walk_check(w: &Result<(usize, Vec<String>), String>) -> Check {
    const NAME: &str = "listening hash walk";
    match w {
        Ok((n, warnings)) => match warnings.first() {
            None => Check::new(NAME, Status::Ok, format!("{n} listeners read")),
            Some(first) => Check::new(
                NAME,
                Status::Warn,
                format!(
                    "{n} listeners read, {} warnings (first: {first}): the kernel changed while synq read \
                     it, or a page was unreadable",
                    warnings.len()
                ),
            ),
        },
        Err(e) => Check::new(NAME, Status::Fail, e.clone()),
    }
}

/// What the library finds in a dump. `None`: not tried, because an earlier step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreFindings {
    pub path: PathBuf,
    /// The format recognised, or why not.
    pub format: Result<String, String>,
    /// Where the VMCOREINFO came from, or why the kernel was not found.
    pub vmcoreinfo: Option<Result<String, String>>,
    /// The kernel release.
    pub release: Option<String>,
    /// The damage found while opening.
    pub damage: Vec<String>,
    /// tcp_hashinfo: the symbol source, or the error.
    pub symbols: Option<Result<String, String>>,
    /// The BTF's source, or the error.
    pub btf: Option<Result<String, String>>,
    /// Whether the layout resolves from it.
    pub layout: Option<Result<(), String>>,
    pub walk: Option<Result<(usize, Vec<String>), String>>,
}

/// The checks of a dump.
pub fn core_checks(f: &CoreFindings) -> Vec<Check> {
    let path = f.path.display();
    let mut checks = vec![match &f.format {
        Ok(format) => Check::new("dump file", Status::Ok, format!("{path}: {format}")),
        Err(e) => Check::new("dump file", Status::Fail, e.clone()),
    }];
    let not_checked = |name: &'static str, why: &str| {
        Check::new(name, Status::Warn, format!("not checked: {why}"))
    };
    let opened = matches!(f.vmcoreinfo, Some(Ok(_)));
    match &f.vmcoreinfo {
        Some(Ok(origin)) => checks.push(Check::new("VMCOREINFO", Status::Ok, origin.clone())),
        Some(Err(e)) => checks.push(Check::new("VMCOREINFO", Status::Fail, e.clone())),
        None => checks.push(not_checked(
            "VMCOREINFO",
            "the file is not a dump synq reads",
        )),
    }
    if opened {
        checks.push(match &f.release {
            Some(r) if r != "unknown" => Check::new("release", Status::Ok, r.clone()),
            _ => Check::new(
                "release",
                Status::Warn,
                "unknown: neither init_uts_ns nor VMCOREINFO's OSRELEASE gives it",
            ),
        });
        if let Some(first) = f.damage.first() {
            checks.push(Check::new(
                "damage",
                Status::Warn,
                format!(
                    "{} warnings (first: {first}): the answer may be partial",
                    f.damage.len()
                ),
            ));
        }
    }
    let rows: [(&'static str, Option<Result<String, String>>); 3] = [
        ("symbols", f.symbols.clone()),
        ("BTF", f.btf.clone()),
        (
            "layout",
            f.layout
                .clone()
                .map(|r| r.map(|()| "resolves from the BTF".to_string())),
        ),
    ];
    for (name, r) in rows {
        checks.push(match r {
            Some(Ok(found)) => Check::new(
                name,
                Status::Ok,
                if name == "symbols" {
                    format!("tcp_hashinfo found in {found}")
                } else {
                    found
                },
            ),
            Some(Err(e)) => Check::new(name, Status::Fail, e),
            None => not_checked(name, "an earlier step failed"),
        });
    }
    if let Some(w) = &f.walk {
        checks.push(walk_check(w));
    }
    checks
}

// ---------------------------------------------------------------------------------------------------------
// Running

/// Runs the checks: the live host's, or with `--core` the dump's. Exit status 0 when synq will work, 1 when
/// it will not.
pub fn run(opts: &Options) -> Result<Outcome, Error> {
    let json = opts.output == Output::Json;
    let report = match &opts.target {
        Spec::Live { kcore } => {
            let facts = HostFacts::gather(Path::new("/"));
            let (findings, symbols, btf) = live_findings(&opts.target, kcore, &opts.side, &facts);
            let checks = live_checks(&facts, &findings, &opts.side);
            Report::new(checks, symbols.as_deref(), btf.as_deref())
        }
        Spec::Core { path, raw, .. } => {
            let findings = core_findings(&opts.target, path, *raw, &opts.side);
            let symbols = match &findings.symbols {
                Some(Ok(s)) => Some(s.clone()),
                _ => None,
            };
            let btf = match &findings.btf {
                Some(Ok(s)) => Some(s.clone()),
                _ => None,
            };
            Report::new(core_checks(&findings), symbols.as_deref(), btf.as_deref())
        }
    };
    Ok(report.outcome(json))
}

/// What the library finds live, and the symbol and BTF sources for the verdict.
fn live_findings(
    spec: &Spec,
    kcore: &Path,
    side: &SideFiles,
    facts: &HostFacts,
) -> (LiveFindings, Option<String>, Option<String>) {
    let mut session = Session::new(spec.clone(), side.clone());
    // The open alone first, for its errno; then the target through the library.
    let kcore_open = match crate::input::open_regular(kcore) {
        Err(e) => match e.kind() {
            std::io::ErrorKind::NotFound => KcoreOpen::Missing,
            std::io::ErrorKind::PermissionDenied => KcoreOpen::Denied {
                errno: e.raw_os_error(),
            },
            _ => KcoreOpen::Failed(format!("{}: {e}", kcore.display())),
        },
        Ok(_) => match session.target() {
            Ok(_) => KcoreOpen::Opened,
            Err(e) => KcoreOpen::Failed(e.to_string()),
        },
    };
    let opened = kcore_open == KcoreOpen::Opened;

    let mut vmcoreinfo = None;
    let mut in_memory = None;
    if opened && let Ok(t) = session.target() {
        vmcoreinfo = Some(t.vmcoreinfo().map(|_| t.release()));
        in_memory = t.vmcoreinfo().map(|info| {
            KallsymsTables::new(t, info)
                .and_then(|tables| tables.lookup(t, HASHINFO))
                .map(|a| a.is_some_and(|a| a != 0))
                .map_err(|e| e.to_string())
        });
    }
    let given = given_symbols(side).is_some();
    let symbols = opened.then(|| match session.hashinfo() {
        Ok(_) => session
            .symbols()
            .map(|s| SymbolsFound {
                source: s.source.clone(),
                from_memory: !given && s.source != PROC_KALLSYMS,
            })
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    });
    let btf = session
        .layout()
        .map(|_| ())
        .map_err(|e| e.to_string())
        .and_then(|()| {
            session
                .btf_source()
                .map(str::to_string)
                .ok_or_else(|| "the BTF's source is unknown".to_string())
        });
    let btf_matches_sysfs = if btf.is_ok() && given_btf(side).is_some() && facts.btf_sysfs {
        let own = providers::load(&BtfChain::new(None, None, true, false), None)
            .ok()
            .and_then(|found| crate::btf::resolve(&found.btf).ok());
        match (own, session.layout()) {
            (Some(own), Ok(used)) => Some(own == *used),
            _ => None,
        }
    } else {
        None
    };
    let walk = (matches!(symbols, Some(Ok(_))) && btf.is_ok()).then(|| {
        session
            .walk()
            .map(|w| (w.listeners.len(), w.warnings))
            .map_err(|e| e.to_string())
    });
    let symbols_source = match &symbols {
        Some(Ok(s)) => Some(s.source.clone()),
        _ => None,
    };
    let btf_source = btf.as_ref().ok().cloned();
    (
        LiveFindings {
            kcore_path: kcore.to_path_buf(),
            kcore: kcore_open,
            vmcoreinfo,
            in_memory,
            symbols,
            btf,
            btf_matches_sysfs,
            walk,
        },
        symbols_source,
        btf_source,
    )
}

/// What the library finds in a dump.
fn core_findings(spec: &Spec, path: &Path, raw: bool, side: &SideFiles) -> CoreFindings {
    let mut f = CoreFindings {
        path: path.to_path_buf(),
        format: Err(String::new()),
        vmcoreinfo: None,
        release: None,
        damage: Vec::new(),
        symbols: None,
        btf: None,
        layout: None,
        walk: None,
    };
    // The format alone first (the target's error would not always name it).
    match source::open_with(path, OpenOptions { raw }) {
        Ok(image) => f.format = Ok(image.format().to_string()),
        Err(e) => {
            f.format = Err(e.to_string());
            return f;
        }
    }
    let mut session = Session::new(spec.clone(), side.clone());
    match session.target() {
        Ok(t) => {
            f.vmcoreinfo = Some(Ok(match t.vmcoreinfo_origin() {
                Some(VmcoreinfoOrigin::Header) => "in the dump's header".to_string(),
                Some(VmcoreinfoOrigin::File(p)) => format!("from {} (checked)", p.display()),
                Some(VmcoreinfoOrigin::Scan(d)) => match d.chosen() {
                    Some(c) => format!(
                        "found by scanning physical memory, at {:#x} (of {} candidates)",
                        c.paddr,
                        d.found()
                    ),
                    None => "found by scanning physical memory".to_string(),
                },
                Some(VmcoreinfoOrigin::Kcore) => "the kcore note".to_string(),
                None => "present".to_string(),
            }));
            f.release = Some(t.release());
            f.damage = t.warnings().to_vec();
        }
        Err(e) => {
            f.vmcoreinfo = Some(Err(e.to_string()));
            return f;
        }
    }
    f.symbols = Some(match session.hashinfo() {
        Ok(_) => session
            .symbols()
            .map(|s| s.source.clone())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    });
    match session.btf() {
        Ok((_, source)) => {
            f.btf = Some(Ok(source.to_string()));
            f.layout = Some(session.layout().map(|_| ()).map_err(|e| e.to_string()));
        }
        Err(e) => f.btf = Some(Err(e.to_string())),
    }
    if matches!(f.symbols, Some(Ok(_))) && matches!(f.layout, Some(Ok(()))) {
        f.walk = Some(
            session
                .walk()
                .map(|w| (w.listeners.len(), w.warnings))
                .map_err(|e| e.to_string()),
        );
    }
    f
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const MEMORY_SOURCE: &str = "kallsyms tables in kernel memory (located by VMCOREINFO)";
    /// A root shell's CapEff on a 6.x kernel: every capability.
    const ALL_CAPS: u64 = 0x0000_01ff_ffff_ffff;

    /// Root on a host that hides nothing: securityfs mounted, no lockdown, everything readable.
    fn root_host() -> HostFacts {
        HostFacts {
            access: AccessFacts {
                euid: 0,
                cap_eff: Some(ALL_CAPS),
                cmdline: Some("BOOT_IMAGE=/vmlinuz root=/dev/vda1 quiet".into()),
                securityfs: Some(true),
                lockdown_file: Some("[none] integrity confidentiality\n".into()),
                efi: false,
                secure_boot: None,
            },
            kptr_restrict: Some(0),
            release: Some("6.1.0-test-amd64".into()),
            btf_sysfs: true,
            kallsyms: SymbolFile::Listed,
            system_map: Some((
                PathBuf::from("/boot/System.map-6.1.0-test-amd64"),
                SymbolFile::Absent,
            )),
        }
    }

    /// What the library finds on a 6.1 kernel when everything works.
    fn working() -> LiveFindings {
        LiveFindings {
            kcore_path: PathBuf::from("/proc/kcore"),
            kcore: KcoreOpen::Opened,
            vmcoreinfo: Some(Some("6.1.0-test-amd64".into())),
            in_memory: Some(Ok(true)),
            symbols: Some(Ok(SymbolsFound {
                source: MEMORY_SOURCE.into(),
                from_memory: true,
            })),
            btf: Ok("/sys/kernel/btf/vmlinux".into()),
            btf_matches_sysfs: None,
            walk: Some(Ok((3, Vec::new()))),
        }
    }

    /// What the library finds when the kcore open is refused with `errno`: nothing past the BTF.
    fn denied(errno: i32) -> LiveFindings {
        LiveFindings {
            kcore: KcoreOpen::Denied { errno: Some(errno) },
            vmcoreinfo: None,
            in_memory: None,
            symbols: None,
            walk: None,
            ..working()
        }
    }

    fn report(facts: &HostFacts, f: &LiveFindings) -> Report {
        let checks = live_checks(facts, f, &SideFiles::default());
        let symbols = match &f.symbols {
            Some(Ok(s)) => Some(s.source.clone()),
            _ => None,
        };
        Report::new(
            checks,
            symbols.as_deref(),
            f.btf.as_ref().ok().map(String::as_str),
        )
    }

    fn check<'a>(r: &'a Report, name: &str) -> &'a Check {
        r.checks.iter().find(|c| c.name == name).unwrap()
    }

    fn no_securityfs(f: &mut HostFacts) {
        f.access.securityfs = Some(false);
        f.access.lockdown_file = None;
    }

    /// Root with every capability, no lockdown, kptr_restrict=0, a 6.1 kernel: every check ok, and the verdict
    /// names where the symbols and the BTF come from.
    #[test]
    fn plain_root_works_with_every_check_ok() {
        let r = report(&root_host(), &working());
        assert!(r.works);
        for c in &r.checks {
            assert_eq!(c.status, Status::Ok, "{}", c.line());
        }
        assert_eq!(
            r.verdict,
            format!(
                "synq will work here (symbols from {MEMORY_SOURCE}, BTF from /sys/kernel/btf/vmlinux)"
            )
        );
        assert_eq!(r.outcome(false).status, 0);
        assert!(r.text().ends_with(&format!("{}\n", r.verdict)));
        assert_eq!(r.text().lines().count(), r.checks.len() + 1);
    }

    /// kptr_restrict=2 zeroes /proc/kallsyms for everyone; on 6.0+ the in-memory tables answer, so it is a
    /// warning, not a failure.
    #[test]
    fn kptr_restrict_2_warns_when_the_in_memory_kallsyms_answer() {
        let mut facts = root_host();
        facts.kptr_restrict = Some(2);
        facts.kallsyms = SymbolFile::Hidden;
        let r = report(&facts, &working());
        assert!(r.works, "{}", r.text());
        let k = check(&r, "kptr_restrict");
        assert_eq!(k.status, Status::Warn);
        assert!(
            k.found
                .starts_with("2: /proc/kallsyms shows zeros to everyone"),
            "{}",
            k.found
        );
        assert!(k.found.contains(MEMORY_SOURCE), "{}", k.found);
        assert_eq!(
            check(&r, "tcp_hashinfo in /proc/kallsyms").status,
            Status::Warn
        );
        assert_eq!(r.outcome(true).status, 0);
    }

    /// Before 6.0 the in-memory tables are not located by VMCOREINFO, so kptr_restrict=2 stops synq: the
    /// verdict names kptr_restrict and what to do.
    #[test]
    fn kptr_restrict_2_fails_when_only_proc_kallsyms_could_answer() {
        let mut facts = root_host();
        facts.kptr_restrict = Some(2);
        facts.kallsyms = SymbolFile::Hidden;
        let f = LiveFindings {
            in_memory: Some(Err("VMCOREINFO has no SYMBOL(kallsyms_names)".into())),
            symbols: Some(Err("/proc/kallsyms: every address reads as 0".into())),
            walk: None,
            ..working()
        };
        let r = report(&facts, &f);
        assert!(!r.works);
        assert!(
            r.verdict.starts_with(
                "synq will not work here: kptr_restrict: 2: /proc/kallsyms shows zeros"
            ),
            "{}",
            r.verdict
        );
        assert!(
            r.verdict.contains("sysctl kernel.kptr_restrict=1"),
            "{}",
            r.verdict
        );
        assert_eq!(check(&r, "in-memory kallsyms").status, Status::Fail);
        assert_eq!(r.outcome(false).status, 1);
    }

    /// kptr_restrict=1 shows addresses to a root process with CAP_SYSLOG, and zeros without it.
    #[test]
    fn kptr_restrict_1_depends_on_cap_syslog() {
        let mut facts = root_host();
        facts.kptr_restrict = Some(1);
        let r = report(&facts, &working());
        assert_eq!(check(&r, "kptr_restrict").status, Status::Ok);
        facts.access.cap_eff = Some(ALL_CAPS & !(1 << CAP_SYSLOG));
        let r = report(&facts, &working());
        let k = check(&r, "kptr_restrict");
        assert_eq!(k.status, Status::Warn);
        assert!(k.found.contains("without CAP_SYSLOG"), "{}", k.found);
        assert!(r.works);
    }

    /// lockdown=integrity allows /proc/kcore: synq is what works under it.
    #[test]
    fn lockdown_integrity_works() {
        let mut facts = root_host();
        facts.access.lockdown_file = Some("none [integrity] confidentiality\n".into());
        facts.access.cmdline = Some("quiet lockdown=integrity".into());
        let r = report(&facts, &working());
        assert!(r.works, "{}", r.text());
        let l = check(&r, "lockdown");
        assert_eq!(l.status, Status::Ok);
        assert!(
            l.found
                .starts_with("integrity (/sys/kernel/security/lockdown)"),
            "{}",
            l.found
        );
        assert!(l.found.contains("modules and BPF are not"), "{}", l.found);
    }

    /// lockdown=confidentiality read from securityfs: the kcore is refused with EPERM, and both the kcore
    /// and the lockdown checks fail; the verdict says to analyse a dump.
    #[test]
    fn lockdown_confidentiality_with_securityfs_fails() {
        let mut facts = root_host();
        facts.access.lockdown_file = Some("none integrity [confidentiality]\n".into());
        let r = report(&facts, &denied(libc::EPERM));
        assert!(!r.works);
        let k = check(&r, "kcore");
        assert_eq!(k.status, Status::Fail);
        assert!(
            k.found.contains("lockdown=confidentiality forbids /proc/kcore (/sys/kernel/security/lockdown reads [confidentiality])"),
            "{}",
            k.found
        );
        assert_eq!(check(&r, "lockdown").status, Status::Fail);
        assert!(
            r.verdict.starts_with(
                "synq will not work here: kcore: /proc/kcore: operation not permitted"
            )
        );
        assert!(r.verdict.contains("synq --core FILE"), "{}", r.verdict);
        assert!(r.verdict.contains("lockdown=integrity"), "{}", r.verdict);
        // The BTF does not need the kcore: still checked.
        assert_eq!(check(&r, "BTF").status, Status::Ok);
    }

    /// The bug: lockdown=confidentiality on the command line, securityfs not mounted (a container, a small
    /// initramfs). The process has CAP_SYS_RAWIO; the refusal is lockdown's, never "lacks CAP_SYS_RAWIO".
    #[test]
    fn lockdown_confidentiality_on_cmdline_without_securityfs_is_named() {
        let mut facts = root_host();
        no_securityfs(&mut facts);
        facts.access.cmdline = Some("quiet lockdown=confidentiality".into());
        let cause = kcore_denied_cause(&facts.access, Some(libc::EPERM));
        assert_eq!(
            cause,
            DeniedCause::Lockdown {
                evidence:
                    "lockdown=confidentiality is on the kernel command line; securityfs is not \
                           mounted, so /sys/kernel/security/lockdown cannot confirm it"
                        .into()
            }
        );
        let r = report(&facts, &denied(libc::EPERM));
        assert!(!r.works);
        assert!(
            r.verdict
                .contains("lockdown=confidentiality forbids /proc/kcore"),
            "{}",
            r.verdict
        );
        assert!(!r.verdict.contains("lacks CAP_SYS_RAWIO"), "{}", r.verdict);
        let l = check(&r, "lockdown");
        assert_eq!(l.status, Status::Fail);
        assert!(l.found.contains("securityfs is not mounted"), "{}", l.found);
        assert_eq!(check(&r, "root and capabilities").status, Status::Ok);
    }

    /// Nothing says lockdown (no securityfs, no command-line word) but the root process with CAP_SYS_RAWIO
    /// got EPERM: lockdown is the likely cause, and the message says what could not be read.
    #[test]
    fn eperm_with_cap_sys_rawio_and_no_securityfs_is_probably_lockdown() {
        let mut facts = root_host();
        no_securityfs(&mut facts);
        let cause = kcore_denied_cause(&facts.access, Some(libc::EPERM));
        let DeniedCause::ProbablyLockdown { why } = &cause else {
            panic!("{cause:?}");
        };
        assert!(
            why.starts_with("lockdown cannot be read because securityfs is not mounted"),
            "{why}"
        );
        assert!(
            why.contains("mount -t securityfs securityfs /sys/kernel/security"),
            "{why}"
        );
        assert!(
            cause
                .explain()
                .starts_with("probably kernel lockdown (confidentiality)")
        );
        // The same with EACCES cannot be lockdown (it gives EPERM): a security module.
        assert!(matches!(
            kcore_denied_cause(&facts.access, Some(libc::EACCES)),
            DeniedCause::Refused { .. }
        ));
        // Without CAP_SYS_RAWIO the capability check refuses first.
        facts.access.cap_eff = Some(ALL_CAPS & !(1 << CAP_SYS_RAWIO));
        assert_eq!(
            kcore_denied_cause(&facts.access, Some(libc::EPERM)),
            DeniedCause::NoRawio {
                cap_eff: ALL_CAPS & !(1 << CAP_SYS_RAWIO),
                lockdown_too: false
            }
        );
    }

    /// Secure Boot on and no other sign: if the kcore opens (Debian: integrity), synq works; if it is
    /// refused, lockdown is named as the probable cause, with the Secure Boot state.
    #[test]
    fn secure_boot_with_no_other_sign() {
        let mut facts = root_host();
        no_securityfs(&mut facts);
        facts.access.efi = true;
        facts.access.secure_boot = Some(true);
        let r = report(&facts, &working());
        assert!(r.works, "{}", r.text());
        let l = check(&r, "lockdown");
        assert_eq!(l.status, Status::Ok);
        assert!(
            l.found
                .starts_with("not confidentiality, since the kcore opened"),
            "{}",
            l.found
        );
        assert!(l.found.contains("Secure Boot is on"), "{}", l.found);

        let r = report(&facts, &denied(libc::EPERM));
        assert!(!r.works);
        assert!(
            r.verdict.starts_with(
                "synq will not work here: kcore: /proc/kcore: operation not permitted — probably kernel \
                 lockdown (confidentiality)"
            ),
            "{}",
            r.verdict
        );
        assert!(r.verdict.contains("Secure Boot is on"), "{}", r.verdict);
        let l = check(&r, "lockdown");
        assert_eq!(l.status, Status::Warn);
        assert!(
            l.found.starts_with("unknown: lockdown cannot be read"),
            "{}",
            l.found
        );
    }

    /// Not root: the first failure is the root check, with "run as root".
    #[test]
    fn not_root_fails_first_with_run_as_root() {
        let mut facts = root_host();
        facts.access.euid = 1000;
        facts.access.cap_eff = Some(0);
        assert_eq!(
            kcore_denied_cause(&facts.access, Some(libc::EACCES)),
            DeniedCause::NotRoot { euid: 1000 }
        );
        let r = report(&facts, &denied(libc::EACCES));
        assert!(!r.works);
        assert_eq!(
            r.verdict,
            "synq will not work here: root and capabilities: not root (euid 1000), CapEff \
             0x0000000000000000, without CAP_SYS_RAWIO — run as root (sudo synq, or as root)"
        );
        let k = check(&r, "kcore");
        assert!(
            k.found.contains("permission denied — not root (euid 1000)"),
            "{}",
            k.found
        );
        assert_eq!(r.outcome(false).status, 1);
    }

    /// Root without CAP_SYS_RAWIO (a container): the root check fails and says how to grant it.
    #[test]
    fn root_without_cap_sys_rawio_fails() {
        let mut facts = root_host();
        facts.access.cap_eff = Some(0xa804_25fb);
        let r = report(&facts, &denied(libc::EPERM));
        let c = check(&r, "root and capabilities");
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.as_deref().unwrap().contains("--cap-add SYS_RAWIO"));
        assert!(check(&r, "kcore").found.contains("lacks CAP_SYS_RAWIO"));
    }

    /// A kernel without CONFIG_PROC_KCORE, CONFIG_DEBUG_INFO_BTF and CONFIG_KALLSYMS_ALL (this kind of VM):
    /// each missing piece fails with what to do; the first is the kcore.
    #[test]
    fn a_kernel_without_kcore_or_btf_fails_on_each() {
        let mut facts = root_host();
        facts.btf_sysfs = false;
        facts.kallsyms = SymbolFile::NoHashinfo;
        let f = LiveFindings {
            kcore: KcoreOpen::Missing,
            btf: Err("/sys/kernel/btf/vmlinux: No such file or directory".into()),
            ..denied(0)
        };
        let r = report(&facts, &f);
        assert!(
            r.verdict
                .starts_with("synq will not work here: kcore: /proc/kcore absent")
        );
        assert!(r.verdict.contains("CONFIG_PROC_KCORE"));
        let b = check(&r, "BTF");
        assert_eq!(b.status, Status::Fail);
        assert_eq!(b.fix.as_deref(), Some(FIX_BTF));
        // The symbols were not tried: a missing tcp_hashinfo is a warning, with the fix.
        let k = check(&r, "tcp_hashinfo in /proc/kallsyms");
        assert_eq!(k.status, Status::Warn);
        assert!(
            k.fix
                .as_deref()
                .unwrap()
                .contains("--system-map /boot/System.map-6.1.0-test-amd64")
        );
        assert!(r.checks.iter().all(|c| c.name != "listening hash walk"));
    }

    /// --btf given: said to be used instead, and a layout that differs from the running kernel's own BTF is
    /// a warning.
    #[test]
    fn given_btf_is_said_to_be_used_instead() {
        let side = SideFiles {
            btf: Some(PathBuf::from("/tmp/k.btf")),
            ..SideFiles::default()
        };
        let f = LiveFindings {
            btf: Ok("/tmp/k.btf".into()),
            btf_matches_sysfs: Some(false),
            ..working()
        };
        let checks = live_checks(&root_host(), &f, &side);
        let b = checks.iter().find(|c| c.name == "BTF").unwrap();
        assert_eq!(b.status, Status::Warn);
        assert!(
            b.found
                .starts_with("--btf /tmp/k.btf used instead of /sys/kernel/btf/vmlinux")
        );
    }

    #[test]
    fn cmdline_lockdown_is_the_highest_before_init_arguments() {
        assert_eq!(cmdline_lockdown("quiet"), None);
        assert_eq!(
            cmdline_lockdown("lockdown=confidentiality quiet lockdown=integrity"),
            Some(Mode::Confidentiality)
        );
        assert_eq!(
            cmdline_lockdown("lockdown=integrity"),
            Some(Mode::Integrity)
        );
        // After "--" the words are init's.
        assert_eq!(cmdline_lockdown("quiet -- lockdown=confidentiality"), None);
        assert_eq!(cmdline_lockdown("lockdown=bogus"), None);
        assert_eq!(
            bracketed_mode("none [integrity] confidentiality\n"),
            Some(Mode::Integrity)
        );
        assert_eq!(bracketed_mode("none integrity confidentiality"), None);
        assert_eq!(bracketed_mode("[x"), None);
    }

    /// The facts come from files under a root directory: each one is read where the kernel puts it.
    #[test]
    fn facts_are_read_under_a_root_directory() {
        let root = std::env::temp_dir().join(format!("synq-doctor-facts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let put = |rel: &str, bytes: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        put(
            "proc/self/status",
            b"Name:\tsynq\nUid:\t1000\t0\t0\t0\nCapEff:\t0000000000020000\n",
        );
        put(
            "proc/cmdline",
            b"quiet lockdown=integrity -- lockdown=none\n",
        );
        put(
            "proc/self/mounts",
            b"proc /proc proc rw 0 0\nsecurityfs /sys/kernel/security securityfs rw 0 0\n",
        );
        put(LOCKDOWN_FILE, b"none [integrity] confidentiality\n");
        put(SECURE_BOOT_VAR, &[6, 0, 0, 0, 1]);
        put("proc/sys/kernel/kptr_restrict", b"1\n");
        put("proc/sys/kernel/osrelease", b"6.12.0-test\n");
        put(SYSFS_BTF, b"");
        put(
            "proc/kallsyms",
            b"0000000000000000 T _stext\n0000000000000000 D tcp_hashinfo\n",
        );
        put(
            "boot/System.map-6.12.0-test",
            b"ffffffff81000000 T _stext\nffffffff82000000 D tcp_hashinfo\n",
        );
        let f = HostFacts::gather(&root);
        assert_eq!(f.access.euid, 0, "the effective uid, not the real one");
        assert_eq!(f.access.cap_eff, Some(1 << CAP_SYS_RAWIO));
        assert_eq!(f.access.has_cap(CAP_SYS_RAWIO), Some(true));
        assert_eq!(f.access.has_cap(CAP_SYSLOG), Some(false));
        assert_eq!(f.access.securityfs, Some(true));
        assert_eq!(f.access.lockdown(), Lockdown::Known(Mode::Integrity));
        assert!(f.access.efi);
        assert_eq!(f.access.secure_boot, Some(true));
        assert_eq!(f.kptr_restrict, Some(1));
        assert_eq!(f.release.as_deref(), Some("6.12.0-test"));
        assert!(f.btf_sysfs);
        assert_eq!(f.kallsyms, SymbolFile::Hidden);
        assert_eq!(
            f.system_map,
            Some((
                PathBuf::from("/boot/System.map-6.12.0-test"),
                SymbolFile::Listed
            ))
        );
        // Without securityfs, the command line decides (words after "--" are init's).
        std::fs::remove_file(root.join(LOCKDOWN_FILE)).unwrap();
        put("proc/self/mounts", b"proc /proc proc rw 0 0\n");
        put("proc/kallsyms", b"ffffffff81000000 T _stext\n");
        let f = HostFacts::gather(&root);
        assert_eq!(f.access.securityfs, Some(false));
        assert_eq!(f.access.lockdown(), Lockdown::Cmdline(Mode::Integrity));
        assert_eq!(f.kallsyms, SymbolFile::NoHashinfo);
        // Nothing there at all: unknowns, never a panic.
        let empty = root.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let f = HostFacts::gather(&empty);
        assert_eq!(f.access.cap_eff, None);
        assert_eq!(f.access.lockdown(), Lockdown::Unknown);
        assert_eq!(f.kallsyms, SymbolFile::Absent);
        assert_eq!(f.system_map, None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn dump_ok() -> CoreFindings {
        CoreFindings {
            path: PathBuf::from("/var/crash/vmcore"),
            format: Ok("kdump (zlib)".into()),
            vmcoreinfo: Some(Ok("in the dump's header".into())),
            release: Some("6.1.0-test-amd64".into()),
            damage: Vec::new(),
            symbols: Some(Ok(
                "kallsyms tables in the dump (located by VMCOREINFO)".into()
            )),
            btf: Some(Ok("/var/crash/vmcore (__start_BTF..__stop_BTF)".into())),
            layout: Some(Ok(())),
            walk: Some(Ok((5, Vec::new()))),
        }
    }

    fn core_report(f: &CoreFindings) -> Report {
        let ok = |r: &Option<Result<String, String>>| match r {
            Some(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        Report::new(
            core_checks(f),
            ok(&f.symbols).as_deref(),
            ok(&f.btf).as_deref(),
        )
    }

    /// A readable dump: one line per check, the verdict with the dump's own sources, and the JSON shape.
    #[test]
    fn core_checks_of_a_good_dump() {
        let r = core_report(&dump_ok());
        assert!(r.works);
        assert_eq!(
            r.text(),
            "ok    dump file: /var/crash/vmcore: kdump (zlib)\n\
             ok    VMCOREINFO: in the dump's header\n\
             ok    release: 6.1.0-test-amd64\n\
             ok    symbols: tcp_hashinfo found in kallsyms tables in the dump (located by VMCOREINFO)\n\
             ok    BTF: /var/crash/vmcore (__start_BTF..__stop_BTF)\n\
             ok    layout: resolves from the BTF\n\
             ok    listening hash walk: 5 listeners read\n\
             synq will work here (symbols from kallsyms tables in the dump (located by VMCOREINFO), BTF \
             from /var/crash/vmcore (__start_BTF..__stop_BTF))\n"
        );
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["works"], true);
        assert_eq!(v["checks"].as_array().unwrap().len(), 7);
        assert_eq!(v["checks"][0]["check"], "dump file");
        assert_eq!(v["checks"][0]["status"], "ok");
        assert_eq!(v["checks"][0]["fix"], serde_json::Value::Null);
        assert_eq!(v["verdict"], r.verdict.as_str());
    }

    /// A file that is no dump: the first check fails, the rest are not checked, exit 1.
    #[test]
    fn core_checks_of_an_unrecognised_file() {
        let f = CoreFindings {
            format: Err("/tmp/x: not a crash dump or snapshot synq reads".into()),
            vmcoreinfo: None,
            release: None,
            symbols: None,
            btf: None,
            layout: None,
            walk: None,
            ..dump_ok()
        };
        let r = core_report(&f);
        assert!(!r.works);
        assert_eq!(
            r.verdict,
            "synq will not work here: dump file: /tmp/x: not a crash dump or snapshot synq reads"
        );
        assert_eq!(r.checks[1].status, Status::Warn);
        assert!(r.checks[1].found.starts_with("not checked"));
        assert_eq!(r.outcome(true).status, 1);
        let v: serde_json::Value = serde_json::from_str(&r.outcome(true).stdout).unwrap();
        assert_eq!(v["works"], false);
        assert_eq!(v["checks"][0]["status"], "fail");
    }

    /// A damaged dump whose symbols fail: the damage is a warning, the symbols the failure.
    #[test]
    fn core_checks_of_a_damaged_dump() {
        let f = CoreFindings {
            damage: vec!["truncated: 12 pages missing".into()],
            symbols: Some(Err("the kernel's own kallsyms tables cannot be used".into())),
            btf: Some(Err("no BTF in the dump".into())),
            layout: None,
            walk: None,
            ..dump_ok()
        };
        let r = core_report(&f);
        assert!(!r.works);
        let d = check(&r, "damage");
        assert_eq!(d.status, Status::Warn);
        assert!(d.found.starts_with("1 warnings (first: truncated"));
        assert!(r.verdict.starts_with("synq will not work here: symbols:"));
        assert_eq!(check(&r, "layout").status, Status::Warn);
    }

    #[test]
    fn check_lines_show_status_name_found_and_fix() {
        let c = Check::new("lockdown", Status::Fail, "confidentiality")
            .fix("boot with lockdown=integrity");
        assert_eq!(
            c.line(),
            "fail  lockdown: confidentiality — boot with lockdown=integrity"
        );
        assert_eq!(Check::new("x", Status::Ok, "y").line(), "ok    x: y");
        assert_eq!(Check::new("x", Status::Warn, "y").line(), "warn  x: y");
    }
}
