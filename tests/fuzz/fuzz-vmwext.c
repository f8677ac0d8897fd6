/*
 * libFuzzer harness for the option 232 codec. The input is used twice:
 * as one raw SB payload, and as a telnet byte stream from which every
 * IAC SB 232 ... IAC SE is cut out (by a small parser of our own, so this
 * harness does not depend on the telnet codec) and checked the same way.
 * Each payload is decoded, its views are checked against the buffer,
 * re-encoded and decoded again. The identity helpers run on the raw input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vmwext.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define CHECK(c) do {							\
	if (!(c))							\
		abort();						\
} while (0)

/* Tell whether the view [p, p + n) lies inside [buf, buf + len]. */
static bool
within(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
	return (p >= buf && p <= buf + len && n <= (size_t)(buf + len - p));
}

/*
 * Un-double the body of the single SB 232 that must fill w exactly. Returns
 * the payload length or -1.
 */
static long
unwrap(const uint8_t *w, size_t len, uint8_t *out, size_t cap)
{
	size_t i, n = 0;

	if (len < 5 || w[0] != 0xff || w[1] != 0xfa || w[2] != 232 ||
	    w[len - 2] != 0xff || w[len - 1] != 0xf0)
		return (-1);
	for (i = 3; i < len - 2; i++) {
		if (w[i] == 0xff) {
			if (i + 1 >= len - 2 || w[i + 1] != 0xff)
				return (-1);
			i++;
		}
		if (n == cap)
			return (-1);
		out[n++] = w[i];
	}
	return ((long)n);
}

/* Encode m back to the wire with the payload split at cut; check it. */
static void
roundtrip(const struct vmwext_msg *m, int status, size_t cut)
{
	struct vmwext_msg m2;
	uint8_t *wire, *back;
	size_t cap, n;
	long blen;

	cap = 3 + 2 * (1 + m->len) + 2;
	wire = malloc(cap);
	back = malloc(1 + m->len);
	CHECK(wire != NULL && back != NULL);
	if (cut > m->len)
		cut = m->len;

	n = vmwext_encode(wire, cap, m->cmd, m->payload, cut,
	    m->payload + cut, m->len - cut);
	CHECK(n >= 6 && n <= cap);
	/* One byte short never fits. */
	CHECK(vmwext_encode(wire, n - 1, m->cmd, m->payload, cut,
	    m->payload + cut, m->len - cut) == 0);
	n = vmwext_encode(wire, n, m->cmd, m->payload, cut,
	    m->payload + cut, m->len - cut);

	blen = unwrap(wire, n, back, 1 + m->len);
	CHECK(blen == (long)(1 + m->len));
	CHECK(back[0] == m->cmd);
	CHECK(m->len == 0 || memcmp(back + 1, m->payload, m->len) == 0);

	CHECK(vmwext_decode(back, (size_t)blen, &m2) == status);
	CHECK(m2.cmd == m->cmd && m2.len == m->len);
	CHECK(m2.direction == m->direction && m2.code == m->code);
	CHECK(m2.uri_len == m->uri_len);
	CHECK((m2.uri == NULL) == (m->uri == NULL));
	if (m->uri != NULL)
		CHECK(m2.uri - back == m->uri - (m->payload - 1));
	free(wire);
	free(back);
}

/* Decode one payload (an exact-size heap copy) and check every view. */
static void
check_payload(const uint8_t *sb, size_t len, size_t cut)
{
	struct vmwext_msg m;
	const char *name;
	int status;

	status = vmwext_decode(sb, len, &m);
	CHECK(status >= VMWEXT_OK && status <= VMWEXT_BADLEN);
	name = vmwext_cmd_name(m.cmd);
	CHECK(name != NULL && strlen(name) < 32);
	CHECK(vmwext_cmd_known(m.cmd) == (strcmp(name, "UNKNOWN") != 0));

	if (len == 0) {
		CHECK(status == VMWEXT_EMPTY);
		return;
	}
	CHECK(status != VMWEXT_EMPTY);
	CHECK(m.cmd == sb[0]);
	CHECK(m.payload == sb + 1 && m.len == len - 1);
	CHECK(within(m.payload, m.len, sb, len));
	CHECK((status == VMWEXT_UNKNOWN) == !vmwext_cmd_known(m.cmd));

	if (m.uri != NULL) {
		CHECK(status == VMWEXT_OK && m.cmd == VMWEXT_DO_PROXY);
		CHECK(within(m.uri, m.uri_len, m.payload, m.len));
		CHECK(m.uri == sb + 2 && m.uri_len == len - 2);
		CHECK(m.direction == sb[1]);
	} else
		CHECK(m.uri_len == 0);

	switch (m.cmd) {
	case VMWEXT_UNKNOWN_SUBOPTION_RCVD_1:
	case VMWEXT_UNKNOWN_SUBOPTION_RCVD_2:
		CHECK((status == VMWEXT_OK) == (m.len == 1));
		if (status == VMWEXT_OK)
			CHECK(m.code == sb[1]);
		break;
	case VMWEXT_VMOTION_BEGIN:
	case VMWEXT_VMOTION_GOAHEAD:
	case VMWEXT_VMOTION_NOTNOW:
	case VMWEXT_VMOTION_PEER:
	case VMWEXT_VMOTION_PEER_OK:
	case VMWEXT_VMOTION_COMPLETE:
		CHECK((status == VMWEXT_OK) ==
		    (m.len >= 1 && m.len <= VMWEXT_COOKIE_MAX));
		break;
	case VMWEXT_DO_PROXY:
		CHECK((status == VMWEXT_OK) == (m.len >= 1));
		CHECK((status == VMWEXT_OK) == (m.uri != NULL));
		break;
	default:
		if (vmwext_cmd_known(m.cmd))
			CHECK(status == VMWEXT_OK);
		break;
	}
	roundtrip(&m, status, cut);
}

