/*
 * vspcd: shared declarations for the daemon. One section per .c file, as
 * in tmux.h and relayd.h.
 *
 * Object model:
 *  - struct port is one serial port of one VM, keyed by (normalised VC UUID,
 *    service URI). It owns the client list, the per-port client listener,
 *    the counters and the expiry timer. Connections come and go; the port
 *    stays until it has had no VM and no client for cfg.port_expiry.
 *  - struct vm_session is one TCP connection from an ESXi host. It is bound
 *    to a port once identified; before that its console data is held in a
 *    bounded buffer.
 *  - struct client is one viewer (telnet, front door). It attaches to a port,
 *    never to a VM connection.
 * Each object has exactly one teardown function (port_free, vm_close,
 * client_close); everything else calls those.
 */
#ifndef VSPCD_H
#define VSPCD_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/listener.h>

#include "compat.h"
#include "log.h"
#include "xmalloc.h"
#include "telnet.h"
#include "vmwext.h"
#include "cork.h"

#define VSPCD_MAX_VM_LISTEN	16
#define VSPCD_MAX_URIS		32
#define VSPCD_MAX_ALLOW		64
#define VSPCD_NAME_MAX		1024	/* VM names longer than this are cut */
#define VSPCD_URI_MAX		1024	/* service URIs longer are refused */
#define VSPCD_LABEL_MAX		33
#define VMOTION_SECRET_LEN	8

/*
 * Identities and rights (authz.c). The front end that accepts a client fills
 * a struct identity; every string is NUL-terminated and a name that does not
 * fit must be refused, never cut (a cut certificate subject could equal a
 * shorter one in a rule).
 */
#define IDENT_NAME_MAX		64	/* user and group names */
#define IDENT_SUBJECT_MAX	256	/* identity names: also cert subjects */
#define IDENT_GROUPS_MAX	16
#define VSPCD_MAX_TOKENS	256
#define AUTHZ_MAX_RULES		1024
#define AUTHZ_MAX_ITEMS		256	/* who or consoles items per rule */
#define AUTHZ_PATTERN_MAX	1024	/* bytes of one consoles pattern */

enum ident_kind { IDENT_ANONYMOUS, IDENT_UNIX, IDENT_TOKEN, IDENT_CERT };

struct identity {
	enum ident_kind	 kind;
	char		 name[IDENT_SUBJECT_MAX]; /* user, token, cert subject */
	uint32_t	 uid;			/* IDENT_UNIX */
	char		 groups[IDENT_GROUPS_MAX][IDENT_NAME_MAX]; /* UNIX */
	int		 ngroups;
	char		 source[64];		/* "127.0.0.1:5555", "unix" */
	bool		 loopback;	/* loopback listener or address */
};

#define RIGHT_READ	0x1
#define RIGHT_WRITE	0x2
#define RIGHT_FORCE	0x4
#define RIGHT_ADMIN	0x8
#define RIGHT_ALL	(RIGHT_READ | RIGHT_WRITE | RIGHT_FORCE | RIGHT_ADMIN)

enum tls_client_certs {
	TLS_CLIENT_OFF = 0,	/* never ask */
	TLS_CLIENT_OPTIONAL,	/* ask; a verified one names the client */
	TLS_CLIENT_REQUIRE,	/* no verified certificate, no connection */
};

enum tls_min_version { TLS_MIN_12 = 0, TLS_MIN_13 };

enum sharing_mode {
	SHARING_SHARED = 0,	/* everyone with write may type */
	SHARING_SINGLE_WRITER,	/* first writer holds the line; force takes */
};

/* One "who" item of an access rule, parsed. */
enum access_who_kind {
	WHO_USER,		/* user:NAME, IDENT_UNIX */
	WHO_GROUP,		/* group:NAME, IDENT_UNIX */
	WHO_TOKEN,		/* token:NAME */
	WHO_CERT,		/* cert:SUBJECT, the exact subject */
	WHO_CERT_CN,		/* cert:CN=NAME, the one CN of the subject */
	WHO_ANONYMOUS,		/* anonymous */
	WHO_ANY,		/* any authenticated identity */
};

