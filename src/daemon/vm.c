/*
 * VM side: one session per TCP connection from an ESXi host.
 *
 * On accept we negotiate as PROTOCOL-VMWARE.md section 4.3 recommends:
 * WILL/DO BINARY, WILL/DO SGA, DO VMWARE-EXT (RFC 1143 through the telnet
 * codec, which refuses AUTHENTICATION and COM-PORT with DONT). When the
 * extension is on, or KNOWN-SUBOPTIONS-1 arrives, we send our fixed
 * KNOWN-SUBOPTIONS-2 and ask for the VC UUID and the VM name. DO-PROXY is
 * checked against the service URI policy: WONT-PROXY at once if refused;
 * if accepted, WILL-PROXY once the UUID is also known and the session is
 * bound to its port (so WILL-PROXY means "identified"). Console data that arrived earlier is held (bounded, with read
 * backpressure past the cap) and released at that moment, in order.
 *
 * vMotion messages go to vmotion.c. A destination connection (VMOTION-PEER,
 * no DO-PROXY) is bound only through its PEER, never by UUID.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"

#define VM_READ_CHUNK		16384
/*
 * A little under 32 KiB: a read's decoded bytes go into one replay-ring
 * chain (port_output_space), which libevent sizes as the next power of two
 * above the bytes plus its chain header; at 32 KiB exactly each chain
 * would take 64 KiB.
 */
#define VM_READ_MORE		(32768 - 256)
#define VM_READ_BUDGET		(4 * VM_READ_MORE)
/*
 * A read that goes out as read (vm_decode) may end in this many bytes that
 * are not console data (a command, or an IAC whose partner is in the next
 * read); they go through the codec after it.
 */
#define VM_WIRE_TAIL		64
#define VM_RETIRE_TIMEOUT	10
#define VM_MAX_ERRORS_LOGGED	8

struct vm_sessions vm_sessions = TAILQ_HEAD_INITIALIZER(vm_sessions);
u_int n_vm_sessions;
u_int n_unidentified;
uint64_t vm_refused_allow, vm_refused_limit, vm_takeovers_refused;

/* cfg.vm_allow, parsed. */
static struct cidr vm_allow[VSPCD_MAX_ALLOW];
static int n_vm_allow;

/* Dead-peer detection on VM connections (seconds). */
#define VM_KEEPIDLE		15
#define VM_KEEPINTVL		5
#define VM_KEEPCNT		4
#define VM_USER_TIMEOUT_MS	45000
/* A peer that ACKed within this many ms is alive (keepalive answers). */
#define VM_ALIVE_ACK_MS		(VM_KEEPIDLE + 2 * VM_KEEPINTVL) * 1000

static void	vm_read_cb(struct bufferevent *, void *);
static void	vm_write_cb(struct bufferevent *, void *);
static void	vm_event_cb(struct bufferevent *, short, void *);
static void	vm_telnet_cb(void *, const struct telnet_event *);
static void	vm_try_bind(struct vm_session *);

/* Queue a VMWARE-EXT command. */
void
vm_send_ext(struct vm_session *vs, uint8_t cmd, const uint8_t *a,
    size_t alen, const uint8_t *b, size_t blen)
{
	uint8_t buf[16 + 4 * VMWEXT_COOKIE_MAX + 512];
	size_t n;

	n = vmwext_encode(buf, sizeof buf, cmd, a, alen, b, blen);
	if (n == 0) {
		log_warnx("vm %s: cannot encode %s", vs->addr,
		    vmwext_cmd_name(cmd));
		return;
	}
	bev_write(vs->bev, buf, n);
}

/* Console bytes for the VM, with 0xFF doubled. */
void
vm_send_data(struct vm_session *vs, const uint8_t *data, size_t len)
{
	bev_uncork(vs->bev);
	evbuffer_add_escaped(bufferevent_get_output(vs->bev), data, len);
	bev_queued(vs->bev);
}

/* Bytes queued toward the VM, not yet written to the socket. */
size_t
vm_queue_len(struct vm_session *vs)
{
	return (evbuffer_get_length(bufferevent_get_output(vs->bev)));
}

/* True if the host listed code in KNOWN-SUBOPTIONS-1 (or sent none). */
static bool
vm_host_knows(struct vm_session *vs, uint8_t code)
{
	if (!vs->have_ks1)
		return (true);
	return ((vs->ks1[code / 8] & (1 << (code % 8))) != 0);
}

