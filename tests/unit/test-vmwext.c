/*
 * Unit tests for the option 232 codec. Vectors come from
 * PROTOCOL-VMWARE.md section 11 (TV-1..TV-9) and from the capture transcript
 * in tests/data/capture-transcript.tsv, read at run time (ctest runs the
 * binary from the source directory). The replay tests feed each captured
 * stream through the real telnet codec, cut in every possible way, and
 * require the same decoded messages and data every time.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "telnet.h"
#include "vmwext.h"

#define TRANSCRIPT	"tests/data/capture-transcript.tsv"

/* The 47-byte VM-VC-UUID text of the capture. */
#define CAP_UUID	"01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00"
#define CAP_UUID_NORM	"0123456789abcdeffedcba9800000000"

/* ESXi's KNOWN-SUBOPTIONS-1 as captured, unsorted. */
static const uint8_t cap_ks1[] = {
	0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80, 81,
	84, 85, 86, 87, 82, 83,
};

/* One TCP segment of the transcript. */
struct seg {
	int stream;
	bool vp;		/* V>P, else P>V */
	bool fin;
	const uint8_t *data;
	size_t len;
};

/* The whole transcript, loaded once by load_transcript(). */
static struct {
	bool loaded;
	struct seg segs[512];
	size_t nsegs;
	uint8_t pool[32768];
	size_t used;
} tr;

/* Load the capture transcript; false if it cannot be read. */
static bool
load_transcript(void)
{
	char line[4096], *f[5], *s;
	struct seg *sg;
	FILE *fp;
	size_t n;
	int i;

	if (tr.loaded)
		return (true);
	if ((fp = fopen(TRANSCRIPT, "r")) == NULL) {
		fprintf(stderr, "cannot open %s (run from the source dir)\n",
		    TRANSCRIPT);
		return (false);
	}
	while (fgets(line, sizeof line, fp) != NULL) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		line[strcspn(line, "\r\n")] = '\0';
		s = line;
		for (i = 0; i < 5; i++) {
			f[i] = s;
			if (s != NULL && (s = strchr(s, '\t')) != NULL)
				*s++ = '\0';
		}
		if (f[4] == NULL || tr.nsegs == sizeof(tr.segs) /
		    sizeof(tr.segs[0])) {
			fclose(fp);
			return (false);
		}
		sg = &tr.segs[tr.nsegs++];
		sg->stream = atoi(f[1]);
		sg->vp = strcmp(f[2], "V>P") == 0;
		sg->fin = strstr(f[3], "fin") != NULL;
		n = t_hex(f[4], tr.pool + tr.used, sizeof(tr.pool) -
		    tr.used);
		sg->data = tr.pool + tr.used;
		sg->len = n;
		tr.used += n;
	}
	fclose(fp);
	tr.loaded = tr.nsegs > 0;
	return (tr.loaded);
}

/*
 * Find the next IAC SB <opt> ... IAC SE in wire bytes starting at *off and
 * un-double its payload into out (a deliberately tiny parser, independent
 * of the telnet codec). Returns the payload length, or -1 if none; *start
 * and *off are set to the SB's first byte and the byte after it.
 */
static long
sb_next(const uint8_t *w, size_t len, size_t *off, size_t *start,
    uint8_t *opt, uint8_t *out, size_t cap)
{
	size_t i, n = 0;

	for (i = *off; i + 2 < len; i++) {
		if (w[i] == 0xff && w[i + 1] == 0xff) {
			i++;
			continue;
		}
		if (w[i] == 0xff && w[i + 1] == 0xfa)
			break;
	}
	if (i + 2 >= len)
		return (-1);
	*start = i;
	*opt = w[i + 2];
	for (i += 3; i < len; i++) {
		if (w[i] == 0xff) {
			if (i + 1 >= len)
				return (-1);
			if (w[i + 1] == 0xf0) {
				*off = i + 2;
				return ((long)n);
			}
			if (w[i + 1] != 0xff)
				return (-1);
			i++;
		}
		if (n == cap)
			return (-1);
		out[n++] = w[i];
	}
	return (-1);
}

/* Extract the payload of the single SB 232 in the wire hex; -1 if none. */
static long
sb_from_hex(const char *hex, uint8_t *out, size_t cap)
{
	uint8_t wire[1024], opt;
	size_t wlen, off = 0, start;
	long n;

	wlen = t_hex(hex, wire, sizeof wire);
	n = sb_next(wire, wlen, &off, &start, &opt, out, cap);
	if (n < 0 || opt != 232 || off != wlen)
		return (-1);
	return (n);
}

/* Check the name table and the known-code predicate. */
static void
test_table(void)
{
	static const struct {
		uint8_t code;
		const char *name;
	} want[] = {
		{ 0, "KNOWN-SUBOPTIONS-1" },
		{ 1, "KNOWN-SUBOPTIONS-2" },
		{ 2, "UNKNOWN-SUBOPTION-RCVD-1" },
		{ 3, "UNKNOWN-SUBOPTION-RCVD-2" },
		{ 40, "VMOTION-BEGIN" },
		{ 41, "VMOTION-GOAHEAD" },
		{ 43, "VMOTION-NOTNOW" },
		{ 44, "VMOTION-PEER" },
		{ 45, "VMOTION-PEER-OK" },
		{ 46, "VMOTION-COMPLETE" },
		{ 48, "VMOTION-ABORT" },
		{ 70, "DO-PROXY" },
		{ 71, "WILL-PROXY" },
		{ 73, "WONT-PROXY" },
		{ 80, "VM-VC-UUID" },
		{ 81, "GET-VM-VC-UUID" },
		{ 82, "VM-NAME" },
		{ 83, "GET-VM-NAME" },
		{ 84, "VM-BIOS-UUID" },
		{ 85, "GET-VM-BIOS-UUID" },
		{ 86, "VM-LOCATION-UUID" },
		{ 87, "GET-VM-LOCATION-UUID" },
	};
	size_t i, nknown = 0;
	unsigned c;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		ASSERT_STR_EQ(vmwext_cmd_name(want[i].code), want[i].name);
		ASSERT_TRUE(vmwext_cmd_known(want[i].code));
	}
	for (c = 0; c < 256; c++) {
		if (vmwext_cmd_known((uint8_t)c))
			nknown++;
		else
			ASSERT_STR_EQ(vmwext_cmd_name((uint8_t)c), "UNKNOWN");
	}
	ASSERT_SIZE_EQ(nknown, sizeof(want) / sizeof(want[0]));
	ASSERT_TRUE(!vmwext_cmd_known(42));
	ASSERT_TRUE(!vmwext_cmd_known(47));
	ASSERT_TRUE(!vmwext_cmd_known(72));
	ASSERT_TRUE(!vmwext_cmd_known(0x99));
	ASSERT_TRUE(!vmwext_cmd_known(0xff));
}

