/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tl_http: the server on a real loop in a background thread, exercised with
 * real client sockets on 127.0.0.1 (framing, keep-alive, pipelining,
 * bodies, gzip, limits, timeouts, asynchronous answers, clean shutdown),
 * plus the socket-free parsing core and the gzip module directly. Every
 * server test ends by checking that the loop closes cleanly.
 */
#include "tl_error.h"
#include "tl_gzip.h"
#include "tl_http.h"
#include "tl_http_parse.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

/* ---- the server under test, on its own loop thread ---- */

typedef struct pending {
	uv_timer_t t;
	tl_http_req *req;
	struct pending *next;
} pending;

static struct {
	uv_loop_t loop;
	uv_async_t stop;
	tl_http_server *s;
	pthread_t th;
	int port;
	tl_http_stats stats; /* copied on the loop thread just before the close */
	atomic_int closed;
	pending *pend; /* asynchronous answers not yet given (loop thread only) */
} S;

static atomic_int async_done;
static atomic_int async_rc;

static void answer_pending(pending *pd)
{
	for (pending **pp = &S.pend; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == pd) {
			*pp = pd->next;
			break;
		}
	}
	int rc = tl_http_respond(pd->req, 200, "text/plain", "async", 5, NULL, 0);
	atomic_store(&async_rc, rc);
	atomic_fetch_add(&async_done, 1);
	uv_close((uv_handle_t *)&pd->t, (uv_close_cb)free);
}

static void on_pending_timer(uv_timer_t *t)
{
	answer_pending((pending *)t);
}

static void handler(tl_http_req *r, void *ud)
{
	const char *path = tl_http_req_path(r);
	if (strcmp(path, "/echo") == 0) {
		size_t len;
		const uint8_t *body = tl_http_req_body(r, &len);
		char lenbuf[32];
		snprintf(lenbuf, sizeof(lenbuf), "%zu", len);
		const char *ct = tl_http_req_header(r, "content-type");
		tl_http_header extra[] = {
		        {"X-Method", tl_http_req_method(r)}, {"X-Path", path},
		        {"X-Query", tl_http_req_query(r)},   {"X-Body-Len", lenbuf},
		        {"X-Bad", "evil\r\nInjected: yes"},
		};
		tl_http_respond(r, 200, ct != NULL ? ct : "application/octet-stream", body, len, extra, 5);
	} else if (strcmp(path, "/param") == 0) {
		char a[64], b[64], out[256];
		int ra = tl_http_req_param(r, "a", a, sizeof(a));
		int rb = tl_http_req_param(r, "b c", b, sizeof(b));
		char small[4];
		int rs = tl_http_req_param(r, "a", small, sizeof(small));
		int rm = tl_http_req_param(r, "missing", small, sizeof(small));
		int n = snprintf(out, sizeof(out), "a=%s|%d;b c=%s|%d;small=%d;missing=%d", ra == 0 ? a : "", ra,
		                 rb == 0 ? b : "", rb, rs, rm);
		tl_http_respond(r, 200, "text/plain", out, (size_t)n, NULL, 0);
	} else if (strcmp(path, "/async") == 0) {
		char ms[16] = "50";
		tl_http_req_param(r, "ms", ms, sizeof(ms));
		pending *pd = calloc(1, sizeof(*pd));
		pd->req = r;
		pd->next = S.pend;
		S.pend = pd;
		uv_timer_init(&S.loop, &pd->t);
		uv_timer_start(&pd->t, on_pending_timer, strtoull(ms, NULL, 10), 0);
	} else {
		tl_http_respond(r, 404, "text/plain", "no such path\n", 13, NULL, 0);
	}
}

static void on_server_closed(void *ud)
{
	atomic_store(&S.closed, 1);
}

static void on_stop(uv_async_t *a)
{
	tl_http_server_stats(S.s, &S.stats);
	tl_http_server_close(S.s, on_server_closed, NULL);
	/* Requests still waiting are answered after the close: their clients are gone. */
	while (S.pend != NULL) {
		uv_timer_stop(&S.pend->t);
		answer_pending(S.pend);
	}
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
	uv_run(&S.loop, UV_RUN_DEFAULT);
	return NULL;
}

