/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The query service the CLI talks to: an nng REP socket where a few threads,
 * each with its own context, receive a threadline.v1.QueryRequest, answer it
 * from the store with one short read transaction, and send the
 * QueryResponse back.
 */
#ifndef CO_QUERY_H
#define CO_QUERY_H

#include "co_store.h"
#include "tl_arena.h"
#include "tl_pb.h"

#include <stddef.h>

/*
 * Answers one encoded QueryRequest into resp (initialised here). Whatever
 * resp points to lives in arena (borrowed) and is valid until it is reset.
 * Never fails as a call: errors go into resp->code and resp->error —
 * TL_EPARSE for a request that does not decode, TL_EUNSUPPORTED for an
 * unknown version or query kind, TL_EINVALID for a bad argument,
 * TL_ENOTFOUND for an unknown trace, or the store's error.
 */
void co_query_answer(co_store *s, const uint8_t *buf, size_t len, tl_arena *arena, tl_pb_query_resp *resp);

typedef struct co_query co_query;

typedef struct co_query_opts {
	const char *url;   /* e.g. tcp://127.0.0.1:7412 (port 0: any free port) */
	int threads;       /* serving threads (0: 2) */
	size_t recv_max;   /* NNG_OPT_RECVMAXSZ (0: 1 MiB) */
	size_t answer_max; /* memory for one answer (0: 512 MiB); a larger trace gets TL_ELIMIT */
} co_query_opts;

/*
 * Listens on o->url and starts the serving threads on s (borrowed; it must
 * outlive the service). Returns 0 and *out (caller frees with
 * co_query_free()), or a TL code with err naming the URL and nng's reason.
 */
int co_query_start(const co_query_opts *o, co_store *s, co_query **out, tl_errmsg *err);

/* The TCP port actually bound, or -1. */
int co_query_port(const co_query *q);

/*
 * Cancels the receives and sends in flight (an answer being computed is
 * finished but not sent), joins the threads, then closes the contexts and
 * the socket and frees. Accepts NULL.
 */
void co_query_free(co_query *q);

#endif
