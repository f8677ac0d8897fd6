#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

static int log_foreground = 1;
static int log_level = LOG_LVL_INFO;

/* Start logging. */
void
log_init(int foreground, int level, const char *ident)
{
	log_foreground = foreground;
	log_level = level;
	if (!foreground)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* Change the level. */
void
log_set_level(int level)
{
	log_level = level;
}

/* Current level. */
int
log_get_level(void)
{
	return (log_level);
}

static void log_vemit(int, int, const char *, va_list) printflike(3, 0);

/* Emit one line at a syslog priority, optionally with an errno string. */
static void
log_vemit(int pri, int err, const char *fmt, va_list ap)
{
	char buf[1024];
	int n;

	n = vsnprintf(buf, sizeof buf, fmt, ap);
	if (n < 0)
		return;
	if (err != 0 && (size_t)n < sizeof buf)
		snprintf(buf + n, sizeof buf - n, ": %s", strerror(err));
	if (log_foreground) {
		fprintf(stderr, "vspcd: %s\n", buf);
		fflush(stderr);
	} else
		syslog(pri, "%s", buf);
}

#define LOG_BODY(lvl, pri, err) do {				\
	va_list ap;						\
	if (log_level < (lvl))					\
		return;						\
	va_start(ap, fmt);					\
	log_vemit((pri), (err), fmt, ap);			\
	va_end(ap);						\
} while (0)

/* Warning with errno. */
void
log_warn(const char *fmt, ...)
{
	int err = errno;

	LOG_BODY(LOG_LVL_WARN, LOG_WARNING, err);
}

/* Warning. */
void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_WARN, LOG_WARNING, 0);
}

/* Informational. */
void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_INFO, LOG_INFO, 0);
}

/* Debug. */
void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LVL_DEBUG, LOG_DEBUG, 0);
}

/* Log with errno and exit. */
void
fatal(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, err, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Log and exit. */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Make untrusted bytes safe for a log line. */
const char *
log_escape(const void *p, size_t len)
{
	static char buf[256 * 4 + 4];
	const unsigned char *s = p;
	size_t i, o = 0;

	if (len > 256)
		len = 256;
	for (i = 0; i < len; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
			buf[o++] = (char)s[i];
		else
			o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x",
			    s[i]);
	}
	buf[o] = '\0';
	return (buf);
}
