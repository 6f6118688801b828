#!/usr/bin/env bash
# Every test synq has, in the order a failure is cheapest to find: format, lints, unit, layout-oracle,
# synthetic-image and error tests, then the real kernels (5.10, 6.1, 6.12 under QEMU TCG): crash dumps of
# them read on the host (also one made without VMCOREINFO; 6.12's also damaged and mutated), crash dumps of
# Debian's arm64 kernels (6.1, 6.12, 16K-page 7.2 under qemu-system-aarch64) read on the host, memory snapshots
# they take of themselves (AVML, LiME) read on the host, a churn soak of synq live in 6.12, and synq live
# inside each of them.
# Needs root on a Debian 12 machine (it installs QEMU and fetches Debian kernels). This is what .ci/run runs
# and what the README gives as the test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { echo "=== $* ($(date +%H:%M:%S))"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets"
cargo clippy --all-targets --quiet -- -D warnings
step "guard: a panic = \"abort\" build must be refused (catch_unwind contains dependency panics)"
if out=$(CARGO_TARGET_DIR=target/panic-abort-check RUSTFLAGS="-C panic=abort" cargo check --lib --quiet 2>&1); then
  echo "a panic=abort build of synq succeeded: the compile-time guard in src/lib.rs is gone" >&2
  exit 1
elif ! grep -q 'must be built with panic = "unwind"' <<<"$out"; then
  echo "$out" >&2
  echo "the panic=abort build failed, but not on synq's guard" >&2
  exit 1
fi
step "cargo build --release"
cargo build --release --quiet
step "man page and completions from the CLI (packaging/gen-assets.sh: no groff warning), and man -l renders it"
packaging/gen-assets.sh target/assets target/release/synq
if ! command -v man >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends man-db </dev/null >/dev/null
fi
man_out=$(MANWIDTH=100 man --warnings -l target/assets/synq.1 2>&1)
for want in "synq serve" "SYNQ_TIMING" "--prometheus" "EXAMPLES"; do
  grep -qF -- "$want" <<<"$man_out" || { echo "man -l target/assets/synq.1 lacks '$want'" >&2; exit 1; }
done
step "cargo test (unit, layouts vs layouts.json, synthetic images, dumps and snapshots, errors)"
cargo test --quiet --lib --bins --tests
step "crash dumps of real kernels (QMP, ELF and kdump-zlib; 6.1 also without VMCOREINFO): synq --core against the guest's ground truth"
tests/realkernel/dump.sh all
step "arm64 crash dumps read on this x86_64 host (Debian arm64 6.1, 6.12, unstable's 16K-page 7.2 under qemu-system-aarch64; 6.1 also without VMCOREINFO): synq --core against the guest's ground truth"
SYNQ_NOVMCI_KERNELS=arm64-6.1 tests/realkernel/dump.sh arm64
step "memory snapshots the real kernels take of themselves (AVML plain and compressed, LiME lime and padded): synq --core against the guest's ground truth"
tests/realkernel/snapshot.sh all
step "churn soak: synq --json 200 times live in 6.12 while listeners open and close 3,000 times a second in two namespaces"
tests/realkernel/soak.sh 6.12 200
step "real kernels under QEMU: ground truth from the guest's /proc/net/tcp{,6}"
# Its last line, "realkernel: N passed, M failed", closes the run.
tests/realkernel/run.sh all
