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
    /// The user it became (`synq serve`), when it was root.
    pub user: Option<User>,
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

/// What else a mode needs after the drop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// One report to stdout.
    #[default]
    Report,
    /// `--textfile`: also syncing and renaming the already created temporary file.
    Textfile,
    /// `--watch`: also sleeping between intervals.
    Watch,
    /// `synq serve`: also accepting on the already bound socket, talking to clients with timeouts, waiting
    /// for them with `poll`, and sleeping.
    Serve,
}

impl Profile {
    fn extra(self) -> Vec<libc::c_long> {
        let sleep = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
        match self {
            Profile::Report => Vec::new(),
            Profile::Textfile => {
                let mut v = vec![
                    libc::SYS_fsync,
                    libc::SYS_fdatasync,
                    libc::SYS_renameat,
                    libc::SYS_renameat2,
                    libc::SYS_unlinkat,
                    libc::SYS_newfstatat,
                    libc::SYS_statx,
                ];
                // rename(2) and unlink(2) exist on x86_64 only (aarch64 has just the *at forms).
                #[cfg(target_arch = "x86_64")]
                v.extend([libc::SYS_rename, libc::SYS_unlink]);
                v
            }
            Profile::Watch => sleep.to_vec(),
            Profile::Serve => {
                let mut v = sleep.to_vec();
                v.extend([
                    libc::SYS_accept,
                    libc::SYS_accept4,
                    libc::SYS_recvfrom,
                    libc::SYS_recvmsg,
                    libc::SYS_sendto,
                    libc::SYS_sendmsg,
                    libc::SYS_shutdown,
                    libc::SYS_setsockopt,
                    libc::SYS_getsockopt,
                    libc::SYS_getsockname,
                    libc::SYS_getpeername,
                    libc::SYS_ppoll,
                    libc::SYS_fcntl,
                    libc::SYS_ioctl,
                ]);
                // poll(2) exists on x86_64 only (aarch64 has ppoll).
                #[cfg(target_arch = "x86_64")]
                v.push(libc::SYS_poll);
                v
            }
        }
    }
}

/// An unprivileged user to become (`synq serve --user`), resolved before the drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// `UID` or `UID:GID` as numbers (a host without a user database), or a name looked up in the user
    /// database (before the drop: it reads /etc/passwd, or asks NSS).
    pub fn lookup(name: &str) -> Result<User, String> {
        if let Some(u) = User::numeric(name) {
            return if u.uid == 0 {
                Err("uid 0 is root: give an unprivileged user with --user".into())
            } else {
                Ok(u)
            };
        }
        // /etc/passwd first, read directly: a static build's getpwnam would load NSS modules built against
        // the shared libc (libnss_systemd, sssd), which crash a static process.
        if let Some(u) = passwd_entry(name) {
            return if u.uid == 0 {
                Err(format!(
                    "user {name:?} is root: give an unprivileged user with --user"
                ))
            } else {
                Ok(u)
            };
        }
        if cfg!(target_feature = "crt-static") {
            return Err(format!(
                "no user {name:?} in /etc/passwd (this static build asks no other user database): give an \
                 existing user, or --user UID:GID"
            ));
        }
        let cname = std::ffi::CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
        // SAFETY: passwd is plain data (integers and pointers); all zero is a valid value to be filled in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 << 10];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed; result is checked before use.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() && !std::path::Path::new("/etc/passwd").exists() {
            return Err(format!(
                "looking up user {name:?}: {} — this host has no usable user database: give the user as \
                 numbers, --user UID:GID (65534:65534 is nobody on most systems)",
                if rc != 0 {
                    std::io::Error::from_raw_os_error(rc).to_string()
                } else {
                    "no /etc/passwd".into()
                }
            ));
        }
        if result.is_null() {
            return Err(format!(
                "no user {name:?} on this system: give an existing unprivileged user with --user"
            ));
        }
        if pwd.pw_uid == 0 {
            return Err(format!(
                "user {name:?} is root: give an unprivileged user with --user"
            ));
        }
        Ok(User {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// `name`'s uid and gid in /etc/passwd (at most 1 MiB of it read).
fn passwd_entry(name: &str) -> Option<User> {
    use std::io::Read;
    let mut text = String::new();
    // Regular file only, never blocking (a FIFO in its place is refused, as every file synq reads).
    crate::input::open_regular(std::path::Path::new("/etc/passwd"))
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    passwd_lookup(&text, name)
}

/// `name`'s uid and gid in the text of a passwd file (`name:x:uid:gid:...`).
fn passwd_lookup(text: &str, name: &str) -> Option<User> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some(User {
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
        })
    })
}

impl User {
    /// `UID` (its group the same number) or `UID:GID`.
    fn numeric(s: &str) -> Option<User> {
        let (u, g) = s.split_once(':').unwrap_or((s, s));
        Some(User {
            uid: u.parse().ok()?,
            gid: g.parse().ok()?,
        })
    }
}

/// Drops every capability, sets `no_new_privs` and installs the filter of a one-shot report.
pub fn drop_privileges() -> Result<Dropped, String> {
    drop_privileges_with(Profile::Report, None)
}

/// Drops every capability (first becoming `user`, when given and running as root), sets `no_new_privs` and
/// installs the filter of `profile`. Errors say which step failed; the steps before it stay done.
pub fn drop_privileges_with(profile: Profile, user: Option<User>) -> Result<Dropped, String> {
    let mut done = Dropped::default();
    let held = caps::read(None, caps::CapSet::Permitted)
        .map_err(|e| format!("reading capabilities: {e}"))?;
    if !held.is_empty() {
        // The bounding set first: dropping from it needs CAP_SETPCAP, which is about to go.
        for cap in caps::all() {
            // A capability this kernel does not know is not in the bounding set: nothing to drop.
            let _ = caps::drop(None, caps::CapSet::Bounding, cap);
        }
    }
    if let Some(u) = user {
        // SAFETY: plain system calls on this process; each result is checked.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            // Supplementary groups, then the group, then the user: the order in which each still may.
            // SAFETY: setgroups with a zero count reads no memory.
            if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
                return Err(format!("setgroups: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: as above.
            if unsafe { libc::setgid(u.gid) } != 0 {
                return Err(format!(
                    "setgid({}): {}",
                    u.gid,
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: as above. setuid from root to another user clears the permitted and effective sets.
            if unsafe { libc::setuid(u.uid) } != 0 {
                return Err(format!(
                    "setuid({}): {}",
                    u.uid,
                    std::io::Error::last_os_error()
                ));
            }
            done.user = Some(u);
        }
    }
    if !held.is_empty() {
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
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = allowed()
        .into_iter()
        .chain(profile.extra())
        .map(|nr| (nr, Vec::new()))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::User;

    #[test]
    fn users_as_numbers() {
        assert_eq!(
            User::lookup("65534:65533"),
            Ok(User {
                uid: 65534,
                gid: 65533
            })
        );
        assert_eq!(
            User::lookup("1000"),
            Ok(User {
                uid: 1000,
                gid: 1000
            })
        );
        assert!(User::lookup("0").is_err());
        assert!(User::lookup("0:5").is_err());
        assert!(User::lookup("no-such-user-synq").is_err());
    }

    #[test]
    fn passwd_lines() {
        let text = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nbad:x:y:1\n";
        assert_eq!(
            super::passwd_lookup(text, "nobody"),
            Some(User {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(super::passwd_lookup(text, "bad"), None);
        assert_eq!(super::passwd_lookup(text, "nobod"), None);
    }
}
