#!/usr/bin/env bash
# Snapshot benchmark of `synq --core` (issue 6, "Benchmark"): wall time and peak RSS on each kind of real
# memory snapshot, the part spent scanning for the kernel, and `sha256sum` of the same file as a disk-speed
# reference.
#
#   bench/snapshot-bench.sh              # 6.1 and 6.12, 512 MiB and 2 GiB guests
#   bench/snapshot-bench.sh 6.12         # one kernel
#   SYNQ_BENCH_SIZES=512 bench/snapshot-bench.sh 6.1
#
# For each kernel and guest size, tests/realkernel/snapshot.sh boots the guest, which images its own memory
# (AVML plain and compressed, LiME lime and padded) — the snapshots are checked against the guest's ground
# truth as in CI, so every figure below is of a correct run — and keeps them. Then, per snapshot, on the host:
# one warm-up run (every figure is warm-cache: the page cache cannot be dropped everywhere), then
# SYNQ_BENCH_RUNS (5) runs of
#   /usr/bin/time -f %M synq --core SNAPSHOT --json >/dev/null      (--raw for the padded image)
# wall = median (bash EPOCHREALTIME around the /usr/bin/time process), peak RSS = max %M; one run with
# SYNQ_TIMING=1 gives the scan's share; `sha256sum SNAPSHOT` (median of 3) reads the same bytes once.
# The snapshots are deleted afterwards unless SYNQ_KEEP_SNAPSHOTS=1.
#
# Env: SYNQ_BIN (target/release/synq), SYNQ_BENCH_SIZES ("512 2048", MiB), SYNQ_BENCH_RUNS (5),
# SYNQ_BENCH_SNAPSHOT_DIR (/tmp/synq-bench-snapshots), SYNQ_KEEP_SNAPSHOTS.
# Outputs: target/bench-snapshot/<id>-<mib>/runs.txt, target/bench-snapshot/report.txt.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tests/realkernel/lib.sh"

[[ $# -gt 0 ]] || set -- 6.1 6.12
mapfile -t ids < <(rk_kernel_ids "$@" | awk '!seen[$0]++')
[[ ${#ids[@]} -gt 0 ]] || exit 2
sizes=${SYNQ_BENCH_SIZES:-512 2048}
runs=${SYNQ_BENCH_RUNS:-5}
[[ $runs =~ ^[1-9][0-9]*$ && $sizes =~ ^[0-9\ ]+$ ]] || { echo "snapshot-bench: bad SYNQ_BENCH_RUNS/SIZES" >&2; exit 2; }
snap_root=${SYNQ_BENCH_SNAPSHOT_DIR:-/tmp/synq-bench-snapshots}
bench_root=$REPO_ROOT/target/bench-snapshot
mkdir -p "$bench_root"

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
if [[ ! -x $synq_bin ]]; then
  rk_log "no $synq_bin: cargo build --release"
  (cd "$REPO_ROOT" && cargo build --release)
fi
if [[ ! -x /usr/bin/time ]]; then
  rk_log "installing GNU time (Debian package 'time')"
  apt-get install -y time >/dev/null
fi

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

rows=()
for mem in $sizes; do
  for id in "${ids[@]}"; do
    dir=$snap_root/$mem
    out=$bench_root/$id-$mem
    mkdir -p "$out"
    rk_log "bench $id ${mem} MiB: taking and checking the snapshots"
    if ! SYNQ_SNAPSHOT_MEM_MB=$mem SYNQ_SNAPSHOT_DIR=$dir SYNQ_KEEP_SNAPSHOTS=1 SYNQ_BIN=$synq_bin \
        "$REALKERNEL_DIR/snapshot.sh" "$id" >"$out/snapshot.log" 2>&1; then
      tail -n 20 "$out/snapshot.log" >&2
      rk_log "bench $id ${mem} MiB: snapshot.sh failed (see $out/snapshot.log)"
      exit 1
    fi
    results=$REPO_ROOT/target/realkernel/snapshot-$id/results
    : >"$out/runs.txt"
    for kind in avml-lime avml-compressed lime lime-padded; do
      f=$dir/$id/snapshot.$kind
      [[ -s $f ]] || { rk_log "bench $id ${mem} MiB: no $kind snapshot (LiME unavailable?)"; continue; }
      args=(--core "$f" --json)
      [[ $kind != lime-padded ]] || args+=(--raw)
      if ! grep -q 'SYMBOL(kallsyms_names)' "$results/vmcoreinfo-kcore" 2>/dev/null; then
        args+=(--btf "$results/side/btf" --kallsyms "$results/side/kallsyms")
      fi
      "$synq_bin" "${args[@]}" >/dev/null # warm-up
      walls=() rss=0
      for _ in $(seq "$runs"); do
        t0=$EPOCHREALTIME
        m=$(/usr/bin/time -f %M "$synq_bin" "${args[@]}" 2>&1 >/dev/null | tail -n 1)
        t1=$EPOCHREALTIME
        walls+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
        ((m > rss)) && rss=$m
      done
      wall=$(printf '%s\n' "${walls[@]}" | median)
      scan=$(SYNQ_TIMING=1 "$synq_bin" "${args[@]}" 2>&1 >/dev/null |
        sed -n 's/.*VMCOREINFO scan: \([0-9.]*\) ms.*/\1/p')
      shas=()
      for _ in 1 2 3; do
        t0=$EPOCHREALTIME
        sha256sum "$f" >/dev/null
        t1=$EPOCHREALTIME
        shas+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
      done
      sha=$(printf '%s\n' "${shas[@]}" | median)
      size=$(stat -c %s "$f")
      echo "$kind size=$size wall_ms=${walls[*]} rss_kb=$rss scan_ms=$scan sha256_ms=${shas[*]}" >>"$out/runs.txt"
      rows+=("$(printf '| %s | %s MiB | %s | %s MiB | %s ms | %s ms | %.1f MiB | %s ms |' "$id" "$mem" "$kind" \
        "$((size >> 20))" "$wall" "${scan:-?}" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$sha")")
      rk_log "bench $id ${mem} MiB $kind: wall ${wall} ms, scan ${scan:-?} ms, peak RSS ${rss} kB, sha256sum ${sha} ms"
    done
    [[ ${SYNQ_KEEP_SNAPSHOTS:-0} == 1 ]] || rm -rf "${dir:?}/$id"
  done
done

{
  echo "synq --core on real snapshots (warm page cache, median of $runs; $(nproc) cores; $(date -u +%F))"
  echo
  echo "| kernel | guest RAM | snapshot | size | synq --core --json | of which scan | peak RSS | sha256sum |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} | tee "$bench_root/report.txt"
