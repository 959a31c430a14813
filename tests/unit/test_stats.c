/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SLIs and latency budgets on a real LMDB store in a temporary directory,
 * fed through co_store_commit as the collector feeds it: the histogram
 * buckets and their error bound, percentiles against exact nearest-rank
 * percentiles of known durations, error rates, rates over the window,
 * minute boundaries and window cuts, several batches adding to one cell,
 * a corrupt cell, the budget attribution of a pipeline where a slow
 * feature-store call eats the budget in most slow traces and a slow model
 * call in a few, the query path through co_query_answer, bad queries, and
 * the CLI's flags and rendering.
 */
#include "co_cli_stats.h"
#include "co_query.h"
#include "co_stats.h"
#include "co_store.h"
#include "store_fixture.h"
#include "tl_arena.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <criterion/criterion.h>

#include <jansson.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
#define MIN (60 * SEC)
#define M0 UINT64_C(29589000) /* a minute in 2026 (unix minutes) */
#define T0 (M0 * MIN)
#define LATER (T0 + 1000 * MIN) /* "now" well after every window below */
#define REL_BOUND 0.0443        /* 2^(1/16) - 1, rounded up */

static void setup(void)
{
	store_fixture_setup("stats", 256 << 10);
}

static void teardown(void)
{
	store_fixture_teardown();
}

TestSuite(stats, .init = setup, .fini = teardown, .timeout = 120);

/* ---- building batches ---- */

enum { MAXSPANS = 20000, MAXSVC = 16 };

/* The spans of the batch being built, by service (NULL: a resource without service.name). */
static struct {
	const char *svc[MAXSVC];
	tl_pb_span *spans[MAXSVC][MAXSPANS / 4];
	size_t n[MAXSVC];
	size_t nsvc;
} pend;

static tl_pb_span *span(uint32_t trace, uint32_t id, uint32_t parent, const char *name, uint64_t start, uint64_t end,
                        bool error)
{
	tl_pb_span *sp = az(sizeof(*sp));
	opentelemetry__proto__trace__v1__span__init(sp);
	uint8_t *tid = az(16), *sid = az(8);
	memcpy(tid, "stats-trace\0", 12);
	tid[12] = (uint8_t)(trace >> 24);
	tid[13] = (uint8_t)(trace >> 16);
	tid[14] = (uint8_t)(trace >> 8);
	tid[15] = (uint8_t)trace;
	sid[0] = 1;
	sid[4] = (uint8_t)(id >> 24);
	sid[5] = (uint8_t)(id >> 16);
	sid[6] = (uint8_t)(id >> 8);
	sid[7] = (uint8_t)id;
	sp->trace_id = (ProtobufCBinaryData){16, tid};
	sp->span_id = (ProtobufCBinaryData){8, sid};
	if (parent != 0) {
		uint8_t *pid = az(8);
		pid[0] = 1;
		pid[4] = (uint8_t)(parent >> 24);
		pid[5] = (uint8_t)(parent >> 16);
		pid[6] = (uint8_t)(parent >> 8);
		pid[7] = (uint8_t)parent;
		sp->parent_span_id = (ProtobufCBinaryData){8, pid};
	}
	sp->name = tl_arena_strndup(&A, name, strlen(name));
	sp->start_time_unix_nano = start;
	sp->end_time_unix_nano = end;
	if (error) {
		tl_pb_status *st = az(sizeof(*st));
		opentelemetry__proto__trace__v1__status__init(st);
		st->code = TL_PB_STATUS_ERROR;
		st->message = (char *)"failed";
		sp->status = st;
	}
	return sp;
}

/* Adds a span of svc to the batch being built. */
static void add(const char *svc, tl_pb_span *sp)
{
	size_t i = 0;
	while (i < pend.nsvc && !(pend.svc[i] == svc || (pend.svc[i] && svc && strcmp(pend.svc[i], svc) == 0)))
		i++;
	if (i == pend.nsvc) {
		cr_assert_lt(pend.nsvc, MAXSVC);
		pend.svc[pend.nsvc++] = svc;
	}
	cr_assert_lt(pend.n[i], MAXSPANS / 4);
	pend.spans[i][pend.n[i]++] = sp;
}

static tl_pb_resource_spans *mk_rs(const char *svc, tl_pb_span **spans, size_t n)
{
	tl_pb_resource_spans *rs = az(sizeof(*rs));
	opentelemetry__proto__trace__v1__resource_spans__init(rs);
	tl_pb_resource *res = az(sizeof(*res));
	opentelemetry__proto__resource__v1__resource__init(res);
	if (svc != NULL) {
		tl_pb_keyvalue *kv = az(sizeof(*kv));
		opentelemetry__proto__common__v1__key_value__init(kv);
		tl_pb_anyvalue *v = az(sizeof(*v));
		opentelemetry__proto__common__v1__any_value__init(v);
		v->value_case = TL_PB_ANY_STRING;
		v->string_value = tl_arena_strndup(&A, svc, strlen(svc));
		kv->key = (char *)"service.name";
		kv->value = v;
		res->n_attributes = 1;
		res->attributes = az(sizeof(*res->attributes));
		res->attributes[0] = kv;
	}
	rs->resource = res;
	tl_pb_scope_spans *ss = az(sizeof(*ss));
	opentelemetry__proto__trace__v1__scope_spans__init(ss);
	ss->spans = az(n * sizeof(*ss->spans));
	memcpy(ss->spans, spans, n * sizeof(*spans));
	ss->n_spans = n;
	rs->n_scope_spans = 1;
	rs->scope_spans = az(sizeof(*rs->scope_spans));
	rs->scope_spans[0] = ss;
	return rs;
}

