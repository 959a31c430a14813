/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's pipeline end to end inside one process: a libuv loop driving
 * a real spool (LMDB in a temporary directory), a real sender, and the
 * pipeline between them, talking over loopback to a fake collector (an nng
 * REP socket on its own thread that decodes each Batch and answers an Ack
 * chosen per sequence number: stored, rejected, or no answer at all).
 *
 * Covered: group commit, delivery in order exactly once, restart from a
 * spool that already holds batches, refused batches moved aside, lost
 * requests and lost acks (stored once), a failed spool transaction, the
 * three submit bounds (spool full, record larger than the spool, too much
 * pending) and the spool bound itself, the collector coming back, periodic
 * fsync, request deadlines, and shutdown with a commit queued, running or
 * batches in flight.
 *
 * A commit is held "running" by a child process that keeps LMDB's writer
 * lock on the spool; the pipeline's transaction then blocks in the thread
 * pool until the child lets go.
 */
#include "ag_pipeline.h"
#include "ag_sender.h"
#include "ag_spool.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <lmdb.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/*
 * Criterion runs each test in a child process whose exit-time leak report
 * does not fail the test, so tests ask LeakSanitizer themselves once
 * everything is closed.
 */
static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (report above)");
#endif
}

/* ---- temporary directory ---- */

