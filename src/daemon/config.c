/*
 * config.c: defaults < YAML config file < command-line flags.
 *
 * One keyword table drives everything: getopt_long's options (--name, and
 * --no-name for booleans), the YAML keys (the same spelling), the defaults,
 * the range checks in config_validate and the usage text. libyaml is used
 * here and nowhere else.
 *
 * Every string in a built struct config is owned by it (heap), so a reload
 * can build a whole new config next to the running one and swap them;
 * config_free releases one.
 */
#include <sys/types.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "vspcd.h"

#define CONFIG_FILE_MAX		(1024 * 1024)	/* bytes of YAML read */
#define CONFIG_LOG_SIZE_MIN	4096		/* log-max-size, unless 0 */

enum kw_type {
	KW_BOOL,	/* --x / --no-x; true or false in the file */
	KW_COUNT,	/* repeatable flag (-v); an integer in the file */
	KW_INT,		/* int in [min, max] */
	KW_SIZE,	/* size_t in [min, max]; suffixes K, M, G */
	KW_STRING,
	KW_LIST,	/* repeatable flag; YAML sequence or scalar */
	KW_ADDR,	/* ADDR:PORT or off (NULL) */
	KW_PORTRANGE,	/* LO-HI, 0 or off */
	KW_LOGDIR,	/* DIR or off (log_enabled = 0) */
	KW_PATHOFF,	/* PATH or off; count_off: the int enabled flag */
	KW_ENUM,	/* one of choices[], stored as its index (int) */
	KW_RULES,	/* access: a YAML sequence of rules (file only) */
	KW_SHARING,	/* sharing-rules: a YAML sequence (file only) */
	KW_ACTION,	/* --help, --version */
};

#define KW_CMDLINE	0x1	/* not allowed in the file */
#define KW_ADDRESS	0x2	/* KW_LIST: items are ADDR:PORT */
#define KW_FILEONLY	0x4	/* not a command-line flag */
#define KW_TOKEN	0x8	/* KW_LIST: items are NAME:SHA256HEX */

#define TOKEN_HASH_HEX	64	/* hex digits of a SHA-256 */

struct keyword {
	const char	*name;		/* --name and the YAML key */
	int		 shortopt;	/* 0: none */
	enum kw_type	 type;
	int		 flags;
	size_t		 off;		/* offsetof the field */
	size_t		 count_off;	/* KW_LIST: offsetof the item count */
	long long	 min;		/* KW_INT, KW_SIZE, KW_COUNT */
	long long	 max;		/* also KW_LIST: most items */
	const char	*def;		/* default value */
	const char	*show;		/* default as shown, if not def */
	const char	*arg;		/* metavariable in the usage text */
	const char	*help;
	const char *const *choices;	/* KW_ENUM: names, NULL-terminated */
};

static_assert(sizeof(enum sharing_mode) == sizeof(int),
    "KW_ENUM stores an int");

const char *const sharing_mode_names[] = {
	[SHARING_SHARED] = "shared",
	[SHARING_SINGLE_WRITER] = "single-writer",
	NULL,
};

static_assert(sizeof(enum tls_client_certs) == sizeof(int) &&
    sizeof(enum tls_min_version) == sizeof(int), "KW_ENUM stores an int");

static const char *const tls_client_names[] = {
	[TLS_CLIENT_OFF] = "off",
	[TLS_CLIENT_OPTIONAL] = "optional",
	[TLS_CLIENT_REQUIRE] = "require",
	NULL,
};

static const char *const tls_min_names[] = {
	[TLS_MIN_12] = "1.2",
	[TLS_MIN_13] = "1.3",
	NULL,
};

#define OFF(f)	offsetof(struct config, f)

