/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI side of lineage. `threadline lineage show` and `lineage explain`
 * ask the collector (QueryRequest.lineage_show / lineage_explain) and render
 * the JSON document it answers with (shapes in README.md, "Lineage") as
 * text, JSON, Graphviz DOT or a Mermaid flowchart. `threadline emit lineage`
 * builds an OpenLineage 2.x RunEvent for a shell step and POSTs it to the
 * local agent with a small blocking HTTP/1.1 client (http-parser reads the
 * answer).
 */
#include "co_cli.h"
#include "co_cli_emit_span.h"

#include "co_lineage.h"
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_ol.h"
#include "tl_time.h"

#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_MAX (64u << 10) /* how much of the agent's answer is kept */
#define STR2(x) #x
#define STR(x) STR2(x)

#define SCHEMA_RUN_EVENT "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
#define SCHEMA_ERROR_FACET                                                                                             \
	"https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
#define SCHEMA_VERSION_FACET                                                                                           \
	"https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"

/* UTF-8 marks used in text output. */
#define MARK_FAIL "\xe2\x9c\x97" /* ✗ */
#define MARK_OK "\xe2\x9c\x93"   /* ✓ */
#define MARK_RUN "\xe2\x80\xa6"  /* … */
#define MARK_WARN "\xe2\x9a\xa0" /* ⚠ */
#define ARROW_OUT "\xe2\x86\x92" /* → */
#define ARROW_IN "\xe2\x86\x90"  /* ← */
#define SEP " \xc2\xb7 "         /* · */

/* ---- small helpers ---- */

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool jint(const json_t *o, const char *key, json_int_t *out)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return false;
	*out = json_integer_value(v);
	return true;
}

static bool streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static bool is_failed_state(const char *s)
{
	return streq(s, "FAIL") || streq(s, "ABORT");
}

/* A state with its mark: "✗ FAIL", "✓ COMPLETE", "… RUNNING". */
static void put_state(FILE *out, const co_cli *cli, const char *state)
{
	if (state == NULL) {
		fputs("state unknown", out);
		return;
	}
	if (is_failed_state(state))
		fprintf(out, "%s" MARK_FAIL " %s%s", cli->color ? "\x1b[31m" : "", state, cli->color ? "\x1b[0m" : "");
	else if (strcmp(state, "COMPLETE") == 0)
		fputs(MARK_OK " COMPLETE", out);
	else if (strcmp(state, "RUNNING") == 0 || strcmp(state, "START") == 0)
		fprintf(out, MARK_RUN " %s", state);
	else
		fputs(state, out);
}

/* "2026-11-23 10:00:00" from an RFC 3339 string; the string itself when it does not parse. */
static const char *short_time(const char *rfc, char *buf, size_t len)
{
	uint64_t ns;
	if (rfc == NULL)
		return "?";
	if (strchr(rfc, 'T') == NULL || tl_parse_time(rfc, 0, &ns) != 0)
		return rfc;
	time_t secs = (time_t)(ns / TL_NS_PER_S);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec);
	return buf;
}

/* Writes "started S · ended E · 1.2s · trace T" for a run object (null fields are left out). */
static void put_run_times(FILE *out, const json_t *r)
{
	char b1[40], b2[40], dur[32];
	const char *s = jstr(r, "started_at"), *e = jstr(r, "ended_at"), *t = jstr(r, "trace_id"), *sep = "";
	json_int_t ms;
	if (s != NULL) {
		fprintf(out, "started %s", short_time(s, b1, sizeof(b1)));
		sep = SEP;
	}
	if (e != NULL) {
		fprintf(out, "%sended %s", sep, short_time(e, b2, sizeof(b2)));
		sep = SEP;
	}
	if (jint(r, "duration_ms", &ms) && ms >= 0) {
		uint64_t ns = (uint64_t)ms > UINT64_MAX / TL_NS_PER_MS ? UINT64_MAX : (uint64_t)ms * TL_NS_PER_MS;
		tl_format_duration(ns, dur, sizeof(dur));
		fprintf(out, "%s%s", sep, dur);
		sep = SEP;
	}
	if (t != NULL) {
		fprintf(out, "%strace %s", sep, t);
		sep = SEP;
	}
	if (sep[0] == '\0')
		fputs("no times recorded", out);
}

/* Copies s[0..n) to out, each control character (C0, DEL, or C1 in UTF-8) as one space. Returns the length. */
static size_t clean_copy(const char *s, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f) {
			out[k++] = ' ';
			i++;
		} else {
			out[k++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		}
	}
	out[k] = '\0';
	return k;
}

/*
 * A deep copy of v whose strings and keys hold no control characters, so
 * nothing stored in the graph can move the cursor or recolour the terminal
 * when it is printed. Scalars are shared. Returns a new reference, or NULL
 * when out of memory.
 */
static json_t *scrub(json_t *v)
{
	char small[256], *buf = small;
	json_t *r = NULL;
	if (json_is_string(v)) {
		size_t n = json_string_length(v);
		if (n >= sizeof(small) && (buf = malloc(n + 1)) == NULL)
			return NULL;
		r = json_stringn_nocheck(buf, clean_copy(json_string_value(v), n, buf));
	} else if (json_is_array(v)) {
		r = json_array();
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
		{
			if (r != NULL && json_array_append_new(r, scrub(e)) != 0) {
				json_decref(r);
				r = NULL;
			}
		}
	} else if (json_is_object(v)) {
		r = json_object();
		const char *k;
		json_t *e;
		json_object_foreach(v, k, e)
		{
			size_t n = strlen(k);
			char *kb = n < sizeof(small) ? small : malloc(n + 1);
			json_t *c = r != NULL && kb != NULL ? scrub(e) : NULL;
			if (c != NULL)
				clean_copy(k, n, kb);
			if (r != NULL && (c == NULL || json_object_set_new_nocheck(r, kb, c) != 0)) {
				json_decref(r);
				r = NULL;
			}
			if (kb != small)
				free(kb);
		}
	} else {
		r = json_incref(v);
	}
	if (buf != small)
		free(buf);
	return r;
}

/* The document as received, on one line like `trace show --json`: re-serialized only when it spans lines. */
static int print_doc_json(const json_t *doc, const char *text, size_t len, FILE *out)
{
	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)text[0])) {
		text++;
		len--;
	}
	if (memchr(text, '\n', len) == NULL) {
		fwrite(text, 1, len, out);
	} else if (json_dumpf(doc, out, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
		return -EIO;
	}
	fputc('\n', out);
	return ferror(out) ? -EIO : 0;
}

/* ---- node ids ---- */

int co_cli_lineage_node_parse(const char *id, char *out, size_t cap, tl_errmsg *err)
{
	size_t len = strlen(id);
	for (size_t i = 0; i < len && i <= CO_LINEAGE_ID_MAX; i++)
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			return tl_errf(err, TL_EINVALID, "control character at byte %zu", i);
	co_lineage_id p;
	int rc = co_lineage_id_parse(id, len, &p, err);
	if (rc != 0)
		return rc;
	/* Written back by the same rules: the normal form (a run's UUID in lowercase). */
	rc = co_lineage_id_format(&p, out, cap);
	if (rc < 0)
		return tl_errf(err, rc, "the id is longer than %zu bytes", cap > 0 ? cap - 1 : 0);
	return 0;
}

/* ---- the lineage show document as a graph ---- */

typedef struct lnode {
	const char *id;
	const char *type;
	json_int_t distance; /* -1: named only by an edge */
	const json_t *j;     /* the node's object; NULL when named only by an edge */
	bool failed;         /* a run that ended FAIL or ABORT */
	bool root;
} lnode;

typedef struct ledge {
	size_t from, to;
	const char *type;
} ledge;

typedef struct lgraph {
	json_t *doc;
	const char *root;
	lnode *n;
	size_t nn;
	ledge *e;
	size_t ne;
	size_t *order; /* node indexes by distance, document order within one distance */
	size_t *held;  /* edge indexes grouped by the node they are listed under in text (CSR with held_at) */
	size_t *held_at;
} lgraph;

typedef struct idref {
	const char *id;
	size_t seq;
} idref;

