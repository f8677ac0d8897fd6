/*
 * share.c: one console, several clients (issue 5): who may type, who is
 * attached where, and kick.
 *
 * Every attached client is read-only or read-write. It is read-only when it
 * asked to be (front door "/ro NAME", vspc attach --ro, the in-session "ro"
 * command), when it came in through the read-only front door
 * (client-listen-ro; it cannot switch back), or when it has no write right
 * on the console. Input of a read-only client never reaches the VM: it is
 * dropped and counted (input_denied), and the client gets one notice per
 * burst of typing (SHARE_NOTICE_GAP_MS of silence ends a burst), never one
 * per keystroke.
 *
 * The sharing mode of a console is that of the first sharing-rules entry
 * whose consoles match it (matched like access rules, authz_sharing_mode),
 * else the sharing key:
 *   shared         every read-write client may type (the default);
 *   single-writer  at most one client holds the line (port->writer). The
 *                  first read-write client that types takes a free line;
 *                  the input of the others is dropped as for a read-only
 *                  client, with a notice naming the holder. "force" (needs
 *                  RIGHT_FORCE) takes the line; the previous holder is told
 *                  who took it and the force is audited. The line is free
 *                  again when its holder detaches, goes read-only, loses
 *                  its write right or the console's mode changes.
 * SIGHUP re-evaluates the mode of every port (share_reload); a port whose
 * mode changed has no writer until someone types.
 *
 * In-session control: vspc offers the private telnet option TELOPT_VSPC
 * (IAC WILL 201; vspcd answers DO once the client is attached) and then
 * sends IAC SB 201 <word> IAC SE, word one of ro, rw, force, who, replay.
 * The SB is ignored unless the option was agreed. Answers are in-band text
 * notices ("\r\n[vspcd: ...]\r\n") like every other daemon notice.
 *
 * Each client gets a stable id (a counter, from 1) when it first attaches.
 * share_clients_json lists clients for the API and the front door's /who;
 * share_kick tells a client who kicked it, detaches it at once and closes
 * it once the notice is out (at most SHARE_KICK_LINGER seconds later).
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "vspcd.h"

#define SHARE_NOTICE_GAP_MS	2000	/* silence that ends a typing burst */
#define SHARE_KICK_LINGER	2	/* s a kicked client gets to read */
#define SHARE_CMD_MAX		16	/* bytes of one control command */
#define SHARE_WHO_MAX		(IDENT_SUBJECT_MAX + 96)

static u_int	share_next_id;

/* Milliseconds on the monotonic clock. */
static int64_t
share_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Copy s into dst (cap bytes), printable ASCII only ('?' for the rest). */
static void
share_printable(char *dst, size_t cap, const char *s)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; s[i] != '\0' && i + 1 < cap; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	dst[i] = '\0';
}

/* "alice (unix:pid=42)", "token:ci (127.0.0.1:5555)": who, for notices. */
static const char *
share_ident_str(const struct identity *id, char *buf, size_t len)
{
	char name[sizeof id->name], src[sizeof id->source];
	const char *prefix = "";

	share_printable(name, sizeof name, id->name);
	share_printable(src, sizeof src, id->source);
	switch (id->kind) {
	case IDENT_ANONYMOUS:
		strlcpy(name, "anonymous", sizeof name);
		break;
	case IDENT_UNIX:
		break;
	case IDENT_TOKEN:
		prefix = "token:";
		break;
	case IDENT_CERT:
		prefix = "cert:";
		break;
	}
	snprintf(buf, len, "%s%s (%s)", prefix, name, src);
	return (buf);
}

/* "#3 alice (unix:pid=42)": a client, for notices and audit details. */
static const char *
share_client_str(const struct client *c, char *buf, size_t len)
{
	char who[SHARE_WHO_MAX];

	snprintf(buf, len, "#%u %s", c->id, share_ident_str(&c->ident, who,
	    sizeof who));
	return (buf);
}

/* ro, rw or writer: what the client's input does now. */
const char *
share_mode_str(const struct client *c)
{
	if (c->readonly || (c->rights & RIGHT_WRITE) == 0)
		return ("ro");
	if (c->port != NULL && c->port->sharing == SHARING_SINGLE_WRITER &&
	    c->port->writer == c)
		return ("writer");
	return ("rw");
}

/*
 * Re-evaluate the sharing mode of p. When it changes nobody holds the line
 * (single-writer: the next to type takes it) and the clients are told.
 */
