/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Query serving: blocking receive, answer, send on each thread's own nng
 * context. Answers are built in a per-thread arena that is reset per
 * request, and every store read is its own short read transaction.
 */
#include "co_query.h"

#include "co_lineage.h"

#include "tl_id.h"
#include "tl_log.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_THREADS 2
#define DEFAULT_RECV_MAX ((size_t)1 << 20)
#define DEFAULT_ANSWER_MAX ((size_t)256 << 20)
#define SEND_TIMEOUT_MS 10000

typedef struct qthread {
	co_query *q;
	pthread_t th;
	bool started;
	nng_ctx ctx;
	nng_aio *aio;
	tl_arena arena;
} qthread;

struct co_query {
	co_store *store;
	nng_socket sock;
	bool sock_open;
	nng_listener listener;
	int port;
	qthread *t;
	int n;
};

static void fail(tl_pb_query_resp *resp, tl_arena *a, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void fail(tl_pb_query_resp *resp, tl_arena *a, int code, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	resp->code = code;
	resp->trace = NULL;
	char *m = tl_arena_strndup(a, buf, strlen(buf));
	resp->error = m != NULL ? m : (char *)tl_strerror(code);
}

void co_query_answer(co_store *s, const uint8_t *buf, size_t len, tl_arena *arena, tl_pb_query_resp *resp)
{
	threadline__v1__query_response__init(resp);
	tl_pb_query_req *req = threadline__v1__query_request__unpack(tl_arena_allocator(arena), len, buf);
	if (req == NULL) {
		fail(resp, arena, TL_EPARSE, "query: %zu bytes are not a threadline.v1.QueryRequest", len);
		return;
	}
	if (req->version != 1) {
		fail(resp, arena, TL_EUNSUPPORTED, "query: version %u is not supported (want 1)", req->version);
		return;
	}
	switch (req->query_case) {
	case THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_GET: {
		const tl_pb_trace_get *g = req->trace_get;
		if (g->trace_id.len != 16) {
			fail(resp, arena, TL_EINVALID, "trace_get: trace_id is %zu bytes, want 16", g->trace_id.len);
			return;
		}
		tl_pb_trace_result *tr = NULL;
		int rc = co_store_get_trace(s, g->trace_id.data, arena, &tr);
		if (rc != 0) {
			char hex[33];
			tl_hex_encode(g->trace_id.data, 16, hex);
			if (rc == TL_ENOTFOUND)
				fail(resp, arena, rc, "trace %s not found", hex);
			else if (rc == TL_ELIMIT)
				fail(resp, arena, rc, "trace %s is too large to answer in one response", hex);
			else
				fail(resp, arena, rc, "trace %s: %s", hex, tl_strerror(rc));
			return;
		}
		resp->code = 0;
		resp->trace = tr;
		return;
	}
	case THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW:
	case THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN: {
		tl_errmsg e = {{0}};
		char *json = NULL;
		int rc = co_lineage_answer(s, req, arena, &json, &e);
		if (rc != 0) {
			fail(resp, arena, rc, "%s", e.msg[0] != '\0' ? e.msg : tl_strerror(rc));
			return;
		}
		resp->code = 0;
		resp->json = json;
		return;
	}
	default:
		fail(resp, arena, TL_EUNSUPPORTED, "query: no query kind this collector knows");
		return;
	}
}

/* Packs resp into msg (reusing its storage). Returns 0 or an nng code. */
static int pack_into(nng_msg *msg, const tl_pb_query_resp *resp)
{
	size_t sz = threadline__v1__query_response__get_packed_size(resp);
	nng_msg_clear(msg);
	int rv = nng_msg_realloc(msg, sz);
	if (rv != 0)
		return rv;
	threadline__v1__query_response__pack(resp, nng_msg_body(msg));
	return 0;
}

static void *serve(void *arg)
{
	qthread *t = arg;
	for (;;) {
		nng_aio_set_timeout(t->aio, NNG_DURATION_INFINITE);
		nng_ctx_recv(t->ctx, t->aio);
		nng_aio_wait(t->aio);
		int rv = nng_aio_result(t->aio);
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			break;
		if (rv != 0) {
			tl_log(TL_LOG_WARN, "query.recv_failed", "err=\"%s\"", nng_strerror(rv));
			continue;
		}
		nng_msg *msg = nng_aio_get_msg(t->aio);
		nng_aio_set_msg(t->aio, NULL);
		tl_arena_reset(&t->arena);
		tl_pb_query_resp resp;
		co_query_answer(t->q->store, nng_msg_body(msg), nng_msg_len(msg), &t->arena, &resp);
		if (resp.code != 0 && resp.code != TL_ENOTFOUND)
			tl_log(TL_LOG_INFO, "query.error", "code=%d err=\"%s\"", resp.code, resp.error);
		if ((rv = pack_into(msg, &resp)) != 0) {
			nng_msg_free(msg);
			tl_log(TL_LOG_ERROR, "query.reply_failed", "err=\"%s\"", nng_strerror(rv));
			continue;
		}
		tl_arena_reset(&t->arena);
		nng_aio_set_msg(t->aio, msg);
		nng_aio_set_timeout(t->aio, SEND_TIMEOUT_MS);
		nng_ctx_send(t->ctx, t->aio);
		nng_aio_wait(t->aio);
		if ((rv = nng_aio_result(t->aio)) != 0) {
			nng_msg_free(nng_aio_get_msg(t->aio));
			nng_aio_set_msg(t->aio, NULL);
			if (rv == NNG_ECLOSED)
				break;
		}
	}
	return NULL;
}

int co_query_start(const co_query_opts *o, co_store *s, co_query **out, tl_errmsg *err)
{
	*out = NULL;
	co_query *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	q->store = s;
	q->port = -1;
	q->n = o->threads > 0 ? o->threads : DEFAULT_THREADS;
	size_t answer_max = o->answer_max ? o->answer_max : DEFAULT_ANSWER_MAX;
	q->t = calloc((size_t)q->n, sizeof(*q->t));
	if (q->t == NULL) {
		free(q);
		return tl_errf(err, -ENOMEM, "out of memory");
	}
	int rv = nng_rep0_open(&q->sock);
	if (rv != 0) {
		co_query_free(q);
		return tl_errf(err, tl_err_from_nng(rv), "query: open socket: %s", nng_strerror(rv));
	}
	q->sock_open = true;
	if ((rv = nng_socket_set_size(q->sock, NNG_OPT_RECVMAXSZ, o->recv_max ? o->recv_max : DEFAULT_RECV_MAX)) != 0) {
		co_query_free(q);
		return tl_errf(err, tl_err_from_nng(rv), "query: recv max: %s", nng_strerror(rv));
	}
	for (int i = 0; i < q->n; i++) {
		qthread *t = &q->t[i];
		t->q = q;
		tl_arena_init(&t->arena, (size_t)64 << 10, answer_max);
		if ((rv = nng_aio_alloc(&t->aio, NULL, NULL)) != 0 || (rv = nng_ctx_open(&t->ctx, q->sock)) != 0) {
			co_query_free(q);
			return tl_errf(err, tl_err_from_nng(rv), "query: context: %s", nng_strerror(rv));
		}
	}
	if ((rv = nng_listener_create(&q->listener, q->sock, o->url)) != 0 ||
	    (rv = nng_listener_start(q->listener, 0)) != 0) {
		co_query_free(q);
		return tl_errf(err, tl_err_from_nng(rv), "query: listen on %s: %s", o->url, nng_strerror(rv));
	}
	int port;
	if (nng_listener_get_int(q->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
		q->port = port;
	for (int i = 0; i < q->n; i++) {
		if ((rv = pthread_create(&q->t[i].th, NULL, serve, &q->t[i])) != 0) {
			co_query_free(q);
			return tl_errf(err, -rv, "query: thread: %s", strerror(rv));
		}
		q->t[i].started = true;
	}
	*out = q;
	return 0;
}

int co_query_port(const co_query *q)
{
	return q->port;
}

void co_query_free(co_query *q)
{
	if (q == NULL)
		return;
	if (q->sock_open)
		nng_close(q->sock);
	for (int i = 0; i < q->n; i++) {
		qthread *t = &q->t[i];
		if (t->started)
			pthread_join(t->th, NULL);
		if (t->aio != NULL)
			nng_aio_free(t->aio);
		tl_arena_fini(&t->arena);
	}
	free(q->t);
	free(q);
}
