/*
 * Unit tests for the console logs (src/daemon/consolelog.c): exact bytes,
 * timestamps, the events sidecar, rotation, hostile ids and symlinks,
 * ENOSPC gap accounting (root only, on a 1 MiB tmpfs), tail, and the fd
 * policy: idle .log files closed, a cap on open ones, sidecar never open.
 */
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "t.h"
#include "vspcd.h"

struct config		 cfg;
struct event_base	*ev_base;

#define ID	"0123456789abcdef0123456789abcdef"

/* In consolelog.c, for tests: idle ms before a .log closes, most open. */
extern void	consolelog_test_tune(int idle_ms, int max_open);
extern void	consolelog_test_sync_inline(bool);

static char	 root[64];
static char	 logdir[128];

/* Remove one entry for nftw. */
static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return (remove(path));
}

/* Make a fresh temporary directory and point the config at it. */
static void
setup(void)
{
	strlcpy(root, "/tmp/test-clog-XXXXXX", sizeof root);
	if (mkdtemp(root) == NULL)
		abort();
	snprintf(logdir, sizeof logdir, "%s/logs", root);
	memset(&cfg, 0, sizeof cfg);
	cfg.log_enabled = 1;
	cfg.log_dir = logdir;
	cfg.log_keep = 5;
	cfg.log_sync_ms = 1000;
	consolelog_test_tune(0, 0);
	consolelog_init();
}

/* Shut the logs down and remove the directory. */
static void
teardown(void)
{
	consolelog_shutdown();
	consolelog_test_tune(0, 0);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Count this process's open fds: all of them, or only those on files in
 * the log directory whose name ends in suffix.
 */
static int
count_fds(const char *suffix)
{
	char path[300], target[1024];
	struct dirent *de;
	size_t dlen = strlen(logdir), slen;
	ssize_t n;
	DIR *d;
	int count = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		abort();
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
			continue;
		if (suffix == NULL) {
			count++;
			continue;
		}
		snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
		if ((n = readlink(path, target, sizeof target - 1)) <= 0)
			continue;
		target[n] = '\0';
		slen = strlen(suffix);
		if ((size_t)n > dlen + slen && strncmp(target, logdir,
		    dlen) == 0 && target[dlen] == '/' &&
		    strcmp(target + n - slen, suffix) == 0)
			count++;
	}
	closedir(d);
	return (count);
}

/* Run the event loop until no .log is open, for at most ms milliseconds. */
static void
wait_closed(int ms)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (count_fds(".log") > 0) {
		event_base_loop(ev_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(2000);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			break;
	}
}

/* Return a path in the log directory (static buffer). */
static const char *
lpath(const char *name)
{
	static char buf[512];

	snprintf(buf, sizeof buf, "%s/%s", logdir, name);
	return (buf);
}

/* Read a whole file; NULL if it does not exist. */
static uint8_t *
slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	ssize_t n;
	size_t off = 0;
	int fd;

	*len = 0;
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW)) == -1)
		return (NULL);
	if (fstat(fd, &st) == -1)
		abort();
	p = malloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size &&
	    (n = read(fd, p + off, (size_t)st.st_size - off)) > 0)
		off += (size_t)n;
	close(fd);
	p[off] = '\0';
	*len = off;
	return (p);
}

/* Return true if a path exists (without following a symlink). */
static bool
exists(const char *path)
{
	struct stat st;

	return (lstat(path, &st) == 0);
}

/* Count the entries of a directory other than . and .. */
static int
count_entries(const char *dir)
{
	char cmd[256];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return (n);
}

/* Return true if a name in the log dir is a symlink. */
static bool
lpath_is_link(const char *name)
{
	struct stat st;

	return (lstat(lpath(name), &st) == 0 && S_ISLNK(st.st_mode));
}

/* Count the newlines of a file; 0 if it cannot be read. */
static size_t
count_lines(const char *path)
{
	uint8_t *p;
	size_t len, i, n = 0;

	if ((p = slurp(path, &len)) == NULL)
		return (0);
	for (i = 0; i < len; i++)
		n += p[i] == '\n';
	free(p);
	return (n);
}

/* Fill a buffer with a pattern that repeats every 251 bytes. */
static uint8_t *
pattern(size_t len)
{
	uint8_t *p = malloc(len);
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 7 + i / 251) & 0xff);
	return (p);
}

/* Split a file into JSON objects, one per line. Returns the count. */
static size_t
load_events(const char *name, json_t **ev, size_t max)
{
	uint8_t *p;
	size_t len, n = 0;
	char *line, *save, *s;
	json_error_t err;

	if ((p = slurp(lpath(name), &len)) == NULL)
		return (0);
	s = (char *)p;
	for (line = strtok_r(s, "\n", &save); line != NULL && n < max;
	    line = strtok_r(NULL, "\n", &save)) {
		ev[n] = json_loads(line, 0, &err);
		if (ev[n] == NULL) {
			fprintf(stderr, "bad JSON line: %s (%s)\n", line,
			    err.text);
			continue;
		}
		n++;
	}
	free(p);
	return (n);
}

/* Free loaded events. */
static void
free_events(json_t **ev, size_t n)
{
	while (n-- > 0)
		json_decref(ev[n]);
}

