//! Fuzz entry points: one function per `cargo fuzz` target (`fuzz/fuzz_targets/<name>.rs` calls the function
//! of the same name), shared with the stable replay test (`tests/fuzz_replay.rs`), which runs every seed and
//! every regression file through them. Not part of synq's interface.
//!
//! Each function takes the fuzzer's bytes, drives one parser of untrusted input through synq's public API the
//! way a run of synq would, and must return on every input: no panic, no hang, bounded memory. Each returns
//! what it reached (`Ok(n)`: the input was accepted and `n` counts what was found or read; `Err`: why it was
//! refused), so the replay test can assert that real inputs are still read; the fuzz targets ignore it.
//!
//! Inputs that are files (BTF, dumps, snapshots, VMCOREINFO text) are the file's bytes. Inputs that are
//! memory are carved from the bytes:
//! - *regions* ([`Regions`]): records `{address: u64 le, length: u32 le, bytes[length]}` until the input
//!   ends (a short last record keeps the bytes that are there), at most [`MAX_REGIONS`]; a read is served
//!   where regions cover it, and faults elsewhere. [`encode_regions`] writes them.
//! - [`kallsyms`]: `{text_len: u16 le, VMCOREINFO text[text_len]}`, then kernel virtual memory as regions.
//! - [`x86_64_walk`]: a [`X86_HEADER`]-byte header (top table, `phys_base`, SME mask, paging levels, image
//!   size, eight addresses to translate; see [`x86_64_header`]), then physical memory as regions.
//! - [`aarch64_walk`]: an [`A64_HEADER`]-byte header (page size, VA_BITS, T1SZ, top table,
//!   `kimage_voffset`, KERNELPACMASK, eight addresses; see [`aarch64_header`]), then physical memory as
//!   regions.
//! - [`walk`]: one byte choosing a layout (real BTF, [`WALK_LAYOUTS`]), then kernel
//!   virtual memory as regions; `tcp_hashinfo` is at the first region's address.
//! - [`discover`]: physical memory as regions.
//! - [`symbols_text`]: the text of a `/proc/kallsyms` or System.map file.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use crate::arch::aarch64::{Aarch64, Config as A64Config};
use crate::arch::x86_64::{DEFAULT_KERNEL_IMAGE_SIZE, START_KERNEL_MAP, X86_64};
use crate::arch::{self, Machine, Translate, Translated};
use crate::btf::{self, Layout};
use crate::memory::{Memory, PhysMemory, ReadError, read_split};
use crate::source::{self, OpenOptions, lime::Lime};
use crate::symbols::kallsyms_mem::KallsymsTables;
use crate::vmcoreinfo::{self, VmcoreInfo};

/// Most regions carved from one input.
pub const MAX_REGIONS: usize = 1024;
/// Bytes of one region record's header.
pub const REGION_HEADER: usize = 12;
/// Pages read from each physical range of an opened dump or snapshot, and ranges visited.
const PAGES_PER_RANGE: u64 = 4;
const RANGES_READ: usize = 16;
const PAGE: u64 = 4096;

/// The names synq looks up in kallsyms (`tcp_hashinfo`, the BTF section), and validators.
const KALLSYMS_NAMES: [&str; 6] = [
    "tcp_hashinfo",
    "__start_BTF",
    "__stop_BTF",
    "init_net",
    "_stext",
    "init_uts_ns",
];

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn le_u64(data: &[u8], at: usize) -> u64 {
    data.get(at..at.saturating_add(8))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Memory carved from fuzz bytes: `(address, bytes)` regions, searched in order (the first that holds an
/// address serves it).
#[derive(Clone, Debug, Default)]
pub struct Regions<'a> {
    pub list: Vec<(u64, &'a [u8])>,
}

impl<'a> Regions<'a> {
    /// Parses region records from `data` (see the module documentation).
    pub fn parse(mut data: &'a [u8]) -> Regions<'a> {
        let mut list = Vec::new();
        while list.len() < MAX_REGIONS {
            let Some((head, rest)) = data.split_at_checked(REGION_HEADER) else {
                break;
            };
            let addr = le_u64(head, 0);
            let len = head
                .get(8..12)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes);
            let len = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
            let (bytes, rest) = rest.split_at(len);
            list.push((addr, bytes));
            data = rest;
        }
        Regions { list }
    }

    /// The ranges the regions cover (unsorted, possibly overlapping; a region running past 2^64 is cut).
    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.list
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|&(a, b)| a..a.saturating_add(b.len() as u64))
            .collect()
    }

    /// The bytes at `at` up to the end of the first region holding `at`.
    fn piece(&self, at: u64) -> Option<&'a [u8]> {
        self.list.iter().find_map(|&(base, bytes)| {
            let off = usize::try_from(at.checked_sub(base)?).ok()?;
            bytes.get(off..).filter(|rest| !rest.is_empty())
        })
    }

    fn read_with(
        &self,
        addr: u64,
        buf: &mut [u8],
        fault: impl Fn(u64) -> ReadError,
    ) -> Result<(), ReadError> {
        read_split(addr, buf, |at, rest| {
            let src = self.piece(at).ok_or_else(|| fault(at))?;
            let n = src.len().min(rest.len());
            match (rest.get_mut(..n), src.get(..n)) {
                (Some(dst), Some(src)) => dst.copy_from_slice(src),
                _ => return Err(fault(at)),
            }
            Ok(n)
        })
    }
}