static char dir[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* ---- records: payload bytes derived from their index, answers counted per index ---- */

#define MAXREC 2048

static int n_answers[MAXREC];
static int status_of[MAXREC];
static size_t answered;
static char last_msg[256]; /* the message of the last answer */
static size_t len_of[MAXREC];

static void on_done(void *ud, int status, const char *msg)
{
	intptr_t i = (intptr_t)ud;
	cr_assert(i >= 0 && i < MAXREC);
	cr_assert_not_null(msg);
	n_answers[i]++;
	status_of[i] = status;
	answered++;
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

static uint8_t *make_rec(int i, size_t len)
{
	cr_assert_geq(len, 4);
	uint8_t *p = malloc(len);
	cr_assert_not_null(p);
	p[0] = (uint8_t)(i >> 24);
	p[1] = (uint8_t)(i >> 16);
	p[2] = (uint8_t)(i >> 8);
	p[3] = (uint8_t)i;
	for (size_t j = 4; j < len; j++)
		p[j] = (uint8_t)(i * 13 + j);
	return p;
}

/* Checks that data is record i's payload; returns i, or -1. */
static int rec_index(const uint8_t *data, size_t len)
{
	if (len < 4)
		return -1;
	int i = (int)((uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3]);
	if (i < 0 || i >= MAXREC || len != len_of[i])
		return -1;
	for (size_t j = 4; j < len; j++)
		if (data[j] != (uint8_t)(i * 13 + j))
			return -1;
	return i;
}

/* ---- the fake collector ---- */

#define FC_MAXSEQ 4096

typedef struct fc_rec {
	uint64_t seq;
	int idx; /* rec_index of its bytes, -1 if they are not a record of ours */
	uint64_t accepted_ns;
} fc_rec;

typedef struct fake_collector {
	nng_socket sock;
	bool up;
	int port;
	pthread_t th;
	pthread_mutex_t mu;
	/*
	 * Per seq: answer REJECTED; answer nothing to the first drop[seq]
	 * receptions (as if the request was lost); store but answer nothing the
	 * first lose_ack[seq] times (as if the collector died after its commit).
	 */
	bool reject[FC_MAXSEQ];
	unsigned drop[FC_MAXSEQ];
	unsigned lose_ack[FC_MAXSEQ];
	/* what arrived */
	unsigned received[FC_MAXSEQ]; /* every reception, retransmissions included */
	bool stored[FC_MAXSEQ];
	size_t batch_bytes[FC_MAXSEQ]; /* sum of the record bodies of each stored batch */
	size_t batch_records[FC_MAXSEQ];
	uint64_t order[FC_MAXSEQ]; /* seqs in the order they were stored */
	size_t norder;
	fc_rec recs[MAXREC];
	size_t nrecs;
	uint8_t agent_id[16];
	bool have_id;
	char problem[256]; /* the first thing that was wrong with what arrived */
} fake_collector;

static fake_collector FC;

static void fc_problem(const char *what, uint64_t seq)
{
	if (FC.problem[0] == '\0')
		snprintf(FC.problem, sizeof(FC.problem), "%s (seq %llu)", what, (unsigned long long)seq);
}

/* Handles one request under FC.mu; returns false to answer nothing. */
static bool fc_handle(const tl_pb_batch *b, tl_pb_ack *ack)
{
	uint64_t seq = b->seq;
	ack->seq = seq;
	ack->agent_id = b->agent_id;
	if (b->agent_id.len != 16) {
		fc_problem("agent id is not 16 bytes", seq);
	} else if (!FC.have_id) {
		memcpy(FC.agent_id, b->agent_id.data, 16);
		FC.have_id = true;
	} else if (memcmp(FC.agent_id, b->agent_id.data, 16) != 0) {
		fc_problem("agent id changed", seq);
	}
	if (seq == 0 || seq >= FC_MAXSEQ) {
		fc_problem("seq out of range", seq);
		ack->status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED;
		ack->message = "seq out of range";
		return true;
	}
	FC.received[seq]++;
	if (FC.drop[seq] > 0) {
		FC.drop[seq]--;
		return false;
	}
	if (FC.reject[seq]) {
		ack->status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED;
		ack->message = "fake collector: cannot decode this batch";
		return true;
	}
	if (FC.stored[seq]) {
		ack->status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_DUPLICATE;
		return true;
	}
	for (size_t i = 0; i < b->n_records; i++) {
		const tl_pb_record *r = b->records[i];
		if (r->body_case != THREADLINE__V1__RECORD__BODY_OTLP_TRACES) {
			fc_problem("record without otlp_traces", seq);
			continue;
		}
		if (FC.nrecs == MAXREC) {
			fc_problem("too many records", seq);
			break;
		}
		fc_rec *fr = &FC.recs[FC.nrecs++];
		fr->seq = seq;
		fr->idx = rec_index(r->otlp_traces.data, r->otlp_traces.len);
		fr->accepted_ns = r->accepted_unix_nano;
		if (fr->idx < 0)
			fc_problem("record bytes are not what was submitted", seq);
		FC.batch_bytes[seq] += r->otlp_traces.len;
	}
	FC.batch_records[seq] = b->n_records;
	FC.stored[seq] = true;
	FC.order[FC.norder++] = seq;
	ack->status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK;
	if (FC.lose_ack[seq] > 0) {
		FC.lose_ack[seq]--;
		return false;
	}
	return true;
}

static void *fc_main(void *arg)
{
	(void)arg;
	for (;;) {
		nng_msg *m;
		int rv = nng_recvmsg(FC.sock, &m, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv != 0)
			continue;
		tl_pb_batch *b = threadline__v1__batch__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		tl_pb_ack ack = THREADLINE__V1__ACK__INIT;
		bool reply = true;
		pthread_mutex_lock(&FC.mu);
		if (b == NULL) {
			fc_problem("undecodable batch", 0);
			ack.status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED;
			ack.message = "undecodable";
		} else {
			reply = fc_handle(b, &ack);
		}
		pthread_mutex_unlock(&FC.mu);
		nng_msg_clear(m);
		if (reply) {
			size_t n = threadline__v1__ack__get_packed_size(&ack);
			if (nng_msg_realloc(m, n) == 0) {
				threadline__v1__ack__pack(&ack, nng_msg_body(m));
				if (nng_sendmsg(FC.sock, m, 0) == 0)
					m = NULL;
			}
		}
		if (m != NULL)
			nng_msg_free(m);
		if (b != NULL)
			threadline__v1__batch__free_unpacked(b, NULL);
	}
	return NULL;
}

/* Starts listening on port (0: any free port; FC.port says which). */
static void fc_start(int port)
{
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	cr_assert_eq(nng_rep0_open(&FC.sock), 0);
	cr_assert_eq(nng_socket_set_size(FC.sock, NNG_OPT_RECVMAXSZ, 64 << 20), 0);
	nng_listener l;
	int rv = nng_listen(FC.sock, url, &l, 0);
	cr_assert_eq(rv, 0, "listen %s: %s", url, nng_strerror(rv));
	cr_assert_eq(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &FC.port), 0);
	cr_assert_gt(FC.port, 0);
	cr_assert_eq(pthread_create(&FC.th, NULL, fc_main, NULL), 0);
	FC.up = true;
}

static void fc_stop(void)
{
	if (!FC.up)
		return;
	nng_close(FC.sock);
	pthread_join(FC.th, NULL);
	FC.up = false;
}

/* A port nobody listens on (now): the collector is "absent" until fc_start(port). */
static int fc_reserve_port(void)
{
	fc_start(0);
	int port = FC.port;
	fc_stop();
	return port;
}

static size_t fc_nrecs(void)
{
	pthread_mutex_lock(&FC.mu);
	size_t n = FC.nrecs;
	pthread_mutex_unlock(&FC.mu);
	return n;
}

static unsigned fc_received(uint64_t seq)
{
	pthread_mutex_lock(&FC.mu);
	unsigned n = FC.received[seq];
	pthread_mutex_unlock(&FC.mu);
	return n;
}

/*
 * Checks what the collector stored: exactly the records want[0..n), each
 * once; when once (no resends expected), also in that order, each batch
 * stored in increasing seq order and received once; nothing wrong on the wire.
 */
static void fc_check(const int *want, size_t n, bool once, const uint8_t agent_id[16])
{
	pthread_mutex_lock(&FC.mu);
	cr_assert_eq(FC.problem[0], '\0', "collector: %s", FC.problem);
	cr_assert_eq(FC.nrecs, n, "collector stored %zu records, want %zu", FC.nrecs, n);
	if (once) {
		for (size_t k = 0; k < n; k++)
			cr_assert_eq(FC.recs[k].idx, want[k], "stored record %zu is #%d, want #%d", k, FC.recs[k].idx,
			             want[k]);
		for (size_t k = 1; k < FC.norder; k++)
			cr_assert_gt(FC.order[k], FC.order[k - 1], "batches stored out of order: %llu after %llu",
			             (unsigned long long)FC.order[k], (unsigned long long)FC.order[k - 1]);
	} else {
		/* Batches resent after a failure (each window slot backs off with its own jitter) may arrive
		 * in any order: the store must hold each record exactly once, not in order. */
		for (size_t k = 0; k < n; k++) {
			size_t seen = 0;
			for (size_t j = 0; j < n; j++)
				seen += FC.recs[j].idx == want[k];
			cr_assert_eq(seen, 1, "record #%d stored %zu times", want[k], seen);
		}
	}
	for (size_t k = 0; k < n; k++)
		cr_assert_neq(FC.recs[k].accepted_ns, 0, "record %zu has no accepted time", k);
	if (once)
		for (size_t k = 0; k < FC.norder; k++)
			cr_assert_eq(FC.received[FC.order[k]], 1, "seq %llu received %u times",
			             (unsigned long long)FC.order[k], FC.received[FC.order[k]]);
	if (n > 0) {
		cr_assert(FC.have_id);
		cr_assert_eq(memcmp(FC.agent_id, agent_id, 16), 0, "batches carry another agent id");
	}
	pthread_mutex_unlock(&FC.mu);
}

static void fc_check_range(int from, int to, bool once, const uint8_t agent_id[16])
{
	int want[MAXREC];
	size_t n = 0;
	for (int i = from; i < to; i++)
		want[n++] = i;
	fc_check(want, n, once, agent_id);
}

/* ---- the agent side ---- */

typedef struct harness {
	uv_loop_t loop;
	ag_spool *spool;
	ag_sender *sender;
	ag_pipeline *p;
} harness;

typedef struct h_opts {
	int port;
	size_t spool_max;          /* 0: default */
	size_t pipeline_spool_max; /* 0: spool_max */
	bool periodic;             /* spool without fsync per commit, pipeline syncs every sync_ms */
	uint64_t sync_ms;          /* with periodic */
	uint64_t ack_timeout_ms;
	size_t batch_max_bytes; /* 0: default */
	size_t max_pending;     /* 0: default */
	uint64_t deadline_ms;   /* 0: default */
} h_opts;

static void h_open(harness *h, const h_opts *ho)
{
	memset(h, 0, sizeof(*h));
	cr_assert_eq(uv_loop_init(&h->loop), 0);
	ag_spool_opts so;
	ag_spool_opts_default(&so);
	so.dir = dir;
	so.max_bytes = ho->spool_max ? ho->spool_max : (size_t)64 << 20; /* reserved on disk at open */
	so.sync_each_commit = !ho->periodic;
	tl_errmsg err = {{0}};
	int rc = ag_spool_open(&so, &h->spool, &err);
	cr_assert_eq(rc, 0, "spool: %s (%s)", tl_strerror(rc), err.msg);

	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", ho->port);
	ag_sender_opts sd;
	ag_sender_opts_default(&sd);
	sd.collector_url = url;
	sd.window = 4;
	sd.ack_timeout_ms = ho->ack_timeout_ms ? ho->ack_timeout_ms : 2000;
	sd.backoff_min_ms = 20;
	sd.backoff_max_ms = 200;
	rc = ag_sender_new(&h->loop, &sd, &h->sender);
	cr_assert_eq(rc, 0, "sender: %s", tl_strerror(rc));

	ag_pipeline_opts po;
	ag_pipeline_opts_default(&po);
	if (ho->batch_max_bytes)
		po.batch_max_bytes = ho->batch_max_bytes;
	if (ho->max_pending)
		po.max_pending_bytes = ho->max_pending;
	po.spool_max_bytes = ho->pipeline_spool_max ? ho->pipeline_spool_max : so.max_bytes;
	if (ho->deadline_ms)
		po.request_deadline_ms = ho->deadline_ms;
	po.sync_interval_ms = ho->periodic ? ho->sync_ms : 0;
	rc = ag_pipeline_new(&h->loop, h->spool, h->sender, &po, &h->p);
	cr_assert_eq(rc, 0, "pipeline: %s", tl_strerror(rc));
}

static uint64_t now_ms(void)
{
	return tl_mono_ns() / TL_NS_PER_MS;
}

/* Runs the loop without blocking until cond holds; fails the test after ms milliseconds. */
#define RUN_UNTIL(h, cond, ms)                                                                                         \
	do {                                                                                                           \
		uint64_t end_ = now_ms() + (ms);                                                                       \
		for (;;) {                                                                                             \
			uv_run(&(h)->loop, UV_RUN_NOWAIT);                                                             \
			if (cond)                                                                                      \
				break;                                                                                 \
			cr_assert_lt(now_ms(), end_, "timed out after %d ms waiting for %s", (int)(ms), #cond);        \
			usleep(1000);                                                                                  \
		}                                                                                                      \
	} while (0)

static void run_for(harness *h, uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	while (now_ms() < end) {
		uv_run(&h->loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
}

/* Closes sender and pipeline, runs the loop until nothing is left, and checks that it closes cleanly. */
static void h_close_loop(harness *h)
{
	ag_sender_close(h->sender);
	ag_pipeline_close(h->p, NULL, NULL);
	uint64_t end = now_ms() + 10000;
	while (uv_run(&h->loop, UV_RUN_NOWAIT) != 0) {
		cr_assert_lt(now_ms(), end, "the loop did not wind down");
		usleep(1000);
	}
	cr_assert_eq(uv_loop_close(&h->loop), 0, "handles left open on the loop");
}

static void h_close(harness *h)
{
	h_close_loop(h);
	ag_spool_close(h->spool);
	assert_no_leaks();
}

static int submit(harness *h, int i, size_t len, uint32_t nspans)
{
	cr_assert_lt(i, MAXREC);
	len_of[i] = len;
	uint8_t *data = make_rec(i, len);
	int rc = ag_pipeline_submit(h->p, AG_RECORD_OTLP_TRACES, data, len, nspans, on_done, (void *)(intptr_t)i);
	if (rc != 0)
		free(data);
	return rc;
}

static size_t vlen(int i)
{
	return 40 + (size_t)(i * 37 % 300);
}

static void stats(harness *h, ag_pipeline_stats *st)
{
	ag_pipeline_stats_get(h->p, st);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tl_pipe_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	memset(&FC, 0, sizeof(FC));
	pthread_mutex_init(&FC.mu, NULL);
	memset(n_answers, 0, sizeof(n_answers));
	answered = 0;
	signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
	fc_stop();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 60);

/* ---- a child process that holds LMDB's writer lock on the spool ---- */

typedef struct locker {
	pid_t pid;
	int to_child, from_child;
} locker;

/* Forks the child; it waits for locker_take before touching the spool. Call before opening anything. */
static void locker_fork(locker *lk)
{
	int down[2], up[2];
	cr_assert_eq(pipe(down), 0);
	cr_assert_eq(pipe(up), 0);
	lk->pid = fork();
	cr_assert_geq(lk->pid, 0);
	if (lk->pid == 0) {
		close(down[1]);
		close(up[0]);
		char c;
		if (read(down[0], &c, 1) != 1)
			_exit(1);
		MDB_env *env;
		MDB_txn *txn;
		if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0 ||
		    mdb_env_open(env, dir, 0, 0640) != 0 || mdb_txn_begin(env, NULL, 0, &txn) != 0) {
			c = 'n';
			(void)!write(up[1], &c, 1);
			_exit(2);
		}
		c = 'y';
		(void)!write(up[1], &c, 1);
		(void)!read(down[0], &c, 1); /* a byte, or EOF when the test dies */
		mdb_txn_abort(txn);
		mdb_env_close(env);
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	lk->to_child = down[1];
	lk->from_child = up[0];
}

/* The spool exists: the child opens it and begins a write transaction. */
static void locker_take(locker *lk)
{
	char c = 0;
	cr_assert_eq(write(lk->to_child, "g", 1), 1);
	cr_assert_eq(read(lk->from_child, &c, 1), 1);
	cr_assert_eq(c, 'y', "the child could not take the writer lock");
}

static void locker_release(locker *lk)
{
	cr_assert_eq(write(lk->to_child, "r", 1), 1);
	int status;
	cr_assert_eq(waitpid(lk->pid, &status, 0), lk->pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "locker child status %d", status);
	close(lk->to_child);
	close(lk->from_child);
}

/* Which record indexes the spool holds (it must be closed by the harness first). */
static size_t spooled_records(int *idx, size_t cap)
{
	ag_spool_opts so;
	ag_spool_opts_default(&so);
	so.dir = dir;
	ag_spool *s;
	tl_errmsg err = {{0}};
	int rc = ag_spool_open(&so, &s, &err);
	cr_assert_eq(rc, 0, "reopen: %s", err.msg);
	size_t n = 0;
	uint64_t after = 0, seq;
	uint8_t *data;
	size_t len;
	uint32_t nspans;
	while (ag_spool_read_next(s, after, &seq, &data, &len, &nspans) == 0) {
		tl_pb_batch *b = threadline__v1__batch__unpack(NULL, len, data);
		cr_assert_not_null(b, "spooled batch %llu does not decode", (unsigned long long)seq);
		cr_assert_eq(b->seq, seq);
		for (size_t i = 0; i < b->n_records; i++) {
			cr_assert_lt(n, cap);
			idx[n++] = rec_index(b->records[i]->otlp_traces.data, b->records[i]->otlp_traces.len);
		}
		threadline__v1__batch__free_unpacked(b, NULL);
		free(data);
		after = seq;
	}
	ag_spool_close(s);
	return n;
}

/* ---- group commit and delivery ---- */

Test(pipeline, submits_in_one_turn_share_commits_and_arrive_once_in_order)
{
	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port, .batch_max_bytes = 2048};
	h_open(&h, &ho);
	uint8_t id[16];
	memcpy(id, ag_spool_agent_id(h.spool), 16);

	uint64_t spans = 0;
	for (int i = 0; i < 200; i++) {
		int rc = submit(&h, i, vlen(i), (uint32_t)(i % 3 + 1));
		cr_assert_eq(rc, 0, "submit %d: %s", i, tl_strerror(rc));
		spans += (uint64_t)(i % 3 + 1);
	}
	cr_assert_eq(answered, 0, "answered before any commit ran");
	RUN_UNTIL(&h, answered == 200, 10000);
	ag_pipeline_stats st;
	stats(&h, &st);
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(n_answers[i], 1, "record %d answered %d times", i, n_answers[i]);
		cr_assert_eq(status_of[i], 0, "record %d: %s", i, tl_strerror(status_of[i]));
	}
	cr_assert_eq(st.records_committed, 200);
	cr_assert_eq(st.spans_committed, spans);
	cr_assert_leq(st.commits, 10, "%llu commits for 200 records in one turn", (unsigned long long)st.commits);
	cr_assert_geq(st.batches_spooled, 10, "2 KiB batches: %llu batches for ~38 KiB",
	              (unsigned long long)st.batches_spooled);
	cr_assert_eq(st.records_failed, 0);
	cr_assert_eq(st.records_timed_out, 0);
	cr_assert_eq(st.syncs, 0, "fsync-each-commit mode makes no periodic syncs");

	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 10000);
	fc_check_range(0, 200, true, id);
	stats(&h, &st);
	cr_assert_eq(st.batches_acked, st.batches_spooled);
	cr_assert_eq(st.spans_delivered, spans);
	cr_assert_eq(st.batches_refused, 0);
	cr_assert_eq(st.spool.batches, 0);
	cr_assert_eq(st.spool.bytes, 0);
	cr_assert_eq(st.spool.spans, 0);
	cr_assert_eq(st.pending_bytes, 0);
	cr_assert_eq(st.pending_records, 0);
	cr_assert_eq(st.spool.next_seq, st.batches_spooled + 1);
	/* Batches respect batch_max_bytes (a batch holds more than one record only if they fit). */
	pthread_mutex_lock(&FC.mu);
	for (size_t k = 0; k < FC.norder; k++) {
		uint64_t q = FC.order[k];
		cr_assert(FC.batch_records[q] == 1 || FC.batch_bytes[q] <= 2048, "batch %llu: %zu records, %zu bytes",
		          (unsigned long long)q, FC.batch_records[q], FC.batch_bytes[q]);
	}
	pthread_mutex_unlock(&FC.mu);
	h_close(&h);
}

Test(pipeline, batches_already_in_the_spool_are_sent_at_start)
{
	/* A previous run left three batches (two records each) in the spool. */
	ag_spool_opts so;
	ag_spool_opts_default(&so);
	so.dir = dir;
	ag_spool *s;
	tl_errmsg err = {{0}};
	cr_assert_eq(ag_spool_open(&so, &s, &err), 0, "%s", err.msg);
	uint8_t id[16];
	memcpy(id, ag_spool_agent_id(s), 16);
	for (int q = 1; q <= 3; q++) {
		tl_pb_record r[2], *rp[2] = {&r[0], &r[1]};
		uint8_t *bodies[2];
		for (int k = 0; k < 2; k++) {
			int i = (q - 1) * 2 + k;
			len_of[i] = vlen(i);
			bodies[k] = make_rec(i, len_of[i]);
			threadline__v1__record__init(&r[k]);
			r[k].accepted_unix_nano = 1700000000000000000ull + (uint64_t)i;
			r[k].body_case = THREADLINE__V1__RECORD__BODY_OTLP_TRACES;
			r[k].otlp_traces.data = bodies[k];
			r[k].otlp_traces.len = len_of[i];
		}
		tl_pb_batch b = THREADLINE__V1__BATCH__INIT;
		b.agent_id.data = id;
		b.agent_id.len = 16;
		b.seq = (uint64_t)q;
		b.n_records = 2;
		b.records = rp;
		size_t n = threadline__v1__batch__get_packed_size(&b);
		uint8_t *buf = malloc(n);
		cr_assert_not_null(buf);
		threadline__v1__batch__pack(&b, buf);
		ag_spool_put p = {.seq = (uint64_t)q, .data = buf, .len = n, .nspans = 2};
		cr_assert_eq(ag_spool_write(s, &p, 1, NULL, 0, NULL, &err), 0, "%s", err.msg);
		free(buf);
		free(bodies[0]);
		free(bodies[1]);
	}
	ag_spool_close(s);

	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port};
	h_open(&h, &ho);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.spool.batches, 3);
	cr_assert_eq(st.spool.next_seq, 4);
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 10000);
	fc_check_range(0, 6, true, id);
	stats(&h, &st);
	cr_assert_eq(st.batches_acked, 3);
	cr_assert_eq(st.spans_delivered, 6);

	/* New records continue the sequence. */
	cr_assert_eq(submit(&h, 6, vlen(6), 1), 0);
	RUN_UNTIL(&h, answered == 1 && ag_pipeline_drained(h.p), 10000);
	cr_assert_eq(status_of[6], 0);
	fc_check_range(0, 7, true, id);
	pthread_mutex_lock(&FC.mu);
	cr_assert_eq(FC.order[FC.norder - 1], 4, "the new batch has seq %llu", (unsigned long long)FC.order[3]);
	pthread_mutex_unlock(&FC.mu);
	h_close(&h);
}

