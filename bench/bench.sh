#!/usr/bin/env bash
# Benchmark of synq against ss on real Debian kernels (QEMU TCG guests).
#
#   bench/bench.sh            # every kernel (5.10, 6.1, 6.12)
#   bench/bench.sh 6.1        # one kernel
#
# One guest per kernel (2 GiB RAM, 1 vCPU). In it, for 10 / 1,000 / 10,000
# listeners with 1,000 established connections, and again with 20,000, plus a
# few half-open requests (so the SYN-queue counts are not zero), the guest
# times (CLOCK_MONOTONIC, median of SYNQ_BENCH_RUNS runs, fork to exit):
#   synq --total | synq --json >/dev/null | ss -ltn >/dev/null | ss -tn state syn-recv | wc -l
#   | synq --json --requests >/dev/null (the half-open requests themselves: O(connections))
#   | one scrape of synq serve (--min-interval 0: a walk per scrape; wget -O /dev/null)
#   | synq --version (the process's own start and exit: the floor of every run)
# and records the half-open count as synq --total and ss see it (they must
# agree), and synq's own phase timings (SYNQ_TIMING=1, stderr) once.
#
# With SYNQ_BENCH_STATIC_BIN (a static synq: packaging/build-static.sh), `synq --total` of that build
# is timed in the same guest too (column "static --total"); with SYNQ_BENCH_BEFORE_BIN (an earlier
# build), its --total and --json are (columns "before: ..."): old and new side by side from one run.
# Env: SYNQ_BIN (default target/release/synq), SYNQ_BENCH_RUNS (5),
# SYNQ_BENCH_CONFIGS (listeners:established,... default below),
# SYNQ_BENCH_HALF (5), SYNQ_BENCH_TIMEOUT (seconds per guest, 1800).
# Times are TCG-emulated: compare the columns with each other, not with a host.
# Outputs: target/bench/<id>/results/, target/bench/report.txt.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tests/realkernel/lib.sh"

