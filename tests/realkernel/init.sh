#!/bin/sh
# /init of the synq test guest (busybox sh, PID 1).
#
# Kernel command line switches (read from /proc/cmdline):
#   synq.mode=test    build the scenarios, collect ground truth, run synq (default);
#                     then synq with kptr_restrict=2, with a wrong /boot/System.map
#                     and as uid/gid 65534
#   synq.mode=lockdown  (booted with lockdown=confidentiality) only synq, which
#                     must refuse; no modules, no listeners
#   synq.mode=bench   run the benchmark configurations in synq.bench=N:M,N:M,...
#   synq.mode=dump    the "basic" scenario's listeners and ground truth, BTF,
#                     kallsyms and kcore's VMCOREINFO; no synq run. After the
#                     results: SYNQ-DUMP-READY on the console, then the
#                     listeners stay up (SYNQ-DUMP-STATE lines) until the host,
#                     which dumps the guest over QMP (dump.sh), quits QEMU
#   synq.mode=snapshot  what dump mode records, plus /proc/iomem; then the
#                     guest takes its own memory snapshots (avml plain and
#                     --compress, LiME format=lime and format=padded), each onto
#                     its own virtio disk (serial = the snapshot's name), with
#                     the exact length, the time, and the ground truth re-read
#                     after each (snapshot.sh); then results and power off
#   synq.mode=soak    the "basic" scenario's listeners and ground truth, then
#                     listeners opened and closed in both namespaces (synq-fixture
#                     churn) while synq --json runs
#                     synq.soak_runs times (default 200), each run followed by a
#                     copy of /proc/PID/net/tcp{,6} of both namespaces; then the
#                     churn stops and the ground truth is re-read (soak.sh,
#                     check_soak.py). synq.churn_window=W: churn listeners alive
#                     at once per namespace (default 64); synq.churn_rate=R:
#                     open/close cycles a second per namespace (default 1500;
#                     0: as fast as the guest can)
#   synq.mode=static  (the static initramfs: build-initramfs.sh with SYNQ_STATIC_BIN)
#                     no libc, no loader, no ss: what the guest holds of shared
#                     libraries (nothing), the "basic" listeners with ground
#                     truth from /proc alone, synq --json and --total, synq serve
#                     as nobody (maps, status, one scrape), and a --user that
#                     does not exist (mode_static)
#   synq.runs=R       timed runs per command in bench mode (default 5)
#   synq.half=H       half-open requests per bench configuration (default 5)
#
# Results are collected under /results and sent, as a base64 gzip'd tar between
# two marker lines, over the second serial port (/dev/ttyS1; synq.results=DEV names
# another: an arm64 guest's is a virtconsole, hvc0, whose modules, where not built in,
# /lib/modules/results/order lists); base64 makes the tty's \n -> \r\n translation harmless.
# /etc/synq-builtin-modules (arm64 guests): modules of the list below that the kernel
# has built in, so not loaded. Whatever happens the guest powers off
# (and if even that fails, PID 1 exits: panic=-1 + -no-reboot end QEMU).
#
# arm64 guests (uname -m aarch64; run.sh's arm64 entries, with the aarch64 synq) in
# synq.mode=test: what an x86_64 guest does, with these differences. symbols/ records
# the kernel's symbol facts for check.py (the config's CONFIG_KALLSYMS_ALL line, the
# /proc/kallsyms lines of _stext, _text and tcp_hashinfo, kcore's VMCOREINFO, and the
# real System.map's _stext and tcp_hashinfo where the initramfs has one). The real
# System.map (/etc/synq-system-map: arm64-6.1, no CONFIG_KALLSYMS_ALL) is not in /boot
# for "basic" (a Debian machine's /boot holds a placeholder), then goes there: the
# scenario "basic-map" runs synq with --system-map /boot/System.map-RELEASE, and every
# later run has it in /boot as the x86_64 guests do. kptr/System.map comes from that
# real map, or, without one, from kallsyms _text minus NUMBER(MODULES_END) (KIMAGE_VADDR,
# _text's link address). Steps that need /boot/System.map (moving it aside, the wrong
# System.map) record sysmap/absent instead where the guest has none.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
mkdir -p /tmp /results
mount -t tmpfs tmpfs /tmp
exec </dev/null >/dev/console 2>&1

R=/results
# Per synq run; well below run.sh's whole-guest timeout so a hang is named.
SYNQ_TIMEOUT=60

log() { echo "guest: $*"; echo "$*" >>$R/log.txt; }

send_results() {
  rtty=/dev/$(cmdline_arg synq.results ttyS1)
  # raw: no output post-processing on the results port.
  stty -F "$rtty" raw -echo 2>/dev/null || true
  {
    echo "===SYNQ-RESULTS-BEGIN==="
    tar -C $R -cf - . | gzip -c | base64
    echo "===SYNQ-RESULTS-END==="
  } >"$rtty"
  # Closing the tty above waits for the UART to drain; give QEMU a moment more.
  sleep 1
}

finish() {
  echo "$1" >$R/status
  dmesg >$R/dmesg.txt 2>&1 || true
  log "status: $1"
  send_results
  sync
  poweroff -f
  # poweroff failed: let the kernel panic (panic=-1, -no-reboot stop QEMU).
  echo o >/proc/sysrq-trigger
  exit 1
}

fail() {
  log "FAIL: $*"
  finish "FAIL: $*"
}

cmdline_arg() {
  # $1: name; prints the value of name=value from /proc/cmdline, or $2.
  v=$2
  # /proc/cmdline is one line of words: word splitting is what is wanted.
  # shellcheck disable=SC2013
  for w in $(cat /proc/cmdline); do
    case $w in "$1="*) v=${w#*=} ;; esac
  done
  echo "$v"
}

# Runs a setup step; on failure stops the whole run with its output.
step() {
  desc=$1
  shift
  if ! out=$("$@" 2>&1); then
    echo "$out" >>$R/log.txt
    fail "$desc: $out"
  fi
  [ -z "$out" ] || echo "$out" >>$R/log.txt
}

# Starts a fixture command (which daemonizes once its queues are verified) and
# sets FIXTURE_PID to the daemon's pid. $1: output file prefix; rest: command.
# (A global, not $(...): fail must run in this shell, not in a subshell.)
start_fixture() {
  pre=$1
  shift
  if ! "$@" >"$pre.out" 2>"$pre.err"; then
    cat "$pre.err" "$pre.out" >>$R/log.txt
    fail "fixture '$*' failed: $(cat "$pre.err")"
  fi
  FIXTURE_PID=$(sed -n 's/^READY pid=\([0-9]*\)$/\1/p' "$pre.out")
  [ -n "$FIXTURE_PID" ] || fail "fixture '$*' printed no READY line"
}

# Ground truth for one namespace: $1 dir, $2 pid of a process in it, $3 suffix.
snapshot_ns() {
  mkdir -p "$1"
  readlink "/proc/$2/ns/net" >"$1/netns" || fail "readlink /proc/$2/ns/net"
  cat "/proc/$2/net/tcp" >"$1/tcp$3" || fail "read /proc/$2/net/tcp"
  cat "/proc/$2/net/tcp6" >"$1/tcp6$3" || fail "read /proc/$2/net/tcp6"
  if [ -z "$3" ]; then
    # ss (sock_diag) as a second, independent view: Send-Q is max_backlog.
    nsenter -t "$2" -n ss -Hltn >"$1/ss-ltn" 2>&1 || fail "ss -ltn in netns of $2: $(cat "$1/ss-ltn")"
  fi
  # Each listener's drops (skmem "d", sk_drops), before and after synq (issue 8).
  nsenter -t "$2" -n ss -Hltnm >"$1/ss-ltm$3" 2>&1 || fail "ss -ltm in netns of $2: $(cat "$1/ss-ltm$3")"
  # The namespace's TcpExt counters and listen sysctls, before and after synq (issue 8).
  cat "/proc/$2/net/netstat" >"$1/netstat$3" || fail "read /proc/$2/net/netstat"
  nsenter -t "$2" -n sh -c 'for s in core/somaxconn ipv4/tcp_max_syn_backlog ipv4/tcp_syncookies \
    ipv4/tcp_synack_retries; do echo "$s $(cat /proc/sys/net/$s)"; done' >"$1/sysctl$3" 2>&1 \
    || fail "read the sysctls of netns of $2: $(cat "$1/sysctl$3")"
}

