/*
 * Client side: telnet viewers, through a port's own listener (attached at
 * once, no banner) or through the front door (one line names the console).
 *
 * We offer WILL ECHO, WILL SGA, DO SGA, WILL BINARY, DO BINARY, which gives
 * a stock telnet client character-at-a-time mode with no local echo and an
 * 8-bit clean path. Raw TCP clients that never negotiate work too.
 *
 * Slow clients: output queued for one client is capped at cfg.client_queue.
 * Past the cap, console output for that client only is skipped and counted;
 * once its queue has drained below half the cap it is told
 * "[vspcd: N bytes skipped, client too slow]" and live output resumes. The
 * VM and the other clients never wait for it.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vspcd.h"

#define CLIENT_READ_CHUNK	16384
#define CLIENT_WRITE_MAX	(256 * 1024)	/* per write (libevent: 16 KiB) */
#define CLIENT_PROMPT		"console (name, uuid or id): "

struct clients all_clients = TAILQ_HEAD_INITIALIZER(all_clients);
u_int n_clients;
uint64_t client_refused_limit;
const int client_door_ro;	/* its address marks the read-only door */

static void	client_read_cb(struct bufferevent *, void *);
static void	client_write_cb(struct bufferevent *, void *);
static void	client_event_cb(struct bufferevent *, short, void *);
static void	client_telnet_cb(void *, const struct telnet_event *);

/* Send text (no 0xFF in it) to a client. */
static void
client_puts(struct client *c, const char *s)
{
	bufferevent_write(c->bev, s, strlen(s));
}

/*
 * A daemon notice for this client only, in-band: "\r\n[vspcd: TEXT]\r\n".
 * TEXT must hold no 0xFF (callers pass printable ASCII).
 */
void
client_notice(struct client *c, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	if (c->dead)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	bufferevent_write(c->bev, "\r\n[vspcd: ", 10);
	bufferevent_write(c->bev, text, strlen(text));
	bufferevent_write(c->bev, "]\r\n", 3);
}

/*
 * True if len more bytes of console output fit under the client's queue
 * cap; otherwise they are counted as skipped (the notice comes once the
 * queue has drained, in client_write_cb).
 */
static bool
client_console_room(struct client *c, struct evbuffer *out, size_t len)
{
	if (c->dead)
		return (false);
	if (c->skipping || evbuffer_get_length(out) + len > cfg.client_queue) {
		if (!c->skipping)
			log_info("client %s: too slow, skipping output",
			    c->addr);
		c->skipping = true;
		c->skipped += len;
		c->gap += len;
		return (false);
	}
	c->bytes_out += len;
	return (true);
}

/* Write-through for console output (bev_send_now; not during TLS setup). */
static size_t
client_send_now(struct client *c, const uint8_t *data, size_t len)
{
	if (c->tls_wait)
		return (0);
	return (bev_send_now(c->bev, data, len));
}

/* Console output for this client, subject to its queue cap. */
void
client_write_console(struct client *c, const uint8_t *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t sent;

	if (!client_console_room(c, out, len))
		return;
	sent = client_send_now(c, data, len);
	if (sent < len)
		evbuffer_add(out, data + sent, len - sent);
}

/*
 * The same by reference, without a copy: the queue holds data until it is
 * written, then calls unref(data, len, arg). Returns true if it took the
 * reference (false: skipped, sent at once, or no memory; unref is then
 * not called).
 */
bool
client_write_console_ref(struct client *c, const uint8_t *data, size_t len,
    evbuffer_ref_cleanup_cb unref, void *arg)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t sent;

	if (!client_console_room(c, out, len))
		return (false);
	sent = client_send_now(c, data, len);
	if (sent == len)
		return (false);		/* all sent: no reference kept */
	return (evbuffer_add_reference(out, data + sent, len - sent, unref,
	    arg) == 0);
}

/* Stop or resume reading a client (backpressure from the VM queue). */
void
client_pause(struct client *c, bool pause)
{
	if (c->paused == pause)
		return;
	c->paused = pause;
	if (pause)
		bufferevent_disable(c->bev, EV_READ);
	else {
		bufferevent_enable(c->bev, EV_READ);
		/* Input left unread when we paused gets processed now. */
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
			bufferevent_trigger(c->bev, EV_READ,
			    BEV_TRIG_IGNORE_WATERMARKS |
			    BEV_TRIG_DEFER_CALLBACKS);
	}
}

