/*
 * libFuzzer harness for the telnet codec. The first input byte picks a
 * split point and a few knobs; the rest is a telnet byte stream. It is
 * decoded whole, in two pieces and one byte at a time under a permissive
 * policy (with a callback that negotiates back), through telnet_input(),
 * through telnet_input_inplace(), and through telnet_input_data() wherever
 * the parser is in the data state with one byte of telnet_input() between
 * (as vm.c's read path uses it; its contract is checked at each call), and
 * the event logs, DATA coalesced, must be identical; in place, no two DATA
 * events of one call are adjacent. Every event is checked as it comes
 * (DATA points into the input, SB within sb_max, SEND is one IAC command).
 * The raw stream is also escaped and decoded again, encoded as one SB and
 * decoded again, and run through the NVT filter whole and in two pieces.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define CHECK(c) do {							\
	if (!(c))							\
		abort();						\
} while (0)

struct rec {
	uint8_t type;
	uint8_t cmd;
	uint8_t opt;
	uint8_t flags;
	size_t off;		/* into log bytes */
	size_t len;
};

struct log {
	struct rec *r;
	size_t n, cap;
	uint8_t *b;
	size_t blen, bcap;
	const uint8_t *in;	/* current input piece */
	size_t inlen;
	uint32_t sb_max;
	struct telnet *t;
	bool negotiate;		/* request from inside the callback */
	bool inplace;		/* feed through telnet_input_inplace() */
	bool dataprefix;	/* ... or telnet_input_data() between */
	bool call_data;		/* the last event of this call was DATA */
};

/* Append bytes to the log's byte store. */
static void
log_bytes(struct log *l, const uint8_t *p, size_t len)
{
	if (l->blen + len > l->bcap) {
		while (l->blen + len > l->bcap)
			l->bcap = l->bcap ? l->bcap * 2 : 1024;
		CHECK((l->b = realloc(l->b, l->bcap)) != NULL);
	}
	if (len > 0)
		memcpy(l->b + l->blen, p, len);
	l->blen += len;
}

/* Check and record one event. */
static void
log_cb(void *arg, const struct telnet_event *ev)
{
	struct log *l = arg;
	struct rec *r;

	if (l->inplace && ev->type == TELNET_EV_DATA)
		CHECK(!l->call_data);
	l->call_data = ev->type == TELNET_EV_DATA;
	switch (ev->type) {
	case TELNET_EV_DATA:
		CHECK(ev->len > 0);
		CHECK(ev->data >= l->in && ev->len <= l->inlen &&
		    (size_t)(ev->data - l->in) <= l->inlen - ev->len);
		break;
	case TELNET_EV_SB:
		CHECK(ev->len <= l->sb_max);
		CHECK(ev->data != NULL);
		break;
	case TELNET_EV_SEND:
		CHECK(ev->len == 3 && ev->data[0] == TELNET_IAC);
		CHECK(ev->data[1] >= TELNET_WILL && ev->data[1] <= TELNET_DONT);
		break;
	case TELNET_EV_NEG:
		CHECK(ev->cmd >= TELNET_WILL && ev->cmd <= TELNET_DONT);
		break;
	case TELNET_EV_CMD:
		CHECK(ev->cmd != TELNET_IAC && ev->cmd != TELNET_SB &&
		    ev->cmd != TELNET_SE &&
		    (ev->cmd < TELNET_WILL || ev->cmd > TELNET_DONT));
		break;
	case TELNET_EV_OPTION:
		CHECK(telnet_enabled(l->t, ev->opt, ev->us) == ev->enabled);
		break;
	case TELNET_EV_ERROR:
		CHECK(ev->err != TELNET_ERR_NONE);
		break;
	default:
		abort();
	}

	if (ev->type == TELNET_EV_DATA && l->n > 0 &&
	    l->r[l->n - 1].type == TELNET_EV_DATA) {
		log_bytes(l, ev->data, ev->len);
		l->r[l->n - 1].len += ev->len;
		return;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		CHECK((l->r = realloc(l->r, l->cap * sizeof(*l->r))) != NULL);
	}
	r = &l->r[l->n++];
	memset(r, 0, sizeof(*r));
	r->type = (uint8_t)ev->type;
	r->cmd = ev->cmd;
	r->opt = ev->opt;
	r->flags = (uint8_t)((ev->us ? 1 : 0) | (ev->enabled ? 2 : 0) |
	    (unsigned)ev->err << 2);
	r->off = l->blen;
	if (ev->type == TELNET_EV_DATA || ev->type == TELNET_EV_SB ||
	    ev->type == TELNET_EV_SEND) {
		r->len = ev->len;
		log_bytes(l, ev->data, ev->len);
	}

	/* Negotiate back from inside the callback, deterministically. */
	if (l->negotiate && ev->type == TELNET_EV_NEG && (ev->opt & 3) == 1)
		telnet_request(l->t, ev->opt, ev->cmd == TELNET_DO ||
		    ev->cmd == TELNET_DONT, (ev->opt & 4) != 0);
}