static const struct keyword keywords[] = {
	{ .name = "config", .shortopt = 'f', .type = KW_STRING,
	  .flags = KW_CMDLINE, .off = OFF(config_file), .arg = "FILE",
	  .help = "read settings from this YAML file" },
	{ .name = "check", .shortopt = 'n', .type = KW_BOOL,
	  .flags = KW_CMDLINE, .off = OFF(check_only),
	  .help = "check the configuration and exit" },
	{ .name = "foreground", .shortopt = 'd', .type = KW_BOOL,
	  .off = OFF(foreground), .def = "false",
	  .help = "stay in the foreground, log to stderr" },
	{ .name = "verbose", .shortopt = 'v', .type = KW_COUNT,
	  .off = OFF(verbose), .min = 0, .max = 9, .def = "0", .arg = "N",
	  .help = "debug logging (-v is repeatable)" },
	{ .name = "state-dir", .type = KW_STRING, .off = OFF(state_dir),
	  .def = "/var/lib/vspcd", .arg = "DIR",
	  .help = "listeners.json and the port database" },
	{ .name = "vm-listen", .type = KW_LIST, .flags = KW_ADDRESS,
	  .off = OFF(vm_listen), .count_off = OFF(n_vm_listen),
	  .max = VSPCD_MAX_VM_LISTEN, .def = "0.0.0.0:13370",
	  .arg = "ADDR:PORT", .help = "where ESXi hosts connect (repeatable)" },
	{ .name = "client-listen", .type = KW_ADDR, .off = OFF(client_listen),
	  .def = "127.0.0.1:13371", .arg = "ADDR:PORT|off",
	  .help = "front door: telnet, then a console name" },
	{ .name = "client-listen-ro", .type = KW_ADDR,
	  .off = OFF(client_listen_ro), .show = "off", .arg = "ADDR:PORT|off",
	  .help = "read-only front door: every attach is read-only" },
	{ .name = "unix-listen", .type = KW_STRING, .off = OFF(unix_listen),
	  .def = "off", .arg = "PATH|off",
	  .help = "front door on a Unix socket; clients are identified "
	    "by their uid (SO_PEERCRED)" },
	{ .name = "client-bind", .type = KW_STRING, .off = OFF(client_bind),
	  .def = "127.0.0.1", .arg = "ADDR",
	  .help = "address of the per-port telnet listeners" },
	{ .name = "port-range", .type = KW_PORTRANGE, .def = "50000-50999",
	  .arg = "LO-HI|0|off",
	  .help = "per-port listeners; 0: any port; off: none" },
	{ .name = "admin-listen", .type = KW_ADDR, .off = OFF(admin_listen),
	  .def = "127.0.0.1:13372", .arg = "ADDR:PORT|off",
	  .help = "HTTP/JSON admin API" },
	{ .name = "vm-listen-tls", .type = KW_LIST, .flags = KW_ADDRESS,
	  .off = OFF(vm_listen_tls), .count_off = OFF(n_vm_listen_tls),
	  .max = VSPCD_MAX_VM_LISTEN, .show = "none", .arg = "ADDR:PORT",
	  .help = "where ESXi hosts connect with telnets:// (repeatable)" },
	{ .name = "client-listen-tls", .type = KW_ADDR,
	  .off = OFF(client_listen_tls), .def = "off",
	  .arg = "ADDR:PORT|off", .help = "front door over TLS" },
	{ .name = "port-tls", .type = KW_BOOL, .off = OFF(port_tls),
	  .def = "false", .help = "per-port listeners speak TLS" },
	{ .name = "admin-tls", .type = KW_BOOL, .off = OFF(admin_tls),
	  .def = "false", .help = "the admin API speaks HTTPS" },
	{ .name = "tls-cert", .type = KW_STRING, .off = OFF(tls_cert),
	  .show = "none", .arg = "PEM",
	  .help = "server certificate chain (reread on SIGHUP)" },
	{ .name = "tls-key", .type = KW_STRING, .off = OFF(tls_key),
	  .show = "none", .arg = "PEM", .help = "server private key" },
	{ .name = "tls-client-ca", .type = KW_STRING,
	  .off = OFF(tls_client_ca), .show = "none", .arg = "PEM",
	  .help = "CAs that sign client certificates" },
	{ .name = "tls-client-certs", .type = KW_ENUM,
	  .off = OFF(tls_client_certs), .choices = tls_client_names,
	  .def = "off", .arg = "off|optional|require",
	  .help = "ask TLS clients for a certificate" },
	{ .name = "tls-min-version", .type = KW_ENUM,
	  .off = OFF(tls_min_version), .choices = tls_min_names,
	  .def = "1.2", .arg = "1.2|1.3", .help = "oldest TLS accepted" },
	{ .name = "service-uri", .type = KW_LIST, .off = OFF(service_uri),
	  .count_off = OFF(n_service_uri), .max = VSPCD_MAX_URIS,
	  .def = "vSPC.py", .arg = "PREFIX",
	  .help = "accepted Port URI prefixes (repeatable; * = any)" },
	{ .name = "port-expiry", .type = KW_INT, .off = OFF(port_expiry),
	  .min = 1, .max = 86400LL * 3650, .def = "86400", .arg = "SECONDS",
	  .help = "forget a port idle (no VM, no client) this long" },
	{ .name = "ident-timeout", .type = KW_INT, .off = OFF(ident_timeout),
	  .min = 1, .max = 3600, .def = "10", .arg = "SECONDS",
	  .help = "close VM connections unidentified after this" },
	{ .name = "client-queue", .type = KW_SIZE, .off = OFF(client_queue),
	  .min = 4096, .max = 1LL << 30, .def = "256K", .arg = "SIZE",
	  .help = "per-client output cap" },
	{ .name = "vmotion-drain-ms", .type = KW_INT,
	  .off = OFF(vmotion_drain_ms), .min = 1, .max = 600000,
	  .def = "1500", .arg = "MS",
	  .help = "vMotion: NOTNOW if not drained in this time" },
	{ .name = "vmotion-peer-timeout", .type = KW_INT,
	  .off = OFF(vmotion_peer_timeout), .min = 1, .max = 86400,
	  .def = "60", .arg = "SECONDS",
	  .help = "vMotion: wait from GOAHEAD for PEER" },
	{ .name = "vmotion-complete-timeout", .type = KW_INT,
	  .off = OFF(vmotion_complete_timeout), .min = 1, .max = 86400,
	  .def = "60", .arg = "SECONDS",
	  .help = "vMotion: wait from PEER-OK for COMPLETE" },
	{ .name = "vmotion-source-drain", .type = KW_INT,
	  .off = OFF(vmotion_source_drain), .min = 1, .max = 3600,
	  .def = "10", .arg = "SECONDS",
	  .help = "vMotion: old source kept after COMPLETE" },
	{ .name = "vmotion-hold-max", .type = KW_SIZE,
	  .off = OFF(vmotion_hold_max), .min = 4096, .max = 1LL << 30,
	  .def = "1M", .arg = "SIZE",
	  .help = "vMotion: client input held during hand-over" },
	{ .name = "log-dir", .type = KW_LOGDIR, .off = OFF(log_dir),
	  .show = "STATE_DIR/logs", .arg = "DIR|off",
	  .help = "per-port console logs; off: none" },
	{ .name = "log-timestamps", .type = KW_BOOL,
	  .off = OFF(log_timestamps), .def = "false",
	  .help = "start each console log line with a timestamp" },
	{ .name = "log-timestamp-format", .type = KW_STRING,
	  .off = OFF(log_timestamp_format), .def = "[%Y-%m-%d %H:%M:%S] ",
	  .show = "\"[%Y-%m-%d %H:%M:%S] \"", .arg = "FMT",
	  .help = "strftime(3) format of that timestamp" },
	{ .name = "log-max-size", .type = KW_SIZE, .off = OFF(log_max_size),
	  .min = 0, .max = 1LL << 40, .def = "16M", .arg = "SIZE",
	  .help = "rotate console logs above this; 0: never" },
	{ .name = "log-keep", .type = KW_INT, .off = OFF(log_keep),
	  .min = 0, .max = 1000, .def = "5", .arg = "N",
	  .help = "rotated console logs kept per port" },
	{ .name = "log-sync-ms", .type = KW_INT, .off = OFF(log_sync_ms),
	  .min = 1, .max = 3600000, .def = "1000", .arg = "MS",
	  .help = "fdatasync period of a dirty console log" },
	{ .name = "replay-size", .type = KW_SIZE, .off = OFF(replay_size),
	  .min = 0, .max = 1LL << 30, .def = "64K", .arg = "SIZE",
	  .help = "output replayed to new clients; 0: off" },
	/* Off until the integration tests expect replayed output. */
	{ .name = "replay-telnet", .type = KW_BOOL, .off = OFF(replay_telnet),
	  .def = "false", .help = "replay to telnet clients on attach" },
	{ .name = "state-expiry-days", .type = KW_INT,
	  .off = OFF(state_expiry_days), .min = 1, .max = 36500, .def = "30",
	  .arg = "DAYS", .help = "forget saved ports not seen for this long" },
	{ .name = "vm-allow", .type = KW_LIST, .off = OFF(vm_allow),
	  .count_off = OFF(n_vm_allow), .max = VSPCD_MAX_ALLOW,
	  .show = "any", .arg = "CIDR",
	  .help = "ESXi source networks allowed (repeatable; none: any)" },
	{ .name = "max-vm-connections", .type = KW_INT,
	  .off = OFF(max_vm_connections), .min = 1, .max = 10000000,
	  .def = "50000", .arg = "N", .help = "VM connections in total" },
	{ .name = "max-vm-per-source", .type = KW_INT,
	  .off = OFF(max_vm_per_source), .min = 0, .max = 10000000,
	  .def = "0", .arg = "N",
	  .help = "VM connections per source address; 0: no limit" },
	{ .name = "max-unidentified", .type = KW_INT,
	  .off = OFF(max_unidentified), .min = 1, .max = 10000000,
	  .def = "8192", .arg = "N",
	  .help = "VM connections not yet identified" },
	{ .name = "max-unidentified-per-source", .type = KW_INT,
	  .off = OFF(max_unidentified_per_source), .min = 0, .max = 10000000,
	  .def = "1024", .arg = "N",
	  .help = "unidentified VM connections per source address "
	    "(0: no limit)" },
	{ .name = "max-clients", .type = KW_INT, .off = OFF(max_clients),
	  .min = 1, .max = 10000000, .def = "4096", .arg = "N",
	  .help = "client connections in total" },
	{ .name = "max-clients-per-source", .type = KW_INT,
	  .off = OFF(max_clients_per_source), .min = 1, .max = 10000000,
	  .def = "256", .arg = "N",
	  .help = "client connections per source address" },
	{ .name = "frontdoor-timeout", .type = KW_INT,
	  .off = OFF(frontdoor_timeout), .min = 1, .max = 3600, .def = "30",
	  .arg = "SECONDS", .help = "front door: time to name a console" },
	{ .name = "takeover-wait", .type = KW_INT, .off = OFF(takeover_wait),
	  .min = 1, .max = 3600, .def = "60", .arg = "SECONDS",
	  .help = "a second host claiming a live port waits this long" },
	{ .name = "access", .type = KW_RULES, .flags = KW_FILEONLY,
	  .show = "loopback: read,write", .arg = "RULES",
	  .help = "who may attach where (YAML file only)" },
	{ .name = "tokens", .type = KW_LIST, .flags = KW_TOKEN,
	  .off = OFF(tokens), .count_off = OFF(n_tokens),
	  .max = VSPCD_MAX_TOKENS, .show = "none", .arg = "NAME:SHA256",
	  .help = "API bearer tokens, as SHA-256 hex (repeatable)" },
	{ .name = "sharing", .type = KW_ENUM, .off = OFF(sharing),
	  .choices = sharing_mode_names, .def = "shared",
	  .arg = "shared|single-writer",
	  .help = "who may type when several clients attach" },
	{ .name = "sharing-rules", .type = KW_SHARING, .flags = KW_FILEONLY,
	  .show = "none", .arg = "RULES",
	  .help = "sharing mode per console, first match (file only)" },
	{ .name = "audit-log", .type = KW_PATHOFF, .off = OFF(audit_log),
	  .count_off = OFF(audit_enabled), .show = "STATE_DIR/audit.log",
	  .arg = "PATH|off", .help = "audit log (JSON lines); off: none" },
	{ .name = "version", .type = KW_ACTION, .flags = KW_CMDLINE,
	  .help = "print the version and exit" },
	{ .name = "help", .shortopt = 'h', .type = KW_ACTION,
	  .flags = KW_CMDLINE, .help = "print this help and exit" },
};

#define NKW	nitems(keywords)

/* One pass over one source (the command line or a file). */
struct cfg_ctx {
	struct config	*cfg;
	FILE		*errout;	/* NULL: count errors silently */
	const char	*path;		/* file being read; NULL: flags */
	int		 nerr;
	int		 touched[NKW];	/* flags: list or count reset */
	size_t		 line[NKW];	/* file: line of the key, 0: unset */
};

/* getopt_long tables, built once from keywords[]. */
#define OPT_BASE	256
#define OPT_NEG		(OPT_BASE + (int)NKW)
static struct option longopts[2 * NKW + 1];
static char negnames[NKW][64];
static char shortopts[2 * NKW + 1];

static void	 cfg_error(struct cfg_ctx *, size_t, const char *, ...)
		    printflike(3, 4);
static void	 cause_set(char **, const char *, ...) printflike(2, 3);

