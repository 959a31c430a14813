/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SLIs and latency budgets (DESIGN.md §7): per-minute latency histograms
 * per (service, operation), written in the same transaction as the spans
 * they count, and the `threadline stats` answer built from them: request
 * rate, error rate and p50/p95/p99 per service and operation over a window,
 * and, for a latency budget, which stage's self time on the critical path
 * consumed it in the traces that broke it.
 *
 * Storage, in the store's LMDB environment (integers big-endian; lp(s) is a
 * u16 length and the bytes, cut to their first CO_STATS_NAME_MAX bytes at a
 * UTF-8 character boundary, so names that share those bytes share a cell):
 *
 *   stats   lp(service) || lp(operation) || minute u32 -> cell
 *
 * minute is the span's start in unix minutes (start_ns / 60 s). A cell is
 * a version byte (1), then LEB128 varints: count, errors (status ERROR),
 * sum of durations (ns, saturating), min and max duration, the number of
 * non-empty buckets, and per non-empty bucket, in increasing order, the gap
 * from the previous one's index and its count. Spans without service.name
 * count under "unknown_service".
 *
 * Histogram buckets. Bucket 0 holds durations below 1 µs; bucket b >= 1
 * holds [1 µs * 2^((b-1)/8), 1 µs * 2^(b/8)) (each bound rounded down to
 * the nanosecond), so a bucket is about 9 % wide; the last bucket,
 * CO_STATS_BUCKETS - 1, also holds everything longer (about 8.9 years and
 * more). A percentile is the nearest-rank one (the smallest duration such
 * that at least p % of the spans last no longer); the histogram finds the
 * bucket that holds it exactly and answers the bucket's geometric middle,
 * clamped to the window's min and max. Error bound: for durations of 1 µs
 * and more the answer is within 2^(1/16) - 1 (4.4 %) of the exact
 * percentile, relative; below 1 µs within 0.5 µs, absolute. Max and min
 * are exact, mean is exact (sum / count).
 *
 * Costs: the store calls co_stats_put_batch() once per batch; the spans are
 * grouped in memory first and each distinct (service, operation, minute)
 * costs one read-modify-write, in key order through one cursor, never one
 * per span. Spans are counted as their batches are stored: a batch the
 * store drops as a duplicate counts nothing, but a span sent again in
 * another batch counts again.
 *
 * Threads: co_stats_put_batch runs on the store's committing thread only;
 * queries run on any thread, each reading the cells in one short read
 * transaction.
 */
#ifndef CO_STATS_H
#define CO_STATS_H

#include "co_store.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CO_STATS_NAME_MAX 128                                    /* bytes of a service or operation kept in a key */
#define CO_STATS_BUCKETS (1 + 8 * 48)                            /* histogram buckets (see above) */
#define CO_STATS_MINUTE_NS UINT64_C(60000000000)                 /* the resolution of the window */
#define CO_STATS_DEFAULT_WINDOW_NS (3600 * UINT64_C(1000000000)) /* since = until - 1 h when 0 */
#define CO_STATS_MAX_CELLS 2000000                               /* cells read per answer; more: truncated */
#define CO_STATS_MAX_ROWS 10000               /* (service, operation) rows per answer; more: truncated */
#define CO_STATS_BUDGET_TRACES 1000           /* traces over budget read at most; more: partial */
#define CO_STATS_SLOWEST 10                   /* slowest traces listed under a budget */
#define CO_STATS_TRACE_MEM ((size_t)64 << 20) /* arena cap for reading one trace of a budget */

/* ---- histograms (exposed for tests) ---- */

/* The bucket that holds a duration of d ns. */
unsigned co_stats_bucket(uint64_t d);

/* The smallest duration bucket b holds, in ns (0 for bucket 0). b < CO_STATS_BUCKETS. */
uint64_t co_stats_bucket_lower(unsigned b);

/* ---- storage (called by co_store.c) ---- */

typedef struct co_stats_db co_stats_db; /* the stats database; defined in co_stats.c */

/*
 * Opens (creating) the stats database inside txn, a write transaction of
 * the store's open. Returns 0 and *out (caller frees with co_stats_db_free()
 * after the environment's last transaction), or a TL code with err set
 * (-ENOMEM, or an LMDB error translated by tl_err_from_lmdb()). Free accepts NULL.
 */
int co_stats_db_open(MDB_txn *txn, co_stats_db **out, tl_errmsg *err);
void co_stats_db_free(co_stats_db *db);

/* One span of a batch and its resource's service.name (NULL when none). Both borrowed. */
typedef struct co_stats_span {
	const tl_pb_span *span;
	const char *service;
} co_stats_span;

/*
 * Adds the spans of one batch to their cells in txn: the spans are grouped
 * by (service, operation, minute) in scratch (the store's per-commit arena;
 * what is allocated there is not freed), then each distinct cell is read,
 * merged and written once. Borrows spans. Returns 0 or a positive LMDB code
 * / ENOMEM, as the store's commit path expects (the commit then aborts).
 */
int co_stats_put_batch(co_stats_db *db, MDB_txn *txn, tl_arena *scratch, const co_stats_span *spans, size_t n);

/* ---- queries ---- */

typedef struct co_stats_opts {
	const char *service; /* NULL or "": every service; borrowed */
	uint64_t since_ns;   /* 0: until - CO_STATS_DEFAULT_WINDOW_NS */
	uint64_t until_ns;   /* 0: now */
	uint64_t budget_ns;  /* 0: no budget analysis */
	uint64_t now_ns;     /* 0: the wall clock (tests fix it) */
	size_t max_traces;   /* candidate traces read at most; 0: CO_STATS_BUDGET_TRACES; cut to CO_SEARCH_LIMIT_MAX - 1
	                      */
} co_stats_opts;

/*
 * The `threadline stats` answer (README, "Stats") as a JSON document written
 * NUL-terminated into arena: *json is valid until arena is reset.
 *
 * The window is answered at minute resolution: it runs from since rounded
 * down to its minute to until rounded up, and both ends are in the answer.
 * Rates are per second over that span, ended at now when it reaches past
 * now (the future holds no spans). Rows are sorted by service, then p99
 * descending, then operation. "truncated" says the walk stopped at
 * CO_STATS_MAX_ROWS rows or CO_STATS_MAX_CELLS cells; "skipped_cells"
 * counts cells that did not decode (left out).
 *
 * With a budget: the candidates, traces with a span of o->service (any
 * service when none) that lasted at least the budget and started in
 * [since, until) (exact, not rounded), are found with co_search, newest
 * first, and read, up to max_traces ("partial" when there were more, or
 * the search stopped early; "skipped" counts those that could not be read).
 * Those whose main root (co_analyze.h) lasted longer than the budget broke
 * it: the self times of each one's critical path (from its main root) are
 * summed per stage (service, operation); stages are ranked by the sum, and
 * a stage's share is its sum over all the stages' sums.
 *
 * Returns 0; TL_EINVALID (err names the field: since not before until);
 * TL_ELIMIT when the answer does not fit arena; TL_ECORRUPT / TL_ESTORE
 * from the store.
 */
int co_stats_query(co_store *s, const co_stats_opts *o, tl_arena *arena, char **json, tl_errmsg *err);

/*
 * Answers a QueryRequest holding stats (borrowed) with co_stats_query.
 * Returns as it does; TL_EUNSUPPORTED for another query kind.
 */
int co_stats_answer(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err);

/* Entry count of the stats database (for tests and /metrics). Returns 0 or a store error. */
int co_stats_count(co_store *s, size_t *cells);

#endif