/* Send KNOWN-SUBOPTIONS-2 once. */
static void
vm_send_ks2(struct vm_session *vs)
{
	if (vs->ks2_sent)
		return;
	vs->ks2_sent = true;
	vm_send_ext(vs, VMWEXT_KNOWN_SUBOPTIONS_2, vmwext_ks2_list,
	    vmwext_ks2_len, NULL, 0);
}

/* Ask for the identity once. */
static void
vm_send_gets(struct vm_session *vs)
{
	if (vs->gets_sent)
		return;
	vs->gets_sent = true;
	if (vm_host_knows(vs, VMWEXT_VM_VC_UUID))
		vm_send_ext(vs, VMWEXT_GET_VM_VC_UUID, NULL, 0, NULL, 0);
	else if (vm_host_knows(vs, VMWEXT_VM_BIOS_UUID))
		vm_send_ext(vs, VMWEXT_GET_VM_BIOS_UUID, NULL, 0, NULL, 0);
	if (vm_host_knows(vs, VMWEXT_VM_NAME))
		vm_send_ext(vs, VMWEXT_GET_VM_NAME, NULL, 0, NULL, 0);
}

/* Read the VM connection or stop reading it (vs->rev, or the TLS bev). */
static void
vm_read_enable(struct vm_session *vs, bool on)
{
	if (vs->rev != NULL) {
		if (on)
			event_add(vs->rev, NULL);
		else
			event_del(vs->rev);
	} else if (on)
		bufferevent_enable(vs->bev, EV_READ);
	else
		bufferevent_disable(vs->bev, EV_READ);
}

/* Stop or resume reading from the VM. */
static void
vm_pause_read(struct vm_session *vs, bool pause)
{
	if (pause == vs->read_paused)
		return;
	vs->read_paused = pause;
	vm_read_enable(vs, !pause);
}

/* Parse the VM-side allowlist (start and reload). */
void
vm_policy_reload(void)
{
	int i;

	n_vm_allow = 0;
	for (i = 0; i < cfg.n_vm_allow && i < VSPCD_MAX_ALLOW; i++) {
		if (cidr_parse(cfg.vm_allow[i], &vm_allow[n_vm_allow]) == 0)
			n_vm_allow++;
	}
}

/* True if the allowlist admits sa (an empty list admits everyone). */
static bool
vm_allowed(const struct sockaddr *sa)
{
	int i;

	if (n_vm_allow == 0)
		return (true);
	for (i = 0; i < n_vm_allow; i++) {
		if (cidr_match(&vm_allow[i], sa))
			return (true);
	}
	return (false);
}

/* The session no longer counts as unidentified. */
void
vm_identified(struct vm_session *vs)
{
	if (vs->unidentified) {
		vs->unidentified = false;
		n_unidentified--;
		source_count(SOURCE_VM_UNIDENT, (struct sockaddr *)&vs->sa, -1);
	}
}

/* True if the port's connection answered TCP recently (keepalive ACKs). */
static bool
vm_peer_alive(struct vm_session *vs)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;

	if (getsockopt(bufferevent_getfd(vs->bev), IPPROTO_TCP, TCP_INFO, &ti,
	    &len) == -1)
		return (false);
	return (ti.tcpi_state == TCP_ESTABLISHED &&
	    ti.tcpi_last_ack_recv <= VM_ALIVE_ACK_MS);
}

/*
 * Another host claims a port whose connection is up, outside a vMotion.
 * The claimant waits (unbound, its output held) up to cfg.takeover_wait:
 * if the old connection goes away it is bound at once; at the deadline it
 * takes over if the old peer has stopped answering TCP (keepalive), and is
 * refused if the old one is alive. So a live console is never silently
 * taken over, and a VM restarted on another host waits at most
 * takeover_wait for its dead predecessor.
 */
static void
vm_claim(struct vm_session *vs, struct port *p)
{
	struct timeval tv = { cfg.takeover_wait, 0 };

	if (p->claimant != NULL && p->claimant != vs) {
		p->claimant->claiming = NULL;
		vm_close(p->claimant, "superseded by a newer claimant");
	}
	p->claimant = vs;
	vs->claiming = p;
	evtimer_add(vs->timer, &tv);
	log_warnx("port %s: %s claims it while %s holds it; waiting up to "
	    "%d s", p->id, vs->addr, p->vm->addr, cfg.takeover_wait);
}

/* The port's connection left: a waiting claimant takes the port. */
void
vm_claim_resolve(struct port *p)
{
	struct vm_session *vs = p->claimant;

	if (vs == NULL || p->vm != NULL)
		return;
	p->claimant = NULL;
	vs->claiming = NULL;
	evtimer_del(vs->timer);
	log_info("port %s: claimant %s takes over", p->id, vs->addr);
	vm_try_bind(vs);
}