/* Attach a client to a port's own listener, if it may read it. */
static void
client_attach(struct client *c, struct port *p)
{
	c->frontdoor = false;
	if (port_authorize(p, c) == -1) {
		client_puts(c, "vspcd: access denied\r\n");
		bufferevent_disable(c->bev, EV_READ);
		c->closing = true;	/* closed once the line is out */
		return;
	}
	port_attach(p, c, cfg.replay_telnet != 0);
}

/* Client input for the VM, if the client may type now (share.c). */
static void
client_to_port(struct client *c, const uint8_t *data, size_t len)
{
	if (!share_may_type(c, len))
		return;
	c->bytes_in += len;
	port_input(c->port, data, len);
}

/* Input for the console: NVT newline handling, then to the port. */
static void
client_console_input(struct client *c, const uint8_t *data, size_t len)
{
	uint8_t buf[CLIENT_READ_CHUNK];
	size_t n;

	if (c->port == NULL || len == 0)
		return;
	if (c->skip_lf) {
		/* The LF or NUL of the CR that ended the front-door line. */
		c->skip_lf = false;
		if (data[0] == '\n' || data[0] == '\0') {
			data++;
			if (--len == 0)
				return;
		}
	}
	if (telnet_enabled(&c->tn, TELOPT_BINARY, false)) {
		client_to_port(c, data, len);
		return;
	}
	while (len > 0) {
		n = len < sizeof buf ? len : sizeof buf;
		memcpy(buf, data, n);
		client_to_port(c, buf,
		    telnet_nvt_filter(buf, n, &c->pending_cr));
		data += n;
		len -= n;
	}
}

/* Answer a front-door command and close once the answer is out. */
static void
client_frontdoor_done(struct client *c, const char *answer)
{
	client_puts(c, answer);
	client_puts(c, "\r\n");
	bufferevent_disable(c->bev, EV_READ);
	c->closing = true;
	c->close_reason = "front-door command done";
}

/*
 * Front-door commands (one per connection): "/who [NAME]" answers one JSON
 * line {"clients":[...]} (consoles the client may read; NAME: those that
 * match), "/kick ID" answers "kicked client ID" or "vspcd: ...". Both
 * then close. Returns false if line is not a command.
 */
static bool
client_frontdoor_cmd(struct client *c, const char *line)
{
	struct port *m[64];
	struct client *t;
	json_t *all, *one, *a, *v;
	const char *errstr;
	char msg[256], *s;
	u_int id;
	int n, i;
	size_t j;

	if (strcmp(line, "/who") == 0 || strncmp(line, "/who ", 5) == 0) {
		if (line[4] == '\0') {
			all = share_clients_json(&c->ident, NULL);
		} else {
			n = port_lookup(line + 5, m, nitems(m));
			if (n > (int)nitems(m))
				n = nitems(m);
			for (i = j = 0; i < n; i++) {
				if (authz_rights(&c->ident, m[i]->name,
				    m[i]->id, m[i]->uuid) & RIGHT_READ)
					m[j++] = m[i];
			}
			if ((n = (int)j) == 0) {
				snprintf(msg, sizeof msg, "vspcd: no console "
				    "named '%s'", log_escape(line + 5,
				    strlen(line + 5)));
				client_frontdoor_done(c, msg);
				return (true);
			}
			all = json_pack("{s:[]}", "clients");
			a = json_object_get(all, "clients");
			for (i = 0; i < n; i++) {
				one = share_clients_json(&c->ident, m[i]);
				json_array_foreach(json_object_get(one,
				    "clients"), j, v)
					json_array_append(a, v);
				json_decref(one);
			}
		}
		s = json_dumps(all, JSON_COMPACT | JSON_ENSURE_ASCII);
		json_decref(all);
		client_frontdoor_done(c, s != NULL ? s : "{\"clients\":[]}");
		free(s);
		return (true);
	}
	if (strncmp(line, "/kick ", 6) != 0)
		return (false);
	id = (u_int)strtonum(line + 6, 1, UINT_MAX, &errstr);
	if (errstr != NULL) {
		client_frontdoor_done(c, "vspcd: /kick wants a client id");
		return (true);
	}
	if ((t = share_find(id)) == NULL ||
	    share_kick(t, &c->ident, msg, sizeof msg) == -1) {
		snprintf(msg, sizeof msg, "vspcd: no client %u", id);
		client_frontdoor_done(c, msg);
		return (true);
	}
	if (strncmp(msg, "kicked ", 7) != 0) {
		char err[300];

		snprintf(err, sizeof err, "vspcd: %s", msg);
		client_frontdoor_done(c, err);
	} else
		client_frontdoor_done(c, msg);
	return (true);
}

