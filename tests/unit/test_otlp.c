/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of OTLP decoding (protobuf and JSON), validation and the UTF-8 and
 * wire-walk helpers under them: the published example payload, a request
 * using every field and AnyValue type in both encodings, truncation at
 * every length, hostile nesting, limits, and partial rejection.
 */
#include "tl_arena.h"
#include "tl_otlp.h"
#include "tl_utf8.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DESC_ANY opentelemetry__proto__common__v1__any_value__descriptor
#define DESC_ARR opentelemetry__proto__common__v1__array_value__descriptor
#define DESC_KVL opentelemetry__proto__common__v1__key_value_list__descriptor
#define DESC_KV opentelemetry__proto__common__v1__key_value__descriptor
#define DESC_SCOPE opentelemetry__proto__common__v1__instrumentation_scope__descriptor
#define DESC_RES opentelemetry__proto__resource__v1__resource__descriptor
#define DESC_RS opentelemetry__proto__trace__v1__resource_spans__descriptor
#define DESC_SS opentelemetry__proto__trace__v1__scope_spans__descriptor
#define DESC_SPAN opentelemetry__proto__trace__v1__span__descriptor
#define DESC_EVENT opentelemetry__proto__trace__v1__span__event__descriptor
#define DESC_LINK opentelemetry__proto__trace__v1__span__link__descriptor
#define DESC_STATUS opentelemetry__proto__trace__v1__status__descriptor

static tl_arena build;  /* test-built messages */
static tl_arena decode; /* decoded messages */
static tl_otlp_limits lim;

static void setup(void)
{
	tl_arena_init(&build, (size_t)64 * 1024, 0);
	tl_arena_init(&decode, (size_t)64 * 1024, 0);
	tl_otlp_limits_default(&lim);
}

static void teardown(void)
{
	tl_arena_fini(&build);
	tl_arena_fini(&decode);
}

TestSuite(otlp, .init = setup, .fini = teardown);

/* ---- builders (everything lives in the build arena) ---- */

static void *mk(const ProtobufCMessageDescriptor *d)
{
	void *m = tl_arena_alloc(&build, d->sizeof_message);
	cr_assert_not_null(m);
	protobuf_c_message_init(d, m);
	return m;
}

static void **ptrs(size_t n)
{
	void **p = tl_arena_alloc(&build, n * sizeof(void *) + 1);
	cr_assert_not_null(p);
	memset(p, 0, n * sizeof(void *));
	return p;
}

static ProtobufCBinaryData bin(const void *data, size_t n)
{
	uint8_t *p = tl_arena_alloc(&build, n + 1);
	memcpy(p, data, n);
	return (ProtobufCBinaryData){n, p};
}

static ProtobufCBinaryData id_of(uint8_t seed, size_t n)
{
	uint8_t b[32];
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i);
	return bin(b, n);
}

static char *str(const char *s)
{
	return tl_arena_strndup(&build, s, strlen(s));
}

static tl_pb_anyvalue *av_str(const char *s)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	v->value_case = TL_PB_ANY_STRING;
	v->string_value = str(s);
	return v;
}

static tl_pb_anyvalue *av_int(int64_t i)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	v->value_case = TL_PB_ANY_INT;
	v->int_value = i;
	return v;
}

static tl_pb_anyvalue *av_bool(int b)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	v->value_case = TL_PB_ANY_BOOL;
	v->bool_value = b;
	return v;
}

static tl_pb_anyvalue *av_double(double d)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	v->value_case = TL_PB_ANY_DOUBLE;
	v->double_value = d;
	return v;
}

static tl_pb_anyvalue *av_bytes(const void *p, size_t n)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	v->value_case = TL_PB_ANY_BYTES;
	v->bytes_value = bin(p, n);
	return v;
}

static tl_pb_anyvalue *av_array(size_t n, tl_pb_anyvalue **vals)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	tl_pb_arrayvalue *a = mk(&DESC_ARR);
	a->n_values = n;
	a->values = (tl_pb_anyvalue **)ptrs(n);
	memcpy(a->values, vals, n * sizeof(*vals));
	v->value_case = TL_PB_ANY_ARRAY;
	v->array_value = a;
	return v;
}

static tl_pb_keyvalue *kv(const char *k, tl_pb_anyvalue *v)
{
	tl_pb_keyvalue *a = mk(&DESC_KV);
	a->key = str(k);
	a->value = v;
	return a;
}

static tl_pb_anyvalue *av_kvlist(size_t n, tl_pb_keyvalue **kvs)
{
	tl_pb_anyvalue *v = mk(&DESC_ANY);
	tl_pb_kvlist *l = mk(&DESC_KVL);
	l->n_values = n;
	l->values = (tl_pb_keyvalue **)ptrs(n);
	memcpy(l->values, kvs, n * sizeof(*kvs));
	v->value_case = TL_PB_ANY_KVLIST;
	v->kvlist_value = l;
	return v;
}

static tl_pb_keyvalue **attrs(size_t n, tl_pb_keyvalue **kvs)
{
	tl_pb_keyvalue **a = (tl_pb_keyvalue **)ptrs(n);
	memcpy(a, kvs, n * sizeof(*kvs));
	return a;
}

/* A valid minimal span whose ids derive from seed. */
static tl_pb_span *span_min(uint8_t seed)
{
	tl_pb_span *s = mk(&DESC_SPAN);
	s->trace_id = id_of(seed, 16);
	s->span_id = id_of((uint8_t)(seed + 100), 8);
	s->name = str("op");
	s->start_time_unix_nano = 1000;
	s->end_time_unix_nano = 2000;
	return s;
}

static tl_pb_scope_spans *scope_spans(size_t n, tl_pb_span **spans)
{
	tl_pb_scope_spans *ss = mk(&DESC_SS);
	ss->n_spans = n;
	ss->spans = (tl_pb_span **)ptrs(n);
	if (n > 0)
		memcpy(ss->spans, spans, n * sizeof(*spans));
	return ss;
}

static tl_pb_resource_spans *resource_spans(size_t n, tl_pb_scope_spans **ss)
{
	tl_pb_resource_spans *rs = mk(&DESC_RS);
	rs->n_scope_spans = n;
	rs->scope_spans = (tl_pb_scope_spans **)ptrs(n);
	memcpy(rs->scope_spans, ss, n * sizeof(*ss));
	return rs;
}

static tl_pb_export_req *request(size_t n, tl_pb_resource_spans **rs)
{
	tl_pb_export_req *r = mk(&TL_PB_EXPORT_REQ_DESC);
	r->n_resource_spans = n;
	r->resource_spans = (tl_pb_resource_spans **)ptrs(n);
	memcpy(r->resource_spans, rs, n * sizeof(*rs));
	return r;
}

