/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End to end on loopback: a real threadline-collector and threadline-agent
 * per test (free ports, temporary dirs), OTLP/HTTP requests in protobuf and
 * JSON, and `threadline trace show` reading everything back. The expected
 * CLI output is derived from the very protobuf structs that were sent, and
 * compared field by field; the JSON requests are produced from the same
 * structs with the encodings OTLP/JSON allows (ids in either case, 64-bit
 * numbers as strings or numbers, enums as integers, unknown fields).
 * Bad input (garbage, truncation, wrong id lengths, wrong content type,
 * oversized and stalled requests) must get its documented answer while the
 * agent keeps serving.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "tl_arena.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_pb.h"
#include "tl_testkit.h"

#define CT_PB "application/x-protobuf"
#define CT_JSON "application/json"
#define HTTP_TIMEOUT_MS 15000

/* Base time: past 2^53 ns, so only exact 64-bit handling survives the trip. */
#define T0 UINT64_C(1700000000123456789)
#define MS UINT64_C(1000000)

static tk_stack st;
static tl_arena A;

/* ---- fixture ---- */

static void setup(void)
{
	tl_arena_init(&A, 64 * 1024, 0);
	TK_STACK_START(&st, "e2e", NULL);
}

static void teardown(void)
{
	tk_stack_stop(&st, 10000);
	tl_arena_fini(&A);
}

#define must(cond, ...) TK_MUST(&st, cond, __VA_ARGS__)

/* Every test ends here: SIGTERM must make both daemons exit 0 on their own, with no sanitizer report. */
#define stop_checked() TK_STACK_STOP_CHECKED(&st, 10000)

/* ---- building OTLP requests (all memory in the arena A) ---- */

static void *al(size_t n)
{
	void *p = tl_arena_alloc(&A, n);
	cr_assert_not_null(p, "arena");
	memset(p, 0, n);
	return p;
}

static char *sd(const char *s)
{
	return tl_arena_strndup(&A, s, strlen(s));
}

static ProtobufCBinaryData hexbin(const char *hex)
{
	ProtobufCBinaryData b = {0};
	size_t n = strlen(hex) / 2;
	if (n == 0)
		return b;
	b.data = al(n);
	b.len = n;
	cr_assert_eq(tl_hex_decode(hex, strlen(hex), b.data, n), 0, "bad hex in test: %s", hex);
	return b;
}

static tl_pb_anyvalue *v_new(void)
{
	tl_pb_anyvalue *v = al(sizeof(*v));
	tl_pb_anyvalue init = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	*v = init;
	return v;
}

static tl_pb_anyvalue *v_str(const char *s)
{
	tl_pb_anyvalue *v = v_new();
	v->value_case = TL_PB_ANY_STRING;
	v->string_value = sd(s);
	return v;
}

static tl_pb_anyvalue *v_bool(bool b)
{
	tl_pb_anyvalue *v = v_new();
	v->value_case = TL_PB_ANY_BOOL;
	v->bool_value = b;
	return v;
}

static tl_pb_anyvalue *v_int(int64_t i)
{
	tl_pb_anyvalue *v = v_new();
	v->value_case = TL_PB_ANY_INT;
	v->int_value = i;
	return v;
}

static tl_pb_anyvalue *v_dbl(double d)
{
	tl_pb_anyvalue *v = v_new();
	v->value_case = TL_PB_ANY_DOUBLE;
	v->double_value = d;
	return v;
}

static tl_pb_anyvalue *v_bytes(const void *p, size_t n)
{
	tl_pb_anyvalue *v = v_new();
	v->value_case = TL_PB_ANY_BYTES;
	v->bytes_value.len = n;
	v->bytes_value.data = al(n + 1);
	memcpy(v->bytes_value.data, p, n);
	return v;
}

/* v_arr(n, tl_pb_anyvalue *...) */
static tl_pb_anyvalue *v_arr(size_t n, ...)
{
	tl_pb_anyvalue *v = v_new();
	tl_pb_arrayvalue *a = al(sizeof(*a));
	tl_pb_arrayvalue init = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
	*a = init;
	a->n_values = n;
	a->values = al(sizeof(*a->values) * (n + 1));
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		a->values[i] = va_arg(ap, tl_pb_anyvalue *);
	va_end(ap);
	v->value_case = TL_PB_ANY_ARRAY;
	v->array_value = a;
	return v;
}

static tl_pb_keyvalue *kv(const char *key, tl_pb_anyvalue *val)
{
	tl_pb_keyvalue *k = al(sizeof(*k));
	tl_pb_keyvalue init = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
	*k = init;
	k->key = sd(key);
	k->value = val;
	return k;
}

static tl_pb_keyvalue **kv_list(size_t n, va_list ap)
{
	tl_pb_keyvalue **l = al(sizeof(*l) * (n + 1));
	for (size_t i = 0; i < n; i++)
		l[i] = va_arg(ap, tl_pb_keyvalue *);
	return l;
}

/* v_kvl(n, tl_pb_keyvalue *...) */
static tl_pb_anyvalue *v_kvl(size_t n, ...)
{
	tl_pb_anyvalue *v = v_new();
	tl_pb_kvlist *l = al(sizeof(*l));
	tl_pb_kvlist init = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
	*l = init;
	va_list ap;
	va_start(ap, n);
	l->values = kv_list(n, ap);
	va_end(ap);
	l->n_values = n;
	v->value_case = TL_PB_ANY_KVLIST;
	v->kvlist_value = l;
	return v;
}

/* An attribute list for a span, event, link or resource: attrs(&n_field, n, kv...) */
static tl_pb_keyvalue **attrs(size_t *n_out, size_t n, ...)
{
	va_list ap;
	va_start(ap, n);
	tl_pb_keyvalue **l = kv_list(n, ap);
	va_end(ap);
	*n_out = n;
	return l;
}

static tl_pb_span *mk_span(const char *trace_hex, const char *span_hex, const char *parent_hex, const char *name,
                           int kind, uint64_t start, uint64_t end)
{
	tl_pb_span *s = al(sizeof(*s));
	tl_pb_span init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
	*s = init;
	s->trace_id = hexbin(trace_hex);
	s->span_id = hexbin(span_hex);
	s->parent_span_id = hexbin(parent_hex);
	s->name = sd(name);
	s->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)kind;
	s->start_time_unix_nano = start;
	s->end_time_unix_nano = end;
	s->flags = 1;
	return s;
}

static void set_status(tl_pb_span *s, int code, const char *msg)
{
	tl_pb_status *stt = al(sizeof(*stt));
	tl_pb_status init = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
	*stt = init;
	stt->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)code;
	stt->message = sd(msg);
	s->status = stt;
}

static tl_pb_event *mk_event(const char *name, uint64_t t)
{
	tl_pb_event *e = al(sizeof(*e));
	tl_pb_event init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
	*e = init;
	e->name = sd(name);
	e->time_unix_nano = t;
	return e;
}

static tl_pb_link *mk_link(const char *trace_hex, const char *span_hex, const char *trace_state)
{
	tl_pb_link *l = al(sizeof(*l));
	tl_pb_link init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
	*l = init;
	l->trace_id = hexbin(trace_hex);
	l->span_id = hexbin(span_hex);
	l->trace_state = sd(trace_state);
	l->flags = 1;
	return l;
}

