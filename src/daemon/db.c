/*
 * Persistent port state in STATE_DIR/state.db (SQLite). This is the only
 * file that includes sqlite3.h.
 *
 * One row per port, keyed by (uuid, uri). The id column is UNIQUE, so a
 * port id can never be saved for a second (uuid, uri) while the first row
 * exists: such a save fails and is logged (G9). Rows go away only through
 * db_expire().
 *
 * Schema changes are an ordered table of SQL steps; PRAGMA user_version is
 * the number of steps applied. Each step runs in its own transaction
 * together with the user_version bump, so a crash leaves the db at one
 * version or the next, never in between. A db whose user_version is newer
 * than this code is refused rather than guessed at.
 *
 * Durability: journal_mode=WAL with synchronous=NORMAL. A commit is a
 * write(2) of the frames to the WAL; it is not fsync'd. The frames are then
 * in the kernel page cache, so a process crash (kill -9, abort, OOM kill)
 * at any moment loses nothing that a returned call committed: the next open
 * replays the WAL. Only a power loss or kernel crash may roll back the last
 * few commits, never corrupt the file (checkpoints do fsync, and a torn WAL
 * tail fails its checksums and is ignored). synchronous=FULL would fsync
 * every commit and cap a reconnecting fleet at a few hundred saves per
 * second on ordinary disks; the mapping is rebuilt from the VMs' next
 * connection anyway, so losing seconds of it on power loss is the better
 * trade.
 *
 * Batching: once db_batch() has given the db an event base, the first save
 * or touch of a loop turn opens a transaction (BEGIN IMMEDIATE) and makes an
 * event active that commits it; every further write of that turn joins the
 * transaction. libevent runs an event made active from a callback in the
 * same pass over the active events, before it polls again, so the commit
 * happens before the loop waits for anything. A burst of handshakes then
 * costs one WAL append and one set of locks per loop turn instead of three
 * per port. Nothing written in a turn can reach a peer before that commit:
 * replies (admin API, clients) leave through bufferevents, which write only
 * when a later poll reports the socket writable, and a new per-port
 * listener can accept only after a later poll. So whatever a client may see
 * (a port in the API, its client port) is committed before it could see it,
 * and the kill -9 promise above holds unchanged. Statements still run at
 * once, so a UNIQUE failure is still reported by the call that causes it.
 * Without db_batch() (the unit tests) every call is its own transaction.
 *
 * Failures are never fatal: every call logs with log_warnx() and returns
 * -1, and the daemon keeps serving consoles without persistence.
 */
#include <sys/stat.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "vspcd.h"

#define DB_FILE			"state.db"
#define DB_BUSY_TIMEOUT_MS	5000
#define DB_JOURNAL_LIMIT	(4 * 1024 * 1024)
#define DB_UUID_SIZE		sizeof(((struct db_port *)NULL)->uuid)

/* Schema steps; entry i brings user_version from i to i + 1. */
static const char *const db_migrations[] = {
	/* 1: ports. */
	"CREATE TABLE ports ("
	"uuid TEXT NOT NULL, "
	"uri TEXT NOT NULL, "
	"id TEXT NOT NULL UNIQUE, "
	"name TEXT NOT NULL DEFAULT '', "
	"client_port INTEGER NOT NULL DEFAULT 0, "
	"last_seen INTEGER NOT NULL, "
	"created INTEGER NOT NULL, "
	"PRIMARY KEY (uuid, uri));"
	"CREATE INDEX ports_client_port ON ports (client_port);",
};
#define DB_VERSION	((int)nitems(db_migrations))

enum db_stmt {
	DB_SAVE,
	DB_TOUCH,
	DB_LOAD,
	DB_EXPIRE,
	DB_NSTMT
};

