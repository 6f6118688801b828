//! The target: the kernel memory being read, opened once for the live host or a file (a crash dump), with
//! what is known about it before any symbol is looked up: its VMCOREINFO, its architecture, where it came
//! from, and the warnings its source raised.
//!
//! Live, the memory is `/proc/kcore` itself (virtual addresses). A file holds physical memory, which the
//! architecture's translation ([`crate::arch`]) serves by kernel virtual address; VMCOREINFO says where the
//! page tables are. It comes from the file's header (dumps), from a file the user saved (`--vmcoreinfo`),
//! or from the memory itself, found by scanning ([`crate::discover`]: snapshots, dumps made without it).

use std::path::{Path, PathBuf};

use std::io::Read;

use crate::arch::{self, ConfigError, Translate, Translated};
use crate::discover::{self, Discovery};
use crate::memory::{Memory, ReadError};
use crate::source::kcore::{ElfError, Kcore};
use crate::source::{self, DumpError, Image};
use crate::vmcoreinfo::VmcoreInfo;

/// Bytes of memory the VMCOREINFO scan may read per byte of the file.
const SCAN_BUDGET_PER_FILE_BYTE: u64 = 64;
/// A VMCOREINFO text file is a few KiB; refuse anything much larger.
const MAX_VMCOREINFO_FILE: u64 = 1 << 20;

/// What to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// The running kernel, through a kcore-shaped ELF core (`/proc/kcore`).
    Live { kcore: PathBuf },
    /// A crash dump or memory snapshot, recognised by content (or read as a raw physical image when `raw`);
    /// `vmcoreinfo`: a saved VMCOREINFO text of the same boot, instead of the file's own or a scan.
    Core {
        path: PathBuf,
        raw: bool,
        vmcoreinfo: Option<PathBuf>,
    },
}

/// Where a target's VMCOREINFO came from.
#[derive(Clone, Debug)]
pub enum VmcoreinfoOrigin {
    /// The live kernel's kcore note.
    Kcore,
    /// The dump's own header (an ELF note, the kdump sub-header).
    Header,
    /// A file the user gave, checked against the memory.
    File(PathBuf),
    /// Found by scanning the memory.
    Scan(Discovery),
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{0}: no such file — this kernel is built without CONFIG_PROC_KCORE, so its memory cannot be read \
         live; analyse a crash dump of it instead"
    )]
    NoKcore(PathBuf),
    #[error(
        "{0}: permission denied — not root: run synq as root (reading kernel memory needs CAP_SYS_RAWIO)"
    )]
    NotRoot(PathBuf),
    /// Lockdown=confidentiality, shown by securityfs or asked for on the kernel command line (`evidence`).
    #[error(
        "{path}: operation not permitted — kernel lockdown=confidentiality forbids /proc/kcore ({evidence}); \
         analyse a crash dump instead, or boot with lockdown=integrity (which allows it)"
    )]
    Lockdown { path: PathBuf, evidence: String },
    /// Refused to root: `what` the open said ("operation not permitted", "permission denied"), and the
    /// likely `cause` with what to do ([`crate::doctor::kcore_denied_cause`]): no CAP_SYS_RAWIO, probably
    /// lockdown (when it cannot be read), or a security module.
    #[error("{path}: {what} although running as root — {cause}")]
    Denied {
        path: PathBuf,
        what: &'static str,
        cause: String,
    },
    #[error(transparent)]
    Kcore(ElfError),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(
        "{path}: no kernel found: {summary}. synq finds the kernel of a snapshot or of a dump without \
         VMCOREINFO by its VMCOREINFO note in memory, checked against the page tables. If the file is a raw \
         physical image, pass --raw; if you saved this boot's VMCOREINFO (synq vmcoreinfo > FILE on the host), \
         pass --vmcoreinfo FILE"
    )]
    NotFound {
        path: PathBuf,
        summary: String,
        /// What the scan saw, for `synq info`.
        discovery: Box<Discovery>,
        format: String,
    },
    #[error("{path}: {err}")]
    VmcoreinfoFile { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a regular file; give the VMCOREINFO text saved in a file")]
    VmcoreinfoNotRegular { path: PathBuf },
    #[error(
        "{given}: this VMCOREINFO does not describe the memory of {path} ({why}); is it from the same boot?"
    )]
    VmcoreinfoMismatch {
        given: PathBuf,
        path: PathBuf,
        why: String,
    },
    #[error("{path}: {err}")]
    Translation { path: PathBuf, err: ConfigError },
}

/// The kernel memory of a target.
enum Mem {
    Live(Kcore),
    File(Translated<Image, Box<dyn Translate>>),
}

/// An opened target.
pub struct Target {
    spec: Spec,
    mem: Mem,
    vmcoreinfo: Option<VmcoreInfo>,
    vmcoreinfo_text: Option<String>,
    origin: Option<VmcoreinfoOrigin>,
    warnings: Vec<String>,
    /// The release in the kernel's `init_uts_ns` (files only).
    uts_release: Option<String>,
}

