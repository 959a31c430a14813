/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Durability on loopback (issue 3): real collector and agent processes, OTLP
 * protobuf requests from several client threads, and crashes in between.
 * The guarantee under test: a request the agent answered 200 is in the
 * collector's store exactly once, whatever was killed meanwhile; a request
 * refused with 4xx is not stored at all; any other request (connection lost,
 * 503) is stored completely once or not at all, never partly or twice.
 * After each run the collector is stopped and its LMDB data dir is read
 * in-process with co_store, span by span: every span carries its request
 * number and index in its span id, name and attributes, so a span stored
 * twice, one missing or one that does not belong is named exactly.
 * Also: backpressure (429/503 with Retry-After) and a bounded agent memory
 * while the collector is down, a spool too small for one request, and the
 * SIGTERM drain leaving what it could not send in the spool.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "co_store.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_pb.h"
#include "tl_testkit.h"

#define MAX_THREADS 8
#define MAX_SPANS 1024 /* per request */
#define START_MS 30000 /* daemons start slowly under sanitizers on a loaded machine */
#define HTTP_TIMEOUT_MS 30000
#define SERVICE "durability-test"
#define MIB ((size_t)1 << 20)

/* ---- one stream of requests ---- */

/* What happened to one request. status: HTTP status, 0 = never sent, < 0 = the client's error. */
typedef struct req_rec {
	uint8_t trace[2][16];
	uint16_t nspans; /* span j belongs to trace j % ntraces */
	uint8_t ntraces;
	bool partial; /* 200 with a partial_success rejecting spans */
	int status;
	int retry_after; /* seconds, -1 when absent or not a number */
	uint32_t body_len;
	uint32_t at_ms; /* when the answer (or error) came, ms after the stream started */
} req_rec;

typedef struct stream {
	req_rec *reqs;
	size_t n;
	uint32_t salt;  /* first 4 bytes of every span id of this run */
	uint64_t t0_ns; /* span start times are based on it */
	int port;
	int64_t pace_us; /* request i is not sent before start + i * pace_us (0: as fast as possible) */
	int backoff_ms;  /* pause after a 429 or 503 */
	int nthreads;
	pthread_t th[MAX_THREADS];
	bool running;
	int64_t start_us;
	_Atomic size_t next;   /* next request to send */
	_Atomic size_t done;   /* requests answered or failed */
	_Atomic size_t ok;     /* answered 200 */
	_Atomic size_t errors; /* no answer (connect, send or read failed) */
	atomic_bool stop;
	pthread_mutex_t mu;       /* guards first_msg */
	char first_msg[600][160]; /* first error message per HTTP status, for assertions */
} stream;

static tk_stack st;
static stream *live; /* the running stream, for teardown */

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_until_us(int64_t t)
{
	int64_t d = t - mono_us();
	if (d <= 0)
		return;
	struct timespec ts = {.tv_sec = d / 1000000, .tv_nsec = (long)(d % 1000000) * 1000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void random_bytes(void *p, size_t n)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t got = getrandom(b, n, 0);
		cr_assert(got > 0 || errno == EINTR, "getrandom: %s", strerror(errno));
		if (got > 0) {
			b += got;
			n -= (size_t)got;
		}
	}
}

/* A stream of n requests of nspans spans over ntraces fresh random traces each. Caller frees with stream_free(). */
static stream *stream_new(size_t n, unsigned nspans, unsigned ntraces)
{
	cr_assert(nspans >= 1 && nspans <= MAX_SPANS && ntraces >= 1 && ntraces <= 2 && n <= 65536);
	stream *s = calloc(1, sizeof(*s));
	cr_assert_not_null(s);
	s->reqs = calloc(n, sizeof(*s->reqs));
	cr_assert_not_null(s->reqs);
	s->n = n;
	do
		random_bytes(&s->salt, sizeof(s->salt));
	while (s->salt == 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->t0_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	for (size_t i = 0; i < n; i++) {
		s->reqs[i].nspans = (uint16_t)nspans;
		s->reqs[i].ntraces = (uint8_t)ntraces;
		random_bytes(s->reqs[i].trace, sizeof(s->reqs[i].trace));
	}
	pthread_mutex_init(&s->mu, NULL);
	s->nthreads = 4;
	return s;
}

static void stream_free(stream *s)
{
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->mu);
	free(s->reqs);
	free(s);
}

/* Span ids: salt(4) || request(2) || index(2), big-endian; never zero. */
static void span_id(const stream *s, uint32_t r, uint32_t j, uint8_t out[8])
{
	out[0] = (uint8_t)(s->salt >> 24);
	out[1] = (uint8_t)(s->salt >> 16);
	out[2] = (uint8_t)(s->salt >> 8);
	out[3] = (uint8_t)s->salt;
	out[4] = (uint8_t)(r >> 8);
	out[5] = (uint8_t)r;
	out[6] = (uint8_t)(j >> 8);
	out[7] = (uint8_t)j;
}

static void span_name(uint32_t r, uint32_t j, char *out, size_t cap)
{
	snprintf(out, cap, "durable op r%u s%u", r, j);
}

static void span_tag(const stream *s, uint32_t r, uint32_t j, char *out, size_t cap)
{
	snprintf(out, cap, "%08x-%08x-%08x", s->salt, r * 2654435761u, (j + 1) * 40503u ^ r);
}

static uint64_t span_start(const stream *s, uint32_t r, uint32_t j)
{
	return s->t0_ns + (uint64_t)r * 1000000u + (uint64_t)j * 1000u;
}

static void *al(tl_arena *a, size_t n)
{
	void *p = tl_arena_alloc(a, n);
	if (p != NULL)
		memset(p, 0, n);
	return p;
}

static tl_pb_keyvalue *kv_int(tl_arena *a, const char *key, int64_t v)
{
	tl_pb_keyvalue *k = al(a, sizeof(*k));
	tl_pb_anyvalue *val = al(a, sizeof(*val));
	if (k == NULL || val == NULL)
		return NULL;
	tl_pb_keyvalue ki = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
	tl_pb_anyvalue vi = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	*k = ki;
	*val = vi;
	val->value_case = TL_PB_ANY_INT;
	val->int_value = v;
	k->key = (char *)key;
	k->value = val;
	return k;
}

static tl_pb_keyvalue *kv_str(tl_arena *a, const char *key, const char *v)
{
	tl_pb_keyvalue *k = al(a, sizeof(*k));
	tl_pb_anyvalue *val = al(a, sizeof(*val));
	if (k == NULL || val == NULL)
		return NULL;
	tl_pb_keyvalue ki = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
	tl_pb_anyvalue vi = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	*k = ki;
	*val = vi;
	val->value_case = TL_PB_ANY_STRING;
	val->string_value = tl_arena_strndup(a, v, strlen(v));
	k->key = (char *)key;
	k->value = val;
	return val->string_value != NULL ? k : NULL;
}