/* Every byte value, in many small writes and a few large ones. */
static void
test_bytes_exact(void)
{
	struct consolelog *cl;
	uint8_t *want, *got;
	size_t total = 300000, off = 0, n, glen, step = 0;

	setup();
	want = pattern(total);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	ASSERT_STR_EQ(consolelog_path(cl), lpath(ID ".log"));
	while (off < total) {
		n = (step % 50 == 49) ? 20000 : 1 + (step * 13) % 37;
		if (n > total - off)
			n = total - off;
		consolelog_write(cl, want + off, n);
		off += n;
		step++;
	}
	consolelog_close(cl);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_TRUE(got != NULL);
	ASSERT_MEM_EQ(got, glen, want, total);
	free(got);

	/* All 256 values once more, one byte a write, appended. */
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	for (n = 0; n < 256; n++) {
		uint8_t c = (uint8_t)n;

		consolelog_write(cl, &c, 1);
	}
	consolelog_shutdown();
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_SIZE_EQ(glen, total + 256);
	for (n = 0; n < 256; n++)
		ASSERT_INT_EQ(got[total + n], n);
	free(got);
	free(want);
	consolelog_close(cl);
	teardown();
}

/* The sync timer writes buffered bytes out without a close. */
static void
test_sync_tick(void)
{
	struct consolelog *cl;
	uint8_t *got;
	size_t glen;
	int i;

	setup();
	cfg.log_sync_ms = 20;
	consolelog_test_tune(50, 0);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	ASSERT_INT_EQ(count_fds(".log"), 0);
	consolelog_write(cl, (const uint8_t *)"hello", 5);
	got = slurp(lpath(ID ".log"), &glen);
	free(got);
	ASSERT_SIZE_EQ(glen, 0);	/* buffered */
	ASSERT_INT_EQ(count_fds(".log"), 0);	/* not opened yet */
	event_base_loop(ev_base, EVLOOP_ONCE);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, "hello", 5);
	free(got);
	ASSERT_INT_EQ(count_fds(".log"), 1);	/* open while active */
	/* The idle timer closes it (a loaded machine may run a sync tick
	 * first, so allow a few loop passes)... */
	for (i = 0; i < 50 && count_fds(".log") != 0; i++)
		event_base_loop(ev_base, EVLOOP_ONCE);
	ASSERT_INT_EQ(count_fds(".log"), 0);
	/* ...then nothing is armed, the loop has nothing to do. */
	ASSERT_INT_EQ(event_base_loop(ev_base, EVLOOP_NONBLOCK), 1);
	consolelog_close(cl);
	teardown();
}

/* Per-line prefixes, written lazily: never a dangling one. */
static void
test_timestamps(void)
{
	static const char want[] = "TS| abc\nTS| \nTS| x\nTS| y\nTS| z";
	static char fmt1[] = "TS| ", fmt2[] = "[%Y] ";
	struct consolelog *cl;
	uint8_t *got;
	size_t glen, i;

	setup();
	cfg.log_timestamps = 1;
	cfg.log_timestamp_format = fmt1;
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, (const uint8_t *)"ab", 2);
	consolelog_write(cl, (const uint8_t *)"c\n", 2);
	consolelog_write(cl, (const uint8_t *)"\n", 1);
	consolelog_write(cl, (const uint8_t *)"x\ny\n", 4);
	consolelog_shutdown();
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, want, strlen(want) - 5);
	free(got);
	consolelog_close(cl);

	/* The next line gets its prefix when its first byte comes. */
	consolelog_init();
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, (const uint8_t *)"z", 1);
	consolelog_close(cl);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, want, strlen(want));
	free(got);

	/* A real format: 3000 short lines, each "[YYYY] n\n". */
	cfg.log_timestamp_format = fmt2;
	ASSERT_INT_EQ(unlink(lpath(ID ".log")), 0);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	for (i = 0; i < 3000; i++)
		consolelog_write(cl, (const uint8_t *)"n\n", 2);
	consolelog_close(cl);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_SIZE_EQ(glen, 3000 * 9);
	for (i = 0; i < 3000; i++) {
		ASSERT_TRUE(got[i * 9] == '[' && got[i * 9 + 5] == ']');
		ASSERT_MEM_EQ(got + i * 9 + 7, 2, "n\n", 2);
	}
	free(got);
	teardown();
}

/* Events go to the sidecar as valid JSON with exact offsets. */
static void
test_events(void)
{
	struct consolelog *cl;
	json_t *ev[8];
	size_t n, glen;
	uint8_t *got;
	const char *detail =
	    "peer \"10.0.0.1\"\\\n\x01\x1b[31m\xff\xc3\xa9\xe2\x82";

	setup();
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_event(cl, "connect", detail);
	consolelog_write(cl, (const uint8_t *)"12345", 5);
	consolelog_event(cl, "vmotion", "to \"host b\"");
	consolelog_write(cl, (const uint8_t *)"{\"event\":\"x\"}\n", 15);
	consolelog_event(cl, "disconnect", NULL);
	consolelog_close(cl);

	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, "12345{\"event\":\"x\"}\n", 20);
	free(got);
	n = load_events(ID ".events", ev, nitems(ev));
	ASSERT_SIZE_EQ(n, 3);
	ASSERT_STR_EQ(json_string_value(json_object_get(ev[0], "event")),
	    "connect");
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[0], "offset")), 0);
	ASSERT_STR_EQ(json_string_value(json_object_get(ev[0], "detail")),
	    "peer \"10.0.0.1\"\\\n\x01\x1b[31m\xef\xbf\xbd\xc3\xa9"
	    "\xef\xbf\xbd\xef\xbf\xbd");
	ASSERT_TRUE(strlen(json_string_value(json_object_get(ev[0],
	    "time"))) == 20);
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[1], "offset")), 5);
	ASSERT_STR_EQ(json_string_value(json_object_get(ev[1], "detail")),
	    "to \"host b\"");
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[2], "offset")),
	    20);
	ASSERT_TRUE(json_object_get(ev[2], "detail") == NULL);
	free_events(ev, n);
	teardown();
}

