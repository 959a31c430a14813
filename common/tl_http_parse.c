/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request-parsing core: http-parser callbacks that build a tl_http_req
 * under the configured limits, and the request accessors. http-parser is
 * paused after the headers (to check limits and answer "Expect:
 * 100-continue" before the body is read) and after each complete message
 * (so pipelined requests are handed out one at a time).
 */
#include "tl_http_parse.h"

#include "tl_error.h"
#include "tl_gzip.h"
#include "tl_id.h"

#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };
enum { EV_NONE, EV_HEADERS, EV_COMPLETE };

struct tl_http_parse {
	http_parser hp;
	tl_http_limits lim;
	tl_http_req *req;  /* being built */
	tl_http_req *done; /* complete, not yet taken */
	tl_gzip_inflater *inf;
	int inflate_format;
	size_t hdr_bytes; /* bytes seen since the end of the previous request, while in the headers */
	size_t wire_body; /* body bytes as sent */
	int last;         /* which callback ran last, to split header names from values */
	int event;        /* set by a callback that paused the parser */
	bool in_msg;
	bool headers_done;
	bool paused;
	bool expect_continue;
	bool upgraded; /* nothing after this request is HTTP */
	int err_status;
	char err_msg[256];
};

static int set_error(tl_http_parse *p, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int set_error(tl_http_parse *p, int status, const char *fmt, ...)
{
	if (p->err_status != 0)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err_msg, sizeof(p->err_msg), fmt, ap);
	va_end(ap);
	p->err_status = status;
	return -1;
}

static tl_http_parse *from_hp(http_parser *hp)
{
	return hp->data;
}

/* Appends to the request's text; too much is a header-size problem. */
static int text_add(tl_http_parse *p, const char *at, size_t len)
{
	int rc = tl_buf_append(&p->req->text, at, len);
	if (rc == TL_ELIMIT)
		return set_error(p, 431, "request header fields too large (limit %zu bytes)", p->lim.max_header_bytes);
	if (rc != 0)
		return set_error(p, 503, "out of memory");
	return 0;
}

static int text_end(tl_http_parse *p)
{
	return text_add(p, "", 1);
}

static int on_message_begin(http_parser *hp)
{
	tl_http_parse *p = from_hp(hp);
	tl_http_req *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return set_error(p, 503, "out of memory");
	/* Raw header bytes are capped at max_header_bytes; the stored text is never larger. */
	tl_buf_init(&r->text, p->lim.max_header_bytes + 64);
	tl_buf_init(&r->body, p->lim.max_body_bytes);
	p->req = r;
	p->in_msg = true;
	p->headers_done = false;
	p->wire_body = 0;
	p->last = LAST_NONE;
	p->expect_continue = false;
	p->inflate_format = 0;
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	tl_http_parse *p = from_hp(hp);
	p->last = LAST_URL;
	return text_add(p, at, len);
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	tl_http_parse *p = from_hp(hp);
	tl_http_req *r = p->req;
	if (p->last != LAST_FIELD) {
		if (p->last != LAST_NONE && text_end(p) != 0)
			return -1;
		if (r->nhdr == TL_HTTP_MAX_HEADERS)
			return set_error(p, 431, "too many header fields (limit %d)", TL_HTTP_MAX_HEADERS);
		r->hdr[r->nhdr][0] = (uint32_t)r->text.len;
		r->hdr[r->nhdr][1] = 0;
		r->nhdr++;
		p->last = LAST_FIELD;
	}
	return text_add(p, at, len);
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	tl_http_parse *p = from_hp(hp);
	tl_http_req *r = p->req;
	if (p->last != LAST_VALUE) {
		if (p->last != LAST_FIELD || r->nhdr == 0)
			return set_error(p, 400, "malformed request: header value without a name");
		if (text_end(p) != 0)
			return -1;
		r->hdr[r->nhdr - 1][1] = (uint32_t)r->text.len;
		p->last = LAST_VALUE;
	}
	return text_add(p, at, len);
}

/* Trims optional whitespace around a header value, in place. */
static const char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = 0;
	return s;
}

