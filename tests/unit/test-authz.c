/*
 * Unit tests for authorization (src/daemon/authz.c) and the access,
 * tokens and sharing keys of config.c: rule parsing with every error at
 * its line, the union of rights, globs on name, id and UUID, the safe
 * default, certificate subjects, and bearer tokens (hashed with OpenSSL
 * here, compared with CRYPTO_memcmp there, which this file interposes to
 * count the comparisons).
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "t.h"
#include "vspcd.h"

#define MAX_FILES	64

struct config cfg;

static char tmpdir[] = "/tmp/test-authz.XXXXXX";
static char *files[MAX_FILES];
static size_t nfiles;
static int memcmp_calls;

/* Error output captured in memory. */
struct errbuf {
	FILE	*f;
	char	*buf;
	size_t	 len;
};

/*
 * Interpose OpenSSL's constant-time compare: authz.c must call it once per
 * configured token, whether or not one matches. Same result, no early exit.
 */
int
CRYPTO_memcmp(const void *in_a, const void *in_b, size_t len)
{
	const volatile unsigned char *a = in_a, *b = in_b;
	unsigned char x = 0;
	size_t i;

	memcmp_calls++;
	for (i = 0; i < len; i++)
		x |= a[i] ^ b[i];
	return (x);
}

/* Write text to a new file in tmpdir; return its path (freed at exit). */
static const char *
write_file(const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", tmpdir, name) == -1 ||
	    nfiles == MAX_FILES)
		abort();
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs(text, f);
	fclose(f);
	files[nfiles++] = path;
	return (path);
}

/* Stop capturing; return the text. */
static const char *
err_text(struct errbuf *e)
{
	if (e->f != NULL) {
		fclose(e->f);
		e->f = NULL;
	}
	return (e->buf);
}

/* Release captured output. */
static void
err_free(struct errbuf *e)
{
	err_text(e);
	free(e->buf);
	e->buf = NULL;
}

/* Does the captured output contain s? */
static int
err_has(struct errbuf *e, const char *s)
{
	return (strstr(err_text(e), s) != NULL);
}

/* Count the lines of captured output. */
static int
err_lines(struct errbuf *e)
{
	const char *s = err_text(e);
	int n = 0;

	for (; *s != '\0'; s++)
		if (*s == '\n')
			n++;
	return (n);
}

/* Replace cfg with the defaults plus one file; return the error count. */
static int
load(struct errbuf *e, const char *name, const char *text)
{
	memset(e, 0, sizeof *e);
	if ((e->f = open_memstream(&e->buf, &e->len)) == NULL)
		abort();
	config_free(&cfg);
	config_defaults(&cfg);
	return (config_load_file(&cfg, write_file(name, text), e->f));
}

/* Load a file that must have no error. */
static int
load_ok(const char *text)
{
	struct errbuf e;
	int n;

	n = load(&e, "ok.yaml", text);
	if (n != 0)
		fprintf(stderr, "%s", err_text(&e));
	err_free(&e);
	return (n);
}

/* A fresh identity. */
static struct identity
ident(enum ident_kind kind, const char *name, bool loopback)
{
	struct identity id = { .kind = kind, .uid = 1000,
	    .loopback = loopback };

	strlcpy(id.name, name, sizeof id.name);
	strlcpy(id.source, loopback ? "unix" : "192.0.2.1:4000",
	    sizeof id.source);
	return (id);
}

/* Add a group to a unix identity. */
static void
ident_group(struct identity *id, const char *group)
{
	strlcpy(id->groups[id->ngroups++], group, sizeof id->groups[0]);
}