void
share_port_update(struct port *p)
{
	enum sharing_mode m;
	struct client *c;

	m = authz_sharing_mode(p->name, p->id, p->uuid);
	if (m == p->sharing)
		return;
	log_info("port %s: sharing %s -> %s", p->id,
	    sharing_mode_names[p->sharing], sharing_mode_names[m]);
	p->sharing = m;
	p->writer = NULL;
	TAILQ_FOREACH(c, &p->clients, entry) {
		c->deny_notice_ms = 0;
		client_notice(c, "sharing is now %s", sharing_mode_names[m]);
	}
}

/*
 * A client is about to join p's list: its id, its read-only state and the
 * port's current mode. It may now agree to the control option.
 */
void
share_attach(struct port *p, struct client *c)
{
	if (c->id == 0) {
		if (++share_next_id == 0)
			share_next_id = 1;
		c->id = share_next_id;
	}
	if (c->ro_door)
		c->readonly = true;
	c->attached_at = time(NULL);
	c->deny_notice_ms = 0;
	share_port_update(p);
	telnet_set_accept(&c->tn, TELOPT_VSPC, false, true);
}

/* A client leaves p: a line it held is free. */
void
share_detach(struct port *p, struct client *c)
{
	if (p->writer == c) {
		p->writer = NULL;
		log_info("port %s: client %u (%s) released the line", p->id,
		    c->id, c->addr);
	}
}

/*
 * May c's input go to the VM? If not, it is counted and the client gets a
 * notice, once per burst. A read-write client that types on a single-writer
 * console whose line is free takes the line.
 */
bool
share_may_type(struct client *c, size_t len)
{
	struct port *p = c->port;
	char why[SHARE_WHO_MAX + 96], holder[SHARE_WHO_MAX + 16];
	int64_t now;

	if (p == NULL)
		return (false);
	why[0] = '\0';
	if (c->ro_door)
		strlcpy(why, "read-only front door", sizeof why);
	else if ((c->rights & RIGHT_WRITE) == 0)
		strlcpy(why, "no write right on this console", sizeof why);
	else if (c->readonly)
		strlcpy(why, "you are read-only", sizeof why);
	else if (p->sharing == SHARING_SINGLE_WRITER) {
		if (p->writer == NULL) {
			p->writer = c;
			log_info("port %s: client %u (%s) took the free line",
			    p->id, c->id, c->addr);
		} else if (p->writer != c)
			snprintf(why, sizeof why, "%s holds the line%s",
			    share_client_str(p->writer, holder, sizeof holder),
			    (c->rights & RIGHT_FORCE) ? " (force takes it)" :
			    "");
	}
	if (why[0] == '\0')
		return (true);
	c->input_denied += len;
	now = share_now_ms();
	if (c->deny_notice_ms == 0 ||
	    now - c->deny_notice_ms >= SHARE_NOTICE_GAP_MS)
		client_notice(c, "input not sent: %s", why);
	c->deny_notice_ms = now;
	return (false);
}

/* Refuse a control command: notice and audit. */
static void
share_refuse(struct client *c, const char *what, const char *why)
{
	char detail[128];

	client_notice(c, "%s refused: %s", what, why);
	snprintf(detail, sizeof detail, "%s: %s", what, why);
	audit_event("denied", &c->ident, c->port->id, detail);
}

/* Go read-only or read-write (in-session ro / rw). */
static void
share_set_ro(struct client *c, bool ro)
{
	struct port *p = c->port;

	if (!ro && c->ro_door) {
		share_refuse(c, "read-write", "read-only front door");
		return;
	}
	if (!ro && (c->rights & RIGHT_WRITE) == 0) {
		share_refuse(c, "read-write", "no write right");
		return;
	}
	if (c->readonly == ro) {
		client_notice(c, "already %s", ro ? "read-only" :
		    "read-write");
		return;
	}
	c->readonly = ro;
	c->deny_notice_ms = 0;
	if (ro)
		share_detach(p, c);
	audit_event("mode", &c->ident, p->id, ro ? "ro" : "rw");
	log_info("port %s: client %u (%s) is now %s", p->id, c->id, c->addr,
	    ro ? "read-only" : "read-write");
	client_notice(c, "%s", ro ? "read-only: your input is not sent" :
	    "read-write");
}

/* In-session "ro". */
static void
share_cmd_ro(struct client *c)
{
	share_set_ro(c, true);
}

/* In-session "rw". */
static void
share_cmd_rw(struct client *c)
{
	share_set_ro(c, false);
}

/*
 * In-session "force": take the line of a single-writer console. The
 * previous holder is told who took it; the force is audited either way.
 */
