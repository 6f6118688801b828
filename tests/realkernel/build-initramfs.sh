#!/usr/bin/env bash
# Builds the guest's initramfs for one cached kernel:
#   build-initramfs.sh KERNEL_ID OUT.cpio.gz
# Contents: busybox-static with its applet links, /init (init.sh), netns-setup,
# the static synq-fixture, synq from ${SYNQ_BIN:-target/release/synq} (with the
# libraries ldd lists, if it is dynamic), the host's `ss` with its libraries,
# the kernel's dummy/qemu_fw_cfg/inet_diag/tcp_diag modules and its config, and
# its real System.map as /boot/System.map-<release> (~4.5 MB; synq's default live
# symbol chain reads it before /proc/kallsyms).
# With SYNQ_SNAPSHOT_TOOLS=1 (snapshot.sh), also what synq.mode=snapshot needs,
# from fetch-tools.sh's cache ${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}: the
# static avml (/bin/avml), the static synq-snapcopy (snapcopy.c), the kernel's
# virtio modules (/lib/modules/virtio/*.ko and their insmod order) and lime.ko
# (/lib/modules/lime.ko), or, where fetch-tools.sh recorded that LiME cannot be
# built for this kernel, the reason (/etc/synq-lime-unavailable).
# With SYNQ_STATIC_BIN=PATH (run.sh's static entry), a guest with no libc at all:
# that static synq as /bin/synq, no `ss` (it needs libc) and no shared library
# or loader anywhere (checked here; the guest records it again).
# A missing synq binary is NOT an error here: the guest records it and
# check.py fails on it, so the ground-truth part still runs and is visible.
# An arm64 kernel id (fetch-kernels.sh's arm64-*, whose cache holds arch = arm64) gets an arm64 guest: the
# arm64 busybox-static and ss (with its libraries and loader) that fetch-kernels.sh unpacked into
# <cache>/arm64-userland, the fixture cross-compiled statically (aarch64-linux-gnu-gcc), the modules that are
# not built in (/etc/synq-builtin-modules lists those that are) plus the results channel's virtio modules
# (/lib/modules/results/, insmod order in its `order`). synq there is an aarch64 program, never SYNQ_BIN (the
# host's x86_64 one): SYNQ_ARM64_BIN=PATH (a static aarch64 synq, checked: ELF machine AArch64, no
# interpreter) or SYNQ_ARM64_BIN=build (the output of build-arm64-synq.sh, which builds
# ${SYNQ_ARM64_SRC:-this repository}); run.sh's arm64 entries give it. With it, the kernel's real System.map,
# where fetch-kernels.sh cached one (arm64-6.1, from its -dbg package), goes to /etc/synq-system-map (not
# /boot: the guest decides where it goes, see init.sh's arm64 notes). Without SYNQ_ARM64_BIN (dump.sh: dump
# mode runs no synq in the guest): no synq and no System.map. The snapshot, static and bench extras are
# x86_64 only.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}

