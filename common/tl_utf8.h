/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strict UTF-8 validation (RFC 3629): rejects overlong forms, surrogates
 * (U+D800..U+DFFF), code points above U+10FFFF and truncated sequences.
 * OTLP requires every string to be valid UTF-8, and everything downstream
 * (JSON output, the store) relies on that.
 */
#ifndef TL_UTF8_H
#define TL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is valid UTF-8 (borrows s; NUL bytes are valid). */
bool tl_utf8_valid(const char *s, size_t len);

#endif