/* Commits the batch being built under sequence number s. */
static co_batch *commit_seq(uint64_t s, enum co_batch_status want)
{
	tl_pb_export_req *r = az(sizeof(*r));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(r);
	r->resource_spans = az((pend.nsvc ? pend.nsvc : 1) * sizeof(*r->resource_spans));
	for (size_t i = 0; i < pend.nsvc; i++)
		r->resource_spans[r->n_resource_spans++] = mk_rs(pend.svc[i], pend.spans[i], pend.n[i]);
	co_batch *b = az(sizeof(*b));
	memset(b->agent_id, 0x5a, sizeof(b->agent_id));
	b->seq = s;
	b->traces = az(sizeof(*b->traces));
	b->traces[0] = r;
	b->n_traces = 1;
	co_batch *bs[1] = {b};
	int rc = co_store_commit(S, bs, 1, tl_now_ns());
	cr_assert_eq(rc, 0, "commit: %s", tl_strerror(rc));
	cr_assert_eq(b->status, want, "batch status %d, want %d", b->status, want);
	return b;
}

static void commit(void)
{
	commit_seq(++seq, CO_BATCH_OK);
	memset(&pend, 0, sizeof(pend));
}

/* ---- asking ---- */

static json_t *ask(const co_stats_opts *o)
{
	tl_arena_reset(&QA);
	char *js = NULL;
	tl_errmsg err = {{0}};
	int rc = co_stats_query(S, o, &QA, &js, &err);
	cr_assert_eq(rc, 0, "stats: %s (%s)", tl_strerror(rc), err.msg);
	json_error_t je;
	json_t *doc = json_loads(js, 0, &je);
	cr_assert_not_null(doc, "answer is not JSON: %s: %s", je.text, js);
	return doc;
}

static json_t *window(uint64_t since, uint64_t until)
{
	co_stats_opts o = {.since_ns = since, .until_ns = until, .now_ns = LATER};
	return ask(&o);
}

static const json_t *row(const json_t *doc, const char *svc, const char *op)
{
	const json_t *ops = json_object_get(doc, "operations"), *e;
	size_t i;
	json_array_foreach(ops, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "service")), svc) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "operation")), op) == 0)
			return e;
	}
	return NULL;
}

static uint64_t u64(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	cr_assert(json_is_string(v), "%s is not a string", key);
	return strtoull(json_string_value(v), NULL, 10);
}

static long long integer(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	cr_assert(json_is_integer(v), "%s is not an integer", key);
	return (long long)json_integer_value(v);
}

static double real(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	cr_assert(json_is_number(v), "%s is not a number", key);
	return json_number_value(v);
}

static long long count_of(const json_t *doc, const char *svc, const char *op)
{
	const json_t *r = row(doc, svc, op);
	return r != NULL ? integer(r, "count") : 0;
}

/* ---- exact percentiles ---- */

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

/* The nearest-rank percentile p of sorted v[0..n). */
static uint64_t exact(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;
	return v[(rank ? rank : 1) - 1];
}

