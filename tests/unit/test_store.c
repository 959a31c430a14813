/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's store on a real LMDB in a temporary directory: batches in,
 * traces out field by field, resources stored once, dedupe, map growth,
 * reopening, stale readers, undecodable batches; and one end-to-end run of
 * writer + intake + query over nng on loopback.
 */
#include "co_index.h"
#include "co_intake.h"
#include "co_query.h"
#include "co_store.h"
#include "co_writer.h"
#include "tl_arena.h"
#include "tl_otlp.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <lmdb.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fixtures ---- */

static char dir[64];
static tl_arena A; /* test data */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tl_store_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	tl_arena_init(&A, 64 << 10, 0);
}

static void teardown(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	tl_arena_fini(&A);
}

static co_store *open_store(size_t map_size)
{
	co_store_opts o = {.dir = dir, .map_size = map_size};
	co_store *s = NULL;
	tl_errmsg err = {{0}};
	int rc = co_store_open(&o, &s, &err);
	cr_assert_eq(rc, 0, "open: %s (%s)", tl_strerror(rc), err.msg);
	return s;
}

/* ---- building OTLP data ---- */

static void *az(size_t n)
{
	void *p = tl_arena_alloc(&A, n);
	cr_assert_not_null(p);
	memset(p, 0, n);
	return p;
}

static char *as(const char *s)
{
	return tl_arena_strndup(&A, s, strlen(s));
}

static ProtobufCBinaryData id_bytes(uint8_t v, size_t n)
{
	uint8_t *p = az(n);
	memset(p, v, n);
	p[n - 1] = (uint8_t)(v + 1); /* not all equal, never all zero */
	return (ProtobufCBinaryData){n, p};
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
	tl_pb_keyvalue *kv = az(sizeof(*kv));
	opentelemetry__proto__common__v1__key_value__init(kv);
	kv->key = as(k);
	kv->value = az(sizeof(tl_pb_anyvalue));
	opentelemetry__proto__common__v1__any_value__init(kv->value);
	kv->value->value_case = TL_PB_ANY_INT;
	kv->value->int_value = v;
	return kv;
}

/* A span of trace t with id s (parent p, 0 = root); rich fields so round trips prove something. */
static tl_pb_span *mk_span(uint8_t t, uint8_t s, uint8_t p, const char *name, uint64_t start, uint64_t end, bool error)
{
	tl_pb_span *sp = az(sizeof(*sp));
	opentelemetry__proto__trace__v1__span__init(sp);
	sp->trace_id = id_bytes(t, 16);
	sp->span_id = id_bytes(s, 8);
	if (p != 0)
		sp->parent_span_id = id_bytes(p, 8);
	sp->name = as(name);
	sp->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
	sp->start_time_unix_nano = start;
	sp->end_time_unix_nano = end;
	sp->trace_state = as("vendor=1");
	sp->flags = 0x101;
	sp->n_attributes = 2;
	sp->attributes = az(2 * sizeof(*sp->attributes));
	sp->attributes[0] = kv_str("ml.model.name", name);
	sp->attributes[1] = kv_int("rows", (int64_t)s * 1000);
	sp->dropped_attributes_count = 3;
	sp->n_events = 1;
	sp->events = az(sizeof(*sp->events));
	sp->events[0] = az(sizeof(tl_pb_event));
	opentelemetry__proto__trace__v1__span__event__init(sp->events[0]);
	sp->events[0]->name = as("checkpoint");
	sp->events[0]->time_unix_nano = start + 1;
	sp->n_links = 1;
	sp->links = az(sizeof(*sp->links));
	sp->links[0] = az(sizeof(tl_pb_link));
	opentelemetry__proto__trace__v1__span__link__init(sp->links[0]);
	sp->links[0]->trace_id = id_bytes(0x77, 16);
	sp->links[0]->span_id = id_bytes(0x78, 8);
	sp->status = az(sizeof(tl_pb_status));
	opentelemetry__proto__trace__v1__status__init(sp->status);
	sp->status->code = error ? TL_PB_STATUS_ERROR : TL_PB_STATUS_OK;
	sp->status->message = as(error ? "boom" : "");
	return sp;
}

static tl_pb_resource_spans *mk_rs(const char *service, const char *scope, tl_pb_span **spans, size_t n)
{
	tl_pb_resource_spans *rs = az(sizeof(*rs));
	opentelemetry__proto__trace__v1__resource_spans__init(rs);
	rs->resource = az(sizeof(tl_pb_resource));
	opentelemetry__proto__resource__v1__resource__init(rs->resource);
	rs->resource->n_attributes = 2;
	rs->resource->attributes = az(2 * sizeof(tl_pb_keyvalue *));
	rs->resource->attributes[0] = kv_str("service.name", service);
	rs->resource->attributes[1] = kv_str("host.name", "node-1");
	rs->schema_url = as("https://opentelemetry.io/schemas/1.21.0");
	rs->n_scope_spans = 1;
	rs->scope_spans = az(sizeof(tl_pb_scope_spans *));
	tl_pb_scope_spans *ss = az(sizeof(*ss));
	opentelemetry__proto__trace__v1__scope_spans__init(ss);
	ss->scope = az(sizeof(tl_pb_scope));
	opentelemetry__proto__common__v1__instrumentation_scope__init(ss->scope);
	ss->scope->name = as(scope);
	ss->scope->version = as("1.0");
	ss->schema_url = as("");
	ss->spans = spans;
	ss->n_spans = n;
	rs->scope_spans[0] = ss;
	return rs;
}

static tl_pb_export_req *mk_req(tl_pb_resource_spans **rs, size_t n)
{
	tl_pb_export_req *r = az(sizeof(*r));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(r);
	r->resource_spans = rs;
	r->n_resource_spans = n;
	return r;
}

static uint8_t *pack_msg(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = az(*len ? *len : 1);
	protobuf_c_message_pack(m, b);
	return b;
}

