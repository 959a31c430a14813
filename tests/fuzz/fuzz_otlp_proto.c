/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: OTLP/protobuf decoding followed by validation, as the
 * agent runs them on a request body, with a capped arena. Inputs are capped
 * at 1 MiB. Decoding must fail cleanly or produce a request that validates
 * without crashing, and whatever validation keeps must pack again.
 */
#include "tl_arena.h"
#include "tl_otlp.h"

#include <stdint.h>
#include <stdlib.h>

#define FUZZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tl_arena arena;
	static int ready;
	tl_otlp_limits lim;
	tl_pb_export_req *req = NULL;
	tl_errmsg err;
	tl_otlp_verdict v;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	tl_otlp_limits_default(&lim);
	lim.max_decoded_bytes = 16u << 20;
	if (!ready) {
		tl_arena_init(&arena, (size_t)64 * 1024, lim.max_decoded_bytes);
		ready = 1;
	}
	int rc = tl_otlp_decode_proto(data, size, &lim, tl_arena_allocator(&arena), &req, &err);
	if (rc == 0) {
		if (req == NULL)
			abort();
		rc = tl_otlp_validate(req, &lim, &v);
		if (v.spans_total < v.spans_rejected ||
		    (rc == 0 && tl_otlp_count_spans(req) != v.spans_total - v.spans_rejected))
			abort();
		size_t n = protobuf_c_message_get_packed_size(&req->base);
		uint8_t *out = malloc(n + 1);
		if (out == NULL || protobuf_c_message_pack(&req->base, out) != n)
			abort();
		free(out);
	} else if (req != NULL) {
		abort();
	}
	tl_arena_reset(&arena);
	return 0;
}
