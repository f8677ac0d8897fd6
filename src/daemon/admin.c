/*
 * Admin API: HTTP/JSON through libevent's evhttp. Handlers build a reply
 * object from the port table; domain modules never format admin output.
 *
 *   GET /healthz        liveness and counts
 *   GET /api/v1/ports   one object per port
 *   GET /api/v1/clients, GET /api/v1/ports/{id}/clients   who is attached
 *   DELETE /api/v1/clients/{id}                          kick (admin right)
 */
#include <sys/types.h>

#include <netinet/in.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "vspcd.h"

static struct evhttp *admin_http;

/* Send a JSON reply and free it. */
static void
admin_reply(struct evhttp_request *req, int code, const char *reason,
    json_t *obj)
{
	struct evbuffer *b;
	char *s;

	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	b = evbuffer_new();
	if (s != NULL) {
		evbuffer_add(b, s, strlen(s));
		evbuffer_add(b, "\n", 1);
		free(s);
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

/* Reply with an error object. */
static void
admin_error(struct evhttp_request *req, int code, const char *reason,
    const char *msg)
{
	admin_reply(req, code, reason, json_pack("{s:s}", "error", msg));
}

/* JSON string from text that may not be valid UTF-8. */
static json_t *
admin_string(const char *s)
{
	json_t *j;

	if ((j = json_string(s)) == NULL)
		j = json_string(log_escape(s, strlen(s)));
	return (j);
}

/* One port as a JSON object. */
static json_t *
admin_port_json(struct port *p)
{
	json_t *o;

	o = json_object();
	json_object_set_new(o, "id", admin_string(p->id));
	json_object_set_new(o, "vm_uuid", json_string(p->uuid));
	json_object_set_new(o, "vm_name", admin_string(p->name));
	json_object_set_new(o, "service_uri", admin_string(p->uri));
	json_object_set_new(o, "label", admin_string(p->label));
	json_object_set_new(o, "direction",
	    json_string(p->direction == 'C' ? "client" : "server"));
	json_object_set_new(o, "connected", json_boolean(p->vm != NULL));
	json_object_set_new(o, "client_port", p->client_port != 0 ?
	    json_integer(p->client_port) : json_null());
	json_object_set_new(o, "clients", json_integer(p->nclients));
	json_object_set_new(o, "bytes_from_vm",
	    json_integer((json_int_t)p->bytes_from_vm));
	json_object_set_new(o, "wire_bytes",
	    json_integer((json_int_t)p->wire_bytes));
	json_object_set_new(o, "bytes_to_vm",
	    json_integer((json_int_t)p->bytes_to_vm));
	json_object_set_new(o, "client_bytes_dropped",
	    json_integer((json_int_t)p->client_bytes_dropped));
	json_object_set_new(o, "input_dropped",
	    json_integer((json_int_t)p->input_dropped));
	json_object_set_new(o, "vm_address", p->vm != NULL ?
	    json_string(p->vm->addr) : json_null());
	json_object_set_new(o, "last_seen", json_integer(p->last_seen));
	json_object_set_new(o, "vmotion", json_pack(
	    "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
	    "state", vmotion_state_name(p),
	    "begun", (json_int_t)p->vmotion_begun,
	    "completed", (json_int_t)p->vmotion_completed,
	    "aborted", (json_int_t)p->vmotion_aborted,
	    "notnow", (json_int_t)p->vmotion_notnow,
	    "abandoned", (json_int_t)p->vmotion_abandoned,
	    "bad_peers", (json_int_t)p->vmotion_bad_peers,
	    "held_bytes", (json_int_t)evbuffer_get_length(p->hold)));
	return (o);
}

/*
 * Who is calling: a bearer token (checked against the hashed tokens of the
 * config) or anonymous, with the peer's address. Replies 401 and returns
 * -1 for a token that matches nothing.
 */
static int
admin_identity(struct evhttp_request *req, struct identity *id)
{
	struct evhttp_connection *conn;
	const char *auth;
	char *addr = NULL;
	ev_uint16_t port = 0;

	memset(id, 0, sizeof *id);
	id->kind = IDENT_ANONYMOUS;
	if ((conn = evhttp_request_get_connection(req)) != NULL)
		evhttp_connection_get_peer(conn, &addr, &port);
	if (addr != NULL) {
		snprintf(id->source, sizeof id->source, "%s:%u", addr,
		    (u_int)port);
		id->loopback = strncmp(addr, "127.", 4) == 0 ||
		    strcmp(addr, "::1") == 0 ||
		    strncmp(addr, "::ffff:127.", 11) == 0;
	}
	/* A verified client certificate names the caller... */
	if (conn != NULL && tls_peer_identity(
	    evhttp_connection_get_bufferevent(conn), id) == -1) {
		audit_event("denied", id, NULL, "api: certificate subject "
		    "too long");
		admin_error(req, 403, "Forbidden", "certificate subject too "
		    "long");
		return (-1);
	}
	/* ...unless a bearer token is presented too: then the token. */
	auth = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (auth == NULL)
		return (0);
	id->kind = IDENT_ANONYMOUS;
	id->name[0] = '\0';
	if (strncasecmp(auth, "Bearer ", 7) != 0 ||
	    authz_token_lookup(auth + 7, id->name, sizeof id->name) == -1) {
		audit_event("denied", id, NULL, "api: bad bearer token");
		admin_error(req, 401, "Unauthorized", "bad bearer token");
		return (-1);
	}
	id->kind = IDENT_TOKEN;
	audit_event("token-use", id, NULL, evhttp_request_get_uri(req));
	return (0);
}

/* True if the caller may read the console bytes of p. */
static bool
admin_may_read(const struct identity *id, struct port *p)
{
	return ((authz_rights(id, p->name, p->id, p->uuid) & RIGHT_READ) !=
	    0);
}

/*
 * True if the caller may see p's metadata (no console bytes): callers on
 * loopback, like the admin tools on the host, and anyone who may read it.
 */
static bool
admin_may_see(const struct identity *id, struct port *p)
{
	return (id->loopback || admin_may_read(id, p));
}

/* GET /api/v1/ports: the ports the caller may read. */
static void
admin_ports_cb(struct evhttp_request *req, void *arg)
{
	struct identity id;
	struct port *p;
	json_t *a;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		admin_error(req, 405, "Method Not Allowed", "use GET");
		return;
	}
	if (admin_identity(req, &id) == -1)
		return;
	a = json_array();
	for (p = port_first(); p != NULL; p = port_next(p)) {
		if (admin_may_see(&id, p))
			json_array_append_new(a, admin_port_json(p));
	}
	admin_reply(req, 200, "OK", json_pack("{s:o}", "ports", a));
}

/* Reply 405 and return false unless the request is a GET (or HEAD). */
static bool
admin_get_only(struct evhttp_request *req)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);

	if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
		return (true);
	admin_error(req, 405, "Method Not Allowed", "use GET");
	return (false);
}

