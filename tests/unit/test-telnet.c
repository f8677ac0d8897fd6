/*
 * Unit tests for the telnet codec (src/proto/telnet.c).
 *
 * Events are rendered into a compact text form so that whole sequences can
 * be compared at once; adjacent DATA events are coalesced first:
 *   Dhex      data               Chh       two-byte command
 *   Ncmdopt   negotiation seen   Oopt[uh][+-] option changed (us/him)
 *   Sopt:hex  subnegotiation     En        error code n
 *   Thex      bytes to send
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "telnet.h"

struct buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

struct rec {
	char *s;		/* rendered events */
	size_t len;
	size_t cap;
	bool last_data;
	struct buf data;	/* all DATA bytes */
	struct buf sent;	/* all SEND bytes */
	size_t nother;		/* events other than DATA */
	size_t nsb_too_long;
};

/* Append bytes to a growable buffer. */
static void
buf_add(struct buf *b, const void *p, size_t len)
{
	size_t cap;

	if (b->p == NULL || b->len + len > b->cap) {
		cap = b->cap == 0 ? 256 : b->cap;
		while (cap < b->len + len)
			cap *= 2;
		if ((b->p = realloc(b->p, cap)) == NULL)
			abort();
		b->cap = cap;
	}
	if (len > 0)
		memcpy(b->p + b->len, p, len);
	b->len += len;
}