/* Print one error: FILE:LINE: for the file, "vspcd: " otherwise. */
static void
cfg_error(struct cfg_ctx *ctx, size_t line, const char *fmt, ...)
{
	va_list ap;

	ctx->nerr++;
	if (ctx->errout == NULL)
		return;
	if (ctx->path != NULL)
		fprintf(ctx->errout, "%s:%zu: ", ctx->path, line);
	else
		fprintf(ctx->errout, "vspcd: ");
	va_start(ap, fmt);
	vfprintf(ctx->errout, fmt, ap);
	va_end(ap);
	fputc('\n', ctx->errout);
}

/* Format an error cause into a new string. */
static void
cause_set(char **cause, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(cause, fmt, ap) == -1)
		fatalx("%s: out of memory", __func__);
	va_end(ap);
}

/* Find a keyword by name; NULL if unknown. */
static const struct keyword *
kw_find(const char *name)
{
	size_t i;

	for (i = 0; i < NKW; i++)
		if (strcmp(keywords[i].name, name) == 0)
			return (&keywords[i]);
	return (NULL);
}

/* Does the keyword take an argument on the command line? */
static int
kw_has_arg(const struct keyword *kw)
{
	return (kw->type != KW_BOOL && kw->type != KW_COUNT &&
	    kw->type != KW_ACTION);
}

/* Build longopts[] and shortopts[] from keywords[], once. */
static void
opts_init(void)
{
	static int done;
	const struct keyword *kw;
	size_t i, n = 0, s = 0;

	if (done)
		return;
	for (i = 0; i < NKW; i++) {
		kw = &keywords[i];
		if (kw->flags & KW_FILEONLY)
			continue;
		longopts[n++] = (struct option){
			.name = kw->name,
			.has_arg = kw_has_arg(kw) ? required_argument :
			    no_argument,
			.val = OPT_BASE + (int)i,
		};
		if (kw->type == KW_BOOL) {
			if ((size_t)snprintf(negnames[i], sizeof negnames[i],
			    "no-%s", kw->name) >= sizeof negnames[i])
				fatalx("%s: %s too long", __func__, kw->name);
			longopts[n++] = (struct option){
				.name = negnames[i],
				.has_arg = no_argument,
				.val = OPT_NEG + (int)i,
			};
		}
		if (kw->shortopt != 0) {
			shortopts[s++] = (char)kw->shortopt;
			if (kw_has_arg(kw))
				shortopts[s++] = ':';
		}
	}
	longopts[n] = (struct option){ .name = NULL };
	shortopts[s] = '\0';
	done = 1;
}

/* Map a getopt_long return value to a keyword; *neg for --no-x. */
static const struct keyword *
kw_from_opt(int ch, int *neg)
{
	size_t i;

	*neg = 0;
	if (ch >= OPT_NEG && ch < OPT_NEG + (int)NKW) {
		*neg = 1;
		return (&keywords[ch - OPT_NEG]);
	}
	if (ch >= OPT_BASE && ch < OPT_NEG)
		return (&keywords[ch - OPT_BASE]);
	for (i = 0; i < NKW; i++)
		if (keywords[i].shortopt != 0 && keywords[i].shortopt == ch)
			return (&keywords[i]);
	return (NULL);
}

