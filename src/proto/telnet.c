/*
 * Pure telnet codec.
 *
 * The parser is a state machine whose state lives in struct telnet, so
 * input may be cut anywhere. In the data state it jumps from IAC to IAC
 * with memchr; commands and subnegotiations go a byte at a time. Data runs
 * are reported as pointers into the caller's buffer: telnet_input() leaves
 * the buffer alone (so a doubled IAC ends a run), telnet_input_inplace()
 * un-doubles IAC IAC in the buffer so that the data between two commands
 * is one DATA event. Only subnegotiation payloads are copied (un-doubled)
 * into t->sb, which grows on demand up to t->sb_max.
 *
 * Malformed input never stops the parser. IAC x inside SB (x neither IAC nor
 * SE) ends the SB where it stands, as Wireshark and ESXi read it, and IAC x
 * is then handled as if it came outside SB. IAC SE outside SB is ignored.
 *
 * Negotiation follows RFC 1143 (the Q method) for both sides of every
 * option. One routine serves both sides: for "him" the positive and negative
 * requests are WILL/WONT and our answers DO/DONT; for "us" they are DO/DONT
 * and WILL/WONT. An OPTION event is emitted exactly when the value returned
 * by telnet_enabled() changes, after any reply has been emitted, so that the
 * callback may negotiate further from it.
 */
#include <stdlib.h>
#include <string.h>

#include "telnet.h"

enum telnet_state {
	TELNET_S_DATA = 0,
	TELNET_S_IAC,		/* seen IAC */
	TELNET_S_NEG,		/* seen IAC WILL/WONT/DO/DONT, need option */
	TELNET_S_SB,		/* seen IAC SB, need option */
	TELNET_S_SBDATA,	/* inside SB payload */
	TELNET_S_SBIAC,		/* seen IAC inside SB payload */
};

#define TELNET_Q_EMPTY		0
#define TELNET_Q_OPPOSITE	1

/* First allocation for the SB buffer. */
#define TELNET_SB_INITIAL	64

/* Pass one event to the callback, if there is one. */
static void
telnet_emit(struct telnet *t, const struct telnet_event *ev)
{
	if (t->cb != NULL)
		t->cb(t->arg, ev);
}

/* Emit a DATA event for len bytes at p. */
static void
telnet_emit_data(struct telnet *t, const uint8_t *p, size_t len)
{
	struct telnet_event ev;

	if (len == 0)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = TELNET_EV_DATA;
	ev.data = p;
	ev.len = len;
	telnet_emit(t, &ev);
}

/* Emit an ERROR event. */
static void
telnet_emit_error(struct telnet *t, enum telnet_err err)
{
	struct telnet_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = TELNET_EV_ERROR;
	ev.err = err;
	telnet_emit(t, &ev);
}

/* Emit a SEND event carrying IAC cmd opt. */
static void
telnet_emit_neg(struct telnet *t, uint8_t cmd, uint8_t opt)
{
	struct telnet_event ev;
	uint8_t buf[3];

	telnet_neg_encode(buf, cmd, opt);
	memset(&ev, 0, sizeof(ev));
	ev.type = TELNET_EV_SEND;
	ev.cmd = cmd;
	ev.opt = opt;
	ev.data = buf;
	ev.len = sizeof(buf);
	telnet_emit(t, &ev);
}

/* Emit an OPTION event: opt on one side became enabled or disabled. */
static void
telnet_emit_option(struct telnet *t, uint8_t opt, bool us, bool enabled)
{
	struct telnet_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = TELNET_EV_OPTION;
	ev.opt = opt;
	ev.us = us;
	ev.enabled = enabled;
	telnet_emit(t, &ev);
}

/* Read the Q state and queue bit of one side of an option. */
static void
telnet_q_get(const struct telnet_opt *o, bool us, int *st, int *q)
{
	if (us) {
		*st = o->us;
		*q = o->usq;
	} else {
		*st = o->him;
		*q = o->himq;
	}
}

/* Store the Q state and queue bit of one side of an option. */
static void
telnet_q_set(struct telnet_opt *o, bool us, int st, int q)
{
	if (us) {
		o->us = (unsigned)st & 3;
		o->usq = (unsigned)q & 1;
	} else {
		o->him = (unsigned)st & 3;
		o->himq = (unsigned)q & 1;
	}
}

