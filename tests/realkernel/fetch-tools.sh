#!/usr/bin/env bash
# Builds and caches what the snapshot guests (snapshot.sh, init.sh's synq.mode=snapshot) need besides the
# kernels themselves:
#
#   ${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}/
#     avml/avml, avml/version        a static avml (crates.io, pinned), for `avml acquire --source /proc/kcore`
#     <id>/lime.ko, <id>/lime.info   LiME from Debian's lime-forensics-dkms, built for that exact kernel
#     <id>/lime.unavailable          instead of lime.ko when it cannot be built here: first line the
#                                    kernel release and recipe, then why
#     <id>/lime-build.log            the module build's output
#     <id>/virtio/*.ko, <id>/virtio/order
#                                    the virtio modules a guest needs to see its virtio disks (what the
#                                    kernel's config leaves as modules), `order` = insmod order
#
# ids: 5.10 (bullseye), 6.1 (bookworm), 6.12 (trixie), as fetch-kernels.sh (which must have run: the kernel
# release comes from ${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}/<id>/release).
# Usage: fetch-tools.sh [ID...|all]   (default: all). Root; idempotent: with everything cached it only checks.
#
# LiME is built with the compiler and kbuild tools of the kernel's own Debian release where the host cannot
# run them: the Debian 12 host (gcc-12, glibc 2.36) builds 5.10 (Debian built it with gcc-10, which Debian
# 12 does not have; gcc-12 works for this module) and 6.1 (gcc-12, exact). 6.12 (trixie) was built with
# gcc-14, its headers pass -fmin-function-alignment (gcc >= 14 only) and its objtool needs glibc 2.38, so it
# is built in a throw-away trixie chroot (debootstrap from the same mirror, with gcc-14 and pahole), deleted
# afterwards. Nothing is extracted into the host's /usr/src or /lib/modules: the header packages are
# unpacked under the cache (or inside the chroot).
#
# Env: SYNQ_TOOLS_CACHE, SYNQ_KERNEL_CACHE, SYNQ_AVML_VERSION (default 0.21.0), SYNQ_TOOLS_RETRY_LIME=1 (try
# again a kernel whose lime.unavailable is recorded), SYNQ_TOOLS_KEEP_BUILD=1 (keep the build trees and
# the chroot under <cache>/build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/realkernel/aptlib.sh
. "$HERE/aptlib.sh"

CACHE=${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}
KCACHE=${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}
AVML_VERSION=${SYNQ_AVML_VERSION:-0.21.0}
ALL_IDS=(5.10 6.1 6.12)
# Bumped when the way lime.ko or the virtio set is made changes: cached results of an older recipe are
# rebuilt.
RECIPE=1
# The virtio modules a guest may need, roots of the dependency walk: the PCI transport and the disk driver.
# Everything they depend on (virtio, virtio_ring, virtio_pci_{legacy,modern}_dev...) follows from their
# .modinfo depends= lines; whatever the kernel has built in is simply not in its package.
VIRTIO_ROOTS=(virtio_pci virtio_blk)

die() { echo "fetch-tools: ERROR: $*" >&2; exit 1; }
log() { echo "fetch-tools: $*" >&2; }

suite_of() {
  case $1 in
    5.10) echo bullseye ;;
    6.1) echo bookworm ;;
    6.12) echo trixie ;;
    *) die "unknown kernel id '$1' (known: ${ALL_IDS[*]})" ;;
  esac
}

# How LiME is built for a kernel id: "host" (the host's gcc-12 and the kernel's own kbuild tools) or
# "chroot" (a chroot of the kernel's own suite with the compiler its headers name). See the header.
builder_of() {
  case $1 in
    5.10 | 6.1) echo host ;;
    6.12) echo chroot ;;
  esac
}

