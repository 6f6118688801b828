#!/usr/bin/env bash
# Builds a statically linked aarch64 (arm64) synq on this x86_64 Debian host, for the arm64 guests (busybox
# initramfs, no shared libraries). Prints the path of the binary on stdout; everything else goes to stderr.
#
# rustup's toolchains here are x86_64 only (no aarch64 rust-std, no rust-src) and rustup's server is out of
# reach, so the cross compiler comes from Debian: a chroot of a Debian suite (debootstrap from the machine's
# own mirror) with Debian's rustc and cargo, the arm64 standard library libstd-rust-dev:arm64 (multiarch;
# Multi-Arch: same, so apt installs exactly the version of the chroot's rustc), gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross (libc.a etc. for +crt-static). In it:
#   cargo build --release --locked --target aarch64-unknown-linux-gnu --bin synq
# with -C target-feature=+crt-static (target artifacts only: build scripts and proc macros stay x86_64) and
# aarch64-linux-gnu-gcc as linker and as the C compiler of zstd-sys.
#
# Suites are tried in order (SYNQ_ARM64_SUITES, default "sid"), the one of a cached chroot first: a suite whose
# rustc is too old (older than a rust-version in Cargo.toml or Cargo.lock, or a language feature still
# unstable in it, rustc's E0658) is left for the next one, and the reason is logged. Default sid because
# trixie's rustc (1.85.1) cannot build synq: synq's source uses let chains (`if let .. && let ..`), stable
# only since Rust 1.88, although Cargo.toml says rust-version 1.85.
#
# Everything lives under ${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}:
#   arm64-rust-chroot/          the chroot; arm64-rust-chroot/.synq-chroot stamps a finished one (suite,
#                               recipe, rustc version). Made once, then reused as it is (no upgrades).
#   arm64-rust-cargo/           CARGO_HOME inside the chroot (the crates.io registry and downloads)
#   arm64-rust-target/TREE/     CARGO_TARGET_DIR (/synq/target) inside the chroot, one per source tree
#                               (TREE: the tree's name and a hash of its path), for incremental rebuilds
#   arm64-rust-build.log        the last run's log (debootstrap, apt, cargo)
#   arm64-rust.lock             serializes concurrent runs
# The repository is bind-mounted read-only into the chroot at its own path, in a private mount namespace
# (unshare -m), as are /proc and the two cache directories: every mount ends with the run, whatever happens,
# and nothing is ever left mounted on the host. The host itself is not changed (debootstrap must be
# installed: setup-host.sh does it). The chroot trusts the host's CA bundle (copied in at each run) and, as
# the mirror may be a frozen snapshot, apt there does not check Release files' Valid-Until (signatures are
# checked). After a build, the binary is checked with the chroot's aarch64 readelf (AArch64, no interpreter,
# no NEEDED) and, when the host has qemu-aarch64-static, run with --version.
#
# Usage: build-arm64-synq.sh [-o OUT]
#   -o OUT   where the binary is copied (default: <repo>/target/aarch64-unknown-linux-gnu/release/synq)
# Env: SYNQ_TOOLS_CACHE; SYNQ_ARM64_SUITES (default "sid"; e.g. "trixie sid"); SYNQ_ARM64_OUT (as -o);
#      SYNQ_ARM64_SRC (the source tree to build, default this repository; the default OUT is under it);
#      SYNQ_ARM64_JOBS (cargo -j, default 2); SYNQ_ARM64_REBUILD_CHROOT=1 (make the chroot anew).
# Root (debootstrap, chroot, mounts). Idempotent: with the chroot made and nothing changed, a run is a no-op
# cargo build and a copy. Exit status non-zero, with the reason on stderr, when no suite can build synq.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "${SYNQ_ARM64_SRC:-$HERE/../..}" && pwd)
SELF=$HERE/$(basename "${BASH_SOURCE[0]}")
TRIPLE=aarch64-unknown-linux-gnu
CACHE=${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}
CHROOT=$CACHE/arm64-rust-chroot
CARGO_CACHE=$CACHE/arm64-rust-cargo
TARGET_CACHE=$CACHE/arm64-rust-target
# One target directory per source tree (named after its path): the tree is mounted at its own path and cargo's
# mtime fingerprints would otherwise take another tree's fresh artifacts for this one's.
TREE_KEY=$(basename "$REPO" | tr -c 'A-Za-z0-9._\n-' _)-$(printf '%s' "$REPO" | sha256sum | cut -c 1-12)
TARGET_DIR=$TARGET_CACHE/$TREE_KEY
LOG=$CACHE/arm64-rust-build.log
STAMP=.synq-chroot
# Bumped when the way the chroot is made changes (packages, sources): an older chroot is made anew.
RECIPE=2
PACKAGES=(rustc cargo "libstd-rust-dev:arm64" gcc-aarch64-linux-gnu libc6-dev-arm64-cross ca-certificates)
# What cargo and rustc say when the compiler is too old for the source or a dependency.
TOO_OLD='requires rustc [0-9.]+|is not supported by the following package|feature .* is required|error\[E0658\]'
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "build-arm64-synq: ERROR: $*" >&2; exit 1; }
log() { echo "build-arm64-synq: $*" >&2; }
now_ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# ---------------------------------------------------------------------------------------------------------
# Inside the private mount namespace (the script re-executes itself under unshare -m): mounts, then runs the
# given command in the chroot. Mounts vanish with the namespace.
# Arguments: __in_namespace CHROOT COMMAND...
if [[ ${1:-} == __in_namespace ]]; then
  CHROOT=$2
  shift 2
  mount -t proc proc "$CHROOT/proc"
  # debootstrap's minbase makes the device nodes it needs; bind the host's /dev only when it did not.
  if [[ ! -c $CHROOT/dev/null ]]; then
    mount --rbind /dev "$CHROOT/dev"
  fi
  mkdir -p "$CHROOT$REPO" "$CHROOT/synq/cargo" "$CHROOT/synq/target" "$TARGET_DIR"
  mount --bind "$REPO" "$CHROOT$REPO"
  mount -o remount,bind,ro "$CHROOT$REPO"
  mount --bind "$CARGO_CACHE" "$CHROOT/synq/cargo"
  mount --bind "$TARGET_DIR" "$CHROOT/synq/target"
  exec chroot "$CHROOT" "$@"
