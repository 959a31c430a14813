/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request-parsing core of the HTTP server, without sockets: a
 * connection's parser is fed byte chunks and yields complete requests, a
 * request for "100 Continue", or an error with the status to answer. The
 * server (tl_http.c) drives it from the network; the fuzz target drives it
 * with arbitrary bytes. Internal to common/: not part of the tl_http.h
 * contract.
 */
#ifndef TL_HTTP_PARSE_H
#define TL_HTTP_PARSE_H

#include "tl_buf.h"
#include "tl_http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header fields beyond this many are answered with 431. */
#define TL_HTTP_MAX_HEADERS 128

struct tl_http_req {
	tl_buf text;                          /* URL, then header names and values, each NUL-terminated */
	uint32_t hdr[TL_HTTP_MAX_HEADERS][2]; /* offsets of name and value in text */
	unsigned nhdr;
	uint32_t path_off, query_off; /* in text */
	const char *method;           /* static string from http-parser */
	tl_buf body;                  /* after inflating */
	unsigned short major, minor;
	bool keep_alive; /* the client allows another request after this one */
	bool head;       /* HEAD: the response carries no body */
	void *conn;      /* the server's connection; NULL once the client has gone */
};

typedef struct tl_http_parse tl_http_parse;

/* What tl_http_parse_feed() stopped for. */
enum tl_http_parse_event {
	TL_HTTP_PARSE_MORE = 0, /* every byte was used; feed more */
	TL_HTTP_PARSE_REQUEST,  /* a request is complete: take it with tl_http_parse_take() */
	TL_HTTP_PARSE_CONTINUE, /* the client waits for "100 Continue" before sending the body */
	TL_HTTP_PARSE_ERROR,    /* answer tl_http_parse_error() and close; the parser is dead */
};

/* Creates a parser with lim (borrowed; copied; NULL: defaults). Caller frees with tl_http_parse_free(). */
int tl_http_parse_new(const tl_http_limits *lim, tl_http_parse **out);

/* Frees the parser and any request it is still building or holding. Accepts NULL. */
void tl_http_parse_free(tl_http_parse *p);

/*
 * Parses up to len bytes of data (borrowed; body bytes are copied). *used
 * gets how many were consumed; the rest must be fed again after the event
 * has been dealt with (after REQUEST: once the request has been taken).
 * Returns an enum tl_http_parse_event. After ERROR every call returns ERROR.
 */
int tl_http_parse_feed(tl_http_parse *p, const char *data, size_t len, size_t *used);

/*
 * The complete request after TL_HTTP_PARSE_REQUEST, or NULL. Caller frees
 * with tl_http_respond() or tl_http_req_free().
 */
tl_http_req *tl_http_parse_take(tl_http_parse *p);

/* After TL_HTTP_PARSE_ERROR: the status to answer (400, 413, 415, 431, 503); *msg (valid until the parser is freed)
 * names the problem. */
int tl_http_parse_error(const tl_http_parse *p, const char **msg);

/* True while a request has begun (its first byte has been seen) and is not complete. */
bool tl_http_parse_started(const tl_http_parse *p);

/* True once a request asked to switch protocols: nothing after it is parsed. */
bool tl_http_parse_done(const tl_http_parse *p);

/* Frees a request that will not be answered (for example in the fuzzer). Accepts NULL. */
void tl_http_req_free(tl_http_req *r);

#endif
