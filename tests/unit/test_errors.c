/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error analysis (collector/co_errors.c) on a real store in a temporary
 * directory, fed through co_store_commit the way the collector's writer
 * feeds it: multi-service failures (the error in the deepest service, an
 * error swallowed and re-raised higher up, a retry that recovered, an
 * async hop joined by a span link, a prediction failing because of an
 * upstream FAILED run), then the answers of co_errors_list and
 * co_errors_explain read back as JSON: groups by normalised message,
 * impact through the lineage graph, ranking, the window's bounds, partial
 * answers, and the query service's errors_list / errors_explain.
 */
#include "co_errors.h"
#include "co_query.h"
#include "co_store.h"
#include "store_fixture.h"
#include "tl_arena.h"
#include "tl_id.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <criterion/criterion.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixtures ---- */

static void setup(void)
{
	store_fixture_setup("errors", 64 << 10);
}

static void teardown(void)
{
	store_fixture_teardown();
}

TestSuite(errors, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t T(const char *rfc3339)
{
	uint64_t ns;
	cr_assert_eq(tl_parse_time(rfc3339, 0, &ns), 0, "time %s", rfc3339);
	return ns;
}

#define MS UINT64_C(1000000)
#define MIN (60 * UINT64_C(1000000000))
#define T0 T("2026-11-23T13:00:00Z")

/* ---- building traces ---- */

/* A trace id: 16 bytes of b. Its hex is b's two digits, sixteen times. */
static uint8_t *tid(uint8_t b)
{
	uint8_t *p = az(16);
	memset(p, b, 16);
	return p;
}

static const char *tid_hex(uint8_t b)
{
	char *h = az(33);
	tl_hex_encode(tid(b), 16, h);
	return h;
}

static ProtobufCBinaryData span_id(uint32_t id)
{
	uint8_t *p = az(8);
	p[4] = (uint8_t)(id >> 24);
	p[5] = (uint8_t)(id >> 16);
	p[6] = (uint8_t)(id >> 8);
	p[7] = (uint8_t)id;
	return (ProtobufCBinaryData){8, p};
}

static const char *span_hex(uint32_t id)
{
	char *h = az(17);
	ProtobufCBinaryData b = span_id(id);
	tl_hex_encode(b.data, 8, h);
	return h;
}

#define MAXPEND 64

/* Spans waiting for flush(), with their services. */
static struct {
	tl_pb_span *sp[MAXPEND];
	const char *svc[MAXPEND];
	size_t n;
} pend;

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

static void append_kv(tl_pb_keyvalue ***arr, size_t *n, tl_pb_keyvalue *kv)
{
	tl_pb_keyvalue **na = az((*n + 1) * sizeof(*na));
	if (*n > 0)
		memcpy(na, *arr, *n * sizeof(*na));
	na[(*n)++] = kv;
	*arr = na;
}

/* A span of trace t in service svc; parent 0 makes a root. Times in ms after base. */
static tl_pb_span *sp(uint8_t t, uint32_t id, uint32_t parent, const char *svc, const char *name, uint64_t base,
                      uint64_t start_ms, uint64_t end_ms)
{
	cr_assert_lt(pend.n, MAXPEND);
	tl_pb_span *s = az(sizeof(*s));
	opentelemetry__proto__trace__v1__span__init(s);
	s->trace_id = (ProtobufCBinaryData){16, tid(t)};
	s->span_id = span_id(id);
	if (parent != 0)
		s->parent_span_id = span_id(parent);
	s->name = as(name);
	s->kind = parent == 0 ? 2 : 1;
	s->start_time_unix_nano = base + start_ms * MS;
	s->end_time_unix_nano = base + end_ms * MS;
	pend.sp[pend.n] = s;
	pend.svc[pend.n] = svc;
	pend.n++;
	return s;
}

static void fail_(tl_pb_span *s, const char *msg)
{
	s->status = az(sizeof(tl_pb_status));
	opentelemetry__proto__trace__v1__status__init(s->status);
	s->status->code = TL_PB_STATUS_ERROR;
	s->status->message = as(msg);
}

/* Records an exception event (OpenTelemetry semantic conventions) and fails the span with msg. */
static void exc(tl_pb_span *s, const char *type, const char *msg)
{
	tl_pb_event *ev = az(sizeof(*ev));
	opentelemetry__proto__trace__v1__span__event__init(ev);
	ev->name = as("exception");
	ev->time_unix_nano = s->end_time_unix_nano;
	append_kv(&ev->attributes, &ev->n_attributes, kv_str("exception.type", type));
	append_kv(&ev->attributes, &ev->n_attributes, kv_str("exception.message", msg));
	append_kv(&ev->attributes, &ev->n_attributes, kv_str("exception.stacktrace", "Traceback ..."));
	tl_pb_event **evs = az((s->n_events + 1) * sizeof(*evs));
	if (s->n_events > 0)
		memcpy(evs, s->events, s->n_events * sizeof(*evs));
	evs[s->n_events++] = ev;
	s->events = evs;
	fail_(s, msg);
}

static void attr(tl_pb_span *s, const char *k, const char *v)
{
	append_kv(&s->attributes, &s->n_attributes, kv_str(k, v));
}

static void link_to(tl_pb_span *s, uint8_t t, uint32_t span)
{
	tl_pb_link *l = az(sizeof(*l));
	opentelemetry__proto__trace__v1__span__link__init(l);
	l->trace_id = (ProtobufCBinaryData){16, tid(t)};
	l->span_id = span_id(span);
	tl_pb_link **ls = az((s->n_links + 1) * sizeof(*ls));
	if (s->n_links > 0)
		memcpy(ls, s->links, s->n_links * sizeof(*ls));
	ls[s->n_links++] = l;
	s->links = ls;
}

/* The pending spans as one export request: a ResourceSpans per service. */
static tl_pb_export_req *pend_req(void)
{
	tl_pb_export_req *r = az(sizeof(*r));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(r);
	r->resource_spans = az(pend.n * sizeof(*r->resource_spans));
	bool done[MAXPEND] = {false};
	for (size_t i = 0; i < pend.n; i++) {
		if (done[i])
			continue;
		tl_pb_scope_spans *ss = az(sizeof(*ss));
		opentelemetry__proto__trace__v1__scope_spans__init(ss);
		ss->spans = az(pend.n * sizeof(*ss->spans));
		for (size_t j = i; j < pend.n; j++) {
			if (!done[j] && strcmp(pend.svc[j], pend.svc[i]) == 0) {
				ss->spans[ss->n_spans++] = pend.sp[j];
				done[j] = true;
			}
		}
		tl_pb_resource *res = az(sizeof(*res));
		opentelemetry__proto__resource__v1__resource__init(res);
		append_kv(&res->attributes, &res->n_attributes, kv_str("service.name", pend.svc[i]));
		tl_pb_resource_spans *rs = az(sizeof(*rs));
		opentelemetry__proto__trace__v1__resource_spans__init(rs);
		rs->resource = res;
		rs->n_scope_spans = 1;
		rs->scope_spans = az(sizeof(*rs->scope_spans));
		rs->scope_spans[0] = ss;
		r->resource_spans[r->n_resource_spans++] = rs;
	}
	return r;
}

/* Commits the pending spans and the OpenLineage events in one batch. */
static void flush_with(ProtobufCBinaryData *events, size_t nev)
{
	co_batch *b = az(sizeof(*b));
	memset(b->agent_id, 0xe1, sizeof(b->agent_id));
	b->seq = ++seq;
	b->lineage = events;
	b->n_lineage = nev;
	if (pend.n > 0) {
		b->traces = az(sizeof(*b->traces));
		b->traces[0] = pend_req();
		b->n_traces = 1;
	}
	co_batch *bs[1] = {b};
	int rc = co_store_commit(S, bs, 1, tl_now_ns());
	cr_assert_eq(rc, 0, "commit: %s", tl_strerror(rc));
	cr_assert_eq(b->status, CO_BATCH_OK);
	pend.n = 0;
}

static void flush(void)
{
	flush_with(NULL, 0);
}

/* ---- the scenarios ---- */

/*
 * Trace 0x0a: the error starts in the deepest service. serving-api calls
 * feature-store, which calls postgres; postgres raises, and each caller
 * fails in turn.
 */
static void deepest(uint8_t t, uint64_t base, const char *row)
{
	tl_pb_span *a = sp(t, 1, 0, "serving-api", "POST /predict", base, 0, 100);
	fail_(a, "500 from feature-store");
	tl_pb_span *b = sp(t, 2, 1, "feature-store", "GET /features", base, 10, 90);
	exc(b, "HTTPError", "upstream query failed");
	tl_pb_span *c = sp(t, 3, 2, "postgres", "SELECT features", base, 20, 60);
	char msg[128];
	snprintf(msg, sizeof(msg), "division by zero at row %s", row);
	exc(c, "psycopg2.errors.DivisionByZero", msg);
	sp(t, 4, 2, "feature-store", "cache.get", base, 12, 15);
}

/* Trace 0x0b: swallowed by payment (it logs and returns), re-raised by checkout. */
static void swallowed(uint8_t t, uint64_t base)
{
	tl_pb_span *a = sp(t, 1, 0, "checkout", "POST /checkout", base, 0, 200);
	exc(a, "CheckoutError", "payment incomplete for order 77812");
	sp(t, 2, 1, "payment", "charge card", base, 10, 150); /* status UNSET: it swallowed the error */
	tl_pb_span *c = sp(t, 3, 2, "card-gateway", "POST /v1/charges", base, 20, 140);
	exc(c, "CardDeclined", "card 4242 declined: 'insufficient_funds'");
}

/* Trace 0x0c: the first attempt timed out, the retry worked. */
static void retried(uint8_t t, uint64_t base)
{
	sp(t, 1, 0, "serving-api", "POST /predict", base, 0, 400);
	tl_pb_span *a1 = sp(t, 2, 1, "model-server", "predict attempt", base, 5, 255);
	exc(a1, "TimeoutError", "timed out after 250ms");
	sp(t, 3, 1, "model-server", "predict attempt", base, 260, 390);
}

static json_t *load(const char *js)
{
	json_error_t je;
	json_t *d = json_loads(js, 0, &je);
	cr_assert_not_null(d, "not JSON: %s: %s", je.text, js);
	return d;
}

static json_t *list(uint64_t since, uint64_t until, size_t max_traces, size_t page)
{
	co_errors_opts o = {.since_ns = since, .until_ns = until, .max_traces = max_traces, .search_page = page};
	char *js = NULL;
	tl_errmsg err = {{0}};
	int rc = co_errors_list(S, &o, &QA, &js, &err);
	cr_assert_eq(rc, 0, "list: %s (%s)", tl_strerror(rc), err.msg);
	return load(js);
}

static json_t *explain(uint8_t t)
{
	char *js = NULL;
	tl_errmsg err = {{0}};
	int rc = co_errors_explain(S, tid(t), &QA, &js, &err);
	cr_assert_eq(rc, 0, "explain: %s (%s)", tl_strerror(rc), err.msg);
	return load(js);
}

static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static json_int_t iget(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "%s is not an integer", k);
	return json_integer_value(v);
}