/* Splits the request target into path and query (origin-form in place; absolute-form through http-parser). */
static int split_target(tl_http_parse *p)
{
	tl_http_req *r = p->req;
	char *url = (char *)r->text.data;
	size_t ulen = strlen(url);
	if (ulen == 0)
		return set_error(p, 400, "malformed request: empty request target");
	if (url[0] == '/' || strcmp(url, "*") == 0) {
		char *hash = strchr(url, '#');
		if (hash != NULL)
			*hash = 0;
		char *q = strchr(url, '?');
		r->path_off = 0;
		if (q == NULL) {
			/* The NUL that ends the URL doubles as the empty query. */
			r->query_off = (uint32_t)strlen(url);
		} else {
			*q = 0;
			r->query_off = (uint32_t)(q + 1 - url);
		}
		return 0;
	}
	if (p->hp.method == HTTP_CONNECT) {
		/* The target is an authority; hand it out as the path. */
		r->path_off = 0;
		r->query_off = (uint32_t)ulen;
		return 0;
	}
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, ulen, 0, &u) != 0)
		return set_error(p, 400, "malformed request: invalid request target");
	size_t poff = u.field_data[UF_PATH].off, plen = u.field_data[UF_PATH].len;
	size_t qoff = u.field_data[UF_QUERY].off, qlen = u.field_data[UF_QUERY].len;
	if ((u.field_set & (1 << UF_PATH)) == 0) {
		poff = 0;
		plen = 0;
	}
	if ((u.field_set & (1 << UF_QUERY)) == 0)
		qlen = 0;
	/* Path and query are copied after the headers; room first, so the source cannot move under the copy. */
	int rc = tl_buf_reserve(&r->text, plen + qlen + 3);
	if (rc != 0)
		return set_error(p, rc == TL_ELIMIT ? 431 : 503, "request header fields too large (limit %zu bytes)",
		                 p->lim.max_header_bytes);
	char *t = (char *)r->text.data;
	r->path_off = (uint32_t)r->text.len;
	if (plen == 0)
		t[r->text.len++] = '/';
	memcpy(t + r->text.len, t + poff, plen);
	r->text.len += plen;
	t[r->text.len++] = 0;
	r->query_off = (uint32_t)r->text.len;
	memcpy(t + r->text.len, t + qoff, qlen);
	r->text.len += qlen;
	t[r->text.len++] = 0;
	return 0;
}

/* The value of header name in the request being built (or any request), or NULL. */
static const char *find_header(const tl_http_req *r, const char *name)
{
	for (unsigned i = 0; i < r->nhdr; i++) {
		const char *n = (const char *)r->text.data + r->hdr[i][0];
		if (strcasecmp(n, name) == 0)
			return (const char *)r->text.data + r->hdr[i][1];
	}
	return NULL;
}

