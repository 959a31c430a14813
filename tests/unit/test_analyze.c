/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Trace analysis (collector/co_analyze.c) on traces built in memory: the
 * tree with orphans, several roots and duplicate ids; the critical path and
 * self times on a worked example; clock skew both ways; root causes in
 * multi-service failures (deepest service, swallowed and re-raised, a
 * retry that recovered, an async hop joined by a span link); and a trace
 * of 100,000 spans.
 */
#include "co_analyze.h"

#include "tl_error.h"
#include "tl_pb.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define NONE CO_AN_NONE
#define MAXSVC 8

typedef struct sdata {
	tl_pb_span span;
	tl_pb_status st;
	uint8_t id[8], parent[8];
	size_t svc;
	tl_pb_link link[2], *linkp[2];
	uint8_t link_tid[2][16], link_sid[2][8];
} sdata;

typedef struct svc {
	const char *name;
	tl_pb_anyvalue v;
	tl_pb_keyvalue kv, *kvp;
	tl_pb_resource res;
	tl_pb_scope_spans ss, *ssp;
	tl_pb_resource_spans rs;
	tl_pb_span **ptrs;
} svc;

static struct {
	sdata *s;
	size_t n, cap;
	svc svcs[MAXSVC];
	size_t nsvc;
	tl_pb_resource_spans *rsp[MAXSVC];
	uint8_t tid[16];
	tl_pb_trace_result res;
	co_analysis *a;
} fx;

static void fx_init(void)
{
	memset(&fx, 0, sizeof(fx));
	memset(fx.tid, 0xab, sizeof(fx.tid));
	fx.cap = 64;
	fx.s = calloc(fx.cap, sizeof(*fx.s));
	cr_assert_not_null(fx.s);
}

static void fx_fini(void)
{
	co_analysis_free(fx.a);
	for (size_t i = 0; i < fx.nsvc; i++)
		free(fx.svcs[i].ptrs);
	free(fx.s);
}

static void put_id(uint8_t out[8], uint32_t id)
{
	memset(out, 0, 8);
	out[4] = (uint8_t)(id >> 24);
	out[5] = (uint8_t)(id >> 16);
	out[6] = (uint8_t)(id >> 8);
	out[7] = (uint8_t)id;
}

static size_t svc_index(const char *name)
{
	for (size_t i = 0; i < fx.nsvc; i++)
		if (strcmp(fx.svcs[i].name, name) == 0)
			return i;
	cr_assert_lt(fx.nsvc, MAXSVC);
	fx.svcs[fx.nsvc].name = name;
	return fx.nsvc++;
}

/*
 * Adds a span with id (non-zero) and parent (0: a root; an id no span has:
 * a missing parent) in service svc. err != NULL gives it status ERROR.
 * The pointer stays valid until the next add().
 */
static tl_pb_span *add(uint32_t id, uint32_t parent, const char *service, const char *name, uint64_t start,
                       uint64_t end, const char *err)
{
	if (fx.n == fx.cap) {
		fx.cap *= 2;
		sdata *ns = realloc(fx.s, fx.cap * sizeof(*fx.s));
		cr_assert_not_null(ns);
		fx.s = ns;
	}
	sdata *d = &fx.s[fx.n++];
	memset(d, 0, sizeof(*d));
	opentelemetry__proto__trace__v1__span__init(&d->span);
	d->svc = svc_index(service);
	put_id(d->id, id);
	d->span.span_id.len = 8;
	if (parent != 0) {
		put_id(d->parent, parent);
		d->span.parent_span_id.len = 8;
	}
	d->span.name = (char *)name;
	d->span.start_time_unix_nano = start;
	d->span.end_time_unix_nano = end;
	if (err != NULL) {
		opentelemetry__proto__trace__v1__status__init(&d->st);
		d->st.code = TL_PB_STATUS_ERROR;
		d->st.message = (char *)err;
		d->span.status = &d->st;
	}
	return &d->span;
}

