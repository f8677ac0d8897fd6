/*
 * vspc: command-line client for vspcd.
 *
 * "list" asks the admin API for the port table over a minimal HTTP/1.1
 * GET; "attach" joins the terminal to a console through the front door
 * (by default with "/replay NAME", so the last screens come first),
 * decoding the server's stream with the proto telnet codec. The relay is a
 * plain poll() loop over the socket and stdin. A terminal on stdin is put in
 * raw mode and restored on every exit path (atexit and the signal handler).
 * "log" prints the tail of a console log from the admin API, or with -f
 * follows the console read-only: a front-door attach with replay that
 * never reads stdin and never sends console input.
 *
 * Escape menu (recognised anywhere in the input; the escape character is
 * Ctrl-] unless -e says otherwise, -e none turns it off): ESC . detaches,
 * ESC r goes read-only, ESC w read-write, ESC f forces (takes the line of a
 * single-writer console), ESC u shows who is attached, ESC p replays the
 * recent output, ESC ? or ESC h prints help, ESC ESC sends one ESC; ESC
 * followed by anything else sends both bytes. r, w, f, u and p travel as
 * subnegotiations of the private telnet option TELOPT_VSPC, which vspc
 * offers (WILL) once attached; vspcd answers in-band ("[vspcd: ...]").
 *
 * "who" and "kick" use the Unix-socket front door when there is one (the
 * daemon knows us by uid there: "/who [NAME]", "/kick ID"), else the admin
 * API with the bearer token in $VSPC_TOKEN.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "compat.h"
#include "telnet.h"
#include "xmalloc.h"

#ifndef VSPC_VERSION
#define VSPC_VERSION "unknown"
#endif

#define VSPC_DEFAULT_STATE_DIR	"/var/lib/vspcd"
#define VSPC_DEFAULT_HOST	"127.0.0.1"
#define VSPC_DEFAULT_CLIENT	13371
#define VSPC_DEFAULT_ADMIN	13372

#define VSPC_LOG_TAIL_MAX	(16 * 1024 * 1024)
#define VSPC_LOG_TAIL_DEFAULT	65536
#define VSPC_HTTP_MAX		(VSPC_LOG_TAIL_MAX + 65536)
#define VSPC_IO_TIMEOUT_MS	10000	/* connect, HTTP, front-door dialogue */
#define VSPC_ESCAPE		0x1d	/* Ctrl-] */
#define VSPC_PROMPT		"console (name, uuid or id): "
#define VSPC_LINE_MAX		4096
#define VSPC_OUTQ_HIGH		(64 * 1024)

/* A growable byte buffer with a read offset. */
struct buf {
	uint8_t *data;
	size_t off;
	size_t len;
	size_t cap;
};

/* Where a listener is. */
struct endpoint {
	char host[256];
	char port[8];
	char unix_path[108];	/* set: a Unix socket instead of TCP */
};

/* Attach phases. */
enum attach_phase {
	ATTACH_PROMPT,		/* waiting for the prompt */
	ATTACH_REPLY,		/* name sent, waiting for attached/error */
	ATTACH_RELAY,		/* attached: console bytes to stdout */
	ATTACH_FAILED,		/* error line seen */
};

/* State of one attach session. */
struct attach {
	struct telnet tn;
	int fd;
	const char *name;
	char sendline[VSPC_LINE_MAX];	/* the line answering the prompt */
	bool follow;		/* vspc log -f: read-only, quiet */
	enum attach_phase phase;
	struct buf out;		/* to the server, already telnet-encoded */
	char line[VSPC_LINE_MAX];
	size_t line_len;
	bool escape;		/* escape seen, waiting for the next byte */
	int esc_char;		/* the escape character; -1: none */
	bool stdout_error;
	bool is_tty;		/* stdin is a terminal: raw mode in relay */
};

static struct termios saved_tio;
static bool tio_saved;
static volatile sig_atomic_t got_signal;

static __dead void usage(FILE *);
static __dead void die(const char *, ...) printflike(1, 2);
static __dead void log_ambiguous(const char *, const char *, size_t);

/* Print the usage text and exit. */
static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: vspc [--state-dir DIR] [--admin HOST:PORT] "
	    "[--client HOST:PORT] COMMAND ...\n"
	    "       vspc list [--json]     list the consoles\n"
	    "       vspc attach [--no-replay] [--ro] [-e CHAR|none] NAME\n"
	    "                              attach to a console (name, uuid "
	    "or id); recent\n"
	    "                              output is replayed first unless "
	    "--no-replay;\n"
	    "                              --ro: read-only (nothing typed is "
	    "sent)\n"
	    "       vspc who [--json] [NAME]\n"
	    "                              who is attached (to NAME): id, "
	    "identity, mode\n"
	    "       vspc kick ID           close client ID (needs the admin "
	    "right)\n"
	    "       vspc log [--tail-bytes N] [-f] NAME\n"
	    "                              print the last N bytes of the "
	    "console log\n"
	    "                              (default %d); -f: replay, then "
	    "follow the\n"
	    "                              console read-only until "
	    "interrupted\n"
	    "       vspc --help | --version\n"
	    "\n"
	    "Endpoints come from --admin/--client, else from "
	    "STATE_DIR/listeners.json\n"
	    "(state dir: --state-dir, $VSPC_STATE_DIR, default "
	    VSPC_DEFAULT_STATE_DIR "),\n"
	    "else 127.0.0.1:%d (admin) and 127.0.0.1:%d (client).\n"
	    "who and kick use the Unix socket when vspcd has one (you are "
	    "known by uid),\n"
	    "else the admin API with the bearer token in $VSPC_TOKEN.\n"
	    "\n"
	    "While attached, the escape character (Ctrl-], -e to change) then:"
	    "\n"
	    "  .  detach                 r  read-only      w  read-write\n"
	    "  f  force: take the line of a single-writer console\n"
	    "  u  who is attached        p  replay recent output\n"
	    "  ?  help (also h)          the escape character again sends it"
	    "\n", VSPC_LOG_TAIL_DEFAULT, VSPC_DEFAULT_ADMIN,
	    VSPC_DEFAULT_CLIENT);
	exit(f == stdout ? 0 : 1);
}