/* Parse a boolean word: 1, 0, or -1 if it is not one. */
static int
parse_bool(const char *s)
{
	static const char *yes[] = { "true", "yes", "on" };
	static const char *no[] = { "false", "no", "off" };
	size_t i;

	for (i = 0; i < nitems(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return (1);
		if (strcasecmp(s, no[i]) == 0)
			return (0);
	}
	return (-1);
}

/*
 * Parse a size: decimal bytes with an optional K, M or G (powers of 1024).
 * Returns the value, or sets *errstr like strtonum(3).
 */
static long long
parse_size(const char *s, long long lo, long long hi, const char **errstr)
{
	unsigned long long v = 0, mult = 1;
	const char *p;

	*errstr = "invalid";
	if (!isdigit((unsigned char)*s))
		return (0);
	for (p = s; isdigit((unsigned char)*p); p++) {
		if (v > (ULLONG_MAX - 9) / 10) {
			*errstr = "too large";
			return (0);
		}
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'K':
	case 'k':
		mult = 1ULL << 10;
		break;
	case 'M':
	case 'm':
		mult = 1ULL << 20;
		break;
	case 'G':
	case 'g':
		mult = 1ULL << 30;
		break;
	default:
		return (0);
	}
	if (*p != '\0' && p[1] != '\0')
		return (0);
	if (v > (unsigned long long)LLONG_MAX / mult) {
		*errstr = "too large";
		return (0);
	}
	v *= mult;
	if ((long long)v < lo) {
		*errstr = "too small";
		return (0);
	}
	if ((long long)v > hi) {
		*errstr = "too large";
		return (0);
	}
	*errstr = NULL;
	return ((long long)v);
}

/* Is s ADDR:PORT (or [V6]:PORT), as listener_split accepts it? */
static int
addr_ok(const char *s)
{
	const char *p, *errstr;

	if (s[0] == '[') {
		if ((p = strstr(s, "]:")) == NULL)
			return (0);
		p += 2;
	} else {
		if ((p = strrchr(s, ':')) == NULL)
			return (0);
		p++;
	}
	if (p - s > 255)
		return (0);
	(void)strtonum(p, 0, 65535, &errstr);
	return (errstr == NULL);
}

/* Replace an owned string; val NULL clears it. */
static void
str_set(char **field, const char *val)
{
	free(*field);
	*field = val == NULL ? NULL : xstrdup(val);
}

/* Field of a keyword inside cfg. */
static void *
kw_field(struct config *conf, const struct keyword *kw, size_t off)
{
	return ((char *)conf + off);
}

/* Empty a list keyword. */
static void
kw_list_reset(struct config *conf, const struct keyword *kw)
{
	char **list = kw_field(conf, kw, kw->off);
	int *n = kw_field(conf, kw, kw->count_off), i;

	for (i = 0; i < *n; i++) {
		free(list[i]);
		list[i] = NULL;
	}
	*n = 0;
}

/* Parse --port-range / port-range: LO-HI, 0 or off. */
static int
set_port_range(struct config *conf, const char *what, const char *s,
    char **cause)
{
	char buf[64], *dash;
	const char *errstr;
	long long lo, hi;

	if (strcmp(s, "off") == 0) {
		conf->port_lo = conf->port_hi = -1;
		return (0);
	}
	if (strcmp(s, "0") == 0 || strcmp(s, "0-0") == 0) {
		conf->port_lo = conf->port_hi = 0;
		return (0);
	}
	strlcpy(buf, s, sizeof buf);
	if ((dash = strchr(buf, '-')) == NULL) {
		cause_set(cause, "%s wants LO-HI, 0 or off", what);
		return (-1);
	}
	*dash++ = '\0';
	lo = strtonum(buf, 1, 65535, &errstr);
	if (errstr != NULL) {
		cause_set(cause, "port range start '%s' is %s", buf, errstr);
		return (-1);
	}
	hi = strtonum(dash, lo, 65535, &errstr);
	if (errstr != NULL) {
		cause_set(cause, "port range end '%s' is %s", dash, errstr);
		return (-1);
	}
	conf->port_lo = (int)lo;
	conf->port_hi = (int)hi;
	return (0);
}

/*
 * Length of the NAME of a NAME:SHA256HEX token item, or 0 if the item is
 * not one. NAME is 1 to IDENT_NAME_MAX - 1 bytes of [A-Za-z0-9._@-].
 */
static size_t
token_name_len(const char *s)
{
	size_t n, i;

	for (n = 0; s[n] != '\0' && s[n] != ':'; n++)
		if (!isalnum((unsigned char)s[n]) && strchr("._@-", s[n]) ==
		    NULL)
			return (0);
	if (n == 0 || n >= IDENT_NAME_MAX || s[n] != ':')
		return (0);
	for (i = 0; i < TOKEN_HASH_HEX; i++)
		if (!isxdigit((unsigned char)s[n + 1 + i]))
			return (0);
	if (s[n + 1 + TOKEN_HASH_HEX] != '\0')
		return (0);
	return (n);
}

/*
 * Check a tokens item against the format and the items already there. The
 * value is never echoed: it may be a clear token pasted by mistake.
 */
static int
token_check(struct config *conf, const char *what, const char *val,
    char **cause)
{
	size_t n, m;
	int i;

	if ((n = token_name_len(val)) == 0) {
		cause_set(cause, "%s: an item is not NAME:SHA256HEX (a name of "
		    "letters, digits, '._@-', then the %d hex digits of the "
		    "SHA-256 of the token)", what, TOKEN_HASH_HEX);
		return (-1);
	}
	for (i = 0; i < conf->n_tokens; i++) {
		m = token_name_len(conf->tokens[i]);
		if (m == n && strncmp(conf->tokens[i], val, n) == 0) {
			cause_set(cause, "%s: duplicate token name '%.*s'",
			    what, (int)n, val);
			return (-1);
		}
		if (strcasecmp(conf->tokens[i] + m + 1, val + n + 1) == 0) {
			cause_set(cause, "%s: token '%.*s' has the same hash "
			    "as '%.*s'", what, (int)n, val, (int)m,
			    conf->tokens[i]);
			return (-1);
		}
	}
	return (0);
}

/*
 * Set one keyword from its text form; what names it in messages ("--name"
 * or "name"). A list keyword gets one item appended. Returns 0, or -1 with
 * *cause set (the caller frees it).
 */
static int
kw_set(struct config *conf, const struct keyword *kw, const char *what,
    const char *val, char **cause)
{
	void *field = kw_field(conf, kw, kw->off);
	const char *errstr;
	long long v;
	char **list;
	int *n, b;
	size_t i;

	switch (kw->type) {
	case KW_BOOL:
		if ((b = parse_bool(val)) == -1) {
			cause_set(cause, "%s '%s' is not a boolean (true or "
			    "false)", what, val);
			return (-1);
		}
		*(int *)field = b;
		break;
	case KW_COUNT:
	case KW_INT:
		v = strtonum(val, kw->min, kw->max, &errstr);
		if (errstr != NULL) {
			cause_set(cause, "%s '%s' is %s", what, val, errstr);
			return (-1);
		}
		*(int *)field = (int)v;
		break;
	case KW_SIZE:
		v = parse_size(val, kw->min, kw->max, &errstr);
		if (errstr != NULL) {
			cause_set(cause, "%s '%s' is %s", what, val, errstr);
			return (-1);
		}
		*(size_t *)field = (size_t)v;
		break;
	case KW_STRING:
		str_set(field, val);
		break;
	case KW_ADDR:
		if (strcmp(val, "off") == 0) {
			str_set(field, NULL);
			break;
		}
		if (!addr_ok(val)) {
			cause_set(cause, "%s '%s' wants ADDR:PORT or off", what,
			    val);
			return (-1);
		}
		str_set(field, val);
		break;
	case KW_LIST:
		list = field;
		n = kw_field(conf, kw, kw->count_off);
		if (*n >= kw->max) {
			cause_set(cause, "too many %s", what);
			return (-1);
		}
		if ((kw->flags & KW_ADDRESS) && !addr_ok(val)) {
			cause_set(cause, "%s '%s' wants ADDR:PORT", what, val);
			return (-1);
		}
		if ((kw->flags & KW_TOKEN) &&
		    token_check(conf, what, val, cause) == -1)
			return (-1);
		list[(*n)++] = xstrdup(val);
		break;
	case KW_PORTRANGE:
		return (set_port_range(conf, what, val, cause));
	case KW_LOGDIR:
		if (strcmp(val, "off") == 0) {
			str_set(field, NULL);
			conf->log_enabled = 0;
		} else {
			str_set(field, val);
			conf->log_enabled = 1;
		}
		break;
	case KW_PATHOFF:
		n = kw_field(conf, kw, kw->count_off);
		if (strcmp(val, "off") == 0) {
			str_set(field, NULL);
			*n = 0;
		} else if (*val == '\0') {
			cause_set(cause, "%s is empty (use off for none)",
			    what);
			return (-1);
		} else {
			str_set(field, val);
			*n = 1;
		}
		break;
	case KW_ENUM:
		for (i = 0; kw->choices[i] != NULL; i++)
			if (strcmp(val, kw->choices[i]) == 0)
				break;
		if (kw->choices[i] == NULL) {
			cause_set(cause, "%s '%s' is not one of %s", what, val,
			    kw->arg);
			return (-1);
		}
		*(int *)field = (int)i;
		break;
	case KW_RULES:
	case KW_SHARING:
		cause_set(cause, "%s is only valid in the config file", what);
		return (-1);
	case KW_ACTION:
		fatalx("%s: %s has no value", __func__, kw->name);
	}
	return (0);
}

/* Reset conf to the built-in defaults (conf must hold nothing owned). */
void
config_defaults(struct config *conf)
{
	const struct keyword *kw;
	char *cause = NULL;
	size_t i;

	memset(conf, 0, sizeof *conf);
	conf->log_enabled = 1;
	conf->audit_enabled = 1;
	conf->vm_queue = 64 * 1024;
	conf->prebind_max = 16 * 1024;
	conf->sb_max = TELNET_SB_MAX;
	for (i = 0; i < NKW; i++) {
		kw = &keywords[i];
		if (kw->def == NULL)
			continue;
		if (kw_set(conf, kw, kw->name, kw->def, &cause) == -1)
			fatalx("%s: %s", __func__, cause);
	}
}

/* Free what one rule holds. */
static void
access_rule_clear(struct access_rule *r)
{
	int i;

	for (i = 0; i < r->n_who; i++)
		free(r->who[i].name);
	free(r->who);
	for (i = 0; i < r->n_consoles; i++)
		free(r->consoles[i].pattern);
	free(r->consoles);
	memset(r, 0, sizeof *r);
}

/* Free the access rules of conf. */
static void
access_free(struct config *conf)
{
	int i;

	for (i = 0; i < conf->n_access; i++)
		access_rule_clear(&conf->access[i]);
	free(conf->access);
	conf->access = NULL;
	conf->n_access = 0;
	conf->access_set = 0;
}

/* Free the sharing rules of conf. */
static void
sharing_free(struct config *conf)
{
	struct sharing_rule *r;
	int i, j;

	for (i = 0; i < conf->n_sharing_rules; i++) {
		r = &conf->sharing_rules[i];
		for (j = 0; j < r->n_consoles; j++)
			free(r->consoles[j].pattern);
		free(r->consoles);
	}
	free(conf->sharing_rules);
	conf->sharing_rules = NULL;
	conf->n_sharing_rules = 0;
}

/* Free every string conf owns and zero it. */
void
config_free(struct config *conf)
{
	int i;

	free(conf->state_dir);
	for (i = 0; i < conf->n_vm_listen; i++)
		free(conf->vm_listen[i]);
	free(conf->client_listen);
	free(conf->client_listen_ro);
	for (i = 0; i < conf->n_vm_listen_tls; i++)
		free(conf->vm_listen_tls[i]);
	free(conf->client_listen_tls);
	free(conf->tls_cert);
	free(conf->tls_key);
	free(conf->tls_client_ca);
	free(conf->client_bind);
	free(conf->unix_listen);
	free(conf->admin_listen);
	for (i = 0; i < conf->n_service_uri; i++)
		free(conf->service_uri[i]);
	free(conf->config_file);
	free(conf->log_dir);
	free(conf->log_timestamp_format);
	for (i = 0; i < conf->n_vm_allow; i++)
		free(conf->vm_allow[i]);
	access_free(conf);
	sharing_free(conf);
	for (i = 0; i < conf->n_tokens; i++)
		free(conf->tokens[i]);
	free(conf->audit_log);
	memset(conf, 0, sizeof *conf);
}

/* Print one usage line per keyword, with its default. */
static void
usage_options(FILE *f)
{
	const struct keyword *kw;
	char left[80];
	const char *def;
	size_t i;
	int n;

	for (i = 0; i < NKW; i++) {
		kw = &keywords[i];
		if (kw->flags & KW_FILEONLY)
			n = snprintf(left, sizeof left, "    %s:", kw->name);
		else if (kw->shortopt != 0)
			n = snprintf(left, sizeof left, "-%c, --%s",
			    kw->shortopt, kw->name);
		else
			n = snprintf(left, sizeof left, "    --%s", kw->name);
		if (n > 0 && (size_t)n < sizeof left && kw_has_arg(kw))
			snprintf(left + n, sizeof left - (size_t)n, " %s",
			    kw->arg);
		if (kw->type == KW_BOOL && !(kw->flags & KW_CMDLINE))
			snprintf(left + n, sizeof left - (size_t)n,
			    ", --no-%s", kw->name);
		if (strlen(left) > 28)
			fprintf(f, "  %s\n  %-28s ", left, "");
		else
			fprintf(f, "  %-28s ", left);
		def = kw->show != NULL ? kw->show : kw->def;
		if (def == NULL || kw->type == KW_COUNT)
			fprintf(f, "%s\n", kw->help);
		else if (31 + strlen(kw->help) + strlen(def) + 3 <= 79)
			fprintf(f, "%s [%s]\n", kw->help, def);
		else
			fprintf(f, "%s\n  %-28s [%s]\n", kw->help, "", def);
	}
}

/* Print the usage, generated from keywords[], and exit. */
void
config_usage(int status)
{
	FILE *f = status ? stderr : stdout;

	fprintf(f, "usage: vspcd [-dhnv] [-f FILE] [--OPTION VALUE]...\n\n");
	usage_options(f);
	fprintf(f, "\nEvery option except -f, -n, --help and --version may "
	    "also be a key in the\nYAML file (\"vm-listen: ADDR:PORT\"); "
	    "flags override the file. Keys shown\nas \"key:\" exist only "
	    "in the file.\n");
	exit(status);
}

/*
 * One getopt_long pass over argv. The first pass (pre) only takes -f, -n,
 * --help and --version and ignores everything else silently; the second
 * applies the rest. Unknown options and stray arguments print the usage
 * and exit, as --help and --version exit.
 */
static void
args_pass(struct cfg_ctx *ctx, int argc, char **argv, int pre)
{
	const struct keyword *kw;
	char what[80], *cause;
	int ch, neg, i;

	opts_init();
	optind = 0;
	opterr = !pre;
	while ((ch = getopt_long(argc, argv, shortopts, longopts,
	    NULL)) != -1) {
		if ((kw = kw_from_opt(ch, &neg)) == NULL) {
			if (pre)
				continue;
			config_usage(1);
		}
		i = (int)(kw - keywords);
		if (kw->type == KW_ACTION) {
			if (!pre)
				continue;
			if (strcmp(kw->name, "version") == 0) {
				printf("vspcd %s\n", VSPC_VERSION);
				exit(0);
			}
			config_usage(0);
		}
		if (pre != ((kw->flags & KW_CMDLINE) != 0))
			continue;
		snprintf(what, sizeof what, "--%s", kw->name);
		cause = NULL;
		switch (kw->type) {
		case KW_BOOL:
			(void)kw_set(ctx->cfg, kw, what, neg ? "false" : "true",
			    &cause);
			break;
		case KW_COUNT:
			if (!ctx->touched[i])
				*(int *)kw_field(ctx->cfg, kw, kw->off) = 0;
			if (*(int *)kw_field(ctx->cfg, kw, kw->off) < kw->max)
				(*(int *)kw_field(ctx->cfg, kw, kw->off))++;
			break;
		case KW_LIST:
			if (!ctx->touched[i])
				kw_list_reset(ctx->cfg, kw);
			/* FALLTHROUGH */
		default:
			(void)kw_set(ctx->cfg, kw, what, optarg, &cause);
			break;
		}
		ctx->touched[i] = 1;
		if (cause != NULL) {
			cfg_error(ctx, 0, "%s", cause);
			free(cause);
		}
	}
	if (!pre && optind != argc)
		config_usage(1);
}

/* Apply the command-line flags to conf; returns the number of errors. */
int
config_parse_args(struct config *conf, int argc, char **argv)
{
	struct cfg_ctx ctx = { .cfg = conf, .errout = stderr };

	args_pass(&ctx, argc, argv, 1);
	args_pass(&ctx, argc, argv, 0);
	return (ctx.nerr);
}

/* Is this scalar node a YAML null (~, null, or nothing)? */
static int
node_is_null(const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;

	if (n->type != YAML_SCALAR_NODE)
		return (0);
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return (0);
	return (*s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

/* 1-based line of a node. */
static size_t
node_line(const yaml_node_t *n)
{
	return (n->start_mark.line + 1);
}

/* Apply one scalar item to a keyword; report errors at its line. */
static void
file_scalar(struct cfg_ctx *ctx, const struct keyword *kw,
    const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;
	char *cause = NULL;

	if (node_is_null(n)) {
		cfg_error(ctx, node_line(n), "%s: missing value", kw->name);
		return;
	}
	if (strlen(s) != n->data.scalar.length) {
		cfg_error(ctx, node_line(n), "%s: value contains a NUL byte",
		    kw->name);
		return;
	}
	if (kw_set(ctx->cfg, kw, kw->name, s, &cause) == -1) {
		cfg_error(ctx, node_line(n), "%s", cause);
		free(cause);
	}
}

/*
 * The access key. Each rule is a mapping {who, consoles, rights}; each of
 * the three is one string or a non-empty list of strings. A rule with any
 * error is dropped whole (and the config is refused anyway).
 */
enum rule_part { RULE_WHO, RULE_CONSOLES, RULE_RIGHTS, RULE_NPARTS };

static const char *const rule_part_names[RULE_NPARTS] = {
	[RULE_WHO] = "who",
	[RULE_CONSOLES] = "consoles",
	[RULE_RIGHTS] = "rights",
};

/*
 * The scalar text of an item of a rule of key (access, sharing-rules), or
 * NULL after reporting why not.
 */
static const char *
access_scalar(struct cfg_ctx *ctx, const yaml_node_t *n, const char *key,
    const char *part)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE) {
		cfg_error(ctx, node_line(n), "%s: '%s' items must be "
		    "strings", key, part);
		return (NULL);
	}
	s = (const char *)n->data.scalar.value;
	if (node_is_null(n) || *s == '\0') {
		cfg_error(ctx, node_line(n), "%s: empty '%s' item", key, part);
		return (NULL);
	}
	if (strlen(s) != n->data.scalar.length) {
		cfg_error(ctx, node_line(n), "%s: '%s' item contains a NUL "
		    "byte", key, part);
		return (NULL);
	}
	return (s);
}

/*
 * Does a cert:SUBJECT value name one CN (CN=NAME with no other attribute)?
 * Then it matches the CN of a subject rather than the whole subject.
 */
static bool
access_cert_is_cn(const char *s)
{
	if (strncasecmp(s, "CN=", 3) != 0)
		return (false);
	for (s += 3; *s != '\0'; s++) {
		if (*s == '\\' && s[1] != '\0')
			s++;
		else if (*s == ',' || *s == '+' || *s == ';' || *s == '/')
			return (false);
	}
	return (true);
}

/* Parse one who item into w; -1 after reporting an error. */
static int
access_who_parse(struct cfg_ctx *ctx, const yaml_node_t *n, const char *s,
    struct access_who *w)
{
	static const struct {
		const char		*prefix;
		enum access_who_kind	 kind;
	} prefixes[] = {
		{ .prefix = "user:", .kind = WHO_USER },
		{ .prefix = "group:", .kind = WHO_GROUP },
		{ .prefix = "token:", .kind = WHO_TOKEN },
		{ .prefix = "cert:", .kind = WHO_CERT },
	};
	const char *name = NULL;
	char *d;
	size_t i, len;

	memset(w, 0, sizeof *w);
	if (strcmp(s, "anonymous") == 0) {
		w->kind = WHO_ANONYMOUS;
		return (0);
	}
	if (strcmp(s, "any") == 0) {
		w->kind = WHO_ANY;
		return (0);
	}
	for (i = 0; i < nitems(prefixes); i++) {
		len = strlen(prefixes[i].prefix);
		if (strncmp(s, prefixes[i].prefix, len) == 0) {
			w->kind = prefixes[i].kind;
			name = s + len;
			break;
		}
	}
	if (name == NULL) {
		cfg_error(ctx, node_line(n), "access: who '%s' is not "
		    "user:NAME, group:NAME, token:NAME, cert:SUBJECT, "
		    "anonymous or any", log_escape(s, strlen(s)));
		return (-1);
	}
	if (*name == '\0') {
		cfg_error(ctx, node_line(n), "access: who '%s' has an empty "
		    "name", log_escape(s, strlen(s)));
		return (-1);
	}
	if (w->kind == WHO_CERT && access_cert_is_cn(name)) {
		w->kind = WHO_CERT_CN;
		name += 3;
		if (*name == '\0') {
			cfg_error(ctx, node_line(n), "access: who '%s' has an "
			    "empty name", log_escape(s, strlen(s)));
			return (-1);
		}
	}
	if (strlen(name) >= IDENT_NAME_MAX) {
		cfg_error(ctx, node_line(n), "access: who '%s' is too long "
		    "(names at most %d bytes)", log_escape(s, strlen(s)),
		    IDENT_NAME_MAX - 1);
		return (-1);
	}
	w->name = xstrdup(name);
	if (w->kind == WHO_CERT_CN) {
		/* Compared with the unescaped CN of a subject. */
		for (d = w->name; *name != '\0'; name++) {
			if (*name == '\\' && name[1] != '\0')
				name++;
			*d++ = *name;
		}
		*d = '\0';
	}
	return (0);
}

/* Parse one consoles item of key into c; -1 after reporting an error. */
static int
access_console_parse(struct cfg_ctx *ctx, const yaml_node_t *n,
    const char *key, const char *s, struct access_console *c)
{
	memset(c, 0, sizeof *c);
	if (strlen(s) >= AUTHZ_PATTERN_MAX) {
		cfg_error(ctx, node_line(n), "%s: consoles pattern is "
		    "longer than %d bytes", key, AUTHZ_PATTERN_MAX - 1);
		return (-1);
	}
	if (vmwext_uuid_normalise((const uint8_t *)s, strlen(s),
	    c->uuid) == -1)
		c->uuid[0] = '\0';
	c->pattern = xstrdup(s);
	return (0);
}

/* Parse one rights item into *rights; -1 after reporting an error. */
static int
access_right_parse(struct cfg_ctx *ctx, const yaml_node_t *n, const char *s,
    int *rights)
{
	static const struct {
		const char	*name;
		int		 bits;
	} names[] = {
		{ .name = "read", .bits = RIGHT_READ },
		{ .name = "write", .bits = RIGHT_READ | RIGHT_WRITE },
		{ .name = "force", .bits = RIGHT_READ | RIGHT_WRITE |
		    RIGHT_FORCE },
		{ .name = "admin", .bits = RIGHT_ALL },
	};
	size_t i;

	for (i = 0; i < nitems(names); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*rights |= names[i].bits;
			return (0);
		}
	}
	cfg_error(ctx, node_line(n), "access: unknown right '%s' (read, write, "
	    "force or admin)", log_escape(s, strlen(s)));
	return (-1);
}

