/*
 * Minimal unit-test runner. Each test binary defines tests with T_TEST and
 * lists them in main() through t_run(). Assertions record a failure and
 * return from the current test. The last line is "N passed, N failed".
 */
#ifndef T_H
#define T_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern int t_failed_current;

void t_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((__format__(__printf__, 3, 4)));
void t_hexdiff(const void *got, size_t glen, const void *want, size_t wlen);
int t_run(const char *name, void (*fn)(void));
int t_summary(void);

#define ASSERT_TRUE(c) do {						\
	if (!(c)) {							\
		t_fail(__FILE__, __LINE__, "assertion failed: %s", #c);	\
		return;							\
	}								\
} while (0)

#define ASSERT_INT_EQ(a, b) do {					\
	long long _a = (long long)(a), _b = (long long)(b);		\
	if (_a != _b) {							\
		t_fail(__FILE__, __LINE__, "%s == %lld, want %s == %lld",	\
		    #a, _a, #b, _b);					\
		return;							\
	}								\
} while (0)

#define ASSERT_SIZE_EQ(a, b) ASSERT_INT_EQ(a, b)

#define ASSERT_STR_EQ(a, b) do {					\
	const char *_a = (a), *_b = (b);				\
	if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) {		\
		t_fail(__FILE__, __LINE__, "%s == \"%s\", want \"%s\"",	\
		    #a, _a ? _a : "(null)", _b ? _b : "(null)");	\
		return;							\
	}								\
} while (0)

#define ASSERT_MEM_EQ(g, glen, w, wlen) do {				\
	size_t _gl = (glen), _wl = (wlen);				\
	if (_gl != _wl || memcmp((g), (w), _gl) != 0) {			\
		t_fail(__FILE__, __LINE__, "%s differs from %s", #g, #w);	\
		t_hexdiff((g), _gl, (w), _wl);				\
		return;							\
	}								\
} while (0)

#define T_RUN(fn) t_run(#fn, fn)

/* Parse "ff fa e8" style hex (spaces, '|' and newlines ignored) into out. */
size_t t_hex(const char *hex, uint8_t *out, size_t cap);

#endif
