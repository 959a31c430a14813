/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parsers of query parameters that arrive from outside — the Jaeger
 * API's Go durations, trace ids and span kinds, the CLI's durations and
 * times — and the error-message normaliser that reads span statuses: each
 * gets the input as a NUL-terminated string and must neither crash nor
 * read past it; a parsed duration must print back to one that parses to
 * the same value.
 */
#include "co_errors.h"
#include "co_jaeger.h"
#include "tl_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	uint64_t ns, again;
	if (co_jaeger_parse_duration(s, &ns) == 0) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%" PRIu64 "ns", ns);
		if (co_jaeger_parse_duration(buf, &again) != 0 || again != ns)
			abort();
	}
	if (tl_parse_duration(s, &ns) == 0) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%" PRIu64 "ns", ns);
		if (tl_parse_duration(buf, &again) != 0 || again != ns)
			abort();
	}
	(void)tl_parse_time(s, UINT64_C(1795392000000000000), &ns);
	uint8_t id[16];
	(void)co_jaeger_parse_trace_id(s, id);
	(void)co_jaeger_kind_from_name(s);
	char out[600];
	size_t n = co_errors_normalize((const char *)data, size, out, sizeof(out));
	if (n >= sizeof(out) || out[n] != '\0')
		abort();
	free(s);
	return 0;
}