/*
 * Collect the items of one part (a scalar or a sequence of scalars) into
 * a new array of the rule. Returns the number of errors.
 */
static int
access_part(struct cfg_ctx *ctx, yaml_document_t *doc, yaml_node_t *v,
    enum rule_part part, struct access_rule *r)
{
	const char *name = rule_part_names[part], *s;
	yaml_node_item_t *it;
	yaml_node_t *item;
	size_t n, i;
	int nerr = ctx->nerr, ok;

	if (v->type == YAML_MAPPING_NODE) {
		cfg_error(ctx, node_line(v), "access: '%s' wants a string or "
		    "a list of strings", name);
		return (1);
	}
	if (v->type == YAML_SCALAR_NODE)
		n = 1;
	else
		n = (size_t)(v->data.sequence.items.top -
		    v->data.sequence.items.start);
	if (n == 0) {
		cfg_error(ctx, node_line(v), "access: empty '%s' list", name);
		return (1);
	}
	if (n > AUTHZ_MAX_ITEMS) {
		cfg_error(ctx, node_line(v), "access: too many '%s' items "
		    "(%zu, at most %d)", name, n, AUTHZ_MAX_ITEMS);
		return (1);
	}
	if (part == RULE_WHO)
		r->who = xcalloc(n, sizeof *r->who);
	else if (part == RULE_CONSOLES)
		r->consoles = xcalloc(n, sizeof *r->consoles);
	for (i = 0; i < n; i++) {
		if (v->type == YAML_SCALAR_NODE)
			item = v;
		else {
			it = v->data.sequence.items.start + i;
			if ((item = yaml_document_get_node(doc, *it)) == NULL)
				fatalx("%s: bad item", __func__);
		}
		if ((s = access_scalar(ctx, item, "access", name)) == NULL)
			continue;
		switch (part) {
		case RULE_WHO:
			ok = access_who_parse(ctx, item, s,
			    &r->who[r->n_who]);
			if (ok == 0)
				r->n_who++;
			break;
		case RULE_CONSOLES:
			ok = access_console_parse(ctx, item, "access", s,
			    &r->consoles[r->n_consoles]);
			if (ok == 0)
				r->n_consoles++;
			break;
		default:
			(void)access_right_parse(ctx, item, s, &r->rights);
			break;
		}
	}
	return (ctx->nerr - nerr);
}

