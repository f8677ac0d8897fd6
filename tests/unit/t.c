#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "t.h"

int t_failed_current;
static int t_passed, t_failed;
static const char *t_current;

/* Record a failure of the current test. */
void
t_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	t_failed_current = 1;
	fprintf(stderr, "FAIL %s (%s:%d): ", t_current, file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Print two byte strings as hex, marking the first difference. */
void
t_hexdiff(const void *got, size_t glen, const void *want, size_t wlen)
{
	const uint8_t *g = got, *w = want;
	size_t i, first = 0;

	while (first < glen && first < wlen && g[first] == w[first])
		first++;
	fprintf(stderr, "  got  (%zu):", glen);
	for (i = 0; i < glen && i < 512; i++)
		fprintf(stderr, "%s%02x", i == first ? " >" : " ", g[i]);
	fprintf(stderr, "\n  want (%zu):", wlen);
	for (i = 0; i < wlen && i < 512; i++)
		fprintf(stderr, "%s%02x", i == first ? " >" : " ", w[i]);
	fprintf(stderr, "\n");
}

/* Run one test function. */
int
t_run(const char *name, void (*fn)(void))
{
	t_current = name;
	t_failed_current = 0;
	fn();
	if (t_failed_current)
		t_failed++;
	else {
		t_passed++;
		printf("ok %s\n", name);
	}
	return (t_failed_current);
}

/* Print the summary line; exit status for main. */
int
t_summary(void)
{
	printf("%d passed, %d failed\n", t_passed, t_failed);
	return (t_failed ? 1 : 0);
}

/* Parse hex text into bytes. */
size_t
t_hex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1, v;

	for (; *hex != '\0'; hex++) {
		if (!isxdigit((unsigned char)*hex))
			continue;
		v = isdigit((unsigned char)*hex) ? *hex - '0' :
		    tolower((unsigned char)*hex) - 'a' + 10;
		if (hi < 0)
			hi = v;
		else {
			if (n >= cap) {
				fprintf(stderr, "t_hex: overflow\n");
				abort();
			}
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	return (n);
}
