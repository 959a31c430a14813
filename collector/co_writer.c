/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Group commit on one thread. A commit that fails for any reason but a full
 * store is retried batch by batch, so one batch that LMDB will not take
 * cannot hold every other batch of its group hostage.
 */
#include "co_writer.h"

#include "tl_log.h"
#include "tl_time.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define DEFAULT_QUEUE_MAX ((size_t)64 << 20)
#define DEFAULT_GROUP_BATCHES 256
#define DEFAULT_GROUP_BYTES ((size_t)32 << 20)

struct co_writer {
	co_store *store;
	co_writer_opts o;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	co_write_req *head, *tail;
	size_t queued_bytes; /* queued + being committed */
	bool stopping, started, joined;
	pthread_mutex_t room_mu; /* held while room_fn runs */
	void (*room_fn)(void *ud);
	void *room_ud;
	void (*commit_fn)(void *ud); /* under room_mu too */
	void *commit_ud;
	co_batch **group; /* group_max_batches slots */
	co_write_req **reqs;
	uint64_t dirty_since; /* mono ns of the first commit not yet fsynced; 0 when none */
	uint64_t syncs, sync_failures;
};

static void complete(co_writer *w, co_write_req **reqs, size_t n, int rc)
{
	size_t freed = 0;
	for (size_t i = 0; i < n; i++) {
		co_write_req *r = reqs[i];
		freed += r->bytes;
		if (rc != 0)
			r->batch.status = CO_BATCH_RETRY;
		r->done(r, rc);
	}
	pthread_mutex_lock(&w->mu);
	w->queued_bytes -= freed;
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_lock(&w->room_mu);
	if (rc == 0 && w->commit_fn != NULL)
		w->commit_fn(w->commit_ud);
	if (w->room_fn != NULL)
		w->room_fn(w->room_ud);
	pthread_mutex_unlock(&w->room_mu);
}

static void commit_group(co_writer *w, size_t n)
{
	uint64_t t0 = tl_mono_ns();
	int rc = co_store_commit(w->store, w->group, n, tl_now_ns());
	if (rc == 0 && w->o.sync_ms > 0 && w->dirty_since == 0)
		w->dirty_since = tl_mono_ns();
	if (rc == 0) {
		tl_log(TL_LOG_DEBUG, "writer.commit", "batches=%zu ms=%.3f", n, (double)(tl_mono_ns() - t0) / 1e6);
		complete(w, w->reqs, n, 0);
		return;
	}
	if (rc == TL_EFULL || n == 1) {
		tl_log(TL_LOG_ERROR, "writer.commit_failed", "batches=%zu err=\"%s\"", n, tl_strerror(rc));
		complete(w, w->reqs, n, rc);
		return;
	}
	tl_log(TL_LOG_WARN, "writer.commit_failed", "batches=%zu err=\"%s\" retry=one_by_one", n, tl_strerror(rc));
	for (size_t i = 0; i < n; i++) {
		int one = co_store_commit(w->store, &w->group[i], 1, tl_now_ns());
		if (one != 0)
			tl_log(TL_LOG_ERROR, "writer.commit_failed", "batches=1 seq=%llu err=\"%s\"",
			       (unsigned long long)w->group[i]->seq, tl_strerror(one));
		complete(w, &w->reqs[i], 1, one);
	}
}

/* fsyncs commits made without one (sync_ms mode). Called without w->mu. */
static void sync_now(co_writer *w)
{
	int rc = co_store_sync(w->store);
	pthread_mutex_lock(&w->mu);
	if (rc == 0) {
		w->syncs++;
		w->dirty_since = 0;
	} else {
		w->sync_failures++;
	}
	pthread_mutex_unlock(&w->mu);
	if (rc != 0)
		tl_log(TL_LOG_ERROR, "writer.sync_failed", "err=\"%s\"", tl_strerror(rc));
}

