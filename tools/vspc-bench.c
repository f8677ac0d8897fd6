/*
 * vspc-bench: load generator and measuring tool for vspcd (issue 6).
 *
 * One process, one event loop, both sides of the concentrator:
 *
 * - N simulated VMs, each one TCP connection that negotiates like ESXi
 *   (the same handshake as vspc-sim: WILL AUTHENTICATION, KS-1 + DO-PROXY
 *   on KS-2, GET-* answered, WILL COM-PORT) and, when asked, does vMotions
 *   the way vspc-sim's successful path does (BEGIN, GOAHEAD, a destination
 *   connection with KS-1 + PEER, PEER-OK, source FIN, COMPLETE);
 * - K telnet clients per VM, attached through the port's per-port listener
 *   (client_port from the admin API) or through the front door.
 *
 * VMs print fixed-size binary records: magic (two 0xFF inside), VM index,
 * sequence number, CLOCK_MONOTONIC send time, FNV-1a of the header, then a
 * fixed payload with an 0xFF every 64 bytes. Clients check each record
 * (header checksum, payload compare, VM index), count loss, duplication,
 * reordering and corruption from the sequence numbers, and put receive
 * time minus send time in a histogram.
 *
 * Per-byte work is kept out of the hot paths: the payload is escaped once
 * at start (only the 24-byte header is escaped per record), clients undo
 * IAC doubling with memchr() runs into one process-wide buffer and only
 * hand real telnet commands to the codec, payloads are checked with
 * memcmp(). Rate-limited output is driven by one 1 ms timer for all VMs;
 * unlimited output refills each VM's send queue from its write callback.
 *
 * Per VM the state is a small struct plus the connection (bufferevent and
 * telnet codec); clients read with a plain event into a shared buffer.
 * The fd limit is raised to the hard maximum; to go past it run several
 * processes with different --vm-offset and --source lists.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>

#include "compat.h"
#include "cork.h"
#include "simtls.h"
#include "telnet.h"
#include "vmwext.h"
#include "xmalloc.h"

#define BENCH_TICK_US		1000	/* the one periodic timer */
#define BENCH_SOURCES_MAX	256
#define BENCH_NAME_MAX		48
#define BENCH_READ_CHUNK	(128 * 1024)
#define BENCH_GEN_CHUNK		(64 * 1024)
#define BENCH_OUT_HIGH		(256 * 1024)	/* unlimited: fill up to */
#define BENCH_OUT_LOW		(64 * 1024)	/* unlimited: refill below */
#define BENCH_OUT_CAP		(1024 * 1024)	/* rate mode: stall above */
#define BENCH_PEND_MAX		256	/* a split telnet command */
#define BENCH_FD_LINE_MAX	512U	/* front door text before attach */
#define BENCH_VMO_LIMIT_NS	(5000ULL * 1000000)	/* ESXi vmotionLimit */
#define BENCH_FIGS_MAX		96
#define BENCH_CONNECTS_PER_TICK	1000

#define REC_HDR		24	/* magic 4, vm 4, seq 4, time 8, fnv 4 */
#define REC_MIN		32
#define REC_MAX		65536

static const uint8_t rec_magic[4] = { 0xff, 'v', 'b', 0xff };

enum scenario {
	SC_HOLD = 0, SC_RELAY, SC_LATENCY, SC_VMOTION, SC_GOAHEAD, SC_MAX,
};

static const char *scenario_names[SC_MAX] = {
	[SC_HOLD] = "hold", [SC_RELAY] = "relay", [SC_LATENCY] = "latency",
	[SC_VMOTION] = "vmotion", [SC_GOAHEAD] = "goahead",
};

/* Run phases, in order. */
enum phase {
	PH_RAMP = 0,		/* opening VMs until all are identified */
	PH_ATTACH,		/* opening clients until all are attached */
	PH_RUN,			/* the measured window (--duration) */
	PH_DRAIN,		/* output stopped; waiting for the tail */
	PH_DONE,
};

enum vm_state {
	VM_IDLE = 0,		/* not opened yet */
	VM_NEGOTIATING,		/* connecting or waiting for WILL-PROXY */
	VM_READY,		/* identified */
	VM_FAILED,		/* closed, refused or never identified */
};

/* vMotion steps of one VM. */
enum vmo_step {
	VMO_NONE = 0,
	VMO_BEGIN,		/* BEGIN sent, waiting for GOAHEAD */
	VMO_DEST,		/* destination up, waiting for PEER-OK */
};

#define LK_F_KS1	0x01	/* KS-1 (and DO-PROXY or PEER) sent */
#define LK_F_READY	0x02	/* WILL-PROXY received */
#define LK_F_TLS	0x04	/* --tls: TCP up, the TLS filter is on */
#define LK_F_TLSUP	0x08	/* --tls: handshake done */

struct vm;

/* One TCP connection of a VM: its main one or a vMotion destination. */
struct link {
	struct vm *vm;
	struct bufferevent *bev;	/* what the link reads and writes */
	struct bufferevent *raw;	/* the socket (bev unless --tls) */
	struct telnet tn;
	uint64_t tcp_ns;		/* --tls: TCP connected */
	uint8_t flags;
	bool dest;
	bool in_input;
	bool dead;
};

enum client_state {
	CL_CONNECTING = 0,
	CL_PROMPT,		/* front door: waiting for "attached to" */
	CL_ATTACHED,
	CL_CLOSED,
};

/* One telnet client of a VM's console. */
struct client {
	struct client *next;		/* the VM's clients */
	struct vm *vm;
	struct event ev;
	struct telnet tn;
	uint8_t *rbuf;			/* a record split across reads */
	char *line;			/* front door text before attach */
	uint64_t bytes;			/* console bytes received */
	uint64_t records;
	uint64_t lost;
	uint64_t dup;			/* duplicated or reordered */
	uint64_t corrupt;
	uint64_t misrouted;		/* another VM's record */
	uint64_t junk;			/* bytes outside records */
	uint64_t notices;		/* daemon "bytes skipped" notices */
	uint32_t next_seq;
	uint32_t rlen;
	uint16_t llen;
	int fd;
	uint8_t pend[BENCH_PEND_MAX];	/* an incomplete telnet command */
	uint16_t npend;
	uint8_t state;
	bool locked;			/* the previous record was good */
	bool seen;			/* a record arrived */
	bool slow;			/* all input through the codec */
};

/* One simulated VM with one serial port. */
struct vm {
	struct link *link;		/* main connection */
	struct link *dst;		/* vMotion destination */
	struct client *clients;
	uint64_t next_due_ns;		/* rate mode: next record */
	uint64_t due_key_ns;		/* its place in the due heap */
	uint64_t vmo_t0_ns;		/* BEGIN sent */
	uint32_t idx;			/* global index (with --vm-offset) */
	uint32_t seq;			/* next record */
	uint32_t client_port;		/* per-port listener or 0 */
	uint8_t cookie[VMWEXT_COOKIE_MAX];	/* seq || secret */
	uint8_t seqlen;
	uint8_t cookielen;
	uint8_t state;
	uint8_t vmo;			/* enum vmo_step */
	bool stunned;
	bool out_on;
};

/* A log-linear histogram of nanoseconds (about 3 % resolution). */
#define HIST_SUB	32
#define HIST_N		(64 * HIST_SUB)
struct hist {
	uint64_t n;
	uint64_t max;
	uint64_t min;
	double sum;
	uint32_t b[HIST_N];
};

/* One reported figure. */
struct fig {
	const char *key;
	const char *label;
	double v;
	int prec;
	bool valid;
};

/* Process-wide configuration and state. */
static struct {
	/* Options. */
	enum scenario sc;
	uint32_t nvms;
	uint32_t cpv;			/* clients per VM */
	bool cpv_set;
	uint32_t vm_offset;
	uint8_t tag[4];
	char prefix[BENCH_NAME_MAX];
	char uri[128];
	double connect_rate;
	uint32_t max_pending;
	uint64_t rate;			/* B/s per VM, 0 = unlimited */
	bool rate_set;
	uint32_t recsize;
	double duration;
	double vmo_rate;
	uint64_t vmo_count;		/* 0 = no cap */
	bool goahead_complete;
	double ramp_timeout;
	double drain_timeout;
	const char *json_path;
	const char *target_spec;
	const char *admin_spec;
	const char *listeners_path;
	const char *frontdoor_spec;
	const char *source_spec;
	bool quiet;
	long daemon_pid;
	uint32_t wait_conns;		/* --wait-connections */
	uint32_t wait_clients;		/* --wait-clients */
	bool tls;			/* --tls */
	struct simtls_opts tls_opts;

	struct sockaddr_storage target;
	socklen_t target_len;
	struct sockaddr_storage admin;
	socklen_t admin_len;
	bool have_admin;
	struct sockaddr_storage frontdoor;
	socklen_t frontdoor_len;
	bool have_frontdoor;
	struct sockaddr_storage srcs[BENCH_SOURCES_MAX];
	socklen_t src_lens[BENCH_SOURCES_MAX];
	size_t nsrcs;
	size_t next_src;
	size_t next_csrc;

	/* Run time. */
	struct event_base *base;
	struct event *tick_ev;
	struct event *sig_ev[2];
	struct vm *vms;
	enum phase phase;
	uint64_t t_start_ns;
	uint64_t t_phase_ns;
	uint64_t t_last_tick_ns;
	uint64_t last_progress_ns;
	uint32_t next_open;		/* ramp cursor */
	uint32_t pending;		/* VMs negotiating */
	uint32_t not_opened;		/* out of descriptors */
	uint32_t fleet;			/* VM connections, all processes */
	uint32_t ticks;
	uint32_t identified;
	uint32_t refused;
	uint32_t vm_failed;		/* closed before identified */
	uint32_t vm_lost;		/* closed after identified */
	uint64_t t_first_connect_ns;
	uint64_t t_last_ident_ns;
	double connect_credit;
	bool warned_fd;

	/* Clients. */
	uint32_t nclients;		/* created */
	uint32_t clients_attached;
	uint32_t clients_failed;
	struct client **cl_open;	/* the clients, in opening order */
	uint32_t cl_next;
	uint32_t cl_pending;

	/* Output. */
	uint64_t rec_interval_ns;
	uint64_t records_sent;
	uint64_t bytes_sent;		/* console bytes, unescaped */
	uint64_t out_stalls;
	uint64_t t_run_ns;
	uint64_t t_run_end_ns;
	uint64_t t_last_recv_ns;
	uint64_t recv_bytes;		/* all clients, console bytes */

	/* vMotion. */
	double vmo_credit;
	uint32_t vmo_cursor;
	uint32_t vmo_seqno;
	uint64_t vmo_started;
	uint64_t vmo_completed;
	uint64_t vmo_aborted;		/* goahead scenario: ABORT after GOAHEAD */
	uint64_t vmo_notnow;
	uint64_t vmo_failed;
	uint64_t vmo_anomalies;
	uint32_t vmo_open;
	uint64_t t_vmo_first_ns;
	uint64_t t_vmo_last_ns;
	struct hist h_goahead;
	struct hist h_vmotion;
	struct hist h_lat;
	struct hist h_ident;
	struct hist h_tls;		/* TCP connected -> TLS done */
	uint64_t tls_ok;
	uint64_t tls_failed;

	/* Daemon and own process figures. */
	bool have_proc;
	uint64_t rss_base_kib;
	uint64_t rss_ramp_kib;
	uint64_t cpu0_ticks, cpu1_ticks;
	uint64_t rss_end_kib;
	uint64_t ramp_ticks0, ramp_ticks1;
	double ramp_self0, ramp_self1;
	uint64_t t_ramp_end_ns;
	uint64_t t_cpu0_ns, t_cpu1_ns;
	double self_cpu0, self_cpu1;

	struct fig figs[BENCH_FIGS_MAX];
	size_t nfigs;
	int exit_code;
} b;

/* Process-wide scratch buffers. */
static uint8_t rd_buf[BENCH_READ_CHUNK + BENCH_PEND_MAX];
static uint8_t dec_buf[BENCH_READ_CHUNK + BENCH_PEND_MAX];
static uint8_t gen_buf[BENCH_GEN_CHUNK];
static uint8_t *tmpl;			/* one record's payload, plain */
static uint8_t *tmpl_esc;		/* the same with 0xFF doubled */
static size_t tmpl_esc_len;

/* KNOWN-SUBOPTIONS-1 in ESXi's order (as vspc-sim sends it). */
static const uint8_t esxi_ks1[] = {
	0x00, 0x01, 0x02, 0x03, 0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30,
	0x46, 0x47, 0x49, 0x50, 0x51, 0x54, 0x55, 0x56, 0x57, 0x52, 0x53,
};

