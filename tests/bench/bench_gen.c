/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Builds the benchmark's request templates with protobuf-c (so they are
 * exactly what an OpenTelemetry SDK's protobuf exporter would send), finds
 * where each trace id landed in the encoded bytes, and patches fresh ids in
 * place for every request sent. Span shapes follow an ML serving stage:
 * an HTTP server span, feature lookups, a model call, cache and database
 * clients, with string, int, double and bool attributes.
 */
#include "bench_gen.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_arena.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_otlp.h"
#include "tl_pb.h"
#include "tl_time.h"

#define KIND_INTERNAL OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL
#define KIND_SERVER OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER
#define KIND_CLIENT OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT

static const char *const span_names[] = {
        "POST /v1/predict", "features.lookup", "feature_store.get", "model.predict",
        "redis GET",        "SELECT features", "postprocess",       "explain.shap",
};
static const char *const services[] = {"serving-api", "feature-service", "fraud-model", "ranker", "ingest-worker"};
static const char *const models[] = {"fraud-detector", "churn-xgb", "ranker-bert", "price-gbm"};

/* xorshift64*: deterministic variety, so runs are comparable. */
static uint64_t rnd(uint64_t *st)
{
	uint64_t x = *st;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * UINT64_C(2685821657736338717);
}

static char *astr(tl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *astr(tl_arena *a, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	return tl_arena_strndup(a, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static tl_pb_keyvalue *kv(tl_arena *a, const char *key, tl_pb_anyvalue v)
{
	tl_pb_keyvalue *k = tl_arena_alloc(a, sizeof(*k));
	tl_pb_anyvalue *pv = tl_arena_alloc(a, sizeof(*pv));
	tl_pb_keyvalue kinit = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
	*k = kinit;
	*pv = v;
	k->key = (char *)key;
	k->value = pv;
	return k;
}

static tl_pb_anyvalue v_str(char *s)
{
	tl_pb_anyvalue v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	v.value_case = TL_PB_ANY_STRING;
	v.string_value = s;
	return v;
}

static tl_pb_anyvalue v_int(int64_t i)
{
	tl_pb_anyvalue v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	v.value_case = TL_PB_ANY_INT;
	v.int_value = i;
	return v;
}

static tl_pb_anyvalue v_dbl(double d)
{
	tl_pb_anyvalue v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	v.value_case = TL_PB_ANY_DOUBLE;
	v.double_value = d;
	return v;
}

static tl_pb_anyvalue v_bool(int b)
{
	tl_pb_anyvalue v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	v.value_case = TL_PB_ANY_BOOL;
	v.bool_value = b != 0;
	return v;
}

static uint8_t *arand(tl_arena *a, uint64_t *st, size_t n)
{
	uint8_t *p = tl_arena_alloc(a, n);
	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t)(rnd(st) >> 56);
	}
	return p;
}

/* One span: 10 attributes of the four scalar kinds, 1 in 20 spans with an error status. */
static tl_pb_span *make_span(tl_arena *a, uint64_t *st, const uint8_t *trace_id, const uint8_t *parent, size_t idx,
                             uint64_t t0)
{
	tl_pb_span *s = tl_arena_alloc(a, sizeof(*s));
	tl_pb_span init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
	*s = init;
	s->trace_id.data = (uint8_t *)trace_id;
	s->trace_id.len = BG_TRACE_ID_LEN;
	s->span_id.data = arand(a, st, TL_SPAN_ID_LEN);
	s->span_id.len = TL_SPAN_ID_LEN;
	if (parent != NULL) {
		s->parent_span_id.data = (uint8_t *)parent;
		s->parent_span_id.len = TL_SPAN_ID_LEN;
	}
	s->name = (char *)span_names[idx == 0 ? 0 : 1 + rnd(st) % (sizeof(span_names) / sizeof(span_names[0]) - 1)];
	s->kind = idx == 0 ? KIND_SERVER : (rnd(st) & 1) ? KIND_CLIENT : KIND_INTERNAL;
	s->start_time_unix_nano = t0 + idx * UINT64_C(350000) + rnd(st) % 100000;
	s->end_time_unix_nano = s->start_time_unix_nano + UINT64_C(20000) + rnd(st) % 4000000;
	s->flags = 0x101; /* sampled, parent-is-remote known */

	tl_pb_keyvalue **kvs = tl_arena_alloc(a, BG_ATTRS_PER_SPAN * sizeof(*kvs));
	uint64_t r = rnd(st);
	kvs[0] = kv(a, "http.request.method", v_str((char *)((r & 1) ? "POST" : "GET")));
	kvs[1] = kv(a, "url.path", v_str(astr(a, "/v1/models/%s/predict", models[r % 4])));
	kvs[2] = kv(a, "http.response.status_code", v_int((r & 0x30) == 0x30 ? 503 : 200));
	kvs[3] = kv(a, "server.address", v_str((char *)"feature-store.ml.svc.cluster.local"));
	kvs[4] = kv(a, "ml.model.name", v_str((char *)models[(r >> 8) % 4]));
	kvs[5] = kv(a, "ml.model.version",
	            v_str(astr(a, "2024.%u.%u", (unsigned)(r >> 16) % 12 + 1, (unsigned)(r >> 20) % 30)));
	kvs[6] = kv(a, "ml.prediction.id",
	            v_str(astr(a, "%08x-%04x-4%03x-a%03x-%012llx", (unsigned)(r >> 32), (unsigned)(r >> 16) & 0xffff,
	                       (unsigned)r & 0xfff, (unsigned)(r >> 40) & 0xfff,
	                       (unsigned long long)(rnd(st) & UINT64_C(0xffffffffffff)))));
	kvs[7] = kv(a, "ml.score", v_dbl((double)(r % 10000) / 10000.0));
	kvs[8] = kv(a, "cache.hit", v_bool((int)((r >> 5) & 1)));
	kvs[9] = kv(a, "payload.bytes", v_int((int64_t)(r % 65536)));
	s->attributes = kvs;
	s->n_attributes = BG_ATTRS_PER_SPAN;

	if (rnd(st) % 20 == 0) {
		tl_pb_status *stt = tl_arena_alloc(a, sizeof(*stt));
		tl_pb_status sinit = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
		*stt = sinit;
		stt->code = TL_PB_STATUS_ERROR;
		stt->message = (char *)"upstream feature store timed out after 250ms";
		s->status = stt;
	}
	return s;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *p = malloc(n ? n : 1);
	if (p == NULL) {
		return NULL;
	}
	*len = protobuf_c_message_pack(m, p);
	return p;
}

/* Offsets of every occurrence of id[0..16) in buf. Returns how many (at most cap are stored). */
static size_t find_all(const uint8_t *buf, size_t len, const uint8_t *id, size_t *offs, size_t cap)
{
	size_t n = 0;
	const uint8_t *p = buf;
	const uint8_t *end = buf + len;
	while (p < end) {
		const uint8_t *q = memmem(p, (size_t)(end - p), id, BG_TRACE_ID_LEN);
		if (q == NULL) {
			break;
		}
		if (n < cap) {
			offs[n] = (size_t)(q - buf);
		}
		n++;
		p = q + 1;
	}
	return n;
}

static int build_req(bg_set *s, size_t ri, uint64_t *st, uint64_t t0)
{
	tl_arena a;
	tl_arena_init(&a, 256 * 1024, 0);
	int rc = -ENOMEM;
	bg_req *r = &s->reqs[ri];

	tl_pb_export_req req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	tl_pb_resource_spans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
	tl_pb_resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	tl_pb_scope_spans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
	tl_pb_scope scope = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	tl_pb_resource_spans *rsp = &rs;
	tl_pb_scope_spans *ssp = &ss;
	tl_pb_keyvalue *rattrs[4];

	rattrs[0] = kv(&a, "service.name", v_str((char *)services[ri % 5]));
	rattrs[1] = kv(&a, "service.instance.id", v_str(astr(&a, "pod-%zu-7f9c", ri)));
	rattrs[2] = kv(&a, "telemetry.sdk.language", v_str((char *)"python"));
	rattrs[3] = kv(&a, "deployment.environment", v_str((char *)"bench"));
	res.attributes = rattrs;
	res.n_attributes = 4;
	scope.name = (char *)"threadline.bench";
	scope.version = (char *)"1.0.0";

	tl_pb_span **spans = tl_arena_alloc(&a, BG_SPANS_PER_REQ * sizeof(*spans));
	uint8_t *tids[BG_TRACES_PER_REQ];
	if (spans == NULL) {
		goto out;
	}
	for (size_t t = 0; t < BG_TRACES_PER_REQ; t++) {
		/* Random template ids; 128 bits make a false match in the body practically impossible. */
		tids[t] = arand(&a, st, BG_TRACE_ID_LEN);
		const uint8_t *root = NULL;
		for (size_t i = 0; i < BG_SPANS_PER_TRACE; i++) {
			tl_pb_span *sp = make_span(&a, st, tids[t], root, i, t0 + t * UINT64_C(50000000));
			if (i == 0) {
				root = sp->span_id.data;
			}
			spans[t * BG_SPANS_PER_TRACE + i] = sp;
		}
	}
	ss.scope = &scope;
	ss.spans = spans;
	ss.n_spans = BG_SPANS_PER_REQ;
	rs.resource = &res;
	rs.scope_spans = &ssp;
	rs.n_scope_spans = 1;
	req.resource_spans = &rsp;
	req.n_resource_spans = 1;

	r->body = pack(&req.base, &r->len);
	if (r->body == NULL) {
		goto out;
	}
	for (size_t t = 0; t < BG_TRACES_PER_REQ; t++) {
		if (find_all(r->body, r->len, tids[t], r->id_off[t], BG_SPANS_PER_TRACE) != BG_SPANS_PER_TRACE) {
			rc = TL_EINVALID;
			goto out;
		}
	}
	for (size_t i = 0; i < BG_SPANS_PER_REQ; i++) {
		bg_value *v = &s->spans[ri * BG_SPANS_PER_REQ + i];
		v->data = pack(&spans[i]->base, &v->len);
		if (v->data == NULL) {
			goto out;
		}
	}
	if (r->len > s->max_len) {
		s->max_len = r->len;
	}
	rc = 0;
out:
	tl_arena_fini(&a);
	return rc;
}

int bg_set_init(bg_set *s, size_t nreqs)
{
	memset(s, 0, sizeof(*s));
	s->reqs = calloc(nreqs, sizeof(*s->reqs));
	s->spans = calloc(nreqs * BG_SPANS_PER_REQ, sizeof(*s->spans));
	if (s->reqs == NULL || s->spans == NULL) {
		bg_set_fini(s);
		return -ENOMEM;
	}
	s->nreqs = nreqs;
	s->nspans = nreqs * BG_SPANS_PER_REQ;
	int rc = tl_random_bytes(s->run_id, sizeof(s->run_id));
	if (rc != 0) {
		bg_set_fini(s);
		return rc;
	}
	uint64_t st = UINT64_C(0x9e3779b97f4a7c15);
	uint64_t t0 = tl_now_ns() - UINT64_C(60) * 1000000000u;
	for (size_t i = 0; i < nreqs; i++) {
		if ((rc = build_req(s, i, &st, t0 + i * UINT64_C(1000000))) != 0) {
			bg_set_fini(s);
			return rc;
		}
	}
	s->next_trace = 1;
	return 0;
}

void bg_set_fini(bg_set *s)
{
	if (s->reqs != NULL) {
		for (size_t i = 0; i < s->nreqs; i++) {
			free(s->reqs[i].body);
		}
	}
	if (s->spans != NULL) {
		for (size_t i = 0; i < s->nspans; i++) {
			free(s->spans[i].data);
		}
	}
	free(s->reqs);
	free(s->spans);
	memset(s, 0, sizeof(*s));
}

void bg_patch(bg_set *s, const bg_req *r, uint8_t *body, uint8_t ids_out[BG_TRACES_PER_REQ][BG_TRACE_ID_LEN])
{
	for (size_t t = 0; t < BG_TRACES_PER_REQ; t++) {
		uint8_t id[BG_TRACE_ID_LEN];
		uint64_t n = s->next_trace++;
		memcpy(id, s->run_id, 8);
		for (int i = 0; i < 8; i++) {
			id[8 + i] = (uint8_t)(n >> (56 - 8 * i));
		}
		for (size_t i = 0; i < BG_SPANS_PER_TRACE; i++) {
			memcpy(body + r->id_off[t][i], id, BG_TRACE_ID_LEN);
		}
		if (ids_out != NULL) {
			memcpy(ids_out[t], id, BG_TRACE_ID_LEN);
		}
	}
}

static int check_one(bg_set *s, const uint8_t *body, size_t len, const uint8_t (*ids)[BG_TRACE_ID_LEN], char *why,
                     size_t cap)
{
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	tl_arena a;
	tl_arena_init(&a, 256 * 1024, lim.max_decoded_bytes);
	tl_pb_export_req *req = NULL;
	tl_errmsg em = {{0}};
	tl_otlp_verdict v;
	int rc = tl_otlp_decode_proto(body, len, &lim, tl_arena_allocator(&a), &req, &em);
	if (rc != 0) {
		snprintf(why, cap, "template does not decode: %s (%s)", em.msg, tl_strerror(rc));
		goto out;
	}
	if ((rc = tl_otlp_validate(req, &lim, &v)) != 0 || v.spans_rejected != 0 || v.spans_total != BG_SPANS_PER_REQ) {
		snprintf(why, cap, "template: %zu spans, %zu rejected (%s)", v.spans_total, v.spans_rejected,
		         v.first_error.msg);
		rc = rc ? rc : TL_EINVALID;
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		tl_pb_resource_spans *rs = req->resource_spans[i];
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			for (size_t m = 0; m < rs->scope_spans[j]->n_spans; m++, k++) {
				tl_pb_span *sp = rs->scope_spans[j]->spans[m];
				const uint8_t *want = ids != NULL ? ids[k / BG_SPANS_PER_TRACE] : NULL;
				if (sp->n_attributes != BG_ATTRS_PER_SPAN || sp->trace_id.len != BG_TRACE_ID_LEN ||
				    (want != NULL && memcmp(sp->trace_id.data, want, BG_TRACE_ID_LEN) != 0)) {
					snprintf(why, cap, "span %zu: %zu attributes or wrong trace id", k,
					         sp->n_attributes);
					rc = TL_EINVALID;
					goto out;
				}
			}
		}
	}
	(void)s;
out:
	tl_arena_fini(&a);
	return rc;
}

int bg_self_check(bg_set *s, char *why, size_t cap)
{
	uint8_t *copy = malloc(s->max_len);
	if (copy == NULL) {
		return -ENOMEM;
	}
	int rc = 0;
	for (size_t i = 0; i < s->nreqs && rc == 0; i++) {
		uint8_t ids[BG_TRACES_PER_REQ][BG_TRACE_ID_LEN];
		if ((rc = check_one(s, s->reqs[i].body, s->reqs[i].len, NULL, why, cap)) != 0) {
			break;
		}
		memcpy(copy, s->reqs[i].body, s->reqs[i].len);
		uint64_t save = s->next_trace;
		bg_patch(s, &s->reqs[i], copy, ids);
		s->next_trace = save;
		rc = check_one(s, copy, s->reqs[i].len, (const uint8_t(*)[BG_TRACE_ID_LEN])ids, why, cap);
	}
	free(copy);
	return rc;
}
