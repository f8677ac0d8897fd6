/*
 * vspc-sim: a simulated fleet of ESXi hosts for testing vspcd.
 *
 * Every (VM, port) pair is one TCP connection to the proxy that behaves like
 * the ESXi host of the reference capture (PROTOCOL-VMWARE.md 4.2): it opens
 * with IAC WILL AUTHENTICATION, agrees to what the proxy asks for through
 * the RFC 1143 codec, sends KNOWN-SUBOPTIONS-1 and DO-PROXY when the
 * proxy's KNOWN-SUBOPTIONS-2 arrives, answers the GET-* identity requests,
 * offers WILL COM-PORT and, once WILL-PROXY came back, emits console output
 * at a fixed rate.
 *
 * One event loop and one periodic tick drive everything: the tick opens
 * queued connections (bounded per pass), fires the small per-connection
 * delays (KS-1 fallback, COM-PORT offer) and hands every ready port its
 * share of the output budget. Per-connection state is a small struct; the
 * scratch buffers are process-wide. Output is generated only while the
 * connection's send queue is under --out-cap, so a proxy that stops
 * reading stops the generator instead of growing memory.
 *
 * Console counters (sent, received, the output sequence) belong to the
 * simulated serial port, not to one TCP connection: they continue across
 * reconnects and vMotions, as a guest's UART would.
 *
 * A port (struct conn) has at most one active TCP connection (struct link)
 * and, during a vMotion, a second one: the destination. A vMotion follows
 * PROTOCOL-VMWARE.md section 6: the port is stunned (no output), BEGIN goes
 * out on the source; after GOAHEAD a new link connects, negotiates like a
 * fresh one and sends KS-1 + PEER + WILL COM-PORT in one write; after
 * PEER-OK it sends COMPLETE, the source closes (FIN first by default, as in
 * the capture) and the destination becomes the port's link. Failure options
 * play the E1-E9 paths. Links are freed outside their own telnet_input()
 * (a link closed from its own callback is only marked dead).
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>

#include <errno.h>
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
#include <event2/util.h>

#include "compat.h"
#include "simtls.h"
#include "telnet.h"
#include "vmwext.h"
#include "xmalloc.h"

#define SIM_TICK_US		10000	/* the one periodic timer */
#define SIM_CONNECTS_PER_PASS	500	/* never stall the loop on connect */
#define SIM_OUT_CAP		(1024 * 1024)
#define SIM_NAME_MAX		64	/* --name-prefix */
#define SIM_URI_MAX		400	/* --uri */
#define SIM_SOURCES_MAX		1024
#define SIM_CTL_LINE_MAX	(256 * 1024)
#define SIM_CHUNK		8192
#define SIM_LINE_MAX		160
#define SIM_READ_CHUNK		16384

/* Connection states. */
enum conn_state {
	CONN_IDLE = 0,		/* closed, not queued */
	CONN_QUEUED,		/* on sim.connq, to be opened by the tick */
	CONN_DELAYED,		/* on sim.delayq, waiting for --reconnect */
	CONN_CONNECTING,	/* connect() in progress */
	CONN_OPEN,		/* connected, on sim.openq */
};

#define LINK_F_EXT	0x01	/* our WILL VMWARE-EXT is enabled */
#define LINK_F_KS1	0x02	/* KS-1 and DO-PROXY (or PEER) sent */
#define LINK_F_COMPORT	0x04	/* WILL COM-PORT requested */
#define LINK_F_READY	0x08	/* WILL-PROXY received (or vMotion done) */
#define LINK_F_REFUSED	0x10	/* WONT-PROXY received */
#define LINK_F_RDOFF	0x20	/* reading paused by backpressure */
#define LINK_F_TLS	0x40	/* --tls: TCP up, the TLS filter is on */
#define LINK_F_TLSUP	0x80	/* --tls: handshake done */

/* What a TCP connection is to its port. */
enum link_role {
	LINK_MAIN = 0,		/* the port's connection (c->link) */
	LINK_DEST,		/* vMotion destination, before COMPLETE */
	LINK_OLD,		/* retired source (fin=never), read until EOF */
};

struct conn;
struct vmo;

/* One TCP connection of a simulated port. */
struct link {
	TAILQ_ENTRY(link) entry;	/* sim.oldq (LINK_OLD only) */
	struct conn *c;
	struct vmo *vmo;		/* LINK_DEST: its vMotion */
	struct bufferevent *bev;	/* what the link reads and writes */
	struct bufferevent *raw;	/* the socket (bev unless --tls) */
	struct telnet tn;
	uint64_t ext_us;		/* when VMWARE-EXT became enabled */
	uint64_t proxy_us;		/* when DO-PROXY went out */
	uint8_t flags;
	uint8_t role;
	bool in_input;			/* inside telnet_input() */
	bool dead;			/* free once telnet_input() returns */
};

TAILQ_HEAD(link_list, link);

/* vMotion options (the words of the vmotion command). */
#define VO_ABORT	0x01	/* ABORT after GOAHEAD, no destination */
#define VO_ABORT_PEER	0x02	/* ABORT after PEER-OK */
#define VO_NOPEER	0x04	/* destination never sends PEER */
#define VO_BADSECRET	0x08	/* PEER with a flipped secret */
#define VO_DIE_SRC	0x10	/* source closes right after GOAHEAD */
#define VO_DIE_DST	0x20	/* destination closes after PEER-OK */

enum vmo_fin { FIN_FIRST = 0, FIN_LAST, FIN_NEVER };

enum vmo_step {
	VMO_BEGIN = 0,		/* BEGIN sent; waiting for GOAHEAD/NOTNOW */
	VMO_ABORT_WAIT,		/* 'abort': ABORT after the delay */
	VMO_DEST,		/* destination up; waiting for PEER-OK */
	VMO_FAIL_DST,		/* PEER-OK came; ABORT path after the delay */
};

/* vMotion outcomes, in the order of the status counters. */
enum vmo_outcome {
	VMO_COMPLETED = 0, VMO_NOTNOW, VMO_TIMEOUT, VMO_ABORTED, VMO_GAVEUP,
	VMO_REJECTED, VMO_FAILED, VMO_LOST, VMO_CANCELLED, VMO_NOUTCOMES,
};

static const char *vmo_outcome_names[VMO_NOUTCOMES] = {
	"completed", "notnow", "timeout", "aborted", "gaveup", "rejected",
	"failed", "lost", "cancelled",
};

static const char *vmo_step_names[] = {
	[VMO_BEGIN] = "begin", [VMO_ABORT_WAIT] = "abort-wait",
	[VMO_DEST] = "dest", [VMO_FAIL_DST] = "fail-dst",
};

#define VMO_SEQ_MAX	32	/* seq=HEX; GOAHEAD must fit 64 bytes */

/* One vMotion of one port (at most one per port at a time). */
struct vmo {
	TAILQ_ENTRY(vmo) entry;		/* sim.vmoq */
	struct conn *c;
	struct link *src;		/* NULL once the source is gone */
	struct link *dst;
	struct event *timer;
	uint64_t t0_us;
	uint8_t cookie[VMWEXT_COOKIE_MAX];	/* seq || secret */
	size_t seqlen;
	size_t cookielen;		/* 0 until GOAHEAD */
	uint32_t opts;
	uint32_t limit_ms;
	uint32_t delay_ms;
	uint8_t fin;
	uint8_t step;
	bool storm;
};

TAILQ_HEAD(vmo_list, vmo);

/* One simulated serial port and its (at most one) active connection. */
struct conn {
	TAILQ_ENTRY(conn) entry;	/* connq, delayq or openq */
	struct link *link;		/* active connection or NULL */
	struct vmo *vmo;		/* vMotion under way or NULL */
	struct evbuffer *held_out;	/* output while stunned (lazy) */
	uint64_t due_us;		/* CONN_DELAYED: reconnect time */
	uint64_t sent;			/* console bytes sent, unescaped */
	uint64_t received;		/* console bytes received */
	uint64_t recv_during;		/* received where none may come */
	uint64_t recv_pre_goahead;	/* after BEGIN, before GOAHEAD */
	uint64_t vmotions;		/* vMotions completed */
	uint32_t recv_fnv;
	uint32_t seq;			/* --mode seq: current line */
	uint32_t vm;
	uint16_t port;
	uint8_t line_off;		/* --mode seq: bytes of line sent */
	uint8_t next_byte;		/* --mode bytes */
	uint8_t state;
	bool stunned;			/* vMotion: no output */
};

TAILQ_HEAD(conn_list, conn);

enum sim_mode { MODE_SEQ, MODE_BYTES, MODE_NONE };

/* Process-wide configuration and state. */
static struct {
	/* Options. */
	uint32_t vms;
	uint32_t ports;
	char name_prefix[SIM_NAME_MAX + 1];
	uint8_t uuid[16];
	char uri[SIM_URI_MAX + 1];
	uint64_t rate;
	enum sim_mode mode;
	bool echo;
	bool control;
	bool print_recv;
	bool quiet;
	bool offer_ext;
	bool tls;			/* --tls */
	struct simtls_opts tls_opts;
	int verbose;
	uint32_t connect_rate;
	uint64_t early_data;
	uint64_t comport_delay_us;
	uint64_t ks1_wait_us;
	int64_t reconnect_us;		/* -1: no automatic reconnect */
	double duration;
	size_t out_cap;

	struct sockaddr_storage target;
	socklen_t target_len;
	struct sockaddr_storage *sources;
	socklen_t *source_lens;
	size_t nsources;
	size_t next_source;
	struct sockaddr_storage *dsources;	/* --dest-source */
	socklen_t *dsource_lens;
	size_t ndsources;
	size_t next_dsource;

	/* vMotion. */
	uint32_t vmo_limit_ms;		/* --vmotion-limit (ESXi: 5000) */
	uint32_t vmo_delay_ms;		/* --vmotion-delay */
	uint64_t seed;
	uint64_t rng;
	uint32_t storm_total;		/* --storm / storm command */
	uint32_t storm_started;
	uint32_t storm_ended;
	uint32_t storm_outcomes[VMO_NOUTCOMES];
	double storm_rate;
	double storm_faults;
	uint64_t storm_next_us;
	uint64_t storm_t0_us;
	bool storm_on;
	bool storm_exit;		/* --storm without --control: exit */
	uint64_t vmo_outcomes[VMO_NOUTCOMES];
	uint64_t vmo_started;
	uint64_t vmo_anomalies;		/* bad GOAHEAD/PEER-OK, unexpected */
	uint64_t tls_ok;		/* TLS handshakes done */
	uint64_t tls_failed;		/* TLS handshakes failed */
	struct vmo_list vmoq;
	struct link_list oldq;

	/* Run time. */
	struct event_base *base;
	struct event *tick_ev;
	struct event *ctl_ev;
	struct event *sigint_ev;
	struct event *sigterm_ev;
	struct event *duration_ev;
	struct evbuffer *ctl_in;
	struct evbuffer *recv_hex;	/* --print-recv: one line per read */
	struct conn *conns;
	size_t nconns;
	struct conn_list connq;
	struct conn_list delayq;
	struct conn_list openq;
	uint64_t last_tick_us;
	double connect_credit;
	uint64_t out_t0_us;		/* start of the current rate second */
	uint64_t out_given;		/* bytes granted since out_t0_us */
	bool warned_fd;
} sim;

/* Process-wide scratch space (never per connection). */
static uint8_t gen_buf[SIM_CHUNK];
static uint8_t esc_buf[2 * SIM_CHUNK];
static uint8_t read_buf[SIM_READ_CHUNK];

/* ESXi's KNOWN-SUBOPTIONS-1 list, in the order ESXi sends it. */
static const uint8_t esxi_ks1[] = {
	0x00, 0x01, 0x02, 0x03, 0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30,
	0x46, 0x47, 0x49, 0x50, 0x51, 0x54, 0x55, 0x56, 0x57, 0x52, 0x53,
};