/* ---- refusals ---- */

Test(pipeline, a_rejected_batch_is_moved_aside_and_not_resent)
{
	fc_start(0);
	FC.reject[2] = true;
	harness h;
	h_opts ho = {.port = FC.port, .ack_timeout_ms = 300};
	h_open(&h, &ho);
	uint8_t id[16];
	memcpy(id, ag_spool_agent_id(h.spool), 16);
	/* One record per commit, so record i is batch i + 1. */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(submit(&h, i, vlen(i), (uint32_t)(i + 2)), 0);
		RUN_UNTIL(&h, answered == (size_t)i + 1, 5000);
		cr_assert_eq(status_of[i], 0);
	}
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 10000);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.batches_refused, 1);
	cr_assert_eq(st.spans_refused, 3);
	cr_assert_eq(st.batches_acked, 2);
	cr_assert_eq(st.spans_delivered, 2 + 4);
	cr_assert_eq(st.spool.dead_batches, 1);
	cr_assert_gt(st.spool.dead_bytes, len_of[1]);
	cr_assert_eq(st.spool.batches, 0);
	int want[] = {0, 2};
	fc_check(want, 2, true, id);

	/* Well past the ack timeout and a backoff: still received once. */
	run_for(&h, 700);
	cr_assert_eq(fc_received(2), 1, "the refused batch was resent");

	/* Later batches flow. */
	cr_assert_eq(submit(&h, 3, vlen(3), 1), 0);
	RUN_UNTIL(&h, fc_nrecs() == 3 && ag_pipeline_drained(h.p), 5000);
	int want2[] = {0, 2, 3};
	fc_check(want2, 3, true, id);
	cr_assert_eq(fc_received(2), 1);
	stats(&h, &st);
	cr_assert_eq(st.spool.dead_batches, 1);
	h_close(&h);

	/* Kept aside across a restart, and not sent again (a new port: the old one may be in TIME_WAIT). */
	fc_stop();
	fc_start(0);
	ho.port = FC.port;
	h_open(&h, &ho);
	stats(&h, &st);
	cr_assert_eq(st.spool.dead_batches, 1);
	cr_assert_eq(st.spool.batches, 0);
	run_for(&h, 200);
	cr_assert_eq(fc_received(2), 1);
	h_close(&h);
}