die() { echo "build-initramfs: ERROR: $*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: build-initramfs.sh KERNEL_ID OUT.cpio.gz"
id=$1
out=$2
kdir=$CACHE/$id
[[ -s $kdir/release ]] || die "kernel $id not in $kdir (run fetch-kernels.sh $id)"
[[ $(id -u) -eq 0 ]] || die "must run as root (mknod /dev/console)"

synq_bin=${SYNQ_BIN:-target/release/synq}
[[ $synq_bin == /* ]] || synq_bin=$ROOT/$synq_bin
arch=$(cat "$kdir/arch" 2>/dev/null || echo amd64)
userland=$CACHE/arm64-userland
if [[ $arch == arm64 ]]; then
  for v in SYNQ_SNAPSHOT_TOOLS SYNQ_STATIC_BIN SYNQ_BENCH_STATIC_BIN SYNQ_BENCH_BEFORE_BIN; do
    [[ -z ${!v:-} || ${!v} == 0 ]] || die "$v is for x86_64 guests; $id is an arm64 kernel"
  done
  [[ -x $userland/busybox && -s $userland/busybox.applets && -x $userland/ss-root/bin/ss ]] \
    || die "the arm64 userland is missing from $userland (run fetch-kernels.sh $id)"
  command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing (run setup-host.sh)"
  arm64_bin=${SYNQ_ARM64_BIN:-}
  if [[ $arm64_bin == build ]]; then
    arm64_bin=$("$HERE/build-arm64-synq.sh" | tail -n 1) || die "build-arm64-synq.sh failed"
  fi
  if [[ -n $arm64_bin ]]; then
    [[ $arm64_bin == /* ]] || arm64_bin=$ROOT/$arm64_bin
    [[ -f $arm64_bin && -x $arm64_bin ]] || die "SYNQ_ARM64_BIN=$arm64_bin is not an executable (build it: build-arm64-synq.sh)"
    hdr=$(LC_ALL=C readelf -h -l "$arm64_bin" 2>&1) || die "readelf $arm64_bin: $hdr"
    grep -qE 'Machine:[[:space:]]+AArch64' <<<"$hdr" || die "$arm64_bin is not an AArch64 program: $(grep -m 1 Machine: <<<"$hdr")"
    ! grep -q 'INTERP' <<<"$hdr" || die "$arm64_bin is dynamic (it has an ELF interpreter); the arm64 guest holds no libc for it"
  fi
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/synq-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# mktemp -d makes it 0700: it becomes the guest's /, which the unprivileged
# synq run (uid 65534) must be able to traverse.
chmod 0755 "$stage"

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc,results,lib/modules}
# The kernel opens /dev/console before /init runs (devtmpfs is mounted later).
mknod "$stage/dev/console" c 5 1

# Copies an ELF program to $stage/$2 and, if it is dynamic, every library ldd
# lists and the loader, at the same paths (so the ELF interpreter path works).
copy_elf() {
  local src=$1 dst=$2 lib
  cp -L "$src" "$stage/$dst"
  if ! ldd "$src" >/dev/null 2>&1; then
    return 0 # static: ldd exits non-zero ("not a dynamic executable")
  fi
  while read -r lib; do
    [[ -n $lib ]] || continue
    mkdir -p "$stage/$(dirname "$lib")"
    [[ -e $stage/$lib ]] || cp -L "$lib" "$stage/$lib"
  done < <(ldd "$src" | awk '/=> \// { print $3; next } $1 ~ /^\// { print $1 }')
}

if [[ $arch == arm64 ]]; then
  # bookworm's arm64 busybox-static; its applets (the same names as the host's, which fetch-kernels.sh
  # checked) at the host busybox's install paths.
  cp "$userland/busybox" "$stage/bin/busybox"
  while read -r applet; do
    [[ -n $applet && ! -e $stage/$applet ]] || continue
    ln -s /bin/busybox "$stage/$applet"
  done <"$userland/busybox.applets"
  aarch64-linux-gnu-gcc -static -O2 -Wall -Wextra -o "$stage/bin/synq-fixture" "$HERE/fixture.c"
  # bookworm's arm64 ss with its libraries and loader, at their Debian paths.
  cp -a "$userland/ss-root/." "$stage/"
  if [[ -n $arm64_bin ]]; then
    cp -L "$arm64_bin" "$stage/bin/synq"
    echo "$arm64_bin" >"$stage/etc/synq-arm64-bin"
    echo "build-initramfs: arm64 guest: busybox, ss and synq-fixture for aarch64; synq from $arm64_bin" >&2
  else
    echo "build-initramfs: arm64 guest: busybox, ss and synq-fixture for aarch64; no synq (no SYNQ_ARM64_BIN:" \
      "the host's is not an aarch64 program, and dump mode runs none in the guest)" >&2
  fi
else
# busybox-static: one binary, a link per applet (sh, mount, ip, insmod, ...).
bb=$(command -v busybox || true)
[[ -n $bb ]] || die "busybox missing (run setup-host.sh)"
if ldd "$bb" >/dev/null 2>&1; then die "$bb is dynamic; install busybox-static"; fi
cp "$bb" "$stage/bin/busybox"
while read -r applet; do
  [[ -n $applet && ! -e $stage/$applet ]] || continue
  ln -s /bin/busybox "$stage/$applet"
done < <("$bb" --list-full)

# The fixture, static so it needs nothing from the guest.
gcc -static -O2 -Wall -Wextra -o "$stage/bin/synq-fixture" "$HERE/fixture.c"

# Debian's ss, the baseline the benchmark compares with.
ss_bin=$(command -v ss || true)
[[ -n $ss_bin ]] || die "ss missing (run setup-host.sh: iproute2)"
rm -f "$stage/bin/ss"
copy_elf "$ss_bin" bin/ss
fi

if [[ $arch == arm64 ]]; then
  :
elif [[ -x $synq_bin ]]; then
  copy_elf "$synq_bin" bin/synq
  echo "build-initramfs: synq from $synq_bin" >&2
else
  echo "build-initramfs: WARNING: no synq binary at $synq_bin; the guest will record it as missing" >&2
fi

for m in dummy qemu_fw_cfg inet_diag tcp_diag rds rds_tcp; do
  if [[ $arch == arm64 ]] && grep -qx "$m" "$kdir/builtin"; then
    echo "$m" >>"$stage/etc/synq-builtin-modules"
    continue
  fi
  [[ -s $kdir/$m.ko ]] || die "$kdir/$m.ko missing (rerun fetch-kernels.sh $id)"
  cp "$kdir/$m.ko" "$stage/lib/modules/$m.ko"
done
if [[ $arch == arm64 ]]; then
  # The results channel's modules (virtio_pci, virtio_console and what they depend on), where not built in.
  [[ -f $kdir/virtio/order ]] || die "$kdir/virtio/order missing (rerun fetch-kernels.sh $id)"
  mkdir -p "$stage/lib/modules/results"
  cp "$kdir/virtio/order" "$stage/lib/modules/results/order"
  while read -r m; do
    [[ -n $m ]] || continue
    cp "$kdir/virtio/$m.ko" "$stage/lib/modules/results/$m.ko"
  done <"$kdir/virtio/order"
fi
cp "$kdir/release" "$stage/etc/synq-kernel-release"
# The user database of a minimal host: synq serve looks its --user (default nobody) up there.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
# The package's config: the guest records its CONFIG_MPTCP line (check.py accepts
# "no MPTCP listener" only from a kernel built without MPTCP).
[[ -s $kdir/config ]] || die "$kdir/config missing (rerun fetch-kernels.sh $id)"
cp "$kdir/config" "$stage/etc/synq-kernel-config"
# The kernel's real System.map where a distribution installs it (fetch-kernels.sh takes it from the -dbg
# package): synq's default live chain reads it, checked against linux_banner, before /proc/kallsyms.
if [[ $arch != arm64 ]]; then
[[ -s $kdir/System.map ]] || die "$kdir/System.map missing (rerun fetch-kernels.sh $id)"
mkdir -p "$stage/boot"
cp "$kdir/System.map" "$stage/boot/System.map-$(cat "$kdir/release")"
elif [[ -n $arm64_bin && -s $kdir/System.map ]]; then
  # arm64 with a live synq: the real System.map where fetch-kernels.sh has one (no CONFIG_KALLSYMS_ALL); the
  # guest puts it in /boot for some runs only.
  cp "$kdir/System.map" "$stage/etc/synq-system-map"
fi

if [[ ${SYNQ_SNAPSHOT_TOOLS:-0} == 1 ]]; then
  tools=${SYNQ_TOOLS_CACHE:-/var/cache/synq-tools}
  [[ -x $tools/avml/avml ]] || die "$tools/avml/avml missing (run fetch-tools.sh $id)"
  if ldd "$tools/avml/avml" >/dev/null 2>&1 && ! ldd "$tools/avml/avml" 2>&1 | grep -q 'statically linked'; then
    die "$tools/avml/avml is dynamic (rerun fetch-tools.sh)"
  fi
  cp "$tools/avml/avml" "$stage/bin/avml"
  gcc -static -O2 -Wall -Wextra -o "$stage/bin/synq-snapcopy" "$HERE/snapcopy.c"
  [[ -f $tools/$id/virtio/order ]] || die "$tools/$id/virtio/order missing (run fetch-tools.sh $id)"
  mkdir -p "$stage/lib/modules/virtio"
  cp "$tools/$id/virtio/order" "$stage/lib/modules/virtio/order"
  while read -r m; do
    [[ -n $m ]] || continue
    [[ -s $tools/$id/virtio/$m.ko ]] || die "$tools/$id/virtio/$m.ko missing (rerun fetch-tools.sh $id)"
    cp "$tools/$id/virtio/$m.ko" "$stage/lib/modules/virtio/$m.ko"
  done <"$tools/$id/virtio/order"
  if [[ -s $tools/$id/lime.ko ]]; then
    cp "$tools/$id/lime.ko" "$stage/lib/modules/lime.ko"
  elif [[ -s $tools/$id/lime.unavailable ]]; then
    tail -n +2 "$tools/$id/lime.unavailable" >"$stage/etc/synq-lime-unavailable"
  else
    die "neither $tools/$id/lime.ko nor lime.unavailable (run fetch-tools.sh $id)"
  fi
fi

if [[ -n ${SYNQ_STATIC_BIN:-} ]]; then
  static_bin=$SYNQ_STATIC_BIN
  [[ $static_bin == /* ]] || static_bin=$ROOT/$static_bin
  [[ -x $static_bin ]] || die "SYNQ_STATIC_BIN=$SYNQ_STATIC_BIN is not an executable (build it: packaging/build-static.sh)"
  if ldd "$static_bin" >/dev/null 2>&1 && ! ldd "$static_bin" 2>&1 | grep -q 'statically linked'; then
    die "$static_bin is dynamic: $(ldd "$static_bin" | tr '\n' ' ') (build it with packaging/build-static.sh)"
  fi
  # ss and the libraries copy_elf brought (its and a dynamic synq's): a guest without any libc.
  rm -rf "$stage/bin/ss" "$stage/lib64" "$stage/lib/x86_64-linux-gnu" "$stage/usr/lib" "$stage/usr/lib64"
  cp -L "$static_bin" "$stage/bin/synq"
  left=$(cd "$stage" && find . \( -name 'ld-linux*' -o -name 'libc.so*' -o -name 'libc-*' -o -name '*.so' \
    -o -name '*.so.*' \) -print)
  [[ -z $left ]] || die "the static guest still holds shared libraries: $left"
  echo "$static_bin" >"$stage/etc/synq-static"
  echo "build-initramfs: static synq from $static_bin; no ss, no shared library" >&2
fi

# With SYNQ_BENCH_STATIC_BIN=PATH (bench.sh), a static synq beside the dynamic one, as /bin/synq-static:
# the benchmark times both in the same guest (start-up cost of dynamic linking).
if [[ -n ${SYNQ_BENCH_STATIC_BIN:-} ]]; then
  [[ -x $SYNQ_BENCH_STATIC_BIN ]] || die "SYNQ_BENCH_STATIC_BIN=$SYNQ_BENCH_STATIC_BIN is not an executable"
  cp -L "$SYNQ_BENCH_STATIC_BIN" "$stage/bin/synq-static"
fi
# With SYNQ_BENCH_BEFORE_BIN=PATH (bench.sh), an earlier synq build as /bin/synq-before (dynamic, the same
# libraries): old and new timed in one guest.
if [[ -n ${SYNQ_BENCH_BEFORE_BIN:-} ]]; then
  [[ -x $SYNQ_BENCH_BEFORE_BIN ]] || die "SYNQ_BENCH_BEFORE_BIN=$SYNQ_BENCH_BEFORE_BIN is not an executable"
  copy_elf "$SYNQ_BENCH_BEFORE_BIN" bin/synq-before
fi

install -m 0755 "$HERE/init.sh" "$stage/init"
install -m 0755 "$HERE/netns-setup.sh" "$stage/bin/netns-setup"

mkdir -p "$(dirname "$out")"
# newc is the format the kernel unpacks; -R 0:0 makes every file root's.
(cd "$stage" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out ($(du -h "$out" | cut -f1), kernel $(cat "$kdir/release"))" >&2
