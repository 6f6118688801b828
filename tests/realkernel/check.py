#!/usr/bin/env python3
"""Ground-truth check of synq's output against /proc/net/tcp{,6} of a test guest.

Usage: check.py RESULTS_DIR
       check.py --selftest RESULTS_DIR   (negative control on a passing RESULTS_DIR)

RESULTS_DIR is what the guest's /init sent back (see run.sh); `mode` says which boot it was.
mode "test":
  status, release, <scenario>/ns*/{netns,tcp,tcp6,tcp.after,tcp6.after,expect,kinds,ss-ltn},
  <scenario>/synq-json.{out,err,rc}, <scenario>/synq-total.{out,err,rc},
  mptcp/{sysctl,socket,config}, kptr/{old,during,restored,kallsyms-before,kallsyms-during,synq-json.*},
  unpriv/{kcore-mode,id,synq-json.*}
mode "lockdown" (booted with lockdown=confidentiality):
  status, release, lockdown, lockdown-run/{cmdline,dmesg-lockdown,synq.*,synq-json.*}
mode "static" (the static synq in a guest without libc; check_static):
  status, release, basic/ns*/{netns,tcp,tcp6,tcp.after,tcp6.after,expect,kinds}, basic/synq-{json,total}.*,
  static/{built-from,ls-lib,libs-found,ss,serve-status,serve-maps,serve-exe,serve.rc,metrics.txt,serve-nouser.*}

Independent of synq's code: the truth comes from the kernel's own /proc text.
  * a listener is a line with st 0A; its accept queue is rx_queue (hex);
  * each st 03 line is one half-open request, attributed to the listener with the
    same (addr, port) in the same netns and family, else to the wildcard listener
    (0.0.0.0 / ::) of that port;
  * key = (netns inode, family, addr text, port), family "inet"/"inet6",
    addresses as dotted IPv4 / RFC 5952 IPv6 text.
Per key: listener count, SYN-queue sum, accept-queue sum; compared with
  1. the fixture's own declaration (EXPECT lines): the scenario is what was built;
  2. the same /proc files read after synq ran: the state did not move;
  3. synq --json (every key of the union), its totals, and synq --total.
Plus sanity floors per scenario so that nothing passes vacuously.
Listener kinds: the key the fixture declared with a KIND line (the MPTCP listener, whose TCP
subflow listener is what /proc/net/tcp shows) must carry that "kind" in synq --json, every other
listener "kind": null. A kernel without an MPTCP listener passes only if it provably has no MPTCP:
no net.mptcp sysctl, socket(IPPROTO_MPTCP) fails with EPROTONOSUPPORT and the package's config
says "# CONFIG_MPTCP is not set".
Refusals that must happen, each exit 1, empty stdout and the named message on stderr:
  * kptr_restrict=2 (kallsyms shows 0 addresses), synq --json --kallsyms /proc/kallsyms:
    "kptr_restrict hides kallsyms addresses"; kptr_restrict restored afterwards;
  * synq --json as uid/gid 65534 with /proc/kcore 0400 root: "not root";
  * privdrop/: synq blocked writing its output has CapEff/CapPrm/CapBnd 0, NoNewPrivs 1, Seccomp 2 in its
    /proc/PID/status, cannot open a file (EPERM) and its answer equals the big scenario's;
  * lockdown=confidentiality boot, synq and synq --json: "lockdown=confidentiality forbids /proc/kcore".
arm64 guests (results/machine aarch64, run.sh's arm64 ids; see the README's "arm64 guests, live"): the same
checks, plus symbols/ (init.sh's symbol_facts): the kernel config's CONFIG_KALLSYMS_ALL line must agree with
/proc/kallsyms (tcp_hashinfo listed or not). Without CONFIG_KALLSYMS_ALL (arm64-6.1) the default runs must name
the in-memory tables plus "tcp_hashinfo found in the kernel's data ...: ADDR" with ADDR = the real System.map's
tcp_hashinfo + kcore's VMCOREINFO KERNELOFFSET (itself checked: kallsyms _stext - the map's _stext), the BTF
"found between _etext and __init_begin", and every owner, request timer and the namespaces list null
(check_details, data_symbols=False; --watch's owners too); the scenario basic-map (the same listeners, synq
with --system-map /boot/System.map-RELEASE, the real one) must name that file with KASLR offset KERNELOFFSET
and pass every detail check (owners, timers, namespaces). A guest without a real System.map (the arm64
kernels with CONFIG_KALLSYMS_ALL) records sysmap/absent instead of the wrong-System.map run: accepted only
there.
Exit status 0 only if everything matches.
"""
import contextlib
import io
import ipaddress
import json
import os
import re
import sys

import check_details
import check_production

FAMILIES = ("inet", "inet6")
WILDCARD = {"inet": "0.0.0.0", "inet6": "::"}

MSG_KPTR = "kptr_restrict hides kallsyms addresses"
SYMBOLS_IN_MEMORY = "kallsyms tables in kernel memory (located by VMCOREINFO)"
MSG_NOT_ROOT = "not root"
MSG_LOCKDOWN = "lockdown=confidentiality forbids /proc/kcore"
MPTCP_KIND = "mptcp-subflow"
UNPRIV_ID = 65534

# Floors each scenario must reach in the ground truth (see fixture.c).
SANITY = {
    "basic": {"min_listeners": 10},
    "basic-map": {"min_listeners": 10},
    "big": {"min_listeners": 2010},
}


class Failures:
    def __init__(self):
        self.items = []

    def add(self, where, msg):
        self.items.append(f"{where}: {msg}")
        print(f"FAIL {where}: {msg}")


def proc_addr(hexaddr, family):
    """/proc/net/tcp{,6} address: hex of each 32-bit word in host order (x86: LE)."""
    raw = bytes.fromhex(hexaddr)
    if family == "inet":
        if len(raw) != 4:
            raise ValueError(f"bad IPv4 address {hexaddr}")
        return str(ipaddress.IPv4Address(raw[::-1]))
    if len(raw) != 16:
        raise ValueError(f"bad IPv6 address {hexaddr}")
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return ipaddress.IPv6Address(words).compressed


def parse_proc(path, family):
    """Returns (listeners, requests): listeners as [(addr, port, rx_queue)],
    requests as [(addr, port, retrnsmt)] (local side of each st 03 line, and its
    retransmit count, req->num_timeout: 0 means the request is still "young")."""
    listeners, requests = [], []
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines or "local_address" not in lines[0]:
        raise ValueError(f"{path}: no /proc/net/tcp header")
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = line.split()
        local, st, queues = fields[1], fields[3], fields[4]
        hexaddr, hexport = local.split(":")
        addr, port = proc_addr(hexaddr, family), int(hexport, 16)
        if st == "0A":
            rx = int(queues.split(":")[1], 16)
            listeners.append((addr, port, rx))
        elif st == "03":
            requests.append((addr, port, int(fields[6], 16)))
    return listeners, requests


def netns_inode(path):
    text = open(path).read().strip()
    m = re.fullmatch(r"net:\[(\d+)\]", text)
    if not m:
        raise ValueError(f"{path}: not a netns link: {text!r}")
    return int(m.group(1))


def ground_truth(ns_dirs, suffix, fails, where, young=None):
    """Key -> [listeners, syn, acc] from /proc of every namespace; and the total
    number of st 03 lines. With a dict `young`, also key -> requests not yet
    retransmitted (the kernel's young count: decremented at a request's first
    SYN-ACK retransmission)."""
    groups, total_req = {}, 0
    for d in ns_dirs:
        ns = netns_inode(os.path.join(d, "netns"))
        for family, name in (("inet", "tcp"), ("inet6", "tcp6")):
            path = os.path.join(d, name + suffix)
            listeners, requests = parse_proc(path, family)
            present = set()
            for addr, port, rx in listeners:
                g = groups.setdefault((ns, family, addr, port), [0, 0, 0])
                g[0] += 1
                g[2] += rx
                present.add((addr, port))
            for addr, port, retr in requests:
                total_req += 1
                if (addr, port) in present:
                    key = (ns, family, addr, port)
                elif (WILDCARD[family], port) in present:
                    key = (ns, family, WILDCARD[family], port)
                else:
                    fails.add(where, f"{path}: half-open request to {addr} port {port} has no listener")
                    continue
                groups[key][1] += 1
                if young is not None:
                    young[key] = young.get(key, 0) + (retr == 0)
    return groups, total_req


def expected_from_fixture(ns_dirs, fails, where):
    groups = {}
    for d in ns_dirs:
        ns = netns_inode(os.path.join(d, "netns"))
        for line in open(os.path.join(d, "expect")):
            parts = line.split()
            if len(parts) != 7 or parts[0] != "EXPECT":
                fails.add(where, f"bad EXPECT line {line!r}")
                continue
            _, family, addr, port, n, syn, acc = parts
            key = (ns, family, addr, int(port))
            if key in groups:
                fails.add(where, f"duplicate EXPECT key {fmt_key(key)}")
            groups[key] = [int(n), int(syn), int(acc)]
    return groups


def kinds_from_fixture(ns_dirs, fails, where):
    """Key -> kind from the fixture's KIND lines (listeners synq must label)."""
    kinds = {}
    for d in ns_dirs:
        ns = netns_inode(os.path.join(d, "netns"))
        path = os.path.join(d, "kinds")
        if not os.path.exists(path):
            fails.add(where, f"{path} missing (the guest records the fixture's KIND lines there)")
            continue
        for line in open(path):
            parts = line.split()
            if len(parts) != 5 or parts[0] != "KIND":
                fails.add(where, f"bad KIND line {line!r}")
                continue
            _, family, addr, port, kind = parts
            kinds[(ns, family, addr, int(port))] = kind
    return kinds


def check_kinds(doc, kinds, fails, where):
    """synq's "kind" per listener: the declared one, else null. Returns (labelled, null) counts."""
    bad, seen, n_null, n_label = [], set(), 0, 0
    for i, l in enumerate(doc["listeners"]):
        if not isinstance(l, dict):
            continue
        key = (l.get("netns"), l.get("family"), l.get("addr"), l.get("port"))
        if "kind" not in l:
            bad.append(f"listeners[{i}] {fmt_key(key)}: no \"kind\" field (want {kinds.get(key)!r})")
            continue
        want = kinds.get(key)
        if l["kind"] != want:
            bad.append(f"{fmt_key(key)}: kind {l['kind']!r}, want {want!r}")
        elif want is None:
            n_null += 1
        else:
            n_label += 1
            seen.add(key)
    if bad:
        fails.add(where, f"synq --json listener kind wrong on {len(bad)} listeners: " + "; ".join(bad[:5]))
    for key in sorted(set(kinds) - seen, key=fmt_key):
        if not any(b.startswith(fmt_key(key) + ":") for b in bad):
            fails.add(where, f"synq --json has no listener {fmt_key(key)} (want kind {kinds[key]!r})")
    return n_label, n_null


