#!/usr/bin/env bash
# The crossover curve: `synq --total` against `ss -tn state syn-recv | wc -l` as the number of established
# connections grows, on a real Debian kernel in a QEMU TCG guest (2 GiB, 1 vCPU).
#
#   bench/crossover.sh            # kernel 6.12
#   bench/crossover.sh 6.1        # another kernel
#
# synq walks the listeners (10 here, whatever the connection count): a constant cost. ss asks the kernel to
# walk every socket (sock_diag): a cost linear in connections. The guest sets up 10 listeners with N
# established loopback connections (2N sockets) and 5 half-open requests for each N in SYNQ_CURVE_POINTS,
# times both commands (median of SYNQ_BENCH_RUNS, fork to exit) and checks that both count the same
# half-open requests as /proc/net/tcp.
#
# Env: SYNQ_BIN (default target/release/synq), SYNQ_BENCH_RUNS (5), SYNQ_CURVE_POINTS
# (1000,5000,10000,20000,50000,100000,150000,200000), SYNQ_BENCH_TIMEOUT (seconds, 3600).
# Outputs: target/bench/crossover-<id>.txt (table) and target/bench/crossover-<id>.svg (plot).
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tests/realkernel/lib.sh"

id=${1:-6.12}
rk_kernel_ids "$id" >/dev/null || exit 2
runs=${SYNQ_BENCH_RUNS:-5}
points=${SYNQ_CURVE_POINTS:-1000,5000,10000,20000,50000,100000,150000,200000}
[[ $runs =~ ^[0-9]+$ && $points =~ ^[0-9]+(,[0-9]+)*$ ]] \
  || { echo "crossover: bad SYNQ_BENCH_RUNS or SYNQ_CURVE_POINTS" >&2; exit 2; }

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
[[ -x $synq_bin ]] || { echo "crossover: no synq binary at $synq_bin (cargo build --release)" >&2; exit 1; }

"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "$id" >/dev/null

configs=$(tr ',' '\n' <<<"$points" | sed 's/^/10:/' | paste -sd,)
out=$REPO_ROOT/target/bench/crossover-$id
mkdir -p "$out"
t0=$SECONDS
SYNQ_BIN=$synq_bin "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$out/initramfs.cpio.gz"
rk_boot "$id" "$out" 2048 "${SYNQ_BENCH_TIMEOUT:-3600}" \
  "synq.mode=bench synq.bench=$configs synq.runs=$runs synq.half=5 synq.only=curve" || exit 1
rk_log "$id: crossover guest done in $((SECONDS - t0))s"

table=$REPO_ROOT/target/bench/crossover-$id.txt
svg=$REPO_ROOT/target/bench/crossover-$id.svg
rc=0
python3 - "$out/results" "$configs" "$runs" "$table" "$svg" <<'EOF' || rc=$?
import re, sys
res, configs, runs, table, svg = sys.argv[1:]
release = open(f"{res}/release").read().strip()
rows, bad = [], False
def field(line, name):
    m = re.search(r"\b" + name + r"=(\S+)", line)
    return m.group(1) if m else None
for c in configs.split(","):
    n, m = c.split(":")
    try:
        lines = open(f"{res}/bench/l{n}_c{m}.txt").read().splitlines()
    except OSError:
        print(f"crossover: no results for {m} connections", file=sys.stderr)
        bad = True
        continue
    t = {}
    for line in lines:
        if line.startswith("TIME "):
            label = line.split()[1]
            t[label] = float(field(line, "median_ms"))
            if field(line, "rc") != "0":
                bad = True
                print(f"crossover: {label} exited {field(line, 'rc')} at {m} connections", file=sys.stderr)
    v = next((l for l in lines if l.startswith("VALUES ")), "")
    counts = [field(v, k) for k in ("synq_total", "ss_synrecv", "proc_synrecv")]
    est = field(v, "ss_established")
    if None in counts or len(set(counts)) != 1 or field(v, "synq_rc") != "0" or est != str(2 * int(m)):
        bad = True
        print(f"crossover: at {m} connections synq/ss//proc disagree or the setup is off: {v}", file=sys.stderr)
    if "synq_total" in t and "ss_synrecv" in t:
        rows.append((int(m), t["synq_total"], t["ss_synrecv"], counts[0], est))
with open(table, "w") as f:
    f.write(f"kernel {release}, QEMU TCG, 1 vCPU, 2 GiB; 10 listeners, 5 half-open; wall ms, median of {runs}\n")
    f.write("| established connections | synq --total | ss -tn state syn-recv \\| wc -l | synq / ss |\n")
    f.write("|---:|---:|---:|---:|\n")
    for m, s, q, _, _ in rows:
        f.write(f"| {m:,} | {s:.0f} | {q:.0f} | {s / q:.2f}x |\n")
    cross = next((m for m, s, q, _, _ in rows if s <= q), None)
    f.write(f"\nsynq is faster from: {f'{cross:,} connections' if cross else 'not within the range measured'}\n")
# The plot: two polylines on linear axes, written by hand (no plotting library in the guest or on the host).
W, H, L, R, T, B = 640, 400, 70, 20, 40, 50
if rows:
    xmax = max(r[0] for r in rows)
    ymax = max(max(r[1], r[2]) for r in rows) * 1.1
    X = lambda x: L + (W - L - R) * x / xmax
    Y = lambda y: H - B - (H - T - B) * y / ymax
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">synq --total vs ss -tn state syn-recv | wc -l ({release}, QEMU TCG)</text>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for i in range(6):
        yv = ymax * i / 5
        p.append(f'<text x="{L - 6}" y="{Y(yv) + 4:.1f}" text-anchor="end">{yv:.0f}</text>')
        p.append(f'<line x1="{L}" y1="{Y(yv):.1f}" x2="{W - R}" y2="{Y(yv):.1f}" stroke="#ddd"/>')
    for m, *_ in rows:
        p.append(f'<text x="{X(m):.1f}" y="{H - B + 16}" text-anchor="middle" font-size="10">{m // 1000}k</text>')
    p.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">established connections (10 listeners)</text>')
    p.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">wall ms (median)</text>')
    for col, color, name, dy in ((1, "#1f77b4", "synq --total", 0), (2, "#d62728", "ss -tn state syn-recv | wc -l", 16)):
        pts = " ".join(f"{X(r[0]):.1f},{Y(r[col]):.1f}" for r in rows)
        p.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        for r in rows:
            p.append(f'<circle cx="{X(r[0]):.1f}" cy="{Y(r[col]):.1f}" r="3" fill="{color}"/>')
        p.append(f'<text x="{L + 12}" y="{T + 14 + dy}" fill="{color}">{name}</text>')
    p.append("</svg>")
    open(svg, "w").write("\n".join(p) + "\n")
sys.exit(1 if bad or not rows else 0)
EOF
cat "$table"
echo "crossover: table in $table, plot in $svg"
exit $rc
