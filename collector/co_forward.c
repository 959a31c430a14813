/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The forwarder thread (contract and delivery guarantee in co_forward.h).
 * One round: scan chunks from the cursor, decoding each into a capped arena
 * and taking spans until the batch is full (a chunk larger than a batch is
 * taken in several rounds, the cursor then pointing into it); resolve the
 * batch's resources in one short read transaction; group spans by resource
 * and scope; encode; push until a 2xx or a permanent refusal; write the
 * cursor. The thread sleeps on a condition variable that the writer's
 * commit hook signals, with a slow poll as a safety net.
 */
#include "co_forward.h"
#include "tl_be.h"

#include "store.pb-c.h"
#include "tl_arena.h"
#include "tl_log.h"
#include "tl_otlp_push.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef Threadline__Store__V1__Chunk st_chunk;
typedef Threadline__Store__V1__ChunkGroup st_group;

#define DEFAULT_BATCH_SPANS 1000
#define DEFAULT_BATCH_BYTES ((size_t)4 << 20)
#define DEFAULT_INITIAL_BACKOFF (500 * TL_NS_PER_MS)
#define DEFAULT_MAX_BACKOFF (30 * TL_NS_PER_S)
#define DEFAULT_TIMEOUT (30 * TL_NS_PER_S)
#define DEFAULT_STOP_GRACE (5 * TL_NS_PER_S)
#define DEFAULT_IDLE_POLL TL_NS_PER_S
/* Pause after a store error before the next round. */
#define STORE_ERROR_PAUSE TL_NS_PER_S
/*
 * The arena holds one batch decoded, plus the chunks it was cut from. A
 * stored chunk came from a batch the intake decoded under its own cap
 * (64 MiB wire, 256 MiB decoded), so it decodes under this one too.
 */
#define ARENA_BLOCK ((size_t)1 << 20)
#define ARENA_CHUNK_CAP ((size_t)256 << 20)
#define ARENA_RETAIN ((size_t)8 << 20)
/* Stop the scan callback: the batch is full. Not an error code. */
#define SCAN_FULL 1
#define CURSOR_KEY "next"
#define CURSOR_LEN 16

enum round_result { R_WORKED, R_IDLE, R_STOPPED };

typedef co_store_piece piece;

struct co_forward {
	co_store *store;
	co_forward_opts o;
	char *url;
	char **headers;
	MDB_dbi dbi;
	pthread_t thread;
	bool started, joined;

	/* Forwarder thread only. */
	tl_arena arena;
	piece *pieces; /* batch_spans slots: every piece holds at least one span */
	uint8_t *out;  /* the encoded request */
	size_t out_cap;
	uint64_t next_chunk, next_off; /* the cursor */
	bool cursor_dirty;             /* in memory ahead of the store (a write failed) */
	uint64_t batch_chunk;          /* the batch in flight starts in this chunk (for logs) */
	unsigned batch_failed;         /* its requests that failed so far */

	pthread_mutex_t mu;
	pthread_cond_t cv;      /* work arrived, or stop */
	pthread_cond_t exit_cv; /* the thread ended */
	uint64_t kicks;         /* commits signalled */
	bool stopping, exited;
	volatile int cancel;    /* tl_otlp_push's cancel flag */
	uint64_t sleep_until;   /* mono ns: tl_otlp_push is in a retry wait until then (0: not waiting) */
	co_forward_stats stats; /* under mu */
};

/* ---- small helpers ---- */

static struct timespec mono_ts(uint64_t ns)
{
	return (struct timespec){(time_t)(ns / TL_NS_PER_S), (long)(ns % TL_NS_PER_S)};
}

/* A value safe inside a logfmt "...": quotes and control characters become harmless. */
static void log_clean(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '"')
			*s = '\'';
		else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
	}
}

