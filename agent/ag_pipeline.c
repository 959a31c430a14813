/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Group commit into the spool and sending out of it; see ag_pipeline.h.
 *
 * One spool transaction runs at a time, on the libuv thread pool. It takes
 * every record waiting when it starts (encoded into batches of at most
 * batch_max_bytes, with the next sequence numbers), every acknowledged batch
 * to remove and every refused batch to move aside, and, in periodic mode, a
 * due fsync. When it ends the loop answers its records, hands its batches
 * straight to the sender if the sender is caught up (otherwise they are
 * read back from the spool later), and starts the next one if there is work.
 */
#include "ag_pipeline.h"

#include "tl_error.h"
#include "tl_log.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
	struct entry *next;
	ag_record_kind kind;
	uint8_t *data;
	size_t len;
	size_t nspans;
	uint64_t accepted_ns;
	uint64_t deadline_mono_ns;
	ag_done_cb cb; /* NULL once answered */
	void *ud;
} entry;

/* One batch of a commit: entries [first, first + n) of the commit's list. */
typedef struct wbatch {
	uint64_t seq;
	entry *first;
	size_t n;
	uint32_t nspans;
	uint8_t *data; /* encoded on the thread pool; freed or given to the sender */
	size_t len;
} wbatch;

typedef struct commit {
	uv_work_t req;
	ag_pipeline *p;
	entry *entries;
	size_t bytes;
	wbatch *b;
	size_t nb;
	ag_spool_done *done;
	size_t ndone;
	bool sync;
	int rc;
	int sync_rc;
	tl_errmsg err;
} commit;

/* A batch in the sender's window (listed, since a closed sender drops them without callbacks). */
typedef struct flight {
	ag_pipeline *p;
	uint32_t nspans;
	struct flight *prev, *next;
} flight;

/*
 * Spool bytes a record may take beyond its own: the Record framing and time
 * (24 bytes at most) plus, if it travels alone, the Batch's agent id and
 * sequence (30) and the spool's header (8).
 */
#define SPOOL_OVERHEAD 64

struct ag_pipeline {
	uv_loop_t *loop;
	ag_spool *spool;
	ag_sender *sender;
	ag_pipeline_opts o;
	uint8_t agent_id[16];
	entry *wait_head, *wait_tail; /* FIFO of records waiting for a commit */
	size_t wait_bytes, wait_records;
	commit *running;
	uint64_t next_seq;   /* for the next spooled batch */
	uint64_t sent_upto;  /* every spooled batch with seq <= this was given to the sender */
	ag_spool_done *done; /* acknowledged / refused batches to remove in the next commit */
	size_t ndone, done_cap;
	bool sync_due, dirty, backoff;
	flight *flights; /* in the sender's window */
	uv_timer_t tick, sync_timer;
	int timers_open;
	bool accepting, closing;
	void (*closed_cb)(void *ud);
	void *closed_ud;
	uint64_t last_error_log_ns;
	ag_pipeline_stats st;
};

void ag_pipeline_opts_default(ag_pipeline_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->batch_max_bytes = 1 << 20;
	o->max_pending_bytes = 8 << 20;
	o->spool_max_bytes = (size_t)1 << 30;
	o->request_deadline_ms = 10000;
}

static void answer(entry *e, int status, const char *msg)
{
	ag_done_cb cb = e->cb;
	e->cb = NULL;
	if (cb != NULL)
		cb(e->ud, status, msg);
}

static void free_entries(entry *e)
{
	while (e != NULL) {
		entry *n = e->next;
		free(e->data);
		free(e);
		e = n;
	}
}

static void free_done(ag_spool_done *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)d[i].reason);
	free(d);
}

static void kick(ag_pipeline *p);
static void pump(ag_pipeline *p);

