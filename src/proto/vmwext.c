/*
 * VMware telnet extension (option 232) codec. Decoding is driven by one
 * table indexed by command code: each known code has a name and a payload
 * kind, and the kind alone decides the length rule. The decoder never
 * copies: every view in struct vmwext_msg points into the caller's buffer.
 */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmwext.h"

#define VMWEXT_IAC	255
#define VMWEXT_SB	250
#define VMWEXT_SE	240
#define VMWEXT_OPT	232

/* Payload shapes; each one carries its own length rule. */
enum vmwext_kind {
	VMWEXT_K_NONE = 0,	/* not a known code */
	VMWEXT_K_LIST,		/* KS-1/KS-2: codes, any length */
	VMWEXT_K_CODE,		/* UNKNOWN-*: exactly one code byte */
	VMWEXT_K_COOKIE,	/* sequence (and secret): 1..COOKIE_MAX */
	VMWEXT_K_EMPTY,		/* nothing expected; extra bytes ignored */
	VMWEXT_K_PROXY,		/* DO-PROXY: direction byte, then URI */
	VMWEXT_K_TEXT,		/* identity text, any length */
};

struct vmwext_info {
	const char *name;
	enum vmwext_kind kind;
};

static const struct vmwext_info vmwext_table[256] = {
	[VMWEXT_KNOWN_SUBOPTIONS_1] = { "KNOWN-SUBOPTIONS-1", VMWEXT_K_LIST },
	[VMWEXT_KNOWN_SUBOPTIONS_2] = { "KNOWN-SUBOPTIONS-2", VMWEXT_K_LIST },
	[VMWEXT_UNKNOWN_SUBOPTION_RCVD_1] =
	    { "UNKNOWN-SUBOPTION-RCVD-1", VMWEXT_K_CODE },
	[VMWEXT_UNKNOWN_SUBOPTION_RCVD_2] =
	    { "UNKNOWN-SUBOPTION-RCVD-2", VMWEXT_K_CODE },
	[VMWEXT_VMOTION_BEGIN] = { "VMOTION-BEGIN", VMWEXT_K_COOKIE },
	[VMWEXT_VMOTION_GOAHEAD] = { "VMOTION-GOAHEAD", VMWEXT_K_COOKIE },
	[VMWEXT_VMOTION_NOTNOW] = { "VMOTION-NOTNOW", VMWEXT_K_COOKIE },
	[VMWEXT_VMOTION_PEER] = { "VMOTION-PEER", VMWEXT_K_COOKIE },
	[VMWEXT_VMOTION_PEER_OK] = { "VMOTION-PEER-OK", VMWEXT_K_COOKIE },
	[VMWEXT_VMOTION_COMPLETE] = { "VMOTION-COMPLETE", VMWEXT_K_COOKIE },
	[VMWEXT_VMOTION_ABORT] = { "VMOTION-ABORT", VMWEXT_K_EMPTY },
	[VMWEXT_DO_PROXY] = { "DO-PROXY", VMWEXT_K_PROXY },
	[VMWEXT_WILL_PROXY] = { "WILL-PROXY", VMWEXT_K_EMPTY },
	[VMWEXT_WONT_PROXY] = { "WONT-PROXY", VMWEXT_K_EMPTY },
	[VMWEXT_VM_VC_UUID] = { "VM-VC-UUID", VMWEXT_K_TEXT },
	[VMWEXT_GET_VM_VC_UUID] = { "GET-VM-VC-UUID", VMWEXT_K_EMPTY },
	[VMWEXT_VM_NAME] = { "VM-NAME", VMWEXT_K_TEXT },
	[VMWEXT_GET_VM_NAME] = { "GET-VM-NAME", VMWEXT_K_EMPTY },
	[VMWEXT_VM_BIOS_UUID] = { "VM-BIOS-UUID", VMWEXT_K_TEXT },
	[VMWEXT_GET_VM_BIOS_UUID] = { "GET-VM-BIOS-UUID", VMWEXT_K_EMPTY },
	[VMWEXT_VM_LOCATION_UUID] = { "VM-LOCATION-UUID", VMWEXT_K_TEXT },
	[VMWEXT_GET_VM_LOCATION_UUID] =
	    { "GET-VM-LOCATION-UUID", VMWEXT_K_EMPTY },
};
static_assert(sizeof(vmwext_table) / sizeof(vmwext_table[0]) == 256,
    "vmwext_table must cover every byte value");