fi

# The command line for the chroot: a clean environment (the host's proxies passed on when set), the host's
# CA bundle (the chroot's own ca-certificates does not know CAs that the host added locally), nice.
in_chroot() {
  local envs=(PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
  local v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n ${!v:-} ]] && envs+=("$v=${!v}")
  done
  unshare --mount --propagation private -- "$SELF" __in_namespace "$CHROOT" \
    /usr/bin/env -i "${envs[@]}" "$@"
}

# Refreshes what the chroot takes from the host on every run: DNS and the CA bundle.
# rm first: a symlink there (say to /run/...) must not make cp write through it onto a host file.
sync_host_files() {
  rm -f "$CHROOT/etc/resolv.conf" "$CHROOT/etc/ssl/host-ca-certificates.crt"
  cp -L /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
  if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$CHROOT/etc/ssl"
    cp -L /etc/ssl/certs/ca-certificates.crt "$CHROOT/etc/ssl/host-ca-certificates.crt"
  fi
}

mounted_under() { awk -v r="$1" 'index($2, r) == 1 { print $2 }' /proc/mounts; }

remove_chroot() {
  local dir=$1
  [[ -e $dir ]] || return 0
  [[ -z $(mounted_under "$dir") ]] || die "something is still mounted under $dir: $(mounted_under "$dir" | tr '\n' ' ')"
  rm -rf --one-file-system "$dir"
}

# The Debian main-archive URI of the machine's apt sources (aptlib.sh's mirror_uri: deb822 *.sources, else
# sources.list), so no host name is written here.
# shellcheck source=tests/realkernel/aptlib.sh
. "$HERE/aptlib.sh"

