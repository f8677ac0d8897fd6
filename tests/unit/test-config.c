/*
 * Unit tests for the configuration (src/daemon/config.c): defaults, the
 * YAML file, the flags on top of it, every error with its line, and the
 * whole-config checks. Files are written under a mkdtemp(3) directory.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "t.h"
#include "vspcd.h"

#define MAX_ARGS	64
#define MAX_FILES	64

static char tmpdir[] = "/tmp/test-config.XXXXXX";
static char *files[MAX_FILES];
static size_t nfiles;

/* Error output captured in memory. */
struct errbuf {
	FILE	*f;
	char	*buf;
	size_t	 len;
};

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

/* Start capturing error output. */
static FILE *
err_open(struct errbuf *e)
{
	memset(e, 0, sizeof *e);
	if ((e->f = open_memstream(&e->buf, &e->len)) == NULL)
		abort();
	return (e->f);
}

/* Stop capturing; return the text (free with err_free). */
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

/* Run config_build with "vspcd" and the NULL-terminated flags. */
static int
build(struct config *conf, struct errbuf *e, ...)
{
	char *argv[MAX_ARGS + 2], *copy[MAX_ARGS + 2];
	const char *a;
	va_list ap;
	int argc = 0, i, n;

	argv[argc++] = strdup("vspcd");
	va_start(ap, e);
	while ((a = va_arg(ap, const char *)) != NULL && argc <= MAX_ARGS)
		argv[argc++] = strdup(a);
	va_end(ap);
	argv[argc] = NULL;
	memcpy(copy, argv, sizeof argv);	/* getopt permutes argv */
	n = config_build(conf, argc, argv, err_open(e));
	err_text(e);
	for (i = 0; i < argc; i++)
		free(copy[i]);
	return (n);
}

/* Load one file over the defaults; return the error count. */
static int
load(struct config *conf, struct errbuf *e, const char *name, const char *text)
{
	config_defaults(conf);
	return (config_load_file(conf, write_file(name, text), err_open(e)));
}

/* Does the captured output contain s? */
static int
err_has(struct errbuf *e, const char *s)
{
	return (strstr(err_text(e), s) != NULL);
}

/* Are two configs equal in every field but the strings? */
static int
same_scalars(const struct config *c, const struct config *d)
{
	struct config a, b;

	memcpy(&a, c, sizeof a);
	memcpy(&b, d, sizeof b);
	a.state_dir = b.state_dir = NULL;
	memset(a.vm_listen, 0, sizeof a.vm_listen);
	memset(b.vm_listen, 0, sizeof b.vm_listen);
	a.client_listen = b.client_listen = NULL;
	a.client_bind = b.client_bind = NULL;
	a.unix_listen = b.unix_listen = NULL;
	a.admin_listen = b.admin_listen = NULL;
	memset(a.service_uri, 0, sizeof a.service_uri);
	memset(b.service_uri, 0, sizeof b.service_uri);
	a.config_file = b.config_file = NULL;
	a.log_dir = b.log_dir = NULL;
	a.log_timestamp_format = b.log_timestamp_format = NULL;
	a.access = b.access = NULL;
	memset(a.tokens, 0, sizeof a.tokens);
	memset(b.tokens, 0, sizeof b.tokens);
	a.audit_log = b.audit_log = NULL;
	return (memcmp(&a, &b, sizeof a) == 0);
}