/* mk_ss(scope name, version, n, tl_pb_span *...) */
static tl_pb_scope_spans *mk_ss(const char *name, const char *version, size_t n, ...)
{
	tl_pb_scope_spans *ss = al(sizeof(*ss));
	tl_pb_scope_spans init = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
	*ss = init;
	tl_pb_scope *sc = al(sizeof(*sc));
	tl_pb_scope sinit = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	*sc = sinit;
	sc->name = sd(name);
	sc->version = sd(version);
	ss->scope = sc;
	ss->n_spans = n;
	ss->spans = al(sizeof(*ss->spans) * (n + 1));
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		ss->spans[i] = va_arg(ap, tl_pb_span *);
	va_end(ap);
	return ss;
}

/* mk_rs(resource attrs, n attrs, n scopes, tl_pb_scope_spans *...) */
static tl_pb_resource_spans *mk_rs(tl_pb_keyvalue **ra, size_t nra, size_t n, ...)
{
	tl_pb_resource_spans *rs = al(sizeof(*rs));
	tl_pb_resource_spans init = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
	*rs = init;
	tl_pb_resource *r = al(sizeof(*r));
	tl_pb_resource rinit = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	*r = rinit;
	r->attributes = ra;
	r->n_attributes = nra;
	rs->resource = r;
	rs->n_scope_spans = n;
	rs->scope_spans = al(sizeof(*rs->scope_spans) * (n + 1));
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		rs->scope_spans[i] = va_arg(ap, tl_pb_scope_spans *);
	va_end(ap);
	return rs;
}

static tl_pb_export_req *mk_req(size_t n, ...)
{
	tl_pb_export_req *req = al(sizeof(*req));
	tl_pb_export_req init = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	*req = init;
	req->n_resource_spans = n;
	req->resource_spans = al(sizeof(*req->resource_spans) * (n + 1));
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		req->resource_spans[i] = va_arg(ap, tl_pb_resource_spans *);
	va_end(ap);
	return req;
}

static uint8_t *pack_req(const tl_pb_export_req *req, size_t *len)
{
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(req);
	uint8_t *buf = al(*len + 1);
	cr_assert_eq(opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, buf), *len);
	return buf;
}

static tl_pb_keyvalue **service_res(size_t *n, const char *service)
{
	return attrs(n, 1, kv("service.name", v_str(service)));
}

/*
 * The rich request: two services, three scopes, seven spans in one trace
 * (every span kind, parent/child across services, sent out of start order),
 * attributes of every AnyValue type with nesting, events, links, every status
 * code, trace_state and flags.
 */
#define ID_ROOT "a1b2c3d4e5f60718"
#define ID_CALL "00000000000000ff"
#define ID_DB "8000000000000001"
#define ID_CHARGE "fedcba9876543210"
#define ID_PUB "1111111111111111"
#define ID_CONS "2222222222222222"
#define ID_MISC "0123456789abcdef"
#define LINKED_TRACE "0af7651916cd43dd8448eb211c80319c"
#define LINKED_SPAN "b7ad6b7169203331"

static tl_pb_export_req *rich_request(const char *trace)
{
	static const uint8_t raw[] = {0x00, 0xff, 0x10, 0x80, 'a', 0x00};

	tl_pb_span *root = mk_span(trace, ID_ROOT, "", "GET /checkout", 2, T0, T0 + 250 * MS);
	root->trace_state = sd("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	root->flags = 0x301;
	root->attributes = attrs(
	        &root->n_attributes, 22, kv("str", v_str("h\xc3\xa9llo \"quoted\" \\ /\n\ttab \xe2\x9c\x93")),
	        kv("str.empty", v_str("")), kv("bool.true", v_bool(true)), kv("bool.false", v_bool(false)),
	        kv("int.pos", v_int(42)), kv("int.zero", v_int(0)), kv("int.neg", v_int(-7)),
	        kv("int.max", v_int(INT64_MAX)), kv("int.min", v_int(INT64_MIN)),
	        kv("int.2p53p1", v_int(9007199254740993)), kv("dbl", v_dbl(3.25)), kv("dbl.neg", v_dbl(-0.001)),
	        kv("dbl.big", v_dbl(1.5e300)), kv("dbl.whole", v_dbl(2.0)), kv("dbl.pi", v_dbl(3.141592653589793)),
	        kv("arr.str", v_arr(2, v_str("a"), v_str("b"))),
	        kv("arr.mixed", v_arr(5, v_int(1), v_str("two"), v_bool(true), v_dbl(2.5), v_bytes("\x01\x02", 2))),
	        kv("arr.nested",
	           v_arr(3, v_arr(2, v_int(1), v_int(2)), v_arr(1, v_str("x")), v_kvl(1, kv("in.arr", v_bool(false))))),
	        kv("arr.empty", v_arr(0)),
	        kv("kv", v_kvl(4, kv("inner.str", v_str("v")), kv("inner.int", v_int(5)),
	                       kv("inner.kv",
	                          v_kvl(2, kv("deep", v_bool(true)), kv("deeper", v_kvl(1, kv("x", v_dbl(0.5)))))),
	                       kv("inner.arr", v_arr(2, v_int(1), v_str("s"))))),
	        kv("bytes", v_bytes(raw, 5)), kv("kv.empty", v_kvl(0)));
	root->n_events = 2;
	root->events = al(sizeof(*root->events) * 2);
	root->events[0] = mk_event("cache.miss", T0 + 1 * MS);
	root->events[0]->attributes = attrs(&root->events[0]->n_attributes, 3, kv("key", v_str("user:1")),
	                                    kv("size", v_int(128)), kv("hit.ratio", v_dbl(0.25)));
	root->events[1] = mk_event("retry", T0 + 2 * MS + 17);
	root->n_links = 1;
	root->links = al(sizeof(*root->links));
	root->links[0] = mk_link(LINKED_TRACE, LINKED_SPAN, "k=v");
	root->links[0]->attributes =
	        attrs(&root->links[0]->n_attributes, 2, kv("link.kind", v_str("follows")), kv("link.n", v_int(3)));
	set_status(root, TL_PB_STATUS_OK, "");

	tl_pb_span *call = mk_span(trace, ID_CALL, ID_ROOT, "call payments", 3, T0 + 10 * MS, T0 + 200 * MS);
	call->attributes = attrs(&call->n_attributes, 2, kv("http.request.method", v_str("POST")),
	                         kv("http.response.status_code", v_int(402)));

	tl_pb_span *db = mk_span(trace, ID_DB, ID_ROOT, "SELECT orders", 1, T0 + 3 * MS, T0 + 9 * MS);
	db->attributes = attrs(&db->n_attributes, 1, kv("db.system", v_str("postgresql")));
	db->flags = 0;

	tl_pb_span *charge = mk_span(trace, ID_CHARGE, ID_CALL, "charge", 2, T0 + 20 * MS, T0 + 190 * MS);
	set_status(charge, TL_PB_STATUS_ERROR, "card declined");
	charge->n_events = 1;
	charge->events = al(sizeof(*charge->events));
	charge->events[0] = mk_event("exception", T0 + 189 * MS);
	charge->events[0]->attributes =
	        attrs(&charge->events[0]->n_attributes, 3, kv("exception.type", v_str("CardError")),
	              kv("exception.message", v_str("card declined")),
	              kv("exception.stacktrace", v_str("CardError: card declined\n  at charge")));

	tl_pb_span *pub = mk_span(trace, ID_PUB, ID_CHARGE, "publish receipt", 4, T0 + 30 * MS, T0 + 31 * MS);
	tl_pb_span *cons = mk_span(trace, ID_CONS, ID_PUB, "consume receipt", 5, T0 + 40 * MS, T0 + 60 * MS);
	cons->n_links = 1;
	cons->links = al(sizeof(*cons->links));
	cons->links[0] = mk_link(trace, ID_PUB, "");
	tl_pb_span *misc = mk_span(trace, ID_MISC, ID_CHARGE, "unspecified kind", 0, T0 + 50 * MS, T0 + 50 * MS);

	size_t nra, nrb;
	tl_pb_keyvalue **ra =
	        attrs(&nra, 4, kv("service.name", v_str("checkout")), kv("service.version", v_str("1.2.3")),
	              kv("host.cores", v_int(8)), kv("deployment.canary", v_bool(true)));
	tl_pb_keyvalue **rb = attrs(&nrb, 2, kv("service.name", v_str("payments")),
	                            kv("cloud.zones", v_arr(2, v_str("a"), v_str("b"))));
	/* Children before parents, and out of start order, on purpose. */
	return mk_req(
	        2, mk_rs(ra, nra, 2, mk_ss("io.threadline.test/http", "0.9.1", 2, call, root), mk_ss("db", "", 1, db)),
	        mk_rs(rb, nrb, 1, mk_ss("payments-lib", "2", 4, misc, cons, pub, charge)));
}

/* ---- the expected CLI JSON, derived from what was sent ---- */

static json_t *b64(const uint8_t *p, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *out = al(cap);
	sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	return json_string(out);
}

static json_t *hexj(ProtobufCBinaryData b)
{
	char *out = al(b.len * 2 + 1);
	tl_hex_encode(b.data, b.len, out);
	return json_string(out);
}

static json_t *attrs_json(tl_pb_keyvalue **kvs, size_t n);

static json_t *any_json(const tl_pb_anyvalue *v)
{
	if (v == NULL)
		return json_null();
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		return json_string(v->string_value);
	case TL_PB_ANY_BOOL:
		return json_boolean(v->bool_value);
	case TL_PB_ANY_INT:
		return json_integer(v->int_value);
	case TL_PB_ANY_DOUBLE:
		return json_real(v->double_value);
	case TL_PB_ANY_BYTES:
		return b64(v->bytes_value.data, v->bytes_value.len);
	case TL_PB_ANY_ARRAY: {
		json_t *a = json_array();
		for (size_t i = 0; i < v->array_value->n_values; i++)
			json_array_append_new(a, any_json(v->array_value->values[i]));
		return a;
	}
	case TL_PB_ANY_KVLIST:
		return attrs_json(v->kvlist_value->values, v->kvlist_value->n_values);
	default:
		return json_null();
	}
}

