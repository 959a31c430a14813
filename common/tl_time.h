/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks, and the duration and time syntax that flags and queries accept. */
#ifndef TL_TIME_H
#define TL_TIME_H

#include <stddef.h>
#include <stdint.h>

#define TL_NS_PER_MS UINT64_C(1000000)
#define TL_NS_PER_S UINT64_C(1000000000)

/* Wall clock, unix nanoseconds. */
uint64_t tl_now_ns(void);

/* Monotonic clock, nanoseconds from an arbitrary origin. */
uint64_t tl_mono_ns(void);

/*
 * Parses a duration: a decimal number (fraction allowed) followed by a unit,
 * ns, us, ms, s, m, h or d; several may follow each other ("1h30m").
 * Returns 0, TL_EPARSE (names no unit or bad digits) or TL_ELIMIT (overflow).
 */
int tl_parse_duration(const char *s, uint64_t *out_ns);

/*
 * Parses a point in time: RFC 3339 ("2026-11-23T10:00:00Z", offsets and
 * fractions allowed), a plain integer of unix seconds (<= 10 digits) or unix
 * nanoseconds (19 digits), or a duration meaning that long before now_ns
 * ("1h"). Returns 0, TL_EPARSE or TL_ELIMIT.
 */
int tl_parse_time(const char *s, uint64_t now_ns, uint64_t *out_ns);

/* Formats ns as a short human duration ("850µs", "12.3ms", "1.25s", "3m12s"). */
void tl_format_duration(uint64_t ns, char *buf, size_t len);

/* Formats unix ns as RFC 3339 UTC with microseconds. */
void tl_format_time(uint64_t unix_ns, char *buf, size_t len);

#endif