/*
 * Options before a console name: "/replay ", "/noreplay " and "/ro "
 * (read-only attach), in any order. Returns the name after them.
 */
static const char *
client_frontdoor_opts(const char *name, bool *replay, bool *ro)
{
	for (;;) {
		if (strncmp(name, "/replay ", 8) == 0) {
			*replay = true;
			name += 8;
		} else if (strncmp(name, "/noreplay ", 10) == 0) {
			*replay = false;
			name += 10;
		} else if (strncmp(name, "/ro ", 4) == 0) {
			*ro = true;
			name += 4;
		} else
			return (name);
	}
}

/* A complete front-door line: find the console and attach. */
static bool
client_frontdoor_line(struct client *c)
{
	struct port *m[64];
	char msg[512];
	const char *name = c->line;
	int n, i, k;
	size_t o;
	bool replay = cfg.replay_telnet != 0, ro = false;

	c->line[c->linelen] = '\0';
	c->linelen = 0;
	if (c->line[0] == '\0') {
		client_puts(c, CLIENT_PROMPT);
		return (false);
	}
	n = port_lookup(name, m, nitems(m));
	/* A name that is no console may be a command or carry options. */
	if (n == 0 && name[0] == '/') {
		if (client_frontdoor_cmd(c, name))
			return (false);
		name = client_frontdoor_opts(name, &replay, &ro);
		n = port_lookup(name, m, nitems(m));
	}
	/*
	 * Only consoles the client may read exist for it: the others are
	 * dropped from the matches (and audited), so a refused name gets the
	 * same answer as an unknown one and reveals nothing.
	 */
	if (n > (int)nitems(m))
		n = nitems(m);
	for (i = k = 0; i < n; i++) {
		if (port_authorize(m[i], c) == 0)
			m[k++] = m[i];
	}
	n = k;
	if (n == 1)
		(void)port_authorize(m[0], c);	/* its rights, again */
	if (n == 1) {
		snprintf(msg, sizeof msg, "attached to %s [%s]\r\n",
		    m[0]->name[0] != '\0' ? m[0]->name : "(unnamed)", m[0]->id);
		client_puts(c, msg);
		c->frontdoor = false;
		c->readonly = ro;
		port_attach(m[0], c, replay);
		return (true);
	}
	if (n == 0)
		snprintf(msg, sizeof msg, "vspcd: no console named '%s'\r\n",
		    log_escape(name, strlen(name)));
	else {
		o = (size_t)snprintf(msg, sizeof msg,
		    "vspcd: '%s' matches %d consoles:",
		    log_escape(name, strlen(name)), n);
		for (i = 0; i < n && i < (int)nitems(m) && o < sizeof msg; i++)
			o += (size_t)snprintf(msg + o, sizeof msg - o, " %s",
			    m[i]->id);
		if (o < sizeof msg)
			snprintf(msg + o, sizeof msg - o, "\r\n");
		else
			strlcpy(msg + sizeof msg - 3, "\r\n", 3);
	}
	client_puts(c, msg);
	client_puts(c, CLIENT_PROMPT);
	return (false);
}

/* Line editing at the front door; the rest of the input goes to the port. */
static void
client_frontdoor_input(struct client *c, const uint8_t *data, size_t len)
{
	bool echo = telnet_enabled(&c->tn, TELOPT_ECHO, true);
	size_t i;
	uint8_t ch;

	for (i = 0; i < len && !c->closing; i++) {
		ch = data[i];
		if (ch == '\r' || ch == '\n') {
			if (ch == '\n' && c->line_cr && c->linelen == 0) {
				c->line_cr = false;
				continue;
			}
			c->line_cr = ch == '\r';
			if (echo)
				client_puts(c, "\r\n");
			if (client_frontdoor_line(c)) {
				/* Swallow the LF or NUL of a CR LF / CR NUL. */
				c->skip_lf = c->line_cr;
				client_console_input(c, data + i + 1,
				    len - i - 1);
				return;
			}
			continue;
		}
		c->line_cr = false;
		if (ch == 0)
			continue;
		if (ch == 0x7f || ch == 0x08) {
			if (c->linelen > 0) {
				c->linelen--;
				if (echo)
					client_puts(c, "\b \b");
			}
			continue;
		}
		if (ch == 0x03 || ch == 0x04) {
			c->dead = true;
			return;
		}
		if (ch < 0x20 || c->linelen + 1 >= sizeof c->line)
			continue;
		c->line[c->linelen++] = (char)ch;
		if (echo)
			bufferevent_write(c->bev, &ch, 1);
	}
}

