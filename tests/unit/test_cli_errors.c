/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline errors` and `threadline errors explain`: every flag parsed and
 * every bad one refused with the flag named; the collector's answers
 * rendered as text (ranked table, causal chain with the root cause marked,
 * upstream causes and linked traces) and passed through as JSON; and the
 * whole command against a real query service on loopback with a store in a
 * temporary directory: exit 0 with the groups and the chain, 1 with "trace
 * ... not found", 2 for a bad flag, 3 when the collector is unreachable.
 */
#include "co_cli_errors.h"
#include "co_query.h"
#include "co_store.h"
#include "tl_arena.h"
#include "tl_time.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOW UINT64_C(1800000000000000000)
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static int parse(co_cli_errors_args *a, tl_errmsg *err, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = (char *)"errors";
	for (; args[argc - 1] != NULL && argc < 63; argc++)
		argv[argc] = (char *)args[argc - 1];
	memset(err, 0, sizeof(*err));
	return co_cli_errors_parse(argc, argv, NOW, a, err);
}

/* ---- parsing ---- */

Test(cli_errors, list_flags)
{
	co_cli_errors_args a;
	tl_errmsg err;
	cr_assert_eq(parse(&a, &err, ARGS("--since", "2h", "--until=2027-01-15T08:00:00Z", "--limit", "5", "--json")),
	             0, "%s", err.msg);
	cr_assert(!a.explain);
	cr_assert_eq(a.since_ns, NOW - 2 * 3600 * TL_NS_PER_S);
	uint64_t until;
	cr_assert_eq(tl_parse_time("2027-01-15T08:00:00Z", 0, &until), 0);
	cr_assert_eq(a.until_ns, until);
	cr_assert_eq(a.limit, 5);
	cr_assert(a.json);
	/* Nothing given: the collector's defaults. */
	cr_assert_eq(parse(&a, &err, ARGS("--json")), 0);
	cr_assert_eq(a.since_ns, 0);
	cr_assert_eq(a.until_ns, 0);
	cr_assert_eq(a.limit, 0);
	cr_assert_eq(parse(&a, &err, ARGS("--since=1799990000")), 0, "unix seconds: %s", err.msg);
	cr_assert_eq(a.since_ns, NOW - 10000 * TL_NS_PER_S);
	cr_assert_eq(parse(&a, &err, ARGS("--help", "--bogus")), 0);
	cr_assert(a.help);
}

Test(cli_errors, explain_args)
{
	co_cli_errors_args a;
	tl_errmsg err;
	cr_assert_eq(parse(&a, &err, ARGS("explain", "5B8EFFF798038103D269B633813FC60C", "--json")), 0, "%s", err.msg);
	cr_assert(a.explain);
	cr_assert(a.json);
	cr_assert_eq(a.trace_id[0], 0x5b);
	cr_assert_eq(a.trace_id[15], 0x0c);
}

static void refused(const char *const *args, const char *needle)
{
	co_cli_errors_args a;
	tl_errmsg err;
	cr_assert_eq(parse(&a, &err, args), TL_EUSAGE, "accepted; wanted an error naming '%s'", needle);
	cr_assert(strstr(err.msg, needle) != NULL, "message '%s' does not name '%s'", err.msg, needle);
}

Test(cli_errors, bad_flags_are_named)
{
	refused(ARGS("--since"), "--since");
	refused(ARGS("--since", "yesterday"), "--since");
	refused(ARGS("--until", "12:00"), "--until");
	refused(ARGS("--limit", "0"), "--limit");
	refused(ARGS("--limit", "1001"), "--limit");
	refused(ARGS("--limit", "ten"), "--limit");
	refused(ARGS("--limit"), "--limit");
	refused(ARGS("--service", "api"), "--service");
	refused(ARGS("--since", "1h", "--until", "2h"), "--since must be before --until");
	refused(ARGS("--since", "2030-01-01T00:00:00Z"), "--since is in the future");
	refused(ARGS("extra"), "extra");
	refused(ARGS("explain"), "TRACE_ID");
	refused(ARGS("explain", "xyz"), "TRACE_ID must be 32 hex digits");
	refused(ARGS("explain", "5b8efff798038103d269b633813fc60c", "again"), "again");
	refused(ARGS("explain", "5b8efff798038103d269b633813fc60c", "--since", "1h"), "--since");
}

/* ---- rendering ---- */

static const char list_doc[] =
        "{\"since_unix_nano\":\"1795392000000000000\",\"until_unix_nano\":\"1795478400000000000\","
        "\"traces_examined\":13,\"groups_total\":3,\"partial\":true,\"groups\":["
        "{\"id\":\"3f2a9c1b0d4e5f6a\",\"service\":\"model-server\",\"operation\":\"predict\","
        "\"exception_type\":\"ValueError\",\"message\":\"NaN in feature <n>\",\"sample_message\":\"NaN in feature 7\","
        "\"traces\":12,\"cause_spans\":14,\"first_seen_unix_nano\":\"1795428000000000000\","
        "\"last_seen_unix_nano\":\"1795431600000000000\",\"outcomes\":{\"failed\":10,\"recovered\":2},"
        "\"sample_trace_ids\":[\"42424242424242424242424242424242\"],\"impact\":{\"traces\":12,\"predictions\":9,"
        "\"models\":{\"count\":1,\"ids\":[\"model:churn:7\"]},\"deployments\":{\"count\":1,\"ids\":"
        "[\"deployment:churn-prod\"]},\"runs\":{\"count\":0,\"ids\":[]}}},"
        "{\"id\":\"0000000000000001\",\"service\":\"evil\",\"operation\":\"op\\u001b[31m\",\"exception_type\":\"\","
        "\"message\":\"\",\"sample_message\":\"\",\"traces\":1,\"cause_spans\":1,"
        "\"first_seen_unix_nano\":\"1795428000000000000\",\"last_seen_unix_nano\":\"1795428000000000000\","
        "\"outcomes\":{\"failed\":1,\"recovered\":0},\"sample_trace_ids\":[],\"impact\":{\"traces\":1,"
        "\"predictions\":0,\"models\":{\"count\":0,\"ids\":[]},\"deployments\":{\"count\":0,\"ids\":[]},"
        "\"runs\":{\"count\":0,\"ids\":[]}}}]}";

/* Renders doc with fn into a string (caller frees). */
static char *render(int (*fn)(const co_cli *, const char *, size_t, FILE *, tl_errmsg *), bool json, const char *doc,
                    int *rc)
{
	co_cli cli = {.json = json};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	tl_errmsg err = {{0}};
	*rc = fn(&cli, doc, strlen(doc), f, &err);
	fclose(f);
	return buf;
}

Test(cli_errors, list_text)
{
	int rc;
	char *out = render(co_cli_errors_list_print, false, list_doc, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "Errors 2026-11-23 00:00:00 \xe2\x86\x92 2026-11-24 00:00:00 UTC"), "%s", out);
	cr_assert_not_null(strstr(out, "13 failed traces read \xc2\xb7 3 groups"), "%s", out);
	cr_assert_not_null(strstr(out, "TRACES"), "%s", out);
	/* Rank, traces, cause spans, predictions, models, deployments, last seen, where. */
	cr_assert_not_null(strstr(out,
	                          "   1      12     14      9       1        1  2026-11-23 11:00:00  model-server / "
	                          "predict"),
	                   "%s", out);
	cr_assert_not_null(strstr(out, "ValueError: NaN in feature <n>"), "%s", out);
	cr_assert_not_null(strstr(out, "first seen 2026-11-23 10:00:00 \xc2\xb7 10 failed, 2 recovered \xc2\xb7 trace "
	                               "42424242424242424242424242424242 \xc2\xb7 id 3f2a9c1b0d4e5f6a"),
	                   "%s", out);
	cr_assert_not_null(strstr(out, "impact: 1 model (model:churn:7) \xc2\xb7 1 deployment (deployment:churn-prod)"),
	                   "%s", out);
	cr_assert_not_null(strstr(out, "(no exception or status message)"), "%s", out);
	cr_assert_null(strchr(out, 0x1b), "control characters from the store are not printed");
	cr_assert_not_null(strstr(out, "2 of 3 groups shown"), "%s", out);
	cr_assert_not_null(strstr(out, "partial"), "%s", out);
	free(out);
}

Test(cli_errors, list_json_is_passed_through_and_checked)
{
	int rc;
	char *out = render(co_cli_errors_list_print, true, list_doc, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strlen(out), strlen(list_doc) + 1);
	cr_assert_eq(strncmp(out, list_doc, strlen(list_doc)), 0);
	free(out);
	out = render(co_cli_errors_list_print, false, "{\"traces\":[]}", &rc);
	cr_assert_eq(rc, TL_EPROTO);
	free(out);
	out = render(co_cli_errors_list_print, false, "not json", &rc);
	cr_assert_eq(rc, TL_EPROTO);
	free(out);
	out = render(co_cli_errors_list_print, false,
	             "{\"since_unix_nano\":\"1\",\"until_unix_nano\":\"2\",\"traces_examined\":0,"
	             "\"groups_total\":0,\"partial\":false,\"groups\":[]}",
	             &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "no failures in this window"), "%s", out);
	free(out);
}

/* One hop of a chain as the collector writes it (type and msg are JSON: a quoted string or null). */
static char *hop(const char *svc, const char *op, bool failed, bool cause, const char *type, const char *msg)
{
	char *h = NULL;
	cr_assert(asprintf(&h,
	                   "{\"span_id\":\"0000000000000001\",\"parent_span_id\":null,\"service\":\"%s\","
	                   "\"operation\":\"%s\",\"kind\":\"SERVER\",\"status\":\"%s\",\"status_message\":null,"
	                   "\"exception_type\":%s,\"exception_message\":%s,\"start_unix_nano\":\"1795428000000000000\","
	                   "\"duration_nano\":\"12000000\",\"failed\":%s,\"root_cause\":%s,\"missing_parent\":false}",
	                   svc, op, failed ? "ERROR" : "UNSET", type, msg, failed ? "true" : "false",
	                   cause ? "true" : "false") > 0);
	return h;
}

/* An explanation: a failed prediction trace, one linked trace (recovered), one missing, one failed upstream run. */
static char *explain_doc(void)
{
	char *api = hop("serving-api", "POST /predict", true, false, "null", "null");
	char *pred = hop("model-server", "predict", true, true, "\"ValueError\"", "\"NaN in feature 7\"");
	char *val = hop("ingest", "validate", true, true, "\"SchemaWarning\"", "\"field missing\"");
	char *d = NULL;
	cr_assert(asprintf(&d,
	                   "{\"trace_id\":\"42424242424242424242424242424242\",\"outcome\":\"failed\","
	                   "\"root_cause\":%s,\"fingerprint\":{\"id\":\"3f2a9c1b0d4e5f6a\",\"service\":"
	                   "\"model-server\",\"operation\":\"predict\",\"exception_type\":\"ValueError\","
	                   "\"message\":\"NaN in feature <n>\"},\"chain\":[%s,%s],\"predictions\":[\"p-9\"],"
	                   "\"linked\":[{\"depth\":1,\"from_trace_id\":\"42424242424242424242424242424242\","
	                   "\"from_span_id\":\"0000000000000011\",\"trace_id\":\"21212121212121212121212121212121\","
	                   "\"span_id\":\"0000000000000003\",\"found\":true,\"outcome\":\"recovered\","
	                   "\"root_cause\":%s,\"chain\":[%s],\"linked_span\":null},{\"depth\":1,\"trace_id\":"
	                   "\"24242424242424242424242424242424\",\"from_span_id\":\"01\",\"found\":false}],"
	                   "\"upstream\":[{\"depth\":1,\"from_trace_id\":\"42424242424242424242424242424242\","
	                   "\"affected_predictions\":[\"p-9\"],\"run\":\"run:0190e4a2-8a4b-7c6e-9d1f-0000000fa11d\","
	                   "\"kind\":\"failed\",\"job\":\"job:dbt://analytics:users\",\"state\":\"FAIL\","
	                   "\"error\":\"division by zero\",\"message\":\"m\",\"ended_at\":null,\"trace_id\":"
	                   "\"41414141414141414141414141414141\",\"found\":true,\"outcome\":\"failed\","
	                   "\"root_cause\":null,\"fingerprint\":null,\"chain\":[],\"predictions\":[]}],"
	                   "\"truncated\":true}",
	                   pred, api, pred, val, val) > 0);
	free(api);
	free(pred);
	free(val);
	return d;
}

Test(cli_errors, explain_text)
{
	int rc;
	char *doc = explain_doc();
	char *out = render(co_cli_errors_explain_print, false, doc, &rc);
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_not_null(strstr(out, "Trace 42424242424242424242424242424242\n"), "%s", out);
	cr_assert_not_null(
	        strstr(out, "FAILED \xc2\xb7 root cause model-server / predict: ValueError: NaN in feature 7"), "%s",
	        out);
	/* The chain: the root first, then each hop one level deeper, the cause marked. */
	cr_assert_not_null(strstr(out, "\n  serving-api / POST /predict  \xe2\x9c\x97 ERROR  12"), "%s", out);
	cr_assert_not_null(
	        strstr(out, "\n     \xe2\x94\x94\xe2\x94\x80 model-server / predict  \xe2\x9c\x97 ERROR  12"), "%s",
	        out);
	cr_assert_not_null(strstr(out, "ValueError: NaN in feature 7  \xe2\x97\x80 root cause"), "%s", out);
	cr_assert_not_null(strstr(out, "fingerprint 3f2a9c1b0d4e5f6a"), "%s", out);
	cr_assert_not_null(strstr(out, "predictions in this trace: p-9"), "%s", out);
	/* Upstream first (the likelier cause of a prediction's failure), then linked traces. */
	const char *up = strstr(out, "Upstream causes (lineage)"), *ln = strstr(out, "Linked traces");
	cr_assert(up != NULL && ln != NULL && up < ln, "%s", out);
	cr_assert_not_null(strstr(out, "upstream run run:0190e4a2-8a4b-7c6e-9d1f-0000000fa11d "
	                               "(job:dbt://analytics:users) FAILED: division by zero"),
	                   "%s", out);
	cr_assert_not_null(
	        strstr(out, "upstream of prediction p-9 \xc2\xb7 its trace 41414141414141414141414141414141"), "%s",
	        out);
	cr_assert_not_null(strstr(out, "trace 21212121212121212121212121212121 from span 0000000000000011"), "%s", out);
	cr_assert_not_null(strstr(out, "RECOVERED"), "%s", out);
	cr_assert_not_null(strstr(out, "SchemaWarning: field missing"), "%s", out);
	cr_assert_not_null(strstr(out, "trace 24242424242424242424242424242424 from span 01 (not in the store)"), "%s",
	                   out);
	cr_assert_not_null(strstr(out, "the explanation stops here"), "%s", out);
	free(out);
	out = render(co_cli_errors_explain_print, false, list_doc, &rc);
	cr_assert_eq(rc, TL_EPROTO, "a list is not an explanation");
	free(out);
	out = render(co_cli_errors_explain_print, true, doc, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strncmp(out, doc, strlen(doc)), 0);
	free(out);
	free(doc);
}

/* ---- the command against a real collector ---- */

static char dir[64];
static co_store *S;
static co_query *Q;
static tl_arena A;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static tl_pb_keyvalue *kv_str(const char *k, const char *v)
{
	tl_pb_keyvalue *kv = tl_arena_alloc(&A, sizeof(*kv));
	opentelemetry__proto__common__v1__key_value__init(kv);
	kv->key = (char *)k;
	kv->value = tl_arena_alloc(&A, sizeof(tl_pb_anyvalue));
	opentelemetry__proto__common__v1__any_value__init(kv->value);
	kv->value->value_case = TL_PB_ANY_STRING;
	kv->value->string_value = (char *)v;
	return kv;
}

/* One trace of trace id 0xab..ab: api (ERROR) -> db (ERROR, the root cause), started a minute ago. */
static void store_failure(void)
{
	static uint8_t tid[16], sid1[8] = {0, 0, 0, 0, 0, 0, 0, 1}, sid2[8] = {0, 0, 0, 0, 0, 0, 0, 2};
	memset(tid, 0xab, sizeof(tid));
	uint64_t t = tl_now_ns() - 60 * TL_NS_PER_S;
	tl_pb_span *sp[2];
	tl_pb_status *st[2];
	static const char *const names[] = {"GET /user", "SELECT users"};
	static const char *const msgs[] = {"db failed", "relation users does not exist"};
	for (int i = 0; i < 2; i++) {
		sp[i] = tl_arena_alloc(&A, sizeof(tl_pb_span));
		opentelemetry__proto__trace__v1__span__init(sp[i]);
		sp[i]->trace_id = (ProtobufCBinaryData){16, tid};
		sp[i]->span_id = (ProtobufCBinaryData){8, i == 0 ? sid1 : sid2};
		if (i == 1)
			sp[i]->parent_span_id = (ProtobufCBinaryData){8, sid1};
		sp[i]->name = (char *)names[i];
		sp[i]->start_time_unix_nano = t + (uint64_t)i * 1000000;
		sp[i]->end_time_unix_nano = t + 50000000 - (uint64_t)i * 1000000;
		st[i] = tl_arena_alloc(&A, sizeof(tl_pb_status));
		opentelemetry__proto__trace__v1__status__init(st[i]);
		st[i]->code = TL_PB_STATUS_ERROR;
		st[i]->message = (char *)msgs[i];
		sp[i]->status = st[i];
	}
	tl_pb_scope_spans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT, *ssp = &ss;
	ss.spans = sp;
	ss.n_spans = 2;
	tl_pb_keyvalue *svc = kv_str("service.name", "user-api");
	tl_pb_resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	res.attributes = &svc;
	res.n_attributes = 1;
	tl_pb_resource_spans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
	rs.resource = &res;
	rs.scope_spans = &ssp;
	rs.n_scope_spans = 1;
	tl_pb_export_req req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT,
	                 *reqp = &req;
	req.resource_spans = &rsp;
	req.n_resource_spans = 1;
	co_batch b = {.seq = 1, .traces = &reqp, .n_traces = 1};
	memset(b.agent_id, 0x11, sizeof(b.agent_id));
	co_batch *bs[1] = {&b};
	cr_assert_eq(co_store_commit(S, bs, 1, tl_now_ns()), 0);
	cr_assert_eq(b.status, CO_BATCH_OK);
}

static void live_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tl_cli_errors_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	tl_arena_init(&A, 16 << 10, 0);
	co_store_opts o = {.dir = dir, .map_size = 32 << 20};
	tl_errmsg err = {{0}};
	cr_assert_eq(co_store_open(&o, &S, &err), 0, "%s", err.msg);
	co_query_opts qo = {.url = "tcp://127.0.0.1:0", .threads = 1};
	cr_assert_eq(co_query_start(&qo, S, &Q, &err), 0, "%s", err.msg);
	store_failure();
}

static void live_teardown(void)
{
	co_query_free(Q);
	co_store_close(S);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	tl_arena_fini(&A);
}

/* Runs `errors ARGS` with stdout and stderr captured into out/err (caller frees). Returns the exit code. */
static int run(const char *collector, const char *const *args, char **out, char **err)
{
	char *argv[16];
	int argc = 0;
	argv[argc++] = (char *)"errors";
	for (; args[argc - 1] != NULL && argc < 15; argc++)
		argv[argc] = (char *)args[argc - 1];
	co_cli cli = {.collector = collector, .timeout_ms = 5000};
	fflush(stdout);
	fflush(stderr);
	FILE *fo = tmpfile(), *fe = tmpfile();
	cr_assert(fo != NULL && fe != NULL);
	int so = dup(1), se = dup(2);
	dup2(fileno(fo), 1);
	dup2(fileno(fe), 2);
	int code = co_cli_errors(&cli, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	FILE *fs[2] = {fo, fe};
	char **dst[2] = {out, err};
	for (int i = 0; i < 2; i++) {
		fseek(fs[i], 0, SEEK_END);
		long n = ftell(fs[i]);
		rewind(fs[i]);
		*dst[i] = calloc(1, (size_t)n + 1);
		cr_assert_not_null(*dst[i]);
		cr_assert_eq(fread(*dst[i], 1, (size_t)n, fs[i]), (size_t)n);
		fclose(fs[i]);
	}
	return code;
}

static const char *url(char *buf, size_t cap)
{
	snprintf(buf, cap, "tcp://127.0.0.1:%d", co_query_port(Q));
	return buf;
}

Test(cli_errors, live_exit_codes, .init = live_setup, .fini = live_teardown, .timeout = 60)
{
	char u[64], *out, *err;
	int code = run(url(u, sizeof(u)), ARGS("--since", "1h"), &out, &err);
	cr_assert_eq(code, CLI_OK, "stderr: %s", err);
	cr_assert_not_null(strstr(out, "user-api / SELECT users"), "%s", out);
	cr_assert_not_null(strstr(out, "relation users does not exist"), "%s", out);
	cr_assert_not_null(strstr(out, "abababababababababababababababab"), "%s", out);
	free(out);
	free(err);

	code = run(u, ARGS("--json"), &out, &err);
	cr_assert_eq(code, CLI_OK, "stderr: %s", err);
	cr_assert_eq(out[0], '{');
	cr_assert_not_null(strstr(out, "\"service\":\"user-api\""), "%s", out);
	free(out);
	free(err);

	code = run(u, ARGS("explain", "abababababababababababababababab"), &out, &err);
	cr_assert_eq(code, CLI_OK, "stderr: %s", err);
	cr_assert_not_null(strstr(out, "FAILED \xc2\xb7 root cause user-api / SELECT users"), "%s", out);
	cr_assert_not_null(strstr(out, "\xe2\x97\x80 root cause"), "%s", out);
	free(out);
	free(err);

	code = run(u, ARGS("explain", "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"), &out, &err);
	cr_assert_eq(code, CLI_ERR);
	cr_assert_str_eq(err, "threadline: trace cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd not found\n");
	cr_assert_str_eq(out, "");
	free(out);
	free(err);

	code = run(u, ARGS("--limit", "many"), &out, &err);
	cr_assert_eq(code, CLI_USAGE);
	cr_assert(strncmp(err, "threadline errors: --limit", 26) == 0, "%s", err);
	free(out);
	free(err);

	code = run(u, ARGS("--help"), &out, &err);
	cr_assert_eq(code, CLI_OK);
	cr_assert_not_null(strstr(out, "usage: threadline errors"), "%s", out);
	free(out);
	free(err);

	/* A port nothing listens on. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	char dead[64];
	snprintf(dead, sizeof(dead), "tcp://127.0.0.1:%d", ntohs(a.sin_port));
	code = run(dead, ARGS("explain", "abababababababababababababababab"), &out, &err);
	cr_assert_eq(code, CLI_UNREACHABLE, "stderr: %s", err);
	free(out);
	free(err);
}