# Runs command $2... (which runs synq) into $1.{out,err,rc}; never stops the
# run (the host's check.py judges the result).
run_cmd() {
  name=$1
  shift
  if [ ! -x /bin/synq ]; then
    echo "synq binary missing from the initramfs (SYNQ_BIN not built?)" >"$name.err"
    : >"$name.out"
    echo 127 >"$name.rc"
    return
  fi
  rc=0
  timeout -s KILL $SYNQ_TIMEOUT "$@" >"$name.out" 2>"$name.err" || rc=$?
  echo $rc >"$name.rc"
  log "$* -> exit $rc ($(wc -c <"$name.out") bytes out, $(wc -c <"$name.err") bytes err)"
}

# Runs synq with args $2..., into $1.{out,err,rc}.
run_synq() {
  name=$1
  shift
  run_cmd "$name" synq "$@"
}

# Ground truth of one scenario: per netns snapshot and the fixture's EXPECT/KIND
# lines, into $R/$1 (also left in $sc). $2...: "nsdir:pid:expectfiles" (expect
# files comma-separated).
collect_truth() {
  sc=$R/$1
  shift
  mkdir -p "$sc"
  for spec in "$@"; do
    d=${spec%%:*}; rest=${spec#*:}; pid=${rest%%:*}; exp=${rest#*:}
    snapshot_ns "$sc/$d" "$pid" ""
    : >"$sc/$d/expect"
    : >"$sc/$d/kinds"
    for f in $(echo "$exp" | tr ',' ' '); do
      grep '^EXPECT ' "$f" >>"$sc/$d/expect" || fail "no EXPECT lines in $f"
      # Labelled listeners (MPTCP subflow); none is fine here, check.py decides.
      grep '^KIND ' "$f" >>"$sc/$d/kinds" || true
      # What the fixture set per listener (SO_REUSEPORT, TCP_DEFER_ACCEPT); check_details.py decides.
      grep -E '^(REUSEPORT|DEFER) ' "$f" >>"$sc/$d/details" || true
    done
    # RDS over TCP's kernel listener (rds_tcp, loaded by load_modules) in this namespace: a kernel socket,
    # which synq must label "kernel" and give no owners. Declared as the kernel shows it (v4 or v6 wildcard).
    if [ -d /sys/module/rds_tcp ]; then
      for fam in tcp:inet tcp6:inet6; do
        awk -v fam="${fam#*:}" 'NR > 1 && $4 == "0A" && $2 ~ /:4001$/ {
            print "EXPECT " fam " " (fam == "inet" ? "0.0.0.0" : "::") " 16385 1 0 0"
            print "KIND " fam " " (fam == "inet" ? "0.0.0.0" : "::") " 16385 kernel" }' \
          "/proc/$pid/net/${fam%%:*}" >>"$sc/$d/rds"
      done
      grep -q . "$sc/$d/rds" || fail "rds_tcp is loaded but netns of $pid has no listener on port 16385"
      grep '^EXPECT ' "$sc/$d/rds" >>"$sc/$d/expect"
      grep '^KIND ' "$sc/$d/rds" >>"$sc/$d/kinds"
    fi
  done
  # The kernel's HZ, to compare request timers (jiffies) with /proc/net/tcp's (USER_HZ ticks).
  grep '^CONFIG_HZ=' /etc/synq-kernel-config >"$sc/config-hz" || fail "no CONFIG_HZ in the kernel config"
  # "Possible SYN flooding on port ..." lines: the listeners the kernel marked synflood_warned.
  dmesg >"$sc/dmesg" 2>&1 || fail "dmesg"
  # Which processes hold which sockets (issue 8: synq's owners), as /proc/PID/fd shows them: one
  # "INODE PID COMM" line per socket descriptor (one ls per process).
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    ls -l "$p/fd" 2>/dev/null | awk -v p="$pid" -v c="$comm" \
      '$NF ~ /^socket:\[[0-9]+\]$/ { print substr($NF, 9, length($NF) - 9), p, c }'
  done >"$sc/fd-sockets"
  [ -s "$sc/fd-sockets" ] || fail "no socket descriptors found under /proc/*/fd"
}