static void bench_warnx(const char *, ...) printflike(1, 2);
static __dead void bench_fatalx(const char *, ...) printflike(1, 2);
static void bench_note(const char *, ...) printflike(1, 2);
static uint64_t now_ns(void);
static double secs(uint64_t, uint64_t);
static void link_lost(struct link *, const char *);
static void link_telnet_cb(void *, const struct telnet_event *);
static void link_read_cb(struct bufferevent *, void *);
static void link_write_cb(struct bufferevent *, void *);
static void link_event_cb(struct bufferevent *, short, void *);
static void vm_fill(struct vm *);
static void client_close(struct client *, bool);

/* Print a warning to stderr. */
static void
bench_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vspc-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Print a message to stderr and exit with status 2. */
static void
bench_fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vspc-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* Print a progress note to stderr unless --quiet. */
static void
bench_note(const char *fmt, ...)
{
	va_list ap;

	if (b.quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "vspc-bench: [%7.3f] ", secs(b.t_start_ns, now_ns()));
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Return the monotonic clock in nanoseconds. */
static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec);
}

/* Seconds between two monotonic times. */
static double
secs(uint64_t from, uint64_t to)
{
	return (to > from ? (double)(to - from) / 1e9 : 0.0);
}

/* FNV-1a 32 of len bytes. */
static uint32_t
fnv1a32(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return (h);
}

/* -- histograms ------------------------------------------------------- */

/* Bucket index of a value. */
static size_t
hist_idx(uint64_t v)
{
	int e;

	if (v < HIST_SUB)
		return ((size_t)v);
	e = 63 - __builtin_clzll(v);
	return ((size_t)(e - 4) * HIST_SUB + ((v >> (e - 5)) & (HIST_SUB - 1)));
}

/* Middle of a bucket. */
static uint64_t
hist_mid(size_t i)
{
	int e;
	uint64_t lo, w;

	if (i < HIST_SUB)
		return (i);
	e = (int)(i / HIST_SUB) + 4;
	w = 1ULL << (e - 5);
	lo = (HIST_SUB + i % HIST_SUB) * w;
	return (lo + w / 2);
}

/* Count one value. */
static void
hist_add(struct hist *h, uint64_t v)
{
	if (h->n == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->n++;
	h->sum += (double)v;
	h->b[hist_idx(v)]++;
}

/* The p-quantile (0..1) of the histogram, bounded by its maximum. */
static uint64_t
hist_q(const struct hist *h, double p)
{
	uint64_t want, seen = 0, v;
	size_t i;

	if (h->n == 0)
		return (0);
	want = (uint64_t)ceil(p * (double)h->n);
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_N; i++) {
		seen += h->b[i];
		if (seen >= want) {
			v = hist_mid(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return (v);
		}
	}
	return (h->max);
}

/* -- figures ---------------------------------------------------------- */

/* Record one figure for the table and the JSON file. */
static void
fig_add(const char *key, const char *label, double v, int prec)
{
	struct fig *f;

	if (b.nfigs == BENCH_FIGS_MAX)
		bench_fatalx("too many figures");
	f = &b.figs[b.nfigs++];
	f->key = key;
	f->label = label;
	f->v = v;
	f->prec = prec;
	f->valid = !isnan(v) && !isinf(v);
}

/* Record the p50/p90/p99/max of a histogram in microseconds. */
static void
fig_hist(const struct hist *h, const char *prefix, const char *what)
{
	static char keys[8][4][64], labels[8][4][96];
	static int slot;
	static const char *qn[4] = { "p50", "p90", "p99", "max" };
	static const double qv[4] = { 0.50, 0.90, 0.99, 1.0 };
	int i, s = slot++ % 8;
	double v;

	for (i = 0; i < 4; i++) {
		snprintf(keys[s][i], sizeof keys[s][i], "%s_%s_us", prefix,
		    qn[i]);
		snprintf(labels[s][i], sizeof labels[s][i], "%s %s (us)",
		    what, qn[i]);
		v = h->n == 0 ? NAN : (double)(i == 3 ? h->max :
		    hist_q(h, qv[i])) / 1000.0;
		fig_add(keys[s][i], labels[s][i], v, 1);
	}
}

/* -- addresses, listeners.json, the admin API -------------------------- */

/* Resolve HOST:PORT or [V6]:PORT, or (with defport) a bare address. */
static int
parse_addr(const char *spec, const char *defport,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct addrinfo hints, *res;
	char host[256];
	const char *port, *colon;
	size_t hlen;
	int rc;

	port = defport;
	if (spec[0] == '[') {
		if ((colon = strchr(spec, ']')) == NULL)
			return (-1);
		hlen = (size_t)(colon - spec - 1);
		if (hlen >= sizeof host)
			return (-1);
		memcpy(host, spec + 1, hlen);
		host[hlen] = '\0';
		if (colon[1] == ':')
			port = colon + 2;
		else if (colon[1] != '\0')
			return (-1);
	} else if ((colon = strrchr(spec, ':')) != NULL &&
	    strchr(spec, ':') == colon) {
		hlen = (size_t)(colon - spec);
		if (hlen >= sizeof host)
			return (-1);
		memcpy(host, spec, hlen);
		host[hlen] = '\0';
		port = colon + 1;
	} else if (strlcpy(host, spec, sizeof host) >= sizeof host)
		return (-1);
	if (port == NULL)
		return (-1);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		bench_warnx("%s: %s", spec, gai_strerror(rc));
		return (-1);
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
}

/* Set the port of an address. */
static void
addr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* Read a small file into a NUL-terminated buffer; NULL on error. */
static char *
read_small_file(const char *path)
{
	char *buf;
	size_t n;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		return (NULL);
	buf = xcalloc(1, 8192);
	n = fread(buf, 1, 8191, f);
	buf[n] = '\0';
	fclose(f);
	return (buf);
}

/*
 * Find "key": in JSON text and return the number after it (-1 for null
 * or missing). Good enough for listeners.json and one port object.
 */
static long long
json_num(const char *s, const char *end, const char *key)
{
	char pat[64];
	const char *p;
	long long v;

	snprintf(pat, sizeof pat, "\"%s\"", key);
	if ((p = memmem(s, (size_t)(end - s), pat, strlen(pat))) == NULL)
		return (-1);
	p += strlen(pat);
	while (p < end && (*p == ' ' || *p == ':' || *p == '['))
		p++;
	if (p >= end || *p < '0' || *p > '9')
		return (-1);
	v = 0;
	while (p < end && *p >= '0' && *p <= '9')
		v = v * 10 + (*p++ - '0');
	return (v);
}

/* Find "key": "value" in JSON text; copy the value; -1 if missing. */
static int
json_str(const char *s, const char *end, const char *key, char *out,
    size_t cap)
{
	char pat[64];
	const char *p, *q;

	snprintf(pat, sizeof pat, "\"%s\"", key);
	if ((p = memmem(s, (size_t)(end - s), pat, strlen(pat))) == NULL)
		return (-1);
	p += strlen(pat);
	while (p < end && (*p == ' ' || *p == ':'))
		p++;
	if (p >= end || *p != '"')
		return (-1);
	p++;
	if ((q = memchr(p, '"', (size_t)(end - p))) == NULL ||
	    (size_t)(q - p) >= cap)
		return (-1);
	memcpy(out, p, (size_t)(q - p));
	out[q - p] = '\0';
	return (0);
}

/* Take the target, admin, front door and pid from listeners.json. */
static void
load_listeners(const char *path)
{
	char *text, spec[64];
	const char *end;
	long long v;

	if ((text = read_small_file(path)) == NULL)
		bench_fatalx("%s: %s", path, strerror(errno));
	end = text + strlen(text);
	if (b.daemon_pid == 0 && (v = json_num(text, end, "pid")) > 0)
		b.daemon_pid = (long)v;
	/* With --tls the first of vm-listen-tls, else of vm-listen. */
	if (b.target_spec == NULL &&
	    (v = json_num(text, end, b.tls ? "vm_tls" : "vm")) > 0) {
		snprintf(spec, sizeof spec, "127.0.0.1:%lld", v);
		if (parse_addr(spec, NULL, &b.target, &b.target_len) != 0)
			bench_fatalx("%s: bad vm port", path);
		b.target_spec = xstrdup(spec);
	}
	if (!b.have_admin && (v = json_num(text, end, "admin")) > 0) {
		snprintf(spec, sizeof spec, "127.0.0.1:%lld", v);
		if (parse_addr(spec, NULL, &b.admin, &b.admin_len) == 0)
			b.have_admin = true;
	}
	if ((v = json_num(text, end, "client")) > 0 && !b.have_frontdoor) {
		/* Kept as a fallback for ports with no client_port. */
		snprintf(spec, sizeof spec, "127.0.0.1:%lld", v);
		if (parse_addr(spec, NULL, &b.frontdoor, &b.frontdoor_len) !=
		    0)
			b.frontdoor_len = 0;
	}
	free(text);
}

/*
 * GET path from the admin API with a blocking socket (setup only).
 * Returns the body (NUL-terminated, caller frees) or NULL.
 */
static char *
http_get(const char *path, size_t *blen)
{
	struct timeval tv = { 60, 0 };
	char req[256], *buf, *body;
	size_t len = 0, cap = 65536;
	ssize_t n;
	int fd, rq;

	if ((fd = socket(b.admin.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
	    -1)
		return (NULL);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&b.admin, b.admin_len) == -1) {
		close(fd);
		return (NULL);
	}
	rq = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: vspcd\r\n"
	    "Accept: application/json\r\nConnection: close\r\n\r\n", path);
	if (write(fd, req, (size_t)rq) != rq) {
		close(fd);
		return (NULL);
	}
	buf = xmalloc(cap);
	for (;;) {
		if (cap - len < 4096) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strstr(buf, " 200 ") == NULL ||
	    (body = strstr(buf, "\r\n\r\n")) == NULL) {
		free(buf);
		return (NULL);
	}
	body += 4;
	if (strcasestr(buf, "transfer-encoding: chunked") != NULL &&
	    strcasestr(buf, "transfer-encoding: chunked") < body) {
		/* Undo chunking in place. */
		char *r = body, *w = body, *e;
		unsigned long cl;

		for (;;) {
			cl = strtoul(r, &e, 16);
			if (e == r || (e = strstr(e, "\r\n")) == NULL || cl == 0)
				break;
			r = e + 2;
			if ((size_t)(buf + len - r) < cl)
				break;
			memmove(w, r, cl);
			w += cl;
			r += cl + 2;
		}
		*w = '\0';
	}
	*blen = strlen(body);
	memmove(buf, body, *blen + 1);
	return (buf);
}

/* VM index (local, 0-based) from a VM name, or -1 if not ours. */
static long
vm_from_name(const char *name)
{
	size_t plen = strlen(b.prefix);
	const char *err;
	long long g;

	if (strncmp(name, b.prefix, plen) != 0)
		return (-1);
	g = strtonum(name + plen, 0, UINT32_MAX, &err);
	if (err != NULL || g < b.vm_offset || g >= (long long)b.vm_offset +
	    b.nvms)
		return (-1);
	return ((long)(g - b.vm_offset));
}

/*
 * Learn each VM's client_port from GET /api/v1/ports. Returns the number
 * of our ports found, -1 if the API could not be read.
 */
static long
fetch_client_ports(void)
{
	char *body, name[128];
	const char *p, *end, *start = NULL;
	size_t blen;
	long found = 0, i;
	long long port;
	int depth = 0;
	bool instr = false, esc = false;

	if ((body = http_get("/api/v1/ports", &blen)) == NULL)
		return (-1);
	end = body + blen;
	for (p = body; p < end; p++) {
		if (instr) {
			if (esc)
				esc = false;
			else if (*p == '\\')
				esc = true;
			else if (*p == '"')
				instr = false;
			continue;
		}
		if (*p == '"')
			instr = true;
		else if (*p == '{') {
			if (++depth == 2)
				start = p;
		} else if (*p == '}') {
			if (depth-- != 2 || start == NULL)
				continue;
			if (json_str(start, p, "vm_name", name,
			    sizeof name) != 0 || (i = vm_from_name(name)) < 0)
				continue;
			port = json_num(start, p, "client_port");
			b.vms[i].client_port = port > 0 && port < 65536 ?
			    (uint32_t)port : 0;
			found++;
		}
	}
	free(body);
	return (found);
}

/*
 * Several processes: wait (blocking, the loop is idle) until the daemon
 * reports at least n VM connections, so every process's window covers
 * the whole fleet. Returns the count seen, 0 if unknown.
 */