/* Defaults match the old parse_args and the header. */
static void
test_defaults(void)
{
	struct config c;

	config_defaults(&c);
	ASSERT_INT_EQ(c.foreground, 0);
	ASSERT_INT_EQ(c.verbose, 0);
	ASSERT_STR_EQ(c.state_dir, "/var/lib/vspcd");
	ASSERT_INT_EQ(c.n_vm_listen, 1);
	ASSERT_STR_EQ(c.vm_listen[0], "0.0.0.0:13370");
	ASSERT_STR_EQ(c.client_listen, "127.0.0.1:13371");
	ASSERT_STR_EQ(c.client_bind, "127.0.0.1");
	ASSERT_INT_EQ(c.port_lo, 50000);
	ASSERT_INT_EQ(c.port_hi, 50999);
	ASSERT_STR_EQ(c.admin_listen, "127.0.0.1:13372");
	ASSERT_INT_EQ(c.n_service_uri, 1);
	ASSERT_STR_EQ(c.service_uri[0], "vSPC.py");
	ASSERT_INT_EQ(c.port_expiry, 86400);
	ASSERT_INT_EQ(c.ident_timeout, 10);
	ASSERT_SIZE_EQ(c.client_queue, 262144);
	ASSERT_SIZE_EQ(c.vm_queue, 65536);
	ASSERT_SIZE_EQ(c.prebind_max, 16384);
	ASSERT_SIZE_EQ(c.sb_max, TELNET_SB_MAX);
	ASSERT_INT_EQ(c.vmotion_drain_ms, 1500);
	ASSERT_INT_EQ(c.vmotion_peer_timeout, 60);
	ASSERT_INT_EQ(c.vmotion_complete_timeout, 60);
	ASSERT_INT_EQ(c.vmotion_source_drain, 10);
	ASSERT_SIZE_EQ(c.vmotion_hold_max, 1048576);
	ASSERT_TRUE(c.config_file == NULL);
	ASSERT_INT_EQ(c.check_only, 0);
	ASSERT_TRUE(c.log_dir == NULL);
	ASSERT_INT_EQ(c.log_enabled, 1);
	ASSERT_INT_EQ(c.log_timestamps, 0);
	ASSERT_STR_EQ(c.log_timestamp_format, "[%Y-%m-%d %H:%M:%S] ");
	ASSERT_SIZE_EQ(c.log_max_size, 16 * 1024 * 1024);
	ASSERT_INT_EQ(c.log_keep, 5);
	ASSERT_INT_EQ(c.log_sync_ms, 1000);
	ASSERT_SIZE_EQ(c.replay_size, 65536);
	ASSERT_INT_EQ(c.replay_telnet, 0);
	ASSERT_INT_EQ(c.state_expiry_days, 30);
	ASSERT_INT_EQ(c.access_set, 0);
	ASSERT_INT_EQ(c.n_access, 0);
	ASSERT_INT_EQ(c.n_tokens, 0);
	ASSERT_INT_EQ(c.sharing, SHARING_SHARED);
	ASSERT_TRUE(c.audit_log == NULL);
	ASSERT_INT_EQ(c.audit_enabled, 1);
	ASSERT_INT_EQ(config_validate(&c, stderr), 0);
	config_free(&c);
}

/* No flags and no file: the defaults, valid, no output. */
static void
test_no_args(void)
{
	struct config c, d;
	struct errbuf e;

	ASSERT_INT_EQ(build(&c, &e, NULL), 0);
	ASSERT_STR_EQ(err_text(&e), "");
	err_free(&e);
	config_defaults(&d);
	ASSERT_STR_EQ(c.state_dir, d.state_dir);
	ASSERT_INT_EQ(c.n_vm_listen, 1);
	ASSERT_INT_EQ(c.port_lo, d.port_lo);
	config_free(&c);
	config_free(&d);
}

/* A file that sets every key, one of each type. */
static void
test_good_file(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "good.yaml",
	    "# every type\n"
	    "foreground: true\n"
	    "verbose: 2\n"
	    "state-dir: /srv/vspcd\n"
	    "vm-listen:\n"
	    "  - 127.0.0.1:1\n"
	    "  - '[::1]:2'\n"
	    "client-listen: off\n"
	    "client-bind: 10.0.0.1\n"
	    "port-range: 6000-6099\n"
	    "admin-listen: \"*:0\"\n"
	    "service-uri: [a, b, '*']\n"
	    "port-expiry: 60\n"
	    "ident-timeout: 3\n"
	    "client-queue: 8K\n"
	    "vmotion-drain-ms: 250\n"
	    "vmotion-peer-timeout: 5\n"
	    "vmotion-complete-timeout: 6\n"
	    "vmotion-source-drain: 7\n"
	    "vmotion-hold-max: 2m\n"
	    "log-dir: /var/log/vspcd\n"
	    "log-timestamps: yes\n"
	    "log-timestamp-format: '%s '\n"
	    "log-max-size: 1G\n"
	    "log-keep: 0\n"
	    "log-sync-ms: 50\n"
	    "replay-size: 0\n"
	    "replay-telnet: true\n"
	    "state-expiry-days: 7\n"), 0);
	ASSERT_STR_EQ(err_text(&e), "");
	err_free(&e);
	ASSERT_INT_EQ(c.foreground, 1);
	ASSERT_INT_EQ(c.verbose, 2);
	ASSERT_STR_EQ(c.state_dir, "/srv/vspcd");
	ASSERT_INT_EQ(c.n_vm_listen, 2);
	ASSERT_STR_EQ(c.vm_listen[0], "127.0.0.1:1");
	ASSERT_STR_EQ(c.vm_listen[1], "[::1]:2");
	ASSERT_TRUE(c.client_listen == NULL);
	ASSERT_STR_EQ(c.client_bind, "10.0.0.1");
	ASSERT_INT_EQ(c.port_lo, 6000);
	ASSERT_INT_EQ(c.port_hi, 6099);
	ASSERT_STR_EQ(c.admin_listen, "*:0");
	ASSERT_INT_EQ(c.n_service_uri, 3);
	ASSERT_STR_EQ(c.service_uri[0], "a");
	ASSERT_STR_EQ(c.service_uri[1], "b");
	ASSERT_STR_EQ(c.service_uri[2], "*");
	ASSERT_INT_EQ(c.port_expiry, 60);
	ASSERT_INT_EQ(c.ident_timeout, 3);
	ASSERT_SIZE_EQ(c.client_queue, 8192);
	ASSERT_INT_EQ(c.vmotion_drain_ms, 250);
	ASSERT_INT_EQ(c.vmotion_peer_timeout, 5);
	ASSERT_INT_EQ(c.vmotion_complete_timeout, 6);
	ASSERT_INT_EQ(c.vmotion_source_drain, 7);
	ASSERT_SIZE_EQ(c.vmotion_hold_max, 2 * 1024 * 1024);
	ASSERT_STR_EQ(c.log_dir, "/var/log/vspcd");
	ASSERT_INT_EQ(c.log_enabled, 1);
	ASSERT_INT_EQ(c.log_timestamps, 1);
	ASSERT_STR_EQ(c.log_timestamp_format, "%s ");
	ASSERT_SIZE_EQ(c.log_max_size, 1024 * 1024 * 1024);
	ASSERT_INT_EQ(c.log_keep, 0);
	ASSERT_INT_EQ(c.log_sync_ms, 50);
	ASSERT_SIZE_EQ(c.replay_size, 0);
	ASSERT_INT_EQ(c.replay_telnet, 1);
	ASSERT_INT_EQ(c.state_expiry_days, 7);
	ASSERT_INT_EQ(config_validate(&c, stderr), 0);
	config_free(&c);
}

