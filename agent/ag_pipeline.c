/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Adaptive batching between receivers and the sender; see ag_pipeline.h.
 * Records wait in a FIFO until a window slot is free, then as many as fit
 * batch_max_bytes are encoded as one Batch (agent id, next sequence number)
 * and handed to the sender. The batch remembers its records, and its ack
 * answers each of them.
 */
#include "ag_pipeline.h"

#include "tl_error.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
	struct entry *next;
	uint8_t *data;
	size_t len;
	size_t nspans;
	uint64_t accepted_ns;
	uint64_t deadline_mono_ns;
	ag_done_cb cb; /* NULL once answered */
	void *ud;
} entry;

typedef struct batch {
	ag_pipeline *p;
	uint64_t seq;
	entry *entries;
	struct batch *next;
} batch;

struct ag_pipeline {
	uv_loop_t *loop;
	ag_sender *sender;
	ag_pipeline_opts o;
	entry *wait_head, *wait_tail; /* FIFO of records not yet in a batch */
	batch *in_flight;             /* batches given to the sender */
	uint64_t next_seq;
	size_t pending_bytes;
	size_t pending_records;
	uv_timer_t deadline_timer;
	bool closing;
	ag_pipeline_stats st;
};

void ag_pipeline_opts_default(ag_pipeline_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->batch_max_bytes = 1 << 20;
	o->max_pending_bytes = 8 << 20;
	o->request_deadline_ms = 10000;
}

static void answer(entry *e, int status, const char *msg)
{
	ag_done_cb cb = e->cb;
	e->cb = NULL;
	if (cb != NULL)
		cb(e->ud, status, msg);
}

static void release(ag_pipeline *p, entry *e)
{
	p->pending_bytes -= e->len;
	p->pending_records--;
	free(e->data);
	free(e);
}

static void pump(ag_pipeline *p);