/* Check the fixed KNOWN-SUBOPTIONS-2 list and its encoding. */
static void
test_ks2_list(void)
{
	uint8_t want[64], got[64];
	size_t wlen, n;

	wlen = t_hex("00 01 02 03 28 29 2B 2C 2D 2E 30 46 47 49 50 51 52 53",
	    want, sizeof want);
	ASSERT_MEM_EQ(vmwext_ks2_list, vmwext_ks2_len, want, wlen);

	/* Exactly what the capture's proxy sent on every connection. */
	n = vmwext_encode(got, sizeof got, VMWEXT_KNOWN_SUBOPTIONS_2,
	    vmwext_ks2_list, vmwext_ks2_len, NULL, 0);
	wlen = t_hex("ff fa e8 01 00 01 02 03 28 29 2b 2c 2d 2e 30 46 47 49 "
	    "50 51 52 53 ff f0", want, sizeof want);
	ASSERT_MEM_EQ(got, n, want, wlen);
}

/* Decode the V>P subnegotiations of TV-1 (session establishment). */
static void
test_decode_tv1(void)
{
	struct vmwext_msg m;
	uint8_t sb[256];
	char norm[33];
	long n;

	n = sb_from_hex("ff fa e8 00 00 01 02 03 28 29 2b 2c 2d 2e 30 46 47 "
	    "49 50 51 54 55 56 57 52 53 ff f0", sb, sizeof sb);
	ASSERT_TRUE(n >= 0);
	ASSERT_INT_EQ(vmwext_decode(sb, (size_t)n, &m), VMWEXT_OK);
	ASSERT_INT_EQ(m.cmd, VMWEXT_KNOWN_SUBOPTIONS_1);
	ASSERT_MEM_EQ(m.payload, m.len, cap_ks1, sizeof cap_ks1);
	ASSERT_TRUE(m.payload == sb + 1);

	n = sb_from_hex("ff fa e8 46 53 76 53 50 43 2e 70 79 ff f0", sb,
	    sizeof sb);
	ASSERT_TRUE(n >= 0);
	ASSERT_INT_EQ(vmwext_decode(sb, (size_t)n, &m), VMWEXT_OK);
	ASSERT_INT_EQ(m.cmd, VMWEXT_DO_PROXY);
	ASSERT_INT_EQ(m.direction, 'S');
	ASSERT_MEM_EQ(m.uri, m.uri_len, "vSPC.py", 7);
	ASSERT_TRUE(m.uri == sb + 2);
	ASSERT_MEM_EQ(m.payload, m.len, "SvSPC.py", 8);
	ASSERT_TRUE(vmwext_uri_match(m.uri, m.uri_len, "vSPC.py"));

	n = sb_from_hex("ff fa e8 50 30 31 20 32 33 20 34 35 20 36 37 20 38 "
	    "39 20 61 62 20 63 64 20 65 66 2d 66 65 20 64 63 20 62 61 20 39 "
	    "38 20 30 30 20 30 30 20 30 30 20 30 30 ff f0", sb, sizeof sb);
	ASSERT_TRUE(n >= 0);
	ASSERT_INT_EQ(vmwext_decode(sb, (size_t)n, &m), VMWEXT_OK);
	ASSERT_INT_EQ(m.cmd, VMWEXT_VM_VC_UUID);
	ASSERT_SIZE_EQ(m.len, 47);
	ASSERT_MEM_EQ(m.payload, m.len, CAP_UUID, strlen(CAP_UUID));
	ASSERT_INT_EQ(vmwext_uuid_normalise(m.payload, m.len, norm), 0);
	ASSERT_STR_EQ(norm, CAP_UUID_NORM);

	n = sb_from_hex("ff fa e8 52 76 6d 2d 30 30 30 30 30 ff f0", sb,
	    sizeof sb);
	ASSERT_TRUE(n >= 0);
	ASSERT_INT_EQ(vmwext_decode(sb, (size_t)n, &m), VMWEXT_OK);
	ASSERT_INT_EQ(m.cmd, VMWEXT_VM_NAME);
	ASSERT_MEM_EQ(m.payload, m.len, "vm-00000", 8);
}

/* Decode the vMotion messages of TV-3..TV-6. */
static void
test_decode_vmotion(void)
{
	static const struct {
		const char *wire;
		uint8_t cmd;
		const char *payload;
	} v[] = {
		/* TV-3 vMotion #1 and #2. */
		{ "ff fa e8 28 44 da 87 f1 ff f0", 40, "44 da 87 f1" },
		{ "ff fa e8 2c 44 da 87 f1 3c e6 4d ab ff f0", 44,
		    "44 da 87 f1 3c e6 4d ab" },
		{ "ff fa e8 2e 44 da 87 f1 ff f0", 46, "44 da 87 f1" },
		{ "ff fa e8 28 98 d9 8d b4 ff f0", 40, "98 d9 8d b4" },
		{ "ff fa e8 2c 98 d9 8d b4 64 b4 07 da ff f0", 44,
		    "98 d9 8d b4 64 b4 07 da" },
		{ "ff fa e8 2e 98 d9 8d b4 ff f0", 46, "98 d9 8d b4" },
		/* TV-4 NOTNOW; TV-5 GOAHEAD then ABORT. */
		{ "ff fa e8 28 cd 52 67 55 ff f0", 40, "cd 52 67 55" },
		{ "ff fa e8 28 61 ed 26 a2 ff f0", 40, "61 ed 26 a2" },
		{ "ff fa e8 30 ff f0", 48, "" },
		/* TV-6: 0xFF inside the sequence, un-doubled. */
		{ "ff fa e8 28 76 19 ff ff e9 ff f0", 40, "76 19 ff e9" },
		{ "ff fa e8 2c 76 19 ff ff e9 55 21 99 8c ff f0", 44,
		    "76 19 ff e9 55 21 99 8c" },
		{ "ff fa e8 2e 76 19 ff ff e9 ff f0", 46, "76 19 ff e9" },
		/* TV-9: the split BEGIN, whole. */
		{ "ff fa e8 28 76 19 | ff ff e9 ff f0", 40, "76 19 ff e9" },
	};
	struct vmwext_msg m;
	uint8_t sb[256], want[64];
	size_t i, wlen;
	long n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = sb_from_hex(v[i].wire, sb, sizeof sb);
		ASSERT_TRUE(n >= 1);
		ASSERT_INT_EQ(vmwext_decode(sb, (size_t)n, &m), VMWEXT_OK);
		ASSERT_INT_EQ(m.cmd, v[i].cmd);
		wlen = t_hex(v[i].payload, want, sizeof want);
		ASSERT_MEM_EQ(m.payload, m.len, want, wlen);
		ASSERT_TRUE(m.uri == NULL && m.uri_len == 0);
	}

	/* TV-6 unit-test requirement: the PEER key is the 8 raw bytes. */
	n = sb_from_hex("ff fa e8 2c 76 19 ff ff e9 55 21 99 8c ff f0", sb,
	    sizeof sb);
	ASSERT_INT_EQ(n, 9);
	ASSERT_INT_EQ(vmwext_decode(sb, (size_t)n, &m), VMWEXT_OK);
	ASSERT_MEM_EQ(m.payload, m.len,
	    "\x76\x19\xff\xe9\x55\x21\x99\x8c", 8);

	/* TV-7: the unescaped GOAHEAD is cut at ff e9 by a standard parser. */
	n = sb_from_hex("ff fa e8 29 76 19 ff e9 55 21 99 8c ff f0", sb,
	    sizeof sb);
	ASSERT_INT_EQ(n, -1);
}

