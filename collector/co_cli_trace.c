/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline trace show`: fetches one trace and prints it as a waterfall
 * (tree by parent, service, operation, duration bar, errors, spans whose
 * parent never arrived, the critical path) or as JSON.
 */
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

#define NONE SIZE_MAX
#define BAR_WIDTH 40

typedef struct node {
	const tl_pb_span *sp;
	const tl_pb_resource *res;
	const tl_pb_scope *scope;
	const char *service;
	size_t parent;
	size_t first_child, last_child, next_sibling;
	bool missing_parent;
	bool critical;
} node;

typedef struct tree {
	node *n;
	size_t count;
	size_t *by_id; /* indexes sorted by span id, for parent lookup */
	uint64_t start, end;
} tree;

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

static bool is_error(const tl_pb_span *sp)
{
	return sp->status != NULL && sp->status->code == TL_PB_STATUS_ERROR;
}

static const char *service_of(const tl_pb_resource *r)
{
	if (r != NULL) {
		for (size_t i = 0; i < r->n_attributes; i++) {
			const tl_pb_keyvalue *kv = r->attributes[i];
			if (strcmp(kv->key, "service.name") == 0 && kv->value != NULL &&
			    kv->value->value_case == TL_PB_ANY_STRING)
				return kv->value->string_value;
		}
	}
	return "unknown_service";
}

static int cmp_bytes(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = n ? memcmp(a->data, b->data, n) : 0;
	if (c != 0)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

static int cmp_start(const void *x, const void *y)
{
	const node *a = x, *b = y;
	if (a->sp->start_time_unix_nano != b->sp->start_time_unix_nano)
		return a->sp->start_time_unix_nano < b->sp->start_time_unix_nano ? -1 : 1;
	return cmp_bytes(&a->sp->span_id, &b->sp->span_id);
}

static const node *sort_nodes; /* qsort has no context argument; set only around the call */

static int cmp_id(const void *x, const void *y)
{
	return cmp_bytes(&sort_nodes[*(const size_t *)x].sp->span_id, &sort_nodes[*(const size_t *)y].sp->span_id);
}

static size_t find_span(const tree *t, const ProtobufCBinaryData *id)
{
	size_t lo = 0, hi = t->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_bytes(&t->n[t->by_id[mid]].sp->span_id, id);
		if (c == 0)
			return t->by_id[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NONE;
}

static void tree_free(tree *t)
{
	free(t->n);
	free(t->by_id);
}

static int cmp_end_desc(const void *x, const void *y)
{
	const node *a = *(node *const *)x, *b = *(node *const *)y;
	if (a->sp->end_time_unix_nano != b->sp->end_time_unix_nano)
		return a->sp->end_time_unix_nano > b->sp->end_time_unix_nano ? -1 : 1;
	return 0;
}

/* Marks the critical path below root: walking back from the parent's end, the
 * child that finished last, then the last one that finished before it started... */
static int mark_critical(tree *t, size_t root)
{
	size_t *stack = malloc(t->count * sizeof(*stack));
	node **kids = malloc(t->count * sizeof(*kids));
	if (stack == NULL || kids == NULL) {
		free(stack);
		free(kids);
		return -ENOMEM;
	}
	size_t sp = 0;
	stack[sp++] = root;
	while (sp > 0) {
		node *n = &t->n[stack[--sp]];
		n->critical = true;
		size_t nk = 0;
		for (size_t c = n->first_child; c != NONE; c = t->n[c].next_sibling)
			kids[nk++] = &t->n[c];
		qsort(kids, nk, sizeof(*kids), cmp_end_desc);
		uint64_t cursor = n->sp->end_time_unix_nano;
		for (size_t i = 0; i < nk; i++) {
			if (i == 0 || kids[i]->sp->end_time_unix_nano <= cursor) {
				stack[sp++] = (size_t)(kids[i] - t->n);
				cursor = kids[i]->sp->start_time_unix_nano;
			}
		}
	}
	free(stack);
	free(kids);
	return 0;
}

static int tree_build(const tl_pb_trace_result *res, tree *t)
{
	memset(t, 0, sizeof(*t));
	size_t count = 0;
	for (size_t i = 0; i < res->n_resource_spans; i++)
		for (size_t j = 0; j < res->resource_spans[i]->n_scope_spans; j++)
			count += res->resource_spans[i]->scope_spans[j]->n_spans;
	t->n = calloc(count ? count : 1, sizeof(node));
	t->by_id = calloc(count ? count : 1, sizeof(size_t));
	if (t->n == NULL || t->by_id == NULL) {
		tree_free(t);
		return -ENOMEM;
	}
	t->start = UINT64_MAX;
	for (size_t i = 0; i < res->n_resource_spans; i++) {
		const tl_pb_resource_spans *rs = res->resource_spans[i];
		const char *svc = service_of(rs->resource);
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[j];
			for (size_t k = 0; k < ss->n_spans; k++) {
				node *n = &t->n[t->count++];
				n->sp = ss->spans[k];
				n->res = rs->resource;
				n->scope = ss->scope;
				n->service = svc;
				if (n->sp->start_time_unix_nano < t->start)
					t->start = n->sp->start_time_unix_nano;
				if (n->sp->end_time_unix_nano > t->end)
					t->end = n->sp->end_time_unix_nano;
			}
		}
	}
	if (t->count == 0)
		t->start = 0;
	qsort(t->n, t->count, sizeof(node), cmp_start);
	for (size_t i = 0; i < t->count; i++)
		t->by_id[i] = i;
	sort_nodes = t->n;
	qsort(t->by_id, t->count, sizeof(size_t), cmp_id);
	sort_nodes = NULL;
	for (size_t i = 0; i < t->count; i++)
		t->n[i].first_child = t->n[i].last_child = t->n[i].next_sibling = t->n[i].parent = NONE;
	for (size_t i = 0; i < t->count; i++) {
		node *n = &t->n[i];
		if (n->sp->parent_span_id.len == 0)
			continue;
		size_t p = find_span(t, &n->sp->parent_span_id);
		if (p == NONE || p == i)
			n->missing_parent = true;
		else
			n->parent = p;
	}
	/* A parent cycle (corrupt or hostile data) would hide spans and loop every walk below. Each
	 * chain of parents is walked once (state: 0 new, 1 on the current walk, 2 done); where a walk
	 * meets itself, the cycle is cut there and that span becomes a root, shown like an orphan.
	 * Done before the child lists exist, so they hold no cycle. */
	unsigned char *state = calloc(t->count ? t->count : 1, 1);
	if (state == NULL) {
		tree_free(t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->count; i++) {
		size_t cur = i;
		while (cur != NONE && state[cur] == 0) {
			state[cur] = 1;
			size_t p = t->n[cur].parent;
			if (p != NONE && state[p] == 1) {
				t->n[cur].parent = NONE;
				t->n[cur].missing_parent = true;
				p = NONE;
			}
			cur = p;
		}
		for (cur = i; cur != NONE && state[cur] == 1; cur = t->n[cur].parent)
			state[cur] = 2;
	}
	free(state);
	for (size_t i = 0; i < t->count; i++) {
		size_t p = t->n[i].parent;
		if (p == NONE)
			continue;
		if (t->n[p].last_child == NONE)
			t->n[p].first_child = i;
		else
			t->n[t->n[p].last_child].next_sibling = i;
		t->n[p].last_child = i;
	}
	size_t main_root = NONE;
	for (size_t i = 0; i < t->count && main_root == NONE; i++)
		if (t->n[i].sp->parent_span_id.len == 0)
			main_root = i;
	if (main_root == NONE && t->count > 0)
		main_root = 0;
	if (main_root != NONE)
		return mark_critical(t, main_root);
	return 0;
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

static json_t *span_to_json(const node *n)
{
	const tl_pb_span *sp = n->sp;
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
	for (size_t i = 0; i < sp->n_events; i++) {
		const tl_pb_event *e = sp->events[i];
		json_t *eo = json_object();
		json_object_set_new(eo, "name", json_string(e->name != NULL ? e->name : ""));
		json_object_set_new(eo, "time_unix_nano", ns_json(e->time_unix_nano));
		json_object_set_new(eo, "attributes", attrs_to_json(e->attributes, e->n_attributes, 0));
		json_array_append_new(evs, eo);
	}
	json_object_set_new(o, "events", evs);
	json_t *links = json_array();
	for (size_t i = 0; i < sp->n_links; i++) {
		const tl_pb_link *l = sp->links[i];
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
	                    n->res != NULL ? attrs_to_json(n->res->attributes, n->res->n_attributes, 0)
	                                   : json_object());
	json_object_set_new(o, "scope",
	                    json_pack("{s:s,s:s}", "name",
	                              n->scope != NULL && n->scope->name != NULL ? n->scope->name : "", "version",
	                              n->scope != NULL && n->scope->version != NULL ? n->scope->version : ""));
	json_object_set_new(o, "missing_parent", json_boolean(n->missing_parent));
	json_object_set_new(o, "critical_path", json_boolean(n->critical));
	return o;
}

static int print_json(const tl_pb_trace_result *res, const tree *t, FILE *out)
{
	json_t *root = json_object();
	json_object_set_new(root, "trace_id", hex_json(&res->trace_id));
	json_t *spans = json_array();
	for (size_t i = 0; i < t->count; i++)
		json_array_append_new(spans, span_to_json(&t->n[i]));
	json_object_set_new(root, "spans", spans);
	int rc = json_dumpf(root, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	fputc('\n', out);
	json_decref(root);
	return rc == 0 ? 0 : -EIO;
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

static int print_text(const co_cli *cli, const tl_pb_trace_result *res, const tree *t, FILE *out)
{
	const char *red = cli->color ? "\x1b[31m" : "", *dim = cli->color ? "\x1b[2m" : "",
	           *bold = cli->color ? "\x1b[1m" : "", *reset = cli->color ? "\x1b[0m" : "";
	char idhex[65], dur[32], when[40];
	tl_hex_encode(res->trace_id.data, res->trace_id.len > 32 ? 32 : res->trace_id.len, idhex);
	uint64_t total = t->end > t->start ? t->end - t->start : 0;
	size_t errors = 0, orphans = 0, nsvc = 0;
	const char *svcs[64];
	for (size_t i = 0; i < t->count; i++) {
		errors += is_error(t->n[i].sp);
		orphans += t->n[i].missing_parent;
		bool seen = false;
		for (size_t j = 0; j < nsvc && !seen; j++)
			seen = strcmp(svcs[j], t->n[i].service) == 0;
		if (!seen && nsvc < 64)
			svcs[nsvc++] = t->n[i].service;
	}
	tl_format_duration(total, dur, sizeof(dur));
	tl_format_time(t->start, when, sizeof(when));
	fprintf(out, "%sTrace %s%s  %zu span%s, %zu service%s, %s%zu error%s%s, %s, started %s\n", bold, idhex, reset,
	        t->count, t->count == 1 ? "" : "s", nsvc, nsvc == 1 ? "" : "s", errors ? red : "", errors,
	        errors == 1 ? "" : "s", errors ? reset : "", dur, when);
	if (orphans > 0)
		fprintf(out, "%zu span%s whose parent never arrived %s marked \xe2\x9a\xa0\n", orphans,
		        orphans == 1 ? "" : "s", orphans == 1 ? "is" : "are");

	/* Column widths from the data, capped so a line stays readable. */
	size_t name_w = 9, svc_w = 7;
	size_t *depth = calloc(t->count ? t->count : 1, sizeof(size_t));
	size_t *stack = malloc((t->count ? t->count : 1) * sizeof(size_t));
	bool *last = calloc(t->count + 1, sizeof(bool));
	size_t *order = malloc((t->count ? t->count : 1) * sizeof(size_t));
	if (depth == NULL || stack == NULL || last == NULL || order == NULL) {
		free(depth);
		free(stack);
		free(last);
		free(order);
		return -ENOMEM;
	}
	/* Preorder: roots (no parent or missing parent) by start, children by start. */
	size_t no = 0, sp = 0;
	for (size_t r = t->count; r-- > 0;)
		if (t->n[r].parent == NONE)
			stack[sp++] = r;
	while (sp > 0) {
		size_t i = stack[--sp];
		order[no++] = i;
		size_t nk = 0;
		for (size_t c = t->n[i].first_child; c != NONE; c = t->n[c].next_sibling)
			nk++;
		/* Push children in reverse so the earliest is printed first. */
		sp += nk;
		size_t k = sp;
		for (size_t c = t->n[i].first_child; c != NONE; c = t->n[c].next_sibling) {
			stack[--k] = c;
			depth[c] = depth[i] + 1;
		}
	}
	for (size_t i = 0; i < t->count; i++) {
		size_t w = u8width(t->n[i].sp->name ? t->n[i].sp->name : "") + 3 * (depth[i] > 12 ? 12 : depth[i]) +
		           (t->n[i].missing_parent ? 2 : 0);
		if (w > name_w)
			name_w = w;
		w = u8width(t->n[i].service);
		if (w > svc_w)
			svc_w = w;
	}
	if (name_w > 60)
		name_w = 60;
	if (svc_w > 24)
		svc_w = 24;

	tl_buf line;
	tl_buf_init(&line, 1 << 16);
	tl_buf_puts(&line, "  ");
	put_cell(&line, "OPERATION", name_w);
	tl_buf_puts(&line, "  ");
	put_cell(&line, "SERVICE", svc_w);
	tl_buf_printf(&line, "  %9s  0", "DURATION");
	for (int i = 1; i < BAR_WIDTH - (int)strlen(dur); i++)
		tl_buf_puts(&line, " ");
	tl_buf_printf(&line, "%s\n", dur);
	fputs(dim, out);
	fwrite(line.data, 1, line.len, out);
	fputs(reset, out);

	for (size_t o = 0; o < no; o++) {
		size_t i = order[o];
		const node *n = &t->n[i];
		tl_buf_reset(&line);
		/* Is this node the last of its siblings? */
		bool is_last = n->next_sibling == NONE;
		if (n->parent == NONE) {
			is_last = true;
			for (size_t r = o + 1; r < no; r++)
				if (t->n[order[r]].parent == NONE) {
					is_last = false;
					break;
				}
		}
		size_t d = depth[i];
		last[d] = is_last;
		tl_buf_puts(&line, n->critical ? "* " : "  ");
		tl_buf prefix;
		tl_buf_init(&prefix, 4096);
		if (d > 12) {
			tl_buf_printf(&prefix, "\xe2\x80\xa6(%zu) ", d);
		} else {
			for (size_t k = 1; k < d; k++)
				tl_buf_puts(&prefix, last[k] ? "   " : "\xe2\x94\x82  ");
			if (d > 0)
				tl_buf_puts(&prefix,
				            is_last ? "\xe2\x94\x94\xe2\x94\x80 " : "\xe2\x94\x9c\xe2\x94\x80 ");
		}
		if (n->missing_parent)
			tl_buf_puts(&prefix, "\xe2\x9a\xa0 ");
		tl_buf_puts(&prefix, n->sp->name ? n->sp->name : "");
		put_cell(&line, (const char *)prefix.data, name_w);
		tl_buf_fini(&prefix);
		tl_buf_puts(&line, "  ");
		put_cell(&line, n->service, svc_w);
		uint64_t s = n->sp->start_time_unix_nano, e = n->sp->end_time_unix_nano;
		tl_format_duration(e > s ? e - s : 0, dur, sizeof(dur));
		tl_buf_printf(&line, "  %9s  ", dur);
		size_t from = 0, to = 1;
		if (total > 0) {
			from = (size_t)((double)(s - t->start) / (double)total * BAR_WIDTH);
			to = (size_t)((double)(e > s ? e - t->start : s - t->start) / (double)total * BAR_WIDTH + 0.5);
		}
		if (from >= BAR_WIDTH)
			from = BAR_WIDTH - 1;
		if (to <= from)
			to = from + 1;
		if (to > BAR_WIDTH)
			to = BAR_WIDTH;
		bool err = is_error(n->sp);
		tl_buf_puts(&line, dim);
		for (size_t k = 0; k < from; k++)
			tl_buf_puts(&line, "\xc2\xb7");
		tl_buf_puts(&line, reset);
		if (err)
			tl_buf_puts(&line, red);
		for (size_t k = from; k < to; k++)
			tl_buf_puts(&line, "\xe2\x96\x88");
		if (err)
			tl_buf_puts(&line, reset);
		tl_buf_puts(&line, dim);
		for (size_t k = to; k < BAR_WIDTH; k++)
			tl_buf_puts(&line, "\xc2\xb7");
		tl_buf_puts(&line, reset);
		if (err)
			tl_buf_printf(&line, "  %s\xe2\x9c\x97 %s%s", red,
			              n->sp->status->message && n->sp->status->message[0] ? n->sp->status->message
			                                                                  : "error",
			              reset);
		if (n->missing_parent) {
			char ph[17];
			tl_hex_encode(n->sp->parent_span_id.data,
			              n->sp->parent_span_id.len > 8 ? 8 : n->sp->parent_span_id.len, ph);
			tl_buf_printf(&line, "  (missing parent %s: never arrived)", ph);
		}
		tl_buf_puts(&line, "\n");
		fwrite(line.data, 1, line.len, out);
	}
	fprintf(out, "%s* critical path%s\n", dim, reset);
	tl_buf_fini(&line);
	free(depth);
	free(stack);
	free(last);
	free(order);
	return 0;
}

int co_cli_trace_print(const co_cli *cli, const tl_pb_trace_result *res, FILE *out)
{
	tree t;
	int rc = tree_build(res, &t);
	if (rc != 0)
		return rc;
	rc = cli->json ? print_json(res, &t, out) : print_text(cli, res, &t, out);
	tree_free(&t);
	return rc;
}

int co_cli_trace_root_cause(const tl_pb_trace_result *res, char *buf, size_t len)
{
	tree t;
	int rc = tree_build(res, &t);
	if (rc != 0)
		return rc;
	bool *failing_below = calloc(t.count ? t.count : 1, sizeof(bool));
	if (failing_below == NULL) {
		tree_free(&t);
		return -ENOMEM;
	}
	/* Every failing span marks its ancestors; tree_build broke any parent cycle. */
	for (size_t i = 0; i < t.count; i++)
		if (is_error(t.n[i].sp))
			for (size_t p = t.n[i].parent; p != NONE && !failing_below[p]; p = t.n[p].parent)
				failing_below[p] = true;
	rc = TL_ENOTFOUND;
	/* Nodes are in start order, so the first candidate started first. */
	for (size_t i = 0; i < t.count && rc != 0; i++) {
		const tl_pb_span *sp = t.n[i].sp;
		if (!is_error(sp) || failing_below[i])
			continue;
		snprintf(buf, len, "%s %s: %s", t.n[i].service, sp->name ? sp->name : "",
		         sp->status->message && sp->status->message[0] ? sp->status->message : "error");
		rc = 0;
	}
	free(failing_below);
	tree_free(&t);
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
	} else if (co_cli_trace_print(cli, resp->trace, stdout) != 0) {
		fprintf(stderr, "threadline: out of memory printing the trace\n");
		code = CLI_ERR;
	}
	threadline__v1__query_response__free_unpacked(resp, NULL);
	return code;
}
