/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline trace search`: finds traces by service, operation, time
 * range, error, duration and attributes (the collector's indexes do the
 * work, co_index.h), newest first, and prints one line per trace or the
 * collector's JSON document.
 */
#include "co_cli_search.h"

#include "tl_error.h"
#include "tl_time.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ROOT_WIDTH_MAX 60

static const char search_usage[] =
        "usage: threadline trace search [--service S] [--operation O] [--since 1h|TIME] [--until TIME]\n"
        "                               [--error] [--min-duration 250ms] [--max-duration 2s]\n"
        "                               [--attr key=value]... [--limit N] [--json]\n"
        "\n"
        "  Traces with ONE span that meets every condition, newest first. TIME is RFC 3339\n"
        "  (2026-11-23T10:00:00Z), unix seconds or nanoseconds, or a duration before now (1h).\n"
        "  --attr compares a span (or its resource's) attribute in string form; it may repeat.\n"
        "  --limit is 1..1500 (default 20).\n";

void co_cli_search_args_fini(co_cli_search_args *a)
{
	for (size_t i = 0; i < CO_CLI_SEARCH_ATTRS_MAX; i++) {
		free(a->keys[i]);
		a->keys[i] = NULL;
	}
	a->q.n_attrs = 0;
}

/* The value of a flag: "--flag=value" or the next argument. Returns NULL when there is none. */
static const char *flag_value(int argc, char **argv, int *i, const char *name)
{
	const char *a = argv[*i];
	size_t n = strlen(name);
	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

/* Whether argv[i] is --name or --name=... */
static bool is_flag(const char *arg, const char *name)
{
	size_t n = strlen(name);
	return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static int parse_attr(co_cli_search_args *a, const char *s, tl_errmsg *err)
{
	const char *eq = strchr(s, '=');
	if (eq == NULL || eq == s)
		return tl_errf(err, TL_EUSAGE, "--attr: expected key=value, got '%s'", s);
	if (a->q.n_attrs == CO_CLI_SEARCH_ATTRS_MAX)
		return tl_errf(err, TL_EUSAGE, "--attr: at most %d of them", CO_CLI_SEARCH_ATTRS_MAX);
	size_t i = a->q.n_attrs;
	if ((a->keys[i] = strndup(s, (size_t)(eq - s))) == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	threadline__v1__trace_search__attr__init(&a->attr[i]);
	a->attr[i].key = a->keys[i];
	a->attr[i].value = (char *)(eq + 1);
	a->attrp[i] = &a->attr[i];
	a->q.n_attrs++;
	return 0;
}

static int parse_flags(int argc, char **argv, uint64_t now_ns, co_cli_search_args *a, tl_errmsg *err)
{
	bool have_since = false, have_until = false;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *v;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			a->help = true;
			return 0;
		}
		if (strcmp(arg, "--json") == 0) {
			a->json = true;
			continue;
		}
		if (strcmp(arg, "--error") == 0) {
			a->q.error_only = true;
			continue;
		}
		static const char *const valued[] = {"--service",      "--operation",    "--since", "--until",
		                                     "--min-duration", "--max-duration", "--attr",  "--limit"};
		const char *name = NULL;
		for (size_t f = 0; f < sizeof(valued) / sizeof(valued[0]) && name == NULL; f++)
			if (is_flag(arg, valued[f]))
				name = valued[f];
		if (name == NULL) {
			if (arg[0] == '-')
				return tl_errf(err, TL_EUSAGE, "unknown option '%s'", arg);
			return tl_errf(err, TL_EUSAGE, "unexpected argument '%s'", arg);
		}
		if ((v = flag_value(argc, argv, &i, name)) == NULL)
			return tl_errf(err, TL_EUSAGE, "%s needs a value", name);
		int rc = 0;
		uint64_t ns;
		if (strcmp(name, "--service") == 0 || strcmp(name, "--operation") == 0) {
			if (v[0] == '\0')
				return tl_errf(err, TL_EUSAGE, "%s: empty name", name);
			if (name[2] == 's')
				a->q.service = (char *)v;
			else
				a->q.operation = (char *)v;
		} else if (strcmp(name, "--since") == 0 || strcmp(name, "--until") == 0) {
			if (tl_parse_time(v, now_ns, &ns) != 0)
				return tl_errf(
				        err, TL_EUSAGE,
				        "%s: expected a time (RFC 3339, unix seconds) or a duration like 1h, got '%s'",
				        name, v);
			if (name[2] == 's') {
				a->q.from_unix_nano = ns;
				have_since = true;
			} else {
				a->q.to_unix_nano = ns;
				have_until = true;
			}
		} else if (strcmp(name, "--min-duration") == 0 || strcmp(name, "--max-duration") == 0) {
			if (tl_parse_duration(v, &ns) != 0 || ns == 0)
				return tl_errf(err, TL_EUSAGE, "%s: expected a duration like 250ms or 2s, got '%s'",
				               name, v);
			if (name[3] == 'i')
				a->q.min_duration_nano = ns;
			else
				a->q.max_duration_nano = ns;
		} else if (strcmp(name, "--attr") == 0) {
			rc = parse_attr(a, v, err);
		} else {
			char *end;
			errno = 0;
			unsigned long n = strtoul(v, &end, 10);
			if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n == 0 ||
			    n > CO_CLI_SEARCH_LIMIT_MAX)
				return tl_errf(err, TL_EUSAGE, "--limit: expected a number from 1 to %d, got '%s'",
				               CO_CLI_SEARCH_LIMIT_MAX, v);
			a->q.limit = (uint32_t)n;
		}
		if (rc != 0)
			return rc;
	}
	if (have_since && have_until && a->q.from_unix_nano >= a->q.to_unix_nano)
		return tl_errf(err, TL_EUSAGE, "--since must be before --until");
	if (have_until && a->q.to_unix_nano == 0)
		return tl_errf(err, TL_EUSAGE, "--until: the time is 0");
	if (a->q.min_duration_nano != 0 && a->q.max_duration_nano != 0 &&
	    a->q.min_duration_nano > a->q.max_duration_nano)
		return tl_errf(err, TL_EUSAGE, "--min-duration is longer than --max-duration");
	return 0;
}

int co_cli_search_parse(int argc, char **argv, uint64_t now_ns, co_cli_search_args *a, tl_errmsg *err)
{
	memset(a, 0, sizeof(*a));
	threadline__v1__trace_search__init(&a->q);
	a->q.attrs = a->attrp;
	int rc = parse_flags(argc, argv, now_ns, a, err);
	if (rc != 0)
		co_cli_search_args_fini(a);
	return rc;
}

/* ---- printing ---- */

typedef struct row {
	const char *id, *service, *name;
	uint64_t start, end;
	json_int_t spans, errors;
} row;

/* A count: a non-negative JSON integer. */
static bool get_count(const json_t *o, const char *k, uint64_t *v)
{
	const json_t *j = json_object_get(o, k);
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

/* A time or duration: a decimal string of unix ns. */
static bool get_u64(const json_t *o, const char *k, uint64_t *v)
{
	const char *s = json_string_value(json_object_get(o, k));
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*v = x;
	return true;
}

/* "service: name", cut to width with "..." (by bytes, never inside a UTF-8 character). */
static void root_label(const row *r, char *buf, size_t width)
{
	if (r->service == NULL && r->name == NULL) {
		snprintf(buf, width + 1, "(root not received)");
		return;
	}
	int n = snprintf(buf, width + 1, "%s: %s", r->service != NULL ? r->service : "?",
	                 r->name != NULL ? r->name : "?");
	if (n > (int)width) {
		size_t cut = width - 3;
		while (cut > 0 && ((unsigned char)buf[cut] & 0xc0) == 0x80)
			cut--;
		memcpy(buf + cut, "...", 4);
	}
}

int co_cli_search_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err)
{
	json_t *doc = co_cli_load_doc(json, len, err);
	if (doc == NULL)
		return TL_EPROTO;
	const json_t *traces = json_object_get(doc, "traces");
	uint64_t examined = 0;
	if (!json_is_array(traces) || !get_count(doc, "examined", &examined)) {
		json_decref(doc);
		return tl_errf(err, TL_EPROTO, "not a search answer: needs \"traces\" and \"examined\"");
	}
	bool partial = json_is_true(json_object_get(doc, "partial"));
	size_t n = json_array_size(traces);
	row *rows = calloc(n ? n : 1, sizeof(*rows));
	if (rows == NULL) {
		json_decref(doc);
		return -ENOMEM;
	}
	size_t width = strlen("ROOT");
	for (size_t i = 0; i < n; i++) {
		const json_t *t = json_array_get(traces, i);
		row *r = &rows[i];
		const json_t *sv = json_object_get(t, "root_service"), *nm = json_object_get(t, "root_name");
		r->id = json_string_value(json_object_get(t, "trace_id"));
		r->service = json_string_value(sv);
		r->name = json_string_value(nm);
		uint64_t sc = 0, ec = 0;
		if (r->id == NULL || !get_u64(t, "start_unix_nano", &r->start) ||
		    !get_u64(t, "end_unix_nano", &r->end) || !get_count(t, "span_count", &sc) ||
		    !get_count(t, "error_count", &ec) || (sv != NULL && !json_is_null(sv) && r->service == NULL)) {
			free(rows);
			json_decref(doc);
			return tl_errf(err, TL_EPROTO, "not a search answer: trace %zu lacks a field", i);
		}
		r->spans = (json_int_t)sc;
		r->errors = (json_int_t)ec;
		char label[ROOT_WIDTH_MAX + 1];
		root_label(r, label, ROOT_WIDTH_MAX);
		if (strlen(label) > width)
			width = strlen(label);
	}
	int rc = 0;
	if (cli->json) {
		if (fwrite(json, 1, len, out) != len || fputc('\n', out) == EOF)
			rc = -EIO;
	} else if (n == 0) {
		fprintf(out, "no traces match (%llu index entries examined)\n", (unsigned long long)examined);
	} else {
		fprintf(out, "%-27s  %9s  %-*s  %6s  %6s  %s\n", "START", "DURATION", (int)width, "ROOT", "SPANS",
		        "ERRORS", "TRACE ID");
		for (size_t i = 0; i < n; i++) {
			const row *r = &rows[i];
			char when[40], dur[32], label[ROOT_WIDTH_MAX + 1];
			tl_format_time(r->start, when, sizeof(when));
			tl_format_duration(r->end > r->start ? r->end - r->start : 0, dur, sizeof(dur));
			root_label(r, label, ROOT_WIDTH_MAX);
			bool red = cli->color && r->errors > 0;
			fprintf(out, "%-27s  %9s  %-*s  %6lld  %s%6lld%s  %s\n", when, dur, (int)width, label,
			        (long long)r->spans, red ? "\033[31m" : "", (long long)r->errors, red ? "\033[0m" : "",
			        r->id);
		}
	}
	if (rc == 0 && partial && !cli->json)
		fprintf(out,
		        "(partial: the search stopped after %llu index entries; narrow it with --since, "
		        "--service or --attr)\n",
		        (unsigned long long)examined);
	if (rc == 0 && ferror(out))
		rc = -EIO;
	free(rows);
	json_decref(doc);
	return rc;
}

/* ---- the command ---- */

static int print_search(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err, void *ud)
{
	(void)ud;
	return co_cli_search_print(cli, json, len, out, err);
}

int co_cli_search(co_cli *cli, int argc, char **argv)
{
	co_cli_search_args a;
	tl_errmsg err = {{0}};
	int rc = co_cli_search_parse(argc - 1, argv + 1, tl_now_ns(), &a, &err);
	if (rc != 0) {
		fprintf(stderr, "threadline trace search: %s\n%s", err.msg, search_usage);
		return CLI_USAGE;
	}
	if (a.help) {
		fputs(search_usage, stdout);
		co_cli_search_args_fini(&a);
		return CLI_OK;
	}
	if (a.json)
		cli->json = true;
	tl_pb_query_req q;
	threadline__v1__query_request__init(&q);
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_SEARCH;
	q.trace_search = &a.q;
	int code = co_cli_ask_json(cli, &q, "a search result", print_search, NULL);
	co_cli_search_args_fini(&a);
	return code;
}
