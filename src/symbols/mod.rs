//! Kernel symbol addresses, from providers tried in one chain ([`Chain`]):
//!
//! | provider | file | addresses |
//! |---|---|---|
//! | [`Provider::InMemory`] | `kallsyms_mem.rs` | the kernel's own kallsyms tables in the memory read (6.0+: VMCOREINFO locates them) |
//! | [`Provider::RunningSystemMap`] | `mod.rs` | live, by default: the running kernel's `/boot/System.map-RELEASE` (or Debian's `-dbg` copy), link-time, shifted by kcore's `KERNELOFFSET`, used only if its `linux_banner` holds `/proc/version` |
//! | [`Provider::Kallsyms`] | `text.rs` | `/proc/kallsyms`, or a file in its format (`--kallsyms`) |
//! | [`Provider::SystemMap`] | `text.rs` | a System.map (`--system-map`): link-time, shifted by the KASLR offset |
//! | [`Provider::Vmlinux`] | `vmlinux.rs` | an ELF vmlinux's symbol table: link-time, shifted likewise |
//!
//! The chain is chosen from what the user gave: a given file is the only source (a given file is
//! authoritative, so no fallback may hide its error); by default the in-memory tables come first, then, live,
//! the running kernel's System.map, then `/proc/kallsyms`. The provider that answered is reported
//! ([`Symbols::source`]).
//!
//! The running kernel's System.map is a shortcut, never an error: on kernels before 6.0 (whose VMCOREINFO does
//! not locate the in-memory tables) reading `/proc/kallsyms` costs most of a live run, and a System.map is a
//! file read. It answers only when it lists every name asked for plus `_stext` and `linux_banner`, kcore's
//! VMCOREINFO gives `KERNELOFFSET`, and the bytes at the shifted `linux_banner` are the running kernel's
//! `/proc/version` line (a System.map of another build of the same release fails there); otherwise the chain
//! moves on, silently.
//!
//! The KASLR offset for link-time addresses is VMCOREINFO's `KERNELOFFSET` (it describes the very memory
//! being read); live on kernels before 4.19, whose kcore has no VMCOREINFO, it is `_stext` in kallsyms minus
//! `_stext` in the file (`--system-map`, `--vmlinux` only).

pub mod kallsyms_mem;
pub mod text;
pub mod vmlinux;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::memory::Memory;
use crate::vmcoreinfo::VmcoreInfo;
use kallsyms_mem::{KallsymsError, KallsymsTables};
use text::SymbolError;
use vmlinux::{Vmlinux, VmlinuxError};

/// Where the live kernel lists its symbols.
pub const PROC_KALLSYMS: &str = "/proc/kallsyms";

/// The symbol whose bytes prove a System.map belongs to the running kernel: `linux_banner`, the text
/// `/proc/version` prints.
pub const BANNER: &str = "linux_banner";

/// The most of `/proc/version` read (the banner is ~150 bytes; a longer one is not a banner).
const MAX_VERSION: u64 = 512;
/// The most of `/proc/sys/kernel/osrelease` read (a release is at most 64 bytes).
const MAX_RELEASE: u64 = 128;

/// One place symbol addresses can come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// The kernel's kallsyms tables in the memory being read, located by VMCOREINFO.
    InMemory,
    /// Live, by default: the running kernel's own System.map ([`RunningMap`]), used only when it proves
    /// itself; otherwise passed over without an error.
    RunningSystemMap,
    /// A file in `/proc/kallsyms` format: run-time addresses.
    Kallsyms(PathBuf),
    /// A System.map: link-time addresses.
    SystemMap(PathBuf),
    /// An ELF vmlinux's symbol table: link-time addresses.
    Vmlinux(PathBuf),
}

/// The providers to try, in order, and where a live run finds `_stext` for the KASLR offset when VMCOREINFO
/// does not give it.
#[derive(Clone, Debug)]
pub struct Chain {
    pub providers: Vec<Provider>,
    pub stext_from: PathBuf,
    /// Where [`Provider::RunningSystemMap`] looks.
    pub running_map: RunningMap,
}