# make_chroot SUITE: debootstrap SUITE into CHROOT.new, add arm64, install PACKAGES, stamp, rename.
make_chroot() {
  local suite=$1 uri new=$CHROOT.new t
  uri=$(mirror_uri)
  t=$(now_ms)
  remove_chroot "$new"
  log "$suite: debootstrap (minbase) from $uri into $CHROOT (~2 min)"
  # Under unshare -m too: whatever debootstrap mounts while it configures packages ends with it.
  if ! nice -n 10 unshare --mount --propagation private -- \
      debootstrap --variant=minbase --components=main --keyring="$KEYRING" --include=ca-certificates \
      "$suite" "$new" "$uri" >>"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    remove_chroot "$new"
    die "$suite: debootstrap failed (log: $LOG): $(grep -m 1 -E '^E:' "$LOG" || tail -n 1 "$LOG")"
  fi
  log "$suite: debootstrap done in $(secs "$t" "$(now_ms)")s"
  # Only the suite's main component, for both architectures (rustc:amd64 and libstd-rust-dev:arm64 must be
  # the same version, which one suite guarantees).
  rm -f "$new/etc/apt/sources.list"
  cat >"$new/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # No Translations, no recommends. Check-Valid-Until off: the machine's mirror may be a frozen snapshot, whose
  # sid Release (valid a week) has expired; the signature is still checked.
  cat >"$new/etc/apt/apt.conf.d/90synq" <<'EOF'
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
  local oldchroot=$CHROOT
  CHROOT=$new
  sync_host_files
  t=$(now_ms)
  log "$suite: dpkg --add-architecture arm64; apt-get install ${PACKAGES[*]}"
  if ! in_chroot /bin/sh -c 'dpkg --add-architecture arm64 && apt-get -q update && apt-get -q -y install "$@"' sh \
      "${PACKAGES[@]}" >>"$LOG" 2>&1; then
    CHROOT=$oldchroot
    tail -n 20 "$LOG" >&2
    remove_chroot "$new"
    die "$suite: installing ${PACKAGES[*]} in the chroot failed (log: $LOG): $(grep -m 1 -E '^E:' "$LOG" || tail -n 1 "$LOG")"
  fi
  local rustc_v std_v
  # shellcheck disable=SC2016 # dpkg-query's format, not a shell expansion
  rustc_v=$(in_chroot dpkg-query -W -f='${Version}' rustc:amd64 2>>"$LOG")
  # shellcheck disable=SC2016
  std_v=$(in_chroot dpkg-query -W -f='${Version}' libstd-rust-dev:arm64 2>>"$LOG")
  CHROOT=$oldchroot
  if [[ $rustc_v != "$std_v" ]]; then
    remove_chroot "$new"
    die "$suite: rustc $rustc_v and libstd-rust-dev:arm64 $std_v differ"
  fi
  log "$suite: packages installed in $(secs "$t" "$(now_ms)")s (rustc $rustc_v, $(du -sm "$new" | cut -f1) MB)"
  printf 'suite=%s\nrecipe=%s\nrustc=%s\n' "$suite" "$RECIPE" "$rustc_v" >"$new/$STAMP"
  remove_chroot "$CHROOT"
  mv "$new" "$CHROOT"
}

stamp_get() { sed -n "s/^$1=//p" "$CHROOT/$STAMP" 2>/dev/null || true; }

# ensure_chroot SUITE: reuses a finished chroot of SUITE and RECIPE, else makes it.
ensure_chroot() {
  local suite=$1
  if [[ ${SYNQ_ARM64_REBUILD_CHROOT:-0} != 1 && $(stamp_get suite) == "$suite" && $(stamp_get recipe) == "$RECIPE" ]]; then
    log "$suite: chroot cached ($CHROOT, rustc $(stamp_get rustc))"
    return 0
  fi
  make_chroot "$suite"
  SYNQ_ARM64_REBUILD_CHROOT=0
}

# cargo_build: 0 built, 1 failed, 2 failed because the rustc is too old (the next suite may do).
cargo_build() {
  local t rc=0 blog=$CACHE/arm64-rust-cargo.log
  sync_host_files
  t=$(now_ms)
  log "cargo build --release --locked --target $TRIPLE --bin synq ($(in_chroot rustc --version 2>/dev/null))"
  # env -i takes every NAME=VALUE before the command: these add to in_chroot's clean environment.
  in_chroot \
    CARGO_HOME=/synq/cargo CARGO_TARGET_DIR=/synq/target CARGO_TERM_COLOR=never \
    CARGO_HTTP_CAINFO=/etc/ssl/host-ca-certificates.crt SSL_CERT_FILE=/etc/ssl/host-ca-certificates.crt \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    nice -n 10 cargo build --release --locked --target "$TRIPLE" --bin synq \
    --manifest-path "$REPO/Cargo.toml" -j "${SYNQ_ARM64_JOBS:-2}" >"$blog" 2>&1 || rc=$?
  cat "$blog" >>"$LOG"
  if [[ $rc -ne 0 ]]; then
    tail -n 30 "$blog" >&2
    if grep -qE "$TOO_OLD" "$blog"; then
      return 2
    fi
    return 1
  fi
  log "cargo build done in $(secs "$t" "$(now_ms)")s"
}