def ss_backlogs(ns_dirs):
    """Key -> sorted list of Send-Q (sk_max_ack_backlog) from `ss -Hltn`."""
    out = {}
    for d in ns_dirs:
        path = os.path.join(d, "ss-ltn")
        if not os.path.exists(path):
            return None
        ns = netns_inode(os.path.join(d, "netns"))
        for line in open(path):
            f = line.split()
            if len(f) < 4 or f[0] != "LISTEN":
                continue
            local = f[3]
            host, port = local.rsplit(":", 1)
            if host.startswith("["):
                host, family = host[1:-1], "inet6"
            elif host == "*":
                host, family = "::", "inet6"  # a dual-stack v6 socket (RDS over TCP's kernel listener)
            else:
                family = "inet6" if ":" in host else "inet"
            host = host.split("%")[0]
            addr = str(ipaddress.ip_address(host))
            out.setdefault((ns, family, addr, int(port)), []).append(int(f[2]))
    return {k: sorted(v) for k, v in out.items()}


def fmt_key(k):
    ns, family, addr, port = k
    return f"{ns} {family} {addr} {port}"


def fmt_row(v):
    return "-" if v is None else f"{v[0]}/{v[1]}/{v[2]}"


def compare_groups(name_a, a, name_b, b, fails, where, show_all_below=40):
    """Per-key comparison of two key -> [n, syn, acc] maps; prints a table on mismatch."""
    keys = sorted(set(a) | set(b), key=lambda k: (k[0], k[1], k[3], k[2]))
    bad = [k for k in keys if a.get(k) != b.get(k)]
    if not bad:
        return True
    fails.add(where, f"{name_a} vs {name_b}: {len(bad)} of {len(keys)} keys differ")
    rows = keys if len(keys) <= show_all_below else bad
    w = max(len(fmt_key(k)) for k in rows)
    print(f"  {'netns family addr port':<{w}}  {name_a + ' n/syn/acc':>22}  {name_b + ' n/syn/acc':>22}")
    for k in rows:
        mark = "  <-- MISMATCH" if k in bad else ""
        print(f"  {fmt_key(k):<{w}}  {fmt_row(a.get(k)):>22}  {fmt_row(b.get(k)):>22}{mark}")
    if rows is bad:
        print(f"  ({len(keys) - len(bad)} matching keys not shown)")
    return False


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_rc(path):
    t = read_text(path)
    try:
        return int(t.strip())
    except (AttributeError, ValueError):
        return None


def check_synq_rc(base, label, fails, where):
    rc = read_rc(base + ".rc")
    err = read_text(base + ".err") or ""
    if rc == 0:
        if err.strip():
            print(f"note {where}: {label} stderr: {err.strip()[:2000]}")
        return True
    if rc is None:
        fails.add(where, f"{label}: no exit code recorded")
    elif rc == 127:
        fails.add(where, f"{label}: synq missing or not executable in the guest: {err.strip()[:500]}")
    elif rc == 2:
        try:
            warnings = json.loads(read_text(base + ".out") or "").get("warnings")
        except (ValueError, AttributeError):
            warnings = None
        fails.add(where, f"{label}: exit 2 (partial result with warnings); stderr:\n{err.strip()[:4000]}"
                  + (f"\nJSON warnings: {warnings!r}"[:4000] if warnings else ""))
    else:
        fails.add(where, f"{label}: exit code {rc}; stderr:\n{err.strip()[-4000:]}")
    return False


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def synq_groups(doc, fails, where):
    """Key -> [n, syn, acc] and key -> sorted max_backlogs from synq --json."""
    groups, backlogs = {}, {}
    for i, l in enumerate(doc["listeners"]):
        if not isinstance(l, dict):
            fails.add(where, f"synq --json listeners[{i}] is not an object")
            continue
        missing = [f for f in ("netns", "family", "addr", "port", "syn_queue", "syn_young",
                               "accept_queue", "max_backlog") if f not in l]
        if missing:
            fails.add(where, f"synq --json listeners[{i}] lacks {missing}: {l}")
            continue
        ints = ("netns", "port", "syn_queue", "syn_young", "accept_queue", "max_backlog")
        if not all(is_int(l[f]) for f in ints) or l["family"] not in FAMILIES or not isinstance(l["addr"], str):
            fails.add(where, f"synq --json listeners[{i}] has a field of the wrong type: {l}")
            continue
        if not 0 <= l["syn_young"] <= l["syn_queue"]:
            fails.add(where, f"synq --json listeners[{i}]: syn_young {l['syn_young']} outside 0..syn_queue: {l}")
        key = (l["netns"], l["family"], l["addr"], l["port"])
        g = groups.setdefault(key, [0, 0, 0])
        g[0] += 1
        g[1] += l["syn_queue"]
        g[2] += l["accept_queue"]
        backlogs.setdefault(key, []).append(l["max_backlog"])
    return groups, {k: sorted(v) for k, v in backlogs.items()}


def check_young(doc, before, after, fails, where):
    """Young requests only age (none are added while the snapshot is taken), so per key the young count synq
    read must lie between /proc's count after synq ran and before it."""
    got = {}
    for l in doc["listeners"]:
        if isinstance(l, dict) and is_int(l.get("syn_young")):
            key = (l.get("netns"), l.get("family"), l.get("addr"), l.get("port"))
            got[key] = got.get(key, 0) + l["syn_young"]
    for key in sorted(set(got) | set(before), key=str):
        lo, hi, v = after.get(key, 0), before.get(key, 0), got.get(key, 0)
        if not lo <= v <= hi:
            fails.add(where, f"syn_young of {fmt_key(key)}: synq {v}, /proc young (retrnsmt 0) "
                      f"{hi} before and {lo} after synq ran")


def sanity(scenario, truth, fails, where):
    req = SANITY.get(scenario)
    if req is None:
        fails.add(where, f"unknown scenario {scenario!r} (no sanity floors defined)")
        return
    n = sum(v[0] for v in truth.values())
    checks = [
        (n >= req["min_listeners"], f">= {req['min_listeners']} listeners (got {n})"),
        (any(v[1] >= 5 and v[2] >= 3 for v in truth.values()),
         "a listener key with >= 5 half-open and >= 3 unaccepted"),
        (any(k[1] == "inet6" and v[1] >= 5 for k, v in truth.items()), "an inet6 key with >= 5 half-open"),
        (any(k[2] == WILDCARD[k[1]] and v[2] >= 2 for k, v in truth.items()),
         "a wildcard key with >= 2 unaccepted"),
        (any(k[1] == "inet" and k[2] == "0.0.0.0" for k in truth), "an inet wildcard listener"),
        (any(k[1] == "inet6" and k[2] == "::" for k in truth), "an inet6 wildcard listener"),
        (len({k[0] for k in truth}) >= 2, "listeners in >= 2 network namespaces"),
        (len({k[0] for k, v in truth.items() if v[1] + v[2] > 0}) >= 2,
         "non-empty queues in >= 2 network namespaces"),
        (any(v[0] == 2 for v in truth.values()), "a SO_REUSEPORT pair (2 listeners under one key)"),
        (len({(v[1], v[2]) for v in truth.values() if v[1] + v[2] > 0}) >= 3,
         ">= 3 different non-zero (syn, acc) combinations"),
    ]
    for ok, what in checks:
        if not ok:
            fails.add(where, f"scenario too weak: expected {what}")