static void conn_close(struct conn *, const char *, bool);
static void vmo_message(struct link *, uint8_t, const uint8_t *, size_t);
static void vmo_src_lost(struct vmo *, const char *);
static void vmo_dst_lost(struct vmo *, const char *);
static void vmo_cancel(struct vmo *);
static void link_event_cb(struct bufferevent *, short, void *);
static void vmo_anomaly(struct conn *, const char *, ...) printflike(2, 3);
static void sim_warnx(const char *, ...) printflike(1, 2);
static __dead void sim_fatalx(const char *, ...) printflike(1, 2);
static void sim_event(const char *, ...) printflike(1, 2);

/* Print a message to stderr. */
static void
sim_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vspc-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Print a message to stderr and exit with status 1. */
static void
sim_fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vspc-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* Print one event line on stdout and flush it at once. */
static void
sim_event(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* Return the monotonic clock in microseconds. */
static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

/* Update a running FNV-1a 32 hash with len bytes. */
static uint32_t
fnv1a32(uint32_t h, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return (h);
}

/* Write the name of VM vm into out. */
static void
sim_vm_name(uint32_t vm, char *out, size_t cap)
{
	snprintf(out, cap, "%s%05" PRIu32, sim.name_prefix, vm);
}

/* Write the seq-mode label of port j into out ("com<j+1>" or "-"). */
static void
sim_port_label(uint16_t port, char *out, size_t cap)
{
	if (sim.ports > 1)
		snprintf(out, cap, "com%u", (unsigned)port + 1);
	else
		strlcpy(out, "-", cap);
}

/* Write the service URI of port j into out; return its length. */
static size_t
sim_port_uri(uint16_t port, char *out, size_t cap)
{
	int n;

	if (sim.ports > 1)
		n = snprintf(out, cap, "%s?port=com%u", sim.uri,
		    (unsigned)port + 1);
	else
		n = snprintf(out, cap, "%s", sim.uri);
	if (n < 0)
		return (0);
	return ((size_t)n < cap ? (size_t)n : cap - 1);
}

/*
 * Render a UUID of VM vm the ESXi way into out[48]. kind 0 is the VC UUID,
 * 1 the BIOS UUID (first byte 0x42), 2 the location UUID (first bytes
 * 0x56 0x4d); the VM index is added to the last four bytes.
 */
static void
sim_uuid_text(uint32_t vm, int kind, char out[48])
{
	uint8_t u[16];
	uint32_t tail;
	size_t i, off;

	memcpy(u, sim.uuid, sizeof u);
	tail = ((uint32_t)u[12] << 24 | (uint32_t)u[13] << 16 |
	    (uint32_t)u[14] << 8 | u[15]) + vm;
	u[12] = tail >> 24;
	u[13] = tail >> 16;
	u[14] = tail >> 8;
	u[15] = tail;
	if (kind == 1)
		u[0] = 0x42;
	else if (kind == 2) {
		u[0] = 0x56;
		u[1] = 0x4d;
	}
	off = 0;
	for (i = 0; i < 16; i++) {
		snprintf(out + off, 48 - off, "%s%02x",
		    i == 0 ? "" : (i == 8 ? "-" : " "), u[i]);
		off += i == 0 ? 2 : 3;
	}
}

/* Queue raw (already encoded) bytes on the link. */
static void
link_write(struct link *l, const void *buf, size_t len)
{
	if (l == NULL || l->bev == NULL || l->dead || len == 0)
		return;
	if (bufferevent_write(l->bev, buf, len) != 0)
		sim_warnx("vm %" PRIu32 " port %u: write failed", l->c->vm,
		    (unsigned)l->c->port);
}

/* Return the bytes waiting in the link's send queue. */
static size_t
link_queued(struct link *l)
{
	size_t n;

	if (l == NULL || l->bev == NULL)
		return (0);
	n = evbuffer_get_length(bufferevent_get_output(l->bev));
	if (l->raw != l->bev)
		n += evbuffer_get_length(bufferevent_get_output(l->raw));
	return (n);
}

/*
 * Write the link's send queue to the socket now (ordering on the wire:
 * COMPLETE on the destination before the source's FIN, --vmotion-fin last).
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

/*
 * Close and free a link. Inside its own telnet_input() it is only marked
 * dead (reading stops) and freed when that returns.
 */
static void
link_free(struct link *l)
{
	if (l == NULL)
		return;
	if (l->in_input) {
		l->dead = true;
		if (l->bev != NULL)
			bufferevent_disable(l->bev, EV_READ);
		return;
	}
	if (l->bev != NULL && (l->flags & LINK_F_TLSUP)) {
		/* close_notify, then the FIN. */
		simtls_close_notify(l->bev);
		simtls_flush_raw(l->raw);
	}
	if (l->bev != NULL)
		bufferevent_free(l->bev);
	telnet_free(&l->tn);
	free(l);
}

/*
 * Send console bytes on the port's link with 0xFF doubled and count them.
 * While the port is stunned (vMotion) they wait and go out on resume.
 */
static void
conn_send_console(struct conn *c, const uint8_t *buf, size_t len)
{
	size_t n, elen;

	if (c->stunned) {
		if (c->held_out == NULL && (c->held_out = evbuffer_new()) ==
		    NULL)
			sim_fatalx("out of memory");
		evbuffer_add(c->held_out, buf, len);
		return;
	}
	while (len > 0) {
		n = len < SIM_CHUNK ? len : SIM_CHUNK;
		elen = telnet_escape(esc_buf, buf, n);
		link_write(c->link, esc_buf, elen);
		c->sent += n;
		buf += n;
		len -= n;
	}
}

/* End the stun: output (and what was held) goes out on the port's link. */
static void
conn_unstun(struct conn *c)
{
	size_t len;

	c->stunned = false;
	if (c->held_out == NULL || (len = evbuffer_get_length(c->held_out)) ==
	    0)
		return;
	conn_send_console(c, evbuffer_pullup(c->held_out, -1), len);
	evbuffer_drain(c->held_out, len);
}

/* Encode and send one option 232 command with up to two fields. */
static void
link_send_vmwext(struct link *l, uint8_t cmd, const void *a, size_t alen,
    const void *b, size_t blen)
{
	uint8_t buf[2 * (SIM_URI_MAX + SIM_LINE_MAX) + 16];
	size_t n;

	n = vmwext_encode(buf, sizeof buf, cmd, a, alen, b, blen);
	if (n == 0) {
		sim_warnx("vm %" PRIu32 " port %u: %s does not fit", l->c->vm,
		    (unsigned)l->c->port, vmwext_cmd_name(cmd));
		return;
	}
	link_write(l, buf, n);
}

/* Fill buf with the current seq-mode line; return its length. */
static size_t
conn_seq_line(struct conn *c, char *buf, size_t cap)
{
	char name[SIM_NAME_MAX + 16], label[16];
	int n, m;

	sim_vm_name(c->vm, name, sizeof name);
	sim_port_label(c->port, label, sizeof label);
	n = snprintf(buf, cap, "%s:%s %010" PRIu32, name, label, c->seq);
	if (n < 0 || (size_t)n >= cap)
		return (0);
	m = snprintf(buf + n, cap - n, " %08" PRIx32 "\r\n",
	    fnv1a32(2166136261u, buf, (size_t)n));
	if (m < 0 || (size_t)(n + m) >= cap)
		return (0);
	return ((size_t)(n + m));
}

/* Generate up to len console bytes of the configured mode into out. */
static size_t
conn_generate(struct conn *c, uint8_t *out, size_t len)
{
	char line[SIM_LINE_MAX];
	size_t done, llen, take, i;

	done = 0;
	switch (sim.mode) {
	case MODE_BYTES:
		for (i = 0; i < len; i++)
			out[i] = c->next_byte++;
		done = len;
		break;
	case MODE_SEQ:
		while (done < len) {
			llen = conn_seq_line(c, line, sizeof line);
			if (llen == 0 || c->line_off >= llen)
				break;
			take = llen - c->line_off;
			if (take > len - done)
				take = len - done;
			memcpy(out + done, line + c->line_off, take);
			done += take;
			c->line_off += take;
			if (c->line_off == llen) {
				c->line_off = 0;
				c->seq++;
			}
		}
		break;
	case MODE_NONE:
		break;
	}
	return (done);
}

/* Emit len bytes of generated output, as far as the send cap allows. */
static void
conn_output(struct conn *c, uint64_t len)
{
	size_t queued, room, n;

	if (c->stunned || c->link == NULL)
		return;
	queued = link_queued(c->link);
	if (queued >= sim.out_cap)
		return;
	room = sim.out_cap - queued;
	if (len > room)
		len = room;
	while (len > 0) {
		n = len < SIM_CHUNK ? (size_t)len : SIM_CHUNK;
		n = conn_generate(c, gen_buf, n);
		if (n == 0)
			break;
		conn_send_console(c, gen_buf, n);
		len -= n;
	}
}

/* Offer WILL COM-PORT, as ESXi does after DO-PROXY (or PEER). */
static void
link_offer_comport(struct link *l)
{
	l->flags |= LINK_F_COMPORT;
	telnet_request(&l->tn, TELOPT_COMPORT, true, true);
}

/*
 * A destination's hello (PROTOCOL-VMWARE.md 4.4): KS-1, VMOTION-PEER with
 * seq || secret and WILL COM-PORT, queued together so they leave in one
 * segment; no DO-PROXY.
 */
static void
link_send_dest_hello(struct link *l)
{
	struct vmo *v = l->vmo;
	uint8_t cookie[VMWEXT_COOKIE_MAX];
	size_t i;

	link_send_vmwext(l, VMWEXT_KNOWN_SUBOPTIONS_1, esxi_ks1,
	    sizeof esxi_ks1, NULL, 0);
	if (v != NULL && !(v->opts & VO_NOPEER)) {
		memcpy(cookie, v->cookie, v->cookielen);
		if (v->opts & VO_BADSECRET) {
			for (i = v->seqlen; i < v->cookielen; i++)
				cookie[i] ^= 0xff;
		}
		link_send_vmwext(l, VMWEXT_VMOTION_PEER, cookie, v->cookielen,
		    NULL, 0);
	}
	link_offer_comport(l);
}

/* Send KNOWN-SUBOPTIONS-1 and DO-PROXY in one write, as ESXi does. */
static void
link_send_ks1(struct link *l)
{
	struct conn *c = l->c;
	char uri[SIM_URI_MAX + 32];
	size_t ulen;

	if (l->flags & LINK_F_KS1)
		return;
	l->flags |= LINK_F_KS1;
	l->proxy_us = now_us();
	if (l->role == LINK_DEST) {
		link_send_dest_hello(l);
		return;
	}
	ulen = sim_port_uri(c->port, uri, sizeof uri);
	link_send_vmwext(l, VMWEXT_KNOWN_SUBOPTIONS_1, esxi_ks1,
	    sizeof esxi_ks1, NULL, 0);
	link_send_vmwext(l, VMWEXT_DO_PROXY, "S", 1, uri, ulen);
	if (sim.early_data > 0 && sim.mode != MODE_NONE && c->link == l)
		conn_output(c, sim.early_data);
	if (sim.comport_delay_us == 0)
		link_offer_comport(l);
}

/* Handle one option 232 subnegotiation from the proxy. */
static void
link_vmwext(struct link *l, const uint8_t *sb, size_t len)
{
	struct conn *c = l->c;
	struct vmwext_msg m;
	char text[SIM_NAME_MAX + 48];
	uint8_t code;
	int rc;

	rc = vmwext_decode(sb, len, &m);
	if (rc == VMWEXT_EMPTY)
		return;
	if (sim.verbose)
		sim_warnx("vm %" PRIu32 " port %u%s: < %s (%zu bytes)", c->vm,
		    (unsigned)c->port, l->role == LINK_DEST ? " (dest)" : "",
		    vmwext_cmd_name(m.cmd), m.len);
	if (rc == VMWEXT_UNKNOWN) {
		code = m.cmd;
		link_send_vmwext(l, VMWEXT_UNKNOWN_SUBOPTION_RCVD_1, &code, 1,
		    NULL, 0);
		return;
	}
	if (rc != VMWEXT_OK) {
		if (m.cmd == VMWEXT_VMOTION_GOAHEAD ||
		    m.cmd == VMWEXT_VMOTION_NOTNOW ||
		    m.cmd == VMWEXT_VMOTION_PEER_OK)
			vmo_anomaly(c, "%s with a bad length",
			    vmwext_cmd_name(m.cmd));
		return;
	}
	switch (m.cmd) {
	case VMWEXT_KNOWN_SUBOPTIONS_2:
		link_send_ks1(l);
		break;
	case VMWEXT_GET_VM_VC_UUID:
		sim_uuid_text(c->vm, 0, text);
		link_send_vmwext(l, VMWEXT_VM_VC_UUID, text, strlen(text),
		    NULL, 0);
		break;
	case VMWEXT_GET_VM_BIOS_UUID:
		sim_uuid_text(c->vm, 1, text);
		link_send_vmwext(l, VMWEXT_VM_BIOS_UUID, text, strlen(text),
		    NULL, 0);
		break;
	case VMWEXT_GET_VM_LOCATION_UUID:
		sim_uuid_text(c->vm, 2, text);
		link_send_vmwext(l, VMWEXT_VM_LOCATION_UUID, text,
		    strlen(text), NULL, 0);
		break;
	case VMWEXT_GET_VM_NAME:
		sim_vm_name(c->vm, text, sizeof text);
		link_send_vmwext(l, VMWEXT_VM_NAME, text, strlen(text),
		    NULL, 0);
		break;
	case VMWEXT_WILL_PROXY:
		if (l->flags & LINK_F_READY)
			break;
		l->flags |= LINK_F_READY;
		l->flags &= ~LINK_F_REFUSED;
		if (!sim.quiet && l->role == LINK_MAIN)
			sim_event("ready %" PRIu32 " %u", c->vm,
			    (unsigned)c->port);
		break;
	case VMWEXT_WONT_PROXY:
		l->flags |= LINK_F_REFUSED;
		if (l->role == LINK_MAIN)
			sim_event("refused %" PRIu32 " %u", c->vm,
			    (unsigned)c->port);
		break;
	case VMWEXT_VMOTION_GOAHEAD:
	case VMWEXT_VMOTION_NOTNOW:
	case VMWEXT_VMOTION_PEER_OK:
		vmo_message(l, m.cmd, m.payload, m.len);
		break;
	default:
		/* Known to ESXi but nothing a host must answer. */
		break;
	}
}

/*
 * Account console bytes from the proxy; collect and echo them if asked.
 * Bytes where a correct proxy sends none (a source after GOAHEAD until the
 * vMotion ends, a destination before COMPLETE, a retired source) are
 * counted in recv_during; a retired source's bytes never reach the VM.
 */
static void
conn_console_input(struct link *l, const uint8_t *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	struct conn *c = l->c;
	struct vmo *v = c->vmo;
	char pair[2];
	size_t i;

	if (l->role != LINK_MAIN || (v != NULL && v->src == l &&
	    v->cookielen > 0))
		c->recv_during += len;
	else if (v != NULL && v->src == l)
		c->recv_pre_goahead += len;
	if (l->role == LINK_OLD)
		return;
	c->received += len;
	c->recv_fnv = fnv1a32(c->recv_fnv, buf, len);
	if (sim.print_recv) {
		for (i = 0; i < len; i++) {
			pair[0] = hex[buf[i] >> 4];
			pair[1] = hex[buf[i] & 0xf];
			evbuffer_add(sim.recv_hex, pair, sizeof pair);
		}
	}
	if (sim.echo)
		conn_send_console(c, buf, len);
}

/* Print the console input collected during one read as a recv line. */
static void
conn_flush_recv(struct conn *c)
{
	size_t len;

	if (!sim.print_recv || (len = evbuffer_get_length(sim.recv_hex)) == 0)
		return;
	printf("recv %" PRIu32 " %u ", c->vm, (unsigned)c->port);
	fwrite(evbuffer_pullup(sim.recv_hex, -1), 1, len, stdout);
	putchar('\n');
	fflush(stdout);
	evbuffer_drain(sim.recv_hex, len);
}

/* Name a negotiation command for the verbose trace. */
static const char *
neg_name(uint8_t cmd)
{
	switch (cmd) {
	case TELNET_WILL:
		return ("WILL");
	case TELNET_WONT:
		return ("WONT");
	case TELNET_DO:
		return ("DO");
	case TELNET_DONT:
		return ("DONT");
	}
	return ("?");
}

/* React to one event of the link's telnet codec. */
static void
link_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct link *l = arg;
	struct conn *c = l->c;

	if (l->dead)
		return;
	switch (ev->type) {
	case TELNET_EV_SEND:
		link_write(l, ev->data, ev->len);
		break;
	case TELNET_EV_DATA:
		conn_console_input(l, ev->data, ev->len);
		break;
	case TELNET_EV_NEG:
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: < %s %u", c->vm,
			    (unsigned)c->port, neg_name(ev->cmd),
			    (unsigned)ev->opt);
		break;
	case TELNET_EV_OPTION:
		if (!ev->us)
			break;
		if (ev->opt == TELOPT_VMWARE && ev->enabled &&
		    !(l->flags & LINK_F_EXT)) {
			l->flags |= LINK_F_EXT;
			l->ext_us = now_us();
		} else if (ev->opt == TELOPT_AUTH && ev->enabled) {
			/* We cannot authenticate: take the offer back. */
			telnet_request(&l->tn, TELOPT_AUTH, true, false);
		}
		break;
	case TELNET_EV_SB:
		if (ev->opt == TELOPT_VMWARE)
			link_vmwext(l, ev->data, ev->len);
		break;
	case TELNET_EV_ERROR:
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: telnet error %d",
			    c->vm, (unsigned)c->port, (int)ev->err);
		break;
	case TELNET_EV_CMD:
		break;
	}
}