static int cmp_idref(const void *x, const void *y)
{
	const idref *a = x, *b = y;
	int c = strcmp(a->id, b->id);
	if (c != 0)
		return c;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

typedef struct distref {
	json_int_t d;
	size_t idx;
} distref;

static int cmp_distref(const void *x, const void *y)
{
	const distref *a = x, *b = y;
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static const char *const node_types[] = {"dataset", "job", "run", "model", "prediction", "deployment"};

/* The type named by an id's prefix, as a static string; "node" when unknown. */
static const char *type_of_id(const char *id)
{
	const char *c = strchr(id, ':');
	size_t n = c != NULL ? (size_t)(c - id) : 0;
	for (size_t i = 0; i < sizeof(node_types) / sizeof(node_types[0]); i++)
		if (strlen(node_types[i]) == n && memcmp(node_types[i], id, n) == 0)
			return node_types[i];
	return "node";
}

static void lgraph_free(lgraph *g)
{
	json_decref(g->doc);
	free(g->n);
	free(g->e);
	free(g->order);
	free(g->held);
	free(g->held_at);
	memset(g, 0, sizeof(*g));
}

/* Distance for ordering: nodes named only by an edge sort after every real distance. */
static json_int_t sort_dist(const lnode *n)
{
	return n->distance < 0 ? (json_int_t)LLONG_MAX : n->distance;
}

/*
 * Builds g from a lineage show document (takes ownership of doc on success
 * and on failure). Node ids named by edges but absent from "nodes" become
 * nodes without an object. Returns 0, TL_EPROTO (err says why) or -ENOMEM.
 */
static int lgraph_build(json_t *doc, lgraph *g, tl_errmsg *err)
{
	memset(g, 0, sizeof(*g));
	g->doc = doc;
	g->root = jstr(doc, "root");
	const json_t *nodes = json_object_get(doc, "nodes"), *edges = json_object_get(doc, "edges");
	if (g->root == NULL || !json_is_array(nodes) ||
	    (edges != NULL && !json_is_null(edges) && !json_is_array(edges))) {
		lgraph_free(g);
		return tl_errf(err, TL_EPROTO, "not a lineage graph: needs \"root\", \"nodes\" and \"edges\"");
	}
	size_t nn = json_array_size(nodes), ne = json_array_size(edges);
	size_t nref = nn + 2 * ne;
	idref *refs = malloc((nref ? nref : 1) * sizeof(*refs));
	size_t *canon = malloc((nref ? nref : 1) * sizeof(*canon));
	size_t *node_of = malloc((nref ? nref : 1) * sizeof(*node_of));
	g->n = calloc(nref ? nref : 1, sizeof(*g->n));
	g->e = calloc(ne ? ne : 1, sizeof(*g->e));
	if (refs == NULL || canon == NULL || node_of == NULL || g->n == NULL || g->e == NULL)
		goto nomem;
	/* Every id the document names, nodes first, then edge ends; seq is the order of appearance. */
	size_t r = 0;
	for (size_t i = 0; i < nn; i++) {
		const char *id = jstr(json_array_get(nodes, i), "id");
		refs[r].id = id != NULL ? id : "";
		refs[r].seq = r;
		r++;
	}
	for (size_t i = 0; i < ne; i++) {
		const json_t *e = json_array_get(edges, i);
		const char *f = jstr(e, "from"), *t = jstr(e, "to");
		refs[r].id = f != NULL ? f : "";
		refs[r].seq = r;
		r++;
		refs[r].id = t != NULL ? t : "";
		refs[r].seq = r;
		r++;
	}
	/* Each id's first appearance names its node. */
	qsort(refs, nref, sizeof(*refs), cmp_idref);
	for (size_t i = 0; i < nref; i++)
		canon[refs[i].seq] =
		        i > 0 && strcmp(refs[i].id, refs[i - 1].id) == 0 ? canon[refs[i - 1].seq] : refs[i].seq;
	/* refs is sorted now; the ids by seq come from the document again. */
	for (size_t s = 0; s < nref; s++) {
		const char *id;
		const json_t *obj = NULL;
		if (s < nn) {
			obj = json_array_get(nodes, s);
			id = jstr(obj, "id");
		} else {
			const json_t *e = json_array_get(edges, (s - nn) / 2);
			id = jstr(e, (s - nn) % 2 == 0 ? "from" : "to");
		}
		if (canon[s] != s) {
			node_of[s] = node_of[canon[s]];
			continue;
		}
		node_of[s] = SIZE_MAX;
		if (id == NULL || id[0] == '\0')
			continue; /* a node or an edge without an id: nothing to draw */
		lnode *n = &g->n[g->nn];
		node_of[s] = g->nn++;
		n->id = id;
		n->j = obj;
		n->distance = -1;
		n->type = type_of_id(id);
		if (obj != NULL) {
			const char *t = jstr(obj, "type");
			if (t != NULL && t[0] != '\0')
				n->type = t;
			if (!jint(obj, "distance", &n->distance) || n->distance < 0)
				n->distance = -1;
			n->failed = strcmp(n->type, "run") == 0 && is_failed_state(jstr(obj, "state"));
		}
		n->root = strcmp(id, g->root) == 0;
		if (n->root && n->distance < 0)
			n->distance = 0;
	}
	for (size_t i = 0; i < ne; i++) {
		size_t f = node_of[nn + 2 * i], t = node_of[nn + 2 * i + 1];
		if (f == SIZE_MAX || t == SIZE_MAX)
			continue;
		const char *type = jstr(json_array_get(edges, i), "type");
		g->e[g->ne++] = (ledge){.from = f, .to = t, .type = type != NULL && type[0] ? type : "edge"};
	}
	free(refs);
	free(canon);
	free(node_of);
	refs = NULL;
	canon = node_of = NULL;

	/* Nodes by distance; each edge is listed (in text) under its farther end, the "to" end on a tie. */
	distref *dr = malloc((g->nn ? g->nn : 1) * sizeof(*dr));
	g->order = malloc((g->nn ? g->nn : 1) * sizeof(*g->order));
	g->held = malloc((g->ne ? g->ne : 1) * sizeof(*g->held));
	g->held_at = calloc(g->nn + 1, sizeof(*g->held_at));
	if (dr == NULL || g->order == NULL || g->held == NULL || g->held_at == NULL) {
		free(dr);
		goto nomem;
	}
	for (size_t i = 0; i < g->nn; i++)
		dr[i] = (distref){.d = sort_dist(&g->n[i]), .idx = i};
	qsort(dr, g->nn, sizeof(*dr), cmp_distref);
	for (size_t i = 0; i < g->nn; i++)
		g->order[i] = dr[i].idx;
	free(dr);
	for (size_t i = 0; i < g->ne; i++) {
		const ledge *e = &g->e[i];
		size_t h = sort_dist(&g->n[e->to]) >= sort_dist(&g->n[e->from]) ? e->to : e->from;
		g->held_at[h + 1]++;
	}
	for (size_t i = 0; i < g->nn; i++)
		g->held_at[i + 1] += g->held_at[i];
	size_t *fill = calloc(g->nn ? g->nn : 1, sizeof(*fill));
	if (fill == NULL)
		goto nomem;
	for (size_t i = 0; i < g->ne; i++) {
		const ledge *e = &g->e[i];
		size_t h = sort_dist(&g->n[e->to]) >= sort_dist(&g->n[e->from]) ? e->to : e->from;
		g->held[g->held_at[h] + fill[h]++] = i;
	}
	free(fill);
	return 0;
nomem:
	free(refs);
	free(canon);
	free(node_of);
	lgraph_free(g);
	return -ENOMEM;
}

/* ---- text ---- */

static void text_node(FILE *out, const co_cli *cli, const lgraph *g, size_t i)
{
	const lnode *n = &g->n[i];
	const json_t *j = n->j;
	const char *bold = cli->color ? "\x1b[1m" : "", *reset = cli->color ? "\x1b[0m" : "",
	           *red = cli->color ? "\x1b[31m" : "";
	const char *ind = "      ";
	char tb[40];
	fprintf(out, "  %s%s%s  %s", n->root ? bold : "", n->id, n->root ? reset : "", n->type);
	if (j == NULL) {
		fputs("  (named by an edge; not in the answer)\n", out);
	} else if (strcmp(n->type, "run") == 0) {
		const char *job = jstr(j, "job_version"), *error = jstr(j, "error"), *parent = jstr(j, "parent");
		if (job == NULL)
			job = jstr(j, "job");
		fputs("  ", out);
		put_state(out, cli, jstr(j, "state"));
		if (job != NULL)
			fprintf(out, "  %s", job);
		fprintf(out, "\n%s", ind);
		put_run_times(out, j);
		fputc('\n', out);
		if (error != NULL)
			fprintf(out, "%s%serror: %s%s\n", ind, red, error, reset);
		if (parent != NULL)
			fprintf(out, "%sparent %s\n", ind, parent);
	} else if (strcmp(n->type, "dataset") == 0) {
		const char *v = jstr(j, "version");
		if (v != NULL)
			fprintf(out, "  version %s", v);
		fputc('\n', out);
		const json_t *facets = json_object_get(j, "facets");
		if (json_is_object(facets) && json_object_size(facets) > 0) {
			const char *k;
			const json_t *val;
			bool first = true;
			fprintf(out, "%sfacets: ", ind);
			json_object_foreach((json_t *)facets, k, val)
			{
				fprintf(out, "%s%s", first ? "" : ", ", k);
				first = false;
			}
			fputc('\n', out);
		}
	} else if (strcmp(n->type, "job") == 0) {
		const char *st = jstr(j, "latest_state"), *lr = jstr(j, "latest_run"), *v = jstr(j, "version");
		if (v != NULL)
			fprintf(out, "  version %s", v);
		if (st != NULL || lr != NULL) {
			fputs("  latest ", out);
			if (st != NULL)
				put_state(out, cli, st);
			if (lr != NULL)
				fprintf(out, "%s%s", st != NULL ? " " : "", lr);
		}
		fputc('\n', out);
	} else if (strcmp(n->type, "model") == 0) {
		const char *name = jstr(j, "name"), *ver = jstr(j, "version"), *dig = jstr(j, "digest"),
		           *ds = jstr(j, "dataset");
		if (name != NULL)
			fprintf(out, "  %s", name);
		if (ver != NULL)
			fprintf(out, " version %s", ver);
		fputc('\n', out);
		if (dig != NULL || ds != NULL)
			fprintf(out, "%s%s%s%s%s\n", ind, dig != NULL ? "digest " : "", dig != NULL ? dig : "",
			        dig != NULL && ds != NULL ? SEP : "", ds != NULL ? ds : "");
	} else if (strcmp(n->type, "prediction") == 0) {
		const char *t = jstr(j, "time"), *m = jstr(j, "model"), *tr = jstr(j, "trace_id"),
		           *dig = jstr(j, "input_digest");
		if (t != NULL)
			fprintf(out, "  %s", short_time(t, tb, sizeof(tb)));
		fputc('\n', out);
		if (m != NULL || tr != NULL || dig != NULL) {
			fputs(ind, out);
			const char *sep = "";
			if (m != NULL) {
				fprintf(out, "model %s", m);
				sep = SEP;
			}
			if (tr != NULL) {
				fprintf(out, "%strace %s", sep, tr);
				sep = SEP;
			}
			if (dig != NULL)
				fprintf(out, "%sinput %s", sep, dig);
			fputc('\n', out);
		}
	} else {
		fputc('\n', out);
	}
	for (size_t k = g->held_at[i]; k < g->held_at[i + 1]; k++) {
		const ledge *e = &g->e[g->held[k]];
		if (e->to == i)
			fprintf(out, "%s" ARROW_IN " %s (%s)\n", ind, g->n[e->from].id, e->type);
		else
			fprintf(out, "%s" ARROW_OUT " %s (%s)\n", ind, g->n[e->to].id, e->type);
	}
}

static int print_show_text(const co_cli *cli, const lgraph *g, FILE *out)
{
	const char *dim = cli->color ? "\x1b[2m" : "", *bold = cli->color ? "\x1b[1m" : "",
	           *reset = cli->color ? "\x1b[0m" : "";
	const char *dir = jstr(g->doc, "direction"), *at = jstr(g->doc, "at");
	json_int_t depth = 0;
	char tb[40];
	fprintf(out, "%sLineage of %s%s", bold, g->root, reset);
	if (dir != NULL)
		fprintf(out, "%s%s", SEP, dir);
	if (jint(g->doc, "depth", &depth))
		fprintf(out, "%sdepth %lld", SEP, (long long)depth);
	fprintf(out, "%s%s%s\n", SEP, at != NULL ? "as of " : "now", at != NULL ? short_time(at, tb, sizeof(tb)) : "");
	size_t failed = 0;
	for (size_t i = 0; i < g->nn; i++)
		failed += g->n[i].failed;
	fprintf(out, "%zu node%s, %zu edge%s", g->nn, g->nn == 1 ? "" : "s", g->ne, g->ne == 1 ? "" : "s");
	if (failed > 0)
		fprintf(out, ", %s%zu run%s failed or aborted (" MARK_FAIL ")%s", cli->color ? "\x1b[31m" : "", failed,
		        failed == 1 ? "" : "s", reset);
	fputc('\n', out);
	if (json_is_true(json_object_get(g->doc, "truncated")))
		fprintf(out,
		        MARK_WARN " truncated: the walk stopped at the collector's node cap; narrow it with --depth "
		                  "or a direction\n");
	json_int_t cur = -2;
	for (size_t o = 0; o < g->nn; o++) {
		size_t i = g->order[o];
		if (g->n[i].distance != cur) {
			cur = g->n[i].distance;
			if (cur < 0)
				fprintf(out, "\n%snamed by edges only%s\n", dim, reset);
			else
				fprintf(out, "\n%sdistance %lld%s\n", dim, (long long)cur, reset);
		}
		text_node(out, cli, g, i);
	}
	return ferror(out) ? -EIO : 0;
}

/* ---- Graphviz DOT ---- */

/* Inside a DOT quoted string only \" is an escape; a backslash is doubled so none can end the string, and
 * labels read \\ as one backslash. Control characters become spaces. */
static void dot_escape(FILE *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fputc('\\', out);
		fputc(c < 0x20 || c == 0x7f ? ' ' : c, out);
	}
}

static const char *dot_shape(const char *type)
{
	if (strcmp(type, "dataset") == 0)
		return "cylinder";
	if (strcmp(type, "job") == 0)
		return "component";
	if (strcmp(type, "run") == 0)
		return "box";
	if (strcmp(type, "model") == 0)
		return "box3d";
	if (strcmp(type, "prediction") == 0)
		return "note";
	if (strcmp(type, "deployment") == 0)
		return "house";
	return "ellipse";
}

/* The second label line of a node: its state, version, time... NULL when there is nothing to add. */
static const char *detail_of(const lnode *n, char *buf, size_t len)
{
	const json_t *j = n->j;
	if (j == NULL)
		return NULL;
	if (strcmp(n->type, "run") == 0) {
		const char *st = jstr(j, "state"), *job = jstr(j, "job");
		snprintf(buf, len, "%s%s%s%s", is_failed_state(st) ? MARK_FAIL " " : "", st != NULL ? st : "?",
		         job != NULL ? " " : "", job != NULL ? job : "");
		return buf;
	}
	if (strcmp(n->type, "dataset") == 0) {
		const char *v = jstr(j, "version");
		if (v == NULL)
			return NULL;
		snprintf(buf, len, "version %s", v);
		return buf;
	}
	if (strcmp(n->type, "job") == 0) {
		const char *st = jstr(j, "latest_state");
		if (st == NULL)
			return NULL;
		snprintf(buf, len, "latest %s", st);
		return buf;
	}
	if (strcmp(n->type, "model") == 0) {
		const char *d = jstr(j, "digest");
		if (d == NULL)
			return NULL;
		snprintf(buf, len, "%.19s", d); /* "sha256:" and 12 digits */
		return buf;
	}
	if (strcmp(n->type, "prediction") == 0) {
		const char *t = jstr(j, "time");
		return t != NULL ? short_time(t, buf, len) : NULL;
	}
	return NULL;
}

static int print_show_dot(const lgraph *g, FILE *out)
{
	char det[512];
	fputs("digraph lineage {\n"
	      "\trankdir=LR;\n"
	      "\tnode [fontname=\"Helvetica\", fontsize=10];\n"
	      "\tedge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\"];\n",
	      out);
	for (size_t o = 0; o < g->nn; o++) {
		const lnode *n = &g->n[g->order[o]];
		fputs("\t\"", out);
		dot_escape(out, n->id);
		fputs("\" [label=\"", out);
		dot_escape(out, n->id);
		const char *d = detail_of(n, det, sizeof(det));
		if (d != NULL) {
			fputs("\\n", out);
			dot_escape(out, d);
		}
		fprintf(out, "\", shape=%s", dot_shape(n->type));
		const char *styles[3];
		size_t ns = 0;
		if (strcmp(n->type, "run") == 0)
			styles[ns++] = "rounded";
		if (n->failed)
			styles[ns++] = "filled";
		if (n->root)
			styles[ns++] = "bold";
		if (ns > 0) {
			fputs(", style=\"", out);
			for (size_t k = 0; k < ns; k++)
				fprintf(out, "%s%s", k ? "," : "", styles[k]);
			fputc('"', out);
		}
		if (n->failed)
			fputs(", color=\"red\", fontcolor=\"red\", fillcolor=\"#fde0e0\"", out);
		if (n->root)
			fputs(", penwidth=2", out);
		fputs("];\n", out);
	}
	for (size_t i = 0; i < g->ne; i++) {
		const ledge *e = &g->e[i];
		fputs("\t\"", out);
		dot_escape(out, g->n[e->from].id);
		fputs("\" -> \"", out);
		dot_escape(out, g->n[e->to].id);
		fputs("\" [label=\"", out);
		dot_escape(out, e->type);
		fputc('"', out);
		if (strcmp(e->type, "parent") == 0)
			fputs(", style=dashed", out);
		fputs("];\n", out);
	}
	fputs("}\n", out);
	return ferror(out) ? -EIO : 0;
}

/* ---- Mermaid ---- */

/* Mermaid labels are quoted; quotes and the characters Mermaid or its HTML labels read specially become
 * entity codes (#quot;, #35;...). Control characters become spaces. */
static void mm_escape(FILE *out, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '"':
			fputs("#quot;", out);
			break;
		case '#':
			fputs("#35;", out);
			break;
		case '<':
			fputs("#lt;", out);
			break;
		case '>':
			fputs("#gt;", out);
			break;
		case '&':
			fputs("#amp;", out);
			break;
		case '`':
			fputs("#96;", out);
			break;
		case '\\':
			fputs("#92;", out);
			break;
		default:
			fputc(c < 0x20 || c == 0x7f ? ' ' : c, out);
		}
	}
}