impl Memory for Regions<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.read_with(addr, buf, |addr| ReadError::NotMapped { addr })
    }
}

impl PhysMemory for Regions<'_> {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.read_with(paddr, buf, |paddr| ReadError::NotInDump { paddr })
    }
}

/// Region records for `regions`, as [`Regions::parse`] reads them (for seeds). A region longer than
/// `u32::MAX` bytes is cut.
pub fn encode_regions(regions: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(addr, bytes) in regions {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&addr.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
    }
    out
}

/// BTF layout resolution: `btf::parse_bytes` (raw or xz), then `btf::resolve` and the layout's JSON.
/// `Ok(number of members in the layout's JSON)`.
pub fn btf(data: &[u8]) -> Result<u64, String> {
    let parsed = btf::parse_bytes(data, Path::new("fuzz-input.btf")).map_err(err)?;
    let layout = btf::resolve(&parsed).map_err(err)?;
    let json = layout.to_json();
    let _ = (layout.era(), layout.table_name());
    Ok(json.as_object().map_or(0, |o| o.len() as u64))
}

/// Opens `data` as a dump or snapshot (recognised by content: ELF, kdump, flattened, LiME, AVML), asks it what
/// it knows, reads the first pages of its ranges, then translates through its VMCOREINFO (if any) and reads
/// `init_uts_ns`. `Ok(pages read)`.
fn image(data: &[u8]) -> Result<u64, String> {
    let img = source::open_bytes(
        Path::new("fuzz-input"),
        data.to_vec(),
        OpenOptions::default(),
    )
    .map_err(err)?;
    let _ = (
        img.format().to_string(),
        img.machine(),
        img.page_size(),
        img.warnings().len(),
        img.kdump_info().map(|k| k.signature.len()),
        img.elf_segments().map(<[_]>::len),
        img.flattened_records(),
        img.file_len(),
    );
    img.release_pages();
    let backed = img.backed_ranges();
    let ranges = img.phys_ranges();
    let mut read = read_pages(&img, &ranges);
    read = read.saturating_add(read_pages(&img, &backed));
    if let Some(text) = img.vmcoreinfo() {
        let info = VmcoreInfo::parse(text);
        read = read.saturating_add(translated_reads(&img, &info, img.machine().as_ref()));
    }
    Ok(read)
}

/// Reads the first [`PAGES_PER_RANGE`] pages and the last page of the first [`RANGES_READ`] ranges, and a
/// read across the end of each; the number of page reads that succeeded.
fn read_pages(phys: &dyn PhysMemory, ranges: &[Range<u64>]) -> u64 {
    let mut ok = 0u64;
    let mut buf = vec![0u8; PAGE as usize];
    for r in ranges.iter().take(RANGES_READ) {
        let last = r.end.saturating_sub(PAGE).max(r.start);
        let firsts = (0..PAGES_PER_RANGE).filter_map(|i| r.start.checked_add(i.checked_mul(PAGE)?));
        for at in firsts.filter(|&a| a < r.end).chain([last]) {
            if phys.read_phys(at, &mut buf).is_ok() {
                ok = ok.saturating_add(1);
            }
        }
        // Straddling the end: fails or reads into the next range.
        let _ = phys.read_phys(r.end.saturating_sub(8), &mut buf);
    }
    ok
}

