/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's span store: one LMDB environment in the data directory.
 *
 * Span bodies are kept in arrival order under append keys, one value per
 * trace per batch (a "chunk"), so a batch of a thousand spans costs one
 * append per trace, never per span. A trace is filed under its home, the id
 * of its first chunk: its chunk list and summary then sit with the traces
 * that are still arriving, at the end of their trees, and only a trace's
 * first chunk writes at a random place (trace_home). All integers in keys
 * and fixed values are big-endian.
 *
 *   meta         "schema_version" -> u32 (CO_STORE_SCHEMA_VERSION)
 *   spans        chunk_id u64 -> store.v1.Chunk (MDB_APPEND)
 *   trace_home   trace_id(16) -> home u64 (the trace's first chunk_id)
 *   trace_chunks home u64 || chunk_id u64 -> empty (one entry per trace per batch)
 *   trace_sums   home u64 -> store.v1.TraceSummary
 *   trace_starts start_ns u64 || trace_id(16) -> home u64 (the trace's current start only)
 *   resources    BLAKE2b-128(encoded Resource) -> encoded Resource (stored once)
 *   dedupe       agent_id(16) || seq u64 -> commit time u64
 *   lineage_raw  record_id u64 -> store.v1.RawRecord (MDB_APPEND)
 *   lin_*        the lineage graph (co_lineage.h), written in the same transaction
 *   ix_*         the search indexes (co_index.c), written in the same transaction
 *
 * The trace_* tables are derived from `spans`: a store of schema 1 (whose
 * trace tables were keyed by trace id) has them rebuilt when it is opened.
 *
 * Threads: one thread commits at a time (the collector's writer); any number
 * of threads may read concurrently. Growing the map waits for readers to
 * finish their (short) read transactions.
 */
#ifndef CO_STORE_H
#define CO_STORE_H

#include "tl_arena.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CO_STORE_SCHEMA_VERSION 2
#define CO_AGENT_ID_LEN 16

typedef struct co_store co_store;
struct MDB_txn;

typedef struct co_store_opts {
	const char *dir;      /* data directory; created if missing */
	size_t map_size;      /* initial map size in bytes (0: 1 GiB); doubled on MDB_MAP_FULL */
	size_t map_size_max;  /* growth stops here (0: 1 TiB); past it commits fail with TL_EFULL */
	unsigned max_readers; /* LMDB reader slots (0: 126) */
	bool no_sync;         /* commits are not fsynced (MDB_NOSYNC); the caller runs co_store_sync() */
	/* Attribute keys indexed for search besides the built-in ones (co_index.h); borrowed
	 * during co_store_open() only; at most CO_INDEX_ATTR_KEYS_MAX. */
	const char *const *index_attrs;
	size_t n_index_attrs;
	/* Homes of new traces are written into trace_home once this many have gathered
	 * (0: 65536); tests set it small to cross a flush. */
	size_t home_flush_at;
} co_store_opts;

/*
 * Opens (creating if needed) the store in o->dir. Runs mdb_reader_check to
 * clear reader slots left by dead processes. Returns 0 and *out (caller
 * frees with co_store_close()); a negative errno when the directory cannot
 * be used; TL_EUNSUPPORTED when the schema version is not ours; TL_ESTORE or
 * TL_ECORRUPT from LMDB. err names what failed.
 */
int co_store_open(const co_store_opts *o, co_store **out, tl_errmsg *err);

/* Closes the environment. No transaction may be running. Accepts NULL. */
void co_store_close(co_store *s);

/* Flushes commits made with no_sync to disk. Thread-safe. Returns 0 or TL_ESTORE / -errno. */
int co_store_sync(co_store *s);

/* Reader slots of dead processes cleared by mdb_reader_check at open. */
int co_store_stale_readers(const co_store *s);

/* Current map size in bytes (grows on demand). */
size_t co_store_map_size(co_store *s);

enum co_batch_status {
	CO_BATCH_PENDING = 0,
	CO_BATCH_OK,        /* committed by this call */
	CO_BATCH_DUPLICATE, /* (agent_id, seq) committed earlier; nothing written */
	CO_BATCH_REJECTED,  /* can never be stored */
	CO_BATCH_RETRY,     /* not stored now; may be sent again */
};

/*
 * One decoded wire Batch. Everything it points to is borrowed (typically an
 * arena owned by the caller) and must stay valid during co_store_commit().
 */
typedef struct co_batch {
	uint8_t agent_id[CO_AGENT_ID_LEN];
	uint64_t seq;
	tl_pb_export_req **traces; /* decoded Record.otlp_traces, in record order */
	uint64_t *traces_accepted; /* Record.accepted_unix_nano per traces[i] (may be NULL) */
	size_t n_traces;
	ProtobufCBinaryData *lineage; /* Record.openlineage_json bodies, kept verbatim */
	uint64_t *lineage_accepted;   /* per lineage[i] (may be NULL) */
	size_t n_lineage;
	/* OUT, set by co_store_commit(): */
	enum co_batch_status status;
	uint64_t spans_stored;
	uint64_t spans_skipped; /* spans without a 16-byte trace id, which cannot be indexed */
} co_batch;

/*
 * Commits batches[0..n) in ONE write transaction: per batch, a dedupe check
 * on (agent_id, seq), then its chunks, indexes, summaries, resources and
 * the dedupe entry. Borrows the batches; sets each one's status and counts.
 * now_ns is written as the commit time. On MDB_MAP_FULL the transaction is
 * aborted, the map doubled and the same batches retried, so the call either
 * commits all of them or none.
 * Returns 0 when committed (mdb_txn_commit returned 0); TL_EFULL when the
 * map cannot grow further; TL_ESTORE / TL_ECORRUPT / -errno otherwise. On
 * error nothing was written and the statuses are CO_BATCH_PENDING.
 * Call from one thread at a time.
 */
int co_store_commit(co_store *s, co_batch *const *batches, size_t n, uint64_t now_ns);

/*
 * Reads a whole trace: every chunk in its trace_chunks list, with
 * resources resolved, spans that shared a resource and scope grouped into one
 * ResourceSpans/ScopeSpans, in arrival order. Everything is copied into arena
 * before the read transaction ends: *out is valid until arena is reset.
 * Returns 0; TL_ENOTFOUND for an unknown trace; TL_ELIMIT when the trace
 * does not fit the arena's cap; TL_ECORRUPT for a value that does not decode.
 */
int co_store_get_trace(co_store *s, const uint8_t trace_id[16], tl_arena *arena, tl_pb_trace_result **out);

/* A run of spans of one stored chunk group: g->spans[from .. from + n). */
struct Threadline__Store__V1__ChunkGroup;
typedef struct co_store_piece {
	const struct Threadline__Store__V1__ChunkGroup *g;
	uint32_t from, n;
} co_store_piece;

/*
 * Regroups pieces of stored chunks (decoded by the caller) as OTLP sends
 * spans: those that share a resource (and its schema URL) and a scope (and
 * its schema URL) go into one ScopeSpans, in the order of the pieces.
 * Resources are read inside txn (from co_store_read_begin()) and decoded
 * into arena; one that is missing or does not decode leaves its
 * ResourceSpans without a resource and counts in *unreadable (may be NULL).
 * Everything, *out included, is allocated in arena. Returns 0, TL_ELIMIT
 * when the arena's cap is reached, or a store error.
 */
int co_store_regroup(co_store *s, struct MDB_txn *txn, const co_store_piece *pieces, size_t n, tl_arena *arena,
                     tl_pb_resource_spans ***out, size_t *n_out, size_t *unreadable);

typedef struct co_trace_summary {
	uint8_t trace_id[16];
	uint64_t start_ns;
	uint64_t end_ns;
	uint64_t span_count;
	uint64_t error_count;
	uint64_t chunk_count;
	bool has_root;
	char root_service[256]; /* cut to fit; "" when unknown */
	char root_name[256];
} co_trace_summary;

/* Fills *out for trace_id. Returns 0, TL_ENOTFOUND or TL_ECORRUPT. */
int co_store_get_summary(co_store *s, const uint8_t trace_id[16], co_trace_summary *out);

/*
 * Calls fn for each trace whose start lies in [from_ns, to_ns), in start
 * order, newest first when newest_first. fn borrows sum (valid during the
 * call) and returns 0 to go on, anything else to stop (that value is
 * returned). fn runs inside a read transaction: keep it short and call no
 * other co_store function from it (growing the map waits for that
 * transaction, and a nested call would wait behind the grow). Returns 0,
 * fn's value or a store error.
 */
typedef int (*co_trace_fn)(const co_trace_summary *sum, void *ud);
int co_store_scan_time(co_store *s, uint64_t from_ns, uint64_t to_ns, bool newest_first, co_trace_fn fn, void *ud);

/*
 * Calls fn for each chunk with id >= from_id in arrival order, with the
 * chunk's encoded store.v1.Chunk bytes (borrowed, valid during the call).
 * Same rules for fn as co_store_scan_time. For retention, export and audit.
 */
typedef int (*co_chunk_fn)(uint64_t chunk_id, const uint8_t *val, size_t len, void *ud);
int co_store_scan_chunks(co_store *s, uint64_t from_id, co_chunk_fn fn, void *ud);

/*
 * For modules that keep their own databases in the store (the forwarder's
 * cursor): runs fn(txn, ud) in a write transaction and commits it when fn
 * returns 0 (fn returns 0, a negative TL code, or an LMDB code; anything
 * else aborts). On MDB_MAP_FULL the map grows and fn runs again, so fn must
 * be repeatable. Serialises with co_store_commit(): keep it short. Returns
 * 0, fn's negative code, TL_EFULL or a store error.
 */
struct MDB_txn;
typedef int (*co_store_write_fn)(struct MDB_txn *txn, void *ud);
int co_store_write(co_store *s, co_store_write_fn fn, void *ud);
/* Opens (creating) a named database of the store's environment. Returns 0 or a store error. */
int co_store_open_db(co_store *s, const char *name, unsigned int *out); /* out: an MDB_dbi */

/* A database of the store and where its entry count goes (co_store_count_entries). */
typedef struct co_store_count {
	unsigned int dbi; /* an MDB_dbi */
	size_t *n;
} co_store_count;

/* Fills *m[i].n with the entries of each m[i].dbi, in one read transaction. Returns 0 or a store error. */
int co_store_count_entries(co_store *s, const co_store_count *m, size_t n);

typedef struct co_store_counts {
	size_t chunks, trace_idx, traces, time_idx, resources, dedupe, lineage_raw;
} co_store_counts;

/* Entry counts of every database (for tests and /metrics). Returns 0 or a store error. */
int co_store_counts_get(co_store *s, co_store_counts *out);

/*
 * For modules that keep their own databases in the store (co_lineage.c): a
 * read transaction begun under the map-growth lock. Returns 0 or a TL code.
 * End it with co_store_read_end() soon, and call no other co_store function
 * in between.
 */
struct MDB_txn;
int co_store_read_begin(co_store *s, struct MDB_txn **txn);
void co_store_read_end(co_store *s, struct MDB_txn *txn);

/* The lineage databases (valid until co_store_close()). */
struct co_lineage_db;
const struct co_lineage_db *co_store_lineage_db(const co_store *s);

/* The search index databases (valid until co_store_close()). */
struct co_index_db;
const struct co_index_db *co_store_index_db(const co_store *s);

/* The latency histogram database (co_stats.h; valid until co_store_close()). */
struct co_stats_db;
const struct co_stats_db *co_store_stats_db(const co_store *s);

/*
 * The store's own databases, for modules that read them inside a read
 * transaction of co_store_read_begin() (co_index.c). Values are MDB_dbi.
 */
typedef struct co_store_dbs {
	unsigned int spans, trace_home, trace_chunks, trace_sums, trace_starts, resources;
} co_store_dbs;
const co_store_dbs *co_store_get_dbs(const co_store *s);

/*
 * Calls fn for each stored chunk of the trace, in arrival order, inside txn
 * (a transaction from co_store_read_begin(); fn's rules are
 * co_store_scan_chunks'). Returns 0, fn's value,
 * TL_ENOTFOUND for an unknown trace, or a store error.
 */
int co_store_each_chunk(co_store *s, struct MDB_txn *txn, const uint8_t trace_id[16], co_chunk_fn fn, void *ud);

/* Fills *out for trace_id inside txn. Returns 0, TL_ENOTFOUND, TL_ECORRUPT or a store error. */
int co_store_summary_txn(co_store *s, struct MDB_txn *txn, const uint8_t trace_id[16], co_trace_summary *out);

#endif