/// Where the running kernel's System.map is looked for, and what it is checked against (fields, so that
/// tests can point them elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningMap {
    /// The running kernel's release (`uname -r`).
    pub osrelease: PathBuf,
    /// Directories holding `System.map-RELEASE`, tried in order: `/boot` (Debian's is an 83-byte placeholder
    /// that fails the check), then where Debian's `linux-image-RELEASE-dbg` installs the real one.
    pub dirs: Vec<PathBuf>,
    /// The running kernel's banner, which `linux_banner` must hold.
    pub version: PathBuf,
}

impl Default for RunningMap {
    fn default() -> RunningMap {
        RunningMap {
            osrelease: PathBuf::from("/proc/sys/kernel/osrelease"),
            dirs: vec![PathBuf::from("/boot"), PathBuf::from("/usr/lib/debug/boot")],
            version: PathBuf::from("/proc/version"),
        }
    }
}

impl Chain {
    /// The chain for the files the user gave. `live`: the running kernel, whose `/proc/kallsyms` is the
    /// fallback of the in-memory tables; a dump has only its own tables.
    pub fn new(
        kallsyms: Option<&Path>,
        system_map: Option<&Path>,
        vmlinux: Option<&Path>,
        live: bool,
    ) -> Chain {
        let proc_kallsyms = PathBuf::from(PROC_KALLSYMS);
        let stext_from = kallsyms.map_or(proc_kallsyms.clone(), Path::to_path_buf);
        let providers = match (system_map, vmlinux, kallsyms) {
            (Some(map), _, _) => vec![Provider::SystemMap(map.to_path_buf())],
            // --kallsyms with --vmlinux: the kallsyms file gives the symbols, the vmlinux only the BTF.
            (None, Some(vm), None) => vec![Provider::Vmlinux(vm.to_path_buf())],
            (None, _, Some(ks)) => vec![Provider::Kallsyms(ks.to_path_buf())],
            (None, _, None) if live => vec![
                Provider::InMemory,
                Provider::RunningSystemMap,
                Provider::Kallsyms(proc_kallsyms),
            ],
            (None, _, None) => vec![Provider::InMemory],
        };
        Chain {
            providers,
            stext_from,
            running_map: RunningMap::default(),
        }
    }
}

/// Symbols found, and which provider answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbols {
    /// Run-time addresses of the names found (names the provider lacks are absent).
    pub addrs: HashMap<String, u64>,
    /// The provider, as the report and `synq info` say it.
    pub source: String,
    /// The file a user would look in for a missing symbol (`/proc/kallsyms` for the in-memory tables live,
    /// which are what it prints).
    pub listed_in: PathBuf,
    /// Link-time addresses shifted by the KASLR offset (System.map, vmlinux).
    pub link_time: bool,
}

impl Symbols {
    /// The address of `name`, if found and not 0.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.addrs.get(name).copied().filter(|&a| a != 0)
    }
}

/// What the memory being read says about itself, for the providers.
pub struct Query<'a> {
    pub mem: &'a dyn Memory,
    pub vmcoreinfo: Option<&'a VmcoreInfo>,
    /// The file read (kcore or dump), for messages.
    pub target: &'a Path,
    pub live: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error(transparent)]
    File(#[from] SymbolError),
    #[error(transparent)]
    Vmlinux(#[from] VmlinuxError),
    #[error(
        "{kallsyms}: every address reads as 0 — kptr_restrict hides kallsyms addresses, and the in-memory \
         kallsyms tables failed too ({in_memory}); run with kernel.kptr_restrict ≤ 1, or pass --system-map"
    )]
    Hidden {
        kallsyms: PathBuf,
        in_memory: String,
    },
    #[error("{path}: has no {symbol}; is it the System.map of the running kernel?")]
    LinkTimeSymbol { path: PathBuf, symbol: String },
    #[error(
        "cannot tell the KASLR offset for --system-map: kallsyms has no usable _stext and {0} has no \
         VMCOREINFO KERNELOFFSET"
    )]
    NoKaslrOffset(PathBuf),
    #[error(
        "{path}: the kernel's own kallsyms tables cannot be used ({err}); if the dump is complete, pass \
         --kallsyms (or --system-map) with this kernel's symbols"
    )]
    DumpTables { path: PathBuf, err: KallsymsError },
    #[error("no symbol source was tried")]
    Empty,
}

