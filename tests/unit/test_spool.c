/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's spool on real LMDB files in temporary directories: identity
 * and sequence numbers across reopen, batches in and out oldest first,
 * acknowledged and refused batches, counters checked against a raw scan of
 * the files, the lock that keeps a second agent out, periodic sync (and a
 * process crash without it), a map too small for a write, and appends out
 * of order.
 */
#include "ag_spool.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* ---- fixtures ---- */

static char dir[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tl_spool_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Every test ends with everything closed. Criterion runs each test in a
 * child whose exit-time leak report does not fail it (nor does an assertion
 * in .fini), so each test asks LeakSanitizer itself.
 */
static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks (report above)");
#endif
}

TestSuite(spool, .init = setup, .fini = teardown, .timeout = 60);

static ag_spool *open_at(const char *d, size_t max_bytes, bool sync_each)
{
	ag_spool_opts o;
	ag_spool_opts_default(&o);
	o.dir = d;
	if (max_bytes)
		o.max_bytes = max_bytes;
	o.sync_each_commit = sync_each;
	ag_spool *s = NULL;
	tl_errmsg err = {{0}};
	int rc = ag_spool_open(&o, &s, &err);
	cr_assert_eq(rc, 0, "open %s: %s (%s)", d, tl_strerror(rc), err.msg);
	cr_assert_not_null(s);
	return s;
}

/* 64 MiB: the spool reserves 1.5 times its bound on disk at open, and tests run two at a time. */
static ag_spool *open_default(void)
{
	return open_at(dir, (size_t)64 << 20, true);
}

/* A deterministic payload for batch seq: its length and bytes depend on seq. */
static size_t payload_len(uint64_t seq)
{
	return 16 + (size_t)(seq * 53 % 700);
}

static uint8_t *payload(uint64_t seq)
{
	size_t n = payload_len(seq);
	uint8_t *p = malloc(n);
	cr_assert_not_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seq * 31 + i * 7 + (i >> 8));
	return p;
}

static uint32_t payload_spans(uint64_t seq)
{
	return (uint32_t)(seq % 5 + 1);
}

/* Appends batches [from, to] in one transaction. Returns ag_spool_write's result. */
static int write_range(ag_spool *s, uint64_t from, uint64_t to, ag_spool_delta *delta, tl_errmsg *err)
{
	size_t n = (size_t)(to - from + 1);
	ag_spool_put *puts = calloc(n, sizeof(*puts));
	cr_assert_not_null(puts);
	for (size_t i = 0; i < n; i++) {
		puts[i].seq = from + i;
		puts[i].data = payload(from + i);
		puts[i].len = payload_len(from + i);
		puts[i].nspans = payload_spans(from + i);
	}
	int rc = ag_spool_write(s, puts, n, NULL, 0, delta, err);
	for (size_t i = 0; i < n; i++)
		free((void *)puts[i].data);
	free(puts);
	return rc;
}

static void write_ok(ag_spool *s, uint64_t from, uint64_t to)
{
	tl_errmsg err = {{0}};
	int rc = write_range(s, from, to, NULL, &err);
	cr_assert_eq(rc, 0, "write %llu..%llu: %s (%s)", (unsigned long long)from, (unsigned long long)to,
	             tl_strerror(rc), err.msg);
}

static void done_ok(ag_spool *s, const ag_spool_done *done, size_t n, ag_spool_delta *delta)
{
	tl_errmsg err = {{0}};
	int rc = ag_spool_write(s, NULL, 0, done, n, delta, &err);
	cr_assert_eq(rc, 0, "done: %s (%s)", tl_strerror(rc), err.msg);
}

/* Reads every live batch after `after` and checks it is exactly the payload of its seq. Returns the seqs. */
static size_t read_all(ag_spool *s, uint64_t *seqs, size_t cap)
{
	size_t n = 0;
	uint64_t after = 0;
	for (;;) {
		uint64_t seq = 0;
		uint8_t *data = NULL;
		size_t len = 0;
		uint32_t nspans = 0;
		int rc = ag_spool_read_next(s, after, &seq, &data, &len, &nspans);
		if (rc == TL_ENOTFOUND)
			break;
		cr_assert_eq(rc, 0, "read_next after %llu: %s", (unsigned long long)after, tl_strerror(rc));
		cr_assert_gt(seq, after, "read_next went backwards: %llu after %llu", (unsigned long long)seq,
		             (unsigned long long)after);
		cr_assert_eq(len, payload_len(seq), "seq %llu: len %zu", (unsigned long long)seq, len);
		uint8_t *want = payload(seq);
		cr_assert_eq(memcmp(data, want, len), 0, "seq %llu: bytes differ", (unsigned long long)seq);
		cr_assert_eq(nspans, payload_spans(seq), "seq %llu: nspans %u", (unsigned long long)seq, nspans);
		free(want);
		free(data);
		cr_assert_lt(n, cap);
		seqs[n++] = seq;
		after = seq;
	}
	return n;
}