static bool header_ok(const char *h)
{
	const char *colon = strchr(h, ':');
	if (colon == NULL || colon == h)
		return false;
	for (const char *p = h; p < colon; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	for (const char *p = h; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n')
			return false;
	return true;
}

/* ---- the cursor ---- */

static int put_cursor(MDB_txn *txn, void *ud)
{
	co_forward *f = ud;
	uint8_t vb[CURSOR_LEN];
	tl_put_be64(vb, f->next_chunk);
	tl_put_be64(vb + 8, f->next_off);
	MDB_val k = {sizeof(CURSOR_KEY) - 1, (void *)CURSOR_KEY}, v = {CURSOR_LEN, vb};
	return mdb_put(txn, f->dbi, &k, &v, 0);
}

/* Writes the in-memory cursor. On failure it stays dirty and the next batch writes it again. */
static void save_cursor(co_forward *f)
{
	int rc = co_store_write(f->store, put_cursor, f);
	f->cursor_dirty = rc != 0;
	pthread_mutex_lock(&f->mu);
	f->stats.cursor_chunk = f->next_chunk;
	f->stats.cursor_offset = f->next_off;
	if (rc != 0)
		f->stats.cursor_failures++;
	pthread_mutex_unlock(&f->mu);
	if (rc != 0)
		tl_log(TL_LOG_ERROR, "forward.cursor_failed", "chunk=%llu offset=%llu err=\"%s\"",
		       (unsigned long long)f->next_chunk, (unsigned long long)f->next_off, tl_strerror(rc));
}

/* First and last chunk ids in `spans` (0, 0 when empty), inside txn. Returns an LMDB code. */
static int chunk_range(co_forward *f, MDB_txn *txn, uint64_t *first, uint64_t *last)
{
	*first = *last = 0;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, co_store_get_dbs(f->store)->spans, &c);
	if (rc != 0)
		return rc;
	MDB_val k, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	if (rc == 0 && k.mv_size == 8)
		*first = tl_get_be64(k.mv_data);
	if (rc == 0)
		rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size == 8)
		*last = tl_get_be64(k.mv_data);
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int load_cursor(co_forward *f, tl_errmsg *err)
{
	MDB_txn *txn;
	int rc = co_store_read_begin(f->store, &txn);
	if (rc != 0)
		return tl_errf(err, rc, "forward: reading the cursor: %s", tl_strerror(rc));
	MDB_val k = {sizeof(CURSOR_KEY) - 1, (void *)CURSOR_KEY}, v;
	int mrc = mdb_get(txn, f->dbi, &k, &v);
	bool found = mrc == 0 && v.mv_size == CURSOR_LEN;
	if (found) {
		f->next_chunk = tl_get_be64(v.mv_data);
		f->next_off = tl_get_be64((const uint8_t *)v.mv_data + 8);
	}
	uint64_t first = 0, last = 0;
	int crc = chunk_range(f, txn, &first, &last);
	co_store_read_end(f->store, txn);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return tl_errf(err, tl_err_from_lmdb(mrc), "forward: reading the cursor: %s", mdb_strerror(mrc));
	if (mrc == 0 && !found)
		tl_log(TL_LOG_WARN, "forward.cursor_invalid", "bytes=%zu action=start_from_first_chunk", v.mv_size);
	if (crc != 0)
		return tl_errf(err, tl_err_from_lmdb(crc), "forward: reading chunk ids: %s", mdb_strerror(crc));
	/*
	 * The store numbers chunks on from its last one: if every chunk after the
	 * cursor's was removed (retention) and the collector restarted, new ids
	 * start below the cursor. Follow them instead of skipping them.
	 */
	if (found && f->next_chunk > last + 1) {
		tl_log(TL_LOG_WARN, "forward.cursor_reset", "cursor=%llu last_chunk=%llu",
		       (unsigned long long)f->next_chunk, (unsigned long long)last);
		f->next_chunk = last + 1;
		f->next_off = 0;
	}
	(void)first;
	return 0;
}

/* ---- reading a batch ---- */

typedef struct scan {
	co_forward *f;
	uint64_t from_chunk, from_off; /* the cursor */
	uint64_t end_chunk, end_off;   /* just after the last span taken (or chunk skipped) */
	uint64_t first_chunk;          /* the chunk of the first span taken */
	size_t nspans, span_bytes, npieces;
	uint64_t skipped;
} scan;

static int on_chunk(uint64_t id, const uint8_t *val, size_t len, void *ud)
{
	scan *b = ud;
	co_forward *f = b->f;
	if (b->nspans >= f->o.batch_spans || b->span_bytes >= f->o.batch_bytes)
		return SCAN_FULL;
	st_chunk *ch = threadline__store__v1__chunk__unpack(tl_arena_allocator(&f->arena), len, val);
	if (ch == NULL) {
		if (b->nspans > 0)
			return SCAN_FULL; /* maybe only the arena: try again in a round of its own */
		tl_log(TL_LOG_ERROR, "forward.chunk_skipped", "chunk=%llu bytes=%zu err=\"does not decode\"",
		       (unsigned long long)id, len);
		b->skipped++;
		b->end_chunk = id + 1;
		b->end_off = 0;
		return 0;
	}
	uint64_t skip = id == b->from_chunk ? b->from_off : 0, idx = 0;
	for (size_t gi = 0; gi < ch->n_groups; gi++) {
		const st_group *g = ch->groups[gi];
		for (size_t i = 0; i < g->n_spans; i++, idx++) {
			if (idx < skip)
				continue;
			size_t sz = protobuf_c_message_get_packed_size(&g->spans[i]->base) + 6; /* tag + length */
			if (b->nspans > 0 && (b->nspans >= f->o.batch_spans || b->span_bytes + sz > f->o.batch_bytes)) {
				b->end_chunk = id;
				b->end_off = idx;
				return SCAN_FULL;
			}
			piece *p = b->npieces > 0 ? &f->pieces[b->npieces - 1] : NULL;
			if (p != NULL && p->g == g && p->from + p->n == i)
				p->n++;
			else
				f->pieces[b->npieces++] = (piece){.g = g, .from = (uint32_t)i, .n = 1};
			if (b->nspans++ == 0)
				b->first_chunk = id;
			b->span_bytes += sz;
		}
	}
	b->end_chunk = id + 1;
	b->end_off = 0;
	return 0;
}

/* ---- building the request ---- */

/*
 * Builds the request from f->pieces[0..np) into the arena and encodes it
 * into f->out. Resources are read in one read transaction. Returns 0 and
 * *len, TL_ELIMIT when the arena is full, or a store error.
 */
static int build_request(co_forward *f, size_t np, size_t *len)
{
	MDB_txn *txn;
	int rc = co_store_read_begin(f->store, &txn);
	if (rc != 0)
		return rc;
	tl_pb_resource_spans **rsv = NULL;
	size_t nr = 0, unreadable = 0;
	rc = co_store_regroup(f->store, txn, f->pieces, np, &f->arena, &rsv, &nr, &unreadable);
	co_store_read_end(f->store, txn);
	if (rc != 0)
		return rc;
	if (unreadable > 0)
		tl_log(TL_LOG_WARN, "forward.resource_unreadable", "resources=%zu action=sent_without_resource",
		       unreadable);
	tl_pb_export_req req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	req.resource_spans = rsv;
	req.n_resource_spans = nr;
	size_t n = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(&req);
	if (n > f->out_cap) {
		uint8_t *nb = realloc(f->out, n);
		if (nb == NULL)
			return -ENOMEM;
		f->out = nb;
		f->out_cap = n;
	}
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, f->out);
	return 0;
}