impl Target {
    /// Opens the target. Live: "not root", lockdown and a kernel without kcore are told apart, before
    /// anything else can fail. A file: its format by content, then its VMCOREINFO and the translation.
    pub fn open(spec: &Spec) -> Result<Target, TargetError> {
        match spec {
            Spec::Live { kcore } => {
                let core = open_kcore(kcore)?;
                let vmcoreinfo = core.vmcoreinfo.as_deref().map(VmcoreInfo::parse);
                let warnings = core.warnings.clone();
                Ok(Target {
                    spec: spec.clone(),
                    vmcoreinfo_text: core.vmcoreinfo.clone(),
                    origin: core.vmcoreinfo.is_some().then_some(VmcoreinfoOrigin::Kcore),
                    mem: Mem::Live(core),
                    vmcoreinfo,
                    warnings,
                    uts_release: None,
                })
            }
            Spec::Core {
                path,
                raw,
                vmcoreinfo: given,
            } => {
                let image = source::open_with(path, source::OpenOptions { raw: *raw })?;
                let machine = image.machine();
                let (text, origin) = if let Some(file) = given {
                    let text = read_vmcoreinfo_file(file)?;
                    discover::validate(&image, &VmcoreInfo::parse(&text), machine.as_ref())
                        .map_err(|why| TargetError::VmcoreinfoMismatch {
                            given: file.clone(),
                            path: path.clone(),
                            why,
                        })?;
                    (text, VmcoreinfoOrigin::File(file.clone()))
                } else if let Some(text) = image.vmcoreinfo() {
                    (text.to_string(), VmcoreinfoOrigin::Header)
                } else {
                    let d = discover::scan(
                        &image,
                        &image.backed_ranges(),
                        machine.as_ref(),
                        &|| image.release_pages(),
                        // Compressed snapshots hold more memory than file; never more than a Snappy
                        // stream can expand to (under 64×), so the work stays linear in the file.
                        image.file_len().saturating_mul(SCAN_BUDGET_PER_FILE_BYTE),
                    );
                    let Some(c) = d.chosen() else {
                        let mut summary = not_found_summary(&d, image.format().kind.is_snapshot());
                        if let Some(w) = image.warnings().first() {
                            summary.push_str(&format!("; and the file is damaged: {w}"));
                        }
                        return Err(TargetError::NotFound {
                            path: path.clone(),
                            summary,
                            discovery: Box::new(d),
                            format: image.format().to_string(),
                        });
                    };
                    (c.text.clone(), VmcoreinfoOrigin::Scan(d))
                };
                let info = VmcoreInfo::parse(&text);
                let arch = arch::from_vmcoreinfo(&info, machine.as_ref()).map_err(|err| {
                    TargetError::Translation {
                        path: path.clone(),
                        err,
                    }
                })?;
                let mut warnings = image.warnings().to_vec();
                let mem = Translated::new(image, arch);
                // The release the kernel holds in init_uts_ns is the authority; a note whose OSRELEASE line
                // disagrees (or lacks one) is damaged: say so, and report the kernel's.
                let uts_release = discover::kernel_release(&mem, &info).ok();
                if let Some(r) = &uts_release {
                    let note = info.osrelease().map(str::trim);
                    if note != Some(r.as_str()) {
                        warnings.push(format!(
                            "VMCOREINFO says OSRELEASE {}, the kernel's init_uts_ns says {r:?}: the note is \
                             damaged; the release reported is init_uts_ns's",
                            note.map_or_else(|| "(missing)".to_string(), |n| format!("{n:?}"))
                        ));
                    }
                }
                Ok(Target {
                    spec: spec.clone(),
                    mem: Mem::File(mem),
                    vmcoreinfo: Some(info),
                    vmcoreinfo_text: Some(text),
                    origin: Some(origin),
                    warnings,
                    uts_release,
                })
            }
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The file read: the kcore or the dump.
    pub fn path(&self) -> &Path {
        match &self.spec {
            Spec::Live { kcore } => kcore,
            Spec::Core { path, .. } => path,
        }
    }

    /// Whether this is the running kernel.
    pub fn is_live(&self) -> bool {
        matches!(self.spec, Spec::Live { .. })
    }

    /// The format, as `synq info` and the report's `kernel.source` say it.
    pub fn format(&self) -> String {
        match &self.mem {
            Mem::Live(_) => "live kcore (ELF core, virtual addresses)".into(),
            Mem::File(t) => t.phys().format().to_string(),
        }
    }

    /// Where the report says it read from: the kcore path, or "DUMP (FORMAT)".
    pub fn source_label(&self) -> String {
        match &self.mem {
            Mem::Live(_) => self.path().display().to_string(),
            Mem::File(t) => format!("{} ({})", self.path().display(), t.phys().format()),
        }
    }

    /// The kernel's VMCOREINFO: kcore's note (4.19+), or the dump's.
    pub fn vmcoreinfo(&self) -> Option<&VmcoreInfo> {
        self.vmcoreinfo.as_ref()
    }

    /// The VMCOREINFO text as found (what `synq vmcoreinfo` prints).
    pub fn vmcoreinfo_text(&self) -> Option<&str> {
        self.vmcoreinfo_text.as_deref()
    }

    /// Where the VMCOREINFO came from.
    pub fn vmcoreinfo_origin(&self) -> Option<&VmcoreinfoOrigin> {
        self.origin.as_ref()
    }

    /// The opened dump, for a file target.
    pub fn image(&self) -> Option<&Image> {
        match &self.mem {
            Mem::Live(_) => None,
            Mem::File(t) => Some(t.phys()),
        }
    }

    /// The address translation of a file target.
    pub fn translation(&self) -> Option<&dyn Translate> {
        match &self.mem {
            Mem::Live(_) => None,
            Mem::File(t) => Some(t.arch().as_ref()),
        }
    }

    /// The kernel release: a file's `init_uts_ns` (checked against VMCOREINFO when opened); else VMCOREINFO's
    /// OSRELEASE; live without it, the running kernel's.
    pub fn release(&self) -> String {
        if let Some(r) = &self.uts_release {
            return r.clone();
        }
        if let Some(r) = self.vmcoreinfo.as_ref().and_then(VmcoreInfo::osrelease) {
            return r.trim().to_string();
        }
        if matches!(&self.spec, Spec::Live { kcore } if kcore == Path::new("/proc/kcore"))
            && let Ok(r) = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        {
            return r.trim().to_string();
        }
        "unknown".into()
    }

    /// Damage found while opening (a truncated or incomplete dump): the answer may be partial.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl Memory for Target {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        match &self.mem {
            Mem::Live(k) => k.read(addr, buf),
            Mem::File(t) => t.read(addr, buf),
        }
    }

