/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline stats` (co_cli_stats.c): SLIs per service and operation and
 * latency-budget attribution, asked of the collector (co_stats.h).
 */
#ifndef CO_CLI_STATS_H
#define CO_CLI_STATS_H

#include "co_cli.h"

#include <stddef.h>
#include <stdio.h>

/*
 * `threadline stats [--service S] [--since 1h|TIME] [--until TIME]
 * [--budget 200ms] [--json]`. argv[0] is "stats". Returns an exit code:
 * CLI_USAGE naming the flag for a bad duration, a bad time, --budget 0 or
 * a window that ends before it starts.
 */
int co_cli_stats(co_cli *cli, int argc, char **argv);

/*
 * Renders the collector's stats document (json[0..len), borrowed) to out:
 * the table and, when it has a budget, the stages and slowest traces; or
 * the document itself when cli->json. Returns 0, TL_EPROTO when it is not a
 * stats document (err says why), or -EIO.
 */
int co_cli_stats_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err);

#endif