/* Read what the proxy sent and feed it through the codec. */
static void
link_read_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;
	struct conn *c = l->c;
	struct evbuffer *in = bufferevent_get_input(bev);
	int n;

	while (evbuffer_get_length(in) > 0) {
		n = evbuffer_remove(in, read_buf, sizeof read_buf);
		if (n <= 0)
			break;
		l->in_input = true;
		telnet_input(&l->tn, read_buf, (size_t)n);
		l->in_input = false;
		conn_flush_recv(c);
		if (l->dead) {
			link_free(l);
			return;
		}
		if (link_queued(l) >= sim.out_cap) {
			/* Echo and replies would grow without bound. */
			l->flags |= LINK_F_RDOFF;
			bufferevent_disable(bev, EV_READ);
			break;
		}
	}
}

/* Resume reading once the send queue drained below the low mark. */
static void
link_write_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;

	if ((l->flags & LINK_F_RDOFF) && link_queued(l) <= sim.out_cap / 2) {
		l->flags &= ~LINK_F_RDOFF;
		bufferevent_enable(bev, EV_READ);
	}
}

/* The peer closed a link, or it failed. */
static void
link_lost(struct link *l, const char *why)
{
	struct conn *c = l->c;

	switch (l->role) {
	case LINK_MAIN:
		if (c->vmo != NULL && c->vmo->src == l)
			vmo_src_lost(c->vmo, why);
		else
			conn_close(c, why, true);
		break;
	case LINK_DEST:
		vmo_dst_lost(l->vmo, why);
		break;
	case LINK_OLD:
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: old source: %s",
			    c->vm, (unsigned)c->port, why);
		TAILQ_REMOVE(&sim.oldq, l, entry);
		link_free(l);
		break;
	}
}

/* --tls: TCP is up; put the TLS filter on and start the handshake. */
static int
link_tls_start(struct link *l)
{
	struct bufferevent *tb;

	if ((tb = simtls_wrap(sim.base, l->raw)) == NULL)
		return (-1);
	l->bev = tb;
	l->flags |= LINK_F_TLS;
	bufferevent_setcb(tb, link_read_cb, link_write_cb, link_event_cb, l);
	bufferevent_setwatermark(tb, EV_WRITE, sim.out_cap / 2, 0);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	return (0);
}

/* --tls: the handshake of a link failed; report and count it. */
static void
link_tls_failed(struct link *l, short what)
{
	struct conn *c = l->c;
	char why[512];

	sim.tls_failed++;
	if (what & BEV_EVENT_EOF)
		strlcpy(why, "connection closed by peer", sizeof why);
	else
		simtls_why(l->bev, why, sizeof why);
	sim_warnx("vm %" PRIu32 " port %u: tls: handshake failed: %s",
	    c->vm, (unsigned)c->port, why);
	if (!sim.quiet)
		sim_event("tls-failed %" PRIu32 " %u %s", c->vm,
		    (unsigned)c->port, why);
	link_lost(l, "tls: handshake failed");
}

/* Handle connect completion, EOF and errors. */
static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct link *l = arg;
	struct conn *c = l->c;
	int fd, one = 1;

	if ((what & BEV_EVENT_CONNECTED) && sim.tls &&
	    !(l->flags & LINK_F_TLS)) {
		if (link_tls_start(l) != 0)
			link_lost(l, "tls: cannot set up");
		return;
	}
	if ((l->flags & LINK_F_TLS) && !(l->flags & LINK_F_TLSUP)) {
		if (!(what & BEV_EVENT_CONNECTED)) {
			link_tls_failed(l, what);
			return;
		}
		l->flags |= LINK_F_TLSUP;
		sim.tls_ok++;
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: tls: %s", c->vm,
			    (unsigned)c->port, simtls_version(bev));
	}
	if (what & BEV_EVENT_CONNECTED) {
		if (l->role == LINK_MAIN) {
			c->state = CONN_OPEN;
			TAILQ_INSERT_TAIL(&sim.openq, c, entry);
		}
		fd = bufferevent_getfd(l->raw);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* ESXi's first bytes: IAC WILL AUTHENTICATION. */
		telnet_request(&l->tn, TELOPT_AUTH, true, true);
		if (sim.offer_ext)
			telnet_request(&l->tn, TELOPT_VMWARE, true, true);
		return;
	}
	if (what & BEV_EVENT_EOF)
		link_lost(l, "closed by peer");
	else if (what & BEV_EVENT_ERROR)
		link_lost(l, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
}

/* Put a closed connection on the connect queue. */
static void
conn_queue(struct conn *c)
{
	if (c->state != CONN_IDLE)
		return;
	c->state = CONN_QUEUED;
	TAILQ_INSERT_TAIL(&sim.connq, c, entry);
}

/* Schedule the automatic reopen of an idle port (--reconnect). */
static void
conn_auto_reopen(struct conn *c)
{
	if (sim.reconnect_us < 0 || c->state != CONN_IDLE)
		return;
	c->state = CONN_DELAYED;
	c->due_us = now_us() + (uint64_t)sim.reconnect_us;
	TAILQ_INSERT_TAIL(&sim.delayq, c, entry);
}

/* Take the port off the queue its state puts it on; it is then idle. */
static void
conn_unlist(struct conn *c)
{
	switch (c->state) {
	case CONN_QUEUED:
		TAILQ_REMOVE(&sim.connq, c, entry);
		break;
	case CONN_DELAYED:
		TAILQ_REMOVE(&sim.delayq, c, entry);
		break;
	case CONN_OPEN:
		TAILQ_REMOVE(&sim.openq, c, entry);
		break;
	default:
		break;
	}
	c->state = CONN_IDLE;
}

/*
 * End the connection (if any) and print "closed". auto_reopen: the end was
 * not asked for, so --reconnect applies. A vMotion under way is cancelled.
 */
