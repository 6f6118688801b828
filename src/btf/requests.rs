//! Where the half-open requests themselves are (issue 8, `--requests`), from BTF.
//!
//! 4.4, ef547f2ac16b ("tcp/dccp: remove struct listen_sock"): a request is a `struct request_sock` hashed in
//! the established table (`inet_hashinfo.ehash`, `ehash_mask + 1` nulls-list buckets) in state
//! TCP_NEW_SYN_RECV, pointing at its listener through `rsk_listener` (`__req_common.skc_listener`).
//! 6.1, d1e5e6408b30 ("tcp: Introduce optional per-netns ehash"): a namespace may have its own table,
//! `net->ipv4.tcp_death_row.hashinfo`.

use super::Btf;

use super::types::{find_member, find_path, find_struct};
use super::{Field, field_of};

/// TCP_NEW_SYN_RECV in `enum tcp_state` (4.4+).
pub const TCP_NEW_SYN_RECV: u64 = 12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestsLayout {
    /// `inet_hashinfo.ehash` (pointer) and `.ehash_mask`.
    pub ehash: Field,
    pub ehash_mask: Field,
    /// `inet_ehash_bucket` size and the offset of its `chain` head.
    pub bucket_size: u64,
    pub chain: u64,
    /// In `struct sock_common` (the start of every entry): the nulls node, its `next`, state, family,
    /// local port, remote address (v4, v6) and port.
    pub link: u64,
    pub state: Field,
    pub family: Field,
    pub num: Field,
    pub daddr: Field,
    pub v6_daddr: Option<Field>,
    pub dport: Field,
    /// In `struct request_sock`: the listener, the SYN-ACK timeouts so far (what `/proc/net/tcp` prints as
    /// `retrnsmt`), the timer's expiry (jiffies).
    pub listener: Field,
    pub num_timeout: Field,
    pub expires: Option<Field>,
    /// Bytes of an entry to read to get every field above.
    pub span: u64,
    /// `net.ipv4.tcp_death_row.hashinfo` (6.1+: the namespace's own table, if it has one).
    pub netns_hashinfo: Option<Field>,
}

/// Resolves the requests layout; `None` before 4.4 (no TCP_NEW_SYN_RECV) or when a member is missing.
pub fn resolve(btf: &Btf, ptr_size: u64) -> Option<RequestsLayout> {
    let f = |s: &btf_rs::Struct, path: &[&str]| -> Option<Field> {
        field_of(btf, find_path(btf, s, path).ok()??, ptr_size).ok()
    };
    let hashinfo = find_struct(btf, "inet_hashinfo").ok()?;
    let ehash = f(&hashinfo, &["ehash"])?;
    let ehash_mask = f(&hashinfo, &["ehash_mask"])?;
    let bucket = find_struct(btf, "inet_ehash_bucket").ok()?;
    let chain = find_member(btf, &bucket, "chain").ok()??.bit_offset / 8;
    let sc = find_struct(btf, "sock_common").ok()?;
    let link = find_member(btf, &sc, "skc_nulls_node").ok()??.bit_offset / 8;
    let state = f(&sc, &["skc_state"])?;
    let family = f(&sc, &["skc_family"])?;
    let num = f(&sc, &["skc_num"])?;
    let daddr = f(&sc, &["skc_daddr"])?;
    let v6_daddr = f(&sc, &["skc_v6_daddr"]);
    let dport = f(&sc, &["skc_dport"])?;
    let rs = find_struct(btf, "request_sock").ok()?;
    // rsk_listener is #defined to __req_common.skc_listener (4.4+).
    let listener = f(&sc, &["skc_listener"])?;
    let num_timeout = f(&rs, &["num_timeout"])?;
    let expires = f(&rs, &["rsk_timer", "expires"]);
    let span = [
        Some(Field::bytes(link, ptr_size)),
        Some(state),
        Some(family),
        Some(num),
        Some(daddr),
        v6_daddr,
        Some(dport),
        Some(listener),
        Some(num_timeout),
        expires,
    ]
    .into_iter()
    .flatten()
    .map(|f| f.end())
    .max()
    .unwrap_or(0);
    let netns_hashinfo = find_struct(btf, "net")
        .ok()
        .and_then(|net| f(&net, &["ipv4", "tcp_death_row", "hashinfo"]));
    if span > 1 << 12 || bucket.size() as u64 > 64 || ehash.size() != ptr_size {
        return None;
    }
    Some(RequestsLayout {
        ehash,
        ehash_mask,
        bucket_size: bucket.size() as u64,
        chain,
        link,
        state,
        family,
        num,
        daddr,
        v6_daddr,
        dport,
        listener,
        num_timeout,
        expires,
        span,
        netns_hashinfo,
    })
}