struct access_who {
	enum access_who_kind	 kind;
	char			*name;		/* NULL: anonymous, any */
};

/* One "consoles" item: a glob; uuid is set when it spells a UUID. */
struct access_console {
	char			*pattern;
	char			 uuid[33];	/* normalised, or "" */
};

/* One access rule; config_free releases its arrays. */
struct access_rule {
	struct access_who	*who;
	int			 n_who;
	struct access_console	*consoles;
	int			 n_consoles;
	int			 rights;	/* RIGHT_*, implied ones too */
	size_t			 line;		/* in the config file */
};

/* One sharing rule: consoles matched as in access rules; first match. */
#define SHARING_MAX_RULES	1024
struct sharing_rule {
	struct access_console	*consoles;
	int			 n_consoles;
	enum sharing_mode	 mode;
	size_t			 line;		/* in the config file */
};

struct config {
	int		 foreground;
	int		 verbose;
	char		*state_dir;
	char		*vm_listen[VSPCD_MAX_VM_LISTEN];
	int		 n_vm_listen;
	char		*client_listen;		/* NULL: off */
	char		*client_listen_ro;	/* read-only front door */
	char		*client_bind;
	char		*unix_listen;		/* "off" or a socket path */
	int		 port_lo;		/* -1: per-port listeners off */
	int		 port_hi;		/* 0-0: ephemeral */
	char		*admin_listen;		/* NULL: off */
	char		*service_uri[VSPCD_MAX_URIS];
	int		 n_service_uri;
	int		 port_expiry;		/* seconds */
	int		 ident_timeout;		/* seconds */
	size_t		 client_queue;		/* per-client output cap */
	size_t		 vm_queue;		/* to-VM queue cap */
	size_t		 prebind_max;		/* VM data held before bind */
	size_t		 sb_max;
	int		 vmotion_drain_ms;	/* BEGIN -> NOTNOW if not drained */
	int		 vmotion_peer_timeout;	/* s, GOAHEAD -> PEER */
	int		 vmotion_complete_timeout; /* s, PEER-OK -> COMPLETE */
	int		 vmotion_source_drain;	/* s, old source after COMPLETE */
	size_t		 vmotion_hold_max;	/* client input held */

	/* Config file, persistence, console logs, replay (config.c). */
	char		*config_file;		/* -f FILE, NULL: none */
	int		 check_only;		/* -n: validate and exit */
	char		*log_dir;		/* NULL: STATE_DIR/logs */
	int		 log_enabled;		/* default 1 */
	int		 log_timestamps;	/* per-line timestamps, default 0 */
	char		*log_timestamp_format;	/* strftime(3) */
	size_t		 log_max_size;		/* rotate above; 0: never */
	int		 log_keep;		/* rotated files kept */
	int		 log_sync_ms;		/* fdatasync period while dirty */
	size_t		 replay_size;		/* per-port replay ring; 0: off */
	int		 replay_telnet;		/* replay on telnet attach */
	int		 state_expiry_days;	/* forget ports not seen since */

	/* Abuse limits and VM-side network policy. */
	char		*vm_allow[VSPCD_MAX_ALLOW];	/* CIDRs; none: any */
	int		 n_vm_allow;
	int		 max_vm_connections;
	int		 max_vm_per_source;	/* 0: no limit */
	int		 max_unidentified;
	int		 max_unidentified_per_source;	/* 0: no limit */
	int		 max_clients;
	int		 max_clients_per_source;
	int		 frontdoor_timeout;	/* s to name a console */
	int		 takeover_wait;		/* s a claimant waits */

