//! Kernel symbol addresses, from providers tried in one chain ([`Chain`]):
//!
//! | provider | file | addresses |
//! |---|---|---|
//! | [`Provider::InMemory`] | `kallsyms_mem.rs` | the kernel's own kallsyms tables in the memory read (6.0+: VMCOREINFO locates them) |
//! | [`Provider::Kallsyms`] | `text.rs` | `/proc/kallsyms`, or a file in its format (`--kallsyms`) |
//! | [`Provider::SystemMap`] | `text.rs` | a System.map: link-time, shifted by the KASLR offset |
//! | [`Provider::Vmlinux`] | `vmlinux.rs` | an ELF vmlinux's symbol table: link-time, shifted likewise |
//!
//! The chain is chosen from what the user gave: a given file is the only source (a given file is
//! authoritative, so no fallback may hide its error); by default the in-memory tables come first, then, live,
//! `/proc/kallsyms`. The provider that answered is reported ([`Symbols::source`]).
//!
//! The KASLR offset for link-time addresses is VMCOREINFO's `KERNELOFFSET` (it describes the very memory
//! being read); live on kernels before 4.19, whose kcore has no VMCOREINFO, it is `_stext` in kallsyms minus
//! `_stext` in the file.

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

/// One place symbol addresses can come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// The kernel's kallsyms tables in the memory being read, located by VMCOREINFO.
    InMemory,
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
            (None, _, None) if live => vec![Provider::InMemory, Provider::Kallsyms(proc_kallsyms)],
            (None, _, None) => vec![Provider::InMemory],
        };
        Chain {
            providers,
            stext_from,
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
            Err(Failure::Other(e)) => return Err(e),
        }
    }
    Err(last)
}

enum Failure {
    /// The in-memory tables cannot be used: the next provider may do.
    Tables(KallsymsError),
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
