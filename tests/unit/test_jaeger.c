/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Jaeger-compatible side of the collector: stored traces converted to
 * Jaeger's JSON model (co_jaeger_trace) field by field on hand-built traces,
 * the small parsers (Go durations, trace ids, span kinds), and the
 * /api/ routes of a real co_http server on a loopback port over a real
 * store in a temporary directory, with the response shapes the Jaeger UI
 * reads: {"data", "total", "limit", "offset", "errors"}, 404 and 400 bodies
 * whose message names the parameter, and the requests counted in /metrics.
 */
#include "co_http.h"
#include "co_jaeger.h"
#include "co_store.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_pb.h"
#include "tl_testkit.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building OTLP data in an arena ---- */

static tl_arena A;

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

static ProtobufCBinaryData bin(const void *b, size_t n)
{
	uint8_t *p = az(n ? n : 1);
	memcpy(p, b, n);
	return (ProtobufCBinaryData){n, p};
}

/* 8- or 16-byte id from hex. */
static ProtobufCBinaryData hexid(const char *hex)
{
	uint8_t b[16];
	size_t n = strlen(hex) / 2;
	cr_assert_eq(tl_hex_decode(hex, 2 * n, b, n), 0, "test id %s", hex);
	return bin(b, n);
}

static tl_pb_anyvalue *any(void)
{
	tl_pb_anyvalue *v = az(sizeof(*v));
	opentelemetry__proto__common__v1__any_value__init(v);
	return v;
}

static tl_pb_anyvalue *v_str(const char *s)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_STRING;
	v->string_value = as(s);
	return v;
}

static tl_pb_anyvalue *v_int(int64_t i)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_INT;
	v->int_value = i;
	return v;
}

static tl_pb_anyvalue *v_bool(bool b)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_BOOL;
	v->bool_value = b;
	return v;
}

static tl_pb_anyvalue *v_double(double d)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_DOUBLE;
	v->double_value = d;
	return v;
}

static tl_pb_anyvalue *v_bytes(const void *b, size_t n)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_BYTES;
	v->bytes_value = bin(b, n);
	return v;
}

static tl_pb_keyvalue *kv(const char *k, tl_pb_anyvalue *v)
{
	tl_pb_keyvalue *p = az(sizeof(*p));
	opentelemetry__proto__common__v1__key_value__init(p);
	p->key = as(k);
	p->value = v;
	return p;
}

/* An array value of n items. */
static tl_pb_anyvalue *v_array(tl_pb_anyvalue **items, size_t n)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_ARRAY;
	v->array_value = az(sizeof(tl_pb_arrayvalue));
	opentelemetry__proto__common__v1__array_value__init(v->array_value);
	v->array_value->values = az(n * sizeof(*items));
	memcpy(v->array_value->values, items, n * sizeof(*items));
	v->array_value->n_values = n;
	return v;
}

static tl_pb_anyvalue *v_map(tl_pb_keyvalue **items, size_t n)
{
	tl_pb_anyvalue *v = any();
	v->value_case = TL_PB_ANY_KVLIST;
	v->kvlist_value = az(sizeof(tl_pb_kvlist));
	opentelemetry__proto__common__v1__key_value_list__init(v->kvlist_value);
	v->kvlist_value->values = az(n * sizeof(*items));
	memcpy(v->kvlist_value->values, items, n * sizeof(*items));
	v->kvlist_value->n_values = n;
	return v;
}

static tl_pb_keyvalue **kvs(size_t n)
{
	return az(n * sizeof(tl_pb_keyvalue *));
}

static tl_pb_span *mk_span(const char *trace, const char *id, const char *parent, const char *name, int kind,
                           uint64_t start, uint64_t end, int status, const char *msg)
{
	tl_pb_span *sp = az(sizeof(*sp));
	opentelemetry__proto__trace__v1__span__init(sp);
	sp->trace_id = hexid(trace);
	sp->span_id = hexid(id);
	if (parent != NULL)
		sp->parent_span_id = hexid(parent);
	sp->name = as(name);
	sp->kind = kind;
	sp->start_time_unix_nano = start;
	sp->end_time_unix_nano = end;
	sp->trace_state = as("");
	if (status >= 0) {
		sp->status = az(sizeof(tl_pb_status));
		opentelemetry__proto__trace__v1__status__init(sp->status);
		sp->status->code = status;
		sp->status->message = as(msg != NULL ? msg : "");
	}
	return sp;
}

static void add_link(tl_pb_span *sp, const char *trace, const char *span, const char *ref_type)
{
	tl_pb_link **links = az((sp->n_links + 1) * sizeof(*links));
	if (sp->n_links > 0)
		memcpy(links, sp->links, sp->n_links * sizeof(*links));
	tl_pb_link *l = az(sizeof(*l));
	opentelemetry__proto__trace__v1__span__link__init(l);
	l->trace_id = hexid(trace);
	l->span_id = hexid(span);
	if (ref_type != NULL) {
		l->attributes = kvs(1);
		l->attributes[0] = kv("opentracing.ref_type", v_str(ref_type));
		l->n_attributes = 1;
	}
	links[sp->n_links++] = l;
	sp->links = links;
}

static void add_event(tl_pb_span *sp, const char *name, uint64_t t, tl_pb_keyvalue **attrs, size_t n)
{
	tl_pb_event **evs = az((sp->n_events + 1) * sizeof(*evs));
	if (sp->n_events > 0)
		memcpy(evs, sp->events, sp->n_events * sizeof(*evs));
	tl_pb_event *e = az(sizeof(*e));
	opentelemetry__proto__trace__v1__span__event__init(e);
	e->name = as(name);
	e->time_unix_nano = t;
	e->attributes = attrs;
	e->n_attributes = n;
	evs[sp->n_events++] = e;
	sp->events = evs;
}

static tl_pb_resource *mk_resource(const char *service, const char *host)
{
	tl_pb_resource *r = az(sizeof(*r));
	opentelemetry__proto__resource__v1__resource__init(r);
	r->attributes = kvs(2);
	if (service != NULL)
		r->attributes[r->n_attributes++] = kv("service.name", v_str(service));
	if (host != NULL)
		r->attributes[r->n_attributes++] = kv("host.name", v_str(host));
	return r;
}

static tl_pb_resource_spans *mk_rs(tl_pb_resource *res, const char *scope, const char *version, tl_pb_span **spans,
                                   size_t n)
{
	tl_pb_resource_spans *rs = az(sizeof(*rs));
	opentelemetry__proto__trace__v1__resource_spans__init(rs);
	rs->resource = res;
	rs->schema_url = as("");
	rs->n_scope_spans = 1;
	rs->scope_spans = az(sizeof(tl_pb_scope_spans *));
	tl_pb_scope_spans *ss = az(sizeof(*ss));
	opentelemetry__proto__trace__v1__scope_spans__init(ss);
	ss->schema_url = as("");
	if (scope != NULL) {
		ss->scope = az(sizeof(tl_pb_scope));
		opentelemetry__proto__common__v1__instrumentation_scope__init(ss->scope);
		ss->scope->name = as(scope);
		ss->scope->version = as(version != NULL ? version : "");
	}
	ss->spans = az(n * sizeof(*spans));
	memcpy(ss->spans, spans, n * sizeof(*spans));
	ss->n_spans = n;
	rs->scope_spans[0] = ss;
	return rs;
}