/*
 * Encodes request r of s into arena a: one resource (service.name), one
 * scope, nspans spans with a name, times, a parent within their trace and
 * three attributes. Returns the bytes (valid until a is reset) or NULL.
 * Runs on client threads: no Criterion asserts here.
 */
static uint8_t *build_req(tl_arena *a, const stream *s, uint32_t r, size_t *len)
{
	const req_rec *q = &s->reqs[r];
	tl_pb_span **spans = al(a, sizeof(*spans) * q->nspans);
	if (spans == NULL)
		return NULL;
	for (uint32_t j = 0; j < q->nspans; j++) {
		tl_pb_span *sp = al(a, sizeof(*sp));
		uint8_t *ids = al(a, 16);
		char name[64], tag[64];
		if (sp == NULL || ids == NULL)
			return NULL;
		tl_pb_span init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
		*sp = init;
		unsigned t = j % q->ntraces;
		sp->trace_id.data = (uint8_t *)q->trace[t];
		sp->trace_id.len = 16;
		span_id(s, r, j, ids);
		sp->span_id.data = ids;
		sp->span_id.len = 8;
		if (j >= q->ntraces) {
			span_id(s, r, t, ids + 8);
			sp->parent_span_id.data = ids + 8;
			sp->parent_span_id.len = 8;
		}
		span_name(r, j, name, sizeof(name));
		sp->name = tl_arena_strndup(a, name, strlen(name));
		sp->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL;
		sp->start_time_unix_nano = span_start(s, r, j);
		sp->end_time_unix_nano = sp->start_time_unix_nano + 500;
		span_tag(s, r, j, tag, sizeof(tag));
		sp->attributes = al(a, sizeof(*sp->attributes) * 3);
		if (sp->name == NULL || sp->attributes == NULL)
			return NULL;
		sp->attributes[0] = kv_int(a, "dur.req", r);
		sp->attributes[1] = kv_int(a, "dur.span", j);
		sp->attributes[2] = kv_str(a, "dur.tag", tag);
		if (sp->attributes[0] == NULL || sp->attributes[1] == NULL || sp->attributes[2] == NULL)
			return NULL;
		sp->n_attributes = 3;
		spans[j] = sp;
	}
	tl_pb_scope_spans *ss = al(a, sizeof(*ss));
	tl_pb_scope *sc = al(a, sizeof(*sc));
	tl_pb_resource_spans *rs = al(a, sizeof(*rs));
	tl_pb_resource *res = al(a, sizeof(*res));
	tl_pb_keyvalue **ra = al(a, sizeof(*ra));
	tl_pb_scope_spans **ssl = al(a, sizeof(*ssl));
	tl_pb_resource_spans **rsl = al(a, sizeof(*rsl));
	tl_pb_export_req *req = al(a, sizeof(*req));
	if (ss == NULL || sc == NULL || rs == NULL || res == NULL || ra == NULL || ssl == NULL || rsl == NULL ||
	    req == NULL)
		return NULL;
	tl_pb_scope_spans ssi = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
	tl_pb_scope sci = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	tl_pb_resource_spans rsi = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
	tl_pb_resource resi = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	tl_pb_export_req reqi = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	*ss = ssi;
	*sc = sci;
	*rs = rsi;
	*res = resi;
	*req = reqi;
	sc->name = "durability";
	ss->scope = sc;
	ss->spans = spans;
	ss->n_spans = q->nspans;
	ra[0] = kv_str(a, "service.name", SERVICE);
	if (ra[0] == NULL)
		return NULL;
	res->attributes = ra;
	res->n_attributes = 1;
	rs->resource = res;
	ssl[0] = ss;
	rs->scope_spans = ssl;
	rs->n_scope_spans = 1;
	rsl[0] = rs;
	req->resource_spans = rsl;
	req->n_resource_spans = 1;
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(req);
	uint8_t *buf = tl_arena_alloc(a, *len + 1);
	if (buf == NULL ||
	    opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, buf) != *len)
		return NULL;
	return buf;
}

/* The message of an error answer: a google.rpc.Status for protobuf requests (raw text otherwise). */
static void error_message(const tk_http_resp *r, char *out, size_t cap)
{
	tl_pb_rpc_status *stt = google__rpc__status__unpack(NULL, r->body_len, (const uint8_t *)r->body);
	if (stt != NULL && stt->message != NULL && stt->message[0] != '\0') {
		snprintf(out, cap, "%s", stt->message);
	} else {
		size_t n = r->body_len < cap - 1 ? r->body_len : cap - 1;
		for (size_t i = 0; i < n; i++)
			out[i] = r->body[i] >= 32 && r->body[i] < 127 ? r->body[i] : (char)'.';
		out[n] = '\0';
	}
	if (stt != NULL)
		google__rpc__status__free_unpacked(stt, NULL);
}

/*
 * Sends request i of s on *fd (connecting when *fd < 0) and records what
 * happened in s->reqs[i]. Never resends: a request that fails stays failed.
 * Safe on client threads (no Criterion asserts).
 */
static void send_one(stream *s, tl_arena *a, int *fd, size_t i)
{
	static const tk_header hdr[] = {{"Content-Type", "application/x-protobuf"}};
	req_rec *q = &s->reqs[i];
	tl_arena_reset(a);
	size_t len = 0;
	uint8_t *body = build_req(a, s, (uint32_t)i, &len);
	q->body_len = (uint32_t)len;
	q->retry_after = -1;
	if (body == NULL) {
		q->status = -ENOMEM;
		goto out;
	}
	if (*fd < 0)
		*fd = tk_connect(s->port);
	if (*fd < 0) {
		q->status = *fd;
		*fd = -1;
		atomic_fetch_add(&s->errors, 1);
		goto out;
	}
	bool early = false;
	int rc = tk_http_send(*fd, "POST", "/v1/traces", hdr, 1, body, len, &early);
	tk_http_resp r;
	int rrc = tk_http_read(*fd, HTTP_TIMEOUT_MS, &r);
	if (rrc != 0) {
		q->status = rc != 0 ? rc : rrc;
		close(*fd);
		*fd = -1;
		atomic_fetch_add(&s->errors, 1);
		goto out;
	}
	q->status = r.status;
	const char *ra = tk_http_header(&r, "retry-after");
	if (ra != NULL) {
		char *end;
		long v = strtol(ra, &end, 10);
		q->retry_after = end != ra && *end == '\0' && v >= 0 && v < 100000 ? (int)v : -1;
	}
	if (r.status == 200) {
		tl_pb_export_resp *resp =
		        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
		                NULL, r.body_len, (const uint8_t *)r.body);
		q->partial =
		        resp == NULL || (resp->partial_success != NULL && resp->partial_success->rejected_spans != 0);
		if (resp != NULL)
			opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp,
			                                                                                         NULL);
		atomic_fetch_add(&s->ok, 1);
	} else if (r.status > 0 && r.status < 600) {
		pthread_mutex_lock(&s->mu);
		if (s->first_msg[r.status][0] == '\0') {
			error_message(&r, s->first_msg[r.status], sizeof(s->first_msg[r.status]));
			if (s->first_msg[r.status][0] == '\0')
				snprintf(s->first_msg[r.status], sizeof(s->first_msg[r.status]), "(empty body)");
		}
		pthread_mutex_unlock(&s->mu);
	}
	if (!r.keep_alive || early) {
		close(*fd);
		*fd = -1;
	}
	tk_http_resp_fini(&r);
