//! One session serves every command (`report`, `info`, `layout`): the target, its symbols, its BTF and the
//! layout, each resolved once, on first use, in the order the data flows (target → symbols → BTF → layout →
//! walk). Nothing is opened before a command needs it: `synq layout` on the live host reads only the BTF.

use std::path::{Path, PathBuf};

use crate::btf::Btf;

use crate::btf::netns::NetnsLayout;
use crate::btf::owners::OwnersLayout;
use crate::btf::providers::{
    self, BTF_BOUNDS, BtfChain, BtfError, FoundBtf, MemoryBtf, RODATA_MARKS,
};
use crate::btf::requests::RequestsLayout;
use crate::btf::{self, Layout, LayoutError};
use crate::symbols::{self, Chain, Query, Symbols, SymbolsError};
use crate::target::{Spec, Target, TargetError};
use crate::walk::netns::{NetnsResult, NetnsSymbols};
use crate::walk::owners::{OwnersResult, OwnersSymbols};
use crate::walk::requests::RequestsResult;
use crate::walk::{self, Limits, WalkError, WalkResult};

/// The symbol synq starts from.
pub const HASHINFO: &str = "tcp_hashinfo";

/// The symbols of the namespace walk (issue 8): the list of namespaces, and the per-CPU machinery their
/// counters are summed over. Looked up with `tcp_hashinfo`; a kernel that lacks one reports no counters.
pub const NETNS_SYMBOLS: [&str; 4] = [
    "net_namespace_list",
    "__per_cpu_offset",
    "nr_cpu_ids",
    "__cpu_possible_mask",
];

/// The symbols of the owners walk (issue 8): the first task, and the file operations of a socket's file.
pub const OWNERS_SYMBOLS: [&str; 2] = ["init_task", "socket_file_ops"];

/// The clock the request timers count in (`--requests`).
pub const JIFFIES: &str = "jiffies";

/// Side files the user gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideFiles {
    /// `--btf`: the kernel's BTF (raw or xz).
    pub btf: Option<PathBuf>,
    /// `--kallsyms`: symbols in /proc/kallsyms format.
    pub kallsyms: Option<PathBuf>,
    /// `--system-map`: link-time symbols.
    pub system_map: Option<PathBuf>,
    /// `--vmlinux`: an ELF vmlinux (.BTF and link-time symbols).
    pub vmlinux: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Symbols(#[from] SymbolsError),
    #[error(
        "tcp_hashinfo is not in {0} (CONFIG_KALLSYMS_ALL is off){why}: pass --system-map with the System.map \
         of this kernel",
        why = .1.as_ref().map(|why| format!(", and looking for it in the kernel's data failed: {why}")).unwrap_or_default()
    )]
    NoHashinfo(PathBuf, Option<String>),
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(
        "{err} (BTF from {origin}): this BTF cannot describe the TCP listening tables — is it the vmlinux BTF \
         of a kernel with TCP? Pass --btf with the running kernel's BTF"
    )]
    Layout { origin: String, err: LayoutError },
    #[error(transparent)]
    Walk(WalkError),
    #[error("{path}: {err}")]
    DumpWalk { path: PathBuf, err: WalkError },
    #[error(
        "{0}: carries no VMCOREINFO (kcore has the note since Linux 4.19); on older kernels \
         /sys/kernel/vmcoreinfo gives only its physical address"
    )]
    NoVmcoreinfo(PathBuf),
    #[error("{path}: {why}")]
    Textfile { path: PathBuf, why: String },
    #[error("serve: {0}")]
    Serve(String),
    /// Writing the report to stdout failed (not a closed pipe: a reader that stopped reading is fine).
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Everything resolved so far for one target.
pub struct Session {
    spec: Spec,
    side: SideFiles,
    target: Option<Target>,
    symbols: Option<Symbols>,
    btf: Option<FoundBtf>,
    layout: Option<Layout>,
    /// `Some(None)`: resolved, and the BTF cannot describe namespaces.
    netns_layout: Option<Option<NetnsLayout>>,
    owners_layout: Option<Option<OwnersLayout>>,
    requests_layout: Option<Option<RequestsLayout>>,
}

impl Session {
    pub fn new(spec: Spec, side: SideFiles) -> Session {
        Session {
            spec,
            side,
            target: None,
            symbols: None,
            btf: None,
            layout: None,
            netns_layout: None,
            owners_layout: None,
            requests_layout: None,
        }
    }

    fn live(&self) -> bool {
        matches!(self.spec, Spec::Live { .. })
    }

    fn btf_chain(&self) -> BtfChain {
        BtfChain::new(
            self.side.btf.as_deref(),
            self.side.vmlinux.as_deref(),
            self.live(),
            self.target.is_some(),
        )
    }

    fn symbol_chain(&self) -> Chain {
        Chain::new(
            self.side.kallsyms.as_deref(),
            self.side.system_map.as_deref(),
            self.side.vmlinux.as_deref(),
            self.live(),
        )
    }

    /// The target, opened on first use.
    pub fn target(&mut self) -> Result<&Target, Error> {
        if self.target.is_none() {
            self.target = Some(Target::open(&self.spec)?);
        }
        self.target.as_ref().ok_or_else(unreachable_state)
    }