static void
share_cmd_force(struct client *c)
{
	struct port *p = c->port;
	struct client *prev = p->writer;
	char me[SHARE_WHO_MAX + 16], them[SHARE_WHO_MAX + 16];
	char detail[2 * SHARE_WHO_MAX + 64];

	if ((c->rights & RIGHT_FORCE) == 0) {
		share_refuse(c, "force", "no force right");
		return;
	}
	if (c->ro_door) {
		share_refuse(c, "force", "read-only front door");
		return;
	}
	if (p->sharing != SHARING_SINGLE_WRITER) {
		client_notice(c, "nothing to force: this console is shared");
		return;
	}
	if (prev == c && !c->readonly) {
		client_notice(c, "you already hold the line");
		return;
	}
	if (c->readonly) {
		c->readonly = false;
		audit_event("mode", &c->ident, p->id, "rw");
	}
	p->writer = c;
	c->deny_notice_ms = 0;
	share_client_str(c, me, sizeof me);
	if (prev != NULL) {
		share_client_str(prev, them, sizeof them);
		snprintf(detail, sizeof detail, "took the line from %s", them);
		prev->deny_notice_ms = 0;
		client_notice(prev, "%s took the line; your input is not sent",
		    me);
		client_notice(c, "you hold the line (taken from %s)", them);
	} else {
		strlcpy(detail, "took the free line", sizeof detail);
		client_notice(c, "you hold the line");
	}
	audit_event("force", &c->ident, p->id, detail);
	log_info("port %s: client %u (%s) forced: %s", p->id, c->id, c->addr,
	    detail);
}

/* In-session "who": the clients of this console, one notice each. */
static void
share_cmd_who(struct client *c)
{
	struct port *p = c->port;
	struct client *o;
	char who[SHARE_WHO_MAX + 16];

	client_notice(c, "%u client%s on %s, sharing %s", p->nclients,
	    p->nclients == 1 ? "" : "s", p->id, sharing_mode_names[p->sharing]);
	TAILQ_FOREACH(o, &p->clients, entry)
		client_notice(c, "%s %s%s", share_client_str(o, who,
		    sizeof who), share_mode_str(o), o == c ? " (you)" : "");
}

/* In-session "replay": the replay ring again, then live output. */
static void
share_cmd_replay(struct client *c)
{
	client_notice(c, "replay");
	port_replay(c->port, c);
}

static const struct share_cmd {
	const char	*name;
	void		(*fn)(struct client *);
} share_cmds[] = {
	{ .name = "ro", .fn = share_cmd_ro },
	{ .name = "rw", .fn = share_cmd_rw },
	{ .name = "force", .fn = share_cmd_force },
	{ .name = "who", .fn = share_cmd_who },
	{ .name = "replay", .fn = share_cmd_replay },
};

/*
 * One subnegotiation of the control option from an attached client. Only
 * honoured once the option is agreed; a word of at most SHARE_CMD_MAX
 * lowercase letters from share_cmds[].
 */
void
share_control(struct client *c, const uint8_t *data, size_t len)
{
	char cmd[SHARE_CMD_MAX + 1];
	size_t i;

	if (c->port == NULL || c->closing ||
	    !telnet_enabled(&c->tn, TELOPT_VSPC, false)) {
		log_debug("client %s: control SB ignored (not agreed)",
		    c->addr);
		return;
	}
	if (len == 0 || len > SHARE_CMD_MAX)
		goto bad;
	for (i = 0; i < len; i++) {
		if (data[i] < 'a' || data[i] > 'z')
			goto bad;
		cmd[i] = (char)data[i];
	}
	cmd[len] = '\0';
	for (i = 0; i < nitems(share_cmds); i++) {
		if (strcmp(cmd, share_cmds[i].name) == 0) {
			share_cmds[i].fn(c);
			return;
		}
	}
bad:
	client_notice(c, "unknown control command");
}

/*
 * SIGHUP: the new rules decide every port's mode; a writer that lost its
 * write right (or asked for read-only meanwhile) no longer holds the line.
 */
void
share_reload(void)
{
	struct port *p;

	for (p = port_first(); p != NULL; p = port_next(p)) {
		share_port_update(p);
		if (p->writer != NULL &&
		    strcmp(share_mode_str(p->writer), "writer") != 0)
			share_detach(p, p->writer);
	}
}

/* The attached client with this id, or NULL. */
struct client *
share_find(u_int id)
{
	struct client *c;

	if (id == 0)
		return (NULL);
	TAILQ_FOREACH(c, &all_clients, all_entry) {
		if (c->port != NULL && c->id == id && !c->closing)
			return (c);
	}
	return (NULL);
}

/* A JSON string of text that may not be valid UTF-8. */
static json_t *
share_json_str(const char *s)
{
	json_t *j;

	if ((j = json_string(s)) == NULL)
		j = json_string(log_escape(s, strlen(s)));
	return (j);
}