/// Translates through the kernel `info` describes and reads `init_uts_ns` and `_stext`, then validates the
/// note as the VMCOREINFO scan would. The number of reads that succeeded.
fn translated_reads(phys: &dyn PhysMemory, info: &VmcoreInfo, machine: Option<&Machine>) -> u64 {
    let Ok(arch) = arch::from_vmcoreinfo(info, machine) else {
        return 0;
    };
    let _ = arch.facts();
    let mem = Translated::new(phys, arch);
    let mut ok = 0u64;
    let mut buf = [0u8; 512];
    for name in ["init_uts_ns", "_stext", "tcp_hashinfo"] {
        if let Some(addr) = info.symbol(name)
            && mem.read(addr, &mut buf).is_ok()
        {
            ok = ok.saturating_add(1);
        }
    }
    let _ = crate::discover::validate(phys, info, machine);
    ok
}

/// ELF vmcores: the ELF header, program headers and notes (`source::open_bytes`), then page reads.
pub fn elf(data: &[u8]) -> Result<u64, String> {
    image(data)
}

/// kdump-compressed dumps: the header, sub-header, bitmaps and page descriptors, then page reads (decompressing
/// pages).
pub fn kdump(data: &[u8]) -> Result<u64, String> {
    image(data)
}

/// makedumpfile's flattened stream: its record index, then the ELF or kdump file it rebuilds, then page reads.
pub fn flattened(data: &[u8]) -> Result<u64, String> {
    image(data)
}

/// A LiME or AVML snapshot through `Lime::parse` (the record walk, AVML's Snappy frame index), its ranges and
/// page reads (decompressing AVML chunks). `Ok(pages read)`.
fn snapshot(data: &[u8]) -> Result<u64, String> {
    let lime = Lime::parse(data).map_err(err)?;
    let _ = (
        lime.format().to_string(),
        lime.warnings().len(),
        lime.records(),
    );
    let ranges = lime.phys_ranges();
    let read = read_pages(&lime, &ranges);
    let _ = lime.cache_usage();
    Ok(read)
}

/// LiME snapshots.
pub fn lime(data: &[u8]) -> Result<u64, String> {
    snapshot(data)
}

/// AVML snapshots.
pub fn avml(data: &[u8]) -> Result<u64, String> {
    snapshot(data)
}

/// VMCOREINFO: the text parsed as such (`VmcoreInfo::parse` and every accessor), the bytes searched as an ELF
/// note area (`vmcoreinfo::find_in_notes`), and the x86_64 configuration read from each. `Ok(entries)`.
pub fn vmcoreinfo(data: &[u8]) -> Result<u64, String> {
    let mut entries = 0u64;
    let text = String::from_utf8_lossy(data);
    let texts = [Some(text.into_owned()), vmcoreinfo::find_in_notes(data)];
    for text in texts.into_iter().flatten() {
        let info = VmcoreInfo::parse(&text);
        let _ = (
            info.symbol_names().count(),
            info.kernel_offset(),
            info.osrelease(),
            info.build_id(),
            info.page_size(),
            info.malformed().len(),
            info.duplicates().len(),
            info.number("phys_base"),
            info.offset("uts_namespace.name"),
            info.size("page"),
            info.length("mem_section"),
            info.symbol("init_top_pgt"),
        );
        let _ = crate::arch::x86_64::paging_levels(&info);
        // x86_64 (`X86_64::from_vmcoreinfo`) unless the keys say arm64.
        if let Ok(arch) = arch::from_vmcoreinfo(&info, None) {
            let _ = arch.facts();
        }
        entries = entries.saturating_add(info.len() as u64);
    }
    Ok(entries)
}

