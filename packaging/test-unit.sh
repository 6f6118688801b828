#!/bin/bash
# The Debian package and its synq-serve.service for real: boots Debian 12 (its systemd 252 as PID 1, a Debian
# kernel, default 6.1) under QEMU with the .deb installed by dpkg, and checks in the guest that
#   - installing neither enabled nor started synq-serve.service;
#   - `systemctl start synq-serve` runs it under the unit's whole sandbox, serves /metrics on 127.0.0.1:9813
#     with synq's own listener in it, as uid/gid 65534 without capabilities, no_new_privs, seccomp (systemd's
#     filter and synq's: 2 filters);
#   - `systemctl stop` ends it cleanly (Result=success);
#   - the settings the unit leaves out would break it (each in a unit of its own, on synq --total):
#     PrivateDevices=yes, ProtectKernelTunables=yes, SystemCallFilter=@system-service without seccomp; and
#     (recorded, not judged) ProtectKernelLogs=yes, which kernels >= 6.0 survive and older ones do not.
#
#   packaging/test-unit.sh [DEB]          # default DEB: packaging/build-deb.sh's
#   SYNQ_UNIT_KERNEL=5.10 packaging/test-unit.sh
#
# Root, on Debian 12; installs qemu, debootstrap, cpio via tests/realkernel/setup-host.sh, the kernel via
# fetch-kernels.sh, and caches a minimal bookworm root with systemd and curl (debootstrap, ~2 min once) in
# ${SYNQ_UNIT_CACHE:-/var/cache/synq-unit}. Output: target/unit-test/<kernel id>/{console.log,results.txt}.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
rk=$root/tests/realkernel
cache=${SYNQ_UNIT_CACHE:-/var/cache/synq-unit}
kid=${SYNQ_UNIT_KERNEL:-6.1}
kcache=${SYNQ_KERNEL_CACHE:-/var/cache/synq-kernels}
out=$root/target/unit-test/$kid
die() { echo "test-unit: $*" >&2; exit 1; }
log() { echo "test-unit: $*" >&2; }

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot dpkg -i)"
"$rk/setup-host.sh" >&2
"$rk/fetch-kernels.sh" "$kid" >/dev/null
deb=${1:-}
if [[ -z $deb ]]; then
    deb=$("$here/build-deb.sh" | tail -n 1) || die "build-deb.sh failed"
fi
[[ -f $deb ]] || die "no package at $deb"

# The cached root: bookworm minbase + systemd as init + curl, from the machine's mirror.
tarball=$cache/bookworm-systemd.tar
if [[ ! -s $tarball ]]; then
    # shellcheck source=tests/realkernel/aptlib.sh
    . "$rk/aptlib.sh"
    mkdir -p "$cache"
    tmp=$cache/build
    rm -rf --one-file-system "$tmp"
    log "debootstrap bookworm (minbase, systemd, curl) into $tmp (~2 min, once)"
    timeout 1800 debootstrap --variant=minbase --components=main --keyring="$KEYRING" \
        --include=systemd,systemd-sysv,curl bookworm "$tmp" "$(mirror_uri)" >"$cache/debootstrap.log" 2>&1 ||
        { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
    while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v r="$tmp/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/usr/share/doc "$tmp"/usr/share/man \
        "$tmp"/usr/share/locale "$tmp"/usr/share/info
    tar -C "$tmp" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$tmp"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/synq-unit.XXXXXX")
trap 'rm -rf --one-file-system "$stage"' EXIT
chmod 0755 "$stage"
tar -C "$stage" -xf "$tarball"
mkdir -p "$out"
cp "$deb" "$stage/tmp/synq.deb"
# dpkg -i as an administrator would (the maintainer scripts run; no systemd runs in the chroot, so a start
# would be skipped anyway: what matters is that nothing enables the unit).
chroot "$stage" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    dpkg -i /tmp/synq.deb >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log" >&2; die "dpkg -i failed in the guest root"; }
rm -f "$stage/tmp/synq.deb"
enabled_links=$(find "$stage/etc/systemd/system" -name 'synq-serve*' 2>/dev/null | sed "s#^$stage##")

