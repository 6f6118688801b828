# shellcheck shell=bash
# Shared by tests/realkernel/run.sh and bench/bench.sh: booting one guest and
# getting its results back. Source it; it defines functions only.

REALKERNEL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Used by the scripts that source this file.
# shellcheck disable=SC2034
REPO_ROOT=$(cd "$REALKERNEL_DIR/../.." && pwd)
KERNEL_CACHE=${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}
ALL_KERNELS=(5.10 6.1 6.12)
# arm64 guests (dump.sh and run.sh, which set RK_ARM64=1 before rk_kernel_ids; "arm64" names all three).
# Not part of "all".
ARM64_KERNELS=(arm64-6.1 arm64-6.12 arm64-16k)

rk_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Prints why a guest run failed, with the tail of its console, to stderr.
rk_fail_report() {
  local out=$1 msg=$2
  {
    echo "=================================================================="
    echo "REALKERNEL FAILURE ($out): $msg"
    if [[ -s $out/console.log ]]; then
      echo "---- last 40 lines of the guest console ($out/console.log) ----"
      tail -n 40 "$out/console.log" | tr -d '\r'
    else
      echo "---- guest console is empty ----"
    fi
    if [[ -s $out/qemu.log ]]; then
      echo "---- qemu stderr ($out/qemu.log) ----"
      tail -n 20 "$out/qemu.log"
    fi
    echo "=================================================================="
  } >&2
}

# rk_boot KERNEL_ID OUTDIR MEM_MB TIMEOUT_S APPEND_EXTRA [LABEL]
# Boots the kernel with OUTDIR/initramfs.cpio.gz, waits for the guest to power
# off (bounded by TIMEOUT_S of wall clock), unpacks the results it sent over
# ttyS1 into OUTDIR/results. Returns non-zero (after a report) on a timeout,
# a guest that sent nothing or a truncated archive, or a guest status != OK.
rk_boot() {
  local id=$1 out=$2 mem=$3 tmo=$4 extra=$5 label=${6:-$1}
  local kdir=$KERNEL_CACHE/$id rc=0
  rm -rf "$out/results" "$out/console.log" "$out/results.b64" "$out/qemu.log"
  mkdir -p "$out/results"
  local start=$SECONDS
  if [[ $(cat "$kdir/arch" 2>/dev/null) == arm64 ]]; then
    # arm64 (fetch-kernels.sh's arm64-* ids), booted as dump.sh boots them: virt, the plain Image, the console
    # on the PL011 (ttyAMA0), the results over a virtconsole (/dev/hvc0; QEMU 7.2's virt gives the guest one
    # UART only); -cpu max,pauth-impdef=on: pointer authentication with QEMU's cheap algorithm.
    timeout -k 10 "$tmo" qemu-system-aarch64 \
      -accel tcg -M virt -m "$mem" -smp 1 -cpu "${SYNQ_ARM64_CPU:-max,pauth-impdef=on}" \
      -display none -monitor none -no-reboot -nic none \
      -device vmcoreinfo \
      -kernel "$kdir/Image" -initrd "$out/initramfs.cpio.gz" \
      -append "console=ttyAMA0 quiet panic=-1 synq.results=hvc0 $extra" \
      -serial "file:$out/console.log" \
      -device virtio-serial-pci -chardev "file,id=results,path=$out/results.b64" -device virtconsole,chardev=results \
      </dev/null >"$out/qemu.log" 2>&1 || rc=$?
    rk_boot_end "$out" "$label" "$tmo" "$rc" "$((SECONDS - start))"
    return
  fi
  # -cpu max,-la57: plain `max` turns on 5-level paging under TCG; the default
  # guests are 4-level (SYNQ_QEMU_CPU overrides, e.g. "max" for la57 runs).
  # -nic none: nothing leaves the guest. -device vmcoreinfo: VMCOREINFO via
  # fw_cfg, as on a host that is dumped. Serial 0: console; serial 1: results.
  timeout -k 10 "$tmo" qemu-system-x86_64 \
    -accel tcg -m "$mem" -smp 1 -cpu "${SYNQ_QEMU_CPU:-max,-la57}" \
    -display none -vga none -monitor none -no-reboot -nic none \
    -device vmcoreinfo \
    -kernel "$kdir/vmlinuz" -initrd "$out/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 $extra" \
    -serial "file:$out/console.log" -serial "file:$out/results.b64" \
    </dev/null >"$out/qemu.log" 2>&1 || rc=$?
  rk_boot_end "$out" "$label" "$tmo" "$rc" "$((SECONDS - start))"
}

