/*
 * Pure codec for VMware's telnet extension (option 232, VMWARE-TELNET-EXT):
 * decodes the payload of one IAC SB 232 ... IAC SE (as already un-doubled by
 * the telnet codec) into a tagged message, and encodes commands with 0xFF
 * doubled. It holds no policy: what to do with a message is the daemon's.
 * Also the pure helpers around identity: UUID normalisation and service URI
 * matching.
 */
#ifndef VMWEXT_H
#define VMWEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vmwext_cmd {
	VMWEXT_KNOWN_SUBOPTIONS_1 = 0,
	VMWEXT_KNOWN_SUBOPTIONS_2 = 1,
	VMWEXT_UNKNOWN_SUBOPTION_RCVD_1 = 2,
	VMWEXT_UNKNOWN_SUBOPTION_RCVD_2 = 3,
	VMWEXT_VMOTION_BEGIN = 40,
	VMWEXT_VMOTION_GOAHEAD = 41,
	VMWEXT_VMOTION_NOTNOW = 43,
	VMWEXT_VMOTION_PEER = 44,
	VMWEXT_VMOTION_PEER_OK = 45,
	VMWEXT_VMOTION_COMPLETE = 46,
	VMWEXT_VMOTION_ABORT = 48,
	VMWEXT_DO_PROXY = 70,
	VMWEXT_WILL_PROXY = 71,
	VMWEXT_WONT_PROXY = 73,
	VMWEXT_VM_VC_UUID = 80,
	VMWEXT_GET_VM_VC_UUID = 81,
	VMWEXT_VM_NAME = 82,
	VMWEXT_GET_VM_NAME = 83,
	VMWEXT_VM_BIOS_UUID = 84,
	VMWEXT_GET_VM_BIOS_UUID = 85,
	VMWEXT_VM_LOCATION_UUID = 86,
	VMWEXT_GET_VM_LOCATION_UUID = 87,
};

enum vmwext_status {
	VMWEXT_OK = 0,
	VMWEXT_EMPTY,		/* SB with no command byte */
	VMWEXT_UNKNOWN,		/* command code not in the table (m->cmd set) */
	VMWEXT_BADLEN,		/* payload length invalid for the command */
};

/* Upper bound for opaque fields we store (sequence, secret, cookie). */
#define VMWEXT_COOKIE_MAX	64

struct vmwext_msg {
	uint8_t cmd;
	const uint8_t *payload;	/* bytes after the command; points into input */
	size_t len;
	/* Views into payload, set for the commands that have them. */
	uint8_t direction;	/* DO_PROXY: 'S' or 'C' (any byte accepted) */
	const uint8_t *uri;	/* DO_PROXY: service URI (may be empty) */
	size_t uri_len;
	uint8_t code;		/* UNKNOWN_SUBOPTION_RCVD_1/2 */
};

/*
 * Decode one SB payload (starting at the command byte). Length rules:
 * UNKNOWN-* need exactly 1 byte; DO-PROXY at least 1; WILL/WONT-PROXY,
 * ABORT and GET-* are lenient (extra bytes ignored, still OK); BEGIN,
 * NOTNOW, PEER-OK, COMPLETE, GOAHEAD and PEER need 1..VMWEXT_COOKIE_MAX
 * bytes. Returns an enum vmwext_status; on UNKNOWN and BADLEN m->cmd is set.
 */
int vmwext_decode(const uint8_t *sb, size_t len, struct vmwext_msg *m);

/* Name of a command ("VMOTION-BEGIN"), or "UNKNOWN". */
const char *vmwext_cmd_name(uint8_t cmd);

/* True if cmd is one of the codes of enum vmwext_cmd. */
bool vmwext_cmd_known(uint8_t cmd);

/* The fixed KNOWN-SUBOPTIONS-2 list we send (includes every vMotion code). */
extern const uint8_t vmwext_ks2_list[];
extern const size_t vmwext_ks2_len;

/*
 * Encode IAC SB 232 cmd a b IAC SE with 0xFF doubled in a and b (either may
 * be NULL/0). Returns the length, or 0 if it does not fit in cap.
 */
size_t vmwext_encode(uint8_t *dst, size_t cap, uint8_t cmd,
    const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/*
 * Normalise a UUID as sent in VM-VC-UUID: drop spaces and '-', lowercase,
 * require exactly 32 hex digits. Writes 32 chars + NUL into out. Returns 0,
 * or -1 if raw is not a UUID.
 */
int vmwext_uuid_normalise(const uint8_t *raw, size_t len, char out[33]);

/*
 * Service URI policy check. uri matches prefix if, after removing a leading
 * "telnet://" or "telnets://" authority (up to and including the first '/'
 * after it), it equals prefix, or starts with prefix followed by '?', '/'
 * or '#'. Prefix "*" matches anything. A bare "telnet://host[:port]" with
 * nothing after the authority matches any prefix.
 */
bool vmwext_uri_match(const uint8_t *uri, size_t len, const char *prefix);

/*
 * Port label from a service URI: the value of a "port=" query parameter,
 * reduced to [A-Za-z0-9._-] and at most outcap-1 chars. Returns its length
 * (0 and out="" when there is none).
 */
size_t vmwext_uri_label(const uint8_t *uri, size_t len, char *out,
    size_t outcap);

#endif
