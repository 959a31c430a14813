/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Trace analysis (co_analyze.h): the tree, orphans, duplicate ids, critical
 * path and self times, clock skew and the root cause of one trace. Every
 * step is a sort or a linear pass over arrays sized by the span count;
 * tree walks use the precomputed tree order or an explicit stack, so a
 * chain of 100,000 spans costs no deeper C stack than a flat trace.
 */
#include "co_analyze.h"
#include "tl_otlp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NONE CO_AN_NONE

/* A candidate critical child, keyed for one sort of every parent's children at once. */
typedef struct ckey {
	size_t parent;
	uint64_t ee; /* end clipped to the parent's end */
	uint64_t es; /* start clipped to the parent's start */
	uint64_t start;
	size_t idx;
} ckey;

uint64_t co_an_duration(const tl_pb_span *sp)
{
	return sp->end_time_unix_nano > sp->start_time_unix_nano ? sp->end_time_unix_nano - sp->start_time_unix_nano
	                                                         : 0;
}

bool co_an_is_error(const tl_pb_span *sp)
{
	return tl_otlp_span_failed(sp);
}

const char *co_an_service_name(const tl_pb_resource *r)
{
	const char *s = tl_otlp_service_name(r);
	return s != NULL ? s : "unknown_service";
}

static int cmp_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int cmp_span_order(const void *x, const void *y)
{
	const co_an_span *a = x, *b = y;
	uint64_t sa = a->span->start_time_unix_nano, sb = b->span->start_time_unix_nano;
	if (sa != sb)
		return sa < sb ? -1 : 1;
	int c = cmp_bytes(a->span->span_id.data, a->span->span_id.len, b->span->span_id.data, b->span->span_id.len);
	if (c != 0)
		return c;
	return a->arrival < b->arrival ? -1 : a->arrival > b->arrival;
}

static int cmp_by_id(const void *x, const void *y, void *ctx)
{
	const co_an_span *s = ctx;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	const ProtobufCBinaryData *a = &s[i].span->span_id, *b = &s[j].span->span_id;
	int c = cmp_bytes(a->data, a->len, b->data, b->len);
	if (c != 0)
		return c;
	return i < j ? -1 : i > j;
}

