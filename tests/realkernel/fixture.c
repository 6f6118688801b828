/*
 * synq-fixture: TCP listeners with KNOWN queue contents, for the synq
 * real-kernel harness (runs as a static binary inside a QEMU guest).
 *
 *   synq-fixture scenario main [mptcp] | scenario ns2
 *       Listeners with known SYN-queue (half-open) and accept-queue
 *       (completed, never accepted) contents in the current network namespace.
 *       "mptcp" adds an MPTCP listener (its TCP subflow listener is what
 *       /proc/net/tcp and synq see) and prints a "KIND" line for it.
 *   synq-fixture idle COUNT BASEPORT
 *       COUNT extra idle listeners (half on 127.0.0.1, half on [::1]).
 *   synq-fixture bench LISTENERS ESTABLISHED HALFOPEN
 *       LISTENERS listeners, ESTABLISHED connect()+accept()ed connections
 *       (both ends kept open) and HALFOPEN half-open requests.
 *   synq-fixture time RUNS LABEL -- CMD [ARG...]
 *       Runs CMD RUNS times (its stdout to /dev/null), prints the wall times
 *       (CLOCK_MONOTONIC, fork to exit).
 *   synq-fixture as UID GID -- CMD [ARG...]
 *       Drops every privilege (no supplementary groups, real/effective/saved
 *       ids UID/GID), checks that it cannot get root back, execs CMD. Exit 126
 *       if the drop cannot be verified, 127 if CMD cannot be executed.
 *   synq-fixture mptcp-probe
 *       Prints "ok" if socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) works, else
 *       "errno N NAME" (always exit 0: the caller records, check.py judges).
 *   synq-fixture churn MAX_SECONDS WINDOW RATE STATUS ADDR,PORT...
 *       Listeners opened and closed RATE times a second (0: as fast as it can)
 *       in the current netns (ephemeral ports; half of them in the lhash2
 *       buckets of the given fixed listeners), WINDOW alive at any time;
 *       the count in STATUS and the rate on exit.
 *   synq-fixture soak RUNS OUTDIR LIMIT_S PID1 PID2 -- CMD [ARG...]
 *       Runs CMD RUNS times (outputs, exit codes, wall times), each followed by
 *       a copy of /proc/PID{1,2}/net/tcp{,6} as a reader gets it.
 *
 * The setup modes print one "EXPECT <family> <addr> <port> <listeners> <syn>
 * <accept>" line per listener key they created (and a "KIND <family> <addr>
 * <port> <kind>" line per key whose listener synq must label), wait (bounded) until
 * /proc/self/net/tcp{,6} shows exactly those counts, print "READY pid=<pid>"
 * and leave a daemon child holding every socket (so the caller can go on
 * once the command returns). On any failure they print "FAIL ..." to stderr
 * and exit 1, so the guest's /init can stop at once.
 *
 * Half-open connections follow docs/real-kernel-testing.md: the client socket
 * has IP_TRANSPARENT / IPV6_TRANSPARENT and binds the non-local 192.0.2.99 /
 * 2001:db8::99; its SYN reaches the listener over lo, the listener's SYN-ACK
 * is routed out of dummy0, which drops it, so the request stays in SYN_RECV
 * (tcp_syncookies=0 and tcp_synack_retries=255 are set by /init).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

#define V4_LISTEN "192.0.2.1"
#define V4_LISTEN2 "192.0.2.2"
#define V4_CLIENT "192.0.2.99"
#define V6_LISTEN "2001:db8::1"
#define V6_CLIENT "2001:db8::99"
/* A second source network (another /24 and /48), for the per-listener source prefixes of --requests. */
#define V4_CLIENT2 "198.51.100.99"
#define V6_CLIENT2 "2001:db8:1::99"

