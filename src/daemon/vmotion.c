/*
 * vMotion hand-over, per port (PROTOCOL-VMWARE.md sections 6.3-6.6).
 *
 *   IDLE --BEGIN--> BEGIN_RCVD --queue drained--> GOAHEAD_SENT --PEER-->
 *   PEERED --COMPLETE--> IDLE (destination is now the port's connection)
 *
 * From BEGIN until the vMotion ends, client input is held in port->hold
 * (bounded; clients are paused past the cap) and goes to the destination
 * after COMPLETE, or back to the source after NOTNOW, ABORT or abandon
 * (R6-R9). GOAHEAD is sent only once everything queued to the source has
 * been written. VM output from the source is always forwarded (R2); output
 * from the destination before COMPLETE is held in its pre-bind buffer and
 * released at COMPLETE (R3). A source that closes first (the capture shows
 * its FIN before COMPLETE in 2 of 3 vMotions) only marks the source dead
 * (E7); the port, its clients and its listener stay.
 *
 * Secrets: 8 bytes from getrandom(), IAC-doubled by the encoder, compared in
 * constant time, single use: a record is findable by PEER only while in
 * GOAHEAD_SENT, and is forgotten when the vMotion ends. A PEER that matches
 * nothing gets no PEER-OK and its connection is never bound to a port.
 */
#include <sys/types.h>
#include <sys/random.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

static int	vmotion_cmp(struct vmotion *, struct vmotion *);

RB_HEAD(vmotion_tree, vmotion) vmotion_tree = RB_INITIALIZER(&vmotion_tree);
RB_GENERATE_STATIC(vmotion_tree, vmotion, entry, vmotion_cmp)

uint64_t vmotion_bad_peers_unknown;
u_int vmotion_open;

static const char *vmotion_state_names[] = {
	[VMOTION_IDLE] = "idle",
	[VMOTION_BEGIN_RCVD] = "begin-received",
	[VMOTION_GOAHEAD_SENT] = "goahead-sent",
	[VMOTION_PEERED] = "peered",
};

/* Order records by sequence (length, bytes), then address. */
static int
vmotion_cmp(struct vmotion *a, struct vmotion *b)
{
	int r;

	if (a->seqlen != b->seqlen)
		return (a->seqlen < b->seqlen ? -1 : 1);
	if ((r = memcmp(a->seq, b->seq, a->seqlen)) != 0)
		return (r);
	if (b->port == NULL)	/* search key: first of equal sequences */
		return (a->port == NULL ? 0 : 1);
	if (a->port == NULL)
		return (-1);
	return (a < b ? -1 : a > b);
}

/* Name of a state for logs and the API. */
const char *
vmotion_state_name(struct port *p)
{
	if (p->vmotion == NULL)
		return (vmotion_state_names[VMOTION_IDLE]);
	return (vmotion_state_names[p->vmotion->state]);
}

/* Hex of a sequence for logs (sequences are not secret). */
static const char *
vmotion_seq_hex(struct vmotion *vm)
{
	static char buf[2 * VMWEXT_COOKIE_MAX + 1];
	size_t i;

	for (i = 0; i < vm->seqlen; i++)
		snprintf(buf + 2 * i, 3, "%02x", vm->seq[i]);
	buf[2 * vm->seqlen] = '\0';
	return (buf);
}

/* Seconds since the BEGIN. */
static double
vmotion_elapsed(struct vmotion *vm)
{
	struct timeval now, d;

	event_base_gettimeofday_cached(ev_base, &now);
	evutil_timersub(&now, &vm->started, &d);
	return ((double)d.tv_sec + (double)d.tv_usec / 1e6);
}

/* Arm the record's timer. */
static void
vmotion_arm(struct vmotion *vm, int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(vm->timer, &tv);
}

/* Remove the record from the PEER table: the secret is dead. */
static void
vmotion_unpublish(struct vmotion *vm)
{
	if (!vm->in_table)
		return;
	RB_REMOVE(vmotion_tree, &vmotion_tree, vm);
	vm->in_table = false;
	explicit_bzero(vm->secret, sizeof vm->secret);
}

/*
 * End a vMotion: forget the record, give held input to `to` (if any) and
 * let clients type again. The one teardown of a record.
 */