# The guest's test: a oneshot unit after boot, writing KEY=VALUE lines and logs to ttyS1, then poweroff.
cat >"$stage/usr/local/sbin/synq-unit-test" <<'EOS'
#!/bin/sh
exec >/dev/ttyS1 2>&1
echo "===BEGIN==="
echo "kernel=$(uname -r)"
echo "systemd=$(systemctl --version | head -n 1)"
echo "is_enabled=$(systemctl is-enabled synq-serve.service 2>&1)"
echo "is_active_before=$(systemctl is-active synq-serve.service 2>&1)"
systemctl start synq-serve.service; echo "start_rc=$?"
i=0
while [ $i -lt 120 ] && ! curl -sf -o /tmp/metrics.txt http://127.0.0.1:9813/metrics; do sleep 0.5; i=$((i + 1)); done
echo "scrape_polls=$i"
echo "metrics_samples=$(grep -c '^synq_' /tmp/metrics.txt 2>/dev/null)"
echo "own_listener=$(grep -c '^synq_listener_sockets{.*addr="127.0.0.1".*port="9813"' /tmp/metrics.txt 2>/dev/null)"
pid=$(systemctl show -p MainPID --value synq-serve.service)
echo "main_pid=$pid"
for f in Uid Gid CapEff CapPrm CapBnd NoNewPrivs Seccomp Seccomp_filters; do
  echo "status_$f=$(awk -v f="$f:" '$1 == f { $1 = ""; print substr($0, 2) }' /proc/"$pid"/status 2>/dev/null)"
done
echo "--- journal (synq-serve) ---"
journalctl -u synq-serve.service --no-pager -o cat 2>&1 | tail -n 15
echo "--- end journal ---"
systemctl stop synq-serve.service; echo "stop_rc=$?"
for p in ActiveState Result ExecMainStatus; do echo "after_stop_$p=$(systemctl show -p $p --value synq-serve.service)"; done
# The settings the unit cannot use: each on a one-shot synq --total as root, in a unit of its own (systemd-run
# would need D-Bus, which this minimal root lacks; systemctl talks to systemd directly).
probe() {
  name=$1
  u=synq-probe-$name.service
  printf '[Service]\nType=oneshot\nExecStart=/usr/bin/synq --total\n%s\n' "$2" >/run/systemd/system/$u
  systemctl daemon-reload
  systemctl start $u >/dev/null 2>&1; rc=$?
  echo "probe_${name}_rc=$rc"
  # synq's own last word, else how systemd saw the process end (a seccomp kill says nothing itself).
  msg=$(journalctl -u $u --no-pager -o cat SYSLOG_IDENTIFIER=synq 2>&1 | tail -n 1)
  [ -n "$msg" ] || msg=$(journalctl -u $u --no-pager -o cat 2>&1 | grep -m 1 'Main process exited')
  echo "probe_${name}_out=$msg"
}
mkdir -p /run/systemd/system
probe plain ""
probe private_devices PrivateDevices=yes
probe protect_kernel_tunables ProtectKernelTunables=yes
probe syscall_filter_without_seccomp SystemCallFilter=@system-service
probe protect_kernel_logs ProtectKernelLogs=yes
echo "===END==="
sync
systemctl --no-block poweroff
EOS
chmod 0755 "$stage/usr/local/sbin/synq-unit-test"
cat >"$stage/etc/systemd/system/synq-unit-test.service" <<'EOS'
[Unit]
Description=synq packaging test
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/synq-unit-test
[Install]
WantedBy=multi-user.target
EOS
mkdir -p "$stage/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/synq-unit-test.service "$stage/etc/systemd/system/multi-user.target.wants/"
# No login prompts on the serial lines (ttyS1 carries the results).
ln -sf /dev/null "$stage/etc/systemd/system/serial-getty@ttyS1.service"
ln -sf /dev/null "$stage/etc/systemd/system/serial-getty@ttyS0.service"
echo synq-unit-test >"$stage/etc/hostname"

