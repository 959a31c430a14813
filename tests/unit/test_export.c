/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Export: tl_otlp_push against a tiny HTTP server on loopback (real
 * sockets; requests read with the project's own request parser, answers
 * scripted per request: a status with headers and body, a dropped
 * connection, or silence), the Retry-After parser, and co_export's
 * batching and Jaeger file.
 */
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_gzip.h"
#include "tl_http.h"
#include "tl_http_parse.h"
#include "tl_id.h"
#include "tl_otlp_push.h"
#include "tl_pb.h"
#include "tl_testkit.h"
#include "tl_time.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the scripted server ---- */

enum act_kind { ACT_RESPOND, ACT_CLOSE, ACT_HANG };

typedef struct act {
	enum act_kind kind;
	int status;
	const char *headers; /* extra header lines, each ending in \r\n */
	const char *ctype;
	const void *body;
	size_t body_len;
} act;

#define SEEN_MAX 16

typedef struct seen {
	uint64_t at_ns; /* monotonic, when the request was complete */
	char ctype[64], cenc[32], auth[64], path[64], method[8];
	uint8_t *body; /* after inflating */
	size_t body_len;
} seen;

typedef struct srv {
	int lfd, port;
	pthread_t th;
	const act *script;
	size_t n_script; /* past the end, the last action repeats */
	seen got[SEEN_MAX];
	size_t n_got;
	size_t conns; /* connections accepted */
	pthread_mutex_t mu;
	volatile int stop;
} srv;

static void copy_hdr(const tl_http_req *r, const char *name, char *out, size_t cap)
{
	const char *v = tl_http_req_header(r, name);
	snprintf(out, cap, "%s", v != NULL ? v : "");
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

/* Waits for fd to become readable, checking s->stop. Returns 1 readable, 0 stopping. */
static int wait_readable(srv *s, int fd)
{
	while (!s->stop) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 20) > 0)
			return 1;
	}
	return 0;
}

/* Serves one connection. Returns when the client closes, the script closes it, or stop. */
static void serve_conn(srv *s, int fd)
{
	tl_http_parse *p = NULL;
	cr_assert_eq(tl_http_parse_new(NULL, &p), 0);
	char buf[16384];
	for (;;) {
		if (!wait_readable(s, fd))
			break;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		size_t off = 0;
		bool closed = false;
		while (off < (size_t)n && !closed) {
			size_t used = 0;
			int ev = tl_http_parse_feed(p, buf + off, (size_t)n - off, &used);
			off += used;
			if (ev == TL_HTTP_PARSE_CONTINUE) {
				write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
				continue;
			}
			if (ev == TL_HTTP_PARSE_ERROR) {
				closed = true;
				break;
			}
			if (ev != TL_HTTP_PARSE_REQUEST)
				continue;
			tl_http_req *r = tl_http_parse_take(p);
			pthread_mutex_lock(&s->mu);
			size_t i = s->n_got;
			const act *a = &s->script[i < s->n_script ? i : s->n_script - 1];
			if (i < SEEN_MAX) {
				seen *g = &s->got[i];
				g->at_ns = tl_mono_ns();
				copy_hdr(r, "content-type", g->ctype, sizeof(g->ctype));
				copy_hdr(r, "content-encoding", g->cenc, sizeof(g->cenc));
				copy_hdr(r, "authorization", g->auth, sizeof(g->auth));
				snprintf(g->path, sizeof(g->path), "%s", tl_http_req_path(r));
				snprintf(g->method, sizeof(g->method), "%s", tl_http_req_method(r));
				size_t bl;
				const uint8_t *b = tl_http_req_body(r, &bl);
				g->body = malloc(bl ? bl : 1);
				memcpy(g->body, b, bl);
				g->body_len = bl;
			}
			s->n_got++;
			pthread_mutex_unlock(&s->mu);
			tl_http_req_free(r);
			if (a->kind == ACT_CLOSE) {
				closed = true;
			} else if (a->kind == ACT_HANG) {
				while (!s->stop)
					usleep(10000);
				closed = true;
			} else {
				char head[1024];
				int hl = snprintf(head, sizeof(head),
				                  "HTTP/1.1 %d Scripted\r\nContent-Length: %zu\r\n%s%s%s%s\r\n",
				                  a->status, a->body_len, a->ctype ? "Content-Type: " : "",
				                  a->ctype ? a->ctype : "", a->ctype ? "\r\n" : "",
				                  a->headers ? a->headers : "");
				write_all(fd, head, (size_t)hl);
				if (a->body_len > 0)
					write_all(fd, a->body, a->body_len);
			}
		}
		if (closed)
			break;
	}
	tl_http_parse_free(p);
	close(fd);
}

static void *srv_main(void *ud)
{
	srv *s = ud;
	while (!s->stop) {
		if (!wait_readable(s, s->lfd))
			break;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			pthread_mutex_lock(&s->mu);
			s->conns++;
			pthread_mutex_unlock(&s->mu);
			serve_conn(s, fd);
		}
	}
	return NULL;
}

/* Starts a server on port (0: any) answering with script. */
static srv *srv_start(int port, const act *script, size_t n)
{
	srv *s = calloc(1, sizeof(*s));
	cr_assert(s != NULL);
	s->script = script;
	s->n_script = n;
	pthread_mutex_init(&s->mu, NULL);
	s->lfd = tk_listen(port, &s->port);
	cr_assert(s->lfd >= 0, "listen: %s", strerror(-s->lfd));
	cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
	return s;
}

static size_t srv_count(srv *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = s->n_got;
	pthread_mutex_unlock(&s->mu);
	return n;
}

static void srv_stop(srv *s)
{
	s->stop = 1;
	pthread_join(s->th, NULL);
	close(s->lfd);
	for (size_t i = 0; i < SEEN_MAX; i++)
		free(s->got[i].body);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static void url_of(const srv *s, char *out, size_t cap)
{
	snprintf(out, cap, "http://127.0.0.1:%d/v1/traces", s->port);
}

/* A free port with nothing listening. */
static int dead_port(void)
{
	int port = tk_free_port();
	cr_assert(port > 0, "tk_free_port: %s", strerror(-port));
	return port;
}

/* An encoded ExportTraceServiceRequest with one span, for bodies. */
static uint8_t *sample_body(size_t *len)
{
	static uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	static uint8_t sid[8] = {1, 1, 1, 1, 2, 2, 2, 2};
	tl_pb_span sp = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
	sp.trace_id.data = tid;
	sp.trace_id.len = 16;
	sp.span_id.data = sid;
	sp.span_id.len = 8;
	sp.name = "push me";
	sp.start_time_unix_nano = 1000;
	sp.end_time_unix_nano = 2000;
	tl_pb_span *sps[] = {&sp};
	tl_pb_scope_spans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
	ss.spans = sps;
	ss.n_spans = 1;
	tl_pb_scope_spans *sss[] = {&ss};
	tl_pb_resource_spans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
	rs.scope_spans = sss;
	rs.n_scope_spans = 1;
	tl_pb_resource_spans *rss[] = {&rs};
	tl_pb_export_req req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	req.resource_spans = rss;
	req.n_resource_spans = 1;
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(&req);
	uint8_t *b = malloc(*len);
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, b);
	return b;
}

