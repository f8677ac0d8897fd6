/*
 * bench-fanout: vspcd's VM-to-clients fan-out path without sockets, for
 * callgrind instruction counts (bench/callgrind.sh).
 *
 * What port_output() and client_write_console_ref() do per VM read,
 * modelled with the same libevent calls: append to the 64 KiB replay
 * evbuffer (add + drain), escape once into a refcounted chunk
 * (telnet_escaped_len + telnet_escape), then per client check the queue
 * cap and evbuffer_add_reference the chunk (under 512 escaped bytes: a
 * copy per client with evbuffer_add, as port.c does).
 * The kernel write is replaced by evbuffer_drain of what a write would
 * take (the whole queue once it passes 64 KiB). Console logs are off, as
 * in the relay benchmark.
 *
 * fanout_mb() pushes 1 MiB of console data (about 1 % 0xFF) to K
 * clients as whole 16 KiB reads (port_output alone); fanout_events_mb()
 * decodes the VM's wire bytes in 16 KiB reads with telnet_input_inplace()
 * and calls port_output() per DATA event, as vm.c does (one per read: the
 * codec un-doubles IAC IAC in place). The copy standing for the socket
 * read is made outside, in main. fanout_read_mb() is vm.c's read path
 * since reads go into refcounted chunks (vm_read_chunk, vm_decode): a
 * read that is console data (up to a short tail) is un-doubled with
 * telnet_input_data() straight into space reserved in the replay ring,
 * and each client queue references the wire bytes in the read chunk (cut
 * to the read's length first, as vm.c does when a client may keep it);
 * other reads go through telnet_input_inplace() and port_output(). Its
 * socket read is sock_read(), which callgrind.py toggles off again. All
 * are noinline so callgrind --toggle-collect can count them alone.
 * Usage: bench-fanout CLIENTS [ITER [events|read]]
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "telnet.h"

#define MB		(1024 * 1024)
#define READ		(16 * 1024)
#define READ_CAP	(32768 - 256)	/* vm.c VM_READ_MORE */
#define WIRE_TAIL	64		/* vm.c VM_WIRE_TAIL */
#define REPLAY		(64 * 1024)
#define CLIENT_QUEUE	(256 * 1024)

static uint8_t *plain;
static struct evbuffer *replay;
static struct evbuffer **out;
static uint64_t skipped;
static uint8_t *wire, *rd;
static size_t wire_len;

struct chunk {
	unsigned refs;
	size_t cap;
	uint8_t data[];
};

#define SHARE_MIN	512

static void
chunk_unref(const void *data, size_t len, void *arg)
{
	struct chunk *ch = arg;

	(void)data;
	(void)len;
	if (--ch->refs == 0)
		free(ch);
}

/* The socket write: the kernel takes the queue once it passes 64 KiB. */
static void
client_wrote(struct evbuffer *o)
{
	if (evbuffer_get_length(o) >= REPLAY)
		evbuffer_drain(o, evbuffer_get_length(o));
}

static void
client_write(struct evbuffer *o, const uint8_t *data, size_t len)
{
	if (evbuffer_get_length(o) + len > CLIENT_QUEUE) {
		skipped += len;
		return;
	}
	evbuffer_add(o, data, len);
	client_wrote(o);
}

static int
client_write_ref(struct evbuffer *o, struct chunk *ch, size_t len)
{
	if (evbuffer_get_length(o) + len > CLIENT_QUEUE) {
		skipped += len;
		return 0;
	}
	if (evbuffer_add_reference(o, ch->data, len, chunk_unref, ch) != 0)
		return 0;
	client_wrote(o);
	return 1;
}

static int nclients = 1;

/* port_output(): replay, escape once, each client. */
static void
port_output(const uint8_t *data, size_t len)
{
	static uint8_t esc[SHARE_MIN];
	struct chunk *ch;
	size_t have, elen;
	int k;

	evbuffer_add(replay, data, len);
	have = evbuffer_get_length(replay);
	if (have > REPLAY)
		evbuffer_drain(replay, have - REPLAY);
	elen = telnet_escaped_len(data, len);
	if (elen < SHARE_MIN) {
		if (elen != len) {
			telnet_escape(esc, data, len);
			data = esc;
			len = elen;
		}
		for (k = 0; k < nclients; k++)
			client_write(out[k], data, len);
		return;
	}
	if ((ch = malloc(sizeof *ch + elen)) == NULL)
		abort();
	ch->refs = 1;
	telnet_escape(ch->data, data, len);
	for (k = 0; k < nclients; k++) {
		ch->refs++;
		if (!client_write_ref(out[k], ch, elen))
			ch->refs--;
	}
	chunk_unref(ch->data, elen, ch);
}

/* Whole 16 KiB reads handed to port_output (a lower bound). */
__attribute__((noinline)) static void
fanout_mb(void)
{
	size_t off, n;

	for (off = 0; off < MB; off += n) {
		n = MB - off < READ ? MB - off : READ;
		port_output(plain + off, n);
	}
}

static void
tn_cb(void *arg, const struct telnet_event *ev)
{
	(void)arg;
	if (ev->type == TELNET_EV_DATA)
		port_output(ev->data, ev->len);
}

/*
 * As vm.c does it: the VM's wire bytes (0xFF doubled) decoded in place in
 * the read buffer, port_output() once per DATA event.
 */
__attribute__((noinline)) static void
fanout_events_mb(struct telnet *tn)
{
	size_t off, n;

	for (off = 0; off < wire_len; off += n) {
		n = wire_len - off < READ ? wire_len - off : READ;
		telnet_input_inplace(tn, rd + off, n);
	}
}

