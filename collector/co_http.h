/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's HTTP API (default 127.0.0.1:7413): `GET /healthz`,
 * `GET /metrics` (Prometheus text) and the Marquez-compatible
 * `GET /api/v1/lineage?nodeId=...&depth=N`, so tools written for Marquez
 * can read Threadline's lineage. It runs its own libuv loop on its own
 * thread and answers from the store with short read transactions, through
 * the same query code as the CLI (co_query_answer).
 */
#ifndef CO_HTTP_H
#define CO_HTTP_H

#include "co_store.h"
#include "co_writer.h"
#include "tl_error.h"

#include <jansson.h>

typedef struct co_http co_http;

typedef struct co_http_opts {
	const char *listen; /* HOST:PORT (port 0: any free port); borrowed for the call */
} co_http_opts;

/*
 * Starts serving. store and writer are borrowed (writer may be NULL; it
 * only feeds /metrics) and must outlive the server. Returns 0 and *out
 * (caller frees with co_http_stop()), or the listen error with err naming it.
 */
int co_http_start(const co_http_opts *o, co_store *store, co_writer *writer, co_http **out, tl_errmsg *err);

/* The bound port. */
int co_http_port(const co_http *h);

/* Closes the server, joins its thread and frees h. Accepts NULL. */
void co_http_stop(co_http *h);

/*
 * Converts a `lineage show` document (README "Lineage") into Marquez's
 * lineage response: {"graph": [{"id", "type": "DATASET"|"JOB", "data",
 * "inEdges", "outEdges"}]}. Runs fold into their jobs (dataset → job →
 * dataset, as Marquez draws it), model versions appear as their datasets,
 * predictions are left out. Returns a new reference, or NULL on ENOMEM.
 */
json_t *co_http_marquez_graph(json_t *show);

#endif