/*
 * Console input of one read chunk is gathered and handed on in one call (a
 * doubled 0xFF is its own codec event); any other event flushes first.
 */
static uint8_t client_rx[CLIENT_READ_CHUNK];
static size_t client_rx_len;

/* Hand the gathered console input of c on. */
static void
client_rx_flush(struct client *c)
{
	size_t len = client_rx_len;

	if (len == 0)
		return;
	client_rx_len = 0;
	client_console_input(c, client_rx, len);
}

/* Events from the client's telnet codec. */
static void
client_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct client *c = arg;
	static const uint8_t ctrl_c = 0x03;

	if (c->dead)
		return;
	if (ev->type == TELNET_EV_DATA && !c->frontdoor) {
		if (client_rx_len + ev->len > sizeof client_rx)
			client_rx_flush(c);
		if (ev->len > sizeof client_rx)
			client_console_input(c, ev->data, ev->len);
		else {
			memcpy(client_rx + client_rx_len, ev->data, ev->len);
			client_rx_len += ev->len;
		}
		return;
	}
	client_rx_flush(c);
	switch (ev->type) {
	case TELNET_EV_DATA:
		client_frontdoor_input(c, ev->data, ev->len);
		break;
	case TELNET_EV_SEND:
		bufferevent_write(c->bev, ev->data, ev->len);
		break;
	case TELNET_EV_CMD:
		if (ev->cmd == TELNET_IP && c->port != NULL)
			client_to_port(c, &ctrl_c, 1);
		else if (ev->cmd == TELNET_AYT)
			client_puts(c, "\r\n[vspcd: yes]\r\n");
		break;
	case TELNET_EV_ERROR:
		log_debug("client %s: telnet protocol error %d", c->addr,
		    ev->err);
		break;
	case TELNET_EV_SB:
		if (ev->opt == TELOPT_VSPC)
			share_control(c, ev->data, ev->len);
		break;
	case TELNET_EV_NEG:
	case TELNET_EV_OPTION:
		break;
	}
}

/* Read what the client typed. */
static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[4];
	size_t total, l;
	int i, n;

	while (!c->dead && evbuffer_get_length(in) > 0) {
		n = evbuffer_peek(in, CLIENT_READ_CHUNK, NULL, v, nitems(v));
		if (n > (int)nitems(v))
			n = nitems(v);
		total = 0;
		for (i = 0; i < n && !c->dead; i++) {
			l = v[i].iov_len;
			if (total + l > CLIENT_READ_CHUNK)
				l = CLIENT_READ_CHUNK - total;
			telnet_input(&c->tn, v[i].iov_base, l);
			client_rx_flush(c);
			total += l;
			if (total >= CLIENT_READ_CHUNK)
				break;
		}
		evbuffer_drain(in, total);
		if (c->paused)
			break;
	}
	if (c->dead)
		client_close(c, "client quit");
}

/* The client's queue drained: end a skip with a notice. */
static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	char msg[128];

	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			client_close(c, c->close_reason != NULL ?
			    c->close_reason : "access denied");
		return;
	}
	if (!c->skipping)
		return;
	snprintf(msg, sizeof msg,
	    "\r\n[vspcd: %llu bytes skipped, client too slow]\r\n",
	    (unsigned long long)c->gap);
	c->skipping = false;
	client_puts(c, msg);
	log_info("client %s: caught up after skipping %llu bytes", c->addr,
	    (unsigned long long)c->gap);
	c->gap = 0;
}

/*
 * What a client does once it may talk: a prompt at a front door, the
 * attach on a port's own listener (the port is looked up again by id: it
 * may have gone while a TLS handshake ran).
 */