def check_scenario(root, scenario, release, fails, mptcp=None, sf=None):
    """sf: the arm64 symbol facts (symbol_facts), None on x86_64."""
    where = f"[{release}] {scenario}"
    # basic-map (arm64 without CONFIG_KALLSYMS_ALL): synq was given the real System.map.
    map_given = scenario == "basic-map"
    data_syms = map_given or not no_data_symbols(sf)
    sdir = os.path.join(root, scenario)
    ns_dirs = sorted(os.path.join(sdir, d) for d in os.listdir(sdir)
                     if d.startswith("ns") and os.path.isdir(os.path.join(sdir, d)))
    if len(ns_dirs) < 2:
        fails.add(where, f"expected >= 2 namespace snapshots, found {len(ns_dirs)}")
        return None
    nfail = len(fails.items)

    young_before, young_after = {}, {}
    truth, total_req = ground_truth(ns_dirs, "", fails, where, young_before)
    after, total_after = ground_truth(ns_dirs, ".after", fails, where, young_after)
    expected = expected_from_fixture(ns_dirs, fails, where)
    kinds = kinds_from_fixture(ns_dirs, fails, where)
    mptcp_keys = [k for k, v in kinds.items() if v == MPTCP_KIND]
    if mptcp is True:
        # The kernel has MPTCP: the scenario must hold the MPTCP listener, as one plain TCP
        # (subflow) listener in /proc under its key.
        if not mptcp_keys:
            fails.add(where, "kernel has MPTCP but the scenario declares no MPTCP listener (no KIND line)")
    elif mptcp is False and mptcp_keys:
        fails.add(where, f"kernel without MPTCP, yet the fixture declared MPTCP listeners: {mptcp_keys}")
    compare_groups("fixture", expected, "/proc", truth, fails, where + " (scenario as built)")
    compare_groups("/proc before", truth, "/proc after", after, fails, where + " (stability)")
    if total_req != total_after:
        fails.add(where, f"half-open total moved while synq ran: {total_req} -> {total_after}")
    sanity(scenario, truth, fails, where)
    for k in mptcp_keys:
        if not truth.get(k) or truth[k][0] != 1:
            fails.add(where, f"MPTCP listener {fmt_key(k)}: /proc/net/tcp shows {fmt_row(truth.get(k))} "
                      "(n/syn/acc), want exactly one listener (its TCP subflow)")

    ss = ss_backlogs(ns_dirs)
    if ss is not None:
        ss_groups = {k: len(v) for k, v in ss.items()}
        t_groups = {k: v[0] for k, v in truth.items()}
        if ss_groups != t_groups:
            fails.add(where, "ss -ltn and /proc disagree on the listener set "
                      f"(only ss: {sorted(set(ss_groups) - set(t_groups))[:5]}, "
                      f"only /proc: {sorted(set(t_groups) - set(ss_groups))[:5]})")

    n_truth = sum(v[0] for v in truth.values())
    syn_truth = sum(v[1] for v in truth.values())
    acc_truth = sum(v[2] for v in truth.values())
    summary = (f"{len(truth)} keys, {n_truth} listeners, {len({k[0] for k in truth})} netns, "
               f"syn {syn_truth}, acc {acc_truth}")
    print(f"truth {where}: {summary}")
    summary = f"{scenario}: {summary}"
    kinds_note = None
    details_note = None

    # synq --json
    base = os.path.join(sdir, "synq-json")
    if check_synq_rc(base, "synq --json", fails, where):
        text = read_text(base + ".out") or ""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            fails.add(where, f"synq --json output is not JSON ({e}); starts: {text[:300]!r}")
            doc = None
        if doc is not None:
            shape_ok = (isinstance(doc, dict) and isinstance(doc.get("listeners"), list)
                        and isinstance(doc.get("totals"), dict) and isinstance(doc.get("kernel"), dict)
                        and isinstance(doc.get("warnings"), list))
            if not shape_ok:
                fails.add(where, "synq --json lacks listeners (list) / totals / kernel (objects) / warnings (list); "
                          f"top-level keys: {list(doc) if isinstance(doc, dict) else type(doc).__name__}")
            else:
                if doc["warnings"]:
                    fails.add(where, "synq --json warnings:\n  " + "\n  ".join(map(str, doc["warnings"])))
                rel = doc["kernel"].get("release")
                if rel != release:
                    fails.add(where, f"synq kernel.release {rel!r} != guest uname -r {release!r}")
                # Live, the BTF is read out of /proc/kcore (issue 10), checked against the sysfs file's size;
                # falling back to sysfs would still work, but slower: say so.
                # (arm64 without CONFIG_KALLSYMS_ALL: no __start_BTF symbol; the BTF found by its header.)
                btf_from = doc["kernel"].get("btf")
                want_btf = "/proc/kcore (__start_BTF..__stop_BTF)" if data_syms else KCORE_BTF_SCANNED
                if btf_from != want_btf:
                    fails.add(where, f"synq kernel.btf {btf_from!r}: not read out of /proc/kcore"
                              + ("" if data_syms else f" as {want_btf!r}"))
                # Live, the symbols come from the in-memory tables (6.0+) or the running kernel's System.map
                # (issue 10), never from the slow /proc/kallsyms; basic-map's from the System.map given.
                if map_given:
                    check_given_map(doc, release, fails, where, sf)
                else:
                    check_default_symbols(doc, release, fails, where, "synq", sf)
                got, got_bl = synq_groups(doc, fails, where)
                n_label, n_null = check_kinds(doc, kinds, fails, where)
                kinds_note = (f"kinds: {n_label} labelled ({MPTCP_KIND}: "
                              f"{', '.join(fmt_key(k) + ' ' + fmt_row(truth.get(k)) for k in mptcp_keys) or '-'}), "
                              f"{n_null} null")
                compare_groups("/proc", truth, "synq", got, fails, where + " (synq --json per key)")
                check_young(doc, young_before, young_after, fails, where)
                details_note = check_details.check(doc, sdir, ns_dirs, fails, where, data_symbols=data_syms)
                t = doc["totals"]
                want = {"listeners": n_truth, "syn_queue": syn_truth, "accept_queue": acc_truth}
                for f, v in want.items():
                    if t.get(f) != v:
                        fails.add(where, f"synq totals.{f} = {t.get(f)!r}, ground truth {v}")
                if t.get("listeners") != len(doc["listeners"]):
                    fails.add(where, f"synq totals.listeners {t.get('listeners')!r} != "
                              f"len(listeners) {len(doc['listeners'])}")
                if ss is not None:
                    bad = [k for k in sorted(set(ss) | set(got_bl)) if ss.get(k) != got_bl.get(k)]
                    if bad:
                        fails.add(where, f"max_backlog differs from ss -ltn Send-Q on {len(bad)} keys, e.g. "
                                  + "; ".join(f"{fmt_key(k)}: ss {ss.get(k)} synq {got_bl.get(k)}" for k in bad[:5]))

    # synq --total
    base = os.path.join(sdir, "synq-total")
    if check_synq_rc(base, "synq --total", fails, where):
        out = (read_text(base + ".out") or "").strip()
        if not re.fullmatch(r"\d+", out):
            fails.add(where, f"synq --total printed {out[:200]!r}, not a single integer")
        elif int(out) != total_req:
            fails.add(where, f"synq --total = {out}, ground truth {total_req} st 03 lines in all namespaces")

    if kinds_note:
        print(f"info: [{release}] {scenario}: {kinds_note}")
    if details_note:
        print(f"info: [{release}] {scenario}: {details_note}")
    return summary if len(fails.items) == nfail else None


def first_line(text):
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def kernel_major(release):
    m = re.match(r"(\d+)\.", release or "")
    return int(m.group(1)) if m else None


def boot_map_source(release):
    """The symbol source of synq's default live chain answered by the running kernel's System.map."""
    return (f"/boot/System.map-{release} + KASLR offset ", ", checked against linux_banner")


KCORE_BTF_SCANNED = "/proc/kcore (BTF header found between _etext and __init_begin)"
HASHINFO_FOUND = "; tcp_hashinfo found in the kernel's data (no CONFIG_KALLSYMS_ALL): "


def _addr_lines(path, fields=3):
    """name -> address of `ADDR TYPE NAME` lines (the first of each name); None when the file is missing."""
    text = read_text(path)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == fields and re.fullmatch(r"[0-9a-fA-F]{8,16}", f[0]):
            out.setdefault(f[-1], int(f[0], 16))
    return out


def symbol_facts(root):
    """The arm64 guests' symbols/ (init.sh's symbol_facts), or None (x86_64 guests record none):
    kallsyms_all (True, False, or None when the config line is neither), kallsyms and map (name -> address),
    koff (kcore VMCOREINFO KERNELOFFSET), hashinfo (the map's tcp_hashinfo + koff, where both exist)."""
    d = os.path.join(root, "symbols")
    if not os.path.isdir(d):
        return None
    line = (read_text(os.path.join(d, "kallsyms-all")) or "").strip()
    sf = {"line": line, "kallsyms_all": {"CONFIG_KALLSYMS_ALL=y": True,
                                         "# CONFIG_KALLSYMS_ALL is not set": False}.get(line)}
    sf["kallsyms"] = _addr_lines(os.path.join(d, "kallsyms")) or {}
    sf["map"] = _addr_lines(os.path.join(d, "system-map"))
    vi = {}
    for l in (read_text(os.path.join(d, "vmcoreinfo-kcore")) or "").splitlines():
        k, _, v = l.partition("=")
        vi[k] = v
    try:
        sf["koff"] = int(vi.get("KERNELOFFSET", ""), 16)
    except ValueError:
        sf["koff"] = None
    sf["hashinfo"] = None
    if sf["map"] and "tcp_hashinfo" in sf["map"] and sf["koff"] is not None:
        sf["hashinfo"] = (sf["map"]["tcp_hashinfo"] + sf["koff"]) % (1 << 64)
    return sf


def no_data_symbols(sf):
    """True for a guest whose kernel lists no data symbols (arm64 without CONFIG_KALLSYMS_ALL)."""
    return sf is not None and sf.get("kallsyms_all") is False


def check_symbol_facts(root, release, fails, sf):
    """The arm64 symbol facts agree with each other: the config's CONFIG_KALLSYMS_ALL with /proc/kallsyms (data
    symbols listed or not); without it, the real System.map lists _stext and tcp_hashinfo and its _stext plus
    kcore's KERNELOFFSET is /proc/kallsyms' _stext (the map is this build's, and the offset the kernel's)."""
    where = f"[{release}] symbol facts"
    ks = sf["kallsyms"]
    if sf["kallsyms_all"] is None:
        fails.add(where, f"the kernel config's CONFIG_KALLSYMS_ALL line is {sf['line']!r}")
        return
    if not ks.get("_stext"):
        fails.add(where, f"/proc/kallsyms (kptr_restrict 1, root) shows no real _stext: {ks}")
    if sf["koff"] is None:
        fails.add(where, "kcore's VMCOREINFO has no KERNELOFFSET")
    if sf["kallsyms_all"]:
        if not ks.get("tcp_hashinfo"):
            fails.add(where, f"CONFIG_KALLSYMS_ALL=y, yet /proc/kallsyms lists no tcp_hashinfo: {ks}")
        else:
            print(f"info: [{release}] CONFIG_KALLSYMS_ALL=y: /proc/kallsyms lists tcp_hashinfo "
                  f"{ks['tcp_hashinfo']:#x}; KERNELOFFSET {sf['koff']:#x}")
        return
    if "tcp_hashinfo" in ks:
        fails.add(where, f"CONFIG_KALLSYMS_ALL is not set, yet /proc/kallsyms lists tcp_hashinfo {ks['tcp_hashinfo']:#x}")
    smap = sf["map"]
    if not smap or "_stext" not in smap or "tcp_hashinfo" not in smap:
        fails.add(where, f"no real System.map with _stext and tcp_hashinfo recorded (symbols/system-map: {smap}); "
                  "without it the tcp_hashinfo synq finds cannot be checked")
        return
    if ks.get("_stext") and sf["koff"] is not None:
        if (smap["_stext"] + sf["koff"]) % (1 << 64) != ks["_stext"]:
            fails.add(where, f"System.map _stext {smap['_stext']:#x} + KERNELOFFSET {sf['koff']:#x} != /proc/kallsyms "
                      f"_stext {ks['_stext']:#x}: the map is not this build's")
        else:
            print(f"info: [{release}] no CONFIG_KALLSYMS_ALL ({sf['line']!r}; /proc/kallsyms lists no tcp_hashinfo): "
                  f"System.map _stext {smap['_stext']:#x} + KERNELOFFSET {sf['koff']:#x} = /proc/kallsyms _stext; "
                  f"tcp_hashinfo must be at {sf['hashinfo']:#x}")


def check_given_map(doc, release, fails, where, sf):
    """basic-map: the symbols came from the System.map given (--system-map /boot/System.map-RELEASE), shifted
    by kcore's KERNELOFFSET."""
    got = (doc.get("kernel") or {}).get("symbols")
    koff = (sf or {}).get("koff")
    want = f"/boot/System.map-{release} + KASLR offset {koff:#x}" if koff is not None else None
    if got != want:
        fails.add(where, f"synq kernel.symbols {got!r}, want {want!r} (--system-map given)")