/* Encodes a wire Batch of one record per request (plus an optional lineage record). */
static uint8_t *mk_batch(uint8_t agent, uint64_t seq, tl_pb_export_req **reqs, size_t n, const char *lineage,
                         size_t *len)
{
	tl_pb_batch b = THREADLINE__V1__BATCH__INIT;
	b.agent_id = id_bytes(agent, 16);
	b.seq = seq;
	size_t nr = n + (lineage != NULL);
	b.records = az(nr * sizeof(*b.records));
	b.n_records = nr;
	for (size_t i = 0; i < n; i++) {
		tl_pb_record *r = az(sizeof(*r));
		threadline__v1__record__init(r);
		r->accepted_unix_nano = 1000 + i;
		r->body_case = THREADLINE__V1__RECORD__BODY_OTLP_TRACES;
		r->otlp_traces.data = pack_msg(&reqs[i]->base, &r->otlp_traces.len);
		b.records[i] = r;
	}
	if (lineage != NULL) {
		tl_pb_record *r = az(sizeof(*r));
		threadline__v1__record__init(r);
		r->body_case = THREADLINE__V1__RECORD__BODY_OPENLINEAGE_JSON;
		r->openlineage_json.data = (uint8_t *)as(lineage);
		r->openlineage_json.len = strlen(lineage);
		b.records[n] = r;
	}
	return pack_msg(&b.base, len);
}

static co_batch *decode(const uint8_t *buf, size_t len)
{
	co_batch *b = az(sizeof(*b));
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	tl_errmsg err = {{0}};
	int rc = co_batch_decode(buf, len, &lim, &A, b, &err);
	cr_assert_eq(rc, 0, "decode: %s", err.msg);
	return b;
}

/* One request as one decoded batch. */
static co_batch *batch_of(uint8_t agent, uint64_t seq, tl_pb_export_req *r)
{
	size_t len;
	uint8_t *w = mk_batch(agent, seq, &r, 1, NULL, &len);
	return decode(w, len);
}

static void commit1(co_store *s, co_batch *b, enum co_batch_status want)
{
	int rc = co_store_commit(s, &b, 1, 42);
	cr_assert_eq(rc, 0, "commit: %s", tl_strerror(rc));
	cr_assert_eq(b->status, want, "status %d, want %d", b->status, want);
}

/* Finds span with id s (first byte) in a result; NULL if absent. Also returns its resource and scope. */
static const tl_pb_span *find_span(const tl_pb_trace_result *tr, uint8_t s, const tl_pb_resource_spans **rs_out,
                                   const tl_pb_scope_spans **ss_out)
{
	for (size_t i = 0; i < tr->n_resource_spans; i++)
		for (size_t j = 0; j < tr->resource_spans[i]->n_scope_spans; j++) {
			const tl_pb_scope_spans *ss = tr->resource_spans[i]->scope_spans[j];
			for (size_t k = 0; k < ss->n_spans; k++)
				if (ss->spans[k]->span_id.len == 8 && ss->spans[k]->span_id.data[0] == s) {
					if (rs_out)
						*rs_out = tr->resource_spans[i];
					if (ss_out)
						*ss_out = ss;
					return ss->spans[k];
				}
		}
	return NULL;
}

static size_t count_spans(const tl_pb_trace_result *tr)
{
	size_t n = 0;
	for (size_t i = 0; i < tr->n_resource_spans; i++)
		for (size_t j = 0; j < tr->resource_spans[i]->n_scope_spans; j++)
			n += tr->resource_spans[i]->scope_spans[j]->n_spans;
	return n;
}

static void assert_same_msg(const ProtobufCMessage *a, const ProtobufCMessage *b, const char *what)
{
	size_t la, lb;
	uint8_t *pa = pack_msg(a, &la), *pb = pack_msg(b, &lb);
	cr_assert_eq(la, lb, "%s: encoded sizes differ (%zu vs %zu)", what, la, lb);
	cr_assert_eq(memcmp(pa, pb, la), 0, "%s: encodings differ", what);
}

static const char *res_service(const tl_pb_resource_spans *rs)
{
	cr_assert_not_null(rs->resource);
	for (size_t i = 0; i < rs->resource->n_attributes; i++)
		if (strcmp(rs->resource->attributes[i]->key, "service.name") == 0)
			return rs->resource->attributes[i]->value->string_value;
	return NULL;
}

/* ---- the store ---- */

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

