/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The search indexes (co_index.h) on a real LMDB store in a temporary
 * directory, fed through co_store_commit: each index alone and combined,
 * conditions that must hold on one span, newest-first order, limit,
 * partial answers, long values indexed by prefix, attributes across
 * services and from resources, traces whose spans arrive in several
 * batches, the catalog, dependencies, bad queries, and the trace_search
 * query of co_query.
 */
#include "co_index.h"
#include "co_query.h"
#include "co_store.h"
#include "tl_arena.h"
#include "tl_id.h"
#include "tl_pb.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 (UINT64_C(1800000000000000000) >> 30 << 30) /* 2027-01-15, unix ns, at a time bucket's start */
#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)

static char dir[64];
static tl_arena A;   /* test data */
static tl_arena Out; /* search answers */
static co_store *S;
static uint64_t seq;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static const char *const extra_keys[] = {"customer.tier", "retry.count"};

static co_store *open_store(size_t map_size)
{
	co_store_opts o = {.dir = dir, .map_size = map_size, .index_attrs = extra_keys, .n_index_attrs = 2};
	co_store *s = NULL;
	tl_errmsg err = {{0}};
	int rc = co_store_open(&o, &s, &err);
	cr_assert_eq(rc, 0, "open: %s (%s)", tl_strerror(rc), err.msg);
	return s;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tl_index_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	tl_arena_init(&A, 64 << 10, 0);
	tl_arena_init(&Out, 64 << 10, 0);
	seq = 0;
	S = open_store(0);
}

static void teardown(void)
{
	co_store_close(S);
	S = NULL;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	tl_arena_fini(&A);
	tl_arena_fini(&Out);
}

TestSuite(index, .init = setup, .fini = teardown);

/* ---- building spans ---- */

static void *az(size_t n)
{
	void *p = tl_arena_alloc(&A, n ? n : 1);
	cr_assert_not_null(p);
	memset(p, 0, n ? n : 1);
	return p;
}

static char *as(const char *s)
{
	return tl_arena_strndup(&A, s, strlen(s));
}

static ProtobufCBinaryData tid(unsigned t)
{
	uint8_t *p = az(16);
	p[0] = 0xab;
	p[14] = (uint8_t)(t >> 8);
	p[15] = (uint8_t)t;
	return (ProtobufCBinaryData){16, p};
}

static ProtobufCBinaryData sid(unsigned t, unsigned s)
{
	uint8_t *p = az(8);
	p[0] = 0x5a;
	p[5] = (uint8_t)t;
	p[6] = (uint8_t)(s >> 8);
	p[7] = (uint8_t)s;
	return (ProtobufCBinaryData){8, p};
}

static void tid_bytes(unsigned t, uint8_t out[16])
{
	memset(out, 0, 16);
	out[0] = 0xab;
	out[14] = (uint8_t)(t >> 8);
	out[15] = (uint8_t)t;
}

static tl_pb_keyvalue *kv_str(const char *k, const char *v)
{
	tl_pb_keyvalue *kv = az(sizeof(*kv));
	opentelemetry__proto__common__v1__key_value__init(kv);
	kv->key = as(k);
	kv->value = az(sizeof(tl_pb_anyvalue));
	opentelemetry__proto__common__v1__any_value__init(kv->value);
	kv->value->value_case = TL_PB_ANY_STRING;
	kv->value->string_value = as(v);
	return kv;
}

static tl_pb_keyvalue *kv_int(const char *k, int64_t v)
{
	tl_pb_keyvalue *kv = kv_str(k, "");
	kv->value->value_case = TL_PB_ANY_INT;
	kv->value->int_value = v;
	return kv;
}

static tl_pb_keyvalue *kv_bool(const char *k, bool v)
{
	tl_pb_keyvalue *kv = kv_str(k, "");
	kv->value->value_case = TL_PB_ANY_BOOL;
	kv->value->bool_value = v;
	return kv;
}

/* A span of trace t, id s, parent p (0: root), with up to 4 attributes (NULL-terminated). */
static tl_pb_span *span(unsigned t, unsigned s, unsigned p, const char *name, uint64_t start, uint64_t dur, bool error,
                        tl_pb_keyvalue *a0, tl_pb_keyvalue *a1)
{
	tl_pb_span *sp = az(sizeof(*sp));
	opentelemetry__proto__trace__v1__span__init(sp);
	sp->trace_id = tid(t);
	sp->span_id = sid(t, s);
	if (p != 0)
		sp->parent_span_id = sid(t, p);
	sp->name = as(name);
	sp->kind = p == 0 ? 2 : 3; /* SERVER for roots, CLIENT below */
	sp->start_time_unix_nano = start;
	sp->end_time_unix_nano = start + dur;
	tl_pb_keyvalue *kvs[2] = {a0, a1};
	sp->attributes = az(2 * sizeof(*sp->attributes));
	for (int i = 0; i < 2; i++)
		if (kvs[i] != NULL)
			sp->attributes[sp->n_attributes++] = kvs[i];
	if (error) {
		sp->status = az(sizeof(tl_pb_status));
		opentelemetry__proto__trace__v1__status__init(sp->status);
		sp->status->code = TL_PB_STATUS_ERROR;
		sp->status->message = as("boom");
	}
	return sp;
}

