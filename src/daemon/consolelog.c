/*
 * Per-port console logs (T5, T8, T9).
 *
 * Files, all inside one log directory opened once as a directory fd:
 *   <id>.log       the console bytes from the VM, exactly as sent, with an
 *                  optional strftime(3) prefix at the start of each line;
 *   <id>.events    a sidecar of JSON lines, one per event, never a guest
 *                  byte: {"time":"2026-11-21T06:12:13Z","offset":N,
 *                  "event":"connect","detail":"..."}, where offset is the
 *                  size of <id>.log when the event happened;
 *   <id>.log.N, <id>.events.N   rotated files, 1 newest .. log_keep oldest.
 * Names come only from the port id, which is validated again here; every
 * file is opened with openat(O_NOFOLLOW | O_NONBLOCK) on the directory fd,
 * must be a regular file with one link (checked again at every open), and
 * rotation only renames names inside that directory, never following a
 * symlink.
 *
 * Files are created lazily: a port that has never printed has no file, so
 * a burst of VM handshakes costs no file creation on the loop.
 *   - consolelog_open only checks the id; it creates nothing.
 *   - <id>.log is created by the first write of console bytes.
 *   - While <id>.log does not exist, event lines are held in memory (at
 *     most CLOG_HELD_MAX bytes) instead of creating <id>.events for them.
 *     They are written, in order and before any later line, when the
 *     port first prints (the .log is opened), when a further event would
 *     not fit, when the log is closed (port expiry) and at shutdown. So a
 *     port that never prints costs no file until it goes away; a kill -9
 *     loses its held events (never console bytes: there are none).
 *
 * File descriptors: an idle port costs no fd at all, only its struct, so
 * tens of thousands of ports fit in the per-process limit.
 *   - <id>.events is never kept open: each event line is written with
 *     open (O_APPEND | O_CREAT), write, close. Events are rare.
 *   - <id>.log is opened (O_APPEND, size taken from fstat) on the first
 *     write that must reach the file, kept open while data keeps coming,
 *     and closed once it has had no data for clog_idle_ms (CLOG_IDLE_MS),
 *     after a final flush and fdatasync. Open .log fds are kept in LRU
 *     order; at most clog_max_open (CLOG_MAX_OPEN) are open at once: to
 *     open one more, the least recently used clean one (nothing buffered,
 *     nothing to sync) is closed, or if all are dirty the least recently
 *     used one is flushed, synced and closed. EMFILE/ENFILE on any open
 *     also closes one .log and tries again once.
 * The size of <id>.log is tracked in the struct and taken again from the
 * file at each open, so rotation and event offsets stay exact across
 * closes, and a file moved away while closed is not written again.
 *
 * Buffering: bytes are copied into a per-file buffer of CLOG_BUFSZ bytes,
 * allocated on the first write and freed by the sync tick, so an idle port
 * costs only its struct. The buffer is written when it is full, before an
 * event (so offsets are exact), on the tick, and on close. Writes of
 * CLOG_BUFSZ or more go straight to the file. All writes are plain
 * write(2) on a regular file; nothing waits for the disk except fdatasync
 * on the tick and when a dirty .log is closed to make room.
 *
 * Sync: one timer for all files. A file that gets data or an event goes on
 * the dirty list and arms the timer (log_sync_ms) if it is not armed; each
 * tick writes, frees and fdatasyncs the buffers of the dirty files only
 * (the sidecar is reopened by name for its fdatasync), then empties the
 * list. A second timer closes idle .log fds; it runs only while some
 * .log is open. No timer runs while nothing is dirty or open.
 *
 * Write errors (ENOSPC, EIO...): the daemon keeps going. Every console byte
 * that could not be written is counted (timestamp prefix bytes are not
 * console bytes and are not counted), at most one warning per file per
 * minute is logged, and once writing works again a gap event with the exact
 * count is written to the sidecar before any more data:
 *   {"time":"...","offset":N,"event":"gap","bytes":M}
 * meaning M console bytes are missing at offset N of <id>.log. Data resumes
 * only after that event is on disk; while the sidecar cannot take it, the
 * new bytes are counted into the same gap. A partial sidecar line is cut
 * off again with ftruncate, so the sidecar stays valid JSON lines.
 *
 * Rotation: before a write would take <id>.log past log_max_size bytes,
 * the files are shifted (.log.N-1 -> .log.N, .log -> .log.1, the oldest
 * deleted) and new ones created; the same for .events. The write is split
 * at the limit, so every rotated .log is exactly log_max_size bytes.
 *
 * A struct consolelog stays valid until consolelog_close(), even after
 * consolelog_shutdown() (which syncs and closes the files).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vspcd.h"

/*
 * fdatasync(2) can block for a long time on a busy disk, and the event loop
 * must never wait for the disk (a slow disk must not slow a VM). So syncs
 * go to one background thread: the loop hands it an fd it owns (a dup of
 * the .log fd, or the sidecar fd opened for the sync) through a bounded
 * queue; the thread syncs and closes it. If the queue is full the loop syncs
 * itself (the disk is then so slow that nothing else helps). At shutdown
 * the queue is drained and syncs are done in line.
 */
#define CLOG_SYNCQ_MAX	256

static pthread_mutex_t	 clog_syncq_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 clog_syncq_cv = PTHREAD_COND_INITIALIZER;
static int		 clog_syncq[CLOG_SYNCQ_MAX];
static int		 clog_syncq_n;
static bool		 clog_syncq_stop;
static bool		 clog_syncq_running;
static pthread_t	 clog_syncq_thread;
static atomic_uint	 clog_sync_errors;
static bool		 clog_sync_inline;	/* tests: no thread */

/* The sync thread: fdatasync and close each queued fd. */
static void *
clog_syncq_main(void *arg)
{
	int fd;

	pthread_mutex_lock(&clog_syncq_mtx);
	for (;;) {
		while (clog_syncq_n == 0 && !clog_syncq_stop)
			pthread_cond_wait(&clog_syncq_cv, &clog_syncq_mtx);
		if (clog_syncq_n == 0 && clog_syncq_stop)
			break;
		fd = clog_syncq[--clog_syncq_n];
		pthread_mutex_unlock(&clog_syncq_mtx);
		if (fdatasync(fd) == -1)
			atomic_fetch_add(&clog_sync_errors, 1);
		close(fd);
		pthread_mutex_lock(&clog_syncq_mtx);
	}
	pthread_mutex_unlock(&clog_syncq_mtx);
	return (NULL);
}

