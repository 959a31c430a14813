/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lineage graph: datasets, dataset versions, jobs, job versions, runs (with their
 * state history), model versions, deployments and predictions, kept in the
 * collector's LMDB store and written in the same transaction as the batch
 * that brought them (OpenLineage events and spans with ml.* / lineage.*
 * attributes). Queries walk it upstream and downstream, as it stands now or
 * as it stood at a point in time, and explain a prediction back to its raw
 * inputs.
 *
 * Node ids (DESIGN.md §4): "dataset:NS:NAME" (a version: "dataset:NS:NAME#V"),
 * "job:NS:NAME" (a version: "job:NS:NAME#V"), "run:UUID", "model:NAME:VERSION", "deployment:NAME",
 * "prediction:ID". A dataset or job id splits into namespace and name at its
 * LAST ':' (namespaces such as "postgres://db:5432" contain ':'; a name that
 * contains ':' can be stored but not named on the command line), a dataset
 * or job version at the last '#' after it, a model id into name and version at its
 * last ':'.
 *
 * Storage (all integers big-endian). Every node but a prediction has a node
 * number: its type in the top byte, a per-type sequence below, so the type
 * of an edge's far end is known without reading it.
 *
 *   lin_ids     node id string -> node u64 || first_seen u64 (event time)
 *               (ids longer than 480 bytes: their first 448 bytes, a 0 byte
 *               and the BLAKE2b-128 of the whole id)
 *   lin_nodes   node u64 -> store.v1.LineageNode (small fields only)
 *   lin_down    node u64 -> DUPSORT|DUPFIXED edge_type u8 || node u64 || time u64 || group u64
 *               (edges leaving the node, data-flow direction; group: the job of
 *               the run at either end, 0 when none)
 *   lin_up      node u64 -> DUPSORT|DUPFIXED, the same 25 bytes (edges arriving at the node)
 *   lin_states  run u64 -> DUPSORT|DUPFIXED time u64 || state u8 (tl_ol_type)
 *   lin_facets  node u64 || facet name -> time u64 || facet JSON (the latest
 *               by event time; read only to answer, never to traverse)
 *   lin_preds   prediction id -> store.v1.LineagePrediction
 *   lin_model_preds  model u64 -> DUPSORT time u64 || prediction id
 *
 * An edge's time is the earliest event time that showed it, a run state's
 * the time of its event, so a query "at T" keeps what was known by T.
 * Applying the same event twice changes nothing. Edges to a dataset version
 * and from a job version carry a flag bit and are followed only from the
 * version node itself. A run's job version is fixed once known: the code
 * version of its job's sourceCodeLocation facet, or when the run ends a digest
 * of the code location and the datasets it read and wrote (see
 * job_version_set in co_lineage.c).
 * Edge types: input (dataset -> run), output (run -> dataset or model), run
 * (job -> run), parent (parent run -> run), deployed (model -> deployment);
 * served (model -> prediction) lives in lin_model_preds.
 *
 * Threads: the apply functions run on the store's committing thread only;
 * queries run on any thread, each in one short read transaction.
 */
#ifndef CO_LINEAGE_H
#define CO_LINEAGE_H

#include "tl_arena.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct co_store co_store;

#define CO_LINEAGE_ID_MAX 4096        /* longest node id accepted, in bytes */
#define CO_LINEAGE_MAX_NODES 10000    /* default node cap of one answer */
#define CO_LINEAGE_DEFAULT_DEPTH 5    /* depth 0 means this */
#define CO_LINEAGE_MAX_DEPTH 100      /* deeper requests are cut to this */
#define CO_LINEAGE_FACET_NAME_MAX 255 /* facets with longer names are not stored */

/* ---- node ids ---- */

typedef enum co_lineage_type {
	CO_LIN_NONE = 0,
	CO_LIN_DATASET = 1,
	CO_LIN_JOB = 2,
	CO_LIN_RUN = 3,
	CO_LIN_MODEL = 4,
	CO_LIN_DEPLOYMENT = 5,
	CO_LIN_PREDICTION = 6,
} co_lineage_type;

/* "dataset", "job", ... ; "" for CO_LIN_NONE. */
const char *co_lineage_type_name(co_lineage_type t);

/*
 * A parsed node id. The string fields point into the parsed text (borrowed,
 * valid as long as it) and are not NUL-terminated: use the lengths.
 */
typedef struct co_lineage_id {
	co_lineage_type type;
	const char *ns; /* dataset, job */
	size_t ns_len;
	const char *name; /* dataset, job, model, deployment; the id of a prediction */
	size_t name_len;
	const char *version; /* dataset or job version (NULL when none), model version */
	size_t version_len;
	uint8_t run_id[16]; /* run */
} co_lineage_id;

/*
 * Parses id[0..len). Returns 0, TL_EINVALID (an unknown type or a missing
 * part; err names it) or TL_ELIMIT (longer than CO_LINEAGE_ID_MAX).
 */
int co_lineage_id_parse(const char *id, size_t len, co_lineage_id *out, tl_errmsg *err);

/*
 * Builders: write the id and a NUL into buf[0..cap) and return its length,
 * or TL_EINVALID when a required part is NULL or empty, or TL_ELIMIT when it
 * does not fit cap or CO_LINEAGE_ID_MAX (buf is then unspecified but
 * terminated when cap > 0). Run ids are written in lowercase.
 */
