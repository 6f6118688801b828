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
# ids: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie). Usage: fetch-kernels.sh [ID...] (default, or "all":
# these three). arm64 ids (dump.sh's arm64 guests; "arm64" names all three):
#   arm64-6.1   bookworm's linux-image-6.1.0-N-arm64
#   arm64-6.12  trixie's linux-image-6.12.N+debN-arm64
#   arm64-16k   unstable's linux-image-*-arm64-16k (16K pages): the package the metapackage
#               linux-image-arm64-16k depends on
# An arm64 id gets no System.map (no -dbg download: these kernels are >= 6.0, their VMCOREINFO names the
# kallsyms tables) unless its config lacks CONFIG_KALLSYMS_ALL (seen: bookworm's arm64 6.1), whose kallsyms
# tables hold no data symbol (no tcp_hashinfo): then the -dbg package's System.map as for x86_64, and
# `kallsyms_all` (y/n) says which; besides vmlinuz the plain arm64 Image QEMU's -kernel boots (`Image`: vmlinuz
# decompressed: gzip, or the payload of an EFI zboot image), `arch` (arm64), `page_size` and `va_bits`
# (CONFIG_ARM64_{4K,16K,64K}_PAGES, CONFIG_ARM64_VA_BITS; the page size cross-checked with the Image header's
# flags), `image_format`, `builtin` (the modules below that the kernel has built in, =y) and `virtio/`:
# virtio_pci and virtio_console with the modules they depend on and their insmod order (`virtio/order`; empty
# where both are built in): the results channel of an arm64 guest is a virtconsole, /dev/hvc0. The arm64 guests'
# userland, once, in <cache>/arm64-userland/: bookworm's busybox-static (arm64) with its applet list, and
# bookworm's iproute2 `ss` (arm64) with the shared libraries it needs and the loader (ss-root/), all from
# arm64 .debs unpacked with dpkg-deb -x (never installed).
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
ARM64_IDS=(arm64-6.1 arm64-6.12 arm64-16k)
# dummy: the interface that swallows SYN-ACKs (half-open connections).
# qemu_fw_cfg: puts VMCOREINFO where QEMU's -device vmcoreinfo expects it.
# inet_diag, tcp_diag: let the guest's `ss` use sock_diag netlink like on a real
# host (without them ss falls back to /proc/net/tcp and the benchmark is unfair).
# rds, rds_tcp: RDS over TCP listens on port 16385 in every network namespace with a kernel socket
# (sock_create_kern: no file, no process): the real kernel listener the tests need (kind "kernel", no owners).
MODULES=(dummy qemu_fw_cfg inet_diag tcp_diag rds rds_tcp)
# On arm64 a module of the list may be built in (=y): its config symbol says so.
declare -A MODULE_CONFIG=([dummy]=CONFIG_DUMMY [qemu_fw_cfg]=CONFIG_FW_CFG_SYSFS [inet_diag]=CONFIG_INET_DIAG
  [tcp_diag]=CONFIG_INET_TCP_DIAG [rds]=CONFIG_RDS [rds_tcp]=CONFIG_RDS_TCP [virtio_console]=CONFIG_VIRTIO_CONSOLE)
USERLAND=$CACHE/arm64-userland

die() { echo "fetch-kernels: ERROR: $*" >&2; exit 1; }
log() { echo "fetch-kernels: $*" >&2; }

suite_of() {
  case $1 in
    5.10) echo bullseye ;;
    6.1) echo bookworm ;;
    6.12) echo trixie ;;
    arm64-6.1) echo bookworm ;;
    arm64-6.12) echo trixie ;;
    arm64-16k) echo unstable ;;
    *) die "unknown kernel id '$1' (known: ${ALL_IDS[*]} ${ARM64_IDS[*]})" ;;
  esac
}

# amd64 or arm64: the Debian architecture of the id's packages.
arch_of() {
  case $1 in
    arm64-*) echo arm64 ;;
    *) echo amd64 ;;
  esac
}