typedef struct retries {
	unsigned calls;
	long status[8];
	uint64_t wait[8];
	char why[8][160];
} retries;

static void on_retry(void *ud, unsigned attempt, long status, uint64_t wait_ns, const char *why)
{
	retries *r = ud;
	if (r->calls < 8) {
		r->status[r->calls] = status;
		r->wait[r->calls] = wait_ns;
		snprintf(r->why[r->calls], sizeof(r->why[0]), "%s", why);
	}
	r->calls++;
	cr_expect_eq(attempt, r->calls);
}

/* ---- Retry-After ---- */

#define RA(s, now, w) tl_otlp_retry_after_parse(s, strlen(s), now, w)

Test(retry_after, delta_seconds)
{
	uint64_t w = 7;
	cr_assert_eq(RA("1", 0, &w), 0);
	cr_expect_eq(w, TL_NS_PER_S);
	cr_assert_eq(RA("  120 \t", 0, &w), 0);
	cr_expect_eq(w, 120 * TL_NS_PER_S);
	cr_assert_eq(RA("0", 0, &w), 0);
	cr_expect_eq(w, 0);
	cr_assert_eq(RA("99999999999999999999999999", 0, &w), 0, "RFC 9110: an overflowing value is capped");
	cr_expect_eq(w, (uint64_t)TL_OTLP_PUSH_RETRY_AFTER_MAX * TL_NS_PER_S);
	/* Not NUL-terminated: only len bytes count. */
	cr_assert_eq(tl_otlp_retry_after_parse("25xyz", 2, 0, &w), 0);
	cr_expect_eq(w, 25 * TL_NS_PER_S);
}

