/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI side of lineage (collector/co_cli_lineage.c): rendering the
 * collector's `lineage show` / `lineage explain` documents as text, JSON,
 * Graphviz DOT (checked with `dot` when it is installed) and Mermaid; node id
 * checks and usage errors; the command against a fake collector (nng REP);
 * the OpenLineage event `emit lineage` builds, and its POST against a tiny
 * HTTP server thread answering 200, 400, or nothing.
 */
#include "co_cli.h"

#include "tl_error.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the documents: raw events -> feature run (FAILED) -> features -> training run -> churn:7 -> prediction ---- */

#define RUN_FEAT "run:0190f5a0-1111-7222-8333-444455556666"
#define RUN_TRAIN "run:0190f5a4-7c1e-7b2a-9d4e-3f6a8b2c1d0e"
#define DS_RAW "dataset:s3://raw-bucket:events/2026-11-22"
#define DS_FEAT "dataset:postgres://db:5432:warehouse.features_users"
#define JOB_FEAT "job:etl:build_features"
#define JOB_TRAIN "job:ml:train_churn"
#define MODEL "model:churn:7"
#define PRED "prediction:pred-7f3a91"
#define FEAT_ERROR "psycopg2.errors.UndefinedColumn: column \\\"signup_ts\\\" does not exist"
#define FEAT_ERROR_TEXT "psycopg2.errors.UndefinedColumn: column \"signup_ts\" does not exist"
#define TRACE_PRED "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACE_TRAIN "a3ce929d0e0e47364bf92f3577b34da6"
#define TRACE_FEAT "0e0e47364bf92f3577b34da6a3ce929d"

static const char show_doc[] =
        "{\"root\":\"" PRED "\",\"direction\":\"upstream\",\"depth\":5,\"at\":null,\"truncated\":false,"
        "\"nodes\":["
        "{\"id\":\"" PRED "\",\"type\":\"prediction\",\"distance\":0,\"trace_id\":\"" TRACE_PRED "\","
        "\"model\":\"" MODEL "\",\"input_digest\":\"sha256:9f86d081884c7d659a2feaa0c55ad015\","
        "\"time\":\"2026-11-23T10:15:02.481000000Z\"},"
        "{\"id\":\"" MODEL "\",\"type\":\"model\",\"distance\":1,\"name\":\"churn\",\"version\":\"7\","
        "\"digest\":\"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\","
        "\"dataset\":\"dataset:model://registry:churn\"},"
        "{\"id\":\"" RUN_TRAIN "\",\"type\":\"run\",\"distance\":2,\"job\":\"" JOB_TRAIN "\",\"state\":\"COMPLETE\","
        "\"started_at\":\"2026-11-22T02:00:00.000000000Z\",\"ended_at\":\"2026-11-22T02:47:13.512000000Z\","
        "\"duration_ms\":2833512,\"trace_id\":\"" TRACE_TRAIN "\",\"error\":null,\"parent\":null},"
        "{\"id\":\"" JOB_TRAIN "\",\"type\":\"job\",\"distance\":3,\"namespace\":\"ml\",\"name\":\"train_churn\","
        "\"latest_run\":\"" RUN_TRAIN "\",\"latest_state\":\"COMPLETE\"},"
        "{\"id\":\"" DS_FEAT "\",\"type\":\"dataset\",\"distance\":3,\"namespace\":\"postgres://db:5432\","
        "\"name\":\"warehouse.features_users\",\"version\":\"v42\",\"facets\":{\"schema\":{\"fields\":["
        "{\"name\":\"user_id\",\"type\":\"BIGINT\"},{\"name\":\"tenure_days\",\"type\":\"INTEGER\"}]},"
        "\"dataQuality\":{\"rowCount\":1204551}}},"
        "{\"id\":\"" RUN_FEAT "\",\"type\":\"run\",\"distance\":4,\"job\":\"" JOB_FEAT "\",\"state\":\"FAIL\","
        "\"started_at\":\"2026-11-22T01:00:00.000000000Z\",\"ended_at\":\"2026-11-22T01:03:41.020000000Z\","
        "\"duration_ms\":221020,\"trace_id\":\"" TRACE_FEAT "\",\"error\":\"" FEAT_ERROR "\",\"parent\":null},"
        "{\"id\":\"" JOB_FEAT "\",\"type\":\"job\",\"distance\":5,\"namespace\":\"etl\",\"name\":\"build_features\","
        "\"latest_run\":\"" RUN_FEAT "\",\"latest_state\":\"FAIL\"},"
        "{\"id\":\"" DS_RAW "\",\"type\":\"dataset\",\"distance\":5,\"namespace\":\"s3://raw-bucket\","
        "\"name\":\"events/2026-11-22\",\"version\":null,\"facets\":null}"
        "],\"edges\":["
        "{\"from\":\"" DS_RAW "\",\"to\":\"" RUN_FEAT "\",\"type\":\"input\"},"
        "{\"from\":\"" RUN_FEAT "\",\"to\":\"" DS_FEAT "\",\"type\":\"output\"},"
        "{\"from\":\"" JOB_FEAT "\",\"to\":\"" RUN_FEAT "\",\"type\":\"run\"},"
        "{\"from\":\"" DS_FEAT "\",\"to\":\"" RUN_TRAIN "\",\"type\":\"input\"},"
        "{\"from\":\"" JOB_TRAIN "\",\"to\":\"" RUN_TRAIN "\",\"type\":\"run\"},"
        "{\"from\":\"" RUN_TRAIN "\",\"to\":\"" MODEL "\",\"type\":\"output\"},"
        "{\"from\":\"" MODEL "\",\"to\":\"" PRED "\",\"type\":\"served\"}"
        "]}";

/* Ids no renderer may trust: quotes, backslashes, '#', HTML, a newline; and an edge to a node not listed. */
static const char hostile_doc[] =
        "{\"root\":\"dataset:we\\\"ird\\\\ns:na#me<b>x</b>\",\"direction\":\"downstream\",\"depth\":2,"
        "\"at\":\"2026-11-01T00:00:00.000000000Z\",\"truncated\":true,\"nodes\":["
        "{\"id\":\"dataset:we\\\"ird\\\\ns:na#me<b>x</b>\",\"type\":\"dataset\",\"distance\":0,"
        "\"namespace\":\"we\\\"ird\\\\ns\",\"name\":\"na#me<b>x</b>\",\"version\":\"v1\\\\\",\"facets\":{}},"
        "{\"id\":\"run:0190f5a0-aaaa-7bbb-8ccc-dddddddddddd\",\"type\":\"run\",\"distance\":1,"
        "\"job\":\"job:a:b`c&d\",\"state\":\"ABORT\",\"started_at\":null,\"ended_at\":null,\"duration_ms\":null,"
        "\"trace_id\":null,\"error\":\"line1\\nline2 \\\"q\\\" \\u001b[2J\\u009b31m\",\"parent\":null},"
        "{\"id\":\"deployment:end\",\"type\":\"deployment\",\"distance\":2}"
        "],\"edges\":["
        "{\"from\":\"dataset:we\\\"ird\\\\ns:na#me<b>x</b>\",\"to\":\"run:0190f5a0-aaaa-7bbb-8ccc-dddddddddddd\","
        "\"type\":\"input\"},"
        "{\"from\":\"run:0190f5a0-aaaa-7bbb-8ccc-dddddddddddd\",\"to\":\"dataset:x:y\\\\\",\"type\":\"output\"},"
        "{\"from\":\"dataset:x:y\\\\\",\"to\":\"deployment:end\",\"type\":\"weird \\\"type\\\"|\"}"
        "]}";