static tl_pb_export_req *one_span_request(tl_pb_span *s)
{
	tl_pb_scope_spans *ss = scope_spans(1, &s);
	tl_pb_resource_spans *rs = resource_spans(1, &ss);
	return request(1, &rs);
}

/* Packs m into a malloc'd buffer. */
static uint8_t *pack(const void *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(*len + 1);
	cr_assert_not_null(b);
	cr_assert_eq(protobuf_c_message_pack(m, b), *len);
	return b;
}

static void assert_same_message(const void *a, const void *b)
{
	size_t la, lb;
	uint8_t *pa = pack(a, &la), *pb = pack(b, &lb);
	cr_assert_eq(la, lb, "packed sizes differ: %zu vs %zu", la, lb);
	cr_assert(memcmp(pa, pb, la) == 0, "packed bytes differ");
	free(pa);
	free(pb);
}

/*
 * A request that uses every field and every AnyValue type. rich_json below
 * is the same request in OTLP/JSON, written with every representation the
 * decoder must accept (strings for 64-bit ints, enum names, snake_case...).
 */
static tl_pb_export_req *rich_request(void)
{
	static const uint8_t bytes[] = {0, 1, 2, 0xff};
	tl_pb_resource *res = mk(&DESC_RES);
	tl_pb_keyvalue *rkv[] = {kv("service.name", av_str("svc"))};
	res->n_attributes = 1;
	res->attributes = attrs(1, rkv);
	res->dropped_attributes_count = 1;

	tl_pb_scope *sc = mk(&DESC_SCOPE);
	sc->name = str("lib");
	sc->version = str("1.2");
	tl_pb_keyvalue *skv[] = {kv("s", av_bool(1))};
	sc->n_attributes = 1;
	sc->attributes = attrs(1, skv);

	tl_pb_span *s = mk(&DESC_SPAN);
	s->trace_id = id_of(1, 16);
	s->span_id = id_of(0xa1, 8);
	s->trace_state = str("k=v");
	s->parent_span_id = id_of(0xb1, 8);
	s->flags = 257;
	s->name = str("GET /");
	s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
	s->start_time_unix_nano = 1700000000000000000ULL;
	s->end_time_unix_nano = 1700000000500000000ULL;
	tl_pb_anyvalue *inner[] = {av_bool(1)};
	tl_pb_anyvalue *arr[] = {av_str("a"), av_int(7), av_array(1, inner)};
	tl_pb_keyvalue *z[] = {kv("z", av_str(""))};
	tl_pb_keyvalue *xy[] = {kv("x", av_double(-0.25)), kv("y", av_kvlist(1, z))};
	tl_pb_keyvalue *akv[] = {
	        kv("str", av_str("h\xc3\xa9llo")), kv("bool", av_bool(0)),          kv("int", av_int(-42)),
	        kv("dbl", av_double(3.5)),         kv("bytes", av_bytes(bytes, 4)), kv("arr", av_array(3, arr)),
	        kv("kv", av_kvlist(2, xy)),        kv("empty", mk(&DESC_ANY)),
	};
	s->n_attributes = 8;
	s->attributes = attrs(8, akv);
	s->dropped_attributes_count = 3;

	tl_pb_event *ev = mk(&DESC_EVENT);
	ev->time_unix_nano = 1700000000100000000ULL;
	ev->name = str("ev");
	tl_pb_keyvalue *ekv[] = {kv("e", av_int(1))};
	ev->n_attributes = 1;
	ev->attributes = attrs(1, ekv);
	ev->dropped_attributes_count = 2;
	s->n_events = 1;
	s->events = (tl_pb_event **)ptrs(1);
	s->events[0] = ev;
	s->dropped_events_count = 4;

	tl_pb_link *ln = mk(&DESC_LINK);
	ln->trace_id = id_of(0x21, 16);
	ln->span_id = id_of(0xc1, 8);
	ln->trace_state = str("a=b");
	tl_pb_keyvalue *lkv[] = {kv("l", av_str("x"))};
	ln->n_attributes = 1;
	ln->attributes = attrs(1, lkv);
	ln->dropped_attributes_count = 5;
	ln->flags = 1;
	s->n_links = 1;
	s->links = (tl_pb_link **)ptrs(1);
	s->links[0] = ln;
	s->dropped_links_count = 6;

	tl_pb_status *st = mk(&DESC_STATUS);
	st->message = str("boom");
	st->code = TL_PB_STATUS_ERROR;
	s->status = st;

	tl_pb_span *s2 = span_min(0x31);
	s2->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL;

	tl_pb_span *spans[] = {s, s2};
	tl_pb_scope_spans *ss = scope_spans(2, spans);
	ss->scope = sc;
	ss->schema_url = str("https://example.com/scope");
	tl_pb_resource_spans *rs = resource_spans(1, &ss);
	rs->resource = res;
	rs->schema_url = str("https://opentelemetry.io/schemas/1.21.0");
	return request(1, &rs);
}

static const char rich_json[] =
        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":"
        "\"svc\"}}],\"droppedAttributesCount\":1},"
        "\"schemaUrl\":\"https://opentelemetry.io/schemas/1.21.0\",\"unknownField\":{\"x\":[1,2]},"
        "\"scopeSpans\":[{\"scope\":{\"name\":\"lib\",\"version\":\"1.2\",\"attributes\":[{\"key\":\"s\","
        "\"value\":{\"boolValue\":true}}],\"dropped_attributes_count\":0},\"schema_url\":\"https://example.com/"
        "scope\",\"spans\":["
        "{\"traceId\":\"0102030405060708090a0B0C0D0E0F10\",\"spanId\":\"A1A2A3A4A5A6A7A8\",\"traceState\":\"k=v\","
        "\"parentSpanId\":\"b1b2b3b4b5b6b7b8\",\"flags\":257,\"name\":\"GET /\",\"kind\":\"SPAN_KIND_SERVER\","
        "\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":1700000000500000000,"
        "\"attributes\":["
        "{\"key\":\"str\",\"value\":{\"stringValue\":\"h\\u00e9llo\"}},"
        "{\"key\":\"bool\",\"value\":{\"boolValue\":false}},"
        "{\"key\":\"int\",\"value\":{\"intValue\":\"-42\"}},"
        "{\"key\":\"dbl\",\"value\":{\"doubleValue\":3.5}},"
        "{\"key\":\"bytes\",\"value\":{\"bytesValue\":\"AAEC/w==\"}},"
        "{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},{\"intValue\":7},"
        "{\"arrayValue\":{\"values\":[{\"boolValue\":true}]}}]}}},"
        "{\"key\":\"kv\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"x\",\"value\":{\"doubleValue\":-0.25}},"
        "{\"key\":\"y\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"z\",\"value\":{\"stringValue\":\"\"}}]}}}]"
        "}}},"
        "{\"key\":\"empty\",\"value\":{}}],"
        "\"droppedAttributesCount\":\"3\","
        "\"events\":[{\"timeUnixNano\":\"1700000000100000000\",\"name\":\"ev\",\"attributes\":[{\"key\":\"e\","
        "\"value\":{\"intValue\":1}}],\"droppedAttributesCount\":2}],\"droppedEventsCount\":4,"
        "\"links\":[{\"traceId\":\"2122232425262728292a2b2c2d2e2f30\",\"spanId\":\"c1c2c3c4c5c6c7c8\","
        "\"traceState\":\"a=b\",\"attributes\":[{\"key\":\"l\",\"value\":{\"stringValue\":\"x\"}}],"
        "\"droppedAttributesCount\":5,\"flags\":1}],\"dropped_links_count\":6,"
        "\"status\":{\"message\":\"boom\",\"code\":\"STATUS_CODE_ERROR\"}},"
        "{\"traceId\":\"3132333435363738393a3b3c3d3e3f40\",\"spanId\":\"95969798999a9b9c\",\"name\":\"op\","
        "\"startTimeUnixNano\":1000,\"endTimeUnixNano\":\"2000\",\"kind\":1,\"status\":null,\"parentSpanId\":\"\"}"
        "]}]}]}";

