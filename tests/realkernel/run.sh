#!/usr/bin/env bash
# Real-kernel test of synq: boots each Debian kernel under QEMU (TCG), builds
# listeners with known SYN/accept queues in two network namespaces, runs
# `synq --json` and `synq --total` in the guest and compares them with the
# kernel's own /proc/net/tcp{,6} (check.py).
#
#   tests/realkernel/run.sh 6.1          # one kernel (5.10, 6.1, 6.12)
#   tests/realkernel/run.sh all          # all three (also the default)
#
# Env: SYNQ_BIN (default target/release/synq), SYNQ_KERNEL_CACHE (default
# /var/cache/synq-kernels), SYNQ_VM_TIMEOUT (seconds per guest, default 300),
# SYNQ_QEMU_CPU (default max,-la57; "max" gives 6.1/6.12 5-level paging),
# SYNQ_EXTRA_APPEND (more kernel arguments, e.g. lockdown=integrity).
# Outputs: target/realkernel/<id>/{initramfs.cpio.gz,console.log,results/,check.txt}.
# Never skips: a missing synq, a boot failure, a timeout or any mismatch fails.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

mapfile -t ids < <(rk_kernel_ids "$@" | awk '!seen[$0]++')
[[ ${#ids[@]} -gt 0 ]] || exit 2

t0=$SECONDS
"$REALKERNEL_DIR/setup-host.sh"
"$REALKERNEL_DIR/fetch-kernels.sh" "${ids[@]}" >/dev/null
rk_log "host ready in $((SECONDS - t0))s"

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
if [[ ! -x $synq_bin ]]; then
  # Not a skip: the guests still run (ground truth is checked) and check.py fails.
  rk_log "WARNING: $synq_bin does not exist; every kernel will FAIL (build it: cargo build --release)"
fi

passed=0
failed=0
failed_ids=()
for id in "${ids[@]}"; do
  out=$REPO_ROOT/target/realkernel/$id
  mkdir -p "$out"
  t1=$SECONDS
  ok=1
  if ! SYNQ_BIN=$synq_bin "$REALKERNEL_DIR/build-initramfs.sh" "$id" "$out/initramfs.cpio.gz"; then
    rk_log "$id: FAIL: building the initramfs failed"
    ok=0
  elif ! rk_boot "$id" "$out" 512 "${SYNQ_VM_TIMEOUT:-300}" "synq.mode=test ${SYNQ_EXTRA_APPEND:-}"; then
    ok=0
  elif ! python3 "$REALKERNEL_DIR/check.py" "$out/results" >"$out/check.txt" 2>&1; then
    cat "$out/check.txt"
    rk_log "$id: FAIL: synq disagrees with the ground truth (details above, and in $out/check.txt)"
    ok=0
  elif ! python3 "$REALKERNEL_DIR/check.py" --selftest "$out/results" >>"$out/check.txt" 2>&1; then
    # Negative control: planted defects in copies of synq's output must fail.
    tail -n 5 "$out/check.txt"
    rk_log "$id: FAIL: check.py did not catch planted defects (the comparison is broken)"
    ok=0
  else
    tail -n 2 "$out/check.txt"
  fi
  if [[ $ok -eq 1 ]]; then
    passed=$((passed + 1))
    rk_log "$id: PASS in $((SECONDS - t1))s"
  else
    failed=$((failed + 1))
    failed_ids+=("$id")
    rk_log "$id: FAIL after $((SECONDS - t1))s"
  fi
done

rk_log "total $((SECONDS - t0))s"
echo "realkernel: $passed passed, $failed failed"
if [[ $failed -gt 0 ]]; then
  echo "realkernel: FAILED kernels: ${failed_ids[*]}" >&2
  exit 1
fi
