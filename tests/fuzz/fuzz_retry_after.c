/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Retry-After parser (tl_otlp_retry_after_parse) reads a header value
 * that any OTLP receiver, or anything pretending to be one, chooses. It
 * gets the bytes in a buffer of exactly their size (no NUL after them) and
 * must neither crash nor read past them; an accepted value must be
 * deterministic, within the cap, and never grow as "now" moves forward.
 */
#include "tl_otlp_push.h"
#include "tl_time.h"

#include <stdlib.h>
#include <string.h>

#define INPUT_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	char *v = malloc(size ? size : 1);
	if (v == NULL)
		return 0;
	memcpy(v, data, size);
	const int64_t now = INT64_C(1445412480); /* Wed, 21 Oct 2015 07:28:00 GMT */
	uint64_t w1 = 0, w2 = 0, later = 0;
	int rc1 = tl_otlp_retry_after_parse(v, size, now, &w1);
	int rc2 = tl_otlp_retry_after_parse(v, size, now, &w2);
	if (rc1 != rc2 || (rc1 == 0 && w1 != w2))
		abort();
	if (rc1 == 0) {
		if (w1 > (uint64_t)TL_OTLP_PUSH_RETRY_AFTER_MAX * TL_NS_PER_S || w1 % TL_NS_PER_S != 0)
			abort();
		if (tl_otlp_retry_after_parse(v, size, now + 3600, &later) != 0 || later > w1)
			abort();
	} else if (rc1 != TL_EPARSE) {
		abort();
	}
	free(v);
	return 0;
}