static void batch_done(void *ud, uint64_t seq, ag_ack ack, const char *msg)
{
	batch *b = ud;
	ag_pipeline *p = b->p;
	(void)seq;
	for (batch **pp = &p->in_flight; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	entry *e = b->entries;
	while (e != NULL) {
		entry *n = e->next;
		if (ack == AG_ACK_STORED) {
			p->st.records_acked++;
			p->st.spans_acked += e->nspans;
			answer(e, 0, "");
		} else {
			p->st.records_rejected++;
			answer(e, TL_EREJECTED, msg);
		}
		release(p, e);
		e = n;
	}
	free(b);
	if (!p->closing)
		pump(p);
}

/* Encodes the records of b as one Batch. Returns malloc'd bytes or NULL. */
static uint8_t *encode(ag_pipeline *p, batch *b, size_t n, size_t *len)
{
	tl_pb_record *recs = calloc(n, sizeof(*recs));
	tl_pb_record **ptrs = calloc(n, sizeof(*ptrs));
	uint8_t *out = NULL;
	if (recs == NULL || ptrs == NULL)
		goto done;
	size_t i = 0;
	for (entry *e = b->entries; e != NULL; e = e->next, i++) {
		threadline__v1__record__init(&recs[i]);
		recs[i].accepted_unix_nano = e->accepted_ns;
		recs[i].body_case = THREADLINE__V1__RECORD__BODY_OTLP_TRACES;
		recs[i].otlp_traces.data = e->data;
		recs[i].otlp_traces.len = e->len;
		ptrs[i] = &recs[i];
	}
	tl_pb_batch bm;
	threadline__v1__batch__init(&bm);
	bm.agent_id.data = p->o.agent_id;
	bm.agent_id.len = sizeof(p->o.agent_id);
	bm.seq = b->seq;
	bm.n_records = n;
	bm.records = ptrs;
	*len = threadline__v1__batch__get_packed_size(&bm);
	out = malloc(*len ? *len : 1);
	if (out != NULL)
		threadline__v1__batch__pack(&bm, out);
done:
	free(recs);
	free(ptrs);
	return out;
}

/* Moves waiting records into batches while the sender has free slots. */
static void pump(ag_pipeline *p)
{
	while (p->wait_head != NULL && ag_sender_free_slots(p->sender) > 0) {
		batch *b = calloc(1, sizeof(*b));
		if (b == NULL)
			return;
		b->p = p;
		b->seq = p->next_seq;
		size_t bytes = 0, n = 0;
		entry **tail = &b->entries, *last = NULL;
		while (p->wait_head != NULL && (n == 0 || bytes + p->wait_head->len <= p->o.batch_max_bytes)) {
			entry *e = p->wait_head;
			p->wait_head = e->next;
			e->next = NULL;
			*tail = e;
			tail = &e->next;
			last = e;
			bytes += e->len;
			n++;
		}
		if (p->wait_head == NULL)
			p->wait_tail = NULL;
		size_t len;
		uint8_t *data = encode(p, b, n, &len);
		if (data == NULL || ag_sender_send(p->sender, b->seq, data, len, batch_done, b) != 0) {
			/* Put the records back in front, in order, and try again on the next event. */
			free(data);
			last->next = p->wait_head;
			if (p->wait_head == NULL)
				p->wait_tail = last;
			p->wait_head = b->entries;
			free(b);
			return;
		}
		p->next_seq++;
		p->st.batches++;
		b->next = p->in_flight;
		p->in_flight = b;
	}
}

static void deadline_tick(uv_timer_t *t)
{
	ag_pipeline *p = t->data;
	uint64_t now = tl_mono_ns();
	/* Waiting records past their deadline are answered and dropped: they were never sent. */
	entry **pp = &p->wait_head, *last = NULL;
	while (*pp != NULL) {
		entry *e = *pp;
		if (e->deadline_mono_ns <= now) {
			*pp = e->next;
			p->st.records_timed_out++;
			answer(e, TL_ETIMEOUT, "collector did not acknowledge in time");
			release(p, e);
			continue;
		}
		last = e;
		pp = &e->next;
	}
	p->wait_tail = last;
	/* Records in flight are answered but stay in their batch, which is still being delivered. */
	for (batch *b = p->in_flight; b != NULL; b = b->next) {
		for (entry *e = b->entries; e != NULL; e = e->next) {
			if (e->cb != NULL && e->deadline_mono_ns <= now) {
				p->st.records_timed_out++;
				answer(e, TL_ETIMEOUT, "collector did not acknowledge in time");
			}
		}
	}
}

int ag_pipeline_new(uv_loop_t *loop, ag_sender *sender, const ag_pipeline_opts *o, ag_pipeline **out)
{
	ag_pipeline *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->loop = loop;
	p->sender = sender;
	p->o = *o;
	p->next_seq = 1;
	uv_timer_init(loop, &p->deadline_timer);
	p->deadline_timer.data = p;
	uint64_t tick = o->request_deadline_ms / 10;
	uv_timer_start(&p->deadline_timer, deadline_tick, tick < 10 ? 10 : tick, tick < 10 ? 10 : tick);
	uv_unref((uv_handle_t *)&p->deadline_timer);
	*out = p;
	return 0;
}

int ag_pipeline_submit(ag_pipeline *p, uint8_t *data, size_t len, size_t nspans, ag_done_cb cb, void *ud)
{
	if (p->closing)
		return TL_ECLOSED;
	if (p->pending_bytes + len > p->o.max_pending_bytes && p->pending_records > 0)
		return TL_EFULL;
	entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	e->data = data;
	e->len = len;
	e->nspans = nspans;
	e->accepted_ns = tl_now_ns();
	e->deadline_mono_ns = tl_mono_ns() + p->o.request_deadline_ms * TL_NS_PER_MS;
	e->cb = cb;
	e->ud = ud;
	if (p->wait_tail != NULL)
		p->wait_tail->next = e;
	else
		p->wait_head = e;
	p->wait_tail = e;
	p->pending_bytes += len;
	p->pending_records++;
	pump(p);
	return 0;
}

size_t ag_pipeline_pending_bytes(const ag_pipeline *p)
{
	return p->pending_bytes;
}

void ag_pipeline_stats_get(const ag_pipeline *p, ag_pipeline_stats *out)
{
	*out = p->st;
	out->pending_bytes = p->pending_bytes;
	out->pending_records = p->pending_records;
}

static void timer_closed(uv_handle_t *h)
{
	free(h->data);
}

void ag_pipeline_close(ag_pipeline *p)
{
	if (p == NULL)
		return;
	p->closing = true;
	while (p->wait_head != NULL) {
		entry *e = p->wait_head;
		p->wait_head = e->next;
		answer(e, TL_ECLOSED, "agent is shutting down");
		release(p, e);
	}
	p->wait_tail = NULL;
	while (p->in_flight != NULL) {
		batch *b = p->in_flight;
		p->in_flight = b->next;
		while (b->entries != NULL) {
			entry *e = b->entries;
			b->entries = e->next;
			answer(e, TL_ECLOSED, "agent is shutting down");
			release(p, e);
		}
		free(b);
	}
	uv_close((uv_handle_t *)&p->deadline_timer, timer_closed);
}
