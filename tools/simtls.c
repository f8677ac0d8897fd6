/*
 * simtls: the TLS client of the simulated ESXi hosts. See simtls.h.
 *
 * One SSL_CTX per process. Verification follows the vSPC URI options:
 * a pinned thumbprint (SHA-256 or SHA-1 of the DER certificate, compared
 * in constant time, chain not checked: ESXi's #thumbprint=), a CA file
 * (chain and host name, as any TLS client), both, or none (a warning).
 * A thumbprint mismatch fails the handshake from the certificate
 * verification callback, as ESXi refuses the connection; the reason is
 * kept on the SSL (ex_data) for simtls_why().
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "simtls.h"
#include "xmalloc.h"

#define SIMTLS_HOST_MAX		256
#define SIMTLS_PIN_MAX		32	/* SHA-256 */
#define SIMTLS_RAW_HIGH		(64 * 1024)	/* ciphertext queued at most */

static struct {
	SSL_CTX *ctx;
	int why_idx;			/* SSL ex_data: char *, a failure */
	uint8_t pin[SIMTLS_PIN_MAX];
	size_t pinlen;			/* 0, 20 (SHA-1) or 32 (SHA-256) */
	bool ca;			/* chain verification as well */
	char sni[SIMTLS_HOST_MAX];	/* "" if the name is an address */
} tls = { .why_idx = -1 };

/* Take one getopt_long result if it is a TLS option. */
bool
simtls_option(int ch, const char *arg, bool *on, struct simtls_opts *o)
{
	switch (ch) {
	case SIMTLS_O_TLS:
		*on = true;
		return (true);
	case SIMTLS_O_THUMBPRINT:
		o->thumbprint = arg;
		return (true);
	case SIMTLS_O_CA:
		o->ca = arg;
		return (true);
	case SIMTLS_O_SERVERNAME:
		o->servername = arg;
		return (true);
	case SIMTLS_O_MIN:
		o->min = arg;
		return (true);
	case SIMTLS_O_MAX:
		o->max = arg;
		return (true);
	}
	return (false);
}

/* Print the TLS option lines of a usage text. */
void
simtls_usage(FILE *f)
{
	fputs(
"  --tls                connect with TLS (vSPC URI telnets://), handshake\n"
"                       first on every connection, vMotion destinations\n"
"                       included; no client certificate, as ESXi\n"
"  --tls-thumbprint HEX pin the server certificate: SHA-256 (32 bytes) or\n"
"                       SHA-1 (20 bytes) of its DER form, colons optional,\n"
"                       any case; a mismatch fails the handshake\n"
"  --tls-ca FILE        verify the chain against these PEM CAs and the\n"
"                       host name (or IP address) of --target\n"
"                       (neither option: no verification, with a warning)\n"
"  --tls-servername N   SNI and verified name instead of the --target host\n"
"                       (default: the host, no SNI if it is an address)\n"
"  --tls-min V          lowest protocol version: 1.0, 1.1, 1.2 (default)\n"
"                       or 1.3; below 1.2 sets OpenSSL security level 0\n"
"  --tls-max V          highest protocol version (default: 1.3)\n", f);
}

/* Map "1.0".."1.3" to an OpenSSL version; 0 if s is not one. */
static int
simtls_parse_version(const char *s)
{
	if (strcmp(s, "1.0") == 0)
		return (TLS1_VERSION);
	if (strcmp(s, "1.1") == 0)
		return (TLS1_1_VERSION);
	if (strcmp(s, "1.2") == 0)
		return (TLS1_2_VERSION);
	if (strcmp(s, "1.3") == 0)
		return (TLS1_3_VERSION);
	return (0);
}

/* Value of one hex digit, or -1. */
static int
simtls_hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return (ch - '0');
	if (ch >= 'a' && ch <= 'f')
		return (ch - 'a' + 10);
	if (ch >= 'A' && ch <= 'F')
		return (ch - 'A' + 10);
	return (-1);
}

/* Parse a thumbprint (hex, colons anywhere) into tls.pin. */
static int
simtls_parse_pin(const char *s)
{
	size_t n = 0;
	int hi = -1, v;

	for (; *s != '\0'; s++) {
		if (*s == ':')
			continue;
		if ((v = simtls_hexval((unsigned char)*s)) < 0)
			return (-1);
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == sizeof tls.pin)
			return (-1);
		tls.pin[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0 || (n != 20 && n != 32))
		return (-1);
	tls.pinlen = n;
	return (0);
}

/* Write md in ESXi's form (AA:BB:..) into out. */
static void
simtls_colon_hex(const uint8_t *md, size_t len, char *out, size_t cap)
{
	size_t i, off = 0;

	if (cap > 0)
		out[0] = '\0';
	for (i = 0; i < len && off + 3 < cap; i++)
		off += (size_t)snprintf(out + off, cap - off, "%s%02X",
		    i == 0 ? "" : ":", md[i]);
}

/* ex_data destructor: the failure text of an SSL. */
static void
simtls_why_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	free(ptr);
}