Test(store, round_trip_across_batches)
{
	co_store *s = open_store(0);
	/* Batch 1: trace 0x10 (root + child) from ingest, trace 0x20 from features. */
	tl_pb_span *a1 = mk_span(0x10, 1, 0, "ingest", 2000, 9000, false);
	tl_pb_span *a2 = mk_span(0x10, 2, 1, "load", 2100, 3000, false);
	tl_pb_span *b1 = mk_span(0x20, 3, 0, "features", 5000, 6000, false);
	tl_pb_span **sp1 = az(2 * sizeof(*sp1));
	sp1[0] = a1;
	sp1[1] = a2;
	tl_pb_span **sp2 = az(sizeof(*sp2));
	sp2[0] = b1;
	tl_pb_resource_spans **rs1 = az(2 * sizeof(*rs1));
	rs1[0] = mk_rs("ingest", "etl", sp1, 2);
	rs1[1] = mk_rs("features", "etl", sp2, 1);
	tl_pb_export_req *r1 = mk_req(rs1, 2);
	size_t len;
	uint8_t *w1 = mk_batch(1, 1, &r1, 1, NULL, &len);
	commit1(s, decode(w1, len), CO_BATCH_OK);

	/* Batch 2: more of trace 0x10, from the same ingest resource and from predict
	 * (with an error, and an earlier start). */
	tl_pb_span *a3 = mk_span(0x10, 4, 1, "write", 3000, 4000, false);
	tl_pb_span *a4 = mk_span(0x10, 5, 1, "predict", 1500, 9500, true);
	tl_pb_span **sp3 = az(sizeof(*sp3));
	sp3[0] = a3;
	tl_pb_span **sp4 = az(sizeof(*sp4));
	sp4[0] = a4;
	tl_pb_resource_spans **rs2 = az(2 * sizeof(*rs2));
	rs2[0] = mk_rs("predict", "serve", sp4, 1);
	rs2[1] = mk_rs("ingest", "etl", sp3, 1);
	tl_pb_export_req *r2 = mk_req(rs2, 2);
	uint8_t *w2 = mk_batch(1, 2, &r2, 1, NULL, &len);
	co_batch *b2 = decode(w2, len);
	commit1(s, b2, CO_BATCH_OK);
	cr_assert_eq(b2->spans_stored, 2);

	tl_arena out;
	tl_arena_init(&out, 4096, 0);
	tl_pb_trace_result *tr = NULL;
	uint8_t tid[16];
	memcpy(tid, id_bytes(0x10, 16).data, 16);
	cr_assert_eq(co_store_get_trace(s, tid, &out, &tr), 0);
	cr_assert_eq(tr->trace_id.len, 16);
	cr_assert_eq(memcmp(tr->trace_id.data, tid, 16), 0);
	cr_assert_eq(count_spans(tr), 4, "all four spans of the trace, from both batches");
	/* ingest spans from both batches share one ResourceSpans and one ScopeSpans. */
	cr_assert_eq(tr->n_resource_spans, 2);
	const tl_pb_resource_spans *rs;
	const tl_pb_scope_spans *ss;
	tl_pb_span *orig[] = {a1, a2, a3, a4};
	const char *svc[] = {"ingest", "ingest", "ingest", "predict"};
	for (int i = 0; i < 4; i++) {
		const tl_pb_span *got = find_span(tr, orig[i]->span_id.data[0], &rs, &ss);
		cr_assert_not_null(got, "span %d missing", i);
		assert_same_msg(&got->base, &orig[i]->base, "span");
		cr_assert_str_eq(res_service(rs), svc[i]);
		cr_assert_str_eq(rs->schema_url, "https://opentelemetry.io/schemas/1.21.0");
		cr_assert_str_eq(ss->scope->name, i < 3 ? "etl" : "serve");
		cr_assert_str_eq(ss->scope->version, "1.0");
	}
	find_span(tr, 1, &rs, &ss);
	cr_assert_eq(ss->n_spans, 3, "ingest/etl spans of both batches grouped together");
	cr_assert_eq(ss->spans[0]->span_id.data[0], 1, "arrival order kept");
	cr_assert_eq(ss->spans[2]->span_id.data[0], 4);
	assert_same_msg(&rs->resource->base, &rs1[0]->resource->base, "resource");
	/* Explicit fields, so a failure reads plainly. */
	const tl_pb_span *p = find_span(tr, 5, NULL, NULL);
	cr_assert_str_eq(p->name, "predict");
	cr_assert_eq(p->start_time_unix_nano, 1500);
	cr_assert_eq(p->end_time_unix_nano, 9500);
	cr_assert_eq(p->status->code, TL_PB_STATUS_ERROR);
	cr_assert_str_eq(p->status->message, "boom");
	cr_assert_eq(p->n_events, 1);
	cr_assert_eq(p->n_links, 1);
	cr_assert_eq(p->parent_span_id.len, 8);
	cr_assert_eq(p->attributes[1]->value->int_value, 5000);

	/* Resources stored once: ingest, features, predict. */
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_assert_eq(c.resources, 3);
	cr_assert_eq(c.chunks, 3, "one chunk per trace per batch");
	cr_assert_eq(c.trace_idx, 3);
	cr_assert_eq(c.traces, 2);
	cr_assert_eq(c.time_idx, 2, "one time entry per trace even after its start moved");
	cr_assert_eq(c.dedupe, 2);

	co_trace_summary sum;
	cr_assert_eq(co_store_get_summary(s, tid, &sum), 0);
	cr_assert_eq(sum.start_ns, 1500);
	cr_assert_eq(sum.end_ns, 9500);
	cr_assert_eq(sum.span_count, 4);
	cr_assert_eq(sum.error_count, 1);
	cr_assert_eq(sum.chunk_count, 2);
	cr_assert(sum.has_root);
	cr_assert_str_eq(sum.root_service, "ingest");
	cr_assert_str_eq(sum.root_name, "ingest");

	uint8_t unknown[16] = {9};
	cr_assert_eq(co_store_get_trace(s, unknown, &out, &tr), TL_ENOTFOUND);
	cr_assert_eq(co_store_get_summary(s, unknown, &sum), TL_ENOTFOUND);
	tl_arena_fini(&out);
	co_store_close(s);
}

typedef struct seen {
	int n;
	uint64_t start[8];
	uint8_t first[8];
} seen;

static int collect(const co_trace_summary *sum, void *ud)
{
	seen *v = ud;
	if (v->n < 8) {
		v->start[v->n] = sum->start_ns;
		v->first[v->n] = sum->trace_id[0];
	}
	v->n++;
	return 0;
}

Test(store, time_index_follows_earlier_start)
{
	co_store *s = open_store(0);
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = mk_span(0x30, 1, 0, "late", 5000, 6000, false);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("svc", "x", sp, 1);
	tl_pb_export_req *r = mk_req(rs, 1);
	commit1(s, batch_of(2, 1, r), CO_BATCH_OK);
	sp[0] = mk_span(0x40, 1, 0, "other", 3000, 3500, false);
	commit1(s, batch_of(2, 2, r), CO_BATCH_OK);
	sp[0] = mk_span(0x30, 2, 1, "early", 1000, 2000, false);
	commit1(s, batch_of(2, 3, r), CO_BATCH_OK);

	seen v = {0};
	cr_assert_eq(co_store_scan_time(s, 0, UINT64_MAX, false, collect, &v), 0);
	cr_assert_eq(v.n, 2);
	cr_assert_eq(v.start[0], 1000);
	cr_assert_eq(v.first[0], 0x30);
	cr_assert_eq(v.start[1], 3000);
	memset(&v, 0, sizeof(v));
	cr_assert_eq(co_store_scan_time(s, 0, 4000, true, collect, &v), 0);
	cr_assert_eq(v.n, 2);
	cr_assert_eq(v.first[0], 0x40, "newest first");
	memset(&v, 0, sizeof(v));
	cr_assert_eq(co_store_scan_time(s, 4000, UINT64_MAX, false, collect, &v), 0);
	cr_assert_eq(v.n, 0, "the old start of 0x30 is gone from the index");
	co_store_close(s);
}