static void assert_close(uint64_t got, uint64_t want, const char *what)
{
	if (want < 1000) {
		cr_assert_leq(got > want ? got - want : want - got, 500, "%s: %llu ns, exact %llu ns", what,
		              (unsigned long long)got, (unsigned long long)want);
		return;
	}
	double rel = fabs((double)got - (double)want) / (double)want;
	cr_assert_leq(rel, REL_BOUND, "%s: %llu ns, exact %llu ns (%.2f%% off)", what, (unsigned long long)got,
	              (unsigned long long)want, rel * 100);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- the histogram ---- */

Test(stats, buckets_cover_every_duration_with_the_documented_width)
{
	cr_assert_eq(co_stats_bucket(0), 0);
	cr_assert_eq(co_stats_bucket(999), 0);
	cr_assert_eq(co_stats_bucket(1000), 1);
	cr_assert_eq(co_stats_bucket_lower(1), 1000);
	cr_assert_eq(co_stats_bucket_lower(9), 2000);
	cr_assert_eq(co_stats_bucket_lower(17), 4000);
	cr_assert_eq(co_stats_bucket(UINT64_MAX), CO_STATS_BUCKETS - 1);
	for (unsigned b = 1; b + 1 < CO_STATS_BUCKETS; b++) {
		uint64_t lo = co_stats_bucket_lower(b), hi = co_stats_bucket_lower(b + 1);
		cr_assert_lt(lo, hi, "bucket %u", b);
		double ratio = (double)hi / (double)lo;
		/* 2^(1/8), up to the bounds' rounding to whole nanoseconds. */
		cr_assert(fabs(ratio - pow(2, 1.0 / 8)) <= 2.0 / (double)lo + 1e-9, "bucket %u is %f wide", b, ratio);
		cr_assert_eq(co_stats_bucket(lo), b, "lower bound of %u", b);
		cr_assert_eq(co_stats_bucket(hi - 1), b, "upper end of %u", b);
	}
	for (int i = 0; i < 100000; i++) {
		uint64_t d = next_rand() >> (next_rand() % 64);
		unsigned b = co_stats_bucket(d);
		cr_assert_leq(co_stats_bucket_lower(b), d);
		if (b + 1 < CO_STATS_BUCKETS)
			cr_assert_lt(d, co_stats_bucket_lower(b + 1));
	}
}

/* Durations spread log-uniformly from 50 µs to 2 s, with a slow tail, over one minute of one operation. */
Test(stats, percentiles_are_within_the_bound_of_exact_ones)
{
	enum { N = 5000 };
	static uint64_t d[N];
	uint64_t sum = 0;
	for (size_t i = 0; i < N; i++) {
		double x = (double)(next_rand() % 1000000) / 1e6;
		d[i] = (uint64_t)(50000.0 * pow(40000.0, x)) + (i % 97 == 0 ? 3 * SEC : 0);
		uint64_t start = T0 + (uint64_t)i * 10 * MS;
		add("scorer", span((uint32_t)i + 1, 1, 0, "score", start, start + d[i], false));
		sum += d[i];
		if (i % 2000 == 1999)
			commit();
	}
	commit();
	/* Some sub-microsecond spans of another operation. */
	uint64_t tiny[5] = {0, 100, 400, 700, 999};
	for (size_t i = 0; i < 5; i++)
		add("scorer", span(90000 + (uint32_t)i, 1, 0, "noop", T0, T0 + tiny[i], false));
	commit();

	json_t *doc = window(T0, T0 + MIN);
	const json_t *r = row(doc, "scorer", "score");
	cr_assert_not_null(r);
	qsort(d, N, sizeof(*d), cmp_u64);
	cr_assert_eq(integer(r, "count"), N);
	cr_assert_eq(integer(r, "errors"), 0);
	assert_close(u64(r, "p50_nano"), exact(d, N, 50), "p50");
	assert_close(u64(r, "p95_nano"), exact(d, N, 95), "p95");
	assert_close(u64(r, "p99_nano"), exact(d, N, 99), "p99");
	cr_assert_eq(u64(r, "min_nano"), d[0]);
	cr_assert_eq(u64(r, "max_nano"), d[N - 1]);
	cr_assert_eq(u64(r, "mean_nano"), sum / N);
	const json_t *t = row(doc, "scorer", "noop");
	cr_assert_not_null(t);
	assert_close(u64(t, "p50_nano"), 400, "sub-µs p50");
	assert_close(u64(t, "p99_nano"), 999, "sub-µs p99");
	cr_assert_eq(u64(t, "min_nano"), 0);
	json_decref(doc);
}

Test(stats, percentile_of_one_value_is_exact)
{
	add("svc", span(1, 1, 0, "op", T0, T0 + 123456789, false));
	commit();
	json_t *doc = window(T0, T0 + MIN);
	const json_t *r = row(doc, "svc", "op");
	cr_assert_eq(u64(r, "p50_nano"), 123456789);
	cr_assert_eq(u64(r, "p99_nano"), 123456789);
	json_decref(doc);
}

/* ---- counts, errors, rates, windows ---- */

Test(stats, error_rates_rates_and_order)
{
	/* gateway GET /predict: 240 spans over minutes M0 and M0+1, 12 failed; /health: 60 fast ones. */
	for (uint32_t i = 0; i < 240; i++) {
		uint64_t st = T0 + (uint64_t)i * 500 * MS;
		add("gateway", span(i + 1, 1, 0, "GET /predict", st, st + 80 * MS + i * MS, i % 20 == 0));
	}
	for (uint32_t i = 0; i < 60; i++) {
		uint64_t st = T0 + (uint64_t)i * SEC;
		add("gateway", span(1000 + i, 1, 0, "GET /health", st, st + MS, false));
	}
	add("model", span(5000, 1, 0, "predict", T0, T0 + 5 * SEC, true));
	add(NULL, span(5001, 1, 0, "orphan-work", T0, T0 + MS, false));
	commit();

	json_t *doc = window(T0, T0 + 2 * MIN);
	cr_assert_eq(real(doc, "rate_seconds"), 120.0);
	const json_t *p = row(doc, "gateway", "GET /predict"), *h = row(doc, "gateway", "GET /health");
	cr_assert_not_null(p);
	cr_assert_not_null(h);
	cr_assert_eq(integer(p, "count"), 240);
	cr_assert_eq(integer(p, "errors"), 12);
	cr_assert_float_eq(real(p, "error_rate"), 0.05, 1e-9);
	cr_assert_float_eq(real(p, "rate_per_second"), 2.0, 1e-9);
	cr_assert_float_eq(real(h, "rate_per_second"), 0.5, 1e-9);
	cr_assert_float_eq(real(h, "error_rate"), 0.0, 1e-12);
	cr_assert_float_eq(real(row(doc, "model", "predict"), "error_rate"), 1.0, 1e-12);
	cr_assert_eq(count_of(doc, "unknown_service", "orphan-work"), 1);
	/* Sorted by service, then p99 descending. */
	const json_t *ops = json_object_get(doc, "operations");
	cr_assert_eq(json_array_size(ops), 4);
	const char *want[4][2] = {{"gateway", "GET /predict"},
	                          {"gateway", "GET /health"},
	                          {"model", "predict"},
	                          {"unknown_service", "orphan-work"}};
	for (size_t i = 0; i < 4; i++) {
		const json_t *e = json_array_get(ops, i);
		cr_assert_str_eq(json_string_value(json_object_get(e, "service")), want[i][0], "row %zu", i);
		cr_assert_str_eq(json_string_value(json_object_get(e, "operation")), want[i][1], "row %zu", i);
	}
	json_decref(doc);

	/* One service only. */
	co_stats_opts o = {.service = "gateway", .since_ns = T0, .until_ns = T0 + 2 * MIN, .now_ns = LATER};
	doc = ask(&o);
	cr_assert_str_eq(json_string_value(json_object_get(doc, "service")), "gateway");
	cr_assert_eq(json_array_size(json_object_get(doc, "operations")), 2);
	json_decref(doc);
	o.service = "gate"; /* a prefix of a service is not that service */
	doc = ask(&o);
	cr_assert_eq(json_array_size(json_object_get(doc, "operations")), 0);
	json_decref(doc);

	/* A window that reaches past now: rates over the time up to now. */
	co_stats_opts o2 = {.since_ns = T0, .until_ns = T0 + 2 * MIN, .now_ns = T0 + 90 * SEC};
	doc = ask(&o2);
	cr_assert_eq(real(doc, "rate_seconds"), 90.0);
	cr_assert_float_eq(real(row(doc, "gateway", "GET /predict"), "rate_per_second"), 240.0 / 90, 1e-9);
	json_decref(doc);
}

Test(stats, minute_boundaries_and_window_cuts)
{
	add("svc", span(1, 1, 0, "op", T0 - 1, T0 + MS, false));            /* minute M0 - 1 */
	add("svc", span(2, 1, 0, "op", T0, T0 + MS, false));                /* M0 */
	add("svc", span(3, 1, 0, "op", T0 + MIN - 1, T0 + MIN + MS, true)); /* M0 */
	add("svc", span(4, 1, 0, "op", T0 + MIN, T0 + MIN + MS, false));    /* M0 + 1 */
	add("svc", span(5, 1, 0, "op", T0 + 30 * MIN, T0 + 30 * MIN + MS, false));
	commit();

	json_t *doc = window(T0, T0 + MIN);
	cr_assert_eq(count_of(doc, "svc", "op"), 2);
	cr_assert_eq(integer(row(doc, "svc", "op"), "errors"), 1);
	cr_assert_eq(u64(doc, "window_start_unix_nano"), T0);
	cr_assert_eq(u64(doc, "window_end_unix_nano"), T0 + MIN);
	json_decref(doc);
	/* Ends inside a minute are rounded outwards: the window holds whole minutes. */
	doc = window(T0 + 30 * SEC, T0 + 30 * SEC + 1);
	cr_assert_eq(count_of(doc, "svc", "op"), 2);
	cr_assert_eq(u64(doc, "window_start_unix_nano"), T0);
	cr_assert_eq(u64(doc, "window_end_unix_nano"), T0 + MIN);
	cr_assert_eq(u64(doc, "since_unix_nano"), T0 + 30 * SEC);
	cr_assert_eq(real(doc, "rate_seconds"), 60.0);
	json_decref(doc);
	doc = window(T0 - MIN, T0);
	cr_assert_eq(count_of(doc, "svc", "op"), 1);
	json_decref(doc);
	doc = window(T0 - 1, T0 + 1);
	cr_assert_eq(count_of(doc, "svc", "op"), 3);
	json_decref(doc);
	doc = window(T0 + 1, T0 + MIN + 1);
	cr_assert_eq(count_of(doc, "svc", "op"), 3);
	json_decref(doc);
	/* Minutes between cells, and windows that hold no cell at all. */
	doc = window(T0 + 2 * MIN, T0 + 30 * MIN);
	cr_assert_eq(json_array_size(json_object_get(doc, "operations")), 0);
	json_decref(doc);
	doc = window(T0 + 2 * MIN, T0 + 31 * MIN);
	cr_assert_eq(count_of(doc, "svc", "op"), 1);
	json_decref(doc);
	doc = window(T0 - 60 * MIN, T0 + 60 * MIN);
	cr_assert_eq(count_of(doc, "svc", "op"), 5);
	json_decref(doc);
	doc = window(T0 + 40 * MIN, T0 + 50 * MIN);
	cr_assert_eq(json_array_size(json_object_get(doc, "operations")), 0);
	json_decref(doc);
}

Test(stats, several_batches_add_to_one_cell)
{
	for (int b = 0; b < 3; b++) {
		for (uint32_t i = 0; i < 10; i++)
			add("svc", span((uint32_t)b * 100 + i + 1, 1, 0, "op", T0 + i * SEC,
			                T0 + i * SEC + (uint64_t)(b + 1) * 100 * MS, b == 2 && i == 0));
		commit();
	}
	size_t cells = 0;
	cr_assert_eq(co_stats_count(S, &cells), 0);
	cr_assert_eq(cells, 1);
	json_t *doc = window(T0, T0 + MIN);
	const json_t *r = row(doc, "svc", "op");
	cr_assert_eq(integer(r, "count"), 30);
	cr_assert_eq(integer(r, "errors"), 1);
	cr_assert_eq(u64(r, "min_nano"), 100 * MS);
	cr_assert_eq(u64(r, "max_nano"), 300 * MS);
	cr_assert_eq(u64(r, "mean_nano"), 200 * MS);
	assert_close(u64(r, "p50_nano"), 200 * MS, "p50");
	json_decref(doc);

	/* The same batch sent again (same agent and sequence) is a duplicate: nothing is counted twice. */
	for (uint32_t i = 0; i < 10; i++)
		add("svc", span(900 + i, 1, 0, "op", T0 + i * SEC, T0 + i * SEC + 100 * MS, false));
	commit_seq(seq, CO_BATCH_DUPLICATE);
	memset(&pend, 0, sizeof(pend));
	doc = window(T0, T0 + MIN);
	cr_assert_eq(count_of(doc, "svc", "op"), 30);
	json_decref(doc);
}

Test(stats, names_are_cut_at_a_character_boundary)
{
	char op[300];
	memset(op, 'a', sizeof(op));
	memcpy(op + 127, "\xc3\xa9", 2); /* é across the 128-byte cut */
	op[sizeof(op) - 1] = '\0';
	add("svc", span(1, 1, 0, op, T0, T0 + MS, false));
	op[200] = '\0'; /* another name with the same first 128 bytes: the same cell */
	add("svc", span(2, 1, 0, op, T0, T0 + MS, false));
	commit();
	json_t *doc = window(T0, T0 + MIN);
	const json_t *ops = json_object_get(doc, "operations");
	cr_assert_eq(json_array_size(ops), 1);
	const json_t *r = json_array_get(ops, 0);
	cr_assert_eq(strlen(json_string_value(json_object_get(r, "operation"))), 127);
	cr_assert_eq(integer(r, "count"), 2);
	json_decref(doc);
}

/* A corrupt cell is skipped by queries and replaced by the next batch that brings spans for it. */
Test(stats, corrupt_cell)
{
	add("svc", span(1, 1, 0, "op", T0, T0 + MS, false));
	add("svc", span(2, 1, 0, "other", T0, T0 + MS, false));
	commit();
	co_store_close(S);
	S = NULL;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 64), 0);
	cr_assert_eq(mdb_env_set_mapsize(env, 64 << 20), 0);
	cr_assert_eq(mdb_env_open(env, dir, MDB_NOTLS, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "stats", 0, &dbi), 0);
	uint8_t key[2 + 3 + 2 + 2 + 4] = {0, 3, 's', 'v', 'c', 0, 2, 'o', 'p'};
	uint32_t m = (uint32_t)M0;
	key[9] = (uint8_t)(m >> 24);
	key[10] = (uint8_t)(m >> 16);
	key[11] = (uint8_t)(m >> 8);
	key[12] = (uint8_t)m;
	MDB_val k = {sizeof(key), key}, v;
	cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0, "the cell's key is lp(svc) || lp(op) || minute");
	uint8_t junk[] = {1, 5, 9, 0xff};
	v = (MDB_val){sizeof(junk), junk};
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	store_fixture_open();

	json_t *doc = window(T0, T0 + MIN);
	cr_assert_eq(integer(doc, "skipped_cells"), 1);
	cr_assert_null(row(doc, "svc", "op"));
	cr_assert_eq(count_of(doc, "svc", "other"), 1);
	json_decref(doc);
	add("svc", span(3, 1, 0, "op", T0, T0 + 2 * MS, false));
	commit();
	doc = window(T0, T0 + MIN);
	cr_assert_eq(integer(doc, "skipped_cells"), 0);
	cr_assert_eq(count_of(doc, "svc", "op"), 1);
	cr_assert_eq(u64(row(doc, "svc", "op"), "max_nano"), 2 * MS);
	json_decref(doc);
}