static tl_pb_trace_result *mk_result(const char *trace, tl_pb_resource_spans **rs, size_t n)
{
	tl_pb_trace_result *tr = az(sizeof(*tr));
	threadline__v1__trace_result__init(tr);
	tr->trace_id = hexid(trace);
	tr->resource_spans = az(n * sizeof(*rs));
	memcpy(tr->resource_spans, rs, n * sizeof(*rs));
	tr->n_resource_spans = n;
	return tr;
}

/* ---- reading Jaeger JSON ---- */

static const char *sget(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_string(v), "\"%s\" is not a string", k);
	return json_string_value(v);
}

static json_t *span_by_id(json_t *trace, const char *id)
{
	json_t *spans = json_object_get(trace, "spans");
	for (size_t i = 0; i < json_array_size(spans); i++)
		if (strcmp(sget(json_array_get(spans, i), "spanID"), id) == 0)
			return json_array_get(spans, i);
	cr_assert_fail("no span %s", id);
	return NULL;
}

static json_t *find_kv(json_t *tags, const char *key)
{
	for (size_t i = 0; i < json_array_size(tags); i++)
		if (strcmp(sget(json_array_get(tags, i), "key"), key) == 0)
			return json_array_get(tags, i);
	return NULL;
}

static int kv_index(json_t *tags, const char *key)
{
	for (size_t i = 0; i < json_array_size(tags); i++)
		if (strcmp(sget(json_array_get(tags, i), "key"), key) == 0)
			return (int)i;
	return -1;
}

/* The tag's type, checked, and its value. */
static json_t *tag_value(json_t *tags, const char *key, const char *type)
{
	json_t *t = find_kv(tags, key);
	cr_assert_not_null(t, "no tag %s", key);
	cr_assert_str_eq(sget(t, "type"), type, "tag %s", key);
	return json_object_get(t, "value");
}

static void assert_processes_resolve(json_t *trace)
{
	json_t *procs = json_object_get(trace, "processes");
	cr_assert(json_is_object(procs));
	json_t *spans = json_object_get(trace, "spans");
	for (size_t i = 0; i < json_array_size(spans); i++) {
		const char *pid = sget(json_array_get(spans, i), "processID");
		json_t *p = json_object_get(procs, pid);
		cr_assert_not_null(p, "processID %s is not in processes", pid);
		sget(p, "serviceName");
		cr_assert(json_is_array(json_object_get(p, "tags")));
	}
}

/* Every key the Jaeger UI reads from a span, with its JSON type. */
static void assert_span_shape(json_t *s)
{
	sget(s, "traceID");
	sget(s, "spanID");
	sget(s, "operationName");
	sget(s, "processID");
	cr_assert(json_is_array(json_object_get(s, "references")));
	cr_assert(json_is_integer(json_object_get(s, "startTime")));
	cr_assert(json_is_integer(json_object_get(s, "duration")));
	cr_assert(json_is_array(json_object_get(s, "tags")));
	cr_assert(json_is_array(json_object_get(s, "logs")));
	cr_assert(json_is_integer(json_object_get(s, "flags")));
	cr_assert(json_object_get(s, "warnings") != NULL);
	json_t *tags = json_object_get(s, "tags");
	for (size_t i = 0; i < json_array_size(tags); i++) {
		json_t *t = json_array_get(tags, i);
		const char *type = sget(t, "type");
		cr_assert(strcmp(type, "string") == 0 || strcmp(type, "bool") == 0 || strcmp(type, "int64") == 0 ||
		                  strcmp(type, "float64") == 0 || strcmp(type, "binary") == 0,
		          "type %s", type);
		cr_assert_not_null(json_object_get(t, "value"));
	}
}

/* ---- the conversion ---- */

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define T0 UINT64_C(1700000000123456789) /* ns; 1700000000123456 µs */

static void conv_init(void)
{
	tl_arena_init(&A, 64 << 10, 0);
}

static void conv_fini(void)
{
	tl_arena_fini(&A);
}

TestSuite(jaeger, .init = conv_init, .fini = conv_fini, .timeout = 60);

/* A trace of three services; svc-a's resource is stored in two ResourceSpans (two scopes). */
static tl_pb_trace_result *rich_trace(void)
{
	tl_pb_span *root = mk_span(TID, "00f067aa0ba902b7", NULL, "GET /predict", 2 /* server */, T0, T0 + 50000999,
	                           TL_PB_STATUS_OK, NULL);
	root->trace_state = as("congo=t61rcWkgMzE");
	root->flags = 0x301; /* sampled, plus the has/is-remote bits that are not trace flags */
	uint8_t blob[] = {0, 0, 0x30, 0x39};
	tl_pb_anyvalue *arr[] = {v_str("a"), v_int(1), v_bool(true)};
	tl_pb_keyvalue *m[] = {kv("k", v_str("v")), kv("n", v_double(1.5))};
	root->attributes = kvs(10);
	root->attributes[0] = kv("http.method", v_str("GET"));
	root->attributes[1] = kv("cache.hit", v_bool(false));
	root->attributes[2] = kv("http.status_code", v_int(200));
	root->attributes[3] = kv("temperature", v_double(72.5));
	root->attributes[4] = kv("blob", v_bytes(blob, sizeof(blob)));
	root->attributes[5] = kv("list", v_array(arr, 3));
	root->attributes[6] = kv("map", v_map(m, 2));
	root->attributes[7] = kv("big", v_int(INT64_C(9007199254740993)));
	root->attributes[8] = kv("nan", v_double(NAN));
	root->attributes[9] = kv("empty", any());
	root->n_attributes = 10;
	tl_pb_keyvalue **ea = kvs(1);
	ea[0] = kv("cache.key", v_str("user:42"));
	add_event(root, "cache.miss", T0 + 1500, ea, 1);
	tl_pb_keyvalue **eb = kvs(2);
	eb[0] = kv("event", v_str("explicit"));
	eb[1] = kv("level", v_str("info"));
	add_event(root, "ignored-name", T0 + 2500, eb, 2);

	tl_pb_span *child = mk_span(TID, "b7ad6b7169203331", "00f067aa0ba902b7", "predict", 3 /* client */,
	                            T0 + 1000000, T0 + 21000000, TL_PB_STATUS_ERROR, "model timed out");
	add_link(child, "0af7651916cd43dd8448eb211c80319c", "53995c3f42cd8ad8", NULL);
	add_link(child, TID, "1111111111111111", "child_of");
	tl_pb_span *internal = mk_span(TID, "c0ffee0000000001", "00f067aa0ba902b7", "render", 1 /* internal */,
	                               T0 + 30000000, T0 + 31000000, -1, NULL);

	tl_pb_span *model = mk_span(TID, "d00d000000000001", "b7ad6b7169203331", "infer", 0 /* unspecified */,
	                            T0 + 2000000, T0 + 20000000, TL_PB_STATUS_UNSET, NULL);

	tl_pb_resource *ra = mk_resource("svc-a", "node-1");
	tl_pb_resource *ra2 = mk_resource("svc-a", "node-1"); /* equal, stored separately */
	tl_pb_resource *rb = mk_resource("svc-b", "node-2");
	tl_pb_span *s1[] = {root, child}, *s2[] = {internal}, *s3[] = {model};
	tl_pb_resource_spans *rs[] = {mk_rs(ra, "io.opentelemetry.http", "1.2.0", s1, 2),
	                              mk_rs(ra2, "render-lib", NULL, s2, 1), mk_rs(rb, NULL, NULL, s3, 1)};
	return mk_result(TID, rs, 3);
}