/*
 * Apply a received negotiation to one side of opt (RFC 1143). positive is
 * WILL for his side, DO for ours. All state changes happen before any event
 * goes out, so a callback that calls telnet_request() sees the new state.
 */
static void
telnet_q_receive(struct telnet *t, uint8_t opt, bool us, bool positive)
{
	struct telnet_opt *o = &t->opts[opt];
	uint8_t yes = us ? TELNET_WILL : TELNET_DO;
	uint8_t no = us ? TELNET_WONT : TELNET_DONT;
	bool accept = us ? o->accept_us : o->accept_him;
	int st, q, send = -1, err = 0, change = -1;

	telnet_q_get(o, us, &st, &q);
	if (positive) {
		switch (st) {
		case TELNET_Q_NO:
			if (accept) {
				telnet_q_set(o, us, TELNET_Q_YES, q);
				send = yes;
				change = 1;
			} else
				send = no;
			break;
		case TELNET_Q_YES:
			break;
		case TELNET_Q_WANTNO:
			/* His WILL answered our DONT. */
			err = 1;
			if (q == TELNET_Q_EMPTY)
				telnet_q_set(o, us, TELNET_Q_NO, TELNET_Q_EMPTY);
			else {
				telnet_q_set(o, us, TELNET_Q_YES,
				    TELNET_Q_EMPTY);
				change = 1;
			}
			break;
		case TELNET_Q_WANTYES:
			if (q == TELNET_Q_EMPTY) {
				telnet_q_set(o, us, TELNET_Q_YES,
				    TELNET_Q_EMPTY);
				change = 1;
			} else {
				telnet_q_set(o, us, TELNET_Q_WANTNO,
				    TELNET_Q_EMPTY);
				send = no;
			}
			break;
		}
	} else {
		switch (st) {
		case TELNET_Q_NO:
			/* Never answer a refusal of something already off. */
			break;
		case TELNET_Q_YES:
			telnet_q_set(o, us, TELNET_Q_NO, TELNET_Q_EMPTY);
			send = no;
			change = 0;
			break;
		case TELNET_Q_WANTNO:
			if (q == TELNET_Q_EMPTY)
				telnet_q_set(o, us, TELNET_Q_NO,
				    TELNET_Q_EMPTY);
			else {
				telnet_q_set(o, us, TELNET_Q_WANTYES,
				    TELNET_Q_EMPTY);
				send = yes;
			}
			break;
		case TELNET_Q_WANTYES:
			telnet_q_set(o, us, TELNET_Q_NO, TELNET_Q_EMPTY);
			break;
		}
	}

	if (err)
		telnet_emit_error(t, TELNET_ERR_NEG_LOOP);
	if (send != -1)
		telnet_emit_neg(t, (uint8_t)send, opt);
	if (change != -1)
		telnet_emit_option(t, opt, us, change == 1);
}

/* Handle a complete IAC WILL/WONT/DO/DONT opt from the peer. */
static void
telnet_negotiate(struct telnet *t, uint8_t cmd, uint8_t opt)
{
	struct telnet_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = TELNET_EV_NEG;
	ev.cmd = cmd;
	ev.opt = opt;
	telnet_emit(t, &ev);

	switch (cmd) {
	case TELNET_WILL:
		telnet_q_receive(t, opt, false, true);
		break;
	case TELNET_WONT:
		telnet_q_receive(t, opt, false, false);
		break;
	case TELNET_DO:
		telnet_q_receive(t, opt, true, true);
		break;
	case TELNET_DONT:
		telnet_q_receive(t, opt, true, false);
		break;
	}
}

/* Append one un-doubled byte to the SB payload, or mark it too long. */
static void
telnet_sb_put(struct telnet *t, uint8_t c)
{
	uint8_t *p;
	uint32_t cap;

	if (t->sb_overflow)
		return;
	if (t->sb_len >= t->sb_max) {
		t->sb_overflow = true;
		return;
	}
	if (t->sb_len >= t->sb_cap) {
		cap = t->sb_cap < TELNET_SB_INITIAL / 2 ? TELNET_SB_INITIAL :
		    t->sb_cap * 2;
		if (cap > t->sb_max || cap < t->sb_cap)
			cap = t->sb_max;
		if ((p = realloc(t->sb, cap)) == NULL) {
			/* XXX Out of memory: report it as an SB too long. */
			t->sb_overflow = true;
			return;
		}
		t->sb = p;
		t->sb_cap = cap;
	}
	t->sb[t->sb_len++] = c;
}

