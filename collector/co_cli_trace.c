/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline trace show`: fetches one trace and prints it as a waterfall
 * (tree by parent, service, operation, duration and self time, a bar,
 * errors and the root cause, spans whose parent never arrived, clock skew,
 * the critical path) or as JSON. The analysis itself is co_analyze's; this
 * file only renders it. Big traces stay readable and cheap: the text view
 * collapses large groups of identical siblings into one summary line, and
 * the JSON is written span by span, never built as one document.
 */
#include "co_analyze.h"
#include "co_cli.h"

#include "tl_buf.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_time.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NONE CO_AN_NONE
#define BAR_WIDTH 40
#define MAX_INDENT 12    /* deeper levels print as "…(depth)" */
#define COLLAPSE_MIN 10  /* siblings with the same service and operation: more than this collapse */
#define COLLAPSE_SHOWN 2 /* ... to the first few, then one summary line */
#define TOP_SELF 3       /* spans named in the critical path's footer */

static const char *const kind_names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};
static const char *const status_names[] = {"UNSET", "OK", "ERROR"};

static const char *kind_name(int k)
{
	return k >= 0 && k < 6 ? kind_names[k] : "UNSPECIFIED";
}

static const char *status_name(int c)
{
	return c >= 0 && c < 3 ? status_names[c] : "UNSET";
}

static const char *str_or(const char *s, const char *dflt)
{
	return s != NULL && s[0] != '\0' ? s : dflt;
}

/* On the trace's critical path: the main root's tree only (other roots' paths are not the trace's). */
static bool on_path(const co_analysis *a, size_t i)
{
	return (a->spans[i].flags & CO_AN_CRITICAL) && a->spans[i].root == a->main_root;
}

static json_t *any_to_json(const tl_pb_anyvalue *v, int depth);

static json_t *attrs_to_json(tl_pb_keyvalue **kv, size_t n, int depth)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, kv[i]->key, any_to_json(kv[i]->value, depth + 1));
	return o;
}

static json_t *any_to_json(const tl_pb_anyvalue *v, int depth)
{
	if (v == NULL || depth > 64)
		return json_null();
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		return json_string(v->string_value);
	case TL_PB_ANY_BOOL:
		return json_boolean(v->bool_value);
	case TL_PB_ANY_INT:
		return json_integer((json_int_t)v->int_value);
	case TL_PB_ANY_DOUBLE:
		return json_real(v->double_value);
	case TL_PB_ANY_ARRAY: {
		json_t *a = json_array();
		for (size_t i = 0; v->array_value != NULL && i < v->array_value->n_values; i++)
			json_array_append_new(a, any_to_json(v->array_value->values[i], depth + 1));
		return a;
	}
	case TL_PB_ANY_KVLIST:
		return v->kvlist_value != NULL
		               ? attrs_to_json(v->kvlist_value->values, v->kvlist_value->n_values, depth)
		               : json_object();
	case TL_PB_ANY_BYTES: {
		size_t n = sodium_base64_encoded_len(v->bytes_value.len, sodium_base64_VARIANT_ORIGINAL);
		char *b = malloc(n);
		if (b == NULL)
			return json_null();
		sodium_bin2base64(b, n, v->bytes_value.data, v->bytes_value.len, sodium_base64_VARIANT_ORIGINAL);
		json_t *s = json_string(b);
		free(b);
		return s;
	}
	default:
		return json_null();
	}
}

static json_t *hex_json(const ProtobufCBinaryData *b)
{
	char buf[2 * 64 + 1];
	size_t n = b->len > 64 ? 64 : b->len;
	tl_hex_encode(b->data, n, buf);
	return json_string(buf);
}

static json_t *ns_json(uint64_t ns)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)ns);
	return json_string(buf);
}

/* One span as DESIGN.md §6 shows it, plus the analysis fields listed in README.md. */
static json_t *span_to_json(const co_analysis *a, size_t i)
{
	const co_an_span *n = &a->spans[i];
	const tl_pb_span *sp = n->span;
	json_t *o = json_object();
	json_object_set_new(o, "span_id", hex_json(&sp->span_id));
	json_object_set_new(o, "parent_span_id", hex_json(&sp->parent_span_id));
	json_object_set_new(o, "service", json_string(n->service));
	json_object_set_new(o, "name", json_string(sp->name != NULL ? sp->name : ""));
	json_object_set_new(o, "kind", json_string(kind_name(sp->kind)));
	json_object_set_new(o, "start_unix_nano", ns_json(sp->start_time_unix_nano));
	json_object_set_new(o, "end_unix_nano", ns_json(sp->end_time_unix_nano));
	json_object_set_new(o, "status",
	                    json_pack("{s:s,s:s}", "code", status_name(sp->status ? (int)sp->status->code : 0),
	                              "message",
	                              sp->status != NULL && sp->status->message != NULL ? sp->status->message : ""));
	json_object_set_new(o, "attributes", attrs_to_json(sp->attributes, sp->n_attributes, 0));
	json_t *evs = json_array();
	for (size_t k = 0; k < sp->n_events; k++) {
		const tl_pb_event *e = sp->events[k];
		json_t *eo = json_object();
		json_object_set_new(eo, "name", json_string(e->name != NULL ? e->name : ""));
		json_object_set_new(eo, "time_unix_nano", ns_json(e->time_unix_nano));
		json_object_set_new(eo, "attributes", attrs_to_json(e->attributes, e->n_attributes, 0));
		json_array_append_new(evs, eo);
	}
	json_object_set_new(o, "events", evs);
	json_t *links = json_array();
	for (size_t k = 0; k < sp->n_links; k++) {
		const tl_pb_link *l = sp->links[k];
		json_t *lo = json_object();
		json_object_set_new(lo, "trace_id", hex_json(&l->trace_id));
		json_object_set_new(lo, "span_id", hex_json(&l->span_id));
		json_object_set_new(lo, "trace_state", json_string(l->trace_state != NULL ? l->trace_state : ""));
		json_object_set_new(lo, "attributes", attrs_to_json(l->attributes, l->n_attributes, 0));
		json_array_append_new(links, lo);
	}
	json_object_set_new(o, "links", links);
	json_object_set_new(o, "trace_state", json_string(sp->trace_state != NULL ? sp->trace_state : ""));
	json_object_set_new(o, "flags", json_integer(sp->flags));
	json_object_set_new(o, "resource",
	                    n->resource != NULL ? attrs_to_json(n->resource->attributes, n->resource->n_attributes, 0)
	                                        : json_object());
	json_object_set_new(o, "scope",
	                    json_pack("{s:s,s:s}", "name",
	                              n->scope != NULL && n->scope->name != NULL ? n->scope->name : "", "version",
	                              n->scope != NULL && n->scope->version != NULL ? n->scope->version : ""));
	json_object_set_new(o, "missing_parent", json_boolean(n->flags & CO_AN_ORPHAN));
	bool crit = on_path(a, i);
	json_object_set_new(o, "critical_path", json_boolean(crit));
	/* Analysis fields added by issue 5 (README.md, "trace show --json"). */
	json_object_set_new(o, "critical_self_nano", crit ? ns_json(n->self_ns) : json_null());
	json_object_set_new(o, "clock_skew",
	                    (n->flags & CO_AN_SKEW)
	                            ? json_pack("{s:o,s:o}", "before_parent_nano", ns_json(n->skew_before_ns),
	                                        "after_parent_nano", ns_json(n->skew_after_ns))
	                            : json_null());
	json_object_set_new(o, "duplicate_span_id", json_boolean(n->flags & CO_AN_DUP_ID));
	json_object_set_new(o, "root_cause", json_boolean(n->flags & CO_AN_CAUSE));
	return o;
}

/*
 * The document of DESIGN.md §6, written one span at a time: memory stays at
 * one span's JSON whatever the trace's size.
 */
static int print_json(const co_analysis *a, FILE *out)
{
	char tid[2 * 64 + 1];
	const ProtobufCBinaryData *id = &a->res->trace_id;
	tl_hex_encode(id->data, id->len > 64 ? 64 : id->len, tid);
	fprintf(out, "{\"trace_id\":\"%s\",\"spans\":[", tid);
	int rc = 0;
	for (size_t i = 0; i < a->count && rc == 0; i++) {
		json_t *o = span_to_json(a, i);
		if (o == NULL)
			return -ENOMEM;
		if (i > 0)
			fputc(',', out);
		rc = json_dumpf(o, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
	}
	fputs("]}\n", out);
	return rc == 0 && !ferror(out) ? 0 : -EIO;
}

/* Display width of a UTF-8 string, counting code points (good enough for names). */
static size_t u8width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

/* Appends s cut to at most w code points, then pads with spaces to w. */
static void put_cell(tl_buf *b, const char *s, size_t w)
{
	size_t used = 0;
	const char *p = s;
	while (*p && used < w) {
		const char *q = p + 1;
		while ((*q & 0xC0) == 0x80)
			q++;
		if (used + 1 == w && *q) {
			tl_buf_puts(b, "\xe2\x80\xa6"); /* … */
			used++;
			break;
		}
		tl_buf_append(b, p, (size_t)(q - p));
		used++;
		p = q;
	}
	for (; used < w; used++)
		tl_buf_puts(b, " ");
}

/* Writes n with thousands separators ("4,998"). */
static void fmt_count(size_t n, char *buf, size_t len)
{
	char d[32];
	int nd = snprintf(d, sizeof(d), "%zu", n);
	size_t o = 0;
	for (int k = 0; k < nd && o + 2 < len; k++) {
		if (k > 0 && (nd - k) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = d[k];
	}
	buf[o] = '\0';
}

/* The spans a collapsed group hides, in one line placed after its last shown member's subtree. */
typedef struct group_sum {
	size_t anchor; /* the shown member the line follows */
	size_t hidden; /* members not shown */
	size_t below;  /* spans under the hidden members (not shown either) */
	size_t errors; /* hidden spans (members and below) with status ERROR */
	size_t skewed; /* hidden spans with clock skew */
	uint64_t p50, max;
} group_sum;

typedef struct gkey {
	size_t parent; /* NONE (SIZE_MAX) for roots: they group too */
	const char *service;
	const char *name;
	size_t idx;
} gkey;

/* One line of the waterfall: a span, or a group summary (sum != NONE). */
typedef struct entry {
	size_t idx; /* the span, or the summary's anchor */
	size_t sum;
	bool last; /* the last line among its siblings (draws └─) */
} entry;

typedef struct view {
	entry *e;
	size_t ne;
	group_sum *sums;
	size_t nsums;
	/* Scratch, all sized by the span count. */
	size_t *sub;                /* subtree sizes */
	size_t *sub_err, *sub_skew; /* spans with status ERROR, with clock skew, in each subtree */
	bool *hidden;               /* in a collapsed group */
	size_t *sum_of;             /* the summary that follows this anchor, or NONE */
	gkey *keys;
	uint64_t *durs;
	size_t *last_of;
	size_t *pend;
} view;

static void view_free(view *v)
{
	free(v->e);
	free(v->sums);
	free(v->sub);
	free(v->sub_err);
	free(v->sub_skew);
	free(v->hidden);
	free(v->sum_of);
	free(v->keys);
	free(v->durs);
	free(v->last_of);
	free(v->pend);
}

static int cmp_gkey(const void *x, const void *y)
{
	const gkey *a = x, *b = y;
	if (a->parent != b->parent)
		return a->parent < b->parent ? -1 : 1;
	int c = strcmp(a->service, b->service);
	if (c == 0)
		c = strcmp(a->name, b->name);
	if (c != 0)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static bool same_group(const gkey *a, const gkey *b)
{
	return a->parent == b->parent && strcmp(a->service, b->service) == 0 && strcmp(a->name, b->name) == 0;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static const char *span_name(const tl_pb_span *sp)
{
	return sp->name != NULL ? sp->name : "";
}

/*
 * Siblings (one parent, or the roots) that share service and operation form
 * a group; a group of more than COLLAPSE_MIN shows its first COLLAPSE_SHOWN
 * members (and any member on the root cause's chain) and sums up the rest:
 * how many, their durations' p50 and max, and the errors and clock skew in
 * everything hidden (members and the spans below them), so nothing that
 * matters disappears without a word.
 */
static void collapse_groups(const co_analysis *a, view *v)
{
	size_t n = a->count;
	for (size_t i = 0; i < n; i++)
		v->keys[i] = (gkey){.parent = a->spans[i].parent,
		                    .service = a->spans[i].service,
		                    .name = span_name(a->spans[i].span),
		                    .idx = i};
	qsort(v->keys, n, sizeof(*v->keys), cmp_gkey);
	for (size_t g = 0; g < n;) {
		size_t end = g + 1;
		while (end < n && same_group(&v->keys[g], &v->keys[end]))
			end++;
		if (end - g > COLLAPSE_MIN) {
			group_sum s = {.anchor = v->keys[g + COLLAPSE_SHOWN - 1].idx};
			size_t nd = 0;
			for (size_t k = g + COLLAPSE_SHOWN; k < end; k++) {
				size_t i = v->keys[k].idx;
				if (a->spans[i].flags & CO_AN_CAUSE_CHAIN)
					continue;
				v->hidden[i] = true;
				s.hidden++;
				s.below += v->sub[i] - 1;
				s.errors += v->sub_err[i];
				s.skewed += v->sub_skew[i];
				v->durs[nd++] = co_an_duration(a->spans[i].span);
			}
			if (s.hidden > 0) {
				qsort(v->durs, nd, sizeof(*v->durs), cmp_u64);
				s.p50 = v->durs[(nd - 1) / 2];
				s.max = v->durs[nd - 1];
				v->sum_of[s.anchor] = v->nsums;
				v->sums[v->nsums++] = s;
			}
		}
		g = end;
	}
}

/* The lines to print, in tree order, hidden subtrees left out and summaries placed. */
static int view_build(const co_analysis *a, view *v)
{
	size_t n = a->count, m = n ? n : 1;
	memset(v, 0, sizeof(*v));
	v->sub = calloc(m, sizeof(*v->sub));
	v->sub_err = calloc(m, sizeof(*v->sub_err));
	v->sub_skew = calloc(m, sizeof(*v->sub_skew));
	v->hidden = calloc(m, sizeof(*v->hidden));
	v->sum_of = malloc(m * sizeof(*v->sum_of));
	v->keys = malloc(m * sizeof(*v->keys));
	v->durs = malloc(m * sizeof(*v->durs));
	v->sums = malloc((m / COLLAPSE_MIN + 1) * sizeof(*v->sums));
	v->pend = malloc((m / COLLAPSE_MIN + 1) * sizeof(*v->pend));
	v->last_of = malloc((n + 1) * sizeof(*v->last_of));
	v->e = malloc((n + m / COLLAPSE_MIN + 1) * sizeof(*v->e));
	if (!v->sub || !v->sub_err || !v->sub_skew || !v->hidden || !v->sum_of || !v->keys || !v->durs || !v->sums ||
	    !v->pend || !v->last_of || !v->e) {
		view_free(v);
		return -ENOMEM;
	}
	for (size_t k = n; k-- > 0;) {
		size_t i = a->order[k], p = a->spans[i].parent;
		v->sub[i]++;
		v->sub_err[i] += (a->spans[i].flags & CO_AN_ERROR) != 0;
		v->sub_skew[i] += (a->spans[i].flags & CO_AN_SKEW) != 0;
		if (p != NONE) {
			v->sub[p] += v->sub[i];
			v->sub_err[p] += v->sub_err[i];
			v->sub_skew[p] += v->sub_skew[i];
		}
		v->sum_of[i] = NONE;
	}
	collapse_groups(a, v);
	/* A subtree is contiguous in tree order: a hidden span skips sub[i] places. */
	size_t np = 0;
	size_t *pend_end = v->last_of; /* borrowed: where each pending summary's anchor subtree ends */
	for (size_t k = 0; k <= n;) {
		while (np > 0 && pend_end[np - 1] <= k) {
			size_t s = v->pend[--np];
			v->e[v->ne++] = (entry){.idx = v->sums[s].anchor, .sum = s};
		}
		if (k == n)
			break;
		size_t i = a->order[k];
		if (v->hidden[i]) {
			k += v->sub[i];
			continue;
		}
		v->e[v->ne++] = (entry){.idx = i, .sum = NONE};
		if (v->sum_of[i] != NONE) {
			pend_end[np] = k + v->sub[i];
			v->pend[np++] = v->sum_of[i];
		}
		k++;
	}
	/* Last line of each parent's (or the roots') lines. */
	for (size_t p = 0; p <= n; p++)
		v->last_of[p] = NONE;
	for (size_t j = 0; j < v->ne; j++) {
		size_t p = a->spans[v->e[j].idx].parent;
		v->last_of[p == NONE ? n : p] = j;
	}
	for (size_t j = 0; j < v->ne; j++) {
		size_t p = a->spans[v->e[j].idx].parent;
		v->e[j].last = v->last_of[p == NONE ? n : p] == j;
	}
	return 0;
}

/* The tree guides for a line at depth d ("│  " per open ancestor, then ├─ or └─). */
static void put_guides(tl_buf *b, const bool *last, size_t d, bool is_last)
{
	if (d > MAX_INDENT) {
		tl_buf_printf(b, "\xe2\x80\xa6(%zu) ", d);
		return;
	}
	for (size_t k = 1; k < d; k++)
		tl_buf_puts(b, last[k] ? "   " : "\xe2\x94\x82  ");
	if (d > 0)
		tl_buf_puts(b, is_last ? "\xe2\x94\x94\xe2\x94\x80 " : "\xe2\x94\x9c\xe2\x94\x80 ");
}

static void put_skew(tl_buf *b, const co_an_span *n)
{
	char x[32], y[32];
	tl_format_duration(n->skew_before_ns, x, sizeof(x));
	tl_format_duration(n->skew_after_ns, y, sizeof(y));
	tl_buf_puts(b, "  \xe2\x8f\xb1 clock skew: ");
	if (n->skew_before_ns && n->skew_after_ns)
		tl_buf_printf(b, "starts %s before and ends %s after its parent", x, y);
	else if (n->skew_before_ns)
		tl_buf_printf(b, "starts %s before its parent", x);
	else
		tl_buf_printf(b, "ends %s after its parent", y);
}

typedef struct style {
	const char *red, *dim, *bold, *reset;
} style;

/* Appends s right-aligned in w display columns. */
static void put_rcell(tl_buf *b, const char *s, size_t w)
{
	for (size_t used = u8width(s); used < w; used++)
		tl_buf_puts(b, " ");
	tl_buf_puts(b, s);
}

static void put_span_line(tl_buf *line, const co_analysis *a, size_t i, const bool *last, bool is_last, size_t name_w,
                          size_t svc_w, const style *st)
{
	const co_an_span *n = &a->spans[i];
	const tl_pb_span *sp = n->span;
	char dur[32];
	bool crit = on_path(a, i);
	tl_buf_puts(line, crit ? "* " : "  ");
	tl_buf cell;
	tl_buf_init(&cell, 1 << 16);
	put_guides(&cell, last, n->depth, is_last);
	if (n->flags & CO_AN_ORPHAN)
		tl_buf_puts(&cell, "\xe2\x9a\xa0 ");
	tl_buf_puts(&cell, span_name(sp));
	tl_buf_append(&cell, "", 1);
	put_cell(line, cell.data != NULL ? (const char *)cell.data : "", name_w);
	tl_buf_fini(&cell);
	tl_buf_puts(line, "  ");
	put_cell(line, n->service, svc_w);
	uint64_t s = sp->start_time_unix_nano, e = sp->end_time_unix_nano;
	tl_format_duration(co_an_duration(sp), dur, sizeof(dur));
	tl_buf_puts(line, "  ");
	put_rcell(line, dur, 9);
	if (crit)
		tl_format_duration(n->self_ns, dur, sizeof(dur));
	tl_buf_puts(line, "  ");
	put_rcell(line, crit ? dur : "", 9);
	tl_buf_puts(line, "  ");
	uint64_t total = a->end_ns > a->start_ns ? a->end_ns - a->start_ns : 0;
	size_t from = 0, to = 1;
	if (total > 0) {
		from = (size_t)((double)(s - a->start_ns) / (double)total * BAR_WIDTH);
		to = (size_t)((double)(e > s ? e - a->start_ns : s - a->start_ns) / (double)total * BAR_WIDTH + 0.5);
	}
	if (from >= BAR_WIDTH)
		from = BAR_WIDTH - 1;
	if (to <= from)
		to = from + 1;
	if (to > BAR_WIDTH)
		to = BAR_WIDTH;
	bool err = (n->flags & CO_AN_ERROR) != 0;
	tl_buf_puts(line, st->dim);
	for (size_t k = 0; k < from; k++)
		tl_buf_puts(line, "\xc2\xb7");
	tl_buf_puts(line, st->reset);
	if (err)
		tl_buf_puts(line, st->red);
	for (size_t k = from; k < to; k++)
		tl_buf_puts(line, "\xe2\x96\x88");
	if (err)
		tl_buf_puts(line, st->reset);
	tl_buf_puts(line, st->dim);
	for (size_t k = to; k < BAR_WIDTH; k++)
		tl_buf_puts(line, "\xc2\xb7");
	tl_buf_puts(line, st->reset);
	if (err)
		tl_buf_printf(line, "  %s\xe2\x9c\x97 %s%s", st->red, str_or(sp->status->message, "error"), st->reset);
	if (n->flags & CO_AN_CAUSE)
		tl_buf_printf(line, "  %s\xe2\x97\x80 root cause%s", st->bold, st->reset);
	if (n->flags & CO_AN_SKEW)
		put_skew(line, n);
	if (n->flags & CO_AN_ORPHAN) {
		char ph[17];
		tl_hex_encode(sp->parent_span_id.data, sp->parent_span_id.len > 8 ? 8 : sp->parent_span_id.len, ph);
		tl_buf_printf(line, "  (%s %s: never arrived)",
		              (n->flags & CO_AN_CYCLE) ? "parent cycle cut at" : "missing parent", ph);
	}
	if (n->flags & CO_AN_DUP_ID)
		tl_buf_puts(line, "  (duplicate span id)");
	tl_buf_puts(line, "\n");
}

static void put_sum_line(tl_buf *line, const co_analysis *a, const group_sum *s, const bool *last, bool is_last,
                         const style *st)
{
	const co_an_span *n = &a->spans[s->anchor];
	char cnt[32], p50[32], max[32], below[32];
	fmt_count(s->hidden, cnt, sizeof(cnt));
	tl_format_duration(s->p50, p50, sizeof(p50));
	tl_format_duration(s->max, max, sizeof(max));
	tl_buf_puts(line, "  ");
	tl_buf_puts(line, st->dim);
	put_guides(line, last, n->depth, is_last);
	tl_buf_printf(line, "\xe2\x80\xa6 %s more %s (%s; p50 %s, max %s, ", cnt, span_name(n->span), n->service, p50,
	              max);
	tl_buf_puts(line, st->reset);
	if (s->errors > 0)
		tl_buf_puts(line, st->red);
	tl_buf_printf(line, "errors %zu", s->errors);
	if (s->errors > 0)
		tl_buf_puts(line, st->reset);
	tl_buf_puts(line, st->dim);
	if (s->below > 0) {
		fmt_count(s->below, below, sizeof(below));
		tl_buf_printf(line, "; %s span%s below them", below, s->below == 1 ? "" : "s");
	}
	if (s->skewed > 0)
		tl_buf_printf(line, "; %zu with clock skew", s->skewed);
	tl_buf_printf(line, ")%s\n", st->reset);
}

/* The lines under the waterfall: the critical path's biggest self times, clock skew, duplicates. */
static void print_notes(const co_analysis *a, size_t hidden_groups, FILE *out, const style *st)
{
	char d[32], x[32];
	uint64_t total = a->main_root != NONE ? co_an_duration(a->spans[a->main_root].span) : 0;
	fprintf(out, "%s* critical path; SELF: time spent in the span itself on it%s\n", st->dim, st->reset);
	size_t top[TOP_SELF], nt = 0;
	for (size_t k = 0; k < a->n_critical; k++) {
		size_t i = a->critical[k];
		if (a->spans[i].self_ns == 0)
			continue;
		size_t at = nt < TOP_SELF ? nt++ : TOP_SELF;
		/* Insertion into the few largest, in order. */
		while (at > 0 && a->spans[top[at - 1]].self_ns < a->spans[i].self_ns) {
			if (at < TOP_SELF)
				top[at] = top[at - 1];
			at--;
		}
		if (at < TOP_SELF)
			top[at] = i;
	}
	if (nt > 0 && total > 0) {
		fprintf(out, "Most self time on the critical path:");
		for (size_t k = 0; k < nt; k++) {
			const co_an_span *n = &a->spans[top[k]];
			double pct = 100.0 * (double)n->self_ns / (double)total;
			tl_format_duration(n->self_ns, d, sizeof(d));
			if (pct >= 0.5)
				fprintf(out, "%s %s (%s) %s %.0f%%", k ? "," : "", span_name(n->span), n->service, d,
				        pct);
			else
				fprintf(out, "%s %s (%s) %s <1%%", k ? "," : "", span_name(n->span), n->service, d);
		}
		fputc('\n', out);
	}
	if (a->n_skewed > 0) {
		size_t worst = NONE;
		uint64_t wv = 0;
		for (size_t i = 0; i < a->count; i++) {
			uint64_t v = a->spans[i].skew_before_ns > a->spans[i].skew_after_ns ? a->spans[i].skew_before_ns
			                                                                    : a->spans[i].skew_after_ns;
			if ((a->spans[i].flags & CO_AN_SKEW) && (worst == NONE || v > wv)) {
				worst = i;
				wv = v;
			}
		}
		tl_format_duration(wv, x, sizeof(x));
		fmt_count(a->n_skewed, d, sizeof(d));
		fprintf(out,
		        "\xe2\x8f\xb1 clock skew: %s span%s outside %s parent's window (largest %s, %s in %s); times "
		        "are "
		        "shown as recorded, not adjusted\n",
		        d, a->n_skewed == 1 ? " lies" : "s lie", a->n_skewed == 1 ? "its" : "their", x,
		        span_name(a->spans[worst].span), a->spans[worst].service);
	}
	if (a->n_dup_ids > 0)
		fprintf(out, "%zu spans share a span id with another span; children attach to the earliest\n",
		        a->n_dup_ids);
	if (hidden_groups > 0)
		fprintf(out,
		        "%s\xe2\x80\xa6 lines sum up groups of more than %d siblings with the same service and "
		        "operation%s\n",
		        st->dim, COLLAPSE_MIN, st->reset);
}

static int print_text(const co_cli *cli, const co_analysis *a, FILE *out)
{
	style st = {cli->color ? "\x1b[31m" : "", cli->color ? "\x1b[2m" : "", cli->color ? "\x1b[1m" : "",
	            cli->color ? "\x1b[0m" : ""};
	char idhex[65], dur[32], when[40], cnt[32];
	const ProtobufCBinaryData *tid = &a->res->trace_id;
	tl_hex_encode(tid->data, tid->len > 32 ? 32 : tid->len, idhex);
	uint64_t total = a->end_ns > a->start_ns ? a->end_ns - a->start_ns : 0;
	size_t nsvc = 0;
	const char *svcs[64];
	for (size_t i = 0; i < a->count; i++) {
		bool seen = false;
		for (size_t j = 0; j < nsvc && !seen; j++)
			seen = strcmp(svcs[j], a->spans[i].service) == 0;
		if (!seen && nsvc < 64)
			svcs[nsvc++] = a->spans[i].service;
	}
	tl_format_duration(total, dur, sizeof(dur));
	tl_format_time(a->start_ns, when, sizeof(when));
	fmt_count(a->count, cnt, sizeof(cnt));
	fprintf(out, "%sTrace %s%s  %s span%s, %zu%s service%s, %s%zu error%s%s, %s, started %s\n", st.bold, idhex,
	        st.reset, cnt, a->count == 1 ? "" : "s", nsvc, nsvc == 64 ? "+" : "", nsvc == 1 ? "" : "s",
	        a->n_errors ? st.red : "", a->n_errors, a->n_errors == 1 ? "" : "s", a->n_errors ? st.reset : "", dur,
	        when);
	if (a->n_orphans > 0)
		fprintf(out, "%zu span%s whose parent never arrived %s marked \xe2\x9a\xa0\n", a->n_orphans,
		        a->n_orphans == 1 ? "" : "s", a->n_orphans == 1 ? "is" : "are");

	view v;
	int rc = view_build(a, &v);
	if (rc != 0)
		return rc;
	bool *last = calloc(a->count + 2, sizeof(bool));
	if (last == NULL) {
		view_free(&v);
		return -ENOMEM;
	}
	/* Column widths from the lines shown, capped so a line stays readable. */
	size_t name_w = 9, svc_w = 7;
	for (size_t j = 0; j < v.ne; j++) {
		if (v.e[j].sum != NONE)
			continue;
		const co_an_span *n = &a->spans[v.e[j].idx];
		size_t w = u8width(span_name(n->span)) + 3 * (n->depth > MAX_INDENT ? MAX_INDENT : n->depth) +
		           ((n->flags & CO_AN_ORPHAN) ? 2 : 0);
		if (w > name_w)
			name_w = w;
		w = u8width(n->service);
		if (w > svc_w)
			svc_w = w;
	}
	if (name_w > 60)
		name_w = 60;
	if (svc_w > 24)
		svc_w = 24;

	tl_buf line;
	tl_buf_init(&line, 1 << 20);
	tl_buf_puts(&line, "  ");
	put_cell(&line, "OPERATION", name_w);
	tl_buf_puts(&line, "  ");
	put_cell(&line, "SERVICE", svc_w);
	tl_buf_printf(&line, "  %9s  %9s  0", "DURATION", "SELF");
	for (int i = 1; i < BAR_WIDTH - (int)u8width(dur); i++)
		tl_buf_puts(&line, " ");
	tl_buf_printf(&line, "%s\n", dur);
	fputs(st.dim, out);
	fwrite(line.data, 1, line.len, out);
	fputs(st.reset, out);
	for (size_t j = 0; j < v.ne; j++) {
		const entry *e = &v.e[j];
		size_t d = a->spans[e->idx].depth;
		last[d < a->count + 1 ? d : a->count + 1] = e->last;
		tl_buf_reset(&line);
		if (e->sum == NONE)
			put_span_line(&line, a, e->idx, last, e->last, name_w, svc_w, &st);
		else
			put_sum_line(&line, a, &v.sums[e->sum], last, e->last, &st);
		fwrite(line.data, 1, line.len, out);
	}
	print_notes(a, v.nsums, out, &st);
	tl_buf_fini(&line);
	free(last);
	view_free(&v);
	return ferror(out) ? -EIO : 0;
}

int co_cli_trace_print(const co_cli *cli, const tl_pb_trace_result *res, FILE *out)
{
	co_analysis *a = NULL;
	int rc = co_analyze(res, &a);
	if (rc != 0)
		return rc;
	rc = cli->json ? print_json(a, out) : print_text(cli, a, out);
	co_analysis_free(a);
	return rc;
}

int co_cli_trace_root_cause(const tl_pb_trace_result *res, char *buf, size_t len)
{
	co_analysis *a = NULL;
	int rc = co_analyze(res, &a);
	if (rc != 0)
		return rc;
	rc = TL_ENOTFOUND;
	if (a->cause != NONE) {
		const co_an_span *c = &a->spans[a->cause];
		snprintf(buf, len, "%s %s: %s", c->service, span_name(c->span),
		         str_or(c->span->status->message, "error"));
		rc = 0;
	}
	co_analysis_free(a);
	return rc;
}

static const char trace_usage[] = "usage: threadline trace show TRACE_ID [--json]\n";

int co_cli_trace(co_cli *cli, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "show") != 0) {
		fprintf(stderr, "threadline trace: expected a subcommand: show\n%s", trace_usage);
		return CLI_USAGE;
	}
	const char *id = NULL;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			cli->json = true;
		} else if (strcmp(argv[i], "--help") == 0) {
			fputs(trace_usage, stdout);
			return CLI_OK;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "threadline trace show: unknown option '%s'\n%s", argv[i], trace_usage);
			return CLI_USAGE;
		} else if (id == NULL) {
			id = argv[i];
		} else {
			fprintf(stderr, "threadline trace show: unexpected argument '%s'\n%s", argv[i], trace_usage);
			return CLI_USAGE;
		}
	}
	if (id == NULL) {
		fprintf(stderr, "threadline trace show: missing TRACE_ID\n%s", trace_usage);
		return CLI_USAGE;
	}
	uint8_t tid[16];
	int rc = tl_hex_decode(id, strlen(id), tid, sizeof(tid));
	if (rc != 0) {
		fprintf(stderr, "threadline trace show: TRACE_ID must be 32 hex digits, got '%s'\n", id);
		return CLI_USAGE;
	}
	tl_pb_query_req q;
	tl_pb_trace_get tg;
	threadline__v1__query_request__init(&q);
	threadline__v1__trace_get__init(&tg);
	tg.trace_id.data = tid;
	tg.trace_id.len = sizeof(tid);
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_GET;
	q.trace_get = &tg;
	tl_pb_query_resp *resp = NULL;
	rc = co_cli_query(cli, &q, &resp);
	if (rc != 0)
		return CLI_UNREACHABLE;
	int code = CLI_OK;
	if (resp->code != 0) {
		fprintf(stderr, "threadline: %s\n",
		        resp->error != NULL && resp->error[0] ? resp->error : tl_strerror(resp->code));
		code = CLI_ERR;
	} else if (resp->trace == NULL) {
		fprintf(stderr, "threadline: trace %s not found\n", id);
		code = CLI_ERR;
	} else if ((rc = co_cli_trace_print(cli, resp->trace, stdout)) != 0) {
		fprintf(stderr, "threadline: printing the trace: %s\n", tl_strerror(rc));
		code = CLI_ERR;
	}
	threadline__v1__query_response__free_unpacked(resp, NULL);
	return code;
}
