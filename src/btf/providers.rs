//! Where the BTF comes from: providers tried in one chain, like the symbols ([`crate::symbols`]).
//!
//! | provider | BTF |
//! |---|---|
//! | [`BtfProvider::File`] | `--btf FILE`: raw or xz-compressed BTF |
//! | [`BtfProvider::Vmlinux`] | `--vmlinux FILE`: its `.BTF` section |
//! | [`BtfProvider::Sysfs`] | `/sys/kernel/btf/vmlinux`, the running kernel's own |
//! | [`BtfProvider::Memory`] | between `__start_BTF` and `__stop_BTF` in the memory read (a dump's own) |
//!
//! A given file is the only provider; otherwise, live, the kernel's own BTF out of `/proc/kcore` when the run
//! reads kcore anyway (checked against the sysfs file's size), then the sysfs file; a dump's own BTF.

use std::path::{Path, PathBuf};

use super::Btf;

use super::{BtfLoadError, load_file, parse_bytes};
use crate::memory::Memory;
use crate::symbols::Symbols;
use crate::symbols::vmlinux::{Vmlinux, VmlinuxError};

/// The running kernel's BTF.
pub const SYSFS_BTF: &str = "/sys/kernel/btf/vmlinux";
/// The largest BTF read out of memory (vmlinux BTF is 3–7 MiB).
const MAX_MEMORY_BTF: u64 = 64 << 20;
/// The symbols that bound the kernel's BTF in memory.
pub const BTF_BOUNDS: [&str; 2] = ["__start_BTF", "__stop_BTF"];

/// One place BTF can come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfProvider {
    File(PathBuf),
    Vmlinux(PathBuf),
    Sysfs,
    Memory,
}

/// The providers to try, in order.
#[derive(Clone, Debug)]
pub struct BtfChain(pub Vec<BtfProvider>);

impl BtfChain {
    /// `--btf`, else `--vmlinux`, else the live kernel's sysfs file or the dump's own BTF. `kcore_open`:
    /// live, `/proc/kcore` is open for the walk anyway, so the BTF is read out of it first, in a few reads
    /// (sysfs serves one 4 KiB page per read: 1,000+ system calls); sysfs if that fails. Without it (`synq
    /// layout`, `doctor`), sysfs alone: nothing needs root.
    pub fn new(
        btf: Option<&Path>,
        vmlinux: Option<&Path>,
        live: bool,
        kcore_open: bool,
    ) -> BtfChain {
        BtfChain(match (btf, vmlinux) {
            (Some(p), _) => vec![BtfProvider::File(p.to_path_buf())],
            (None, Some(vm)) => vec![BtfProvider::Vmlinux(vm.to_path_buf())],
            (None, None) if live && kcore_open => vec![BtfProvider::Memory, BtfProvider::Sysfs],
            (None, None) if live => vec![BtfProvider::Sysfs],
            (None, None) => vec![BtfProvider::Memory],
        })
    }

    /// Whether a provider reads kernel memory, so the symbols must include [`BTF_BOUNDS`].
    pub fn reads_memory(&self) -> bool {
        self.0.contains(&BtfProvider::Memory)
    }

    /// Whether memory is the only provider (a dump's own BTF): its failures are the run's.
    pub fn only_memory(&self) -> bool {
        self.0 == [BtfProvider::Memory]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(transparent)]
    Load(#[from] BtfLoadError),
    #[error(transparent)]
    Vmlinux(#[from] VmlinuxError),
    #[error("{0}: has no .BTF section (built without CONFIG_DEBUG_INFO_BTF?); pass --btf")]
    VmlinuxNoBtf(PathBuf),
    #[error(
        "{path}: no BTF in the dump ({why}); pass --btf with this kernel's BTF (kernels before 5.x, or built \
         without CONFIG_DEBUG_INFO_BTF)"
    )]
    NoMemoryBtf { path: PathBuf, why: String },
    #[error("no BTF source was tried")]
    Empty,
}