static bool bget(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	cr_assert(json_is_boolean(v), "%s is not a boolean", k);
	return json_is_true(v);
}

/* The group of service/operation in a list answer, or NULL. */
static json_t *group(json_t *doc, const char *svc, const char *op)
{
	size_t i;
	json_t *g;
	json_array_foreach(json_object_get(doc, "groups"), i, g)
	{
		if (strcmp(sget(g, "service"), svc) == 0 && strcmp(sget(g, "operation"), op) == 0)
			return g;
	}
	return NULL;
}

static bool has_str(const json_t *a, const char *s)
{
	size_t i;
	const json_t *v;
	json_array_foreach(a, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

/* ---- normalising ---- */

static void norm_is(const char *in, const char *want)
{
	char out[CO_ERRORS_MSG_MAX + 1];
	size_t n = co_errors_normalize(in, strlen(in), out, sizeof(out));
	cr_assert_str_eq(out, want, "normalize(\"%s\")", in);
	cr_assert_eq(n, strlen(want));
}

Test(errors, normalize_rules)
{
	norm_is("user 1234 not found", "user <n> not found");
	norm_is("timed out after 2.5s (attempt 3)", "timed out after <n>s (attempt <n>)");
	norm_is("row 5f2c9a7e-1b2d-4c3e-8f9a-0123456789AB is locked", "row <id> is locked");
	norm_is("trace 5b8efff798038103d269b633813fc60c missing", "trace <id> missing");
	norm_is("bad pointer 0x7ffe12ab", "bad pointer <id>");
	norm_is("key 'user_42' not in \"cache-7\"", "key <s> not in <s>");
	norm_is("run `dbt run -m users` failed", "run <s> failed");
	norm_is("can't parse 'x' for user42", "can't parse <s> for user<n>");
	norm_is("  many\t\tspaces\n\nhere  ", "many spaces here");
	norm_is("deadbeef is a word, cafe1234 is an id", "deadbeef is a word, <id> is an id");
	norm_is("unterminated 'quote 12", "unterminated 'quote <n>");
	norm_is("", "");
	/* Two messages differing only by ids normalise alike. */
	char a[128], b[128];
	const char *m1 = "user 17 in req 0190e4a2-8a4b-7c6e-9d1f-00000000d0a0 denied";
	const char *m2 = "user 90210 in req 0190e4a2-8a4b-7c6e-9d1f-0000000fa11d denied";
	co_errors_normalize(m1, strlen(m1), a, sizeof(a));
	co_errors_normalize(m2, strlen(m2), b, sizeof(b));
	cr_assert_str_eq(a, b);
	cr_assert_str_eq(a, "user <n> in req <id> denied");
}

Test(errors, normalize_cuts_at_a_character)
{
	/* 600 bytes of "é" (2 bytes each): cut to at most CO_ERRORS_MSG_MAX, never inside a character. */
	char in[1201];
	for (size_t i = 0; i < 600; i++) {
		in[2 * i] = (char)0xc3;
		in[2 * i + 1] = (char)0xa9;
	}
	in[1200] = '\0';
	char out[CO_ERRORS_MSG_MAX + 1];
	size_t n = co_errors_normalize(in, 1200, out, sizeof(out));
	cr_assert_eq(n, CO_ERRORS_MSG_MAX);
	cr_assert_eq(n % 2, 0);
	/* A small buffer cuts shorter, still whole. */
	char small[8];
	n = co_errors_normalize("abc 12345 def", 13, small, sizeof(small));
	cr_assert_str_eq(small, "abc <n>");
	cr_assert_eq(n, 7);
}

Test(errors, fingerprint_id_is_stable)
{
	char a[17], b[17], c[17];
	co_errors_fingerprint_id("svc", "op", "ValueError", "bad <n>", a);
	co_errors_fingerprint_id("svc", "op", "ValueError", "bad <n>", b);
	co_errors_fingerprint_id("svc", "opValueError", "", "bad <n>", c);
	cr_assert_eq(strlen(a), 16);
	cr_assert_str_eq(a, b);
	cr_assert_str_neq(a, c, "parts are kept apart");
	for (size_t i = 0; i < 16; i++)
		cr_assert(strchr("0123456789abcdef", a[i]) != NULL);
}

Test(errors, exception_from_event_else_status)
{
	tl_pb_span *s = sp(1, 1, 0, "svc", "op", T0, 0, 1);
	const char *type, *msg;
	co_errors_exception(s, &type, &msg);
	cr_assert_str_eq(type, "");
	cr_assert_str_eq(msg, "");
	fail_(s, "status says so");
	attr(s, "error.type", "timeout");
	co_errors_exception(s, &type, &msg);
	cr_assert_str_eq(type, "timeout");
	cr_assert_str_eq(msg, "status says so");
	exc(s, "KeyError", "first");
	exc(s, "ValueError", "last one wins");
	co_errors_exception(s, &type, &msg);
	cr_assert_str_eq(type, "ValueError");
	cr_assert_str_eq(msg, "last one wins");
	pend.n = 0;
}

/* ---- explain ---- */

Test(errors, explain_error_in_the_deepest_service)
{
	deepest(0x0a, T0, "17");
	flush();
	json_t *d = explain(0x0a);
	cr_assert_str_eq(sget(d, "trace_id"), tid_hex(0x0a));
	cr_assert_str_eq(sget(d, "outcome"), "failed");
	json_t *chain = json_object_get(d, "chain");
	cr_assert_eq(json_array_size(chain), 3);
	static const char *const svc[] = {"serving-api", "feature-store", "postgres"};
	for (size_t i = 0; i < 3; i++) {
		json_t *h = json_array_get(chain, i);
		cr_assert_str_eq(sget(h, "service"), svc[i]);
		cr_assert(bget(h, "failed"));
		cr_assert_eq(bget(h, "root_cause"), i == 2);
		cr_assert_str_eq(sget(h, "status"), "ERROR");
	}
	json_t *rc = json_object_get(d, "root_cause");
	cr_assert_str_eq(sget(rc, "span_id"), span_hex(3));
	cr_assert_str_eq(sget(rc, "parent_span_id"), span_hex(2));
	cr_assert_str_eq(sget(rc, "operation"), "SELECT features");
	cr_assert_str_eq(sget(rc, "exception_type"), "psycopg2.errors.DivisionByZero");
	cr_assert_str_eq(sget(rc, "exception_message"), "division by zero at row 17");
	cr_assert_str_eq(sget(rc, "duration_nano"), "40000000");
	char want[32];
	snprintf(want, sizeof(want), "%llu", (unsigned long long)(T0 + 20 * MS));
	cr_assert_str_eq(sget(rc, "start_unix_nano"), want);
	json_t *fp = json_object_get(d, "fingerprint");
	cr_assert_str_eq(sget(fp, "message"), "division by zero at row <n>");
	char id[17];
	co_errors_fingerprint_id("postgres", "SELECT features", "psycopg2.errors.DivisionByZero",
	                         "division by zero at row <n>", id);
	cr_assert_str_eq(sget(fp, "id"), id);
	cr_assert_eq(json_array_size(json_object_get(d, "linked")), 0);
	cr_assert_eq(json_array_size(json_object_get(d, "upstream")), 0);
	cr_assert_eq(json_array_size(json_object_get(d, "predictions")), 0);
	cr_assert(!bget(d, "truncated"));
	json_decref(d);
}

Test(errors, explain_swallowed_and_reraised)
{
	swallowed(0x0b, T0);
	flush();
	json_t *d = explain(0x0b);
	cr_assert_str_eq(sget(d, "outcome"), "failed");
	json_t *chain = json_object_get(d, "chain");
	cr_assert_eq(json_array_size(chain), 3);
	cr_assert_str_eq(sget(json_array_get(chain, 0), "service"), "checkout");
	cr_assert(bget(json_array_get(chain, 0), "failed"));
	cr_assert_str_eq(sget(json_array_get(chain, 1), "service"), "payment");
	cr_assert(!bget(json_array_get(chain, 1), "failed"), "payment swallowed the error");
	cr_assert(json_is_null(json_object_get(json_array_get(chain, 1), "exception_type")));
	cr_assert_str_eq(sget(json_array_get(chain, 1), "status"), "UNSET");
	json_t *rc = json_object_get(d, "root_cause");
	cr_assert_str_eq(sget(rc, "service"), "card-gateway");
	cr_assert_str_eq(sget(rc, "exception_type"), "CardDeclined");
	cr_assert_str_eq(sget(json_object_get(d, "fingerprint"), "message"), "card <n> declined: <s>");
	json_decref(d);
}

Test(errors, explain_retry_that_recovered)
{
	retried(0x0c, T0);
	flush();
	json_t *d = explain(0x0c);
	cr_assert_str_eq(sget(d, "outcome"), "recovered");
	json_t *chain = json_object_get(d, "chain");
	cr_assert_eq(json_array_size(chain), 2);
	cr_assert(!bget(json_array_get(chain, 0), "failed"));
	json_t *rc = json_object_get(d, "root_cause");
	cr_assert_str_eq(sget(rc, "span_id"), span_hex(2), "the failed first attempt");
	cr_assert_str_eq(sget(rc, "exception_type"), "TimeoutError");
	json_decref(d);
}

Test(errors, explain_healthy_trace)
{
	sp(0x0d, 1, 0, "serving-api", "GET /healthz", T0, 0, 1);
	flush();
	json_t *d = explain(0x0d);
	cr_assert_str_eq(sget(d, "outcome"), "ok");
	cr_assert(json_is_null(json_object_get(d, "root_cause")));
	cr_assert(json_is_null(json_object_get(d, "fingerprint")));
	cr_assert_eq(json_array_size(json_object_get(d, "chain")), 0);
	json_decref(d);
}

Test(errors, explain_unknown_trace)
{
	char *js = NULL;
	tl_errmsg err = {{0}};
	int rc = co_errors_explain(S, tid(0x77), &QA, &js, &err);
	cr_assert_eq(rc, TL_ENOTFOUND);
	cr_assert_null(js);
	char want[64];
	snprintf(want, sizeof(want), "trace %s not found", tid_hex(0x77));
	cr_assert_str_eq(err.msg, want);
}

/*
 * An async hop: ingest (trace 0x21) validates a record (the validation
 * fails and is swallowed) and publishes it; the worker (trace 0x22)
 * consumes it in a trace of its own, joined by a span link to the publish,
 * and fails. The producer's failing span links back to the consumer: the
 * explanation must not loop.
 */
static void async_hop(void)
{
	sp(0x21, 1, 0, "ingest", "POST /events", T0, 0, 50);
	tl_pb_span *v = sp(0x21, 2, 1, "ingest", "validate", T0, 1, 10);
	exc(v, "SchemaWarning", "field user_id missing in record 991");
	link_to(v, 0x22, 1); /* back to the consumer: a loop */
	tl_pb_span *p = sp(0x21, 3, 1, "ingest", "publish events", T0, 11, 20);
	p->kind = 4; /* PRODUCER */
	flush();
	tl_pb_span *w = sp(0x22, 1, 0, "worker", "process events", T0, 30, 90);
	fail_(w, "processing failed");
	w->kind = 5; /* CONSUMER */
	link_to(w, 0x21, 3);
	tl_pb_span *k = sp(0x22, 2, 1, "worker", "enrich", T0, 40, 80);
	exc(k, "KeyError", "'user_id'");
	flush();
}

Test(errors, explain_continues_across_a_span_link)
{
	async_hop();
	json_t *d = explain(0x22);
	cr_assert_str_eq(sget(d, "outcome"), "failed");
	cr_assert_str_eq(sget(json_object_get(d, "root_cause"), "operation"), "enrich");
	json_t *linked = json_object_get(d, "linked");
	cr_assert_eq(json_array_size(linked), 1, "one linked trace, and no loop back");
	json_t *l = json_array_get(linked, 0);
	cr_assert_eq(iget(l, "depth"), 1);
	cr_assert_str_eq(sget(l, "from_trace_id"), tid_hex(0x22));
	cr_assert_str_eq(sget(l, "from_span_id"), span_hex(1));
	cr_assert_str_eq(sget(l, "trace_id"), tid_hex(0x21));
	cr_assert_str_eq(sget(l, "span_id"), span_hex(3));
	cr_assert(bget(l, "found"));
	cr_assert_str_eq(sget(l, "outcome"), "recovered");
	cr_assert_str_eq(sget(json_object_get(l, "linked_span"), "operation"), "publish events");
	cr_assert_str_eq(sget(json_object_get(l, "linked_span"), "kind"), "PRODUCER");
	json_t *rc = json_object_get(l, "root_cause");
	cr_assert_str_eq(sget(rc, "operation"), "validate");
	cr_assert_str_eq(sget(rc, "exception_type"), "SchemaWarning");
	cr_assert_eq(json_array_size(json_object_get(l, "chain")), 2);
	cr_assert(!bget(d, "truncated"));
	json_decref(d);

	/* A link into a trace the store does not have is reported, not fatal. */
	tl_pb_span *x = sp(0x23, 1, 0, "worker", "process events", T0, 100, 110);
	link_to(x, 0x24, 9);
	exc(x, "RuntimeError", "boom");
	flush();
	d = explain(0x23);
	l = json_array_get(json_object_get(d, "linked"), 0);
	cr_assert_str_eq(sget(l, "trace_id"), tid_hex(0x24));
	cr_assert(!bget(l, "found"));
	cr_assert_null(json_object_get(l, "outcome"));
	json_decref(d);
}

Test(errors, explain_link_depth_is_bounded)
{
	/* A chain of 7 traces, each failing and linked to the next. */
	for (uint8_t t = 0x30; t < 0x37; t++) {
		tl_pb_span *s = sp(t, 1, 0, "hop", "step", T0, 0, 10);
		exc(s, "HopError", "hop failed");
		link_to(s, (uint8_t)(t + 1), 1);
	}
	flush();
	json_t *d = explain(0x30);
	json_t *linked = json_object_get(d, "linked");
	cr_assert_eq(json_array_size(linked), CO_ERRORS_EXPLAIN_DEPTH);
	for (size_t i = 0; i < CO_ERRORS_EXPLAIN_DEPTH; i++) {
		json_t *l = json_array_get(linked, i);
		cr_assert_eq(iget(l, "depth"), (json_int_t)i + 1);
		cr_assert_str_eq(sget(l, "trace_id"), tid_hex((uint8_t)(0x31 + i)));
	}
	cr_assert(bget(d, "truncated"));
	json_decref(d);
}

/* ---- lineage ---- */

#define SCHEMA2 "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
#define DBT "https://github.com/OpenLineage/OpenLineage/tree/1.9.1/integration/dbt"
#define TRAINER "https://github.com/threadline/examples/trainer"
#define R_FEAT_FAIL "0190e4a2-8a4b-7c6e-9d1f-0000000fa11d"
#define R_TRAIN "0190e4a2-8a4b-7c6e-9d1f-00000007a1a1"

static ProtobufCBinaryData ev(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static ProtobufCBinaryData ev(const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	cr_assert(n > 0);
	char *c = tl_arena_alloc(&A, (size_t)n + 1);
	cr_assert_not_null(c);
	vsnprintf(c, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return (ProtobufCBinaryData){(size_t)n, (uint8_t *)c};
}

/*
 * The feature run fails (dbt: a FAIL event with its error, after writing
 * features.users); its work is traced in trace 0x41, where normalize raised.
 * The training run reads features.users and writes model churn:7; the model
 * server serves prediction p-9 with it in trace 0x42, and fails.
 */
static void failed_upstream(void)
{
	ProtobufCBinaryData evs[4];
	size_t n = 0;
	evs[n++] = ev("{\"eventType\":\"START\",\"eventTime\":\"2026-11-23T10:00:00Z\",\"producer\":\"" DBT
	              "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT_FAIL "\"},\"job\":{\"namespace\":"
	              "\"dbt://analytics\",\"name\":\"analytics.features.users\"},\"inputs\":[{\"namespace\":"
	              "\"s3://raw\",\"name\":\"events\"}],\"outputs\":[]}");
	evs[n++] = ev("{\"eventType\":\"FAIL\",\"eventTime\":\"2026-11-23T10:07:00Z\",\"producer\":\"" DBT
	              "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT_FAIL "\",\"facets\":{"
	              "\"errorMessage\":{\"_producer\":\"" DBT "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/"
	              "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet\",\"message\":\"Database Error in "
	              "model users: division by zero\",\"programmingLanguage\":\"SQL\"}}},\"job\":{\"namespace\":"
	              "\"dbt://analytics\",\"name\":\"analytics.features.users\"},\"inputs\":[{\"namespace\":"
	              "\"s3://raw\",\"name\":\"events\"}],\"outputs\":[{\"namespace\":\"warehouse\",\"name\":"
	              "\"features.users\"}]}");
	/* The feature run's own trace: its steps carry the run id. */
	tl_pb_span *f = sp(0x41, 1, 1000, "dbt", "dbt run users", T("2026-11-23T10:00:00Z"), 0, 420000);
	attr(f, "lineage.run_id", R_FEAT_FAIL);
	tl_pb_span *g = sp(0x41, 2, 1, "dbt", "normalize", T("2026-11-23T10:00:00Z"), 1000, 419000);
	attr(g, "lineage.run_id", R_FEAT_FAIL);
	exc(g, "ZeroDivisionError", "division by zero");
	fail_(f, "Database Error in model users: division by zero");
	flush_with(evs, n);
	n = 0;
	static const char job[] = "\"job\":{\"namespace\":\"ml\",\"name\":\"train_churn\"}";
	static const char in[] = "[{\"namespace\":\"warehouse\",\"name\":\"features.users\"}]";
	evs[n++] = ev("{\"eventType\":\"START\",\"eventTime\":\"2026-11-23T11:00:00.000Z\",\"producer\":\"" TRAINER
	              "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_TRAIN "\"},%s,\"inputs\":%s,"
	              "\"outputs\":[]}",
	              job, in);
	evs[n++] =
	        ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-23T12:00:00.000Z\",\"producer\":\"" TRAINER
	           "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_TRAIN "\"},%s,\"inputs\":%s,"
	           "\"outputs\":[{\"namespace\":\"model://registry\",\"name\":\"churn\",\"facets\":{"
	           "\"threadline_model\":{\"_producer\":\"" TRAINER "\",\"_schemaURL\":"
	           "\"https://threadline.dev/facets/ModelDatasetFacet.json\",\"name\":\"churn\",\"version\":\"7\"}}}]}",
	           job, in);
	flush_with(evs, n);
	tl_pb_span *a = sp(0x42, 1, 0, "serving-api", "POST /predict", T0, 0, 30);
	fail_(a, "prediction failed");
	tl_pb_span *p = sp(0x42, 2, 1, "model-server", "predict", T0, 5, 25);
	attr(p, "ml.prediction.id", "p-9");
	attr(p, "ml.model.name", "churn");
	attr(p, "ml.model.version", "7");
	attr(p, "ml.deployment", "churn-prod");
	exc(p, "ValueError", "NaN in feature events_7d for user 31337");
	flush();
}

Test(errors, explain_follows_lineage_to_a_failed_upstream_run)
{
	failed_upstream();
	json_t *d = explain(0x42);
	cr_assert_str_eq(sget(json_object_get(d, "root_cause"), "operation"), "predict");
	cr_assert(has_str(json_object_get(d, "predictions"), "p-9"));
	json_t *up = json_object_get(d, "upstream");
	cr_assert_eq(json_array_size(up), 1, "%s", json_dumps(up, 0));
	json_t *u = json_array_get(up, 0);
	cr_assert_str_eq(sget(u, "run"), "run:" R_FEAT_FAIL);
	cr_assert_str_eq(sget(u, "kind"), "failed");
	cr_assert_str_eq(sget(u, "state"), "FAIL");
	cr_assert_str_eq(sget(u, "job"), "job:dbt://analytics:analytics.features.users");
	cr_assert(strstr(sget(u, "error"), "division by zero") != NULL, "error: %s", sget(u, "error"));
	cr_assert(has_str(json_object_get(u, "affected_predictions"), "p-9"));
	cr_assert_eq(json_array_size(json_object_get(u, "predictions")), 0, "the run's own trace serves none");
	cr_assert_eq(iget(u, "depth"), 1);
	cr_assert_str_eq(sget(u, "from_trace_id"), tid_hex(0x42));
	/* The failed run's own trace, and its root cause. */
	cr_assert_str_eq(sget(u, "trace_id"), tid_hex(0x41));
	cr_assert(bget(u, "found"));
	cr_assert_str_eq(sget(u, "outcome"), "failed");
	json_t *rc = json_object_get(u, "root_cause");
	cr_assert_str_eq(sget(rc, "operation"), "normalize");
	cr_assert_str_eq(sget(rc, "exception_type"), "ZeroDivisionError");
	json_t *chain = json_object_get(u, "chain");
	cr_assert_eq(json_array_size(chain), 2);
	cr_assert(bget(json_array_get(chain, 0), "missing_parent"), "the run's root span names a parent never sent");
	json_decref(d);
}

Test(errors, list_impact_counts_predictions_models_and_downstream)
{
	failed_upstream();
	json_t *d = list(T("2026-11-23T00:00:00Z"), T("2026-11-24T00:00:00Z"), 0, 0);
	cr_assert(!bget(d, "partial"));
	cr_assert_eq(iget(d, "traces_examined"), 2);
	cr_assert_eq(iget(d, "groups_total"), 2);
	json_t *groups = json_object_get(d, "groups");
	/* The prediction's group ranks first: it hit a prediction. */
	json_t *g = json_array_get(groups, 0);
	cr_assert_str_eq(sget(g, "service"), "model-server");
	cr_assert_str_eq(sget(g, "exception_type"), "ValueError");
	cr_assert_str_eq(sget(g, "message"), "NaN in feature events_<n>d for user <n>");
	cr_assert_str_eq(sget(g, "sample_message"), "NaN in feature events_7d for user 31337");
	json_t *im = json_object_get(g, "impact");
	cr_assert_eq(iget(im, "traces"), 1);
	cr_assert_eq(iget(im, "predictions"), 1);
	json_t *models = json_object_get(im, "models");
	cr_assert_eq(iget(models, "count"), 1);
	cr_assert(has_str(json_object_get(models, "ids"), "model:churn:7"));
	json_t *deps = json_object_get(im, "deployments");
	cr_assert_eq(iget(deps, "count"), 1);
	cr_assert(has_str(json_object_get(deps, "ids"), "deployment:churn-prod"));
	/* The feature run's group: no prediction, but through lineage its run reaches the model and its deployment. */
	g = json_array_get(groups, 1);
	cr_assert_str_eq(sget(g, "service"), "dbt");
	cr_assert_str_eq(sget(g, "operation"), "normalize");
	im = json_object_get(g, "impact");
	cr_assert_eq(iget(im, "predictions"), 0);
	cr_assert_eq(iget(json_object_get(im, "runs"), "count"), 1);
	cr_assert(has_str(json_object_get(json_object_get(im, "runs"), "ids"), "run:" R_FEAT_FAIL));
	cr_assert(has_str(json_object_get(json_object_get(im, "models"), "ids"), "model:churn:7"));
	cr_assert(has_str(json_object_get(json_object_get(im, "deployments"), "ids"), "deployment:churn-prod"));
	json_decref(d);
}

/* ---- error groups ---- */

Test(errors, list_groups_by_normalised_message)
{
	deepest(0x51, T0, "17");
	deepest(0x52, T0 + 1 * MIN, "90210");
	swallowed(0x53, T0 + 2 * MIN);
	retried(0x54, T0 + 3 * MIN);
	flush();
	json_t *d = list(T0 - MIN, T0 + 10 * MIN, 0, 0);
	cr_assert(!bget(d, "partial"));
	cr_assert_eq(iget(d, "traces_examined"), 4);
	cr_assert_eq(iget(d, "groups_total"), 3);
	json_t *g = group(d, "postgres", "SELECT features");
	cr_assert_not_null(g);
	cr_assert_eq(iget(g, "traces"), 2, "rows 17 and 90210 are one group");
	cr_assert_eq(iget(g, "cause_spans"), 2);
	cr_assert_str_eq(sget(g, "message"), "division by zero at row <n>");
	cr_assert_str_eq(sget(g, "exception_type"), "psycopg2.errors.DivisionByZero");
	char want[32];
	snprintf(want, sizeof(want), "%llu", (unsigned long long)(T0 + 20 * MS));
	cr_assert_str_eq(sget(g, "first_seen_unix_nano"), want);
	snprintf(want, sizeof(want), "%llu", (unsigned long long)(T0 + MIN + 20 * MS));
	cr_assert_str_eq(sget(g, "last_seen_unix_nano"), want);
	cr_assert_eq(iget(json_object_get(g, "outcomes"), "failed"), 2);
	cr_assert_eq(iget(json_object_get(g, "outcomes"), "recovered"), 0);
	json_t *samples = json_object_get(g, "sample_trace_ids");
	cr_assert_eq(json_array_size(samples), 2);
	cr_assert(has_str(samples, tid_hex(0x51)) && has_str(samples, tid_hex(0x52)));
	char id[17];
	co_errors_fingerprint_id("postgres", "SELECT features", "psycopg2.errors.DivisionByZero",
	                         "division by zero at row <n>", id);
	cr_assert_str_eq(sget(g, "id"), id);
	g = group(d, "model-server", "predict attempt");
	cr_assert_not_null(g);
	cr_assert_eq(iget(json_object_get(g, "outcomes"), "recovered"), 1);
	cr_assert_eq(iget(json_object_get(g, "outcomes"), "failed"), 0);
	cr_assert_not_null(group(d, "card-gateway", "POST /v1/charges"));
	cr_assert_null(group(d, "serving-api", "POST /predict"), "a caller is never a root cause");
	json_decref(d);
}

Test(errors, list_counts_repeated_cause_spans)
{
	/* One trace whose three attempts failed alike (different ids) and whose caller gave up. */
	tl_pb_span *r = sp(0x55, 1, 0, "api", "GET /user", T0, 0, 400);
	fail_(r, "gave up");
	for (uint32_t k = 0; k < 3; k++) {
		tl_pb_span *a = sp(0x55, 2 + k, 1, "api", "db.query", T0, 10 + 100 * k, 90 + 100 * k);
		char msg[64];
		snprintf(msg, sizeof(msg), "deadlock on row %u", 100 + k);
		exc(a, "Deadlock", msg);
	}
	flush();
	json_t *d = list(T0 - MIN, T0 + MIN, 0, 0);
	json_t *g = group(d, "api", "db.query");
	cr_assert_eq(iget(g, "traces"), 1);
	cr_assert_eq(iget(g, "cause_spans"), 3);
	cr_assert_str_eq(sget(g, "sample_message"), "deadlock on row 100", "the root cause started first");
	json_decref(d);
}

Test(errors, list_ranks_by_predictions_then_traces)
{
	/* Group A: 3 traces, no predictions. Group B: 1 trace, 2 predictions. Group C: 2 traces. */
	for (uint8_t t = 0x61; t < 0x64; t++) {
		tl_pb_span *s = sp(t, 1, 0, "svc-a", "op", T0, t, t + 5);
		exc(s, "AError", "a");
	}
	tl_pb_span *b = sp(0x64, 1, 0, "svc-b", "batch predict", T0, 0, 10);
	exc(b, "BError", "b");
	tl_pb_span *b1 = sp(0x64, 2, 1, "svc-b", "row", T0, 1, 2);
	attr(b1, "ml.prediction.id", "pb-1");
	tl_pb_span *b2 = sp(0x64, 3, 1, "svc-b", "row", T0, 3, 4);
	attr(b2, "ml.prediction.id", "pb-2");
	tl_pb_span *b3 = sp(0x64, 4, 1, "svc-b", "row", T0, 5, 6);
	attr(b3, "ml.prediction.id", "pb-1"); /* counted once */
	for (uint8_t t = 0x65; t < 0x67; t++) {
		tl_pb_span *s = sp(t, 1, 0, "svc-c", "op", T0, t, t + 5);
		exc(s, "CError", "c");
	}
	flush();
	json_t *d = list(T0 - MIN, T0 + MIN, 0, 0);
	json_t *groups = json_object_get(d, "groups");
	cr_assert_eq(json_array_size(groups), 3);
	cr_assert_str_eq(sget(json_array_get(groups, 0), "service"), "svc-b");
	cr_assert_eq(iget(json_object_get(json_array_get(groups, 0), "impact"), "predictions"), 2);
	cr_assert_str_eq(sget(json_array_get(groups, 1), "service"), "svc-a");
	cr_assert_str_eq(sget(json_array_get(groups, 2), "service"), "svc-c");
	json_decref(d);
	/* The limit cuts the ranked list; groups_total still counts them all. */
	co_errors_opts o = {.since_ns = T0 - MIN, .until_ns = T0 + MIN, .limit = 1};
	char *js = NULL;
	cr_assert_eq(co_errors_list(S, &o, &QA, &js, NULL), 0);
	d = load(js);
	cr_assert_eq(json_array_size(json_object_get(d, "groups")), 1);
	cr_assert_eq(iget(d, "groups_total"), 3);
	json_decref(d);
}

Test(errors, list_window_bounds)
{
	/* Failing spans start at T0 + 20 ms, T0 + 10 min + 20 ms and T0 + 20 min + 20 ms. */
	deepest(0x71, T0, "1");
	deepest(0x72, T0 + 10 * MIN, "2");
	deepest(0x73, T0 + 20 * MIN, "3");
	flush();
	json_t *d = list(T0 + 5 * MIN, T0 + 15 * MIN, 0, 0);
	cr_assert_eq(iget(d, "traces_examined"), 1);
	json_t *g = group(d, "postgres", "SELECT features");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(g, "sample_trace_ids"), 0)), tid_hex(0x72));
	json_decref(d);
	/* until is exclusive: the failing spans of 0x72 start exactly at T0 + 10 min (the root at T0 + 10 min too). */
	d = list(T0 + 5 * MIN, T0 + 10 * MIN, 0, 0);
	cr_assert_eq(iget(d, "traces_examined"), 0);
	cr_assert_eq(json_array_size(json_object_get(d, "groups")), 0);
	json_decref(d);
	/* since is inclusive. */
	d = list(T0 + 10 * MIN + 20 * MS, T0 + 11 * MIN, 0, 0);
	cr_assert_eq(iget(d, "traces_examined"), 1);
	json_decref(d);
	char want[32];
	d = list(T0 + 10 * MIN + 20 * MS, T0 + 11 * MIN, 0, 0);
	snprintf(want, sizeof(want), "%llu", (unsigned long long)(T0 + 10 * MIN + 20 * MS));
	cr_assert_str_eq(sget(d, "since_unix_nano"), want);
	json_decref(d);
	/* since after until is refused. */
	co_errors_opts o = {.since_ns = T0 + MIN, .until_ns = T0};
	char *js = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_errors_list(S, &o, &QA, &js, &err), TL_EINVALID);
	cr_assert(strstr(err.msg, "since") != NULL);
}