	/* TLS (tls.c). */
	char		*vm_listen_tls[VSPCD_MAX_VM_LISTEN];
	int		 n_vm_listen_tls;
	char		*client_listen_tls;	/* TLS front door; NULL: off */
	int		 port_tls;		/* per-port listeners speak TLS */
	int		 admin_tls;		/* the admin API is HTTPS */
	char		*tls_cert;		/* PEM chain */
	char		*tls_key;		/* PEM */
	char		*tls_client_ca;		/* PEM CAs for client certs */
	enum tls_client_certs tls_client_certs;
	enum tls_min_version tls_min_version;

	/* Authorization, sharing and audit (authz.c, audit.c). */
	struct access_rule *access;		/* owned array of n_access */
	int		 n_access;
	int		 access_set;		/* access given, even [] */
	char		*tokens[VSPCD_MAX_TOKENS];	/* "NAME:SHA256HEX" */
	int		 n_tokens;
	enum sharing_mode sharing;
	struct sharing_rule *sharing_rules;	/* owned, n_sharing_rules */
	int		 n_sharing_rules;
	char		*audit_log;		/* NULL: STATE_DIR/audit.log */
	int		 audit_enabled;		/* default 1; 0: off */
};

enum vmotion_state {
	VMOTION_IDLE = 0,
	VMOTION_BEGIN_RCVD,
	VMOTION_GOAHEAD_SENT,
	VMOTION_PEERED,
};

struct vmotion {
	RB_ENTRY(vmotion)	 entry;		/* by sequence, while published */
	struct port		*port;
	enum vmotion_state	 state;
	uint8_t			 seq[VMWEXT_COOKIE_MAX];
	size_t			 seqlen;
	uint8_t			 secret[VMOTION_SECRET_LEN];
	bool			 in_table;
	struct vm_session	*src;		/* NULL once the source closed */
	struct vm_session	*dst;		/* set by a valid PEER */
	struct event		*timer;
	struct timeval		 started;
};

struct vm_session;
struct client;

struct port {
	RB_ENTRY(port)		 key_entry;	/* by (uuid, uri) */
	RB_ENTRY(port)		 id_entry;	/* by id */
	TAILQ_ENTRY(port)	 entry;		/* all ports, creation order */

	char			 uuid[33];
	char			*uri;		/* service URI, NUL-free */
	char			*id;
	char			 label[VSPCD_LABEL_MAX];
	char			*name;		/* VM name, sanitised */
	uint8_t			 direction;	/* 'S' or 'C' */

	struct vm_session	*vm;		/* active connection or NULL */
	struct vm_session	*claimant;	/* waiting to take over (policy) */
	struct vmotion		*vmotion;	/* hand-over under way or NULL */
	struct evbuffer		*hold;		/* client input held (vMotion) */
	struct evbuffer		*replay;	/* last cfg.replay_size bytes */
	struct consolelog	*log;
	TAILQ_HEAD(, client)	 clients;
	u_int			 nclients;
	bool			 clients_paused;
	enum sharing_mode	 sharing;	/* share_port_update */
	struct client		*writer;	/* single-writer: holds the line */

	struct evconnlistener	*listener;
	int			 client_port;	/* 0 when none */
	bool			 listen_retry;	/* listener failed: EMFILE */
	bool			 log_retry;	/* log failed: EMFILE */
	uint64_t		 log_lost;	/* VM bytes while log_retry */
	struct event		*expiry_ev;

	uint64_t		 bytes_from_vm;
	uint64_t		 wire_bytes;	/* of which sent as read */
	uint64_t		 bytes_to_vm;
	uint64_t		 input_dropped;	/* client bytes with no VM */
	uint64_t		 client_bytes_dropped;
	uint64_t		 vmotion_begun;
	uint64_t		 vmotion_completed;
	uint64_t		 vmotion_aborted;
	uint64_t		 vmotion_notnow;
	uint64_t		 vmotion_abandoned;
	uint64_t		 vmotion_bad_peers;
	time_t			 created;
	time_t			 last_seen;
	time_t			 last_seen_db;	/* last_seen as saved */
};