/* GET /api/v1/clients: who is attached to the consoles the caller reads. */
static void
admin_clients_cb(struct evhttp_request *req, void *arg)
{
	struct identity id;

	if (!admin_get_only(req) || admin_identity(req, &id) == -1)
		return;
	admin_reply(req, 200, "OK", share_clients_json(&id, NULL));
}

/*
 * /api/v1/clients/{id}: GET one client, DELETE kicks it (RIGHT_ADMIN on its
 * console; audited). A client on a console the caller may not read does
 * not exist for it.
 */
static void
admin_client_cb(struct evhttp_request *req, const char *key)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct identity id;
	struct client *c;
	const char *errstr;
	json_t *all, *v;
	char msg[256];
	u_int cid;
	size_t i;

	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD &&
	    m != EVHTTP_REQ_DELETE) {
		admin_error(req, 405, "Method Not Allowed",
		    "use GET or DELETE");
		return;
	}
	if (admin_identity(req, &id) == -1)
		return;
	cid = (u_int)strtonum(key, 1, UINT_MAX, &errstr);
	if (errstr != NULL || (c = share_find(cid)) == NULL) {
		admin_error(req, 404, "Not Found", "no such client");
		return;
	}
	if (m == EVHTTP_REQ_DELETE) {
		switch (share_kick(c, &id, msg, sizeof msg)) {
		case 0:
			admin_reply(req, 200, "OK", json_pack("{s:i}",
			    "kicked", (int)cid));
			break;
		case -1:
			admin_error(req, 404, "Not Found", "no such client");
			break;
		default:
			admin_error(req, 403, "Forbidden", msg);
			break;
		}
		return;
	}
	all = share_clients_json(&id, c->port);
	json_array_foreach(json_object_get(all, "clients"), i, v) {
		if (json_integer_value(json_object_get(v, "id")) == cid) {
			admin_reply(req, 200, "OK", json_incref(v));
			json_decref(all);
			return;
		}
	}
	json_decref(all);
	admin_error(req, 404, "Not Found", "no such client");
}