Test(jaeger, trace_fields_follow_jaegers_model)
{
	json_t *t = co_jaeger_trace(rich_trace());
	cr_assert_not_null(t);
	cr_assert_str_eq(sget(t, "traceID"), TID);
	cr_assert(json_is_null(json_object_get(t, "warnings")));
	json_t *spans = json_object_get(t, "spans");
	cr_assert_eq(json_array_size(spans), 4);
	for (size_t i = 0; i < 4; i++)
		assert_span_shape(json_array_get(spans, i));
	/* Stored order is kept. */
	cr_assert_str_eq(sget(json_array_get(spans, 0), "spanID"), "00f067aa0ba902b7");
	cr_assert_str_eq(sget(json_array_get(spans, 3), "spanID"), "d00d000000000001");

	/* Root: µs (truncated), no references, flags are the W3C trace flags. */
	json_t *root = span_by_id(t, "00f067aa0ba902b7");
	cr_assert_str_eq(sget(root, "traceID"), TID);
	cr_assert_str_eq(sget(root, "operationName"), "GET /predict");
	cr_assert_eq(json_integer_value(json_object_get(root, "startTime")), 1700000000123456);
	cr_assert_eq(json_integer_value(json_object_get(root, "duration")), 50000, "50000999 ns -> 50000 µs");
	cr_assert_eq(json_array_size(json_object_get(root, "references")), 0);
	cr_assert_eq(json_integer_value(json_object_get(root, "flags")), 1);
	cr_assert(json_is_null(json_object_get(root, "warnings")));

	/* Tags: scope first, then attributes with their types, then kind, status, tracestate. */
	json_t *tags = json_object_get(root, "tags");
	cr_assert_eq(kv_index(tags, "otel.scope.name"), 0);
	cr_assert_str_eq(json_string_value(tag_value(tags, "otel.scope.name", "string")), "io.opentelemetry.http");
	cr_assert_eq(kv_index(tags, "otel.scope.version"), 1);
	cr_assert_str_eq(json_string_value(tag_value(tags, "otel.scope.version", "string")), "1.2.0");
	cr_assert_eq(kv_index(tags, "http.method"), 2);
	cr_assert_str_eq(json_string_value(tag_value(tags, "http.method", "string")), "GET");
	cr_assert(json_is_false(tag_value(tags, "cache.hit", "bool")));
	cr_assert(json_is_integer(tag_value(tags, "http.status_code", "int64")));
	cr_assert_eq(json_integer_value(tag_value(tags, "http.status_code", "int64")), 200);
	cr_assert_float_eq(json_real_value(tag_value(tags, "temperature", "float64")), 72.5, 1e-12);
	cr_assert_str_eq(json_string_value(tag_value(tags, "blob", "binary")), "AAAwOQ==");
	cr_assert_str_eq(json_string_value(tag_value(tags, "list", "string")), "[\"a\",1,true]");
	cr_assert_str_eq(json_string_value(tag_value(tags, "map", "string")), "{\"k\":\"v\",\"n\":1.5}");
	cr_assert_str_eq(json_string_value(tag_value(tags, "big", "int64")), "9007199254740993",
	                 "beyond 2^53: a string, as jaeger-query writes it");
	cr_assert_str_eq(json_string_value(tag_value(tags, "nan", "float64")), "NaN");
	cr_assert_str_eq(json_string_value(tag_value(tags, "empty", "string")), "");
	cr_assert_str_eq(json_string_value(tag_value(tags, "span.kind", "string")), "server");
	cr_assert_str_eq(json_string_value(tag_value(tags, "otel.status_code", "string")), "OK");
	cr_assert_null(find_kv(tags, "error"), "status OK is not an error");
	cr_assert_null(find_kv(tags, "otel.status_description"));
	cr_assert_str_eq(json_string_value(tag_value(tags, "w3c.tracestate", "string")), "congo=t61rcWkgMzE");
	cr_assert_gt(kv_index(tags, "span.kind"), kv_index(tags, "empty"));
	cr_assert_gt(kv_index(tags, "otel.status_code"), kv_index(tags, "span.kind"));

	/* Events -> logs: "event" first from the name, unless an attribute is called "event". */
	json_t *logs = json_object_get(root, "logs");
	cr_assert_eq(json_array_size(logs), 2);
	json_t *l0 = json_array_get(logs, 0), *l1 = json_array_get(logs, 1);
	cr_assert_eq(json_integer_value(json_object_get(l0, "timestamp")), 1700000000123458, "T0 + 1500 ns, truncated");
	json_t *f0 = json_object_get(l0, "fields");
	cr_assert_eq(json_array_size(f0), 2);
	cr_assert_eq(kv_index(f0, "event"), 0);
	cr_assert_str_eq(json_string_value(tag_value(f0, "event", "string")), "cache.miss");
	cr_assert_str_eq(json_string_value(tag_value(f0, "cache.key", "string")), "user:42");
	json_t *f1 = json_object_get(l1, "fields");
	cr_assert_eq(json_array_size(f1), 2, "the name does not add a second event field");
	cr_assert_str_eq(json_string_value(tag_value(f1, "event", "string")), "explicit");

	/* Child: CHILD_OF its parent first, then the links. */
	json_t *child = span_by_id(t, "b7ad6b7169203331");
	json_t *refs = json_object_get(child, "references");
	cr_assert_eq(json_array_size(refs), 3);
	json_t *r0 = json_array_get(refs, 0), *r1 = json_array_get(refs, 1), *r2 = json_array_get(refs, 2);
	cr_assert_str_eq(sget(r0, "refType"), "CHILD_OF");
	cr_assert_str_eq(sget(r0, "traceID"), TID);
	cr_assert_str_eq(sget(r0, "spanID"), "00f067aa0ba902b7");
	cr_assert_str_eq(sget(r1, "refType"), "FOLLOWS_FROM");
	cr_assert_str_eq(sget(r1, "traceID"), "0af7651916cd43dd8448eb211c80319c");
	cr_assert_str_eq(sget(r1, "spanID"), "53995c3f42cd8ad8");
	cr_assert_str_eq(sget(r2, "refType"), "CHILD_OF", "a link marked opentracing.ref_type=child_of");
	cr_assert_str_eq(sget(r2, "spanID"), "1111111111111111");
	cr_assert_eq(json_integer_value(json_object_get(child, "startTime")), 1700000000124456);
	cr_assert_eq(json_integer_value(json_object_get(child, "duration")), 20000);
	json_t *ctags = json_object_get(child, "tags");
	cr_assert_str_eq(json_string_value(tag_value(ctags, "span.kind", "string")), "client");
	cr_assert_str_eq(json_string_value(tag_value(ctags, "otel.status_code", "string")), "ERROR");
	cr_assert(json_is_true(tag_value(ctags, "error", "bool")));
	cr_assert_str_eq(json_string_value(tag_value(ctags, "otel.status_description", "string")), "model timed out");
	cr_assert_null(find_kv(ctags, "w3c.tracestate"));

	/* Internal kind is tagged; no status, no status tags; a scope without version has no version tag. */
	json_t *itags = json_object_get(span_by_id(t, "c0ffee0000000001"), "tags");
	cr_assert_str_eq(json_string_value(tag_value(itags, "span.kind", "string")), "internal");
	cr_assert_str_eq(json_string_value(tag_value(itags, "otel.scope.name", "string")), "render-lib");
	cr_assert_null(find_kv(itags, "otel.scope.version"));
	cr_assert_null(find_kv(itags, "otel.status_code"));
	/* Unspecified kind and unset status: no tags at all (no scope either). */
	json_t *model = span_by_id(t, "d00d000000000001");
	cr_assert_eq(json_array_size(json_object_get(model, "tags")), 0);
	cr_assert_str_eq(sget(json_array_get(json_object_get(model, "references"), 0), "spanID"), "b7ad6b7169203331");

	/* Processes: two, shared by equal resources; service.name is the name, not a tag. */
	assert_processes_resolve(t);
	json_t *procs = json_object_get(t, "processes");
	cr_assert_eq(json_object_size(procs), 2);
	cr_assert_str_eq(sget(root, "processID"), "p1");
	cr_assert_str_eq(sget(child, "processID"), "p1");
	cr_assert_str_eq(sget(span_by_id(t, "c0ffee0000000001"), "processID"), "p1", "an equal resource");
	cr_assert_str_eq(sget(model, "processID"), "p2");
	json_t *p1 = json_object_get(procs, "p1"), *p2 = json_object_get(procs, "p2");
	cr_assert_str_eq(sget(p1, "serviceName"), "svc-a");
	cr_assert_str_eq(sget(p2, "serviceName"), "svc-b");
	cr_assert_null(find_kv(json_object_get(p1, "tags"), "service.name"));
	cr_assert_str_eq(json_string_value(tag_value(json_object_get(p1, "tags"), "host.name", "string")), "node-1");
	cr_assert_str_eq(json_string_value(tag_value(json_object_get(p2, "tags"), "host.name", "string")), "node-2");

	/* It serialises as JSON (NaN included). */
	char *text = json_dumps(t, JSON_COMPACT);
	cr_assert_not_null(text);
	json_error_t je;
	json_t *back = json_loads(text, 0, &je);
	cr_assert_not_null(back, "%s", je.text);
	cr_assert(json_equal(back, t));
	json_decref(back);
	free(text);
	json_decref(t);
}