int co_lineage_id_format(const co_lineage_id *id, char *buf, size_t cap);
int co_lineage_id_dataset(char *buf, size_t cap, const char *ns, const char *name, const char *version);
int co_lineage_id_job(char *buf, size_t cap, const char *ns, const char *name, const char *version);
int co_lineage_id_run(char *buf, size_t cap, const uint8_t run_id[16]);
int co_lineage_id_model(char *buf, size_t cap, const char *name, const char *version);
int co_lineage_id_deployment(char *buf, size_t cap, const char *name);
int co_lineage_id_prediction(char *buf, size_t cap, const char *id);

/* ---- storage (called by co_store.c) ---- */

typedef struct co_lineage_db {
	MDB_dbi ids, nodes, down, up, states, facets, preds, model_preds;
	tl_arena scratch; /* the committing thread's; reset per applied record */
} co_lineage_db;

/*
 * Opens (creating) the lineage databases inside txn, a write transaction of
 * the store's open. Returns 0 or a TL code with err naming the database.
 * Release with co_lineage_db_fini() (accepts a zeroed db).
 */
int co_lineage_db_open(co_lineage_db *db, MDB_txn *txn, tl_errmsg *err);
void co_lineage_db_fini(co_lineage_db *db);

/*
 * Applies one OpenLineage event (the JSON body of a Record, borrowed) to the
 * graph inside txn. An event that does not parse or validate is skipped
 * (its raw record is kept by the store). Returns 0, or an LMDB code or
 * ENOMEM (positive, as the store's commit path expects): the transaction
 * must then be aborted.
 */
int co_lineage_apply_event(co_lineage_db *db, MDB_txn *txn, const uint8_t *json, size_t len);

/*
 * Applies the lineage a span carries (DESIGN.md §4 attributes; spans
 * without ml.* or lineage.* attributes cost one pass over their keys).
 * Borrows sp. Returns as co_lineage_apply_event().
 *   lineage.run_id            the span belongs to that run: the span's trace
 *                             becomes the run's trace (the first one seen);
 *                             a root span (no parent) also records the run's
 *                             START at its start and COMPLETE (or FAIL, with
 *                             the status message, when its status is ERROR)
 *                             at its end
 *   lineage.inputs / outputs  string arrays of dataset or model ids (a bare
 *                             "NS:NAME" is a dataset): edges to and from the run
 *   lineage.job.namespace, lineage.job.name   the run's job (optional)
 *   ml.prediction.id          a prediction at the span's start, in its trace,
 *                             served by model:ml.model.name:ml.model.version,
 *                             with ml.input.digest, ml.output, ml.deployment
 *   ml.deployment             with a model: model -> deployment edge
 */
int co_lineage_apply_span(co_lineage_db *db, MDB_txn *txn, const tl_pb_span *sp);

/* ---- queries ---- */

typedef enum co_lineage_dir {
	CO_LIN_BOTH = 0, /* the same values as LineageShow.Direction */
	CO_LIN_UPSTREAM = 1,
	CO_LIN_DOWNSTREAM = 2,
} co_lineage_dir;

typedef struct co_lineage_show_opts {
	const char *node_id; /* borrowed */
	co_lineage_dir dir;
	unsigned depth;   /* 0: CO_LINEAGE_DEFAULT_DEPTH; cut to CO_LINEAGE_MAX_DEPTH */
	uint64_t at_ns;   /* 0: now; else the graph as it stood then */
	size_t max_nodes; /* 0: CO_LINEAGE_MAX_NODES */
} co_lineage_show_opts;

/*
 * Breadth-first walk from o->node_id, upstream, downstream or both (each
 * direction walked on its own from the root, never turning back). Around a
 * dataset or model version only the latest run of each job (as of at_ns) is
 * followed: a daily job's older runs are history, reachable from the run or
 * with an earlier at_ns. A model's predictions come newest first. The walk
 * stops at max_nodes nodes (then "truncated" is true) or 8 edges per node.
 * The answer is the JSON document of
 * "lineage show" (README, "Lineage"), written NUL-terminated into arena:
 * *json is valid until arena is reset. Returns 0; TL_EINVALID for a
 * malformed id; TL_ENOTFOUND for a node that does not exist (or did not yet
 * at at_ns), err naming it; TL_ELIMIT when the answer does not fit arena;
 * TL_ECORRUPT / TL_ESTORE from the store.
 */
int co_lineage_show(co_store *s, const co_lineage_show_opts *o, tl_arena *arena, char **json, tl_errmsg *err);

typedef struct co_lineage_explain_opts {
	const char *prediction_id; /* without the "prediction:" prefix (a prefix is tolerated); borrowed */
	uint64_t at_ns;            /* 0: now */
	size_t max_nodes;          /* 0: CO_LINEAGE_MAX_NODES */
} co_lineage_explain_opts;

/*
 * The path from a prediction to every raw input, each run with its state
 * and reproducibility record, and the problems on the way (README,
 * "Lineage"). Returns as co_lineage_show().
 *
 * For a dataset a run read, the producing run followed is the one that
 * wrote the version the run recorded reading, else the latest that wrote
 * the dataset no later than the read, else the earliest known.
 */
int co_lineage_explain(co_store *s, const co_lineage_explain_opts *o, tl_arena *arena, char **json, tl_errmsg *err);

/*
 * Answers a QueryRequest holding lineage_show or lineage_explain (borrowed)
 * with co_lineage_show / co_lineage_explain. Returns as they do;
 * TL_EUNSUPPORTED for another query kind.
 */
int co_lineage_answer(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err);

typedef struct co_lineage_counts {
	size_t ids, nodes, edges_down, edges_up, states, facets, preds, model_preds;
} co_lineage_counts;

/* Entry counts of the lineage databases (for tests and /metrics). Returns 0 or a store error. */
int co_lineage_counts_get(co_store *s, co_lineage_counts *out);

#endif