# rk_boot_end OUTDIR LABEL TIMEOUT_S QEMU_STATUS SECONDS: rk_boot's verdict on a QEMU that has ended.
rk_boot_end() {
  local out=$1 label=$2 tmo=$3 rc=$4 took=$5
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    rk_fail_report "$out" "guest did not finish within ${tmo}s (timeout)"
    return 1
  elif [[ $rc -ne 0 ]]; then
    rk_fail_report "$out" "qemu exited with $rc after ${took}s"
    return 1
  fi
  rk_unpack_results "$out" "$label" "$took"
}

# rk_unpack_results OUTDIR LABEL SECONDS: unpacks what the guest sent over ttyS1
# (OUTDIR/results.b64) into OUTDIR/results and logs the guest's facts. Returns
# non-zero (after a report) on missing or truncated results or a status != OK.
rk_unpack_results() {
  local out=$1 label=$2 took=$3
  if ! grep -q '===SYNQ-RESULTS-END===' "$out/results.b64" 2>/dev/null; then
    rk_fail_report "$out" "guest sent no (complete) results after ${took}s: it crashed, panicked or /init died"
    return 1
  fi
  # The tty may have turned \n into \r\n: base64 -d does not care once \r is gone.
  if ! sed -n '/===SYNQ-RESULTS-BEGIN===/,/===SYNQ-RESULTS-END===/p' "$out/results.b64" \
      | sed '1d;$d' | tr -d '\r' | base64 -d | tar -xz -C "$out/results"; then
    rk_fail_report "$out" "results archive from the guest is corrupt"
    return 1
  fi
  local status
  status=$(cat "$out/results/status" 2>/dev/null || echo "missing")
  rk_log "$label: guest ran ${took}s, release $(cat "$out/results/release" 2>/dev/null || echo '?')," \
    "lockdown $(cat "$out/results/lockdown" 2>/dev/null || echo '?'), cpu la57 $(cat "$out/results/cpu-la57" 2>/dev/null || echo '?')," \
    "status: $status"
  if [[ $status != OK ]]; then
    rk_fail_report "$out" "guest step failed: $status"
    if [[ -s $out/results/log.txt ]]; then
      echo "---- guest log ($out/results/log.txt) ----" >&2
      tail -n 40 "$out/results/log.txt" >&2
    fi
    return 1
  fi
}

rk_kernel_ids() {
  # Expands "all" (or nothing) to every kernel id; validates the others.
  local a
  if [[ $# -eq 0 ]]; then
    printf '%s\n' "${ALL_KERNELS[@]}"
    return
  fi
  for a in "$@"; do
    if [[ $a == all ]]; then
      printf '%s\n' "${ALL_KERNELS[@]}"
    elif [[ " ${ALL_KERNELS[*]} " == *" $a "* ]]; then
      echo "$a"
    elif [[ ${RK_ARM64:-0} == 1 && $a == arm64 ]]; then
      printf '%s\n' "${ARM64_KERNELS[@]}"
    elif [[ ${RK_ARM64:-0} == 1 && " ${ARM64_KERNELS[*]} " == *" $a "* ]]; then
      echo "$a"
    elif [[ ${RK_ARM64:-0} == 1 ]]; then
      echo "unknown kernel id '$a' (known: ${ALL_KERNELS[*]} all ${ARM64_KERNELS[*]} arm64)" >&2
      return 1
    else
      echo "unknown kernel id '$a' (known: ${ALL_KERNELS[*]} all)" >&2
      return 1
    fi
  done
}