Test(retry_after, http_date)
{
	/* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480. */
	uint64_t w;
	cr_assert_eq(RA("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 30, &w), 0);
	cr_expect_eq(w, 30 * TL_NS_PER_S);
	/* The obsolete RFC 850 and asctime forms. */
	cr_assert_eq(RA("Wednesday, 21-Oct-15 07:28:00 GMT", 1445412480 - 5, &w), 0);
	cr_expect_eq(w, 5 * TL_NS_PER_S);
	cr_assert_eq(RA("Wed Oct 21 07:28:00 2015", 1445412480 - 2, &w), 0);
	cr_expect_eq(w, 2 * TL_NS_PER_S);
	/* In the past: no wait. */
	cr_assert_eq(RA("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 100, &w), 0);
	cr_expect_eq(w, 0);
}

Test(retry_after, refused)
{
	uint64_t w = 42;
	const char *bad[] = {"",        "   ", "-1", "+5", "1.5", "12abc", "soon", "Wed, 99 Foo 2015 07:28:00 GMT",
	                     "\x01\x02"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(RA(bad[i], 0, &w), TL_EPARSE, "'%s' should be refused", bad[i]);
	char longv[200];
	memset(longv, '1', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	cr_expect_eq(RA(longv, 0, &w), TL_EPARSE, "a value longer than 128 bytes is refused");
	cr_expect_eq(tl_otlp_retry_after_parse("1\0002", 3, 0, &w), TL_EPARSE, "an embedded NUL is refused");
	cr_expect_eq(w, 42, "a refused value leaves *wait_ns alone");
}

Test(retry_after, retryable_statuses)
{
	for (long st = 100; st < 600; st++)
		cr_expect_eq(tl_otlp_status_retryable(st), st == 429 || st == 502 || st == 503 || st == 504, "%ld", st);
}

/* ---- push ---- */

/* One push against a fresh scripted server: the server, its URL, and what tl_otlp_push() returned. */
typedef struct push_run {
	srv *s;
	char url[128];
	retries r; /* every retry, through on_retry */
	tl_otlp_push_result res;
	tl_errmsg err;
} push_run;

/* Starts a server answering with script[0..n) (see srv_start) for push(); stop it with push_end(). */
static void push_begin(push_run *p, const act *script, size_t n)
{
	memset(p, 0, sizeof(*p));
	p->s = srv_start(0, script, n);
	url_of(p->s, p->url, sizeof(p->url));
}

/* tl_otlp_push() of body with o, sent to p's server (o.url) and reporting its retries to p->r. */
static int push(push_run *p, tl_otlp_push_opts o, const void *body, size_t len)
{
	o.url = p->url;
	o.on_retry = on_retry;
	o.ud = &p->r;
	return tl_otlp_push(&o, body, len, &p->res, &p->err);
}

static void push_end(push_run *p)
{
	srv_stop(p->s);
}

Test(push, ok_gzip_headers_and_body)
{
	static const act script[] = {{ACT_RESPOND, 200, NULL, "application/x-protobuf", "", 0}};
	push_run p;
	push_begin(&p, script, 1);
	size_t len;
	uint8_t *body = sample_body(&len);
	const char *hdrs[] = {"Authorization: Bearer t0ken"};
	int rc = push(&p, (tl_otlp_push_opts){.headers = hdrs, .n_headers = 1, .gzip = true}, body, len);
	cr_assert_eq(rc, 0, "%s", p.err.msg);
	cr_expect_eq(p.res.status, 200);
	cr_expect_eq(p.res.attempts, 1);
	cr_expect_eq(p.res.rejected_spans, 0);
	cr_assert_eq(srv_count(p.s), 1);
	const seen *g = &p.s->got[0];
	cr_expect_str_eq(g->method, "POST");
	cr_expect_str_eq(g->path, "/v1/traces");
	cr_expect_str_eq(g->ctype, "application/x-protobuf");
	cr_expect_str_eq(g->cenc, "gzip");
	cr_expect_str_eq(g->auth, "Bearer t0ken");
	cr_assert_eq(g->body_len, len, "the server inflated %zu bytes, sent %zu", g->body_len, len);
	cr_expect_eq(memcmp(g->body, body, len), 0);
	tl_pb_export_req *req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	        NULL, g->body_len, g->body);
	cr_assert(req != NULL);
	cr_expect_str_eq(req->resource_spans[0]->scope_spans[0]->spans[0]->name, "push me");
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
	free(body);
	push_end(&p);
}

Test(push, plain_body_without_gzip)
{
	static const act script[] = {{ACT_RESPOND, 202, NULL, NULL, NULL, 0}};
	push_run p;
	push_begin(&p, script, 1);
	const uint8_t body[] = {0x0a, 0x00};
	cr_assert_eq(push(&p, (tl_otlp_push_opts){.gzip = false}, body, sizeof(body)), 0, "%s", p.err.msg);
	cr_expect_eq(p.res.status, 202);
	cr_assert_eq(srv_count(p.s), 1);
	cr_expect_str_eq(p.s->got[0].cenc, "");
	cr_assert_eq(p.s->got[0].body_len, 2);
	cr_expect_eq(memcmp(p.s->got[0].body, body, 2), 0);
	push_end(&p);
}

Test(push, retry_after_seconds_and_date_honoured)
{
	/* 503 with Retry-After: 1, then 429 with an HTTP-date two seconds ahead, then 200. */
	static char date_hdr[96];
	time_t ahead = time(NULL) + 2;
	struct tm tm;
	gmtime_r(&ahead, &tm);
	strftime(date_hdr, sizeof(date_hdr), "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	const act script[] = {
	        {ACT_RESPOND, 503, "Retry-After: 1\r\n", "text/plain", "busy", 4},
	        {ACT_RESPOND, 429, date_hdr, NULL, NULL, 0},
	        {ACT_RESPOND, 200, NULL, NULL, NULL, 0},
	};
	push_run p;
	push_begin(&p, script, 3);
	size_t len;
	uint8_t *body = sample_body(&len);
	/* A long backoff would show if Retry-After were ignored: the waits must be the server's. */
	tl_otlp_push_opts o = {
	        .gzip = true, .initial_backoff_ns = 20 * TL_NS_PER_S, .max_backoff_ns = 20 * TL_NS_PER_S};
	cr_assert_eq(push(&p, o, body, len), 0, "%s", p.err.msg);
	cr_expect_eq(p.res.attempts, 3);
	cr_expect_eq(p.res.status, 200);
	cr_expect_str_eq(p.res.message, "", "the 503's body is not the 200's message");
	cr_assert_eq(srv_count(p.s), 3);
	const retries *r = &p.r;
	cr_assert_eq(r->calls, 2);
	cr_expect_eq(r->status[0], 503);
	cr_expect_eq(r->wait[0], TL_NS_PER_S);
	cr_expect(strstr(r->why[0], "503") != NULL && strstr(r->why[0], "busy") != NULL, "why: %s", r->why[0]);
	cr_expect_eq(r->status[1], 429);
	cr_expect(r->wait[1] >= TL_NS_PER_S && r->wait[1] <= 2 * TL_NS_PER_S, "date wait %llu ns",
	          (unsigned long long)r->wait[1]);
	const seen *got = p.s->got;
	uint64_t gap1 = got[1].at_ns - got[0].at_ns, gap2 = got[2].at_ns - got[1].at_ns;
	cr_expect(gap1 >= TL_NS_PER_S, "the server saw the retry after %llu ms", (unsigned long long)gap1 / 1000000);
	cr_expect(gap2 >= 900 * TL_NS_PER_MS, "the date wait was %llu ms", (unsigned long long)gap2 / 1000000);
	cr_expect(gap1 < 5 * TL_NS_PER_S && gap2 < 5 * TL_NS_PER_S, "no backoff on top of Retry-After");
	free(body);
	push_end(&p);
}

Test(push, backoff_without_retry_after)
{
	static const act script[] = {
	        {ACT_RESPOND, 502, NULL, NULL, NULL, 0},
	        {ACT_RESPOND, 504, NULL, NULL, NULL, 0},
	        {ACT_RESPOND, 429, "Retry-After: soon\r\n", NULL, NULL, 0}, /* unparsable: backoff instead */
	        {ACT_RESPOND, 200, NULL, NULL, NULL, 0},
	};
	push_run p;
	push_begin(&p, script, 4);
	tl_otlp_push_opts o = {
	        .gzip = true, .initial_backoff_ns = 40 * TL_NS_PER_MS, .max_backoff_ns = 100 * TL_NS_PER_MS};
	cr_assert_eq(push(&p, o, "x", 1), 0, "%s", p.err.msg);
	cr_expect_eq(p.res.attempts, 4);
	cr_assert_eq(p.r.calls, 3);
	/* Full jitter: attempt n waits at most min(cap, initial * 2^(n-1)). */
	static const long status[3] = {502, 504, 429};
	static const uint64_t most[3] = {40 * TL_NS_PER_MS, 80 * TL_NS_PER_MS, 100 * TL_NS_PER_MS};
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(p.r.status[i], status[i], "retry %d", i + 1);
		cr_expect_leq(p.r.wait[i], most[i], "retry %d", i + 1);
	}
	push_end(&p);
}

Test(push, jitter_spreads_waits)
{
	/* Many retries against 503: with full jitter the waits are not all the same. */
	static const act script[] = {{ACT_RESPOND, 503, NULL, NULL, NULL, 0}};
	push_run p;
	push_begin(&p, script, 1);
	tl_otlp_push_opts o = {
	        .max_attempts = 8, .initial_backoff_ns = 5 * TL_NS_PER_MS, .max_backoff_ns = 5 * TL_NS_PER_MS};
	cr_assert_eq(push(&p, o, "x", 1), TL_ETRANSPORT);
	cr_expect_eq(p.res.attempts, 8);
	cr_expect_eq(srv_count(p.s), 8);
	cr_assert_eq(p.r.calls, 7);
	bool differ = false;
	for (unsigned i = 0; i < 7; i++) {
		cr_expect_leq(p.r.wait[i], 5 * TL_NS_PER_MS);
		differ |= p.r.wait[i] != p.r.wait[0];
	}
	cr_expect(differ, "seven jittered waits were all %llu ns", (unsigned long long)p.r.wait[0]);
	cr_expect(strstr(p.err.msg, "gave up after 8 attempts") != NULL && strstr(p.err.msg, "503") != NULL, "%s",
	          p.err.msg);
	push_end(&p);
}

Test(push, bad_request_is_not_retried)
{
	static const char text[] = "span 3: trace_id must be 16 bytes\nsecond line";
	static const act script[] = {{ACT_RESPOND, 400, "Retry-After: 1\r\n", "text/plain", text, sizeof(text) - 1}};
	push_run p;
	push_begin(&p, script, 1);
	size_t len;
	uint8_t *body = sample_body(&len);
	cr_assert_eq(push(&p, (tl_otlp_push_opts){.gzip = true}, body, len), TL_EREJECTED);
	cr_expect_eq(p.res.status, 400);
	cr_expect_eq(p.res.attempts, 1);
	cr_expect_eq(p.r.calls, 0);
	usleep(100000);
	cr_expect_eq(srv_count(p.s), 1, "exactly one request");
	cr_expect(strstr(p.err.msg, p.url) != NULL, "the error names the URL: %s", p.err.msg);
	cr_expect(strstr(p.err.msg, "HTTP 400") != NULL, "%s", p.err.msg);
	cr_expect(strstr(p.err.msg, "span 3: trace_id must be 16 bytes") != NULL, "%s", p.err.msg);
	cr_expect(strstr(p.err.msg, "second line") == NULL, "only the first line: %s", p.err.msg);
	cr_expect_str_eq(p.res.message, "span 3: trace_id must be 16 bytes");
	free(body);
	push_end(&p);
}

Test(push, other_errors_not_retried)
{
	static const long statuses[] = {401, 404, 413, 500, 501, 301};
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		act script[] = {{ACT_RESPOND, (int)statuses[i], "Location: http://127.0.0.1:1/\r\n", NULL, NULL, 0}};
		push_run p;
		push_begin(&p, script, 1);
		cr_expect_eq(push(&p, (tl_otlp_push_opts){.initial_backoff_ns = TL_NS_PER_MS}, "x", 1), TL_EREJECTED,
		             "status %ld", statuses[i]);
		cr_expect_eq(p.res.attempts, 1, "status %ld", statuses[i]);
		cr_expect_eq(srv_count(p.s), 1, "status %ld", statuses[i]);
		cr_expect(strstr(p.err.msg, "(empty body)") != NULL, "%s", p.err.msg);
		push_end(&p);
	}
}

Test(push, rpc_status_error_body)
{
	tl_pb_rpc_status st = GOOGLE__RPC__STATUS__INIT;
	st.code = 3;
	st.message = "resource_spans[0]: missing service.name";
	size_t n = google__rpc__status__get_packed_size(&st);
	uint8_t *b = malloc(n);
	google__rpc__status__pack(&st, b);
	act script[] = {{ACT_RESPOND, 400, NULL, "application/x-protobuf", b, n}};
	push_run p;
	push_begin(&p, script, 1);
	cr_assert_eq(push(&p, (tl_otlp_push_opts){0}, "x", 1), TL_EREJECTED);
	cr_expect(strstr(p.err.msg, "HTTP 400: resource_spans[0]: missing service.name") != NULL, "%s", p.err.msg);
	push_end(&p);
	free(b);
}

Test(push, partial_success_protobuf_and_json)
{
	tl_pb_partial_success ps = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	ps.rejected_spans = 3;
	ps.error_message = "3 spans too old";
	tl_pb_export_resp er = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	er.partial_success = &ps;
	size_t n = opentelemetry__proto__collector__trace__v1__export_trace_service_response__get_packed_size(&er);
	uint8_t *b = malloc(n);
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__pack(&er, b);
	static const char js[] = "{\"partialSuccess\":{\"rejectedSpans\":\"2\",\"errorMessage\":\"two dropped\"}}";
	act script[] = {{ACT_RESPOND, 200, NULL, "application/x-protobuf", b, n},
	                {ACT_RESPOND, 200, NULL, "application/json", js, sizeof(js) - 1},
	                {ACT_RESPOND, 200, NULL, "application/x-protobuf", "\xff\xff\xff", 3}};
	push_run p;
	push_begin(&p, script, 3);
	cr_assert_eq(push(&p, (tl_otlp_push_opts){0}, "x", 1), 0, "%s", p.err.msg);
	cr_expect_eq(p.res.rejected_spans, 3);
	cr_expect_str_eq(p.res.message, "3 spans too old");
	cr_assert_eq(push(&p, (tl_otlp_push_opts){0}, "x", 1), 0, "%s", p.err.msg);
	cr_expect_eq(p.res.rejected_spans, 2);
	cr_expect_str_eq(p.res.message, "two dropped");
	cr_assert_eq(push(&p, (tl_otlp_push_opts){0}, "x", 1), 0, "an undecodable 200 is still a success");
	cr_expect_eq(p.res.rejected_spans, 0);
	cr_expect_eq(p.s->conns, 1, "three pushes over one kept-alive connection");
	push_end(&p);
	free(b);
}

Test(push, connection_refused_retried_then_gives_up)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", dead_port());
	retries r = {0};
	tl_otlp_push_opts o = {
	        .url = url, .max_attempts = 3, .initial_backoff_ns = 10 * TL_NS_PER_MS, .on_retry = on_retry, .ud = &r};
	tl_otlp_push_result res;
	tl_errmsg err = {{0}};
	cr_assert_eq(tl_otlp_push(&o, (const uint8_t *)"x", 1, &res, &err), TL_ETRANSPORT);
	cr_expect_eq(res.attempts, 3);
	cr_expect_eq(res.status, 0);
	cr_expect_eq(r.calls, 2);
	cr_expect_eq(r.status[0], 0);
	cr_expect(strstr(err.msg, url) != NULL && strstr(err.msg, "3 attempts") != NULL, "%s", err.msg);
}

typedef struct late {
	int port;
	srv *s;
	const act *script;
} late;

static void *start_late(void *ud)
{
	late *l = ud;
	usleep(300000);
	l->s = srv_start(l->port, l->script, 1);
	return NULL;
}

Test(push, server_that_comes_up_later)
{
	static const act script[] = {{ACT_RESPOND, 200, NULL, NULL, NULL, 0}};
	late l = {.port = dead_port(), .script = script};
	pthread_t th;
	pthread_create(&th, NULL, start_late, &l);
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", l.port);
	tl_otlp_push_opts o = {.url = url,
	                       .max_attempts = 50,
	                       .initial_backoff_ns = 50 * TL_NS_PER_MS,
	                       .max_backoff_ns = 100 * TL_NS_PER_MS};
	tl_otlp_push_result res;
	tl_errmsg err = {{0}};
	int rc = tl_otlp_push(&o, (const uint8_t *)"x", 1, &res, &err);
	pthread_join(th, NULL);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_gt(res.attempts, 1);
	cr_expect_eq(srv_count(l.s), 1);
	srv_stop(l.s);
}

Test(push, dropped_connection_and_silence_are_retried)
{
	static const act script[] = {{ACT_CLOSE, 0, NULL, NULL, NULL, 0}, {ACT_RESPOND, 200, NULL, NULL, NULL, 0}};
	push_run p;
	push_begin(&p, script, 2);
	cr_assert_eq(push(&p, (tl_otlp_push_opts){.initial_backoff_ns = TL_NS_PER_MS}, "x", 1), 0, "%s", p.err.msg);
	cr_expect_eq(p.res.attempts, 2);
	cr_expect_eq(p.r.status[0], 0, "no HTTP status for a dropped connection");
	push_end(&p);

	/* A server that never answers: each attempt times out. */
	static const act hang[] = {{ACT_HANG, 0, NULL, NULL, NULL, 0}};
	push_begin(&p, hang, 1);
	tl_otlp_push_opts h = {.max_attempts = 2, .timeout_ns = 200 * TL_NS_PER_MS, .initial_backoff_ns = TL_NS_PER_MS};
	uint64_t t0 = tl_mono_ns();
	int rc = push(&p, h, "x", 1);
	uint64_t took = tl_mono_ns() - t0;
	cr_expect_eq(rc, TL_ETRANSPORT, "%s", p.err.msg);
	cr_expect_eq(p.res.attempts, 2);
	cr_expect(took >= 200 * TL_NS_PER_MS && took < 5 * TL_NS_PER_S, "took %llu ms",
	          (unsigned long long)took / 1000000);
	push_end(&p);
}

Test(push, retry_after_beyond_max_elapsed_gives_up_at_once)
{
	static const act script[] = {{ACT_RESPOND, 503, "Retry-After: 3600\r\n", NULL, NULL, 0}};
	push_run p;
	push_begin(&p, script, 1);
	uint64_t t0 = tl_mono_ns();
	cr_assert_eq(push(&p, (tl_otlp_push_opts){.max_elapsed_ns = 2 * TL_NS_PER_S}, "x", 1), TL_ETRANSPORT);
	cr_expect_lt(tl_mono_ns() - t0, TL_NS_PER_S);
	cr_expect_eq(p.res.attempts, 1);
	cr_expect_eq(p.res.status, 503);
	cr_expect(strstr(p.err.msg, "Retry-After") != NULL && strstr(p.err.msg, "3600") != NULL, "%s", p.err.msg);
	push_end(&p);
}

typedef struct canceller {
	volatile int flag;
} canceller;

static void *cancel_soon(void *ud)
{
	canceller *c = ud;
	usleep(200000);
	c->flag = 1;
	return NULL;
}

Test(push, cancel_stops_the_wait)
{
	static const act script[] = {{ACT_RESPOND, 503, "Retry-After: 30\r\n", NULL, NULL, 0}};
	push_run p;
	push_begin(&p, script, 1);
	canceller c = {0};
	pthread_t th;
	pthread_create(&th, NULL, cancel_soon, &c);
	uint64_t t0 = tl_mono_ns();
	int rc = push(&p, (tl_otlp_push_opts){.cancel = &c.flag}, "x", 1);
	pthread_join(th, NULL);
	cr_expect_eq(rc, -ECANCELED, "%s", p.err.msg);
	cr_expect_lt(tl_mono_ns() - t0, 2 * TL_NS_PER_S);
	push_end(&p);
}

Test(push, bad_arguments)
{
	tl_otlp_push_result res;
	tl_errmsg err = {{0}};
	tl_otlp_push_opts none = {.url = NULL};
	cr_expect_eq(tl_otlp_push(&none, (const uint8_t *)"x", 1, &res, &err), TL_EINVALID);
	tl_otlp_push_opts ftp = {.url = "ftp://127.0.0.1/x"};
	cr_expect_eq(tl_otlp_push(&ftp, (const uint8_t *)"x", 1, &res, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "ftp://127.0.0.1/x") != NULL, "%s", err.msg);
	const char *bad[] = {"NoColon"};
	const char *inj[] = {"X-A: 1\r\nX-B: 2"};
	tl_otlp_push_opts h1 = {.url = "http://127.0.0.1:1/", .headers = bad, .n_headers = 1};
	cr_expect_eq(tl_otlp_push(&h1, (const uint8_t *)"x", 1, &res, &err), TL_EINVALID);
	tl_otlp_push_opts h2 = {.url = "http://127.0.0.1:1/", .headers = inj, .n_headers = 1};
	cr_expect_eq(tl_otlp_push(&h2, (const uint8_t *)"x", 1, &res, &err), TL_EINVALID);
	cr_expect_eq(res.attempts, 0);
}

/* ---- co_export: OTLP batches ---- */

#include "co_export.h"

/* A stored-trace fixture: resources and scopes with spans, all owned by one struct. */
#define FX_MAX_SPANS 64

typedef struct fixture {
	uint8_t tid[16], other_tid[16];
	uint8_t sid[FX_MAX_SPANS][8];
	tl_pb_span spans[FX_MAX_SPANS];
	tl_pb_span *sp[FX_MAX_SPANS];
	tl_pb_keyvalue kv[FX_MAX_SPANS][4];
	tl_pb_keyvalue *kvp[FX_MAX_SPANS][4];
	tl_pb_anyvalue av[FX_MAX_SPANS][4];
	tl_pb_link link;
	tl_pb_link *linkp;
	tl_pb_event ev;
	tl_pb_event *evp;
	tl_pb_keyvalue rkv[2];
	tl_pb_keyvalue *rkvp[2][1];
	tl_pb_anyvalue rav[2];
	tl_pb_resource res[2];
	tl_pb_scope scope[3];
	tl_pb_scope_spans ss[3];
	tl_pb_scope_spans *ssp[3];
	tl_pb_resource_spans rs[2];
	tl_pb_resource_spans *rsp[2];
	tl_pb_trace_result tr;
	char *big; /* a large attribute value, when asked for */
	size_t n;
} fixture;

/*
 * n spans (at most FX_MAX_SPANS) over two resources: svc-a with scopes
 * "lib.a" (first half) and "lib.b", svc-b with "lib.c" (the rest). Span i's
 * parent is span i-1 (span 0 is the root); span 1 links to a span of
 * another trace. big_attr > 0 gives every span a string of that many bytes.
 */
static fixture *fixture_new(size_t n, size_t big_attr)
{
	cr_assert_leq(n, FX_MAX_SPANS);
	fixture *f = calloc(1, sizeof(*f));
	f->n = n;
	for (int i = 0; i < 16; i++) {
		f->tid[i] = (uint8_t)(0xa0 + i);
		f->other_tid[i] = (uint8_t)(0x10 + i);
	}
	if (big_attr > 0) {
		f->big = malloc(big_attr + 1);
		memset(f->big, 'x', big_attr);
		f->big[big_attr] = '\0';
	}
	uint64_t t0 = UINT64_C(1700000000123456789);
	for (size_t i = 0; i < n; i++) {
		tl_pb_span *s = &f->spans[i];
		opentelemetry__proto__trace__v1__span__init(s);
		for (int k = 0; k < 8; k++)
			f->sid[i][k] = (uint8_t)(i + 1 + k * 16);
		s->trace_id.data = f->tid;
		s->trace_id.len = 16;
		s->span_id.data = f->sid[i];
		s->span_id.len = 8;
		if (i > 0) {
			s->parent_span_id.data = f->sid[i - 1];
			s->parent_span_id.len = 8;
		}
		s->name = i == 0 ? "root" : "step";
		s->kind = (i % 5) + 1;
		s->start_time_unix_nano = t0 + i * 1001;
		s->end_time_unix_nano = t0 + i * 1001 + 2500999; /* 2500.999 µs: truncated to 2500 */
		const char *keys[4] = {"str", "int", "dbl", "flag"};
		size_t nkv = 4;
		for (size_t k = 0; k < nkv; k++) {
			opentelemetry__proto__common__v1__key_value__init(&f->kv[i][k]);
			opentelemetry__proto__common__v1__any_value__init(&f->av[i][k]);
			f->kv[i][k].key = (char *)keys[k];
			f->kv[i][k].value = &f->av[i][k];
			f->kvp[i][k] = &f->kv[i][k];
		}
		f->av[i][0].value_case = TL_PB_ANY_STRING;
		f->av[i][0].string_value = f->big != NULL ? f->big : "hello";
		f->av[i][1].value_case = TL_PB_ANY_INT;
		f->av[i][1].int_value = -(int64_t)i - 7;
		f->av[i][2].value_case = TL_PB_ANY_DOUBLE;
		f->av[i][2].double_value = 0.25 * (double)i;
		f->av[i][3].value_case = TL_PB_ANY_BOOL;
		f->av[i][3].bool_value = i % 2 == 0;
		s->attributes = f->kvp[i];
		s->n_attributes = nkv;
		f->sp[i] = s;
	}
	if (n > 1) {
		opentelemetry__proto__trace__v1__span__link__init(&f->link);
		f->link.trace_id.data = f->other_tid;
		f->link.trace_id.len = 16;
		f->link.span_id.data = f->sid[0]; /* same bytes, other trace: must not resolve */
		f->link.span_id.len = 8;
		f->linkp = &f->link;
		f->spans[1].links = &f->linkp;
		f->spans[1].n_links = 1;
		opentelemetry__proto__trace__v1__span__event__init(&f->ev);
		f->ev.name = "cache miss";
		f->ev.time_unix_nano = t0 + 5000;
		f->evp = &f->ev;
		f->spans[1].events = &f->evp;
		f->spans[1].n_events = 1;
		tl_pb_status *st = calloc(1, sizeof(*st));
		opentelemetry__proto__trace__v1__status__init(st);
		st->code = TL_PB_STATUS_ERROR;
		st->message = "boom";
		f->spans[1].status = st;
	}
	const char *svc[2] = {"svc-a", "svc-b"};
	for (int r = 0; r < 2; r++) {
		opentelemetry__proto__common__v1__key_value__init(&f->rkv[r]);
		opentelemetry__proto__common__v1__any_value__init(&f->rav[r]);
		f->rav[r].value_case = TL_PB_ANY_STRING;
		f->rav[r].string_value = (char *)svc[r];
		f->rkv[r].key = "service.name";
		f->rkv[r].value = &f->rav[r];
		f->rkvp[r][0] = &f->rkv[r];
		opentelemetry__proto__resource__v1__resource__init(&f->res[r]);
		f->res[r].attributes = f->rkvp[r];
		f->res[r].n_attributes = 1;
	}
	const char *scopes[3] = {"lib.a", "lib.b", "lib.c"};
	size_t half = n / 2, quarter = n / 4;
	size_t from[3] = {0, quarter, half}, to[3] = {quarter, half, n};
	for (int k = 0; k < 3; k++) {
		opentelemetry__proto__common__v1__instrumentation_scope__init(&f->scope[k]);
		f->scope[k].name = (char *)scopes[k];
		f->scope[k].version = "1.0";
		opentelemetry__proto__trace__v1__scope_spans__init(&f->ss[k]);
		f->ss[k].scope = &f->scope[k];
		f->ss[k].schema_url = "https://opentelemetry.io/schemas/1.24.0";
		f->ss[k].spans = f->sp + from[k];
		f->ss[k].n_spans = to[k] - from[k];
		f->ssp[k] = &f->ss[k];
	}
	for (int r = 0; r < 2; r++) {
		opentelemetry__proto__trace__v1__resource_spans__init(&f->rs[r]);
		f->rs[r].resource = &f->res[r];
		f->rs[r].schema_url = r == 0 ? "https://example.com/a" : "";
		f->rs[r].scope_spans = r == 0 ? f->ssp : f->ssp + 2;
		f->rs[r].n_scope_spans = r == 0 ? 2 : 1;
		f->rsp[r] = &f->rs[r];
	}
	threadline__v1__trace_result__init(&f->tr);
	f->tr.trace_id.data = f->tid;
	f->tr.trace_id.len = 16;
	f->tr.resource_spans = f->rsp;
	f->tr.n_resource_spans = 2;
	return f;
}

static void fixture_free(fixture *f)
{
	if (f->n > 1)
		free(f->spans[1].status);
	free(f->big);
	free(f);
}

/* What the receiver got, span by span: the encoded span and its resource's service and scope. */
typedef struct got_span {
	uint8_t *bytes;
	size_t len;
	char service[16], scope[16], schema[64];
} got_span;

typedef struct collected {
	got_span spans[FX_MAX_SPANS * 2];
	size_t n_spans, n_batches;
	size_t max_len, max_batch_spans;
	int fail_at; /* emit fails on this batch (1-based; 0: never) */
} collected;

static int collect(void *ud, const uint8_t *body, size_t len, size_t n_spans)
{
	collected *c = ud;
	if (c->fail_at != 0 && (int)c->n_batches + 1 == c->fail_at)
		return TL_EREJECTED;
	c->n_batches++;
	if (len > c->max_len)
		c->max_len = len;
	if (n_spans > c->max_batch_spans)
		c->max_batch_spans = n_spans;
	tl_pb_export_req *req =
	        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, len, body);
	cr_assert(req != NULL, "batch %zu does not decode as an ExportTraceServiceRequest", c->n_batches);
	size_t counted = 0;
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const tl_pb_resource_spans *rs = req->resource_spans[i];
		for (size_t k = 0; k < rs->n_scope_spans; k++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[k];
			for (size_t j = 0; j < ss->n_spans; j++) {
				got_span *g = &c->spans[c->n_spans++];
				g->len = opentelemetry__proto__trace__v1__span__get_packed_size(ss->spans[j]);
				g->bytes = malloc(g->len);
				opentelemetry__proto__trace__v1__span__pack(ss->spans[j], g->bytes);
				snprintf(g->service, sizeof(g->service), "%s",
				         rs->resource->attributes[0]->value->string_value);
				snprintf(g->scope, sizeof(g->scope), "%s", ss->scope->name);
				snprintf(g->schema, sizeof(g->schema), "%s|%s", rs->schema_url, ss->schema_url);
				counted++;
			}
		}
	}
	cr_expect_eq(counted, n_spans, "the callback's span count");
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
	return 0;
}

