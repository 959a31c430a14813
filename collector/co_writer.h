/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's single writer: one thread owns every LMDB write
 * transaction. It takes every queued batch (up to a cap), commits them in
 * one transaction (group commit) and only then completes them, so an ack is
 * never sent for data that is not committed. The queue is bounded in bytes:
 * producers ask co_writer_has_room() before taking more work.
 *
 * With a store opened no_sync, the writer fsyncs at most sync_ms after the
 * first commit not yet on disk, and once more when it stops.
 */
#ifndef CO_WRITER_H
#define CO_WRITER_H

#include "co_store.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct co_writer co_writer;
typedef struct co_write_req co_write_req;

/*
 * Called on the writer thread after the commit that included r (rc 0, and
 * r->batch.status says what happened to it) or after it failed (rc < 0,
 * status CO_BATCH_RETRY). The writer forgets r before calling; the callee
 * owns it again.
 */
typedef void (*co_write_done_fn)(co_write_req *r, int rc);

struct co_write_req {
	co_batch batch; /* borrowed by the writer until done */
	size_t bytes;   /* counted against the queue cap (e.g. the wire size) */
	co_write_done_fn done;
	void *ud;
	co_write_req *next; /* writer's queue link */
};

typedef struct co_writer_opts {
	size_t queue_max_bytes;   /* submit refuses beyond this (0: 64 MiB) */
	size_t group_max_batches; /* per transaction (0: 256) */
	size_t group_max_bytes;   /* per transaction (0: 32 MiB) */
	uint64_t sync_ms;         /* 0: every commit is fsynced by the store; else co_store_sync this often */
} co_writer_opts;

/* Starts the writer thread on s (borrowed; must outlive the writer). Returns 0 and *out, or -errno. */
int co_writer_start(co_store *s, const co_writer_opts *o, co_writer **out);

/*
 * Queues r (borrowed until r->done runs). Accepts even past the byte cap,
 * so a request already received is never dropped; producers keep the queue
 * bounded by checking co_writer_has_room() before receiving more. Returns 0,
 * or TL_ECLOSED after co_writer_stop() (r->done is then never called).
 */
int co_writer_submit(co_writer *w, co_write_req *r);

/*
 * Sets the function called on the writer thread whenever queue space was
 * freed (fn NULL: none). Thread-safe; after it returns the old function is
 * no longer running or called.
 */
void co_writer_set_room_fn(co_writer *w, void (*fn)(void *ud), void *ud);

/*
 * Sets the function called on the writer thread after each commit that
 * stored something (fn NULL: none), e.g. to wake the forwarder. Same rules
 * as co_writer_set_room_fn: keep fn short and never block in it.
 */
void co_writer_set_commit_fn(co_writer *w, void (*fn)(void *ud), void *ud);

/* True while the queued bytes are below the cap. Thread-safe. */
bool co_writer_has_room(co_writer *w);

/* Queued bytes (not yet completed). Thread-safe. */
size_t co_writer_queued_bytes(co_writer *w);

/* Periodic fsyncs done and failed (sync_ms mode). Thread-safe. */
void co_writer_sync_stats(co_writer *w, uint64_t *syncs, uint64_t *failures);

/* Commits everything already queued, completes it, fsyncs, and joins the thread. Idempotent. */
void co_writer_stop(co_writer *w);

/* Stops if needed and frees. Accepts NULL. */
void co_writer_free(co_writer *w);

#endif