/* ResourceSpans of service (NULL: no service.name) with an optional resource attribute. */
static tl_pb_resource_spans *rs(const char *service, tl_pb_keyvalue *rattr, tl_pb_span **spans, size_t n)
{
	tl_pb_resource_spans *r = az(sizeof(*r));
	opentelemetry__proto__trace__v1__resource_spans__init(r);
	r->resource = az(sizeof(tl_pb_resource));
	opentelemetry__proto__resource__v1__resource__init(r->resource);
	r->resource->attributes = az(2 * sizeof(tl_pb_keyvalue *));
	if (service != NULL)
		r->resource->attributes[r->resource->n_attributes++] = kv_str("service.name", service);
	if (rattr != NULL)
		r->resource->attributes[r->resource->n_attributes++] = rattr;
	r->n_scope_spans = 1;
	r->scope_spans = az(sizeof(tl_pb_scope_spans *));
	tl_pb_scope_spans *ss = az(sizeof(*ss));
	opentelemetry__proto__trace__v1__scope_spans__init(ss);
	ss->scope = az(sizeof(tl_pb_scope));
	opentelemetry__proto__common__v1__instrumentation_scope__init(ss->scope);
	ss->scope->name = as("test");
	ss->spans = az(n * sizeof(tl_pb_span *));
	memcpy(ss->spans, spans, n * sizeof(tl_pb_span *));
	ss->n_spans = n;
	r->scope_spans[0] = ss;
	return r;
}

/* Commits one batch of one request holding the given ResourceSpans. */
static void commit(tl_pb_resource_spans **r, size_t n)
{
	tl_pb_export_req *req = az(sizeof(*req));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
	req->resource_spans = az(n * sizeof(*req->resource_spans));
	memcpy(req->resource_spans, r, n * sizeof(*r));
	req->n_resource_spans = n;
	co_batch b = {.agent_id = {1, 2, 3}, .seq = ++seq, .n_traces = 1};
	b.traces = az(sizeof(*b.traces));
	b.traces[0] = req;
	co_batch *bp = &b;
	int rc = co_store_commit(S, &bp, 1, T0);
	cr_assert_eq(rc, 0, "commit: %s", tl_strerror(rc));
	cr_assert_eq(b.status, CO_BATCH_OK);
}

static void commit1(tl_pb_resource_spans *r)
{
	commit(&r, 1);
}

/* A one-span trace t of service at start. */
static void simple(unsigned t, const char *service, const char *name, uint64_t start, uint64_t dur, bool error)
{
	tl_pb_span *sp = span(t, 1, 0, name, start, dur, error, NULL, NULL);
	commit1(rs(service, NULL, &sp, 1));
}

/* ---- searching ---- */

static co_search_result run(co_search_query q)
{
	co_search_result r;
	tl_errmsg err = {{0}};
	int rc = co_search(S, &q, &Out, &r, &err);
	cr_assert_eq(rc, 0, "search: %s (%s)", tl_strerror(rc), err.msg);
	return r;
}

/* The result's trace numbers (the last two id bytes), in order, as "1,5,3". */
static const char *ids(const co_search_result *r)
{
	static char buf[1024];
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < r->n && o + 8 < sizeof(buf); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%u", i ? "," : "",
		                      (unsigned)r->traces[i].trace_id[14] << 8 | r->traces[i].trace_id[15]);
	return buf;
}

#define EXPECT(q, want)                                                                                                \
	do {                                                                                                           \
		co_search_result r_ = run(q);                                                                          \
		cr_expect_str_eq(ids(&r_), want, "%s:%d: got %s, want %s", __FILE__, __LINE__, ids(&r_), want);        \
		cr_expect(!r_.partial);                                                                                \
	} while (0)

/* ---- each index ---- */

Test(index, service_newest_first_and_one_entry_per_chunk)
{
	/* A trace of 50 spans of one service and two names: two or three entries, not 50. */
	tl_pb_span *sp[50];
	for (unsigned i = 0; i < 50; i++)
		sp[i] = span(1, i + 1, i ? 1 : 0, i % 2 ? "db.query" : "handle", T0 + i * MS, MS, false, NULL, NULL);
	commit1(rs("api", NULL, sp, 50));
	simple(2, "worker", "job", T0 + 5 * SEC, 10 * MS, false);
	simple(3, "api", "handle", T0 + 3 * SEC, 10 * MS, false);
	simple(4, "api", "handle", T0 + 9 * SEC, 10 * MS, false);
	co_index_counts c;
	cr_assert_eq(co_index_counts_get(S, &c), 0);
	cr_expect_eq(c.svc, 4, "ix_svc has %zu entries", c.svc);
	cr_expect_eq(c.dur, 8, "ix_dur: a service entry and an any entry per chunk, got %zu", c.dur);
	cr_expect_eq(c.op, 4, "ix_op: one block per service, time bucket and commit, got %zu", c.op);
	EXPECT(((co_search_query){.service = "api"}), "4,3,1");
	EXPECT(((co_search_query){.service = "worker"}), "2");
	EXPECT(((co_search_query){.service = "nobody"}), "");
	/* No filter at all: every trace, by the time index. */
	EXPECT(((co_search_query){0}), "4,2,3,1");
	co_search_result r = run((co_search_query){.service = "api"});
	cr_assert_eq(r.n, 3);
	cr_expect_eq(r.traces[2].span_count, 50);
	cr_expect_eq(r.traces[2].start_ns, T0);
	cr_expect_eq(r.traces[2].end_ns, T0 + 50 * MS);
	cr_expect_str_eq(r.traces[2].root_service, "api");
	cr_expect_str_eq(r.traces[2].root_name, "handle");
	cr_expect_gt(r.examined, 0);
}