static void
conn_close(struct conn *c, const char *why, bool auto_reopen)
{
	bool had = c->link != NULL;

	if (c->vmo != NULL)
		vmo_cancel(c->vmo);
	conn_unlist(c);
	if (c->link != NULL) {
		link_free(c->link);
		c->link = NULL;
	}
	if (had) {
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: %s", c->vm,
			    (unsigned)c->port, why);
		if (!sim.quiet)
			sim_event("closed %" PRIu32 " %u", c->vm,
			    (unsigned)c->port);
	}
	if (auto_reopen)
		conn_auto_reopen(c);
}

/*
 * Make a link of port c and start connecting it from the next address of
 * the given source list (if any). Returns the link, or NULL when out of
 * file descriptors or the connect failed at once.
 */
static struct link *
link_connect(struct conn *c, enum link_role role,
    struct sockaddr_storage *srcs, socklen_t *lens, size_t nsrcs,
    size_t *next)
{
	struct bufferevent *bev;
	struct link *l;
	evutil_socket_t fd;
	int one = 1;

	fd = socket(sim.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		if ((errno == EMFILE || errno == ENFILE) && !sim.warned_fd) {
			sim.warned_fd = true;
			sim_warnx("out of file descriptors; raise the limit");
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			return (NULL);
		sim_fatalx("socket: %s", strerror(errno));
	}
	if (nsrcs > 0) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* Let connect() pick the port per (source, target). */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
#endif
		if (bind(fd, (struct sockaddr *)&srcs[*next], lens[*next]) ==
		    -1) {
			sim_warnx("bind source %zu: %s", *next,
			    strerror(errno));
			close(fd);
			return (NULL);
		}
		*next = (*next + 1) % nsrcs;
	}
	bev = bufferevent_socket_new(sim.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return (NULL);
	}
	l = xcalloc(1, sizeof *l);
	l->c = c;
	l->role = role;
	l->bev = l->raw = bev;
	telnet_init(&l->tn, link_telnet_cb, l);
	telnet_set_accept(&l->tn, TELOPT_BINARY, true, true);
	telnet_set_accept(&l->tn, TELOPT_SGA, true, true);
	telnet_set_accept(&l->tn, TELOPT_ECHO, true, true);
	telnet_set_accept(&l->tn, TELOPT_VMWARE, true, false);
	bufferevent_setcb(bev, link_read_cb, link_write_cb, link_event_cb, l);
	bufferevent_setwatermark(bev, EV_WRITE, sim.out_cap / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&sim.target,
	    sim.target_len) != 0) {
		link_free(l);
		return (NULL);
	}
	return (l);
}

/*
 * Start connecting the port. Returns 0, or -1 when out of file descriptors
 * (the port stays queued and is tried again on a later tick).
 */
static int
conn_open(struct conn *c)
{
	struct link *l;

	l = link_connect(c, LINK_MAIN, sim.sources, sim.source_lens,
	    sim.nsources, &sim.next_source);
	if (l == NULL) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			return (-1);
		conn_close(c, "connect failed", true);
		return (0);
	}
	c->link = l;
	c->state = CONN_CONNECTING;
	return (0);
}

/* -- vMotion ---------------------------------------------------------- */

/* xorshift64*: the simulator's only randomness (--seed). */
static uint64_t
rng_next(void)
{
	sim.rng ^= sim.rng >> 12;
	sim.rng ^= sim.rng << 25;
	sim.rng ^= sim.rng >> 27;
	return (sim.rng * 2685821657736338717ULL);
}

/* A uniform integer below n (n > 0). */
static uint32_t
rng_below(uint32_t n)
{
	return ((uint32_t)((rng_next() >> 32) % n));
}

/* A uniform double in [0, 1). */
static double
rng_unit(void)
{
	return ((double)(rng_next() >> 11) / 9007199254740992.0);
}

/* Report something a correct proxy would not have done. */
static void
vmo_anomaly(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	sim.vmo_anomalies++;
	va_start(ap, fmt);
	fprintf(stderr, "vspc-sim: vm %" PRIu32 " port %u: vMotion: ",
	    c->vm, (unsigned)c->port);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Arm the vMotion's one timer. */
static void
vmo_arm(struct vmo *v, uint32_t ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(v->timer, &tv);
}

/* Print the end of a storm (and stop if --storm ran without --control). */
static void
storm_check_done(void)
{
	struct evbuffer *out;
	size_t i;

	if (!sim.storm_on || sim.storm_ended < sim.storm_total)
		return;
	sim.storm_on = false;
	if ((out = evbuffer_new()) == NULL)
		sim_fatalx("out of memory");
	evbuffer_add_printf(out, "storm done %" PRIu32 " %" PRIu64,
	    sim.storm_total, (now_us() - sim.storm_t0_us) / 1000);
	for (i = 0; i < VMO_NOUTCOMES; i++)
		evbuffer_add_printf(out, " %s=%" PRIu32, vmo_outcome_names[i],
		    sim.storm_outcomes[i]);
	evbuffer_add(out, "", 1);
	sim_event("%s", (char *)evbuffer_pullup(out, -1));
	evbuffer_free(out);
	if (sim.storm_exit)
		event_base_loopexit(sim.base, NULL);
}

/*
 * The one end of a vMotion: print the outcome, drop the destination if it
 * did not take over, and let the port run again where its link now is.
 */
static void
vmo_end(struct vmo *v, enum vmo_outcome outcome)
{
	struct conn *c = v->c;
	struct link *d = v->dst;
	uint64_t ms = (now_us() - v->t0_us) / 1000;

	evtimer_del(v->timer);
	event_free(v->timer);
	TAILQ_REMOVE(&sim.vmoq, v, entry);
	c->vmo = NULL;
	if (d != NULL) {
		v->dst = NULL;
		d->vmo = NULL;
		link_free(d);
	}
	sim.vmo_outcomes[outcome]++;
	sim_event("vmotion %" PRIu32 " %u %s %" PRIu64, c->vm,
	    (unsigned)c->port, vmo_outcome_names[outcome], ms);
	conn_unstun(c);
	if (c->link == NULL && c->state == CONN_IDLE)
		conn_auto_reopen(c);
	if (v->storm) {
		sim.storm_ended++;
		sim.storm_outcomes[outcome]++;
	}
	explicit_bzero(v->cookie, sizeof v->cookie);
	free(v);
	storm_check_done();
}

/* Fail back to the source: ABORT on it if asked, resume output there. */
static void
vmo_fail(struct vmo *v, bool abort, enum vmo_outcome outcome)
{
	if (v->src == NULL) {
		vmo_end(v, VMO_LOST);
		return;
	}
	if (abort)
		link_send_vmwext(v->src, VMWEXT_VMOTION_ABORT, NULL, 0, NULL,
		    0);
	vmo_end(v, outcome);
}

/* The source link goes away (die-src, or closed by the proxy). */
static void
vmo_src_gone(struct vmo *v, const char *why)
{
	struct conn *c = v->c;
	struct link *l = v->src;

	v->src = NULL;
	if (c->link == l) {
		c->link = NULL;
		conn_unlist(c);
	}
	link_free(l);
	if (why != NULL) {
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: %s", c->vm,
			    (unsigned)c->port, why);
		if (!sim.quiet)
			sim_event("closed %" PRIu32 " %u", c->vm,
			    (unsigned)c->port);
	}
}

/* The proxy closed the source during the vMotion (E7 seen from ESXi). */
static void
vmo_src_lost(struct vmo *v, const char *why)
{
	vmo_src_gone(v, why);
	/* Before a destination exists nothing can complete any more. */
	if (v->step == VMO_BEGIN || v->step == VMO_ABORT_WAIT)
		vmo_end(v, VMO_LOST);
}

/* The destination closed or failed before COMPLETE. */
static void
vmo_dst_lost(struct vmo *v, const char *why)
{
	if (v == NULL)
		return;
	vmo_anomaly(v->c, "destination %s before COMPLETE", why);
	if (v->dst != NULL) {
		v->dst->vmo = NULL;
		link_free(v->dst);
		v->dst = NULL;
	}
	vmo_fail(v, true, VMO_FAILED);
}

/* Connect the destination host's link (after GOAHEAD). */
static void
vmo_connect_dst(struct vmo *v)
{
	struct link *l;

	v->step = VMO_DEST;
	if (sim.ndsources > 0)
		l = link_connect(v->c, LINK_DEST, sim.dsources,
		    sim.dsource_lens, sim.ndsources, &sim.next_dsource);
	else
		l = link_connect(v->c, LINK_DEST, sim.sources,
		    sim.source_lens, sim.nsources, &sim.next_source);
	if (l == NULL) {
		vmo_anomaly(v->c, "destination connect failed");
		vmo_fail(v, true, VMO_FAILED);
		return;
	}
	l->vmo = v;
	v->dst = l;
	vmo_arm(v, v->limit_ms);
}

/* PEER-OK: COMPLETE on the destination, the source closes, switch over. */
static void
vmo_complete(struct vmo *v)
{
	struct conn *c = v->c;
	struct link *src = v->src, *dst = v->dst;

	evtimer_del(v->timer);
	if (src != NULL && v->fin == FIN_FIRST) {
		/* The capture's usual order: the source's FIN first. */
		vmo_src_gone(v, NULL);
		src = NULL;
	}
	link_send_vmwext(dst, VMWEXT_VMOTION_COMPLETE, v->cookie, v->seqlen,
	    NULL, 0);
	link_flush_now(dst);
	if (src != NULL && v->fin == FIN_LAST) {
		vmo_src_gone(v, NULL);
		src = NULL;
	}
	if (src != NULL) {
		/* fin=never: the proxy closes it after its drain time. */
		v->src = NULL;
		src->role = LINK_OLD;
		TAILQ_INSERT_TAIL(&sim.oldq, src, entry);
		if (c->link == src) {
			c->link = NULL;
			conn_unlist(c);
		}
	}
	v->dst = NULL;
	dst->vmo = NULL;
	dst->role = LINK_MAIN;
	dst->flags |= LINK_F_READY | LINK_F_COMPORT;
	c->link = dst;
	if (c->state != CONN_OPEN) {
		conn_unlist(c);
		c->state = CONN_OPEN;
		TAILQ_INSERT_TAIL(&sim.openq, c, entry);
	}
	c->vmotions++;
	vmo_end(v, VMO_COMPLETED);
}

/* GOAHEAD, NOTNOW or PEER-OK on a link of a port. */
static void
vmo_message(struct link *l, uint8_t cmd, const uint8_t *p, size_t len)
{
	struct conn *c = l->c;
	struct vmo *v = l->role == LINK_DEST ? l->vmo : c->vmo;

	if (v == NULL) {
		vmo_anomaly(c, "%s with no vMotion", vmwext_cmd_name(cmd));
		return;
	}
	switch (cmd) {
	case VMWEXT_VMOTION_GOAHEAD:
		if (l != v->src || v->step != VMO_BEGIN ||
		    len <= v->seqlen || len > sizeof v->cookie ||
		    memcmp(p, v->cookie, v->seqlen) != 0) {
			vmo_anomaly(c, "unexpected GOAHEAD (%zu bytes)", len);
			return;
		}
		memcpy(v->cookie, p, len);
		v->cookielen = len;
		evtimer_del(v->timer);
		if (v->opts & VO_DIE_SRC)
			vmo_src_gone(v, NULL);
		if ((v->opts & VO_ABORT) && !(v->opts & VO_NOPEER)) {
			v->step = VMO_ABORT_WAIT;
			vmo_arm(v, v->delay_ms);
			return;
		}
		vmo_connect_dst(v);
		break;
	case VMWEXT_VMOTION_NOTNOW:
		if (l != v->src || v->step != VMO_BEGIN || len != v->seqlen ||
		    memcmp(p, v->cookie, len) != 0) {
			vmo_anomaly(c, "unexpected NOTNOW (%zu bytes)", len);
			return;
		}
		/* E1: the vMotion fails; no ABORT; the source goes on. */
		vmo_end(v, VMO_NOTNOW);
		break;
	case VMWEXT_VMOTION_PEER_OK:
		if (l != v->dst || v->step != VMO_DEST || len != v->seqlen ||
		    memcmp(p, v->cookie, len) != 0) {
			vmo_anomaly(c, "unexpected PEER-OK (%zu bytes)", len);
			return;
		}
		if (v->opts & (VO_BADSECRET | VO_NOPEER)) {
			vmo_anomaly(c, "PEER-OK for a bad or missing PEER");
			vmo_fail(v, true, VMO_FAILED);
			return;
		}
		if (v->opts & (VO_ABORT_PEER | VO_DIE_DST)) {
			evtimer_del(v->timer);
			v->step = VMO_FAIL_DST;
			vmo_arm(v, v->delay_ms);
			return;
		}
		vmo_complete(v);
		break;
	}
}

