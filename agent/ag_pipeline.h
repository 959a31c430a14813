/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pipeline between the receivers and the sender: accepted records wait
 * here until they are part of a batch the collector has acknowledged, and
 * only then is the request that carried them answered.
 *
 * Batching is adaptive: a record is sent at once when a window slot is free,
 * and records that arrive while every slot is busy share the next batch, so
 * light load gets low latency and heavy load gets large batches (the same
 * idea as group commit). Memory is bounded by max_pending_bytes; past it,
 * submit fails with TL_EFULL and the receiver answers 429 with Retry-After.
 *
 * This is where the durable spool goes: it will take records between the
 * receiver and the sender, and answer once they are committed locally.
 */
#ifndef AG_PIPELINE_H
#define AG_PIPELINE_H

#include "ag_sender.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ag_pipeline ag_pipeline;

typedef struct ag_pipeline_opts {
	size_t batch_max_bytes;       /* encoded records per batch (default 1 MiB) */
	size_t max_pending_bytes;     /* accepted but not yet acknowledged (default 8 MiB) */
	uint64_t request_deadline_ms; /* answer TL_ETIMEOUT if not acknowledged by then (default 10 s) */
	uint8_t agent_id[16];
} ag_pipeline_opts;

void ag_pipeline_opts_default(ag_pipeline_opts *o);

/*
 * Final answer for one submitted record, on the loop thread: 0 when the
 * collector has committed it; TL_ETIMEOUT when the deadline passed first
 * (the record may still arrive later); TL_EREJECTED when the collector
 * refused it for good (msg says why); TL_ECLOSED at shutdown.
 */
typedef void (*ag_done_cb)(void *ud, int status, const char *msg);

/* Creates a pipeline feeding sender (borrowed; must outlive it). Caller frees with ag_pipeline_close(). */
int ag_pipeline_new(uv_loop_t *loop, ag_sender *sender, const ag_pipeline_opts *o, ag_pipeline **out);

/*
 * Queues one encoded ExportTraceServiceRequest holding nspans spans. Takes
 * ownership of data (malloc'd) on success; cb runs exactly once later.
 * Returns 0, TL_EFULL (over max_pending_bytes; nothing taken) or TL_ECLOSED.
 */
int ag_pipeline_submit(ag_pipeline *p, uint8_t *data, size_t len, size_t nspans, ag_done_cb cb, void *ud);

/* Bytes accepted and not yet acknowledged. */
size_t ag_pipeline_pending_bytes(const ag_pipeline *p);

typedef struct ag_pipeline_stats {
	uint64_t records_acked;
	uint64_t spans_acked;
	uint64_t records_timed_out;
	uint64_t records_rejected;
	uint64_t batches;
	size_t pending_bytes;
	size_t pending_records;
} ag_pipeline_stats;

void ag_pipeline_stats_get(const ag_pipeline *p, ag_pipeline_stats *out);

/*
 * Stops taking records; every record not yet answered gets TL_ECLOSED.
 * Close the sender first: its callbacks refer to the pipeline's batches.
 * Frees p once its timer is closed. Accepts NULL.
 */
void ag_pipeline_close(ag_pipeline *p);

#endif