# One scenario: ground truth per netns before, synq, ground truth after.
# $1: scenario name; $2...: "nsdir:pid:expectfiles" (expect files comma-separated).
collect_scenario() {
  collect_truth "$@"
  shift
  # --requests too: the half-open requests themselves are checked against /proc's st 03 lines (issue 8).
  # SCENARIO_SYNQ_ARGS (arm64's basic-map): more arguments for both runs.
  # shellcheck disable=SC2086  # words
  run_synq "$sc/synq-json" --json --requests ${SCENARIO_SYNQ_ARGS:-}
  # shellcheck disable=SC2086
  run_synq "$sc/synq-total" --total ${SCENARIO_SYNQ_ARGS:-}
  for spec in "$@"; do
    d=${spec%%:*}; rest=${spec#*:}; pid=${rest%%:*}
    snapshot_ns "$sc/$d" "$pid" ".after"
  done
  log "scenario $(basename "$sc") collected"
}

# MPTCP facts for check.py: the sysctl (exists iff the kernel has MPTCP), what
# socket(IPPROTO_MPTCP) says, and the kernel package's CONFIG_MPTCP line.
# Sets MPTCP_ARG for the main scenario: "mptcp" when the sysctl exists.
probe_mptcp() {
  M=$R/mptcp
  mkdir -p $M
  if [ -e /proc/sys/net/mptcp/enabled ]; then
    cat /proc/sys/net/mptcp/enabled >$M/sysctl || fail "read net.mptcp.enabled"
    MPTCP_ARG=mptcp
  else
    echo absent >$M/sysctl
    MPTCP_ARG=
  fi
  synq-fixture mptcp-probe >$M/socket 2>&1 || fail "synq-fixture mptcp-probe: $(cat $M/socket)"
  grep -E '^(# )?CONFIG_MPTCP[ =]' /etc/synq-kernel-config >$M/config || echo missing >$M/config
  log "mptcp: sysctl net.mptcp.enabled $(cat $M/sysctl), socket(IPPROTO_MPTCP) $(cat $M/socket), $(cat $M/config)"
}

# synq with kernel.kptr_restrict=2 (kallsyms addresses read as 0 even for
# root), --kallsyms given explicitly; the old value is put back and read back.
check_kptr_restrict() {
  K=$R/kptr
  mkdir -p $K
  cat /proc/sys/kernel/kptr_restrict >$K/old || fail "read kptr_restrict"
  # _stext: never 0 when visible (the first lines are per-cpu offsets, often 0).
  awk '$3 == "_stext" { print; exit }' /proc/kallsyms >$K/kallsyms-before
  # A System.map for the two symbols synq needs, from kallsyms minus the KASLR slide: x86_64 links _stext
  # at 0xffffffff81000000 (__START_KERNEL), so slide = runtime _stext - that. ash arithmetic is 64-bit,
  # wrapping, which is what address arithmetic wants.
  st=$(awk '$3 == "_stext" && NF == 3 { print $1; exit }' /proc/kallsyms)
  th=$(awk '$3 == "tcp_hashinfo" && NF == 3 { print $1; exit }' /proc/kallsyms)
  if [ "$(uname -m)" = aarch64 ]; then
    kptr_sysmap_arm64
  else
  slide=$((0x$st - 0xffffffff81000000))
  printf '%016x T _stext\n%016x D tcp_hashinfo\n' $((0x$st - slide)) $((0x$th - slide)) >$K/System.map
  echo "$slide" >$K/slide
  fi
  echo 2 >/proc/sys/kernel/kptr_restrict || fail "cannot set kptr_restrict=2"
  cat /proc/sys/kernel/kptr_restrict >$K/during
  awk '$3 == "_stext" { print; exit }' /proc/kallsyms >$K/kallsyms-during
  run_synq $K/synq-json --json --kallsyms /proc/kallsyms
  # Default sources: kernels >= 6.0 locate their kallsyms tables through VMCOREINFO, older ones read
  # /boot/System.map-RELEASE (KERNELOFFSET from kcore's VMCOREINFO), so synq still works; without that file
  # a kernel before 6.0 has only the hidden /proc/kallsyms, and synq must refuse.
  run_synq $K/synq-default --json
  map=/boot/System.map-$(uname -r)
  # arm64 kernels with CONFIG_KALLSYMS_ALL have no real System.map here: the same run, nothing to move.
  moved=
  if [ "$(uname -m)" != aarch64 ] || [ -e $map ]; then
    mv $map /tmp/System.map.aside || fail "cannot move $map aside"
    moved=1
  fi
  run_synq $K/synq-default-nomap --json
  run_doctor $K/doctor-nomap
  [ -z "$moved" ] || mv /tmp/System.map.aside $map || fail "cannot put $map back"
  # System.map with kallsyms hidden: the KASLR offset must come from kcore's VMCOREINFO (KERNELOFFSET).
  run_synq $K/synq-sysmap --json --system-map $K/System.map --kallsyms /proc/kallsyms
  run_doctor $K/doctor
  cat $K/old >/proc/sys/kernel/kptr_restrict || fail "cannot restore kptr_restrict"
  cat /proc/sys/kernel/kptr_restrict >$K/restored
  log "kptr_restrict $(cat $K/old) -> $(cat $K/during) -> $(cat $K/restored)"
}

# arm64: the symbol facts check.py judges synq's symbol source by, into $R/symbols/: the kernel config's
# CONFIG_KALLSYMS_ALL line, the /proc/kallsyms lines of _stext, _text and tcp_hashinfo (as root, kptr_restrict
# 1 meanwhile: real addresses), kcore's first 256 KiB (its headers, kcore-head) and VMCOREINFO, and the real
# System.map's _stext and tcp_hashinfo lines where the initramfs has one.
symbol_facts() {
  Y=$R/symbols
  mkdir -p $Y
  grep -E '^(# )?CONFIG_KALLSYMS_ALL[ =]' /etc/synq-kernel-config >$Y/kallsyms-all || echo missing >$Y/kallsyms-all
  kold=$(cat /proc/sys/kernel/kptr_restrict) || fail "read kptr_restrict"
  echo 1 >/proc/sys/kernel/kptr_restrict || fail "cannot set kptr_restrict=1"
  awk 'NF == 3 && ($3 == "_stext" || $3 == "_text" || $3 == "tcp_hashinfo")' /proc/kallsyms >$Y/kallsyms \
    || fail "cannot read /proc/kallsyms"
  echo "$kold" >/proc/sys/kernel/kptr_restrict || fail "cannot restore kptr_restrict"
  # kcore's first 256 KiB (ELF header, program headers, notes): its PT_LOADs, for the record.
  dd if=/proc/kcore of=$Y/kcore-head bs=4096 count=64 2>/dev/null || true
  strings -n 4 $Y/kcore-head \
    | grep -E '^(OSRELEASE|BUILD-ID|PAGESIZE|KERNELOFFSET|(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\([^)]*\))=' \
    >$Y/vmcoreinfo-kcore || true
  grep -q '^KERNELOFFSET=' $Y/vmcoreinfo-kcore || fail "no KERNELOFFSET in the VMCOREINFO of /proc/kcore"
  if [ -s /etc/synq-system-map ]; then
    awk '$3 == "_stext" || $3 == "tcp_hashinfo"' /etc/synq-system-map >$Y/system-map
  fi
  log "symbols: $(cat $Y/kallsyms-all); kallsyms: $(awk '{ print $3 }' $Y/kallsyms | tr '\n' ' ');" \
    "$(grep '^KERNELOFFSET=' $Y/vmcoreinfo-kcore); System.map: $(tr '\n' ' ' <$Y/system-map 2>/dev/null || echo none)"
}

# arm64: kptr/System.map (link-time _stext and tcp_hashinfo), from st and th (kallsyms, read before
# kptr_restrict=2). The real System.map's lines where the guest has one; else kallsyms minus the slide of
# _text from its link address, KIMAGE_VADDR, which VMCOREINFO gives as NUMBER(MODULES_END) (arm64's
# modules end where the image begins).
kptr_sysmap_arm64() {
  map=/boot/System.map-$(uname -r)
  if [ -s $map ]; then
    awk '$3 == "_stext" || $3 == "tcp_hashinfo"' $map >$K/System.map
    echo "real System.map" >$K/slide
    return
  fi
  tx=$(awk '$3 == "_text" && NF == 3 { print $1; exit }' /proc/kallsyms)
  me=$(sed -n 's/^NUMBER(MODULES_END)=//p' $R/symbols/vmcoreinfo-kcore)
  [ -n "$tx" ] && [ -n "$th" ] && [ -n "$me" ] \
    || fail "kptr System.map: _text '$tx', tcp_hashinfo '$th' (kallsyms), NUMBER(MODULES_END) '$me'"
  slide=$((0x$tx - me))
  printf '%016x T _stext\n%016x D tcp_hashinfo\n' $((0x$st - slide)) $((0x$th - slide)) >$K/System.map
  echo "$slide" >$K/slide
}

# The running kernel's System.map, /boot/System.map-RELEASE, which synq's default live chain reads before
# /proc/kallsyms when its linux_banner, shifted by kcore's KERNELOFFSET, holds /proc/version. A wrong one
# (linux_banner's address +0x40, as a System.map of another build would have it) must be passed over
# silently: synq still exact, its symbols from /proc/kallsyms. The real one is put back afterwards.
check_boot_sysmap() {
  B=$R/sysmap
  mkdir -p $B
  map=/boot/System.map-$(uname -r)
  if [ "$(uname -m)" = aarch64 ] && [ ! -e $map ]; then
    # check.py accepts this only from a kernel with CONFIG_KALLSYMS_ALL (whose real map is not fetched).
    echo "no $map in this arm64 guest" >$B/absent
    log "System.map: none in this arm64 guest; the wrong-System.map run is not made"
    return
  fi
  [ -s $map ] || fail "$map missing from the initramfs"
  cat /proc/version >$B/proc-version
  grep ' linux_banner$' $map >$B/banner-real || fail "no linux_banner in $map"
  cp $map /tmp/System.map.real || fail "cannot copy $map"
  addr=$(awk '$3 == "linux_banner" { print $1; exit }' $map)
  moved=$(printf '%016x' $((0x$addr + 0x40)))
  sed -i "s/^$addr \(. linux_banner\)\$/$moved \1/" $map || fail "cannot edit $map"
  grep ' linux_banner$' $map >$B/banner-wrong
  run_synq $B/synq-wrong --json
  cp /tmp/System.map.real $map || fail "cannot restore $map"
  rm -f /tmp/System.map.real
  log "System.map: linux_banner $(cat $B/banner-real) -> $(cat $B/banner-wrong) -> restored"
}

# synq as uid/gid 65534 (no groups) with /proc/kcore as it is (0400 root).
check_not_root() {
  U=$R/unpriv
  mkdir -p $U
  stat -c '%a %u %g' /proc/kcore >$U/kcore-mode 2>&1
  synq-fixture as 65534 65534 -- id >$U/id 2>&1 || true
  run_cmd $U/synq-json synq-fixture as 65534 65534 -- synq --json
  run_doctor $U/doctor synq-fixture as 65534 65534 --
  log "unprivileged: $(cat $U/id); /proc/kcore $(cat $U/kcore-mode)"
}

# synq holding no privilege after opening its sources (issue 7): with the "big" scenario's ~700 KB of JSON
# going into a pipe nobody reads yet, synq blocks in write(2) after its walk, after dropping privileges; its
# /proc/PID/status, read then, is the kernel's own account of what it still holds (CapEff, CapPrm, CapBnd,
# NoNewPrivs, Seccomp). SYNQ_TEST_OPEN_AFTER_DROP makes it try to open a file after the drop and say how that
# went (it must fail).
check_privdrop() {
  P=$R/privdrop
  mkdir -p $P
  mkfifo $P/pipe
  rc=0
  ( SYNQ_TEST_OPEN_AFTER_DROP=/proc/kallsyms timeout -s KILL $SYNQ_TIMEOUT synq --json >$P/pipe 2>$P/synq.err
    echo $? >$P/synq.rc ) &
  # The reader: opens the pipe at once (so synq's open does not block) but reads only after the sampling.
  exec 7<$P/pipe
  i=0
  spid=
  while [ $i -lt 600 ]; do
    spid=$(pidof synq || true)
    if [ -n "$spid" ] && grep -q '^Seccomp:[[:space:]]*2' /proc/"$spid"/status 2>/dev/null \
        && grep -q '^State:[[:space:]]*S' /proc/"$spid"/status 2>/dev/null; then
      break
    fi
    i=$((i + 1))
    sleep 0.1
  done
  if [ -n "$spid" ]; then
    cat /proc/"$spid"/status >$P/status 2>&1 || true
    cat /proc/"$spid"/wchan >$P/wchan 2>/dev/null || true
  fi
  echo "$i" >$P/polls
  cat <&7 >$P/synq.out
  exec 7<&-
  wait || true
  rm -f $P/pipe
  log "privdrop: synq pid ${spid:-none} sampled after $i polls; $(grep -E '^(CapEff|NoNewPrivs|Seccomp):' $P/status 2>/dev/null | tr '\n\t' '  ')"
}

# Both namespaces' listeners (plus the MPTCP one where the kernel has it), as the
# "basic" scenario has them; sets F, pid1 and pid2.
start_listeners() {
  F=$R/fixture
  mkdir -p $F
  probe_mptcp
  step "netns-setup (initial namespace)" netns-setup
  # MPTCP_ARG is empty or one word.
  # shellcheck disable=SC2086
  start_fixture $F/main synq-fixture scenario main $MPTCP_ARG
  pid1=$FIXTURE_PID
  log "scenario main ready (pid $pid1, $(grep -c '^EXPECT' $F/main.out) keys)"
  # The second namespace lives as long as its daemon: unshare and sh exit once
  # the fixture has daemonized.
  # Sysctls that differ from the first namespace's (issue 8: synq reads them per namespace), SYN cookies on.
  start_fixture $F/ns2 unshare -n sh -c 'netns-setup && echo 1000 >/proc/sys/net/core/somaxconn &&
    echo 2048 >/proc/sys/net/ipv4/tcp_max_syn_backlog && echo 1 >/proc/sys/net/ipv4/tcp_syncookies &&
    exec synq-fixture scenario ns2'
  pid2=$FIXTURE_PID
  log "scenario ns2 ready (pid $pid2, $(readlink /proc/"$pid2"/ns/net))"
  [ "$(readlink /proc/"$pid1"/ns/net)" != "$(readlink /proc/"$pid2"/ns/net)" ] \
    || fail "ns2 fixture is not in its own network namespace"
}

mode_test() {
  load_modules rds
  start_listeners
  [ "$(uname -m)" != aarch64 ] || symbol_facts
  collect_scenario basic "ns1:$pid1:$F/main.out" "ns2:$pid2:$F/ns2.out"
  if [ "$(uname -m)" = aarch64 ] && [ -s /etc/synq-system-map ]; then
    # The real System.map (a kernel without CONFIG_KALLSYMS_ALL) in /boot from now on, as on x86_64; "basic"
    # again with it given (--system-map): owners, request timers and namespaces then come from data symbols.
    mkdir -p /boot
    cp /etc/synq-system-map "/boot/System.map-$(uname -r)" || fail "cannot install the System.map in /boot"
    SCENARIO_SYNQ_ARGS="--system-map /boot/System.map-$(uname -r)" \
      collect_scenario basic-map "ns1:$pid1:$F/main.out" "ns2:$pid2:$F/ns2.out"
  fi

  # Same state plus 2,500 idle listeners in the first namespace.
  start_fixture $F/idle synq-fixture idle 2500 20000
  pid3=$FIXTURE_PID
  log "idle listeners ready (pid $pid3)"
  collect_scenario big "ns1:$pid1:$F/main.out,$F/idle.out" "ns2:$pid2:$F/ns2.out"

  check_privdrop
  check_kptr_restrict
  check_boot_sysmap
  check_not_root
  # The idle listeners served "big" (and the checks above, which compare with it) only; the serve and watch
  # tests below need quick walks.
  kill -9 "$pid3"
  check_serve
  check_watch
  run_doctor $R/doctor/plain
}

# synq doctor (issue 9) into $1.{out,err,rc} (JSON) and $1-text.{out,err,rc} (the table); $2...: how to run
# it (default: as root).
run_doctor() {
  d=$1
  shift
  mkdir -p "$(dirname "$d")"
  run_cmd "$d" "$@" synq doctor --json
  run_cmd "$d-text" "$@" synq doctor
}

# Waits (0.1 s steps, at most $2 of them) until the shell condition $1 holds.
wait_until() {
  i=0
  while ! eval "$1" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt "$2" ] || return 1
    sleep 0.1
  done
}

