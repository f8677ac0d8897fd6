/*
 * bench-telnet: the VM-side hot path of vspcd without sockets, for
 * callgrind instruction counts (bench/callgrind.sh).
 *
 * 1 MiB of console data (printable text with about 1 % 0xFF bytes, fixed
 * seed) is escaped the way ESXi sends it, then:
 *   decode_mb()  feeds the wire bytes to telnet_input_inplace() in 16 KiB
 *                reads, as vm.c does (the copy that stands for the socket
 *                read is made outside, in main), counting the DATA events;
 *   decode_const_mb()  the same through telnet_input() (buffer untouched,
 *                a doubled IAC ends a run), as client.c does;
 *   escape_mb()  escapes the decoded console bytes again for clients
 *                (memchr for 0xFF, then telnet_escape), as port_output does;
 *   data_mb()    un-doubles the wire bytes with telnet_input_data() into
 *                another buffer in 16 KiB reads, as vm.c does for a read
 *                that is console data (the bytes then go to clients as
 *                read, so there is no escaping).
 * Each is a noinline function so callgrind --toggle-collect can count it
 * alone; ITER (argv[1], default 1) repeats each.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telnet.h"

#define MB	(1024 * 1024)
#define READ	(16 * 1024)

static uint64_t data_bytes, data_events;
static uint8_t *plain, *wire, *rd, *decoded, *esc;
static size_t wire_len, dec_len;

static void
cb(void *arg, const struct telnet_event *ev)
{
	(void)arg;
	if (ev->type == TELNET_EV_DATA) {
		memcpy(decoded + dec_len, ev->data, ev->len);
		dec_len += ev->len;
		data_bytes += ev->len;
		data_events++;
	}
}

__attribute__((noinline)) static void
decode_mb(struct telnet *tn)
{
	size_t off, n;

	dec_len = 0;
	for (off = 0; off < wire_len; off += n) {
		n = wire_len - off < READ ? wire_len - off : READ;
		telnet_input_inplace(tn, rd + off, n);
	}
}

__attribute__((noinline)) static void
decode_const_mb(struct telnet *tn)
{
	size_t off, n;

	dec_len = 0;
	for (off = 0; off < wire_len; off += n) {
		n = wire_len - off < READ ? wire_len - off : READ;
		telnet_input(tn, wire + off, n);
	}
}

__attribute__((noinline)) static void
data_mb(struct telnet *tn)
{
	size_t off, n, k, dlen;

	dec_len = 0;
	for (off = 0; off < wire_len; off += k) {
		n = wire_len - off < READ ? wire_len - off : READ;
		k = telnet_input_data(tn, wire + off, n, decoded + dec_len,
		    &dlen);
		dec_len += dlen;
		if (k < n) {
			/* A pair cut by the read: its first IAC. */
			telnet_input(tn, wire + off + k, 1);
			k++;
		}
	}
}

__attribute__((noinline)) static size_t
escape_mb(void)
{
	size_t off, n, total = 0;

	for (off = 0; off < dec_len; off += n) {
		n = dec_len - off < READ ? dec_len - off : READ;
		if (memchr(decoded + off, TELNET_IAC, n) != NULL)
			total += telnet_escape(esc, decoded + off, n);
		else
			total += n;
	}
	return total;
}

int
main(int argc, char **argv)
{
	struct telnet tn;
	uint32_t x = 12345;
	size_t i, ff = 0, out = 0;
	int it, iter = argc > 1 ? atoi(argv[1]) : 1;

	plain = malloc(MB);
	wire = malloc(2 * MB);
	rd = malloc(2 * MB);
	decoded = malloc(MB);
	esc = malloc(2 * READ);
	if (plain == NULL || wire == NULL || rd == NULL || decoded == NULL || esc == NULL)
		return 1;
	for (i = 0; i < MB; i++) {
		x = x * 1103515245u + 12345u;
		if ((x >> 16) % 100 == 0) {
			plain[i] = 0xff;
			ff++;
		} else if (i % 80 == 79)
			plain[i] = '\n';
		else
			plain[i] = (uint8_t)(' ' + (x >> 16) % 95);
	}
	wire_len = telnet_escape(wire, plain, MB);
	telnet_init(&tn, cb, NULL);
	telnet_set_accept(&tn, TELOPT_BINARY, true, true);
	for (it = 0; it < iter; it++) {
		memcpy(rd, wire, wire_len);	/* the socket read */
		decode_mb(&tn);
		if (dec_len != MB || memcmp(decoded, plain, MB) != 0) {
			fprintf(stderr, "bench-telnet: decode mismatch\n");
			return 1;
		}
		decode_const_mb(&tn);
		if (dec_len != MB || memcmp(decoded, plain, MB) != 0) {
			fprintf(stderr, "bench-telnet: const decode mismatch\n");
			return 1;
		}
		out += escape_mb();
		data_mb(&tn);
		if (dec_len != MB || memcmp(decoded, plain, MB) != 0) {
			fprintf(stderr, "bench-telnet: data decode mismatch\n");
			return 1;
		}
	}
	telnet_free(&tn);
	printf("bench-telnet: %d x 1 MiB, 0xFF %.2f %%, wire %zu B, "
	    "%llu DATA events, escaped out %zu B\n", iter, 100.0 * ff / MB,
	    wire_len, (unsigned long long)data_events, out);
	free(plain);
	free(wire);
	free(rd);
	free(decoded);
	free(esc);
	return 0;
}