static void batch_done(void *ud, uint64_t seq, ag_ack ack, const char *msg)
{
	flight *f = ud;
	ag_pipeline *p = f->p;
	uint32_t nspans = f->nspans;
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		p->flights = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	free(f);
	if (p->ndone == p->done_cap) {
		size_t cap = p->done_cap ? p->done_cap * 2 : 64;
		ag_spool_done *d = realloc(p->done, cap * sizeof(*d));
		if (d == NULL)
			return; /* stays in the spool; resent after a restart and dropped as a duplicate */
		p->done = d;
		p->done_cap = cap;
	}
	ag_spool_done *d = &p->done[p->ndone++];
	d->seq = seq;
	d->reason = NULL;
	if (ack == AG_ACK_STORED) {
		p->st.batches_acked++;
		p->st.spans_delivered += nspans;
	} else {
		p->st.batches_refused++;
		p->st.spans_refused += nspans;
		d->reason = strdup(msg != NULL && msg[0] ? msg : "refused by the collector");
	}
	kick(p);
	pump(p);
}

/* Gives one batch to the sender (taking data). Returns 0 or the sender's error (data kept by the caller). */
static int send_one(ag_pipeline *p, uint64_t seq, uint8_t *data, size_t len, uint32_t nspans)
{
	flight *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	f->p = p;
	f->nspans = nspans;
	int rc = ag_sender_send(p->sender, seq, data, len, batch_done, f);
	if (rc != 0) {
		free(f);
		return rc;
	}
	f->next = p->flights;
	if (p->flights != NULL)
		p->flights->prev = f;
	p->flights = f;
	p->sent_upto = seq;
	return 0;
}

/* Fills the sender's window from the spool, oldest first. */
static void pump(ag_pipeline *p)
{
	while (!p->closing && ag_sender_free_slots(p->sender) > 0) {
		uint64_t seq;
		uint8_t *data;
		size_t len;
		uint32_t nspans;
		if (ag_spool_read_next(p->spool, p->sent_upto, &seq, &data, &len, &nspans) != 0)
			return;
		if (send_one(p, seq, data, len, nspans) != 0) {
			free(data);
			return;
		}
	}
}

/* Encodes a batch's records as one threadline.v1.Batch. Returns 0 or -ENOMEM. */
static int encode(const uint8_t agent_id[16], wbatch *b)
{
	tl_pb_record *recs = calloc(b->n, sizeof(*recs));
	tl_pb_record **ptrs = calloc(b->n, sizeof(*ptrs));
	int rc = -ENOMEM;
	if (recs == NULL || ptrs == NULL)
		goto done;
	entry *e = b->first;
	for (size_t i = 0; i < b->n; i++, e = e->next) {
		threadline__v1__record__init(&recs[i]);
		recs[i].accepted_unix_nano = e->accepted_ns;
		if (e->kind == AG_RECORD_OPENLINEAGE) {
			recs[i].body_case = THREADLINE__V1__RECORD__BODY_OPENLINEAGE_JSON;
			recs[i].openlineage_json.data = e->data;
			recs[i].openlineage_json.len = e->len;
		} else {
			recs[i].body_case = THREADLINE__V1__RECORD__BODY_OTLP_TRACES;
			recs[i].otlp_traces.data = e->data;
			recs[i].otlp_traces.len = e->len;
		}
		ptrs[i] = &recs[i];
	}
	tl_pb_batch bm;
	threadline__v1__batch__init(&bm);
	bm.agent_id.data = (uint8_t *)agent_id;
	bm.agent_id.len = 16;
	bm.seq = b->seq;
	bm.n_records = b->n;
	bm.records = ptrs;
	b->len = threadline__v1__batch__get_packed_size(&bm);
	b->data = malloc(b->len ? b->len : 1);
	if (b->data != NULL) {
		threadline__v1__batch__pack(&bm, b->data);
		rc = 0;
	}
done:
	free(recs);
	free(ptrs);
	return rc;
}