static void mm_shape(const char *type, const char **open, const char **close)
{
	static const struct {
		const char *type, *open, *close;
	} shapes[] = {
	        {"dataset", "[(", ")]"}, {"job", "[[", "]]"},      {"run", "(", ")"},
	        {"model", "{{", "}}"},   {"prediction", ">", "]"}, {"deployment", "[/", "/]"},
	};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		if (strcmp(shapes[i].type, type) == 0) {
			*open = shapes[i].open;
			*close = shapes[i].close;
			return;
		}
	*open = "[";
	*close = "]";
}

static int print_show_mermaid(const lgraph *g, FILE *out)
{
	char det[512];
	fputs("flowchart LR\n", out);
	/* Mermaid ids are n0, n1... (node index); the label carries the real id. */
	for (size_t o = 0; o < g->nn; o++) {
		size_t i = g->order[o];
		const lnode *n = &g->n[i];
		const char *open, *close;
		mm_shape(n->type, &open, &close);
		fprintf(out, "\tn%zu%s\"", i, open);
		mm_escape(out, n->id);
		const char *d = detail_of(n, det, sizeof(det));
		if (d != NULL) {
			fputs("<br/>", out);
			mm_escape(out, d);
		}
		fprintf(out, "\"%s\n", close);
	}
	for (size_t i = 0; i < g->ne; i++) {
		const ledge *e = &g->e[i];
		char label[64];
		size_t k = 0;
		for (const char *p = e->type; *p && k + 1 < sizeof(label); p++)
			if (isalnum((unsigned char)*p) || *p == '_' || *p == '-')
				label[k++] = *p;
		label[k] = '\0';
		const char *arrow = strcmp(e->type, "parent") == 0 ? "-.->" : "-->";
		if (k > 0)
			fprintf(out, "\tn%zu %s|%s| n%zu\n", e->from, arrow, label, e->to);
		else
			fprintf(out, "\tn%zu %s n%zu\n", e->from, arrow, e->to);
	}
	fputs("\tclassDef root stroke-width:3px,font-weight:bold\n"
	      "\tclassDef failed fill:#fde0e0,stroke:#cc0000,color:#990000\n",
	      out);
	for (size_t i = 0; i < g->nn; i++) {
		if (g->n[i].root)
			fprintf(out, "\tclass n%zu root\n", i);
		if (g->n[i].failed)
			fprintf(out, "\tclass n%zu failed\n", i);
	}
	return ferror(out) ? -EIO : 0;
}

