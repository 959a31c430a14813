/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline trace show` rendering (collector/co_cli_trace.c) on traces
 * built in memory: the root cause line, orphans, the critical path with self
 * times, clock skew markers, collapsed groups of repeated siblings in the
 * text view, and the streamed JSON of DESIGN.md §6 parsed back.
 */
#include "co_cli.h"

#include "tl_error.h"
#include "tl_pb.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct sdata {
	tl_pb_span span;
	tl_pb_status st;
	uint8_t id[8], parent[8];
} sdata;

static struct {
	sdata *s;
	size_t n, cap;
	tl_pb_span **ptrs;
	uint8_t tid[16];
	tl_pb_anyvalue sv;
	tl_pb_keyvalue skv, *skvp;
	tl_pb_resource res;
	tl_pb_scope_spans ss, *ssp;
	tl_pb_resource_spans rs, *rsp;
	tl_pb_trace_result result;
	char *text;
} fx;

static void fx_init(void)
{
	memset(&fx, 0, sizeof(fx));
	memset(fx.tid, 0xab, sizeof(fx.tid));
	fx.cap = 32;
	fx.s = calloc(fx.cap, sizeof(*fx.s));
	cr_assert_not_null(fx.s);
}

static void fx_fini(void)
{
	free(fx.s);
	free(fx.ptrs);
	free(fx.text);
}

static void put_id(uint8_t out[8], uint32_t id)
{
	memset(out, 0, 8);
	for (int k = 0; k < 4; k++)
		out[7 - k] = (uint8_t)(id >> (8 * k));
}

/* Adds span id (non-zero) under parent (0: a root; an id no span has: a missing parent). Valid until the next add. */
static tl_pb_span *add(uint32_t id, uint32_t parent, const char *name, uint64_t start, uint64_t end, const char *err)
{
	if (fx.n == fx.cap) {
		fx.cap *= 2;
		fx.s = realloc(fx.s, fx.cap * sizeof(*fx.s));
		cr_assert_not_null(fx.s);
	}
	sdata *d = &fx.s[fx.n++];
	memset(d, 0, sizeof(*d));
	tl_pb_span *s = &d->span;
	opentelemetry__proto__trace__v1__span__init(s);
	put_id(d->id, id);
	s->span_id.len = 8;
	if (parent != 0) {
		put_id(d->parent, parent);
		s->parent_span_id.len = 8;
	}
	s->name = (char *)name;
	s->start_time_unix_nano = start;
	s->end_time_unix_nano = end;
	if (err != NULL) {
		opentelemetry__proto__trace__v1__status__init(&d->st);
		d->st.code = TL_PB_STATUS_ERROR;
		d->st.message = (char *)err;
		s->status = &d->st;
	}
	return s;
}

/* The trace as one ResourceSpans; service is NULL for a resource without service.name. */
static tl_pb_trace_result *result_svc(const char *service)
{
	free(fx.ptrs);
	fx.ptrs = calloc(fx.n + 1, sizeof(*fx.ptrs));
	cr_assert_not_null(fx.ptrs);
	for (size_t i = 0; i < fx.n; i++) {
		sdata *d = &fx.s[i];
		d->span.trace_id.data = fx.tid;
		d->span.trace_id.len = 16;
		d->span.span_id.data = d->id;
		d->span.parent_span_id.data = d->span.parent_span_id.len ? d->parent : NULL;
		if (d->span.status != NULL)
			d->span.status = &d->st;
		fx.ptrs[i] = &d->span;
	}
	opentelemetry__proto__trace__v1__scope_spans__init(&fx.ss);
	fx.ss.spans = fx.ptrs;
	fx.ss.n_spans = fx.n;
	fx.ssp = &fx.ss;
	opentelemetry__proto__trace__v1__resource_spans__init(&fx.rs);
	fx.rs.scope_spans = &fx.ssp;
	fx.rs.n_scope_spans = 1;
	if (service != NULL) {
		opentelemetry__proto__common__v1__any_value__init(&fx.sv);
		fx.sv.value_case = TL_PB_ANY_STRING;
		fx.sv.string_value = (char *)service;
		opentelemetry__proto__common__v1__key_value__init(&fx.skv);
		fx.skv.key = "service.name";
		fx.skv.value = &fx.sv;
		fx.skvp = &fx.skv;
		opentelemetry__proto__resource__v1__resource__init(&fx.res);
		fx.res.attributes = &fx.skvp;
		fx.res.n_attributes = 1;
		fx.rs.resource = &fx.res;
	}
	fx.rsp = &fx.rs;
	threadline__v1__trace_result__init(&fx.result);
	fx.result.trace_id.data = fx.tid;
	fx.result.trace_id.len = 16;
	fx.result.resource_spans = &fx.rsp;
	fx.result.n_resource_spans = 1;
	return &fx.result;
}

static tl_pb_trace_result *result(void)
{
	return result_svc(NULL);
}

TestSuite(trace, .init = fx_init, .fini = fx_fini);

Test(trace, root_cause_is_the_deepest_first_failure)
{
	add(1, 0, "root", 0, 100, "request failed");
	add(2, 1, "features", 5, 60, "bad rows");
	add(3, 2, "normalize", 10, 50, "NaN in age");
	add(4, 1, "predict", 61, 95, "NaN input");
	char buf[256];
	cr_assert_eq(co_cli_trace_root_cause(result(), buf, sizeof(buf)), 0);
	/* normalize and predict have no failing descendants; normalize started first. */
	cr_assert_str_eq(buf, "unknown_service normalize: NaN in age");
}

Test(trace, swallowed_error_below_a_healthy_parent_still_counts)
{
	add(1, 0, "root", 0, 100, NULL);
	add(2, 1, "retry#1", 5, 20, "timeout");
	add(3, 1, "retry#2", 21, 90, NULL);
	char buf[256];
	cr_assert_eq(co_cli_trace_root_cause(result(), buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "unknown_service retry#1: timeout");
}

Test(trace, no_error_means_not_found)
{
	add(1, 0, "root", 0, 100, NULL);
	add(2, 1, "child", 1, 2, NULL);
	char buf[64];
	cr_assert_eq(co_cli_trace_root_cause(result(), buf, sizeof(buf)), TL_ENOTFOUND);
}

Test(trace, parent_cycle_does_not_hang)
{
	add(1, 2, "a", 0, 10, "x");
	add(2, 1, "b", 1, 9, "y");
	char buf[64];
	cr_assert_eq(co_cli_trace_root_cause(result(), buf, sizeof(buf)), 0);
}

static char *render(const tl_pb_trace_result *r, bool json)
{
	co_cli cli = {.json = json};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	cr_assert_eq(co_cli_trace_print(&cli, r, f), 0);
	fclose(f);
	free(fx.text);
	fx.text = text;
	return text;
}

static json_t *as_json(void)
{
	const char *text = render(result(), true);
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	cr_assert_not_null(j, "invalid JSON (%s): %.300s", je.text, text);
	return j;
}

static json_t *span_named(json_t *j, const char *name)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(j, "spans"), i, s)
	{
		if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
			return s;
	}
	cr_assert_fail("no span named %s", name);
	return NULL;
}

/* The line of text holding needle, copied to buf (empty when none). */
static const char *line_with(const char *text, const char *needle, char *buf, size_t cap)
{
	const char *p = strstr(text, needle);
	buf[0] = '\0';
	if (p == NULL)
		return buf;
	const char *b = p, *e = p;
	while (b > text && b[-1] != '\n')
		b--;
	while (*e && *e != '\n')
		e++;
	snprintf(buf, cap, "%.*s", (int)(e - b), b);
	return buf;
}

static size_t count_lines(const char *text)
{
	size_t n = 0;
	for (; *text; text++)
		n += *text == '\n';
	return n;
}

Test(trace, json_marks_orphans_and_the_critical_path)
{
	add(1, 0, "root", 1000, 2000, NULL);
	add(2, 1, "early", 1100, 1400, NULL);
	add(3, 1, "late", 1500, 1990, NULL);
	add(4, 1, "overlapped", 1450, 1600, NULL); /* ends after "late" starts: not on the path */
	add(5, 9, "orphan", 1200, 1300, NULL);     /* parent 9 never arrived */
	json_t *j = as_json();
	cr_assert_str_eq(json_string_value(json_object_get(j, "trace_id")), "abababababababababababababababab");
	cr_assert_eq(json_array_size(json_object_get(j, "spans")), 5);
	/* Ordered by start time. */
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j, "spans"), 1), "name")),
	                 "early");
	cr_assert(json_is_true(json_object_get(span_named(j, "orphan"), "missing_parent")));
	cr_assert(json_is_false(json_object_get(span_named(j, "late"), "missing_parent")));
	cr_assert(json_is_true(json_object_get(span_named(j, "root"), "critical_path")));
	cr_assert(json_is_true(json_object_get(span_named(j, "late"), "critical_path")));
	cr_assert(json_is_true(json_object_get(span_named(j, "early"), "critical_path")));
	cr_assert(json_is_false(json_object_get(span_named(j, "overlapped"), "critical_path")));
	/* The trace's critical path is the main root's: an orphan's tree is not on it. */
	cr_assert(json_is_false(json_object_get(span_named(j, "orphan"), "critical_path")));
	cr_assert_str_eq(json_string_value(json_object_get(span_named(j, "late"), "start_unix_nano")), "1500");
	cr_assert_str_eq(json_string_value(json_object_get(span_named(j, "late"), "parent_span_id")),
	                 "0000000000000001");
	/* Self time on the path: root 1000 - late 490 - early 300. */
	cr_assert_str_eq(json_string_value(json_object_get(span_named(j, "root"), "critical_self_nano")), "210");
	cr_assert(json_is_null(json_object_get(span_named(j, "overlapped"), "critical_self_nano")));
	json_decref(j);
}

Test(trace, three_cycle_keeps_every_span_and_one_root)
{
	add(1, 3, "a", 0, 10, NULL);
	add(2, 1, "b", 1, 9, NULL);
	add(3, 2, "c", 2, 8, NULL);
	json_t *j = as_json();
	cr_assert_eq(json_array_size(json_object_get(j, "spans")), 3);
	size_t i, roots = 0;
	json_t *s;
	json_array_foreach(json_object_get(j, "spans"), i, s)
	{
		roots += json_is_true(json_object_get(s, "missing_parent"));
	}
	cr_assert_eq(roots, 1, "a cycle is cut once, got %zu roots", roots);
	json_decref(j);
	/* The text view must terminate too. */
	co_cli cli = {.json = false};
	FILE *f = fopen("/dev/null", "w");
	cr_assert_eq(co_cli_trace_print(&cli, result(), f), 0);
	fclose(f);
}

/* Every key of DESIGN.md §6, then the analysis keys (README.md), in this order. */
static const char *const span_keys[] = {"span_id",       "parent_span_id",
                                        "service",       "name",
                                        "kind",          "start_unix_nano",
                                        "end_unix_nano", "status",
                                        "attributes",    "events",
                                        "links",         "trace_state",
                                        "flags",         "resource",
                                        "scope",         "missing_parent",
                                        "critical_path", "critical_self_nano",
                                        "clock_skew",    "duplicate_span_id",
                                        "root_cause"};

Test(trace, streamed_json_has_the_design_shape_for_every_span)
{
	add(1, 0, "root", 100, 200, "failed");
	add(2, 1, "early child", 90, 150, NULL); /* starts 10 ns before its parent */
	add(3, 1, "leaf", 160, 170, "disk full");
	add(3, 1, "leaf twin", 175, 180, NULL); /* same span id as "leaf" */
	json_t *j = as_json();
	cr_assert_eq(json_object_size(j), 2, "only trace_id and spans at the top");
	json_t *spans = json_object_get(j, "spans");
	cr_assert_eq(json_array_size(spans), 4);
	size_t i;
	json_t *s;
	json_array_foreach(spans, i, s)
	{
		size_t nk = sizeof(span_keys) / sizeof(span_keys[0]);
		cr_assert_eq(json_object_size(s), nk, "span %zu has %zu keys", i, json_object_size(s));
		/* The keys come out in the documented order. */
		void *it = json_object_iter(s);
		for (size_t k = 0; k < nk; k++, it = json_object_iter_next(s, it))
			cr_assert_str_eq(json_object_iter_key(it), span_keys[k]);
		cr_assert(json_is_string(json_object_get(s, "start_unix_nano")));
		cr_assert(json_is_object(json_object_get(s, "status")));
	}
	/* Ordered by start: the early child comes first. */
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, 0), "name")), "early child");
	json_t *skew = json_object_get(span_named(j, "early child"), "clock_skew");
	cr_assert(json_is_object(skew));
	cr_assert_str_eq(json_string_value(json_object_get(skew, "before_parent_nano")), "10");
	cr_assert_str_eq(json_string_value(json_object_get(skew, "after_parent_nano")), "0");
	cr_assert(json_is_null(json_object_get(span_named(j, "root"), "clock_skew")));
	/* Times are as recorded, not adjusted. */
	cr_assert_str_eq(json_string_value(json_object_get(span_named(j, "early child"), "start_unix_nano")), "90");
	cr_assert(json_is_true(json_object_get(span_named(j, "leaf"), "duplicate_span_id")));
	cr_assert(json_is_true(json_object_get(span_named(j, "leaf twin"), "duplicate_span_id")));
	cr_assert(json_is_false(json_object_get(span_named(j, "root"), "duplicate_span_id")));
	cr_assert(json_is_true(json_object_get(span_named(j, "leaf"), "root_cause")));
	cr_assert(json_is_false(json_object_get(span_named(j, "root"), "root_cause")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(span_named(j, "leaf"), "status"), "code")),
	                 "ERROR");
	json_decref(j);
}

Test(trace, streamed_json_of_an_empty_trace_parses)
{
	json_t *j = as_json();
	cr_assert_eq(json_array_size(json_object_get(j, "spans")), 0);
	json_decref(j);
}

Test(trace, streamed_json_of_many_spans_parses_back, .timeout = 60)
{
	add(1, 0, "root", 0, 1000000, NULL);
	for (uint32_t i = 0; i < 5000; i++)
		add(2 + i, 1, "db.query", 10 + i * 100, 60 + i * 100, NULL);
	json_t *j = as_json();
	json_t *spans = json_object_get(j, "spans");
	cr_assert_eq(json_array_size(spans), 5001);
	/* Start order, span by span. */
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, 0), "name")), "root");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, 5000), "start_unix_nano")), "499910");
	json_decref(j);
}

Test(trace, text_marks_skew_on_the_span_and_in_a_note)
{
	add(1, 0, "checkout", 1000, 2000, NULL);
	add(2, 1, "early call", 990, 1500, NULL);
	add(3, 1, "on time", 1500, 1900, NULL);
	const char *text = render(result_svc("shop"), false);
	char buf[1024];
	cr_assert(strstr(line_with(text, "early call", buf, sizeof(buf)), "clock skew: starts 10ns before its parent"),
	          "no skew marker on the span:\n%s", text);
	cr_assert_null(strstr(line_with(text, "on time", buf, sizeof(buf)), "skew"), "%s", text);
	cr_assert_null(strstr(line_with(text, "checkout", buf, sizeof(buf)), "skew"), "%s", text);
	cr_assert(strstr(text, "clock skew: 1 span lies outside its parent's window") != NULL, "no note:\n%s", text);
	cr_assert(strstr(text, "not adjusted") != NULL, "%s", text);
}

Test(trace, text_shows_self_time_on_the_critical_path)
{
	add(1, 0, "root", 0, 1000000, NULL);
	add(2, 1, "slow stage", 100000, 900000, NULL);
	add(3, 1, "side job", 150000, 160000, NULL); /* overlaps the stage: not waited for */
	const char *text = render(result_svc("api"), false);
	char buf[1024];
	/* root: 1ms - 800µs = 200µs of self time; the stage 800µs. Critical lines start with '*'. */
	line_with(text, "root", buf, sizeof(buf));
	cr_assert(buf[0] == '*' && strstr(buf, "200\xc2\xb5s") != NULL, "root line: %s\n%s", buf, text);
	line_with(text, "slow stage", buf, sizeof(buf));
	cr_assert(buf[0] == '*' && strstr(buf, "800\xc2\xb5s") != NULL, "stage line: %s", buf);
	line_with(text, "side job", buf, sizeof(buf));
	cr_assert(buf[0] == ' ', "side job is not on the path: %s", buf);
	cr_assert(strstr(text, "SELF") != NULL);
	cr_assert(strstr(text, "Most self time on the critical path: slow stage (api) 800\xc2\xb5s 80%") != NULL, "%s",
	          text);
}

Test(trace, text_keeps_the_orphan_marker)
{
	add(1, 0, "the root", 0, 100, NULL);
	add(2, 0xee, "lost child", 10, 20, NULL);
	const char *text = render(result(), false);
	char buf[1024];
	line_with(text, "lost child", buf, sizeof(buf));
	cr_assert(strstr(buf, "\xe2\x9a\xa0") != NULL && strstr(buf, "missing parent 00000000000000ee") != NULL, "%s",
	          text);
	line_with(text, "the root", buf, sizeof(buf));
	cr_assert_null(strstr(buf, "missing"), "%s", buf);
	cr_assert(strstr(text, "1 span whose parent never arrived is marked") != NULL, "%s", text);
}

/* 5,000 identical queries under one parent become two lines and a summary. */
Test(trace, text_collapses_repeated_siblings, .timeout = 60)
{
	add(1, 0, "handle", 0, 10000000, NULL);
	add(2, 1, "auth", 1, 5, NULL);
	for (uint32_t i = 0; i < 5000; i++)
		add(10 + i, 1, "db.query", 10 + i * 1000, 10 + i * 1000 + (i % 4 == 3 ? 300 : 100),
		    i == 100 || i == 200 ? "deadlock" : NULL);
	/* Under the last query, hidden with it: a failure that starts 1 ns before its parent. */
	add(9, 10 + 4999, "row decode", 10 + 4999 * 1000 - 1, 10 + 4999 * 1000 + 2, "bad row");
	add(7, 1, "render", 9000000, 9500000, NULL);
	const char *text = render(result_svc("orders"), false);
	cr_assert_lt(count_lines(text), 20, "not collapsed:\n%.2000s", text);
	char buf[1024];
	/* Errors below the parent make the first failing query (i == 100) the root cause: it stays visible. */
	line_with(text, "root cause", buf, sizeof(buf));
	cr_assert(strstr(buf, "db.query") != NULL && strstr(buf, "deadlock") != NULL, "%s", text);
	line_with(text, "more db.query", buf, sizeof(buf));
	cr_assert(strstr(buf, "\xe2\x80\xa6 4,997 more db.query (orders; p50 100ns, max 300ns, errors 2; 1 span below "
	                      "them; 1 with clock skew)") != NULL,
	          "summary line: \"%s\"\n%s", buf, text);
	/* The other siblings are shown, in start order, the summary right after the shown queries. */
	const char *auth = strstr(text, "auth"), *q = strstr(text, "db.query"), *sum = strstr(text, "more db.query"),
	           *render_line = strstr(text, "render");
	cr_assert(auth && q && sum && render_line && auth < q && q < sum && sum < render_line, "%s", text);
	cr_assert_null(strstr(text, "\xe2\x94\x80 row decode"), "a hidden span's children are hidden too:\n%s", text);
	cr_assert(
	        strstr(text, "clock skew: 1 span lies outside its parent's window (largest 1ns, row decode in orders)"),
	        "the note names the hidden skewed span:\n%s", text);
	/* render is the last child: drawn with └─. */
	line_with(text, "render", buf, sizeof(buf));
	cr_assert(strstr(buf, "\xe2\x94\x94\xe2\x94\x80 render") != NULL, "%s", buf);
}

Test(trace, text_does_not_collapse_a_few_repeats)
{
	add(1, 0, "handle", 0, 1000, NULL);
	for (uint32_t i = 0; i < 10; i++)
		add(10 + i, 1, "db.query", 10 + i * 50, 40 + i * 50, NULL);
	const char *text = render(result(), false);
	cr_assert_null(strstr(text, "more db.query"), "%s", text);
	size_t n = 0;
	for (const char *p = strstr(text, "\xe2\x94\x80 db.query"); p != NULL;
	     p = strstr(p + 1, "\xe2\x94\x80 db.query"))
		n++;
	cr_assert_eq(n, 10, "%s", text);
}