/* Adds a link from the last span added to span sid of trace tid_byte (every byte of the trace id). */
static void add_link(uint8_t tid_byte, uint32_t sid)
{
	sdata *d = &fx.s[fx.n - 1];
	size_t k = d->span.n_links++;
	cr_assert_lt(k, 2);
	opentelemetry__proto__trace__v1__span__link__init(&d->link[k]);
	memset(d->link_tid[k], tid_byte, 16);
	put_id(d->link_sid[k], sid);
	d->link[k].trace_id.len = 16;
	d->link[k].span_id.len = 8;
	d->linkp[k] = &d->link[k];
}

/* Builds the result: one ResourceSpans per service (in order of first use), spans in the order added. */
static tl_pb_trace_result *result(void)
{
	for (size_t i = 0; i < fx.nsvc; i++) {
		svc *v = &fx.svcs[i];
		free(v->ptrs);
		v->ptrs = calloc(fx.n + 1, sizeof(*v->ptrs));
		cr_assert_not_null(v->ptrs);
		opentelemetry__proto__common__v1__any_value__init(&v->v);
		v->v.value_case = TL_PB_ANY_STRING;
		v->v.string_value = (char *)v->name;
		opentelemetry__proto__common__v1__key_value__init(&v->kv);
		v->kv.key = "service.name";
		v->kv.value = &v->v;
		v->kvp = &v->kv;
		opentelemetry__proto__resource__v1__resource__init(&v->res);
		v->res.attributes = &v->kvp;
		v->res.n_attributes = 1;
		opentelemetry__proto__trace__v1__scope_spans__init(&v->ss);
		v->ss.spans = v->ptrs;
		v->ssp = &v->ss;
		opentelemetry__proto__trace__v1__resource_spans__init(&v->rs);
		v->rs.resource = &v->res;
		v->rs.scope_spans = &v->ssp;
		v->rs.n_scope_spans = 1;
		fx.rsp[i] = &v->rs;
	}
	for (size_t i = 0; i < fx.n; i++) {
		sdata *d = &fx.s[i];
		/* Pointers into fx.s are fixed only now that adding is over. */
		d->span.span_id.data = d->id;
		d->span.parent_span_id.data = d->span.parent_span_id.len ? d->parent : NULL;
		d->span.trace_id.data = fx.tid;
		d->span.trace_id.len = 16;
		if (d->span.status != NULL)
			d->span.status = &d->st;
		for (size_t k = 0; k < d->span.n_links; k++) {
			d->link[k].trace_id.data = d->link_tid[k];
			d->link[k].span_id.data = d->link_sid[k];
			d->linkp[k] = &d->link[k];
		}
		d->span.links = d->span.n_links ? d->linkp : NULL;
		svc *v = &fx.svcs[d->svc];
		v->ptrs[v->ss.n_spans++] = &d->span;
	}
	threadline__v1__trace_result__init(&fx.res);
	fx.res.trace_id.data = fx.tid;
	fx.res.trace_id.len = 16;
	fx.res.resource_spans = fx.rsp;
	fx.res.n_resource_spans = fx.nsvc;
	return &fx.res;
}

static co_analysis *analyze(void)
{
	co_analysis_free(fx.a);
	fx.a = NULL;
	int rc = co_analyze(result(), &fx.a);
	cr_assert_eq(rc, 0, "co_analyze: %s", tl_strerror(rc));
	cr_assert_eq(fx.a->count, fx.n);
	return fx.a;
}

/* Index of the only span named name. */
static size_t idx(const char *name)
{
	size_t found = NONE;
	for (size_t i = 0; i < fx.a->count; i++) {
		if (strcmp(fx.a->spans[i].span->name, name) == 0) {
			cr_assert_eq(found, NONE, "two spans named %s", name);
			found = i;
		}
	}
	cr_assert_neq(found, NONE, "no span named %s", name);
	return found;
}

static const co_an_span *sp(const char *name)
{
	return &fx.a->spans[idx(name)];
}

static const char *name_at(size_t i)
{
	return i == NONE ? "(none)" : fx.a->spans[i].span->name;
}

TestSuite(analyze, .init = fx_init, .fini = fx_fini);