/* The vMotion's deadline or delay passed. */
static void
vmo_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vmo *v = arg;
	struct link *d;

	switch (v->step) {
	case VMO_BEGIN:
		/* E2: no GOAHEAD within vmotionLimit; no ABORT. */
		vmo_fail(v, false, VMO_TIMEOUT);
		break;
	case VMO_ABORT_WAIT:
		/* E3. */
		vmo_fail(v, true, VMO_ABORTED);
		break;
	case VMO_DEST:
		if (v->opts & VO_BADSECRET)
			vmo_fail(v, true, VMO_REJECTED);
		else if (v->opts & VO_NOPEER)
			vmo_fail(v, (v->opts & VO_ABORT) != 0,
			    (v->opts & VO_ABORT) ? VMO_ABORTED : VMO_GAVEUP);
		else {
			vmo_anomaly(v->c, "no PEER-OK within %" PRIu32 " ms",
			    v->limit_ms);
			vmo_fail(v, true, VMO_FAILED);
		}
		break;
	case VMO_FAIL_DST:
		/* E4 / E9: the destination fails after PEER-OK. */
		if ((v->opts & VO_DIE_DST) && (d = v->dst) != NULL) {
			v->dst = NULL;
			d->vmo = NULL;
			link_free(d);
		}
		vmo_fail(v, true, VMO_ABORTED);
		break;
	}
}

/* Drop a vMotion because its port is being closed (command or exit). */
static void
vmo_cancel(struct vmo *v)
{
	v->src = NULL;
	vmo_end(v, VMO_CANCELLED);
}

/* True if the port can start a vMotion now. */
static bool
vmo_eligible(struct conn *c)
{
	return (c->vmo == NULL && c->state == CONN_OPEN && c->link != NULL &&
	    (c->link->flags & (LINK_F_READY | LINK_F_COMPORT)) ==
	    (LINK_F_READY | LINK_F_COMPORT));
}

/*
 * Stun the port and send VMOTION-BEGIN on its link. seq NULL: 4 random
 * bytes. Returns 0, or -1 if the port is busy or not ready.
 */
static int
vmo_start(struct conn *c, const uint8_t *seq, size_t seqlen, uint32_t opts,
    enum vmo_fin fin, uint32_t limit_ms, uint32_t delay_ms, bool storm)
{
	struct vmo *v;
	uint32_t r;

	if (!vmo_eligible(c))
		return (-1);
	v = xcalloc(1, sizeof *v);
	v->c = c;
	v->src = c->link;
	v->opts = opts;
	v->fin = (uint8_t)fin;
	v->limit_ms = limit_ms;
	v->delay_ms = delay_ms;
	v->storm = storm;
	v->step = VMO_BEGIN;
	v->t0_us = now_us();
	if (seq != NULL) {
		memcpy(v->cookie, seq, seqlen);
		v->seqlen = seqlen;
	} else {
		r = (uint32_t)(rng_next() >> 32);
		memcpy(v->cookie, &r, sizeof r);
		v->seqlen = sizeof r;
		/* Storms: at least one sequence in 8 holds an 0xFF. */
		if (storm && sim.storm_started % 8 == 0)
			v->cookie[rng_below(4)] = 0xff;
	}
	if ((v->timer = evtimer_new(sim.base, vmo_timer_cb, v)) == NULL)
		sim_fatalx("out of memory");
	TAILQ_INSERT_TAIL(&sim.vmoq, v, entry);
	c->vmo = v;
	sim.vmo_started++;
	/* The guest stops first; BEGIN follows everything it sent. */
	c->stunned = true;
	link_send_vmwext(v->src, VMWEXT_VMOTION_BEGIN, v->cookie, v->seqlen,
	    NULL, 0);
	vmo_arm(v, limit_ms);
	return (0);
}

/* Start a storm of n vMotions at about rate per second. */
static void
storm_start(uint32_t n, double rate, double faults)
{
	sim.storm_total = n;
	sim.storm_started = sim.storm_ended = 0;
	memset(sim.storm_outcomes, 0, sizeof sim.storm_outcomes);
	sim.storm_rate = rate > 0 ? rate : 1;
	sim.storm_faults = faults;
	sim.storm_t0_us = sim.storm_next_us = now_us();
	sim.storm_on = true;
	storm_check_done();
}

/* Pick a random port that can start a vMotion; NULL if none. */
static struct conn *
storm_pick(void)
{
	size_t i, k, start;

	for (i = 0; i < 32; i++) {
		k = rng_below((uint32_t)sim.nconns);
		if (vmo_eligible(&sim.conns[k]))
			return (&sim.conns[k]);
	}
	start = rng_below((uint32_t)sim.nconns);
	for (i = 0; i < sim.nconns; i++) {
		k = (start + i) % sim.nconns;
		if (vmo_eligible(&sim.conns[k]))
			return (&sim.conns[k]);
	}
	return (NULL);
}

/* Start the storm's vMotions that are due. */
static void
storm_tick(uint64_t now)
{
	static const uint32_t faults[] = {
		VO_ABORT, VO_ABORT_PEER, VO_NOPEER, VO_NOPEER | VO_ABORT,
		VO_BADSECRET, VO_DIE_SRC, VO_DIE_DST,
	};
	struct conn *c;
	enum vmo_fin fin;
	uint32_t opts, r;

	if (!sim.storm_on)
		return;
	if (now > sim.storm_next_us + 1000000)
		sim.storm_next_us = now;	/* no burst after a stall */
	while (sim.storm_started < sim.storm_total &&
	    now >= sim.storm_next_us) {
		if ((c = storm_pick()) == NULL) {
			sim.storm_next_us = now + SIM_TICK_US;
			break;
		}
		opts = 0;
		if (sim.storm_faults > 0 && rng_unit() < sim.storm_faults)
			opts = faults[rng_below(nitems(faults))];
		r = rng_below(10);
		fin = r < 6 ? FIN_FIRST : (r < 9 ? FIN_LAST : FIN_NEVER);
		if (vmo_start(c, NULL, 0, opts, fin, sim.vmo_limit_ms,
		    sim.vmo_delay_ms, true) != 0)
			break;
		sim.storm_started++;
		sim.storm_next_us += (uint64_t)(-log(1.0 - rng_unit()) /
		    sim.storm_rate * 1e6);
	}
}

/* Open queued connections, within --connect-rate and the per-pass cap. */
static void
sim_connect_pass(uint64_t now, double dt)
{
	struct conn *c;
	int n;

	while ((c = TAILQ_FIRST(&sim.delayq)) != NULL && c->due_us <= now) {
		TAILQ_REMOVE(&sim.delayq, c, entry);
		c->state = CONN_IDLE;
		conn_queue(c);
	}
	if (sim.connect_rate > 0) {
		sim.connect_credit += sim.connect_rate * dt;
		if (sim.connect_credit > sim.connect_rate)
			sim.connect_credit = sim.connect_rate;
		if (sim.connect_credit < 1 && sim.connect_credit + 1e-9 >= 1)
			sim.connect_credit = 1;
	}
	for (n = 0; n < SIM_CONNECTS_PER_PASS; n++) {
		if (sim.connect_rate > 0 && sim.connect_credit < 1)
			break;
		if ((c = TAILQ_FIRST(&sim.connq)) == NULL)
			break;
		TAILQ_REMOVE(&sim.connq, c, entry);
		c->state = CONN_IDLE;
		if (conn_open(c) == -1) {
			c->state = CONN_QUEUED;
			TAILQ_INSERT_HEAD(&sim.connq, c, entry);
			break;
		}
		if (sim.connect_rate > 0)
			sim.connect_credit -= 1;
	}
}

/* Return the output bytes every ready port may send this tick. */
static uint64_t
sim_output_quantum(uint64_t now)
{
	uint64_t elapsed, target, q;

	if (sim.rate == 0 || sim.mode == MODE_NONE)
		return (0);
	elapsed = now - sim.out_t0_us;
	if (elapsed >= 1000000) {
		/* Roll the second; lose at most one tick's rounding. */
		q = sim.rate - sim.out_given;
		sim.out_t0_us += 1000000;
		sim.out_given = 0;
		if (now - sim.out_t0_us >= 1000000)
			sim.out_t0_us = now;
		return (q);
	}
	target = sim.rate * elapsed / 1000000;
	q = target - sim.out_given;
	sim.out_given = target;
	return (q);
}

/* The KS-1 fallback and the delayed COM-PORT offer of one link. */
static void
link_tick(struct link *l, uint64_t now)
{
	if ((l->flags & (LINK_F_EXT | LINK_F_KS1)) == LINK_F_EXT &&
	    now - l->ext_us >= sim.ks1_wait_us)
		link_send_ks1(l);
	if ((l->flags & (LINK_F_KS1 | LINK_F_COMPORT)) == LINK_F_KS1 &&
	    now - l->proxy_us >= sim.comport_delay_us)
		link_offer_comport(l);
}

/* Run the periodic work: connects, negotiation delays, output, storm. */
static void
sim_tick(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c, *next;
	struct vmo *v;
	struct link *l;
	uint64_t now, quantum;
	double dt;

	now = now_us();
	dt = (double)(now - sim.last_tick_us) / 1e6;
	sim.last_tick_us = now;
	sim_connect_pass(now, dt);
	quantum = sim_output_quantum(now);
	for (c = TAILQ_FIRST(&sim.openq); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if ((l = c->link) == NULL)
			continue;
		link_tick(l, now);
		if (quantum > 0 && (l->flags & (LINK_F_READY |
		    LINK_F_COMPORT)) == (LINK_F_READY | LINK_F_COMPORT))
			conn_output(c, quantum);
	}
	TAILQ_FOREACH(v, &sim.vmoq, entry) {
		if (v->dst != NULL && !v->dst->dead)
			link_tick(v->dst, now);
	}
	storm_tick(now);
}

/* Find the connection of (vm, port) named by two words; NULL if none. */
static struct conn *
ctl_find(const char *vs, const char *ps)
{
	const char *err;
	long long vm, port;

	if (vs == NULL || ps == NULL)
		return (NULL);
	vm = strtonum(vs, 0, (long long)sim.vms - 1, &err);
	if (err != NULL)
		return (NULL);
	port = strtonum(ps, 0, (long long)sim.ports - 1, &err);
	if (err != NULL)
		return (NULL);
	return (&sim.conns[(size_t)vm * sim.ports + (size_t)port]);
}

/* Return the value of a hex digit, or -1. */
static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return (ch - '0');
	if (ch >= 'a' && ch <= 'f')
		return (ch - 'a' + 10);
	if (ch >= 'A' && ch <= 'F')
		return (ch - 'A' + 10);
	return (-1);
}

