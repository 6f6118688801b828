#!/usr/bin/env python3
"""Churn soak, live (issue 7, item 4): the host's judgement of what a synq.mode=soak guest sent (stdlib only).

Usage: check_soak.py RESULTS_DIR              judge, print the figures
       check_soak.py --selftest RESULTS_DIR   plant defects in copies of a passing RESULTS_DIR; each must fail

RESULTS_DIR (soak.sh: target/realkernel/soak-<id>/results) holds the "basic" scenario's ground truth taken
before the churn started (basic/ns*/{netns,tcp,tcp6,ss-ltn,expect,kinds}, mptcp/), and soak/:
  runs-wanted, window, cpus; churn-ns{1,2}.{before,after} (each churner's status when the first synq run
  began and after the last: cycles, fails, CLOCK_MONOTONIC ms) and churn-ns{1,2}.out (its final CHURN line);
  runs.txt ("RUN i rc ms"; rc "timeout" when the guest killed it) and run/NNNNN.{out,err} (synq --json);
  proc.txt ("PROC i ns file reads listen_lines dup_inodes ms") and proc/NNNNN/ns{1,2}/{tcp,tcp6} (the
  kernel's /proc/PID/net/tcp{,6} read right after run i, as a reader gets it, churn listeners left out);
  verdict (the ground truth re-read after the churn stopped: same / CHANGED).

Rules (each a failure):
  * the guest's status OK, mode soak; the ground truth is what the fixture built (check.py's rules, the same
    as check_dump.py's) and was still standing after the soak (verdict same);
  * the churn: both namespaces churned, and together at least 2,000 listener open/close cycles a second over
    the soak window;
  * runs.txt holds exactly runs-wanted runs; every exit is 0 or 2, none took over 5 s;
  * every run's JSON: per fixed key (netns, family, addr, port of the ground truth) the listener count,
    SYN-queue sum and accept-queue sum equal the ground truth; any other key must be a churn listener's
    (a port of the ephemeral range, 32768 and up; or port 0: a churn listener read while it closes, which
    is counted and printed): nothing else may appear;
  * the /proc copies exist for every run (4 per run).
The /proc copies are not judged, they are counted: per sample, whether the fixed keys are exact, or whether
a fixed listener shows twice (duplicated) or not at all (missing), and how many listener rows of any kind
were served twice (same socket inode on two st 0A lines). These figures are printed next to synq's.
Exit status 0 only if every rule holds.
"""
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402  (the ground-truth rules of the live test)
import check_dump  # noqa: E402  (check_truth: the basic scenario as built)

MIN_RATE = 2000
MAX_RUN_MS = 5000
EPHEMERAL_LO = 32768
NS = ("ns1", "ns2")


def read_kv(path):
    return check_dump.read_kv(path)


def proc_groups(sample, ns_inodes):
    """Key -> [listeners, syn, acc] from one /proc sample (proc/NNNNN/ns*/tcp{,6}), attributed as
    check.ground_truth does: a request to the listener of its (addr, port), else to that port's wildcard."""
    groups = {}
    for ns in NS:
        inode = ns_inodes[ns]
        for family, name in (("inet", "tcp"), ("inet6", "tcp6")):
            listeners, requests = check.parse_proc(os.path.join(sample, ns, name), family)
            present = set()
            for addr, port, rx in listeners:
                g = groups.setdefault((inode, family, addr, port), [0, 0, 0])
                g[0] += 1
                g[2] += rx
                present.add((addr, port))
            for addr, port, _ in requests:
                if (addr, port) in present:
                    key = (inode, family, addr, port)
                elif (check.WILDCARD[family], port) in present:
                    key = (inode, family, check.WILDCARD[family], port)
                else:
                    continue  # its listener is missing from this copy: counted there
                groups[key][1] += 1
    return groups


def request_rows_twice(sample):
    """Request (st 03) rows of one sample that repeat an earlier row's (local, remote) pair: a row served twice."""
    n = 0
    for ns in NS:
        for name in ("tcp", "tcp6"):
            seen = set()
            with open(os.path.join(sample, ns, name)) as f:
                for line in f.read().splitlines()[1:]:
                    p = line.split()
                    if len(p) > 3 and p[3] == "03":
                        n += (p[1], p[2]) in seen
                        seen.add((p[1], p[2]))
    return n


