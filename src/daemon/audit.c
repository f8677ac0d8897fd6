/*
 * audit.c: the audit log (T3, T5, T11; G7, G10).
 *
 * One JSON object per line, in a file of its own (never the daemon log,
 * never a console log, so a guest cannot forge a record by printing one):
 *   {"time":"2026-11-21T06:12:13.123Z","event":"attach","kind":"unix",
 *    "user":"alice","uid":1000,"source":"unix","console":"<port id>",
 *    "detail":"..."}
 * kind, user, uid and source describe the identity (user is the unix user,
 * token name or certificate subject; uid only for unix identities); each
 * of them, console and detail is left out when there is nothing to say.
 * The API takes no guest bytes and no secrets.
 *
 * Escaping: every string is first made valid UTF-8 (an invalid byte becomes
 * U+FFFD, DEL too), then jansson writes it with JSON_ENSURE_ASCII, so a
 * line holds printable ASCII only: quotes, newlines, ESC and C1 controls
 * become \uXXXX escapes and `tail -f` of the file cannot drive a terminal.
 *
 * The file (default STATE_DIR/audit.log, "audit-log: off" for none) is
 * opened O_APPEND | O_NOFOLLOW | O_NONBLOCK, created 0600, and must be a
 * regular file with one link: a symlink, FIFO or device at the path is
 * refused. Each line (with a "lost" record before it when earlier lines
 * could not be written) goes out in one write(2); a short write is cut off
 * again with ftruncate so the file stays whole lines. On any error the
 * line is counted as lost, a warning is logged at most once a minute, and
 * the daemon goes on; while the file is not open, each event tries to open
 * it again. audit_reopen (SIGHUP) closes it and opens the configured path.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "vspcd.h"

#define AUDIT_WARN_SECS		60	/* at most one warning per this */
#define AUDIT_FIELD_MAX		4096	/* input bytes kept per string */

static int	 audit_fd = -1;
static char	*audit_path;		/* NULL: off */
static uint64_t	 audit_lost;		/* lines lost since the last write */
static uint64_t	 audit_lost_total;
static bool	 audit_warned;
static time_t	 audit_warn_at;

/* Seconds on the monotonic clock. */
static time_t
audit_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

/*
 * Log a problem with the audit log (err 0: no errno), at most once per
 * AUDIT_WARN_SECS.
 */
static void
audit_warn(const char *what, int err)
{
	time_t now = audit_now();

	if (audit_warned && now - audit_warn_at < AUDIT_WARN_SECS)
		return;
	audit_warned = true;
	audit_warn_at = now;
	log_warnx("audit log %s: %s%s%s (lines lost so far: %" PRIu64 ")",
	    audit_path != NULL ? log_escape(audit_path, strlen(audit_path)) :
	    "(none)", what, err != 0 ? ": " : "", err != 0 ? strerror(err) :
	    "", audit_lost_total);
}

/* The path wanted by cfg, or NULL when the audit log is off. */
static char *
audit_path_wanted(void)
{
	char *path;

	if (!cfg.audit_enabled)
		return (NULL);
	if (cfg.audit_log != NULL)
		return (xstrdup(cfg.audit_log));
	if (cfg.state_dir == NULL)
		return (NULL);
	if (asprintf(&path, "%s/audit.log", cfg.state_dir) == -1)
		fatalx("%s: asprintf", __func__);
	return (path);
}

/*
 * Open audit_path; -1 with *what and errno set on failure (the caller
 * counts and warns).
 */
static int
audit_open(const char **what)
{
	struct stat st;
	int fd, flags, error;

	flags = O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK | O_NOCTTY;
	*what = "cannot open";
	if ((fd = open(audit_path, flags, 0600)) == -1)
		return (-1);
	if (fstat(fd, &st) == -1) {
		error = errno;
		close(fd);
		errno = error;
		return (-1);
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		*what = "not a regular file with one link";
		close(fd);
		errno = EPERM;
		return (-1);
	}
	audit_fd = fd;
	return (0);
}

/* Open the audit log named by cfg (nothing if it is off). */
void
audit_init(void)
{
	audit_reopen();
}

/* Close the audit log. */
void
audit_shutdown(void)
{
	if (audit_lost_total != 0)
		log_warnx("audit log: lines lost in all: %" PRIu64,
		    audit_lost_total);
	if (audit_fd != -1)
		close(audit_fd);
	audit_fd = -1;
	free(audit_path);
	audit_path = NULL;
	audit_lost = audit_lost_total = 0;
	audit_warned = false;
}

/* Close the audit log and open cfg's path again (SIGHUP, rotation). */
void
audit_reopen(void)
{
	const char *what;

	if (audit_fd != -1)
		close(audit_fd);
	audit_fd = -1;
	free(audit_path);
	audit_warned = false;	/* a new file deserves a new warning */
	if ((audit_path = audit_path_wanted()) != NULL &&
	    audit_open(&what) == -1)
		audit_warn(what, errno);
}