Test(analyze, empty_trace)
{
	co_analysis *a = analyze();
	cr_assert_eq(a->count, 0);
	cr_assert_eq(a->n_roots, 0);
	cr_assert_eq(a->main_root, NONE);
	cr_assert_eq(a->cause, NONE);
	cr_assert_eq(a->outcome, CO_AN_OK);
	cr_assert_eq(a->start_ns, 0);
	cr_assert_eq(a->end_ns, 0);
}

Test(analyze, orphans_are_kept_as_roots_with_their_subtrees)
{
	add(1, 0, "api", "root", 100, 200, NULL);
	add(3, 99, "worker", "orphan", 120, 150, NULL); /* parent 99 never arrived */
	add(4, 3, "worker", "orphan child", 125, 140, NULL);
	add(2, 1, "api", "child", 110, 190, NULL);
	co_analysis *a = analyze();
	cr_assert_eq(a->n_orphans, 1);
	cr_assert(sp("orphan")->flags & CO_AN_ORPHAN);
	cr_assert_eq(sp("orphan")->parent, NONE);
	cr_assert_eq(sp("orphan")->depth, 0);
	cr_assert_not(sp("root")->flags & CO_AN_ORPHAN);
	cr_assert_not(sp("orphan child")->flags & CO_AN_ORPHAN);
	cr_assert_eq(sp("orphan child")->parent, idx("orphan"));
	cr_assert_eq(sp("orphan child")->root, idx("orphan"));
	cr_assert_eq(sp("child")->root, idx("root"));
	cr_assert_eq(sp("child")->depth, 1);
	cr_assert_eq(sp("root")->n_children, 1);
	/* Roots by start; the main root is the one that has no parent id. */
	cr_assert_eq(a->n_roots, 2);
	cr_assert_eq(a->roots[0], idx("root"));
	cr_assert_eq(a->roots[1], idx("orphan"));
	cr_assert_eq(a->main_root, idx("root"));
	/* Tree order: each root, then its subtree. */
	const char *want[] = {"root", "child", "orphan", "orphan child"};
	for (size_t k = 0; k < 4; k++)
		cr_assert_str_eq(name_at(a->order[k]), want[k], "order[%zu]", k);
	/* Services come from each span's own resource. */
	cr_assert_str_eq(sp("orphan")->service, "worker");
	cr_assert_str_eq(sp("root")->service, "api");
	/* An orphan heads a critical path of its own. */
	cr_assert(sp("orphan")->flags & CO_AN_CRITICAL);
	cr_assert(sp("orphan child")->flags & CO_AN_CRITICAL);
	cr_assert_eq(a->start_ns, 100);
	cr_assert_eq(a->end_ns, 200);
}

Test(analyze, two_roots_each_with_a_tree)
{
	add(10, 0, "batch", "late root", 500, 900, NULL);
	add(11, 10, "batch", "late child", 600, 800, NULL);
	add(20, 0, "api", "early root", 100, 300, NULL);
	add(21, 20, "api", "early child", 150, 250, NULL);
	co_analysis *a = analyze();
	cr_assert_eq(a->n_roots, 2);
	cr_assert_eq(a->n_orphans, 0);
	cr_assert_eq(a->main_root, idx("early root"));
	cr_assert_eq(a->roots[1], idx("late root"));
	cr_assert_eq(sp("late child")->root, idx("late root"));
	/* Both trees have a critical path; the critical list is the main root's. */
	cr_assert(sp("late child")->flags & CO_AN_CRITICAL);
	cr_assert_eq(a->n_critical, 2);
	cr_assert_eq(a->critical[0], idx("early root"));
	cr_assert_eq(a->critical[1], idx("early child"));
}

