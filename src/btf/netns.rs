//! Per-network-namespace layout (issue 8): where `struct net` keeps the listen-related sysctls and the
//! TcpExt counters, from BTF.
//!
//! The counters are `net->mib.net_statistics`, a per-CPU `struct linux_mib { unsigned long mibs[N]; }`,
//! indexed by the anonymous `enum { LINUX_MIB_... }` whose values change between kernels (ListenOverflows is
//! 19 in 5.4, 23 in 6.18): the indices are read from that enum in the BTF, never assumed.

use btf_rs::{BtfType, Type};

use super::Btf;

use super::types::{find_member, find_path, find_struct, size_of, struct_via, type_by_id};
use super::{Field, field_of};

/// The TcpExt counters synq reports, as `/proc/net/netstat` names them, with their enum names.
pub const COUNTERS: [(&str, &str); 7] = [
    ("ListenOverflows", "LINUX_MIB_LISTENOVERFLOWS"),
    ("ListenDrops", "LINUX_MIB_LISTENDROPS"),
    ("SyncookiesSent", "LINUX_MIB_SYNCOOKIESSENT"),
    ("SyncookiesRecv", "LINUX_MIB_SYNCOOKIESRECV"),
    ("SyncookiesFailed", "LINUX_MIB_SYNCOOKIESFAILED"),
    ("TCPReqQFullDrop", "LINUX_MIB_TCPREQQFULLDROP"),
    ("TCPReqQFullDoCookies", "LINUX_MIB_TCPREQQFULLDOCOOKIES"),
];

/// Offsets inside `struct net` (each sysctl `None` where the kernel lacks it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsLayout {
    /// `net.list`, the node in `net_namespace_list`.
    pub list: u64,
    /// `net.ns.inum`.
    pub inum: Field,
    /// `net.core.sysctl_somaxconn`.
    pub somaxconn: Option<Field>,
    /// `net.ipv4.sysctl_max_syn_backlog` (per namespace since 4.15, 1b79e76ad89f).
    pub max_syn_backlog: Option<Field>,
    /// `net.ipv4.sysctl_tcp_syncookies` (an int until 5.x; u8 since 6.0, "net: ipv4: convert sysctls to
    /// u8": the width comes from BTF).
    pub syncookies: Option<Field>,
    /// `net.ipv4.sysctl_tcp_synack_retries` (likewise int, then u8).
    pub synack_retries: Option<Field>,
    /// `net.mib.net_statistics`, the per-CPU `struct linux_mib *`.
    pub mib_ptr: Option<Field>,
    /// Size of one `unsigned long` counter, and how many `mibs[]` holds.
    pub mib_word: u64,
    pub mib_len: u64,
    /// Index in `mibs[]` of each of [`COUNTERS`], `None` where the enum lacks it.
    pub counters: Vec<(&'static str, Option<u64>)>,
    /// `net.ipv4.tcp_death_row.hashinfo`: the namespace's established table (6.1+: its own, if
    /// `tcp_child_ehash_entries` was set when it was created; else `tcp_hashinfo`).
    pub hashinfo: Option<Field>,
    /// Bytes of `struct net` to read to get every field above.
    pub span: u64,
}