int co_cli_lineage_show_print(const co_cli *cli, const char *json, size_t len, co_cli_lformat fmt, FILE *out,
                              tl_errmsg *err)
{
	json_t *doc = co_cli_load_doc(json, len, err);
	if (doc == NULL)
		return TL_EPROTO;
	if (fmt == CO_CLI_LFORMAT_JSON) {
		int rc = print_doc_json(doc, json, len, out);
		json_decref(doc);
		return rc;
	}
	json_t *clean = scrub(doc);
	json_decref(doc);
	if (clean == NULL)
		return -ENOMEM;
	lgraph g;
	int rc = lgraph_build(clean, &g, err);
	if (rc != 0)
		return rc;
	switch (fmt) {
	case CO_CLI_LFORMAT_DOT:
		rc = print_show_dot(&g, out);
		break;
	case CO_CLI_LFORMAT_MERMAID:
		rc = print_show_mermaid(&g, out);
		break;
	default:
		rc = print_show_text(cli, &g, out);
		break;
	}
	lgraph_free(&g);
	return rc;
}

/* ---- lineage explain ---- */

/* Values shown inline: 15 significant digits, so 0.05 reads 0.05 and not 0.050000000000000003. */
#define KV_DUMP (JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* "k=v, k2=v2" for an object (strings unquoted, other values as compact JSON); a non-object as JSON. */
static void put_kv(FILE *out, const json_t *o)
{
	if (!json_is_object(o)) {
		json_dumpf(o, out, KV_DUMP);
		return;
	}
	const char *k;
	const json_t *v;
	bool first = true;
	json_object_foreach((json_t *)o, k, v)
	{
		fprintf(out, "%s%s=", first ? "" : ", ", k);
		if (json_is_string(v))
			fputs(json_string_value(v), out);
		else
			json_dumpf(v, out, KV_DUMP);
		first = false;
	}
	if (first)
		fputs("(none)", out);
}

/* "dataset:a @ v1, dataset:b" from a list of ids and an {id: version} object. */
static void put_versions(FILE *out, const json_t *ids, const json_t *versions)
{
	size_t n = json_array_size(ids), printed = 0;
	for (size_t i = 0; i < n; i++) {
		const char *id = json_string_value(json_array_get(ids, i));
		if (id == NULL)
			continue;
		const char *v = jstr(versions, id);
		fprintf(out, "%s%s", printed++ ? ", " : "", id);
		if (v != NULL)
			fprintf(out, " @ %s", v);
	}
	/* Versions of datasets the list does not name: print what the collector knows. */
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)versions, k, v)
	{
		bool listed = false;
		for (size_t i = 0; i < n && !listed; i++)
			listed = streq(json_string_value(json_array_get(ids, i)), k);
		if (!listed && json_is_string(v))
			fprintf(out, "%s%s @ %s", printed++ ? ", " : "", k, json_string_value(v));
	}
	if (printed == 0)
		fputs("(none)", out);
}

static const json_t *find_run(const json_t *runs, const char *id)
{
	for (size_t i = 0; i < json_array_size(runs); i++)
		if (streq(jstr(json_array_get(runs, i), "id"), id))
			return json_array_get(runs, i);
	return NULL;
}

static void put_problem(FILE *out, const co_cli *cli, const json_t *p, const json_t *runs)
{
	const char *node = jstr(p, "node"), *kind = jstr(p, "kind"), *msg = jstr(p, "message");
	const char *red = cli->color ? "\x1b[31m" : "", *reset = cli->color ? "\x1b[0m" : "";
	if (node == NULL)
		node = "?";
	if (msg == NULL || msg[0] == '\0')
		msg = jstr(find_run(runs, node), "error");
	fprintf(out, "%s" MARK_WARN " ", red);
	if (streq(kind, "failed"))
		fprintf(out, "upstream run %s FAILED", node);
	else if (streq(kind, "aborted"))
		fprintf(out, "upstream run %s ABORTED", node);
	else if (streq(kind, "running"))
		fprintf(out, "upstream run %s is still running", node);
	else if (streq(kind, "missing_producer"))
		fprintf(out, "%s: no known run produced it", node);
	else
		fprintf(out, "%s: %s", node, kind != NULL ? kind : "problem");
	if (msg != NULL && msg[0] != '\0')
		fprintf(out, ": %s", msg);
	fprintf(out, "%s\n", reset);
}

static void put_repro(FILE *out, const json_t *rep, const char *ind)
{
	if (!json_is_object(rep)) {
		fprintf(out, "%sreproducibility: not recorded\n", ind);
		return;
	}
	const char *url = jstr(rep, "code_url"), *path = jstr(rep, "code_path"), *ver = jstr(rep, "code_version");
	fprintf(out, "%scode: ", ind);
	if (url == NULL && path == NULL && ver == NULL)
		fputs("not recorded", out);
	if (url != NULL)
		fputs(url, out);
	if (path != NULL)
		fprintf(out, "%s%s", url != NULL ? " " : "", path);
	if (ver != NULL)
		fprintf(out, "%s@ %s", url != NULL || path != NULL ? " " : "", ver);
	fputc('\n', out);
	const char *jv = jstr(rep, "job_version");
	fprintf(out, "%sjob version: %s\n", ind, jv != NULL ? jv : "not known yet");
	static const char *const fields[][2] = {
	        {"parameters", "parameters"}, {"seeds", "seeds"}, {"environment", "environment"}};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const json_t *v = json_object_get(rep, fields[i][0]);
		fprintf(out, "%s%s: ", ind, fields[i][1]);
		if (v == NULL || json_is_null(v))
			fputs("not recorded", out);
		else
			put_kv(out, v);
		fputc('\n', out);
	}
}