/* On the thread pool: encode, one transaction, and a due fsync. */
static void commit_work(uv_work_t *req)
{
	commit *c = req->data;
	ag_pipeline *p = c->p;
	ag_spool_put *puts = c->nb ? calloc(c->nb, sizeof(*puts)) : NULL;
	if (c->nb > 0 && puts == NULL) {
		c->rc = tl_errf(&c->err, -ENOMEM, "spool: out of memory encoding a batch");
		return;
	}
	for (size_t i = 0; i < c->nb; i++) {
		if (encode(p->agent_id, &c->b[i]) != 0) {
			free(puts);
			c->rc = tl_errf(&c->err, -ENOMEM, "spool: out of memory encoding a batch");
			return;
		}
		puts[i].seq = c->b[i].seq;
		puts[i].data = c->b[i].data;
		puts[i].len = c->b[i].len;
		puts[i].nspans = c->b[i].nspans;
	}
	if (c->nb > 0 || c->ndone > 0)
		c->rc = ag_spool_write(p->spool, puts, c->nb, c->done, c->ndone, NULL, &c->err);
	free(puts);
	if (c->rc == 0 && c->sync)
		c->sync_rc = ag_spool_sync(p->spool);
}

static size_t count_entries(const entry *e)
{
	size_t n = 0;
	for (; e != NULL; e = e->next)
		n++;
	return n;
}

static void free_commit(commit *c)
{
	for (size_t i = 0; i < c->nb; i++)
		free(c->b[i].data);
	free(c->b);
	free_entries(c->entries);
	free_done(c->done, c->ndone);
	free(c);
}

static void maybe_free(ag_pipeline *p)
{
	if (p->closing && p->running == NULL && p->timers_open == 0) {
		while (p->flights != NULL) {
			flight *f = p->flights;
			p->flights = f->next;
			free(f);
		}
		free_done(p->done, p->ndone);
		void (*cb)(void *) = p->closed_cb;
		void *ud = p->closed_ud;
		free(p);
		if (cb != NULL)
			cb(ud);
	}
}

static void commit_after(uv_work_t *req, int status)
{
	commit *c = req->data;
	ag_pipeline *p = c->p;
	p->running = NULL;
	if (status == UV_ECANCELED && c->rc == 0)
		c->rc = tl_errf(&c->err, TL_ECLOSED, "agent is shutting down");
	if (c->rc == 0) {
		p->st.commits++;
		p->next_seq += c->nb;
		p->st.batches_spooled += c->nb;
		if (c->nb > 0 || c->ndone > 0)
			p->dirty = true;
		if (c->sync) {
			if (c->sync_rc == 0) {
				p->st.syncs++;
				p->dirty = false;
			} else {
				p->sync_due = true; /* try again at the next commit */
			}
		}
		for (entry *e = c->entries; e != NULL; e = e->next) {
			if (e->cb != NULL) {
				p->st.records_committed++;
				p->st.spans_committed += e->nspans;
				p->st.events_committed += e->kind == AG_RECORD_OPENLINEAGE;
			}
			answer(e, 0, "");
		}
		/* The sender is caught up: give it the new batches without reading them back. */
		for (size_t i = 0; i < c->nb && !p->closing; i++) {
			wbatch *b = &c->b[i];
			if (b->seq != p->sent_upto + 1 || ag_sender_free_slots(p->sender) == 0)
				break;
			if (send_one(p, b->seq, b->data, b->len, b->nspans) == 0)
				b->data = NULL;
		}
	} else {
		p->st.commit_errors++;
		p->backoff = true;
		/* At most one line per 10 s: a full disk must not flood the log. */
		uint64_t now = tl_mono_ns();
		if (p->last_error_log_ns == 0 || now - p->last_error_log_ns >= 10 * TL_NS_PER_S) {
			tl_log(TL_LOG_ERROR, "spool.commit_failed", "err=\"%s\" records=%zu failures_total=%llu",
			       c->err.msg, count_entries(c->entries), (unsigned long long)p->st.commit_errors);
			p->last_error_log_ns = now;
		}
		if (c->sync)
			p->sync_due = true;
		for (entry *e = c->entries; e != NULL; e = e->next) {
			if (e->cb != NULL)
				p->st.records_failed++;
			answer(e, TL_ESTORE, c->err.msg);
		}
		/* Removals were not applied: keep them for the next commit. */
		for (size_t i = 0; i < c->ndone; i++) {
			if (p->ndone == p->done_cap) {
				size_t cap = p->done_cap ? p->done_cap * 2 : 64;
				ag_spool_done *d = realloc(p->done, cap * sizeof(*d));
				if (d == NULL)
					break;
				p->done = d;
				p->done_cap = cap;
			}
			p->done[p->ndone++] = c->done[i];
			c->done[i].reason = NULL;
		}
	}
	p->st.pending_bytes -= c->bytes;
	for (entry *e = c->entries; e != NULL; e = e->next)
		p->st.pending_records--;
	free_commit(c);
	if (p->closing) {
		maybe_free(p);
		return;
	}
	pump(p);
	kick(p);
}