Test(index, operation)
{
	tl_pb_span *sp[3] = {span(1, 1, 0, "POST /predict", T0, 50 * MS, false, NULL, NULL),
	                     span(1, 2, 1, "model.predict", T0 + MS, 40 * MS, false, NULL, NULL),
	                     span(1, 3, 1, "feature.get", T0 + 2 * MS, 5 * MS, false, NULL, NULL)};
	commit1(rs("serving", NULL, sp, 3));
	simple(2, "serving", "feature.get", T0 + SEC, MS, false);
	simple(3, "features", "feature.get", T0 + 2 * SEC, MS, false);
	EXPECT(((co_search_query){.service = "serving", .operation = "feature.get"}), "2,1");
	EXPECT(((co_search_query){.service = "serving", .operation = "model.predict"}), "1");
	EXPECT(((co_search_query){.service = "features", .operation = "model.predict"}), "");
	/* An operation without a service is checked on the spans. */
	EXPECT(((co_search_query){.operation = "feature.get"}), "3,2,1");
	/* A name differing only in length from an indexed one. */
	EXPECT(((co_search_query){.service = "serving", .operation = "feature.ge"}), "");
}

Test(index, error_only)
{
	simple(1, "a", "x", T0, MS, true);
	simple(2, "a", "x", T0 + SEC, MS, false);
	tl_pb_span *sp[2] = {span(3, 1, 0, "root", T0 + 2 * SEC, 9 * MS, false, NULL, NULL),
	                     span(3, 2, 1, "child", T0 + 2 * SEC + MS, MS, true, NULL, NULL)};
	commit1(rs("b", NULL, sp, 2));
	co_index_counts c;
	cr_assert_eq(co_index_counts_get(S, &c), 0);
	cr_expect_eq(c.err, 2);
	EXPECT(((co_search_query){.error_only = true}), "3,1");
	EXPECT(((co_search_query){.error_only = true, .service = "a"}), "1");
	/* The error must be on the span with the name. */
	EXPECT(((co_search_query){.error_only = true, .service = "b", .operation = "root"}), "");
	EXPECT(((co_search_query){.error_only = true, .service = "b", .operation = "child"}), "3");
}

Test(index, durations)
{
	simple(1, "a", "x", T0, 5 * MS, false);
	simple(2, "a", "x", T0 + SEC, 300 * MS, false);
	simple(3, "b", "x", T0 + 2 * SEC, 2 * SEC, false);
	simple(4, "b", "x", T0 + 3 * SEC, 250 * MS, false);
	/* A short root with one long child. */
	tl_pb_span *sp[2] = {span(5, 1, 0, "root", T0 + 4 * SEC, MS, false, NULL, NULL),
	                     span(5, 2, 1, "slow", T0 + 4 * SEC, 700 * MS, false, NULL, NULL)};
	commit1(rs("a", NULL, sp, 2));
	EXPECT(((co_search_query){.min_duration_ns = 250 * MS}), "5,4,3,2");
	EXPECT(((co_search_query){.min_duration_ns = 250 * MS, .service = "a"}), "5,2");
	EXPECT(((co_search_query){.min_duration_ns = 250 * MS, .max_duration_ns = SEC}), "5,4,2");
	EXPECT(((co_search_query){.max_duration_ns = 250 * MS}), "5,4,1");
	EXPECT(((co_search_query){.max_duration_ns = 250 * MS, .service = "a"}), "5,1");
	EXPECT(((co_search_query){.min_duration_ns = 3 * SEC}), "");
	/* min and max on ONE span: trace 5 has a 1 ms and a 700 ms span, none in [2 ms, 10 ms]. */
	EXPECT(((co_search_query){.min_duration_ns = 2 * MS, .max_duration_ns = 10 * MS}), "1");
	/* The longest span of an entry outside the bounds does not hide a shorter one inside them. */
	EXPECT(((co_search_query){.min_duration_ns = 500000, .max_duration_ns = 2 * MS}), "5");
}

Test(index, attributes_across_services_and_resources)
{
	tl_pb_span *a = span(1, 1, 0, "predict", T0, MS, false, kv_str("ml.prediction.id", "p-1"),
	                     kv_str("ml.model.version", "fraud:7"));
	commit1(rs("serving", NULL, &a, 1));
	tl_pb_span *b = span(2, 1, 0, "score", T0 + SEC, MS, false, kv_str("ml.model.version", "fraud:7"), NULL);
	commit1(rs("batch-scorer", NULL, &b, 1));
	/* A configured key on the resource, an integer and a boolean on spans. */
	tl_pb_span *c = span(3, 1, 0, "handle", T0 + 2 * SEC, MS, false, kv_int("retry.count", 42),
	                     kv_bool("customer.tier", true));
	commit1(rs("api", kv_str("customer.tier", "gold"), &c, 1));
	tl_pb_span *d = span(4, 1, 0, "handle", T0 + 3 * SEC, MS, false, NULL, NULL);
	commit1(rs("api", kv_str("customer.tier", "gold"), &d, 1));
	co_index_counts cnt;
	cr_assert_eq(co_index_counts_get(S, &cnt), 0);
	/* One block per key, time bucket and commit: 2 + 1 + 2 + 1. */
	cr_expect_eq(cnt.attr, 6, "%zu blocks", cnt.attr);

	co_search_attr pred = {"ml.prediction.id", "p-1"}, ver = {"ml.model.version", "fraud:7"};
	EXPECT(((co_search_query){.attrs = &pred, .n_attrs = 1}), "1");
	EXPECT(((co_search_query){.attrs = &ver, .n_attrs = 1}), "2,1");
	EXPECT(((co_search_query){.attrs = &ver, .n_attrs = 1, .service = "batch-scorer"}), "2");
	co_search_attr both[2] = {pred, ver};
	EXPECT(((co_search_query){.attrs = both, .n_attrs = 2}), "1");
	co_search_attr gold = {"customer.tier", "gold"}, tru = {"customer.tier", "true"}, n42 = {"retry.count", "42"};
	/* The span's own attribute wins over its resource's: trace 3's span says true. */
	EXPECT(((co_search_query){.attrs = &gold, .n_attrs = 1}), "4");
	EXPECT(((co_search_query){.attrs = &tru, .n_attrs = 1}), "3");
	EXPECT(((co_search_query){.attrs = &n42, .n_attrs = 1}), "3");
	co_search_attr n4 = {"retry.count", "4"}, none = {"ml.prediction.id", "p-2"};
	EXPECT(((co_search_query){.attrs = &n4, .n_attrs = 1}), "");
	EXPECT(((co_search_query){.attrs = &none, .n_attrs = 1}), "");
	/* A key that is not indexed is still searchable: the spans are read. */
	co_search_attr host = {"service.name", "api"};
	EXPECT(((co_search_query){.attrs = &host, .n_attrs = 1}), "4,3");
}

