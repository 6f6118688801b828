#!/usr/bin/env python3
"""Judges what prometheus.sh recorded (issue 9): Prometheus's answers about synq serve of a real guest's dump
against the guest's own /proc, node_exporter's view of synq's textfile against the textfile, and synq serve's
privileges after the open.

    check_prometheus.py OUTDIR PDIR     (OUTDIR: the dump.sh result dir; PDIR: OUTDIR/prometheus)

Then, as a negative control, the same judgement on planted defects (a queue off by one, a listener missing, a
node_exporter series changed, synq serve still root, ...), each of which must fail.
"""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402
import check_dump  # noqa: E402


class Quiet(check.Failures):
    """Failures of a planted defect: counted, not printed."""

    def add(self, where, msg):
        self.items.append(f"{where}: {msg}")


def api_series(path):
    """Prometheus API query result -> {(netns, family, addr, port): summed value} (summed over owner)."""
    doc = json.load(open(path))
    if doc.get("status") != "success":
        raise ValueError(f"{path}: status {doc.get('status')!r}")
    out = {}
    for r in doc["data"]["result"]:
        m = r["metric"]
        key = (int(m["netns"]), m["family"], m["addr"], int(m["port"]))
        out[key] = out.get(key, 0) + int(float(r["value"][1]))
    return out


def exposition(path):
    """The synq_* samples of a text exposition: {name{labels}: value}."""
    out = {}
    for line in open(path):
        if line.startswith("synq_"):
            name, _, value = line.rstrip("\n").rpartition(" ")
            out[name] = value
    return out


def load(outdir, pdir):
    fails = check.Failures()
    ns_dirs = check_dump.ns_dirs_of(os.path.join(outdir, "results"))
    truth, _ = check.ground_truth(ns_dirs, "", fails, "ground truth")
    data = {
        "truth": truth,
        "syn": api_series(os.path.join(pdir, "api-syn_queue.json")),
        "acc": api_series(os.path.join(pdir, "api-accept_queue.json")),
        "sockets": api_series(os.path.join(pdir, "api-sockets.json")),
        "up": json.load(open(os.path.join(pdir, "api-up.json"))),
        "status": dict(l.split(":", 1) for l in open(os.path.join(pdir, "serve-status")) if ":" in l),
        "rc": open(os.path.join(pdir, "serve.rc")).read().strip(),
        "textfile": exposition(os.path.join(pdir, "textfile", "synq.prom")),
        "node": exposition(os.path.join(pdir, "node-metrics.txt")),
        "node_raw": open(os.path.join(pdir, "node-metrics.txt")).read(),
    }
    return data, fails


def judge(d, fails):
    w = "prometheus"
    truth = d["truth"]
    if not truth:
        fails.add(w, "no ground truth listeners")
    for key in sorted(set(truth) | set(d["syn"]), key=str):
        t = truth.get(key)
        got = (d["sockets"].get(key), d["syn"].get(key), d["acc"].get(key))
        if t is None:
            fails.add(w, f"Prometheus has {key} (synq_syn_queue {got[1]}), /proc has no such listener")
        elif got != tuple(t):
            fails.add(w, f"{key}: Prometheus says sockets/syn_queue/accept_queue {got}, /proc {tuple(t)}")
    up = d["up"]["data"]["result"]
    if len(up) != 1 or up[0]["value"][1] != "1":
        fails.add(w, f"up{{job=synq}} is {up!r}, want one series at 1")
    st = {k.strip(): v.split() for k, v in d["status"].items()}
    if st.get("Uid", [""])[:1] != ["65534"] or st.get("Gid", [""])[:1] != ["65534"]:
        fails.add(w, f"synq serve runs as uid {st.get('Uid')} gid {st.get('Gid')}, want nobody (65534)")
    for cap in ("CapEff", "CapPrm"):
        if st.get(cap, [""])[0].strip("0") != "":
            fails.add(w, f"synq serve holds {cap} {st.get(cap)} after the open, want none")
    if st.get("NoNewPrivs") != ["1"] or st.get("Seccomp") != ["2"]:
        fails.add(w, f"synq serve: NoNewPrivs {st.get('NoNewPrivs')}, Seccomp {st.get('Seccomp')}, want 1 and 2")
    if d["rc"] != "0":
        fails.add(w, f"synq serve exited {d['rc']} on SIGTERM, want 0")
    # node_exporter: every synq series of the textfile, with the same value, and nothing else of synq's.
    tf, node = d["textfile"], d["node"]
    if not tf:
        fails.add(w, "the textfile holds no synq_ sample")
    for name in sorted(set(tf) | set(node)):
        if tf.get(name) != node.get(name):
            fails.add(w, f"node_exporter shows {name} = {node.get(name)!r}, the textfile {tf.get(name)!r}")
    if 'node_textfile_scrape_error 0' not in d["node_raw"]:
        fails.add(w, "node_exporter reports a textfile scrape error (node_textfile_scrape_error is not 0)")
    return (f"{len(truth)} listeners equal in Prometheus (sockets, syn_queue, accept_queue); "
            f"{len(tf)} synq series identical through node_exporter; synq serve uid {st.get('Uid', ['?'])[0]}, "
            f"CapEff {st.get('CapEff', ['?'])[0]}")


def plants():
    def bump(d):
        k = max(d["syn"], key=lambda k: d["syn"][k])
        d["syn"][k] += 1

    def drop(d):
        d["acc"].pop(next(iter(d["acc"])))

    def extra(d):
        d["syn"][(1, "inet", "203.0.113.9", 9)] = 0

    def node(d):
        k = next(iter(d["node"]))
        d["node"][k] = d["node"][k] + "1"

    def root(d):
        d["status"]["Uid"] = "\t0\t0\t0\t0"

    def caps(d):
        d["status"]["CapEff"] = "\t000001ffffffffff"

    def rc(d):
        d["rc"] = "1"

    def down(d):
        d["up"]["data"]["result"] = []

    def tferr(d):
        d["node_raw"] = d["node_raw"].replace("node_textfile_scrape_error 0", "node_textfile_scrape_error 1")

    return {"syn_queue +1": bump, "accept_queue series missing": drop, "a listener /proc lacks": extra,
            "node_exporter value changed": node, "serve still root": root, "serve kept CapEff": caps,
            "serve exit 1": rc, "synq down": down, "textfile scrape error": tferr}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        data, fails = load(sys.argv[1], sys.argv[2])
    except (OSError, ValueError, KeyError) as e:
        print(f"check_prometheus: FAIL: cannot read the recordings: {e}")
        return 1
    note = judge(data, fails)
    if fails.items:
        return 1
    print(f"check: OK [prometheus] {note}")
    missed = []
    for name, plant in plants().items():
        d = copy.deepcopy(data)
        plant(d)
        f = Quiet()
        judge(d, f)
        if not f.items:
            missed.append(name)
    if missed:
        print(f"selftest: FAILED: planted defects NOT detected: {missed}")
        return 1
    print(f"selftest: OK: all {len(plants())} planted defects detected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