/* Decode a hex string in place; return the byte count or -1. */
static ssize_t
ctl_unhex(char *s)
{
	size_t i, n;
	int hi, lo;

	n = strlen(s);
	if (n % 2 != 0)
		return (-1);
	for (i = 0; i < n / 2; i++) {
		hi = hexval((unsigned char)s[2 * i]);
		lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return (-1);
		((uint8_t *)s)[i] = (uint8_t)(hi << 4 | lo);
	}
	return ((ssize_t)(n / 2));
}

/* Print the status line, for every port or for one VM / one port. */
static void
ctl_status(const char *vs, const char *ps)
{
	struct evbuffer *out;
	struct conn *c;
	struct vmo *v;
	const char *err;
	size_t i, k, n, first, last;
	uint64_t during;
	long long vm;

	first = 0;
	last = sim.nconns;
	if (vs != NULL && ps != NULL) {
		if ((c = ctl_find(vs, ps)) == NULL) {
			sim_warnx("status: no such port");
			return;
		}
		first = (size_t)(c - sim.conns);
		last = first + 1;
	} else if (vs != NULL) {
		vm = strtonum(vs, 0, (long long)sim.vms - 1, &err);
		if (err != NULL) {
			sim_warnx("status: no such vm");
			return;
		}
		first = (size_t)vm * sim.ports;
		last = first + sim.ports;
	}
	if ((out = evbuffer_new()) == NULL)
		sim_fatalx("out of memory");
	evbuffer_add_printf(out, "status {\"ports\":[");
	for (i = first; i < last; i++) {
		c = &sim.conns[i];
		evbuffer_add_printf(out, "%s{\"vm\":%" PRIu32 ",\"port\":%u,"
		    "\"connected\":%s,\"ready\":%s,\"sent\":%" PRIu64 ","
		    "\"received\":%" PRIu64 ",\"recv_fnv\":\"%08" PRIx32 "\","
		    "\"vmotion\":\"%s\",\"vmotions\":%" PRIu64 ","
		    "\"recv_during_vmotion\":%" PRIu64 ","
		    "\"recv_before_goahead\":%" PRIu64 "}",
		    i == first ? "" : ",", c->vm, (unsigned)c->port,
		    c->state == CONN_OPEN ? "true" : "false",
		    (c->link != NULL && (c->link->flags & LINK_F_READY)) ?
		    "true" : "false",
		    c->sent, c->received, c->recv_fnv,
		    c->vmo == NULL ? "idle" : vmo_step_names[c->vmo->step],
		    c->vmotions, c->recv_during, c->recv_pre_goahead);
	}
	evbuffer_add_printf(out, "],\"vmotions\":{\"started\":%" PRIu64,
	    sim.vmo_started);
	for (k = 0; k < VMO_NOUTCOMES; k++)
		evbuffer_add_printf(out, ",\"%s\":%" PRIu64,
		    vmo_outcome_names[k], sim.vmo_outcomes[k]);
	during = 0;
	for (i = 0; i < sim.nconns; i++)
		during += sim.conns[i].recv_during;
	n = 0;
	TAILQ_FOREACH(v, &sim.vmoq, entry)
		n++;
	evbuffer_add_printf(out, ",\"in_progress\":%zu,\"anomalies\":%"
	    PRIu64 "},\"recv_during_vmotion\":%" PRIu64 ",\"storm\":{"
	    "\"total\":%" PRIu32 ",\"started\":%" PRIu32 ",\"ended\":%"
	    PRIu32 ",\"running\":%s}", n, sim.vmo_anomalies, during,
	    sim.storm_total, sim.storm_started, sim.storm_ended,
	    sim.storm_on ? "true" : "false");
	if (sim.tls)
		evbuffer_add_printf(out, ",\"tls\":{\"handshakes\":%" PRIu64
		    ",\"failed\":%" PRIu64 "}", sim.tls_ok, sim.tls_failed);
	evbuffer_add_printf(out, "}\n");
	fwrite(evbuffer_pullup(out, -1), 1, evbuffer_get_length(out), stdout);
	fflush(stdout);
	evbuffer_free(out);
}

/*
 * vmotion V P [seq=HEX] [limit=MS] [delay=MS] [fin=first|last|never]
 * [abort] [abort-after-peer] [nopeer] [badsecret] [die-src] [die-dst]
 */
static void
ctl_vmotion(struct conn *c, int argc, char **argv)
{
	uint8_t seq[VMO_SEQ_MAX];
	const char *err;
	enum vmo_fin fin = FIN_FIRST;
	uint32_t opts = 0, limit = sim.vmo_limit_ms, delay = sim.vmo_delay_ms;
	size_t seqlen = 0;
	ssize_t n;
	int i;

	for (i = 3; i < argc; i++) {
		if (strncmp(argv[i], "seq=", 4) == 0) {
			n = ctl_unhex(argv[i] + 4);
			if (n <= 0 || (size_t)n > sizeof seq) {
				sim_warnx("vmotion: seq= needs 1..%d hex bytes",
				    VMO_SEQ_MAX);
				return;
			}
			memcpy(seq, argv[i] + 4, (size_t)n);
			seqlen = (size_t)n;
		} else if (strncmp(argv[i], "limit=", 6) == 0) {
			limit = (uint32_t)strtonum(argv[i] + 6, 1, 3600000,
			    &err);
			if (err != NULL) {
				sim_warnx("vmotion: limit: %s", err);
				return;
			}
		} else if (strncmp(argv[i], "delay=", 6) == 0) {
			delay = (uint32_t)strtonum(argv[i] + 6, 0, 3600000,
			    &err);
			if (err != NULL) {
				sim_warnx("vmotion: delay: %s", err);
				return;
			}
		} else if (strcmp(argv[i], "fin=first") == 0)
			fin = FIN_FIRST;
		else if (strcmp(argv[i], "fin=last") == 0)
			fin = FIN_LAST;
		else if (strcmp(argv[i], "fin=never") == 0)
			fin = FIN_NEVER;
		else if (strcmp(argv[i], "abort") == 0)
			opts |= VO_ABORT;
		else if (strcmp(argv[i], "abort-after-peer") == 0)
			opts |= VO_ABORT_PEER;
		else if (strcmp(argv[i], "nopeer") == 0)
			opts |= VO_NOPEER;
		else if (strcmp(argv[i], "badsecret") == 0)
			opts |= VO_BADSECRET;
		else if (strcmp(argv[i], "die-src") == 0)
			opts |= VO_DIE_SRC;
		else if (strcmp(argv[i], "die-dst") == 0)
			opts |= VO_DIE_DST;
		else {
			sim_warnx("vmotion: unknown option %s", argv[i]);
			return;
		}
	}
	if (vmo_start(c, seqlen > 0 ? seq : NULL, seqlen, opts, fin, limit,
	    delay, false) != 0)
		sim_event("vmotion %" PRIu32 " %u skipped 0", c->vm,
		    (unsigned)c->port);
}

/* storm N [rate=R] [faults=P] */
static void
ctl_storm(int argc, char **argv)
{
	const char *err;
	double rate = sim.storm_rate, faults = sim.storm_faults;
	long long n;
	char *end;
	int i;

	n = strtonum(argv[1], 0, 100000000LL, &err);
	if (err != NULL) {
		sim_warnx("storm %s: %s", argv[1], err);
		return;
	}
	for (i = 2; i < argc; i++) {
		if (strncmp(argv[i], "rate=", 5) == 0) {
			rate = strtod(argv[i] + 5, &end);
			if (*end != '\0' || !(rate > 0)) {
				sim_warnx("storm: bad rate");
				return;
			}
		} else if (strncmp(argv[i], "faults=", 7) == 0) {
			faults = strtod(argv[i] + 7, &end);
			if (*end != '\0' || !(faults >= 0 && faults <= 1)) {
				sim_warnx("storm: bad faults");
				return;
			}
		} else {
			sim_warnx("storm: unknown option %s", argv[i]);
			return;
		}
	}
	if (sim.storm_on) {
		sim_warnx("storm: one is running");
		return;
	}
	storm_start((uint32_t)n, rate, faults);
}

/* Execute one control command line. */
static void
ctl_command(char *line)
{
	char *argv[16], *p, *w;
	struct conn *c;
	const char *err;
	long long rate;
	ssize_t n;
	int argc;

	argc = 0;
	p = line;
	while (argc < (int)nitems(argv) && (w = strsep(&p, " \t")) != NULL) {
		if (*w != '\0')
			argv[argc++] = w;
	}
	if (argc == 0)
		return;
	if (strcmp(argv[0], "quit") == 0) {
		event_base_loopexit(sim.base, NULL);
		return;
	}
	if (strcmp(argv[0], "status") == 0) {
		ctl_status(argc > 1 ? argv[1] : NULL, argc > 2 ? argv[2] : NULL);
		return;
	}
	if (strcmp(argv[0], "rate") == 0 && argc == 2) {
		rate = strtonum(argv[1], 0, 1000000000LL, &err);
		if (err != NULL) {
			sim_warnx("rate %s: %s", argv[1], err);
			return;
		}
		sim.rate = (uint64_t)rate;
		sim.out_t0_us = now_us();
		sim.out_given = 0;
		return;
	}
	if (strcmp(argv[0], "storm") == 0 && argc >= 2) {
		ctl_storm(argc, argv);
		return;
	}
	if (argc < 3 || (c = ctl_find(argv[1], argv[2])) == NULL) {
		sim_warnx("bad command: %s", argv[0]);
		return;
	}
	if (strcmp(argv[0], "send") == 0 && argc == 4) {
		if ((n = ctl_unhex(argv[3])) < 0) {
			sim_warnx("send: bad hex");
			return;
		}
		if (c->state == CONN_OPEN || c->vmo != NULL)
			conn_send_console(c, (uint8_t *)argv[3], (size_t)n);
		else
			sim_warnx("send: vm %" PRIu32 " port %u not connected",
			    c->vm, (unsigned)c->port);
	} else if (strcmp(argv[0], "vmotion") == 0) {
		ctl_vmotion(c, argc, argv);
	} else if (strcmp(argv[0], "reconnect") == 0) {
		conn_close(c, "reconnect", false);
		conn_queue(c);
	} else if (strcmp(argv[0], "close") == 0) {
		conn_close(c, "close", false);
	} else if (strcmp(argv[0], "open") == 0) {
		if (c->vmo != NULL) {
			sim_warnx("open: vm %" PRIu32 " port %u is in a "
			    "vMotion", c->vm, (unsigned)c->port);
			return;
		}
		if (c->state == CONN_DELAYED)
			conn_close(c, "open", false);
		conn_queue(c);
	} else
		sim_warnx("bad command: %s", argv[0]);
}

/* Read control commands from stdin; EOF means quit. */
static void
ctl_read_cb(evutil_socket_t fd, short what, void *arg)
{
	char *line;
	size_t len;
	int n;

	n = evbuffer_read(sim.ctl_in, fd, 4096);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	while ((line = evbuffer_readln(sim.ctl_in, &len,
	    EVBUFFER_EOL_ANY)) != NULL) {
		ctl_command(line);
		free(line);
	}
	if (n <= 0) {
		/* EOF: run a last unterminated line, then quit. */
		len = evbuffer_get_length(sim.ctl_in);
		if (len > 0 && len < SIM_CTL_LINE_MAX) {
			evbuffer_add(sim.ctl_in, "", 1);
			line = (char *)evbuffer_pullup(sim.ctl_in, -1);
			if (line != NULL)
				ctl_command(line);
		}
		event_del(sim.ctl_ev);
		event_base_loopexit(sim.base, NULL);
		return;
	}
	if (evbuffer_get_length(sim.ctl_in) > SIM_CTL_LINE_MAX) {
		sim_warnx("control line too long; dropped");
		evbuffer_drain(sim.ctl_in, evbuffer_get_length(sim.ctl_in));
	}
}

/* Read control commands from a stdin that cannot be polled. */
static void
ctl_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	ctl_read_cb(STDIN_FILENO, EV_READ, arg);
}

