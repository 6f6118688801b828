//! Symbol lookup in the kernel's own, in-memory kallsyms tables, located through VMCOREINFO.
//!
//! Since 6.0 (5fd8fea935a1 "vmcoreinfo: include kallsyms symbols", f09bddbd8661 "vmcoreinfo: add
//! kallsyms_num_syms symbol") VMCOREINFO carries `SYMBOL()` entries for `kallsyms_names`, `kallsyms_num_syms`,
//! `kallsyms_token_table`, `kallsyms_token_index` and either `kallsyms_offsets` (+ `kallsyms_relative_base`
//! until 7.0) or `kallsyms_addresses`. With them a symbol is found without `/proc/kallsyms` (slow under
//! emulation, blank under `kptr_restrict`) and in crash dumps.
//!
//! # Table formats (scripts/kallsyms.c, kernel/kallsyms.c)
//! - `kallsyms_num_syms`: `unsigned int` (an `unsigned long` before 5.x; its low half reads the same on a
//!   little-endian machine, so 4 bytes are read).
//! - `kallsyms_names`: per symbol, a token count then that many token bytes. The count is one byte, or since
//!   6.1 (73bbb94466fd "kallsyms: support \"big\" kernel symbols") two when the first has bit 7 set:
//!   `(b0 & 0x7f) | b1 << 7` (ULEB128, at most 0x3fff). Before 6.1 names were under 128 bytes, so the count
//!   never reached 128 and the 6.1 rule reads old tables the same way.
//! - `kallsyms_token_index`: `u16[256]`, offsets into `kallsyms_token_table`, NUL-terminated strings. The
//!   first decoded character of a name is its type letter (`T`, `d`, ...), not part of the name.
//! - `kallsyms_markers`: `unsigned int[]`, the `kallsyms_names` offset of every 256th symbol. Not in VMCOREINFO:
//!   found from the table order (below).
//! - `kallsyms_seqs_of_names` (6.2, 60443c88f3a8): per symbol 3 bytes, big-endian, the symbol index in name
//!   order (names compared without the type letter; equal names by address). Not in VMCOREINFO either.
//!   Stable kernels may carry it too: Debian's 6.1.0-50 has it, in the 6.2–6.3 order.
//! - Addresses, four encodings ([`Encoding`]); which one is in use is not written anywhere: it is inferred
//!   from which `SYMBOL()`s exist and, where two readings are possible, by decoding a symbol VMCOREINFO also
//!   gives (`_stext`, `init_top_pgt`, `swapper_pg_dir`, `init_uts_ns`) both ways and keeping the reading
//!   that matches.
//!
//! Table order in `.rodata` (each label aligned to 8, to 4 from 7.0):
//! - until 6.1: addresses|offsets, relative_base, num_syms, names, markers, token_table, token_index;
//! - 6.2–6.3: the same with seqs_of_names between markers and token_table;
//! - 6.4+ (96f814bb6845 "scripts/kallsyms: change the output order"): num_syms, names, markers, token_table,
//!   token_index, addresses|offsets, relative_base (until 7.0), seqs_of_names.
//!
//! So the markers end where the token table (or, on 6.2–6.3, the name order) begins, and the name order
//! begins after the address table. Every such guess is checked against the names themselves before use.
//!
//! # Lookup
//! With sorted names (6.2+) a name is found by binary search: about 18 probes, each decoding one name near a
//! marker, through a small page cache. A hit is exact (the decoded name equals the wanted one). A miss is
//! confirmed by the linear pass, so a wrong guess about the tables costs time, never a wrong answer.
//!
//! The linear pass reads `kallsyms_names` in 64 KiB chunks, once, for every wanted name at a time. A name is
//! decoded lazily: the first token alone rules out almost every symbol (a per-token table of which wanted names
//! it can start), and decoding stops at the first token that no wanted name continues with.
//!
//! Like `kallsyms_lookup_name()` and `/proc/kallsyms` order, the first symbol of a name (lowest index, i.e.
//! lowest address) wins and the type letter is ignored.
//!
//! Everything read is untrusted: counts and lengths are capped, every loop is bounded by `num_syms` or a
//! constant, and address arithmetic is checked.

use std::cell::{Cell, OnceCell};
use std::collections::{HashMap, HashSet};

use crate::memory::{Memory, ReadError};
use crate::vmcoreinfo::VmcoreInfo;

/// More symbols than any kernel has (a distribution kernel has 150,000–250,000).
pub const MAX_SYMS: u32 = 4_000_000;
/// Larger than any `kallsyms_names` (2–3 MiB for 200,000 symbols); bounds the linear pass.
const MAX_NAMES_BYTES: u64 = 64 << 20;
/// The linear pass reads this much at a time.
const CHUNK: usize = 64 << 10;
/// The 2-byte token count is 14 bits.
const MAX_NAME_TOKENS: usize = 0x3fff;
/// Decoded names longer than this are not compared in full (KSYM_NAME_LEN is 512 since 6.1).
const MAX_NAME_BYTES: usize = 1024;
/// `kallsyms_token_index` entries are u16, so the token table is at most 64 KiB plus its last token.
const MAX_TOKEN_TABLE: u64 = (64 << 10) + 1024;
/// Wanted names per linear pass (one bit each in a u64 mask); more names take more passes.
const NAMES_PER_PASS: usize = 64;
/// Page size of the binary-search cache, and the most pages it holds (then it is emptied).
const PAGE: u64 = 4096;
const MAX_CACHED_PAGES: usize = 1024;
/// Equal names scanned after a binary-search hit to find the first (lowest-index) one.
const MAX_EQUAL_RUN: u32 = 64;
/// Entries of the name order checked for sortedness before it is used.
const SORT_SAMPLE: u32 = 8;

/// VMCOREINFO symbols whose addresses check the decoding. `swapper_pg_dir` is a macro for `init_top_pgt` on
/// x86_64 (so absent from kallsyms there); a validator that kallsyms lacks is simply not used. The linear
/// pass checks every one it finds (they ride along for free); the binary search stops at the first found.
const VALIDATORS: [&str; 4] = ["_stext", "init_top_pgt", "swapper_pg_dir", "init_uts_ns"];

#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error(
        "VMCOREINFO has no SYMBOL({0}): the kernel is older than 6.0 or built without CONFIG_KALLSYMS \
         (use /proc/kallsyms or pass --system-map)"
    )]
    NotInVmcoreinfo(&'static str),
    #[error("reading {what} at {addr:#x} failed: {err}")]
    Read {
        what: &'static str,
        addr: u64,
        err: ReadError,
    },
    #[error("{what} at {addr:#x} is corrupt: {detail}")]
    Corrupt {
        what: &'static str,
        addr: u64,
        detail: String,
    },
    #[error("the kallsyms tables disagree with VMCOREINFO: {0}")]
    Mismatch(String),
    #[error("cannot tell how kallsyms_offsets encodes addresses: {0}")]
    Undetermined(String),
}

/// How `kallsyms_addresses` / `kallsyms_offsets` give a symbol's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `kallsyms_addresses[i]`, an `unsigned long` (!CONFIG_KALLSYMS_BASE_RELATIVE; removed in 6.11).
    Absolute,
    /// `kallsyms_relative_base + (u32)kallsyms_offsets[i]` (4.6 to 7.0).
    BaseRelative,
    /// CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP, 4.6 to 6.15): a non-negative offset is the address
    /// (per-CPU symbols, near 0), a negative one gives `kallsyms_relative_base - 1 - offset`.
    AbsolutePercpu,
    /// 7.0+ (no `kallsyms_relative_base`): `&kallsyms_offsets[i] + (s32)kallsyms_offsets[i]`.
    PlaceRelative,
}

/// Work done by lookups so far (for measurements and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Linear passes over `kallsyms_names`.
    pub linear_passes: u32,
    /// Names decoded by the binary search.
    pub sorted_probes: u32,
    /// Bytes read from memory by lookups (not counting table setup).
    pub bytes_read: u64,
}

#[derive(Clone, Copy, Debug)]
enum AddrTable {
    Addresses(u64),
    Offsets { offsets: u64, base: Option<u64> },
}

/// Where the sorted-name fast path reads.
#[derive(Debug)]
struct Sorted {
    markers: Vec<u32>,
    markers_at: u64,
    seqs: u64,
}

/// The kernel's kallsyms tables, located through VMCOREINFO and checked. Cheap to build (a few KiB read);
/// lookups read memory through the `Memory` given to them, which must be the one the tables came from.
#[derive(Debug)]
pub struct KallsymsTables {
    names: u64,
    num_syms: u32,
    tokens: Vec<Vec<u8>>,
    table: AddrTable,
    candidates: Vec<Encoding>,
    validators: Vec<(&'static str, u64)>,
    resolved: OnceCell<Encoding>,
    sorted: Option<Sorted>,
    sorted_note: String,
    stats: Cell<LookupStats>,
}

impl KallsymsTables {
    /// Locates and checks the tables: reads `kallsyms_num_syms`, the token tables, `kallsyms_relative_base`,
    /// and, when the names are sorted (6.2+), the markers and a sample of the name order.
    pub fn new(mem: &dyn Memory, vmcoreinfo: &VmcoreInfo) -> Result<KallsymsTables, KallsymsError> {
        let sym = |name: &'static str| {
            vmcoreinfo
                .symbol(name)
                .ok_or(KallsymsError::NotInVmcoreinfo(name))
        };
        let names = sym("kallsyms_names")?;
        let num_syms_at = sym("kallsyms_num_syms")?;
        let token_table = sym("kallsyms_token_table")?;
        let token_index = sym("kallsyms_token_index")?;
        let (table, candidates) = match (
            vmcoreinfo.symbol("kallsyms_offsets"),
            vmcoreinfo.symbol("kallsyms_addresses"),
        ) {
            (Some(offsets), _) => match vmcoreinfo.symbol("kallsyms_relative_base") {
                Some(at) => {
                    let base = read_u64(mem, at, "kallsyms_relative_base")?;
                    (
                        AddrTable::Offsets {
                            offsets,
                            base: Some(base),
                        },
                        vec![Encoding::AbsolutePercpu, Encoding::BaseRelative],
                    )
                }
                None => (
                    AddrTable::Offsets {
                        offsets,
                        base: None,
                    },
                    vec![Encoding::PlaceRelative],
                ),
            },
            (None, Some(addresses)) => (AddrTable::Addresses(addresses), vec![Encoding::Absolute]),
            (None, None) => return Err(KallsymsError::NotInVmcoreinfo("kallsyms_offsets")),
        };