static uint32_t
wait_connections(const char *key, uint32_t n)
{
	uint64_t t0 = now_ns();
	long long have = 0;
	size_t blen;
	char *body;

	while (secs(t0, now_ns()) < b.ramp_timeout) {
		if ((body = http_get("/healthz", &blen)) != NULL) {
			have = json_num(body, body + blen, key);
			free(body);
			if (have >= (long long)n)
				break;
		}
		usleep(100000);
	}
	return (have > 0 ? (uint32_t)have : 0);
}

/* -- /proc ------------------------------------------------------------ */

/* Read the daemon's utime+stime (ticks) and VmRSS (KiB). */
static int
proc_sample(uint64_t *ticks, uint64_t *rss_kib)
{
	char path[64], buf[2048], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	if (b.daemon_pid <= 0)
		return (-1);
	snprintf(path, sizeof path, "/proc/%ld/stat", b.daemon_pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %*c %*d %*d "
	    "%*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return (-1);
	*ticks = ut + st;
	snprintf(path, sizeof path, "/proc/%ld/status", b.daemon_pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	*rss_kib = 0;
	while (fgets(buf, sizeof buf, f) != NULL) {
		if (strncmp(buf, "VmRSS:", 6) == 0) {
			*rss_kib = strtoull(buf + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return (0);
}

/* This process's CPU seconds. */
static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
}

/* Start the CPU window of the daemon and of this process. */
static void
window_start(void)
{
	uint64_t rss;

	b.t_cpu0_ns = now_ns();
	b.self_cpu0 = self_cpu();
	b.have_proc = proc_sample(&b.cpu0_ticks, &rss) == 0;
}

/* End the CPU window; sample the daemon's RSS. */
static void
window_end(void)
{
	b.t_cpu1_ns = now_ns();
	b.self_cpu1 = self_cpu();
	if (b.have_proc && proc_sample(&b.cpu1_ticks, &b.rss_end_kib) != 0)
		b.have_proc = false;
}

/* -- records ---------------------------------------------------------- */

/* Build the payload template and its escaped form. */
static void
tmpl_init(void)
{
	size_t i;

	tmpl = xcalloc(1, b.recsize);
	memcpy(tmpl, rec_magic, sizeof rec_magic);
	for (i = REC_HDR; i < b.recsize; i++) {
		if (i % 64 == 40)
			tmpl[i] = 0xff;
		else
			tmpl[i] = (uint8_t)('A' + (i * 7) % 58);
	}
	tmpl[b.recsize - 2] = '\r';
	tmpl[b.recsize - 1] = '\n';
	tmpl_esc = xmalloc(2 * b.recsize);
	tmpl_esc_len = telnet_escape(tmpl_esc, tmpl + REC_HDR,
	    b.recsize - REC_HDR);
}

/* Store a 32-bit or 64-bit little-endian value. */
static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t
get32(const uint8_t *p)
{
	return ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24);
}

static uint64_t
get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32);
}

/* Bytes one escaped record can take at most. */
static size_t
rec_wire_max(void)
{
	return (2 * REC_HDR + tmpl_esc_len);
}

/*
 * Write the next record of vm, escaped for the wire, into out (room for
 * rec_wire_max()). Returns its length.
 */
static size_t
rec_build(struct vm *vm, uint8_t *out, uint64_t ts)
{
	uint8_t h[REC_HDR];
	size_t i, n = 0;

	memcpy(h, rec_magic, sizeof rec_magic);
	put32(h + 4, vm->idx);
	put32(h + 8, vm->seq++);
	put64(h + 12, ts);
	put32(h + 20, fnv1a32(h, 20));
	for (i = 0; i < REC_HDR; i++) {
		out[n++] = h[i];
		if (h[i] == 0xff)
			out[n++] = 0xff;
	}
	memcpy(out + n, tmpl_esc, tmpl_esc_len);
	b.records_sent++;
	b.bytes_sent += b.recsize;
	return (n + tmpl_esc_len);
}

/* -- VM connections --------------------------------------------------- */

/* Render VM vm's VC UUID the ESXi way into out[48] (kind 1 BIOS, 2 loc). */
static void
vm_uuid_text(const struct vm *vm, int kind, char out[48])
{
	uint8_t u[16];
	size_t i, off = 0;

	memset(u, 0, sizeof u);
	u[0] = 0x50;
	memcpy(u + 1, b.tag, 4);
	u[12] = vm->idx >> 24;
	u[13] = vm->idx >> 16;
	u[14] = vm->idx >> 8;
	u[15] = vm->idx;
	if (kind == 1)
		u[0] = 0x42;
	else if (kind == 2) {
		u[0] = 0x56;
		u[1] = 0x4d;
	}
	for (i = 0; i < 16; i++) {
		snprintf(out + off, 48 - off, "%s%02x",
		    i == 0 ? "" : (i == 8 ? "-" : " "), u[i]);
		off += i == 0 ? 2 : 3;
	}
}

/* Write VM vm's name into out. */
static void
vm_name(const struct vm *vm, char *out, size_t cap)
{
	snprintf(out, cap, "%s%05" PRIu32, b.prefix, vm->idx);
}

/* Queue encoded bytes on a link. */
static void
link_write(struct link *l, const void *buf, size_t len)
{
	if (l == NULL || l->bev == NULL || l->dead || len == 0)
		return;
	bev_write(l->bev, buf, len);	/* corked: one send per callback */
}

/* Encode and queue one option 232 command. */
static void
link_vmwext_send(struct link *l, uint8_t cmd, const void *a, size_t alen)
{
	uint8_t buf[512];
	size_t n;

	if ((n = vmwext_encode(buf, sizeof buf, cmd, a, alen, NULL, 0)) > 0)
		link_write(l, buf, n);
}

/*
 * Write the link's send queue to the socket now: what is corked
 * (src/net/cork.c), then what the bufferevent holds.
 */
static void
link_flush_now(struct link *l)
{
	struct evbuffer *out;
	evutil_socket_t fd;

	if (l == NULL || l->bev == NULL || l->dead)
		return;
	if (l->raw != l->bev) {
		simtls_flush_raw(l->raw);
		return;
	}
	bev_uncork(l->bev);
	out = bufferevent_get_output(l->bev);
	fd = bufferevent_getfd(l->bev);
	/*
	 * A socket bufferevent keeps the start of its output frozen; thaw it
	 * around the write, as libevent's own write callback does.
	 */
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
		;
	evbuffer_freeze(out, 1);
}

/* Close and free a link (only marked dead inside its own input). */
static void
link_free(struct link *l)
{
	if (l == NULL)
		return;
	if (l->in_input) {
		l->dead = true;
		bufferevent_disable(l->bev, EV_READ);
		return;
	}
	if (l->flags & LK_F_TLSUP) {
		/* close_notify, then the FIN. */
		simtls_close_notify(l->bev);
		simtls_flush_raw(l->raw);
	}
	bev_uncork(l->bev);
	bufferevent_free(l->bev);
	telnet_free(&l->tn);
	free(l);
}

/* Count an unexpected vMotion message or event. */
static void
vmo_anomaly(struct vm *vm, const char *what)
{
	b.vmo_anomalies++;
	if (!b.quiet && b.vmo_anomalies <= 10)
		bench_warnx("vm %" PRIu32 ": vMotion: %s", vm->idx, what);
}

/* Let the VM's output run again (end of a vMotion). */
static void
vm_unstun(struct vm *vm)
{
	vm->stunned = false;
	vm->vmo = VMO_NONE;
	if (b.vmo_open > 0)
		b.vmo_open--;
	if (vm->out_on && b.rate == 0)
		vm_fill(vm);
}

/* A vMotion failed: ABORT on the source (if asked) and resume there. */
static void
vmo_fail(struct vm *vm, bool abort, const char *why)
{
	b.vmo_failed++;
	vmo_anomaly(vm, why);
	if (vm->dst != NULL) {
		link_free(vm->dst);
		vm->dst = NULL;
	}
	if (abort && vm->link != NULL)
		link_vmwext_send(vm->link, VMWEXT_VMOTION_ABORT, NULL, 0);
	vm_unstun(vm);
}

/* Make a link for vm and start connecting it from the next source. */
static struct link *
link_connect(struct vm *vm, bool dest)
{
	struct bufferevent *bev;
	struct link *l;
	evutil_socket_t fd;
	int one = 1;

	fd = socket(b.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		if ((errno == EMFILE || errno == ENFILE) && !b.warned_fd) {
			b.warned_fd = true;
			bench_warnx("out of file descriptors");
		}
		return (NULL);
	}
	if (b.nsrcs > 0) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
#endif
		if (bind(fd, (struct sockaddr *)&b.srcs[b.next_src],
		    b.src_lens[b.next_src]) == -1) {
			close(fd);
			return (NULL);
		}
		b.next_src = (b.next_src + 1) % b.nsrcs;
	}
	if ((bev = bufferevent_socket_new(b.base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		return (NULL);
	}
	l = xcalloc(1, sizeof *l);
	l->vm = vm;
	l->dest = dest;
	l->bev = l->raw = bev;
	telnet_init(&l->tn, link_telnet_cb, l);
	telnet_set_accept(&l->tn, TELOPT_BINARY, true, true);
	telnet_set_accept(&l->tn, TELOPT_SGA, true, true);
	telnet_set_accept(&l->tn, TELOPT_ECHO, true, true);
	telnet_set_accept(&l->tn, TELOPT_VMWARE, true, false);
	bufferevent_setcb(bev, link_read_cb, link_write_cb, link_event_cb, l);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return (l);
}

/* Answer one option 232 subnegotiation from the proxy. */
static void
link_vmwext(struct link *l, const uint8_t *sb, size_t len)
{
	struct vm *vm = l->vm;
	struct vmwext_msg m;
	char text[96];
	uint8_t code;
	uint64_t now;
	int rc;

	if ((rc = vmwext_decode(sb, len, &m)) == VMWEXT_EMPTY)
		return;
	if (rc == VMWEXT_UNKNOWN) {
		code = m.cmd;
		link_vmwext_send(l, VMWEXT_UNKNOWN_SUBOPTION_RCVD_1, &code, 1);
		return;
	}
	if (rc != VMWEXT_OK)
		return;
	switch (m.cmd) {
	case VMWEXT_KNOWN_SUBOPTIONS_2:
		if (l->flags & LK_F_KS1)
			break;
		l->flags |= LK_F_KS1;
		link_vmwext_send(l, VMWEXT_KNOWN_SUBOPTIONS_1, esxi_ks1,
		    sizeof esxi_ks1);
		if (l->dest)
			link_vmwext_send(l, VMWEXT_VMOTION_PEER, vm->cookie,
			    vm->cookielen);
		else {
			uint8_t buf[256];
			size_t n;

			n = vmwext_encode(buf, sizeof buf, VMWEXT_DO_PROXY,
			    (const uint8_t *)"S", 1, (const uint8_t *)b.uri,
			    strlen(b.uri));
			link_write(l, buf, n);
		}
		telnet_request(&l->tn, TELOPT_COMPORT, true, true);
		break;
	case VMWEXT_GET_VM_VC_UUID:
		vm_uuid_text(vm, 0, text);
		link_vmwext_send(l, VMWEXT_VM_VC_UUID, text, strlen(text));
		break;
	case VMWEXT_GET_VM_BIOS_UUID:
		vm_uuid_text(vm, 1, text);
		link_vmwext_send(l, VMWEXT_VM_BIOS_UUID, text, strlen(text));
		break;
	case VMWEXT_GET_VM_LOCATION_UUID:
		vm_uuid_text(vm, 2, text);
		link_vmwext_send(l, VMWEXT_VM_LOCATION_UUID, text,
		    strlen(text));
		break;
	case VMWEXT_GET_VM_NAME:
		vm_name(vm, text, sizeof text);
		link_vmwext_send(l, VMWEXT_VM_NAME, text, strlen(text));
		break;
	case VMWEXT_WILL_PROXY:
		if ((l->flags & LK_F_READY) || l->dest)
			break;
		l->flags |= LK_F_READY;
		if (vm->state == VM_NEGOTIATING) {
			vm->state = VM_READY;
			b.identified++;
			b.pending--;
			b.t_last_ident_ns = now_ns();
			/* vmo_t0_ns holds the connect time until then. */
			hist_add(&b.h_ident, b.t_last_ident_ns -
			    vm->vmo_t0_ns);
		}
		break;
	case VMWEXT_WONT_PROXY:
		if (vm->state == VM_NEGOTIATING) {
			vm->state = VM_FAILED;
			b.refused++;
			b.pending--;
		}
		break;
	case VMWEXT_VMOTION_GOAHEAD:
		if (l != vm->link || vm->vmo != VMO_BEGIN ||
		    m.len <= vm->seqlen || m.len > sizeof vm->cookie ||
		    memcmp(m.payload, vm->cookie, vm->seqlen) != 0) {
			vmo_anomaly(vm, "unexpected GOAHEAD");
			break;
		}
		now = now_ns();
		hist_add(&b.h_goahead, now - vm->vmo_t0_ns);
		memcpy(vm->cookie, m.payload, m.len);
		vm->cookielen = (uint8_t)m.len;
		if (b.sc == SC_GOAHEAD && !b.goahead_complete) {
			link_vmwext_send(l, VMWEXT_VMOTION_ABORT, NULL, 0);
			b.vmo_aborted++;
			b.t_vmo_last_ns = now;
			vm_unstun(vm);
			break;
		}
		vm->vmo = VMO_DEST;
		if ((vm->dst = link_connect(vm, true)) == NULL ||
		    bufferevent_socket_connect(vm->dst->bev,
		    (struct sockaddr *)&b.target, b.target_len) != 0) {
			vmo_fail(vm, true, "destination connect failed");
			break;
		}
		break;
	case VMWEXT_VMOTION_NOTNOW:
		if (l != vm->link || vm->vmo != VMO_BEGIN) {
			vmo_anomaly(vm, "unexpected NOTNOW");
			break;
		}
		b.vmo_notnow++;
		vm_unstun(vm);
		break;
	case VMWEXT_VMOTION_PEER_OK:
		if (l != vm->dst || vm->vmo != VMO_DEST ||
		    m.len != vm->seqlen ||
		    memcmp(m.payload, vm->cookie, m.len) != 0) {
			vmo_anomaly(vm, "unexpected PEER-OK");
			break;
		}
		/* The capture's order: the source's FIN, then COMPLETE. */
		link_free(vm->link);
		link_vmwext_send(l, VMWEXT_VMOTION_COMPLETE, vm->cookie,
		    vm->seqlen);
		link_flush_now(l);
		vm->link = l;
		vm->dst = NULL;
		l->dest = false;
		l->flags |= LK_F_READY;
		if (b.rate == 0)
			bufferevent_setwatermark(l->bev, EV_WRITE,
			    BENCH_OUT_LOW, 0);
		now = now_ns();
		hist_add(&b.h_vmotion, now - vm->vmo_t0_ns);
		b.vmo_completed++;
		b.t_vmo_last_ns = now;
		vm_unstun(vm);
		break;
	default:
		break;
	}
}

/* React to one event of a link's telnet codec. */
static void
link_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct link *l = arg;

	if (l->dead)
		return;
	switch (ev->type) {
	case TELNET_EV_SEND:
		link_write(l, ev->data, ev->len);
		break;
	case TELNET_EV_OPTION:
		if (ev->us && ev->opt == TELOPT_AUTH && ev->enabled)
			telnet_request(&l->tn, TELOPT_AUTH, true, false);
		break;
	case TELNET_EV_SB:
		if (ev->opt == TELOPT_VMWARE)
			link_vmwext(l, ev->data, ev->len);
		break;
	default:
		/* Console input from clients: none in these scenarios. */
		break;
	}
}

/* Feed what the proxy sent through the link's codec. */
static void
link_read_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int n;

	while ((n = evbuffer_remove(in, rd_buf, BENCH_READ_CHUNK)) > 0) {
		l->in_input = true;
		telnet_input(&l->tn, rd_buf, (size_t)n);
		l->in_input = false;
		if (l->dead) {
			link_free(l);
			return;
		}
	}
}

