/*
 * src/net/cork.c: the writes of one callback to one socket bufferevent go
 * out as one send at the end of the loop pass, in order, also behind bytes
 * already queued, around a switch to another bufferevent, and on uncork.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "cork.h"
#include "t.h"

static struct event_base *base;

/* A socketpair: bev on s[0], the peer end s[1] read directly. */
static struct bufferevent *
pair(int s[2])
{
	struct bufferevent *bev;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0) {
		t_fail(__FILE__, __LINE__, "socketpair: %s", strerror(errno));
		return (NULL);
	}
	fcntl(s[1], F_SETFL, O_NONBLOCK);
	if ((bev = bufferevent_socket_new(base, s[0],
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		t_fail(__FILE__, __LINE__, "bufferevent_socket_new");
		return (NULL);
	}
	bufferevent_enable(bev, EV_READ);
	return (bev);
}

/* What the peer end has now (at most cap), as one recv. */
static ssize_t
peer_recv(int fd, char *buf, size_t cap)
{
	ssize_t n = recv(fd, buf, cap, 0);

	return (n == -1 && errno == EAGAIN ? 0 : n);
}

static void
test_one_send_per_pass(void)
{
	struct bufferevent *bev;
	char buf[64];
	int s[2];

	if ((bev = pair(s)) == NULL)
		return;
	bev_write(bev, "ab", 2);
	bev_write(bev, "cd", 2);
	bev_write(bev, "ef", 2);
	/* Nothing on the wire until the loop pass ends. */
	ASSERT_INT_EQ(peer_recv(s[1], buf, sizeof buf), 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ASSERT_INT_EQ(peer_recv(s[1], buf, sizeof buf), 6);
	ASSERT_MEM_EQ(buf, 6, "abcdef", 6);
	/* Nothing queued in libevent, nothing left corked. */
	ASSERT_SIZE_EQ(evbuffer_get_length(bufferevent_get_output(bev)), 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ASSERT_INT_EQ(peer_recv(s[1], buf, sizeof buf), 0);
	bev_uncork(bev);
	bufferevent_free(bev);
	close(s[1]);
}

static void
test_switch_and_uncork(void)
{
	struct bufferevent *a, *b;
	char buf[64];
	int sa[2], sb[2];

	if ((a = pair(sa)) == NULL || (b = pair(sb)) == NULL)
		return;
	bev_write(a, "1", 1);
	bev_write(b, "x", 1);	/* a's bytes go out first */
	ASSERT_INT_EQ(peer_recv(sa[1], buf, sizeof buf), 1);
	ASSERT_INT_EQ(buf[0], '1');
	bev_write(a, "2", 1);	/* and b's now */
	ASSERT_INT_EQ(peer_recv(sb[1], buf, sizeof buf), 1);
	ASSERT_INT_EQ(buf[0], 'x');
	bev_uncork(b);		/* not b's turn: a stays corked */
	ASSERT_INT_EQ(peer_recv(sa[1], buf, sizeof buf), 0);
	bev_uncork(a);
	ASSERT_INT_EQ(peer_recv(sa[1], buf, sizeof buf), 1);
	ASSERT_INT_EQ(buf[0], '2');
	event_base_loop(base, EVLOOP_NONBLOCK);
	ASSERT_INT_EQ(peer_recv(sa[1], buf, sizeof buf), 0);
	ASSERT_INT_EQ(peer_recv(sb[1], buf, sizeof buf), 0);
	bufferevent_free(a);
	bufferevent_free(b);
	close(sa[1]);
	close(sb[1]);
}

/* A full socket: the rest is queued, and later writes go behind it. */
static void
test_order_behind_queue(void)
{
	static char big[1 << 20], got[(1 << 20) + 64];
	struct bufferevent *bev;
	size_t have = 0, i;
	ssize_t n;
	int s[2], rounds;

	if ((bev = pair(s)) == NULL)
		return;
	for (i = 0; i < sizeof big; i++)
		big[i] = (char)('a' + i % 26);
	bev_write(bev, "<", 1);
	bev_write(bev, big, sizeof big);	/* over the cork: queued */
	bev_write(bev, ">", 1);
	ASSERT_TRUE(evbuffer_get_length(bufferevent_get_output(bev)) > 0);
	for (rounds = 0; rounds < 10000 && have < sizeof big + 2; rounds++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		while ((n = peer_recv(s[1], got + have, sizeof got - have)) > 0)
			have += (size_t)n;
	}
	ASSERT_SIZE_EQ(have, sizeof big + 2);
	ASSERT_INT_EQ(got[0], '<');
	ASSERT_MEM_EQ(got + 1, sizeof big, big, sizeof big);
	ASSERT_INT_EQ(got[sizeof big + 1], '>');
	bev_uncork(bev);
	bufferevent_free(bev);
	close(s[1]);
}

int
main(void)
{
	base = event_base_new();
	if (base == NULL || bev_cork_init(base) == -1)
		return (1);
	T_RUN(test_one_send_per_pass);
	T_RUN(test_switch_and_uncork);
	T_RUN(test_order_behind_queue);
	bev_cork_free();
	event_base_free(base);
	return (t_summary());
}
