#!/usr/bin/env bash
# Real crash dumps of the test guests, for `synq --core`: boots each Debian
# kernel under QEMU (TCG) in synq.mode=dump (the "basic" scenario's listeners
# in two network namespaces, MPTCP where the kernel has it; its ground truth,
# the guest's BTF and kallsyms as side files, kcore's VMCOREINFO), waits for
# SYNQ-DUMP-READY, dumps the running guest from the host over QMP
# (dump-guest-memory, paging off) as ELF and as kdump-zlib, quits QEMU, then
# runs check_dump.py (and its --selftest) on each dump.
#
# Transcoded variants (issue 3, "Other compressions and the flattened format"): no producer of lzo, snappy
# or zstd kdump files exists here, so for the kernels in SYNQ_TRANSCODE_KERNELS (default "6.12" only, the
# la57 one, to keep the run short) the checked kdump-zlib dump is rewritten by the Cargo example
# kdump_transcode (built once, before any guest boots) into
#   vmcore.kdump-zlib-plain   QEMU's flattened stream de-flattened, pages untouched (makedumpfile -R)
#   vmcore.kdump-lzo          every page re-encoded with LZO1X   (same header, bitmaps, VMCOREINFO)
#   vmcore.kdump-snappy       ... with snappy (raw blocks)
#   vmcore.kdump-zstd         ... with zstd
#   vmcore.kdump-lzo-flat     the lzo one (its pages kept) in makedumpfile's flattened form (the shape
#                             of makedumpfile -F -l)
# and check_dump.py (synq --core against the same ground truth, dump unchanged by synq) runs on each.
#
# Damaged copies (issue 3, "Truncated and corrupted dumps"), for the kernels in SYNQ_DAMAGE_KERNELS (default
# "6.12"): once the real dumps are checked, check_dump.py --damage makes copies next to them (vmcore.damage-NN:
# the kdump-zlib file cut at 4 KiB, 1 MiB, 10%, 50%, 90%, size-1; the ELF at 4 KiB, 1 MiB, 50%; the kdump-zlib
# file with a garbled disk_dump_header, with three garbled 4 KiB blocks of page descriptors, and with the
# block holding swapper_pg_dir's descriptor garbled) and runs `timeout 20 synq --core COPY --json` on each:
# no hang, no signal, no "panicked"; exit 1 with a "synq: " message, or exit 2 with JSON and warnings, or
# exit 0 with JSON equal to the ground truth. One "damage: CASE: exit N, ..." line per case; a bad case fails
# the kernel. Each copy is deleted after its run unless SYNQ_KEEP_DUMPS=1.
#
# Mutated dumps (issue 7, "Mutated real dumps end to end"), for the kernels in SYNQ_MUTATE_KERNELS (default
# "6.12"), after the damaged copies: mutate_dumps.py makes SYNQ_MUTATIONS (default 100; the full count is
# 1000+) deterministic mutations of the two dumps (seed SYNQ_MUTATE_SEED, default 1: header fields, bitmaps,
# page descriptors, compressed page data, notes, VMCOREINFO text, flattened record headers, cuts), each a
# copy next to the dumps, and runs synq --core --json on each: no panic, signal, run over 10 s or peak RSS
# over 256 MiB; exit 0 only with the ground truth; exit 2 only with warnings; exit 1 only with a "synq: "
# message. Failure classes in SYNQ_MUTATE_ALLOW (default none) are reported but do not fail the kernel.
#
#   tests/realkernel/dump.sh 6.12          # one kernel (5.10, 6.1, 6.12)
#   tests/realkernel/dump.sh 5.10 6.1      # several
#   tests/realkernel/dump.sh all           # all three (also the default)
#   tests/realkernel/dump.sh arm64         # the arm64 guests: arm64-6.1, arm64-6.12, arm64-16k
#
# 6.12 boots with -cpu max,+la57 (5-level paging; check_dump.py asserts
# NUMBER(pgtable_l5_enabled)=1 in its dumps), the others with max,-la57.
#
# arm64 ids (fetch-kernels.sh: bookworm's 6.1, trixie's 6.12, unstable's 16K-page kernel) boot under
# qemu-system-aarch64 -M virt -cpu ${SYNQ_ARM64_CPU:-max,pauth-impdef=on} (TCG; pauth-impdef keeps pointer
# authentication but uses QEMU's cheap implementation-defined algorithm instead of QARMA), console on the PL011
# (ttyAMA0) and the results over a virtconsole (virtio-serial-pci, the guest's /dev/hvc0: QEMU 7.2's virt has
# one non-secure UART, a second -serial is not seen by the guest), the same dump mode, dumps and
# check_dump.py (its arm64 rules: EM_AARCH64, NUMBER(kimage_voffset), NUMBER(VA_BITS), NUMBER(TCR_EL1_T1SZ),
# PAGESIZE = the kernel's page size, the image rule phys = vaddr - kimage_voffset read back from the dump:
# linux_banner, equal to the booted Image's bytes).
# The transcoded variants, damaged copies, mutations, --vmlinux and Prometheus steps are x86_64 only: an
# arm64 id named in their variables is passed over with a log line. SYNQ_NOVMCI_KERNELS works for arm64 ids.
#
# Env: SYNQ_BIN (default target/release/synq), SYNQ_KERNEL_CACHE (default
# /var/cache/synq-kernels), SYNQ_DUMP_DIR (dumps, default /tmp/synq-dumps;
# <dir>/<id>/vmcore.{elf,kdump-zlib}), SYNQ_KEEP_DUMPS=1 (keep them; by default
# a kernel's dumps are deleted once checked), SYNQ_VM_TIMEOUT (seconds until
# SYNQ-DUMP-READY, default 300), SYNQ_DUMP_LA57_KERNELS (kernel ids booted
# with +la57, default "6.12"), SYNQ_TRANSCODE_KERNELS (kernel ids whose
# kdump-zlib dump is transcoded, default "6.12"; "" for none), SYNQ_DAMAGE_KERNELS (kernel ids whose
# dumps get the damaged copies, default "6.12"; "" for none), SYNQ_NOVMCI_KERNELS (kernel ids that get one
# more boot without -device vmcoreinfo, dumped as ELF only, checked as dump-<id>-novmcoreinfo: no VMCOREINFO
# note in the dump, synq must find the kernel by scanning; default "6.1"; "" for none), SYNQ_MUTATE_KERNELS
# (kernel ids whose dumps get the mutations, default "6.12"; "" for none), SYNQ_PROMETHEUS_KERNELS (kernel ids
# whose kdump-zlib dump is served to a real Prometheus and node_exporter, prometheus.sh; default "6.12"),
# SYNQ_MUTATIONS (default 100),
# SYNQ_MUTATE_SEED (default 1), SYNQ_MUTATE_ALLOW (failure classes reported but tolerated; default none:
# the exit0-release class it first found, a damaged OSRELEASE line giving exit 0 with a wrong release, is
# fixed: synq takes the release from init_uts_ns and warns).
# Outputs: target/realkernel/dump-<id>/{initramfs.cpio.gz,console.log,qemu.log,
# qmp.log,results/,host.txt,core-<dump>/,check-<format>.txt,transcode-<variant>.txt,damage.txt,mutate.txt,
# mutate/}, and
# target/realkernel/dump-timings.txt. Never skips: a boot failure, a timeout, a
# QMP error, a state that moved during the dumps or a failed check fails.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