Test(index, conditions_hold_on_one_span)
{
	/* Trace 1: the error is on span 2 (db), the attribute on span 1 (api). */
	tl_pb_span *s1 = span(1, 1, 0, "handle", T0, 10 * MS, false, kv_str("ml.prediction.id", "p-9"), NULL);
	tl_pb_span *s2 = span(1, 2, 1, "query", T0 + MS, 5 * MS, true, NULL, NULL);
	tl_pb_resource_spans *r[2] = {rs("api", NULL, &s1, 1), rs("db", NULL, &s2, 1)};
	commit(r, 2);
	co_search_attr pred = {"ml.prediction.id", "p-9"};
	EXPECT(((co_search_query){.attrs = &pred, .n_attrs = 1}), "1");
	EXPECT(((co_search_query){.attrs = &pred, .n_attrs = 1, .error_only = true}), "");
	EXPECT(((co_search_query){.service = "db", .error_only = true}), "1");
	EXPECT(((co_search_query){.service = "api", .error_only = true}), "");
	EXPECT(((co_search_query){.service = "api", .operation = "query"}), "");
	EXPECT(((co_search_query){.service = "db", .min_duration_ns = 6 * MS}), "");
	EXPECT(((co_search_query){.service = "api", .min_duration_ns = 6 * MS}), "1");
}

Test(index, time_range_on_span_starts)
{
	/* Trace 1 starts at T0 and has a late span at T0 + 10 s in another service. */
	tl_pb_span *a = span(1, 1, 0, "root", T0, 11 * SEC, false, NULL, NULL);
	tl_pb_span *b = span(1, 2, 1, "late", T0 + 10 * SEC, MS, true, NULL, NULL);
	tl_pb_resource_spans *r[2] = {rs("api", NULL, &a, 1), rs("worker", NULL, &b, 1)};
	commit(r, 2);
	simple(2, "api", "root", T0 + 5 * SEC, MS, false);
	simple(3, "api", "root", T0 + 20 * SEC, MS, true);
	EXPECT(((co_search_query){.service = "api", .from_ns = T0 + SEC, .to_ns = T0 + 20 * SEC}), "2");
	EXPECT(((co_search_query){.service = "api", .from_ns = T0 + 5 * SEC}), "3,2");
	EXPECT(((co_search_query){.service = "api", .to_ns = T0 + 5 * SEC}), "1");
	EXPECT(((co_search_query){.service = "api", .to_ns = T0 + 5 * SEC + 1}), "2,1");
	/* The late span counts for trace 1 even though the trace started before `from`. */
	EXPECT(((co_search_query){.service = "worker", .from_ns = T0 + 9 * SEC, .to_ns = T0 + 11 * SEC}), "1");
	EXPECT(((co_search_query){.error_only = true, .from_ns = T0 + 9 * SEC, .to_ns = T0 + 11 * SEC}), "1");
	EXPECT(((co_search_query){.error_only = true, .from_ns = T0 + 11 * SEC}), "3");
	EXPECT(((co_search_query){.from_ns = T0 + 4 * SEC, .to_ns = T0 + 6 * SEC}), "2");
	/* One span whose range straddles a narrow window: checked on the spans. */
	tl_pb_span *c[2] = {span(4, 1, 0, "x", T0 + 100 * SEC, MS, false, NULL, NULL),
	                    span(4, 2, 1, "x", T0 + 100 * SEC + 500 * MS, MS, false, NULL, NULL)};
	commit1(rs("edge", NULL, c, 2));
	EXPECT(((co_search_query){
	               .service = "edge", .from_ns = T0 + 100 * SEC + MS, .to_ns = T0 + 100 * SEC + 400 * MS}),
	       "");
	EXPECT(((co_search_query){
	               .service = "edge", .from_ns = T0 + 100 * SEC + MS, .to_ns = T0 + 100 * SEC + 501 * MS}),
	       "4");
}

