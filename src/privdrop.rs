//! Holding no privilege synq does not need. Reading `/proc/kcore` needs root (CAP_SYS_RAWIO) only at `open`:
//! reads through the open descriptor need no capability. So once its sources are open and every file it
//! needs is read or mapped, synq:
//! 1. drops every capability: the bounding set (while it still holds CAP_SETPCAP), the ambient and the
//!    inheritable sets, then the permitted and effective ones;
//! 2. sets `no_new_privs`, so no exec could gain any back;
//! 3. installs a seccomp filter (`seccompiler`) that allows only what the walk and the output need —
//!    reading (`read`, `pread64`, `lseek`), memory (`mmap`, `munmap`, `mremap`, `madvise`, `brk`,
//!    `mprotect`), locks (`futex`), writing its output, time, randomness for hash maps, and exiting — and
//!    answers everything else, `openat` among it, with EPERM.
//!
//! A process that is not root holds no capability to drop: the filter and `no_new_privs` apply all the same.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// What the drop did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Capabilities were held and are now gone (false when none were held).
    pub capabilities: bool,
    /// The seccomp filter is installed (with `no_new_privs`).
    pub seccomp: bool,
}

/// The system calls left after the drop.
fn allowed() -> Vec<libc::c_long> {
    vec![
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_pread64,
        libc::SYS_lseek,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_mprotect,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ]
}

/// Drops every capability, sets `no_new_privs` and installs the filter. Errors say which step failed; the
/// steps before it stay done.
pub fn drop_privileges() -> Result<Dropped, String> {
    let mut done = Dropped::default();
    let held = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| format!("reading capabilities: {e}"))?;
    if !held.is_empty() {
        // The bounding set first: dropping from it needs CAP_SETPCAP, which is about to go.
        for cap in caps::all() {
            // A capability this kernel does not know is not in the bounding set: nothing to drop.
            let _ = caps::drop(None, caps::CapSet::Bounding, cap);
        }
        for set in [
            caps::CapSet::Ambient,
            caps::CapSet::Inheritable,
            caps::CapSet::Effective,
            caps::CapSet::Permitted,
        ] {
            caps::clear(None, set)
                .map_err(|e| format!("dropping the {set:?} capabilities: {e}"))?;
        }
        done.capabilities = true;
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for {}: {e}", std::env::consts::ARCH))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        allowed().into_iter().map(|nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("building the seccomp filter: {e}"))?;
    let program =
        BpfProgram::try_from(filter).map_err(|e| format!("compiling the seccomp filter: {e}"))?;
    // Sets no_new_privs first, then the filter, for every thread.
    seccompiler::apply_filter_all_threads(&program)
        .map_err(|e| format!("installing the seccomp filter: {e}"))?;
    done.seccomp = true;
    Ok(done)
}