static char *read_testdata(const char *rel, size_t *len)
{
	const char *dir = getenv("TL_TESTDATA");
	cr_assert_not_null(dir, "TL_TESTDATA not set");
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	char *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

static int decode_proto(const uint8_t *b, size_t n, tl_pb_export_req **out, tl_errmsg *err)
{
	return tl_otlp_decode_proto(b, n, &lim, tl_arena_allocator(&decode), out, err);
}

static int decode_json(const char *s, tl_pb_export_req **out, tl_errmsg *err)
{
	return tl_otlp_decode_json((const uint8_t *)s, strlen(s), &lim, tl_arena_allocator(&decode), out, err);
}

static void assert_hex_id(ProtobufCBinaryData b, const char *hex)
{
	uint8_t want[16];
	size_t n = strlen(hex) / 2;
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &want[i]);
	cr_assert_eq(b.len, n);
	cr_assert(memcmp(b.data, want, n) == 0, "id differs from %s", hex);
}

/* ---- UTF-8 ---- */

Test(otlp, utf8_validator)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
	        {"", 1},
	        {"plain ascii, longer than eight bytes", 1},
	        {"h\xc3\xa9llo", 1},
	        {"\xe2\x82\xac", 1},          /* U+20AC */
	        {"\xf0\x9f\x98\x80", 1},      /* U+1F600 */
	        {"\xf4\x8f\xbf\xbf", 1},      /* U+10FFFF */
	        {"\xed\x9f\xbf", 1},          /* U+D7FF */
	        {"\xee\x80\x80", 1},          /* U+E000 */
	        {"\xc0\xaf", 0},              /* overlong '/' */
	        {"\xc1\xbf", 0},              /* overlong */
	        {"\xe0\x80\xaf", 0},          /* overlong 3-byte */
	        {"\xf0\x80\x80\xaf", 0},      /* overlong 4-byte */
	        {"\xed\xa0\x80", 0},          /* U+D800 surrogate */
	        {"\xed\xbf\xbf", 0},          /* U+DFFF surrogate */
	        {"\xf4\x90\x80\x80", 0},      /* above U+10FFFF */
	        {"\xf5\x80\x80\x80", 0},      /* invalid lead */
	        {"\xff", 0},                  /* invalid byte */
	        {"\x80", 0},                  /* lone continuation */
	        {"abc\xc3", 0},               /* truncated */
	        {"abcdefgh\xe2\x82", 0},      /* truncated after an ASCII run */
	        {"\xe2\x28\xa1", 0},          /* bad continuation */
	        {"abcdefg\xc3\xa9xyzuvw", 1}, /* multibyte across the 8-byte stride */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_expect_eq(tl_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok, "case %zu", i);
	cr_expect(tl_utf8_valid("a\0b", 3));
}

/* ---- JSON: the published example ---- */

Test(otlp, json_example_every_field)
{
	size_t n;
	char *buf = read_testdata("otlp/trace.json", &n);
	tl_pb_export_req *r;
	tl_errmsg err = {{0}};
	int rc = tl_otlp_decode_json((uint8_t *)buf, n, &lim, tl_arena_allocator(&decode), &r, &err);
	free(buf);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_assert_eq(r->n_resource_spans, 1);
	tl_pb_resource_spans *rs = r->resource_spans[0];
	cr_assert_not_null(rs->resource);
	cr_assert_eq(rs->resource->n_attributes, 1);
	cr_assert_str_eq(rs->resource->attributes[0]->key, "service.name");
	cr_assert_eq(rs->resource->attributes[0]->value->value_case, TL_PB_ANY_STRING);
	cr_assert_str_eq(rs->resource->attributes[0]->value->string_value, "my.service");
	cr_assert_eq(rs->n_scope_spans, 1);
	tl_pb_scope_spans *ss = rs->scope_spans[0];
	cr_assert_str_eq(ss->scope->name, "my.library");
	cr_assert_str_eq(ss->scope->version, "1.0.0");
	cr_assert_eq(ss->scope->n_attributes, 1);
	cr_assert_str_eq(ss->scope->attributes[0]->key, "my.scope.attribute");
	cr_assert_str_eq(ss->scope->attributes[0]->value->string_value, "some scope attribute");
	cr_assert_eq(ss->n_spans, 1);
	tl_pb_span *s = ss->spans[0];
	assert_hex_id(s->trace_id, "5b8efff798038103d269b633813fc60c");
	assert_hex_id(s->span_id, "eee19b7ec3c1b174");
	assert_hex_id(s->parent_span_id, "eee19b7ec3c1b173");
	cr_assert_str_eq(s->name, "I'm a server span");
	cr_assert_eq(s->start_time_unix_nano, 1544712660000000000ULL);
	cr_assert_eq(s->end_time_unix_nano, 1544712661000000000ULL);
	cr_assert_eq(s->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
	cr_assert_eq(s->n_attributes, 1);
	cr_assert_str_eq(s->attributes[0]->key, "my.span.attr");
	cr_assert_str_eq(s->attributes[0]->value->string_value, "some value");
	cr_assert_eq(s->n_events, 0);
	cr_assert_eq(s->n_links, 0);
	cr_assert_null(s->status);
	cr_assert_str_eq(s->trace_state, "");

	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(r, &lim, &v), 0);
	cr_assert_eq(v.spans_total, 1);
	cr_assert_eq(v.spans_rejected, 0);
	cr_assert_eq(tl_otlp_count_spans(r), 1);
}