/* Start the sync thread once. */
static void
clog_syncq_start(void)
{
	if (clog_syncq_running || clog_sync_inline)
		return;
	clog_syncq_stop = false;
	if (pthread_create(&clog_syncq_thread, NULL, clog_syncq_main,
	    NULL) != 0) {
		log_warnx("console log: no sync thread; syncing in line");
		return;
	}
	clog_syncq_running = true;
}

/* Drain the queue and stop the sync thread. */
static void
clog_syncq_join(void)
{
	if (!clog_syncq_running)
		return;
	pthread_mutex_lock(&clog_syncq_mtx);
	clog_syncq_stop = true;
	pthread_cond_signal(&clog_syncq_cv);
	pthread_mutex_unlock(&clog_syncq_mtx);
	pthread_join(clog_syncq_thread, NULL);
	clog_syncq_running = false;
}

/*
 * fdatasync and close fd (owned by the caller, handed over) without
 * blocking the loop when the sync thread can take it. Returns 0, or -1 with
 * errno if a sync done in line failed.
 */
static int
clog_sync_fd(int fd)
{
	int r = 0;

	if (clog_syncq_running) {
		pthread_mutex_lock(&clog_syncq_mtx);
		if (clog_syncq_n < CLOG_SYNCQ_MAX) {
			clog_syncq[clog_syncq_n++] = fd;
			pthread_cond_signal(&clog_syncq_cv);
			pthread_mutex_unlock(&clog_syncq_mtx);
			return (0);
		}
		pthread_mutex_unlock(&clog_syncq_mtx);
	}
	if (fdatasync(fd) == -1)
		r = -1;
	close(fd);
	return (r);
}

/* Sync an fd that stays open (the .log): a dup goes to the thread. */
static int
clog_sync_dup(int fd)
{
	int d;

	if (clog_syncq_running &&
	    (d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) != -1)
		return (clog_sync_fd(d));
	return (fdatasync(fd));
}

#define CLOG_BUFSZ	8192	/* per-file write buffer */
#define CLOG_MAXPFX	64	/* timestamp prefixes per buffer */
#define CLOG_STAMP_MAX	128	/* longest timestamp prefix */
#define CLOG_ID_MAX	200
#define CLOG_KEEP_MAX	999	/* rotated files, whatever the config says */
#define CLOG_DETAIL_MAX	4096	/* event detail bytes kept */
#define CLOG_WARN_SECS	60
#define CLOG_IDLE_MS	5000	/* close a .log with no data for this long */
#define CLOG_MAX_OPEN	1024	/* .log fds open at once, at most */
#define CLOG_HELD_MAX	4096	/* event bytes held before the first output */

/* Bytes that go into a JSON string as they are. */
#define CLOG_JSON_PLAIN(c) \
	((c) >= 0x20 && (c) < 0x7f && (c) != '"' && (c) != '\\')

struct clog_pfx {
	uint16_t	 off;
	uint16_t	 len;
};

struct clog_buf {
	size_t		 len;
	u_int		 npfx;
	struct clog_pfx	 pfx[CLOG_MAXPFX];	/* timestamp bytes in data */
	uint8_t		 data[CLOG_BUFSZ];
};

struct consolelog {
	TAILQ_ENTRY(consolelog)	 entry;		/* all logs */
	RB_ENTRY(consolelog)	 id_entry;	/* clog_ids, by id */
	TAILQ_ENTRY(consolelog)	 dirty_entry;
	TAILQ_ENTRY(consolelog)	 open_entry;	/* clog_lru, while fd != -1 */
	bool			 dirty;
	bool			 off;		/* logging off: ignore writes */
	bool			 emitting;	/* in clog_emit: not a victim */
	char			*id;
	char			*path;		/* <dir>/<id>.log */
	int			 fd;		/* .log or -1 */
	uint64_t		 used_ms;	/* last data, monotonic ms */
	uint64_t		 size;		/* bytes in .log */
	uint64_t		 elast;		/* .events offset of last line */
	uint64_t		 rotations;
	bool			 need_sync;
	bool			 eneed_sync;
	bool			 at_bol;	/* next byte starts a line */
	struct clog_buf		*buf;		/* NULL when idle */
	struct evbuffer		*held;		/* event lines not yet written */

	uint64_t		 missed;	/* not yet in a gap event */
	uint64_t		 missed_total;
	uint64_t		 events_lost;
	int			 werrno;	/* last write error */
	bool			 warned;
	bool			 warned_unresolved; /* no "writing again" yet */
	time_t			 warn_at;	/* monotonic */
	time_t			 rotate_retry;	/* monotonic; 0: now */
};

static TAILQ_HEAD(, consolelog)	 clog_all = TAILQ_HEAD_INITIALIZER(clog_all);

/* Order logs by port id, so finding one is O(log n). */
static int
clog_id_cmp(struct consolelog *a, struct consolelog *b)
{
	return (strcmp(a->id, b->id));
}

RB_HEAD(clog_ids, consolelog) clog_ids = RB_INITIALIZER(&clog_ids);
RB_GENERATE_STATIC(clog_ids, consolelog, id_entry, clog_id_cmp)
static TAILQ_HEAD(, consolelog)	 clog_dirty =
    TAILQ_HEAD_INITIALIZER(clog_dirty);
static int			 clog_dirfd = -1;
static char			*clog_dir;
static struct event		*clog_timer;

/* Open .log fds, least recently used first. */
static TAILQ_HEAD(, consolelog)	 clog_lru = TAILQ_HEAD_INITIALIZER(clog_lru);
static u_int			 clog_nopen;
static struct event		*clog_idle_timer;
static int			 clog_idle_ms = CLOG_IDLE_MS;
static int			 clog_max_open = CLOG_MAX_OPEN;
static bool			 clog_evicting;	/* in a flushing eviction */

static time_t			 clog_stamp_when = -1;
static const char		*clog_stamp_fmt;
static char			 clog_stamp_buf[CLOG_STAMP_MAX];
static size_t			 clog_stamp_len;

static void	clog_flush(struct consolelog *);
static void	clog_release(struct consolelog *);
static void	clog_mark_dirty(struct consolelog *);
static int	clog_evict(bool);
static void	clog_arm_idle(void);

void	consolelog_test_tune(int, int);
void	consolelog_test_sync_inline(bool);

