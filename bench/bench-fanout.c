/*
 * bench-fanout: vspcd's VM-to-clients fan-out path without sockets, for
 * callgrind instruction counts (bench/callgrind.sh).
 *
 * What port_output() and client_write_console() do per VM read, modelled
 * with the same libevent calls: memchr for 0xFF, escape once
 * (telnet_escape), append to the 64 KiB replay evbuffer (add + drain),
 * then per client check the queue cap and evbuffer_add the escaped bytes.
 * The kernel write is replaced by evbuffer_drain of what a write would
 * take (the whole queue once it passes 64 KiB). Console logs are off, as
 * in the relay benchmark.
 *
 * fanout_mb(K) pushes 1 MiB of console data (about 1 % 0xFF, 16 KiB
 * reads) to K clients; it is noinline so callgrind --toggle-collect can
 * count it alone. Usage: bench-fanout CLIENTS [ITER]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "telnet.h"

#define MB		(1024 * 1024)
#define READ		(16 * 1024)
#define REPLAY		(64 * 1024)
#define CLIENT_QUEUE	(256 * 1024)

static uint8_t *plain;
static struct evbuffer *replay;
static struct evbuffer **out;
static uint64_t skipped;

static void
client_write(struct evbuffer *o, const uint8_t *data, size_t len)
{
	if (evbuffer_get_length(o) + len > CLIENT_QUEUE) {
		skipped += len;
		return;
	}
	evbuffer_add(o, data, len);
	/* The socket write: the kernel takes the queue. */
	if (evbuffer_get_length(o) >= REPLAY)
		evbuffer_drain(o, evbuffer_get_length(o));
}

__attribute__((noinline)) static void
fanout_mb(int nclients)
{
	static uint8_t esc[2 * READ];
	const uint8_t *data;
	size_t off, n, len, have;
	int k;

	for (off = 0; off < MB; off += n) {
		n = MB - off < READ ? MB - off : READ;
		data = plain + off;
		len = n;
		evbuffer_add(replay, data, len);
		have = evbuffer_get_length(replay);
		if (have > REPLAY)
			evbuffer_drain(replay, have - REPLAY);
		if (memchr(data, TELNET_IAC, len) != NULL) {
			len = telnet_escape(esc, data, len);
			data = esc;
		}
		for (k = 0; k < nclients; k++)
			client_write(out[k], data, len);
	}
}

int
main(int argc, char **argv)
{
	int k, it, nclients = argc > 1 ? atoi(argv[1]) : 1;
	int iter = argc > 2 ? atoi(argv[2]) : 1;
	uint32_t x = 12345;
	size_t i;

	if (nclients < 1)
		return 2;
	plain = malloc(MB);
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
	for (it = 0; it < iter; it++)
		fanout_mb(nclients);
	printf("bench-fanout: %d x 1 MiB to %d clients, %llu B skipped\n",
	    iter, nclients, (unsigned long long)skipped);
	for (k = 0; k < nclients; k++)
		evbuffer_free(out[k]);
	evbuffer_free(replay);
	free(out);
	free(plain);
	return 0;
}