static void
vmotion_end(struct vmotion *vm, const char *outcome, struct vm_session *to)
{
	struct port *p = vm->port;
	char detail[512];

	snprintf(detail, sizeof detail, "seq %s %s after %.3f s (source %s, "
	    "destination %s)", vmotion_seq_hex(vm), outcome,
	    vmotion_elapsed(vm), vm->src != NULL ? vm->src->addr : "gone",
	    vm->dst != NULL ? vm->dst->addr : "none");
	log_info("port %s: vMotion %s", p->id, detail);
	consolelog_event(p->log, "vmotion", detail);
	vmotion_unpublish(vm);
	if (vm->src != NULL)
		bufferevent_setwatermark(vm->src->bev, EV_WRITE,
		    cfg.vm_queue / 2, 0);
	if (vm->dst != NULL)
		vm->dst->peer_of = NULL;
	event_free(vm->timer);
	p->vmotion = NULL;
	vmotion_open--;
	free(vm);
	port_flush_hold(p, to);
	port_vm_writable(p);
	port_check_expiry(p);
}

/* Give up on a vMotion: input back to the source, destination dropped. */
static void
vmotion_abandon(struct vmotion *vm, const char *why)
{
	struct vm_session *dst = vm->dst;
	struct port *p = vm->port;
	char outcome[128];

	p->vmotion_abandoned++;
	snprintf(outcome, sizeof outcome, "abandoned (%s)", why);
	vmotion_end(vm, outcome, vm->src);	/* clears dst->peer_of */
	if (dst != NULL)
		vm_close(dst, "vMotion abandoned");
}

/* Send GOAHEAD with a fresh secret and publish the record. */
static void
vmotion_goahead(struct vmotion *vm)
{
	ssize_t n;

	n = getrandom(vm->secret, sizeof vm->secret, 0);
	if (n != (ssize_t)sizeof vm->secret) {
		log_warn("port %s: getrandom", vm->port->id);
		vm->port->vmotion_notnow++;
		vm_send_ext(vm->src, VMWEXT_VMOTION_NOTNOW, vm->seq,
		    vm->seqlen, NULL, 0);
		vmotion_end(vm, "refused (no randomness)", vm->src);
		return;
	}
	vm_send_ext(vm->src, VMWEXT_VMOTION_GOAHEAD, vm->seq, vm->seqlen,
	    vm->secret, sizeof vm->secret);
	vm->state = VMOTION_GOAHEAD_SENT;
	RB_INSERT(vmotion_tree, &vmotion_tree, vm);
	vm->in_table = true;
	evtimer_del(vm->timer);
	vmotion_arm(vm, cfg.vmotion_peer_timeout * 1000);
	log_debug("port %s: GOAHEAD seq %s", vm->port->id,
	    vmotion_seq_hex(vm));
}

/* Deadline for the current state passed. */
static void
vmotion_timer(evutil_socket_t fd, short events, void *arg)
{
	struct vmotion *vm = arg;
	struct port *p = vm->port;

	switch (vm->state) {
	case VMOTION_BEGIN_RCVD:
		/* Queue did not drain in time (R6): NOTNOW. */
		p->vmotion_notnow++;
		vm_send_ext(vm->src, VMWEXT_VMOTION_NOTNOW, vm->seq,
		    vm->seqlen, NULL, 0);
		vmotion_end(vm, "refused with NOTNOW (queue did not drain)",
		    vm->src);
		break;
	case VMOTION_GOAHEAD_SENT:
		vmotion_abandon(vm, "no PEER in time");
		break;
	case VMOTION_PEERED:
		vmotion_abandon(vm, "no COMPLETE in time");
		break;
	case VMOTION_IDLE:
		break;
	}
}

/* VMOTION-BEGIN from a host connection. */
void
vmotion_begin(struct vm_session *vs, const uint8_t *seq, size_t len)
{
	struct port *p = vs->port;
	struct vmotion *vm;

	if (p == NULL || p->vm != vs) {
		/* E12: not bound (yet), or not the active connection. */
		log_warnx("vm %s: VMOTION-BEGIN before the connection is "
		    "bound; NOTNOW", vs->addr);
		vm_send_ext(vs, VMWEXT_VMOTION_NOTNOW, seq, len, NULL, 0);
		if (p != NULL)
			p->vmotion_notnow++;
		return;
	}
	if (p->vmotion != NULL) {
		/* E10: the host gave up on the previous one. */
		vmotion_abandon(p->vmotion, "superseded by a new BEGIN");
	}
	vm = xcalloc(1, sizeof *vm);
	vm->port = p;
	vm->src = vs;
	memcpy(vm->seq, seq, len);
	vm->seqlen = len;
	vm->state = VMOTION_BEGIN_RCVD;
	vm->timer = evtimer_new(ev_base, vmotion_timer, vm);
	event_base_gettimeofday_cached(ev_base, &vm->started);
	p->vmotion = vm;
	p->vmotion_begun++;
	vmotion_open++;
	if (vm_queue_len(vs) == 0) {
		vmotion_goahead(vm);
		return;
	}
	/* R6: GOAHEAD goes out behind every byte already queued. */
	bufferevent_setwatermark(vs->bev, EV_WRITE, 0, 0);
	vmotion_arm(vm, cfg.vmotion_drain_ms);
}