/* Append formatted text to the rendered event string. */
static void __attribute__((__format__(__printf__, 2, 3)))
rec_printf(struct rec *r, const char *fmt, ...)
{
	va_list ap;
	int n;
	size_t cap;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	if (r->len + (size_t)n + 1 > r->cap) {
		cap = r->cap == 0 ? 256 : r->cap;
		while (cap < r->len + (size_t)n + 1)
			cap *= 2;
		if ((r->s = realloc(r->s, cap)) == NULL)
			abort();
		r->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(r->s + r->len, r->cap - r->len, fmt, ap);
	va_end(ap);
	r->len += (size_t)n;
}

/* Append bytes as hex to the rendered event string. */
static void
rec_hex(struct rec *r, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		rec_printf(r, "%02x", p[i]);
}

/* Reset a recorder, keeping its allocations. */
static void
rec_reset(struct rec *r)
{
	r->len = 0;
	if (r->s != NULL)
		r->s[0] = '\0';
	r->last_data = false;
	r->data.len = 0;
	r->sent.len = 0;
	buf_add(&r->data, NULL, 0);
	buf_add(&r->sent, NULL, 0);
	r->nother = 0;
	r->nsb_too_long = 0;
}

/* Free a recorder. */
static void
rec_free(struct rec *r)
{
	free(r->s);
	free(r->data.p);
	free(r->sent.p);
	memset(r, 0, sizeof(*r));
}

/* Return the rendered events ("" when there were none). */
static const char *
rec_str(const struct rec *r)
{
	return (r->s != NULL ? r->s : "");
}

/* Record one event, coalescing adjacent DATA. */
static void
rec_cb(void *arg, const struct telnet_event *ev)
{
	struct rec *r = arg;

	if (ev->type == TELNET_EV_DATA) {
		buf_add(&r->data, ev->data, ev->len);
		if (!r->last_data)
			rec_printf(r, "%sD", r->len > 0 ? " " : "");
		rec_hex(r, ev->data, ev->len);
		r->last_data = true;
		return;
	}
	r->last_data = false;
	r->nother++;
	if (r->len > 0)
		rec_printf(r, " ");
	switch (ev->type) {
	case TELNET_EV_CMD:
		rec_printf(r, "C%02x", ev->cmd);
		break;
	case TELNET_EV_NEG:
		rec_printf(r, "N%02x%02x", ev->cmd, ev->opt);
		break;
	case TELNET_EV_OPTION:
		rec_printf(r, "O%02x%c%c", ev->opt, ev->us ? 'u' : 'h',
		    ev->enabled ? '+' : '-');
		break;
	case TELNET_EV_SB:
		rec_printf(r, "S%02x:", ev->opt);
		rec_hex(r, ev->data, ev->len);
		break;
	case TELNET_EV_ERROR:
		rec_printf(r, "E%d", (int)ev->err);
		if (ev->err == TELNET_ERR_SB_TOO_LONG)
			r->nsb_too_long++;
		break;
	case TELNET_EV_SEND:
		rec_printf(r, "T");
		rec_hex(r, ev->data, ev->len);
		buf_add(&r->sent, ev->data, ev->len);
		break;
	default:
		rec_printf(r, "?%d", (int)ev->type);
		break;
	}
}

/*
 * Every test that feeds input does it through tn_input(), run once with
 * telnet_input(), once with telnet_input_inplace() on a heap copy and once
 * with telnet_input_data() wherever the parser is in the data state (the
 * recorder coalesces adjacent DATA, so all must render the same).
 */
static bool inplace;
static bool dataprefix;
static size_t dataprefix_bad;	/* telnet_input_data broke its contract */

/* Render the data telnet_input_data() took as the DATA event it stands for. */
static void
tn_emit_data(struct telnet *t, const uint8_t *p, size_t len)
{
	struct telnet_event ev;

	if (len == 0 || t->cb == NULL)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = TELNET_EV_DATA;
	ev.data = p;
	ev.len = len;
	t->cb(t->arg, &ev);
}

/*
 * Feed n bytes as vm.c's read path may: the console data at the front with
 * telnet_input_data(), then one byte through telnet_input_inplace(), and so
 * on. Checks the contract as it goes: what was taken is the escaped form
 * of what came out, it stops only at an IAC that is not half of a pair
 * inside the piece, and nothing is taken outside the data state.
 */
static void
tn_input_dataprefix(struct telnet *t, const uint8_t *in, size_t n)
{
	uint8_t *base, *copy, *dst, *esc;
	size_t k, dlen, elen;
	bool data;

	/* Heap copies of the exact size, so ASan sees any overrun. */
	if ((base = copy = malloc(n > 0 ? n : 1)) == NULL ||
	    (dst = malloc(n > 0 ? n : 1)) == NULL ||
	    (esc = malloc(2 * n + 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(copy, in, n);
	while (n > 0) {
		data = telnet_in_data(t);
		k = telnet_input_data(t, copy, n, dst, &dlen);
		elen = telnet_escape(esc, dst, dlen);
		if ((!data && (k != 0 || dlen != 0)) || k > n ||
		    telnet_in_data(t) != data || elen != k ||
		    memcmp(esc, copy, k) != 0 ||
		    (data && k < n && (copy[k] != TELNET_IAC ||
		    (k + 1 < n && copy[k + 1] == TELNET_IAC))))
			dataprefix_bad++;
		tn_emit_data(t, dst, dlen);
		copy += k;
		n -= k;
		if (n == 0)
			break;
		telnet_input_inplace(t, copy, 1);
		copy++;
		n--;
	}
	free(esc);
	free(dst);
	free(base);
}

/* Feed n bytes the way this pass tests. */
static void
tn_input(struct telnet *t, const uint8_t *in, size_t n)
{
	uint8_t *copy;

	if (dataprefix) {
		tn_input_dataprefix(t, in, n);
		return;
	}
	if (!inplace) {
		telnet_input(t, in, n);
		return;
	}
	if ((copy = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(copy, in, n);
	telnet_input_inplace(t, copy, n);
	free(copy);
}

/* Feed in[0..n) to t cut at the given sorted offsets. */
static void
feed_cuts(struct telnet *t, const uint8_t *in, size_t n, const size_t *cuts,
    size_t ncuts)
{
	size_t i, at = 0, end;

	for (i = 0; i <= ncuts; i++) {
		end = i < ncuts ? cuts[i] : n;
		if (end > n)
			end = n;
		if (end < at)
			continue;
		tn_input(t, in + at, end - at);
		at = end;
	}
}

/* Feed one byte per call, each from its own heap copy (for ASan). */
static void
feed_bytes(struct telnet *t, const uint8_t *in, size_t n)
{
	uint8_t *one;
	size_t i;

	for (i = 0; i < n; i++) {
		if ((one = malloc(1)) == NULL)
			abort();
		*one = in[i];
		tn_input(t, one, 1);
		free(one);
	}
}

/*
 * Decode in[0..n) whole, split in two at every offset and one byte at a
 * time; return NULL if all agree with want, else a description (static).
 */
static const char *
decode_all_ways(const uint8_t *in, size_t n, void (*setup)(struct telnet *),
    const char *want)
{
	static char msg[256];
	struct telnet t;
	struct rec r;
	size_t cut;
	const char *bad = NULL;

	memset(&r, 0, sizeof(r));
	for (cut = 0; cut <= n + 1 && bad == NULL; cut++) {
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		if (setup != NULL)
			setup(&t);
		if (cut == n + 1)
			feed_bytes(&t, in, n);
		else
			feed_cuts(&t, in, n, &cut, 1);
		telnet_free(&t);
		if (strcmp(rec_str(&r), want) != 0) {
			snprintf(msg, sizeof(msg), "cut %zu/%zu: got \"%.180s\"",
			    cut, n, rec_str(&r));
			bad = msg;
		}
	}
	rec_free(&r);
	return (bad);
}

/* Decode a hex string in one call and return the rendered events. */
static const char *
decode_hex(struct rec *r, const char *hex, void (*setup)(struct telnet *))
{
	struct telnet t;
	uint8_t in[1024];
	size_t n;

	n = t_hex(hex, in, sizeof(in));
	rec_reset(r);
	telnet_init(&t, rec_cb, r);
	if (setup != NULL)
		setup(&t);
	tn_input(&t, in, n);
	telnet_free(&t);
	return (rec_str(r));
}

/* The daemon's VM-link policy. */
static void
vm_policy(struct telnet *t)
{
	telnet_set_accept(t, TELOPT_BINARY, true, true);
	telnet_set_accept(t, TELOPT_SGA, true, true);
	telnet_set_accept(t, TELOPT_VMWARE, false, true);
}

static const struct {
	const char *in;
	const char *want;
} tv9[] = {
	{ "31 32 33", "D313233" },
	{ "31 32 33 ff f1 34 35 36", "D313233 Cf1 D343536" },
	{ "31 32 33 ff ff 34 35 36", "D313233ff343536" },
	/* Default policy refuses option 123. */
	{ "31 ff fb 7b 32", "D31 Nfb7b Tfffe7b D32" },
	{ "31 ff fa 7b 01 02 ff f0 32", "D31 S7b:0102 D32" },
	{ "31 ff fa 7b 01 ff ff 02 ff f0 32", "D31 S7b:01ff02 D32" },
	{ "31 ff fa 7b 01 ff ff ff f0 32", "D31 S7b:01ff D32" },
	{ "31 ff fa 7b 01 ff ff f0 ff f0 32", "D31 S7b:01fff0 D32" },
	{ "ff fa e8 28 76 19 | ff ff e9 ff f0", "Se8:287619ffe9" },
	{ "ff f0", "E1" },
};

/* TV-9: every row, byte-exact, whole and under every split. */
static void
test_tv9(void)
{
	struct rec r;
	uint8_t in[64];
	size_t i, n;
	const char *bad;

	memset(&r, 0, sizeof(r));
	for (i = 0; i < sizeof(tv9) / sizeof(tv9[0]); i++) {
		ASSERT_STR_EQ(decode_hex(&r, tv9[i].in, NULL), tv9[i].want);
		n = t_hex(tv9[i].in, in, sizeof(in));
		bad = decode_all_ways(in, n, NULL, tv9[i].want);
		if (bad != NULL)
			fprintf(stderr, "row %zu: %s\n", i, bad);
		ASSERT_TRUE(bad == NULL);
	}
	rec_free(&r);
}

/* TV-9 row 9 with the real read boundary between the two pieces. */
static void
test_tv9_split_read(void)
{
	struct telnet t;
	struct rec r;
	uint8_t a[] = { 0xff, 0xfa, 0xe8, 0x28, 0x76, 0x19 };
	uint8_t b[] = { 0xff, 0xff, 0xe9, 0xff, 0xf0 };

	memset(&r, 0, sizeof(r));
	telnet_init(&t, rec_cb, &r);
	tn_input(&t, a, sizeof(a));
	ASSERT_STR_EQ(rec_str(&r), "");
	tn_input(&t, b, sizeof(b));
	ASSERT_STR_EQ(rec_str(&r), "Se8:287619ffe9");
	telnet_free(&t);
	rec_free(&r);
}

struct raw {
	const uint8_t *base;
	size_t n;
	size_t off[8];
	size_t len[8];
	int type[8];
};

/* Record raw events with their offsets into the input buffer. */
static void
raw_cb(void *arg, const struct telnet_event *ev)
{
	struct raw *w = arg;

	if (w->n >= 8)
		return;
	w->type[w->n] = ev->type;
	w->off[w->n] = ev->type == TELNET_EV_DATA ?
	    (size_t)(ev->data - w->base) : 0;
	w->len[w->n] = ev->len;
	w->n++;
}

/* DATA events point into the input; IAC IAC is one byte at the second FF. */
static void
test_zero_copy(void)
{
	struct telnet t;
	struct raw w;
	uint8_t in[] = { 0x31, 0x32, 0xff, 0xff, 0x33, 0x00, 0x11 };

	memset(&w, 0, sizeof(w));
	w.base = in;
	telnet_init(&t, raw_cb, &w);
	telnet_input(&t, in, sizeof(in));
	telnet_free(&t);
	ASSERT_INT_EQ(w.n, 3);
	ASSERT_INT_EQ(w.type[0], TELNET_EV_DATA);
	ASSERT_INT_EQ(w.off[0], 0);
	ASSERT_INT_EQ(w.len[0], 2);
	ASSERT_INT_EQ(w.type[1], TELNET_EV_DATA);
	ASSERT_INT_EQ(w.off[1], 3);
	ASSERT_INT_EQ(w.len[1], 1);
	ASSERT_INT_EQ(w.type[2], TELNET_EV_DATA);
	ASSERT_INT_EQ(w.off[2], 4);
	ASSERT_INT_EQ(w.len[2], 3);
}

/* Accept SGA on his side (for the broken-SB test). */
static void
sga_policy(struct telnet *t)
{
	telnet_set_accept(t, TELOPT_SGA, false, true);
}

/* Commands, malformed SB and SE outside SB all recover. */
static void
test_malformed(void)
{
	struct rec r;
	uint8_t in[64];
	size_t n;
	const char *want, *bad;

	memset(&r, 0, sizeof(r));
	/* Two-byte commands, including values below 0xF0. */
	ASSERT_STR_EQ(decode_hex(&r, "ff f4 ff 05 41 ff 00 ff ef ff f2", NULL),
	    "Cf4 C05 D41 C00 Cef Cf2");
	/* IAC SE outside SB is ignored. */
	ASSERT_STR_EQ(decode_hex(&r, "41 ff f0 42", NULL), "D41 E1 D42");
	/* IAC WILL after a broken SB still negotiates. */
	want = "D31 E2 S7b:0102 Nfb03 Tfffd03 O03h+ D33";
	ASSERT_STR_EQ(decode_hex(&r, "31 ff fa 7b 01 02 ff fb 03 33",
	    sga_policy), want);
	n = t_hex("31 ff fa 7b 01 02 ff fb 03 33", in, sizeof(in));
	bad = decode_all_ways(in, n, sga_policy, want);
	ASSERT_TRUE(bad == NULL);
	/* A command inside SB ends it; the command is delivered. */
	ASSERT_STR_EQ(decode_hex(&r, "ff fa 18 01 ff f1 41", NULL),
	    "E2 S18:01 Cf1 D41");
	/* IAC SB inside SB ends the first and opens a second. */
	ASSERT_STR_EQ(decode_hex(&r, "ff fa 18 01 ff fa 19 02 ff f0", NULL),
	    "E2 S18:01 S19:02");
	/* Bad IAC right after the option byte: an empty SB. */
	ASSERT_STR_EQ(decode_hex(&r, "ff fa 18 ff f1", NULL),
	    "E2 S18: Cf1");
	/* IAC SE inside SB after a broken SB: the SE is outside now. */
	ASSERT_STR_EQ(decode_hex(&r, "ff fa 18 ff f1 ff f0", NULL),
	    "E2 S18: Cf1 E1");
	/* Empty SB, and an SB for option 255. */
	ASSERT_STR_EQ(decode_hex(&r, "ff fa 7b ff f0 ff fa ff ff ff ff f0",
	    NULL), "S7b: Sff:ff");
	/* IAC IAC IAC SE: a data FF, then SE outside SB. */
	ASSERT_STR_EQ(decode_hex(&r, "ff ff ff f0", NULL), "Dff E1");
	/* NUL, XON, XOFF pass through. */
	ASSERT_STR_EQ(decode_hex(&r, "00 11 13 0d 0a", NULL), "D0011130d0a");
	rec_free(&r);
}

/* Read the V>P data segments of stream 0 from the capture transcript. */
static size_t
load_stream0(struct buf *all, size_t *seg, size_t maxseg)
{
	static const char *paths[] = {
		"tests/data/capture-transcript.tsv",
		"../tests/data/capture-transcript.tsv",
		"../../tests/data/capture-transcript.tsv",
	};
	FILE *f = NULL;
	char line[4096], *fld[5], *p;
	uint8_t bytes[2048];
	size_t i, nseg = 0, n;
	int nf;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]) && f == NULL; i++)
		f = fopen(paths[i], "r");
	if (f == NULL)
		return (0);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (line[0] == '#')
			continue;
		line[strcspn(line, "\r\n")] = '\0';
		nf = 0;
		p = line;
		fld[nf++] = p;
		while (nf < 5 && (p = strchr(p, '\t')) != NULL) {
			*p++ = '\0';
			fld[nf++] = p;
		}
		if (nf < 5 || strcmp(fld[1], "0") != 0 ||
		    strcmp(fld[2], "V>P") != 0 || strcmp(fld[3], "data") != 0)
			continue;
		n = t_hex(fld[4], bytes, sizeof(bytes));
		if (n == 0 || nseg >= maxseg)
			continue;
		buf_add(all, bytes, n);
		seg[nseg++] = all->len;
	}
	fclose(f);
	return (nseg);
}

/* Set up the VM-link policy and send the daemon's opening requests. */
static void
vm_open(struct telnet *t)
{
	vm_policy(t);
	telnet_request(t, TELOPT_BINARY, true, true);
	telnet_request(t, TELOPT_BINARY, false, true);
	telnet_request(t, TELOPT_SGA, true, true);
	telnet_request(t, TELOPT_SGA, false, true);
	telnet_request(t, TELOPT_VMWARE, false, true);
}

/* Stream 0 of the capture: real segments, every split, byte at a time. */
static void
test_capture_stream0(void)
{
	struct telnet t;
	struct rec r;
	struct buf all;
	size_t seg[256], nseg, cut;
	uint8_t want_open[64], want_sent[64];
	size_t nopen, nsent;
	char *want;

	memset(&r, 0, sizeof(r));
	memset(&all, 0, sizeof(all));
	nseg = load_stream0(&all, seg, 256);
	ASSERT_TRUE(nseg > 20);

	/* Opening requests. */
	telnet_init(&t, rec_cb, &r);
	vm_open(&t);
	nopen = t_hex("ff fb 00 ff fd 00 ff fb 03 ff fd 03 ff fd e8",
	    want_open, sizeof(want_open));
	ASSERT_MEM_EQ(r.sent.p, r.sent.len, want_open, nopen);

	/* The real TCP segments. */
	rec_reset(&r);
	feed_cuts(&t, all.p, all.len, seg, nseg);
	nsent = t_hex("ff fe 25 ff fc 01 ff fe 2c", want_sent,
	    sizeof(want_sent));
	ASSERT_MEM_EQ(r.sent.p, r.sent.len, want_sent, nsent);
	ASSERT_TRUE(strstr(rec_str(&r), "Nfb25 Tfffe25") != NULL);
	ASSERT_TRUE(strstr(rec_str(&r), "Nfb2c Tfffe2c") != NULL);
	ASSERT_TRUE(strstr(rec_str(&r), "Nfd01 Tfffc01") != NULL);
	ASSERT_TRUE(strstr(rec_str(&r), "O00u+") != NULL);
	ASSERT_TRUE(strstr(rec_str(&r), "Se8:2844da87f1") != NULL);
	ASSERT_TRUE(telnet_enabled(&t, TELOPT_BINARY, true));
	ASSERT_TRUE(telnet_enabled(&t, TELOPT_BINARY, false));
	ASSERT_TRUE(telnet_enabled(&t, TELOPT_SGA, true));
	ASSERT_TRUE(telnet_enabled(&t, TELOPT_SGA, false));
	ASSERT_TRUE(telnet_enabled(&t, TELOPT_VMWARE, false));
	ASSERT_TRUE(!telnet_enabled(&t, TELOPT_VMWARE, true));
	ASSERT_TRUE(!telnet_enabled(&t, TELOPT_AUTH, false));
	ASSERT_TRUE(!telnet_enabled(&t, TELOPT_COMPORT, false));
	ASSERT_TRUE(!telnet_enabled(&t, TELOPT_ECHO, true));
	ASSERT_INT_EQ(r.data.len, 0x38 - 0x20 + 1);
	ASSERT_INT_EQ(r.data.p[0], 0x20);
	ASSERT_INT_EQ(r.data.p[r.data.len - 1], 0x38);
	ASSERT_TRUE(strstr(rec_str(&r), " E") == NULL);
	telnet_free(&t);
	if ((want = strdup(rec_str(&r))) == NULL)
		abort();

	/* Every two-piece split, and one byte at a time. */
	for (cut = 0; cut <= all.len + 1; cut++) {
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		vm_open(&t);
		rec_reset(&r);
		if (cut == all.len + 1)
			feed_bytes(&t, all.p, all.len);
		else
			feed_cuts(&t, all.p, all.len, &cut, 1);
		telnet_free(&t);
		if (strcmp(rec_str(&r), want) != 0)
			fprintf(stderr, "cut %zu of %zu\n", cut, all.len);
		ASSERT_STR_EQ(rec_str(&r), want);
	}
	free(want);
	free(all.p);
	rec_free(&r);
}

enum { EMPTY = 0, OPP = 1 };
enum { SEND_NONE = 0, SEND_YES, SEND_NO };
enum { CH_NONE = 0, CH_ON, CH_OFF };

/* RFC 1143 receive table (section 10.3), written for "him". */
static const struct {
	int st, q;
	bool positive;		/* WILL (him) / DO (us) */
	int accept;		/* 0 refuse, 1 accept, 2 both */
	int nst, nq;
	int send;
	bool err;
	int change;
} qrecv[] = {
	{ TELNET_Q_NO, EMPTY, true, 1, TELNET_Q_YES, EMPTY, SEND_YES, false,
	    CH_ON },
	{ TELNET_Q_NO, EMPTY, true, 0, TELNET_Q_NO, EMPTY, SEND_NO, false,
	    CH_NONE },
	{ TELNET_Q_YES, EMPTY, true, 2, TELNET_Q_YES, EMPTY, SEND_NONE, false,
	    CH_NONE },
	{ TELNET_Q_WANTNO, EMPTY, true, 2, TELNET_Q_NO, EMPTY, SEND_NONE, true,
	    CH_NONE },
	{ TELNET_Q_WANTNO, OPP, true, 2, TELNET_Q_YES, EMPTY, SEND_NONE, true,
	    CH_ON },
	{ TELNET_Q_WANTYES, EMPTY, true, 2, TELNET_Q_YES, EMPTY, SEND_NONE,
	    false, CH_ON },
	{ TELNET_Q_WANTYES, OPP, true, 2, TELNET_Q_WANTNO, EMPTY, SEND_NO,
	    false, CH_NONE },
	{ TELNET_Q_NO, EMPTY, false, 2, TELNET_Q_NO, EMPTY, SEND_NONE, false,
	    CH_NONE },
	{ TELNET_Q_YES, EMPTY, false, 2, TELNET_Q_NO, EMPTY, SEND_NO, false,
	    CH_OFF },
	{ TELNET_Q_WANTNO, EMPTY, false, 2, TELNET_Q_NO, EMPTY, SEND_NONE,
	    false, CH_NONE },
	{ TELNET_Q_WANTNO, OPP, false, 2, TELNET_Q_WANTYES, EMPTY, SEND_YES,
	    false, CH_NONE },
	{ TELNET_Q_WANTYES, EMPTY, false, 2, TELNET_Q_NO, EMPTY, SEND_NONE,
	    false, CH_NONE },
	{ TELNET_Q_WANTYES, OPP, false, 2, TELNET_Q_NO, EMPTY, SEND_NONE,
	    false, CH_NONE },
};

/* Put one side of opt into a given Q state. */
static void
q_force(struct telnet *t, uint8_t opt, bool us, int st, int q)
{
	if (us) {
		t->opts[opt].us = (unsigned)st & 3;
		t->opts[opt].usq = (unsigned)q & 1;
	} else {
		t->opts[opt].him = (unsigned)st & 3;
		t->opts[opt].himq = (unsigned)q & 1;
	}
}

/* Read one side of opt's Q state as st*2+q. */
static int
q_read(const struct telnet *t, uint8_t opt, bool us)
{
	if (us)
		return (t->opts[opt].us * 2 + t->opts[opt].usq);
	return (t->opts[opt].him * 2 + t->opts[opt].himq);
}

/* Render the events expected for one row of a Q table. */
static void
q_expect(struct rec *w, uint8_t rcmd, bool received, uint8_t opt, bool us,
    int send, bool err, int change)
{
	uint8_t yes = us ? TELNET_WILL : TELNET_DO;
	uint8_t no = us ? TELNET_WONT : TELNET_DONT;

	rec_reset(w);
	if (received)
		rec_printf(w, "N%02x%02x", rcmd, opt);
	if (err)
		rec_printf(w, "%sE%d", w->len ? " " : "", TELNET_ERR_NEG_LOOP);
	if (send != SEND_NONE)
		rec_printf(w, "%sTff%02x%02x", w->len ? " " : "",
		    send == SEND_YES ? yes : no, opt);
	if (change != CH_NONE)
		rec_printf(w, "%sO%02x%c%c", w->len ? " " : "", opt,
		    us ? 'u' : 'h', change == CH_ON ? '+' : '-');
}

/* Every cell of the RFC 1143 receive table, both sides, both policies. */
static void
test_q_receive(void)
{
	static const uint8_t opts[] = { 0, 42, 255 };
	struct telnet t;
	struct rec r, w;
	uint8_t in[3];
	size_t i, k;
	int side, acc;
	bool us, accept;

	memset(&r, 0, sizeof(r));
	memset(&w, 0, sizeof(w));
	for (i = 0; i < sizeof(qrecv) / sizeof(qrecv[0]); i++)
	for (side = 0; side < 2; side++)
	for (acc = 0; acc < 2; acc++)
	for (k = 0; k < sizeof(opts); k++) {
		if (qrecv[i].accept != 2 && qrecv[i].accept != acc)
			continue;
		us = side == 1;
		accept = acc == 1;
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		telnet_set_accept(&t, opts[k], us && accept, !us && accept);
		q_force(&t, opts[k], us, qrecv[i].st, qrecv[i].q);
		/* The other side must stay untouched. */
		q_force(&t, opts[k], !us, TELNET_Q_WANTYES, OPP);
		in[0] = TELNET_IAC;
		if (us)
			in[1] = qrecv[i].positive ? TELNET_DO : TELNET_DONT;
		else
			in[1] = qrecv[i].positive ? TELNET_WILL : TELNET_WONT;
		in[2] = opts[k];
		tn_input(&t, in, 3);
		q_expect(&w, in[1], true, opts[k], us, qrecv[i].send,
		    qrecv[i].err, qrecv[i].change);
		if (strcmp(rec_str(&r), rec_str(&w)) != 0)
			fprintf(stderr, "row %zu side %d accept %d opt %u\n",
			    i, side, acc, opts[k]);
		ASSERT_STR_EQ(rec_str(&r), rec_str(&w));
		ASSERT_INT_EQ(q_read(&t, opts[k], us),
		    qrecv[i].nst * 2 + qrecv[i].nq);
		ASSERT_INT_EQ(q_read(&t, opts[k], !us),
		    TELNET_Q_WANTYES * 2 + OPP);
		ASSERT_INT_EQ(telnet_enabled(&t, opts[k], us),
		    qrecv[i].nst == TELNET_Q_YES);
		telnet_free(&t);
	}
	rec_free(&r);
	rec_free(&w);
}

/* RFC 1143 "we decide to" table (section 10.3). */
static const struct {
	int st, q;
	bool enable;
	int nst, nq;
	int send;
	int change;
} qreq[] = {
	{ TELNET_Q_NO, EMPTY, true, TELNET_Q_WANTYES, EMPTY, SEND_YES,
	    CH_NONE },
	{ TELNET_Q_YES, EMPTY, true, TELNET_Q_YES, EMPTY, SEND_NONE, CH_NONE },
	{ TELNET_Q_WANTNO, EMPTY, true, TELNET_Q_WANTNO, OPP, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_WANTNO, OPP, true, TELNET_Q_WANTNO, OPP, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_WANTYES, EMPTY, true, TELNET_Q_WANTYES, EMPTY, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_WANTYES, OPP, true, TELNET_Q_WANTYES, EMPTY, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_NO, EMPTY, false, TELNET_Q_NO, EMPTY, SEND_NONE, CH_NONE },
	{ TELNET_Q_YES, EMPTY, false, TELNET_Q_WANTNO, EMPTY, SEND_NO,
	    CH_OFF },
	{ TELNET_Q_WANTNO, EMPTY, false, TELNET_Q_WANTNO, EMPTY, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_WANTNO, OPP, false, TELNET_Q_WANTNO, EMPTY, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_WANTYES, EMPTY, false, TELNET_Q_WANTYES, OPP, SEND_NONE,
	    CH_NONE },
	{ TELNET_Q_WANTYES, OPP, false, TELNET_Q_WANTYES, OPP, SEND_NONE,
	    CH_NONE },
};

/* Every cell of the request table, both sides. */
static void
test_q_request(void)
{
	struct telnet t;
	struct rec r, w;
	size_t i;
	int side, acc;
	bool us;

	memset(&r, 0, sizeof(r));
	memset(&w, 0, sizeof(w));
	for (i = 0; i < sizeof(qreq) / sizeof(qreq[0]); i++)
	for (side = 0; side < 2; side++)
	for (acc = 0; acc < 2; acc++) {
		us = side == 1;
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		telnet_set_accept(&t, 77, acc, acc);
		q_force(&t, 77, us, qreq[i].st, qreq[i].q);
		q_force(&t, 77, !us, TELNET_Q_WANTNO, OPP);
		telnet_request(&t, 77, us, qreq[i].enable);
		q_expect(&w, 0, false, 77, us, qreq[i].send, false,
		    qreq[i].change);
		if (strcmp(rec_str(&r), rec_str(&w)) != 0)
			fprintf(stderr, "row %zu side %d\n", i, side);
		ASSERT_STR_EQ(rec_str(&r), rec_str(&w));
		ASSERT_INT_EQ(q_read(&t, 77, us), qreq[i].nst * 2 + qreq[i].nq);
		ASSERT_INT_EQ(q_read(&t, 77, !us), TELNET_Q_WANTNO * 2 + OPP);
		telnet_free(&t);
	}
	rec_free(&r);
	rec_free(&w);
}

/* A full request/answer round on the wire, plus the policy answers. */
static void
test_q_sequences(void)
{
	struct telnet t;
	struct rec r;

	memset(&r, 0, sizeof(r));
	telnet_init(&t, rec_cb, &r);
	vm_policy(&t);
	/* Unsolicited DO ECHO: refused; DONT ECHO then: no answer. */
	tn_input(&t, (const uint8_t *)"\xff\xfd\x01\xff\xfe\x01", 6);
	ASSERT_STR_EQ(rec_str(&r), "Nfd01 Tfffc01 Nfe01");
	/* Unsolicited WILL BINARY: accepted; again: ignored. */
	rec_reset(&r);
	tn_input(&t, (const uint8_t *)"\xff\xfb\x00\xff\xfb\x00", 6);
	ASSERT_STR_EQ(rec_str(&r), "Nfb00 Tfffd00 O00h+ Nfb00");
	/* WONT BINARY: acknowledged with DONT once; again: nothing. */
	rec_reset(&r);
	tn_input(&t, (const uint8_t *)"\xff\xfc\x00\xff\xfc\x00", 6);
	ASSERT_STR_EQ(rec_str(&r), "Nfc00 Tfffe00 O00h- Nfc00");
	/* We ask WILL SGA, he agrees. */
	rec_reset(&r);
	telnet_request(&t, TELOPT_SGA, true, true);
	tn_input(&t, (const uint8_t *)"\xff\xfd\x03", 3);
	ASSERT_STR_EQ(rec_str(&r), "Tfffb03 Nfd03 O03u+");
	/* We ask DO VMWARE, he refuses: no answer to his WONT. */
	rec_reset(&r);
	telnet_request(&t, TELOPT_VMWARE, false, true);
	tn_input(&t, (const uint8_t *)"\xff\xfc\xe8", 3);
	ASSERT_STR_EQ(rec_str(&r), "Tfffde8 Nfce8");
	ASSERT_TRUE(!telnet_enabled(&t, TELOPT_VMWARE, false));
	/* Enable then disable before the answer: queued, then DONT. */
	rec_reset(&r);
	telnet_request(&t, TELOPT_BINARY, false, true);
	telnet_request(&t, TELOPT_BINARY, false, false);
	tn_input(&t, (const uint8_t *)"\xff\xfb\x00", 3);
	tn_input(&t, (const uint8_t *)"\xff\xfc\x00", 3);
	ASSERT_STR_EQ(rec_str(&r), "Tfffd00 Nfb00 Tfffe00 Nfc00");
	ASSERT_INT_EQ(q_read(&t, TELOPT_BINARY, false), TELNET_Q_NO * 2);
	telnet_free(&t);
	rec_free(&r);
}

struct wire {
	struct buf q[2];	/* bytes in flight to side 0 / side 1 */
};

struct peer {
	struct wire *w;
	int side;
	size_t nsend;
	bool naive;		/* answer every negotiation blindly */
};

/* Callback for a Q-method side: queue SEND bytes for the other side. */
static void
peer_cb(void *arg, const struct telnet_event *ev)
{
	struct peer *p = arg;

	if (ev->type == TELNET_EV_SEND) {
		buf_add(&p->w->q[1 - p->side], ev->data, ev->len);
		p->nsend++;
	}
}

/* A naive peer: acknowledge every negotiation it sees, always. */
static void
naive_input(struct wire *w, const uint8_t *in, size_t n, size_t *nsend)
{
	uint8_t out[3];
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		if (in[i] != TELNET_IAC)
			abort();
		out[0] = TELNET_IAC;
		switch (in[i + 1]) {
		case TELNET_WILL:
			out[1] = TELNET_DO;
			break;
		case TELNET_WONT:
			out[1] = TELNET_DONT;
			break;
		case TELNET_DO:
			out[1] = TELNET_WILL;
			break;
		default:
			out[1] = TELNET_WONT;
			break;
		}
		out[2] = in[i + 2];
		buf_add(&w->q[0], out, 3);
		(*nsend)++;
	}
}

/* Pump bytes between the sides until quiet; return rounds, or -1. */
static int
wire_pump(struct wire *w, struct telnet *a, struct telnet *b, size_t *nnaive)
{
	uint8_t *tmp;
	size_t n;
	int rounds, s;

	for (rounds = 0; rounds < 1000; rounds++) {
		if (w->q[0].len == 0 && w->q[1].len == 0)
			return (rounds);
		for (s = 0; s < 2; s++) {
			n = w->q[s].len;
			if (n == 0)
				continue;
			if ((tmp = malloc(n)) == NULL)
				abort();
			memcpy(tmp, w->q[s].p, n);
			w->q[s].len = 0;
			if (s == 0)
				tn_input(a, tmp, n);
			else if (b != NULL)
				tn_input(b, tmp, n);
			else
				naive_input(w, tmp, n, nnaive);
			free(tmp);
		}
	}
	return (-1);
}

/* A peer that answers everything, and two Q-method peers: no loop. */
static void
test_q_no_loop(void)
{
	struct telnet a, b;
	struct wire w;
	struct peer pa, pb;
	size_t nnaive = 0, i;
	uint32_t x = 12345;
	uint8_t opt, in[3];
	int k, rounds;

	memset(&w, 0, sizeof(w));
	memset(&pa, 0, sizeof(pa));
	memset(&pb, 0, sizeof(pb));
	pa.w = pb.w = &w;
	pb.side = 1;

	/* Against a naive acknowledger, with and without our agreement. */
	for (k = 0; k < 2; k++) {
		telnet_init(&a, peer_cb, &pa);
		for (i = 0; i < 8; i++)
			telnet_set_accept(&a, (uint8_t)i, k == 1, k == 1);
		for (i = 0; i < 8; i++) {
			telnet_request(&a, (uint8_t)i, true, true);
			telnet_request(&a, (uint8_t)i, false, true);
			telnet_request(&a, (uint8_t)i, true, false);
			telnet_request(&a, (uint8_t)i, false, i & 1);
		}
		/* And unsolicited offers from him. */
		for (i = 8; i < 16; i++) {
			telnet_neg_encode(in, TELNET_WILL, (uint8_t)i);
			tn_input(&a, in, 3);
			telnet_neg_encode(in, TELNET_DO, (uint8_t)i);
			tn_input(&a, in, 3);
		}
		rounds = wire_pump(&w, &a, NULL, &nnaive);
		ASSERT_TRUE(rounds >= 0);
		ASSERT_TRUE(rounds < 20);
		for (i = 0; i < 8; i++) {
			ASSERT_TRUE(!telnet_enabled(&a, (uint8_t)i, true));
			ASSERT_INT_EQ(telnet_enabled(&a, (uint8_t)i, false),
			    i & 1);
		}
		telnet_free(&a);
	}

	/* Two Q-method peers, random requests on both sides. */
	for (k = 0; k < 200; k++) {
		telnet_init(&a, peer_cb, &pa);
		telnet_init(&b, peer_cb, &pb);
		for (i = 0; i < 6; i++) {
			telnet_set_accept(&a, (uint8_t)i, i & 1, i & 2);
			telnet_set_accept(&b, (uint8_t)i, i & 2, i & 4);
		}
		for (i = 0; i < 40; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			opt = (uint8_t)(x % 6);
			telnet_request((x & 0x100) ? &a : &b, opt,
			    (x & 0x200) != 0, (x & 0x400) != 0);
			if ((x & 0x3000) == 0) {
				rounds = wire_pump(&w, &a, &b, NULL);
				ASSERT_TRUE(rounds >= 0);
			}
		}
		rounds = wire_pump(&w, &a, &b, NULL);
		ASSERT_TRUE(rounds >= 0);
		/* Quiet now: both agree on each direction, no WANT states. */
		for (i = 0; i < 6; i++) {
			ASSERT_INT_EQ(telnet_enabled(&a, (uint8_t)i, true),
			    telnet_enabled(&b, (uint8_t)i, false));
			ASSERT_INT_EQ(telnet_enabled(&a, (uint8_t)i, false),
			    telnet_enabled(&b, (uint8_t)i, true));
			ASSERT_TRUE(a.opts[i].us < TELNET_Q_WANTNO);
			ASSERT_TRUE(a.opts[i].him < TELNET_Q_WANTNO);
			ASSERT_TRUE(b.opts[i].us < TELNET_Q_WANTNO);
			ASSERT_TRUE(b.opts[i].him < TELNET_Q_WANTNO);
		}
		telnet_free(&a);
		telnet_free(&b);
	}
	free(w.q[0].p);
	free(w.q[1].p);
}

struct reent {
	struct telnet *t;
	struct rec r;
};

/* Callback that negotiates further from inside an OPTION event. */
static void
reent_cb(void *arg, const struct telnet_event *ev)
{
	struct reent *re = arg;

	rec_cb(&re->r, ev);
	if (ev->type == TELNET_EV_OPTION && !ev->us && ev->enabled)
		telnet_request(re->t, ev->opt, true, true);
}

/* telnet_request() from the callback; replies keep their order. */
static void
test_reentrant_request(void)
{
	struct telnet t;
	struct reent re;

	memset(&re, 0, sizeof(re));
	re.t = &t;
	telnet_init(&t, reent_cb, &re);
	telnet_set_accept(&t, TELOPT_SGA, false, true);
	tn_input(&t, (const uint8_t *)"\xff\xfb\x03" "A", 4);
	ASSERT_STR_EQ(rec_str(&re.r), "Nfb03 Tfffd03 O03h+ Tfffb03 D41");
	telnet_free(&t);
	rec_free(&re.r);
}

/* SB cap: 5000 bytes overflow, 4096 with many doubled FF are exact. */
static void
test_sb_cap(void)
{
	struct telnet t;
	struct rec r;
	uint8_t *payload, *enc;
	size_t i, n, cut;
	char *want;

	memset(&r, 0, sizeof(r));
	if ((payload = malloc(5000)) == NULL ||
	    (enc = malloc(2 * 5000 + 16)) == NULL)
		abort();

	/* 5000 bytes: ERROR, no SB, and the parser resynchronises. */
	for (i = 0; i < 5000; i++)
		payload[i] = (uint8_t)(i * 7);
	n = telnet_sb_encode(enc, 2 * 5000 + 16, 0x7b, payload, 5000);
	ASSERT_TRUE(n > 5000);
	enc[n++] = 'Z';
	telnet_init(&t, rec_cb, &r);
	tn_input(&t, enc, n);
	ASSERT_STR_EQ(rec_str(&r), "E3 D5a");
	ASSERT_INT_EQ(r.nsb_too_long, 1);
	ASSERT_TRUE(t.sb_cap <= t.sb_max);
	/* The next SB is fine again. */
	rec_reset(&r);
	tn_input(&t, (const uint8_t *)"\xff\xfa\x18\x01\xff\xf0", 6);
	ASSERT_STR_EQ(rec_str(&r), "S18:01");
	telnet_free(&t);

	/* 4096 bytes, half of them 0xFF: exact, whole and in pieces. */
	for (i = 0; i < 4096; i++)
		payload[i] = (i % 2 == 0 || i % 7 == 0) ? 0xff : (uint8_t)i;
	n = telnet_sb_encode(enc, 2 * 5000 + 16, 0xe8, payload, 4096);
	ASSERT_TRUE(n > 6000);
	rec_reset(&r);
	rec_printf(&r, "Se8:");
	rec_hex(&r, payload, 4096);
	if ((want = strdup(rec_str(&r))) == NULL)
		abort();
	for (cut = 0; cut <= n; cut += 97) {
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		feed_cuts(&t, enc, n, &cut, 1);
		ASSERT_STR_EQ(rec_str(&r), want);
		ASSERT_INT_EQ(t.sb_cap, 4096);
		telnet_free(&t);
	}
	free(want);

	/* 4097 bytes: one over. */
	payload[4096] = 0xff;
	n = telnet_sb_encode(enc, 2 * 5000 + 16, 0xe8, payload, 4097);
	rec_reset(&r);
	telnet_init(&t, rec_cb, &r);
	tn_input(&t, enc, n);
	ASSERT_STR_EQ(rec_str(&r), "E3");
	telnet_free(&t);

	/* A smaller cap set by the caller; overflow then a broken SB. */
	rec_reset(&r);
	telnet_init(&t, rec_cb, &r);
	t.sb_max = 4;
	tn_input(&t, (const uint8_t *)
	    "\xff\xfa\x01" "abcd" "\xff\xf0" "\xff\xfa\x02" "abcde" "\xff\xf1",
	    19);
	ASSERT_STR_EQ(rec_str(&r), "S01:61626364 E2 E3 Cf1");
	telnet_free(&t);
	/* The struct can be initialised again after telnet_free. */
	telnet_init(&t, rec_cb, &r);
	ASSERT_TRUE(t.sb == NULL);
	telnet_free(&t);

	free(payload);
	free(enc);
	rec_free(&r);
}

/* Escaping and encoders, TV-8 lines, and round trips through the parser. */
static void
test_encode(void)
{
	struct rec r;
	struct telnet t;
	uint8_t out[128], want[128], in[64];
	size_t n, wn, need;

	memset(&r, 0, sizeof(r));
	/* data ab ff cd -> ab ff ff cd */
	n = t_hex("ab ff cd", in, sizeof(in));
	ASSERT_INT_EQ(telnet_escaped_len(in, n), 4);
	wn = t_hex("ab ff ff cd", want, sizeof(want));
	ASSERT_MEM_EQ(out, telnet_escape(out, in, n), want, wn);
	ASSERT_INT_EQ(telnet_escape(out, in, 0), 0);
	ASSERT_INT_EQ(telnet_escaped_len(in, 0), 0);
	n = t_hex("ff ff", in, sizeof(in));
	ASSERT_INT_EQ(telnet_escaped_len(in, n), 4);

	/* NAWS 255x24 and 80x24. */
	n = t_hex("00 ff 00 18", in, sizeof(in));
	wn = t_hex("ff fa 1f 00 ff ff 00 18 ff f0", want, sizeof(want));
	ASSERT_MEM_EQ(out, telnet_sb_encode(out, sizeof(out), TELOPT_NAWS, in,
	    n), want, wn);
	n = t_hex("00 50 00 18", in, sizeof(in));
	wn = t_hex("ff fa 1f 00 50 00 18 ff f0", want, sizeof(want));
	ASSERT_MEM_EQ(out, telnet_sb_encode(out, sizeof(out), TELOPT_NAWS, in,
	    n), want, wn);

	/* GOAHEAD seq 76 19 ff e9, secret ff 00 ff 10. */
	n = t_hex("29 76 19 ff e9 ff 00 ff 10", in, sizeof(in));
	wn = t_hex("ff fa e8 29 76 19 ff ff e9 ff ff 00 ff ff 10 ff f0",
	    want, sizeof(want));
	need = wn;
	ASSERT_MEM_EQ(out, telnet_sb_encode(out, sizeof(out), TELOPT_VMWARE,
	    in, n), want, wn);
	/* Exactly fitting, one short, tiny caps. */
	ASSERT_INT_EQ(telnet_sb_encode(out, need, TELOPT_VMWARE, in, n), need);
	ASSERT_INT_EQ(telnet_sb_encode(out, need - 1, TELOPT_VMWARE, in, n),
	    0);
	ASSERT_INT_EQ(telnet_sb_encode(out, 4, TELOPT_VMWARE, in, 0), 0);
	ASSERT_INT_EQ(telnet_sb_encode(out, 0, TELOPT_VMWARE, in, 0), 0);
	wn = t_hex("ff fa e8 ff f0", want, sizeof(want));
	ASSERT_MEM_EQ(out, telnet_sb_encode(out, 5, TELOPT_VMWARE, in, 0),
	    want, wn);
	/* RFC 2217 SET-MODEMSTATE-MASK 255. */
	n = t_hex("0b ff", in, sizeof(in));
	wn = t_hex("ff fa 2c 0b ff ff ff f0", want, sizeof(want));
	ASSERT_MEM_EQ(out, telnet_sb_encode(out, sizeof(out), TELOPT_COMPORT,
	    in, n), want, wn);

	/* Round trip of the GOAHEAD through the parser. */
	n = t_hex("29 76 19 ff e9 ff 00 ff 10", in, sizeof(in));
	wn = telnet_sb_encode(out, sizeof(out), TELOPT_VMWARE, in, n);
	telnet_init(&t, rec_cb, &r);
	tn_input(&t, out, wn);
	telnet_free(&t);
	ASSERT_STR_EQ(rec_str(&r), "Se8:297619ffe9ff00ff10");

	/* Negotiation encoder. */
	telnet_neg_encode(out, TELNET_WILL, TELOPT_VMWARE);
	wn = t_hex("ff fb e8", want, sizeof(want));
	ASSERT_MEM_EQ(out, 3, want, wn);
	rec_free(&r);
}

/* NVT filter: CR NUL and CR LF become CR, also across calls. */
static void
test_nvt_filter(void)
{
	uint8_t b[32], want[32];
	bool cr = false;
	size_t n, wn;

	n = t_hex("41 0d 00 42 0d 0a 43 0d 41 0d 0d 0a 00 0a", b, sizeof(b));
	wn = t_hex("41 0d 42 0d 43 0d 41 0d 0d 00 0a", want, sizeof(want));
	ASSERT_MEM_EQ(b, telnet_nvt_filter(b, n, &cr), want, wn);
	ASSERT_TRUE(!cr);

	/* CR at the end of a call, NUL/LF at the start of the next. */
	n = t_hex("41 0d", b, sizeof(b));
	ASSERT_INT_EQ(telnet_nvt_filter(b, n, &cr), 2);
	ASSERT_TRUE(cr);
	n = t_hex("0a 42", b, sizeof(b));
	wn = t_hex("42", want, sizeof(want));
	ASSERT_MEM_EQ(b, telnet_nvt_filter(b, n, &cr), want, wn);
	ASSERT_TRUE(!cr);
	n = t_hex("0d", b, sizeof(b));
	ASSERT_INT_EQ(telnet_nvt_filter(b, n, &cr), 1);
	n = t_hex("00", b, sizeof(b));
	ASSERT_INT_EQ(telnet_nvt_filter(b, n, &cr), 0);
	ASSERT_TRUE(!cr);
	/* An empty call keeps the pending CR. */
	n = t_hex("0d", b, sizeof(b));
	ASSERT_INT_EQ(telnet_nvt_filter(b, n, &cr), 1);
	ASSERT_INT_EQ(telnet_nvt_filter(b, 0, &cr), 0);
	ASSERT_TRUE(cr);
	/* CR then something else: both kept. */
	n = t_hex("44", b, sizeof(b));
	wn = t_hex("44", want, sizeof(want));
	ASSERT_MEM_EQ(b, telnet_nvt_filter(b, n, &cr), want, wn);
	ASSERT_TRUE(!cr);
}

/* Random data with many 0xFF, escaped, in random pieces: same bytes back. */
static void
test_property_escape(void)
{
	struct telnet t;
	struct rec r;
	uint8_t src[512], enc[1024];
	size_t cuts[16], ncuts, n, en, i, j, tmp;
	uint32_t x = 0x9e3779b9;
	int it;

	memset(&r, 0, sizeof(r));
	for (it = 0; it < 2000; it++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		n = x % sizeof(src);
		for (i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			src[i] = (x & 3) == 0 ? 0xff : (uint8_t)(x >> 8);
		}
		en = telnet_escape(enc, src, n);
		ASSERT_INT_EQ(en, telnet_escaped_len(src, n));
		ncuts = x % 16;
		for (i = 0; i < ncuts; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			cuts[i] = en == 0 ? 0 : x % (en + 1);
		}
		for (i = 1; i < ncuts; i++)
			for (j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
				tmp = cuts[j];
				cuts[j] = cuts[j - 1];
				cuts[j - 1] = tmp;
			}
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		feed_cuts(&t, enc, en, cuts, ncuts);
		telnet_free(&t);
		ASSERT_INT_EQ(r.nother, 0);
		ASSERT_MEM_EQ(r.data.p, r.data.len, src, n);
	}
	rec_free(&r);
}

/* Count DATA events per call and check where they point (in-place). */
struct coal {
	const uint8_t *base;	/* the buffer of the current call */
	size_t baselen;
	size_t ndata;		/* DATA events in the current call */
	size_t nother;		/* other events in the current call */
	bool last_data;		/* the previous event of this call was DATA */
	bool adjacent;		/* two DATA events in a row within a call */
	bool outside;		/* a DATA event outside the buffer */
	struct buf data;
};

static void
coal_cb(void *arg, const struct telnet_event *ev)
{
	struct coal *k = arg;

	if (ev->type != TELNET_EV_DATA) {
		k->nother++;
		k->last_data = false;
		return;
	}
	if (k->last_data)
		k->adjacent = true;
	if (ev->data < k->base || ev->len > k->baselen ||
	    (size_t)(ev->data - k->base) > k->baselen - ev->len)
		k->outside = true;
	k->last_data = true;
	k->ndata++;
	buf_add(&k->data, ev->data, ev->len);
}

/* One in-place call on a heap copy of in[0..n), counted in k. */
static void
coal_feed(struct telnet *t, struct coal *k, const uint8_t *in, size_t n)
{
	uint8_t *copy;

	if ((copy = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(copy, in, n);
	k->base = copy;
	k->baselen = n;
	k->last_data = false;
	telnet_input_inplace(t, copy, n);
	free(copy);
}

/* Console text with about 1 % 0xFF (fixed seed) into src[0..n). */
static void
fill_console(uint8_t *src, size_t n, uint32_t x)
{
	size_t i;

	for (i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		if ((x >> 16) % 100 == 0)
			src[i] = 0xff;
		else
			src[i] = (uint8_t)(' ' + (x >> 16) % 95);
	}
}

/* 16 KiB with 1 % IAC IAC on the wire is ONE DATA event, un-doubled. */
static void
test_inplace_coalesce(void)
{
	static uint8_t src[16384], wire[2 * 16384];
	struct telnet t;
	struct coal k;
	size_t wn, nff;

	fill_console(src, sizeof(src), 12345);
	wn = telnet_escape(wire, src, sizeof(src));
	nff = wn - sizeof(src);
	ASSERT_TRUE(nff > 100 && nff < 250);
	memset(&k, 0, sizeof(k));
	telnet_init(&t, coal_cb, &k);
	coal_feed(&t, &k, wire, wn);
	telnet_free(&t);
	ASSERT_INT_EQ(k.ndata, 1);
	ASSERT_INT_EQ(k.nother, 0);
	ASSERT_TRUE(!k.outside);
	ASSERT_MEM_EQ(k.data.p, k.data.len, src, sizeof(src));
	free(k.data.p);
}

/*
 * Data with doubled IACs and commands between, split in two at every
 * offset: the concatenated DATA is the same, every DATA event points into
 * its own call's buffer, and within a call no two DATA events are adjacent
 * (at most one between two other events).
 */
static void
test_inplace_splits(void)
{
	static const uint8_t cmds[][3] = {
		{ 0xff, 0xf1 }, { 0xff, 0xfb, 0x7b }, { 0xff, 0xf6 },
		{ 0xff, 0xfa, 0x7b }, 	/* SB opt: closed below */
	};
	uint8_t src[600], wire[1600], want[1600];
	struct telnet t;
	struct coal k;
	size_t wn = 0, wantn = 0, i, cut, run;
	uint32_t x = 777;

	fill_console(src, sizeof(src), 4242);
	for (i = 0; i < sizeof(src); i += run) {
		x = x * 1103515245u + 12345u;
		run = 1 + (x >> 16) % 97;
		if (run > sizeof(src) - i)
			run = sizeof(src) - i;
		wn += telnet_escape(wire + wn, src + i, run);
		memcpy(want + wantn, src + i, run);
		wantn += run;
		switch ((x >> 8) % 5) {
		case 0:
		case 1:
		case 2:
			memcpy(wire + wn, cmds[(x >> 8) % 3],
			    (x >> 8) % 3 == 1 ? 3 : 2);
			wn += (x >> 8) % 3 == 1 ? 3 : 2;
			break;
		case 3:
			/* IAC SB 7b ff ff 01 IAC SE */
			memcpy(wire + wn, cmds[3], 3);
			memcpy(wire + wn + 3, "\xff\xff\x01\xff\xf0", 5);
			wn += 8;
			break;
		default:
			break;
		}
	}
	ASSERT_TRUE(wn <= sizeof(wire));
	for (cut = 0; cut <= wn; cut++) {
		memset(&k, 0, sizeof(k));
		telnet_init(&t, coal_cb, &k);
		coal_feed(&t, &k, wire, cut);
		coal_feed(&t, &k, wire + cut, wn - cut);
		telnet_free(&t);
		ASSERT_TRUE(!k.outside);
		ASSERT_TRUE(!k.adjacent);
		ASSERT_MEM_EQ(k.data.p, k.data.len, want, wantn);
		free(k.data.p);
	}
}

/* telnet_input_data, byte-exact: what it takes and what it writes. */
static void
test_input_data_cases(void)
{
	static const struct {
		const char *before;	/* fed first with telnet_input() */
		const char *in;
		size_t took;
		const char *out;
	} cases[] = {
		{ "", "", 0, "" },
		{ "", "31 32 33", 3, "31 32 33" },
		{ "", "31 ff ff 32", 4, "31 ff 32" },
		{ "", "ff ff", 2, "ff" },
		{ "", "ff ff ff ff", 4, "ff ff" },
		{ "", "ff ff 00 ff ff", 5, "ff 00 ff" },
		/* A lone IAC at the end: its partner is in the next read. */
		{ "", "ff", 0, "" },
		{ "", "31 ff", 1, "31" },
		{ "", "31 ff ff ff", 3, "31 ff" },
		/* Commands stop it. */
		{ "", "31 ff f1 32", 1, "31" },
		{ "", "ff f1 32", 0, "" },
		{ "", "31 ff ff 32 ff fb 01 33", 4, "31 ff 32" },
		{ "", "31 ff fa e8 01 ff f0", 1, "31" },
		{ "", "31 ff f0", 1, "31" },
		/* Not in the data state: nothing. */
		{ "ff", "ff 31", 0, "" },
		{ "ff fb", "01 31", 0, "" },
		{ "ff fa", "e8 31", 0, "" },
		{ "ff fa e8", "31 32 ff f0", 0, "" },
		{ "ff fa e8 31 ff", "ff 32", 0, "" },
		/* After a complete command: data again. */
		{ "31 ff f1", "32 33", 2, "32 33" },
		{ "ff fa e8 31 ff f0", "ff ff 32", 3, "ff 32" },
	};
	uint8_t before[64], in[64], out[64], *dst;
	struct telnet t;
	struct rec r;
	size_t i, nb, n, nout, took, dlen;
	bool data;

	memset(&r, 0, sizeof(r));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		nb = t_hex(cases[i].before, before, sizeof(before));
		n = t_hex(cases[i].in, in, sizeof(in));
		nout = t_hex(cases[i].out, out, sizeof(out));
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		telnet_input(&t, before, nb);
		rec_reset(&r);
		data = telnet_in_data(&t);
		if ((dst = malloc(n > 0 ? n : 1)) == NULL)
			abort();
		took = telnet_input_data(&t, in, n, dst, &dlen);
		if (took != cases[i].took)
			t_fail(__FILE__, __LINE__, "case %zu: took %zu, want %zu",
			    i, took, cases[i].took);
		ASSERT_MEM_EQ(dst, dlen, out, nout);
		ASSERT_TRUE(telnet_in_data(&t) == data);
		ASSERT_STR_EQ(rec_str(&r), "");	/* no events */
		free(dst);
		telnet_free(&t);
	}
	rec_free(&r);
}

/*
 * 16 KiB of console data with 1 % 0xFF, doubled on the wire, is taken in
 * one call and comes out as the console data.
 */
static void
test_input_data_whole(void)
{
	static uint8_t src[16384], wire[2 * 16384], dst[2 * 16384];
	struct telnet t;
	size_t wn, took, dlen, last;

	fill_console(src, sizeof(src), 999);
	wn = telnet_escape(wire, src, sizeof(src));
	ASSERT_TRUE(wn > sizeof(src));
	telnet_init(&t, NULL, NULL);
	took = telnet_input_data(&t, wire, wn, dst, &dlen);
	ASSERT_SIZE_EQ(took, wn);
	ASSERT_MEM_EQ(dst, dlen, src, sizeof(src));
	/* Cut between the two IACs of the last pair: all but the first. */
	for (last = wn - 1; wire[last] != 0xff; last--)
		;
	took = telnet_input_data(&t, wire, last, dst, &dlen);
	ASSERT_SIZE_EQ(took, last - 1);
	ASSERT_MEM_EQ(dst, dlen, src, dlen);
	ASSERT_TRUE(telnet_in_data(&t));
	telnet_free(&t);
}

/*
 * Data with doubled IACs and commands, split in two at every offset, each
 * piece fed as vm.c's read path may (tn_input_dataprefix): the same
 * events as telnet_input() of the whole, and the contract holds.
 */
static void
test_input_data_splits(void)
{
	static const uint8_t cmds[][8] = {
		{ 0xff, 0xf1 }, { 0xff, 0xfb, 0x7b }, { 0xff, 0xf6 },
		{ 0xff, 0xfa, 0x7b, 0xff, 0xff, 0x01, 0xff, 0xf0 },
	};
	static const size_t cmdlen[] = { 2, 3, 2, 8 };
	uint8_t src[600], wire[1600];
	struct telnet t;
	struct rec whole, r;
	size_t wn = 0, i, cut, run, c;
	uint32_t x = 4711;
	bool saved = dataprefix;

	fill_console(src, sizeof(src), 31337);
	for (i = 0; i < sizeof(src); i += run) {
		x = x * 1103515245u + 12345u;
		run = 1 + (x >> 16) % 120;
		if (run > sizeof(src) - i)
			run = sizeof(src) - i;
		wn += telnet_escape(wire + wn, src + i, run);
		if ((x >> 8) % 3 == 0) {
			c = (x >> 10) % 4;
			memcpy(wire + wn, cmds[c], cmdlen[c]);
			wn += cmdlen[c];
		}
	}
	ASSERT_TRUE(wn <= sizeof(wire));
	memset(&whole, 0, sizeof(whole));
	memset(&r, 0, sizeof(r));
	rec_reset(&whole);
	telnet_init(&t, rec_cb, &whole);
	telnet_input(&t, wire, wn);
	telnet_free(&t);
	dataprefix = true;
	dataprefix_bad = 0;
	for (cut = 0; cut <= wn; cut++) {
		rec_reset(&r);
		telnet_init(&t, rec_cb, &r);
		tn_input(&t, wire, cut);
		tn_input(&t, wire + cut, wn - cut);
		telnet_free(&t);
		if (strcmp(rec_str(&r), rec_str(&whole)) != 0) {
			dataprefix = saved;
			t_fail(__FILE__, __LINE__, "cut %zu/%zu differs", cut,
			    wn);
			break;
		}
	}
	dataprefix = saved;
	ASSERT_SIZE_EQ(dataprefix_bad, 0);
	ASSERT_MEM_EQ(r.data.p, r.data.len, whole.data.p, whole.data.len);
	rec_free(&whole);
	rec_free(&r);
}

/* No telnet_input_data call of pass 3 broke its contract. */
static void
test_input_data_contract(void)
{
	ASSERT_SIZE_EQ(dataprefix_bad, 0);
}

/* Run all tests. */
int
main(void)
{
	/* Pass 1: telnet_input(), the buffer left alone. */
	T_RUN(test_tv9);
	T_RUN(test_tv9_split_read);
	T_RUN(test_zero_copy);
	T_RUN(test_malformed);
	T_RUN(test_capture_stream0);
	T_RUN(test_q_receive);
	T_RUN(test_q_request);
	T_RUN(test_q_sequences);
	T_RUN(test_q_no_loop);
	T_RUN(test_reentrant_request);
	T_RUN(test_sb_cap);
	T_RUN(test_encode);
	T_RUN(test_nvt_filter);
	T_RUN(test_property_escape);

	/* Pass 2: the same through telnet_input_inplace(). */
	inplace = true;
	t_run("inplace: test_tv9", test_tv9);
	t_run("inplace: test_tv9_split_read", test_tv9_split_read);
	t_run("inplace: test_malformed", test_malformed);
	t_run("inplace: test_capture_stream0", test_capture_stream0);
	t_run("inplace: test_q_receive", test_q_receive);
	t_run("inplace: test_q_request", test_q_request);
	t_run("inplace: test_q_sequences", test_q_sequences);
	t_run("inplace: test_q_no_loop", test_q_no_loop);
	t_run("inplace: test_reentrant_request", test_reentrant_request);
	t_run("inplace: test_sb_cap", test_sb_cap);
	t_run("inplace: test_encode", test_encode);
	t_run("inplace: test_property_escape", test_property_escape);
	T_RUN(test_inplace_coalesce);
	T_RUN(test_inplace_splits);

	/* Pass 3: console data taken with telnet_input_data() in between. */
	inplace = false;
	dataprefix = true;
	t_run("dataprefix: test_tv9", test_tv9);
	t_run("dataprefix: test_tv9_split_read", test_tv9_split_read);
	t_run("dataprefix: test_malformed", test_malformed);
	t_run("dataprefix: test_capture_stream0", test_capture_stream0);
	t_run("dataprefix: test_q_receive", test_q_receive);
	t_run("dataprefix: test_q_request", test_q_request);
	t_run("dataprefix: test_q_sequences", test_q_sequences);
	t_run("dataprefix: test_q_no_loop", test_q_no_loop);
	t_run("dataprefix: test_reentrant_request", test_reentrant_request);
	t_run("dataprefix: test_sb_cap", test_sb_cap);
	t_run("dataprefix: test_encode", test_encode);
	t_run("dataprefix: test_property_escape", test_property_escape);
	T_RUN(test_input_data_contract);
	dataprefix = false;
	T_RUN(test_input_data_cases);
	T_RUN(test_input_data_whole);
	T_RUN(test_input_data_splits);
	return (t_summary());
}