/* etc/vspcd.conf.example parses and sets exactly the defaults. */
static void
test_example_is_defaults(void)
{
	struct config c, d;
	struct errbuf e;
	int i;

	config_defaults(&c);
	ASSERT_INT_EQ(config_load_file(&c, "etc/vspcd.conf.example",
	    err_open(&e)), 0);
	ASSERT_STR_EQ(err_text(&e), "");
	err_free(&e);
	config_defaults(&d);
	ASSERT_STR_EQ(c.state_dir, d.state_dir);
	ASSERT_INT_EQ(c.n_vm_listen, d.n_vm_listen);
	for (i = 0; i < c.n_vm_listen; i++)
		ASSERT_STR_EQ(c.vm_listen[i], d.vm_listen[i]);
	ASSERT_STR_EQ(c.client_listen, d.client_listen);
	ASSERT_STR_EQ(c.client_bind, d.client_bind);
	ASSERT_STR_EQ(c.unix_listen, d.unix_listen);
	ASSERT_STR_EQ(c.admin_listen, d.admin_listen);
	ASSERT_INT_EQ(c.n_service_uri, d.n_service_uri);
	for (i = 0; i < c.n_service_uri; i++)
		ASSERT_STR_EQ(c.service_uri[i], d.service_uri[i]);
	ASSERT_STR_EQ(c.log_timestamp_format, d.log_timestamp_format);
	ASSERT_TRUE(c.log_dir == NULL);
	ASSERT_TRUE(same_scalars(&c, &d));
	config_free(&c);
	config_free(&d);
}

/* Lists: scalar, sequence, empty, too long, bad items. */
static void
test_list_forms(void)
{
	struct config c;
	struct errbuf e;

	/* A scalar is a list of one; a list replaces the default. */
	ASSERT_INT_EQ(load(&c, &e, "list1.yaml",
	    "vm-listen: 127.0.0.1:9\n"
	    "service-uri:\n"
	    "  - x\n"
	    "  - y\n"), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.n_vm_listen, 1);
	ASSERT_STR_EQ(c.vm_listen[0], "127.0.0.1:9");
	ASSERT_INT_EQ(c.n_service_uri, 2);
	ASSERT_STR_EQ(c.service_uri[1], "y");
	config_free(&c);

	/* An empty list parses, and fails validation. */
	ASSERT_INT_EQ(load(&c, &e, "list2.yaml", "vm-listen: []\n"), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.n_vm_listen, 0);
	ASSERT_INT_EQ(config_validate(&c, err_open(&e)), 1);
	ASSERT_TRUE(err_has(&e, "vspcd: at least one vm-listen or vm-listen-tls is needed"));
	err_free(&e);
	config_free(&c);

	/* Too many items; a mapping item; a mapping for the list. */
	ASSERT_INT_EQ(load(&c, &e, "list3.yaml",
	    "service-uri: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,"
	    "x,y,z,1,2,3,4,5,6,7]\n"
	    "vm-listen:\n"
	    "  - {a: b}\n"
	    "  - nocolon\n"
	    "  - 1.2.3.4:5\n"), 3);
	ASSERT_TRUE(err_has(&e, "list3.yaml:1: too many service-uri\n"));
	ASSERT_TRUE(err_has(&e, "list3.yaml:3: vm-listen: list items must "
	    "be strings\n"));
	ASSERT_TRUE(err_has(&e, "list3.yaml:4: vm-listen 'nocolon' wants "
	    "ADDR:PORT\n"));
	err_free(&e);
	ASSERT_INT_EQ(c.n_service_uri, VSPCD_MAX_URIS);
	ASSERT_INT_EQ(c.n_vm_listen, 1);
	ASSERT_STR_EQ(c.vm_listen[0], "1.2.3.4:5");
	config_free(&c);

	ASSERT_INT_EQ(load(&c, &e, "list4.yaml", "vm-listen: {a: b}\n"), 1);
	ASSERT_TRUE(err_has(&e, ":1: vm-listen wants a string or a list of "
	    "strings\n"));
	err_free(&e);
	config_free(&c);
}