static int check_encoding(tl_http_parse *p)
{
	char *ce = (char *)find_header(p->req, "Content-Encoding");
	if (ce == NULL)
		return 0;
	const char *v = trim(ce);
	if (*v == 0 || strcasecmp(v, "identity") == 0)
		return 0;
	if (strcasecmp(v, "gzip") == 0 || strcasecmp(v, "x-gzip") == 0)
		p->inflate_format = TL_GZIP_GZIP;
	else if (strcasecmp(v, "deflate") == 0)
		p->inflate_format = TL_GZIP_DEFLATE;
	else
		return set_error(p, 415, "unsupported Content-Encoding: %.100s (gzip, deflate and identity are)", v);
	if (tl_gzip_inflater_new(p->inflate_format, &p->inf) != 0)
		return set_error(p, 503, "out of memory");
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	tl_http_parse *p = from_hp(hp);
	tl_http_req *r = p->req;
	/* Close the last string; a name without a value gets an empty one. */
	if (p->last == LAST_FIELD) {
		if (text_end(p) != 0)
			return -1;
		r->hdr[r->nhdr - 1][1] = (uint32_t)r->text.len;
	}
	if (p->last != LAST_NONE && text_end(p) != 0)
		return -1;
	if (p->last == LAST_NONE || r->text.len == 0)
		return set_error(p, 400, "malformed request: no request target");
	r->method = http_method_str((enum http_method)hp->method);
	r->head = hp->method == HTTP_HEAD;
	r->major = hp->http_major;
	r->minor = hp->http_minor;
	if (split_target(p) != 0)
		return -1;
	bool chunked = (hp->flags & F_CHUNKED) != 0;
	bool has_len = !chunked && hp->content_length != ULLONG_MAX && hp->content_length > 0;
	if (has_len && hp->content_length > p->lim.max_wire_body_bytes)
		return set_error(p, 413, "request body too large: %llu bytes (limit %zu)",
		                 (unsigned long long)hp->content_length, p->lim.max_wire_body_bytes);
	if (check_encoding(p) != 0)
		return -1;
	if (has_len && p->inf == NULL) {
		if (hp->content_length > p->lim.max_body_bytes)
			return set_error(p, 413, "request body too large: %llu bytes (limit %zu)",
			                 (unsigned long long)hp->content_length, p->lim.max_body_bytes);
		/* The whole body in one allocation, copied once from the socket buffer. */
		if (tl_buf_reserve(&r->body, (size_t)hp->content_length) != 0)
			return set_error(p, 503, "out of memory");
	}
	const char *expect = find_header(r, "Expect");
	if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && (chunked || has_len) &&
	    (r->major > 1 || (r->major == 1 && r->minor >= 1)))
		p->expect_continue = true;
	p->headers_done = true;
	p->event = EV_HEADERS;
	http_parser_pause(hp, 1);
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	tl_http_parse *p = from_hp(hp);
	p->wire_body += len;
	if (p->wire_body > p->lim.max_wire_body_bytes)
		return set_error(p, 413, "request body too large: more than %zu bytes", p->lim.max_wire_body_bytes);
	int rc;
	if (p->inf != NULL) {
		tl_errmsg e;
		rc = tl_gzip_inflater_feed(p->inf, at, len, &p->req->body, &e);
		if (rc == TL_EPARSE)
			return set_error(p, 400, "invalid %s body: %s",
			                 p->inflate_format == TL_GZIP_GZIP ? "gzip" : "deflate", e.msg);
	} else {
		rc = tl_buf_append(&p->req->body, at, len);
	}
	if (rc == TL_ELIMIT)
		return set_error(p, 413, "request body too large: more than %zu bytes%s", p->lim.max_body_bytes,
		                 p->inf != NULL ? " after inflating" : "");
	if (rc != 0)
		return set_error(p, 503, "out of memory");
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	tl_http_parse *p = from_hp(hp);
	if (p->inf != NULL) {
		tl_errmsg e;
		int rc = tl_gzip_inflater_finish(p->inf, &e);
		tl_gzip_inflater_free(p->inf);
		p->inf = NULL;
		if (rc != 0)
			return set_error(p, 400, "invalid %s body: %s",
			                 p->inflate_format == TL_GZIP_GZIP ? "gzip" : "deflate", e.msg);
	}
	tl_http_req *r = p->req;
	r->keep_alive = http_should_keep_alive(hp) != 0;
	if (hp->upgrade) {
		/* What follows is another protocol, which this server does not speak. */
		p->upgraded = true;
		r->keep_alive = false;
	}
	p->done = r;
	p->req = NULL;
	p->in_msg = false;
	p->hdr_bytes = 0;
	p->event = EV_COMPLETE;
	http_parser_pause(hp, 1);
	return 0;
}

static const http_parser_settings settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

int tl_http_parse_new(const tl_http_limits *lim, tl_http_parse **out)
{
	tl_http_parse *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	if (lim != NULL)
		p->lim = *lim;
	else
		tl_http_limits_default(&p->lim);
	/* Offsets into the header text are 32-bit. */
	if (p->lim.max_header_bytes == 0 || p->lim.max_header_bytes > (1u << 30))
		p->lim.max_header_bytes = 1u << 30;
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	*out = p;
	return 0;
}

void tl_http_parse_free(tl_http_parse *p)
{
	if (p == NULL)
		return;
	tl_gzip_inflater_free(p->inf);
	tl_http_req_free(p->req);
	tl_http_req_free(p->done);
	free(p);
}

static int fail_from_parser(tl_http_parse *p, enum http_errno he)
{
	if (he == HPE_HEADER_OVERFLOW)
		set_error(p, 431, "request header fields too large");
	else
		set_error(p, 400, "malformed request: %s", http_errno_description(he));
	return TL_HTTP_PARSE_ERROR;
}