static const char explain_doc[] =
        "{\"prediction\":{\"id\":\"pred-7f3a91\",\"trace_id\":\"" TRACE_PRED "\","
        "\"time\":\"2026-11-23T10:15:02.481000000Z\",\"model\":\"" MODEL "\","
        "\"input_digest\":\"sha256:9f86d081884c7d659a2feaa0c55ad015\",\"output\":\"0.87\","
        "\"deployment\":\"deployment:churn-prod\"},"
        "\"model\":{\"id\":\"" MODEL "\",\"name\":\"churn\",\"version\":\"7\","
        "\"digest\":\"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\","
        "\"run\":\"" RUN_TRAIN "\"},"
        "\"runs\":["
        "{\"id\":\"" RUN_TRAIN "\",\"job\":\"" JOB_TRAIN "\",\"state\":\"COMPLETE\",\"distance\":2,"
        "\"started_at\":\"2026-11-22T02:00:00.000000000Z\",\"ended_at\":\"2026-11-22T02:47:13.512000000Z\","
        "\"duration_ms\":2833512,\"trace_id\":\"" TRACE_TRAIN "\",\"error\":null,"
        "\"inputs\":[\"" DS_FEAT "\"],\"outputs\":[\"" MODEL "\"],"
        "\"reproducibility\":{\"code_url\":\"https://github.com/acme/churn\",\"code_path\":\"train/train.py\","
        "\"code_version\":\"3f2c1e9a\",\"parameters\":{\"learning_rate\":0.05,\"max_depth\":6,"
        "\"objective\":\"binary\"},\"seeds\":{\"random_seed\":42},\"environment\":{\"PYTHON_VERSION\":\"3.11.6\","
        "\"CUDA_VISIBLE_DEVICES\":\"0\"},\"input_versions\":{\"" DS_FEAT "\":\"v42\"},"
        "\"output_versions\":{\"" MODEL "\":\"sha256:2c26b46b68ff\"}}},"
        "{\"id\":\"" RUN_FEAT "\",\"job\":\"" JOB_FEAT "\",\"state\":\"FAIL\",\"distance\":4,"
        "\"started_at\":\"2026-11-22T01:00:00.000000000Z\",\"ended_at\":\"2026-11-22T01:03:41.020000000Z\","
        "\"duration_ms\":221020,\"trace_id\":\"" TRACE_FEAT "\",\"error\":\"" FEAT_ERROR "\","
        "\"inputs\":[\"" DS_RAW "\"],\"outputs\":[\"" DS_FEAT "\"],"
        "\"reproducibility\":{\"code_url\":null,\"code_path\":null,\"code_version\":null,\"parameters\":null,"
        "\"seeds\":null,\"environment\":null,\"input_versions\":{},\"output_versions\":{}}}"
        "],"
        "\"raw_inputs\":[\"" DS_RAW "\"],"
        "\"problems\":[{\"node\":\"" RUN_FEAT "\",\"kind\":\"failed\",\"message\":\"" FEAT_ERROR "\"}],"
        "\"edges\":[]}";

/* ---- helpers ---- */

static co_cli plain_cli(void)
{
	co_cli c = {.collector = "tcp://127.0.0.1:1", .timeout_ms = 2000, .json = false, .color = false};
	return c;
}

/* Renders with fn into a malloc'd string. */
static char *render_show(const char *doc, co_cli_lformat fmt, int *rc)
{
	co_cli cli = plain_cli();
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	tl_errmsg err = {{0}};
	*rc = co_cli_lineage_show_print(&cli, doc, strlen(doc), fmt, f, &err);
	fclose(f);
	return buf;
}

static char *render_explain(const char *doc, bool json, int *rc)
{
	co_cli cli = plain_cli();
	cli.json = json;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	tl_errmsg err = {{0}};
	*rc = co_cli_lineage_explain_print(&cli, doc, strlen(doc), f, &err);
	fclose(f);
	return buf;
}

/* Splits text into lines in place; returns how many (at most max). */
static size_t split_lines(char *text, char **lines, size_t max)
{
	size_t n = 0;
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l != NULL && n < max; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	return n;
}

static size_t line_index(char **lines, size_t n, const char *needle)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(lines[i], needle) != NULL)
			return i;
	return SIZE_MAX;
}

/* Captures fds 1 and 2 around a command. */
typedef struct capture {
	int saved_out, saved_err;
	FILE *out, *err;
	char *out_text, *err_text;
} capture;

static void cap_begin(capture *c)
{
	fflush(stdout);
	fflush(stderr);
	c->out = tmpfile();
	c->err = tmpfile();
	cr_assert(c->out != NULL && c->err != NULL);
	c->saved_out = dup(1);
	c->saved_err = dup(2);
	dup2(fileno(c->out), 1);
	dup2(fileno(c->err), 2);
}

static char *slurp(FILE *f)
{
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *s = calloc(1, (size_t)n + 1);
	cr_assert_not_null(s);
	cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return s;
}

static void cap_end(capture *c)
{
	fflush(stdout);
	fflush(stderr);
	dup2(c->saved_out, 1);
	dup2(c->saved_err, 2);
	close(c->saved_out);
	close(c->saved_err);
	c->out_text = slurp(c->out);
	c->err_text = slurp(c->err);
}

static void cap_free(capture *c)
{
	free(c->out_text);
	free(c->err_text);
}

/* Runs a lineage/emit command with stdout and stderr captured; returns its exit code. */
static int run_cmd(int (*fn)(co_cli *, int, char **), co_cli *cli, capture *c, char **argv)
{
	int argc = 0;
	while (argv[argc] != NULL)
		argc++;
	cap_begin(c);
	int code = fn(cli, argc, argv);
	cap_end(c);
	return code;
}

/* A loopback TCP port that nothing listens on (bound, read, closed). */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* ---- lineage show: text ---- */

typedef struct seen_edge {
	char holder[256], other[256], type[64];
	bool in; /* "←": other flows into holder */
} seen_edge;

Test(cli_lineage, show_text_lists_every_node_by_distance_and_every_edge_once)
{
	int rc;
	char *out = render_show(show_doc, CO_CLI_LFORMAT_TEXT, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "Lineage of " PRED " \xc2\xb7 upstream \xc2\xb7 depth 5 \xc2\xb7 now"), "%s",
	                   out);
	cr_assert_not_null(strstr(out, "8 nodes, 7 edges, 1 run failed or aborted"), "%s", out);
	char *copy = strdup(out);
	char *lines[256];
	size_t n = split_lines(copy, lines, 256);

	/* Node lines: two spaces, then the id and its type; levels in order, the root first. */
	static const char *const ids[] = {PRED, MODEL, RUN_TRAIN, JOB_TRAIN, DS_FEAT, RUN_FEAT, JOB_FEAT, DS_RAW};
	static const char *const types[] = {"prediction", "model", "run", "job", "dataset", "run", "job", "dataset"};
	static const int dist[] = {0, 1, 2, 3, 3, 4, 5, 5};
	size_t last = 0;
	for (size_t k = 0; k < 8; k++) {
		char want[512], level[32];
		snprintf(want, sizeof(want), "  %s  %s", ids[k], types[k]);
		snprintf(level, sizeof(level), "distance %d", dist[k]);
		size_t at = SIZE_MAX, lv = line_index(lines, n, level);
		for (size_t i = 0; i < n; i++)
			if (strncmp(lines[i], want, strlen(want)) == 0)
				at = i;
		cr_assert_neq(at, SIZE_MAX, "node line '%s' missing:\n%s", want, out);
		cr_assert(lv < at, "%s is not under '%s'", ids[k], level);
		cr_assert(at >= last, "%s is out of order", ids[k]);
		last = at;
	}
	/* The failed run: its state marked, its error and trace shown. */
	size_t feat = line_index(lines, n, "  " RUN_FEAT "  run");
	cr_assert_not_null(strstr(lines[feat], "\xe2\x9c\x97 FAIL"), "%s", lines[feat]);
	cr_assert_not_null(strstr(lines[feat], JOB_FEAT));
	cr_assert_not_null(strstr(lines[feat + 1], "trace " TRACE_FEAT), "%s", lines[feat + 1]);
	cr_assert_not_null(strstr(lines[feat + 1], "started 2026-11-22 01:00:00"), "%s", lines[feat + 1]);
	cr_assert_not_null(strstr(lines[feat + 2], "error: " FEAT_ERROR_TEXT), "%s", lines[feat + 2]);
	size_t train = line_index(lines, n, "  " RUN_TRAIN "  run");
	cr_assert_not_null(strstr(lines[train], "\xe2\x9c\x93 COMPLETE"));
	cr_assert_null(strstr(lines[train], "\xe2\x9c\x97"));

	/* Edge lines ("      ← FROM (type)" / "      → TO (type)") under the node they hang from. */
	seen_edge seen[32];
	size_t ns = 0;
	const char *holder = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *l = lines[i];
		if (strncmp(l, "  ", 2) == 0 && l[2] != ' ') {
			holder = l + 2;
			continue;
		}
		bool in = strncmp(l, "      \xe2\x86\x90 ", 10) == 0, outw = strncmp(l, "      \xe2\x86\x92 ", 10) == 0;
		if (!in && !outw)
			continue;
		cr_assert_not_null(holder);
		cr_assert_lt(ns, 32);
		seen_edge *e = &seen[ns++];
		e->in = in;
		size_t hl = strcspn(holder, " ");
		snprintf(e->holder, sizeof(e->holder), "%.*s", (int)hl, holder);
		const char *rest = l + 10, *paren = strrchr(rest, '(');
		cr_assert_not_null(paren);
		snprintf(e->other, sizeof(e->other), "%.*s", (int)(paren - rest - 1), rest);
		snprintf(e->type, sizeof(e->type), "%.*s", (int)strcspn(paren + 1, ")"), paren + 1);
	}
	cr_assert_eq(ns, 7, "expected 7 edge lines, got %zu:\n%s", ns, out);
	json_t *doc = json_loads(show_doc, 0, NULL);
	json_t *edges = json_object_get(doc, "edges");
	for (size_t i = 0; i < json_array_size(edges); i++) {
		json_t *e = json_array_get(edges, i);
		const char *f = json_string_value(json_object_get(e, "from")),
		           *t = json_string_value(json_object_get(e, "to")),
		           *ty = json_string_value(json_object_get(e, "type"));
		size_t hits = 0;
		for (size_t k = 0; k < ns; k++)
			hits += strcmp(seen[k].type, ty) == 0 &&
			        ((seen[k].in && strcmp(seen[k].holder, t) == 0 && strcmp(seen[k].other, f) == 0) ||
			         (!seen[k].in && strcmp(seen[k].holder, f) == 0 && strcmp(seen[k].other, t) == 0));
		cr_assert_eq(hits, 1, "edge %s -> %s (%s) shown %zu times:\n%s", f, t, ty, hits, out);
	}
	json_decref(doc);
	free(copy);
	free(out);
}