/* Flags override the file; list flags replace the file's list. */
static void
test_flags_override_file(void)
{
	struct config c;
	struct errbuf e;
	const char *path;

	path = write_file("over.yaml",
	    "vm-listen: [127.0.0.1:1, 127.0.0.1:2]\n"
	    "service-uri: fromfile\n"
	    "port-expiry: 100\n"
	    "ident-timeout: 20\n"
	    "verbose: 3\n"
	    "log-timestamps: true\n"
	    "replay-telnet: true\n"
	    "client-queue: 64K\n");
	ASSERT_INT_EQ(build(&c, &e, "--port-expiry", "200", "-f", path,
	    "--vm-listen", "127.0.0.1:3", "--vm-listen=127.0.0.1:4",
	    "--no-log-timestamps", "--no-replay-telnet", "-v",
	    "--client-queue", "1M", NULL), 0);
	ASSERT_STR_EQ(err_text(&e), "");
	err_free(&e);
	ASSERT_STR_EQ(c.config_file, path);
	ASSERT_INT_EQ(c.port_expiry, 200);		/* flag */
	ASSERT_INT_EQ(c.ident_timeout, 20);		/* file */
	ASSERT_INT_EQ(c.verbose, 1);			/* -v replaces */
	ASSERT_INT_EQ(c.n_vm_listen, 2);		/* flags replace */
	ASSERT_STR_EQ(c.vm_listen[0], "127.0.0.1:3");
	ASSERT_STR_EQ(c.vm_listen[1], "127.0.0.1:4");
	ASSERT_INT_EQ(c.n_service_uri, 1);
	ASSERT_STR_EQ(c.service_uri[0], "fromfile");
	ASSERT_INT_EQ(c.log_timestamps, 0);
	ASSERT_INT_EQ(c.replay_telnet, 0);
	ASSERT_SIZE_EQ(c.client_queue, 1024 * 1024);
	ASSERT_INT_EQ(c.check_only, 0);
	config_free(&c);

	/* Rebuilt on a fresh struct with the same argv: the same result. */
	ASSERT_INT_EQ(build(&c, &e, "-n", "--config", path, "-vv", NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.check_only, 1);
	ASSERT_INT_EQ(c.verbose, 2);
	ASSERT_INT_EQ(c.n_vm_listen, 2);
	ASSERT_STR_EQ(c.vm_listen[1], "127.0.0.1:2");
	config_free(&c);
}

/* Every flag form: --x, --no-x, off, 0, 0-0, repeats. */
static void
test_flag_forms(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(build(&c, &e, "-d", "--log-timestamps",
	    "--replay-telnet", "--port-range", "off", "--client-listen",
	    "off", "--admin-listen", "off", "--log-dir", "off",
	    "--state-dir", "/x", "--service-uri", "a", "--service-uri", "b",
	    "--log-timestamp-format", "%T ", "--replay-size", "1k",
	    "--log-max-size", "0", "--log-keep", "9", "--log-sync-ms", "10",
	    "--state-expiry-days", "365", "--vmotion-hold-max", "4096",
	    NULL), 0);
	ASSERT_STR_EQ(err_text(&e), "");
	err_free(&e);
	ASSERT_INT_EQ(c.foreground, 1);
	ASSERT_INT_EQ(c.log_timestamps, 1);
	ASSERT_INT_EQ(c.replay_telnet, 1);
	ASSERT_INT_EQ(c.port_lo, -1);
	ASSERT_TRUE(c.client_listen == NULL);
	ASSERT_TRUE(c.admin_listen == NULL);
	ASSERT_TRUE(c.log_dir == NULL);
	ASSERT_INT_EQ(c.log_enabled, 0);
	ASSERT_STR_EQ(c.state_dir, "/x");
	ASSERT_INT_EQ(c.n_service_uri, 2);
	ASSERT_STR_EQ(c.service_uri[1], "b");
	ASSERT_STR_EQ(c.log_timestamp_format, "%T ");
	ASSERT_SIZE_EQ(c.replay_size, 1024);
	ASSERT_SIZE_EQ(c.log_max_size, 0);
	ASSERT_INT_EQ(c.log_keep, 9);
	ASSERT_INT_EQ(c.log_sync_ms, 10);
	ASSERT_INT_EQ(c.state_expiry_days, 365);
	ASSERT_SIZE_EQ(c.vmotion_hold_max, 4096);
	config_free(&c);

	/* --no-x after --x, --x after --no-x; 0 and 0-0 port ranges. */
	ASSERT_INT_EQ(build(&c, &e, "--foreground", "--no-foreground",
	    "--no-log-timestamps", "--log-timestamps", "--port-range", "0",
	    "--log-dir", "/l", NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.foreground, 0);
	ASSERT_INT_EQ(c.log_timestamps, 1);
	ASSERT_INT_EQ(c.port_lo, 0);
	ASSERT_INT_EQ(c.port_hi, 0);
	ASSERT_STR_EQ(c.log_dir, "/l");
	ASSERT_INT_EQ(c.log_enabled, 1);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--port-range", "0-0", NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.port_lo, 0);
	ASSERT_INT_EQ(c.port_hi, 0);
	config_free(&c);
}

/* Bad flags give the old messages, every one of them. */
static void
test_flag_errors(void)
{
	struct config c;
	struct errbuf e;

	/* The messages of the old parse_args, all of them at once. */
	ASSERT_INT_EQ(build(&c, &e, "--port-expiry", "0", "--ident-timeout",
	    "x", "--client-queue", "100", "--port-range", "5", NULL), 4);
	ASSERT_TRUE(err_has(&e, "vspcd: --port-expiry '0' is too small\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --ident-timeout 'x' is invalid\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --client-queue '100' is too small\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --port-range wants LO-HI, 0 or "
	    "off\n"));
	ASSERT_INT_EQ(err_lines(&e), 4);
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--port-range", "6000-5000", NULL), 1);
	ASSERT_STR_EQ(err_text(&e), "vspcd: port range end '5000' is too "
	    "small\n");
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--port-range", "0-10", NULL), 1);
	ASSERT_STR_EQ(err_text(&e), "vspcd: port range start '0' is too "
	    "small\n");
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--vmotion-drain-ms", "600001",
	    "--client-queue", "2G", "--replay-size", "12X", NULL), 3);
	ASSERT_TRUE(err_has(&e, "vspcd: --vmotion-drain-ms '600001' is too "
	    "large\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --client-queue '2G' is too large\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --replay-size '12X' is invalid\n"));
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--vm-listen", "a:1", "--vm-listen", "b:2",
	    "--vm-listen", "c:3", "--vm-listen", "d:4", "--vm-listen", "e:5",
	    "--vm-listen", "f:6", "--vm-listen", "g:7", "--vm-listen", "h:8",
	    "--vm-listen", "i:9", "--vm-listen", "j:10", "--vm-listen", "k:11",
	    "--vm-listen", "l:12", "--vm-listen", "m:13", "--vm-listen", "n:14",
	    "--vm-listen", "o:15", "--vm-listen", "p:16", "--vm-listen", "q:17",
	    NULL), 1);
	ASSERT_STR_EQ(err_text(&e), "vspcd: too many --vm-listen\n");
	err_free(&e);
	ASSERT_INT_EQ(c.n_vm_listen, VSPCD_MAX_VM_LISTEN);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--client-listen", "nowhere",
	    "--log-max-size", "100", "--log-timestamp-format", "", NULL), 3);
	ASSERT_TRUE(err_has(&e, "vspcd: --client-listen 'nowhere' wants "
	    "ADDR:PORT or off\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: log-max-size 100 is too small"));
	ASSERT_TRUE(err_has(&e, "vspcd: log-timestamp-format is empty\n"));
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "-f", "/nonexistent/vspcd.conf", NULL), 1);
	ASSERT_STR_EQ(err_text(&e), "vspcd: /nonexistent/vspcd.conf: No such "
	    "file or directory\n");
	err_free(&e);
	config_free(&c);
}