/* ---- the rich request in both encodings ---- */

Test(otlp, proto_rich_roundtrip)
{
	tl_pb_export_req *want = rich_request();
	size_t n;
	uint8_t *b = pack(want, &n);
	tl_pb_export_req *got;
	tl_errmsg err = {{0}};
	cr_assert_eq(decode_proto(b, n, &got, &err), 0, "%s", err.msg);
	assert_same_message(want, got);

	tl_pb_span *s = got->resource_spans[0]->scope_spans[0]->spans[0];
	cr_assert_eq(s->n_attributes, 8);
	cr_assert_eq(s->attributes[5]->value->value_case, TL_PB_ANY_ARRAY);
	cr_assert_eq(s->attributes[5]->value->array_value->values[2]->array_value->values[0]->bool_value, 1);
	cr_assert_eq(s->attributes[4]->value->bytes_value.len, 4);
	cr_assert_eq(s->attributes[4]->value->bytes_value.data[3], 0xff);
	cr_assert_eq(s->status->code, TL_PB_STATUS_ERROR);
	cr_assert_eq(s->links[0]->flags, 1);

	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(got, &lim, &v), 0);
	cr_assert_eq(v.spans_total, 2);
	cr_assert_eq(v.spans_rejected, 0, "%s", v.first_error.msg);
	free(b);
}

Test(otlp, json_equals_proto)
{
	tl_pb_export_req *want = rich_request();
	tl_pb_export_req *got;
	tl_errmsg err = {{0}};
	cr_assert_eq(decode_json(rich_json, &got, &err), 0, "%s", err.msg);
	assert_same_message(want, got);
	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(got, &lim, &v), 0);
	cr_assert_eq(v.spans_rejected, 0, "%s", v.first_error.msg);

	/* JSON decoded with malloc can be freed like an unpacked message. */
	tl_pb_export_req *m;
	cr_assert_eq(tl_otlp_decode_json((const uint8_t *)rich_json, strlen(rich_json), &lim, NULL, &m, &err), 0);
	assert_same_message(want, m);
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

Test(otlp, json_scalar_spellings)
{
	tl_pb_export_req *r;
	tl_errmsg err = {{0}};
	const char *j = "{\"resource_spans\":[{\"scope_spans\":[{\"spans\":[{"
	                "\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"span_id\":\"0102030405060708\","
	                "\"start_time_unix_nano\":\"5\",\"endTimeUnixNano\":6.0,\"kind\":\"3\","
	                "\"status\":{\"code\":2},\"attributes\":["
	                "{\"key\":\"a\",\"value\":{\"doubleValue\":\"NaN\"}},"
	                "{\"key\":\"b\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
	                "{\"key\":\"c\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
	                "{\"key\":\"d\",\"value\":{\"doubleValue\":\"1.5e3\"}},"
	                "{\"key\":\"e\",\"value\":{\"bytesValue\":\"_-8\"}}]}]}]}]}";
	cr_assert_eq(decode_json(j, &r, &err), 0, "%s", err.msg);
	tl_pb_span *s = r->resource_spans[0]->scope_spans[0]->spans[0];
	cr_assert_eq(s->start_time_unix_nano, 5);
	cr_assert_eq(s->end_time_unix_nano, 6);
	cr_assert_eq(s->kind, 3);
	cr_assert_eq(s->status->code, TL_PB_STATUS_ERROR);
	cr_assert(isnan(s->attributes[0]->value->double_value));
	cr_assert(isinf(s->attributes[1]->value->double_value) && s->attributes[1]->value->double_value < 0);
	cr_assert_eq(s->attributes[2]->value->int_value, INT64_MIN);
	cr_assert_eq(s->attributes[3]->value->double_value, 1500.0);
	cr_assert_eq(s->attributes[4]->value->bytes_value.len, 2); /* URL-safe, unpadded */
	cr_assert_eq(s->attributes[4]->value->bytes_value.data[0], 0xff);
}

/* ---- JSON errors ---- */

static void expect_json_error(const char *j, int code, const char *msg_part)
{
	tl_pb_export_req *r = NULL;
	tl_errmsg err = {{0}};
	int rc = decode_json(j, &r, &err);
	cr_expect_eq(rc, code, "rc %d for %s: %s", rc, j, err.msg);
	cr_expect_null(r);
	cr_expect(strstr(err.msg, msg_part) != NULL, "'%s' not in '%s'", msg_part, err.msg);
}

#define SPANS_PRE "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{},{},"

Test(otlp, json_errors_name_the_path)
{
	expect_json_error(SPANS_PRE "{\"name\":5}]}]}]}", TL_EPARSE,
	                  "resourceSpans[0].scopeSpans[0].spans[2].name: expected string");
	expect_json_error(SPANS_PRE "{\"spanId\":\"zz00000000000000\"}]}]}]}", TL_EPARSE,
	                  "spans[2].spanId: expected hex digits");
	expect_json_error(SPANS_PRE "{\"traceId\":\"abc\"}]}]}]}", TL_EPARSE, "spans[2].traceId: odd number");
	expect_json_error(SPANS_PRE "{\"startTimeUnixNano\":\"12x\"}]}]}]}", TL_EPARSE,
	                  "spans[2].startTimeUnixNano: expected a decimal integer");
	expect_json_error(SPANS_PRE "{\"startTimeUnixNano\":-1}]}]}]}", TL_EPARSE, "out of range");
	expect_json_error(SPANS_PRE "{\"startTimeUnixNano\":\"18446744073709551616\"}]}]}]}", TL_EPARSE,
	                  "expected a decimal integer");
	expect_json_error(SPANS_PRE "{\"kind\":\"SPAN_KIND_BOGUS\"}]}]}]}", TL_EPARSE, "unknown enum value");
	expect_json_error(SPANS_PRE "{\"flags\":4294967296}]}]}]}", TL_EPARSE, "spans[2].flags: integer out of range");
	expect_json_error(SPANS_PRE "{\"attributes\":{}}]}]}]}", TL_EPARSE, "spans[2].attributes: expected array");
	expect_json_error(SPANS_PRE "{\"attributes\":[{\"key\":\"k\",\"value\":{\"bytesValue\":\"!!\"}}]}]}]}]}",
	                  TL_EPARSE, "spans[2].attributes[0].value.bytesValue: expected base64");
	/* libsodium 1.0.18 takes bytes above 0x7f for base64 digits: "Ø" (c3 98) and U+0600 (d8 80) are none. */
	expect_json_error(SPANS_PRE "{\"attributes\":[{\"key\":\"k\",\"value\":{\"bytesValue\":\"AA\\u00d8\"}}]}]}]}]}",
	                  TL_EPARSE, "spans[2].attributes[0].value.bytesValue: expected base64");
	expect_json_error(SPANS_PRE
	                  "{\"attributes\":[{\"key\":\"k\",\"value\":{\"bytesValue\":\"AAAAAA\\u0600\"}}]}]}]}]}",
	                  TL_EPARSE, "spans[2].attributes[0].value.bytesValue: expected base64");
	expect_json_error(SPANS_PRE "{\"attributes\":[{\"key\":\"k\",\"value\":{\"boolValue\":1}}]}]}]}]}", TL_EPARSE,
	                  "boolValue: expected true or false");
	expect_json_error(SPANS_PRE
	                  "{\"attributes\":[{\"key\":\"k\",\"value\":{\"boolValue\":true,\"intValue\":1}}]}]}]}]}",
	                  TL_EPARSE, "more than one value of a oneof");
	expect_json_error(SPANS_PRE "{\"spanId\":\"00\",\"span_id\":\"00\"}]}]}]}", TL_EPARSE, "field given twice");
	expect_json_error(SPANS_PRE "7]}]}]}", TL_EPARSE, "spans[2]: expected object");
	expect_json_error("{\"resourceSpans\":[{\"scopeSpans\":[{\n\"spans\":[}]}]}", TL_EPARSE,
	                  "invalid JSON at line 2, column");
	expect_json_error("[]", TL_EPARSE, "expected an object");
	expect_json_error("", TL_EPARSE, "invalid JSON");
}

