/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Forwarding on loopback (issue 6): a real agent and collector, the
 * collector started with --forward-otlp, and an OTLP/HTTP receiver written
 * here, independently of the collector's encoder: a thread serving
 * loopback HTTP/1.1 (http-parser, zlib through tl_gzip) that decodes each
 * ExportTraceServiceRequest with protobuf-c and records every span id it
 * accepted, with the request it came in. It can be down (nothing listening),
 * answer 503 a few times, answer slowly, or refuse with 400 the requests
 * that hold a span of a given name.
 *
 * What is checked: with the receiver down at first and the collector
 * stopped with SIGTERM in the middle of the stream, every span sent through
 * the agent arrives exactly once, with its resource and scope; after a
 * kill -9 in the middle, every span arrives, and the spans that arrived
 * twice all came in one request (one batch); a 400 skips that batch only,
 * is logged once with the receiver's body and counted in /metrics; bad
 * --forward-* flags are usage errors.
 *
 * A second suite (forward_store) runs co_forward in-process on a store the
 * test fills with co_store_commit: chunks with several resources and scopes
 * come out regrouped with the right resource and scope per span, a batch
 * smaller than a chunk splits it (the cursor points into the chunk) and a
 * forwarder stopped mid-stream and started again sends each span once; the
 * byte bound holds; a stored chunk that does not decode is skipped and
 * counted.
 */
#include <criterion/criterion.h>

#include <http_parser.h>
#include <lmdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "co_forward.h"
#include "co_store.h"
#include "tl_arena.h"
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_gzip.h"
#include "tl_pb.h"
#include "tl_testkit.h"

#define START_MS 30000
#define HTTP_TIMEOUT_MS 30000
#define SERVICE "forward-test"
#define SCOPE "forward-scope"
#define BATCH_SPANS "40"
#define BODY_MAX ((size_t)64 << 20)

/* ---- the OTLP receiver ---- */

typedef struct rx {
	int port;
	int lfd;
	pthread_t th;
	bool running;
	atomic_bool stop;
	pthread_mutex_t mu;
	/* Behaviour (set before rx_start). */
	int fail_first;       /* answer 503 to this many requests first */
	int delay_ms;         /* wait this long before each answer */
	char reject_name[32]; /* 400 for a request holding a span with this name ("" : none) */
	/* What arrived (under mu). */
	uint64_t *ids;    /* span ids accepted (big-endian u64 of the 8 bytes) */
	uint32_t *req_of; /* request number of each */
	char (*ctx)[48];  /* "service/scope" of each */
	size_t n, cap;
	size_t accepted; /* requests answered 200 */
	size_t answered_503, answered_400;
	size_t undecodable;   /* bodies that did not gunzip or decode */
	size_t bad_context;   /* spans without our resource or scope */
	size_t gzipped;       /* requests with Content-Encoding: gzip */
	size_t max_req_spans; /* most spans in one accepted request */
	size_t max_req_bytes; /* largest accepted request, decoded */
} rx;

/* One connection's parse state. */
typedef struct conn {
	rx *r;
	int fd;
	http_parser p;
	tl_buf body;
	bool gzip, last_was_ce, done;
} conn;

static int on_hfield(http_parser *p, const char *at, size_t len)
{
	conn *c = p->data;
	c->last_was_ce = len == 16 && strncasecmp(at, "content-encoding", 16) == 0;
	return 0;
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
	conn *c = p->data;
	if (c->last_was_ce && len >= 4 && strncasecmp(at, "gzip", 4) == 0)
		c->gzip = true;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	conn *c = p->data;
	return tl_buf_append(&c->body, at, len) == 0 ? 0 : -1;
}

static int on_complete(http_parser *p)
{
	conn *c = p->data;
	c->done = true;
	http_parser_pause(p, 1);
	return 0;
}

static uint64_t id64(const ProtobufCBinaryData *b)
{
	uint64_t v = 0;
	for (size_t i = 0; i < b->len && i < 8; i++)
		v = v << 8 | b->data[i];
	return b->len == 8 ? v : 0;
}

/* The resource's service.name ("" when none). */
static const char *service_of(const tl_pb_resource *res)
{
	if (res == NULL)
		return "";
	for (size_t i = 0; i < res->n_attributes; i++) {
		const tl_pb_keyvalue *kv = res->attributes[i];
		if (kv->key != NULL && strcmp(kv->key, "service.name") == 0 && kv->value != NULL &&
		    kv->value->value_case == TL_PB_ANY_STRING)
			return kv->value->string_value;
	}
	return "";
}

static void respond(int fd, int status, const char *body)
{
	char buf[512];
	const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : "Service Unavailable";
	int n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n%s",
	                 status, reason, status == 200 ? "application/x-protobuf" : "text/plain", strlen(body), body);
	tk_send_all(fd, buf, (size_t)n);
}