/* ---- pushing ---- */

static void on_retry(void *ud, unsigned attempt, long status, uint64_t wait_ns, const char *why)
{
	co_forward *f = ud;
	pthread_mutex_lock(&f->mu);
	f->stats.requests++; /* the attempt that just failed */
	f->stats.failures++;
	f->stats.retries++; /* the one after the wait */
	f->stats.failing = true;
	if (f->stopping)
		f->cancel = 1; /* nothing is in flight: no reason to wait */
	else
		f->sleep_until = tl_mono_ns() + wait_ns;
	pthread_mutex_unlock(&f->mu);
	/* Runs on the forwarder thread, inside tl_otlp_push. The first failure of a batch is worth a warning. */
	char w[256];
	snprintf(w, sizeof(w), "%s", why != NULL ? why : "");
	log_clean(w);
	tl_log(f->batch_failed++ == 0 ? TL_LOG_WARN : TL_LOG_DEBUG, "forward.failing",
	       "chunk=%llu attempt=%u status=%ld retry_in_ms=%llu why=\"%s\"", (unsigned long long)f->batch_chunk,
	       attempt, status, (unsigned long long)(wait_ns / TL_NS_PER_MS), w);
}

/* Waits up to ns unless stopping. Returns true when stopping. */
static bool pause_unless_stopping(co_forward *f, uint64_t ns)
{
	uint64_t until = tl_mono_ns() + ns;
	struct timespec ts = mono_ts(until);
	pthread_mutex_lock(&f->mu);
	while (!f->stopping && tl_mono_ns() < until)
		pthread_cond_timedwait(&f->cv, &f->mu, &ts);
	bool stop = f->stopping;
	pthread_mutex_unlock(&f->mu);
	return stop;
}

