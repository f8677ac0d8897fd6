/*
 * Network address helpers: CIDR allowlists and per-source connection
 * counts. No I/O.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

/* Parse "ADDR" or "ADDR/BITS" (IPv4 or IPv6). Returns 0 or -1. */
int
cidr_parse(const char *s, struct cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	const char *errstr;
	int max;

	if (strlcpy(buf, s, sizeof buf) >= sizeof buf)
		return (-1);
	memset(c, 0, sizeof *c);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		return (-1);
	c->bits = max;
	if (slash != NULL) {
		c->bits = (int)strtonum(slash, 0, max, &errstr);
		if (errstr != NULL)
			return (-1);
	}
	return (0);
}

/* Address bytes of sa, with IPv4-mapped IPv6 turned into IPv4. */
static int
sockaddr_bytes(const struct sockaddr *sa, uint8_t out[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	const struct sockaddr_in6 *s6;

	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
		return (AF_INET);
	}
	if (sa->sa_family == AF_INET6) {
		s6 = (const void *)sa;
		if (memcmp(s6->sin6_addr.s6_addr, mapped, 12) == 0) {
			memcpy(out, s6->sin6_addr.s6_addr + 12, 4);
			return (AF_INET);
		}
		memcpy(out, s6->sin6_addr.s6_addr, 16);
		return (AF_INET6);
	}
	return (-1);
}

/* True if sa is inside the network c. */
bool
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam, full, rest;

	if ((fam = sockaddr_bytes(sa, a)) != c->family)
		return (false);
	full = c->bits / 8;
	rest = c->bits % 8;
	if (memcmp(a, c->addr, (size_t)full) != 0)
		return (false);
	if (rest == 0)
		return (true);
	return (((a[full] ^ c->addr[full]) & (0xff << (8 - rest)) & 0xff) ==
	    0);
}

/* True if two socket addresses are the same host (ports ignored). */
bool
sockaddr_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	uint8_t x[16], y[16];
	int fa, fb;

	fa = sockaddr_bytes(a, x);
	fb = sockaddr_bytes(b, y);
	if (fa == -1 || fa != fb)
		return (false);
	return (memcmp(x, y, fa == AF_INET ? 4 : 16) == 0);
}

/* True if sa is a loopback address (127/8, ::1, or v4-mapped 127/8). */
bool
sockaddr_is_loopback(const struct sockaddr *sa)
{
	static const uint8_t v6lo[16] = { [15] = 1 };
	uint8_t a[16];
	int fam;

	if ((fam = sockaddr_bytes(sa, a)) == AF_INET)
		return (a[0] == 127);
	return (fam == AF_INET6 && memcmp(a, v6lo, 16) == 0);
}

struct source {
	RB_ENTRY(source)	 entry;
	int			 family;
	uint8_t			 addr[16];
	int			 count;
};

/* Order sources by address. */
static int
source_cmp(struct source *a, struct source *b)
{
	if (a->family != b->family)
		return (a->family < b->family ? -1 : 1);
	return (memcmp(a->addr, b->addr, sizeof a->addr));
}

RB_HEAD(sources, source) sources = RB_INITIALIZER(&sources);
RB_GENERATE_STATIC(sources, source, entry, source_cmp)

/*
 * Add delta to the number of connections of a kind (SOURCE_VM,
 * SOURCE_CLIENT) from sa's host and return the new count (entries are freed
 * when they drop to zero).
 */
int
source_count(int kind, const struct sockaddr *sa, int delta)
{
	struct source find, *s;
	int n;

	memset(&find, 0, sizeof find);
	if ((find.family = sockaddr_bytes(sa, find.addr)) == -1)
		return (0);
	find.family += kind * 1000;	/* separate tables per kind */
	if ((s = RB_FIND(sources, &sources, &find)) == NULL) {
		if (delta <= 0)
			return (0);
		s = xcalloc(1, sizeof *s);
		s->family = find.family;
		memcpy(s->addr, find.addr, sizeof s->addr);
		RB_INSERT(sources, &sources, s);
	}
	s->count += delta;
	n = s->count;
	if (n <= 0) {
		RB_REMOVE(sources, &sources, s);
		free(s);
		n = 0;
	}
	return (n);
}