out:
	q->at_ms = (uint32_t)((mono_us() - s->start_us) / 1000);
	atomic_fetch_add(&s->done, 1);
}

static void *client(void *arg)
{
	stream *s = arg;
	tl_arena a;
	tl_arena_init(&a, (size_t)256 * 1024, 0);
	int fd = -1;
	while (!atomic_load(&s->stop)) {
		size_t i = atomic_fetch_add(&s->next, 1);
		if (i >= s->n)
			break;
		if (s->pace_us > 0)
			sleep_until_us(s->start_us + (int64_t)i * s->pace_us);
		send_one(s, &a, &fd, i);
		int st_i = s->reqs[i].status;
		if (st_i < 0)
			tk_sleep_ms(20); /* agent down: do not spin on connection refused */
		else if ((st_i == 429 || st_i == 503) && s->backoff_ms > 0)
			tk_sleep_ms(s->backoff_ms);
	}
	if (fd >= 0)
		close(fd);
	tl_arena_fini(&a);
	return NULL;
}

static void stream_start(stream *s, int port, int nthreads)
{
	cr_assert(nthreads >= 1 && nthreads <= MAX_THREADS);
	s->port = port;
	s->nthreads = nthreads;
	s->start_us = mono_us();
	for (int t = 0; t < nthreads; t++)
		cr_assert_eq(pthread_create(&s->th[t], NULL, client, s), 0, "pthread_create");
	s->running = true;
	live = s;
}

static void stream_join(stream *s)
{
	if (!s->running)
		return;
	for (int t = 0; t < s->nthreads; t++)
		pthread_join(s->th[t], NULL);
	s->running = false;
	if (live == s)
		live = NULL;
}

/* Sends requests [from, to) of s one after the other on one connection, from the test's thread. */
static void send_serial(stream *s, int port, size_t from, size_t to)
{
	tl_arena a;
	tl_arena_init(&a, (size_t)256 * 1024, 0);
	int fd = -1;
	s->port = port;
	if (s->start_us == 0)
		s->start_us = mono_us();
	for (size_t i = from; i < to && i < s->n; i++)
		send_one(s, &a, &fd, i);
	if (fd >= 0)
		close(fd);
	tl_arena_fini(&a);
}

/* ---- fixture and stack control (test thread only) ---- */

/* Fails the test, keeping the dirs and logs for a post-mortem. */
#define must(cond, ...) TK_MUST(&st, cond, __VA_ARGS__)

/* A failed check after which the test can still go on and show more: reported, the test fails at the end. */
#define should(cond, ...)                                                                                              \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			setenv("TL_TEST_KEEP", "1", 1);                                                                \
			cr_expect_fail(__VA_ARGS__);                                                                   \
		}                                                                                                      \
	} while (0)

static void teardown(void)
{
	if (live != NULL) {
		atomic_store(&live->stop, true);
		tk_kill(&st.agent); /* a blocked client read fails at once */
		stream_join(live);
	}
	tk_stack_stop(&st, 10000);
}

static void start_stack(const char *tag, char *const agent_args[])
{
	TK_STACK_START(&st, tag, agent_args);
}

static void restart_collector(char *const args[])
{
	char why[512] = "";
	int rc = tk_stack_start_collector(&st, args, START_MS, why, sizeof(why));
	must(rc == 0, "restarting the collector: %s (%s); logs in %s", why, tl_strerror(rc), st.dir);
}

static void restart_agent(char *const args[])
{
	char why[512] = "";
	int rc = tk_stack_start_agent(&st, args, START_MS, why, sizeof(why));
	must(rc == 0, "restarting the agent: %s (%s); logs in %s", why, tl_strerror(rc), st.dir);
}

/* A metric of the running agent; fails the test when /metrics does not answer or lacks the series. */
static double metric(const char *series)
{
	double v = -1;
	int rc = tk_metric(st.http_port, series, &v);
	must(rc == 0, "agent /metrics: series %s: %s", series, tl_strerror(rc));
	return v;
}

/* Waits until the agent's spool holds no unacknowledged batch. */
static void wait_drained(int timeout_ms)
{
	int64_t deadline = mono_us() + (int64_t)timeout_ms * 1000;
	double batches = -1;
	for (;;) {
		batches = metric("threadline_agent_spool_batches");
		if (batches == 0)
			break;
		must(tk_alive(&st.agent), "the agent died while draining its spool (wait status 0x%x)",
		     st.agent.status);
		must(mono_us() < deadline,
		     "the spool did not drain within %d ms: %.0f batches left (acked %.0f, sent %.0f, retries %.0f, "
		     "dead %.0f); logs in %s",
		     timeout_ms, batches, metric("threadline_agent_batches_acked_total"),
		     metric("threadline_agent_batches_sent_total"), metric("threadline_agent_batch_retries_total"),
		     metric("threadline_agent_batches_dead"), st.dir);
		tk_sleep_ms(200);
	}
	must(metric("threadline_agent_batches_dead") == 0, "the collector rejected %.0f batches",
	     metric("threadline_agent_batches_dead"));
}

/* SIGTERM both daemons: each must exit 0 by itself, and no sanitizer may have reported anything. */
#define stop_checked() TK_STACK_STOP_CHECKED(&st, 20000)

/* ---- reading the collector's store back ---- */

static const tl_pb_anyvalue *attr(tl_pb_keyvalue *const *kvs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (kvs[i] != NULL && kvs[i]->key != NULL && strcmp(kvs[i]->key, key) == 0)
			return kvs[i]->value;
	return NULL;
}

/*
 * Checks one stored span against what request r sent as its span j (j is
 * read from the span id). Returns j, or -1 with the reason in why.
 */