/* Print "vspc: message" to stderr and exit 1. */
static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("vspc: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Append len bytes to a buffer, compacting or growing it. */
static void
buf_add(struct buf *b, const void *data, size_t len)
{
	size_t ncap;

	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + len > b->cap && b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + len > b->cap) {
		ncap = b->cap == 0 ? 4096 : b->cap;
		while (ncap < b->len + len)
			ncap *= 2;
		b->data = xrealloc(b->data, ncap);
		b->cap = ncap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

/* Bytes waiting in a buffer. */
static size_t
buf_used(const struct buf *b)
{
	return (b->len - b->off);
}

/* Milliseconds on the monotonic clock. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Milliseconds left until deadline, at least 0. */
static int
ms_left(int64_t deadline)
{
	int64_t left;

	left = deadline - now_ms();
	if (left < 0)
		return (0);
	return (left > INT32_MAX ? INT32_MAX : (int)left);
}

/* Parse HOST:PORT or [V6]:PORT into ep; false if malformed. */
static bool
endpoint_parse(const char *s, struct endpoint *ep)
{
	const char *colon, *host, *errstr;
	size_t hlen;

	if (s[0] == '/')	/* a Unix socket path */
		return (strlcpy(ep->unix_path, s, sizeof ep->unix_path) <
		    sizeof ep->unix_path);

	colon = strrchr(s, ':');
	if (colon == NULL || colon == s)
		return (false);
	host = s;
	hlen = colon - s;
	if (host[0] == '[') {
		if (hlen < 3 || host[hlen - 1] != ']')
			return (false);
		host++;
		hlen -= 2;
	}
	if (hlen >= sizeof ep->host)
		return (false);
	memcpy(ep->host, host, hlen);
	ep->host[hlen] = '\0';
	strtonum(colon + 1, 1, 65535, &errstr);
	if (errstr != NULL)
		return (false);
	strlcpy(ep->port, colon + 1, sizeof ep->port);
	return (true);
}

/* Set an endpoint to host and a numeric port. */
static void
endpoint_set(struct endpoint *ep, const char *host, long long port)
{
	strlcpy(ep->host, host, sizeof ep->host);
	snprintf(ep->port, sizeof ep->port, "%lld", port);
	ep->unix_path[0] = '\0';
}

/* Format an endpoint for messages (static buffer). */
static const char *
endpoint_str(const struct endpoint *ep)
{
	static char s[300];

	if (ep->unix_path[0] != '\0')
		return (ep->unix_path);
	if (strchr(ep->host, ':') != NULL)
		snprintf(s, sizeof s, "[%s]:%s", ep->host, ep->port);
	else
		snprintf(s, sizeof s, "%s:%s", ep->host, ep->port);
	return (s);
}

/*
 * Find the endpoints: options win, else STATE_DIR/listeners.json, else the
 * defaults (only when that file does not exist: an unreadable one is fatal,
 * never a silent fall-back to another door with another identity). A
 * listener the daemon reports as off is fatal when wanted.
 */
static void
endpoints_resolve(const char *state_dir, const char *admin_opt,
    const char *client_opt, bool want_admin, struct endpoint *admin,
    struct endpoint *client)
{
	char path[4096];
	json_t *root, *v;
	json_error_t jerr;

	endpoint_set(admin, VSPC_DEFAULT_HOST, VSPC_DEFAULT_ADMIN);
	endpoint_set(client, VSPC_DEFAULT_HOST, VSPC_DEFAULT_CLIENT);
	if (admin_opt != NULL && !endpoint_parse(admin_opt, admin))
		die("bad --admin address: %s (want HOST:PORT)", admin_opt);
	if (client_opt != NULL && !endpoint_parse(client_opt, client))
		die("bad --client address: %s (want HOST:PORT)", client_opt);
	if ((want_admin && admin_opt != NULL) ||
	    (!want_admin && client_opt != NULL))
		return;

	if (state_dir == NULL)
		state_dir = getenv("VSPC_STATE_DIR");
	if (state_dir == NULL || *state_dir == '\0')
		state_dir = VSPC_DEFAULT_STATE_DIR;
	if ((size_t)snprintf(path, sizeof path, "%s/listeners.json",
	    state_dir) >= sizeof path)
		die("state dir path too long");
	root = json_load_file(path, 0, &jerr);
	if (root == NULL) {
		if (access(path, F_OK) == 0 || errno != ENOENT)
			die("%s: %s", path, jerr.text);
		return;		/* no daemon state: defaults */
	}
	if (!json_is_object(root))
		die("%s: not a JSON object", path);
	if (want_admin && admin_opt == NULL) {
		v = json_object_get(root, "admin");
		if (json_is_integer(v) && json_integer_value(v) > 0 &&
		    json_integer_value(v) <= 65535)
			endpoint_set(admin, VSPC_DEFAULT_HOST,
			    json_integer_value(v));
		else if (json_is_null(v))
			die("the admin API of vspcd is off (%s)", path);
	}
	if (!want_admin && client_opt == NULL &&
	    json_is_string(v = json_object_get(root, "unix")) &&
	    strlcpy(client->unix_path, json_string_value(v),
	    sizeof client->unix_path) < sizeof client->unix_path) {
		/* The Unix socket identifies us by uid: prefer it. */
		json_decref(root);
		return;
	}
	client->unix_path[0] = '\0';
	if (!want_admin && client_opt == NULL) {
		v = json_object_get(root, "client");
		if (json_is_integer(v) && json_integer_value(v) > 0 &&
		    json_integer_value(v) <= 65535)
			endpoint_set(client, VSPC_DEFAULT_HOST,
			    json_integer_value(v));
		else if (json_is_null(v))
			die("the front door of vspcd is off (%s)", path);
	}
	json_decref(root);
}

/* Connect with a timeout; returns a blocking fd, or -1 with errno set. */
static int
connect_endpoint(const struct endpoint *ep)
{
	struct addrinfo hints, *res, *ai;
	struct sockaddr_un sun;
	struct pollfd pfd;
	socklen_t sl;
	int fd, rc, err, flags, one = 1;

	if (ep->unix_path[0] != '\0') {
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		strlcpy(sun.sun_path, ep->unix_path, sizeof sun.sun_path);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
		    -1)
			return (-1);
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
			err = errno;
			close(fd);
			errno = err;
			return (-1);
		}
		return (fd);
	}

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	rc = getaddrinfo(ep->host, ep->port, &hints, &res);
	if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY) {
		hints.ai_flags = 0;
		rc = getaddrinfo(ep->host, ep->port, &hints, &res);
	}
	if (rc != 0) {
		fprintf(stderr, "vspc: %s: %s\n", endpoint_str(ep),
		    gai_strerror(rc));
		exit(1);
	}
	err = ECONNREFUSED;
	fd = -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1) {
			err = errno;
			continue;
		}
		flags = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
			if (errno != EINPROGRESS) {
				err = errno;
				close(fd);
				fd = -1;
				continue;
			}
			pfd.fd = fd;
			pfd.events = POLLOUT;
			do {
				rc = poll(&pfd, 1, VSPC_IO_TIMEOUT_MS);
			} while (rc == -1 && errno == EINTR && !got_signal);
			sl = sizeof err;
			if (rc == 0)
				err = ETIMEDOUT;
			else if (rc == -1)
				err = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
			    &sl) == -1)
				err = errno;
			if (rc <= 0 || err != 0) {
				close(fd);
				fd = -1;
				continue;
			}
		}
		fcntl(fd, F_SETFL, flags);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		break;
	}
	freeaddrinfo(res);
	if (fd == -1)
		errno = err;
	return (fd);
}

/* Connect or die with the standard message. */
static int
connect_or_die(const struct endpoint *ep)
{
	int fd;

	if ((fd = connect_endpoint(ep)) == -1)
		die("cannot reach vspcd at %s: %s", endpoint_str(ep),
		    strerror(errno));
	return (fd);
}

/* Write all of buf to a blocking fd; false on error. */
static bool
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd,
				    .events = POLLOUT };

				poll(&pfd, 1, -1);
				continue;
			}
			return (false);
		}
		p += n;
		len -= n;
	}
	return (true);
}