/* Prepared once in db_open(), reset after every use. */
static const char *const db_sql[] = {
	[DB_SAVE] = "INSERT INTO ports "
	    "(uuid, uri, id, name, client_port, last_seen, created) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) "
	    "ON CONFLICT (uuid, uri) DO UPDATE SET "
	    "id = excluded.id, name = excluded.name, "
	    "client_port = excluded.client_port, "
	    "last_seen = excluded.last_seen",
	[DB_TOUCH] = "UPDATE ports SET last_seen = ?3 "
	    "WHERE uuid = ?1 AND uri = ?2",
	[DB_LOAD] = "SELECT uuid, uri, id, name, client_port, last_seen "
	    "FROM ports WHERE last_seen >= ?1 ORDER BY uuid, uri",
	[DB_EXPIRE] = "DELETE FROM ports WHERE last_seen < ?1",
};
static_assert(nitems(db_sql) == DB_NSTMT, "db_sql size");

static sqlite3		*db;
static sqlite3_stmt	*db_stmts[DB_NSTMT];
static char		*db_path;
static int		 db_loading;
static int		 db_ready;	/* open, migrated, prepared */
static struct event_base *db_base;	/* batching on, see db_batch() */
static struct event	*db_commit_ev;	/* commits the turn's transaction */
static int		 db_in_txn;	/* a batch transaction is open */

/* Log a failure with the SQLite error text. */
static void
db_warn(const char *what)
{
	if (db != NULL)
		log_warnx("db: %s: %s (%d)", what, sqlite3_errmsg(db),
		    sqlite3_extended_errcode(db));
	else
		log_warnx("db: %s", what);
}

/* Run SQL without results (pragmas, migrations); 0 or -1 (logged). */
static int
db_exec(const char *sql, const char *what)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warnx("db: %s: %s", what, err != NULL ? err :
		    sqlite3_errmsg(db));
		sqlite3_free(err);
		return (-1);
	}
	return (0);
}

/* Run a pragma that returns one text value and compare it; 0 or -1. */
static int
db_pragma_expect(const char *sql, const char *want)
{
	sqlite3_stmt *st;
	const char *got;
	int rc, ret = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_warn(sql);
		return (-1);
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		got = (const char *)sqlite3_column_text(st, 0);
		if (got != NULL && strcasecmp(got, want) == 0)
			ret = 0;
		else
			log_warnx("db: %s: got %s, want %s", sql,
			    got != NULL ? got : "NULL", want);
	} else
		db_warn(sql);
	sqlite3_finalize(st);
	return (ret);
}

/* Read PRAGMA user_version into *v; 0 or -1 (logged). */
static int
db_user_version(int *v)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st,
	    NULL) != SQLITE_OK) {
		db_warn("user_version");
		return (-1);
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		db_warn("user_version");
		sqlite3_finalize(st);
		return (-1);
	}
	*v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return (0);
}

/*
 * Apply the missing schema steps, one transaction each. The version is
 * read again inside each write transaction, so two processes opening the
 * same file cannot both apply a step.
 */
static int
db_migrate(void)
{
	char bump[64];
	int v;

	for (;;) {
		if (db_exec("BEGIN IMMEDIATE", "begin migration") == -1)
			return (-1);
		if (db_user_version(&v) == -1)
			goto fail;
		if (v < 0 || v > DB_VERSION) {
			log_warnx("db: %s: schema version %d, this vspcd "
			    "knows up to %d; refusing it", db_path, v,
			    DB_VERSION);
			goto fail;
		}
		if (v == DB_VERSION)
			break;
		(void)snprintf(bump, sizeof(bump), "PRAGMA user_version = %d",
		    v + 1);
		if (db_exec(db_migrations[v], "migration") == -1 ||
		    db_exec(bump, "migration") == -1)
			goto fail;
		if (db_exec("COMMIT", "commit migration") == -1)
			goto fail;
		log_info("db: %s: schema version %d", db_path, v + 1);
	}
	return (db_exec("COMMIT", "end migration"));

fail:
	if (!sqlite3_get_autocommit(db))
		(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return (-1);
}

/*
 * Create state.db (mode 0600) if missing, refusing a symlink. SQLite gives
 * its -wal and -shm files the mode of the database file.
 */
static int
db_create_file(const char *path)
{
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		if (errno == ELOOP)
			log_warnx("db: %s is a symbolic link; refusing it",
			    path);
		else
			log_warn("db: %s", path);
		return (-1);
	}
	(void)close(fd);
	return (0);
}