struct vm_session {
	TAILQ_ENTRY(vm_session)	 entry;
	struct bufferevent	*bev;
	struct telnet		 tn;
	struct port		*port;		/* bound port or NULL */
	struct vmotion		*peer_of;	/* destination of this vMotion */
	struct port		*claiming;	/* waiting to take this port */
	struct port		*late_port;	/* old source after COMPLETE */
	bool			 peer_rejected;	/* sent a bad PEER: never bind */
	bool			 in_read;	/* in vm_read_cb */
	bool			 bind_due;	/* bind at the end of this read */
	bool			 late_logged;
	struct evbuffer		*prebind;	/* console data before bind */
	struct event		*timer;		/* ident or drain deadline */
	struct event		*rev;		/* plain TCP: reads (vm_sock_read_cb) */

	char			 addr[64];
	char			 uuid[33];
	bool			 have_uuid;
	char			*name;
	char			*uri;
	uint8_t			 direction;
	bool			 proxy_ok;
	bool			 proxy_refused;
	bool			 have_ks1;
	uint8_t			 ks1[32];	/* bitmap of codes */
	bool			 ks2_sent;
	bool			 gets_sent;
	bool			 retiring;	/* replaced; closing after drain */
	bool			 dead;		/* close after current callback */
	bool			 read_paused;
	bool			 counted_src;	/* in the per-source table */
	bool			 unidentified;	/* counted in n_unidentified */
	struct sockaddr_storage	 sa;		/* peer address */
	u_int			 errors;
	uint64_t		 bytes_in;
};

struct client {
	TAILQ_ENTRY(client)	 entry;		/* in port->clients */
	TAILQ_ENTRY(client)	 all_entry;	/* in all clients */
	struct bufferevent	*bev;
	struct telnet		 tn;
	struct port		*port;		/* NULL at the front door */
	bool			 frontdoor;
	char			 line[256];
	size_t			 linelen;
	bool			 line_cr;	/* last line ended with CR */
	bool			 skip_lf;	/* drop one LF/NUL after attach */
	bool			 pending_cr;	/* NVT filter state */
	bool			 skipping;	/* output over cap: skipping */
	uint64_t		 skipped;	/* total, for the counters */
	uint64_t		 gap;		/* skipped since the last notice */
	bool			 dead;
	bool			 paused;
	bool			 counted_src;
	struct event		*timer;		/* front-door deadline */
	struct sockaddr_storage	 sa;
	char			 addr[64];
	struct identity		 ident;
	int			 rights;	/* RIGHT_* on c->port */
	uint64_t		 input_denied;	/* typed, not sent (ro, line) */
	bool			 closing;	/* close once output is out */
	const char		*close_reason;	/* for closing; NULL: denied */

	/* Sharing (share.c). */
	u_int			 id;		/* stable, from 1; 0: unattached */
	bool			 readonly;	/* asked for (or ro door) */
	bool			 ro_door;	/* came in by client-listen-ro */
	time_t			 attached_at;
	uint64_t		 bytes_in;	/* typed and sent on */
	uint64_t		 bytes_out;	/* console bytes queued to it */
	int64_t			 deny_notice_ms; /* last dropped input */
	bool			 tls_wait;	/* TLS handshake under way */
	char			*start_port;	/* port id to attach after it */
};

/* vspcd.c */
extern struct config		 cfg;
extern struct event_base	*ev_base;
extern TAILQ_HEAD(vm_sessions, vm_session) vm_sessions;
extern TAILQ_HEAD(clients, client) all_clients;
extern u_int			 n_vm_sessions;
extern u_int			 n_clients;

/* listener.c; TLS_LISTENER is the callback argument of a TLS listener. */
#define TLS_LISTENER	((void *)1)
struct evconnlistener *listener_open(const char *spec, const char *what,
    evconnlistener_cb cb, void *arg, int *bound_port);