static void info_of(ag_spool *s, ag_spool_info *in)
{
	memset(in, 0xa5, sizeof(*in));
	cr_assert_eq(ag_spool_info_get(s, in), 0);
}

static void assert_info_eq(const ag_spool_info *a, const ag_spool_info *b, const char *when)
{
	cr_assert_eq(a->next_seq, b->next_seq, "%s: next_seq %llu vs %llu", when, (unsigned long long)a->next_seq,
	             (unsigned long long)b->next_seq);
	cr_assert_eq(a->bytes, b->bytes, "%s: bytes %zu vs %zu", when, a->bytes, b->bytes);
	cr_assert_eq(a->batches, b->batches, "%s: batches %zu vs %zu", when, a->batches, b->batches);
	cr_assert_eq(a->spans, b->spans, "%s: spans %llu vs %llu", when, (unsigned long long)a->spans,
	             (unsigned long long)b->spans);
	cr_assert_eq(a->dead_bytes, b->dead_bytes, "%s: dead_bytes %zu vs %zu", when, a->dead_bytes, b->dead_bytes);
	cr_assert_eq(a->dead_batches, b->dead_batches, "%s: dead_batches %zu vs %zu", when, a->dead_batches,
	             b->dead_batches);
}

/* ---- reading the files behind the spool's back (only while it is closed) ---- */

typedef struct raw_db {
	size_t bytes, count;
} raw_db;

