#!/usr/bin/env bash
# Real-kernel test of synq: boots each Debian kernel under QEMU (TCG), builds
# listeners with known SYN/accept queues in two network namespaces (plus an
# MPTCP listener where the kernel has MPTCP), runs `synq --json` and
# `synq --total` in the guest and compares them with the kernel's own
# /proc/net/tcp{,6} (check.py); the same guest then runs synq with
# kptr_restrict=2 and as an unprivileged user, which must fail with the right
# message. One more boot (of $SYNQ_LOCKDOWN_KERNEL, default 6.1) with
# lockdown=confidentiality checks that synq refuses and says why.
#
#   tests/realkernel/run.sh 6.1          # one kernel (5.10, 6.1, 6.12)
#   tests/realkernel/run.sh lockdown     # only the lockdown=confidentiality boot
#   tests/realkernel/run.sh static       # only the static-synq boot (no libc in the guest)
#   tests/realkernel/run.sh all          # all three + the lockdown and static boots (also the default)
#   tests/realkernel/run.sh arm64        # the arm64 guests (arm64-6.1, arm64-6.12, arm64-16k); not in "all"
#   tests/realkernel/run.sh arm64-6.12   # one of them
#
# arm64 ids boot under qemu-system-aarch64 as dump.sh boots them (-M virt -cpu max,pauth-impdef=on, console
# ttyAMA0, results over a virtconsole, /dev/hvc0; lib.sh's rk_boot) with an aarch64 synq in the initramfs:
# SYNQ_ARM64_BIN, else what tests/realkernel/build-arm64-synq.sh builds (from ${SYNQ_ARM64_SRC:-this
# repository}; a Debian chroot, ~7 min the first time), once per run. The same test mode and check.py (its
# arm64 rules: see the README's "arm64 guests, live"); the lockdown, static, soak and bench boots stay x86_64.
#
# Env: SYNQ_BIN (default target/release/synq), SYNQ_KERNEL_CACHE (default
# /var/cache/synq-kernels), SYNQ_VM_TIMEOUT (seconds per guest, default 300; arm64 guests
# SYNQ_ARM64_VM_TIMEOUT, default 1200), SYNQ_ARM64_BIN (the static aarch64 synq of the arm64 guests),
# SYNQ_ARM64_SRC (the tree build-arm64-synq.sh builds when SYNQ_ARM64_BIN is not given), SYNQ_ARM64_CPU
# (arm64 guests' -cpu, default max,pauth-impdef=on),
# SYNQ_QEMU_CPU (default max,-la57; "max" gives 6.1/6.12 5-level paging),
# SYNQ_EXTRA_APPEND (more kernel arguments for the normal boots, e.g.
# lockdown=integrity; not given to the lockdown boot), SYNQ_LOCKDOWN_KERNEL
# (kernel id of the lockdown boot, default 6.1), SYNQ_STATIC_KERNEL (kernel id of
# the static boot, default 6.12), SYNQ_STATIC_BIN (the static synq; default:
# packaging/build-static.sh builds or refreshes target/static/...).
# Outputs: target/realkernel/<id>/{initramfs.cpio.gz,console.log,results/,check.txt},
# the lockdown boot in target/realkernel/lockdown-<kernel id>/, the static boot in
# target/realkernel/static-<kernel id>/.
# Never skips: a missing synq, a boot failure, a timeout or any mismatch fails.
set -euo pipefail

# shellcheck source=tests/realkernel/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

lockdown_kernel=${SYNQ_LOCKDOWN_KERNEL:-6.1}
static_kernel=${SYNQ_STATIC_KERNEL:-6.12}
if [[ " ${ALL_KERNELS[*]} " != *" $static_kernel "* ]]; then
  echo "SYNQ_STATIC_KERNEL=$static_kernel is not a known kernel id (${ALL_KERNELS[*]})" >&2
  exit 2
