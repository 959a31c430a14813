/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline trace search` without a collector: every flag into the
 * TraceSearch query, every bad value refused with the flag named, and the
 * answer rendered as text and JSON.
 */
#include "co_cli_search.h"
#include "tl_time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW UINT64_C(1800000000000000000)

static int parse(co_cli_search_args *a, tl_errmsg *err, const char *const *args)
{
	char *argv[128];
	int argc = 0;
	argv[argc++] = (char *)"search";
	for (; args[argc - 1] != NULL && argc < 127; argc++)
		argv[argc] = (char *)args[argc - 1];
	memset(err, 0, sizeof(*err));
	return co_cli_search_parse(argc, argv, NOW, a, err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(cli_search, every_flag)
{
	co_cli_search_args a;
	tl_errmsg err;
	int rc =
	        parse(&a, &err,
	              ARGS("--service", "api", "--operation=POST /predict", "--since", "1h", "--until",
	                   "2027-01-15T08:00:00Z", "--error", "--min-duration", "250ms", "--max-duration=2s", "--attr",
	                   "ml.prediction.id=p-1", "--attr", "note=a=b", "--attr", "empty=", "--limit", "7", "--json"));
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_str_eq(a.q.service, "api");
	cr_expect_str_eq(a.q.operation, "POST /predict");
	cr_expect_eq(a.q.from_unix_nano, NOW - 3600 * TL_NS_PER_S);
	cr_expect_eq(a.q.to_unix_nano, NOW, "%llu", (unsigned long long)a.q.to_unix_nano);
	cr_expect(a.q.error_only);
	cr_expect_eq(a.q.min_duration_nano, 250 * TL_NS_PER_MS);
	cr_expect_eq(a.q.max_duration_nano, 2 * TL_NS_PER_S);
	cr_assert_eq(a.q.n_attrs, 3);
	cr_expect_str_eq(a.q.attrs[0]->key, "ml.prediction.id");
	cr_expect_str_eq(a.q.attrs[0]->value, "p-1");
	cr_expect_str_eq(a.q.attrs[1]->key, "note");
	cr_expect_str_eq(a.q.attrs[1]->value, "a=b");
	cr_expect_str_eq(a.q.attrs[2]->key, "empty");
	cr_expect_str_eq(a.q.attrs[2]->value, "");
	cr_expect_eq(a.q.limit, 7);
	cr_expect(a.json);
	cr_expect(!a.help);
	co_cli_search_args_fini(&a);
	co_cli_search_args_fini(&a); /* twice is fine */
}

Test(cli_search, defaults_and_times)
{
	co_cli_search_args a;
	tl_errmsg err;
	cr_assert_eq(parse(&a, &err, ARGS("--since", "1700000000")), 0, "%s", err.msg);
	cr_expect_eq(a.q.from_unix_nano, UINT64_C(1700000000) * TL_NS_PER_S);
	cr_expect_eq(a.q.to_unix_nano, 0);
	cr_expect_eq(a.q.limit, 0);
	cr_expect_eq(a.q.n_attrs, 0);
	cr_expect_str_eq(a.q.service, ""); /* protobuf's default: any */
	cr_expect(!a.q.error_only);
	co_cli_search_args_fini(&a);
	cr_assert_eq(parse(&a, &err, ARGS("--until", "30m", "--since=2h")), 0, "%s", err.msg);
	cr_expect_eq(a.q.to_unix_nano, NOW - 1800 * TL_NS_PER_S);
	cr_expect_eq(a.q.from_unix_nano, NOW - 7200 * TL_NS_PER_S);
	co_cli_search_args_fini(&a);
	cr_assert_eq(parse(&a, &err, ARGS("--help", "--bogus")), 0);
	cr_expect(a.help);
	co_cli_search_args_fini(&a);
}

static void bad(const char *const *args, const char *flag)
{
	co_cli_search_args a;
	tl_errmsg err;
	int rc = parse(&a, &err, args);
	cr_expect_eq(rc, TL_EUSAGE, "%s accepted", args[0]);
	cr_expect(strstr(err.msg, flag) != NULL, "'%s' does not name %s", err.msg, flag);
}

Test(cli_search, bad_flags_are_named)
{
	bad(ARGS("--min-duration", "fast"), "--min-duration");
	bad(ARGS("--min-duration", "0s"), "--min-duration");
	bad(ARGS("--max-duration", "10"), "--max-duration");
	bad(ARGS("--since", "yesterday"), "--since");
	bad(ARGS("--until", "2027-13-45T00:00:00Z"), "--until");
	bad(ARGS("--since", "1h", "--until", "2h"), "--since");
	bad(ARGS("--min-duration", "2s", "--max-duration", "1s"), "--min-duration");
	bad(ARGS("--attr", "novalue"), "--attr");
	bad(ARGS("--attr", "=v"), "--attr");
	bad(ARGS("--limit", "0"), "--limit");
	bad(ARGS("--limit", "1501"), "--limit");
	bad(ARGS("--limit", "-3"), "--limit");
	bad(ARGS("--limit", "12x"), "--limit");
	bad(ARGS("--service", ""), "--service");
	bad(ARGS("--service"), "--service");
	bad(ARGS("--servic", "x"), "--servic");
	bad(ARGS("api"), "api");
	const char *many[2 * (CO_CLI_SEARCH_ATTRS_MAX + 1) + 1];
	for (int i = 0; i <= CO_CLI_SEARCH_ATTRS_MAX; i++) {
		many[2 * i] = "--attr";
		many[2 * i + 1] = "k=v";
	}
	many[2 * (CO_CLI_SEARCH_ATTRS_MAX + 1)] = NULL;
	bad(many, "--attr");
}

/* Renders json with cli into a string (caller frees). */
static char *render(bool json_out, const char *json, int *rc, tl_errmsg *err)
{
	co_cli cli = {.json = json_out};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	memset(err, 0, sizeof(*err));
	*rc = co_cli_search_print(&cli, json, strlen(json), f, err);
	fclose(f);
	return buf;
}

static const char answer[] =
        "{\"traces\":[{\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"root_service\":\"serving\","
        "\"root_name\":\"POST /predict\",\"start_unix_nano\":\"1800000000000000000\","
        "\"end_unix_nano\":\"1800000000250000000\",\"duration_nano\":\"250000000\",\"span_count\":25,\"error_count\":2}"
        ","
        "{\"trace_id\":\"ffeeddccbbaa99887766554433221100\",\"root_service\":null,\"root_name\":null,"
        "\"start_unix_nano\":\"1799999999000000000\",\"end_unix_nano\":\"1799999999000001500\",\"duration_nano\":"
        "\"1500\","
        "\"span_count\":1,\"error_count\":0}],\"examined\":12,\"partial\":true}";

Test(cli_search, text)
{
	int rc;
	tl_errmsg err;
	char *out = render(false, answer, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	char *l1 = strchr(out, '\n') + 1, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	cr_expect(strncmp(out, "START", 5) == 0, "%s", out);
	cr_expect(strstr(out, "TRACE ID") != NULL);
	cr_expect(strncmp(l1, "2027-01-15T08:00:00.000000Z", 27) == 0, "%s", l1);
	cr_expect(strstr(l1, "serving: POST /predict") != NULL, "%s", l1);
	cr_expect(strstr(l1, "250") != NULL && strstr(l1, "ms") != NULL, "%s", l1);
	cr_expect(strstr(l1, "    25       2  0102030405060708090a0b0c0d0e0f10") != NULL, "%s", l1);
	cr_expect(strstr(l2, "(root not received)") != NULL, "%s", l2);
	cr_expect(strstr(l2, "ffeeddccbbaa99887766554433221100\n") != NULL, "%s", l2);
	cr_expect(strstr(l3, "partial") != NULL && strstr(l3, "12") != NULL, "%s", l3);
	free(out);

	out = render(false, "{\"traces\":[],\"examined\":0,\"partial\":false}", &rc, &err);
	cr_assert_eq(rc, 0);
	cr_expect_str_eq(out, "no traces match (0 index entries examined)\n");
	free(out);
}

Test(cli_search, json_is_passed_through)
{
	int rc;
	tl_errmsg err;
	char *out = render(true, answer, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect_eq(strlen(out), strlen(answer) + 1);
	cr_expect(strncmp(out, answer, strlen(answer)) == 0);
	free(out);
}

Test(cli_search, long_roots_are_cut)
{
	char json[1024];
	char name[200];
	memset(name, 'n', 100);
	memcpy(name + 100, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);
	name[106] = '\0';
	snprintf(json, sizeof(json),
	         "{\"traces\":[{\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"root_service\":\"s\","
	         "\"root_name\":\"%s\",\"start_unix_nano\":\"1\",\"end_unix_nano\":\"2\",\"duration_nano\":\"1\","
	         "\"span_count\":1,\"error_count\":0}],\"examined\":1,\"partial\":false}",
	         name);
	int rc;
	tl_errmsg err;
	char *out = render(false, json, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_expect(strstr(out, "nnn...") != NULL, "%s", out);
	cr_expect(strstr(out, "\xc3\xa9") == NULL, "%s", out);
	free(out);
}

Test(cli_search, not_an_answer)
{
	int rc;
	tl_errmsg err;
	free(render(false, "{\"traces\":", &rc, &err));
	cr_expect_eq(rc, TL_EPROTO);
	free(render(false, "{\"nodes\":[]}", &rc, &err));
	cr_expect_eq(rc, TL_EPROTO);
	cr_expect(strstr(err.msg, "traces") != NULL, "%s", err.msg);
	free(render(false, "{\"traces\":[{\"trace_id\":\"ab\"}],\"examined\":1}", &rc, &err));
	cr_expect_eq(rc, TL_EPROTO);
	free(render(false,
	            "{\"traces\":[{\"trace_id\":\"ab\",\"root_service\":5,\"root_name\":null,"
	            "\"start_unix_nano\":\"1\",\"end_unix_nano\":\"2\",\"span_count\":1,\"error_count\":0}],"
	            "\"examined\":1}",
	            &rc, &err));
	cr_expect_eq(rc, TL_EPROTO);
}