int tl_http_parse_feed(tl_http_parse *p, const char *data, size_t len, size_t *used)
{
	*used = 0;
	if (p->err_status != 0)
		return TL_HTTP_PARSE_ERROR;
	if (p->done != NULL)
		return TL_HTTP_PARSE_REQUEST;
	if (p->upgraded) {
		*used = len;
		return TL_HTTP_PARSE_MORE;
	}
	size_t off = 0;
	while (off < len) {
		if (p->paused) {
			http_parser_pause(&p->hp, 0);
			p->paused = false;
		}
		size_t n = len - off;
		bool in_headers = !p->headers_done || !p->in_msg;
		if (in_headers) {
			/* Feed at most one byte past the header limit, so the limit holds whatever the chunking. */
			size_t room = p->hdr_bytes <= p->lim.max_header_bytes
			                      ? p->lim.max_header_bytes - p->hdr_bytes + 1
			                      : 1;
			if (n > room)
				n = room;
		}
		p->event = EV_NONE;
		size_t np = http_parser_execute(&p->hp, &settings, data + off, n);
		off += np;
		*used = off;
		if (in_headers)
			p->hdr_bytes += np;
		if (p->err_status != 0)
			return TL_HTTP_PARSE_ERROR;
		enum http_errno he = HTTP_PARSER_ERRNO(&p->hp);
		if (he != HPE_OK && he != HPE_PAUSED)
			return fail_from_parser(p, he);
		if (he == HPE_PAUSED)
			p->paused = true;
		if (p->event == EV_COMPLETE)
			return TL_HTTP_PARSE_REQUEST;
		if (p->event == EV_HEADERS) {
			if (p->expect_continue) {
				p->expect_continue = false;
				return TL_HTTP_PARSE_CONTINUE;
			}
			continue;
		}
		if (in_headers && p->hdr_bytes > p->lim.max_header_bytes) {
			set_error(p, 431, "request header fields too large (limit %zu bytes)", p->lim.max_header_bytes);
			return TL_HTTP_PARSE_ERROR;
		}
		if (np < n) {
			/* http-parser stopped without a reason we know: treat as malformed. */
			set_error(p, 400, "malformed request: parser stopped at byte %zu", off);
			return TL_HTTP_PARSE_ERROR;
		}
	}
	return TL_HTTP_PARSE_MORE;
}

tl_http_req *tl_http_parse_take(tl_http_parse *p)
{
	tl_http_req *r = p->done;
	p->done = NULL;
	return r;
}

int tl_http_parse_error(const tl_http_parse *p, const char **msg)
{
	if (msg != NULL)
		*msg = p->err_msg;
	return p->err_status;
}

bool tl_http_parse_started(const tl_http_parse *p)
{
	return p->in_msg;
}

bool tl_http_parse_done(const tl_http_parse *p)
{
	return p->upgraded;
}

void tl_http_req_free(tl_http_req *r)
{
	if (r == NULL)
		return;
	tl_buf_fini(&r->text);
	tl_buf_fini(&r->body);
	free(r);
}

const char *tl_http_req_method(const tl_http_req *r)
{
	return r->method;
}

const char *tl_http_req_path(const tl_http_req *r)
{
	return (const char *)r->text.data + r->path_off;
}

const char *tl_http_req_query(const tl_http_req *r)
{
	return (const char *)r->text.data + r->query_off;
}

const char *tl_http_req_header(const tl_http_req *r, const char *name)
{
	return find_header(r, name);
}

const uint8_t *tl_http_req_body(const tl_http_req *r, size_t *len)
{
	*len = r->body.len;
	return r->body.data != NULL ? r->body.data : (const uint8_t *)"";
}

/* Decodes one character of a form-encoded string at *s (before end); advances *s. A bad escape stays literal. */
static char decode_one(const char **s, const char *end)
{
	const char *p = *s;
	if (*p == '+') {
		*s = p + 1;
		return ' ';
	}
	if (*p == '%' && end - p >= 3) {
		uint8_t byte;
		if (tl_hex_decode(p + 1, 2, &byte, 1) == 0) {
			*s = p + 3;
			return (char)byte;
		}
	}
	*s = p + 1;
	return *p;
}

static bool decoded_equals(const char *s, const char *end, const char *name)
{
	while (s < end) {
		if (*name == 0 || decode_one(&s, end) != *name)
			return false;
		name++;
	}
	return *name == 0;
}

int tl_http_unescape(const char *s, size_t len, char *buf, size_t buflen)
{
	const char *end = s + len;
	size_t n = 0;
	while (s < end) {
		char c = decode_one(&s, end);
		if (n + 1 >= buflen)
			return TL_ELIMIT;
		buf[n++] = c;
	}
	if (buflen == 0)
		return TL_ELIMIT;
	buf[n] = 0;
	return 0;
}

int tl_http_req_param(const tl_http_req *r, const char *name, char *buf, size_t buflen)
{
	return tl_http_req_param_nth(r, name, 0, buf, buflen);
}

int tl_http_req_param_nth(const tl_http_req *r, const char *name, size_t nth, char *buf, size_t buflen)
{
	const char *q = tl_http_req_query(r);
	while (*q != 0) {
		const char *amp = strchr(q, '&');
		const char *end = amp != NULL ? amp : q + strlen(q);
		const char *eq = memchr(q, '=', (size_t)(end - q));
		const char *kend = eq != NULL ? eq : end;
		if (decoded_equals(q, kend, name) && nth-- == 0) {
			const char *v = eq != NULL ? eq + 1 : end;
			return tl_http_unescape(v, (size_t)(end - v), buf, buflen);
		}
		if (amp == NULL)
			break;
		q = amp + 1;
	}
	return TL_ENOTFOUND;
}
