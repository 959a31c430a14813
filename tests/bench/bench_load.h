/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The load generator: K keep-alive HTTP/1.1 connections to 127.0.0.1,
 * multiplexed with poll() in the calling thread, each POSTing one
 * pre-encoded OTLP protobuf request at a time to /v1/traces and reading its
 * response (http-parser, response mode) before sending the next. Only 200
 * answers whose ExportTraceServiceResponse rejects nothing count as
 * delivered spans. A warm-up phase comes first and is not counted.
 */
#ifndef BENCH_LOAD_H
#define BENCH_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "bench_gen.h"

#define BL_SAMPLE 32 /* trace ids kept (reservoir) from counted 200 answers, for the read-back check */

typedef struct bl_opts {
	int port;
	unsigned conns;
	double warmup_s;
	double duration_s;
	/* Called about every 200 ms while measuring (may be NULL). */
	void (*tick)(void *arg);
	void *tick_arg;
} bl_opts;

typedef struct bl_result {
	double seconds;          /* measured window */
	uint64_t ok_requests;    /* 200 with nothing rejected, answered in the window */
	uint64_t ok_spans;       /* spans in those requests */
	uint64_t ok_bytes;       /* request body bytes in those requests */
	uint64_t rejected_spans; /* partial_success.rejected_spans in 200 answers */
	uint64_t non200;         /* answers with another status */
	int last_non200;         /* the last such status */
	char last_non200_body[160];
	uint64_t errors;          /* connection errors / resets (reconnected) */
	uint64_t warmup_requests; /* 200s during the warm-up */
	double lat_p50_ms, lat_p99_ms, lat_max_ms;
	size_t nsample;
	uint8_t sample[BL_SAMPLE][BG_TRACE_ID_LEN];
} bl_result;

/*
 * Runs warm-up then the measured window against 127.0.0.1:o->port, sending
 * s's templates round-robin with fresh trace ids (s->next_trace advances).
 * Stops by itself after warmup_s + duration_s (requests still in flight then
 * are not counted). Returns 0, or a negative errno when no connection could
 * be made at all; res is filled in either case.
 */
int bl_run(const bl_opts *o, bg_set *s, bl_result *res);

#endif
