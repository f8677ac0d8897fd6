/*
 * null-vspc: a measuring instrument, not a product. It is the floor of
 * bench/handshake.py: a VM-side responder that does no work beyond the
 * bytes on the wire, so the handshake rate against it is the most this
 * machine and this generator (vspc-bench) can reach.
 *
 * For each connection it sends exactly the bytes vspcd sends to vspc-bench,
 * in the same round trips (learnt with strace on vspcd):
 *
 *   on accept           WILL BINARY, DO BINARY, WILL SGA, DO SGA,
 *                       DO VMWARE-EXT (15 bytes)
 *   WILL VMWARE-EXT     KNOWN-SUBOPTIONS-2 (vspcd's list), once
 *   DO-PROXY            GET-VM-VC-UUID, GET-VM-NAME
 *   VM-VC-UUID          WILL-PROXY
 *   other WILL / DO     DONT / WONT, as vspcd's telnet codec refuses
 *                       options it does not accept (AUTHENTICATION and
 *                       COM-PORT-OPTION from ESXi or vspc-bench)
 *
 * and nothing else: no identification, no URI check, no state beyond the
 * telnet parser, no logging. The stream is parsed with a small state
 * machine (IAC commands, IAC SB ... IAC SE frames; messages may be split
 * or coalesced across reads); the replies to one read are sent with one
 * send(). Every connection then stays open, idle, until the peer closes.
 *
 * Single-threaded, raw epoll (level-triggered), accept4(SOCK_NONBLOCK),
 * listen backlog 65535, TCP_NODELAY on the listening socket (inherited by
 * accepted sockets), descriptor limit raised to the hard limit.
 *
 * usage: null-vspc [-l ADDR:PORT]   (default 127.0.0.1:0)
 * Prints the bound port on stdout, one line, once listening; on SIGTERM or
 * SIGINT prints its counters on stderr and exits 0.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <err.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IAC		255
#define DONT		254
#define DO		253
#define WONT		252
#define WILL		251
#define SB		250
#define SE		240
#define OPT_BINARY	0
#define OPT_SGA		3
#define OPT_VMEXT	232
#define EXT_DO_PROXY	70
#define EXT_VM_VC_UUID	80

#define READ_SIZE	4096
/* Worst case out per in: WILL VMWARE-EXT, 3 bytes in, 27 out. */
#define OUT_SIZE	(READ_SIZE * 10)

enum pstate {
	P_DATA,		/* console data */
	P_IAC,		/* seen IAC */
	P_NEG,		/* seen IAC WILL/WONT/DO/DONT, need the option */
	P_SB_OPT,	/* seen IAC SB, need the option */
	P_SB_CMD,	/* seen IAC SB opt, need the first payload byte */
	P_SB_DATA,	/* in the payload */
	P_SB_IAC,	/* IAC in the payload: IAC (doubled) or SE */
};

struct conn {
	uint8_t state;	/* enum pstate */
	uint8_t neg;	/* WILL/WONT/DO/DONT in P_NEG */
	uint8_t sb_opt;
	int16_t sb_cmd;	/* first payload byte, -1 if none yet */
	uint8_t ext_on;	/* KNOWN-SUBOPTIONS-2 sent */
};

static const uint8_t hello[] = { IAC, WILL, OPT_BINARY, IAC, DO, OPT_BINARY,
	IAC, WILL, OPT_SGA, IAC, DO, OPT_SGA, IAC, DO, OPT_VMEXT };
static const uint8_t ks2[] = { IAC, SB, OPT_VMEXT, 1, 0x00, 0x01, 0x02, 0x03,
	0x28, 0x29, 0x2b, 0x2c, 0x2d, 0x2e, 0x30, 0x46, 0x47, 0x49, 0x50, 0x51,
	0x52, 0x53, IAC, SE };
static const uint8_t gets[] = { IAC, SB, OPT_VMEXT, 0x51, IAC, SE,
	IAC, SB, OPT_VMEXT, 0x53, IAC, SE };
static const uint8_t will_proxy[] = { IAC, SB, OPT_VMEXT, 0x47, IAC, SE };

static struct conn *conns;	/* indexed by fd */
static int nconns;
static uint8_t out[OUT_SIZE];
static size_t outlen;
static unsigned long n_accepted, n_will_proxy, n_short_send;
static volatile sig_atomic_t stop;

/* Append bytes to the reply of the current read. */
static void
put(const uint8_t *p, size_t n)
{
	if (outlen + n > sizeof out)
		errx(1, "reply buffer overflow (cannot happen)");
	memcpy(out + outlen, p, n);
	outlen += n;
}

/* IAC WILL/WONT/DO/DONT opt from the peer. */
static void
on_neg(struct conn *c, uint8_t cmd, uint8_t opt)
{
	uint8_t r[3] = { IAC, 0, opt };

	if (cmd == WILL && opt == OPT_VMEXT) {
		if (!c->ext_on)
			put(ks2, sizeof ks2);
		c->ext_on = 1;
	} else if (cmd == WILL && opt != OPT_BINARY && opt != OPT_SGA) {
		r[1] = DONT;
		put(r, sizeof r);
	} else if (cmd == DO && opt != OPT_BINARY && opt != OPT_SGA) {
		r[1] = WONT;
		put(r, sizeof r);
	}
	/* WILL/DO BINARY and SGA answer our requests; WONT/DONT: nothing. */
}

/* A complete IAC SB opt cmd ... IAC SE from the peer. */
static void
on_sb(struct conn *c)
{
	if (c->sb_opt != OPT_VMEXT)
		return;
	if (c->sb_cmd == EXT_DO_PROXY)
		put(gets, sizeof gets);
	else if (c->sb_cmd == EXT_VM_VC_UUID) {
		put(will_proxy, sizeof will_proxy);
		n_will_proxy++;
	}
}