/* Counts a body that did not gunzip or decode, answers 400 with why, and frees plain. */
static void refuse_undecodable(conn *c, tl_buf *plain, const char *why)
{
	pthread_mutex_lock(&c->r->mu);
	c->r->undecodable++;
	pthread_mutex_unlock(&c->r->mu);
	respond(c->fd, 400, why);
	tl_buf_fini(plain);
}

/* Decides the answer to one complete request and records what it accepted. */
static void handle(conn *c)
{
	rx *r = c->r;
	tl_buf plain;
	tl_buf_init(&plain, BODY_MAX * 4);
	const tl_buf *in = &c->body;
	if (c->gzip) {
		tl_errmsg e;
		if (tl_gzip_inflate(TL_GZIP_GZIP, c->body.data, c->body.len, &plain, &e) != 0) {
			refuse_undecodable(c, &plain, "bad gzip");
			return;
		}
		in = &plain;
	}
	tl_pb_export_req *req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	        NULL, in->len, in->data);
	if (req == NULL) {
		refuse_undecodable(c, &plain, "bad protobuf");
		return;
	}
	if (r->delay_ms > 0)
		tk_sleep_ms(r->delay_ms);
	pthread_mutex_lock(&r->mu);
	if (c->gzip)
		r->gzipped++;
	bool poison = false;
	size_t nspans = 0;
	for (size_t i = 0; i < req->n_resource_spans; i++)
		for (size_t j = 0; j < req->resource_spans[i]->n_scope_spans; j++) {
			const tl_pb_scope_spans *ss = req->resource_spans[i]->scope_spans[j];
			for (size_t k = 0; k < ss->n_spans; k++) {
				nspans++;
				if (r->reject_name[0] != '\0' && ss->spans[k]->name != NULL &&
				    strcmp(ss->spans[k]->name, r->reject_name) == 0)
					poison = true;
			}
		}
	int status = 200;
	if (r->fail_first > 0) {
		r->fail_first--;
		r->answered_503++;
		status = 503;
	} else if (poison) {
		r->answered_400++;
		status = 400;
	} else {
		uint32_t reqno = (uint32_t)r->accepted++;
		if (nspans > r->max_req_spans)
			r->max_req_spans = nspans;
		if (in->len > r->max_req_bytes)
			r->max_req_bytes = in->len;
		if (r->n + nspans > r->cap) {
			size_t ncap = (r->n + nspans) * 2;
			r->ids = realloc(r->ids, ncap * sizeof(*r->ids));
			r->req_of = realloc(r->req_of, ncap * sizeof(*r->req_of));
			r->ctx = realloc(r->ctx, ncap * sizeof(*r->ctx));
			r->cap = ncap;
		}
		for (size_t i = 0; i < req->n_resource_spans; i++) {
			const tl_pb_resource_spans *rs = req->resource_spans[i];
			for (size_t j = 0; j < rs->n_scope_spans; j++) {
				const tl_pb_scope_spans *ss = rs->scope_spans[j];
				const char *svc = service_of(rs->resource);
				const char *scope = ss->scope != NULL && ss->scope->name != NULL ? ss->scope->name : "";
				bool ctx_ok = strcmp(svc, SERVICE) == 0 && strcmp(scope, SCOPE) == 0;
				for (size_t k = 0; k < ss->n_spans; k++) {
					if (!ctx_ok)
						r->bad_context++;
					snprintf(r->ctx[r->n], sizeof(r->ctx[r->n]), "%.20s/%.20s", svc, scope);
					r->ids[r->n] = id64(&ss->spans[k]->span_id);
					r->req_of[r->n++] = reqno;
				}
			}
		}
	}
	pthread_mutex_unlock(&r->mu);
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
	tl_buf_fini(&plain);
	respond(c->fd, status,
	        status == 200   ? ""
	        : status == 400 ? "poison span refused by the test receiver"
	                        : "down");
}

/* Serves one connection until the client closes it or the receiver stops. */
static void serve(rx *r, int fd)
{
	static http_parser_settings settings = {.on_header_field = on_hfield,
	                                        .on_header_value = on_hvalue,
	                                        .on_body = on_body,
	                                        .on_message_complete = on_complete};
	conn c = {.r = r, .fd = fd};
	http_parser_init(&c.p, HTTP_REQUEST);
	c.p.data = &c;
	tl_buf_init(&c.body, BODY_MAX);
	char buf[65536];
	while (!atomic_load(&r->stop)) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		size_t off = 0;
		while (off < (size_t)n) {
			size_t used = http_parser_execute(&c.p, &settings, buf + off, (size_t)n - off);
			off += used;
			if (c.done) {
				handle(&c);
				c.done = c.gzip = c.last_was_ce = false;
				tl_buf_reset(&c.body);
				http_parser_pause(&c.p, 0);
			} else if (HTTP_PARSER_ERRNO(&c.p) != HPE_OK) {
				goto out; /* a request we cannot parse: drop the connection */
			}
		}
	}