static int print_explain_text(const co_cli *cli, const json_t *doc, FILE *out)
{
	const char *bold = cli->color ? "\x1b[1m" : "", *reset = cli->color ? "\x1b[0m" : "",
	           *dim = cli->color ? "\x1b[2m" : "", *red = cli->color ? "\x1b[31m" : "";
	const char *ind = "      ";
	char tb[40];
	const json_t *pred = json_object_get(doc, "prediction"), *model = json_object_get(doc, "model"),
	             *runs = json_object_get(doc, "runs"), *raw = json_object_get(doc, "raw_inputs"),
	             *problems = json_object_get(doc, "problems");
	/* The prediction, and what is wrong upstream, first. */
	const char *pid = jstr(pred, "id"), *pt = jstr(pred, "time"), *ptr = jstr(pred, "trace_id");
	fprintf(out, "%sPrediction %s%s", bold, pid != NULL ? pid : "?", reset);
	if (pt != NULL)
		fprintf(out, "%s%s", SEP, short_time(pt, tb, sizeof(tb)));
	if (ptr != NULL)
		fprintf(out, "%strace %s", SEP, ptr);
	fputc('\n', out);
	size_t np = json_array_size(problems);
	for (size_t i = 0; i < np; i++)
		put_problem(out, cli, json_array_get(problems, i), runs);
	if (np == 0 && json_is_array(problems))
		fprintf(out, MARK_OK " every run upstream completed and every input has a known producer or is raw\n");
	static const char *const pfields[][2] = {{"model", "model"},
	                                         {"deployment", "deployment"},
	                                         {"input_digest", "input digest"},
	                                         {"output", "output"}};
	for (size_t i = 0; i < sizeof(pfields) / sizeof(pfields[0]); i++) {
		const char *v = jstr(pred, pfields[i][0]);
		if (v != NULL)
			fprintf(out, "  %s: %s\n", pfields[i][1], v);
	}
	fprintf(out, "\n%sModel%s\n", dim, reset);
	if (!json_is_object(model)) {
		fputs("  unknown (the prediction names no model version, or the collector has none)\n", out);
	} else {
		const char *id = jstr(model, "id"), *dig = jstr(model, "digest"), *run = jstr(model, "run");
		fprintf(out, "  %s", id != NULL ? id : "?");
		if (dig != NULL)
			fprintf(out, "%sdigest %s", SEP, dig);
		fprintf(out, "%s%s%s\n", SEP, run != NULL ? "trained by " : "no known training run",
		        run != NULL ? run : "");
	}
	size_t nr = json_array_size(runs);
	fprintf(out, "\n%sRuns, nearest first (%zu)%s\n", dim, nr, reset);
	if (nr == 0)
		fputs("  none known\n", out);
	for (size_t i = 0; i < nr; i++) {
		const json_t *r = json_array_get(runs, i);
		const char *id = jstr(r, "id"), *job = jstr(r, "job"), *error = jstr(r, "error");
		json_int_t d;
		if (jint(r, "distance", &d))
			fprintf(out, "  [%lld] ", (long long)d);
		else
			fputs("  ", out);
		fprintf(out, "%s  ", id != NULL ? id : "?");
		put_state(out, cli, jstr(r, "state"));
		if (job != NULL)
			fprintf(out, "  %s", job);
		fprintf(out, "\n%s", ind);
		put_run_times(out, r);
		fputc('\n', out);
		if (error != NULL)
			fprintf(out, "%s%serror: %s%s\n", ind, red, error, reset);
		const json_t *rep = json_object_get(r, "reproducibility");
		fprintf(out, "%sinputs: ", ind);
		put_versions(out, json_object_get(r, "inputs"), json_object_get(rep, "input_versions"));
		fprintf(out, "\n%soutputs: ", ind);
		put_versions(out, json_object_get(r, "outputs"), json_object_get(rep, "output_versions"));
		fputc('\n', out);
		put_repro(out, rep, ind);
	}
	size_t nraw = json_array_size(raw);
	fprintf(out, "\n%sRaw inputs (%zu)%s\n", dim, nraw, reset);
	if (nraw == 0)
		fputs("  none known\n", out);
	for (size_t i = 0; i < nraw; i++) {
		const char *id = json_string_value(json_array_get(raw, i));
		if (id != NULL)
			fprintf(out, "  %s\n", id);
	}
	return ferror(out) ? -EIO : 0;
}

int co_cli_lineage_explain_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err)
{
	json_t *doc = co_cli_load_doc(json, len, err);
	if (doc == NULL)
		return TL_EPROTO;
	int rc;
	if (!json_is_object(json_object_get(doc, "prediction")))
		rc = tl_errf(err, TL_EPROTO, "not an explanation: needs a \"prediction\" object");
	else if (cli->json)
		rc = print_doc_json(doc, json, len, out);
	else {
		json_t *clean = scrub(doc);
		rc = clean != NULL ? print_explain_text(cli, clean, out) : -ENOMEM;
		json_decref(clean);
	}
	json_decref(doc);
	return rc;
}

/* ---- the commands ---- */

static const char lineage_usage[] =
        "usage: threadline lineage show NODE [--upstream|--downstream] [--depth N] [--at TIME]\n"
        "                               [--format text|json|dot|mermaid]\n"
        "       threadline lineage explain prediction:ID [--json]\n"
        "\n"
        "NODE is dataset:NAMESPACE:NAME[#VERSION], job:NAMESPACE:NAME, run:UUID, model:NAME:VERSION,\n"
        "prediction:ID or deployment:NAME. A dataset or job id splits into namespace and name at its\n"
        "last ':' (namespaces such as postgres://db:5432 keep theirs), so a name that contains ':'\n"
        "cannot be named here.\n"
        "--depth N   how many edges away to go (1-" STR(CO_LINEAGE_MAX_DEPTH) "; default " STR(
                CO_LINEAGE_DEFAULT_DEPTH) ")\n"
                                          "--at TIME   the graph as it stood then: RFC 3339, unix seconds, or a "
                                          "duration ago (2h)\n";

/* Sends q; prints the collector's error and returns the exit code, or CLI_OK with *resp to render. */
static int print_show(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err, void *ud)
{
	return co_cli_lineage_show_print(cli, json, len, *(const co_cli_lformat *)ud, out, err);
}

static int print_explain(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err, void *ud)
{
	(void)ud;
	return co_cli_lineage_explain_print(cli, json, len, out, err);
}

static int lineage_show(co_cli *cli, int argc, char **argv)
{
	const char *node = NULL, *val = NULL;
	int dir = THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_BOTH;
	bool dir_set = false;
	uint32_t depth = 0;
	uint64_t at = 0;
	co_cli_lformat fmt = cli->json ? CO_CLI_LFORMAT_JSON : CO_CLI_LFORMAT_TEXT;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		int m;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(lineage_usage, stdout);
			return CLI_OK;
		} else if (strcmp(a, "--upstream") == 0 || strcmp(a, "--downstream") == 0) {
			int d = a[2] == 'u' ? THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_UPSTREAM
			                    : THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_DOWNSTREAM;
			if (dir_set && d != dir) {
				fprintf(stderr,
				        "threadline lineage show: --upstream and --downstream exclude each other "
				        "(give neither for both directions)\n");
				return CLI_USAGE;
			}
			dir = d;
			dir_set = true;
		} else if (strcmp(a, "--json") == 0) {
			fmt = CO_CLI_LFORMAT_JSON;
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--depth", &val)) != 0) {
			char *end = NULL;
			unsigned long v = 0;
			errno = 0;
			if (m > 0 && isdigit((unsigned char)val[0]))
				v = strtoul(val, &end, 10);
			if (v < 1 || v > CO_LINEAGE_MAX_DEPTH || errno != 0 || end == NULL || *end != '\0') {
				fprintf(stderr,
				        "threadline lineage show: --depth: expected a number from 1 to %d, got '%s'\n",
				        CO_LINEAGE_MAX_DEPTH, m > 0 ? val : "");
				return CLI_USAGE;
			}
			depth = (uint32_t)v;
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--at", &val)) != 0) {
			if (m < 0 || tl_parse_time(val, tl_now_ns(), &at) != 0 || at == 0) {
				fprintf(stderr,
				        "threadline lineage show: --at: expected a time (RFC 3339 like "
				        "2026-11-23T10:00:00Z, unix seconds, or a duration ago like 2h), got '%s'\n",
				        m > 0 ? val : "");
				return CLI_USAGE;
			}
		} else if ((m = co_cli_opt_value(argc, argv, &i, "--format", &val)) != 0) {
			if (m > 0 && strcmp(val, "text") == 0)
				fmt = CO_CLI_LFORMAT_TEXT;
			else if (m > 0 && strcmp(val, "json") == 0)
				fmt = CO_CLI_LFORMAT_JSON;
			else if (m > 0 && strcmp(val, "dot") == 0)
				fmt = CO_CLI_LFORMAT_DOT;
			else if (m > 0 && strcmp(val, "mermaid") == 0)
				fmt = CO_CLI_LFORMAT_MERMAID;
			else {
				fprintf(stderr,
				        "threadline lineage show: --format: expected text, json, dot or mermaid, got "
				        "'%s'\n",
				        m > 0 ? val : "");
				return CLI_USAGE;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "threadline lineage show: unknown option '%s'\n%s", a, lineage_usage);
			return CLI_USAGE;
		} else if (node == NULL) {
			node = a;
		} else {
			fprintf(stderr, "threadline lineage show: unexpected argument '%s'\n%s", a, lineage_usage);
			return CLI_USAGE;
		}
	}
	if (node == NULL) {
		fprintf(stderr, "threadline lineage show: missing NODE\n%s", lineage_usage);
		return CLI_USAGE;
	}
	char id[CO_LINEAGE_ID_MAX + 1];
	tl_errmsg err = {{0}};
	if (co_cli_lineage_node_parse(node, id, sizeof(id), &err) != 0) {
		fprintf(stderr, "threadline lineage show: NODE: %s\n", err.msg);
		return CLI_USAGE;
	}
	tl_pb_query_req q;
	tl_pb_lineage_show ls;
	threadline__v1__query_request__init(&q);
	threadline__v1__lineage_show__init(&ls);
	ls.node_id = id;
	ls.direction = (Threadline__V1__LineageShow__Direction)dir;
	ls.depth = depth;
	ls.at_unix_nano = at;
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW;
	q.lineage_show = &ls;
	return co_cli_ask_json(cli, &q, "a lineage document", print_show, &fmt);
}