static void *writer_main(void *arg)
{
	co_writer *w = arg;
	uint64_t interval = w->o.sync_ms * TL_NS_PER_MS;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (w->head == NULL && !w->stopping) {
			if (w->dirty_since == 0) {
				pthread_cond_wait(&w->cv, &w->mu);
				continue;
			}
			uint64_t due = w->dirty_since + interval;
			if (tl_mono_ns() >= due)
				break;
			struct timespec ts = {(time_t)(due / TL_NS_PER_S), (long)(due % TL_NS_PER_S)};
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		}
		if (w->dirty_since != 0 && tl_mono_ns() >= w->dirty_since + interval) {
			pthread_mutex_unlock(&w->mu);
			sync_now(w);
			continue;
		}
		if (w->head == NULL) {
			pthread_mutex_unlock(&w->mu);
			if (w->dirty_since != 0)
				sync_now(w);
			break;
		}
		size_t n = 0, bytes = 0;
		while (w->head != NULL && n < w->o.group_max_batches &&
		       (n == 0 || bytes + w->head->bytes <= w->o.group_max_bytes)) {
			co_write_req *r = w->head;
			w->head = r->next;
			r->next = NULL;
			bytes += r->bytes;
			w->reqs[n] = r;
			w->group[n] = &r->batch;
			n++;
		}
		if (w->head == NULL)
			w->tail = NULL;
		pthread_mutex_unlock(&w->mu);
		commit_group(w, n);
	}
	return NULL;
}

int co_writer_start(co_store *s, const co_writer_opts *o, co_writer **out)
{
	*out = NULL;
	co_writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->store = s;
	if (o != NULL)
		w->o = *o;
	if (w->o.queue_max_bytes == 0)
		w->o.queue_max_bytes = DEFAULT_QUEUE_MAX;
	if (w->o.group_max_batches == 0)
		w->o.group_max_batches = DEFAULT_GROUP_BATCHES;
	if (w->o.group_max_bytes == 0)
		w->o.group_max_bytes = DEFAULT_GROUP_BYTES;
	w->group = calloc(w->o.group_max_batches, sizeof(*w->group));
	w->reqs = calloc(w->o.group_max_batches, sizeof(*w->reqs));
	if (w->group == NULL || w->reqs == NULL) {
		free(w->group);
		free(w->reqs);
		free(w);
		return -ENOMEM;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->room_mu, NULL);
	/* tl_mono_ns() is CLOCK_MONOTONIC: the periodic fsync's timed wait uses the same clock. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&w->thread, NULL, writer_main, w);
	if (rc != 0) {
		w->joined = true;
		co_writer_free(w);
		return -rc;
	}
	w->started = true;
	*out = w;
	return 0;
}

int co_writer_submit(co_writer *w, co_write_req *r)
{
	pthread_mutex_lock(&w->mu);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		return TL_ECLOSED;
	}
	r->next = NULL;
	r->batch.status = CO_BATCH_PENDING;
	if (w->tail != NULL)
		w->tail->next = r;
	else
		w->head = r;
	w->tail = r;
	w->queued_bytes += r->bytes;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

void co_writer_set_room_fn(co_writer *w, void (*fn)(void *ud), void *ud)
{
	pthread_mutex_lock(&w->room_mu);
	w->room_fn = fn;
	w->room_ud = ud;
	pthread_mutex_unlock(&w->room_mu);
}

void co_writer_set_commit_fn(co_writer *w, void (*fn)(void *ud), void *ud)
{
	pthread_mutex_lock(&w->room_mu);
	w->commit_fn = fn;
	w->commit_ud = ud;
	pthread_mutex_unlock(&w->room_mu);
}

bool co_writer_has_room(co_writer *w)
{
	pthread_mutex_lock(&w->mu);
	bool room = w->queued_bytes < w->o.queue_max_bytes;
	pthread_mutex_unlock(&w->mu);
	return room;
}

size_t co_writer_queued_bytes(co_writer *w)
{
	pthread_mutex_lock(&w->mu);
	size_t n = w->queued_bytes;
	pthread_mutex_unlock(&w->mu);
	return n;
}

void co_writer_sync_stats(co_writer *w, uint64_t *syncs, uint64_t *failures)
{
	pthread_mutex_lock(&w->mu);
	*syncs = w->syncs;
	*failures = w->sync_failures;
	pthread_mutex_unlock(&w->mu);
}

void co_writer_stop(co_writer *w)
{
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	bool join = w->started && !w->joined;
	w->joined = true;
	pthread_mutex_unlock(&w->mu);
	if (join)
		pthread_join(w->thread, NULL);
}

void co_writer_free(co_writer *w)
{
	if (w == NULL)
		return;
	co_writer_stop(w);
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->room_mu);
	pthread_cond_destroy(&w->cv);
	free(w->group);
	free(w->reqs);
	free(w);
}
