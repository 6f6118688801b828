//! The VMCOREINFO text: `KEY=value` lines the kernel writes at boot (kernel/vmcore_info.c, before 6.8
//! kernel/crash_core.c) and exports as an ELF note in `/proc/kcore`, in every kdump vmcore and through QEMU's
//! `-device vmcoreinfo`.
//!
//! Value formats, as the kernel prints them:
//! - `SYMBOL(name)=%lx`, `KERNELOFFSET=%lx`: hex without a `0x` prefix;
//! - `NUMBER(name)=%ld` (some architectures `0x%llx`): C base-0, signed, e.g. `NUMBER(phys_base)=-272629760`;
//! - `OFFSET(struct.member)=%lu`, `SIZE(struct)=%lu`, `LENGTH(symbol)=%lu`, `PAGESIZE=%ld`: decimal;
//! - `OSRELEASE=%s`, `BUILD-ID=%20phN` (40 hex digits): text.
//!
//! Parsing never fails: a line that is not `KEY=value` is skipped and counted in [`VmcoreInfo::malformed`].
//! The text ends at the first NUL (a note's descriptor may be padded with NULs).
//!
//! Duplicate keys: the **first** occurrence wins. The kernel never writes a key twice, so a duplicate means a
//! damaged or tampered note; the consumers that dumps are made for (makedumpfile, crash) search the note from
//! its start and so also take the first occurrence, and the generic part the kernel writes first (the
//! `kallsyms_*` and `_stext` symbols) cannot then be overridden by something appended after it. Later
//! occurrences are listed in [`VmcoreInfo::duplicates`].

use std::collections::{HashMap, HashSet};

/// A parsed VMCOREINFO note.
#[derive(Clone, Debug, Default)]
pub struct VmcoreInfo {
    /// Every well-formed line, in note order (duplicates included).
    entries: Vec<(String, String)>,
    /// Key → index into `entries` of its first occurrence.
    first: HashMap<String, usize>,
    /// Lines that were not `KEY=value` (1-based line numbers and their text, truncated).
    malformed: Vec<(usize, String)>,
    /// Keys seen more than once (each listed once, in the order first duplicated).
    duplicates: Vec<String>,
    /// The same keys, for a constant-time "already listed?" (a hostile note may duplicate a million keys).
    duplicated: HashSet<String>,
}

/// Longest malformed line text kept for diagnostics.
const MAX_KEPT_LINE: usize = 80;
/// Keys are short identifiers (`OFFSET(vmap_area.va_start)` is among the longest); longer ones are garbage.
const MAX_KEY_LEN: usize = 256;