/* Size rotation: exactly log_keep old files, nothing lost in between. */
static void
test_rotation(void)
{
	struct consolelog *cl;
	uint8_t *want, *got, *all;
	size_t total = 10500, off = 0, n, glen, alen = 0, step = 0;
	char name[64];
	json_t *ev[64];
	int i;

	setup();
	cfg.log_max_size = 1000;
	cfg.log_keep = 3;
	want = pattern(total);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	while (off < total) {
		n = 1 + (step * 31) % 97;
		if (step % 40 == 39)
			n = 2500;	/* spans more than one file */
		if (n > total - off)
			n = total - off;
		consolelog_write(cl, want + off, n);
		off += n;
		if (step % 7 == 0)
			consolelog_event(cl, "mark", NULL);
		step++;
	}
	consolelog_close(cl);

	all = malloc(total);
	for (i = 3; i >= 0; i--) {
		snprintf(name, sizeof name, ID ".log%s%.0d", i ? "." : "", i);
		got = slurp(lpath(name), &glen);
		ASSERT_TRUE(got != NULL);
		if (i > 0)
			ASSERT_SIZE_EQ(glen, 1000);
		memcpy(all + alen, got, glen);
		alen += glen;
		free(got);
		snprintf(name, sizeof name, ID ".events%s%.0d", i ? "." : "",
		    i);
		ASSERT_TRUE(exists(lpath(name)));
		n = load_events(name, ev, nitems(ev));
		while (n > 0) {
			n--;
			ASSERT_TRUE(json_integer_value(json_object_get(ev[n],
			    "offset")) <= 1000);
			json_decref(ev[n]);
		}
	}
	ASSERT_TRUE(!exists(lpath(ID ".log.4")));
	ASSERT_TRUE(!exists(lpath(ID ".events.4")));
	ASSERT_SIZE_EQ(alen, 3500);
	ASSERT_MEM_EQ(all, alen, want + total - alen, alen);
	ASSERT_INT_EQ(count_entries(logdir), 8);
	free(all);
	free(want);
	teardown();
}

/* log_keep 0: the full file is deleted, nothing rotated is kept. */
static void
test_rotation_keep0(void)
{
	struct consolelog *cl;
	uint8_t *want, *got;
	size_t glen;

	setup();
	cfg.log_max_size = 100;
	cfg.log_keep = 0;
	want = pattern(250);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, want, 250);
	consolelog_close(cl);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, want + 200, 50);
	ASSERT_INT_EQ(count_entries(logdir), 2);
	free(got);
	free(want);
	teardown();
}

/* A symlink among the rotated names is replaced, never followed. */
static void
test_rotation_symlink(void)
{
	char target[128];
	struct consolelog *cl;
	uint8_t *want, *got;
	size_t glen;
	FILE *f;

	setup();
	cfg.log_max_size = 100;
	cfg.log_keep = 2;
	snprintf(target, sizeof target, "%s/target", root);
	f = fopen(target, "w");
	fputs("secret", f);
	fclose(f);
	ASSERT_INT_EQ(symlink(target, lpath(ID ".log.1")), 0);
	ASSERT_INT_EQ(symlink(target, lpath(ID ".log.2")), 0);
	want = pattern(250);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, want, 250);
	consolelog_close(cl);
	got = slurp(target, &glen);
	ASSERT_MEM_EQ(got, glen, "secret", 6);
	free(got);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, want + 200, 50);
	free(got);
	got = slurp(lpath(ID ".log.1"), &glen);
	ASSERT_MEM_EQ(got, glen, want + 100, 100);
	free(got);
	free(want);
	teardown();
}

/* Tail across rotation boundaries, and with bytes still buffered. */
static void
test_tail(void)
{
	struct consolelog *cl;
	struct evbuffer *b;
	uint8_t *want;
	size_t total = 3500;

	setup();
	cfg.log_max_size = 1000;
	cfg.log_keep = 3;
	want = pattern(total + 10);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, want, total);
	b = evbuffer_new();

	ASSERT_INT_EQ(consolelog_tail(ID, 1500, b), 0);
	ASSERT_MEM_EQ(evbuffer_pullup(b, -1), evbuffer_get_length(b),
	    want + total - 1500, 1500);
	evbuffer_drain(b, evbuffer_get_length(b));

	ASSERT_INT_EQ(consolelog_tail(ID, 100, b), 0);
	ASSERT_MEM_EQ(evbuffer_pullup(b, -1), evbuffer_get_length(b),
	    want + total - 100, 100);
	evbuffer_drain(b, evbuffer_get_length(b));

	ASSERT_INT_EQ(consolelog_tail(ID, 2500, b), 0);
	ASSERT_MEM_EQ(evbuffer_pullup(b, -1), evbuffer_get_length(b),
	    want + total - 2500, 2500);
	evbuffer_drain(b, evbuffer_get_length(b));

	ASSERT_INT_EQ(consolelog_tail(ID, 1000000, b), 0);
	ASSERT_MEM_EQ(evbuffer_pullup(b, -1), evbuffer_get_length(b),
	    want, total);
	evbuffer_drain(b, evbuffer_get_length(b));

	/* Buffered bytes are included. */
	consolelog_write(cl, want + total, 10);
	ASSERT_INT_EQ(consolelog_tail(ID, 20, b), 0);
	ASSERT_MEM_EQ(evbuffer_pullup(b, -1), evbuffer_get_length(b),
	    want + total - 10, 20);
	evbuffer_drain(b, evbuffer_get_length(b));

	ASSERT_INT_EQ(consolelog_tail("ffffffffffffffffffffffffffffffff", 10,
	    b), -1);
	ASSERT_INT_EQ(consolelog_tail("../../etc/passwd", 10, b), -1);
	ASSERT_SIZE_EQ(evbuffer_get_length(b), 0);
	evbuffer_free(b);
	consolelog_close(cl);
	free(want);
	teardown();
}

