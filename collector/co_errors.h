/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error analysis (DESIGN.md §7): failures grouped by fingerprint with their
 * impact, ranked, and the causal chain of one failed trace continued across
 * span links and the lineage graph. Built on co_search (candidates),
 * co_store_get_trace and co_analyze (root cause), and co_lineage (impact and
 * upstream causes); it keeps no databases of its own.
 *
 * Exception of a span. The exception.type and exception.message attributes
 * of its last event named "exception" that has either (OpenTelemetry
 * semantic conventions for exceptions); without such an event the type is
 * the span's error.type attribute (or "") and the message its status
 * message (or "").
 *
 * Fingerprint = service + operation (span name) + exception type +
 * normalised message. co_errors_normalize() rewrites a message so that
 * failures differing only in the values they mention fall together:
 *   1. a quoted string, '...' or "..." (the quote opens at the start or after
 *      a character that is not a letter or digit, and closes at the same
 *      quote followed by the end or such a character; nothing inside is
 *      looked at), or `...`, becomes <s>;
 *   2. a UUID (8-4-4-4-12 hex digits) becomes <id>;
 *   3. a word (a run of ASCII letters and digits) that is 0x and hex digits,
 *      or at least 8 hex digits with both a decimal digit and a letter a-f
 *      among them (trace and span ids, digests, object ids), becomes <id>
 *      ("deadbeef" and "12345678" are not ids: a word, and a number);
 *   4. any other run of decimal digits, with a fraction (".5") when one
 *      follows, becomes <n> (so "user42" becomes "user<n>");
 *   5. runs of white space (and control characters) become one space, with
 *      none at either end.
 * The result is cut to CO_ERRORS_MSG_MAX bytes at a UTF-8 boundary. The
 * short stable id of a fingerprint is BLAKE2b with an 8-byte digest over the
 * four parts, each followed by a 0 byte, as 16 lowercase hex digits.
 *
 * Every answer is a JSON document, with times and durations in ns as
 * decimal strings and ids in lowercase hex:
 *
 * errors list: {"since_unix_nano", "until_unix_nano", "traces_examined",
 *   "groups_total", "partial", "groups": [{"id", "service", "operation",
 *   "exception_type", "message" (normalised), "sample_message", "traces",
 *   "cause_spans", "first_seen_unix_nano", "last_seen_unix_nano",
 *   "outcomes": {"failed", "recovered"}, "sample_trace_ids": [...],
 *   "impact": {"traces", "predictions", "models": {"count", "ids"},
 *   "deployments": {"count", "ids"}, "runs": {"count", "ids"}}}]}
 *   (ids: the first CO_ERRORS_IDS_SHOWN, sorted; counts are whole).
 *
 * errors explain: {"trace_id", "outcome": "failed"|"recovered"|"ok",
 *   "root_cause": HOP|null, "fingerprint": {"id", "service", "operation",
 *   "exception_type", "message"}|null, "chain": [HOP...], "predictions": [...],
 *   "linked": [{"depth", "from_trace_id", "from_span_id", "trace_id",
 *   "span_id", "found", + the trace fields above, "linked_span": HOP|null}],
 *   "upstream": [{"depth", "from_trace_id", "affected_predictions", "run",
 *   "kind": "failed"|"aborted", "job", "state", "error", "message",
 *   "ended_at", "trace_id"|null, "found" | "repeated", + the trace fields}],
 *   "truncated"}
 * HOP: {"span_id", "parent_span_id", "service", "operation", "kind",
 *   "status": "UNSET"|"OK"|"ERROR", "status_message", "exception_type",
 *   "exception_message" (both null unless the span failed),
 *   "start_unix_nano", "duration_nano", "failed", "root_cause",
 *   "missing_parent"}.
 *
 * Threads: every function may run on any thread; each store read is its
 * own short read transaction.
 */
#ifndef CO_ERRORS_H
#define CO_ERRORS_H

#include "co_analyze.h"
#include "co_store.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CO_ERRORS_WINDOW_NS (UINT64_C(24) * 3600 * 1000000000) /* since = until - 24 h when 0 */
#define CO_ERRORS_MAX_TRACES 10000                             /* failed traces read (0 in the options) */
#define CO_ERRORS_LIMIT_DEFAULT 20                             /* groups answered (0 in the options) */
#define CO_ERRORS_LIMIT_MAX 1000                               /* more are cut to this */
#define CO_ERRORS_MSG_MAX 512                                  /* bytes of a normalised or sample message */
#define CO_ERRORS_SAMPLES 3                                    /* sample trace ids per group */
#define CO_ERRORS_IDS_SHOWN 10                  /* model, deployment and run ids listed per group (counts are whole) */
#define CO_ERRORS_IMPACT_MAX 1000000            /* distinct (group, prediction|model|run|deployment) pairs kept */
#define CO_ERRORS_LINEAGE_WALKS 256             /* lineage walks of one list answer; more: partial */
#define CO_ERRORS_TRACE_MEM ((size_t)256 << 20) /* arena cap for reading one trace */
#define CO_ERRORS_EXPLAIN_DEPTH 4               /* link and lineage hops an explanation follows */
#define CO_ERRORS_EXPLAIN_TRACES 32             /* traces one explanation reads at most */
#define CO_ERRORS_EXPLAIN_PREDICTIONS 8         /* predictions of one trace explained through lineage */

