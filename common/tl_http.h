/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 server on a libuv loop, parsing with http-parser. It serves the
 * agent's receivers and the collector's HTTP API.
 *
 * The server owns framing and its limits: keep-alive, pipelined requests
 * answered in order (one request per connection is handed out at a time;
 * reading pauses until it is answered), Content-Length and chunked bodies,
 * `Content-Encoding: gzip` (and deflate) request bodies inflated with zlib,
 * a body limit answered with 413, a header limit answered with 431, a read
 * timeout for slow or stalled clients answered with 408 and a close, and a
 * connection cap. Malformed HTTP gets 400 naming the problem, then a close.
 *
 * Everything here runs on the loop's thread; no function is thread-safe.
 */
#ifndef TL_HTTP_H
#define TL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct tl_http_server tl_http_server;
typedef struct tl_http_req tl_http_req;

typedef struct tl_http_limits {
	size_t max_header_bytes;    /* request line + headers; 431 beyond (default 16 KiB) */
	size_t max_body_bytes;      /* body after inflating; 413 beyond (default 8 MiB) */
	size_t max_wire_body_bytes; /* body as sent, before inflating; 413 beyond (default 8 MiB) */
	uint64_t read_timeout_ms;   /* a started request must complete within this; 408 (default 10 s) */
	uint64_t idle_timeout_ms;   /* an idle keep-alive connection is closed after this (default 60 s) */
	unsigned max_connections;   /* further connections are accepted and closed at once (default 1024) */
} tl_http_limits;

/* Fills l with the defaults above. */
void tl_http_limits_default(tl_http_limits *l);

typedef struct tl_http_header {
	const char *name;
	const char *value;
} tl_http_header;

/*
 * Called once per complete request, on the loop thread. The handler must
 * eventually call tl_http_respond() exactly once for req, either before it
 * returns or later from the loop thread (for example once the collector has
 * acknowledged). req stays valid until then, even if the client disconnects
 * (the response is then dropped).
 */
typedef void (*tl_http_handler)(tl_http_req *req, void *ud);

/*
 * Creates a server on loop. lim may be NULL for the defaults. The caller
 * frees with tl_http_server_close(). Returns 0 or -ENOMEM.
 */
int tl_http_server_new(uv_loop_t *loop, const tl_http_limits *lim, tl_http_handler handler, void *ud,
                       tl_http_server **out);

/*
 * Listens on "HOST:PORT" (IPv4 dotted or [IPv6]; port 0 picks a free port).
 * Returns 0, TL_EINVALID for an unparsable address, or a negative errno
 * (-EADDRINUSE, ...).
 */
int tl_http_server_listen(tl_http_server *s, const char *hostport);

/* The bound port after a successful listen (useful with port 0). */
int tl_http_server_port(const tl_http_server *s);

/*
 * Stops accepting, closes every connection (requests not yet answered are
 * still valid and their responses are dropped), and frees the server once
 * all its handles are closed; then calls cb(ud) if cb is not NULL.
 * Accepts NULL s.
 */
void tl_http_server_close(tl_http_server *s, void (*cb)(void *ud), void *ud);

/* Counters, for /metrics. */
typedef struct tl_http_stats {
	uint64_t connections_accepted;
	uint64_t connections_refused; /* over max_connections */
	uint64_t requests;
	uint64_t bad_requests; /* 400 from the server itself */
	uint64_t too_large;    /* 413 and 431 */
	uint64_t timeouts;     /* 408 */
	unsigned connections_open;
} tl_http_stats;

void tl_http_server_stats(const tl_http_server *s, tl_http_stats *out);

/* Request accessors; all returned memory is valid until tl_http_respond(). */
const char *tl_http_req_method(const tl_http_req *r); /* "GET", "POST", ... */
const char *tl_http_req_path(const tl_http_req *r);   /* URL path, without the query, not decoded */
const char *tl_http_req_query(const tl_http_req *r);  /* after '?', "" if none */

/* A header's value (name matched case-insensitively), or NULL. */
const char *tl_http_req_header(const tl_http_req *r, const char *name);

/* The body after inflating (Content-Encoding removed). *len gets its length; never NULL (empty body: ""). */
const uint8_t *tl_http_req_body(const tl_http_req *r, size_t *len);

/*
 * Looks up a query parameter by name, percent-decoding name and value into
 * buf. Returns 0, TL_ENOTFOUND, or TL_ELIMIT if the value does not fit buf.
 */
int tl_http_req_param(const tl_http_req *r, const char *name, char *buf, size_t buflen);

/* The same for the nth (from 0) occurrence of a repeated parameter (tag=a&tag=b). TL_ENOTFOUND past the last. */
int tl_http_req_param_nth(const tl_http_req *r, const char *name, size_t nth, char *buf, size_t buflen);

/*
 * Percent-decodes s[0..len) as a query component is decoded ('+' is a
 * space, a malformed escape stays literal) into buf, NUL-terminated. For
 * path segments such as /api/services/{name}/operations. Borrows s.
 * Returns 0, or TL_ELIMIT if the result does not fit buf.
 */
int tl_http_unescape(const char *s, size_t len, char *buf, size_t buflen);

/*
 * Answers req with status, an optional Content-Type (NULL: none), the body
 * (borrowed; copied before return) and extra headers (borrowed). Adds
 * Content-Length, and Connection: close when the connection will close.
 * req is freed by this call. Returns 0, or TL_ECLOSED if the client had gone
 * (req is freed all the same).
 */
int tl_http_respond(tl_http_req *req, int status, const char *content_type, const void *body, size_t len,
                    const tl_http_header *extra, size_t nextra);

#endif