static void collected_fini(collected *c)
{
	for (size_t i = 0; i < c->n_spans; i++)
		free(c->spans[i].bytes);
}

/* Every span arrived once, in order, byte for byte, under its own resource and scope. */
static void expect_same_spans(const fixture *f, const collected *c)
{
	cr_assert_eq(c->n_spans, f->n);
	for (size_t i = 0; i < f->n; i++) {
		size_t n = opentelemetry__proto__trace__v1__span__get_packed_size(f->sp[i]);
		uint8_t *b = malloc(n);
		opentelemetry__proto__trace__v1__span__pack(f->sp[i], b);
		cr_expect_eq(c->spans[i].len, n, "span %zu", i);
		cr_expect(c->spans[i].len == n && memcmp(c->spans[i].bytes, b, n) == 0, "span %zu changed", i);
		free(b);
		bool a = i < f->n / 2;
		cr_expect_str_eq(c->spans[i].service, a ? "svc-a" : "svc-b", "span %zu", i);
		cr_expect_str_eq(c->spans[i].scope, i < f->n / 4 ? "lib.a" : a ? "lib.b" : "lib.c", "span %zu", i);
		cr_expect_str_eq(c->spans[i].schema,
		                 a ? "https://example.com/a|https://opentelemetry.io/schemas/1.24.0"
		                   : "|https://opentelemetry.io/schemas/1.24.0",
		                 "span %zu", i);
	}
}

