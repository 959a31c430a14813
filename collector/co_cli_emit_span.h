/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline emit span`: one span for a shell step, sent as an OTLP/JSON
 * ExportTraceServiceRequest to the local agent's /v1/traces. The parent comes
 * from the W3C trace-context TRACEPARENT environment variable; the new span's
 * traceparent is printed so scripts can chain steps.
 */
#ifndef CO_CLI_EMIT_SPAN_H
#define CO_CLI_EMIT_SPAN_H

#include "co_cli.h"
#include "tl_error.h"
#include "tl_id.h"

#include <stddef.h>
#include <stdint.h>

/* "00-" + 32 + "-" + 16 + "-" + 2 and a NUL. */
#define CO_CLI_TRACEPARENT_LEN 55

/* A parsed W3C traceparent header. */
typedef struct co_cli_traceparent {
	uint8_t trace_id[TL_TRACE_ID_LEN];
	uint8_t span_id[TL_SPAN_ID_LEN];
	uint8_t flags;
} co_cli_traceparent;

/*
 * Parses s (borrowed) as a W3C trace-context traceparent: version-traceid-
 * parentid-flags in lowercase hex. Version ff, an all-zero trace or parent
 * id, and for version 00 anything after the flags are refused; a later
 * version may carry more fields after a '-'. Returns 0 or TL_EINVALID with
 * the reason in err.
 */
int co_cli_traceparent_parse(const char *s, co_cli_traceparent *out, tl_errmsg *err);

/* What `emit span` sends; every pointer is borrowed, NULL means the flag was not given. */
typedef struct co_cli_span_opts {
	const char *name;
	const char *service;  /* NULL: "shell" */
	const char *kind;     /* internal|server|client|producer|consumer; NULL: internal */
	const char *start;    /* tl_parse_time() syntax */
	const char *end;      /* tl_parse_time() syntax; not with duration */
	const char *duration; /* tl_parse_duration() syntax */
	const char **attrs;   /* "key=value" */
	size_t nattrs;
	const char *status;      /* ok|error; NULL: unset */
	const char *message;     /* the status message; needs status error */
	const char *traceparent; /* the parent (TRACEPARENT); NULL or "": a new trace */
} co_cli_span_opts;

/*
 * Builds the ExportTraceServiceRequest (OTLP/JSON) for o at now_ns (unix
 * ns). trace_id is the new trace's id, used only when o has no parent;
 * span_id is the new span's. On success *json is compact JSON (caller frees
 * with free()) and traceparent holds "00-TRACE-SPAN-01". Returns 0,
 * TL_EINVALID with the offending flag (or TRACEPARENT) named in err, or
 * -ENOMEM.
 */
int co_cli_span_build(const co_cli_span_opts *o, uint64_t now_ns, const uint8_t trace_id[TL_TRACE_ID_LEN],
                      const uint8_t span_id[TL_SPAN_ID_LEN], char **json, char traceparent[CO_CLI_TRACEPARENT_LEN + 1],
                      tl_errmsg *err);

/* `threadline emit span ...`. argv[0] is "emit", argv[1] "span". Returns an exit code. */
int co_cli_emit_span(co_cli *cli, int argc, char **argv);

#endif