/* Tests: sync in line (no thread), so fd counts are deterministic. */
void
consolelog_test_sync_inline(bool on)
{
	clog_sync_inline = on;
}

/*
 * Tests only: set the idle time before a .log is closed and the most .log
 * fds open at once; 0 or less restores the default.
 */
void
consolelog_test_tune(int idle_ms, int max_open)
{
	clog_idle_ms = idle_ms > 0 ? idle_ms : CLOG_IDLE_MS;
	clog_max_open = max_open > 0 ? max_open : CLOG_MAX_OPEN;
}

/* Return seconds on the monotonic clock. */
static time_t
clog_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

/* Return milliseconds on the monotonic clock. */
static uint64_t
clog_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* Log a problem with one file, at most once per CLOG_WARN_SECS. */
static void
clog_warn(struct consolelog *cl, const char *what, int err)
{
	time_t now = clog_now();

	if (cl->warned && now - cl->warn_at < CLOG_WARN_SECS)
		return;
	cl->warned = true;
	cl->warned_unresolved = true;
	cl->warn_at = now;
	log_warnx("console log %s: %s: %s (%" PRIu64 " bytes lost so far)",
	    cl->id, what, strerror(err), cl->missed_total);
}

/* Check a port id: 32 lowercase hex, then ".label" and "~N", both optional. */
static bool
clog_valid_id(const char *id)
{
	size_t len, i;

	if (id == NULL)
		return (false);
	len = strnlen(id, CLOG_ID_MAX + 1);
	if (len < 32 || len > CLOG_ID_MAX || strstr(id, "..") != NULL)
		return (false);
	for (i = 0; i < 32; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'f')))
			return (false);
	}
	if (id[i] == '.') {
		if (id[++i] == '\0' || id[i] == '~')
			return (false);
		for (; id[i] != '\0' && id[i] != '~'; i++) {
			if (!((id[i] >= 'a' && id[i] <= 'z') ||
			    (id[i] >= 'A' && id[i] <= 'Z') ||
			    (id[i] >= '0' && id[i] <= '9') ||
			    id[i] == '.' || id[i] == '_' || id[i] == '-'))
				return (false);
		}
	}
	if (id[i] == '~') {
		if (id[++i] == '\0')
			return (false);
		for (; id[i] != '\0'; i++) {
			if (id[i] < '0' || id[i] > '9')
				return (false);
		}
	}
	return (id[i] == '\0');
}

/* Build the name "<id><suffix>" or "<id><suffix>.<n>" (n > 0). */
static void
clog_name(char *out, size_t outlen, const char *id, const char *suffix,
    int n)
{
	if (n > 0)
		snprintf(out, outlen, "%s%s.%d", id, suffix, n);
	else
		snprintf(out, outlen, "%s%s", id, suffix);
}

/* Return the rotated files to keep, clamped to 0..CLOG_KEEP_MAX. */
static int
clog_keep(void)
{
	if (cfg.log_keep < 0)
		return (0);
	if (cfg.log_keep > CLOG_KEEP_MAX)
		return (CLOG_KEEP_MAX);
	return (cfg.log_keep);
}

/*
 * Open one file in the log directory for appending, creating it if create
 * is set. It must not be a symlink or anything but a regular file with a
 * single link. Returns the fd and its size, or -1 with errno set. Out of
 * fds, one open .log is closed and the open tried once more.
 */
static int
clog_openat(const char *name, bool create, uint64_t *size)
{
	struct stat st;
	int fd, saved, flags, tries = 0;

	if (fstatat(clog_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !S_ISREG(st.st_mode)) {
		errno = S_ISLNK(st.st_mode) ? ELOOP : EINVAL;
		return (-1);
	}
	/* O_NONBLOCK: a FIFO swapped in after the check must not block. */
	flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
	if (create)
		flags |= O_CREAT;
	while ((fd = openat(clog_dirfd, name, flags, 0640)) == -1) {
		if ((errno != EMFILE && errno != ENFILE) || tries++ > 0 ||
		    clog_evict(false) == -1)
			return (-1);
	}
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return (-1);
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		errno = S_ISREG(st.st_mode) ? EMLINK : EINVAL;
		return (-1);
	}
	*size = (uint64_t)st.st_size;
	return (fd);
}

/* Mark an open .log as just used: it goes to the end of the LRU list. */
static void
clog_used(struct consolelog *cl)
{
	if (cl->fd == -1)
		return;
	cl->used_ms = clog_ms();
	if (TAILQ_NEXT(cl, open_entry) != NULL) {
		TAILQ_REMOVE(&clog_lru, cl, open_entry);
		TAILQ_INSERT_TAIL(&clog_lru, cl, open_entry);
	}
}

/* Close the .log of one log if it is open, syncing what was written. */
static void
clog_log_close(struct consolelog *cl)
{
	if (cl->fd == -1)
		return;
	if (cl->need_sync) {
		/* The fd itself goes to the sync thread, which closes it. */
		if (clog_sync_fd(cl->fd) == -1)
			clog_warn(cl, "fdatasync", errno);
	} else
		close(cl->fd);
	cl->need_sync = false;
	cl->fd = -1;
	TAILQ_REMOVE(&clog_lru, cl, open_entry);
	clog_nopen--;
}

/*
 * Close one open .log to make room: the least recently used clean one (no
 * bytes buffered, nothing to sync), else the least recently used one,
 * written out first if flush is set. A log in the middle of writing is
 * never picked. Returns 0, or -1 if there was none to close.
 */
static int
clog_evict(bool flush)
{
	struct consolelog *cl, *victim = NULL;

	TAILQ_FOREACH(cl, &clog_lru, open_entry) {
		if (cl->emitting)
			continue;
		if (victim == NULL)
			victim = cl;
		if (!cl->need_sync && (cl->buf == NULL || cl->buf->len == 0)) {
			victim = cl;
			break;
		}
	}
	if (victim == NULL)
		return (-1);
	if (flush && !clog_evicting) {
		clog_evicting = true;
		clog_flush(victim);
		clog_evicting = false;
	}
	clog_log_close(victim);
	return (0);
}

/*
 * Open the .log of a log if it is not open, taking its size from the
 * file, and closing another one first if clog_max_open are open. Returns
 * 0, or -1 with errno set.
 */
