/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Trace analysis: one trace (a tl_pb_trace_result as co_store_get_trace
 * returns it) turned into a tree with everything the CLI and the collector
 * ask of it: parents and children, spans whose parent never arrived,
 * duplicate span ids, the critical path with each span's self time, clock
 * skew, and the root cause of a failure with the chain that leads to it.
 *
 * Nothing in the trace is rewritten: times are kept as recorded, and a span
 * that lies outside its parent's window is reported, not moved.
 *
 * Cost: O(n log n) time for n spans (a few sorts), no recursion (every walk
 * uses an explicit stack or the tree order), and two mallocs per call (the
 * result, in one block, and a scratch block freed before returning),
 * whatever n is. co_analyze keeps no global state: threads may analyse
 * different traces at the same time.
 *
 * Definitions (the tests check these numbers):
 *
 * Span order. spans[] is sorted by start time, then span id bytes, then
 * arrival (the span's position in the result). Indexes below are into it.
 *
 * Parent. A span whose parent_span_id is empty is a root. Otherwise its
 * parent is the span with that id; when several spans share the id
 * (CO_AN_DUP_ID on each of them), the first of them in span order. A span
 * naming itself, or a parent id not in the trace, is an orphan (CO_AN_ORPHAN):
 * it stays in the tree as a root of its own. Where parent links form a
 * cycle (corrupt or hostile data), the link that closes it is cut and that
 * span becomes an orphan too (CO_AN_ORPHAN | CO_AN_CYCLE). Children are in
 * span order, so by start.
 *
 * Critical path. The root of every tree (true roots and orphans alike) is
 * on its tree's critical path. For a span P on it, P's critical children
 * are chosen backwards from P's end, among the children that overlap P's
 * window [start, end] (or, lasting no time, lie inside it), each child's
 * window clipped to P's: first the one
 * that ends last (ties: the earlier start, then the lower index); then,
 * repeatedly, the one ending last among those that end no later than the
 * start of the child chosen before. These are the spans P was waiting for
 * when it ended; its critical children are on the path too.
 *
 * Self time. self_ns of a span is its duration (end - start, 0 when end
 * precedes start) minus the time its critical children cover inside its
 * window (clipped, and they never overlap one another). On the critical
 * path it is the time the span itself spent there; without clock skew the
 * self times of one tree's critical spans add up to its root's duration.
 * It is computed for every span, but only critical spans' self times sum
 * to anything meaningful.
 *
 * Clock skew. A span with a parent is skewed (CO_AN_SKEW) when it starts
 * before its parent starts (skew_before_ns = parent start - span start) or
 * ends after its parent ends (skew_after_ns = span end - parent end). The
 * latter is not skew when the parent is a PRODUCER or the span a CONSUMER:
 * a message is often handled after its sender has finished. Both amounts
 * can be non-zero (a child longer than its parent). Roots and orphans are
 * never skewed (nothing to compare with).
 *
 * Root cause (DESIGN.md §7). Among the spans with status ERROR that have no
 * ERROR descendant, the first in span order (the one that started first).
 * An error swallowed by a healthy parent still counts: a retry whose first
 * attempt failed has that attempt as its cause even though the trace ended
 * well (outcome says which). The cause chain runs from the root of the
 * cause's tree down to the cause; when that root is an orphan the chain
 * starts at the orphan (the spans above it never arrived).
 */
#ifndef CO_ANALYZE_H
#define CO_ANALYZE_H

#include "tl_error.h"
#include "tl_pb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CO_AN_NONE SIZE_MAX               /* "no span" in any index field */
#define CO_AN_MAX_SPANS ((size_t)1 << 24) /* spans one call accepts; more is TL_ELIMIT */

/* co_an_span.flags */
enum {
	CO_AN_ORPHAN = 1u << 0,      /* parent_span_id set, but that span is not in the trace */
	CO_AN_CYCLE = 1u << 1,       /* with ORPHAN: its parent link closed a cycle and was cut */
	CO_AN_DUP_ID = 1u << 2,      /* another span of the trace has the same (non-empty) span id */
	CO_AN_CRITICAL = 1u << 3,    /* on its tree's critical path */
	CO_AN_ERROR = 1u << 4,       /* status code ERROR */
	CO_AN_ERROR_BELOW = 1u << 5, /* some descendant has status ERROR */
	CO_AN_SKEW = 1u << 6,        /* outside its parent's window: see skew_before_ns, skew_after_ns */
	CO_AN_CAUSE = 1u << 7,       /* the root cause */
	CO_AN_CAUSE_CHAIN = 1u << 8, /* on the chain from the cause's root to the cause (the cause too) */
	CO_AN_CRIT_CHILD = 1u << 9,  /* one of its parent's critical children (CRITICAL when the parent is) */
};

/*
 * One span. Pointers borrow from the analysed tl_pb_trace_result: valid
 * while it is.
 */
typedef struct co_an_span {
	const tl_pb_span *span;
	const tl_pb_resource *resource; /* NULL when the ResourceSpans had none */
	const tl_pb_scope *scope;       /* NULL when the ScopeSpans had none */
	const char *service;            /* the resource's service.name, or "unknown_service" */
	size_t arrival;                 /* position in the result (resource, scope, span order) */
	size_t parent;                  /* CO_AN_NONE for roots and orphans */
	size_t first_child;             /* children by start, linked by next_sibling; CO_AN_NONE: none */
	size_t next_sibling;
	size_t n_children;
	size_t root;  /* the root (or orphan) whose tree holds this span; itself for a root */
	size_t depth; /* 0 for roots and orphans */
	uint64_t self_ns;
	uint64_t skew_before_ns;
	uint64_t skew_after_ns;
	unsigned flags; /* CO_AN_* */
} co_an_span;

/* A span link of the cause chain: where to continue into another trace (or this one). */
typedef struct co_an_link {
	size_t span;            /* the chain span carrying the link */
	const tl_pb_link *link; /* borrowed like co_an_span.span; link->trace_id and span_id name the target */
	bool same_trace;        /* link->trace_id is this trace's id */
	size_t target;          /* same_trace and the span is here: its index; else CO_AN_NONE */
} co_an_link;

typedef enum co_an_outcome {
	CO_AN_OK = 0,        /* no span has status ERROR */
	CO_AN_FAILED = 1,    /* the main root has status ERROR: the trace ended in error */
	CO_AN_RECOVERED = 2, /* some span failed but the main root did not (retried, swallowed) */
} co_an_outcome;

typedef struct co_analysis {
	const tl_pb_trace_result *res; /* the analysed result (borrowed) */
	co_an_span *spans;             /* count spans, in span order */
	size_t count;
	size_t *by_id; /* count indexes sorted by span id (then index), for co_analysis_find */
	size_t *order; /* count indexes in tree order: each root, then its subtree depth-first */
	size_t *roots; /* roots and orphans, by start */
	size_t n_roots;
	size_t main_root;          /* the first root with an empty parent_span_id, else roots[0]; NONE when empty */
	uint64_t start_ns, end_ns; /* earliest start, latest end; both 0 when empty */
	size_t n_orphans, n_dup_ids, n_skewed, n_errors;
	/* The main root's critical path in tree order (the main root first). */
	size_t *critical;
	size_t n_critical;
	/* Root cause. */
	co_an_outcome outcome;
	size_t cause;        /* CO_AN_NONE when outcome is CO_AN_OK */
	size_t *cause_chain; /* n_cause_chain indexes: the cause's root first, the cause last */
	size_t n_cause_chain;
	co_an_link *cause_links; /* the links of the chain's spans, chain order, then link order */
	size_t n_cause_links;
} co_analysis;

/*
 * Analyses res (borrowed: it must outlive the analysis, which points into
 * it). On success *out is set (caller frees with co_analysis_free()).
 * Returns 0; TL_ELIMIT when res holds more than CO_AN_MAX_SPANS spans or
 * links; -ENOMEM. An empty result is fine (count 0, main_root CO_AN_NONE).
 */
int co_analyze(const tl_pb_trace_result *res, co_analysis **out);

/* Frees an analysis (one block). Accepts NULL. */
void co_analysis_free(co_analysis *a);

/*
 * The index of the span with this id (borrowed bytes), the first in span
 * order when the id is duplicated, or CO_AN_NONE (always for len 0). O(log n).
 */
size_t co_analysis_find(const co_analysis *a, const uint8_t *span_id, size_t len);

/* The span's duration in ns (0 when its end precedes its start). */
uint64_t co_an_duration(const tl_pb_span *sp);

/* True when the span's status code is ERROR. */
bool co_an_is_error(const tl_pb_span *sp);

/* The string service.name of r (borrowed from r), or "unknown_service" (static) when r is NULL or has none. */
const char *co_an_service_name(const tl_pb_resource *r);

#endif
