/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pipeline between the receivers and the sender, through the spool.
 *
 *   submit --> waiting --(group commit on the thread pool)--> spool --> sender --ack--> removed
 *
 * A request's records are answered once the spool transaction that holds
 * them has committed; records that arrive while a commit runs share the
 * next one, so throughput does not pay a commit per request. Spooled
 * batches go to the sender oldest first, a window at a time, and leave the
 * spool only when the collector has acknowledged them (in a later commit).
 * A batch the collector refuses for good is moved aside ("dead"), counted,
 * and never resent.
 *
 * Bounds: records waiting for a commit are held in memory up to
 * max_pending_bytes; the spool holds up to its max_bytes. Past either,
 * submit refuses and the receiver answers 429 with Retry-After.
 *
 * Everything here runs on the loop thread except the spool transactions.
 */
#ifndef AG_PIPELINE_H
#define AG_PIPELINE_H

#include "ag_sender.h"
#include "ag_spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ag_pipeline ag_pipeline;

typedef struct ag_pipeline_opts {
	size_t batch_max_bytes;       /* encoded records per batch (default 1 MiB) */
	size_t max_pending_bytes;     /* received, not yet committed to the spool (default 8 MiB) */
	size_t spool_max_bytes;       /* the spool's bound (default 1 GiB; same as ag_spool_opts.max_bytes) */
	uint64_t request_deadline_ms; /* answer TL_ETIMEOUT if not committed by then (default 10 s) */
	uint64_t sync_interval_ms;    /* 0: the spool fsyncs each commit; else fsync this often */
} ag_pipeline_opts;

void ag_pipeline_opts_default(ag_pipeline_opts *o);

/*
 * Final answer for one submitted record, on the loop thread: 0 once it is
 * committed to the spool; TL_ESTORE when the spool transaction failed (msg
 * says why; nothing was kept); TL_ETIMEOUT when no commit took it in time;
 * TL_ECLOSED at shutdown.
 */
typedef void (*ag_done_cb)(void *ud, int status, const char *msg);

/*
 * Creates a pipeline over spool and sender (both borrowed; they must outlive
 * it). Batches already in the spool are sent at once. Caller frees with
 * ag_pipeline_close().
 */
int ag_pipeline_new(uv_loop_t *loop, ag_spool *spool, ag_sender *sender, const ag_pipeline_opts *o, ag_pipeline **out);

/* What a record's bytes are (Record.body in wire.proto). */
typedef enum ag_record_kind {
	AG_RECORD_OTLP_TRACES = 0, /* an encoded ExportTraceServiceRequest */
	AG_RECORD_OPENLINEAGE = 1, /* one OpenLineage event as JSON */
} ag_record_kind;

/*
 * Queues one record: an encoded ExportTraceServiceRequest holding nspans
 * spans, or one OpenLineage event (nspans 0). Takes
 * ownership of data (malloc'd) on success; cb runs exactly once later.
 * Returns 0; TL_EFULL when the spool has no room for it now; TL_ELIMIT when
 * it is larger than the whole spool; -ENOBUFS over max_pending_bytes;
 * TL_ECLOSED once stopped. On error nothing is taken.
 */
int ag_pipeline_submit(ag_pipeline *p, ag_record_kind kind, uint8_t *data, size_t len, size_t nspans, ag_done_cb cb,
                       void *ud);

/* Refuses further submits (TL_ECLOSED); commits and sending go on. */
void ag_pipeline_stop_accepting(ag_pipeline *p);

/* True when nothing waits for a commit, no commit runs, and every spooled batch is acknowledged. */
bool ag_pipeline_drained(const ag_pipeline *p);

typedef struct ag_pipeline_stats {
	uint64_t records_committed; /* records committed to the spool (requests answered 200) */
	uint64_t events_committed;  /* OpenLineage events among them */
	uint64_t spans_committed;
	uint64_t records_timed_out;
	uint64_t records_failed; /* spool transaction failed */
	uint64_t commits;
	uint64_t commit_errors;
	uint64_t syncs;
	uint64_t batches_spooled;
	uint64_t batches_acked;
	uint64_t spans_delivered;
	uint64_t batches_refused; /* moved aside after a refusal */
	uint64_t spans_refused;
	size_t pending_bytes; /* waiting for a commit or in the running one */
	size_t pending_records;
	ag_spool_info spool;
	size_t spool_max_bytes;
} ag_pipeline_stats;

void ag_pipeline_stats_get(const ag_pipeline *p, ag_pipeline_stats *out);

/*
 * Stops. Records waiting for a commit (and those of a commit not yet
 * started) get TL_ECLOSED now: none of them was kept. Records of a commit
 * already running get its outcome when it ends (0: they are in the spool),
 * so a 503 never hides spans that were kept. Close the sender first: its
 * callbacks refer to the pipeline. cb(ud) (may be NULL) runs on the loop
 * once every record has been answered and p is freed; whatever the done
 * callbacks use must live until then. The spool may be closed after that.
 * Accepts NULL (cb runs at once).
 */
void ag_pipeline_close(ag_pipeline *p, void (*cb)(void *ud), void *ud);

#endif
