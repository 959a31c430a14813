/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI side of error analysis. `threadline errors` asks the collector
 * for error groups (QueryRequest.errors_list) and prints them ranked by
 * impact; `threadline errors explain TRACE_ID` asks for one trace's causal
 * chain (errors_explain) and prints it root first, root cause marked, with
 * the upstream causes found through lineage and the linked traces. Parsing
 * and printing are separate functions so that tests can drive them without
 * a collector. Everything printed from the document is scrubbed of control
 * characters: a stored message cannot move the cursor or recolour the
 * terminal.
 */
#include "co_cli_errors.h"

#include "tl_error.h"
#include "tl_id.h"
#include "tl_time.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MARK_FAIL "\xe2\x9c\x97"           /* ✗ */
#define MARK_OK "\xe2\x9c\x93"             /* ✓ */
#define MARK_WARN "\xe2\x9a\xa0"           /* ⚠ */
#define MARK_CAUSE "\xe2\x97\x80"          /* ◀ */
#define ARROW "\xe2\x86\x92"               /* → */
#define BRANCH "\xe2\x94\x94\xe2\x94\x80 " /* └─ */
#define SEP " \xc2\xb7 "                   /* · */

static const char usage[] =
        "usage: threadline errors [--since 24h|TIME] [--until TIME] [--limit N] [--json]\n"
        "       threadline errors explain TRACE_ID [--json]\n"
        "\n"
        "errors           failures grouped by fingerprint (service, operation, exception type and\n"
        "                 message with numbers, ids and quoted strings masked), ranked by impact:\n"
        "                 predictions hit, then traces, then failing spans\n"
        "errors explain   the causal chain of one trace: root span to root cause, then on across\n"
        "                 span links into linked traces and through lineage to failed upstream runs\n"
        "--since TIME     RFC 3339, unix seconds, or a duration ago (default 24h)\n"
        "--until TIME     the end of the window (default now)\n"
        "--limit N        groups shown (1-1000; default 20)\n";

/* ---- parsing ---- */

static int parse_time_flag(const char *flag, int m, const char *val, uint64_t now_ns, uint64_t *out, tl_errmsg *err)
{
	if (m < 0)
		return tl_errf(err, TL_EUSAGE, "%s needs a value (RFC 3339, unix seconds, or a duration ago like 2h)",
		               flag);
	if (tl_parse_time(val, now_ns, out) != 0 || *out == 0)
		return tl_errf(err, TL_EUSAGE,
		               "%s: expected a time (RFC 3339 like 2026-11-23T10:00:00Z, unix seconds, or a duration "
		               "ago like 2h), got '%s'",
		               flag, val);
	return 0;
}

int co_cli_errors_parse(int argc, char **argv, uint64_t now_ns, co_cli_errors_args *a, tl_errmsg *err)
{
	memset(a, 0, sizeof(*a));
	int i = 1;
	if (argc >= 2 && strcmp(argv[1], "explain") == 0) {
		a->explain = true;
		i = 2;
	}
	const char *id = NULL, *val = NULL;
	for (; i < argc; i++) {
		const char *arg = argv[i];
		int m;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			a->help = true;
			return 0;
		} else if (strcmp(arg, "--json") == 0) {
			a->json = true;
		} else if (!a->explain && (m = co_cli_opt_value(argc, argv, &i, "--since", &val)) != 0) {
			int rc = parse_time_flag("--since", m, val, now_ns, &a->since_ns, err);
			if (rc != 0)
				return rc;
		} else if (!a->explain && (m = co_cli_opt_value(argc, argv, &i, "--until", &val)) != 0) {
			int rc = parse_time_flag("--until", m, val, now_ns, &a->until_ns, err);
			if (rc != 0)
				return rc;
		} else if (!a->explain && (m = co_cli_opt_value(argc, argv, &i, "--limit", &val)) != 0) {
			char *end = NULL;
			unsigned long v = 0;
			errno = 0;
			if (m > 0 && val[0] >= '0' && val[0] <= '9')
				v = strtoul(val, &end, 10);
			if (m < 0 || v < 1 || v > CO_CLI_ERRORS_LIMIT_MAX || errno != 0 || end == NULL || *end != '\0')
				return tl_errf(err, TL_EUSAGE, "--limit: expected a number from 1 to %d, got '%s'",
				               CO_CLI_ERRORS_LIMIT_MAX, m > 0 ? val : "");
			a->limit = (uint32_t)v;
		} else if (arg[0] == '-' && arg[1] != '\0') {
			return tl_errf(err, TL_EUSAGE, "unknown option '%s'", arg);
		} else if (a->explain && id == NULL) {
			id = arg;
		} else {
			return tl_errf(err, TL_EUSAGE, "unexpected argument '%s'", arg);
		}
	}
	if (a->explain) {
		if (id == NULL)
			return tl_errf(err, TL_EUSAGE, "missing TRACE_ID");
		if (tl_hex_decode(id, strlen(id), a->trace_id, sizeof(a->trace_id)) != 0)
			return tl_errf(err, TL_EUSAGE, "TRACE_ID must be 32 hex digits, got '%s'", id);
	}
	if (a->since_ns != 0 && a->until_ns != 0 && a->since_ns >= a->until_ns)
		return tl_errf(err, TL_EUSAGE, "--since must be before --until");
	if (a->since_ns != 0 && a->until_ns == 0 && a->since_ns >= now_ns)
		return tl_errf(err, TL_EUSAGE, "--since is in the future");
	return 0;
}