/* Sizes: plain bytes, K, M, G in either case; junk refused. */
static void
test_size_suffixes(void)
{
	static const struct {
		const char	*text;
		size_t		 want;
	} ok[] = {
		{ "0", 0 }, { "4096", 4096 }, { "1k", 1024 }, { "64K", 65536 },
		{ "3M", 3 << 20 }, { "1g", 1 << 30 }, { "1G", 1 << 30 },
	};
	static const char *bad[] = {
		"", "K", "1KB", "1.5M", "-1", " 1", "1 K", "2G", "1T",
		"99999999999999999999999",
	};
	struct config c;
	struct errbuf e;
	size_t i;

	for (i = 0; i < nitems(ok); i++) {
		ASSERT_INT_EQ(build(&c, &e, "--replay-size", ok[i].text,
		    NULL), 0);
		err_free(&e);
		ASSERT_SIZE_EQ(c.replay_size, ok[i].want);
		config_free(&c);
	}
	for (i = 0; i < nitems(bad); i++) {
		ASSERT_INT_EQ(build(&c, &e, "--replay-size", bad[i], NULL), 1);
		ASSERT_TRUE(err_has(&e, "vspcd: --replay-size '"));
		err_free(&e);
		ASSERT_SIZE_EQ(c.replay_size, 65536);
		config_free(&c);
	}
}

