/*
 * TLS for the listeners that ask for it (vm-listen-tls, client-listen-tls,
 * port-tls, admin-tls): one server SSL_CTX built from the config, swapped
 * whole on SIGHUP. OpenSSL reference-counts the context, so connections
 * that started under the old certificate finish with it while new ones get
 * the new one. TLS 1.2 is the floor; renegotiation is off.
 *
 * The stream inside is byte for byte what a plain listener carries, from
 * the first byte: the codecs never know TLS is there. A peer that speaks
 * plain text to a TLS port fails the handshake on its first bytes and is
 * closed at once.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <event2/bufferevent_ssl.h>

#include "vspcd.h"

/*
 * Two contexts with the same certificate: ESXi presents no certificate, so
 * the VM side never asks for one; clients are asked per tls-client-certs.
 */
enum { TLS_VM, TLS_CLIENT, TLS_NCTX };
static SSL_CTX	*tls_ctx[TLS_NCTX];	/* live; NULL: no TLS configured */
static SSL_CTX	*tls_pending[TLS_NCTX];	/* built by tls_prepare */

/* Does conf have anything that speaks TLS? */
bool
tls_wanted(const struct config *conf)
{
	return (conf->n_vm_listen_tls > 0 || conf->client_listen_tls != NULL ||
	    conf->port_tls || conf->admin_tls);
}

/* Print OpenSSL's error queue after a message, then clear it. */
static void
tls_report(FILE *errout, const char *what, const char *path)
{
	unsigned long e;
	char buf[256];

	e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof buf);
	else
		strlcpy(buf, "unknown error", sizeof buf);
	ERR_clear_error();
	if (errout != NULL)
		fprintf(errout, "%s '%s': %s\n", what, path, buf);
	else
		log_warnx("%s '%s': %s", what, path, buf);
}