Test(cli_lineage, show_text_marks_truncation_time_travel_and_unlisted_nodes)
{
	int rc;
	char *out = render_show(hostile_doc, CO_CLI_LFORMAT_TEXT, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "as of 2026-11-01 00:00:00"), "%s", out);
	cr_assert_not_null(strstr(out, "truncated"), "%s", out);
	cr_assert_not_null(strstr(out, "\xe2\x9c\x97 ABORT"), "%s", out);
	cr_assert_not_null(strstr(out, "named by edges only"), "%s", out);
	cr_assert_not_null(strstr(out, "  dataset:x:y\\  dataset  (named by an edge"), "%s", out);
	/* Nothing from the collector reaches the terminal as a control character. */
	cr_assert_not_null(strstr(out, "error: line1 line2 \"q\"  [2J 31m\n"), "%s", out);
	for (const unsigned char *p = (const unsigned char *)out; *p; p++) {
		cr_assert(*p >= 0x20 || *p == '\n', "control character 0x%02x", *p);
		cr_assert(!(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f), "C1 control character");
	}
	free(out);
}

/* ---- lineage show: DOT ---- */

/* Runs `dot -Tplain` on text; returns its exit status and counts the nodes and edges it saw. -1: no dot. */
static int dot_check(const char *text, size_t *nodes, size_t *edges)
{
	if (access("/usr/bin/dot", X_OK) != 0 && system("command -v dot >/dev/null 2>&1") != 0)
		return -1;
	char path[] = "/tmp/tl-cli-lineage-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "dot -Tplain %s 2>&1", path);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	char line[4096];
	*nodes = *edges = 0;
	while (fgets(line, sizeof(line), p) != NULL) {
		*nodes += strncmp(line, "node ", 5) == 0;
		*edges += strncmp(line, "edge ", 5) == 0;
		if (strncmp(line, "Error", 5) == 0 || strncmp(line, "Warning", 7) == 0)
			cr_log_error("dot: %s", line);
	}
	int st = pclose(p);
	unlink(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Without dot: braces balance outside quoted strings and every quoted string ends. */
static void dot_check_lexically(const char *text)
{
	int depth = 0;
	bool q = false;
	for (const char *p = text; *p; p++) {
		if (q) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				q = false;
			else
				cr_assert_neq(*p, '\n', "newline inside a quoted string");
		} else if (*p == '"') {
			q = true;
		} else if (*p == '{') {
			depth++;
		} else if (*p == '}') {
			depth--;
		}
	}
	cr_assert(!q && depth == 0);
}

Test(cli_lineage, show_dot_is_a_valid_digraph_with_every_node_and_edge)
{
	int rc;
	char *out = render_show(show_doc, CO_CLI_LFORMAT_DOT, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strncmp(out, "digraph lineage {\n", 18), 0, "%s", out);
	cr_assert_not_null(strstr(out, "rankdir=LR;"));
	static const char *const ids[] = {PRED, MODEL, RUN_TRAIN, JOB_TRAIN, DS_FEAT, RUN_FEAT, JOB_FEAT, DS_RAW};
	for (size_t k = 0; k < 8; k++) {
		char want[512];
		snprintf(want, sizeof(want), "\t\"%s\" [label=\"%s", ids[k], ids[k]);
		cr_assert_not_null(strstr(out, want), "missing %s:\n%s", want, out);
	}
	char *l = strstr(out, "\t\"" RUN_FEAT "\" [");
	char *eol = strchr(l, '\n');
	*eol = '\0';
	cr_assert_not_null(strstr(l, "color=\"red\""), "%s", l);
	cr_assert_not_null(strstr(l, "shape=box"), "%s", l);
	*eol = '\n';
	l = strstr(out, "\t\"" RUN_TRAIN "\" [");
	eol = strchr(l, '\n');
	*eol = '\0';
	cr_assert_null(strstr(l, "red"), "%s", l);
	*eol = '\n';
	l = strstr(out, "\t\"" PRED "\" [");
	eol = strchr(l, '\n');
	*eol = '\0';
	cr_assert_not_null(strstr(l, "bold"), "the root is bold: %s", l);
	*eol = '\n';
	cr_assert_not_null(strstr(out, "\t\"" DS_FEAT "\" [label=\"" DS_FEAT "\\nversion v42\", shape=cylinder"));
	cr_assert_not_null(strstr(out, "\t\"" DS_RAW "\" -> \"" RUN_FEAT "\" [label=\"input\"];"));
	cr_assert_not_null(strstr(out, "\t\"" MODEL "\" -> \"" PRED "\" [label=\"served\"];"));
	size_t nodes, edges;
	int st = dot_check(out, &nodes, &edges);
	if (st < 0) {
		dot_check_lexically(out);
	} else {
		cr_assert_eq(st, 0, "dot rejected:\n%s", out);
		cr_assert_eq(nodes, 8);
		cr_assert_eq(edges, 7);
	}
	free(out);
}

Test(cli_lineage, show_dot_escapes_hostile_ids)
{
	int rc;
	char *out = render_show(hostile_doc, CO_CLI_LFORMAT_DOT, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "\"dataset:we\\\"ird\\\\ns:na#me<b>x</b>\" [label="), "%s", out);
	dot_check_lexically(out);
	size_t nodes, edges;
	int st = dot_check(out, &nodes, &edges);
	if (st >= 0) {
		cr_assert_eq(st, 0, "dot rejected:\n%s", out);
		cr_assert_eq(nodes, 4, "the three listed nodes and the one only an edge names:\n%s", out);
		cr_assert_eq(edges, 3);
	}
	free(out);
}

/* ---- lineage show: Mermaid ---- */

typedef struct mm_node {
	int id;
	char label[512]; /* the first label line, as written (escaped) */
	char line[1024];
} mm_node;

/* Mermaid's escaping as the renderer writes it, to find a node by its label. */
static void mm_escaped(const char *s, char *out, size_t cap)
{
	size_t k = 0;
	for (; *s && k + 8 < cap; s++) {
		const char *rep = NULL;
		switch (*s) {
		case '"':
			rep = "#quot;";
			break;
		case '#':
			rep = "#35;";
			break;
		case '<':
			rep = "#lt;";
			break;
		case '>':
			rep = "#gt;";
			break;
		case '&':
			rep = "#amp;";
			break;
		case '`':
			rep = "#96;";
			break;
		case '\\':
			rep = "#92;";
			break;
		}
		if (rep != NULL) {
			memcpy(out + k, rep, strlen(rep));
			k += strlen(rep);
		} else {
			out[k++] = *s;
		}
	}
	out[k] = '\0';
}