struct evconnlistener *listener_open_addr(const char *host, int port,
    evconnlistener_cb cb, void *arg, int *bound_port);
void	listener_set_backoff(struct evconnlistener *);
void	listener_forget(struct evconnlistener *);
void	listener_free(struct evconnlistener *);
int	listener_split(const char *spec, char *host, size_t hostlen,
	    int *port);
struct cidr {
	int		 family;
	uint8_t		 addr[16];
	int		 bits;
};
int	cidr_parse(const char *, struct cidr *);
bool	cidr_match(const struct cidr *, const struct sockaddr *);
#define SOURCE_VM	0
#define SOURCE_CLIENT	1
#define SOURCE_VM_UNIDENT 2	/* VM connections not identified yet */
int	source_count(int kind, const struct sockaddr *, int delta);
bool	sockaddr_same_host(const struct sockaddr *, const struct sockaddr *);
bool	sockaddr_is_loopback(const struct sockaddr *);
void	listener_addr_str(const struct sockaddr *, char *, size_t);
struct evconnlistener *listener_open_unix(const char *path,
	    evconnlistener_cb cb, void *arg);

/* port.c */
struct port *port_find_key(const char *uuid, const char *uri);
struct port *port_find_id(const char *id);
struct port *port_create(const char *, const char *, uint8_t,
	    const char *);
int	port_lookup(const char *name, struct port **out, int max);
void	port_set_name(struct port *, const char *);
void	port_bind_vm(struct port *, struct vm_session *);
void	port_unbind_vm(struct port *, struct vm_session *);
/*
 * Bytes shared by client queues (evbuffer_add_reference), freed with the
 * last reference; see port_output and vm_read_more.
 */
struct port_chunk {
	u_int	 refs;
	size_t	 cap;
	uint8_t	 data[];
};
/* Escaped output smaller than this is copied to each queue instead. */
#define PORT_SHARE_MIN	512
struct port_chunk *port_chunk_new(size_t cap);
struct port_chunk *port_chunk_shrink(struct port_chunk *, size_t cap);
void	port_chunk_unref(const void *, size_t, void *);
void	port_output(struct port *, const uint8_t *, size_t);
uint8_t	*port_output_space(struct port *, size_t);
void	port_output_wire(struct port *, const uint8_t *, size_t,
	    struct port_chunk *, const uint8_t *, size_t);
void	port_input(struct port *, const uint8_t *, size_t);
int	port_authorize(struct port *, struct client *);
void	port_attach(struct port *, struct client *, bool replay);
void	port_detach(struct port *, struct client *);
void	port_replay(struct port *, struct client *);
void	port_vm_writable(struct port *);
void	port_check_expiry(struct port *);
void	port_free(struct port *);
void	port_free_all(void);
void	port_flush_hold(struct port *, struct vm_session *);
void	port_state_load(void);
u_int	port_count(void);
struct port *port_first(void);
struct port *port_next(struct port *);
bool	port_uri_is_bare(const char *uri);

/* vm.c */
extern u_int	 n_unidentified;
extern uint64_t	 vm_refused_allow, vm_refused_limit, vm_takeovers_refused;
void	vm_policy_reload(void);
void	vm_claim_resolve(struct port *);
void	vm_identified(struct vm_session *);
void	vm_listener_setup(struct evconnlistener *);
void	vm_accept_cb(struct evconnlistener *, evutil_socket_t,
	    struct sockaddr *, int, void *);
void	vm_send_data(struct vm_session *, const uint8_t *, size_t);
void	vm_send_ext(struct vm_session *, uint8_t, const uint8_t *, size_t,
	    const uint8_t *, size_t);
