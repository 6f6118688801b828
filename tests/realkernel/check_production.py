"""Judges issue 9's guest runs (called by check.py): synq serve live (its privileges after the open, one
busybox wget scrape against the guest's /proc read just before and after, 1,000 scrapes with RSS flat, a clean
exit on SIGTERM), synq --watch --json around the fixture's two changes, and synq doctor's verdicts."""
import json
import os
import re

import check

# RSS growth allowed over 1,000 scrapes (KiB): allocator noise, not a leak (a leak of one exposition per
# scrape would be ~1,000 times a few KiB).
RSS_SLACK_KB = 512


def read(path):
    try:
        return open(path).read()
    except OSError:
        return None


def samples(text, metric):
    """{(netns, family, addr, port): value summed over owners} of `metric` in a text exposition."""
    out = {}
    for line in (text or "").splitlines():
        if not line.startswith(metric + "{"):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line[len(metric):line.rindex("}")]))
        key = (int(labels["netns"]), labels["family"], labels["addr"], int(labels["port"]))
        out[key] = out.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def status_fields(text):
    return {k.strip(): v.split() for k, v in (l.split(":", 1) for l in (text or "").splitlines() if ":" in l)}


def check_serve(root, release, fails):
    w = f"[{release}] serve"
    s = os.path.join(root, "serve")
    if not os.path.isdir(s):
        fails.add(w, "no serve results (check_serve did not run)")
        return None
    rc = (read(os.path.join(s, "rc")) or "").strip()
    if rc != "0":
        fails.add(w, f"synq serve exited {rc!r} on SIGTERM (stderr: {(read(os.path.join(s, 'serve.err')) or '')[-300:]!r})")
    st = status_fields(read(os.path.join(s, "status")))
    if st.get("Uid", [""])[0] != "65534" or st.get("Gid", [""])[0] != "65534":
        fails.add(w, f"synq serve runs as uid {st.get('Uid')} gid {st.get('Gid')} after the open, want 65534")
    if st.get("CapEff", ["?"])[0].strip("0") or st.get("CapPrm", ["?"])[0].strip("0"):
        fails.add(w, f"synq serve holds capabilities after the open: CapEff {st.get('CapEff')} CapPrm {st.get('CapPrm')}")
    if st.get("NoNewPrivs") != ["1"] or st.get("Seccomp") != ["2"]:
        fails.add(w, f"synq serve NoNewPrivs {st.get('NoNewPrivs')}, Seccomp {st.get('Seccomp')}: want 1 and 2")
    errs = read(os.path.join(s, "scrape-errors"))
    if errs:
        fails.add(w, f"scrapes failed: {errs.splitlines()[:3]}")
    # One scrape between two readings of /proc: each listener's queues within what /proc showed.
    ns_dirs = sorted(os.path.join(s, d) for d in os.listdir(s) if d.startswith("ns"))
    before, _ = check.ground_truth(ns_dirs, "", fails, w + " ground truth")
    after, _ = check.ground_truth(ns_dirs, ".after", fails, w + " ground truth after")
    metrics = read(os.path.join(s, "metrics.txt")) or ""
    got = {m: samples(metrics, m) for m in ("synq_listener_sockets", "synq_syn_queue", "synq_accept_queue")}
    if not got["synq_syn_queue"]:
        fails.add(w, "the scrape holds no synq_syn_queue sample")
    for key in sorted(set(before) | set(after) | set(got["synq_syn_queue"]), key=str):
        b, a = before.get(key, [0, 0, 0]), after.get(key, [0, 0, 0])
        vals = [got[m].get(key) for m in ("synq_listener_sockets", "synq_syn_queue", "synq_accept_queue")]
        for i, name in enumerate(("sockets", "syn_queue", "accept_queue")):
            lo, hi = min(b[i], a[i]), max(b[i], a[i])
            if vals[i] is None or not lo <= vals[i] <= hi:
                fails.add(w, f"{check.fmt_key(key)}: scraped {name} {vals[i]}, /proc {b[i]} before and {a[i]} after")
    if 'href="/metrics"' not in (read(os.path.join(s, "index.html")) or ""):
        fails.add(w, "the / page does not link to /metrics")
    # Flat means no heap growth (RssAnon, where a leak shows). VmRSS also counts the mapped BTF's and kernel
    # files' pages, touched lazily by later walks: reported, not judged.
    rss, anon = [], []
    for n in ("rss-first", "rss-last"):
        text = read(os.path.join(s, n)) or ""
        m = re.search(r"VmRSS:\s*(\d+) kB", text)
        a = re.search(r"RssAnon:\s*(\d+) kB", text)
        rss.append(int(m.group(1)) if m else None)
        anon.append(int(a.group(1)) if a else None)
    if None in rss or None in anon:
        fails.add(w, f"RSS not recorded: VmRSS {rss}, RssAnon {anon}")
    elif anon[1] - anon[0] > RSS_SLACK_KB:
        fails.add(w, f"RSS grew: RssAnon from {anon[0]} to {anon[1]} kB over 1,000 scrapes (VmRSS {rss[0]} -> {rss[1]})")
    walks = re.search(r"stopped after (\d+) walk", read(os.path.join(s, "serve.err")) or "")
    secs = (read(os.path.join(s, "scrapes-seconds")) or "?").strip()
    return (f"serve: uid 65534, CapEff 0; scrape equals /proc ({len(before)} keys); 1,000 scrapes in {secs} s "
            f"({walks.group(1) if walks else '?'} walks), VmRSS {rss[0]} -> {rss[1]} kB, RssAnon {anon[0]} -> "
            f"{anon[1]} kB")