Test(pipeline, lost_requests_and_lost_acks_are_resent_and_stored_once)
{
	fc_start(0);
	FC.lose_ack[1] = 1; /* stored, but the ack never leaves */
	FC.drop[2] = 2;     /* the first two copies vanish */
	harness h;
	h_opts ho = {.port = FC.port, .ack_timeout_ms = 200};
	h_open(&h, &ho);
	/* One at a time, each delivered before the next (a resend would otherwise let the next one pass it). */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(submit(&h, i, vlen(i), 1), 0);
		RUN_UNTIL(&h, answered == (size_t)i + 1 && fc_nrecs() == (size_t)i + 1, 5000);
		cr_assert_eq(status_of[i], 0);
	}
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 10000);
	fc_check_range(0, 3, false, ag_spool_agent_id(h.spool));
	cr_assert_eq(fc_received(1), 2, "seq 1 received %u times", fc_received(1));
	cr_assert_eq(fc_received(2), 3, "seq 2 received %u times", fc_received(2));
	cr_assert_eq(fc_received(3), 1);
	ag_sender_stats ss;
	ag_sender_stats_get(h.sender, &ss);
	cr_assert_eq(ss.duplicates, 1);
	cr_assert_geq(ss.retries, 3);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.batches_acked, 3);
	cr_assert_eq(st.spans_delivered, 3);
	cr_assert_eq(st.batches_refused, 0);
	h_close(&h);
}