/* Finish the open SB: emit it, or an error if it went over the cap. */
static void
telnet_sb_end(struct telnet *t)
{
	struct telnet_event ev;

	if (t->sb_overflow)
		telnet_emit_error(t, TELNET_ERR_SB_TOO_LONG);
	else {
		memset(&ev, 0, sizeof(ev));
		ev.type = TELNET_EV_SB;
		ev.opt = t->sb_opt;
		ev.data = t->sb != NULL ? t->sb : (const uint8_t *)"";
		ev.len = t->sb_len;
		telnet_emit(t, &ev);
	}
	t->sb_len = 0;
	t->sb_overflow = false;
}

/*
 * Handle the byte after an IAC outside SB (never IAC itself, which the
 * caller turns into data). Returns the next parser state.
 */
static uint8_t
telnet_command(struct telnet *t, uint8_t c)
{
	struct telnet_event ev;

	switch (c) {
	case TELNET_WILL:
	case TELNET_WONT:
	case TELNET_DO:
	case TELNET_DONT:
		t->neg = c;
		return (TELNET_S_NEG);
	case TELNET_SB:
		return (TELNET_S_SB);
	case TELNET_SE:
		telnet_emit_error(t, TELNET_ERR_SE_OUTSIDE_SB);
		return (TELNET_S_DATA);
	default:
		/* NOP, DM, BRK, ... and unknown values: a no-op command. */
		memset(&ev, 0, sizeof(ev));
		ev.type = TELNET_EV_CMD;
		ev.cmd = c;
		telnet_emit(t, &ev);
		return (TELNET_S_DATA);
	}
}

/* Initialise; every option starts NO/NO and refused. */
void
telnet_init(struct telnet *t, telnet_event_cb cb, void *arg)
{
	memset(t, 0, sizeof(*t));
	t->state = TELNET_S_DATA;
	t->sb_max = TELNET_SB_MAX;
	t->cb = cb;
	t->arg = arg;
}

/* Free the SB buffer. */
void
telnet_free(struct telnet *t)
{
	free(t->sb);
	t->sb = NULL;
	t->sb_len = 0;
	t->sb_cap = 0;
}

/* Set the local policy for opt. */
void
telnet_set_accept(struct telnet *t, uint8_t opt, bool us, bool him)
{
	t->opts[opt].accept_us = us;
	t->opts[opt].accept_him = him;
}

/*
 * Console data found by one telnet_parse() call, not yet reported. In the
 * const mode (w == NULL) it is the run [p, p + len) of the input; in the
 * in-place mode it is [p, w): the decoded bytes, moved down over the
 * doubled IACs already removed.
 */
struct telnet_run {
	const uint8_t *in;	/* the input */
	uint8_t *mut;		/* the same bytes, writable; NULL: const mode */
	const uint8_t *p;
	size_t len;		/* const mode */
	uint8_t *w;		/* in-place mode: end of the decoded bytes */
};

/* Report the pending data, if any. */
static void
telnet_run_flush(struct telnet *t, struct telnet_run *r)
{
	if (r->mut != NULL) {
		if (r->p != NULL)
			telnet_emit_data(t, r->p, (size_t)(r->w - r->p));
		r->p = NULL;
		return;
	}
	if (r->len > 0)
		telnet_emit_data(t, r->p, r->len);
	r->len = 0;
}

/*
 * Add n console bytes at p to the pending data. In the in-place mode they
 * are moved down to the end of what is pending (one memmove per run).
 */
static void
telnet_run_add(struct telnet *t, struct telnet_run *r, const uint8_t *p,
    size_t n)
{
	uint8_t *src;

	if (r->mut != NULL) {
		src = r->mut + (p - r->in);
		if (r->p == NULL) {
			r->p = src;
			r->w = src;
		} else if (r->w != src)
			memmove(r->w, src, n);
		r->w += n;
		return;
	}
	if (r->len > 0 && r->p + r->len == p) {
		r->len += n;
		return;
	}
	telnet_run_flush(t, r);
	r->p = p;
	r->len = n;
}

/*
 * The state machine. Outside commands it jumps from one IAC to the next
 * with memchr, so data costs no per-byte work; the other states are rare
 * (negotiation, subnegotiation) and go a byte at a time.
 */