static void srv_start(const tl_http_limits *lim)
{
	cr_assert_eq(uv_loop_init(&S.loop), 0);
	cr_assert_eq(tl_http_server_new(&S.loop, lim, handler, NULL, &S.s), 0);
	cr_assert_eq(tl_http_server_listen(S.s, "127.0.0.1:0"), 0);
	S.port = tl_http_server_port(S.s);
	cr_assert_gt(S.port, 0);
	cr_assert_eq(uv_async_init(&S.loop, &S.stop, on_stop), 0);
	cr_assert_eq(pthread_create(&S.th, NULL, loop_main, NULL), 0);
}

/* Closes the server from the loop thread and checks that the loop is left with nothing open. */
static void srv_stop(void)
{
	uv_async_send(&S.stop);
	pthread_join(S.th, NULL);
	cr_assert_eq(atomic_load(&S.closed), 1, "close callback not called");
	cr_assert_eq(uv_loop_close(&S.loop), 0, "loop not clean after tl_http_server_close");
}

static void limits_small(tl_http_limits *l)
{
	tl_http_limits_default(l);
	l->max_body_bytes = 1u << 20;
	l->max_wire_body_bytes = 1u << 20;
}

/* ---- a blocking test client ---- */

typedef struct client {
	int fd;
	char buf[1 << 21];
	size_t len;
} client;

typedef struct resp {
	int status;
	char head[4096];
	char *body;
	size_t body_len;
} resp;

static client *cli_open(void)
{
	client *c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(c->fd, 0);
	struct timeval tv = {.tv_sec = 3};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	return c;
}

static void cli_close(client *c)
{
	close(c->fd);
	free(c);
}

/* Sends everything; returns 0 or -errno (the server may close early). */
static int cli_send(client *c, const void *p, size_t n)
{
	const char *s = p;
	while (n > 0) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static void cli_sends(client *c, const char *s)
{
	cr_assert_eq(cli_send(c, s, strlen(s)), 0);
}

/* Reads more into c->buf; returns bytes read, 0 on EOF, -1 on error or timeout. */
static ssize_t cli_fill(client *c)
{
	if (c->len == sizeof(c->buf))
		return -1;
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	if (n > 0)
		c->len += (size_t)n;
	return n;
}

static const char *find_hdr(const char *head, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *v = p + 2 + nl + 1;
			while (*v == ' ')
				v++;
			size_t n = strcspn(v, "\r");
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, v, n);
			out[n] = 0;
			return out;
		}
	}
	return NULL;
}

/* Reads one response; returns 0, or -1 if the connection ended first. */
static int cli_read(client *c, resp *r)
{
	memset(r, 0, sizeof(*r));
	char *end;
	while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
		if (cli_fill(c) <= 0)
			return -1;
	size_t hlen = (size_t)(end - c->buf) + 4;
	cr_assert_lt(hlen, sizeof(r->head));
	memcpy(r->head, c->buf, hlen);
	r->head[hlen] = 0;
	cr_assert_eq(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1, "bad status line: %s", r->head);
	char cl[32];
	size_t blen = 0;
	if (find_hdr(r->head, "Content-Length", cl, sizeof(cl)) != NULL)
		blen = strtoull(cl, NULL, 10);
	else
		cr_assert(r->status < 200 || r->status == 204, "response without Content-Length: %s", r->head);
	if (strncmp(r->head, "HTTP/1.1 100", 12) == 0 || strstr(r->head, "X-Head-Request") != NULL)
		blen = 0;
	while (c->len < hlen + blen)
		if (cli_fill(c) <= 0)
			return -1;
	r->body = malloc(blen + 1);
	memcpy(r->body, c->buf + hlen, blen);
	r->body[blen] = 0;
	r->body_len = blen;
	memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
	c->len -= hlen + blen;
	return 0;
}