Test(otlp, json_wrong_length_ids_reject_only_that_span)
{
	tl_pb_export_req *r;
	tl_errmsg err = {{0}};
	const char *j = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":["
	                "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\"},"
	                "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405\"}]}]}]}";
	cr_assert_eq(decode_json(j, &r, &err), 0, "%s", err.msg);
	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(r, &lim, &v), 0);
	cr_assert_eq(v.spans_total, 2);
	cr_assert_eq(v.spans_rejected, 1);
	cr_assert_str_eq(v.first_error.msg,
	                 "resource_spans[0].scope_spans[0].spans[1]: span_id must be 8 bytes, got 5");
	cr_assert_eq(tl_otlp_count_spans(r), 1);
}

/* ---- protobuf errors ---- */

Test(otlp, proto_truncated_at_every_length)
{
	tl_pb_export_req *want = rich_request();
	size_t n;
	uint8_t *b = pack(want, &n);
	for (size_t i = 1; i < n; i++) {
		uint8_t *cut = malloc(i); /* exact-size copy, so ASan sees any over-read */
		memcpy(cut, b, i);
		tl_pb_export_req *r = NULL;
		tl_errmsg err = {{0}};
		int rc = decode_proto(cut, i, &r, &err);
		cr_assert_eq(rc, TL_EPARSE, "prefix %zu of %zu: rc %d", i, n, rc);
		cr_assert_null(r);
		cr_assert(strstr(err.msg, "at byte") != NULL, "%s", err.msg);
		free(cut);
		tl_arena_reset(&decode);
	}
	free(b);
	tl_pb_export_req *r;
	tl_errmsg err = {{0}};
	cr_assert_eq(decode_proto(NULL, 0, &r, &err), 0, "empty body is an empty request");
	cr_assert_eq(r->n_resource_spans, 0);
}

static void expect_proto_error(const uint8_t *b, size_t n, int code, const char *msg)
{
	tl_pb_export_req *r = NULL;
	tl_errmsg err = {{0}};
	int rc = decode_proto(b, n, &r, &err);
	cr_expect_eq(rc, code, "rc %d: %s", rc, err.msg);
	cr_expect_null(r);
	cr_expect(strstr(err.msg, msg) != NULL, "'%s' not in '%s'", msg, err.msg);
}