void	vm_retire_source(struct vm_session *, struct port *);
void	vm_resume_read(struct vm_session *);
size_t	vm_queue_len(struct vm_session *);
void	vm_close(struct vm_session *, const char *reason);
void	vm_retire(struct vm_session *);
void	vm_close_all(void);

/* vmotion.c */
extern uint64_t	 vmotion_bad_peers_unknown;
extern u_int	 vmotion_open;
const char *vmotion_state_name(struct port *);
void	vmotion_begin(struct vm_session *, const uint8_t *, size_t);
void	vmotion_src_drained(struct vm_session *);
void	vmotion_peer(struct vm_session *, const uint8_t *, size_t);
void	vmotion_complete(struct vm_session *, const uint8_t *, size_t);
void	vmotion_abort(struct vm_session *);
void	vmotion_dst_uuid(struct vm_session *, const char *);
void	vmotion_vm_closed(struct vm_session *);
void	vmotion_port_reset(struct port *, const char *, bool);
bool	vmotion_holding(struct port *);

/* client.c */
extern uint64_t	 client_refused_limit;
/* arg of client_accept_frontdoor_cb for the read-only front door. */
#define CLIENT_DOOR_RO	((void *)&client_door_ro)
extern const int client_door_ro;
void	client_accept_frontdoor_cb(struct evconnlistener *, evutil_socket_t,
	    struct sockaddr *, int, void *);
void	client_accept_port_cb(struct evconnlistener *, evutil_socket_t,
	    struct sockaddr *, int, void *);
void	client_accept_unix_cb(struct evconnlistener *, evutil_socket_t,
	    struct sockaddr *, int, void *);
void	client_write_console(struct client *, const uint8_t *, size_t);
bool	client_write_console_ref(struct client *, const uint8_t *, size_t,
	    evbuffer_ref_cleanup_cb, void *);
void	client_pause(struct client *, bool);
void	client_close(struct client *, const char *reason);
void	client_close_all(void);
void	client_notice(struct client *, const char *fmt, ...)
	    printflike(2, 3);

/* config.c: defaults < config file < command-line flags. */
void	config_defaults(struct config *);
int	config_parse_args(struct config *, int, char **);
int	config_load_file(struct config *, const char *path, FILE *errout);
int	config_validate(const struct config *, FILE *errout);
int	config_build(struct config *, int, char **, FILE *errout);
void	config_free(struct config *);
__dead void config_usage(int);

/*
 * authz.c: who may do what on which console. authz_rights returns the
 * RIGHT_* bits of an identity on a console: the union of every access rule
 * whose who and consoles match (a consoles glob matches the VM name, the
 * port id or the normalised UUID; vm_name and uuid may be NULL). A unix
 * identity with uid 0 has every right. With no access key configured at
 * all, every identity gets RIGHT_READ | RIGHT_WRITE on a loopback
 * connection and nothing elsewhere. authz_token_lookup hashes a presented
 * bearer token (SHA-256) and compares it with every configured hash in
 * constant time; it returns 0 and copies the token's name into name, or -1
 * (unknown, empty, or name too small). authz_rights_str writes "read,write"
 * style text for logs into buf and returns buf.
 */
int	authz_rights(const struct identity *, const char *vm_name,
	    const char *port_id, const char *uuid);
int	authz_token_lookup(const char *presented, char *name, size_t namelen);
const char *authz_rights_str(int rights, char *buf, size_t len);
/*
 * The console matcher of access rules, shared with sharing rules: true if
 * the item matches the VM name, the port id or the UUID (either may be
 * NULL). authz_sharing_mode is the mode of the first sharing rule that
 * matches the console, else cfg.sharing.
 */
bool	authz_console_match(const struct access_console *, const char *vm_name,
	    const char *port_id, const char *uuid);
enum sharing_mode authz_sharing_mode(const char *vm_name, const char *port_id,
	    const char *uuid);

/*
 * share.c: who may type when several clients are attached (sharing modes,
 * read-only attach, force), who is attached where, and kick. See the
 * comment at the top of share.c.
 */
