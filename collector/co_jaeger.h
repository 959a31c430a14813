/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Jaeger's JSON model, the one jaeger-query's HTTP API answers and the
 * Jaeger UI reads (and uploads: a file of {"data": [trace, ...]}), built
 * from a stored trace as Jaeger's own OTLP translator would:
 *
 * - a resource becomes a process: serviceName from service.name
 *   ("OTLPResourceNoServiceName" when missing), every other resource
 *   attribute a process tag; equal processes are shared and keyed "p1",
 *   "p2", ... in order of first use;
 * - a span keeps its name as operationName, times in microseconds
 *   (truncated), its parent as the first reference (CHILD_OF) and its links
 *   after it (FOLLOWS_FROM, or CHILD_OF when the link says
 *   opentracing.ref_type=child_of);
 * - tags, in this order: otel.scope.name, otel.scope.version, the span's
 *   attributes, span.kind (client, server, producer, consumer, internal;
 *   none when unspecified), otel.status_code (OK, ERROR; none when unset),
 *   error=true (status ERROR), otel.status_description, w3c.tracestate;
 * - an event becomes a log at its time, with an "event" field holding its
 *   name first (unless an attribute is called "event") and its attributes;
 * - values keep their type: string, bool, int64 (a string beyond ±2^53-1,
 *   which JavaScript cannot hold), float64 (NaN and infinities as strings),
 *   binary (base64); arrays and maps become strings holding their JSON.
 *
 * Ids are lowercase hex as Jaeger prints them: a trace id whose high 8
 * bytes are zero prints as 16 digits, otherwise 32; span ids as 16.
 *
 * A span's "warnings" (null when none) come from co_analyze: a parent that
 * never arrived, a parent link that closed a cycle, a duplicated span id,
 * clock skew against the parent. Times are never adjusted, unlike
 * jaeger-query's clock-skew adjuster: the warning says by how much.
 *
 * Also the pieces of jaeger-query's HTTP API that need no store: the
 * response envelope, Go-style durations, trace ids as Jaeger accepts them
 * and span kind names. Nothing here logs or does I/O.
 */
#ifndef CO_JAEGER_H
#define CO_JAEGER_H

#include "tl_pb.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CO_JAEGER_NO_SERVICE "OTLPResourceNoServiceName"

/*
 * Converts tr (borrowed) into a Jaeger trace: {"traceID", "spans",
 * "processes", "warnings": null}; every span's processID is a key of
 * processes. Spans keep the stored order. A trace too large for
 * co_analyze (CO_AN_MAX_SPANS) is converted without span warnings.
 * Returns a new reference (caller frees with json_decref()), or NULL on
 * ENOMEM.
 */
json_t *co_jaeger_trace(const tl_pb_trace_result *tr);

/*
 * jaeger-query's response envelope: {"data": data, "total": total,
 * "limit": 0, "offset": 0, "errors": errors}. Takes ownership of data and
 * errors (either may be NULL: JSON null) whether it succeeds or not.
 * With an array of traces as data it is also the file the Jaeger UI
 * uploads. Returns a new reference, or NULL on ENOMEM.
 */
json_t *co_jaeger_envelope(json_t *data, size_t total, json_t *errors);

/*
 * An error entry {"code": code, "msg": msg} (and "traceID" when trace_id
 * is not NULL), for the errors array. Borrows its arguments. Returns a new
 * reference, or NULL on ENOMEM.
 */
json_t *co_jaeger_error_entry(int code, const char *msg, const char *trace_id);

/* The error envelope: data null, errors [{"code": code, "msg": msg}]. Returns a new reference, or NULL on ENOMEM. */
json_t *co_jaeger_error(int code, const char *msg);

/*
 * Parses a Go duration (time.ParseDuration): a sequence of decimal numbers,
 * each with an optional fraction and a unit among ns, us, µs, μs, ms, s, m,
 * h ("1.5h", "1h30m", "100ms", ".5s"), optionally led by '+'; "0" alone is
 * zero. Negative durations are refused (nothing here can use one). Returns
 * 0 and *out_ns, TL_EPARSE (a missing or unknown unit, bad digits), or
 * TL_ELIMIT (beyond Go's int64 nanoseconds).
 */
int co_jaeger_parse_duration(const char *s, uint64_t *out_ns);

/*
 * Parses a trace id as Jaeger accepts one: 1 to 32 hex digits (either
 * case), left-padded with zeros to 16 bytes. Borrows s. Returns 0 and
 * out, or TL_EPARSE.
 */
int co_jaeger_parse_trace_id(const char *s, uint8_t out[16]);

/* Jaeger's name for an OTLP span kind: "server", "client", "producer", "consumer", "internal", "" (unspecified). */
const char *co_jaeger_kind_name(int otlp_kind);

/* The OTLP span kind for one of Jaeger's names above (-1 for ""), or -2 for an unknown name. Borrows s. */
int co_jaeger_kind_from_name(const char *s);

#endif