/* Parse one rule into r; -1 (r cleared) if it has any error. */
static int
access_rule_parse(struct cfg_ctx *ctx, yaml_document_t *doc, yaml_node_t *n,
    struct access_rule *r)
{
	yaml_node_pair_t *pair;
	yaml_node_t *k, *v;
	size_t seen[RULE_NPARTS] = { 0 };
	const char *key;
	int nerr = 0, i, part;

	memset(r, 0, sizeof *r);
	r->line = node_line(n);
	if (n->type != YAML_MAPPING_NODE) {
		cfg_error(ctx, node_line(n), "access: a rule must be a "
		    "mapping with who, consoles and rights");
		return (-1);
	}
	for (pair = n->data.mapping.pairs.start;
	    pair < n->data.mapping.pairs.top; pair++) {
		k = yaml_document_get_node(doc, pair->key);
		v = yaml_document_get_node(doc, pair->value);
		if (k == NULL || v == NULL)
			fatalx("%s: bad node", __func__);
		if (k->type != YAML_SCALAR_NODE) {
			cfg_error(ctx, node_line(k), "access: rule key is not "
			    "a string");
			nerr++;
			continue;
		}
		key = (const char *)k->data.scalar.value;
		for (part = 0; part < RULE_NPARTS; part++)
			if (strcmp(key, rule_part_names[part]) == 0)
				break;
		if (part == RULE_NPARTS) {
			cfg_error(ctx, node_line(k), "access: unknown rule key "
			    "'%s' (who, consoles, rights)",
			    log_escape(key, k->data.scalar.length));
			nerr++;
			continue;
		}
		if (seen[part] != 0) {
			cfg_error(ctx, node_line(k), "access: duplicate rule "
			    "key '%s' (first at line %zu)", key, seen[part]);
			nerr++;
			continue;
		}
		seen[part] = node_line(k);
		nerr += access_part(ctx, doc, v, (enum rule_part)part, r);
	}
	for (i = 0; i < RULE_NPARTS; i++) {
		if (seen[i] == 0) {
			cfg_error(ctx, node_line(n), "access: rule has no "
			    "'%s'", rule_part_names[i]);
			nerr++;
		}
	}
	if (nerr != 0) {
		access_rule_clear(r);
		return (-1);
	}
	return (0);
}

/*
 * The number of items of a rules sequence v (key what, at most max), or -1
 * after reporting that v is not a sequence or is too long.
 */
static ssize_t
rules_count(struct cfg_ctx *ctx, yaml_node_t *v, const char *what,
    const char *shape, size_t max)
{
	size_t n;

	if (v->type != YAML_SEQUENCE_NODE) {
		cfg_error(ctx, node_line(v), "%s wants a list of rules (%s; [] "
		    "for none)", what, shape);
		return (-1);
	}
	n = (size_t)(v->data.sequence.items.top -
	    v->data.sequence.items.start);
	if (n > max) {
		cfg_error(ctx, node_line(v), "%s: too many rules (%zu, at "
		    "most %zu)", what, n, max);
		return (-1);
	}
	return ((ssize_t)n);
}

/* Replace the access rules of the config with the sequence v. */
static void
access_parse(struct cfg_ctx *ctx, yaml_document_t *doc, yaml_node_t *v)
{
	struct config *conf = ctx->cfg;
	yaml_node_item_t *it;
	yaml_node_t *item;
	size_t n, i;
	ssize_t sn;

	access_free(conf);
	conf->access_set = 1;
	if ((sn = rules_count(ctx, v, "access", "{who, consoles, rights}",
	    AUTHZ_MAX_RULES)) <= 0)
		return;
	n = (size_t)sn;
	conf->access = xcalloc(n, sizeof *conf->access);
	for (i = 0; i < n; i++) {
		it = v->data.sequence.items.start + i;
		if ((item = yaml_document_get_node(doc, *it)) == NULL)
			fatalx("%s: bad item", __func__);
		if (access_rule_parse(ctx, doc, item,
		    &conf->access[conf->n_access]) == 0)
			conf->n_access++;
	}
}

/*
 * sharing-rules: a sequence of {consoles: GLOB or [GLOB...], mode:
 * shared|single-writer}; consoles match as in access rules, and the first
 * rule that matches a console gives its mode (else the sharing key). A
 * rule with any error is dropped whole (and the config refused anyway).
 */