static json_t *attrs_json(tl_pb_keyvalue **kvs, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, kvs[i]->key, any_json(kvs[i]->value));
	return o;
}

static const char *kind_name(int k)
{
	static const char *names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
	return k >= 0 && k <= 5 ? names[k] : "?";
}

static json_t *u64s(uint64_t v)
{
	char b[32];
	snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	return json_string(b);
}

static const char *service_of(const tl_pb_resource *r)
{
	for (size_t i = 0; r != NULL && i < r->n_attributes; i++)
		if (strcmp(r->attributes[i]->key, "service.name") == 0 && r->attributes[i]->value != NULL &&
		    r->attributes[i]->value->value_case == TL_PB_ANY_STRING)
			return r->attributes[i]->value->string_value;
	return "";
}

static bool id_in(const char *hex, json_t *ids)
{
	return json_object_get(ids, hex) != NULL;
}

static int by_start(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	unsigned long long sx = strtoull(json_string_value(json_object_get(x, "start_unix_nano")), NULL, 10);
	unsigned long long sy = strtoull(json_string_value(json_object_get(y, "start_unix_nano")), NULL, 10);
	return sx < sy ? -1 : sx > sy;
}

/*
 * Appends to spans (a JSON array) the CLI view of every valid span of trace
 * trace_hex in req. missing_parent is filled in by finish_expected().
 */
static void expect_spans(json_t *spans, const tl_pb_export_req *req, const char *trace_hex)
{
	for (size_t r = 0; r < req->n_resource_spans; r++) {
		const tl_pb_resource_spans *rs = req->resource_spans[r];
		for (size_t s = 0; s < rs->n_scope_spans; s++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[s];
			for (size_t i = 0; i < ss->n_spans; i++) {
				const tl_pb_span *sp = ss->spans[i];
				if (sp->trace_id.len != 16 || sp->span_id.len != 8)
					continue; /* rejected by the agent */
				json_t *tid = hexj(sp->trace_id);
				bool mine = strcmp(json_string_value(tid), trace_hex) == 0;
				json_decref(tid);
				if (!mine)
					continue;
				json_t *events = json_array(), *links = json_array();
				for (size_t e = 0; e < sp->n_events; e++)
					json_array_append_new(
					        events, json_pack("{s:s, s:o, s:o}", "name", sp->events[e]->name,
					                          "time_unix_nano", u64s(sp->events[e]->time_unix_nano),
					                          "attributes",
					                          attrs_json(sp->events[e]->attributes,
					                                     sp->events[e]->n_attributes)));
				for (size_t l = 0; l < sp->n_links; l++)
					json_array_append_new(links,
					                      json_pack("{s:o, s:o, s:s, s:o}", "trace_id",
					                                hexj(sp->links[l]->trace_id), "span_id",
					                                hexj(sp->links[l]->span_id), "trace_state",
					                                sp->links[l]->trace_state, "attributes",
					                                attrs_json(sp->links[l]->attributes,
					                                           sp->links[l]->n_attributes)));
				static const char *codes[] = {"UNSET", "OK", "ERROR"};
				json_t *status =
				        json_pack("{s:s, s:s}", "code", codes[sp->status ? sp->status->code : 0],
				                  "message", sp->status ? sp->status->message : "");
				json_t *o = json_pack(
				        "{s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:I, s:o, "
				        "s:{s:s, s:s}}",
				        "span_id", hexj(sp->span_id), "parent_span_id", hexj(sp->parent_span_id),
				        "service", service_of(rs->resource), "name", sp->name, "kind",
				        kind_name(sp->kind), "start_unix_nano", u64s(sp->start_time_unix_nano),
				        "end_unix_nano", u64s(sp->end_time_unix_nano), "status", status, "attributes",
				        attrs_json(sp->attributes, sp->n_attributes), "events", events, "links", links,
				        "trace_state", sp->trace_state, "flags", (json_int_t)sp->flags, "resource",
				        attrs_json(rs->resource ? rs->resource->attributes : NULL,
				                   rs->resource ? rs->resource->n_attributes : 0),
				        "scope", "name", ss->scope ? ss->scope->name : "", "version",
				        ss->scope ? ss->scope->version : "");
				cr_assert_not_null(o, "json_pack");
				json_array_append_new(spans, o);
			}
		}
	}
}

/* Sorts by start time and sets missing_parent. Takes ownership of spans. */
static json_t *finish_expected(const char *trace_hex, json_t *spans)
{
	json_t *ids = json_object();
	size_t n = json_array_size(spans);
	json_t **v = al(sizeof(*v) * (n + 1));
	for (size_t i = 0; i < n; i++) {
		v[i] = json_incref(json_array_get(spans, i));
		json_object_set_new(ids, json_string_value(json_object_get(v[i], "span_id")), json_true());
	}
	qsort(v, n, sizeof(*v), by_start);
	json_t *sorted = json_array();
	for (size_t i = 0; i < n; i++) {
		const char *parent = json_string_value(json_object_get(v[i], "parent_span_id"));
		json_object_set_new(v[i], "missing_parent", json_boolean(parent[0] != '\0' && !id_in(parent, ids)));
		json_array_append_new(sorted, v[i]);
	}
	json_decref(ids);
	json_decref(spans);
	return json_pack("{s:s, s:o}", "trace_id", trace_hex, "spans", sorted);
}