/* Open (creating or migrating) STATE_DIR/state.db; 0 or -1 (logged). */
int
db_open(const char *state_dir)
{
	char dir[PATH_MAX], sql[64];
	int flags, i;

	if (db != NULL)
		db_close();

	/*
	 * Resolve the directory first: SQLITE_OPEN_NOFOLLOW refuses a path
	 * with a symlink in any component, and the state directory itself
	 * may legitimately sit under one (it is configured by the admin).
	 * Only state.db must not be a link.
	 */
	if (realpath(state_dir, dir) == NULL) {
		log_warn("db: %s", state_dir);
		return (-1);
	}
	if (asprintf(&db_path, "%s/%s", dir, DB_FILE) == -1) {
		db_path = NULL;
		log_warnx("db: out of memory");
		return (-1);
	}
	if (db_create_file(db_path) == -1)
		goto fail;

	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	    SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_NOFOLLOW
	flags |= SQLITE_OPEN_NOFOLLOW;
#endif
#ifdef SQLITE_OPEN_EXRESCODE
	flags |= SQLITE_OPEN_EXRESCODE;
#endif
	if (sqlite3_open_v2(db_path, &db, flags, NULL) != SQLITE_OK) {
		if (db != NULL &&
		    sqlite3_extended_errcode(db) == SQLITE_CANTOPEN_SYMLINK)
			log_warnx("db: %s is a symbolic link; refusing it",
			    db_path);
		else
			db_warn(db_path);
		goto fail;
	}
	(void)sqlite3_extended_result_codes(db, 1);

	/* The file is ours alone: no schema tricks from its contents. */
#ifdef SQLITE_DBCONFIG_DEFENSIVE
	if (sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1,
	    NULL) != SQLITE_OK)
		db_warn("defensive");
#endif
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
	if (sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0,
	    NULL) != SQLITE_OK)
		db_warn("trusted_schema");
#endif
	if (sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS) != SQLITE_OK) {
		db_warn("busy_timeout");
		goto fail;
	}

	/* See the top of the file for WAL + NORMAL. */
	if (db_pragma_expect("PRAGMA journal_mode = WAL", "wal") == -1 ||
	    db_exec("PRAGMA synchronous = NORMAL", "synchronous") == -1 ||
	    db_exec("PRAGMA foreign_keys = ON", "foreign_keys") == -1)
		goto fail;
	/* Bound the WAL a burst of saves leaves behind after a checkpoint. */
	(void)snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d",
	    DB_JOURNAL_LIMIT);
	if (db_exec(sql, "journal_size_limit") == -1)
		goto fail;

	if (db_migrate() == -1)
		goto fail;

	for (i = 0; i < DB_NSTMT; i++) {
		if (sqlite3_prepare_v3(db, db_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &db_stmts[i], NULL) !=
		    SQLITE_OK) {
			db_warn("prepare");
			goto fail;
		}
	}
	db_ready = 1;
	log_debug("db: %s open, schema version %d", db_path, DB_VERSION);
	return (0);

fail:
	db_close();
	return (-1);
}