Test(otlp, proto_error_messages)
{
	/* resource_spans { scope_spans: length 9 with 2 bytes present } */
	static const uint8_t trunc[] = {0x0a, 0x04, 0x12, 0x09, 0x0a, 0x00};
	expect_proto_error(trunc, sizeof trunc, TL_EPARSE,
	                   "truncated length-delimited field 2 (scope_spans) at byte 2");
	/* resource_spans as a varint */
	static const uint8_t wt[] = {0x08, 0x01};
	expect_proto_error(wt, sizeof wt, TL_EPARSE,
	                   "wire type varint does not match message field 1 (resource_spans)");
	/* a group in an unknown field */
	static const uint8_t grp[] = {0x1b, 0x1c};
	expect_proto_error(grp, sizeof grp, TL_EPARSE, "unsupported wire type start-group in field 3 at byte 0");
	/* field number 0 */
	static const uint8_t zero[] = {0x02, 0x00};
	expect_proto_error(zero, sizeof zero, TL_EPARSE, "invalid tag at byte 0");
	/* an 11-byte varint in an unknown field */
	static const uint8_t longv[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	expect_proto_error(longv, sizeof longv, TL_EPARSE, "overlong varint field 2 at byte 0");
	/* span.start_time_unix_nano (fixed64) cut short: rs{ss{span{0x39 + 3 bytes}}} */
	static const uint8_t fx[] = {0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x39, 0x01, 0x02, 0x03};
	expect_proto_error(fx, sizeof fx, TL_EPARSE, "truncated fixed64 field 7 (start_time_unix_nano) at byte 6");
	/* a NUL inside span.name */
	static const uint8_t nul[] = {0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x2a, 0x02, 'a', 0x00};
	expect_proto_error(nul, sizeof nul, TL_EPARSE, "NUL byte in string field 5 (name) at byte 6");

	/* unknown fields of every wire type are skipped */
	static const uint8_t unk[] = {0x0a, 0x15, 0xf8, 0x07, 0x05, 0xf9, 0x07, 1, 2, 3,    4,   5,
	                              6,    7,    8,    0xfd, 0x07, 1,    2,    3, 4, 0x12, 0x00};
	tl_pb_export_req *r;
	tl_errmsg err = {{0}};
	cr_assert_eq(decode_proto(unk, sizeof unk, &r, &err), 0, "%s", err.msg);
	cr_assert_eq(r->n_resource_spans, 1);
	cr_assert_eq(r->resource_spans[0]->n_scope_spans, 1);
}

/* Builds bodies inside out: content always occupies buf[start..cap). */
typedef struct rbuf {
	uint8_t *b;
	size_t cap, start;
} rbuf;

static void rb_prepend(rbuf *r, const void *p, size_t n)
{
	cr_assert(r->start >= n);
	r->start -= n;
	memcpy(r->b + r->start, p, n);
}

static void rb_varint(rbuf *r, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	rb_prepend(r, t, n);
}

/* Wraps everything built so far as length-delimited field `field`. */
static void rb_wrap(rbuf *r, unsigned field)
{
	rb_varint(r, r->cap - r->start);
	rb_varint(r, (uint64_t)field << 3 | 2);
}

/* A request whose one span has one attribute nested `levels` AnyValues deep (arrays). */
static uint8_t *deep_request(rbuf *r, unsigned levels, bool kvlists)
{
	r->cap = (size_t)levels * 24 + 256;
	r->b = malloc(r->cap);
	r->start = r->cap;
	for (unsigned i = 1; i < levels; i++) {
		if (kvlists) {
			rb_wrap(r, 2); /* KeyValue.value */
			static const uint8_t key[] = {0x0a, 0x01, 'k'};
			rb_prepend(r, key, sizeof key);
			rb_wrap(r, 1); /* KeyValueList.values */
			rb_wrap(r, 6); /* AnyValue.kvlist_value */
		} else {
			rb_wrap(r, 1); /* ArrayValue.values */
			rb_wrap(r, 5); /* AnyValue.array_value */
		}
	}
	rb_wrap(r, 2); /* KeyValue.value */
	static const uint8_t key[] = {0x0a, 0x01, 'k'};
	rb_prepend(r, key, sizeof key);
	rb_wrap(r, 9); /* Span.attributes */
	static const uint8_t ids[] = {0x0a, 16, 1,  2,  3,    4, 5, 6, 7, 8, 9, 10, 11, 12,
	                              13,   14, 15, 16, 0x12, 8, 1, 2, 3, 4, 5, 6,  7,  8};
	rb_prepend(r, ids, sizeof ids);
	rb_wrap(r, 2); /* ScopeSpans.spans */
	rb_wrap(r, 2); /* ResourceSpans.scope_spans */
	rb_wrap(r, 1); /* request.resource_spans */
	return r->b + r->start;
}

Test(otlp, proto_deep_nesting_is_a_limit_not_a_crash)
{
	rbuf r;
	uint8_t *b = deep_request(&r, 10000, false);
	expect_proto_error(b, r.cap - r.start, TL_ELIMIT, "nesting deeper than");
	free(r.b);
	b = deep_request(&r, 10000, true);
	expect_proto_error(b, r.cap - r.start, TL_ELIMIT, "nesting deeper than");
	free(r.b);
}

Test(otlp, proto_depth_at_and_past_max_depth)
{
	tl_otlp_verdict v;
	tl_errmsg err = {{0}};
	tl_pb_export_req *req;
	for (int kvl = 0; kvl < 2; kvl++) {
		rbuf r;
		/* exactly max_depth levels: kept */
		uint8_t *b = deep_request(&r, lim.max_depth, kvl);
		cr_assert_eq(decode_proto(b, r.cap - r.start, &req, &err), 0, "%s", err.msg);
		cr_assert_eq(tl_otlp_validate(req, &lim, &v), 0);
		cr_assert_eq(v.spans_rejected, 0, "%s", v.first_error.msg);
		free(r.b);
		/* one more: decodes (within the wire bound), but validation rejects the span */
		b = deep_request(&r, lim.max_depth + 1, kvl);
		cr_assert_eq(decode_proto(b, r.cap - r.start, &req, &err), 0, "%s", err.msg);
		cr_assert_eq(tl_otlp_validate(req, &lim, &v), 0);
		cr_assert_eq(v.spans_rejected, 1);
		cr_assert(strstr(v.first_error.msg, "spans[0]: attributes[0].value:") != NULL, "%s", v.first_error.msg);
		cr_assert(strstr(v.first_error.msg, "nested deeper than 8 levels") != NULL, "%s", v.first_error.msg);
		cr_assert_eq(req->n_resource_spans, 0);
		free(r.b);
	}
}

static size_t put(char *dst, size_t n, const char *s)
{
	size_t l = strlen(s);
	memcpy(dst + n, s, l + 1);
	return n + l;
}

Test(otlp, json_deep_nesting_is_a_limit)
{
	for (int levels = 500; levels <= 10000; levels += 9500) {
		size_t cap = (size_t)levels * 40 + 512, n = 0;
		char *j = malloc(cap);
		cr_assert_not_null(j);
		n = put(j, n,
		        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"key\":\"k\",\"value\":");
		for (int i = 0; i < levels; i++)
			n = put(j, n, "{\"arrayValue\":{\"values\":[");
		n = put(j, n, "{}");
		for (int i = 0; i < levels; i++)
			n = put(j, n, "]}}");
		put(j, n, "}]}]}]}]}");
		tl_pb_export_req *r = NULL;
		tl_errmsg err = {{0}};
		cr_expect_eq(decode_json(j, &r, &err), TL_ELIMIT, "%d levels: %s", levels, err.msg);
		free(j);
		tl_arena_reset(&decode);
	}
}

/* ---- validation ---- */

Test(otlp, validate_reports_path_of_bad_span_id)
{
	tl_pb_span *s[4] = {span_min(1), span_min(2), span_min(3), span_min(4)};
	s[3]->span_id = id_of(9, 5);
	tl_pb_scope_spans *ss[2] = {scope_spans(1, s), scope_spans(4, s)};
	tl_pb_resource_spans *rs = resource_spans(2, ss);
	tl_pb_export_req *req = request(1, &rs);
	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(req, &lim, &v), 0);
	cr_assert_eq(v.spans_total, 5);
	cr_assert_eq(v.spans_rejected, 1);
	cr_assert_str_eq(v.first_error.msg,
	                 "resource_spans[0].scope_spans[1].spans[3]: span_id must be 8 bytes, got 5");
	cr_assert_eq(rs->scope_spans[1]->n_spans, 3);
	cr_assert_eq(rs->scope_spans[1]->spans[2], s[2]);
}

/* Validates a one-span request and returns the first error ("" when kept). */
static const char *verdict_of(tl_pb_span *s)
{
	static tl_otlp_verdict v;
	tl_pb_export_req *req = one_span_request(s);
	cr_assert_eq(tl_otlp_validate(req, &lim, &v), 0);
	cr_assert_eq(v.spans_total, 1);
	cr_assert_eq(v.spans_rejected, req->n_resource_spans == 0 ? 1u : 0u);
	return v.first_error.msg;
}

static void expect_rejected(tl_pb_span *s, const char *msg)
{
	const char *got = verdict_of(s);
	cr_expect(strstr(got, msg) != NULL, "'%s' not in '%s'", msg, got);
}