/* How long to wait for the kernel to show the expected queues (TCG is slow). */
#define SETTLE_TIMEOUT_MS 30000

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static long now_ms(void);
static void fail(const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	fprintf(stderr, "FAIL synq-fixture: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (e)
		fprintf(stderr, " (errno %d: %s)", e, strerror(e));
	fputc('\n', stderr);
	exit(1);
}

/* ---- listener keys: (family, address, port), as /proc/net/tcp shows them ---- */

struct key {
	int family;    /* AF_INET / AF_INET6 */
	char hex[33];  /* address as /proc/net/tcp{,6} prints it */
	char text[INET6_ADDRSTRLEN];
	unsigned port;
	long listeners, syn, acc;          /* expected */
	const char *kind;                  /* label synq must print, NULL = none */
	long reuseport;                    /* listeners made with SO_REUSEPORT */
	int defer_secs;                    /* TCP_DEFER_ACCEPT as getsockopt reads it back, -1 = not set */
	long o_listeners, o_syn, o_acc;    /* observed */
};

static struct key *keys;
static size_t nkeys, capkeys;

/* The clients of half-open requests. They are closed once the queues have
 * settled (closing a SYN_SENT socket sends nothing; the requests stay in the
 * listeners' SYN queues): otherwise each retransmitted SYN, which the listener
 * answers and discards, adds to the listener's drop count (sk_drops), and the
 * drops would keep moving under the ground truth. */
static int *clients;
static size_t nclients, capclients;

/* The scenario modes leave a forked worker holding the listeners too. */
static int fork_worker;

static void keep_client(int fd)
{
	if (nclients == capclients) {
		capclients = capclients ? capclients * 2 : 256;
		clients = realloc(clients, capclients * sizeof(*clients));
		if (!clients)
			fail("out of memory");
	}
	clients[nclients++] = fd;
}

static void close_clients(void)
{
	for (size_t i = 0; i < nclients; i++)
		close(clients[i]);
	nclients = 0;
}

/* /proc/net/tcp prints the IPv4 address as the u32 s_addr in host order
 * ("%08X"); tcp6 prints the four u32 words of s6_addr32 the same way. */
static void addr_hex(int family, const void *addr, char out[33])
{
	uint32_t w[4];
	if (family == AF_INET) {
		memcpy(w, addr, 4);
		snprintf(out, 33, "%08X", w[0]);
	} else {
		memcpy(w, addr, 16);
		snprintf(out, 33, "%08X%08X%08X%08X", w[0], w[1], w[2], w[3]);
	}
}

/* An open-addressing index over keys (slot = index + 1, 0 = empty): the bench
 * makes up to 200,000 listeners, and a linear find_key per listener and per
 * /proc line made its setup quadratic (hours under emulation). */
static size_t *khash;
static size_t khcap; /* a power of two, more than twice nkeys */

static size_t key_hash(int family, const char *hex, unsigned port)
{
	size_t h = 1469598103934665603u ^ (size_t)family ^ ((size_t)port << 8);
	for (const char *c = hex; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211u;
	return h;
}

static void khash_put(size_t i)
{
	size_t m = khcap - 1, h = key_hash(keys[i].family, keys[i].hex, keys[i].port) & m;
	while (khash[h])
		h = (h + 1) & m;
	khash[h] = i + 1;
}

static void khash_grow(void)
{
	if (2 * (nkeys + 1) < khcap)
		return;
	free(khash);
	khcap = khcap ? khcap * 2 : 256;
	khash = calloc(khcap, sizeof(*khash));
	if (!khash)
		fail("out of memory");
	for (size_t i = 0; i < nkeys; i++)
		khash_put(i);
}

static struct key *find_key(int family, const char *hex, unsigned port)
{
	if (!khcap)
		return NULL;
	size_t m = khcap - 1;
	for (size_t h = key_hash(family, hex, port) & m; khash[h]; h = (h + 1) & m) {
		struct key *k = &keys[khash[h] - 1];
		if (k->family == family && k->port == port && strcmp(k->hex, hex) == 0)
			return k;
	}
	return NULL;
}

static struct key *get_key(int family, const char *text, unsigned port)
{
	unsigned char a[16];
	char hex[33];
	if (inet_pton(family, text, a) != 1)
		fail("bad address %s", text);
	addr_hex(family, a, hex);
	struct key *k = find_key(family, hex, port);
	if (k)
		return k;
	if (nkeys == capkeys) {
		capkeys = capkeys ? capkeys * 2 : 64;
		keys = realloc(keys, capkeys * sizeof(*keys));
		if (!keys)
			fail("out of memory");
	}
	khash_grow();
	k = &keys[nkeys++];
	memset(k, 0, sizeof(*k));
	k->defer_secs = -1;
	k->family = family;
	k->port = port;
	strcpy(k->hex, hex);
	/* Print the text form the way RFC 5952 / inet_ntop does. */
	inet_ntop(family, a, k->text, sizeof(k->text));
	khash_put(nkeys - 1);
	return k;
}

/* The listener a request to (family, addr, port) hangs off: the exact
 * (addr, port) listener if there is one, else the wildcard of that port.
 * The same rule check.py applies to the ground truth. */
static struct key *attribute(int family, const char *text, unsigned port)
{
	unsigned char a[16];
	char hex[33];
	if (inet_pton(family, text, a) != 1)
		fail("bad address %s", text);
	addr_hex(family, a, hex);
	struct key *k = find_key(family, hex, port);
	if (k && k->listeners)
		return k;
	k = get_key(family, family == AF_INET ? "0.0.0.0" : "::", port);
	if (!k->listeners)
		fail("no listener for %s port %u", text, port);
	return k;
}

static void fill_sa(int family, const char *text, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		if (inet_pton(AF_INET, text, &s->sin_addr) != 1)
			fail("bad address %s", text);
		*len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		if (inet_pton(AF_INET6, text, &s->sin6_addr) != 1)
			fail("bad address %s", text);
		*len = sizeof(*s);
	}
}

static int family_of(const char *text) { return strchr(text, ':') ? AF_INET6 : AF_INET; }

static void set_int(int fd, int level, int opt, int val, const char *name)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)) < 0)
		fail("setsockopt %s", name);
}

/* Close with RST instead of FIN: no TIME_WAIT left behind when a bench
 * daemon is killed, so the next configuration starts from a clean table. */
static void set_linger0(int fd)
{
	struct linger l = {1, 0};
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) < 0)
		fail("setsockopt SO_LINGER");
}

#define F_REUSEPORT 1
#define F_MPTCP 2
#define F_FASTOPEN 4   /* TCP_FASTOPEN with a queue of FASTOPEN_QLEN */
#define F_DEFER 8      /* TCP_DEFER_ACCEPT of DEFER_SECS */
#define FASTOPEN_QLEN 5
#define DEFER_SECS 10

static int listen_on(const char *addr, unsigned port, int backlog, int flags)
{
	int family = family_of(addr);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, flags & F_MPTCP ? IPPROTO_MPTCP : 0);
	if (fd < 0)
		fail(flags & F_MPTCP ? "socket(IPPROTO_MPTCP)" : "socket");
	set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	if (flags & F_REUSEPORT)
		set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
	if (flags & F_FASTOPEN)
		set_int(fd, IPPROTO_TCP, TCP_FASTOPEN, FASTOPEN_QLEN, "TCP_FASTOPEN");
	/* Every v6 listener is V6ONLY: no IPv4 request may hang off it. */
	if (family == AF_INET6)
		set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
	struct sockaddr_storage ss;
	socklen_t len;
	fill_sa(family, addr, port, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		fail("bind %s port %u", addr, port);
	if (listen(fd, backlog) < 0)
		fail("listen %s port %u", addr, port);
	struct key *k = get_key(family, addr, port);
	k->listeners++;
	if (flags & F_MPTCP)
		k->kind = "mptcp-subflow";
	if (flags & F_REUSEPORT)
		k->reuseport++;
	if (flags & F_DEFER) {
		/* The kernel keeps SYN-ACK retransmits; getsockopt gives them back as seconds. */
		set_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, DEFER_SECS, "TCP_DEFER_ACCEPT");
		int v = -1;
		socklen_t vl = sizeof(v);
		if (getsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, &vl) < 0 || v <= 0)
			fail("getsockopt TCP_DEFER_ACCEPT gave %d", v);
		k->defer_secs = v;
	}
	return fd;
}

/* n requests that stay in SYN_RECV on the listener of (dst, port), from the
 * first (alt 0) or the second (alt 1) client network. */
static void half_open_from(const char *dst, unsigned port, int n, int alt);

static void half_open(const char *dst, unsigned port, int n)
{
	half_open_from(dst, port, n, 0);
}