static int
clog_log_open(struct consolelog *cl)
{
	char name[NAME_MAX + 1];
	uint64_t size;
	int fd;

	if (cl->fd != -1)
		return (0);
	if (clog_dirfd == -1) {
		errno = EBADF;
		return (-1);
	}
	while (clog_nopen >= (u_int)clog_max_open && clog_evict(true) == 0)
		;
	clog_name(name, sizeof name, cl->id, ".log", 0);
	if ((fd = clog_openat(name, true, &size)) == -1)
		return (-1);
	cl->fd = fd;
	cl->size = size;
	cl->need_sync = false;
	cl->used_ms = clog_ms();
	TAILQ_INSERT_TAIL(&clog_lru, cl, open_entry);
	clog_nopen++;
	clog_arm_idle();
	/* The port prints: its held events get their file now. */
	clog_release(cl);
	return (0);
}

/*
 * Create (if needed) and check the files of a log without keeping them
 * open: the .log too if log is set (its size is taken), then the .events.
 * Returns 0, or -1 with errno set.
 */
static int
clog_touch(struct consolelog *cl, bool log)
{
	char name[NAME_MAX + 1];
	uint64_t size;
	int fd;

	if (clog_dirfd == -1) {
		errno = EBADF;
		return (-1);
	}
	if (log && cl->fd == -1) {
		clog_name(name, sizeof name, cl->id, ".log", 0);
		if ((fd = clog_openat(name, true, &size)) == -1)
			return (-1);
		close(fd);
		cl->size = size;
	}
	clog_name(name, sizeof name, cl->id, ".events", 0);
	if ((fd = clog_openat(name, true, &size)) == -1)
		return (-1);
	close(fd);
	return (0);
}

/* Sync the sidecar if a line went in since the last sync. */
static void
clog_sync_events(struct consolelog *cl)
{
	char name[NAME_MAX + 1];
	uint64_t size;
	int fd;

	if (!cl->eneed_sync)
		return;
	cl->eneed_sync = false;
	if (clog_dirfd == -1)
		return;
	clog_name(name, sizeof name, cl->id, ".events", 0);
	if ((fd = clog_openat(name, false, &size)) == -1) {
		if (errno != ENOENT)
			clog_warn(cl, "cannot open events to sync", errno);
		return;
	}
	if (clog_sync_fd(fd) == -1)
		clog_warn(cl, "fdatasync events", errno);
}

/* Cut the sidecar back to size bytes. Returns 0 or -1. */
static int
clog_events_cut(struct consolelog *cl, uint64_t size)
{
	char name[NAME_MAX + 1];
	uint64_t now;
	int fd, rv;

	if (clog_dirfd == -1)
		return (-1);
	clog_name(name, sizeof name, cl->id, ".events", 0);
	if ((fd = clog_openat(name, false, &now)) == -1)
		return (-1);
	rv = now < size ? -1 : ftruncate(fd, (off_t)size);
	close(fd);
	return (rv);
}

/* Close the .log and sync both files. */
static void
clog_close_files(struct consolelog *cl)
{
	clog_log_close(cl);
	clog_sync_events(cl);
}

/* Shift "<id><suffix>" to ".1", ".1" to ".2"... deleting the oldest. */
static int
clog_shift(struct consolelog *cl, const char *suffix, int keep)
{
	char from[NAME_MAX + 1], to[NAME_MAX + 1];
	struct stat st;
	int i;

	if (keep == 0) {
		clog_name(from, sizeof from, cl->id, suffix, 0);
		if (unlinkat(clog_dirfd, from, 0) == -1 && errno != ENOENT)
			return (-1);
		return (0);
	}
	clog_name(to, sizeof to, cl->id, suffix, keep);
	if (unlinkat(clog_dirfd, to, 0) == -1 && errno != ENOENT)
		clog_warn(cl, "cannot delete oldest rotated file", errno);
	for (i = keep; i >= 1; i--) {
		clog_name(from, sizeof from, cl->id, suffix, i - 1);
		clog_name(to, sizeof to, cl->id, suffix, i);
		if (fstatat(clog_dirfd, from, &st, AT_SYMLINK_NOFOLLOW) == -1) {
			if (errno == ENOENT)
				continue;
			return (-1);
		}
		if (!S_ISREG(st.st_mode)) {
			/* Never move something we did not create. */
			errno = EINVAL;
			if (i == 1)
				return (-1);
			continue;
		}
		if (renameat(clog_dirfd, from, clog_dirfd, to) == -1)
			return (-1);
	}
	return (0);
}

/*
 * Rotate the files of one log. On failure keep writing to the current
 * file and try again after CLOG_WARN_SECS.
 */
static void
clog_rotate(struct consolelog *cl)
{
	struct stat st;
	int keep = clog_keep();

	if (cl->rotate_retry != 0 && clog_now() < cl->rotate_retry)
		return;
	/* Someone (copytruncate) may have cut it: believe the file. */
	if (cl->fd != -1 && fstat(cl->fd, &st) == 0 &&
	    (uint64_t)st.st_size < cfg.log_max_size) {
		cl->size = (uint64_t)st.st_size;
		return;
	}
	/* Sync the sidecar while its name is still the current one. */
	clog_sync_events(cl);
	if (clog_shift(cl, ".log", keep) == -1) {
		clog_warn(cl, "cannot rotate", errno);
		cl->rotate_retry = clog_now() + CLOG_WARN_SECS;
		return;
	}
	if (clog_shift(cl, ".events", keep) == -1)
		clog_warn(cl, "cannot rotate events", errno);
	cl->rotate_retry = 0;
	cl->rotations++;
	clog_log_close(cl);
	cl->size = 0;
	if (clog_log_open(cl) == -1 || clog_touch(cl, false) == -1)
		clog_warn(cl, "cannot open after rotation", errno);
}

/*
 * Write one complete line to the sidecar, after the held lines if any, or
 * nothing (the held lines then stay held). Returns 0 or -1.
 */