def judge(root):
    """Returns (failures, figures text lines, release)."""
    fails = check.Failures()
    status = (check.read_text(os.path.join(root, "status")) or "").strip()
    release = (check.read_text(os.path.join(root, "release")) or "").strip()
    mode = (check.read_text(os.path.join(root, "mode")) or "").strip()
    where = f"[{release or '?'}] soak"
    lines = []
    if status != "OK":
        fails.add(where, f"guest status is {status or 'missing'!r}")
    if mode != "soak":
        fails.add(where, f"guest mode {mode or 'missing'!r}, want 'soak'")
    s = os.path.join(root, "soak")
    verdict = (check.read_text(os.path.join(s, "verdict")) or "").strip()
    with contextlib.redirect_stdout(io.StringIO()):
        truth_info, _ = check_dump.check_truth(
            os.path.abspath(root), release, fails, where, {},
            stable=(verdict == "same", f"the ground truth re-read after the churn stopped is {verdict or 'missing'!r}"
                    " (soak/verdict), not the one taken before it: the fixed listeners moved"))
    if truth_info is None:
        return fails, lines, release
    truth = truth_info[0]
    ns_inodes = {ns: check.netns_inode(os.path.join(root, "basic", ns, "netns")) for ns in NS}
    wanted = int((check.read_text(os.path.join(s, "runs-wanted")) or "0").strip() or 0)

    # The churn over the soak window.
    rates, cycles, fails_n = {}, {}, {}
    for ns in NS:
        b = read_kv(os.path.join(s, f"churn-{ns}.before"))
        a = read_kv(os.path.join(s, f"churn-{ns}.after"))
        try:
            dc = int(a["cycles"]) - int(b["cycles"])
            dt = (int(a["now_ms"]) - int(b["now_ms"])) / 1000
            cycles[ns], fails_n[ns] = dc, int(a["fails"]) - int(b["fails"])
            rates[ns] = dc / dt if dt > 0 else 0.0
        except (KeyError, ValueError) as e:
            fails.add(where + " churn", f"{ns}: churn status before/after the soak unreadable ({e!r})")
            rates[ns] = 0.0
        if cycles.get(ns, 0) <= 0:
            fails.add(where + " churn", f"{ns}: no listener opened and closed during the soak")
    total_rate = sum(rates.values())
    if total_rate < MIN_RATE:
        fails.add(where + " churn", f"{total_rate:.0f} listener open/close cycles a second across both namespaces "
                  f"during the soak ({', '.join(f'{ns} {r:.0f}/s' for ns, r in rates.items())}), want >= {MIN_RATE}")
    window = (check.read_text(os.path.join(s, "window")) or "?").strip()
    paced = (check.read_text(os.path.join(s, "rate")) or "?").strip()
    cpus = (check.read_text(os.path.join(s, "cpus")) or "?").strip()
    lines.append(f"churn: {total_rate:.0f} listener open/close cycles/s across both namespaces during the soak "
                 f"({', '.join(f'{ns} {rates[ns]:.0f}/s, {cycles.get(ns, 0)} cycles, {fails_n.get(ns, 0)} binds refused' for ns in NS)}; "
                 f"{window} churn listeners alive per namespace; paced at {paced}/s per namespace (0: unpaced); {cpus} vCPUs)")

    # synq's runs.
    runs = []
    for line in (check.read_text(os.path.join(s, "runs.txt")) or "").splitlines():
        p = line.split()
        if len(p) == 4 and p[0] == "RUN":
            runs.append((int(p[1]), p[2], float(p[3])))
    if [r[0] for r in runs] != list(range(wanted)) or wanted < 1:
        fails.add(where + " runs", f"runs.txt holds {len(runs)} runs (ids {runs[0][0] if runs else '-'}.."
                  f"{runs[-1][0] if runs else '-'}), want exactly {wanted} (0..{wanted - 1})")
    rc_count, bad_rc, slow, inexact, phantom, bad_json, warn_texts = {}, [], [], [], [], [], {}
    port0 = []  # (run, exit) of runs that reported a listener on port 0
    for i, rc, ms in runs:
        rc_count[rc] = rc_count.get(rc, 0) + 1
        if rc not in ("0", "2"):
            err = (check.read_text(os.path.join(s, "run", f"{i:05d}.err")) or "").strip()
            bad_rc.append(f"run {i}: exit {rc}: {err.splitlines()[0][:200] if err else '(no stderr)'}")
            continue
        if ms > MAX_RUN_MS:
            slow.append(f"run {i}: {ms:.0f} ms")
        text = check.read_text(os.path.join(s, "run", f"{i:05d}.out")) or ""
        try:
            doc = json.loads(text)
            if not isinstance(doc.get("listeners"), list) or not isinstance(doc.get("warnings"), list):
                raise ValueError("no listeners / warnings lists")
        except (ValueError, AttributeError) as e:
            bad_json.append(f"run {i} (exit {rc}): {e}; stdout starts {text[:120]!r}")
            continue
        for w in doc["warnings"]:
            warn_texts[str(w)[:160]] = warn_texts.get(str(w)[:160], 0) + 1
        with contextlib.redirect_stdout(io.StringIO()):
            got, _ = check.synq_groups(doc, check.Failures(), "soak")
        diff = [k for k in truth if got.get(k) != truth[k]]
        if diff:
            inexact.append(f"run {i} (exit {rc}): " + "; ".join(
                f"{check.fmt_key(k)} synq {check.fmt_row(got.get(k))} truth {check.fmt_row(truth[k])}" for k in diff[:3]))
        # A churn listener caught while it closes: tcp_set_state(TCP_CLOSE) unhashes it and releases its port
        # (inet_num = 0) before it stores the new state, so for a moment it is a TCP_LISTEN socket on port 0.
        # It comes from the churn, which may show (counted and printed, not failed).
        if any(k[3] == 0 for k in got if k not in truth):
            port0.append((i, rc))
        extra = [k for k in got if k not in truth and not (k[3] >= EPHEMERAL_LO or k[3] == 0)]
        if extra:
            phantom.append(f"run {i}: " + "; ".join(f"{check.fmt_key(k)} {check.fmt_row(got[k])}" for k in extra[:3]))
    for label, items, rule in (
            ("exit status", bad_rc, "every exit must be 0 or 2"),
            ("time", slow, f"no run may take over {MAX_RUN_MS // 1000} s"),
            ("JSON", bad_json, "every run must print synq's JSON"),
            ("fixed listeners", inexact, "the fixed listeners must be reported exactly on every run"),
            ("other listeners", phantom, "a key that is neither a fixed listener nor a churn listener (port >= "
                                         f"{EPHEMERAL_LO}, or 0 while it closes)")):
        if items:
            fails.add(f"{where} {label}", f"{len(items)} of {len(runs)} runs break the rule ({rule}): "
                      + " | ".join(items[:5]))
    ms_sorted = sorted(r[2] for r in runs)
    longest = max(runs, key=lambda r: r[2]) if runs else None
    n_exact = len(runs) - len(inexact) - len(bad_rc) - len(bad_json)
    if runs:
        lines.append(f"synq: {len(runs)} runs of synq --json; exit codes "
                     + ", ".join(f"{rc}: {n}" for rc, n in sorted(rc_count.items()))
                     + f"; longest {longest[2]:.0f} ms (run {longest[0]}), median {ms_sorted[len(ms_sorted) // 2]:.0f} ms; "
                     f"fixed listeners ({len(truth)} keys, {sum(v[0] for v in truth.values())} listeners) exact in "
                     f"{n_exact}/{len(runs)} runs")
    if port0:
        lines.append(f"synq reported a listener on port 0 (a churn listener read while it closed) in {len(port0)} runs, "
                     "exit codes " + ", ".join(f"{rc}: {sum(1 for _, r in port0 if r == rc)}"
                                               for rc in sorted({r for _, r in port0}))
                     + f" (runs {', '.join(str(i) for i, _ in port0[:10])})")
    for name in ("timing-quiet", "timing-churn"):
        t = (check.read_text(os.path.join(s, name)) or "").strip().replace("\n", " | ")
        if t:
            lines.append(f"synq --json, SYNQ_TIMING=1, {'before the churn' if name.endswith('quiet') else 'under it'}: "
                         f"{t[:400]}")
    if warn_texts:
        lines.append("synq warnings seen: " + "; ".join(f"{n}x {w!r}" for w, n in sorted(warn_texts.items(),
                                                                                         key=lambda x: -x[1])[:3]))

    # The kernel's /proc/net/tcp under the same churn: counted, not judged.
    samples = {}
    for line in (check.read_text(os.path.join(s, "proc.txt")) or "").splitlines():
        p = line.split()
        if len(p) == 8 and p[0] == "PROC":
            samples.setdefault(int(p[1]), []).append((p[2], p[3], int(p[4]), int(p[5]), int(p[6]), float(p[7])))
    complete = [i for i in range(wanted) if len(samples.get(i, ())) == 4]
    if len(complete) != wanted:
        fails.add(where + " /proc samples", f"{len(complete)} of {wanted} runs have their 4 /proc copies (proc.txt)")
    p_exact = p_dup = p_missing = p_req = l_twice = r_twice = 0
    reads, examples = [], []
    for i in complete:
        d = os.path.join(s, "proc", f"{i:05d}")
        try:
            g = proc_groups(d, ns_inodes)
            r2 = request_rows_twice(d)
        except (OSError, ValueError) as e:
            fails.add(where + " /proc samples", f"sample {i} unreadable: {e}")
            continue
        dup = [k for k in truth if g.get(k, [0])[0] > truth[k][0]]
        missing = [k for k in truth if g.get(k, [0])[0] < truth[k][0]]
        req = [k for k in truth if k not in dup + missing and g.get(k) != truth[k]]
        p_dup += bool(dup)
        p_missing += bool(missing)
        p_req += bool(req)
        p_exact += not (dup or missing or req)
        for k in (dup + missing + req)[:1]:
            if len(examples) < 3:
                examples.append(f"sample {i}: {check.fmt_key(k)} /proc {check.fmt_row(g.get(k))} truth "
                                f"{check.fmt_row(truth[k])}")
        l_twice += sum(x[4] for x in samples[i])
        r_twice += r2
        reads += [x[2] for x in samples[i] if x[1] == "tcp"]
    if complete:
        lines.append(f"/proc/net/tcp{{,6}} under the same churn: {len(complete)} samples (both namespaces each): "
                     f"fixed listeners exact in {p_exact}; a fixed listener row duplicated in {p_dup}, missing in "
                     f"{p_missing}; a fixed listener's SYN-queue rows (st 03) duplicated or missing in {p_req}; rows "
                     f"served twice: {l_twice} listener rows (any listener), {r_twice} request rows; read() calls per "
                     f"tcp file {min(reads)}..{max(reads)}" + (f"; e.g. {'; '.join(examples)}" if examples else ""))
    return fails, lines, release