/* Parses the node lines of a flowchart: "\tnN<open>"LABEL"<close>". */
static size_t mm_nodes(const char *text, mm_node *nodes, size_t max)
{
	char *copy = strdup(text);
	char *lines[256];
	size_t n = split_lines(copy, lines, 256), nn = 0;
	for (size_t i = 1; i < n; i++) {
		const char *l = lines[i];
		if (l[0] != '\t' || l[1] != 'n' || !isdigit((unsigned char)l[2]))
			continue;
		char *end;
		long id = strtol(l + 2, &end, 10);
		if (*end == ' ')
			continue; /* an edge */
		const char *q1 = strchr(l, '"'), *q2 = strrchr(l, '"');
		cr_assert(q1 != NULL && q2 > q1, "unquoted label: %s", l);
		/* Exactly two quotes: every quote of the id was escaped. */
		size_t quotes = 0;
		for (const char *p = l; *p; p++)
			quotes += *p == '"';
		cr_assert_eq(quotes, 2, "%s", l);
		cr_assert_lt(nn, max);
		mm_node *m = &nodes[nn++];
		m->id = (int)id;
		size_t ll = (size_t)(q2 - q1 - 1);
		const char *br = strstr(q1 + 1, "<br/>");
		if (br != NULL && br < q2)
			ll = (size_t)(br - q1 - 1);
		snprintf(m->label, sizeof(m->label), "%.*s", (int)ll, q1 + 1);
		snprintf(m->line, sizeof(m->line), "%s", l);
	}
	free(copy);
	return nn;
}

static int mm_find(const mm_node *nodes, size_t n, const char *id)
{
	char esc[1024];
	mm_escaped(id, esc, sizeof(esc));
	for (size_t i = 0; i < n; i++)
		if (strcmp(nodes[i].label, esc) == 0)
			return nodes[i].id;
	return -1;
}

Test(cli_lineage, show_mermaid_uses_sanitized_ids_and_draws_every_edge)
{
	int rc;
	char *out = render_show(show_doc, CO_CLI_LFORMAT_MERMAID, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strncmp(out, "flowchart LR\n", 13), 0, "%s", out);
	mm_node nodes[32];
	size_t nn = mm_nodes(out, nodes, 32);
	cr_assert_eq(nn, 8, "%s", out);
	int feat = mm_find(nodes, nn, RUN_FEAT), root = mm_find(nodes, nn, PRED), raw = mm_find(nodes, nn, DS_RAW);
	cr_assert(feat >= 0 && root >= 0 && raw >= 0, "%s", out);
	/* Shapes: a dataset is a cylinder, a run rounded. */
	for (size_t i = 0; i < nn; i++) {
		if (nodes[i].id == raw)
			cr_assert_not_null(strstr(nodes[i].line, "[(\""), "%s", nodes[i].line);
		if (nodes[i].id == feat) {
			cr_assert_not_null(strstr(nodes[i].line, "(\""), "%s", nodes[i].line);
			cr_assert_not_null(strstr(nodes[i].line, "<br/>\xe2\x9c\x97 FAIL"), "%s", nodes[i].line);
		}
	}
	json_t *doc = json_loads(show_doc, 0, NULL);
	json_t *edges = json_object_get(doc, "edges");
	size_t edge_lines = 0;
	for (const char *p = out; (p = strstr(p, " -->|")) != NULL; p++)
		edge_lines++;
	cr_assert_eq(edge_lines, json_array_size(edges));
	for (size_t i = 0; i < json_array_size(edges); i++) {
		json_t *e = json_array_get(edges, i);
		int f = mm_find(nodes, nn, json_string_value(json_object_get(e, "from")));
		int t = mm_find(nodes, nn, json_string_value(json_object_get(e, "to")));
		cr_assert(f >= 0 && t >= 0);
		char want[128];
		snprintf(want, sizeof(want), "\tn%d -->|%s| n%d\n", f, json_string_value(json_object_get(e, "type")),
		         t);
		cr_assert_not_null(strstr(out, want), "missing '%s':\n%s", want, out);
	}
	char want[64];
	snprintf(want, sizeof(want), "\tclass n%d failed\n", feat);
	cr_assert_not_null(strstr(out, want), "%s", out);
	snprintf(want, sizeof(want), "\tclass n%d root\n", root);
	cr_assert_not_null(strstr(out, want), "%s", out);
	cr_assert_not_null(strstr(out, "classDef failed"));
	json_decref(doc);
	free(out);
}

Test(cli_lineage, show_mermaid_escapes_hostile_labels)
{
	int rc;
	char *out = render_show(hostile_doc, CO_CLI_LFORMAT_MERMAID, &rc);
	cr_assert_eq(rc, 0);
	mm_node nodes[16];
	size_t nn = mm_nodes(out, nodes, 16); /* asserts two quotes a line */
	cr_assert_eq(nn, 4, "%s", out);
	cr_assert_not_null(strstr(out, "dataset:we#quot;ird#92;ns:na#35;me#lt;b#gt;x#lt;/b#gt;"), "%s", out);
	cr_assert_null(strstr(out, "<b>"), "%s", out);
	cr_assert_not_null(strstr(out, "job:a:b#96;c#amp;d"), "%s", out);
	/* An edge type is reduced to a safe word; 'end' as an id never appears (ids are nN). */
	cr_assert_not_null(strstr(out, "-->|weirdtype| "), "%s", out);
	int depl = mm_find(nodes, nn, "deployment:end");
	cr_assert_geq(depl, 0);
	free(out);
}

/* ---- lineage show: JSON, and bad documents ---- */