static void
telnet_parse(struct telnet *t, const uint8_t *buf, uint8_t *mut, size_t len)
{
	struct telnet_run r = { .in = buf, .mut = mut };
	const uint8_t *p = buf, *end = buf + len, *ff;
	uint8_t c;

	while (p < end) {
		if (t->state == TELNET_S_DATA) {
			ff = memchr(p, TELNET_IAC, (size_t)(end - p));
			if (ff == NULL) {
				telnet_run_add(t, &r, p, (size_t)(end - p));
				break;
			}
			if (ff > p)
				telnet_run_add(t, &r, p, (size_t)(ff - p));
			p = ff + 1;
			t->state = TELNET_S_IAC;
			continue;
		}
		c = *p++;
		switch (t->state) {
		case TELNET_S_IAC:
			if (c == TELNET_IAC) {
				/*
				 * A doubled IAC is one data byte, the second
				 * 0xFF. The const mode reports it alone, as
				 * a pointer into the input.
				 */
				t->state = TELNET_S_DATA;
				if (mut != NULL && r.p != NULL) {
					*r.w++ = TELNET_IAC;	/* no call */
					break;
				}
				if (mut == NULL)
					telnet_run_flush(t, &r);
				telnet_run_add(t, &r, p - 1, 1);
				if (mut == NULL)
					telnet_run_flush(t, &r);
				break;
			}
			telnet_run_flush(t, &r);
			t->state = telnet_command(t, c);
			break;
		case TELNET_S_NEG:
			t->state = TELNET_S_DATA;
			telnet_negotiate(t, t->neg, c);
			break;
		case TELNET_S_SB:
			t->sb_opt = c;
			t->sb_len = 0;
			t->sb_overflow = false;
			t->state = TELNET_S_SBDATA;
			break;
		case TELNET_S_SBDATA:
			if (c == TELNET_IAC)
				t->state = TELNET_S_SBIAC;
			else
				telnet_sb_put(t, c);
			break;
		case TELNET_S_SBIAC:
			if (c == TELNET_IAC) {
				telnet_sb_put(t, c);
				t->state = TELNET_S_SBDATA;
			} else if (c == TELNET_SE) {
				t->state = TELNET_S_DATA;
				telnet_sb_end(t);
			} else {
				/* End the SB here; IAC c counts as outside. */
				t->state = TELNET_S_DATA;
				telnet_emit_error(t, TELNET_ERR_SB_BAD_IAC);
				telnet_sb_end(t);
				t->state = telnet_command(t, c);
			}
			break;
		default:
			t->state = TELNET_S_DATA;
			break;
		}
	}
	telnet_run_flush(t, &r);
}

/* Feed bytes from the peer; DATA points into buf. */
void
telnet_input(struct telnet *t, const uint8_t *buf, size_t len)
{
	telnet_parse(t, buf, NULL, len);
}

/* Feed bytes from the peer, un-doubling IAC IAC in place. */
void
telnet_input_inplace(struct telnet *t, uint8_t *buf, size_t len)
{
	telnet_parse(t, buf, buf, len);
}

/* True if the parser is in the data state. */
bool
telnet_in_data(const struct telnet *t)
{
	return (t->state == TELNET_S_DATA);
}

/*
 * The leading console data of buf, un-doubled into dst: one memchr and one
 * memcpy per run between two 0xFF, stopping before an IAC that is not half
 * of an IAC IAC pair inside buf. No events and no state change: the data
 * state is the only one this applies to, and it is the state after.
 */
size_t
telnet_input_data(struct telnet *t, const uint8_t *buf, size_t len,
    uint8_t *dst, size_t *dlen)
{
	const uint8_t *p = buf, *end = buf + len, *ff;
	uint8_t *d = dst;
	size_t n;

	*dlen = 0;
	if (t->state != TELNET_S_DATA)
		return (0);
	while (p < end) {
		ff = memchr(p, TELNET_IAC, (size_t)(end - p));
		if (ff == NULL || ff + 1 == end || ff[1] != TELNET_IAC) {
			/* The rest, or up to a command or a lone IAC. */
			n = (size_t)((ff == NULL ? end : ff) - p);
			memcpy(d, p, n);
			d += n;
			p += n;
			break;
		}
		/* The run and the first IAC of the pair; skip the second. */
		n = (size_t)(ff + 1 - p);
		memcpy(d, p, n);
		d += n;
		p = ff + 2;
	}
	*dlen = (size_t)(d - dst);
	return ((size_t)(p - buf));
}