/* The claimant's deadline: take over from a dead peer or give up. */
static void
vm_claim_timeout(struct vm_session *vs)
{
	struct port *p = vs->claiming;
	struct vm_session *old = p->vm;

	if (old != NULL && vm_peer_alive(old)) {
		vm_takeovers_refused++;
		log_warnx("port %s: %s is still alive; claim by %s refused",
		    p->id, old->addr, vs->addr);
		audit_event("takeover", NULL, p->id, "refused: holder alive");
		p->claimant = NULL;
		vs->claiming = NULL;
		vm_close(vs, "port held by a live connection");
		return;
	}
	if (old != NULL) {
		/* Closing it unbinds the port, which binds the claimant. */
		log_warnx("port %s: %s stopped answering; %s takes over",
		    p->id, old->addr, vs->addr);
		audit_event("takeover", NULL, p->id, "holder stopped answering");
		vm_close(old, "peer stopped answering; taken over");
		return;
	}
	p->claimant = NULL;
	vs->claiming = NULL;
	vm_try_bind(vs);
}

/*
 * Bind the session to its port once UUID and service URI are known. Inside
 * a read this waits for the end of the read (vm_bind_due), so a VM-NAME
 * that came with the UUID, as it usually does, is in the port's first save
 * and in the "bound" line.
 */
static void
vm_try_bind(struct vm_session *vs)
{
	struct port *p;
	size_t len;
	uint8_t *data;

	if (vs->port != NULL || !vs->have_uuid || !vs->proxy_ok || vs->dead ||
	    vs->peer_of != NULL || vs->peer_rejected || vs->late_port != NULL ||
	    vs->claiming != NULL)
		return;
	if (vs->in_read) {
		vs->bind_due = true;
		return;
	}
	p = port_find_key(vs->uuid, vs->uri);
	if (p == NULL)
		p = port_create(vs->uuid, vs->uri, vs->direction, vs->name);
	if (p->vm != NULL && p->vm != vs && !p->vm->retiring &&
	    !sockaddr_same_host((struct sockaddr *)&p->vm->sa,
	    (struct sockaddr *)&vs->sa)) {
		vm_claim(vs, p);
		return;
	}
	vm_identified(vs);
	p->direction = vs->direction;
	if (vs->name != NULL)
		port_set_name(p, vs->name);
	evtimer_del(vs->timer);
	log_info("vm %s: bound to port %s (name '%s')", vs->addr, p->id,
	    log_escape(p->name, strlen(p->name)));
	port_bind_vm(p, vs);
	vm_send_ext(vs, VMWEXT_WILL_PROXY, NULL, 0, NULL, 0);
	/* Release what arrived before identification, in order. */
	len = evbuffer_get_length(vs->prebind);
	if (len > 0) {
		data = evbuffer_pullup(vs->prebind, -1);
		port_output(p, data, len);
		evbuffer_drain(vs->prebind, len);
	}
	vm_pause_read(vs, false);
}

/* Do a bind put off by vm_try_bind now (end of the read, or a vMotion). */
static void
vm_bind_due(struct vm_session *vs)
{
	bool in_read = vs->in_read;

	if (!vs->bind_due)
		return;
	vs->bind_due = false;
	vs->in_read = false;
	vm_try_bind(vs);
	vs->in_read = in_read;
}

/* Handle DO-PROXY. */
static void
vm_do_proxy(struct vm_session *vs, const struct vmwext_msg *m)
{
	int i;
	bool ok = false;

	if (vs->proxy_ok || vs->proxy_refused) {
		log_debug("vm %s: repeated DO-PROXY ignored", vs->addr);
		return;
	}
	if (m->uri_len <= VSPCD_URI_MAX &&
	    memchr(m->uri, '\0', m->uri_len) == NULL) {
		for (i = 0; i < cfg.n_service_uri && !ok; i++)
			ok = vmwext_uri_match(m->uri, m->uri_len,
			    cfg.service_uri[i]);
	}
	if (!ok) {
		log_warnx("vm %s: DO-PROXY '%c' '%s' refused by service URI "
		    "policy", vs->addr, m->direction >= 0x20 &&
		    m->direction < 0x7f ? m->direction : '?',
		    log_escape(m->uri, m->uri_len));
		vs->proxy_refused = true;
		vm_send_ext(vs, VMWEXT_WONT_PROXY, NULL, 0, NULL, 0);
		return;
	}
	vs->proxy_ok = true;
	vs->direction = m->direction == 'C' ? 'C' : 'S';
	vs->uri = xstrndup((const char *)m->uri, m->uri_len);
	/* WILL-PROXY goes out once bound (as in the capture). */
	vm_send_ks2(vs);
	vm_send_gets(vs);
	vm_try_bind(vs);
}

