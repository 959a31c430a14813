/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks and the parsing/formatting of durations and timestamps. */
#include "tl_time.h"

#include "tl_error.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t tl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * TL_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t tl_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * TL_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static bool isdig(char c)
{
	return c >= '0' && c <= '9';
}

/* Unit multipliers, longest names first so "ms" wins over "m". */
static const struct {
	const char *name;
	uint64_t ns;
} units[] = {
        {"ns", 1},
        {"us", 1000},
        {"\xc2\xb5s", 1000},
        {"ms", TL_NS_PER_MS},
        {"s", TL_NS_PER_S},
        {"m", 60 * TL_NS_PER_S},
        {"h", 3600 * TL_NS_PER_S},
        {"d", 86400 * TL_NS_PER_S},
};

int tl_parse_duration(const char *s, uint64_t *out_ns)
{
	uint64_t total = 0;
	const char *p = s;
	if (*p == '\0')
		return TL_EPARSE;
	while (*p != '\0') {
		if (!isdig(*p))
			return TL_EPARSE;
		uint64_t whole = 0;
		while (isdig(*p)) {
			if (whole > (UINT64_MAX - 9) / 10)
				return TL_ELIMIT;
			whole = whole * 10 + (uint64_t)(*p++ - '0');
		}
		uint64_t frac = 0, frac_div = 1;
		if (*p == '.') {
			p++;
			if (!isdig(*p))
				return TL_EPARSE;
			while (isdig(*p)) {
				if (frac_div < UINT64_C(1000000000)) {
					frac = frac * 10 + (uint64_t)(*p - '0');
					frac_div *= 10;
				}
				p++;
			}
		}
		size_t best = 0;
		uint64_t mult = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t n = strlen(units[i].name);
			if (n > best && strncmp(p, units[i].name, n) == 0) {
				best = n;
				mult = units[i].ns;
			}
		}
		if (best == 0)
			return TL_EPARSE;
		p += best;
		if (whole != 0 && mult > UINT64_MAX / whole)
			return TL_ELIMIT;
		uint64_t v = whole * mult;
		/* frac < frac_div <= 1e9 and mult <= 8.64e13: compute in two steps to avoid overflow. */
		v += (mult / frac_div) * frac + (mult % frac_div) * frac / frac_div;
		if (total > UINT64_MAX - v)
			return TL_ELIMIT;
		total += v;
	}
	*out_ns = total;
	return 0;
}

static int digits(const char **pp, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdig((*pp)[i]))
			return TL_EPARSE;
		v = v * 10 + ((*pp)[i] - '0');
	}
	*pp += n;
	*out = v;
	return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
		return 29;
	return dim[m - 1];
}

static int parse_rfc3339(const char *s, uint64_t *out)
{
	const char *p = s;
	int Y, M, D, h, mi, sec;
	if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' || digits(&p, 2, &D))
		return TL_EPARSE;
	h = mi = sec = 0;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
			return TL_EPARSE;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec))
				return TL_EPARSE;
		}
	}
	uint64_t frac = 0;
	if (*p == '.') {
		p++;
		int n = 0;
		if (!isdig(*p))
			return TL_EPARSE;
		while (isdig(*p)) {
			if (n < 9) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				n++;
			}
			p++;
		}
		while (n++ < 9)
			frac *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
			return TL_EPARSE;
		off = sign * (oh * 3600 + om * 60);
	} else if (*p != '\0') {
		return TL_EPARSE;
	}
	if (*p != '\0' || M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || mi > 59 || sec > 60)
		return TL_EPARSE;
	int64_t secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + mi * 60 + sec - off;
	if (secs < 0 || (uint64_t)secs > UINT64_MAX / TL_NS_PER_S - 1)
		return TL_ELIMIT;
	*out = (uint64_t)secs * TL_NS_PER_S + frac;
	return 0;
}

int tl_parse_time(const char *s, uint64_t now_ns, uint64_t *out_ns)
{
	size_t n = strlen(s);
	if (n == 0)
		return TL_EPARSE;
	size_t nd = strspn(s, "0123456789");
	if (nd == n) {
		if (n > 20)
			return TL_ELIMIT;
		uint64_t v = 0;
		for (size_t i = 0; i < n; i++) {
			if (v > (UINT64_MAX - 9) / 10)
				return TL_ELIMIT;
			v = v * 10 + (uint64_t)(s[i] - '0');
		}
		if (n <= 10) {
			*out_ns = v * TL_NS_PER_S;
			return 0;
		}
		*out_ns = v;
		return 0;
	}
	if (nd == 4 && s[4] == '-')
		return parse_rfc3339(s, out_ns);
	uint64_t d;
	int rc = tl_parse_duration(s, &d);
	if (rc != 0)
		return rc;
	*out_ns = d > now_ns ? 0 : now_ns - d;
	return 0;
}

void tl_format_duration(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000)
		snprintf(buf, len, "%lluns", (unsigned long long)ns);
	else if (ns < TL_NS_PER_MS)
		snprintf(buf, len, "%.3gµs", (double)ns / 1e3);
	else if (ns < TL_NS_PER_S)
		snprintf(buf, len, "%.3gms", (double)ns / 1e6);
	else if (ns < 60 * TL_NS_PER_S)
		snprintf(buf, len, "%.3gs", (double)ns / 1e9);
	else
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(ns / (60 * TL_NS_PER_S)),
		         (unsigned long long)(ns / TL_NS_PER_S % 60));
}

void tl_format_time(uint64_t unix_ns, char *buf, size_t len)
{
	time_t secs = (time_t)(unix_ns / TL_NS_PER_S);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06lluZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	         tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned long long)(unix_ns % TL_NS_PER_S / 1000));
}