Test(otlp, validate_span_rules)
{
	tl_pb_span *s;

	cr_expect_str_eq(verdict_of(span_min(1)), "");

	s = span_min(1);
	s->trace_id = id_of(1, 15);
	expect_rejected(s, "spans[0]: trace_id must be 16 bytes, got 15");
	s = span_min(1);
	memset(s->trace_id.data, 0, 16);
	expect_rejected(s, "spans[0]: trace_id is all zero");
	s = span_min(1);
	memset(s->span_id.data, 0, 8);
	expect_rejected(s, "span_id is all zero");
	s = span_min(1);
	s->span_id.len = 0;
	expect_rejected(s, "span_id must be 8 bytes, got 0");
	s = span_min(1);
	s->parent_span_id = id_of(1, 3);
	expect_rejected(s, "parent_span_id must be empty or 8 bytes, got 3");
	s = span_min(1);
	s->parent_span_id = id_of(1, 8);
	cr_expect_str_eq(verdict_of(s), "");

	s = span_min(1);
	s->name = str("bad \xed\xa0\x80 surrogate");
	expect_rejected(s, "resource_spans[0].scope_spans[0].spans[0]: name is not valid UTF-8");
	s = span_min(1);
	s->trace_state = str("\xc0\xaf");
	expect_rejected(s, "trace_state is not valid UTF-8");
	s = span_min(1);
	s->end_time_unix_nano = 999;
	expect_rejected(s, "end_time_unix_nano 999 is before start_time_unix_nano 1000");

	s = span_min(1);
	tl_pb_keyvalue *a1[] = {kv("ok", av_str("x")), kv("k\xff", av_str("x"))};
	s->n_attributes = 2;
	s->attributes = attrs(2, a1);
	expect_rejected(s, "spans[0]: attributes[1].key is not valid UTF-8");
	s = span_min(1);
	tl_pb_keyvalue *a2[] = {kv("", av_str("x"))};
	s->n_attributes = 1;
	s->attributes = attrs(1, a2);
	expect_rejected(s, "attributes[0].key is empty");
	s = span_min(1);
	char longkey[300];
	memset(longkey, 'k', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = '\0';
	tl_pb_keyvalue *a3[] = {kv(longkey, av_str("x"))};
	s->n_attributes = 1;
	s->attributes = attrs(1, a3);
	expect_rejected(s, "attributes[0].key is longer than 256 bytes");

	s = span_min(1);
	tl_pb_anyvalue *arr[] = {av_int(1), av_str("\xe0\x80\xaf")};
	tl_pb_keyvalue *a4[] = {kv("arr", av_array(2, arr))};
	s->n_attributes = 1;
	s->attributes = attrs(1, a4);
	expect_rejected(s, "spans[0]: attributes[0].value: string value is not valid UTF-8");

	lim.max_string_bytes = 4;
	s = span_min(1);
	tl_pb_keyvalue *a5[] = {kv("b", av_bytes("12345", 5))};
	s->n_attributes = 1;
	s->attributes = attrs(1, a5);
	expect_rejected(s, "bytes value is longer than 4 bytes");
	s = span_min(1);
	s->name = str("12345");
	expect_rejected(s, "name is longer than 4 bytes");
	tl_otlp_limits_default(&lim);

	lim.max_array_values = 2;
	s = span_min(1);
	tl_pb_anyvalue *arr3[] = {av_int(1), av_int(2), av_int(3)};
	tl_pb_keyvalue *a6[] = {kv("arr", av_array(3, arr3))};
	s->n_attributes = 1;
	s->attributes = attrs(1, a6);
	expect_rejected(s, "array of 3 values, more than 2");
	tl_otlp_limits_default(&lim);

	s = span_min(1);
	tl_pb_link *ln = mk(&DESC_LINK);
	ln->trace_id = id_of(1, 16);
	ln->span_id = id_of(1, 7);
	s->n_links = 1;
	s->links = (tl_pb_link **)ptrs(1);
	s->links[0] = ln;
	expect_rejected(s, "spans[0]: links[0].span_id must be 8 bytes, got 7");

	s = span_min(1);
	tl_pb_event *ev = mk(&DESC_EVENT);
	ev->name = str("\x80");
	s->n_events = 1;
	s->events = (tl_pb_event **)ptrs(1);
	s->events[0] = ev;
	expect_rejected(s, "spans[0]: events[0].name is not valid UTF-8");

	lim.max_events = 0;
	expect_rejected(s, "events: 1, more than 0");
	tl_otlp_limits_default(&lim);

	s = span_min(1);
	s->status = mk(&DESC_STATUS);
	s->status->message = str("\xf5");
	expect_rejected(s, "spans[0]: status.message is not valid UTF-8");
}

Test(otlp, validate_huge_attribute_count)
{
	size_t n = 100000;
	tl_pb_span *s = span_min(1);
	s->n_attributes = n;
	s->attributes = (tl_pb_keyvalue **)ptrs(n);
	tl_pb_keyvalue *one = kv("k", av_int(1));
	for (size_t i = 0; i < n; i++)
		s->attributes[i] = one;
	expect_rejected(s, "attributes: 100000, more than 128");

	/* the same through the protobuf decoder */
	tl_pb_export_req *req = one_span_request(s);
	size_t len;
	uint8_t *b = pack(req, &len);
	tl_pb_export_req *got;
	tl_errmsg err = {{0}};
	cr_assert_eq(decode_proto(b, len, &got, &err), 0, "%s", err.msg);
	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(got, &lim, &v), 0);
	cr_assert_eq(v.spans_rejected, 1);
	free(b);
}