        let num_syms = read_u32(mem, num_syms_at, "kallsyms_num_syms")?;
        if num_syms == 0 || num_syms > MAX_SYMS {
            return Err(corrupt(
                "kallsyms_num_syms",
                num_syms_at,
                format!("{num_syms} symbols (expected 1 to {MAX_SYMS})"),
            ));
        }
        let tokens = read_tokens(mem, token_table, token_index)?;
        let validators = VALIDATORS
            .iter()
            .filter_map(|&v| vmcoreinfo.symbol(v).map(|a| (v, a)))
            .collect();

        let mut tables = KallsymsTables {
            names,
            num_syms,
            tokens,
            table,
            candidates,
            validators,
            resolved: OnceCell::new(),
            sorted: None,
            sorted_note: String::new(),
            stats: Cell::new(LookupStats::default()),
        };
        match tables.locate_sorted(mem, token_table, vmcoreinfo) {
            Ok(sorted) => {
                tables.sorted_note = format!(
                    "kallsyms_markers at {:#x}, kallsyms_seqs_of_names at {:#x} ({})",
                    sorted.markers_at,
                    sorted.seqs,
                    if Some(sorted.seqs)
                        == token_table.checked_sub(align_up(u64::from(num_syms) * 3, 8))
                    {
                        "before kallsyms_token_table: 6.2–6.3 order"
                    } else {
                        "after the address table: 6.4+ order"
                    }
                );
                tables.sorted = Some(sorted);
            }
            Err(note) => tables.sorted_note = note,
        }
        // With sorted names, the validators cost a few probes: settle the encoding now.
        if tables.sorted.is_some() {
            let hits = tables.find_validators_sorted(mem);
            if !hits.is_empty() {
                let enc = tables.resolve(mem, &hits)?;
                let _ = tables.resolved.set(enc);
            }
        }
        Ok(tables)
    }

    /// The same tables without the sorted-name fast path: every lookup is a linear pass. For measurements
    /// and for checking the linear pass against a kernel that has sorted names. Its stats start afresh.
    pub fn without_sorted_names(mut self) -> KallsymsTables {
        if self.sorted.take().is_some() {
            self.sorted_note = "sorted names switched off".into();
        }
        self.stats.set(LookupStats::default());
        self
    }

    /// Number of symbols in the tables.
    pub fn num_syms(&self) -> u32 {
        self.num_syms
    }

    /// The address encoding, once a lookup (or, with sorted names, `new`) has settled it.
    pub fn encoding(&self) -> Option<Encoding> {
        self.resolved.get().copied()
    }

    /// Whether the sorted-name fast path (6.2+) is in use; if not, [`Self::sorted_note`] says why.
    pub fn has_sorted_names(&self) -> bool {
        self.sorted.is_some()
    }

    /// Where the sorted-name tables were found, or why the fast path is not in use.
    pub fn sorted_note(&self) -> &str {
        &self.sorted_note
    }

    /// Work done by lookups so far.
    pub fn stats(&self) -> LookupStats {
        self.stats.get()
    }

    /// The address of the first symbol called `name`, `None` if the tables have none.
    pub fn lookup(&self, mem: &dyn Memory, name: &str) -> Result<Option<u64>, KallsymsError> {
        Ok(self.lookup_many(mem, &[name])?.get(name).copied())
    }