impl VmcoreInfo {
    /// Parses the note text. Never fails; see the module documentation for what is skipped. Linear in the
    /// text: every line costs a constant number of hash lookups, whatever the duplicates.
    pub fn parse(text: &str) -> VmcoreInfo {
        let text = text.split('\0').next().unwrap_or("");
        let mut info = VmcoreInfo::default();
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            match split_line(line) {
                Some((key, value)) => {
                    if info.first.contains_key(key) {
                        if info.duplicated.insert(key.to_string()) {
                            info.duplicates.push(key.to_string());
                        }
                    } else {
                        info.first.insert(key.to_string(), info.entries.len());
                    }
                    info.entries.push((key.to_string(), value.to_string()));
                }
                None => {
                    let kept: String = line.chars().take(MAX_KEPT_LINE).collect();
                    info.malformed.push((i + 1, kept));
                }
            }
        }
        info
    }

    /// The raw value of `key` (the whole text before `=`, e.g. `OSRELEASE` or `SYMBOL(_stext)`).
    pub fn get(&self, key: &str) -> Option<&str> {
        let idx = *self.first.get(key)?;
        self.entries.get(idx).map(|(_, v)| v.as_str())
    }

    /// `SYMBOL(name)=hex`: the run-time address of a kernel symbol.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        parse_hex(self.get(&format!("SYMBOL({name})"))?)
    }

    /// Names of every `SYMBOL(...)` entry, in note order (first occurrences only).
    pub fn symbol_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().enumerate().filter_map(|(i, (k, _))| {
            let name = k.strip_prefix("SYMBOL(")?.strip_suffix(')')?;
            (self.first.get(k) == Some(&i)).then_some(name)
        })
    }

    /// `NUMBER(name)=` as a signed value (C base-0). `None` when absent, malformed or outside `i64`.
    pub fn number(&self, name: &str) -> Option<i64> {
        let (neg, mag) = parse_c_number(self.get(&format!("NUMBER({name})"))?)?;
        if neg {
            0i64.checked_sub_unsigned(mag)
        } else {
            i64::try_from(mag).ok()
        }
    }

    /// `NUMBER(name)=` wrapped modulo 2^64, the way the kernel uses such values in address arithmetic
    /// (`NUMBER(phys_base)=-272629760` → 0xffff_ffff_efc0_0000; `0xffffff8000000000` stays as it is).
    pub fn number_u64(&self, name: &str) -> Option<u64> {
        let (neg, mag) = parse_c_number(self.get(&format!("NUMBER({name})"))?)?;
        Some(if neg { mag.wrapping_neg() } else { mag })
    }

    /// `OFFSET(struct.member)=` (decimal).
    pub fn offset(&self, struct_member: &str) -> Option<u64> {
        parse_dec(self.get(&format!("OFFSET({struct_member})"))?)
    }

    /// `SIZE(struct)=` (decimal).
    pub fn size(&self, name: &str) -> Option<u64> {
        parse_dec(self.get(&format!("SIZE({name})"))?)
    }

    /// `LENGTH(symbol)=` (decimal): the element count of an array symbol.
    pub fn length(&self, name: &str) -> Option<u64> {
        parse_dec(self.get(&format!("LENGTH({name})"))?)
    }

    /// `KERNELOFFSET=hex`: the KASLR displacement of the kernel image.
    pub fn kernel_offset(&self) -> Option<u64> {
        parse_hex(self.get("KERNELOFFSET")?)
    }

    /// `OSRELEASE=`, e.g. `6.1.0-50-amd64`.
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE").filter(|s| !s.is_empty())
    }

    /// `BUILD-ID=` as its hex text (lowercase hex digits only; anything else gives `None`).
    pub fn build_id(&self) -> Option<&str> {
        self.get("BUILD-ID").filter(|s| {
            !s.is_empty() && s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    /// `PAGESIZE=` (decimal); `None` unless a power of two.
    pub fn page_size(&self) -> Option<u64> {
        parse_dec(self.get("PAGESIZE")?).filter(|p| p.is_power_of_two())
    }

    /// Lines that were not `KEY=value`: (1-based line number, text up to 80 characters).
    pub fn malformed(&self) -> &[(usize, String)] {
        &self.malformed
    }

    /// Keys that occurred more than once (the first occurrence is the one used).
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }

    /// Number of well-formed lines, duplicates included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The text of the first note named "VMCOREINFO" in an ELF note area (a PT_NOTE segment of /proc/kcore or of
/// a vmcore, or a kdump file's ELF notes): the one place notes are searched for it.
pub fn find_in_notes(data: &[u8]) -> Option<String> {
    use object::Endianness;
    use object::elf::FileHeader64;
    use object::read::elf::NoteIterator;
    let mut notes =
        NoteIterator::<FileHeader64<Endianness>>::new(Endianness::Little, 4, data).ok()?;
    // The iterator consumes at least a note header per turn and stops for good after an error.
    while let Ok(Some(note)) = notes.next() {
        if note.name() == b"VMCOREINFO" {
            return Some(text_of(note.desc()));
        }
    }
    None
}

/// VMCOREINFO bytes as text, without trailing NULs.
pub fn text_of(raw: &[u8]) -> String {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}

/// `KEY=value` with a non-empty key of printable ASCII without spaces; the value is everything after the
/// first `=` (it may be empty or contain `=`, as `OSRELEASE` could).
fn split_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once('=')?;
    let key_ok =
        !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic());
    let value_ok = !value.chars().any(|c| c.is_control());
    (key_ok && value_ok).then_some((key, value))
}