# synq serve (issue 9), live: its privileges after the open (/proc/PID/status), one scrape with busybox wget
# between two readings of /proc (the ground truth), then 1,000 scrapes as fast as wget goes with RSS read
# after the first and after the last, then SIGTERM (exit status and the number of walks).
check_serve() {
  S=$R/serve
  mkdir -p $S
  synq serve --listen 127.0.0.1:9813 --min-interval 0.1 >$S/serve.out 2>$S/serve.err &
  spid=$!
  if ! wait_until "grep -q 'serving http://' $S/serve.err" 600; then
    log "serve: did not start: $(tr '\n' ' ' <$S/serve.err)"
    echo "not started" >$S/rc
    kill -9 $spid 2>/dev/null
    return
  fi
  cat /proc/$spid/status >$S/status
  snapshot_ns $S/ns1 "$pid1" ""
  snapshot_ns $S/ns2 "$pid2" ""
  wget -q -O $S/metrics.txt http://127.0.0.1:9813/metrics || echo "wget failed: $?" >>$S/scrape-errors
  snapshot_ns $S/ns1 "$pid1" ".after"
  snapshot_ns $S/ns2 "$pid2" ".after"
  wget -q -O $S/index.html http://127.0.0.1:9813/ || echo "wget / failed: $?" >>$S/scrape-errors
  grep -E '^(VmRSS|RssAnon|RssFile|RssShmem)' /proc/$spid/status >$S/rss-first
  t0=$(date +%s)
  i=0
  while [ $i -lt 1000 ]; do
    wget -q -O /dev/null http://127.0.0.1:9813/metrics || echo "scrape $i failed" >>$S/scrape-errors
    i=$((i + 1))
  done
  echo $(($(date +%s) - t0)) >$S/scrapes-seconds
  grep -E '^(VmRSS|RssAnon|RssFile|RssShmem)' /proc/$spid/status >$S/rss-last
  kill -TERM $spid
  rc=0
  wait $spid || rc=$?
  echo $rc >$S/rc
  log "serve: $(grep -E '^(Uid|CapEff):' $S/status | tr '\n\t' '  '); 1000 scrapes in $(cat $S/scrapes-seconds) s;" \
    "RSS $(tr '\n\t' '  ' <$S/rss-first) -> $(tr '\n\t' '  ' <$S/rss-last); exit $rc; $(tail -n 1 $S/serve.err)"
}