/* Ids that could name something else are refused; nothing is created. */
static void
test_hostile_ids(void)
{
	static const char *bad[] = {
		"../../x", "a/b", "..", ".", ".hidden", "", "x",
		ID "/../../x", ID "..", ID ".", ID ".a/b", ID ".~1", ID "~",
		ID "~1a", ID ".a b", "0123456789ABCDEF0123456789abcdef",
		"/" ID, ID "\n", "0123456789abcdef0123456789abcde",
		"\0" ID,
	};
	static const char *good[] = {
		ID, ID ".serial-1", ID ".a.b_c-d", ID "~2", ID ".x~12",
	};
	struct consolelog *cl;
	char *longid;
	size_t i;

	setup();
	for (i = 0; i < nitems(bad); i++) {
		if (consolelog_open(bad[i]) != NULL)
			t_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
		ASSERT_TRUE(!t_failed_current);
	}
	longid = malloc(4097);
	memcpy(longid, ID, 32);
	memset(longid + 32, 'a', 4096 - 32);
	longid[32] = '.';
	longid[4096] = '\0';
	ASSERT_TRUE(consolelog_open(longid) == NULL);
	longid[201] = '\0';	/* 201: still too long */
	ASSERT_TRUE(consolelog_open(longid) == NULL);
	longid[200] = '\0';	/* 200: the longest allowed */
	cl = consolelog_open(longid);
	ASSERT_TRUE(cl != NULL);
	consolelog_close(cl);
	free(longid);
	ASSERT_TRUE(consolelog_open(NULL) == NULL);
	/* Files are created lazily: no output, no event, no file. */
	ASSERT_INT_EQ(count_entries(logdir), 0);
	ASSERT_INT_EQ(count_entries(root), 1);	/* logs/ only */

	for (i = 0; i < nitems(good); i++) {
		cl = consolelog_open(good[i]);
		if (cl == NULL)
			t_fail(__FILE__, __LINE__, "refused '%s'", good[i]);
		ASSERT_TRUE(cl != NULL);
		/* The same id twice is refused. */
		ASSERT_TRUE(consolelog_open(good[i]) == NULL);
		consolelog_close(cl);
	}
	ASSERT_INT_EQ(count_entries(root), 1);
	teardown();
}

/*
 * Open, print, record an event and close one log; the files are opened
 * (and checked) only then, since they are created lazily.
 */
static void
symlink_use(void)
{
	struct consolelog *cl;

	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_event(cl, "vm-connect", "x");
	consolelog_write(cl, (const uint8_t *)"console", 7);
	consolelog_event(cl, "vm-disconnect", "x");
	consolelog_close(cl);
}

/*
 * A symlink named like the log, or its sidecar, is refused: never written
 * through, whenever the file is first opened.
 */
static void
test_symlink(void)
{
	char target[128];
	uint8_t *got;
	size_t glen;
	FILE *f;

	setup();
	snprintf(target, sizeof target, "%s/target", root);
	f = fopen(target, "w");
	fputs("secret", f);
	fclose(f);
	ASSERT_INT_EQ(symlink(target, lpath(ID ".log")), 0);
	symlink_use();
	ASSERT_TRUE(lpath_is_link(ID ".log"));
	ASSERT_INT_EQ(unlink(lpath(ID ".log")), 0);
	(void)unlink(lpath(ID ".events"));
	ASSERT_INT_EQ(symlink(target, lpath(ID ".events")), 0);
	symlink_use();
	ASSERT_TRUE(lpath_is_link(ID ".events"));
	/* A hard link to a file elsewhere is refused too. */
	ASSERT_INT_EQ(unlink(lpath(ID ".events")), 0);
	ASSERT_INT_EQ(unlink(lpath(ID ".log")), 0);
	ASSERT_INT_EQ(link(target, lpath(ID ".log")), 0);
	symlink_use();
	ASSERT_INT_EQ(unlink(lpath(ID ".log")), 0);
	/* And a FIFO, without blocking. */
	ASSERT_INT_EQ(mkfifo(lpath(ID ".log"), 0600), 0);
	symlink_use();
	got = slurp(target, &glen);
	ASSERT_MEM_EQ(got, glen, "secret", 6);
	free(got);
	teardown();
}

/*
 * Events of a port that has not printed are held, not written: no file
 * until the first output, then they come first and in order, with their
 * own offsets; a port that never prints gets them when it is closed.
 */