/* Handle VM-VC-UUID or VM-BIOS-UUID. */
static void
vm_uuid(struct vm_session *vs, const struct vmwext_msg *m, bool bios)
{
	char uuid[33];

	if (vmwext_uuid_normalise(m->payload, m->len, uuid) == -1) {
		log_warnx("vm %s: invalid %s UUID '%s'", vs->addr,
		    bios ? "BIOS" : "VC", log_escape(m->payload, m->len));
		if (!bios && !vs->have_uuid &&
		    vm_host_knows(vs, VMWEXT_VM_BIOS_UUID))
			vm_send_ext(vs, VMWEXT_GET_VM_BIOS_UUID, NULL, 0,
			    NULL, 0);
		return;
	}
	if (vs->have_uuid) {
		if (strcmp(vs->uuid, uuid) != 0 && !bios) {
			log_warnx("vm %s: VC UUID changed from %s to %s; "
			    "closing", vs->addr, vs->uuid, uuid);
			vs->dead = true;
		}
		return;
	}
	strlcpy(vs->uuid, uuid, sizeof vs->uuid);
	vs->have_uuid = true;
	if (vs->peer_of != NULL)
		vmotion_dst_uuid(vs, uuid);
	vm_try_bind(vs);
}

/* Handle VM-NAME. */
static void
vm_name(struct vm_session *vs, const struct vmwext_msg *m)
{
	free(vs->name);
	vs->name = util_sanitize(m->payload, m->len, VSPCD_NAME_MAX);
	/* Before the bind the name goes into the "bound" line. */
	if (vs->port == NULL || strcmp(vs->port->name, vs->name) == 0) {
		log_debug("vm %s: name '%s'", vs->addr,
		    log_escape(vs->name, strlen(vs->name)));
		return;
	}
	log_info("vm %s: port %s renamed '%s'", vs->addr, vs->port->id,
	    log_escape(vs->name, strlen(vs->name)));
	port_set_name(vs->port, vs->name);
}

/* Dispatch one VMWARE-EXT subnegotiation. */
static void
vm_ext(struct vm_session *vs, const uint8_t *sb, size_t len)
{
	struct vmwext_msg m;
	uint8_t code;
	int st;
	size_t i;

	st = vmwext_decode(sb, len, &m);
	if (st == VMWEXT_EMPTY) {
		log_debug("vm %s: empty VMWARE-EXT subnegotiation", vs->addr);
		return;
	}
	if (st == VMWEXT_UNKNOWN) {
		log_info("vm %s: unknown VMWARE-EXT command %u", vs->addr,
		    m.cmd);
		code = m.cmd;
		vm_send_ext(vs, VMWEXT_UNKNOWN_SUBOPTION_RCVD_2, &code, 1,
		    NULL, 0);
		return;
	}
	if (st == VMWEXT_BADLEN) {
		log_warnx("vm %s: %s with bad length %zu ignored", vs->addr,
		    vmwext_cmd_name(m.cmd), len - 1);
		return;
	}
	switch (m.cmd) {
	case VMWEXT_KNOWN_SUBOPTIONS_1:
		memset(vs->ks1, 0, sizeof vs->ks1);
		for (i = 0; i < m.len; i++)
			vs->ks1[m.payload[i] / 8] |= 1 << (m.payload[i] % 8);
		vs->have_ks1 = true;
		vm_send_ks2(vs);
		vm_send_gets(vs);
		break;
	case VMWEXT_UNKNOWN_SUBOPTION_RCVD_1:
		log_info("vm %s: host does not know command %u", vs->addr,
		    m.code);
		break;
	case VMWEXT_DO_PROXY:
		vm_do_proxy(vs, &m);
		break;
	case VMWEXT_VM_VC_UUID:
		vm_uuid(vs, &m, false);
		break;
	case VMWEXT_VM_BIOS_UUID:
		vm_uuid(vs, &m, true);
		break;
	case VMWEXT_VM_NAME:
		vm_name(vs, &m);
		break;
	case VMWEXT_VM_LOCATION_UUID:
		log_debug("vm %s: location UUID '%s'", vs->addr,
		    log_escape(m.payload, m.len));
		break;
	case VMWEXT_VMOTION_BEGIN:
		vm_bind_due(vs);	/* bound as it was before this read */
		vmotion_begin(vs, m.payload, m.len);
		break;
	case VMWEXT_VMOTION_PEER:
		vmotion_peer(vs, m.payload, m.len);
		break;
	case VMWEXT_VMOTION_COMPLETE:
		vmotion_complete(vs, m.payload, m.len);
		break;
	case VMWEXT_VMOTION_ABORT:
		vmotion_abort(vs);
		break;
	default:
		/* A proxy-to-host command sent to us: not supported. */
		code = m.cmd;
		vm_send_ext(vs, VMWEXT_UNKNOWN_SUBOPTION_RCVD_2, &code, 1,
		    NULL, 0);
		break;
	}
}