# check_binary: an aarch64 ELF without an interpreter and without NEEDED libraries (readelf of the chroot's
# cross binutils, so the host needs none).
check_binary() {
  local bin=/synq/target/$TRIPLE/release/synq hdr
  hdr=$(in_chroot aarch64-linux-gnu-readelf -h -l -d "$bin" 2>&1) || die "readelf of the built binary failed: $hdr"
  grep -qE 'Machine:[[:space:]]+AArch64' <<<"$hdr" || die "the built binary is not an AArch64 ELF: $(grep -m 1 Machine: <<<"$hdr")"
  ! grep -q 'INTERP' <<<"$hdr" || die "the built binary is dynamically linked (it has an ELF interpreter): +crt-static did not apply"
  ! grep -q '(NEEDED)' <<<"$hdr" || die "the built binary needs shared libraries: $(grep '(NEEDED)' <<<"$hdr" | tr -s ' ' | tr '\n' ' ')"
}

OUT=${SYNQ_ARM64_OUT:-$REPO/target/$TRIPLE/release/synq}
while getopts 'o:h' opt; do
  case $opt in
    o) OUT=$OPTARG ;;
    h) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "usage: $0 [-o OUT]" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || die "unexpected arguments: $* (usage: $0 [-o OUT])"

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap, or run setup-host.sh)"
command -v unshare >/dev/null || die "unshare (util-linux) missing"
[[ -f $REPO/Cargo.toml && -f $REPO/Cargo.lock ]] || die "no Cargo.toml and Cargo.lock in $REPO"
case $REPO in
  / | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /synq | /synq/* | "$CACHE" | "$CACHE"/*)
    die "the source tree $REPO cannot be mounted at its own path inside the chroot" ;;
esac
[[ $(uname -m) == x86_64 ]] || die "this script makes an x86_64 (amd64) chroot; this machine is $(uname -m)"

mkdir -p "$CACHE" "$CARGO_CACHE" "$TARGET_DIR"
exec 9>"$CACHE/arm64-rust.lock"
if ! flock -n 9; then
  log "another build-arm64-synq.sh is running; waiting for it"
  flock 9
fi
: >"$LOG"

read -r -a wanted <<<"${SYNQ_ARM64_SUITES:-sid}"
[[ ${#wanted[@]} -gt 0 ]] || die "SYNQ_ARM64_SUITES is empty"
# The cached chroot's suite first (an earlier run fell through to it), then the others in order.
cached=$(stamp_get suite)
suites=()
for s in "${wanted[@]}"; do [[ $s == "$cached" ]] && suites+=("$s"); done
for s in "${wanted[@]}"; do [[ $s == "$cached" ]] || suites+=("$s"); done
t0=$(now_ms)
built=
reasons=()
for suite in "${suites[@]}"; do
  ensure_chroot "$suite"
  rc=0
  cargo_build || rc=$?
  if [[ $rc -eq 0 ]]; then
    built=$suite
    break
  fi
  why=$( (grep -m 1 -A 1 -E "$TOO_OLD" "$CACHE/arm64-rust-cargo.log" || grep -m 1 -A 1 -E '^error' "$CACHE/arm64-rust-cargo.log" \
    || tail -n 1 "$CACHE/arm64-rust-cargo.log") | tr -s ' \n' ' ')
  reasons+=("$suite (rustc $(stamp_get rustc)): $why")
  if [[ $rc -eq 2 ]]; then
    log "$suite: its rustc $(stamp_get rustc) is too old for synq or a crate of Cargo.lock: $why"
    continue
  fi
  die "cargo build in the $suite chroot failed (log: $LOG): $why"
done
[[ -n $built ]] || die "no suite's rustc can build synq: $(printf '%s; ' "${reasons[@]}")(log: $LOG)"
check_binary

src=$TARGET_DIR/$TRIPLE/release/synq
mkdir -p "$(dirname "$OUT")"
cp "$src" "$OUT.tmp.$$"
mv -f "$OUT.tmp.$$" "$OUT"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
log "built with $built's rustc $(stamp_get rustc): $OUT ($(stat -c %s "$OUT") bytes, static aarch64) in $(secs "$t0" "$(now_ms)")s"
# A smoke run when the host can run arm64 binaries (Debian's qemu-user-static); optional.
if command -v qemu-aarch64-static >/dev/null; then
  if v=$(qemu-aarch64-static "$OUT" --version 2>&1); then
    log "qemu-aarch64-static: $v"
  else
    die "the built binary does not run under qemu-aarch64-static: $v"
  fi
fi
echo "$OUT"
