/*
 * Unit tests for db.c: round trips, upsert, touch, expire, schema version
 * handling, symlink refusal, a save-rate measurement and crash durability.
 * The crash tests fork a child that saves through db.c and dies by
 * SIGKILL (its own, or the parent's at a random moment); every save the
 * child saw return must be in the db afterwards, and the file must pass
 * PRAGMA integrity_check. The test reads the file with SQLite directly
 * only to check what db.c cannot report (user_version, integrity).
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "t.h"
#include "vspcd.h"

#define NREC		64
#define CRASH_N		1000
#define CRASH_ROUNDS	20
#define CRASH_MAX	20000	/* saves per round before the child stops */
#define PERF_N		10000

/* A copy of one loaded port. */
struct rec {
	char	 uuid[33];
	char	*uri;
	char	*id;
	char	*name;
	int	 client_port;
	time_t	 last_seen;
};

/* What a load callback collected. */
struct recs {
	struct rec	r[NREC];
	int		n;
	int		overflow;
};

/* Marks of which crash-test ports a load returned. */
struct seen {
	int	 round;
	bool	*hit;
	int	 n;
	int	 bad;
};

/* Make a fresh temporary state directory in buf, under $TMPDIR or /tmp. */
static int
tmpdir(char *buf, size_t len)
{
	const char *base;
	int n;

	if ((base = getenv("TMPDIR")) == NULL || *base == '\0')
		base = "/tmp";
	n = snprintf(buf, len, "%s/test-db.XXXXXX", base);
	if (n < 0 || (size_t)n >= len)
		return (-1);
	return (mkdtemp(buf) == NULL ? -1 : 0);
}

/* Remove a temporary directory and the plain files and links in it. */
static void
rmtmp(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		(void)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) == -1 && errno == EISDIR)
			(void)rmdir(path);
	}
	closedir(d);
	(void)rmdir(dir);
}

/* Free what collect_cb copied. */
static void
recs_free(struct recs *rs)
{
	int i;

	for (i = 0; i < rs->n; i++) {
		free(rs->r[i].uri);
		free(rs->r[i].id);
		free(rs->r[i].name);
	}
	memset(rs, 0, sizeof(*rs));
}

/* Copy each loaded port into a struct recs. */
static void
collect_cb(const struct db_port *dp, void *arg)
{
	struct recs *rs = arg;
	struct rec *r;

	if (rs->n == NREC) {
		rs->overflow++;
		return;
	}
	r = &rs->r[rs->n++];
	memcpy(r->uuid, dp->uuid, sizeof(r->uuid));
	r->uri = strdup(dp->uri);
	r->id = strdup(dp->id);
	r->name = strdup(dp->name);
	r->client_port = dp->client_port;
	r->last_seen = dp->last_seen;
}

/* Find a collected port by id. */
static const struct rec *
recs_find(const struct recs *rs, const char *id)
{
	int i;

	for (i = 0; i < rs->n; i++)
		if (rs->r[i].id != NULL && strcmp(rs->r[i].id, id) == 0)
			return (&rs->r[i]);
	return (NULL);
}

/* Count loaded ports. */
static void
count_cb(const struct db_port *dp, void *arg)
{
	(*(int *)arg)++;
}

/* Read PRAGMA user_version of a file directly; -1 on error. */
static int
raw_user_version(const char *dir)
{
	char path[PATH_MAX];
	sqlite3_stmt *st;
	sqlite3 *h;
	int v = -1;

	(void)snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(h);
		return (-1);
	}
	if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st,
	    NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return (v);
}

/* Read PRAGMA journal_mode of a file directly into buf; 0 or -1. */
static int
raw_journal_mode(const char *dir, char *buf, size_t len)
{
	char path[PATH_MAX];
	sqlite3_stmt *st;
	const char *s;
	sqlite3 *h;
	int ret = -1;

	(void)snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(h);
		return (-1);
	}
	if (sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st,
	    NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW &&
		    (s = (const char *)sqlite3_column_text(st, 0)) != NULL) {
			(void)strlcpy(buf, s, len);
			ret = 0;
		}
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return (ret);
}