/* An unknown key is reported at its line. */
static void
test_unknown_key_line(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "unknown.yaml",
	    "# comment\n"
	    "port-expiry: 60\n"
	    "no-such-key: 1\n"), 1);
	ASSERT_TRUE(err_has(&e, "/unknown.yaml:3: unknown key "
	    "'no-such-key'\n"));
	err_free(&e);
	ASSERT_INT_EQ(c.port_expiry, 60);
	config_free(&c);
}

/* A bad integer is reported at its line; the rest applies. */
static void
test_bad_int_line(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "badint.yaml",
	    "state-dir: /tmp\n"
	    "\n"
	    "# the next key is fine\n"
	    "log-keep: 3\n"
	    "ident-timeout: ten\n"), 1);
	ASSERT_TRUE(err_has(&e, "/badint.yaml:5: ident-timeout 'ten' is "
	    "invalid\n"));
	ASSERT_INT_EQ(err_lines(&e), 1);
	err_free(&e);
	ASSERT_INT_EQ(c.ident_timeout, 10);
	ASSERT_INT_EQ(c.log_keep, 3);
	config_free(&c);
}

/* Type errors, one per line, each at its line. */
static void
test_type_errors(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "types.yaml",
	    "port-expiry: [1, 2]\n"			/* 1 */
	    "foreground: maybe\n"			/* 2 */
	    "state-dir:\n"				/* 3 */
	    "log-keep: ~\n"				/* 4 */
	    "client-queue: {a: 1}\n"			/* 5 */
	    "port-range: 9-8\n"				/* 6 */
	    "config: /etc/other.conf\n"			/* 7 */
	    "[a]: 1\n"					/* 8 */
	    "admin-listen: \"x\\0y:1\"\n"		/* 9 */
	    "verbose: 10\n"), 10);			/* 10 */
	ASSERT_TRUE(err_has(&e, ":1: port-expiry wants a single value, not a "
	    "list\n"));
	ASSERT_TRUE(err_has(&e, ":2: foreground 'maybe' is not a boolean"));
	ASSERT_TRUE(err_has(&e, ":3: state-dir: missing value\n"));
	ASSERT_TRUE(err_has(&e, ":4: log-keep: missing value\n"));
	ASSERT_TRUE(err_has(&e, ":5: client-queue wants a single value, not "
	    "a mapping\n"));
	ASSERT_TRUE(err_has(&e, ":6: port range end '8' is too small\n"));
	ASSERT_TRUE(err_has(&e, ":7: 'config' is only valid on the command "
	    "line\n"));
	ASSERT_TRUE(err_has(&e, ":8: key is not a string\n"));
	ASSERT_TRUE(err_has(&e, ":9: admin-listen: value contains a NUL "
	    "byte\n"));
	ASSERT_TRUE(err_has(&e, ":10: verbose '10' is too large\n"));
	ASSERT_INT_EQ(err_lines(&e), 10);
	err_free(&e);
	config_free(&c);
}

/* A repeated key is an error; the first value stays. */
static void
test_duplicate_key(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "dup.yaml",
	    "log-keep: 1\n"
	    "vm-listen: 1.1.1.1:1\n"
	    "log-keep: 2\n"
	    "vm-listen: [2.2.2.2:2]\n"), 2);
	ASSERT_TRUE(err_has(&e, "/dup.yaml:3: duplicate key 'log-keep' (first "
	    "at line 1)\n"));
	ASSERT_TRUE(err_has(&e, "/dup.yaml:4: duplicate key 'vm-listen' "
	    "(first at line 2)\n"));
	err_free(&e);
	ASSERT_INT_EQ(c.log_keep, 1);
	ASSERT_STR_EQ(c.vm_listen[0], "1.1.1.1:1");
	config_free(&c);
}

/* The top level must be one mapping; empty files are fine. */
static void
test_not_a_mapping(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "seq.yaml",
	    "# a list, not a mapping\n"
	    "- port-expiry: 1\n"), 1);
	ASSERT_TRUE(err_has(&e, "/seq.yaml:2: top level must be a mapping"));
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(load(&c, &e, "scalar.yaml", "just words\n"), 1);
	ASSERT_TRUE(err_has(&e, "/scalar.yaml:1: top level must be a "
	    "mapping"));
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(load(&c, &e, "twodocs.yaml",
	    "log-keep: 1\n"
	    "---\n"
	    "log-keep: 2\n"), 1);
	ASSERT_TRUE(err_has(&e, "/twodocs.yaml:3: only one YAML document"));
	err_free(&e);
	ASSERT_INT_EQ(c.log_keep, 1);
	config_free(&c);

	/* Empty and comment-only files set nothing. */
	ASSERT_INT_EQ(load(&c, &e, "empty.yaml", ""), 0);
	err_free(&e);
	config_free(&c);
	ASSERT_INT_EQ(load(&c, &e, "comments.yaml", "# nothing\n\n"), 0);
	err_free(&e);
	config_free(&c);
}