static void resp_fini(resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* True if the server closes the connection (EOF or reset) with nothing more to read. */
static bool cli_sees_close(client *c)
{
	for (;;) {
		ssize_t n = cli_fill(c);
		if (n == 0)
			return true;
		if (n < 0)
			return errno == ECONNRESET;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* One request on a fresh connection; returns the response. */
static void roundtrip(const void *req, size_t len, resp *r)
{
	client *c = cli_open();
	cr_assert_eq(cli_send(c, req, len), 0);
	cr_assert_eq(cli_read(c, r), 0, "no response");
	cli_close(c);
}

/* zlib from the test itself, so the server is not checked against its own compressor. */
static uint8_t *zcompress(const void *in, size_t len, int wbits, size_t *out_len)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	cr_assert_eq(deflateInit2(&zs, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&zs, len);
	uint8_t *out = malloc(cap);
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*out_len = cap - zs.avail_out;
	deflateEnd(&zs);
	return out;
}

/* Sends a POST to /echo with body and extra header lines; reads the response. */
static void post_echo(client *c, const char *hdrs, const void *body, size_t len, resp *r)
{
	char head[512];
	snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", hdrs, len);
	cr_assert_eq(cli_send(c, head, strlen(head)), 0);
	cli_send(c, body, len);
	cr_assert_eq(cli_read(c, r), 0, "no response");
}

/* ---- server tests ---- */

Test(http, get_and_post)
{
	srv_start(NULL);
	resp r;
	const char *get = "GET /echo?x=1&y=%20 HTTP/1.1\r\nHost: t\r\n\r\n";
	roundtrip(get, strlen(get), &r);
	char v[64];
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(find_hdr(r.head, "X-Method", v, sizeof(v)), "GET");
	cr_assert_str_eq(find_hdr(r.head, "X-Path", v, sizeof(v)), "/echo");
	cr_assert_str_eq(find_hdr(r.head, "X-Query", v, sizeof(v)), "x=1&y=%20");
	cr_assert_eq(r.body_len, 0);
	cr_assert_null(find_hdr(r.head, "Injected", v, sizeof(v)), "header injection passed through");
	cr_assert_null(strstr(r.head, "Connection: close"));
	resp_fini(&r);

	const char *post = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: 11\r\n\r\n"
	                   "hello world";
	roundtrip(post, strlen(post), &r);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "hello world");
	cr_assert_str_eq(find_hdr(r.head, "Content-Type", v, sizeof(v)), "text/x-test");
	cr_assert_str_eq(find_hdr(r.head, "X-Method", v, sizeof(v)), "POST");
	resp_fini(&r);

	const char *nf = "GET /nope HTTP/1.1\r\n\r\n";
	roundtrip(nf, strlen(nf), &r);
	cr_assert_eq(r.status, 404);
	cr_assert(strstr(r.head, "HTTP/1.1 404 Not Found\r\n") == r.head);
	resp_fini(&r);
	srv_stop();
	cr_assert_eq(S.stats.requests, 3);
	cr_assert_eq(S.stats.connections_accepted, 3);
}

Test(http, keep_alive_three_requests)
{
	srv_start(NULL);
	client *c = cli_open();
	for (int i = 0; i < 3; i++) {
		char body[16];
		int n = snprintf(body, sizeof(body), "req-%d", i);
		resp r;
		post_echo(c, "", body, (size_t)n, &r);
		cr_assert_eq(r.status, 200);
		cr_assert_str_eq(r.body, body);
		resp_fini(&r);
	}
	cli_close(c);
	srv_stop();
	cr_assert_eq(S.stats.connections_accepted, 1);
	cr_assert_eq(S.stats.requests, 3);
}

Test(http, pipelined_answered_in_order)
{
	srv_start(NULL);
	client *c = cli_open();
	/* The first is answered later (asynchronously); the rest must still come after it. */
	cli_sends(c, "GET /async?ms=80 HTTP/1.1\r\n\r\n"
	             "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\none"
	             "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
	             "GET /echo?three HTTP/1.1\r\n\r\n");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_str_eq(r.body, "async");
	resp_fini(&r);
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_str_eq(r.body, "one");
	resp_fini(&r);
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_str_eq(r.body, "two");
	resp_fini(&r);
	cr_assert_eq(cli_read(c, &r), 0);
	char v[32];
	cr_assert_str_eq(find_hdr(r.head, "X-Query", v, sizeof(v)), "three");
	resp_fini(&r);
	cli_close(c);
	srv_stop();
	cr_assert_eq(atomic_load(&async_rc), 0);
	cr_assert_eq(S.stats.requests, 4);
}

Test(http, chunked_body)
{
	srv_start(NULL);
	client *c = cli_open();
	cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n");
	sleep_ms(20);
	cli_sends(c, "6;ext=1\r\nlo wor\r\n2\r\nld\r\n0\r\n\r\n");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "hello world");
	resp_fini(&r);
	cli_close(c);
	srv_stop();
}

Test(http, gzip_and_deflate_bodies)
{
	srv_start(NULL);
	size_t n = 200000;
	char *plain = malloc(n);
	for (size_t i = 0; i < n; i++)
		plain[i] = (char)('a' + (i * 7 + i / 13) % 26);
	client *c = cli_open();
	int wbits[] = {15 + 16, 15, -15};
	const char *enc[] = {"Content-Encoding: gzip\r\n", "Content-Encoding: deflate\r\n",
	                     "Content-Encoding: Deflate\r\n"};
	for (int k = 0; k < 3; k++) {
		size_t zlen;
		uint8_t *z = zcompress(plain, n, wbits[k], &zlen);
		resp r;
		post_echo(c, enc[k], z, zlen, &r);
		cr_assert_eq(r.status, 200, "encoding %d: %d %s", k, r.status, r.body);
		cr_assert_eq(r.body_len, n);
		cr_assert_eq(memcmp(r.body, plain, n), 0);
		resp_fini(&r);
		free(z);
	}
	cli_close(c);
	free(plain);
	srv_stop();
}

Test(http, gzip_bomb_is_413)
{
	tl_http_limits lim;
	limits_small(&lim);
	srv_start(&lim);
	size_t n = 64u << 20; /* 64 MiB of zeros, about 64 KiB compressed */
	char *zeros = calloc(1, n);
	size_t zlen;
	uint8_t *z = zcompress(zeros, n, 15 + 16, &zlen);
	free(zeros);
	cr_assert_lt(zlen, lim.max_wire_body_bytes);
	client *c = cli_open();
	resp r;
	post_echo(c, "Content-Encoding: gzip\r\n", z, zlen, &r);
	cr_assert_eq(r.status, 413);
	cr_assert(strstr(r.body, "after inflating") != NULL, "%s", r.body);
	cr_assert(strstr(r.head, "Connection: close") != NULL);
	resp_fini(&r);
	cr_assert(cli_sees_close(c));
	cli_close(c);
	free(z);
	srv_stop();
	cr_assert_eq(S.stats.too_large, 1);
}

Test(http, bad_gzip_and_unknown_encoding)
{
	srv_start(NULL);
	client *c = cli_open();
	resp r;
	post_echo(c, "Content-Encoding: gzip\r\n", "\x1f\x8b\x08\x00not gzip at all", 19, &r);
	cr_assert_eq(r.status, 400);
	cr_assert(strncmp(r.body, "invalid gzip body: ", 19) == 0, "%s", r.body);
	resp_fini(&r);
	cli_close(c);

	c = cli_open();
	size_t zlen;
	uint8_t *z = zcompress("truncated stream here", 21, 15 + 16, &zlen);
	post_echo(c, "Content-Encoding: gzip\r\n", z, zlen - 4, &r);
	free(z);
	cr_assert_eq(r.status, 400);
	cr_assert(strstr(r.body, "invalid gzip body: ") != NULL, "%s", r.body);
	resp_fini(&r);
	cli_close(c);

	c = cli_open();
	post_echo(c, "Content-Encoding: br\r\n", "x", 1, &r);
	cr_assert_eq(r.status, 415);
	cr_assert(strstr(r.body, "br") != NULL);
	resp_fini(&r);
	cli_close(c);
	srv_stop();
	cr_assert_eq(S.stats.bad_requests, 3);
}

Test(http, body_over_limit_is_413_early)
{
	tl_http_limits lim;
	limits_small(&lim);
	srv_start(&lim);
	/* Declared too large: answered before any body byte is sent. */
	client *c = cli_open();
	cli_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 413);
	cr_assert(strstr(r.body, "too large") != NULL);
	resp_fini(&r);
	cr_assert(cli_sees_close(c));
	cli_close(c);

	/* Chunked: answered once the running total passes the limit, even while the client keeps sending. */
	c = cli_open();
	cli_sends(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	char *chunk = malloc(65536 + 16);
	int h = snprintf(chunk, 16, "10000\r\n");
	memset(chunk + h, 'x', 65536);
	memcpy(chunk + h + 65536, "\r\n", 2);
	for (int i = 0; i < 20; i++)
		if (cli_send(c, chunk, (size_t)h + 65536 + 2) != 0)
			break;
	free(chunk);
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 413);
	resp_fini(&r);
	cli_close(c);
	srv_stop();
	cr_assert_eq(S.stats.too_large, 2);
}