/* ---- the write side on its own LMDB ---- */

Test(stats, put_batch_groups_spans_into_distinct_cells)
{
	char d2[sizeof(dir) + 8];
	snprintf(d2, sizeof(d2), "%s/raw", dir);
	cr_assert_eq(mkdir(d2, 0700), 0);
	MDB_env *env;
	MDB_txn *txn;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 4), 0);
	cr_assert_eq(mdb_env_open(env, d2, MDB_NOTLS, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	co_stats_db *db = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_stats_db_open(txn, &db, &err), 0, "%s", err.msg);
	enum { N = 3000 };
	co_stats_span *sp = az(N * sizeof(*sp));
	const char *ops[3] = {"a", "b", "c"};
	const char *svcs[2] = {"x", NULL};
	for (uint32_t i = 0; i < N; i++) {
		uint64_t st = T0 + (i % 2) * MIN + i * MS;
		sp[i] = (co_stats_span){span(i, 1, 0, ops[i % 3], st, st + i * 1000, false), svcs[(i / 7) % 2]};
	}
	tl_arena scratch;
	tl_arena_init(&scratch, 1 << 20, 0);
	cr_assert_eq(co_stats_put_batch(db, txn, &scratch, sp, N), 0);
	cr_assert_eq(co_stats_put_batch(db, txn, &scratch, sp, N), 0);
	cr_assert_eq(co_stats_put_batch(db, txn, &scratch, sp, 0), 0);
	MDB_dbi dbi;
	cr_assert_eq(mdb_dbi_open(txn, "stats", 0, &dbi), 0);
	MDB_stat st;
	cr_assert_eq(mdb_stat(txn, dbi, &st), 0);
	cr_assert_eq(st.ms_entries, 2 * 3 * 2, "services x operations x minutes");
	mdb_txn_abort(txn);
	co_stats_db_free(db);
	co_stats_db_free(NULL);
	tl_arena_fini(&scratch);
	mdb_env_close(env);
}