def check_default_symbols(doc, release, fails, where, label, sf=None):
    """A default live run's symbol source (issue 10): kernels >= 6.0 answer from their in-memory kallsyms
    tables; older ones from /boot/System.map-RELEASE, checked against linux_banner, not /proc/kallsyms.
    Without CONFIG_KALLSYMS_ALL (sf, arm64): the in-memory tables, and tcp_hashinfo found in the kernel's data
    where the real System.map + KERNELOFFSET puts it."""
    got = (doc.get("kernel") or {}).get("symbols")
    major = kernel_major(release)
    if major is None:
        fails.add(where, f"cannot tell the kernel version from {release!r}")
    elif major >= 6 and no_data_symbols(sf):
        m = re.fullmatch(re.escape(SYMBOLS_IN_MEMORY + HASHINFO_FOUND) + r"(0x[0-9a-f]+)(;.*)?", got or "", re.S)
        want = sf.get("hashinfo")
        if not m:
            fails.add(where, f"{label} kernel.symbols {got!r}: not the in-memory kallsyms tables with tcp_hashinfo "
                      "found in the kernel's data (a kernel without CONFIG_KALLSYMS_ALL)")
        elif want is None or int(m.group(1), 16) != want:
            fails.add(where, f"{label}: tcp_hashinfo found at {m.group(1)}, the real System.map + KERNELOFFSET "
                      f"puts it at {want if want is None else hex(want)}")
    elif major >= 6:
        if got != SYMBOLS_IN_MEMORY:
            fails.add(where, f"{label} kernel.symbols {got!r}: not the in-memory kallsyms tables")
    else:
        head, tail = boot_map_source(release)
        if not (isinstance(got, str) and got.startswith(head) and got.endswith(tail)):
            fails.add(where, f"{label} kernel.symbols {got!r}: not the /boot System.map route "
                      f"({head}...{tail})")


def check_refusal(base, label, message, fails, where):
    """A synq run that must fail: exit 1, nothing on stdout, `message` in stderr."""
    rc = read_rc(base + ".rc")
    out = read_text(base + ".out")
    err = read_text(base + ".err") or ""
    if rc is None or out is None:
        fails.add(where, f"{label}: not run (no exit code / stdout recorded in {base}.*)")
        return None
    ok = True
    if rc != 1:
        fails.add(where, f"{label}: exit code {rc}, want 1; stderr: {err.strip()[:1000]!r}")
        ok = False
    if out:
        fails.add(where, f"{label}: printed {len(out)} bytes on stdout, want none; starts {out[:200]!r}")
        ok = False
    if message not in err:
        fails.add(where, f"{label}: stderr lacks {message!r}; it is: {err.strip()[:1000]!r}")
        ok = False
    return f"exit {rc}, stdout {len(out)} bytes, stderr {first_line(err)!r}" if ok else None


def stext_addr(path):
    """The address of the one `ADDR T _stext` line the guest sampled from /proc/kallsyms, or None."""
    lines = (read_text(path) or "").splitlines()
    f = lines[0].split() if len(lines) == 1 else []
    if len(f) == 3 and f[2] == "_stext" and re.fullmatch(r"[0-9a-fA-F]{16}", f[0]):
        return int(f[0], 16)
    return None


def check_kptr(root, release, fails, sf=None):
    where = f"[{release}] kptr_restrict"
    d = os.path.join(root, "kptr")
    old, during, restored = (read_text(os.path.join(d, n)) for n in ("old", "during", "restored"))
    old, during, restored = ((v or "").strip() for v in (old, during, restored))
    if during != "2":
        fails.add(where, f"kptr_restrict read {during!r} after writing 2")
    if not old or restored != old:
        fails.add(where, f"kptr_restrict not restored: was {old!r}, afterwards {restored!r}")
    before, hidden = stext_addr(os.path.join(d, "kallsyms-before")), stext_addr(os.path.join(d, "kallsyms-during"))
    if not before:
        fails.add(where, f"/proc/kallsyms showed _stext as {before!r} to root before the change (kptr_restrict "
                  f"{old!r}), want a real address: the check would prove nothing")
    if hidden != 0:
        fails.add(where, f"/proc/kallsyms with kptr_restrict=2 shows _stext as {hidden!r}, want 0")
    r = check_refusal(os.path.join(d, "synq-json"), "synq --json --kallsyms /proc/kallsyms (kptr_restrict=2)",
                      MSG_KPTR, fails, where)
    if r:
        print(f"info: [{release}] kptr_restrict {old} -> {during} -> {restored} (_stext in /proc/kallsyms "
              f"{before:#x} -> {hidden:#x}): synq --json --kallsyms /proc/kallsyms: {r}")
    check_kptr_default(root, release, fails, sf)
    check_against_big(root, release, fails, "synq-sysmap",
                      "kptr_restrict, --system-map (KASLR offset from VMCOREINFO KERNELOFFSET)")


def check_against_big(root, release, fails, name, label, sub="kptr"):
    """A synq --json run from kptr/ (or `sub`) must exit 0 without warnings and equal the ground truth of
    'big' per key. Returns its output, or None."""
    where = f"[{release}] {label}"
    base = os.path.join(root, sub, name)
    if not check_synq_rc(base, "synq --json", fails, where):
        return None
    try:
        doc = json.loads(read_text(base + ".out") or "")
    except json.JSONDecodeError as e:
        fails.add(where, f"synq --json output is not JSON ({e})")
        return None
    sdir = os.path.join(root, "big")
    ns_dirs = sorted(os.path.join(sdir, d) for d in os.listdir(sdir)
                     if d.startswith("ns") and os.path.isdir(os.path.join(sdir, d)))
    truth, _ = ground_truth(ns_dirs, ".after", fails, where)
    got, _ = synq_groups(doc, fails, where)
    n = len(fails.items)
    compare_groups("/proc (big, after)", truth, "synq", got, fails, where + " (per key)")
    if len(fails.items) == n:
        print(f"info: {where}: synq matched the ground truth of 'big' ({sum(v[0] for v in truth.values())} "
              f"listeners) with symbols from: {doc.get('kernel', {}).get('symbols')!r}")
    return doc


def _big_listeners(root, release, out_path):
    """The number of listeners if the synq --json output at out_path equals the ground truth of 'big' per
    key (and has no warnings), else None."""
    f = Failures()
    try:
        doc = json.loads(read_text(out_path) or "")
    except json.JSONDecodeError:
        return None
    if doc.get("warnings"):
        return None
    sdir = os.path.join(root, "big")
    ns_dirs = sorted(os.path.join(sdir, d) for d in os.listdir(sdir)
                     if d.startswith("ns") and os.path.isdir(os.path.join(sdir, d)))
    with contextlib.redirect_stdout(io.StringIO()):
        truth, _ = ground_truth(ns_dirs, ".after", f, "privdrop")
        got, _ = synq_groups(doc, f, "privdrop")
        compare_groups("/proc (big, after)", truth, "synq", got, f, "privdrop")
    if f.items:
        return None
    return sum(v[0] for v in truth.values())


def check_kptr_default(root, release, fails, sf=None):
    """kptr_restrict=2 with synq's default sources. Kernels >= 6.0 name their kallsyms tables in VMCOREINFO
    (in /proc/kcore), older ones have /boot/System.map-RELEASE (KERNELOFFSET from kcore's VMCOREINFO), so synq
    must still give the ground truth of the 'big' scenario, which is still standing. With the System.map moved
    aside, older kernels must be refused with the kptr_restrict message."""
    where = f"[{release}] kptr_restrict, default sources"
    major = kernel_major(release)
    if major is None:
        fails.add(where, f"cannot tell the kernel version from {release!r}")
        return
    doc = check_against_big(root, release, fails, "synq-default", "kptr_restrict, default sources")
    if doc is not None:
        check_default_symbols(doc, release, fails, where, "synq (kptr_restrict=2)", sf)
    base = os.path.join(root, "kptr", "synq-default-nomap")
    if major < 6:
        r = check_refusal(base, "synq --json (kptr_restrict=2, kernel < 6.0, no /boot/System.map)", MSG_KPTR,
                          fails, where + ", no System.map")
        if r:
            print(f"info: {where}, no System.map: refused as expected (no kallsyms in VMCOREINFO before 6.0): {r}")
        return
    check_against_big(root, release, fails, "synq-default-nomap", "kptr_restrict, default sources, no System.map")


def check_boot_sysmap(root, release, fails, sf=None):
    """A wrong /boot/System.map-RELEASE (linux_banner moved by 0x40) must be passed over silently: synq exact
    against 'big', its symbols from /proc/kallsyms (or, 6.0+, the in-memory tables that come first). An arm64
    guest with CONFIG_KALLSYMS_ALL has no real System.map (sysmap/absent): accepted there only."""
    where = f"[{release}] wrong System.map"
    d = os.path.join(root, "sysmap")
    absent = read_text(os.path.join(d, "absent"))
    if absent is not None:
        if sf is not None and sf.get("kallsyms_all") is True:
            print(f"info: {where}: not made: {absent.strip()} (CONFIG_KALLSYMS_ALL=y, no real System.map fetched)")
        else:
            fails.add(where, f"the guest made no wrong-System.map run ({absent.strip()!r}), but this kernel "
                      f"{'is x86_64' if sf is None else 'lacks CONFIG_KALLSYMS_ALL'} and has its real System.map")
        return
    real, wrong = ((read_text(os.path.join(d, n)) or "").split() for n in ("banner-real", "banner-wrong"))
    try:
        moved = int(wrong[0], 16) - int(real[0], 16)
    except (IndexError, ValueError):
        moved = None
    if moved != 0x40 or real[2:] != ["linux_banner"] or wrong[2:] != ["linux_banner"]:
        fails.add(where, f"the planted System.map does not move linux_banner by 0x40: {real} -> {wrong}: the "
                  "check would prove nothing")
    doc = check_against_big(root, release, fails, "synq-wrong", "wrong System.map", sub="sysmap")
    if doc is None:
        return
    got = (doc.get("kernel") or {}).get("symbols")
    want = SYMBOLS_IN_MEMORY if (kernel_major(release) or 0) >= 6 else "/proc/kallsyms"
    if no_data_symbols(sf):
        check_default_symbols(doc, release, fails, where, "synq (wrong System.map)", sf)
    elif got != want:
        fails.add(where, f"synq kernel.symbols {got!r} with a wrong System.map, want {want!r}")


def check_unpriv(root, release, fails):
    where = f"[{release}] not root"
    d = os.path.join(root, "unpriv")
    mode = (read_text(os.path.join(d, "kcore-mode")) or "").strip()
    if mode != "400 0 0":
        fails.add(where, f"/proc/kcore mode/uid/gid {mode!r}, want '400 0 0' (the usual 0400 root)")
    ident = (read_text(os.path.join(d, "id")) or "").strip()
    if not re.fullmatch(rf"uid={UNPRIV_ID}\S* gid={UNPRIV_ID}\S*", ident):
        fails.add(where, f"the privilege drop did not give uid/gid {UNPRIV_ID} without groups: `id` says {ident!r}")
    r = check_refusal(os.path.join(d, "synq-json"), f"synq --json as uid {UNPRIV_ID}", MSG_NOT_ROOT, fails, where)
    if r:
        print(f"info: [{release}] as {ident}, /proc/kcore {mode}: synq --json: {r}")