static int lineage_explain(co_cli *cli, int argc, char **argv)
{
	const char *pred = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--json") == 0) {
			cli->json = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(lineage_usage, stdout);
			return CLI_OK;
		} else if (a[0] == '-') {
			fprintf(stderr, "threadline lineage explain: unknown option '%s'\n%s", a, lineage_usage);
			return CLI_USAGE;
		} else if (pred == NULL) {
			pred = a;
		} else {
			fprintf(stderr, "threadline lineage explain: unexpected argument '%s'\n%s", a, lineage_usage);
			return CLI_USAGE;
		}
	}
	if (pred == NULL) {
		fprintf(stderr, "threadline lineage explain: missing prediction:ID\n%s", lineage_usage);
		return CLI_USAGE;
	}
	char id[CO_LINEAGE_ID_MAX + 1];
	tl_errmsg err = {{0}};
	if (strncmp(pred, "prediction:", 11) != 0 || co_cli_lineage_node_parse(pred, id, sizeof(id), &err) != 0) {
		fprintf(stderr, "threadline lineage explain: expected prediction:ID, got '%s'%s%s\n", pred,
		        err.msg[0] ? ": " : "", err.msg);
		return CLI_USAGE;
	}
	tl_pb_query_req q;
	tl_pb_lineage_explain le;
	threadline__v1__query_request__init(&q);
	threadline__v1__lineage_explain__init(&le);
	le.prediction_id = id + 11;
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN;
	q.lineage_explain = &le;
	return co_cli_ask_json(cli, &q, "a lineage document", print_explain, NULL);
}

int co_cli_lineage(co_cli *cli, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return lineage_show(cli, argc, argv);
	if (argc >= 2 && strcmp(argv[1], "explain") == 0)
		return lineage_explain(cli, argc, argv);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(lineage_usage, stdout);
		return CLI_OK;
	}
	fprintf(stderr, "threadline lineage: expected a subcommand: show or explain\n%s", lineage_usage);
	return CLI_USAGE;
}

/* ---- emit lineage: the event ---- */

static const char *const event_types[] = {"START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"};

int co_cli_uuid4(char out[37])
{
	uint8_t b[16];
	int rc = tl_random_bytes(b, sizeof(b));
	if (rc != 0)
		return rc;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	tl_ol_uuid_format(b, out);
	return 0;
}

/* Sets o[key] to the string s[0..n); false when s is not valid UTF-8 (or memory ran out). */
static bool set_strn(json_t *o, const char *key, const char *s, size_t n)
{
	return json_object_set_new(o, key, json_stringn(s, n)) == 0;
}

static bool set_str(json_t *o, const char *key, const char *s)
{
	return set_strn(o, key, s, strlen(s));
}

/* A facet object with the two fields every facet carries. NULL when out of memory. */
static json_t *facet_new(const char *producer, const char *schema)
{
	json_t *f = json_object();
	if (f == NULL || !set_str(f, "_producer", producer) || !set_str(f, "_schemaURL", schema)) {
		json_decref(f);
		return NULL;
	}
	return f;
}

/*
 * The dataset object for "dataset:NS:NAME[#VERSION]" or "NS:NAME[#VERSION]",
 * read by the node id rules of co_lineage.h (namespace and name split at the
 * last ':', the version after the last '#'; "dataset:NAME" alone is
 * namespace "dataset"). Returns it or NULL with err set.
 */
static json_t *dataset_json(const char *arg, const char *producer, const char *flag, tl_errmsg *err)
{
	char buf[CO_LINEAGE_ID_MAX + 1];
	co_lineage_id p;
	int rc = -1;
	if (strncmp(arg, "dataset:", 8) == 0)
		rc = co_lineage_id_parse(arg, strlen(arg), &p, NULL);
	if (rc != 0) {
		int n = snprintf(buf, sizeof(buf), "dataset:%s", arg);
		rc = n > 0 && (size_t)n < sizeof(buf) ? co_lineage_id_parse(buf, (size_t)n, &p, NULL) : TL_ELIMIT;
	}
	if (rc != 0 || p.type != CO_LIN_DATASET) {
		tl_errf(err, TL_EINVALID,
		        "%s '%s': expected NAMESPACE:NAME or dataset:NAMESPACE:NAME, with #VERSION or not", flag, arg);
		return NULL;
	}
	json_t *d = json_object(), *facets = json_object();
	bool ok = d != NULL && facets != NULL && set_strn(d, "namespace", p.ns, p.ns_len) &&
	          set_strn(d, "name", p.name, p.name_len);
	if (ok && p.version != NULL) {
		json_t *v = facet_new(producer, SCHEMA_VERSION_FACET);
		ok = v != NULL && set_strn(v, "datasetVersion", p.version, p.version_len);
		if (ok)
			ok = json_object_set_new(facets, "version", v) == 0; /* takes v even when it fails */
		else
			json_decref(v);
	}
	if (ok) {
		ok = json_object_set_new(d, "facets", facets) == 0;
		facets = NULL;
	}
	json_decref(facets);
	if (!ok) {
		json_decref(d);
		tl_errf(err, TL_EINVALID, "%s '%s': not valid UTF-8", flag, arg);
		return NULL;
	}
	return d;
}

