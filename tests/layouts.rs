#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! `synq layout --btf FILE --json` against the independent oracle `tests/fixtures/layouts.json` (copied
//! from ../shared/btf, produced by a separate raw-BTF parser; the entries of the Debian arm64 kernels' BTF,
//! taken from the test guests' /sys/kernel/btf/vmlinux, by `tests/fixtures/btf_layout_oracle.py` from
//! bpftool's dump, which agrees with the original entries where both exist), for every real BTF file of the
//! corpus.
//! Why: every struct offset the walker uses comes from this resolution; a wrong one reads wrong memory.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use test_case::test_case;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn oracle(file: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join("layouts.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[file].clone()
}

fn synq_layout(file: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_synq"))
        .args(["layout", "--json", "--btf"])
        .arg(fixtures().join(file))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "synq layout failed for {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the oracle says each key of `synq layout --json` must be.
fn expected(o: &Value) -> Vec<(&'static str, Value)> {
    let members = o["inet_listen_hashbucket"]["members"].as_array().unwrap();
    let member = |name: &str| members.iter().find(|m| m["name"] == name);
    let nulls_head = member("nulls_head");
    let head = member("head");
    let (head_off, nulls) = match (nulls_head, head) {
        (Some(n), _) => (n["offset"].clone(), true),
        (None, Some(h)) => (h["offset"].clone(), h["type"] == "struct hlist_nulls_head"),
        (None, None) => panic!("oracle has no bucket head"),
    };
    let sk_common = o["sock"]["__sk_common"]["offset"].as_u64().unwrap();
    let link = if nulls { "skc_nulls_node" } else { "skc_node" };
    let link_offset = sk_common + o["sock_common"][link]["offset"].as_u64().unwrap();
    let aq = o["icsk_accept_queue"]["offset"].as_u64().unwrap();
    let rsq = &o["request_sock_queue"]["members"];
    let plus_aq = |v: &Value| -> Value {
        match v.as_u64() {
            Some(x) => (aq + x).into(),
            None => Value::Null,
        }
    };
    let hi = &o["inet_hashinfo"];
    let table = if hi["listening_hash"].is_object() {
        "listening_hash"
    } else {
        "lhash2"
    };
    let lh_buckets = hi["listening_hash"]["type"].as_str().map(|t| {
        let n = t.rsplit('[').next().unwrap().trim_end_matches(']');
        Value::from(n.parse::<u64>().unwrap())
    });
    let sc = |k: &str| (sk_common + o["sock_common"][k]["offset"].as_u64().unwrap()).into();
    vec![
        ("table", table.into()),
        ("bucket_size", o["inet_listen_hashbucket"]["size"].clone()),
        ("bucket_head_offset", head_off),
        (
            "bucket_count_offset",
            member("count")
                .map(|c| c["offset"].clone())
                .unwrap_or(Value::Null),
        ),
        ("nulls", nulls.into()),
        ("link_offset", link_offset.into()),
        ("qlen_offset", plus_aq(&rsq["qlen"]["offset"])),
        ("young_offset", plus_aq(&rsq["young"]["offset"])),
        ("listen_opt_offset", plus_aq(&rsq["listen_opt"]["offset"])),
        (
            "listen_sock_qlen_offset",
            o["listen_sock"]["members"]["qlen"]["offset"].clone(),
        ),
        (
            "ack_backlog_offset",
            o["sock"]["sk_ack_backlog"]["offset"].clone(),
        ),
        (
            "ack_backlog_size",
            o["sock"]["sk_ack_backlog"]["size"].clone(),
        ),
        (
            "max_ack_backlog_offset",
            o["sock"]["sk_max_ack_backlog"]["offset"].clone(),
        ),
        (
            "max_ack_backlog_size",
            o["sock"]["sk_max_ack_backlog"]["size"].clone(),
        ),
        ("pointer_size", o["ptr_size"].clone()),
        ("hashinfo_size", o["inet_hashinfo_size"].clone()),
        (
            "listening_hash_offset",
            hi["listening_hash"]["offset"].clone(),
        ),
        ("listening_hash_buckets", lh_buckets.unwrap_or(Value::Null)),
        (
            "lhash2_offset",
            if table == "lhash2" {
                hi["lhash2"]["offset"].clone()
            } else {
                Value::Null
            },
        ),
        (
            "lhash2_mask_offset",
            if table == "lhash2" {
                hi["lhash2_mask"]["offset"].clone()
            } else {
                Value::Null
            },
        ),
        ("family_offset", sc("skc_family")),
        ("state_offset", sc("skc_state")),
        ("num_offset", sc("skc_num")),
    ]
}

#[test_case("android13-gki-5.10-arm64.btf.xz"; "android 5.10 arm64, union head")]
#[test_case("anolis8-4.18.0-193.60.2.an8_2-x86_64.btf.xz"; "rhel8 4.18, hlist head")]
#[test_case("bclinux21.10U3-4.19.90-2107.6.0.0248.35.oe1-x86_64.btf.xz"; "4.19 with the union backport")]
#[test_case("centos7-3.10.0-1160.el7-x86_64.btf.xz"; "3.10 listen_opt era, u16 backlog")]
#[test_case("centos8-4.18.0-147.5.1.el8_1-arm64.btf.xz"; "non-deduplicated BTF, 99 struct sock")]
#[test_case("cilium-ebpf-5.15-x86_64.btf.xz"; "5.15")]
#[test_case("cilium-ebpf-5.19.15-x86_64.btf.xz"; "5.19 lhash2 only")]
#[test_case("cilium-ebpf-5.4-x86_64.btf.xz"; "5.4 lockdep spinlock 56 bytes")]
#[test_case("cilium-ebpf-7.1-x86_64.btf.xz"; "7.1")]
#[test_case("debian12-6.1.0-50-arm64.btf.xz"; "Debian 12 arm64 6.1")]
#[test_case("debian13-6.12.117+deb13-arm64.btf.xz"; "Debian 13 arm64 6.12")]
#[test_case("debian-sid-7.2.13+deb14-arm64-16k.btf.xz"; "Debian unstable arm64 16K pages 7.2")]
#[test_case("host-6.18.44-x86_64.btf.xz"; "6.18 smaller request_sock_queue")]
#[test_case("retis-btf-rs-6.15.1-tinyconfig-i386.btf.xz"; "i386 tinyconfig, 4-byte pointers, 0-byte lock")]
#[test_case("ubuntu18.04-4.15.0-x86_64.btf.xz"; "4.15 with nulls_head backport")]
fn layout_matches_oracle(file: &str) {
    let o = oracle(file);
    assert!(o.is_object(), "{file} missing from layouts.json");
    let got = synq_layout(file);
    let mut bad = Vec::new();
    for (key, want) in expected(&o) {
        if got[key] != want {
            bad.push(format!("{key}: synq {} vs oracle {want}", got[key]));
        }
    }
    assert!(bad.is_empty(), "{file}:\n  {}", bad.join("\n  "));
}

#[test]
fn every_corpus_file_is_tested() {
    // Why: a BTF file added to the corpus must not silently escape the oracle check above.
    let text = std::fs::read_to_string(fixtures().join("layouts.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let src = std::fs::read_to_string(file!()).unwrap();
    for name in all.as_object().unwrap().keys() {
        assert!(
            src.contains(&format!("#[test_case(\"{name}\"")),
            "{name} has no test case"
        );
        assert!(
            fixtures().join(name).exists(),
            "{name} not copied into tests/fixtures"
        );
    }
}

/// The per-listener details (issue 8) sit inside the structs the oracle places independently: the Fast Open
/// queue's counters inside `request_sock_queue.fastopenq`, TCP_DEFER_ACCEPT and synflood_warned inside
/// `request_sock_queue` before its `qlen`. Their exact values are checked against real kernels (the guest's
/// `/proc/net/tcp`, `ss -ltm`, dmesg: tests/realkernel/check_details.py).
#[test]
fn details_sit_inside_the_structs_the_oracle_places() {
    let text = std::fs::read_to_string(fixtures().join("layouts.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for (file, o) in all.as_object().unwrap() {
        let got = synq_layout(file);
        let d = &got["details"];
        let aq = o["icsk_accept_queue"]["offset"].as_u64().unwrap();
        let rsq = &o["request_sock_queue"]["members"];
        let Some(qlen) = rsq["qlen"]["offset"].as_u64() else {
            // 3.10: listen_opt era; synflood_warned lives in listen_sock, not reported.
            assert!(d["synflood_warned_offset"].is_null(), "{file}");
            continue;
        };
        for key in ["defer_accept_offset", "synflood_warned_offset"] {
            let off = d[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: {key} missing"));
            assert!(
                (aq..aq + qlen).contains(&off),
                "{file}: {key} {off} outside request_sock_queue before qlen ({aq}+{qlen})"
            );
        }
        let fq = aq + rsq["fastopenq"]["offset"].as_u64().unwrap();
        let fq_end = fq + rsq["fastopenq"]["size"].as_u64().unwrap();
        for key in ["qlen_offset", "max_qlen_offset"] {
            let off = d["fastopen"][key].as_u64().unwrap();
            assert!(
                (fq..fq_end).contains(&off),
                "{file}: fastopen {key} {off} outside {fq}..{fq_end}"
            );
        }
        assert!(d["drops_offset"].is_u64(), "{file}: no sk_drops");
        assert!(
            d["reuseport_cb_offset"].is_u64(),
            "{file}: no sk_reuseport_cb"
        );
        assert!(d["inode"].is_object(), "{file}: no way to the inode");
        checked += 1;
    }
    assert!(checked >= 10, "{checked} files checked");
}

/// Every corpus kernel with namespaced listen sysctls (4.15+) resolves the namespace layout: each sysctl,
/// and each TcpExt counter at a distinct index inside `mibs[]` (indices that moved between kernels: the
/// enum is read from the BTF).
#[test]
fn namespace_counters_resolve_on_every_corpus_kernel() {
    let mut seen_indices = std::collections::HashSet::new();
    for file in [
        "android13-gki-5.10-arm64.btf.xz",
        "cilium-ebpf-5.4-x86_64.btf.xz",
        "cilium-ebpf-5.15-x86_64.btf.xz",
        "cilium-ebpf-7.1-x86_64.btf.xz",
        "debian12-6.1.0-50-arm64.btf.xz",
        "debian13-6.12.117+deb13-arm64.btf.xz",
        "debian-sid-7.2.13+deb14-arm64-16k.btf.xz",
        "host-6.18.44-x86_64.btf.xz",
        "ubuntu18.04-4.15.0-x86_64.btf.xz",
    ] {
        let loaded = synq::btf::load_file(&fixtures().join(file)).unwrap();
        let ns = synq::btf::netns::resolve(&loaded.btf, 8).unwrap_or_else(|| panic!("{file}"));
        assert!(
            ns.somaxconn.is_some() && ns.max_syn_backlog.is_some(),
            "{file}"
        );
        assert!(
            ns.syncookies.is_some() && ns.synack_retries.is_some(),
            "{file}"
        );
        assert!(ns.mib_ptr.is_some() && ns.mib_word == 8, "{file}");
        let idx: Vec<u64> = ns
            .counters
            .iter()
            .map(|(n, i)| i.unwrap_or_else(|| panic!("{file}: {n}")))
            .collect();
        let distinct: std::collections::HashSet<_> = idx.iter().collect();
        assert_eq!(distinct.len(), idx.len(), "{file}: {idx:?}");
        assert!(
            idx.iter().all(|&i| i > 0 && i < ns.mib_len),
            "{file}: {idx:?} / {}",
            ns.mib_len
        );
        seen_indices.insert(idx);
    }
    // The enum moved between these kernels: fixed indices would be wrong somewhere.
    assert!(seen_indices.len() >= 2, "{seen_indices:?}");
}

/// The owners chain (task list, file table, socket file) resolves on every corpus kernel, pointers at
/// pointer size and `comm` as the 16-byte TASK_COMM_LEN array.
#[test]
fn owners_chain_resolves_on_every_corpus_kernel() {
    let text = std::fs::read_to_string(fixtures().join("layouts.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    for (file, o) in all.as_object().unwrap() {
        let ptr = o["ptr_size"].as_u64().unwrap();
        let loaded = synq::btf::load_file(&fixtures().join(file)).unwrap();
        let l = synq::btf::owners::resolve(&loaded.btf, ptr).unwrap_or_else(|| panic!("{file}"));
        assert_eq!(l.comm.1, 16, "{file}");
        assert_eq!(l.files.size(), ptr, "{file}");
        assert_ne!(l.f_op.offset(), l.private_data.offset(), "{file}");
    }
}

/// The load-time struct index (one pass over the raw type section, `btf::index`) finds, on every real BTF of
/// the corpus, exactly the ids btf-rs's own name scan finds for the structs synq looks up (full definitions:
/// forward declarations and empty structs left out). Why: `find_struct` trusts those ids first.
#[test]
fn struct_index_agrees_with_btf_rs_on_every_corpus_file() {
    let text = std::fs::read_to_string(fixtures().join("layouts.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for file in all.as_object().unwrap().keys() {
        let loaded = synq::btf::load_file(&fixtures().join(file)).unwrap();
        let btf = &loaded.btf;
        for name in synq::btf::index::NAMES {
            let scanned: Vec<u32> = btf
                .resolve_ids_by_name(name)
                .unwrap()
                .into_iter()
                .filter(|&id| {
                    matches!(btf.resolve_type_by_id(id), Ok(btf_rs::Type::Struct(s)) if !s.members.is_empty())
                })
                .collect();
            assert_eq!(
                btf.struct_ids(name),
                Some(scanned.as_slice()),
                "{file}: struct {name}"
            );
            checked += usize::from(!scanned.is_empty());
        }
    }
    // Most of the names exist on most of the 12 kernels.
    assert!(checked > 100, "only {checked} structs found");
}