/*
 * Feed one piece the way vm.c's read path may: the console data at its
 * front with telnet_input_data() (reported to the log as the DATA event it
 * stands for), then one byte with telnet_input(), and so on. Checks the
 * contract at each call: nothing taken outside the data state, the state
 * unchanged, what was taken is exactly the escaped form of what came out,
 * and it stopped only at an IAC that is not half of a pair in the piece.
 */
static void
feed_dataprefix(struct log *l, const uint8_t *p, size_t len)
{
	struct telnet_event ev;
	uint8_t *dst, *esc;
	size_t k, dlen, elen;
	bool data;

	CHECK((dst = malloc(len ? len : 1)) != NULL);
	CHECK((esc = malloc(2 * len + 1)) != NULL);
	while (len > 0) {
		data = telnet_in_data(l->t);
		k = telnet_input_data(l->t, p, len, dst, &dlen);
		CHECK(k <= len && dlen <= k);
		CHECK(telnet_in_data(l->t) == data);
		CHECK(data || (k == 0 && dlen == 0));
		elen = telnet_escape(esc, dst, dlen);
		CHECK(elen == k && (k == 0 || memcmp(esc, p, k) == 0));
		if (data && k < len)
			CHECK(p[k] == TELNET_IAC &&
			    (k + 1 == len || p[k + 1] != TELNET_IAC));
		if (dlen > 0) {
			memset(&ev, 0, sizeof(ev));
			ev.type = TELNET_EV_DATA;
			ev.data = dst;
			ev.len = dlen;
			l->in = dst;
			l->inlen = dlen;
			log_cb(l, &ev);
		}
		p += k;
		len -= k;
		if (len == 0)
			break;
		l->in = p;
		l->inlen = 1;
		telnet_input(l->t, p, 1);
		p++;
		len--;
	}
	free(esc);
	free(dst);
}

/* Feed one piece, telling the log where DATA may point. */
static void
feed(struct log *l, const uint8_t *p, size_t len)
{
	uint8_t *copy;

	/* A private copy, so ASan catches reads past the piece. */
	CHECK((copy = malloc(len ? len : 1)) != NULL);
	if (len > 0)
		memcpy(copy, p, len);
	l->in = copy;
	l->inlen = len;
	l->call_data = false;
	if (l->dataprefix)
		feed_dataprefix(l, copy, len);
	else if (l->inplace)
		telnet_input_inplace(l->t, copy, len);
	else
		telnet_input(l->t, copy, len);
	free(copy);
}

/* Decode in[0..len) cut at split (or byte by byte if bytewise). */
static void
run(struct log *l, const uint8_t *in, size_t len, size_t split,
    bool bytewise, uint32_t sb_max, int mode)
{
	struct telnet t;
	size_t i;

	memset(l, 0, sizeof(*l));
	l->t = &t;
	l->inplace = mode == 1;
	l->dataprefix = mode == 2;
	l->sb_max = sb_max;
	l->negotiate = true;
	telnet_init(&t, log_cb, l);
	t.sb_max = sb_max;
	for (i = 0; i < 256; i++)
		telnet_set_accept(&t, (uint8_t)i, (i & 2) == 0, (i & 8) == 0);
	telnet_request(&t, TELOPT_BINARY, true, true);
	telnet_request(&t, TELOPT_BINARY, false, true);
	telnet_request(&t, TELOPT_VMWARE, false, true);
	if (bytewise)
		for (i = 0; i < len; i++)
			feed(l, in + i, 1);
	else {
		feed(l, in, split);
		feed(l, in + split, len - split);
	}
	CHECK(t.sb_cap <= sb_max);
	CHECK(t.sb_len <= sb_max);
	for (i = 0; i < 256; i++) {
		CHECK(telnet_enabled(&t, (uint8_t)i, true) ==
		    (t.opts[i].us == TELNET_Q_YES));
		CHECK(telnet_enabled(&t, (uint8_t)i, false) ==
		    (t.opts[i].him == TELNET_Q_YES));
	}
	telnet_free(&t);
	CHECK(t.sb == NULL);
}

/* Compare two event logs. */
static bool
log_equal(const struct log *a, const struct log *b)
{
	size_t i;

	if (a->n != b->n || a->blen != b->blen)
		return (false);
	if (a->blen > 0 && memcmp(a->b, b->b, a->blen) != 0)
		return (false);
	for (i = 0; i < a->n; i++)
		if (a->r[i].type != b->r[i].type ||
		    a->r[i].cmd != b->r[i].cmd ||
		    a->r[i].opt != b->r[i].opt ||
		    a->r[i].flags != b->r[i].flags ||
		    a->r[i].off != b->r[i].off ||
		    a->r[i].len != b->r[i].len)
			return (false);
	return (true);
}

/* Free a log. */
static void
log_free(struct log *l)
{
	free(l->r);
	free(l->b);
}

/*
 * Escape in, decode it again (const, in place, data prefix): all DATA, the
 * same bytes; in place, one DATA event per call at most.
 */
