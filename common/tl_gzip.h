/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gzip and deflate with zlib, bounded by the output buffer. The inflater
 * works incrementally on network chunks and writes into a tl_buf whose
 * maximum is the limit: a compression bomb stops with TL_ELIMIT as soon as
 * the output would pass it, never allocating beyond it.
 */
#ifndef TL_GZIP_H
#define TL_GZIP_H

#include "tl_buf.h"
#include "tl_error.h"

#include <stddef.h>

enum tl_gzip_format {
	TL_GZIP_GZIP = 1,    /* RFC 1952 members (several may follow each other) */
	TL_GZIP_DEFLATE = 2, /* HTTP "deflate": RFC 1950 zlib, or raw RFC 1951 as some clients send */
};

typedef struct tl_gzip_inflater tl_gzip_inflater;

/* Creates an inflater for format. Caller frees with tl_gzip_inflater_free(). Returns 0, TL_EINVALID or -ENOMEM. */
int tl_gzip_inflater_new(int format, tl_gzip_inflater **out);

/* Accepts NULL. */
void tl_gzip_inflater_free(tl_gzip_inflater *z);

/*
 * Inflates len bytes of in (borrowed) and appends the output to out.
 * Returns 0; TL_ELIMIT when the output would pass out->max (out then holds
 * exactly out->max bytes); TL_EPARSE for corrupt input, with e naming the
 * problem; or -ENOMEM. After an error the inflater only returns errors.
 */
int tl_gzip_inflater_feed(tl_gzip_inflater *z, const void *in, size_t len, tl_buf *out, tl_errmsg *e);

/*
 * Checks that the stream ended where the input did. An inflater that was
 * never fed a byte counts as an empty body. Returns 0 or TL_EPARSE with e set.
 */
int tl_gzip_inflater_finish(tl_gzip_inflater *z, tl_errmsg *e);

/* One call: inflates a whole buffer into out (bounded by out->max). Returns as the two calls above. */
int tl_gzip_inflate(int format, const void *in, size_t len, tl_buf *out, tl_errmsg *e);

/*
 * Compresses len bytes of in (borrowed) into out (appended) at level
 * (0..9, or -1 for zlib's default). TL_GZIP_DEFLATE writes the zlib
 * format. Returns 0, TL_EINVALID, TL_ELIMIT or -ENOMEM.
 */
int tl_gzip_deflate(int format, const void *in, size_t len, int level, tl_buf *out);

#endif