static uint64_t backoff(const co_forward *f, unsigned failures)
{
	uint64_t cap = f->o.initial_backoff_ns;
	for (unsigned i = 1; i < failures && cap < f->o.max_backoff_ns; i++)
		cap *= 2;
	if (cap > f->o.max_backoff_ns)
		cap = f->o.max_backoff_ns;
	return (uint64_t)((double)cap * ((double)randombytes_uniform(1000001) / 1e6));
}

enum delivery { D_OK, D_REJECTED, D_STOPPED };

/* Pushes f->out[0..len) until it is answered 2xx or refused for good, or the forwarder stops. */
static enum delivery deliver(co_forward *f, size_t len, size_t nspans, uint64_t first_chunk)
{
	tl_otlp_push_opts po = {.url = f->url,
	                        .headers = (const char *const *)f->headers,
	                        .n_headers = f->o.n_headers,
	                        .gzip = !f->o.no_gzip,
	                        .initial_backoff_ns = f->o.initial_backoff_ns,
	                        .max_backoff_ns = f->o.max_backoff_ns,
	                        .timeout_ns = f->o.timeout_ns,
	                        .on_retry = on_retry,
	                        .ud = f,
	                        .cancel = &f->cancel};
	f->batch_chunk = first_chunk;
	f->batch_failed = 0;
	for (unsigned calls_failed = 0;;) {
		pthread_mutex_lock(&f->mu);
		bool stop = f->stopping;
		pthread_mutex_unlock(&f->mu);
		if (stop)
			return D_STOPPED;
		tl_otlp_push_result res = {0};
		tl_errmsg err = {{0}};
		int rc = tl_otlp_push(&po, f->out, len, &res, &err);
		uint64_t rejected = rc == 0 && res.rejected_spans > 0 ? res.rejected_spans : 0;
		if (rejected > nspans)
			rejected = nspans;
		bool permanent = rc == TL_ELIMIT || (rc == TL_EREJECTED && res.status >= 400 && res.status < 500);
		pthread_mutex_lock(&f->mu);
		f->sleep_until = 0;
		if (res.attempts > 0) { /* the earlier attempts were counted by on_retry */
			f->stats.requests++;
			f->stats.failures += rc != 0 ? 1 : 0;
		}
		if (rc == 0) {
			f->stats.batches++;
			f->stats.spans += nspans - rejected;
			f->stats.rejected_spans += rejected;
			f->stats.bytes += len;
		} else if (permanent) {
			f->stats.rejected_batches++;
			f->stats.rejected_spans += nspans;
		} else if (rc != -ECANCELED) {
			f->stats.retries++; /* the call below repeats the batch */
		}
		f->stats.failing = rc != 0 && !permanent && rc != -ECANCELED;
		pthread_mutex_unlock(&f->mu);
		if (rc == 0) {
			if (f->batch_failed > 0)
				tl_log(TL_LOG_INFO, "forward.recovered", "chunk=%llu spans=%zu failed_requests=%u",
				       (unsigned long long)first_chunk, nspans, f->batch_failed);
			if (rejected > 0) {
				log_clean(res.message);
				tl_log(TL_LOG_WARN, "forward.partial",
				       "chunk=%llu spans=%zu rejected=%llu message=\"%s\"",
				       (unsigned long long)first_chunk, nspans, (unsigned long long)rejected,
				       res.message);
			}
			return D_OK;
		}
		if (rc == -ECANCELED)
			return D_STOPPED;
		log_clean(err.msg);
		if (permanent) {
			log_clean(res.message);
			tl_log(TL_LOG_ERROR, "forward.rejected",
			       "chunk=%llu spans=%zu bytes=%zu status=%ld action=skipped err=\"%s\" body=\"%s\"",
			       (unsigned long long)first_chunk, nspans, len, res.status, err.msg, res.message);
			return D_REJECTED;
		}
		f->batch_failed++;
		uint64_t wait = backoff(f, ++calls_failed);
		tl_log(TL_LOG_WARN, "forward.failing",
		       "chunk=%llu spans=%zu status=%ld attempts=%u retry_in_ms=%llu err=\"%s\"",
		       (unsigned long long)first_chunk, nspans, res.status, res.attempts,
		       (unsigned long long)(wait / TL_NS_PER_MS), err.msg);
		if (pause_unless_stopping(f, wait))
			return D_STOPPED;
	}
}

