/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline emit span` without an agent: W3C traceparent parsing, and the
 * ExportTraceServiceRequest co_cli_span_build() makes from the flags — read
 * back through the project's own OTLP/JSON decoder and validator, so the
 * body is one the agent takes — with its typed attributes, times, kind,
 * status, parent and the traceparent it prints; every bad flag is refused
 * with its name.
 */
#include <criterion/criterion.h>

#include "co_cli_emit_span.h"
#include "tl_otlp.h"
#include "tl_time.h"

#include <string.h>

#define NOW UINT64_C(1795000000000000000)

static const uint8_t TID[16] = {0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
                                0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0};
static const uint8_t SID[8] = {1, 2, 3, 4, 5, 6, 7, 8};
#define TID_HEX "a1a2a3a4a5a6a7a8a9aaabacadaeafb0"
#define SID_HEX "0102030405060708"
#define PARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/* Builds o and decodes the body; returns the request (free with free_req) or NULL on a build error. */
static tl_pb_export_req *build(const co_cli_span_opts *o, char tp[CO_CLI_TRACEPARENT_LEN + 1], tl_errmsg *err, int *rc)
{
	char *json = NULL;
	*rc = co_cli_span_build(o, NOW, TID, SID, &json, tp, err);
	if (*rc != 0) {
		cr_assert_null(json);
		return NULL;
	}
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	tl_pb_export_req *req = NULL;
	tl_errmsg derr = {{0}};
	int d = tl_otlp_decode_json((const uint8_t *)json, strlen(json), &lim, NULL, &req, &derr);
	cr_assert_eq(d, 0, "decode: %s (%s)", derr.msg, json);
	tl_otlp_verdict v;
	cr_assert_eq(tl_otlp_validate(req, &lim, &v), 0);
	cr_assert_eq(v.spans_rejected, 0, "validation rejected the span: %s (%s)", v.first_error.msg, json);
	cr_assert_eq(tl_otlp_count_spans(req), 1);
	free(json);
	return req;
}

static void free_req(tl_pb_export_req *r)
{
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static const tl_pb_span *the_span(const tl_pb_export_req *r)
{
	return r->resource_spans[0]->scope_spans[0]->spans[0];
}

static const tl_pb_anyvalue *attr(const tl_pb_span *s, const char *key)
{
	for (size_t i = 0; i < s->n_attributes; i++)
		if (strcmp(s->attributes[i]->key, key) == 0)
			return s->attributes[i]->value;
	cr_assert_fail("no attribute %s", key);
	return NULL;
}

static void expect_invalid(const co_cli_span_opts *o, const char *needle)
{
	char tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	int rc;
	tl_pb_export_req *r = build(o, tp, &err, &rc);
	cr_assert_null(r);
	cr_assert_eq(rc, TL_EINVALID, "rc %d (%s)", rc, err.msg);
	cr_assert(strstr(err.msg, needle) != NULL, "'%s' does not name %s", err.msg, needle);
}

Test(traceparent, parses_valid)
{
	co_cli_traceparent tp;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_cli_traceparent_parse(PARENT, &tp, &err), 0, "%s", err.msg);
	cr_assert_eq(tp.trace_id[0], 0x0a);
	cr_assert_eq(tp.trace_id[15], 0x9c);
	cr_assert_eq(tp.span_id[0], 0xb7);
	cr_assert_eq(tp.span_id[7], 0x31);
	cr_assert_eq(tp.flags, 1);
	/* A later version may add fields after a '-'. */
	cr_assert_eq(
	        co_cli_traceparent_parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-extra", &tp, &err), 0,
	        "%s", err.msg);
	cr_assert_eq(tp.flags, 0);
}

Test(traceparent, refuses_bad)
{
	static const char *const bad[] = {
	        "",
	        "00",
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
	        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",   /* uppercase */
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", /* 00 has nothing after the flags */
	        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-011",
	        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
	        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
	        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
	        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
	        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		co_cli_traceparent tp;
		memset(&tp, 0x5a, sizeof(tp));
		tl_errmsg err = {{0}};
		cr_expect_eq(co_cli_traceparent_parse(bad[i], &tp, &err), TL_EINVALID, "accepted '%s'", bad[i]);
		cr_expect_neq(err.msg[0], '\0');
		cr_expect_eq(tp.flags, 0x5a, "touched out for '%s'", bad[i]);
	}
}

Test(build, new_trace_defaults)
{
	co_cli_span_opts o = {.name = "step1"};
	char tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	int rc;
	tl_pb_export_req *r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	cr_assert_str_eq(tp, "00-" TID_HEX "-" SID_HEX "-01");
	const tl_pb_resource *res = r->resource_spans[0]->resource;
	cr_assert_eq(res->n_attributes, 1);
	cr_assert_str_eq(res->attributes[0]->key, "service.name");
	cr_assert_str_eq(res->attributes[0]->value->string_value, "shell");
	const tl_pb_span *s = the_span(r);
	cr_assert_str_eq(s->name, "step1");
	cr_assert_eq(s->trace_id.len, 16);
	cr_assert_eq(memcmp(s->trace_id.data, TID, 16), 0);
	cr_assert_eq(memcmp(s->span_id.data, SID, 8), 0);
	cr_assert_eq(s->parent_span_id.len, 0);
	cr_assert_eq(s->kind, 1); /* internal */
	cr_assert_eq(s->start_time_unix_nano, NOW);
	cr_assert_eq(s->end_time_unix_nano, NOW);
	cr_assert(s->status == NULL || s->status->code == 0);
	cr_assert_eq(s->n_attributes, 0);
	free_req(r);
}

Test(build, parent_from_traceparent)
{
	co_cli_span_opts o = {.name = "step2", .traceparent = PARENT, .service = "etl", .kind = "client"};
	char tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	int rc;
	tl_pb_export_req *r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	cr_assert_str_eq(tp, "00-0af7651916cd43dd8448eb211c80319c-" SID_HEX "-01");
	const tl_pb_span *s = the_span(r);
	cr_assert_eq(s->trace_id.data[0], 0x0a);
	cr_assert_eq(s->parent_span_id.len, 8);
	cr_assert_eq(s->parent_span_id.data[0], 0xb7);
	cr_assert_eq(s->kind, 3);
	cr_assert_str_eq(r->resource_spans[0]->resource->attributes[0]->value->string_value, "etl");
	free_req(r);
	/* An empty TRACEPARENT is no parent. */
	o.traceparent = "";
	r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	cr_assert_eq(the_span(r)->parent_span_id.len, 0);
	cr_assert_str_eq(tp, "00-" TID_HEX "-" SID_HEX "-01");
	free_req(r);
}

Test(build, typed_attributes)
{
	const char *a[] = {"rows=1200",   "delta=-3",  "plus=+7",    "big=99999999999999999999",
	                   "ratio=0.25",  "exp=1e3",   "ok=true",    "no=false",
	                   "cap=True",    "ver=1.2.3", "empty=",     "expr=a=b",
	                   "hexish=0x10", "inf=inf",   "huge=1e999", "text=hello world"};
	co_cli_span_opts o = {.name = "s", .attrs = a, .nattrs = sizeof(a) / sizeof(a[0])};
	char tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	int rc;
	tl_pb_export_req *r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	const tl_pb_span *s = the_span(r);
	cr_assert_eq(s->n_attributes, o.nattrs);
	cr_assert_eq(attr(s, "rows")->value_case, TL_PB_ANY_INT);
	cr_assert_eq(attr(s, "rows")->int_value, 1200);
	cr_assert_eq(attr(s, "delta")->int_value, -3);
	cr_assert_eq(attr(s, "plus")->int_value, 7);
	cr_assert_eq(attr(s, "big")->value_case, TL_PB_ANY_STRING);
	cr_assert_str_eq(attr(s, "big")->string_value, "99999999999999999999");
	cr_assert_eq(attr(s, "ratio")->value_case, TL_PB_ANY_DOUBLE);
	cr_assert_float_eq(attr(s, "ratio")->double_value, 0.25, 1e-12);
	cr_assert_eq(attr(s, "exp")->value_case, TL_PB_ANY_DOUBLE);
	cr_assert_float_eq(attr(s, "exp")->double_value, 1000.0, 1e-9);
	cr_assert_eq(attr(s, "ok")->value_case, TL_PB_ANY_BOOL);
	cr_assert(attr(s, "ok")->bool_value);
	cr_assert_eq(attr(s, "no")->value_case, TL_PB_ANY_BOOL);
	cr_assert_not(attr(s, "no")->bool_value);
	const char *strings[][2] = {{"cap", "True"},    {"ver", "1.2.3"}, {"empty", ""},     {"expr", "a=b"},
	                            {"hexish", "0x10"}, {"inf", "inf"},   {"huge", "1e999"}, {"text", "hello world"}};
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		cr_assert_eq(attr(s, strings[i][0])->value_case, TL_PB_ANY_STRING, "%s", strings[i][0]);
		cr_assert_str_eq(attr(s, strings[i][0])->string_value, strings[i][1]);
	}
	free_req(r);
}

Test(build, times)
{
	char tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	int rc;
	/* --duration alone ends now. */
	co_cli_span_opts o = {.name = "s", .duration = "1.5s"};
	tl_pb_export_req *r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	cr_assert_eq(the_span(r)->end_time_unix_nano, NOW);
	cr_assert_eq(the_span(r)->start_time_unix_nano, NOW - 1500 * TL_NS_PER_MS);
	free_req(r);
	/* --start and --duration. */
	o = (co_cli_span_opts){.name = "s", .start = "2026-11-23T10:00:00Z", .duration = "250ms"};
	r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	uint64_t t0 = UINT64_C(1795428000) * TL_NS_PER_S;
	cr_assert_eq(the_span(r)->start_time_unix_nano, t0);
	cr_assert_eq(the_span(r)->end_time_unix_nano, t0 + 250 * TL_NS_PER_MS);
	free_req(r);
	/* --start in unix ns, --end defaults to now. */
	o = (co_cli_span_opts){.name = "s", .start = "1794999999000000000"};
	r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	cr_assert_eq(the_span(r)->start_time_unix_nano, UINT64_C(1794999999000000000));
	cr_assert_eq(the_span(r)->end_time_unix_nano, NOW);
	free_req(r);
	/* --start and --end in unix seconds. */
	o = (co_cli_span_opts){.name = "s", .start = "1794999990", .end = "1794999995"};
	r = build(&o, tp, &err, &rc);
	cr_assert_not_null(r, "%s", err.msg);
	cr_assert_eq(the_span(r)->start_time_unix_nano, UINT64_C(1794999990) * TL_NS_PER_S);
	cr_assert_eq(the_span(r)->end_time_unix_nano, UINT64_C(1794999995) * TL_NS_PER_S);
	free_req(r);
}

Test(build, kind_and_status)
{
	static const char *const kinds[] = {"internal", "server", "client", "producer", "consumer"};
	char tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	int rc;
	for (int k = 0; k < 5; k++) {
		co_cli_span_opts o = {.name = "s", .kind = kinds[k], .status = k % 2 ? "ok" : "error"};
		if (k == 2)
			o.message = "disk full";
		tl_pb_export_req *r = build(&o, tp, &err, &rc);
		cr_assert_not_null(r, "%s", err.msg);
		const tl_pb_span *s = the_span(r);
		cr_assert_eq((int)s->kind, k + 1);
		cr_assert_not_null(s->status);
		cr_assert_eq((int)s->status->code, k % 2 ? 1 : 2);
		if (k == 2)
			cr_assert_str_eq(s->status->message, "disk full");
		free_req(r);
	}
}

Test(build, refuses_bad_flags)
{
	const char *noeq[] = {"rows"}, *nokey[] = {"=5"}, *dup[] = {"a=1", "b=2", "a=3"}, *badutf[] = {"k=\xff\xfe"};
	struct {
		co_cli_span_opts o;
		const char *needle;
	} cases[] = {
	        {{.name = NULL}, "--name"},
	        {{.name = ""}, "--name"},
	        {{.name = "s", .service = ""}, "--service"},
	        {{.name = "s", .kind = "Server"}, "--kind"},
	        {{.name = "s", .status = "failed"}, "--status"},
	        {{.name = "s", .message = "why"}, "--message"},
	        {{.name = "s", .status = "ok", .message = "why"}, "--message"},
	        {{.name = "s", .start = "yesterday"}, "--start"},
	        {{.name = "s", .end = "2026-13-01T00:00:00Z"}, "--end"},
	        {{.name = "s", .duration = "5"}, "--duration"},
	        {{.name = "s", .end = "1794999995", .duration = "1s"}, "--duration"},
	        {{.name = "s", .start = "1794999999", .end = "1794999990"}, "--start"},
	        {{.name = "s", .start = "1h", .end = "2h"}, "--start"},
	        {{.name = "s", .duration = "100000d"}, "--duration"},
	        {{.name = "s", .attrs = noeq, .nattrs = 1}, "--attr"},
	        {{.name = "s", .attrs = nokey, .nattrs = 1}, "--attr"},
	        {{.name = "s", .attrs = dup, .nattrs = 3}, "--attr"},
	        {{.name = "s", .attrs = badutf, .nattrs = 1}, "--attr"},
	        {{.name = "\xc3"}, "--name"},
	        {{.name = "s", .traceparent = "00-xyz"}, "TRACEPARENT"},
	        {{.name = "s", .traceparent = "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
	         "TRACEPARENT"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_invalid(&cases[i].o, cases[i].needle);
}

static int run(const char *tp, const char *const args[])
{
	char *argv[16];
	int n = 0;
	for (; args[n] != NULL; n++)
		argv[n] = (char *)args[n];
	argv[n] = NULL;
	if (tp != NULL)
		setenv("TRACEPARENT", tp, 1);
	else
		unsetenv("TRACEPARENT");
	co_cli cli = {.collector = "tcp://127.0.0.1:1", .timeout_ms = 2000};
	int code = co_cli_emit_span(&cli, n, argv);
	unsetenv("TRACEPARENT");
	return code;
}

Test(command, exit_codes)
{
	const char *noname[] = {"emit", "span", "--agent", "http://127.0.0.1:1", NULL};
	cr_assert_eq(run(NULL, noname), CLI_USAGE);
	const char *unknown[] = {"emit", "span", "--name", "s", "--verbose", NULL};
	cr_assert_eq(run(NULL, unknown), CLI_USAGE);
	const char *novalue[] = {"emit", "span", "--name", "s", "--attr", NULL};
	cr_assert_eq(run(NULL, novalue), CLI_USAGE);
	const char *badagent[] = {"emit", "span", "--name", "s", "--agent", "https://127.0.0.1:4318", NULL};
	cr_assert_eq(run(NULL, badagent), CLI_USAGE);
	const char *ok[] = {"emit", "span", "--name", "s", "--agent", "http://127.0.0.1:1", NULL};
	cr_assert_eq(run("00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01", ok), CLI_USAGE);
	/* Nothing listens on port 1: unreachable, with a good TRACEPARENT and without one. */
	cr_assert_eq(run(PARENT, ok), CLI_UNREACHABLE);
	cr_assert_eq(run(NULL, ok), CLI_UNREACHABLE);
	const char *help[] = {"emit", "span", "--help", NULL};
	cr_assert_eq(run(NULL, help), CLI_OK);
}