out:
	tl_buf_fini(&c.body);
	close(fd);
}

static void *rx_main(void *arg)
{
	rx *r = arg;
	while (!atomic_load(&r->stop)) {
		struct pollfd pfd = {.fd = r->lfd, .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		int fd = accept(r->lfd, NULL, NULL);
		if (fd >= 0)
			serve(r, fd);
	}
	return NULL;
}

static void rx_init(rx *r, int port)
{
	memset(r, 0, sizeof(*r));
	r->port = port;
	r->lfd = -1;
	pthread_mutex_init(&r->mu, NULL);
}

/* Starts listening on r->port (the receiver comes up). */
static void rx_start(rx *r)
{
	r->lfd = tk_listen(r->port, NULL);
	cr_assert(r->lfd >= 0, "listen on 127.0.0.1:%d: %s", r->port, strerror(-r->lfd));
	atomic_store(&r->stop, false);
	cr_assert(pthread_create(&r->th, NULL, rx_main, r) == 0);
	r->running = true;
}

static void rx_stop(rx *r)
{
	if (!r->running)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	close(r->lfd);
	r->lfd = -1;
	r->running = false;
}

static void rx_fini(rx *r)
{
	rx_stop(r);
	free(r->ids);
	free(r->req_of);
	free(r->ctx);
	pthread_mutex_destroy(&r->mu);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Distinct ids received among [1, n] (ids outside count as strays). */
typedef struct tally {
	size_t total, distinct, dups, strays;
	size_t missing_first; /* the first id in [1, n] never received (0: none) */
	bool dups_in_one_request;
	uint32_t dup_request;
} tally;

static tally rx_tally(rx *r, uint64_t n)
{
	tally t = {.dups_in_one_request = true};
	pthread_mutex_lock(&r->mu);
	t.total = r->n;
	uint64_t *ids = malloc((r->n ? r->n : 1) * sizeof(*ids));
	cr_assert(ids != NULL);
	if (r->n > 0)
		memcpy(ids, r->ids, r->n * sizeof(*ids));
	/* The request of the second arrival of each duplicated id: all must be one request. */
	bool have = false;
	for (size_t i = 0; i < r->n; i++)
		for (size_t j = 0; j < i && r->n <= 4096; j++)
			if (r->ids[j] == r->ids[i]) {
				if (have && r->req_of[i] != t.dup_request)
					t.dups_in_one_request = false;
				t.dup_request = r->req_of[i];
				have = true;
				break;
			}
	pthread_mutex_unlock(&r->mu);
	qsort(ids, t.total, sizeof(*ids), cmp_u64);
	uint64_t want = 1;
	for (size_t i = 0; i < t.total; i++) {
		if (i > 0 && ids[i] == ids[i - 1]) {
			t.dups++;
			continue;
		}
		if (ids[i] < 1 || ids[i] > n) {
			t.strays++;
			continue;
		}
		t.distinct++;
		if (t.missing_first == 0 && ids[i] != want)
			t.missing_first = want;
		want = ids[i] + 1;
	}
	if (t.missing_first == 0 && want <= n)
		t.missing_first = want;
	free(ids);
	return t;
}

static size_t rx_count(rx *r)
{
	pthread_mutex_lock(&r->mu);
	size_t n = r->n;
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* ---- building requests ---- */

/* One ResourceSpans of a test request: n spans with ids first_id.. in trace number trace. */
typedef struct gspec {
	const char *service, *scope;
	uint64_t trace;
	uint64_t first_id;
	int n;
	size_t pad;       /* bytes of a "pad" string attribute on every span (0: none) */
	const char *name; /* every span's name (NULL: "op") */
} gspec;

static void *zal(tl_arena *a, size_t n)
{
	void *p = tl_arena_alloc(a, n);
	cr_assert(p != NULL, "arena");
	memset(p, 0, n);
	return p;
}

/* 8 bytes, big-endian, in a. */
static uint8_t *be64(tl_arena *a, uint64_t v)
{
	uint8_t *b = zal(a, 8);
	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)(v >> (56 - 8 * k));
	return b;
}

/* A one-element array of p, in a. */
static void *one(tl_arena *a, void *p)
{
	void **l = zal(a, sizeof(*l));
	l[0] = p;
	return l;
}

/* A KeyValue with a string value (both borrowed), in a. */
static tl_pb_keyvalue *kv_str(tl_arena *a, const char *key, const char *value)
{
	tl_pb_anyvalue *v = zal(a, sizeof(*v));
	opentelemetry__proto__common__v1__any_value__init(v);
	v->value_case = TL_PB_ANY_STRING;
	v->string_value = (char *)value;
	tl_pb_keyvalue *kv = zal(a, sizeof(*kv));
	opentelemetry__proto__common__v1__key_value__init(kv);
	kv->key = (char *)key;
	kv->value = v;
	return kv;
}

/* A request made of g[0..ng), all in a (valid until a is reset). */
static tl_pb_export_req *build_req(tl_arena *a, const gspec *g, size_t ng)
{
	tl_pb_resource_spans **rsl = zal(a, ng * sizeof(*rsl));
	for (size_t i = 0; i < ng; i++) {
		tl_pb_span **spans = zal(a, (size_t)g[i].n * sizeof(*spans));
		uint8_t *trace = zal(a, 16);
		trace[0] = 0xab;
		memcpy(trace + 8, be64(a, g[i].trace + 1), 8);
		char *pad = zal(a, g[i].pad + 1);
		memset(pad, 'p', g[i].pad);
		for (int j = 0; j < g[i].n; j++) {
			uint64_t id = g[i].first_id + (uint64_t)j;
			tl_pb_span *sp = zal(a, sizeof(*sp));
			opentelemetry__proto__trace__v1__span__init(sp);
			sp->trace_id = (ProtobufCBinaryData){16, trace};
			sp->span_id = (ProtobufCBinaryData){8, be64(a, id)};
			sp->name = g[i].name != NULL ? (char *)g[i].name : "op";
			sp->start_time_unix_nano = UINT64_C(1700000000000000000) + id * 1000;
			sp->end_time_unix_nano = sp->start_time_unix_nano + 500;
			if (g[i].pad > 0) {
				sp->attributes = one(a, kv_str(a, "pad", pad));
				sp->n_attributes = 1;
			}
			spans[j] = sp;
		}
		tl_pb_resource *res = zal(a, sizeof(*res));
		opentelemetry__proto__resource__v1__resource__init(res);
		res->attributes = one(a, kv_str(a, "service.name", g[i].service));
		res->n_attributes = 1;
		tl_pb_scope *sc = zal(a, sizeof(*sc));
		opentelemetry__proto__common__v1__instrumentation_scope__init(sc);
		sc->name = (char *)g[i].scope;
		tl_pb_scope_spans *ss = zal(a, sizeof(*ss));
		opentelemetry__proto__trace__v1__scope_spans__init(ss);
		ss->scope = sc;
		ss->spans = spans;
		ss->n_spans = (size_t)g[i].n;
		tl_pb_resource_spans *rs = zal(a, sizeof(*rs));
		opentelemetry__proto__trace__v1__resource_spans__init(rs);
		rs->resource = res;
		rs->scope_spans = one(a, ss);
		rs->n_scope_spans = 1;
		rsl[i] = rs;
	}
	tl_pb_export_req *req = zal(a, sizeof(*req));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
	req->resource_spans = rsl;
	req->n_resource_spans = ng;
	return req;
}

/* ---- the stack ---- */

static tk_stack st;
static rx R;
static char fwd_url[128];
static char *fwd_args[16];

#define must(cond, ...) TK_MUST(&st, cond, __VA_ARGS__)
#define stop_checked() TK_STACK_STOP_CHECKED(&st, 15000)

/* R, not listening yet, on a free port, and fwd_url pointing at it. */
static void rx_setup(void)
{
	int port = tk_free_port();
	cr_assert(port > 0);
	rx_init(&R, port);
	snprintf(fwd_url, sizeof(fwd_url), "http://127.0.0.1:%d/v1/traces", port);
}

static void setup(void)
{
	TK_STACK_START(&st, "fwd", NULL);
	rx_setup();
	size_t i = 0;
	fwd_args[i++] = "--forward-otlp";
	fwd_args[i++] = fwd_url;
	fwd_args[i++] = "--forward-batch-spans";
	fwd_args[i++] = BATCH_SPANS;
	fwd_args[i++] = "--forward-header";
	fwd_args[i++] = "X-Test: forward";
	fwd_args[i] = NULL;
}

static void teardown(void)
{
	tk_stack_stop(&st, 10000);
	rx_fini(&R);
}

/* (Re)starts the collector with forwarding on; it must not be running. */
static void start_forwarding_collector(void)
{
	char why[512] = "";
	int rc = tk_stack_start_collector(&st, fwd_args, START_MS, why, sizeof(why));
	must(rc == 0, "starting the collector with --forward-otlp: %s (%s)", why, tl_strerror(rc));
}

static void sigterm_collector(void)
{
	int rc = tk_stop(&st.collector, 15000);
	must(rc == 0 && tk_exit_code(&st.collector) == 0,
	     "the collector did not exit 0 on SIGTERM (%s, wait status 0x%x)", rc != 0 ? "killed" : "exited",
	     st.collector.status);
}

static double cmetric(const char *series)
{
	double v = -1;
	int rc = tk_metric(st.api_port, series, &v);
	must(rc == 0, "collector /metrics: %s: %s", series, tl_strerror(rc));
	return v;
}

/*
 * Sends nreq OTLP requests of per spans each to the agent, with our
 * resource and scope; span ids are first_id, first_id+1, ... (big-endian in
 * the 8 bytes), each request one trace. A span named name_override (when
 * not NULL) replaces every name.
 */
static void send_spans(uint64_t first_id, int nreq, int per, const char *name_override)
{
	tl_arena a;
	tl_arena_init(&a, (size_t)256 * 1024, 0);
	for (int q = 0; q < nreq; q++) {
		tl_arena_reset(&a);
		uint64_t id = first_id + (uint64_t)q * (uint64_t)per;
		const gspec g = {SERVICE, SCOPE, id, id, per, 0, name_override};
		tl_pb_export_req *req = build_req(&a, &g, 1);
		size_t len =
		        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(req);
		uint8_t *body = zal(&a, len);
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, body);
		static const tk_header hdr[] = {{"Content-Type", "application/x-protobuf"}};
		tk_http_resp r;
		int rc = tk_http(st.http_port, "POST", "/v1/traces", hdr, 1, body, len, HTTP_TIMEOUT_MS, &r);
		must(rc == 0 && r.status == 200, "agent answered %d (%s) to request %d", rc == 0 ? r.status : 0,
		     tl_strerror(rc), q);
		tk_http_resp_fini(&r);
	}
	tl_arena_fini(&a);
}

/* Waits until the receiver holds `want` distinct ids in [1, n] (or the timeout); returns the last tally. */
static tally wait_distinct(uint64_t n, size_t want, int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	tally t;
	for (;;) {
		t = rx_tally(&R, n);
		if (t.distinct == want || tk_now_ms() > deadline)
			break;
		tk_sleep_ms(100);
	}
	return t;
}

/* Waits until the receiver holds every id in [1, n] (or the timeout). */
static tally wait_all(uint64_t n, int timeout_ms)
{
	return wait_distinct(n, (size_t)n, timeout_ms);
}

/* Waits (polling every step_ms) until the receiver holds at least n spans; fails the test after timeout_ms. */
static void wait_received(size_t n, int timeout_ms, int step_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	while (rx_count(&R) < n) {
		must(tk_now_ms() < deadline, "the receiver got %zu of %zu spans in %d ms", rx_count(&R), n, timeout_ms);
		tk_sleep_ms(step_ms);
	}
}

/* Waits until the collector's series reaches at least min; fails the test after timeout_ms. */
static void wait_cmetric(const char *series, double min, int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	while (cmetric(series) < min) {
		must(tk_now_ms() < deadline, "%s did not reach %.0f in %d ms", series, min, timeout_ms);
		tk_sleep_ms(100);
	}
}

/* Waits until the collector reports no lag (every stored chunk delivered or skipped). */
static void wait_no_lag(int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	while (cmetric("threadline_collector_forward_lag_chunks") != 0) {
		must(tk_now_ms() < deadline, "forward lag still %.0f chunks after %d ms",
		     cmetric("threadline_collector_forward_lag_chunks"), timeout_ms);
		tk_sleep_ms(100);
	}
}

/* Stops the plain collector the stack started and starts it again with forwarding. */
static void switch_to_forwarding(void)
{
	sigterm_collector();
	start_forwarding_collector();
	must(tk_log_contains(&st.collector, "forward.started"), "no forward.started line in %s", st.collector.err_path);
}

TestSuite(forward, .init = setup, .fini = teardown, .timeout = 240);

/*
 * Receiver down at first (connection refused), then up answering 503 twice
 * and slowly; the collector is stopped with SIGTERM while batches are
 * flowing and started again; more spans follow. Every span exactly once.
 */
Test(forward, receiver_late_sigterm_restart_exactly_once)
{
	switch_to_forwarding();
	send_spans(1, 10, 30, NULL);                                           /* 1..300 while nothing listens */
	wait_cmetric("threadline_collector_forward_failures_total", 1, 20000); /* the receiver is down */
	must(cmetric("threadline_collector_forward_spans_total") == 0, "spans counted as sent with no receiver");
	must(cmetric("threadline_collector_forward_lag_chunks") > 0, "no lag while the receiver is down");

	R.fail_first = 2;
	R.delay_ms = 100;
	rx_start(&R);
	send_spans(301, 10, 30, NULL); /* 301..600 */
	wait_received(120, 60000, 20);
	sigterm_collector(); /* mid-stream: 600 spans at 40 per 100 ms take 1.5 s */
	size_t at_stop = rx_count(&R);
	must(at_stop < 600, "not mid-stream: all %zu spans had arrived before the SIGTERM", at_stop);
	must(tk_log_contains(&st.collector, "forward.stopped"), "no forward.stopped line");
	must(!tk_log_contains(&st.collector, "forward.stop_cancelled"), "the push in flight was cancelled");

	start_forwarding_collector();
	send_spans(601, 10, 30, NULL); /* 601..900 */
	tally t = wait_all(900, 60000);
	must(t.distinct == 900, "%zu of 900 spans arrived; first missing %zu", t.distinct, t.missing_first);
	wait_no_lag(30000);
	tk_sleep_ms(300);
	t = rx_tally(&R, 900);
	must(t.dups == 0 && t.total == 900, "exactly once broken: %zu received, %zu duplicates, %zu strays", t.total,
	     t.dups, t.strays);
	must(R.answered_503 == 2, "the receiver answered 503 %zu times", R.answered_503);
	must(R.undecodable == 0, "%zu requests did not decode", R.undecodable);
	must(R.bad_context == 0, "%zu spans came without their resource or scope", R.bad_context);
	must(R.gzipped == R.accepted + R.answered_503, "%zu of %zu requests were gzipped", R.gzipped,
	     R.accepted + R.answered_503);
	double spans = cmetric("threadline_collector_forward_spans_total");
	must(spans > 0 && spans <= 900, "forward_spans_total %.0f after the restart", spans);
	must(cmetric("threadline_collector_forward_batches_total{outcome=\"rejected\"}") == 0, "a batch rejected");
	stop_checked();
}

/* kill -9 in the middle: everything arrives, and what arrived twice came in one request. */
Test(forward, kill9_at_least_once_one_batch_of_duplicates)
{
	switch_to_forwarding();
	R.delay_ms = 60;
	rx_start(&R);
	send_spans(1, 20, 30, NULL); /* 1..600 */
	wait_received(160, 60000, 10);
	tk_kill(&st.collector);
	size_t at_kill = rx_count(&R);
	must(at_kill < 600, "not mid-stream: all spans had arrived before the kill");
	start_forwarding_collector();
	send_spans(601, 5, 30, NULL);
	tally t = wait_all(750, 60000);
	must(t.distinct == 750, "%zu of 750 spans arrived; first missing %zu", t.distinct, t.missing_first);
	wait_no_lag(30000);
	tk_sleep_ms(300);
	t = rx_tally(&R, 750);
	must(t.strays == 0, "%zu stray span ids", t.strays);
	must(t.dups <= (size_t)atoi(BATCH_SPANS), "%zu duplicates: more than one batch of %s", t.dups, BATCH_SPANS);
	must(t.dups_in_one_request, "duplicates arrived in more than one request");
	must(R.bad_context == 0, "%zu spans came without their resource or scope", R.bad_context);
	stop_checked();
}

/* A 400 skips that batch only: logged once with the body, counted, and forwarding goes on. */
Test(forward, poison_batch_is_skipped_and_counted)
{
	switch_to_forwarding();
	snprintf(R.reject_name, sizeof(R.reject_name), "poison");
	rx_start(&R);
	send_spans(1, 2, 20, NULL); /* 1..40 */
	tally t = wait_all(40, 30000);
	must(t.distinct == 40, "%zu of the first 40 spans arrived", t.distinct);
	send_spans(41, 1, 5, "poison"); /* 41..45, refused */
	wait_cmetric("threadline_collector_forward_batches_total{outcome=\"rejected\"}", 1, 30000);
	send_spans(46, 2, 20, NULL); /* 46..85 */
	wait_distinct(85, 80, 30000);
	wait_no_lag(30000);
	t = rx_tally(&R, 85);
	must(t.distinct == 80 && t.dups == 0, "%zu distinct spans (want 80: all but the poison ones), %zu dups",
	     t.distinct, t.dups);
	must(R.answered_400 == 1, "the poison batch was sent %zu times", R.answered_400);
	must(cmetric("threadline_collector_forward_batches_total{outcome=\"rejected\"}") == 1, "rejected batches");
	must(cmetric("threadline_collector_forward_rejected_spans_total") == 5, "rejected spans %.0f",
	     cmetric("threadline_collector_forward_rejected_spans_total"));
	must(tk_log_count(&st.collector, "forward.rejected") == 1, "forward.rejected logged %zu times",
	     tk_log_count(&st.collector, "forward.rejected"));
	must(tk_log_contains(&st.collector, "poison span refused by the test receiver"),
	     "the log does not quote the receiver's body");
	must(tk_log_contains(&st.collector, "status=400"), "the log does not name the status");
	stop_checked();
}

/* Bad --forward-* flags are usage errors (exit 2) naming the flag. */
Test(forward, bad_flags_are_usage_errors)
{
	const char *col = tk_bin(TK_ENV_COLLECTOR);
	cr_assert(col != NULL);
	char data[TK_PATH_MAX + 8];
	snprintf(data, sizeof(data), "%s/unused", st.dir);
	struct {
		const char *a[4];
		const char *needle;
	} cases[] = {
	        {{"--forward-otlp", "ftp://x/v1/traces", NULL}, "--forward-otlp"},
	        {{"--forward-otlp", fwd_url, "--forward-header", "NoColon"}, "--forward-header"},
	        {{"--forward-otlp", fwd_url, "--forward-batch-spans", "0"}, "--forward-batch-spans"},
	        {{"--forward-otlp", fwd_url, "--forward-batch-bytes", "1K"}, "--forward-batch-bytes"},
	        {{"--forward-header", "A: b", NULL}, "--forward-otlp"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[10] = {(char *)col, "--data", data};
		size_t n = 3;
		for (size_t k = 0; k < 4 && cases[i].a[k] != NULL; k++)
			argv[n++] = (char *)cases[i].a[k];
		argv[n] = NULL;
		tk_output out = {0};
		int rc = tk_run(argv, 20000, &out);
		cr_expect(rc == 0 && out.exit_code == 2, "case %zu: exit %d (%s)", i, out.exit_code, out.err);
		cr_expect(out.err != NULL && strstr(out.err, cases[i].needle) != NULL, "case %zu: stderr lacks %s: %s",
		          i, cases[i].needle, out.err);
		tk_output_fini(&out);
	}
	stop_checked();
}

/* ---- in-process: the forwarder on a store this test fills directly ---- */

static co_store *S;
static char sdir[TK_PATH_MAX];
static uint64_t sseq;
static tl_arena SA;

static void store_open(void)
{
	co_store_opts o = {.dir = sdir, .map_size = 64 << 20};
	tl_errmsg err = {{0}};
	int rc = co_store_open(&o, &S, &err);
	cr_assert_eq(rc, 0, "open %s: %s (%s)", sdir, tl_strerror(rc), err.msg);
}

static void store_setup(void)
{
	cr_assert_eq(tk_tmpdir("fwdstore", sdir, sizeof(sdir)), 0);
	store_open();
	sseq = 0;
	tl_arena_init(&SA, 1 << 20, 0);
	rx_setup();
}

static void store_teardown(void)
{
	rx_fini(&R);
	co_store_close(S);
	S = NULL;
	tl_arena_fini(&SA);
	tk_rmrf(sdir);
}

/* Commits one batch made of g[0..ng) to S. */
static void commit_specs(const gspec *g, size_t ng)
{
	tl_pb_export_req *req = build_req(&SA, g, ng);
	co_batch b = {.agent_id = {7}, .seq = ++sseq, .traces = &req, .n_traces = 1};
	co_batch *bp = &b;
	int rc = co_store_commit(S, &bp, 1, UINT64_C(1700000000000000000));
	cr_assert(rc == 0 && b.status == CO_BATCH_OK, "commit: %s", tl_strerror(rc));
}

static co_forward *fwd_start(size_t batch_spans, size_t batch_bytes)
{
	co_forward_opts o = {.url = fwd_url,
	                     .batch_spans = batch_spans,
	                     .batch_bytes = batch_bytes,
	                     .initial_backoff_ns = 50 * UINT64_C(1000000),
	                     .max_backoff_ns = 200 * UINT64_C(1000000),
	                     .idle_poll_ns = 50 * UINT64_C(1000000)};
	co_forward *f = NULL;
	tl_errmsg err = {{0}};
	int rc = co_forward_start(S, &o, &f, &err);
	cr_assert(rc == 0, "co_forward_start: %s (%s)", tl_strerror(rc), err.msg);
	return f;
}

/* The "service/scope" the receiver recorded for span id, or NULL. */
static const char *ctx_of(uint64_t id)
{
	const char *c = NULL;
	pthread_mutex_lock(&R.mu);
	for (size_t i = 0; i < R.n && c == NULL; i++)
		if (R.ids[i] == id)
			c = R.ctx[i];
	pthread_mutex_unlock(&R.mu);
	return c;
}

TestSuite(forward_store, .init = store_setup, .fini = store_teardown, .timeout = 120);

/*
 * Chunks holding several resources and scopes, a batch (7 spans) smaller
 * than a chunk, and a stop and a new forwarder in the middle: every span
 * exactly once, each with its own resource and scope, no request above 7.
 */
Test(forward_store, regroups_splits_chunks_and_resumes_exactly_once)
{
	const gspec b1[] = {
	        {"svc-a", "s1", 0, 1, 30, 0, NULL},
	        {"svc-a", "s2", 0, 31, 20, 0, NULL},
	        {"svc-b", "s1", 1, 51, 30, 0, NULL},
	        {"svc-a", "s1", 1, 81, 15, 0, NULL},
	};
	const gspec b2[] = {{"svc-b", "s2", 2, 96, 55, 0, NULL}};
	commit_specs(b1, 4);
	commit_specs(b2, 1);
	R.delay_ms = 20;
	rx_start(&R);
	co_forward *f = fwd_start(7, 0);
	wait_received(30, 30000, 5);
	co_forward_free(f); /* mid-stream */
	size_t at_stop = rx_count(&R);
	cr_assert(at_stop < 150, "not mid-stream");
	f = fwd_start(7, 0);
	uint64_t lag = 0;
	cr_assert_eq(co_forward_lag(f, &lag), 0);
	tally t = wait_all(150, 30000);
	cr_assert(t.distinct == 150, "%zu of 150 arrived; first missing %zu", t.distinct, t.missing_first);
	int64_t deadline = tk_now_ms() + 10000;
	while (co_forward_lag(f, &lag) == 0 && lag > 0 && tk_now_ms() < deadline)
		tk_sleep_ms(20);
	cr_assert_eq(lag, 0, "lag %llu after everything arrived", (unsigned long long)lag);
	co_forward_stats s;
	co_forward_stats_get(f, &s);
	co_forward_free(f);
	t = rx_tally(&R, 150);
	cr_assert(t.total == 150 && t.dups == 0, "%zu received, %zu duplicates", t.total, t.dups);
	cr_assert(R.max_req_spans <= 7, "a request held %zu spans", R.max_req_spans);
	cr_assert_eq(s.spans, 150 - at_stop, "the second forwarder counted %llu spans, sent %zu",
	             (unsigned long long)s.spans, 150 - at_stop);
	cr_assert_eq(s.rejected_batches, 0);
	for (size_t i = 0; i < 5; i++) {
		const gspec *g = i < 4 ? &b1[i] : &b2[0];
		char want[48];
		snprintf(want, sizeof(want), "%s/%s", g->service, g->scope);
		for (int j = 0; j < g->n; j++) {
			const char *c = ctx_of(g->first_id + (uint64_t)j);
			cr_assert(c != NULL && strcmp(c, want) == 0, "span %llu came as %s, sent as %s",
			          (unsigned long long)(g->first_id + (uint64_t)j), c ? c : "(none)", want);
		}
	}
}

static int put_garbage(struct MDB_txn *txn, void *ud)
{
	uint8_t k[8];
	uint64_t id = *(const uint64_t *)ud;
	for (int i = 0; i < 8; i++)
		k[i] = (uint8_t)(id >> (56 - 8 * i));
	MDB_val key = {8, k}, val = {3, "\xff\xff\xff"};
	return mdb_put(txn, co_store_get_dbs(S)->spans, &key, &val, 0);
}

/*
 * A batch is bounded in encoded bytes (64 KiB of 8 KiB spans), and a stored
 * chunk that does not decode is skipped and counted, not retried forever.
 */
Test(forward_store, byte_bound_and_undecodable_chunk_skipped)
{
	const gspec big[] = {{"svc-a", "s1", 0, 1, 40, 8192, NULL}};
	commit_specs(big, 1);
	/* A garbage chunk right after the last one, then more spans after it. */
	uint64_t last = 0;
	{
		MDB_txn *txn;
		cr_assert_eq(co_store_read_begin(S, &txn), 0);
		MDB_cursor *c;
		cr_assert_eq(mdb_cursor_open(txn, co_store_get_dbs(S)->spans, &c), 0);
		MDB_val k, v;
		cr_assert_eq(mdb_cursor_get(c, &k, &v, MDB_LAST), 0);
		for (int i = 0; i < 8; i++)
			last = last << 8 | ((const uint8_t *)k.mv_data)[i];
		mdb_cursor_close(c);
		co_store_read_end(S, txn);
	}
	uint64_t bad = last + 1;
	cr_assert_eq(co_store_write(S, put_garbage, &bad), 0);
	co_store_close(S);
	store_open(); /* the store numbers new chunks after the garbage one */
	const gspec more[] = {{"svc-b", "s2", 1, 41, 10, 0, NULL}};
	commit_specs(more, 1);
	rx_start(&R);
	co_forward *f = fwd_start(1000, 64 << 10);
	tally t = wait_all(50, 30000);
	cr_assert(t.distinct == 50, "%zu of 50 arrived; first missing %zu", t.distinct, t.missing_first);
	co_forward_stats s;
	int64_t deadline = tk_now_ms() + 10000;
	do {
		co_forward_stats_get(f, &s);
		if (s.chunks_skipped == 1 && s.cursor_chunk == bad + 2)
			break;
		tk_sleep_ms(20);
	} while (tk_now_ms() < deadline);
	co_forward_free(f);
	cr_assert_eq(s.chunks_skipped, 1);
	cr_assert_eq(s.cursor_chunk, bad + 2, "cursor %llu, want %llu", (unsigned long long)s.cursor_chunk,
	             (unsigned long long)(bad + 2));
	t = rx_tally(&R, 50);
	cr_assert(t.total == 50 && t.dups == 0, "%zu received, %zu duplicates", t.total, t.dups);
	cr_assert(R.max_req_bytes <= (64 << 10) + 1024, "a request of %zu bytes", R.max_req_bytes);
	cr_assert(R.accepted >= 6, "%zu requests for 320 KiB of spans in 64 KiB batches", R.accepted);
}