static int cmp_ckey(const void *x, const void *y)
{
	const ckey *a = x, *b = y;
	if (a->parent != b->parent)
		return a->parent < b->parent ? -1 : 1;
	if (a->ee != b->ee)
		return a->ee > b->ee ? -1 : 1; /* ends last first */
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

size_t co_analysis_find(const co_analysis *a, const uint8_t *span_id, size_t len)
{
	if (len == 0)
		return NONE; /* an empty id names no span, even one that lacks an id */
	size_t lo = 0, hi = a->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const ProtobufCBinaryData *id = &a->spans[a->by_id[mid]].span->span_id;
		if (cmp_bytes(id->data, id->len, span_id, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < a->count) {
		const ProtobufCBinaryData *id = &a->spans[a->by_id[lo]].span->span_id;
		if (cmp_bytes(id->data, id->len, span_id, len) == 0)
			return a->by_id[lo];
	}
	return NONE;
}

void co_analysis_free(co_analysis *a)
{
	free(a);
}

/* Counts spans and links; TL_ELIMIT past CO_AN_MAX_SPANS of either. */
static int count_spans(const tl_pb_trace_result *res, size_t *spans, size_t *links)
{
	size_t n = 0, l = 0;
	for (size_t i = 0; i < res->n_resource_spans; i++) {
		const tl_pb_resource_spans *rs = res->resource_spans[i];
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[j];
			if (ss->n_spans > CO_AN_MAX_SPANS - n)
				return TL_ELIMIT;
			n += ss->n_spans;
			for (size_t k = 0; k < ss->n_spans; k++) {
				if (ss->spans[k]->n_links > CO_AN_MAX_SPANS - l)
					return TL_ELIMIT;
				l += ss->spans[k]->n_links;
			}
		}
	}
	*spans = n;
	*links = l;
	return 0;
}

/* Links every span to its parent; flags orphans and duplicate ids. */
static void link_parents(co_analysis *a)
{
	co_an_span *s = a->spans;
	size_t n = a->count;
	for (size_t k = 1; k < n; k++) {
		const ProtobufCBinaryData *x = &s[a->by_id[k - 1]].span->span_id, *y = &s[a->by_id[k]].span->span_id;
		if (x->len > 0 && cmp_bytes(x->data, x->len, y->data, y->len) == 0) {
			if (!(s[a->by_id[k - 1]].flags & CO_AN_DUP_ID))
				a->n_dup_ids++;
			s[a->by_id[k - 1]].flags |= CO_AN_DUP_ID;
			s[a->by_id[k]].flags |= CO_AN_DUP_ID;
			a->n_dup_ids++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const ProtobufCBinaryData *pid = &s[i].span->parent_span_id;
		if (pid->len == 0)
			continue;
		size_t p = co_analysis_find(a, pid->data, pid->len);
		if (p == NONE || p == i)
			s[i].flags |= CO_AN_ORPHAN;
		else
			s[i].parent = p;
	}
}

/*
 * A parent cycle would hide its spans from every root and loop every walk.
 * Each chain of parents is walked once (state: 0 new, 1 on the current walk,
 * 2 done); where a walk meets itself the link is cut and that span becomes
 * an orphan. Runs before the child lists exist, so they hold no cycle.
 */
static void cut_cycles(co_analysis *a, unsigned char *state)
{
	co_an_span *s = a->spans;
	memset(state, 0, a->count);
	for (size_t i = 0; i < a->count; i++) {
		size_t cur = i;
		while (cur != NONE && state[cur] == 0) {
			state[cur] = 1;
			size_t p = s[cur].parent;
			if (p != NONE && state[p] == 1) {
				s[cur].parent = NONE;
				s[cur].flags |= CO_AN_ORPHAN | CO_AN_CYCLE;
				p = NONE;
			}
			cur = p;
		}
		for (cur = i; cur != NONE && state[cur] == 1; cur = s[cur].parent)
			state[cur] = 2;
	}
}

/* Child lists (in span order, so by start), roots, and the tree order with depth and root. */
static void build_tree(co_analysis *a, size_t *stack)
{
	co_an_span *s = a->spans;
	size_t n = a->count;
	size_t *last = a->order; /* borrowed as "last child of" until the tree order is written */
	for (size_t i = 0; i < n; i++)
		last[i] = NONE;
	for (size_t i = 0; i < n; i++) {
		size_t p = s[i].parent;
		if (p == NONE) {
			a->roots[a->n_roots++] = i;
			a->n_orphans += (s[i].flags & CO_AN_ORPHAN) != 0;
			continue;
		}
		if (last[p] == NONE)
			s[p].first_child = i;
		else
			s[last[p]].next_sibling = i;
		last[p] = i;
		s[p].n_children++;
	}
	size_t sp = 0, no = 0;
	for (size_t r = a->n_roots; r-- > 0;) {
		size_t i = a->roots[r];
		s[i].root = i;
		s[i].depth = 0;
		stack[sp++] = i;
	}
	while (sp > 0) {
		size_t i = stack[--sp];
		a->order[no++] = i;
		/* Children go on in reverse so the earliest comes off first. */
		sp += s[i].n_children;
		size_t k = sp;
		for (size_t c = s[i].first_child; c != NONE; c = s[c].next_sibling) {
			s[c].depth = s[i].depth + 1;
			s[c].root = s[i].root;
			stack[--k] = c;
		}
	}
}

static void find_skew(co_analysis *a)
{
	co_an_span *s = a->spans;
	for (size_t i = 0; i < a->count; i++) {
		size_t p = s[i].parent;
		if (p == NONE)
			continue;
		const tl_pb_span *c = s[i].span, *ps = s[p].span;
		if (c->start_time_unix_nano < ps->start_time_unix_nano)
			s[i].skew_before_ns = ps->start_time_unix_nano - c->start_time_unix_nano;
		bool async = ps->kind == OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER ||
		             c->kind == OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER;
		if (!async && c->end_time_unix_nano > ps->end_time_unix_nano)
			s[i].skew_after_ns = c->end_time_unix_nano - ps->end_time_unix_nano;
		if (s[i].skew_before_ns != 0 || s[i].skew_after_ns != 0) {
			s[i].flags |= CO_AN_SKEW;
			a->n_skewed++;
		}
	}
}

/* Chooses every span's critical children and self time, then marks the paths from the roots. */
static void find_critical(co_analysis *a, ckey *keys)
{
	co_an_span *s = a->spans;
	size_t nk = 0;
	for (size_t i = 0; i < a->count; i++) {
		s[i].self_ns = co_an_duration(s[i].span);
		size_t p = s[i].parent;
		if (p == NONE)
			continue;
		const tl_pb_span *c = s[i].span, *ps = s[p].span;
		uint64_t pe = ps->end_time_unix_nano > ps->start_time_unix_nano ? ps->end_time_unix_nano
		                                                                : ps->start_time_unix_nano;
		uint64_t es = c->start_time_unix_nano > ps->start_time_unix_nano ? c->start_time_unix_nano
		                                                                 : ps->start_time_unix_nano;
		uint64_t ee = c->end_time_unix_nano < pe ? c->end_time_unix_nano : pe;
		uint64_t cs = c->start_time_unix_nano, ce = c->end_time_unix_nano;
		bool meets = (cs < pe && ce > ps->start_time_unix_nano) ||
		             (cs == ce && cs >= ps->start_time_unix_nano && cs <= pe);
		if (!meets)
			continue; /* outside the parent's window (or backwards): never waited for */
		keys[nk++] = (ckey){.parent = p, .ee = ee, .es = es, .start = c->start_time_unix_nano, .idx = i};
	}
	qsort(keys, nk, sizeof(*keys), cmp_ckey);
	for (size_t k = 0; k < nk;) {
		size_t p = keys[k].parent;
		const tl_pb_span *ps = s[p].span;
		uint64_t cursor = ps->end_time_unix_nano > ps->start_time_unix_nano ? ps->end_time_unix_nano
		                                                                    : ps->start_time_unix_nano;
		uint64_t covered = 0;
		for (; k < nk && keys[k].parent == p; k++) {
			if (keys[k].ee > cursor)
				continue;
			s[keys[k].idx].flags |= CO_AN_CRIT_CHILD;
			covered += keys[k].ee - keys[k].es;
			cursor = keys[k].es;
		}
		s[p].self_ns = s[p].self_ns > covered ? s[p].self_ns - covered : 0;
	}
	/* Tree order puts every parent before its children. */
	for (size_t k = 0; k < a->count; k++) {
		size_t i = a->order[k], p = s[i].parent;
		if (p == NONE || ((s[i].flags & CO_AN_CRIT_CHILD) && (s[p].flags & CO_AN_CRITICAL)))
			s[i].flags |= CO_AN_CRITICAL;
		if ((s[i].flags & CO_AN_CRITICAL) && s[i].root == a->main_root)
			a->critical[a->n_critical++] = i;
	}
}

static void find_cause(co_analysis *a)
{
	co_an_span *s = a->spans;
	for (size_t i = 0; i < a->count; i++) {
		if (co_an_is_error(s[i].span)) {
			s[i].flags |= CO_AN_ERROR;
			a->n_errors++;
		}
	}
	/* Reverse tree order visits every child before its parent. */
	for (size_t k = a->count; k-- > 0;) {
		size_t i = a->order[k], p = s[i].parent;
		if (p != NONE && (s[i].flags & (CO_AN_ERROR | CO_AN_ERROR_BELOW)))
			s[p].flags |= CO_AN_ERROR_BELOW;
	}
	a->cause = NONE;
	for (size_t i = 0; i < a->count && a->cause == NONE; i++)
		if ((s[i].flags & (CO_AN_ERROR | CO_AN_ERROR_BELOW)) == CO_AN_ERROR)
			a->cause = i;
	if (a->n_errors == 0)
		a->outcome = CO_AN_OK;
	else if (s[a->main_root].flags & CO_AN_ERROR)
		a->outcome = CO_AN_FAILED;
	else
		a->outcome = CO_AN_RECOVERED;
	if (a->cause == NONE)
		return;
	s[a->cause].flags |= CO_AN_CAUSE;
	a->n_cause_chain = s[a->cause].depth + 1;
	size_t k = a->n_cause_chain;
	for (size_t i = a->cause; i != NONE; i = s[i].parent) {
		s[i].flags |= CO_AN_CAUSE_CHAIN;
		a->cause_chain[--k] = i;
	}
	for (k = 0; k < a->n_cause_chain; k++) {
		size_t i = a->cause_chain[k];
		const tl_pb_span *sp = s[i].span;
		for (size_t l = 0; l < sp->n_links; l++) {
			const tl_pb_link *lk = sp->links[l];
			co_an_link *out = &a->cause_links[a->n_cause_links++];
			out->span = i;
			out->link = lk;
			out->same_trace = lk->trace_id.len > 0 && cmp_bytes(lk->trace_id.data, lk->trace_id.len,
			                                                    sp->trace_id.data, sp->trace_id.len) == 0;
			out->target = out->same_trace ? co_analysis_find(a, lk->span_id.data, lk->span_id.len) : NONE;
		}
	}
}

int co_analyze(const tl_pb_trace_result *res, co_analysis **out)
{
	size_t n, nl;
	int rc = count_spans(res, &n, &nl);
	if (rc != 0)
		return rc;
	/* One block: the header, then the arrays (all 8-byte aligned: every element holds a size_t). */
	size_t sz = sizeof(co_analysis) + n * sizeof(co_an_span) + 5 * n * sizeof(size_t) + nl * sizeof(co_an_link);
	co_analysis *a = malloc(sz);
	size_t scratch_sz = n * (sizeof(ckey) + sizeof(size_t) + 1);
	unsigned char *scratch = malloc(scratch_sz ? scratch_sz : 1);
	if (a == NULL || scratch == NULL) {
		free(a);
		free(scratch);
		return -ENOMEM;
	}
	memset(a, 0, sizeof(*a));
	unsigned char *p = (unsigned char *)(a + 1);
	a->spans = (co_an_span *)p;
	p += n * sizeof(co_an_span);
	size_t **arrays[] = {&a->by_id, &a->order, &a->roots, &a->critical, &a->cause_chain};
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
		*arrays[i] = (size_t *)p;
		p += n * sizeof(size_t);
	}
	a->cause_links = (co_an_link *)p;
	ckey *keys = (ckey *)scratch;
	size_t *stack = (size_t *)(scratch + n * sizeof(ckey));
	unsigned char *state = scratch + n * (sizeof(ckey) + sizeof(size_t));

	a->res = res;
	a->count = n;
	a->main_root = a->cause = NONE;
	size_t at = 0;
	a->start_ns = n ? UINT64_MAX : 0;
	for (size_t i = 0; i < res->n_resource_spans; i++) {
		const tl_pb_resource_spans *rs = res->resource_spans[i];
		const char *svc = co_an_service_name(rs->resource);
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[j];
			for (size_t k = 0; k < ss->n_spans; k++, at++) {
				co_an_span *s = &a->spans[at];
				const tl_pb_span *sp = ss->spans[k];
				*s = (co_an_span){.span = sp,
				                  .resource = rs->resource,
				                  .scope = ss->scope,
				                  .service = svc,
				                  .arrival = at,
				                  .parent = NONE,
				                  .first_child = NONE,
				                  .next_sibling = NONE,
				                  .root = NONE};
				if (sp->start_time_unix_nano < a->start_ns)
					a->start_ns = sp->start_time_unix_nano;
				if (sp->end_time_unix_nano > a->end_ns)
					a->end_ns = sp->end_time_unix_nano;
			}
		}
	}
	qsort(a->spans, n, sizeof(co_an_span), cmp_span_order);
	for (size_t i = 0; i < n; i++)
		a->by_id[i] = i;
	qsort_r(a->by_id, n, sizeof(size_t), cmp_by_id, a->spans);
	link_parents(a);
	cut_cycles(a, state);
	build_tree(a, stack);
	for (size_t r = 0; r < a->n_roots && a->main_root == NONE; r++)
		if (a->spans[a->roots[r]].span->parent_span_id.len == 0)
			a->main_root = a->roots[r];
	if (a->main_root == NONE && a->n_roots > 0)
		a->main_root = a->roots[0];
	find_skew(a);
	find_critical(a, keys);
	find_cause(a);
	free(scratch);
	*out = a;
	return 0;
}
