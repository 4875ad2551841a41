#include <stdio.h>

#include "protocol.h"

int cdpy_format_exit(char *buf, size_t len, int status, long long ns)
{
	int n = snprintf(buf, len, "%d %lld\n", status, ns);

	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

/* Non-negative decimal, at least one digit, no overflow past max. */
static const char *parse_num(const char *p, long long max, long long *out)
{
	long long v = 0;
	const char *start = p;

	while (*p >= '0' && *p <= '9') {
		int d = *p - '0';

		if (v > (max - d) / 10)
			return NULL;
		v = v * 10 + d;
		p++;
	}
	if (p == start)
		return NULL;
	*out = v;
	return p;
}

int cdpy_parse_exit(const char *buf, int *status, long long *ns)
{
	long long st, t;
	const char *p = buf;

	if (!buf)
		return -1;
	p = parse_num(p, 0x7fffffff, &st);
	if (!p || *p != ' ')
		return -1;
	p = parse_num(p + 1, 0x7fffffffffffffffLL, &t);
	if (!p)
		return -1;
	if (*p == '\n')
		p++;
	if (*p != '\0')
		return -1;
	*status = (int)st;
	*ns = t;
	return 0;
}