/* GET /healthz */
static void
admin_healthz_cb(struct evhttp_request *req, void *arg)
{
	if (!admin_get_only(req))
		return;
	admin_reply(req, 200, "OK", json_pack("{s:s,s:i,s:i,s:i,s:i,s:I}",
	    "status", "ok", "ports", (int)port_count(),
	    "vm_connections", (int)n_vm_sessions, "clients", (int)n_clients,
	    "vmotions_open", (int)vmotion_open,
	    "vmotion_bad_peers_unmatched",
	    (json_int_t)vmotion_bad_peers_unknown));
}

/* GET /api/v1/limits: every abuse limit and how close we are to it. */
static void
admin_limits_cb(struct evhttp_request *req, void *arg)
{
	json_t *allow, *o;
	int i;

	if (!admin_get_only(req))
		return;
	allow = json_array();
	for (i = 0; i < cfg.n_vm_allow; i++)
		json_array_append_new(allow, json_string(cfg.vm_allow[i]));
	o = json_object();
	json_object_set_new(o, "vm_allow", allow);
	json_object_set_new(o, "max_vm_connections",
	    json_integer(cfg.max_vm_connections));
	json_object_set_new(o, "vm_connections", json_integer(n_vm_sessions));
	json_object_set_new(o, "max_vm_per_source",
	    json_integer(cfg.max_vm_per_source));
	json_object_set_new(o, "max_unidentified",
	    json_integer(cfg.max_unidentified));
	json_object_set_new(o, "max_unidentified_per_source",
	    json_integer(cfg.max_unidentified_per_source));
	json_object_set_new(o, "unidentified", json_integer(n_unidentified));
	json_object_set_new(o, "max_clients", json_integer(cfg.max_clients));
	json_object_set_new(o, "clients", json_integer(n_clients));
	json_object_set_new(o, "max_clients_per_source",
	    json_integer(cfg.max_clients_per_source));
	json_object_set_new(o, "ident_timeout",
	    json_integer(cfg.ident_timeout));
	json_object_set_new(o, "frontdoor_timeout",
	    json_integer(cfg.frontdoor_timeout));
	json_object_set_new(o, "takeover_wait",
	    json_integer(cfg.takeover_wait));
	json_object_set_new(o, "client_queue",
	    json_integer((json_int_t)cfg.client_queue));
	json_object_set_new(o, "vm_queue",
	    json_integer((json_int_t)cfg.vm_queue));
	json_object_set_new(o, "prebind_max",
	    json_integer((json_int_t)cfg.prebind_max));
	json_object_set_new(o, "vmotion_hold_max",
	    json_integer((json_int_t)cfg.vmotion_hold_max));
	json_object_set_new(o, "sb_max", json_integer((json_int_t)cfg.sb_max));
	json_object_set_new(o, "vm_refused_allow",
	    json_integer((json_int_t)vm_refused_allow));
	json_object_set_new(o, "vm_refused_limit",
	    json_integer((json_int_t)vm_refused_limit));
	json_object_set_new(o, "client_refused_limit",
	    json_integer((json_int_t)client_refused_limit));
	json_object_set_new(o, "takeovers_refused",
	    json_integer((json_int_t)vm_takeovers_refused));
	admin_reply(req, 200, "OK", o);
}