/* Find a header in an HTTP header block (case-insensitive); NULL if none. */
static const char *
http_header(const char *hdrs, const char *name, size_t *vlen)
{
	const char *p, *eol, *v;
	size_t nlen = strlen(name);

	for (p = strstr(hdrs, "\r\n"); p != NULL; p = eol) {
		p += 2;
		if ((eol = strstr(p, "\r\n")) == NULL)
			break;
		if ((size_t)(eol - p) > nlen && p[nlen] == ':' &&
		    strncasecmp(p, name, nlen) == 0) {
			v = p + nlen + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = eol - v;
			while (*vlen > 0 && (v[*vlen - 1] == ' ' ||
			    v[*vlen - 1] == '\t'))
				(*vlen)--;
			return (v);
		}
	}
	return (NULL);
}

/* Decode a chunked body in place; returns the length or -1 if malformed. */
static ssize_t
http_unchunk(char *body, size_t len)
{
	size_t in = 0, out = 0, n;
	char *end;

	for (;;) {
		if (in >= len)
			return (-1);
		errno = 0;
		n = strtoul(body + in, &end, 16);
		if (end == body + in || errno != 0)
			return (-1);
		end = memmem(end, len - (end - body), "\r\n", 2);
		if (end == NULL)
			return (-1);
		in = end + 2 - body;
		if (n == 0)
			return (out);
		if (n > len - in)
			return (-1);
		memmove(body + out, body + in, n);
		out += n;
		in += n;
		if (len - in < 2 || memcmp(body + in, "\r\n", 2) != 0)
			return (-1);
		in += 2;
	}
}

/*
 * GET path from ep with Connection: close, read to EOF (capped) and return
 * the body (NUL-terminated, caller frees). With status NULL anything but
 * 200 is fatal; else the status code is stored there. Dies on error.
 */
static char *
http_request_m(const struct endpoint *ep, const char *method,
    const char *path, const char *accept, int *status, size_t *bodylen)
{
	struct buf rb = { 0 };
	struct pollfd pfd;
	char req[1024], chunk[65536], *hdr_end, *body, *status_end;
	const char *v;
	int64_t deadline;
	ssize_t n;
	size_t vlen, blen, clen;
	int fd, rc, code;

	char auth[600] = "";
	const char *token;

	/* A bearer token for the API comes from the environment only. */
	if ((token = getenv("VSPC_TOKEN")) != NULL && *token != '\0' &&
	    strcspn(token, "\r\n") == strlen(token) &&
	    (size_t)snprintf(auth, sizeof auth, "Authorization: Bearer "
	    "%s\r\n", token) >= sizeof auth)
		die("VSPC_TOKEN is too long");
	fd = connect_or_die(ep);
	if ((size_t)snprintf(req, sizeof req,
	    "%s %s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "User-Agent: vspc/%s\r\n"
	    "Accept: %s\r\n"
	    "%s"
	    "Connection: close\r\n\r\n", method, path, endpoint_str(ep),
	    VSPC_VERSION,
	    accept, auth) >= sizeof req)
		die("request too long");
	if (!write_all(fd, req, strlen(req)))
		die("cannot reach vspcd at %s: %s", endpoint_str(ep),
		    strerror(errno));
	deadline = now_ms() + VSPC_IO_TIMEOUT_MS;
	for (;;) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		rc = poll(&pfd, 1, ms_left(deadline));
		if (rc == -1 && errno == EINTR && !got_signal)
			continue;
		if (rc == -1)
			die("%s: poll: %s", endpoint_str(ep), strerror(errno));
		if (rc == 0)
			die("%s: timed out waiting for the admin API",
			    endpoint_str(ep));
		n = read(fd, chunk, sizeof chunk);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			die("%s: read: %s", endpoint_str(ep), strerror(errno));
		if (n == 0)
			break;
		if (buf_used(&rb) + n > VSPC_HTTP_MAX)
			die("%s: response larger than %d bytes",
			    endpoint_str(ep), VSPC_HTTP_MAX);
		buf_add(&rb, chunk, n);
	}
	close(fd);
	buf_add(&rb, "", 1);	/* NUL-terminate */

	if (strncmp((char *)rb.data, "HTTP/1.", 7) != 0)
		die("%s: not an HTTP response", endpoint_str(ep));
	status_end = strstr((char *)rb.data, "\r\n");
	if (status_end == NULL)
		die("%s: truncated HTTP response", endpoint_str(ep));
	*status_end = '\0';
	code = 0;
	if (strlen((char *)rb.data) >= 12 && rb.data[8] == ' ')
		code = (int)strtol((char *)rb.data + 9, NULL, 10);
	if (code < 100 || code > 599 || (status == NULL && code != 200))
		die("%s%s: %s", endpoint_str(ep), path, (char *)rb.data);
	if (status != NULL)
		*status = code;
	*status_end = '\r';
	hdr_end = strstr((char *)rb.data, "\r\n\r\n");
	if (hdr_end == NULL)
		die("%s: truncated HTTP response", endpoint_str(ep));
	hdr_end[2] = '\0';	/* header block ends with one CRLF */
	body = hdr_end + 4;
	blen = rb.len - 1 - (body - (char *)rb.data);

	if ((v = http_header((char *)rb.data, "Transfer-Encoding",
	    &vlen)) != NULL && vlen == 7 && strncasecmp(v, "chunked", 7) == 0) {
		n = http_unchunk(body, blen);
		if (n < 0)
			die("%s: malformed chunked response",
			    endpoint_str(ep));
		blen = n;
	} else if ((v = http_header((char *)rb.data, "Content-Length",
	    &vlen)) != NULL) {
		clen = strtoull(v, NULL, 10);
		if (clen > blen)
			die("%s: truncated HTTP response body",
			    endpoint_str(ep));
		blen = clen;
	}
	memmove(rb.data, body, blen);
	rb.data[blen] = '\0';
	*bodylen = blen;
	return ((char *)rb.data);
}

/* GET path; see http_request_m. */
static char *
http_request(const struct endpoint *ep, const char *path, const char *accept,
    int *status, size_t *bodylen)
{
	return (http_request_m(ep, "GET", path, accept, status, bodylen));
}

/* GET path, which must answer 200 with JSON; the body (caller frees). */
static char *
http_get(const struct endpoint *ep, const char *path, size_t *bodylen)
{
	return (http_request(ep, path, "application/json", NULL, bodylen));
}

/* Percent-encode s as one path segment into dst (cap bytes); false if long. */
static bool
url_encode(char *dst, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	size_t o = 0;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (o + 4 > cap)
			return (false);
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
			dst[o++] = *p;
		else {
			dst[o++] = '%';
			dst[o++] = hex[*p >> 4];
			dst[o++] = hex[*p & 0xf];
		}
	}
	dst[o] = '\0';
	return (true);
}

/* Copy s into dst (cap bytes) with control bytes shown as '?'. */
static void
sanitize(char *dst, size_t cap, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < cap; i++)
		dst[i] = ((unsigned char)s[i] < 0x20 ||
		    (unsigned char)s[i] == 0x7f) ? '?' : s[i];
	dst[i] = '\0';
}