static int
sharing_rule_parse(struct cfg_ctx *ctx, yaml_document_t *doc,
    yaml_node_t *n, struct sharing_rule *r)
{
	yaml_node_pair_t *pair;
	yaml_node_t *k, *v, *item;
	const char *key, *s;
	size_t seen_c = 0, seen_m = 0, cnt, i;
	int nerr = ctx->nerr, m;

	memset(r, 0, sizeof *r);
	r->line = node_line(n);
	if (n->type != YAML_MAPPING_NODE) {
		cfg_error(ctx, node_line(n), "sharing-rules: a rule must be a "
		    "mapping with consoles and mode");
		return (-1);
	}
	for (pair = n->data.mapping.pairs.start;
	    pair < n->data.mapping.pairs.top; pair++) {
		k = yaml_document_get_node(doc, pair->key);
		v = yaml_document_get_node(doc, pair->value);
		if (k == NULL || v == NULL)
			fatalx("%s: bad node", __func__);
		key = k->type == YAML_SCALAR_NODE ?
		    (const char *)k->data.scalar.value : "";
		if (strcmp(key, "mode") == 0) {
			if (seen_m != 0) {
				cfg_error(ctx, node_line(k), "sharing-rules: "
				    "duplicate rule key 'mode' (first at line "
				    "%zu)", seen_m);
				continue;
			}
			seen_m = node_line(k);
			if ((s = access_scalar(ctx, v, "sharing-rules",
			    "mode")) == NULL)
				continue;
			for (m = 0; sharing_mode_names[m] != NULL; m++)
				if (strcmp(s, sharing_mode_names[m]) == 0)
					break;
			if (sharing_mode_names[m] == NULL)
				cfg_error(ctx, node_line(v), "sharing-rules: "
				    "mode '%s' is not shared or single-writer",
				    log_escape(s, strlen(s)));
			else
				r->mode = (enum sharing_mode)m;
			continue;
		}
		if (strcmp(key, "consoles") != 0) {
			cfg_error(ctx, node_line(k), "sharing-rules: unknown "
			    "rule key '%s' (consoles, mode)", log_escape(key,
			    strlen(key)));
			continue;
		}
		if (seen_c != 0) {
			cfg_error(ctx, node_line(k), "sharing-rules: duplicate "
			    "rule key 'consoles' (first at line %zu)", seen_c);
			continue;
		}
		seen_c = node_line(k);
		if (v->type == YAML_MAPPING_NODE) {
			cfg_error(ctx, node_line(v), "sharing-rules: "
			    "'consoles' wants a string or a list of strings");
			continue;
		}
		cnt = v->type == YAML_SCALAR_NODE ? 1 :
		    (size_t)(v->data.sequence.items.top -
		    v->data.sequence.items.start);
		if (cnt == 0 || cnt > AUTHZ_MAX_ITEMS) {
			cfg_error(ctx, node_line(v), "sharing-rules: 'consoles' "
			    "wants 1 to %d items", AUTHZ_MAX_ITEMS);
			continue;
		}
		r->consoles = xcalloc(cnt, sizeof *r->consoles);
		for (i = 0; i < cnt; i++) {
			item = v;
			if (v->type == YAML_SEQUENCE_NODE &&
			    (item = yaml_document_get_node(doc,
			    v->data.sequence.items.start[i])) == NULL)
				fatalx("%s: bad item", __func__);
			if ((s = access_scalar(ctx, item, "sharing-rules",
			    "consoles")) != NULL &&
			    access_console_parse(ctx, item, "sharing-rules", s,
			    &r->consoles[r->n_consoles]) == 0)
				r->n_consoles++;
		}
	}
	if (seen_c == 0)
		cfg_error(ctx, node_line(n), "sharing-rules: rule has no "
		    "'consoles'");
	if (seen_m == 0)
		cfg_error(ctx, node_line(n), "sharing-rules: rule has no "
		    "'mode'");
	if (ctx->nerr != nerr) {
		for (i = 0; i < (size_t)r->n_consoles; i++)
			free(r->consoles[i].pattern);
		free(r->consoles);
		memset(r, 0, sizeof *r);
		return (-1);
	}
	return (0);
}

/* Replace the sharing rules of the config with the sequence v. */
static void
sharing_parse(struct cfg_ctx *ctx, yaml_document_t *doc, yaml_node_t *v)
{
	struct config *conf = ctx->cfg;
	yaml_node_t *item;
	size_t n, i;
	ssize_t sn;

	sharing_free(conf);
	if ((sn = rules_count(ctx, v, "sharing-rules", "{consoles, mode}",
	    SHARING_MAX_RULES)) <= 0)
		return;
	n = (size_t)sn;
	conf->sharing_rules = xcalloc(n, sizeof *conf->sharing_rules);
	for (i = 0; i < n; i++) {
		if ((item = yaml_document_get_node(doc,
		    v->data.sequence.items.start[i])) == NULL)
			fatalx("%s: bad item", __func__);
		if (sharing_rule_parse(ctx, doc, item,
		    &conf->sharing_rules[conf->n_sharing_rules]) == 0)
			conf->n_sharing_rules++;
	}
}

/* Apply one key: value pair of the top-level mapping. */
static void
file_pair(struct cfg_ctx *ctx, yaml_document_t *doc, yaml_node_pair_t *pair)
{
	yaml_node_t *k, *v, *item;
	yaml_node_item_t *it;
	const struct keyword *kw;
	const char *name;
	size_t i;

	k = yaml_document_get_node(doc, pair->key);
	v = yaml_document_get_node(doc, pair->value);
	if (k == NULL || v == NULL)
		fatalx("%s: bad node", __func__);
	if (k->type != YAML_SCALAR_NODE) {
		cfg_error(ctx, node_line(k), "key is not a string");
		return;
	}
	name = (const char *)k->data.scalar.value;
	if ((kw = kw_find(name)) == NULL) {
		cfg_error(ctx, node_line(k), "unknown key '%s'",
		    log_escape(name, k->data.scalar.length));
		return;
	}
	if (kw->flags & KW_CMDLINE) {
		cfg_error(ctx, node_line(k), "'%s' is only valid on the "
		    "command line", name);
		return;
	}
	i = (size_t)(kw - keywords);
	if (ctx->line[i] != 0) {
		cfg_error(ctx, node_line(k), "duplicate key '%s' (first at "
		    "line %zu)", name, ctx->line[i]);
		return;
	}
	ctx->line[i] = node_line(k);

	if (kw->type == KW_RULES) {
		access_parse(ctx, doc, v);
		return;
	}
	if (kw->type == KW_SHARING) {
		sharing_parse(ctx, doc, v);
		return;
	}
	if (kw->type == KW_LIST) {
		kw_list_reset(ctx->cfg, kw);
		if (v->type == YAML_SCALAR_NODE) {
			file_scalar(ctx, kw, v);
			return;
		}
		if (v->type != YAML_SEQUENCE_NODE) {
			cfg_error(ctx, node_line(v), "%s wants a string or a "
			    "list of strings", name);
			return;
		}
		for (it = v->data.sequence.items.start;
		    it < v->data.sequence.items.top; it++) {
			item = yaml_document_get_node(doc, *it);
			if (item == NULL)
				fatalx("%s: bad item", __func__);
			if (item->type != YAML_SCALAR_NODE) {
				cfg_error(ctx, node_line(item), "%s: list "
				    "items must be strings", name);
				continue;
			}
			file_scalar(ctx, kw, item);
		}
		return;
	}
	if (v->type != YAML_SCALAR_NODE) {
		cfg_error(ctx, node_line(v), "%s wants a single value, not a "
		    "%s", name, v->type == YAML_SEQUENCE_NODE ? "list" :
		    "mapping");
		return;
	}
	file_scalar(ctx, kw, v);
}

/* Report a libyaml parser error. */
static void
file_syntax_error(struct cfg_ctx *ctx, const yaml_parser_t *p,
    const char *buf, size_t len)
{
	size_t line = p->problem_mark.line + 1, i;
	const char *problem = p->problem != NULL ? p->problem : "error";

	if (p->error == YAML_READER_ERROR) {
		for (line = 1, i = 0; i < p->problem_offset && i < len; i++)
			if (buf[i] == '\n')
				line++;
	}
	if (p->context != NULL)
		cfg_error(ctx, line, "YAML syntax error: %s: %s", p->context,
		    problem);
	else
		cfg_error(ctx, line, "YAML syntax error: %s", problem);
}

/* Read a whole file into memory; NULL and an error if it cannot be read. */
static char *
file_read(struct cfg_ctx *ctx, const char *path, size_t *lenp)
{
	FILE *f;
	char *buf;
	size_t len;
	int error;

	if ((f = fopen(path, "r")) == NULL) {
		ctx->path = NULL;
		cfg_error(ctx, 0, "%s: %s", path, strerror(errno));
		ctx->path = path;
		return (NULL);
	}
	buf = xmalloc(CONFIG_FILE_MAX + 1);
	len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	error = ferror(f);
	fclose(f);
	if (error || len > CONFIG_FILE_MAX) {
		ctx->path = NULL;
		cfg_error(ctx, 0, "%s: %s", path, error ? "read error" :
		    "file too large");
		ctx->path = path;
		free(buf);
		return (NULL);
	}
	buf[len] = '\0';
	*lenp = len;
	return (buf);
}

