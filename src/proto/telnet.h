/*
 * Pure telnet codec: RFC 854/855 framing, RFC 1143 "Q method" option
 * negotiation, bounded subnegotiation, IAC doubling.
 *
 * Bytes go in through telnet_input(); everything that comes out (console
 * data, commands, option changes, subnegotiations, protocol errors, and the
 * bytes the codec wants sent back to the peer) is reported through one
 * callback. No sockets, no clock, no allocation except the SB buffer, which
 * grows on demand up to sb_max and is freed by telnet_free().
 *
 * The callback may call telnet_request() (to negotiate) but must not call
 * telnet_free() or telnet_input() on the same struct while inside it.
 */
#ifndef TELNET_H
#define TELNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TELNET_IAC	255
#define TELNET_DONT	254
#define TELNET_DO	253
#define TELNET_WONT	252
#define TELNET_WILL	251
#define TELNET_SB	250
#define TELNET_GA	249
#define TELNET_EL	248
#define TELNET_EC	247
#define TELNET_AYT	246
#define TELNET_AO	245
#define TELNET_IP	244
#define TELNET_BRK	243
#define TELNET_DM	242
#define TELNET_NOP	241
#define TELNET_SE	240
#define TELNET_EOR	239
#define TELNET_ABORT	238
#define TELNET_SUSP	237
#define TELNET_EOF	236

#define TELOPT_BINARY	0
#define TELOPT_ECHO	1
#define TELOPT_SGA	3
#define TELOPT_STATUS	5
#define TELOPT_TM	6
#define TELOPT_TTYPE	24
#define TELOPT_NAWS	31
#define TELOPT_LINEMODE	34
#define TELOPT_AUTH	37
#define TELOPT_NEWENV	39
#define TELOPT_COMPORT	44
#define TELOPT_VMWARE	232
#define TELOPT_VSPC	201	/* private: vspc in-session control */

/* Default cap on one subnegotiation payload (after un-doubling). */
#define TELNET_SB_MAX	4096

/* RFC 1143 per-side states. */
enum telnet_q {
	TELNET_Q_NO = 0,
	TELNET_Q_YES,
	TELNET_Q_WANTNO,
	TELNET_Q_WANTYES,
};

/* Per-option negotiation state and local policy. */
struct telnet_opt {
	uint8_t us:2;		/* enum telnet_q: our side (WILL/WONT) */
	uint8_t usq:1;		/* queue bit: 0 EMPTY, 1 OPPOSITE */
	uint8_t him:2;		/* enum telnet_q: his side (DO/DONT) */
	uint8_t himq:1;
	uint8_t accept_us:1;	/* agree to his DO opt */
	uint8_t accept_him:1;	/* agree to his WILL opt */
};

enum telnet_ev_type {
	TELNET_EV_DATA,		/* data/len: console bytes */
	TELNET_EV_CMD,		/* cmd: a two-byte command (NOP, IP, AYT, ...) */
	TELNET_EV_NEG,		/* cmd (WILL..DONT)/opt: raw negotiation seen */
	TELNET_EV_OPTION,	/* opt/us/enabled: option became YES or NO */
	TELNET_EV_SB,		/* opt/data/len: whole SB, un-doubled */
	TELNET_EV_ERROR,	/* err: malformed input, already recovered */
	TELNET_EV_SEND,		/* data/len: bytes to send to the peer */
};

enum telnet_err {
	TELNET_ERR_NONE = 0,
	TELNET_ERR_SE_OUTSIDE_SB,	/* IAC SE with no SB open: ignored */
	TELNET_ERR_SB_BAD_IAC,		/* IAC x in SB, x not IAC/SE: SB ended */
	TELNET_ERR_SB_TOO_LONG,		/* SB over sb_max: payload discarded */
	TELNET_ERR_NEG_LOOP,		/* peer answered our request oddly */
};

struct telnet_event {
	enum telnet_ev_type type;
	uint8_t cmd;
	uint8_t opt;
	bool us;		/* OPTION: true for our side, false for his */
	bool enabled;		/* OPTION: new state is YES */
	enum telnet_err err;
	const uint8_t *data;	/* DATA, SB, SEND; valid only in the callback */
	size_t len;
};

typedef void (*telnet_event_cb)(void *arg, const struct telnet_event *ev);