/* Starts a commit if none runs and there is something to do. */
static void kick(ag_pipeline *p)
{
	if (p->running != NULL || p->closing)
		return;
	if (p->backoff && p->wait_head == NULL)
		return; /* the last commit failed: the tick retries removals later */
	if (p->wait_head == NULL && p->ndone == 0 && !(p->sync_due && p->dirty))
		return;
	commit *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	size_t nb = 0;
	size_t bytes = 0;
	for (entry *e = p->wait_head; e != NULL; e = e->next) {
		if (nb == 0 || bytes + e->len > p->o.batch_max_bytes) {
			nb++;
			bytes = 0;
		}
		bytes += e->len;
	}
	c->b = nb ? calloc(nb, sizeof(*c->b)) : NULL;
	if (nb > 0 && c->b == NULL) {
		free(c);
		return;
	}
	c->p = p;
	c->req.data = c;
	c->nb = nb;
	c->entries = p->wait_head;
	c->bytes = p->wait_bytes;
	wbatch *b = NULL;
	bytes = 0;
	for (entry *e = p->wait_head; e != NULL; e = e->next) {
		if (b == NULL || bytes + e->len > p->o.batch_max_bytes) {
			b = b == NULL ? c->b : b + 1;
			b->seq = p->next_seq + (uint64_t)(b - c->b);
			b->first = e;
			bytes = 0;
		}
		b->n++;
		b->nspans += (uint32_t)e->nspans;
		bytes += e->len;
	}
	p->wait_head = p->wait_tail = NULL;
	p->wait_bytes = 0;
	p->wait_records = 0;
	c->done = p->done;
	c->ndone = p->ndone;
	p->done = NULL;
	p->ndone = p->done_cap = 0;
	c->sync = p->sync_due && (p->dirty || c->nb > 0 || c->ndone > 0);
	p->sync_due = false;
	p->backoff = false;
	p->running = c;
	int rc = uv_queue_work(p->loop, &c->req, commit_work, commit_after);
	if (rc != 0) {
		c->rc = tl_errf(&c->err, TL_ESTORE, "spool: cannot queue the commit: %s", uv_strerror(rc));
		commit_after(&c->req, 0);
	}
}

static void tick(uv_timer_t *t)
{
	ag_pipeline *p = t->data;
	uint64_t now = tl_mono_ns();
	/* Records still waiting past their deadline were never committed: answer and drop them. */
	entry **pp = &p->wait_head, *last = NULL;
	while (*pp != NULL) {
		entry *e = *pp;
		if (e->deadline_mono_ns <= now) {
			*pp = e->next;
			p->st.records_timed_out++;
			p->wait_bytes -= e->len;
			p->wait_records--;
			p->st.pending_bytes -= e->len;
			p->st.pending_records--;
			answer(e, TL_ETIMEOUT, "the spool did not commit in time");
			free(e->data);
			free(e);
			continue;
		}
		last = e;
		pp = &e->next;
	}
	p->wait_tail = last;
	p->backoff = false;
	kick(p);
	pump(p);
}

static void sync_tick(uv_timer_t *t)
{
	ag_pipeline *p = t->data;
	if (p->dirty) {
		p->sync_due = true;
		kick(p);
	}
}