/* Encode every P>V subnegotiation of the capture (TV-1, TV-3..TV-6). */
static void
test_encode_capture(void)
{
	static const uint8_t empty[1];
	static const struct {
		uint8_t cmd;
		const char *a;
		const char *b;
		const char *wire;
	} v[] = {
		{ 81, NULL, NULL, "ff fa e8 51 ff f0" },
		{ 83, NULL, NULL, "ff fa e8 53 ff f0" },
		{ 71, NULL, NULL, "ff fa e8 47 ff f0" },
		{ 41, "44 da 87 f1", "3c e6 4d ab",
		    "ff fa e8 29 44 da 87 f1 3c e6 4d ab ff f0" },
		{ 45, "44 da 87 f1", NULL, "ff fa e8 2d 44 da 87 f1 ff f0" },
		{ 41, "98 d9 8d b4", "64 b4 07 da",
		    "ff fa e8 29 98 d9 8d b4 64 b4 07 da ff f0" },
		{ 45, "98 d9 8d b4", NULL, "ff fa e8 2d 98 d9 8d b4 ff f0" },
		{ 43, "cd 52 67 55", NULL, "ff fa e8 2b cd 52 67 55 ff f0" },
		{ 41, "61 ed 26 a2", "ae ec 48 3f",
		    "ff fa e8 29 61 ed 26 a2 ae ec 48 3f ff f0" },
		{ 41, "76 19 ff e9", "55 21 99 8c",
		    "ff fa e8 29 76 19 ff ff e9 55 21 99 8c ff f0" },
		{ 45, "76 19 ff e9", NULL,
		    "ff fa e8 2d 76 19 ff ff e9 ff f0" },
	};
	uint8_t a[64], b[64], want[128], got[128];
	size_t i, alen, blen, wlen, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		alen = v[i].a ? t_hex(v[i].a, a, sizeof a) : 0;
		blen = v[i].b ? t_hex(v[i].b, b, sizeof b) : 0;
		wlen = t_hex(v[i].wire, want, sizeof want);
		n = vmwext_encode(got, sizeof got, v[i].cmd,
		    v[i].a ? a : NULL, alen, v[i].b ? b : NULL, blen);
		ASSERT_MEM_EQ(got, n, want, wlen);
	}

	/* A non-NULL empty field is the same as NULL. */
	n = vmwext_encode(got, sizeof got, 81, empty, 0, empty, 0);
	ASSERT_MEM_EQ(got, n, "\xff\xfa\xe8\x51\xff\xf0", 6);
}

/* Encode the option 232 lines of TV-7 and TV-8. */
static void
test_encode_tv78(void)
{
	static const struct {
		uint8_t cmd;
		const char *a;
		const char *b;
		const char *wire;
	} v[] = {
		/* TV-7, the correct bytes. */
		{ 41, "76 19 ff e9", "55 21 99 8c",
		    "ff fa e8 29 76 19 ff ff e9 55 21 99 8c ff f0" },
		/* TV-8. */
		{ 41, "76 19 ff e9", "ff 00 ff 10",
		    "ff fa e8 29 76 19 ff ff e9 ff ff 00 ff ff 10 ff f0" },
		{ 45, "76 19 ff e9", NULL,
		    "ff fa e8 2d 76 19 ff ff e9 ff f0" },
		{ 3, "54", NULL, "ff fa e8 03 54 ff f0" },
		{ 73, NULL, NULL, "ff fa e8 49 ff f0" },
		{ 48, NULL, NULL, "ff fa e8 30 ff f0" },
		{ 85, NULL, NULL, "ff fa e8 55 ff f0" },
		{ 87, NULL, NULL, "ff fa e8 57 ff f0" },
		{ 1, "00 01 02 03 28 29 2b 2c 2d 2e 30 46 47 49 50 51 52 53 "
		    "54 55 56 57", NULL,
		    "ff fa e8 01 00 01 02 03 28 29 2b 2c 2d 2e 30 46 47 49 50 "
		    "51 52 53 54 55 56 57 ff f0" },
		{ 70, "53", "76 53 50 43 2e 70 79 3f 70 6f 72 74 3d 63 6f 6d 32",
		    "ff fa e8 46 53 76 53 50 43 2e 70 79 3f 70 6f 72 74 3d 63 "
		    "6f 6d 32 ff f0" },
	};
	uint8_t a[64], b[64], want[128], got[128];
	size_t i, alen, blen, wlen, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		alen = v[i].a ? t_hex(v[i].a, a, sizeof a) : 0;
		blen = v[i].b ? t_hex(v[i].b, b, sizeof b) : 0;
		wlen = t_hex(v[i].wire, want, sizeof want);
		n = vmwext_encode(got, sizeof got, v[i].cmd,
		    v[i].a ? a : NULL, alen, v[i].b ? b : NULL, blen);
		ASSERT_MEM_EQ(got, n, want, wlen);
	}

	/* DO-PROXY as one field: same bytes. */
	n = vmwext_encode(got, sizeof got, VMWEXT_DO_PROXY,
	    (const uint8_t *)"SvSPC.py?port=com2", 18, NULL, 0);
	wlen = t_hex("ff fa e8 46 53 76 53 50 43 2e 70 79 3f 70 6f 72 74 3d "
	    "63 6f 6d 32 ff f0", want, sizeof want);
	ASSERT_MEM_EQ(got, n, want, wlen);

	/* A command byte of 0xFF is doubled too (no real code is 0xFF). */
	n = vmwext_encode(got, sizeof got, 0xff, NULL, 0, NULL, 0);
	ASSERT_MEM_EQ(got, n, "\xff\xfa\xe8\xff\xff\xff\xf0", 7);
}