static json_t *expected_for(const tl_pb_export_req *req, const char *trace_hex)
{
	json_t *spans = json_array();
	expect_spans(spans, req, trace_hex);
	return finish_expected(trace_hex, spans);
}

/* ---- OTLP/JSON encoding of the same structs ---- */

typedef struct jopts {
	bool upper_ids;     /* ids in upper case */
	bool ints_as_str;   /* 64-bit ints as strings (else numbers) */
	bool unknown_field; /* add fields a newer OTLP might have */
} jopts;

static json_t *otlp_kvs(tl_pb_keyvalue **kvs, size_t n, jopts *o);

static json_t *jhex(ProtobufCBinaryData b, bool upper)
{
	char *out = al(b.len * 2 + 1);
	tl_hex_encode(b.data, b.len, out);
	for (char *p = out; upper && *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 32);
	return json_string(out);
}

static json_t *ju64(uint64_t v, bool as_str)
{
	return as_str ? u64s(v) : json_integer((json_int_t)v);
}

static json_t *otlp_any(const tl_pb_anyvalue *v, jopts *o)
{
	json_t *r = json_object();
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		json_object_set_new(r, "stringValue", json_string(v->string_value));
		break;
	case TL_PB_ANY_BOOL:
		json_object_set_new(r, "boolValue", json_boolean(v->bool_value));
		break;
	case TL_PB_ANY_INT:
		/* Alternate: the proto3 JSON mapping writes int64 as a string, many encoders as a number. */
		o->ints_as_str = !o->ints_as_str;
		if (o->ints_as_str) {
			char b[32];
			snprintf(b, sizeof(b), "%lld", (long long)v->int_value);
			json_object_set_new(r, "intValue", json_string(b));
		} else {
			json_object_set_new(r, "intValue", json_integer(v->int_value));
		}
		break;
	case TL_PB_ANY_DOUBLE:
		json_object_set_new(r, "doubleValue", json_real(v->double_value));
		break;
	case TL_PB_ANY_BYTES:
		json_object_set_new(r, "bytesValue", b64(v->bytes_value.data, v->bytes_value.len));
		break;
	case TL_PB_ANY_ARRAY: {
		json_t *a = json_array();
		for (size_t i = 0; i < v->array_value->n_values; i++)
			json_array_append_new(a, otlp_any(v->array_value->values[i], o));
		json_object_set_new(r, "arrayValue", json_pack("{s:o}", "values", a));
		break;
	}
	case TL_PB_ANY_KVLIST:
		json_object_set_new(
		        r, "kvlistValue",
		        json_pack("{s:o}", "values", otlp_kvs(v->kvlist_value->values, v->kvlist_value->n_values, o)));
		break;
	default:
		break;
	}
	return r;
}

static json_t *otlp_kvs(tl_pb_keyvalue **kvs, size_t n, jopts *o)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a,
		                      json_pack("{s:s, s:o}", "key", kvs[i]->key, "value", otlp_any(kvs[i]->value, o)));
	return a;
}

static json_t *otlp_span(const tl_pb_span *sp, jopts *o)
{
	json_t *s = json_object();
	json_object_set_new(s, "traceId", jhex(sp->trace_id, o->upper_ids));
	json_object_set_new(s, "spanId", jhex(sp->span_id, !o->upper_ids));
	if (sp->parent_span_id.len > 0)
		json_object_set_new(s, "parentSpanId", jhex(sp->parent_span_id, o->upper_ids));
	if (sp->trace_state[0] != '\0')
		json_object_set_new(s, "traceState", json_string(sp->trace_state));
	json_object_set_new(s, "flags", json_integer(sp->flags));
	json_object_set_new(s, "name", json_string(sp->name));
	json_object_set_new(s, "kind", json_integer(sp->kind));
	json_object_set_new(s, "startTimeUnixNano", ju64(sp->start_time_unix_nano, true));
	/* A number past 2^53: valid JSON, and exact for a decoder that reads 64-bit integers. */
	json_object_set_new(s, "endTimeUnixNano", ju64(sp->end_time_unix_nano, false));
	json_object_set_new(s, "attributes", otlp_kvs(sp->attributes, sp->n_attributes, o));
	json_object_set_new(s, "droppedAttributesCount", json_integer(0));
	json_t *ev = json_array();
	for (size_t i = 0; i < sp->n_events; i++)
		json_array_append_new(ev,
		                      json_pack("{s:o, s:s, s:o}", "timeUnixNano",
		                                ju64(sp->events[i]->time_unix_nano, i % 2 == 0), "name",
		                                sp->events[i]->name, "attributes",
		                                otlp_kvs(sp->events[i]->attributes, sp->events[i]->n_attributes, o)));
	json_object_set_new(s, "events", ev);
	json_t *ln = json_array();
	for (size_t i = 0; i < sp->n_links; i++)
		json_array_append_new(ln, json_pack("{s:o, s:o, s:s, s:o, s:i}", "traceId",
		                                    jhex(sp->links[i]->trace_id, o->upper_ids), "spanId",
		                                    jhex(sp->links[i]->span_id, o->upper_ids), "traceState",
		                                    sp->links[i]->trace_state, "attributes",
		                                    otlp_kvs(sp->links[i]->attributes, sp->links[i]->n_attributes, o),
		                                    "flags", (int)sp->links[i]->flags));
	json_object_set_new(s, "links", ln);
	if (sp->status != NULL)
		json_object_set_new(
		        s, "status",
		        json_pack("{s:s, s:i}", "message", sp->status->message, "code", (int)sp->status->code));
	if (o->unknown_field)
		json_object_set_new(s, "someFutureField", json_pack("{s:[i, s, {}]}", "x", 1, "y"));
	o->upper_ids = !o->upper_ids;
	return s;
}

/* The OTLP/JSON text of req. Caller frees with free(). */
static char *otlp_json(const tl_pb_export_req *req)
{
	jopts o = {.upper_ids = true, .unknown_field = true};
	json_t *rss = json_array();
	for (size_t r = 0; r < req->n_resource_spans; r++) {
		const tl_pb_resource_spans *rs = req->resource_spans[r];
		json_t *sss = json_array();
		for (size_t s = 0; s < rs->n_scope_spans; s++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[s];
			json_t *spans = json_array();
			for (size_t i = 0; i < ss->n_spans; i++)
				json_array_append_new(spans, otlp_span(ss->spans[i], &o));
			json_array_append_new(sss,
			                      json_pack("{s:{s:s, s:s}, s:o, s:s}", "scope", "name", ss->scope->name,
			                                "version", ss->scope->version, "spans", spans, "schemaUrl",
			                                "https://opentelemetry.io/schemas/1.24.0"));
		}
		json_array_append_new(rss, json_pack("{s:{s:o, s:i}, s:o}", "resource", "attributes",
		                                     otlp_kvs(rs->resource->attributes, rs->resource->n_attributes, &o),
		                                     "droppedAttributesCount", 0, "scopeSpans", sss));
	}
	json_t *root = json_pack("{s:o}", "resourceSpans", rss);
	char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(root);
	cr_assert_not_null(text);
	return text;
}

/* ---- comparing JSON with a path in the message ---- */

/*
 * Compares exp with act. Objects: every key of exp must be in act; extra keys
 * in act are allowed except in attribute maps (strict). A double expected may
 * come back as an integer of the same value (both are JSON numbers).
 */