    /// The symbols: tcp_hashinfo, and the BTF's bounds when the BTF comes from memory.
    pub fn symbols(&mut self) -> Result<&Symbols, Error> {
        if self.symbols.is_none() {
            self.target()?;
            let chain = self.symbol_chain();
            let mut names = vec![HASHINFO];
            names.extend(NETNS_SYMBOLS);
            names.extend(OWNERS_SYMBOLS);
            names.push(JIFFIES);
            if self.btf_chain().reads_memory() {
                names.extend(BTF_BOUNDS);
            }
            // Where the BTF and tcp_hashinfo are looked for when kallsyms lists functions only.
            names.extend(RODATA_MARKS);
            let target = self.target.as_ref().ok_or_else(unreachable_state)?;
            let q = Query {
                mem: target,
                vmcoreinfo: target.vmcoreinfo(),
                target: target.path(),
                live: target.is_live(),
            };
            self.symbols = Some(symbols::resolve(&chain, &q, &names)?);
        }
        self.symbols.as_ref().ok_or_else(unreachable_state)
    }

    /// The address of tcp_hashinfo: its symbol, or, where kallsyms lists functions only (no
    /// CONFIG_KALLSYMS_ALL), the one place in the kernel image's data that holds a listening table
    /// ([`walk::find::scan`]), which is then added to the symbols (and their source says so).
    pub fn hashinfo(&mut self) -> Result<u64, Error> {
        let syms = self.symbols()?;
        match syms.get(HASHINFO) {
            Some(addr) => Ok(addr),
            None if syms.link_time => Err(SymbolsError::LinkTimeSymbol {
                path: syms.listed_in.clone(),
                symbol: HASHINFO.into(),
            }
            .into()),
            None => {
                let listed_in = syms.listed_in.clone();
                let Some(init_begin) = syms.get("__init_begin") else {
                    return Err(Error::NoHashinfo(listed_in, None));
                };
                self.layout()?;
                let (Some(target), Some(layout)) = (self.target.as_ref(), self.layout.as_ref())
                else {
                    return Err(unreachable_state());
                };
                let found = walk::find::scan(target, layout, init_begin)
                    .map_err(|why| Error::NoHashinfo(listed_in, Some(why)))?;
                let syms = self.symbols.as_mut().ok_or_else(unreachable_state)?;
                syms.addrs.insert(HASHINFO.to_string(), found.addr);
                syms.source.push_str(&format!(
                    "; tcp_hashinfo found in the kernel's data (no CONFIG_KALLSYMS_ALL): {:#x}; without data \
                     symbols, owners, request timers and namespaces are not read (--system-map gives them)",
                    found.addr
                ));
                Ok(found.addr)
            }
        }
    }

    /// The BTF and where it came from. Reads kernel memory (and so opens the target) only when the BTF comes
    /// from memory.
    pub fn btf(&mut self) -> Result<(&Btf, &str), Error> {
        if self.btf.is_none() {
            let chain = self.btf_chain();
            let found = if chain.reads_memory() {
                // Live, the symbols' failure leaves the sysfs file to try; a dump has only its memory.
                if let Err(e) = self.symbols()
                    && chain.only_memory()
                {
                    return Err(e);
                }
                let target = self.target.as_ref().ok_or_else(unreachable_state)?;
                let m = MemoryBtf {
                    mem: target,
                    symbols: self.symbols.as_ref(),
                    target: target.path(),
                    live: target.is_live(),
                };
                providers::load(&chain, Some(&m))?
            } else {
                providers::load(&chain, None)?
            };
            self.btf = Some(found);
        }
        let f = self.btf.as_ref().ok_or_else(unreachable_state)?;
        Ok((&f.btf, &f.source))
    }

    /// The layout resolved from the BTF.
    pub fn layout(&mut self) -> Result<&Layout, Error> {
        if self.layout.is_none() {
            let (btf, origin) = self.btf()?;
            let layout = btf::resolve(btf).map_err(|err| Error::Layout {
                origin: origin.to_string(),
                err,
            })?;
            self.layout = Some(layout);
        }
        self.layout.as_ref().ok_or_else(unreachable_state)
    }

    /// The namespace layout (issue 8), resolved once; `None` when the BTF cannot describe it.
    pub fn netns_layout(&mut self) -> Result<Option<&NetnsLayout>, Error> {
        if self.netns_layout.is_none() {
            let ptr = self.layout()?.pointer_size;
            let (btf, _) = self.btf()?;
            self.netns_layout = Some(btf::netns::resolve(btf, ptr));
        }
        Ok(self.netns_layout.as_ref().and_then(Option::as_ref))
    }