Test(analyze, duplicate_ids_are_kept_and_flagged)
{
	add(1, 0, "api", "root", 0, 100, NULL);
	add(2, 1, "api", "dup second", 20, 30, NULL);
	add(2, 1, "api", "dup first", 10, 40, NULL);
	add(3, 2, "db", "under dup", 12, 18, NULL);
	add(4, 4, "db", "own parent", 50, 60, NULL);
	co_analysis *a = analyze();
	cr_assert_eq(a->count, 5);
	cr_assert_eq(a->n_dup_ids, 2);
	cr_assert(sp("dup first")->flags & CO_AN_DUP_ID);
	cr_assert(sp("dup second")->flags & CO_AN_DUP_ID);
	cr_assert_not(sp("root")->flags & CO_AN_DUP_ID);
	/* Children attach to the first copy in span order (the earlier start). */
	cr_assert_eq(sp("under dup")->parent, idx("dup first"));
	cr_assert_eq(sp("dup second")->parent, idx("root"));
	uint8_t id[8];
	put_id(id, 2);
	cr_assert_eq(co_analysis_find(a, id, 8), idx("dup first"));
	put_id(id, 77);
	cr_assert_eq(co_analysis_find(a, id, 8), NONE);
	cr_assert_eq(co_analysis_find(a, id, 0), NONE);
	/* A span naming itself as parent is an orphan, not a loop. */
	cr_assert(sp("own parent")->flags & CO_AN_ORPHAN);
	cr_assert_eq(sp("own parent")->parent, NONE);
}

Test(analyze, parent_cycles_are_cut_once)
{
	add(1, 3, "a", "a", 0, 10, NULL);
	add(2, 1, "a", "b", 1, 9, NULL);
	add(3, 2, "a", "c", 2, 8, "boom");
	co_analysis *a = analyze();
	size_t cut = 0;
	for (size_t i = 0; i < a->count; i++)
		cut += (a->spans[i].flags & (CO_AN_ORPHAN | CO_AN_CYCLE)) == (CO_AN_ORPHAN | CO_AN_CYCLE);
	cr_assert_eq(cut, 1);
	cr_assert_eq(a->n_roots, 1);
	cr_assert_eq(a->n_orphans, 1);
	/* From a, the walk a -> c -> b -> a closes at b: b heads the tree b -> c -> a. */
	cr_assert(sp("b")->flags & CO_AN_CYCLE);
	cr_assert_eq(sp("a")->parent, idx("c"));
	cr_assert_eq(a->cause, idx("c"));
	cr_assert_eq(a->n_cause_chain, 2);
	cr_assert_eq(a->cause_chain[0], idx("b"));
}

/*
 * R [0,100] with children A [5,30], B [10,60], D [40,50], C [62,90];
 * B has B1 [12,30] and B2 [35,58]; B2 has B2a [36,57].
 * Backwards from R's end: C (ends last), then B (ends 60 <= C's start 62);
 * A and D end after B's start. Under B: B2, then B1.
 */
Test(analyze, critical_path_and_self_times)
{
	add(1, 0, "api", "R", 0, 100, NULL);
	add(2, 1, "api", "A", 5, 30, NULL);
	add(3, 1, "svc", "B", 10, 60, NULL);
	add(4, 1, "svc", "D", 40, 50, NULL);
	add(5, 1, "db", "C", 62, 90, NULL);
	add(6, 3, "db", "B1", 12, 30, NULL);
	add(7, 3, "db", "B2", 35, 58, NULL);
	add(8, 7, "db", "B2a", 36, 57, NULL);
	co_analysis *a = analyze();
	const char *crit[] = {"R", "B", "B1", "B2", "B2a", "C"};
	cr_assert_eq(a->n_critical, 6);
	uint64_t sum = 0;
	for (size_t k = 0; k < 6; k++) {
		cr_assert_str_eq(name_at(a->critical[k]), crit[k], "critical[%zu]", k);
		sum += a->spans[a->critical[k]].self_ns;
	}
	cr_assert_eq(sum, 100, "self times on the path add up to the root's duration, got %llu",
	             (unsigned long long)sum);
	cr_assert_eq(sp("R")->self_ns, 22); /* 100 - C 28 - B 50 */
	cr_assert_eq(sp("B")->self_ns, 9);  /* 50 - B2 23 - B1 18 */
	cr_assert_eq(sp("B1")->self_ns, 18);
	cr_assert_eq(sp("B2")->self_ns, 2); /* 23 - B2a 21 */
	cr_assert_eq(sp("B2a")->self_ns, 21);
	cr_assert_eq(sp("C")->self_ns, 28);
	cr_assert_not(sp("A")->flags & CO_AN_CRITICAL);
	cr_assert_not(sp("D")->flags & CO_AN_CRITICAL);
	cr_assert_eq(sp("A")->self_ns, 25);
	cr_assert_eq(a->n_skewed, 0);
	cr_assert_eq(a->outcome, CO_AN_OK);
	cr_assert_eq(a->cause, NONE);
	cr_assert_eq(a->n_cause_chain, 0);
	/* Children are listed by start. */
	size_t c = sp("R")->first_child;
	const char *kids[] = {"A", "B", "D", "C"};
	for (size_t k = 0; k < 4; k++, c = fx.a->spans[c].next_sibling)
		cr_assert_str_eq(name_at(c), kids[k]);
	cr_assert_eq(c, NONE);
}