/* ---- latency budget ---- */

enum { FEATURE_SLOW = 8, MODEL_SLOW = 2, FAST = 10 };

/*
 * One prediction: gateway POST /predict calls feature-store get_features,
 * then model-server predict; the root ends 1 ms after the model call:
 * root self time 3 ms on the critical path.
 */
static void prediction(uint32_t trace, uint64_t start, uint64_t feat, uint64_t model)
{
	uint64_t f0 = start + MS, m0 = f0 + feat + MS, end = m0 + model + MS;
	add("gateway", span(trace, 1, 0, "POST /predict", start, end, false));
	add("feature-store", span(trace, 2, 1, "get_features", f0, f0 + feat, false));
	add("model-server", span(trace, 3, 1, "predict", m0, m0 + model, false));
}

static void load_budget_scenario(void)
{
	uint32_t t = 1;
	for (int i = 0; i < FEATURE_SLOW; i++, t++)
		prediction(t, T0 + t * SEC, 300 * MS, 30 * MS);
	for (int i = 0; i < MODEL_SLOW; i++, t++)
		prediction(t, T0 + t * SEC, 20 * MS, 400 * MS);
	for (int i = 0; i < FAST; i++, t++)
		prediction(t, T0 + t * SEC, 20 * MS, 30 * MS);
	commit();
}