fi
if [[ " ${ALL_KERNELS[*]} " != *" $lockdown_kernel "* ]]; then
  echo "SYNQ_LOCKDOWN_KERNEL=$lockdown_kernel is not a known kernel id (${ALL_KERNELS[*]})" >&2
  exit 2
fi

# "all" (or nothing) = every kernel + the lockdown boot; "lockdown" = that boot.
want_lockdown=0
want_static=0
kargs=()
[[ $# -gt 0 ]] || set -- all
for a in "$@"; do
  case $a in
    all) kargs+=(all); want_lockdown=1; want_static=1 ;;
    lockdown) want_lockdown=1 ;;
    static) want_static=1 ;;
    *) kargs+=("$a") ;;
  esac
done
ids=()
# arm64 ids (and the alias "arm64") are known here too; "all" stays the x86_64 kernels.
RK_ARM64=1
if [[ ${#kargs[@]} -gt 0 ]]; then
  if ! known=$(rk_kernel_ids "${kargs[@]}"); then
    echo "run.sh: ids are kernel ids, 'all', 'arm64', 'lockdown' or 'static'" >&2
    exit 2
  fi
  mapfile -t ids < <(awk '!seen[$0]++' <<<"$known")
fi
fetch_ids=("${ids[@]}")
[[ $want_lockdown -eq 0 ]] || fetch_ids+=("$lockdown_kernel")
[[ $want_static -eq 0 ]] || fetch_ids+=("$static_kernel")

t0=$SECONDS
"$REALKERNEL_DIR/setup-host.sh"
mapfile -t fetch_ids < <(printf '%s\n' "${fetch_ids[@]}" | awk '!seen[$0]++')
"$REALKERNEL_DIR/fetch-kernels.sh" "${fetch_ids[@]}" >/dev/null
rk_log "host ready in $((SECONDS - t0))s"

is_arm64() { [[ $1 == arm64-* ]]; }
n_x86=$((want_lockdown + want_static))
n_arm64=0
for id in "${ids[@]}"; do
  if is_arm64 "$id"; then n_arm64=$((n_arm64 + 1)); else n_x86=$((n_x86 + 1)); fi
done

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$REPO_ROOT/$synq_bin
if [[ $n_x86 -gt 0 && ! -x $synq_bin ]]; then
  # Not a skip: the guests still run (ground truth is checked) and check.py fails.
  rk_log "WARNING: $synq_bin does not exist; every kernel will FAIL (build it: cargo build --release)"
fi
# The arm64 guests' synq: an aarch64 program, built once for the run (never the host's SYNQ_BIN).
arm64_bin=
if [[ $n_arm64 -gt 0 ]]; then
  arm64_bin=${SYNQ_ARM64_BIN:-}
  if [[ -z $arm64_bin ]]; then
    t1=$SECONDS
    if arm64_bin=$(nice -n 10 "$REALKERNEL_DIR/build-arm64-synq.sh" | tail -n 1) && [[ -n $arm64_bin ]]; then
      rk_log "aarch64 synq: $arm64_bin (build-arm64-synq.sh, $((SECONDS - t1))s)"
    else
      rk_log "WARNING: build-arm64-synq.sh failed after $((SECONDS - t1))s; every arm64 kernel will FAIL"
      arm64_bin=/nonexistent/aarch64-synq
    fi
  fi
fi

passed=0
failed=0
failed_ids=()
# Initramfs built in this run, per kernel id (the lockdown boot reuses it).
declare -A initramfs_of=()

# Seconds a guest may run: arm64 guests under TCG are several times slower than x86_64 ones.
vm_timeout() {
  if is_arm64 "$1"; then echo "${SYNQ_ARM64_VM_TIMEOUT:-1200}"; else echo "${SYNQ_VM_TIMEOUT:-300}"; fi
}

# run_entry NAME KERNEL_ID APPEND: builds (or reuses) the initramfs, boots,
# runs check.py and its selftest (check.py knows the mode from the results).
run_entry() {
  local name=$1 kid=$2 append=$3
  local out=$REPO_ROOT/target/realkernel/$name t1=$SECONDS ok=1
  mkdir -p "$out"
  if [[ -n ${initramfs_of[$kid]:-} && ${initramfs_of[$kid]} != "$out/initramfs.cpio.gz" ]]; then
    cp "${initramfs_of[$kid]}" "$out/initramfs.cpio.gz"
  elif SYNQ_BIN=$synq_bin SYNQ_ARM64_BIN=$(is_arm64 "$kid" && echo "$arm64_bin") \
      "$REALKERNEL_DIR/build-initramfs.sh" "$kid" "$out/initramfs.cpio.gz"; then
    initramfs_of[$kid]=$out/initramfs.cpio.gz
  else
    rk_log "$name: FAIL: building the initramfs failed"
    ok=0
  fi
  if [[ $ok -eq 0 ]]; then
    :
  elif ! rk_boot "$kid" "$out" 512 "$(vm_timeout "$kid")" "$append" "$name"; then
    ok=0
  elif ! python3 "$REALKERNEL_DIR/check.py" "$out/results" >"$out/check.txt" 2>&1; then
    cat "$out/check.txt"
    rk_log "$name: FAIL: synq disagrees with the ground truth or a required failure did not happen (details above, and in $out/check.txt)"
    ok=0
  elif ! python3 "$REALKERNEL_DIR/check.py" --selftest "$out/results" >>"$out/check.txt" 2>&1; then
    # Negative control: planted defects in copies of synq's output must fail.
    tail -n 5 "$out/check.txt"
    rk_log "$name: FAIL: check.py did not catch planted defects (the comparison is broken)"
    ok=0
  else
    grep -E '^(info|check|selftest):' "$out/check.txt"
  fi
  if [[ $ok -eq 1 ]]; then
    passed=$((passed + 1))
    rk_log "$name: PASS in $((SECONDS - t1))s"
  else
    failed=$((failed + 1))
    failed_ids+=("$name")
    rk_log "$name: FAIL after $((SECONDS - t1))s"
  fi
}

# The kernel of $SYNQ_INTEGRITY_KERNEL (6.12 by default) runs its whole test under lockdown=integrity, the
# setting synq is for: modules and BPF are forbidden there, /proc/kcore is not. check.py asserts the mode.
integrity_kernel=${SYNQ_INTEGRITY_KERNEL:-6.12}
for id in "${ids[@]}"; do
  extra=${SYNQ_EXTRA_APPEND:-}
  [[ $id != "$integrity_kernel" || $extra == *lockdown=* ]] || extra="lockdown=integrity $extra"
  run_entry "$id" "$id" "synq.mode=test $extra"
done
if [[ $want_lockdown -eq 1 ]]; then
  run_entry "lockdown-$lockdown_kernel" "$lockdown_kernel" "synq.mode=lockdown lockdown=confidentiality"
fi
# The static synq (packaging/build-static.sh: glibc static-pie) in a guest with no libc, no loader and no ss.
# Its own initramfs: the kernel's cached one (with libraries) must not be reused, nor this one afterwards.
if [[ $want_static -eq 1 ]]; then
  static_bin=${SYNQ_STATIC_BIN:-}
  if [[ -z $static_bin ]]; then
    # Builds it, or only checks that it is current (cargo), in its own target directory.
    static_bin=$("$REPO_ROOT/packaging/build-static.sh" | tail -n 1) || static_bin=
    [[ -n $static_bin ]] || rk_log "static-$static_kernel: packaging/build-static.sh failed; the entry will FAIL"
  fi
  unset "initramfs_of[$static_kernel]"
  SYNQ_STATIC_BIN=${static_bin:-/nonexistent/static-synq} \
    run_entry "static-$static_kernel" "$static_kernel" "synq.mode=static"
  unset "initramfs_of[$static_kernel]"
fi

rk_log "total $((SECONDS - t0))s"
echo "realkernel: $passed passed, $failed failed"
if [[ $failed -gt 0 ]]; then
  echo "realkernel: FAILED: ${failed_ids[*]}" >&2
  exit 1
fi