Test(jaeger, ids_print_as_jaeger_does)
{
	/* A 128-bit id whose high half is zero prints as 16 digits, like jaeger-query's TraceID.String(). */
	const char *low = "00000000000000000000000000abcdef";
	tl_pb_span *sp = mk_span(low, "0000000000000001", "0000000000000000", "x", 0, 10, 20, -1, NULL);
	add_link(sp, "0102030405060708090a0b0c0d0e0f10", "0000000000000002", NULL);
	tl_pb_span *s1[] = {sp};
	tl_pb_resource_spans *rs[] = {mk_rs(mk_resource("s", NULL), NULL, NULL, s1, 1)};
	json_t *t = co_jaeger_trace(mk_result(low, rs, 1));
	cr_assert_not_null(t);
	cr_assert_str_eq(sget(t, "traceID"), "0000000000abcdef");
	json_t *s = json_array_get(json_object_get(t, "spans"), 0);
	cr_assert_str_eq(sget(s, "traceID"), "0000000000abcdef");
	cr_assert_str_eq(sget(s, "spanID"), "0000000000000001");
	json_t *refs = json_object_get(s, "references");
	cr_assert_eq(json_array_size(refs), 1, "an all-zero parent id is no parent");
	cr_assert_str_eq(sget(json_array_get(refs, 0), "traceID"), "0102030405060708090a0b0c0d0e0f10");
	cr_assert_eq(json_integer_value(json_object_get(s, "duration")), 0, "10 ns is 0 µs");
	json_decref(t);
}

Test(jaeger, a_link_to_the_parent_only_sets_its_type)
{
	tl_pb_span *sp = mk_span(TID, "0000000000000002", "0000000000000001", "x", 0, 1000, 2000, -1, NULL);
	add_link(sp, TID, "0000000000000001", NULL); /* the parent again, as a plain link: FOLLOWS_FROM */
	tl_pb_span *s1[] = {sp};
	tl_pb_resource_spans *rs[] = {mk_rs(mk_resource("s", NULL), NULL, NULL, s1, 1)};
	json_t *t = co_jaeger_trace(mk_result(TID, rs, 1));
	json_t *refs = json_object_get(json_array_get(json_object_get(t, "spans"), 0), "references");
	cr_assert_eq(json_array_size(refs), 1);
	cr_assert_str_eq(sget(json_array_get(refs, 0), "refType"), "FOLLOWS_FROM");
	cr_assert_str_eq(sget(json_array_get(refs, 0), "spanID"), "0000000000000001");
	json_decref(t);
}

Test(jaeger, span_warnings_tell_what_the_analysis_found)
{
	/* Root [1ms, 10ms]; a child starting 0.5 ms before it and ending 2 ms after; an orphan; two spans sharing an
	 * id. */
	tl_pb_span *root = mk_span(TID, "0000000000000001", NULL, "root", 2, 1000000, 10000000, -1, NULL);
	tl_pb_span *skewed =
	        mk_span(TID, "0000000000000002", "0000000000000001", "early", 3, 500000, 12000000, -1, NULL);
	tl_pb_span *orphan =
	        mk_span(TID, "0000000000000003", "00000000000000ff", "lost", 2, 2000000, 3000000, -1, NULL);
	tl_pb_span *dup1 = mk_span(TID, "0000000000000004", "0000000000000001", "a", 1, 2000000, 3000000, -1, NULL);
	tl_pb_span *dup2 = mk_span(TID, "0000000000000004", "0000000000000001", "b", 1, 4000000, 5000000, -1, NULL);
	tl_pb_span *fine = mk_span(TID, "0000000000000005", "0000000000000001", "ok", 1, 6000000, 7000000, -1, NULL);
	tl_pb_span *s1[] = {root, skewed, orphan, dup1, dup2, fine};
	tl_pb_resource_spans *rs[] = {mk_rs(mk_resource("s", NULL), NULL, NULL, s1, 6)};
	json_t *t = co_jaeger_trace(mk_result(TID, rs, 1));
	cr_assert_not_null(t);
	cr_assert(json_is_null(json_object_get(t, "warnings")));
	json_t *spans = json_object_get(t, "spans");
	cr_assert_eq(json_array_size(spans), 6);
	cr_assert(json_is_null(json_object_get(json_array_get(spans, 0), "warnings")), "the root is fine");
	cr_assert(json_is_null(json_object_get(json_array_get(spans, 5), "warnings")), "so is its last child");

	json_t *w = json_object_get(json_array_get(spans, 1), "warnings");
	cr_assert_eq(json_array_size(w), 2, "before and after");
	cr_assert_not_null(strstr(json_string_value(json_array_get(w, 0)), "starts 500"), "%s",
	                   json_string_value(json_array_get(w, 0)));
	cr_assert_not_null(strstr(json_string_value(json_array_get(w, 1)), "ends 2"), "%s",
	                   json_string_value(json_array_get(w, 1)));
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(spans, 1), "startTime")), 500,
	             "times are not adjusted");

	w = json_object_get(json_array_get(spans, 2), "warnings");
	cr_assert_eq(json_array_size(w), 1);
	cr_assert_not_null(strstr(json_string_value(json_array_get(w, 0)), "00000000000000ff"));
	cr_assert_not_null(strstr(json_string_value(json_array_get(w, 0)), "not in this trace"));

	for (size_t i = 3; i <= 4; i++) {
		w = json_object_get(json_array_get(spans, i), "warnings");
		cr_assert_eq(json_array_size(w), 1, "span %zu", i);
		cr_assert_not_null(strstr(json_string_value(json_array_get(w, 0)), "more than one span"));
	}
	json_decref(t);
}