/*
 * Re-encode every option 232 subnegotiation the proxy sent in the capture
 * and compare with the transcript bytes. GOAHEAD is split into its 4-byte
 * sequence and the secret, as the daemon encodes it.
 */
static void
test_encode_transcript(void)
{
	struct vmwext_msg m;
	uint8_t sb[256], got[512], opt;
	size_t i, off, start, nsb = 0, split, n;
	long len;

	ASSERT_TRUE(load_transcript());
	for (i = 0; i < tr.nsegs; i++) {
		if (tr.segs[i].vp || tr.segs[i].fin)
			continue;
		off = 0;
		while ((len = sb_next(tr.segs[i].data, tr.segs[i].len, &off,
		    &start, &opt, sb, sizeof sb)) >= 0) {
			if (opt != 232)
				continue;
			nsb++;
			ASSERT_INT_EQ(vmwext_decode(sb, (size_t)len, &m),
			    VMWEXT_OK);
			split = m.cmd == VMWEXT_VMOTION_GOAHEAD ? 4 : m.len;
			ASSERT_TRUE(split <= m.len);
			n = vmwext_encode(got, sizeof got, m.cmd, m.payload,
			    split, m.payload + split, m.len - split);
			ASSERT_MEM_EQ(got, n, tr.segs[i].data + start,
			    off - start);
		}
	}
	/* 5 + 5 + 7 + 4 P>V subnegotiations in streams 0..3. */
	ASSERT_SIZE_EQ(nsb, 21);
}

/* Check that encode never writes past cap and fails when short. */
static void
test_encode_bounds(void)
{
	static const uint8_t seq[] = { 0x76, 0x19, 0xff, 0xe9 };
	static const uint8_t sec[] = { 0xff, 0x00, 0xff, 0x10 };
	uint8_t buf[64], want[64];
	size_t room, wlen, n, i;

	wlen = vmwext_encode(want, sizeof want, VMWEXT_VMOTION_GOAHEAD, seq,
	    sizeof seq, sec, sizeof sec);
	ASSERT_SIZE_EQ(wlen, 17);
	for (room = 0; room < wlen; room++) {
		memset(buf, 0xaa, sizeof buf);
		n = vmwext_encode(buf, room, VMWEXT_VMOTION_GOAHEAD, seq,
		    sizeof seq, sec, sizeof sec);
		ASSERT_SIZE_EQ(n, 0);
		for (i = room; i < sizeof buf; i++)
			ASSERT_INT_EQ(buf[i], 0xaa);
	}
	memset(buf, 0xaa, sizeof buf);
	n = vmwext_encode(buf, wlen, VMWEXT_VMOTION_GOAHEAD, seq, sizeof seq,
	    sec, sizeof sec);
	ASSERT_MEM_EQ(buf, n, want, wlen);
	ASSERT_INT_EQ(buf[wlen], 0xaa);
	ASSERT_SIZE_EQ(vmwext_encode(NULL, 0, 81, NULL, 0, NULL, 0), 0);
}

/* Check the decoder on malformed and edge-case payloads. */
static void
test_decode_robust(void)
{
	struct vmwext_msg m;
	uint8_t sb[VMWEXT_COOKIE_MAX + 8];
	uint8_t c;

	memset(sb, 0, sizeof sb);
	memset(&m, 0x5a, sizeof m);
	ASSERT_INT_EQ(vmwext_decode(sb, 0, &m), VMWEXT_EMPTY);
	ASSERT_INT_EQ(m.cmd, 0);
	ASSERT_SIZE_EQ(m.len, 0);
	ASSERT_INT_EQ(vmwext_decode(NULL, 0, &m), VMWEXT_EMPTY);

	/* Unknown codes: cmd set, payload kept for logging. */
	sb[0] = 0x2a;
	sb[1] = 0x01;
	ASSERT_INT_EQ(vmwext_decode(sb, 2, &m), VMWEXT_UNKNOWN);
	ASSERT_INT_EQ(m.cmd, 0x2a);
	ASSERT_SIZE_EQ(m.len, 1);
	sb[0] = 0x99;
	ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_UNKNOWN);
	ASSERT_INT_EQ(m.cmd, 0x99);
	ASSERT_SIZE_EQ(m.len, 0);
	sb[0] = 0xff;
	ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_UNKNOWN);
	ASSERT_INT_EQ(m.cmd, 0xff);

	/* UNKNOWN-SUBOPTION-RCVD-*: exactly one byte. */
	for (c = 2; c <= 3; c++) {
		sb[0] = c;
		sb[1] = 0x54;
		sb[2] = 0x55;
		ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_BADLEN);
		ASSERT_INT_EQ(m.cmd, c);
		ASSERT_INT_EQ(vmwext_decode(sb, 3, &m), VMWEXT_BADLEN);
		ASSERT_INT_EQ(m.cmd, c);
		ASSERT_INT_EQ(vmwext_decode(sb, 2, &m), VMWEXT_OK);
		ASSERT_INT_EQ(m.code, 0x54);
	}

	/* Cookie commands: 1..VMWEXT_COOKIE_MAX bytes. */
	memset(sb, 0xff, sizeof sb);
	for (c = 40; c <= 46; c++) {
		if (c == 42)
			continue;
		sb[0] = c;
		ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_BADLEN);
		ASSERT_INT_EQ(m.cmd, c);
		ASSERT_INT_EQ(vmwext_decode(sb, 2, &m), VMWEXT_OK);
		ASSERT_INT_EQ(vmwext_decode(sb, 1 + VMWEXT_COOKIE_MAX, &m),
		    VMWEXT_OK);
		ASSERT_SIZE_EQ(m.len, VMWEXT_COOKIE_MAX);
		ASSERT_INT_EQ(vmwext_decode(sb, 2 + VMWEXT_COOKIE_MAX, &m),
		    VMWEXT_BADLEN);
		ASSERT_INT_EQ(m.cmd, c);
	}

	/* DO-PROXY: empty is bad; 'C' and a bare direction are fine. */
	sb[0] = VMWEXT_DO_PROXY;
	ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_BADLEN);
	ASSERT_INT_EQ(m.cmd, VMWEXT_DO_PROXY);
	ASSERT_TRUE(m.uri == NULL);
	memcpy(sb + 1, "Ctelnet://example.com", 21);
	ASSERT_INT_EQ(vmwext_decode(sb, 22, &m), VMWEXT_OK);
	ASSERT_INT_EQ(m.direction, 'C');
	ASSERT_MEM_EQ(m.uri, m.uri_len, "telnet://example.com", 20);
	ASSERT_INT_EQ(vmwext_decode(sb, 2, &m), VMWEXT_OK);
	ASSERT_INT_EQ(m.direction, 'C');
	ASSERT_SIZE_EQ(m.uri_len, 0);
	ASSERT_TRUE(m.uri == sb + 2);

	/* Lenient commands: extra bytes ignored. */
	sb[1] = 0x01;
	sb[2] = 0x02;
	for (c = 0; c < 6; c++) {
		static const uint8_t lenient[] = { 48, 71, 73, 81, 83, 85 };

		sb[0] = lenient[c];
		ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_OK);
		ASSERT_SIZE_EQ(m.len, 0);
		ASSERT_INT_EQ(vmwext_decode(sb, 3, &m), VMWEXT_OK);
		ASSERT_SIZE_EQ(m.len, 2);
	}

	/* Lists and text: any length, including none. */
	for (c = 0; c < 6; c++) {
		static const uint8_t any[] = { 0, 1, 80, 82, 84, 86 };

		sb[0] = any[c];
		ASSERT_INT_EQ(vmwext_decode(sb, 1, &m), VMWEXT_OK);
		ASSERT_SIZE_EQ(m.len, 0);
		ASSERT_INT_EQ(vmwext_decode(sb, sizeof sb, &m), VMWEXT_OK);
		ASSERT_SIZE_EQ(m.len, sizeof sb - 1);
		ASSERT_TRUE(m.payload == sb + 1);
	}
}

