/*
 * Unit tests for the audit log (src/daemon/audit.c): every line is one
 * valid JSON object with the right fields; hostile names stay on their line
 * and the file stays printable ASCII; reopen after a rename; off writes
 * nothing; a symlink, FIFO or hard link at the path is refused; lost lines
 * are counted once writing works again.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "t.h"
#include "vspcd.h"

#define MAX_LINES	16

struct config cfg;

static char tmpdir[] = "/tmp/test-audit.XXXXXX";

/* A path inside tmpdir (static buffer, one of four in turn). */
static const char *
tpath(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
	return (buf[i]);
}

/* Point cfg at an audit log file in tmpdir (NULL: the default path). */
static void
cfg_audit(const char *name, int enabled)
{
	free(cfg.audit_log);
	cfg.audit_log = name != NULL ? strdup(tpath(name)) : NULL;
	cfg.audit_enabled = enabled;
}

/* Read a whole file into a new string (NULL if it cannot be read). */
static char *
slurp(const char *path, size_t *lenp)
{
	FILE *f;
	char *buf;
	size_t len;

	if ((f = fopen(path, "r")) == NULL)
		return (NULL);
	buf = malloc(1 << 20);
	len = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return (buf);
}

/* Parse every line of a file as JSON; return the number of lines. */
static int
read_lines(const char *path, json_t **lines, int max)
{
	char *buf, *line, *save;
	json_error_t err;
	int n = 0;

	if ((buf = slurp(path, NULL)) == NULL)
		return (-1);
	for (line = strtok_r(buf, "\n", &save); line != NULL && n < max;
	    line = strtok_r(NULL, "\n", &save)) {
		if ((lines[n] = json_loads(line, 0, &err)) == NULL) {
			fprintf(stderr, "bad JSON line: %s (%s)\n", line,
			    err.text);
			break;
		}
		n++;
	}
	free(buf);
	return (n);
}

/* Free parsed lines. */
static void
free_lines(json_t **lines, int n)
{
	int i;

	for (i = 0; i < n; i++)
		json_decref(lines[i]);
}

/* A string field of a line, or NULL. */
static const char *
field(json_t *o, const char *key)
{
	return (json_string_value(json_object_get(o, key)));
}

/* A fresh identity. */
static struct identity
ident(enum ident_kind kind, const char *name, const char *source)
{
	struct identity id = { .kind = kind, .uid = 1000 };

	strlcpy(id.name, name, sizeof id.name);
	strlcpy(id.source, source, sizeof id.source);
	return (id);
}

/* Each line is one object with time, event, identity, console, detail. */
static void
test_fields(void)
{
	struct identity alice = ident(IDENT_UNIX, "alice", "unix");
	struct identity anon = ident(IDENT_ANONYMOUS, "", "192.0.2.7:5555");
	struct identity ci = ident(IDENT_TOKEN, "ci", "127.0.0.1:40000");
	json_t *l[MAX_LINES];
	const char *t;
	struct stat st;
	int n;

	cfg_audit("fields.log", 1);
	audit_init();
	audit_event("attach", &alice, "421c5a3b00112233445566778899aabb.web",
	    "rights read,write");
	audit_event("denied", &anon, "db-1", NULL);
	audit_event("config-reload", NULL, NULL, "3 rules");
	audit_event("token-use", &ci, NULL, NULL);
	audit_shutdown();

	ASSERT_INT_EQ(stat(tpath("fields.log"), &st), 0);
	ASSERT_INT_EQ(st.st_mode & 07777, 0600);
	ASSERT_INT_EQ(n = read_lines(tpath("fields.log"), l, MAX_LINES), 4);

	t = field(l[0], "time");
	ASSERT_TRUE(t != NULL);
	ASSERT_SIZE_EQ(strlen(t), 24);	/* 2026-11-21T06:12:13.123Z */
	ASSERT_TRUE(t[4] == '-' && t[10] == 'T' && t[19] == '.' &&
	    t[23] == 'Z');
	ASSERT_STR_EQ(field(l[0], "event"), "attach");
	ASSERT_STR_EQ(field(l[0], "kind"), "unix");
	ASSERT_STR_EQ(field(l[0], "user"), "alice");
	ASSERT_INT_EQ(json_integer_value(json_object_get(l[0], "uid")), 1000);
	ASSERT_STR_EQ(field(l[0], "source"), "unix");
	ASSERT_STR_EQ(field(l[0], "console"),
	    "421c5a3b00112233445566778899aabb.web");
	ASSERT_STR_EQ(field(l[0], "detail"), "rights read,write");
	ASSERT_SIZE_EQ(json_object_size(l[0]), 8);

	ASSERT_STR_EQ(field(l[1], "event"), "denied");
	ASSERT_STR_EQ(field(l[1], "kind"), "anonymous");
	ASSERT_TRUE(json_object_get(l[1], "user") == NULL);
	ASSERT_TRUE(json_object_get(l[1], "uid") == NULL);
	ASSERT_TRUE(json_object_get(l[1], "detail") == NULL);
	ASSERT_STR_EQ(field(l[1], "source"), "192.0.2.7:5555");
	ASSERT_STR_EQ(field(l[1], "console"), "db-1");

	ASSERT_STR_EQ(field(l[2], "event"), "config-reload");
	ASSERT_TRUE(json_object_get(l[2], "kind") == NULL);
	ASSERT_TRUE(json_object_get(l[2], "console") == NULL);
	ASSERT_STR_EQ(field(l[2], "detail"), "3 rules");
	ASSERT_SIZE_EQ(json_object_size(l[2]), 3);

	ASSERT_STR_EQ(field(l[3], "kind"), "token");
	ASSERT_STR_EQ(field(l[3], "user"), "ci");
	ASSERT_TRUE(json_object_get(l[3], "uid") == NULL);
	free_lines(l, n);
}