[[ $# -gt 0 ]] || set -- all
# arm64 ids (and the alias "arm64") are known here only.
RK_ARM64=1
if ! known=$(rk_kernel_ids "$@"); then
  echo "dump.sh: ids are kernel ids, 'all' or 'arm64'" >&2
  exit 2
fi
mapfile -t ids < <(awk '!seen[$0]++' <<<"$known")

dump_root=${SYNQ_DUMP_DIR:-/tmp/synq-dumps}
la57_kernels=" ${SYNQ_DUMP_LA57_KERNELS:-6.12} "
vm_timeout=${SYNQ_VM_TIMEOUT:-300}
synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
transcode_kernels=" ${SYNQ_TRANSCODE_KERNELS-6.12} "
damage_kernels=" ${SYNQ_DAMAGE_KERNELS-6.12} "
novmci_kernels=" ${SYNQ_NOVMCI_KERNELS-6.1} "
mutate_kernels=" ${SYNQ_MUTATE_KERNELS-6.12} "
prometheus_kernels=" ${SYNQ_PROMETHEUS_KERNELS-6.12} "
# variant name -> kdump_transcode arguments; the input is vmcore.kdump-zlib unless variant_src names another
variants=(kdump-zlib-plain kdump-lzo kdump-snappy kdump-zstd kdump-lzo-flat)
declare -A variant_args=(
  [kdump-zlib-plain]="--to keep"
  [kdump-lzo]="--to lzo"
  [kdump-snappy]="--to snappy"
  [kdump-zstd]="--to zstd"
  [kdump-lzo-flat]="--to keep --flatten"
)
declare -A variant_src=([kdump-lzo-flat]=kdump-lzo)
transcoder=$REPO_ROOT/target/release/examples/kdump_transcode

t0=$SECONDS
"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "${ids[@]}" >/dev/null
rk_log "host ready in $((SECONDS - t0))s"
is_arm64() { [[ $1 == arm64-* ]]; }
need_transcoder=0
for id in "${ids[@]}"; do
  is_arm64 "$id" && continue
  [[ $transcode_kernels != *" $id "* ]] || need_transcoder=1
done
if [[ $need_transcoder == 1 ]]; then
  t=$SECONDS
  if (cd "$REPO_ROOT" && cargo build --release --quiet --example kdump_transcode); then
    rk_log "kdump_transcode built in $((SECONDS - t))s"
  else
    rk_log "WARNING: cargo build --release --example kdump_transcode failed; every transcoded variant will FAIL"
    rm -f "$transcoder"
  fi
fi
[[ -x $synq_bin ]] || rk_log "WARNING: $synq_bin does not exist; every check will FAIL (cargo build --release)"

now_ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

# The QEMU of the entry being run (the `timeout` wrapping it) and its QMP socket directory.
qemu_pid=
sock_dir=
cleanup() {
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  [[ -z $sock_dir ]] || rm -rf "$sock_dir"
  qemu_pid=
  sock_dir=
}
trap cleanup EXIT

# Last SYNQ-DUMP-STATE line of the console: "SEQ VERDICT", or nothing.
last_state() {
  { grep -a 'SYNQ-DUMP-STATE ' "$1/console.log" 2>/dev/null || true; } | tr -d '\r' | tail -n 1 \
    | awk '{ print $2, $3 }'
}

# wait_for OUT SECONDS DESC CMD...: polls CMD (5/s) until it succeeds; fails when QEMU exits first or
# after SECONDS.
wait_for() {
  local out=$1 limit=$2 desc=$3 deadline
  shift 3
  deadline=$(($(now_ms) + limit * 1000))
  while ! "$@"; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      local rc=0
      wait "$qemu_pid" || rc=$?
      qemu_pid=
      rk_fail_report "$out" "QEMU exited (status $rc) while waiting for $desc"
      return 1
    fi
    if (($(now_ms) > deadline)); then
      rk_fail_report "$out" "no $desc within ${limit}s"
      return 1
    fi
    sleep 0.2
  done
}

# state_after OUT SEQ: a SYNQ-DUMP-STATE line newer than SEQ exists.
state_after() {
  local s
  s=$(last_state "$1")
  [[ -n $s && ${s%% *} -gt $2 ]]
}

qmp() { python3 "$REALKERNEL_DIR/qmp.py" --timeout 300 "$sock_dir/qmp.sock" "$@" 2>>"$out/qmp.log"; }

passed=0
failed=0
failed_ids=()
timings=()

# dump_entry ID [novmci]: one kernel, start to end. Returns non-zero on any failure (already reported).
# novmci: the extra boot without -device vmcoreinfo (SYNQ_NOVMCI_KERNELS), dumped as ELF only: the dump then
# has no VMCOREINFO note and synq must find the kernel by scanning; no variants, damage or --vmlinux.
dump_entry() {
  local id=$1 novmci=${2:-} name=dump-$1 vmci=(-device vmcoreinfo) formats=(elf kdump-zlib)
  if [[ -n $novmci ]]; then
    name=dump-$id-novmcoreinfo
    vmci=()
    formats=(elf)
  fi
  out=$REPO_ROOT/target/realkernel/$name
  local ddir=$dump_root/${name#dump-} kdir=$KERNEL_CACHE/$id cpu=max,-la57 arch=x86_64 qemu=qemu-system-x86_64
  [[ $la57_kernels != *" $id "* ]] || cpu=max,+la57
  if is_arm64 "$id"; then
    arch=arm64
    qemu=qemu-system-aarch64
    cpu=${SYNQ_ARM64_CPU:-max,pauth-impdef=on}
  fi
  mkdir -p "$out" "$ddir"
  rm -rf "$out/results" "$out"/core-* "$out"/check-*.txt
  rm -f "$out"/{console.log,results.b64,qemu.log,qmp.log,host.txt,damage.txt,mutate.txt} "$out"/transcode-*.txt "$ddir"/vmcore.*
  rm -rf "$out/mutate"
  mkdir -p "$out/results"
  local h=$out/host.txt
  {
    echo "kernel_id=$id"
    echo "cpu=$cpu"
    echo "vmcoreinfo_device=$([[ -n $novmci ]] && echo no || echo yes)"
    echo "qemu=$($qemu --version | head -n 1)"
    if [[ $arch == arm64 ]]; then
      # What the kernel's config says (fetch-kernels.sh): check_dump.py's arm64 rules.
      echo "arch=arm64"
      echo "page_size=$(cat "$kdir/page_size")"
      echo "va_bits=$(cat "$kdir/va_bits")"
      echo "image_format=$(cat "$kdir/image_format")"
      echo "image=$kdir/Image"
      echo "package=$(cat "$kdir/package")"
      # y, or n: no CONFIG_KALLSYMS_ALL (bookworm's arm64 6.1), no tcp_hashinfo in the kallsyms tables: synq
      # gets no side file and must find it in the kernel's data; check_dump.py compares the address with the
      # kernel's System.map (fetch-kernels.sh took it from the -dbg package) + KERNELOFFSET.
      echo "kallsyms_all=$(cat "$kdir/kallsyms_all")"
      [[ ! -s $kdir/System.map ]] || echo "system_map=$kdir/System.map"
    fi
  } >"$h"
  if [[ $arch == arm64 ]]; then
    rk_log "$name: $(cat "$kdir/release"): $(cat "$kdir/page_size")-byte pages, CONFIG_ARM64_VA_BITS=$(cat "$kdir/va_bits")," \
      "$qemu -cpu $cpu"
  fi

  local t=$SECONDS
  SYNQ_BIN=$synq_bin "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$out/initramfs.cpio.gz" 2>>"$out/qmp.log" \
    || { rk_log "$name: building the initramfs failed (see $out/qmp.log)"; return 1; }
  rk_log "$name: initramfs built in $((SECONDS - t))s"

  sock_dir=$(mktemp -d "${TMPDIR:-/tmp}/synq-qmp.XXXXXX")
  local tb tr
  tb=$(now_ms)
  # As rk_boot (lib.sh), plus QMP. The timeout bounds the whole guest life (boot, dumps, checks of the
  # results); QMP `quit` normally ends it much earlier.
  if [[ $arch == arm64 ]]; then
    # virt: the console on the PL011 (ttyAMA0); the results over a virtconsole (/dev/hvc0), since QEMU 7.2's
    # virt gives the guest one UART only. -kernel: the plain Image (fetch-kernels.sh).
    timeout -k 10 $((vm_timeout + 300)) qemu-system-aarch64 \
      -accel tcg -M virt -m 512 -smp 1 -cpu "$cpu" \
      -display none -monitor none -no-reboot -nic none \
      "${vmci[@]}" \
      -kernel "$kdir/Image" -initrd "$out/initramfs.cpio.gz" \
      -append "console=ttyAMA0 quiet panic=-1 synq.mode=dump synq.results=hvc0" \
      -serial "file:$out/console.log" \
      -device virtio-serial-pci -chardev "file,id=results,path=$out/results.b64" -device virtconsole,chardev=results \
      -qmp "unix:$sock_dir/qmp.sock,server=on,wait=off" \
      </dev/null >"$out/qemu.log" 2>&1 &
  else
  timeout -k 10 $((vm_timeout + 300)) qemu-system-x86_64 \
    -accel tcg -m 512 -smp 1 -cpu "$cpu" \
    -display none -vga none -monitor none -no-reboot -nic none \
    "${vmci[@]}" \
    -kernel "$kdir/vmlinuz" -initrd "$out/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 synq.mode=dump" \
    -serial "file:$out/console.log" -serial "file:$out/results.b64" \
    -qmp "unix:$sock_dir/qmp.sock,server=on,wait=off" \
    </dev/null >"$out/qemu.log" 2>&1 &
  fi
  qemu_pid=$!
  if ! wait_for "$out" "$vm_timeout" "SYNQ-DUMP-READY on the guest console" \
      grep -aqs 'SYNQ-DUMP-READY' "$out/console.log"; then
    # A guest that stopped on a failed step sent its results (status, log) before powering off.
    [[ -n $qemu_pid ]] || rk_unpack_results "$out" "$name" "$(secs "$tb" "$(now_ms)")" || true
    return 1
  fi
  tr=$(now_ms)
  local boot_s
  boot_s=$(secs "$tb" "$tr")
  rk_unpack_results "$out" "$name" "$boot_s" || return 1
  wait_for "$out" 30 "SYNQ-DUMP-STATE line (the guest's state watch)" state_after "$out" 0 || return 1
  echo "boot_s=$boot_s" >>"$h"

  local caps
  caps=$(qmp query-dump-guest-memory-capability) || { rk_fail_report "$out" "QMP query-dump-guest-memory-capability failed (see $out/qmp.log)"; return 1; }
  echo "capability=$caps" >>"$h"
  local fmt
  for fmt in "${formats[@]}"; do
    grep -q "\"$fmt\"" <<<"$caps" || { rk_fail_report "$out" "QEMU cannot dump as $fmt: $caps"; return 1; }
  done

  local s_before s_after
  s_before=$(last_state "$out")
  echo "state_before_dumps=$s_before" >>"$h"
  for fmt in "${formats[@]}"; do
    local f=$ddir/vmcore.$fmt ts te q
    ts=$(now_ms)
    if ! qmp dump-guest-memory "{\"paging\": false, \"protocol\": \"file:$f\", \"format\": \"$fmt\"}" >/dev/null; then
      rk_fail_report "$out" "QMP dump-guest-memory ($fmt) failed: $(tail -n 1 "$out/qmp.log")"
      return 1
    fi
    te=$(now_ms)
    q=$(qmp query-dump) || { rk_fail_report "$out" "QMP query-dump failed"; return 1; }
    if [[ $q != *'"status": "completed"'* ]]; then
      rk_fail_report "$out" "dump $fmt: query-dump says $q"
      return 1
    fi
    [[ -s $f ]] || { rk_fail_report "$out" "dump $fmt: $f missing or empty"; return 1; }
    {
      echo "dump_${fmt}_s=$(secs "$ts" "$te")"
      echo "dump_${fmt}_bytes=$(stat -c %s "$f")"
      echo "dump_${fmt}_query=$q"
    } >>"$h"
    rk_log "$name: $fmt dump in $(secs "$ts" "$te")s, $(stat -c %s "$f") bytes ($f)"
  done
  # The ground truth was taken before the dumps: the guest compares its live state with it once a second;
  # a line after the dumps must still say "same" and none may say CHANGED.
  s_after=$(last_state "$out")
  wait_for "$out" 30 "SYNQ-DUMP-STATE line after the dumps" state_after "$out" "${s_after%% *}" || return 1
  local states n_changed
  states=$(grep -a 'SYNQ-DUMP-STATE ' "$out/console.log" | tr -d '\r')
  n_changed=$(grep -c CHANGED <<<"$states" || true)
  s_after=$(last_state "$out")
  echo "state_after_dumps=$s_after" >>"$h"
  echo "state_lines=$(wc -l <<<"$states") changed=$n_changed" >>"$h"
  if [[ $n_changed -eq 0 && ${s_before#* } == same && ${s_after#* } == same ]]; then
    echo "state_stable=yes" >>"$h"
  else
    echo "state_stable=no" >>"$h"
    rk_fail_report "$out" "the guest's listeners moved away from the ground truth around the dumps: $n_changed CHANGED lines (before: $s_before, after: $s_after)"
    return 1
  fi

  local tq
  tq=$(now_ms)
  qmp quit >/dev/null || { rk_fail_report "$out" "QMP quit failed"; return 1; }
  local rc=0
  wait "$qemu_pid" || rc=$?
  qemu_pid=
  [[ $rc -eq 0 ]] || { rk_fail_report "$out" "QEMU exited with $rc after quit"; return 1; }
  echo "quit_s=$(secs "$tq" "$(now_ms)")" >>"$h"
  cleanup

  local ok=0 tc
  for fmt in "${formats[@]}"; do
    local f=$ddir/vmcore.$fmt c=$out/check-$fmt.txt
    tc=$(now_ms)
    if ! python3 "$REALKERNEL_DIR/check_dump.py" "$out" "$f" >"$c" 2>&1; then
      cat "$c"
      rk_log "$name: FAIL: $fmt: synq --core disagrees with the ground truth, or a check of the dump failed (details above, and in $c)"
      ok=1
    elif ! python3 "$REALKERNEL_DIR/check_dump.py" --selftest "$out" "$f" >>"$c" 2>&1; then
      tail -n 5 "$c"
      rk_log "$name: FAIL: $fmt: check_dump.py did not catch planted defects (the comparison is broken)"
      ok=1
    else
      grep -E '^(info|check|selftest):' "$c"
    fi
    echo "check_${fmt}_s=$(secs "$tc" "$(now_ms)")" >>"$h"
  done
  [[ -z $novmci ]] || return $ok
  if [[ $arch == arm64 ]]; then
    # The extra steps read x86_64 kernels (mutate_dumps.py walks x86_64 page tables, --vmlinux builds an
    # x86-64 ELF, ...): not run on arm64 dumps, said so when asked for.
    local v
    for v in transcode_kernels damage_kernels mutate_kernels prometheus_kernels; do
      [[ ${!v} != *" $id "* ]] || rk_log "$name: ${v%_kernels} step asked for, but it is x86_64 only: not run for $id"
    done
    [[ $id != "${SYNQ_VMLINUX_KERNEL:-6.1}" ]] || rk_log "$name: --vmlinux step asked for, but it is x86_64 only: not run for $id"
    return $ok
  fi
  [[ $transcode_kernels != *" $id "* ]] || check_variants "$id" || ok=1
  [[ $damage_kernels != *" $id "* ]] || check_damage "$id" || ok=1
  [[ $mutate_kernels != *" $id "* ]] || check_mutations "$id" || ok=1
  [[ $id != "${SYNQ_VMLINUX_KERNEL:-6.1}" ]] || check_vmlinux "$id" || ok=1
  [[ $prometheus_kernels != *" $id "* ]] || check_prometheus "$id" || ok=1
  return $ok
}

# check_prometheus ID: a real Prometheus scraping synq serve --core of the kdump-zlib dump, node_exporter
# reading synq's textfile of it, promtool checking the exposition (prometheus.sh, check_prometheus.py).
check_prometheus() {
  local id=$1 c=$out/check-prometheus.txt
  if SYNQ_BIN=$synq_bin "$REALKERNEL_DIR/prometheus.sh" "$out" "$dump_root/$id/vmcore.kdump-zlib" >"$c" 2>&1; then
    grep -E '^(check|selftest):' "$c"
    return 0
  fi
  cat "$c"
  rk_log "dump-$id: FAIL: Prometheus / node_exporter / promtool on synq's exposition (details above, and in $c)"
  return 1
}

# check_vmlinux ID: --vmlinux on a real dump. No Debian vmlinux with .BTF fits here (the -dbg package is
# ~630 MB), so one is made from what the guest sent: its BTF as the .BTF section, and _stext and tcp_hashinfo
# at their link-time addresses (kallsyms minus the KASLR slide of _stext from 0xffffffff81000000). synq must
# take both from it (and KASLR from VMCOREINFO) and count as many half-open requests as the guest's /proc.
check_vmlinux() {
  local id=$1 r=$out/results vm=$out/vmlinux st th slide want got desc
  st=$(awk '$3 == "_stext" && NF == 3 { print $1; exit }' "$r/side/kallsyms")
  th=$(awk '$3 == "tcp_hashinfo" && NF == 3 { print $1; exit }' "$r/side/kallsyms")
  # objcopy parses symbol values as signed: hand it the two's-complement value.
  read -r slide st th < <(python3 -c "s=int('$st',16)-0xffffffff81000000; f=lambda v:((v-s)%2**64)-2**64; print(s, f(int('$st',16)), f(int('$th',16)))")
  if ! objcopy -I binary -O elf64-x86-64 --rename-section .data=.BTF --add-symbol "_stext=$st" \
    --add-symbol "tcp_hashinfo=$th" "$r/side/btf" "$vm"; then
    rk_log "dump-$id: FAIL: --vmlinux: objcopy could not build the test vmlinux"
    return 1
  fi
  want=$(cat "$r"/basic/ns*/tcp "$r"/basic/ns*/tcp6 2>/dev/null | awk '$4 == "03"' | wc -l)
  got=$("$synq_bin" --core "$dump_root/$id/vmcore.kdump-zlib" --vmlinux "$vm" --total 2>&1) || true
  desc=$("$synq_bin" --core "$dump_root/$id/vmcore.kdump-zlib" --vmlinux "$vm" --json 2>&1 |
    python3 -c 'import json,sys; k=json.load(sys.stdin)["kernel"]; print(k["symbols"], "|", k["btf"])' 2>&1) || true
  if [[ $want -gt 0 && $got == "$want" && $desc == *vmlinux*KERNELOFFSET*"|"*"(.BTF)"* ]]; then
    echo "check: OK [$id] --vmlinux: synq --core --total $got = $want st 03 lines; sources: $desc (slide $slide)"
    return 0
  fi
  rk_log "dump-$id: FAIL: --vmlinux: synq said '$got' (want $want st 03 lines), sources '$desc'"
  return 1
}

# check_damage ID: synq --core --json on damaged copies of the kernel's two dumps (check_dump.py --damage).
check_damage() {
  local id=$1 ddir=$dump_root/$1 c=$out/damage.txt td rc=0
  td=$(now_ms)
  python3 "$REALKERNEL_DIR/check_dump.py" --damage "$out" "$ddir/vmcore.kdump-zlib" "$ddir/vmcore.elf" >"$c" 2>&1 || rc=$?
  cat "$c"
  echo "damage_s=$(secs "$td" "$(now_ms)")" >>"$out/host.txt"
  echo "damage_ok=$(sed -n 's/^damage: \([0-9]* of [0-9]*\) cases OK.*/\1/p' "$c" | tr -d ' ' | sed 's/of/\//')" >>"$out/host.txt"
  if [[ $rc -ne 0 ]]; then
    rk_log "dump-$id: FAIL: damaged dumps: synq hung, crashed, panicked or answered wrongly on some case (see $c)"
    return 1
  fi
  rk_log "dump-$id: damaged dumps: OK in $(secs "$td" "$(now_ms)")s"
}

# check_mutations ID: synq --core --json on SYNQ_MUTATIONS mutated copies of the kernel's two dumps
# (mutate_dumps.py; its summary in mutate.txt, one row per mutation in mutate/mutations.tsv).
check_mutations() {
  local id=$1 ddir=$dump_root/$1 c=$out/mutate.txt tm rc=0
  tm=$(now_ms)
  SYNQ_MUTATE_ALLOW=${SYNQ_MUTATE_ALLOW-} python3 "$REALKERNEL_DIR/mutate_dumps.py" \
    --count "${SYNQ_MUTATIONS:-100}" --seed "${SYNQ_MUTATE_SEED:-1}" \
    "$out" "$ddir/vmcore.kdump-zlib" "$ddir/vmcore.elf" >"$c" 2>&1 || rc=$?
  grep -v '^mutate:   ' "$c"
  echo "mutate_s=$(secs "$tm" "$(now_ms)")" >>"$out/host.txt"
  echo "mutate_ok=$(sed -n 's/^mutate: \([0-9]*\) run .*; failures \([0-9]*\) .*/\1-\2/p' "$c" |
    awk -F- '{ print $1 - $2 "/" $1 }')" >>"$out/host.txt"
  if [[ $rc -ne 0 ]]; then
    rk_log "dump-$id: FAIL: mutated dumps: synq panicked, hung, was killed, used too much memory or answered wrongly on some mutation (see $c)"
    return 1
  fi
  rk_log "dump-$id: mutated dumps: OK in $(secs "$tm" "$(now_ms)")s"
}

# check_variants ID: the transcoded copies of the kernel's kdump-zlib dump, each through check_dump.py.
check_variants() {
  local id=$1 ddir=$dump_root/$1 h=$out/host.txt v ok=0 n_ok=0 tv tc
  for v in "${variants[@]}"; do
    local f=$ddir/vmcore.$v c=$out/check-$v.txt tlog=$out/transcode-$v.txt
    tv=$(now_ms)
    # shellcheck disable=SC2086  # the arguments are words
    if ! "$transcoder" "$ddir/vmcore.${variant_src[$v]:-kdump-zlib}" "$f" ${variant_args[$v]} >"$tlog" 2>&1; then
      cat "$tlog"
      rk_log "dump-$id: FAIL: variant $v: kdump_transcode vmcore.${variant_src[$v]:-kdump-zlib} ${variant_args[$v]} failed (see $tlog)"
      ok=1
      continue
    fi
    chmod 0400 "$f"
    local t_s sz
    t_s=$(secs "$tv" "$(now_ms)")
    sz=$(stat -c %s "$f")
    tc=$(now_ms)
    if ! python3 "$REALKERNEL_DIR/check_dump.py" "$out" "$f" >"$c" 2>&1; then
      cat "$c"
      rk_log "dump-$id: FAIL: variant $v: synq --core disagrees with the ground truth, or a check of the dump failed (details above, and in $c)"
      ok=1
    else
      n_ok=$((n_ok + 1))
      grep -E '^check:|dump unchanged by synq' "$c" | sed "s/^/  $v: /"
      rk_log "dump-$id: variant $v: OK, $sz bytes, transcoded in ${t_s}s, checked in $(secs "$tc" "$(now_ms)")s; $(grep -o '[0-9]* page descriptors.*' "$tlog" | tail -n 1)"
    fi
    {
      echo "variant_${v}_bytes=$sz"
      echo "variant_${v}_transcode_s=$t_s"
      echo "variant_${v}_check_s=$(secs "$tc" "$(now_ms)")"
    } >>"$h"
  done
  echo "variants_ok=$n_ok/${#variants[@]}" >>"$h"
  return $ok
}

# Entries: each kernel, then the boots without -device vmcoreinfo (SYNQ_NOVMCI_KERNELS, default 6.1).
entries=("${ids[@]}")
for id in "${ids[@]}"; do [[ $novmci_kernels != *" $id "* ]] || entries+=("$id:novmci"); done
for entry in "${entries[@]}"; do
  id=${entry%%:*}
  mode=
  [[ $entry != *:novmci ]] || mode=novmci
  name=dump-$id${mode:+-novmcoreinfo}
  t1=$SECONDS
  out=
  if dump_entry "$id" $mode; then
    passed=$((passed + 1))
    rk_log "$name: PASS in $((SECONDS - t1))s"
  else
    failed=$((failed + 1))
    failed_ids+=("$name")
    rk_log "$name: FAIL after $((SECONDS - t1))s"
  fi
  cleanup
  h=$REPO_ROOT/target/realkernel/$name/host.txt
  v() { sed -n "s/^$1=//p" "$h" 2>/dev/null | tail -n 1; }
  timings+=("$(printf '%-5s %-11s %7s %8s %11s %9s %11s %8s %8s %8s %7s %9s' "$id${mode:+-nv}" "$(v cpu)" "$(v boot_s)" \
    "$(v dump_elf_s)" "$(v dump_elf_bytes)" "$(v dump_kdump-zlib_s)" "$(v dump_kdump-zlib_bytes)" \
    "$(v check_elf_s)" "$(v check_kdump-zlib_s)" "$(v variants_ok || true)" "$(v damage_ok || true)" \
    "$(v mutate_ok || true)")")
  if [[ ${SYNQ_KEEP_DUMPS:-0} == 1 ]]; then
    rk_log "$name: dumps kept in $dump_root/${name#dump-} (SYNQ_KEEP_DUMPS=1)"
  else
    rm -f "$dump_root/${name#dump-}"/vmcore.*
    rmdir "$dump_root/${name#dump-}" 2>/dev/null || true
  fi
done

{
  printf '%-5s %-11s %7s %8s %11s %9s %11s %8s %8s %8s %7s %9s\n' id cpu boot_s elf_s elf_bytes kdump_s kdump_bytes \
    chk_elf chk_kdump variants damage mutate
  printf '%s\n' "${timings[@]}"
} | tee "$REPO_ROOT/target/realkernel/dump-timings.txt"
rk_log "total $((SECONDS - t0))s"
echo "realkernel dumps: $passed passed, $failed failed"
if [[ $failed -gt 0 ]]; then
  echo "realkernel dumps: FAILED: ${failed_ids[*]}" >&2
  exit 1
fi