/* A batcher whose batches collect() records, over a fixture trace. */
typedef struct batch_run {
	fixture *f;
	collected c;
	co_export_batcher b;
} batch_run;

/* fixture_new(n, big_attr) and a batcher with these bounds (fail_at as in collected); end with batch_end(). */
static void batch_begin(batch_run *r, size_t n, size_t big_attr, size_t max_spans, size_t max_bytes, int fail_at)
{
	memset(r, 0, sizeof(*r));
	r->f = fixture_new(n, big_attr);
	r->c.fail_at = fail_at;
	cr_assert_eq(co_export_batcher_init(&r->b, max_spans, max_bytes, collect, &r->c), 0);
}

/* Adds the fixture's trace and flushes; both must succeed. */
static void batch_all(batch_run *r)
{
	cr_assert_eq(co_export_batcher_add_trace(&r->b, &r->f->tr), 0);
	cr_assert_eq(co_export_batcher_flush(&r->b), 0);
}

static void batch_end(batch_run *r)
{
	co_export_batcher_fini(&r->b);
	collected_fini(&r->c);
	fixture_free(r->f);
}

Test(batcher, span_count_bound)
{
	batch_run r;
	batch_begin(&r, 40, 0, 7, 0, 0);
	cr_assert_eq(co_export_batcher_add_trace(&r.b, &r.f->tr), 0);
	cr_expect_eq(r.c.n_batches, 5, "35 spans in full batches of 7 before the flush");
	cr_assert_eq(co_export_batcher_flush(&r.b), 0);
	cr_expect_eq(r.c.n_batches, 6);
	cr_expect_eq(r.c.max_batch_spans, 7);
	cr_expect_eq(r.b.batches, 6);
	cr_expect_eq(r.b.spans, 40);
	cr_assert_eq(co_export_batcher_flush(&r.b), 0, "an empty flush sends nothing");
	cr_expect_eq(r.c.n_batches, 6);
	expect_same_spans(r.f, &r.c);
	batch_end(&r);
}