/* Run SQL on a file directly; 0 or -1. */
static int
raw_exec(const char *dir, const char *sql)
{
	char path[PATH_MAX];
	sqlite3 *h;
	int rc;

	(void)snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		sqlite3_close(h);
		return (-1);
	}
	rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
	sqlite3_close(h);
	return (rc == SQLITE_OK ? 0 : -1);
}

/* Run PRAGMA integrity_check on a file directly; true if "ok". */
static bool
raw_integrity_ok(const char *dir)
{
	char path[PATH_MAX];
	sqlite3_stmt *st;
	const char *s;
	sqlite3 *h;
	bool ok = false;
	int rows = 0;

	(void)snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(h);
		return (false);
	}
	if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st,
	    NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			s = (const char *)sqlite3_column_text(st, 0);
			if (rows++ == 0 && s != NULL && strcmp(s, "ok") == 0)
				ok = true;
			else {
				ok = false;
				fprintf(stderr, "integrity: %s\n",
				    s != NULL ? s : "NULL");
			}
		}
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return (ok);
}

/* Fill a port from fixed-size buffers. */
static void
mkport(struct db_port *dp, const char *uuid, char *uri, char *id,
    char *name, int client_port, time_t last_seen)
{
	memset(dp, 0, sizeof(*dp));
	(void)strlcpy(dp->uuid, uuid, sizeof(dp->uuid));
	dp->uri = uri;
	dp->id = id;
	dp->name = name;
	dp->client_port = client_port;
	dp->last_seen = last_seen;
}