Test(otlp, validate_partial_rejection_keeps_good_spans)
{
	tl_pb_span *good1 = span_min(1), *good2 = span_min(2), *bad = span_min(3), *badname = span_min(4);
	bad->span_id = id_of(3, 5);
	badname->name = str("\xff");
	tl_pb_span *s0[] = {good1, bad, good2};
	tl_pb_scope_spans *ss0[] = {scope_spans(3, s0), scope_spans(1, &badname), scope_spans(0, NULL)};
	tl_pb_resource_spans *rs0 = resource_spans(3, ss0);

	/* a resource with a bad attribute rejects all its spans */
	tl_pb_span *s1[] = {span_min(5), span_min(6)};
	tl_pb_scope_spans *ss1 = scope_spans(2, s1);
	tl_pb_resource_spans *rs1 = resource_spans(1, &ss1);
	rs1->resource = mk(&DESC_RES);
	tl_pb_keyvalue *rkv[] = {kv("service.name", av_str("ok")), kv("x", av_str("\xc1\x81"))};
	rs1->resource->n_attributes = 2;
	rs1->resource->attributes = attrs(2, rkv);

	/* a scope with too many attributes rejects its spans, not its sibling scope's */
	tl_pb_span *s2a = span_min(7), *s2b = span_min(8);
	tl_pb_scope_spans *ss2[] = {scope_spans(1, &s2a), scope_spans(1, &s2b)};
	ss2[0]->scope = mk(&DESC_SCOPE);
	ss2[0]->scope->n_attributes = 129;
	ss2[0]->scope->attributes = (tl_pb_keyvalue **)ptrs(129);
	tl_pb_resource_spans *rs2 = resource_spans(2, ss2);

	tl_pb_resource_spans *all[] = {rs0, rs1, rs2};
	tl_pb_export_req *req = request(3, all);
	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(req, &lim, &v), 0);
	cr_assert_eq(v.spans_total, 8);
	cr_assert_eq(v.spans_rejected, 5);
	cr_assert_str_eq(v.first_error.msg,
	                 "resource_spans[0].scope_spans[0].spans[1]: span_id must be 8 bytes, got 5");
	cr_assert_eq(tl_otlp_count_spans(req), 3);
	cr_assert_eq(req->n_resource_spans, 2);
	cr_assert_eq(req->resource_spans[0], rs0);
	cr_assert_eq(rs0->n_scope_spans, 1);
	cr_assert_eq(rs0->scope_spans[0]->n_spans, 2);
	cr_assert_eq(rs0->scope_spans[0]->spans[0], good1);
	cr_assert_eq(rs0->scope_spans[0]->spans[1], good2);
	cr_assert_eq(req->resource_spans[1], rs2);
	cr_assert_eq(rs2->n_scope_spans, 1);
	cr_assert_eq(rs2->scope_spans[0]->spans[0], s2b);

	/* the resource's reason, when it is the first */
	tl_pb_export_req *req1 = request(1, &rs1);
	rs1->n_scope_spans = 1;
	ss1->n_spans = 2;
	cr_assert_eq(tl_otlp_validate(req1, &lim, &v), 0);
	cr_assert_eq(v.spans_rejected, 2);
	cr_assert_str_eq(v.first_error.msg, "resource_spans[0].resource.attributes[1].value: string value is not "
	                                    "valid UTF-8");
	tl_pb_export_req *req2 = request(1, &rs2);
	rs2->n_scope_spans = 2;
	rs2->scope_spans[0] = ss2[0];
	rs2->scope_spans[1] = ss2[1];
	ss2[0]->n_spans = 1;
	cr_assert_eq(tl_otlp_validate(req2, &lim, &v), 0);
	cr_assert_str_eq(v.first_error.msg, "resource_spans[0].scope_spans[0].scope.attributes: 129, more than 128");
}

Test(otlp, max_spans_is_a_limit)
{
	lim.max_spans = 3;
	tl_pb_span *s[] = {span_min(1), span_min(2), span_min(3), span_min(4)};
	tl_pb_export_req *req = one_span_request(s[0]);
	req->resource_spans[0]->scope_spans[0] = scope_spans(4, s);
	size_t len;
	uint8_t *b = pack(req, &len);
	expect_proto_error(b, len, TL_ELIMIT, "more than 3 spans");
	free(b);

	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(req, &lim, &v), TL_ELIMIT);
	cr_assert_eq(v.spans_rejected, 4);
	cr_assert_eq(req->n_resource_spans, 0);

	expect_json_error("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{},{}]},{\"spans\":[{},{}]}]}]}", TL_ELIMIT,
	                  "more than 3 spans");
}

Test(otlp, arena_cap_is_enforced)
{
	tl_pb_export_req *want = rich_request();
	size_t n;
	uint8_t *b = pack(want, &n);
	tl_arena small;
	tl_arena_init(&small, 1024, 2048);
	lim.max_decoded_bytes = 2048;
	tl_pb_export_req *r = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(tl_otlp_decode_proto(b, n, &lim, tl_arena_allocator(&small), &r, &err), TL_ELIMIT);
	cr_assert_null(r);
	cr_assert_str_eq(err.msg, "decoded request exceeds 2048 bytes");
	tl_arena_reset(&small);
	cr_assert_eq(tl_otlp_decode_json((const uint8_t *)rich_json, strlen(rich_json), &lim,
	                                 tl_arena_allocator(&small), &r, &err),
	             TL_ELIMIT);
	cr_assert_null(r);
	cr_assert_str_eq(err.msg, "decoded request exceeds 2048 bytes");
	tl_arena_fini(&small);
	free(b);

	/* and with room enough, both decode */
	tl_arena big;
	tl_arena_init(&big, 1024, 64 * 1024);
	cr_assert_eq(tl_otlp_decode_json((const uint8_t *)rich_json, strlen(rich_json), &lim, tl_arena_allocator(&big),
	                                 &r, &err),
	             0, "%s", err.msg);
	tl_arena_fini(&big);
}

Test(otlp, proto_decode_speed)
{
	enum { SPANS = 100, ATTRS = 10, ROUNDS = 200 };
	tl_pb_span *s[SPANS];
	for (int i = 0; i < SPANS; i++) {
		s[i] = span_min((uint8_t)i);
		s[i]->n_attributes = ATTRS;
		s[i]->attributes = (tl_pb_keyvalue **)ptrs(ATTRS);
		for (int k = 0; k < ATTRS; k++) {
			char key[32];
			snprintf(key, sizeof key, "attribute.key.%d", k);
			s[i]->attributes[k] = kv(key, av_str("a typical attribute value"));
		}
	}
	tl_pb_export_req *req = one_span_request(s[0]);
	req->resource_spans[0]->scope_spans[0] = scope_spans(SPANS, s);
	size_t len;
	uint8_t *b = pack(req, &len);
	/* A block that holds the whole request, so a reset arena is reused instead of malloc'd again. */
	tl_arena warm;
	tl_arena_init(&warm, 1 << 20, lim.max_decoded_bytes);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < ROUNDS; i++) {
		tl_pb_export_req *r;
		tl_errmsg err;
		cr_assert_eq(tl_otlp_decode_proto(b, len, &lim, tl_arena_allocator(&warm), &r, &err), 0);
		tl_otlp_verdict v;
		cr_assert_eq(tl_otlp_validate(r, &lim, &v), 0);
		cr_assert_eq(v.spans_rejected, 0);
		tl_arena_reset(&warm);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	tl_arena_fini(&warm);
	double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / ROUNDS;
	cr_log_info("decode+validate of %zu bytes (%d spans x %d attributes): %.1f us", len, SPANS, ATTRS, us);
	/* Generous: sanitizer builds are several times slower than release. */
	cr_expect_lt(us, 5000.0);
	free(b);
}