/* Run the telnet parser over one read. */
static void
parse(struct conn *c, const uint8_t *p, size_t n)
{
	uint8_t ch;
	size_t i;

	for (i = 0; i < n; i++) {
		ch = p[i];
		switch (c->state) {
		case P_DATA:
			if (ch == IAC)
				c->state = P_IAC;
			break;
		case P_IAC:
			if (ch >= WILL && ch <= DONT) {
				c->neg = ch;
				c->state = P_NEG;
			} else if (ch == SB)
				c->state = P_SB_OPT;
			else	/* IAC IAC (data) or a 2-byte command */
				c->state = P_DATA;
			break;
		case P_NEG:
			on_neg(c, c->neg, ch);
			c->state = P_DATA;
			break;
		case P_SB_OPT:
			c->sb_opt = ch;
			c->sb_cmd = -1;
			c->state = ch == IAC ? P_SB_IAC : P_SB_CMD;
			break;
		case P_SB_CMD:
			if (ch == IAC)
				c->state = P_SB_IAC;
			else {
				c->sb_cmd = ch;
				c->state = P_SB_DATA;
			}
			break;
		case P_SB_DATA:
			if (ch == IAC)
				c->state = P_SB_IAC;
			break;
		case P_SB_IAC:
			if (ch == SE) {
				on_sb(c);
				c->state = P_DATA;
			} else if (ch == IAC) {	/* doubled 0xFF in payload */
				if (c->sb_cmd == -1)
					c->sb_cmd = IAC;
				c->state = P_SB_DATA;
			} else	/* malformed: end the SB, resynchronise */
				c->state = P_DATA;
			break;
		}
	}
}

/* Send the gathered replies; a short send (never expected for a few dozen
 * bytes on a fresh socket) is counted and the connection closed. */
static void
flush(int fd)
{
	ssize_t w;

	if (outlen == 0)
		return;
	w = send(fd, out, outlen, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w != (ssize_t)outlen) {
		n_short_send++;
		close(fd);	/* also leaves the epoll set */
	}
	outlen = 0;
}

/* One readable connection: one read, the replies in one send. */
static void
conn_read(int fd)
{
	uint8_t buf[READ_SIZE];
	ssize_t n;

	n = read(fd, buf, sizeof buf);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		close(fd);
		return;
	}
	parse(&conns[fd], buf, (size_t)n);
	flush(fd);
}

/* Accept every pending connection and greet it. */
static void
accept_all(int lfd, int ep)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			err(1, "accept4");	/* EMFILE: the run is void */
		}
		if (fd >= nconns)
			errx(1, "fd %d over the descriptor limit", fd);
		n_accepted++;
		memset(&conns[fd], 0, sizeof conns[fd]);
		ev.data.fd = fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
			err(1, "epoll_ctl");
		put(hello, sizeof hello);
		flush(fd);
	}
}

/* Bind and listen on ADDR:PORT ([v6]:PORT also); return the socket. */
static int
listen_on(const char *spec)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;
	char host[256], *port;
	int fd, one = 1;

	if (strlen(spec) >= sizeof host)
		errx(2, "-l %s: too long", spec);
	strcpy(host, spec);
	if ((port = strrchr(host, ':')) == NULL)
		errx(2, "-l %s: need ADDR:PORT", spec);
	*port++ = '\0';
	if (host[0] == '[' && port[-2] == ']') {
		port[-2] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		errx(2, "-l %s: bad address", spec);
	if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		err(1, "socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == -1)
		err(1, "setsockopt");
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1)
		err(1, "bind %s", spec);
	if (listen(fd, 65535) == -1)
		err(1, "listen");
	freeaddrinfo(ai);
	return (fd);
}

/* SIGTERM, SIGINT: leave the loop. */
static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[256], ev = { .events = EPOLLIN };
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;
	const char *spec = "127.0.0.1:0";
	int lfd, ep, n, i, ch;

	while ((ch = getopt(argc, argv, "l:")) != -1) {
		if (ch != 'l') {
			fprintf(stderr, "usage: null-vspc [-l ADDR:PORT]\n");
			return (2);
		}
		spec = optarg;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			warn("setrlimit");
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		err(1, "getrlimit");
	nconns = rl.rlim_cur > (1 << 24) ? 1 << 24 : (int)rl.rlim_cur;
	if ((conns = calloc((size_t)nconns, sizeof *conns)) == NULL)
		err(1, "calloc");
	sigaction(SIGTERM, &sa, NULL);	/* no SA_RESTART: epoll_wait EINTR */
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = listen_on(spec);
	if ((ep = epoll_create1(0)) == -1)
		err(1, "epoll_create1");
	ev.data.fd = lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) == -1)
		err(1, "epoll_ctl");
	if (getsockname(lfd, (struct sockaddr *)&ss, &sslen) == -1)
		err(1, "getsockname");
	printf("%u\n", ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);

	while (!stop) {
		n = epoll_wait(ep, evs, (int)(sizeof evs / sizeof evs[0]), -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			err(1, "epoll_wait");
		}
		for (i = 0; i < n; i++) {
			if (evs[i].data.fd == lfd)
				accept_all(lfd, ep);
			else
				conn_read(evs[i].data.fd);
		}
	}
	fprintf(stderr, "null-vspc: accepted %lu, WILL-PROXY sent %lu, "
	    "short sends %lu\n", n_accepted, n_will_proxy, n_short_send);
	return (0);
}
