/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline import FILE`: OTLP/JSON Lines files (one TracesData or
 * ExportTraceServiceRequest per line, as the OpenTelemetry Collector's file
 * exporter writes them; gzip-compressed too) sent to the collector through
 * the intake the agents use, as wire Batches.
 *
 * Importing is idempotent: a file acts as an agent whose id is the first 16
 * bytes of BLAKE2b-256 of its (decompressed) content, and each Batch's seq is
 * the number of its first line. Lines go into Batches by a rule that depends
 * only on the content and the constants below, so importing the same file
 * again -- or the same content gzipped -- sends the same (agent id, seq)
 * pairs, and the collector, which drops duplicates by that pair, stores it
 * once. An interrupted import is resumed by running it again.
 */
#ifndef CO_CLI_IMPORT_H
#define CO_CLI_IMPORT_H

#include "co_cli.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_otlp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest line read; a longer one is reported and skipped. */
#define CO_IMPORT_LINE_MAX ((size_t)64 << 20)
/* A Batch is closed before the line that would take its records past this many bytes... */
#define CO_IMPORT_BATCH_BYTES ((size_t)1 << 20)
/* ...or past this many lines. Changing either changes the seqs, so a re-import would store twice. */
#define CO_IMPORT_BATCH_LINES 1024
/* Batches in flight. */
#define CO_IMPORT_WINDOW 8
/* The collector's intake when --collector is not given. */
#define CO_IMPORT_DEFAULT_URL "tcp://127.0.0.1:7411"

/* Called now and then with the file bytes read so far and the file's size (compressed, for gzip). */
typedef void (*co_import_progress_fn)(void *ud, uint64_t done, uint64_t total);

/*
 * The agent id of the file at path: the first 16 bytes of BLAKE2b-256 of
 * its content, decompressed when it is gzip. progress may be NULL.
 * Returns 0; -errno when it cannot be opened or read; TL_EPARSE for a gzip
 * stream that is corrupt or cut short -- id then covers the bytes that
 * could be read, which the import reads too -- with err naming the file.
 */
int co_import_file_id(const char *path, uint8_t id[16], co_import_progress_fn progress, void *ud, tl_errmsg *err);

typedef struct co_import_reader co_import_reader;

/* One line of the file. */
typedef struct co_import_line {
	const uint8_t *data; /* without "\n", a "\r" before it and a leading UTF-8 BOM; valid until the next call */
	size_t len;
	uint64_t lineno;   /* 1-based */
	bool overlong;     /* longer than max_line: skipped, data is NULL */
	bool unterminated; /* the file ended without a "\n" after it */
} co_import_line;

/*
 * Opens path for reading lines of at most max_line bytes (0:
 * CO_IMPORT_LINE_MAX); gzip is detected by its magic and decompressed,
 * anything else is read as is. Returns 0 and *out (caller frees with
 * co_import_reader_close()); -errno (-EISDIR for a directory);
 * TL_EUNSUPPORTED for a zstd-compressed file; err names the file.
 */
int co_import_reader_open(const char *path, size_t max_line, co_import_reader **out, tl_errmsg *err);

/*
 * Reads the next line into *line. Returns 1 with a line, 0 at the end of
 * the file, or TL_EPARSE (corrupt or truncated gzip) / -errno with err
 * saying after which line the file became unreadable; a line cut off by
 * the error is not returned. After an error, it returns the error again.
 */
int co_import_reader_next(co_import_reader *r, co_import_line *line, tl_errmsg *err);

/*
 * The id (as co_import_file_id() computes it) of everything read so far:
 * after co_import_reader_next() returned 0 or an error, it differs from
 * co_import_file_id()'s when the file changed in between. Call it once.
 */
void co_import_reader_id(co_import_reader *r, uint8_t id[16]);

/* File bytes read so far and the file's size (both compressed for gzip). */
void co_import_reader_pos(const co_import_reader *r, uint64_t *done, uint64_t *total);

/* Accepts NULL. */
void co_import_reader_close(co_import_reader *r);

/* One line turned into an encoded ExportTraceServiceRequest. */
typedef struct co_import_encoded {
	uint8_t *pb; /* NULL when no span is left; else caller frees with free() */
	size_t pb_len;
	size_t spans;          /* spans in pb */
	size_t spans_rejected; /* removed by validation */
	tl_errmsg why;         /* the first removed span's reason, when spans_rejected > 0 */
} co_import_encoded;

/*
 * Decodes one line (OTLP/JSON, borrowed) with the limits lim, validates it
 * as the agent does (tl_otlp_validate: a span breaking a rule is removed
 * and counted) and encodes what is left. Resets arena before use; out
 * owns its own memory. A line whose spans were all removed is an error; a
 * line without spans is not (out->pb is NULL).
 * Returns 0; TL_EPARSE / TL_ELIMIT from the decoder with err naming the
 * column or the field path; TL_EINVALID for a line that holds metrics or
 * logs, or whose spans were all rejected; -ENOMEM.
 */
int co_import_line_encode(const uint8_t *line, size_t len, const tl_otlp_limits *lim, tl_arena *arena,
                          co_import_encoded *out, tl_errmsg *err);

/*
 * `threadline import FILE [--collector URL] [--json]`. argv[0] is "import".
 * Exit codes: 0 every line stored (now or by an earlier import); 1 a line
 * or span failed, or the file could not be read to its end; 2 bad usage;
 * 3 the collector could not be reached or stopped answering.
 */
int co_cli_import(co_cli *cli, int argc, char **argv);

#endif
