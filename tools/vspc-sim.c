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
 * reconnects, as a guest's UART would.
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

#define CONN_F_EXT	0x01	/* our WILL VMWARE-EXT is enabled */
#define CONN_F_KS1	0x02	/* KS-1 and DO-PROXY sent */
#define CONN_F_COMPORT	0x04	/* WILL COM-PORT requested */
#define CONN_F_READY	0x08	/* WILL-PROXY received */
#define CONN_F_REFUSED	0x10	/* WONT-PROXY received */
#define CONN_F_RDOFF	0x20	/* reading paused by backpressure */

/* One simulated serial port and its (at most one) TCP connection. */
struct conn {
	TAILQ_ENTRY(conn) entry;	/* connq, delayq or openq */
	struct bufferevent *bev;
	struct telnet tn;
	uint64_t ext_us;		/* when VMWARE-EXT became enabled */
	uint64_t proxy_us;		/* when DO-PROXY went out */
	uint64_t due_us;		/* CONN_DELAYED: reconnect time */
	uint64_t sent;			/* console bytes sent, unescaped */
	uint64_t received;		/* console bytes received */
	uint32_t recv_fnv;
	uint32_t seq;			/* --mode seq: current line */
	uint32_t vm;
	uint16_t port;
	uint8_t line_off;		/* --mode seq: bytes of line sent */
	uint8_t next_byte;		/* --mode bytes */
	uint8_t state;
	uint8_t flags;
	bool tn_live;			/* tn holds an initialised codec */
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
static void conn_telnet_cb(void *, const struct telnet_event *);
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

/* Queue raw (already encoded) bytes on the connection. */
static void
conn_write(struct conn *c, const void *buf, size_t len)
{
	if (c->bev == NULL || len == 0)
		return;
	if (bufferevent_write(c->bev, buf, len) != 0)
		sim_warnx("vm %" PRIu32 " port %u: write failed", c->vm,
		    (unsigned)c->port);
}

/* Return the bytes waiting in the connection's send queue. */
static size_t
conn_queued(struct conn *c)
{
	if (c->bev == NULL)
		return (0);
	return (evbuffer_get_length(bufferevent_get_output(c->bev)));
}

/* Send console bytes with 0xFF doubled and count them. */
static void
conn_send_console(struct conn *c, const uint8_t *buf, size_t len)
{
	size_t n, elen;

	while (len > 0) {
		n = len < SIM_CHUNK ? len : SIM_CHUNK;
		elen = telnet_escape(esc_buf, buf, n);
		conn_write(c, esc_buf, elen);
		c->sent += n;
		buf += n;
		len -= n;
	}
}

/* Encode and send one option 232 command with up to two fields. */
static void
conn_send_vmwext(struct conn *c, uint8_t cmd, const void *a, size_t alen,
    const void *b, size_t blen)
{
	uint8_t buf[2 * (SIM_URI_MAX + SIM_LINE_MAX) + 16];
	size_t n;

	n = vmwext_encode(buf, sizeof buf, cmd, a, alen, b, blen);
	if (n == 0) {
		sim_warnx("vm %" PRIu32 " port %u: %s does not fit", c->vm,
		    (unsigned)c->port, vmwext_cmd_name(cmd));
		return;
	}
	conn_write(c, buf, n);
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

	queued = conn_queued(c);
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

/* Offer WILL COM-PORT, as ESXi does after DO-PROXY. */
static void
conn_offer_comport(struct conn *c)
{
	c->flags |= CONN_F_COMPORT;
	telnet_request(&c->tn, TELOPT_COMPORT, true, true);
}

/* Send KNOWN-SUBOPTIONS-1 and DO-PROXY in one write, as ESXi does. */
static void
conn_send_ks1(struct conn *c)
{
	char uri[SIM_URI_MAX + 32];
	size_t ulen;

	if (c->flags & CONN_F_KS1)
		return;
	c->flags |= CONN_F_KS1;
	ulen = sim_port_uri(c->port, uri, sizeof uri);
	conn_send_vmwext(c, VMWEXT_KNOWN_SUBOPTIONS_1, esxi_ks1,
	    sizeof esxi_ks1, NULL, 0);
	conn_send_vmwext(c, VMWEXT_DO_PROXY, "S", 1, uri, ulen);
	c->proxy_us = now_us();
	if (sim.early_data > 0 && sim.mode != MODE_NONE)
		conn_output(c, sim.early_data);
	if (sim.comport_delay_us == 0)
		conn_offer_comport(c);
}

/* Handle one option 232 subnegotiation from the proxy. */
static void
conn_vmwext(struct conn *c, const uint8_t *sb, size_t len)
{
	struct vmwext_msg m;
	char text[SIM_NAME_MAX + 48];
	uint8_t code;
	int rc;

	rc = vmwext_decode(sb, len, &m);
	if (rc == VMWEXT_EMPTY)
		return;
	if (sim.verbose)
		sim_warnx("vm %" PRIu32 " port %u: < %s (%zu bytes)", c->vm,
		    (unsigned)c->port, vmwext_cmd_name(m.cmd), m.len);
	if (rc == VMWEXT_UNKNOWN) {
		code = m.cmd;
		conn_send_vmwext(c, VMWEXT_UNKNOWN_SUBOPTION_RCVD_1, &code, 1,
		    NULL, 0);
		return;
	}
	if (rc != VMWEXT_OK)
		return;
	switch (m.cmd) {
	case VMWEXT_KNOWN_SUBOPTIONS_2:
		conn_send_ks1(c);
		break;
	case VMWEXT_GET_VM_VC_UUID:
		sim_uuid_text(c->vm, 0, text);
		conn_send_vmwext(c, VMWEXT_VM_VC_UUID, text, strlen(text),
		    NULL, 0);
		break;
	case VMWEXT_GET_VM_BIOS_UUID:
		sim_uuid_text(c->vm, 1, text);
		conn_send_vmwext(c, VMWEXT_VM_BIOS_UUID, text, strlen(text),
		    NULL, 0);
		break;
	case VMWEXT_GET_VM_LOCATION_UUID:
		sim_uuid_text(c->vm, 2, text);
		conn_send_vmwext(c, VMWEXT_VM_LOCATION_UUID, text,
		    strlen(text), NULL, 0);
		break;
	case VMWEXT_GET_VM_NAME:
		sim_vm_name(c->vm, text, sizeof text);
		conn_send_vmwext(c, VMWEXT_VM_NAME, text, strlen(text),
		    NULL, 0);
		break;
	case VMWEXT_WILL_PROXY:
		if (c->flags & CONN_F_READY)
			break;
		c->flags |= CONN_F_READY;
		c->flags &= ~CONN_F_REFUSED;
		if (!sim.quiet)
			sim_event("ready %" PRIu32 " %u", c->vm,
			    (unsigned)c->port);
		break;
	case VMWEXT_WONT_PROXY:
		c->flags |= CONN_F_REFUSED;
		sim_event("refused %" PRIu32 " %u", c->vm, (unsigned)c->port);
		break;
	default:
		/* Known to ESXi but nothing a source host must answer. */
		break;
	}
}

/* Account console bytes from the proxy; collect and echo them if asked. */
static void
conn_console_input(struct conn *c, const uint8_t *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char pair[2];
	size_t i;

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

/* React to one event of the connection's telnet codec. */
static void
conn_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct conn *c = arg;

	switch (ev->type) {
	case TELNET_EV_SEND:
		conn_write(c, ev->data, ev->len);
		break;
	case TELNET_EV_DATA:
		conn_console_input(c, ev->data, ev->len);
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
		    !(c->flags & CONN_F_EXT)) {
			c->flags |= CONN_F_EXT;
			c->ext_us = now_us();
		} else if (ev->opt == TELOPT_AUTH && ev->enabled) {
			/* We cannot authenticate: take the offer back. */
			telnet_request(&c->tn, TELOPT_AUTH, true, false);
		}
		break;
	case TELNET_EV_SB:
		if (ev->opt == TELOPT_VMWARE)
			conn_vmwext(c, ev->data, ev->len);
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
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int n;

	while (evbuffer_get_length(in) > 0) {
		n = evbuffer_remove(in, read_buf, sizeof read_buf);
		if (n <= 0)
			break;
		telnet_input(&c->tn, read_buf, (size_t)n);
		conn_flush_recv(c);
		if (conn_queued(c) >= sim.out_cap) {
			/* Echo and replies would grow without bound. */
			c->flags |= CONN_F_RDOFF;
			bufferevent_disable(bev, EV_READ);
			break;
		}
	}
}

/* Resume reading once the send queue drained below the low mark. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if ((c->flags & CONN_F_RDOFF) && conn_queued(c) <= sim.out_cap / 2) {
		c->flags &= ~CONN_F_RDOFF;
		bufferevent_enable(bev, EV_READ);
	}
}

/* Handle connect completion, EOF and errors. */
static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int fd, one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		c->state = CONN_OPEN;
		TAILQ_INSERT_TAIL(&sim.openq, c, entry);
		fd = bufferevent_getfd(bev);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* ESXi's first bytes: IAC WILL AUTHENTICATION. */
		telnet_request(&c->tn, TELOPT_AUTH, true, true);
		if (sim.offer_ext)
			telnet_request(&c->tn, TELOPT_VMWARE, true, true);
		return;
	}
	if (what & BEV_EVENT_EOF)
		conn_close(c, "closed by peer", true);
	else if (what & BEV_EVENT_ERROR)
		conn_close(c, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()), true);
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