/* Checkpoint the WAL into the db file, finalize and close. */
void
db_close(void)
{
	int i, rc;

	db_flush();
	if (db_commit_ev != NULL) {
		event_free(db_commit_ev);
		db_commit_ev = NULL;
	}
	if (db != NULL) {
		for (i = 0; i < DB_NSTMT; i++) {
			sqlite3_finalize(db_stmts[i]);
			db_stmts[i] = NULL;
		}
		/*
		 * Only a fully opened db is checkpointed; a failed one may
		 * not even be a database. If the checkpoint fails the WAL
		 * is simply replayed on the next open.
		 */
		if (db_ready) {
			rc = sqlite3_wal_checkpoint_v2(db, NULL,
			    SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
			if (rc != SQLITE_OK)
				db_warn("checkpoint");
		}
		if (sqlite3_close(db) != SQLITE_OK) {
			db_warn("close");
			(void)sqlite3_close_v2(db);
		}
		db = NULL;
	}
	free(db_path);
	db_path = NULL;
	db_loading = 0;
	db_ready = 0;
}

/*
 * Commit the open batch transaction, if any. On failure the batch is rolled
 * back (logged): its rows are lost, as a failed save would have lost them.
 */
void
db_flush(void)
{
	if (!db_in_txn)
		return;
	db_in_txn = 0;
	if (db_exec("COMMIT", "commit") == -1 && !sqlite3_get_autocommit(db))
		(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* The loop turn's writes are all made: commit them. */
static void
db_commit_cb(evutil_socket_t fd, short events, void *arg)
{
	db_flush();
}

/*
 * Batch the writes of each turn of base's loop into one transaction (see
 * the top of the file); NULL turns batching off after committing.
 */
void
db_batch(struct event_base *base)
{
	db_flush();
	if (db_commit_ev != NULL) {
		event_free(db_commit_ev);
		db_commit_ev = NULL;
	}
	db_base = base;
}

/*
 * Before a write: open the turn's transaction if batching is on and none
 * is open. If BEGIN fails the write simply runs in autocommit.
 */
static void
db_batch_begin(void)
{
	if (db_base == NULL || db_in_txn)
		return;
	if (db_commit_ev == NULL &&
	    (db_commit_ev = event_new(db_base, -1, 0, db_commit_cb,
	    NULL)) == NULL) {
		log_warnx("db: cannot create the commit event");
		return;
	}
	if (!sqlite3_get_autocommit(db) ||
	    db_exec("BEGIN IMMEDIATE", "begin") == -1)
		return;
	db_in_txn = 1;
	event_active(db_commit_ev, EV_TIMEOUT, 1);
}

/* Reset a statement for its next use. */
static void
db_reset(sqlite3_stmt *st)
{
	/* Errors were already reported by sqlite3_step(). */
	(void)sqlite3_reset(st);
	(void)sqlite3_clear_bindings(st);
}

/* Bind a text parameter, copied by SQLite; 0 or -1 (logged). */
static int
db_bind_text(sqlite3_stmt *st, int col, const char *s)
{
	if (sqlite3_bind_text(st, col, s, -1, SQLITE_TRANSIENT) !=
	    SQLITE_OK) {
		db_warn("bind");
		return (-1);
	}
	return (0);
}

/* Check the key of a call; 0 or -1 (logged). */
static int
db_check_key(const char *what, const char *uuid, const char *uri)
{
	if (!db_ready) {
		log_debug("db: %s: no database", what);
		return (-1);
	}
	if (uuid == NULL || uri == NULL || uuid[0] == '\0' ||
	    strnlen(uuid, DB_UUID_SIZE) >= DB_UUID_SIZE) {
		log_warnx("db: %s: bad key", what);
		return (-1);
	}
	return (0);
}

/* Insert a port or update the one with the same (uuid, uri); 0 or -1. */
int
db_port_save(const struct db_port *dp)
{
	sqlite3_stmt *st;
	int ret = -1;

	if (dp == NULL || db_check_key("save", dp->uuid, dp->uri) == -1)
		return (-1);
	if (dp->id == NULL || dp->id[0] == '\0' || dp->client_port < 0 ||
	    dp->client_port > 65535) {
		log_warnx("db: save %s: bad port", dp->uuid);
		return (-1);
	}
	db_batch_begin();
	st = db_stmts[DB_SAVE];
	if (db_bind_text(st, 1, dp->uuid) == -1 ||
	    db_bind_text(st, 2, dp->uri) == -1 ||
	    db_bind_text(st, 3, dp->id) == -1 ||
	    db_bind_text(st, 4, dp->name != NULL ? dp->name : "") == -1)
		goto out;
	if (sqlite3_bind_int(st, 5, dp->client_port) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 6, (sqlite3_int64)dp->last_seen) !=
	    SQLITE_OK) {
		db_warn("bind");
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_DONE) {
		/* A UNIQUE(id) failure means the id belongs to another VM. */
		log_warnx("db: save %s id %s: %s", dp->uuid,
		    log_escape(dp->id, strlen(dp->id)), sqlite3_errmsg(db));
		goto out;
	}
	ret = 0;
out:
	db_reset(st);
	return (ret);
}

/* Set last_seen of one port; 0 (also if there is no such port) or -1. */
int
db_port_touch(const char *uuid, const char *uri, time_t when)
{
	sqlite3_stmt *st;
	int ret = -1;

	if (db_check_key("touch", uuid, uri) == -1)
		return (-1);
	db_batch_begin();
	st = db_stmts[DB_TOUCH];
	if (db_bind_text(st, 1, uuid) == -1 ||
	    db_bind_text(st, 2, uri) == -1)
		goto out;
	if (sqlite3_bind_int64(st, 3, (sqlite3_int64)when) != SQLITE_OK) {
		db_warn("bind");
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_DONE) {
		log_warnx("db: touch %s: %s", uuid, sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_changes(db) == 0)
		log_debug("db: touch %s: no such port", uuid);
	ret = 0;
out:
	db_reset(st);
	return (ret);
}

/*
 * Call cb for every port with last_seen >= not_before. The strings passed
 * belong to SQLite and are valid only during the call. cb may save, touch
 * or expire, but not load again. Returns the number of ports or -1.
 */
int
db_ports_load(time_t not_before,
    void (*cb)(const struct db_port *, void *), void *arg)
{
	struct db_port dp;
	sqlite3_stmt *st;
	const char *uuid;
	int rc, n = 0, ret = -1;

	if (!db_ready) {
		log_debug("db: load: no database");
		return (-1);
	}
	if (db_loading) {
		log_warnx("db: load: called from a load callback");
		return (-1);
	}
	st = db_stmts[DB_LOAD];
	if (sqlite3_bind_int64(st, 1, (sqlite3_int64)not_before) !=
	    SQLITE_OK) {
		db_warn("bind");
		goto out;
	}
	db_loading = 1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&dp, 0, sizeof(dp));
		uuid = (const char *)sqlite3_column_text(st, 0);
		/* The struct is not const-qualified; cb must not write. */
		dp.uri = (char *)sqlite3_column_text(st, 1);
		dp.id = (char *)sqlite3_column_text(st, 2);
		dp.name = (char *)sqlite3_column_text(st, 3);
		if (uuid == NULL || dp.uri == NULL || dp.id == NULL ||
		    dp.name == NULL) {
			/* NOT NULL columns: only out of memory gets here. */
			db_warn("load");
			goto out;
		}
		if (strlcpy(dp.uuid, uuid, sizeof(dp.uuid)) >=
		    sizeof(dp.uuid) || uuid[0] == '\0') {
			log_warnx("db: load: bad uuid %s; skipped",
			    log_escape(uuid, strlen(uuid)));
			continue;
		}
		dp.client_port = sqlite3_column_int(st, 4);
		dp.last_seen = (time_t)sqlite3_column_int64(st, 5);
		if (cb != NULL)
			cb(&dp, arg);
		if (n < INT_MAX)
			n++;
	}
	if (rc != SQLITE_DONE) {
		db_warn("load");
		goto out;
	}
	ret = n;
out:
	db_loading = 0;
	db_reset(st);
	return (ret);
}

/* Delete ports with last_seen < cutoff; returns how many or -1. */
int
db_expire(time_t cutoff)
{
	sqlite3_stmt *st;
	int ret = -1;

	if (!db_ready) {
		log_debug("db: expire: no database");
		return (-1);
	}
	st = db_stmts[DB_EXPIRE];
	if (sqlite3_bind_int64(st, 1, (sqlite3_int64)cutoff) != SQLITE_OK) {
		db_warn("bind");
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_warn("expire");
		goto out;
	}
	ret = sqlite3_changes(db);
out:
	db_reset(st);
	return (ret);
}
