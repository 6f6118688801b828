#!/usr/bin/env bash
# Downloads the real Debian kernels the harness boots, and the two modules the
# guest needs (dummy.ko, qemu_fw_cfg.ko), into a cache:
#
#   ${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}/<id>/{vmlinuz,release,package,config,System.map,<module>.ko}
#
# System.map: the kernel's real one, which the guest gets as /boot/System.map-<release> (synq's default live
# symbol chain reads it on kernels before 6.0). The image package's /boot/System.map is an 83-byte
# placeholder ("The real System.map is in the linux-image-<release>-dbg package"); the -dbg package (~800 MB,
# downloaded, not kept) has it as usr/lib/debug/boot/System.map-<release>, near the start of its data
# archive, so only that much is decompressed.
#
# ids: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie). Usage: fetch-kernels.sh [ID...] (default: all).
#
# Modules: dummy.ko, qemu_fw_cfg.ko, inet_diag.ko, tcp_diag.ko, rds.ko, rds_tcp.ko (decompressed).
#
# The machine's own apt setup is left untouched: a private sources list and a
# private state/cache directory are passed with -o. The mirror URI is read at
# run time from the machine's /etc/apt/sources.list.d/*.sources (deb822) so no
# host name is written into the repository.
set -euo pipefail

# shellcheck source=tests/realkernel/aptlib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/aptlib.sh"

CACHE=${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}
ALL_IDS=(5.10 6.1 6.12)
# dummy: the interface that swallows SYN-ACKs (half-open connections).
# qemu_fw_cfg: puts VMCOREINFO where QEMU's -device vmcoreinfo expects it.
# inet_diag, tcp_diag: let the guest's `ss` use sock_diag netlink like on a real
# host (without them ss falls back to /proc/net/tcp and the benchmark is unfair).
# rds, rds_tcp: RDS over TCP listens on port 16385 in every network namespace with a kernel socket
# (sock_create_kern: no file, no process): the real kernel listener the tests need (kind "kernel", no owners).
MODULES=(dummy qemu_fw_cfg inet_diag tcp_diag rds rds_tcp)

die() { echo "fetch-kernels: ERROR: $*" >&2; exit 1; }
log() { echo "fetch-kernels: $*" >&2; }

suite_of() {
  case $1 in
    5.10) echo bullseye ;;
    6.1) echo bookworm ;;
    6.12) echo trixie ;;
    *) die "unknown kernel id '$1' (known: ${ALL_IDS[*]})" ;;
  esac
}

# Extended regex for the signed amd64 image package of each suite
# (not -unsigned, -dbg, -rt-, -cloud-).
pkg_regex_of() {
  case $1 in
    5.10) echo '^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
    6.1) echo '^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    6.12) echo '^linux-image-6\.12\.[0-9]+(\+deb[0-9]+)?-amd64$' ;;
  esac
}

is_cached() {
  local d=$CACHE/$1 m
  [[ -s $d/vmlinuz && -s $d/release && -s $d/System.map ]] || return 1
  for m in "${MODULES[@]}"; do
    [[ -s $d/$m.ko ]] || return 1
  done
}