Test(store, dedupe_by_agent_and_seq)
{
	co_store *s = open_store(0);
	size_t len;
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = mk_span(0x50, 1, 0, "x", 10, 20, false);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("svc", "x", sp, 1);
	tl_pb_export_req *r = mk_req(rs, 1);
	uint8_t *w = mk_batch(3, 7, &r, 1, "{\"eventType\":\"START\"}", &len);
	commit1(s, decode(w, len), CO_BATCH_OK);
	co_store_counts c1, c2;
	cr_assert_eq(co_store_counts_get(s, &c1), 0);
	cr_assert_eq(c1.lineage_raw, 1, "lineage records are kept raw");
	commit1(s, decode(w, len), CO_BATCH_DUPLICATE);
	/* The same batch twice in one group commit: stored once. */
	uint8_t *w2 = mk_batch(3, 8, &r, 1, NULL, &len);
	co_batch *two[2] = {decode(w2, len), decode(w2, len)};
	cr_assert_eq(co_store_commit(s, two, 2, 43), 0);
	cr_assert_eq(two[0]->status, CO_BATCH_OK);
	cr_assert_eq(two[1]->status, CO_BATCH_DUPLICATE);
	/* Same seq from another agent is a different batch. */
	uint8_t *w3 = mk_batch(4, 7, &r, 1, NULL, &len);
	commit1(s, decode(w3, len), CO_BATCH_OK);
	cr_assert_eq(co_store_counts_get(s, &c2), 0);
	cr_assert_eq(c2.chunks, 3);
	cr_assert_eq(c2.dedupe, 3);
	cr_assert_eq(c2.lineage_raw, 1);
	co_trace_summary sum;
	cr_assert_eq(co_store_get_summary(s, sp[0]->trace_id.data, &sum), 0);
	cr_assert_eq(sum.span_count, 3);
	co_store_close(s);
}

/* Many traces of many spans with a fat attribute each, as one request. */
static co_batch *big_batch(uint8_t agent, uint64_t seq, int traces, int spans_per)
{
	static char fat[1025];
	memset(fat, 'x', 1024);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	tl_pb_span **sp = az((size_t)(traces * spans_per) * sizeof(*sp));
	for (int t = 0; t < traces; t++)
		for (int i = 0; i < spans_per; i++) {
			tl_pb_span *x =
			        mk_span((uint8_t)(t + 1), (uint8_t)(i + 1), i ? 1 : 0, fat, 100 + i, 200 + i, false);
			x->trace_id.data[1] = (uint8_t)seq; /* a new trace per batch */
			x->trace_id.data[2] = (uint8_t)(seq >> 8);
			sp[t * spans_per + i] = x;
		}
	rs[0] = mk_rs("bulk", "x", sp, (size_t)(traces * spans_per));
	tl_pb_export_req *r = mk_req(rs, 1);
	size_t len;
	uint8_t *w = mk_batch(agent, seq, &r, 1, NULL, &len);
	return decode(w, len);
}

Test(store, map_grows_and_everything_stays_readable)
{
	co_store *s = open_store(256 << 10);
	size_t map0 = co_store_map_size(s);
	/* 40 batches x 10 traces x 20 spans x ~1.2 KiB ≈ 10 MiB through a 256 KiB map. */
	for (uint64_t seq = 1; seq <= 40; seq++) {
		co_batch *b = big_batch(5, seq, 10, 20);
		commit1(s, b, CO_BATCH_OK);
		cr_assert_eq(b->spans_stored, 200);
		tl_arena_reset(&A);
	}
	cr_assert_gt(co_store_map_size(s), map0 * 16, "map grew from %zu to %zu", map0, co_store_map_size(s));
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_assert_eq(c.chunks, 400);
	cr_assert_eq(c.traces, 400);
	cr_assert_eq(c.resources, 1);
	tl_arena out;
	tl_arena_init(&out, 64 << 10, 0);
	for (uint64_t seq = 1; seq <= 40; seq += 13) {
		uint8_t tid[16];
		memset(tid, 3, 16);
		tid[15] = 4;
		tid[1] = (uint8_t)seq;
		tid[2] = (uint8_t)(seq >> 8);
		tl_pb_trace_result *tr;
		cr_assert_eq(co_store_get_trace(s, tid, &out, &tr), 0, "seq %llu", (unsigned long long)seq);
		cr_assert_eq(count_spans(tr), 20);
		cr_assert_eq(strlen(tr->resource_spans[0]->scope_spans[0]->spans[5]->name), 1024);
		tl_arena_reset(&out);
	}
	tl_arena_fini(&out);
	co_store_close(s);
}

Test(store, group_commit_retries_all_batches_after_growth)
{
	co_store *s = open_store(256 << 10);
	co_batch *bs[6];
	for (int i = 0; i < 6; i++)
		bs[i] = big_batch(6, (uint64_t)i + 1, 5, 20);
	cr_assert_eq(co_store_commit(s, bs, 6, 44), 0);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(bs[i]->status, CO_BATCH_OK);
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_assert_eq(c.chunks, 30, "no chunk stored twice by the retry");
	cr_assert_eq(c.trace_idx, 30);
	co_store_close(s);
}

Test(store, reopen_keeps_data_and_append_keys_continue)
{
	co_store *s = open_store(0);
	commit1(s, big_batch(7, 1, 3, 4), CO_BATCH_OK);
	co_store_close(s);
	s = open_store(0);
	cr_assert_eq(co_store_stale_readers(s), 0);
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_assert_eq(c.chunks, 3);
	commit1(s, big_batch(7, 1, 3, 4), CO_BATCH_DUPLICATE);
	commit1(s, big_batch(7, 2, 3, 4), CO_BATCH_OK);
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_assert_eq(c.chunks, 6);
	uint8_t tid[16];
	memset(tid, 1, 16);
	tid[15] = 2;
	tid[1] = 1;
	tid[2] = 0;
	tl_pb_trace_result *tr;
	cr_assert_eq(co_store_get_trace(s, tid, &A, &tr), 0);
	cr_assert_eq(count_spans(tr), 4);
	co_store_close(s);
}