Test(jaeger, resources_without_a_service_and_odd_values)
{
	tl_pb_span *a =
	        mk_span(TID, "0000000000000001", NULL, "a", 0, 5000, 4000, -1, NULL); /* ends before it starts */
	tl_pb_span *b = mk_span(TID, "0000000000000002", NULL, "b", 0, 5000, 6000, -1, NULL);
	tl_pb_span *c = mk_span(TID, "0000000000000003", NULL, "c", 0, 5000, 6000, -1, NULL);
	c->attributes = kvs(3);
	c->attributes[0] = kv("neg", v_int(-INT64_C(9007199254740992)));
	c->attributes[1] = kv("edge", v_int(INT64_C(9007199254740991)));
	c->attributes[2] = kv("inf", v_double(-INFINITY));
	c->n_attributes = 3;
	tl_pb_resource *none = mk_resource(NULL, "h"), *numeric = mk_resource(NULL, NULL);
	numeric->attributes[numeric->n_attributes++] = kv("service.name", v_int(7));
	tl_pb_span *s1[] = {a}, *s2[] = {b}, *s3[] = {c};
	tl_pb_resource_spans *rs[] = {mk_rs(none, NULL, NULL, s1, 1), mk_rs(numeric, NULL, NULL, s2, 1),
	                              mk_rs(NULL, NULL, NULL, s3, 1)};
	json_t *t = co_jaeger_trace(mk_result(TID, rs, 3));
	cr_assert_not_null(t);
	assert_processes_resolve(t);
	json_t *procs = json_object_get(t, "processes");
	cr_assert_eq(json_object_size(procs), 3, "{no name, host h}, {7}, {no name, no tags}");
	cr_assert_str_eq(
	        sget(json_object_get(procs, sget(span_by_id(t, "0000000000000001"), "processID")), "serviceName"),
	        CO_JAEGER_NO_SERVICE);
	cr_assert_str_eq(
	        sget(json_object_get(procs, sget(span_by_id(t, "0000000000000002"), "processID")), "serviceName"), "7");
	cr_assert_str_eq(
	        sget(json_object_get(procs, sget(span_by_id(t, "0000000000000003"), "processID")), "serviceName"),
	        CO_JAEGER_NO_SERVICE);
	cr_assert_eq(json_integer_value(json_object_get(span_by_id(t, "0000000000000001"), "duration")), 0);
	json_t *tags = json_object_get(span_by_id(t, "0000000000000003"), "tags");
	cr_assert_str_eq(json_string_value(tag_value(tags, "neg", "int64")), "-9007199254740992");
	cr_assert_eq(json_integer_value(tag_value(tags, "edge", "int64")), INT64_C(9007199254740991));
	cr_assert_str_eq(json_string_value(tag_value(tags, "inf", "float64")), "-Inf");
	json_decref(t);
}

Test(jaeger, envelopes)
{
	json_t *e = co_jaeger_error(400, "unable to parse param 'limit'");
	cr_assert_not_null(e);
	cr_assert(json_is_null(json_object_get(e, "data")));
	cr_assert_eq(json_integer_value(json_object_get(e, "total")), 0);
	cr_assert_eq(json_integer_value(json_object_get(e, "limit")), 0);
	cr_assert_eq(json_integer_value(json_object_get(e, "offset")), 0);
	json_t *errs = json_object_get(e, "errors");
	cr_assert_eq(json_array_size(errs), 1);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(errs, 0), "code")), 400);
	cr_assert_str_eq(sget(json_array_get(errs, 0), "msg"), "unable to parse param 'limit'");
	json_decref(e);

	/* The upload file: {"data": [trace, ...]} with the envelope's other keys. */
	json_t *t = co_jaeger_trace(rich_trace());
	json_t *env = co_jaeger_envelope(json_pack("[o]", t), 1, NULL);
	cr_assert_not_null(env);
	cr_assert_eq(json_array_size(json_object_get(env, "data")), 1);
	cr_assert_eq(json_integer_value(json_object_get(env, "total")), 1);
	cr_assert(json_is_null(json_object_get(env, "errors")));
	json_decref(env);

	json_t *entry = co_jaeger_error_entry(404, "trace not found", "abc");
	cr_assert_str_eq(sget(entry, "traceID"), "abc");
	json_decref(entry);
}

Test(jaeger, go_durations)
{
	static const struct {
		const char *s;
		uint64_t ns;
	} ok[] = {{"0", 0},
	          {"+0", 0},
	          {"1ns", 1},
	          {"1us", 1000},
	          {"1\xc2\xb5s", 1000},
	          {"1\xce\xbcs", 1000},
	          {"1.2ms", 1200000},
	          {"100ms", 100000000},
	          {"1s", 1000000000},
	          {".5s", 500000000},
	          {"1.s", 1000000000},
	          {"1m30s", 90000000000},
	          {"1h", UINT64_C(3600000000000)},
	          {"1.5h", UINT64_C(5400000000000)},
	          {"2h45m0.5s", UINT64_C(9900500000000)},
	          {"0.000000001s", 1},
	          {"2562047h", UINT64_C(9223369200000000000)}};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t ns = 42;
		cr_assert_eq(co_jaeger_parse_duration(ok[i].s, &ns), 0, "%s", ok[i].s);
		cr_assert_eq(ns, ok[i].ns, "%s: %llu", ok[i].s, (unsigned long long)ns);
	}
	static const char *const bad[] = {"",   "1",      "1d",  "-1s", "abc", "1sec", "s",
	                                  ".s", "1.2.3s", "1 s", "1s ", "1S",  "+",    "1h-1m"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ns;
		cr_assert_eq(co_jaeger_parse_duration(bad[i], &ns), TL_EPARSE, "\"%s\"", bad[i]);
	}
	uint64_t ns;
	cr_assert_eq(co_jaeger_parse_duration("2562048h", &ns), TL_ELIMIT, "past int64 nanoseconds");
	cr_assert_eq(co_jaeger_parse_duration("99999999999999999999ns", &ns), TL_ELIMIT);
}

