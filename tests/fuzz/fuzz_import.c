/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: a whole file for `threadline import`, plain or gzip, through
 * the line reader (with a small line cap, so overlong lines and lines across
 * reads both happen) and every line through decoding, validation and
 * encoding. Inputs are capped at 1 MiB. The file lives in a memfd; the
 * reader opens it by its /proc path as the CLI opens a file.
 */
#include "co_cli_import.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_MAX_INPUT (1u << 20)
#define FUZZ_MAX_LINE (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tl_arena arena;
	static int ready;
	if (size > FUZZ_MAX_INPUT)
		return 0;
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	lim.max_decoded_bytes = 16u << 20;
	if (!ready) {
		tl_arena_init(&arena, (size_t)64 * 1024, lim.max_decoded_bytes);
		ready = 1;
	}
	int fd = memfd_create("fuzz-import", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	tl_errmsg err;
	uint8_t id[16];
	int idrc = co_import_file_id(path, id, NULL, NULL, &err);
	co_import_reader *r = NULL;
	int rc = co_import_reader_open(path, FUZZ_MAX_LINE, &r, &err);
	if ((rc == 0) != (idrc == 0 || idrc == TL_EPARSE))
		abort(); /* the two passes must agree on whether the file can be read */
	uint64_t last = 0;
	co_import_line ln;
	while (rc == 0 && (rc = co_import_reader_next(r, &ln, &err)) == 1) {
		rc = 0;
		if (ln.lineno != last + 1 || (ln.overlong && ln.data != NULL) ||
		    (!ln.overlong && ln.len > FUZZ_MAX_LINE))
			abort();
		last = ln.lineno;
		if (ln.overlong)
			continue;
		co_import_encoded e;
		tl_errmsg le;
		int lrc = co_import_line_encode(ln.data, ln.len, &lim, &arena, &e, &le);
		if (lrc != 0 && e.pb != NULL)
			abort();
		if (e.pb != NULL) {
			tl_pb_export_req *q =
			        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
			                NULL, e.pb_len, e.pb);
			if (q == NULL || tl_otlp_count_spans(q) != e.spans)
				abort();
			opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(q,
			                                                                                        NULL);
			free(e.pb);
		}
	}
	/* A read error is reported after the lines before it, and only for gzip input. */
	if (rc < 0 && !(size >= 2 && data[0] == 0x1f && data[1] == 0x8b) && rc != TL_EUNSUPPORTED)
		abort();
	co_import_reader_close(r);
	close(fd);
	return 0;
}
