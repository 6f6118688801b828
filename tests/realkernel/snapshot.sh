#!/usr/bin/env bash
# Real memory snapshots of the test guests, taken by the guests themselves, and synq --core checked on them.
#
#   tests/realkernel/snapshot.sh all        # 5.10, 6.1, 6.12
#   tests/realkernel/snapshot.sh 6.1        # one kernel
#
# Per kernel: the guest boots with synq.mode=snapshot and four empty virtio disks (sparse raw files, one per
# snapshot, serial = the snapshot's name), builds the "basic" listeners and records their ground truth (as
# dump.sh's guests do, plus /proc/iomem), then images its own memory onto the disks:
#   avml-lime        avml acquire --source /proc/kcore FIFO               (LiME format)
#   avml-compressed  avml acquire --source /proc/kcore --compress FIFO    (AVML v2, Snappy)
#   lime             insmod lime.ko path=FIFO format=lime                 (LiME format)
#   lime-padded      insmod lime.ko path=FIFO format=padded               (raw: offset = physical address)
# each through a FIFO into synq-snapcopy (O_DIRECT onto its disk: the guest's page cache never holds the
# image), recording the exact length, the time and the ground truth re-read right after. The host cuts each
# image out of its disk (the disk file truncated to that length, renamed, mode 0400):
#   ${SYNQ_SNAPSHOT_DIR:-/tmp/synq-snapshots}/<id>/snapshot.{avml-lime,avml-compressed,lime,lime-padded}
# then runs check_snapshot.py (and its --selftest) on each, and deletes them unless SYNQ_KEEP_SNAPSHOTS=1.
#
# Env: SYNQ_BIN (default target/release/synq), SYNQ_KERNEL_CACHE, SYNQ_TOOLS_CACHE, SYNQ_SNAPSHOT_DIR,
# SYNQ_KEEP_SNAPSHOTS, SYNQ_VM_TIMEOUT (wall seconds per guest, default 600), SYNQ_SNAPSHOT_LA57_KERNELS
# (kernels booted with -cpu max,+la57, i.e. 5-level paging; default 6.12; the others get max,-la57),
# SYNQ_SNAPSHOT_MEM_MB (guest memory, default 512; bench/snapshot-bench.sh also uses 2048),
# SYNQ_SNAPSHOT_DISK_MB (size of each sparse disk, default the guest memory + 512).
# Outputs: target/realkernel/snapshot-<id>/ (console.log, qemu.log, results/, host.txt, core-snapshot.<kind>/,
# check-<kind>.txt), target/realkernel/snapshot-timings.txt.
# A kernel passes only if every snapshot it has passes. Where fetch-tools.sh recorded that LiME cannot be built
# for a kernel, its lime and lime-padded snapshots are reported as UNAVAILABLE with the reason, and counted
# as neither passed nor failed; nothing else is ever skipped: a missing synq, a boot failure, a timeout, a
# failed snapshot or a failed check fails the kernel.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