/// The in-memory kallsyms decoder: `KallsymsTables::new` with a VMCOREINFO text carved from the input over
/// kernel memory carved from the rest, then `lookup_many` of the names synq looks up, a name no kernel has
/// (a miss: the linear pass), and, when the names are sorted, the linear pass alone
/// (`without_sorted_names`), which must agree with the binary search. `Ok(names found)` by the first lookup.
pub fn kallsyms(data: &[u8]) -> Result<u64, String> {
    let len = data
        .get(..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_le_bytes);
    let rest = data.get(2..).unwrap_or_default();
    let (text, mem) = rest.split_at(usize::from(len).min(rest.len()));
    let info = VmcoreInfo::parse(&String::from_utf8_lossy(text));
    let mem = Regions::parse(mem);
    let tables = KallsymsTables::new(&mem, &info).map_err(err)?;
    let _ = (tables.num_syms(), tables.sorted_note().len());
    let found = tables.lookup_many(&mem, &KALLSYMS_NAMES).map_err(err)?;
    let _ = tables.lookup(&mem, "no_such_symbol_in_any_kernel");
    let _ = (tables.encoding(), tables.stats());
    if tables.has_sorted_names() {
        let linear = tables.without_sorted_names();
        // The linear pass is the reference: what both find must be at the same address.
        if let Ok(again) = linear.lookup_many(&mem, &KALLSYMS_NAMES)
            && let Some((name, _)) = found
                .iter()
                .find(|&(name, a)| again.get(name).is_some_and(|b| b != a))
        {
            return Err(format!(
                "the sorted and the linear lookups disagree on {name}"
            ));
        }
    }
    Ok(found.len() as u64)
}

/// Bytes of [`x86_64_walk`]'s header.
pub const X86_HEADER: usize = 96;

/// The x86_64 configuration a [`x86_64_walk`] input starts with, and the addresses it translates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X86Header {
    pub top_table: u64,
    pub phys_base: u64,
    /// 0: no SME.
    pub sme_mask: u64,
    /// 4 or 5.
    pub levels: u8,
    /// In pages; 0: the default (512 MiB).
    pub image_pages: u32,
    pub addrs: [u64; 8],
}

impl X86Header {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(X86_HEADER);
        out.extend_from_slice(&self.top_table.to_le_bytes());
        out.extend_from_slice(&self.phys_base.to_le_bytes());
        out.extend_from_slice(&self.sme_mask.to_le_bytes());
        out.push(self.levels);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.image_pages.to_le_bytes());
        for a in self.addrs {
            out.extend_from_slice(&a.to_le_bytes());
        }
        out
    }
}

/// Reads the header of an [`x86_64_walk`] input; `None` when the input is shorter.
pub fn x86_64_header(data: &[u8]) -> Option<X86Header> {
    let head = data.get(..X86_HEADER)?;
    let mut addrs = [0u64; 8];
    for (i, a) in addrs.iter_mut().enumerate() {
        *a = le_u64(head, 32 + 8 * i);
    }
    Some(X86Header {
        top_table: le_u64(head, 0),
        phys_base: le_u64(head, 8),
        sme_mask: le_u64(head, 16),
        levels: *head.get(24)?,
        image_pages: head
            .get(28..32)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes),
        addrs,
    })
}

/// The x86_64 page-table walk over fuzzed physical memory: `X86_64::new` with the header's configuration,
/// then `lookup` of the header's addresses (each twice: the second from the translation cache) and of fixed
/// ones in every part of the address space, reads through `Translated`, and `verify` of the first address.
/// `Ok(successful lookups)`.
pub fn x86_64_walk(data: &[u8]) -> Result<u64, String> {
    let h = x86_64_header(data).ok_or("shorter than the header")?;
    let phys = Regions::parse(data.get(X86_HEADER..).unwrap_or_default());
    let size = if h.image_pages == 0 {
        DEFAULT_KERNEL_IMAGE_SIZE
    } else {
        u64::from(h.image_pages).saturating_mul(PAGE)
    };
    let image = START_KERNEL_MAP..START_KERNEL_MAP.saturating_add(size);
    let sme = (h.sme_mask != 0).then_some(h.sme_mask);
    let levels = if h.levels & 1 == 1 { 5 } else { 4 };
    let arch = X86_64::new(h.top_table, levels, h.phys_base, sme, image).map_err(err)?;
    const FIXED: [u64; 8] = [
        0,
        0x0000_7fff_ffff_f000,
        0xffff_8880_0000_0000,
        0xff11_0000_0000_0000,
        0xffff_c900_0000_0000,
        0xffff_ea00_0000_0000,
        0xffff_ffff_8100_0000,
        u64::MAX,
    ];
    let _ = (arch.cache_stats(), arch.cache_occupancy());
    Ok(drive_translation(arch, &phys, &h.addrs, &FIXED))
}