Test(analyze, clock_skew_both_ways_is_reported_not_rewritten)
{
	add(1, 0, "api", "parent", 100, 200, NULL);
	add(2, 1, "db", "starts early", 90, 150, NULL);
	add(3, 1, "db", "ends late", 150, 230, NULL);
	add(4, 1, "db", "both", 80, 220, NULL);
	add(5, 1, "db", "inside", 120, 130, NULL);
	add(6, 1, "db", "after parent", 300, 310, NULL);
	tl_pb_span *prod = add(7, 0, "api", "publish", 400, 410, NULL);
	prod->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER;
	tl_pb_span *cons = add(8, 7, "worker", "consume", 420, 500, NULL);
	cons->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER;
	tl_pb_span *cons2 = add(9, 7, "worker", "consume before publish", 395, 398, NULL);
	cons2->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER;
	co_analysis *a = analyze();
	cr_assert_eq(sp("starts early")->skew_before_ns, 10);
	cr_assert_eq(sp("starts early")->skew_after_ns, 0);
	cr_assert_eq(sp("ends late")->skew_before_ns, 0);
	cr_assert_eq(sp("ends late")->skew_after_ns, 30);
	cr_assert_eq(sp("both")->skew_before_ns, 20);
	cr_assert_eq(sp("both")->skew_after_ns, 20);
	cr_assert_eq(sp("after parent")->skew_after_ns, 110);
	cr_assert_not(sp("inside")->flags & CO_AN_SKEW);
	cr_assert_not(sp("parent")->flags & CO_AN_SKEW);
	/* A consumer outliving its producer is the normal async case. */
	cr_assert_not(sp("consume")->flags & CO_AN_SKEW);
	/* Starting before the message was sent is not. */
	cr_assert_eq(sp("consume before publish")->skew_before_ns, 5);
	cr_assert(sp("starts early")->flags & CO_AN_SKEW);
	cr_assert_eq(a->n_skewed, 5);
	/* Times are as recorded. */
	cr_assert_eq(sp("both")->span->start_time_unix_nano, 80);
	cr_assert_eq(sp("ends late")->span->end_time_unix_nano, 230);
	/* Clipped to the parent's window, "both" covers all of it; a span wholly after it is not waited for. */
	cr_assert(sp("both")->flags & CO_AN_CRITICAL);
	cr_assert_eq(sp("parent")->self_ns, 0);
	cr_assert_not(sp("after parent")->flags & CO_AN_CRITICAL);
}

/* frontend -> checkout -> payments -> bank, each failing: the deepest service is the cause. */
Test(analyze, cause_is_the_error_in_the_deepest_service)
{
	add(1, 0, "frontend", "POST /checkout", 0, 1000, "500 Internal Server Error");
	add(2, 1, "checkout", "PlaceOrder", 10, 900, "payment failed");
	add(3, 2, "checkout", "validate cart", 20, 40, NULL);
	add(4, 2, "payments", "Charge", 50, 800, "bank unavailable");
	add(5, 4, "bank", "POST /authorize", 60, 700, "connection reset");
	add(6, 4, "payments", "audit log", 710, 720, NULL);
	co_analysis *a = analyze();
	cr_assert_eq(a->n_errors, 4);
	cr_assert_eq(a->outcome, CO_AN_FAILED);
	cr_assert_eq(a->cause, idx("POST /authorize"));
	cr_assert_str_eq(a->spans[a->cause].service, "bank");
	cr_assert(a->spans[a->cause].flags & CO_AN_CAUSE);
	const char *chain[] = {"POST /checkout", "PlaceOrder", "Charge", "POST /authorize"};
	cr_assert_eq(a->n_cause_chain, 4);
	for (size_t k = 0; k < 4; k++) {
		cr_assert_str_eq(name_at(a->cause_chain[k]), chain[k]);
		cr_assert(a->spans[a->cause_chain[k]].flags & CO_AN_CAUSE_CHAIN);
	}
	cr_assert_not(sp("validate cart")->flags & CO_AN_CAUSE_CHAIN);
	cr_assert(sp("PlaceOrder")->flags & CO_AN_ERROR_BELOW);
	cr_assert_not(sp("POST /authorize")->flags & CO_AN_ERROR_BELOW);
	cr_assert_eq(a->n_cause_links, 0);
}