/* ---- the thread ---- */

static enum round_result one_round(co_forward *f)
{
	tl_arena_reset(&f->arena);
	scan b = {.f = f, .from_chunk = f->next_chunk, .from_off = f->next_off};
	b.end_chunk = b.from_chunk;
	b.end_off = b.from_off;
	int rc = co_store_scan_chunks(f->store, f->next_chunk, on_chunk, &b);
	if (rc != 0 && rc != SCAN_FULL) {
		tl_log(TL_LOG_ERROR, "forward.read_failed", "chunk=%llu err=\"%s\"", (unsigned long long)f->next_chunk,
		       tl_strerror(rc));
		return pause_unless_stopping(f, STORE_ERROR_PAUSE) ? R_STOPPED : R_IDLE;
	}
	if (b.skipped > 0) {
		pthread_mutex_lock(&f->mu);
		f->stats.chunks_skipped += b.skipped;
		pthread_mutex_unlock(&f->mu);
	}
	bool moved = b.end_chunk != f->next_chunk || b.end_off != f->next_off;
	if (b.nspans == 0) {
		if (!moved) {
			if (f->cursor_dirty)
				save_cursor(f);
			return R_IDLE;
		}
		f->next_chunk = b.end_chunk; /* only empty or undecodable chunks */
		f->next_off = b.end_off;
		save_cursor(f);
		return R_WORKED;
	}
	size_t len = 0;
	if ((rc = build_request(f, b.npieces, &len)) != 0) {
		tl_log(TL_LOG_ERROR, "forward.build_failed", "chunk=%llu spans=%zu err=\"%s\"",
		       (unsigned long long)b.first_chunk, b.nspans, tl_strerror(rc));
		return pause_unless_stopping(f, STORE_ERROR_PAUSE) ? R_STOPPED : R_IDLE;
	}
	enum delivery d = deliver(f, len, b.nspans, b.first_chunk);
	if (d == D_STOPPED)
		return R_STOPPED;
	tl_log(TL_LOG_DEBUG, "forward.batch", "from=%llu:%llu to=%llu:%llu spans=%zu bytes=%zu outcome=%s",
	       (unsigned long long)b.from_chunk, (unsigned long long)b.from_off, (unsigned long long)b.end_chunk,
	       (unsigned long long)b.end_off, b.nspans, len, d == D_OK ? "ok" : "rejected");
	f->next_chunk = b.end_chunk;
	f->next_off = b.end_off;
	save_cursor(f);
	return R_WORKED;
}

