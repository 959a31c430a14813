/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline stats`: asks the collector for the SLIs of a window
 * (QueryRequest.stats) and prints its JSON answer (co_stats.h; README,
 * "Stats") as a table per service and operation, and with --budget the
 * stages whose critical-path self time consumed the budget and the slowest
 * traces that broke it. --json prints the document as received.
 */
#include "co_cli_stats.h"

#include "tl_error.h"
#include "tl_time.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define NAME_COL_MAX 40 /* widest service or operation column; longer names are cut with "…" */

static const char stats_usage[] =
        "usage: threadline stats [--service S] [--since 1h|TIME] [--until TIME] [--budget 200ms] [--json]\n"
        "\n"
        "Per service and operation over the window (default: the last hour): requests per second,\n"
        "error rate, p50/p95/p99 latency. With --budget, the traces whose root span lasted longer\n"
        "than the budget, which stages' self time on the critical path consumed it, and the slowest\n"
        "of those traces. TIME is RFC 3339 (2026-11-23T10:00:00Z), unix seconds, or a duration ago (2h).\n";

/* ---- reading the answer ---- */

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A decimal string field (times and durations in ns); 0 when missing or malformed. */
static uint64_t jns(const json_t *o, const char *key)
{
	const char *s = jstr(o, key);
	if (s == NULL || s[0] < '0' || s[0] > '9')
		return 0;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	return errno != 0 || *end != '\0' ? 0 : (uint64_t)v;
}

static long long jint(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static double jreal(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : 0;
}

/* Bytes of s that fit w terminal columns (UTF-8 characters count one column each), and the columns used. */
static size_t fit(const char *s, size_t w, size_t *cols)
{
	size_t i = 0, c = 0;
	while (s[i] != '\0' && c < w) {
		i++;
		while (((unsigned char)s[i] & 0xc0) == 0x80)
			i++;
		c++;
	}
	*cols = c;
	return i;
}

static size_t width(const char *s)
{
	size_t c;
	fit(s, SIZE_MAX, &c);
	return c;
}

/* Prints s in a column of w, cut with "…" when longer, control characters as spaces. */
static void put_col(FILE *out, const char *s, size_t w, bool pad)
{
	size_t cols, n = fit(s, w, &cols);
	bool cut = s[n] != '\0';
	if (cut)
		n = fit(s, w - 1, &cols);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		fputc(ch < 0x20 || ch == 0x7f ? ' ' : ch, out);
	}
	if (cut) {
		fputs("\xe2\x80\xa6", out); /* … */
		cols++;
	}
	for (; pad && cols < w; cols++)
		fputc(' ', out);
}

static void put_dur(FILE *out, uint64_t ns, int w)
{
	char b[32];
	tl_format_duration(ns, b, sizeof(b));
	fprintf(out, "%*s", w, b);
}

static void put_time(FILE *out, uint64_t ns)
{
	char b[64];
	tl_format_time(ns, b, sizeof(b));
	fputs(b, out);
}

/* Column widths for the service and operation names of rows (at least the headers', at most NAME_COL_MAX). */
static void name_widths(const json_t *rows, size_t *ws, size_t *wo)
{
	size_t i;
	const json_t *e;
	*ws = 7;
	*wo = 9;
	json_array_foreach(rows, i, e)
	{
		const char *s = jstr(e, "service"), *o = jstr(e, "operation");
		if (s != NULL && width(s) > *ws)
			*ws = width(s);
		if (o != NULL && width(o) > *wo)
			*wo = width(o);
	}
	*ws = *ws > NAME_COL_MAX ? NAME_COL_MAX : *ws;
	*wo = *wo > NAME_COL_MAX ? NAME_COL_MAX : *wo;
}

static void put_name_header(FILE *out, size_t ws, size_t wo)
{
	put_col(out, "SERVICE", ws, true);
	fputs("  ", out);
	put_col(out, "OPERATION", wo, true);
}

static void print_budget(FILE *out, const json_t *b)
{
	uint64_t budget = jns(b, "budget_nano");
	char bd[32];
	tl_format_duration(budget, bd, sizeof(bd));
	long long over = jint(b, "over_budget"), examined = jint(b, "examined");
	fprintf(out, "\nbudget %s: %lld trace%s over budget (%lld read)", bd, over, over == 1 ? "" : "s", examined);
	if (jint(b, "skipped") > 0)
		fprintf(out, ", %lld could not be read", jint(b, "skipped"));
	fputc('\n', out);
	if (json_is_true(json_object_get(b, "partial")))
		fprintf(out, "partial: more traces lasted the budget than were read; these are from the newest\n");
	const json_t *stages = json_object_get(b, "stages"), *slowest = json_object_get(b, "slowest");
	if (over == 0 || !json_is_array(stages))
		return;
	size_t ws, wo, i;
	const json_t *e;
	name_widths(stages, &ws, &wo);
	fputs("\ncritical-path self time by stage, over the traces that broke the budget:\n", out);
	put_name_header(out, ws, wo);
	fputs("       SELF   SHARE  TOP IN  TRACES\n", out);
	json_array_foreach(stages, i, e)
	{
		const char *s = jstr(e, "service"), *o = jstr(e, "operation");
		put_col(out, s != NULL ? s : "?", ws, true);
		fputs("  ", out);
		put_col(out, o != NULL ? o : "?", wo, true);
		fputs(" ", out);
		put_dur(out, jns(e, "self_nano"), 10);
		fprintf(out, "  %5.1f%%  %6lld  %6lld\n", 100.0 * jreal(e, "share"), jint(e, "top_in"),
		        jint(e, "traces"));
	}
	if (!json_is_array(slowest) || json_array_size(slowest) == 0)
		return;
	fputs("\nslowest traces over budget:\n", out);
	json_array_foreach(slowest, i, e)
	{
		fputs("  ", out);
		put_dur(out, jns(e, "duration_nano"), 9);
		fputs("  +", out);
		put_dur(out, jns(e, "over_nano"), -9);
		fputs(" ", out);
		const char *rs = jstr(e, "root_service"), *rn = jstr(e, "root_name");
		put_col(out, rs != NULL ? rs : "?", NAME_COL_MAX, false);
		fputs(" ", out);
		put_col(out, rn != NULL ? rn : "?", NAME_COL_MAX, false);
		const json_t *t = json_object_get(e, "top_stage");
		if (json_is_object(t)) {
			fputs("  top: ", out);
			put_col(out, jstr(t, "service") != NULL ? jstr(t, "service") : "?", NAME_COL_MAX, false);
			fputs(" ", out);
			put_col(out, jstr(t, "operation") != NULL ? jstr(t, "operation") : "?", NAME_COL_MAX, false);
			fputs(" ", out);
			put_dur(out, jns(t, "self_nano"), 0);
		}
		const char *id = jstr(e, "trace_id");
		fprintf(out, "  trace %s\n", id != NULL ? id : "?");
	}
}

int co_cli_stats_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err)
{
	json_t *doc = co_cli_load_doc(json, len, err);
	if (doc == NULL)
		return TL_EPROTO;
	const json_t *ops = json_object_get(doc, "operations");
	if (!json_is_array(ops)) {
		json_decref(doc);
		return tl_errf(err, TL_EPROTO, "not a stats document: no \"operations\"");
	}
	if (cli->json) {
		fwrite(json, 1, len, out);
		fputc('\n', out);
		json_decref(doc);
		return ferror(out) ? -EIO : 0;
	}
	uint64_t ws_ns = jns(doc, "window_start_unix_nano"), we_ns = jns(doc, "window_end_unix_nano");
	fputs("window ", out);
	put_time(out, ws_ns);
	fputs(" .. ", out);
	put_time(out, we_ns);
	fprintf(out, " (%" PRIu64 " min)", we_ns > ws_ns ? (we_ns - ws_ns) / (60 * TL_NS_PER_S) : 0);
	const char *svc = jstr(doc, "service");
	if (svc != NULL) {
		fputs(", service ", out);
		put_col(out, svc, NAME_COL_MAX, false);
	}
	fputc('\n', out);
	if (json_array_size(ops) == 0) {
		fputs("no spans in this window\n", out);
	} else {
		size_t ws, wo, i;
		const json_t *e;
		name_widths(ops, &ws, &wo);
		fputc('\n', out);
		put_name_header(out, ws, wo);
		fputs("     REQ/S   ERRORS       P50       P95       P99      COUNT\n", out);
		json_array_foreach(ops, i, e)
		{
			const char *s = jstr(e, "service"), *o = jstr(e, "operation");
			put_col(out, s != NULL ? s : "?", ws, true);
			fputs("  ", out);
			put_col(out, o != NULL ? o : "?", wo, true);
			double rate = jreal(e, "rate_per_second");
			if (rate > 0 && rate < 0.01)
				fputs("     <0.01", out);
			else
				fprintf(out, " %9.2f", rate);
			fprintf(out, "  %6.2f%%", 100.0 * jreal(e, "error_rate"));
			put_dur(out, jns(e, "p50_nano"), 10);
			put_dur(out, jns(e, "p95_nano"), 10);
			put_dur(out, jns(e, "p99_nano"), 10);
			fprintf(out, " %10lld\n", jint(e, "count"));
		}
	}
	if (json_is_true(json_object_get(doc, "truncated")))
		fputs("(truncated: the window holds more operations or cells than one answer reads)\n", out);
	const json_t *b = json_object_get(doc, "budget");
	if (json_is_object(b))
		print_budget(out, b);
	json_decref(doc);
	return ferror(out) ? -EIO : 0;
}

/* ---- the command ---- */

static int bad_time(const char *flag, const char *val)
{
	fprintf(stderr,
	        "threadline stats: %s: expected a time (RFC 3339 like 2026-11-23T10:00:00Z, unix seconds, or a "
	        "duration ago like 1h), got '%s'\n",
	        flag, val != NULL ? val : "");
	return CLI_USAGE;
}

static int print_stats(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err, void *ud)
{
	(void)ud;
	return co_cli_stats_print(cli, json, len, out, err);
}

int co_cli_stats(co_cli *cli, int argc, char **argv)
{
	const char *service = NULL, *val = NULL;
	uint64_t now = tl_now_ns(), since = 0, until = 0, budget = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int m;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(stats_usage, stdout);
			return CLI_OK;
		} else if (strcmp(a, "--json") == 0) {
			cli->json = true;
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--service", &val)) != 0) {
			if (m < 0 || val[0] == '\0') {
				fprintf(stderr, "threadline stats: --service: expected a service name\n");
				return CLI_USAGE;
			}
			service = val;
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--since", &val)) != 0) {
			if (m < 0 || tl_parse_time(val, now, &since) != 0 || since == 0)
				return bad_time("--since", m > 0 ? val : NULL);
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--until", &val)) != 0) {
			if (m < 0 || tl_parse_time(val, now, &until) != 0 || until == 0)
				return bad_time("--until", m > 0 ? val : NULL);
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--budget", &val)) != 0) {
			if (m < 0 || tl_parse_duration(val, &budget) != 0 || budget == 0) {
				fprintf(stderr,
				        "threadline stats: --budget: expected a duration above zero like 200ms, got "
				        "'%s'\n",
				        m > 0 ? val : "");
				return CLI_USAGE;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "threadline stats: unknown option '%s'\n%s", a, stats_usage);
			return CLI_USAGE;
		} else {
			fprintf(stderr, "threadline stats: unexpected argument '%s'\n%s", a, stats_usage);
			return CLI_USAGE;
		}
	}
	if (since != 0 && since >= (until != 0 ? until : now)) {
		fprintf(stderr, "threadline stats: --since: the window's start is not before its end (%s)\n",
		        until != 0 ? "--until" : "now");
		return CLI_USAGE;
	}
	tl_pb_query_req q;
	tl_pb_stats st;
	threadline__v1__query_request__init(&q);
	threadline__v1__stats__init(&st);
	st.service = (char *)(service != NULL ? service : "");
	st.since_unix_nano = since;
	st.until_unix_nano = until;
	st.budget_nano = budget;
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_STATS;
	q.stats = &st;
	return co_cli_ask_json(cli, &q, "a stats document", print_stats, NULL);
}