/* The source's output queue is empty. */
void
vmotion_src_drained(struct vm_session *vs)
{
	struct port *p = vs->port;

	if (p == NULL || p->vmotion == NULL || p->vmotion->src != vs ||
	    p->vmotion->state != VMOTION_BEGIN_RCVD)
		return;
	if (vm_queue_len(vs) == 0)
		vmotion_goahead(p->vmotion);
}

/* Compare two byte strings in constant time. */
static bool
vmotion_secret_eq(const uint8_t *a, const uint8_t *b, size_t len)
{
	volatile uint8_t acc = 0;
	size_t i;

	for (i = 0; i < len; i++)
		acc |= a[i] ^ b[i];
	return (acc == 0);
}

/* VMOTION-PEER on a new connection from the destination host. */
void
vmotion_peer(struct vm_session *vs, const uint8_t *cookie, size_t len)
{
	struct vmotion find, *vm, *match = NULL;
	size_t seqlen;
	u_int candidates = 0;
	bool usable;

	/*
	 * A connection gets one chance: after a bad PEER, or once bound or
	 * peered, nothing it sends can match (but is still counted against
	 * the port whose sequence it names).
	 */
	usable = vs->port == NULL && vs->peer_of == NULL &&
	    !vs->peer_rejected && vs->late_port == NULL;
	if (len > VMOTION_SECRET_LEN && len - VMOTION_SECRET_LEN <=
	    VMWEXT_COOKIE_MAX) {
		seqlen = len - VMOTION_SECRET_LEN;
		memset(&find, 0, sizeof find);
		memcpy(find.seq, cookie, seqlen);
		find.seqlen = seqlen;
		for (vm = RB_NFIND(vmotion_tree, &vmotion_tree, &find);
		    vm != NULL && vm->seqlen == seqlen &&
		    memcmp(vm->seq, cookie, seqlen) == 0;
		    vm = RB_NEXT(vmotion_tree, &vmotion_tree, vm)) {
			candidates++;
			if (usable && match == NULL &&
			    vmotion_secret_eq(vm->secret,
			    cookie + seqlen, VMOTION_SECRET_LEN))
				match = vm;
		}
	}
	if (match == NULL) {
		/* E5/E6: no PEER-OK; never bound by UUID alone. */
		vs->peer_rejected = true;
		if (candidates == 0)
			vmotion_bad_peers_unknown++;
		else {
			/* Right sequence, wrong secret: charge the port(s). */
			for (vm = RB_NFIND(vmotion_tree, &vmotion_tree, &find);
			    vm != NULL && vm->seqlen == seqlen &&
			    memcmp(vm->seq, cookie, seqlen) == 0;
			    vm = RB_NEXT(vmotion_tree, &vmotion_tree, vm))
				vm->port->vmotion_bad_peers++;
		}
		log_warnx("vm %s: VMOTION-PEER with an unknown, used or "
		    "expired secret (%zu bytes)%s; rejected", vs->addr, len,
		    usable ? "" : " on a used connection");
		return;
	}
	vm = match;
	vm_identified(vs);
	vmotion_unpublish(vm);		/* single use */
	vm->dst = vs;
	vs->peer_of = vm;
	vm->state = VMOTION_PEERED;
	evtimer_del(vs->timer);		/* no DO-PROXY will come */
	evtimer_del(vm->timer);
	vmotion_arm(vm, cfg.vmotion_complete_timeout * 1000);
	vm_send_ext(vs, VMWEXT_VMOTION_PEER_OK, vm->seq, vm->seqlen, NULL, 0);
	log_debug("port %s: PEER-OK to %s", vm->port->id, vs->addr);
}