Test(pipeline, a_failed_commit_answers_estore_and_the_pipeline_goes_on)
{
	/*
	 * A spool map far smaller than the pipeline's bound (a misconfiguration)
	 * makes the transaction fail with a full map: the record is answered
	 * TL_ESTORE, nothing is kept, and the next record goes through.
	 */
	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port, .spool_max = 4096, .pipeline_spool_max = (size_t)1 << 30};
	h_open(&h, &ho);

	size_t big = (size_t)70 << 20;
	cr_assert_eq(submit(&h, 0, big, 1), 0);
	RUN_UNTIL(&h, answered == 1, 10000);
	cr_assert_eq(status_of[0], TL_ESTORE, "oversized commit: %s", tl_strerror(status_of[0]));
	cr_assert_not_null(strstr(last_msg, "full"), "the answer does not say the spool is full: %s", last_msg);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.commit_errors, 1);
	cr_assert_eq(st.records_failed, 1);
	cr_assert_eq(st.records_committed, 0);
	cr_assert_eq(st.spool.batches, 0);
	cr_assert_eq(st.pending_bytes, 0);
	cr_assert_eq(st.spool.next_seq, 1, "a failed commit used up a sequence number");

	cr_assert_eq(submit(&h, 1, vlen(1), 1), 0);
	RUN_UNTIL(&h, answered == 2 && ag_pipeline_drained(h.p), 5000);
	cr_assert_eq(status_of[1], 0);
	fc_check_range(1, 2, true, ag_spool_agent_id(h.spool));
	pthread_mutex_lock(&FC.mu);
	cr_assert_eq(FC.order[0], 1, "the first stored batch has seq %llu", (unsigned long long)FC.order[0]);
	pthread_mutex_unlock(&FC.mu);
	h_close(&h);
}