/* Unlimited output: refill the send queue when it ran low. */
static void
link_write_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;

	if (!l->dest && l->vm->link == l && l->vm->out_on && b.rate == 0)
		vm_fill(l->vm);
}

/* --tls: TCP is up; put the TLS filter on and start the handshake. */
static int
link_tls_start(struct link *l)
{
	struct bufferevent *tb;

	if ((tb = simtls_wrap(b.base, l->raw)) == NULL)
		return (-1);
	l->bev = tb;
	l->flags |= LK_F_TLS;
	l->tcp_ns = now_ns();
	bufferevent_setcb(tb, link_read_cb, link_write_cb, link_event_cb, l);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	return (0);
}

/* --tls: the handshake of a link failed; report (the first few), count. */
static void
link_tls_failed(struct link *l, short what)
{
	char why[512];

	b.tls_failed++;
	if (what & BEV_EVENT_EOF)
		strlcpy(why, "connection closed by peer", sizeof why);
	else
		simtls_why(l->bev, why, sizeof why);
	if (!b.quiet && b.tls_failed <= 10)
		bench_warnx("vm %" PRIu32 "%s: tls: handshake failed: %s",
		    l->vm->idx, l->dest ? " (vMotion destination)" : "", why);
	link_lost(l, "tls: handshake failed");
}

/* Connected, closed or failed. */
static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct link *l = arg;
	int one = 1;

	if ((what & BEV_EVENT_CONNECTED) && b.tls && !(l->flags & LK_F_TLS)) {
		if (link_tls_start(l) != 0)
			link_lost(l, "tls: cannot set up");
		return;
	}
	if ((l->flags & LK_F_TLS) && !(l->flags & LK_F_TLSUP)) {
		if (!(what & BEV_EVENT_CONNECTED)) {
			link_tls_failed(l, what);
			return;
		}
		l->flags |= LK_F_TLSUP;
		b.tls_ok++;
		hist_add(&b.h_tls, now_ns() - l->tcp_ns);
	}
	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(bufferevent_getfd(l->raw), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof one);
		/* ESXi's first bytes: IAC WILL AUTHENTICATION. */
		telnet_request(&l->tn, TELOPT_AUTH, true, true);
		return;
	}
	link_lost(l, (what & BEV_EVENT_EOF) ? "closed by peer" :
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* The proxy closed a link or it failed. */
static void
link_lost(struct link *l, const char *why)
{
	struct vm *vm = l->vm;

	if (l->dest) {
		vm->dst = NULL;
		link_free(l);
		vmo_fail(vm, true, "destination closed before PEER-OK");
		return;
	}
	vm->link = NULL;
	link_free(l);
	if (vm->vmo != VMO_NONE) {
		if (vm->dst != NULL) {
			link_free(vm->dst);
			vm->dst = NULL;
		}
		b.vmo_failed++;
		vmo_anomaly(vm, "source closed during the vMotion");
		vm->vmo = VMO_NONE;
		if (b.vmo_open > 0)
			b.vmo_open--;
	}
	vm->stunned = false;
	if (vm->state == VM_NEGOTIATING) {
		b.vm_failed++;
		b.pending--;
	} else if (vm->state == VM_READY) {
		b.vm_lost++;
		if (b.vm_lost <= 5 && !b.quiet)
			bench_warnx("vm %" PRIu32 ": %s", vm->idx, why);
	}
	vm->state = VM_FAILED;
}

/* Start the VM's main connection. Returns -1 when out of descriptors. */
static int
vm_open(struct vm *vm)
{
	struct link *l;

	if ((l = link_connect(vm, false)) == NULL)
		return (errno == EMFILE || errno == ENFILE ? -1 : 0);
	vm->link = l;
	vm->state = VM_NEGOTIATING;
	vm->vmo_t0_ns = now_ns();
	b.pending++;
	if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&b.target,
	    b.target_len) != 0) {
		link_lost(l, "connect failed");
		return (0);
	}
	return (0);
}

/* -- output ----------------------------------------------------------- */

/* Unlimited output: add records until the send queue holds enough. */
static void
vm_fill(struct vm *vm)
{
	struct evbuffer *out;
	struct evbuffer_iovec v;
	size_t have, n, max = rec_wire_max();
	uint64_t ts;
	uint8_t *p;

	if (vm->link == NULL || vm->stunned || vm->link->dead)
		return;
	bev_uncork(vm->link->bev);	/* corked bytes go first */
	out = bufferevent_get_output(vm->link->bev);
	ts = now_ns();
	while ((have = evbuffer_get_length(out)) < BENCH_OUT_HIGH) {
		if (evbuffer_reserve_space(out, BENCH_GEN_CHUNK, &v, 1) < 1)
			return;
		p = v.iov_base;
		n = 0;
		while (n + max <= v.iov_len && n + have < BENCH_OUT_HIGH)
			n += rec_build(vm, p + n, ts);
		v.iov_len = n;
		if (evbuffer_commit_space(out, &v, 1) != 0 || n == 0)
			return;
	}
}

/*
 * Rate mode: emit the records that are due. They go straight to the
 * socket when nothing is queued, so the send time is the write time.
 */
static void
vm_output_due(struct vm *vm, uint64_t now)
{
	struct evbuffer *out;
	size_t n = 0, max = rec_wire_max();
	uint64_t ts;
	ssize_t w;
	int fd;

	if (vm->next_due_ns > now || vm->link == NULL || vm->stunned)
		return;
	if (now - vm->next_due_ns > 1000000000ULL) {
		/* We fell behind by over a second: do not burst. */
		b.out_stalls++;
		vm->next_due_ns = now;
	}
	bev_uncork(vm->link->bev);	/* corked bytes go first */
	out = bufferevent_get_output(vm->link->bev);
	if (evbuffer_get_length(out) > BENCH_OUT_CAP) {
		b.out_stalls++;
		vm->next_due_ns = now + b.rec_interval_ns;
		return;
	}
	ts = now_ns();		/* not the tick's time: that may be stale */
	while (vm->next_due_ns <= now && n + max <= sizeof gen_buf) {
		n += rec_build(vm, gen_buf + n, ts);
		vm->next_due_ns += b.rec_interval_ns;
	}
	if (evbuffer_get_length(out) == 0 && vm->link->raw == vm->link->bev) {
		fd = bufferevent_getfd(vm->link->bev);
		w = write(fd, gen_buf, n);
		if (w == (ssize_t)n)
			return;
		if (w < 0)
			w = 0;
		evbuffer_add(out, gen_buf + w, n - (size_t)w);
		return;
	}
	evbuffer_add(out, gen_buf, n);
}

/*
 * Rate mode: the VMs with output on in a binary min-heap by due_key_ns, so
 * a tick touches the VMs that are due, not all of them (at 5,000 VMs a
 * scan of every VM each millisecond kept the generator's loop busy long
 * enough to show in the latency it measures).
 */
static uint32_t *due_heap, due_n;

#define DUE_KEY(i)	(b.vms[due_heap[(i)]].due_key_ns)

static void
due_sift_down(uint32_t i)
{
	uint32_t c, t;

	for (;;) {
		c = 2 * i + 1;
		if (c >= due_n)
			break;
		if (c + 1 < due_n && DUE_KEY(c + 1) < DUE_KEY(c))
			c++;
		if (DUE_KEY(i) <= DUE_KEY(c))
			break;
		t = due_heap[i];
		due_heap[i] = due_heap[c];
		due_heap[c] = t;
		i = c;
	}
}

/*
 * Emit what is due. A VM that could not send (no link, stunned, or more
 * due than one call emits) is looked at again on the next tick, with its
 * next_due_ns unchanged, as the full scan did.
 */
static void
output_tick(uint64_t now)
{
	struct vm *vm;

	while (due_n > 0 && DUE_KEY(0) <= now) {
		vm = &b.vms[due_heap[0]];
		if (!vm->out_on) {
			due_heap[0] = due_heap[--due_n];
			due_sift_down(0);
			continue;
		}
		vm_output_due(vm, now);
		vm->due_key_ns = vm->next_due_ns > now ? vm->next_due_ns :
		    now + BENCH_TICK_US * 1000ULL;
		due_sift_down(0);
	}
}

/* Switch every ready VM's output on. */
static void
output_start(void)
{
	uint64_t now = now_ns();
	uint32_t i;

	if (b.rate > 0)
		b.rec_interval_ns = (uint64_t)b.recsize * 1000000000ULL /
		    b.rate;
	for (i = 0; i < b.nvms; i++) {
		struct vm *vm = &b.vms[i];

		if (vm->state != VM_READY)
			continue;
		vm->out_on = true;
		if (b.rate == 0) {
			bufferevent_setwatermark(vm->link->bev, EV_WRITE,
			    BENCH_OUT_LOW, 0);
			vm_fill(vm);
		} else {
			/* Spread the first records over one interval. */
			vm->next_due_ns = now + b.rec_interval_ns *
			    (uint64_t)i / b.nvms;
			vm->due_key_ns = vm->next_due_ns;
			/* Keys rise with i: the array is a heap as it grows. */
			due_heap[due_n++] = i;
		}
	}
}

