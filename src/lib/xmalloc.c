#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmalloc.h"

/* malloc or die. */
void *
xmalloc(size_t n)
{
	void *p;

	if (n == 0)
		n = 1;
	if ((p = malloc(n)) == NULL)
		fatal("xmalloc %zu", n);
	return (p);
}

/* calloc or die. */
void *
xcalloc(size_t nmemb, size_t n)
{
	void *p;

	if (nmemb == 0 || n == 0)
		nmemb = n = 1;
	if ((p = calloc(nmemb, n)) == NULL)
		fatal("xcalloc %zu*%zu", nmemb, n);
	return (p);
}

/* realloc or die. */
void *
xrealloc(void *old, size_t n)
{
	void *p;

	if (n == 0)
		n = 1;
	if ((p = realloc(old, n)) == NULL)
		fatal("xrealloc %zu", n);
	return (p);
}

/* strdup or die. */
char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		fatal("xstrdup");
	return (p);
}

/* strndup or die. */
char *
xstrndup(const char *s, size_t n)
{
	char *p;

	if ((p = strndup(s, n)) == NULL)
		fatal("xstrndup");
	return (p);
}

/* Copy a byte range into fresh memory. */
void *
xmemdup(const void *s, size_t n)
{
	void *p = xmalloc(n);

	memcpy(p, s, n);
	return (p);
}