/* Apply a YAML file to conf; print every error; return their number. */
int
config_load_file(struct config *conf, const char *path, FILE *errout)
{
	struct cfg_ctx ctx = { .cfg = conf, .errout = errout, .path = path };
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	yaml_node_pair_t *pair;
	char *buf;
	size_t len = 0;

	if ((buf = file_read(&ctx, path, &len)) == NULL)
		return (ctx.nerr);
	if (!yaml_parser_initialize(&parser))
		fatalx("%s: yaml_parser_initialize", __func__);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);

	if (!yaml_parser_load(&parser, &doc)) {
		file_syntax_error(&ctx, &parser, buf, len);
		goto out;
	}
	root = yaml_document_get_root_node(&doc);
	if (root != NULL && root->type != YAML_MAPPING_NODE)
		cfg_error(&ctx, node_line(root), "top level must be a "
		    "mapping (key: value)");
	else if (root != NULL) {
		for (pair = root->data.mapping.pairs.start;
		    pair < root->data.mapping.pairs.top; pair++)
			file_pair(&ctx, &doc, pair);
	}
	yaml_document_delete(&doc);

	/* A second document is an error; so is a syntax error after it. */
	if (root != NULL) {
		if (!yaml_parser_load(&parser, &doc)) {
			file_syntax_error(&ctx, &parser, buf, len);
			goto out;
		}
		if ((root = yaml_document_get_root_node(&doc)) != NULL)
			cfg_error(&ctx, node_line(root), "only one YAML "
			    "document is allowed");
		yaml_document_delete(&doc);
	}
out:
	yaml_parser_delete(&parser);
	free(buf);
	return (ctx.nerr);
}

/* Check an int or size keyword against its range. */
static void
validate_range(struct cfg_ctx *ctx, const struct keyword *kw)
{
	const void *field = (const char *)ctx->cfg + kw->off;
	long long v;

	if (kw->type == KW_SIZE) {
		if (*(const size_t *)field > (unsigned long long)kw->max) {
			cfg_error(ctx, 0, "%s %zu is too large", kw->name,
			    *(const size_t *)field);
			return;
		}
		v = (long long)*(const size_t *)field;
	} else
		v = *(const int *)field;
	if (v < kw->min || v > kw->max)
		cfg_error(ctx, 0, "%s %lld is out of range (%lld to %lld)",
		    kw->name, v, kw->min, kw->max);
}

/* Is a token of this name configured? */
static bool
token_known(const struct config *conf, const char *name)
{
	size_t n;
	int i;

	for (i = 0; i < conf->n_tokens; i++) {
		n = token_name_len(conf->tokens[i]);
		if (n == strlen(name) && strncmp(conf->tokens[i], name, n) == 0)
			return (true);
	}
	return (false);
}

/* Check conf as a whole; print every problem; return their number. */
int
config_validate(const struct config *conf, FILE *errout)
{
	struct cfg_ctx ctx = { .cfg = (struct config *)conf,
	    .errout = errout };
	const struct keyword *kw;
	size_t i;
	int j;

	for (i = 0; i < NKW; i++) {
		kw = &keywords[i];
		if (kw->type == KW_INT || kw->type == KW_SIZE ||
		    kw->type == KW_COUNT)
			validate_range(&ctx, kw);
	}
	if (conf->n_vm_listen + conf->n_vm_listen_tls < 1)
		cfg_error(&ctx, 0, "at least one vm-listen or vm-listen-tls "
		    "is needed");
	if ((conf->n_vm_listen_tls > 0 || conf->client_listen_tls != NULL ||
	    conf->port_tls || conf->admin_tls) &&
	    (conf->tls_cert == NULL || conf->tls_key == NULL))
		cfg_error(&ctx, 0, "TLS listeners need tls-cert and tls-key");
	if (conf->tls_client_certs != TLS_CLIENT_OFF &&
	    conf->tls_client_ca == NULL)
		cfg_error(&ctx, 0, "tls-client-certs %s needs tls-client-ca",
		    tls_client_names[conf->tls_client_certs]);
	if (conf->n_vm_listen > VSPCD_MAX_VM_LISTEN)
		cfg_error(&ctx, 0, "too many vm-listen (%d, at most %d)",
		    conf->n_vm_listen, VSPCD_MAX_VM_LISTEN);
	for (j = 0; j < conf->n_vm_listen && j < VSPCD_MAX_VM_LISTEN; j++)
		if (conf->vm_listen[j] == NULL || !addr_ok(conf->vm_listen[j]))
			cfg_error(&ctx, 0, "vm-listen '%s' wants ADDR:PORT",
			    conf->vm_listen[j] ? conf->vm_listen[j] : "");
	if (conf->client_listen != NULL && !addr_ok(conf->client_listen))
		cfg_error(&ctx, 0, "client-listen '%s' wants ADDR:PORT or off",
		    conf->client_listen);
	if (conf->client_listen_ro != NULL &&
	    !addr_ok(conf->client_listen_ro))
		cfg_error(&ctx, 0, "client-listen-ro '%s' wants ADDR:PORT or "
		    "off", conf->client_listen_ro);
	if (conf->admin_listen != NULL && !addr_ok(conf->admin_listen))
		cfg_error(&ctx, 0, "admin-listen '%s' wants ADDR:PORT or off",
		    conf->admin_listen);
	if (conf->n_service_uri < 1)
		cfg_error(&ctx, 0, "at least one service-uri is needed");
	if (conf->n_service_uri > VSPCD_MAX_URIS)
		cfg_error(&ctx, 0, "too many service-uri (%d, at most %d)",
		    conf->n_service_uri, VSPCD_MAX_URIS);
	for (j = 0; j < conf->n_service_uri && j < VSPCD_MAX_URIS; j++)
		if (conf->service_uri[j] == NULL ||
		    conf->service_uri[j][0] == '\0' ||
		    strlen(conf->service_uri[j]) >= VSPCD_URI_MAX)
			cfg_error(&ctx, 0, "service-uri %d is empty or longer "
			    "than %d bytes", j + 1, VSPCD_URI_MAX - 1);
	if (!(conf->port_lo == -1 ||
	    (conf->port_lo == 0 && conf->port_hi == 0) ||
	    (conf->port_lo >= 1 && conf->port_lo <= conf->port_hi &&
	    conf->port_hi <= 65535)))
		cfg_error(&ctx, 0, "port-range %d-%d is not LO-HI with "
		    "1 <= LO <= HI <= 65535", conf->port_lo, conf->port_hi);
	for (j = 0; j < conf->n_vm_allow && j < VSPCD_MAX_ALLOW; j++) {
		struct cidr c;

		if (conf->vm_allow[j] == NULL ||
		    cidr_parse(conf->vm_allow[j], &c) == -1)
			cfg_error(&ctx, 0, "vm-allow '%s' is not a network "
			    "(ADDR or ADDR/BITS)", conf->vm_allow[j] ?
			    conf->vm_allow[j] : "");
	}
	if (conf->state_dir == NULL || conf->state_dir[0] == '\0')
		cfg_error(&ctx, 0, "state-dir is empty");
	if (conf->client_bind == NULL || conf->client_bind[0] == '\0')
		cfg_error(&ctx, 0, "client-bind is empty");
	if (conf->log_enabled && conf->log_dir != NULL &&
	    conf->log_dir[0] == '\0')
		cfg_error(&ctx, 0, "log-dir is empty (use off for no logs)");
	if (conf->log_timestamp_format == NULL ||
	    conf->log_timestamp_format[0] == '\0')
		cfg_error(&ctx, 0, "log-timestamp-format is empty");
	if (conf->log_max_size != 0 && conf->log_max_size < CONFIG_LOG_SIZE_MIN)
		cfg_error(&ctx, 0, "log-max-size %zu is too small (0 or at "
		    "least %d)", conf->log_max_size, CONFIG_LOG_SIZE_MIN);
	for (j = 0; j < conf->n_access; j++) {
		const struct access_rule *r = &conf->access[j];
		int k;

		for (k = 0; k < r->n_who; k++)
			if (r->who[k].kind == WHO_TOKEN &&
			    !token_known(conf, r->who[k].name))
				cfg_error(&ctx, 0, "access: the rule at line "
				    "%zu names token '%s', which is not in "
				    "tokens", r->line, r->who[k].name);
	}
	return (ctx.nerr);
}

/*
 * Build conf from defaults, the -f file and the flags, then validate it.
 * Reusable on a fresh (zeroed or freed) struct with the same argv, e.g. on
 * SIGHUP. Returns 0 or the number of errors, all printed to errout.
 */
int
config_build(struct config *conf, int argc, char **argv, FILE *errout)
{
	struct cfg_ctx ctx = { .cfg = conf, .errout = errout };

	config_defaults(conf);
	args_pass(&ctx, argc, argv, 1);
	if (conf->config_file != NULL)
		ctx.nerr += config_load_file(conf, conf->config_file, errout);
	args_pass(&ctx, argc, argv, 0);
	return (ctx.nerr + config_validate(conf, errout));
}