/*
 * End the connection (if any) and print "closed". auto_reopen: the end was
 * not asked for, so --reconnect applies.
 */
static void
conn_close(struct conn *c, const char *why, bool auto_reopen)
{
	bool had = c->bev != NULL;

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
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->tn_live) {
		telnet_free(&c->tn);
		c->tn_live = false;
	}
	c->state = CONN_IDLE;
	c->flags = 0;
	if (had) {
		if (sim.verbose)
			sim_warnx("vm %" PRIu32 " port %u: %s", c->vm,
			    (unsigned)c->port, why);
		if (!sim.quiet)
			sim_event("closed %" PRIu32 " %u", c->vm,
			    (unsigned)c->port);
	}
	if (auto_reopen && sim.reconnect_us >= 0) {
		c->state = CONN_DELAYED;
		c->due_us = now_us() + (uint64_t)sim.reconnect_us;
		TAILQ_INSERT_TAIL(&sim.delayq, c, entry);
	}
}

/* Set up the codec policy of a fresh connection. */
static void
conn_telnet_setup(struct conn *c)
{
	telnet_init(&c->tn, conn_telnet_cb, c);
	c->tn_live = true;
	telnet_set_accept(&c->tn, TELOPT_BINARY, true, true);
	telnet_set_accept(&c->tn, TELOPT_SGA, true, true);
	telnet_set_accept(&c->tn, TELOPT_ECHO, true, true);
	telnet_set_accept(&c->tn, TELOPT_VMWARE, true, false);
}