/// Hex without prefix, as `%lx` prints it: 1–16 hex digits.
fn parse_hex(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Unsigned decimal, digits only.
fn parse_dec(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// C base-0 (`strtol(s, NULL, 0)` without its leniency): optional `-` or `+`, then `0x`/`0X` hex, a leading
/// `0` octal, or decimal; the whole string must be consumed. Returns (negative, magnitude).
fn parse_c_number(s: &str) -> Option<(bool, u64)> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, h)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, body.get(1..)?)
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    Some((neg, mag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_6_1: &str = "OSRELEASE=6.1.0-50-amd64\n\
        BUILD-ID=4b1c2f0e9a6d7c3b2a1f0e9d8c7b6a5f4e3d2c1b\n\
        PAGESIZE=4096\n\
        SYMBOL(init_uts_ns)=ffffffff9a613440\n\
        OFFSET(uts_namespace.name)=0\n\
        SYMBOL(node_online_map)=ffffffff9a6ff0a8\n\
        SYMBOL(swapper_pg_dir)=ffffffff9a60a000\n\
        SYMBOL(_stext)=ffffffff98000000\n\
        SIZE(page)=64\n\
        OFFSET(page.flags)=0\n\
        LENGTH(zone.free_area)=11\n\
        NUMBER(PG_lru)=4\n\
        NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
        SYMBOL(kallsyms_names)=ffffffff991c2b58\n\
        SYMBOL(kallsyms_num_syms)=ffffffff991c2b50\n\
        SYMBOL(kallsyms_token_table)=ffffffff993f2a40\n\
        SYMBOL(kallsyms_token_index)=ffffffff993f2de0\n\
        SYMBOL(kallsyms_offsets)=ffffffff99138b88\n\
        SYMBOL(kallsyms_relative_base)=ffffffff991c2b48\n\
        NUMBER(phys_base)=-272629760\n\
        SYMBOL(init_top_pgt)=ffffffff9a60a000\n\
        NUMBER(pgtable_l5_enabled)=0\n\
        NUMBER(KERNEL_IMAGE_SIZE)=1073741824\n\
        KERNELOFFSET=17000000\n\
        NUMBER(KERNEL_IMAGE_SIZE)=1073741824\n\
        CRASHTIME=1700000000\n";

    /// The keys synq relies on come out of a note shaped like a real 6.1 one.
    #[test]
    fn real_note_values() {
        let v = VmcoreInfo::parse(REAL_6_1);
        assert_eq!(v.osrelease(), Some("6.1.0-50-amd64"));
        assert_eq!(v.page_size(), Some(4096));
        assert_eq!(
            v.build_id(),
            Some("4b1c2f0e9a6d7c3b2a1f0e9d8c7b6a5f4e3d2c1b")
        );
        assert_eq!(v.symbol("_stext"), Some(0xffff_ffff_9800_0000));
        assert_eq!(
            v.symbol("kallsyms_relative_base"),
            Some(0xffff_ffff_991c_2b48)
        );
        assert_eq!(v.kernel_offset(), Some(0x1700_0000));
        assert_eq!(v.offset("uts_namespace.name"), Some(0));
        assert_eq!(v.size("page"), Some(64));
        assert_eq!(v.length("zone.free_area"), Some(11));
        assert_eq!(v.number("PG_lru"), Some(4));
        assert_eq!(v.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(v.get("CRASHTIME"), Some("1700000000"));
        assert!(v.malformed().is_empty());
        assert_eq!(v.duplicates(), ["NUMBER(KERNEL_IMAGE_SIZE)"]);
        let syms: Vec<&str> = v.symbol_names().collect();
        assert!(syms.contains(&"kallsyms_offsets") && syms.contains(&"init_top_pgt"));
    }

    /// phys_base is negative when the kernel runs below its link address; address arithmetic needs it
    /// wrapped modulo 2^64.
    #[test]
    fn negative_numbers_are_signed_and_wrap() {
        let v = VmcoreInfo::parse(REAL_6_1);
        assert_eq!(v.number("phys_base"), Some(-272_629_760));
        assert_eq!(v.number_u64("phys_base"), Some(0xffff_ffff_efc0_0000));
        assert_eq!(v.number("PAGE_BUDDY_MAPCOUNT_VALUE"), Some(-129));
        assert_eq!(
            v.number_u64("PAGE_BUDDY_MAPCOUNT_VALUE"),
            Some((-129i64) as u64)
        );
    }

    /// NUMBER() is C base-0: 0x hex, leading-0 octal, decimal; a lone 0 is zero.
    #[test]
    fn numbers_follow_c_base_zero() {
        let v = VmcoreInfo::parse(
            "NUMBER(h)=0x1F\nNUMBER(H)=0X10\nNUMBER(o)=017\nNUMBER(z)=0\nNUMBER(neg_hex)=-0x10\n\
             NUMBER(neg_oct)=-010\nNUMBER(plus)=+5\nNUMBER(min)=-9223372036854775808\n\
             NUMBER(big)=0xffffff8000000000\nNUMBER(toobig)=0x1ffffffffffffffff\n\
             NUMBER(bad_oct)=08\nNUMBER(trail)=12abc\nNUMBER(empty)=\nNUMBER(sign)=-\nNUMBER(hexonly)=0x\n\
             NUMBER(space)= 1\n",
        );
        assert_eq!(v.number("h"), Some(31));
        assert_eq!(v.number("H"), Some(16));
        assert_eq!(v.number("o"), Some(15));
        assert_eq!(v.number("z"), Some(0));
        assert_eq!(v.number("neg_hex"), Some(-16));
        assert_eq!(v.number("neg_oct"), Some(-8));
        assert_eq!(v.number("plus"), Some(5));
        assert_eq!(v.number("min"), Some(i64::MIN));
        // Above i64::MAX: no signed value, but the wrapped one is exact.
        assert_eq!(v.number("big"), None);
        assert_eq!(v.number_u64("big"), Some(0xffff_ff80_0000_0000));
        for bad in [
            "toobig", "bad_oct", "trail", "empty", "sign", "hexonly", "space", "absent",
        ] {
            assert_eq!(v.number(bad), None, "{bad}");
            assert_eq!(v.number_u64(bad), None, "{bad}");
        }
    }

    /// SYMBOL() and KERNELOFFSET are bare hex as %lx prints them; a 0x prefix, a sign or 17 digits are not.
    #[test]
    fn symbols_are_bare_hex() {
        let v = VmcoreInfo::parse(
            "SYMBOL(a)=FFFFFFFF81000000\nSYMBOL(b)=0xffffffff81000000\nSYMBOL(c)=1ffffffff81000000\n\
             SYMBOL(d)=-1\nSYMBOL(e)=\nSYMBOL(f)=0\nKERNELOFFSET=0x10\n",
        );
        assert_eq!(v.symbol("a"), Some(0xffff_ffff_8100_0000));
        assert_eq!(v.symbol("f"), Some(0));
        for bad in ["b", "c", "d", "e", "missing"] {
            assert_eq!(v.symbol(bad), None, "{bad}");
        }
        assert_eq!(v.kernel_offset(), None);
    }

    /// Garbage lines are skipped and counted; the lines around them still parse.
    #[test]
    fn garbage_lines_are_counted_not_fatal() {
        let v = VmcoreInfo::parse(
            "OSRELEASE=6.12.0\nthis is not a key value line\n=novalue\nSYMBOL(x y)=10\n\u{1}\u{2}=3\n\
             PAGESIZE=4096\r\nSYMBOL(ok)=10\nSIZE(s)=12x\nOFFSET(a.b)=-4\nPAGESIZE2=4095\nkey=val\u{7}ue\n",
        );
        assert_eq!(v.osrelease(), Some("6.12.0"));
        assert_eq!(v.page_size(), Some(4096), "CRLF line endings are tolerated");
        assert_eq!(v.symbol("ok"), Some(0x10));
        assert_eq!(v.size("s"), None);
        assert_eq!(v.offset("a.b"), None, "OFFSET is unsigned decimal");
        let lines: Vec<usize> = v.malformed().iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [2, 3, 4, 5, 11]);
    }

    /// The first occurrence of a key wins: a value appended to a damaged note cannot override the kernel's.
    #[test]
    fn duplicate_keys_first_wins() {
        let v = VmcoreInfo::parse(
            "SYMBOL(_stext)=ffffffff81000000\nPAGESIZE=4096\nSYMBOL(_stext)=0\nPAGESIZE=65536\n",
        );
        assert_eq!(v.symbol("_stext"), Some(0xffff_ffff_8100_0000));
        assert_eq!(v.page_size(), Some(4096));
        assert_eq!(v.duplicates(), ["SYMBOL(_stext)", "PAGESIZE"]);
        assert_eq!(v.len(), 4);
        assert_eq!(v.symbol_names().collect::<Vec<_>>(), ["_stext"]);
    }

    /// The note text ends at the first NUL (descriptors are padded); nothing after it is read.
    #[test]
    fn text_ends_at_nul() {
        let v = VmcoreInfo::parse("OSRELEASE=6.1\n\0\0\0PAGESIZE=4096\n");
        assert_eq!(v.osrelease(), Some("6.1"));
        assert_eq!(v.page_size(), None);
        assert!(VmcoreInfo::parse("").is_empty());
        assert!(VmcoreInfo::parse("\0OSRELEASE=6.1").is_empty());
    }

    /// Values may contain '=' (only the first one splits); page sizes must be powers of two; build ids hex.
    #[test]
    fn value_shapes() {
        let v = VmcoreInfo::parse("OSRELEASE=6.1=rc1\nPAGESIZE=4095\nBUILD-ID=xyz1\n");
        assert_eq!(v.osrelease(), Some("6.1=rc1"));
        assert_eq!(v.page_size(), None);
        assert_eq!(v.build_id(), None);
        let v = VmcoreInfo::parse("OSRELEASE=\nBUILD-ID=\n");
        assert_eq!(v.osrelease(), None);
        assert_eq!(v.build_id(), None);
        assert_eq!(v.get("OSRELEASE"), Some(""));
    }
}
