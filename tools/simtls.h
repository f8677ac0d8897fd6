/*
 * simtls: the TLS client side of the simulated ESXi hosts (vspc-sim,
 * vspc-bench), for vSPC URIs of the form telnets://host:port#thumbprint=...
 *
 * ESXi opens TCP, does a TLS handshake as a client (no client
 * certificate) and then speaks the same telnet byte stream as on a plain
 * connection. The tools connect a plain socket bufferevent first and, once
 * TCP is up, put a TLS filter bufferevent on top of it (simtls_wrap); the
 * filter reports BEV_EVENT_CONNECTED when the handshake is done. TCP
 * connect errors therefore stay what they were, and an error on the filter
 * before its CONNECTED is a handshake failure (simtls_why tells why).
 *
 * This file is the only one in tools/ that includes <openssl/...>.
 */
#ifndef SIMTLS_H
#define SIMTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct bufferevent;
struct event_base;

/* The command line's TLS options (all strings may be NULL). */
struct simtls_opts {
	const char *thumbprint;	/* --tls-thumbprint: SHA-256/SHA-1 hex */
	const char *ca;		/* --tls-ca: PEM file, chain + name check */
	const char *servername;	/* --tls-servername: SNI and checked name */
	const char *min;	/* --tls-min 1.1|1.2|1.3 (default 1.2) */
	const char *max;	/* --tls-max 1.1|1.2|1.3 (default: highest) */
};

/* Long option values for the tools' getopt tables (above their own). */
enum {
	SIMTLS_O_TLS = 1000, SIMTLS_O_THUMBPRINT, SIMTLS_O_CA,
	SIMTLS_O_SERVERNAME, SIMTLS_O_MIN, SIMTLS_O_MAX,
};

#define SIMTLS_LONGOPTS							\
	{ "tls", no_argument, NULL, SIMTLS_O_TLS },			\
	{ "tls-thumbprint", required_argument, NULL, SIMTLS_O_THUMBPRINT }, \
	{ "tls-ca", required_argument, NULL, SIMTLS_O_CA },		\
	{ "tls-servername", required_argument, NULL, SIMTLS_O_SERVERNAME }, \
	{ "tls-min", required_argument, NULL, SIMTLS_O_MIN },		\
	{ "tls-max", required_argument, NULL, SIMTLS_O_MAX }

/*
 * Take one getopt_long result. Returns true if ch was a TLS option (then
 * *on is set for --tls and the string kept in o), false otherwise.
 */
bool	simtls_option(int ch, const char *arg, bool *on,
	    struct simtls_opts *o);

/* Print the TLS option lines of a usage text. */
void	simtls_usage(FILE *f);

/*
 * Build the client context for target (the --target HOST:PORT text: its
 * host is the SNI name unless it is an IP address). Returns 0, or -1 with
 * a message in cause. Prints a warning on stderr (prefixed by prog) once
 * if the server certificate will not be verified.
 */
int	simtls_init(const struct simtls_opts *o, const char *target,
	    const char *prog, char *cause, size_t causelen);

/* Free the context (at exit). */
void	simtls_free(void);

/*
 * Put a TLS client (connecting) filter on a connected socket bufferevent.
 * The filter owns raw and frees it. Returns NULL on failure.
 */
struct bufferevent *simtls_wrap(struct event_base *base,
	    struct bufferevent *raw);

/*
 * Why the filter failed: the thumbprint mismatch, OpenSSL's error queue
 * or the socket error. Writes into buf and returns it.
 */
const char *simtls_why(struct bufferevent *tls, char *buf, size_t len);

/* The negotiated protocol, e.g. "TLSv1.3" ("-" if none). */
const char *simtls_version(struct bufferevent *tls);

/*
 * Queue a close_notify alert (after a finished handshake) on the
 * underlying bufferevent, so that it goes out before the FIN.
 */
void	simtls_close_notify(struct bufferevent *tls);

/*
 * Write the send queue of the socket bufferevent under a TLS filter now
 * (the filter has already encrypted into it). A socket bufferevent keeps
 * the start of its output frozen (only its own write callback thaws it),
 * so this thaws it around the write.
 */
void	simtls_flush_raw(struct bufferevent *raw);

/*
 * Print the thumbprint of the first certificate of a PEM file in ESXi's
 * format (upper-case hex, colon-separated): SHA-256, or SHA-1 if sha1.
 * Returns 0, or -1 with a message in cause.
 */
int	simtls_print_thumbprint(const char *path, bool sha1, FILE *out,
	    char *cause, size_t causelen);

#endif /* SIMTLS_H */
