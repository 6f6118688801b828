#!/usr/bin/env bash
# Fuzzing (issue 7, "Fuzzing"): runs each cargo-fuzz target for a number of executions and prints, per
# target, the executions, wall time, coverage and findings. Figures, not pass/fail: CI does not fuzz (it
# replays every seed and regression file through tests/fuzz_replay.rs in `cargo test`).
#
#   bench/fuzz.sh                      # every target, 200000 executions each
#   bench/fuzz.sh 10000000             # every target, 10^7 executions each (the README's long run)
#   bench/fuzz.sh 1000000 btf kdump    # some targets
#
# The targets are fuzz/fuzz_targets/<t>.rs, each calling synq::fuzzing::<t> (src/fuzzing.rs, which says what
# each drives and its input format). Each runs as
#   cargo +nightly fuzz run -O <t> fuzz/corpus/<t> fuzz/seeds/<t> -- -runs=N -rss_limit_mb=512 -timeout=10
# (bounded memory, 512 MiB RSS and per allocation, and 10 s per input), AddressSanitizer on (cargo-fuzz's
# default; SYNQ_FUZZ_SANITIZER=none for speed). fuzz/corpus/<t> (git-ignored) keeps what a run learnt for
# the next; fuzz/seeds/<t> (committed) are real and synthetic inputs. libFuzzer stops at a finding: the run
# then resumes (at most SYNQ_FUZZ_RESTARTS times, default 5) until N executions are done. Every crash, OOM,
# timeout or leak input that fails again when run alone is copied into fuzz/regressions/<t>/ (one that does
# not is counted as "unconf": an OOM of the fuzzer's own corpus memory), where tests/fuzz_replay.rs replays it in
# `cargo test`: rename it after the bug, fix the bug at its root, commit both.
#
# Installs cargo-fuzz (cargo install, builds with stable) when missing; needs the nightly toolchain
# (rustup toolchain install nightly). Env: SYNQ_FUZZ_JOBS (targets run at once, default 1; one core each),
# SYNQ_FUZZ_SANITIZER (address | none, default address), SYNQ_FUZZ_RESTARTS (5), SYNQ_FUZZ_MAX_LEN (libFuzzer
# -max_len, default: libFuzzer's guess from the corpus), SYNQ_FUZZ_SECONDS (a time cap per target: it stops at
# EXECUTIONS or after this many seconds, whichever comes first; the table gives what was reached).
# Outputs: fuzz/logs/<t>.log (libFuzzer's output, each restart appended), fuzz/logs/report.txt (the table).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