int co_cli_emit_build(const co_cli_emit_opts *o, uint64_t now_ns, char **json, tl_errmsg *err)
{
	*json = NULL;
	const char *type = NULL;
	for (size_t i = 0; o->event != NULL && i < sizeof(event_types) / sizeof(event_types[0]); i++)
		if (strcasecmp(o->event, event_types[i]) == 0)
			type = event_types[i];
	if (type == NULL)
		return tl_errf(err, TL_EINVALID,
		               "--event: expected START, RUNNING, COMPLETE, FAIL, ABORT or OTHER, got '%s'",
		               o->event != NULL ? o->event : "");
	/* The job by the node id rules: "job:" + NS:NAME, split at the last ':'. */
	char jbuf[CO_LINEAGE_ID_MAX + 1];
	co_lineage_id jp;
	int n = snprintf(jbuf, sizeof(jbuf), "job:%s", o->job != NULL ? o->job : "");
	if (n < 0 || (size_t)n >= sizeof(jbuf) || co_lineage_id_parse(jbuf, (size_t)n, &jp, NULL) != 0 ||
	    jp.type != CO_LIN_JOB)
		return tl_errf(err, TL_EINVALID, "--job: expected NAMESPACE:NAME (split at the last ':'), got '%s'",
		               o->job != NULL ? o->job : "");
	if (jp.version != NULL) /* '#' is part of an OpenLineage job name; only node ids give it a meaning */
		jp.name_len = (size_t)(jp.version + jp.version_len - jp.name);
	uint8_t rid[16];
	if (o->run_id == NULL || tl_ol_uuid_parse(o->run_id, rid) != 0)
		return tl_errf(err, TL_EINVALID, "--run-id: expected a UUID (8-4-4-4-12 hex digits), got '%s'",
		               o->run_id != NULL ? o->run_id : "");
	const char *producer = o->producer != NULL ? o->producer : CO_CLI_PRODUCER;
	if (producer[0] == '\0')
		return tl_errf(err, TL_EINVALID, "--producer: expected a URI");
	char run_id[37], when[40];
	tl_ol_uuid_format(rid, run_id);
	tl_format_time(now_ns, when, sizeof(when));

	int rc = -ENOMEM;
	json_t *ev = json_object(), *run = json_object(), *rfacets = json_object(), *job = json_object(),
	       *inputs = json_array(), *outputs = json_array();
	if (ev == NULL || run == NULL || rfacets == NULL || job == NULL || inputs == NULL || outputs == NULL)
		goto out;
	if (!set_str(ev, "eventType", type) || !set_str(ev, "eventTime", when) || !set_str(run, "runId", run_id))
		goto out;
	if (o->error != NULL) {
		json_t *f = facet_new(producer, SCHEMA_ERROR_FACET);
		if (f == NULL)
			goto out;
		if (!set_str(f, "message", o->error) || !set_str(f, "programmingLanguage", "shell")) {
			json_decref(f);
			rc = tl_errf(err, TL_EINVALID, "--error: not valid UTF-8");
			goto out;
		}
		if (json_object_set_new(rfacets, "errorMessage", f) != 0)
			goto out;
	}
	if (json_object_set_new(run, "facets", rfacets) != 0) {
		rfacets = NULL;
		goto out;
	}
	rfacets = NULL;
	if (!set_strn(job, "namespace", jp.ns, jp.ns_len) || !set_strn(job, "name", jp.name, jp.name_len) ||
	    json_object_set_new(job, "facets", json_object()) != 0) {
		rc = tl_errf(err, TL_EINVALID, "--job '%s': not valid UTF-8", o->job);
		goto out;
	}
	for (size_t i = 0; i < o->ninputs; i++) {
		json_t *d = dataset_json(o->inputs[i], producer, "--input", err);
		if (d == NULL) {
			rc = TL_EINVALID;
			goto out;
		}
		if (json_array_append_new(inputs, d) != 0)
			goto out;
	}
	for (size_t i = 0; i < o->noutputs; i++) {
		json_t *d = dataset_json(o->outputs[i], producer, "--output", err);
		if (d == NULL) {
			rc = TL_EINVALID;
			goto out;
		}
		if (json_array_append_new(outputs, d) != 0)
			goto out;
	}
	bool ok = json_object_set(ev, "run", run) == 0 && json_object_set(ev, "job", job) == 0 &&
	          json_object_set(ev, "inputs", inputs) == 0 && json_object_set(ev, "outputs", outputs) == 0;
	if (!ok)
		goto out;
	if (!set_str(ev, "producer", producer)) {
		rc = tl_errf(err, TL_EINVALID, "--producer: not valid UTF-8");
		goto out;
	}
	if (!set_str(ev, "schemaURL", SCHEMA_RUN_EVENT))
		goto out;
	*json = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	rc = *json != NULL ? 0 : -ENOMEM;
out:
	json_decref(ev);
	json_decref(run);
	json_decref(rfacets);
	json_decref(job);
	json_decref(inputs);
	json_decref(outputs);
	return rc;
}

/* ---- emit lineage: a small blocking HTTP/1.1 client ---- */

typedef co_cli_http_answer http_answer; /* body: the first ANSWER_MAX bytes */

static int on_answer_body(http_parser *p, const char *at, size_t n)
{
	http_answer *a = p->data;
	size_t room = ANSWER_MAX - a->body.len;
	if (n > room)
		n = room;
	return n == 0 || tl_buf_append(&a->body, at, n) == 0 ? 0 : -1;
}

static int on_answer_done(http_parser *p)
{
	http_answer *a = p->data;
	a->status = (int)p->status_code;
	a->done = true;
	return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Connects to host:port (any address family getaddrinfo gives) with
 * timeout_ms on connect, send and receive. Returns the fd, or TL_ETRANSPORT
 * with err set.
 */
static int http_connect(const char *host, const char *port, uint64_t timeout_ms, tl_errmsg *err)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0)
		return tl_errf(err, TL_ETRANSPORT, "cannot resolve %s: %s", host, gai_strerror(g));
	int fd = -1, e = 0;
	struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000), .tv_usec = (suseconds_t)(timeout_ms % 1000 * 1000)};
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		/* Linux applies SO_SNDTIMEO to a blocking connect() too. */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		return tl_errf(err, TL_ETRANSPORT, "cannot connect to %s:%s: %s", host, port,
		               e == EINPROGRESS || e == EAGAIN ? "timed out" : strerror(e));
	return fd;
}

/*
 * POSTs a JSON body to base_url (http://HOST[:PORT][/PREFIX]) + path and
 * reads the answer. Returns 0 with *a filled in (caller frees a->body with
 * tl_buf_fini()); TL_EUSAGE for a URL this client cannot use; TL_ETRANSPORT
 * when the agent cannot be reached or closed without answering; TL_ETIMEOUT
 * when it did not answer in time; TL_EPROTO for an unreadable answer. err
 * says which.
 */
static int http_post_json(const char *base_url, const char *path, const char *body, size_t len, uint64_t timeout_ms,
                          http_answer *a, tl_errmsg *err)
{
	memset(a, 0, sizeof(*a));
	tl_buf_init(&a->body, ANSWER_MAX);
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(base_url, strlen(base_url), 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)) ||
	    !(u.field_set & (1 << UF_HOST)))
		return tl_errf(err, TL_EUSAGE, "'%s' is not a URL like http://127.0.0.1:4318", base_url);
	const char *schema = base_url + u.field_data[UF_SCHEMA].off;
	if (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(schema, "http", 4) != 0)
		return tl_errf(err, TL_EUSAGE, "'%s': only http:// is supported (the agent listens on plain HTTP)",
		               base_url);
	if ((u.field_set & (1 << UF_QUERY)) || (u.field_set & (1 << UF_FRAGMENT)) || (u.field_set & (1 << UF_USERINFO)))
		return tl_errf(err, TL_EUSAGE, "'%s': give the agent's address without user, query or fragment",
		               base_url);
	char host[256], port[8], prefix[1024];
	if (u.field_data[UF_HOST].len >= sizeof(host))
		return tl_errf(err, TL_EUSAGE, "'%s': host name too long", base_url);
	memcpy(host, base_url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
	host[u.field_data[UF_HOST].len] = '\0';
	snprintf(port, sizeof(port), "%u", (u.field_set & (1 << UF_PORT)) ? u.port : 80u);
	size_t plen = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].len : 0;
	if (plen >= sizeof(prefix))
		return tl_errf(err, TL_EUSAGE, "'%s': path too long", base_url);
	memcpy(prefix, base_url + u.field_data[UF_PATH].off, plen);
	while (plen > 0 && prefix[plen - 1] == '/')
		plen--;
	prefix[plen] = '\0';

	int fd = http_connect(host, port, timeout_ms, err);
	if (fd < 0)
		return fd;
	bool v6 = strchr(host, ':') != NULL;
	tl_buf req;
	tl_buf_init(&req, 0);
	int rc = tl_buf_printf(&req,
	                       "POST %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: threadline/%s\r\n"
	                       "Content-Type: application/json\r\nAccept: application/json\r\n"
	                       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	                       prefix, path, v6 ? "[" : "", host, v6 ? "]" : "", port, TL_VERSION, len);
	if (rc == 0)
		rc = tl_buf_append(&req, body, len);
	if (rc != 0) {
		tl_buf_fini(&req);
		close(fd);
		return tl_errf(err, rc, "out of memory");
	}
	/* A send error is not final: an agent may answer (413, 400) and close before reading everything. */
	int send_rc = send_all(fd, (const char *)req.data, req.len);
	tl_buf_fini(&req);

	http_parser p;
	http_parser_settings s;
	http_parser_init(&p, HTTP_RESPONSE);
	http_parser_settings_init(&s);
	s.on_body = on_answer_body;
	s.on_message_complete = on_answer_done;
	p.data = a;
	char buf[4096];
	size_t got = 0;
	rc = 0;
	while (!a->done && rc == 0) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			rc = tl_errf(err, TL_ETIMEOUT, "no answer from %s within %llums", base_url,
			             (unsigned long long)timeout_ms);
			break;
		}
		if (n < 0 && got == 0) {
			rc = tl_errf(err, TL_ETRANSPORT, "%s: %s", base_url, strerror(send_rc != 0 ? -send_rc : errno));
			break;
		}
		if (n < 0) {
			rc = tl_errf(err, TL_EPROTO, "reading the answer of %s: %s", base_url, strerror(errno));
			break;
		}
		got += (size_t)n;
		size_t used = http_parser_execute(&p, &s, buf, (size_t)n); /* n == 0 tells it the peer closed */
		if (a->done)
			break;
		if (n == 0 && got == 0)
			rc = tl_errf(err, TL_ETRANSPORT, "%s closed the connection without answering", base_url);
		else if (n == 0)
			rc = tl_errf(err, TL_EPROTO, "%s closed the connection in the middle of its answer", base_url);
		else if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)n)
			rc = tl_errf(err, TL_EPROTO, "%s answered something that is not HTTP/1.1: %s", base_url,
			             http_errno_description(HTTP_PARSER_ERRNO(&p)));
	}
	close(fd);
	if (rc != 0)
		tl_buf_fini(&a->body);
	return rc;
}