static int check_span(const stream *s, uint32_t r, unsigned t, const tl_pb_resource *res, const tl_pb_span *sp,
                      char *why, size_t cap)
{
	const req_rec *q = &s->reqs[r];
	char hex[17] = "";
	if (sp->span_id.len == 8)
		tl_hex_encode(sp->span_id.data, 8, hex);
	if (sp->trace_id.len != 16 || memcmp(sp->trace_id.data, q->trace[t], 16) != 0) {
		snprintf(why, cap, "span %s: stored under another trace id", hex);
		return -1;
	}
	if (sp->span_id.len != 8) {
		snprintf(why, cap, "a span with a %zu-byte span id", sp->span_id.len);
		return -1;
	}
	const uint8_t *id = sp->span_id.data;
	uint32_t salt = (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3];
	uint32_t rr = (uint32_t)id[4] << 8 | id[5], j = (uint32_t)id[6] << 8 | id[7];
	if (salt != s->salt || rr != r || j >= q->nspans || j % q->ntraces != t) {
		snprintf(why, cap, "span %s does not belong to request %u trace %u", hex, r, t);
		return -1;
	}
	char name[64], tag[64];
	span_name(r, j, name, sizeof(name));
	span_tag(s, r, j, tag, sizeof(tag));
	const tl_pb_anyvalue *vr = attr(sp->attributes, sp->n_attributes, "dur.req");
	const tl_pb_anyvalue *vj = attr(sp->attributes, sp->n_attributes, "dur.span");
	const tl_pb_anyvalue *vt = attr(sp->attributes, sp->n_attributes, "dur.tag");
	const tl_pb_anyvalue *svc = res != NULL ? attr(res->attributes, res->n_attributes, "service.name") : NULL;
	if (sp->name == NULL || strcmp(sp->name, name) != 0 || sp->start_time_unix_nano != span_start(s, r, j) ||
	    sp->end_time_unix_nano != span_start(s, r, j) + 500 || vr == NULL || vr->value_case != TL_PB_ANY_INT ||
	    vr->int_value != (int64_t)r || vj == NULL || vj->value_case != TL_PB_ANY_INT ||
	    vj->int_value != (int64_t)j || vt == NULL || vt->value_case != TL_PB_ANY_STRING ||
	    strcmp(vt->string_value, tag) != 0 || svc == NULL || svc->value_case != TL_PB_ANY_STRING ||
	    strcmp(svc->string_value, SERVICE) != 0) {
		snprintf(why, cap,
		         "span %s (request %u, span %u): stored name, times or attributes differ (name \"%s\")", hex, r,
		         j, sp->name != NULL ? sp->name : "(null)");
		return -1;
	}
	return (int)j;
}

/*
 * How often request r is in the store: 0 (none of its spans), 1 (each span
 * exactly once), or -1 (partly, twice, or wrong content; why says how).
 */
static int times_stored(co_store *cs, tl_arena *a, const stream *s, uint32_t r, char *why, size_t cap)
{
	const req_rec *q = &s->reqs[r];
	unsigned cnt[MAX_SPANS] = {0};
	for (unsigned t = 0; t < q->ntraces; t++) {
		tl_arena_reset(a);
		tl_pb_trace_result *res = NULL;
		int rc = co_store_get_trace(cs, q->trace[t], a, &res);
		if (rc == TL_ENOTFOUND)
			continue;
		if (rc != 0) {
			snprintf(why, cap, "co_store_get_trace: %s", tl_strerror(rc));
			return -1;
		}
		for (size_t i = 0; i < res->n_resource_spans; i++) {
			const tl_pb_resource_spans *rs = res->resource_spans[i];
			for (size_t k = 0; k < rs->n_scope_spans; k++) {
				const tl_pb_scope_spans *ss = rs->scope_spans[k];
				for (size_t m = 0; m < ss->n_spans; m++) {
					int j = check_span(s, r, t, rs->resource, ss->spans[m], why, cap);
					if (j < 0)
						return -1;
					cnt[j]++;
				}
			}
		}
	}
	unsigned lo = ~0u, hi = 0, missing = 0, twice = 0;
	for (unsigned j = 0; j < q->nspans; j++) {
		lo = cnt[j] < lo ? cnt[j] : lo;
		hi = cnt[j] > hi ? cnt[j] : hi;
		missing += cnt[j] == 0;
		twice += cnt[j] > 1;
	}
	if (hi == 0)
		return 0;
	if (lo == 1 && hi == 1)
		return 1;
	snprintf(why, cap, "%u of %u spans missing, %u stored more than once (up to %u times)", missing, q->nspans,
	         twice, hi);
	return -1;
}

typedef struct tally {
	size_t acked, acked_once;               /* answered 200 (without rejected spans), and of those stored once */
	size_t refused, refused_absent;         /* answered 4xx, and of those not stored */
	size_t other, other_once, other_absent; /* 5xx, errors, never sent */
	size_t violations;
} tally;

/*
 * Stops nothing: the collector must already be stopped. Opens its data dir
 * and checks every request of s. Fails the test on any violation (the first
 * ten are listed on stderr).
 */
static void verify_store(const stream *s, const char *label)
{
	must(!tk_alive(&st.collector), "verify_store: the collector is still running");
	char dir[TK_PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/data", st.dir);
	co_store_opts o = {.dir = dir};
	co_store *cs = NULL;
	tl_errmsg em = {{0}};
	int rc = co_store_open(&o, &cs, &em);
	must(rc == 0, "co_store_open(%s): %s: %s", dir, tl_strerror(rc), em.msg);
	tl_arena a;
	tl_arena_init(&a, 1 << 20, 0);
	tally t = {0};
	char first[1024] = "";
	for (size_t i = 0; i < s->n; i++) {
		const req_rec *q = &s->reqs[i];
		char why[256] = "";
		int times = times_stored(cs, &a, s, (uint32_t)i, why, sizeof(why));
		const char *bad = NULL;
		if (q->status == 200 && q->partial) {
			t.other++;
			bad = "answered 200 with rejected spans, though every span is valid";
		} else if (q->status == 200) {
			t.acked++;
			t.acked_once += times == 1;
			if (times != 1)
				bad = "answered 200 but not stored exactly once";
		} else if (q->status >= 400 && q->status < 500) {
			t.refused++;
			t.refused_absent += times == 0;
			if (times != 0)
				bad = "refused with 4xx but stored";
		} else {
			t.other++;
			t.other_once += times == 1;
			t.other_absent += times == 0;
			if (times < 0)
				bad = "not answered 200, and stored partly or twice";
		}
		if (bad == NULL)
			continue;
		if (t.violations < 10)
			fprintf(stderr, "%s: request %zu (status %d, %u spans): %s: stored %d (%s)\n", label, i,
			        q->status, q->nspans, bad, times, why);
		if (t.violations == 0)
			snprintf(first, sizeof(first), "request %zu (status %d): %s: %s", i, q->status, bad, why);
		t.violations++;
	}
	tl_arena_fini(&a);
	co_store_close(cs);
	fprintf(stderr,
	        "%s: %zu requests: %zu answered 200 (%zu stored once), %zu refused 4xx (%zu absent), %zu other "
	        "(%zu stored once, %zu absent); %zu violations\n",
	        label, s->n, t.acked, t.acked_once, t.refused, t.refused_absent, t.other, t.other_once, t.other_absent,
	        t.violations);
	must(t.violations == 0, "%s: %zu requests break the guarantee; first: %s (data dir kept in %s)", label,
	     t.violations, first, st.dir);
}

static size_t count_status(const stream *s, int status)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->reqs[i].status == status;
	return n;
}