ids=("$@")
[[ ${#ids[@]} -gt 0 ]] || ids=("${ALL_IDS[@]}")
if [[ ${#ids[@]} -eq 1 && ${ids[0]} == all ]]; then ids=("${ALL_IDS[@]}"); fi

need=()
for id in "${ids[@]}"; do
  suite_of "$id" >/dev/null
  if is_cached "$id"; then
    log "$id: cached: $(cat "$CACHE/$id/release") ($(cat "$CACHE/$id/package" 2>/dev/null || echo '?'))"
  else
    need+=("$id")
  fi
done
[[ ${#need[@]} -gt 0 ]] || exit 0

command -v dpkg-deb >/dev/null || die "dpkg-deb missing"
command -v xz >/dev/null || die "xz missing (run setup-host.sh)"
[[ $(id -u) -eq 0 ]] || die "must run as root (apt's private state is written as root)"
suites=()
for id in "${need[@]}"; do suites+=("$(suite_of "$id")"); done
apt_private_setup "$CACHE/.apt" synq-kernels.list "${suites[@]}"

log "apt update (${suites[*]}) from the machine's mirror"
apt_update

for id in "${need[@]}"; do
  suite=$(suite_of "$id")
  re=$(pkg_regex_of "$id")
  # Newest package of that suite: list the candidates that come from this suite
  # (apt-cache madison shows the archive), version-sort, take the last.
  pkg=$(apt-cache "${APT_OPTS[@]}" pkgnames linux-image- </dev/null | grep -E "$re" | sort -V | while read -r p; do
          if apt-cache "${APT_OPTS[@]}" madison "$p" </dev/null | grep -q " $suite/main "; then echo "$p"; fi
        done | tail -n 1)
  [[ -n $pkg ]] || die "$id: no package matching $re in $suite"
  log "$id: downloading $pkg ($suite)"
  rm -rf "$APTDIR/debs/$id" && mkdir -p "$APTDIR/debs/$id"
  (cd "$APTDIR/debs/$id" && apt-get "${APT_OPTS[@]}" -qq download "$pkg" </dev/null) || die "$id: apt-get download $pkg failed"
  deb=$(ls "$APTDIR/debs/$id"/*.deb)
  ex=$APTDIR/extract-$id
  rm -rf "$ex" && mkdir -p "$ex"
  # Extract only what is used (the package unpacks to ~400 MB of modules).
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$ex" --wildcards \
    './boot/vmlinuz-*' './boot/config-*' \
    '*/kernel/drivers/net/dummy.ko*' '*/kernel/drivers/firmware/qemu_fw_cfg.ko*' \
    '*/kernel/net/ipv4/inet_diag.ko*' '*/kernel/net/ipv4/tcp_diag.ko*' \
    '*/kernel/net/rds/rds.ko*' '*/kernel/net/rds/rds_tcp.ko*' \
    || die "$id: extracting $deb failed"
  vmlinuz=$(ls "$ex"/boot/vmlinuz-*)
  release=${vmlinuz##*/vmlinuz-}
  out=$CACHE/$id
  tmp=$CACHE/.new-$id
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$vmlinuz" "$tmp/vmlinuz"
  cp "$ex/boot/config-$release" "$tmp/config"
  echo "$release" >"$tmp/release"
  echo "$pkg $(dpkg-deb -f "$deb" Version)" >"$tmp/package"
  for m in "${MODULES[@]}"; do
    f=$(find "$ex/lib/modules/$release" "$ex/usr/lib/modules/$release" -name "$m.ko*" 2>/dev/null | head -n 1 || true)
    [[ -n $f ]] || die "$id: $m.ko not in $pkg (built in?)"
    case $f in
      *.ko.xz) xz -dc "$f" >"$tmp/$m.ko" ;;
      *.ko.zst) die "$id: $m.ko is zstd-compressed; add zstd support here" ;;
      *.ko) cp "$f" "$tmp/$m.ko" ;;
    esac
  done
  # The real System.map, out of the -dbg package: tar stops at the first match (--occurrence), so dpkg-deb
  # may die of SIGPIPE; the file's content is what is checked.
  log "$id: downloading $pkg-dbg ($suite) for its System.map"
  (cd "$APTDIR/debs/$id" && apt-get "${APT_OPTS[@]}" -qq download "$pkg-dbg" </dev/null) \
    || die "$id: apt-get download $pkg-dbg failed"
  dbg=$(ls "$APTDIR/debs/$id"/*-dbg_*.deb)
  dpkg-deb --fsys-tarfile "$dbg" 2>/dev/null \
    | tar -x -C "$ex" --occurrence=1 "./usr/lib/debug/boot/System.map-$release" || true
  map=$ex/usr/lib/debug/boot/System.map-$release
  grep -Eq '^[0-9a-f]{16} [TtDdRr] linux_banner$' "$map" 2>/dev/null \
    || die "$id: no System.map with linux_banner in $pkg-dbg"
  cp "$map" "$tmp/System.map"
  rm -rf "$out" && mv "$tmp" "$out"
  rm -rf "$ex" "$APTDIR/debs/$id"
  log "$id: got $release ($pkg) -> $out"
done

for id in "${ids[@]}"; do
  printf '%-5s %-28s %s\n' "$id" "$(cat "$CACHE/$id/release")" "$(cat "$CACHE/$id/package")"
done