Test(cli_lineage, show_json_is_the_document_on_one_line)
{
	int rc;
	char *out = render_show(show_doc, CO_CLI_LFORMAT_JSON, &rc);
	cr_assert_eq(rc, 0);
	size_t len = strlen(out);
	cr_assert(len > 0 && out[len - 1] == '\n');
	cr_assert_null(memchr(out, '\n', len - 1), "one line");
	json_t *a = json_loads(out, 0, NULL), *b = json_loads(show_doc, 0, NULL);
	cr_assert(a != NULL && json_equal(a, b));
	json_decref(a);
	free(out);
	/* A pretty-printed document comes out compact too. */
	char *pretty = json_dumps(b, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	out = render_show(pretty, CO_CLI_LFORMAT_JSON, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_null(memchr(out, '\n', strlen(out) - 1));
	a = json_loads(out, 0, NULL);
	cr_assert(a != NULL && json_equal(a, b));
	json_decref(a);
	json_decref(b);
	free(pretty);
	free(out);
}

Test(cli_lineage, malformed_documents_are_protocol_errors)
{
	static const char *const bad[] = {"",
	                                  "not json",
	                                  "[1,2]",
	                                  "{\"nodes\":[]}",
	                                  "{\"root\":\"x\",\"nodes\":{}}",
	                                  "{\"root\":\"x\",\"nodes\":[],\"edges\":7}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;
		char *out = render_show(bad[i], CO_CLI_LFORMAT_DOT, &rc);
		cr_assert_eq(rc, TL_EPROTO, "'%s' gave %d", bad[i], rc);
		free(out);
	}
	int rc;
	char *out = render_explain("{\"runs\":[]}", false, &rc);
	cr_assert_eq(rc, TL_EPROTO);
	free(out);
	/* Odd but well-formed pieces are skipped, not fatal. */
	out = render_show(
	        "{\"root\":\"job:a:b\",\"nodes\":[{\"type\":\"job\"},7,{\"id\":\"job:a:b\",\"distance\":\"x\"}],"
	        "\"edges\":[{\"from\":\"job:a:b\"},{\"from\":\"job:a:b\",\"to\":\"run:x\",\"type\":null}]}",
	        CO_CLI_LFORMAT_TEXT, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "2 nodes, 1 edge"), "%s", out);
	cr_assert_not_null(strstr(out, "\xe2\x86\x90 job:a:b (edge)"), "%s", out);
	free(out);
}

/* ---- lineage explain ---- */

Test(cli_lineage, explain_text_calls_out_the_failed_run_first_then_every_record)
{
	int rc;
	char *out = render_explain(explain_doc, false, &rc);
	cr_assert_eq(rc, 0);
	char *copy = strdup(out);
	char *lines[256];
	size_t n = split_lines(copy, lines, 256);
	cr_assert_eq(strncmp(lines[0], "Prediction pred-7f3a91", 22), 0, "%s", out);
	cr_assert_not_null(strstr(lines[0], "trace " TRACE_PRED));
	size_t warn = line_index(lines, n, "\xe2\x9a\xa0 upstream run " RUN_FEAT " FAILED: " FEAT_ERROR_TEXT);
	size_t model = line_index(lines, n, "Model"), runs = line_index(lines, n, "Runs, nearest first (2)"),
	       raw = line_index(lines, n, "Raw inputs (1)");
	cr_assert_eq(warn, 1, "the problem is called out at the top:\n%s", out);
	cr_assert(warn < model && model < runs && runs < raw, "%s", out);
	cr_assert_neq(line_index(lines, n, "model: " MODEL), SIZE_MAX);
	cr_assert_neq(line_index(lines, n, "deployment: deployment:churn-prod"), SIZE_MAX);
	cr_assert_neq(line_index(lines, n, "trained by " RUN_TRAIN), SIZE_MAX);
	size_t train = line_index(lines, n, "[2] " RUN_TRAIN), feat = line_index(lines, n, "[4] " RUN_FEAT);
	cr_assert(runs < train && train < feat && feat < raw, "nearest first:\n%s", out);
	cr_assert_not_null(strstr(lines[train], "\xe2\x9c\x93 COMPLETE  " JOB_TRAIN));
	cr_assert_not_null(strstr(lines[feat], "\xe2\x9c\x97 FAIL  " JOB_FEAT));
	/* The training run's record. */
	size_t k = train + 1;
	cr_assert_not_null(strstr(lines[k], "trace " TRACE_TRAIN), "%s", lines[k]);
	cr_assert_not_null(strstr(lines[k], "47m"), "duration: %s", lines[k]);
	cr_assert_not_null(strstr(out, "inputs: " DS_FEAT " @ v42"), "%s", out);
	cr_assert_not_null(strstr(out, "outputs: " MODEL " @ sha256:2c26b46b68ff"), "%s", out);
	cr_assert_not_null(strstr(out, "code: https://github.com/acme/churn train/train.py @ 3f2c1e9a"), "%s", out);
	cr_assert_not_null(strstr(out, "parameters: learning_rate=0.05, max_depth=6, objective=binary"), "%s", out);
	cr_assert_not_null(strstr(out, "seeds: random_seed=42"), "%s", out);
	cr_assert_not_null(strstr(out, "environment: PYTHON_VERSION=3.11.6, CUDA_VISIBLE_DEVICES=0"), "%s", out);
	/* The failed run's: its error, and what was not recorded said so. */
	cr_assert_not_null(strstr(lines[feat + 2], "error: " FEAT_ERROR_TEXT), "%s", lines[feat + 2]);
	cr_assert_not_null(strstr(out, "code: not recorded"), "%s", out);
	cr_assert_not_null(strstr(out, "seeds: not recorded"), "%s", out);
	cr_assert_not_null(strstr(lines[raw + 1], DS_RAW), "%s", out);
	free(copy);
	free(out);
}

Test(cli_lineage, explain_without_problems_says_so_and_kinds_read_well)
{
	json_t *doc = json_loads(explain_doc, 0, NULL);
	json_object_set_new(doc, "problems", json_array());
	char *s = json_dumps(doc, JSON_COMPACT);
	int rc;
	char *out = render_explain(s, false, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_null(strstr(out, "\xe2\x9a\xa0"), "%s", out);
	cr_assert_not_null(strstr(out, "\xe2\x9c\x93 every run upstream completed"), "%s", out);
	free(out);
	free(s);
	json_object_set_new(doc, "problems",
	                    json_pack("[{s:s,s:s,s:n},{s:s,s:s,s:s}]", "node", DS_RAW, "kind", "missing_producer",
	                              "message", "node", RUN_TRAIN, "kind", "running", "message", "started 2h ago"));
	s = json_dumps(doc, JSON_COMPACT);
	out = render_explain(s, false, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(out, "\xe2\x9a\xa0 " DS_RAW ": no known run produced it\n"), "%s", out);
	cr_assert_not_null(strstr(out, "\xe2\x9a\xa0 upstream run " RUN_TRAIN " is still running: started 2h ago"),
	                   "%s", out);
	free(out);
	free(s);
	json_decref(doc);
}

Test(cli_lineage, explain_json_is_the_document_on_one_line)
{
	int rc;
	char *out = render_explain(explain_doc, true, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_null(memchr(out, '\n', strlen(out) - 1));
	json_t *a = json_loads(out, 0, NULL), *b = json_loads(explain_doc, 0, NULL);
	cr_assert(a != NULL && json_equal(a, b));
	json_decref(a);
	json_decref(b);
	free(out);
}

/* ---- node ids ---- */

Test(cli_lineage, node_ids)
{
	static const char *const good[][2] = {
	        {"dataset:warehouse:features.users", NULL},
	        {"dataset:postgres://db:5432:public.users#v3", NULL},
	        {"job:airflow://prod:etl.daily", NULL},
	        {"run:0190F5A4-7C1E-7B2A-9D4E-3F6A8B2C1D0E", "run:0190f5a4-7c1e-7b2a-9d4e-3f6a8b2c1d0e"},
	        {"model:churn:7", NULL},
	        {"prediction:p-1", NULL},
	        {"deployment:churn-prod", NULL},
	};
	char out[128];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		tl_errmsg err = {{0}};
		cr_assert_eq(co_cli_lineage_node_parse(good[i][0], out, sizeof(out), &err), 0, "%s: %s", good[i][0],
		             err.msg);
		cr_assert_str_eq(out, good[i][1] != NULL ? good[i][1] : good[i][0]);
	}
	static const char *const bad[] = {"features.users",
	                                  "table:a:b",
	                                  "dataset:nonamespace",
	                                  "dataset::name",
	                                  "dataset:ns:",
	                                  "dataset:ns:name#",
	                                  "job:only",
	                                  "run:not-a-uuid",
	                                  "run:0190f5a4-7c1e-7b2a-9d4e-3f6a8b2c1d0",
	                                  "run:0190f5a4x7c1e-7b2a-9d4e-3f6a8b2c1d0e",
	                                  "model:churn",
	                                  "prediction:",
	                                  "deployment:",
	                                  "prediction:a\nb"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tl_errmsg err = {{0}};
		cr_assert_eq(co_cli_lineage_node_parse(bad[i], out, sizeof(out), &err), TL_EINVALID, "%s", bad[i]);
		cr_assert_neq(err.msg[0], '\0');
	}
	tl_errmsg err = {{0}};
	cr_assert_eq(co_cli_lineage_node_parse("prediction:0123456789", out, 8, &err), TL_ELIMIT);
}

/* ---- the commands: usage errors never reach the collector ---- */

Test(cli_lineage, usage_errors_exit_2_with_a_message)
{
	static const struct {
		const char *argv[8];
		const char *says;
	} cases[] = {
	        {{"lineage", NULL}, "expected a subcommand"},
	        {{"lineage", "draw", NULL}, "expected a subcommand"},
	        {{"lineage", "show", NULL}, "missing NODE"},
	        {{"lineage", "show", "features.users", NULL}, "want dataset:NS:NAME"},
	        {{"lineage", "show", "run:123", NULL}, "run:UUID"},
	        {{"lineage", "show", "model:churn:7", "--depth", "0", NULL}, "--depth"},
	        {{"lineage", "show", "model:churn:7", "--depth", "5x", NULL}, "--depth"},
	        {{"lineage", "show", "model:churn:7", "--depth", NULL}, "--depth"},
	        {{"lineage", "show", "model:churn:7", "--at", "yesterday", NULL}, "--at"},
	        {{"lineage", "show", "model:churn:7", "--format", "svg", NULL}, "--format"},
	        {{"lineage", "show", "model:churn:7", "--upstream", "--downstream", NULL}, "exclude"},
	        {{"lineage", "show", "model:churn:7", "--colour", NULL}, "unknown option"},
	        {{"lineage", "show", "model:churn:7", "model:churn:8", NULL}, "unexpected argument"},
	        {{"lineage", "explain", NULL}, "missing prediction:ID"},
	        {{"lineage", "explain", "model:churn:7", NULL}, "expected prediction:ID"},
	        {{"lineage", "explain", "prediction:", NULL}, "expected prediction:ID"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		co_cli cli = plain_cli();
		capture c;
		int code = run_cmd(co_cli_lineage, &cli, &c, (char **)cases[i].argv);
		cr_assert_eq(code, CLI_USAGE, "case %zu (%s): exit %d, stderr: %s", i, cases[i].says, code, c.err_text);
		cr_assert_not_null(strstr(c.err_text, cases[i].says), "case %zu: stderr lacks '%s': %s", i,
		                   cases[i].says, c.err_text);
		cr_assert_str_eq(c.out_text, "");
		cap_free(&c);
	}
}

Test(cli_lineage, show_and_explain_exit_3_when_the_collector_is_unreachable)
{
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", closed_port());
	co_cli cli = plain_cli();
	cli.collector = url;
	capture c;
	char *show[] = {"lineage", "show", "model:churn:7", "--upstream", NULL};
	cr_assert_eq(run_cmd(co_cli_lineage, &cli, &c, show), CLI_UNREACHABLE, "%s", c.err_text);
	cr_assert_not_null(strstr(c.err_text, "cannot reach the collector"), "%s", c.err_text);
	cap_free(&c);
	char *explain[] = {"lineage", "explain", "prediction:p-1", NULL};
	cr_assert_eq(run_cmd(co_cli_lineage, &cli, &c, explain), CLI_UNREACHABLE);
	cap_free(&c);
}

/* ---- the commands against a fake collector ---- */

typedef struct fake_collector {
	nng_socket sock;
	char url[64];
	pthread_t th;
	int code;          /* to answer */
	const char *error; /* to answer */
	const char *json;  /* to answer */
	/* what it was asked */
	int query_case;
	char node_id[256];
	int direction;
	uint32_t depth;
	uint64_t at;
	char prediction[256];
} fake_collector;

static void *fake_collector_main(void *arg)
{
	fake_collector *f = arg;
	nng_msg *m;
	if (nng_recvmsg(f->sock, &m, 0) != 0)
		return NULL;
	tl_pb_query_req *q = threadline__v1__query_request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	if (q != NULL) {
		f->query_case = (int)q->query_case;
		/* The query members are a oneof: a union, read only the one query_case names. */
		if (q->query_case == THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW && q->lineage_show != NULL) {
			snprintf(f->node_id, sizeof(f->node_id), "%s", q->lineage_show->node_id);
			f->direction = (int)q->lineage_show->direction;
			f->depth = q->lineage_show->depth;
			f->at = q->lineage_show->at_unix_nano;
		}
		if (q->query_case == THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN && q->lineage_explain != NULL)
			snprintf(f->prediction, sizeof(f->prediction), "%s", q->lineage_explain->prediction_id);
		threadline__v1__query_request__free_unpacked(q, NULL);
	}
	tl_pb_query_resp r;
	threadline__v1__query_response__init(&r);
	r.code = f->code;
	r.error = (char *)(f->error != NULL ? f->error : "");
	r.json = (char *)(f->json != NULL ? f->json : "");
	size_t len = threadline__v1__query_response__get_packed_size(&r);
	if (nng_msg_alloc(&m, len) != 0)
		return NULL;
	threadline__v1__query_response__pack(&r, nng_msg_body(m));
	if (nng_sendmsg(f->sock, m, 0) != 0)
		nng_msg_free(m);
	nng_msleep(100); /* let the reply leave before the socket closes */
	return NULL;
}

static void fake_collector_start(fake_collector *f)
{
	cr_assert_eq(nng_rep0_open(&f->sock), 0);
	nng_socket_set_ms(f->sock, NNG_OPT_RECVTIMEO, 10000);
	nng_listener l;
	cr_assert_eq(nng_listen(f->sock, "tcp://127.0.0.1:0", &l, 0), 0);
	int port = 0;
	cr_assert_eq(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
	snprintf(f->url, sizeof(f->url), "tcp://127.0.0.1:%d", port);
	cr_assert_eq(pthread_create(&f->th, NULL, fake_collector_main, f), 0);
}

static void fake_collector_stop(fake_collector *f)
{
	pthread_join(f->th, NULL);
	nng_close(f->sock);
}

Test(cli_lineage, show_sends_the_query_and_prints_the_answer)
{
	fake_collector f = {.json = show_doc};
	fake_collector_start(&f);
	co_cli cli = plain_cli();
	cli.collector = f.url;
	capture c;
	char *argv2[] = {"lineage",
	                 "show",
	                 "run:0190F5A4-7C1E-7B2A-9D4E-3F6A8B2C1D0E",
	                 "--upstream",
	                 "--depth",
	                 "3",
	                 "--at=2026-11-23T10:00:00Z",
	                 "--format",
	                 "dot",
	                 NULL};
	int code = run_cmd(co_cli_lineage, &cli, &c, argv2);
	fake_collector_stop(&f);
	cr_assert_eq(code, CLI_OK, "%s", c.err_text);
	cr_assert_eq(f.query_case, THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW);
	cr_assert_str_eq(f.node_id, "run:0190f5a4-7c1e-7b2a-9d4e-3f6a8b2c1d0e");
	cr_assert_eq(f.direction, THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_UPSTREAM);
	cr_assert_eq(f.depth, 3);
	uint64_t at;
	cr_assert_eq(tl_parse_time("2026-11-23T10:00:00Z", 0, &at), 0);
	cr_assert_eq(f.at, at);
	cr_assert_eq(strncmp(c.out_text, "digraph lineage {", 17), 0, "%s", c.out_text);
	cap_free(&c);
}

Test(cli_lineage, explain_not_found_exits_1_with_the_collectors_message)
{
	fake_collector f = {.code = TL_ENOTFOUND, .error = "prediction nope not found"};
	fake_collector_start(&f);
	co_cli cli = plain_cli();
	cli.collector = f.url;
	capture c;
	char *argv[] = {"lineage", "explain", "prediction:nope", NULL};
	int code = run_cmd(co_cli_lineage, &cli, &c, argv);
	fake_collector_stop(&f);
	cr_assert_eq(code, CLI_ERR);
	cr_assert_eq(f.query_case, THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN);
	cr_assert_str_eq(f.prediction, "nope");
	cr_assert_not_null(strstr(c.err_text, "prediction nope not found"), "%s", c.err_text);
	cr_assert_str_eq(c.out_text, "");
	cap_free(&c);
}

Test(cli_lineage, explain_prints_the_answer_and_a_broken_answer_exits_1)
{
	fake_collector f = {.json = explain_doc};
	fake_collector_start(&f);
	co_cli cli = plain_cli();
	cli.collector = f.url;
	capture c;
	char *argv[] = {"lineage", "explain", "prediction:pred-7f3a91", NULL};
	int code = run_cmd(co_cli_lineage, &cli, &c, argv);
	fake_collector_stop(&f);
	cr_assert_eq(code, CLI_OK, "%s", c.err_text);
	cr_assert_str_eq(f.prediction, "pred-7f3a91");
	cr_assert_not_null(strstr(c.out_text, "FAILED: " FEAT_ERROR_TEXT), "%s", c.out_text);
	cap_free(&c);

	fake_collector g = {.json = "{\"prediction\": oops"};
	fake_collector_start(&g);
	cli.collector = g.url;
	code = run_cmd(co_cli_lineage, &cli, &c, argv);
	fake_collector_stop(&g);
	cr_assert_eq(code, CLI_ERR);
	cr_assert_not_null(strstr(c.err_text, "not JSON"), "%s", c.err_text);
	cap_free(&c);
}

/* ---- emit lineage: the event ---- */

static bool uuid_shape(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !(isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

Test(cli_lineage, uuid4_is_random_version_4)
{
	char a[37], b[37];
	cr_assert_eq(co_cli_uuid4(a), 0);
	cr_assert_eq(co_cli_uuid4(b), 0);
	cr_assert(uuid_shape(a), "%s", a);
	cr_assert_eq(a[14], '4', "%s", a);
	cr_assert(strchr("89ab", a[19]) != NULL, "%s", a);
	cr_assert_str_neq(a, b);
}

Test(cli_lineage, emit_builds_an_openlineage_2_run_event)
{
	const char *ins[] = {"dataset:postgres://db:5432:public.users", "s3://raw-bucket:events/2026-11-22#etag-9f1"};
	const char *outs[] = {"warehouse:features.users#v42", "dataset:model://registry:churn#7"};
	co_cli_emit_opts o = {.job = "airflow://prod:etl.build_features",
	                      .run_id = "0190F5A0-1111-7222-8333-444455556666",
	                      .event = "fail",
	                      .inputs = ins,
	                      .ninputs = 2,
	                      .outputs = outs,
	                      .noutputs = 2,
	                      .error = "exit status 2: column \"signup_ts\" does not exist"};
	uint64_t now = UINT64_C(1795428902481000000); /* 2026-11-23T10:15:02.481Z */
	char *s = NULL;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_cli_emit_build(&o, now, &s, &err), 0, "%s", err.msg);
	json_error_t je;
	json_t *ev = json_loads(s, 0, &je);
	cr_assert_not_null(ev, "%s: %s", je.text, s);
	cr_assert_str_eq(json_string_value(json_object_get(ev, "schemaURL")),
	                 "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent");
	cr_assert_str_eq(json_string_value(json_object_get(ev, "eventType")), "FAIL");
	cr_assert_str_eq(json_string_value(json_object_get(ev, "producer")), CO_CLI_PRODUCER);
	uint64_t t;
	const char *et = json_string_value(json_object_get(ev, "eventTime"));
	cr_assert_not_null(et);
	cr_assert_eq(tl_parse_time(et, 0, &t), 0, "%s", et);
	cr_assert_eq(t / 1000, now / 1000);
	cr_assert_eq(et[strlen(et) - 1], 'Z');
	const char *rid = json_string_value(json_object_get(json_object_get(ev, "run"), "runId"));
	cr_assert(uuid_shape(rid), "%s", rid);
	cr_assert_str_eq(rid, "0190f5a0-1111-7222-8333-444455556666");
	json_t *job = json_object_get(ev, "job");
	cr_assert_str_eq(json_string_value(json_object_get(job, "namespace")), "airflow://prod");
	cr_assert_str_eq(json_string_value(json_object_get(job, "name")), "etl.build_features");
	json_t *em = json_object_get(json_object_get(json_object_get(ev, "run"), "facets"), "errorMessage");
	cr_assert_str_eq(json_string_value(json_object_get(em, "message")), o.error);
	cr_assert_str_eq(json_string_value(json_object_get(em, "programmingLanguage")), "shell");
	cr_assert_not_null(json_string_value(json_object_get(em, "_producer")));
	cr_assert_not_null(strstr(json_string_value(json_object_get(em, "_schemaURL")), "ErrorMessageRunFacet.json"));
	json_t *in = json_object_get(ev, "inputs"), *out = json_object_get(ev, "outputs");
	cr_assert_eq(json_array_size(in), 2);
	cr_assert_eq(json_array_size(out), 2);
	static const char *const want[][3] = {{"postgres://db:5432", "public.users", NULL},
	                                      {"s3://raw-bucket", "events/2026-11-22", "etag-9f1"},
	                                      {"warehouse", "features.users", "v42"},
	                                      {"model://registry", "churn", "7"}};
	for (size_t i = 0; i < 4; i++) {
		json_t *d = json_array_get(i < 2 ? in : out, i % 2);
		cr_assert_str_eq(json_string_value(json_object_get(d, "namespace")), want[i][0]);
		cr_assert_str_eq(json_string_value(json_object_get(d, "name")), want[i][1]);
		json_t *v = json_object_get(json_object_get(d, "facets"), "version");
		if (want[i][2] == NULL) {
			cr_assert_null(v);
		} else {
			cr_assert_str_eq(json_string_value(json_object_get(v, "datasetVersion")), want[i][2]);
			cr_assert_not_null(strstr(json_string_value(json_object_get(v, "_schemaURL")),
			                          "DatasetVersionDatasetFacet.json"));
		}
	}
	json_decref(ev);
	free(s);

	/* No error, no datasets: the arrays are there and empty, and no errorMessage facet. */
	co_cli_emit_opts o2 = {.job = "etl:load", .run_id = "0190f5a0-1111-7222-8333-444455556666", .event = "START"};
	cr_assert_eq(co_cli_emit_build(&o2, now, &s, &err), 0);
	ev = json_loads(s, 0, NULL);
	cr_assert_eq(json_array_size(json_object_get(ev, "inputs")), 0);
	cr_assert(json_is_array(json_object_get(ev, "outputs")));
	cr_assert_null(json_object_get(json_object_get(json_object_get(ev, "run"), "facets"), "errorMessage"));
	json_decref(ev);
	free(s);
}

Test(cli_lineage, emit_build_names_the_bad_flag)
{
	const char *bad_ds[] = {"nonamespace"};
	const struct {
		co_cli_emit_opts o;
		const char *says;
	} cases[] = {
	        {{.job = "etl:load", .run_id = "0190f5a0-1111-7222-8333-444455556666", .event = "DONE"}, "--event"},
	        {{.job = "load", .run_id = "0190f5a0-1111-7222-8333-444455556666", .event = "START"}, "--job"},
	        {{.job = "etl:", .run_id = "0190f5a0-1111-7222-8333-444455556666", .event = "START"}, "--job"},
	        {{.job = "etl:load", .run_id = "42", .event = "START"}, "--run-id"},
	        {{.job = "etl:load", .run_id = NULL, .event = "START"}, "--run-id"},
	        {{.job = "etl:load",
	          .run_id = "0190f5a0-1111-7222-8333-444455556666",
	          .event = "START",
	          .inputs = bad_ds,
	          .ninputs = 1},
	         "--input"},
	        {{.job = "etl:load",
	          .run_id = "0190f5a0-1111-7222-8333-444455556666",
	          .event = "START",
	          .outputs = bad_ds,
	          .noutputs = 1},
	         "--output"},
	        {{.job = "etl:load",
	          .run_id = "0190f5a0-1111-7222-8333-444455556666",
	          .event = "FAIL",
	          .error = "bad \xff utf-8"},
	         "--error"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = (char *)1;
		tl_errmsg err = {{0}};
		cr_assert_eq(co_cli_emit_build(&cases[i].o, 1, &s, &err), TL_EINVALID, "case %zu", i);
		cr_assert_null(s);
		cr_assert_not_null(strstr(err.msg, cases[i].says), "case %zu: %s", i, err.msg);
	}
}

/* ---- emit lineage against a tiny HTTP server ---- */

enum { ANSWER_200, ANSWER_400, ANSWER_CLOSE, ANSWER_SILENT };

typedef struct http_srv {
	int lfd, port, mode;
	pthread_t th;
	/* what it received */
	char url[256];
	char ctype[128];
	char *body;
	size_t body_len;
	bool complete;
	/* parser state */
	bool in_ctype;
} http_srv;

static int srv_on_url(http_parser *p, const char *at, size_t n)
{
	http_srv *s = p->data;
	size_t have = strlen(s->url);
	snprintf(s->url + have, sizeof(s->url) - have, "%.*s", (int)n, at);
	return 0;
}

static int srv_on_field(http_parser *p, const char *at, size_t n)
{
	http_srv *s = p->data;
	s->in_ctype = n == 12 && strncasecmp(at, "content-type", 12) == 0;
	return 0;
}

static int srv_on_value(http_parser *p, const char *at, size_t n)
{
	http_srv *s = p->data;
	if (s->in_ctype)
		snprintf(s->ctype, sizeof(s->ctype), "%.*s", (int)n, at);
	return 0;
}

static int srv_on_body(http_parser *p, const char *at, size_t n)
{
	http_srv *s = p->data;
	char *b = realloc(s->body, s->body_len + n + 1);
	if (b == NULL)
		return -1;
	memcpy(b + s->body_len, at, n);
	s->body_len += n;
	b[s->body_len] = '\0';
	s->body = b;
	return 0;
}

static int srv_on_done(http_parser *p)
{
	((http_srv *)p->data)->complete = true;
	return 0;
}

static void *http_srv_main(void *arg)
{
	http_srv *s = arg;
	struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
	if (poll(&pfd, 1, 10000) != 1)
		return NULL;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	if (s->mode == ANSWER_CLOSE) {
		close(fd);
		return NULL;
	}
	http_parser p;
	http_parser_settings st;
	http_parser_init(&p, HTTP_REQUEST);
	http_parser_settings_init(&st);
	st.on_url = srv_on_url;
	st.on_header_field = srv_on_field;
	st.on_header_value = srv_on_value;
	st.on_body = srv_on_body;
	st.on_message_complete = srv_on_done;
	p.data = s;
	char buf[4096];
	while (!s->complete) {
		struct pollfd cp = {.fd = fd, .events = POLLIN};
		if (poll(&cp, 1, 10000) != 1)
			break;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (http_parser_execute(&p, &st, buf, (size_t)n) != (size_t)n)
			break;
	}
	if (s->mode == ANSWER_SILENT) {
		struct pollfd cp = {.fd = fd, .events = POLLIN};
		poll(&cp, 1, 5000); /* until the client gives up and closes */
		close(fd);
		return NULL;
	}
	const char *answer =
	        s->mode == ANSWER_200
	                ? "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	                : "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 46\r\n\r\n"
	                  "{\"code\":3,\"message\":\"job.name: missing field\"}";
	if (write(fd, answer, strlen(answer)) < 0)
		cr_log_error("write: %s", strerror(errno));
	close(fd);
	return NULL;
}

static void http_srv_start(http_srv *s, int mode)
{
	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_assert(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(listen(s->lfd, 4) == 0);
	cr_assert(getsockname(s->lfd, (struct sockaddr *)&a, &al) == 0);
	s->port = ntohs(a.sin_port);
	cr_assert_eq(pthread_create(&s->th, NULL, http_srv_main, s), 0);
}

static void http_srv_stop(http_srv *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
}

static void http_srv_free(http_srv *s)
{
	free(s->body);
}

Test(cli_lineage, emit_posts_the_event_and_exits_0_on_200)
{
	http_srv s;
	http_srv_start(&s, ANSWER_200);
	char agent[64];
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d/", s.port);
	co_cli cli = plain_cli();
	capture c;
	char *argv[] = {"emit",     "lineage",
	                "--job",    "etl:build_features",
	                "--run-id", "0190f5a0-1111-7222-8333-444455556666",
	                "--event",  "COMPLETE",
	                "--input",  "dataset:s3://raw-bucket:events",
	                "--output", "warehouse:features.users#v42",
	                "--agent",  agent,
	                NULL};
	int code = run_cmd(co_cli_emit, &cli, &c, argv);
	http_srv_stop(&s);
	cr_assert_eq(code, CLI_OK, "%s", c.err_text);
	cr_assert_str_eq(c.out_text, "", "a given run id is not printed again");
	cr_assert(s.complete);
	cr_assert_str_eq(s.url, "/api/v1/lineage");
	cr_assert_str_eq(s.ctype, "application/json");
	json_t *ev = json_loads(s.body, 0, NULL);
	cr_assert_not_null(ev, "%s", s.body);
	cr_assert_str_eq(json_string_value(json_object_get(ev, "eventType")), "COMPLETE");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "run"), "runId")),
	                 "0190f5a0-1111-7222-8333-444455556666");
	cr_assert_str_eq(
	        json_string_value(json_object_get(json_array_get(json_object_get(ev, "inputs"), 0), "namespace")),
	        "s3://raw-bucket");
	json_decref(ev);
	http_srv_free(&s);
	cap_free(&c);
}

Test(cli_lineage, emit_start_without_run_id_prints_the_new_one)
{
	http_srv s;
	http_srv_start(&s, ANSWER_200);
	char agent[64];
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d/prefix", s.port);
	co_cli cli = plain_cli();
	capture c;
	char *argv[] = {"emit", "lineage", "--job=etl:load", "--event", "start", "--agent", agent, NULL};
	int code = run_cmd(co_cli_emit, &cli, &c, argv);
	http_srv_stop(&s);
	cr_assert_eq(code, CLI_OK, "%s", c.err_text);
	cr_assert_str_eq(s.url, "/prefix/api/v1/lineage");
	size_t n = strlen(c.out_text);
	cr_assert(n == 37 && c.out_text[36] == '\n', "'%s'", c.out_text);
	c.out_text[36] = '\0';
	cr_assert(uuid_shape(c.out_text), "%s", c.out_text);
	json_t *ev = json_loads(s.body, 0, NULL);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "run"), "runId")), c.out_text);
	cr_assert_str_eq(json_string_value(json_object_get(ev, "eventType")), "START");
	json_decref(ev);
	http_srv_free(&s);
	cap_free(&c);
}

