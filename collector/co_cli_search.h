/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline trace search`: the flags of DESIGN.md §6 turned into a
 * threadline.v1.TraceSearch query, and the collector's answer printed as
 * one line per trace (newest first) or passed through as JSON.
 */
#ifndef CO_CLI_SEARCH_H
#define CO_CLI_SEARCH_H

#include "co_cli.h"
#include "tl_error.h"
#include "tl_pb.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CO_CLI_SEARCH_ATTRS_MAX 32 /* --attr given at most this often */
#define CO_CLI_SEARCH_LIMIT_MAX 1500

typedef struct co_cli_search_args {
	tl_pb_trace_search q; /* the query; strings borrow argv or keys[] */
	tl_pb_trace_search_attr attr[CO_CLI_SEARCH_ATTRS_MAX];
	tl_pb_trace_search_attr *attrp[CO_CLI_SEARCH_ATTRS_MAX];
	char *keys[CO_CLI_SEARCH_ATTRS_MAX]; /* the keys of --attr, copied (the value follows the '=' in argv) */
	bool json;                           /* --json */
	bool help;                           /* --help: nothing else was checked */
} co_cli_search_args;

/*
 * Parses `search [flags]` (argv[0] is "search"; argv is borrowed and must
 * outlive a). Times given as a duration ("1h") count back from now_ns.
 * Returns 0 with a filled (release with co_cli_search_args_fini()), or
 * TL_EUSAGE with err naming the flag: an unknown flag or argument, a flag
 * without its value, a bad duration, time, number or key=value, --since not
 * before --until, --min-duration above --max-duration, --limit outside
 * 1..1500, too many --attr. On error nothing needs releasing.
 */
int co_cli_search_parse(int argc, char **argv, uint64_t now_ns, co_cli_search_args *a, tl_errmsg *err);

/* Frees the copies in a. Accepts a zeroed or finished a. */
void co_cli_search_args_fini(co_cli_search_args *a);

/*
 * Prints the collector's answer (json[0..len), borrowed) to out: the
 * document itself on one line when cli->json, else a header and one line
 * per trace (start, duration, root service and name, spans, errors, trace
 * id), and a note when the search was partial. Returns 0, TL_EPROTO when
 * the document is not a search answer (err says why), or -ENOMEM / -EIO.
 */
int co_cli_search_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err);

/* `threadline trace search ...`. argv[0] is "trace", argv[1] "search". Returns an exit code. */
int co_cli_search(co_cli *cli, int argc, char **argv);

#endif