/// Looks `names` up through `chain`. A provider that answers ends the search, even if it lacks some names
/// (the in-memory tables are what /proc/kallsyms prints: a name they lack is not there either); one that
/// fails passes on to the next, and the last failure is the error, naming the earlier ones where they
/// matter.
pub fn resolve(chain: &Chain, q: &Query, names: &[&str]) -> Result<Symbols, SymbolsError> {
    let mut in_memory_error: Option<KallsymsError> = None;
    let mut last = SymbolsError::Empty;
    for (i, provider) in chain.providers.iter().enumerate() {
        let more = i + 1 < chain.providers.len();
        match lookup(provider, chain, q, names, in_memory_error.as_ref()) {
            Ok(found) => return Ok(found),
            // Tables VMCOREINFO does not locate (kernels before 6.0) were never a candidate: not worth naming.
            Err(Failure::Tables(KallsymsError::NotInVmcoreinfo(_))) if more => {}
            Err(Failure::Tables(e)) if more => in_memory_error = Some(e),
            Err(Failure::Tables(err)) => {
                last = SymbolsError::DumpTables {
                    path: q.target.to_path_buf(),
                    err,
                }
            }
            // The running kernel's System.map did not prove itself: the next provider answers.
            Err(Failure::Skip) => {}
            Err(Failure::Other(e)) => return Err(e),
        }
    }
    Err(last)
}

enum Failure {
    /// The in-memory tables cannot be used: the next provider may do.
    Tables(KallsymsError),
    /// An optional provider does not apply here: the next one answers, and nothing is said.
    Skip,
    Other(SymbolsError),
}

impl<E: Into<SymbolsError>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Other(e.into())
    }
}

fn lookup(
    provider: &Provider,
    chain: &Chain,
    q: &Query,
    names: &[&str],
    in_memory_error: Option<&KallsymsError>,
) -> Result<Symbols, Failure> {
    match provider {
        Provider::InMemory => {
            let info = q
                .vmcoreinfo
                .ok_or(Failure::Tables(KallsymsError::NotInVmcoreinfo(
                    "kallsyms_names",
                )))?;
            let tables = KallsymsTables::new(q.mem, info).map_err(Failure::Tables)?;
            let addrs = tables.lookup_many(q.mem, names).map_err(Failure::Tables)?;
            let (source, listed_in) = if q.live {
                (
                    "kallsyms tables in kernel memory (located by VMCOREINFO)",
                    PathBuf::from(PROC_KALLSYMS),
                )
            } else {
                (
                    "kallsyms tables in the dump (located by VMCOREINFO)",
                    q.target.to_path_buf(),
                )
            };
            Ok(Symbols {
                addrs,
                source: source.into(),
                listed_in,
                link_time: false,
            })
        }
        Provider::RunningSystemMap => {
            running_system_map(&chain.running_map, q, names).ok_or(Failure::Skip)
        }
        Provider::Kallsyms(path) => {
            let found = text::scan(path, names)?;
            if !found.saw_nonzero {
                return Err(match in_memory_error {
                    Some(e) => SymbolsError::Hidden {
                        kallsyms: path.clone(),
                        in_memory: e.to_string(),
                    },
                    None => SymbolError::Restricted(path.clone()).into(),
                }
                .into());
            }
            Ok(Symbols {
                addrs: found.symbols,
                source: path.display().to_string(),
                listed_in: path.clone(),
                link_time: false,
            })
        }
        Provider::SystemMap(path) => {
            let mut wanted = names.to_vec();
            wanted.push("_stext");
            let link = text::scan(path, &wanted)?.symbols;
            link_time(path, link, chain, q)
        }
        Provider::Vmlinux(path) => {
            let mut wanted = names.to_vec();
            wanted.push("_stext");
            let link = Vmlinux::open(path).and_then(|v| v.symbols(&wanted))?;
            link_time(path, link, chain, q)
        }
    }
}