/* Cells of one table row. */
#define LIST_NCOLS	7
struct list_row {
	char cell[LIST_NCOLS][256];
};

/* Format an integer member as a cell ("-" if missing or null). */
static void
list_int_cell(char *dst, size_t cap, json_t *port, const char *key)
{
	json_t *v = json_object_get(port, key);

	if (json_is_integer(v))
		snprintf(dst, cap, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
	else
		strlcpy(dst, "-", cap);
}

/* Format a string member as a cell ("-" if missing). */
static void
list_str_cell(char *dst, size_t cap, json_t *port, const char *key)
{
	json_t *v = json_object_get(port, key);

	if (json_is_string(v))
		sanitize(dst, cap, json_string_value(v));
	else
		strlcpy(dst, "-", cap);
}

/* vspc list: print the port table or the raw JSON. */
static int
cmd_list(int argc, char **argv, const struct endpoint *admin)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char *heads[LIST_NCOLS] = { "ID", "NAME", "CONNECTED",
	    "PORT", "CLIENTS", "FROM-VM", "TO-VM" };
	static const bool right[LIST_NCOLS] = { false, false, false, true,
	    true, true, true };
	struct list_row *rows;
	json_t *root, *ports, *port, *v;
	json_error_t jerr;
	size_t width[LIST_NCOLS], blen, nrows, i, c, w;
	char *body;
	bool json_out = false;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json_out = true;
			break;
		case 'h':
			usage(stdout);
		default:
			usage(stderr);
		}
	}
	if (optind != argc)
		usage(stderr);

	body = http_get(admin, "/api/v1/ports", &blen);
	if (json_out) {
		fwrite(body, 1, blen, stdout);
		if (blen == 0 || body[blen - 1] != '\n')
			putchar('\n');
		free(body);
		return (fflush(stdout) == 0 ? 0 : 1);
	}
	root = json_loadb(body, blen, 0, &jerr);
	free(body);
	if (root == NULL)
		die("bad JSON from vspcd: %s (line %d)", jerr.text, jerr.line);
	ports = json_object_get(root, "ports");
	if (!json_is_array(ports))
		die("bad JSON from vspcd: no \"ports\" array");

	nrows = json_array_size(ports) + 1;
	rows = xcalloc(nrows, sizeof *rows);
	for (c = 0; c < LIST_NCOLS; c++)
		strlcpy(rows[0].cell[c], heads[c], sizeof rows[0].cell[c]);
	json_array_foreach(ports, i, port) {
		struct list_row *r = &rows[i + 1];

		list_str_cell(r->cell[0], sizeof r->cell[0], port, "id");
		list_str_cell(r->cell[1], sizeof r->cell[1], port, "vm_name");
		v = json_object_get(port, "connected");
		strlcpy(r->cell[2], json_is_true(v) ? "yes" : "no",
		    sizeof r->cell[2]);
		list_int_cell(r->cell[3], sizeof r->cell[3], port,
		    "client_port");
		list_int_cell(r->cell[4], sizeof r->cell[4], port, "clients");
		list_int_cell(r->cell[5], sizeof r->cell[5], port,
		    "bytes_from_vm");
		list_int_cell(r->cell[6], sizeof r->cell[6], port,
		    "bytes_to_vm");
	}
	json_decref(root);

	for (c = 0; c < LIST_NCOLS; c++) {
		width[c] = 0;
		for (i = 0; i < nrows; i++) {
			w = strlen(rows[i].cell[c]);
			if (w > width[c])
				width[c] = w;
		}
	}
	for (i = 0; i < nrows; i++) {
		for (c = 0; c < LIST_NCOLS; c++) {
			if (c + 1 == LIST_NCOLS && !right[c])
				printf("%s", rows[i].cell[c]);
			else
				printf(right[c] ? "%*s" : "%-*s",
				    (int)width[c], rows[i].cell[c]);
			if (c + 1 < LIST_NCOLS)
				printf("  ");
		}
		putchar('\n');
	}
	free(rows);
	return (fflush(stdout) == 0 ? 0 : 1);
}

/* Restore the terminal if we changed it. */
static void
tty_restore(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
}

/* Put the terminal on stdin in raw mode. */
static void
tty_raw(void)
{
	struct termios tio;

	if (tcgetattr(STDIN_FILENO, &saved_tio) == -1)
		return;
	tio = saved_tio;
	cfmakeraw(&tio);
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	tio_saved = true;
	atexit(tty_restore);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio) == -1)
		tio_saved = false;
}

/* Note a terminating signal; the loop exits and atexit restores the tty. */
static void
signal_cb(int sig)
{
	got_signal = sig;
}

/* Install the signal handlers (no SA_RESTART, so poll returns EINTR). */
static void
signals_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = signal_cb;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* Message to stderr; in raw mode lines need CR LF. */
static void
attach_msg(const char *msg)
{
	fputs(tio_saved ? "\r\n" : "", stderr);
	fputs(msg, stderr);
	fputs(tio_saved ? "\r\n" : "\n", stderr);
	fflush(stderr);
}

/* Queue bytes for the server, doubling 0xFF. */
static void
attach_send(struct attach *a, const uint8_t *data, size_t len)
{
	uint8_t tmp[2 * 512];
	size_t n;

	while (len > 0) {
		n = len > 512 ? 512 : len;
		buf_add(&a->out, tmp, telnet_escape(tmp, data, n));
		data += n;
		len -= n;
	}
}

/* Write console bytes to stdout. */
static void
attach_output(struct attach *a, const uint8_t *data, size_t len)
{
	if (a->stdout_error || len == 0)
		return;
	if (!write_all(STDOUT_FILENO, data, len))
		a->stdout_error = true;
}

/* Report a front-door error line the way "vspc log" words it. */
static void
attach_follow_error(struct attach *a, const char *msg)
{
	const char *ids;

	if (strncmp(msg, "no console named ", 17) == 0)
		fprintf(stderr, "vspc: no console named '%s'\n", a->name);
	else if (strstr(msg, "' matches ") != NULL &&
	    (ids = strstr(strstr(msg, "' matches "), ": ")) != NULL)
		fprintf(stderr, "vspc: '%s' is ambiguous: %s\n", a->name,
		    ids + 2);
	else
		fprintf(stderr, "vspc: %s\n", msg);
}

/* The escape character as people type it: "^]", "~". */
static const char *
esc_name(int ch)
{
	static char s[8];

	if (ch == 0x7f)
		return ("^?");
	if (ch >= 0 && ch < 0x20)
		snprintf(s, sizeof s, "^%c", ch + '@');
	else
		snprintf(s, sizeof s, "%c", ch);
	return (s);
}

/* Tell a terminal user how to get out, once raw mode is on. */
static void
attach_banner(struct attach *a)
{
	char msg[128];
	const char *e = esc_name(a->esc_char);

	if (!tio_saved || a->esc_char < 0)
		return;
	snprintf(msg, sizeof msg, "(escape: %s . to detach, %s ? for help)",
	    e, e);
	attach_msg(msg);
}