/*
 * Section 4.3 step 4 of the protocol notes: every code we handle, including
 * all vMotion codes. 84-87 are left out because we never send their GETs.
 */
const uint8_t vmwext_ks2_list[] = {
	VMWEXT_KNOWN_SUBOPTIONS_1,
	VMWEXT_KNOWN_SUBOPTIONS_2,
	VMWEXT_UNKNOWN_SUBOPTION_RCVD_1,
	VMWEXT_UNKNOWN_SUBOPTION_RCVD_2,
	VMWEXT_VMOTION_BEGIN,
	VMWEXT_VMOTION_GOAHEAD,
	VMWEXT_VMOTION_NOTNOW,
	VMWEXT_VMOTION_PEER,
	VMWEXT_VMOTION_PEER_OK,
	VMWEXT_VMOTION_COMPLETE,
	VMWEXT_VMOTION_ABORT,
	VMWEXT_DO_PROXY,
	VMWEXT_WILL_PROXY,
	VMWEXT_WONT_PROXY,
	VMWEXT_VM_VC_UUID,
	VMWEXT_GET_VM_VC_UUID,
	VMWEXT_VM_NAME,
	VMWEXT_GET_VM_NAME,
};
const size_t vmwext_ks2_len = sizeof(vmwext_ks2_list);

/* Decode one SB payload into m; see vmwext.h for the length rules. */
int
vmwext_decode(const uint8_t *sb, size_t len, struct vmwext_msg *m)
{
	const struct vmwext_info *info;

	memset(m, 0, sizeof(*m));
	if (sb == NULL || len == 0)
		return (VMWEXT_EMPTY);
	m->cmd = sb[0];
	m->payload = sb + 1;
	m->len = len - 1;

	info = &vmwext_table[m->cmd];
	switch (info->kind) {
	case VMWEXT_K_NONE:
		return (VMWEXT_UNKNOWN);
	case VMWEXT_K_CODE:
		if (m->len != 1)
			return (VMWEXT_BADLEN);
		m->code = m->payload[0];
		break;
	case VMWEXT_K_COOKIE:
		if (m->len < 1 || m->len > VMWEXT_COOKIE_MAX)
			return (VMWEXT_BADLEN);
		break;
	case VMWEXT_K_PROXY:
		if (m->len < 1)
			return (VMWEXT_BADLEN);
		m->direction = m->payload[0];
		m->uri = m->payload + 1;
		m->uri_len = m->len - 1;
		break;
	case VMWEXT_K_LIST:
	case VMWEXT_K_EMPTY:
	case VMWEXT_K_TEXT:
		break;
	}
	return (VMWEXT_OK);
}

/* Return the name of a command code. */
const char *
vmwext_cmd_name(uint8_t cmd)
{
	if (vmwext_table[cmd].name == NULL)
		return ("UNKNOWN");
	return (vmwext_table[cmd].name);
}

/* Tell whether cmd is a known command code. */
bool
vmwext_cmd_known(uint8_t cmd)
{
	return (vmwext_table[cmd].kind != VMWEXT_K_NONE);
}

/* Append one byte, doubling IAC; false if it does not fit. */
static bool
vmwext_put(uint8_t *dst, size_t cap, size_t *off, uint8_t c)
{
	size_t need;

	need = c == VMWEXT_IAC ? 2 : 1;
	if (cap - *off < need)
		return (false);
	dst[(*off)++] = c;
	if (c == VMWEXT_IAC)
		dst[(*off)++] = c;
	return (true);
}

/* Append a field, doubling IAC; false if it does not fit. */
static bool
vmwext_put_field(uint8_t *dst, size_t cap, size_t *off, const uint8_t *src,
    size_t len)
{
	size_t i;

	if (src == NULL)
		return (true);
	for (i = 0; i < len; i++) {
		if (!vmwext_put(dst, cap, off, src[i]))
			return (false);
	}
	return (true);
}

