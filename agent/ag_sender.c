/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nng REQ sender with a window of contexts. Each slot is a small state
 * machine: IDLE -> SENDING -> RECEIVING -> (ack) IDLE, or -> BACKOFF ->
 * SENDING on failure. nng's callbacks only move a slot between SENDING and
 * RECEIVING and post finished round trips to the loop; everything that
 * touches caller state happens on the loop thread.
 */
#include "ag_sender.h"

#include "tl_error.h"
#include "tl_id.h"
#include "tl_pb.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WINDOW 64

enum slot_state { SLOT_IDLE, SLOT_SENDING, SLOT_RECEIVING, SLOT_DONE, SLOT_BACKOFF };

typedef struct slot {
	ag_sender *s;
	unsigned idx;
	nng_ctx ctx;
	nng_aio *aio;
	enum slot_state state;
	uint64_t seq;
	uint8_t *data;
	size_t len;
	ag_sender_cb cb;
	void *ud;
	unsigned attempts;
	uv_timer_t timer;
	/* Set by the nng thread before posting SLOT_DONE. */
	int result;
	nng_msg *reply;
	struct slot *next_done;
} slot;

struct ag_sender {
	uv_loop_t *loop;
	ag_sender_opts o;
	nng_socket sock;
	nng_dialer dialer;
	unsigned nslots;
	slot slots[MAX_WINDOW];
	uv_async_t async;
	pthread_mutex_t mu;
	slot *done_head; /* guarded by mu */
	atomic_bool closing;
	unsigned pending_closes;
	ag_sender_stats st;
};

void ag_sender_opts_default(ag_sender_opts *o)
{
	o->collector_url = "tcp://127.0.0.1:7411";
	o->window = 4;
	o->ack_timeout_ms = 10000;
	o->backoff_min_ms = 100;
	o->backoff_max_ms = 5000;
	o->max_ack_bytes = 64 * 1024;
}

static void post_done(slot *sl, int result, nng_msg *reply)
{
	ag_sender *s = sl->s;
	sl->result = result;
	sl->reply = reply;
	pthread_mutex_lock(&s->mu);
	sl->state = SLOT_DONE;
	sl->next_done = s->done_head;
	s->done_head = sl;
	pthread_mutex_unlock(&s->mu);
	uv_async_send(&s->async);
}

/* Runs on an nng thread. */
static void aio_cb(void *arg)
{
	slot *sl = arg;
	ag_sender *s = sl->s;
	int rv = nng_aio_result(sl->aio);
	if (sl->state == SLOT_SENDING) {
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(sl->aio));
			nng_aio_set_msg(sl->aio, NULL);
			post_done(sl, rv, NULL);
			return;
		}
		if (atomic_load(&s->closing)) {
			post_done(sl, NNG_ECLOSED, NULL);
			return;
		}
		sl->state = SLOT_RECEIVING;
		nng_ctx_recv(sl->ctx, sl->aio);
		return;
	}
	if (sl->state == SLOT_RECEIVING) {
		nng_msg *m = rv == 0 ? nng_aio_get_msg(sl->aio) : NULL;
		nng_aio_set_msg(sl->aio, NULL);
		post_done(sl, rv, m);
	}
}

/* Starts (or restarts) the round trip of sl's batch. Loop thread. */
static void start_send(slot *sl)
{
	nng_msg *m;
	if (nng_msg_alloc(&m, sl->len) != 0) {
		/* Out of memory: try again after a backoff rather than losing the batch. */
		sl->state = SLOT_DONE;
		sl->result = NNG_ENOMEM;
		sl->reply = NULL;
		pthread_mutex_lock(&sl->s->mu);
		sl->next_done = sl->s->done_head;
		sl->s->done_head = sl;
		pthread_mutex_unlock(&sl->s->mu);
		uv_async_send(&sl->s->async);
		return;
	}
	memcpy(nng_msg_body(m), sl->data, sl->len);
	sl->state = SLOT_SENDING;
	nng_aio_set_msg(sl->aio, m);
	nng_aio_set_timeout(sl->aio, (nng_duration)sl->s->o.ack_timeout_ms);
	nng_ctx_send(sl->ctx, sl->aio);
}

static void backoff_fire(uv_timer_t *t)
{
	slot *sl = t->data;
	if (atomic_load(&sl->s->closing))
		return;
	sl->s->st.retries++;
	start_send(sl);
}

static uint64_t backoff_ms(const ag_sender *s, unsigned attempts)
{
	uint64_t d = s->o.backoff_min_ms;
	for (unsigned i = 1; i < attempts && d < s->o.backoff_max_ms; i++)
		d *= 2;
	if (d > s->o.backoff_max_ms)
		d = s->o.backoff_max_ms;
	/* Full jitter over the upper half keeps agents that lost the same collector apart. */
	uint32_t r = 0;
	tl_random_bytes((uint8_t *)&r, sizeof(r));
	return d / 2 + (d / 2 ? r % (d / 2 + 1) : 0);
}

static void retry_later(slot *sl, uint64_t min_ms)
{
	sl->attempts++;
	uint64_t d = backoff_ms(sl->s, sl->attempts);
	if (d < min_ms)
		d = min_ms;
	sl->state = SLOT_BACKOFF;
	uv_timer_start(&sl->timer, backoff_fire, d, 0);
}

static void finish(slot *sl, ag_ack ack, const char *msg)
{
	ag_sender_cb cb = sl->cb;
	void *ud = sl->ud;
	uint64_t seq = sl->seq;
	free(sl->data);
	sl->data = NULL;
	sl->state = SLOT_IDLE;
	sl->s->st.in_flight--;
	if (cb != NULL)
		cb(ud, seq, ack, msg);
}