struct telnet {
	uint8_t state;		/* parser state, private */
	uint8_t neg;		/* pending WILL/WONT/DO/DONT, private */
	uint8_t sb_opt;
	bool sb_overflow;
	uint8_t *sb;		/* SB payload buffer, grown on demand */
	uint32_t sb_len;
	uint32_t sb_cap;
	uint32_t sb_max;	/* cap; TELNET_SB_MAX after telnet_init */
	struct telnet_opt opts[256];
	telnet_event_cb cb;
	void *arg;
};

/* Initialise; every option starts NO/NO and refused. */
void telnet_init(struct telnet *, telnet_event_cb, void *);

/* Free the SB buffer. The struct may be telnet_init'ed again. */
void telnet_free(struct telnet *);

/* Local policy: agree to enable opt on our side / his side when asked. */
void telnet_set_accept(struct telnet *, uint8_t opt, bool us, bool him);

/*
 * Feed bytes from the peer. Data runs are reported as DATA events pointing
 * into buf (a doubled IAC is reported as a one-byte DATA event), so a run is
 * never copied. State is kept across calls: any split of the input gives the
 * same sequence of events, except that DATA runs may be cut differently.
 */
void telnet_input(struct telnet *, const uint8_t *buf, size_t len);

/*
 * As telnet_input(), but IAC IAC is un-doubled in place: the console data
 * between two other events (or the ends of buf) is reported as ONE DATA
 * event pointing into buf, with the doubled IACs already removed. Bytes of
 * buf not covered by a DATA event are left unspecified. Events other than
 * DATA, and the concatenated DATA bytes, are exactly those of
 * telnet_input() on the same input, for any split.
 */
void telnet_input_inplace(struct telnet *, uint8_t *buf, size_t len);

/* True if the parser is in the data state (no command under way). */
bool telnet_in_data(const struct telnet *);

/*
 * The console data at the start of buf, decoded without events, for a
 * parser in the data state: copies to dst (room for len bytes) the bytes up
 * to the first IAC that is not the first of an IAC IAC pair inside buf (a
 * command, or a lone IAC that ends buf), each IAC IAC as one 0xFF, and sets
 * *dlen to their number. Returns how many bytes of buf that took: 0 if the
 * parser is not in the data state (nothing copied). The parser state does
 * not change. buf[0..n) is then exactly what telnet_escape() makes of
 * dst[0..*dlen), and feeding buf + n to telnet_input() or
 * telnet_input_inplace() next gives the events of feeding buf whole, with
 * dst as the DATA those would have reported first.
 */
size_t telnet_input_data(struct telnet *, const uint8_t *buf, size_t len,
    uint8_t *dst, size_t *dlen);

/*
 * Ask to enable or disable opt on our side (us: WILL/WONT) or his side
 * (DO/DONT), following RFC 1143. Emits SEND if a request goes out.
 */
void telnet_request(struct telnet *, uint8_t opt, bool us, bool enable);

/* True if opt is in state YES on the given side. */
bool telnet_enabled(const struct telnet *, uint8_t opt, bool us);

/* Bytes needed to send src with every 0xFF doubled. */
size_t telnet_escaped_len(const uint8_t *src, size_t len);

/* Copy src to dst doubling 0xFF; dst must hold 2*len. Returns bytes written. */
size_t telnet_escape(uint8_t *dst, const uint8_t *src, size_t len);

/*
 * Encode IAC SB opt <payload, 0xFF doubled> IAC SE into dst. Returns the
 * length, or 0 if it does not fit in cap (nothing useful written then).
 */
size_t telnet_sb_encode(uint8_t *dst, size_t cap, uint8_t opt,
    const uint8_t *payload, size_t len);

/* Encode a three-byte negotiation IAC cmd opt into dst[3]. */
void telnet_neg_encode(uint8_t *dst, uint8_t cmd, uint8_t opt);

/*
 * NVT newline filter for input from a client that has not agreed to send
 * BINARY: CR NUL becomes CR, CR LF becomes CR (serial consoles want CR).
 * Works in place on buf and keeps state (a trailing CR) in *pending_cr
 * between calls. Returns the new length.
 */
size_t telnet_nvt_filter(uint8_t *buf, size_t len, bool *pending_cr);

#endif