/* Console data for the bound port: note output after GOAHEAD once. */
static void
vm_data_late_check(struct vm_session *vs)
{
	if (vs->port->vmotion != NULL &&
	    vs->port->vmotion->state >= VMOTION_GOAHEAD_SENT &&
	    !vs->late_logged) {
		vs->late_logged = true;
		log_info("vm %s: output after GOAHEAD forwarded", vs->addr);
	}
}

/* Console data from the VM. */
static void
vm_data(struct vm_session *vs, const uint8_t *data, size_t len)
{
	vs->bytes_in += len;
	if (vs->port != NULL) {
		vm_data_late_check(vs);
		port_output(vs->port, data, len);
		return;
	}
	if (vs->late_port != NULL) {
		/* E8: bytes from the old source after COMPLETE. */
		if (!vs->late_logged)
			log_warnx("vm %s: %zu bytes from the old source after "
			    "COMPLETE forwarded", vs->addr, len);
		vs->late_logged = true;
		port_output(vs->late_port, data, len);
		return;
	}
	if (vs->retiring)
		return;
	evbuffer_add(vs->prebind, data, len);
	if (evbuffer_get_length(vs->prebind) >= cfg.prebind_max)
		vm_pause_read(vs, true);
}

/* Events from the telnet codec. */
static void
vm_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct vm_session *vs = arg;

	switch (ev->type) {
	case TELNET_EV_DATA:
		/*
		 * The codec un-doubles in place: all the console data of a
		 * read chunk up to the next command is this one event, so
		 * port_output runs once per read, not once per 0xFF.
		 */
		vm_data(vs, ev->data, ev->len);
		break;
	case TELNET_EV_SEND:
		bev_write(vs->bev, ev->data, ev->len);
		break;
	case TELNET_EV_OPTION:
		if (ev->opt == TELOPT_VMWARE && !ev->us && ev->enabled)
			vm_send_ks2(vs);
		break;
	case TELNET_EV_SB:
		if (ev->opt == TELOPT_VMWARE)
			vm_ext(vs, ev->data, ev->len);
		else
			log_debug("vm %s: SB option %u ignored", vs->addr,
			    ev->opt);
		break;
	case TELNET_EV_ERROR:
		if (vs->errors++ < VM_MAX_ERRORS_LOGGED)
			log_warnx("vm %s: telnet protocol error %d (recovered)",
			    vs->addr, ev->err);
		break;
	case TELNET_EV_CMD:
	case TELNET_EV_NEG:
		break;
	}
}

/*
 * The chunk plain-TCP reads go into, with our reference: refcounted so
 * that client queues can keep references to the bytes as read (vm_decode).
 */
static struct port_chunk *vm_rd;

/* The chunk for the next read: the last one unless a queue holds it. */
static struct port_chunk *
vm_read_chunk(void)
{
	if (vm_rd != NULL && (vm_rd->refs > 1 || vm_rd->cap < VM_READ_MORE)) {
		port_chunk_unref(vm_rd->data, 0, vm_rd);
		vm_rd = NULL;
	}
	if (vm_rd == NULL)
		vm_rd = port_chunk_new(VM_READ_MORE);
	return (vm_rd);
}

/* True if len bytes of this session's data may go out as read. */
static bool
vm_wire_ok(struct vm_session *vs, size_t len)
{
	return (vs->port != NULL && len >= PORT_SHARE_MIN);
}

/*
 * Decode one plain-TCP read (vm_rd, have bytes). When the read is console
 * data up to a tail of at most VM_WIRE_TAIL bytes (a command, or an IAC
 * whose partner comes in the next read), perhaps after one byte that ends
 * a sequence of the previous read, that data goes out as read: every 0xFF
 * in it is already doubled, which is just what clients must be sent, so
 * they get references to the wire bytes in the chunk, and
 * telnet_input_data un-doubles it in one pass straight into the replay
 * ring (port_output_space) for log and replay. This replaces decoding in
 * place, the escaped-length scan, escaping into a new chunk and the copy
 * into the replay ring. The chunk is first cut to the read's length if a
 * client may keep it, so that a queue holds no more memory than the bytes
 * its cap counts, plus the tail. The head byte, the tail and every other
 * read go through telnet_input_inplace and port_output as before, in
 * order; events, bytes and counts are the same either way.
 */