static void raw_scan(const char *dbname, raw_db *out)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, v;
	memset(out, 0, sizeof(*out));
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 4), 0);
	cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, dbname, 0, &dbi), 0, "no database %s", dbname);
	cr_assert_eq(mdb_cursor_open(txn, dbi, &c), 0);
	int rc;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		out->bytes += v.mv_size;
		out->count++;
	}
	cr_assert_eq(rc, MDB_NOTFOUND);
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/* Copies out the raw value of seq in dbname (malloc'd), or returns NULL when absent. */
static uint8_t *raw_get(const char *dbname, uint64_t seq, size_t *len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t kb[8];
	for (int i = 7; i >= 0; i--, seq >>= 8)
		kb[i] = (uint8_t)seq;
	MDB_val k = {8, kb}, v;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 4), 0);
	cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0640), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, dbname, 0, &dbi), 0);
	uint8_t *out = NULL;
	if (mdb_get(txn, dbi, &k, &v) == 0) {
		out = malloc(v.mv_size);
		cr_assert_not_null(out);
		memcpy(out, v.mv_data, v.mv_size);
		*len = v.mv_size;
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return out;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* ---- identity and sequence ---- */

Test(spool, open_creates_dir_and_agent_id)
{
	char sub[128];
	snprintf(sub, sizeof(sub), "%s/a/b/spool", dir);
	ag_spool *s = open_at(sub, 0, true);
	struct stat st;
	cr_assert_eq(stat(sub, &st), 0, "the spool directory was not created");
	cr_assert(S_ISDIR(st.st_mode));
	char f[192];
	snprintf(f, sizeof(f), "%s/data.mdb", sub);
	cr_assert_eq(stat(f, &st), 0, "no data.mdb");
	snprintf(f, sizeof(f), "%s/agent.lock", sub);
	cr_assert_eq(stat(f, &st), 0, "no agent.lock");

	const uint8_t *id = ag_spool_agent_id(s);
	cr_assert_not_null(id);
	cr_assert_not(all_zero(id, 16), "agent id is all zeros");
	ag_spool_info in;
	info_of(s, &in);
	cr_assert_eq(in.next_seq, 1);
	cr_assert_eq(in.bytes, 0);
	cr_assert_eq(in.batches, 0);
	cr_assert_eq(in.spans, 0);
	cr_assert_eq(in.dead_bytes, 0);
	cr_assert_eq(in.dead_batches, 0);
	uint64_t seq;
	uint8_t *data;
	size_t len;
	uint32_t nspans;
	cr_assert_eq(ag_spool_read_next(s, 0, &seq, &data, &len, &nspans), TL_ENOTFOUND);
	ag_spool_close(s);

	/* Another spool gets another identity. */
	char other[128];
	snprintf(other, sizeof(other), "%s/other", dir);
	uint8_t first[16];
	s = open_at(sub, 0, true);
	memcpy(first, ag_spool_agent_id(s), 16);
	ag_spool_close(s);
	s = open_at(other, 0, true);
	cr_assert_neq(memcmp(first, ag_spool_agent_id(s), 16), 0, "two spools share an agent id");
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, reopen_keeps_agent_id_and_next_seq)
{
	ag_spool *s = open_default();
	uint8_t id[16];
	memcpy(id, ag_spool_agent_id(s), 16);
	write_ok(s, 1, 3);
	ag_spool_info in;
	info_of(s, &in);
	cr_assert_eq(in.next_seq, 4);
	ag_spool_close(s);

	s = open_default();
	cr_assert_eq(memcmp(id, ag_spool_agent_id(s), 16), 0, "agent id changed across reopen");
	info_of(s, &in);
	cr_assert_eq(in.next_seq, 4);
	cr_assert_eq(in.batches, 3);

	/* Acknowledge everything: next_seq must not fall back to 1 when the batches are gone. */
	ag_spool_done d[3] = {{1, NULL}, {2, NULL}, {3, NULL}};
	done_ok(s, d, 3, NULL);
	info_of(s, &in);
	cr_assert_eq(in.batches, 0);
	cr_assert_eq(in.next_seq, 4);
	ag_spool_close(s);

	s = open_default();
	info_of(s, &in);
	cr_assert_eq(in.next_seq, 4, "next_seq after reopen with an empty spool: %llu",
	             (unsigned long long)in.next_seq);
	cr_assert_eq(in.batches, 0);
	cr_assert_eq(memcmp(id, ag_spool_agent_id(s), 16), 0);
	write_ok(s, 4, 4);
	info_of(s, &in);
	cr_assert_eq(in.next_seq, 5);
	ag_spool_close(s);
	assert_no_leaks();
}

/* ---- batches in and out ---- */

Test(spool, read_next_returns_batches_oldest_first_with_exact_bytes)
{
	ag_spool *s = open_default();
	ag_spool_delta d;
	tl_errmsg err = {{0}};
	cr_assert_eq(write_range(s, 1, 5, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.added_batches, 5);
	size_t want_bytes = 0;
	uint64_t want_spans = 0;
	for (uint64_t q = 1; q <= 5; q++) {
		want_bytes += AG_SPOOL_HDR + payload_len(q);
		want_spans += payload_spans(q);
	}
	cr_assert_eq(d.added_bytes, want_bytes);
	cr_assert_eq(d.added_spans, want_spans);
	write_ok(s, 6, 6);
	write_ok(s, 7, 9);

	uint64_t seqs[16];
	size_t n = read_all(s, seqs, 16);
	cr_assert_eq(n, 9);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(seqs[i], i + 1);

	/* after = a seq in the middle, and after = a seq that does not exist */
	uint64_t seq;
	uint8_t *data;
	size_t len;
	uint32_t nspans;
	cr_assert_eq(ag_spool_read_next(s, 4, &seq, &data, &len, &nspans), 0);
	cr_assert_eq(seq, 5);
	free(data);
	cr_assert_eq(ag_spool_read_next(s, 9, &seq, &data, &len, &nspans), TL_ENOTFOUND);
	cr_assert_eq(ag_spool_read_next(s, UINT64_MAX, &seq, &data, &len, &nspans), TL_ENOTFOUND);

	/* Acknowledged ones are skipped. */
	ag_spool_done dn[3] = {{1, NULL}, {2, NULL}, {5, NULL}};
	done_ok(s, dn, 3, NULL);
	n = read_all(s, seqs, 16);
	uint64_t left[] = {3, 4, 6, 7, 8, 9};
	cr_assert_eq(n, 6);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(seqs[i], left[i]);
	cr_assert_eq(ag_spool_read_next(s, 0, &seq, &data, &len, &nspans), 0);
	cr_assert_eq(seq, 3);
	free(data);
	cr_assert_eq(ag_spool_read_next(s, 4, &seq, &data, &len, &nspans), 0);
	cr_assert_eq(seq, 6, "after 4 with 5 acknowledged: got %llu", (unsigned long long)seq);
	free(data);
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, zero_length_batch_round_trips)
{
	ag_spool *s = open_default();
	ag_spool_put p = {.seq = 1, .data = (const uint8_t *)"", .len = 0, .nspans = 0};
	tl_errmsg err = {{0}};
	cr_assert_eq(ag_spool_write(s, &p, 1, NULL, 0, NULL, &err), 0, "%s", err.msg);
	uint64_t seq;
	uint8_t *data = NULL;
	size_t len = 99;
	uint32_t nspans = 99;
	cr_assert_eq(ag_spool_read_next(s, 0, &seq, &data, &len, &nspans), 0);
	cr_assert_eq(seq, 1);
	cr_assert_eq(len, 0);
	cr_assert_eq(nspans, 0);
	free(data);
	ag_spool_info in;
	info_of(s, &in);
	cr_assert_eq(in.bytes, AG_SPOOL_HDR);
	cr_assert_eq(in.batches, 1);
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, done_removes_batches_and_skips_unknown_seqs)
{
	ag_spool *s = open_default();
	write_ok(s, 1, 4);
	ag_spool_info before;
	info_of(s, &before);

	/* 2 and 4 exist; 3 is listed twice; 17 and 0 never existed. */
	ag_spool_done dn[] = {{17, NULL}, {2, NULL}, {0, NULL}, {4, NULL}, {2, NULL}};
	ag_spool_delta d;
	memset(&d, 0xff, sizeof(d));
	done_ok(s, dn, sizeof(dn) / sizeof(dn[0]), &d);
	cr_assert_eq(d.removed_batches, 2);
	cr_assert_eq(d.removed_bytes, 2 * AG_SPOOL_HDR + payload_len(2) + payload_len(4));
	cr_assert_eq(d.removed_spans, payload_spans(2) + payload_spans(4));
	cr_assert_eq(d.added_batches, 0);
	cr_assert_eq(d.dead_batches, 0);

	ag_spool_info in;
	info_of(s, &in);
	cr_assert_eq(in.batches, 2);
	cr_assert_eq(in.bytes, before.bytes - d.removed_bytes);
	cr_assert_eq(in.spans, before.spans - d.removed_spans);
	cr_assert_eq(in.next_seq, 5, "removals must not move next_seq");

	uint64_t seqs[8];
	size_t n = read_all(s, seqs, 8);
	cr_assert_eq(n, 2);
	cr_assert_eq(seqs[0], 1);
	cr_assert_eq(seqs[1], 3);

	/* Acknowledging the same batches again is a no-op. */
	done_ok(s, dn, sizeof(dn) / sizeof(dn[0]), &d);
	cr_assert_eq(d.removed_batches, 0);
	info_of(s, &before);
	assert_info_eq(&before, &in, "after a repeated ack");

	/* Puts and dones in one transaction. */
	ag_spool_put p = {.seq = 5, .data = (const uint8_t *)"fifth", .len = 5, .nspans = 2};
	ag_spool_done dn2[] = {{1, NULL}, {3, NULL}};
	tl_errmsg err = {{0}};
	cr_assert_eq(ag_spool_write(s, &p, 1, dn2, 2, &d, &err), 0, "%s", err.msg);
	cr_assert_eq(d.added_batches, 1);
	cr_assert_eq(d.removed_batches, 2);
	info_of(s, &in);
	cr_assert_eq(in.batches, 1);
	cr_assert_eq(in.bytes, AG_SPOOL_HDR + 5);
	cr_assert_eq(in.spans, 2);
	cr_assert_eq(in.next_seq, 6);
	ag_spool_close(s);

	raw_db raw;
	raw_scan("batches", &raw);
	cr_assert_eq(raw.count, 1);
	cr_assert_eq(raw.bytes, AG_SPOOL_HDR + 5);
	assert_no_leaks();
}

Test(spool, refused_batches_move_to_dead_and_are_not_read)
{
	ag_spool *s = open_default();
	write_ok(s, 1, 3);
	char longr[2000];
	memset(longr, 'r', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = '\0';
	ag_spool_done dn[] = {{2, "undecodable batch: bad wire type"}, {3, longr}, {42, "not there"}};
	ag_spool_delta d;
	done_ok(s, dn, 3, &d);
	cr_assert_eq(d.removed_batches, 2);
	cr_assert_eq(d.dead_batches, 2);
	cr_assert_gt(d.dead_bytes, d.removed_bytes, "a dead batch keeps the batch and its reason");

	ag_spool_info in;
	info_of(s, &in);
	cr_assert_eq(in.batches, 1);
	cr_assert_eq(in.spans, payload_spans(1));
	cr_assert_eq(in.bytes, AG_SPOOL_HDR + payload_len(1));
	cr_assert_eq(in.dead_batches, 2);
	cr_assert_eq(in.dead_bytes, d.dead_bytes);

	uint64_t seqs[8];
	size_t n = read_all(s, seqs, 8);
	cr_assert_eq(n, 1);
	cr_assert_eq(seqs[0], 1);
	uint64_t seq;
	uint8_t *data;
	size_t len;
	uint32_t nspans;
	cr_assert_eq(ag_spool_read_next(s, 1, &seq, &data, &len, &nspans), TL_ENOTFOUND);

	/* A later ack of a batch already moved aside changes nothing. */
	ag_spool_done again[] = {{2, NULL}, {3, "again"}};
	done_ok(s, again, 2, &d);
	cr_assert_eq(d.removed_batches, 0);
	cr_assert_eq(d.dead_batches, 0);
	ag_spool_info in2;
	info_of(s, &in2);
	assert_info_eq(&in2, &in, "after acking dead batches");
	ag_spool_close(s);

	/* On disk: the refused batch sits in "dead" with its reason, and its bytes. */
	size_t dlen = 0;
	uint8_t *dv = raw_get("dead", 2, &dlen);
	cr_assert_not_null(dv, "seq 2 is not in the dead database");
	const char *why = "undecodable batch: bad wire type";
	cr_assert_not_null(memmem(dv, dlen, why, strlen(why)), "the reason is not stored");
	uint8_t *p2 = payload(2);
	cr_assert_geq(dlen, payload_len(2));
	cr_assert_eq(memcmp(dv + dlen - payload_len(2), p2, payload_len(2)), 0, "the batch bytes are not kept");
	free(p2);
	free(dv);
	/* The very long reason is cut, not stored whole. */
	dv = raw_get("dead", 3, &dlen);
	cr_assert_not_null(dv);
	cr_assert_lt(dlen, AG_SPOOL_HDR + payload_len(3) + 1500, "a 2000-byte reason was stored uncut (%zu bytes)",
	             dlen);
	free(dv);
	cr_assert_null(raw_get("batches", 2, &dlen));
	cr_assert_null(raw_get("batches", 3, &dlen));
	assert_no_leaks();
}

/* ---- counters ---- */

Test(spool, info_matches_the_files_and_survives_reopen)
{
	ag_spool *s = open_default();
	write_ok(s, 1, 10);
	write_ok(s, 11, 11);
	ag_spool_done dn[] = {{1, NULL}, {4, "refused"}, {5, NULL}, {9, "bad"}, {11, NULL}};
	done_ok(s, dn, 5, NULL);
	write_ok(s, 12, 20);
	ag_spool_info in;
	info_of(s, &in);
	size_t want_bytes = 0;
	uint64_t want_spans = 0;
	size_t want_batches = 0;
	for (uint64_t q = 1; q <= 20; q++) {
		if (q == 1 || q == 4 || q == 5 || q == 9 || q == 11)
			continue;
		want_bytes += AG_SPOOL_HDR + payload_len(q);
		want_spans += payload_spans(q);
		want_batches++;
	}
	cr_assert_eq(in.batches, want_batches);
	cr_assert_eq(in.bytes, want_bytes);
	cr_assert_eq(in.spans, want_spans);
	cr_assert_eq(in.dead_batches, 2);
	cr_assert_eq(in.next_seq, 21);
	ag_spool_close(s);

	/* The counters are what the files hold. */
	raw_db live, dead;
	raw_scan("batches", &live);
	raw_scan("dead", &dead);
	cr_assert_eq(live.count, in.batches);
	cr_assert_eq(live.bytes, in.bytes);
	cr_assert_eq(dead.count, in.dead_batches);
	cr_assert_eq(dead.bytes, in.dead_bytes);

	/* Rebuilt by the scan at open. */
	s = open_default();
	ag_spool_info again;
	info_of(s, &again);
	assert_info_eq(&again, &in, "after reopen");
	ag_spool_close(s);
	assert_no_leaks();
}

/* ---- the lock ---- */

Test(spool, second_open_fails_while_the_first_is_open)
{
	ag_spool *s = open_default();
	ag_spool_opts o;
	ag_spool_opts_default(&o);
	o.dir = dir;
	ag_spool *s2 = NULL;
	tl_errmsg err = {{0}};
	int rc = ag_spool_open(&o, &s2, &err);
	cr_assert_eq(rc, TL_ECLOSED, "second open: %s (%s)", tl_strerror(rc), err.msg);
	cr_assert_null(s2);
	char pid[32];
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	cr_assert_not_null(strstr(err.msg, pid), "the message does not name the holder's pid: %s", err.msg);

	/* The failed open left the first one intact. */
	write_ok(s, 1, 2);
	uint64_t seqs[4];
	cr_assert_eq(read_all(s, seqs, 4), 2);
	ag_spool_close(s);

	/* Free again once closed. */
	s = open_default();
	cr_assert_eq(read_all(s, seqs, 4), 2);
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, a_held_lock_in_another_process_is_reported_with_its_pid)
{
	ag_spool *s = open_default();
	ag_spool_close(s);
	int go[2], ready[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(ready), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		ag_spool_opts o;
		ag_spool_opts_default(&o);
		o.dir = dir;
		ag_spool *cs = NULL;
		tl_errmsg e;
		char c = ag_spool_open(&o, &cs, &e) == 0 ? 'y' : 'n';
		if (write(ready[1], &c, 1) != 1)
			_exit(2);
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		ag_spool_close(cs);
		_exit(0);
	}
	char c = 0;
	cr_assert_eq(read(ready[0], &c, 1), 1);
	cr_assert_eq(c, 'y', "the child could not open the spool");
	ag_spool_opts o;
	ag_spool_opts_default(&o);
	o.dir = dir;
	ag_spool *s2 = NULL;
	tl_errmsg err = {{0}};
	int rc = ag_spool_open(&o, &s2, &err);
	char pid[32];
	snprintf(pid, sizeof(pid), "pid %ld", (long)child);
	cr_assert_eq(write(go[1], "x", 1), 1);
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert_eq(rc, TL_ECLOSED, "open while another process holds it: %s (%s)", tl_strerror(rc), err.msg);
	cr_assert_not_null(strstr(err.msg, pid), "message does not name pid %ld: %s", (long)child, err.msg);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	s = open_default();
	ag_spool_close(s);
	assert_no_leaks();
}

/* ---- durability modes ---- */

Test(spool, periodic_sync_mode)
{
	ag_spool *s = open_at(dir, 0, false);
	write_ok(s, 1, 5);
	cr_assert_eq(ag_spool_sync(s), 0);
	write_ok(s, 6, 6);
	cr_assert_eq(ag_spool_sync(s), 0);
	cr_assert_eq(ag_spool_sync(s), 0, "a sync with nothing to flush");
	ag_spool_close(s);
	s = open_at(dir, 0, false);
	uint64_t seqs[8];
	cr_assert_eq(read_all(s, seqs, 8), 6);
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, unsynced_commits_survive_a_process_crash)
{
	/* A child writes without fsync and dies without closing: the page cache still has the commits. */
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		ag_spool_opts o;
		ag_spool_opts_default(&o);
		o.dir = dir;
		o.sync_each_commit = false;
		ag_spool *cs = NULL;
		tl_errmsg e;
		if (ag_spool_open(&o, &cs, &e) != 0)
			_exit(2);
		for (uint64_t q = 1; q <= 3; q++) {
			ag_spool_put p = {
			        .seq = q, .data = payload(q), .len = payload_len(q), .nspans = payload_spans(q)};
			if (ag_spool_write(cs, &p, 1, NULL, 0, NULL, &e) != 0)
				_exit(3);
		}
		_exit(0); /* no close, no sync */
	}
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status %d", status);
	ag_spool *s = open_at(dir, 0, false);
	uint64_t seqs[8];
	cr_assert_eq(read_all(s, seqs, 8), 3);
	ag_spool_info in;
	info_of(s, &in);
	cr_assert_eq(in.next_seq, 4);
	ag_spool_close(s);
	assert_no_leaks();
}

/* ---- errors ---- */

Test(spool, a_write_larger_than_the_map_is_refused_and_changes_nothing)
{
	/* max 4 KiB: the map is 4 KiB + 2 KiB + 64 MiB of slack; a 70 MiB put cannot fit. */
	ag_spool *s = open_at(dir, 4096, true);
	write_ok(s, 1, 3);
	ag_spool_info before;
	info_of(s, &before);

	size_t big = (size_t)70 << 20;
	uint8_t *huge = calloc(1, big);
	cr_assert_not_null(huge);
	ag_spool_put p = {.seq = 4, .data = huge, .len = big, .nspans = 1};
	tl_errmsg err = {{0}};
	int rc = ag_spool_write(s, &p, 1, NULL, 0, NULL, &err);
	cr_assert_eq(rc, TL_EFULL, "huge put: %s (%s)", tl_strerror(rc), err.msg);
	cr_assert_neq(err.msg[0], '\0', "no message for a full spool");

	/* All or nothing: a small put and an ack in the same transaction are not applied either. */
	uint8_t *p4 = payload(4);
	ag_spool_put two[] = {{.seq = 4, .data = p4, .len = payload_len(4), .nspans = 1},
	                      {.seq = 5, .data = huge, .len = big, .nspans = 1}};
	ag_spool_done dn[] = {{1, NULL}, {2, "refused"}};
	rc = ag_spool_write(s, two, 2, dn, 2, NULL, &err);
	cr_assert_eq(rc, TL_EFULL, "put + huge put: %s (%s)", tl_strerror(rc), err.msg);
	free(huge);

	ag_spool_info after;
	info_of(s, &after);
	assert_info_eq(&after, &before, "after TL_EFULL");
	uint64_t seqs[8];
	cr_assert_eq(read_all(s, seqs, 8), 3);
	cr_assert_eq(seqs[0], 1);
	cr_assert_eq(seqs[2], 3);

	/* Still usable: the next write with the same seq succeeds. */
	ag_spool_put ok = {.seq = 4, .data = p4, .len = payload_len(4), .nspans = payload_spans(4)};
	cr_assert_eq(ag_spool_write(s, &ok, 1, NULL, 0, NULL, &err), 0, "%s", err.msg);
	free(p4);
	cr_assert_eq(read_all(s, seqs, 8), 4);
	ag_spool_close(s);

	s = open_at(dir, 4096, true);
	info_of(s, &after);
	cr_assert_eq(after.batches, 4);
	cr_assert_eq(after.next_seq, 5);
	cr_assert_eq(after.dead_batches, 0);
	cr_assert_eq(read_all(s, seqs, 8), 4);
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, an_append_below_an_existing_seq_fails_cleanly)
{
	ag_spool *s = open_default();
	write_ok(s, 5, 7);
	ag_spool_info before;
	info_of(s, &before);
	cr_assert_eq(before.next_seq, 8);

	tl_errmsg err = {{0}};
	uint8_t *p3 = payload(3);
	ag_spool_put lower = {.seq = 3, .data = p3, .len = payload_len(3), .nspans = payload_spans(3)};
	int rc = ag_spool_write(s, &lower, 1, NULL, 0, NULL, &err);
	cr_assert_lt(rc, 0, "a seq below the last one was appended");
	cr_assert_neq(err.msg[0], '\0');

	/* The same seq as the last one, and a pair out of order in one call. */
	uint8_t *p7 = payload(7);
	ag_spool_put same = {.seq = 7, .data = p7, .len = payload_len(7), .nspans = payload_spans(7)};
	cr_assert_lt(ag_spool_write(s, &same, 1, NULL, 0, NULL, &err), 0, "a duplicate seq was appended");
	uint8_t *p9 = payload(9), *p8 = payload(8);
	ag_spool_put pair[] = {{.seq = 9, .data = p9, .len = payload_len(9), .nspans = payload_spans(9)},
	                       {.seq = 8, .data = p8, .len = payload_len(8), .nspans = payload_spans(8)}};
	ag_spool_done dn = {5, NULL};
	cr_assert_lt(ag_spool_write(s, pair, 2, &dn, 1, NULL, &err), 0, "9 then 8 in one write");

	ag_spool_info after;
	info_of(s, &after);
	assert_info_eq(&after, &before, "after failed appends");
	uint64_t seqs[8];
	cr_assert_eq(read_all(s, seqs, 8), 3);
	cr_assert_eq(seqs[0], 5);
	cr_assert_eq(seqs[2], 7);

	/* In order again, it works. */
	ag_spool_put next[] = {{.seq = 8, .data = p8, .len = payload_len(8), .nspans = payload_spans(8)},
	                       {.seq = 9, .data = p9, .len = payload_len(9), .nspans = payload_spans(9)}};
	cr_assert_eq(ag_spool_write(s, next, 2, NULL, 0, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(read_all(s, seqs, 8), 5);
	free(p3);
	free(p7);
	free(p8);
	free(p9);
	ag_spool_close(s);

	/* Nothing was corrupted. */
	s = open_default();
	info_of(s, &after);
	cr_assert_eq(after.batches, 5);
	cr_assert_eq(after.next_seq, 10);
	cr_assert_eq(read_all(s, seqs, 8), 5);
	ag_spool_close(s);
	raw_db raw;
	raw_scan("batches", &raw);
	cr_assert_eq(raw.count, 5);
	assert_no_leaks();
}

Test(spool, a_seq_below_next_seq_is_refused_even_when_the_spool_is_empty)
{
	/* Acknowledged batches are gone, but their numbers stay used: reusing one would make the
	 * collector drop the new batch as a duplicate. */
	ag_spool *s = open_default();
	write_ok(s, 1, 3);
	ag_spool_done dn[] = {{1, NULL}, {2, NULL}, {3, NULL}};
	done_ok(s, dn, 3, NULL);
	ag_spool_info before;
	info_of(s, &before);
	cr_assert_eq(before.batches, 0);
	cr_assert_eq(before.next_seq, 4);
	tl_errmsg err = {{0}};
	uint8_t *p2 = payload(2);
	ag_spool_put reuse = {.seq = 2, .data = p2, .len = payload_len(2), .nspans = payload_spans(2)};
	cr_assert_eq(ag_spool_write(s, &reuse, 1, NULL, 0, NULL, &err), TL_EINVALID, "seq 2 reused");
	cr_assert(strstr(err.msg, "below the next sequence number 4") != NULL, "message: %s", err.msg);
	ag_spool_info after;
	info_of(s, &after);
	assert_info_eq(&after, &before, "after the refused reuse");
	free(p2);
	ag_spool_close(s);
	assert_no_leaks();
}

Test(spool, its_disk_space_is_reserved_at_open_or_the_open_fails)
{
	ag_spool *s = open_at(dir, (size_t)8 << 20, true);
	cr_assert(ag_spool_reserved(s), "ext4/tmpfs support fallocate: the space must be reserved");
	char path[128];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	size_t want = ((size_t)8 << 20) * 3 / 2 + ((size_t)4 << 20);
	cr_assert_geq((size_t)sb.st_size, want, "data.mdb is %lld bytes, expected the whole map",
	              (long long)sb.st_size);
	cr_assert_geq((size_t)sb.st_blocks * 512, want, "data.mdb is sparse: %lld bytes allocated",
	              (long long)sb.st_blocks * 512);
	ag_spool_close(s);

	/* A "disk" smaller than the reservation (a file-size limit): a clear error, not a spool that fails later. */
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit lim;
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &lim), 0);
	lim.rlim_cur = (rlim_t)4 << 20;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	char d2[128];
	snprintf(d2, sizeof(d2), "%s/small-disk", dir);
	ag_spool_opts o;
	ag_spool_opts_default(&o);
	o.dir = d2;
	o.max_bytes = (size_t)8 << 20;
	tl_errmsg err = {{0}};
	ag_spool *s2 = NULL;
	int rc = ag_spool_open(&o, &s2, &err);
	cr_assert_eq(rc, -EFBIG, "open under a 4 MiB file-size limit: %s (%s)", tl_strerror(rc), err.msg);
	cr_assert_null(s2);
	cr_assert(strstr(err.msg, "cannot reserve 16 MiB of disk for a 8 MiB spool") != NULL, "message: %s", err.msg);
	assert_no_leaks();
}
