/*
 * TCP listeners: parse ADDR:PORT, bind with a large backlog, and back off
 * for a second when accept() runs out of file descriptors instead of
 * spinning on a readable listening socket.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"

#define LISTENER_BACKLOG	4096
#define LISTENER_PAUSE_LOG	10	/* s between "pausing" warnings */

/*
 * A listener paused after EMFILE, waiting for its resume timer. Listeners
 * may be freed while paused (port expiry, reload, shutdown, evhttp_free):
 * whoever frees one calls listener_forget first, so that the timer never
 * touches freed memory.
 */
struct listener_backoff {
	TAILQ_ENTRY(listener_backoff) entry;
	struct evconnlistener	*lev;
	struct event		*ev;
};
static TAILQ_HEAD(, listener_backoff) listener_paused =
    TAILQ_HEAD_INITIALIZER(listener_paused);

/* Drop a pause record and its timer. */
static void
listener_backoff_free(struct listener_backoff *lb)
{
	TAILQ_REMOVE(&listener_paused, lb, entry);
	event_free(lb->ev);
	free(lb);
}

/* Re-enable a listener after an EMFILE pause. */
static void
listener_resume_timer(evutil_socket_t fd, short events, void *arg)
{
	struct listener_backoff *lb = arg;
	struct evconnlistener *lev = lb->lev;

	listener_backoff_free(lb);
	evconnlistener_enable(lev);
}

/* Accept failed: pause on fd exhaustion, otherwise just log. */
static void
listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener_backoff *lb;
	struct timeval tv = { 1, 0 };
	int err = EVUTIL_SOCKET_ERROR();
	static time_t last_warn;
	static u_int pauses;

	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		pauses++;
		if (time(NULL) - last_warn >= LISTENER_PAUSE_LOG) {
			log_warnx("accept: %s; pausing listener for 1 s "
			    "(%u pause%s)", strerror(err), pauses,
			    pauses == 1 ? "" : "s");
			last_warn = time(NULL);
			pauses = 0;
		}
		evconnlistener_disable(lev);
		TAILQ_FOREACH(lb, &listener_paused, entry) {
			if (lb->lev == lev)
				return;
		}
		lb = xcalloc(1, sizeof *lb);
		lb->lev = lev;
		lb->ev = evtimer_new(ev_base, listener_resume_timer, lb);
		TAILQ_INSERT_TAIL(&listener_paused, lb, entry);
		evtimer_add(lb->ev, &tv);
		return;
	}
	log_debug("accept: %s", strerror(err));
}

/* Pause lev for a second when accept() runs out of descriptors. */
void
listener_set_backoff(struct evconnlistener *lev)
{
	evconnlistener_set_error_cb(lev, listener_error_cb);
}

/* Cancel lev's pending resume, if any: it is about to be freed. */
void
listener_forget(struct evconnlistener *lev)
{
	struct listener_backoff *lb;

	TAILQ_FOREACH(lb, &listener_paused, entry) {
		if (lb->lev == lev) {
			listener_backoff_free(lb);
			return;
		}
	}
}

/* Free a listener opened here. */
void
listener_free(struct evconnlistener *lev)
{
	listener_forget(lev);
	evconnlistener_free(lev);
}

/* Split "host:port", "[v6]:port" or ":port" into its parts. */
int
listener_split(const char *spec, char *host, size_t hostlen, int *port)
{
	const char *colon, *errstr;
	size_t n;

	if (spec[0] == '[') {
		colon = strstr(spec, "]:");
		if (colon == NULL)
			return (-1);
		n = (size_t)(colon - spec - 1);
		if (n >= hostlen)
			return (-1);
		memcpy(host, spec + 1, n);
		host[n] = '\0';
		colon++;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return (-1);
		n = (size_t)(colon - spec);
		if (n >= hostlen)
			return (-1);
		memcpy(host, spec, n);
		host[n] = '\0';
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		strlcpy(host, "0.0.0.0", hostlen);
	*port = (int)strtonum(colon + 1, 0, 65535, &errstr);
	if (errstr != NULL)
		return (-1);
	return (0);
}

/* Format a socket address as "addr:port" for logs. */
void
listener_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, h, sizeof h);
		snprintf(buf, len, "%s:%u", h, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof h);
		snprintf(buf, len, "[%s]:%u", h, ntohs(s6->sin6_port));
	} else
		strlcpy(buf, "?", len);
}