static bool jdiff(const char *path, json_t *exp, json_t *act, bool strict, char *out, size_t cap)
{
	if (act == NULL) {
		snprintf(out, cap, "%s: missing", path);
		return false;
	}
	if (json_is_real(exp) && json_is_number(act)) {
		if (json_number_value(exp) == json_number_value(act))
			return true;
		snprintf(out, cap, "%s: expected %.17g, got %.17g", path, json_number_value(exp),
		         json_number_value(act));
		return false;
	}
	if (json_typeof(exp) != json_typeof(act)) {
		char *e = json_dumps(exp, JSON_ENCODE_ANY | JSON_COMPACT),
		     *a = json_dumps(act, JSON_ENCODE_ANY | JSON_COMPACT);
		snprintf(out, cap, "%s: expected %s, got %s (different JSON type)", path, e, a);
		free(e);
		free(a);
		return false;
	}
	char sub[1024];
	if (json_is_object(exp)) {
		const char *k;
		json_t *v;
		json_object_foreach(exp, k, v)
		{
			snprintf(sub, sizeof(sub), "%s.%s", path, k);
			bool s = strict || strcmp(k, "attributes") == 0 || strcmp(k, "resource") == 0;
			if (!jdiff(sub, v, json_object_get(act, k), s, out, cap))
				return false;
		}
		if (strict) {
			json_object_foreach(act, k, v)
			{
				if (json_object_get(exp, k) == NULL) {
					snprintf(out, cap, "%s: unexpected key \"%s\"", path, k);
					return false;
				}
			}
		}
		return true;
	}
	if (json_is_array(exp)) {
		if (json_array_size(exp) != json_array_size(act)) {
			snprintf(out, cap, "%s: expected %zu elements, got %zu", path, json_array_size(exp),
			         json_array_size(act));
			return false;
		}
		for (size_t i = 0; i < json_array_size(exp); i++) {
			json_t *ei = json_array_get(exp, i);
			const char *nm = json_is_object(ei) ? json_string_value(json_object_get(ei, "name")) : NULL;
			if (nm != NULL)
				snprintf(sub, sizeof(sub), "%s[%zu \"%s\"]", path, i, nm);
			else
				snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			if (!jdiff(sub, ei, json_array_get(act, i), strict, out, cap))
				return false;
		}
		return true;
	}
	if (!json_equal(exp, act)) {
		char *e = json_dumps(exp, JSON_ENCODE_ANY), *a = json_dumps(act, JSON_ENCODE_ANY);
		snprintf(out, cap, "%s: expected %s, got %s", path, e, a);
		free(e);
		free(a);
		return false;
	}
	return true;
}

/* ---- talking to the agent and the CLI ---- */

static bool ctype_is(const tk_http_resp *r, const char *want)
{
	const char *ct = tk_http_header(r, "content-type");
	return ct != NULL && strncasecmp(ct, want, strlen(want)) == 0 &&
	       (ct[strlen(want)] == '\0' || ct[strlen(want)] == ';');
}

static void post(const char *ctype, const char *encoding, const void *body, size_t len, tk_http_resp *r)
{
	tk_header h[2] = {{"Content-Type", ctype}, {"Content-Encoding", encoding}};
	int rc = tk_http(st.http_port, "POST", "/v1/traces", h, encoding ? 2 : 1, body, len, HTTP_TIMEOUT_MS, r);
	must(rc == 0, "POST /v1/traces (%s): no response: %s", ctype, tl_strerror(rc));
}

/* Asserts a 200 with a fully successful ExportTraceServiceResponse in the request's content type. */
static void expect_export_ok(const tk_http_resp *r, const char *ctype)
{
	must(r->status == 200, "expected 200, got %d: %s", r->status, r->body);
	must(ctype_is(r, ctype), "response content type %s, expected %s", tk_http_header(r, "content-type"), ctype);
	if (strcmp(ctype, CT_PB) == 0) {
		tl_pb_export_resp *resp =
		        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
		                NULL, r->body_len, (const uint8_t *)r->body);
		must(resp != NULL, "response body is not an ExportTraceServiceResponse (%zu bytes)", r->body_len);
		bool ok = resp->partial_success == NULL || resp->partial_success->rejected_spans == 0;
		opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp, NULL);
		must(ok, "full success answered with a partial_success rejecting spans");
	} else {
		json_error_t je;
		json_t *j = json_loadb(r->body, r->body_len, 0, &je);
		must(json_is_object(j), "response is not a JSON object: %s", r->body);
		json_t *ps = json_object_get(j, "partialSuccess");
		json_t *rej = ps ? json_object_get(ps, "rejectedSpans") : NULL;
		bool ok = rej == NULL || (json_is_integer(rej) && json_integer_value(rej) == 0) ||
		          (json_is_string(rej) && strcmp(json_string_value(rej), "0") == 0);
		json_decref(j);
		must(ok, "full success answered with rejections: %s", r->body);
	}
}

static void send_ok(const char *ctype, const void *body, size_t len)
{
	tk_http_resp r;
	post(ctype, NULL, body, len, &r);
	expect_export_ok(&r, ctype);
	tk_http_resp_fini(&r);
}

static void send_pb(const tl_pb_export_req *req)
{
	size_t len;
	uint8_t *buf = pack_req(req, &len);
	send_ok(CT_PB, buf, len);
}

/* Waits (up to 20 s) until everything the agent accepted has reached the collector. */
static void wait_delivered(void)
{
	char why[256] = "";
	must(tk_stack_wait_delivered(&st, 20000, why, sizeof(why)) == 0, "%s", why);
}

/* `threadline trace show` once everything sent so far has reached the collector. */
static int trace_show(const char *trace_hex, bool json, tk_output *o)
{
	wait_delivered();
	return tk_stack_trace_show(&st, trace_hex, json, o);
}

/* Runs `trace show --json` and parses it; asserts exit 0. Caller json_decref()s. */
static json_t *show_json(const char *trace_hex)
{
	tk_output o;
	int rc = trace_show(trace_hex, true, &o);
	must(rc == 0 && o.exit_code == 0, "threadline trace show %s --json: rc %s, exit %d, stderr: %s", trace_hex,
	     tl_strerror(rc), o.exit_code, o.err ? o.err : "");
	json_error_t je;
	json_t *j = json_loads(o.out, 0, &je);
	if (j == NULL) {
		tk_output_fini(&o);
		must(false, "trace show --json printed invalid JSON: %s at line %d", je.text, je.line);
	}
	tk_output_fini(&o);
	return j;
}

static void names_of(json_t *trace, char *out, size_t cap)
{
	size_t off = 0;
	out[0] = '\0';
	json_t *spans = json_object_get(trace, "spans");
	for (size_t i = 0; i < json_array_size(spans) && off < cap; i++)
		off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? ", " : "",
		                        json_string_value(json_object_get(json_array_get(spans, i), "name")));
}

/* Reads the trace back and compares every field with expected (takes ownership of expected). */
static void expect_trace(const char *trace_hex, json_t *expected)
{
	json_t *got = show_json(trace_hex);
	char diff[2048];
	bool same = jdiff("trace", expected, got, false, diff, sizeof(diff));
	if (!same) {
		char en[1024], gn[1024];
		names_of(expected, en, sizeof(en));
		names_of(got, gn, sizeof(gn));
		json_decref(got);
		json_decref(expected);
		must(false, "trace %s read back differs: %s\n  expected spans: %s\n  got spans:      %s", trace_hex,
		     diff, en, gn);
	}
	json_decref(got);
	json_decref(expected);
}

/* ---- tests ---- */

TestSuite(e2e, .init = setup, .fini = teardown, .timeout = 90);

