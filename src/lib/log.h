/* Daemon diagnostics: never console bytes. */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

#include "compat.h"

enum log_level { LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Log to stderr (foreground) or syslog (daemon). */
void log_init(int foreground, int level, const char *ident);
void log_set_level(int level);
int log_get_level(void);

void log_warn(const char *, ...) printflike(1, 2);	/* appends errno */
void log_warnx(const char *, ...) printflike(1, 2);
void log_info(const char *, ...) printflike(1, 2);
void log_debug(const char *, ...) printflike(1, 2);
__dead void fatal(const char *, ...) printflike(1, 2);	/* appends errno */
__dead void fatalx(const char *, ...) printflike(1, 2);

/*
 * Escape untrusted bytes (VM names, URIs) for a log line: printable ASCII
 * kept, everything else as \xNN. Returns a static buffer, valid until the
 * next call; at most 256 input bytes are shown.
 */
const char *log_escape(const void *, size_t);

#endif
