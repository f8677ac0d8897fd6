/*
 * Ports: one per (normalised VC UUID, service URI). A port outlives its VM
 * connections: clients attach here, and a VM that reconnects (reboot,
 * reconfigure) is bound to the same port, so attached clients see the new
 * output without doing anything.
 *
 * Fan-out policy (VM -> clients): the VM side is never slowed. Each client
 * has an output cap (cfg.client_queue); output that would exceed it is
 * skipped for that client only and counted, and the client is told how much
 * it missed once its queue has drained (see client.c).
 *
 * Input policy (clients -> VM): bytes go to the active VM connection through
 * a bounded queue; when the queue passes cfg.vm_queue every client of the
 * port stops being read (TCP backpressure) until it drains below half.
 * Input typed while no VM is connected is discarded and counted.
 */
#include <sys/types.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vspcd.h"

static int	port_key_cmp(struct port *, struct port *);
static int	port_id_cmp(struct port *, struct port *);

RB_HEAD(port_keys, port) port_keys = RB_INITIALIZER(&port_keys);
RB_GENERATE_STATIC(port_keys, port, key_entry, port_key_cmp)

RB_HEAD(port_ids, port) port_ids = RB_INITIALIZER(&port_ids);
RB_GENERATE_STATIC(port_ids, port, id_entry, port_id_cmp)

static TAILQ_HEAD(, port) all_ports = TAILQ_HEAD_INITIALIZER(all_ports);
static u_int n_ports;

/*
 * Per-port listener numbers of the configured range: PR_FREE, PR_LISTEN
 * (a live port's listener) or PR_RESERVED (remembered from the state db
 * for a port that has not come back yet; never given to another port).
 */
#define PR_FREE		0
#define PR_LISTEN	1
#define PR_RESERVED	2
static uint8_t *port_range_used;

/*
 * Ports remembered in the state db: id and client port by key, so a port
 * that reappears (after a restart or an expiry) gets them back.
 */
struct port_resv {
	RB_ENTRY(port_resv)	 key_entry;
	RB_ENTRY(port_resv)	 id_entry;
	char			 uuid[33];
	char			*uri;
	char			*id;
	int			 client_port;
};

static int
port_resv_key_cmp(struct port_resv *a, struct port_resv *b)
{
	int r;

	if ((r = strcmp(a->uuid, b->uuid)) != 0)
		return (r);
	return (strcmp(a->uri, b->uri));
}

static int
port_resv_id_cmp(struct port_resv *a, struct port_resv *b)
{
	return (strcmp(a->id, b->id));
}

RB_HEAD(resv_keys, port_resv) resv_keys = RB_INITIALIZER(&resv_keys);
RB_GENERATE_STATIC(resv_keys, port_resv, key_entry, port_resv_key_cmp)
RB_HEAD(resv_ids, port_resv) resv_ids = RB_INITIALIZER(&resv_ids);
RB_GENERATE_STATIC(resv_ids, port_resv, id_entry, port_resv_id_cmp)

/* Find the remembered entry for a key. */
static struct port_resv *
port_resv_find(const char *uuid, const char *uri)
{
	struct port_resv find;

	strlcpy(find.uuid, uuid, sizeof find.uuid);
	find.uri = (char *)(uintptr_t)uri;
	return (RB_FIND(resv_keys, &resv_keys, &find));
}

/* True if id is remembered for a key other than (uuid, uri). */
static bool
port_resv_id_taken(const char *id, const char *uuid, const char *uri)
{
	struct port_resv find, *r;

	find.id = (char *)(uintptr_t)id;
	r = RB_FIND(resv_ids, &resv_ids, &find);
	return (r != NULL && (strcmp(r->uuid, uuid) != 0 ||
	    strcmp(r->uri, uri) != 0));
}

/* Remember (or update) a key's id and client port. */
static void
port_resv_set(const char *uuid, const char *uri, const char *id,
    int client_port)
{
	struct port_resv *r;

	if ((r = port_resv_find(uuid, uri)) == NULL) {
		r = xcalloc(1, sizeof *r);
		strlcpy(r->uuid, uuid, sizeof r->uuid);
		r->uri = xstrdup(uri);
		r->id = xstrdup(id);
		RB_INSERT(resv_keys, &resv_keys, r);
		RB_INSERT(resv_ids, &resv_ids, r);
	}
	r->client_port = client_port;
}