static const json_t *stage_at(const json_t *b, size_t i, const char *svc, const char *op)
{
	const json_t *e = json_array_get(json_object_get(b, "stages"), i);
	cr_assert_not_null(e, "stage %zu", i);
	cr_assert_str_eq(json_string_value(json_object_get(e, "service")), svc, "stage %zu", i);
	cr_assert_str_eq(json_string_value(json_object_get(e, "operation")), op, "stage %zu", i);
	return e;
}

Test(stats, budget_names_the_stage_that_consumed_it)
{
	load_budget_scenario();
	co_stats_opts o = {.since_ns = T0, .until_ns = T0 + 10 * MIN, .now_ns = LATER, .budget_ns = 200 * MS};
	json_t *doc = ask(&o);
	const json_t *b = json_object_get(doc, "budget");
	cr_assert(json_is_object(b));
	cr_assert_eq(u64(b, "budget_nano"), 200 * MS);
	cr_assert_eq(integer(b, "over_budget"), FEATURE_SLOW + MODEL_SLOW);
	cr_assert_eq(integer(b, "examined"), FEATURE_SLOW + MODEL_SLOW);
	cr_assert(json_is_false(json_object_get(b, "partial")));
	/* Self times on the critical path: get_features 8 x 300 + 2 x 20 ms, predict 8 x 30 + 2 x 400 ms, root 10 x 3
	 * ms. */
	double total = 2440 + 1040 + 30;
	const json_t *s0 = stage_at(b, 0, "feature-store", "get_features");
	cr_assert_eq(u64(s0, "self_nano"), 2440 * MS);
	cr_assert_float_eq(real(s0, "share"), 2440 / total, 1e-9);
	cr_assert_eq(integer(s0, "top_in"), FEATURE_SLOW);
	cr_assert_eq(integer(s0, "traces"), FEATURE_SLOW + MODEL_SLOW);
	const json_t *s1 = stage_at(b, 1, "model-server", "predict");
	cr_assert_eq(u64(s1, "self_nano"), 1040 * MS);
	cr_assert_float_eq(real(s1, "share"), 1040 / total, 1e-9);
	cr_assert_eq(integer(s1, "top_in"), MODEL_SLOW);
	const json_t *s2 = stage_at(b, 2, "gateway", "POST /predict");
	cr_assert_eq(u64(s2, "self_nano"), 30 * MS);
	cr_assert_eq(integer(s2, "top_in"), 0);
	cr_assert_eq(json_array_size(json_object_get(b, "stages")), 3);
	/* The slowest first: the two slow model calls (423 ms), then the feature-store ones (333 ms). */
	const json_t *sl = json_object_get(b, "slowest");
	cr_assert_eq(json_array_size(sl), FEATURE_SLOW + MODEL_SLOW);
	for (size_t i = 0; i < json_array_size(sl); i++) {
		const json_t *e = json_array_get(sl, i);
		bool model = i < MODEL_SLOW;
		cr_assert_eq(u64(e, "duration_nano"), model ? 423 * MS : 333 * MS, "slowest %zu", i);
		cr_assert_eq(u64(e, "over_nano"), (model ? 423 : 333) * MS - 200 * MS);
		cr_assert_str_eq(json_string_value(json_object_get(e, "root_service")), "gateway");
		cr_assert_str_eq(json_string_value(json_object_get(e, "root_name")), "POST /predict");
		const json_t *top = json_object_get(e, "top_stage");
		cr_assert_str_eq(json_string_value(json_object_get(top, "service")),
		                 model ? "model-server" : "feature-store");
		cr_assert_eq(u64(top, "self_nano"), model ? 400 * MS : 300 * MS);
		cr_assert_eq(strlen(json_string_value(json_object_get(e, "trace_id"))), 32);
	}
	json_decref(doc);

	/* Only the traces where feature-store itself lasted the budget. */
	o.service = "feature-store";
	doc = ask(&o);
	b = json_object_get(doc, "budget");
	cr_assert_eq(integer(b, "over_budget"), FEATURE_SLOW);
	stage_at(b, 0, "feature-store", "get_features");
	cr_assert_eq(u64(json_array_get(json_object_get(b, "stages"), 0), "self_nano"), FEATURE_SLOW * 300 * MS);
	json_decref(doc);

	/* A budget nothing broke. */
	o.service = NULL;
	o.budget_ns = 2 * SEC;
	doc = ask(&o);
	b = json_object_get(doc, "budget");
	cr_assert_eq(integer(b, "over_budget"), 0);
	cr_assert_eq(json_array_size(json_object_get(b, "stages")), 0);
	json_decref(doc);

	/* A budget between the root and its slowest span: candidates that did not break it are not counted. */
	o.budget_ns = 400 * MS;
	doc = ask(&o);
	b = json_object_get(doc, "budget");
	cr_assert_eq(integer(b, "candidates"), MODEL_SLOW);
	cr_assert_eq(integer(b, "over_budget"), MODEL_SLOW);
	o.budget_ns = 410 * MS;
	json_decref(doc);
	doc = ask(&o);
	b = json_object_get(doc, "budget");
	cr_assert_eq(integer(b, "over_budget"), MODEL_SLOW); /* roots last 423 ms */
	json_decref(doc);
}