/* Hex SHA-256 of a string, computed here with OpenSSL. */
static void
sha256_hex(const char *s, char out[65])
{
	unsigned char d[32];
	unsigned int len = 0, i;

	if (EVP_Digest(s, strlen(s), d, &len, EVP_sha256(), NULL) != 1 ||
	    len != 32)
		abort();
	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

#define UUID	"421c5a3b00112233445566778899aabb"
#define UUID_VMW "42 1c 5a 3b 00 11 22 33-44 55 66 77 88 99 aa bb"
#define PORTID	UUID ".web1"

/* Every who form, scalar and list forms, UUID patterns, rights closure. */
static void
test_parse_good(void)
{
	const struct access_rule *r;

	ASSERT_INT_EQ(load_ok(
	    "access:\n"
	    "  - who: user:alice\n"				/* 2 */
	    "    consoles: web-*\n"
	    "    rights: read\n"
	    "  - who: [group:ops, token:ci, anonymous, any]\n"	/* 5 */
	    "    consoles:\n"
	    "      - \"*\"\n"
	    "      - \"" UUID_VMW "\"\n"
	    "    rights: [write, force]\n"
	    "  - {who: [\"cert:CN=alice\", \"cert:CN=a,O=b\"], "	/* 10 */
	    "consoles: [x], rights: [admin]}\n"
	    "sharing: single-writer\n"), 0);
	ASSERT_INT_EQ(cfg.access_set, 1);
	ASSERT_INT_EQ(cfg.n_access, 3);
	ASSERT_INT_EQ(cfg.sharing, SHARING_SINGLE_WRITER);

	r = &cfg.access[0];
	ASSERT_SIZE_EQ(r->line, 2);
	ASSERT_INT_EQ(r->n_who, 1);
	ASSERT_INT_EQ(r->who[0].kind, WHO_USER);
	ASSERT_STR_EQ(r->who[0].name, "alice");
	ASSERT_INT_EQ(r->n_consoles, 1);
	ASSERT_STR_EQ(r->consoles[0].pattern, "web-*");
	ASSERT_STR_EQ(r->consoles[0].uuid, "");
	ASSERT_INT_EQ(r->rights, RIGHT_READ);

	r = &cfg.access[1];
	ASSERT_SIZE_EQ(r->line, 5);
	ASSERT_INT_EQ(r->n_who, 4);
	ASSERT_INT_EQ(r->who[0].kind, WHO_GROUP);
	ASSERT_STR_EQ(r->who[0].name, "ops");
	ASSERT_INT_EQ(r->who[1].kind, WHO_TOKEN);
	ASSERT_STR_EQ(r->who[1].name, "ci");
	ASSERT_INT_EQ(r->who[2].kind, WHO_ANONYMOUS);
	ASSERT_TRUE(r->who[2].name == NULL);
	ASSERT_INT_EQ(r->who[3].kind, WHO_ANY);
	ASSERT_INT_EQ(r->n_consoles, 2);
	ASSERT_STR_EQ(r->consoles[1].uuid, UUID);
	ASSERT_INT_EQ(r->rights, RIGHT_READ | RIGHT_WRITE | RIGHT_FORCE);

	r = &cfg.access[2];
	ASSERT_SIZE_EQ(r->line, 10);
	ASSERT_INT_EQ(r->who[0].kind, WHO_CERT_CN);
	ASSERT_STR_EQ(r->who[0].name, "alice");
	ASSERT_INT_EQ(r->who[1].kind, WHO_CERT);
	ASSERT_STR_EQ(r->who[1].name, "CN=a,O=b");
	ASSERT_INT_EQ(r->rights, RIGHT_ALL);

	/* access: [] is "rules configured, none": not the default. */
	ASSERT_INT_EQ(load_ok("access: []\n"), 0);
	ASSERT_INT_EQ(cfg.access_set, 1);
	ASSERT_INT_EQ(cfg.n_access, 0);
	ASSERT_INT_EQ(load_ok("sharing: shared\n"), 0);
	ASSERT_INT_EQ(cfg.access_set, 0);
	ASSERT_INT_EQ(cfg.sharing, SHARING_SHARED);
}

/* Every rule error, each at its own line; bad rules are dropped. */
static void
test_parse_errors(void)
{
	struct errbuf e;
	char longname[80], text[4096];
	int n;

	memset(longname, 'x', 64);
	longname[64] = '\0';
	snprintf(text, sizeof text,
	    "access:\n"
	    "  - just a string\n"				/* 2 */
	    "  - who: user:a\n"
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "    colour: red\n"					/* 6 */
	    "  - who: user:a\n"
	    "    who: user:b\n"					/* 8 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who: user:a\n"					/* 11 */
	    "  - who: root\n"					/* 12 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who: [\"user:\", \"cert:CN=\"]\n"		/* 15 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who: user:%s\n"				/* 18 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who: []\n"					/* 21 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who: {user: a}\n"				/* 24 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who:\n"
	    "      - [user:a]\n"				/* 28 */
	    "    consoles: ''\n"				/* 29 */
	    "    rights: [read, sudo]\n"			/* 30 */
	    "  - who: \"user:a\\0b\"\n"				/* 31 */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who: any\n"					/* 34: good */
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - ? [x]\n"					/* 37 */
	    "    : y\n"
	    "    who: any\n"
	    "    consoles: '*'\n"
	    "    rights: read\n"
	    "  - who:\n"					/* 42 */
	    "    consoles: '*'\n"
	    "    rights: read\n", longname);
	n = load(&e, "errors.yaml", text);
	ASSERT_TRUE(err_has(&e, "/errors.yaml:2: access: a rule must be a "
	    "mapping with who, consoles and rights\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:6: access: unknown rule key "
	    "'colour' (who, consoles, rights)\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:8: access: duplicate rule key "
	    "'who' (first at line 7)\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:11: access: rule has no "
	    "'consoles'\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:11: access: rule has no "
	    "'rights'\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:12: access: who 'root' is not "
	    "user:NAME, group:NAME, token:NAME, cert:SUBJECT, anonymous or "
	    "any\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:15: access: who 'user:' has an "
	    "empty name\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:15: access: who 'cert:CN=' has "
	    "an empty name\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:18: access: who 'user:xxxx"));
	ASSERT_TRUE(err_has(&e, "' is too long (names at most 63 bytes)\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:21: access: empty 'who' "
	    "list\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:24: access: 'who' wants a "
	    "string or a list of strings\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:28: access: 'who' items must "
	    "be strings\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:29: access: empty 'consoles' "
	    "item\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:30: access: unknown right "
	    "'sudo' (read, write, force or admin)\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:31: access: 'who' item "
	    "contains a NUL byte\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:37: access: rule key is not a "
	    "string\n"));
	ASSERT_TRUE(err_has(&e, "/errors.yaml:42: access: empty 'who' "
	    "item\n"));
	ASSERT_INT_EQ(err_lines(&e), 17);
	ASSERT_INT_EQ(n, 17);
	err_free(&e);
	/* Only the good rule at line 34 survives. */
	ASSERT_INT_EQ(cfg.n_access, 1);
	ASSERT_SIZE_EQ(cfg.access[0].line, 34);

	ASSERT_INT_EQ(load(&e, "notlist.yaml", "# rules\n"
	    "access: everyone\n"), 1);
	ASSERT_TRUE(err_has(&e, "/notlist.yaml:2: access wants a list of "
	    "rules ({who, consoles, rights}; [] for none)\n"));
	err_free(&e);

	ASSERT_INT_EQ(load(&e, "dup.yaml", "access: []\n"
	    "sharing: shared\n"
	    "access: []\n"), 1);
	ASSERT_TRUE(err_has(&e, "/dup.yaml:3: duplicate key 'access' (first "
	    "at line 1)\n"));
	err_free(&e);

	ASSERT_INT_EQ(load(&e, "sharing.yaml", "\nsharing: exclusive\n"), 1);
	ASSERT_TRUE(err_has(&e, "/sharing.yaml:2: sharing 'exclusive' is not "
	    "one of shared|single-writer\n"));
	err_free(&e);
}

/* More rules than AUTHZ_MAX_RULES, and a pattern that is too long. */
static void
test_parse_limits(void)
{
	struct errbuf e;
	char *text, *p;
	size_t cap = (AUTHZ_MAX_RULES + 2) * 64 + 4096;
	int i;

	p = text = malloc(cap);
	ASSERT_TRUE(text != NULL);
	p += sprintf(p, "access:\n");
	for (i = 0; i < AUTHZ_MAX_RULES + 1; i++)
		p += sprintf(p, "  - {who: any, consoles: x, rights: read}\n");
	ASSERT_INT_EQ(load(&e, "many.yaml", text), 1);
	ASSERT_TRUE(err_has(&e, "/many.yaml:2: access: too many rules (1025, "
	    "at most 1024)\n"));
	err_free(&e);

	p = text;
	p += sprintf(p, "access:\n  - who: any\n    rights: read\n"
	    "    consoles: ");
	memset(p, 'a', AUTHZ_PATTERN_MAX);
	p += AUTHZ_PATTERN_MAX;
	sprintf(p, "\n");
	ASSERT_INT_EQ(load(&e, "long.yaml", text), 1);
	ASSERT_TRUE(err_has(&e, "/long.yaml:4: access: consoles pattern is "
	    "longer than 1023 bytes\n"));
	err_free(&e);
	free(text);
}

/* access is not a command-line flag: --access is an unknown option. */
static void
test_access_not_a_flag(void)
{
	static char a0[] = "vspcd", a1[] = "--access", a2[] = "x";
	char *argv[] = { a0, a1, a2, NULL };
	struct config c;
	pid_t pid;
	int status, fd;

	fflush(NULL);
	if ((pid = fork()) == 0) {
		if ((fd = open("/dev/null", O_WRONLY)) != -1)
			dup2(fd, 2);
		config_defaults(&c);
		(void)config_parse_args(&c, 3, argv);
		_exit(42);
	}
	ASSERT_TRUE(pid > 0);
	ASSERT_INT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_INT_EQ(WEXITSTATUS(status), 1);
}

/* The rights of an identity are the union over the matching rules. */
static void
test_rights_union(void)
{
	struct identity alice, bob, ci, anon;

	ASSERT_INT_EQ(load_ok(
	    "access:\n"
	    "  - {who: group:ops, consoles: 'web-*', rights: read}\n"
	    "  - {who: user:alice, consoles: web-1, rights: write}\n"
	    "  - {who: user:alice, consoles: 'db-*', rights: force}\n"
	    "  - {who: token:ci, consoles: '*', rights: admin}\n"
	    "  - {who: anonymous, consoles: public, rights: read}\n"
	    "  - {who: any, consoles: lobby, rights: write}\n"), 0);
	alice = ident(IDENT_UNIX, "alice", false);
	ident_group(&alice, "staff");
	ident_group(&alice, "ops");
	bob = ident(IDENT_UNIX, "bob", true);
	ci = ident(IDENT_TOKEN, "ci", false);
	anon = ident(IDENT_ANONYMOUS, "", true);

	ASSERT_INT_EQ(authz_rights(&alice, "web-1", PORTID, UUID),
	    RIGHT_READ | RIGHT_WRITE);
	ASSERT_INT_EQ(authz_rights(&alice, "web-2", PORTID, UUID), RIGHT_READ);
	ASSERT_INT_EQ(authz_rights(&alice, "db-7", PORTID, UUID),
	    RIGHT_READ | RIGHT_WRITE | RIGHT_FORCE);
	ASSERT_INT_EQ(authz_rights(&alice, "mail", PORTID, UUID), 0);
	ASSERT_INT_EQ(authz_rights(&alice, "lobby", PORTID, UUID),
	    RIGHT_READ | RIGHT_WRITE);
	/* Loopback gives nothing once rules exist. */
	ASSERT_INT_EQ(authz_rights(&bob, "web-1", PORTID, UUID), 0);
	ASSERT_INT_EQ(authz_rights(&bob, "lobby", PORTID, UUID),
	    RIGHT_READ | RIGHT_WRITE);
	ASSERT_INT_EQ(authz_rights(&ci, "anything", PORTID, UUID), RIGHT_ALL);
	ASSERT_INT_EQ(authz_rights(&anon, "public", PORTID, UUID),
	    RIGHT_READ);
	ASSERT_INT_EQ(authz_rights(&anon, "lobby", PORTID, UUID), 0);
	ASSERT_INT_EQ(authz_rights(&anon, "web-1", PORTID, UUID), 0);

	/* Names are per kind: a token called alice is not user:alice. */
	ci = ident(IDENT_TOKEN, "alice", false);
	ASSERT_INT_EQ(authz_rights(&ci, "web-1", PORTID, UUID), 0);
	/* Groups only count for unix identities and within ngroups. */
	ci = ident(IDENT_CERT, "CN=ops", false);
	ASSERT_INT_EQ(authz_rights(&ci, "web-1", PORTID, UUID), 0);
	alice.ngroups = 1;
	ASSERT_INT_EQ(authz_rights(&alice, "web-2", PORTID, UUID), 0);
	ASSERT_INT_EQ(authz_rights(NULL, "web-2", PORTID, UUID), 0);
}

/* A consoles glob matches the VM name, the port id or the UUID. */
static void
test_globs(void)
{
	struct identity u = ident(IDENT_UNIX, "u", false);

	ASSERT_INT_EQ(load_ok(
	    "access:\n"
	    "  - {who: user:u, consoles: 'web-?', rights: read}\n"
	    "  - {who: user:u, consoles: '*.db1', rights: write}\n"
	    "  - {who: user:u, consoles: '" UUID_VMW "', rights: force}\n"
	    "  - {who: user:u, consoles: 'ffff*', rights: admin}\n"), 0);
	ASSERT_INT_EQ(authz_rights(&u, "web-1", "x", NULL), RIGHT_READ);
	ASSERT_INT_EQ(authz_rights(&u, "web-10", "x", NULL), 0);
	ASSERT_INT_EQ(authz_rights(&u, NULL, "x.db1", NULL),
	    RIGHT_READ | RIGHT_WRITE);
	/* The UUID rule, given the UUID in any VMware spelling. */
	ASSERT_INT_EQ(authz_rights(&u, "other", "x", UUID),
	    RIGHT_READ | RIGHT_WRITE | RIGHT_FORCE);
	ASSERT_INT_EQ(authz_rights(&u, "other", "x", UUID_VMW),
	    RIGHT_READ | RIGHT_WRITE | RIGHT_FORCE);
	ASSERT_INT_EQ(authz_rights(&u, "other", "x",
	    "421C5A3B-0011-2233-4455-66778899AABB"),
	    RIGHT_READ | RIGHT_WRITE | RIGHT_FORCE);
	ASSERT_INT_EQ(authz_rights(&u, "other", "x",
	    "ffff0000000000000000000000000000"), RIGHT_ALL);
	/* The port id starts with the UUID too. */
	ASSERT_INT_EQ(authz_rights(&u, NULL,
	    "ffff0000000000000000000000000000.a", NULL), RIGHT_ALL);
	/* Not a UUID: not compared as one. */
	ASSERT_INT_EQ(authz_rights(&u, "other", "x", "ffff"), 0);
	ASSERT_INT_EQ(authz_rights(&u, NULL, NULL, NULL), 0);
	/* No FNM_PATHNAME: '*' crosses '/' in VM names. */
	ASSERT_INT_EQ(load_ok(
	    "access: [{who: any, consoles: 'dc1*', rights: read}]\n"), 0);
	ASSERT_INT_EQ(authz_rights(&u, "dc1/rack2/vm", "x", NULL),
	    RIGHT_READ);
}

/* No access key: loopback only, read and write only; uid 0 everything. */
static void
test_safe_default(void)
{
	struct identity id;

	ASSERT_INT_EQ(load_ok("sharing: shared\n"), 0);
	ASSERT_INT_EQ(cfg.access_set, 0);
	id = ident(IDENT_ANONYMOUS, "", true);
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID),
	    RIGHT_READ | RIGHT_WRITE);
	id.loopback = false;
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), 0);
	id = ident(IDENT_UNIX, "alice", true);
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID),
	    RIGHT_READ | RIGHT_WRITE);
	id = ident(IDENT_TOKEN, "ci", false);
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), 0);
	id = ident(IDENT_CERT, "CN=x", false);
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), 0);
	id = ident(IDENT_UNIX, "root", false);
	id.uid = 0;
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), RIGHT_ALL);
	/* uid 0 means root only for unix identities. */
	id.kind = IDENT_TOKEN;
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), 0);

	/* With rules (even none), loopback alone gives nothing; root all. */
	ASSERT_INT_EQ(load_ok("access: []\n"), 0);
	id = ident(IDENT_ANONYMOUS, "", true);
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), 0);
	id = ident(IDENT_UNIX, "root", true);
	id.uid = 0;
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), RIGHT_ALL);
	/* An unterminated name is refused. */
	ASSERT_INT_EQ(load_ok("sharing: shared\n"), 0);
	id = ident(IDENT_ANONYMOUS, "", true);
	memset(id.name, 'a', sizeof id.name);
	ASSERT_INT_EQ(authz_rights(&id, "vm", PORTID, UUID), 0);
}