int ag_pipeline_new(uv_loop_t *loop, ag_spool *spool, ag_sender *sender, const ag_pipeline_opts *o, ag_pipeline **out)
{
	ag_pipeline *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->loop = loop;
	p->spool = spool;
	p->sender = sender;
	p->o = *o;
	memcpy(p->agent_id, ag_spool_agent_id(spool), sizeof(p->agent_id));
	ag_spool_info in;
	ag_spool_info_get(spool, &in);
	p->next_seq = in.next_seq;
	p->accepting = true;
	uv_timer_init(loop, &p->tick);
	p->tick.data = p;
	uint64_t every = o->request_deadline_ms / 10;
	if (every < 10)
		every = 10;
	if (every > 1000)
		every = 1000;
	uv_timer_start(&p->tick, tick, every, every);
	uv_unref((uv_handle_t *)&p->tick);
	p->timers_open++;
	uv_timer_init(loop, &p->sync_timer);
	p->sync_timer.data = p;
	p->timers_open++;
	if (o->sync_interval_ms > 0) {
		uv_timer_start(&p->sync_timer, sync_tick, o->sync_interval_ms, o->sync_interval_ms);
		uv_unref((uv_handle_t *)&p->sync_timer);
	}
	pump(p);
	*out = p;
	return 0;
}

int ag_pipeline_submit(ag_pipeline *p, ag_record_kind kind, uint8_t *data, size_t len, size_t nspans, ag_done_cb cb,
                       void *ud)
{
	if (p->closing || !p->accepting)
		return TL_ECLOSED;
	size_t need = len + SPOOL_OVERHEAD;
	if (need > p->o.spool_max_bytes)
		return TL_ELIMIT;
	ag_spool_info in;
	ag_spool_info_get(p->spool, &in);
	size_t pending = p->st.pending_bytes + p->st.pending_records * SPOOL_OVERHEAD;
	if (in.bytes + in.dead_bytes + pending + need > p->o.spool_max_bytes)
		return TL_EFULL;
	if (p->st.pending_bytes + len > p->o.max_pending_bytes && p->st.pending_records > 0)
		return -ENOBUFS;
	entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	e->kind = kind;
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
	p->wait_bytes += len;
	p->wait_records++;
	p->st.pending_bytes += len;
	p->st.pending_records++;
	kick(p);
	return 0;
}

void ag_pipeline_stop_accepting(ag_pipeline *p)
{
	p->accepting = false;
}

bool ag_pipeline_drained(const ag_pipeline *p)
{
	ag_spool_info in;
	ag_spool_info_get(p->spool, &in);
	return p->wait_head == NULL && p->running == NULL && p->ndone == 0 && in.batches == 0;
}

void ag_pipeline_stats_get(const ag_pipeline *p, ag_pipeline_stats *out)
{
	*out = p->st;
	ag_spool_info_get(p->spool, &out->spool);
	out->spool_max_bytes = p->o.spool_max_bytes;
}

static void timer_closed(uv_handle_t *h)
{
	ag_pipeline *p = h->data;
	p->timers_open--;
	maybe_free(p);
}

void ag_pipeline_close(ag_pipeline *p, void (*cb)(void *ud), void *ud)
{
	if (p == NULL) {
		if (cb != NULL)
			cb(ud);
		return;
	}
	p->closing = true;
	p->closed_cb = cb;
	p->closed_ud = ud;
	while (p->wait_head != NULL) {
		entry *e = p->wait_head;
		p->wait_head = e->next;
		answer(e, TL_ECLOSED, "agent is shutting down");
		free(e->data);
		free(e);
	}
	p->wait_tail = NULL;
	/* A commit not yet started is cancelled and its records were not kept. One already running
	 * cannot be stopped: its records are answered with its outcome when it ends. */
	if (p->running != NULL && uv_cancel((uv_req_t *)&p->running->req) == 0) {
		p->running->rc = tl_errf(&p->running->err, TL_ECLOSED, "agent is shutting down");
		for (entry *e = p->running->entries; e != NULL; e = e->next)
			answer(e, TL_ECLOSED, "agent is shutting down");
	}
	uv_close((uv_handle_t *)&p->tick, timer_closed);
	uv_close((uv_handle_t *)&p->sync_timer, timer_closed);
}