/* Load one remembered port from the state db. */
static void
port_state_load_cb(const struct db_port *dp, void *arg)
{
	struct port_resv find;
	int i;

	find.id = dp->id;
	if (RB_FIND(resv_ids, &resv_ids, &find) != NULL)
		return;
	port_resv_set(dp->uuid, dp->uri, dp->id, dp->client_port);
	if (cfg.port_lo > 0 && dp->client_port >= cfg.port_lo &&
	    dp->client_port <= cfg.port_hi) {
		i = dp->client_port - cfg.port_lo;
		port_range_used[i] = PR_RESERVED;
	}
	(*(u_int *)arg)++;
}

/*
 * Read the ports remembered in the state db (not expired), so that each
 * gets its id and client port back when it reappears, and no other port is
 * given that client port meanwhile.
 */
void
port_state_load(void)
{
	time_t cutoff;
	u_int n = 0;

	if (cfg.port_lo > 0 && port_range_used == NULL)
		port_range_used = xcalloc((size_t)(cfg.port_hi -
		    cfg.port_lo + 1), 1);
	cutoff = time(NULL) - (time_t)cfg.state_expiry_days * 86400;
	if (db_expire(cutoff) > 0)
		log_info("state: forgot ports not seen for %d days",
		    cfg.state_expiry_days);
	if (db_ports_load(cutoff, port_state_load_cb, &n) >= 0)
		log_info("state: %u ports remembered", n);
}

/*
 * The client port to remember for p: its own, or while it has none (out of
 * descriptors, listeners off) the one remembered before. A port is never
 * forgotten because it could not listen this time.
 */
static int
port_remembered_cport(struct port *p)
{
	struct port_resv *r;

	if (p->client_port != 0)
		return (p->client_port);
	r = port_resv_find(p->uuid, p->uri);
	return (r != NULL ? r->client_port : 0);
}

/* Save a port's identity and client port in the state db. */
static void
port_state_save(struct port *p)
{
	struct db_port dp;

	memset(&dp, 0, sizeof dp);
	strlcpy(dp.uuid, p->uuid, sizeof dp.uuid);
	dp.uri = p->uri;
	dp.id = p->id;
	dp.name = p->name;
	dp.client_port = port_remembered_cport(p);
	dp.last_seen = time(NULL);
	if (db_port_save(&dp) == 0)
		p->last_seen_db = dp.last_seen;
}

/*
 * The VM connected or went away: last_seen (whole seconds, for expiry) is
 * now. The db is written once per second at most, so a vMotion storm or a
 * reconnecting VM does not cost a write per event.
 */
static void
port_touch(struct port *p)
{
	p->last_seen = time(NULL);
	if (p->last_seen == p->last_seen_db)
		return;
	if (db_port_touch(p->uuid, p->uri, p->last_seen) == 0)
		p->last_seen_db = p->last_seen;
}

/* Order ports by key. */
static int
port_key_cmp(struct port *a, struct port *b)
{
	int r;

	if ((r = strcmp(a->uuid, b->uuid)) != 0)
		return (r);
	return (strcmp(a->uri, b->uri));
}

/* Order ports by id. */
static int
port_id_cmp(struct port *a, struct port *b)
{
	return (strcmp(a->id, b->id));
}

/* Find a port by key. */
struct port *
port_find_key(const char *uuid, const char *uri)
{
	struct port find;

	strlcpy(find.uuid, uuid, sizeof find.uuid);
	find.uri = (char *)(uintptr_t)uri;
	return (RB_FIND(port_keys, &port_keys, &find));
}

/* Find a port by id. */
struct port *
port_find_id(const char *id)
{
	struct port find;

	find.id = (char *)(uintptr_t)id;
	return (RB_FIND(port_ids, &port_ids, &find));
}

/* Number of known ports. */
u_int
port_count(void)
{
	return (n_ports);
}

/* Iterate ports in creation order. */
struct port *
port_first(void)
{
	return (TAILQ_FIRST(&all_ports));
}

/* Next port in creation order. */
struct port *
port_next(struct port *p)
{
	return (TAILQ_NEXT(p, entry));
}

