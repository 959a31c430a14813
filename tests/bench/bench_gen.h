/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The benchmark's workload: pre-encoded OTLP ExportTraceServiceRequest
 * bodies of realistic spans (100 spans per request, 10 attributes per span,
 * a few traces per request), built once, then re-sent with fresh trace ids
 * patched into the encoded bytes so every request carries traces no earlier
 * request used, without re-encoding anything on the hot path. The same spans
 * encoded one by one are the values of the raw LMDB ceiling.
 */
#ifndef BENCH_GEN_H
#define BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

#define BG_TRACES_PER_REQ 4
#define BG_SPANS_PER_TRACE 25
#define BG_SPANS_PER_REQ (BG_TRACES_PER_REQ * BG_SPANS_PER_TRACE)
#define BG_ATTRS_PER_SPAN 10
#define BG_TRACE_ID_LEN 16

typedef struct bg_req {
	uint8_t *body; /* encoded ExportTraceServiceRequest */
	size_t len;
	/* Where each trace's id sits in body: one offset per span of that trace. */
	size_t id_off[BG_TRACES_PER_REQ][BG_SPANS_PER_TRACE];
} bg_req;

typedef struct bg_value {
	uint8_t *data; /* one Span encoded alone */
	size_t len;
} bg_value;

typedef struct bg_set {
	bg_req *reqs;
	size_t nreqs;
	size_t max_len;  /* longest body */
	bg_value *spans; /* every span of every request, encoded one by one */
	size_t nspans;
	uint8_t run_id[8]; /* random prefix of the trace ids this run hands out */
	uint64_t next_trace;
} bg_set;

/*
 * Builds nreqs distinct request templates (different services, names and
 * attribute values). Returns 0 and fills s (caller frees with bg_set_fini()),
 * or -ENOMEM / TL_EINVALID if an encoded template does not contain its trace
 * ids exactly where expected.
 */
int bg_set_init(bg_set *s, size_t nreqs);

void bg_set_fini(bg_set *s);

/*
 * Writes the next BG_TRACES_PER_REQ fresh trace ids (run_id || counter,
 * big-endian) into body, a copy of r->body, at r's offsets; each id is also
 * copied to ids_out[i] (may be NULL). body is borrowed.
 */
void bg_patch(bg_set *s, const bg_req *r, uint8_t *body, uint8_t ids_out[BG_TRACES_PER_REQ][BG_TRACE_ID_LEN]);

/*
 * Decodes every template with tl_otlp_decode_proto and validates it: each
 * must hold BG_SPANS_PER_REQ valid spans in BG_TRACES_PER_REQ traces of
 * BG_SPANS_PER_TRACE spans with BG_ATTRS_PER_SPAN attributes, and a patched
 * copy must carry the patched ids in every span. Returns 0, or an error with
 * the reason in why (cap bytes).
 */
int bg_self_check(bg_set *s, char *why, size_t cap);

#endif