Test(jaeger, trace_ids_and_kinds)
{
	uint8_t id[16], want[16] = {0};
	want[15] = 1;
	cr_assert_eq(co_jaeger_parse_trace_id("1", id), 0);
	cr_assert_eq(memcmp(id, want, 16), 0);
	cr_assert_eq(co_jaeger_parse_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736", id), 0);
	cr_assert_eq(id[0], 0x4b);
	cr_assert_eq(id[15], 0x36);
	cr_assert_eq(co_jaeger_parse_trace_id("abcdef0123456789", id), 0);
	cr_assert_eq(id[8], 0xab);
	cr_assert(tl_id_is_zero(id, 8));
	cr_assert_eq(co_jaeger_parse_trace_id("", id), TL_EPARSE);
	cr_assert_eq(co_jaeger_parse_trace_id("4bf92f3577b34da6a3ce929d0e0e47360", id), TL_EPARSE, "33 digits");
	cr_assert_eq(co_jaeger_parse_trace_id("xyz", id), TL_EPARSE);

	cr_assert_str_eq(co_jaeger_kind_name(2), "server");
	cr_assert_str_eq(co_jaeger_kind_name(3), "client");
	cr_assert_str_eq(co_jaeger_kind_name(4), "producer");
	cr_assert_str_eq(co_jaeger_kind_name(5), "consumer");
	cr_assert_str_eq(co_jaeger_kind_name(1), "internal");
	cr_assert_str_eq(co_jaeger_kind_name(0), "");
	cr_assert_str_eq(co_jaeger_kind_name(99), "");
	cr_assert_eq(co_jaeger_kind_from_name("consumer"), 5);
	cr_assert_eq(co_jaeger_kind_from_name(""), -1);
	cr_assert_eq(co_jaeger_kind_from_name("SPAN_KIND_SERVER"), -2);
}

/* ---- the HTTP API over a real store ---- */

static char dir[64];
static co_store *S;
static co_http *H;
static int port;
static uint64_t base_ns; /* the traces start around here */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* Trace ids of the stored traces. */
#define T_PREDICT "11111111111111111111111111111111"
#define T_HEALTH "0000000000000000000000000000beef" /* high half zero: "000000000000beef" in Jaeger's JSON */
#define T_TRAIN "33333333333333333333333333333333"

static void commit(tl_pb_resource_spans **rs, size_t n, uint64_t seq)
{
	tl_pb_export_req *req = az(sizeof(*req));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
	req->resource_spans = rs;
	req->n_resource_spans = n;
	co_batch *b = az(sizeof(*b));
	memset(b->agent_id, 7, sizeof(b->agent_id));
	b->seq = seq;
	b->traces = az(sizeof(*b->traces));
	b->traces[0] = req;
	b->n_traces = 1;
	int rc = co_store_commit(S, &b, 1, base_ns);
	cr_assert_eq(rc, 0, "commit: %s", tl_strerror(rc));
	cr_assert_eq(b->status, CO_BATCH_OK);
}

static void api_init(void)
{
	conv_init();
	snprintf(dir, sizeof(dir), "/tmp/tl_jaeger_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	co_store_opts o = {.dir = dir, .map_size = 64u << 20};
	tl_errmsg err = {{0}};
	int rc = co_store_open(&o, &S, &err);
	cr_assert_eq(rc, 0, "open: %s", err.msg);
	base_ns = UINT64_C(1763900000000000000); /* 2025-11-23 */

	/* frontend GET /predict (server) -> "model svc" predict (server, ERROR), ml.prediction.id=p-1; 50 ms. */
	tl_pb_span *root = mk_span(T_PREDICT, "00000000000000a1", NULL, "GET /predict", 2, base_ns, base_ns + 50000000,
	                           TL_PB_STATUS_OK, NULL);
	tl_pb_span *pred = mk_span(T_PREDICT, "00000000000000a2", "00000000000000a1", "predict", 2, base_ns + 1000000,
	                           base_ns + 40000000, TL_PB_STATUS_ERROR, "boom");
	pred->attributes = kvs(2);
	pred->attributes[0] = kv("ml.prediction.id", v_str("p-1"));
	pred->attributes[1] = kv("http.status_code", v_int(500));
	pred->n_attributes = 2;
	tl_pb_span *fetch = mk_span(T_PREDICT, "00000000000000a3", "00000000000000a2", "fetch features", 3,
	                            base_ns + 2000000, base_ns + 3000000, -1, NULL);
	tl_pb_span *s1[] = {root}, *s2[] = {pred, fetch};
	tl_pb_resource_spans *rs1[] = {mk_rs(mk_resource("frontend", "web-1"), "http", "1.0", s1, 1),
	                               mk_rs(mk_resource("model svc", "gpu-1"), "rpc", NULL, s2, 2)};
	commit(rs1, 2, 1);

	/* frontend GET /health, 1 ms, one second later. */
	tl_pb_span *health = mk_span(T_HEALTH, "00000000000000b1", NULL, "GET /health", 2, base_ns + 1000000000,
	                             base_ns + 1001000000, TL_PB_STATUS_UNSET, NULL);
	tl_pb_span *s3[] = {health};
	tl_pb_resource_spans *rs2[] = {mk_rs(mk_resource("frontend", "web-1"), "http", "1.0", s3, 1)};
	commit(rs2, 1, 2);

	/* batch train (internal), 2 s, two seconds later, ml.model.version=7. */
	tl_pb_span *train = mk_span(T_TRAIN, "00000000000000c1", NULL, "train", 1, base_ns + 2000000000,
	                            base_ns + 4000000000, TL_PB_STATUS_OK, NULL);
	train->attributes = kvs(1);
	train->attributes[0] = kv("ml.model.version", v_str("7"));
	train->n_attributes = 1;
	tl_pb_span *s4[] = {train};
	tl_pb_resource_spans *rs3[] = {mk_rs(mk_resource("batch", NULL), NULL, NULL, s4, 1)};
	commit(rs3, 1, 3);

	co_http_opts ho = {.listen = "127.0.0.1:0"};
	rc = co_http_start(&ho, S, NULL, &H, &err);
	cr_assert_eq(rc, 0, "http: %s", err.msg);
	port = co_http_port(H);
}

static void api_fini(void)
{
	co_http_stop(H);
	H = NULL;
	co_store_close(S);
	S = NULL;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	conv_fini();
}

TestSuite(jaeger_api, .init = api_init, .fini = api_fini, .timeout = 60);

/* GET path; checks the status and the envelope; returns the parsed body (caller decrefs). */
static json_t *get(const char *path, int want_status)
{
	tk_http_resp r;
	int rc = tk_http(port, "GET", path, NULL, 0, NULL, 0, 10000, &r);
	cr_assert_eq(rc, 0, "GET %s: %s", path, tl_strerror(rc));
	cr_assert_eq(r.status, want_status, "GET %s: status %d, want %d: %s", path, r.status, want_status, r.body);
	const char *ct = tk_http_header(&r, "content-type");
	cr_assert(ct != NULL && strncmp(ct, "application/json", 16) == 0, "GET %s: content-type %s", path, ct);
	json_error_t je;
	json_t *o = json_loads(r.body, 0, &je);
	cr_assert_not_null(o, "GET %s: not JSON (%s): %s", path, je.text, r.body);
	tk_http_resp_fini(&r);
	/* The envelope the Jaeger UI reads. */
	cr_assert(json_is_object(o));
	cr_assert_not_null(json_object_get(o, "data"), "GET %s: no data", path);
	cr_assert(json_is_integer(json_object_get(o, "total")), "GET %s: no total", path);
	cr_assert_eq(json_integer_value(json_object_get(o, "limit")), 0);
	cr_assert_eq(json_integer_value(json_object_get(o, "offset")), 0);
	json_t *errors = json_object_get(o, "errors");
	if (want_status == 200) {
		cr_assert(errors != NULL && (json_is_null(errors) || json_is_array(errors)), "GET %s: errors", path);
	} else {
		cr_assert(json_is_null(json_object_get(o, "data")), "GET %s: an error carries no data", path);
		cr_assert_eq(json_array_size(errors), 1, "GET %s: one error", path);
		cr_assert_eq(json_integer_value(json_object_get(json_array_get(errors, 0), "code")), want_status);
		sget(json_array_get(errors, 0), "msg");
	}
	return o;
}

/* A 400 whose message names the parameter. */
static void bad(const char *path, const char *param)
{
	json_t *o = get(path, 400);
	const char *msg = sget(json_array_get(json_object_get(o, "errors"), 0), "msg");
	cr_assert_not_null(strstr(msg, param), "GET %s: \"%s\" does not name %s", path, msg, param);
	json_decref(o);
}

Test(jaeger_api, trace_by_id)
{
	json_t *o = get("/api/traces/" T_PREDICT, 200);
	cr_assert(json_is_null(json_object_get(o, "errors")));
	cr_assert_eq(json_integer_value(json_object_get(o, "total")), 1);
	json_t *data = json_object_get(o, "data");
	cr_assert_eq(json_array_size(data), 1);
	json_t *t = json_array_get(data, 0);
	cr_assert_str_eq(sget(t, "traceID"), T_PREDICT);
	json_t *spans = json_object_get(t, "spans");
	cr_assert_eq(json_array_size(spans), 3);
	for (size_t i = 0; i < 3; i++)
		assert_span_shape(json_array_get(spans, i));
	assert_processes_resolve(t);
	cr_assert_eq(json_object_size(json_object_get(t, "processes")), 2);
	json_t *pred = span_by_id(t, "00000000000000a2");
	cr_assert_str_eq(sget(pred, "operationName"), "predict");
	cr_assert(json_is_true(tag_value(json_object_get(pred, "tags"), "error", "bool")));
	cr_assert_eq(json_integer_value(json_object_get(pred, "startTime")), (json_int_t)(base_ns / 1000 + 1000));
	cr_assert_eq(json_integer_value(json_object_get(pred, "duration")), 39000);
	json_t *ref = json_array_get(json_object_get(pred, "references"), 0);
	cr_assert_str_eq(sget(ref, "refType"), "CHILD_OF");
	cr_assert_str_eq(sget(ref, "spanID"), "00000000000000a1");
	json_t *proc = json_object_get(json_object_get(t, "processes"), sget(pred, "processID"));
	cr_assert_str_eq(sget(proc, "serviceName"), "model svc");
	json_decref(o);

	/* The short form of an id whose high half is zero (as Jaeger prints it), and upper case. */
	o = get("/api/traces/beef", 200);
	cr_assert_str_eq(sget(json_array_get(json_object_get(o, "data"), 0), "traceID"), "000000000000beef");
	json_decref(o);
	o = get("/api/traces/000000000000BEEF?start=1&end=9999999999999999", 200);
	json_decref(o);
}

Test(jaeger_api, trace_errors)
{
	json_t *o = get("/api/traces/22222222222222222222222222222222", 404);
	cr_assert_str_eq(sget(json_array_get(json_object_get(o, "errors"), 0), "msg"), "trace not found");
	json_decref(o);
	bad("/api/traces/xyz", "traceID");
	bad("/api/traces/111111111111111111111111111111111", "traceID");
	bad("/api/traces/" T_PREDICT "?start=yesterday", "start");
	bad("/api/traces/" T_PREDICT "?end=-5", "end");
	bad("/api/traces/" T_PREDICT "?end=99999999999999999", "end");
	o = get("/api/nothing/here", 404);
	json_decref(o);

	tk_http_resp r;
	cr_assert_eq(tk_http(port, "POST", "/api/traces", NULL, 0, "{}", 2, 10000, &r), 0);
	cr_assert_eq(r.status, 405);
	cr_assert_str_eq(tk_http_header(&r, "allow"), "GET, HEAD");
	json_t *e = json_loads(r.body, 0, NULL);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(json_object_get(e, "errors"), 0), "code")), 405);
	json_decref(e);
	tk_http_resp_fini(&r);
}