/* Check UUID normalisation. */
static void
test_uuid(void)
{
	static const struct {
		const char *in;
		const char *out;	/* NULL: rejected */
	} v[] = {
		{ CAP_UUID, CAP_UUID_NORM },
		{ "68 4c 91 6c 5f 6c 4c 2f-aa 50 df d6 61 a2 2e 0d",
		    "684c916c5f6c4c2faa50dfd661a22e0d" },
		{ "01 23 45 67 89 AB CD EF-FE DC BA 98 00 00 00 00",
		    CAP_UUID_NORM },
		{ "01234567-89ab-cdef-fedc-ba9800000000", CAP_UUID_NORM },
		{ "01234567-89AB-CDEF-FEDC-BA9800000000", CAP_UUID_NORM },
		{ "0123456789abcdeffedcba9800000000", CAP_UUID_NORM },
		{ "5037c7d794d4d0fe-9271993db2ea9630",
		    "5037c7d794d4d0fe9271993db2ea9630" },
		{ "", NULL },
		{ " - ", NULL },
		{ "0123456789abcdeffedcba980000000", NULL },
		{ "0123456789abcdeffedcba98000000000", NULL },
		{ "0123456789abcdeffedcba98000000000000", NULL },
		{ "0123456789abcdeffedcba980000000g", NULL },
		{ "{01234567-89ab-cdef-fedc-ba9800000000}", NULL },
		{ "01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00\n", NULL },
		{ "01 23 45 67 89 ab cd ef:fe dc ba 98 00 00 00 00", NULL },
		{ "0x0123456789abcdeffedcba98000000", NULL },
	};
	char out[33];
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(out, 'X', sizeof out);
		if (v[i].out != NULL) {
			ASSERT_INT_EQ(vmwext_uuid_normalise(
			    (const uint8_t *)v[i].in, strlen(v[i].in), out), 0);
			ASSERT_STR_EQ(out, v[i].out);
		} else {
			ASSERT_INT_EQ(vmwext_uuid_normalise(
			    (const uint8_t *)v[i].in, strlen(v[i].in), out),
			    -1);
			ASSERT_STR_EQ(out, "");
		}
	}

	/* An embedded NUL is rejected, not treated as a terminator. */
	ASSERT_INT_EQ(vmwext_uuid_normalise((const uint8_t *)
	    "0123456789abcdeffedcba9800000000\0", 33, out), -1);
	ASSERT_INT_EQ(vmwext_uuid_normalise((const uint8_t *)
	    "0123456789abcdef\0fedcba9800000000", 33, out), -1);
	/* Only len bytes are read. */
	ASSERT_INT_EQ(vmwext_uuid_normalise((const uint8_t *)
	    "0123456789abcdeffedcba9800000000ff", 32, out), 0);
	ASSERT_STR_EQ(out, CAP_UUID_NORM);
	ASSERT_INT_EQ(vmwext_uuid_normalise(NULL, 0, out), -1);
}