/* The chunk reads go into, with our reference (vm.c vm_rd). */
static struct chunk *rd_ch;
static uint64_t wire_bytes;

/* vm_read_chunk(): the last chunk unless a queue holds it. */
static struct chunk *
read_chunk(void)
{
	if (rd_ch != NULL && (rd_ch->refs > 1 || rd_ch->cap < READ_CAP)) {
		chunk_unref(rd_ch->data, 0, rd_ch);
		rd_ch = NULL;
	}
	if (rd_ch == NULL) {
		if ((rd_ch = malloc(sizeof *rd_ch + READ_CAP)) == NULL)
			abort();
		rd_ch->refs = 1;
		rd_ch->cap = READ_CAP;
	}
	return (rd_ch);
}

/* The socket read (not counted: callgrind.py toggles it off). */
__attribute__((noinline)) static void
sock_read(uint8_t *dst, const uint8_t *src, size_t len)
{
	memcpy(dst, src, len);
}

/* vm_decode() with port_output_space() and port_output_wire(). */
static void
decode_read(struct telnet *tn, size_t have)
{
	struct evbuffer_iovec v;
	struct chunk *ch = rd_ch;
	uint8_t *buf = ch->data;
	size_t off = 0, n, dlen, len;
	int k;

	if (have < SHARE_MIN)
		goto codec;
	if (!telnet_in_data(tn)) {
		telnet_input_inplace(tn, buf, 1);
		off = 1;
		if (have - off < SHARE_MIN || !telnet_in_data(tn))
			goto codec;
	}
	if (evbuffer_reserve_space(replay, have - off, &v, 1) != 1)
		abort();
	n = telnet_input_data(tn, buf + off, have - off, v.iov_base, &dlen);
	if (n < SHARE_MIN || have - off - n > WIRE_TAIL)
		goto codec;
	if (have < ch->cap) {
		if ((ch = rd_ch = realloc(ch, sizeof *ch + have)) == NULL)
			abort();
		ch->cap = have;
		buf = ch->data;
	}
	v.iov_len = dlen;
	evbuffer_commit_space(replay, &v, 1);
	len = evbuffer_get_length(replay);
	if (len > REPLAY)
		evbuffer_drain(replay, len - REPLAY);
	for (k = 0; k < nclients; k++) {
		ch->refs++;
		if (evbuffer_get_length(out[k]) + n > CLIENT_QUEUE) {
			skipped += n;
			ch->refs--;
			continue;
		}
		if (evbuffer_add_reference(out[k], buf + off, n, chunk_unref,
		    ch) != 0)
			ch->refs--;
		else
			client_wrote(out[k]);
	}
	off += n;
	wire_bytes += n;
codec:
	if (off < have)
		telnet_input_inplace(tn, buf + off, have - off);
}

/* As vm.c reads since the read chunks: see decode_read. */
__attribute__((noinline)) static void
fanout_read_mb(struct telnet *tn)
{
	size_t off, n;

	for (off = 0; off < wire_len; off += n) {
		n = wire_len - off < READ ? wire_len - off : READ;
		sock_read(read_chunk()->data, wire + off, n);
		decode_read(tn, n);
	}
}

int
main(int argc, char **argv)
{
	struct telnet tn;
	int k, it, iter = argc > 2 ? atoi(argv[2]) : 1;
	bool readmode = argc > 3 && strcmp(argv[3], "read") == 0;
	bool events = readmode ||
	    (argc > 3 && strcmp(argv[3], "events") == 0);
	uint32_t x = 12345;
	size_t i;

	nclients = argc > 1 ? atoi(argv[1]) : 1;
	if (nclients < 1)
		return 2;
	plain = malloc(MB);
	wire = malloc(2 * MB);
	rd = malloc(2 * MB);
	out = calloc((size_t)nclients, sizeof *out);
	if (plain == NULL || out == NULL || (replay = evbuffer_new()) == NULL)
		return 1;
	for (i = 0; i < MB; i++) {
		x = x * 1103515245u + 12345u;
		if ((x >> 16) % 100 == 0)
			plain[i] = 0xff;
		else if (i % 80 == 79)
			plain[i] = '\n';
		else
			plain[i] = (uint8_t)(' ' + (x >> 16) % 95);
	}
	for (k = 0; k < nclients; k++)
		if ((out[k] = evbuffer_new()) == NULL)
			return 1;
	if (wire == NULL || rd == NULL)
		return 1;
	wire_len = telnet_escape(wire, plain, MB);
	telnet_init(&tn, tn_cb, NULL);
	telnet_set_accept(&tn, TELOPT_BINARY, true, true);
	for (it = 0; it < iter; it++) {
		if (readmode)
			fanout_read_mb(&tn);
		else if (events) {
			memcpy(rd, wire, wire_len);	/* the socket read */
			fanout_events_mb(&tn);
		}
		else
			fanout_mb();
	}
	telnet_free(&tn);
	printf("bench-fanout: %d x 1 MiB to %d clients (%s), %llu B skipped, "
	    "%llu B as read\n",
	    iter, nclients, readmode ? "read chunks, data as read" :
	    events ? "per DATA event, in place" :
	    "per 16 KiB read",
	    (unsigned long long)skipped, (unsigned long long)wire_bytes);
	free(wire);
	free(rd);
	for (k = 0; k < nclients; k++)
		evbuffer_free(out[k]);
	evbuffer_free(replay);
	if (rd_ch != NULL)
		chunk_unref(rd_ch->data, 0, rd_ch);
	free(out);
	free(plain);
	return 0;
}
