/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline import` end to end: a real collector (and agent) per test, the
 * real CLI importing OTLP/JSON Lines files written the way the OpenTelemetry
 * Collector's file exporter writes them (tests/data/otlp), plain and gzip,
 * and `threadline trace show --json` reading the spans back. The expected
 * spans are read from the same file with jansson, not with our decoder.
 * Importing twice stores once; a bad line in the middle is named and the
 * others are stored; flags and an absent collector get their exit codes.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tl_error.h"
#include "tl_testkit.h"

#define SAMPLE "collector-file-exporter.jsonl"
#define TRACE_A "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACE_B "0af7651916cd43dd8448eb211c80319c"

static tk_stack st;

static void setup(void)
{
	TK_STACK_START(&st, "import", NULL);
}

static void teardown(void)
{
	tk_stack_stop(&st, 10000);
}

#define must(cond, ...) TK_MUST(&st, cond, __VA_ARGS__)
#define stop_checked() TK_STACK_STOP_CHECKED(&st, 10000)

static const char *data_path(const char *env, const char *name, char *buf, size_t cap)
{
	const char *dir = getenv(env);
	cr_assert_not_null(dir, "%s is not set (meson sets it)", env);
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}

/* A file in the stack's temp dir. */
static const char *tmp_path(const char *name, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s", st.dir, name);
	cr_assert(n > 0 && (size_t)n < cap, "path too long");
	return buf;
}

static void write_file(const char *path, const char *data, size_t len)
{
	int rc = tk_write_file(path, data, len);
	cr_assert_eq(rc, 0, "cannot write %s: %s", path, tl_strerror(rc));
}

/* gzip-compresses data into path as `members` gzip members (concatenated, as `cat a.gz b.gz` gives). */
static void write_gz(const char *path, const char *data, size_t len, int members)
{
	int rc = tk_write_gz(path, data, len, members);
	cr_assert_eq(rc, 0, "cannot write %s: %s", path, tl_strerror(rc));
}

/* Runs `threadline [--json] import PATH --collector <intake>`. */
static void run_import(tk_output *o, bool json, const char *path)
{
	const char *bin = tk_bin(TK_ENV_CLI);
	cr_assert_not_null(bin, "TL_CLI is not set");
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", st.intake_port);
	char *argv[8];
	int n = 0;
	argv[n++] = (char *)bin;
	if (json)
		argv[n++] = "--json";
	argv[n++] = "import";
	argv[n++] = (char *)path;
	argv[n++] = "--collector";
	argv[n++] = url;
	argv[n] = NULL;
	memset(o, 0, sizeof(*o));
	int rc = tk_run(argv, 60000, o);
	must(rc == 0, "threadline import %s: %s", path, tl_strerror(rc));
	/* Under -Db_sanitize the CLI reports to its stderr; any report fails the test. */
	must(strstr(o->err, "runtime error:") == NULL && strstr(o->err, "Sanitizer") == NULL,
	     "threadline import %s: sanitizer report: %s", path, o->err);
}

/* The --json summary of an import (caller decrefs). */
static json_t *summary_of(const tk_output *o)
{
	json_error_t je;
	json_t *j = json_loads(o->out, 0, &je);
	must(j != NULL, "import --json printed no JSON: %s / stderr: %s", o->out, o->err);
	return j;
}

static long long num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "summary has no integer %s", k);
	return json_integer_value(v);
}

/* `trace show --json` of a trace; NULL when the CLI found nothing (exit != 0). Caller decrefs. */
static json_t *show(const char *trace)
{
	tk_output o;
	memset(&o, 0, sizeof(o));
	int rc = tk_stack_trace_show(&st, trace, true, &o);
	must(rc == 0, "trace show %s: %s", trace, tl_strerror(rc));
	json_t *j = NULL;
	if (o.exit_code == 0) {
		json_error_t je;
		j = json_loads(o.out, 0, &je);
		must(j != NULL, "trace show --json printed no JSON: %s", o.out);
	}
	tk_output_fini(&o);
	return j;
}

/* ---- what the file says, read with jansson ---- */

static json_t *any_json(json_t *v);

static json_t *attrs_json(json_t *list)
{
	json_t *o = json_object();
	size_t i;
	json_t *kv;
	json_array_foreach(list, i, kv)
	{
		json_object_set_new(o, json_string_value(json_object_get(kv, "key")),
		                    any_json(json_object_get(kv, "value")));
	}
	return o;
}

/* An OTLP/JSON AnyValue as the CLI prints attribute values. */
static json_t *any_json(json_t *v)
{
	json_t *x;
	if ((x = json_object_get(v, "stringValue")) != NULL)
		return json_incref(x);
	if ((x = json_object_get(v, "boolValue")) != NULL)
		return json_incref(x);
	if ((x = json_object_get(v, "intValue")) != NULL)
		return json_integer(json_is_string(x) ? strtoll(json_string_value(x), NULL, 10)
		                                      : json_integer_value(x));
	if ((x = json_object_get(v, "doubleValue")) != NULL)
		return json_real(json_number_value(x));
	if ((x = json_object_get(v, "arrayValue")) != NULL) {
		json_t *a = json_array(), *e;
		size_t i;
		json_array_foreach(json_object_get(x, "values"), i, e)
		{
			json_array_append_new(a, any_json(e));
		}
		return a;
	}
	return json_null();
}

static const char *kind_name(json_int_t k)
{
	static const char *names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
	return k >= 0 && k <= 5 ? names[k] : "?";
}

static const char *service_of(json_t *resource)
{
	size_t i;
	json_t *kv;
	json_array_foreach(json_object_get(resource, "attributes"), i, kv)
	{
		if (strcmp(json_string_value(json_object_get(kv, "key")), "service.name") == 0)
			return json_string_value(json_object_get(json_object_get(kv, "value"), "stringValue"));
	}
	return "";
}

static const char *str_or(json_t *o, const char *k, const char *def)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : def;
}

/*
 * The CLI's view of every span of trace in the OTLP/JSON Lines text, keyed
 * by span id (the fields the CLI takes from the span; not its analysis).
 */
static json_t *expected_spans(const char *text, const char *trace)
{
	json_t *out = json_object();
	const char *p = text;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		json_t *line = json_loadb(p, len, 0, NULL);
		p += len + (nl != NULL ? 1 : 0);
		if (line == NULL)
			continue; /* a bad line of a test */
		size_t r, s, i;
		json_t *rs, *ss, *sp;
		json_array_foreach(json_object_get(line, "resourceSpans"), r, rs)
		{
			json_t *res = json_object_get(rs, "resource");
			json_array_foreach(json_object_get(rs, "scopeSpans"), s, ss)
			{
				json_t *scope = json_object_get(ss, "scope");
				json_array_foreach(json_object_get(ss, "spans"), i, sp)
				{
					if (strcmp(str_or(sp, "traceId", ""), trace) != 0)
						continue;
					json_t *events = json_array(), *links = json_array(), *e;
					size_t k;
					json_array_foreach(json_object_get(sp, "events"), k, e)
					{
						json_array_append_new(
						        events,
						        json_pack("{s:s, s:s, s:o}", "name", str_or(e, "name", ""),
						                  "time_unix_nano", str_or(e, "timeUnixNano", "0"),
						                  "attributes",
						                  attrs_json(json_object_get(e, "attributes"))));
					}
					json_array_foreach(json_object_get(sp, "links"), k, e)
					{
						json_array_append_new(
						        links, json_pack("{s:s, s:s, s:s, s:o}", "trace_id",
						                         str_or(e, "traceId", ""), "span_id",
						                         str_or(e, "spanId", ""), "trace_state",
						                         str_or(e, "traceState", ""), "attributes",
						                         attrs_json(json_object_get(e, "attributes"))));
					}
					json_t *status = json_object_get(sp, "status");
					static const char *codes[] = {"UNSET", "OK", "ERROR"};
					json_int_t code = json_integer_value(json_object_get(status, "code"));
					json_t *o = json_pack(
					        "{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:o, s:o, s:o, s:I, s:o, "
					        "s:{s:s, s:s}}",
					        "parent_span_id", str_or(sp, "parentSpanId", ""), "service",
					        service_of(res), "name", str_or(sp, "name", ""), "kind",
					        kind_name(json_integer_value(json_object_get(sp, "kind"))),
					        "start_unix_nano", str_or(sp, "startTimeUnixNano", "0"),
					        "end_unix_nano", str_or(sp, "endTimeUnixNano", "0"), "status", "code",
					        codes[code], "message", str_or(status, "message", ""), "attributes",
					        attrs_json(json_object_get(sp, "attributes")), "events", events,
					        "links", links, "flags",
					        json_integer_value(json_object_get(sp, "flags")), "resource",
					        attrs_json(json_object_get(res, "attributes")), "scope", "name",
					        str_or(scope, "name", ""), "version", str_or(scope, "version", ""));
					cr_assert_not_null(o, "json_pack");
					cr_assert_null(json_object_get(out, str_or(sp, "spanId", "")),
					               "the test file repeats span %s", str_or(sp, "spanId", ""));
					json_object_set_new(out, str_or(sp, "spanId", ""), o);
				}
			}
		}
		json_decref(line);
	}
	return out;
}

/* Every span of trace in text came back from `trace show --json` as it is in the file, and nothing else. */
static void expect_trace(const char *text, const char *trace)
{
	json_t *want = expected_spans(text, trace);
	cr_assert_gt(json_object_size(want), 0, "test file has no span of %s", trace);
	json_t *got = show(trace);
	must(got != NULL, "trace %s was not stored", trace);
	json_t *spans = json_object_get(got, "spans");
	must(json_array_size(spans) == json_object_size(want), "trace %s: %zu spans stored, the file has %zu", trace,
	     json_array_size(spans), json_object_size(want));
	size_t i;
	json_t *sp;
	json_array_foreach(spans, i, sp)
	{
		const char *id = json_string_value(json_object_get(sp, "span_id"));
		json_t *w = json_object_get(want, id);
		must(w != NULL, "trace %s: span %s is not in the file", trace, id);
		const char *key;
		json_t *wv;
		json_object_foreach(w, key, wv)
		{
			json_t *gv = json_object_get(sp, key);
			if (!json_equal(gv, wv)) {
				char *a = json_dumps(wv, JSON_COMPACT),
				     *b = gv != NULL ? json_dumps(gv, JSON_COMPACT) : NULL;
				must(false, "trace %s span %s: %s is %s, the file says %s", trace, id, key,
				     b ? b : "absent", a);
			}
		}
		must(!json_is_true(json_object_get(sp, "duplicate_span_id")), "span %s stored twice", id);
		json_object_del(want, id);
	}
	json_decref(got);
	json_decref(want);
}

/* ---- helpers of the tests ---- */

/* The sample (tests/data/otlp) as text (caller frees), its path in path (TK_PATH_MAX bytes), its length in *len. */
static char *read_sample(char *path, size_t *len)
{
	data_path("TL_OTLP_DATA", SAMPLE, path, TK_PATH_MAX);
	char *text = tk_read_file(path, len);
	cr_assert_not_null(text, "cannot read %s", path);
	return text;
}

/* `threadline --json import PATH` must exit 0; returns its summary (caller decrefs). what names the step. */
static json_t *import_ok(const char *path, const char *what)
{
	tk_output o;
	run_import(&o, true, path);
	must(o.exit_code == 0, "%s import exit %d: %s", what, o.exit_code, o.err);
	json_t *sum = summary_of(&o);
	tk_output_fini(&o);
	return sum;
}

/* Both traces of the sample came back whole, each span once. */
static void expect_sample_traces(const char *text)
{
	expect_trace(text, TRACE_A);
	expect_trace(text, TRACE_B);
}

/* sum is a later import of what first imported: the same agent id, every span stored earlier, none now. */
static void expect_stored_earlier(json_t *sum, json_t *first, long long spans)
{
	cr_expect_str_eq(json_string_value(json_object_get(sum, "agent_id")),
	                 json_string_value(json_object_get(first, "agent_id")));
	cr_expect_eq(num(sum, "spans_stored"), 0);
	cr_expect_eq(num(sum, "spans_stored_earlier"), spans);
}

/* ---- tests ---- */

TestSuite(import, .init = setup, .fini = teardown, .timeout = 240);

Test(import, file_exporter_lines_come_back_from_trace_show)
{
	char path[TK_PATH_MAX];
	size_t len;
	char *text = read_sample(path, &len);

	json_t *sum = import_ok(path, "the");
	cr_expect_eq(num(sum, "lines"), 3);
	cr_expect_eq(num(sum, "lines_stored"), 3);
	cr_expect_eq(num(sum, "lines_failed"), 0);
	cr_expect_eq(num(sum, "spans_stored"), 7);
	cr_expect_eq(num(sum, "spans_rejected"), 0);
	cr_expect(json_is_true(json_object_get(sum, "complete")));
	json_decref(sum);

	expect_sample_traces(text);
	free(text);
	stop_checked();
}

Test(import, the_spec_example_and_text_summary)
{
	/* The OTLP/JSON example of opentelemetry-proto (upper-case ids, times as numbers), as one line. */
	char src[TK_PATH_MAX], path[TK_PATH_MAX];
	data_path("TL_TESTDATA", "otlp/trace.json", src, sizeof(src));
	json_error_t je;
	json_t *doc = json_load_file(src, 0, &je);
	cr_assert_not_null(doc, "%s: %s", src, je.text);
	char *line = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	size_t n = strlen(line);
	line = realloc(line, n + 2);
	memcpy(line + n, "\n", 2);
	write_file(tmp_path("spec.jsonl", path, sizeof(path)), line, n + 1);
	free(line);

	tk_output o;
	run_import(&o, false, path);
	must(o.exit_code == 0, "import exit %d: %s", o.exit_code, o.err);
	cr_expect(strstr(o.out, "1 line: 1 stored now") != NULL, "summary: %s", o.out);
	cr_expect(strstr(o.out, "spans: 1 stored now") != NULL, "summary: %s", o.out);
	tk_output_fini(&o);

	json_t *got = show("5b8efff798038103d269b633813fc60c");
	must(got != NULL, "the spec's trace was not stored");
	json_t *sp = json_array_get(json_object_get(got, "spans"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(sp, "span_id")), "eee19b7ec3c1b174");
	cr_expect_str_eq(json_string_value(json_object_get(sp, "name")), "I'm a server span");
	cr_expect_str_eq(json_string_value(json_object_get(sp, "service")), "my.service");
	cr_expect_str_eq(json_string_value(json_object_get(sp, "start_unix_nano")), "1544712660000000000");
	cr_expect(json_is_true(json_object_get(sp, "missing_parent")));
	json_decref(got);
	stop_checked();
}

Test(import, twice_stores_once_and_gzip_is_the_same_file)
{
	char path[TK_PATH_MAX], gz[TK_PATH_MAX];
	size_t len;
	char *text = read_sample(path, &len);

	json_t *first = import_ok(path, "first");
	json_t *second = import_ok(path, "second");
	expect_stored_earlier(second, first, 7);
	cr_expect_eq(num(second, "lines_stored_earlier"), 3);
	cr_expect_eq(num(second, "batches_stored_earlier"), num(second, "batches"));

	/* The same content gzipped (two members) is the same file: nothing new. */
	write_gz(tmp_path("sample.jsonl.gz", gz, sizeof(gz)), text, len, 2);
	json_t *third = import_ok(gz, "gzip");
	expect_stored_earlier(third, first, 7);

	/* Stored once: each span comes back exactly once. */
	expect_sample_traces(text);
	json_decref(first);
	json_decref(second);
	json_decref(third);
	free(text);
	stop_checked();
}

Test(import, gzip_file)
{
	char path[TK_PATH_MAX], gz[TK_PATH_MAX];
	size_t len;
	char *text = read_sample(path, &len);
	write_gz(tmp_path("spans.jsonl.gz", gz, sizeof(gz)), text, len, 1);

	json_t *sum = import_ok(gz, "gzip");
	cr_expect_eq(num(sum, "lines_stored"), 3);
	cr_expect_eq(num(sum, "spans_stored"), 7);
	json_decref(sum);
	expect_sample_traces(text);
	free(text);
	stop_checked();
}

Test(import, bad_line_in_the_middle_is_named_and_the_rest_stored)
{
	char path[TK_PATH_MAX], bad[TK_PATH_MAX];
	size_t len;
	char *text = read_sample(path, &len);
	/* Line 1 and 3 of the sample around a line whose second span id is not hex. */
	char *l2 = strchr(text, '\n') + 1;
	char *l3 = strchr(l2, '\n') + 1;
	const char *broken = "{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"spans\":["
	                     "{\"traceId\":\"11111111111111111111111111111111\",\"spanId\":\"1111111111111111\","
	                     "\"name\":\"ok\",\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\"},"
	                     "{\"traceId\":\"11111111111111111111111111111111\",\"spanId\":\"xyz!\",\"name\":\"bad\"}"
	                     "]}]}]}\n";
	size_t n1 = (size_t)(l2 - text), n3 = strlen(l3);
	size_t cap = n1 + strlen(broken) + n3 + 1;
	char *file = malloc(cap);
	snprintf(file, cap, "%.*s%s%s", (int)n1, text, broken, l3);
	tmp_path("bad.jsonl", bad, sizeof(bad));
	write_file(bad, file, strlen(file));

	tk_output o;
	run_import(&o, true, bad);
	must(o.exit_code == 1, "import of a file with a bad line: exit %d (want 1): %s", o.exit_code, o.err);
	char want[TK_PATH_MAX + 16];
	snprintf(want, sizeof(want), "%s:2: ", bad);
	cr_expect(strstr(o.err, want) != NULL, "the error names the file and line 2: %s", o.err);
	cr_expect(strstr(o.err, "spans[1].spanId") != NULL, "the error names the field: %s", o.err);
	cr_expect(strstr(o.err, ":1: ") == NULL && strstr(o.err, ":3: ") == NULL, "only line 2 is bad: %s", o.err);
	json_t *sum = summary_of(&o);
	cr_expect_eq(num(sum, "lines_failed"), 1);
	cr_expect_eq(num(sum, "lines_stored"), 2);
	json_decref(sum);
	tk_output_fini(&o);

	/* Lines 1 and 3 are trace A and trace B: everything of them arrived; nothing of line 2 did. */
	char *good = malloc(cap);
	snprintf(good, cap, "%.*s%s", (int)n1, text, l3);
	json_t *wa = expected_spans(good, TRACE_A);
	json_t *got = show(TRACE_A);
	must(got != NULL, "trace A was not stored");
	cr_expect_eq(json_array_size(json_object_get(got, "spans")), json_object_size(wa));
	json_decref(got);
	json_decref(wa);
	expect_trace(good, TRACE_B);
	json_t *none = show("11111111111111111111111111111111");
	cr_expect_null(none, "the bad line's good span was stored: the line is refused as a whole");
	json_decref(none);
	free(good);
	free(file);
	free(text);
	stop_checked();
}

Test(import, truncated_gzip_keeps_the_lines_before)
{
	char path[TK_PATH_MAX], gz[TK_PATH_MAX];
	size_t len;
	char *text = read_sample(path, &len);
	/* The sample, gzipped, then cut inside its last line. */
	tmp_path("cut.jsonl.gz", gz, sizeof(gz));
	write_gz(gz, text, len, 1);
	size_t glen;
	char *g = tk_read_file(gz, &glen);
	cr_assert_not_null(g);
	write_file(gz, g, glen - 12); /* the end of the deflate stream and the trailer are gone */
	free(g);

	tk_output o;
	run_import(&o, false, gz);
	must(o.exit_code == 1, "import of a cut gzip file: exit %d (want 1): %s", o.exit_code, o.err);
	cr_expect(strstr(o.err, "cut short") != NULL, "stderr says the gzip stream was cut: %s", o.err);
	cr_expect(strstr(o.out, "import incomplete") != NULL, "summary: %s", o.out);
	tk_output_fini(&o);
	/* Lines 1 and 2 hold trace A, whole. */
	expect_trace(text, TRACE_A);
	free(text);
	stop_checked();
}

Test(import, many_lines_in_several_batches)
{
	/* 2,500 one-span lines: three Batches (1,024 lines at most each), all in flight at once. */
	char path[TK_PATH_MAX];
	tmp_path("many.jsonl", path, sizeof(path));
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	for (int i = 1; i <= 2500; i++)
		fprintf(f,
		        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
		        "{\"stringValue\":\"gen\"}}]},\"scopeSpans\":[{\"scope\":{},\"spans\":[{\"traceId\":"
		        "\"%032x\",\"spanId\":\"%016x\",\"parentSpanId\":\"\",\"name\":\"op %d\",\"kind\":1,"
		        "\"startTimeUnixNano\":\"%d000\",\"endTimeUnixNano\":\"%d500\",\"status\":{}}]}]}]}\n",
		        i, i, i, 1000000 + i, 1000000 + i);
	cr_assert_eq(fclose(f), 0);

	json_t *first = import_ok(path, "first");
	cr_expect_eq(num(first, "lines_stored"), 2500);
	cr_expect_eq(num(first, "spans_stored"), 2500);
	cr_expect_eq(num(first, "batches"), 3);
	json_t *second = import_ok(path, "second");
	expect_stored_earlier(second, first, 2500);
	json_decref(first);
	json_decref(second);

	const int probe[] = {1, 1024, 1025, 2048, 2049, 2500};
	for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
		char tid[33];
		snprintf(tid, sizeof(tid), "%032x", probe[i]);
		json_t *got = show(tid);
		must(got != NULL, "line %d's trace was not stored", probe[i]);
		cr_expect_eq(json_array_size(json_object_get(got, "spans")), 1, "line %d's span stored once", probe[i]);
		json_decref(got);
	}
	stop_checked();
}

Test(import, usage_and_unreachable_exit_codes)
{
	char *bin = (char *)tk_bin(TK_ENV_CLI);
	cr_assert_not_null(bin, "TL_CLI is not set");
	char path[TK_PATH_MAX], missing[TK_PATH_MAX], url[64];
	data_path("TL_OTLP_DATA", SAMPLE, path, sizeof(path));
	tmp_path("nope.jsonl", missing, sizeof(missing));
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", tk_free_port());
	const struct {
		const char *what;
		char *argv[7];
		int exit_code;
		const char *needle; /* in stderr, or NULL */
	} cases[] = {
	        {"no FILE", {bin, "import", NULL}, 2, NULL},
	        {"unknown flag", {bin, "import", path, "--batch", "3", NULL}, 2, "--batch"},
	        {"--collector without URL", {bin, "import", path, "--collector", NULL}, 2, NULL},
	        {"no collector", {bin, "import", path, "--collector", url, NULL}, 3, NULL},
	        {"missing file", {bin, "import", missing, NULL}, 1, "nope.jsonl"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tk_output o;
		cr_assert_eq(tk_run(cases[i].argv, 20000, &o), 0);
		cr_expect_eq(o.exit_code, cases[i].exit_code, "%s: exit %d (want %d): %s", cases[i].what, o.exit_code,
		             cases[i].exit_code, o.err);
		if (cases[i].needle != NULL)
			cr_expect(strstr(o.err, cases[i].needle) != NULL, "%s: stderr does not name %s: %s",
			          cases[i].what, cases[i].needle, o.err);
		tk_output_fini(&o);
	}
	stop_checked();
}