/* Switch all output off. */
static void
output_stop(void)
{
	uint32_t i;

	for (i = 0; i < b.nvms; i++)
		b.vms[i].out_on = false;
}

/* -- vMotion ---------------------------------------------------------- */

/* Stun the VM and send VMOTION-BEGIN on its connection. */
static void
vmo_begin(struct vm *vm)
{
	uint32_t s = ++b.vmo_seqno;

	put32(vm->cookie, s * 2654435761u);
	if (s % 8 == 0)
		vm->cookie[s % 4] = 0xff;	/* 0xFF in the sequence */
	vm->seqlen = 4;
	vm->cookielen = 4;
	vm->stunned = true;
	vm->vmo = VMO_BEGIN;
	vm->vmo_t0_ns = now_ns();
	if (b.t_vmo_first_ns == 0)
		b.t_vmo_first_ns = vm->vmo_t0_ns;
	b.vmo_started++;
	b.vmo_open++;
	link_vmwext_send(vm->link, VMWEXT_VMOTION_BEGIN, vm->cookie,
	    vm->seqlen);
	link_flush_now(vm->link);
}

/* Start the vMotions due this tick, round-robin over idle ready VMs. */
static void
vmo_tick(double dt)
{
	uint32_t tries;
	struct vm *vm;

	b.vmo_credit += b.vmo_rate * dt;
	if (b.vmo_rate <= 0)
		b.vmo_credit = 1e9;		/* as fast as possible */
	while (b.vmo_credit >= 1.0) {
		if (b.vmo_count > 0 && b.vmo_started >= b.vmo_count)
			break;
		for (tries = 0; tries < b.nvms; tries++) {
			vm = &b.vms[b.vmo_cursor];
			b.vmo_cursor = (b.vmo_cursor + 1) % b.nvms;
			if (vm->state == VM_READY && vm->vmo == VMO_NONE &&
			    vm->link != NULL)
				break;
		}
		if (tries == b.nvms)
			break;
		vmo_begin(vm);
		b.vmo_credit -= 1.0;
	}
	if (b.vmo_credit > b.vmo_rate && b.vmo_rate > 0)
		b.vmo_credit = b.vmo_rate;	/* no burst after a stall */
	if (b.vmo_rate <= 0)
		b.vmo_credit = 0;
}

/* Fail the vMotions that passed ESXi's limit. */
static void
vmo_timeouts(uint64_t now)
{
	uint32_t i;
	struct vm *vm;

	if (b.vmo_open == 0 || b.ticks % 100 != 0)
		return;
	for (i = 0; i < b.nvms; i++) {
		vm = &b.vms[i];
		if (vm->vmo != VMO_NONE && now > vm->vmo_t0_ns &&
		    now - vm->vmo_t0_ns > BENCH_VMO_LIMIT_NS)
			vmo_fail(vm, vm->vmo == VMO_DEST, "timed out");
	}
}

/* -- clients ---------------------------------------------------------- */

/* Count a record that failed its check while in step with the stream. */
static void
client_bad_record(struct client *cl, const uint8_t *rec)
{
	if (memmem(rec, b.recsize, "[vspcd:", 7) != NULL)
		cl->notices++;
	else if (cl->seen)
		cl->corrupt++;
}

/*
 * Check one whole record. Returns true if it is good (and accounts it),
 * false if it is not a record of this stream.
 */
static bool
client_record(struct client *cl, const uint8_t *rec, uint64_t now)
{
	uint32_t seq;
	uint64_t ts;

	if (memcmp(rec, rec_magic, sizeof rec_magic) != 0 ||
	    get32(rec + 20) != fnv1a32(rec, 20) ||
	    memcmp(rec + REC_HDR, tmpl + REC_HDR, b.recsize - REC_HDR) != 0)
		return (false);
	if (get32(rec + 4) != cl->vm->idx) {
		cl->misrouted++;
		return (true);
	}
	seq = get32(rec + 8);
	ts = get64(rec + 12);
	if (seq == cl->next_seq)
		cl->next_seq++;
	else if ((int32_t)(seq - cl->next_seq) > 0) {
		cl->lost += seq - cl->next_seq;
		cl->next_seq = seq + 1;
	} else
		cl->dup++;
	cl->seen = true;
	cl->records++;
	if (now > ts)
		hist_add(&b.h_lat, now - ts);
	else
		hist_add(&b.h_lat, 0);
	return (true);
}

/* Cut the console stream into records and check them. */
static void
client_records(struct client *cl, const uint8_t *p, size_t len,
    uint64_t now)
{
	const uint8_t *q;
	size_t take, junk;
	uint32_t r = b.recsize;

	while (len > 0) {
		if (cl->rlen == 0 && !cl->locked) {
			/* Skip to the next possible record start. */
			q = memchr(p, rec_magic[0], len);
			junk = q == NULL ? len : (size_t)(q - p);
			if (cl->seen)
				cl->junk += junk;
			if (q == NULL)
				return;
			p = q;
			len -= junk;
		}
		if (cl->rlen == 0 && len >= r) {
			if (client_record(cl, p, now)) {
				cl->locked = true;
				p += r;
				len -= r;
			} else {
				if (cl->locked)
					client_bad_record(cl, p);
				cl->locked = false;
				if (cl->seen)
					cl->junk++;
				p++;
				len--;
			}
			continue;
		}
		if (cl->rbuf == NULL)
			cl->rbuf = xmalloc(r);
		take = r - cl->rlen < len ? r - cl->rlen : len;
		memcpy(cl->rbuf + cl->rlen, p, take);
		cl->rlen += (uint32_t)take;
		p += take;
		len -= take;
		if (cl->rlen < r)
			return;
		cl->rlen = 0;
		if (client_record(cl, cl->rbuf, now))
			cl->locked = true;
		else {
			/* XXX no rescan inside rbuf: a gap shows as loss. */
			if (cl->locked)
				client_bad_record(cl, cl->rbuf);
			cl->locked = false;
		}
	}
}

/* Send raw bytes to the server (small replies only). */
static void
client_send(struct client *cl, const void *buf, size_t len)
{
	if (cl->fd != -1 && write(cl->fd, buf, len) != (ssize_t)len)
		bench_warnx("client of vm %" PRIu32 ": short write",
		    cl->vm->idx);
}

/* The client is attached: count it. */
static void
client_attached(struct client *cl)
{
	cl->state = CL_ATTACHED;
	b.clients_attached++;
	b.cl_pending--;
}

/*
 * Front door: answer the prompt with the VM name, wait for "attached to
 * ...\r\n", then pass the rest on as console output.
 */
static void
client_frontdoor(struct client *cl, const uint8_t *p, size_t len,
    uint64_t now)
{
	static const char prompt[] = "console (name, uuid or id): ";
	static const char att[] = "attached to ";
	char name[96], reply[128], *a, *e;
	size_t take, off;
	int n;

	if (cl->line == NULL)
		cl->line = xcalloc(1, BENCH_FD_LINE_MAX + 1);
	take = BENCH_FD_LINE_MAX - cl->llen < len ? BENCH_FD_LINE_MAX -
	    cl->llen : len;
	memcpy(cl->line + cl->llen, p, take);
	cl->llen += (uint16_t)take;
	cl->line[cl->llen] = '\0';
	if ((a = strstr(cl->line, att)) != NULL &&
	    (e = strstr(a, "\r\n")) != NULL) {
		off = (size_t)(e + 2 - cl->line);
		client_attached(cl);
		/* What came after the line, in this read, is console. */
		if (off < cl->llen)
			client_records(cl, (uint8_t *)cl->line + off,
			    cl->llen - off, now);
		if (take < len)
			client_records(cl, p + take, len - take, now);
		free(cl->line);
		cl->line = NULL;
		return;
	}
	if (strstr(cl->line, "vspcd: no console") != NULL ||
	    strstr(cl->line, " matches ") != NULL) {
		client_close(cl, true);
		return;
	}
	if ((a = strstr(cl->line, prompt)) != NULL) {
		vm_name(cl->vm, name, sizeof name);
		n = snprintf(reply, sizeof reply, "%s\r\n", name);
		client_send(cl, reply, (size_t)n);
		/* Forget up to the prompt so it is not answered twice. */
		off = (size_t)(a + sizeof prompt - 1 - cl->line);
		memmove(cl->line, cl->line + off, cl->llen - off + 1);
		cl->llen -= (uint16_t)off;
		return;
	}
	if (cl->llen >= BENCH_FD_LINE_MAX) {
		/* Keep the tail; the marker may straddle. */
		memmove(cl->line, cl->line + BENCH_FD_LINE_MAX / 2,
		    BENCH_FD_LINE_MAX / 2 + 1);
		cl->llen = BENCH_FD_LINE_MAX / 2;
	}
}

/* Console bytes decoded from the telnet stream. */
static void
client_data(struct client *cl, const uint8_t *p, size_t len, uint64_t now)
{
	if (len == 0 || cl->fd == -1)
		return;
	if (cl->state == CL_PROMPT) {
		client_frontdoor(cl, p, len, now);
		return;
	}
	cl->bytes += len;
	b.recv_bytes += len;
	b.t_last_recv_ns = now;
	client_records(cl, p, len, now);
}

/* Current read time for the codec callback (one clock read per read). */
static uint64_t client_now;

/* React to one event of a client's telnet codec. */
static void
client_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct client *cl = arg;

	switch (ev->type) {
	case TELNET_EV_SEND:
		client_send(cl, ev->data, ev->len);
		break;
	case TELNET_EV_DATA:
		client_data(cl, ev->data, ev->len, client_now);
		break;
	default:
		break;
	}
}

/* Length of the complete telnet command at p (p[0] is IAC), 0 if split. */
static size_t
telnet_cmd_len(const uint8_t *p, size_t len)
{
	size_t i;

	if (len < 2)
		return (0);
	switch (p[1]) {
	case TELNET_WILL:
	case TELNET_WONT:
	case TELNET_DO:
	case TELNET_DONT:
		return (len >= 3 ? 3 : 0);
	case TELNET_SB:
		for (i = 2; i + 1 < len; i++) {
			if (p[i] != TELNET_IAC)
				continue;
			if (p[i + 1] == TELNET_SE)
				return (i + 2);
			i++;	/* IAC IAC or a broken SB: the codec decides */
		}
		return (0);
	default:
		return (2);
	}
}

/*
 * Undo IAC doubling with memchr() runs into dec_buf and hand only real
 * commands to the codec; a command split across reads waits in pend.
 */
static void
client_decode(struct client *cl, uint8_t *p, size_t len, uint64_t now)
{
	uint8_t *end = p + len, *q, *o = dec_buf;
	size_t n;

	if (cl->slow) {
		client_now = now;
		telnet_input(&cl->tn, p, len);
		return;
	}
	while (p < end) {
		if ((q = memchr(p, TELNET_IAC, (size_t)(end - p))) == NULL) {
			memcpy(o, p, (size_t)(end - p));
			o += end - p;
			break;
		}
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		p = q;
		if (end - p >= 2 && p[1] == TELNET_IAC) {
			*o++ = TELNET_IAC;
			p += 2;
			continue;
		}
		if ((n = telnet_cmd_len(p, (size_t)(end - p))) == 0) {
			if ((size_t)(end - p) <= BENCH_PEND_MAX) {
				cl->npend = (uint16_t)(end - p);
				memcpy(cl->pend, p, cl->npend);
			} else {
				/* A long split SB: the codec takes over. */
				client_data(cl, dec_buf, (size_t)(o - dec_buf),
				    now);
				o = dec_buf;
				cl->slow = true;
				client_now = now;
				telnet_input(&cl->tn, p, (size_t)(end - p));
			}
			break;
		}
		client_data(cl, dec_buf, (size_t)(o - dec_buf), now);
		o = dec_buf;
		client_now = now;
		telnet_input(&cl->tn, p, n);
		if (cl->fd == -1)
			return;
		p += n;
	}
	client_data(cl, dec_buf, (size_t)(o - dec_buf), now);
}

/* Read from the server; the first bytes mean the client is attached. */
static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	size_t off = cl->npend;
	ssize_t n;

	if (off > 0)
		memcpy(rd_buf, cl->pend, off);
	cl->npend = 0;
	n = read(fd, rd_buf + off, BENCH_READ_CHUNK);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			cl->npend = (uint16_t)off;
			return;
		}
		client_close(cl, cl->state != CL_ATTACHED);
		return;
	}
	if (cl->state == CL_CONNECTING) {
		if (b.have_frontdoor && cl->vm->client_port == 0)
			cl->state = CL_PROMPT;
		else
			client_attached(cl);
	}
	client_decode(cl, rd_buf, off + (size_t)n, now_ns());
}

