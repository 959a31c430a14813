/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Export of stored traces to Jaeger (or any OTLP backend), the two ways
 * `threadline export jaeger` offers:
 *
 * - a batcher that re-frames stored ResourceSpans as OTLP
 *   ExportTraceServiceRequests of at most max_spans spans and max_bytes
 *   encoded bytes each, handing every finished request to a callback (which
 *   pushes it with tl_otlp_push). Spans are copied byte for byte: resource,
 *   scope, schema URLs and every span field stay as stored. A resource's
 *   spans that do not fit one request continue in the next under a copy of
 *   the same resource and scope; consecutive traces are never merged into
 *   one ResourceSpans, which OTLP allows.
 *
 * - a writer of the Jaeger UI's upload file, {"data": [trace, ...],
 *   "total": N, ...} (co_jaeger_envelope's shape, co_jaeger_trace's
 *   traces), written one trace at a time so memory stays at one trace's
 *   JSON plus the ids needed to check references: at the end it reports the
 *   references (parents, links) that name a span not in the file.
 *
 * Nothing here logs or does network I/O.
 */
#ifndef CO_EXPORT_H
#define CO_EXPORT_H

#include "tl_buf.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CO_EXPORT_BATCH_SPANS_DEFAULT 1000
#define CO_EXPORT_BATCH_SPANS_MAX 100000
#define CO_EXPORT_BATCH_BYTES_DEFAULT ((size_t)4 << 20)
#define CO_EXPORT_BATCH_BYTES_MIN ((size_t)64 << 10)
#define CO_EXPORT_BATCH_BYTES_MAX ((size_t)32 << 20)

/*
 * Receives one finished request: body[0..len) is an encoded
 * ExportTraceServiceRequest holding n_spans spans (borrowed: valid until the
 * callback returns). Returns 0 to go on, or an error that stops the batcher
 * and is returned by the co_export_batcher_* call that emitted.
 */
typedef int (*co_export_batch_fn)(void *ud, const uint8_t *body, size_t len, size_t n_spans);

typedef struct co_export_batcher {
	size_t max_spans, max_bytes;
	co_export_batch_fn emit;
	void *ud;
	tl_buf buf;         /* the request being built */
	size_t n_spans;     /* spans in buf */
	uint64_t batches;   /* emitted so far (callback returned 0) */
	uint64_t spans;     /* spans in them */
	uint64_t bytes;     /* their encoded bytes */
	uint64_t oversized; /* spans larger than max_bytes on their own, sent alone */
} co_export_batcher;

/*
 * Embedded init. max_spans 0 means CO_EXPORT_BATCH_SPANS_DEFAULT, max_bytes
 * 0 CO_EXPORT_BATCH_BYTES_DEFAULT; emit (and ud, borrowed) receive the
 * requests. Release with co_export_batcher_fini(). Returns 0 or TL_EINVALID
 * (no callback, max_spans above CO_EXPORT_BATCH_SPANS_MAX, max_bytes
 * outside CO_EXPORT_BATCH_BYTES_MIN..MAX).
 */
int co_export_batcher_init(co_export_batcher *b, size_t max_spans, size_t max_bytes, co_export_batch_fn emit, void *ud);

/*
 * Adds the spans of rs[0..n) (borrowed; nothing is kept after the call:
 * the spans are encoded at once). Emits every request that fills up: a
 * request reaches max_spans, or the next span would take it past
 * max_bytes. A single span larger than max_bytes goes alone in its own
 * request (and counts in oversized): the receiver decides. Returns 0, the
 * callback's error, or -ENOMEM.
 */
int co_export_batcher_add(co_export_batcher *b, tl_pb_resource_spans *const *rs, size_t n);

/* co_export_batcher_add() for a stored trace as the query answers it. */
int co_export_batcher_add_trace(co_export_batcher *b, const tl_pb_trace_result *tr);

/* Emits the request being built, if it holds any span. Returns 0 or the callback's error. */
int co_export_batcher_flush(co_export_batcher *b);

/* Frees the buffer (spans not flushed are dropped). Accepts a zeroed b. */
void co_export_batcher_fini(co_export_batcher *b);

/* ---- the Jaeger UI file ---- */

#define CO_EXPORT_REF_EXAMPLE_MAX 160

typedef struct co_export_jaeger {
	FILE *out;           /* borrowed */
	size_t traces;       /* written so far */
	uint64_t spans;      /* in them */
	uint64_t processes;  /* summed over traces (each trace has its own table) */
	uint64_t references; /* every reference of every span */
	json_t *ids;         /* "traceID/spanID" of every span written */
	json_t *refs;        /* [["traceID/spanID", "what refers to it"], ...] checked at the end */
} co_export_jaeger;

typedef struct co_export_jaeger_summary {
	size_t traces;
	uint64_t spans, processes, references;
	uint64_t unresolved;                              /* references to a span that is not in the file */
	char first_unresolved[CO_EXPORT_REF_EXAMPLE_MAX]; /* "span S of trace T (CHILD_OF from span U)", or "" */
} co_export_jaeger_summary;

/* Starts the file on out (borrowed; must outlive j): writes the envelope's opening. Returns 0, -ENOMEM or -EIO. */
int co_export_jaeger_begin(co_export_jaeger *j, FILE *out);

/*
 * Converts tr (borrowed) with co_jaeger_trace() and writes it, one line.
 * Returns 0, -ENOMEM or -EIO.
 */
int co_export_jaeger_add(co_export_jaeger *j, const tl_pb_trace_result *tr);

/*
 * Closes the data array and writes the rest of co_jaeger_envelope()
 * ("total" = traces written, "errors": null). Fills sum (may be NULL),
 * checking every reference against the spans written. Does not close out
 * nor flush it. Returns 0, -ENOMEM or -EIO.
 */
int co_export_jaeger_end(co_export_jaeger *j, co_export_jaeger_summary *sum);

/* Frees what j holds. Accepts a zeroed or finished j. */
void co_export_jaeger_fini(co_export_jaeger *j);

#endif