# synq --watch 3 --count 3 --json (issue 9) around two changes the fixture makes to a fresh listener
# (192.0.2.1:8040, backlog 4): after interval 1, three new half-open requests; after interval 2, SYNs until
# the listener drops one. Each change must show in the interval after it, and only there.
check_watch() {
  W=$R/watch
  mkdir -p $W
  start_fixture $W/target synq-fixture watch-target $W
  wpid=$FIXTURE_PID
  echo "$wpid" >$W/pid
  synq --watch 3 --count 3 --json >$W/watch.out 2>$W/watch.err &
  spid=$!
  if wait_until "[ \$(grep -c . $W/watch.out) -ge 1 ]" 600; then
    kill -USR1 $wpid
    wait_until "[ -s $W/step1 ]" 300 || log "watch: step 1 not done"
    if wait_until "[ \$(grep -c . $W/watch.out) -ge 2 ]" 600; then
      kill -USR2 $wpid
      wait_until "[ -s $W/step2 ]" 300 || log "watch: step 2 not done"
    fi
  fi
  rc=0
  wait $spid || rc=$?
  echo $rc >$W/rc
  nsenter -t "$wpid" -n ss -Hltnm 'sport = :8040' >$W/ss-ltm 2>&1
  kill -9 $wpid
  log "watch: exit $rc, $(grep -c . $W/watch.out) lines; step1 $(cat $W/step1 2>/dev/null); step2 $(cat $W/step2 2>/dev/null)"
}

# Canonical listener/request state, sorted: one line per st 0A (local address,
# rx_queue = accept queue) and per st 03 line (local address) of each file.
# $@: "label:path" of /proc/net/tcp{,6}-format files.
tcp_state() {
  for lp in "$@"; do
    awk -v t="${lp%%:*}" 'NR > 1 && $4 == "0A" { print t, $2, $4, $5 }
      NR > 1 && $4 == "03" { print t, $2, $4 }' "${lp#*:}" || echo "unreadable ${lp#*:}"
  done | sort
}

# Dump mode: the "basic" scenario's listeners and its ground truth, the side
# files a dump reader of a kernel without kallsyms in VMCOREINFO needs (BTF,
# kallsyms), and the VMCOREINFO of kcore; synq is not run. After the results
# are sent, finish_dump keeps the listeners up for the host's dumps.
mode_dump() {
  [ -x /bin/synq ] || [ "$(uname -m)" = x86_64 ] || log "no synq in this $(uname -m) guest (the host's synq is" \
    "an x86_64 program); dump mode runs no synq in the guest: the host reads the dumps"
  collect_image_truth
}

# What dump and snapshot modes record before memory images are taken: the
# listeners of "basic" (left running), their ground truth and canonical state
# ($R/basic/state), side files, kcore's VMCOREINFO and /sys/kernel/vmcoreinfo.
collect_image_truth() {
  load_modules rds
  start_listeners
  collect_truth basic "ns1:$pid1:$F/main.out" "ns2:$pid2:$F/ns2.out"
  # What finish_dump compares the live state with: the ground truth itself.
  tcp_state "1tcp:$sc/ns1/tcp" "1tcp6:$sc/ns1/tcp6" "2tcp:$sc/ns2/tcp" "2tcp6:$sc/ns2/tcp6" >"$sc/state"
  [ -s "$sc/state" ] || fail "empty canonical state of the basic scenario"
  log "scenario basic collected ($(wc -l <"$sc/state") listener/request lines)"

  S=$R/side
  mkdir -p $S
  cp /sys/kernel/btf/vmlinux $S/btf || fail "cannot copy /sys/kernel/btf/vmlinux"
  # kallsyms with addresses visible to root: kptr_restrict=1 (CAP_SYSLOG sees them).
  cat /proc/sys/kernel/kptr_restrict >$S/kptr_restrict.old || fail "read kptr_restrict"
  echo 1 >/proc/sys/kernel/kptr_restrict || fail "cannot set kptr_restrict=1"
  cat /proc/sys/kernel/kptr_restrict >$S/kptr_restrict.during
  cat /proc/kallsyms >$S/kallsyms || fail "cannot read /proc/kallsyms"
  cat $S/kptr_restrict.old >/proc/sys/kernel/kptr_restrict || fail "cannot restore kptr_restrict"
  st=$(awk '$3 == "_stext" && NF == 3 { print $1; exit }' $S/kallsyms)
  case $st in
    "" | 0000000000000000) fail "/proc/kallsyms shows _stext as '$st' to root with kptr_restrict=1" ;;
  esac
  log "side files: btf $(wc -c <$S/btf) bytes, kallsyms $(wc -l <$S/kallsyms) lines (_stext $st," \
    "kptr_restrict $(cat $S/kptr_restrict.old) -> $(cat $S/kptr_restrict.during) -> back)"

  # The kernel's VMCOREINFO as kcore shows it (a note near the start of /proc/kcore; 4.19+), to compare with
  # what the dumps carry; /sys/kernel/vmcoreinfo gives only its physical address and size.
  cat /sys/kernel/vmcoreinfo >$R/sys-vmcoreinfo 2>&1 || true
  dd if=/proc/kcore bs=4096 count=64 2>/dev/null | strings -n 4 \
    | grep -E '^(OSRELEASE|BUILD-ID|PAGESIZE|KERNELOFFSET|CRASHTIME|(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER)\([^)]*\))=' \
    >$R/vmcoreinfo-kcore || true
  grep -q '^OSRELEASE=' $R/vmcoreinfo-kcore || fail "no VMCOREINFO (OSRELEASE=) in the first 256 KiB of /proc/kcore"
  log "VMCOREINFO from kcore: $(wc -l <$R/vmcoreinfo-kcore) lines," \
    "$(grep -E '^(KERNELOFFSET|NUMBER\(pgtable_l5_enabled\))=' $R/vmcoreinfo-kcore | tr '\n' ' ')"
}

# Snapshot mode: the dump mode's listeners and records, /proc/iomem (as root:
# real addresses), then the guest images its own memory onto virtio disks,
# one snapshot per disk, found by serial (= the snapshot's name). Each goes
# writer -> FIFO -> synq-snapcopy -> disk with O_DIRECT, so the guest's page
# cache never holds a copy of what is being imaged (a later snapshot would
# contain the earlier one). A failed snapshot is recorded (error file) and the
# next one still runs; the host fails it.
SNAPSHOTS="avml-lime avml-compressed lime lime-padded"
# Per snapshot writer; the host's whole-guest timeout bounds everything too.
SNAPSHOT_TIMEOUT=240

mode_snapshot() {
  collect_image_truth
  cat /proc/iomem >$R/iomem || fail "cannot read /proc/iomem"
  # As root the addresses are real; as anyone else they all read 0.
  awk '/: System RAM$/ { split($1, a, "-"); if (a[2] !~ /^0+$/) ok = 1 } END { exit !ok }' $R/iomem \
    || fail "/proc/iomem shows no System RAM range with a real address: $(grep 'System RAM' $R/iomem | head -n 3)"
  P=$R/snapshots
  mkdir -p $P
  load_virtio
  for s in $SNAPSHOTS; do
    take_snapshot "$s"
  done
  log "snapshots done: $(for s in $SNAPSHOTS; do printf '%s=%s ' "$s" "$(cat "$P/$s/bytes" 2>/dev/null || cat "$P/$s/error" 2>/dev/null || echo unavailable)"; done)"
}