/* Waits until at least target requests of s are done (answered or failed). */
static void wait_done(stream *s, size_t target, int timeout_ms)
{
	int64_t deadline = mono_us() + (int64_t)timeout_ms * 1000;
	while (atomic_load(&s->done) < target) {
		must(mono_us() < deadline, "stream stuck: %zu of %zu requests done after %d ms", atomic_load(&s->done),
		     target, timeout_ms);
		tk_sleep_ms(5);
	}
}

/* ---- the tests ---- */

TestSuite(durability, .fini = teardown);

/*
 * The checker itself, with no daemons: batches committed straight into a
 * fresh store hold request 0 once, request 1 twice (under two sequence
 * numbers), half of request 2, and a copy of request 3 whose span names were
 * changed; request 4 is not stored. A checker that cannot tell these apart
 * would let every test below pass.
 */
Test(durability, checker_tells_once_twice_partial_wrong_absent)
{
	char dir[TK_PATH_MAX];
	cr_assert_eq(tk_tmpdir("dur-check", dir, sizeof(dir)), 0);
	co_store_opts o = {.dir = dir};
	co_store *cs = NULL;
	tl_errmsg em = {{0}};
	cr_assert_eq(co_store_open(&o, &cs, &em), 0, "co_store_open: %s", em.msg);
	stream *s = stream_new(5, 200, 2);
	tl_arena a;
	tl_arena_init(&a, 1 << 20, 0);
	tl_pb_export_req *req[4];
	for (uint32_t r = 0; r < 4; r++) {
		tl_arena_reset(&a);
		size_t len = 0;
		uint8_t *body = build_req(&a, s, r, &len);
		cr_assert_not_null(body);
		req[r] = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, len,
		                                                                                          body);
		cr_assert_not_null(req[r]);
	}
	tl_pb_scope_spans *half = req[2]->resource_spans[0]->scope_spans[0];
	size_t all = half->n_spans;
	half->n_spans = all / 2;
	tl_pb_scope_spans *renamed = req[3]->resource_spans[0]->scope_spans[0];
	char *name0 = renamed->spans[7]->name;
	renamed->spans[7]->name = "not what was sent";

	tl_pb_export_req *t1[] = {req[0], req[1]}, *t2[] = {req[1]}, *t3[] = {req[2], req[3]};
	co_batch b1 = {.seq = 1, .traces = t1, .n_traces = 2};
	co_batch b2 = {.seq = 2, .traces = t2, .n_traces = 1};
	co_batch b3 = {.seq = 3, .traces = t3, .n_traces = 2};
	memset(b1.agent_id, 0xab, CO_AGENT_ID_LEN);
	memset(b2.agent_id, 0xab, CO_AGENT_ID_LEN);
	memset(b3.agent_id, 0xab, CO_AGENT_ID_LEN);
	co_batch *bs[] = {&b1, &b2, &b3};
	cr_assert_eq(co_store_commit(cs, bs, 3, s->t0_ns), 0);
	cr_assert_eq(b2.status, CO_BATCH_OK, "test bug: the store took batch 2 for a duplicate");

	char why[256] = "";
	cr_expect_eq(times_stored(cs, &a, s, 0, why, sizeof(why)), 1, "request 0 (stored once): %s", why);
	why[0] = '\0';
	cr_expect_eq(times_stored(cs, &a, s, 1, why, sizeof(why)), -1, "request 1 (stored twice) not caught");
	cr_expect(strstr(why, "more than once") != NULL, "request 1: %s", why);
	why[0] = '\0';
	cr_expect_eq(times_stored(cs, &a, s, 2, why, sizeof(why)), -1, "request 2 (half stored) not caught");
	cr_expect(strstr(why, "missing") != NULL, "request 2: %s", why);
	why[0] = '\0';
	cr_expect_eq(times_stored(cs, &a, s, 3, why, sizeof(why)), -1, "request 3 (a span renamed) not caught");
	cr_expect(strstr(why, "differ") != NULL, "request 3: %s", why);
	why[0] = '\0';
	cr_expect_eq(times_stored(cs, &a, s, 4, why, sizeof(why)), 0, "request 4 (never stored): %s", why);

	half->n_spans = all;
	renamed->spans[7]->name = name0;
	for (int r = 0; r < 4; r++)
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req[r], NULL);
	tl_arena_fini(&a);
	co_store_close(cs);
	stream_free(s);
	tk_rmrf(dir);
}

/*
 * 200,000 spans (1,000 requests x 200 spans over 2 traces) from 4 keep-alive
 * clients, paced over about 10 s; the collector is killed with SIGKILL five
 * times at spread-out moments and restarted on the same data dir and port,
 * sometimes at once, sometimes after a second. The agent never goes away,
 * so every request is answered, and with a 1 GiB spool it answers 200.
 * A kill rarely lands between the collector's commit and its ack (that
 * window is microseconds), so resends of stored batches, and the dedupe
 * that must drop them, are forced by agent_kill9's third kill instead.
 */
Test(durability, collector_kill9_five_times, .timeout = 400)
{
	char *agent_args[] = {"--fsync", "always", NULL};
	start_stack("dur-ck", agent_args);
	stream *s = stream_new(1000, 200, 2);
	s->pace_us = 10000;
	stream_start(s, st.http_port, 4);
	static const int delay_ms[5] = {0, 1000, 0, 1000, 250};
	for (int k = 0; k < 5; k++) {
		wait_done(s, s->n * (size_t)(k + 1) / 6, 120000);
		size_t at = atomic_load(&s->done);
		must(at < s->n, "kill %d: the stream ended before it (%zu done)", k + 1, at);
		must(tk_alive(&st.collector), "the collector died by itself before kill %d", k + 1);
		tk_kill(&st.collector);
		fprintf(stderr, "collector_kill9: kill %d at %zu requests done, restart after %d ms\n", k + 1, at,
		        delay_ms[k]);
		tk_sleep_ms(delay_ms[k]);
		restart_collector(NULL);
	}
	stream_join(s);
	size_t ok = count_status(s, 200);
	fprintf(stderr, "collector_kill9: %zu of %zu answered 200, %zu errors; agent retries %.0f\n", ok, s->n,
	        atomic_load(&s->errors), metric("threadline_agent_batch_retries_total"));
	must(atomic_load(&s->errors) == 0, "%zu requests got no answer though the agent was never stopped",
	     atomic_load(&s->errors));
	for (size_t i = 0; i < s->n; i++)
		must(s->reqs[i].status == 200 ||
		             ((s->reqs[i].status == 429 || s->reqs[i].status == 503) && s->reqs[i].retry_after > 0),
		     "request %zu: status %d (Retry-After %d): expected 200, or 429/503 with Retry-After", i,
		     s->reqs[i].status, s->reqs[i].retry_after);
	must(ok >= s->n * 95 / 100, "only %zu of %zu requests answered 200 with a 1 GiB spool", ok, s->n);
	wait_drained(120000);
	should(metric("threadline_agent_spans_delivered_total") >= (double)ok * 200,
	       "spans_delivered_total %.0f < %zu spans answered 200, with the spool drained",
	       metric("threadline_agent_spans_delivered_total"), ok * 200);
	must(metric("threadline_agent_spans_accepted_total") >= (double)ok * 200,
	     "spans_accepted_total %.0f < %zu spans answered 200", metric("threadline_agent_spans_accepted_total"),
	     ok * 200);
	stop_checked();
	verify_store(s, "collector_kill9");
	stream_free(s);
}