Test(cli_lineage, emit_exits_1_with_the_agents_message_on_400)
{
	http_srv s;
	http_srv_start(&s, ANSWER_400);
	char agent[64];
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d", s.port);
	co_cli cli = plain_cli();
	capture c;
	char *argv[] = {"emit",    "lineage", "--job",   "etl:load", "--run-id", "0190f5a0-1111-7222-8333-444455556666",
	                "--event", "FAIL",    "--error", "boom",     "--agent",  agent,
	                NULL};
	int code = run_cmd(co_cli_emit, &cli, &c, argv);
	http_srv_stop(&s);
	cr_assert_eq(code, CLI_ERR, "%s", c.err_text);
	cr_assert_not_null(strstr(c.err_text, "HTTP 400"), "%s", c.err_text);
	cr_assert_not_null(strstr(c.err_text, "job.name: missing field"), "%s", c.err_text);
	http_srv_free(&s);
	cap_free(&c);
}

Test(cli_lineage, emit_exits_3_when_the_agent_is_unreachable)
{
	co_cli cli = plain_cli();
	cli.timeout_ms = 300;
	capture c;
	char agent[64];
	/* Nothing listening. */
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d", closed_port());
	char *argv[] = {"emit", "lineage", "--job", "etl:load", "--event", "START", "--agent", agent, NULL};
	cr_assert_eq(run_cmd(co_cli_emit, &cli, &c, argv), CLI_UNREACHABLE, "%s", c.err_text);
	cr_assert_not_null(strstr(c.err_text, "unreachable"), "%s", c.err_text);
	cr_assert_str_eq(c.out_text, "", "no run id printed when the event was not delivered");
	cap_free(&c);
	/* Accepts, then closes without a word. */
	http_srv s;
	http_srv_start(&s, ANSWER_CLOSE);
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d", s.port);
	cr_assert_eq(run_cmd(co_cli_emit, &cli, &c, argv), CLI_UNREACHABLE, "%s", c.err_text);
	http_srv_stop(&s);
	http_srv_free(&s);
	cap_free(&c);
	/* Reads the request and never answers: the timeout ends it. */
	http_srv_start(&s, ANSWER_SILENT);
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d", s.port);
	cr_assert_eq(run_cmd(co_cli_emit, &cli, &c, argv), CLI_UNREACHABLE, "%s", c.err_text);
	cr_assert_not_null(strstr(c.err_text, "no answer"), "%s", c.err_text);
	http_srv_stop(&s);
	http_srv_free(&s);
	cap_free(&c);
}