/* Handle one complete server line during the reply phase. */
static void
attach_reply_line(struct attach *a, const char *line)
{
	size_t nlen = strlen(a->sendline);

	/* Our echoed line may run into the reply without a newline. */
	if (strncmp(line, a->sendline, nlen) == 0 &&
	    (strncmp(line + nlen, "attached to ", 12) == 0 ||
	    strncmp(line + nlen, "vspcd: ", 7) == 0))
		line += nlen;
	if (strncmp(line, "attached to ", 12) == 0) {
		if (!a->follow) {
			fprintf(stderr, "%s\n", line);
			fflush(stderr);
		}
		a->phase = ATTACH_RELAY;
		/*
		 * Raw mode before any console byte reaches the terminal (the
		 * replay may follow in the same read): no CR added to LF.
		 */
		if (!a->follow)
			telnet_request(&a->tn, TELOPT_VSPC, true, true);
		if (a->is_tty && !tio_saved) {
			tty_raw();
			attach_banner(a);
		}
	} else if (strncmp(line, "vspcd: ", 7) == 0) {
		if (a->follow)
			attach_follow_error(a, line + 7);
		else
			fprintf(stderr, "%s\n", line);
		fflush(stderr);
		a->phase = ATTACH_FAILED;
	}
	/* Anything else is the echo of our own line. */
}

/* Feed dialogue bytes (prompt, echo, reply) and pass the rest on. */
static void
attach_dialogue(struct attach *a, const uint8_t *data, size_t len)
{
	static const char prompt[] = VSPC_PROMPT;
	size_t plen = sizeof prompt - 1, i;
	char *cr;

	for (i = 0; i < len && a->phase != ATTACH_RELAY &&
	    a->phase != ATTACH_FAILED; i++) {
		if (a->line_len + 1 >= sizeof a->line) {
			/* Keep the tail: it may hold the start of a prompt. */
			memmove(a->line, a->line + a->line_len - plen, plen);
			a->line_len = plen;
		}
		a->line[a->line_len++] = data[i];
		a->line[a->line_len] = '\0';
		if (a->phase == ATTACH_PROMPT) {
			if (a->line_len >= plen && memcmp(a->line +
			    a->line_len - plen, prompt, plen) == 0) {
				attach_send(a, (const uint8_t *)a->sendline,
				    strlen(a->sendline));
				buf_add(&a->out, "\r\n", 2);
				a->phase = ATTACH_REPLY;
				a->line_len = 0;
			}
			continue;
		}
		if (data[i] != '\n')
			continue;
		a->line[--a->line_len] = '\0';
		if ((cr = strchr(a->line, '\r')) != NULL)
			*cr = '\0';
		attach_reply_line(a, a->line);
		a->line_len = 0;
	}
	if (a->phase == ATTACH_RELAY)
		attach_output(a, data + i, len - i);
}

/* Telnet codec events. */
static void
attach_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct attach *a = arg;

	switch (ev->type) {
	case TELNET_EV_SEND:
		buf_add(&a->out, ev->data, ev->len);
		break;
	case TELNET_EV_DATA:
		if (a->phase == ATTACH_RELAY)
			attach_output(a, ev->data, ev->len);
		else
			attach_dialogue(a, ev->data, ev->len);
		break;
	default:
		break;
	}
}

/* Send one in-session control command (IAC SB TELOPT_VSPC word IAC SE). */
static void
attach_control(struct attach *a, const char *word)
{
	uint8_t sb[64];
	size_t n;

	if (!telnet_enabled(&a->tn, TELOPT_VSPC, true)) {
		attach_msg("vspc: this vspcd offers no in-session control");
		return;
	}
	n = telnet_sb_encode(sb, sizeof sb, TELOPT_VSPC,
	    (const uint8_t *)word, strlen(word));
	if (n > 0)
		buf_add(&a->out, sb, n);
}

/* Print the escape menu. */
static void
attach_help(struct attach *a)
{
	char e[8], msg[512];

	strlcpy(e, esc_name(a->esc_char), sizeof e);
	snprintf(msg, sizeof msg, "vspc escapes: %s . detach, %s r read-only, "
	    "%s w read-write, %s f force (take the line), %s u who is "
	    "attached, %s p replay, %s %s send %s, %s ? this help", e, e, e,
	    e, e, e, e, e, e, e);
	attach_msg(msg);
}

/* The escape menu: one key after the escape character. */
static const struct attach_escape {
	uint8_t		 key;
	const char	*control;	/* in-session command, or NULL */
	bool		 detach;
	bool		 help;
} attach_escapes[] = {
	{ .key = '.', .detach = true },
	{ .key = 'r', .control = "ro" },
	{ .key = 'w', .control = "rw" },
	{ .key = 'f', .control = "force" },
	{ .key = 'u', .control = "who" },
	{ .key = 'p', .control = "replay" },
	{ .key = '?', .help = true },
	{ .key = 'h', .help = true },
};

/* Handle keyboard bytes, with the escape menu; true to detach. */
static bool
attach_input(struct attach *a, const uint8_t *data, size_t len)
{
	const struct attach_escape *e;
	uint8_t esc = (uint8_t)a->esc_char;
	size_t i, j, start = 0;

	for (i = 0; i < len; i++) {
		if (a->escape) {
			a->escape = false;
			start = i + 1;
			for (j = 0, e = NULL; j < nitems(attach_escapes); j++)
				if (attach_escapes[j].key == data[i])
					e = &attach_escapes[j];
			if (e != NULL && e->detach)
				return (true);
			if (e != NULL && e->help)
				attach_help(a);
			else if (e != NULL)
				attach_control(a, e->control);
			else {
				if (data[i] != esc)
					attach_send(a, &esc, 1);
				attach_send(a, &data[i], 1);
			}
			continue;
		}
		if (a->esc_char >= 0 && data[i] == esc) {
			attach_send(a, data + start, i - start);
			a->escape = true;
			start = i + 1;
		}
	}
	attach_send(a, data + start, len - start);
	return (false);
}

/* Flush queued bytes to the non-blocking socket; false on error. */
static bool
attach_flush(struct attach *a)
{
	ssize_t n;

	while (buf_used(&a->out) > 0) {
		n = write(a->fd, a->out.data + a->out.off, buf_used(&a->out));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return (true);
			return (false);
		}
		a->out.off += n;
	}
	a->out.off = a->out.len = 0;
	return (true);
}

/*
 * Front-door dialogue for name (with "/replay " or "/noreplay " in front),
 * then relay until detach. With follow, stdin is never read, nothing but
 * the name line is sent, and a signal or the server closing ends it with 0.
 */