/// What memory-reading providers need: the memory, its symbols, and the file read (for messages).
pub struct MemoryBtf<'a> {
    pub mem: &'a dyn Memory,
    pub symbols: Option<&'a Symbols>,
    pub target: &'a Path,
    /// The running kernel's memory (its sysfs BTF, when there, must be as long).
    pub live: bool,
}

/// Parsed BTF and where it came from.
pub struct FoundBtf {
    pub btf: Btf,
    pub source: String,
}

/// Loads the BTF through `chain`: the first provider that gives it wins; the last failure is the error.
pub fn load(chain: &BtfChain, memory: Option<&MemoryBtf>) -> Result<FoundBtf, BtfError> {
    let mut last = BtfError::Empty;
    for p in &chain.0 {
        match load_one(p, memory) {
            Ok(found) => return Ok(found),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn load_one(p: &BtfProvider, memory: Option<&MemoryBtf>) -> Result<FoundBtf, BtfError> {
    match p {
        BtfProvider::File(path) => Ok(FoundBtf {
            btf: load_file(path)?.btf,
            source: path.display().to_string(),
        }),
        BtfProvider::Sysfs => Ok(FoundBtf {
            btf: load_file(Path::new(SYSFS_BTF))?.btf,
            source: SYSFS_BTF.into(),
        }),
        BtfProvider::Vmlinux(vm) => {
            let v = Vmlinux::open(vm)?;
            let bytes = v.btf()?.ok_or_else(|| BtfError::VmlinuxNoBtf(vm.clone()))?;
            Ok(FoundBtf {
                btf: parse_bytes(bytes, vm)?,
                source: format!("{} (.BTF)", vm.display()),
            })
        }
        BtfProvider::Memory => {
            let m = memory.ok_or_else(|| BtfError::NoMemoryBtf {
                path: PathBuf::new(),
                why: "no memory to read it from".into(),
            })?;
            let (btf, how) = memory_btf(m)?;
            Ok(FoundBtf {
                btf,
                source: format!("{} ({how})", m.target.display()),
            })
        }
    }
}

/// The kernel's BTF, read out of memory between `__start_BTF` and `__stop_BTF`. Live, its length must be the
/// size of `/sys/kernel/btf/vmlinux` (which the kernel sets to the same bounds), when that file exists.
/// Also says how its bounds were found.
fn memory_btf(m: &MemoryBtf) -> Result<(Btf, &'static str), BtfError> {
    let no_btf = |why: String| BtfError::NoMemoryBtf {
        path: m.target.to_path_buf(),
        why,
    };
    let [start_name, stop_name] = BTF_BOUNDS;
    let (start, stop, how) = match (
        m.symbols.and_then(|s| s.get(start_name)),
        m.symbols.and_then(|s| s.get(stop_name)),
    ) {
        (Some(start), Some(stop)) => (start, stop, "__start_BTF..__stop_BTF"),
        // Kernels built without CONFIG_KALLSYMS_ALL (Debian's arm64 6.1) list no data symbols; the BTF is
        // then found by its header in the read-only data between the text and the init sections.
        _ => {
            let (start, stop) = scan_for_btf(m).map_err(|why| {
                no_btf(format!(
                    "the symbol source has no __start_BTF/__stop_BTF, and {why}"
                ))
            })?;
            (
                start,
                stop,
                "BTF header found between _etext and __init_begin",
            )
        }
    };
    let len = stop
        .checked_sub(start)
        .filter(|&l| l > 0 && l <= MAX_MEMORY_BTF)
        .ok_or_else(|| {
            no_btf(format!(
                "__start_BTF {start:#x} .. __stop_BTF {stop:#x} is not a sane range"
            ))
        })?;
    if m.live
        && let Ok(meta) = std::fs::metadata(SYSFS_BTF)
        && meta.len() != len
    {
        return Err(no_btf(format!(
            "__start_BTF..__stop_BTF holds {len} bytes, {SYSFS_BTF} {}",
            meta.len()
        )));
    }
    // The header first: a range that a damaged dump's symbols make up is refused before megabytes are
    // allocated and read for it.
    let mut head = [0u8; super::HEADER_LEN];
    m.mem
        .read(start, &mut head)
        .map_err(|e| no_btf(format!("reading its header failed: {e}")))?;
    super::check_header(&head, len, m.target)?;
    let started = std::time::Instant::now();
    let mut read_took = None;
    let btf = super::parse_filled(usize::try_from(len).unwrap_or(0), m.target, |bytes| {
        let r = m
            .mem
            .read_large(start, bytes)
            .map_err(|e| no_btf(format!("reading it failed: {e}")));
        read_took = Some(started.elapsed());
        r
    })?;
    if std::env::var_os("SYNQ_TIMING").is_some_and(|v| v != "0")
        && let Some(read) = read_took
    {
        // The part of the btf-load phase that is reading memory (the rest: the parser's pass over every
        // type, and the struct index's).
        eprintln!(
            "synq timing:   (btf-load: {len} bytes allocated and read from memory in {:.2} ms, parsed in {:.2} ms)",
            read.as_secs_f64() * 1e3,
            started.elapsed().saturating_sub(read).as_secs_f64() * 1e3
        );
    }
    Ok((btf, how))
}

/// The image marks between which read-only data (and so the `.BTF` section) lies, when kallsyms lists only
/// functions: `_etext` (end of text) and `__init_begin` (start of the init sections); x86_64 and arm64 both
/// place RO_DATA between them.
pub const RODATA_MARKS: [&str; 2] = ["_etext", "__init_begin"];
/// Bytes read at a time while looking for the BTF header.
const SCAN_CHUNK: usize = 1 << 20;

/// `(start, stop)` of the kernel's BTF, found by its header between [`RODATA_MARKS`]: the first 4-byte
/// aligned header (magic 0xeB9F, version 1, flags 0) whose sections fit the range and parse as a header.
/// Reads at most [`MAX_MEMORY_BTF`] bytes.
fn scan_for_btf(m: &MemoryBtf) -> Result<(u64, u64), String> {
    let [from_name, to_name] = RODATA_MARKS;
    let (Some(from), Some(to)) = (
        m.symbols.and_then(|s| s.get(from_name)),
        m.symbols.and_then(|s| s.get(to_name)),
    ) else {
        return Err(format!(
            "no {from_name}/{to_name} to look for it between either"
        ));
    };
    let span = to
        .checked_sub(from)
        .filter(|&l| l >= super::HEADER_LEN as u64 && l <= MAX_MEMORY_BTF)
        .ok_or_else(|| format!("{from_name} {from:#x} .. {to_name} {to:#x} is not a sane range"))?;
    let mut chunk = vec![0u8; SCAN_CHUNK];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(SCAN_CHUNK as u64)).unwrap_or(SCAN_CHUNK);
        let buf = chunk.get_mut(..n).unwrap_or_default();
        m.mem
            .read_large(at, buf)
            .map_err(|e| format!("reading {from_name}..{to_name} failed: {e}"))?;
        let mut i = 0usize;
        while i + super::HEADER_LEN <= n {
            let head = buf.get(i..i + super::HEADER_LEN).unwrap_or_default();
            if head.starts_with(&[0x9f, 0xeb, 0x01, 0x00]) {
                let u32_at = |o: usize| {
                    head.get(o..o + 4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
                };
                let len = u32_at(4) + (u32_at(8) + u32_at(12)).max(u32_at(16) + u32_at(20));
                let start = at + i as u64;
                if start + len <= to
                    && len > super::HEADER_LEN as u64
                    && super::check_header(head, len, m.target).is_ok()
                {
                    return Ok((start, start + len));
                }
            }
            i += 4;
        }
        // Overlap by a header, so one cut by the chunk's end is seen whole in the next.
        if n < SCAN_CHUNK {
            break;
        }
        at += (SCAN_CHUNK - super::HEADER_LEN) as u64 & !3;
    }
    Err(format!(
        "no BTF header in the {span} bytes of {from_name}..{to_name} (a kernel built without \
         CONFIG_DEBUG_INFO_BTF?)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::ReadError;
    use std::cell::Cell;

    /// Memory of zeros that counts the bytes read.
    struct Zeros(Cell<usize>);

    impl Memory for Zeros {
        fn read(&self, _addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            self.0.set(self.0.get() + buf.len());
            buf.fill(0);
            Ok(())
        }
    }

    /// A __start_BTF..__stop_BTF range that holds no BTF costs a header read, not the range's size.
    #[test]
    fn a_range_without_btf_is_refused_from_its_header() {
        let mem = Zeros(Cell::new(0));
        let symbols = Symbols {
            addrs: [
                ("__start_BTF", 0x1000u64),
                ("__stop_BTF", 0x1000 + (48 << 20)),
            ]
            .into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect(),
            source: String::new(),
            listed_in: PathBuf::new(),
            link_time: false,
        };
        let m = MemoryBtf {
            mem: &mem,
            symbols: Some(&symbols),
            target: Path::new("dump"),
            live: false,
        };
        let err = match memory_btf(&m) {
            Ok(_) => String::from("parsed"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("not raw BTF"), "{err}");
        assert_eq!(mem.0.get(), 24, "{err}");
    }

    fn marks(etext: u64, init_begin: u64) -> Symbols {
        Symbols {
            addrs: [("_etext", etext), ("__init_begin", init_begin)]
                .into_iter()
                .map(|(n, a)| (n.to_string(), a))
                .collect(),
            source: String::new(),
            listed_in: PathBuf::new(),
            link_time: false,
        }
    }

    /// Without __start_BTF/__stop_BTF (no CONFIG_KALLSYMS_ALL), the BTF is found by its header between
    /// _etext and __init_begin, past decoy magics whose headers do not hold, and across a chunk boundary.
    #[test]
    fn btf_is_found_by_its_header_between_etext_and_init_begin() {
        let xz = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cilium-ebpf-7.1-x86_64.btf.xz"
        ))
        .unwrap();
        let raw = super::super::decompress_xz(&xz, Path::new("fixture")).unwrap();
        let base = 0xffff_8000_0900_0000u64;
        // The BTF straddles the first 1 MiB read; decoys before it: a bare magic, and a header whose
        // lengths run past __init_begin.
        let at = (SCAN_CHUNK - 8) as u64;
        let mut mem = crate::memory::Flat::zeroed(base, at as usize + raw.len() + 4096);
        mem.bytes[0x100..0x104].copy_from_slice(&[0x9f, 0xeb, 0x01, 0x00]);
        mem.bytes[0x200..0x200 + 24].copy_from_slice(&raw[..24]);
        mem.bytes[0x200 + 12..0x200 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        mem.bytes[at as usize..at as usize + raw.len()].copy_from_slice(&raw);
        let end = base + mem.bytes.len() as u64;
        let symbols = marks(base, end);
        let m = MemoryBtf {
            mem: &mem,
            symbols: Some(&symbols),
            target: Path::new("dump"),
            live: false,
        };
        assert_eq!(
            scan_for_btf(&m),
            Ok((base + at, base + at + raw.len() as u64))
        );
        let (btf, how) = memory_btf(&m).unwrap();
        assert!(how.contains("_etext and __init_begin"), "{how}");
        assert_eq!(super::super::resolve(&btf).unwrap().hashinfo_size, 128);
        // Cut short of its end: not found.
        let short = marks(base, base + at + raw.len() as u64 - 1);
        let m = MemoryBtf {
            symbols: Some(&short),
            ..m
        };
        assert!(scan_for_btf(&m).unwrap_err().contains("no BTF header"));
    }
}
