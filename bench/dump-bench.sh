#!/usr/bin/env bash
# Crash-dump benchmark of `synq --core` (issue 3, "Benchmark (figures)"), with drgn doing the same walk.
#
#   bench/dump-bench.sh             # every kernel (5.10, 6.1, 6.12), 512 MiB and 2 GiB guests
#   bench/dump-bench.sh 6.1         # one kernel
#   bench/dump-bench.sh arm64       # the arm64 kernels (arm64-6.1, arm64-6.12, arm64-16k)
#   SYNQ_BENCH_SIZES=512 bench/dump-bench.sh 6.12
#
# For each kernel and guest size: boots the Debian kernel under QEMU TCG in synq.mode=dump (as
# tests/realkernel/dump.sh: the "basic" listeners, ground truth and the side files btf + kallsyms sent
# over ttyS1, then SYNQ-DUMP-READY), dumps it over QMP as ELF and as kdump-zlib (paging off), quits QEMU,
# then on the host, per dump: one warm-up run (the page cache cannot be dropped everywhere, so every
# figure is warm-cache), then SYNQ_BENCH_RUNS (5) runs of
#   /usr/bin/time -f %M synq --core DUMP --json >/dev/null
# (5.10: plus --btf/--kallsyms side files; 6.x: nothing else), wall = median (bash EPOCHREALTIME around
# the /usr/bin/time process), peak RSS = max %M. Then the same for bench/drgn_walk.py (drgn, no DWARF:
# the side kallsyms file, offsets from `synq layout --btf side/btf --json`), whose total must equal
# `synq --core DUMP --total`. One kernel/size at a time: dumps are deleted after measuring unless
# SYNQ_KEEP_DUMPS=1.
#
# With SYNQ_BIN_BEFORE (an earlier synq build), that build is timed on the same dumps too (column "before
# ms"), so a change is measured against its predecessor in one run.
# Env: SYNQ_BIN (target/release/synq), SYNQ_BIN_BEFORE, SYNQ_KERNEL_CACHE, SYNQ_BENCH_DUMP_DIR (/tmp/synq-bench-dumps),
# SYNQ_BENCH_SIZES ("512 2048", MiB), SYNQ_BENCH_RUNS (5), SYNQ_BENCH_DRGN (1; 0 skips drgn),
# SYNQ_KEEP_DUMPS, SYNQ_VM_TIMEOUT (300 s to SYNQ-DUMP-READY), SYNQ_DUMP_LA57_KERNELS ("6.12").
# Outputs: target/bench-dump/<id>-<mib>/ (console.log, qmp.log, results/, runs.txt, layout.json,
# drgn-*.json), target/bench-dump/report.txt.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tests/realkernel/lib.sh"

