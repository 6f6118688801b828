#!/bin/bash
# Builds the Debian package of synq with cargo-deb ([package.metadata.deb] in Cargo.toml):
#
#   packaging/build-deb.sh             # the usual release binary (dynamic, Depends: libc6 from $auto)
#   packaging/build-deb.sh --static    # the static-pie binary of build-static.sh (Depends: nothing)
#
# Installs what it needs (cargo-deb, dpkg-dev, groff-base) when missing; builds in its own target directory
# (target/deb, or target/static with --static; CARGO_TARGET_DIR overrides), so a developer's target/release
# is left alone. Generates the man page and completions (gen-assets.sh) next to the binary, packs, checks the
# package (its file list, and the binary run from a scratch unpack) and prints the .deb's path as the last
# line of stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
triple=x86_64-unknown-linux-gnu
die() { echo "build-deb: $*" >&2; exit 1; }

static=0
case ${1:-} in
    "") ;;
    --static) static=1 ;;
    *) die "usage: build-deb.sh [--static]" ;;
esac

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), then run this again"

apt_install() {
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || die "missing $*: install it (apt-get install $*) and run this again"
    echo "build-deb: installing $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; } ||
        die "could not install $*: install it and run this again"
}
# dpkg-shlibdeps (dpkg-dev) gives the exact Depends of a dynamic binary; dpkg-deb checks the result.
command -v dpkg-shlibdeps >/dev/null || apt_install dpkg-dev
command -v dpkg-deb >/dev/null || apt_install dpkg
if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb (cargo install cargo-deb --locked; a few minutes)" >&2
    cargo install cargo-deb --locked >&2 || die "cargo install cargo-deb failed (see above)"
fi

if [[ $static -eq 1 ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/static}
    bin=$("$here/build-static.sh" | tail -n 1) || die "build-static.sh failed (see above)"
    outdir=$CARGO_TARGET_DIR/$triple/release
    deb_args=(--target "$triple")
else
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/deb}
    cargo build --manifest-path "$root/Cargo.toml" --release --locked --bin synq >&2 || die "cargo build failed (see above)"
    outdir=$CARGO_TARGET_DIR/release
    bin=$outdir/synq
    deb_args=()
fi
[[ -x $bin ]] || die "no binary at $bin"

# Cargo.toml names them target/release/assets/...: cargo-deb maps target/release to $outdir.
rm -rf "$outdir/assets"
"$here/gen-assets.sh" "$outdir/assets" "$bin"
# Debian wants a changelog in every package: one entry for this version, dated by the last commit (so the
# package is the same when rebuilt from the same tree), else now.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[[ -n $version ]] || die "no version in $root/Cargo.toml"
when=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
maint=$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
printf 'synq (%s-1) unstable; urgency=medium\n\n  * Upstream release %s.\n\n -- %s  %s\n' \
    "$version" "$version" "$maint" "$(LC_ALL=C date -u -R -d "@$when")" >"$outdir/assets/changelog.Debian"
gzip -9nc "$outdir/assets/changelog.Debian" >"$outdir/assets/changelog.Debian.gz"

out=$(cd "$root" && cargo deb --no-build "${deb_args[@]}" 2>&2 | tail -n 1) || die "cargo deb failed (see above)"
[[ -f $out ]] || die "cargo deb printed '$out', which is not a file"
if [[ $static -eq 1 ]]; then
    # cargo-deb writes "Depends:" empty when $auto finds no library (a static binary); Debian wants no field.
    repack=$(mktemp -d "${TMPDIR:-/tmp}/synq-deb-repack.XXXXXX")
    dpkg-deb -R "$out" "$repack/root"
    sed -i '/^Depends: *$/d' "$repack/root/DEBIAN/control"
    dpkg-deb -Zxz --root-owner-group -b "$repack/root" "$out" >/dev/null || die "repacking $out failed"
    rm -rf "$repack"
fi

# The package must hold every installed path, and its binary must run from a plain unpack.
listing=$(dpkg-deb -c "$out") || die "dpkg-deb -c $out failed"
for p in ./usr/bin/synq ./usr/share/man/man1/synq.1.gz ./usr/share/bash-completion/completions/synq \
    ./usr/share/zsh/vendor-completions/_synq ./usr/share/fish/vendor_completions.d/synq.fish \
    ./usr/lib/systemd/system/synq-serve.service ./usr/share/doc/synq/README.md ./usr/share/doc/synq/copyright \
    ./usr/share/doc/synq/changelog.Debian.gz; do
    grep -q " $p\$" <<<"$listing" || die "$out lacks $p; it holds: $listing"
done
dpkg-deb -I "$out" >/dev/null || die "dpkg-deb -I $out failed"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/synq-deb.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -x "$out" "$scratch"
ran=$("$scratch/usr/bin/synq" --version) || die "the packaged /usr/bin/synq does not run"
# Enabling or starting the exporter is the administrator's choice: no maintainer script may do it.
dpkg-deb -e "$out" "$scratch/DEBIAN"
# (cargo-deb's enable = false, start = false: only a unit the administrator enabled is re-enabled, and only
# a running one restarted, on upgrade.)
postinst=$scratch/DEBIAN/postinst
if grep -Eqs 'deb-systemd-invoke (start|restart|\$_dh_action) ' "$postinst"; then
    die "$out's postinst starts synq-serve.service (want start = false in [package.metadata.deb])"
fi
if grep -qs 'deb-systemd-helper enable' "$postinst" && ! grep -qs 'was-enabled' "$postinst"; then
    die "$out's postinst enables synq-serve.service (want enable = false in [package.metadata.deb])"
fi

echo "build-deb: $out ($(stat -c %s "$out") bytes; $ran; $(grep -c . <<<"$listing") entries)" >&2
echo "$out"