    /// A file's pages are read by several threads (a compressed dump's each need inflating); kcore's, which
    /// the kernel copies, in one pass.
    fn read_large(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        match &self.mem {
            Mem::Live(k) => k.read(addr, buf),
            Mem::File(t) => t.read_threaded(addr, buf),
        }
    }
}

/// Opens the kcore, telling "not root" from lockdown from a missing capability from a kernel without kcore.
/// A refusal is explained from what can be read ([`crate::doctor::kcore_denied_cause`], which `synq doctor`
/// shares): lockdown is named whenever it can be the cause, even when securityfs is not mounted.
fn open_kcore(path: &Path) -> Result<Kcore, TargetError> {
    use crate::doctor::{AccessFacts, DeniedCause, kcore_denied_cause};
    Kcore::open(path).map_err(|e| match &e {
        ElfError::Open { err, .. } => match err.kind() {
            std::io::ErrorKind::NotFound => TargetError::NoKcore(path.to_path_buf()),
            std::io::ErrorKind::PermissionDenied => {
                let facts = AccessFacts::gather(Path::new("/"));
                match kcore_denied_cause(&facts, err.raw_os_error()) {
                    DeniedCause::NotRoot { .. } => TargetError::NotRoot(path.to_path_buf()),
                    DeniedCause::Lockdown { evidence } => TargetError::Lockdown {
                        path: path.to_path_buf(),
                        evidence,
                    },
                    cause => TargetError::Denied {
                        path: path.to_path_buf(),
                        what: if err.raw_os_error() == Some(libc::EACCES) {
                            "permission denied"
                        } else {
                            "operation not permitted"
                        },
                        cause: format!("{}; {}", cause.explain(), cause.fix()),
                    },
                }
            }
            _ => TargetError::Kcore(e),
        },
        _ => TargetError::Kcore(e),
    })
}

/// Reads a saved VMCOREINFO text: a regular file (never blocking on a FIFO), at most 1 MiB.
fn read_vmcoreinfo_file(path: &Path) -> Result<String, TargetError> {
    let err = |err| TargetError::VmcoreinfoFile {
        path: path.to_path_buf(),
        err,
    };
    let file = crate::input::open_regular(path).map_err(|e| {
        if crate::input::is_not_regular(&e) {
            TargetError::VmcoreinfoNotRegular {
                path: path.to_path_buf(),
            }
        } else {
            err(e)
        }
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_VMCOREINFO_FILE)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(crate::vmcoreinfo::text_of(&bytes))
}

/// What the scan saw, for the "no kernel found" error.
fn not_found_summary(d: &Discovery, snapshot: bool) -> String {
    let what = if snapshot {
        "the snapshot carries no VMCOREINFO"
    } else {
        "the dump carries no VMCOREINFO (QEMU writes it only with -device vmcoreinfo and the guest's \
         qemu_fw_cfg module loaded)"
    };
    let size = if d.scanned >= 1 << 20 {
        format!("{} MiB", d.scanned >> 20)
    } else {
        format!("{} KiB", d.scanned >> 10)
    };
    match d.candidates.first() {
        None => format!(
            "{what}, and none was found in its {size} of physical memory ({} unreadable pages)",
            d.unreadable_pages
        ),
        Some(first) => format!(
            "{what}, and none of the {} VMCOREINFO notes in its {size} of physical memory describes it \
             (the first, at {:#x}: {})",
            d.found(),
            first.paddr,
            first.rejected.as_deref().unwrap_or("not validated")
        ),
    }
}