/* ---- printing helpers ---- */

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_int_t jint(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static bool jtrue(const json_t *o, const char *key)
{
	return json_is_true(json_object_get(o, key));
}

/* A decimal string of ns (as the collector writes times) as a number; 0 when absent or malformed. */
static uint64_t jns(const json_t *o, const char *key)
{
	const char *s = jstr(o, key);
	if (s == NULL || s[0] < '0' || s[0] > '9')
		return 0;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	return errno == 0 && end != NULL && *end == '\0' ? (uint64_t)v : 0;
}

/* Writes s with every control character (C0, DEL, C1 in UTF-8) as a space; "?" for NULL. */
static void put_clean(FILE *out, const char *s)
{
	if (s == NULL) {
		fputc('?', out);
		return;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			fputc(' ', out);
			p++;
		} else {
			fputc(*p < 0x20 || *p == 0x7f ? ' ' : (int)*p, out);
		}
	}
}

/* "2026-11-23 10:00:00" (UTC) from unix ns; "?" for 0. */
static const char *short_time(uint64_t ns, char *buf, size_t len)
{
	if (ns == 0)
		return "?";
	time_t secs = (time_t)(ns / TL_NS_PER_S);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec);
	return buf;
}

/* The document as received, on one line. */
static int print_doc_json(const json_t *doc, const char *text, size_t len, FILE *out)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
		len--;
	if (memchr(text, '\n', len) == NULL)
		fwrite(text, 1, len, out);
	else if (json_dumpf(doc, out, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0)
		return -EIO;
	fputc('\n', out);
	return ferror(out) ? -EIO : 0;
}

/* "Type: message", "Type", "message", or nothing. */
static void put_exception(FILE *out, const char *type, const char *msg)
{
	bool t = type != NULL && type[0] != '\0', m = msg != NULL && msg[0] != '\0';
	if (t)
		put_clean(out, type);
	if (t && m)
		fputs(": ", out);
	if (m)
		put_clean(out, msg);
}

/* ", ids..." of an impact set {"count", "ids"}: "2 models (model:a:1, model:b:2)". */
static void put_idset(FILE *out, const json_t *set, const char *one, const char *many)
{
	json_int_t n = jint(set, "count");
	const json_t *ids = json_object_get(set, "ids");
	fprintf(out, "%lld %s", (long long)n, n == 1 ? one : many);
	size_t k = json_array_size(ids);
	if (k == 0)
		return;
	fputs(" (", out);
	for (size_t i = 0; i < k; i++) {
		if (i > 0)
			fputs(", ", out);
		put_clean(out, json_string_value(json_array_get(ids, i)));
	}
	if ((json_int_t)k < n)
		fputs(", ...", out);
	fputc(')', out);
}

/* ---- errors list ---- */

