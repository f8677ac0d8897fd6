/*
 * authz.c: who may do what on which console (T3, G7).
 *
 * The rules come from the access key of the config (parsed by config.c
 * into cfg.access). A rule grants its rights to an identity on a console
 * when one of its who items matches the identity and one of its consoles
 * globs matches the console; the rights of an identity are the union over
 * every rule that grants. There is no deny rule and no order: adding a rule
 * can only add rights.
 *
 * Matching:
 *   user:NAME, group:NAME  unix identities only (SO_PEERCRED, via SSH too);
 *   token:NAME             bearer tokens, by the configured token name;
 *   cert:SUBJECT           the exact subject string of a client certificate;
 *   cert:CN=NAME           the one CN of the subject (a subject with two CNs
 *                          matches no CN rule);
 *   anonymous              unauthenticated (telnet) clients;
 *   any                    every identity except anonymous.
 * A consoles glob (fnmatch(3), no flags) is tried on the VM name, the port
 * id and the normalised UUID (32 lowercase hex; a pattern that spells a
 * UUID in VMware's "42 1c ..." or dashed form is normalised too). The
 * sharing-rules key matches its consoles the same way (authz_sharing_mode).
 *
 * Safe default: with no access key at all, every identity (anonymous
 * included) gets read and write on a loopback connection, nothing on any
 * other. uid 0 over the unix socket always has every right, with or without
 * rules: root can read the state directory and kill the daemon anyway.
 *
 * Tokens are configured as NAME:SHA256HEX. A presented token is hashed and
 * compared with every configured hash using CRYPTO_memcmp, without stopping
 * at the first match, so the time taken does not depend on which hash (or
 * how much of one) matched.
 */
#include <sys/types.h>

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "vspcd.h"

#define AUTHZ_HASH_LEN	32	/* SHA-256 */

/* Is buf a NUL-terminated string within its size? */
static bool
authz_str_ok(const char *buf, size_t size)
{
	return (memchr(buf, '\0', size) != NULL);
}

/*
 * Copy the value of the single CN attribute of a certificate subject into
 * cn. Accepts RFC 2253 ("CN=a,O=b", backslash escapes, '+' between
 * attributes of one RDN), OpenSSL's one-line form ("CN = a, O = b") and the
 * old slash form ("/O=b/CN=a"). Returns -1 if there is no CN, more than
 * one, or it does not fit.
 */
static int
authz_cert_cn(const char *subject, char *cn, size_t cnlen)
{
	const char *p = subject, *type, *tend;
	char sep1 = ',', sep2 = '+', val[IDENT_NAME_MAX];
	size_t vlen, trail;
	int found = 0;
	bool esc;

	if (*p == '/') {
		sep1 = sep2 = '/';
		p++;
	}
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		type = p;
		while (*p != '\0' && *p != '=' && *p != sep1 && *p != sep2)
			p++;
		tend = p;
		while (tend > type && tend[-1] == ' ')
			tend--;
		if (*p != '=')
			return (-1);	/* an attribute without a value */
		p++;
		while (*p == ' ')
			p++;
		vlen = trail = 0;
		for (; *p != '\0' && *p != sep1 && *p != sep2; p++) {
			esc = false;
			if (*p == '\\' && sep1 == ',' && p[1] != '\0') {
				p++;
				esc = true;
			}
			if (vlen + 1 >= sizeof val)
				return (-1);
			val[vlen++] = *p;
			trail = (*p == ' ' && !esc) ? trail + 1 : 0;
		}
		vlen -= trail;
		val[vlen] = '\0';
		if (*p != '\0')
			p++;
		if (tend - type == 2 && strncasecmp(type, "CN", 2) == 0) {
			if (found++ != 0)
				return (-1);
			if (strlcpy(cn, val, cnlen) >= cnlen)
				return (-1);
		}
	}
	return (found == 1 ? 0 : -1);
}

/* Does one who item of a rule match the identity? */
static bool
authz_who_match(const struct access_who *w, const struct identity *id)
{
	char cn[IDENT_NAME_MAX];
	int i, n;

	switch (w->kind) {
	case WHO_ANONYMOUS:
		return (id->kind == IDENT_ANONYMOUS);
	case WHO_ANY:
		return (id->kind != IDENT_ANONYMOUS);
	case WHO_USER:
		return (id->kind == IDENT_UNIX &&
		    strcmp(w->name, id->name) == 0);
	case WHO_GROUP:
		if (id->kind != IDENT_UNIX)
			return (false);
		n = id->ngroups;
		if (n > IDENT_GROUPS_MAX)
			n = IDENT_GROUPS_MAX;
		for (i = 0; i < n; i++)
			if (authz_str_ok(id->groups[i], sizeof id->groups[i]) &&
			    strcmp(w->name, id->groups[i]) == 0)
				return (true);
		return (false);
	case WHO_TOKEN:
		return (id->kind == IDENT_TOKEN &&
		    strcmp(w->name, id->name) == 0);
	case WHO_CERT:
		return (id->kind == IDENT_CERT &&
		    strcmp(w->name, id->name) == 0);
	case WHO_CERT_CN:
		return (id->kind == IDENT_CERT &&
		    authz_cert_cn(id->name, cn, sizeof cn) == 0 &&
		    strcmp(w->name, cn) == 0);
	}
	return (false);
}

