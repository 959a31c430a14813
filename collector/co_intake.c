/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The intake's per-context state machine:
 *
 *   RECV --msg--> decode --ok--> WAIT (writer) --done--> SEND (ack) --> RECV
 *                        \--bad--> SEND (ack REJECTED)
 *
 * A context about to receive while the writer's queue is over its cap is
 * PARKED instead; the writer's room callback puts it back to RECV. Each
 * context owns an arena that holds its decoded batch until the ack is sent,
 * so memory is bounded by contexts x arena cap plus the writer's queue cap.
 *
 * Stopping: nng_ctx_recv() and nng_ctx_send() are called from nng's
 * callbacks, the writer's thread and room(), never under in->mu. Each such
 * call is counted in in->calls, and co_intake_stop() returns only when no
 * context is active and no call is in progress, so co_intake_free() never
 * closes the socket under a thread still inside nng (with nng 1.5 that
 * frees the context's protocol state under it: a panic or a use after
 * free). A receive posted after co_intake_stop() set stopping is not left
 * pending forever: post_recv() gives up or cancels it.
 */
#include "co_intake.h"

#include "tl_id.h"
#include "tl_log.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONTEXTS 8
#define DEFAULT_RECV_MAX ((size_t)64 << 20)
#define ARENA_BLOCK ((size_t)1 << 20)
/* Blocks a context keeps between batches: decoding then reuses warm pages instead of faulting in fresh ones. */
#define ARENA_RETAIN ((size_t)8 << 20)
#define ACK_SEND_TIMEOUT_MS 10000

enum ictx_state { S_IDLE, S_RECV, S_BUSY, S_SEND, S_PARKED };

typedef struct ictx {
	co_intake *in;
	nng_ctx ctx;
	nng_aio *aio;
	enum ictx_state state; /* under in->mu */
	nng_msg *msg;          /* the request, reused for the ack */
	tl_arena arena;
	co_write_req req;
	tl_errmsg err;
} ictx;

struct co_intake {
	nng_socket sock;
	nng_listener listener;
	bool sock_open;
	co_writer *w;
	tl_otlp_limits lim;
	ictx *c;
	int n;
	int port;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	int active; /* contexts not IDLE */
	int calls;  /* threads inside nng_ctx_recv() / nng_ctx_send() */
};

int co_batch_decode(const uint8_t *buf, size_t len, const tl_otlp_limits *lim, tl_arena *arena, co_batch *out,
                    tl_errmsg *err)
{
	memset(out, 0, sizeof(*out));
	ProtobufCAllocator *al = tl_arena_allocator(arena);
	tl_pb_batch *b = threadline__v1__batch__unpack(al, len, buf);
	if (b == NULL)
		return tl_errf(err, TL_EPARSE,
		               "batch: %zu bytes are not a threadline.v1.Batch (malformed or too large)", len);
	if (b->agent_id.len != CO_AGENT_ID_LEN)
		return tl_errf(err, TL_EINVALID, "batch: agent_id is %zu bytes, want %d", b->agent_id.len,
		               CO_AGENT_ID_LEN);
	memcpy(out->agent_id, b->agent_id.data, CO_AGENT_ID_LEN);
	out->seq = b->seq;
	size_t nt = 0, nl = 0;
	for (size_t i = 0; i < b->n_records; i++) {
		switch (b->records[i]->body_case) {
		case THREADLINE__V1__RECORD__BODY_OTLP_TRACES:
			nt++;
			break;
		case THREADLINE__V1__RECORD__BODY_OPENLINEAGE_JSON:
			nl++;
			break;
		default:
			return tl_errf(err, TL_EINVALID, "batch seq %llu: record %zu has no body",
			               (unsigned long long)b->seq, i);
		}
	}
	out->traces = tl_arena_alloc(arena, (nt ? nt : 1) * sizeof(*out->traces));
	out->traces_accepted = tl_arena_alloc(arena, (nt ? nt : 1) * sizeof(*out->traces_accepted));
	out->lineage = tl_arena_alloc(arena, (nl ? nl : 1) * sizeof(*out->lineage));
	out->lineage_accepted = tl_arena_alloc(arena, (nl ? nl : 1) * sizeof(*out->lineage_accepted));
	if (!out->traces || !out->traces_accepted || !out->lineage || !out->lineage_accepted)
		return tl_errf(err, TL_ELIMIT, "batch seq %llu: exceeds the decode memory cap",
		               (unsigned long long)b->seq);
	for (size_t i = 0; i < b->n_records; i++) {
		tl_pb_record *r = b->records[i];
		if (r->body_case == THREADLINE__V1__RECORD__BODY_OPENLINEAGE_JSON) {
			out->lineage_accepted[out->n_lineage] = r->accepted_unix_nano;
			out->lineage[out->n_lineage++] = r->openlineage_json;
			continue;
		}
		tl_errmsg e = {{0}};
		tl_pb_export_req *req = NULL;
		int rc = tl_otlp_decode_proto(r->otlp_traces.data, r->otlp_traces.len, lim, al, &req, &e);
		if (rc != 0)
			return tl_errf(err, rc, "batch seq %llu: record %zu: %s", (unsigned long long)b->seq, i,
			               e.msg[0] ? e.msg : tl_strerror(rc));
		out->traces_accepted[out->n_traces] = r->accepted_unix_nano;
		out->traces[out->n_traces++] = req;
	}
	return 0;
}