static int print_list_text(const co_cli *cli, const json_t *doc, FILE *out)
{
	const char *bold = cli->color ? "\x1b[1m" : "", *reset = cli->color ? "\x1b[0m" : "",
	           *dim = cli->color ? "\x1b[2m" : "", *red = cli->color ? "\x1b[31m" : "";
	char b1[80], b2[80];
	const json_t *groups = json_object_get(doc, "groups");
	size_t n = json_array_size(groups);
	json_int_t total = jint(doc, "groups_total"), read = jint(doc, "traces_examined");
	fprintf(out, "%sErrors %s " ARROW " %s UTC%s" SEP "%lld failed trace%s read" SEP "%lld group%s\n", bold,
	        short_time(jns(doc, "since_unix_nano"), b1, sizeof(b1)),
	        short_time(jns(doc, "until_unix_nano"), b2, sizeof(b2)), reset, (long long)read, read == 1 ? "" : "s",
	        (long long)total, total == 1 ? "" : "s");
	if (n == 0) {
		fputs(MARK_OK " no failures in this window\n", out);
	} else {
		fprintf(out, "\n%s%4s %7s %6s %6s %7s %8s  %-19s  %s%s\n", dim, "#", "TRACES", "SPANS", "PREDS",
		        "MODELS", "DEPLOYS", "LAST SEEN (UTC)", "SERVICE / OPERATION", reset);
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *g = json_array_get(groups, i), *im = json_object_get(g, "impact"),
		             *oc = json_object_get(g, "outcomes");
		const json_t *models = json_object_get(im, "models"), *deps = json_object_get(im, "deployments"),
		             *runs = json_object_get(im, "runs");
		fprintf(out, "%4zu %7lld %6lld %6lld %7lld %8lld  %-19s  %s", i + 1, (long long)jint(g, "traces"),
		        (long long)jint(g, "cause_spans"), (long long)jint(im, "predictions"),
		        (long long)jint(models, "count"), (long long)jint(deps, "count"),
		        short_time(jns(g, "last_seen_unix_nano"), b1, sizeof(b1)), bold);
		put_clean(out, jstr(g, "service"));
		fputs(" / ", out);
		put_clean(out, jstr(g, "operation"));
		fprintf(out, "%s\n%17s%s", reset, "", red);
		const char *type = jstr(g, "exception_type"), *msg = jstr(g, "message");
		if ((type == NULL || type[0] == '\0') && (msg == NULL || msg[0] == '\0'))
			fputs("(no exception or status message)", out);
		else
			put_exception(out, type, msg);
		fprintf(out, "%s\n%17s%sfirst seen %s" SEP "%lld failed, %lld recovered", reset, "", dim,
		        short_time(jns(g, "first_seen_unix_nano"), b1, sizeof(b1)), (long long)jint(oc, "failed"),
		        (long long)jint(oc, "recovered"));
		const char *sample = json_string_value(json_array_get(json_object_get(g, "sample_trace_ids"), 0));
		if (sample != NULL) {
			fputs(SEP "trace ", out);
			put_clean(out, sample);
		}
		fputs(SEP "id ", out);
		put_clean(out, jstr(g, "id"));
		fprintf(out, "%s\n", reset);
		if (jint(models, "count") > 0 || jint(deps, "count") > 0 || jint(runs, "count") > 0) {
			fprintf(out, "%17simpact: ", "");
			put_idset(out, models, "model", "models");
			fputs(SEP, out);
			put_idset(out, deps, "deployment", "deployments");
			if (jint(runs, "count") > 0) {
				fputs(SEP, out);
				put_idset(out, runs, "run", "runs");
			}
			fputc('\n', out);
		}
	}
	if ((json_int_t)n < total)
		fprintf(out, "\n%zu of %lld groups shown (--limit N for more)\n", n, (long long)total);
	if (jtrue(doc, "partial"))
		fprintf(out, "\n" MARK_WARN
		             " partial: not every failed trace of the window was read (a narrower --since/--until "
		             "reads them all)\n");
	return ferror(out) ? -EIO : 0;
}

int co_cli_errors_list_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err)
{
	json_t *doc = co_cli_load_doc(json, len, err);
	if (doc == NULL)
		return TL_EPROTO;
	int rc;
	if (!json_is_array(json_object_get(doc, "groups")))
		rc = tl_errf(err, TL_EPROTO, "not an errors list: needs a \"groups\" array");
	else if (cli->json)
		rc = print_doc_json(doc, json, len, out);
	else
		rc = print_list_text(cli, doc, out);
	json_decref(doc);
	return rc;
}

/* ---- errors explain ---- */

/* One hop: "service / operation  ✗ ERROR  12ms  Type: message  ◀ root cause". */
static void put_hop(const co_cli *cli, FILE *out, const json_t *h, size_t indent, size_t level)
{
	const char *reset = cli->color ? "\x1b[0m" : "", *red = cli->color ? "\x1b[31m" : "",
	           *bold = cli->color ? "\x1b[1m" : "";
	char dur[32];
	fprintf(out, "%*s", (int)(indent + 3 * level), "");
	if (level > 0)
		fputs(BRANCH, out);
	bool failed = jtrue(h, "failed"), cause = jtrue(h, "root_cause");
	fputs(cause ? bold : "", out);
	put_clean(out, jstr(h, "service"));
	fputs(" / ", out);
	put_clean(out, jstr(h, "operation"));
	fputs(cause ? reset : "", out);
	tl_format_duration(jns(h, "duration_nano"), dur, sizeof(dur));
	if (failed)
		fprintf(out, "  %s" MARK_FAIL " ERROR%s  %s", red, reset, dur);
	else
		fprintf(out, "  %s  %s", jstr(h, "status") != NULL ? jstr(h, "status") : "UNSET", dur);
	const char *type = jstr(h, "exception_type"), *msg = jstr(h, "exception_message");
	if ((type == NULL || type[0] == '\0') && (msg == NULL || msg[0] == '\0'))
		msg = jstr(h, "status_message");
	if ((type != NULL && type[0] != '\0') || (msg != NULL && msg[0] != '\0')) {
		fputs("  ", out);
		put_exception(out, type, msg);
	}
	if (cause)
		fprintf(out, "  %s" MARK_CAUSE " root cause%s", bold, reset);
	if (jtrue(h, "missing_parent"))
		fputs("  " MARK_WARN " parent never arrived", out);
	fputc('\n', out);
}