/* Check service URI matching against a prefix. */
static void
test_uri_match(void)
{
	static const struct {
		const char *uri;
		const char *prefix;
		bool match;
	} v[] = {
		{ "vSPC.py", "vSPC.py", true },
		{ "vSPC.py?port=com2", "vSPC.py", true },
		{ "vSPC.py/x", "vSPC.py", true },
		{ "vSPC.py#frag", "vSPC.py", true },
		{ "vSPC.pyx", "vSPC.py", false },
		{ "vSPC.p", "vSPC.py", false },
		{ "vspc.py", "vSPC.py", false },
		{ "VSPC.PY", "vSPC.py", false },
		{ " vSPC.py", "vSPC.py", false },
		{ "telnet://host:13370/vSPC.py?port=a", "vSPC.py", true },
		{ "telnet://host:13370", "vSPC.py", true },
		{ "telnet://host:13370/", "vSPC.py", true },
		{ "telnet://host:13370#thumbprint=ab:cd", "vSPC.py", true },
		{ "telnets://h/vSPC.py", "vSPC.py", true },
		{ "TELNET://h/vSPC.py", "vSPC.py", true },
		{ "telnet://h/other", "vSPC.py", false },
		{ "telnet://h/vSPC.pyx", "vSPC.py", false },
		{ "telnet://h/a/vSPC.py", "vSPC.py", false },
		{ "telnet:/h/vSPC.py", "vSPC.py", false },
		{ "ssh://h/vSPC.py", "vSPC.py", false },
		{ "", "vSPC.py", false },
		{ "", "*", true },
		{ "anything at all", "*", true },
		{ "telnet://h/other", "*", true },
		{ "vmware-vspc", "vmware-vspc", true },
		{ "vmware-vspc", "vSPC.py", false },
	};
	size_t i;
	bool got;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		got = vmwext_uri_match((const uint8_t *)v[i].uri,
		    strlen(v[i].uri), v[i].prefix);
		if (got != v[i].match)
			fprintf(stderr, "  uri \"%s\" prefix \"%s\"\n",
			    v[i].uri, v[i].prefix);
		ASSERT_INT_EQ(got, v[i].match);
	}

	/* Only len bytes count, and a NUL is just a byte. */
	ASSERT_TRUE(!vmwext_uri_match((const uint8_t *)"vSPC.py", 6,
	    "vSPC.py"));
	ASSERT_TRUE(vmwext_uri_match((const uint8_t *)"vSPC.pyQ", 7,
	    "vSPC.py"));
	ASSERT_TRUE(!vmwext_uri_match((const uint8_t *)"vSPC.py\0", 8,
	    "vSPC.py"));
	ASSERT_TRUE(!vmwext_uri_match((const uint8_t *)"telnet://h", 8,
	    "vSPC.py"));
	ASSERT_TRUE(vmwext_uri_match(NULL, 0, "*"));
	ASSERT_TRUE(!vmwext_uri_match(NULL, 0, "vSPC.py"));
}

/* Check port label extraction from a service URI. */
static void
test_uri_label(void)
{
	static const struct {
		const char *uri;
		const char *label;
	} v[] = {
		{ "vSPC.py?port=com2", "com2" },
		{ "vSPC.py?a=1&port=x/../y", "x..y" },
		{ "vSPC.py?portx=1", "" },
		{ "vSPC.py?xport=1", "" },
		{ "vSPC.py?port", "" },
		{ "vSPC.py?port=", "" },
		{ "vSPC.py", "" },
		{ "", "" },
		{ "vSPC.py?port=a&port=b", "a" },
		{ "vSPC.py?x=1&&port=b&y=2", "b" },
		{ "vSPC.py?port=com 2;rm -rf", "com2rm-rf" },
		{ "vSPC.py?port=a_B-9.z#port=zz", "a_B-9.z" },
		{ "vSPC.py#x?port=a", "" },
		{ "telnet://host:13370/vSPC.py?port=a", "a" },
		{ "port=a", "" },
	};
	char out[64];
	size_t i, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(out, 'X', sizeof out);
		n = vmwext_uri_label((const uint8_t *)v[i].uri,
		    strlen(v[i].uri), out, sizeof out);
		ASSERT_STR_EQ(out, v[i].label);
		ASSERT_SIZE_EQ(n, strlen(v[i].label));
	}

	/* Truncated to outcap - 1. */
	memset(out, 'X', sizeof out);
	n = vmwext_uri_label((const uint8_t *)"vSPC.py?port=abcdefgh", 21,
	    out, 5);
	ASSERT_SIZE_EQ(n, 4);
	ASSERT_STR_EQ(out, "abcd");
	ASSERT_INT_EQ(out[5], 'X');
	n = vmwext_uri_label((const uint8_t *)"vSPC.py?port=abcdefgh", 21,
	    out, 1);
	ASSERT_SIZE_EQ(n, 0);
	ASSERT_STR_EQ(out, "");
	out[0] = 'X';
	n = vmwext_uri_label((const uint8_t *)"vSPC.py?port=abcdefgh", 21,
	    out, 0);
	ASSERT_SIZE_EQ(n, 0);
	ASSERT_INT_EQ(out[0], 'X');
	/* Only len bytes are read. */
	n = vmwext_uri_label((const uint8_t *)"vSPC.py?port=ab&x", 14, out,
	    sizeof out);
	ASSERT_STR_EQ(out, "a");
	ASSERT_SIZE_EQ(n, 1);
}

/*
 * A canonical text trace of what one direction of a stream decodes to:
 * "D <hex>" for a run of data (adjacent runs merged, so the trace does not
 * depend on how the codec cut them), "SB <cmd> <status> <hex payload>" for
 * each option 232 subnegotiation, and other lines for anything unexpected.
 */
struct trace {
	char buf[16384];
	size_t len;
	bool in_data;
	bool overflow;
	size_t nsb;
};

/* Append formatted text to a trace. */
static void
trace_add(struct trace *tc, const char *fmt, ...)
    __attribute__((__format__(__printf__, 2, 3)));

static void
trace_add(struct trace *tc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (tc->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(tc->buf + tc->len, sizeof(tc->buf) - tc->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tc->buf) - tc->len) {
		tc->overflow = true;
		return;
	}
	tc->len += (size_t)n;
}

/* Start an empty trace. */
static void
trace_init(struct trace *tc)
{
	memset(tc, 0, sizeof(*tc));
}

/* End the current data line, if any. */
static void
trace_flush(struct trace *tc)
{
	if (tc->in_data)
		trace_add(tc, "\n");
	tc->in_data = false;
}

/* Record data bytes. */
static void
trace_data(struct trace *tc, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (!tc->in_data)
			trace_add(tc, "D ");
		tc->in_data = true;
		trace_add(tc, "%02x", p[i]);
	}
}

/* Record one decoded option 232 message. */
static void
trace_sb(struct trace *tc, unsigned cmd, int status, const uint8_t *p,
    size_t len)
{
	size_t i;

	trace_flush(tc);
	trace_add(tc, "SB %u %d ", cmd, status);
	for (i = 0; i < len; i++)
		trace_add(tc, "%02x", p[i]);
	trace_add(tc, "\n");
	tc->nsb++;
}

/* Record an expected message given as hex. */
static void
trace_sb_hex(struct trace *tc, unsigned cmd, const char *hex)
{
	uint8_t p[256];

	trace_sb(tc, cmd, VMWEXT_OK, p, t_hex(hex, p, sizeof p));
}