/* Keep why the handshake of ssl failed. */
static void
simtls_set_why(SSL *ssl, const char *why)
{
	free(SSL_get_ex_data(ssl, tls.why_idx));
	SSL_set_ex_data(ssl, tls.why_idx, xstrdup(why));
}

/*
 * Certificate check with a pinned thumbprint: the chain first if a CA
 * file was given, then the leaf's digest in constant time.
 */
static int
simtls_verify_cb(X509_STORE_CTX *xs, void *arg)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	char hex[3 * EVP_MAX_MD_SIZE + 1], why[3 * EVP_MAX_MD_SIZE + 64];
	unsigned int mdlen = 0;
	X509 *cert;
	SSL *ssl;

	ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	if (tls.ca && X509_verify_cert(xs) != 1)
		return (0);
	cert = X509_STORE_CTX_get0_cert(xs);
	if (cert == NULL || X509_digest(cert, tls.pinlen == 32 ?
	    EVP_sha256() : EVP_sha1(), md, &mdlen) != 1) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
		return (0);
	}
	if (mdlen == tls.pinlen && CRYPTO_memcmp(md, tls.pin, mdlen) == 0)
		return (1);
	simtls_colon_hex(md, mdlen, hex, sizeof hex);
	snprintf(why, sizeof why, "thumbprint mismatch: server certificate "
	    "%s %s", tls.pinlen == 32 ? "SHA-256" : "SHA-1", hex);
	if (ssl != NULL)
		simtls_set_why(ssl, why);
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return (0);
}

/* Split the host out of HOST:PORT or [V6]:PORT into out. */
static int
simtls_target_host(const char *spec, char *out, size_t cap)
{
	const char *end;
	size_t len;

	if (spec[0] == '[') {
		if ((end = strchr(spec, ']')) == NULL)
			return (-1);
		spec++;
	} else if ((end = strrchr(spec, ':')) == NULL ||
	    strchr(spec, ':') != end)
		end = spec + strlen(spec);
	len = (size_t)(end - spec);
	if (len == 0 || len >= cap)
		return (-1);
	memcpy(out, spec, len);
	out[len] = '\0';
	return (0);
}

/* Build the client context. */
int
simtls_init(const struct simtls_opts *o, const char *target,
    const char *prog, char *cause, size_t causelen)
{
	X509_VERIFY_PARAM *param;
	struct in6_addr a6;
	char host[SIMTLS_HOST_MAX];
	int min = TLS1_2_VERSION, max = 0;
	bool is_ip;

	if (o->min != NULL && (min = simtls_parse_version(o->min)) == 0) {
		snprintf(cause, causelen, "--tls-min %s: 1.0, 1.1, 1.2 or 1.3",
		    o->min);
		return (-1);
	}
	if (o->max != NULL && (max = simtls_parse_version(o->max)) == 0) {
		snprintf(cause, causelen, "--tls-max %s: 1.0, 1.1, 1.2 or 1.3",
		    o->max);
		return (-1);
	}
	if (o->min == NULL && max != 0 && max < min)
		min = max;
	if (max != 0 && max < min) {
		snprintf(cause, causelen, "--tls-max is below --tls-min");
		return (-1);
	}
	if (o->thumbprint != NULL && simtls_parse_pin(o->thumbprint) != 0) {
		snprintf(cause, causelen, "--tls-thumbprint: need the SHA-256 "
		    "(64 hex digits) or SHA-1 (40) thumbprint, colons optional");
		return (-1);
	}
	if (o->servername != NULL) {
		if (strlcpy(host, o->servername, sizeof host) >= sizeof host) {
			snprintf(cause, causelen, "--tls-servername: too long");
			return (-1);
		}
	} else if (simtls_target_host(target, host, sizeof host) != 0) {
		snprintf(cause, causelen, "--target %s: no host name", target);
		return (-1);
	}
	is_ip = inet_pton(AF_INET, host, &a6) == 1 ||
	    inet_pton(AF_INET6, host, &a6) == 1;
	strlcpy(tls.sni, is_ip ? "" : host, sizeof tls.sni);

	if ((tls.ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto ssl_fail;
	tls.why_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL,
	    simtls_why_free);
	if (tls.why_idx < 0)
		goto ssl_fail;
	if (min < TLS1_2_VERSION)
		SSL_CTX_set_security_level(tls.ctx, 0);
	if (SSL_CTX_set_min_proto_version(tls.ctx, min) != 1 ||
	    SSL_CTX_set_max_proto_version(tls.ctx, max) != 1)
		goto ssl_fail;
	/* The telnet stream is long-lived and small: no tickets needed. */
	SSL_CTX_set_options(tls.ctx, SSL_OP_NO_TICKET);
	if (o->ca != NULL) {
		if (SSL_CTX_load_verify_locations(tls.ctx, o->ca, NULL) != 1) {
			snprintf(cause, causelen, "--tls-ca %s: cannot load "
			    "(%s)", o->ca, ERR_reason_error_string(
			    ERR_peek_last_error()));
			goto out;
		}
		param = SSL_CTX_get0_param(tls.ctx);
		if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) :
		    X509_VERIFY_PARAM_set1_host(param, host, 0)) != 1)
			goto ssl_fail;
		tls.ca = true;
	}
	if (tls.pinlen > 0)
		SSL_CTX_set_cert_verify_callback(tls.ctx, simtls_verify_cb,
		    NULL);
	if (tls.pinlen > 0 || tls.ca)
		SSL_CTX_set_verify(tls.ctx, SSL_VERIFY_PEER, NULL);
	else {
		SSL_CTX_set_verify(tls.ctx, SSL_VERIFY_NONE, NULL);
		fprintf(stderr, "%s: tls: no --tls-thumbprint or --tls-ca: the "
		    "server certificate is not verified\n", prog);
	}
	return (0);

