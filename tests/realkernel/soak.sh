#!/usr/bin/env bash
# Churn soak, live (issue 7, item 4): boots one Debian kernel under QEMU (TCG) in synq.mode=soak. The guest
# builds the "basic" scenario's listeners (both namespaces, known SYN and accept queues, MPTCP where the
# kernel has it) and records their ground truth; then one churner per namespace opens and closes listeners
# as fast as it can (synq-fixture churn: ephemeral ports, half of them in the listening-hash buckets of the
# fixed listeners) while `synq --json` runs RUNS times, each run followed by a copy of the kernel's own
# /proc/PID/net/tcp{,6} of both namespaces (synq-fixture soak); the churn stops and the ground truth is
# re-read. check_soak.py then asserts on the host: every exit 0 or 2, no run over 5 s, the fixed listeners
# exact on every run (per key: listeners, SYN queue, accept queue), >= 2,000 open/close cycles a second
# across both namespaces; and prints how often /proc/net/tcp showed a fixed listener duplicated or missing
# under the same churn. Its --selftest plants defects and expects each to fail.
#
#   tests/realkernel/soak.sh                # 6.12, 200 runs (what tests/run-all.sh runs)
#   tests/realkernel/soak.sh 6.12 1000      # the full count
#   tests/realkernel/soak.sh 6.1 300        # another kernel (5.10, 6.1, 6.12)
#
# Env: SYNQ_BIN (default target/release/synq), SYNQ_KERNEL_CACHE, SYNQ_VM_TIMEOUT (seconds for the whole
# guest; default 300 + 3 per run), SYNQ_SOAK_SMP (vCPUs, default 2: the churn runs on one while synq reads on
# the other, so the listening hash really changes under synq's walk; TCG runs them on two host threads),
# SYNQ_CHURN_WINDOW (churn listeners alive at once per namespace, default 64: enough that /proc/net/tcp's
# listening part spans more than one page-sized read), SYNQ_CHURN_RATE (open/close cycles a second per
# namespace, default 1500; 0 = unpaced), SYNQ_QEMU_CPU (default max,-la57), SYNQ_EXTRA_APPEND
# (more kernel arguments); the kernel of SYNQ_INTEGRITY_KERNEL (6.12) boots with lockdown=integrity, as in
# run.sh. Outputs: target/realkernel/soak-<id>/{initramfs.cpio.gz,console.log,qemu.log,results/,check.txt}.
# Never skips: a boot failure, a timeout or a broken rule fails.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

id=${1:-6.12}
runs=${2:-200}
if [[ $# -gt 2 ]] || ! rk_kernel_ids "$id" >/dev/null || [[ $id == all ]]; then
  echo "usage: soak.sh [KERNEL_ID] [RUNS]   (KERNEL_ID one of ${ALL_KERNELS[*]}; default 6.12 200)" >&2
  exit 2
fi
if ! [[ $runs =~ ^[0-9]+$ ]] || ((runs < 1 || runs > 100000)); then
  echo "soak.sh: RUNS must be 1..100000, not '$runs'" >&2
  exit 2
fi
smp=${SYNQ_SOAK_SMP:-2}
window=${SYNQ_CHURN_WINDOW:-64}
# 1,500 a second per namespace: 3,000 in all, 1.5 times the rule's 2,000, while leaving synq CPU time (an
# unpaced churner on each vCPU starves it and only measures TCG's scheduler); 0 = as fast as the guest can.
rate=${SYNQ_CHURN_RATE:-1500}
# Measured: ~0.5 s per run (synq, then four /proc copies) plus ~60 s of boot, setup and results; 3 s a run
# leaves room for a slow or shared host.
vm_timeout=${SYNQ_VM_TIMEOUT:-$((300 + 3 * runs))}
synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
out=$REPO_ROOT/target/realkernel/soak-$id
name=soak-$id

t0=$SECONDS
"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "$id" >/dev/null
rk_log "host ready in $((SECONDS - t0))s"
[[ -x $synq_bin ]] || rk_log "WARNING: $synq_bin does not exist; the soak will FAIL (cargo build --release)"

mkdir -p "$out"
rm -f "$out/check.txt"
if ! SYNQ_BIN=$synq_bin "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$out/initramfs.cpio.gz"; then
  rk_log "$name: FAIL: building the initramfs failed"
  echo "realkernel soak: FAILED: $name"
  exit 1
fi

extra=${SYNQ_EXTRA_APPEND:-}
[[ $id != "${SYNQ_INTEGRITY_KERNEL:-6.12}" || $extra == *lockdown=* ]] || extra="lockdown=integrity $extra"
accel=tcg
[[ $smp -le 1 ]] || accel=tcg,thread=multi
rm -rf "$out/results" "$out/console.log" "$out/results.b64" "$out/qemu.log"
mkdir -p "$out/results"
tb=$SECONDS
rc=0
# As rk_boot (lib.sh), with -smp and the soak's arguments; the timeout bounds the whole guest.
timeout -k 10 "$vm_timeout" qemu-system-x86_64 \
  -accel "$accel" -m 512 -smp "$smp" -cpu "${SYNQ_QEMU_CPU:-max,-la57}" \
  -display none -vga none -monitor none -no-reboot -nic none \
  -device vmcoreinfo \
  -kernel "$KERNEL_CACHE/$id/vmlinuz" -initrd "$out/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1 synq.mode=soak synq.soak_runs=$runs synq.churn_window=$window synq.churn_rate=$rate $extra" \
  -serial "file:$out/console.log" -serial "file:$out/results.b64" \
  </dev/null >"$out/qemu.log" 2>&1 || rc=$?
took=$((SECONDS - tb))
ok=1
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  rk_fail_report "$out" "guest did not finish within ${vm_timeout}s (timeout)"
  ok=0
elif [[ $rc -ne 0 ]]; then
  rk_fail_report "$out" "qemu exited with $rc after ${took}s"
  ok=0
elif ! rk_unpack_results "$out" "$name" "$took"; then
  ok=0
elif ! python3 "$REALKERNEL_DIR/check_soak.py" "$out/results" >"$out/check.txt" 2>&1; then
  cat "$out/check.txt"
  rk_log "$name: FAIL: a soak rule is broken (details above, and in $out/check.txt)"
  ok=0
elif ! python3 "$REALKERNEL_DIR/check_soak.py" --selftest "$out/results" >>"$out/check.txt" 2>&1; then
  tail -n 5 "$out/check.txt"
  rk_log "$name: FAIL: check_soak.py did not catch planted defects (the judgement is broken)"
  ok=0
else
  grep -E '^(info|check|selftest):' "$out/check.txt"
fi
rk_log "total $((SECONDS - t0))s (guest ${took}s, $runs runs, $smp vCPUs)"
if [[ $ok -eq 1 ]]; then
  rk_log "$name: PASS"
  echo "realkernel soak: 1 passed, 0 failed"
else
  echo "realkernel soak: FAILED: $name"
  exit 1
fi