def check_watch(root, release, fails):
    w = f"[{release}] watch"
    d = os.path.join(root, "watch")
    if not os.path.isdir(d):
        fails.add(w, "no watch results (check_watch did not run)")
        return None
    rc = (read(os.path.join(d, "rc")) or "").strip()
    if rc != "0":
        fails.add(w, f"synq --watch exited {rc!r}: {(read(os.path.join(d, 'watch.err')) or '')[-300:]!r}")
    lines = []
    for i, l in enumerate((read(os.path.join(d, "watch.out")) or "").splitlines()):
        try:
            lines.append(json.loads(l))
        except ValueError as e:
            fails.add(w, f"line {i + 1} is not JSON: {e}")
    if len(lines) != 3:
        fails.add(w, f"{len(lines)} JSON lines, want 3 (--count 3)")
        return None
    step = {}
    for n in (1, 2):
        m = re.search(r"syn=(-?\d+) listendrops=(-?\d+)", read(os.path.join(d, f"step{n}")) or "")
        if not m:
            fails.add(w, f"the fixture did not record step {n}")
            return None
        step[n] = (int(m.group(1)), int(m.group(2)))
    ss = read(os.path.join(d, "ss-ltm")) or ""
    m = re.search(r",d(\d+)\)", ss)
    ss_drops = int(m.group(1)) if m else None

    def target(doc):
        return [l for l in doc.get("listeners", []) if l.get("port") == 8040 and l.get("addr") == "192.0.2.1"]

    rows = [target(doc) for doc in lines]
    if any(len(r) != 1 for r in rows):
        fails.add(w, f"listener 192.0.2.1:8040 found {[len(r) for r in rows]} times in the 3 intervals, want once each")
        return None
    r1, r2, r3 = (r[0] for r in rows)
    for i, doc in enumerate(lines):
        if doc.get("sequence") != i + 1 or doc.get("interval") != 3.0 or not isinstance(doc.get("timestamp"), float):
            fails.add(w, f"line {i + 1}: sequence {doc.get('sequence')}, interval {doc.get('interval')}, "
                      f"timestamp {doc.get('timestamp')!r}")
    ts = [doc.get("timestamp") or 0 for doc in lines]
    if not all(2.0 <= b - a <= 6.0 for a, b in zip(ts, ts[1:])):
        fails.add(w, f"timestamps {ts} are not ~3 s apart")
    # Interval 1: before either change. Interval 2: the 3 new half-open requests, no drop. Interval 3: the
    # queue /proc showed after the fill, and the drops ss -ltm shows, as this interval's delta.
    if r1["syn_queue"] != 0 or r1.get("drops_delta") is not None:
        fails.add(w, f"interval 1: syn_queue {r1['syn_queue']} (want 0), drops_delta {r1.get('drops_delta')!r} (want null)")
    if r2["syn_queue"] != step[1][0] or step[1][0] != 3 or r2.get("drops_delta") != 0:
        fails.add(w, f"interval 2: syn_queue {r2['syn_queue']} (/proc after step 1: {step[1][0]}, want 3), "
                  f"drops_delta {r2.get('drops_delta')!r} (want 0)")
    if r3["syn_queue"] != step[2][0] or not ss_drops or r3.get("drops_delta") != ss_drops or r3.get("drops") != ss_drops:
        fails.add(w, f"interval 3: syn_queue {r3['syn_queue']} (/proc after the fill: {step[2][0]}), drops "
                  f"{r3.get('drops')!r} delta {r3.get('drops_delta')!r} (ss -ltm d: {ss_drops})")
    # Its owner, in every interval (the owners walk is reused between intervals): the fixture's daemon.
    pid = (read(os.path.join(d, "pid")) or "").strip()
    for i, r in enumerate((r1, r2, r3)):
        owners = [(o.get("pid"), o.get("comm")) for o in r.get("owners") or []]
        if owners != [(int(pid or -1), "synq-fixture")]:
            fails.add(w, f"interval {i + 1}: owners {owners}, want the watch-target daemon {pid}")
    return (f"watch: 3 intervals, syn_queue {r1['syn_queue']} -> {r2['syn_queue']} -> {r3['syn_queue']}, "
            f"drops_delta {r1.get('drops_delta')} -> {r2.get('drops_delta')} -> {r3.get('drops_delta')} (ss d {ss_drops})")