/* Reply with raw log bytes. */
static void
admin_log_reply(struct evhttp_request *req, struct port *p, size_t tail)
{
	struct evbuffer *b;

	b = evbuffer_new();
	if (consolelog_tail(p->id, tail, b) == -1 && p->replay != NULL) {
		/* No log file (logging off): the replay ring is what we have. */
		size_t have = evbuffer_get_length(p->replay);
		struct evbuffer_ptr pos;

		evbuffer_ptr_set(p->replay, &pos, have > tail ? have - tail : 0,
		    EVBUFFER_PTR_SET);
		while (pos.pos < (ssize_t)have) {
			struct evbuffer_iovec v;

			if (evbuffer_peek(p->replay, -1, &pos, &v, 1) < 1)
				break;
			evbuffer_add(b, v.iov_base, v.iov_len);
			evbuffer_ptr_set(p->replay, &pos, v.iov_len,
			    EVBUFFER_PTR_ADD);
		}
	}
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/octet-stream");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "X-Vspc-Port", p->id);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/*
 * Find one port by id, UUID or name among those the caller may see (or
 * read, for console bytes);
 * replies with an error if not unique (refused ones look unknown).
 */
static struct port *
admin_find_port(struct evhttp_request *req, const struct identity *id,
    const char *key, bool bytes)
{
	struct port *m[64];
	json_t *ids;
	int n, i, k;

	n = port_lookup(key, m, nitems(m));
	if (n > (int)nitems(m))
		n = nitems(m);
	for (i = k = 0; i < n; i++) {
		if (bytes ? admin_may_read(id, m[i]) : admin_may_see(id, m[i]))
			m[k++] = m[i];
	}
	n = k;
	if (n == 1)
		return (m[0]);
	if (n == 0) {
		admin_error(req, 404, "Not Found", "no such console");
		return (NULL);
	}
	ids = json_array();
	for (i = 0; i < n && i < (int)nitems(m); i++)
		json_array_append_new(ids, admin_string(m[i]->id));
	admin_reply(req, 409, "Conflict", json_pack("{s:s,s:o}", "error",
	    "ambiguous console name", "matches", ids));
	return (NULL);
}

/* Parse ?tail_bytes=N (default 64 KiB, at most 16 MiB). */
static size_t
admin_tail_bytes(const struct evhttp_uri *uri)
{
	struct evkeyvalq q;
	const char *v, *errstr;
	size_t n = 65536;

	TAILQ_INIT(&q);
	if (evhttp_uri_get_query(uri) != NULL &&
	    evhttp_parse_query_str(evhttp_uri_get_query(uri), &q) == 0 &&
	    (v = evhttp_find_header(&q, "tail_bytes")) != NULL) {
		n = (size_t)strtonum(v, 0, 16 * 1024 * 1024, &errstr);
		if (errstr != NULL)
			n = 65536;
	}
	evhttp_clear_headers(&q);
	return (n);
}

/*
 * Routes with a parameter in the path:
 *   GET /api/v1/ports/{id|uuid|name}          one port
 *   GET /api/v1/ports/{id|uuid|name}/log      its console log (tail)
 *   GET /api/v1/ports/{id|uuid|name}/clients  who is attached to it
 *   GET /console_log/{uuid}                   OpenStack Nova serial_log_uri
 *   GET, DELETE /api/v1/clients/{id}          one client; kick
 */
static void
admin_gen_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(uri);
	char *dec = NULL, *key, *slash, *raw;
	struct identity id;
	struct port *p;
	bool log = false, clients = false;

	if (path == NULL)
		goto notfound;
	if (strncmp(path, "/api/v1/clients/", 16) == 0) {
		admin_client_cb(req, path + 16);
		return;
	}
	if (!admin_get_only(req))
		return;
	if (strncmp(path, "/api/v1/ports/", 14) == 0) {
		/* Split on the raw path, so an encoded '/' stays in the name. */
		raw = xstrdup(path + 14);
		if ((slash = strchr(raw, '/')) != NULL) {
			if (strcmp(slash, "/log") != 0 &&
			    strcmp(slash, "/clients") != 0) {
				free(raw);
				goto notfound;
			}
			log = strcmp(slash, "/log") == 0;
			clients = !log;
			*slash = '\0';
		}
		dec = evhttp_uridecode(raw, 0, NULL);
		free(raw);
		if (dec == NULL)
			goto notfound;
		key = dec;
	} else if (strncmp(path, "/console_log/", 13) == 0) {
		dec = evhttp_uridecode(path + 13, 0, NULL);
		if (dec == NULL)
			goto notfound;
		key = dec;
		log = true;
	} else
		goto notfound;
	if (key[0] == '\0')
		goto notfound;
	if (admin_identity(req, &id) == -1) {
		free(dec);
		return;
	}
	if ((p = admin_find_port(req, &id, key, log || clients)) != NULL) {
		if (clients)
			admin_reply(req, 200, "OK", share_clients_json(&id, p));
		else if (log)
			admin_log_reply(req, p, admin_tail_bytes(uri));
		else
			admin_reply(req, 200, "OK", admin_port_json(p));
	}
	free(dec);
	return;
notfound:
	free(dec);
	admin_error(req, 404, "Not Found", "no such endpoint");
}