    /// The network namespaces, their listen sysctls and TcpExt counters. `None` when the BTF or the symbols
    /// do not allow it (the report then says so).
    pub fn namespaces(&mut self) -> Result<Option<NetnsResult>, Error> {
        self.netns_layout()?;
        self.symbols()?;
        let ptr = self.layout()?.pointer_size;
        let (Some(target), Some(syms), Some(Some(layout))) = (
            self.target.as_ref(),
            self.symbols.as_ref(),
            self.netns_layout.as_ref(),
        ) else {
            return Ok(None);
        };
        let Some(list) = syms.get("net_namespace_list") else {
            return Ok(None);
        };
        let per_cpu = match (
            syms.get("__per_cpu_offset"),
            syms.get("nr_cpu_ids"),
            syms.get("__cpu_possible_mask"),
        ) {
            (Some(o), Some(n), Some(m)) => Some((o, n, m)),
            _ => None,
        };
        Ok(Some(walk::netns::walk(
            target,
            layout,
            NetnsSymbols { list, per_cpu },
            ptr,
        )))
    }

    /// The owners layout (issue 8), resolved once; `None` when the BTF cannot describe it.
    pub fn owners_layout(&mut self) -> Result<Option<&OwnersLayout>, Error> {
        if self.owners_layout.is_none() {
            let ptr = self.layout()?.pointer_size;
            let (btf, _) = self.btf()?;
            self.owners_layout = Some(btf::owners::resolve(btf, ptr));
        }
        Ok(self.owners_layout.as_ref().and_then(Option::as_ref))
    }

    /// The processes holding the socks in `wanted`. `None` when the BTF or the symbols do not allow it.
    /// `by_sk`: some listener's `struct socket` is unknown (see [`walk::owners::walk`]).
    pub fn owners(
        &mut self,
        wanted: &std::collections::HashSet<u64>,
        by_sk: bool,
    ) -> Result<Option<OwnersResult>, Error> {
        self.owners_layout()?;
        self.symbols()?;
        let ptr = self.layout()?.pointer_size;
        let (Some(target), Some(syms), Some(Some(layout))) = (
            self.target.as_ref(),
            self.symbols.as_ref(),
            self.owners_layout.as_ref(),
        ) else {
            return Ok(None);
        };
        let (Some(init_task), Some(socket_file_ops)) =
            (syms.get("init_task"), syms.get("socket_file_ops"))
        else {
            return Ok(None);
        };
        Ok(Some(walk::owners::walk(
            target,
            layout,
            OwnersSymbols {
                init_task,
                socket_file_ops,
            },
            ptr,
            wanted,
            by_sk,
        )))
    }

    /// The requests layout (`--requests`), resolved once; `None` before 4.4 or when the BTF lacks a member.
    pub fn requests_layout(&mut self) -> Result<Option<&RequestsLayout>, Error> {
        if self.requests_layout.is_none() {
            let ptr = self.layout()?.pointer_size;
            let (btf, _) = self.btf()?;
            self.requests_layout = Some(btf::requests::resolve(btf, ptr));
        }
        Ok(self.requests_layout.as_ref().and_then(Option::as_ref))
    }

    /// The half-open requests in `tcp_hashinfo`'s established table and in every namespace's own
    /// (`extra`: the namespaces' `inet_hashinfo`s). `None` when the BTF cannot describe them.
    pub fn requests(&mut self, extra: &[u64]) -> Result<Option<RequestsResult>, Error> {
        let hashinfo = self.hashinfo()?;
        self.requests_layout()?;
        let ptr = self.layout()?.pointer_size;
        let (Some(target), Some(syms), Some(Some(layout))) = (
            self.target.as_ref(),
            self.symbols.as_ref(),
            self.requests_layout.as_ref(),
        ) else {
            return Ok(None);
        };
        let jiffies = syms
            .get(JIFFIES)
            .and_then(|a| crate::memory::read_ptr(target, a, 8).ok());
        let mut tables = vec![hashinfo];
        tables.extend(extra.iter().copied().filter(|&h| h != hashinfo));
        Ok(Some(walk::requests::walk(
            target, layout, &tables, jiffies, ptr,
        )))
    }

    /// Frees the BTF (some 5 MiB of memory file and index) once every layout a run needs is resolved: it is
    /// part of the peak memory of a one-shot run otherwise. A layout asked for later loads it again.
    pub fn release_btf(&mut self) {
        self.btf = None;
    }

    /// Where the BTF came from, once loaded.
    pub fn btf_source(&self) -> Option<&str> {
        self.btf.as_ref().map(|f| f.source.as_str())
    }

    /// The listening-hash walk over the target's memory.
    pub fn walk(&mut self) -> Result<WalkResult, Error> {
        let hashinfo = self.hashinfo()?;
        self.layout()?;
        let (Some(target), Some(layout)) = (self.target.as_ref(), self.layout.as_ref()) else {
            return Err(unreachable_state());
        };
        walk::walk(target, layout, hashinfo, Limits::default()).map_err(|err| {
            if target.is_live() {
                Error::Walk(err)
            } else {
                Error::DumpWalk {
                    path: target.path().to_path_buf(),
                    err,
                }
            }
        })
    }

    /// The target's file path as given (opened or not).
    pub fn target_path(&self) -> &Path {
        match &self.spec {
            Spec::Live { kcore } => kcore,
            Spec::Core { path, .. } => path,
        }
    }
}

/// A step's result is stored right before it is read back; this stands for the impossible miss.
fn unreachable_state() -> Error {
    Error::Internal("a session step was not stored")
}