/* Ends a context's part in the intake (in->mu held). */
static void idle_locked(ictx *c)
{
	c->state = S_IDLE;
	c->in->active--;
	pthread_cond_broadcast(&c->in->cv);
}

/* Posts the receive of a context set to S_RECV (in->mu not held). */
static void post_recv(ictx *c)
{
	co_intake *in = c->in;
	pthread_mutex_lock(&in->mu);
	if (in->stopping) {
		/* co_intake_stop() came after this context was set to receive. */
		idle_locked(c);
		pthread_mutex_unlock(&in->mu);
		return;
	}
	in->calls++;
	pthread_mutex_unlock(&in->mu);
	nng_aio_set_timeout(c->aio, NNG_DURATION_INFINITE);
	nng_ctx_recv(c->ctx, c->aio);
	pthread_mutex_lock(&in->mu);
	in->calls--;
	/* A stop while the receive was being posted may have found nothing to cancel yet. */
	if (in->stopping && c->state == S_RECV)
		nng_aio_cancel(c->aio);
	pthread_cond_broadcast(&in->cv);
	pthread_mutex_unlock(&in->mu);
}

/* Decides what a context does after an ack: receive, park, or stop. */
static void next(ictx *c)
{
	co_intake *in = c->in;
	pthread_mutex_lock(&in->mu);
	if (in->stopping) {
		idle_locked(c);
		pthread_mutex_unlock(&in->mu);
		return;
	}
	if (!co_writer_has_room(in->w)) {
		c->state = S_PARKED;
		pthread_mutex_unlock(&in->mu);
		return;
	}
	c->state = S_RECV;
	pthread_mutex_unlock(&in->mu);
	post_recv(c);
}

static void send_ack(ictx *c, int status, const char *message, uint64_t spans)
{
	tl_pb_ack ack = THREADLINE__V1__ACK__INIT;
	ack.status = status;
	ack.message = (char *)(message != NULL ? message : "");
	ack.spans_stored = spans;
	bool named = c->req.batch.seq != 0 || !tl_id_is_zero(c->req.batch.agent_id, CO_AGENT_ID_LEN);
	if (named) {
		ack.agent_id.len = CO_AGENT_ID_LEN;
		ack.agent_id.data = c->req.batch.agent_id;
		ack.seq = c->req.batch.seq;
	}
	if (status == THREADLINE__V1__ACK__STATUS__ACK_STATUS_RETRY)
		ack.retry_after_ms = 1000;
	size_t sz = threadline__v1__ack__get_packed_size(&ack);
	nng_msg_clear(c->msg);
	if (nng_msg_realloc(c->msg, sz) != 0) {
		/* No memory for an ack: drop the request; the sender times out and resends. */
		nng_msg_free(c->msg);
		c->msg = NULL;
		next(c);
		return;
	}
	threadline__v1__ack__pack(&ack, nng_msg_body(c->msg));
	co_intake *in = c->in;
	nng_aio_set_msg(c->aio, c->msg);
	c->msg = NULL;
	nng_aio_set_timeout(c->aio, ACK_SEND_TIMEOUT_MS);
	pthread_mutex_lock(&in->mu);
	c->state = S_SEND;
	in->calls++;
	pthread_mutex_unlock(&in->mu);
	/* The ack goes out even while stopping: the batch is committed (or refused) and the sender waits for it. */
	nng_ctx_send(c->ctx, c->aio);
	pthread_mutex_lock(&in->mu);
	in->calls--;
	pthread_cond_broadcast(&in->cv);
	pthread_mutex_unlock(&in->mu);
}