# The private sources-list entry of the id's suite (aptlib.sh: arm64:SUITE for an arm64 line).
apt_suite_of() {
  if [[ $(arch_of "$1") == arm64 ]]; then echo "arm64:$(suite_of "$1")"; else suite_of "$1"; fi
}

# Extended regex for the signed amd64 image package of each suite
# (not -unsigned, -dbg, -rt-, -cloud-).
pkg_regex_of() {
  case $1 in
    5.10) echo '^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
    6.1) echo '^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    6.12) echo '^linux-image-6\.12\.[0-9]+(\+deb[0-9]+)?-amd64$' ;;
    arm64-6.1) echo '^linux-image-6\.1\.0-[0-9]+-arm64$' ;;
    arm64-6.12) echo '^linux-image-6\.12\.[0-9]+(\+deb[0-9]+)?-arm64$' ;;
    # Resolved through the metapackage instead (unstable_16k_package).
    arm64-16k) echo '^linux-image-.*-arm64-16k$' ;;
  esac
}

is_cached() {
  local d=$CACHE/$1 m
  if [[ $(arch_of "$1") == arm64 ]]; then
    [[ -s $d/vmlinuz && -s $d/Image && -s $d/release && -s $d/page_size && -s $d/va_bits && -f $d/builtin ]] \
      || return 1
    for m in "${MODULES[@]}"; do
      [[ -s $d/$m.ko ]] || grep -qx "$m" "$d/builtin" || return 1
    done
    [[ -f $d/virtio/order ]] || return 1
    # Without CONFIG_KALLSYMS_ALL (bookworm's arm64 6.1) the kallsyms tables lack data symbols such as
    # tcp_hashinfo: the real System.map is needed after all.
    [[ -s $d/kallsyms_all ]] || return 1
    [[ $(cat "$d/kallsyms_all") == y || -s $d/System.map ]] || return 1
    while read -r m; do
      [[ -s $d/virtio/$m.ko ]] || return 1
    done <"$d/virtio/order"
    return 0
  fi
  [[ -s $d/vmlinuz && -s $d/release && -s $d/System.map ]] || return 1
  for m in "${MODULES[@]}"; do
    [[ -s $d/$m.ko ]] || return 1
  done
}

userland_cached() {
  [[ -x $USERLAND/busybox && -s $USERLAND/busybox.applets && -x $USERLAND/ss-root/bin/ss && -s $USERLAND/packages ]]
}

ids=()
for a in "$@"; do
  case $a in
    all) ids+=("${ALL_IDS[@]}") ;;
    arm64) ids+=("${ARM64_IDS[@]}") ;;
    *) ids+=("$a") ;;
  esac