/* Stop the loop on SIGINT/SIGTERM. */
static void
sim_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(sim.base, NULL);
}

/* Stop the loop when --duration has passed. */
static void
sim_duration_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(sim.base, NULL);
}

/* Resolve HOST:PORT, [V6]:PORT or (with defport) a bare address. */
static int
parse_addr(const char *spec, const char *defport, int family,
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
	} else {
		if (strlcpy(host, spec, sizeof host) >= sizeof host)
			return (-1);
	}
	if (port == NULL)
		return (-1);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	if (defport != NULL)
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		sim_warnx("%s: %s", spec, gai_strerror(rc));
		return (-1);
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return (0);
}

/* Parse a comma-separated source address list (--source, --dest-source). */
static void
parse_sources(const char *opt, const char *list,
    struct sockaddr_storage **srcs, socklen_t **lens, size_t *n)
{
	char *copy, *p, *w;

	copy = xstrdup(list);
	p = copy;
	*srcs = xcalloc(SIM_SOURCES_MAX, sizeof **srcs);
	*lens = xcalloc(SIM_SOURCES_MAX, sizeof **lens);
	while ((w = strsep(&p, ",")) != NULL) {
		if (*w == '\0')
			continue;
		if (*n == SIM_SOURCES_MAX)
			sim_fatalx("%s: at most %d addresses", opt,
			    SIM_SOURCES_MAX);
		if (parse_addr(w, "0", sim.target.ss_family, &(*srcs)[*n],
		    &(*lens)[*n]) != 0)
			sim_fatalx("%s %s: bad address (family must "
			    "match --target)", opt, w);
		(*n)++;
	}
	free(copy);
	if (*n == 0)
		sim_fatalx("%s: empty list", opt);
}

/* Parse a hex string of exactly len bytes into out. */
static int
parse_hex_bytes(const char *s, uint8_t *out, size_t len)
{
	size_t i;
	int hi, lo;

	if (strlen(s) != 2 * len)
		return (-1);
	for (i = 0; i < len; i++) {
		hi = hexval((unsigned char)s[2 * i]);
		lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return (-1);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (0);
}

/* Parse a non-negative integer option or exit. */
static long long
parse_num(const char *opt, const char *s, long long max)
{
	const char *err;
	long long v;

	v = strtonum(s, 0, max, &err);
	if (err != NULL)
		sim_fatalx("%s %s: %s", opt, s, err);
	return (v);
}

/* Print the usage text. */
static void
usage(FILE *f)
{
	fputs(
"usage: vspc-sim --target HOST:PORT [--vms N] [--ports-per-vm K]\n"
"                [--name-prefix vm-] [--uuid-tag HEX8] [--uuid-base HEX32]\n"
"                [--uri URI] [--rate BYTES_PER_SEC] [--mode seq|bytes|none]\n"
"                [--echo] [--source ADDR[,ADDR...]] [--connect-rate N]\n"
"                [--control] [--print-recv] [--quiet] [--early-data N]\n"
"                [--duration S] [--comport-delay MS] [--ks1-wait MS]\n"
"                [--reconnect MS] [--out-cap BYTES] [--offer-ext] [-v]\n"
"                [--dest-source ADDR[,ADDR...]] [--vmotion-limit MS]\n"
"                [--vmotion-delay MS] [--seed N] [--storm N]\n"
"                [--storm-rate R] [--storm-faults P]\n"
"                [--tls [--tls-thumbprint HEX] [--tls-ca FILE]\n"
"                 [--tls-servername NAME] [--tls-min V] [--tls-max V]]\n"
"       vspc-sim --thumbprint CERT.pem | --thumbprint-sha1 CERT.pem\n"
"\n"
"Simulated ESXi fleet: N VMs with K serial ports each, one TCP connection\n"
"per port, speaking VMware's telnet extension (option 232) like ESXi.\n"
"\n"
"  --target HOST:PORT   proxy to connect to ([v6]:port accepted)\n"
"  --vms N              VMs (default 1); VM i is <prefix><i %05d>\n"
"  --ports-per-vm K     ports per VM (default 1); with K > 1 port j uses\n"
"                       URI <uri>?port=com<j+1> and seq label com<j+1>\n"
"  --name-prefix P      VM name prefix (default vm-)\n"
"  --uuid-tag HEX8      VC UUID 50 <tag> 00 00 00-00 00 00 00 <i, 4 bytes>\n"
"                       (default 12345678)\n"
"  --uuid-base HEX32    whole base VC UUID instead; VM i adds i to its last\n"
"                       four bytes. BIOS UUID: first byte 42; location\n"
"                       UUID: first bytes 56 4d; otherwise the same\n"
"  --uri URI            service URI (default vSPC.py)\n"
"  --rate B             console output bytes/s per port (default 0)\n"
"  --mode M             seq: lines '<name>:<label> <seq %010u> <fnv %08x>'\n"
"                       CR LF; bytes: 00..ff cyclic; none (default seq)\n"
"  --echo               send received console bytes back\n"
"  --source LIST        bind to these source addresses, round-robin\n"
"  --connect-rate N     connections opened per second (default 0 = as fast\n"
"                       as possible, at most 500 per 10 ms tick)\n"
"  --control            read commands from stdin: send V P HEX, reconnect\n"
"                       V P, close V P, open V P, rate B, status [V [P]],\n"
"                       vmotion V P [OPT...], storm N [rate=R] [faults=P],\n"
"                       quit; EOF on stdin quits\n"
"  --print-recv         print 'recv V P HEX' for console input\n"
"  --quiet              do not print ready/closed lines\n"
"  --early-data N       send N output bytes right after DO-PROXY, before\n"
"                       the proxy identified the port\n"
"  --duration S         stop after S seconds (default: run until told)\n"
"  --comport-delay MS   offer WILL COM-PORT MS after DO-PROXY (default 44,\n"
"                       as ESXi; 0 = in the same write). Output starts once\n"
"                       both WILL-PROXY arrived and COM-PORT was offered\n"
"  --ks1-wait MS        send KS-1/DO-PROXY MS after VMWARE-EXT is enabled\n"
"                       if no KNOWN-SUBOPTIONS-2 came (default 1000)\n"
"  --reconnect MS       reopen a connection MS after the proxy closed it\n"
"                       (default: never)\n"
"  --out-cap BYTES      per-connection send queue cap (default 1048576)\n"
"  --offer-ext          send WILL VMWARE-EXT unasked after WILL AUTH\n"
"  -v, --verbose        trace negotiation on stderr\n"
"  --dest-source LIST   vMotion destinations connect from these addresses\n"
"                       (default: the next --source)\n"
"  --vmotion-limit MS   wait this long for GOAHEAD, and for PEER-OK after\n"
"                       it (default 5000, ESXi's vmotionLimit)\n"
"  --vmotion-delay MS   abort / abort-after-peer / die-dst: ABORT after\n"
"                       this delay (default 100)\n"
"  --seed N             random seed (sequences, storms)\n"
"  --storm N            N vMotions of random ready ports, never two at once\n"
"                       on one port; prints 'storm done ...' and exits\n"
"                       (keeps running with --control)\n"
"  --storm-rate R       storm vMotions per second overall (default 10)\n"
"  --storm-faults P     probability of a failure option (default 0)\n",
	    f);
	simtls_usage(f);
	fputs(
"  --thumbprint CERT    print the SHA-256 thumbprint of a PEM certificate\n"
"                       as a vSPC URI wants it (telnets://host:port\n"
"                       #thumbprint=AA:BB:...) and exit\n"
"  --thumbprint-sha1 CERT  the same with SHA-1 (older vSphere)\n"
"\n"
"vmotion V P options: seq=HEX limit=MS delay=MS fin=first|last|never\n"
"abort abort-after-peer nopeer badsecret die-src die-dst.\n"
"\n"
"stdout: 'ready V P', 'refused V P', 'closed V P', 'recv V P HEX',\n"
"'vmotion V P OUTCOME MS', 'storm done N MS OUTCOME=COUNT...',\n"
"'tls-failed V P REASON' (--tls), 'status {json}' (with --tls a \"tls\"\n"
"object: handshakes, failed). Counters in status continue across\n"
"reconnects and vMotions. Handshake failures also go to stderr\n"
"('tls: handshake failed: ...'), and with --tls the totals at exit.\n", f);
}

/* Parse the command line into sim. */
static void
parse_options(int argc, char **argv)
{
	enum {
		O_TARGET = 256, O_VMS, O_PORTS, O_PREFIX, O_TAG, O_BASE,
		O_URI, O_RATE, O_MODE, O_ECHO, O_SOURCE, O_CRATE, O_CONTROL,
		O_PRECV, O_QUIET, O_EARLY, O_DURATION, O_COMPORT, O_KS1,
		O_RECONNECT, O_OUTCAP, O_OFFER, O_DSOURCE, O_VLIMIT, O_VDELAY,
		O_SEED, O_STORM, O_SRATE, O_SFAULTS, O_HELP, O_THUMB,
		O_THUMB1,
	};
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, O_TARGET },
		{ "vms", required_argument, NULL, O_VMS },
		{ "ports-per-vm", required_argument, NULL, O_PORTS },
		{ "name-prefix", required_argument, NULL, O_PREFIX },
		{ "uuid-tag", required_argument, NULL, O_TAG },
		{ "uuid-base", required_argument, NULL, O_BASE },
		{ "uri", required_argument, NULL, O_URI },
		{ "rate", required_argument, NULL, O_RATE },
		{ "mode", required_argument, NULL, O_MODE },
		{ "echo", no_argument, NULL, O_ECHO },
		{ "source", required_argument, NULL, O_SOURCE },
		{ "connect-rate", required_argument, NULL, O_CRATE },
		{ "control", no_argument, NULL, O_CONTROL },
		{ "print-recv", no_argument, NULL, O_PRECV },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "early-data", required_argument, NULL, O_EARLY },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "comport-delay", required_argument, NULL, O_COMPORT },
		{ "ks1-wait", required_argument, NULL, O_KS1 },
		{ "reconnect", required_argument, NULL, O_RECONNECT },
		{ "out-cap", required_argument, NULL, O_OUTCAP },
		{ "offer-ext", no_argument, NULL, O_OFFER },
		{ "dest-source", required_argument, NULL, O_DSOURCE },
		{ "vmotion-limit", required_argument, NULL, O_VLIMIT },
		{ "vmotion-delay", required_argument, NULL, O_VDELAY },
		{ "seed", required_argument, NULL, O_SEED },
		{ "storm", required_argument, NULL, O_STORM },
		{ "storm-rate", required_argument, NULL, O_SRATE },
		{ "storm-faults", required_argument, NULL, O_SFAULTS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, O_HELP },
		{ "thumbprint", required_argument, NULL, O_THUMB },
		{ "thumbprint-sha1", required_argument, NULL, O_THUMB1 },
		SIMTLS_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	const char *target = NULL, *sources = NULL, *dsources = NULL;
	const struct simtls_opts *to = &sim.tls_opts;
	char cause[256];
	bool seeded = false;
	uint8_t tag[4];
	char *end;
	int ch;

	sim.vms = 1;
	sim.ports = 1;
	strlcpy(sim.name_prefix, "vm-", sizeof sim.name_prefix);
	strlcpy(sim.uri, "vSPC.py", sizeof sim.uri);
	memset(sim.uuid, 0, sizeof sim.uuid);
	sim.uuid[0] = 0x50;
	sim.uuid[1] = 0x12;
	sim.uuid[2] = 0x34;
	sim.uuid[3] = 0x56;
	sim.uuid[4] = 0x78;
	sim.mode = MODE_SEQ;
	sim.comport_delay_us = 44000;
	sim.ks1_wait_us = 1000000;
	sim.reconnect_us = -1;
	sim.out_cap = SIM_OUT_CAP;
	sim.vmo_limit_ms = 5000;
	sim.vmo_delay_ms = 100;
	sim.storm_rate = 10;

	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case O_TARGET:
			target = optarg;
			break;
		case O_VMS:
			sim.vms = (uint32_t)parse_num("--vms", optarg,
			    1000000);
			break;
		case O_PORTS:
			sim.ports = (uint32_t)parse_num("--ports-per-vm",
			    optarg, 32);
			break;
		case O_PREFIX:
			if (strlcpy(sim.name_prefix, optarg,
			    sizeof sim.name_prefix) >= sizeof sim.name_prefix)
				sim_fatalx("--name-prefix: too long");
			break;
		case O_TAG:
			if (parse_hex_bytes(optarg, tag, sizeof tag) != 0)
				sim_fatalx("--uuid-tag: need 8 hex digits");
			memcpy(&sim.uuid[1], tag, sizeof tag);
			break;
		case O_BASE:
			if (parse_hex_bytes(optarg, sim.uuid,
			    sizeof sim.uuid) != 0)
				sim_fatalx("--uuid-base: need 32 hex digits");
			break;
		case O_URI:
			if (strlcpy(sim.uri, optarg, sizeof sim.uri) >=
			    sizeof sim.uri)
				sim_fatalx("--uri: too long");
			break;
		case O_RATE:
			sim.rate = (uint64_t)parse_num("--rate", optarg,
			    1000000000LL);
			break;
		case O_MODE:
			if (strcmp(optarg, "seq") == 0)
				sim.mode = MODE_SEQ;
			else if (strcmp(optarg, "bytes") == 0)
				sim.mode = MODE_BYTES;
			else if (strcmp(optarg, "none") == 0)
				sim.mode = MODE_NONE;
			else
				sim_fatalx("--mode: seq, bytes or none");
			break;
		case O_ECHO:
			sim.echo = true;
			break;
		case O_SOURCE:
			sources = optarg;
			break;
		case O_CRATE:
			sim.connect_rate = (uint32_t)parse_num("--connect-rate",
			    optarg, 10000000);
			break;
		case O_CONTROL:
			sim.control = true;
			break;
		case O_PRECV:
			sim.print_recv = true;
			break;
		case O_QUIET:
			sim.quiet = true;
			break;
		case O_EARLY:
			sim.early_data = (uint64_t)parse_num("--early-data",
			    optarg, 1LL << 30);
			break;
		case O_DURATION:
			sim.duration = strtod(optarg, &end);
			if (*end != '\0' || sim.duration < 0 ||
			    sim.duration > 1e9)
				sim_fatalx("--duration: bad value");
			break;
		case O_COMPORT:
			sim.comport_delay_us = 1000 * (uint64_t)parse_num(
			    "--comport-delay", optarg, 3600000);
			break;
		case O_KS1:
			sim.ks1_wait_us = 1000 * (uint64_t)parse_num(
			    "--ks1-wait", optarg, 3600000);
			break;
		case O_RECONNECT:
			sim.reconnect_us = 1000 * parse_num("--reconnect",
			    optarg, 3600000);
			break;
		case O_OUTCAP:
			sim.out_cap = (size_t)parse_num("--out-cap", optarg,
			    1LL << 30);
			if (sim.out_cap < 1024)
				sim_fatalx("--out-cap: at least 1024");
			break;
		case O_OFFER:
			sim.offer_ext = true;
			break;
		case O_DSOURCE:
			dsources = optarg;
			break;
		case O_VLIMIT:
			sim.vmo_limit_ms = (uint32_t)parse_num(
			    "--vmotion-limit", optarg, 3600000);
			if (sim.vmo_limit_ms == 0)
				sim_fatalx("--vmotion-limit: at least 1");
			break;
		case O_VDELAY:
			sim.vmo_delay_ms = (uint32_t)parse_num(
			    "--vmotion-delay", optarg, 3600000);
			break;
		case O_SEED:
			sim.seed = (uint64_t)parse_num("--seed", optarg,
			    LLONG_MAX);
			seeded = true;
			break;
		case O_STORM:
			sim.storm_total = (uint32_t)parse_num("--storm",
			    optarg, 100000000LL);
			sim.storm_exit = true;
			break;
		case O_SRATE:
			sim.storm_rate = strtod(optarg, &end);
			if (*end != '\0' || !(sim.storm_rate > 0) ||
			    sim.storm_rate > 1e6)
				sim_fatalx("--storm-rate: bad value");
			break;
		case O_SFAULTS:
			sim.storm_faults = strtod(optarg, &end);
			if (*end != '\0' || !(sim.storm_faults >= 0 &&
			    sim.storm_faults <= 1))
				sim_fatalx("--storm-faults: 0 to 1");
			break;
		case 'v':
			sim.verbose++;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		case O_THUMB:
		case O_THUMB1:
			if (simtls_print_thumbprint(optarg, ch == O_THUMB1,
			    stdout, cause, sizeof cause) != 0)
				sim_fatalx("%s", cause);
			exit(0);
		default:
			if (simtls_option(ch, optarg, &sim.tls, &sim.tls_opts))
				break;
			usage(stderr);
			exit(2);
		}
	}
	if (!seeded)
		sim.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	sim.rng = sim.seed * 0x9e3779b97f4a7c15ULL + 1;
	if (sim.storm_total > 0 && sim.control)
		sim.storm_exit = false;
	if (optind != argc || target == NULL) {
		usage(stderr);
		exit(2);
	}
	if (sim.vms == 0 || sim.ports == 0)
		sim_fatalx("--vms and --ports-per-vm must be at least 1");
	if (parse_addr(target, NULL, AF_UNSPEC, &sim.target,
	    &sim.target_len) != 0)
		sim_fatalx("--target %s: need HOST:PORT", target);
	if (sources != NULL)
		parse_sources("--source", sources, &sim.sources,
		    &sim.source_lens, &sim.nsources);
	if (dsources != NULL)
		parse_sources("--dest-source", dsources, &sim.dsources,
		    &sim.dsource_lens, &sim.ndsources);
	if (!sim.tls && (to->thumbprint != NULL || to->ca != NULL ||
	    to->servername != NULL || to->min != NULL || to->max != NULL))
		sim_fatalx("the --tls-* options need --tls");
	if (sim.tls && simtls_init(to, target, "vspc-sim", cause,
	    sizeof cause) != 0)
		sim_fatalx("%s", cause);
}