(cd "$stage" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$out/initrd.gz"
rm -f "$out/console.log" "$out/results.txt"
log "booting $kid ($(cat "$kcache/$kid/release")) with systemd as PID 1 ($(du -h "$out/initrd.gz" | cut -f1) initramfs)"
t0=$SECONDS
timeout -k 10 900 qemu-system-x86_64 -accel tcg -m 1536 -smp 1 -cpu max,-la57 -display none -vga none \
    -monitor none -no-reboot -nic none -kernel "$kcache/$kid/vmlinuz" -initrd "$out/initrd.gz" \
    -append "console=ttyS0 rdinit=/sbin/init panic=-1 quiet systemd.show_status=0" \
    -serial "file:$out/console.log" -serial "file:$out/results.txt" </dev/null >"$out/qemu.log" 2>&1 ||
    die "qemu failed or timed out after $((SECONDS - t0))s (console: $out/console.log)"
rm -f "$out/initrd.gz"
tr -d '\r' <"$out/results.txt" >"$out/results.clean" && mv "$out/results.clean" "$out/results.txt"
grep -q '^===END===' "$out/results.txt" || die "the guest sent no complete results in $((SECONDS - t0))s (console: $out/console.log)"
log "guest ran $((SECONDS - t0))s"

val() { sed -n "s/^$1=//p" "$out/results.txt" | head -n 1; }
fails=()
want() { # NAME ACTUAL EXPECTED-REGEX
    [[ $2 =~ ^($3)$ ]] || fails+=("$1: '$2', want /$3/")
}
want "unit links after dpkg -i" "$enabled_links" ""
want "is-enabled" "$(val is_enabled)" "disabled"
want "is-active before start" "$(val is_active_before)" "inactive"
want "systemctl start" "$(val start_rc)" "0"
want "synq_ samples in the scrape" "$(val metrics_samples)" "[1-9][0-9]*"
want "synq serve's own listener in the scrape" "$(val own_listener)" "1"
want "Uid" "$(val status_Uid)" "65534[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534"
want "Gid" "$(val status_Gid)" "65534[[:space:]]+65534[[:space:]]+65534[[:space:]]+65534"
want "CapEff" "$(val status_CapEff)" "0+"
want "CapPrm" "$(val status_CapPrm)" "0+"
want "NoNewPrivs" "$(val status_NoNewPrivs)" "1"
want "Seccomp" "$(val status_Seccomp)" "2"
want "CapBnd" "$(val status_CapBnd)" "0+"
want "Seccomp_filters (systemd's and synq's)" "$(val status_Seccomp_filters)" "[2-9]|[1-9][0-9]+"
want "systemctl stop" "$(val stop_rc)" "0"
want "ActiveState after stop" "$(val after_stop_ActiveState)" "inactive"
want "Result after stop" "$(val after_stop_Result)" "success"
want "exit status on SIGTERM" "$(val after_stop_ExecMainStatus)" "0"
want "synq --total, default sandbox" "$(val probe_plain_rc)" "0"
want "synq --total under PrivateDevices=yes (must fail)" "$(val probe_private_devices_rc)" "[1-9][0-9]*"
want "synq --total under ProtectKernelTunables=yes (must fail)" "$(val probe_protect_kernel_tunables_rc)" "[1-9][0-9]*"
want "synq --total under SystemCallFilter=@system-service (must fail)" \
    "$(val probe_syscall_filter_without_seccomp_rc)" "[1-9][0-9]*"

sed -n '/^kernel=/,/^===END===/p' "$out/results.txt" | grep -v '^===END===' >&2
if ((${#fails[@]})); then
    printf 'test-unit: FAIL: %s\n' "${fails[@]}" >&2
    echo "test-unit: FAIL ($kid): ${#fails[@]} problem(s); results in $out/results.txt"
    exit 1
fi
echo "test-unit: PASS ($kid, $(val systemd)): synq-serve.service installed disabled, started sandboxed as uid 65534 without capabilities, scraped, stopped cleanly; PrivateDevices, ProtectKernelTunables and a filter without seccomp each break synq"