done
[[ ${#ids[@]} -gt 0 ]] || ids=("${ALL_IDS[@]}")

need=()
want_userland=0
for id in "${ids[@]}"; do
  suite_of "$id" >/dev/null
  [[ $(arch_of "$id") != arm64 ]] || want_userland=1
  if is_cached "$id"; then
    log "$id: cached: $(cat "$CACHE/$id/release") ($(cat "$CACHE/$id/package" 2>/dev/null || echo '?'))"
  else
    need+=("$id")
  fi
done
need_userland=0
if [[ $want_userland == 1 ]]; then
  if userland_cached; then
    log "arm64 userland: cached: $(tr '\n' ' ' <"$USERLAND/packages")"
  else
    need_userland=1
  fi
fi

# print_ids: one line per id (release, package; arm64: page size, VA bits, how vmlinuz was packed).
print_ids() {
  local id d
  for id in "${ids[@]}"; do
    d=$CACHE/$id
    if [[ $(arch_of "$id") == arm64 ]]; then
      printf '%-10s %-28s %s; pages %s, VA_BITS %s, KALLSYMS_ALL %s, vmlinuz %s\n' "$id" "$(cat "$d/release")" \
        "$(cat "$d/package")" "$(cat "$d/page_size")" "$(cat "$d/va_bits")" "$(cat "$d/kallsyms_all")" "$(cat "$d/image_format")"
    else
      printf '%-5s %-28s %s\n' "$id" "$(cat "$d/release")" "$(cat "$d/package")"
    fi
  done
}
if [[ ${#need[@]} -eq 0 && $need_userland == 0 ]]; then
  # Nothing to fetch; the figures of arm64 ids are printed all the same (x86 ids print nothing here, as before).
  [[ $want_userland == 0 ]] || print_ids
  exit 0
fi

command -v dpkg-deb >/dev/null || die "dpkg-deb missing"
command -v xz >/dev/null || die "xz missing (run setup-host.sh)"
[[ $(id -u) -eq 0 ]] || die "must run as root (apt's private state is written as root)"
suites=()
for id in "${need[@]}"; do
  s=$(apt_suite_of "$id")
  [[ " ${suites[*]} " == *" $s "* ]] || suites+=("$s")
done
[[ $need_userland == 0 || " ${suites[*]} " == *" arm64:bookworm "* ]] || suites+=(arm64:bookworm)
apt_private_setup "$CACHE/.apt" synq-kernels.list "${suites[@]}"

log "apt update (${suites[*]}) from the machine's mirror"
apt_update

# arm64_image VMLINUZ OUTDIR: writes OUTDIR/Image (the plain arm64 Image QEMU's -kernel boots) and
# OUTDIR/image_format, and prints the page size the Image header's flags declare (bits 1-2: 1 = 4K, 2 = 16K,
# 3 = 64K). vmlinuz is a gzip'd Image, an EFI zboot image (CONFIG_EFI_ZBOOT: "MZ", "zimg" at 4, the payload's
# offset and size at 8 and 12, its compression's name at 24; QEMU 7.2 cannot boot it), or a plain Image.
arm64_image() {
  python3 - "$1" "$2" <<'PY'
import gzip, lzma, struct, subprocess, sys
src, out = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
if data[:2] == b"\x1f\x8b":
    img, fmt = gzip.decompress(data), "gzip"
elif data[:2] == b"MZ" and data[4:8] == b"zimg":
    off, size = struct.unpack_from("<II", data, 8)
    comp = data[24:40].split(b"\0")[0].decode()
    payload = data[off:off + size]
    if comp == "gzip":
        img = gzip.decompress(payload)
    elif comp in ("xz", "lzma"):
        img = lzma.decompress(payload)
    elif comp == "zstd":
        img = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True, check=True).stdout
    else:
        sys.exit(f"zboot payload compressed with {comp!r}: not handled")
    fmt = f"zboot ({comp} payload, {size} bytes at {off:#x})"
elif data[56:60] == b"ARM\x64":
    img, fmt = data, "plain Image"
else:
    sys.exit(f"{src}: neither gzip, EFI zboot nor an arm64 Image: starts {data[:8]!r}")
if img[56:60] != b"ARM\x64":
    sys.exit(f"{src} ({fmt}): the result has no arm64 Image magic at 0x38")
flags, = struct.unpack_from("<Q", img, 24)
open(out + "/Image", "wb").write(img)
open(out + "/image_format", "w").write(fmt + "\n")
print({1: "4K", 2: "16K", 3: "64K"}.get((flags >> 1) & 3, "unspecified"))
PY
}

# apt's version of PKG:arm64 in SUITE (a package name can be in two suites at different versions).
arm64_version() {
  apt-cache "${APT_OPTS[@]}" madison "$1:arm64" </dev/null | awk -v s="$2/main" '$0 ~ " " s " " { print $3; exit }'
}

# fetch_arm64 ID: the arm64 kernel of the id into the cache (no -dbg package: no System.map).
fetch_arm64() {
  local id=$1 suite re pkg mv pv deb dd ex out tmp vmlinuz release m f page va hdr dep
  suite=$(suite_of "$id")
  re=$(pkg_regex_of "$id")
  if [[ $id == arm64-16k ]]; then
    # The suite's metapackage names the real image package (e.g. linux-image-7.2.13+deb14-arm64-16k).
    mv=$(arm64_version linux-image-arm64-16k "$suite")
    [[ -n $mv ]] || die "$id: no linux-image-arm64-16k in $suite"
    pkg=$(apt-cache "${APT_OPTS[@]}" show "linux-image-arm64-16k:arm64=$mv" </dev/null \
      | sed -n 's/^Depends: //p' | head -n 1 | tr ',' '\n' | sed 's/^ *//; s/ .*//; s/:.*//' | grep -E "$re" | head -n 1)
    [[ -n $pkg ]] || die "$id: linux-image-arm64-16k $mv ($suite) depends on no package matching $re"
    log "$id: linux-image-arm64-16k $mv ($suite) depends on $pkg"
  else
    pkg=$(apt-cache "${APT_OPTS[@]}" pkgnames linux-image- </dev/null | grep -E "$re" | sort -V | while read -r p; do
            if apt-cache "${APT_OPTS[@]}" madison "$p:arm64" </dev/null | grep -q " $suite/main "; then echo "$p"; fi
          done | tail -n 1)
  fi
  [[ -n $pkg ]] || die "$id: no package matching $re in $suite"
  pv=$(arm64_version "$pkg" "$suite")
  dd=$APTDIR/debs/$id
  rm -rf "$dd" && mkdir -p "$dd"
  log "$id: downloading $pkg:arm64 $pv ($suite)"
  (cd "$dd" && apt-get "${APT_OPTS[@]}" -qq download "$pkg:arm64=$pv" </dev/null) || die "$id: apt-get download $pkg:arm64=$pv failed"
  deb=$(ls "$dd"/*.deb)
  # unstable splits the image package: linux-image-REL depends on linux-base-REL (config), linux-binary-REL
  # (/usr/lib/modules/REL/vmlinuz) and linux-modules-REL (the modules), all of the same version.
  if [[ $(dpkg-deb -c "$deb" | grep -c vmlinuz) == 0 ]]; then
    for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -n "s/^ *\(linux-\(base\|binary\|modules\)-[^ ]*\) (= $pv)\$/\1/p"); do
      log "$id: $pkg holds no vmlinuz: downloading $dep:arm64 $pv"
      (cd "$dd" && apt-get "${APT_OPTS[@]}" -qq download "$dep:arm64=$pv" </dev/null) || die "$id: apt-get download $dep:arm64=$pv failed"
    done
  fi
  ex=$APTDIR/extract-$id
  rm -rf "$ex" && mkdir -p "$ex"
  # Only what is used; a pattern that matches nothing in one package (a built-in module, the split
  # packages) makes tar complain: what is there is checked below.
  for deb in "$dd"/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$ex" --wildcards \
      './boot/vmlinuz-*' './boot/config-*' './usr/lib/modules/*/vmlinuz' './usr/lib/modules/*/config' \
      '*/kernel/drivers/net/dummy.ko*' '*/kernel/drivers/firmware/qemu_fw_cfg.ko*' \
      '*/kernel/net/ipv4/inet_diag.ko*' '*/kernel/net/ipv4/tcp_diag.ko*' \
      '*/kernel/net/rds/rds.ko*' '*/kernel/net/rds/rds_tcp.ko*' \
      '*/kernel/drivers/virtio/*.ko*' '*/kernel/drivers/char/virtio_console.ko*' 2>/dev/null || true
  done
  vmlinuz=$(ls "$ex"/boot/vmlinuz-* "$ex"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -n 1 || true)
  [[ -n $vmlinuz ]] || die "$id: no vmlinuz in $(cd "$dd" && echo *.deb)"
  case $vmlinuz in
    */boot/vmlinuz-*) release=${vmlinuz##*/vmlinuz-} ;;
    *) release=$(basename "$(dirname "$vmlinuz")") ;;
  esac
  out=$CACHE/$id
  tmp=$CACHE/.new-$id
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$vmlinuz" "$tmp/vmlinuz"
  f=$(ls "$ex/boot/config-$release" "$ex/usr/lib/modules/$release/config" 2>/dev/null | head -n 1 || true)
  [[ -n $f ]] || die "$id: no config of $release"
  cp "$f" "$tmp/config"
  echo "$release" >"$tmp/release"
  echo "$pkg $pv" >"$tmp/package"
  echo arm64 >"$tmp/arch"
  : >"$tmp/builtin"
  # A module of the list: its .ko (decompressed), or built in (=y in the config).
  module_file() {
    find "$ex/lib/modules/$release" "$ex/usr/lib/modules/$release" -name "$1.ko*" 2>/dev/null | head -n 1 || true
  }
  unpack_module() {
    case $1 in
      *.ko.xz) xz -dc "$1" >"$2" ;;
      *.ko.zst)
        command -v zstd >/dev/null || die "$id: $1 is zstd-compressed and zstd is missing"
        zstd -qdc "$1" >"$2" ;;
      *.ko) cp "$1" "$2" ;;
    esac
  }
  for m in "${MODULES[@]}"; do
    f=$(module_file "$m")
    if [[ -z $f ]] && grep -qx "${MODULE_CONFIG[$m]}=y" "$tmp/config"; then
      echo "$m" >>"$tmp/builtin"
      log "$id: $m is built in (${MODULE_CONFIG[$m]}=y)"
      continue
    fi
    [[ -n $f ]] || die "$id: $m.ko not in $pkg and ${MODULE_CONFIG[$m]} not =y"
    unpack_module "$f" "$tmp/$m.ko"
  done
  # The results channel (virtio-serial-pci + virtconsole, /dev/hvc0): virtio_pci and virtio_console, each a
  # module or built in; a module's own dependencies (its .modinfo "depends=") first. virtio/order is the
  # insmod order (empty when both are built in).
  mkdir -p "$tmp/virtio"
  : >"$tmp/virtio/order"
  add_virtio() {
    local name=$1 ko deps d
    grep -qx "$name" "$tmp/virtio/order" && return 0
    ko=$(module_file "$name")
    if [[ -z $ko ]]; then
      [[ -n ${2:-} ]] && grep -qx "$2=y" "$tmp/config" || die "$id: $name.ko not in $pkg, and not built in"
      echo "$name" >>"$tmp/builtin"
      log "$id: $name is built in ($2=y)"
      return 0
    fi
    unpack_module "$ko" "$tmp/virtio/$name.ko"
    deps=$(tr '\0' '\n' <"$tmp/virtio/$name.ko" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' ')
    for d in $deps; do add_virtio "$d"; done
    echo "$name" >>"$tmp/virtio/order"
  }
  add_virtio virtio_pci CONFIG_VIRTIO_PCI
  add_virtio virtio_console CONFIG_VIRTIO_CONSOLE
  # No -dbg download for these kernels (>= 6.0: VMCOREINFO names the kallsyms tables) unless the kallsyms
  # tables lack the data symbols (CONFIG_KALLSYMS_ALL off, as in bookworm's arm64 6.1: no tcp_hashinfo in
  # /proc/kallsyms nor in the kernel's own tables): then the real System.map, as for the x86_64 kernels.
  if grep -qx 'CONFIG_KALLSYMS_ALL=y' "$tmp/config"; then
    echo y >"$tmp/kallsyms_all"
  else
    echo n >"$tmp/kallsyms_all"
    log "$id: $release has no CONFIG_KALLSYMS_ALL (kallsyms holds no tcp_hashinfo): downloading $pkg-dbg:arm64 $pv for its System.map"
    (cd "$dd" && apt-get "${APT_OPTS[@]}" -qq download "$pkg-dbg:arm64=$pv" </dev/null) \
      || die "$id: apt-get download $pkg-dbg:arm64=$pv failed"
    dpkg-deb --fsys-tarfile "$(ls "$dd"/*-dbg_*.deb)" 2>/dev/null \
      | tar -x -C "$ex" --occurrence=1 "./usr/lib/debug/boot/System.map-$release" || true
    grep -Eq '^[0-9a-f]{16} [TtDdRr] linux_banner$' "$ex/usr/lib/debug/boot/System.map-$release" 2>/dev/null \
      || die "$id: no System.map with linux_banner in $pkg-dbg"
    cp "$ex/usr/lib/debug/boot/System.map-$release" "$tmp/System.map"
  fi
  # The page size and VA bits from the config, the page size cross-checked with the Image header's flags.
  page=$(sed -n 's/^CONFIG_ARM64_\(4K\|16K\|64K\)_PAGES=y$/\1/p' "$tmp/config")
  va=$(sed -n 's/^CONFIG_ARM64_VA_BITS=\([0-9]*\)$/\1/p' "$tmp/config")
  [[ -n $page && -n $va ]] || die "$id: no CONFIG_ARM64_*_PAGES=y or CONFIG_ARM64_VA_BITS in the config of $release"
  hdr=$(arm64_image "$tmp/vmlinuz" "$tmp") || die "$id: cannot make a bootable Image of $vmlinuz"
  [[ $hdr == "$page" ]] || die "$id: the config says ${page} pages, the Image header $hdr"
  case $page in 4K) echo 4096 ;; 16K) echo 16384 ;; 64K) echo 65536 ;; esac >"$tmp/page_size"
  echo "$va" >"$tmp/va_bits"
  log "$id: $release: ${page} pages (the Image header agrees), CONFIG_ARM64_VA_BITS=$va, CONFIG_KALLSYMS_ALL $(cat "$tmp/kallsyms_all")," \
    "vmlinuz: $(cat "$tmp/image_format");" \
    "built in: $(tr '\n' ' ' <"$tmp/builtin"); virtio modules: $(tr '\n' ' ' <"$tmp/virtio/order")"
  rm -rf "$out" && mv "$tmp" "$out"
  rm -rf "$ex" "$dd"
  log "$id: got $release ($pkg) -> $out"
}