static int
attach_run(const struct endpoint *client, const char *name, bool replay,
    bool ro, int esc_char, bool follow)
{
	static struct attach a;
	struct pollfd pfd[2];
	uint8_t rbuf[16384];
	const char *errmsg = NULL;
	int64_t deadline;
	ssize_t n;
	bool stdin_open = !follow, is_tty;
	int rc, status = 0;

	if (*name == '\0' || strpbrk(name, "\r\n") != NULL)
		die("bad console name");

	signals_init();
	memset(&a, 0, sizeof a);
	a.name = name;
	a.follow = follow;
	a.esc_char = esc_char;
	if ((size_t)snprintf(a.sendline, sizeof a.sendline, "%s%s%s",
	    ro ? "/ro " : "", replay ? "/replay " : "/noreplay ", name) >=
	    sizeof a.sendline)
		die("console name too long");
	a.phase = ATTACH_PROMPT;
	a.fd = connect_or_die(client);
	fcntl(a.fd, F_SETFL, fcntl(a.fd, F_GETFL) | O_NONBLOCK);
	telnet_init(&a.tn, attach_telnet_cb, &a);
	telnet_set_accept(&a.tn, TELOPT_ECHO, false, true);
	telnet_set_accept(&a.tn, TELOPT_SGA, true, true);
	telnet_set_accept(&a.tn, TELOPT_BINARY, true, true);
	telnet_set_accept(&a.tn, TELOPT_VSPC, true, false);

	is_tty = !follow && isatty(STDIN_FILENO);
	a.is_tty = is_tty;
	deadline = now_ms() + VSPC_IO_TIMEOUT_MS;
	while (!got_signal) {
		if (!attach_flush(&a)) {
			errmsg = "write to vspcd failed";
			status = 1;
			break;
		}
		if (a.phase == ATTACH_FAILED) {
			status = 1;
			break;
		}
		if (a.stdout_error) {
			status = 1;
			break;
		}
		if (a.phase == ATTACH_RELAY && is_tty && !tio_saved) {
			tty_raw();
			attach_banner(&a);
		}

		pfd[0].fd = a.fd;
		pfd[0].events = POLLIN;
		if (buf_used(&a.out) > 0)
			pfd[0].events |= POLLOUT;
		pfd[1].fd = STDIN_FILENO;
		pfd[1].events = POLLIN;
		if (a.phase != ATTACH_RELAY || !stdin_open ||
		    buf_used(&a.out) > VSPC_OUTQ_HIGH)
			pfd[1].fd = -1;
		rc = poll(pfd, 2, a.phase == ATTACH_RELAY ? -1 :
		    ms_left(deadline));
		if (rc == -1) {
			if (errno == EINTR)
				continue;
			errmsg = "poll failed";
			status = 1;
			break;
		}
		if (rc == 0) {
			errmsg = "timed out waiting for the front door";
			status = 1;
			break;
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(a.fd, rbuf, sizeof rbuf);
			if (n == -1 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				if (n == -1)
					errmsg = strerror(errno);
				if (a.phase != ATTACH_RELAY || n == -1)
					status = 1;
				if (errmsg == NULL && (!follow || status != 0))
					errmsg = "connection closed by vspcd";
				break;
			}
			telnet_input(&a.tn, rbuf, n);
		}
		if (pfd[1].fd != -1 &&
		    (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			n = read(STDIN_FILENO, rbuf, sizeof rbuf);
			if (n == -1 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				/* EOF: keep relaying output. */
				stdin_open = false;
				if (a.escape) {
					uint8_t e = (uint8_t)a.esc_char;

					a.escape = false;
					attach_send(&a, &e, 1);
				}
				if (is_tty)
					break;
				continue;
			}
			if (attach_input(&a, rbuf, n)) {
				attach_flush(&a);
				break;
			}
		}
	}
	attach_flush(&a);
	if (errmsg != NULL) {
		snprintf((char *)rbuf, sizeof rbuf, "vspc: %s", errmsg);
		attach_msg((char *)rbuf);
	}
	close(a.fd);
	telnet_free(&a.tn);
	free(a.out.data);
	tty_restore();
	tio_saved = false;
	return (status);
}

/*
 * Parse -e: "none", one character, or caret notation ("^]", "^A", "^?").
 * Returns the byte, -1 for none, or dies.
 */
static int
parse_escape(const char *s)
{
	if (strcmp(s, "none") == 0)
		return (-1);
	if (s[0] != '\0' && s[1] == '\0')
		return ((unsigned char)s[0]);
	if (s[0] == '^' && s[1] == '?' && s[2] == '\0')
		return (0x7f);
	if (s[0] == '^' && s[1] >= '@' && s[1] <= '_' && s[2] == '\0')
		return (s[1] - '@');
	if (s[0] == '^' && s[1] >= 'a' && s[1] <= 'z' && s[2] == '\0')
		return (s[1] - 'a' + 1);
	die("bad escape character '%s' (one character, ^X or none)", s);
}

/* vspc attach [--no-replay] [--ro] [-e CHAR] NAME: attach the terminal. */
static int
cmd_attach(int argc, char **argv, const struct endpoint *client)
{
	static const struct option longopts[] = {
		{ "no-replay", no_argument, NULL, 'n' },
		{ "replay", no_argument, NULL, 'r' },
		{ "ro", no_argument, NULL, 'o' },
		{ "read-only", no_argument, NULL, 'o' },
		{ "escape", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	bool replay = true, ro = false;
	int ch, esc = VSPC_ESCAPE;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "e:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			replay = false;
			break;
		case 'r':
			replay = true;
			break;
		case 'o':
			ro = true;
			break;
		case 'e':
			esc = parse_escape(optarg);
			break;
		case 'h':
			usage(stdout);
		default:
			usage(stderr);
		}
	}
	if (optind + 1 != argc)
		usage(stderr);
	return (attach_run(client, argv[optind], replay, ro, esc, false));
}

/* Print the ids of a 409 answer ({"matches":[...]}) after the message. */
static void
log_ambiguous(const char *name, const char *body, size_t blen)
{
	json_t *root, *ids, *v;
	json_error_t jerr;
	size_t i;

	fprintf(stderr, "vspc: '%s' is ambiguous:", name);
	root = json_loadb(body, blen, 0, &jerr);
	ids = root != NULL ? json_object_get(root, "matches") : NULL;
	json_array_foreach(ids, i, v) {
		if (json_is_string(v))
			fprintf(stderr, " %s", json_string_value(v));
	}
	fputc('\n', stderr);
	json_decref(root);
	exit(1);
}

/* vspc log [--tail-bytes N] [-f] NAME: print or follow a console log. */
static int
cmd_log(int argc, char **argv, const char *state_dir, const char *admin_opt,
    const char *client_opt)
{
	static const struct option longopts[] = {
		{ "tail-bytes", required_argument, NULL, 't' },
		{ "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct endpoint admin, client;
	char path[VSPC_LINE_MAX * 3 + 64], enc[VSPC_LINE_MAX * 3];
	const char *name, *errstr;
	long long tail = VSPC_LOG_TAIL_DEFAULT;
	size_t blen;
	char *body;
	bool follow = false;
	int ch, status;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "c:fh", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
		case 'c':
			tail = strtonum(optarg, 0, VSPC_LOG_TAIL_MAX, &errstr);
			if (errstr != NULL)
				die("bad --tail-bytes: %s (0 to %d)", optarg,
				    VSPC_LOG_TAIL_MAX);
			break;
		case 'f':
			follow = true;
			break;
		case 'h':
			usage(stdout);
		default:
			usage(stderr);
		}
	}
	if (optind + 1 != argc)
		usage(stderr);
	name = argv[optind];
	if (*name == '\0')
		die("bad console name");

	if (follow) {
		endpoints_resolve(state_dir, admin_opt, client_opt, false,
		    &admin, &client);
		return (attach_run(&client, name, true, true, -1, true));
	}
	endpoints_resolve(state_dir, admin_opt, client_opt, true, &admin,
	    &client);
	if (!url_encode(enc, sizeof enc, name))
		die("console name too long");
	snprintf(path, sizeof path, "/api/v1/ports/%s/log?tail_bytes=%lld",
	    enc, tail);
	body = http_request(&admin, path, "*/*", &status, &blen);
	if (status == 404)
		die("no console named '%s'", name);
	if (status == 409)
		log_ambiguous(name, body, blen);
	if (status != 200)
		die("%s%s: HTTP status %d", endpoint_str(&admin), path, status);
	if (!write_all(STDOUT_FILENO, body, blen))
		die("write to stdout: %s", strerror(errno));
	free(body);
	return (0);
}

/* Collects what a one-shot front-door command gets back. */
struct fdcmd {
	struct telnet	 tn;
	struct buf	 in;	/* decoded data */
	struct buf	 out;	/* to send */
};

/* Telnet events of a front-door command. */
static void
fdcmd_telnet_cb(void *arg, const struct telnet_event *ev)
{
	struct fdcmd *f = arg;

	if (ev->type == TELNET_EV_SEND)
		buf_add(&f->out, ev->data, ev->len);
	else if (ev->type == TELNET_EV_DATA)
		buf_add(&f->in, ev->data, ev->len);
}

/*
 * Send one command line (/who, /kick) to the front door at ep and return
 * the last non-empty line of the answer (caller frees). The daemon answers
 * and closes. Dies on error or after VSPC_IO_TIMEOUT_MS.
 */
static char *
frontdoor_command(const struct endpoint *ep, const char *line)
{
	static const char prompt[] = VSPC_PROMPT;
	struct fdcmd f;
	struct pollfd pfd;
	uint8_t rbuf[16384];
	int64_t deadline;
	char *text, *p, *last;
	bool sent = false;
	ssize_t n;
	int rc;

	memset(&f, 0, sizeof f);
	telnet_init(&f.tn, fdcmd_telnet_cb, &f);
	telnet_set_accept(&f.tn, TELOPT_SGA, true, true);
	telnet_set_accept(&f.tn, TELOPT_BINARY, true, true);
	pfd.fd = connect_or_die(ep);
	deadline = now_ms() + VSPC_IO_TIMEOUT_MS;
	for (;;) {
		if (buf_used(&f.out) > 0) {
			if (!write_all(pfd.fd, f.out.data + f.out.off,
			    buf_used(&f.out)))
				die("write to vspcd: %s", strerror(errno));
			f.out.off = f.out.len = 0;
		}
		if (!sent && buf_used(&f.in) >= sizeof prompt - 1 &&
		    memmem(f.in.data + f.in.off, buf_used(&f.in), prompt,
		    sizeof prompt - 1) != NULL) {
			f.in.off = f.in.len = 0;
			if (!write_all(pfd.fd, line, strlen(line)) ||
			    !write_all(pfd.fd, "\r\n", 2))
				die("write to vspcd: %s", strerror(errno));
			sent = true;
		}
		pfd.events = POLLIN;
		rc = poll(&pfd, 1, ms_left(deadline));
		if (rc == -1 && errno == EINTR && !got_signal)
			continue;
		if (rc <= 0)
			die("%s: no answer from vspcd", endpoint_str(ep));
		n = read(pfd.fd, rbuf, sizeof rbuf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			die("%s: read: %s", endpoint_str(ep), strerror(errno));
		if (n == 0)
			break;
		if (buf_used(&f.in) + (size_t)n > VSPC_HTTP_MAX)
			die("%s: answer too long", endpoint_str(ep));
		telnet_input(&f.tn, rbuf, (size_t)n);
	}
	close(pfd.fd);
	telnet_free(&f.tn);
	free(f.out.data);
	if (!sent)
		die("%s: no front-door prompt", endpoint_str(ep));
	buf_add(&f.in, "", 1);
	text = (char *)f.in.data + f.in.off;
	last = NULL;
	for (p = strtok(text, "\r\n"); p != NULL; p = strtok(NULL, "\r\n"))
		last = p;
	last = xstrdup(last != NULL ? last : "");
	free(f.in.data);
	return (last);
}

/* The Unix socket of the daemon (--client PATH or listeners.json), if any. */
static bool
unix_endpoint(const char *state_dir, const char *client_opt,
    struct endpoint *ep)
{
	struct endpoint admin;

	memset(ep, 0, sizeof *ep);
	if (client_opt != NULL && client_opt[0] != '/')
		return (false);
	if (client_opt == NULL) {
		char path[4096];
		json_t *root, *v;

		if (state_dir == NULL)
			state_dir = getenv("VSPC_STATE_DIR");
		if (state_dir == NULL || *state_dir == '\0')
			state_dir = VSPC_DEFAULT_STATE_DIR;
		snprintf(path, sizeof path, "%s/listeners.json", state_dir);
		if ((root = json_load_file(path, 0, NULL)) == NULL)
			return (false);
		v = json_object_get(root, "unix");
		if (!json_is_string(v)) {
			json_decref(root);
			return (false);
		}
		json_decref(root);
	}
	endpoints_resolve(state_dir, NULL, client_opt, false, &admin, ep);
	return (ep->unix_path[0] != '\0');
}

/* Seconds since then, as "5s", "3m", "2h", "4d". */
static void
who_since(char *dst, size_t cap, json_int_t then)
{
	long long d = (long long)time(NULL) - (long long)then;

	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(dst, cap, "%llds", d);
	else if (d < 7200)
		snprintf(dst, cap, "%lldm", d / 60);
	else if (d < 172800)
		snprintf(dst, cap, "%lldh", d / 3600);
	else
		snprintf(dst, cap, "%lldd", d / 86400);
}

/* Print the {"clients":[...]} answer as a table. */
static int
who_print(const char *body, size_t blen)
{
	static const char *heads[] = { "ID", "CONSOLE", "WHO", "SOURCE",
	    "MODE", "SINCE", "IN", "OUT" };
	enum { NCOLS = 8 };
	char (*rows)[NCOLS][256];
	json_t *root, *cl, *c, *v;
	json_error_t jerr;
	size_t nrows, i, k, w, width[NCOLS];

	root = json_loadb(body, blen, 0, &jerr);
	if (root == NULL || !json_is_array(cl = json_object_get(root,
	    "clients")))
		die("bad answer from vspcd: %s", root == NULL ? jerr.text :
		    "no \"clients\" array");
	nrows = json_array_size(cl) + 1;
	rows = xcalloc(nrows, sizeof *rows);
	for (k = 0; k < NCOLS; k++)
		strlcpy(rows[0][k], heads[k], sizeof rows[0][k]);
	json_array_foreach(cl, i, c) {
		char (*r)[256] = rows[i + 1], who[256];
		const char *kind;

		list_int_cell(r[0], sizeof r[0], c, "id");
		list_str_cell(r[1], sizeof r[1], c, "console");
		kind = json_string_value(json_object_get(c, "kind"));
		v = json_object_get(c, "name");
		if (json_is_string(v) && kind != NULL &&
		    strcmp(kind, "unix") != 0)
			snprintf(who, sizeof who, "%s:%s", kind,
			    json_string_value(v));
		else if (json_is_string(v))
			strlcpy(who, json_string_value(v), sizeof who);
		else
			strlcpy(who, kind != NULL ? kind : "-", sizeof who);
		sanitize(r[2], sizeof r[2], who);
		list_str_cell(r[3], sizeof r[3], c, "source");
		list_str_cell(r[4], sizeof r[4], c, "mode");
		v = json_object_get(c, "attached_at");
		if (json_is_integer(v))
			who_since(r[5], sizeof r[5], json_integer_value(v));
		else
			strlcpy(r[5], "-", sizeof r[5]);
		list_int_cell(r[6], sizeof r[6], c, "bytes_in");
		list_int_cell(r[7], sizeof r[7], c, "bytes_out");
	}
	json_decref(root);
	for (k = 0; k < NCOLS; k++) {
		width[k] = 0;
		for (i = 0; i < nrows; i++)
			if ((w = strlen(rows[i][k])) > width[k])
				width[k] = w;
	}
	for (i = 0; i < nrows; i++) {
		for (k = 0; k < NCOLS; k++) {
			if (k + 1 == NCOLS)
				printf("%*s\n", (int)width[k], rows[i][k]);
			else
				printf(k == 0 || k >= 6 ? "%*s  " : "%-*s  ",
				    (int)width[k], rows[i][k]);
		}
	}
	free(rows);
	return (fflush(stdout) == 0 ? 0 : 1);
}

/* vspc who [--json] [CONSOLE]: who is attached where. */
static int
cmd_who(int argc, char **argv, const char *state_dir, const char *admin_opt,
    const char *client_opt)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct endpoint admin, client;
	char line[VSPC_LINE_MAX], enc[VSPC_LINE_MAX * 3];
	char path[VSPC_LINE_MAX * 3 + 64], *body;
	const char *name = NULL;
	bool json_out = false;
	size_t blen;
	int ch, status, rc;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json_out = true;
			break;
		case 'h':
			usage(stdout);
		default:
			usage(stderr);
		}
	}
	if (optind + 1 < argc)
		usage(stderr);
	if (optind < argc)
		name = argv[optind];
	if (name != NULL && (*name == '\0' || strpbrk(name, "\r\n") != NULL))
		die("bad console name");
	if (unix_endpoint(state_dir, client_opt, &client)) {
		if ((size_t)snprintf(line, sizeof line, "/who%s%s",
		    name != NULL ? " " : "", name != NULL ? name : "") >=
		    sizeof line)
			die("console name too long");
		body = frontdoor_command(&client, line);
		if (strncmp(body, "vspcd: ", 7) == 0)
			die("%s", body + 7);
		blen = strlen(body);
	} else {
		endpoints_resolve(state_dir, admin_opt, client_opt, true,
		    &admin, &client);
		if (name == NULL)
			strlcpy(path, "/api/v1/clients", sizeof path);
		else {
			if (!url_encode(enc, sizeof enc, name))
				die("console name too long");
			snprintf(path, sizeof path, "/api/v1/ports/%s/clients",
			    enc);
		}
		body = http_request(&admin, path, "application/json",
		    &status, &blen);
		if (status == 404)
			die("no console named '%s'", name != NULL ? name : "");
		if (status == 409)
			log_ambiguous(name, body, blen);
		if (status != 200)
			die("%s%s: HTTP status %d", endpoint_str(&admin), path,
			    status);
	}
	if (json_out) {
		printf("%s\n", body);
		free(body);
		return (fflush(stdout) == 0 ? 0 : 1);
	}
	rc = who_print(body, blen);
	free(body);
	return (rc);
}

