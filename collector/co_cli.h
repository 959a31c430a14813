/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The threadline CLI's shared pieces: global options, the query client
 * (nng REQ to the collector's query port), and the commands.
 *
 * Exit codes: 0 success; 1 the answer is an error (not found, rejected);
 * 2 bad usage; 3 the collector could not be reached.
 */
#ifndef CO_CLI_H
#define CO_CLI_H

#include "tl_pb.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2, CLI_UNREACHABLE = 3 };

typedef struct co_cli {
	const char *collector; /* query URL */
	uint64_t timeout_ms;
	bool json;
	bool color;
} co_cli;

/*
 * Sends req to the collector and waits for the answer. On success *resp is
 * allocated (caller frees with threadline__v1__query_response__free_unpacked
 * (resp, NULL)). Returns 0, TL_ETIMEOUT, TL_ETRANSPORT or TL_EPROTO;
 * errors are described on stderr.
 */
int co_cli_query(const co_cli *cli, const tl_pb_query_req *req, tl_pb_query_resp **resp);

/* `threadline trace ...`. argv[0] is "trace". Returns an exit code. */
int co_cli_trace(co_cli *cli, int argc, char **argv);

/*
 * Prints the trace in res as a waterfall (text) or as the JSON of
 * DESIGN.md §6, to out. Returns 0 or -ENOMEM.
 */
int co_cli_trace_print(const co_cli *cli, const tl_pb_trace_result *res, FILE *out);

/*
 * Finds the root cause of a failed trace: the error span with no failing
 * descendant that started first. Writes "SERVICE NAME: MESSAGE" to buf.
 * Returns 0, TL_ENOTFOUND when no span failed, or -ENOMEM.
 */
int co_cli_trace_root_cause(const tl_pb_trace_result *res, char *buf, size_t len);

/* `threadline demo`. Returns an exit code. */
int co_cli_demo(co_cli *cli, int argc, char **argv, const char *argv0);

#endif