/* One span of trace t (span s) in its own batch. */
static void commit_span(co_store *s, uint64_t seq, uint8_t t, uint8_t span, uint8_t parent, uint64_t start)
{
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = mk_span(t, span, parent, "op", start, start + 100, false);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("svc", "x", sp, 1);
	commit1(s, batch_of(3, seq, mk_req(rs, 1)), CO_BATCH_OK);
}

static void expect_trace(co_store *s, uint8_t t, uint64_t spans)
{
	uint8_t id[16];
	memset(id, t, 16);
	id[15] = (uint8_t)(t + 1);
	co_trace_summary sum;
	cr_assert_eq(co_store_get_summary(s, id, &sum), 0, "trace %02x has a summary", t);
	cr_expect_eq(sum.span_count, spans, "trace %02x: %llu spans", t, (unsigned long long)sum.span_count);
	tl_pb_trace_result *tr;
	cr_assert_eq(co_store_get_trace(s, id, &A, &tr), 0, "trace %02x reads", t);
	cr_expect_eq(count_spans(tr), spans);
}

Test(store, homes_cross_flushes_crashes_and_old_snapshots)
{
	co_store_opts o = {.dir = dir, .home_flush_at = 3};
	co_store *s = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_store_open(&o, &s, &err), 0, "%s", err.msg);
	/* A reader whose snapshot predates everything below, including two flushes. */
	uint64_t seq = 0;
	commit_span(s, ++seq, 0x10, 1, 0, 1000);
	MDB_txn *old;
	cr_assert_eq(co_store_read_begin(s, &old), 0);
	for (uint8_t t = 0x11; t <= 0x18; t++) {
		commit_span(s, ++seq, t, 1, 0, 1000 + t);
		commit_span(s, ++seq, 0x10, t, 1, 2000 + t); /* trace 0x10 keeps growing */
	}
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_expect_eq(c.traces, 9);
	cr_expect_eq(c.trace_idx, 17);
	uint8_t id10[16];
	memset(id10, 0x10, 16);
	id10[15] = 0x11;
	co_trace_summary sum;
	cr_assert_eq(co_store_summary_txn(s, old, id10, &sum), 0, "the old snapshot still finds its trace");
	cr_expect_eq(sum.span_count, 1, "as it was then");
	co_store_read_end(s, old);
	expect_trace(s, 0x10, 9);
	for (uint8_t t = 0x11; t <= 0x18; t++)
		expect_trace(s, t, 1);
	/* Closing never flushes: reopening must find the unflushed homes in the chunks. */
	co_store_close(s);
	cr_assert_eq(co_store_open(&o, &s, &err), 0, "%s", err.msg);
	expect_trace(s, 0x10, 9);
	for (uint8_t t = 0x11; t <= 0x18; t++)
		expect_trace(s, t, 1);
	commit_span(s, ++seq, 0x18, 2, 1, 3000);
	commit_span(s, ++seq, 0x19, 1, 0, 3001);
	expect_trace(s, 0x18, 2);
	expect_trace(s, 0x19, 1);
	seen v = {0};
	cr_assert_eq(co_store_scan_time(s, 0, UINT64_MAX, false, collect, &v), 0);
	cr_expect_eq(v.n, 10, "every trace once in the start index");
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_expect_eq(c.traces, 10);
	co_store_close(s);
}

/* Turns the store in dir back into what schema 1 left on disk: version 1 in meta, the
 * trace tables under their old names (with an entry each), the new ones absent. */
static void make_schema_1(void)
{
	MDB_env *env;
	MDB_txn *txn;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 64), 0);
	cr_assert_eq(mdb_env_open(env, dir, MDB_NOTLS, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	static const char *const fresh[] = {"trace_home", "trace_chunks", "trace_sums", "trace_starts"};
	for (size_t i = 0; i < 4; i++) {
		MDB_dbi dbi;
		cr_assert_eq(mdb_dbi_open(txn, fresh[i], 0, &dbi), 0);
		cr_assert_eq(mdb_drop(txn, dbi, 1), 0);
	}
	static const char *const old[] = {"trace_idx", "traces", "time_idx"};
	for (size_t i = 0; i < 3; i++) {
		MDB_dbi dbi;
		cr_assert_eq(mdb_dbi_open(txn, old[i], MDB_CREATE, &dbi), 0);
		MDB_val k = {5, "stale"}, v = {0, NULL};
		cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	}
	/* Schema 1's indexes had other time buckets: leave them unusable, a rebuild must follow. */
	static const char *const ix[] = {"ix_svc", "ix_op", "ix_err", "ix_attr", "ix_dur", "ix_cat"};
	for (size_t i = 0; i < 6; i++) {
		MDB_dbi dbi;
		cr_assert_eq(mdb_dbi_open(txn, ix[i], 0, &dbi), 0);
		cr_assert_eq(mdb_drop(txn, dbi, 0), 0);
	}
	MDB_dbi meta;
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &meta), 0);
	uint8_t one[4] = {0, 0, 0, 1};
	MDB_val k = {14, "schema_version"}, v = {4, one};
	cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