/*
 * The same stream (paced over about 12 s); now the agent is killed with
 * SIGKILL three times, in three situations (below), and started again on
 * the same spool and port. Both daemons use periodic fsync: a process crash
 * must lose nothing in that mode either. Clients record connection errors
 * and go on with new requests.
 */
Test(durability, agent_kill9, .timeout = 400)
{
	char *agent_args[] = {"--fsync", "100ms", NULL};
	char *col_args[] = {"--fsync", "100ms", NULL};
	start_stack("dur-ak", agent_args);
	int rc = tk_stop(&st.collector, 20000);
	must(rc == 0 && tk_exit_code(&st.collector) == 0, "collector did not stop cleanly");
	restart_collector(col_args);

	stream *s = stream_new(1000, 200, 2);
	s->pace_us = 12000; /* 12 s */
	stream_start(s, st.http_port, 4);
	/*
	 * Three kinds of kill, the slowest first while most of the stream is ahead:
	 * ACK_LOST: the collector is down for a second, so a backlog builds; it comes back, and while the
	 *   agent sends the backlog with its window full it is frozen (SIGSTOP): the collector commits what
	 *   was in flight and acks into the void; then SIGKILL. The restarted agent must resend those
	 *   batches and the collector must drop them as duplicates.
	 * PLAIN: SIGKILL in the middle of the stream.
	 * BACKLOG: the collector is down first, so the agent dies with batches in its spool, which the
	 *   restarted agent must still hold.
	 */
	enum { ACK_LOST, PLAIN, BACKLOG };
	static const struct {
		int kind;
		size_t at_pct;
		int delay_ms;
	} kills[3] = {{ACK_LOST, 12, 300}, {PLAIN, 45, 0}, {BACKLOG, 65, 1000}};
	static const char *kind_names[] = {"acks lost", "plain", "with a backlog"};
	for (int k = 0; k < 3; k++) {
		wait_done(s, s->n * kills[k].at_pct / 100, 120000);
		int kind = kills[k].kind;
		double backlog = 0;
		if (kind != PLAIN) {
			tk_kill(&st.collector);
			tk_sleep_ms(kind == ACK_LOST ? 1000 : 700);
			backlog = metric("threadline_agent_spool_batches");
			must(backlog >= 4, "kill %d: only %.0f batches spooled after the collector went down", k + 1,
			     backlog);
		}
		if (kind == ACK_LOST) {
			restart_collector(col_args);
			int64_t deadline = mono_us() + 30000000;
			double left = backlog;
			while ((left = metric("threadline_agent_spool_batches")) >= backlog - 1 && mono_us() < deadline)
				tk_sleep_ms(1);
			must(left > 0 && left < backlog - 1,
			     "kill %d: could not catch the agent draining (%.0f of %.0f left)", k + 1, left, backlog);
			kill(st.agent.pid, SIGSTOP);
			tk_sleep_ms(500);
		}
		size_t at = atomic_load(&s->done);
		must(at < s->n, "kill %d: the stream ended before it (%zu done)", k + 1, at);
		must(tk_alive(&st.agent), "the agent died by itself before kill %d", k + 1);
		double spooled = kind == ACK_LOST ? -1 : metric("threadline_agent_spool_batches");
		tk_kill(&st.agent);
		fprintf(stderr,
		        "agent_kill9: kill %d (%s) at %zu requests done, backlog %.0f, %.0f spooled, restart after %d "
		        "ms\n",
		        k + 1, kind_names[kind], at, backlog, spooled, kills[k].delay_ms);
		tk_sleep_ms(kills[k].delay_ms);
		restart_agent(agent_args);
		if (kind == BACKLOG) {
			must(metric("threadline_agent_spool_batches") >= spooled,
			     "the restarted agent lost spooled batches: %.0f before the kill, %.0f after", spooled,
			     metric("threadline_agent_spool_batches"));
			restart_collector(col_args);
		}
	}
	stream_join(s);
	size_t ok = count_status(s, 200);
	fprintf(stderr, "agent_kill9: %zu of %zu answered 200, %zu without an answer\n", ok, s->n,
	        atomic_load(&s->errors));
	must(ok >= s->n / 2, "only %zu of %zu requests answered 200", ok, s->n);
	must(atomic_load(&s->errors) > 0, "no client noticed the agent being killed: the kills missed the stream");
	wait_drained(120000);
	stop_checked();
	verify_store(s, "agent_kill9");
	stream_free(s);
}

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_BUILD 1
#endif
#endif

/*
 * The collector is down for 30 s while 4 clients keep sending to an agent
 * with an 8 MiB spool: 200 while the spool has room, then 429/503 with
 * Retry-After, and nothing accepted once it is full. The agent's anonymous
 * memory stays within a bound derived from its flags and stops growing.
 * Then the collector returns and everything that got 200 arrives once.
 */