/* vspc kick ID: close a client (needs the admin right on its console). */
static int
cmd_kick(int argc, char **argv, const char *state_dir, const char *admin_opt,
    const char *client_opt)
{
	struct endpoint admin, client;
	char line[64], path[64], *body;
	const char *errstr;
	long long id;
	json_t *root;
	size_t blen;
	int status;

	if (argc != 2)
		usage(stderr);
	id = strtonum(argv[1], 1, UINT32_MAX, &errstr);
	if (errstr != NULL)
		die("bad client id '%s'", argv[1]);
	if (unix_endpoint(state_dir, client_opt, &client)) {
		snprintf(line, sizeof line, "/kick %lld", id);
		body = frontdoor_command(&client, line);
		if (strncmp(body, "kicked ", 7) != 0)
			die("%s", strncmp(body, "vspcd: ", 7) == 0 ? body + 7 :
			    body);
		printf("%s\n", body);
		free(body);
		return (fflush(stdout) == 0 ? 0 : 1);
	}
	endpoints_resolve(state_dir, admin_opt, client_opt, true, &admin,
	    &client);
	snprintf(path, sizeof path, "/api/v1/clients/%lld", id);
	body = http_request_m(&admin, "DELETE", path, "application/json",
	    &status, &blen);
	if (status == 200) {
		printf("kicked client %lld\n", id);
		free(body);
		return (fflush(stdout) == 0 ? 0 : 1);
	}
	if (status == 404)
		die("no client %lld", id);
	root = json_loadb(body, blen, 0, NULL);
	if (root != NULL && json_is_string(json_object_get(root, "error")))
		die("%s", json_string_value(json_object_get(root, "error")));
	die("%s%s: HTTP status %d", endpoint_str(&admin), path, status);
}