Test(batcher, traces_share_batches)
{
	batch_run r;
	batch_begin(&r, 10, 0, 0, 0, 0);
	cr_expect_eq(r.b.max_spans, CO_EXPORT_BATCH_SPANS_DEFAULT);
	cr_expect_eq(r.b.max_bytes, CO_EXPORT_BATCH_BYTES_DEFAULT);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(co_export_batcher_add_trace(&r.b, &r.f->tr), 0);
	cr_expect_eq(r.c.n_batches, 0);
	cr_assert_eq(co_export_batcher_flush(&r.b), 0);
	cr_expect_eq(r.c.n_batches, 1);
	cr_expect_eq(r.c.n_spans, 30);
	batch_end(&r);
}

Test(batcher, byte_bound)
{
	/* 40 spans of ~10 KiB: a 64 KiB bound gives batches of about six spans, each within the bound. */
	batch_run r;
	batch_begin(&r, 40, 10000, 1000, CO_EXPORT_BATCH_BYTES_MIN, 0);
	batch_all(&r);
	cr_expect_leq(r.c.max_len, CO_EXPORT_BATCH_BYTES_MIN, "a batch of %zu bytes", r.c.max_len);
	cr_expect_geq(r.c.max_batch_spans, 5, "batches are filled, not one span each");
	cr_expect_leq(r.c.n_batches, 9);
	cr_expect_eq(r.b.oversized, 0);
	expect_same_spans(r.f, &r.c);
	batch_end(&r);
}