def check_privdrop(root, release, fails, big_truth_check):
    """synq after opening its sources holds no capability, has no_new_privs and a seccomp filter (the
    kernel's /proc/PID/status of the synq blocked writing its output), cannot open a file any more, and still
    gives the big scenario's answer."""
    where = f"[{release}] privilege drop"
    d = os.path.join(root, "privdrop")
    status = read_text(os.path.join(d, "status")) or ""
    fields = {}
    for line in status.splitlines():
        k, _, v = line.partition(":")
        fields[k.strip()] = v.strip()
    if not fields:
        fails.add(where, "no /proc/PID/status of the running synq was recorded")
        return None
    for k, want in (("CapEff", "0000000000000000"), ("CapPrm", "0000000000000000"),
                    ("CapInh", "0000000000000000"), ("CapBnd", "0000000000000000"),
                    ("CapAmb", "0000000000000000"), ("NoNewPrivs", "1"), ("Seccomp", "2")):
        if fields.get(k) != want:
            fails.add(where, f"{k} {fields.get(k)!r} while synq was writing its output, want {want!r}")
    err = read_text(os.path.join(d, "synq.err")) or ""
    probe = "synq: test: opening /proc/kallsyms after the privilege drop failed: Operation not permitted"
    if probe not in err:
        fails.add(where, f"opening a file after the drop did not fail with EPERM: stderr {err.strip()[-300:]!r}")
    rc = (read_text(os.path.join(d, "synq.rc")) or "").strip()
    if rc != "0":
        fails.add(where, f"synq --json exit {rc!r}, want 0")
    n = big_truth_check(os.path.join(d, "synq.out"))
    if n is None:
        fails.add(where, "its answer (written after the drop) is not the big scenario's")
        return None
    return f"CapEff {fields.get('CapEff')}, NoNewPrivs {fields.get('NoNewPrivs')}, Seccomp " \
           f"{fields.get('Seccomp')}, open after the drop refused, {n} listeners as in /proc"


def mptcp_state(root, release, fails):
    """True: the kernel has MPTCP; False: it provably has none; None: inconsistent (failure added)."""
    where = f"[{release}] mptcp"
    d = os.path.join(root, "mptcp")
    sysctl, sock, config = ((read_text(os.path.join(d, n)) or "").strip() for n in ("sysctl", "socket", "config"))
    facts = f"net.mptcp.enabled {sysctl or 'unrecorded'!r}, socket(IPPROTO_MPTCP) {sock or 'unrecorded'!r}, " \
            f"config {config or 'unrecorded'!r}"
    if sysctl and sysctl != "absent":
        if sock != "ok" or config != "CONFIG_MPTCP=y":
            fails.add(where, f"MPTCP facts disagree: {facts}")
            return None
        print(f"info: [{release}] MPTCP present ({facts})")
        return True
    if sysctl == "absent" and sock.startswith("errno 93 ") and config == "# CONFIG_MPTCP is not set":
        print(f"info: [{release}] MPTCP ABSENT from this kernel, proven: {facts}; "
              f"no {MPTCP_KIND} listener can exist, only kind null is checked")
        return False
    fails.add(where, f"no MPTCP listener could be made and the kernel's lack of MPTCP is not proven: {facts}")
    return None


class _OwnersUnknown(Failures):
    """check_production.check_watch's failures, less the ones that --watch's owners are not the watch-target
    daemon (a kernel without data symbols: the owners are unknown, null; checked by the caller)."""

    def __init__(self, fails):
        super().__init__()
        self.fails = fails
        self.dropped = 0

    def add(self, where, msg):
        if re.fullmatch(r"interval \d: owners \[\], want the watch-target daemon \d*", msg):
            self.dropped += 1
            return
        self.fails.add(where, msg)


def check_watch_without_data_symbols(root, release, fails):
    """--watch on a kernel without data symbols: owners null in every interval (unknown, never invented), then
    every other rule of check_production.check_watch."""
    w = f"[{release}] watch"
    for i, l in enumerate((read_text(os.path.join(root, "watch", "watch.out")) or "").splitlines()):
        try:
            doc = json.loads(l)
        except ValueError:
            continue  # check_watch names it
        known = [li for li in doc.get("listeners", []) if isinstance(li, dict) and li.get("owners") is not None]
        if known:
            fails.add(w, f"interval {i + 1}: {len(known)} listener(s) with owners, e.g. {known[0].get('owners')!r}: "
                      "without data symbols (no init_task) synq cannot know them")
    s = check_production.check_watch(root, release, _OwnersUnknown(fails))
    return s and s + "; owners null (no data symbols)"


def run_check(root):
    """Checks one results directory; returns (failures, summaries, release)."""
    fails = Failures()
    status = (read_text(os.path.join(root, "status")) or "").strip()
    release = (read_text(os.path.join(root, "release")) or "").strip()
    mode = (read_text(os.path.join(root, "mode")) or "").strip()
    if status != "OK":
        fails.add(root, f"guest status is {status or 'missing'!r}")
    if not release:
        fails.add(root, "guest release missing")
    summaries = []
    if mode == "lockdown":
        s = check_lockdown(root, release, fails)
        d = check_production.check_doctor(root, release, fails, lockdown_run=True)
        return fails, [x for x in (s, d) if x], release
    if mode == "static":
        s = check_static(root, release, fails)
        return fails, [s] if s else [], release
    if mode != "test":
        fails.add(root, f"guest mode {mode or 'missing'!r}, want 'test' or 'lockdown'")
        return fails, summaries, release
    mptcp = None
    try:
        mptcp = mptcp_state(root, release, fails)
    except OSError as e:
        fails.add(f"[{release}] mptcp", f"cannot read results: {e}")
    sf = symbol_facts(root)
    machine = (read_text(os.path.join(root, "machine")) or "").strip()
    scenarios = ("basic", "big")
    if machine == "aarch64":
        if sf is None:
            fails.add(root, "an arm64 guest without symbols/ (init.sh's symbol_facts)")
        else:
            check_symbol_facts(root, release, fails, sf)
        if no_data_symbols(sf):
            # The same listeners with the real System.map given: every detail, owners and timers included.
            scenarios = ("basic", "basic-map", "big")
    for scenario in scenarios:
        if not os.path.isdir(os.path.join(root, scenario)):
            fails.add(root, f"scenario {scenario} missing from the results")
            continue
        try:
            s = check_scenario(root, scenario, release, fails, mptcp, sf)
        except (OSError, ValueError) as e:
            fails.add(f"[{release}] {scenario}", f"cannot read results: {e}")
            s = None
        if s:
            summaries.append(s)
    check_kptr(root, release, fails, sf)
    check_boot_sysmap(root, release, fails, sf)
    pd = check_privdrop(root, release, fails, lambda path: _big_listeners(root, release, path))
    if pd:
        print(f"info: [{release}] privilege drop: {pd}")
        summaries.append("privileges dropped after the open")
    check_unpriv(root, release, fails)
    # Issue 9: synq serve and --watch live, and synq doctor's verdicts.
    for fn in (check_production.check_serve, check_production.check_watch, check_production.check_doctor):
        try:
            if fn is check_production.check_watch and no_data_symbols(sf):
                s = check_watch_without_data_symbols(root, release, fails)
            else:
                s = fn(root, release, fails)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            fails.add(f"[{release}] {fn.__name__}", f"cannot read results: {e!r}")
            s = None
        if s:
            print(f"info: [{release}] {s}")
            summaries.append(s.split(":")[0])
    integrity = check_integrity(root, release, fails)
    if mptcp is not None:
        summaries.append("MPTCP " + ("labelled" if mptcp else "absent (proven)"))
    summaries += ["kptr_restrict refused", "not-root refused"]
    if integrity:
        summaries.append("under lockdown=integrity")
    return fails, summaries, release


# Mappings of a static synq that are not files: anything else in /proc/PID/maps must be /bin/synq itself
# (synq's own memfd, e.g. "/memfd:synq-btf (deleted)", is anonymous memory, not a file of the guest).
STATIC_PSEUDO_MAPS = ("[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]")
STATIC_SERVE_PORT = 9813  # init.sh's mode_static: synq serve --listen 127.0.0.1:9813


def check_static_scenario(root, release, fails):
    """The "basic" listeners against the static synq: /proc before and after, the fixture's declaration,
    synq --json per key (n/syn/acc, young, kinds) and its totals, synq --total. Returns (summary, truth)."""
    where = f"[{release}] static basic"
    sdir = os.path.join(root, "basic")
    ns_dirs = sorted(os.path.join(sdir, d) for d in os.listdir(sdir)
                     if d.startswith("ns") and os.path.isdir(os.path.join(sdir, d)))
    if len(ns_dirs) < 2:
        fails.add(where, f"expected >= 2 namespace snapshots, found {len(ns_dirs)}")
        return None, ({}, {})
    young_before, young_after = {}, {}
    truth, total_req = ground_truth(ns_dirs, "", fails, where, young_before)
    after, total_after = ground_truth(ns_dirs, ".after", fails, where, young_after)
    compare_groups("fixture", expected_from_fixture(ns_dirs, fails, where), "/proc", truth, fails,
                   where + " (scenario as built)")
    compare_groups("/proc before", truth, "/proc after", after, fails, where + " (stability)")
    if total_req != total_after:
        fails.add(where, f"half-open total moved while synq ran: {total_req} -> {total_after}")
    sanity("basic", truth, fails, where)
    kinds = kinds_from_fixture(ns_dirs, fails, where)
    n = sum(v[0] for v in truth.values())
    syn = sum(v[1] for v in truth.values())
    acc = sum(v[2] for v in truth.values())
    base = os.path.join(sdir, "synq-json")
    if check_synq_rc(base, "synq --json (static)", fails, where):
        text = read_text(base + ".out") or ""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            fails.add(where, f"synq --json output is not JSON ({e}); starts: {text[:300]!r}")
            doc = None
        if not (isinstance(doc, dict) and isinstance(doc.get("listeners"), list)
                and isinstance(doc.get("totals"), dict) and isinstance(doc.get("kernel"), dict)
                and isinstance(doc.get("warnings"), list)):
            if doc is not None:
                fails.add(where, "synq --json lacks listeners / totals / kernel / warnings")
        else:
            if doc["warnings"]:
                fails.add(where, "synq --json warnings:\n  " + "\n  ".join(map(str, doc["warnings"])))
            if doc["kernel"].get("release") != release:
                fails.add(where, f"synq kernel.release {doc['kernel'].get('release')!r} != guest uname -r {release!r}")
            got, _ = synq_groups(doc, fails, where)
            compare_groups("/proc", truth, "synq", got, fails, where + " (synq --json per key)")
            check_young(doc, young_before, young_after, fails, where)
            check_kinds(doc, kinds, fails, where)
            want = {"listeners": n, "syn_queue": syn, "accept_queue": acc}
            for f, v in want.items():
                if doc["totals"].get(f) != v:
                    fails.add(where, f"synq totals.{f} = {doc['totals'].get(f)!r}, ground truth {v}")
    base = os.path.join(sdir, "synq-total")
    if check_synq_rc(base, "synq --total (static)", fails, where):
        out = (read_text(base + ".out") or "").strip()
        if not re.fullmatch(r"\d+", out) or int(out) != total_req:
            fails.add(where, f"synq --total printed {out[:200]!r}, ground truth {total_req} st 03 lines in all namespaces")
    return f"{len(truth)} keys, {n} listeners, syn {syn}, acc {acc}", (truth, after)


