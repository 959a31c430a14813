/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI's trace analysis (collector/co_cli_trace.c): root cause, orphans,
 * critical path and the JSON of DESIGN.md §6, on traces built in memory.
 */
#include "co_cli.h"

#include "tl_error.h"
#include "tl_pb.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAXS 16

typedef struct fixture {
	tl_pb_span spans[MAXS];
	tl_pb_span *ptrs[MAXS];
	tl_pb_status st[MAXS];
	uint8_t ids[MAXS][8];
	uint8_t parents[MAXS][8];
	size_t n;
	uint8_t tid[16];
	tl_pb_scope_spans ss;
	tl_pb_scope_spans *ssp;
	tl_pb_resource_spans rs;
	tl_pb_resource_spans *rsp;
	tl_pb_trace_result res;
} fixture;

static fixture fx;

static void fx_init(void)
{
	memset(&fx, 0, sizeof(fx));
	memset(fx.tid, 0xab, sizeof(fx.tid));
}

/* Adds span number id (1-based byte) with parent (0 = root; a byte with no span = missing parent). */
static tl_pb_span *add(uint8_t id, uint8_t parent, const char *name, uint64_t start, uint64_t end, const char *err)
{
	size_t i = fx.n++;
	tl_pb_span *s = &fx.spans[i];
	opentelemetry__proto__trace__v1__span__init(s);
	fx.ids[i][7] = id;
	s->trace_id.data = fx.tid;
	s->trace_id.len = 16;
	s->span_id.data = fx.ids[i];
	s->span_id.len = 8;
	if (parent != 0) {
		fx.parents[i][7] = parent;
		s->parent_span_id.data = fx.parents[i];
		s->parent_span_id.len = 8;
	}
	s->name = (char *)name;
	s->start_time_unix_nano = start;
	s->end_time_unix_nano = end;
	if (err != NULL) {
		opentelemetry__proto__trace__v1__status__init(&fx.st[i]);
		fx.st[i].code = TL_PB_STATUS_ERROR;
		fx.st[i].message = (char *)err;
		s->status = &fx.st[i];
	}
	fx.ptrs[i] = s;
	return s;
}

static tl_pb_trace_result *result(void)
{
	opentelemetry__proto__trace__v1__scope_spans__init(&fx.ss);
	fx.ss.spans = fx.ptrs;
	fx.ss.n_spans = fx.n;
	fx.ssp = &fx.ss;
	opentelemetry__proto__trace__v1__resource_spans__init(&fx.rs);
	fx.rs.scope_spans = &fx.ssp;
	fx.rs.n_scope_spans = 1;
	fx.rsp = &fx.rs;
	threadline__v1__trace_result__init(&fx.res);
	fx.res.trace_id.data = fx.tid;
	fx.res.trace_id.len = 16;
	fx.res.resource_spans = &fx.rsp;
	fx.res.n_resource_spans = 1;
	return &fx.res;
}

TestSuite(trace, .init = fx_init);

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

static json_t *as_json(void)
{
	co_cli cli = {.json = true};
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	cr_assert_eq(co_cli_trace_print(&cli, result(), f), 0);
	fclose(f);
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	cr_assert_not_null(j, "invalid JSON (%s): %s", je.text, text);
	free(text);
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
	cr_assert_str_eq(json_string_value(json_object_get(span_named(j, "late"), "start_unix_nano")), "1500");
	cr_assert_str_eq(json_string_value(json_object_get(span_named(j, "late"), "parent_span_id")),
	                 "0000000000000001");
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
