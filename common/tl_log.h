/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging for the daemons (agent, collector): one logfmt line per event on
 * stderr, `ts=... level=... event=... key=value ...`. Library code in common/
 * never calls this; it returns errors and lets the daemon decide.
 */
#ifndef TL_LOG_H
#define TL_LOG_H

enum { TL_LOG_DEBUG = 0, TL_LOG_INFO = 1, TL_LOG_WARN = 2, TL_LOG_ERROR = 3 };

/* Sets the minimum level written (default TL_LOG_INFO). Thread-safe. */
void tl_log_set_level(int level);

/* Parses "debug", "info", "warn", "error". Returns 0, or TL_EINVALID. */
int tl_log_parse_level(const char *s, int *level);

/*
 * Writes one line: `event` is a short dotted name ("intake.batch"); fmt and
 * its arguments give the rest as key=value pairs. Lines from several threads
 * never interleave.
 */
void tl_log(int level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