/* Save, load, upsert, touch, expire and load with not_before. */
static void
test_round_trip(void)
{
	char dir[256];
	char uri1[] = "telnet://vc.example/vm?port=\"com1\"&x='y'",
	    uri2[] = "telnet://vc.example/vm?port=com2", id1[] = "vm-a:1",
	    id2[] = "vm-a:2", id3[] = "vm-b", id4[] = "vm-b-new",
	    name1[] = "Ünïcödé 虚拟机 🖥 'quoted' \"name\"", name2[] = "",
	    name3[] = "web01", name4[] = "web01-renamed";
	const char *u1 = "0123456789abcdeffedcba9800000000",
	    *u2 = "ffffffffffffffff0000000000000001";
	const struct rec *r;
	struct db_port dp;
	struct recs rs;

	memset(&rs, 0, sizeof(rs));
	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(db_open(dir), 0);

	mkport(&dp, u1, uri1, id1, name1, 50001, 1000);
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	mkport(&dp, u1, uri2, id2, name2, 0, 2000);
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	mkport(&dp, u2, uri2, id3, name3, 50002, 3000);
	ASSERT_INT_EQ(db_port_save(&dp), 0);

	/* All fields round trip, byte for byte. */
	ASSERT_INT_EQ(db_ports_load(0, collect_cb, &rs), 3);
	ASSERT_INT_EQ(rs.n, 3);
	ASSERT_TRUE((r = recs_find(&rs, id1)) != NULL);
	ASSERT_STR_EQ(r->uuid, u1);
	ASSERT_STR_EQ(r->uri, uri1);
	ASSERT_STR_EQ(r->name, name1);
	ASSERT_INT_EQ(r->client_port, 50001);
	ASSERT_INT_EQ(r->last_seen, 1000);
	ASSERT_TRUE((r = recs_find(&rs, id2)) != NULL);
	ASSERT_STR_EQ(r->uuid, u1);
	ASSERT_STR_EQ(r->uri, uri2);
	ASSERT_STR_EQ(r->name, "");
	ASSERT_INT_EQ(r->client_port, 0);
	ASSERT_INT_EQ(r->last_seen, 2000);
	ASSERT_TRUE((r = recs_find(&rs, id3)) != NULL);
	ASSERT_STR_EQ(r->uuid, u2);
	ASSERT_STR_EQ(r->name, name3);
	recs_free(&rs);

	/* A NULL name is stored as "". */
	mkport(&dp, u1, uri2, id2, NULL, 0, 2000);
	ASSERT_INT_EQ(db_port_save(&dp), 0);

	/* Upsert by (uuid, uri): same key, new id, name, port, time. */
	mkport(&dp, u2, uri2, id4, name4, 50003, 3500);
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	ASSERT_INT_EQ(db_ports_load(0, collect_cb, &rs), 3);
	ASSERT_TRUE(recs_find(&rs, id3) == NULL);
	ASSERT_TRUE((r = recs_find(&rs, id4)) != NULL);
	ASSERT_STR_EQ(r->uuid, u2);
	ASSERT_STR_EQ(r->name, name4);
	ASSERT_INT_EQ(r->client_port, 50003);
	ASSERT_INT_EQ(r->last_seen, 3500);
	recs_free(&rs);

	/* An id is never given to a second (uuid, uri). */
	mkport(&dp, u2, uri1, id1, name3, 0, 4000);
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	ASSERT_INT_EQ(db_ports_load(0, collect_cb, &rs), 3);
	ASSERT_TRUE((r = recs_find(&rs, id1)) != NULL);
	ASSERT_STR_EQ(r->uuid, u1);
	ASSERT_STR_EQ(r->uri, uri1);
	recs_free(&rs);

	/* Touch updates last_seen only; an unknown port is not an error. */
	ASSERT_INT_EQ(db_port_touch(u1, uri2, 5000), 0);
	ASSERT_INT_EQ(db_port_touch(u2, uri1, 5000), 0);
	ASSERT_INT_EQ(db_ports_load(0, collect_cb, &rs), 3);
	ASSERT_TRUE((r = recs_find(&rs, id2)) != NULL);
	ASSERT_INT_EQ(r->last_seen, 5000);
	ASSERT_STR_EQ(r->uri, uri2);
	recs_free(&rs);

	/* last_seen now: id1 1000, id4 3500, id2 5000. */
	ASSERT_INT_EQ(db_ports_load(3500, collect_cb, &rs), 2);
	ASSERT_TRUE(recs_find(&rs, id1) == NULL);
	ASSERT_TRUE(recs_find(&rs, id4) != NULL);
	ASSERT_TRUE(recs_find(&rs, id2) != NULL);
	recs_free(&rs);
	ASSERT_INT_EQ(db_ports_load(5001, collect_cb, &rs), 0);
	ASSERT_INT_EQ(db_ports_load(0, NULL, NULL), 3);

	/* Expire is strictly below the cutoff. */
	ASSERT_INT_EQ(db_expire(1000), 0);
	ASSERT_INT_EQ(db_expire(3500), 1);
	ASSERT_INT_EQ(db_ports_load(0, collect_cb, &rs), 2);
	ASSERT_TRUE(recs_find(&rs, id1) == NULL);
	recs_free(&rs);
	/* The expired id is free again, for another VM. */
	mkport(&dp, u2, uri1, id1, name3, 0, 6000);
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	ASSERT_INT_EQ(db_expire(10000), 3);
	ASSERT_INT_EQ(db_ports_load(0, NULL, NULL), 0);

	db_close();
	rmtmp(dir);
}

/* Bad arguments and calls without a database fail without crashing. */
static void
test_bad_calls(void)
{
	char dir[256], uri[] = "telnet://x/y", id[] = "p1";
	struct db_port dp;

	mkport(&dp, "00000000000000000000000000000001", uri, id, NULL, 0, 1);
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	ASSERT_INT_EQ(db_port_touch(dp.uuid, uri, 2), -1);
	ASSERT_INT_EQ(db_ports_load(0, NULL, NULL), -1);
	ASSERT_INT_EQ(db_expire(1), -1);
	db_close();

	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(db_open(dir), 0);
	ASSERT_INT_EQ(db_port_save(NULL), -1);
	dp.uri = NULL;
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	dp.uri = uri;
	dp.id = NULL;
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	dp.id = id;
	dp.client_port = 70000;
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	dp.client_port = 0;
	memset(dp.uuid, 'a', sizeof(dp.uuid));	/* not terminated */
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	ASSERT_INT_EQ(db_port_touch(NULL, uri, 1), -1);
	ASSERT_INT_EQ(db_ports_load(0, NULL, NULL), 0);
	db_close();
	db_close();

	ASSERT_INT_EQ(db_open("/nonexistent/vspcd-state"), -1);
	rmtmp(dir);
}