/* Cancel a pending EMFILE resume of one of http's listeners. */
static void
admin_forget_cb(struct evhttp_bound_socket *hs, void *arg)
{
	listener_forget(evhttp_bound_socket_get_listener(hs));
}

/* Free an admin server: its listeners may be paused (listener.c). */
static void
admin_free(struct evhttp *http)
{
	evhttp_foreach_bound_socket(http, admin_forget_cb, NULL);
	evhttp_free(http);
}

/*
 * Open an admin listener on spec without touching the running one; reports
 * the bound port. Returns the new server or NULL.
 */
struct evhttp *
admin_open(const char *spec, bool tls, int *bound_port)
{
	struct evhttp_bound_socket *hs;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	struct evhttp *http;
	char host[256];
	int port;

	if (listener_split(spec, host, sizeof host, &port) == -1) {
		log_warnx("admin listener: bad address '%s'", spec);
		return (NULL);
	}
	http = evhttp_new(ev_base);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 65536);
	evhttp_set_timeout(http, 30);
	evhttp_set_cb(http, "/api/v1/ports", admin_ports_cb, NULL);
	evhttp_set_cb(http, "/healthz", admin_healthz_cb, NULL);
	evhttp_set_cb(http, "/api/v1/limits", admin_limits_cb, NULL);
	evhttp_set_cb(http, "/api/v1/clients", admin_clients_cb, NULL);
	evhttp_set_gencb(http, admin_gen_cb, NULL);
	if (tls)
		evhttp_set_bevcb(http, tls_http_bevcb, NULL);
	hs = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
	if (hs == NULL) {
		log_warn("admin listener: cannot listen on %s", spec);
		evhttp_free(http);
		return (NULL);
	}
	/* evhttp has no accept error handler: it would spin on EMFILE. */
	listener_set_backoff(evhttp_bound_socket_get_listener(hs));
	*bound_port = port;
	if (getsockname(evhttp_bound_socket_get_fd(hs),
	    (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			*bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*bound_port = ntohs(
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	log_info("admin listener on %s (port %d%s)", spec, *bound_port,
	    tls ? ", HTTPS" : "");
	return (http);
}

/* Make http (possibly NULL) the admin server, closing the previous one. */
void
admin_swap(struct evhttp *http)
{
	if (admin_http != NULL && admin_http != http)
		admin_free(admin_http);
	admin_http = http;
}

/* Start the admin listener on spec; reports the bound port. */
int
admin_start(const char *spec, bool tls, int *bound_port)
{
	struct evhttp *http;

	if ((http = admin_open(spec, tls, bound_port)) == NULL)
		return (-1);
	admin_swap(http);
	return (0);
}



/* Stop the admin listener. */
void
admin_stop(void)
{
	if (admin_http != NULL)
		admin_free(admin_http);
	admin_http = NULL;
}