static void handle_reply(slot *sl)
{
	ag_sender *s = sl->s;
	nng_msg *m = sl->reply;
	sl->reply = NULL;
	tl_pb_ack *ack = threadline__v1__ack__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	if (ack == NULL || ack->seq != sl->seq) {
		/* An answer we cannot read is a broken round trip: resend. */
		if (ack != NULL)
			threadline__v1__ack__free_unpacked(ack, NULL);
		retry_later(sl, 0);
		return;
	}
	switch (ack->status) {
	case THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK:
		s->st.acked++;
		finish(sl, AG_ACK_STORED, "");
		break;
	case THREADLINE__V1__ACK__STATUS__ACK_STATUS_DUPLICATE:
		s->st.acked++;
		s->st.duplicates++;
		finish(sl, AG_ACK_STORED, "");
		break;
	case THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED:
		s->st.rejected++;
		finish(sl, AG_ACK_REJECTED, ack->message != NULL ? ack->message : "rejected");
		break;
	default:
		retry_later(sl, ack->retry_after_ms);
		break;
	}
	threadline__v1__ack__free_unpacked(ack, NULL);
}

static void async_cb(uv_async_t *a)
{
	ag_sender *s = a->data;
	pthread_mutex_lock(&s->mu);
	slot *list = s->done_head;
	s->done_head = NULL;
	pthread_mutex_unlock(&s->mu);
	if (atomic_load(&s->closing)) {
		for (; list != NULL; list = list->next_done)
			nng_msg_free(list->reply);
		return;
	}
	while (list != NULL) {
		slot *sl = list;
		list = list->next_done;
		if (sl->result == 0 && sl->reply != NULL)
			handle_reply(sl);
		else
			retry_later(sl, 0);
	}
}

int ag_sender_new(uv_loop_t *loop, const ag_sender_opts *o, ag_sender **out)
{
	ag_sender *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->o = *o;
	s->nslots = o->window == 0 ? 1 : o->window > MAX_WINDOW ? MAX_WINDOW : o->window;
	int rv;
	if ((rv = nng_req0_open(&s->sock)) != 0) {
		free(s);
		return tl_err_from_nng(rv);
	}
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, o->max_ack_bytes);
	/* Our own timeout drives resends; keep nng's from firing first. */
	nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, (nng_duration)o->backoff_max_ms);
	for (unsigned i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		sl->s = s;
		sl->idx = i;
		if ((rv = nng_ctx_open(&sl->ctx, s->sock)) != 0 || (rv = nng_aio_alloc(&sl->aio, aio_cb, sl)) != 0) {
			for (unsigned j = 0; j < i; j++)
				nng_aio_free(s->slots[j].aio);
			nng_close(s->sock);
			free(s);
			return tl_err_from_nng(rv);
		}
	}
	/* Non-blocking dial: a collector that is down now is dialed again in the background. */
	if ((rv = nng_dial(s->sock, o->collector_url, &s->dialer, NNG_FLAG_NONBLOCK)) != 0) {
		for (unsigned j = 0; j < s->nslots; j++)
			nng_aio_free(s->slots[j].aio);
		nng_close(s->sock);
		free(s);
		return tl_err_from_nng(rv);
	}
	pthread_mutex_init(&s->mu, NULL);
	uv_async_init(loop, &s->async, async_cb);
	s->async.data = s;
	for (unsigned i = 0; i < s->nslots; i++) {
		uv_timer_init(loop, &s->slots[i].timer);
		s->slots[i].timer.data = &s->slots[i];
	}
	*out = s;
	return 0;
}

unsigned ag_sender_free_slots(const ag_sender *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nslots; i++)
		n += s->slots[i].data == NULL;
	return n;
}

int ag_sender_send(ag_sender *s, uint64_t seq, uint8_t *data, size_t len, ag_sender_cb cb, void *ud)
{
	if (atomic_load(&s->closing))
		return TL_ECLOSED;
	for (unsigned i = 0; i < s->nslots; i++) {
		slot *sl = &s->slots[i];
		if (sl->data != NULL)
			continue;
		sl->seq = seq;
		sl->data = data;
		sl->len = len;
		sl->cb = cb;
		sl->ud = ud;
		sl->attempts = 0;
		s->st.batches_sent++;
		s->st.in_flight++;
		start_send(sl);
		return 0;
	}
	return TL_EFULL;
}

void ag_sender_stats_get(const ag_sender *s, ag_sender_stats *out)
{
	*out = s->st;
}

static void handle_closed(uv_handle_t *h)
{
	ag_sender *s = h->data;
	if (h->type == UV_TIMER)
		s = ((slot *)h->data)->s;
	if (--s->pending_closes == 0) {
		pthread_mutex_destroy(&s->mu);
		free(s);
	}
}

void ag_sender_close(ag_sender *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->closing, true);
	for (unsigned i = 0; i < s->nslots; i++)
		nng_aio_stop(s->slots[i].aio);
	for (unsigned i = 0; i < s->nslots; i++) {
		nng_ctx_close(s->slots[i].ctx);
		nng_aio_free(s->slots[i].aio);
	}
	nng_close(s->sock);
	pthread_mutex_lock(&s->mu);
	for (slot *l = s->done_head; l != NULL; l = l->next_done)
		nng_msg_free(l->reply);
	s->done_head = NULL;
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < s->nslots; i++) {
		free(s->slots[i].data);
		s->slots[i].data = NULL;
	}
	s->pending_closes = s->nslots + 1;
	for (unsigned i = 0; i < s->nslots; i++)
		uv_close((uv_handle_t *)&s->slots[i].timer, handle_closed);
	uv_close((uv_handle_t *)&s->async, handle_closed);
}