/* Does one consoles item match the console (name, id or UUID)? */
bool
authz_console_match(const struct access_console *c, const char *vm_name,
    const char *port_id, const char *uuid)
{
	if (vm_name != NULL && fnmatch(c->pattern, vm_name, 0) == 0)
		return (true);
	if (port_id != NULL && fnmatch(c->pattern, port_id, 0) == 0)
		return (true);
	if (uuid == NULL)
		return (false);
	if (c->uuid[0] != '\0')
		return (strcmp(c->uuid, uuid) == 0);
	return (fnmatch(c->pattern, uuid, FNM_CASEFOLD) == 0);
}

/* The rights of an identity on a console; see vspcd.h. */
int
authz_rights(const struct identity *id, const char *vm_name,
    const char *port_id, const char *uuid)
{
	const struct access_rule *r;
	char norm[33];
	int rights = 0, i, j;
	bool who;

	if (id == NULL || !authz_str_ok(id->name, sizeof id->name))
		return (0);
	if (id->kind == IDENT_UNIX && id->uid == 0)
		return (RIGHT_ALL);
	if (!cfg.access_set)
		return (id->loopback ? RIGHT_READ | RIGHT_WRITE : 0);

	if (uuid != NULL) {
		if (vmwext_uuid_normalise((const uint8_t *)uuid,
		    strlen(uuid), norm) == 0)
			uuid = norm;
		else
			uuid = NULL;
	}
	for (i = 0; i < cfg.n_access; i++) {
		r = &cfg.access[i];
		if ((r->rights & ~rights) == 0)
			continue;	/* nothing new to gain */
		who = false;
		for (j = 0; j < r->n_who && !who; j++)
			who = authz_who_match(&r->who[j], id);
		if (!who)
			continue;
		for (j = 0; j < r->n_consoles; j++) {
			if (authz_console_match(&r->consoles[j], vm_name,
			    port_id, uuid)) {
				rights |= r->rights;
				break;
			}
		}
	}
	return (rights);
}

/* The sharing mode of a console: the first sharing rule that matches. */
enum sharing_mode
authz_sharing_mode(const char *vm_name, const char *port_id, const char *uuid)
{
	const struct sharing_rule *r;
	char norm[33];
	int i, j;

	if (uuid != NULL) {
		if (vmwext_uuid_normalise((const uint8_t *)uuid,
		    strlen(uuid), norm) == 0)
			uuid = norm;
		else
			uuid = NULL;
	}
	for (i = 0; i < cfg.n_sharing_rules; i++) {
		r = &cfg.sharing_rules[i];
		for (j = 0; j < r->n_consoles; j++) {
			if (authz_console_match(&r->consoles[j], vm_name,
			    port_id, uuid))
				return (r->mode);
		}
	}
	return (cfg.sharing);
}

/* Decode the hash of a NAME:SHA256HEX item; returns the name length or 0. */
static size_t
authz_token_parse(const char *item, uint8_t hash[AUTHZ_HASH_LEN])
{
	const char *colon, *h;
	unsigned int hi, lo;
	size_t i;

	if ((colon = strchr(item, ':')) == NULL || colon == item)
		return (0);
	h = colon + 1;
	if (strlen(h) != 2 * AUTHZ_HASH_LEN)
		return (0);
	for (i = 0; i < AUTHZ_HASH_LEN; i++) {
		if (!isxdigit((unsigned char)h[2 * i]) ||
		    !isxdigit((unsigned char)h[2 * i + 1]))
			return (0);
		hi = (unsigned int)(isdigit((unsigned char)h[2 * i]) ?
		    h[2 * i] - '0' : tolower((unsigned char)h[2 * i]) -
		    'a' + 10);
		lo = (unsigned int)(isdigit((unsigned char)h[2 * i + 1]) ?
		    h[2 * i + 1] - '0' : tolower((unsigned char)h[2 * i + 1]) -
		    'a' + 10);
		hash[i] = (uint8_t)(hi << 4 | lo);
	}
	return ((size_t)(colon - item));
}

/* Find the configured token whose hash is SHA-256(presented); see vspcd.h. */
int
authz_token_lookup(const char *presented, char *name, size_t namelen)
{
	uint8_t digest[AUTHZ_HASH_LEN], want[AUTHZ_HASH_LEN];
	unsigned int dlen = 0;
	size_t nlen, found_len = 0;
	int i, found = -1;

	if (presented == NULL || *presented == '\0' || name == NULL ||
	    namelen == 0)
		return (-1);
	if (EVP_Digest(presented, strlen(presented), digest, &dlen,
	    EVP_sha256(), NULL) != 1 || dlen != AUTHZ_HASH_LEN)
		return (-1);
	for (i = 0; i < cfg.n_tokens; i++) {
		if ((nlen = authz_token_parse(cfg.tokens[i], want)) == 0)
			continue;
		if (CRYPTO_memcmp(digest, want, sizeof digest) == 0 &&
		    found == -1) {
			found = i;
			found_len = nlen;
		}
	}
	explicit_bzero(digest, sizeof digest);
	if (found == -1 || found_len >= namelen)
		return (-1);
	memcpy(name, cfg.tokens[found], found_len);
	name[found_len] = '\0';
	return (0);
}

/* Write rights as "read,write,force,admin" (or "none") into buf. */
const char *
authz_rights_str(int rights, char *buf, size_t len)
{
	static const char *const names[] = { "read", "write", "force",
	    "admin" };
	size_t i;

	if (len == 0)
		return (buf);
	buf[0] = '\0';
	for (i = 0; i < nitems(names); i++) {
		if (!(rights & (1 << i)))
			continue;
		if (buf[0] != '\0')
			strlcat(buf, ",", len);
		strlcat(buf, names[i], len);
	}
	if (buf[0] == '\0')
		strlcpy(buf, "none", len);
	return (buf);
}