static void half_open_from(const char *dst, unsigned port, int n, int alt)
{
	int family = family_of(dst);
	struct key *k = attribute(family, dst, port);
	for (int i = 0; i < n; i++) {
		int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail("socket");
		if (family == AF_INET)
			set_int(fd, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT");
		else
			set_int(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT");
		set_linger0(fd);
		struct sockaddr_storage ss;
		socklen_t len;
		fill_sa(family, family == AF_INET ? (alt ? V4_CLIENT2 : V4_CLIENT) : (alt ? V6_CLIENT2 : V6_CLIENT), 0,
			&ss, &len);
		if (bind(fd, (struct sockaddr *)&ss, len) < 0)
			fail("bind transparent client");
		fill_sa(family, dst, port, &ss, &len);
		if (connect(fd, (struct sockaddr *)&ss, len) == 0 || errno != EINPROGRESS)
			fail("half-open connect to %s port %u did not stay in progress", dst, port);
		errno = 0;
		keep_client(fd);
	}
	k->syn += n;
}

static int connect_to(const char *dst, unsigned port)
{
	int family = family_of(dst);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("socket");
	set_linger0(fd);
	struct sockaddr_storage ss;
	socklen_t len;
	fill_sa(family, dst, port, &ss, &len);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		fail("connect %s port %u", dst, port);
	return fd;
}

/* n completed connections that the listener never accept()s. */
static void unaccepted(const char *dst, unsigned port, int n)
{
	struct key *k = attribute(family_of(dst), dst, port);
	for (int i = 0; i < n; i++)
		connect_to(dst, port);
	k->acc += n;
}

/* A TcpExt counter of the current network namespace (/proc/self/net/netstat), -1 if absent. */
static long tcpext(const char *name)
{
	FILE *f = fopen("/proc/self/net/netstat", "r");
	if (!f)
		fail("open /proc/self/net/netstat");
	static char names[8192], values[8192];
	long found = -1;
	while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
		if (strncmp(names, "TcpExt:", 7) != 0)
			continue;
		char *sn, *sv;
		char *n = strtok_r(names + 7, " \n", &sn);
		char *v = strtok_r(values + 7, " \n", &sv);
		for (; n && v; n = strtok_r(NULL, " \n", &sn), v = strtok_r(NULL, " \n", &sv))
			if (strcmp(n, name) == 0)
				found = atol(v);
	}
	fclose(f);
	return found;
}

static int observe_matches(int report);

/* Connection attempts to the listener of (dst, port), one at a time, until
 * it drops one because its SYN queue (transparent: from the non-local client,
 * like half_open) or its accept queue (plain loopback clients, which complete)
 * is full. Where "full" starts differs between kernels (">=" or ">" the
 * backlog), so each attempt is watched: one that joins the queue (/proc shows
 * one more request or completed connection for the key) is counted there and
 * kept; the first the listener drops (the namespace's ListenDrops moves) is
 * closed at once, so that no retransmitted SYN adds drops and the listener's
 * drop count (sk_drops, ss -ltm's skmem "d") stays what the ground truth
 * reads. At most max attempts. With tcp_syncookies=1 the SYN beyond a full
 * SYN queue is answered with a cookie instead: counter names the TcpExt
 * counter that marks the attempt the queue refused (ListenDrops, or
 * TCPReqQFullDoCookies). */
static void fill_until(const char *dst, unsigned port, int transparent, int max, const char *counter)
{
	int family = family_of(dst);
	struct key *k = attribute(family, dst, port);
	for (int i = 0; i < max; i++) {
		long drops = tcpext(counter);
		if (drops < 0)
			fail("no TcpExt %s in /proc/self/net/netstat", counter);
		observe_matches(0);
		long syn = k->o_syn, acc = k->o_acc;
		int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail("socket");
		set_linger0(fd);
		struct sockaddr_storage ss;
		socklen_t len;
		if (transparent) {
			set_int(fd, family == AF_INET ? SOL_IP : SOL_IPV6,
				family == AF_INET ? IP_TRANSPARENT : IPV6_TRANSPARENT, 1, "IP(V6)_TRANSPARENT");
			fill_sa(family, family == AF_INET ? V4_CLIENT : V6_CLIENT, 0, &ss, &len);
			if (bind(fd, (struct sockaddr *)&ss, len) < 0)
				fail("bind transparent client");
		}
		fill_sa(family, dst, port, &ss, &len);
		if (connect(fd, (struct sockaddr *)&ss, len) == 0 || errno != EINPROGRESS)
			fail("connect to %s port %u did not stay in progress", dst, port);
		errno = 0;
		long start = now_ms();
		for (;;) {
			if (tcpext(counter) > drops) {
				close(fd);
				return;
			}
			observe_matches(0);
			if (transparent && k->o_syn > syn) {
				k->syn++;
				keep_client(fd);
				break;
			}
			if (!transparent && k->o_acc > acc) {
				k->acc++;
				break;
			}
			if (now_ms() - start > SETTLE_TIMEOUT_MS)
				fail("%s port %u: attempt %d neither joined a queue nor was dropped", dst, port, i + 1);
			usleep(20 * 1000);
		}
	}
	fail("%s port %u: no drop after %d attempts", dst, port, max);
}

#ifndef TCPI_OPT_SYN_DATA
#define TCPI_OPT_SYN_DATA 32
#endif

/* One connection made with TCP Fast Open (data in the SYN, accepted by the
 * listener's Fast Open queue) that the listener never accept()s. Fails unless
 * the kernel says the SYN's data was acknowledged (TCPI_OPT_SYN_DATA). */
static void fastopen_unaccepted(const char *dst, unsigned port)
{
	int family = family_of(dst);
	struct key *k = attribute(family, dst, port);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("socket");
	set_linger0(fd);
	struct sockaddr_storage ss;
	socklen_t len;
	fill_sa(family, dst, port, &ss, &len);
	if (sendto(fd, "synq", 4, MSG_FASTOPEN, (struct sockaddr *)&ss, len) != 4)
		fail("sendto MSG_FASTOPEN %s port %u", dst, port);
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	long start = now_ms();
	for (;;) {
		memset(&ti, 0, sizeof(ti));
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0)
			fail("getsockopt TCP_INFO");
		if (ti.tcpi_state == 1 /* TCP_ESTABLISHED */)
			break;
		if (now_ms() - start > SETTLE_TIMEOUT_MS)
			fail("Fast Open connection to %s port %u not established (state %u)", dst, port, ti.tcpi_state);
		usleep(20 * 1000);
	}
	if (!(ti.tcpi_options & TCPI_OPT_SYN_DATA))
		fail("connection to %s port %u did not use Fast Open (tcpi_options %#x; net.ipv4.tcp_fastopen?)",
		     dst, port, ti.tcpi_options);
	k->acc += 1;
}

/* ---- ground truth, as the fixture's own netns shows it ---- */