static void
vm_decode(struct vm_session *vs, size_t have)
{
	struct port_chunk *ch = vm_rd;
	uint8_t *buf = ch->data, *dst;
	size_t off = 0, n, dlen;

	if (!vm_wire_ok(vs, have))
		goto codec;
	if (!telnet_in_data(&vs->tn)) {
		telnet_input_inplace(&vs->tn, buf, 1);
		off = 1;
		if (!vm_wire_ok(vs, have - off) || !telnet_in_data(&vs->tn))
			goto codec;
	}
	if ((dst = port_output_space(vs->port, have - off)) == NULL)
		goto codec;
	n = telnet_input_data(&vs->tn, buf + off, have - off, dst, &dlen);
	if (n < PORT_SHARE_MIN || have - off - n > VM_WIRE_TAIL)
		goto codec;		/* commands inside: as before */
	if (have < ch->cap && !TAILQ_EMPTY(&vs->port->clients)) {
		ch = vm_rd = port_chunk_shrink(ch, have);
		buf = ch->data;
	}
	vs->bytes_in += dlen;
	vm_data_late_check(vs);
	port_output_wire(vs->port, dst, dlen, ch, buf + off, n);
	off += n;
codec:
	if (off < have)
		telnet_input_inplace(&vs->tn, buf + off, have - off);
}

/*
 * The plain-TCP read path. The socket is read here, straight into the chunk
 * vm_rd (the bufferevent only writes: its reads would cost an FIONREAD
 * ioctl, at most 4 KiB and a copy each), VM_READ_MORE at a time and up to
 * VM_READ_BUDGET per callback, so one busy VM does not hold the loop; each
 * read is decoded (vm_decode) before the next. Stops when the socket is
 * drained, the budget is spent, reading is paused (pre-bind cap) or the
 * session is dead or retiring. EOF and errors close the session.
 */
static void
vm_sock_read_cb(evutil_socket_t fd, short events, void *arg)
{
	struct vm_session *vs = arg;
	size_t budget = VM_READ_BUDGET;
	ssize_t n;

	vs->in_read = true;
	while (budget > 0 && !vs->dead && !vs->read_paused &&
	    !vs->retiring) {
		n = read(fd, vm_read_chunk()->data, VM_READ_MORE);
		if (n == 0) {
			vm_close(vs, "closed by host");
			return;
		}
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			vm_close(vs, strerror(errno));
			return;
		}
		vm_decode(vs, (size_t)n);
		if ((size_t)n < VM_READ_MORE)
			break;		/* drained, most likely */
		budget -= (size_t)n;
	}
	vs->in_read = false;
	vm_bind_due(vs);
	if (vs->dead)
		vm_close(vs, "protocol violation");
}

/*
 * TLS: read what the host sent, in order, without copying: the codec
 * decodes in place in the input buffer's own chains (filled only by the
 * TLS read, so writable), and the chunk is drained after.
 */
static void
vm_read_cb(struct bufferevent *bev, void *arg)
{
	struct vm_session *vs = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[8];
	size_t total;
	int i, n;

	/*
	 * Always parse everything already read, even when reading is paused
	 * for the pre-identification cap: the identity may be in there. The
	 * hold buffer is thus bounded by the cap plus one read watermark.
	 */
	vs->in_read = true;
	while (!vs->dead && (total = evbuffer_get_length(in)) > 0) {
		n = evbuffer_peek(in, VM_READ_CHUNK, NULL, v, nitems(v));
		if (n > (int)nitems(v))
			n = nitems(v);
		total = 0;
		for (i = 0; i < n && !vs->dead; i++) {
			size_t l = v[i].iov_len;

			if (total + l > VM_READ_CHUNK)
				l = VM_READ_CHUNK - total;
			telnet_input_inplace(&vs->tn, v[i].iov_base, l);
			total += l;
			if (total >= VM_READ_CHUNK)
				break;
		}
		evbuffer_drain(in, total);
	}
	vs->in_read = false;
	vm_bind_due(vs);
	if (vs->dead)
		vm_close(vs, "protocol violation");
}