# The arm64 ids (arm64-6.1, arm64-6.12, arm64-16k, or "arm64" for all three) boot as tests/realkernel/dump.sh
# boots them (qemu-system-aarch64 -M virt, results over a virtconsole).
RK_ARM64=1
mapfile -t ids < <(rk_kernel_ids "$@" | awk '!seen[$0]++')
[[ ${#ids[@]} -gt 0 ]] || exit 2
sizes=${SYNQ_BENCH_SIZES:-512 2048}
runs=${SYNQ_BENCH_RUNS:-5}
use_drgn=${SYNQ_BENCH_DRGN:-1}
dump_root=${SYNQ_BENCH_DUMP_DIR:-/tmp/synq-bench-dumps}
la57_kernels=" ${SYNQ_DUMP_LA57_KERNELS:-6.12} "
vm_timeout=${SYNQ_VM_TIMEOUT:-300}
[[ $runs =~ ^[1-9][0-9]*$ && $sizes =~ ^[0-9\ ]+$ ]] || { echo "dump-bench: bad SYNQ_BENCH_RUNS/SIZES" >&2; exit 2; }
bench_root=$REPO_ROOT/target/bench-dump
mkdir -p "$bench_root" "$dump_root"

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
if [[ ! -x $synq_bin ]]; then
  rk_log "no $synq_bin: cargo build --release"
  (cd "$REPO_ROOT" && cargo build --release)
fi
before_bin=${SYNQ_BIN_BEFORE:-}
if [[ -n $before_bin ]]; then
  [[ $before_bin == /* ]] || before_bin=$REPO_ROOT/$before_bin
  [[ -x $before_bin ]] || { echo "dump-bench: SYNQ_BIN_BEFORE=$before_bin is not an executable" >&2; exit 1; }
fi
if [[ ! -x /usr/bin/time ]]; then
  rk_log "installing GNU time (Debian package 'time')"
  apt-get install -y time >/dev/null
fi
if [[ $use_drgn == 1 ]] && ! python3 -c 'import drgn' 2>/dev/null; then
  # drgn 0.3.0 is what issue 3 compares with; the newest one if PyPI no longer has it.
  v=$(pip index versions drgn 2>/dev/null | sed -n 's/^Available versions: //p' | tr -d ' ')
  if [[ ,$v, == *,0.3.0,* ]]; then want=0.3.0; else want=${v%%,*}; fi
  [[ -n $want ]] || { echo "dump-bench: PyPI lists no drgn version (SYNQ_BENCH_DRGN=0 to skip drgn)" >&2; exit 1; }
  rk_log "installing drgn==$want from PyPI"
  pip install -q "drgn==$want"
fi
drgn_version=-
[[ $use_drgn != 1 ]] || drgn_version=$(python3 -c 'import drgn; print(drgn.__version__)')

"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "${ids[@]}" >/dev/null

now_ms() { date +%s%3N; }
qemu_pid=
sock_dir=
cur_dumps=
cleanup() {
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  [[ -z $sock_dir ]] || rm -rf "$sock_dir"
  if [[ -n $cur_dumps && ${SYNQ_KEEP_DUMPS:-0} != 1 ]]; then rm -rf "$cur_dumps"; fi
  qemu_pid=''
  sock_dir=''
  cur_dumps=''
}
trap cleanup EXIT

# wait_for SECONDS DESC CMD...: polls CMD until it succeeds; fails when QEMU exits or after SECONDS.
wait_for() {
  local limit=$1 desc=$2 deadline
  shift 2
  deadline=$(($(now_ms) + limit * 1000))
  while ! "$@"; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      rk_fail_report "$out" "QEMU exited while waiting for $desc"
      return 1
    fi
    (($(now_ms) <= deadline)) || { rk_fail_report "$out" "no $desc within ${limit}s"; return 1; }
    sleep 0.2
  done
}
qmp() { python3 "$REALKERNEL_DIR/qmp.py" --timeout 300 "$sock_dir/qmp.sock" "$@" 2>>"$out/qmp.log"; }

# median of the numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# measure LABEL CMD...: one warm-up run, then $runs timed runs (stdout discarded, exit status must be 0).
# Prints "WALL_MS_MEDIAN PEAK_RSS_KIB"; every run goes to $out/runs.txt.
measure() {
  local label=$1 i t0 t1 rss max=0 walls=()
  shift
  "$@" >/dev/null 2>"$out/warm.err" || { echo "dump-bench: $label: warm-up run failed: $(tail -n 3 "$out/warm.err")" >&2; return 1; }
  for ((i = 1; i <= runs; i++)); do
    t0=$EPOCHREALTIME
    /usr/bin/time -f %M -o "$out/rss.txt" "$@" >/dev/null 2>"$out/run.err" \
      || { echo "dump-bench: $label: run $i failed: $(tail -n 3 "$out/run.err")" >&2; return 1; }
    t1=$EPOCHREALTIME
    rss=$(tail -n 1 "$out/rss.txt")
    walls+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
    ((rss > max)) && max=$rss
    echo "$label run=$i wall_ms=${walls[-1]} rss_kib=$rss" >>"$out/runs.txt"
  done
  echo "$(printf '%s\n' "${walls[@]}" | median) $max"
}

rows=()
drgn_rows=()
fails=0

# bench_one ID MIB
bench_one() {
  local id=$1 mib=$2 cpu=max,-la57
  [[ $la57_kernels != *" $id "* ]] || cpu=max,+la57
  out=$bench_root/$id-$mib
  local ddir=$dump_root/$id-$mib
  rm -rf "$out" "$ddir"
  mkdir -p "$out/results" "$ddir"
  cur_dumps=$ddir
  local initrd=$bench_root/initramfs-$id.cpio.gz
  if [[ ! -s $initrd ]]; then
    SYNQ_BIN=$synq_bin "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$initrd" 2>>"$out/qmp.log" \
      || { rk_log "$id: building the initramfs failed (see $out/qmp.log)"; return 1; }
  fi
  sock_dir=$(mktemp -d "${TMPDIR:-/tmp}/synq-bench-qmp.XXXXXX")
  local tb=$SECONDS
  if [[ $id == arm64-* ]]; then
    # As tests/realkernel/dump.sh: the PL011 console, the results over a virtconsole, the plain Image.
    timeout -k 10 $((vm_timeout + 300)) qemu-system-aarch64 \
      -accel tcg -M virt -m "$mib" -smp 1 -cpu "${SYNQ_ARM64_CPU:-max,pauth-impdef=on}" \
      -display none -monitor none -no-reboot -nic none \
      -device vmcoreinfo \
      -kernel "$KERNEL_CACHE/$id/Image" -initrd "$initrd" \
      -append "console=ttyAMA0 quiet panic=-1 synq.mode=dump synq.results=hvc0" \
      -serial "file:$out/console.log" \
      -device virtio-serial-pci -chardev "file,id=results,path=$out/results.b64" -device virtconsole,chardev=results \
      -qmp "unix:$sock_dir/qmp.sock,server=on,wait=off" \
      </dev/null >"$out/qemu.log" 2>&1 &
  else
  timeout -k 10 $((vm_timeout + 300)) qemu-system-x86_64 \
    -accel tcg -m "$mib" -smp 1 -cpu "$cpu" \
    -display none -vga none -monitor none -no-reboot -nic none \
    -device vmcoreinfo \
    -kernel "$KERNEL_CACHE/$id/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 synq.mode=dump" \
    -serial "file:$out/console.log" -serial "file:$out/results.b64" \
    -qmp "unix:$sock_dir/qmp.sock,server=on,wait=off" \
    </dev/null >"$out/qemu.log" 2>&1 &
  fi
  qemu_pid=$!
  wait_for "$vm_timeout" "SYNQ-DUMP-READY" grep -aqs 'SYNQ-DUMP-READY' "$out/console.log" || return 1
  rk_unpack_results "$out" "bench-$id-$mib" "$((SECONDS - tb))" || return 1
  local fmt f
  for fmt in elf kdump-zlib; do
    f=$ddir/vmcore.$fmt
    qmp dump-guest-memory "{\"paging\": false, \"protocol\": \"file:$f\", \"format\": \"$fmt\"}" >/dev/null \
      || { rk_fail_report "$out" "QMP dump-guest-memory $fmt failed: $(tail -n 1 "$out/qmp.log")"; return 1; }
    [[ $(qmp query-dump) == *'"status": "completed"'* && -s $f ]] \
      || { rk_fail_report "$out" "dump $fmt did not complete"; return 1; }
  done
  qmp quit >/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  rk_log "$id/$mib MiB: booted and dumped in $((SECONDS - tb))s"

  local side=() btf=$out/results/side/btf ks=$out/results/side/kallsyms
  # 5.10's VMCOREINFO has no kallsyms symbols: synq needs the side files there (as check_dump.py).
  [[ $id != 5.10 ]] || side=(--btf "$btf" --kallsyms "$ks")
  local have_side=0
  [[ -s $btf && -s $ks ]] && have_side=1
  if [[ $have_side == 1 ]]; then
    "$synq_bin" layout --btf "$btf" --json >"$out/layout.json"
  fi
  local ok=0
  for fmt in elf kdump-zlib; do
    f=$ddir/vmcore.$fmt
    local size total m
    size=$(stat -c %s "$f")
    total=$("$synq_bin" --core "$f" "${side[@]}" --total 2>"$out/total-$fmt.err") \
      || { echo "dump-bench: synq --total on $f failed: $(cat "$out/total-$fmt.err")" >&2; ok=1; continue; }
    m=$(measure "synq $id $mib $fmt" "$synq_bin" --core "$f" "${side[@]}" --json) || { ok=1; continue; }
    local mb="- -"
    if [[ -n $before_bin ]]; then
      mb=$(measure "before $id $mib $fmt" "$before_bin" --core "$f" "${side[@]}" --json) || { ok=1; continue; }
    fi
    rows+=("$(printf '%-5s %5s %-10s %10.1f %10s %10s %9.1f %6s %10s %10s' "$id" "$mib" "$fmt" \
      "$(awk -v b="$size" 'BEGIN { print b / 1048576 }')" "$size" "${m% *}" \
      "$(awk -v k="${m#* }" 'BEGIN { print k / 1024 }')" "$total" "${mb% *}" \
      "$(awk -v k="${mb#* }" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }')")")
    if [[ $use_drgn == 1 ]]; then
      local dr=$out/drgn-$fmt.json d dt
      local darch=x86_64
      [[ $id != arm64-* ]] || darch=aarch64
      if [[ $have_side != 1 ]]; then
        drgn_rows+=("$(printf '%-5s %5s %-10s  not run: the guest sent no side/btf + side/kallsyms' "$id" "$mib" "$fmt")")
      elif ! grep -qE ' tcp_hashinfo$' "$ks"; then
        drgn_rows+=("$(printf '%-5s %5s %-10s  not run: no tcp_hashinfo in the guest'"'"'s kallsyms (no CONFIG_KALLSYMS_ALL)' "$id" "$mib" "$fmt")")
      elif ! DRGN_ARCH=$darch python3 "$REPO_ROOT/bench/drgn_walk.py" "$f" "$ks" "$out/layout.json" >"$dr" 2>"$out/drgn-$fmt.err"; then
        drgn_rows+=("$(printf '%-5s %5s %-10s  FAILED: %s' "$id" "$mib" "$fmt" "$(tail -n 1 "$out/drgn-$fmt.err")")")
      else
        d=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["total"], j["listeners"], j["ms_import_open"], j["ms_symbols"], j["ms_walk"], "given" if j["platform"].startswith("explicit") else "dump")' "$dr")
        local dtot dlis dopen dsym dwalk dplat slis
        read -r dtot dlis dopen dsym dwalk dplat <<<"$d"
        slis=$("$synq_bin" --core "$f" "${side[@]}" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["listeners"]))')
        dt=$(measure "drgn $id $mib $fmt" env DRGN_ARCH=$darch python3 "$REPO_ROOT/bench/drgn_walk.py" "$f" "$ks" "$out/layout.json") || { ok=1; continue; }
        local same=yes
        [[ $dtot == "$total" && $dlis == "$slis" ]] || { same="NO (synq: total $total, $slis listeners)"; ok=1; }
        [[ $dplat == dump ]] || same="$same; platform given (libkdumpfile finds no arch in the dump)"
        drgn_rows+=("$(printf '%-5s %5s %-10s %9s %9s %9.1f %8s %8s %8s %8s %6s %5s %s' "$id" "$mib" "$fmt" \
          "${dt% *}" "${m% *}" "$(awk -v a="${dt% *}" -v b="${m% *}" 'BEGIN { print a / b }')" \
          "$(awk -v k="${dt#* }" 'BEGIN { printf "%.1f", k / 1024 }')" "$dopen" "$dsym" "$dwalk" "$dtot" "$dlis" "$same")")
      fi
    fi
  done
  return $ok
}

t_all=$SECONDS
for id in "${ids[@]}"; do
  for mib in $sizes; do
    if ! bench_one "$id" "$mib"; then
      fails=$((fails + 1))
      rk_log "$id/$mib MiB: FAILED (see $bench_root/$id-$mib)"
    fi
    if [[ ${SYNQ_KEEP_DUMPS:-0} == 1 ]]; then
      rk_log "$id/$mib MiB: dumps kept in $dump_root/$id-$mib"
      cur_dumps=
    fi
    cleanup
  done
done

{
  echo "synq --core DUMP --json >/dev/null on the host ($(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)),"
  echo "$(uname -r), $(qemu-system-x86_64 --version | head -n 1); synq $("$synq_bin" --version 2>/dev/null || echo '?')."
  echo "Warm page cache: one warm-up run, then $runs measured runs (wall = median, through /usr/bin/time; RSS = max %M)."
  echo "5.10: with --btf/--kallsyms side files; 6.x: the dump alone. total = synq --core DUMP --total."
  echo
  [[ -z $before_bin ]] || echo "before = $before_bin ($("$before_bin" --version 2>/dev/null || echo '?')), same dumps, same way."
  printf '%-5s %5s %-10s %10s %10s %10s %9s %6s %10s %10s\n' kernel RAM format 'dump MiB' 'dump bytes' 'synq ms' \
    'RSS MiB' total 'before ms' 'before RSS'
  printf '%s\n' "${rows[@]}"
  if [[ $use_drgn == 1 ]]; then
    echo
    echo "drgn $drgn_version (PyPI), bench/drgn_walk.py: same walk, no DWARF (side kallsyms file + offsets from"
    echo "synq layout --btf side/btf). wall = whole python process, median of $runs after a warm-up; open/sym/walk ="
    echo "time.perf_counter inside python (import+open dump / kallsyms load + tcp_hashinfo / walk), first run."
    printf '%-5s %5s %-10s %9s %9s %9s %8s %8s %8s %8s %6s %5s %s\n' kernel RAM format 'drgn ms' 'synq ms' 'ratio' 'RSS MiB' \
      'open ms' 'sym ms' 'walk ms' total lis 'total==synq'
    printf '%s\n' "${drgn_rows[@]}"
  fi
} >"$bench_root/report.txt"
cat "$bench_root/report.txt"
rk_log "total $((SECONDS - t_all))s"
[[ $fails -eq 0 ]] || { echo "dump-bench: $fails kernel/size runs failed" >&2; exit 1; }