/* Ask to enable or disable one side of opt (RFC 1143). */
void
telnet_request(struct telnet *t, uint8_t opt, bool us, bool enable)
{
	struct telnet_opt *o = &t->opts[opt];
	uint8_t yes = us ? TELNET_WILL : TELNET_DO;
	uint8_t no = us ? TELNET_WONT : TELNET_DONT;
	int st, q;

	telnet_q_get(o, us, &st, &q);
	switch (st) {
	case TELNET_Q_NO:
		if (enable) {
			telnet_q_set(o, us, TELNET_Q_WANTYES, TELNET_Q_EMPTY);
			telnet_emit_neg(t, yes, opt);
		}
		break;
	case TELNET_Q_YES:
		if (!enable) {
			telnet_q_set(o, us, TELNET_Q_WANTNO, TELNET_Q_EMPTY);
			telnet_emit_neg(t, no, opt);
			telnet_emit_option(t, opt, us, false);
		}
		break;
	case TELNET_Q_WANTNO:
		/* Enable: queue it; disable: drop a queued enable. */
		telnet_q_set(o, us, TELNET_Q_WANTNO,
		    enable ? TELNET_Q_OPPOSITE : TELNET_Q_EMPTY);
		break;
	case TELNET_Q_WANTYES:
		/* Disable: queue it; enable: drop a queued disable. */
		telnet_q_set(o, us, TELNET_Q_WANTYES,
		    enable ? TELNET_Q_EMPTY : TELNET_Q_OPPOSITE);
		break;
	}
}

/* True if opt is in state YES on the given side. */
bool
telnet_enabled(const struct telnet *t, uint8_t opt, bool us)
{
	const struct telnet_opt *o = &t->opts[opt];

	return ((us ? o->us : o->him) == TELNET_Q_YES);
}

/* Count the bytes needed to send src with every 0xFF doubled. */
size_t
telnet_escaped_len(const uint8_t *src, size_t len)
{
	const uint8_t *p = src, *end = src + len, *ff;
	size_t n = len;

	while (p < end && (ff = memchr(p, TELNET_IAC, (size_t)(end - p))) !=
	    NULL) {
		n++;
		p = ff + 1;
	}
	return (n);
}

/* Copy src to dst doubling 0xFF: one memcpy per run between 0xFFs. */
size_t
telnet_escape(uint8_t *dst, const uint8_t *src, size_t len)
{
	const uint8_t *p = src, *end = src + len, *ff;
	uint8_t *d = dst;
	size_t n;

	while (p < end) {
		ff = memchr(p, TELNET_IAC, (size_t)(end - p));
		n = ff == NULL ? (size_t)(end - p) : (size_t)(ff + 1 - p);
		memcpy(d, p, n);
		d += n;
		p += n;
		if (ff == NULL)
			break;
		*d++ = TELNET_IAC;
	}
	return ((size_t)(d - dst));
}

/* Encode IAC SB opt payload IAC SE, or return 0 if it does not fit. */
size_t
telnet_sb_encode(uint8_t *dst, size_t cap, uint8_t opt,
    const uint8_t *payload, size_t len)
{
	size_t n;

	n = telnet_escaped_len(payload, len);
	if (cap < 5 || n > cap - 5)
		return (0);
	dst[0] = TELNET_IAC;
	dst[1] = TELNET_SB;
	dst[2] = opt;
	n = 3 + telnet_escape(dst + 3, payload, len);
	dst[n++] = TELNET_IAC;
	dst[n++] = TELNET_SE;
	return (n);
}

/* Encode IAC cmd opt into dst[3]. */
void
telnet_neg_encode(uint8_t *dst, uint8_t cmd, uint8_t opt)
{
	dst[0] = TELNET_IAC;
	dst[1] = cmd;
	dst[2] = opt;
}

/* Turn CR NUL and CR LF into CR in place; a trailing CR waits in *pending. */
size_t
telnet_nvt_filter(uint8_t *buf, size_t len, bool *pending_cr)
{
	size_t i, n = 0;
	uint8_t c;

	for (i = 0; i < len; i++) {
		c = buf[i];
		if (*pending_cr) {
			*pending_cr = false;
			if (c == '\0' || c == '\n')
				continue;
		}
		buf[n++] = c;
		if (c == '\r')
			*pending_cr = true;
	}
	return (n);
}