def check_static(root, release, fails):
    """The static synq in a guest without libc: the guest holds no shared library, no loader and no ss; synq's
    answers equal /proc's; synq serve becomes nobody (its user found without NSS modules), maps no library and
    scrapes /proc's figures; a --user that does not exist is refused cleanly (exit 1), not a crash."""
    where = f"[{release}] static"
    t = os.path.join(root, "static")
    built = (read_text(os.path.join(t, "built-from")) or "").strip()
    if not built or built.startswith("no /etc/synq-static"):
        fails.add(where, f"not the static initramfs (built-from: {built!r})")
    libs = read_text(os.path.join(t, "libs-found"))
    if libs is None:
        fails.add(where, "static/libs-found not recorded (the guest's find over /)")
    elif libs.strip():
        fails.add(where, f"the guest holds a libc, loader or shared library: {libs.split()[:5]}")
    ls = read_text(os.path.join(t, "ls-lib")) or ""
    if re.search(r"libc|ld-linux|\.so(\.|\s|$)", ls):
        fails.add(where, f"ls -la /lib /lib64 /usr/lib shows a libc or shared library: {ls[:400]!r}")
    ss = (read_text(os.path.join(t, "ss")) or "").strip()
    if ss != "absent":
        fails.add(where, f"ss is in the static guest ({ss!r}); it needs libc, so the guest would have one")
    try:
        summary, (truth, after) = check_static_scenario(root, release, fails)
    except (OSError, ValueError, TypeError) as e:
        fails.add(where, f"cannot read the basic scenario: {e!r}")
        summary, truth, after = None, {}, {}

    w = where + " serve"
    rc = (read_text(os.path.join(t, "serve.rc")) or "").strip()
    if rc != "0":
        fails.add(w, f"synq serve exited {rc!r} on SIGTERM (stderr: {(read_text(os.path.join(t, 'serve.err')) or '')[-300:]!r})")
    st = check_production.status_fields(read_text(os.path.join(t, "serve-status")))
    if st.get("Uid") != ["65534"] * 4 or st.get("Gid") != ["65534"] * 4:
        fails.add(w, f"synq serve --user nobody runs as uid {st.get('Uid')} gid {st.get('Gid')}, want 65534")
    for f in ("CapEff", "CapPrm"):
        if st.get(f, ["?"])[0].strip("0"):
            fails.add(w, f"synq serve holds capabilities after the open: {f} {st.get(f)}")
    if st.get("NoNewPrivs") != ["1"] or st.get("Seccomp") != ["2"]:
        fails.add(w, f"synq serve NoNewPrivs {st.get('NoNewPrivs')}, Seccomp {st.get('Seccomp')}: want 1 and 2")
    exe = (read_text(os.path.join(t, "serve-exe")) or "").strip()
    if exe != "/bin/synq":
        fails.add(w, f"/proc/PID/exe of synq serve is {exe!r}, want /bin/synq")
    maps = read_text(os.path.join(t, "serve-maps")) or ""
    files, others = set(), set()
    for line in maps.splitlines():
        parts = line.split(None, 5)
        path = parts[5].strip() if len(parts) == 6 else ""
        if path and path not in STATIC_PSEUDO_MAPS and not path.startswith("/memfd:"):
            (files if path == exe else others).add(path)
    if not files:
        fails.add(w, f"/proc/PID/maps of synq serve does not map {exe or '/bin/synq'}: {maps[:300]!r}")
    if others:
        fails.add(w, f"synq serve maps files other than itself (a shared library?): {sorted(others)[:5]}")
    if read_text(os.path.join(t, "scrape-error")):
        fails.add(w, f"the scrape failed: {read_text(os.path.join(t, 'scrape-error')).strip()!r}")
    metrics = read_text(os.path.join(t, "metrics.txt")) or ""
    got = {m: check_production.samples(metrics, m)
           for m in ("synq_listener_sockets", "synq_syn_queue", "synq_accept_queue")}
    if not got["synq_syn_queue"]:
        fails.add(w, "the scrape holds no synq_syn_queue sample")
    bad = []
    # synq serve's own listener, opened after the ground truth was read: synq must see it, alone.
    own = [k for k in got["synq_listener_sockets"] if k[1:] == ("inet", "127.0.0.1", STATIC_SERVE_PORT)]
    if len(own) != 1 or got["synq_listener_sockets"][own[0]] != 1:
        fails.add(w, f"the scrape does not show synq serve's own listener 127.0.0.1:{STATIC_SERVE_PORT} once: {own}")
    for key in sorted((set(truth) | set(after) | set(got["synq_syn_queue"])) - set(own), key=str):
        b, a = truth.get(key, [0, 0, 0]), after.get(key, [0, 0, 0])
        for i, m in enumerate(("synq_listener_sockets", "synq_syn_queue", "synq_accept_queue")):
            v = got[m].get(key)
            if v is None or not min(b[i], a[i]) <= v <= max(b[i], a[i]):
                bad.append(f"{fmt_key(key)}: scraped {m} {v}, /proc {b[i]} before and {a[i]} after")
    if bad:
        fails.add(w, f"the scrape differs from /proc on {len(bad)} values: " + "; ".join(bad[:5]))

    w = where + " --user no-such-user"
    base = os.path.join(t, "serve-nouser")
    nrc = read_rc(base + ".rc")
    err = read_text(base + ".err") or ""
    if nrc != 1 or "no-such-user" not in err:
        fails.add(w, f"synq serve --user no-such-user: exit {nrc} (want 1, a refusal; >128 is a crash), "
                  f"stderr {err.strip()[:300]!r}")
    if summary:
        print(f"info: [{release}] static synq ({built}): no libc, loader or ss in the guest; "
              f"serve as nobody mapping only {exe}; no-such-user: {first_line(err)!r}")
        return f"static synq without libc: {summary}; serve as nobody, scrape equals /proc"
    return None


def check_integrity(root, release, fails):
    """A guest booted with lockdown=integrity must really be locked down so (the test then shows synq works
    where modules and BPF do not). Returns whether it was."""
    cmdline = (read_text(os.path.join(root, "cmdline")) or "").split()
    if "lockdown=integrity" not in cmdline:
        return False
    state = (read_text(os.path.join(root, "lockdown")) or "").strip()
    if "[integrity]" not in state:
        fails.add(f"[{release}] lockdown=integrity", f"/sys/kernel/security/lockdown reads {state!r}")
        return False
    print(f"info: [{release}] booted with lockdown=integrity, /sys/kernel/security/lockdown: {state!r}")
    return True


def check_lockdown(root, release, fails):
    where = f"[{release}] lockdown"
    state = (read_text(os.path.join(root, "lockdown")) or "").strip()
    if "[confidentiality]" not in state:
        fails.add(where, f"/sys/kernel/security/lockdown reads {state!r}, want [confidentiality]")
    d = os.path.join(root, "lockdown-run")
    cmdline = (read_text(os.path.join(d, "cmdline")) or "").split()
    if "lockdown=confidentiality" not in cmdline:
        fails.add(where, f"kernel command line lacks lockdown=confidentiality: {' '.join(cmdline)!r}")
    dm = first_line(read_text(os.path.join(d, "dmesg-lockdown")))
    ok = True
    for name, label in (("synq", "synq"), ("synq-json", "synq --json")):
        r = check_refusal(os.path.join(d, name), f"{label} under lockdown=confidentiality", MSG_LOCKDOWN, fails, where)
        if r:
            print(f"info: [{release}] lockdown {state!r} (dmesg: {dm.strip()!r}): {label}: {r}")
        ok = ok and r is not None
    return "lockdown=confidentiality refused" if ok and "[confidentiality]" in state else None


def _perturb_json(path, fn):
    with open(path) as f:
        doc = json.load(f)
    fn(doc)
    with open(path, "w") as f:
        json.dump(doc, f)


def _bump_syn(doc):
    doc["listeners"][0]["syn_queue"] += 1
    doc["totals"]["syn_queue"] += 1


def _bump_total(path):
    with open(path) as f:
        n = int(f.read().strip())
    with open(path, "w") as f:
        f.write(f"{n + 1}\n")


def _move_acc(doc):
    # Accept-queue entries moved between keys: every total unchanged.
    ls = [l for l in doc["listeners"] if l["accept_queue"] > 0]
    src = ls[0]
    dst = next(l for l in doc["listeners"]
               if (l["netns"], l["family"], l["addr"], l["port"]) != (src["netns"], src["family"], src["addr"], src["port"]))
    src["accept_queue"] -= 1
    dst["accept_queue"] += 1


def _drop_listener(doc):
    gone = doc["listeners"].pop()
    doc["totals"]["listeners"] -= 1
    doc["totals"]["syn_queue"] -= gone["syn_queue"]
    doc["totals"]["accept_queue"] -= gone["accept_queue"]


def _wrong_netns(doc):
    doc["listeners"][0]["netns"] = 1


def _warn(doc):
    doc["warnings"].append("selftest warning")


def _write(text):
    def plant(path):
        with open(path, "w") as f:
            f.write(text)
    return plant


def _kind_mptcp_to_null(doc):
    hit = [l for l in doc["listeners"] if l.get("kind") == MPTCP_KIND]
    if not hit:
        raise ValueError(f"no {MPTCP_KIND} listener to plant on")
    for l in hit:
        l["kind"] = None


def _kind_plain_to_mptcp(doc):
    next(l for l in doc["listeners"] if l.get("kind") is None)["kind"] = MPTCP_KIND


def _kind_missing(doc):
    del doc["listeners"][-1]["kind"]


def _copy_from(rel):
    """Plants the content of another results file (relative to the same RESULTS_DIR)."""
    def plant(path):
        root = path
        for _ in rel.split("/"):
            root = os.path.dirname(root)
        with open(os.path.join(root, rel)) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text)
    return plant


def _bump_syn_or_refuse(path):
    """Bumps a SYN queue in synq's output (>= 6.0), or fakes a success where a refusal is due (< 6.0)."""
    text = read_text(path) or ""
    if text.strip():
        _perturb_json(path, _bump_syn)
    else:
        with open(path, "w") as f:
            f.write("{}\n")