static int
clog_event_line(struct consolelog *cl, struct evbuffer *line)
{
	char name[NAME_MAX + 1];
	size_t len, off = 0, hlen = 0;
	const uint8_t *p;
	uint64_t start;
	ssize_t n;
	int fd;

	if (cl->held != NULL && (hlen = evbuffer_get_length(cl->held)) > 0 &&
	    evbuffer_prepend(line, evbuffer_pullup(cl->held, -1), hlen) == -1)
		fatalx("%s: evbuffer_prepend", __func__);
	len = evbuffer_get_length(line);

	if (clog_dirfd == -1) {
		cl->werrno = errno = EBADF;
		return (-1);
	}
	/* Open, write, close: an events-only port keeps no fd. */
	clog_name(name, sizeof name, cl->id, ".events", 0);
	if ((fd = clog_openat(name, true, &start)) == -1) {
		cl->werrno = errno;
		return (-1);
	}
	p = evbuffer_pullup(line, -1);
	while (off < len) {
		n = write(fd, p + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ENOSPC;
			cl->werrno = errno;
			if (off > 0 && ftruncate(fd, (off_t)start) == -1)
				clog_warn(cl, "cannot cut partial event",
				    errno);
			close(fd);
			evbuffer_drain(line, hlen);
			errno = cl->werrno;
			return (-1);
		}
		off += (size_t)n;
	}
	close(fd);
	if (hlen > 0)
		evbuffer_drain(cl->held, hlen);
	evbuffer_drain(line, hlen);
	cl->elast = start + hlen;
	cl->eneed_sync = true;
	return (0);
}

/*
 * Write the held event lines, if any, to the sidecar (creating it). On
 * failure they stay held and a warning is logged.
 */
static void
clog_release(struct consolelog *cl)
{
	struct evbuffer *b;

	if (cl->held == NULL || evbuffer_get_length(cl->held) == 0)
		return;
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	if (clog_event_line(cl, b) == -1)
		clog_warn(cl, "held events not written", cl->werrno);
	else
		clog_mark_dirty(cl);
	evbuffer_free(b);
}

/*
 * Append s as a JSON string: quotes, backslashes and controls escaped,
 * invalid UTF-8 bytes replaced by U+FFFD. At most max bytes of s are used.
 */
static void
clog_json_str(struct evbuffer *b, const char *s, size_t max)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t len = strnlen(s, max), i = 0, n;
	uint8_t c;

	evbuffer_add(b, "\"", 1);
	while (i < len) {
		c = p[i];
		if (CLOG_JSON_PLAIN(c)) {
			for (n = i + 1; n < len && CLOG_JSON_PLAIN(p[n]); n++)
				;
			evbuffer_add(b, p + i, n - i);
			i = n;
			continue;
		}
		i++;
		switch (c) {
		case '"':
			evbuffer_add(b, "\\\"", 2);
			continue;
		case '\\':
			evbuffer_add(b, "\\\\", 2);
			continue;
		case '\n':
			evbuffer_add(b, "\\n", 2);
			continue;
		case '\r':
			evbuffer_add(b, "\\r", 2);
			continue;
		case '\t':
			evbuffer_add(b, "\\t", 2);
			continue;
		}
		if (c < 0x80)
			evbuffer_add_printf(b, "\\u%04x", (u_int)c);
		else if ((n = util_utf8_len(p + i - 1, len - i + 1)) > 0) {
			evbuffer_add(b, p + i - 1, n);
			i += n - 1;
		} else
			evbuffer_add(b, "\\ufffd", 6);
	}
	evbuffer_add(b, "\"", 1);
}

/* Start an event line: time, offset and event name. */
static struct evbuffer *
clog_event_start(struct consolelog *cl, const char *event)
{
	struct evbuffer *b;
	struct tm tm;
	char when[32];
	time_t now = time(NULL);

	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		strlcpy(when, "1970-01-01T00:00:00Z", sizeof when);
	if ((b = evbuffer_new()) == NULL)
		fatalx("%s: evbuffer_new", __func__);
	evbuffer_add_printf(b, "{\"time\":\"%s\",\"offset\":%" PRIu64
	    ",\"event\":", when, cl->size);
	clog_json_str(b, event, CLOG_DETAIL_MAX);
	return (b);
}

/* Write the gap event for the missed bytes. Returns 0 or -1. */
static int
clog_gap(struct consolelog *cl)
{
	struct evbuffer *b;
	int rv;

	b = clog_event_start(cl, "gap");
	evbuffer_add_printf(b, ",\"bytes\":%" PRIu64 "}\n", cl->missed);
	rv = clog_event_line(cl, b);
	evbuffer_free(b);
	if (rv == 0)
		cl->missed = 0;
	return (rv);
}

/* Count console bytes in data[from..len) of a buffer, without prefixes. */
static size_t
clog_console_bytes(const struct clog_buf *b, size_t from, size_t len)
{
	size_t n = len - from, lo, hi;
	u_int i;

	if (b == NULL)
		return (n);
	for (i = 0; i < b->npfx; i++) {
		lo = b->pfx[i].off;
		hi = lo + b->pfx[i].len;
		if (lo < from)
			lo = from;
		if (hi > len)
			hi = len;
		if (hi > lo)
			n -= hi - lo;
	}
	return (n);
}

/* Write bytes to the .log, rotating at the limit. Returns bytes written. */
static size_t
clog_put(struct consolelog *cl, const uint8_t *p, size_t len)
{
	size_t off = 0, chunk;
	ssize_t n;

	while (off < len) {
		if (cl->fd == -1 && clog_log_open(cl) == -1) {
			cl->werrno = errno;
			break;
		}
		if (cfg.log_max_size > 0 && cl->size >= cfg.log_max_size)
			clog_rotate(cl);
		if (cl->fd == -1) {
			cl->werrno = EBADF;
			break;
		}
		chunk = len - off;
		if (cfg.log_max_size > 0 && cl->size < cfg.log_max_size &&
		    chunk > cfg.log_max_size - cl->size)
			chunk = cfg.log_max_size - cl->size;
		n = write(cl->fd, p + off, chunk);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			cl->werrno = n == 0 ? ENOSPC : errno;
			break;
		}
		off += (size_t)n;
		cl->size += (uint64_t)n;
		cl->need_sync = true;
		clog_used(cl);
	}
	return (off);
}

/*
 * Write bytes (b's data, or a large write with b NULL) to the file: the
 * pending gap event first, then the data; count what did not make it.
 */