impl NetnsLayout {
    /// What `synq layout --json` shows: byte offsets in `struct net`, and each counter's index in `mibs[]`.
    pub fn to_json(&self) -> serde_json::Value {
        let off = |f: Option<Field>| f.map(|f| f.offset());
        serde_json::json!({
            "list_offset": self.list,
            "inum_offset": self.inum.offset(),
            "somaxconn_offset": off(self.somaxconn),
            "max_syn_backlog_offset": off(self.max_syn_backlog),
            "syncookies_offset": off(self.syncookies),
            "synack_retries_offset": off(self.synack_retries),
            "net_statistics_offset": off(self.mib_ptr),
            "mibs": self.mib_len,
            "counters": self.counters.iter().map(|(n, i)| (n.to_string(), serde_json::json!(i)))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Resolves the namespace layout; `None` when the BTF has no usable `struct net`.
pub fn resolve(btf: &Btf, ptr_size: u64) -> Option<NetnsLayout> {
    let net = find_struct(btf, "net").ok()?;
    let list = find_member(btf, &net, "list").ok()??;
    // 3.19, 435d5f4bb2cc ("common object embedded into various struct ....ns"): net.ns.inum.
    let inum = field_of(btf, find_path(btf, &net, &["ns", "inum"]).ok()??, ptr_size).ok()?;
    let opt = |path: &[&str]| -> Option<Field> {
        field_of(btf, find_path(btf, &net, path).ok()??, ptr_size).ok()
    };
    let somaxconn = opt(&["core", "sysctl_somaxconn"]);
    let max_syn_backlog = opt(&["ipv4", "sysctl_max_syn_backlog"]);
    let syncookies = opt(&["ipv4", "sysctl_tcp_syncookies"]);
    let synack_retries = opt(&["ipv4", "sysctl_tcp_synack_retries"]);
    let hashinfo = opt(&["ipv4", "tcp_death_row", "hashinfo"]).filter(|f| f.size() == ptr_size);

    let mut mib_ptr = None;
    let (mut mib_word, mut mib_len) = (0, 0);
    if let Some(m) = find_path(btf, &net, &["mib", "net_statistics"])
        .ok()
        .flatten()
        && let Some((word, len)) = struct_via(btf, m.type_id, "linux_mib")
            .ok()
            .and_then(|lm| find_member(btf, &lm, "mibs").ok().flatten())
            .and_then(|mibs| match type_by_id(btf, mibs.type_id).ok()? {
                Type::Array(a) => {
                    let elem = type_by_id(btf, a.get_type_id()?).ok()?;
                    Some((size_of(btf, &elem, ptr_size).ok()?, a.len() as u64))
                }
                _ => None,
            })
    {
        mib_ptr = Some(Field::bytes(m.bit_offset / 8, ptr_size));
        (mib_word, mib_len) = (word, len);
    }
    let counters = if mib_ptr.is_some() {
        mib_indices(btf)
    } else {
        COUNTERS.iter().map(|(n, _)| (*n, None)).collect()
    };
    let counters = counters
        .into_iter()
        .map(|(n, i)| (n, i.filter(|&i| i < mib_len)))
        .collect();

    let list = Field::bytes(list.bit_offset / 8, ptr_size);
    let span = [
        Some(list),
        Some(inum),
        somaxconn,
        max_syn_backlog,
        syncookies,
        synack_retries,
        mib_ptr,
        hashinfo,
    ]
    .into_iter()
    .flatten()
    .map(|f| f.end())
    .max()
    .unwrap_or(0);
    if span > 1 << 20 || !(1..=8).contains(&mib_word) && mib_ptr.is_some() {
        return None;
    }
    Some(NetnsLayout {
        list: list.offset(),
        inum,
        somaxconn,
        max_syn_backlog,
        syncookies,
        synack_retries,
        mib_ptr,
        mib_word,
        mib_len,
        counters,
        hashinfo,
        span,
    })
}

/// The index of each counter in the anonymous `enum { LINUX_MIB_NUM = 0, ... }`. That enum has no name to
/// look up, so the types are scanned once for the enum that holds `LINUX_MIB_LISTENOVERFLOWS` (bounded by
/// the number of types in the file).
/// More types than any vmlinux BTF holds (about 130,000 today).
const MAX_TYPES: u32 = 1 << 21;

fn mib_indices(btf: &Btf) -> Vec<(&'static str, Option<u64>)> {
    let mut found: Vec<(&'static str, Option<u64>)> =
        COUNTERS.iter().map(|(n, _)| (*n, None)).collect();
    // Type ids run from 1 to the last type; the first id that does not resolve ends the scan.
    for id in 1..=MAX_TYPES {
        let Ok(ty) = btf.resolve_type_by_id(id) else {
            break;
        };
        let Type::Enum(e) = ty else {
            continue;
        };
        let mut names: Vec<(String, u64)> = Vec::new();
        let mut ours = false;
        for m in &e.members {
            let Ok(name) = btf.resolve_name(m) else {
                continue;
            };
            if !name.starts_with("LINUX_MIB_") {
                break;
            }
            ours |= name == "LINUX_MIB_LISTENOVERFLOWS";
            names.push((name, u64::from(m.val())));
        }
        if !ours {
            continue;
        }
        for (slot, (_, enum_name)) in found.iter_mut().zip(COUNTERS.iter()) {
            slot.1 = names.iter().find(|(n, _)| n == enum_name).map(|(_, v)| *v);
        }
        break;
    }
    found
}