/* Close a client (failed: it never attached). */
static void
client_close(struct client *cl, bool failed)
{
	if (cl->fd == -1)
		return;
	event_del(&cl->ev);
	close(cl->fd);
	cl->fd = -1;
	if (cl->state != CL_ATTACHED) {
		b.cl_pending--;
		b.clients_failed++;
	} else if (b.phase < PH_DRAIN && !b.quiet)
		bench_warnx("client of vm %" PRIu32 " closed by the server",
		    cl->vm->idx);
	(void)failed;
	cl->state = CL_CLOSED;
}

/* Connect one client to its VM's listener or the front door. */
static int
client_open(struct client *cl)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	if (cl->vm->client_port != 0) {
		ss = b.target;		/* same host family as the daemon */
		sl = b.target_len;
		if (b.have_admin) {
			ss = b.admin;
			sl = b.admin_len;
		}
		addr_set_port(&ss, (uint16_t)cl->vm->client_port);
	} else if (b.have_frontdoor) {
		ss = b.frontdoor;
		sl = b.frontdoor_len;
	} else
		return (0);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return (-1);
	if (b.nsrcs > 0) {
		/* vspcd caps clients per source address. */
#ifdef IP_BIND_ADDRESS_NO_PORT
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
#endif
		if (bind(fd, (struct sockaddr *)&b.srcs[b.next_csrc],
		    b.src_lens[b.next_csrc]) == -1) {
			close(fd);
			return (0);
		}
		b.next_csrc = (b.next_csrc + 1) % b.nsrcs;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&ss, sl) == -1 &&
	    errno != EINPROGRESS) {
		close(fd);
		b.clients_failed++;
		return (0);
	}
	cl->fd = fd;
	cl->state = CL_CONNECTING;
	b.cl_pending++;
	telnet_init(&cl->tn, client_telnet_cb, cl);
	telnet_set_accept(&cl->tn, TELOPT_BINARY, true, true);
	telnet_set_accept(&cl->tn, TELOPT_SGA, true, true);
	telnet_set_accept(&cl->tn, TELOPT_ECHO, false, true);
	event_assign(&cl->ev, b.base, fd, EV_READ | EV_PERSIST,
	    client_read_cb, cl);
	event_add(&cl->ev, NULL);
	return (0);
}

/* Create the clients of every identified VM (opened by the tick). */
static void
clients_create(void)
{
	uint32_t i, k;
	struct client *cl;

	b.cl_open = xcalloc((size_t)b.nvms * b.cpv + 1, sizeof *b.cl_open);
	for (i = 0; i < b.nvms; i++) {
		struct vm *vm = &b.vms[i];

		if (vm->state != VM_READY)
			continue;
		if (vm->client_port == 0 && !b.have_frontdoor)
			continue;
		for (k = 0; k < b.cpv; k++) {
			cl = xcalloc(1, sizeof *cl);
			cl->vm = vm;
			cl->fd = -1;
			cl->next = vm->clients;
			vm->clients = cl;
			b.cl_open[b.nclients++] = cl;
		}
	}
}

/* -- the tick and the phases ------------------------------------------ */

/* Move to the next phase. */
static void
phase_set(enum phase ph)
{
	static const char *names[] = { "ramp", "attach", "run", "drain",
	    "done" };

	b.phase = ph;
	b.t_phase_ns = now_ns();
	bench_note("phase %s (%.3f s)", names[ph], secs(b.t_start_ns,
	    b.t_phase_ns));
}

/* True if every client has all the records its VM sent. */
static bool
clients_caught_up(void)
{
	uint32_t i;
	struct client *cl;

	for (i = 0; i < b.nclients; i++) {
		cl = b.cl_open[i];
		if (cl->state == CL_ATTACHED && cl->next_seq != cl->vm->seq)
			return (false);
	}
	return (true);
}

/* Enter the measured window. */
static void
run_start(void)
{
	phase_set(PH_RUN);
	b.t_run_ns = b.t_phase_ns;
	window_start();
	if (b.sc == SC_RELAY || b.sc == SC_LATENCY || b.sc == SC_VMOTION)
		output_start();
}

/* Open VMs (ramp) and clients (attach) at the configured rate. */
static void
tick_open(double dt)
{
	uint32_t n, budget;

	b.connect_credit += dt * (b.connect_rate > 0 ? b.connect_rate : 1e9);
	if (b.connect_credit > BENCH_CONNECTS_PER_TICK)
		b.connect_credit = BENCH_CONNECTS_PER_TICK;
	budget = (uint32_t)b.connect_credit;
	for (n = 0; n < budget; n++) {
		if (b.phase == PH_RAMP) {
			if (b.next_open >= b.nvms || (b.max_pending > 0 &&
			    b.pending >= b.max_pending))
				break;
			if (b.t_first_connect_ns == 0)
				b.t_first_connect_ns = now_ns();
			if (vm_open(&b.vms[b.next_open]) == -1) {
				b.not_opened = b.nvms - b.next_open;
				bench_warnx("out of descriptors: %" PRIu32
				    " VMs not opened", b.not_opened);
				b.next_open = b.nvms;
				break;
			}
			b.next_open++;
		} else {
			if (b.cl_next >= b.nclients || (b.max_pending > 0 &&
			    b.cl_pending >= b.max_pending))
				break;
			if (client_open(b.cl_open[b.cl_next]) == -1)
				break;
			b.cl_next++;
		}
		b.connect_credit -= 1.0;
	}
}

/* Print a progress line once a second. */
static void
tick_progress(uint64_t now)
{
	if (b.quiet || now - b.last_progress_ns < 1000000000ULL)
		return;
	b.last_progress_ns = now;
	fprintf(stderr, "vspc-bench: [%7.3f] identified %" PRIu32 "/%" PRIu32
	    " clients %" PRIu32 "/%" PRIu32 " sent %" PRIu64 " MB recv %"
	    PRIu64 " MB vmotions %" PRIu64 "/%" PRIu64 "\n",
	    secs(b.t_start_ns, now), b.identified, b.nvms,
	    b.clients_attached, b.nclients, b.bytes_sent >> 20,
	    b.recv_bytes >> 20, b.vmo_completed + b.vmo_aborted,
	    b.vmo_started);
}

/* The one periodic timer: connections, output, vMotions, phases. */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_ns();
	double dt = secs(b.t_last_tick_ns, now);

	b.t_last_tick_ns = now;
	b.ticks++;
	tick_progress(now);
	switch (b.phase) {
	case PH_RAMP:
		tick_open(dt);
		if (b.next_open >= b.nvms && b.pending == 0) {
			bench_note("%" PRIu32 " identified, %" PRIu32
			    " refused, %" PRIu32 " failed", b.identified,
			    b.refused, b.vm_failed);
			goto ramp_done;
		}
		if (secs(b.t_phase_ns, now) > b.ramp_timeout) {
			bench_warnx("ramp timed out: %" PRIu32 " of %" PRIu32
			    " identified", b.identified, b.nvms);
			goto ramp_done;
		}
		break;
	case PH_ATTACH:
		tick_open(dt);
		if ((b.cl_next >= b.nclients && b.cl_pending == 0) ||
		    secs(b.t_phase_ns, now) > b.ramp_timeout) {
			bench_note("%" PRIu32 " clients attached, %" PRIu32
			    " failed", b.clients_attached, b.clients_failed);
			if (b.clients_failed > 0)
				bench_warnx("%" PRIu32 " clients refused or "
				    "closed: vspcd caps clients (--max-clients, "
				    "--max-clients-per-source); use "
				    "more --source addresses",
				    b.clients_failed);
			if (b.wait_clients > 0 && b.have_admin)
				bench_note("daemon holds %" PRIu32 " clients",
				    wait_connections("clients",
				    b.wait_clients));
			run_start();
		}
		break;
	case PH_RUN:
		if (b.rate > 0 && (b.sc == SC_RELAY || b.sc == SC_LATENCY ||
		    b.sc == SC_VMOTION))
			output_tick(now);
		if (b.sc == SC_VMOTION || b.sc == SC_GOAHEAD) {
			vmo_tick(dt);
			vmo_timeouts(now);
		}
		if (secs(b.t_run_ns, now) >= b.duration ||
		    (b.vmo_count > 0 && b.vmo_started >= b.vmo_count &&
		    b.vmo_open == 0)) {
			b.t_run_end_ns = now;
			window_end();
			output_stop();
			phase_set(PH_DRAIN);
		}
		break;
	case PH_DRAIN:
		vmo_timeouts(now);
		if ((b.vmo_open == 0 && clients_caught_up()) ||
		    secs(b.t_phase_ns, now) > b.drain_timeout) {
			phase_set(PH_DONE);
			event_base_loopbreak(b.base);
		}
		break;
	case PH_DONE:
		break;
	}
	return;

ramp_done:
	if (b.wait_conns > 0 && b.have_admin) {
		b.fleet = wait_connections("vm_connections", b.wait_conns);
		bench_note("daemon holds %" PRIu32 " VM connections", b.fleet);
	}
	{
		uint64_t t;

		if (proc_sample(&t, &b.rss_ramp_kib) != 0)
			b.rss_ramp_kib = 0;
		b.ramp_ticks1 = t;
		b.ramp_self1 = self_cpu();
		b.t_ramp_end_ns = now_ns();
	}
	if (b.cpv > 0) {
		long found = -1;

		if (b.have_admin && (found = fetch_client_ports()) < 0)
			bench_warnx("could not read the admin API");
		if (found >= 0)
			bench_note("admin API: %ld of our ports", found);
		clients_create();
		if (b.nclients > 0) {
			phase_set(PH_ATTACH);
			b.connect_credit = 0;
			return;
		}
		bench_warnx("no client attachment possible; clients skipped");
	}
	run_start();
}

/* SIGINT/SIGTERM: stop the run and report what there is. */
static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	bench_warnx("signal %d: stopping", (int)sig);
	if (b.phase == PH_RUN) {
		b.t_run_end_ns = now_ns();
		window_end();
	}
	b.phase = PH_DONE;
	event_base_loopbreak(b.base);
}

/* -- report ----------------------------------------------------------- */