/* A server context with conf's certificate; clients: ask for theirs. */
static SSL_CTX *
tls_ctx_build(const struct config *conf, bool clients, FILE *errout)
{
	STACK_OF(X509_NAME) *cas;
	SSL_CTX *ctx;
	int mode;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_report(errout, "TLS", "context");
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, conf->tls_min_version ==
	    TLS_MIN_13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	/*
	 * ESXi and telnet clients often just close the socket: that is an
	 * EOF of the console stream, which carries no length to truncate.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Idle consoles are the common case: no buffers while idle. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_cert) != 1) {
		tls_report(errout, "tls-cert", conf->tls_cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key,
	    SSL_FILETYPE_PEM) != 1) {
		tls_report(errout, "tls-key", conf->tls_key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_report(errout, "tls-key does not match tls-cert",
		    conf->tls_key);
		goto fail;
	}
	if (!clients || conf->tls_client_certs == TLS_CLIENT_OFF)
		return (ctx);
	if (SSL_CTX_load_verify_locations(ctx, conf->tls_client_ca,
	    NULL) != 1 ||
	    (cas = SSL_load_client_CA_file(conf->tls_client_ca)) == NULL) {
		tls_report(errout, "tls-client-ca", conf->tls_client_ca);
		goto fail;
	}
	SSL_CTX_set_client_CA_list(ctx, cas);
	mode = SSL_VERIFY_PEER;
	if (conf->tls_client_certs == TLS_CLIENT_REQUIRE)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	SSL_CTX_set_verify_depth(ctx, 8);
	/* Sessions resume only within this context. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"vspcd",
	    5);
	return (ctx);
fail:
	SSL_CTX_free(ctx);
	return (NULL);
}

/*
 * Build the contexts for conf into the pending slots. Returns the number
 * of errors (each printed to errout, or logged if it is NULL); nothing is
 * live until tls_commit.
 */
int
tls_prepare(const struct config *conf, FILE *errout)
{
	tls_abort();
	if (!tls_wanted(conf))
		return (0);
	if (conf->tls_cert == NULL || conf->tls_key == NULL) {
		if (errout != NULL)
			fprintf(errout, "TLS listeners need tls-cert and "
			    "tls-key\n");
		else
			log_warnx("TLS listeners need tls-cert and tls-key");
		return (1);
	}
	if ((tls_pending[TLS_VM] = tls_ctx_build(conf, false,
	    errout)) == NULL)
		return (1);
	if ((tls_pending[TLS_CLIENT] = tls_ctx_build(conf, true,
	    errout)) == NULL) {
		tls_abort();
		return (1);
	}
	return (0);
}

/* Make the pending contexts live (NULL if the config wants no TLS). */
void
tls_commit(void)
{
	int i;

	for (i = 0; i < TLS_NCTX; i++) {
		if (tls_ctx[i] != NULL)
			SSL_CTX_free(tls_ctx[i]);
		tls_ctx[i] = tls_pending[i];
		tls_pending[i] = NULL;
	}
}

/* Drop the pending contexts. */
void
tls_abort(void)
{
	int i;

	for (i = 0; i < TLS_NCTX; i++) {
		if (tls_pending[i] != NULL)
			SSL_CTX_free(tls_pending[i]);
		tls_pending[i] = NULL;
	}
}

/* Free everything (shutdown). */
void
tls_shutdown(void)
{
	int i;

	tls_abort();
	for (i = 0; i < TLS_NCTX; i++) {
		if (tls_ctx[i] != NULL)
			SSL_CTX_free(tls_ctx[i]);
		tls_ctx[i] = NULL;
	}
}

/*
 * A server-side TLS bufferevent on fd, handshake pending; NULL on error.
 * vm: an ESXi host, never asked for a certificate.
 */
struct bufferevent *
tls_bev_accept(evutil_socket_t fd, bool vm)
{
	SSL_CTX *ctx = tls_ctx[vm ? TLS_VM : TLS_CLIENT];
	struct bufferevent *bev;
	SSL *ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL) {
		ERR_clear_error();
		return (NULL);
	}
	/* CLOSE_ON_FREE: the bufferevent frees ssl and closes fd. */
	bev = bufferevent_openssl_socket_new(ev_base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return (NULL);
	}
	/* A peer that just closes the socket is an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return (bev);
}

/* For evhttp_set_bevcb: every admin connection speaks TLS. */
struct bufferevent *
tls_http_bevcb(struct event_base *base, void *arg)
{
	SSL_CTX *ctx = tls_ctx[TLS_CLIENT];
	struct bufferevent *bev;
	SSL *ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL) {
		ERR_clear_error();
		return (NULL);
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		SSL_free(ssl);
	else
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return (bev);
}

/* Is bev a TLS bufferevent? */
bool
tls_bev_is_tls(struct bufferevent *bev)
{
	return (bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL);
}

/* Why a TLS bufferevent failed, for the log (static buffer). */
const char *
tls_bev_error(struct bufferevent *bev)
{
	static char buf[256];
	unsigned long e;

	if (bev == NULL || bufferevent_openssl_get_ssl(bev) == NULL ||
	    (e = bufferevent_get_openssl_error(bev)) == 0)
		return (NULL);
	ERR_error_string_n(e, buf, sizeof buf);
	while (bufferevent_get_openssl_error(bev) != 0)
		;
	return (buf);
}

/*
 * After the handshake: if the peer showed a certificate that verified
 * against tls-client-ca, make id a certificate identity named by the
 * subject in RFC 2253 form. No certificate leaves id as it is. Returns -1
 * for a subject that does not fit (never cut: a cut subject could equal a
 * shorter one in a rule).
 */
int
tls_peer_identity(struct bufferevent *bev, struct identity *id)
{
	SSL *ssl;
	X509 *cert;
	BIO *bio;
	char *data;
	long len;
	int rc = -1;

	if ((ssl = bufferevent_openssl_get_ssl(bev)) == NULL)
		return (0);
	if ((cert = SSL_get1_peer_certificate(ssl)) == NULL)
		return (0);
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		X509_free(cert);
		return (0);
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		goto out;
	if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
	    XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
		goto out;
	len = BIO_get_mem_data(bio, &data);
	if (len <= 0 || (size_t)len >= sizeof id->name ||
	    memchr(data, '\0', (size_t)len) != NULL)
		goto out;
	memcpy(id->name, data, (size_t)len);
	id->name[len] = '\0';
	id->kind = IDENT_CERT;
	rc = 0;
out:
	BIO_free(bio);
	X509_free(cert);
	ERR_clear_error();
	return (rc);
}