static void observe_file(const char *path, int family)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail("open %s", path);
	char line[512];
	struct req { char hex[33]; unsigned port; } *reqs = NULL;
	size_t nreq = 0, capreq = 0;
	if (!fgets(line, sizeof(line), f)) /* header */
		fail("read %s", path);
	while (fgets(line, sizeof(line), f)) {
		char lhex[33], rhex[33];
		unsigned lport, rport, st;
		unsigned long tx, rx;
		if (sscanf(line, " %*d: %32[0-9A-F]:%X %32[0-9A-F]:%X %X %lX:%lX", lhex, &lport, rhex, &rport, &st, &tx, &rx) != 7)
			fail("cannot parse %s line: %s", path, line);
		if (st == 0x0A) {
			struct key *k = find_key(family, lhex, lport);
			if (k) {
				k->o_listeners++;
				k->o_acc += (long)rx;
			}
		} else if (st == 0x03) {
			if (nreq == capreq) {
				capreq = capreq ? capreq * 2 : 256;
				reqs = realloc(reqs, capreq * sizeof(*reqs));
				if (!reqs)
					fail("out of memory");
			}
			strcpy(reqs[nreq].hex, lhex);
			reqs[nreq++].port = lport;
		}
	}
	fclose(f);
	/* Attribute requests only after every listener line was seen. */
	const char *wild = family == AF_INET ? "00000000" : "00000000000000000000000000000000";
	for (size_t i = 0; i < nreq; i++) {
		struct key *k = find_key(family, reqs[i].hex, reqs[i].port);
		if (!k || !k->o_listeners)
			k = find_key(family, wild, reqs[i].port);
		if (k)
			k->o_syn++;
	}
	free(reqs);
}

static int observe_matches(int report)
{
	for (size_t i = 0; i < nkeys; i++)
		keys[i].o_listeners = keys[i].o_syn = keys[i].o_acc = 0;
	observe_file("/proc/self/net/tcp", AF_INET);
	observe_file("/proc/self/net/tcp6", AF_INET6);
	int ok = 1;
	for (size_t i = 0; i < nkeys; i++) {
		struct key *k = &keys[i];
		if (!k->listeners)
			continue; /* a destination-only key (attributed to a wildcard) */
		if (k->o_listeners != k->listeners || k->o_syn != k->syn || k->o_acc != k->acc) {
			ok = 0;
			if (report)
				fprintf(stderr, "FAIL synq-fixture: %s %s port %u: expected listeners=%ld syn=%ld acc=%ld, /proc shows %ld %ld %ld\n",
					k->family == AF_INET ? "inet" : "inet6", k->text, k->port,
					k->listeners, k->syn, k->acc, k->o_listeners, k->o_syn, k->o_acc);
		}
	}
	return ok;
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* Half-open requests appear once the softirq has processed the SYN, completed
 * connections once the final ACK is in: poll /proc until the counts are what
 * was built, then check once more a moment later (they must be stable). */
static void settle(void)
{
	long start = now_ms();
	for (;;) {
		if (observe_matches(0)) {
			usleep(300 * 1000);
			if (observe_matches(1))
				break;
			fail("queues changed after they had settled");
		}
		if (now_ms() - start > SETTLE_TIMEOUT_MS) {
			observe_matches(1);
			errno = 0;
			fail("queues did not reach the expected counts within %d ms", SETTLE_TIMEOUT_MS);
		}
		usleep(50 * 1000);
	}
	fprintf(stderr, "synq-fixture: settled after %ld ms\n", now_ms() - start);
}

static void print_expect(void)
{
	for (size_t i = 0; i < nkeys; i++) {
		struct key *k = &keys[i];
		if (!k->listeners)
			continue;
		printf("EXPECT %s %s %u %ld %ld %ld\n", k->family == AF_INET ? "inet" : "inet6",
		       k->text, k->port, k->listeners, k->syn, k->acc);
		const char *fam = k->family == AF_INET ? "inet" : "inet6";
		if (k->kind)
			printf("KIND %s %s %u %s\n", fam, k->text, k->port, k->kind);
		/* Per-listener details (issue 8): what the fixture set, for check_details.py. */
		if (k->reuseport)
			printf("REUSEPORT %s %s %u %ld\n", fam, k->text, k->port, k->reuseport);
		if (k->defer_secs >= 0)
			printf("DEFER %s %s %u %d\n", fam, k->text, k->port, k->defer_secs);
	}
}

/* Print READY with the pid of a daemon child that keeps every socket open
 * until it is killed; the parent returns so /init can go on. */
static void daemonize_ready(void)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid > 0) {
		printf("READY pid=%d\n", (int)pid);
		fflush(stdout);
		_exit(0);
	}
	setsid();
	int nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
	}
	signal(SIGHUP, SIG_IGN);
	/* A forked worker holding the same sockets, as pre-forking servers have
	 * (issue 8: each listener's owners are both processes, each once). It
	 * dies with the daemon. */
	if (fork_worker) {
		pid_t w = fork();
		if (w == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			prctl(PR_SET_NAME, "synq-worker");
			for (;;)
				pause();
		}
	}
	for (;;)
		pause();
}

/* watch-target DIR (issue 9's --watch test): one listener, 192.0.2.1 port 8040 with backlog 4, held by a
 * daemon that waits for two steps: SIGUSR1 adds 3 half-open requests, SIGUSR2 fills the SYN queue until the
 * listener drops a SYN. After each step the daemon writes DIR/stepN holding the listener's SYN-queue length
 * as /proc shows it (and, after the second, the namespace's ListenDrops), so the guest knows the step is
 * done and what the kernel says. */
static volatile sig_atomic_t watch_step;

static void on_watch_step(int sig)
{
	watch_step = sig == SIGUSR1 ? 1 : 2;
}

static void mode_watch_target(const char *dir)
{
	int fd = listen_on(V4_LISTEN, 8040, 4, 0);
	(void)fd;
	settle();
	print_expect();
	signal(SIGUSR1, on_watch_step);
	signal(SIGUSR2, on_watch_step);
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid > 0) {
		printf("READY pid=%d\n", (int)pid);
		fflush(stdout);
		_exit(0);
	}
	setsid();
	struct key *k = attribute(AF_INET, V4_LISTEN, 8040);
	for (int done = 0; done < 2;) {
		while (!watch_step)
			pause();
		int step = watch_step;
		watch_step = 0;
		if (step == 1)
			half_open(V4_LISTEN, 8040, 3);
		else
			fill_until(V4_LISTEN, 8040, 1, 32, "ListenDrops");
		/* Once the requests are in, their clients go: a client's retransmitted SYN would otherwise add
		 * drops later, in the wrong interval (as in settle/close_clients of the scenarios). */
		usleep(300 * 1000);
		close_clients();
		usleep(100 * 1000);
		observe_matches(0);
		char path[512];
		snprintf(path, sizeof(path), "%s/step%d", dir, step);
		FILE *f = fopen(path, "w");
		if (!f)
			fail("fopen %s", path);
		fprintf(f, "syn=%ld listendrops=%ld\n", k->o_syn, tcpext("ListenDrops"));
		fclose(f);
		done++;
	}
	for (;;)
		pause();
}