/* YAML syntax errors give one error with a line. */
static void
test_syntax_error(void)
{
	struct config c;
	struct errbuf e;

	ASSERT_INT_EQ(load(&c, &e, "syntax.yaml",
	    "log-keep: 1\n"
	    "vm-listen: [1.2.3.4:5\n"
	    "log-sync-ms: 2\n"), 1);
	ASSERT_TRUE(err_has(&e, "/syntax.yaml:"));
	ASSERT_TRUE(err_has(&e, ": YAML syntax error: "));
	ASSERT_INT_EQ(err_lines(&e), 1);
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(load(&c, &e, "indent.yaml",
	    "log-keep: 1\n"
	    "log-sync-ms: 2\n"
	    "  bad: indent\n"), 1);
	ASSERT_TRUE(err_has(&e, "/indent.yaml:3: YAML syntax error: "));
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(load(&c, &e, "tab.yaml",
	    "log-keep: 1\n"
	    "\tlog-sync-ms: 2\n"), 1);
	ASSERT_TRUE(err_has(&e, "/tab.yaml:2: YAML syntax error: "));
	err_free(&e);
	config_free(&c);

	ASSERT_INT_EQ(load(&c, &e, "utf8.yaml",
	    "log-keep: 1\n"
	    "state-dir: /\xff\n"), 1);
	ASSERT_TRUE(err_has(&e, "/utf8.yaml:2: YAML syntax error: "));
	err_free(&e);
	config_free(&c);
}

/* File, flag and validation errors are all reported. */
static void
test_all_errors_reported(void)
{
	struct config c;
	struct errbuf e;
	const char *path;

	path = write_file("many.yaml",
	    "bogus: 1\n"				/* 1 */
	    "port-expiry: -5\n"				/* 2 */
	    "vm-listen: [127.0.0.1:1, nope]\n"		/* 3 */
	    "replay-size: lots\n"			/* 4 */
	    "bogus: 2\n"				/* 5 */
	    "log-keep: 1\n"				/* 6 */
	    "log-keep: 2\n"				/* 7 */
	    "service-uri: []\n");			/* 8 */
	ASSERT_INT_EQ(build(&c, &e, "-f", path, "--ident-timeout", "0",
	    NULL), 8);
	ASSERT_TRUE(err_has(&e, ":1: unknown key 'bogus'\n"));
	ASSERT_TRUE(err_has(&e, ":2: port-expiry '-5' is too small\n"));
	ASSERT_TRUE(err_has(&e, ":3: vm-listen 'nope' wants ADDR:PORT\n"));
	ASSERT_TRUE(err_has(&e, ":4: replay-size 'lots' is invalid\n"));
	ASSERT_TRUE(err_has(&e, ":5: unknown key 'bogus'\n"));
	ASSERT_TRUE(err_has(&e, ":7: duplicate key 'log-keep'"));
	ASSERT_TRUE(err_has(&e, "vspcd: --ident-timeout '0' is too small\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: at least one service-uri is needed\n"));
	ASSERT_INT_EQ(err_lines(&e), 8);
	err_free(&e);
	config_free(&c);
}

/* config_validate checks a struct filled by hand. */
static void
test_validate(void)
{
	struct config c;
	struct errbuf e;

	config_defaults(&c);
	c.port_lo = 7000;
	c.port_hi = 6000;
	c.ident_timeout = 0;
	c.client_queue = 1;
	c.log_keep = -1;
	free(c.log_timestamp_format);
	c.log_timestamp_format = NULL;
	ASSERT_INT_EQ(config_validate(&c, err_open(&e)), 5);
	ASSERT_TRUE(err_has(&e, "vspcd: port-range 7000-6000 is not LO-HI"));
	ASSERT_TRUE(err_has(&e, "vspcd: ident-timeout 0 is out of range "
	    "(1 to 3600)\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: client-queue 1 is out of range"));
	ASSERT_TRUE(err_has(&e, "vspcd: log-keep -1 is out of range"));
	ASSERT_TRUE(err_has(&e, "vspcd: log-timestamp-format is empty\n"));
	err_free(&e);
	ASSERT_INT_EQ(config_validate(&c, NULL), 5);
	config_free(&c);
}