/* Open twice in a row: the second open replaces the first. */
static void
test_reopen(void)
{
	char dir[256], uri[] = "telnet://vc/vm", id[] = "keep", name[] = "n";
	char path[PATH_MAX], mode[16];
	struct db_port dp;
	struct recs rs;
	struct stat sb;

	memset(&rs, 0, sizeof(rs));
	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(db_open(dir), 0);
	mkport(&dp, "0123456789abcdef0123456789abcdef", uri, id, name, 4242,
	    77);
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	db_close();

	/* Close checkpointed and truncated the WAL; WAL mode persists. */
	(void)snprintf(path, sizeof(path), "%s/state.db-wal", dir);
	ASSERT_TRUE(stat(path, &sb) == -1 || sb.st_size == 0);
	ASSERT_INT_EQ(raw_user_version(dir), 1);
	ASSERT_INT_EQ(raw_journal_mode(dir, mode, sizeof(mode)), 0);
	ASSERT_STR_EQ(mode, "wal");

	ASSERT_INT_EQ(db_open(dir), 0);
	ASSERT_INT_EQ(db_open(dir), 0);
	ASSERT_INT_EQ(db_ports_load(0, collect_cb, &rs), 1);
	ASSERT_STR_EQ(rs.r[0].id, "keep");
	ASSERT_STR_EQ(rs.r[0].uri, uri);
	ASSERT_INT_EQ(rs.r[0].client_port, 4242);
	ASSERT_INT_EQ(rs.r[0].last_seen, 77);
	recs_free(&rs);
	db_close();
	ASSERT_INT_EQ(raw_user_version(dir), 1);
	rmtmp(dir);
}

/* A db from a newer vspcd is refused and left alone. */
static void
test_newer_version(void)
{
	char dir[256];

	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(raw_exec(dir, "CREATE TABLE future (x); "
	    "PRAGMA user_version = 99;"), 0);
	ASSERT_INT_EQ(db_open(dir), -1);
	ASSERT_INT_EQ(db_ports_load(0, NULL, NULL), -1);
	ASSERT_INT_EQ(raw_user_version(dir), 99);
	ASSERT_INT_EQ(raw_exec(dir, "SELECT * FROM ports"), -1);
	rmtmp(dir);
}

/* A file that is not a database is refused. */
static void
test_not_a_db(void)
{
	char dir[256], path[PATH_MAX];
	static const char junk[] = "this is not an SQLite database, not "
	    "even close; it is long enough to have a header to check.\n";
	int fd;

	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	(void)snprintf(path, sizeof(path), "%s/state.db", dir);
	ASSERT_TRUE((fd = open(path, O_WRONLY | O_CREAT, 0600)) != -1);
	ASSERT_INT_EQ(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);
	ASSERT_INT_EQ(db_open(dir), -1);
	rmtmp(dir);
}

/* A symlinked state.db is refused; a symlinked state directory is not. */
static void
test_symlink(void)
{
	char dir[256], other[256], path[PATH_MAX], target[PATH_MAX],
	    link[PATH_MAX];
	struct stat sb;

	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(tmpdir(other, sizeof(other)), 0);
	(void)snprintf(path, sizeof(path), "%s/state.db", dir);

	/* Dangling link: nothing may be created at the target. */
	(void)snprintf(target, sizeof(target), "%s/victim.db", other);
	ASSERT_INT_EQ(symlink(target, path), 0);
	ASSERT_INT_EQ(db_open(dir), -1);
	ASSERT_TRUE(lstat(target, &sb) == -1 && errno == ENOENT);

	/* Link to a valid db. */
	ASSERT_INT_EQ(raw_exec(other, "CREATE TABLE t (x);"), 0);
	(void)snprintf(target, sizeof(target), "%s/state.db", other);
	ASSERT_INT_EQ(unlink(path), 0);
	ASSERT_INT_EQ(symlink(target, path), 0);
	ASSERT_INT_EQ(db_open(dir), -1);
	ASSERT_INT_EQ(raw_user_version(other), 0);
	ASSERT_INT_EQ(unlink(path), 0);

	/* The state directory reached through a link is fine. */
	(void)snprintf(link, sizeof(link), "%s/dirlink", other);
	ASSERT_INT_EQ(symlink(dir, link), 0);
	ASSERT_INT_EQ(db_open(link), 0);
	db_close();
	ASSERT_INT_EQ(lstat(path, &sb), 0);
	ASSERT_TRUE(S_ISREG(sb.st_mode));
	ASSERT_INT_EQ(sb.st_mode & 0777, 0600);
	ASSERT_INT_EQ(raw_user_version(dir), 1);
	rmtmp(dir);
	rmtmp(other);
}