/* A trace's outcome, root cause and chain, indented. */
static void put_trace(const co_cli *cli, FILE *out, const json_t *t, size_t indent)
{
	const char *outcome = jstr(t, "outcome");
	const json_t *rc = json_object_get(t, "root_cause"), *chain = json_object_get(t, "chain");
	fprintf(out, "%*s", (int)indent, "");
	if (outcome == NULL) {
		fputs("(not explained)\n", out);
		return;
	}
	if (strcmp(outcome, "failed") == 0)
		fputs("FAILED", out);
	else if (strcmp(outcome, "recovered") == 0)
		fputs("RECOVERED (a span failed, the trace did not)", out);
	else
		fputs("OK" SEP "no span failed", out);
	if (json_is_object(rc)) {
		fputs(SEP "root cause ", out);
		put_clean(out, jstr(rc, "service"));
		fputs(" / ", out);
		put_clean(out, jstr(rc, "operation"));
		const char *type = jstr(rc, "exception_type"), *msg = jstr(rc, "exception_message");
		if ((type != NULL && type[0] != '\0') || (msg != NULL && msg[0] != '\0')) {
			fputs(": ", out);
			put_exception(out, type, msg);
		}
	}
	fputc('\n', out);
	for (size_t k = 0; k < json_array_size(chain); k++)
		put_hop(cli, out, json_array_get(chain, k), indent + 2, k);
}

static int print_explain_text(const co_cli *cli, const json_t *doc, FILE *out)
{
	const char *bold = cli->color ? "\x1b[1m" : "", *reset = cli->color ? "\x1b[0m" : "",
	           *dim = cli->color ? "\x1b[2m" : "", *red = cli->color ? "\x1b[31m" : "";
	fprintf(out, "%sTrace ", bold);
	put_clean(out, jstr(doc, "trace_id"));
	fprintf(out, "%s\n", reset);
	put_trace(cli, out, doc, 0);
	const json_t *fp = json_object_get(doc, "fingerprint");
	if (json_is_object(fp)) {
		fprintf(out, "%sfingerprint ", dim);
		put_clean(out, jstr(fp, "id"));
		fputs(" (its group in threadline errors)", out);
		fprintf(out, "%s\n", reset);
	}
	const json_t *preds = json_object_get(doc, "predictions");
	if (json_array_size(preds) > 0) {
		fputs("predictions in this trace: ", out);
		for (size_t i = 0; i < json_array_size(preds); i++) {
			if (i > 0)
				fputs(", ", out);
			put_clean(out, json_string_value(json_array_get(preds, i)));
		}
		fputc('\n', out);
	}
	const json_t *up = json_object_get(doc, "upstream");
	if (json_array_size(up) > 0)
		fprintf(out, "\n%sUpstream causes (lineage)%s\n", dim, reset);
	for (size_t i = 0; i < json_array_size(up); i++) {
		const json_t *u = json_array_get(up, i);
		size_t ind = 2 * (size_t)(jint(u, "depth") > 0 ? jint(u, "depth") : 1);
		const char *kind = jstr(u, "kind"), *job = jstr(u, "job"), *error = jstr(u, "error");
		fprintf(out, "%*s%s" MARK_WARN " upstream run ", (int)ind, "", red);
		put_clean(out, jstr(u, "run"));
		if (job != NULL) {
			fputs(" (", out);
			put_clean(out, job);
			fputc(')', out);
		}
		fputs(kind != NULL && strcmp(kind, "aborted") == 0 ? " ABORTED" : " FAILED", out);
		if (error != NULL) {
			fputs(": ", out);
			put_clean(out, error);
		}
		fprintf(out, "%s\n%*s", reset, (int)ind + 4, "");
		const json_t *ap = json_object_get(u, "affected_predictions");
		fputs("upstream of prediction", out);
		fputs(json_array_size(ap) == 1 ? " " : "s ", out);
		for (size_t k = 0; k < json_array_size(ap); k++) {
			if (k > 0)
				fputs(", ", out);
			put_clean(out, json_string_value(json_array_get(ap, k)));
		}
		const char *t = jstr(u, "trace_id");
		if (t == NULL) {
			fputs(SEP "no trace recorded for the run\n", out);
			continue;
		}
		fputs(SEP "its trace ", out);
		put_clean(out, t);
		if (jtrue(u, "repeated"))
			fputs(" (explained above)\n", out);
		else if (json_is_false(json_object_get(u, "found")))
			fputs(" (not in the store)\n", out);
		else if (json_object_get(u, "outcome") == NULL)
			fputs(" (not followed: depth or trace bound)\n", out);
		else {
			fputc('\n', out);
			put_trace(cli, out, u, ind + 4);
		}
	}
	const json_t *linked = json_object_get(doc, "linked");
	if (json_array_size(linked) > 0)
		fprintf(out, "\n%sLinked traces (span links of the chain)%s\n", dim, reset);
	for (size_t i = 0; i < json_array_size(linked); i++) {
		const json_t *l = json_array_get(linked, i), *ls = json_object_get(l, "linked_span");
		size_t ind = 2 * (size_t)(jint(l, "depth") > 0 ? jint(l, "depth") : 1);
		fprintf(out, "%*s" ARROW " trace ", (int)ind, "");
		put_clean(out, jstr(l, "trace_id"));
		fputs(" from span ", out);
		put_clean(out, jstr(l, "from_span_id"));
		if (json_is_object(ls)) {
			fputs(" to ", out);
			put_clean(out, jstr(ls, "service"));
			fputs(" / ", out);
			put_clean(out, jstr(ls, "operation"));
		}
		if (json_object_get(l, "outcome") == NULL) {
			fputs(" (not in the store)\n", out);
			continue;
		}
		fputc('\n', out);
		put_trace(cli, out, l, ind + 4);
	}
	if (jtrue(doc, "truncated"))
		fputs("\n" MARK_WARN
		      " the explanation stops here: more links or lineage led on (depth or trace bound)\n",
		      out);
	return ferror(out) ? -EIO : 0;
}