def _young_out_of_range(path):
    """Moves one listener's syn_young outside what /proc allows: to 0 where /proc still showed young requests
    after synq ran, else one above /proc's young count from before (still within 0..syn_queue)."""
    sdir = os.path.dirname(path)
    ns_dirs = sorted(os.path.join(sdir, d) for d in os.listdir(sdir) if d.startswith("ns"))
    before, after = {}, {}
    ground_truth(ns_dirs, "", Failures(), "plant", before)
    ground_truth(ns_dirs, ".after", Failures(), "plant", after)

    def plant(doc):
        keyed = [((l["netns"], l["family"], l["addr"], l["port"]), l) for l in doc["listeners"]]
        for key, l in keyed:
            if after.get(key, 0) > 0:
                for k2, m in keyed:
                    if k2 == key:
                        m["syn_young"] = 0
                return
        for key, l in keyed:
            if l["syn_queue"] > before.get(key, 0) and l["syn_young"] == before.get(key, 0):
                l["syn_young"] += 1
                return
        # Every young count was possible on this data (all requests aged during synq's run): plant one
        # that no /proc can allow.
        l = max(doc["listeners"], key=lambda x: x["syn_queue"])
        l["syn_young"] = l["syn_queue"] + 1

    _perturb_json(path, plant)


def _kallsyms_visible(path):
    with open(path, "w") as f:
        f.write("ffffffff81000000 T _stext\n")


def _set_status(key, value):
    def plant(path):
        lines = [l if not l.startswith(key + ":") else f"{key}:\t{value}" for l in (read_text(path) or "").splitlines()]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    return plant


def _detail(field, fn):
    """Changes `field` of the first listener whose value fn can change (issue 8's details)."""
    def plant(doc):
        for li in doc["listeners"]:
            try:
                new = fn(li.get(field))
            except (TypeError, KeyError):
                continue
            if new != li.get(field):
                li[field] = new
                return
        raise ValueError(f"no listener's {field} could be changed")
    return plant


def _ns_edit(fn, last=False):
    """Applies fn to the first (or last) namespace object of synq's JSON."""
    def plant(doc):
        fn(doc["namespaces"][-1 if last else 0])
    return plant


def _watch_zero(doc):
    """The --watch test's listener (192.0.2.1:8040) with an empty SYN queue."""
    for li in doc["listeners"]:
        if li["port"] == 8040:
            li["syn_queue"] = 0
    return doc


def _edit_text(fn):
    def plant(path):
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(fn(text))
    return plant


def selftest_cases(root):
    """name -> (file relative to RESULTS_DIR, planting function, text the failures must contain or None)."""
    mode = (read_text(os.path.join(root, "mode")) or "").strip()
    if mode == "lockdown":
        return {
            "lockdown: synq exit 0": ("lockdown-run/synq.rc", _write("0\n"), "lockdown"),
            "lockdown: --json printed output": ("lockdown-run/synq-json.out", _write("{}\n"), "lockdown"),
            "lockdown: 'not root' instead of the lockdown message":
                ("lockdown-run/synq-json.err", _write("synq: /proc/kcore: permission denied — not root\n"), "lockdown"),
            "lockdown: securityfs shows [none]":
                ("lockdown", _write("[none] integrity confidentiality\n"), "lockdown"),
            "lockdown: doctor says synq works": ("lockdown-run/doctor.out", lambda p: _perturb_json(
                p, lambda d: d.update(works=True)), "doctor"),
        }
    if mode == "static":
        return {
            "static: a libc in the guest": ("static/libs-found", _write("./lib/x86_64-linux-gnu/libc.so.6\n"), "libc"),
            "static: ld-linux under /lib64": ("static/ls-lib", _write(
                "/lib64:\nlrwxrwxrwx 1 0 0 42 ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n"),
                "shared library"),
            "static: ss present": ("static/ss", _write("/bin/ss\n"), "ss is in"),
            "static: --total off by one": ("basic/synq-total.out", _bump_total, "--total"),
            "static: syn_queue +1 on one key": ("basic/synq-json.out", lambda p: _perturb_json(p, _bump_syn), None),
            "static: a shared library mapped into synq serve": ("static/serve-maps", _edit_text(
                lambda t: t + "7f0000000000-7f0000001000 r-xp 00000000 00:02 99 /lib/x86_64-linux-gnu/libc.so.6\n"),
                "maps files other"),
            "static: serve still root": ("static/serve-status", _set_status("Uid", "0\t0\t0\t0"), "serve"),
            "static: a scraped accept queue +1": ("static/metrics.txt", _edit_text(lambda t: re.sub(
                r"^(synq_accept_queue\{[^}]*\} )(\d+)$", lambda m: m.group(1) + str(int(m.group(2)) + 1), t,
                count=1, flags=re.M)), "scrape differs"),
            "static: no-such-user crashed": ("static/serve-nouser.rc", _write("139\n"), "no-such-user"),
        }
    cases = {
        "syn_queue +1 on one key": ("basic/synq-json.out", lambda p: _perturb_json(p, _bump_syn), None),
        "accept entry moved between keys": ("basic/synq-json.out", lambda p: _perturb_json(p, _move_acc), None),
        "BTF from sysfs, not kcore": ("basic/synq-json.out", lambda p: _perturb_json(
            p, lambda d: d["kernel"].__setitem__("btf", "/sys/kernel/btf/vmlinux")), "not read out of"),
        "one listener dropped (totals adjusted)":
            ("big/synq-json.out", lambda p: _perturb_json(p, _drop_listener), None),
        "wrong netns on one listener": ("basic/synq-json.out", lambda p: _perturb_json(p, _wrong_netns), None),
        "a warning": ("basic/synq-json.out", lambda p: _perturb_json(p, _warn), None),
        "syn_young above /proc's unretransmitted requests":
            ("basic/synq-json.out", _young_out_of_range, "syn_young"),
        "--total off by one": ("big/synq-total.out", _bump_total, None),
        "exit code 2": ("basic/synq-total.rc", _write("2\n"), None),
        "kind mptcp-subflow on a plain listener":
            ("big/synq-json.out", lambda p: _perturb_json(p, _kind_plain_to_mptcp), "kind"),
        "kind field missing on one listener":
            ("basic/synq-json.out", lambda p: _perturb_json(p, _kind_missing), "kind"),
        "kptr_restrict: exit 0": ("kptr/synq-json.rc", _write("0\n"), "kptr_restrict"),
        "kptr_restrict: output on stdout": ("kptr/synq-json.out", _write("{}\n"), "kptr_restrict"),
        "kptr_restrict: another error message":
            ("kptr/synq-json.err", _write("synq: tcp_hashinfo is not in /proc/kallsyms\n"), "kptr_restrict"),
        "kptr_restrict: not restored": ("kptr/restored", _write("2\n"), "kptr_restrict"),
        "kptr_restrict default sources: wrong figures": ("kptr/synq-default.out", _bump_syn_or_refuse,
                                                          "kptr_restrict, default sources"),
        "kptr_restrict --system-map: wrong figures": ("kptr/synq-sysmap.out", lambda p: _perturb_json(p, _bump_syn),
                                                      "--system-map"),
        "kptr_restrict default sources, no System.map: wrong figures":
            ("kptr/synq-default-nomap.out", _bump_syn_or_refuse, "no System.map"),
        "symbols from /proc/kallsyms, not the System.map route or the in-memory tables":
            ("basic/synq-json.out", lambda p: _perturb_json(
                p, lambda d: d["kernel"].__setitem__("symbols", "/proc/kallsyms")), "kernel.symbols"),
        "wrong System.map: its symbols used": ("sysmap/synq-wrong.out", lambda p: _perturb_json(
            p, lambda d: d["kernel"].__setitem__("symbols", "/boot/System.map-x + KASLR offset 0x0, checked "
                                                             "against linux_banner")), "wrong System.map"),
        "wrong System.map: wrong figures": ("sysmap/synq-wrong.out", lambda p: _perturb_json(p, _bump_syn),
                                            "wrong System.map"),
        "wrong System.map: linux_banner not moved": ("sysmap/banner-wrong", _copy_from("sysmap/banner-real"),
                                                     "wrong System.map"),
        "kptr_restrict: kallsyms not hidden": ("kptr/kallsyms-during", _kallsyms_visible, "kptr_restrict"),
        "not root: exit 0": ("unpriv/synq-json.rc", _write("0\n"), "not root"),
        "not root: lockdown message instead":
            ("unpriv/synq-json.err", _write(f"synq: /proc/kcore: {MSG_LOCKDOWN}\n"), "not root"),
        "not root: still root": ("unpriv/id", _write("uid=0(root) gid=0(root)\n"), "not root"),
        "not root: /proc/kcore readable by all": ("unpriv/kcore-mode", _write("444 0 0\n"), "not root"),
        "privilege drop: CapEff kept": ("privdrop/status", _set_status("CapEff", "000001ffffffffff"), "privilege drop"),
        "privilege drop: no seccomp": ("privdrop/status", _set_status("Seccomp", "0"), "privilege drop"),
        "privilege drop: no NoNewPrivs": ("privdrop/status", _set_status("NoNewPrivs", "0"), "privilege drop"),
        "privilege drop: open succeeded": ("privdrop/synq.err", _write(
            "synq: test: opening /proc/kallsyms after the privilege drop succeeded\n"), "privilege drop"),
        "privilege drop: wrong answer": ("privdrop/synq.out", lambda p: _perturb_json(p, _bump_syn),
                                         "privilege drop"),
        "details: drops +1 on one listener": ("basic/synq-json.out", lambda p: _perturb_json(p, _detail(
            "drops", lambda v: v + 1)), "drops of"),
        "details: drops null": ("big/synq-json.out", lambda p: _perturb_json(p, _detail(
            "drops", lambda v: None)), "drops of"),
        "details: synflood_warned flipped": ("basic/synq-json.out", lambda p: _perturb_json(p, _detail(
            "synflood_warned", lambda v: not v)), "synflood_warned"),
        "details: inode of another listener": ("basic/synq-json.out", lambda p: _perturb_json(p, _detail(
            "inode", lambda v: (v or 0) + 1)), "inode of"),
        "details: Fast Open limit changed": ("basic/synq-json.out", lambda p: _perturb_json(p, _detail(
            "fastopen", lambda v: dict(v, max_qlen=v["max_qlen"] + 1))), "fastopen.max_qlen"),
        "details: TCP_DEFER_ACCEPT set where it is not": ("basic/synq-json.out", lambda p: _perturb_json(
            p, _detail("defer_accept", lambda v: v + 1)), "defer_accept"),
        "details: reuseport group on a plain listener": ("basic/synq-json.out", lambda p: _perturb_json(
            p, _detail("reuseport", lambda v: {"group": "0x1", "size": 1})), "reuseport"),
        "details: no SYN flood in dmesg": ("basic/dmesg", _write(""), "SYN flooding"),
        "requests: one missing": ("basic/synq-json.out", lambda p: _perturb_json(
            p, lambda d: d["requests"]["list"].pop()), "missing from synq --requests"),
        "requests: retransmits +5": ("basic/synq-json.out", lambda p: _perturb_json(
            p, lambda d: d["requests"]["list"][0].update(retransmits=d["requests"]["list"][0]["retransmits"] + 5)),
            "retransmits"),
        "requests: timer an hour off": ("basic/synq-json.out", lambda p: _perturb_json(
            p, lambda d: [r.update(expires_in_jiffies=(r.get("expires_in_jiffies") or 0) + 3_600_000)
                          for r in d["requests"]["list"]]), "timer expires"),
        "requests: remote port changed": ("basic/synq-json.out", lambda p: _perturb_json(
            p, lambda d: d["requests"]["list"][0].update(remote_port=1)), "requests"),
        "owners: the forked worker missing": ("basic/synq-json.out", lambda p: _perturb_json(p, _detail(
            "owners", lambda v: v[:1] if len(v) >= 2 else v)), "owners of"),
        "owners: a process on the kernel listener": ("basic/synq-json.out", lambda p: _perturb_json(p, _detail(
            "owners", lambda v: [{"pid": 1, "comm": "init"}] if v == [] else v)), "owners of"),
        "namespaces: somaxconn of another namespace": ("basic/synq-json.out", lambda p: _perturb_json(
            p, _ns_edit(lambda n: n.update(somaxconn=n["somaxconn"] + 1))), "somaxconn"),
        "namespaces: ListenDrops above /proc's after": ("basic/synq-json.out", lambda p: _perturb_json(
            p, _ns_edit(lambda n: n["counters"].update(ListenDrops=n["counters"]["ListenDrops"] + 1000))),
            "ListenDrops"),
        "namespaces: SYN cookies verdict missing": ("basic/synq-json.out", lambda p: _perturb_json(
            p, _ns_edit(lambda n: n.update(verdicts=[]), last=True)), "SYN cookies in use"),
        "serve: still root after the open": ("serve/status", _set_status("Uid", "0\t0\t0\t0"), "serve"),
        "serve: a scraped SYN queue +1": ("serve/metrics.txt", _edit_text(lambda t: re.sub(
            r"^(synq_syn_queue\{[^}]*\} )(\d+)$", lambda m: m.group(1) + str(int(m.group(2)) + 1), t, count=1,
            flags=re.M)), "scraped"),
        "serve: RSS grew": ("serve/rss-last", _write("VmRSS:\t999999 kB\nRssAnon:\t999999 kB\n"), "RSS"),
        "serve: exit 1 on SIGTERM": ("serve/rc", _write("1\n"), "serve"),
        "watch: the new requests in the wrong interval": ("watch/watch.out", _edit_text(lambda t: "\n".join(
            json.dumps(_watch_zero(json.loads(l))) if i == 1 else l for i, l in enumerate(t.splitlines())) + "\n"),
            "interval 2"),
        "watch: one interval missing": ("watch/watch.out", _edit_text(lambda t: "".join(
            t.splitlines(True)[:2])), "watch"),
        "doctor: plain run says synq will not work": ("doctor/plain.out", lambda p: _perturb_json(
            p, lambda d: d.update(works=False)), "doctor"),
        "doctor: not root passes the root check": ("unpriv/doctor.out", lambda p: _perturb_json(
            p, lambda d: [c.update(status="ok") for c in d["checks"] if c["check"] == "root and capabilities"]),
            "root and capabilities"),
        "details: no ss -ltm drops": ("basic/ns1/ss-ltm", _edit_text(lambda t: re.sub(r",d\d+\)", ",d0)", t)),
                                      "drops"),
    }
    sf = symbol_facts(root)
    if sf is not None:
        cases.update(arm64_selftest_cases(root, sf, cases))
    if (read_text(os.path.join(root, "mptcp", "sysctl")) or "").strip() == "absent":
        cases["MPTCP absence unproven (config =y)"] = ("mptcp/config", _write("CONFIG_MPTCP=y\n"), "mptcp")
        cases["MPTCP absence unproven (socket works)"] = ("mptcp/socket", _write("ok\n"), "mptcp")
    else:
        cases["kind null on the MPTCP subflow"] = (
            "basic/synq-json.out", lambda p: _perturb_json(p, _kind_mptcp_to_null), "kind")
        cases["MPTCP listener not declared"] = ("basic/ns1/kinds", _write(""), "MPTCP")
        cases["MPTCP sysctl missing, absence unproven"] = ("mptcp/sysctl", _write("absent\n"), "mptcp")
    if "lockdown=integrity" in (read_text(os.path.join(root, "cmdline")) or "").split():
        cases["lockdown=integrity on the command line, not in effect"] = (
            "lockdown", _write("[none] integrity confidentiality\n"), "lockdown=integrity")
    return cases