static void write_done(co_write_req *r, int rc)
{
	ictx *c = r->ud;
	co_batch *b = &r->batch;
	switch (b->status) {
	case CO_BATCH_OK:
		tl_log(TL_LOG_DEBUG, "intake.stored", "seq=%llu spans=%llu skipped=%llu", (unsigned long long)b->seq,
		       (unsigned long long)b->spans_stored, (unsigned long long)b->spans_skipped);
		send_ack(c, THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK,
		         b->spans_skipped ? "spans without a 16-byte trace id were not stored" : NULL, b->spans_stored);
		break;
	case CO_BATCH_DUPLICATE:
		send_ack(c, THREADLINE__V1__ACK__STATUS__ACK_STATUS_DUPLICATE, "already stored", 0);
		break;
	case CO_BATCH_REJECTED:
		send_ack(c, THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED, "rejected by the store", 0);
		break;
	default:
		send_ack(c, THREADLINE__V1__ACK__STATUS__ACK_STATUS_RETRY, rc != 0 ? tl_strerror(rc) : "not stored", 0);
		break;
	}
}

static void handle(ictx *c)
{
	co_intake *in = c->in;
	tl_arena_reset(&c->arena);
	size_t len = nng_msg_len(c->msg);
	int rc = co_batch_decode(nng_msg_body(c->msg), len, &in->lim, &c->arena, &c->req.batch, &c->err);
	if (rc != 0) {
		tl_log(TL_LOG_WARN, "intake.rejected", "bytes=%zu err=\"%s\"", len, c->err.msg);
		send_ack(c, THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED, c->err.msg, 0);
		return;
	}
	c->req.bytes = len;
	c->req.done = write_done;
	c->req.ud = c;
	if (co_writer_submit(in->w, &c->req) != 0)
		send_ack(c, THREADLINE__V1__ACK__STATUS__ACK_STATUS_RETRY, "collector is shutting down", 0);
}

static void ictx_cb(void *arg)
{
	ictx *c = arg;
	co_intake *in = c->in;
	int rv = nng_aio_result(c->aio);
	pthread_mutex_lock(&in->mu);
	enum ictx_state st = c->state;
	if (st == S_RECV && rv == 0)
		c->state = S_BUSY;
	pthread_mutex_unlock(&in->mu);
	if (st == S_SEND) {
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(c->aio));
			nng_aio_set_msg(c->aio, NULL);
			tl_log(TL_LOG_DEBUG, "intake.ack_failed", "err=\"%s\"", nng_strerror(rv));
		}
		next(c);
		return;
	}
	if (rv != 0) {
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
			pthread_mutex_lock(&in->mu);
			idle_locked(c);
			pthread_mutex_unlock(&in->mu);
			return;
		}
		tl_log(TL_LOG_WARN, "intake.recv_failed", "err=\"%s\"", nng_strerror(rv));
		next(c);
		return;
	}
	c->msg = nng_aio_get_msg(c->aio);
	nng_aio_set_msg(c->aio, NULL);
	handle(c);
}

static void room(void *ud)
{
	co_intake *in = ud;
	ictx *wake[64];
	for (;;) {
		int nw = 0;
		pthread_mutex_lock(&in->mu);
		for (int i = 0; i < in->n && nw < 64 && !in->stopping; i++) {
			if (in->c[i].state != S_PARKED)
				continue;
			if (!co_writer_has_room(in->w))
				break;
			in->c[i].state = S_RECV;
			wake[nw++] = &in->c[i];
		}
		pthread_mutex_unlock(&in->mu);
		for (int i = 0; i < nw; i++)
			post_recv(wake[i]);
		if (nw < 64)
			return;
	}
}