static void
test_events_held(void)
{
	struct consolelog *cl;
	json_t *ev[8];
	size_t n;

	setup();
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_event(cl, "vm-connect", "a");
	consolelog_event(cl, "client-attach", "b");
	ASSERT_INT_EQ(count_entries(logdir), 0);
	consolelog_write(cl, (const uint8_t *)"hello", 5);
	consolelog_event(cl, "vm-disconnect", "c");
	ASSERT_INT_EQ(count_entries(logdir), 2);
	consolelog_close(cl);
	n = load_events(ID ".events", ev, nitems(ev));
	ASSERT_SIZE_EQ(n, 3);
	ASSERT_STR_EQ(json_string_value(json_object_get(ev[0], "event")),
	    "vm-connect");
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[0], "offset")), 0);
	ASSERT_STR_EQ(json_string_value(json_object_get(ev[1], "event")),
	    "client-attach");
	ASSERT_STR_EQ(json_string_value(json_object_get(ev[2], "event")),
	    "vm-disconnect");
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[2], "offset")), 5);
	free_events(ev, n);

	/* Never prints: written at close. */
	cl = consolelog_open(ID ".quiet");
	ASSERT_TRUE(cl != NULL);
	consolelog_event(cl, "vm-connect", "a");
	ASSERT_INT_EQ(count_entries(logdir), 2);
	consolelog_close(cl);
	ASSERT_INT_EQ(count_entries(logdir), 3);
	n = load_events(ID ".quiet.events", ev, nitems(ev));
	ASSERT_SIZE_EQ(n, 1);
	free_events(ev, n);

	/* More than CLOG_HELD_MAX bytes of events: written, none lost. */
	cl = consolelog_open(ID ".busy");
	ASSERT_TRUE(cl != NULL);
	for (n = 0; n < 200; n++)
		consolelog_event(cl, "client-attach", "0123456789");
	ASSERT_TRUE(exists(lpath(ID ".busy.events")));
	consolelog_close(cl);
	ASSERT_SIZE_EQ(count_lines(lpath(ID ".busy.events")), 200);
	teardown();
}

/* SIGHUP after logrotate moved the file: new data goes to a new file. */
static void
test_reopen(void)
{
	char moved[512];
	struct consolelog *cl;
	uint8_t *got;
	size_t glen;

	setup();
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, (const uint8_t *)"before", 6);
	consolelog_event(cl, "connect", NULL);
	snprintf(moved, sizeof moved, "%s", lpath("moved.log"));
	ASSERT_INT_EQ(rename(lpath(ID ".log"), moved), 0);
	consolelog_write(cl, (const uint8_t *)"|still", 6);
	consolelog_reopen_all();
	consolelog_write(cl, (const uint8_t *)"after", 5);
	consolelog_event(cl, "detach", "x");
	consolelog_close(cl);
	got = slurp(moved, &glen);
	ASSERT_MEM_EQ(got, glen, "before|still", 12);
	free(got);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, "after", 5);
	free(got);

	/* Logging turned off by the reload: writes are ignored. */
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	cfg.log_enabled = 0;
	consolelog_reopen_all();
	consolelog_write(cl, (const uint8_t *)"off", 3);
	ASSERT_TRUE(consolelog_open(ID "~2") == NULL);
	cfg.log_enabled = 1;
	consolelog_reopen_all();
	consolelog_write(cl, (const uint8_t *)"on", 2);
	consolelog_close(cl);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, "afteron", 7);
	free(got);
	teardown();
}

/* Every entry point accepts NULL. */
static void
test_null(void)
{
	struct evbuffer *b = evbuffer_new();

	setup();
	consolelog_write(NULL, (const uint8_t *)"x", 1);
	consolelog_event(NULL, "connect", "x");
	consolelog_close(NULL);
	ASSERT_TRUE(consolelog_path(NULL) == NULL);
	ASSERT_INT_EQ(consolelog_tail(NULL, 10, b), -1);
	teardown();
	/* Logging off: open gives NULL. */
	memset(&cfg, 0, sizeof cfg);
	consolelog_init();
	ASSERT_TRUE(consolelog_open(ID) == NULL);
	consolelog_shutdown();
	evbuffer_free(b);
}

/*
 * Write errors with timestamps on (EFBIG from RLIMIT_FSIZE, no root
 * needed): the gap counts console bytes only, never prefix bytes.
 */
static void
test_gap_timestamps(void)
{
	static char fmt[] = "@@@@";
	static const char line[] = "abcdefghi\n";
	struct consolelog *cl;
	struct rlimit old, rl;
	json_t *ev[64];
	uint8_t *got;
	size_t glen, i, n, nev, console = 0, gapbytes = 0, total = 0;

	setup();
	cfg.log_timestamps = 1;
	cfg.log_timestamp_format = fmt;
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	rl = old;
	rl.rlim_cur = 20001;
	ASSERT_INT_EQ(setrlimit(RLIMIT_FSIZE, &rl), 0);
	for (i = 0; i < 5000; i++) {
		n = 1 + i % 10;
		consolelog_write(cl, (const uint8_t *)line, n);
		if (n < 10)
			consolelog_write(cl, (const uint8_t *)line + n,
			    10 - n);
		total += 10;
		if (i == 2500)
			consolelog_event(cl, "mid", NULL);
	}
	consolelog_shutdown();
	ASSERT_INT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
	consolelog_close(cl);
	consolelog_init();
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	for (i = 0; i < 100; i++)
		consolelog_write(cl, (const uint8_t *)line, 10);
	total += 1000;
	consolelog_close(cl);

	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_TRUE(glen > 20001);
	for (i = 0; i < glen; i++)
		if (got[i] != '@')
			console++;
	free(got);
	nev = load_events(ID ".events", ev, nitems(ev));
	for (i = 0; i < nev; i++)
		gapbytes += (size_t)json_integer_value(json_object_get(ev[i],
		    "bytes"));
	free_events(ev, nev);
	ASSERT_TRUE(gapbytes > 0);
	ASSERT_SIZE_EQ(console + gapbytes, total);
	teardown();
}

