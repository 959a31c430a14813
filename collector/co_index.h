/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Search indexes over the stored spans, written in the same transaction as
 * the chunks they point to, and the searches that read them: traces by
 * service, operation, time, error, duration and attribute (across all
 * services: an attribute search needs no service, unlike Jaeger's), the
 * service/operation catalog, and service dependencies.
 *
 * A trace matches a search when ONE of its spans meets every condition:
 * service (service.name of the span's resource), operation (span name),
 * start in [from, to), duration within bounds, status ERROR when asked,
 * and each attribute (span or resource attribute, compared in its string
 * form: strings as they are, integers in decimal, booleans true/false,
 * doubles as %.17g) equal. One index gives the candidates, newest first,
 * chosen in this order: an indexed attribute (the built-in keys and the
 * configured ones), service + operation, service + minimum duration,
 * service, error, minimum duration, and last the store's time index of
 * trace starts; when the index alone cannot prove every condition (several
 * conditions, or a value longer than CO_INDEX_VALUE_MAX that was indexed by
 * its prefix) the candidate's spans are read and checked. With the time
 * index (no service, error, minimum duration or indexed attribute in the
 * query) a trace is found by its start: one that began before `from` is
 * not, even when a later span of it lies in the range. Keys and databases
 * are described in co_index.c.
 *
 * Threads: co_index_put_trace runs on the store's committing thread only;
 * the searches run on any thread, each in one short read transaction.
 */
#ifndef CO_INDEX_H
#define CO_INDEX_H

#include "co_store.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CO_INDEX_VALUE_MAX 128           /* bytes of a service, operation or value kept in a key */
#define CO_INDEX_ATTR_KEYS_MAX 32        /* configured attribute keys, besides the built-in ones */
#define CO_SEARCH_LIMIT_DEFAULT 20       /* traces per answer when the query says 0 */
#define CO_SEARCH_LIMIT_MAX 1500         /* more are cut to this */
#define CO_SEARCH_EXAMINE_DEFAULT 100000 /* index entries one search reads at most (0 in the query) */

/* Attribute keys always indexed. */
extern const char *const co_index_builtin_keys[]; /* "ml.prediction.id", "ml.model.version", "lineage.run_id", NULL */

/* ---- storage (called by co_store.c) ---- */

typedef struct co_index_db co_index_db; /* the index databases; defined in co_index.c */

/*
 * Opens (creating) the index databases inside txn, with the configured
 * attribute keys (borrowed strings copied in; at most CO_INDEX_ATTR_KEYS_MAX,
 * each non-empty and at most CO_INDEX_VALUE_MAX bytes; repeats are ignored).
 * Returns 0 and *out (free with co_index_db_free() after the environment's
 * last transaction), or a TL code with err set: TL_EINVALID naming the key,
 * -ENOMEM, or an LMDB error translated by tl_err_from_lmdb(). Accepts NULL in free.
 */
int co_index_db_open(MDB_txn *txn, const char *const *attr_keys, size_t n_attr_keys, co_index_db **out, tl_errmsg *err);
void co_index_db_free(co_index_db *db);

/* One span of a chunk being stored, with its resource and service.name (NULL when none). */
typedef struct co_index_span {
	const tl_pb_span *span;
	const tl_pb_resource *resource;
	const char *service;
} co_index_span;

/*
 * Indexes the spans of ONE chunk (one trace, one batch) in txn: entries per
 * chunk and distinct key, never per span, so a chunk of a thousand spans of
 * one service costs a handful of puts. chunk_id is the chunk's key in the
 * store's `spans` (increasing with arrival: the indexes append in that
 * order). Borrows spans; scratch is the store's per-commit arena. Returns 0
 * or an LMDB code / ENOMEM (the commit then aborts).
 */
int co_index_put_trace(co_index_db *db, MDB_txn *txn, tl_arena *scratch, const uint8_t trace_id[16], uint64_t chunk_id,
                       const co_index_span *spans, size_t n);

/*
 * Ends the indexing of one transaction: writes the attribute blocks
 * gathered by co_index_put_trace() since the last flush or discard (one
 * block per attribute key and time bucket, see co_index.c). Call in txn
 * after the transaction's last co_index_put_trace() and before it commits.
 * Returns 0 or an LMDB code (the commit then aborts; call co_index_discard()).
 */
int co_index_flush(co_index_db *db, MDB_txn *txn);

/* Forgets what co_index_put_trace() gathered: the transaction was aborted. */
void co_index_discard(co_index_db *db);

/* Empties every index database inside txn (a rebuild follows: the store's schema 1 migration). Returns an LMDB code. */
int co_index_clear(co_index_db *db, MDB_txn *txn);

/* ---- searches ---- */

typedef struct co_search_attr {
	const char *key;
	const char *value;
} co_search_attr;

typedef struct co_search_query {
	const char *service;                       /* NULL or "": any */
	const char *operation;                     /* NULL or "": any */
	uint64_t from_ns;                          /* span start >= from_ns */
	uint64_t to_ns;                            /* span start < to_ns; 0: no upper bound */
	bool error_only;                           /* the matching span has status ERROR */
	uint64_t min_duration_ns, max_duration_ns; /* 0: no bound */
	const co_search_attr *attrs;               /* all must hold */
	size_t n_attrs;
	size_t limit;        /* 0: CO_SEARCH_LIMIT_DEFAULT; cut to CO_SEARCH_LIMIT_MAX */
	size_t max_examined; /* 0: CO_SEARCH_EXAMINE_DEFAULT */
} co_search_query;

typedef struct co_search_result {
	co_trace_summary *traces; /* newest first by trace start; in the arena */
	size_t n;
	size_t examined; /* index entries, blocks and block records read */
	bool partial;    /* max_examined stopped the search before the range was exhausted */
} co_search_result;

/*
 * Runs q. Everything in *out is allocated in arena. Returns 0 (possibly
 * with no traces), TL_EINVALID (err names the bad field: from > to,
 * min > max duration, an empty attribute key), TL_ELIMIT (the arena's cap),
 * or a store error.
 */
int co_search(co_store *s, const co_search_query *q, tl_arena *arena, co_search_result *out, tl_errmsg *err);

/* Every service that has stored spans, sorted, in arena. Returns 0 or a store error. */
int co_index_services(co_store *s, tl_arena *arena, const char ***names, size_t *n);

typedef struct co_operation {
	const char *name;
	int kind; /* OTLP SpanKind value (0 unspecified .. 5 consumer) */
} co_operation;

/*
 * Operations of one service (kind < 0: every kind), sorted by name then
 * kind, in arena. An unknown service gives 0 operations. Returns 0 or a
 * store error.
 */
int co_index_operations(co_store *s, const char *service, int kind, tl_arena *arena, co_operation **ops, size_t *n);

typedef struct co_dependency {
	const char *parent, *child; /* services: a span of child has a parent span in parent */
	uint64_t calls;
} co_dependency;

/*
 * Service-to-service calls of the traces that started in [from_ns, to_ns),
 * sorted by parent then child, in arena. Reads at most max_traces traces
 * (0: 10,000), newest first; *partial tells when that cut the answer.
 * Returns 0 or a store error.
 */
int co_index_dependencies(co_store *s, uint64_t from_ns, uint64_t to_ns, size_t max_traces, tl_arena *arena,
                          co_dependency **deps, size_t *n, bool *partial);

typedef struct co_index_counts {
	size_t svc, op, err, attr, dur, cat;
} co_index_counts;

/* Entry counts of every index database (for tests and /metrics). Returns 0 or a store error. */
int co_index_counts_get(co_store *s, co_index_counts *out);

#endif