    /// The addresses of every name of `names` the tables hold (the first symbol of each name); names the
    /// tables lack are absent from the map. With sorted names each name is a binary search and only misses
    /// cost a linear pass; otherwise all names share one pass (per 64 names).
    pub fn lookup_many(
        &self,
        mem: &dyn Memory,
        names: &[&str],
    ) -> Result<HashMap<String, u64>, KallsymsError> {
        let mut seen = HashSet::new();
        let wanted: Vec<&str> = names
            .iter()
            .copied()
            // An empty or over-long name matches nothing; a name is looked for once.
            .filter(|n| !n.is_empty() && n.len() < MAX_NAME_BYTES && seen.insert(*n))
            .collect();
        let mut found: HashMap<&str, u32> = HashMap::new();
        let mut missing: Vec<&str> = Vec::new();
        let mut validator_hits: Vec<(&'static str, u64, u32)> = Vec::new();
        let unresolved = self.resolved.get().is_none();

        if let Some(sorted) = &self.sorted {
            let mut cache = PageCache::new(mem);
            let mut broken = false;
            for &n in &wanted {
                if broken {
                    missing.push(n);
                    continue;
                }
                // A hit is exact; a miss, or a name order that reads wrong, is left to the linear pass.
                match self.find_sorted(&mut cache, sorted, n.as_bytes()) {
                    Ok(Some(i)) => {
                        found.insert(n, i);
                    }
                    Ok(None) => missing.push(n),
                    Err(_) => {
                        broken = true;
                        missing.push(n);
                    }
                }
            }
            self.add_read(cache.bytes_read);
        } else {
            missing = wanted;
        }

        // The linear pass: the missing names first, then (until the encoding is settled) the validators.
        let n_missing = missing.len();
        let mut pass = missing;
        if unresolved {
            for &(v, _) in &self.validators {
                if !pass.contains(&v) {
                    pass.push(v);
                }
            }
        }
        for (c, chunk) in pass.chunks(NAMES_PER_PASS).enumerate() {
            let idx = self.scan(mem, chunk)?;
            for (k, (&n, i)) in chunk.iter().zip(idx).enumerate() {
                let Some(i) = i else { continue };
                if c * NAMES_PER_PASS + k < n_missing {
                    found.insert(n, i);
                }
                if let Some(&(v, a)) = self.validators.iter().find(|(v, _)| *v == n) {
                    validator_hits.push((v, a, i));
                }
            }
        }

        let enc = match self.resolved.get() {
            Some(&e) => e,
            None => {
                let e = self.resolve(mem, &validator_hits)?;
                let _ = self.resolved.set(e);
                e
            }
        };
        let mut out = HashMap::with_capacity(found.len());
        for (n, i) in found {
            out.insert(n.to_string(), self.address(mem, enc, i)?);
        }
        Ok(out)
    }

    fn add_read(&self, bytes: u64) {
        let mut s = self.stats.get();
        s.bytes_read = s.bytes_read.saturating_add(bytes);
        self.stats.set(s);
    }

    fn token(&self, t: u8) -> &[u8] {
        self.tokens
            .get(usize::from(t))
            .map_or(&[], |v| v.as_slice())
    }

    /// The address of symbol `idx` under `enc`.
    fn address(&self, mem: &dyn Memory, enc: Encoding, idx: u32) -> Result<u64, KallsymsError> {
        match (enc, self.table) {
            (Encoding::Absolute, AddrTable::Addresses(at)) => {
                let slot = checked_elem(at, idx, 8, "kallsyms_addresses")?;
                read_u64(mem, slot, "kallsyms_addresses")
            }
            (_, AddrTable::Offsets { offsets, base }) => {
                let slot = checked_elem(offsets, idx, 4, "kallsyms_offsets")?;
                let raw = read_u32(mem, slot, "kallsyms_offsets")? as i32;
                let base = base.unwrap_or(0);
                Ok(match enc {
                    Encoding::BaseRelative => base.wrapping_add(u64::from(raw as u32)),
                    Encoding::AbsolutePercpu if raw >= 0 => raw as u64,
                    Encoding::AbsolutePercpu => {
                        base.wrapping_sub(1).wrapping_sub(i64::from(raw) as u64)
                    }
                    Encoding::PlaceRelative => slot.wrapping_add(i64::from(raw) as u64),
                    Encoding::Absolute => {
                        return Err(KallsymsError::Undetermined(
                            "absolute encoding without kallsyms_addresses".into(),
                        ));
                    }
                })
            }
            (e, AddrTable::Addresses(_)) => Err(KallsymsError::Undetermined(format!(
                "{e:?} encoding with kallsyms_addresses"
            ))),
        }
    }

    /// Picks the one candidate encoding under which every validator found decodes to its VMCOREINFO value.
    fn resolve(
        &self,
        mem: &dyn Memory,
        hits: &[(&'static str, u64, u32)],
    ) -> Result<Encoding, KallsymsError> {
        if hits.is_empty() {
            return match self.candidates.as_slice() {
                [only] => Ok(*only),
                _ => Err(KallsymsError::Undetermined(format!(
                    "none of the VMCOREINFO symbols {VALIDATORS:?} is in kallsyms to tell base-relative \
                     from absolute-percpu"
                ))),
            };
        }
        let mut passing = Vec::new();
        let mut seen = Vec::new();
        for &enc in &self.candidates {
            let mut ok = true;
            for &(name, want, idx) in hits {
                let got = self.address(mem, enc, idx)?;
                if got != want {
                    ok = false;
                    seen.push(format!(
                        "{name} decodes to {got:#x} as {enc:?}, VMCOREINFO says {want:#x}"
                    ));
                }
            }
            if ok {
                passing.push(enc);
            }
        }
        match passing.as_slice() {
            [one] => Ok(*one),
            [] => Err(KallsymsError::Mismatch(seen.join("; "))),
            many => Err(KallsymsError::Undetermined(format!(
                "{many:?} all match the VMCOREINFO symbols"
            ))),
        }
    }

    /// The first validator found by binary search, in `VALIDATORS` order: (name, VMCOREINFO address,
    /// index). One exact 64-bit address settles the encoding; each further validator would cost another
    /// 17 or so probes (and `swapper_pg_dir` is not in x86_64's kallsyms at all).
    fn find_validators_sorted(&self, mem: &dyn Memory) -> Vec<(&'static str, u64, u32)> {
        let Some(sorted) = &self.sorted else {
            return Vec::new();
        };
        let mut cache = PageCache::new(mem);
        let hit = self.validators.iter().find_map(|&(v, a)| {
            match self.find_sorted(&mut cache, sorted, v.as_bytes()) {
                Ok(Some(i)) => Some((v, a, i)),
                _ => None,
            }
        });
        self.add_read(cache.bytes_read);
        hit.into_iter().collect()
    }

    // ---- linear pass ----

    /// One pass over `kallsyms_names`: the index of the first symbol of each wanted name (at most 64).
    fn scan(&self, mem: &dyn Memory, wanted: &[&str]) -> Result<Vec<Option<u32>>, KallsymsError> {
        let mut found: Vec<Option<u32>> = vec![None; wanted.len()];
        let count = wanted.len().min(NAMES_PER_PASS);
        let all: u64 = if count >= 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        if all == 0 {
            return Ok(found);
        }
        let wanted_b: Vec<&[u8]> = wanted.iter().take(count).map(|w| w.as_bytes()).collect();
        // For each token: the wanted names its expansion (less the type letter) can start.
        let mut first_mask = [0u64; 256];
        for (t, slot) in first_mask.iter_mut().enumerate() {
            let e = self.tokens.get(t).map_or(&[][..], |v| v.as_slice());
            *slot = match e.split_first() {
                None => all, // an empty token leaves the type letter to the next: decide later
                Some((_, rest)) => wanted_b
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.starts_with(rest))
                    .fold(0, |m, (k, _)| m | (1u64 << k)),
            };
        }

        let mut s = Stream::new(mem, self.names);
        let mut remaining = all;
        for i in 0..self.num_syms {
            let (hdr, ntok) = s.header()?;
            s.ensure(hdr + ntok)?;
            let toks = s.slice(hdr, ntok).ok_or_else(|| {
                corrupt(
                    "kallsyms_names",
                    s.addr(),
                    "name runs past the buffer".into(),
                )
            })?;
            let first = toks.first().copied().unwrap_or(0);
            let m = first_mask.get(usize::from(first)).copied().unwrap_or(all) & remaining;
            if m != 0 {
                let hit = self.match_tokens(toks, &wanted_b, m);
                let mut bits = hit;
                while bits != 0 {
                    let k = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if let Some(slot) = found.get_mut(k) {
                        *slot = Some(i);
                    }
                }
                remaining &= !hit;
                if remaining == 0 {
                    break;
                }
            }
            s.advance(hdr + ntok)?;
        }
        let mut st = self.stats.get();
        st.linear_passes = st.linear_passes.saturating_add(1);
        st.bytes_read = st.bytes_read.saturating_add(s.bytes_read);
        self.stats.set(st);
        Ok(found)
    }

    /// Which of the names in `mask` the token string `toks` decodes to exactly; stops at the first token
    /// that no remaining name continues with.
    fn match_tokens(&self, toks: &[u8], wanted: &[&[u8]], mut mask: u64) -> u64 {
        let mut pos = 0usize;
        let mut skipped_type = false;
        for &t in toks {
            let mut e = self.token(t);
            if !skipped_type {
                match e.split_first() {
                    Some((_, rest)) => {
                        e = rest;
                        skipped_type = true;
                    }
                    None => continue,
                }
            }
            if e.is_empty() {
                continue;
            }
            let end = pos + e.len();
            let mut bits = mask;
            while bits != 0 {
                let k = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let ok = wanted.get(k).and_then(|w| w.get(pos..end)) == Some(e);
                if !ok {
                    mask &= !(1u64 << k);
                }
            }
            if mask == 0 {
                return 0;
            }
            pos = end;
        }
        let mut exact = 0;
        let mut bits = mask;
        while bits != 0 {
            let k = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if wanted.get(k).is_some_and(|w| w.len() == pos) {
                exact |= 1u64 << k;
            }
        }
        exact
    }

    /// The decoded name (type letter dropped, at most `MAX_NAME_BYTES`) of a token string.
    fn decode(&self, toks: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        let mut skipped_type = false;
        for &t in toks {
            let mut e = self.token(t);
            if !skipped_type {
                match e.split_first() {
                    Some((_, rest)) => {
                        e = rest;
                        skipped_type = true;
                    }
                    None => continue,
                }
            }
            let room = MAX_NAME_BYTES.saturating_sub(out.len());
            out.extend_from_slice(e.get(..e.len().min(room)).unwrap_or(&[]));
            if out.len() >= MAX_NAME_BYTES {
                break;
            }
        }
        out
    }

    // ---- sorted names (6.2+) ----

    /// Finds `kallsyms_markers` and `kallsyms_seqs_of_names` from the table order and checks them.
    fn locate_sorted(
        &self,
        mem: &dyn Memory,
        token_table: u64,
        vmcoreinfo: &VmcoreInfo,
    ) -> Result<Sorted, String> {
        let n = u64::from(self.num_syms);
        let cnt = n.div_ceil(256);
        let seqs_len = n * 3;
        let mut seq_cands: Vec<u64> = Vec::new();
        // 6.4+: after the address table (and kallsyms_relative_base until 7.0).
        match self.table {
            AddrTable::Offsets { base: Some(_), .. } => {
                if let Some(rb) = vmcoreinfo.symbol("kallsyms_relative_base") {
                    seq_cands.extend(rb.checked_add(8).map(|e| align_up(e, 8)));
                }
            }
            AddrTable::Offsets {
                offsets,
                base: None,
            } => {
                seq_cands.extend(offsets.checked_add(n * 4).map(|e| align_up(e, 4)));
            }
            AddrTable::Addresses(a) => {
                seq_cands.extend(a.checked_add(n * 8).map(|e| align_up(e, 8)));
            }
        }
        // 6.2–6.3: right before the token table.
        let before_tt = token_table.checked_sub(align_up(seqs_len, 8));
        seq_cands.extend(before_tt);

        // Markers end where the token table begins (≤ 6.1, 6.4+) or where the 6.2–6.3 name order begins.
        let mut marker_cands: Vec<u64> = Vec::new();
        for end in [Some(token_table), before_tt].into_iter().flatten() {
            for len in [align_up(cnt * 4, 8), cnt * 4] {
                if let Some(m) = end.checked_sub(len)
                    && !marker_cands.contains(&m)
                {
                    marker_cands.push(m);
                }
            }
        }
        let mut cache = PageCache::new(mem);
        let (markers, markers_at) = marker_cands
            .iter()
            .find_map(|&at| {
                self.check_markers(&mut cache, at, cnt)
                    .ok()
                    .map(|m| (m, at))
            })
            .ok_or_else(|| "kallsyms_markers not found next to kallsyms_token_table".to_string())?;
        let mut sorted = Sorted {
            markers,
            markers_at,
            seqs: 0,
        };
        for &at in &seq_cands {
            sorted.seqs = at;
            if self.check_seqs(&mut cache, &sorted).is_ok() {
                return Ok(sorted);
            }
        }
        Err("no sorted name order (kallsyms_seqs_of_names, 6.2+) found".to_string())
    }

    /// Reads `cnt` markers at `at`: the first is 0, they increase, and 256 names from the start of
    /// `kallsyms_names` end exactly at the second.
    fn check_markers(
        &self,
        cache: &mut PageCache,
        at: u64,
        cnt: u64,
    ) -> Result<Vec<u32>, KallsymsError> {
        let len = usize::try_from(cnt * 4)
            .map_err(|_| corrupt("kallsyms_markers", at, "too many".into()))?;
        let mut raw = vec![0u8; len];
        cache
            .read(at, &mut raw)
            .map_err(|err| read_err("kallsyms_markers", at, err))?;
        let markers: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).map_or(0, u32::from_le_bytes))
            .collect();
        let bad = |d: &str| corrupt("kallsyms_markers", at, d.to_string());
        if markers.first() != Some(&0) {
            return Err(bad("first marker is not 0"));
        }
        if markers.windows(2).any(|w| matches!(w, [a, b] if b <= a || u64::from(b - a) > 256 * (MAX_NAME_TOKENS as u64 + 2)))
        {
            return Err(bad("markers do not increase by a plausible step"));
        }
        if let Some(&second) = markers.get(1) {
            let mut off = 0u64;
            for _ in 0..256 {
                let (hdr, ntok) = self.header_at(cache, off)?;
                off += (hdr + ntok) as u64;
            }
            if off != u64::from(second) {
                return Err(bad("256 names do not end at the second marker"));
            }
        }
        Ok(markers)
    }