static void
client_start(struct client *c)
{
	struct port *p;

	if (c->frontdoor) {
		client_puts(c, CLIENT_PROMPT);
		return;
	}
	p = c->start_port != NULL ? port_find_id(c->start_port) : NULL;
	free(c->start_port);
	c->start_port = NULL;
	if (p == NULL) {
		client_close(c, "port gone");
		return;
	}
	client_attach(c, p);
}

/* The TLS handshake is done: learn who it is, then start. */
static void
client_tls_ready(struct client *c)
{
	c->tls_wait = false;
	if (tls_peer_identity(c->bev, &c->ident) == -1) {
		audit_event("denied", &c->ident, NULL,
		    "tls: certificate subject too long");
		client_close(c, "certificate subject too long");
		return;
	}
	if (!c->frontdoor && c->timer != NULL)
		evtimer_del(c->timer);
	log_debug("client %s: TLS handshake done (%s)", c->addr,
	    c->ident.kind == IDENT_CERT ? c->ident.name : "no certificate");
	client_start(c);
}

/* EOF or error on a client. */
static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	const char *tlserr;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->tls_wait)
			client_tls_ready(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		client_close(c, "closed by client");
	else if (what & BEV_EVENT_ERROR) {
		if ((tlserr = tls_bev_error(bev)) != NULL)
			client_close(c, tlserr);
		else
			client_close(c, evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
	}
}

/* The front-door deadline passed without a console chosen. */
static void
client_timer(evutil_socket_t fd, short events, void *arg)
{
	struct client *c = arg;

	if (c->tls_wait)
		client_close(c, "TLS handshake not done in time");
	else if (c->frontdoor && c->port == NULL)
		client_close(c, "no console named in time");
}

/* Set up a new client connection, within the connection caps. */
static struct client *
client_new(evutil_socket_t fd, struct sockaddr *sa, int salen, bool tls)
{
	struct client *c;
	char addr[64];

	if (n_clients >= (u_int)cfg.max_clients ||
	    source_count(SOURCE_CLIENT, sa, 0) >= cfg.max_clients_per_source) {
		client_refused_limit++;
		listener_addr_str(sa, addr, sizeof addr);
		log_warnx("client %s: refused (connection limit)", addr);
		evutil_closesocket(fd);
		return (NULL);
	}
	c = xcalloc(1, sizeof *c);
	listener_addr_str(sa, c->addr, sizeof c->addr);
	if ((size_t)salen <= sizeof c->sa)
		memcpy(&c->sa, sa, (size_t)salen);
	source_count(SOURCE_CLIENT, sa, 1);
	c->counted_src = true;
	c->ident.kind = IDENT_ANONYMOUS;
	strlcpy(c->ident.source, c->addr, sizeof c->ident.source);
	c->ident.loopback = sockaddr_is_loopback(sa);
	/* TCP_NODELAY comes from the listening socket (listener_open_addr). */
	if (tls)
		c->bev = tls_bev_accept(fd, false);
	else
		c->bev = bufferevent_socket_new(ev_base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		source_count(SOURCE_CLIENT, sa, -1);
		evutil_closesocket(fd);
		free(c);
		return (NULL);
	}
	c->tls_wait = tls;
	TAILQ_INSERT_TAIL(&all_clients, c, all_entry);
	n_clients++;
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb,
	    client_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, cfg.client_queue / 2, 0);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CLIENT_READ_CHUNK);
	bufferevent_set_max_single_write(c->bev, CLIENT_WRITE_MAX);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);

	telnet_init(&c->tn, client_telnet_cb, c);
	telnet_set_accept(&c->tn, TELOPT_ECHO, true, false);
	telnet_set_accept(&c->tn, TELOPT_SGA, true, true);
	telnet_set_accept(&c->tn, TELOPT_BINARY, true, true);
	telnet_request(&c->tn, TELOPT_ECHO, true, true);
	telnet_request(&c->tn, TELOPT_SGA, true, true);
	telnet_request(&c->tn, TELOPT_SGA, false, true);
	telnet_request(&c->tn, TELOPT_BINARY, true, true);
	telnet_request(&c->tn, TELOPT_BINARY, false, true);
	return (c);
}

/* Accept a client on the front door. */
void
client_accept_frontdoor_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct timeval tv = { cfg.frontdoor_timeout, 0 };
	struct client *c;

	if ((c = client_new(fd, sa, salen, arg == TLS_LISTENER)) == NULL)
		return;
	c->frontdoor = true;
	c->ro_door = arg == CLIENT_DOOR_RO;
	c->timer = evtimer_new(ev_base, client_timer, c);
	evtimer_add(c->timer, &tv);
	log_debug("client %s: front door%s", c->addr, c->tls_wait ?
	    " (TLS)" : "");
	if (!c->tls_wait)
		client_start(c);
}