Test(index, limit_keeps_the_newest_by_trace_start)
{
	/* 30 traces committed in shuffled time order. */
	for (unsigned i = 0; i < 30; i++) {
		unsigned k = (i * 7) % 30;
		tl_pb_span *sp = span(k + 1, 1, 0, "h", T0 + k * 300 * MS, (k + 1) * MS, k % 2 == 0,
		                      kv_str("ml.model.version", "m:1"), NULL);
		commit1(rs("api", NULL, &sp, 1));
	}
	co_search_attr m1 = {"ml.model.version", "m:1"};
	EXPECT(((co_search_query){.attrs = &m1, .n_attrs = 1, .limit = 4}), "30,29,28,27");
	EXPECT(((co_search_query){.min_duration_ns = 10 * MS, .limit = 3}), "30,29,28");
	EXPECT(((co_search_query){.min_duration_ns = 10 * MS, .service = "api", .limit = 3}), "30,29,28");
	EXPECT(((co_search_query){.min_duration_ns = 10 * MS, .max_duration_ns = 12 * MS}), "12,11,10");
	EXPECT(((co_search_query){.error_only = true, .limit = 3}), "29,27,25");
	EXPECT(((co_search_query){.service = "api", .limit = 5}), "30,29,28,27,26");
	EXPECT(((co_search_query){.limit = 3}), "30,29,28");
	EXPECT(((co_search_query){.service = "api", .operation = "h", .limit = 2}), "30,29");
	co_search_result r = run((co_search_query){.service = "api"});
	cr_expect_eq(r.n, CO_SEARCH_LIMIT_DEFAULT);
	/* A trace whose matching span is late but which started early sorts by its start. */
	tl_pb_span *sp[2] = {span(99, 1, 0, "root", T0 - 60 * SEC, 70 * SEC, false, NULL, NULL),
	                     span(99, 2, 1, "late", T0 + 60 * SEC, MS, false, NULL, NULL)};
	commit1(rs("api", NULL, sp, 2));
	EXPECT(((co_search_query){.service = "api", .limit = 2}), "30,29");
	EXPECT(((co_search_query){.service = "api", .limit = 31}),
	       "30,29,28,27,26,25,24,23,22,21,20,19,18,17,16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,1,99");
}

Test(index, partial_when_max_examined_is_reached)
{
	for (unsigned i = 0; i < 40; i++)
		simple(i + 1, "api", "h", T0 + i * 2 * SEC, MS, i % 10 == 0);
	co_search_result r = run((co_search_query){.service = "api", .max_examined = 5});
	cr_expect(r.partial);
	cr_expect_eq(r.examined, 5);
	cr_expect_str_eq(ids(&r), "40,39,38,37,36");
	/* Errors are rare: 5 entries of the error index are all 4 errors. */
	r = run((co_search_query){.error_only = true, .max_examined = 5});
	cr_expect(!r.partial);
	cr_expect_str_eq(ids(&r), "31,21,11,1");
	/* Checked on the spans (operation without service): the budget still holds. */
	r = run((co_search_query){.operation = "h", .max_examined = 3});
	cr_expect(r.partial);
	cr_expect_eq(r.n, 3);
	/* Enough budget: complete. */
	r = run((co_search_query){.service = "api", .limit = 40, .max_examined = 40});
	cr_expect(!r.partial);
	cr_expect_eq(r.n, 40);
}

static char *repeat(char c, size_t n, const char *tail)
{
	char *s = az(n + strlen(tail) + 1);
	memset(s, c, n);
	strcpy(s + n, tail);
	return s;
}

Test(index, long_values_by_prefix_then_verified)
{
	char *v1 = repeat('x', 200, "-one"), *v2 = repeat('x', 200, "-two"), *v128 = repeat('y', 128, "");
	char *long_svc = repeat('s', 150, "-a"), *long_svc2 = repeat('s', 150, "-b");
	tl_pb_span *a = span(1, 1, 0, "op", T0, MS, false, kv_str("ml.prediction.id", v1), NULL);
	commit1(rs(long_svc, NULL, &a, 1));
	tl_pb_span *b = span(2, 1, 0, "op", T0 + SEC, MS, false, kv_str("ml.prediction.id", v2), NULL);
	commit1(rs(long_svc2, NULL, &b, 1));
	tl_pb_span *c = span(3, 1, 0, "op", T0 + 2 * SEC, MS, false, kv_str("ml.prediction.id", v128), NULL);
	commit1(rs("svc", NULL, &c, 1));
	co_search_attr q1 = {"ml.prediction.id", v1}, q2 = {"ml.prediction.id", v2}, q3 = {"ml.prediction.id", v128};
	EXPECT(((co_search_query){.attrs = &q1, .n_attrs = 1}), "1");
	EXPECT(((co_search_query){.attrs = &q2, .n_attrs = 1}), "2");
	EXPECT(((co_search_query){.attrs = &q3, .n_attrs = 1}), "3");
	co_search_attr q4 = {"ml.prediction.id", repeat('x', 200, "")};
	EXPECT(((co_search_query){.attrs = &q4, .n_attrs = 1}), "");
	EXPECT(((co_search_query){.service = long_svc}), "1");
	EXPECT(((co_search_query){.service = long_svc2}), "2");
	EXPECT(((co_search_query){.service = long_svc2, .operation = "op"}), "2");
	EXPECT(((co_search_query){.service = long_svc, .min_duration_ns = 1}), "1");
	/* The catalog keeps the first 128 bytes of a service name. */
	const char **names;
	size_t n;
	cr_assert_eq(co_index_services(S, &Out, &names, &n), 0);
	cr_assert_eq(n, 2, "%zu services", n);
	cr_expect_eq(strlen(names[0]), 128);
	cr_expect_str_eq(names[1], "svc");
}