Test(jaeger_api, search_by_trace_ids)
{
	json_t *o = get("/api/traces?traceID=" T_PREDICT "&traceID=beef&traceID=2222", 200);
	json_t *data = json_object_get(o, "data");
	cr_assert_eq(json_array_size(data), 2);
	cr_assert_eq(json_integer_value(json_object_get(o, "total")), 2);
	cr_assert_str_eq(sget(json_array_get(data, 0), "traceID"), T_PREDICT);
	cr_assert_str_eq(sget(json_array_get(data, 1), "traceID"), "000000000000beef");
	json_t *errors = json_object_get(o, "errors");
	cr_assert_eq(json_array_size(errors), 1);
	json_t *e = json_array_get(errors, 0);
	cr_assert_eq(json_integer_value(json_object_get(e, "code")), 404);
	cr_assert_str_eq(sget(e, "traceID"), "0000000000002222");
	json_decref(o);
	bad("/api/traces?traceID=nothex", "traceID");
}

Test(jaeger_api, bad_search_parameters_name_themselves)
{
	bad("/api/traces?service=frontend&minDuration=1d", "minDuration");
	bad("/api/traces?service=frontend&maxDuration=fast", "maxDuration");
	bad("/api/traces?service=frontend&minDuration=-1s", "minDuration");
	bad("/api/traces?service=frontend&minDuration=2s&maxDuration=1s", "maxDuration");
	bad("/api/traces?service=frontend&limit=-1", "limit");
	bad("/api/traces?service=frontend&limit=ten", "limit");
	bad("/api/traces?service=frontend&limit=99999999999", "limit");
	bad("/api/traces?service=frontend&start=abc", "start");
	bad("/api/traces?service=frontend&end=1.5", "end");
	bad("/api/traces?service=frontend&start=2000&end=1000", "start");
	bad("/api/traces?service=frontend&lookback=forever", "lookback");
	bad("/api/traces?service=frontend&tag=novalue", "tag");
	bad("/api/traces?service=frontend&tags=%7Bnot%20json", "tags");
	bad("/api/traces?service=frontend&tags=%5B1%5D", "tags");
	bad("/api/traces?service=frontend&tags=%7B%22a%22%3A%5B1%5D%7D", "tags");
	bad("/api/operations", "service");
	bad("/api/operations?service=frontend&spanKind=SPAN_KIND_SERVER", "spanKind");
	bad("/api/dependencies?endTs=now", "endTs");
	bad("/api/dependencies?endTs=1&lookback=1h", "lookback");
}