/* Put every figure of the run into b.figs. */
static void
report_collect(void)
{
	uint64_t lost = 0, dup = 0, corrupt = 0, misrouted = 0, junk = 0;
	uint64_t notices = 0, tail = 0, minb = UINT64_MAX;
	double ramp, run, cpu, wnd, deliver;
	uint32_t i, nattached = 0;
	struct client *cl;

	if (b.identified == 0)
		b.exit_code = 2;	/* nothing was measured */
	ramp = secs(b.t_first_connect_ns, b.t_last_ident_ns);
	run = secs(b.t_run_ns, b.t_run_end_ns);
	fig_add("vms", "VMs requested", b.nvms, 0);
	fig_add("identified", "VMs identified", b.identified, 0);
	fig_add("refused", "VMs refused (WONT-PROXY)", b.refused, 0);
	fig_add("vm_failed", "VMs failed before identified", b.vm_failed, 0);
	fig_add("vms_not_opened", "VMs not opened (out of descriptors)",
	    b.not_opened, 0);
	fig_add("vm_lost", "VMs closed by the server after identified",
	    b.vm_lost, 0);
	fig_add("ramp_s", "ramp time (s)", ramp, 3);
	fig_add("handshakes_per_s", "handshakes/s (identified/ramp time)",
	    ramp > 0 ? b.identified / ramp : NAN, 0);
	fig_hist(&b.h_ident, "handshake", "connect->WILL-PROXY");
	if (b.tls) {
		fig_add("tls_handshakes", "TLS handshakes done", b.tls_ok, 0);
		fig_add("tls_failed", "TLS handshakes failed", b.tls_failed,
		    0);
		fig_hist(&b.h_tls, "tls", "TCP connected->TLS done");
	}
	fig_add("duration_s", "measured window (s)", run, 3);
	if (b.have_proc) {
		wnd = secs(b.t_cpu0_ns, b.t_cpu1_ns);
		cpu = wnd > 0 ? 100.0 * (double)(b.cpu1_ticks - b.cpu0_ticks) /
		    (double)sysconf(_SC_CLK_TCK) / wnd : NAN;
		fig_add("daemon_rss_base_kib", "daemon RSS before ramp (KiB)",
		    (double)b.rss_base_kib, 0);
		fig_add("daemon_rss_ramp_kib", "daemon RSS after ramp (KiB)",
		    (double)b.rss_ramp_kib, 0);
		fig_add("daemon_rss_kib", "daemon RSS at window end (KiB)",
		    (double)b.rss_end_kib, 0);
		fig_add("daemon_cpu_pct", "daemon CPU over the window (%)",
		    cpu, 2);
		wnd = secs(b.t_start_ns, b.t_ramp_end_ns);
		fig_add("daemon_cpu_ramp_pct", "daemon CPU over the ramp (%)",
		    wnd > 0 && b.ramp_ticks1 >= b.ramp_ticks0 ? 100.0 *
		    (double)(b.ramp_ticks1 - b.ramp_ticks0) /
		    (double)sysconf(_SC_CLK_TCK) / wnd : NAN, 1);
		fig_add("rss_per_port_kib", "daemon RSS per port (KiB, "
		    "ramp growth / identified)", b.identified > 0 &&
		    b.rss_ramp_kib > 0 ? ((double)b.rss_ramp_kib -
		    (double)b.rss_base_kib) / b.identified : NAN, 3);
		fig_add("rss_per_port_total_kib", "daemon RSS per port (KiB, "
		    "total / identified)", b.identified > 0 ?
		    (double)b.rss_end_kib / b.identified : NAN, 3);
		if (b.fleet > 0) {
			fig_add("fleet_connections", "daemon VM connections "
			    "(all processes)", b.fleet, 0);
			fig_add("rss_per_fleet_port_kib", "daemon RSS per "
			    "port (KiB, total / all processes' ports)",
			    (double)b.rss_end_kib / b.fleet, 3);
		}
	}
	wnd = secs(b.t_start_ns, b.t_ramp_end_ns);
	fig_add("bench_cpu_ramp_pct", "vspc-bench CPU over the ramp (%)",
	    wnd > 0 ? 100.0 * (b.ramp_self1 - b.ramp_self0) / wnd : NAN, 1);
	wnd = secs(b.t_cpu0_ns, b.t_cpu1_ns);
	fig_add("bench_cpu_pct", "vspc-bench CPU over the window (%)",
	    wnd > 0 ? 100.0 * (b.self_cpu1 - b.self_cpu0) / wnd : NAN, 2);
	if (b.sc == SC_HOLD)
		return;
	if (b.sc != SC_GOAHEAD) {
		for (i = 0; i < b.nclients; i++) {
			cl = b.cl_open[i];
			if (cl->state != CL_ATTACHED && cl->state != CL_CLOSED)
				continue;
			if (cl->state == CL_ATTACHED)
				nattached++;
			if (cl->state == CL_ATTACHED &&
			    cl->next_seq != cl->vm->seq)
				tail += cl->vm->seq - cl->next_seq;
			lost += cl->lost;
			dup += cl->dup;
			corrupt += cl->corrupt;
			misrouted += cl->misrouted;
			junk += cl->junk;
			notices += cl->notices;
			if (cl->state == CL_ATTACHED && cl->bytes < minb)
				minb = cl->bytes;
		}
		deliver = secs(b.t_run_ns, b.t_last_recv_ns);
		fig_add("clients", "clients attached", b.clients_attached, 0);
		fig_add("clients_failed", "clients failed", b.clients_failed,
		    0);
		fig_add("records_sent", "records sent", (double)b.records_sent,
		    0);
		fig_add("offered_mb_s", "offered VM output (MB/s)", run > 0 ?
		    (double)b.bytes_sent / 1e6 / run : NAN, 3);
		fig_add("throughput_mb_s", "VM->client throughput (MB/s)",
		    deliver > 0 ? (double)b.recv_bytes / 1e6 / deliver : NAN,
		    3);
		fig_add("per_client_mb_s", "per-client throughput, mean (MB/s)",
		    deliver > 0 && nattached > 0 ? (double)b.recv_bytes / 1e6 /
		    deliver / nattached : NAN, 6);
		fig_add("per_client_min_mb_s", "per-client throughput, min "
		    "(MB/s)", deliver > 0 && minb != UINT64_MAX ?
		    (double)minb / 1e6 / deliver : NAN, 6);
		fig_add("records_received", "records received (all clients)",
		    (double)b.h_lat.n, 0);
		fig_hist(&b.h_lat, "latency", "latency");
		fig_add("lost", "records lost (gaps)", (double)lost, 0);
		fig_add("lost_tail", "records never delivered (tail)",
		    (double)tail, 0);
		fig_add("duplicated", "records duplicated/reordered",
		    (double)dup, 0);
		fig_add("corrupted", "records corrupted", (double)corrupt, 0);
		fig_add("misrouted", "records of another VM",
		    (double)misrouted, 0);
		fig_add("junk_bytes", "bytes outside records", (double)junk, 0);
		fig_add("skip_notices", "daemon 'bytes skipped' notices",
		    (double)notices, 0);
		fig_add("output_stalls", "generator stalls (send queue full)",
		    (double)b.out_stalls, 0);
		if (lost + tail + dup + corrupt + misrouted > 0)
			b.exit_code = 1;
	}
	if (b.sc == SC_VMOTION || b.sc == SC_GOAHEAD) {
		double vt = secs(b.t_vmo_first_ns, b.t_vmo_last_ns);

		fig_add("vmotions_started", "vMotions started",
		    (double)b.vmo_started, 0);
		fig_add("vmotions_completed", "vMotions completed",
		    (double)b.vmo_completed, 0);
		fig_add("vmotions_aborted", "vMotions aborted after GOAHEAD "
		    "(goahead)", (double)b.vmo_aborted, 0);
		fig_add("vmotions_per_s", "vMotions ended OK per second",
		    vt > 0 ? (double)(b.vmo_completed + b.vmo_aborted) / vt :
		    NAN, 1);
		fig_add("vmotions_notnow", "NOTNOW replies",
		    (double)b.vmo_notnow, 0);
		fig_add("vmotions_failed", "vMotions failed",
		    (double)b.vmo_failed, 0);
		fig_add("vmotion_anomalies", "vMotion anomalies",
		    (double)b.vmo_anomalies, 0);
		fig_hist(&b.h_goahead, "goahead", "BEGIN->GOAHEAD");
		if (b.h_vmotion.n > 0)
			fig_hist(&b.h_vmotion, "vmotion", "BEGIN->PEER-OK");
		if (b.vmo_failed + b.vmo_anomalies > 0 ||
		    b.vmo_started != b.vmo_completed + b.vmo_aborted +
		    b.vmo_notnow + b.vmo_failed)
			b.exit_code = 1;
	}
}

/* Print the human table. */
static void
report_table(void)
{
	size_t i;

	printf("vspc-bench %s: target %s, %" PRIu32 " VMs, %" PRIu32
	    " clients/VM\n", scenario_names[b.sc], b.target_spec, b.nvms,
	    b.cpv);
	printf("%-58s %s\n", "figure", "value");
	for (i = 0; i < b.nfigs; i++) {
		if (b.figs[i].valid)
			printf("%-58s %.*f\n", b.figs[i].label, b.figs[i].prec,
			    b.figs[i].v);
		else
			printf("%-58s -\n", b.figs[i].label);
	}
	fflush(stdout);
}

/* Write every figure, the parameters, the date and the target as JSON. */
static void
report_json(const char *path)
{
	char date[64];
	time_t t = time(NULL);
	struct tm tm;
	size_t i;
	FILE *f;

	if ((f = fopen(path, "w")) == NULL) {
		bench_warnx("%s: %s", path, strerror(errno));
		return;
	}
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(f, "{\n  \"tool\": \"vspc-bench\",\n  \"version\": \"%s\",\n"
	    "  \"date\": \"%s\",\n  \"scenario\": \"%s\",\n"
	    "  \"target\": \"%s\",\n", VSPC_VERSION, date,
	    scenario_names[b.sc], b.target_spec);
	fprintf(f, "  \"params\": {\"vms\": %" PRIu32 ", \"vm_offset\": %"
	    PRIu32 ", \"clients_per_vm\": %" PRIu32 ", \"connect_rate\": %g"
	    ", \"max_pending\": %" PRIu32 ", \"rate\": %" PRIu64
	    ", \"record_size\": %" PRIu32 ", \"duration\": %g"
	    ", \"vmotion_rate\": %g, \"vmotion_count\": %" PRIu64
	    ", \"sources\": %zu, \"frontdoor\": %s, \"daemon_pid\": %ld"
	    ", \"wait_connections\": %" PRIu32 "%s"
	    ", \"uuid_tag\": \"%02x%02x%02x%02x\"},\n", b.nvms, b.vm_offset,
	    b.cpv, b.connect_rate, b.max_pending, b.rate, b.recsize,
	    b.duration, b.vmo_rate, b.vmo_count, b.nsrcs,
	    b.frontdoor_spec != NULL ? "true" : "false", b.daemon_pid,
	    b.wait_conns, b.tls ? ", \"tls\": true" : "", b.tag[0], b.tag[1],
	    b.tag[2], b.tag[3]);
	fprintf(f, "  \"results\": {");
	for (i = 0; i < b.nfigs; i++) {
		fprintf(f, "%s\n    \"%s\": ", i == 0 ? "" : ",",
		    b.figs[i].key);
		if (b.figs[i].valid)
			fprintf(f, "%.*f", b.figs[i].prec, b.figs[i].v);
		else
			fputs("null", f);
	}
	fprintf(f, "\n  },\n  \"exit\": %d\n}\n", b.exit_code);
	fclose(f);
}

/* -- options ---------------------------------------------------------- */

/* Print the usage text. */
static void
usage(FILE *f)
{
	fprintf(f,
"usage: vspc-bench --scenario hold|relay|latency|vmotion|goahead\n"
"                  [--target HOST:PORT] [--listeners FILE]\n"
"                  [--admin HOST:PORT] [--frontdoor HOST:PORT]\n"
"                  [--daemon-pid PID] [--vms N] [--clients-per-vm K]\n"
"                  [--source ADDR,...] [--connect-rate R] [--max-pending N]\n"
"                  [--rate B/s] [--record-size B] [--duration S]\n"
"                  [--vmotion-rate R] [--vmotion-count N]\n"
"                  [--goahead-complete] [--vm-offset N] [--uuid-tag HEX8]\n"
"                  [--name-prefix P] [--uri URI] [--ramp-timeout S]\n"
"                  [--drain-timeout S] [--wait-connections N]\n"
"                  [--wait-clients N]\n"
"                  [--json FILE] [--quiet]\n"
"                  [--tls [--tls-thumbprint HEX] [--tls-ca FILE]\n"
"                   [--tls-servername NAME] [--tls-min V] [--tls-max V]]\n"
"\n"
"  --listeners FILE     vspcd's listeners.json: target (with --tls the first\n"
"                       TLS VM listener), admin, front door and daemon\n"
"                       pid (each unless given explicitly)\n"
"  --connect-rate R     VM (and client) connections opened per second\n"
"                       (0 = as fast as possible, default)\n"
"  --max-pending N      at most N handshakes in flight (default 1000,\n"
"                       0 = no limit)\n"
"  --rate B/s           output per VM (0 = unlimited); defaults: relay 0,\n"
"                       latency 640, vmotion 1280\n"
"  --record-size B      bytes per record (32..65536; relay default 1024,\n"
"                       else 128)\n"
"  --vmotion-rate R     vMotions (vmotion) or BEGINs (goahead) per second\n"
"                       in total (default 100; 0 = as fast as possible)\n"
"  --vmotion-count N    stop the run after N vMotions\n"
"  --goahead-complete   goahead: complete the vMotion instead of ABORT\n"
"  --vm-offset N        first VM index (names <prefix>NNNNN, UUID tail)\n"
"  --uuid-tag HEX8      VC UUIDs 50 <tag> 00.. (default be4c0000)\n"
"  --source LIST        bind VM and client connections to these addresses\n"
"                       in turn (vspcd caps connections per source)\n"
"  --wait-connections N several processes: after the ramp, wait until\n"
"                       the daemon holds N VM connections (admin API)\n"
"  --wait-clients N     several processes: after attaching, wait until the\n"
"                       daemon holds N clients, so that no process measures\n"
"                       while another still sets up (and linger 1 s at the\n"
"                       end, while another may still measure)\n");
	simtls_usage(f);
	fprintf(f,
"                       (--tls: VM connections only, clients stay plain;\n"
"                       figures tls_handshakes, tls_failed, tls_p50_us..,\n"
"                       and handshakes_per_s then includes TLS)\n"
"\n"
"Exit status: 0 ok, 1 verification mismatches or vMotion failures,\n"
"2 usage or setup error, or no VM identified.\n");
}