/* Record an expected message given as text. */
static void
trace_sb_text(struct trace *tc, unsigned cmd, const char *text)
{
	trace_sb(tc, cmd, VMWEXT_OK, (const uint8_t *)text, strlen(text));
}

/* Record the expected data bytes lo..hi inclusive. */
static void
trace_range(struct trace *tc, uint8_t lo, uint8_t hi)
{
	uint8_t c;

	for (c = lo;; c++) {
		trace_data(tc, &c, 1);
		if (c == hi)
			break;
	}
}

/* Telnet callback: decode option 232 and record it, with data. */
static void
replay_cb(void *arg, const struct telnet_event *ev)
{
	struct trace *tc = arg;
	struct vmwext_msg m;
	int status;

	switch (ev->type) {
	case TELNET_EV_DATA:
		trace_data(tc, ev->data, ev->len);
		break;
	case TELNET_EV_SB:
		if (ev->opt != 232) {
			trace_flush(tc);
			trace_add(tc, "SB-OPT %u len %zu\n", ev->opt, ev->len);
			break;
		}
		status = vmwext_decode(ev->data, ev->len, &m);
		if (ev->len > 0 && (m.payload != ev->data + 1 ||
		    m.len != ev->len - 1)) {
			trace_flush(tc);
			trace_add(tc, "BAD-VIEW\n");
			break;
		}
		trace_sb(tc, m.cmd, status, m.payload, m.len);
		if (m.cmd == VMWEXT_DO_PROXY && status == VMWEXT_OK)
			trace_add(tc, "  dir %c uri %.*s\n", m.direction,
			    (int)m.uri_len, (const char *)m.uri);
		break;
	case TELNET_EV_ERROR:
		trace_flush(tc);
		trace_add(tc, "ERROR %d\n", (int)ev->err);
		break;
	default:
		/* Negotiation and replies are the telnet tests' business. */
		break;
	}
}

/* The bytes of one direction of one stream, with segment boundaries. */
struct flow {
	uint8_t buf[4096];
	size_t len;
	size_t cut[256];	/* end offset of each segment */
	size_t ncut;
};

/* Collect one direction of one captured stream. */
static bool
flow_load(struct flow *f, int stream, bool vp)
{
	size_t i;

	memset(f, 0, sizeof(*f));
	if (!load_transcript())
		return (false);
	for (i = 0; i < tr.nsegs; i++) {
		if (tr.segs[i].stream != stream || tr.segs[i].vp != vp ||
		    tr.segs[i].len == 0)
			continue;
		if (tr.segs[i].len > sizeof(f->buf) - f->len ||
		    f->ncut == sizeof(f->cut) / sizeof(f->cut[0]))
			return (false);
		memcpy(f->buf + f->len, tr.segs[i].data, tr.segs[i].len);
		f->len += tr.segs[i].len;
		f->cut[f->ncut++] = f->len;
	}
	return (f->len > 0);
}

/* Feed the flow to a fresh telnet codec in pieces ending at cuts. */
static void
replay_run(const struct flow *f, const size_t *cuts, size_t ncuts,
    struct trace *tc)
{
	struct telnet t;
	size_t i, from = 0;

	trace_init(tc);
	telnet_init(&t, replay_cb, tc);
	telnet_set_accept(&t, TELOPT_BINARY, true, true);
	telnet_set_accept(&t, TELOPT_SGA, true, true);
	telnet_set_accept(&t, TELOPT_VMWARE, false, true);
	for (i = 0; i < ncuts; i++) {
		telnet_input(&t, f->buf + from, cuts[i] - from);
		from = cuts[i];
	}
	telnet_input(&t, f->buf + from, f->len - from);
	telnet_free(&t);
	trace_flush(tc);
}

/*
 * Replay one direction of a stream with the real segments, split in two at
 * every offset, and one byte at a time; every trace must equal want.
 */
static void
replay_check(int stream, bool vp, struct trace *want)
{
	static struct flow f;
	static struct trace got;
	size_t k, cuts[4096];

	trace_flush(want);
	ASSERT_TRUE(!want->overflow);
	ASSERT_TRUE(flow_load(&f, stream, vp));

	/* (a) The real TCP segment boundaries. */
	replay_run(&f, f.cut, f.ncut, &got);
	ASSERT_TRUE(!got.overflow);
	ASSERT_STR_EQ(got.buf, want->buf);
	ASSERT_SIZE_EQ(got.nsb, want->nsb);

	/* (b) Two pieces, cut at every offset (0 and len included). */
	for (k = 0; k <= f.len; k++) {
		cuts[0] = k;
		replay_run(&f, cuts, 1, &got);
		if (strcmp(got.buf, want->buf) != 0)
			fprintf(stderr, "  split at offset %zu\n", k);
		ASSERT_STR_EQ(got.buf, want->buf);
	}

	/* (c) One byte at a time. */
	for (k = 0; k < f.len; k++)
		cuts[k] = k + 1;
	replay_run(&f, cuts, f.len, &got);
	ASSERT_STR_EQ(got.buf, want->buf);
}

/* Add the identification every connection of the capture goes through. */
static void
expect_identity(struct trace *want)
{
	trace_sb_text(want, VMWEXT_VM_VC_UUID, CAP_UUID);
	trace_sb_text(want, VMWEXT_VM_NAME, "vm-00000");
}

/* Replay stream 0, V>P: TV-1, TV-2 and the first BEGIN. */
static void
test_replay_stream0(void)
{
	static struct trace want;

	trace_init(&want);
	trace_sb(&want, VMWEXT_KNOWN_SUBOPTIONS_1, VMWEXT_OK, cap_ks1,
	    sizeof cap_ks1);
	trace_sb_text(&want, VMWEXT_DO_PROXY, "SvSPC.py");
	trace_add(&want, "  dir S uri vSPC.py\n");
	expect_identity(&want);
	trace_range(&want, 0x20, 0x38);
	trace_sb_hex(&want, VMWEXT_VMOTION_BEGIN, "44 da 87 f1");
	replay_check(0, true, &want);
}

/* Replay stream 1, V>P: destination of vMotion 1, source of vMotion 2. */
static void
test_replay_stream1(void)
{
	static struct trace want;

	trace_init(&want);
	trace_sb(&want, VMWEXT_KNOWN_SUBOPTIONS_1, VMWEXT_OK, cap_ks1,
	    sizeof cap_ks1);
	trace_sb_hex(&want, VMWEXT_VMOTION_PEER, "44 da 87 f1 3c e6 4d ab");
	expect_identity(&want);
	trace_sb_hex(&want, VMWEXT_VMOTION_COMPLETE, "44 da 87 f1");
	trace_range(&want, 0x39, 0x4d);
	trace_sb_hex(&want, VMWEXT_VMOTION_BEGIN, "98 d9 8d b4");
	replay_check(1, true, &want);
}

