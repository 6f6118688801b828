//! One session serves every command (`report`, `info`, `layout`): the target, its symbols, its BTF and the
//! layout, each resolved once, on first use, in the order the data flows (target → symbols → BTF → layout →
//! walk). Nothing is opened before a command needs it: `synq layout` on the live host reads only the BTF.

use std::path::{Path, PathBuf};

use btf_rs::Btf;

use crate::btf::providers::{self, BTF_BOUNDS, BtfChain, BtfError, FoundBtf, MemoryBtf};
use crate::btf::{self, Layout, LayoutError};
use crate::symbols::{self, Chain, Query, Symbols, SymbolsError};
use crate::target::{Spec, Target, TargetError};
use crate::walk::{self, Limits, WalkError, WalkResult};

/// The symbol synq starts from.
pub const HASHINFO: &str = "tcp_hashinfo";

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
        "tcp_hashinfo is not in {0} (CONFIG_KALLSYMS_ALL is off): pass --system-map with the System.map of \
         this kernel"
    )]
    NoHashinfo(PathBuf),
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
            if self.btf_chain().reads_memory() {
                names.extend(BTF_BOUNDS);
            }
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

    /// The address of tcp_hashinfo.
    pub fn hashinfo(&mut self) -> Result<u64, Error> {
        let syms = self.symbols()?;
        match syms.get(HASHINFO) {
            Some(addr) => Ok(addr),
            None if syms.link_time => Err(SymbolsError::LinkTimeSymbol {
                path: syms.listed_in.clone(),
                symbol: HASHINFO.into(),
            }
            .into()),
            None => Err(Error::NoHashinfo(syms.listed_in.clone())),
        }
    }

    /// The BTF and where it came from. Reads kernel memory (and so opens the target) only when the BTF comes
    /// from memory.
    pub fn btf(&mut self) -> Result<(&Btf, &str), Error> {
        if self.btf.is_none() {
            let chain = self.btf_chain();
            let found = if chain.reads_memory() {
                self.symbols()?;
                let target = self.target.as_ref().ok_or_else(unreachable_state)?;
                let m = MemoryBtf {
                    mem: target,
                    symbols: self.symbols.as_ref(),
                    target: target.path(),
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