/* The output queue drained below the low watermark. */
static void
vm_write_cb(struct bufferevent *bev, void *arg)
{
	struct vm_session *vs = arg;

	if (vs->retiring) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			vm_close(vs, "replaced by a new connection");
		return;
	}
	if (vs->port != NULL) {
		if (vs->port->vmotion != NULL)
			vmotion_src_drained(vs);
		port_vm_writable(vs->port);
	}
}

/* EOF or error on the VM connection. */
static void
vm_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct vm_session *vs = arg;

	const char *tlserr;

	if (what & BEV_EVENT_CONNECTED) {
		log_debug("vm %s: TLS handshake done", vs->addr);
		return;
	}
	if (what & BEV_EVENT_EOF)
		vm_close(vs, "closed by host");
	else if (what & BEV_EVENT_ERROR) {
		if ((tlserr = tls_bev_error(bev)) != NULL)
			vm_close(vs, tlserr);
		else
			vm_close(vs, evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
	}
}

/* Identification (or retirement drain) deadline passed. */
static void
vm_timer(evutil_socket_t fd, short events, void *arg)
{
	struct vm_session *vs = arg;

	if (vs->claiming != NULL)
		vm_claim_timeout(vs);
	else if (vs->retiring)
		vm_close(vs, "retired connection did not drain");
	else if (vs->late_port != NULL)
		vm_close(vs, "old source after vMotion");
	else if (vs->port == NULL && vs->peer_of == NULL)
		vm_close(vs, vs->proxy_refused ? "service URI refused" :
		    "not identified in time");
}

/*
 * Options of every accepted VM connection, set once on the listening
 * socket: Linux copies them to each socket accept() returns, which saves
 * six setsockopt calls per connection.
 */
void
vm_listener_setup(struct evconnlistener *lev)
{
	evutil_socket_t fd = evconnlistener_get_fd(lev);
	int one = 1, idle = VM_KEEPIDLE, intvl = VM_KEEPINTVL;
	int cnt = VM_KEEPCNT, uto = VM_USER_TIMEOUT_MS;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) ==
	    -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) ==
	    -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto) ==
	    -1)
		log_warn("vm listener: TCP options");
}