# The virtio modules the kernel has as modules (fetch-tools.sh: insmod order),
# then the disks: name -> /dev/vdX by the serial QEMU gave each (-device
# virtio-blk-pci,serial=NAME), in $P/disks.
load_virtio() {
  while read -r m; do
    [ -n "$m" ] || continue
    step "insmod $m" insmod "/lib/modules/virtio/$m.ko"
  done </lib/modules/virtio/order
  want=$(echo "$SNAPSHOTS" | wc -w)
  i=0
  while [ "$(find /sys/block -maxdepth 1 -name 'vd*' | wc -l)" -lt "$want" ] && [ $i -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  : >$P/disks
  for b in /sys/block/vd*; do
    [ -e "$b" ] || continue
    n=${b##*/}
    j=0
    while [ ! -b "/dev/$n" ] && [ $j -lt 50 ]; do sleep 0.1; j=$((j + 1)); done
    [ -b "/dev/$n" ] || fail "no /dev/$n for $b"
    echo "$(cat "$b/serial" 2>/dev/null || echo '?') /dev/$n $(cat "$b/size") $(cat "$b/queue/logical_block_size")" >>$P/disks
  done
  log "virtio disks (serial dev sectors block): $(tr '\n' ';' <$P/disks)"
}

uptime_s() { awk '{ print $1 }' /proc/uptime; }

# Samples /proc/meminfo's Buffers (the block devices' page cache) 4 times a
# second into $1 (max_kB=, samples= lines) until $2 exists (bounded). After the
# fact Buffers says nothing: the last close of a block device drops its page
# cache; while a buffered writer runs, it grows with the image.
buffers_watch() {
  max=0
  n=0
  while [ ! -e "$2" ] && [ $n -lt $((SNAPSHOT_TIMEOUT * 8)) ]; do
    b=$(awk '/^Buffers:/ { print $2 }' /proc/meminfo)
    [ "$b" -le "$max" ] || max=$b
    n=$((n + 1))
    printf 'max_kB=%s\nsamples=%s\n' "$max" "$n" >"$1"
    sleep 0.25
  done
}

# The ground truth's canonical state, read again now, into $1; $2 gets
# "same" or "CHANGED".
state_now() {
  tcp_state "1tcp:/proc/$pid1/net/tcp" "1tcp6:/proc/$pid1/net/tcp6" \
    "2tcp:/proc/$pid2/net/tcp" "2tcp6:/proc/$pid2/net/tcp6" >"$1"
  if cmp -s "$1" $R/basic/state; then echo same >"$2"; else echo CHANGED >"$2"; fi
}

# One snapshot onto the disk whose serial is its name, into $P/NAME/:
# bytes, seconds, copy.out (synq-snapcopy's report), tool.{out,rc},
# meminfo-{before,after}, buffers-peak, state-after + verdict; or error, or unavailable
# (LiME not built for this kernel: the reason fetch-tools.sh recorded).
take_snapshot() {
  name=$1
  D=$P/$name
  mkdir -p "$D"
  dev=$(awk -v n="$name" '$1 == n { print $2 }' $P/disks)
  if [ -z "$dev" ]; then
    echo "no virtio disk with serial $name (disks: $(tr '\n' ';' <$P/disks))" >"$D/error"
    log "snapshot $name: FAILED: $(cat "$D/error")"
    return 0
  fi
  case $name in
    lime | lime-padded)
      if [ ! -f /lib/modules/lime.ko ]; then
        cat /etc/synq-lime-unavailable >"$D/unavailable" 2>/dev/null || echo "lime.ko is not in the initramfs" >"$D/unavailable"
        log "snapshot $name: UNAVAILABLE: $(cat "$D/unavailable")"
        return 0
      fi
      ;;
  esac
  fifo=/tmp/snapshot-$name.fifo
  rm -f "$fifo"
  mkfifo "$fifo" || fail "mkfifo $fifo"
  echo "$dev" >"$D/device"
  grep -E '^(MemTotal|MemFree|Buffers|Cached|Dirty):' /proc/meminfo >"$D/meminfo-before"
  rm -f "$fifo.done"
  buffers_watch "$D/buffers-peak" "$fifo.done" &
  wpid=$!
  t0=$(uptime_s)
  synq-snapcopy "$fifo" "$dev" >"$D/copy.out" 2>"$D/copy.err" &
  cpid=$!
  rc=0
  case $name in
    avml-lime) timeout -s KILL $SNAPSHOT_TIMEOUT avml acquire --source /proc/kcore "$fifo" >"$D/tool.out" 2>&1 || rc=$? ;;
    avml-compressed)
      timeout -s KILL $SNAPSHOT_TIMEOUT avml acquire --source /proc/kcore --compress "$fifo" >"$D/tool.out" 2>&1 || rc=$?
      ;;
    # insmod returns once LiME's init has written the whole image (into the FIFO).
    lime) timeout -s KILL $SNAPSHOT_TIMEOUT insmod /lib/modules/lime.ko "path=$fifo" format=lime >"$D/tool.out" 2>&1 || rc=$? ;;
    lime-padded)
      timeout -s KILL $SNAPSHOT_TIMEOUT insmod /lib/modules/lime.ko "path=$fifo" format=padded >"$D/tool.out" 2>&1 || rc=$?
      ;;
  esac
  echo $rc >"$D/tool.rc"
  # A writer that failed before opening the FIFO leaves the reader blocked in open().
  [ $rc -eq 0 ] || kill $cpid 2>/dev/null
  crc=0
  wait $cpid || crc=$?
  echo $crc >"$D/copy.rc"
  t1=$(uptime_s)
  touch "$fifo.done"
  wait $wpid
  case $name in
    lime | lime-padded)
      # LiME stays loaded after its init; unload it so that the next run loads it afresh.
      rmmod lime >"$D/rmmod.out" 2>&1 || echo "rmmod lime failed: $(cat "$D/rmmod.out")" >>"$D/error"
      ;;
  esac
  state_now "$D/state-after" "$D/verdict"
  grep -E '^(MemTotal|MemFree|Buffers|Cached|Dirty):' /proc/meminfo >"$D/meminfo-after"
  rm -f "$fifo" "$fifo.done"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }' >"$D/seconds"
  if [ $rc -ne 0 ]; then
    echo "the writer exited $rc: $(tail -n 3 "$D/tool.out" | tr '\n' ' ')" >>"$D/error"
  elif [ $crc -ne 0 ]; then
    echo "synq-snapcopy exited $crc: $(cat "$D/copy.err")" >>"$D/error"
  else
    sed -n 's/^bytes=//p' "$D/copy.out" >"$D/bytes"
    [ -s "$D/bytes" ] || echo "synq-snapcopy reported no byte count: $(cat "$D/copy.out")" >>"$D/error"
  fi
  if [ -s "$D/error" ]; then
    log "snapshot $name: FAILED: $(cat "$D/error")"
  else
    log "snapshot $name: $(cat "$D/bytes") bytes onto $dev in $(cat "$D/seconds")s; state after it: $(cat "$D/verdict")"
  fi
}

# After a successful dump mode: results out, SYNQ-DUMP-READY on the console,
# then once a second a SYNQ-DUMP-STATE line saying whether both namespaces
# still show exactly the ground truth (the host dumps while this runs and
# quits QEMU; the loop is bounded all the same).
finish_dump() {
  echo OK >$R/status
  dmesg >$R/dmesg.txt 2>&1 || true
  log "status: OK"
  send_results
  echo "SYNQ-DUMP-READY"
  n=0
  while [ $n -lt 1800 ]; do
    n=$((n + 1))
    if tcp_state "1tcp:/proc/$pid1/net/tcp" "1tcp6:/proc/$pid1/net/tcp6" \
        "2tcp:/proc/$pid2/net/tcp" "2tcp6:/proc/$pid2/net/tcp6" | cmp -s - $R/basic/state; then
      echo "SYNQ-DUMP-STATE $n same"
    else
      echo "SYNQ-DUMP-STATE $n CHANGED"
    fi
    sleep 1
  done
  echo "SYNQ-DUMP-TIMEOUT: no host quit QEMU"
  poweroff -f
  echo o >/proc/sysrq-trigger
  exit 1
}

# Soak mode (issue 7, "Churn soak, live"): while listeners come and go in both
# namespaces, synq must report the fixed listeners of "basic" exactly on every
# run; the kernel's own /proc/net/tcp is sampled as often under the same churn,
# for comparison. Everything is judged on the host (check_soak.py).
# Churners live at most this long (the host's timeout bounds the guest anyway).
CHURN_MAX_S=7200
# A synq run is killed after this; the rule (at most 5 s) is checked on the host.
SOAK_RUN_LIMIT_S=60