struct json_t;
extern const char *const sharing_mode_names[];
void	share_port_update(struct port *);
void	share_attach(struct port *, struct client *);
void	share_detach(struct port *, struct client *);
bool	share_may_type(struct client *, size_t len);
void	share_control(struct client *, const uint8_t *, size_t);
void	share_reload(void);
const char *share_mode_str(const struct client *);
struct client *share_find(u_int id);
struct json_t *share_clients_json(const struct identity *, struct port *);
int	share_kick(struct client *, const struct identity *by,
	    char *msg, size_t msglen);

/*
 * audit.c: the audit log, one JSON object per line (attach, detach,
 * denied, force, kick, takeover, config-reload, token-use). Never guest
 * bytes, never secrets: callers pass names and short details only. who and
 * console and detail may be NULL (left out). Write errors are counted and
 * reported at most once a minute; nothing blocks or aborts. audit_reopen
 * closes the file and opens cfg's current path (SIGHUP, rotation).
 */
void	audit_init(void);
void	audit_shutdown(void);
void	audit_reopen(void);
void	audit_event(const char *event, const struct identity *who,
	    const char *console, const char *detail);
const char *audit_kind_name(enum ident_kind);

/* consolelog.c */
struct consolelog;
void	consolelog_init(void);
void	consolelog_shutdown(void);
struct consolelog *consolelog_open(const char *port_id);
void	consolelog_write(struct consolelog *, const uint8_t *, size_t);
void	consolelog_missed(struct consolelog *, uint64_t);
void	consolelog_event(struct consolelog *, const char *event,
	    const char *detail);
void	consolelog_close(struct consolelog *);
void	consolelog_reopen_all(void);
const char *consolelog_path(const struct consolelog *);
int	consolelog_tail(const char *port_id, size_t n, struct evbuffer *out);

/* db.c */
struct db_port {
	char		 uuid[33];
	char		*uri;
	char		*id;
	char		*name;
	int		 client_port;	/* 0: none */
	time_t		 last_seen;
};
int	db_open(const char *state_dir);
void	db_close(void);
void	db_batch(struct event_base *);
void	db_flush(void);
int	db_port_save(const struct db_port *);
int	db_port_touch(const char *uuid, const char *uri, time_t);
int	db_ports_load(time_t not_before,
	    void (*cb)(const struct db_port *, void *), void *arg);
int	db_expire(time_t cutoff);

/* admin.c */
struct evhttp;
int	admin_start(const char *spec, bool tls, int *bound_port);
struct evhttp *admin_open(const char *spec, bool tls, int *bound_port);
void	admin_swap(struct evhttp *);
void	admin_stop(void);

/*
 * tls.c: one server context for every TLS listener. tls_prepare builds it
 * from a config (errors to errout, or the log if NULL; returns their
 * number) without touching the live one; tls_commit makes it live (new
 * connections only), tls_abort drops it. tls_peer_identity turns a
 * verified client certificate into an IDENT_CERT identity.
 */
bool	tls_wanted(const struct config *);
int	tls_prepare(const struct config *, FILE *errout);
void	tls_commit(void);
void	tls_abort(void);
void	tls_shutdown(void);
struct bufferevent *tls_bev_accept(evutil_socket_t, bool vm);
struct bufferevent *tls_http_bevcb(struct event_base *, void *);
bool	tls_bev_is_tls(struct bufferevent *);
const char *tls_bev_error(struct bufferevent *);
int	tls_peer_identity(struct bufferevent *, struct identity *);

/* util.c */
void	evbuffer_add_escaped(struct evbuffer *, const uint8_t *, size_t);
char	*util_sanitize(const uint8_t *, size_t, size_t max);
size_t	util_utf8_len(const uint8_t *, size_t);
int	util_write_file_atomic(const char *dir, const char *name,
	    const char *data, size_t len);

#endif