Test(http, header_too_big_is_431)
{
	srv_start(NULL);
	client *c = cli_open();
	size_t n = 20000;
	static char big[20000 + 64];
	int h = sprintf(big, "GET / HTTP/1.1\r\nX-Big: ");
	memset(big + h, 'a', n);
	memcpy(big + h + n, "\r\n\r\n", 5);
	cli_send(c, big, strlen(big));
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 431);
	resp_fini(&r);
	cli_close(c);
	srv_stop();
	cr_assert_eq(S.stats.too_large, 1);
}

Test(http, garbage_is_400_with_message)
{
	srv_start(NULL);
	client *c = cli_open();
	cli_sends(c, "HELLO WORLD\r\n\r\n");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 400);
	cr_assert(strstr(r.body, "malformed request: ") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "method") != NULL, "%s", r.body);
	resp_fini(&r);
	cr_assert(cli_sees_close(c));
	cli_close(c);

	c = cli_open();
	cli_sends(c, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 400);
	cr_assert(strstr(r.body, "chunk size") != NULL, "%s", r.body);
	resp_fini(&r);
	cli_close(c);
	srv_stop();
	cr_assert_eq(S.stats.bad_requests, 2);
}

Test(http, slow_loris_gets_408)
{
	tl_http_limits lim;
	tl_http_limits_default(&lim);
	lim.read_timeout_ms = 300;
	srv_start(&lim);
	client *c = cli_open();
	uint64_t t0 = now_ms();
	cli_sends(c, "GET / HTTP/1.1\r\n");
	/* Trickle a header byte every 50 ms: progress must not extend the deadline. */
	for (int i = 0; i < 20; i++) {
		if (cli_send(c, "X", 1) != 0)
			break;
		sleep_ms(50);
		struct timeval tv = {0};
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(c->fd, &fds);
		if (select(c->fd + 1, &fds, NULL, NULL, &tv) > 0)
			break;
	}
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	uint64_t took = now_ms() - t0;
	cr_assert_eq(r.status, 408);
	cr_assert_geq(took, 250);
	cr_assert_lt(took, 900, "408 after %llu ms", (unsigned long long)took);
	resp_fini(&r);
	cr_assert(cli_sees_close(c));
	cli_close(c);
	srv_stop();
	cr_assert_eq(S.stats.timeouts, 1);
}