/*
 * Who is at the other end of a Unix socket: uid from SO_PEERCRED, user and
 * group names from the system databases. A name that does not fit is
 * refused, never cut (it could then equal another name in a rule).
 */
static int
client_unix_identity(struct client *c, evutil_socket_t fd)
{
	struct ucred uc;
	socklen_t len = sizeof uc;
	struct passwd pw, *pwp;
	struct group gr, *grp;
	gid_t gids[64];
	char buf[4096];
	int i, ngids = (int)nitems(gids);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1)
		return (-1);
	c->ident.kind = IDENT_UNIX;
	c->ident.uid = uc.uid;
	c->ident.loopback = true;
	snprintf(c->ident.source, sizeof c->ident.source, "unix:pid=%ld",
	    (long)uc.pid);
	snprintf(c->addr, sizeof c->addr, "unix:uid=%u", (u_int)uc.uid);
	if (getpwuid_r(uc.uid, &pw, buf, sizeof buf, &pwp) != 0 ||
	    pwp == NULL) {
		snprintf(c->ident.name, sizeof c->ident.name, "#%u",
		    (u_int)uc.uid);
		return (0);
	}
	if (strlcpy(c->ident.name, pw.pw_name, sizeof c->ident.name) >=
	    sizeof c->ident.name)
		return (-1);
	if (getgrouplist(pw.pw_name, pw.pw_gid, gids, &ngids) == -1)
		ngids = (int)nitems(gids);
	for (i = 0; i < ngids && c->ident.ngroups < IDENT_GROUPS_MAX; i++) {
		char gbuf[4096];

		if (getgrgid_r(gids[i], &gr, gbuf, sizeof gbuf, &grp) != 0 ||
		    grp == NULL)
			continue;
		if (strlcpy(c->ident.groups[c->ident.ngroups], gr.gr_name,
		    IDENT_NAME_MAX) < IDENT_NAME_MAX)
			c->ident.ngroups++;
	}
	return (0);
}

/* Accept a client on the Unix-socket front door. */
void
client_accept_unix_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct timeval tv = { cfg.frontdoor_timeout, 0 };
	struct client *c;

	if ((c = client_new(fd, sa, salen, false)) == NULL)
		return;
	if (client_unix_identity(c, fd) == -1) {
		log_warnx("client %s: cannot identify the peer", c->addr);
		client_close(c, "unidentified unix peer");
		return;
	}
	c->frontdoor = true;
	c->timer = evtimer_new(ev_base, client_timer, c);
	evtimer_add(c->timer, &tv);
	log_debug("client %s (%s): unix front door", c->addr, c->ident.name);
	client_puts(c, CLIENT_PROMPT);
}

/* Accept a client on a port's own listener. */
void
client_accept_port_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct timeval tv = { cfg.frontdoor_timeout, 0 };
	struct port *p = arg;
	struct client *c;

	if ((c = client_new(fd, sa, salen, cfg.port_tls != 0)) == NULL)
		return;
	if (!c->tls_wait) {
		client_attach(c, p);
		return;
	}
	/* The handshake (within the front-door deadline), then attach. */
	c->start_port = xstrdup(p->id);
	c->timer = evtimer_new(ev_base, client_timer, c);
	evtimer_add(c->timer, &tv);
}

/* Close a client. The one teardown. */
void
client_close(struct client *c, const char *reason)
{
	if (c->port != NULL)
		port_detach(c->port, c);
	log_debug("client %s: closed: %s", c->addr, reason);
	if (c->counted_src)
		source_count(SOURCE_CLIENT, (struct sockaddr *)&c->sa, -1);
	if (c->timer != NULL)
		event_free(c->timer);
	free(c->start_port);
	TAILQ_REMOVE(&all_clients, c, all_entry);
	n_clients--;
	bufferevent_free(c->bev);
	telnet_free(&c->tn);
	free(c);
}

/* Close every client (shutdown). */
void
client_close_all(void)
{
	struct client *c;

	while ((c = TAILQ_FIRST(&all_clients)) != NULL)
		client_close(c, "shutting down");
}