/* ---- fingerprints (exposed for tests and the CLI) ---- */

/*
 * Writes the normal form of msg[0..len) (borrowed; rules above) and a NUL
 * into out[0..cap) (cap >= 1; cut to cap - 1 and CO_ERRORS_MSG_MAX bytes at a
 * UTF-8 boundary). Returns the length written.
 */
size_t co_errors_normalize(const char *msg, size_t len, char *out, size_t cap);

/* The exception of sp (rules above). The strings borrow from sp; never NULL. */
void co_errors_exception(const tl_pb_span *sp, const char **type, const char **message);

/*
 * The fingerprint's id: 16 lowercase hex digits and a NUL into id. Borrows
 * the four strings (NULL counts as "").
 */
void co_errors_fingerprint_id(const char *service, const char *operation, const char *type, const char *normalized,
                              char id[17]);

/* ---- answers ---- */

typedef struct co_errors_opts {
	uint64_t since_ns;  /* 0: until - CO_ERRORS_WINDOW_NS */
	uint64_t until_ns;  /* 0: now; the window is [since, until) on the failing span's start */
	size_t limit;       /* groups answered; 0: CO_ERRORS_LIMIT_DEFAULT; cut to CO_ERRORS_LIMIT_MAX */
	size_t max_traces;  /* failed traces read at most; 0: CO_ERRORS_MAX_TRACES */
	size_t search_page; /* traces per co_search call; 0: CO_SEARCH_LIMIT_MAX (tests use small pages) */
} co_errors_opts;

/*
 * Error groups over the traces with a span of status ERROR that started in
 * [since, until). Candidates come from co_search (error_only, the window
 * split in halves, newer first, until a part answers fewer than a page);
 * at most max_traces distinct traces are read (newest windows first), each
 * analysed with co_analyze and counted in the group of its root cause's
 * fingerprint. Ranked by impact: distinct predictions, then traces, then
 * cause spans, then the latest last_seen, then the id. "partial" is true
 * when max_traces, co_search's own examine limit, a trace too large to read,
 * CO_ERRORS_IMPACT_MAX or CO_ERRORS_LINEAGE_WALKS left something out.
 *
 * The answer is written NUL-terminated into arena: *json is valid until
 * arena is reset. Returns 0; TL_EINVALID (since not before until, err says
 * so); TL_ELIMIT when the answer does not fit arena; -ENOMEM; or a store
 * error (err names it).
 */
int co_errors_list(co_store *s, const co_errors_opts *o, tl_arena *arena, char **json, tl_errmsg *err);

/*
 * The causal chain of one trace: its outcome, the chain from the root of
 * the root cause's tree down to the root cause (the trace's root, unless the
 * cause sits under a span whose parent never arrived: then the first hop has
 * missing_parent), then the continuations —
 * across the span links of the chain into the linked traces (each read,
 * analysed and explained in turn), and across lineage: for every
 * ml.prediction.id the trace carries (at most CO_ERRORS_EXPLAIN_PREDICTIONS),
 * co_lineage_explain's FAILED or ABORTED upstream runs, each followed into
 * the trace it ran in when one is known. At most CO_ERRORS_EXPLAIN_DEPTH
 * hops from the trace and CO_ERRORS_EXPLAIN_TRACES traces; a trace is never
 * explained twice ("truncated" says when a bound cut the answer).
 *
 * The answer is written into arena as for co_errors_list(). Returns 0;
 * TL_ENOTFOUND ("trace <hex> not found" in err); TL_ELIMIT (the trace does
 * not fit CO_ERRORS_TRACE_MEM, or the answer does not fit arena); -ENOMEM;
 * or a store error.
 */
int co_errors_explain(co_store *s, const uint8_t trace_id[16], tl_arena *arena, char **json, tl_errmsg *err);

/*
 * Answers a QueryRequest holding errors_list or errors_explain (borrowed)
 * with the functions above. Returns as they do; TL_EINVALID for a trace id
 * that is not 16 bytes; TL_EUNSUPPORTED for another query kind.
 */
int co_errors_answer(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err);

#endif