Test(index, traces_in_several_batches)
{
	/* Trace 1 arrives in three batches: api root, then db (error) with an attribute, then api again. */
	tl_pb_span *a = span(1, 1, 0, "handle", T0, 100 * MS, false, NULL, NULL);
	commit1(rs("api", NULL, &a, 1));
	simple(2, "api", "handle", T0 + SEC, MS, false);
	tl_pb_span *b = span(1, 2, 1, "query", T0 + 10 * MS, 50 * MS, true, kv_str("ml.model.version", "v3"), NULL);
	commit1(rs("db", NULL, &b, 1));
	tl_pb_span *c = span(1, 3, 1, "render", T0 + 70 * MS, 10 * MS, false, NULL, NULL);
	commit1(rs("api", NULL, &c, 1));
	co_search_result r = run((co_search_query){.service = "api"});
	cr_assert_str_eq(ids(&r), "2,1"); /* trace 1 once, though two chunks name api */
	cr_expect_eq(r.traces[1].span_count, 3);
	cr_expect_eq(r.traces[1].chunk_count, 3);
	cr_expect_eq(r.traces[1].error_count, 1);
	co_search_attr v3 = {"ml.model.version", "v3"};
	EXPECT(((co_search_query){.attrs = &v3, .n_attrs = 1, .error_only = true, .service = "db"}), "1");
	EXPECT(((co_search_query){.attrs = &v3, .n_attrs = 1, .service = "api"}), "");
	EXPECT(((co_search_query){.service = "api", .operation = "render"}), "1");
	EXPECT(((co_search_query){.min_duration_ns = 40 * MS, .service = "db"}), "1");
	/* A late chunk with an earlier span moves the trace's start. */
	tl_pb_span *d = span(1, 4, 0, "early", T0 - 5 * SEC, MS, false, NULL, NULL);
	commit1(rs("cron", NULL, &d, 1));
	r = run((co_search_query){.service = "api"});
	cr_assert_eq(r.n, 2);
	cr_expect_eq(r.traces[1].start_ns, T0 - 5 * SEC);
	EXPECT(((co_search_query){.service = "cron"}), "1");
}