/* Copy a payload to an exact-size buffer and check it. */
static void
check_copy(const uint8_t *p, size_t len, size_t cut)
{
	uint8_t *copy;

	copy = malloc(len ? len : 1);
	CHECK(copy != NULL);
	if (len > 0)
		memcpy(copy, p, len);
	check_payload(copy, len, cut);
	free(copy);
}

/* Cut every SB 232 out of a telnet stream and check its payload. */
static void
check_stream(const uint8_t *d, size_t n)
{
	uint8_t *sb;
	size_t i, len = 0;
	bool in = false;

	if ((sb = malloc(n ? n : 1)) == NULL)
		abort();
	for (i = 0; i < n; i++) {
		if (!in) {
			if (d[i] == 0xff && i + 2 < n && d[i + 1] == 0xfa) {
				in = d[i + 2] == 232;
				len = 0;
				i += 2;
			} else if (d[i] == 0xff && i + 1 < n)
				i++;
			continue;
		}
		if (d[i] == 0xff && i + 1 < n) {
			if (d[i + 1] == 0xf0) {
				check_copy(sb, len, len / 2);
				in = false;
				i++;
				continue;
			}
			if (d[i + 1] != 0xff) {
				in = false;	/* IAC x inside SB: drop it */
				i++;
				continue;
			}
			i++;
		}
		sb[len++] = d[i];
	}
	free(sb);
}

/* Check the UUID, URI match and label helpers on the raw input. */
static void
check_identity(const uint8_t *d, size_t n)
{
	static const char *const prefixes[] = {
		"*", "vSPC.py", "", "telnet://", "a",
	};
	char uuid[33], label[80];
	size_t i, hex = 0, cap, l;
	bool other = false;
	int r;

	r = vmwext_uuid_normalise(d, n, uuid);
	for (i = 0; i < n; i++) {
		if ((d[i] >= '0' && d[i] <= '9') ||
		    (d[i] >= 'a' && d[i] <= 'f') ||
		    (d[i] >= 'A' && d[i] <= 'F'))
			hex++;
		else if (d[i] != ' ' && d[i] != '-')
			other = true;
	}
	CHECK((r == 0) == (!other && hex == 32));
	if (r == 0) {
		CHECK(strlen(uuid) == 32);
		for (i = 0; i < 32; i++)
			CHECK((uuid[i] >= '0' && uuid[i] <= '9') ||
			    (uuid[i] >= 'a' && uuid[i] <= 'f'));
	} else
		CHECK(uuid[0] == '\0');

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		r = vmwext_uri_match(d, n, prefixes[i]);
		if (i == 0)
			CHECK(r);
	}
	/* An exact prefix always matches itself. */
	if (n > 0 && memchr(d, '\0', n) == NULL && n < sizeof label &&
	    !(n >= 6 && strncasecmp((const char *)d, "telnet", 6) == 0)) {
		memcpy(label, d, n);
		label[n] = '\0';
		CHECK(vmwext_uri_match(d, n, label));
	}

	cap = n > 0 ? d[0] % sizeof label : 0;
	memset(label, 'X', sizeof label);
	l = vmwext_uri_label(d, n, label, cap);
	if (cap == 0)
		CHECK(l == 0 && label[0] == 'X');
	else {
		CHECK(l < cap && strlen(label) == l);
		for (i = 0; i < l; i++)
			CHECK((label[i] >= 'A' && label[i] <= 'Z') ||
			    (label[i] >= 'a' && label[i] <= 'z') ||
			    (label[i] >= '0' && label[i] <= '9') ||
			    label[i] == '.' || label[i] == '_' ||
			    label[i] == '-');
		CHECK(label[cap] == 'X');
	}
}

/* Run one fuzz input. */
int
LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	check_copy(d, n, n > 1 ? d[n - 1] % n : 0);
	check_stream(d, n);
	check_identity(d, n);
	return (0);
}