mode_soak() {
  runs=$(cmdline_arg synq.soak_runs 200)
  window=$(cmdline_arg synq.churn_window 64)
  rate=$(cmdline_arg synq.churn_rate 1500)
  [ -x /bin/synq ] || fail "synq binary missing from the initramfs (SYNQ_BIN not built?)"
  load_modules rds
  start_listeners
  collect_truth basic "ns1:$pid1:$F/main.out" "ns2:$pid2:$F/ns2.out"
  tcp_state "1tcp:$sc/ns1/tcp" "1tcp6:$sc/ns1/tcp6" "2tcp:$sc/ns2/tcp" "2tcp6:$sc/ns2/tcp6" >"$sc/state"
  [ -s "$sc/state" ] || fail "empty canonical state of the basic scenario"
  log "scenario basic collected ($(wc -l <"$sc/state") listener/request lines) before the churn"
  S=$R/soak
  mkdir -p $S
  # synq's phase timings without churn, to compare with those under it (below).
  SYNQ_TIMING=1 timeout -s KILL $SOAK_RUN_LIMIT_S synq --json >/dev/null 2>$S/timing-quiet || true
  echo "$runs" >$S/runs-wanted
  echo "$window" >$S/window
  echo "$rate" >$S/rate
  nproc >$S/cpus
  # Churn targets: the fixed listeners of each namespace (their address and port, from the fixture's EXPECT
  # lines), so that half of the churn lands in their listening-hash buckets.
  t1=$(awk '$1 == "EXPECT" { print $3 "," $4 }' $F/main.out | tr '\n' ' ')
  t2=$(awk '$1 == "EXPECT" { print $3 "," $4 }' $F/ns2.out | tr '\n' ' ')
  # shellcheck disable=SC2086  # the targets are words
  synq-fixture churn $CHURN_MAX_S "$window" "$rate" $S/churn-ns1.status $t1 >$S/churn-ns1.out 2>&1 &
  c1=$!
  # shellcheck disable=SC2086
  nsenter -t "$pid2" -n synq-fixture churn $CHURN_MAX_S "$window" "$rate" $S/churn-ns2.status $t2 \
    >$S/churn-ns2.out 2>&1 &
  c2=$!
  # Both churners running (a status file with cycles > 0) before the first synq run; bounded.
  i=0
  while [ $i -lt 200 ]; do
    a=$(sed -n 's/^cycles=//p' $S/churn-ns1.status 2>/dev/null)
    b=$(sed -n 's/^cycles=//p' $S/churn-ns2.status 2>/dev/null)
    [ "${a:-0}" -gt 0 ] && [ "${b:-0}" -gt 0 ] && break
    sleep 0.1
    i=$((i + 1))
  done
  if [ "${a:-0}" -eq 0 ] || [ "${b:-0}" -eq 0 ]; then
    fail "churners did not start: $(cat $S/churn-ns1.out $S/churn-ns2.out 2>/dev/null | tr '\n' ' ')"
  fi
  cp $S/churn-ns1.status $S/churn-ns1.before
  cp $S/churn-ns2.status $S/churn-ns2.before
  log "soak: churn running in both namespaces (window $window, rate $rate/s each); $runs synq runs"
  synq-fixture soak "$runs" $S $SOAK_RUN_LIMIT_S "$pid1" "$pid2" -- synq --json 2>$S/soak.err \
    || fail "synq-fixture soak failed: $(tail -n 3 $S/soak.err | tr '\n' ' ')"
  cp $S/churn-ns1.status $S/churn-ns1.after
  cp $S/churn-ns2.status $S/churn-ns2.after
  SYNQ_TIMING=1 timeout -s KILL $SOAK_RUN_LIMIT_S synq --json >/dev/null 2>$S/timing-churn || true
  # Stop the churn (the churners close their listeners on SIGTERM); a watchdog bounds the wait.
  kill -TERM $c1 $c2 2>/dev/null
  (sleep 20; kill -KILL $c1 $c2 2>/dev/null) &
  wd=$!
  wait $c1 $c2
  kill $wd 2>/dev/null
  # The fixed listeners must still be what they were before the churn (no request expired meanwhile).
  state_now $S/state-after $S/verdict
  log "soak: $(grep -c . $S/runs.txt) runs done; churn: $(cat $S/churn-ns1.out $S/churn-ns2.out | tr '\n' ' ');" \
    "state after the churn: $(cat $S/verdict)"
}

# Booted with lockdown=confidentiality: synq must refuse /proc/kcore and say why.
mode_lockdown() {
  L=$R/lockdown-run
  mkdir -p $L
  cat /proc/cmdline >$L/cmdline
  dmesg | grep -i 'locked down' >$L/dmesg-lockdown || true
  run_synq $L/synq
  run_synq $L/synq-json --json
  run_doctor $L/doctor
}