/// What both walk targets do with a translation: `lookup` of `addrs` (each twice: the second from the
/// cache) and of `fixed`, `verify` of the first address, reads through `Translated`. The successful lookups.
fn drive_translation<A: Translate>(
    arch: A,
    phys: &Regions,
    addrs: &[u64; 8],
    fixed: &[u64],
) -> u64 {
    let mut ok = 0u64;
    for addr in addrs.iter().chain(addrs.iter()).chain(fixed.iter()) {
        if arch.lookup(phys, *addr).is_ok() {
            ok = ok.saturating_add(1);
        }
    }
    let [first, ..] = *addrs;
    let _ = arch.verify(phys, first);
    let mem = Translated::new(phys, arch);
    let mut buf = vec![0u8; 2 * PAGE as usize];
    for addr in addrs {
        let _ = mem.read(*addr, &mut buf);
    }
    ok
}

/// Bytes of [`aarch64_walk`]'s header.
pub const A64_HEADER: usize = 96;

/// The arm64 configuration an [`aarch64_walk`] input starts with, and the addresses it translates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct A64Header {
    /// PAGESIZE (4096, 16384 or 65536 are accepted).
    pub page_size: u32,
    /// The built VA_BITS.
    pub va_bits: u8,
    /// TCR_EL1_T1SZ; 0: absent.
    pub t1sz: u8,
    pub top_table: u64,
    pub kimage_voffset: u64,
    /// KERNELPACMASK; 0: none.
    pub pac_mask: u64,
    pub addrs: [u64; 8],
}

impl A64Header {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(A64_HEADER);
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.push(self.va_bits);
        out.push(self.t1sz);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.top_table.to_le_bytes());
        out.extend_from_slice(&self.kimage_voffset.to_le_bytes());
        out.extend_from_slice(&self.pac_mask.to_le_bytes());
        for a in self.addrs {
            out.extend_from_slice(&a.to_le_bytes());
        }
        out
    }
}

/// Reads the header of an [`aarch64_walk`] input; `None` when the input is shorter.
pub fn aarch64_header(data: &[u8]) -> Option<A64Header> {
    let head = data.get(..A64_HEADER)?;
    let mut addrs = [0u64; 8];
    for (i, a) in addrs.iter_mut().enumerate() {
        *a = le_u64(head, 32 + 8 * i);
    }
    Some(A64Header {
        page_size: head
            .get(0..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes),
        va_bits: *head.get(4)?,
        t1sz: *head.get(5)?,
        top_table: le_u64(head, 8),
        kimage_voffset: le_u64(head, 16),
        pac_mask: le_u64(head, 24),
        addrs,
    })
}

/// The arm64 page-table walk over fuzzed physical memory: `Aarch64::new` with the header's configuration,
/// then `lookup` of the header's addresses (each twice: the second from the translation cache) and of fixed
/// ones, reads through `Translated`, and `verify` of the first address. `Ok(successful lookups)`.
pub fn aarch64_walk(data: &[u8]) -> Result<u64, String> {
    let h = aarch64_header(data).ok_or("shorter than the header")?;
    let phys = Regions::parse(data.get(A64_HEADER..).unwrap_or_default());
    let arch = Aarch64::new(A64Config {
        page_size: u64::from(h.page_size),
        va_bits: u32::from(h.va_bits),
        t1sz: (h.t1sz != 0).then_some(u32::from(h.t1sz)),
        top_table: h.top_table,
        kimage_voffset: h.kimage_voffset,
        phys_offset: None,
        pac_mask: (h.pac_mask != 0).then_some(h.pac_mask),
    })
    .map_err(err)?;
    const FIXED: [u64; 6] = [
        0,
        0x0000_ffff_ffff_f000,
        0xfff0_0000_0000_0000,
        0xffff_0000_0000_0000,
        0xffff_8000_0800_0000,
        u64::MAX,
    ];
    let _ = (arch.cache_stats(), arch.cache_occupancy());
    Ok(drive_translation(arch, &phys, &h.addrs, &FIXED))
}

/// The BTF whose layouts [`walk`] chooses from (by the input's first byte): trimmed copies (the types
/// `btf::resolve` reads, nothing else; `examples/fuzz_seeds.rs trim-btf`) of three `tests/fixtures` files, one
/// per table and queue era and a 32-bit kernel, and of the Debian 6.1 and 6.12 test guests' BTF, whose real
/// memory the `walk` seeds hold. They are also seeds of the `btf` target; `tests/fuzz_replay.rs` checks that each
/// resolves to the layout of the file it was cut from.
pub const WALK_LAYOUTS: [&str; 5] = [
    "centos7-3.10.0-1160.el7-x86_64-trimmed.btf",
    "host-6.18.44-x86_64-trimmed.btf",
    "retis-btf-rs-6.15.1-tinyconfig-i386-trimmed.btf",
    "debian-6.12-trimmed.btf",
    "debian-6.1-trimmed.btf",
];