/* Seconds on the monotonic clock. */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/* Fill the crash/perf test's port number i of round r. */
static void
numport(struct db_port *dp, int r, int i, char *uri, size_t urilen,
    char *id, size_t idlen, char *name, size_t namelen)
{
	memset(dp, 0, sizeof(*dp));
	(void)snprintf(dp->uuid, sizeof(dp->uuid), "%08x%024x",
	    (unsigned)r, (unsigned)i);
	(void)snprintf(uri, urilen, "telnet://vc.example/vm-%d?port=com1", i);
	(void)snprintf(id, idlen, "r%02d-p%06d", r, i);
	(void)snprintf(name, namelen, "vm-%d-%d", r, i);
	dp->uri = uri;
	dp->id = id;
	dp->name = name;
	dp->client_port = 20000 + i % 40000;
	dp->last_seen = 1700000000 + i;
}

/* Save 10,000 ports one call each and report the rate. */
static void
test_perf(void)
{
	char dir[256], uri[128], id[32], name[32];
	struct db_port dp;
	double t0, t1, t2, t3;
	int i, n;

	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(db_open(dir), 0);
	t0 = now();
	for (i = 0; i < PERF_N; i++) {
		numport(&dp, 0, i, uri, sizeof(uri), id, sizeof(id), name,
		    sizeof(name));
		ASSERT_INT_EQ(db_port_save(&dp), 0);
	}
	t1 = now();
	for (i = 0; i < PERF_N; i++) {
		numport(&dp, 0, i, uri, sizeof(uri), id, sizeof(id), name,
		    sizeof(name));
		dp.last_seen += 1;
		ASSERT_INT_EQ(db_port_save(&dp), 0);
	}
	t2 = now();
	n = 0;
	ASSERT_INT_EQ(db_ports_load(0, count_cb, &n), PERF_N);
	ASSERT_INT_EQ(n, PERF_N);
	t3 = now();
	printf("perf: %d inserts %.3f s (%.0f/s), %d upserts %.3f s "
	    "(%.0f/s), load %.3f s\n", PERF_N, t1 - t0,
	    PERF_N / (t1 - t0), PERF_N, t2 - t1, PERF_N / (t2 - t1),
	    t3 - t2);
	ASSERT_TRUE(t1 - t0 < 30.0);
	ASSERT_TRUE(t2 - t1 < 30.0);
	t0 = now();
	db_close();
	printf("perf: close (checkpoint) %.3f s\n", now() - t0);
	rmtmp(dir);
}