ssl_fail:
	snprintf(cause, causelen, "tls: %s", ERR_reason_error_string(
	    ERR_peek_last_error()));
out:
	ERR_clear_error();
	simtls_free();
	return (-1);
}

/* Free the context. */
void
simtls_free(void)
{
	SSL_CTX_free(tls.ctx);
	tls.ctx = NULL;
}

/* Put a TLS client filter on a connected socket bufferevent. */
struct bufferevent *
simtls_wrap(struct event_base *base, struct bufferevent *raw)
{
	struct bufferevent *bev;
	SSL *ssl;

	if ((ssl = SSL_new(tls.ctx)) == NULL) {
		ERR_clear_error();
		return (NULL);
	}
	if (tls.sni[0] != '\0' && SSL_set_tlsext_host_name(ssl, tls.sni) !=
	    1) {
		ERR_clear_error();
		SSL_free(ssl);
		return (NULL);
	}
	bev = bufferevent_openssl_filter_new(base, raw, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		ERR_clear_error();
		SSL_free(ssl);
		return (NULL);
	}
	/*
	 * Keep the socket's queue short so that the plaintext waits in the
	 * filter's, where the tool's watermarks and backpressure see it.
	 */
	bufferevent_setwatermark(raw, EV_WRITE, SIMTLS_RAW_HIGH / 2,
	    SIMTLS_RAW_HIGH);
	/* A FIN without close_notify is the end of the stream, as in TCP. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return (bev);
}

/* Why the filter failed. */
const char *
simtls_why(struct bufferevent *tls_bev, char *buf, size_t len)
{
	const char *why = NULL;
	unsigned long e;
	size_t off = 0;
	long vr;
	SSL *ssl;
	int serr = EVUTIL_SOCKET_ERROR();

	buf[0] = '\0';
	ssl = bufferevent_openssl_get_ssl(tls_bev);
	if (ssl != NULL)
		why = SSL_get_ex_data(ssl, tls.why_idx);
	if (why != NULL) {
		strlcpy(buf, why, len);
		while (bufferevent_get_openssl_error(tls_bev) != 0)
			;
		return (buf);
	}
	while ((e = bufferevent_get_openssl_error(tls_bev)) != 0 &&
	    off + 2 < len) {
		if (ERR_GET_LIB(e) == 0)
			continue;	/* libevent adds SSL_get_error()'s code */
		if (off > 0)
			off += strlcpy(buf + off, "; ", len - off);
		if (off + 1 < len)
			ERR_error_string_n(e, buf + off, len - off);
		off = strlen(buf);
	}
	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK &&
	    off + 4 < len)
		snprintf(buf + off, len - off, "%s%s", off > 0 ? ": " : "",
		    X509_verify_cert_error_string(vr));
	if (buf[0] == '\0')
		strlcpy(buf, serr != 0 ? evutil_socket_error_to_string(serr) :
		    "connection closed", len);
	return (buf);
}

/* The negotiated protocol version. */
const char *
simtls_version(struct bufferevent *tls_bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tls_bev);

	return (ssl != NULL && SSL_is_init_finished(ssl) ?
	    SSL_get_version(ssl) : "-");
}

/* Queue close_notify on the underlying bufferevent. */
void
simtls_close_notify(struct bufferevent *tls_bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(tls_bev);

	if (ssl != NULL && SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	ERR_clear_error();
}

/* Print the thumbprint of a PEM certificate. */
int
simtls_print_thumbprint(const char *path, bool sha1, FILE *out,
    char *cause, size_t causelen)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	char hex[3 * EVP_MAX_MD_SIZE + 1];
	unsigned int mdlen = 0;
	X509 *cert;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(cause, causelen, "%s: %s", path, strerror(errno));
		return (-1);
	}
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (cert == NULL || X509_digest(cert, sha1 ? EVP_sha1() :
	    EVP_sha256(), md, &mdlen) != 1) {
		snprintf(cause, causelen, "%s: no PEM certificate", path);
		X509_free(cert);
		ERR_clear_error();
		return (-1);
	}
	X509_free(cert);
	simtls_colon_hex(md, mdlen, hex, sizeof hex);
	fprintf(out, "%s\n", hex);
	return (0);
}

/* Write raw's send queue to its socket now (see simtls.h). */
void
simtls_flush_raw(struct bufferevent *raw)
{
	struct evbuffer *out;
	evutil_socket_t fd;

	out = bufferevent_get_output(raw);
	fd = bufferevent_getfd(raw);
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
		;
	evbuffer_freeze(out, 1);
}