const WALK_BTF: [&[u8]; 5] = [
    include_bytes!("../fuzz/seeds/btf/centos7-3.10.0-1160.el7-x86_64-trimmed.btf"),
    include_bytes!("../fuzz/seeds/btf/host-6.18.44-x86_64-trimmed.btf"),
    include_bytes!("../fuzz/seeds/btf/retis-btf-rs-6.15.1-tinyconfig-i386-trimmed.btf"),
    include_bytes!("../fuzz/seeds/btf/debian-6.12-trimmed.btf"),
    include_bytes!("../fuzz/seeds/btf/debian-6.1-trimmed.btf"),
];

/// The layouts of [`WALK_LAYOUTS`], resolved once (a layout that fails to resolve is `None`).
pub fn walk_layouts() -> &'static [Option<Layout>] {
    static LAYOUTS: OnceLock<Vec<Option<Layout>>> = OnceLock::new();
    LAYOUTS.get_or_init(|| {
        WALK_LAYOUTS
            .iter()
            .zip(WALK_BTF)
            .map(|(name, bytes)| {
                let parsed = btf::parse_bytes(bytes, Path::new(name)).ok()?;
                btf::resolve(&parsed).ok()
            })
            .collect()
    })
}

/// Small bounds for one fuzzed walk.
const WALK_LIMITS: crate::walk::Limits = crate::walk::Limits {
    max_chain: 256,
    max_restarts: 2,
    max_buckets: 1024,
    max_listeners: 256,
    max_entries: Some(8192),
};

/// The listening-hash walk over fuzzed kernel memory (`walk::walk` with small limits), with the layout the
/// first byte chooses. `Ok(listeners)`.
pub fn walk(data: &[u8]) -> Result<u64, String> {
    let (&pick, rest) = data.split_first().ok_or("empty input")?;
    let layout = walk_layouts()
        .get(usize::from(pick) % WALK_LAYOUTS.len())
        .and_then(Option::as_ref)
        .ok_or("the layout did not resolve")?;
    let mem = Regions::parse(rest);
    let hashinfo = mem.list.first().map_or(0, |&(a, _)| a);
    let result = crate::walk::walk(&mem, layout, hashinfo, WALK_LIMITS).map_err(err)?;
    let _ = (result.warnings.len(), result.stats.entries);
    Ok(result.listeners.len() as u64)
}

/// The VMCOREINFO scan of fuzzed physical memory (`discover::scan`, validating every note it finds through its
/// own page tables), with a budget of 64 bytes of memory per input byte as for a file. `Ok(notes found)`.
pub fn discover(data: &[u8]) -> Result<u64, String> {
    let phys = Regions::parse(data);
    let mut ranges = phys.ranges();
    ranges.sort_by_key(|r| r.start);
    let budget = (data.len() as u64).saturating_mul(64);
    let found = crate::discover::scan(&phys, &ranges, Some(&Machine::X86_64), &|| {}, budget);
    let _ = (found.chosen(), found.more, found.unreadable_pages);
    Ok(found.found())
}

/// `/proc/kallsyms` and System.map text (`symbols::text::scan_reader`), for the names synq looks up.
/// `Ok(names found)`.
pub fn symbols_text(data: &[u8]) -> Result<u64, String> {
    let found = crate::symbols::text::scan_reader(data, &KALLSYMS_NAMES).map_err(err)?;
    Ok(found.symbols.len() as u64)
}

/// A fuzz entry point.
pub type Target = fn(&[u8]) -> Result<u64, String>;

/// Every target, by name: what `fuzz/fuzz_targets/<name>.rs` calls, for the replay test.
pub const TARGETS: [(&str, Target); 13] = [
    ("btf", btf),
    ("elf", elf),
    ("kdump", kdump),
    ("flattened", flattened),
    ("lime", lime),
    ("avml", avml),
    ("vmcoreinfo", vmcoreinfo),
    ("kallsyms", kallsyms),
    ("x86_64_walk", x86_64_walk),
    ("aarch64_walk", aarch64_walk),
    ("walk", walk),
    ("discover", discover),
    ("symbols_text", symbols_text),
];