runs=${1:-200000}
[[ $# -gt 0 ]] && shift
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: EXECUTIONS must be a positive number, not '$runs'" >&2; exit 2; }
jobs=${SYNQ_FUZZ_JOBS:-1}
sanitizer=${SYNQ_FUZZ_SANITIZER:-address}
restarts=${SYNQ_FUZZ_RESTARTS:-5}
max_len=${SYNQ_FUZZ_MAX_LEN:-}
max_secs=${SYNQ_FUZZ_SECONDS:-}
[[ $jobs =~ ^[1-9][0-9]*$ && $restarts =~ ^[0-9]+$ && $max_len =~ ^[0-9]*$ && $max_secs =~ ^[0-9]*$ ]] || {
  echo "fuzz.sh: bad SYNQ_FUZZ_JOBS, SYNQ_FUZZ_RESTARTS, SYNQ_FUZZ_MAX_LEN or SYNQ_FUZZ_SECONDS" >&2; exit 2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi

mapfile -t known < <(cargo +nightly fuzz list)
if [[ $# -gt 0 ]]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    printf '%s\n' "${known[@]}" | grep -qx -- "$t" || { echo "fuzz.sh: no target '$t' (known: ${known[*]})" >&2; exit 2; }
  done
else
  targets=("${known[@]}")
fi

build=(-O --sanitizer "$sanitizer")
echo "fuzz.sh: building ${#targets[@]} targets (nightly, release, sanitizer $sanitizer)" >&2
if [[ $# -eq 0 ]]; then
  cargo +nightly fuzz build "${build[@]}"
else
  for t in "${targets[@]}"; do cargo +nightly fuzz build "${build[@]}" "$t"; done
fi

mkdir -p fuzz/logs
bin_dir=fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release
# AddressSanitizer keeps freed memory in quarantine (256 MiB by default), which the RSS limit would count.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32}
# One target: runs until $runs executions are done or the restarts are spent; writes fuzz/logs/<t>.tsv.
fuzz_one() {
  local t=$1 log=fuzz/logs/$1.log done_runs=0 turns=0 rc start end
  local art=fuzz/artifacts/$t/
  mkdir -p "fuzz/corpus/$t" "$art" "fuzz/regressions/$t"
  : >"$log"
  local flags=(-rss_limit_mb=512 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 -artifact_prefix="$repo/$art")
  [[ -n $max_len ]] && flags+=(-max_len="$max_len")
  local seeds=()
  [[ -d fuzz/seeds/$t ]] && seeds=("fuzz/seeds/$t")
  local before
  before=$(find "$art" -type f | sort)
  start=$(date +%s.%N)
  while ((done_runs < runs && turns <= restarts)); do
    rc=0
    local limit=()
    if [[ -n $max_secs ]]; then
      local left
      left=$(awk -v a="$start" -v b="$(date +%s.%N)" -v m="$max_secs" 'BEGIN { printf "%d", m - (b - a) }')
      ((left > 0)) || break
      limit=(-max_total_time="$left")
    fi
    cargo +nightly fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
      -runs=$((runs - done_runs)) "${limit[@]}" "${flags[@]}" >>"$log" 2>&1 || rc=$?
    local n
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    # Without the final stats (a crash before libFuzzer printed them): the last status line's count.
    [[ -n $n ]] || n=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    n=${n:-0}
    done_runs=$((done_runs + n))
    # The stats line was consumed: mark it so the next turn's is the one read.
    sed -i -e 's/stat::number_of_executed_units:/stat::executed_units_counted:/' -e 's/^#\([0-9]\)/counted#\1/' "$log"
    turns=$((turns + 1))
    ((rc == 0)) && break
    ((n == 0)) && break  # failed before running anything (build or start-up): do not loop
  done
  end=$(date +%s.%N)
  local cov ft corp
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  corp=$(find "fuzz/corpus/$t" -type f | wc -l)
  # A finding counts when its input fails again alone, under the same limits: libFuzzer's RSS limit also
  # counts the fuzzer's own corpus and AddressSanitizer's memory, so an OOM found mid-run may be neither.
  local crashes=0 ooms=0 timeouts=0 leaks=0 unconfirmed=0 f base
  while read -r f; do
    [[ -n $f ]] || continue
    base=$(basename "$f")
    case $base in
      crash-* | oom-* | timeout-* | leak-*) ;;
      *) continue ;;
    esac
    if "$bin_dir/$t" -rss_limit_mb=512 -malloc_limit_mb=512 -timeout=10 "$f" >>"$log" 2>&1; then
      unconfirmed=$((unconfirmed + 1))
      echo "fuzz.sh: $t: $base does not fail alone: not a finding" >>"$log"
      continue
    fi
    case $base in
      crash-*) crashes=$((crashes + 1)) ;;
      oom-*) ooms=$((ooms + 1)) ;;
      timeout-*) timeouts=$((timeouts + 1)) ;;
      leak-*) leaks=$((leaks + 1)) ;;
    esac
    cp -n "$f" "fuzz/regressions/$t/$base"
  done < <(comm -13 <(printf '%s\n' "$before") <(find "$art" -type f | sort))
  rmdir "fuzz/regressions/$t" 2>/dev/null || true
  printf '%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$done_runs" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" \
    "${cov:-?}" "${ft:-?}" "$corp" "$crashes" "$timeouts" "$ooms" "$leaks" "$unconfirmed" "$turns" >"fuzz/logs/$t.tsv"
  echo "fuzz.sh: $t: $done_runs executions, crashes $crashes, timeouts $timeouts, OOMs $ooms, leaks $leaks ($unconfirmed not reproduced alone)" >&2
}

pids=()
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  pids+=($!)
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
done
wait

{
  printf 'fuzz.sh: %s executions per target asked%s, sanitizer %s, %s\n' "$runs" "${max_secs:+ (at most $max_secs s each)}" "$sanitizer" "$(date -u +%Y-%m-%dT%H:%MZ)"
  printf '%-12s %12s %8s %10s %7s %7s %6s %8s %8s %5s %5s %7s\n' target executions time_s exec_per_s cov ft corpus crashes timeouts ooms leaks unconf
  total=0
  for t in "${targets[@]}"; do
    IFS=$'\t' read -r name n secs cov ft corp crashes timeouts ooms leaks unconf _ <"fuzz/logs/$t.tsv"
    rate=$(( secs > 0 ? n / secs : n ))
    printf '%-12s %12s %8s %10s %7s %7s %6s %8s %8s %5s %5s %7s\n' "$name" "$n" "$secs" "$rate" "$cov" "$ft" "$corp" "$crashes" "$timeouts" "$ooms" "$leaks" "$unconf"
    total=$((total + crashes + timeouts + ooms + leaks))
  done
  printf 'findings: %s (inputs copied into fuzz/regressions/<target>/; unconf: failed in the run, not alone)\n' "$total"
} | tee fuzz/logs/report.txt