static void *forward_main(void *arg)
{
	co_forward *f = arg;
	for (;;) {
		pthread_mutex_lock(&f->mu);
		uint64_t seen = f->kicks;
		bool stop = f->stopping;
		pthread_mutex_unlock(&f->mu);
		if (stop)
			break;
		enum round_result r = one_round(f);
		if (r == R_STOPPED)
			break;
		if (r == R_WORKED)
			continue;
		/* Idle: sleep until a commit is signalled (or the poll), unless one came during the round. */
		uint64_t until = tl_mono_ns() + f->o.idle_poll_ns;
		struct timespec ts = mono_ts(until);
		pthread_mutex_lock(&f->mu);
		while (!f->stopping && f->kicks == seen && tl_mono_ns() < until)
			pthread_cond_timedwait(&f->cv, &f->mu, &ts);
		pthread_mutex_unlock(&f->mu);
	}
	if (f->cursor_dirty)
		save_cursor(f);
	tl_log(TL_LOG_INFO, "forward.stopped", "cursor=%llu:%llu", (unsigned long long)f->next_chunk,
	       (unsigned long long)f->next_off);
	pthread_mutex_lock(&f->mu);
	f->exited = true;
	pthread_cond_broadcast(&f->exit_cv);
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* ---- lifecycle ---- */

static int check_opts(co_forward_opts *o, tl_errmsg *err)
{
	if (o->url == NULL || (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0))
		return tl_errf(err, TL_EINVALID, "forward: '%s' is not an http:// or https:// URL",
		               o->url != NULL ? o->url : "");
	if (o->n_headers > CO_FORWARD_HEADERS_MAX)
		return tl_errf(err, TL_EINVALID, "forward: at most %d headers", CO_FORWARD_HEADERS_MAX);
	for (size_t i = 0; i < o->n_headers; i++)
		if (o->headers[i] == NULL || !header_ok(o->headers[i]))
			return tl_errf(err, TL_EINVALID, "forward: header '%s' is not 'Name: value'",
			               o->headers[i] != NULL ? o->headers[i] : "");
	if (o->batch_spans == 0)
		o->batch_spans = DEFAULT_BATCH_SPANS;
	if (o->batch_spans > CO_FORWARD_BATCH_SPANS_MAX)
		return tl_errf(err, TL_EINVALID, "forward: batch of %zu spans is above %d", o->batch_spans,
		               CO_FORWARD_BATCH_SPANS_MAX);
	if (o->batch_bytes == 0)
		o->batch_bytes = DEFAULT_BATCH_BYTES;
	if (o->batch_bytes < CO_FORWARD_BATCH_BYTES_MIN || o->batch_bytes > CO_FORWARD_BATCH_BYTES_MAX)
		return tl_errf(err, TL_EINVALID, "forward: batch of %zu bytes is outside 64 KiB..32 MiB",
		               o->batch_bytes);
	if (o->initial_backoff_ns == 0)
		o->initial_backoff_ns = DEFAULT_INITIAL_BACKOFF;
	if (o->max_backoff_ns == 0)
		o->max_backoff_ns = DEFAULT_MAX_BACKOFF;
	if (o->max_backoff_ns < o->initial_backoff_ns)
		o->max_backoff_ns = o->initial_backoff_ns;
	if (o->timeout_ns == 0)
		o->timeout_ns = DEFAULT_TIMEOUT;
	if (o->stop_grace_ns == 0)
		o->stop_grace_ns = DEFAULT_STOP_GRACE;
	if (o->idle_poll_ns == 0)
		o->idle_poll_ns = DEFAULT_IDLE_POLL;
	return 0;
}

int co_forward_start(co_store *s, const co_forward_opts *o, co_forward **out, tl_errmsg *err)
{
	*out = NULL;
	co_forward_opts oo = *o;
	int rc = check_opts(&oo, err);
	if (rc != 0)
		return rc;
	if (sodium_init() < 0)
		return tl_errf(err, -ENOMEM, "forward: sodium_init failed");
	co_forward *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return tl_errf(err, -ENOMEM, "forward: out of memory");
	f->store = s;
	f->o = oo;
	f->url = strdup(oo.url);
	f->headers = calloc(oo.n_headers ? oo.n_headers : 1, sizeof(char *));
	f->pieces = calloc(oo.batch_spans, sizeof(*f->pieces));
	bool ok = f->url != NULL && f->headers != NULL && f->pieces != NULL;
	for (size_t i = 0; ok && i < oo.n_headers; i++)
		ok = (f->headers[i] = strdup(oo.headers[i])) != NULL;
	f->o.url = NULL;
	f->o.headers = NULL;
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* tl_mono_ns() */
	pthread_cond_init(&f->cv, &ca);
	pthread_cond_init(&f->exit_cv, &ca);
	pthread_condattr_destroy(&ca);
	tl_arena_init(&f->arena, ARENA_BLOCK, ARENA_CHUNK_CAP + 4 * oo.batch_bytes);
	tl_arena_set_retain(&f->arena, ARENA_RETAIN);
	f->joined = true; /* nothing to join until the thread runs */
	if (!ok) {
		co_forward_free(f);
		return tl_errf(err, -ENOMEM, "forward: out of memory");
	}
	if ((rc = co_store_open_db(s, "fwd", &f->dbi)) != 0) {
		co_forward_free(f);
		return tl_errf(err, rc, "forward: opening the fwd database: %s", tl_strerror(rc));
	}
	if ((rc = load_cursor(f, err)) != 0) {
		co_forward_free(f);
		return rc;
	}
	f->stats.cursor_chunk = f->next_chunk;
	f->stats.cursor_offset = f->next_off;
	if ((rc = pthread_create(&f->thread, NULL, forward_main, f)) != 0) {
		co_forward_free(f);
		return tl_errf(err, -rc, "forward: starting the thread: %s", strerror(rc));
	}
	f->started = true;
	f->joined = false;
	tl_log(TL_LOG_INFO, "forward.started",
	       "url=%s headers=%zu cursor=%llu:%llu batch_spans=%zu batch_bytes=%zu gzip=%s", f->url, oo.n_headers,
	       (unsigned long long)f->next_chunk, (unsigned long long)f->next_off, oo.batch_spans, oo.batch_bytes,
	       oo.no_gzip ? "off" : "on");
	*out = f;
	return 0;
}

void co_forward_on_commit(void *forward)
{
	co_forward *f = forward;
	pthread_mutex_lock(&f->mu);
	f->kicks++;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

void co_forward_stats_get(co_forward *f, co_forward_stats *out)
{
	pthread_mutex_lock(&f->mu);
	*out = f->stats;
	pthread_mutex_unlock(&f->mu);
}

int co_forward_lag(co_forward *f, uint64_t *lag)
{
	*lag = 0;
	pthread_mutex_lock(&f->mu);
	uint64_t cur = f->stats.cursor_chunk;
	pthread_mutex_unlock(&f->mu);
	MDB_txn *txn;
	int rc = co_store_read_begin(f->store, &txn);
	if (rc != 0)
		return rc;
	uint64_t first = 0, last = 0;
	int mrc = chunk_range(f, txn, &first, &last);
	co_store_read_end(f->store, txn);
	if (mrc != 0)
		return tl_err_from_lmdb(mrc);
	if (cur < first)
		cur = first;
	if (last != 0 && last >= cur)
		*lag = last - cur + 1;
	return 0;
}

static void metric_head(tl_buf *b, const char *name, const char *type, const char *help)
{
	tl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int co_forward_metrics(co_forward *f, tl_buf *b)
{
	co_forward_stats s;
	co_forward_stats_get(f, &s);
	const struct {
		const char *name, *type, *help;
		uint64_t v;
	} m[] = {
	        {"threadline_collector_forward_spans_total", "counter", "Spans the OTLP endpoint accepted (2xx).",
	         s.spans},
	        {"threadline_collector_forward_bytes_total", "counter",
	         "Encoded request bytes of accepted batches, before gzip.", s.bytes},
	        {"threadline_collector_forward_requests_total", "counter", "HTTP requests made to the endpoint.",
	         s.requests},
	        {"threadline_collector_forward_retries_total", "counter", "Requests that repeated a batch.", s.retries},
	        {"threadline_collector_forward_failures_total", "counter",
	         "Requests that got no 2xx (no answer, 429, 5xx, 4xx).", s.failures},
	        {"threadline_collector_forward_rejected_spans_total", "counter",
	         "Spans the endpoint refused for good (a 4xx batch, or partial_success), not sent again.",
	         s.rejected_spans},
	        {"threadline_collector_forward_chunks_skipped_total", "counter",
	         "Stored chunks that did not decode and were skipped.", s.chunks_skipped},
	        {"threadline_collector_forward_cursor_write_failures_total", "counter",
	         "Cursor writes that failed (written again with the next batch).", s.cursor_failures},
	        {"threadline_collector_forward_cursor_chunk", "gauge", "The next chunk id to send.", s.cursor_chunk},
	        {"threadline_collector_forward_failing", "gauge",
	         "1 while the batch in flight keeps failing (endpoint down or refusing with 429/5xx).",
	         s.failing ? 1 : 0},
	};
	int rc = 0;
	metric_head(b, "threadline_collector_forward_batches_total", "counter",
	            "Batches sent, by outcome: ok (2xx) or rejected (4xx, skipped).");
	tl_buf_printf(b, "threadline_collector_forward_batches_total{outcome=\"ok\"} %llu\n",
	              (unsigned long long)s.batches);
	tl_buf_printf(b, "threadline_collector_forward_batches_total{outcome=\"rejected\"} %llu\n",
	              (unsigned long long)s.rejected_batches);
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		metric_head(b, m[i].name, m[i].type, m[i].help);
		rc = tl_buf_printf(b, "%s %llu\n", m[i].name, (unsigned long long)m[i].v);
	}
	uint64_t lag = 0;
	if (co_forward_lag(f, &lag) == 0) {
		metric_head(b, "threadline_collector_forward_lag_chunks", "gauge",
		            "Stored chunks not yet delivered (by chunk id, from the cursor to the newest).");
		rc = tl_buf_printf(b, "threadline_collector_forward_lag_chunks %llu\n", (unsigned long long)lag);
	}
	return rc;
}

void co_forward_stop(co_forward *f)
{
	pthread_mutex_lock(&f->mu);
	if (f->joined) {
		pthread_mutex_unlock(&f->mu);
		return;
	}
	f->stopping = true;
	if (f->sleep_until != 0 && tl_mono_ns() < f->sleep_until)
		f->cancel = 1; /* in a retry wait: no request in flight */
	pthread_cond_broadcast(&f->cv);
	uint64_t deadline = tl_mono_ns() + f->o.stop_grace_ns;
	struct timespec ts = mono_ts(deadline);
	while (!f->exited && tl_mono_ns() < deadline)
		pthread_cond_timedwait(&f->exit_cv, &f->mu, &ts);
	if (!f->exited) {
		f->cancel = 1;
		tl_log(TL_LOG_WARN, "forward.stop_cancelled", "grace_ms=%llu cursor=%llu:%llu",
		       (unsigned long long)(f->o.stop_grace_ns / TL_NS_PER_MS),
		       (unsigned long long)f->stats.cursor_chunk, (unsigned long long)f->stats.cursor_offset);
	}
	f->joined = true;
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
}

void co_forward_free(co_forward *f)
{
	if (f == NULL)
		return;
	co_forward_stop(f);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	pthread_cond_destroy(&f->exit_cv);
	tl_arena_fini(&f->arena);
	if (f->headers != NULL)
		for (size_t i = 0; i < f->o.n_headers; i++)
			free(f->headers[i]);
	free(f->headers);
	free(f->pieces);
	free(f->out);
	free(f->url);
	free(f);
}