Test(index, catalog)
{
	tl_pb_span *sp[4] = {span(1, 1, 0, "GET /a", T0, MS, false, NULL, NULL),
	                     span(1, 2, 1, "GET /a", T0 + MS, MS, false, NULL, NULL),
	                     span(1, 3, 1, "SELECT", T0 + 2 * MS, MS, false, NULL, NULL),
	                     span(1, 4, 1, "", T0 + 3 * MS, MS, false, NULL, NULL)};
	commit1(rs("web", NULL, sp, 4));
	simple(2, "db", "SELECT", T0 + SEC, MS, false);
	simple(3, NULL, "orphan", T0 + 2 * SEC, MS, false);
	simple(4, "apple", "x", T0 + 3 * SEC, MS, false);
	const char **names;
	size_t n;
	cr_assert_eq(co_index_services(S, &Out, &names, &n), 0);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(names[0], "apple");
	cr_expect_str_eq(names[1], "db");
	cr_expect_str_eq(names[2], "web");
	co_operation *ops;
	cr_assert_eq(co_index_operations(S, "web", -1, &Out, &ops, &n), 0);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(ops[0].name, "GET /a");
	cr_expect_eq(ops[0].kind, 2);
	cr_expect_str_eq(ops[1].name, "GET /a");
	cr_expect_eq(ops[1].kind, 3);
	cr_expect_str_eq(ops[2].name, "SELECT");
	cr_assert_eq(co_index_operations(S, "web", 2, &Out, &ops, &n), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(ops[0].name, "GET /a");
	cr_assert_eq(co_index_operations(S, "nobody", -1, &Out, &ops, &n), 0);
	cr_expect_eq(n, 0);
	cr_assert_eq(co_index_operations(S, "", -1, &Out, &ops, &n), 0);
	cr_expect_eq(n, 0);
	/* Seen again: no new entries. */
	simple(5, "web", "GET /a", T0 + 10 * SEC, MS, false);
	co_index_counts c;
	cr_assert_eq(co_index_counts_get(S, &c), 0);
	cr_expect_eq(c.cat, 5);
}

Test(index, dependencies_across_chunks)
{
	/* Trace 1: gateway -> api (same batch), api -> db (the db span arrives later). */
	tl_pb_span *g = span(1, 1, 0, "in", T0, 50 * MS, false, NULL, NULL);
	tl_pb_span *a[2] = {span(1, 2, 1, "handle", T0 + MS, 40 * MS, false, NULL, NULL),
	                    span(1, 3, 2, "local", T0 + 2 * MS, MS, false, NULL, NULL)};
	tl_pb_resource_spans *r[2] = {rs("gateway", NULL, &g, 1), rs("api", NULL, a, 2)};
	commit(r, 2);
	tl_pb_span *d = span(1, 4, 2, "query", T0 + 3 * MS, 5 * MS, false, NULL, NULL);
	commit1(rs("db", NULL, &d, 1));
	/* Trace 2, much later: api -> db twice; an orphan whose parent never arrived. */
	tl_pb_span *b[3] = {span(2, 1, 0, "handle", T0 + 60 * SEC, 10 * MS, false, NULL, NULL),
	                    span(2, 2, 99, "orphan", T0 + 60 * SEC, MS, false, NULL, NULL), NULL};
	tl_pb_span *e[2] = {span(2, 3, 1, "q1", T0 + 60 * SEC + MS, MS, false, NULL, NULL),
	                    span(2, 4, 1, "q2", T0 + 60 * SEC + 2 * MS, MS, false, NULL, NULL)};
	tl_pb_resource_spans *r2[2] = {rs("api", NULL, b, 2), rs("db", NULL, e, 2)};
	commit(r2, 2);
	co_dependency *deps;
	size_t n;
	bool partial;
	cr_assert_eq(co_index_dependencies(S, 0, 0, 0, &Out, &deps, &n, &partial), 0);
	cr_assert_eq(n, 2);
	cr_expect(!partial);
	cr_expect_str_eq(deps[0].parent, "api");
	cr_expect_str_eq(deps[0].child, "db");
	cr_expect_eq(deps[0].calls, 3);
	cr_expect_str_eq(deps[1].parent, "gateway");
	cr_expect_str_eq(deps[1].child, "api");
	cr_expect_eq(deps[1].calls, 1);
	/* The window holds trace 2 only. */
	cr_assert_eq(co_index_dependencies(S, T0 + 30 * SEC, T0 + 90 * SEC, 0, &Out, &deps, &n, &partial), 0);
	cr_assert_eq(n, 1);
	cr_expect_eq(deps[0].calls, 2);
	/* At most one trace read, the newest: partial. */
	cr_assert_eq(co_index_dependencies(S, 0, 0, 1, &Out, &deps, &n, &partial), 0);
	cr_expect(partial);
	cr_assert_eq(n, 1);
	cr_expect_eq(deps[0].calls, 2);
	cr_assert_eq(co_index_dependencies(S, T0 + 100 * SEC, 0, 0, &Out, &deps, &n, &partial), 0);
	cr_expect_eq(n, 0);
}

Test(index, bad_queries)
{
	simple(1, "a", "x", T0, MS, false);
	co_search_result r;
	tl_errmsg err = {{0}};
	co_search_query q = {.from_ns = T0 + SEC, .to_ns = T0};
	cr_expect_eq(co_search(S, &q, &Out, &r, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "from_unix_nano") != NULL, "%s", err.msg);
	q = (co_search_query){.min_duration_ns = 2 * MS, .max_duration_ns = MS};
	cr_expect_eq(co_search(S, &q, &Out, &r, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "min_duration_nano") != NULL, "%s", err.msg);
	co_search_attr empty = {"", "x"};
	q = (co_search_query){.attrs = &empty, .n_attrs = 1};
	cr_expect_eq(co_search(S, &q, &Out, &r, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "attrs[0]") != NULL, "%s", err.msg);
	/* Edge values that are fine: an empty window, a huge limit (cut), a NULL value (""). */
	EXPECT(((co_search_query){.from_ns = T0, .to_ns = T0}), "");
	r = run((co_search_query){.limit = 1000000});
	cr_expect_eq(r.n, 1);
	co_search_attr nul = {"ml.model.version", NULL};
	EXPECT(((co_search_query){.attrs = &nul, .n_attrs = 1}), "");
	/* The arena's cap. */
	tl_arena tiny;
	tl_arena_init(&tiny, 64, 64);
	q = (co_search_query){0};
	cr_expect_eq(co_search(S, &q, &tiny, &r, &err), TL_ELIMIT);
	tl_arena_fini(&tiny);
}

Test(index, configured_keys_are_checked)
{
	co_store_close(S);
	const char *many[CO_INDEX_ATTR_KEYS_MAX + 1];
	char names[CO_INDEX_ATTR_KEYS_MAX + 1][16];
	for (int i = 0; i <= CO_INDEX_ATTR_KEYS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i);
		many[i] = names[i];
	}
	co_store_opts o = {.dir = dir, .index_attrs = many, .n_index_attrs = CO_INDEX_ATTR_KEYS_MAX + 1};
	tl_errmsg err = {{0}};
	S = NULL;
	cr_expect_eq(co_store_open(&o, &S, &err), TL_EINVALID);
	cr_expect_null(S);
	const char *empty[1] = {""};
	o = (co_store_opts){.dir = dir, .index_attrs = empty, .n_index_attrs = 1};
	cr_expect_eq(co_store_open(&o, &S, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "empty") != NULL, "%s", err.msg);
	/* The most keys, repeats ignored: fine. */
	o = (co_store_opts){.dir = dir, .index_attrs = many, .n_index_attrs = CO_INDEX_ATTR_KEYS_MAX};
	cr_assert_eq(co_store_open(&o, &S, &err), 0, "%s", err.msg);
	tl_pb_span *sp = span(1, 1, 0, "x", T0, MS, false, kv_str("k31", "v"), kv_str("k5", "w"));
	commit1(rs("a", NULL, &sp, 1));
	co_search_attr a = {"k31", "v"}, b = {"k5", "w"};
	EXPECT(((co_search_query){.attrs = &a, .n_attrs = 1}), "1");
	EXPECT(((co_search_query){.attrs = &b, .n_attrs = 1}), "1");
}