static void raise_nofile(long want)
{
	long nr_open = 1048576;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	if (f) {
		if (fscanf(f, "%ld", &nr_open) != 1)
			nr_open = 1048576;
		fclose(f);
	}
	if (want > nr_open)
		want = nr_open;
	struct rlimit r = {(rlim_t)want, (rlim_t)want};
	if (setrlimit(RLIMIT_NOFILE, &r) < 0)
		fail("setrlimit RLIMIT_NOFILE %ld", want);
}

/* ---- modes ---- */

static void scenario_main(int mptcp)
{
	/* 7 half-open + 3 unaccepted on a specific IPv4 listener. */
	listen_on(V4_LISTEN, 8001, 128, 0);
	/* IPv6, V6ONLY: 5 half-open + 1 unaccepted. */
	listen_on(V6_LISTEN, 8002, 128, 0);
	/* Wildcards on one port, both families (the v6 one V6ONLY). */
	listen_on("0.0.0.0", 8003, 128, 0);
	listen_on("::", 8003, 128, 0);
	/* SO_REUSEPORT pair on one addr:port: two listeners under one key, each
	 * with its own queues (the kernel spreads requests by hash). */
	listen_on(V4_LISTEN, 8005, 128, F_REUSEPORT);
	listen_on(V4_LISTEN, 8005, 128, F_REUSEPORT);
	/* A specific and a wildcard listener on one port (SO_REUSEPORT lets both
	 * listen; different addresses so no reuseport group): requests to
	 * 192.0.2.2 hang off the specific one, those to 192.0.2.1 off 0.0.0.0. */
	listen_on(V4_LISTEN2, 8010, 128, F_REUSEPORT);
	listen_on("0.0.0.0", 8010, 128, F_REUSEPORT);
	/* Loopback listeners: one with TCP_DEFER_ACCEPT (idle), one with a Fast
	 * Open queue holding one unaccepted Fast Open connection. */
	listen_on("127.0.0.1", 8007, 128, F_DEFER);
	listen_on("::1", 8007, 128, F_FASTOPEN);
	/* Full queues, and the drops they cause: a SYN queue filled to its limit
	 * (backlog 3; the next SYN is dropped and the listener marked
	 * synflood_warned, tcp_syncookies being 0), and an accept queue filled to
	 * its limit (backlog 1; the next SYN is dropped, a ListenOverflow).
	 * Backlog 3, not more: once qlen * 2 > max(8, backlog), reqsk_timer_handler
	 * prunes requests after 2 SYN-ACK retransmits, and the queue would shrink
	 * under the ground truth (a full queue holds 3 requests where "full" is
	 * ">= backlog", 4 where it is "> backlog"). */
	listen_on(V4_LISTEN, 8030, 3, 0);
	listen_on(V4_LISTEN, 8031, 1, 0);

	/* MPTCP listener (kernel with MPTCP only): the kernel hashes its TCP
	 * subflow listener, which synq labels "mptcp-subflow". The clients are
	 * plain TCP (the subflow falls back), so both queues fill as usual. */
	if (mptcp)
		listen_on(V4_LISTEN, 8020, 128, F_MPTCP);

	half_open(V4_LISTEN, 8001, 5);
	half_open_from(V4_LISTEN, 8001, 2, 1);
	unaccepted(V4_LISTEN, 8001, 3);
	half_open(V6_LISTEN, 8002, 3);
	half_open_from(V6_LISTEN, 8002, 2, 1);
	unaccepted(V6_LISTEN, 8002, 1);
	half_open(V4_LISTEN, 8003, 4);    /* -> 0.0.0.0:8003 */
	unaccepted("127.0.0.1", 8003, 2); /* -> 0.0.0.0:8003 */
	half_open(V6_LISTEN, 8003, 3);    /* -> [::]:8003 */
	unaccepted("::1", 8003, 2);       /* -> [::]:8003 */
	half_open(V4_LISTEN, 8005, 6);    /* split over the pair */
	unaccepted(V4_LISTEN, 8005, 2);
	half_open(V4_LISTEN2, 8010, 3);   /* -> 192.0.2.2:8010 */
	half_open(V4_LISTEN, 8010, 2);    /* -> 0.0.0.0:8010 */
	unaccepted(V4_LISTEN, 8010, 1);   /* -> 0.0.0.0:8010 */
	fastopen_unaccepted("::1", 8007);
	fill_until(V4_LISTEN, 8030, 1, 16, "ListenDrops");
	fill_until(V4_LISTEN, 8031, 0, 16, "ListenDrops");
	if (mptcp) {
		half_open(V4_LISTEN, 8020, 2);
		unaccepted(V4_LISTEN, 8020, 1);
	}
}

/* The second network namespace: same addresses and a port shared with the
 * first one (the keys differ only by netns), different counts. */
static void scenario_ns2(void)
{
	listen_on(V4_LISTEN, 8001, 128, 0);
	listen_on(V6_LISTEN, 8002, 128, 0);
	listen_on("0.0.0.0", 9001, 128, 0);
	half_open(V4_LISTEN, 8001, 3);
	unaccepted(V4_LISTEN, 8001, 1);
	half_open(V6_LISTEN, 8002, 1);
	unaccepted(V6_LISTEN, 8002, 2);
	/* /init sets tcp_syncookies=1 here: a SYN queue filled to its limit
	 * (backlog 3, see scenario_main) answers the next SYN with a cookie
	 * (SyncookiesSent, TCPReqQFullDoCookies) instead of dropping it. */
	listen_on(V4_LISTEN, 9030, 3, 0);
	fill_until(V4_LISTEN, 9030, 1, 16, "TCPReqQFullDoCookies");
}

static void mode_idle(long count, long base)
{
	if (count < 1 || base < 1024 || base + count / 2 + 1 > 32767)
		fail("idle: bad COUNT %ld / BASEPORT %ld (ports must stay below 32768)", count, base);
	raise_nofile(count + 256);
	for (long i = 0; i < count; i++)
		listen_on(i % 2 ? "::1" : "127.0.0.1", (unsigned)(base + i / 2), 16, 0);
}