#define TRACE_PB "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACE_JSON "5cf92f3577b34da6a3ce929d0e0e47ff"

Test(e2e, protobuf_every_field_read_back)
{
	tl_pb_export_req *req = rich_request(TRACE_PB);
	send_pb(req);
	/* 200 means committed by the collector: readable at once, no waiting. */
	expect_trace(TRACE_PB, expected_for(req, TRACE_PB));
	stop_checked();
}

Test(e2e, json_every_field_read_back)
{
	tl_pb_export_req *req = rich_request(TRACE_JSON);
	char *text = otlp_json(req);
	tk_http_resp r;
	post(CT_JSON, NULL, text, strlen(text), &r);
	free(text);
	expect_export_ok(&r, CT_JSON);
	tk_http_resp_fini(&r);
	expect_trace(TRACE_JSON, expected_for(req, TRACE_JSON));
	stop_checked();
}

static uint8_t *gzip_buf(const void *in, size_t len, size_t *out_len)
{
	z_stream z = {0};
	cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&z, len) + 64;
	uint8_t *out = al(cap);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
	*out_len = z.total_out;
	deflateEnd(&z);
	return out;
}

Test(e2e, gzip_bodies_accepted)
{
	const char *t1 = "6cf92f3577b34da6a3ce929d0e0e4736", *t2 = "7cf92f3577b34da6a3ce929d0e0e4736";
	tl_pb_export_req *req = rich_request(t1);
	size_t len, zlen;
	uint8_t *buf = pack_req(req, &len);
	uint8_t *z = gzip_buf(buf, len, &zlen);
	tk_http_resp r;
	post(CT_PB, "gzip", z, zlen, &r);
	expect_export_ok(&r, CT_PB);
	tk_http_resp_fini(&r);
	expect_trace(t1, expected_for(req, t1));

	tl_pb_export_req *req2 = rich_request(t2);
	char *text = otlp_json(req2);
	z = gzip_buf(text, strlen(text), &zlen);
	free(text);
	post(CT_JSON, "gzip", z, zlen, &r);
	expect_export_ok(&r, CT_JSON);
	tk_http_resp_fini(&r);
	expect_trace(t2, expected_for(req2, t2));
	stop_checked();
}

#define TRACE_PARTIAL "8df92f3577b34da6a3ce929d0e0e4736"

Test(e2e, partial_success_protobuf)
{
	size_t nr;
	tl_pb_keyvalue **ra = service_res(&nr, "partial");
	tl_pb_span *good1 = mk_span(TRACE_PARTIAL, "0000000000000001", "", "good root", 2, T0, T0 + 10 * MS);
	tl_pb_span *bad = mk_span(TRACE_PARTIAL, "0102030405", "0000000000000001", "bad id", 1, T0 + MS, T0 + 2 * MS);
	tl_pb_span *good2 = mk_span(TRACE_PARTIAL, "0000000000000002", "0000000000000001", "good child", 1, T0 + 3 * MS,
	                            T0 + 4 * MS);
	tl_pb_export_req *req = mk_req(1, mk_rs(ra, nr, 1, mk_ss("s", "1", 3, good1, bad, good2)));
	size_t len;
	uint8_t *buf = pack_req(req, &len);
	tk_http_resp r;
	post(CT_PB, NULL, buf, len, &r);
	must(r.status == 200, "a request with one bad span must still be 200, got %d: %s", r.status, r.body);
	must(ctype_is(&r, CT_PB), "content type %s", tk_http_header(&r, "content-type"));
	tl_pb_export_resp *resp = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
	        NULL, r.body_len, (const uint8_t *)r.body);
	tk_http_resp_fini(&r);
	must(resp != NULL && resp->partial_success != NULL, "no partial_success in the response");
	int64_t rejected = resp->partial_success->rejected_spans;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", resp->partial_success->error_message);
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp, NULL);
	must(rejected == 1, "rejected_spans = %lld, expected 1", (long long)rejected);
	must(strcasestr(msg, "span") != NULL && strcasestr(msg, "id") != NULL,
	     "partial_success error_message does not name the problem (span id): \"%s\"", msg);
	expect_trace(TRACE_PARTIAL, expected_for(req, TRACE_PARTIAL));
	stop_checked();
}

Test(e2e, partial_success_json)
{
	const char *body =
	        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
	        "\"stringValue\":"
	        "\"pj\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"s\"},\"spans\":["
	        "{\"traceId\":\"9df92f3577b34da6a3ce929d0e0e4736\",\"spanId\":\"0000000000000001\",\"name\":\"ok\","
	        "\"kind\":1,\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000000000001\"},"
	        "{\"traceId\":\"9df92f3577b34da6a3ce929d0e0e4736\",\"spanId\":\"00000000000001\",\"name\":\"short id\","
	        "\"kind\":1,\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000000000001\"}"
	        "]}]}]}";
	tk_http_resp r;
	post(CT_JSON, NULL, body, strlen(body), &r);
	must(r.status == 200, "expected 200, got %d: %s", r.status, r.body);
	must(ctype_is(&r, CT_JSON), "content type %s", tk_http_header(&r, "content-type"));
	json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
	json_t *ps = json_object_get(j, "partialSuccess");
	json_t *rej = json_object_get(ps, "rejectedSpans");
	bool one = (json_is_string(rej) && strcmp(json_string_value(rej), "1") == 0) ||
	           (json_is_integer(rej) && json_integer_value(rej) == 1);
	const char *em = json_string_value(json_object_get(ps, "errorMessage"));
	bool named = em != NULL && strcasestr(em, "span") != NULL;
	json_decref(j);
	must(one, "expected partialSuccess.rejectedSpans \"1\": %s", r.body);
	must(named, "errorMessage does not name the problem: %s", r.body);
	tk_http_resp_fini(&r);
	json_t *got = show_json("9df92f3577b34da6a3ce929d0e0e4736");
	json_t *spans = json_object_get(got, "spans");
	must(json_array_size(spans) == 1 &&
	             strcmp(json_string_value(json_object_get(json_array_get(spans, 0), "name")), "ok") == 0,
	     "expected only the good span to be stored");
	json_decref(got);
	stop_checked();
}

/* A 400 whose body says something more than the status line. */
static void expect_400(const char *ctype, const void *body, size_t len, const char *what, const char *word)
{
	tk_http_resp r;
	post(ctype, NULL, body, len, &r);
	must(r.status == 400, "%s: expected 400, got %d: %s", what, r.status, r.body);
	must(r.body_len > 0 && strcasecmp(r.body, "bad request") != 0, "%s: 400 without a message naming the problem",
	     what);
	must(word == NULL || strcasestr(r.body, word) != NULL, "%s: 400 message \"%s\" does not mention \"%s\"", what,
	     r.body, word);
	tk_http_resp_fini(&r);
}

static void expect_healthy(void)
{
	tk_http_resp r;
	int rc = tk_http(st.http_port, "GET", "/healthz", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 200, "GET /healthz: rc %s, status %d", tl_strerror(rc), r.status);
	tk_http_resp_fini(&r);
}