/*
 * Disk full: on a 1 MiB tmpfs, fill the disk, keep writing, free space,
 * write again. Every submitted byte is either in the file or in a gap
 * event at the exact offset where it is missing.
 */
static void
enospc_body(void)
{
	struct consolelog *cl;
	uint8_t *want, *got, chunk[4096];
	size_t total = 600000, off = 0, n, glen, step = 0, i, nev;
	size_t fpos = 0, spos = 0, gaps = 0, gapbytes = 0, goff;
	char filler[256];
	json_t *ev[256];
	int fd;

	want = pattern(total);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_event(cl, "connect", "start");

	/* 1: 100 KB fits. */
	for (; off < 100000; off += n, step++) {
		n = 1 + (step * 17) % 300;
		if (n > 100000 - off)
			n = 100000 - off;
		consolelog_write(cl, want + off, n);
	}
	/* 2: a filler file takes all that is left. */
	snprintf(filler, sizeof filler, "%s/filler", logdir);
	fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_TRUE(fd != -1);
	memset(chunk, 'F', sizeof chunk);
	while (write(fd, chunk, sizeof chunk) > 0)
		;
	while (write(fd, chunk, 1) > 0)
		;
	close(fd);
	/* 3: 400 KB more, with some large writes and an event. */
	for (; off < 500000; off += n, step++) {
		n = 1 + (step * 17) % 300;
		if (step % 100 == 0)
			n = 9000;
		if (n > 500000 - off)
			n = 500000 - off;
		consolelog_write(cl, want + off, n);
		if (step % 500 == 0)
			consolelog_event(cl, "mid", "disk full");
	}
	event_base_loop(ev_base, EVLOOP_NONBLOCK);
	/* 4: free space and write the rest. */
	ASSERT_INT_EQ(unlink(filler), 0);
	for (; off < total; off += n, step++) {
		n = 1 + (step * 17) % 300;
		if (n > total - off)
			n = total - off;
		consolelog_write(cl, want + off, n);
	}
	consolelog_close(cl);

	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_TRUE(got != NULL);
	nev = load_events(ID ".events", ev, nitems(ev));
	for (i = 0; i < nev; i++) {
		const char *e = json_string_value(json_object_get(ev[i],
		    "event"));

		if (e == NULL || strcmp(e, "gap") != 0)
			continue;
		goff = (size_t)json_integer_value(json_object_get(ev[i],
		    "offset"));
		n = (size_t)json_integer_value(json_object_get(ev[i],
		    "bytes"));
		ASSERT_TRUE(goff >= fpos && goff <= glen);
		ASSERT_MEM_EQ(got + fpos, goff - fpos, want + spos,
		    goff - fpos);
		spos += goff - fpos + n;
		fpos = goff;
		gaps++;
		gapbytes += n;
	}
	ASSERT_MEM_EQ(got + fpos, glen - fpos, want + spos, total - spos);
	ASSERT_TRUE(gaps >= 1);
	ASSERT_TRUE(gapbytes > 0);
	ASSERT_SIZE_EQ(glen + gapbytes, total);
	printf("  enospc: %zu written, %zu missed in %zu gap event(s)\n",
	    glen, gapbytes, gaps);
	free_events(ev, nev);
	free(got);
	free(want);
}

/* Run the disk-full test on a 1 MiB tmpfs, or skip it if none can be had. */
static void
test_enospc(void)
{
	setup();
	if (mount("tmpfs", logdir, "tmpfs", 0, "size=1m") == -1) {
		printf("skip test_enospc: cannot mount a tmpfs on %s (%s); "
		    "run as root to test disk-full handling\n", logdir,
		    strerror(errno));
		teardown();
		return;
	}
	/* Reopen the directory: the fd must be on the new tmpfs. */
	consolelog_shutdown();
	consolelog_init();
	enospc_body();
	consolelog_shutdown();
	if (umount2(logdir, MNT_DETACH) == -1)
		t_fail(__FILE__, __LINE__, "umount: %s", strerror(errno));
	teardown();
}

/*
 * 3000 logs, each written once: while the data flows the .log files are
 * open (never more than the default cap), once idle they are closed and
 * the process holds far fewer fds than logs. Writing again reopens and
 * appends; everything is in place after shutdown.
 */