Test(durability, collector_down_30s, .timeout = 400)
{
	const size_t spool_max = 8 * MIB, pending_max = 4 * MIB, window = 4;
	size_t slack = 16 * MIB;
#ifdef ASAN_BUILD
	/* ASan keeps freed memory in a quarantine (256 MiB by default): give the agent a small one, and count it. */
	char opts[1024];
	const char *cur = getenv("ASAN_OPTIONS");
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=16:thread_local_quarantine_size_kb=256",
	         cur != NULL ? cur : "", cur != NULL && cur[0] != '\0' ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	slack += 16 * MIB + 32 * MIB; /* quarantine + the sanitizer allocator's own caches */
#endif
	char *agent_args[] = {"--spool-max-bytes", "8388608", "--max-pending-bytes", "4194304", "--window", "4", NULL};
	start_stack("dur-down", agent_args);
	tk_kill(&st.collector);
	tk_sleep_ms(500);
	size_t base = 0;
	must(tk_rss_anon(st.agent.pid, &base) == 0, "cannot read the agent's RssAnon");
	size_t bound = base + pending_max + window * MIB + slack;

	stream *s = stream_new(60000, 200, 2);
	s->backoff_ms = 20;
	stream_start(s, st.http_port, 4);
	size_t samples[61] = {0}, peak = 0;
	int ns = 0;
	for (; ns < 61; ns++) {
		sleep_until_us(s->start_us + (int64_t)ns * 500000);
		int rc = tk_rss_anon(st.agent.pid, &samples[ns]);
		must(rc == 0, "reading the agent's RssAnon: %s (agent alive: %d)", tl_strerror(rc),
		     tk_alive(&st.agent));
		peak = samples[ns] > peak ? samples[ns] : peak;
		must(samples[ns] <= bound,
		     "agent RssAnon %zu KiB at %.1f s exceeds its bound %zu KiB (baseline %zu KiB + max-pending %zu "
		     "KiB + window %zu x 1 MiB + slack %zu KiB)",
		     samples[ns] / 1024, ns * 0.5, bound / 1024, base / 1024, pending_max / 1024, window, slack / 1024);
	}
	double spool_bytes = metric("threadline_agent_spool_bytes");
	double spool_gauge = metric("threadline_agent_spool_max_bytes");
	double full = metric("threadline_agent_requests_rejected_total{reason=\"spool_full\"}");
	double mem = metric("threadline_agent_requests_rejected_total{reason=\"memory_full\"}");
	atomic_store(&s->stop, true);
	stream_join(s);
	size_t sent = atomic_load(&s->done);
	size_t ok = count_status(s, 200), r429 = count_status(s, 429), r503 = count_status(s, 503);
	fprintf(stderr,
	        "collector_down: %zu requests: %zu x 200, %zu x 429, %zu x 503; RssAnon baseline %zu KiB, at 10 s %zu "
	        "KiB, last %zu KiB, peak %zu KiB, bound %zu KiB; spool %.0f / %.0f bytes; rejected spool_full %.0f, "
	        "memory_full %.0f; first 429: \"%s\"; first 503: \"%s\"\n",
	        sent, ok, r429, r503, base / 1024, samples[20] / 1024, samples[60] / 1024, peak / 1024, bound / 1024,
	        spool_bytes, spool_gauge, full, mem, s->first_msg[429], s->first_msg[503]);

	must(samples[60] <= samples[20] + 2 * MIB, "agent RssAnon keeps growing: %zu KiB at 10 s, %zu KiB at 30 s",
	     samples[20] / 1024, samples[60] / 1024);
	for (size_t i = 0; i < 4; i++)
		must(s->reqs[i].status == 200, "request %zu (among the first) answered %d, expected 200", i,
		     s->reqs[i].status);
	must(r429 + r503 > 0, "the spool never filled: %zu requests all answered 200", sent);
	uint32_t last_ok_ms = 0;
	for (size_t i = 0; i < sent; i++) {
		const req_rec *q = &s->reqs[i];
		must(q->status == 200 || q->status == 429 || q->status == 503,
		     "request %zu: status %d; expected only 200, 429 and 503", i, q->status);
		if (q->status != 200)
			must(q->retry_after > 0, "request %zu: %d without a valid Retry-After", i, q->status);
		else if (q->at_ms > last_ok_ms)
			last_ok_ms = q->at_ms;
	}
	must(last_ok_ms < 15000,
	     "a request was answered 200 at %.1f s although the collector was down and the spool full",
	     last_ok_ms / 1000.0);
	const char *msg = r429 > 0 ? s->first_msg[429] : s->first_msg[503];
	should(strcasestr(msg, "spool") != NULL || strcasestr(msg, "memory") != NULL,
	       "the 429/503 message does not name the reason: \"%s\"", msg);
	should(spool_gauge == (double)spool_max, "threadline_agent_spool_max_bytes %.0f, expected %zu", spool_gauge,
	       spool_max);
	should(spool_bytes > 0 && spool_bytes <= (double)spool_max, "spool_bytes %.0f outside (0, %zu]", spool_bytes,
	       spool_max);
	should(full + mem > 0, "no rejection counted with reason spool_full or memory_full");

	restart_collector(NULL);
	wait_drained(120000);
	stop_checked();
	verify_store(s, "collector_down");
	stream_free(s);
}

/*
 * A 64 KiB spool and no collector: a request larger than the whole spool
 * gets 413 with a message, small ones 200 until it is full, then 429 with
 * Retry-After, and the agent stays healthy. A SIGTERM'd agent restarted on
 * that full spool reads it back as it was; when the collector comes up
 * everything accepted arrives once and the spool takes requests again.
 */
Test(durability, tiny_spool, .timeout = 300)
{
	char *agent_args[] = {"--spool-max-bytes", "65536", "--drain-timeout", "2s", NULL};
	start_stack("dur-tiny", agent_args);
	tk_kill(&st.collector);
	stream *s = stream_new(203, 10, 2);
	s->reqs[0].nspans = 1000; /* about 90 KiB encoded: more than the whole spool */
	s->reqs[0].ntraces = 1;

	send_serial(s, st.http_port, 0, 1);
	must(s->reqs[0].status == 413, "a %u-byte request with a 65536-byte spool: status %d, expected 413",
	     s->reqs[0].body_len, s->reqs[0].status);
	must(s->reqs[0].body_len > 65536, "test bug: the big request is only %u bytes", s->reqs[0].body_len);
	should(s->first_msg[413][0] != '\0' && strcmp(s->first_msg[413], "(empty body)") != 0, "413 without a message");
	should(metric("threadline_agent_requests_rejected_total{reason=\"too_large_for_spool\"}") >= 1,
	       "413 not counted as too_large_for_spool");

	size_t first429 = 0;
	for (size_t i = 1; i < 200 && first429 == 0; i++) {
		send_serial(s, st.http_port, i, i + 1);
		int stt = s->reqs[i].status;
		must(stt == 200 || stt == 429, "small request %zu: status %d, expected 200 or 429", i, stt);
		if (stt == 429)
			first429 = i;
	}
	must(first429 > 1, "first small request: status %d, expected 200", s->reqs[1].status);
	must(first429 != 0, "199 requests of %u bytes all answered 200 with a 64 KiB spool", s->reqs[1].body_len);
	must(s->reqs[first429].retry_after > 0, "429 without a valid Retry-After");
	fprintf(stderr, "tiny_spool: %zu small requests of %u bytes accepted, then 429 \"%s\"; 413 \"%s\"\n",
	        first429 - 1, s->reqs[1].body_len, s->first_msg[429], s->first_msg[413]);
	send_serial(s, st.http_port, first429 + 1, first429 + 2);
	must(s->reqs[first429 + 1].status == 429, "spool full, collector down: next request got %d, expected 429",
	     s->reqs[first429 + 1].status);

	tk_http_resp r;
	int rc = tk_http(st.http_port, "GET", "/healthz", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 200, "GET /healthz with a full spool: %s, status %d", tl_strerror(rc), r.status);
	tk_http_resp_fini(&r);
	double bytes = metric("threadline_agent_spool_bytes"), batches = metric("threadline_agent_spool_batches");
	should(bytes > 0 && bytes <= 65536, "spool_bytes %.0f outside (0, 65536]", bytes);
	must(batches > 0, "spool_batches %.0f with 200'd requests and no collector", batches);

	int64_t t = mono_us();
	rc = tk_stop(&st.agent, 10000);
	must(rc == 0 && tk_exit_code(&st.agent) == 0, "agent on SIGTERM with a full spool: %s, wait status 0x%x",
	     rc != 0 ? "had to be killed" : "non-zero exit", st.agent.status);
	fprintf(stderr, "tiny_spool: SIGTERM exit after %lld ms\n", (long long)((mono_us() - t) / 1000));
	restart_agent(agent_args);
	must(metric("threadline_agent_spool_batches") == batches && metric("threadline_agent_spool_bytes") == bytes,
	     "spool after restart: %.0f batches / %.0f bytes, before: %.0f / %.0f",
	     metric("threadline_agent_spool_batches"), metric("threadline_agent_spool_bytes"), batches, bytes);
	send_serial(s, st.http_port, first429 + 2, first429 + 3);
	must(s->reqs[first429 + 2].status == 429, "full spool after restart: status %d, expected 429",
	     s->reqs[first429 + 2].status);

	restart_collector(NULL);
	wait_drained(60000);
	send_serial(s, st.http_port, first429 + 3, first429 + 4);
	must(s->reqs[first429 + 3].status == 200, "drained spool: status %d, expected 200",
	     s->reqs[first429 + 3].status);
	wait_drained(60000);
	stop_checked();
	s->n = first429 + 4;
	verify_store(s, "tiny_spool");
	stream_free(s);
}