Test(batcher, oversized_span_goes_alone)
{
	batch_run r;
	batch_begin(&r, 4, 100000, 1000, CO_EXPORT_BATCH_BYTES_MIN, 0);
	batch_all(&r);
	cr_expect_eq(r.c.n_batches, 4);
	cr_expect_eq(r.c.max_batch_spans, 1);
	cr_expect_eq(r.b.oversized, 4);
	expect_same_spans(r.f, &r.c);
	batch_end(&r);
}

Test(batcher, callback_error_stops)
{
	batch_run r;
	batch_begin(&r, 20, 0, 5, 0, 2);
	cr_expect_eq(co_export_batcher_add_trace(&r.b, &r.f->tr), TL_EREJECTED);
	cr_expect_eq(r.c.n_batches, 1);
	cr_expect_eq(r.b.batches, 1);
	cr_expect_eq(r.b.spans, 5);
	batch_end(&r);
}

Test(batcher, bad_limits)
{
	co_export_batcher b;
	collected c = {0};
	cr_expect_eq(co_export_batcher_init(&b, 10, 0, NULL, NULL), TL_EINVALID);
	cr_expect_eq(co_export_batcher_init(&b, CO_EXPORT_BATCH_SPANS_MAX + 1, 0, collect, &c), TL_EINVALID);
	cr_expect_eq(co_export_batcher_init(&b, 10, CO_EXPORT_BATCH_BYTES_MIN - 1, collect, &c), TL_EINVALID);
	cr_expect_eq(co_export_batcher_init(&b, 10, CO_EXPORT_BATCH_BYTES_MAX + 1, collect, &c), TL_EINVALID);
}

/* ---- co_export: the Jaeger UI file ---- */

/* Writes the traces to a memory file and parses it back. */
static json_t *write_file(const tl_pb_trace_result *const *trs, size_t n, co_export_jaeger_summary *sum)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	co_export_jaeger j;
	cr_assert_eq(co_export_jaeger_begin(&j, out), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(co_export_jaeger_add(&j, trs[i]), 0);
	cr_assert_eq(co_export_jaeger_end(&j, sum), 0);
	co_export_jaeger_fini(&j);
	fclose(out);
	json_error_t je;
	json_t *doc = json_loadb(text, len, 0, &je);
	cr_assert(doc != NULL, "the file is not JSON: %s (line %d)\n%s", je.text, je.line, text);
	free(text);
	return doc;
}