int co_cli_errors_explain_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err)
{
	json_t *doc = co_cli_load_doc(json, len, err);
	if (doc == NULL)
		return TL_EPROTO;
	int rc;
	if (jstr(doc, "trace_id") == NULL || !json_is_array(json_object_get(doc, "chain")))
		rc = tl_errf(err, TL_EPROTO, "not an explanation: needs \"trace_id\" and a \"chain\" array");
	else if (cli->json)
		rc = print_doc_json(doc, json, len, out);
	else
		rc = print_explain_text(cli, doc, out);
	json_decref(doc);
	return rc;
}

/* ---- the command ---- */

static int print_list(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err, void *ud)
{
	(void)ud;
	return co_cli_errors_list_print(cli, json, len, out, err);
}

static int print_explain(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err, void *ud)
{
	(void)ud;
	return co_cli_errors_explain_print(cli, json, len, out, err);
}

int co_cli_errors(co_cli *cli, int argc, char **argv)
{
	co_cli_errors_args a;
	tl_errmsg err = {{0}};
	const char *cmd = argc >= 2 && strcmp(argv[1], "explain") == 0 ? "errors explain" : "errors";
	if (co_cli_errors_parse(argc, argv, tl_now_ns(), &a, &err) != 0) {
		fprintf(stderr, "threadline %s: %s\n%s", cmd, err.msg, usage);
		return CLI_USAGE;
	}
	if (a.help) {
		fputs(usage, stdout);
		return CLI_OK;
	}
	if (a.json)
		cli->json = true;
	tl_pb_query_req q;
	tl_pb_errors_list el;
	tl_pb_errors_explain ee;
	threadline__v1__query_request__init(&q);
	q.version = 1;
	if (a.explain) {
		threadline__v1__errors_explain__init(&ee);
		ee.trace_id.data = a.trace_id;
		ee.trace_id.len = sizeof(a.trace_id);
		q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_EXPLAIN;
		q.errors_explain = &ee;
	} else {
		threadline__v1__errors_list__init(&el);
		el.since_unix_nano = a.since_ns;
		el.until_unix_nano = a.until_ns;
		el.limit = a.limit;
		q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_LIST;
		q.errors_list = &el;
	}
	return co_cli_ask_json(cli, &q, "an errors document", a.explain ? print_explain : print_list, NULL);
}