/* Parse the global options and run the command. */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "admin", required_argument, NULL, 'a' },
		{ "client", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct endpoint admin, client;
	const char *state_dir = NULL, *admin_opt = NULL, *client_opt = NULL;
	const char *cmd;
	int ch;

	while ((ch = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			state_dir = optarg;
			break;
		case 'a':
			admin_opt = optarg;
			break;
		case 'c':
			client_opt = optarg;
			break;
		case 'h':
			usage(stdout);
		case 'V':
			printf("vspc %s\n", VSPC_VERSION);
			return (0);
		default:
			usage(stderr);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage(stderr);
	cmd = argv[0];
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "ls") == 0) {
		endpoints_resolve(state_dir, admin_opt, client_opt, true,
		    &admin, &client);
		return (cmd_list(argc, argv, &admin));
	}
	if (strcmp(cmd, "attach") == 0) {
		endpoints_resolve(state_dir, admin_opt, client_opt, false,
		    &admin, &client);
		return (cmd_attach(argc, argv, &client));
	}
	if (strcmp(cmd, "log") == 0)
		return (cmd_log(argc, argv, state_dir, admin_opt, client_opt));
	if (strcmp(cmd, "who") == 0)
		return (cmd_who(argc, argv, state_dir, admin_opt, client_opt));
	if (strcmp(cmd, "kick") == 0)
		return (cmd_kick(argc, argv, state_dir, admin_opt, client_opt));
	if (strcmp(cmd, "help") == 0)
		usage(stdout);
	fprintf(stderr, "vspc: unknown command '%s'\n", cmd);
	usage(stderr);
}