static const json_t *tag(const json_t *tags, const char *key)
{
	size_t i;
	const json_t *t;
	json_array_foreach(tags, i, t) if (strcmp(json_string_value(json_object_get(t, "key")), key) == 0) return t;
	return NULL;
}

Test(jaeger_file, upload_shape_processes_references_times_tags)
{
	fixture *f = fixture_new(12, 0);
	fixture *g = fixture_new(3, 0);
	for (int i = 0; i < 16; i++)
		g->tid[i] = (uint8_t)(0x50 + i); /* a second trace */
	const tl_pb_trace_result *trs[] = {&f->tr, &g->tr};
	co_export_jaeger_summary sum;
	json_t *doc = write_file(trs, 2, &sum);
	const json_t *data = json_object_get(doc, "data");
	cr_assert(json_is_array(data));
	cr_assert_eq(json_array_size(data), 2);
	cr_expect_eq(json_integer_value(json_object_get(doc, "total")), 2);
	cr_expect(json_is_null(json_object_get(doc, "errors")));
	cr_expect_eq(sum.traces, 2);
	cr_expect_eq(sum.spans, 15);
	cr_expect_eq(sum.processes, 4, "two services per trace");

	/* Every processID is a key of processes; every reference resolves, but for the two links out. */
	json_t *ids = json_object();
	size_t t, i, r;
	const json_t *tr, *sp, *ref;
	json_array_foreach(data, t, tr) json_array_foreach(json_object_get(tr, "spans"), i, sp)
	{
		char key[64];
		snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(sp, "traceID")),
		         json_string_value(json_object_get(sp, "spanID")));
		json_object_set_new(ids, key, json_true());
		const char *pid = json_string_value(json_object_get(sp, "processID"));
		cr_assert(pid != NULL);
		const json_t *proc = json_object_get(json_object_get(tr, "processes"), pid);
		cr_expect(json_is_object(proc), "processID %s is not in processes", pid);
	}
	size_t unresolved = 0, refs = 0;
	json_array_foreach(data, t, tr) json_array_foreach(json_object_get(tr, "spans"), i, sp)
	        json_array_foreach(json_object_get(sp, "references"), r, ref)
	{
		char key[64];
		snprintf(key, sizeof(key), "%s/%s", json_string_value(json_object_get(ref, "traceID")),
		         json_string_value(json_object_get(ref, "spanID")));
		refs++;
		if (json_object_get(ids, key) == NULL) {
			unresolved++;
			cr_expect_str_eq(json_string_value(json_object_get(ref, "refType")), "FOLLOWS_FROM", "%s", key);
		}
	}
	json_decref(ids);
	cr_expect_eq(refs, 11 + 1 + 2 + 1, "parents and one link per trace");
	cr_expect_eq(unresolved, 2, "only the links to the other trace id");
	cr_expect_eq(sum.references, refs);
	cr_expect_eq(sum.unresolved, unresolved);
	cr_expect(strstr(sum.first_unresolved, "101112131415161718191a1b1c1d1e1f") != NULL &&
	                  strstr(sum.first_unresolved, "FOLLOWS_FROM") != NULL,
	          "%s", sum.first_unresolved);

	/* Times in microseconds, tags typed. */
	const json_t *spans = json_object_get(json_array_get(data, 0), "spans");
	cr_assert_eq(json_array_size(spans), 12);
	for (i = 0; i < 12; i++) {
		sp = json_array_get(spans, i);
		const char *sid = json_string_value(json_object_get(sp, "spanID"));
		size_t k = 0;
		for (char hex[17]; k < f->n; k++) {
			tl_hex_encode(f->sid[k], 8, hex);
			if (sid != NULL && strcmp(sid, hex) == 0)
				break;
		}
		cr_assert_lt(k, f->n, "span %s is not one of the fixture's", sid);
		const json_t *st = json_object_get(sp, "startTime"), *du = json_object_get(sp, "duration");
		cr_assert(json_is_integer(st) && json_is_integer(du));
		cr_expect_eq((uint64_t)json_integer_value(st), f->spans[k].start_time_unix_nano / 1000);
		cr_expect_eq(json_integer_value(du), 2500);
		const json_t *tags = json_object_get(sp, "tags");
		const json_t *ti = tag(tags, "int"), *td = tag(tags, "dbl"), *tb = tag(tags, "flag"),
		             *ts = tag(tags, "str");
		cr_assert(ti && td && tb && ts);
		cr_expect_str_eq(json_string_value(json_object_get(ti, "type")), "int64");
		cr_expect_eq(json_integer_value(json_object_get(ti, "value")), -(json_int_t)k - 7);
		cr_expect_str_eq(json_string_value(json_object_get(td, "type")), "float64");
		cr_expect(json_is_number(json_object_get(td, "value")));
		cr_expect_str_eq(json_string_value(json_object_get(tb, "type")), "bool");
		cr_expect(json_is_boolean(json_object_get(tb, "value")));
		cr_expect_str_eq(json_string_value(json_object_get(ts, "type")), "string");
		if (k == 1) {
			const json_t *logs = json_object_get(sp, "logs");
			cr_assert_eq(json_array_size(logs), 1);
			cr_expect_eq(
			        (uint64_t)json_integer_value(json_object_get(json_array_get(logs, 0), "timestamp")),
			        f->ev.time_unix_nano / 1000);
			const json_t *err = tag(tags, "error");
			cr_assert(err != NULL);
			cr_expect_str_eq(json_string_value(json_object_get(err, "type")), "bool");
		}
	}
	json_decref(doc);
	fixture_free(f);
	fixture_free(g);
}

Test(jaeger_file, empty_file_is_valid)
{
	co_export_jaeger_summary sum;
	json_t *doc = write_file(NULL, 0, &sum);
	cr_expect(json_is_array(json_object_get(doc, "data")));
	cr_expect_eq(json_array_size(json_object_get(doc, "data")), 0);
	cr_expect_eq(json_integer_value(json_object_get(doc, "total")), 0);
	cr_expect_eq(sum.traces, 0);
	cr_expect_str_eq(sum.first_unresolved, "");
	json_decref(doc);
}

Test(jaeger_file, missing_parent_reported)
{
	fixture *f = fixture_new(6, 0);
	/* Drop the root: span 1's parent is now outside the file. */
	f->ss[0].spans++;
	f->ss[0].n_spans--;
	const tl_pb_trace_result *trs[] = {&f->tr};
	co_export_jaeger_summary sum;
	json_t *doc = write_file(trs, 1, &sum);
	cr_expect_eq(sum.spans, 5);
	cr_expect_eq(sum.unresolved, 2, "the missing root and the link");
	cr_expect(strstr(sum.first_unresolved, "CHILD_OF") != NULL, "%s", sum.first_unresolved);
	json_decref(doc);
	fixture_free(f);
}
