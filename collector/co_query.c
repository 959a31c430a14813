/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Query serving: blocking receive, answer, send on each thread's own nng
 * context. Answers are built in a per-thread arena that is reset per
 * request, and every store read is its own short read transaction.
 *
 * Shutdown never closes the socket under a thread that is inside an nng
 * call. With nng 1.5, a thread still in nng_ctx_send() or nng_ctx_recv()
 * while the socket closes can drop the last reference to its context after
 * the socket's protocol state (and its mutex) is gone, which panics
 * ("pthread_mutex_lock: Invalid argument") or reads freed memory; or it
 * restarts work on a pipe being torn down and nng_close() then waits
 * forever (both seen in tests/unit/test_query.c before this ordering). So
 * the threads start each operation under q->mu unless q->stopping is set,
 * and co_query_free() sets it and cancels the operations in flight under
 * the same lock, joins the threads, and only then closes contexts and
 * socket.
 */
#include "co_query.h"

#include "co_errors.h"
#include "co_index.h"
#include "co_lineage.h"
#include "co_stats.h"

#include "tl_id.h"
#include "tl_log.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
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
#define DEFAULT_ANSWER_MAX ((size_t)512 << 20)
#define SEND_TIMEOUT_MS 10000
#define SEARCH_ATTRS_MAX 32

typedef struct qthread {
	co_query *q;
	pthread_t th;
	bool started;
	nng_ctx ctx;
	bool ctx_open;
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
	pthread_mutex_t mu; /* orders starting an operation against stopping */
	bool stopping;      /* under mu */
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
	if (m == NULL) {
		/* The answer filled the arena: nothing in it is needed any more (the callers return now). */
		tl_arena_reset(a);
		m = tl_arena_strndup(a, buf, strlen(buf));
	}
	resp->error = m != NULL ? m : (char *)tl_strerror(code);
}

/* The JSON answer of a trace search (shapes in wire.proto); NULL on ENOMEM or the arena's cap. */
static char *search_json(const co_search_result *r, tl_arena *arena)
{
	json_t *doc = json_object(), *arr = json_array();
	if (doc == NULL || arr == NULL) {
		json_decref(doc);
		json_decref(arr);
		return NULL;
	}
	json_object_set_new(doc, "traces", arr);
	for (size_t i = 0; i < r->n; i++) {
		const co_trace_summary *t = &r->traces[i];
		char hex[33];
		tl_hex_encode(t->trace_id, 16, hex);
		json_t *o = json_object();
		if (o == NULL || json_array_append_new(arr, o) != 0) {
			json_decref(doc);
			return NULL;
		}
		json_object_set_new(o, "trace_id", json_string(hex));
		json_object_set_new(o, "root_service",
		                    t->has_root && t->root_service[0] != '\0' ? json_string(t->root_service)
		                                                              : json_null());
		json_object_set_new(o, "root_name", t->has_root ? json_string(t->root_name) : json_null());
		/* Times and durations as decimal strings, as everywhere in the CLI's JSON (they exceed 2^53). */
		json_object_set_new(o, "start_unix_nano", json_sprintf("%" PRIu64, t->start_ns));
		json_object_set_new(o, "end_unix_nano", json_sprintf("%" PRIu64, t->end_ns));
		json_object_set_new(o, "duration_nano",
		                    json_sprintf("%" PRIu64, t->end_ns > t->start_ns ? t->end_ns - t->start_ns : 0));
		json_object_set_new(o, "span_count", json_integer((json_int_t)t->span_count));
		json_object_set_new(o, "error_count", json_integer((json_int_t)t->error_count));
	}
	json_object_set_new(doc, "examined", json_integer((json_int_t)r->examined));
	json_object_set_new(doc, "partial", json_boolean(r->partial));
	char *txt = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (txt == NULL)
		return NULL;
	char *out = tl_arena_strndup(arena, txt, strlen(txt));
	free(txt);
	return out;
}