Test(e2e, malformed_bodies_get_400)
{
	expect_400(CT_JSON, "{not json", 9, "garbage JSON", "json");
	expect_400(CT_JSON, "[1,2,3]", 7, "JSON array instead of object", NULL);
	expect_400(CT_JSON, "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"zz\"}]}]}]}", 60,
	           "JSON with a non-hex trace id", NULL);
	/* Wire type 7 does not exist: no protobuf parser can accept this. */
	static const uint8_t garbage[] = {0x0f, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03};
	expect_400(CT_PB, garbage, sizeof(garbage), "garbage protobuf", NULL);

	tl_pb_export_req *req = rich_request("aaf92f3577b34da6a3ce929d0e0e4736");
	size_t len;
	uint8_t *buf = pack_req(req, &len);
	expect_400(CT_PB, buf, len / 2, "protobuf truncated in the middle", NULL);
	expect_400(CT_PB, buf, len - 1, "protobuf missing its last byte", NULL);
	/* A gzip header promising a body that is not there. */
	static const uint8_t badgz[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xff, 0xff};
	tk_http_resp r;
	post(CT_PB, "gzip", badgz, sizeof(badgz), &r);
	must(r.status == 400, "corrupt gzip: expected 400, got %d: %s", r.status, r.body);
	tk_http_resp_fini(&r);
	/* Nothing of the above was stored, and the agent still serves. */
	tk_output o;
	trace_show("aaf92f3577b34da6a3ce929d0e0e4736", true, &o);
	must(o.exit_code == 1, "a trace from a rejected request must not exist (exit %d)", o.exit_code);
	tk_output_fini(&o);
	expect_healthy();
	send_pb(rich_request("abf92f3577b34da6a3ce929d0e0e4736"));
	stop_checked();
}

Test(e2e, wrong_content_type_gets_415)
{
	tk_http_resp r;
	post("text/plain", NULL, "hello", 5, &r);
	must(r.status == 415, "text/plain: expected 415, got %d", r.status);
	tk_http_resp_fini(&r);
	post("application/grpc", NULL, "\0\0\0\0\0", 5, &r);
	must(r.status == 415, "application/grpc: expected 415, got %d", r.status);
	tk_http_resp_fini(&r);
	expect_healthy();
	stop_checked();
}

Test(e2e, body_over_limit_gets_413)
{
	/* 64 MiB declared, well past any sane limit; the agent may answer before reading it all. */
	size_t len = (size_t)64 << 20;
	char *big = malloc(len);
	cr_assert_not_null(big);
	memset(big, 'x', len);
	tk_http_resp r;
	post(CT_PB, NULL, big, len, &r);
	free(big);
	must(r.status == 413, "64 MiB body: expected 413, got %d", r.status);
	tk_http_resp_fini(&r);

	/* A small gzip body that inflates to 64 MiB. */
	z_stream z = {0};
	cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = 256 * 1024, done = 0;
	uint8_t *out = al(cap);
	static uint8_t zeros[1 << 16];
	z.next_out = out;
	z.avail_out = (uInt)cap;
	while (done < len) {
		z.next_in = zeros;
		z.avail_in = sizeof(zeros);
		done += sizeof(zeros);
		cr_assert_eq(deflate(&z, done < len ? Z_NO_FLUSH : Z_FINISH), done < len ? Z_OK : Z_STREAM_END);
	}
	size_t zlen = z.total_out;
	deflateEnd(&z);
	post(CT_PB, "gzip", out, zlen, &r);
	must(r.status == 413, "gzip bomb (%zu bytes inflating to 64 MiB): expected 413, got %d", zlen, r.status);
	tk_http_resp_fini(&r);
	expect_healthy();
	send_pb(rich_request("acf92f3577b34da6a3ce929d0e0e4736"));
	stop_checked();
}

Test(e2e, slow_loris_is_dropped_others_served, .timeout = 120)
{
	int slow = tk_connect(st.http_port);
	must(slow >= 0, "connect");
	const char *half = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
	                   "Content-Length: 1000\r\n\r\n0123456789";
	must(tk_send_all(slow, half, strlen(half)) == 0, "send half a request");
	/* A second stalled client that never finishes its headers. */
	int slow2 = tk_connect(st.http_port);
	must(slow2 >= 0, "connect");
	must(tk_send_all(slow2, "GET /heal", 9) == 0, "send a partial request line");

	/* While they stall, others are served at once. */
	expect_healthy();
	tl_pb_export_req *req = rich_request("adf92f3577b34da6a3ce929d0e0e4736");
	send_pb(req);
	expect_trace("adf92f3577b34da6a3ce929d0e0e4736", expected_for(req, "adf92f3577b34da6a3ce929d0e0e4736"));

	/* The stalled ones are cut off by the read timeout (an answer such as 408 is allowed before the close). */
	int rc1 = tk_wait_closed(slow, 60000);
	int rc2 = tk_wait_closed(slow2, 60000);
	close(slow);
	close(slow2);
	must(rc1 == 0, "a client that sent half a body was not disconnected within 60 s");
	must(rc2 == 0, "a client that sent half a request line was not disconnected within 60 s");
	expect_healthy();
	stop_checked();
}

Test(e2e, healthz_and_keepalive)
{
	expect_healthy();
	/* Two requests on one connection. */
	int fd = tk_connect(st.http_port);
	must(fd >= 0, "connect");
	for (int i = 0; i < 2; i++) {
		must(tk_http_send(fd, "GET", "/healthz", NULL, 0, NULL, 0, NULL) == 0, "send");
		tk_http_resp r;
		int rc = tk_http_read(fd, 5000, &r);
		must(rc == 0 && r.status == 200, "keep-alive request %d: %s, status %d", i, tl_strerror(rc), r.status);
		tk_http_resp_fini(&r);
	}
	close(fd);
	tk_http_resp r;
	int rc = tk_http(st.http_port, "GET", "/no/such/path", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 404, "unknown path: expected 404, got %d", r.status);
	tk_http_resp_fini(&r);
	stop_checked();
}

/* The collector's HTTP API (--http): health, metrics, and the Marquez lineage route's argument errors. */
Test(e2e, collector_http_api)
{
	tk_http_resp r;
	int rc = tk_http(st.api_port, "GET", "/healthz", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 200, "collector /healthz: %s, status %d", tl_strerror(rc), r.status);
	tk_http_resp_fini(&r);

	send_pb(mk_req(1, mk_rs(NULL, 0, 1,
	                        mk_ss("s", "1", 1,
	                              mk_span("aa112233445566778899aabbccddeeff", "0102030405060708", "", "one", 1, T0,
	                                      T0 + MS)))));
	wait_delivered();
	rc = tk_http(st.api_port, "GET", "/metrics", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 200, "collector /metrics: %s, status %d", tl_strerror(rc), r.status);
	must(strstr(r.body, "threadline_collector_store_entries{db=\"traces\"} 1\n") != NULL,
	     "collector /metrics does not count the stored trace:\n%s", r.body);
	must(strstr(r.body, "threadline_collector_http_requests_total{route=\"healthz\"} 1\n") != NULL,
	     "collector /metrics does not count requests:\n%s", r.body);
	tk_http_resp_fini(&r);

	rc = tk_http(st.api_port, "GET", "/api/v1/lineage", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 400 && strstr(r.body, "nodeId is required") != NULL,
	     "lineage without nodeId: status %d, body %s", r.status, r.body);
	tk_http_resp_fini(&r);
	rc = tk_http(st.api_port, "GET", "/api/v1/lineage?nodeId=dataset:a:b&depth=x", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 400 && strstr(r.body, "depth must be an integer") != NULL,
	     "lineage with a bad depth: status %d, body %s", r.status, r.body);
	tk_http_resp_fini(&r);
	rc = tk_http(st.api_port, "POST", "/api/v1/lineage", NULL, 0, "{}", 2, 5000, &r);
	must(rc == 0 && r.status == 405, "POST to the collector's lineage route: status %d", r.status);
	tk_http_resp_fini(&r);
	rc = tk_http(st.api_port, "GET", "/no/such/path", NULL, 0, NULL, 0, 5000, &r);
	must(rc == 0 && r.status == 404, "collector unknown path: status %d", r.status);
	tk_http_resp_fini(&r);
	stop_checked();
}

