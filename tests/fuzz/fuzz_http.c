/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the HTTP request-parsing core (tl_http_parse) the way a connection
 * drives it: the input is fed as one chunk, byte by byte, and in chunks
 * sized by the input itself, with every request taken, read through the
 * accessors and freed. Small limits make the 413/431 paths reachable.
 */
#include "tl_http.h"
#include "tl_http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INPUT (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use_request(tl_http_req *r)
{
	char buf[32];
	size_t len;
	volatile size_t sink = 0;
	sink += strlen(tl_http_req_method(r));
	sink += strlen(tl_http_req_path(r));
	sink += strlen(tl_http_req_query(r));
	const char *h = tl_http_req_header(r, "host");
	if (h != NULL)
		sink += strlen(h);
	const uint8_t *b = tl_http_req_body(r, &len);
	if (len > 0)
		sink += b[0] + b[len - 1];
	if (tl_http_req_param(r, "a", buf, sizeof(buf)) == 0)
		sink += strlen(buf);
	if (tl_http_req_param(r, "", buf, 1) == 0)
		sink += strlen(buf);
	(void)sink;
}

/* Chunk size for mode at step i. */
static size_t chunk_size(int mode, const uint8_t *data, size_t size, size_t i)
{
	switch (mode) {
	case 0:
		return size;
	case 1:
		return 1;
	default:
		return (size_t)data[(i * 7) % size] % 97 + 1;
	}
}

static void run(const uint8_t *data, size_t size, int mode)
{
	tl_http_limits lim;
	tl_http_limits_default(&lim);
	lim.max_header_bytes = 2048;
	lim.max_body_bytes = 256u * 1024;
	lim.max_wire_body_bytes = 32u * 1024;
	tl_http_parse *p;
	if (tl_http_parse_new(&lim, &p) != 0)
		return;
	size_t off = 0, step = 0;
	while (off < size) {
		size_t n = chunk_size(mode, data, size, step++);
		if (n > size - off)
			n = size - off;
		/* Feed this chunk until it is used up, as a connection does with its buffer. */
		while (n > 0) {
			size_t used = 0;
			int ev = tl_http_parse_feed(p, (const char *)data + off, n, &used);
			if (used > n)
				abort();
			off += used;
			n -= used;
			if (ev == TL_HTTP_PARSE_REQUEST) {
				tl_http_req *r = tl_http_parse_take(p);
				if (r == NULL)
					abort();
				use_request(r);
				tl_http_req_free(r);
			} else if (ev == TL_HTTP_PARSE_ERROR) {
				const char *msg;
				int st = tl_http_parse_error(p, &msg);
				if (st < 400 || st > 599 || msg == NULL || msg[0] == 0)
					abort();
				goto out;
			} else if (ev == TL_HTTP_PARSE_MORE && n != 0) {
				abort();
			}
		}
	}
out:
	tl_http_parse_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > FUZZ_MAX_INPUT)
		return 0;
	run(data, size, 0);
	if (size <= 8192)
		run(data, size, 1);
	run(data, size, 2);
	return 0;
}
