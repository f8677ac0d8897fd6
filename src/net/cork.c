/*
 * Writes to VM connections without a loop turn per write.
 *
 * A bufferevent write adds EV_WRITE, waits for the next epoll_wait to say
 * the socket is writable (it nearly always is), writes, and deletes
 * EV_WRITE again: two epoll_ctl calls and a loop turn for every telnet
 * reply. A handshake is five such replies on separate round trips.
 *
 * Instead, the writes of one callback to one plain-socket bufferevent with
 * nothing queued are gathered here ("corked") and sent with one send() when
 * the callback is over: when a write for another bufferevent arrives, or
 * at the end of the loop pass (an event made active from a callback runs
 * in the same pass, before the loop polls again; db.c batches the same
 * way). What the socket does not take goes to the bufferevent's queue, as
 * does every write to a TLS bufferevent or behind bytes already queued, so
 * the order of bytes on a connection is the order of the writes. Queueing
 * enables EV_WRITE, so a bufferevent written only through here may start
 * with EV_READ alone (no EPOLLOUT registered and removed again per
 * connection).
 *
 * One slot is enough: callbacks run one at a time, and a callback writes
 * to one connection at a time. Whoever frees a bufferevent that was
 * written through here, or writes to it any other way, calls bev_uncork()
 * first. Used by vspcd's VM side and by vspc-bench (one event loop each).
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "cork.h"

#define CORK_MAX	4096

static struct {
	struct bufferevent	*bev;
	struct event		*ev;
	size_t			 len;
	uint8_t			 buf[CORK_MAX];
} cork;

/* True for a socket bufferevent with nothing queued (not TLS, no filter). */
static int
bev_idle_socket(struct bufferevent *bev)
{
	return (evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
	    bufferevent_openssl_get_ssl(bev) == NULL &&
	    bufferevent_get_underlying(bev) == NULL);
}

/*
 * Send at once on a plain-socket bufferevent with nothing queued. Returns
 * the bytes the socket took: 0 on a TLS bufferevent, behind queued bytes,
 * or on an error, which libevent's own write of the rest then reports.
 */
size_t
bev_send_now(struct bufferevent *bev, const void *data, size_t len)
{
	ssize_t n;

	if (len == 0 || !bev_idle_socket(bev))
		return (0);
	n = send(bufferevent_getfd(bev), data, len,
	    MSG_DONTWAIT | MSG_NOSIGNAL);
	return (n > 0 ? (size_t)n : 0);
}

/*
 * Bytes were added to bev's output queue: make sure it writes them (a
 * bufferevent written through here may have started with EV_READ alone).
 */
void
bev_queued(struct bufferevent *bev)
{
	if (!(bufferevent_get_enabled(bev) & EV_WRITE))
		bufferevent_enable(bev, EV_WRITE);
}

/* Queue on the bufferevent, which then writes when the socket is writable. */
void
bev_queue(struct bufferevent *bev, const void *data, size_t len)
{
	bufferevent_write(bev, data, len);
	bev_queued(bev);
}

/* Send the corked bytes; queue what the socket did not take. */
static void
bev_cork_flush(void)
{
	struct bufferevent *bev = cork.bev;
	size_t len = cork.len, sent;

	if (bev == NULL)
		return;
	cork.bev = NULL;
	cork.len = 0;
	sent = bev_send_now(bev, cork.buf, len);
	if (sent < len)
		bev_queue(bev, cork.buf + sent, len - sent);
}

static void
bev_cork_cb(evutil_socket_t fd, short events, void *arg)
{
	bev_cork_flush();
}

/* Write data to bev: corked if it can be, else queued (see above). */
void
bev_write(struct bufferevent *bev, const void *data, size_t len)
{
	if (len == 0)
		return;
	if (cork.bev != NULL && (cork.bev != bev ||
	    cork.len + len > sizeof cork.buf))
		bev_cork_flush();
	if (cork.ev == NULL || len > sizeof cork.buf || !bev_idle_socket(bev)) {
		bev_queue(bev, data, len);
		return;
	}
	if (cork.bev == NULL) {
		cork.bev = bev;
		event_active(cork.ev, EV_TIMEOUT, 0);
	}
	memcpy(cork.buf + cork.len, data, len);
	cork.len += len;
}

/* Send what is corked for bev now (before another kind of write or a free). */
void
bev_uncork(struct bufferevent *bev)
{
	if (cork.bev == bev)
		bev_cork_flush();
}

/* Start corking on base (until then every bev_write is queued). */
int
bev_cork_init(struct event_base *base)
{
	if ((cork.ev = event_new(base, -1, 0, bev_cork_cb, NULL)) == NULL)
		return (-1);
	return (0);
}

/* Flush and stop (shutdown). */
void
bev_cork_free(void)
{
	bev_cork_flush();
	if (cork.ev != NULL)
		event_free(cork.ev);
	cork.ev = NULL;
}
