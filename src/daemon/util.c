/* Small helpers shared by the daemon modules. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vspcd.h"

/* Append bytes to an evbuffer with every 0xFF doubled, without per-byte calls. */
void
evbuffer_add_escaped(struct evbuffer *b, const uint8_t *p, size_t len)
{
	static const uint8_t iaciac[2] = { TELNET_IAC, TELNET_IAC };
	const uint8_t *ff;
	size_t n;

	while (len > 0) {
		ff = memchr(p, TELNET_IAC, len);
		if (ff == NULL) {
			evbuffer_add(b, p, len);
			return;
		}
		n = (size_t)(ff - p);
		if (n > 0)
			evbuffer_add(b, p, n);
		evbuffer_add(b, iaciac, 2);
		p += n + 1;
		len -= n + 1;
	}
}

/* Length of a valid UTF-8 sequence at p (len > 0), or 0 if none. */
size_t
util_utf8_len(const uint8_t *p, size_t len)
{
	size_t n, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return (1);
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else
		return (0);
	if (n > len)
		return (0);
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return (0);
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return (0);
	return (n);
}

/*
 * Copy untrusted text (a VM name) into a fresh string that is valid UTF-8
 * with no control characters: those and invalid bytes become '?'. At most
 * max input bytes are used.
 */
char *
util_sanitize(const uint8_t *p, size_t len, size_t max)
{
	char *out, *o;
	size_t n;

	if (len > max)
		len = max;
	out = o = xmalloc(len + 1);
	while (len > 0) {
		n = util_utf8_len(p, len);
		if (n == 0 || (n == 1 && (p[0] < 0x20 || p[0] == 0x7f))) {
			*o++ = '?';
			n = 1;
		} else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
			*o++ = '?';	/* C1 control characters */
		} else {
			memcpy(o, p, n);
			o += n;
		}
		p += n;
		len -= n;
	}
	*o = '\0';
	return (out);
}

/* Write dir/name through a temporary file, fsync and rename. */
int
util_write_file_atomic(const char *dir, const char *name, const char *data,
    size_t len)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	ssize_t w;
	int fd, dfd;

	if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >=
	    (int)sizeof tmp ||
	    snprintf(path, sizeof path, "%s/%s", dir, name) >=
	    (int)sizeof path) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0644);
	if (fd == -1)
		return (-1);
	while (len > 0) {
		w = write(fd, data, len);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			close(fd);
			unlink(tmp);
			return (-1);
		}
		data += w;
		len -= (size_t)w;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		unlink(tmp);
		return (-1);
	}
	if (rename(tmp, path) == -1) {
		unlink(tmp);
		return (-1);
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	return (0);
}
