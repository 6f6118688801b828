#!/bin/sh
# Guest helper (busybox sh), installed as /bin/netns-setup: prepares the CURRENT
# network namespace for half-open connections (docs/real-kernel-testing.md):
# requests must stay in SYN_RECV, so no SYN cookies, SYN-ACKs retried "forever",
# and a dummy0 that swallows the SYN-ACKs sent to the non-local clients.
set -e

w() { echo "$2" >"/proc/sys/$1"; }

# Per-netns sysctls (all are per network namespace on 5.10+).
w net/ipv4/tcp_syncookies 0
w net/ipv4/tcp_synack_retries 255
w net/ipv4/tcp_syn_retries 127
# TCP Fast Open, client and server, without cookies (1 | 2 | 4 TFO_CLIENT_NO_COOKIE | 0x200
# TFO_SERVER_COOKIE_NOT_REQD): the fixture's Fast Open connection over loopback (issue 8).
w net/ipv4/tcp_fastopen 519
# Before dummy0 exists, so it inherits "default": no tentative addresses, the
# listeners can bind 2001:db8::1 at once.
w net/ipv6/conf/all/accept_dad 0
w net/ipv6/conf/default/accept_dad 0

ip link set lo up
ip link add dummy0 type dummy
# Documentation ranges, inside the guest only. 192.0.2.2 is for the
# specific-vs-wildcard attribution case on one port.
ip addr add 192.0.2.1/24 dev dummy0
ip addr add 192.0.2.2/24 dev dummy0
ip -6 addr add 2001:db8::1/64 dev dummy0
ip link set dummy0 up
# A second client network (the fixture's half_open_from ... 1): SYN-ACKs to it leave by dummy0 too.
ip route add 198.51.100.0/24 dev dummy0
ip -6 route add 2001:db8:1::/48 dev dummy0