/*
 * inventory fails; orders catches it and answers OK (swallowed); the gateway
 * sees the partial answer and fails on its own later (re-raised). A render
 * error that started later is a second leaf failure, not the cause.
 */
Test(analyze, cause_of_an_error_swallowed_and_reraised_higher_up)
{
	add(1, 0, "gateway", "GET /order", 0, 100, "incomplete order");
	add(2, 1, "orders", "LoadOrder", 10, 80, NULL);
	add(3, 2, "inventory", "Reserve", 20, 50, "connection refused");
	add(4, 1, "gateway", "render", 85, 95, "missing stock field");
	co_analysis *a = analyze();
	cr_assert_eq(a->outcome, CO_AN_FAILED);
	cr_assert_eq(a->cause, idx("Reserve"));
	cr_assert_eq(a->n_cause_chain, 3);
	cr_assert_eq(a->cause_chain[0], idx("GET /order"));
	cr_assert_eq(a->cause_chain[1], idx("LoadOrder"));
	cr_assert_eq(a->cause_chain[2], idx("Reserve"));
	/* The swallowing span did not fail, but has a failure below. */
	cr_assert_not(sp("LoadOrder")->flags & CO_AN_ERROR);
	cr_assert(sp("LoadOrder")->flags & CO_AN_ERROR_BELOW);
	cr_assert_not(sp("render")->flags & CO_AN_CAUSE);
}

/* The first attempt failed in the server, the retry succeeded: the trace recovered. */
Test(analyze, retry_that_succeeded_keeps_the_failed_attempt_as_cause)
{
	add(1, 0, "client", "GetQuote", 0, 100, NULL);
	add(2, 1, "client", "attempt 1", 5, 30, "DEADLINE_EXCEEDED");
	add(3, 2, "pricing", "Quote", 6, 29, "db timeout");
	add(4, 1, "client", "attempt 2", 35, 90, NULL);
	add(5, 4, "pricing", "Quote ok", 36, 88, NULL);
	co_analysis *a = analyze();
	cr_assert_eq(a->outcome, CO_AN_RECOVERED, "the root did not fail: outcome %d", a->outcome);
	cr_assert_eq(a->cause, idx("Quote"));
	cr_assert_eq(a->n_cause_chain, 3);
	cr_assert_eq(a->cause_chain[1], idx("attempt 1"));
	/* The client waited for both attempts, one after the other: both are on the critical path. */
	cr_assert(sp("attempt 2")->flags & CO_AN_CRITICAL);
	cr_assert(sp("Quote ok")->flags & CO_AN_CRITICAL);
	cr_assert(sp("attempt 1")->flags & CO_AN_CRITICAL);
	cr_assert_eq(sp("GetQuote")->self_ns, 100 - 25 - 55);
}

/*
 * An order is published; a worker picks it up as a new root linked to the
 * publish span (same trace), and the card charge fails. The charge span
 * links to the payment provider's own trace.
 */