/* True if uri is exactly one of the accepted prefixes, with no query. */
bool
port_uri_is_bare(const char *uri)
{
	int i;

	for (i = 0; i < cfg.n_service_uri; i++) {
		if (strcmp(cfg.service_uri[i], uri) == 0)
			return (true);
	}
	return (false);
}

/* Per-port client listener accepted nothing: close on idle expiry. */
static void
port_expiry_timer(evutil_socket_t fd, short events, void *arg)
{
	struct port *p = arg;

	if (p->vm != NULL || p->nclients != 0 || p->vmotion != NULL)
		return;
	log_info("port %s: expired after %d s with no VM and no client",
	    p->id, cfg.port_expiry);
	port_free(p);
}

/* Start or stop the expiry timer according to the port's use. */
void
port_check_expiry(struct port *p)
{
	struct timeval tv;

	if (p->vm == NULL && p->nclients == 0 && p->vmotion == NULL) {
		tv.tv_sec = cfg.port_expiry;
		tv.tv_usec = 0;
		evtimer_add(p->expiry_ev, &tv);
	} else
		evtimer_del(p->expiry_ev);
}

/*
 * A port whose listener or console log could not be opened for want of
 * descriptors (or memory) tries again from this timer; nothing else is
 * given its client port meanwhile.
 */
#define PORT_RETRY_SECS		2
static struct event *port_retry_ev;
static bool port_retrying;	/* quiet: the first failure was logged */

static void	port_retry_timer(evutil_socket_t, short, void *);

/* True for errors that go away when descriptors are freed. */
static bool
port_err_transient(int err)
{
	return (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM);
}

/* Arm the retry timer. */
static void
port_retry_schedule(void)
{
	struct timeval tv = { PORT_RETRY_SECS, 0 };

	if (port_retry_ev == NULL)
		port_retry_ev = evtimer_new(ev_base, port_retry_timer, NULL);
	if (!evtimer_pending(port_retry_ev, NULL))
		evtimer_add(port_retry_ev, &tv);
}

/* Try to listen on one client port for p. */
static bool
port_try_listen(struct port *p, int port)
{
	int bound;

	p->listener = listener_open_addr(cfg.client_bind, port,
	    client_accept_port_cb, p, &bound);
	if (p->listener == NULL) {
		if (port_err_transient(errno)) {
			p->listen_retry = true;
			port_retry_schedule();
		}
		return (false);
	}
	p->client_port = bound;
	return (true);
}

/*
 * Give the port its own telnet listener: the one it had before if it is
 * remembered, else the lowest free port of the range that no remembered
 * port holds (or a kernel-chosen one when the range is 0).
 */
static void
port_open_listener(struct port *p, int preferred)
{
	int n, i;

	p->listen_retry = false;
	if (cfg.port_lo < 0)
		return;
	if (cfg.port_lo == 0) {
		if (preferred > 0 && port_try_listen(p, preferred))
			return;
		if ((p->listen_retry || !port_try_listen(p, 0)) &&
		    !port_retrying)
			log_warn("port %s: cannot open a client listener",
			    p->id);
		return;
	}
	n = cfg.port_hi - cfg.port_lo + 1;
	if (port_range_used == NULL)
		port_range_used = xcalloc((size_t)n, 1);
	if (preferred >= cfg.port_lo && preferred <= cfg.port_hi &&
	    port_range_used[preferred - cfg.port_lo] != PR_LISTEN) {
		if (port_try_listen(p, preferred)) {
			port_range_used[preferred - cfg.port_lo] = PR_LISTEN;
			return;
		}
		if (!port_retrying)
			log_warn("port %s: cannot get its client port %d back",
			    p->id, preferred);
		if (p->listen_retry)
			return;		/* not another one: retried */
	}
	for (i = 0; i < n; i++) {
		if (port_range_used[i] != PR_FREE)
			continue;
		if (!port_try_listen(p, cfg.port_lo + i)) {
			if (errno == EADDRINUSE)
				continue;
			if (!port_retrying)
				log_warn("port %s: cannot listen on %s:%d",
				    p->id, cfg.client_bind, cfg.port_lo + i);
			return;
		}
		port_range_used[i] = PR_LISTEN;
		return;
	}
	log_warnx("port %s: no free client port in %d-%d", p->id,
	    cfg.port_lo, cfg.port_hi);
}

