/* SPDX-License-Identifier: Apache-2.0 */
/*
 * zlib behind a bounded buffer. Output is produced straight into the
 * destination tl_buf, in steps no larger than the room left under its
 * maximum, so the limit is checked before memory is spent rather than after.
 */
#include "tl_gzip.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Output step when the input gives no better guess. */
#define STEP_MIN (32u * 1024)
#define STEP_MAX (1024u * 1024)

enum { ST_START, ST_RUN, ST_END, ST_FAILED };

struct tl_gzip_inflater {
	z_stream zs;
	int format;
	int state;
	bool zinit;      /* inflateInit2 succeeded */
	bool any_input;  /* at least one byte was fed */
	uint8_t pend[2]; /* deflate: the first bytes, kept until the wrapper can be told */
	size_t npend;
};

int tl_gzip_inflater_new(int format, tl_gzip_inflater **out)
{
	if (format != TL_GZIP_GZIP && format != TL_GZIP_DEFLATE)
		return TL_EINVALID;
	tl_gzip_inflater *z = calloc(1, sizeof(*z));
	if (z == NULL)
		return -ENOMEM;
	z->format = format;
	z->state = ST_START;
	*out = z;
	return 0;
}

void tl_gzip_inflater_free(tl_gzip_inflater *z)
{
	if (z == NULL)
		return;
	if (z->zinit)
		inflateEnd(&z->zs);
	free(z);
}

static int fail(tl_gzip_inflater *z, tl_errmsg *e, const char *what)
{
	z->state = ST_FAILED;
	return tl_errf(e, TL_EPARSE, "%s", what);
}

/* A zlib (RFC 1950) header: deflate method, and the check bits make the pair a multiple of 31. */
static bool looks_zlib(uint8_t b0, uint8_t b1)
{
	return (b0 & 0x0f) == 8 && (b0 >> 4) <= 7 && (((unsigned)b0 << 8) | b1) % 31 == 0;
}

static int start(tl_gzip_inflater *z, tl_errmsg *e)
{
	int wbits = 15 + 16;
	if (z->format == TL_GZIP_DEFLATE)
		wbits = looks_zlib(z->pend[0], z->pend[1]) ? 15 : -15;
	memset(&z->zs, 0, sizeof(z->zs));
	int rc = inflateInit2(&z->zs, wbits);
	if (rc == Z_MEM_ERROR)
		return -ENOMEM;
	if (rc != Z_OK)
		return fail(z, e, "cannot start the inflater");
	z->zinit = true;
	z->state = ST_RUN;
	return 0;
}

/* Runs inflate over z->zs.next_in/avail_in, appending to out. */
static int run(tl_gzip_inflater *z, tl_buf *out, tl_errmsg *e)
{
	bool out_full = false;
	for (;;) {
		if (z->zs.avail_in == 0 && !out_full)
			return 0;
		if (z->state == ST_END) {
			if (z->zs.avail_in == 0)
				return 0;
			/* gzip allows members back to back; anything else after the end is an error. */
			if (z->format != TL_GZIP_GZIP)
				return fail(z, e, "data after the end of the deflate stream");
			if (inflateReset(&z->zs) != Z_OK)
				return fail(z, e, "cannot restart the inflater");
			z->state = ST_RUN;
		}
		size_t room = out->max - out->len;
		uint8_t spare;
		size_t step;
		if (room == 0) {
			/* At the limit: one more byte of output means the body is too large. */
			z->zs.next_out = &spare;
			z->zs.avail_out = 1;
			step = 1;
		} else {
			step = (size_t)z->zs.avail_in * 4;
			if (step < STEP_MIN)
				step = STEP_MIN;
			if (step > STEP_MAX)
				step = STEP_MAX;
			if (step > room)
				step = room;
			int rc = tl_buf_reserve(out, step);
			if (rc != 0)
				return rc;
			z->zs.next_out = out->data + out->len;
			z->zs.avail_out = (uInt)step;
		}
		int zrc = inflate(&z->zs, Z_NO_FLUSH);
		size_t made = step - z->zs.avail_out;
		if (room == 0) {
			if (made > 0) {
				z->state = ST_FAILED;
				return TL_ELIMIT;
			}
		} else {
			out->len += made;
			out->data[out->len] = 0;
		}
		out_full = z->zs.avail_out == 0;
		switch (zrc) {
		case Z_STREAM_END:
			z->state = ST_END;
			out_full = false;
			break;
		case Z_OK:
			break;
		case Z_BUF_ERROR:
			/* No progress possible: all input used and nothing pending. */
			if (z->zs.avail_in == 0)
				return 0;
			return fail(z, e, "inflater made no progress");
		case Z_MEM_ERROR:
			z->state = ST_FAILED;
			return -ENOMEM;
		case Z_NEED_DICT:
			return fail(z, e, "stream needs a preset dictionary");
		default:
			return fail(z, e, z->zs.msg != NULL ? z->zs.msg : "corrupt stream");
		}
	}
}