Test(analyze, async_hop_joined_by_a_span_link_exposes_the_links)
{
	add(1, 0, "api", "POST /orders", 0, 50, NULL);
	tl_pb_span *pub = add(2, 1, "api", "publish order", 10, 12, NULL);
	pub->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER;
	tl_pb_span *cons = add(3, 0, "worker", "consume order", 100, 200, "order failed");
	cons->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER;
	add_link(0xab, 2); /* this trace, the publish span */
	add(4, 3, "worker", "charge card", 110, 150, "card declined");
	add_link(0x5c, 0x77); /* the provider's trace */
	co_analysis *a = analyze();
	cr_assert_eq(a->n_roots, 2);
	cr_assert_eq(a->main_root, idx("POST /orders"));
	cr_assert_eq(a->outcome, CO_AN_RECOVERED, "the main root did not fail");
	cr_assert_eq(a->cause, idx("charge card"));
	cr_assert_eq(a->n_cause_chain, 2);
	cr_assert_eq(a->cause_chain[0], idx("consume order"));
	cr_assert_eq(a->n_cause_links, 2);
	const co_an_link *l0 = &a->cause_links[0], *l1 = &a->cause_links[1];
	cr_assert_eq(l0->span, idx("consume order"));
	cr_assert(l0->same_trace);
	cr_assert_eq(l0->target, idx("publish order"), "the link resolves in this trace");
	cr_assert_eq(l1->span, idx("charge card"));
	cr_assert_not(l1->same_trace);
	cr_assert_eq(l1->target, NONE);
	cr_assert_eq(l1->link->trace_id.len, 16);
	cr_assert_eq(l1->link->trace_id.data[0], 0x5c);
	cr_assert_eq(l1->link->span_id.data[7], 0x77);
}

Test(analyze, equal_starts_order_by_span_id)
{
	add(9, 0, "api", "r", 0, 10, NULL);
	add(5, 9, "api", "id5", 1, 2, NULL);
	add(3, 9, "api", "id3", 1, 3, NULL);
	co_analysis *a = analyze();
	cr_assert_str_eq(name_at(a->order[1]), "id3");
	cr_assert_str_eq(name_at(a->order[2]), "id5");
}

/*
 * 100,000 spans: a chain 50,000 deep (each span nested in the one before,
 * ending 1 ns sooner on each side) and 49,999 short queries directly under
 * the root, added in reverse. The critical path is the root and the whole
 * chain; no recursion means no stack overflow at that depth.
 */
Test(analyze, hundred_thousand_spans, .timeout = 120)
{
	const uint32_t chain = 50000, flat = 49999;
	const uint64_t end = 1000000000;
	for (uint32_t i = flat; i >= 1; i--)
		add(chain + 1 + i, 1, "db", "db.query", 10 * (uint64_t)i, 10 * (uint64_t)i + 5,
		    i == flat ? "deadlock" : NULL);
	for (uint32_t k = chain; k >= 1; k--)
		add(k + 1, k, "svc", "step", k, end - k, NULL);
	add(1, 0, "api", "root", 0, end, NULL);
	cr_assert_eq(fx.n, 100000);
	co_analysis *a = analyze();
	cr_assert_eq(a->n_roots, 1);
	cr_assert_eq(a->main_root, idx("root"));
	cr_assert_eq(a->n_critical, chain + 1);
	uint64_t sum = 0;
	size_t deepest = 0;
	for (size_t k = 0; k < a->n_critical; k++) {
		const co_an_span *s = &a->spans[a->critical[k]];
		cr_assert(k == 0 || strcmp(s->span->name, "step") == 0, "critical[%zu] is %s", k, s->span->name);
		cr_assert_eq(s->depth, k);
		sum += s->self_ns;
		if (s->depth > deepest)
			deepest = s->depth;
	}
	cr_assert_eq(sum, end);
	cr_assert_eq(deepest, chain);
	cr_assert_eq(a->spans[a->main_root].self_ns, 2);
	cr_assert_eq(a->spans[a->main_root].n_children, flat + 1);
	/* The failing query has no failing descendant: it is the cause, one level down. */
	cr_assert_str_eq(name_at(a->cause), "db.query");
	cr_assert_eq(a->spans[a->cause].span->start_time_unix_nano, 10 * (uint64_t)flat);
	cr_assert_eq(a->n_cause_chain, 2);
	cr_assert_eq(a->outcome, CO_AN_RECOVERED);
}