/* The name of an identity kind in the log. */
const char *
audit_kind_name(enum ident_kind kind)
{
	switch (kind) {
	case IDENT_ANONYMOUS:
		return ("anonymous");
	case IDENT_UNIX:
		return ("unix");
	case IDENT_TOKEN:
		return ("token");
	case IDENT_CERT:
		return ("cert");
	}
	return ("unknown");
}

/*
 * A JSON string of untrusted text: at most max bytes of s, invalid UTF-8
 * and DEL replaced by U+FFFD. NULL only if jansson is out of memory.
 */
static json_t *
audit_string(const char *s, size_t max)
{
	static const uint8_t repl[3] = { 0xef, 0xbf, 0xbd };	/* U+FFFD */
	const uint8_t *p = (const uint8_t *)s;
	size_t len = strnlen(s, max), n;
	uint8_t *out, *o;
	json_t *j;

	o = out = xmalloc(len * 3 + 1);
	while (len > 0) {
		n = util_utf8_len(p, len);
		if (n == 0 || (n == 1 && p[0] == 0x7f)) {
			memcpy(o, repl, sizeof repl);
			o += sizeof repl;
			n = 1;
		} else {
			memcpy(o, p, n);
			o += n;
		}
		p += n;
		len -= n;
	}
	j = json_stringn((const char *)out, (size_t)(o - out));
	free(out);
	return (j);
}

/* Add an untrusted string field; false if out of memory. */
static bool
audit_set_str(json_t *o, const char *key, const char *s, size_t max)
{
	json_t *j;

	if ((j = audit_string(s, max)) == NULL)
		return (false);
	return (json_object_set_new(o, key, j) == 0);
}

/* The current time as 2026-11-21T06:12:13.123Z. */
static void
audit_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof sec, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03ldZ", sec, ts.tv_nsec / 1000000);
}

/* Build one line (without the newline); NULL if out of memory. */
static char *
audit_format(const char *stamp, const char *event, const struct identity *who,
    const char *console, const char *detail, uint64_t lost)
{
	json_t *o;
	char *s;
	bool ok;

	if ((o = json_object()) == NULL)
		return (NULL);
	ok = json_object_set_new(o, "time", json_string(stamp)) == 0 &&
	    audit_set_str(o, "event", event, AUDIT_FIELD_MAX);
	if (ok && lost != 0)
		ok = json_object_set_new(o, "count",
		    json_integer((json_int_t)lost)) == 0;
	if (ok && who != NULL) {
		ok = json_object_set_new(o, "kind",
		    json_string(audit_kind_name(who->kind))) == 0;
		if (ok && who->name[0] != '\0')
			ok = audit_set_str(o, "user", who->name,
			    sizeof who->name);
		if (ok && who->kind == IDENT_UNIX)
			ok = json_object_set_new(o, "uid",
			    json_integer((json_int_t)who->uid)) == 0;
		if (ok && who->source[0] != '\0')
			ok = audit_set_str(o, "source", who->source,
			    sizeof who->source);
	}
	if (ok && console != NULL)
		ok = audit_set_str(o, "console", console, AUDIT_FIELD_MAX);
	if (ok && detail != NULL)
		ok = audit_set_str(o, "detail", detail, AUDIT_FIELD_MAX);
	s = ok ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII |
	    JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return (s);
}

/* Write one event line; see the top of the file. */
void
audit_event(const char *event, const struct identity *who,
    const char *console, const char *detail)
{
	char stamp[64], *line, *gap = NULL, *buf;
	const char *what;
	struct stat st;
	ssize_t w;
	size_t len;
	int n;

	if (audit_path == NULL || event == NULL)
		return;
	if (audit_fd == -1 && audit_open(&what) == -1) {
		audit_lost++;
		audit_lost_total++;
		audit_warn(what, errno);
		return;
	}
	audit_time(stamp, sizeof stamp);
	if ((line = audit_format(stamp, event, who, console, detail, 0)) ==
	    NULL) {
		audit_lost++;
		audit_lost_total++;
		audit_warn("cannot format", ENOMEM);
		return;
	}
	if (audit_lost != 0)
		gap = audit_format(stamp, "lost", NULL, NULL, NULL, audit_lost);
	n = asprintf(&buf, "%s%s%s\n", gap != NULL ? gap : "",
	    gap != NULL ? "\n" : "", line);
	free(gap);
	free(line);
	if (n == -1) {
		audit_lost++;
		audit_lost_total++;
		audit_warn("cannot format", ENOMEM);
		return;
	}
	len = (size_t)n;
	if (fstat(audit_fd, &st) == -1)
		st.st_size = -1;
	do
		w = write(audit_fd, buf, len);
	while (w == -1 && errno == EINTR);
	free(buf);
	if (w >= 0 && (size_t)w == len) {
		audit_lost = 0;
		return;
	}
	audit_lost++;
	audit_lost_total++;
	if (w == -1) {
		audit_warn("write failed", errno);
		return;
	}
	/* A short write: cut the partial line off again. */
	if (st.st_size >= 0 && ftruncate(audit_fd, st.st_size) == 0)
		audit_warn("short write (disk full?), line cut off", 0);
	else
		audit_warn("short write (disk full?), partial line left", 0);
}