Test(store, schema_1_trace_tables_are_rebuilt_from_the_chunks)
{
	co_store *s = open_store(0);
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = mk_span(0x30, 1, 0, "late", 5000, 6000, false);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("svc", "x", sp, 1);
	tl_pb_export_req *r = mk_req(rs, 1);
	commit1(s, batch_of(2, 1, r), CO_BATCH_OK);
	sp[0] = mk_span(0x40, 1, 0, "other", 3000, 3500, true);
	commit1(s, batch_of(2, 2, r), CO_BATCH_OK);
	sp[0] = mk_span(0x30, 2, 1, "early", 1000, 2000, true);
	commit1(s, batch_of(2, 3, r), CO_BATCH_OK);
	co_store_close(s);

	make_schema_1();
	s = open_store(0);
	uint8_t t30[16], t40[16];
	memset(t30, 0x30, 16);
	t30[15] = 0x31;
	memset(t40, 0x40, 16);
	t40[15] = 0x41;
	co_trace_summary sum;
	cr_assert_eq(co_store_get_summary(s, t30, &sum), 0);
	cr_expect_eq(sum.start_ns, 1000);
	cr_expect_eq(sum.end_ns, 6000);
	cr_expect_eq(sum.span_count, 2);
	cr_expect_eq(sum.chunk_count, 2);
	cr_expect_eq(sum.error_count, 1);
	cr_expect(sum.has_root);
	cr_expect_str_eq(sum.root_service, "svc");
	cr_expect_str_eq(sum.root_name, "late");
	cr_assert_eq(co_store_get_summary(s, t40, &sum), 0);
	cr_expect_eq(sum.error_count, 1);
	tl_pb_trace_result *tr;
	cr_assert_eq(co_store_get_trace(s, t30, &A, &tr), 0);
	cr_expect_eq(count_spans(tr), 2);
	seen v = {0};
	cr_assert_eq(co_store_scan_time(s, 0, UINT64_MAX, false, collect, &v), 0);
	cr_assert_eq(v.n, 2);
	cr_expect_eq(v.first[0], 0x30);
	cr_expect_eq(v.start[0], 1000);
	cr_expect_eq(v.first[1], 0x40);
	/* The search indexes were rebuilt: by service, by operation, by minimum duration, by error. */
	co_search_query q = {.service = "svc"};
	co_search_result res;
	tl_errmsg serr = {{0}};
	cr_assert_eq(co_search(s, &q, &A, &res, &serr), 0, "%s", serr.msg);
	cr_expect_eq(res.n, 2, "both traces by service");
	q = (co_search_query){.service = "svc", .operation = "early"};
	cr_assert_eq(co_search(s, &q, &A, &res, &serr), 0, "%s", serr.msg);
	cr_expect(res.n == 1 && res.traces[0].trace_id[0] == 0x30, "the trace of operation 'early'");
	q = (co_search_query){.min_duration_ns = 900};
	cr_assert_eq(co_search(s, &q, &A, &res, &serr), 0, "%s", serr.msg);
	cr_expect(res.n == 1 && res.traces[0].trace_id[0] == 0x30, "the 1000 ns span, any service");
	q = (co_search_query){.error_only = true};
	cr_assert_eq(co_search(s, &q, &A, &res, &serr), 0, "%s", serr.msg);
	cr_expect_eq(res.n, 2, "both traces have an error");
	/* The trace goes on growing where the rebuild left it. */
	sp[0] = mk_span(0x30, 3, 1, "more", 7000, 8000, false);
	commit1(s, batch_of(2, 4, r), CO_BATCH_OK);
	cr_assert_eq(co_store_get_summary(s, t30, &sum), 0);
	cr_expect_eq(sum.span_count, 3);
	cr_expect_eq(sum.chunk_count, 3);
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_expect_eq(c.chunks, 4);
	cr_expect_eq(c.traces, 2);
	cr_expect_eq(c.trace_idx, 4);
	co_store_close(s);

	/* The old tables are gone and the version is 2. */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 64), 0);
	cr_assert_eq(mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_expect_eq(mdb_dbi_open(txn, "trace_idx", 0, &dbi), MDB_NOTFOUND);
	cr_expect_eq(mdb_dbi_open(txn, "time_idx", 0, &dbi), MDB_NOTFOUND);
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	MDB_val k = {14, "schema_version"}, val;
	cr_assert_eq(mdb_get(txn, dbi, &k, &val), 0);
	cr_expect_eq(((const uint8_t *)val.mv_data)[3], CO_STORE_SCHEMA_VERSION);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* A child that opens the environment and begins a read transaction; it either
 * dies right there (leaving its reader slot behind) or keeps the environment
 * open until killed. Signals readiness on fd. */
static pid_t lmdb_child(bool die, int fd)
{
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid != 0)
		return pid;
	MDB_env *env;
	MDB_txn *txn;
	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 16) || mdb_env_open(env, dir, MDB_NOTLS, 0640) ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
		_exit(1);
	if (die)
		_exit(0);
	mdb_txn_abort(txn);
	if (write(fd, "r", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

Test(store, reader_check_clears_dead_readers_at_open)
{
	co_store *s = open_store(0);
	co_store_close(s);
	/* LMDB resets its reader table when the first process opens the environment,
	 * so a dead reader only matters while another process keeps it open. */
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t holder = lmdb_child(false, pfd[1]);
	char c;
	cr_assert_eq(read(pfd[0], &c, 1), 1);
	pid_t dead = lmdb_child(true, -1);
	int st;
	cr_assert_eq(waitpid(dead, &st, 0), dead);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	s = open_store(0);
	cr_assert_eq(co_store_stale_readers(s), 1);
	co_store_close(s);
	kill(holder, SIGKILL);
	waitpid(holder, &st, 0);
	close(pfd[0]);
	close(pfd[1]);
}

Test(store, spans_without_trace_id_are_skipped)
{
	co_store *s = open_store(0);
	tl_pb_span **sp = az(2 * sizeof(*sp));
	sp[0] = mk_span(0x60, 1, 0, "ok", 1, 2, false);
	sp[1] = mk_span(0x60, 2, 1, "bad", 1, 2, false);
	sp[1]->trace_id.len = 3;
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("svc", "x", sp, 2);
	tl_pb_export_req *r = mk_req(rs, 1);
	co_batch *b = batch_of(8, 1, r);
	commit1(s, b, CO_BATCH_OK);
	cr_assert_eq(b->spans_stored, 1);
	cr_assert_eq(b->spans_skipped, 1);
	co_store_close(s);
}

Test(store, undecodable_batches_are_rejected)
{
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	co_batch b;
	tl_errmsg err = {{0}};
	const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
	cr_assert_eq(co_batch_decode(junk, sizeof(junk), &lim, &A, &b, &err), TL_EPARSE);
	cr_assert(strstr(err.msg, "Batch") != NULL, "%s", err.msg);

	/* agent_id of the wrong length */
	tl_pb_batch wb = THREADLINE__V1__BATCH__INIT;
	wb.agent_id = id_bytes(1, 5);
	wb.seq = 3;
	size_t len;
	uint8_t *w = pack_msg(&wb.base, &len);
	cr_assert_eq(co_batch_decode(w, len, &lim, &A, &b, &err), TL_EINVALID);
	cr_assert(strstr(err.msg, "agent_id") != NULL, "%s", err.msg);

	/* a record whose OTLP body is truncated */
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = mk_span(0x70, 1, 0, "x", 1, 2, false);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("svc", "x", sp, 1);
	tl_pb_export_req *r = mk_req(rs, 1);
	tl_pb_batch tb = THREADLINE__V1__BATCH__INIT;
	tb.agent_id = id_bytes(1, 16);
	tb.seq = 9;
	tl_pb_record rec = THREADLINE__V1__RECORD__INIT, *recp = &rec;
	rec.body_case = THREADLINE__V1__RECORD__BODY_OTLP_TRACES;
	rec.otlp_traces.data = pack_msg(&r->base, &rec.otlp_traces.len);
	rec.otlp_traces.len -= 5;
	tb.records = &recp;
	tb.n_records = 1;
	w = pack_msg(&tb.base, &len);
	int rc = co_batch_decode(w, len, &lim, &A, &b, &err);
	cr_assert(rc == TL_EPARSE || rc == TL_ELIMIT, "rc %d", rc);
	cr_assert(strstr(err.msg, "record 0") != NULL, "%s", err.msg);
	cr_assert_eq(b.seq, 9, "the rejection can name the batch");

	/* a record without a body */
	rec.body_case = THREADLINE__V1__RECORD__BODY__NOT_SET;
	w = pack_msg(&tb.base, &len);
	cr_assert_eq(co_batch_decode(w, len, &lim, &A, &b, &err), TL_EINVALID);
}

/* ---- end to end over nng ---- */

static nng_msg *roundtrip(nng_socket sock, const uint8_t *buf, size_t len)
{
	nng_msg *m;
	cr_assert_eq(nng_msg_alloc(&m, 0), 0);
	cr_assert_eq(nng_msg_append(m, buf, len), 0);
	cr_assert_eq(nng_sendmsg(sock, m, 0), 0);
	nng_msg *rep;
	int rv = nng_recvmsg(sock, &rep, 0);
	cr_assert_eq(rv, 0, "recv: %s", nng_strerror(rv));
	return rep;
}

static tl_pb_ack *send_batch(nng_socket sock, const uint8_t *buf, size_t len)
{
	nng_msg *rep = roundtrip(sock, buf, len);
	tl_pb_ack *ack = threadline__v1__ack__unpack(tl_arena_allocator(&A), nng_msg_len(rep), nng_msg_body(rep));
	nng_msg_free(rep);
	cr_assert_not_null(ack);
	return ack;
}

static tl_pb_query_resp *query(nng_socket sock, const tl_pb_query_req *q)
{
	size_t len;
	uint8_t *b = pack_msg(&q->base, &len);
	nng_msg *rep = roundtrip(sock, b, len);
	tl_pb_query_resp *r =
	        threadline__v1__query_response__unpack(tl_arena_allocator(&A), nng_msg_len(rep), nng_msg_body(rep));
	nng_msg_free(rep);
	cr_assert_not_null(r);
	return r;
}

static nng_socket dial(int port)
{
	nng_socket s;
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	cr_assert_eq(nng_req0_open(&s), 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
	cr_assert_eq(nng_dial(s, url, NULL, 0), 0);
	return s;
}

Test(store, end_to_end_intake_and_query)
{
	co_store *s = open_store(0);
	co_writer *w;
	cr_assert_eq(co_writer_start(s, NULL, &w), 0);
	tl_errmsg err = {{0}};
	co_intake *in;
	co_intake_opts io = {.url = "tcp://127.0.0.1:0", .contexts = 4};
	cr_assert_eq(co_intake_start(&io, w, &in, &err), 0, "%s", err.msg);
	co_query *q;
	co_query_opts qo = {.url = "tcp://127.0.0.1:0"};
	cr_assert_eq(co_query_start(&qo, s, &q, &err), 0, "%s", err.msg);
	cr_assert_gt(co_intake_port(in), 0);
	cr_assert_gt(co_query_port(q), 0);

	nng_socket agent = dial(co_intake_port(in));
	tl_pb_span **sp = az(2 * sizeof(*sp));
	sp[0] = mk_span(0x90, 1, 0, "ingest", 100, 900, false);
	sp[1] = mk_span(0x90, 2, 1, "predict", 200, 800, true);
	tl_pb_resource_spans **rs = az(sizeof(*rs));
	rs[0] = mk_rs("pipeline", "ml", sp, 2);
	tl_pb_export_req *r = mk_req(rs, 1);
	size_t len;
	uint8_t *wire = mk_batch(9, 1, &r, 1, NULL, &len);
	tl_pb_ack *ack = send_batch(agent, wire, len);
	cr_assert_eq(ack->status, THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK, "ack: %s", ack->message);
	cr_assert_eq(ack->seq, 1);
	cr_assert_eq(ack->spans_stored, 2);
	cr_assert_eq(ack->agent_id.len, 16);
	ack = send_batch(agent, wire, len);
	cr_assert_eq(ack->status, THREADLINE__V1__ACK__STATUS__ACK_STATUS_DUPLICATE);
	const uint8_t junk[] = "not a batch at all";
	ack = send_batch(agent, junk, sizeof(junk));
	cr_assert_eq(ack->status, THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED);
	cr_assert_neq(strlen(ack->message), 0);

	/* Several requests in flight on REQ contexts: group commit, each acked. */
	enum { NF = 4 };
	nng_ctx ctx[NF];
	nng_aio *aio[NF];
	for (int i = 0; i < NF; i++) {
		cr_assert_eq(nng_ctx_open(&ctx[i], agent), 0);
		cr_assert_eq(nng_aio_alloc(&aio[i], NULL, NULL), 0);
		uint8_t *b = mk_batch(9, (uint64_t)i + 2, &r, 1, NULL, &len);
		nng_msg *m;
		nng_msg_alloc(&m, 0);
		nng_msg_append(m, b, len);
		nng_aio_set_msg(aio[i], m);
		nng_ctx_send(ctx[i], aio[i]);
	}
	for (int i = 0; i < NF; i++) {
		nng_aio_wait(aio[i]);
		cr_assert_eq(nng_aio_result(aio[i]), 0);
		nng_aio_set_timeout(aio[i], 10000);
		nng_ctx_recv(ctx[i], aio[i]);
	}
	for (int i = 0; i < NF; i++) {
		nng_aio_wait(aio[i]);
		cr_assert_eq(nng_aio_result(aio[i]), 0);
		nng_msg *m = nng_aio_get_msg(aio[i]);
		tl_pb_ack *a = threadline__v1__ack__unpack(tl_arena_allocator(&A), nng_msg_len(m), nng_msg_body(m));
		nng_msg_free(m);
		cr_assert_not_null(a);
		cr_assert_eq(a->status, THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK);
		cr_assert_eq(a->seq, (uint64_t)i + 2);
		nng_aio_free(aio[i]);
		nng_ctx_close(ctx[i]);
	}

	nng_socket cli = dial(co_query_port(q));
	tl_pb_query_req qr = THREADLINE__V1__QUERY_REQUEST__INIT;
	tl_pb_trace_get tg = THREADLINE__V1__TRACE_GET__INIT;
	qr.version = 1;
	qr.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_GET;
	qr.trace_get = &tg;
	tg.trace_id = sp[0]->trace_id;
	tl_pb_query_resp *resp = query(cli, &qr);
	cr_assert_eq(resp->code, 0, "%s", resp->error);
	cr_assert_not_null(resp->trace);
	cr_assert_eq(count_spans(resp->trace), 10, "5 commits of 2 spans (the duplicate not stored again)");
	assert_same_msg(&find_span(resp->trace, 2, NULL, NULL)->base, &sp[1]->base, "span over the wire");

	uint8_t unknown[16] = {0xab};
	tg.trace_id.data = unknown;
	resp = query(cli, &qr);
	cr_assert_eq(resp->code, TL_ENOTFOUND);
	cr_assert_str_eq(resp->error, "trace ab000000000000000000000000000000 not found");
	qr.version = 2;
	resp = query(cli, &qr);
	cr_assert_eq(resp->code, TL_EUNSUPPORTED);
	qr.version = 1;
	qr.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY__NOT_SET;
	resp = query(cli, &qr);
	cr_assert_eq(resp->code, TL_EUNSUPPORTED);
	nng_msg *rep = roundtrip(cli, junk, sizeof(junk));
	resp = threadline__v1__query_response__unpack(tl_arena_allocator(&A), nng_msg_len(rep), nng_msg_body(rep));
	nng_msg_free(rep);
	cr_assert_eq(resp->code, TL_EPARSE);

	nng_close(cli);
	nng_close(agent);
	co_intake_stop(in);
	co_writer_stop(w);
	co_intake_free(in);
	co_query_free(q);
	co_writer_free(w);
	co_store_close(s);
}

/* ---- the writer's periodic fsync (--fsync DURATION) ---- */

typedef struct sync_req {
	co_write_req r;
	pthread_mutex_t mu;
	int rc;
	bool done;
} sync_req;

static void sync_req_done(co_write_req *r, int rc)
{
	sync_req *s = (sync_req *)r;
	pthread_mutex_lock(&s->mu);
	s->rc = rc;
	s->done = true;
	pthread_mutex_unlock(&s->mu);
}

static bool sync_req_finished(sync_req *s)
{
	pthread_mutex_lock(&s->mu);
	bool d = s->done;
	pthread_mutex_unlock(&s->mu);
	return d;
}

Test(store, writer_fsyncs_periodically_without_per_commit_sync)
{
	co_store_opts o = {.dir = dir, .no_sync = true};
	co_store *s = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_store_open(&o, &s, &err), 0, "%s", err.msg);
	co_writer_opts wo = {.sync_ms = 30};
	co_writer *w;
	cr_assert_eq(co_writer_start(s, &wo, &w), 0);
	uint64_t syncs, fails;
	co_writer_sync_stats(w, &syncs, &fails);
	cr_assert_eq(syncs, 0, "nothing written, nothing to sync");

	sync_req rq = {.r = {.bytes = 1, .done = sync_req_done}};
	pthread_mutex_init(&rq.mu, NULL);
	rq.r.batch = *big_batch(9, 1, 2, 3);
	cr_assert_eq(co_writer_submit(w, &rq.r), 0);
	uint64_t deadline = tl_mono_ns() + 5 * TL_NS_PER_S;
	while (!sync_req_finished(&rq) && tl_mono_ns() < deadline)
		usleep(1000);
	cr_assert(sync_req_finished(&rq), "the commit completed");
	cr_assert_eq(rq.rc, 0);
	cr_assert_eq(rq.r.batch.status, CO_BATCH_OK);
	/* One fsync follows within the interval, then none while nothing new is written. */
	while (tl_mono_ns() < deadline) {
		co_writer_sync_stats(w, &syncs, &fails);
		if (syncs > 0)
			break;
		usleep(1000);
	}
	cr_assert_eq(syncs, 1, "one fsync after the commit, got %llu", (unsigned long long)syncs);
	cr_assert_eq(fails, 0);
	usleep(120 * 1000);
	co_writer_sync_stats(w, &syncs, &fails);
	cr_assert_eq(syncs, 1, "idle: no further fsync, got %llu", (unsigned long long)syncs);
	co_writer_free(w);
	pthread_mutex_destroy(&rq.mu);
	co_store_counts c;
	cr_assert_eq(co_store_counts_get(s, &c), 0);
	cr_assert_eq(c.chunks, 2, "the batch's two traces are stored");
	co_store_close(s);
}