/*
 * Start connecting. Returns 0, or -1 when out of file descriptors (the
 * connection stays queued and is tried again on a later tick).
 */
static int
conn_open(struct conn *c)
{
	struct sockaddr_storage *src;
	struct bufferevent *bev;
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
			return (-1);
		sim_fatalx("socket: %s", strerror(errno));
	}
	if (sim.nsources > 0) {
		src = &sim.sources[sim.next_source];
#ifdef IP_BIND_ADDRESS_NO_PORT
		/* Let connect() pick the port per (source, target). */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
#endif
		if (bind(fd, (struct sockaddr *)src,
		    sim.source_lens[sim.next_source]) == -1) {
			sim_warnx("bind source %zu: %s", sim.next_source,
			    strerror(errno));
			close(fd);
			return (-1);
		}
		sim.next_source = (sim.next_source + 1) % sim.nsources;
	}
	bev = bufferevent_socket_new(sim.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		close(fd);
		return (-1);
	}
	c->bev = bev;
	c->state = CONN_CONNECTING;
	conn_telnet_setup(c);
	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, sim.out_cap / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&sim.target,
	    sim.target_len) != 0)
		conn_close(c, "connect failed", true);
	return (0);
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

/* Run the periodic work: connects, negotiation delays, output. */
static void
sim_tick(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c, *next;
	uint64_t now, quantum;
	double dt;

	now = now_us();
	dt = (double)(now - sim.last_tick_us) / 1e6;
	sim.last_tick_us = now;
	sim_connect_pass(now, dt);
	quantum = sim_output_quantum(now);
	for (c = TAILQ_FIRST(&sim.openq); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if ((c->flags & (CONN_F_EXT | CONN_F_KS1)) == CONN_F_EXT &&
		    now - c->ext_us >= sim.ks1_wait_us)
			conn_send_ks1(c);
		if ((c->flags & (CONN_F_KS1 | CONN_F_COMPORT)) == CONN_F_KS1 &&
		    now - c->proxy_us >= sim.comport_delay_us)
			conn_offer_comport(c);
		if (quantum > 0 && (c->flags & (CONN_F_READY |
		    CONN_F_COMPORT)) == (CONN_F_READY | CONN_F_COMPORT))
			conn_output(c, quantum);
	}
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
	const char *err;
	size_t i, first, last;
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
		    "\"received\":%" PRIu64 ",\"recv_fnv\":\"%08" PRIx32 "\"}",
		    i == first ? "" : ",", c->vm, (unsigned)c->port,
		    c->state == CONN_OPEN ? "true" : "false",
		    (c->flags & CONN_F_READY) ? "true" : "false",
		    c->sent, c->received, c->recv_fnv);
	}
	evbuffer_add_printf(out, "]}\n");
	fwrite(evbuffer_pullup(out, -1), 1, evbuffer_get_length(out), stdout);
	fflush(stdout);
	evbuffer_free(out);
}