Test(index, survives_reopen_and_map_growth)
{
	/* A small map: the commits below grow it, retrying with the gathered blocks redone. */
	co_store_close(S);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/tl_index_XXXXXX")));
	S = open_store(256 << 10);
	char pid[32];
	for (unsigned t = 1; t <= 40; t++) {
		tl_pb_span *sp[20];
		for (unsigned i = 0; i < 20; i++) {
			snprintf(pid, sizeof(pid), "p-%u-%u", t, i);
			sp[i] = span(t, i + 1, i ? 1 : 0, "op", T0 + t * SEC + i * MS, MS, false,
			             kv_str("ml.prediction.id", pid), kv_str("retry.count", "payload payload payload"));
		}
		commit1(rs("svc", NULL, sp, 20));
	}
	cr_expect_gt(co_store_map_size(S), (size_t)256 << 10);
	co_search_attr q = {"ml.prediction.id", "p-17-12"};
	EXPECT(((co_search_query){.attrs = &q, .n_attrs = 1}), "17");
	co_index_counts c;
	cr_assert_eq(co_index_counts_get(S, &c), 0);
	cr_expect_eq(c.attr, 80, "two keys, one block each per commit: %zu", c.attr);
	co_store_close(S);
	S = open_store(0);
	EXPECT(((co_search_query){.attrs = &q, .n_attrs = 1}), "17");
	EXPECT(((co_search_query){.service = "svc", .limit = 2}), "40,39");
}

/* ---- the trace_search query ---- */

static tl_pb_query_resp ask(tl_pb_trace_search *ts)
{
	tl_pb_query_req req;
	threadline__v1__query_request__init(&req);
	req.version = 1;
	req.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_SEARCH;
	req.trace_search = ts;
	size_t len = threadline__v1__query_request__get_packed_size(&req);
	uint8_t *buf = az(len);
	threadline__v1__query_request__pack(&req, buf);
	tl_pb_query_resp resp;
	co_query_answer(S, buf, len, &Out, &resp);
	return resp;
}

Test(index, query_answers_json)
{
	tl_pb_span *sp[2] = {span(1, 1, 0, "POST /predict", T0, 30 * MS, false, NULL, NULL),
	                     span(1, 2, 1, "model", T0 + MS, 20 * MS, true, kv_str("ml.prediction.id", "p-1"), NULL)};
	commit1(rs("serving", NULL, sp, 2));
	tl_pb_span *orphan = span(2, 5, 4, "late", T0 + SEC, MS, false, kv_str("ml.prediction.id", "p-1"), NULL);
	commit1(rs("serving", NULL, &orphan, 1));

	tl_pb_trace_search ts;
	threadline__v1__trace_search__init(&ts);
	tl_pb_trace_search_attr at;
	threadline__v1__trace_search__attr__init(&at);
	at.key = "ml.prediction.id";
	at.value = "p-1";
	tl_pb_trace_search_attr *atp = &at;
	ts.attrs = &atp;
	ts.n_attrs = 1;
	tl_pb_query_resp resp = ask(&ts);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	cr_assert_not_null(resp.json);
	json_error_t je;
	json_t *doc = json_loads(resp.json, 0, &je);
	cr_assert_not_null(doc, "%s: %s", resp.json, je.text);
	json_t *tr = json_object_get(doc, "traces");
	cr_assert(json_is_array(tr));
	cr_assert_eq(json_array_size(tr), 2);
	json_t *t2 = json_array_get(tr, 0), *t1 = json_array_get(tr, 1);
	uint8_t id[16];
	char hex[33];
	tid_bytes(1, id);
	tl_hex_encode(id, 16, hex);
	cr_expect_str_eq(json_string_value(json_object_get(t1, "trace_id")), hex);
	cr_expect_str_eq(json_string_value(json_object_get(t1, "root_service")), "serving");
	cr_expect_str_eq(json_string_value(json_object_get(t1, "root_name")), "POST /predict");
	cr_expect_eq(strtoull(json_string_value(json_object_get(t1, "start_unix_nano")), NULL, 10), T0);
	cr_expect_eq(strtoull(json_string_value(json_object_get(t1, "end_unix_nano")), NULL, 10), T0 + 30 * MS);
	cr_expect_eq(strtoull(json_string_value(json_object_get(t1, "duration_nano")), NULL, 10), 30 * MS);
	cr_expect_eq(json_integer_value(json_object_get(t1, "span_count")), 2);
	cr_expect_eq(json_integer_value(json_object_get(t1, "error_count")), 1);
	cr_expect(json_is_null(json_object_get(t2, "root_service")));
	cr_expect(json_is_null(json_object_get(t2, "root_name")));
	cr_expect(json_is_integer(json_object_get(doc, "examined")));
	cr_expect(json_is_false(json_object_get(doc, "partial")));
	json_decref(doc);

	/* Conditions travel: error + service + limit. */
	ts.n_attrs = 0;
	ts.error_only = true;
	ts.service = "serving";
	ts.limit = 1;
	resp = ask(&ts);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	cr_expect(strstr(resp.json, hex) != NULL, "%s", resp.json);

	/* Bad values are TL_EINVALID with the field named. */
	threadline__v1__trace_search__init(&ts);
	ts.from_unix_nano = 10;
	ts.to_unix_nano = 5;
	resp = ask(&ts);
	cr_expect_eq(resp.code, TL_EINVALID);
	cr_expect(strstr(resp.error, "from_unix_nano") != NULL, "%s", resp.error);
	threadline__v1__trace_search__init(&ts);
	tl_pb_trace_search_attr *many[40];
	for (int i = 0; i < 40; i++)
		many[i] = &at;
	ts.attrs = many;
	ts.n_attrs = 40;
	resp = ask(&ts);
	cr_expect_eq(resp.code, TL_EINVALID);
	cr_expect(strstr(resp.error, "attrs") != NULL, "%s", resp.error);
}