static void mode_bench(long nlisten, long nconn, long nhalf)
{
	/* 200,000 listeners: 10 loopback addresses of 20,000 ports each. */
	const long per_addr = 20000;
	if (nlisten < 2 || nconn < 0 || nhalf < 0 || nlisten > 10 * per_addr || nconn > 220000)
		fail("bench: bad arguments");
	raise_nofile(nlisten + 2 * nconn + nhalf + 256);
	const unsigned base = 10000;
	/* Listener 0 on 192.0.2.1 takes the half-open requests; the others are on
	 * 127.0.0.1, then 127.0.0.2 and on, ports 10001..30000 (below the ephemeral
	 * range, so no connect() competes for them). */
	int *lfd = calloc((size_t)nlisten, sizeof(int));
	if (!lfd)
		fail("out of memory");
	lfd[0] = listen_on(V4_LISTEN, base, 4096, 0);
	for (long i = 1; i < nlisten; i++) {
		char addr[16];
		snprintf(addr, sizeof(addr), "127.0.0.%ld", 1 + (i - 1) / per_addr);
		lfd[i] = listen_on(addr, (unsigned)(base + 1 + (i - 1) % per_addr), 128, 0);
	}
	/* ESTABLISHED connections spread over up to 8 listeners so no single
	 * destination comes near ephemeral-port exhaustion (28k ports each). */
	long spread = nlisten - 1 < 8 ? nlisten - 1 : 8;
	for (long c = 0; c < nconn; c++) {
		long li = 1 + c % spread;
		connect_to("127.0.0.1", base + (unsigned)li);
		int a = accept4(lfd[li], NULL, NULL, SOCK_CLOEXEC);
		if (a < 0)
			fail("accept (connection %ld)", c);
		set_linger0(a);
	}
	half_open(V4_LISTEN, base, (int)nhalf);
	free(lfd);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

static int mode_time(int runs, const char *label, char **argv)
{
	long *us = calloc((size_t)runs, sizeof(long));
	int rc = 0;
	if (!us)
		fail("out of memory");
	for (int r = 0; r < runs; r++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid_t pid = fork();
		if (pid < 0)
			fail("fork");
		if (pid == 0) {
			/* Only the time is wanted: the command's stdout is discarded. */
			int nul = open("/dev/null", O_WRONLY);
			if (nul >= 0)
				dup2(nul, 1);
			execvp(argv[0], argv);
			_exit(127);
		}
		int status;
		if (waitpid(pid, &status, 0) < 0)
			fail("waitpid");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		us[r] = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000L;
		int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (code)
			rc = code;
	}
	long *sorted = malloc((size_t)runs * sizeof(long));
	if (!sorted)
		fail("out of memory");
	memcpy(sorted, us, (size_t)runs * sizeof(long));
	qsort(sorted, (size_t)runs, sizeof(long), cmp_long);
	/* Median of an even count: the mean of the two middle runs. */
	long med = runs % 2 ? sorted[runs / 2] : (sorted[runs / 2 - 1] + sorted[runs / 2]) / 2;
	printf("TIME %s runs=%d median_ms=%.1f min_ms=%.1f max_ms=%.1f rc=%d all_ms=", label, runs,
	       med / 1000.0, sorted[0] / 1000.0, sorted[runs - 1] / 1000.0, rc);
	for (int r = 0; r < runs; r++)
		printf("%s%.1f", r ? "," : "", us[r] / 1000.0);
	printf("\n");
	free(us);
	free(sorted);
	return 0;
}

static int mode_as(long uid, long gid, char **argv)
{
	if (uid <= 0 || gid <= 0 || uid > 65535 || gid > 65535)
		fail("as: UID and GID must be 1..65535");
	if (setgroups(0, NULL) < 0)
		fail("setgroups");
	if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0)
		fail("setresgid %ld", gid);
	if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
		fail("setresuid %ld", uid);
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		fail("getresuid/getresgid");
	int ngroups = getgroups(0, NULL);
	if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid || ngroups != 0) {
		fprintf(stderr, "FAIL synq-fixture: as: ids after the drop are uid %u/%u/%u gid %u/%u/%u groups %d\n",
			ru, eu, su, rg, eg, sg, ngroups);
		return 126;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		fprintf(stderr, "FAIL synq-fixture: as: could become root again after dropping to %ld\n", uid);
		return 126;
	}
	errno = 0;
	execvp(argv[0], argv);
	fprintf(stderr, "FAIL synq-fixture: as: exec %s: %s\n", argv[0], strerror(errno));
	return 127;
}

static int mode_mptcp_probe(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
	if (fd >= 0) {
		close(fd);
		printf("ok\n");
	} else {
		int e = errno;
		printf("errno %d %s\n", e, e == EPROTONOSUPPORT ? "EPROTONOSUPPORT" : strerror(e));
	}
	return 0;
}

static long arg_long(const char *s);

/* ---- churn soak (issue 7): listeners that come and go, and the soak loop ---- */

static volatile sig_atomic_t churn_stop;

static void on_churn_term(int sig)
{
	(void)sig;
	churn_stop = 1;
}

struct churn_target {
	int family;
	char addr[INET6_ADDRSTRLEN];
	unsigned port; /* a fixed listener's port: explicit churn ports share its low 8 bits */
};

/* The kernel's default ephemeral range (net.ipv4.ip_local_port_range): every churn port lies in it, so no
 * churn listener can take a fixed listener's key (those ports are below 32768). */
#define EPH_LO 32768
#define EPH_HI 60999

static void churn_status(const char *path, long cycles, long fails, long start_ms, int done)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "cycles=%ld\nfails=%ld\nstart_ms=%ld\nnow_ms=%ld\ndone=%d\n", cycles, fails, start_ms, now_ms(),
		done);
	fclose(f);
	rename(tmp, path); /* readers see the old or the new file, never half of one */
}

/*
 * synq-fixture churn MAX_SECONDS WINDOW RATE STATUS ADDR,PORT...
 * Opens and closes TCP listeners in the current network namespace, RATE cycles a second (0: as fast as it
 * can; a paced churner leaves the other processes, synq among them, CPU time, as on a real server whose CPUs
 * are not all spent on listeners), until SIGTERM or MAX_SECONDS: each cycle is socket(), bind(), listen(),
 * then close() of the listener opened WINDOW cycles
 * before (so WINDOW churn listeners exist at any time and the listening hash keeps changing under a
 * reader). Cycles alternate between a port the kernel picks (bind to port 0: the ephemeral range, any
 * bucket) and an explicit port of the ephemeral range on the address of one of the given fixed listeners
 * whose low 8 bits equal that listener's port: the listening hash (lhash2) bucket of a socket is
 * (jhash(address, netns) ^ port) & lhash2_mask, and these 512 MiB guests have 256 buckets (lhash2_mask 255,
 * read from their dumps), so such a listener lands in the very bucket of the fixed one, ahead of it (IPv4
 * listeners go to the head of a bucket): a reader of that bucket sees it change. A failed bind
 * (the port taken by another churn listener) is counted, not fatal. STATUS is rewritten about 4 times a
 * second (cycles, fails, CLOCK_MONOTONIC ms); at the end one "CHURN cycles=... rate=..." line on stdout.
 */