static void
test_many_idle(void)
{
	enum { NLOG = 3000 };
	struct consolelog **cl;
	char id[64], data[64], name[96];
	uint8_t *got;
	size_t glen, dlen;
	int i, base, open_max = 0, n;

	setup();
	cfg.log_sync_ms = 10;
	consolelog_test_tune(100, 0);
	base = count_fds(NULL);
	cl = calloc(NLOG, sizeof *cl);
	for (i = 0; i < NLOG; i++) {
		snprintf(id, sizeof id, ID ".p%d", i);
		cl[i] = consolelog_open(id);
		ASSERT_TRUE(cl[i] != NULL);
	}
	/* Open ports cost no fd. */
	ASSERT_INT_EQ(count_fds(NULL), base);
	for (i = 0; i < NLOG; i++) {
		dlen = (size_t)snprintf(data, sizeof data, "first %d\n", i);
		consolelog_write(cl[i], (const uint8_t *)data, dlen);
	}
	event_base_loop(ev_base, EVLOOP_ONCE);	/* the sync tick */
	n = count_fds(".log");
	if (n > open_max)
		open_max = n;
	ASSERT_TRUE(open_max > 0 && open_max <= 1024);
	wait_closed(5000);
	n = count_fds(NULL);
	printf("  many_idle: %d logs, %d .log fds open at most, %d fds "
	    "after idle (%d before)\n", NLOG, open_max, n, base);
	ASSERT_INT_EQ(count_fds(".log"), 0);
	ASSERT_TRUE(n <= base + 2);
	ASSERT_TRUE(n < NLOG / 100);

	/* Reopened on the next write, appended to. */
	for (i = 0; i < NLOG; i += 3) {
		dlen = (size_t)snprintf(data, sizeof data, "again %d\n", i);
		consolelog_write(cl[i], (const uint8_t *)data, dlen);
	}
	consolelog_shutdown();
	ASSERT_INT_EQ(count_fds(NULL), base - 1);	/* the dir fd too */
	for (i = 0; i < NLOG; i++) {
		consolelog_close(cl[i]);
		snprintf(name, sizeof name, ID ".p%d.log", i);
		got = slurp(lpath(name), &glen);
		ASSERT_TRUE(got != NULL);
		dlen = (size_t)snprintf(data, sizeof data, "first %d\n", i);
		if (i % 3 == 0)
			dlen += (size_t)snprintf(data + dlen,
			    sizeof data - dlen, "again %d\n", i);
		ASSERT_MEM_EQ(got, glen, data, dlen);
		free(got);
	}
	free(cl);
	teardown();
}

/*
 * A cap of 8 open .log fds and 50 files written round-robin, small
 * (buffered) and large (direct) writes, events in between: never more
 * than 8 open, every byte in its own file in order, every event offset
 * exact.
 */
static void
test_open_cap(void)
{
	enum { NLOG = 50, ROUNDS = 40, BIG = 9000 };
	struct consolelog *cl[NLOG];
	uint8_t *want[NLOG], *got, *big;
	size_t wlen[NLOG], glen, n, nev, k;
	char id[64], name[96], rec[64];
	json_t *ev[ROUNDS];
	int i, r, c, open_max = 0;

	setup();
	cfg.log_sync_ms = 1;
	consolelog_test_tune(60000, 8);
	big = pattern(BIG);
	for (i = 0; i < NLOG; i++) {
		snprintf(id, sizeof id, ID ".c%d", i);
		cl[i] = consolelog_open(id);
		ASSERT_TRUE(cl[i] != NULL);
		want[i] = malloc(ROUNDS * (BIG + 64));
		wlen[i] = 0;
	}
	for (r = 0; r < ROUNDS; r++) {
		for (i = 0; i < NLOG; i++) {
			if ((r + i) % 5 == 0) {
				big[0] = (uint8_t)i;
				big[1] = (uint8_t)r;
				consolelog_write(cl[i], big, BIG);
				memcpy(want[i] + wlen[i], big, BIG);
				wlen[i] += BIG;
			} else {
				n = (size_t)snprintf(rec, sizeof rec,
				    "<f%d r%d>", i, r);
				consolelog_write(cl[i], (const uint8_t *)rec,
				    n);
				memcpy(want[i] + wlen[i], rec, n);
				wlen[i] += n;
			}
			if ((r + i) % 7 == 3)
				consolelog_event(cl[i], "mark", NULL);
			if ((c = count_fds(".log")) > open_max)
				open_max = c;
			ASSERT_TRUE(c <= 8);
		}
		if (r % 4 == 0) {
			usleep(2000);
			event_base_loop(ev_base, EVLOOP_NONBLOCK);
			if ((c = count_fds(".log")) > open_max)
				open_max = c;
			ASSERT_TRUE(c <= 8);
		}
	}
	ASSERT_INT_EQ(open_max, 8);
	consolelog_shutdown();
	ASSERT_INT_EQ(count_fds(".log"), 0);
	for (i = 0; i < NLOG; i++) {
		consolelog_close(cl[i]);
		snprintf(name, sizeof name, ID ".c%d.log", i);
		got = slurp(lpath(name), &glen);
		ASSERT_TRUE(got != NULL);
		ASSERT_MEM_EQ(got, glen, want[i], wlen[i]);
		free(got);
		/* Each mark is at the size the log had at that point. */
		snprintf(name, sizeof name, ID ".c%d.events", i);
		nev = load_events(name, ev, nitems(ev));
		for (r = 0, k = 0, glen = 0; r < ROUNDS; r++) {
			glen += (r + i) % 5 == 0 ? BIG :
			    (size_t)snprintf(rec, sizeof rec, "<f%d r%d>", i,
			    r);
			if ((r + i) % 7 != 3)
				continue;
			ASSERT_TRUE(k < nev);
			ASSERT_INT_EQ(json_integer_value(json_object_get(ev[k],
			    "offset")), (json_int_t)glen);
			k++;
		}
		ASSERT_SIZE_EQ(k, nev);
		free_events(ev, nev);
		free(want[i]);
	}
	free(big);
	teardown();
}

