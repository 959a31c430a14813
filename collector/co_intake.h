/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Batch intake: an nng REP socket where agents send threadline.v1.Batch and
 * get an Ack back only after the batch is committed. Several nng contexts
 * each run a small aio state machine (receive, decode, hand to the writer,
 * send the ack, receive again), so several batches are in flight at once.
 * When the writer's queue is full the contexts stop receiving: the senders
 * feel backpressure, and nothing is buffered without bound.
 */
#ifndef CO_INTAKE_H
#define CO_INTAKE_H

#include "co_store.h"
#include "co_writer.h"
#include "tl_arena.h"
#include "tl_otlp.h"

#include <stddef.h>

/*
 * Decodes a wire Batch into out: the Batch and every Record.otlp_traces
 * (tl_otlp_decode_proto) are allocated from arena; out points into arena and
 * is valid until it is reset. agent_id and seq are filled as soon as they
 * are known, so a rejection can name the batch.
 * Returns 0; TL_EPARSE when the Batch or a record does not decode; TL_EINVALID
 * for an agent_id that is not 16 bytes or a record without a body; TL_ELIMIT
 * past lim or the arena's cap. err says which record and why.
 */
int co_batch_decode(const uint8_t *buf, size_t len, const tl_otlp_limits *lim, tl_arena *arena, co_batch *out,
                    tl_errmsg *err);

typedef struct co_intake co_intake;

typedef struct co_intake_opts {
	const char *url;           /* e.g. tcp://0.0.0.0:7411 (port 0: any free port) */
	int contexts;              /* batches in flight (0: 8) */
	size_t recv_max;           /* NNG_OPT_RECVMAXSZ (0: 64 MiB) */
	size_t decoded_max;        /* arena cap per batch (0: 4 x recv_max, at least 64 MiB) */
	const tl_otlp_limits *lim; /* NULL: tl_otlp_limits_default */
} co_intake_opts;

/*
 * Listens on o->url and starts receiving; batches go to w (borrowed; it must
 * outlive the intake; the intake installs itself as w's room function). Returns 0 and *out (caller frees with
 * co_intake_free()), or a TL code with err naming the URL and nng's reason.
 */
int co_intake_start(const co_intake_opts *o, co_writer *w, co_intake **out, tl_errmsg *err);

/* The TCP port actually bound (useful with port 0), or -1. */
int co_intake_port(const co_intake *in);

/*
 * Stops receiving, waits until every batch already received is committed
 * (the writer must still be running) and its ack sent. Idempotent.
 */
void co_intake_stop(co_intake *in);

/* Stops, closes the socket and frees. Accepts NULL. */
void co_intake_free(co_intake *in);

#endif