mode_bench() {
  load_modules
  configs=$(cmdline_arg synq.bench "10:1000,1000:1000,10000:1000,10:20000,1000:20000,10000:20000")
  runs=$(cmdline_arg synq.runs 5)
  half=$(cmdline_arg synq.half 5)
  # synq.only=curve: only synq --total and ss's syn-recv count (bench/crossover.sh).
  only=$(cmdline_arg synq.only all)
  B=$R/bench
  mkdir -p $B
  # 200,000 connections are 400,000 sockets and files: more than the default file-max of a 2 GiB guest.
  echo 1048576 >/proc/sys/fs/file-max
  ports=$(cat /proc/sys/net/ipv4/ip_local_port_range)
  step "netns-setup (initial namespace)" netns-setup
  [ -x /bin/synq ] || fail "synq binary missing from the initramfs (SYNQ_BIN not built?)"
  for c in $(echo "$configs" | tr ',' ' '); do
    n=${c%%:*}; m=${c#*:}
    tag="l${n}_c${m}"
    t0=$(date +%s)
    # Progress on the console while a large configuration is set up (sockets in use, memory left).
    ( while sleep 60; do log "bench $tag setup: $(grep TCP: /proc/net/sockstat), $(grep MemAvailable /proc/meminfo)"; done ) &
    progress=$!
    # connect() tries ports of one parity first and scans that whole half before the other: with 25,000
    # connections to one destination in the default 28,232-port range each connect scanned ~14,000 ports,
    # and 200,000 connections took longer than an hour. A wide range keeps each destination's share in the
    # first half while the fixture connects (its sockets close with RST: no TIME_WAIT is left on a port a
    # later configuration binds). The default range is back for what follows (wget's TIME_WAIT sockets).
    echo "1024 65535" >/proc/sys/net/ipv4/ip_local_port_range
    start_fixture "$B/$tag.fixture" synq-fixture bench "$n" "$m" "$half"
    echo "$ports" >/proc/sys/net/ipv4/ip_local_port_range
    kill $progress 2>/dev/null || true
    pid=$FIXTURE_PID
    t1=$(date +%s)
    out=$B/$tag.txt
    echo "CONFIG listeners=$n established=$m halfopen=$half setup_s=$((t1 - t0))" >"$out"
    log "bench $tag ready in $((t1 - t0)) s"
    # What is measured is exactly what a user would type; stdout of the timed
    # command is discarded by the fixture's time mode.
    if [ "$only" = curve ]; then
      {
        synq-fixture time "$runs" synq_total -- synq --total
        synq-fixture time "$runs" ss_synrecv -- sh -c 'ss -tn state syn-recv | wc -l'
      } >>"$out" 2>>"$B/$tag.err"
    else {
      synq-fixture time "$runs" synq_total -- synq --total
      # The static build, where bench.sh put one in (SYNQ_BENCH_STATIC_BIN).
      if [ -x /bin/synq-static ]; then
        synq-fixture time "$runs" synq_total_static -- synq-static --total
      fi
      # The floor of any run: starting and ending the process (exec, loader, argument parsing).
      synq-fixture time "$runs" synq_version -- synq --version
      # An earlier build, where bench.sh put one in (SYNQ_BENCH_BEFORE_BIN).
      if [ -x /bin/synq-before ]; then
        synq-fixture time "$runs" synq_total_before -- synq-before --total
        synq-fixture time "$runs" synq_json_before -- sh -c 'synq-before --json >/dev/null'
      fi
      synq-fixture time "$runs" synq_json -- sh -c 'synq --json >/dev/null'
      synq-fixture time "$runs" synq_requests -- sh -c 'synq --json --requests >/dev/null'
      # One scrape of the resident exporter (issue 9), a walk per scrape (--min-interval 0): wget's own start
      # is in the figure, as ss's is in its own.
      synq serve --listen 127.0.0.1:9813 --min-interval 0 >"$B/$tag.serve.out" 2>"$B/$tag.serve.err" &
      serve_pid=$!
      wait_until "grep -q 'serving http://' $B/$tag.serve.err" 600
      wget -q -O /dev/null http://127.0.0.1:9813/metrics
      synq-fixture time "$runs" serve_scrape -- wget -q -O /dev/null http://127.0.0.1:9813/metrics
      kill -TERM $serve_pid
      wait $serve_pid
      synq-fixture time "$runs" ss_ltn -- sh -c 'ss -ltn >/dev/null'
      synq-fixture time "$runs" ss_synrecv -- sh -c 'ss -tn state syn-recv | wc -l'
    } >>"$out" 2>>"$B/$tag.err"
    fi
    rc=0
    v_synq=$(synq --total 2>>"$B/$tag.err") || rc=$?
    v_ss=$(ss -Htn state syn-recv | wc -l)
    v_proc=$(cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == "03"' | wc -l)
    v_lst=$(ss -Hltn | wc -l)
    v_est=$(ss -Htn state established | wc -l)
    echo "VALUES synq_total=$v_synq synq_rc=$rc ss_synrecv=$v_ss proc_synrecv=$v_proc ss_listeners=$v_lst ss_established=$v_est" >>"$out"
    # synq's own phase timings, if it offers them.
    SYNQ_TIMING=1 synq --total >/dev/null 2>"$B/$tag.timing" || true
    if [ "$only" != curve ]; then
      SYNQ_TIMING=1 synq --json >/dev/null 2>"$B/$tag.timing-json" || true
      SYNQ_TIMING=1 synq --json --requests >/dev/null 2>"$B/$tag.timing-requests" || true
      # --requests lists each half-open request once: as many as /proc's st 03 rows.
      v_req=$(synq --json --requests 2>/dev/null | sed -n 's/.*"requests":{"count":\([0-9]*\).*/\1/p')
      echo "REQUESTS synq_requests=${v_req:-none} proc_synrecv=$v_proc" >>"$out"
    fi
    kill -9 "$pid"
    i=0
    while [ -d "/proc/$pid" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    [ ! -d "/proc/$pid" ] || fail "bench daemon $pid did not exit"
    log "bench $tag done: $(grep VALUES "$out")"
  done
}

# Ground truth of one namespace from /proc alone (snapshot_ns without ss, for the static guest): $1 dir,
# $2 pid of a process in it, $3 suffix.
snapshot_ns_proc() {
  mkdir -p "$1"
  readlink "/proc/$2/ns/net" >"$1/netns" || fail "readlink /proc/$2/ns/net"
  cat "/proc/$2/net/tcp" >"$1/tcp$3" || fail "read /proc/$2/net/tcp"
  cat "/proc/$2/net/tcp6" >"$1/tcp6$3" || fail "read /proc/$2/net/tcp6"
}

# Static mode: synq built static (packaging/build-static.sh) in a guest that has no libc, no loader and no
# ss at all. Records what the guest holds of shared libraries, the "basic" listeners' ground truth (/proc
# only) around synq --json and --total, then synq serve as nobody (found in /etc/passwd by the static
# glibc's built-in files lookup): its status, its memory map (no shared library) and one scrape; then a
# --user that does not exist, which must be refused cleanly.
mode_static() {
  T=$R/static
  mkdir -p $T
  cat /etc/synq-static >$T/built-from 2>&1 || echo "no /etc/synq-static: not the static initramfs" >$T/built-from
  ls -la /lib /lib64 /usr/lib >$T/ls-lib 2>&1
  find / -xdev -name 'ld-linux*' -o -name 'libc.so*' -o -name 'libc-*' -o -name '*.so' -o -name '*.so.*' \
    >$T/libs-found 2>&1
  command -v ss >$T/ss 2>&1 || echo absent >$T/ss
  load_modules
  start_listeners
  sc=$R/basic
  mkdir -p "$sc"
  for spec in "ns1:$pid1:$F/main.out" "ns2:$pid2:$F/ns2.out"; do
    d=${spec%%:*}; rest=${spec#*:}; pid=${rest%%:*}; exp=${rest#*:}
    snapshot_ns_proc "$sc/$d" "$pid" ""
    grep '^EXPECT ' "$exp" >"$sc/$d/expect" || fail "no EXPECT lines in $exp"
    grep '^KIND ' "$exp" >"$sc/$d/kinds" || true
  done
  run_synq "$sc/synq-json" --json
  run_synq "$sc/synq-total" --total
  for spec in "ns1:$pid1" "ns2:$pid2"; do
    snapshot_ns_proc "$sc/${spec%%:*}" "${spec#*:}" ".after"
  done
  synq serve --listen 127.0.0.1:9813 --min-interval 0 >$T/serve.out 2>$T/serve.err &
  spid=$!
  if wait_until "grep -q 'serving http://' $T/serve.err" 600; then
    cat /proc/$spid/status >$T/serve-status 2>&1
    cat /proc/$spid/maps >$T/serve-maps 2>&1
    readlink /proc/$spid/exe >$T/serve-exe 2>&1
    wget -q -O $T/metrics.txt http://127.0.0.1:9813/metrics || echo "wget failed: $?" >$T/scrape-error
    kill -TERM $spid
  else
    kill -9 $spid 2>/dev/null
  fi
  rc=0
  wait $spid || rc=$?
  echo $rc >$T/serve.rc
  run_cmd $T/serve-nouser synq serve --user no-such-user --listen 127.0.0.1:0
  log "static: libraries found: $(grep -c . $T/libs-found); serve exit $(cat $T/serve.rc)," \
    "$(grep -E '^(Uid|CapEff):' $T/serve-status 2>/dev/null | tr '\n\t' '  '); no-such-user exit $(cat $T/serve-nouser.rc)"
}

# The results channel's modules (arm64: virtio_pci, virtio_console where not built in), before anything can
# fail, and its device.
if [ -f /lib/modules/results/order ]; then
  while read -r m; do
    [ -z "$m" ] || insmod "/lib/modules/results/$m.ko" || echo "guest: insmod $m failed"
  done </lib/modules/results/order
  rdev=/dev/$(cmdline_arg synq.results ttyS1)
  n=0
  while [ ! -e "$rdev" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  log "results channel $rdev: $([ -e "$rdev" ] && echo present || echo MISSING) after $n waits" \
    "(modules: $(tr '\n' ' ' </lib/modules/results/order))"
fi
log "kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
mode=$(cmdline_arg synq.mode test)
echo "$mode" >$R/mode
uname -r >$R/release
uname -m >$R/machine
cat /sys/kernel/security/lockdown >$R/lockdown 2>/dev/null || echo "unavailable" >$R/lockdown
cat /proc/cmdline >$R/cmdline
# Whether the CPU offers 5-level paging (QEMU -cpu max does, max,-la57 not);
# the kernel uses it if built with it (Debian 6.1 and 6.12 are).
if grep -qw la57 /proc/cpuinfo; then echo yes >$R/cpu-la57; else echo no >$R/cpu-la57; fi
log "lockdown: $(cat $R/lockdown); cpu la57: $(cat $R/cpu-la57)"
[ -r /proc/kcore ] || fail "/proc/kcore missing"

# qemu_fw_cfg: VMCOREINFO for -device vmcoreinfo; dummy: the SYN-ACK sink
# (numdummies=0: dummy0 is created per namespace); the diag modules let ss use
# sock_diag like on a real host.
# rds_tcp (a kernel listener on port 16385) only where asked ("load_modules rds"): the bench's thousands of
# listeners would collide with it.
load_modules() {
  mods="qemu_fw_cfg dummy inet_diag tcp_diag"
  [ "${1:-}" != rds ] || mods="$mods rds rds_tcp"
  for m in $mods; do
    if grep -qx "$m" /etc/synq-builtin-modules 2>/dev/null; then
      log "$m: built in, not loaded"
      continue
    fi
    if [ "$m" = dummy ]; then
      step "insmod $m" insmod /lib/modules/$m.ko numdummies=0
    else
      step "insmod $m" insmod /lib/modules/$m.ko
    fi
  done
}

case $mode in
  test) mode_test ;;
  lockdown) mode_lockdown ;;
  bench) mode_bench ;;
  dump) mode_dump; finish_dump ;;
  snapshot) mode_snapshot ;;
  soak) mode_soak ;;
  static) mode_static ;;
  *) fail "unknown synq.mode=$mode" ;;
esac
finish OK