Test(cli_lineage, emit_usage_errors_exit_2)
{
	static const struct {
		const char *argv[12];
		const char *says;
	} cases[] = {
	        {{"emit", NULL}, "expected a subcommand"},
	        {{"emit", "spawn", NULL}, "expected a subcommand"},
	        {{"emit", "lineage", "--event", "START", NULL}, "missing --job"},
	        {{"emit", "lineage", "--job", "etl:load", NULL}, "missing --event"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", "COMPLETE", NULL}, "--run-id is required"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", "FINISHED", "--run-id",
	          "0190f5a0-1111-7222-8333-444455556666", NULL},
	         "--event"},
	        {{"emit", "lineage", "--job", "load", "--event", "START", NULL}, "--job"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", "START", "--input", "x", NULL}, "--input"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", "START", "--agent", "https://127.0.0.1:4318",
	          NULL},
	         "only http://"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", "START", "--agent", "127.0.0.1:4318", NULL},
	         "--agent"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", NULL}, "needs a value"},
	        {{"emit", "lineage", "--job", "etl:load", "--event", "START", "--verbose", NULL}, "unknown option"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		co_cli cli = plain_cli();
		capture c;
		int code = run_cmd(co_cli_emit, &cli, &c, (char **)cases[i].argv);
		cr_assert_eq(code, CLI_USAGE, "case %zu: exit %d, stderr: %s", i, code, c.err_text);
		cr_assert_not_null(strstr(c.err_text, cases[i].says), "case %zu: stderr lacks '%s': %s", i,
		                   cases[i].says, c.err_text);
		cr_assert_str_eq(c.out_text, "");
		cap_free(&c);
	}
}