/* Bind a listener on host:port; reports the bound port. */
struct evconnlistener *
listener_open_addr(const char *host, int port, evconnlistener_cb cb,
    void *arg, int *bound_port)
{
	struct addrinfo hints, *res, *ai;
	struct evconnlistener *lev = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	char portstr[16];
	int error, one = 1;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof portstr, "%d", port);
	if ((error = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		log_warnx("%s: %s", host, gai_strerror(error));
		return (NULL);
	}
	for (ai = res; ai != NULL && lev == NULL; ai = ai->ai_next) {
		lev = evconnlistener_new_bind(ev_base, cb, arg,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		    LEV_OPT_CLOSE_ON_EXEC, LISTENER_BACKLOG, ai->ai_addr,
		    (int)ai->ai_addrlen);
	}
	freeaddrinfo(res);
	if (lev == NULL)
		return (NULL);
	/* Inherited by every accepted socket (one call, not one per accept). */
	if (setsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP, TCP_NODELAY,
	    &one, sizeof one) == -1)
		log_warn("listener: TCP_NODELAY");
	listener_set_backoff(lev);
	if (bound_port != NULL) {
		*bound_port = 0;
		if (getsockname(evconnlistener_get_fd(lev),
		    (struct sockaddr *)&ss, &sslen) == 0) {
			if (ss.ss_family == AF_INET)
				*bound_port = ntohs(
				    ((struct sockaddr_in *)&ss)->sin_port);
			else if (ss.ss_family == AF_INET6)
				*bound_port = ntohs(
				    ((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	return (lev);
}

/*
 * Listen on a Unix socket at path (mode 0666: the daemon decides who may do
 * what from the peer's credentials). A stale socket left by a previous run
 * is replaced; anything else at the path is refused.
 */
struct evconnlistener *
listener_open_unix(const char *path, evconnlistener_cb cb, void *arg)
{
	struct sockaddr_un sun;
	struct evconnlistener *lev;
	struct stat st;
	mode_t old;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof sun.sun_path) >=
	    sizeof sun.sun_path) {
		log_warnx("unix listener: path too long: %s", path);
		return (NULL);
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("unix listener: %s exists and is not a socket",
			    path);
			return (NULL);
		}
		(void)unlink(path);
	}
	old = umask(0111);	/* srw-rw-rw- */
	lev = evconnlistener_new_bind(ev_base, cb, arg, LEV_OPT_CLOSE_ON_FREE |
	    LEV_OPT_CLOSE_ON_EXEC, LISTENER_BACKLOG, (struct sockaddr *)&sun,
	    (int)sizeof sun);
	umask(old);
	if (lev == NULL) {
		log_warn("unix listener: cannot listen on %s", path);
		return (NULL);
	}
	listener_set_backoff(lev);
	log_info("unix listener on %s", path);
	return (lev);
}

/* Open a listener from an "ADDR:PORT" spec; logs failures. */
struct evconnlistener *
listener_open(const char *spec, const char *what, evconnlistener_cb cb,
    void *arg, int *bound_port)
{
	struct evconnlistener *lev;
	char host[256];
	int port;

	if (listener_split(spec, host, sizeof host, &port) == -1) {
		log_warnx("%s listener: bad address '%s' (want ADDR:PORT)",
		    what, spec);
		return (NULL);
	}
	lev = listener_open_addr(host, port, cb, arg, bound_port);
	if (lev == NULL)
		log_warn("%s listener: cannot listen on %s", what, spec);
	else
		log_info("%s listener on %s (port %d)", what, spec,
		    bound_port ? *bound_port : port);
	return (lev);
}