def _doctor(base):
    """synq doctor --json's checks by name, its verdict, and both exit codes."""
    doc = json.loads(read(base + ".out") or "null")
    if not isinstance(doc, dict):
        return None
    checks = {c.get("check"): c for c in doc.get("checks", []) if isinstance(c, dict)}
    return doc, checks, (read(base + ".rc") or "").strip(), (read(base + "-text.rc") or "").strip()


def check_doctor(root, release, fails, lockdown_run=False):
    """synq doctor's verdicts in each situation the guest made: plain (under lockdown=integrity on the 6.12
    boot), kptr_restrict=2, not root, and (the lockdown boot) lockdown=confidentiality."""
    cmdline = (read(os.path.join(root, "cmdline")) or "").split()
    major = int(re.match(r"(\d+)", release or "0").group(1))
    if lockdown_run:
        cases = {"lockdown-run/doctor": (False, {"lockdown": ("fail", "confidentiality"), "kcore": ("fail", None)})}
    else:
        integrity = "lockdown=integrity" in cmdline
        cases = {
            "doctor/plain": (True, {"root and capabilities": ("ok", None),
                                    "kcore": ("ok", None),
                                    "lockdown": ("ok", "integrity" if integrity else None),
                                    "kptr_restrict": ("ok", None)}),
            # 6.0+: the in-memory kallsyms, found through kcore's VMCOREINFO, need no /proc/kallsyms; before
            # 6.0, /boot/System.map-RELEASE (checked against linux_banner) needs none either; without it
            # (moved aside) only 6.0+ works.
            "kptr/doctor": (True, {"kptr_restrict": ("warn", "2")}),
            "kptr/doctor-nomap": (major >= 6, {"kptr_restrict": ("warn" if major >= 6 else "fail", "2")}),
            "unpriv/doctor": (False, {"root and capabilities": ("fail", "root")}),
        }
    notes = []
    for rel, (works, want) in cases.items():
        w = f"[{release}] doctor ({rel})"
        got = _doctor(os.path.join(root, rel))
        if got is None:
            fails.add(w, f"no JSON from synq doctor --json: {(read(os.path.join(root, rel + '.err')) or '')[:300]!r}")
            continue
        doc, checks, rc, rc_text = got
        if doc.get("works") is not works or rc != ("0" if works else "1") or rc_text != rc:
            fails.add(w, f"works {doc.get('works')!r}, exit {rc} (text: {rc_text}); want works {works}, "
                      f"exit {0 if works else 1} both ways; verdict {doc.get('verdict')!r}")
        for name, (status, word) in want.items():
            c = checks.get(name)
            if c is None:
                fails.add(w, f"no '{name}' check (checks: {sorted(checks)})")
                continue
            text = f"{c.get('found')} {c.get('fix')}"
            if c.get("status") != status or (word and word not in text):
                fails.add(w, f"'{name}': {c.get('status')} ({text!r}); want {status}"
                          + (f" mentioning {word!r}" if word else ""))
        notes.append(f"{rel.split('/')[0]} {'works' if doc.get('works') else 'refuses'}")
    return "doctor: " + ", ".join(notes)