/// The running kernel's System.map, if it proves itself (see the module's documentation); `None` passes on
/// to the next provider. Reads no `/proc/kallsyms`: avoiding it is the point.
fn running_system_map(at: &RunningMap, q: &Query, names: &[&str]) -> Option<Symbols> {
    if !q.live {
        return None;
    }
    let offset = q.vmcoreinfo.and_then(VmcoreInfo::kernel_offset)?;
    let release = crate::input::read_small(&at.osrelease, MAX_RELEASE).ok()?;
    let release = std::str::from_utf8(release.trim_ascii()).ok()?;
    if release.is_empty() || release.contains('/') {
        return None;
    }
    // The banner line: the kernel keeps it as "...\n" and a NUL.
    let version = crate::input::read_small(&at.version, MAX_VERSION).ok()?;
    let line = version.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.is_empty() {
        return None;
    }
    let mut want_banner = line.to_vec();
    want_banner.extend_from_slice(b"\n\0");

    let mut wanted: Vec<&str> = names.to_vec();
    for extra in ["_stext", BANNER] {
        if !wanted.contains(&extra) {
            wanted.push(extra);
        }
    }
    let file = format!("System.map-{release}");
    for dir in &at.dirs {
        let path = dir.join(&file);
        let Ok(found) = text::scan(&path, &wanted) else {
            continue;
        };
        if wanted.iter().any(|n| !found.symbols.contains_key(*n)) {
            continue;
        }
        let Some(banner) = found.symbols.get(BANNER).map(|a| a.wrapping_add(offset)) else {
            continue;
        };
        let mut got = vec![0u8; want_banner.len()];
        if q.mem.read(banner, &mut got).is_err() || got != want_banner {
            continue;
        }
        let addrs = found
            .symbols
            .into_iter()
            .map(|(k, v)| (k, v.wrapping_add(offset)))
            .collect();
        return Some(Symbols {
            addrs,
            source: format!(
                "{} + KASLR offset {offset:#x} (kcore VMCOREINFO), checked against linux_banner",
                path.display()
            ),
            listed_in: path,
            link_time: true,
        });
    }
    None
}

