#!/usr/bin/env bash
# Installs, from the machine's own Debian mirror, what the real-kernel harness
# needs on the host. Idempotent: when every package is already installed it
# returns at once without touching apt (no `apt-get update` round trip).
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "setup-host.sh: must run as root (apt-get install)" >&2
  exit 1
fi

# qemu-system-x86: boots the Debian kernels (TCG; no KVM here).
# busybox-static:  the guest's userland (sh, mount, ip, insmod, unshare...).
# cpio:            packs the initramfs (newc).
# gcc, libc6-dev:  build the static fixture (gcc -static needs libc.a).
# xz-utils:        trixie ships modules as .ko.xz.
# iproute2:        `ss`, copied into the guest as the comparison baseline.
# make:            LiME module builds (fetch-tools.sh); binutils (strip, readelf, objcopy) comes with gcc.
# debootstrap:     the trixie chroot in which fetch-tools.sh builds LiME for 6.12 (gcc-14, glibc 2.38+).
# time:            GNU /usr/bin/time, whose %M is the peak RSS of each synq run in mutate_dumps.py.
# ca-certificates is not needed: the mirror is reached the way apt already does.
# prometheus, prometheus-node-exporter, curl: the real Prometheus (and promtool) and node_exporter that read
#                  synq's exposition in prometheus.sh.
# qemu-system-arm: qemu-system-aarch64, which boots the arm64 kernels (dump.sh arm64-*).
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: the arm64 guests' static fixture (fixture.c cross-compiled;
#                  the arm64 busybox-static and ss come as arm64 .debs through fetch-kernels.sh's private apt
#                  state, unpacked, never installed here).
packages=(qemu-system-x86 busybox-static cpio gcc libc6-dev xz-utils iproute2 make debootstrap time
  prometheus prometheus-node-exporter curl qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross)

missing=()
for p in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ $status != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup-host: all present (${packages[*]})"
  exit 0
fi

echo "setup-host: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps qemu from dragging in a GUI stack.
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
echo "setup-host: done"
