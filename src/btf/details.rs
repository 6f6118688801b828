//! Per-listener details beyond the queue counts (drops, SYN-flood state, Fast Open, TCP_DEFER_ACCEPT,
//! SO_REUSEPORT group, socket inode), resolved from BTF like everything else.
//!
//! Each detail is optional: a kernel that lacks a member reports `null` for it, never 0, and a detail that
//! cannot be resolved never costs the queue figures. Every branch names the upstream change it follows.

use btf_rs::{Struct, Type};

use super::Btf;

use super::types::{as_struct, find_member, find_path, struct_via, type_by_id};
use super::{Field, atomic_field, field_of};

/// The Fast Open queue of a listener (`struct fastopen_queue`: `qlen`, `max_qlen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastOpen {
    /// 4.4+, 0536fcc039a8 ("tcp: prepare fastopen code for upcoming listener changes"): embedded in
    /// `request_sock_queue`; offsets relative to the socket.
    Embedded { qlen: Field, max_qlen: Field },
    /// 3.7 – 4.3: `request_sock_queue.fastopenq` is a pointer, NULL until TCP_FASTOPEN is set; `qlen` and
    /// `max_qlen` relative to `struct fastopen_queue`.
    Pointer {
        ptr: Field,
        qlen: Field,
        max_qlen: Field,
    },
}

/// The socket inode, as `sock_i_ino()` finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inode {
    /// 6.18, "net: cache inode number into sk->sk_ino": the number kept in the sock itself (0 without one).
    Cached(Field),
    /// `sk_socket` → `struct socket_alloc { struct socket socket; struct inode vfs_inode; }` → `i_ino`
    /// (`SOCK_INODE()`); `ino` is relative to the `struct socket`. A NULL `sk_socket` (kernel listeners
    /// created without a file, a socket being torn down) has none.
    Socket { socket: Field, ino: Field },
}

/// Where the drop count lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drops {
    /// `sk_drops` (atomic_t), which `tcp_listendrop()` increments (4.7+, 532182cd6107 "tcp: increment
    /// sk_drops for dropped rx packets"; earlier listeners counted drops only in the namespace MIB).
    pub sk_drops: Field,
    /// 6.18, "net: add per-numa node drop counters": `sk_drop_counters`, a pointer to
    /// `struct numa_drop_counters`; when set, `sk_drops_read()` sums its counters instead of `sk_drops`.
    /// The counters' fields, relative to that struct.
    pub numa: Option<(Field, Vec<Field>)>,
}

/// The SO_REUSEPORT group: `sk_reuseport_cb` (4.5+, ef456144da8e "soreuseport: define reuseport groups")
/// → `struct sock_reuseport.num_socks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reuseport {
    pub cb: Field,
    /// Relative to `struct sock_reuseport`.
    pub num_socks: Field,
}

/// Everything optional the walker reads for a listener, besides its identity and queues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub drops: Option<Drops>,
    /// `request_sock_queue.synflood_warned` (4.4+; a u32 until 5.x, then u8: the width comes from BTF).
    pub synflood_warned: Option<Field>,
    /// `request_sock_queue.rskq_defer_accept`: TCP_DEFER_ACCEPT, as the number of SYN-ACK retransmits.
    pub defer_accept: Option<Field>,
    pub fastopen: Option<FastOpen>,
    pub reuseport: Option<Reuseport>,
    pub inode: Option<Inode>,
    /// `sk_socket`: the `struct socket` an open file points to, which is how the owners walk recognises a
    /// listener (an MPTCP subflow listener is grafted onto its MPTCP socket's, whose `sk` is not the subflow).
    pub socket: Option<Field>,
}

impl Details {
    /// What `synq layout --json` shows of them: byte offsets in `struct sock` (`null` where the kernel
    /// lacks the member) and which variant each follows.
    pub fn to_json(&self) -> serde_json::Value {
        let off = |f: Option<Field>| f.map(|f| f.offset());
        serde_json::json!({
            "drops_offset": off(self.drops.as_ref().map(|d| d.sk_drops)),
            "drop_counters_offset": off(self.drops.as_ref().and_then(|d| d.numa.as_ref().map(|n| n.0))),
            "synflood_warned_offset": off(self.synflood_warned),
            "defer_accept_offset": off(self.defer_accept),
            "fastopen": match self.fastopen {
                Some(FastOpen::Embedded { qlen, max_qlen }) => serde_json::json!({
                    "embedded": true, "qlen_offset": qlen.offset(), "max_qlen_offset": max_qlen.offset() }),
                Some(FastOpen::Pointer { ptr, .. }) => serde_json::json!({
                    "embedded": false, "pointer_offset": ptr.offset() }),
                None => serde_json::Value::Null,
            },
            "reuseport_cb_offset": off(self.reuseport.map(|r| r.cb)),
            "inode": match self.inode {
                Some(Inode::Cached(f)) => serde_json::json!({ "sk_ino_offset": f.offset() }),
                Some(Inode::Socket { socket, ino }) => serde_json::json!({
                    "sk_socket_offset": socket.offset(), "i_ino_from_socket": ino.offset() }),
                None => serde_json::Value::Null,
            },
        })
    }