static void answer_search(co_store *s, const tl_pb_trace_search *ts, tl_arena *arena, tl_pb_query_resp *resp)
{
	if (ts->n_attrs > SEARCH_ATTRS_MAX) {
		fail(resp, arena, TL_EINVALID, "trace_search: attrs: %zu conditions, at most %d", ts->n_attrs,
		     SEARCH_ATTRS_MAX);
		return;
	}
	co_search_attr attrs[SEARCH_ATTRS_MAX];
	for (size_t i = 0; i < ts->n_attrs; i++)
		attrs[i] = (co_search_attr){ts->attrs[i]->key, ts->attrs[i]->value};
	co_search_query q = {
	        .service = ts->service,
	        .operation = ts->operation,
	        .from_ns = ts->from_unix_nano,
	        .to_ns = ts->to_unix_nano,
	        .error_only = ts->error_only,
	        .min_duration_ns = ts->min_duration_nano,
	        .max_duration_ns = ts->max_duration_nano,
	        .attrs = attrs,
	        .n_attrs = ts->n_attrs,
	        .limit = ts->limit,
	};
	co_search_result r;
	tl_errmsg e = {{0}};
	int rc = co_search(s, &q, arena, &r, &e);
	if (rc != 0) {
		fail(resp, arena, rc, "trace_search: %s", e.msg[0] != '\0' ? e.msg : tl_strerror(rc));
		return;
	}
	char *json = search_json(&r, arena);
	if (json == NULL) {
		fail(resp, arena, TL_ELIMIT, "trace_search: the answer does not fit in memory");
		return;
	}
	resp->code = 0;
	resp->json = json;
}

/* The answer of a query kind that answers with one JSON document (lineage, errors, stats). */
typedef int (*json_answer_fn)(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err);

static void answer_json(co_store *s, const tl_pb_query_req *req, tl_arena *arena, tl_pb_query_resp *resp,
                        json_answer_fn fn)
{
	tl_errmsg e = {{0}};
	char *json = NULL;
	int rc = fn(s, req, arena, &json, &e);
	if (rc != 0) {
		fail(resp, arena, rc, "%s", e.msg[0] != '\0' ? e.msg : tl_strerror(rc));
		return;
	}
	resp->code = 0;
	resp->json = json;
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
	case THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN:
		answer_json(s, req, arena, resp, co_lineage_answer);
		return;
	case THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_SEARCH:
		answer_search(s, req->trace_search, arena, resp);
		return;
	case THREADLINE__V1__QUERY_REQUEST__QUERY_STATS:
		answer_json(s, req, arena, resp, co_stats_answer);
		return;
	case THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_LIST:
	case THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_EXPLAIN:
		answer_json(s, req, arena, resp, co_errors_answer);
		return;
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

/*
 * Starts a receive (send false) or a send of the aio's message on t's
 * context, unless the service is stopping. Under q->mu, so that
 * co_query_free() either sees the operation in flight and cancels it, or
 * the operation is never started. Returns false when stopping.
 */
static bool begin(qthread *t, bool send)
{
	co_query *q = t->q;
	pthread_mutex_lock(&q->mu);
	bool go = !q->stopping;
	if (go && send)
		nng_ctx_send(t->ctx, t->aio);
	else if (go)
		nng_ctx_recv(t->ctx, t->aio);
	pthread_mutex_unlock(&q->mu);
	return go;
}

static void *serve(void *arg)
{
	qthread *t = arg;
	for (;;) {
		nng_aio_set_timeout(t->aio, NNG_DURATION_INFINITE);
		if (!begin(t, false))
			break;
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
		if (!begin(t, true)) {
			nng_aio_set_msg(t->aio, NULL);
			nng_msg_free(msg);
			break;
		}
		nng_aio_wait(t->aio);
		if ((rv = nng_aio_result(t->aio)) != 0) {
			/* On failure the message stays with the aio (ours to free). */
			nng_msg_free(nng_aio_get_msg(t->aio));
			nng_aio_set_msg(t->aio, NULL);
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
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
	pthread_mutex_init(&q->mu, NULL);
	q->n = o->threads > 0 ? o->threads : DEFAULT_THREADS;
	size_t answer_max = o->answer_max ? o->answer_max : DEFAULT_ANSWER_MAX;
	q->t = calloc((size_t)q->n, sizeof(*q->t));
	if (q->t == NULL) {
		pthread_mutex_destroy(&q->mu);
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
		t->ctx_open = true;
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
	/* No operation starts after this; the ones in flight end with NNG_ECANCELED. */
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	for (int i = 0; i < q->n; i++)
		if (q->t[i].aio != NULL)
			nng_aio_cancel(q->t[i].aio);
	pthread_mutex_unlock(&q->mu);
	for (int i = 0; i < q->n; i++)
		if (q->t[i].started)
			pthread_join(q->t[i].th, NULL);
	/* No thread is inside nng now: contexts, then the socket, can go. */
	for (int i = 0; i < q->n; i++)
		if (q->t[i].ctx_open)
			nng_ctx_close(q->t[i].ctx);
	if (q->sock_open)
		nng_close(q->sock);
	for (int i = 0; i < q->n; i++) {
		if (q->t[i].aio != NULL)
			nng_aio_free(q->t[i].aio);
		tl_arena_fini(&q->t[i].arena);
	}
	pthread_mutex_destroy(&q->mu);
	free(q->t);
	free(q);
}
