/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's durable spool: an LMDB environment in the spool directory that
 * holds every batch from the moment its requests are answered 200 until the
 * collector acknowledges it. It also keeps the agent's identity (a random
 * 16-byte id made on first open) and the next batch sequence number, so a
 * restarted agent resends what was not acknowledged under the same
 * (agent id, seq) and the collector drops what it already has. Its disk
 * space is reserved at open (see ag_spool_reserved).
 *
 * Databases: "meta" (agent_id, next_seq), "batches" (seq → batch, oldest
 * first, appended) and "dead" (seq → batch the collector refused for good,
 * with its reason; kept aside and counted, never resent).
 *
 * Threads: ag_spool_write runs a write transaction and may be called from
 * any one thread at a time (the pipeline runs it on the libuv thread pool);
 * ag_spool_read_next and ag_spool_info may run concurrently with it (LMDB
 * readers never block the writer). A lock file in the directory keeps a
 * second agent out of a spool that is in use.
 */
#ifndef AG_SPOOL_H
#define AG_SPOOL_H

#include "tl_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ag_spool ag_spool;

typedef struct ag_spool_opts {
	const char *dir;       /* created if missing (borrowed for the call) */
	size_t max_bytes;      /* limit on spooled batch bytes, dead ones included (default 1 GiB) */
	bool sync_each_commit; /* false: commits are not fsynced; call ag_spool_sync() periodically */
} ag_spool_opts;

void ag_spool_opts_default(ag_spool_opts *o);

/*
 * Opens (creating if needed) the spool in o->dir. Caller frees with
 * ag_spool_close(). Returns 0, TL_ECLOSED if another process holds the spool
 * (err names its pid), TL_ESTORE / -errno for I/O errors (err says which).
 */
int ag_spool_open(const ag_spool_opts *o, ag_spool **out, tl_errmsg *err);

/* Closes the environment and releases the lock. Accepts NULL. */
void ag_spool_close(ag_spool *s);

/*
 * True when the spool's disk space (max_bytes and LMDB's room, 1.5 x
 * max_bytes + 4 MiB) is allocated up front, so a disk filling up later
 * cannot fail it; false on filesystems without fallocate. ag_spool_open
 * fails when the space cannot be reserved (ENOSPC, or a file-size limit).
 */
bool ag_spool_reserved(const ag_spool *s);

/* The agent's persistent identity (16 bytes, valid until close). */
const uint8_t *ag_spool_agent_id(const ag_spool *s);

/* Per-batch bookkeeping stored next to each batch. */
#define AG_SPOOL_HDR 8

typedef struct ag_spool_info {
	uint64_t next_seq; /* sequence number for the next batch */
	size_t bytes;      /* spooled bytes, live batches (values as stored) */
	size_t batches;    /* live batches (not yet acknowledged) */
	size_t dead_bytes; /* batches the collector refused, kept aside */
	size_t dead_batches;
	uint64_t spans; /* spans in live batches */
} ag_spool_info;

/* Reads the counters as of the last committed write. Returns 0 or TL_ESTORE. */
int ag_spool_info_get(ag_spool *s, ag_spool_info *out);

/* One batch to append: an encoded threadline.v1.Batch with sequence seq. */
typedef struct ag_spool_put {
	uint64_t seq; /* strictly increasing across calls, >= info.next_seq */
	const uint8_t *data;
	size_t len;
	uint32_t nspans;
} ag_spool_put;

/* One acknowledged batch to delete, or (reason != NULL) a refused one to move aside. */
typedef struct ag_spool_done {
	uint64_t seq;
	const char *reason; /* NULL: acknowledged; else why the collector refused it */
} ag_spool_done;

/* What one write changed, for the caller's counters. */
typedef struct ag_spool_delta {
	size_t added_bytes, removed_bytes, dead_bytes;
	size_t added_batches, removed_batches, dead_batches;
	uint64_t added_spans, removed_spans;
} ag_spool_delta;

/*
 * One transaction: appends puts, removes the done batches (moving refused
 * ones to "dead"), records the next sequence number, and commits (with an
 * fsync when sync_each_commit). All or nothing. Done entries whose batch is
 * already gone are skipped. Returns 0, TL_EFULL when the map is full
 * (nothing written), or TL_ESTORE / -errno (err says what failed).
 */
int ag_spool_write(ag_spool *s, const ag_spool_put *puts, size_t nputs, const ag_spool_done *done, size_t ndone,
                   ag_spool_delta *delta, tl_errmsg *err);

/* Flushes commits made without fsync to disk. Returns 0 or -errno. */
int ag_spool_sync(ag_spool *s);

/*
 * Copies out the oldest live batch with seq > after: *data (malloc'd, caller
 * frees with free()) holds the encoded Batch, without the spool's header.
 * Returns 0, TL_ENOTFOUND when there is none, -ENOMEM or TL_ESTORE.
 */
int ag_spool_read_next(ag_spool *s, uint64_t after, uint64_t *seq, uint8_t **data, size_t *len, uint32_t *nspans);

#endif