/* cert:SUBJECT is exact; cert:CN=NAME takes the one CN of the subject. */
static void
test_cert_subjects(void)
{
	struct identity id;

	ASSERT_INT_EQ(load_ok(
	    "access:\n"
	    "  - {who: 'cert:CN=alice', consoles: a, rights: read}\n"
	    "  - {who: 'cert:CN=ci,O=Example', consoles: b, rights: read}\n"
	    "  - {who: 'cert:CN=x\\,y', consoles: c, rights: read}\n"), 0);
	ASSERT_INT_EQ(cfg.access[2].who[0].kind, WHO_CERT_CN);
	ASSERT_STR_EQ(cfg.access[2].who[0].name, "x,y");
	id = ident(IDENT_CERT, "CN=x\\,y,O=z", false);
	ASSERT_INT_EQ(authz_rights(&id, "c", "", NULL), RIGHT_READ);

	id = ident(IDENT_CERT, "CN=alice,O=Example,C=US", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), RIGHT_READ);
	id = ident(IDENT_CERT, "C = US, O = Example, CN = alice", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), RIGHT_READ);
	id = ident(IDENT_CERT, "/C=US/O=Example/CN=alice", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), RIGHT_READ);
	id = ident(IDENT_CERT, "CN=alice+UID=7,O=Example", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), RIGHT_READ);
	/* Two CNs: ambiguous, no CN rule matches. */
	id = ident(IDENT_CERT, "CN=alice,CN=mallory", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), 0);
	/* An escaped comma is part of the value. */
	id = ident(IDENT_CERT, "CN=alice\\,O=Example", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), 0);
	id = ident(IDENT_CERT, "CNX=alice", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), 0);
	/* Exact subjects compare whole. */
	id = ident(IDENT_CERT, "CN=ci,O=Example", false);
	ASSERT_INT_EQ(authz_rights(&id, "b", "", NULL), RIGHT_READ);
	id = ident(IDENT_CERT, "CN=ci,O=Example,C=US", false);
	ASSERT_INT_EQ(authz_rights(&id, "b", "", NULL), 0);
	/* A unix user called CN=alice is not a certificate. */
	id = ident(IDENT_UNIX, "CN=alice", false);
	ASSERT_INT_EQ(authz_rights(&id, "a", "", NULL), 0);
}