/* ---- bounds and backpressure ---- */

Test(pipeline, a_full_spool_refuses_until_the_collector_drains_it)
{
	int port = fc_reserve_port();
	harness h;
	size_t max = 16 << 10;
	h_opts ho = {.port = port, .spool_max = max, .ack_timeout_ms = 300};
	h_open(&h, &ho);
	uint8_t id[16];
	memcpy(id, ag_spool_agent_id(h.spool), 16);

	/* The collector is absent: accepted (committed) until the spool bound. */
	int accepted = 0, rc = 0;
	for (int i = 0; i < 100; i++) {
		rc = submit(&h, i, 1000, 1);
		if (rc != 0)
			break;
		accepted++;
		RUN_UNTIL(&h, answered == (size_t)accepted, 5000);
		cr_assert_eq(status_of[i], 0, "record %d: %s", i, tl_strerror(status_of[i]));
	}
	cr_assert_eq(rc, TL_EFULL, "after %d records: %s", accepted, tl_strerror(rc));
	cr_assert_geq(accepted, 12, "only %d records of 1000 bytes in a 16 KiB spool", accepted);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.records_committed, (uint64_t)accepted);
	cr_assert_eq(st.spool.batches, (size_t)accepted);
	cr_assert_eq(fc_nrecs(), 0);
	/* Still full a while later; a record larger than the whole spool is a different error. */
	run_for(&h, 50);
	cr_assert_eq(submit(&h, 500, 1000, 1), TL_EFULL);
	cr_assert_eq(submit(&h, 501, max, 1), TL_ELIMIT);
	cr_assert_eq(submit(&h, 502, max - AG_SPOOL_HDR + 1, 1), TL_ELIMIT);
	cr_assert_eq(answered, (size_t)accepted, "a refused submit ran its callback");

	/* The collector appears: everything arrives, and the spool takes records again. */
	fc_start(port);
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 15000);
	fc_check_range(0, accepted, false, id);
	stats(&h, &st);
	cr_assert_eq(st.spool.bytes, 0);
	cr_assert_eq(st.batches_acked, (uint64_t)accepted);
	cr_assert_eq(submit(&h, accepted, 1000, 1), 0);
	RUN_UNTIL(&h, fc_nrecs() == (size_t)accepted + 1 && ag_pipeline_drained(h.p), 5000);
	cr_assert_eq(status_of[accepted], 0);
	fc_check_range(0, accepted + 1, false, id);
	h_close(&h);
}