/* The exact text of a line: compact, in this key order. */
static void
test_line_text(void)
{
	struct identity bob = ident(IDENT_UNIX, "bob", "unix");
	char *buf;

	bob.uid = 1001;
	cfg_audit("text.log", 1);
	audit_init();
	audit_event("kick", &bob, "p1", "by admin");
	audit_shutdown();
	buf = slurp(tpath("text.log"), NULL);
	ASSERT_TRUE(buf != NULL);
	ASSERT_TRUE(strlen(buf) > 36);
	ASSERT_STR_EQ(buf + 35, "\"event\":\"kick\",\"kind\":\"unix\","
	    "\"user\":\"bob\",\"uid\":1001,\"source\":\"unix\","
	    "\"console\":\"p1\",\"detail\":\"by admin\"}\n");
	ASSERT_TRUE(strncmp(buf, "{\"time\":\"", 9) == 0);
	free(buf);
}

/* Quotes, newlines, ESC, C1, DEL and invalid UTF-8 stay on one line. */
static void
test_hostile(void)
{
	struct identity id = ident(IDENT_CERT, "", "unix");
	static const char name[] = "a\"b\\c\nd\re\x1b]0;pwn\x07"
	    "f\xc2\x9bg\x7fh\xff\xc3i\xe2\x80\xa8j";
	static const char want[] = "a\"b\\c\nd\re\x1b]0;pwn\x07"
	    "f\xc2\x9bg\xef\xbf\xbdh\xef\xbf\xbd\xef\xbf\xbdi\xe2\x80\xa8j";
	char *buf, *big;
	json_t *l[MAX_LINES];
	size_t len, i;
	int n;

	strlcpy(id.name, name, sizeof id.name);
	big = malloc(100000);
	ASSERT_TRUE(big != NULL);
	memset(big, '\n', 99999);
	big[99999] = '\0';
	cfg_audit("hostile.log", 1);
	audit_init();
	audit_event("attach", &id,
	    "x\"}\n{\"event\":\"forged\",\"console\":\"y", big);
	audit_event("detach\n", &id, "\xff\xfe", "\xed\xa0\x80 surrogate");
	audit_shutdown();
	free(big);

	buf = slurp(tpath("hostile.log"), &len);
	ASSERT_TRUE(buf != NULL);
	for (i = 0; i < len; i++)
		if (buf[i] != '\n' && (buf[i] < 0x20 || buf[i] > 0x7e))
			break;
	ASSERT_SIZE_EQ(i, len);		/* printable ASCII only */
	for (n = 0, i = 0; i < len; i++)
		n += buf[i] == '\n';
	ASSERT_INT_EQ(n, 2);
	ASSERT_TRUE(strstr(buf, "\\u001B") != NULL);
	ASSERT_TRUE(strstr(buf, "\\u009B") != NULL);
	free(buf);

	ASSERT_INT_EQ(n = read_lines(tpath("hostile.log"), l, MAX_LINES), 2);
	ASSERT_STR_EQ(field(l[0], "user"), want);
	ASSERT_STR_EQ(field(l[0], "console"),
	    "x\"}\n{\"event\":\"forged\",\"console\":\"y");
	ASSERT_STR_EQ(field(l[0], "event"), "attach");
	ASSERT_TRUE(strlen(field(l[0], "detail")) <= 4096);
	ASSERT_STR_EQ(field(l[1], "event"), "detach\n");
	ASSERT_STR_EQ(field(l[1], "console"), "\xef\xbf\xbd\xef\xbf\xbd");
	ASSERT_STR_EQ(field(l[1], "detail"),
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate");
	free_lines(l, n);
}

/* After a rename, lines go to the old file until audit_reopen. */
static void
test_reopen(void)
{
	struct identity id = ident(IDENT_UNIX, "u", "unix");
	json_t *l[MAX_LINES];
	int n;

	cfg_audit("rot.log", 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	ASSERT_INT_EQ(rename(tpath("rot.log"), tpath("rot.log.1")), 0);
	audit_event("detach", &id, "b", NULL);
	audit_reopen();
	audit_event("attach", &id, "c", NULL);

	ASSERT_INT_EQ(n = read_lines(tpath("rot.log.1"), l, MAX_LINES), 2);
	ASSERT_STR_EQ(field(l[0], "console"), "a");
	ASSERT_STR_EQ(field(l[1], "console"), "b");
	free_lines(l, n);
	ASSERT_INT_EQ(n = read_lines(tpath("rot.log"), l, MAX_LINES), 1);
	ASSERT_STR_EQ(field(l[0], "console"), "c");
	free_lines(l, n);

	/* A reload that turns the log off: reopen closes it. */
	cfg_audit(NULL, 0);
	audit_reopen();
	audit_event("attach", &id, "d", NULL);
	ASSERT_INT_EQ(n = read_lines(tpath("rot.log"), l, MAX_LINES), 1);
	free_lines(l, n);
	audit_shutdown();
}

/* off writes nothing; no audit-log key means STATE_DIR/audit.log. */
static void
test_off_and_default(void)
{
	struct identity id = ident(IDENT_UNIX, "u", "unix");
	json_t *l[MAX_LINES];
	struct stat st;
	int n;

	cfg_audit(NULL, 0);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	audit_shutdown();
	ASSERT_INT_EQ(lstat(tpath("audit.log"), &st), -1);

	cfg_audit(NULL, 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	audit_shutdown();
	ASSERT_INT_EQ(n = read_lines(tpath("audit.log"), l, MAX_LINES), 1);
	free_lines(l, n);
	unlink(tpath("audit.log"));
}

/* A symlink, FIFO or hard link at the path is refused, never written. */
static void
test_refused(void)
{
	struct identity id = ident(IDENT_UNIX, "u", "unix");
	struct stat st;

	/* Symlink to a file we must not write. */
	ASSERT_INT_EQ(symlink(tpath("victim"), tpath("sym.log")), 0);
	ASSERT_TRUE(close(creat(tpath("victim"), 0644)) == 0);
	cfg_audit("sym.log", 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	audit_shutdown();
	ASSERT_INT_EQ(stat(tpath("victim"), &st), 0);
	ASSERT_INT_EQ(st.st_size, 0);
	ASSERT_INT_EQ(lstat(tpath("sym.log"), &st), 0);
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	/* A dangling symlink is not followed to create its target. */
	ASSERT_INT_EQ(symlink(tpath("nowhere"), tpath("dangle.log")), 0);
	cfg_audit("dangle.log", 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	audit_shutdown();
	ASSERT_INT_EQ(lstat(tpath("nowhere"), &st), -1);

	/* A FIFO: refused at once, not blocked on. */
	ASSERT_INT_EQ(mkfifo(tpath("fifo.log"), 0600), 0);
	cfg_audit("fifo.log", 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	audit_shutdown();

	/* A second hard link (someone else's file): refused. */
	ASSERT_INT_EQ(link(tpath("victim"), tpath("hard.log")), 0);
	cfg_audit("hard.log", 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	audit_shutdown();
	ASSERT_INT_EQ(stat(tpath("victim"), &st), 0);
	ASSERT_INT_EQ(st.st_size, 0);

	unlink(tpath("sym.log"));
	unlink(tpath("dangle.log"));
	unlink(tpath("fifo.log"));
	unlink(tpath("hard.log"));
	unlink(tpath("victim"));
}

/* Lines that could not be written are counted in a "lost" line. */
static void
test_lost(void)
{
	struct identity id = ident(IDENT_UNIX, "u", "unix");
	json_t *l[MAX_LINES];
	int n;

	cfg_audit("sub/lost.log", 1);
	audit_init();				/* no such directory */
	audit_event("attach", &id, "a", NULL);
	audit_event("detach", &id, "a", NULL);
	ASSERT_INT_EQ(mkdir(tpath("sub"), 0700), 0);
	audit_event("attach", &id, "b", NULL);
	audit_event("detach", &id, "b", NULL);
	audit_shutdown();
	ASSERT_INT_EQ(n = read_lines(tpath("sub/lost.log"), l, MAX_LINES), 3);
	ASSERT_STR_EQ(field(l[0], "event"), "lost");
	ASSERT_INT_EQ(json_integer_value(json_object_get(l[0], "count")), 2);
	ASSERT_STR_EQ(field(l[1], "event"), "attach");
	ASSERT_STR_EQ(field(l[1], "console"), "b");
	ASSERT_STR_EQ(field(l[2], "event"), "detach");
	free_lines(l, n);
	unlink(tpath("sub/lost.log"));
	rmdir(tpath("sub"));
}

/*
 * A write that fails part-way (RLIMIT_FSIZE stands in for a full disk) is
 * cut off again; failed lines are counted; writing resumes by itself.
 */
static void
test_write_errors(void)
{
	struct identity id = ident(IDENT_UNIX, "u", "unix");
	struct rlimit old, rl;
	json_t *l[MAX_LINES];
	struct stat st;
	off_t size;
	int n;

	signal(SIGXFSZ, SIG_IGN);
	cfg_audit("full.log", 1);
	audit_init();
	audit_event("attach", &id, "a", NULL);
	ASSERT_INT_EQ(stat(tpath("full.log"), &st), 0);
	size = st.st_size;
	ASSERT_INT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
	rl = old;
	rl.rlim_cur = (rlim_t)size + 20;	/* room for part of a line */
	ASSERT_INT_EQ(setrlimit(RLIMIT_FSIZE, &rl), 0);
	audit_event("detach", &id, "b", "partial");
	audit_event("detach", &id, "c", "partial again");
	ASSERT_INT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
	ASSERT_INT_EQ(stat(tpath("full.log"), &st), 0);
	ASSERT_INT_EQ(st.st_size, size);	/* no partial line left */
	audit_event("attach", &id, "d", NULL);
	audit_shutdown();
	signal(SIGXFSZ, SIG_DFL);

	ASSERT_INT_EQ(n = read_lines(tpath("full.log"), l, MAX_LINES), 3);
	ASSERT_STR_EQ(field(l[0], "console"), "a");
	ASSERT_STR_EQ(field(l[1], "event"), "lost");
	ASSERT_INT_EQ(json_integer_value(json_object_get(l[1], "count")), 2);
	ASSERT_STR_EQ(field(l[2], "console"), "d");
	free_lines(l, n);
	unlink(tpath("full.log"));
}

/* Run every test in a fresh temporary directory. */
int
main(void)
{
	static const char *names[] = { "fields.log", "text.log",
	    "hostile.log", "rot.log", "rot.log.1" };
	size_t i;

	log_init(1, LOG_LVL_WARN, "test-audit");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	cfg.state_dir = strdup(tmpdir);
	T_RUN(test_fields);
	T_RUN(test_line_text);
	T_RUN(test_hostile);
	T_RUN(test_reopen);
	T_RUN(test_off_and_default);
	T_RUN(test_refused);
	T_RUN(test_lost);
	T_RUN(test_write_errors);
	for (i = 0; i < nitems(names); i++)
		unlink(tpath(names[i]));
	rmdir(tmpdir);
	free(cfg.state_dir);
	free(cfg.audit_log);
	return (t_summary());
}