/* One client as a JSON object. */
static json_t *
share_client_json(const struct client *c)
{
	const struct port *p = c->port;
	char r[64];
	json_t *o;

	o = json_object();
	json_object_set_new(o, "id", json_integer(c->id));
	json_object_set_new(o, "console", share_json_str(p->id));
	json_object_set_new(o, "vm_name", share_json_str(p->name));
	json_object_set_new(o, "kind",
	    json_string(audit_kind_name(c->ident.kind)));
	json_object_set_new(o, "name", c->ident.kind == IDENT_ANONYMOUS ?
	    json_null() : share_json_str(c->ident.name));
	if (c->ident.kind == IDENT_UNIX)
		json_object_set_new(o, "uid", json_integer(c->ident.uid));
	json_object_set_new(o, "source", share_json_str(c->ident.source));
	json_object_set_new(o, "mode", json_string(share_mode_str(c)));
	json_object_set_new(o, "sharing",
	    json_string(sharing_mode_names[p->sharing]));
	json_object_set_new(o, "rights",
	    json_string(authz_rights_str(c->rights, r, sizeof r)));
	json_object_set_new(o, "attached_at", json_integer(c->attached_at));
	json_object_set_new(o, "bytes_in",
	    json_integer((json_int_t)c->bytes_in));
	json_object_set_new(o, "bytes_out",
	    json_integer((json_int_t)c->bytes_out));
	json_object_set_new(o, "input_denied",
	    json_integer((json_int_t)c->input_denied));
	return (o);
}

/* Order clients by id. */
static int
share_id_cmp(const void *a, const void *b)
{
	const struct client *const *ca = a, *const *cb = b;

	return ((*ca)->id < (*cb)->id ? -1 : (*ca)->id > (*cb)->id);
}

/*
 * {"clients":[...]}: the clients attached to consoles the identity may
 * read (only those of port only when it is not NULL), by id.
 */
struct json_t *
share_clients_json(const struct identity *id, struct port *only)
{
	struct client *c, **v;
	struct port *p;
	json_t *a;
	size_t n = 0, i;

	a = json_array();
	v = xcalloc(n_clients + 1, sizeof *v);
	TAILQ_FOREACH(c, &all_clients, all_entry) {
		if ((p = c->port) == NULL || c->closing ||
		    (only != NULL && p != only) || n >= n_clients)
			continue;
		if ((authz_rights(id, p->name, p->id, p->uuid) &
		    RIGHT_READ) != 0)
			v[n++] = c;
	}
	qsort(v, n, sizeof *v, share_id_cmp);
	for (i = 0; i < n; i++)
		json_array_append_new(a, share_client_json(v[i]));
	free(v);
	return (json_pack("{s:o}", "clients", a));
}

/* The kicked client had its time to read the notice. */
static void
share_kick_timer(evutil_socket_t fd, short events, void *arg)
{
	client_close(arg, "kicked");
}

/*
 * Kick c on behalf of by, who needs RIGHT_ADMIN on c's console. Returns 0
 * (kicked), -1 (by may not even read that console: answer as if there were
 * no such client) or -2 (no admin right; msg says so). Refusals are
 * audited as denied; a kick as kick, naming both.
 */
int
share_kick(struct client *c, const struct identity *by, char *msg,
    size_t msglen)
{
	struct port *p = c->port;
	struct timeval tv = { SHARE_KICK_LINGER, 0 };
	char victim[SHARE_WHO_MAX + 16], kicker[SHARE_WHO_MAX];
	char detail[SHARE_WHO_MAX + 64];
	int rights;

	rights = authz_rights(by, p->name, p->id, p->uuid);
	share_client_str(c, victim, sizeof victim);
	if ((rights & RIGHT_ADMIN) == 0) {
		snprintf(detail, sizeof detail, "kick %s: no admin right",
		    victim);
		audit_event("denied", by, p->id, detail);
		snprintf(msg, msglen, "kick refused: no admin right on %s",
		    p->id);
		return ((rights & RIGHT_READ) == 0 ? -1 : -2);
	}
	share_ident_str(by, kicker, sizeof kicker);
	snprintf(detail, sizeof detail, "kicked %s", victim);
	audit_event("kick", by, p->id, detail);
	log_info("port %s: client %u (%s) kicked by %s", p->id, c->id,
	    c->addr, kicker);
	client_notice(c, "kicked by %s", kicker);
	snprintf(msg, msglen, "kicked client %u", c->id);
	port_detach(p, c);
	bufferevent_disable(c->bev, EV_READ);
	c->closing = true;
	c->close_reason = "kicked";
	if (c->timer != NULL)
		event_free(c->timer);
	c->timer = evtimer_new(ev_base, share_kick_timer, c);
	evtimer_add(c->timer, &tv);
	return (0);
}