Test(jaeger_api, routes_are_counted_in_metrics)
{
	json_t *o = get("/api/traces/" T_PREDICT, 200);
	json_decref(o);
	o = get("/api/traces/" T_PREDICT, 200);
	json_decref(o);
	o = get("/api/services", 200);
	json_decref(o);
	o = get("/api/services/frontend/operations", 200);
	json_decref(o);
	o = get("/api/operations?service=frontend", 200);
	json_decref(o);
	o = get("/api/dependencies", 200);
	json_decref(o);
	double v = 0;
	cr_assert_eq(tk_metric(port, "threadline_collector_http_requests_total{route=\"jaeger_trace\"}", &v), 0);
	cr_assert_eq(v, 2);
	cr_assert_eq(tk_metric(port, "threadline_collector_http_requests_total{route=\"jaeger_services\"}", &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(tk_metric(port, "threadline_collector_http_requests_total{route=\"jaeger_operations\"}", &v), 0);
	cr_assert_eq(v, 2);
	cr_assert_eq(tk_metric(port, "threadline_collector_http_requests_total{route=\"jaeger_dependencies\"}", &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(tk_metric(port, "threadline_collector_http_requests_total{route=\"jaeger_search\"}", &v), 0);
	cr_assert_eq(v, 0);
}

/* ---- routes that read the search indexes (co_index.c) ---- */

/* The trace ids of a search answer, in order, joined by ','. */
static void ids_of(json_t *o, char *out, size_t cap)
{
	out[0] = '\0';
	json_t *data = json_object_get(o, "data");
	for (size_t i = 0; i < json_array_size(data); i++) {
		json_t *t = json_array_get(data, i);
		assert_processes_resolve(t);
		size_t len = strlen(out);
		snprintf(out + len, cap - len, "%s%s", i ? "," : "", sget(t, "traceID"));
	}
	cr_assert_eq(json_integer_value(json_object_get(o, "total")), (json_int_t)json_array_size(data));
}

static void search(const char *query, const char *want)
{
	char path[512], got[512];
	snprintf(path, sizeof(path), "/api/traces?%s", query);
	json_t *o = get(path, 200);
	ids_of(o, got, sizeof(got));
	cr_assert_str_eq(got, want, "GET %s", path);
	json_decref(o);
}

#define ID_PREDICT T_PREDICT
#define ID_HEALTH "000000000000beef"
#define ID_TRAIN T_TRAIN

Test(jaeger_api, search_traces)
{
	search("service=frontend", ID_HEALTH "," ID_PREDICT);
	search("service=frontend&operation=GET%20%2Fpredict", ID_PREDICT);
	search("service=frontend&limit=1", ID_HEALTH);
	search("service=model+svc", ID_PREDICT);
	search("tags=%7B%22ml.prediction.id%22%3A%22p-1%22%7D", ID_PREDICT); /* across services, as Jaeger cannot */
	search("service=batch&tag=ml.model.version:7", ID_TRAIN);
	search("service=batch&tags=%7B%22ml.model.version%22%3A7%7D", ID_TRAIN); /* a JSON number */
	search("tag=http.status_code:500", ID_PREDICT);
	search("tag=error:true", ID_PREDICT);
	search("service=frontend&tag=error:true", "");
	search("minDuration=1s", ID_TRAIN);
	search("service=frontend&maxDuration=5ms", ID_HEALTH);
	search("minDuration=10ms&maxDuration=1.5s", ID_PREDICT);
	char q[256];
	snprintf(q, sizeof(q), "start=%llu&end=%llu", (unsigned long long)(base_ns / 1000 + 500000),
	         (unsigned long long)(base_ns / 1000 + 1500000));
	search(q, ID_HEALTH);
	snprintf(q, sizeof(q), "service=frontend&start=%llu&end=%llu&lookback=1h", (unsigned long long)(base_ns / 1000),
	         (unsigned long long)(base_ns / 1000));
	search(q, ID_PREDICT); /* end is a whole microsecond, included; lookback ignored */
	search("service=nobody", "");
	/* Whole traces, as the UI draws them from the search page. */
	json_t *o = get("/api/traces?service=frontend&operation=GET%20%2Fpredict", 200);
	cr_assert_eq(json_array_size(json_object_get(json_array_get(json_object_get(o, "data"), 0), "spans")), 3);
	json_decref(o);
}

Test(jaeger_api, services_operations_dependencies)
{
	json_t *o = get("/api/services", 200);
	json_t *want = json_pack("[s,s,s]", "batch", "frontend", "model svc");
	cr_assert(json_equal(json_object_get(o, "data"), want), "services: %s",
	          json_dumps(json_object_get(o, "data"), JSON_COMPACT));
	cr_assert_eq(json_integer_value(json_object_get(o, "total")), 3);
	json_decref(want);
	json_decref(o);

	o = get("/api/operations?service=frontend", 200);
	want = json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "GET /health", "spanKind", "server", "name", "GET /predict",
	                 "spanKind", "server");
	cr_assert(json_equal(json_object_get(o, "data"), want), "operations: %s",
	          json_dumps(json_object_get(o, "data"), JSON_COMPACT));
	json_decref(want);
	json_decref(o);

	o = get("/api/operations?service=model%20svc&spanKind=client", 200);
	want = json_pack("[{s:s,s:s}]", "name", "fetch features", "spanKind", "client");
	cr_assert(json_equal(json_object_get(o, "data"), want));
	json_decref(want);
	json_decref(o);

	o = get("/api/services/model%20svc/operations", 200);
	want = json_pack("[s,s]", "fetch features", "predict");
	cr_assert(json_equal(json_object_get(o, "data"), want));
	cr_assert_eq(json_integer_value(json_object_get(o, "total")), 2);
	json_decref(want);
	json_decref(o);

	o = get("/api/services/nobody/operations", 200);
	cr_assert_eq(json_array_size(json_object_get(o, "data")), 0);
	json_decref(o);

	char path[128];
	snprintf(path, sizeof(path), "/api/dependencies?endTs=%llu&lookback=%llu",
	         (unsigned long long)(base_ns / 1000000 + 10000), 3600000ull);
	o = get(path, 200);
	json_t *deps = json_object_get(o, "data");
	bool seen = false;
	for (size_t i = 0; i < json_array_size(deps); i++) {
		json_t *d = json_array_get(deps, i);
		cr_assert(json_is_integer(json_object_get(d, "callCount")));
		if (strcmp(sget(d, "parent"), "frontend") == 0 && strcmp(sget(d, "child"), "model svc") == 0) {
			cr_assert_eq(json_integer_value(json_object_get(d, "callCount")), 1);
			seen = true;
		}
		cr_assert_str_neq(sget(d, "parent"), "batch", "batch calls nobody");
	}
	cr_assert(seen, "frontend -> model svc is missing");
	json_decref(o);
	snprintf(path, sizeof(path), "/api/dependencies?endTs=%llu&lookback=1000",
	         (unsigned long long)(base_ns / 1000000 - 10000));
	o = get(path, 200);
	cr_assert_eq(json_array_size(json_object_get(o, "data")), 0, "a window before every trace");
	json_decref(o);
}