/* Execute one control command line. */
static void
ctl_command(char *line)
{
	char *argv[5], *p, *w;
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
	if (argc < 3 || (c = ctl_find(argv[1], argv[2])) == NULL) {
		sim_warnx("bad command: %s", argv[0]);
		return;
	}
	if (strcmp(argv[0], "send") == 0 && argc == 4) {
		if ((n = ctl_unhex(argv[3])) < 0) {
			sim_warnx("send: bad hex");
			return;
		}
		if (c->state == CONN_OPEN)
			conn_send_console(c, (uint8_t *)argv[3], (size_t)n);
		else
			sim_warnx("send: vm %" PRIu32 " port %u not connected",
			    c->vm, (unsigned)c->port);
	} else if (strcmp(argv[0], "reconnect") == 0) {
		conn_close(c, "reconnect", false);
		conn_queue(c);
	} else if (strcmp(argv[0], "close") == 0) {
		conn_close(c, "close", false);
	} else if (strcmp(argv[0], "open") == 0) {
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

/* Parse the comma-separated --source list. */
static void
parse_sources(const char *list)
{
	char *copy, *p, *w;

	copy = xstrdup(list);
	p = copy;
	sim.sources = xcalloc(SIM_SOURCES_MAX, sizeof *sim.sources);
	sim.source_lens = xcalloc(SIM_SOURCES_MAX, sizeof *sim.source_lens);
	while ((w = strsep(&p, ",")) != NULL) {
		if (*w == '\0')
			continue;
		if (sim.nsources == SIM_SOURCES_MAX)
			sim_fatalx("--source: at most %d addresses",
			    SIM_SOURCES_MAX);
		if (parse_addr(w, "0", sim.target.ss_family,
		    &sim.sources[sim.nsources],
		    &sim.source_lens[sim.nsources]) != 0)
			sim_fatalx("--source %s: bad address (family must "
			    "match --target)", w);
		sim.nsources++;
	}
	free(copy);
	if (sim.nsources == 0)
		sim_fatalx("--source: empty list");
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
"\n"
"stdout: 'ready V P', 'refused V P', 'closed V P', 'recv V P HEX',\n"
"'status {json}'. Counters in status continue across reconnects.\n", f);
}

/* Parse the command line into sim. */
static void
parse_options(int argc, char **argv)
{
	enum {
		O_TARGET = 256, O_VMS, O_PORTS, O_PREFIX, O_TAG, O_BASE,
		O_URI, O_RATE, O_MODE, O_ECHO, O_SOURCE, O_CRATE, O_CONTROL,
		O_PRECV, O_QUIET, O_EARLY, O_DURATION, O_COMPORT, O_KS1,
		O_RECONNECT, O_OUTCAP, O_OFFER, O_HELP,
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
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *target = NULL, *sources = NULL;
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
		case 'v':
			sim.verbose++;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
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
		parse_sources(sources);
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

	event_base_dispatch(sim.base);

	for (i = 0; i < sim.nconns; i++) {
		sim.quiet = true;
		conn_close(&sim.conns[i], "exit", false);
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
	free(sim.conns);
	free(sim.sources);
	free(sim.source_lens);
	event_base_free(sim.base);
	fflush(stdout);
	return (0);
}