/* Accept a connection from an ESXi host. */
void
vm_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct vm_session *vs;
	struct timeval tv;
	char addr[64];
	static time_t last_warn;

	/* Network policy and caps, before any byte is read. */
	if (!vm_allowed(sa) || n_vm_sessions >= (u_int)cfg.max_vm_connections ||
	    n_unidentified >= (u_int)cfg.max_unidentified ||
	    (cfg.max_vm_per_source > 0 && source_count(SOURCE_VM, sa, 0) >=
	    cfg.max_vm_per_source) ||
	    (cfg.max_unidentified_per_source > 0 &&
	    source_count(SOURCE_VM_UNIDENT, sa, 0) >=
	    cfg.max_unidentified_per_source)) {
		if (!vm_allowed(sa))
			vm_refused_allow++;
		else
			vm_refused_limit++;
		if (time(NULL) != last_warn) {
			last_warn = time(NULL);
			listener_addr_str(sa, addr, sizeof addr);
			log_warnx("vm %s: refused (%s)", addr, vm_allowed(sa) ?
			    "connection limit" : "not in vm-allow");
		}
		evutil_closesocket(fd);
		return;
	}
	vs = xcalloc(1, sizeof *vs);
	listener_addr_str(sa, vs->addr, sizeof vs->addr);
	if ((size_t)salen <= sizeof vs->sa)
		memcpy(&vs->sa, sa, (size_t)salen);
	source_count(SOURCE_VM, sa, 1);
	vs->counted_src = true;
	vs->unidentified = true;
	n_unidentified++;
	source_count(SOURCE_VM_UNIDENT, sa, 1);
	/* TCP options come from the listening socket (vm_listener_setup). */
	/* TLS: the handshake runs first; the ident deadline covers it. */
	if (arg == TLS_LISTENER)
		vs->bev = tls_bev_accept(fd, true);
	else if ((vs->rev = event_new(ev_base, fd, EV_READ | EV_PERSIST,
	    vm_sock_read_cb, vs)) != NULL &&
	    (vs->bev = bufferevent_socket_new(ev_base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		event_free(vs->rev);
		vs->rev = NULL;
	}
	if (vs->bev == NULL) {
		log_warnx("vm %s: cannot create bufferevent", vs->addr);
		source_count(SOURCE_VM, sa, -1);
		source_count(SOURCE_VM_UNIDENT, sa, -1);
		n_unidentified--;
		evutil_closesocket(fd);
		free(vs);
		return;
	}
	vs->prebind = evbuffer_new();
	vs->timer = evtimer_new(ev_base, vm_timer, vs);
	TAILQ_INSERT_TAIL(&vm_sessions, vs, entry);
	n_vm_sessions++;

	bufferevent_setcb(vs->bev, vm_read_cb, vm_write_cb, vm_event_cb, vs);
	bufferevent_setwatermark(vs->bev, EV_WRITE, cfg.vm_queue / 2, 0);
	bufferevent_setwatermark(vs->bev, EV_READ, 0, 4 * VM_READ_CHUNK);
	/*
	 * Plain TCP: vs->rev reads; the bufferevent only writes, and its
	 * EV_WRITE is enabled by the first write that has to be queued
	 * (vm_send_data, bev_queue); most connections never need it.
	 */
	if (vs->rev != NULL)
		event_add(vs->rev, NULL);
	else
		bufferevent_enable(vs->bev, EV_READ | EV_WRITE);

	telnet_init(&vs->tn, vm_telnet_cb, vs);
	vs->tn.sb_max = (uint32_t)cfg.sb_max;
	telnet_set_accept(&vs->tn, TELOPT_BINARY, true, true);
	telnet_set_accept(&vs->tn, TELOPT_SGA, true, true);
	telnet_set_accept(&vs->tn, TELOPT_VMWARE, false, true);
	telnet_request(&vs->tn, TELOPT_BINARY, true, true);
	telnet_request(&vs->tn, TELOPT_BINARY, false, true);
	telnet_request(&vs->tn, TELOPT_SGA, true, true);
	telnet_request(&vs->tn, TELOPT_SGA, false, true);
	telnet_request(&vs->tn, TELOPT_VMWARE, false, true);

	tv.tv_sec = cfg.ident_timeout;
	tv.tv_usec = 0;
	evtimer_add(vs->timer, &tv);
	log_debug("vm %s: connected", vs->addr);
}

/*
 * A newer connection took over this one's port: stop reading it, let what
 * is queued for it go out, then close (or close after a deadline).
 */
void
vm_retire(struct vm_session *vs)
{
	struct timeval tv = { VM_RETIRE_TIMEOUT, 0 };

	vs->retiring = true;
	vs->port = NULL;
	vm_read_enable(vs, false);
	if (vm_queue_len(vs) == 0) {
		/* Close from the loop, not from inside the caller. */
		tv.tv_sec = 0;
	}
	bufferevent_setwatermark(vs->bev, EV_WRITE, 0, 0);
	evtimer_add(vs->timer, &tv);
}

/*
 * The source of a completed vMotion: no longer the port's connection and
 * never written to again, but read until EOF (late bytes are forwarded) or
 * until the drain deadline.
 */
void
vm_retire_source(struct vm_session *vs, struct port *p)
{
	struct timeval tv = { cfg.vmotion_source_drain, 0 };

	vs->port = NULL;
	vs->late_port = p;
	vs->late_logged = false;
	evtimer_add(vs->timer, &tv);
}

/* Resume reading (after the pre-bind cap). */
void
vm_resume_read(struct vm_session *vs)
{
	vm_pause_read(vs, false);
}

/* Close a VM connection. The one teardown. */
void
vm_close(struct vm_session *vs, const char *reason)
{
	vmotion_vm_closed(vs);
	vm_identified(vs);
	if (vs->counted_src)
		source_count(SOURCE_VM, (struct sockaddr *)&vs->sa, -1);
	if (vs->claiming != NULL) {
		if (vs->claiming->claimant == vs)
			vs->claiming->claimant = NULL;
		vs->claiming = NULL;
	}
	if (vs->port != NULL) {
		log_info("vm %s: port %s disconnected: %s", vs->addr,
		    vs->port->id, reason);
		port_unbind_vm(vs->port, vs);
		vs->port = NULL;
	} else
		log_info("vm %s: closed: %s", vs->addr, reason);
	TAILQ_REMOVE(&vm_sessions, vs, entry);
	n_vm_sessions--;
	if (vs->rev != NULL)
		event_free(vs->rev);
	bev_uncork(vs->bev);
	bufferevent_free(vs->bev);
	evbuffer_free(vs->prebind);
	event_free(vs->timer);
	telnet_free(&vs->tn);
	free(vs->name);
	free(vs->uri);
	free(vs);
}

/* Close every VM connection (shutdown). */
void
vm_close_all(void)
{
	struct vm_session *vs;

	while ((vs = TAILQ_FIRST(&vm_sessions)) != NULL)
		vm_close(vs, "shutting down");
	if (vm_rd != NULL)
		port_chunk_unref(vm_rd->data, 0, vm_rd);
	vm_rd = NULL;
}
