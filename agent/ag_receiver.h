/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's HTTP receivers: OTLP/HTTP traces (`POST /v1/traces`, protobuf
 * or JSON, gzip allowed), `GET /healthz` and `GET /metrics`. Each accepted
 * request is decoded, validated (bad spans removed and reported as OTLP
 * partial success), re-encoded and handed to the pipeline; the client is
 * answered when the pipeline says its spans are safe.
 */
#ifndef AG_RECEIVER_H
#define AG_RECEIVER_H

#include "ag_pipeline.h"
#include "ag_sender.h"
#include "tl_http.h"
#include "tl_otlp.h"

#include <stdint.h>
#include <uv.h>

typedef struct ag_receiver ag_receiver;

typedef struct ag_receiver_opts {
	const char *listen; /* HOST:PORT (borrowed for the call) */
	tl_http_limits http;
	tl_otlp_limits otlp;
} ag_receiver_opts;

void ag_receiver_opts_default(ag_receiver_opts *o);

/*
 * Starts serving on o->listen. pipeline and sender are borrowed (sender only
 * for /metrics) and must outlive the receiver. Caller frees with
 * ag_receiver_close(). Returns 0 or the listen error (-EADDRINUSE, TL_EINVALID, ...).
 */
int ag_receiver_new(uv_loop_t *loop, const ag_receiver_opts *o, ag_pipeline *pipeline, ag_sender *sender,
                    ag_receiver **out);

/* The bound HTTP port. */
int ag_receiver_port(const ag_receiver *r);

/* Requests received whose answer is still owed. */
unsigned ag_receiver_outstanding(const ag_receiver *r);

/*
 * Stops accepting connections and closes the server; requests still owed
 * an answer are dropped by the HTTP layer. cb(ud) runs when everything is
 * freed. Accepts NULL.
 */
void ag_receiver_close(ag_receiver *r, void (*cb)(void *ud), void *ud);

#endif