/* Count the rows of state.db through a second connection (committed). */
static int
rows_committed(const char *dir)
{
	char path[PATH_MAX];
	sqlite3 *o;
	sqlite3_stmt *st;
	int n = -1;

	(void)snprintf(path, sizeof(path), "%s/state.db", dir);
	if (sqlite3_open_v2(path, &o, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return (-1);
	if (sqlite3_prepare_v2(o, "SELECT count(*) FROM ports", -1, &st,
	    NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(o);
	return (n);
}

/*
 * Batching: the writes of one loop turn are one transaction, committed
 * before the loop polls again; a UNIQUE failure is still reported by the
 * call; db_close commits an open batch; db_batch(NULL) ends batching.
 */
static void
test_batch(void)
{
	char dir[256], uri[128], id[32], name[32];
	struct event_base *base;
	struct db_port dp;
	int i, n;

	ASSERT_TRUE((base = event_base_new()) != NULL);
	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	ASSERT_INT_EQ(db_open(dir), 0);
	db_batch(base);
	for (i = 0; i < 100; i++) {
		numport(&dp, 1, i, uri, sizeof(uri), id, sizeof(id), name,
		    sizeof(name));
		ASSERT_INT_EQ(db_port_save(&dp), 0);
		ASSERT_INT_EQ(db_port_touch(dp.uuid, dp.uri, 1800000000), 0);
	}
	/* Same id for another key: refused at once, the batch goes on. */
	numport(&dp, 1, 0, uri, sizeof(uri), id, sizeof(id), name,
	    sizeof(name));
	dp.uuid[0] = 'f';
	ASSERT_INT_EQ(db_port_save(&dp), -1);
	/* Visible on this connection, not yet committed for others. */
	n = 0;
	ASSERT_INT_EQ(db_ports_load(1800000000, count_cb, &n), 100);
	ASSERT_INT_EQ(rows_committed(dir), 0);
	/* One pass of the loop commits, and leaves nothing active. */
	ASSERT_INT_EQ(event_base_get_num_events(base,
	    EVENT_BASE_COUNT_ACTIVE), 1);
	(void)event_base_loop(base, EVLOOP_NONBLOCK);
	ASSERT_INT_EQ(rows_committed(dir), 100);
	ASSERT_INT_EQ(event_base_get_num_events(base,
	    EVENT_BASE_COUNT_ACTIVE), 0);
	/* db_close commits what the turn wrote. */
	numport(&dp, 1, 100, uri, sizeof(uri), id, sizeof(id), name,
	    sizeof(name));
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	ASSERT_INT_EQ(rows_committed(dir), 100);
	db_close();
	ASSERT_INT_EQ(rows_committed(dir), 101);
	/* Batching off: each call commits by itself again. */
	ASSERT_INT_EQ(db_open(dir), 0);
	db_batch(NULL);
	numport(&dp, 1, 101, uri, sizeof(uri), id, sizeof(id), name,
	    sizeof(name));
	ASSERT_INT_EQ(db_port_save(&dp), 0);
	ASSERT_INT_EQ(rows_committed(dir), 102);
	db_close();
	event_base_free(base);
	rmtmp(dir);
}

/* Mark crash-test ports of one round as present. */
static void
seen_cb(const struct db_port *dp, void *arg)
{
	struct seen *s = arg;
	int r, i;

	if (sscanf(dp->id, "r%d-p%d", &r, &i) != 2) {
		s->bad++;
		return;
	}
	if (r != s->round)
		return;
	if (i < 0 || i >= s->n) {
		s->bad++;
		return;
	}
	s->hit[i] = true;
}

/*
 * Child side of a crash test: save ports of round r in a loop, reporting
 * each returned save as an int on fd. how: 0 _exit, 1 raise(SIGKILL)
 * after max saves; 2 keep going until killed (or max).
 */
static __dead void
crash_child(const char *dir, int r, int max, int fd, int how)
{
	char uri[128], id[32], name[32];
	struct db_port dp;
	int i;

	if (db_open(dir) == -1)
		_exit(2);
	for (i = 0; i < max; i++) {
		numport(&dp, r, i, uri, sizeof(uri), id, sizeof(id), name,
		    sizeof(name));
		if (db_port_save(&dp) == -1)
			_exit(3);
		if (fd != -1 && write(fd, &i, sizeof(i)) != sizeof(i))
			_exit(4);
	}
	if (how == 1)
		raise(SIGKILL);
	_exit(0);
}

/* Check that ports 0..n-1 of round r (where want[i]) are all present. */
static int
crash_verify(const char *dir, int r, const bool *want, int n)
{
	struct seen s;
	int i, missing = 0;

	if (!raw_integrity_ok(dir)) {
		fprintf(stderr, "round %d: integrity_check failed\n", r);
		return (-1);
	}
	memset(&s, 0, sizeof(s));
	s.round = r;
	s.n = n;
	if ((s.hit = calloc((size_t)n + 1, sizeof(*s.hit))) == NULL)
		return (-1);
	if (db_open(dir) == -1 || db_ports_load(0, seen_cb, &s) == -1) {
		db_close();
		free(s.hit);
		return (-1);
	}
	db_close();
	for (i = 0; i < n; i++)
		if (want[i] && !s.hit[i])
			missing++;
	free(s.hit);
	if (missing > 0 || s.bad > 0) {
		fprintf(stderr, "round %d: %d reported ports missing, %d bad\n",
		    r, missing, s.bad);
		return (-1);
	}
	return (0);
}

/* A child that dies without db_close() after its last save loses nothing. */
static void
test_crash_exit(void)
{
	bool want[CRASH_N];
	char dir[256];
	pid_t pid;
	int how, st, i;

	for (i = 0; i < CRASH_N; i++)
		want[i] = true;
	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	for (how = 0; how < 2; how++) {
		fflush(NULL);
		ASSERT_TRUE((pid = fork()) != -1);
		if (pid == 0)
			crash_child(dir, 90 + how, CRASH_N, -1, how);
		ASSERT_INT_EQ(waitpid(pid, &st, 0), pid);
		if (how == 0) {
			ASSERT_TRUE(WIFEXITED(st));
			ASSERT_INT_EQ(WEXITSTATUS(st), 0);
		} else {
			ASSERT_TRUE(WIFSIGNALED(st));
			ASSERT_INT_EQ(WTERMSIG(st), SIGKILL);
		}
		ASSERT_INT_EQ(crash_verify(dir, 90 + how, want, CRASH_N), 0);
	}
	/* Both rounds' 2,000 ports, one db. */
	ASSERT_INT_EQ(db_open(dir), 0);
	ASSERT_INT_EQ(db_ports_load(0, NULL, NULL), 2 * CRASH_N);
	db_close();
	rmtmp(dir);
}

/*
 * SIGKILL from the parent at a random moment while the child saves; every
 * save the child reported must survive. The rounds share one db, so later
 * rounds also open a file a killed writer left behind.
 */
static void
test_crash_random(void)
{
	char dir[256];
	bool *want;
	size_t have;
	ssize_t n;
	pid_t pid;
	int fds[2], r, st, got, kill_after, total = 0, buf[256], i, j;

	ASSERT_TRUE((want = calloc(CRASH_MAX, sizeof(*want))) != NULL);
	ASSERT_INT_EQ(tmpdir(dir, sizeof(dir)), 0);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	for (r = 0; r < CRASH_ROUNDS; r++) {
		memset(want, 0, CRASH_MAX * sizeof(*want));
		kill_after = 1 + (int)(random() % 3000);
		ASSERT_INT_EQ(pipe(fds), 0);
		fflush(NULL);
		ASSERT_TRUE((pid = fork()) != -1);
		if (pid == 0) {
			close(fds[0]);
			crash_child(dir, r, CRASH_MAX, fds[1], 2);
		}
		close(fds[1]);
		got = 0;
		have = 0;
		for (;;) {
			n = read(fds[0], (char *)buf + have,
			    sizeof(buf) - have);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
			for (j = 0; (size_t)(j + 1) * sizeof(int) <= have;
			    j++) {
				if (buf[j] >= 0 && buf[j] < CRASH_MAX)
					want[buf[j]] = true;
				if (got++ == kill_after) {
					/* Land somewhere inside a save. */
					usleep((useconds_t)(random() % 500));
					kill(pid, SIGKILL);
				}
			}
			memmove(buf, (char *)buf + (size_t)j * sizeof(int),
			    have - (size_t)j * sizeof(int));
			have -= (size_t)j * sizeof(int);
		}
		close(fds[0]);
		ASSERT_INT_EQ(waitpid(pid, &st, 0), pid);
		ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		ASSERT_TRUE(got > kill_after);
		ASSERT_INT_EQ(crash_verify(dir, r, want, CRASH_MAX), 0);
		for (i = 0; i < CRASH_MAX; i++)
			total += want[i];
	}
	printf("crash: %d rounds, %d reported saves all present\n",
	    CRASH_ROUNDS, total);
	free(want);
	rmtmp(dir);
}

/* Run all tests. */
int
main(void)
{
	log_init(1, LOG_LVL_WARN, "test-db");
	T_RUN(test_round_trip);
	T_RUN(test_bad_calls);
	T_RUN(test_reopen);
	T_RUN(test_newer_version);
	T_RUN(test_not_a_db);
	T_RUN(test_symlink);
	T_RUN(test_perf);
	T_RUN(test_batch);
	T_RUN(test_crash_exit);
	T_RUN(test_crash_random);
	return (t_summary());
}
