//! The type ids of the structs synq looks up by name, found in one pass over the raw type section.
//!
//! btf-rs's lazy (mmap) backend answers a lookup by name by scanning every type's name: a dozen lookups are a
//! dozen scans of ~130,000 types (about 1 ms each natively, tens of ms under emulation). This pass reads each
//! type's 12-byte header once, skips its trailing data by kind (include/uapi/linux/btf.h), and keeps the ids
//! of the structs named in [`NAMES`]. It is only a hint: [`super::types::find_struct`] resolves every id
//! through btf-rs and checks its name, and falls back to btf-rs's own scan when the hint is missing or wrong.

/// Every struct synq looks up by name (the layout's roots, and the namespaces, owners, details and requests
/// layouts' own).
pub const NAMES: [&str; 12] = [
    "tcp_sock",
    "inet_hashinfo",
    "inet_ehash_bucket",
    "sock_common",
    "request_sock",
    "net",
    "task_struct",
    "files_struct",
    "fdtable",
    "file",
    "socket",
    "socket_alloc",
];

/// `struct btf_header`'s length, and a type's header (`name_off`, `info`, `size`/`type`).
const HEADER_LEN: usize = 24;
const TYPE_LEN: usize = 12;
const KIND_STRUCT: u32 = 4;

/// The ids of the structs named in [`NAMES`], by position there; `None` when the pass could not finish (a
/// kind it does not know, a record past the end): then nothing is known.
#[derive(Clone, Debug, Default)]
pub struct StructIndex(Option<Vec<Vec<u32>>>);

impl StructIndex {
    /// Scans raw little-endian BTF (header included).
    pub fn scan(raw: &[u8]) -> StructIndex {
        StructIndex(scan(raw))
    }

    /// The ids of `struct NAME`, if `name` is indexed and the pass finished.
    pub fn ids(&self, name: &str) -> Option<&[u32]> {
        let i = NAMES.iter().position(|n| *n == name)?;
        self.0.as_ref()?.get(i).map(Vec::as_slice)
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn scan(raw: &[u8]) -> Option<Vec<Vec<u32>>> {
    let hdr_len = usize::try_from(u32_at(raw, 4)?).ok()?;
    let field = |at| u32_at(raw, at).and_then(|v| usize::try_from(v).ok());
    let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
    if hdr_len < HEADER_LEN {
        return None;
    }
    let types_start = hdr_len.checked_add(type_off)?;
    let types = raw.get(types_start..types_start.checked_add(type_len)?)?;
    let strs_start = hdr_len.checked_add(str_off)?;
    let strings = raw.get(strs_start..strs_start.checked_add(str_len)?)?;
    let mut found: Vec<Vec<u32>> = NAMES.iter().map(|_| Vec::new()).collect();
    let mut at = 0usize;
    let mut id = 0u32;
    while at < types.len() {
        id = id.checked_add(1)?;
        let name_off = usize::try_from(u32_at(types, at)?).ok()?;
        let info = u32_at(types, at + 4)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let extra = match kind {
            // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: nothing follows.
            2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
            // INT (its encoding), VAR (its linkage), DECL_TAG (its component index): one u32.
            1 | 14 | 17 => 4,
            // ARRAY: struct btf_array.
            3 => 12,
            // STRUCT, UNION: btf_member (name, type, offset); DATASEC: btf_var_secinfo; ENUM64: btf_enum64.
            4 | 5 | 15 | 19 => vlen * 12,
            // ENUM: btf_enum; FUNC_PROTO: btf_param.
            6 | 13 => vlen * 8,
            _ => return None,
        };
        if kind == KIND_STRUCT && name_off != 0 && vlen != 0 {
            let name = strings.get(name_off..)?;
            let name = name.get(..name.iter().position(|&b| b == 0)?)?;
            if let Some(i) = NAMES.iter().position(|n| n.as_bytes() == name) {
                found.get_mut(i)?.push(id);
            }
        }
        at = at.checked_add(TYPE_LEN + extra)?;
    }
    (at == types.len()).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little BTF: `int`, `struct file { int f; }`, a pointer, an enum of two, and `struct net` (empty:
    /// a declaration-like struct with no members is not indexed), then `struct net { int a; int b; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0file\0f\0net\0a\0b\0e\0x\0y\0".to_vec();
        let off = |s: &str| {
            let pat = [s.as_bytes(), b"\0"].concat();
            strings
                .windows(pat.len())
                .enumerate()
                .find(|(i, w)| *w == pat.as_slice() && strings.get(i - 1) == Some(&0))
                .map(|(i, _)| i as u32)
                .unwrap_or(0)
        };
        let mut t = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, size: u32, extra: &[u32]| {
            for v in [name, (kind << 24) | vlen, size].iter().chain(extra) {
                t.extend_from_slice(&v.to_le_bytes());
            }
        };
        ty(off("int"), 1, 0, 4, &[32]); // 1: int
        ty(off("file"), 4, 1, 4, &[off("f"), 1, 0]); // 2: struct file
        ty(0, 2, 0, 2, &[]); // 3: pointer to it
        ty(off("e"), 6, 2, 4, &[off("x"), 0, off("y"), 1]); // 4: enum e
        ty(off("net"), 4, 0, 0, &[]); // 5: struct net, no members
        ty(off("net"), 4, 2, 8, &[off("a"), 1, 0, off("b"), 1, 32]); // 6: struct net
        let mut raw = Vec::new();
        raw.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        raw.extend_from_slice(&t);
        raw.extend_from_slice(&strings);
        raw
    }

    #[test]
    fn finds_named_structs_by_id_through_every_record_size() {
        let idx = StructIndex::scan(&sample());
        assert_eq!(idx.ids("file"), Some(&[2u32][..]));
        assert_eq!(idx.ids("net"), Some(&[6u32][..]));
        assert_eq!(idx.ids("socket"), Some(&[][..]));
        assert_eq!(idx.ids("not_indexed"), None);
    }

    #[test]
    fn unknown_kinds_and_truncation_give_no_answer() {
        let raw = sample();
        // Cut inside the last record: the pass cannot finish.
        let mut cut = raw.clone();
        let type_len = u32_at(&raw, 12).unwrap_or(0);
        cut[12..16].copy_from_slice(&(type_len - 4).to_le_bytes());
        assert!(StructIndex::scan(&cut).ids("file").is_none());
        // Kind 31 in the first record.
        let mut odd = raw.clone();
        odd[24 + 7] = 31;
        assert!(StructIndex::scan(&odd).ids("file").is_none());
        assert!(StructIndex::scan(&[]).ids("file").is_none());
        assert!(StructIndex::scan(&raw[..30]).ids("file").is_none());
    }
}