/* Build a unique id for a new port. */
static char *
port_make_id(const char *uuid, const char *uri, const char *label)
{
	char buf[128], alt[160];
	int n;

	if (label[0] == '\0')
		snprintf(buf, sizeof buf, "%s", uuid);
	else
		snprintf(buf, sizeof buf, "%s.%s", uuid, label);
	if (port_find_id(buf) == NULL &&
	    !port_resv_id_taken(buf, uuid, uri))
		return (xstrdup(buf));
	for (n = 2;; n++) {
		snprintf(alt, sizeof alt, "%s~%d", buf, n);
		if (port_find_id(alt) == NULL &&
		    !port_resv_id_taken(alt, uuid, uri))
			return (xstrdup(alt));
	}
}

/* Derive a label from a service URI that has no port= parameter. */
static void
port_label_from_uri(const char *uri, char *out, size_t outcap)
{
	size_t i, o = 0;

	for (i = 0; uri[i] != '\0' && o + 1 < outcap; i++) {
		char c = uri[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
			out[o++] = c;
		else if (o > 0 && out[o - 1] != '_')
			out[o++] = '_';
	}
	out[o] = '\0';
}

/* Open p's console log; out of descriptors, retry and count the loss. */
static void
port_open_log(struct port *p)
{
	p->log_retry = false;
	if ((p->log = consolelog_open(p->id)) == NULL) {
		if (cfg.log_enabled && port_err_transient(errno)) {
			p->log_retry = true;
			port_retry_schedule();
		}
		return;
	}
	consolelog_missed(p->log, p->log_lost);
	p->log_lost = 0;
}

/* Retry the listeners and logs that failed for want of descriptors. */
static void
port_retry_timer(evutil_socket_t fd, short events, void *arg)
{
	struct port *p;
	struct port_resv *r;
	bool again = false;

	port_retrying = true;
	TAILQ_FOREACH(p, &all_ports, entry) {
		if (p->listen_retry && p->listener == NULL) {
			r = port_resv_find(p->uuid, p->uri);
			port_open_listener(p, r != NULL ? r->client_port : 0);
			if (p->listener != NULL) {
				log_info("port %s: client listener on port %d",
				    p->id, p->client_port);
				port_resv_set(p->uuid, p->uri, p->id,
				    p->client_port);
				port_state_save(p);
			}
		}
		if (p->log_retry && p->log == NULL) {
			port_open_log(p);
			if (p->log != NULL)
				log_info("port %s: console log open", p->id);
		}
		again = again || p->listen_retry || p->log_retry;
	}
	port_retrying = false;
	if (!again)
		return;
	port_retry_schedule();
}

/* Create a port for a newly seen key. */
struct port *
port_create(const char *uuid, const char *uri, uint8_t dir, const char *name)
{
	struct port *p;
	struct port_resv *resv;
	size_t i;

	p = xcalloc(1, sizeof *p);
	strlcpy(p->uuid, uuid, sizeof p->uuid);
	p->uri = xstrdup(uri);
	p->direction = dir;
	p->name = xstrdup(name != NULL ? name : "");
	if (vmwext_uri_label((const uint8_t *)uri, strlen(uri), p->label,
	    sizeof p->label) == 0 && !port_uri_is_bare(uri))
		port_label_from_uri(uri, p->label, sizeof p->label);
	/* Labels end up in file names: no leading dot, no "..". */
	for (i = 0; p->label[i] != '\0'; i++) {
		if (p->label[i] == '.' && (i == 0 || p->label[i - 1] == '.'))
			p->label[i] = '_';
	}
	resv = port_resv_find(uuid, uri);
	if (resv != NULL && port_find_id(resv->id) == NULL)
		p->id = xstrdup(resv->id);
	else
		p->id = port_make_id(uuid, uri, p->label);
	TAILQ_INIT(&p->clients);
	p->hold = evbuffer_new();
	p->expiry_ev = evtimer_new(ev_base, port_expiry_timer, p);
	p->created = p->last_seen = time(NULL);
	RB_INSERT(port_keys, &port_keys, p);
	RB_INSERT(port_ids, &port_ids, p);
	TAILQ_INSERT_TAIL(&all_ports, p, entry);
	n_ports++;
	port_open_listener(p, resv != NULL ? resv->client_port : 0);
	port_open_log(p);
	port_resv_set(uuid, uri, p->id, port_remembered_cport(p));
	port_state_save(p);
	log_info("port %s: %s (uri '%s', client port %d)", p->id,
	    resv != NULL ? "back" : "new", log_escape(uri, strlen(uri)),
	    p->client_port);
	return (p);
}

/* Set the VM name shown for the port. */
void
port_set_name(struct port *p, const char *name)
{
	if (strcmp(p->name, name) == 0)
		return;
	free(p->name);
	p->name = xstrdup(name);
	port_state_save(p);
	share_port_update(p);
}

/* Order ports by id, for stable listings of several matches. */
static int
port_ptr_id_cmp(const void *a, const void *b)
{
	const struct port *const *pa = a, *const *pb = b;

	return (strcmp((*pa)->id, (*pb)->id));
}

/*
 * Find ports by what a person types: an exact id, a UUID in any accepted
 * form, or a VM name. Fills up to max matches, sorted by id; returns the
 * match count.
 */
int
port_lookup(const char *name, struct port **out, int max)
{
	struct port *p;
	char uuid[33];
	int n = 0;
	bool by_uuid;

	if ((p = port_find_id(name)) != NULL) {
		if (max > 0)
			out[0] = p;
		return (1);
	}
	by_uuid = vmwext_uuid_normalise((const uint8_t *)name, strlen(name),
	    uuid) == 0;
	TAILQ_FOREACH(p, &all_ports, entry) {
		if ((by_uuid && strcmp(p->uuid, uuid) == 0) ||
		    (!by_uuid && strcmp(p->name, name) == 0)) {
			if (n < max)
				out[n] = p;
			n++;
		}
	}
	if (n > 1)
		qsort(out, (size_t)(n < max ? n : max), sizeof *out,
		    port_ptr_id_cmp);
	return (n);
}

/* Make vs the port's active VM connection. */
void
port_bind_vm(struct port *p, struct vm_session *vs)
{
	struct vm_session *old = p->vm;

	if (old == vs)
		return;
	/* A fresh connection (not the vMotion destination) ends a vMotion. */
	if (p->vmotion != NULL && p->vmotion->dst != vs)
		vmotion_port_reset(p, "VM reconnected", true);
	if (old != NULL) {
		log_info("port %s: new connection from %s replaces %s",
		    p->id, vs->addr, old->addr);
		old->port = NULL;
		vm_retire(old);
	}
	p->vm = vs;
	vs->port = p;
	port_touch(p);
	consolelog_event(p->log, "vm-connect", vs->addr);
	port_check_expiry(p);
	/* Input held from an abandoned vMotion goes to the new connection. */
	if (p->vmotion == NULL)
		port_flush_hold(p, vs);
	port_vm_writable(p);
}

/* Send the held client input to vs, in order. */
void
port_flush_hold(struct port *p, struct vm_session *vs)
{
	size_t len = evbuffer_get_length(p->hold);

	if (vs == NULL || len == 0)
		return;
	vm_send_data(vs, evbuffer_pullup(p->hold, -1), len);
	evbuffer_drain(p->hold, len);
	p->bytes_to_vm += len;
}

/* The port's VM connection went away. */
void
port_unbind_vm(struct port *p, struct vm_session *vs)
{
	if (p->vm != vs)
		return;
	p->vm = NULL;
	port_touch(p);
	consolelog_event(p->log, "vm-disconnect", vs->addr);
	/* Nothing will drain: let clients type (input is discarded). */
	port_vm_writable(p);
	port_check_expiry(p);
	vm_claim_resolve(p);
}

/* Keep at most the last cfg.replay_size bytes of output. */
static void
port_replay_trim(struct port *p)
{
	size_t have = evbuffer_get_length(p->replay);

	if (have > cfg.replay_size)
		evbuffer_drain(p->replay, have - cfg.replay_size);
}

/* Keep the last cfg.replay_size bytes of output for new clients. */
static void
port_replay_add(struct port *p, const uint8_t *data, size_t len)
{
	if (cfg.replay_size == 0)
		return;
	if (p->replay == NULL)
		p->replay = evbuffer_new();
	if (len >= cfg.replay_size) {
		evbuffer_drain(p->replay, evbuffer_get_length(p->replay));
		evbuffer_add(p->replay, data + len - cfg.replay_size,
		    cfg.replay_size);
		return;
	}
	evbuffer_add(p->replay, data, len);
	port_replay_trim(p);
}

/* Send the replay buffer to one client, escaped, before live output. */
static void
port_replay_send(struct port *p, struct client *c)
{
	struct evbuffer_iovec *v;
	uint8_t *esc;
	size_t elen;
	int i, n;

	if (p->replay == NULL || evbuffer_get_length(p->replay) == 0)
		return;
	n = evbuffer_peek(p->replay, -1, NULL, NULL, 0);
	if (n <= 0)
		return;
	v = xcalloc((size_t)n, sizeof *v);
	n = evbuffer_peek(p->replay, -1, NULL, v, n);
	for (i = 0; i < n; i++) {
		esc = xmalloc(v[i].iov_len * 2);
		elen = telnet_escape(esc, v[i].iov_base, v[i].iov_len);
		client_write_console(c, esc, elen);
		free(esc);
	}
	free(v);
}

/* Send the replay buffer to a client again (in-session "replay"). */
void
port_replay(struct port *p, struct client *c)
{
	port_replay_send(p, c);
}

/* A shared chunk of cap bytes (uninitialised), with one reference. */
struct port_chunk *
port_chunk_new(size_t cap)
{
	struct port_chunk *ch;

	ch = xmalloc(sizeof *ch + cap);
	ch->refs = 1;
	ch->cap = cap;
	return (ch);
}

/*
 * Shrink ch to cap bytes (its first cap bytes kept). Only while the
 * caller's is the one reference: the chunk may move.
 */
struct port_chunk *
port_chunk_shrink(struct port_chunk *ch, size_t cap)
{
	if (ch->refs != 1)
		fatalx("%s: chunk has %u references", __func__, ch->refs);
	ch = xrealloc(ch, sizeof *ch + cap);
	ch->cap = cap;
	return (ch);
}

/*
 * Drop one reference (the holder's own, or a client queue's: this is the
 * evbuffer_add_reference cleanup); the last one frees the chunk.
 */
void
port_chunk_unref(const void *data, size_t len, void *arg)
{
	struct port_chunk *ch = arg;

	if (--ch->refs == 0)
		free(ch);
}

/* Count console output (both output paths). */
static void
port_output_count(struct port *p, size_t len)
{
	p->bytes_from_vm += len;
	if (p->log_retry)
		p->log_lost += len;
}

/*
 * Give every client data[0..len), which lies in ch, by reference: each
 * queue that keeps some of it holds a reference to ch.
 */
static void
port_output_share(struct port *p, struct port_chunk *ch, const uint8_t *data,
    size_t len)
{
	struct client *c, *c1;

	TAILQ_FOREACH_SAFE(c, &p->clients, entry, c1) {
		ch->refs++;
		if (!client_write_console_ref(c, data, len, port_chunk_unref,
		    ch))
			ch->refs--;
	}
}

/* The replay ring space reserved by port_output_space, and whose. */
static struct evbuffer_iovec port_space;
static struct port *port_space_port;

/*
 * Fan VM output out to every attached client: log and replay get the raw
 * bytes; clients get them escaped, once per call (one call per VM read),
 * in a chunk that every client queue references (evbuffer_add_reference),
 * so a read costs one copy whatever the number of clients; it is freed
 * when the last queue lets go.
 */
void
port_output(struct port *p, const uint8_t *data, size_t len)
{
	static uint8_t *esc;
	static size_t esccap;
	struct port_chunk *ch;
	struct client *c, *c1;
	size_t elen;

	port_space_port = NULL;		/* any reservation is void now */
	port_output_count(p, len);
	consolelog_write(p->log, data, len);
	port_replay_add(p, data, len);
	if (TAILQ_EMPTY(&p->clients) || len == 0)
		return;
	elen = telnet_escaped_len(data, len);
	if (elen < PORT_SHARE_MIN) {
		/* Small: a copy per client is cheaper than a reference. */
		if (elen != len) {
			if (esccap < elen) {
				esccap = PORT_SHARE_MIN;
				esc = xrealloc(esc, esccap);
			}
			telnet_escape(esc, data, len);
			data = esc;
			len = elen;
		}
		TAILQ_FOREACH_SAFE(c, &p->clients, entry, c1)
			client_write_console(c, data, len);
		return;
	}
	ch = port_chunk_new(elen);	/* ours, until the loop is done */
	telnet_escape(ch->data, data, len);
	port_output_share(p, ch, ch->data, elen);
	port_chunk_unref(ch->data, elen, ch);
}

/*
 * The output path for a read that vm.c decodes itself (port_output_wire):
 * room for up to len decoded bytes, which is the replay ring's own free
 * space (so the bytes are not copied into it again) or, with replay off, a
 * scratch buffer. Valid until the next port_output or port_output_wire;
 * NULL if no memory (the caller then takes the port_output path).
 */
uint8_t *
port_output_space(struct port *p, size_t len)
{
	static uint8_t *scratch;
	static size_t scratchcap;
	struct evbuffer_iovec *v = &port_space;

	port_space_port = NULL;
	if (cfg.replay_size == 0) {
		if (scratchcap < len) {
			scratch = xrealloc(scratch, len);
			scratchcap = len;
		}
		return (scratch);
	}
	if (p->replay == NULL)
		p->replay = evbuffer_new();
	if (evbuffer_reserve_space(p->replay, len, v, 1) != 1)
		return (NULL);
	port_space_port = p;
	return (v->iov_base);
}

/*
 * As port_output, for console data that the caller decoded into
 * port_output_space(p, ...): data[0..len), and wire[0..wirelen) is the
 * same data as the VM sent it, 0xFF doubled, inside the shared chunk ch
 * (wirelen at least PORT_SHARE_MIN; see vm_decode). Log and replay get
 * data (the replay ring already holds it); clients get references to the
 * wire bytes, which are exactly what telnet_escape would have made of
 * data: no escaped-length scan, no escaping, no copy. The caller keeps its
 * own reference to ch. Queue caps count wirelen, as port_output counts
 * the escaped length.
 */
void
port_output_wire(struct port *p, const uint8_t *data, size_t len,
    struct port_chunk *ch, const uint8_t *wire, size_t wirelen)
{
	port_output_count(p, len);
	p->wire_bytes += len;
	consolelog_write(p->log, data, len);
	if (port_space_port == p) {
		/* data is port_space: commit what was decoded. */
		port_space_port = NULL;
		port_space.iov_len = len;
		evbuffer_commit_space(p->replay, &port_space, 1);
		port_replay_trim(p);
	} else
		port_replay_add(p, data, len);
	if (!TAILQ_EMPTY(&p->clients) && len > 0)
		port_output_share(p, ch, wire, wirelen);
}

/* Send client input to the VM, or count it as dropped if none. */
void
port_input(struct port *p, const uint8_t *data, size_t len)
{
	struct client *c;

	if (len == 0)
		return;
	if (vmotion_holding(p)) {
		/* R6/R7: held until the vMotion ends; backpressure. */
		evbuffer_add(p->hold, data, len);
		if (!p->clients_paused &&
		    evbuffer_get_length(p->hold) > cfg.vmotion_hold_max) {
			p->clients_paused = true;
			TAILQ_FOREACH(c, &p->clients, entry)
				client_pause(c, true);
		}
		return;
	}
	if (p->vm == NULL || p->vm->retiring) {
		p->input_dropped += len;
		return;
	}
	vm_send_data(p->vm, data, len);
	p->bytes_to_vm += len;
	if (!p->clients_paused && vm_queue_len(p->vm) > cfg.vm_queue) {
		p->clients_paused = true;
		TAILQ_FOREACH(c, &p->clients, entry)
			client_pause(c, true);
	}
}

/* The to-VM queue drained (or the VM went away): read clients again. */
void
port_vm_writable(struct port *p)
{
	struct client *c;

	if (!p->clients_paused)
		return;
	if (vmotion_holding(p)) {
		if (evbuffer_get_length(p->hold) > cfg.vmotion_hold_max / 2)
			return;
	} else if (p->vm != NULL && vm_queue_len(p->vm) > cfg.vm_queue / 2)
		return;
	p->clients_paused = false;
	TAILQ_FOREACH(c, &p->clients, entry)
		client_pause(c, false);
}

/*
 * The one access check, whatever the front end: the client's rights on p
 * from the access rules. Without read it must not attach (and gets no
 * console byte); the refusal is audited. Returns 0 or -1.
 */
int
port_authorize(struct port *p, struct client *c)
{
	char r[64];

	c->rights = authz_rights(&c->ident, p->name, p->id, p->uuid);
	if ((c->rights & RIGHT_READ) == 0) {
		audit_event("denied", &c->ident, p->id, "no read right");
		log_info("port %s: client %s denied", p->id, c->addr);
		return (-1);
	}
	log_debug("port %s: client %s has %s", p->id, c->addr,
	    authz_rights_str(c->rights, r, sizeof r));
	return (0);
}

/* Attach an authorized client to the port, optionally replaying output. */
void
port_attach(struct port *p, struct client *c, bool replay)
{
	char r[64], detail[96];

	share_attach(p, c);	/* before it is on the list */
	if (replay)
		port_replay_send(p, c);
	c->port = p;
	TAILQ_INSERT_TAIL(&p->clients, c, entry);
	p->nclients++;
	if (p->clients_paused)
		client_pause(c, true);
	port_check_expiry(p);
	consolelog_event(p->log, "client-attach", c->addr);
	snprintf(detail, sizeof detail, "rights %s, mode %s",
	    authz_rights_str(c->rights, r, sizeof r), share_mode_str(c));
	audit_event("attach", &c->ident, p->id, detail);
	log_info("port %s: client %s attached (%u clients)", p->id, c->addr,
	    p->nclients);
}

/* Detach a client from the port. */
void
port_detach(struct port *p, struct client *c)
{
	share_detach(p, c);
	TAILQ_REMOVE(&p->clients, c, entry);
	p->nclients--;
	c->port = NULL;
	p->client_bytes_dropped += c->skipped;
	port_check_expiry(p);
	consolelog_event(p->log, "client-detach", c->addr);
	audit_event("detach", &c->ident, p->id, NULL);
	log_info("port %s: client %s detached (%u clients)", p->id, c->addr,
	    p->nclients);
}

/* Forget a port: close its listener and clients. The one teardown. */
void
port_free(struct port *p)
{
	struct client *c;
	struct vm_session *vs;

	vmotion_port_reset(p, "port removed", false);
	if (p->claimant != NULL) {
		p->claimant->claiming = NULL;
		vm_close(p->claimant, "port removed");
		p->claimant = NULL;
	}
	TAILQ_FOREACH(vs, &vm_sessions, entry) {
		if (vs->late_port == p)
			vs->late_port = NULL;
	}
	while ((c = TAILQ_FIRST(&p->clients)) != NULL)
		client_close(c, "port removed");
	if (p->vm != NULL) {
		p->vm->port = NULL;
		vm_close(p->vm, "port removed");
		p->vm = NULL;
	}
	if (p->listener != NULL) {
		listener_free(p->listener);
		/* Still remembered in the db: keep the number for it. */
		if (port_range_used != NULL && cfg.port_lo > 0 &&
		    p->client_port >= cfg.port_lo &&
		    p->client_port <= cfg.port_hi)
			port_range_used[p->client_port - cfg.port_lo] =
			    PR_RESERVED;
	}
	event_free(p->expiry_ev);
	consolelog_close(p->log);
	evbuffer_free(p->hold);
	if (p->replay != NULL)
		evbuffer_free(p->replay);
	if (port_space_port == p)
		port_space_port = NULL;
	RB_REMOVE(port_keys, &port_keys, p);
	RB_REMOVE(port_ids, &port_ids, p);
	TAILQ_REMOVE(&all_ports, p, entry);
	n_ports--;
	free(p->uri);
	free(p->id);
	free(p->name);
	free(p);
}

/* Free every port (shutdown). */
void
port_free_all(void)
{
	struct port *p;
	struct port_resv *r;

	while ((p = TAILQ_FIRST(&all_ports)) != NULL)
		port_free(p);
	if (port_retry_ev != NULL)
		event_free(port_retry_ev);
	port_retry_ev = NULL;
	free(port_range_used);
	port_range_used = NULL;
	while ((r = RB_ROOT(&resv_keys)) != NULL) {
		RB_REMOVE(resv_keys, &resv_keys, r);
		RB_REMOVE(resv_ids, &resv_ids, r);
		free(r->uri);
		free(r->id);
		free(r);
	}
}