/*
 * SIGTERM with the collector down: the agent stops within its drain
 * timeout and exits 0; what it could not send stays in the spool and
 * arrives once both are started again.
 */
Test(durability, sigterm_drain, .timeout = 300)
{
	char *agent_args[] = {"--drain-timeout", "2s", NULL};
	start_stack("dur-term", agent_args);
	tk_kill(&st.collector);
	stream *s = stream_new(20, 200, 2);
	send_serial(s, st.http_port, 0, s->n);
	must(count_status(s, 200) == s->n, "collector down, empty spool: only %zu of %zu requests answered 200",
	     count_status(s, 200), s->n);
	must(metric("threadline_agent_spool_batches") > 0, "nothing in the spool after 200s with no collector");

	int64_t t = mono_us();
	int rc = tk_stop(&st.agent, 20000);
	int64_t ms = (mono_us() - t) / 1000;
	must(rc == 0 && tk_exit_code(&st.agent) == 0, "agent on SIGTERM: %s, wait status 0x%x",
	     rc != 0 ? "had to be killed" : "non-zero exit", st.agent.status);
	fprintf(stderr, "sigterm_drain: exit after %lld ms (drain timeout 2 s)\n", (long long)ms);
	must(ms <= 2000 + 4000, "the agent took %lld ms to exit with --drain-timeout 2s", (long long)ms);

	restart_collector(NULL);
	restart_agent(agent_args);
	wait_drained(60000);
	stop_checked();
	verify_store(s, "sigterm_drain");
	stream_free(s);
}

/*
 * The spool reserves its disk space at start (the map, 1.5 x
 * --spool-max-bytes + 4 MiB), so a disk that fills up later cannot stop it,
 * and above all cannot stop it from removing acknowledged batches (which
 * needs a few new pages: without the reservation a full disk would keep a
 * full spool full). A file-size limit (RLIMIT_FSIZE, like a small disk)
 * below the reservation: the agent refuses to start and says why. Above it:
 * the spool fills to its bound (429, never a failed write), drains, and
 * takes requests again, without ever growing its file.
 */
Test(durability, spool_reserves_its_disk_space, .timeout = 300)
{
	start_stack("dur-disk", NULL);
	tk_kill(&st.collector);
	int rc = tk_stop(&st.agent, 10000);
	must(rc == 0 && tk_exit_code(&st.agent) == 0, "agent did not stop cleanly before the restart");
	char spool2[TK_PATH_MAX + 32];
	snprintf(spool2, sizeof(spool2), "%s/spool-small-disk", st.dir);
	struct rlimit old, lim;
	must(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit: %s", strerror(errno));
	lim = old;
	lim.rlim_cur = 16 * MIB;
	must(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
	/* 128 MiB spool (the testkit's default) on a "16 MiB disk": refused at start. */
	char *big[] = {"--spool", spool2, NULL};
	char why[512] = "";
	rc = tk_stack_start_agent(&st, big, START_MS, why, sizeof(why));
	bool refused = rc != 0 && !tk_alive(&st.agent) && tk_exit_code(&st.agent) == 1 &&
	               tk_log_contains(&st.agent, "cannot reserve");
	/* 4 MiB spool (10 MiB reserved): starts. */
	char *small[] = {"--spool", spool2, "--spool-max-bytes", "4MiB", NULL};
	if (refused)
		rc = tk_stack_start_agent(&st, small, START_MS, why, sizeof(why));
	must(setrlimit(RLIMIT_FSIZE, &old) == 0, "restoring the file-size limit: %s", strerror(errno));
	must(refused,
	     "a 128 MiB spool under a 16 MiB file-size limit: start %s, exit %d, no 'cannot reserve' in its log",
	     rc == 0 ? "succeeded" : "failed", tk_exit_code(&st.agent));
	must(rc == 0, "a 4 MiB spool under a 16 MiB file-size limit did not start: %s (%s)", why, tl_strerror(rc));
	must(tk_log_contains(&st.agent, "disk_reserved=true"), "the agent does not report its reserved disk");

	stream *s = stream_new(120, 1000, 1); /* about 90 KiB per request */
	size_t first429 = 0, i = 0;
	for (; i < 100 && first429 == 0; i++) {
		send_serial(s, st.http_port, i, i + 1);
		must(s->reqs[i].status == 200 || s->reqs[i].status == 429,
		     "request %zu filling a reserved spool: status %d, expected 200 or 429 (%s)", i, s->reqs[i].status,
		     s->first_msg[s->reqs[i].status > 0 && s->reqs[i].status < 600 ? s->reqs[i].status : 0]);
		if (s->reqs[i].status == 429)
			first429 = i;
	}
	must(first429 > 0, "%s",
	     s->reqs[0].status == 429 ? "the first request was refused"
	                              : "100 requests of 90 KiB fit in a 4 MiB spool");
	must(metric("threadline_agent_spool_commit_errors_total") == 0, "a spool write failed under the limit");
	fprintf(stderr, "spool_reserves_its_disk_space: %zu requests answered 200, then 429 \"%s\"\n", first429,
	        s->first_msg[429]);
	restart_collector(NULL);
	wait_drained(60000);
	size_t again = i;
	send_serial(s, st.http_port, again, again + 20);
	for (size_t k = again; k < again + 20; k++)
		must(s->reqs[k].status == 200, "after the spool drained, request %zu: status %d, expected 200", k,
		     s->reqs[k].status);
	wait_drained(60000);
	must(metric("threadline_agent_spool_commit_errors_total") == 0, "a spool write failed under the limit");
	stop_checked();
	s->n = again + 20;
	verify_store(s, "spool_reserves_its_disk_space");
	stream_free(s);
}