/*
 * Across an idle close: the size is taken again at reopen (rotation and
 * event offsets stay exact), and the reopen checks the file again: a
 * symlink put in its place while closed is never followed.
 */
static void
test_idle_reopen(void)
{
	char target[128];
	struct consolelog *cl;
	uint8_t *want, *got;
	json_t *ev[8];
	size_t glen, n;

	setup();
	cfg.log_sync_ms = 5;
	cfg.log_max_size = 100;
	cfg.log_keep = 3;
	consolelog_test_tune(20, 0);
	want = pattern(200);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	consolelog_write(cl, want, 60);
	wait_closed(2000);
	ASSERT_INT_EQ(count_fds(".log"), 0);
	consolelog_event(cl, "idle", NULL);		/* offset 60 */
	consolelog_write(cl, want + 60, 60);		/* 40 + rotate + 20 */
	wait_closed(2000);
	ASSERT_INT_EQ(count_fds(".log"), 0);
	consolelog_event(cl, "after", NULL);		/* offset 20 */
	got = slurp(lpath(ID ".log.1"), &glen);
	ASSERT_MEM_EQ(got, glen, want, 100);
	free(got);
	got = slurp(lpath(ID ".log"), &glen);
	ASSERT_MEM_EQ(got, glen, want + 100, 20);
	free(got);
	n = load_events(ID ".events.1", ev, nitems(ev));
	ASSERT_SIZE_EQ(n, 1);
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[0], "offset")),
	    60);
	free_events(ev, n);
	n = load_events(ID ".events", ev, nitems(ev));
	ASSERT_SIZE_EQ(n, 1);
	ASSERT_INT_EQ(json_integer_value(json_object_get(ev[0], "offset")),
	    20);
	free_events(ev, n);

	/* Closed: swap in a symlink; the next open refuses it. */
	snprintf(target, sizeof target, "%s/target", root);
	got = slurp(lpath(ID ".log"), &glen);
	free(got);
	ASSERT_INT_EQ(rename(lpath(ID ".log"), target), 0);
	ASSERT_INT_EQ(symlink(target, lpath(ID ".log")), 0);
	consolelog_write(cl, want + 120, 30);
	event_base_loop(ev_base, EVLOOP_ONCE);
	ASSERT_INT_EQ(count_fds(".log"), 0);
	consolelog_close(cl);
	got = slurp(target, &glen);
	ASSERT_MEM_EQ(got, glen, want + 100, 20);
	free(got);
	free(want);
	teardown();
}

/* A port with events and no data never holds an fd between events. */
static void
test_events_only(void)
{
	struct consolelog *cl;
	json_t *ev[8];
	size_t n;
	int base;

	setup();
	cfg.log_sync_ms = 5;
	base = count_fds(NULL);
	cl = consolelog_open(ID);
	ASSERT_TRUE(cl != NULL);
	ASSERT_INT_EQ(count_fds(NULL), base);
	consolelog_event(cl, "vm-connect", "10.0.0.1");
	ASSERT_INT_EQ(count_fds(NULL), base);
	consolelog_event(cl, "client-attach", "10.0.0.2");
	ASSERT_INT_EQ(count_fds(NULL), base);
	event_base_loop(ev_base, EVLOOP_ONCE);	/* sync tick */
	ASSERT_INT_EQ(count_fds(NULL), base);
	/* Nothing open, nothing dirty: no timer left armed. */
	ASSERT_INT_EQ(event_base_loop(ev_base, EVLOOP_NONBLOCK), 1);
	consolelog_event(cl, "vm-disconnect", NULL);
	ASSERT_INT_EQ(count_fds(NULL), base);
	consolelog_close(cl);
	ASSERT_INT_EQ(count_fds(NULL), base);
	n = load_events(ID ".events", ev, nitems(ev));
	ASSERT_SIZE_EQ(n, 3);
	while (n-- > 0)
		ASSERT_INT_EQ(json_integer_value(json_object_get(ev[n],
		    "offset")), 0);
	free_events(ev, 3);
	teardown();
}

int
main(void)
{
	log_init(1, LOG_LVL_WARN, "test-consolelog");
	if ((ev_base = event_base_new()) == NULL)
		abort();
	/* fd counts below assume syncs in line; vspcd uses the thread. */
	consolelog_test_sync_inline(true);
	T_RUN(test_bytes_exact);
	T_RUN(test_sync_tick);
	T_RUN(test_timestamps);
	T_RUN(test_events);
	T_RUN(test_rotation);
	T_RUN(test_rotation_keep0);
	T_RUN(test_rotation_symlink);
	T_RUN(test_tail);
	T_RUN(test_hostile_ids);
	T_RUN(test_symlink);
	T_RUN(test_reopen);
	T_RUN(test_null);
	T_RUN(test_gap_timestamps);
	T_RUN(test_enospc);
	T_RUN(test_many_idle);
	T_RUN(test_open_cap);
	T_RUN(test_idle_reopen);
	T_RUN(test_events_only);
	T_RUN(test_events_held);
	event_base_free(ev_base);
	return (t_summary());
}