Test(pipeline, too_much_pending_gives_enobufs)
{
	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port, .max_pending = 8192};
	h_open(&h, &ho);
	uint8_t id[16];
	memcpy(id, ag_spool_agent_id(h.spool), 16);
	/* Without running the loop nothing is answered, so pending only grows. */
	int i = 0, rc;
	while ((rc = submit(&h, i, 1024, 1)) == 0 && i < 100)
		i++;
	cr_assert_eq(rc, -ENOBUFS, "submit %d: %s", i, tl_strerror(rc));
	cr_assert_eq(i, 8, "%d records of 1 KiB accepted under an 8 KiB pending bound", i);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.pending_bytes, 8192);
	cr_assert_eq(st.pending_records, 8);
	RUN_UNTIL(&h, answered == 8, 5000);
	for (int k = 0; k < 8; k++)
		cr_assert_eq(status_of[k], 0);
	stats(&h, &st);
	cr_assert_eq(st.pending_bytes, 0);
	/* Room again; and a single record over the bound is taken when nothing else is pending. */
	cr_assert_eq(submit(&h, 8, 1024, 1), 0);
	RUN_UNTIL(&h, answered == 9, 5000);
	cr_assert_eq(submit(&h, 9, 20000, 1), 0);
	RUN_UNTIL(&h, answered == 10 && ag_pipeline_drained(h.p), 5000);
	cr_assert_eq(status_of[9], 0);
	fc_check_range(0, 10, true, id);
	h_close(&h);
}

Test(pipeline, spooled_bytes_stay_within_the_spool_bound)
{
	/*
	 * What is stored is the encoded Batch: a Record envelope per record and
	 * a Batch envelope per batch on top of the records' own bytes. Counting
	 * only the records' lengths lets tiny records fill the spool far past
	 * its bound (511 records of 8 bytes made 11,298 bytes in a 4 KiB spool
	 * before the pipeline counted the framing).
	 */
	int port = fc_reserve_port();
	harness h;
	size_t max = 4096;
	h_opts ho = {.port = port, .spool_max = max, .ack_timeout_ms = 300};
	h_open(&h, &ho);
	int n = 0, rc;
	while ((rc = submit(&h, n, 8, 1)) == 0 && n < MAXREC - 1)
		n++;
	cr_assert_eq(rc, TL_EFULL, "submit %d: %s", n, tl_strerror(rc));
	RUN_UNTIL(&h, answered == (size_t)n, 5000);
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.records_committed, (uint64_t)n);
	cr_expect_leq(st.spool.bytes + st.spool.dead_bytes, max,
	              "%d records of 8 bytes accepted; the spool holds %zu bytes, over its %zu-byte bound", n,
	              st.spool.bytes + st.spool.dead_bytes, max);
	/* Deliver everything before closing. */
	fc_start(port);
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 15000);
	fc_check_range(0, n, false, ag_spool_agent_id(h.spool));
	h_close(&h);
}

/* ---- durability modes ---- */

Test(pipeline, periodic_mode_syncs_after_writes_and_not_when_idle)
{
	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port, .periodic = true, .sync_ms = 20};
	h_open(&h, &ho);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(submit(&h, i, vlen(i), 1), 0);
	RUN_UNTIL(&h, answered == 5, 5000);
	ag_pipeline_stats st;
	RUN_UNTIL(&h, (stats(&h, &st), st.syncs >= 1), 2000);
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 5000);
	/* The acks' removals are synced too; then nothing is dirty. */
	run_for(&h, 150);
	stats(&h, &st);
	uint64_t idle = st.syncs;
	run_for(&h, 200);
	stats(&h, &st);
	cr_assert_eq(st.syncs, idle, "%llu fsyncs while idle", (unsigned long long)(st.syncs - idle));
	/* A new write is synced within a few intervals. */
	cr_assert_eq(submit(&h, 5, vlen(5), 1), 0);
	RUN_UNTIL(&h, (stats(&h, &st), st.syncs > idle), 2000);
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 5000);
	fc_check_range(0, 6, true, ag_spool_agent_id(h.spool));
	h_close(&h);
}

/* ---- deadlines and shutdown ---- */

Test(pipeline, a_record_waiting_past_its_deadline_times_out)
{
	locker lk;
	locker_fork(&lk);
	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port, .deadline_ms = 100};
	h_open(&h, &ho);
	locker_take(&lk);
	cr_assert_eq(submit(&h, 0, vlen(0), 1), 0); /* its commit blocks on the writer lock */
	cr_assert_eq(submit(&h, 1, vlen(1), 1), 0); /* waits behind it */
	RUN_UNTIL(&h, n_answers[1] == 1, 3000);
	cr_assert_eq(status_of[1], TL_ETIMEOUT, "waiting record: %s", tl_strerror(status_of[1]));
	cr_assert_eq(n_answers[0], 0, "the record in the blocked commit was answered early");
	ag_pipeline_stats st;
	stats(&h, &st);
	cr_assert_eq(st.records_timed_out, 1);
	locker_release(&lk);
	RUN_UNTIL(&h, n_answers[0] == 1 && ag_pipeline_drained(h.p), 5000);
	cr_assert_eq(status_of[0], 0);
	cr_assert_eq(n_answers[1], 1);
	fc_check_range(0, 1, true, ag_spool_agent_id(h.spool));
	h_close(&h);
}

