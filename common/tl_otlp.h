/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP trace decoding and validation: the protobuf and the JSON encodings of
 * ExportTraceServiceRequest, both decoded into the same protobuf-c structs.
 *
 * Decoding checks structure (a truncated or malformed body fails as a whole
 * with a message naming what and where). Validation then checks every span
 * against the limits and the OTLP rules (id lengths, non-zero ids, UTF-8
 * strings, attribute counts, string lengths, AnyValue nesting) and removes
 * the spans that fail, so the rest can be kept: OTLP's partial success.
 */
#ifndef TL_OTLP_H
#define TL_OTLP_H

#include "tl_error.h"
#include "tl_pb.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tl_otlp_limits {
	size_t max_spans;         /* per request (default 100,000) */
	size_t max_attributes;    /* per span, resource, scope, event or link (default 128) */
	size_t max_events;        /* per span (default 128) */
	size_t max_links;         /* per span (default 128) */
	size_t max_key_bytes;     /* attribute key (default 256) */
	size_t max_string_bytes;  /* any string or bytes value, span name (default 64 KiB) */
	size_t max_array_values;  /* items in one ArrayValue / KeyValueList (default 1,024) */
	unsigned max_depth;       /* AnyValue nesting (default 8); also bounds decoder recursion */
	size_t max_decoded_bytes; /* memory one decoded request may use (default 64 MiB) */
} tl_otlp_limits;

void tl_otlp_limits_default(tl_otlp_limits *l);

/*
 * Decodes an OTLP protobuf body. The message is allocated from alloc (use an
 * arena from tl_arena.h, capped at lim->max_decoded_bytes; the caller frees
 * by resetting the arena, or with protobuf_c_message_free_unpacked if alloc
 * is a real allocator). Before unpacking, the wire bytes are walked with the
 * message descriptors and an explicit depth bound, so deep nesting is an
 * error, never deep recursion.
 * Returns 0; TL_EPARSE with err naming the byte offset and field for a
 * malformed or truncated body (a NUL byte inside a string field counts as
 * malformed: C strings could not carry it); TL_ELIMIT when nesting, memory
 * or the span count exceed lim. On error *out is NULL.
 */
int tl_otlp_decode_proto(const uint8_t *buf, size_t len, const tl_otlp_limits *lim, ProtobufCAllocator *alloc,
                         tl_pb_export_req **out, tl_errmsg *err);

/*
 * Decodes an OTLP/JSON body (protobuf JSON mapping as OTLP specifies it):
 * lowerCamelCase keys (original snake_case names accepted too), trace and
 * span ids as hex of either case, 64-bit integers as JSON numbers or strings,
 * enums as integers (names accepted too), bytesValue as base64, unknown
 * fields ignored. Allocation and return codes as tl_otlp_decode_proto; err
 * names the JSON position (line:column) or the field path that is wrong.
 */
int tl_otlp_decode_json(const uint8_t *buf, size_t len, const tl_otlp_limits *lim, ProtobufCAllocator *alloc,
                        tl_pb_export_req **out, tl_errmsg *err);

typedef struct tl_otlp_verdict {
	size_t spans_total;    /* spans in the request before validation */
	size_t spans_rejected; /* removed by validation */
	tl_errmsg first_error; /* why the first rejected span was rejected, with its path */
} tl_otlp_verdict;

/*
 * Validates req in place against lim: removes every span that breaks a rule
 * (wrong id length, all-zero ids, invalid UTF-8, too many attributes,
 * oversized strings, too deep AnyValue, end before start, ...), and drops
 * ScopeSpans and ResourceSpans left empty. A resource or scope that breaks a
 * rule rejects all its spans. Never allocates; removed spans stay in the
 * arena. Returns 0 (even if spans were rejected; see v), or TL_ELIMIT when
 * the request has more than max_spans spans (nothing kept).
 */
int tl_otlp_validate(tl_pb_export_req *req, const tl_otlp_limits *lim, tl_otlp_verdict *v);

/* Number of spans in req. */
size_t tl_otlp_count_spans(const tl_pb_export_req *req);

/* The resource's service.name when it is a string, else NULL (r may be NULL). Borrowed from r. */
const char *tl_otlp_service_name(const tl_pb_resource *r);

/* True when the span's status is ERROR. */
bool tl_otlp_span_failed(const tl_pb_span *sp);

/*
 * The protobuf message nesting both decoders allow below the request for
 * lim->max_depth AnyValue levels (3 * max_depth + 5, at most 200): deeper
 * bodies fail with TL_ELIMIT as a whole; AnyValues nested deeper than
 * max_depth but within this bound are left to tl_otlp_validate, which
 * rejects only their spans.
 */
unsigned tl_otlp_message_depth(const tl_otlp_limits *lim);

#endif