Test(stats, budget_is_partial_past_max_traces)
{
	load_budget_scenario();
	co_stats_opts o = {
	        .since_ns = T0, .until_ns = T0 + 10 * MIN, .now_ns = LATER, .budget_ns = 200 * MS, .max_traces = 4};
	json_t *doc = ask(&o);
	const json_t *b = json_object_get(doc, "budget");
	cr_assert(json_is_true(json_object_get(b, "partial")));
	cr_assert_eq(integer(b, "examined"), 4);
	/* Newest first: the four newest slow traces are the two model ones and two feature-store ones. */
	cr_assert_eq(integer(b, "over_budget"), 4);
	json_decref(doc);
}

Test(stats, no_budget_gives_null)
{
	load_budget_scenario();
	json_t *doc = window(T0, T0 + 10 * MIN);
	cr_assert(json_is_null(json_object_get(doc, "budget")));
	cr_assert_eq(count_of(doc, "gateway", "POST /predict"), FEATURE_SLOW + MODEL_SLOW + FAST);
	json_decref(doc);
}

/* ---- through the query service, and bad queries ---- */

static void query(const tl_pb_stats *st, tl_pb_query_resp *resp)
{
	tl_pb_query_req q = THREADLINE__V1__QUERY_REQUEST__INIT;
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_STATS;
	q.stats = (tl_pb_stats *)st;
	size_t n = threadline__v1__query_request__get_packed_size(&q);
	uint8_t *buf = az(n + 1);
	threadline__v1__query_request__pack(&q, buf);
	tl_arena_reset(&QA);
	co_query_answer(S, buf, n, &QA, resp);
}

Test(stats, query_service_answers_and_rejects)
{
	load_budget_scenario();
	tl_pb_stats st = THREADLINE__V1__STATS__INIT;
	st.service = (char *)"gateway";
	st.since_unix_nano = T0;
	st.until_unix_nano = T0 + 10 * MIN;
	st.budget_nano = 200 * MS;
	tl_pb_query_resp resp;
	query(&st, &resp);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	json_t *doc = json_loads(resp.json, 0, NULL);
	cr_assert_not_null(doc);
	cr_assert_eq(count_of(doc, "gateway", "POST /predict"), 20);
	cr_assert_eq(integer(json_object_get(doc, "budget"), "over_budget"), FEATURE_SLOW + MODEL_SLOW);
	json_decref(doc);

	st.since_unix_nano = T0 + MIN;
	st.until_unix_nano = T0;
	query(&st, &resp);
	cr_assert_eq(resp.code, TL_EINVALID);
	cr_assert_not_null(strstr(resp.error, "since"), "%s", resp.error);

	/* Defaults: the hour before now (nothing there: the data is from T0). */
	tl_pb_stats empty = THREADLINE__V1__STATS__INIT;
	query(&empty, &resp);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	doc = json_loads(resp.json, 0, NULL);
	cr_assert(json_is_null(json_object_get(doc, "service")));
	uint64_t since = u64(doc, "since_unix_nano"), until = u64(doc, "until_unix_nano");
	cr_assert_eq(until - since, 3600 * SEC);
	json_decref(doc);

	char *js = NULL;
	tl_errmsg err = {{0}};
	tl_pb_query_req other = THREADLINE__V1__QUERY_REQUEST__INIT;
	other.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_GET;
	cr_assert_eq(co_stats_answer(S, &other, &QA, &js, &err), TL_EUNSUPPORTED);
	co_stats_opts o = {.since_ns = 5, .until_ns = 5};
	cr_assert_eq(co_stats_query(S, &o, &QA, &js, &err), TL_EINVALID);
	cr_assert_not_null(strstr(err.msg, "since"));
}