Test(http, idle_keep_alive_closed)
{
	tl_http_limits lim;
	tl_http_limits_default(&lim);
	lim.idle_timeout_ms = 150;
	srv_start(&lim);
	client *c = cli_open();
	resp r;
	post_echo(c, "", "a", 1, &r);
	resp_fini(&r);
	uint64_t t0 = now_ms();
	cr_assert(cli_sees_close(c));
	cr_assert_lt(now_ms() - t0, 1000);
	cli_close(c);
	srv_stop();
}

Test(http, async_response)
{
	srv_start(NULL);
	client *c = cli_open();
	cli_sends(c, "GET /async?ms=60 HTTP/1.1\r\n\r\n");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "async");
	resp_fini(&r);
	/* The connection is usable again afterwards. */
	post_echo(c, "", "again", 5, &r);
	cr_assert_str_eq(r.body, "again");
	resp_fini(&r);
	cli_close(c);
	srv_stop();
	cr_assert_eq(atomic_load(&async_rc), 0);
}

Test(http, client_gone_before_async_response)
{
	srv_start(NULL);
	client *c = cli_open();
	cli_sends(c, "GET /async?ms=200 HTTP/1.1\r\n\r\n");
	sleep_ms(30);
	cli_close(c);
	for (int i = 0; i < 200 && atomic_load(&async_done) == 0; i++)
		sleep_ms(10);
	cr_assert_eq(atomic_load(&async_done), 1);
	cr_assert_eq(atomic_load(&async_rc), TL_ECLOSED);
	srv_stop();
	cr_assert_eq(S.stats.connections_open, 0);
}