mapfile -t ids < <(rk_kernel_ids "$@" | awk '!seen[$0]++')
[[ ${#ids[@]} -gt 0 ]] || exit 2

runs=${SYNQ_BENCH_RUNS:-5}
configs=${SYNQ_BENCH_CONFIGS:-10:1000,1000:1000,10000:1000,10:20000,1000:20000,10000:20000}
half=${SYNQ_BENCH_HALF:-5}
[[ $runs =~ ^[0-9]+$ && $half =~ ^[0-9]+$ && $configs =~ ^[0-9]+:[0-9]+(,[0-9]+:[0-9]+)*$ ]] \
  || { echo "bench: bad SYNQ_BENCH_RUNS/HALF/CONFIGS" >&2; exit 2; }

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
[[ -x $synq_bin ]] || { echo "bench: no synq binary at $synq_bin (cargo build --release)" >&2; exit 1; }
static_bin=${SYNQ_BENCH_STATIC_BIN:-}
if [[ -n $static_bin ]]; then
  [[ $static_bin == /* ]] || static_bin=$REPO_ROOT/$static_bin
  [[ -x $static_bin ]] || { echo "bench: no static synq at $static_bin (packaging/build-static.sh)" >&2; exit 1; }
fi
labels=(synq_total synq_json ss_ltn ss_synrecv synq_requests serve_scrape synq_version)
heads=("synq --total" "synq --json" "ss -ltn" "ss -tn state syn-recv|wc" "synq --json --requests" "serve scrape"
  "synq --version")
if [[ -n $static_bin ]]; then
  labels+=(synq_total_static)
  heads+=("static --total")
fi
before_bin=${SYNQ_BENCH_BEFORE_BIN:-}
if [[ -n $before_bin ]]; then
  [[ $before_bin == /* ]] || before_bin=$REPO_ROOT/$before_bin
  [[ -x $before_bin ]] || { echo "bench: no earlier synq at $before_bin" >&2; exit 1; }
  labels+=(synq_total_before synq_json_before)
  heads+=("before: --total" "before: --json")
fi

"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "${ids[@]}" >/dev/null

report=$REPO_ROOT/target/bench/report.txt
mkdir -p "$(dirname "$report")"
: >"$report"
bad=0

# Prints the value of field NAME=VALUE from a line of the guest's bench file.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }

for id in "${ids[@]}"; do
  out=$REPO_ROOT/target/bench/$id
  mkdir -p "$out"
  t0=$SECONDS
  SYNQ_BIN=$synq_bin SYNQ_BENCH_STATIC_BIN=$static_bin SYNQ_BENCH_BEFORE_BIN=$before_bin \
    "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$out/initramfs.cpio.gz"
  # 2 GiB: 10,000 listeners + 40,000 connected sockets.
  if ! rk_boot "$id" "$out" 2048 "${SYNQ_BENCH_TIMEOUT:-1800}" \
      "synq.mode=bench synq.bench=$configs synq.runs=$runs synq.half=$half"; then
    bad=1
    continue
  fi
  rk_log "$id: bench guest done in $((SECONDS - t0))s"
  release=$(cat "$out/results/release")
  {
    echo
    echo "kernel $release (id $id), QEMU TCG, 1 vCPU, 2 GiB; wall ms, median of $runs (min-max)"
    printf '%9s %7s |' listeners estab
    printf ' %-24s |' "${heads[@]}"
    printf ' %s\n' "half-open: synq / ss"
    for c in ${configs//,/ }; do
      n=${c%%:*}; m=${c#*:}
      f=$out/results/bench/l${n}_c${m}.txt
      if [[ ! -s $f ]]; then
        printf '%9s %7s | missing results\n' "$n" "$m"
        bad=1
        continue
      fi
      cells=()
      for label in "${labels[@]}"; do
        line=$(grep "^TIME $label " "$f" || true)
        if [[ -z $line ]]; then cells+=("missing"); bad=1; continue; fi
        cell="$(field median_ms "$line") ($(field min_ms "$line")-$(field max_ms "$line"))"
        if [[ $(field rc "$line") != 0 ]]; then cell="$cell rc=$(field rc "$line")"; bad=1; fi
        cells+=("$cell")
      done
      v=$(grep '^VALUES ' "$f" || true)
      s_total=$(field synq_total "$v"); s_ss=$(field ss_synrecv "$v"); s_proc=$(field proc_synrecv "$v")
      s_req=$(field synq_requests "$(grep '^REQUESTS ' "$f" || true)")
      agree="$s_total / $s_ss (--requests: $s_req)"
      if [[ -z $s_total || $s_total != "$s_ss" || $s_total != "$s_proc" || $s_req != "$s_proc" \
            || $(field synq_rc "$v") != 0 ]]; then
        agree="$agree  DISAGREE (/proc: $s_proc, synq rc $(field synq_rc "$v"))"
        bad=1
      fi
      printf '%9s %7s |' "$n" "$m"
      printf ' %-24s |' "${cells[@]}"
      printf ' %s\n' "$agree"
    done
    echo "checks: listeners/established as ss sees them:"
    for c in ${configs//,/ }; do
      n=${c%%:*}; m=${c#*:}
      v=$(grep '^VALUES ' "$out/results/bench/l${n}_c${m}.txt" 2>/dev/null || true)
      echo "  l=$n c=$m: ss listeners $(field ss_listeners "$v"), ss established sockets $(field ss_established "$v") (2 per connection)"
    done
    for c in ${configs//,/ }; do
      n=${c%%:*}; m=${c#*:}
      for kind in total json requests; do
        t=$out/results/bench/l${n}_c${m}.timing
        [[ $kind == total ]] || t=$t-$kind
        if [[ -s $t ]]; then
          label="--$kind"
          [[ $kind != requests ]] || label="--json --requests"
          echo "synq $label, SYNQ_TIMING=1 stderr, l=$n c=$m:"
          sed 's/^/  /' "$t" | head -n 40
        fi
      done
    done
  } >"$out/table.txt" # not a pipe into tee: `bad` must be set in this shell
  cat "$out/table.txt"
  cat "$out/table.txt" >>"$report"
done

echo "bench: report in $report"
if [[ $bad -ne 0 ]]; then
  echo "bench: FAILED (a guest failed, a result is missing, a command exited non-zero, or synq and ss disagree)" >&2
  exit 1
fi