    /// The name order starts sorted: the first entries are in range, distinct, and their names ascend.
    fn check_seqs(&self, cache: &mut PageCache, sorted: &Sorted) -> Result<(), KallsymsError> {
        let sample = self.num_syms.min(SORT_SAMPLE);
        let mut prev: Option<Vec<u8>> = None;
        let mut seen = Vec::new();
        for p in 0..sample {
            let idx = self.seq_at(cache, sorted, p)?;
            if seen.contains(&idx) {
                return Err(corrupt(
                    "kallsyms_seqs_of_names",
                    sorted.seqs,
                    "repeated index".into(),
                ));
            }
            seen.push(idx);
            let name = self.name_at(cache, sorted, idx)?;
            if prev.as_ref().is_some_and(|p| *p > name) {
                return Err(corrupt(
                    "kallsyms_seqs_of_names",
                    sorted.seqs,
                    "names out of order".into(),
                ));
            }
            prev = Some(name);
        }
        Ok(())
    }

    /// The first symbol called `want` by binary search over the name order; `Ok(None)` when the search ends
    /// elsewhere (which the caller confirms with a linear pass).
    fn find_sorted(
        &self,
        cache: &mut PageCache,
        sorted: &Sorted,
        want: &[u8],
    ) -> Result<Option<u32>, KallsymsError> {
        let n = self.num_syms;
        let (mut lo, mut hi) = (0u32, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let name = self.probe(cache, sorted, mid)?;
            if name.as_slice() < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo >= n || want.is_empty() {
            return Ok(None);
        }
        let first = self.seq_at(cache, sorted, lo)?;
        if self.name_at(cache, sorted, first)? != want {
            return Ok(None);
        }
        // Equal names are ordered by address, so the first is the lowest index; check a few anyway.
        let mut best = first;
        for p in lo.saturating_add(1)..n.min(lo.saturating_add(MAX_EQUAL_RUN)) {
            let idx = self.seq_at(cache, sorted, p)?;
            if self.name_at(cache, sorted, idx)? != want {
                break;
            }
            best = best.min(idx);
        }
        Ok(Some(best))
    }

    fn probe(
        &self,
        cache: &mut PageCache,
        sorted: &Sorted,
        pos: u32,
    ) -> Result<Vec<u8>, KallsymsError> {
        let mut s = self.stats.get();
        s.sorted_probes = s.sorted_probes.saturating_add(1);
        self.stats.set(s);
        let idx = self.seq_at(cache, sorted, pos)?;
        self.name_at(cache, sorted, idx)
    }

    /// Entry `pos` of `kallsyms_seqs_of_names`: a symbol index, 3 bytes big-endian.
    fn seq_at(
        &self,
        cache: &mut PageCache,
        sorted: &Sorted,
        pos: u32,
    ) -> Result<u32, KallsymsError> {
        let at = checked_elem(sorted.seqs, pos, 3, "kallsyms_seqs_of_names")?;
        let mut b = [0u8; 3];
        cache
            .read(at, &mut b)
            .map_err(|err| read_err("kallsyms_seqs_of_names", at, err))?;
        let [b0, b1, b2] = b;
        let idx = u32::from(b0) << 16 | u32::from(b1) << 8 | u32::from(b2);
        if idx >= self.num_syms {
            return Err(corrupt(
                "kallsyms_seqs_of_names",
                at,
                format!("index {idx} ≥ {} symbols", self.num_syms),
            ));
        }
        Ok(idx)
    }

    /// The decoded name of symbol `idx`, found from its marker.
    fn name_at(
        &self,
        cache: &mut PageCache,
        sorted: &Sorted,
        idx: u32,
    ) -> Result<Vec<u8>, KallsymsError> {
        let mut off = sorted
            .markers
            .get((idx >> 8) as usize)
            .map(|&m| u64::from(m))
            .ok_or_else(|| {
                corrupt(
                    "kallsyms_markers",
                    self.names,
                    format!("no marker for symbol {idx}"),
                )
            })?;
        for _ in 0..(idx & 0xff) {
            let (hdr, ntok) = self.header_at(cache, off)?;
            off += (hdr + ntok) as u64;
        }
        let (hdr, ntok) = self.header_at(cache, off)?;
        let at = self.names_addr(off + hdr as u64)?;
        let mut toks = vec![0u8; ntok];
        cache
            .read(at, &mut toks)
            .map_err(|err| read_err("kallsyms_names", at, err))?;
        Ok(self.decode(&toks))
    }

    /// The length header of the name at `off` in `kallsyms_names`: (header bytes, token count).
    fn header_at(&self, cache: &mut PageCache, off: u64) -> Result<(usize, usize), KallsymsError> {
        let at = self.names_addr(off)?;
        let mut b = [0u8; 2];
        // The second byte is only needed for a long name; read it separately so the last name of a table
        // that ends at a mapping boundary still reads.
        let (first, rest) = b.split_at_mut(1);
        cache
            .read(at, first)
            .map_err(|err| read_err("kallsyms_names", at, err))?;
        if first.first().is_some_and(|&b0| b0 & 0x80 != 0) {
            let at1 = at.wrapping_add(1);
            cache
                .read(at1, rest)
                .map_err(|err| read_err("kallsyms_names", at1, err))?;
        }
        parse_header(&b).map_err(|d| corrupt("kallsyms_names", at, d))
    }

    fn names_addr(&self, off: u64) -> Result<u64, KallsymsError> {
        if off > MAX_NAMES_BYTES {
            return Err(corrupt(
                "kallsyms_names",
                self.names,
                format!("offset {off:#x} beyond {MAX_NAMES_BYTES:#x}"),
            ));
        }
        self.names
            .checked_add(off)
            .ok_or_else(|| corrupt("kallsyms_names", self.names, "address overflows".into()))
    }
}

/// Parses a name's token count: (header bytes, count). A zero count or a third ULEB128 byte is corrupt.
fn parse_header(b: &[u8]) -> Result<(usize, usize), String> {
    let b0 = *b.first().ok_or("no length byte")?;
    let (hdr, n) = if b0 & 0x80 == 0 {
        (1, usize::from(b0))
    } else {
        let b1 = *b.get(1).ok_or("no second length byte")?;
        if b1 & 0x80 != 0 {
            return Err(format!("length {b0:#04x} {b1:#04x} needs a third byte"));
        }
        (2, usize::from(b0 & 0x7f) | usize::from(b1) << 7)
    };
    if n == 0 {
        return Err("zero-length name".into());
    }
    Ok((hdr, n))
}

/// Reads the token index and table and expands the 256 tokens.
fn read_tokens(mem: &dyn Memory, table: u64, index: u64) -> Result<Vec<Vec<u8>>, KallsymsError> {
    let mut raw = [0u8; 512];
    mem.read(index, &mut raw)
        .map_err(|err| read_err("kallsyms_token_index", index, err))?;
    let offs: Vec<usize> = raw
        .chunks_exact(2)
        .map(|c| usize::from(<[u8; 2]>::try_from(c).map_or(0, u16::from_le_bytes)))
        .collect();
    // The token index follows the token table (every table order has them adjacent), so the table is the
    // gap between them; a token starting beyond it is corrupt. Elsewhere, read up to the last token's start
    // plus room for it, page by page so that a table near the end of a mapping still reads.
    let max_off = offs.iter().copied().max().unwrap_or(0) as u64;
    let buf = match index.checked_sub(table) {
        Some(gap) if gap <= MAX_TOKEN_TABLE => {
            if gap <= max_off {
                return Err(corrupt(
                    "kallsyms_token_table",
                    table,
                    format!("a token starts at offset {max_off}, past the table's {gap} bytes"),
                ));
            }
            read_bytes(mem, table, gap, "kallsyms_token_table")?
        }
        _ => {
            let len = max_off + 1024;
            let mut buf = Vec::new();
            let mut at = table;
            while (buf.len() as u64) < len {
                let n = (PAGE - at % PAGE).min(len - buf.len() as u64);
                let mut page = vec![0u8; n as usize];
                match mem.read(at, &mut page) {
                    Ok(()) => buf.extend_from_slice(&page),
                    Err(err) if buf.len() as u64 <= max_off => {
                        return Err(read_err("kallsyms_token_table", at, err));
                    }
                    Err(_) => break,
                }
                at = at.wrapping_add(n);
            }
            buf
        }
    };
    let mut tokens = Vec::with_capacity(256);
    for (t, &off) in offs.iter().enumerate() {
        let tail = buf.get(off..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).ok_or_else(|| {
            corrupt(
                "kallsyms_token_table",
                table,
                format!("token {t:#04x} at offset {off} has no terminating NUL"),
            )
        })?;
        tokens.push(tail.get(..end).unwrap_or(&[]).to_vec());
    }
    Ok(tokens)
}

/// `base + idx * size`, or a corruption error naming the table.
fn checked_elem(base: u64, idx: u32, size: u64, what: &'static str) -> Result<u64, KallsymsError> {
    u64::from(idx)
        .checked_mul(size)
        .and_then(|o| base.checked_add(o))
        .ok_or_else(|| {
            corrupt(
                what,
                base,
                format!("element {idx} overflows the address space"),
            )
        })
}

fn align_up(x: u64, a: u64) -> u64 {
    x.checked_add(a - 1).map_or(x, |v| v & !(a - 1))
}

fn corrupt(what: &'static str, addr: u64, detail: String) -> KallsymsError {
    KallsymsError::Corrupt { what, addr, detail }
}

fn read_err(what: &'static str, addr: u64, err: ReadError) -> KallsymsError {
    KallsymsError::Read { what, addr, err }
}

fn read_bytes(
    mem: &dyn Memory,
    addr: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, KallsymsError> {
    let len = usize::try_from(len).map_err(|_| corrupt(what, addr, format!("{len} bytes")))?;
    let mut buf = vec![0u8; len];
    mem.read(addr, &mut buf)
        .map_err(|err| read_err(what, addr, err))?;
    Ok(buf)
}

fn read_u32(mem: &dyn Memory, addr: u64, what: &'static str) -> Result<u32, KallsymsError> {
    let mut b = [0u8; 4];
    mem.read(addr, &mut b)
        .map_err(|err| read_err(what, addr, err))?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(mem: &dyn Memory, addr: u64, what: &'static str) -> Result<u64, KallsymsError> {
    let mut b = [0u8; 8];
    mem.read(addr, &mut b)
        .map_err(|err| read_err(what, addr, err))?;
    Ok(u64::from_le_bytes(b))
}

/// Sequential reader of `kallsyms_names` in 64 KiB chunks.
struct Stream<'m> {
    mem: &'m dyn Memory,
    /// Address of `buf[0]`.
    start: u64,
    /// Where the names begin (for the size bound).
    origin: u64,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes per read: 64 KiB, a page once a chunk has failed.
    chunk: usize,
    bytes_read: u64,
}

impl<'m> Stream<'m> {
    fn new(mem: &'m dyn Memory, at: u64) -> Stream<'m> {
        Stream {
            mem,
            start: at,
            origin: at,
            buf: Vec::with_capacity(CHUNK + MAX_NAME_TOKENS + 2),
            pos: 0,
            chunk: CHUNK,
            bytes_read: 0,
        }
    }

    fn addr(&self) -> u64 {
        self.start.wrapping_add(self.pos as u64)
    }

    fn avail(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Makes at least `need` bytes available at the cursor: a 64 KiB read, or, where that fails (the end of
    /// a mapping or a hole in a dump), exactly what is needed.
    fn ensure(&mut self, need: usize) -> Result<(), KallsymsError> {
        if self.avail() >= need {
            return Ok(());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.start = self.start.wrapping_add(self.pos as u64);
            self.pos = 0;
        }
        let have = self.buf.len();
        let at = self
            .start
            .checked_add(have as u64)
            .ok_or_else(|| corrupt("kallsyms_names", self.start, "address overflows".into()))?;
        if at.saturating_sub(self.origin) > MAX_NAMES_BYTES {
            return Err(corrupt(
                "kallsyms_names",
                self.origin,
                format!("names run past {MAX_NAMES_BYTES:#x} bytes"),
            ));
        }
        let short = need.saturating_sub(have);
        // After a chunk failed (the end of a mapping is near), read only to the next page boundary.
        let to_page = (PAGE - at % PAGE) as usize;
        for size in [self.chunk.max(short), to_page.max(short), short] {
            self.buf.resize(have + size, 0);
            let res = match self.buf.get_mut(have..) {
                Some(dst) => self.mem.read(at, dst),
                None => Err(ReadError::TooLarge {
                    addr: at,
                    len: size,
                }),
            };
            match res {
                Ok(()) => {
                    self.bytes_read = self.bytes_read.saturating_add(size as u64);
                    return Ok(());
                }
                Err(err) if size == short => {
                    self.buf.truncate(have);
                    return Err(read_err("kallsyms_names", at, err));
                }
                Err(_) => {
                    self.buf.truncate(have);
                    self.chunk = PAGE as usize;
                }
            }
        }
        Err(corrupt("kallsyms_names", at, "unreadable".into()))
    }

    /// The length header at the cursor.
    fn header(&mut self) -> Result<(usize, usize), KallsymsError> {
        self.ensure(1)?;
        let long = self.buf.get(self.pos).is_some_and(|b| b & 0x80 != 0);
        if long {
            self.ensure(2)?;
        }
        let at = self.addr();
        let b = self.buf.get(self.pos..).unwrap_or(&[]);
        parse_header(b).map_err(|d| corrupt("kallsyms_names", at, d))
    }

    fn slice(&self, off: usize, len: usize) -> Option<&[u8]> {
        let s = self.pos.checked_add(off)?;
        self.buf.get(s..s.checked_add(len)?)
    }

    fn advance(&mut self, n: usize) -> Result<(), KallsymsError> {
        self.ensure(n)?;
        self.pos += n;
        Ok(())
    }
}

/// A small cache of 4 KiB pages for the binary search's scattered small reads. A page that cannot be read
/// whole (the edge of a mapping) is read directly instead.
struct PageCache<'m> {
    mem: &'m dyn Memory,
    pages: HashMap<u64, Vec<u8>>,
    bytes_read: u64,
}

impl<'m> PageCache<'m> {
    fn new(mem: &'m dyn Memory) -> PageCache<'m> {
        PageCache {
            mem,
            pages: HashMap::new(),
            bytes_read: 0,
        }
    }

    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = addr
                .checked_add(done as u64)
                .ok_or(ReadError::NotMapped { addr })?;
            let page = cur & !(PAGE - 1);
            let off = (cur - page) as usize;
            if !self.pages.contains_key(&page) {
                if self.pages.len() >= MAX_CACHED_PAGES {
                    self.pages.clear();
                }
                let mut p = vec![0u8; PAGE as usize];
                if self.mem.read(page, &mut p).is_err() {
                    let rest = buf.get_mut(done..).unwrap_or(&mut []);
                    self.bytes_read = self.bytes_read.saturating_add(rest.len() as u64);
                    return self.mem.read(cur, rest);
                }
                self.bytes_read = self.bytes_read.saturating_add(PAGE);
                self.pages.insert(page, p);
            }
            let p = self
                .pages
                .get(&page)
                .ok_or(ReadError::NotMapped { addr: cur })?;
            let n = (PAGE as usize - off).min(buf.len() - done);
            let src = p
                .get(off..off + n)
                .ok_or(ReadError::NotMapped { addr: cur })?;
            let dst = buf
                .get_mut(done..done + n)
                .ok_or(ReadError::TooLarge { addr, len: n })?;
            dst.copy_from_slice(src);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    /// Kernel memory as one buffer at `base`, with an optional unmapped hole; everything else is unmapped.
    #[derive(Clone)]
    struct VecMem {
        base: u64,
        data: Vec<u8>,
        hole: Option<(u64, u64)>,
    }

    impl Memory for VecMem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            let end = addr + buf.len() as u64;
            if let Some((h0, h1)) = self.hole
                && addr < h1
                && end > h0
            {
                return Err(ReadError::NotMapped { addr: addr.max(h0) });
            }
            let off = addr
                .checked_sub(self.base)
                .ok_or(ReadError::NotMapped { addr })? as usize;
            let src = self
                .data
                .get(off..off + buf.len())
                .ok_or(ReadError::NotMapped {
                    addr: self.base + self.data.len() as u64,
                })?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    #[derive(Clone, Debug)]
    struct Sym {
        ty: u8,
        name: String,
        addr: u64,
        percpu: bool,
    }

    fn sym(ty: u8, name: &str, addr: u64) -> Sym {
        Sym {
            ty,
            name: name.to_string(),
            addr,
            percpu: false,
        }
    }

    /// Where the tables sit relative to each other (scripts/kallsyms.c output order per version).
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Layout {
        /// ≤ 6.1: addresses|offsets, relative_base, num_syms, names, markers, token_table, token_index.
        V6_1,
        /// 6.2–6.3: … markers, seqs_of_names, token_table, token_index.
        V6_2,
        /// 6.4+: num_syms, names, markers, token_table, token_index, addresses|offsets, relative_base, seqs.
        V6_4,
        /// 7.0+: as 6.4 without relative_base, labels aligned to 4.
        V7_0,
    }

    const BASE: u64 = 0xffff_ffff_8200_0000;
    const STEXT: u64 = 0xffff_ffff_8100_0000;
    const TOP_PGT: u64 = 0xffff_ffff_8300_a000;
    /// Multi-character tokens, in the order they take free codes (0x00 first, then 0xff down): "Tsym_" and
    /// "tcp_" put the type letter inside a longer token.
    const MULTI: [&str; 14] = [
        "Tsym_", "sym_", "tcp_", "hash", "info", "init", "_net", "Ddup_", "dup_", "xxxxxxxx", "xx",
        "_st", "ext", "00",
    ];

    /// The test kernel's symbols: `fill` numbered text symbols, per-CPU symbols near 0 when `percpu`, an
    /// alias, prefixes and extensions of the wanted names, a duplicate static, long names around the 127/128
    /// token boundary.
    fn sample(percpu: bool, fill: u64) -> Vec<Sym> {
        let mut v = Vec::new();
        if percpu {
            for (name, addr) in [
                ("fixed_percpu_data", 0),
                ("cpu_number", 0x1_c000),
                ("current_task", 0x2_1000),
            ] {
                v.push(Sym {
                    ty: b'A',
                    name: name.into(),
                    addr,
                    percpu: true,
                });
            }
        }
        v.push(sym(b'T', "_text", STEXT));
        v.push(sym(b'T', "_stext", STEXT));
        for i in 0..fill {
            let ty = if i % 3 == 0 { b't' } else { b'T' };
            v.push(sym(ty, &format!("sym_{i:05}"), STEXT + 0x1000 + i * 0x40));
        }
        v.push(sym(b't', "cp_thing", STEXT + 0x80_0000));
        v.push(sym(
            b't',
            &format!("z_{}", "q".repeat(200)),
            STEXT + 0x90_0000,
        ));
        v.push(sym(b't', &"w".repeat(126), STEXT + 0x90_0100));
        v.push(sym(b't', &"w".repeat(127), STEXT + 0x90_0200));
        v.push(sym(
            b't',
            &format!("long_{}", "xxxxxxxx".repeat(60)),
            STEXT + 0x90_0300,
        ));
        v.push(sym(b'd', "dup_static", STEXT + 0x180_0000));
        v.push(sym(b'd', "dup_static", STEXT + 0x190_0000));
        v.push(sym(b'D', "tcp_hash", STEXT + 0x200_0000));
        v.push(sym(b'D', "tcp_hashinfo", STEXT + 0x200_0100));
        v.push(sym(b'D', "tcp_hashinfo_extra", STEXT + 0x200_0200));
        v.push(sym(b'D', "init_top_pgt", TOP_PGT));
        v.push(sym(b'D', "init_net", STEXT + 0x210_0000));
        v.push(sym(b'B', "__bss_stop", STEXT + 0x300_0000));
        v
    }

    struct Image {
        mem: VecMem,
        vmcoreinfo: String,
        /// Symbols in table (address) order.
        syms: Vec<Sym>,
        labels: HashMap<&'static str, u64>,
        /// Token codes used in the names stream.
        used_codes: Vec<u8>,
    }

    impl Image {
        fn tables(&self) -> Result<KallsymsTables, KallsymsError> {
            KallsymsTables::new(&self.mem, &VmcoreInfo::parse(&self.vmcoreinfo))
        }
        /// The oracle: the first address of each name in table order.
        fn expected(&self) -> HashMap<String, u64> {
            let mut m = HashMap::new();
            for s in &self.syms {
                m.entry(s.name.clone()).or_insert(s.addr);
            }
            m
        }
        fn label(&self, l: &str) -> u64 {
            self.labels[l]
        }
        fn patch(&mut self, addr: u64, bytes: &[u8]) {
            let off = (addr - self.mem.base) as usize;
            self.mem.data[off..off + bytes.len()].copy_from_slice(bytes);
        }
    }

    struct Writer {
        data: Vec<u8>,
        align: usize,
    }

    impl Writer {
        fn label(&mut self) -> u64 {
            while !self.data.len().is_multiple_of(self.align) {
                self.data.push(0);
            }
            BASE + self.data.len() as u64
        }
        fn put(&mut self, b: &[u8]) {
            self.data.extend_from_slice(b);
        }
        fn patch(&mut self, addr: u64, b: &[u8]) {
            let off = (addr - BASE) as usize;
            self.data[off..off + b.len()].copy_from_slice(b);
        }
    }

    /// An independent kallsyms encoder: greedy longest-token compression over a token table of the used
    /// single characters plus `MULTI`, then the tables in `layout` order with addresses in `enc`.
    fn build(input: &[Sym], layout: Layout, enc: Encoding) -> Image {
        let mut syms = input.to_vec();
        syms.sort_by_key(|s| s.addr);
        let n = syms.len();
        let raw: Vec<Vec<u8>> = syms
            .iter()
            .map(|s| {
                let mut r = vec![s.ty];
                r.extend_from_slice(s.name.as_bytes());
                r
            })
            .collect();

        let mut tokens: Vec<Vec<u8>> = vec![Vec::new(); 256];
        for r in &raw {
            for &c in r {
                tokens[c as usize] = vec![c];
            }
        }
        let free: Vec<usize> = std::iter::once(0usize)
            .chain((1..256).rev())
            .filter(|&c| tokens[c].is_empty())
            .collect();
        for (m, &c) in MULTI.iter().zip(&free) {
            tokens[c] = m.as_bytes().to_vec();
        }

        let mut names = Vec::new();
        let mut markers = Vec::new();
        let mut used_codes = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            if i % 256 == 0 {
                markers.push(names.len() as u32);
            }
            let mut enc_name = Vec::new();
            let mut p = 0;
            while p < r.len() {
                let (code, len) = tokens
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| !t.is_empty() && r[p..].starts_with(t))
                    .map(|(c, t)| (c as u8, t.len()))
                    .max_by_key(|&(_, l)| l)
                    .expect("every character has a token");
                enc_name.push(code);
                p += len;
            }
            let len = enc_name.len();
            assert!(len <= 0x3fff);
            if len < 0x80 {
                names.push(len as u8);
            } else {
                names.push((len & 0x7f) as u8 | 0x80);
                names.push((len >> 7) as u8);
            }
            used_codes.extend_from_slice(&enc_name);
            names.extend_from_slice(&enc_name);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            (syms[a].name.as_bytes(), syms[a].addr, a).cmp(&(
                syms[b].name.as_bytes(),
                syms[b].addr,
                b,
            ))
        });
        let seqs: Vec<u8> = order
            .iter()
            .flat_map(|&i| [(i >> 16) as u8, (i >> 8) as u8, i as u8])
            .collect();
        let mut token_table = Vec::new();
        let mut token_index = Vec::new();
        for t in &tokens {
            token_index.extend_from_slice(&(token_table.len() as u16).to_le_bytes());
            token_table.extend_from_slice(t);
            token_table.push(0);
        }

        let mut w = Writer {
            data: vec![0xaa; 40], // whatever precedes the tables in .rodata
            align: if layout == Layout::V7_0 { 4 } else { 8 },
        };
        let mut labels: HashMap<&'static str, u64> = HashMap::new();
        let addr_table = |w: &mut Writer, labels: &mut HashMap<&'static str, u64>| match enc {
            Encoding::Absolute => {
                labels.insert("kallsyms_addresses", w.label());
                w.put(&vec![0; 8 * n]);
            }
            _ => {
                labels.insert("kallsyms_offsets", w.label());
                w.put(&vec![0; 4 * n]);
                if enc != Encoding::PlaceRelative {
                    labels.insert("kallsyms_relative_base", w.label());
                    w.put(&[0; 8]);
                }
            }
        };
        let put =
            |w: &mut Writer, labels: &mut HashMap<&'static str, u64>, l: &'static str, b: &[u8]| {
                labels.insert(l, w.label());
                w.put(b);
            };
        let num = (n as u32).to_le_bytes();
        let marker_bytes: Vec<u8> = markers.iter().flat_map(|m| m.to_le_bytes()).collect();
        match layout {
            Layout::V6_1 | Layout::V6_2 => {
                addr_table(&mut w, &mut labels);
                put(&mut w, &mut labels, "kallsyms_num_syms", &num);
                put(&mut w, &mut labels, "kallsyms_names", &names);
                put(&mut w, &mut labels, "kallsyms_markers", &marker_bytes);
                if layout == Layout::V6_2 {
                    put(&mut w, &mut labels, "kallsyms_seqs_of_names", &seqs);
                }
                put(&mut w, &mut labels, "kallsyms_token_table", &token_table);
                put(&mut w, &mut labels, "kallsyms_token_index", &token_index);
            }
            Layout::V6_4 | Layout::V7_0 => {
                put(&mut w, &mut labels, "kallsyms_num_syms", &num);
                put(&mut w, &mut labels, "kallsyms_names", &names);
                put(&mut w, &mut labels, "kallsyms_markers", &marker_bytes);
                put(&mut w, &mut labels, "kallsyms_token_table", &token_table);
                put(&mut w, &mut labels, "kallsyms_token_index", &token_index);
                addr_table(&mut w, &mut labels);
                put(&mut w, &mut labels, "kallsyms_seqs_of_names", &seqs);
            }
        }
        w.put(&[0x55; 5]); // whatever follows

        // Addresses, now that the tables have their places.
        let base = match enc {
            Encoding::AbsolutePercpu => {
                syms.iter()
                    .find(|s| !s.percpu)
                    .expect("a non-percpu symbol")
                    .addr
            }
            _ => syms[0].addr,
        };
        for (i, s) in syms.iter().enumerate() {
            match enc {
                Encoding::Absolute => {
                    w.patch(
                        labels["kallsyms_addresses"] + 8 * i as u64,
                        &s.addr.to_le_bytes(),
                    );
                }
                _ => {
                    let slot = labels["kallsyms_offsets"] + 4 * i as u64;
                    let v: i64 = match enc {
                        Encoding::BaseRelative => {
                            let d = s.addr - base;
                            assert!(d <= u64::from(u32::MAX));
                            d as u32 as i32 as i64
                        }
                        Encoding::AbsolutePercpu if s.percpu => {
                            assert!(s.addr <= i32::MAX as u64);
                            s.addr as i64
                        }
                        Encoding::AbsolutePercpu => base as i64 - s.addr as i64 - 1,
                        _ => s.addr.wrapping_sub(slot) as i64,
                    };
                    let v = i32::try_from(v).expect("offset fits 32 bits");
                    w.patch(slot, &v.to_le_bytes());
                }
            }
        }
        if let Some(&rb) = labels.get("kallsyms_relative_base") {
            w.patch(rb, &base.to_le_bytes());
        }

        let mut vi = String::from("OSRELEASE=test\nPAGESIZE=4096\n");
        vi += &format!("SYMBOL(_stext)={STEXT:x}\nSYMBOL(swapper_pg_dir)={TOP_PGT:x}\n");
        for l in [
            "kallsyms_names",
            "kallsyms_num_syms",
            "kallsyms_token_table",
            "kallsyms_token_index",
            "kallsyms_offsets",
            "kallsyms_relative_base",
            "kallsyms_addresses",
        ] {
            if let Some(a) = labels.get(l) {
                vi += &format!("SYMBOL({l})={a:x}\n");
            }
        }
        vi += &format!("SYMBOL(init_top_pgt)={TOP_PGT:x}\nKERNELOFFSET=0\n");
        Image {
            mem: VecMem {
                base: BASE,
                data: w.data,
                hole: None,
            },
            vmcoreinfo: vi,
            syms,
            labels,
            used_codes,
        }
    }

    fn all_names(img: &Image) -> Vec<String> {
        let mut v: Vec<String> = img.syms.iter().map(|s| s.name.clone()).collect();
        v.extend(
            [
                "absent",
                "tcp_hashinf",
                "tcp_hashinfo_",
                "cp_thin",
                "tcp_thing",
                "",
                "zzzz",
            ]
            .map(String::from),
        );
        v
    }

    fn check_all(img: &Image, t: &KallsymsTables, mem: &dyn Memory) {
        let names = all_names(img);
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let got = t.lookup_many(mem, &refs).expect("lookup");
        let want = img.expected();
        assert_eq!(
            got.len(),
            want.len(),
            "every symbol name and nothing else is found"
        );
        for (name, addr) in &want {
            assert_eq!(got.get(name), Some(addr), "{name}");
        }
    }

    /// Every address encoding in every table order decodes every symbol to its address, first symbol of a
    /// name first; the encoding is settled by VMCOREINFO's _stext, and the sorted fast path is found where
    /// the kernel has one (6.2+). 700 and 900 symbols give odd and even marker counts.
    #[test_case(Layout::V6_1, Encoding::Absolute, false, 700)]
    #[test_case(Layout::V6_1, Encoding::BaseRelative, false, 700)]
    #[test_case(Layout::V6_1, Encoding::AbsolutePercpu, false, 700)]
    #[test_case(Layout::V6_1, Encoding::AbsolutePercpu, false, 900)]
    #[test_case(Layout::V6_2, Encoding::BaseRelative, true, 700)]
    #[test_case(Layout::V6_2, Encoding::AbsolutePercpu, true, 900)]
    #[test_case(Layout::V6_2, Encoding::AbsolutePercpu, true, 700)]
    #[test_case(Layout::V6_4, Encoding::Absolute, true, 700)]
    #[test_case(Layout::V6_4, Encoding::BaseRelative, true, 900)]
    #[test_case(Layout::V6_4, Encoding::AbsolutePercpu, true, 700)]
    #[test_case(Layout::V6_4, Encoding::AbsolutePercpu, true, 900)]
    #[test_case(Layout::V7_0, Encoding::PlaceRelative, true, 700)]
    #[test_case(Layout::V7_0, Encoding::PlaceRelative, true, 900)]
    fn every_encoding_and_layout_decodes_every_symbol(
        layout: Layout,
        enc: Encoding,
        sorted: bool,
        fill: u64,
    ) {
        let img = build(&sample(enc == Encoding::AbsolutePercpu, fill), layout, enc);
        let t = img.tables().expect("tables");
        assert_eq!(t.has_sorted_names(), sorted, "{}", t.sorted_note());
        if sorted {
            let order = if layout == Layout::V6_2 {
                "6.2–6.3 order"
            } else {
                "6.4+ order"
            };
            assert!(t.sorted_note().contains(order), "{}", t.sorted_note());
        }
        check_all(&img, &t, &img.mem);
        // The linear pass alone gives the same answers.
        let linear = img.tables().expect("tables").without_sorted_names();
        check_all(&img, &linear, &img.mem);
        assert_eq!(linear.encoding(), Some(enc));
        assert!(linear.stats().linear_passes > 0 && linear.stats().sorted_probes == 0);
        assert_eq!(t.encoding(), Some(enc));
        assert_eq!(
            t.lookup(&img.mem, "tcp_hashinfo").expect("lookup"),
            Some(STEXT + 0x200_0100)
        );
        if enc == Encoding::AbsolutePercpu {
            assert_eq!(
                t.lookup(&img.mem, "cpu_number").expect("lookup"),
                Some(0x1_c000)
            );
        }
    }

    /// Base-relative and absolute-percpu tables look alike (offsets + relative_base); only a symbol whose
    /// address VMCOREINFO also gives tells them apart, and each image must be read its own way.
    #[test_case(Encoding::BaseRelative)]
    #[test_case(Encoding::AbsolutePercpu)]
    fn relative_readings_are_told_apart_by_stext(enc: Encoding) {
        let img = build(&sample(false, 300), Layout::V6_1, enc);
        let t = img.tables().expect("tables");
        assert_eq!(
            t.lookup(&img.mem, "init_net").expect("lookup"),
            Some(STEXT + 0x210_0000)
        );
        assert_eq!(t.encoding(), Some(enc));
    }

    /// A _stext that no reading reproduces is an error naming what disagreed, with and without sorted names.
    #[test_case(Layout::V6_1)]
    #[test_case(Layout::V6_4)]
    fn stext_mismatch_is_an_error(layout: Layout) {
        let mut img = build(&sample(true, 300), layout, Encoding::AbsolutePercpu);
        img.vmcoreinfo = img.vmcoreinfo.replace(
            &format!("SYMBOL(_stext)={STEXT:x}"),
            "SYMBOL(_stext)=ffffffff81000040",
        );
        let err = img
            .tables()
            .and_then(|t| t.lookup(&img.mem, "tcp_hashinfo"))
            .expect_err("mismatch");
        assert!(
            matches!(err, KallsymsError::Mismatch(ref m) if m.contains("_stext")),
            "{err}"
        );
    }

    /// Without any validating symbol the two relative readings cannot be told apart (an error), while the
    /// place-relative and absolute ones need no choice.
    #[test]
    fn without_validators_only_unambiguous_encodings_decode() {
        let strip = |vi: &str| {
            vi.lines()
                .filter(|l| !l.contains("_stext") && !l.contains("pgt") && !l.contains("swapper"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut img = build(&sample(true, 300), Layout::V6_1, Encoding::AbsolutePercpu);
        img.vmcoreinfo = strip(&img.vmcoreinfo);
        let t = img.tables().expect("tables");
        let err = t.lookup(&img.mem, "init_net").expect_err("ambiguous");
        assert!(matches!(err, KallsymsError::Undetermined(_)), "{err}");

        let mut img = build(&sample(false, 300), Layout::V7_0, Encoding::PlaceRelative);
        img.vmcoreinfo = strip(&img.vmcoreinfo);
        let t = img.tables().expect("tables");
        assert_eq!(
            t.lookup(&img.mem, "init_net").expect("lookup"),
            Some(STEXT + 0x210_0000)
        );
        assert_eq!(t.encoding(), Some(Encoding::PlaceRelative));
    }

    /// Names of 128 tokens or more carry a 2-byte count (6.1+); 127 still fits one byte. Both, and the
    /// symbols after them, decode in the linear pass and by binary search.
    #[test_case(Layout::V6_1)]
    #[test_case(Layout::V6_4)]
    fn long_names_use_a_two_byte_count(layout: Layout) {
        let img = build(&sample(false, 20), layout, Encoding::BaseRelative);
        let names = &img.mem.data[(img.label("kallsyms_names") - BASE) as usize..];
        assert!(
            names.windows(2).any(|w| w == [0x80, 0x01]),
            "a 128-token name is in the image"
        );
        assert!(
            names.windows(2).any(|w| w == [0xcb, 0x01]),
            "a 203-token name is in the image"
        );
        let t = img.tables().expect("tables");
        let long = [
            "w".repeat(126),
            "w".repeat(127),
            format!("z_{}", "q".repeat(200)),
        ];
        for (i, l) in long.iter().enumerate() {
            assert_eq!(
                t.lookup(&img.mem, l).expect("lookup"),
                Some(STEXT + 0x90_0000 + [0x100, 0x200, 0][i])
            );
        }
        assert_eq!(t.lookup(&img.mem, &"w".repeat(125)).expect("lookup"), None);
        assert_eq!(
            t.lookup(&img.mem, "dup_static").expect("lookup"),
            Some(STEXT + 0x180_0000)
        );
    }

    /// Token expansion: the type letter is dropped even inside a multi-character token ("tcp_" starting
    /// the 't' symbol "cp_thing"), token code 0 is a token like any other, and a name is matched whole, never
    /// as a prefix or an extension.
    #[test_case(Layout::V6_1)]
    #[test_case(Layout::V6_4)]
    fn tokens_expand_and_names_match_whole(layout: Layout) {
        let img = build(&sample(false, 300), layout, Encoding::BaseRelative);
        assert!(img.used_codes.contains(&0), "token code 0 is used");
        let t = img.tables().expect("tables");
        let got = t
            .lookup_many(
                &img.mem,
                &[
                    "cp_thing",
                    "tcp_thing",
                    "tcp_hash",
                    "tcp_hashinf",
                    "tcp_hashinfo_",
                    "sym_00012",
                ],
            )
            .expect("lookup");
        let mut want = HashMap::new();
        want.insert("cp_thing".to_string(), STEXT + 0x80_0000);
        want.insert("tcp_hash".to_string(), STEXT + 0x200_0000);
        want.insert("sym_00012".to_string(), STEXT + 0x1000 + 12 * 0x40);
        assert_eq!(got, want);
    }

    /// Several names cost one pass over kallsyms_names (the validators ride along); a lookup after the
    /// encoding is settled costs one more.
    #[test]
    fn many_names_one_linear_pass() {
        let img = build(&sample(true, 700), Layout::V6_1, Encoding::AbsolutePercpu);
        let t = img.tables().expect("tables");
        let got = t
            .lookup_many(
                &img.mem,
                &[
                    "tcp_hashinfo",
                    "init_net",
                    "absent",
                    "cpu_number",
                    "sym_00699",
                ],
            )
            .expect("lookup");
        assert_eq!(got.len(), 4);
        assert_eq!(t.stats().linear_passes, 1);
        assert_eq!(t.encoding(), Some(Encoding::AbsolutePercpu));
        assert_eq!(t.lookup(&img.mem, "_stext").expect("lookup"), Some(STEXT));
        assert_eq!(t.stats().linear_passes, 2);
    }

    /// With sorted names, names that exist are found without any linear pass; a miss is confirmed by one.
    #[test]
    fn sorted_names_avoid_the_linear_pass() {
        let img = build(&sample(true, 900), Layout::V6_4, Encoding::AbsolutePercpu);
        let t = img.tables().expect("tables");
        assert_eq!(
            t.encoding(),
            Some(Encoding::AbsolutePercpu),
            "settled while building"
        );
        let got = t
            .lookup_many(&img.mem, &["tcp_hashinfo", "init_net", "dup_static"])
            .expect("lookup");
        assert_eq!(got.len(), 3);
        assert_eq!(
            got["dup_static"],
            STEXT + 0x180_0000,
            "first of equal names"
        );
        assert_eq!(t.stats().linear_passes, 0);
        assert!(t.stats().sorted_probes > 0);
        assert_eq!(t.lookup(&img.mem, "absent").expect("lookup"), None);
        assert_eq!(t.stats().linear_passes, 1);
    }

    /// More than 64 names are split into passes of 64 and all found.
    #[test]
    fn more_than_64_names() {
        let img = build(&sample(false, 200), Layout::V6_1, Encoding::BaseRelative);
        let t = img.tables().expect("tables");
        let names: Vec<String> = (0..150).map(|i| format!("sym_{i:05}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let got = t.lookup_many(&img.mem, &refs).expect("lookup");
        assert_eq!(got.len(), 150);
        assert_eq!(got["sym_00149"], STEXT + 0x1000 + 149 * 0x40);
        assert_eq!(t.stats().linear_passes, 3);
    }

    /// Kernel memory changes under the reader: a name order that turned to garbage after the tables were
    /// checked costs a linear pass, never a wrong or missing answer.
    #[test_case(0x00)]
    #[test_case(0xff)]
    #[test_case(0x01)]
    fn scrambled_name_order_falls_back_to_the_linear_pass(fill: u8) {
        let img = build(&sample(true, 700), Layout::V6_4, Encoding::AbsolutePercpu);
        let t = img.tables().expect("tables");
        assert!(t.has_sorted_names());
        let mut bad = img.mem.clone();
        let seqs = (img.label("kallsyms_seqs_of_names") - BASE) as usize;
        for b in &mut bad.data[seqs..seqs + 3 * img.syms.len()] {
            *b = fill;
        }
        check_all(&img, &t, &bad);
        assert!(t.stats().linear_passes >= 1);
    }

    /// A name order that is wrong from the start is not used at all.
    #[test]
    fn unsorted_name_order_is_not_used() {
        let mut img = build(&sample(false, 700), Layout::V6_4, Encoding::BaseRelative);
        let seqs = img.label("kallsyms_seqs_of_names");
        let n = img.syms.len() as u64;
        // Swap the first two entries: still in range and distinct, but out of order.
        let off = (seqs - BASE) as usize;
        let (a, b) = (
            img.mem.data[off..off + 3].to_vec(),
            img.mem.data[off + 3..off + 6].to_vec(),
        );
        img.patch(seqs, &b);
        img.patch(seqs + 3, &a);
        let t = img.tables().expect("tables");
        assert!(!t.has_sorted_names());
        assert!(t.sorted_note().contains("seqs"), "{}", t.sorted_note());
        check_all(&img, &t, &img.mem);
        assert!(n > 256);
    }

    /// A symbol count beyond any kernel's, or zero, is refused before anything is sized by it.
    #[test_case(0)]
    #[test_case(MAX_SYMS + 1)]
    #[test_case(u32::MAX)]
    fn implausible_symbol_counts_are_corrupt(count: u32) {
        let mut img = build(&sample(false, 20), Layout::V6_4, Encoding::BaseRelative);
        let at = img.label("kallsyms_num_syms");
        img.patch(at, &count.to_le_bytes());
        let err = img.tables().expect_err("corrupt");
        assert!(
            matches!(err, KallsymsError::Corrupt { what: "kallsyms_num_syms", addr, .. } if addr == at),
            "{err}"
        );
    }

    /// A zero token count cannot occur in a real table: it is reported at its address.
    #[test]
    fn zero_length_name_is_corrupt() {
        let mut img = build(&sample(false, 20), Layout::V6_1, Encoding::BaseRelative);
        let names = img.label("kallsyms_names");
        img.patch(names, &[0]);
        let t = img.tables().expect("tables");
        let err = t.lookup(&img.mem, "absent").expect_err("corrupt");
        assert!(
            matches!(err, KallsymsError::Corrupt { what: "kallsyms_names", addr, .. } if addr == names),
            "{err}"
        );
    }

    /// A token index pointing past the token table's last NUL is corrupt.
    #[test]
    fn token_without_terminator_is_corrupt() {
        let mut img = build(&sample(false, 20), Layout::V6_1, Encoding::BaseRelative);
        let idx = img.label("kallsyms_token_index");
        img.patch(idx + 2 * 0x41, &0xfff0u16.to_le_bytes());
        let err = img.tables().expect_err("corrupt");
        assert!(
            matches!(
                err,
                KallsymsError::Corrupt {
                    what: "kallsyms_token_table",
                    ..
                }
            ),
            "{err}"
        );
    }

    /// An unreadable page inside kallsyms_names fails the lookup with the address of the hole.
    #[test]
    fn hole_in_names_is_a_read_error() {
        let mut img = build(&sample(false, 700), Layout::V6_1, Encoding::BaseRelative);
        let names = img.label("kallsyms_names");
        let markers = img.label("kallsyms_markers");
        assert!(markers > names + 2100, "the hole is inside the names");
        img.mem.hole = Some((names + 2000, names + 2100));
        let t = img.tables().expect("tables");
        let err = t.lookup(&img.mem, "absent").expect_err("hole");
        assert!(
            matches!(err, KallsymsError::Read { what: "kallsyms_names", err: ReadError::NotMapped { addr }, .. } if addr == names + 2000),
            "{err}"
        );
    }

    /// Kernels before 6.0 have no kallsyms symbols in VMCOREINFO: the error names the first one missing.
    #[test]
    fn missing_vmcoreinfo_symbols() {
        let img = build(&sample(false, 20), Layout::V6_1, Encoding::BaseRelative);
        let mem = &img.mem;
        let err =
            KallsymsTables::new(mem, &VmcoreInfo::parse("OSRELEASE=5.10.0\n")).expect_err("none");
        assert!(
            matches!(err, KallsymsError::NotInVmcoreinfo("kallsyms_names")),
            "{err}"
        );
        let vi = img
            .vmcoreinfo
            .replace("SYMBOL(kallsyms_offsets)", "SYMBOL(kallsyms_offsetz)");
        let err = KallsymsTables::new(mem, &VmcoreInfo::parse(&vi)).expect_err("no offsets");
        assert!(
            matches!(err, KallsymsError::NotInVmcoreinfo("kallsyms_offsets")),
            "{err}"
        );
    }

    /// Random damage anywhere in the tables gives an error or some answer, never a panic or a hang: each
    /// lookup reads a bounded number of bytes (at most a few passes over the names), a name the tables never
    /// held is never found, and the damage shows (errors, changed answers) while other rounds still give the
    /// right address.
    #[test]
    fn random_corruption_never_panics() {
        let pristine = [
            build(&sample(true, 600), Layout::V6_1, Encoding::AbsolutePercpu),
            build(&sample(true, 600), Layout::V6_4, Encoding::AbsolutePercpu),
            build(&sample(false, 600), Layout::V7_0, Encoding::PlaceRelative),
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut errors, mut right, mut changed) = (0u32, 0u32, 0u32);
        for round in 0..300 {
            let img = &pristine[round % pristine.len()];
            let mut mem = img.mem.clone();
            let len = mem.data.len() as u64;
            match round % 3 {
                // scattered bytes
                0 => {
                    for _ in 0..(1 + next() % 16) {
                        let at = (next() % len) as usize;
                        mem.data[at] = next() as u8;
                    }
                }
                // a run of garbage
                1 => {
                    let at = (next() % len) as usize;
                    let run = (next() % 512) as usize;
                    for b in mem.data.iter_mut().skip(at).take(run) {
                        *b = next() as u8;
                    }
                }
                // long-name bytes everywhere in a run
                _ => {
                    let at = (next() % len) as usize;
                    for b in mem.data.iter_mut().skip(at).take(64) {
                        *b = 0xff;
                    }
                }
            }
            let vi = VmcoreInfo::parse(&img.vmcoreinfo);
            let want = img
                .syms
                .iter()
                .find(|s| s.name == "sym_00042")
                .map(|s| s.addr);
            match KallsymsTables::new(&mem, &vi) {
                Err(_) => errors += 1,
                Ok(t) => match t
                    .lookup_many(&mem, &["tcp_hashinfo", "init_net", "absent", "sym_00042"])
                {
                    Err(_) => errors += 1,
                    Ok(found) => {
                        assert!(
                            !found.contains_key("absent"),
                            "round {round}: a name the tables never held was found"
                        );
                        match found.get("sym_00042").copied() {
                            Some(a) if Some(a) == want => right += 1,
                            _ => changed += 1,
                        }
                        let read = t.stats().bytes_read;
                        assert!(
                            read <= 8 * (mem.data.len() as u64) + (1 << 20),
                            "round {round}: {read} bytes read from a {}-byte image",
                            mem.data.len()
                        );
                    }
                },
            }
        }
        assert!(
            errors > 0,
            "no round was refused: the damage never reached the checks"
        );
        assert!(right > 0, "no round gave the right address");
        assert!(errors + changed + right == 300);
    }
}