Test(errors, list_default_window_is_the_last_day)
{
	uint64_t now = tl_now_ns();
	deepest(0x75, now - 3600 * UINT64_C(1000000000), "1");      /* an hour ago */
	deepest(0x76, now - 30 * 3600 * UINT64_C(1000000000), "2"); /* 30 hours ago */
	flush();
	json_t *d = list(0, 0, 0, 0);
	cr_assert_eq(iget(d, "traces_examined"), 1);
	json_t *g = group(d, "postgres", "SELECT features");
	cr_assert(has_str(json_object_get(g, "sample_trace_ids"), tid_hex(0x75)));
	json_decref(d);
}

Test(errors, list_pages_and_partial)
{
	/* Nine failed traces a minute apart. */
	for (uint8_t t = 0; t < 9; t++)
		deepest((uint8_t)(0x81 + t), T0 + t * MIN, "5");
	flush();
	/* Pages of 2: the window is split until every part answers fewer; every trace is found once. */
	json_t *d = list(T0 - MIN, T0 + 10 * MIN, 0, 2);
	cr_assert(!bget(d, "partial"));
	cr_assert_eq(iget(d, "traces_examined"), 9);
	json_t *g = group(d, "postgres", "SELECT features");
	cr_assert_eq(iget(g, "traces"), 9);
	json_decref(d);
	/* max_traces stops early and says so; the newest are read first. */
	d = list(T0 - MIN, T0 + 10 * MIN, 3, 2);
	cr_assert(bget(d, "partial"));
	cr_assert_eq(iget(d, "traces_examined"), 3);
	g = group(d, "postgres", "SELECT features");
	cr_assert_eq(iget(g, "traces"), 3);
	json_t *samples = json_object_get(g, "sample_trace_ids");
	cr_assert(has_str(samples, tid_hex(0x89)), "the newest trace is read");
	cr_assert(!has_str(samples, tid_hex(0x81)), "the oldest is not");
	json_decref(d);
	d = list(T0 - MIN, T0 + 10 * MIN, 9, 0);
	cr_assert(!bget(d, "partial"), "exactly max_traces traces: nothing left out");
	json_decref(d);
}