ids=("$@")
[[ ${#ids[@]} -gt 0 ]] || ids=("${ALL_IDS[@]}")
if [[ ${#ids[@]} -eq 1 && ${ids[0]} == all ]]; then ids=("${ALL_IDS[@]}"); fi
for id in "${ids[@]}"; do
  suite_of "$id" >/dev/null
  [[ -s $KCACHE/$id/release && -s $KCACHE/$id/package && -s $KCACHE/$id/config ]] \
    || die "kernel $id not in $KCACHE (run fetch-kernels.sh $id first)"
done
[[ $(id -u) -eq 0 ]] || die "must run as root (private apt state, chroot)"
mkdir -p "$CACHE"

now_ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# ---------------------------------------------------------------------------------------------------------
# avml

# is_static FILE: no program interpreter and no DT_NEEDED (ldd's "not a dynamic executable" / "statically
# linked" says the same; readelf is the stricter test and is in binutils, which gcc pulls in).
is_static() {
  ! readelf -lW "$1" | grep -q 'Requesting program interpreter' && ! readelf -dW "$1" | grep -q '(NEEDED)'
}

avml_cached() {
  local a=$CACHE/avml/avml
  [[ -x $a && "$(cat "$CACHE/avml/version" 2>/dev/null)" == "avml $AVML_VERSION" ]] && is_static "$a"
}

build_avml() {
  if avml_cached; then
    log "avml: cached: $("$CACHE/avml/avml" --version) (static)"
    return 0
  fi
  # cargo from rustup lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
  local cargo
  cargo=$(PATH=$PATH:${HOME:-/root}/.cargo/bin command -v cargo || true)
  [[ -n $cargo ]] || die "avml: cargo not found (PATH or ~/.cargo/bin); the Rust toolchain is needed to build avml"
  local b=$CACHE/build/avml t
  rm -rf "$b/root" && mkdir -p "$b"
  t=$(now_ms)
  log "avml: building avml $AVML_VERSION with cargo install (static, no default features)"
  # --target: with +crt-static in RUSTFLAGS and no --target, cargo applies the flag to build scripts and
  # proc macros too, which cannot be static ("cannot produce proc-macro ... does not support these crate
  # types"); with an explicit target RUSTFLAGS reaches only the target artifacts. --locked: the crate's
  # own Cargo.lock. Its own target directory: never the repository's target/ (another build may be using
  # it).
  if ! RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR=$b/target \
      timeout 1800 "$cargo" install avml --version "=$AVML_VERSION" --locked --no-default-features \
      --target x86_64-unknown-linux-gnu --root "$b/root" >"$b/build.log" 2>&1; then
    tail -n 30 "$b/build.log" >&2
    die "avml: cargo install avml $AVML_VERSION failed (log: $b/build.log)"
  fi
  local a=$b/root/bin/avml
  is_static "$a" || die "avml: $a is not static: $(ldd "$a" 2>&1 | head -n 3)"
  local v
  v=$("$a" --version) || die "avml: $a --version failed"
  [[ $v == "avml $AVML_VERSION" ]] || die "avml: built '$v', want avml $AVML_VERSION"
  mkdir -p "$CACHE/avml"
  install -m 0755 "$a" "$CACHE/avml/avml.new"
  mv "$CACHE/avml/avml.new" "$CACHE/avml/avml"
  echo "$v" >"$CACHE/avml/version"
  [[ ${SYNQ_TOOLS_KEEP_BUILD:-0} == 1 ]] || rm -rf "$b"
  log "avml: built $v in $(secs "$t" "$(now_ms)")s ($(stat -c %s "$CACHE/avml/avml") bytes, static; ldd: $(ldd "$CACHE/avml/avml" 2>&1 | head -n 1 | tr -s ' \t' ' '))"
}

# ---------------------------------------------------------------------------------------------------------
# Per kernel: what is cached.

lime_stamp() { echo "release=$(cat "$KCACHE/$1/release") recipe=$RECIPE builder=$(builder_of "$1")"; }

lime_cached() {
  local d=$CACHE/$1
  if [[ -s $d/lime.ko && "$(head -n 1 "$d/lime.info" 2>/dev/null)" == "$(lime_stamp "$1")" ]]; then
    return 0
  fi
  [[ ${SYNQ_TOOLS_RETRY_LIME:-0} != 1 && -s $d/lime.unavailable \
    && "$(head -n 1 "$d/lime.unavailable")" == "$(lime_stamp "$1")" ]]
}

virtio_cached() {
  local d=$CACHE/$1/virtio
  [[ -f $d/order && "$(cat "$d/stamp" 2>/dev/null)" == "release=$(cat "$KCACHE/$1/release") recipe=$RECIPE" ]]
}

# ---------------------------------------------------------------------------------------------------------
# The private apt state (only when something must be downloaded).

apt_ready=0
apt_ready() {
  [[ $apt_ready == 0 ]] || return 0
  local suites=() id
  for id in "${ALL_IDS[@]}"; do suites+=("$(suite_of "$id")"); done
  apt_private_setup "$CACHE/.apt" synq-tools.list "${suites[@]}"
  log "apt update (${suites[*]}) from the machine's mirror"
  apt_update
  apt_ready=1
}

# download DIR PKG=VERSION...: apt-get download into DIR (emptied first).
download() {
  local dir=$1
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && timeout 600 apt-get "${APT_OPTS[@]}" -qq download "$@" </dev/null) \
    || die "apt-get download $* failed"
}

# The version of PKG in SUITE (main), from the private lists.
version_in() {
  apt-cache "${APT_OPTS[@]}" madison "$1" </dev/null | awk -F' *[|] *' -v s=" $2/main " 'index($3, s) { print $2; exit }'
}

# ---------------------------------------------------------------------------------------------------------
# virtio modules

# modinfo_depends KO: the depends= field of a module's .modinfo (comma-separated, may be empty).
modinfo_depends() {
  objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null | tr '\0' '\n' | sed -n 's/^depends=//p'
}

fetch_virtio() {
  local id=$1 release pkgline pkg ver dir ex m
  release=$(cat "$KCACHE/$id/release")
  if virtio_cached "$id"; then
    log "$id: virtio modules cached: $(tr '\n' ' ' <"$CACHE/$id/virtio/order")"
    return 0
  fi
  apt_ready
  pkgline=$(cat "$KCACHE/$id/package")
  pkg=${pkgline%% *}
  ver=${pkgline##* }
  dir=$CACHE/.apt/debs/image-$id
  log "$id: downloading $pkg=$ver for its virtio modules"
  download "$dir" "$pkg=$ver"
  ex=$CACHE/build/image-$id
  rm -rf "$ex" && mkdir -p "$ex"
  dpkg-deb --fsys-tarfile "$dir"/*.deb | tar -x -C "$ex" --wildcards \
    '*/kernel/drivers/virtio/*.ko*' '*/kernel/drivers/block/virtio_blk.ko*' 2>/dev/null || true
  local out=$CACHE/$id/virtio.new
  rm -rf "$out" && mkdir -p "$out"
  # Decompressed copies of every module found (trixie ships .ko.xz), by module name.
  local f name
  while IFS= read -r f; do
    name=$(basename "$f")
    name=${name%%.ko*}
    case $f in
      *.ko.xz) xz -dc "$f" >"$out/$name.ko" ;;
      *.ko.zst) die "$id: $f is zstd-compressed; add zstd support here" ;;
      *.ko) cp "$f" "$out/$name.ko" ;;
    esac
  done < <(find "$ex" -name '*.ko*' -type f)
  # Depth-first from the roots: a module's dependencies before it. A root that is not a module must be built
  # in (checked against the config), else the guest could not see its disks.
  local order=()
  declare -A seen=()
  visit() {
    local m=$1 d
    [[ -z ${seen[$m]:-} ]] || return 0
    seen[$m]=1
    [[ -s $out/$m.ko ]] || die "$id: module $m is needed but not in $pkg"
    for d in $(modinfo_depends "$out/$m.ko" | tr ',' ' '); do visit "$d"; done
    order+=("$m")
  }
  local sym
  for m in "${VIRTIO_ROOTS[@]}"; do
    sym=CONFIG_$(tr '[:lower:]' '[:upper:]' <<<"$m")
    if grep -qx "$sym=y" "$KCACHE/$id/config"; then
      continue
    elif grep -qx "$sym=m" "$KCACHE/$id/config"; then
      visit "$m"
    else
      die "$id: $sym is neither =y nor =m in the kernel's config: no virtio disks in the guest"
    fi
  done
  # Keep only what is loaded.
  for f in "$out"/*.ko; do
    name=$(basename "$f" .ko)
    [[ -n ${seen[$name]:-} ]] || rm -f "$f"
  done
  printf '%s\n' "${order[@]}" >"$out/order"
  [[ ${#order[@]} -gt 0 ]] || : >"$out/order"
  echo "release=$release recipe=$RECIPE" >"$out/stamp"
  rm -rf "$CACHE/$id/virtio" && mv "$out" "$CACHE/$id/virtio"
  [[ ${SYNQ_TOOLS_KEEP_BUILD:-0} == 1 ]] || rm -rf "$ex" "$dir"
  log "$id: virtio modules (insmod order): $(tr '\n' ' ' <"$CACHE/$id/virtio/order")(built in:" \
    "$(grep -E '^CONFIG_(VIRTIO|VIRTIO_PCI|VIRTIO_BLK)=y' "$KCACHE/$id/config" | tr '\n' ' '))"
}

# ---------------------------------------------------------------------------------------------------------
# LiME

# lime_unavailable ID REASON...: records why LiME cannot be had for this kernel (the snapshot test then
# reports the LiME snapshots of that kernel as unavailable, never as passed).
lime_unavailable() {
  local id=$1
  shift
  mkdir -p "$CACHE/$id"
  rm -f "$CACHE/$id/lime.ko" "$CACHE/$id/lime.info"
  { lime_stamp "$id"; printf '%s\n' "$@"; } >"$CACHE/$id/lime.unavailable"
  log "$id: LiME UNAVAILABLE: $*"
  log "$id: recorded in $CACHE/$id/lime.unavailable (SYNQ_TOOLS_RETRY_LIME=1 tries again)"
}

# The packages a kernel's headers need: the headers, their -common and linux-kbuild-*, all at the headers'
# version; and the suite's lime-forensics-dkms.
header_pkgs() {
  local release=$1 hver deps
  hver=$(apt-cache "${APT_OPTS[@]}" show --no-all-versions "linux-headers-$release" </dev/null | sed -n 's/^Version: //p' | head -n 1)
  [[ -n $hver ]] || return 1
  deps=$(apt-cache "${APT_OPTS[@]}" show --no-all-versions "linux-headers-$release" </dev/null | sed -n 's/^Depends: //p' | head -n 1)
  echo "linux-headers-$release=$hver"
  grep -oE 'linux-headers-[^ ,]+-common' <<<"$deps" | head -n 1 | sed "s/\$/=$hver/"
  grep -oE 'linux-kbuild-[^ ,]+' <<<"$deps" | head -n 1 | sed "s/\$/=$hver/"
}

# The compiler the headers name (CC = ... gcc-NN in .kernelvariables, which the flavour's Makefile
# includes), e.g. gcc-14; empty if none.
headers_cc() {
  cat "$1/.kernelvariables" "$1/Makefile" 2>/dev/null | grep -E '^CC *=' | grep -oE 'gcc-[0-9]+' | head -n 1 || true
}

# Checks a freshly built module and installs it with its info file.
install_lime() {
  local id=$1 ko=$2 builder=$3 cc=$4 note=$5 took=$6 release vm
  release=$(cat "$KCACHE/$id/release")
  vm=$(strings -a "$ko" | grep -m 1 '^vermagic=' || true)
  if [[ $vm != "vermagic=$release "* ]]; then
    lime_unavailable "$id" "the built lime.ko has '$vm', not vermagic=$release"
    return 0
  fi
  install -m 0644 "$ko" "$CACHE/$id/lime.ko"
  {
    lime_stamp "$id"
    echo "lime_package=$lime_pkg"
    echo "builder=$builder"
    echo "compiler=$cc"
    echo "kernel_compiler=$(sed -n 's/^CONFIG_CC_VERSION_TEXT=//p' "$KCACHE/$id/config" | tr -d '"')"
    echo "note=$note"
    echo "$vm"
    echo "build_s=$took"
    echo "bytes=$(stat -c %s "$CACHE/$id/lime.ko")"
  } >"$CACHE/$id/lime.info"
  rm -f "$CACHE/$id/lime.unavailable"
  log "$id: lime.ko built ($builder, $cc) in ${took}s: $vm, $(stat -c %s "$CACHE/$id/lime.ko") bytes"
}

lime_pkg=
build_lime() {
  local id=$1 release suite lver debs root src t
  release=$(cat "$KCACHE/$id/release")
  suite=$(suite_of "$id")
  if lime_cached "$id"; then
    if [[ -s $CACHE/$id/lime.ko ]]; then
      log "$id: lime.ko cached ($(sed -n 's/^vermagic=//p' "$CACHE/$id/lime.info"), $(sed -n 's/^compiler=//p' "$CACHE/$id/lime.info"))"
    else
      log "$id: LiME UNAVAILABLE (cached verdict): $(tail -n +2 "$CACHE/$id/lime.unavailable" | tr '\n' ' ')"
    fi
    return 0
  fi
  apt_ready
  mkdir -p "$CACHE/$id"
  t=$(now_ms)
  lver=$(version_in lime-forensics-dkms "$suite")
  if [[ -z $lver ]]; then
    lime_unavailable "$id" "no lime-forensics-dkms in $suite/main"
    return 0
  fi
  lime_pkg="lime-forensics-dkms=$lver ($suite)"
  local pkgs
  if ! pkgs=$(header_pkgs "$release") || [[ $(wc -l <<<"$pkgs") -ne 3 ]]; then
    lime_unavailable "$id" "linux-headers-$release (with its -common and linux-kbuild packages) not found in the mirror's $suite"
    return 0
  fi
  debs=$CACHE/.apt/debs/lime-$id
  log "$id: downloading lime-forensics-dkms=$lver and $(tr '\n' ' ' <<<"$pkgs")"
  # shellcheck disable=SC2046  # one package per line
  download "$debs" "lime-forensics-dkms=$lver" $(cat <<<"$pkgs")
  local log_f=$CACHE/$id/lime-build.log
  : >"$log_f"
  if [[ $(builder_of "$id") == host ]]; then
    root=$CACHE/build/lime-$id
    rm -rf "$root" && mkdir -p "$root"
    local d
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root/fs"; done
    local hdir=$root/fs/usr/src/linux-headers-$release
    [[ -f $hdir/Makefile ]] || die "$id: $hdir/Makefile missing after unpacking the headers"
    # The per-flavour Makefile includes the -common tree by absolute path (/usr/src/...): point it at our
    # private copy instead of the host's /usr/src. (Every other link in these packages is relative.)
    sed -i "s|^include /usr/src/|include $root/fs/usr/src/|" "$hdir/Makefile"
    src=$(find "$root/fs/usr/src" -maxdepth 1 -type d -name 'lime-forensics-*' | head -n 1)
    [[ -n $src ]] || die "$id: no /usr/src/lime-forensics-* in lime-forensics-dkms=$lver"
    local want host_cc note=""
    want=$(headers_cc "$hdir")
    [[ -n $want ]] || die "$id: no gcc-NN in $hdir/.kernelvariables"
    if command -v "$want" >/dev/null; then
      host_cc=$want
    else
      host_cc=gcc-12
      note="the kernel was built with $want, which Debian 12 does not have; built with $host_cc"
    fi
    command -v "$host_cc" >/dev/null || die "$id: $host_cc missing (run setup-host.sh)"
    log "$id: building LiME on the host with $host_cc against linux-headers-$release${note:+ ($note)}"
    # CC on the command line overrides the headers' CC (gcc-NN of the kernel's build); nothing else of the
    # environment leaks in (ARCH, CROSS_COMPILE, CFLAGS...).
    if ! timeout 600 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C \
        make -C "$hdir" M="$src" CC="$host_cc" -j2 modules >>"$log_f" 2>&1 \
      || ! strip --strip-debug "$src/lime.ko" >>"$log_f" 2>&1; then
      tail -n 20 "$log_f" >&2
      lime_unavailable "$id" "building lime-forensics-dkms=$lver against linux-headers-$release with the host's $host_cc failed (log: $log_f): $(grep -m 1 -E 'error|Error' "$log_f" || tail -n 1 "$log_f")"
      return 0
    fi
    install_lime "$id" "$src/lime.ko" host "$host_cc" "$note" "$(secs "$t" "$(now_ms)")"
  else
    build_lime_chroot "$id" "$release" "$suite" "$debs" "$log_f" "$t"
  fi
  [[ ${SYNQ_TOOLS_KEEP_BUILD:-0} == 1 ]] || rm -rf "$CACHE/build/lime-$id" "$debs"
}

# A chroot of the kernel's own suite, made with debootstrap from the machine's mirror, with the compiler its
# headers name, make and pahole (module BTF: the headers carry vmlinux). The header packages are unpacked
# inside it, so their absolute paths (/usr/src/...) are right as they are.
build_lime_chroot() {
  local id=$1 release=$2 suite=$3 debs=$4 log_f=$5 t=$6 croot cc uri tb
  croot=$CACHE/build/chroot-$suite
  command -v debootstrap >/dev/null || die "debootstrap missing (run setup-host.sh)"
  # The compiler: from the headers' .kernelvariables (unpacked to a scratch directory first).
  local scratch=$CACHE/build/lime-$id
  rm -rf "$scratch" && mkdir -p "$scratch"
  dpkg-deb -x "$(ls "$debs"/linux-headers-"$release"_*.deb)" "$scratch/fs"
  cc=$(headers_cc "$scratch/fs/usr/src/linux-headers-$release")
  [[ -n $cc ]] || die "$id: no gcc-NN in linux-headers-$release's .kernelvariables"
  uri=$(mirror_uri)
  chroot_cleanup "$croot"
  rm -rf --one-file-system "$croot"
  tb=$(now_ms)
  log "$id: debootstrap $suite (minbase + $cc, make, pahole) into $croot for the LiME build (~1 min)"
  if ! timeout 1200 debootstrap --variant=minbase --components=main --keyring="$KEYRING" \
      --include="$cc,make,libc6-dev,libelf1t64,dwarves" "$suite" "$croot" "$uri" >>"$log_f" 2>&1; then
    chroot_cleanup "$croot"
    tail -n 20 "$log_f" >&2
    lime_unavailable "$id" "debootstrap of a $suite chroot with $cc (needed: the kernel was built with $cc, its headers use gcc >= 14 options and its kbuild tools need glibc >= 2.38) failed (log: $log_f): $(grep -m 1 -E '^E:' "$log_f" || tail -n 1 "$log_f")"
    return 0
  fi
  chroot_cleanup "$croot"
  log "$id: $suite chroot ready in $(secs "$tb" "$(now_ms)")s ($(du -sm "$croot" | cut -f1) MB)"
  local d
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$croot"; done
  local src
  src=$(cd "$croot" && find usr/src -maxdepth 1 -type d -name 'lime-forensics-*' | head -n 1)
  [[ -n $src ]] || die "$id: no /usr/src/lime-forensics-* in the lime package"
  rm -rf "$croot/build" && cp -r "$croot/$src" "$croot/build"
  log "$id: building LiME in the $suite chroot with $cc against linux-headers-$release"
  if ! timeout 600 chroot "$croot" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C \
      make -C "/usr/src/linux-headers-$release" M=/build -j2 modules >>"$log_f" 2>&1 \
    || ! chroot "$croot" strip --strip-debug /build/lime.ko >>"$log_f" 2>&1; then
    tail -n 20 "$log_f" >&2
    lime_unavailable "$id" "building LiME in a $suite chroot with $cc failed (log: $log_f): $(grep -m 1 -E 'error|Error' "$log_f" || tail -n 1 "$log_f")"
  else
    install_lime "$id" "$croot/build/lime.ko" "chroot:$suite" \
      "$(chroot "$croot" "$cc" --version | head -n 1)" "" "$(secs "$t" "$(now_ms)")"
  fi
  if [[ ${SYNQ_TOOLS_KEEP_BUILD:-0} != 1 ]]; then
    chroot_cleanup "$croot"
    rm -rf --one-file-system "$croot"
  fi
}

# Unmounts whatever debootstrap may have left mounted inside the chroot (it mounts /proc and /sys while it
# configures packages), deepest first, so that rm -rf stays inside it.
chroot_cleanup() {
  local root=$1 m
  [[ -d $root ]] || return 0
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
}

t0=$(now_ms)
build_avml
for id in "${ids[@]}"; do
  fetch_virtio "$id"
  build_lime "$id"
done
for id in "${ids[@]}"; do
  if [[ -s $CACHE/$id/lime.ko ]]; then
    lime="lime.ko ($(sed -n 's/^compiler=//p' "$CACHE/$id/lime.info"))"
  else
    lime="LiME UNAVAILABLE: $(tail -n +2 "$CACHE/$id/lime.unavailable" | tr '\n' ' ')"
  fi
  printf '%-5s %-24s virtio: %-60s %s\n' "$id" "$(cat "$KCACHE/$id/release")" \
    "$(tr '\n' ' ' <"$CACHE/$id/virtio/order")" "$lime"
done
log "done in $(secs "$t0" "$(now_ms)")s"