/* VMOTION-COMPLETE: the destination takes over the port. */
void
vmotion_complete(struct vm_session *vs, const uint8_t *seq, size_t len)
{
	struct vmotion *vm = vs->peer_of;
	struct vm_session *src;
	struct port *p;
	size_t n;

	if (vm == NULL || vm->dst != vs || vm->state != VMOTION_PEERED) {
		/* E11: COMPLETE on the wrong connection. */
		log_warnx("vm %s: VMOTION-COMPLETE with no vMotion peered on "
		    "this connection; ignored", vs->addr);
		return;
	}
	if (len != vm->seqlen || memcmp(seq, vm->seq, len) != 0) {
		log_warnx("vm %s: VMOTION-COMPLETE with a wrong sequence; "
		    "ignored", vs->addr);
		return;
	}
	p = vm->port;
	src = vm->src;
	p->vmotion_completed++;
	/* The old source stays readable until EOF (R4, E8). */
	if (src != NULL)
		vm_retire_source(src, p);
	p->vm = NULL;
	vs->peer_of = NULL;
	vs->proxy_ok = true;
	vs->direction = p->direction;
	if (vs->uri == NULL)
		vs->uri = xstrdup(p->uri);
	if (!vs->have_uuid) {
		strlcpy(vs->uuid, p->uuid, sizeof vs->uuid);
		vs->have_uuid = true;
	}
	port_bind_vm(p, vs);
	if (vs->name != NULL)
		port_set_name(p, vs->name);
	/* R3: output the destination sent before COMPLETE, in order. */
	if ((n = evbuffer_get_length(vs->prebind)) > 0) {
		log_warnx("port %s: %zu bytes from the destination before "
		    "COMPLETE released", p->id, n);
		port_output(p, evbuffer_pullup(vs->prebind, -1), n);
		evbuffer_drain(vs->prebind, n);
	}
	vm_resume_read(vs);
	vmotion_end(vm, "completed", vs);	/* R8: hold to destination */
}

/* VMOTION-ABORT from the source. */
void
vmotion_abort(struct vm_session *vs)
{
	struct port *p = vs->port;
	struct vmotion *vm;
	struct vm_session *dst;

	if (p == NULL || (vm = p->vmotion) == NULL || vm->src != vs) {
		log_warnx("vm %s: VMOTION-ABORT with no vMotion begun on this "
		    "connection; ignored", vs->addr);
		return;
	}
	p->vmotion_aborted++;
	dst = vm->dst;
	vmotion_end(vm, "aborted by the source", vs);	/* R9 */
	if (dst != NULL)
		vm_close(dst, "vMotion aborted");
}

/* The destination's UUID arrived: it must be the port's. */
void
vmotion_dst_uuid(struct vm_session *vs, const char *uuid)
{
	struct vmotion *vm = vs->peer_of;

	if (vm == NULL || strcmp(vm->port->uuid, uuid) == 0)
		return;
	log_warnx("port %s: vMotion destination %s reports UUID %s; dropped",
	    vm->port->id, vs->addr, uuid);
	vm->port->vmotion_bad_peers++;
	vm->dst = NULL;
	vs->peer_of = NULL;
	vs->peer_rejected = true;
	vs->dead = true;	/* closed once its read callback returns */
	if (vm->src == NULL) {
		vm->port->vmotion_abandoned++;
		vmotion_end(vm, "abandoned (destination UUID mismatch, "
		    "source gone)", NULL);
	}
}

/* A host connection is closing: fix up any vMotion it takes part in. */
void
vmotion_vm_closed(struct vm_session *vs)
{
	struct vmotion *vm;

	if ((vm = vs->peer_of) != NULL) {
		/* E9: destination gone before COMPLETE. */
		vm->dst = NULL;
		vs->peer_of = NULL;
		log_info("port %s: vMotion destination %s closed before "
		    "COMPLETE", vm->port->id, vs->addr);
		if (vm->src == NULL)
			vmotion_abandon(vm, "source and destination closed");
		return;
	}
	if (vs->port == NULL || (vm = vs->port->vmotion) == NULL ||
	    vm->src != vs)
		return;
	/* E7: the source closed. */
	vm->src = NULL;
	if (vm->state == VMOTION_BEGIN_RCVD)
		vmotion_abandon(vm, "source closed before GOAHEAD");
	else if (vm->state == VMOTION_PEERED && vm->dst == NULL)
		vmotion_abandon(vm, "source and destination closed");
	else
		log_debug("port %s: vMotion source closed in state %s",
		    vs->port->id, vmotion_state_names[vm->state]);
}

/*
 * Port teardown or a fresh reconnect: drop any vMotion of the port. With
 * keep_hold, held input stays in the port for the connection that replaces
 * the source, instead of going back to the source.
 */
void
vmotion_port_reset(struct port *p, const char *why, bool keep_hold)
{
	if (p->vmotion == NULL)
		return;
	if (keep_hold)
		p->vmotion->src = NULL;
	vmotion_abandon(p->vmotion, why);
}

/* True while client input must be held (BEGIN until the end). */
bool
vmotion_holding(struct port *p)
{
	return (p->vmotion != NULL);
}