static void
check_escape(const uint8_t *in, size_t len, size_t split)
{
	struct log l;
	struct telnet t;
	uint8_t *enc, *dec;
	size_t elen, dlen, i;
	int mode;

	CHECK((enc = malloc(2 * len + 1)) != NULL);
	elen = telnet_escape(enc, in, len);
	CHECK(elen == telnet_escaped_len(in, len));
	CHECK(elen >= len && elen <= 2 * len);
	if (split > elen)
		split = elen;
	/* Escaped data is console data only: telnet_input_data takes all. */
	CHECK((dec = malloc(elen + 1)) != NULL);
	telnet_init(&t, NULL, NULL);
	CHECK(telnet_input_data(&t, enc, elen, dec, &dlen) == elen);
	CHECK(dlen == len && (len == 0 || memcmp(dec, in, len) == 0));
	telnet_free(&t);
	free(dec);
	for (mode = 0; mode < 3; mode++) {
		memset(&l, 0, sizeof(l));
		l.t = &t;
		l.sb_max = TELNET_SB_MAX;
		l.inplace = mode == 1;
		l.dataprefix = mode == 2;
		telnet_init(&t, log_cb, &l);
		feed(&l, enc, split);
		feed(&l, enc + split, elen - split);
		telnet_free(&t);
		CHECK(l.blen == len);
		for (i = 0; i < l.n; i++)
			CHECK(l.r[i].type == TELNET_EV_DATA);
		CHECK(len == 0 || memcmp(l.b, in, len) == 0);
		log_free(&l);
	}
	free(enc);
}

/* Encode in as one SB payload, decode it again. */
static void
check_sb(const uint8_t *in, size_t len, uint8_t opt)
{
	struct log l;
	struct telnet t;
	uint8_t *enc;
	size_t cap = 2 * len + 5, elen;

	CHECK((enc = malloc(cap)) != NULL);
	elen = telnet_sb_encode(enc, cap, opt, in, len);
	CHECK(elen == telnet_escaped_len(in, len) + 5);
	CHECK(telnet_sb_encode(enc, elen - 1, opt, in, len) == 0);
	elen = telnet_sb_encode(enc, elen, opt, in, len);
	memset(&l, 0, sizeof(l));
	l.t = &t;
	l.sb_max = TELNET_SB_MAX;
	telnet_init(&t, log_cb, &l);
	feed(&l, enc, elen);
	telnet_free(&t);
	CHECK(l.n == 1);
	if (len <= TELNET_SB_MAX) {
		CHECK(l.r[0].type == TELNET_EV_SB && l.r[0].opt == opt);
		CHECK(l.r[0].len == len);
		CHECK(len == 0 || memcmp(l.b, in, len) == 0);
	} else {
		CHECK(l.r[0].type == TELNET_EV_ERROR);
		CHECK((l.r[0].flags >> 2) == TELNET_ERR_SB_TOO_LONG);
	}
	free(enc);
	log_free(&l);
}

/* The NVT filter gives the same bytes whole and in two pieces. */
static void
check_nvt(const uint8_t *in, size_t len, size_t split)
{
	uint8_t *a, *b;
	size_t na, nb, i, j;
	bool cra = false, crb = false;

	CHECK((a = malloc(len + 1)) != NULL);
	CHECK((b = malloc(len + 1)) != NULL);
	if (len > 0) {
		memcpy(a, in, len);
		memcpy(b, in, len);
	}
	na = telnet_nvt_filter(a, len, &cra);
	nb = telnet_nvt_filter(b, split, &crb);
	nb += telnet_nvt_filter(b + nb, 0, &crb);
	memmove(b + nb, b + split, len - split);
	nb += telnet_nvt_filter(b + nb, len - split, &crb);
	CHECK(na == nb && cra == crb && na <= len);
	CHECK(na == 0 || memcmp(a, b, na) == 0);
	/* Reference: drop exactly each NUL or LF that follows a CR. */
	for (i = 0, j = 0; i < len; i++) {
		if (i > 0 && in[i - 1] == '\r' &&
		    (in[i] == '\0' || in[i] == '\n'))
			continue;
		CHECK(j < na && a[j] == in[i]);
		j++;
	}
	CHECK(j == na);
	CHECK(cra == (len > 0 && in[len - 1] == '\r'));
	free(a);
	free(b);
}

/* Fuzz entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct log whole, two, bytes;
	const uint8_t *in;
	size_t len, split;
	uint32_t sb_max;
	int mode;

	if (size < 1)
		return (0);
	in = data + 1;
	len = size - 1;
	split = len * data[0] / 255;
	sb_max = (data[0] & 1) ? 16 : TELNET_SB_MAX;

	run(&whole, in, len, len, false, sb_max, 0);
	for (mode = 0; mode < 3; mode++) {
		if (mode > 0) {
			run(&two, in, len, len, false, sb_max, mode);
			CHECK(log_equal(&whole, &two));
			log_free(&two);
		}
		run(&two, in, len, split, false, sb_max, mode);
		CHECK(log_equal(&whole, &two));
		run(&bytes, in, len, 0, true, sb_max, mode);
		CHECK(log_equal(&whole, &bytes));
		log_free(&two);
		log_free(&bytes);
	}
	log_free(&whole);

	check_escape(in, len, split);
	check_sb(in, len, data[0]);
	check_nvt(in, len, split);
	return (0);
}