/* Encode IAC SB 232 cmd a b IAC SE with IAC doubled in the body. */
size_t
vmwext_encode(uint8_t *dst, size_t cap, uint8_t cmd,
    const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t off = 0;

	if (dst == NULL || cap < 3)
		return (0);
	dst[off++] = VMWEXT_IAC;
	dst[off++] = VMWEXT_SB;
	dst[off++] = VMWEXT_OPT;
	if (!vmwext_put(dst, cap, &off, cmd) ||
	    !vmwext_put_field(dst, cap, &off, a, alen) ||
	    !vmwext_put_field(dst, cap, &off, b, blen))
		return (0);
	if (cap - off < 2)
		return (0);
	dst[off++] = VMWEXT_IAC;
	dst[off++] = VMWEXT_SE;
	return (off);
}

/* Return the value of a hex digit, or -1. */
static int
vmwext_hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* Normalise a UUID to 32 lowercase hex digits. */
int
vmwext_uuid_normalise(const uint8_t *raw, size_t len, char out[33])
{
	static const char digits[] = "0123456789abcdef";
	size_t i, n = 0;
	int v;

	out[0] = '\0';
	if (raw == NULL)
		return (-1);
	for (i = 0; i < len; i++) {
		if (raw[i] == ' ' || raw[i] == '-')
			continue;
		if ((v = vmwext_hexval(raw[i])) == -1 || n == 32) {
			out[0] = '\0';
			return (-1);
		}
		out[n++] = digits[v];
	}
	if (n != 32) {
		out[0] = '\0';
		return (-1);
	}
	out[32] = '\0';
	return (0);
}

/* Tell whether the len bytes at s start with the C string p. */
static bool
vmwext_startswith(const uint8_t *s, size_t len, const char *p, bool icase)
{
	size_t i;
	uint8_t c, d;

	for (i = 0; p[i] != '\0'; i++) {
		if (i >= len)
			return (false);
		c = s[i];
		d = (uint8_t)p[i];
		if (icase && c >= 'A' && c <= 'Z')
			c = c - 'A' + 'a';
		if (c != d)
			return (false);
	}
	return (true);
}

/* Match a service URI against the configured prefix. */
bool
vmwext_uri_match(const uint8_t *uri, size_t len, const char *prefix)
{
	static const char *const schemes[] = { "telnet://", "telnets://" };
	const uint8_t *slash;
	size_t i, plen, skip;

	if (prefix == NULL)
		return (false);
	if (strcmp(prefix, "*") == 0)
		return (true);
	if (uri == NULL)
		len = 0;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (!vmwext_startswith(uri, len, schemes[i], true))
			continue;
		skip = strlen(schemes[i]);
		slash = memchr(uri + skip, '/', len - skip);
		if (slash == NULL)
			return (true);	/* bare telnet://host[:port] */
		skip = (size_t)(slash - uri) + 1;
		if (skip == len)
			return (true);	/* telnet://host[:port]/ */
		uri += skip;
		len -= skip;
		break;
	}

	plen = strlen(prefix);
	if (!vmwext_startswith(uri, len, prefix, false))
		return (false);
	if (len == plen)
		return (true);
	return (uri[plen] == '?' || uri[plen] == '/' || uri[plen] == '#');
}

/* Tell whether c may appear in a port label. */
static bool
vmwext_labelchar(uint8_t c)
{
	return ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-');
}

/* Extract the "port=" query parameter of a service URI as a label. */
size_t
vmwext_uri_label(const uint8_t *uri, size_t len, char *out, size_t outcap)
{
	const uint8_t *q, *end, *p, *amp, *val;
	size_t n = 0;

	if (out == NULL || outcap == 0)
		return (0);
	out[0] = '\0';
	if (uri == NULL || len == 0)
		return (0);
	if ((end = memchr(uri, '#', len)) == NULL)
		end = uri + len;
	if ((q = memchr(uri, '?', (size_t)(end - uri))) == NULL)
		return (0);
	q++;

	for (p = q;; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if ((size_t)(amp - p) >= 5 && memcmp(p, "port=", 5) == 0) {
			for (val = p + 5; val < amp && n < outcap - 1; val++) {
				if (vmwext_labelchar(*val))
					out[n++] = (char)*val;
			}
			break;
		}
		if (amp == end)
			break;
	}
	out[n] = '\0';
	return (n);
}
