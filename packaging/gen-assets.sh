#!/bin/bash
# Generates what a package installs besides the binary, from the binary itself (clap is the one source):
#
#   packaging/gen-assets.sh OUTDIR [SYNQ_BINARY]
#
# OUTDIR/synq.1 (roff) and synq.1.gz (gzip -9n, as Debian wants), OUTDIR/completions/{synq.bash,_synq,synq.fish}.
# SYNQ_BINARY defaults to $SYNQ_BIN, else target/release/synq; if that is missing too, a release build in
# target/deb (never in a developer's target/release).
# The man page is rendered once with groff's warnings on; any warning fails the script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
die() { echo "gen-assets: $*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: gen-assets.sh OUTDIR [SYNQ_BINARY]"
out=$1
bin=${2:-${SYNQ_BIN:-$root/target/release/synq}}
if [[ ! -x $bin ]]; then
    [[ -z ${2:-}${SYNQ_BIN:-} ]] || die "no executable synq at $bin: build it (cargo build --release) or name another"
    bin=$root/target/deb/release/synq
    echo "gen-assets: no target/release/synq; building $bin" >&2
    CARGO_TARGET_DIR=$root/target/deb cargo build --manifest-path "$root/Cargo.toml" --release --locked --bin synq >&2 ||
        die "cargo build failed"
fi

# groff renders the man page for the check (man-db's `man -l` uses it too).
if ! command -v groff >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q groff-base >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q groff-base >&2; } ||
            die "could not install groff-base: install it and run this again"
    else
        die "groff missing: apt-get install groff-base, then run this again"
    fi
fi

mkdir -p "$out/completions"
"$bin" manpage >"$out/synq.1.tmp" || die "$bin manpage failed"
[[ -s $out/synq.1.tmp ]] || die "$bin manpage printed nothing"
mv "$out/synq.1.tmp" "$out/synq.1"
# -n: no name or time stamp in the header, so the .gz is reproducible.
gzip -9nc "$out/synq.1" >"$out/synq.1.gz"

"$bin" completions bash >"$out/completions/synq.bash" || die "$bin completions bash failed"
"$bin" completions zsh >"$out/completions/_synq" || die "$bin completions zsh failed"
"$bin" completions fish >"$out/completions/synq.fish" || die "$bin completions fish failed"
for f in synq.bash _synq synq.fish; do
    [[ -s $out/completions/$f ]] || die "$bin completions printed nothing for $f"
done
if command -v bash >/dev/null; then
    bash -n "$out/completions/synq.bash" || die "the bash completion script does not parse"
fi

# Render check: groff with every warning (-ww) and -z (no output); anything on stderr is a defect.
warn=$(groff -man -Tutf8 -ww -z "$out/synq.1" 2>&1 >/dev/null) || die "groff failed on $out/synq.1: $warn"
[[ -z $warn ]] || die "groff warns about $out/synq.1 (fix the clap text in src/cli.rs): $warn"
lines=$(groff -man -Tutf8 "$out/synq.1" 2>/dev/null | wc -l)
((lines > 20)) || die "$out/synq.1 renders to only $lines lines"

echo "gen-assets: $out/synq.1 ($lines lines rendered, no groff warnings), synq.1.gz, completions/{synq.bash,_synq,synq.fish}" >&2