for id in "${need[@]}"; do
  if [[ $(arch_of "$id") == arm64 ]]; then
    fetch_arm64 "$id"
    continue
  fi
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


# The arm64 guests' userland (bookworm, arm64 .debs, unpacked, never installed): busybox-static, and
# iproute2's ss with every shared library it needs (NEEDED entries, followed recursively, read with the
# host's readelf) and the loader. Which package holds a library: the host's dpkg -S of the same soname (the
# host runs the same bookworm ss); every arm64 library is then looked for in what was unpacked.
fetch_userland() {
  local u=$CACHE/.new-arm64-userland d=$APTDIR/debs/arm64-userland x p f
  rm -rf "$u" "$d" && mkdir -p "$u/ss-root" "$d"
  x=$d/x
  mkdir -p "$x"
  # bookworm's version of a package (madison lists every suite of the private list).
  bookworm_version() {
    apt-cache "${APT_OPTS[@]}" madison "$1:arm64" </dev/null | awk '$0 ~ " bookworm/main " { print $3; exit }'
  }
  get() {
    local v
    v=$(bookworm_version "$1")
    [[ -n $v ]] || die "arm64 userland: no $1:arm64 in bookworm"
    (cd "$d" && apt-get "${APT_OPTS[@]}" -qq download "$1:arm64=$v" </dev/null) || die "arm64 userland: apt-get download $1:arm64=$v failed"
    dpkg-deb -x "$(ls "$d/$1"_*_arm64.deb)" "$x" || die "arm64 userland: unpacking $1 failed"
    echo "$1:arm64 $v" >>"$u/packages"
  }
  log "arm64 userland: busybox-static, iproute2 and ss's libraries (bookworm, arm64)"
  get busybox-static
  cp "$x/bin/busybox" "$u/busybox"
  # The applets: the host's bookworm busybox-static lists them with their install paths (it cannot run the
  # arm64 one); the arm64 binary's own applet-name table must hold exactly the same names.
  busybox --list-full >"$u/busybox.applets" || die "arm64 userland: the host's busybox --list-full failed (run setup-host.sh)"
  python3 - "$u/busybox" "$u/busybox.applets" <<'PY' || die "arm64 userland: applet lists differ"
import sys
b = open(sys.argv[1], "rb").read()
i = b.find(b"[\0[[\0")
if i < 0:
    sys.exit("no applet-name table in the arm64 busybox")
names = []
for n in b[i:].split(b"\0"):
    if not n:
        break
    names.append(n.decode())
host = sorted(l.strip().rsplit("/", 1)[-1] for l in open(sys.argv[2]) if l.strip())
if sorted(names) != host:
    sys.exit(f"arm64 busybox applets {len(names)}, host {len(host)}: "
             f"{sorted(set(names) ^ set(host))[:10]}")
print(f"arm64 busybox: {len(names)} applets, the same as the host's", file=sys.stderr)
PY
  get iproute2
  mkdir -p "$u/ss-root/bin"
  f=$(find "$x/bin" "$x/usr/bin" "$x/sbin" -name ss -type f 2>/dev/null | head -n 1 || true)
  [[ -n $f ]] || die "arm64 userland: no ss in iproute2:arm64"
  cp "$f" "$u/ss-root/bin/ss"
  # The closure of NEEDED sonames; a missing one: download the package the host's dpkg -S names for it.
  local todo=("$u/ss-root/bin/ss") seen=" " lib n interp round=0
  interp=$(readelf -l "$f" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [[ -n $interp ]] || die "arm64 userland: ss has no program interpreter"
  while [[ ${#todo[@]} -gt 0 ]]; do
    round=$((round + 1))
    [[ $round -lt 200 ]] || die "arm64 userland: the library closure does not end"
    f=${todo[0]}
    todo=("${todo[@]:1}")
    while read -r n; do
      [[ -n $n && $seen != *" $n "* ]] || continue
      lib=$(find "$x/lib/aarch64-linux-gnu" "$x/usr/lib/aarch64-linux-gnu" -name "$n" 2>/dev/null | head -n 1 || true)
      if [[ -z $lib ]]; then
        p=$(dpkg -S "*/$n" 2>/dev/null | awk -F: '$0 ~ /x86_64-linux-gnu/ { print $1; exit }' || true)
        [[ -n $p ]] || die "arm64 userland: which package has $n? (not found by the host's dpkg -S)"
        get "$p"
        lib=$(find "$x/lib/aarch64-linux-gnu" "$x/usr/lib/aarch64-linux-gnu" -name "$n" 2>/dev/null | head -n 1 || true)
        [[ -n $lib ]] || die "arm64 userland: $n not in $p:arm64"
      fi
      seen+="$n "
      mkdir -p "$u/ss-root/$(dirname "${lib#"$x"/}")"
      cp -L "$lib" "$u/ss-root/${lib#"$x"/}"
      todo+=("$lib")
    done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  done
  # The loader at the path the program header names (libc6 is among the packages by now).
  [[ -e $x$interp ]] || die "arm64 userland: the loader $interp is not in what was unpacked"
  mkdir -p "$u/ss-root/$(dirname "$interp")"
  cp -L "$x$interp" "$u/ss-root$interp"
  readelf -h "$u/ss-root/bin/ss" | grep -q 'AArch64' || die "arm64 userland: ss is not an AArch64 program"
  log "arm64 userland: ss with $(echo "$seen" | wc -w) libraries and $interp ($(du -sh "$u/ss-root" | cut -f1))"
  rm -rf "$USERLAND" && mv "$u" "$USERLAND"
  rm -rf "$d"
}
[[ $need_userland == 0 ]] || fetch_userland

if [[ $want_userland == 1 ]]; then
  print_ids
else
  for id in "${ids[@]}"; do
    printf '%-5s %-28s %s\n' "$id" "$(cat "$CACHE/$id/release")" "$(cat "$CACHE/$id/package")"
  done
fi