static int mode_churn(long max_s, long window, long rate, const char *status, int ntargets, char **targets)
{
	if (max_s < 1 || window < 1 || window > 4096 || rate < 0 || ntargets < 1)
		fail("churn: bad arguments");
	struct churn_target *t = calloc((size_t)ntargets, sizeof(*t));
	int *ring = malloc((size_t)window * sizeof(int));
	if (!t || !ring)
		fail("out of memory");
	for (int i = 0; i < ntargets; i++) {
		char *comma = strrchr(targets[i], ',');
		if (!comma || (size_t)(comma - targets[i]) >= sizeof(t[i].addr))
			fail("churn: target %s is not ADDR,PORT", targets[i]);
		memcpy(t[i].addr, targets[i], (size_t)(comma - targets[i]));
		t[i].port = (unsigned)arg_long(comma + 1);
		t[i].family = family_of(t[i].addr);
	}
	for (long i = 0; i < window; i++)
		ring[i] = -1;
	raise_nofile(window + 256);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_churn_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	long start = now_ms(), last = start, cycles = 0, fails = 0, slot = 0;
	unsigned long rnd = (unsigned long)getpid() * 2654435761UL + (unsigned long)start;
	churn_status(status, 0, 0, start, 0);
	for (long n = 0; !churn_stop; n++) {
		if ((n & 7) == 0) {
			long now = now_ms();
			if (now - start > max_s * 1000)
				break;
			if (now - last >= 250) {
				churn_status(status, cycles, fails, start, 0);
				last = now;
			}
			/* Paced: no cycle before its time (cycle c is due at start + c / RATE seconds). */
			long due = rate ? start + cycles * 1000 / rate : 0;
			if (due > now)
				usleep((useconds_t)(due - now) * 1000);
		}
		struct churn_target *c = &t[n / 2 % ntargets];
		unsigned port = 0;
		if (n & 1) {
			/* Same low 8 bits as the fixed listener's port, inside the ephemeral range. */
			unsigned lo = c->port & 255, k0 = (EPH_LO + 255 - lo) / 256, k1 = (EPH_HI - lo) / 256;
			rnd = rnd * 6364136223846793005UL + 1442695040888963407UL;
			port = lo + 256 * (k0 + (unsigned)((rnd >> 33) % (k1 - k0 + 1)));
		}
		int fd = socket(c->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			fail("churn: socket");
		int one = 1;
		if (c->family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		struct sockaddr_storage ss;
		socklen_t len;
		fill_sa(c->family, c->addr, port, &ss, &len);
		if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
			close(fd);
			fails++;
			continue;
		}
		if (ring[slot] >= 0) {
			close(ring[slot]);
			cycles++; /* one listener opened and one closed */
		}
		ring[slot] = fd;
		slot = (slot + 1) % window;
	}
	for (long i = 0; i < window; i++)
		if (ring[i] >= 0)
			close(ring[i]);
	long end = now_ms();
	churn_status(status, cycles, fails, start, 1);
	printf("CHURN cycles=%ld fails=%ld seconds=%.1f rate=%.0f\n", cycles, fails, (end - start) / 1000.0,
	       end > start ? cycles * 1000.0 / (double)(end - start) : 0.0);
	free(t);
	free(ring);
	return 0;
}

/* Copies /proc/PID/net/FILE into OUT as a reader would take it (read() until EOF: the kernel serves it in
 * pieces of at most a page), keeping the header, every st 0A line of a port below the ephemeral range (the
 * fixed listeners; churn listeners are left out to keep the results small) and every st 03 line. Returns
 * the number of read() calls; *listen_lines gets the number of st 0A lines and *dup_inodes the number of
 * st 0A lines whose socket inode appeared on an earlier st 0A line of this copy (a row served twice). */
static int proc_copy(long pid, const char *file, const char *out, int *listen_lines, int *dup_inodes)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/net/%s", pid, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open %s", path);
	size_t cap = 1 << 16, used = 0;
	char *buf = malloc(cap + 1);
	if (!buf)
		fail("out of memory");
	int reads = 0;
	for (;;) {
		if (cap - used < 4096) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				fail("out of memory");
		}
		ssize_t r = read(fd, buf + used, 4096);
		if (r < 0)
			fail("read %s", path);
		reads++;
		if (r == 0)
			break;
		used += (size_t)r;
	}
	close(fd);
	buf[used] = 0;
	FILE *o = fopen(out, "w");
	if (!o)
		fail("create %s", out);
	unsigned long inodes[4096];
	int ninodes = 0;
	*listen_lines = *dup_inodes = 0;
	int first = 1;
	for (char *line = buf, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line) - 1;
		char saved = nl[1];
		nl[1] = 0;
		unsigned lport, st;
		unsigned long inode;
		char lhex[33];
		if (first) {
			fputs(line, o);
			first = 0;
		} else if (sscanf(line, " %*d: %32[0-9A-F]:%X %*32[0-9A-F]:%*X %X %*X:%*X %*X:%*X %*X %*u %*d %lu", lhex,
				  &lport, &st, &inode) == 4) {
			if (st == 0x0A) {
				(*listen_lines)++;
				for (int i = 0; i < ninodes; i++)
					if (inodes[i] == inode) {
						(*dup_inodes)++;
						break;
					}
				if (ninodes < 4096)
					inodes[ninodes++] = inode;
				if (lport < EPH_LO)
					fputs(line, o);
			} else if (st == 0x03) {
				fputs(line, o);
			}
		}
		nl[1] = saved;
		if (!saved)
			break;
	}
	fclose(o);
	free(buf);
	return reads;
}

static void mkdir_p(const char *d)
{
	if (mkdir(d, 0755) < 0 && errno != EEXIST)
		fail("mkdir %s", d);
}

/*
 * synq-fixture soak RUNS OUTDIR LIMIT_S PID1 PID2 -- CMD [ARG...]
 * RUNS times: CMD (stdout to OUTDIR/run/NNNNN.out, stderr to .err; killed after LIMIT_S seconds), timed from
 * fork to exit (CLOCK_MONOTONIC), one "RUN i rc ms" line in OUTDIR/runs.txt (rc 128+N: signal N; "timeout"
 * when killed); then, under the same churn, the kernel's own /proc/PID/net/tcp and tcp6 of both namespaces
 * (PID1, PID2) the way a reader gets them (proc_copy) into OUTDIR/proc/NNNNN/ns1|ns2/, with one
 * "PROC i ns file reads listen_lines dup_inodes ms" line each in OUTDIR/proc.txt. Progress every 50 runs on
 * stdout. Exit 0 once all runs are done (the host judges them).
 */