static void
clog_emit(struct consolelog *cl, const uint8_t *p, size_t len,
    const struct clog_buf *b)
{
	uint64_t missed = cl->missed, at;
	uint64_t rotations = cl->rotations;
	size_t done = 0, lost;

	cl->emitting = true;
	/* Open first: the gap event needs the size of the file. */
	if (clog_log_open(cl) == -1)
		cl->werrno = errno;
	at = cl->size;
	if (cl->missed == 0 || clog_gap(cl) == 0)
		done = clog_put(cl, p, len);
	cl->emitting = false;
	if (missed > 0 && cl->missed == 0) {
		if (done == 0 && cl->rotations == rotations &&
		    clog_events_cut(cl, cl->elast) == 0) {
			/* Still failing: take the gap event back. */
			cl->missed = missed;
		} else if (cl->warned_unresolved) {
			log_info("console log %s: writing again, %" PRIu64
			    " bytes lost at offset %" PRIu64, cl->id, missed,
			    at);
			cl->warned_unresolved = false;
		}
	}
	if (done == len)
		return;
	lost = clog_console_bytes(b, done, len);
	cl->missed += lost;
	cl->missed_total += lost;
	clog_warn(cl, "write failed", cl->werrno);
}

/* Write out the buffer of one log, keeping its memory. */
static void
clog_flush(struct consolelog *cl)
{
	struct clog_buf *b = cl->buf;

	if (b == NULL || b->len == 0 || cl->emitting)
		return;
	clog_emit(cl, b->data, b->len, b);
	b->len = 0;
	b->npfx = 0;
}

/*
 * Write out the buffer of a log about to be closed, and record any bytes
 * still missing as a gap at its end.
 */
static void
clog_finish(struct consolelog *cl)
{
	clog_flush(cl);
	free(cl->buf);
	cl->buf = NULL;
	if (cl->missed > 0)
		(void)clog_gap(cl);
}

/* Sync what was written to one log since the last sync. */
static void
clog_sync(struct consolelog *cl)
{
	if (cl->fd != -1 && cl->need_sync && clog_sync_dup(cl->fd) == -1)
		clog_warn(cl, "fdatasync", errno);
	cl->need_sync = false;
	clog_sync_events(cl);
}

/* Write, free and sync the buffers of every dirty log. */
static void
clog_tick(evutil_socket_t fd, short events, void *arg)
{
	struct consolelog *cl;
	u_int errs;

	if ((errs = atomic_exchange(&clog_sync_errors, 0)) > 0)
		log_warnx("console log: %u fdatasync calls failed", errs);
	while ((cl = TAILQ_FIRST(&clog_dirty)) != NULL) {
		TAILQ_REMOVE(&clog_dirty, cl, dirty_entry);
		cl->dirty = false;
		clog_flush(cl);
		free(cl->buf);
		cl->buf = NULL;
		clog_sync(cl);
	}
}

/*
 * Close every .log that had no data for clog_idle_ms, after a last flush
 * and sync, then wait for the next one to become idle.
 */
static void
clog_idle(evutil_socket_t fd, short events, void *arg)
{
	struct consolelog *cl;
	uint64_t now = clog_ms();

	while ((cl = TAILQ_FIRST(&clog_lru)) != NULL &&
	    now - cl->used_ms >= (uint64_t)clog_idle_ms) {
		clog_flush(cl);
		if (cl->buf != NULL && cl->buf->len == 0) {
			free(cl->buf);
			cl->buf = NULL;
		}
		clog_sync(cl);
		clog_log_close(cl);
	}
	clog_arm_idle();
}