    /// The fields read from the socket itself (they widen the one read per socket).
    pub fn sock_fields(&self) -> Vec<Field> {
        let mut v = Vec::new();
        if let Some(d) = &self.drops {
            v.push(d.sk_drops);
            if let Some((p, _)) = &d.numa {
                v.push(*p);
            }
        }
        v.extend(self.synflood_warned);
        v.extend(self.socket);
        v.extend(self.defer_accept);
        match self.fastopen {
            Some(FastOpen::Embedded { qlen, max_qlen }) => v.extend([qlen, max_qlen]),
            Some(FastOpen::Pointer { ptr, .. }) => v.push(ptr),
            None => {}
        }
        if let Some(r) = &self.reuseport {
            v.push(r.cb);
        }
        match self.inode {
            Some(Inode::Cached(f)) | Some(Inode::Socket { socket: f, .. }) => v.push(f),
            None => {}
        }
        v
    }
}

/// Resolves the details. `sock` and `rsq` are `struct sock` and `struct request_sock_queue`; `aq_off` is
/// the byte offset of `icsk_accept_queue` in the socket. Any part that does not resolve is left out.
pub(super) fn resolve(
    btf: &Btf,
    sock: &Struct,
    rsq: &Struct,
    aq_off: u64,
    ptr_size: u64,
) -> Details {
    let ptr = |f: super::types::Found| Field::bytes(f.bit_offset / 8, ptr_size);
    let in_queue = |name: &str| -> Option<Field> {
        let f = find_member(btf, rsq, name).ok()??;
        Some(atomic_field(btf, f, ptr_size).ok()?.shifted(aq_off))
    };
    let sk_member = |name: &str| find_member(btf, sock, name).ok().flatten();

    let drops = sk_member("sk_drops").and_then(|f| {
        let sk_drops = atomic_field(btf, f, ptr_size).ok()?;
        let numa = sk_member("sk_drop_counters").and_then(|p| {
            let s = struct_via(btf, p.type_id, "numa_drop_counters").ok()?;
            let counters = atomic_members(btf, &s, ptr_size);
            (!counters.is_empty()).then(|| (ptr(p), counters))
        });
        Some(Drops { sk_drops, numa })
    });

    let fastopen = find_member(btf, rsq, "fastopenq")
        .ok()
        .flatten()
        .and_then(|f| {
            let fq = struct_via(btf, f.type_id, "fastopen_queue").ok()?;
            let qlen = atomic_field(btf, find_member(btf, &fq, "qlen").ok()??, ptr_size).ok()?;
            let max_qlen =
                atomic_field(btf, find_member(btf, &fq, "max_qlen").ok()??, ptr_size).ok()?;
            let at = aq_off + f.bit_offset / 8;
            match type_by_id(btf, f.type_id).ok()? {
                Type::Ptr(_) => Some(FastOpen::Pointer {
                    ptr: Field::bytes(at, ptr_size),
                    qlen,
                    max_qlen,
                }),
                _ => Some(FastOpen::Embedded {
                    qlen: qlen.shifted(at),
                    max_qlen: max_qlen.shifted(at),
                }),
            }
        });

    let reuseport = sk_member("sk_reuseport_cb").and_then(|f| {
        let s = struct_via(btf, f.type_id, "sock_reuseport").ok()?;
        let num_socks = field_of(btf, find_member(btf, &s, "num_socks").ok()??, ptr_size).ok()?;
        Some(Reuseport {
            cb: ptr(f),
            num_socks,
        })
    });

    let inode = match sk_member("sk_ino") {
        Some(f) => field_of(btf, f, ptr_size).ok().map(Inode::Cached),
        None => sk_member("sk_socket").and_then(|f| {
            let alloc = super::types::find_struct(btf, "socket_alloc").ok()?;
            let socket = find_member(btf, &alloc, "socket").ok()??;
            let ino = find_path(btf, &alloc, &["vfs_inode", "i_ino"]).ok()??;
            let ino = field_of(btf, ino, ptr_size).ok()?;
            // SOCK_INODE() is container_of(socket, struct socket_alloc, socket)->vfs_inode.
            let rel = ino.bit_offset.checked_sub(socket.bit_offset)?;
            Some(Inode::Socket {
                socket: ptr(f),
                ino: Field {
                    bit_offset: rel,
                    bits: ino.bits,
                },
            })
        }),
    };

    let socket = sk_member("sk_socket").map(ptr);
    Details {
        socket,
        drops,
        synflood_warned: in_queue("synflood_warned"),
        defer_accept: in_queue("rskq_defer_accept"),
        fastopen,
        reuseport,
        inode,
    }
}

/// The `atomic_t` (or int) members of a struct of counters, such as `numa_drop_counters { drops0, drops1 }`.
fn atomic_members(btf: &Btf, s: &Struct, ptr_size: u64) -> Vec<Field> {
    let mut out = Vec::new();
    for m in s.members.iter().take(64) {
        let Some(name) = btf.resolve_name(m).ok().filter(|n| !n.is_empty()) else {
            continue;
        };
        let Ok(Some(f)) = find_member(btf, s, &name) else {
            continue;
        };
        let is_counter = match type_by_id(btf, f.type_id) {
            Ok(Type::Int(_)) => true,
            Ok(Type::Struct(_)) => as_struct(btf, f.type_id)
                .ok()
                .flatten()
                .and_then(|inner| find_member(btf, &inner, "counter").ok().flatten())
                .is_some(),
            _ => false,
        };
        if is_counter
            && let Ok(field) = atomic_field(btf, f, ptr_size)
            && field.bits <= 64
        {
            out.push(field);
        }
    }
    out
}