def _shift_found_hashinfo(doc):
    sym = doc["kernel"]["symbols"]
    m = re.search(re.escape(HASHINFO_FOUND) + r"0x([0-9a-f]+)", sym)
    if not m:
        raise ValueError(f"no found tcp_hashinfo in {sym!r}")
    doc["kernel"]["symbols"] = sym.replace(m.group(0), f"{HASHINFO_FOUND}{int(m.group(1), 16) + 8:#x}")


def _invent_owners(doc):
    doc["listeners"][0]["owners"] = [{"pid": 1, "comm": "init"}]


def _invent_timer(doc):
    doc["requests"]["list"][0]["expires_in_jiffies"] = 100


def _watch_owners(text):
    lines = []
    for line in text.splitlines():
        d = json.loads(line)
        for li in d["listeners"]:
            if li.get("port") == 8040:
                li["owners"] = [{"pid": 1, "comm": "init"}]
        lines.append(json.dumps(d))
    return "\n".join(lines) + "\n"


def _map_of_another_build(path):
    lines = []
    for line in (read_text(path) or "").splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == "_stext":
            line = f"{int(f[0], 16) + 0x1000:016x} {f[1]} {f[2]}"
        lines.append(line)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def arm64_selftest_cases(root, sf, cases):
    """The arm64 guests' extra planted defects (and, without data symbols, the detail cases that need them
    moved to basic-map, where synq had the System.map)."""
    extra = {}
    flip = "# CONFIG_KALLSYMS_ALL is not set\n" if sf.get("kallsyms_all") else "CONFIG_KALLSYMS_ALL=y\n"
    extra["arm64: the config's CONFIG_KALLSYMS_ALL contradicts /proc/kallsyms"] = (
        "symbols/kallsyms-all", _write(flip), "symbol facts")
    if no_data_symbols(sf):
        for name in ("owners: the forked worker missing", "owners: a process on the kernel listener",
                     "namespaces: somaxconn of another namespace", "namespaces: ListenDrops above /proc's after",
                     "namespaces: SYN cookies verdict missing", "requests: timer an hour off"):
            _, plant, must = cases[name]
            extra[name] = ("basic-map/synq-json.out", plant, must)
        extra["no KALLSYMS_ALL: tcp_hashinfo found 8 bytes off"] = (
            "basic/synq-json.out", lambda p: _perturb_json(p, _shift_found_hashinfo), "tcp_hashinfo found at")
        extra["no KALLSYMS_ALL: owners without data symbols"] = (
            "basic/synq-json.out", lambda p: _perturb_json(p, _invent_owners), "with owners")
        extra["no KALLSYMS_ALL: a request timer without data symbols"] = (
            "basic/synq-json.out", lambda p: _perturb_json(p, _invent_timer), "with a timer")
        extra["no KALLSYMS_ALL: a namespaces list without data symbols"] = (
            "basic/synq-json.out", lambda p: _perturb_json(p, lambda d: d.update(namespaces=[])),
            "namespaces list without data symbols")
        extra["no KALLSYMS_ALL: the BTF said found by __start_BTF"] = (
            "basic/synq-json.out", lambda p: _perturb_json(p, lambda d: d["kernel"].__setitem__(
                "btf", "/proc/kcore (__start_BTF..__stop_BTF)")), "not read out of")
        extra["no KALLSYMS_ALL: basic-map's symbols not the System.map given"] = (
            "basic-map/synq-json.out", lambda p: _perturb_json(p, lambda d: d["kernel"].__setitem__(
                "symbols", SYMBOLS_IN_MEMORY)), "--system-map given")
        extra["no KALLSYMS_ALL: the System.map of another build"] = (
            "symbols/system-map", _map_of_another_build, "not this build's")
        extra["no KALLSYMS_ALL: --watch owners without data symbols"] = (
            "watch/watch.out", _edit_text(_watch_owners), "with owners")
    if os.path.exists(os.path.join(root, "sysmap", "absent")):
        for name in ("wrong System.map: its symbols used", "wrong System.map: wrong figures",
                     "wrong System.map: linux_banner not moved"):
            cases.pop(name, None)
        extra["no wrong-System.map run where the kernel lacks CONFIG_KALLSYMS_ALL"] = (
            "symbols/kallsyms-all", _write("# CONFIG_KALLSYMS_ALL is not set\n"), "wrong System.map")
    return extra


def selftest(root):
    """Negative control: copies of a PASSING results directory, each with one
    defect planted in synq's output (or in a recorded precondition), must all
    FAIL, with a failure naming the planted check where one is given. Proves
    the comparison can fail on this very data (no vacuous pass)."""
    import contextlib
    import io
    import shutil
    import tempfile

    fails, _, _ = run_check_quiet(root)
    if fails.items:
        print("selftest: the results do not pass to begin with; run the plain check first")
        return 1
    cases = selftest_cases(root)
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (rel, plant, must) in cases.items():
            d = os.path.join(tmp, "r")
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(root, d)
            try:
                plant(os.path.join(d, rel))
            except (OSError, ValueError, KeyError, StopIteration, IndexError) as e:
                missed.append(f"{name} (could not plant: {e!r})")
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                f, _, _ = run_check(d)
            if not f.items:
                missed.append(name)
            elif must and not any(must in item for item in f.items):
                missed.append(f"{name} (failed, but not on {must!r}: {f.items[:2]})")
    if missed:
        print(f"selftest: FAILED: planted defects NOT detected: {missed}")
        return 1
    print(f"selftest: OK: all {len(cases)} planted defects detected")
    return 0


def run_check_quiet(root):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return run_check(root)


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--selftest":
        return selftest(args[1])
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    fails, summaries, release = run_check(args[0])
    if fails.items:
        print(f"check: FAILED [{release or '?'}]: {len(fails.items)} problem(s)")
        return 1
    print(f"check: OK [{release}] " + "; ".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