#define TRACE_SPLIT "bef92f3577b34da6a3ce929d0e0e4736"

Test(e2e, one_trace_in_two_requests)
{
	size_t na, nb;
	tl_pb_keyvalue **ra = service_res(&na, "front");
	tl_pb_keyvalue **rb = service_res(&nb, "back");
	tl_pb_span *root = mk_span(TRACE_SPLIT, "00000000000000a1", "", "root", 2, T0, T0 + 100 * MS);
	tl_pb_span *mid = mk_span(TRACE_SPLIT, "00000000000000a2", "00000000000000a1", "mid", 3, T0 + MS, T0 + 90 * MS);
	tl_pb_span *leaf =
	        mk_span(TRACE_SPLIT, "00000000000000a3", "00000000000000a2", "leaf", 2, T0 + 2 * MS, T0 + 80 * MS);
	set_status(leaf, TL_PB_STATUS_ERROR, "boom");
	/* The child arrives first, its parents later, from another service. */
	tl_pb_export_req *r1 = mk_req(1, mk_rs(rb, nb, 1, mk_ss("b", "1", 1, leaf)));
	tl_pb_export_req *r2 = mk_req(1, mk_rs(ra, na, 1, mk_ss("a", "1", 2, root, mid)));
	send_pb(r1);
	send_pb(r2);
	json_t *spans = json_array();
	expect_spans(spans, r1, TRACE_SPLIT);
	expect_spans(spans, r2, TRACE_SPLIT);
	expect_trace(TRACE_SPLIT, finish_expected(TRACE_SPLIT, spans));
	stop_checked();
}

/* The line of the text waterfall that shows span name (first occurrence). */
static const char *line_of(const char *text, const char *name, char *buf, size_t cap)
{
	const char *p = strstr(text, name);
	if (p == NULL)
		return NULL;
	const char *b = p, *e = p;
	while (b > text && b[-1] != '\n')
		b--;
	while (*e != '\0' && *e != '\n')
		e++;
	snprintf(buf, cap, "%.*s", (int)(e - b), b);
	return buf;
}

#define TRACE_ORPHAN "cff92f3577b34da6a3ce929d0e0e4736"

Test(e2e, missing_parent_shown)
{
	size_t n;
	tl_pb_keyvalue **ra = service_res(&n, "orphanage");
	tl_pb_span *root = mk_span(TRACE_ORPHAN, "00000000000000b1", "", "the root", 2, T0, T0 + 100 * MS);
	tl_pb_span *orphan =
	        mk_span(TRACE_ORPHAN, "00000000000000b2", "00000000000000ee", "lost child", 1, T0 + MS, T0 + 5 * MS);
	tl_pb_export_req *req = mk_req(1, mk_rs(ra, n, 1, mk_ss("o", "1", 2, orphan, root)));
	send_pb(req);
	json_t *exp = expected_for(req, TRACE_ORPHAN);
	json_t *s1 = json_array_get(json_object_get(exp, "spans"), 1);
	must(json_is_true(json_object_get(s1, "missing_parent")), "test bug: oracle missed the orphan");
	expect_trace(TRACE_ORPHAN, exp);

	tk_output o;
	int rc = trace_show(TRACE_ORPHAN, false, &o);
	must(rc == 0 && o.exit_code == 0, "trace show (text): exit %d: %s", o.exit_code, o.err);
	/* The orphan's line carries a marker (a word or a sign) that the root's line does not. */
	char orphan_line[1024], root_line[1024];
	bool has_orphan = line_of(o.out, "lost child", orphan_line, sizeof(orphan_line)) != NULL;
	bool has_root = line_of(o.out, "the root", root_line, sizeof(root_line)) != NULL;
	bool marked = has_orphan &&
	              (strcasestr(orphan_line, "missing") != NULL || strcasestr(orphan_line, "never arrived") != NULL ||
	               strstr(orphan_line, "\xe2\x9a\xa0") != NULL);
	bool root_clean = has_root && strcasestr(root_line, "missing") == NULL &&
	                  strcasestr(root_line, "never arrived") == NULL && strstr(root_line, "\xe2\x9a\xa0") == NULL;
	char text[4096];
	snprintf(text, sizeof(text), "%s", o.out);
	tk_output_fini(&o);
	must(has_orphan && has_root, "text output lacks a span (or cuts its name):\n%s", text);
	must(marked, "the orphan's line does not say its parent is missing:\n%s", text);
	must(root_clean, "the root's line is marked as having a missing parent:\n%s", text);
	stop_checked();
}

Test(e2e, unknown_trace_not_found)
{
	tk_output o;
	int rc = trace_show("0123456789abcdef0123456789abcdef", true, &o);
	must(rc == 0 && o.exit_code == 1, "unknown trace (--json): expected exit 1, got %d", o.exit_code);
	must(strcasestr(o.err, "not found") != NULL, "stderr does not say \"not found\": %s", o.err);
	must(o.out_len == 0, "nothing should go to stdout: %s", o.out);
	tk_output_fini(&o);
	rc = trace_show("0123456789abcdef0123456789abcdef", false, &o);
	must(rc == 0 && o.exit_code == 1 && strcasestr(o.err, "not found") != NULL,
	     "unknown trace (text): exit %d, stderr %s", o.exit_code, o.err);
	tk_output_fini(&o);
	/* A malformed id is a usage error, not a crash or a "not found". */
	rc = trace_show("xyz", true, &o);
	must(rc == 0 && o.exit_code != 0 && o.signo == 0 && o.err_len > 0, "bad trace id: exit %d, signal %d",
	     o.exit_code, o.signo);
	tk_output_fini(&o);
	stop_checked();
}

Test(e2e, text_waterfall)
{
	const char *trace = "d0f92f3577b34da6a3ce929d0e0e4736";
	send_pb(rich_request(trace));
	tk_output o;
	int rc = trace_show(trace, false, &o);
	must(rc == 0 && o.exit_code == 0, "trace show (text): exit %d: %s", o.exit_code, o.err);
	static const char *names[] = {"GET /checkout",   "call payments",   "SELECT orders",   "charge",
	                              "publish receipt", "consume receipt", "unspecified kind"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		must(strstr(o.out, names[i]) != NULL, "waterfall lacks span \"%s\":\n%s", names[i], o.out);
	must(strstr(o.out, "checkout") != NULL && strstr(o.out, "payments") != NULL,
	     "waterfall lacks the service names:\n%s", o.out);
	char buf[1024];
	const char *err_line = line_of(o.out, "charge", buf, sizeof(buf));
	must(err_line != NULL && (strcasestr(err_line, "err") != NULL || strstr(err_line, "\xe2\x9c\x97") != NULL ||
	                          strstr(err_line, "\xe2\x9c\x98") != NULL),
	     "the failing span's line is not marked as an error: \"%s\"", err_line ? err_line : "");
	const char *ok_line = line_of(o.out, "SELECT orders", buf, sizeof(buf));
	must(ok_line != NULL && strcasestr(ok_line, "err") == NULL, "a span without error is marked: \"%s\"",
	     ok_line ? ok_line : "");
	/* The root comes before its children. */
	must(strstr(o.out, "GET /checkout") < strstr(o.out, "call payments") &&
	             strstr(o.out, "call payments") < strstr(o.out, "charge"),
	     "waterfall is not in tree order:\n%s", o.out);
	tk_output_fini(&o);
	stop_checked();
}