def run_judge_quiet(root):
    with contextlib.redirect_stdout(io.StringIO()):
        return judge(root)


# ---------------------------------------------------------------------------------------------------------
# Selftest: planted defects in copies of a passing results directory must fail.

def _edit_line(rel, fn):
    def plant(root):
        path = os.path.join(root, rel)
        with open(path) as f:
            text = f.read().splitlines()
        text = fn(text)
        with open(path, "w") as f:
            f.write("\n".join(text) + "\n")
    return plant


def _run_field(index, field, value):
    def fn(lines):
        p = lines[index].split()
        p[field] = value
        lines[index] = " ".join(p)
        return lines
    return fn


def _first_run_json(fn):
    def plant(root):
        path = os.path.join(root, "soak", "run", "00000.out")
        with open(path) as f:
            doc = json.load(f)
        fn(doc, root)
        with open(path, "w") as f:
            json.dump(doc, f)
    return plant


def _fixed(doc, root):
    """The listeners of synq's JSON that are fixed (ground-truth keys), in order."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth_info, _ = check_dump.check_truth(os.path.abspath(root), "", check.Failures(), "plant", {},
                                               stable=(True, ""))
    truth = truth_info[0]
    return [l for l in doc["listeners"] if (l["netns"], l["family"], l["addr"], l["port"]) in truth]


def _bump_fixed_syn(doc, root):
    _fixed(doc, root)[0]["syn_queue"] += 1


def _drop_fixed(doc, root):
    doc["listeners"].remove(_fixed(doc, root)[-1])


def _phantom(doc, root):
    l = dict(_fixed(doc, root)[0])
    l["port"] = 8999
    doc["listeners"].append(l)


def _write(rel, text):
    def plant(root):
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    return plant


def _no_churn(ns):
    def plant(root):
        shutil.copy(os.path.join(root, "soak", f"churn-{ns}.before"), os.path.join(root, "soak", f"churn-{ns}.after"))
    return plant


def _slow_churn(root):
    for ns in NS:
        p = os.path.join(root, "soak", f"churn-{ns}.after")
        kv = read_kv(p)
        b = read_kv(os.path.join(root, "soak", f"churn-{ns}.before"))
        kv["cycles"] = str(int(b["cycles"]) + (int(kv["now_ms"]) - int(b["now_ms"])) // 2)  # 500/s each
        with open(p, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in kv.items()))


def selftest_cases():
    return {
        "a run exits 1": (_edit_line("soak/runs.txt", _run_field(0, 2, "1")), "exit status"),
        "a run killed (timeout)": (_edit_line("soak/runs.txt", _run_field(0, 2, "timeout")), "exit status"),
        "a run took 5.001 s": (_edit_line("soak/runs.txt", _run_field(0, 3, "5001.0")), "time"),
        "a run missing": (_edit_line("soak/runs.txt", lambda l: l[:-1]), "runs"),
        "SYN queue +1 on a fixed listener": (_first_run_json(_bump_fixed_syn), "fixed listeners"),
        "a fixed listener dropped": (_first_run_json(_drop_fixed), "fixed listeners"),
        "a listener neither fixed nor churn": (_first_run_json(_phantom), "other listeners"),
        "a run without JSON": (_write("soak/run/00000.out", "not json\n"), "JSON"),
        "no churn in ns2": (_no_churn("ns2"), "churn"),
        "churn at 1,000 a second": (_slow_churn, "churn"),
        "state moved during the soak": (_write("soak/verdict", "CHANGED\n"), "moved"),
        "/proc samples missing": (_edit_line("soak/proc.txt", lambda l: l[:-4]), "/proc samples"),
        "fixture EXPECT differs from /proc": (_edit_line("basic/ns1/expect", lambda l: [
            " ".join(l[0].split()[:5] + [str(int(l[0].split()[5]) + 1)] + l[0].split()[6:])] + l[1:]),
            "scenario as built"),
    }


SELFTEST_RUNS = 20


def copy_trimmed(root, dst, keep):
    """A copy of RESULTS_DIR holding only its first `keep` runs and /proc samples (every planted defect lies
    in run 0, the last run or the shared files): judging 14 full copies of 1,000 runs would take minutes."""
    def ignore(d, names):
        if os.path.basename(d) in ("run", "proc") and os.path.basename(os.path.dirname(d)) == "soak":
            return [n for n in names if n[:5].isdigit() and int(n[:5]) >= keep]
        return []
    shutil.copytree(root, dst, ignore=ignore)
    s = os.path.join(dst, "soak")
    wanted = int((check.read_text(os.path.join(s, "runs-wanted")) or "0").strip() or 0)
    keep = min(keep, wanted)
    with open(os.path.join(s, "runs-wanted"), "w") as f:
        f.write(f"{keep}\n")
    for name in ("runs.txt", "proc.txt"):
        lines = (check.read_text(os.path.join(s, name)) or "").splitlines()
        with open(os.path.join(s, name), "w") as f:
            f.writelines(l + "\n" for l in lines if len(l.split()) > 1 and l.split()[1].isdigit()
                         and int(l.split()[1]) < keep)


def selftest(root):
    fails, _, _ = run_judge_quiet(root)
    if fails.items:
        print(f"selftest: the results do not pass to begin with ({len(fails.items)} failures, first: "
              f"{fails.items[0][:300]}); run the plain check first")
        return 1
    cases = selftest_cases()
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        # The trimmed copy must pass as it is, or the planted failures prove nothing.
        d = os.path.join(tmp, "r")
        copy_trimmed(root, d, SELFTEST_RUNS)
        f = run_judge_quiet(d)[0]
        if f.items:
            print(f"selftest: the copy trimmed to {SELFTEST_RUNS} runs does not pass: {f.items[0][:300]}")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        for name, (plant, must) in cases.items():
            d = os.path.join(tmp, "r")
            shutil.rmtree(d, ignore_errors=True)
            copy_trimmed(root, d, SELFTEST_RUNS)
            try:
                plant(d)
            except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
                missed.append(f"{name} (could not plant: {e!r})")
                continue
            f = run_judge_quiet(d)[0]
            if not f.items:
                missed.append(name)
            elif not any(must in item for item in f.items):
                missed.append(f"{name} (failed, but not on {must!r}: {f.items[:2]})")
    if missed:
        print(f"selftest: FAILED: planted defects NOT detected: {missed}")
        return 1
    print(f"selftest: OK: all {len(cases)} planted defects detected (in copies trimmed to the first "
          f"{SELFTEST_RUNS} runs)")
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--selftest":
        return selftest(args[1])
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    fails, lines, release = judge(args[0])
    for l in lines:
        print(f"info: [{release}] {l}")
    if fails.items:
        print(f"check: FAILED [{release or '?'}] soak: {len(fails.items)} problem(s)")
        return 1
    print(f"check: OK [{release}] soak: every synq run exited 0 or 2 within {MAX_RUN_MS // 1000} s and reported the "
          f"fixed listeners exactly, under >= {MIN_RATE} listener open/close cycles a second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