/* Raise the open file limit to the hard limit. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)sim.vms * sim.ports + 16)
		sim_warnx("%zu connections but only %llu file descriptors",
		    (size_t)sim.vms * sim.ports,
		    (unsigned long long)rl.rlim_cur);
}

/* Set up the control input on stdin. */
static void
ctl_setup(void)
{
	struct timeval tv = { 0, SIM_TICK_US };
	struct stat st;
	bool poll;

	/*
	 * stdin stays blocking: the event is level-triggered and each
	 * callback reads once, and O_NONBLOCK would also hit stdout when
	 * both are the same terminal. epoll refuses regular files and
	 * /dev/null; those are read from a timer instead (always ready).
	 */
	if (fstat(STDIN_FILENO, &st) != 0)
		sim_fatalx("--control: stdin: %s", strerror(errno));
	poll = S_ISREG(st.st_mode) ||
	    (S_ISCHR(st.st_mode) && !isatty(STDIN_FILENO));
	if ((sim.ctl_in = evbuffer_new()) == NULL)
		sim_fatalx("out of memory");
	if (poll)
		sim.ctl_ev = event_new(sim.base, -1, EV_PERSIST, ctl_poll_cb,
		    NULL);
	else
		sim.ctl_ev = event_new(sim.base, STDIN_FILENO,
		    EV_READ | EV_PERSIST, ctl_read_cb, NULL);
	if (sim.ctl_ev == NULL || event_add(sim.ctl_ev, poll ? &tv : NULL) !=
	    0)
		sim_fatalx("--control: cannot watch stdin");
}

/* Run the simulator. */
int
main(int argc, char **argv)
{
	struct link *l;
	struct timeval tv;
	size_t i;

	parse_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_nofile();

	if ((sim.base = event_base_new()) == NULL)
		sim_fatalx("event_base_new failed");
	TAILQ_INIT(&sim.connq);
	TAILQ_INIT(&sim.delayq);
	TAILQ_INIT(&sim.openq);
	TAILQ_INIT(&sim.vmoq);
	TAILQ_INIT(&sim.oldq);
	sim.nconns = (size_t)sim.vms * sim.ports;
	sim.conns = xcalloc(sim.nconns, sizeof *sim.conns);
	for (i = 0; i < sim.nconns; i++) {
		sim.conns[i].vm = (uint32_t)(i / sim.ports);
		sim.conns[i].port = (uint16_t)(i % sim.ports);
		sim.conns[i].recv_fnv = 2166136261u;
		conn_queue(&sim.conns[i]);
	}

	sim.sigint_ev = evsignal_new(sim.base, SIGINT, sim_signal_cb, NULL);
	sim.sigterm_ev = evsignal_new(sim.base, SIGTERM, sim_signal_cb, NULL);
	if (sim.sigint_ev == NULL || sim.sigterm_ev == NULL ||
	    event_add(sim.sigint_ev, NULL) != 0 ||
	    event_add(sim.sigterm_ev, NULL) != 0)
		sim_fatalx("cannot set up signals");
	if (sim.control)
		ctl_setup();
	if ((sim.recv_hex = evbuffer_new()) == NULL)
		sim_fatalx("out of memory");
	if (sim.duration > 0) {
		tv.tv_sec = (time_t)sim.duration;
		tv.tv_usec = (suseconds_t)((sim.duration - (double)tv.tv_sec) *
		    1e6);
		sim.duration_ev = evtimer_new(sim.base, sim_duration_cb, NULL);
		if (sim.duration_ev == NULL ||
		    evtimer_add(sim.duration_ev, &tv) != 0)
			sim_fatalx("cannot set up --duration");
	}
	tv.tv_sec = 0;
	tv.tv_usec = SIM_TICK_US;
	sim.tick_ev = event_new(sim.base, -1, EV_PERSIST, sim_tick, NULL);
	if (sim.tick_ev == NULL || event_add(sim.tick_ev, &tv) != 0)
		sim_fatalx("cannot set up the tick");
	sim.last_tick_us = sim.out_t0_us = now_us();
	sim_connect_pass(sim.last_tick_us, 0);
	if (sim.verbose || sim.storm_total > 0)
		sim_warnx("seed %" PRIu64, sim.seed);
	if (sim.storm_total > 0)
		storm_start(sim.storm_total, sim.storm_rate, sim.storm_faults);

	event_base_dispatch(sim.base);

	sim.quiet = true;
	for (i = 0; i < sim.nconns; i++) {
		conn_close(&sim.conns[i], "exit", false);
		if (sim.conns[i].held_out != NULL)
			evbuffer_free(sim.conns[i].held_out);
	}
	while ((l = TAILQ_FIRST(&sim.oldq)) != NULL) {
		TAILQ_REMOVE(&sim.oldq, l, entry);
		link_free(l);
	}
	event_free(sim.tick_ev);
	event_free(sim.sigint_ev);
	event_free(sim.sigterm_ev);
	if (sim.duration_ev != NULL)
		event_free(sim.duration_ev);
	if (sim.ctl_ev != NULL)
		event_free(sim.ctl_ev);
	if (sim.ctl_in != NULL)
		evbuffer_free(sim.ctl_in);
	evbuffer_free(sim.recv_hex);
	if (sim.tls) {
		sim_warnx("tls: %" PRIu64 " handshakes, %" PRIu64 " failed",
		    sim.tls_ok, sim.tls_failed);
		simtls_free();
	}
	free(sim.conns);
	free(sim.sources);
	free(sim.source_lens);
	free(sim.dsources);
	free(sim.dsource_lens);
	event_base_free(sim.base);
	fflush(stdout);
	return (0);
}
