#!/bin/bash
# Builds a fully static synq (glibc, +crt-static, static-pie) into its own target directory, checks that it
# is static, and prints its path and size. No libc, no ld.so is needed to run it.
#
#   packaging/build-static.sh            # -> target/static/x86_64-unknown-linux-gnu/release/synq
#   CARGO_TARGET_DIR=/tmp/t packaging/build-static.sh
#
# The last line of stdout is the binary's path (for scripts: `bin=$(packaging/build-static.sh | tail -1)`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
triple=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/static}

die() { echo "build-static: $*" >&2; exit 1; }

[[ $(uname -m) == x86_64 ]] || die "this script builds for $triple; run it on an x86_64 host"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), then run this again"

# gcc links the static-pie (and builds the C of zstd-sys/lzo); libc6-dev has libc.a; file checks the result.
missing=()
command -v cc >/dev/null || missing+=(gcc)
[[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "build-static: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } ||
            die "could not install ${missing[*]}: install them and run this again"
    else
        die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) and run this again"
    fi
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple" >&2 || die "rustup target add $triple failed"
fi

# --target makes RUSTFLAGS apply to the target only (build scripts and proc macros stay dynamic), and puts
# the binary under $CARGO_TARGET_DIR/$triple/release.
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --manifest-path "$root/Cargo.toml" --release --locked --target "$triple" --bin synq >&2 ||
    die "cargo build failed (see above)"

bin=$CARGO_TARGET_DIR/$triple/release/synq
[[ -x $bin ]] || die "no binary at $bin after the build"

desc=$(file -b "$bin")
case $desc in
    *"static-pie linked"* | *"statically linked"*) ;;
    *) die "$bin is not static: file says: $desc" ;;
esac
if ldd_out=$(ldd "$bin" 2>&1); then
    case $ldd_out in
        *"statically linked"* | *"not a dynamic executable"*) ;;
        *) die "$bin is not static: ldd says: $ldd_out" ;;
    esac
fi
if readelf -d "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$bin has NEEDED entries: $(readelf -d "$bin" | grep '(NEEDED)' | tr -s ' ')"
fi
"$bin" --version >/dev/null || die "$bin does not run"

size=$(stat -c %s "$bin")
echo "build-static: $desc" >&2
echo "build-static: $bin ($size bytes, $(numfmt --to=iec "$size"))" >&2
echo "$bin"
