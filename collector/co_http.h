/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's HTTP API (default 127.0.0.1:7413): `GET /healthz`,
 * `GET /metrics` (Prometheus text, with requests counted by route), the
 * Marquez-compatible `GET /api/v1/lineage?nodeId=...&depth=N`, so tools
 * written for Marquez can read Threadline's lineage, and jaeger-query's
 * HTTP JSON API, so the Jaeger UI and Grafana's Jaeger data source can
 * read its traces (shapes in co_jaeger.h):
 *
 *   GET /api/traces/{id}                  one trace (1-32 hex digits); 404 when unknown
 *   GET /api/traces?service=&operation=&tags={json}&tag=k:v&start=&end=(µs)
 *       &lookback=1h&minDuration=&maxDuration=(Go durations)&limit=
 *       (or &traceID=...&traceID=...)     full traces, newest first; service is optional
 *   GET /api/services                     service names
 *   GET /api/operations?service=&spanKind=  [{"name", "spanKind"}]
 *   GET /api/services/{service}/operations  operation names
 *   GET /api/dependencies?endTs=&lookback=(ms)  [{"parent", "child", "callCount"}]
 *
 * Answers are {"data", "total", "limit", "offset", "errors"}; a bad
 * parameter is a 400 whose errors[0].msg names it, an unknown trace a 404.
 * The tag error=true asks for failed spans (status ERROR).
 *
 * It runs its own libuv loop on its own thread and answers from the store
 * with short read transactions, through the same query code as the CLI
 * (co_query_answer, co_search).
 */
#ifndef CO_HTTP_H
#define CO_HTTP_H

#include "co_store.h"
#include "co_writer.h"
#include "tl_error.h"

#include <jansson.h>

typedef struct co_http co_http;

struct co_forward;

typedef struct co_http_opts {
	const char *listen;         /* HOST:PORT (port 0: any free port); borrowed for the call */
	struct co_forward *forward; /* may be NULL; borrowed, must outlive the server: feeds /metrics */
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
