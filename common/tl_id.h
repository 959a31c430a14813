/* SPDX-License-Identifier: Apache-2.0 */
/* Trace and span ids: fixed-size byte strings shown as lowercase hex. */
#ifndef TL_ID_H
#define TL_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_TRACE_ID_LEN 16
#define TL_SPAN_ID_LEN 8

/*
 * Decodes exactly 2*outlen hex digits (either case) from s[0..slen) into out.
 * Returns 0, TL_ELIMIT if slen != 2*outlen, or TL_EPARSE on a non-hex digit.
 * out is untouched on error.
 */
int tl_hex_decode(const char *s, size_t slen, uint8_t *out, size_t outlen);

/* Writes 2*n lowercase hex digits and a NUL to out (borrows; out holds 2n+1). */
void tl_hex_encode(const uint8_t *in, size_t n, char *out);

/* True when all n bytes are zero (an invalid OTLP id). */
bool tl_id_is_zero(const uint8_t *id, size_t n);

/* Fills out with n random bytes from the kernel. Returns 0 or -errno. */
int tl_random_bytes(uint8_t *out, size_t n);

#endif