/* Submits record 0 (its commit blocks on the child's lock) and 1..4 behind it, then closes. */
static void close_with_running_commit(harness *h, locker *lk)
{
	locker_fork(lk);
	fc_start(0);
	h_opts ho = {.port = FC.port};
	h_open(h, &ho);
	locker_take(lk);
	cr_assert_eq(submit(h, 0, vlen(0), 1), 0);
	usleep(100 * 1000); /* the thread pool picks the commit up and blocks in mdb_txn_begin */
	for (int i = 1; i < 5; i++)
		cr_assert_eq(submit(h, i, vlen(i), 1), 0);
	uv_run(&h->loop, UV_RUN_NOWAIT);
	cr_assert_eq(answered, 0);
	ag_sender_close(h->sender);
	ag_pipeline_close(h->p, NULL, NULL);
	for (int i = 1; i < 5; i++) {
		cr_assert_eq(n_answers[i], 1, "waiting record %d answered %d times at close", i, n_answers[i]);
		cr_assert_eq(status_of[i], TL_ECLOSED, "waiting record %d: %s", i, tl_strerror(status_of[i]));
	}
	locker_release(lk);
	uint64_t end = now_ms() + 10000;
	while (uv_run(&h->loop, UV_RUN_NOWAIT) != 0) {
		cr_assert_lt(now_ms(), end, "the loop did not wind down");
		usleep(1000);
	}
	cr_assert_eq(uv_loop_close(&h->loop), 0, "handles left open on the loop");
	ag_spool_close(h->spool);
	assert_no_leaks();
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(n_answers[i], 1, "record %d answered %d times", i, n_answers[i]);
		cr_assert(status_of[i] == 0 || status_of[i] == TL_ECLOSED, "record %d: %s", i,
		          tl_strerror(status_of[i]));
	}
}

Test(pipeline, close_with_a_commit_running_answers_every_record_once)
{
	harness h;
	locker lk;
	close_with_running_commit(&h, &lk);
}

Test(pipeline, close_with_a_commit_running_answers_what_the_spool_kept)
{
	/*
	 * A record answered 0 must be in the spool, and one answered TL_ECLOSED
	 * must not be (its client will send it again): otherwise a retrying
	 * client gets its spans stored twice. ag_pipeline.h: "one in a running
	 * commit is answered when it ends".
	 */
	harness h;
	locker lk;
	close_with_running_commit(&h, &lk);
	int idx[16];
	size_t n = spooled_records(idx, 16);
	bool kept[5] = {false};
	for (size_t k = 0; k < n; k++) {
		cr_assert(idx[k] >= 0 && idx[k] < 5, "spool holds an unknown record");
		kept[idx[k]] = true;
	}
	for (int i = 0; i < 5; i++)
		cr_expect_eq(kept[i], status_of[i] == 0, "record %d was answered %s but the spool %s it", i,
		             status_of[i] == 0 ? "0" : tl_strerror(status_of[i]), kept[i] ? "kept" : "did not keep");
}

/* Work items that occupy the thread pool until released. */
static atomic_int blockers_started;
static atomic_bool blockers_go;

static void blocker_work(uv_work_t *w)
{
	(void)w;
	atomic_fetch_add(&blockers_started, 1);
	while (!atomic_load(&blockers_go))
		usleep(1000);
}

static void blocker_after(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
}

Test(pipeline, close_with_a_commit_queued_cancels_it)
{
	setenv("UV_THREADPOOL_SIZE", "4", 1);
	fc_start(0);
	harness h;
	h_opts ho = {.port = FC.port};
	h_open(&h, &ho);
	uv_work_t blockers[4];
	for (int i = 0; i < 4; i++)
		cr_assert_eq(uv_queue_work(&h.loop, &blockers[i], blocker_work, blocker_after), 0);
	uint64_t end = now_ms() + 5000;
	while (atomic_load(&blockers_started) < 4) {
		cr_assert_lt(now_ms(), end, "the thread pool did not start 4 blockers");
		usleep(1000);
	}
	for (int i = 0; i < 3; i++)
		cr_assert_eq(submit(&h, i, vlen(i), 1), 0);
	ag_sender_close(h.sender);
	ag_pipeline_close(h.p, NULL, NULL);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(n_answers[i], 1, "record %d answered %d times at close", i, n_answers[i]);
		cr_assert_eq(status_of[i], TL_ECLOSED);
	}
	atomic_store(&blockers_go, true);
	end = now_ms() + 10000;
	while (uv_run(&h.loop, UV_RUN_NOWAIT) != 0) {
		cr_assert_lt(now_ms(), end, "the loop did not wind down");
		usleep(1000);
	}
	cr_assert_eq(uv_loop_close(&h.loop), 0);
	ag_spool_close(h.spool);
	assert_no_leaks();
	for (int i = 0; i < 3; i++)
		cr_assert_eq(n_answers[i], 1);
	int idx[8];
	cr_assert_eq(spooled_records(idx, 8), 0, "a cancelled commit wrote to the spool");
}

Test(pipeline, close_with_batches_in_flight_keeps_them_and_frees_everything)
{
	/* The collector is absent: the sender holds the batches, retrying, when the agent stops. */
	int port = fc_reserve_port();
	harness h;
	h_opts ho = {.port = port, .ack_timeout_ms = 300};
	h_open(&h, &ho);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(submit(&h, i, vlen(i), 1), 0);
		RUN_UNTIL(&h, answered == (size_t)i + 1, 5000);
		cr_assert_eq(status_of[i], 0);
	}
	run_for(&h, 50);
	ag_sender_stats ss;
	ag_sender_stats_get(h.sender, &ss);
	cr_assert_eq(ss.in_flight, 3);
	h_close(&h); /* the sanitizer build checks that nothing leaks here */
	int idx[8];
	cr_assert_eq(spooled_records(idx, 8), 3, "unacknowledged batches must stay in the spool");

	/* The next run delivers them. */
	fc_start(port);
	h_open(&h, &ho);
	RUN_UNTIL(&h, ag_pipeline_drained(h.p), 10000);
	fc_check_range(0, 3, false, ag_spool_agent_id(h.spool));
	h_close(&h);
}