[[ $# -gt 0 ]] || set -- all
if ! known=$(rk_kernel_ids "$@"); then
  echo "snapshot.sh: ids are kernel ids or 'all'" >&2
  exit 2
fi
mapfile -t ids < <(awk '!seen[$0]++' <<<"$known")

snap_root=${SYNQ_SNAPSHOT_DIR:-/tmp/synq-snapshots}
tools_cache=${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}
la57_kernels=" ${SYNQ_SNAPSHOT_LA57_KERNELS:-6.12} "
vm_timeout=${SYNQ_VM_TIMEOUT:-600}
mem_mb=${SYNQ_SNAPSHOT_MEM_MB:-512}
disk_mb=${SYNQ_SNAPSHOT_DISK_MB:-$((mem_mb + 512))}
synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
kinds=(avml-lime avml-compressed lime lime-padded)

t0=$SECONDS
"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "${ids[@]}" >/dev/null
SYNQ_KERNEL_CACHE=$KERNEL_CACHE SYNQ_TOOLS_CACHE=$tools_cache "$REALKERNEL_DIR/fetch-tools.sh" "${ids[@]}"
rk_log "host ready in $((SECONDS - t0))s"
[[ -x $synq_bin ]] || rk_log "WARNING: $synq_bin does not exist; every check will FAIL (cargo build --release)"

now_ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

# The QEMU of the entry being run (the `timeout` wrapping it).
qemu_pid=
cleanup() {
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  qemu_pid=
}
trap cleanup EXIT

passed=0
failed=0
failed_ids=()
timings=()
unavailable_notes=()
all_unavailable=()

# snapshot_entry ID: one kernel, start to end. Returns non-zero on any failure (already reported).
snapshot_entry() {
  local id=$1
  out=$REPO_ROOT/target/realkernel/snapshot-$id
  local sdir=$snap_root/$id kdir=$KERNEL_CACHE/$id cpu=max,-la57 k
  [[ $la57_kernels != *" $id "* ]] || cpu=max,+la57
  mkdir -p "$out" "$sdir"
  rm -rf "$out/results" "$out"/core-* "$out"/check-*.txt
  rm -f "$out"/{console.log,results.b64,qemu.log,host.txt,build.log} "$sdir"/disk-*.img "$sdir"/snapshot.*
  mkdir -p "$out/results"
  local h=$out/host.txt
  {
    echo "kernel_id=$id"
    echo "cpu=$cpu"
    echo "qemu=$(qemu-system-x86_64 --version | head -n 1)"
    echo "avml=$(cat "$tools_cache/avml/version")"
    if [[ -s $tools_cache/$id/lime.info ]]; then
      echo "lime=$(sed -n 's/^lime_package=//p' "$tools_cache/$id/lime.info"), $(sed -n 's/^compiler=//p' "$tools_cache/$id/lime.info")"
    else
      echo "lime=unavailable: $(tail -n +2 "$tools_cache/$id/lime.unavailable" | tr '\n' ' ')"
    fi
  } >"$h"

  local t=$SECONDS
  SYNQ_SNAPSHOT_TOOLS=1 SYNQ_TOOLS_CACHE=$tools_cache SYNQ_BIN=$synq_bin \
    "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$out/initramfs.cpio.gz" 2>>"$out/build.log" \
    || { rk_log "snapshot-$id: building the initramfs failed (see $out/build.log)"; return 1; }
  rk_log "snapshot-$id: initramfs built in $((SECONDS - t))s"

  # One sparse raw disk per snapshot; the guest finds each by its serial.
  local drives=() i=0
  for k in "${kinds[@]}"; do
    truncate -s "${disk_mb}M" "$sdir/disk-$k.img"
    drives+=(-drive "if=none,id=snap$i,file=$sdir/disk-$k.img,format=raw,cache=writeback"
      -device "virtio-blk-pci,drive=snap$i,serial=$k")
    i=$((i + 1))
  done

  local tb rc=0
  tb=$(now_ms)
  # As rk_boot (lib.sh), plus the disks; the guest powers off when it is done (or on a failed step).
  timeout -k 10 "$vm_timeout" qemu-system-x86_64 \
    -accel tcg -m "$mem_mb" -smp 1 -cpu "$cpu" \
    -display none -vga none -monitor none -no-reboot -nic none \
    -device vmcoreinfo "${drives[@]}" \
    -kernel "$kdir/vmlinuz" -initrd "$out/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 synq.mode=snapshot" \
    -serial "file:$out/console.log" -serial "file:$out/results.b64" \
    </dev/null >"$out/qemu.log" 2>&1 &
  qemu_pid=$!
  wait "$qemu_pid" || rc=$?
  qemu_pid=
  local guest_s
  guest_s=$(secs "$tb" "$(now_ms)")
  echo "guest_s=$guest_s" >>"$h"
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    rk_fail_report "$out" "guest did not finish within ${vm_timeout}s (timeout)"
    return 1
  elif [[ $rc -ne 0 ]]; then
    rk_fail_report "$out" "qemu exited with $rc after ${guest_s}s"
    return 1
  fi
  rk_unpack_results "$out" "snapshot-$id" "$guest_s" || return 1

  # Cut each image out of its disk: the guest wrote it from offset 0 (its last block zero-padded to 4 KiB);
  # the disk file truncated to the exact length is the image.
  local ok=0 n_ok=0 n_unavail=0 r=$out/results/snapshots
  for k in "${kinds[@]}"; do
    local disk=$sdir/disk-$k.img snap=$sdir/snapshot.$k bytes
    if [[ -s $r/$k/unavailable ]]; then
      rm -f "$disk"
      n_unavail=$((n_unavail + 1))
      echo "snap_${k}=unavailable" >>"$h"
      rk_log "snapshot-$id: $k: UNAVAILABLE (not checked, not passed): $(tr '\n' ' ' <"$r/$k/unavailable")"
      unavailable_notes+=("$id $k: $(head -n 1 "$r/$k/unavailable")")
      continue
    fi
    if [[ -s $r/$k/error || ! -s $r/$k/bytes ]]; then
      rm -f "$disk"
      rk_log "snapshot-$id: FAIL: $k: the guest could not take it: $(cat "$r/$k/error" 2>/dev/null || echo 'no byte count recorded')"
      [[ ! -s $r/$k/tool.out ]] || sed 's/^/  writer: /' "$r/$k/tool.out" | tail -n 5 >&2
      ok=1
      continue
    fi
    bytes=$(cat "$r/$k/bytes")
    if [[ ! $bytes =~ ^[0-9]+$ ]] || ((bytes > $(stat -c %s "$disk"))); then
      rk_log "snapshot-$id: FAIL: $k: the guest says $bytes bytes, the disk holds $(stat -c %s "$disk")"
      ok=1
      continue
    fi
    truncate -s "$bytes" "$disk"
    mv "$disk" "$snap"
    chmod 0400 "$snap"
    {
      echo "snap_${k}_bytes=$bytes"
      echo "snap_${k}_s=$(cat "$r/$k/seconds")"
      echo "snap_${k}_state_after=$(cat "$r/$k/verdict")"
    } >>"$h"
    rk_log "snapshot-$id: $k: $bytes bytes in $(cat "$r/$k/seconds")s (state after: $(cat "$r/$k/verdict")) -> $snap"

    local c=$out/check-$k.txt tc
    tc=$(now_ms)
    if ! python3 "$REALKERNEL_DIR/check_snapshot.py" "$out" "$snap" >"$c" 2>&1; then
      grep -E '^(FAIL|part:|check:)' "$c" | cut -c 1-600
      rk_log "snapshot-$id: FAIL: $k: $(grep -E '^check:' "$c" | cut -c 1-400) (details in $c)"
      ok=1
    else
      grep -E '^(info|check):' "$c"
      n_ok=$((n_ok + 1))
    fi
    echo "check_${k}_s=$(secs "$tc" "$(now_ms)")" >>"$h"
    # The selftest judges planted defects in copies of the recorded run (synq's outputs synthesized from the
    # ground truth when the real synq could not read the snapshot): it tests the judgement, not synq.
    if ! python3 "$REALKERNEL_DIR/check_snapshot.py" --selftest "$out" "$snap" >>"$c" 2>&1; then
      tail -n 1 "$c" | cut -c 1-600
      if tail -n 1 "$c" | grep -q 'does not pass to begin with'; then
        rk_log "snapshot-$id: FAIL: $k: check_snapshot.py --selftest could not run: the recorded run fails beyond synq (above)"
      else
        rk_log "snapshot-$id: FAIL: $k: check_snapshot.py --selftest: the judgement missed planted defects"
      fi
      ok=1
    else
      grep -E '^selftest:' "$c"
    fi
    if [[ ${SYNQ_KEEP_SNAPSHOTS:-0} != 1 ]]; then
      rm -f "$snap"
    fi
  done
  echo "snapshots_ok=$n_ok/$((${#kinds[@]} - n_unavail))" >>"$h"
  echo "snapshots_unavailable=$n_unavail" >>"$h"
  return $ok
}

for id in "${ids[@]}"; do
  t1=$SECONDS
  out=
  unavailable_notes=()
  if snapshot_entry "$id"; then
    passed=$((passed + 1))
    if [[ ${#unavailable_notes[@]} -gt 0 ]]; then
      all_unavailable+=("${unavailable_notes[@]}")
      rk_log "snapshot-$id: PASS in $((SECONDS - t1))s for the snapshots it has; UNAVAILABLE, not passed: ${unavailable_notes[*]}"
    else
      rk_log "snapshot-$id: PASS in $((SECONDS - t1))s"
    fi
  else
    failed=$((failed + 1))
    failed_ids+=("snapshot-$id")
    rk_log "snapshot-$id: FAIL after $((SECONDS - t1))s"
  fi
  cleanup
  if [[ ${SYNQ_KEEP_SNAPSHOTS:-0} == 1 ]]; then
    rk_log "snapshot-$id: snapshots kept in $snap_root/$id (SYNQ_KEEP_SNAPSHOTS=1)"
  else
    rm -f "$snap_root/$id"/snapshot.* "$snap_root/$id"/disk-*.img
    rmdir "$snap_root/$id" 2>/dev/null || true
  fi
  h=$REPO_ROOT/target/realkernel/snapshot-$id/host.txt
  v() { sed -n "s/^$1=//p" "$h" 2>/dev/null | tail -n 1; }
  row=$(printf '%-5s %-11s %8s' "$id" "$(v cpu)" "$(v guest_s)")
  for k in "${kinds[@]}"; do
    if [[ $(v "snap_$k") == unavailable ]]; then
      row+=$(printf ' %24s' "unavailable")
    else
      row+=$(printf ' %12s %5ss %5ss' "$(v "snap_${k}_bytes")" "$(v "snap_${k}_s")" "$(v "check_${k}_s")")
    fi
  done
  timings+=("$row $(v snapshots_ok)")
done

{
  printf '%-5s %-11s %8s' id cpu guest_s
  for k in "${kinds[@]}"; do printf ' %24s' "$k: bytes take check"; done
  printf ' ok\n'
  printf '%s\n' "${timings[@]}"
} | tee "$REPO_ROOT/target/realkernel/snapshot-timings.txt"
rk_log "total $((SECONDS - t0))s"
if [[ ${#all_unavailable[@]} -gt 0 ]]; then
  echo "realkernel snapshots: UNAVAILABLE, neither passed nor failed: $(printf '[%s] ' "${all_unavailable[@]}")"
fi
echo "realkernel snapshots: $passed passed, $failed failed"
if [[ $failed -gt 0 ]]; then
  echo "realkernel snapshots: FAILED: ${failed_ids[*]}" >&2
  exit 1
fi
