/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Forwarding: the collector sends every span it stores on to an OTLP/HTTP
 * endpoint (Jaeger v2, Tempo, an OpenTelemetry Collector) while keeping its
 * own copy for lineage, error analysis and audit.
 *
 * The queue is the store itself. Chunks in `spans` are an append-only log;
 * the forwarder keeps one durable cursor beside it, in the `fwd` database of
 * the same LMDB environment:
 *
 *   fwd   "next" -> chunk_id u64 || span_offset u64   (big-endian)
 *
 * the first span not yet delivered: span number span_offset (counted over
 * the chunk's groups in order) of chunk chunk_id. A missing cursor means "from
 * the first stored chunk", so turning forwarding on sends what is already
 * stored. One thread reads spans after the cursor, rebuilds
 * ResourceSpans/ScopeSpans (resources resolved from `resources`, spans that
 * share a resource and scope grouped, arrival order kept), encodes an
 * ExportTraceServiceRequest of at most batch_spans spans and batch_bytes of
 * encoded spans, pushes it with tl_otlp_push(), and only after a 2xx
 * advances the cursor in its own write transaction. Nothing is copied into a
 * second queue, so the queue is bounded by the store (and its retention),
 * never by the remote's availability; memory is one batch.
 *
 * Answers:
 *   2xx                  delivered; spans a partial_success names as rejected
 *                        are counted as rejected (the batch is not resent).
 *   no answer, 429, 5xx, an unusable URL or TLS setup, 1xx/3xx
 *                        retried forever: tl_otlp_push's own retries (Retry-After
 *                        honoured), then our backoff (doubling from
 *                        initial_backoff_ns up to max_backoff_ns, full jitter).
 *                        Nothing is skipped; lag grows and shows in /metrics.
 *   4xx other than 429, or a batch above TL_OTLP_PUSH_BODY_MAX
 *                        the batch can never be accepted: logged once with the
 *                        answer's body, counted as rejected, skipped, so one
 *                        poison batch cannot stop forwarding for good.
 *   a chunk that does not decode (corruption)
 *                        logged, counted in chunks_skipped, skipped.
 *
 * Delivery guarantee (what a receiver sees):
 *   - Every stored span is sent; a span is sent again only if no 2xx for its
 *     batch was recorded in the cursor.
 *   - Clean stop (SIGTERM, co_forward_stop): the push in flight gets up to
 *     stop_grace_ns to finish and its 2xx is recorded before the thread
 *     exits; a retry wait is cut short at once. So a stop and restart deliver
 *     every span exactly once, unless the grace period ran out during a
 *     request that the remote went on to accept (then that one batch comes
 *     again).
 *   - Crash (kill -9, power loss): at least once. The cursor is written after
 *     each 2xx, so at most the one batch in flight (pushed, answered or not,
 *     cursor not yet written) is sent again after the restart; with
 *     --fsync DURATION the cursor writes are fsynced with the store's, so a
 *     power loss can also repeat the batches of that window.
 *   - A request whose answer is lost (timeout, reset) is retried and may
 *     arrive twice, as with every OTLP exporter.
 *
 * Threads: one forwarder thread; co_forward_on_commit and the stats
 * functions may be called from any thread.
 */
#ifndef CO_FORWARD_H
#define CO_FORWARD_H

#include "co_store.h"
#include "tl_buf.h"
#include "tl_error.h"

#include <stddef.h>
#include <stdint.h>

#define CO_FORWARD_HEADERS_MAX 32
#define CO_FORWARD_BATCH_SPANS_MAX 100000
#define CO_FORWARD_BATCH_BYTES_MIN ((size_t)64 << 10)
#define CO_FORWARD_BATCH_BYTES_MAX ((size_t)32 << 20)

typedef struct co_forward co_forward;

typedef struct co_forward_opts {
	const char *url;             /* http(s)://HOST:PORT/v1/traces; copied */
	const char *const *headers;  /* "Name: value" lines (e.g. Authorization); copied; may be NULL */
	size_t n_headers;            /* at most CO_FORWARD_HEADERS_MAX */
	size_t batch_spans;          /* spans per request (0: 1000; at most CO_FORWARD_BATCH_SPANS_MAX) */
	size_t batch_bytes;          /* encoded span bytes per request (0: 4 MiB; 64 KiB..32 MiB) */
	bool no_gzip;                /* send uncompressed (default: Content-Encoding: gzip) */
	uint64_t initial_backoff_ns; /* first retry wait (0: 500 ms) */
	uint64_t max_backoff_ns;     /* retry waits are capped here (0: 30 s) */
	uint64_t timeout_ns;         /* per request (0: 30 s) */
	uint64_t stop_grace_ns;      /* co_forward_stop: how long a push in flight may go on (0: 5 s) */
	uint64_t idle_poll_ns;       /* with no commit signalled, look for chunks this often anyway (0: 1 s) */
} co_forward_opts;

/*
 * Opens (creating) the `fwd` database, reads the cursor and starts the
 * forwarder thread on s (borrowed; must outlive the forwarder). Returns 0
 * and *out (caller frees with co_forward_free()); TL_EINVALID for bad
 * options (err names which); a store error; or -errno.
 */
int co_forward_start(co_store *s, const co_forward_opts *o, co_forward **out, tl_errmsg *err);

/*
 * Wakes the forwarder: new chunks were committed. A co_writer commit hook
 * (co_writer_set_commit_fn); forward is a co_forward *. Cheap, thread-safe,
 * never blocks on the network.
 */
void co_forward_on_commit(void *forward);

typedef struct co_forward_stats {
	uint64_t spans;            /* spans in batches answered 2xx (minus those it rejected) */
	uint64_t batches;          /* batches answered 2xx */
	uint64_t bytes;            /* encoded request bytes of those batches (before gzip) */
	uint64_t requests;         /* HTTP requests made (every attempt) */
	uint64_t retries;          /* requests that repeated a batch */
	uint64_t failures;         /* requests that got no 2xx */
	uint64_t rejected_batches; /* batches refused for good (4xx) and skipped */
	uint64_t rejected_spans;   /* their spans, plus spans a partial_success rejected */
	uint64_t chunks_skipped;   /* chunks that did not decode */
	uint64_t cursor_chunk;     /* next chunk to send */
	uint64_t cursor_offset;    /* its first unsent span */
	uint64_t cursor_failures;  /* cursor writes that failed (retried with the next batch) */
	bool failing;              /* the batch in flight has failed at least once and not got through yet */
} co_forward_stats;

/* A snapshot of the counters. Thread-safe. */
void co_forward_stats_get(co_forward *f, co_forward_stats *out);

/*
 * Chunks stored at or after the cursor (by chunk id; retention may leave
 * gaps, so it is an upper bound). Opens a short read transaction. Returns 0
 * and *lag, or a store error. Thread-safe.
 */
int co_forward_lag(co_forward *f, uint64_t *lag);

/*
 * Appends the counters and the lag to b in Prometheus text format
 * (threadline_collector_forward_*). Thread-safe. Returns 0 or tl_buf's error.
 */
int co_forward_metrics(co_forward *f, tl_buf *b);

/*
 * Stops the thread: a retry wait ends at once, a push in flight may go on
 * for stop_grace_ns and is then cancelled; a batch answered 2xx has its
 * cursor written before the thread exits. Idempotent.
 */
void co_forward_stop(co_forward *f);

/* Stops if needed and frees. Accepts NULL. */
void co_forward_free(co_forward *f);

#endif
