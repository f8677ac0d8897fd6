/*
 * Write coalescing for plain-socket bufferevents (see cork.c).
 */
#ifndef VSPC_CORK_H
#define VSPC_CORK_H

#include <stddef.h>

struct bufferevent;
struct event_base;

size_t	bev_send_now(struct bufferevent *, const void *, size_t);
void	bev_write(struct bufferevent *, const void *, size_t);
void	bev_queue(struct bufferevent *, const void *, size_t);
void	bev_queued(struct bufferevent *);
void	bev_uncork(struct bufferevent *);
int	bev_cork_init(struct event_base *);
void	bev_cork_free(void);

#endif