/// Link-time addresses shifted by the KASLR offset: VMCOREINFO's KERNELOFFSET, or live, `_stext` in kallsyms
/// minus `_stext` in the file.
fn link_time(
    path: &Path,
    link: HashMap<String, u64>,
    chain: &Chain,
    q: &Query,
) -> Result<Symbols, Failure> {
    let (offset, how) = match q.vmcoreinfo.and_then(VmcoreInfo::kernel_offset) {
        Some(o) => (
            o,
            if q.live {
                "KASLR offset"
            } else {
                "KERNELOFFSET"
            },
        ),
        // Kernels before 4.19: kcore has no VMCOREINFO; kallsyms' _stext gives the offset.
        None if q.live => {
            let link_stext =
                link.get("_stext")
                    .copied()
                    .ok_or_else(|| SymbolsError::LinkTimeSymbol {
                        path: path.to_path_buf(),
                        symbol: "_stext".into(),
                    })?;
            let ks = text::scan(&chain.stext_from, &["_stext"]).ok();
            match ks.as_ref().and_then(|k| k.symbols.get("_stext")) {
                Some(&run) if run != 0 => (run.wrapping_sub(link_stext), "KASLR offset"),
                _ => return Err(SymbolsError::NoKaslrOffset(q.target.to_path_buf()).into()),
            }
        }
        None => return Err(SymbolsError::NoKaslrOffset(q.target.to_path_buf()).into()),
    };
    let addrs = link
        .into_iter()
        .map(|(k, v)| (k, v.wrapping_add(offset)))
        .collect();
    Ok(Symbols {
        addrs,
        source: format!("{} + {how} {offset:#x}", path.display()),
        listed_in: path.to_path_buf(),
        link_time: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Flat;

    const OFFSET: u64 = 0x1e00_0000;
    const LINK_BANNER: u64 = 0xffff_ffff_81e0_0200;
    const BANNER_TEXT: &[u8] = b"Linux version 5.10.0-32-amd64 (debian-kernel@lists.debian.org) (gcc-10) #1 SMP Debian 5.10.223-1 (2024-08-10)";

    /// A directory with `boot/System.map-5.10.0-test`, `proc/version`, `proc/osrelease`, `kallsyms`.
    struct Host {
        root: PathBuf,
    }

    impl Host {
        fn new(name: &str, map: Option<&str>, version: &[u8]) -> Host {
            let root = std::env::temp_dir()
                .join(format!("synq-sysmap-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("boot")).unwrap();
            std::fs::create_dir_all(root.join("debug")).unwrap();
            std::fs::create_dir_all(root.join("proc")).unwrap();
            if let Some(map) = map {
                std::fs::write(root.join("boot/System.map-5.10.0-test"), map).unwrap();
            }
            std::fs::write(root.join("proc/version"), version).unwrap();
            std::fs::write(root.join("proc/osrelease"), b"5.10.0-test\n").unwrap();
            // /proc/kallsyms as the next provider: run-time addresses of its own.
            std::fs::write(
                root.join("kallsyms"),
                "ffffffff9f000000 T _stext\nffffffffa0000040 B tcp_hashinfo\n",
            )
            .unwrap();
            Host { root }
        }

        fn chain(&self) -> Chain {
            let mut chain = Chain::new(None, None, None, true);
            chain.providers = vec![
                Provider::InMemory,
                Provider::RunningSystemMap,
                Provider::Kallsyms(self.root.join("kallsyms")),
            ];
            chain.running_map = RunningMap {
                osrelease: self.root.join("proc/osrelease"),
                dirs: vec![self.root.join("boot"), self.root.join("debug")],
                version: self.root.join("proc/version"),
            };
            chain
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn good_map() -> String {
        format!(
            "0000000000000000 D __per_cpu_start\nffffffff81000000 T _stext\n{LINK_BANNER:016x} D linux_banner\n\
             ffffffff82000040 B tcp_hashinfo\n"
        )
    }

    /// Kernel memory: the banner (with its newline and NUL) at its run-time address, nothing else.
    fn banner_mem() -> Flat {
        let mut bytes = BANNER_TEXT.to_vec();
        bytes.extend_from_slice(b"\n\0");
        Flat {
            base: LINK_BANNER + OFFSET,
            bytes,
        }
    }

    fn version_file() -> Vec<u8> {
        let mut v = BANNER_TEXT.to_vec();
        v.push(b'\n');
        v
    }

    fn resolve_with(chain: &Chain, mem: &Flat, vmcoreinfo: &str) -> Symbols {
        let info = VmcoreInfo::parse(vmcoreinfo);
        let q = Query {
            mem,
            vmcoreinfo: Some(&info),
            target: Path::new("/proc/kcore"),
            live: true,
        };
        resolve(chain, &q, &["tcp_hashinfo"]).unwrap()
    }

    fn with_offset() -> String {
        format!("OSRELEASE=5.10.0-test\nKERNELOFFSET={OFFSET:x}\n")
    }

    /// The System.map whose linux_banner holds /proc/version answers, with addresses shifted by KERNELOFFSET
    /// and a source saying so.
    #[test]
    fn running_system_map_answers_when_its_banner_is_the_running_kernels() {
        let host = Host::new("good", Some(&good_map()), &version_file());
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.get("tcp_hashinfo"), Some(0xffff_ffff_8200_0040 + OFFSET));
        assert!(s.link_time);
        assert_eq!(s.listed_in, host.root.join("boot/System.map-5.10.0-test"));
        assert!(
            s.source.ends_with(&format!(
                "boot/System.map-5.10.0-test + KASLR offset {OFFSET:#x} (kcore VMCOREINFO), checked against \
                 linux_banner"
            )),
            "{}",
            s.source
        );
    }

    /// Another build of the same release: its linux_banner's bytes are not /proc/version; /proc/kallsyms
    /// answers instead, without an error.
    #[test]
    fn running_system_map_with_another_banner_passes_to_kallsyms() {
        let host = Host::new(
            "other-build",
            Some(&good_map()),
            b"Linux version 5.10.0-test (someone@else) (gcc-10) #2 SMP\n",
        );
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
        assert_eq!(s.get("tcp_hashinfo"), Some(0xffff_ffff_a000_0040));
    }

    /// The banner's line must end where /proc/version's does: a longer banner in memory (no NUL after the
    /// newline) is another text.
    #[test]
    fn running_system_map_needs_the_whole_banner() {
        let host = Host::new("prefix", Some(&good_map()), &version_file());
        let mut mem = banner_mem();
        mem.bytes.truncate(BANNER_TEXT.len() + 1);
        mem.bytes.extend_from_slice(b"x\0");
        let s = resolve_with(&host.chain(), &mem, &with_offset());
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
    }

    /// Without KERNELOFFSET the route does not guess the offset from /proc/kallsyms (which is what it exists
    /// to avoid): /proc/kallsyms answers.
    #[test]
    fn running_system_map_without_kerneloffset_passes_to_kallsyms() {
        let host = Host::new("no-offset", Some(&good_map()), &version_file());
        let s = resolve_with(&host.chain(), &banner_mem(), "OSRELEASE=5.10.0-test\n");
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
    }

    /// No System.map for the release: /proc/kallsyms answers.
    #[test]
    fn missing_running_system_map_passes_to_kallsyms() {
        let host = Host::new("missing", None, &version_file());
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
    }

    /// A System.map without linux_banner (Debian's placeholder lists nothing at all) cannot prove itself.
    #[test]
    fn running_system_map_without_linux_banner_passes_to_kallsyms() {
        let map = "ffffffff81000000 T _stext\nffffffff82000040 B tcp_hashinfo\n";
        let host = Host::new("no-banner", Some(map), &version_file());
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
        let placeholder =
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n";
        let host = Host::new("placeholder", Some(placeholder), &version_file());
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
    }

    /// A System.map that lacks a name asked for is not used (the name would be reported missing when
    /// /proc/kallsyms may have it).
    #[test]
    fn running_system_map_lacking_a_wanted_name_passes_to_kallsyms() {
        let map = format!("ffffffff81000000 T _stext\n{LINK_BANNER:016x} D linux_banner\n");
        let host = Host::new("no-name", Some(&map), &version_file());
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.source, host.root.join("kallsyms").display().to_string());
    }

    /// Debian's layout: a placeholder in /boot, the real map where the -dbg package puts it.
    #[test]
    fn running_system_map_is_found_in_the_second_directory() {
        let placeholder =
            "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n";
        let host = Host::new("dbg", Some(placeholder), &version_file());
        std::fs::write(host.root.join("debug/System.map-5.10.0-test"), good_map()).unwrap();
        let s = resolve_with(&host.chain(), &banner_mem(), &with_offset());
        assert_eq!(s.listed_in, host.root.join("debug/System.map-5.10.0-test"));
        assert_eq!(s.get("tcp_hashinfo"), Some(0xffff_ffff_8200_0040 + OFFSET));
    }

    /// The default chains: live has the System.map route between the in-memory tables and /proc/kallsyms;
    /// a dump, and any file given, do not.
    #[test]
    fn running_system_map_only_in_the_default_live_chain() {
        let live = Chain::new(None, None, None, true);
        assert_eq!(
            live.providers,
            vec![
                Provider::InMemory,
                Provider::RunningSystemMap,
                Provider::Kallsyms(PathBuf::from(PROC_KALLSYMS))
            ]
        );
        assert_eq!(
            Chain::new(None, None, None, false).providers,
            vec![Provider::InMemory]
        );
        let map = Path::new("/tmp/System.map");
        assert_eq!(
            Chain::new(None, Some(map), None, true).providers,
            vec![Provider::SystemMap(map.to_path_buf())]
        );
    }
}