/* verbose: N in the file; -v on the command line replaces it. */
static void
test_verbose(void)
{
	struct config c;
	struct errbuf e;
	const char *path;

	path = write_file("verbose.yaml", "verbose: 4\n");
	ASSERT_INT_EQ(build(&c, &e, "-f", path, NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.verbose, 4);
	config_free(&c);
	ASSERT_INT_EQ(build(&c, &e, "-f", path, "--verbose", "-v", NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.verbose, 2);
	config_free(&c);
}

/* sharing, audit-log and tokens: file and flags; access is file-only. */
static void
test_authz_keys(void)
{
	struct config c;
	struct errbuf e;
	const char *path, *spath;

	path = write_file("authz.yaml",
	    "sharing: single-writer\n"
	    "audit-log: /tmp/x/audit.log\n"
	    "tokens: ci:0123456789abcdef0123456789abcdef"
	    "0123456789ABCDEF0123456789abcdef\n"
	    "access:\n"
	    "  - {who: any, consoles: '*', rights: read}\n");
	ASSERT_INT_EQ(build(&c, &e, "-f", path, NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.sharing, SHARING_SINGLE_WRITER);
	ASSERT_STR_EQ(c.audit_log, "/tmp/x/audit.log");
	ASSERT_INT_EQ(c.audit_enabled, 1);
	ASSERT_INT_EQ(c.n_tokens, 1);
	ASSERT_INT_EQ(c.access_set, 1);
	ASSERT_INT_EQ(c.n_access, 1);
	config_free(&c);

	/* sharing-rules is file-only; client-listen-ro is a listener. */
	spath = write_file("share.yaml",
	    "client-listen-ro: 127.0.0.1:0\n"
	    "sharing-rules:\n"
	    "  - {consoles: [a, b], mode: single-writer}\n");
	ASSERT_INT_EQ(build(&c, &e, "-f", spath, NULL), 0);
	err_free(&e);
	ASSERT_STR_EQ(c.client_listen_ro, "127.0.0.1:0");
	ASSERT_INT_EQ(c.n_sharing_rules, 1);
	ASSERT_INT_EQ(c.sharing_rules[0].mode, SHARING_SINGLE_WRITER);
	ASSERT_INT_EQ(c.sharing_rules[0].n_consoles, 2);
	ASSERT_STR_EQ(c.sharing_rules[0].consoles[1].pattern, "b");
	config_free(&c);
	ASSERT_INT_EQ(build(&c, &e, "--client-listen-ro", "nowhere", NULL),
	    1);
	ASSERT_TRUE(err_has(&e, "vspcd: --client-listen-ro 'nowhere' wants "
	    "ADDR:PORT or off\n"));
	err_free(&e);
	config_free(&c);
	config_defaults(&c);
	ASSERT_TRUE(c.client_listen_ro == NULL);
	ASSERT_INT_EQ(c.n_sharing_rules, 0);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "-f", path, "--sharing", "shared",
	    "--audit-log", "off", NULL), 0);
	err_free(&e);
	ASSERT_INT_EQ(c.sharing, SHARING_SHARED);
	ASSERT_TRUE(c.audit_log == NULL);
	ASSERT_INT_EQ(c.audit_enabled, 0);
	ASSERT_INT_EQ(c.n_access, 1);
	config_free(&c);

	ASSERT_INT_EQ(build(&c, &e, "--sharing", "exclusive", "--audit-log",
	    "", "--tokens", "nope", NULL), 3);
	ASSERT_TRUE(err_has(&e, "vspcd: --sharing 'exclusive' is not one of "
	    "shared|single-writer\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --audit-log is empty (use off for "
	    "none)\n"));
	ASSERT_TRUE(err_has(&e, "vspcd: --tokens: an item is not "
	    "NAME:SHA256HEX"));
	ASSERT_TRUE(!err_has(&e, "nope"));
	err_free(&e);
	config_free(&c);
}

/* Run every test in a fresh temporary directory. */
int
main(void)
{
	size_t i;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	T_RUN(test_defaults);
	T_RUN(test_no_args);
	T_RUN(test_good_file);
	T_RUN(test_example_is_defaults);
	T_RUN(test_list_forms);
	T_RUN(test_flags_override_file);
	T_RUN(test_flag_forms);
	T_RUN(test_flag_errors);
	T_RUN(test_size_suffixes);
	T_RUN(test_unknown_key_line);
	T_RUN(test_bad_int_line);
	T_RUN(test_type_errors);
	T_RUN(test_duplicate_key);
	T_RUN(test_not_a_mapping);
	T_RUN(test_syntax_error);
	T_RUN(test_all_errors_reported);
	T_RUN(test_validate);
	T_RUN(test_verbose);
	T_RUN(test_authz_keys);
	for (i = 0; i < nfiles; i++) {
		unlink(files[i]);
		free(files[i]);
	}
	rmdir(tmpdir);
	return (t_summary());
}