/* Parse a non-negative number option or exit. */
static double
parse_double(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || isnan(v))
		bench_fatalx("%s %s: need a non-negative number", opt, s);
	return (v);
}

/* Parse a non-negative integer option or exit. */
static long long
parse_num(const char *opt, const char *s, long long max)
{
	const char *err;
	long long v;

	v = strtonum(s, 0, max, &err);
	if (err != NULL)
		bench_fatalx("%s %s: %s", opt, s, err);
	return (v);
}

/* Parse the source address list. */
static void
parse_sources(const char *list)
{
	char *copy, *p, *w;

	copy = xstrdup(list);
	p = copy;
	while ((w = strsep(&p, ",")) != NULL) {
		if (*w == '\0')
			continue;
		if (b.nsrcs == BENCH_SOURCES_MAX)
			bench_fatalx("--source: at most %d addresses",
			    BENCH_SOURCES_MAX);
		if (parse_addr(w, "0", &b.srcs[b.nsrcs],
		    &b.src_lens[b.nsrcs]) != 0 ||
		    b.srcs[b.nsrcs].ss_family != b.target.ss_family)
			bench_fatalx("--source %s: bad address (family must "
			    "match --target)", w);
		b.nsrcs++;
	}
	free(copy);
}

enum {
	O_SCENARIO = 256, O_TARGET, O_ADMIN, O_LISTENERS, O_FRONTDOOR,
	O_PID, O_VMS, O_CPV, O_SOURCE, O_CRATE, O_PENDING, O_RATE, O_RECSIZE,
	O_DURATION, O_VRATE, O_VCOUNT, O_GCOMPLETE, O_OFFSET, O_TAG, O_PREFIX,
	O_URI, O_RTIMEOUT, O_DTIMEOUT, O_JSON, O_QUIET, O_HELP, O_WAIT,
	O_WAITCL,
};

/* Parse the command line into b. */
static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scenario", required_argument, NULL, O_SCENARIO },
		{ "target", required_argument, NULL, O_TARGET },
		{ "admin", required_argument, NULL, O_ADMIN },
		{ "listeners", required_argument, NULL, O_LISTENERS },
		{ "frontdoor", required_argument, NULL, O_FRONTDOOR },
		{ "daemon-pid", required_argument, NULL, O_PID },
		{ "vms", required_argument, NULL, O_VMS },
		{ "clients-per-vm", required_argument, NULL, O_CPV },
		{ "source", required_argument, NULL, O_SOURCE },
		{ "connect-rate", required_argument, NULL, O_CRATE },
		{ "max-pending", required_argument, NULL, O_PENDING },
		{ "rate", required_argument, NULL, O_RATE },
		{ "record-size", required_argument, NULL, O_RECSIZE },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "vmotion-rate", required_argument, NULL, O_VRATE },
		{ "vmotion-count", required_argument, NULL, O_VCOUNT },
		{ "goahead-complete", no_argument, NULL, O_GCOMPLETE },
		{ "vm-offset", required_argument, NULL, O_OFFSET },
		{ "uuid-tag", required_argument, NULL, O_TAG },
		{ "name-prefix", required_argument, NULL, O_PREFIX },
		{ "uri", required_argument, NULL, O_URI },
		{ "ramp-timeout", required_argument, NULL, O_RTIMEOUT },
		{ "drain-timeout", required_argument, NULL, O_DTIMEOUT },
		{ "json", required_argument, NULL, O_JSON },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "wait-connections", required_argument, NULL, O_WAIT },
		{ "wait-clients", required_argument, NULL, O_WAITCL },
		{ "help", no_argument, NULL, O_HELP },
		SIMTLS_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	const struct simtls_opts *to = &b.tls_opts;
	const char *scenario = NULL;
	char cause[256];
	unsigned int t[4];
	int ch, i;
	bool rs_set = false;

	b.nvms = 100;
	b.max_pending = 1000;
	b.duration = 10;
	b.vmo_rate = 100;
	b.ramp_timeout = 60;
	b.drain_timeout = 5;
	b.tag[0] = 0xbe;
	b.tag[1] = 0x4c;
	strlcpy(b.prefix, "bench-", sizeof b.prefix);
	strlcpy(b.uri, "vSPC.py", sizeof b.uri);
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case O_SCENARIO:
			scenario = optarg;
			break;
		case O_TARGET:
			b.target_spec = optarg;
			break;
		case O_ADMIN:
			b.admin_spec = optarg;
			break;
		case O_LISTENERS:
			b.listeners_path = optarg;
			break;
		case O_FRONTDOOR:
			b.frontdoor_spec = optarg;
			break;
		case O_PID:
			b.daemon_pid = (long)parse_num("--daemon-pid", optarg,
			    INT_MAX);
			break;
		case O_VMS:
			b.nvms = (uint32_t)parse_num("--vms", optarg, 10000000);
			break;
		case O_CPV:
			b.cpv = (uint32_t)parse_num("--clients-per-vm", optarg,
			    10000);
			b.cpv_set = true;
			break;
		case O_SOURCE:
			b.source_spec = optarg;
			break;
		case O_CRATE:
			b.connect_rate = parse_double("--connect-rate", optarg);
			break;
		case O_PENDING:
			b.max_pending = (uint32_t)parse_num("--max-pending",
			    optarg, 10000000);
			break;
		case O_RATE:
			b.rate = (uint64_t)parse_num("--rate", optarg,
			    10000000000LL);
			b.rate_set = true;
			break;
		case O_RECSIZE:
			b.recsize = (uint32_t)parse_num("--record-size", optarg,
			    REC_MAX);
			rs_set = true;
			break;
		case O_DURATION:
			b.duration = parse_double("--duration", optarg);
			break;
		case O_VRATE:
			b.vmo_rate = parse_double("--vmotion-rate", optarg);
			break;
		case O_VCOUNT:
			b.vmo_count = (uint64_t)parse_num("--vmotion-count",
			    optarg, LLONG_MAX);
			break;
		case O_GCOMPLETE:
			b.goahead_complete = true;
			break;
		case O_OFFSET:
			b.vm_offset = (uint32_t)parse_num("--vm-offset", optarg,
			    UINT32_MAX / 2);
			break;
		case O_TAG:
			if (strlen(optarg) != 8 || sscanf(optarg,
			    "%2x%2x%2x%2x", &t[0], &t[1], &t[2], &t[3]) != 4)
				bench_fatalx("--uuid-tag: need 8 hex digits");
			for (i = 0; i < 4; i++)
				b.tag[i] = (uint8_t)t[i];
			break;
		case O_PREFIX:
			if (strlcpy(b.prefix, optarg, sizeof b.prefix) >=
			    sizeof b.prefix)
				bench_fatalx("--name-prefix: too long");
			break;
		case O_URI:
			if (strlcpy(b.uri, optarg, sizeof b.uri) >=
			    sizeof b.uri)
				bench_fatalx("--uri: too long");
			break;
		case O_RTIMEOUT:
			b.ramp_timeout = parse_double("--ramp-timeout", optarg);
			break;
		case O_DTIMEOUT:
			b.drain_timeout = parse_double("--drain-timeout",
			    optarg);
			break;
		case O_JSON:
			b.json_path = optarg;
			break;
		case O_QUIET:
			b.quiet = true;
			break;
		case O_WAIT:
			b.wait_conns = (uint32_t)parse_num("--wait-connections",
			    optarg, 100000000);
			break;
		case O_WAITCL:
			b.wait_clients = (uint32_t)parse_num("--wait-clients",
			    optarg, 100000000);
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			if (simtls_option(ch, optarg, &b.tls, &b.tls_opts))
				break;
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc || scenario == NULL) {
		usage(stderr);
		exit(2);
	}
	for (i = 0; i < SC_MAX; i++)
		if (strcmp(scenario, scenario_names[i]) == 0)
			break;
	if (i == SC_MAX)
		bench_fatalx("--scenario %s: unknown", scenario);
	b.sc = (enum scenario)i;
	if (b.nvms == 0)
		bench_fatalx("--vms must be at least 1");
	if (!rs_set)
		b.recsize = b.sc == SC_RELAY ? 1024 : 128;
	if (b.recsize < REC_MIN)
		bench_fatalx("--record-size: at least %d", REC_MIN);
	if (!b.rate_set)
		b.rate = b.sc == SC_LATENCY ? 640 : (b.sc == SC_VMOTION ?
		    1280 : 0);
	if (!b.cpv_set)
		b.cpv = (b.sc == SC_HOLD || b.sc == SC_GOAHEAD) ? 0 : 1;
	if (b.target_spec != NULL && parse_addr(b.target_spec, NULL,
	    &b.target, &b.target_len) != 0)
		bench_fatalx("--target %s: need HOST:PORT", b.target_spec);
	if (b.admin_spec != NULL) {
		if (parse_addr(b.admin_spec, NULL, &b.admin, &b.admin_len) != 0)
			bench_fatalx("--admin %s: need HOST:PORT",
			    b.admin_spec);
		b.have_admin = true;
	}
	if (b.frontdoor_spec != NULL) {
		if (parse_addr(b.frontdoor_spec, NULL, &b.frontdoor,
		    &b.frontdoor_len) != 0)
			bench_fatalx("--frontdoor %s: need HOST:PORT",
			    b.frontdoor_spec);
		b.have_frontdoor = true;
	}
	if (b.listeners_path != NULL)
		load_listeners(b.listeners_path);
	if (b.target_spec == NULL)
		bench_fatalx("need --target HOST:PORT or --listeners FILE");
	if (b.frontdoor_spec != NULL)
		b.have_admin = false;	/* every client via the front door */
	else if (b.frontdoor_len > 0)
		b.have_frontdoor = true;	/* for ports with no listener */
	if (b.source_spec != NULL)
		parse_sources(b.source_spec);
	if (!b.tls && (to->thumbprint != NULL || to->ca != NULL ||
	    to->servername != NULL || to->min != NULL || to->max != NULL))
		bench_fatalx("the --tls-* options need --tls");
	if (b.tls && simtls_init(to, b.target_spec, "vspc-bench", cause,
	    sizeof cause) != 0)
		bench_fatalx("%s", cause);
}

/* Raise the open file limit to the hard limit and check it is enough. */
static void
raise_nofile(void)
{
	struct rlimit rl;
	uint64_t need;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	need = (uint64_t)b.nvms * (1 + b.cpv) + 32;
	if (b.sc == SC_VMOTION || b.sc == SC_GOAHEAD)
		need += b.nvms;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need)
		bench_warnx("need up to %" PRIu64 " descriptors but the limit "
		    "is %llu: run several processes (--vm-offset)", need,
		    (unsigned long long)rl.rlim_cur);
}

int
main(int argc, char **argv)
{
	struct timeval tick = { 0, BENCH_TICK_US };
	uint32_t i;

	parse_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	tmpl_init();
	b.vms = xcalloc(b.nvms, sizeof *b.vms);
	due_heap = xcalloc(b.nvms, sizeof *due_heap);
	for (i = 0; i < b.nvms; i++)
		b.vms[i].idx = b.vm_offset + i;
	if ((b.base = event_base_new()) == NULL ||
	    bev_cork_init(b.base) == -1)
		bench_fatalx("event_base_new failed");
	b.tick_ev = event_new(b.base, -1, EV_PERSIST, tick_cb, NULL);
	b.sig_ev[0] = evsignal_new(b.base, SIGINT, signal_cb, NULL);
	b.sig_ev[1] = evsignal_new(b.base, SIGTERM, signal_cb, NULL);
	if (b.tick_ev == NULL || b.sig_ev[0] == NULL || b.sig_ev[1] == NULL)
		bench_fatalx("out of memory");
	event_add(b.sig_ev[0], NULL);
	event_add(b.sig_ev[1], NULL);
	b.ramp_self0 = self_cpu();
	if (proc_sample(&b.ramp_ticks0, &b.rss_base_kib) != 0) {
		if (b.daemon_pid > 0)
			bench_warnx("cannot read /proc/%ld", b.daemon_pid);
		b.rss_base_kib = 0;
	}
	b.t_start_ns = b.t_last_tick_ns = now_ns();
	phase_set(PH_RAMP);
	event_add(b.tick_ev, &tick);
	event_base_dispatch(b.base);
	report_collect();
	report_table();
	if (b.json_path != NULL)
		report_json(b.json_path);
	if (b.wait_clients > 0) {
		/*
		 * Several processes started their windows together (within
		 * one 100 ms poll): keep the connections a moment, so that
		 * the daemon closing ours does not fall into another's
		 * window.
		 */
		sleep(1);
	}
	return (b.exit_code);
}