/* Replay stream 2, V>P: TV-3 #2, TV-4 NOTNOW, TV-5 ABORT, TV-6 BEGIN. */
static void
test_replay_stream2(void)
{
	static struct trace want;

	trace_init(&want);
	trace_sb(&want, VMWEXT_KNOWN_SUBOPTIONS_1, VMWEXT_OK, cap_ks1,
	    sizeof cap_ks1);
	trace_sb_hex(&want, VMWEXT_VMOTION_PEER, "98 d9 8d b4 64 b4 07 da");
	expect_identity(&want);
	trace_sb_hex(&want, VMWEXT_VMOTION_COMPLETE, "98 d9 8d b4");
	trace_range(&want, 'N', 'e');
	trace_sb_hex(&want, VMWEXT_VMOTION_BEGIN, "cd 52 67 55");	/* NOTNOW */
	trace_range(&want, 'f', '{');
	trace_sb_hex(&want, VMWEXT_VMOTION_BEGIN, "61 ed 26 a2");
	trace_sb_hex(&want, VMWEXT_VMOTION_ABORT, "");
	trace_range(&want, '|', '~');
	trace_range(&want, ' ', '2');
	trace_sb_hex(&want, VMWEXT_VMOTION_BEGIN, "76 19 ff e9");
	replay_check(2, true, &want);
}

/* Replay stream 3, V>P: destination of the vMotion with 0xFF (TV-6). */
static void
test_replay_stream3(void)
{
	static struct trace want;

	trace_init(&want);
	trace_sb(&want, VMWEXT_KNOWN_SUBOPTIONS_1, VMWEXT_OK, cap_ks1,
	    sizeof cap_ks1);
	trace_sb_hex(&want, VMWEXT_VMOTION_PEER, "76 19 ff e9 55 21 99 8c");
	expect_identity(&want);
	trace_sb_hex(&want, VMWEXT_VMOTION_COMPLETE, "76 19 ff e9");
	replay_check(3, true, &want);
}

/* Add the proxy's opening every P>V flow starts with. */
static void
expect_proxy_open(struct trace *want)
{
	trace_sb(want, VMWEXT_KNOWN_SUBOPTIONS_2, VMWEXT_OK, vmwext_ks2_list,
	    vmwext_ks2_len);
	trace_sb_hex(want, VMWEXT_GET_VM_VC_UUID, "");
	trace_sb_hex(want, VMWEXT_GET_VM_NAME, "");
}

/*
 * Replay the proxy's side too: every P>V flow decodes to the proxy's
 * replies in capture order (on stream 2: PEER-OK, NOTNOW, two GOAHEADs).
 */
static void
test_replay_proxy(void)
{
	static struct trace want;

	trace_init(&want);
	expect_proxy_open(&want);
	trace_sb_hex(&want, VMWEXT_WILL_PROXY, "");
	trace_sb_hex(&want, VMWEXT_VMOTION_GOAHEAD, "44da87f1 3ce64dab");
	replay_check(0, false, &want);
	if (t_failed_current)
		return;

	trace_init(&want);
	expect_proxy_open(&want);
	trace_sb_hex(&want, VMWEXT_VMOTION_PEER_OK, "44da87f1");
	trace_sb_hex(&want, VMWEXT_VMOTION_GOAHEAD, "98d98db4 64b407da");
	replay_check(1, false, &want);
	if (t_failed_current)
		return;

	trace_init(&want);
	expect_proxy_open(&want);
	trace_sb_hex(&want, VMWEXT_VMOTION_PEER_OK, "98d98db4");
	trace_sb_hex(&want, VMWEXT_VMOTION_NOTNOW, "cd526755");
	trace_sb_hex(&want, VMWEXT_VMOTION_GOAHEAD, "61ed26a2 aeec483f");
	trace_sb_hex(&want, VMWEXT_VMOTION_GOAHEAD, "7619ffe9 5521998c");
	replay_check(2, false, &want);
	if (t_failed_current)
		return;

	trace_init(&want);
	expect_proxy_open(&want);
	trace_sb_hex(&want, VMWEXT_VMOTION_PEER_OK, "7619ffe9");
	replay_check(3, false, &want);
}

/* TV-9: a BEGIN split across reads, and a foreign SB around it. */
static void
test_replay_tv9(void)
{
	static struct flow f;
	static struct trace want, got;
	size_t cuts[1];

	memset(&f, 0, sizeof f);
	f.len = t_hex("31 ff fa 7b 01 ff ff 02 ff f0 32 ff fa e8 28 76 19 "
	    "ff ff e9 ff f0 33", f.buf, sizeof f.buf);
	trace_init(&want);
	trace_add(&want, "D 31\nSB-OPT 123 len 3\nD 32\n");
	trace_sb_hex(&want, VMWEXT_VMOTION_BEGIN, "76 19 ff e9");
	trace_add(&want, "D 33\n");

	cuts[0] = 17;	/* after "ff fa e8 28 76 19" */
	replay_run(&f, cuts, 1, &got);
	ASSERT_STR_EQ(got.buf, want.buf);
	cuts[0] = 19;	/* between the two halves of the doubled ff */
	replay_run(&f, cuts, 1, &got);
	ASSERT_STR_EQ(got.buf, want.buf);
}

/* Run every test. */
int
main(void)
{
	T_RUN(test_table);
	T_RUN(test_ks2_list);
	T_RUN(test_decode_tv1);
	T_RUN(test_decode_vmotion);
	T_RUN(test_encode_capture);
	T_RUN(test_encode_tv78);
	T_RUN(test_encode_transcript);
	T_RUN(test_encode_bounds);
	T_RUN(test_decode_robust);
	T_RUN(test_uuid);
	T_RUN(test_uri_match);
	T_RUN(test_uri_label);
	T_RUN(test_replay_stream0);
	T_RUN(test_replay_stream1);
	T_RUN(test_replay_stream2);
	T_RUN(test_replay_stream3);
	T_RUN(test_replay_proxy);
	T_RUN(test_replay_tv9);
	return (t_summary());
}