Test(http, query_params_decoded)
{
	srv_start(NULL);
	const char *req = "GET /param?x=1&a=hello+world%21&b+c=%E2%82%AC%zz&empty HTTP/1.1\r\n\r\n";
	resp r;
	roundtrip(req, strlen(req), &r);
	cr_assert_eq(r.status, 200);
	char want[128];
	snprintf(want, sizeof(want), "a=hello world!|0;b c=\xE2\x82\xAC%%zz|0;small=%d;missing=%d", TL_ELIMIT,
	         TL_ENOTFOUND);
	cr_assert_str_eq(r.body, want);
	resp_fini(&r);
	srv_stop();
}

Test(http, connection_cap)
{
	tl_http_limits lim;
	tl_http_limits_default(&lim);
	lim.max_connections = 2;
	srv_start(&lim);
	client *a = cli_open(), *b = cli_open();
	resp r;
	post_echo(a, "", "a", 1, &r);
	resp_fini(&r);
	post_echo(b, "", "b", 1, &r);
	resp_fini(&r);
	client *x = cli_open();
	cli_send(x, "GET / HTTP/1.1\r\n\r\n", 18);
	cr_assert(cli_sees_close(x), "third connection was served");
	cli_close(x);
	cli_close(a);
	/* A slot frees up once a client leaves. */
	client *d = NULL;
	for (int i = 0; i < 50; i++) {
		sleep_ms(10);
		d = cli_open();
		if (cli_send(d, "POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nd", 44) == 0 && cli_read(d, &r) == 0)
			break;
		cli_close(d);
		d = NULL;
	}
	cr_assert_not_null(d);
	cr_assert_str_eq(r.body, "d");
	resp_fini(&r);
	cli_close(d);
	cli_close(b);
	srv_stop();
	cr_assert_geq(S.stats.connections_refused, 1);
}

Test(http, expect_100_continue)
{
	srv_start(NULL);
	client *c = cli_open();
	cli_sends(c, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 100);
	resp_fini(&r);
	cli_sends(c, "body");
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "body");
	resp_fini(&r);
	cli_close(c);
	srv_stop();
}