/* The agent's reason from an error answer: its JSON "message" or "error", else the body's first line. */
static void answer_reason(const http_answer *a, char *buf, size_t cap)
{
	const char *body = a->body.len > 0 ? (const char *)a->body.data : "";
	size_t len = a->body.len;
	json_t *j = json_loadb(body, len, 0, NULL);
	const char *m = jstr(j, "message");
	if (m == NULL)
		m = jstr(j, "error");
	if (m == NULL) {
		const json_t *e = json_object_get(j, "error");
		m = jstr(e, "message");
	}
	if (m != NULL) {
		snprintf(buf, cap, "%s", m);
	} else {
		size_t k = 0;
		for (size_t i = 0; i < len && body[i] != '\n' && k + 1 < cap; i++)
			buf[k++] = (unsigned char)body[i] < 0x20 ? ' ' : body[i];
		buf[k] = '\0';
		if (k == 0)
			snprintf(buf, cap, "no reason given");
	}
	json_decref(j);
}

static const char emit_usage[] =
        "usage: threadline emit lineage --job NAMESPACE:NAME --event START|RUNNING|COMPLETE|FAIL|ABORT|OTHER\n"
        "                               [--run-id UUID] [--input ID]... [--output ID]... [--error MESSAGE]\n"
        "                               [--agent URL] [--producer URI]\n"
        "\n"
        "Sends one OpenLineage RunEvent to the local agent (POST URL/api/v1/lineage).\n"
        "--run-id   required except for START, which makes one up and prints it on stdout:\n"
        "             RUN=$(threadline emit lineage --job etl:load --event START)\n"
        "             threadline emit lineage --job etl:load --event COMPLETE --run-id \"$RUN\"\n"
        "--input, --output   a dataset: NAMESPACE:NAME or dataset:NAMESPACE:NAME, with #VERSION to record\n"
        "             its version; split at the last ':' (postgres://db:5432:public.users)\n"
        "             A model version is a dataset in a model:// namespace: --output model://registry:churn#7\n"
        "--error    the run's error message (errorMessage facet), usually with --event FAIL\n"
        "--agent    the agent (default http://127.0.0.1:4318, or $THREADLINE_AGENT)\n"
        "--producer the event's producer URI (default " CO_CLI_PRODUCER ")\n";

static int emit_lineage(co_cli *cli, int argc, char **argv)
{
	co_cli_emit_opts o = {0};
	const char *agent = getenv("THREADLINE_AGENT");
	if (agent == NULL || agent[0] == '\0')
		agent = "http://127.0.0.1:4318";
	const char **ins = calloc((size_t)argc, sizeof(*ins)), **outs = calloc((size_t)argc, sizeof(*outs));
	if (ins == NULL || outs == NULL) {
		free(ins);
		free(outs);
		fprintf(stderr, "threadline emit lineage: out of memory\n");
		return CLI_ERR;
	}
	o.inputs = ins;
	o.outputs = outs;
	int code = CLI_OK;
	for (int i = 2; i < argc && code == CLI_OK; i++) {
		const char *a = argv[i], *val = NULL;
		int m = 0;
		static const char *const flags[] = {"--job",    "--run-id", "--event", "--input",
		                                    "--output", "--error",  "--agent", "--producer"};
		size_t f = 0;
		for (; f < sizeof(flags) / sizeof(flags[0]); f++)
			if ((m = co_cli_opt_value(argc, argv, &i, flags[f], &val)) != 0)
				break;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(emit_usage, stdout);
			free(ins);
			free(outs);
			return CLI_OK;
		}
		if (m == 0) {
			fprintf(stderr, "threadline emit lineage: %s '%s'\n%s",
			        a[0] == '-' ? "unknown option" : "unexpected argument", a, emit_usage);
			code = CLI_USAGE;
		} else if (m < 0) {
			fprintf(stderr, "threadline emit lineage: %s needs a value\n%s", flags[f], emit_usage);
			code = CLI_USAGE;
		} else if (f == 0) {
			o.job = val;
		} else if (f == 1) {
			o.run_id = val;
		} else if (f == 2) {
			o.event = val;
		} else if (f == 3) {
			ins[o.ninputs++] = val;
		} else if (f == 4) {
			outs[o.noutputs++] = val;
		} else if (f == 5) {
			o.error = val;
		} else if (f == 6) {
			agent = val;
		} else {
			o.producer = val;
		}
	}
	char made[37] = "";
	if (code == CLI_OK && o.job == NULL) {
		fprintf(stderr, "threadline emit lineage: missing --job NAMESPACE:NAME\n%s", emit_usage);
		code = CLI_USAGE;
	} else if (code == CLI_OK && o.event == NULL) {
		fprintf(stderr, "threadline emit lineage: missing --event START|RUNNING|COMPLETE|FAIL|ABORT|OTHER\n%s",
		        emit_usage);
		code = CLI_USAGE;
	} else if (code == CLI_OK && o.run_id == NULL) {
		if (strcasecmp(o.event, "START") != 0) {
			fprintf(stderr,
			        "threadline emit lineage: --run-id is required for %s (only START makes one up; pass "
			        "the "
			        "one it printed)\n",
			        o.event);
			code = CLI_USAGE;
		} else if (co_cli_uuid4(made) != 0) {
			fprintf(stderr, "threadline emit lineage: cannot make a run id: no randomness\n");
			code = CLI_ERR;
		} else {
			o.run_id = made;
		}
	}
	char *body = NULL;
	tl_errmsg err = {{0}};
	if (code == CLI_OK) {
		int rc = co_cli_emit_build(&o, tl_now_ns(), &body, &err);
		if (rc != 0) {
			fprintf(stderr, "threadline emit lineage: %s\n", rc == TL_EINVALID ? err.msg : tl_strerror(rc));
			code = rc == TL_EINVALID ? CLI_USAGE : CLI_ERR;
		}
	}
	free(ins);
	free(outs);
	if (code != CLI_OK)
		return code;
	http_answer a;
	int rc = http_post_json(agent, "/api/v1/lineage", body, strlen(body), cli->timeout_ms, &a, &err);
	free(body);
	if (rc == TL_EUSAGE) {
		fprintf(stderr, "threadline emit lineage: --agent: %s\n", err.msg);
		return CLI_USAGE;
	}
	if (rc == TL_ETRANSPORT || rc == TL_ETIMEOUT) {
		fprintf(stderr, "threadline emit lineage: the agent is unreachable: %s\n", err.msg);
		return CLI_UNREACHABLE;
	}
	if (rc != 0) {
		fprintf(stderr, "threadline emit lineage: %s\n", err.msg[0] ? err.msg : tl_strerror(rc));
		return CLI_ERR;
	}
	if (a.status >= 200 && a.status < 300) {
		if (made[0] != '\0')
			printf("%s\n", made);
		code = CLI_OK;
	} else {
		char reason[1024];
		answer_reason(&a, reason, sizeof(reason));
		fprintf(stderr, "threadline emit lineage: the agent refused the event (HTTP %d): %s\n", a.status,
		        reason);
		code = CLI_ERR;
	}
	tl_buf_fini(&a.body);
	return code;
}

int co_cli_http_post_json(const char *base_url, const char *path, const char *body, size_t len, uint64_t timeout_ms,
                          co_cli_http_answer *a, tl_errmsg *err)
{
	return http_post_json(base_url, path, body, len, timeout_ms, a, err);
}

void co_cli_http_answer_reason(const co_cli_http_answer *a, char *buf, size_t cap)
{
	answer_reason(a, buf, cap);
}

int co_cli_emit(co_cli *cli, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "lineage") == 0)
		return emit_lineage(cli, argc, argv);
	if (argc >= 2 && strcmp(argv[1], "span") == 0)
		return co_cli_emit_span(cli, argc, argv);
	static const char both[] =
	        "usage: threadline emit lineage ...   one OpenLineage run event (emit lineage --help)\n"
	        "       threadline emit span ...      one span for a shell step (emit span --help)\n";
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(both, stdout);
		return CLI_OK;
	}
	fprintf(stderr, "threadline emit: expected a subcommand: lineage or span\n%s", both);
	return CLI_USAGE;
}
