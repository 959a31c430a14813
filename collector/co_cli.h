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

#include "tl_buf.h"
#include "tl_error.h"
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

/* Renders a JSON answer to out; returns 0, TL_EPROTO (err says why the document is not one) or -errno. */
typedef int (*co_cli_json_print_fn)(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err,
                                    void *ud);

/*
 * Sends q, then renders the answer's JSON document with print(ud) on
 * stdout. The collector's error is printed on stderr. Returns the exit
 * code: CLI_OK, CLI_UNREACHABLE, CLI_USAGE (the collector found the request
 * invalid) or CLI_ERR (any other error, or an answer without a document —
 * what names the document in that message).
 */
int co_cli_ask_json(const co_cli *cli, const tl_pb_query_req *q, const char *what, co_cli_json_print_fn print,
                    void *ud);

/*
 * Matches argv[*i] against "--name VALUE" or "--name=VALUE". Returns 1 with
 * *val set (borrowed from argv; *i advanced past a separate value), 0 when
 * it is another argument, -1 when the value is missing.
 */
int co_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **val);

/* Parses text[0..len) as a JSON object. Returns it (caller frees with json_decref()) or NULL with err set (TL_EPROTO).
 */
struct json_t;
struct json_t *co_cli_load_doc(const char *text, size_t len, tl_errmsg *err);

/* `threadline trace ...`. argv[0] is "trace". Returns an exit code. */
int co_cli_trace(co_cli *cli, int argc, char **argv);

/*
 * Prints the trace in res as a waterfall (text) or as the JSON of
 * DESIGN.md §6, to out. Returns 0, -ENOMEM, -EIO (out failed) or TL_ELIMIT (co_analyze).
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

/* ---- lineage (co_cli_lineage.c) ---- */

/* `threadline lineage show|explain ...`. argv[0] is "lineage". Returns an exit code. */
int co_cli_lineage(co_cli *cli, int argc, char **argv);

/* `threadline emit lineage ...`. argv[0] is "emit". Returns an exit code. */
int co_cli_emit(co_cli *cli, int argc, char **argv);

typedef enum co_cli_lformat {
	CO_CLI_LFORMAT_TEXT,
	CO_CLI_LFORMAT_JSON,
	CO_CLI_LFORMAT_DOT,
	CO_CLI_LFORMAT_MERMAID
} co_cli_lformat;

/*
 * Checks a node id given on the command line (dataset:NS:NAME[#VERSION],
 * job:NS:NAME, run:UUID, model:NAME:VERSION, prediction:ID,
 * deployment:NAME; a dataset or job splits at its last ':') and writes its
 * normal form (a run's UUID in lowercase) to out (cap bytes). Borrows id.
 * Returns 0, TL_EINVALID or TL_ELIMIT with the reason in err.
 */
int co_cli_lineage_node_parse(const char *id, char *out, size_t cap, tl_errmsg *err);

/*
 * Renders the collector's `lineage show` document (json[0..len), borrowed;
 * shapes in README.md, "Lineage") to out as text, JSON (the document on one
 * line), a Graphviz digraph or a Mermaid flowchart. Returns 0, TL_EPROTO
 * when the document is not a lineage graph (err says why), -ENOMEM or -EIO.
 */
int co_cli_lineage_show_print(const co_cli *cli, const char *json, size_t len, co_cli_lformat fmt, FILE *out,
                              tl_errmsg *err);

/*
 * Renders the collector's `lineage explain` document to out: text (the
 * problems upstream first, then the model, every run nearest first with its
 * reproducibility record, the raw inputs), or JSON when cli->json.
 * Returns like co_cli_lineage_show_print().
 */
int co_cli_lineage_explain_print(const co_cli *cli, const char *json, size_t len, FILE *out, tl_errmsg *err);

#define CO_CLI_PRODUCER "urn:threadline:cli:" TL_VERSION

/* What `emit lineage` sends; every pointer is borrowed. */
typedef struct co_cli_emit_opts {
	const char *job;     /* "NAMESPACE:NAME" */
	const char *run_id;  /* a UUID, any case */
	const char *event;   /* START, RUNNING, COMPLETE, FAIL, ABORT or OTHER (any case) */
	const char **inputs; /* dataset ids: "dataset:NS:NAME[#VERSION]" or "NS:NAME[#VERSION]" */
	size_t ninputs;
	const char **outputs;
	size_t noutputs;
	const char *error;    /* NULL, or the errorMessage facet's message */
	const char *producer; /* NULL: CO_CLI_PRODUCER */
} co_cli_emit_opts;

/*
 * Builds the OpenLineage 2.x RunEvent for o with eventTime now_ns (unix ns).
 * On success *json is compact JSON (caller frees with free()). Returns 0,
 * TL_EINVALID with the offending flag named in err, or -ENOMEM.
 */
int co_cli_emit_build(const co_cli_emit_opts *o, uint64_t now_ns, char **json, tl_errmsg *err);

/* Writes a random (version 4) UUID, 36 lowercase characters and a NUL. Returns 0 or -errno. */
int co_cli_uuid4(char out[37]);

/* An HTTP answer read by co_cli_http_post_json(): its status and the first 64 KiB of its body. */
typedef struct co_cli_http_answer {
	int status;
	bool done;
	tl_buf body;
} co_cli_http_answer;

/*
 * POSTs a JSON body (borrowed) to base_url (http://HOST[:PORT][/PREFIX]) +
 * path with a small blocking HTTP/1.1 client. Returns 0 with *a filled in
 * (caller frees a->body with tl_buf_fini()); TL_EUSAGE for a URL it cannot
 * use; TL_ETRANSPORT when the peer cannot be reached or closed without
 * answering; TL_ETIMEOUT when it did not answer in timeout_ms; TL_EPROTO for
 * an unreadable answer. err says which.
 */
int co_cli_http_post_json(const char *base_url, const char *path, const char *body, size_t len, uint64_t timeout_ms,
                          co_cli_http_answer *a, tl_errmsg *err);

/* The reason in an error answer: its JSON "message" or "error", else the body's first line. */
void co_cli_http_answer_reason(const co_cli_http_answer *a, char *buf, size_t cap);

#endif
