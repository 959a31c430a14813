/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline errors` and `threadline errors explain`: the flags turned into
 * a threadline.v1.ErrorsList or ErrorsExplain query, and the collector's
 * JSON answer (README, "Errors") printed as a ranked table of error groups
 * or as a causal chain, or passed through with --json.
 */
#ifndef CO_CLI_ERRORS_H
#define CO_CLI_ERRORS_H

#include "co_cli.h"
#include "tl_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CO_CLI_ERRORS_LIMIT_MAX 1000 /* --limit at most (the collector's CO_ERRORS_LIMIT_MAX) */

typedef struct co_cli_errors_args {
	bool explain;         /* `errors explain TRACE_ID` */
	uint8_t trace_id[16]; /* explain */
	uint64_t since_ns;    /* 0: the collector's default (24 h before until) */
	uint64_t until_ns;    /* 0: now, at the collector */
	uint32_t limit;       /* 0: the collector's default */
	bool json;            /* --json */
	bool help;            /* --help: nothing else was checked */
} co_cli_errors_args;

/*
 * Parses `errors [--since 24h|TIME] [--until TIME] [--limit N] [--json]` or
 * `errors explain TRACE_ID [--json]` (argv[0] is "errors"; borrowed). Times
 * given as a duration ("2h") count back from now_ns. Returns 0 with *a
 * filled, or TL_EUSAGE with err naming the flag or argument: an unknown
 * flag, a flag without its value, a bad time or number, --since not before
 * --until, --limit outside 1..CO_CLI_ERRORS_LIMIT_MAX, a TRACE_ID that is not
 * 32 hex digits, a missing or extra argument.
 */
int co_cli_errors_parse(int argc, char **argv, uint64_t now_ns, co_cli_errors_args *a, tl_errmsg *err);

/*
 * Prints the collector's errors list answer (json[0..len), borrowed) to
 * out: the document on one line when cli->json, else a ranked table (rank,
 * traces, cause spans, impact counts, last seen, service / operation) with
 * each group's exception and normalised message, first seen, outcomes, a
 * sample trace id and the models and deployments hit. Returns 0, TL_EPROTO
 * when the document is not an errors list (err says why), -ENOMEM or -EIO.
 */
int co_cli_errors_list_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err);

/*
 * Prints the collector's errors explain answer to out: the document when
 * cli->json, else the outcome, the causal chain from the root to the root
 * cause (marked), the predictions, the upstream causes found through
 * lineage and the linked traces, each with its own chain. Returns like
 * co_cli_errors_list_print().
 */
int co_cli_errors_explain_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err);

/* `threadline errors ...`. argv[0] is "errors". Returns an exit code (CLI_*). */
int co_cli_errors(co_cli *cli, int argc, char **argv);

#endif