Test(errors, list_empty_store)
{
	json_t *d = list(0, 0, 0, 0);
	cr_assert_eq(json_array_size(json_object_get(d, "groups")), 0);
	cr_assert_eq(iget(d, "traces_examined"), 0);
	cr_assert(!bget(d, "partial"));
	json_decref(d);
}

/* ---- the query service ---- */

Test(errors, query_answers_errors_list_and_explain)
{
	deepest(0x91, T0, "1");
	flush();
	tl_pb_errors_list el = THREADLINE__V1__ERRORS_LIST__INIT;
	el.since_unix_nano = T0 - MIN;
	el.until_unix_nano = T0 + MIN;
	tl_pb_query_req req = THREADLINE__V1__QUERY_REQUEST__INIT;
	req.version = 1;
	req.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_LIST;
	req.errors_list = &el;
	uint8_t buf[256];
	size_t len = threadline__v1__query_request__pack(&req, buf);
	tl_pb_query_resp resp;
	co_query_answer(S, buf, len, &QA, &resp);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	json_t *d = load(resp.json);
	cr_assert_not_null(group(d, "postgres", "SELECT features"));
	json_decref(d);

	tl_pb_errors_explain ee = THREADLINE__V1__ERRORS_EXPLAIN__INIT;
	ee.trace_id = (ProtobufCBinaryData){16, tid(0x91)};
	req.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_EXPLAIN;
	req.errors_list = NULL;
	req.errors_explain = &ee;
	len = threadline__v1__query_request__pack(&req, buf);
	co_query_answer(S, buf, len, &QA, &resp);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	d = load(resp.json);
	cr_assert_str_eq(sget(json_object_get(d, "root_cause"), "service"), "postgres");
	json_decref(d);

	ee.trace_id = (ProtobufCBinaryData){16, tid(0x92)};
	len = threadline__v1__query_request__pack(&req, buf);
	co_query_answer(S, buf, len, &QA, &resp);
	cr_assert_eq(resp.code, TL_ENOTFOUND);
	char want[64];
	snprintf(want, sizeof(want), "trace %s not found", tid_hex(0x92));
	cr_assert_str_eq(resp.error, want);

	ee.trace_id = (ProtobufCBinaryData){3, tid(0x92)};
	len = threadline__v1__query_request__pack(&req, buf);
	co_query_answer(S, buf, len, &QA, &resp);
	cr_assert_eq(resp.code, TL_EINVALID);
}