Test(http, http10_closes_and_head_has_no_body)
{
	srv_start(NULL);
	client *c = cli_open();
	cli_sends(c, "POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
	resp r;
	cr_assert_eq(cli_read(c, &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "hi");
	cr_assert(strstr(r.head, "Connection: close") != NULL);
	resp_fini(&r);
	cr_assert(cli_sees_close(c));
	cli_close(c);

	c = cli_open();
	cli_sends(c, "HEAD /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
	for (int i = 0; i < 100 && cli_fill(c) > 0; i++)
		;
	c->buf[c->len] = 0;
	cr_assert(strstr(c->buf, "Content-Length: 13\r\n") != NULL, "%s", c->buf);
	cr_assert(strstr(c->buf, "no such path") == NULL, "HEAD response carried a body");
	cli_close(c);
	srv_stop();
}

Test(http, close_with_open_connections_is_clean)
{
	srv_start(NULL);
	client *idle = cli_open();
	client *busy = cli_open();
	client *partial = cli_open();
	resp r;
	post_echo(idle, "", "x", 1, &r);
	resp_fini(&r);
	cli_sends(busy, "GET /async?ms=60000 HTTP/1.1\r\n\r\n");
	cli_sends(partial, "GET / HTTP/1.1\r\nHost:");
	sleep_ms(50);
	srv_stop();
	/* The pending request was answered after the close: its connection was gone. */
	cr_assert_eq(atomic_load(&async_done), 1);
	cr_assert_eq(atomic_load(&async_rc), TL_ECLOSED);
	cr_assert(cli_sees_close(idle));
	cr_assert(cli_sees_close(busy));
	cli_close(idle);
	cli_close(busy);
	cli_close(partial);
}

Test(http, listen_addresses)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	tl_http_server *s;
	cr_assert_eq(tl_http_server_new(&loop, NULL, handler, NULL, &s), 0);
	cr_assert_eq(tl_http_server_listen(s, "nonsense"), TL_EINVALID);
	cr_assert_eq(tl_http_server_listen(s, "127.0.0.1:99999"), TL_EINVALID);
	cr_assert_eq(tl_http_server_listen(s, "127.0.0.1:"), TL_EINVALID);
	cr_assert_eq(tl_http_server_listen(s, "[::1:80"), TL_EINVALID);
	cr_assert_eq(tl_http_server_listen(s, "300.1.1.1:80"), TL_EINVALID);
	cr_assert_eq(tl_http_server_listen(s, "127.0.0.1:0"), 0);
	int port = tl_http_server_port(s);
	cr_assert_gt(port, 0);
	tl_http_server *s2;
	cr_assert_eq(tl_http_server_new(&loop, NULL, handler, NULL, &s2), 0);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	cr_assert_eq(tl_http_server_listen(s2, addr), -EADDRINUSE);
	atomic_store(&S.closed, 0);
	tl_http_server_close(s, NULL, NULL);
	tl_http_server_close(s2, on_server_closed, NULL);
	tl_http_server_close(NULL, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(atomic_load(&S.closed), 1);
	cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- the parsing core, without sockets ---- */

static tl_http_parse *parser(size_t max_header, size_t max_body)
{
	tl_http_limits lim;
	tl_http_limits_default(&lim);
	lim.max_header_bytes = max_header;
	lim.max_body_bytes = max_body;
	lim.max_wire_body_bytes = max_body;
	tl_http_parse *p;
	cr_assert_eq(tl_http_parse_new(&lim, &p), 0);
	return p;
}

Test(http_parse, byte_by_byte_pipelined)
{
	const char *in = "POST /a?q=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
	                 "GET http://x.example/b/c?d=e HTTP/1.1\r\nA:\r\n\r\n";
	tl_http_parse *p = parser(4096, 4096);
	size_t n = strlen(in), off = 0;
	int got = 0;
	while (off < n) {
		size_t used;
		int ev = tl_http_parse_feed(p, in + off, 1, &used);
		off += used;
		if (ev == TL_HTTP_PARSE_REQUEST) {
			tl_http_req *r = tl_http_parse_take(p);
			size_t blen;
			const uint8_t *b = tl_http_req_body(r, &blen);
			if (got == 0) {
				cr_assert_str_eq(tl_http_req_method(r), "POST");
				cr_assert_str_eq(tl_http_req_path(r), "/a");
				cr_assert_str_eq(tl_http_req_query(r), "q=1");
				cr_assert_str_eq(tl_http_req_header(r, "HOST"), "h");
				cr_assert_eq(blen, 2);
				cr_assert_eq(memcmp(b, "ab", 2), 0);
			} else {
				cr_assert_str_eq(tl_http_req_path(r), "/b/c");
				cr_assert_str_eq(tl_http_req_query(r), "d=e");
				cr_assert_str_eq(tl_http_req_header(r, "a"), "");
				cr_assert_eq(blen, 0);
				cr_assert_str_eq((const char *)b, "");
			}
			cr_assert_eq(tl_http_respond(r, 200, NULL, NULL, 0, NULL, 0), TL_ECLOSED);
			got++;
		} else {
			cr_assert_eq(ev, TL_HTTP_PARSE_MORE);
		}
	}
	cr_assert_eq(got, 2);
	cr_assert_not(tl_http_parse_started(p));
	tl_http_parse_free(p);
}

Test(http_parse, header_limit_holds_whatever_the_chunking)
{
	char in[600];
	int h = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nX: ");
	memset(in + h, 'v', 300);
	memcpy(in + h + 300, "\r\n\r\n", 5);
	for (size_t step = 1; step <= strlen(in); step += 97) {
		tl_http_parse *p = parser(256, 1024);
		size_t off = 0, used;
		int ev = TL_HTTP_PARSE_MORE;
		while (off < strlen(in) && ev == TL_HTTP_PARSE_MORE) {
			size_t n = strlen(in) - off < step ? strlen(in) - off : step;
			ev = tl_http_parse_feed(p, in + off, n, &used);
			off += used;
		}
		cr_assert_eq(ev, TL_HTTP_PARSE_ERROR);
		cr_assert_eq(tl_http_parse_error(p, NULL), 431);
		tl_http_parse_free(p);
	}
	/* The same request fits a larger limit. */
	tl_http_parse *p = parser(400, 1024);
	size_t used;
	cr_assert_eq(tl_http_parse_feed(p, in, strlen(in), &used), TL_HTTP_PARSE_REQUEST);
	tl_http_req_free(tl_http_parse_take(p));
	tl_http_parse_free(p);
}

Test(http_parse, expect_continue_before_body)
{
	const char *in = "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc";
	tl_http_parse *p = parser(1024, 1024);
	size_t used, n = strlen(in);
	cr_assert_eq(tl_http_parse_feed(p, in, n, &used), TL_HTTP_PARSE_CONTINUE);
	cr_assert(tl_http_parse_started(p));
	size_t used2;
	cr_assert_eq(tl_http_parse_feed(p, in + used, n - used, &used2), TL_HTTP_PARSE_REQUEST);
	cr_assert_eq(used + used2, n);
	tl_http_req_free(tl_http_parse_take(p));
	tl_http_parse_free(p);
}

/* ---- gzip module ---- */

Test(http_gzip, bomb_never_allocates_past_the_cap)
{
	size_t n = 16u << 20;
	char *zeros = calloc(1, n);
	size_t zlen;
	uint8_t *z = zcompress(zeros, n, 15 + 16, &zlen);
	free(zeros);
	tl_buf out;
	tl_buf_init(&out, 100000);
	tl_errmsg e;
	cr_assert_eq(tl_gzip_inflate(TL_GZIP_GZIP, z, zlen, &out, &e), TL_ELIMIT);
	cr_assert_eq(out.len, 100000);
	cr_assert_leq(out.cap, 100001);
	tl_buf_fini(&out);
	free(z);

	/* Exactly at the cap is fine. */
	z = zcompress("0123456789", 10, 15 + 16, &zlen);
	tl_buf_init(&out, 10);
	cr_assert_eq(tl_gzip_inflate(TL_GZIP_GZIP, z, zlen, &out, &e), 0);
	cr_assert_eq(out.len, 10);
	tl_buf_fini(&out);
	free(z);
}

Test(http_gzip, roundtrip_members_and_errors)
{
	tl_buf z, out;
	tl_buf_init(&z, 0);
	cr_assert_eq(tl_gzip_deflate(TL_GZIP_GZIP, "one,", 4, 6, &z), 0);
	cr_assert_eq(tl_gzip_deflate(TL_GZIP_GZIP, "two", 3, 6, &z), 0);
	tl_buf_init(&out, 0);
	tl_errmsg e;
	/* Fed a byte at a time, two members back to back. */
	tl_gzip_inflater *in;
	cr_assert_eq(tl_gzip_inflater_new(TL_GZIP_GZIP, &in), 0);
	for (size_t i = 0; i < z.len; i++)
		cr_assert_eq(tl_gzip_inflater_feed(in, z.data + i, 1, &out, &e), 0);
	cr_assert_eq(tl_gzip_inflater_finish(in, &e), 0);
	tl_gzip_inflater_free(in);
	cr_assert_eq(out.len, 7);
	cr_assert_eq(memcmp(out.data, "one,two", 7), 0);
	tl_buf_reset(&out);
	cr_assert_eq(tl_gzip_inflate(TL_GZIP_GZIP, z.data, z.len - 1, &out, &e), TL_EPARSE);
	cr_assert(strstr(e.msg, "truncated") != NULL, "%s", e.msg);
	tl_buf_reset(&out);
	cr_assert_eq(tl_gzip_inflate(TL_GZIP_DEFLATE, "\x78\x9c garbage", 10, &out, &e), TL_EPARSE);
	tl_buf_reset(&out);
	cr_assert_eq(tl_gzip_inflate(TL_GZIP_GZIP, "", 0, &out, &e), 0);
	cr_assert_eq(out.len, 0);
	tl_buf_fini(&z);
	tl_buf_fini(&out);
}