static int feed_chunk(tl_gzip_inflater *z, const uint8_t *in, size_t len, tl_buf *out, tl_errmsg *e)
{
	while (len > 0) {
		uInt n = len > UINT_MAX ? UINT_MAX : (uInt)len;
		z->zs.next_in = (Bytef *)(uintptr_t)in;
		z->zs.avail_in = n;
		int rc = run(z, out, e);
		/* Unused input stays behind only on error. */
		z->zs.next_in = NULL;
		z->zs.avail_in = 0;
		if (rc != 0)
			return rc;
		in += n;
		len -= n;
	}
	return 0;
}

int tl_gzip_inflater_feed(tl_gzip_inflater *z, const void *in, size_t len, tl_buf *out, tl_errmsg *e)
{
	if (z->state == ST_FAILED)
		return tl_errf(e, TL_EPARSE, "inflater already failed");
	if (len == 0)
		return 0;
	z->any_input = true;
	const uint8_t *p = in;
	if (z->state == ST_START) {
		size_t want = z->format == TL_GZIP_DEFLATE ? 2 : 0;
		while (z->npend < want && len > 0) {
			z->pend[z->npend++] = *p++;
			len--;
		}
		if (z->npend < want)
			return 0;
		int rc = start(z, e);
		if (rc != 0)
			return rc;
		if (z->npend > 0) {
			rc = feed_chunk(z, z->pend, z->npend, out, e);
			z->npend = 0;
			if (rc != 0)
				return rc;
		}
	}
	return feed_chunk(z, p, len, out, e);
}

int tl_gzip_inflater_finish(tl_gzip_inflater *z, tl_errmsg *e)
{
	switch (z->state) {
	case ST_END:
		return 0;
	case ST_START:
		if (!z->any_input)
			return 0;
		return tl_errf(e, TL_EPARSE, "stream truncated");
	case ST_FAILED:
		return tl_errf(e, TL_EPARSE, "inflater already failed");
	default:
		return tl_errf(e, TL_EPARSE, "stream truncated");
	}
}

int tl_gzip_inflate(int format, const void *in, size_t len, tl_buf *out, tl_errmsg *e)
{
	tl_gzip_inflater *z;
	int rc = tl_gzip_inflater_new(format, &z);
	if (rc != 0)
		return rc;
	rc = tl_gzip_inflater_feed(z, in, len, out, e);
	if (rc == 0)
		rc = tl_gzip_inflater_finish(z, e);
	tl_gzip_inflater_free(z);
	return rc;
}

int tl_gzip_deflate(int format, const void *in, size_t len, int level, tl_buf *out)
{
	if ((format != TL_GZIP_GZIP && format != TL_GZIP_DEFLATE) || level < -1 || level > 9 || len > UINT_MAX)
		return TL_EINVALID;
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	int rc = deflateInit2(&zs, level, Z_DEFLATED, format == TL_GZIP_GZIP ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY);
	if (rc == Z_MEM_ERROR)
		return -ENOMEM;
	if (rc != Z_OK)
		return TL_EINVALID;
	size_t bound = deflateBound(&zs, (uLong)len);
	rc = tl_buf_reserve(out, bound);
	if (rc != 0) {
		deflateEnd(&zs);
		return rc;
	}
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out->data + out->len;
	zs.avail_out = (uInt)(bound > UINT_MAX ? UINT_MAX : bound);
	rc = deflate(&zs, Z_FINISH);
	size_t made = (bound > UINT_MAX ? UINT_MAX : bound) - zs.avail_out;
	deflateEnd(&zs);
	if (rc != Z_STREAM_END)
		return TL_EINVALID;
	out->len += made;
	out->data[out->len] = 0;
	return 0;
}