Test(stats, answer_that_does_not_fit_is_elimit)
{
	load_budget_scenario();
	tl_arena small;
	tl_arena_init(&small, 256, 256);
	char *js = NULL;
	tl_errmsg err = {{0}};
	co_stats_opts o = {.since_ns = T0, .until_ns = T0 + 10 * MIN};
	cr_assert_eq(co_stats_query(S, &o, &small, &js, &err), TL_ELIMIT);
	tl_arena_fini(&small);
}

/* ---- the CLI ---- */

static int run_cli(const char *a1, const char *a2, const char *a3)
{
	char *argv[5] = {(char *)"stats", (char *)a1, (char *)a2, (char *)a3, NULL};
	int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
	/* No collector listens here: a flag error must come before any attempt to reach it. */
	co_cli cli = {.collector = "tcp://127.0.0.1:1", .timeout_ms = 200};
	return co_cli_stats(&cli, argc, argv);
}

Test(stats, cli_bad_flags_exit_2)
{
	cr_assert_eq(run_cli("--budget", "0", NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--budget", "fast", NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--budget=0ms", NULL, NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--budget", NULL, NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--since", "yesterday", NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--until", "2026-13-40T00:00:00Z", NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--since", "1h", "--until=2h"), CLI_USAGE); /* ends before it starts */
	cr_assert_eq(run_cli("--service", "", NULL), CLI_USAGE);
	cr_assert_eq(run_cli("--services", "x", NULL), CLI_USAGE);
	cr_assert_eq(run_cli("extra", NULL, NULL), CLI_USAGE);
	/* Good flags reach for the collector, which is not there. */
	cr_assert_eq(run_cli("--since", "1h", "--budget=200ms"), CLI_UNREACHABLE);
}

static char *render(bool json, const char *doc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	co_cli cli = {.json = json};
	tl_errmsg err = {{0}};
	int rc = co_cli_stats_print(&cli, doc, strlen(doc), f, &err);
	fclose(f);
	cr_assert_eq(rc, 0, "print: %s", err.msg);
	return buf;
}

Test(stats, cli_renders_the_answer)
{
	load_budget_scenario();
	add("evil\x1b[31m", span(999, 1, 0, "op\n2", T0, T0 + MS, false));
	commit();
	co_stats_opts o = {.since_ns = T0, .until_ns = T0 + 10 * MIN, .now_ns = LATER, .budget_ns = 200 * MS};
	tl_arena_reset(&QA);
	char *js = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_stats_query(S, &o, &QA, &js, &err), 0);
	char *text = render(false, js);
	cr_assert_not_null(strstr(text, "SERVICE"), "%s", text);
	cr_assert_not_null(strstr(text, "feature-store"), "%s", text);
	cr_assert_not_null(strstr(text, "POST /predict"), "%s", text);
	cr_assert_not_null(strstr(text, "budget 200ms: 10 traces over budget"), "%s", text);
	cr_assert_not_null(strstr(text, "69.5%"), "%s", text); /* get_features' share */
	cr_assert_not_null(strstr(text, "slowest traces over budget"), "%s", text);
	cr_assert_not_null(strstr(text, "423"), "%s", text);
	cr_assert_null(strchr(text, '\x1b'), "control characters reach the terminal");
	/* The stage table lists get_features before predict. */
	const char *stages = strstr(text, "critical-path");
	cr_assert_not_null(stages);
	cr_assert_lt(strstr(stages, "get_features") - stages, strstr(stages, "predict ") - stages);
	free(text);
	char *j = render(true, js);
	cr_assert_eq(strlen(j), strlen(js) + 1);
	cr_assert_eq(strncmp(j, js, strlen(js)), 0);
	free(j);
	FILE *f = fopen("/dev/null", "w");
	co_cli cli = {0};
	cr_assert_eq(co_cli_stats_print(&cli, "[1]", 3, f, &err), TL_EPROTO);
	cr_assert_eq(co_cli_stats_print(&cli, "{\"x\":1}", 7, f, &err), TL_EPROTO);
	cr_assert_eq(co_cli_stats_print(&cli, "{", 1, f, &err), TL_EPROTO);
	fclose(f);
}