int co_intake_start(const co_intake_opts *o, co_writer *w, co_intake **out, tl_errmsg *err)
{
	*out = NULL;
	co_intake *in = calloc(1, sizeof(*in));
	if (in == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	in->w = w;
	in->port = -1;
	in->n = o->contexts > 0 ? o->contexts : DEFAULT_CONTEXTS;
	size_t recv_max = o->recv_max ? o->recv_max : DEFAULT_RECV_MAX;
	size_t dec_max = o->decoded_max ? o->decoded_max : recv_max * 4;
	if (dec_max < ((size_t)64 << 20))
		dec_max = (size_t)64 << 20;
	if (o->lim != NULL)
		in->lim = *o->lim;
	else
		tl_otlp_limits_default(&in->lim);
	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->cv, NULL);
	in->c = calloc((size_t)in->n, sizeof(*in->c));
	if (in->c == NULL) {
		co_intake_free(in);
		return tl_errf(err, -ENOMEM, "out of memory");
	}
	int rv = nng_rep0_open(&in->sock);
	if (rv != 0) {
		co_intake_free(in);
		return tl_errf(err, tl_err_from_nng(rv), "intake: open socket: %s", nng_strerror(rv));
	}
	in->sock_open = true;
	if ((rv = nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, recv_max)) != 0) {
		co_intake_free(in);
		return tl_errf(err, tl_err_from_nng(rv), "intake: recv max: %s", nng_strerror(rv));
	}
	for (int i = 0; i < in->n; i++) {
		ictx *c = &in->c[i];
		c->in = in;
		tl_arena_init(&c->arena, ARENA_BLOCK, dec_max);
		tl_arena_set_retain(&c->arena, ARENA_RETAIN);
		if ((rv = nng_aio_alloc(&c->aio, ictx_cb, c)) != 0 || (rv = nng_ctx_open(&c->ctx, in->sock)) != 0) {
			co_intake_free(in);
			return tl_errf(err, tl_err_from_nng(rv), "intake: context: %s", nng_strerror(rv));
		}
	}
	if ((rv = nng_listener_create(&in->listener, in->sock, o->url)) != 0 ||
	    (rv = nng_listener_start(in->listener, 0)) != 0) {
		co_intake_free(in);
		return tl_errf(err, tl_err_from_nng(rv), "intake: listen on %s: %s", o->url, nng_strerror(rv));
	}
	int port;
	if (nng_listener_get_int(in->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
		in->port = port;
	co_writer_set_room_fn(w, room, in);
	pthread_mutex_lock(&in->mu);
	for (int i = 0; i < in->n; i++)
		in->c[i].state = S_RECV;
	in->active = in->n;
	pthread_mutex_unlock(&in->mu);
	for (int i = 0; i < in->n; i++)
		post_recv(&in->c[i]);
	*out = in;
	return 0;
}

int co_intake_port(const co_intake *in)
{
	return in->port;
}

void co_intake_stop(co_intake *in)
{
	pthread_mutex_lock(&in->mu);
	in->stopping = true;
	for (int i = 0; i < in->n; i++) {
		ictx *c = &in->c[i];
		if (c->state == S_RECV) {
			/* Completes the receive with NNG_ECANCELED on nng's thread; a message that
			 * already arrived is handled and acked as usual. */
			nng_aio_cancel(c->aio);
		} else if (c->state == S_PARKED) {
			c->state = S_IDLE;
			in->active--;
		}
	}
	/* Then no thread is inside nng for the intake: the socket can be closed. */
	while (in->active > 0 || in->calls > 0)
		pthread_cond_wait(&in->cv, &in->mu);
	pthread_mutex_unlock(&in->mu);
}

void co_intake_free(co_intake *in)
{
	if (in == NULL)
		return;
	if (in->active > 0)
		co_intake_stop(in);
	if (in->w != NULL)
		co_writer_set_room_fn(in->w, NULL, NULL);
	if (in->sock_open)
		nng_close(in->sock);
	for (int i = 0; in->c != NULL && i < in->n; i++) {
		ictx *c = &in->c[i];
		if (c->aio != NULL)
			nng_aio_free(c->aio);
		if (c->msg != NULL)
			nng_msg_free(c->msg);
		tl_arena_fini(&c->arena);
	}
	free(in->c);
	pthread_mutex_destroy(&in->mu);
	pthread_cond_destroy(&in->cv);
	free(in);
}