/* Arm the idle timer for the least recently used open .log, if any. */
static void
clog_arm_idle(void)
{
	struct consolelog *cl;
	struct timeval tv;
	uint64_t now, left;

	if (ev_base == NULL || (cl = TAILQ_FIRST(&clog_lru)) == NULL)
		return;
	if (clog_idle_timer == NULL &&
	    (clog_idle_timer = evtimer_new(ev_base, clog_idle, NULL)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	if (evtimer_pending(clog_idle_timer, NULL))
		return;
	now = clog_ms();
	left = (uint64_t)clog_idle_ms;
	left = now - cl->used_ms < left ? left - (now - cl->used_ms) : 0;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000 + 1000;
	evtimer_add(clog_idle_timer, &tv);
}

/* Put a log on the dirty list and arm the sync timer. */
static void
clog_mark_dirty(struct consolelog *cl)
{
	struct timeval tv;
	int ms = cfg.log_sync_ms > 0 ? cfg.log_sync_ms : 0;

	if (!cl->dirty) {
		TAILQ_INSERT_TAIL(&clog_dirty, cl, dirty_entry);
		cl->dirty = true;
	}
	if (clog_timer == NULL && ev_base != NULL &&
	    (clog_timer = evtimer_new(ev_base, clog_tick, NULL)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	if (clog_timer != NULL && !evtimer_pending(clog_timer, NULL)) {
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		evtimer_add(clog_timer, &tv);
	}
}

/* Take a log off the dirty list. */
static void
clog_unmark_dirty(struct consolelog *cl)
{
	if (cl->dirty) {
		TAILQ_REMOVE(&clog_dirty, cl, dirty_entry);
		cl->dirty = false;
	}
}

/* Return the buffer of a log, allocating it. */
static struct clog_buf *
clog_get_buf(struct consolelog *cl)
{
	if (cl->buf == NULL) {
		cl->buf = xmalloc(sizeof *cl->buf);
		cl->buf->len = 0;
		cl->buf->npfx = 0;
	}
	return (cl->buf);
}

/* Return the timestamp prefix for now; *len 0 if there is none. */
static const char *
clog_stamp(size_t *len)
{
	const char *fmt = cfg.log_timestamp_format;
	struct tm tm;
	time_t now = time(NULL);

	if (fmt == NULL)
		fmt = "[%Y-%m-%d %H:%M:%S] ";
	if (now != clog_stamp_when || fmt != clog_stamp_fmt) {
		clog_stamp_when = now;
		clog_stamp_fmt = fmt;
		if (localtime_r(&now, &tm) == NULL)
			clog_stamp_len = 0;
		else {
			/* The format is the operator's, from the config. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
			clog_stamp_len = strftime(clog_stamp_buf,
			    sizeof clog_stamp_buf, fmt, &tm);
#pragma GCC diagnostic pop
		}
	}
	*len = clog_stamp_len;
	return (clog_stamp_buf);
}

/* Return the log directory the config asks for, allocated. */
static char *
clog_dir_wanted(void)
{
	char *dir;

	if (cfg.log_dir != NULL)
		return (xstrdup(cfg.log_dir));
	if (cfg.state_dir == NULL)
		return (NULL);
	if (asprintf(&dir, "%s/logs", cfg.state_dir) == -1)
		fatalx("%s: asprintf", __func__);
	return (dir);
}

/* Open (creating it 0750) the log directory. */
static void
clog_open_dir(void)
{
	char *dir;

	if (clog_dirfd != -1)
		close(clog_dirfd);
	clog_dirfd = -1;
	free(clog_dir);
	clog_dir = NULL;
	if (!cfg.log_enabled)
		return;
	if ((dir = clog_dir_wanted()) == NULL) {
		log_warnx("console logs off: no log directory");
		return;
	}
	if (mkdir(dir, 0750) == -1 && errno != EEXIST)
		log_warn("console logs off: mkdir %s", log_escape(dir,
		    strlen(dir)));
	else if ((clog_dirfd = open(dir, O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1)
		log_warn("console logs off: %s", log_escape(dir, strlen(dir)));
	if (clog_dirfd == -1) {
		free(dir);
		return;
	}
	clog_dir = dir;
}

/* Set the path of a log from the current directory. */
static void
clog_set_path(struct consolelog *cl)
{
	free(cl->path);
	if (asprintf(&cl->path, "%s/%s.log", clog_dir != NULL ? clog_dir : ".",
	    cl->id) == -1)
		fatalx("%s: asprintf", __func__);
}

/* Open the log directory and get ready to log. */
void
consolelog_init(void)
{
	clog_syncq_start();
	clog_open_dir();
	clog_stamp_when = -1;
	if (clog_timer == NULL && ev_base != NULL &&
	    (clog_timer = evtimer_new(ev_base, clog_tick, NULL)) == NULL)
		fatalx("%s: evtimer_new", __func__);
}

/* Sync and close every file; the structs stay until consolelog_close. */
void
consolelog_shutdown(void)
{
	struct consolelog *cl;

	TAILQ_FOREACH(cl, &clog_all, entry) {
		if (!cl->off) {
			clog_finish(cl);
			clog_release(cl);
		}
		clog_unmark_dirty(cl);
		if (cl->missed > 0)
			log_warnx("console log %s: closed with %" PRIu64
			    " bytes lost and not recorded", cl->id, cl->missed);
		cl->missed = 0;
		clog_close_files(cl);
		cl->off = true;
	}
	if (clog_timer != NULL) {
		event_free(clog_timer);
		clog_timer = NULL;
	}
	if (clog_idle_timer != NULL) {
		event_free(clog_idle_timer);
		clog_idle_timer = NULL;
	}
	if (clog_dirfd != -1)
		close(clog_dirfd);
	clog_dirfd = -1;
	free(clog_dir);
	clog_dir = NULL;
	clog_syncq_join();	/* every queued sync done before we return */
}

/* Find an open log by port id. */
static struct consolelog *
clog_find(const char *id)
{
	struct consolelog find;

	find.id = (char *)(uintptr_t)id;
	return (RB_FIND(clog_ids, &clog_ids, &find));
}

/* Open the log of one port; NULL if logging is off or it cannot be opened. */
struct consolelog *
consolelog_open(const char *port_id)
{
	struct consolelog *cl;

	if (!cfg.log_enabled || clog_dirfd == -1)
		return (NULL);
	if (!clog_valid_id(port_id)) {
		log_warnx("console log: refused port id '%s'",
		    port_id == NULL ? "(null)" : log_escape(port_id,
		    strnlen(port_id, CLOG_ID_MAX + 1)));
		return (NULL);
	}
	if (clog_find(port_id) != NULL) {
		log_warnx("console log %s: already open", port_id);
		return (NULL);
	}
	cl = xcalloc(1, sizeof *cl);
	cl->id = xstrdup(port_id);
	cl->fd = -1;
	cl->at_bol = true;
	/* No file yet: each is created and checked when first needed. */
	clog_set_path(cl);
	TAILQ_INSERT_TAIL(&clog_all, cl, entry);
	RB_INSERT(clog_ids, &clog_ids, cl);
	return (cl);
}

/*
 * Count n console bytes that never reached cl (it could not be opened in
 * time): they are reported in the gap event before the next data.
 */
void
consolelog_missed(struct consolelog *cl, uint64_t n)
{
	if (cl != NULL)
		cl->missed += n;
}

/* Log console bytes from the VM, exactly as received. */
void
consolelog_write(struct consolelog *cl, const uint8_t *p, size_t len)
{
	struct clog_buf *b;
	const uint8_t *nl;
	const char *stamp;
	size_t n, slen;

	if (cl == NULL || cl->off || len == 0)
		return;
	if (!cfg.log_timestamps && len >= CLOG_BUFSZ &&
	    (cl->buf == NULL || cl->buf->len == 0)) {
		clog_emit(cl, p, len, NULL);
		cl->at_bol = p[len - 1] == '\n';
		clog_used(cl);
		clog_mark_dirty(cl);
		return;
	}
	while (len > 0) {
		b = clog_get_buf(cl);
		if (cfg.log_timestamps && cl->at_bol) {
			stamp = clog_stamp(&slen);
			if (slen > 0 && (CLOG_BUFSZ - b->len < slen ||
			    b->npfx == CLOG_MAXPFX)) {
				clog_flush(cl);
				continue;
			}
			if (slen > 0) {
				memcpy(b->data + b->len, stamp, slen);
				b->pfx[b->npfx].off = (uint16_t)b->len;
				b->pfx[b->npfx].len = (uint16_t)slen;
				b->npfx++;
				b->len += slen;
			}
			cl->at_bol = false;
		}
		n = CLOG_BUFSZ - b->len;
		if (n > len)
			n = len;
		if (n > 0) {
			if (cfg.log_timestamps &&
			    (nl = memchr(p, '\n', n)) != NULL)
				n = (size_t)(nl - p) + 1;
			memcpy(b->data + b->len, p, n);
			b->len += n;
			cl->at_bol = p[n - 1] == '\n';
			p += n;
			len -= n;
		}
		if (b->len == CLOG_BUFSZ)
			clog_flush(cl);
	}
	clog_used(cl);
	clog_mark_dirty(cl);
}

/* Record an event in the sidecar at the current size of the .log. */
void
consolelog_event(struct consolelog *cl, const char *event, const char *detail)
{
	char name[NAME_MAX + 1];
	struct evbuffer *b;
	struct stat st;
	bool nolog = false;
	size_t held;

	if (cl == NULL || cl->off || event == NULL)
		return;
	clog_flush(cl);
	/* The offset is the size of the file, open or not. */
	if (cl->fd != -1) {
		if (fstat(cl->fd, &st) == 0)
			cl->size = (uint64_t)st.st_size;
	} else if (clog_dirfd != -1) {
		clog_name(name, sizeof name, cl->id, ".log", 0);
		if (fstatat(clog_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISREG(st.st_mode))
				cl->size = (uint64_t)st.st_size;
		} else if (errno == ENOENT) {
			cl->size = 0;
			nolog = true;
		}
	}
	if (cl->missed > 0)
		(void)clog_gap(cl);
	b = clog_event_start(cl, event);
	if (detail != NULL) {
		evbuffer_add(b, ",\"detail\":", 10);
		clog_json_str(b, detail, CLOG_DETAIL_MAX);
	}
	evbuffer_add(b, "}\n", 2);
	/* No output yet: hold the line rather than create a file for it. */
	held = cl->held != NULL ? evbuffer_get_length(cl->held) : 0;
	if (nolog && cl->missed == 0 && (cl->buf == NULL || cl->buf->len == 0) &&
	    held + evbuffer_get_length(b) <= CLOG_HELD_MAX) {
		if (cl->held == NULL && (cl->held = evbuffer_new()) == NULL)
			fatalx("%s: evbuffer_new", __func__);
		evbuffer_add_buffer(cl->held, b);
		evbuffer_free(b);
		return;
	}
	if (clog_event_line(cl, b) == -1) {
		cl->events_lost++;
		clog_warn(cl, "event lost", cl->werrno);
	}
	evbuffer_free(b);
	clog_mark_dirty(cl);
}

/* Write out, sync and close one log, and free it. */
void
consolelog_close(struct consolelog *cl)
{
	if (cl == NULL)
		return;
	if (!cl->off) {
		clog_finish(cl);
		clog_release(cl);
	}
	/* After the writes above, which may mark it dirty again. */
	clog_unmark_dirty(cl);
	if (cl->missed > 0)
		log_warnx("console log %s: closed with %" PRIu64
		    " bytes lost and not recorded", cl->id, cl->missed);
	clog_close_files(cl);
	TAILQ_REMOVE(&clog_all, cl, entry);
	RB_REMOVE(clog_ids, &clog_ids, cl);
	if (cl->held != NULL)
		evbuffer_free(cl->held);
	free(cl->buf);
	free(cl->path);
	free(cl->id);
	free(cl);
}

/*
 * SIGHUP: write out and close every file and re-read the log settings
 * (directory, on/off); each file is opened again by name when next needed,
 * so files that logrotate moved away are left behind. Nothing is created
 * here: with tens of thousands of ports that would stall the loop.
 */
void
consolelog_reopen_all(void)
{
	struct consolelog *cl;
	char *dir;
	bool moving;

	/* Held events belong to the old directory if it changes. */
	dir = cfg.log_enabled ? clog_dir_wanted() : NULL;
	moving = clog_dirfd == -1 || dir == NULL || clog_dir == NULL ||
	    strcmp(dir, clog_dir) != 0;
	TAILQ_FOREACH(cl, &clog_all, entry) {
		if (!cl->off) {
			clog_finish(cl);
			if (moving)
				clog_release(cl);
		}
		clog_unmark_dirty(cl);
		free(cl->buf);
		cl->buf = NULL;
		clog_close_files(cl);
	}
	if (moving)
		clog_open_dir();
	free(dir);
	clog_stamp_when = -1;
	if (clog_timer == NULL && ev_base != NULL &&
	    (clog_timer = evtimer_new(ev_base, clog_tick, NULL)) == NULL)
		fatalx("%s: evtimer_new", __func__);
	TAILQ_FOREACH(cl, &clog_all, entry) {
		cl->off = !cfg.log_enabled || clog_dirfd == -1;
		if (cl->off)
			continue;
		cl->rotate_retry = 0;
		clog_set_path(cl);
		/* Files are opened (by name, checked) when next needed. */
	}
}

/* Return the path of the current .log of a log, or NULL. */
const char *
consolelog_path(const struct consolelog *cl)
{
	if (cl == NULL)
		return (NULL);
	return (cl->path);
}

/* Append the last len bytes from offset "from" of a named file to out. */
static int
clog_read_tail(const char *name, off_t from, size_t len, struct evbuffer *out)
{
	uint8_t *buf;
	struct stat st;
	ssize_t n;
	size_t chunk;
	int fd;

	fd = openat(clog_dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK);
	if (fd == -1)
		return (-1);
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return (-1);
	}
	buf = xmalloc(65536);
	while (len > 0) {
		chunk = len < 65536 ? len : 65536;
		n = pread(fd, buf, chunk, from);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		evbuffer_add(out, buf, (size_t)n);
		from += n;
		len -= (size_t)n;
	}
	free(buf);
	close(fd);
	return (0);
}

/*
 * Append the last n bytes of a port's log to out: the current file, then
 * as many rotated ones as needed, oldest bytes first. Returns 0, or -1 if
 * there is no such log.
 */
int
consolelog_tail(const char *port_id, size_t n, struct evbuffer *out)
{
	char name[NAME_MAX + 1];
	struct consolelog *cl;
	struct stat st;
	uint64_t *size, *take, want = n;
	int i, last = -1, keep = clog_keep();

	if (clog_dirfd == -1 || !clog_valid_id(port_id) || out == NULL)
		return (-1);
	if ((cl = clog_find(port_id)) != NULL && !cl->off)
		clog_flush(cl);
	size = xcalloc((size_t)keep + 1, sizeof *size);
	take = xcalloc((size_t)keep + 1, sizeof *take);
	for (i = 0; i <= keep && want > 0; i++) {
		clog_name(name, sizeof name, port_id, ".log", i);
		if (fstatat(clog_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISREG(st.st_mode)) {
			if (i == 0)
				continue;
			break;
		}
		last = i;
		size[i] = (uint64_t)st.st_size;
		take[i] = size[i] < want ? size[i] : want;
		want -= take[i];
	}
	if (last == -1 && n == 0) {
		clog_name(name, sizeof name, port_id, ".log", 0);
		if (fstatat(clog_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			last = 0;
	}
	for (i = last; i >= 0; i--) {
		if (take[i] == 0)
			continue;
		clog_name(name, sizeof name, port_id, ".log", i);
		(void)clog_read_tail(name, (off_t)(size[i] - take[i]),
		    (size_t)take[i], out);
	}
	free(size);
	free(take);
	return (last == -1 ? -1 : 0);
}