/* Tokens: hashed lookup, wrong tokens, every hash compared. */
static void
test_tokens(void)
{
	char h1[65], h2[65], h3[65], text[1024], name[IDENT_NAME_MAX], *p;

	sha256_hex("s3cret-one", h1);
	sha256_hex("s3cret-two", h2);
	sha256_hex("s3cret-three", h3);
	snprintf(text, sizeof text, "tokens:\n  - ci:%s\n  - ops.bot@x:%s\n"
	    "  - third-token:%s\n", h1, h2, h3);
	/* Upper-case hex works too. */
	for (p = strstr(text, "third-token:") + 12; *p != '\n'; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	ASSERT_INT_EQ(load_ok(text), 0);
	ASSERT_INT_EQ(cfg.n_tokens, 3);

	memcmp_calls = 0;
	ASSERT_INT_EQ(authz_token_lookup("s3cret-one", name, sizeof name), 0);
	ASSERT_STR_EQ(name, "ci");
	ASSERT_INT_EQ(memcmp_calls, 3);	/* no early exit on a match */
	memcmp_calls = 0;
	ASSERT_INT_EQ(authz_token_lookup("s3cret-two", name, sizeof name), 0);
	ASSERT_STR_EQ(name, "ops.bot@x");
	ASSERT_INT_EQ(authz_token_lookup("s3cret-three", name, sizeof name),
	    0);
	ASSERT_STR_EQ(name, "third-token");
	ASSERT_INT_EQ(memcmp_calls, 6);

	memcmp_calls = 0;
	strlcpy(name, "unchanged", sizeof name);
	ASSERT_INT_EQ(authz_token_lookup("s3cret-on", name, sizeof name), -1);
	ASSERT_INT_EQ(authz_token_lookup("S3CRET-ONE", name, sizeof name),
	    -1);
	ASSERT_INT_EQ(memcmp_calls, 6);
	ASSERT_STR_EQ(name, "unchanged");
	/* The hash itself is not a token. */
	ASSERT_INT_EQ(authz_token_lookup(h1, name, sizeof name), -1);
	ASSERT_INT_EQ(authz_token_lookup("", name, sizeof name), -1);
	ASSERT_INT_EQ(authz_token_lookup(NULL, name, sizeof name), -1);
	/* A buffer too small for the name: refused, not cut. */
	ASSERT_INT_EQ(authz_token_lookup("s3cret-two", name, 5), -1);
	/* No tokens configured: nothing matches. */
	ASSERT_INT_EQ(load_ok("sharing: shared\n"), 0);
	ASSERT_INT_EQ(authz_token_lookup("s3cret-one", name, sizeof name),
	    -1);
}

/* Token items: format, duplicates, and the value never echoed. */
static void
test_token_errors(void)
{
	struct errbuf e;
	char h1[65], text[2048];

	sha256_hex("x", h1);
	snprintf(text, sizeof text,
	    "tokens:\n"
	    "  - ci:%s\n"
	    "  - my-clear-secret-token\n"			/* 3 */
	    "  - ci:%s\n"					/* 4 */
	    "  - other:%s\n"					/* 5 */
	    "  - ci:%.63s\n"					/* 6 */
	    "  - bad name:%s\n"					/* 7 */
	    "  - :%s\n",					/* 8 */
	    h1, h1, h1, h1, h1, h1);
	ASSERT_INT_EQ(load(&e, "tokens.yaml", text), 6);
	ASSERT_TRUE(err_has(&e, "/tokens.yaml:3: tokens: an item is not "
	    "NAME:SHA256HEX"));
	ASSERT_TRUE(err_has(&e, "/tokens.yaml:4: tokens: duplicate token "
	    "name 'ci'\n"));
	ASSERT_TRUE(err_has(&e, "/tokens.yaml:5: tokens: token 'other' has "
	    "the same hash as 'ci'\n"));
	ASSERT_TRUE(err_has(&e, "/tokens.yaml:6: tokens: an item is not"));
	ASSERT_TRUE(err_has(&e, "/tokens.yaml:7: tokens: an item is not"));
	ASSERT_TRUE(err_has(&e, "/tokens.yaml:8: tokens: an item is not"));
	ASSERT_TRUE(!err_has(&e, "my-clear-secret-token"));
	ASSERT_TRUE(!err_has(&e, h1));
	err_free(&e);
	ASSERT_INT_EQ(cfg.n_tokens, 1);
}

/* A rule naming a token that is not configured fails validation. */
static void
test_unknown_token(void)
{
	struct errbuf e;
	char h[65], text[512];

	sha256_hex("t", h);
	snprintf(text, sizeof text, "tokens: [ci:%s]\n"
	    "access:\n"
	    "  - {who: [token:ci, token:cj], consoles: x, rights: read}\n", h);
	ASSERT_INT_EQ(load(&e, "tok.yaml", text), 0);
	err_free(&e);
	memset(&e, 0, sizeof e);
	ASSERT_TRUE((e.f = open_memstream(&e.buf, &e.len)) != NULL);
	ASSERT_INT_EQ(config_validate(&cfg, e.f), 1);
	ASSERT_STR_EQ(err_text(&e), "vspcd: access: the rule at line 3 names "
	    "token 'cj', which is not in tokens\n");
	err_free(&e);
}

/* Rights as text for log lines. */
static void
test_rights_str(void)
{
	char buf[64];

	ASSERT_STR_EQ(authz_rights_str(0, buf, sizeof buf), "none");
	ASSERT_STR_EQ(authz_rights_str(RIGHT_READ, buf, sizeof buf), "read");
	ASSERT_STR_EQ(authz_rights_str(RIGHT_READ | RIGHT_WRITE, buf,
	    sizeof buf), "read,write");
	ASSERT_STR_EQ(authz_rights_str(RIGHT_ALL, buf, sizeof buf),
	    "read,write,force,admin");
	ASSERT_STR_EQ(authz_rights_str(RIGHT_ALL, buf, 8), "read,wr");
}

/* sharing-rules: first match wins; name, id and UUID forms; fallback. */
static void
test_sharing_rules(void)
{
	ASSERT_INT_EQ(load_ok("sharing: single-writer\n"
	    "sharing-rules:\n"
	    "  - {consoles: [web-*, db-1], mode: shared}\n"
	    "  - consoles: \"" UUID_VMW "\"\n"
	    "    mode: shared\n"
	    "  - {consoles: '*.web1', mode: single-writer}\n"
	    "  - {consoles: '*', mode: shared}\n"), 0);
	ASSERT_INT_EQ(cfg.n_sharing_rules, 4);
	ASSERT_INT_EQ(cfg.sharing_rules[0].n_consoles, 2);
	ASSERT_SIZE_EQ(cfg.sharing_rules[1].line, 4);
	ASSERT_STR_EQ(cfg.sharing_rules[1].consoles[0].uuid, UUID);
	/* First match: web-* before '*'. */
	ASSERT_INT_EQ(authz_sharing_mode("web-7", "x", NULL), SHARING_SHARED);
	ASSERT_INT_EQ(authz_sharing_mode("db-1", NULL, NULL), SHARING_SHARED);
	/* The UUID rule matches any spelling of the UUID, before *.web1. */
	ASSERT_INT_EQ(authz_sharing_mode("other", PORTID, UUID_VMW),
	    SHARING_SHARED);
	ASSERT_INT_EQ(authz_sharing_mode("other", PORTID,
	    "501234567800000000000000000000ff"), SHARING_SINGLE_WRITER);
	ASSERT_INT_EQ(authz_sharing_mode("other", "zz", NULL), SHARING_SHARED);

	/* No rule matches: the sharing key. */
	ASSERT_INT_EQ(load_ok("sharing: single-writer\n"
	    "sharing-rules: [{consoles: web-*, mode: shared}]\n"), 0);
	ASSERT_INT_EQ(authz_sharing_mode("db-1", "x", UUID),
	    SHARING_SINGLE_WRITER);
	ASSERT_INT_EQ(authz_sharing_mode("web-1", "x", UUID), SHARING_SHARED);
	ASSERT_INT_EQ(load_ok("sharing-rules: []\n"), 0);
	ASSERT_INT_EQ(cfg.n_sharing_rules, 0);
	ASSERT_INT_EQ(authz_sharing_mode("web-1", "x", UUID), SHARING_SHARED);
}

/* Every sharing-rules error, with its line; bad rules are dropped. */
static void
test_sharing_rule_errors(void)
{
	struct errbuf e;

	ASSERT_INT_EQ(load(&e, "sr.yaml",
	    "sharing-rules:\n"
	    "  - {consoles: ok, mode: single-writer}\n"		/* 2 */
	    "  - {consoles: a, mode: exclusive}\n"		/* 3 */
	    "  - {mode: shared}\n"				/* 4 */
	    "  - {consoles: b}\n"				/* 5 */
	    "  - {consoles: [], mode: shared}\n"			/* 6 */
	    "  - {consoles: c, mode: shared, who: x}\n"		/* 7 */
	    "  - {consoles: {a: b}, mode: shared}\n"		/* 8 */
	    "  - {consoles: [x, [y]], mode: [shared]}\n"		/* 9 */
	    "  - just a string\n"				/* 10 */
	    "  - {consoles: d, consoles: e, mode: shared}\n"),	/* 11 */
	    10);
	ASSERT_TRUE(err_has(&e, "sr.yaml:3: sharing-rules: mode 'exclusive' "
	    "is not shared or single-writer\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:4: sharing-rules: rule has no "
	    "'consoles'\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:5: sharing-rules: rule has no "
	    "'mode'\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:6: sharing-rules: 'consoles' wants "
	    "1 to 256 items\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:7: sharing-rules: unknown rule key "
	    "'who' (consoles, mode)\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:8: sharing-rules: 'consoles' wants a "
	    "string or a list of strings\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:9: sharing-rules: 'consoles' items "
	    "must be strings\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:9: sharing-rules: 'mode' items must "
	    "be strings\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:10: sharing-rules: a rule must be a "
	    "mapping with consoles and mode\n"));
	ASSERT_TRUE(err_has(&e, "sr.yaml:11: sharing-rules: duplicate rule "
	    "key 'consoles' (first at line 11)\n"));
	ASSERT_INT_EQ(err_lines(&e), 10);
	ASSERT_INT_EQ(cfg.n_sharing_rules, 1);
	err_free(&e);

	ASSERT_INT_EQ(load(&e, "sr2.yaml", "sharing-rules: {consoles: a}\n"),
	    1);
	ASSERT_TRUE(err_has(&e, "sr2.yaml:1: sharing-rules wants a list of "
	    "rules"));
	err_free(&e);
}

/* Run every test in a fresh temporary directory. */
int
main(void)
{
	size_t i;

	log_init(1, LOG_LVL_WARN, "test-authz");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	config_defaults(&cfg);
	T_RUN(test_parse_good);
	T_RUN(test_parse_errors);
	T_RUN(test_parse_limits);
	T_RUN(test_access_not_a_flag);
	T_RUN(test_rights_union);
	T_RUN(test_globs);
	T_RUN(test_safe_default);
	T_RUN(test_cert_subjects);
	T_RUN(test_tokens);
	T_RUN(test_token_errors);
	T_RUN(test_unknown_token);
	T_RUN(test_rights_str);
	T_RUN(test_sharing_rules);
	T_RUN(test_sharing_rule_errors);
	config_free(&cfg);
	for (i = 0; i < nfiles; i++) {
		unlink(files[i]);
		free(files[i]);
	}
	rmdir(tmpdir);
	return (t_summary());
}