static int mode_soak(long runs, const char *outdir, long limit_s, long pid1, long pid2, char **argv)
{
	if (runs < 1 || runs > 100000 || limit_s < 1)
		fail("soak: bad arguments");
	char path[4096];
	mkdir_p(outdir);
	snprintf(path, sizeof(path), "%s/run", outdir);
	mkdir_p(path);
	snprintf(path, sizeof(path), "%s/proc", outdir);
	mkdir_p(path);
	snprintf(path, sizeof(path), "%s/runs.txt", outdir);
	FILE *rf = fopen(path, "w");
	snprintf(path, sizeof(path), "%s/proc.txt", outdir);
	FILE *pf = fopen(path, "w");
	if (!rf || !pf)
		fail("soak: cannot create %s/runs.txt or proc.txt", outdir);
	setvbuf(rf, NULL, _IOLBF, 0);
	setvbuf(pf, NULL, _IOLBF, 0);
	long pids[2] = {pid1, pid2};
	const char *files[2] = {"tcp", "tcp6"};
	for (long i = 0; i < runs; i++) {
		char out[4096], err[4096];
		snprintf(out, sizeof(out), "%s/run/%05ld.out", outdir, i);
		snprintf(err, sizeof(err), "%s/run/%05ld.err", outdir, i);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid_t pid = fork();
		if (pid < 0)
			fail("fork");
		if (pid == 0) {
			int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			int n = open("/dev/null", O_RDONLY);
			if (o < 0 || e < 0 || n < 0)
				_exit(127);
			dup2(n, 0);
			dup2(o, 1);
			dup2(e, 2);
			execvp(argv[0], argv);
			_exit(127);
		}
		int status = 0, timed_out = 0;
		long start = now_ms();
		for (;;) {
			pid_t w = waitpid(pid, &status, WNOHANG);
			if (w == pid)
				break;
			if (w < 0)
				fail("waitpid");
			if (now_ms() - start > limit_s * 1000) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				timed_out = 1;
				break;
			}
			usleep(2000);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double ms = (t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
		if (timed_out)
			fprintf(rf, "RUN %ld timeout %.1f\n", i, ms);
		else
			fprintf(rf, "RUN %ld %d %.1f\n", i,
				WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ms);
		snprintf(path, sizeof(path), "%s/proc/%05ld", outdir, i);
		mkdir_p(path);
		for (int n = 0; n < 2; n++) {
			snprintf(path, sizeof(path), "%s/proc/%05ld/ns%d", outdir, i, n + 1);
			mkdir_p(path);
			for (int f = 0; f < 2; f++) {
				snprintf(path, sizeof(path), "%s/proc/%05ld/ns%d/%s", outdir, i, n + 1, files[f]);
				int ll, dups;
				clock_gettime(CLOCK_MONOTONIC, &t0);
				int reads = proc_copy(pids[n], files[f], path, &ll, &dups);
				clock_gettime(CLOCK_MONOTONIC, &t1);
				fprintf(pf, "PROC %ld ns%d %s %d %d %d %.1f\n", i, n + 1, files[f], reads, ll, dups,
					(t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
			}
		}
		if ((i + 1) % 50 == 0 || i + 1 == runs)
			printf("synq-fixture soak: %ld/%ld runs\n", i + 1, runs);
	}
	fclose(rf);
	fclose(pf);
	return 0;
}

static long arg_long(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s)
		fail("not a number: %s", s);
	return v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: synq-fixture scenario main [mptcp] | scenario ns2\n"
		"       synq-fixture idle COUNT BASEPORT\n"
		"       synq-fixture bench LISTENERS ESTABLISHED HALFOPEN\n"
		"       synq-fixture time RUNS LABEL -- CMD [ARG...]\n"
		"       synq-fixture as UID GID -- CMD [ARG...]\n"
		"       synq-fixture mptcp-probe\n"
		"       synq-fixture churn MAX_SECONDS WINDOW RATE STATUS ADDR,PORT...\n"
		"       synq-fixture soak RUNS OUTDIR LIMIT_S PID1 PID2 -- CMD [ARG...]\n"
		"       synq-fixture watch-target DIR\n");
	exit(2);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	if (strcmp(mode, "time") == 0) {
		if (argc < 6 || strcmp(argv[4], "--") != 0)
			usage();
		long runs = arg_long(argv[2]);
		if (runs < 1 || runs > 1000)
			fail("bad RUNS");
		return mode_time((int)runs, argv[3], argv + 5);
	}
	if (strcmp(mode, "as") == 0) {
		if (argc < 6 || strcmp(argv[4], "--") != 0)
			usage();
		return mode_as(arg_long(argv[2]), arg_long(argv[3]), argv + 5);
	}
	if (strcmp(mode, "mptcp-probe") == 0 && argc == 2)
		return mode_mptcp_probe();
	if (strcmp(mode, "churn") == 0 && argc >= 7)
		return mode_churn(arg_long(argv[2]), arg_long(argv[3]), arg_long(argv[4]), argv[5], argc - 6, argv + 6);
	if (strcmp(mode, "soak") == 0 && argc >= 10 && strcmp(argv[7], "--") == 0)
		return mode_soak(arg_long(argv[2]), argv[3], arg_long(argv[4]), arg_long(argv[5]), arg_long(argv[6]),
				 argv + 8);
	if (strcmp(mode, "scenario") == 0 && (argc == 3 || argc == 4)) {
		fork_worker = 1;
		int mptcp = argc == 4 && strcmp(argv[3], "mptcp") == 0;
		if (argc == 4 && !mptcp)
			usage();
		if (strcmp(argv[2], "main") == 0)
			scenario_main(mptcp);
		else if (strcmp(argv[2], "ns2") == 0 && !mptcp)
			scenario_ns2();
		else
			usage();
	} else if (strcmp(mode, "idle") == 0 && argc == 4) {
		mode_idle(arg_long(argv[2]), arg_long(argv[3]));
	} else if (strcmp(mode, "watch-target") == 0 && argc == 3) {
		mode_watch_target(argv[2]);
	} else if (strcmp(mode, "bench") == 0 && argc == 5) {
		mode_bench(arg_long(argv[2]), arg_long(argv[3]), arg_long(argv[4]));
	} else {
		usage();
	}
	errno = 0;
	settle();
	close_clients();
	print_expect();
	daemonize_ready();
	return 0;
}
