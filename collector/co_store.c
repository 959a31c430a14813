/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LMDB span store. A batch is regrouped by trace in memory (one hash
 * table and one counting sort, all in a reused scratch arena), then each
 * trace costs one MDB_APPEND of its chunk, packed straight into LMDB's page
 * with MDB_RESERVE (the spans are encoded exactly once), and small puts
 * that land near the end of their trees: a trace is filed under its home,
 * the id of its first chunk, so its chunk list and summary are written where
 * the newest traces are. Only the first chunk of a trace writes at a random
 * place (trace id -> home); every later one only reads it. The schema is in
 * co_store.h.
 */
#include "co_store.h"
#include "tl_be.h"
#include "tl_otlp.h"

#include "co_index.h"
#include "co_lineage.h"
#include "co_stats.h"

#include "store.pb-c.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef Threadline__Store__V1__Chunk st_chunk;
typedef Threadline__Store__V1__ChunkGroup st_group;
typedef Threadline__Store__V1__TraceSummary st_summary;
typedef Threadline__Store__V1__RawRecord st_raw;

#define DEFAULT_MAP ((size_t)1 << 30)
#define DEFAULT_MAP_MAX ((size_t)1 << 40)
#define MAP_ALIGN ((size_t)64 << 10)
#define SCRATCH_BLOCK ((size_t)1 << 20)
#define CHUNKS_KEY_LEN (8 + 8)
#define TIME_KEY_LEN (8 + 16)
#define DEDUPE_KEY_LEN (CO_AGENT_ID_LEN + 8)

static const char META_VERSION_KEY[] = "schema_version";
static const char META_HOME_MARK_KEY[] = "home_mark";

#define HOME_FLUSH_AT 65536                   /* traces first seen between two flushes of trace_home */
#define HOME_FLUSH_CHUNKS ((uint64_t)1 << 22) /* at most this many chunks to re-read after a crash */
#define HOME_GEN_CAP (2 * HOME_FLUSH_AT)

/* An open-addressing table of trace id -> home; id all zero marks a free slot
 * (a zero trace id is invalid in OTLP and never stored). */
typedef struct hment {
	uint8_t id[16];
	uint64_t home;
} hment;

typedef struct homegen {
	hment *e;
	size_t cap, n;      /* cap: a power of two, at least 2 * n */
	uint64_t flush_txn; /* retired: the transaction that wrote it into trace_home */
	struct homegen *next;
} homegen;

struct co_store {
	MDB_env *env;
	MDB_dbi meta, spans, trace_home, trace_chunks, trace_sums, trace_starts, resources, dedupe, lineage_raw;
	co_lineage_db lin; /* the lineage graph's databases */
	co_index_db *ix;   /* the search indexes */
	co_stats_db *st;   /* per-minute latency histograms */
	co_store_dbs dbs;  /* copies of the handles above, for co_index.c */
	/* Readers and commits hold it shared; growing the map takes it exclusively. */
	pthread_rwlock_t resize;
	pthread_mutex_t map_mu;
	size_t map_size, map_max;
	uint64_t next_chunk, next_lineage; /* next append keys; owned by the committing thread */
	/* Homes of traces first seen since the last flush (see "deferred homes"). */
	pthread_mutex_t hm_mu;
	homegen *pend;      /* live: the committing thread inserts, readers look up under hm_mu */
	homegen *retired;   /* flushed, kept while a reader's snapshot may predate the flush */
	uint64_t home_mark; /* every trace first seen in a chunk below this is in trace_home */
	uint64_t *rd_ids;   /* snapshot txn ids of the open read transactions (a multiset) */
	size_t n_rd, cap_rd;
	size_t flush_at; /* flush when pend holds this many traces */
	int stale_readers;
	tl_arena scratch; /* committing thread only; reset per batch */
};

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) / a * a;
}

/* ---- deferred homes ----
 *
 * A trace's first chunk is its home: trace id -> chunk id. Written one by
 * one, these would be the only puts of a commit at random places in a big
 * tree, and in LMDB each such put copies a leaf and its branches (about
 * 20 KB of writes accounted to the process per put into a 300,000-entry
 * tree, measured with /proc/self/io). So the homes of new traces are
 * gathered in memory, where the committing thread and the readers find
 * them, and written into trace_home in one sorted pass per
 * HOME_FLUSH_AT new traces, inside a commit, together with home_mark in
 * meta. After a crash the unflushed homes are found again by reading the
 * chunks from home_mark on: the first chunk of a trace that trace_home does
 * not know is its home, exactly as when it was stored. A flushed generation
 * stays in memory until no read transaction that began before the flush is
 * open, so a reader finds every home in its snapshot or in memory.
 */

static uint64_t id_hash(const uint8_t *id)
{
	return (tl_get_be64(id) ^ tl_get_be64(id + 8)) * UINT64_C(0x9E3779B97F4A7C15);
}

static bool id_free(const uint8_t *id)
{
	static const uint8_t zero[16];
	return memcmp(id, zero, 16) == 0;
}

static homegen *gen_new(size_t cap)
{
	homegen *g = calloc(1, sizeof(*g));
	if (g != NULL && (g->e = calloc(cap, sizeof(*g->e))) == NULL) {
		free(g);
		return NULL;
	}
	if (g != NULL)
		g->cap = cap;
	return g;
}

static void gen_free(homegen *g)
{
	if (g != NULL)
		free(g->e);
	free(g);
}

static const hment *gen_find(const homegen *g, const uint8_t *id)
{
	for (size_t i = (size_t)(id_hash(id) >> 20) & (g->cap - 1);; i = (i + 1) & (g->cap - 1)) {
		if (id_free(g->e[i].id))
			return NULL;
		if (memcmp(g->e[i].id, id, 16) == 0)
			return &g->e[i];
	}
}

static void gen_insert(hment *e, size_t cap, const uint8_t *id, uint64_t home)
{
	size_t i = (size_t)(id_hash(id) >> 20) & (cap - 1);
	while (!id_free(e[i].id))
		i = (i + 1) & (cap - 1);
	memcpy(e[i].id, id, 16);
	e[i].home = home;
}

/* Rehashes into cap slots, keeping only homes below `below`. Returns 0 or ENOMEM. */
static int gen_rebuild(homegen *g, size_t cap, uint64_t below)
{
	hment *e = calloc(cap, sizeof(*e));
	if (e == NULL)
		return ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < g->cap; i++)
		if (!id_free(g->e[i].id) && g->e[i].home < below) {
			gen_insert(e, cap, g->e[i].id, g->e[i].home);
			n++;
		}
	free(g->e);
	g->e = e;
	g->cap = cap;
	g->n = n;
	return 0;
}

/* Adds a home to the live generation (committing thread). Returns 0 or ENOMEM. */
static int home_add(co_store *s, const uint8_t *id, uint64_t home)
{
	homegen *g = s->pend;
	int rc = 0;
	pthread_mutex_lock(&s->hm_mu);
	if (2 * (g->n + 1) > g->cap)
		rc = gen_rebuild(g, 2 * g->cap, UINT64_MAX);
	if (rc == 0) {
		gen_insert(g->e, g->cap, id, home);
		g->n++;
	}
	pthread_mutex_unlock(&s->hm_mu);
	return rc;
}

/* Forgets the homes an aborted transaction added (those at or after chunk0). */
static void home_rollback(co_store *s, uint64_t chunk0)
{
	pthread_mutex_lock(&s->hm_mu);
	if (gen_rebuild(s->pend, s->pend->cap, chunk0) != 0) {
		/* No memory for a new table: mark them in place; no reader takes a mark for a home. */
		for (size_t i = 0; i < s->pend->cap; i++)
			if (!id_free(s->pend->e[i].id) && s->pend->e[i].home >= chunk0)
				s->pend->e[i].home = UINT64_MAX; /* tombstone: never a real chunk id */
	}
	pthread_mutex_unlock(&s->hm_mu);
}

/* Frees the flushed generations no open reader can still need. Under hm_mu. */
static void release_retired(co_store *s)
{
	uint64_t oldest = UINT64_MAX;
	for (size_t i = 0; i < s->n_rd; i++)
		if (s->rd_ids[i] < oldest)
			oldest = s->rd_ids[i];
	homegen **pp = &s->retired;
	while (*pp != NULL) {
		homegen *g = *pp;
		if (g->flush_txn <= oldest) {
			*pp = g->next;
			gen_free(g);
		} else {
			pp = &g->next;
		}
	}
}

/*
 * The home of a trace for a reader inside txn (a snapshot registered by
 * begin_read): trace_home, else the generations in memory. Returns an LMDB
 * code (MDB_NOTFOUND for an unknown trace).
 */
static int home_of(co_store *s, MDB_txn *txn, const uint8_t *id, uint8_t homeb[8])
{
	MDB_val k = {16, (void *)id}, v;
	int rc = mdb_get(txn, s->trace_home, &k, &v);
	if (rc == 0) {
		if (v.mv_size != 8)
			return MDB_CORRUPTED;
		memcpy(homeb, v.mv_data, 8);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	pthread_mutex_lock(&s->hm_mu);
	const hment *e = gen_find(s->pend, id);
	for (const homegen *g = s->retired; e == NULL && g != NULL; g = g->next)
		e = gen_find(g, id);
	if (e != NULL && e->home != UINT64_MAX)
		tl_put_be64(homeb, e->home);
	else
		e = NULL;
	pthread_mutex_unlock(&s->hm_mu);
	return e != NULL ? 0 : MDB_NOTFOUND;
}

static int cmp_hment(const void *a, const void *b)
{
	return memcmp(((const hment *)a)->id, ((const hment *)b)->id, 16);
}

/* Writes the live generation into trace_home in id order, and home_mark = mark. Returns an LMDB code. */
static int flush_homes(co_store *s, MDB_txn *txn, uint64_t mark)
{
	homegen *g = s->pend;
	hment *v = tl_arena_alloc(&s->scratch, (g->n ? g->n : 1) * sizeof(*v));
	if (v == NULL)
		return ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < g->cap; i++)
		if (!id_free(g->e[i].id) && g->e[i].home != UINT64_MAX)
			v[n++] = g->e[i];
	qsort(v, n, sizeof(*v), cmp_hment);
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->trace_home, &c);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint8_t hb[8];
		tl_put_be64(hb, v[i].home);
		MDB_val k = {16, v[i].id}, hv = {8, hb};
		rc = mdb_cursor_put(c, &k, &hv, 0);
	}
	mdb_cursor_close(c);
	if (rc != 0)
		return rc;
	uint8_t mb[8];
	tl_put_be64(mb, mark);
	MDB_val mk = {sizeof(META_HOME_MARK_KEY) - 1, (void *)META_HOME_MARK_KEY}, mv = {8, mb};
	return mdb_put(txn, s->meta, &mk, &mv, 0);
}

/* After the commit of a flush: the live generation retires, a fresh one takes its place. */
static void homes_flushed(co_store *s, homegen *fresh, uint64_t flush_txn, uint64_t mark)
{
	pthread_mutex_lock(&s->hm_mu);
	homegen *g = s->pend;
	g->flush_txn = flush_txn;
	g->next = s->retired;
	s->retired = g;
	s->pend = fresh;
	s->home_mark = mark;
	release_retired(s);
	pthread_mutex_unlock(&s->hm_mu);
}

/* At open: the homes of traces first seen in chunks from home_mark on. Returns an LMDB code. */
static int recover_homes(co_store *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	MDB_val mk = {sizeof(META_HOME_MARK_KEY) - 1, (void *)META_HOME_MARK_KEY}, mv;
	rc = mdb_get(txn, s->meta, &mk, &mv);
	s->home_mark = rc == 0 && mv.mv_size == 8 ? tl_get_be64(mv.mv_data) : 0;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->spans, &c)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	uint8_t kb[8];
	tl_put_be64(kb, s->home_mark);
	MDB_val k = {8, kb}, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0) {
		tl_arena_reset(&s->scratch);
		st_chunk *ch =
		        threadline__store__v1__chunk__unpack(tl_arena_allocator(&s->scratch), v.mv_size, v.mv_data);
		if (ch != NULL && ch->trace_id.len == 16 && k.mv_size == 8 && !id_free(ch->trace_id.data)) {
			MDB_val hk = {16, ch->trace_id.data}, hv;
			int grc = mdb_get(txn, s->trace_home, &hk, &hv);
			if (grc == MDB_NOTFOUND && gen_find(s->pend, ch->trace_id.data) == NULL)
				grc = home_add(s, ch->trace_id.data, tl_get_be64(k.mv_data));
			if (grc != 0 && grc != MDB_NOTFOUND) {
				rc = grc;
				break;
			}
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	tl_arena_reset(&s->scratch);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Registers a read transaction's snapshot so the generations it may need stay. Under hm_mu. */
static int rd_add(co_store *s, uint64_t id)
{
	if (s->n_rd == s->cap_rd) {
		size_t ncap = s->cap_rd ? 2 * s->cap_rd : 16;
		uint64_t *n = realloc(s->rd_ids, ncap * sizeof(*n));
		if (n == NULL)
			return ENOMEM;
		s->rd_ids = n;
		s->cap_rd = ncap;
	}
	s->rd_ids[s->n_rd++] = id;
	return 0;
}

static void rd_remove(co_store *s, uint64_t id)
{
	for (size_t i = 0; i < s->n_rd; i++)
		if (s->rd_ids[i] == id) {
			s->rd_ids[i] = s->rd_ids[--s->n_rd];
			break;
		}
}

/* ---- open / close ---- */

static int migrate_v1(co_store *s, MDB_txn *txn);

static int open_dbis(co_store *s, const co_store_opts *o, tl_errmsg *err)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: begin: %s", mdb_strerror(rc));
	struct {
		const char *name;
		MDB_dbi *dbi;
	} dbs[] = {
	        {"meta", &s->meta},
	        {"spans", &s->spans},
	        {"trace_home", &s->trace_home},
	        {"trace_chunks", &s->trace_chunks},
	        {"trace_sums", &s->trace_sums},
	        {"trace_starts", &s->trace_starts},
	        {"resources", &s->resources},
	        {"dedupe", &s->dedupe},
	        {"lineage_raw", &s->lineage_raw},
	};
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
		if (rc != 0) {
			mdb_txn_abort(txn);
			return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: open db %s: %s", dbs[i].name,
			               mdb_strerror(rc));
		}
	}
	if ((rc = co_lineage_db_open(&s->lin, txn, err)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	if ((rc = co_index_db_open(txn, o->index_attrs, o->n_index_attrs, &s->ix, err)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	if ((rc = co_stats_db_open(txn, &s->st, err)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	s->dbs = (co_store_dbs){s->spans, s->trace_home, s->trace_chunks, s->trace_sums, s->trace_starts, s->resources};
	MDB_val k = {sizeof(META_VERSION_KEY) - 1, (void *)META_VERSION_KEY}, v;
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0) {
		const uint8_t *p = v.mv_data;
		uint32_t ver =
		        v.mv_size == 4 ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]) : 0;
		if (ver == 1) {
			rc = migrate_v1(s, txn);
			if (rc != 0) {
				mdb_txn_abort(txn);
				return tl_errf(err, rc < 0 ? rc : tl_err_from_lmdb(rc),
				               "store schema 1: rebuilding the trace tables and indexes: %s",
				               rc < 0 ? tl_strerror(rc) : mdb_strerror(rc));
			}
			rc = MDB_NOTFOUND; /* write the new version below */
		} else if (ver != CO_STORE_SCHEMA_VERSION) {
			mdb_txn_abort(txn);
			return tl_errf(err, TL_EUNSUPPORTED, "store schema version %u is not %d", ver,
			               CO_STORE_SCHEMA_VERSION);
		}
	}
	if (rc == MDB_NOTFOUND) {
		uint8_t buf[4];
		tl_put_be32(buf, CO_STORE_SCHEMA_VERSION);
		v.mv_size = 4;
		v.mv_data = buf;
		rc = mdb_put(txn, s->meta, &k, &v, 0);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: meta: %s", mdb_strerror(rc));
	}
	/* The append keys continue after the last stored ones. */
	MDB_dbi seqdbs[2] = {s->spans, s->lineage_raw};
	uint64_t *next[2] = {&s->next_chunk, &s->next_lineage};
	for (int i = 0; i < 2; i++) {
		MDB_cursor *c;
		*next[i] = 1;
		rc = mdb_cursor_open(txn, seqdbs[i], &c);
		if (rc == 0) {
			MDB_val ck, cv;
			rc = mdb_cursor_get(c, &ck, &cv, MDB_LAST);
			if (rc == 0 && ck.mv_size == 8)
				*next[i] = tl_get_be64(ck.mv_data) + 1;
			if (rc == MDB_NOTFOUND)
				rc = 0;
			mdb_cursor_close(c);
		}
		if (rc != 0) {
			mdb_txn_abort(txn);
			return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: last key: %s", mdb_strerror(rc));
		}
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: commit: %s", mdb_strerror(rc));
	return 0;
}

int co_store_open(const co_store_opts *o, co_store **out, tl_errmsg *err)
{
	*out = NULL;
	if (sodium_init() < 0)
		return tl_errf(err, TL_ESTORE, "libsodium failed to initialise");
	if (mkdir(o->dir, 0750) != 0 && errno != EEXIST)
		return tl_errf(err, -errno, "data dir %s: %s", o->dir, strerror(errno));
	co_store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* A growing writer must not starve behind a stream of queries. */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->resize, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&s->map_mu, NULL);
	pthread_mutex_init(&s->hm_mu, NULL);
	s->flush_at = o->home_flush_at != 0 && o->home_flush_at < HOME_FLUSH_AT ? o->home_flush_at : HOME_FLUSH_AT;
	if ((s->pend = gen_new(HOME_GEN_CAP)) == NULL) {
		co_store_close(s);
		return tl_errf(err, -ENOMEM, "out of memory");
	}
	tl_arena_init(&s->scratch, SCRATCH_BLOCK, 0);
	tl_arena_set_retain(&s->scratch, 16 * SCRATCH_BLOCK);
	s->map_size = align_up(o->map_size != 0 ? o->map_size : DEFAULT_MAP, MAP_ALIGN);
	s->map_max = o->map_size_max != 0 ? o->map_size_max : DEFAULT_MAP_MAX;
	if (s->map_max < s->map_size)
		s->map_max = s->map_size;

	int rc = mdb_env_create(&s->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(s->env, 64);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(s->env, o->max_readers != 0 ? o->max_readers : 126);
	if (rc == 0)
		rc = mdb_env_set_mapsize(s->env, s->map_size);
	if (rc == 0)
		rc = mdb_env_open(s->env, o->dir, MDB_NOTLS | (o->no_sync ? MDB_NOSYNC : 0), 0640);
	if (rc != 0) {
		tl_errf(err, tl_err_from_lmdb(rc), "lmdb: open %s: %s", o->dir, mdb_strerror(rc));
		rc = tl_err_from_lmdb(rc);
		co_store_close(s);
		return rc;
	}
	int dead = 0;
	rc = mdb_reader_check(s->env, &dead);
	if (rc != 0) {
		tl_errf(err, tl_err_from_lmdb(rc), "lmdb: reader check: %s", mdb_strerror(rc));
		rc = tl_err_from_lmdb(rc);
		co_store_close(s);
		return rc;
	}
	s->stale_readers = dead;
	/* The file may already be larger than asked for (an earlier run grew it). */
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) == 0 && info.me_mapsize > s->map_size)
		s->map_size = info.me_mapsize;
	if ((rc = open_dbis(s, o, err)) != 0) {
		co_store_close(s);
		return rc;
	}
	if ((rc = recover_homes(s)) != 0) {
		tl_errf(err, rc == ENOMEM ? -ENOMEM : tl_err_from_lmdb(rc), "lmdb: reading recent chunks: %s",
		        mdb_strerror(rc));
		rc = rc == ENOMEM ? -ENOMEM : tl_err_from_lmdb(rc);
		co_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void co_store_close(co_store *s)
{
	if (s == NULL)
		return;
	if (s->env != NULL)
		mdb_env_close(s->env);
	tl_arena_fini(&s->scratch);
	co_lineage_db_fini(&s->lin);
	co_index_db_free(s->ix);
	co_stats_db_free(s->st);
	pthread_rwlock_destroy(&s->resize);
	pthread_mutex_destroy(&s->map_mu);
	pthread_mutex_destroy(&s->hm_mu);
	gen_free(s->pend);
	while (s->retired != NULL) {
		homegen *g = s->retired;
		s->retired = g->next;
		gen_free(g);
	}
	free(s->rd_ids);
	free(s);
}

int co_store_sync(co_store *s)
{
	int rc = mdb_env_sync(s->env, 1);
	return rc == 0 ? 0 : tl_err_from_lmdb(rc);
}

int co_store_stale_readers(const co_store *s)
{
	return s->stale_readers;
}

size_t co_store_map_size(co_store *s)
{
	pthread_mutex_lock(&s->map_mu);
	size_t v = s->map_size;
	pthread_mutex_unlock(&s->map_mu);
	return v;
}

/* Doubles the map with no transaction open in this process. Returns an LMDB code, or MDB_MAP_FULL at the cap. */
static int grow_map(co_store *s)
{
	pthread_mutex_lock(&s->map_mu);
	size_t cur = s->map_size;
	pthread_mutex_unlock(&s->map_mu);
	if (cur >= s->map_max)
		return MDB_MAP_FULL;
	size_t want = cur > s->map_max / 2 ? s->map_max : cur * 2;
	want = align_up(want, MAP_ALIGN);
	pthread_rwlock_wrlock(&s->resize);
	int rc = mdb_env_set_mapsize(s->env, want);
	pthread_rwlock_unlock(&s->resize);
	if (rc == 0) {
		pthread_mutex_lock(&s->map_mu);
		s->map_size = want;
		pthread_mutex_unlock(&s->map_mu);
	}
	return rc;
}

/* Another process grew the map: adopt its size (no transaction may be open). */
static int adopt_map(co_store *s)
{
	pthread_rwlock_wrlock(&s->resize);
	int rc = mdb_env_set_mapsize(s->env, 0);
	MDB_envinfo info;
	if (rc == 0 && mdb_env_info(s->env, &info) == 0) {
		pthread_mutex_lock(&s->map_mu);
		s->map_size = info.me_mapsize;
		pthread_mutex_unlock(&s->map_mu);
	}
	pthread_rwlock_unlock(&s->resize);
	return rc;
}

/* Begins a read transaction under the shared lock; end with end_read(). */
static int begin_read(co_store *s, MDB_txn **txn)
{
	for (;;) {
		pthread_rwlock_rdlock(&s->resize);
		/* Begun and registered under hm_mu: no generation this snapshot needs is freed in between. */
		pthread_mutex_lock(&s->hm_mu);
		int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
		if (rc == 0 && (rc = rd_add(s, mdb_txn_id(*txn))) != 0)
			mdb_txn_abort(*txn);
		pthread_mutex_unlock(&s->hm_mu);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&s->resize);
		if (rc != MDB_MAP_RESIZED)
			return rc;
		if ((rc = adopt_map(s)) != 0)
			return rc;
	}
}

static void end_read(co_store *s, MDB_txn *txn)
{
	pthread_mutex_lock(&s->hm_mu);
	rd_remove(s, mdb_txn_id(txn));
	release_retired(s);
	pthread_mutex_unlock(&s->hm_mu);
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->resize);
}

int co_store_read_begin(co_store *s, MDB_txn **txn)
{
	int rc = begin_read(s, txn);
	return rc == 0 ? 0 : tl_err_from_lmdb(rc);
}

void co_store_read_end(co_store *s, MDB_txn *txn)
{
	end_read(s, txn);
}

const co_lineage_db *co_store_lineage_db(const co_store *s)
{
	return &s->lin;
}

const co_index_db *co_store_index_db(const co_store *s)
{
	return s->ix;
}

const co_stats_db *co_store_stats_db(const co_store *s)
{
	return s->st;
}

const co_store_dbs *co_store_get_dbs(const co_store *s)
{
	return &s->dbs;
}

/* ---- commit ---- */

/* Spans of one ScopeSpans share a context: resource hash, schema urls, scope. */
typedef struct sctx {
	tl_pb_resource_spans *rs;
	tl_pb_scope_spans *ss;
	const uint8_t *res_hash; /* 16 bytes in scratch */
	const char *service;     /* service.name, or NULL */
} sctx;

typedef struct sref {
	tl_pb_span *span;
	uint32_t ctx;
	uint32_t trace;
} sref;

typedef struct tacc {
	const uint8_t *id;
	uint32_t count, off;
	uint64_t start, end, errors;
	const char *root_service, *root_name;
	bool has_root;
} tacc;

static bool is_root(const tl_pb_span *sp)
{
	if (sp->parent_span_id.len == 0)
		return true;
	for (size_t i = 0; i < sp->parent_span_id.len; i++)
		if (sp->parent_span_id.data[i] != 0)
			return false;
	return true;
}

/* Hashes the encoded resource and stores it once. Returns an LMDB code. */
static int put_resource(co_store *s, MDB_txn *txn, const tl_pb_resource *r, uint8_t *hash_out)
{
	size_t len = r != NULL ? protobuf_c_message_get_packed_size(&r->base) : 0;
	uint8_t *buf = tl_arena_alloc(&s->scratch, len);
	if (buf == NULL)
		return ENOMEM;
	if (r != NULL)
		protobuf_c_message_pack(&r->base, buf);
	crypto_generichash(hash_out, 16, buf, len, NULL, 0);
	MDB_val k = {16, hash_out}, v = {len, buf};
	int rc = mdb_put(txn, s->resources, &k, &v, MDB_NOOVERWRITE);
	return rc == MDB_KEYEXIST ? 0 : rc;
}

static void *scratch_calloc(co_store *s, size_t n, size_t sz)
{
	if (n != 0 && sz > SIZE_MAX / n)
		return NULL;
	void *p = tl_arena_alloc(&s->scratch, n * sz);
	if (p != NULL)
		memset(p, 0, n * sz);
	return p;
}

/* Writes a message into a reserved LMDB value, so it is encoded once and copied never. */
static int put_packed(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, const ProtobufCMessage *m, unsigned flags)
{
	MDB_val v;
	v.mv_size = protobuf_c_message_get_packed_size(m);
	int rc = mdb_put(txn, dbi, k, &v, flags | MDB_RESERVE);
	if (rc != 0)
		return rc;
	protobuf_c_message_pack(m, v.mv_data);
	return 0;
}

/* The trace's start in trace_starts: start || trace id -> home. */
static int put_start(co_store *s, MDB_txn *txn, uint64_t start, const uint8_t *id, const uint8_t *homeb, bool del)
{
	uint8_t tk[TIME_KEY_LEN];
	tl_put_be64(tk, start);
	memcpy(tk + 8, id, 16);
	MDB_val k = {TIME_KEY_LEN, tk}, v = {8, (void *)homeb};
	int rc = del ? mdb_del(txn, s->trace_starts, &k, NULL) : mdb_put(txn, s->trace_starts, &k, &v, 0);
	return rc == MDB_NOTFOUND && del ? 0 : rc;
}

/*
 * Files chunk `id` of trace t: its home (the trace's first chunk), its entry
 * in the trace's chunk list, the summary and the start. A new trace's home is
 * this chunk, the newest key of trace_chunks and trace_sums, so both are
 * appends; a known trace's entries sit near the end, with the traces that are
 * still arriving. Returns an LMDB code.
 */
static int file_chunk(co_store *s, MDB_txn *txn, const tacc *t, uint64_t id)
{
	uint8_t homeb[8];
	bool fresh = false;
	int rc;
	/* A trace still arriving is in the live generation: no B-tree lookup for it. */
	hment *e = id_free(t->id) ? NULL : (hment *)gen_find(s->pend, t->id);
	if (e != NULL && e->home != UINT64_MAX) {
		tl_put_be64(homeb, e->home);
	} else {
		MDB_val hk = {16, (void *)t->id}, hv;
		rc = mdb_get(txn, s->trace_home, &hk, &hv);
		if (rc == 0) {
			if (hv.mv_size != 8)
				return MDB_CORRUPTED;
			memcpy(homeb, hv.mv_data, 8);
		} else if (rc != MDB_NOTFOUND) {
			return rc;
		} else if (id_free(t->id)) {
			/* An all-zero id (invalid in OTLP, but not refused upstream) cannot live in the
			 * in-memory table, whose free slots are zero: its home goes straight to trace_home. */
			fresh = true;
			tl_put_be64(homeb, id);
			hv = (MDB_val){8, homeb};
			if ((rc = mdb_put(txn, s->trace_home, &hk, &hv, 0)) != 0)
				return rc;
		} else {
			/* A new trace: this chunk is its home, kept in memory until the next flush. */
			fresh = true;
			tl_put_be64(homeb, id);
			if (e != NULL) { /* the slot of an entry an aborted transaction added */
				pthread_mutex_lock(&s->hm_mu);
				e->home = id;
				pthread_mutex_unlock(&s->hm_mu);
			} else if ((rc = home_add(s, t->id, id)) != 0) {
				return rc;
			}
		}
	}
	uint8_t ck[CHUNKS_KEY_LEN];
	memcpy(ck, homeb, 8);
	tl_put_be64(ck + 8, id);
	MDB_val ckv = {CHUNKS_KEY_LEN, ck}, empty = {0, NULL};
	if ((rc = mdb_put(txn, s->trace_chunks, &ckv, &empty, fresh ? MDB_APPEND : 0)) != 0)
		return rc;

	MDB_val sk = {8, homeb}, sv;
	st_summary sum = THREADLINE__STORE__V1__TRACE_SUMMARY__INIT;
	st_summary *old = NULL;
	if (!fresh) {
		rc = mdb_get(txn, s->trace_sums, &sk, &sv);
		if (rc == 0)
			/* An undecodable summary is rebuilt from what this chunk brings rather than
			 * blocking every later batch of the trace. */
			old = threadline__store__v1__trace_summary__unpack(tl_arena_allocator(&s->scratch), sv.mv_size,
			                                                   sv.mv_data);
		else if (rc != MDB_NOTFOUND)
			return rc;
	}
	if (old != NULL) {
		sum = *old;
		sum.chunk_count++;
		sum.span_count += t->count;
		sum.error_count += t->errors;
		if (t->end > sum.end_unix_nano)
			sum.end_unix_nano = t->end;
		if (!sum.has_root && t->has_root) {
			sum.has_root = true;
			sum.root_service = (char *)(t->root_service != NULL ? t->root_service : "");
			sum.root_name = (char *)(t->root_name != NULL ? t->root_name : "");
		}
		if (t->start < sum.start_unix_nano) {
			/* trace_starts holds the trace's current start only. */
			if ((rc = put_start(s, txn, sum.start_unix_nano, t->id, homeb, true)) != 0 ||
			    (rc = put_start(s, txn, t->start, t->id, homeb, false)) != 0)
				return rc;
			sum.start_unix_nano = t->start;
		}
	} else {
		sum.start_unix_nano = t->start;
		sum.end_unix_nano = t->end;
		sum.span_count = t->count;
		sum.error_count = t->errors;
		sum.chunk_count = 1;
		sum.has_root = t->has_root;
		if (t->has_root) {
			sum.root_service = (char *)(t->root_service != NULL ? t->root_service : "");
			sum.root_name = (char *)(t->root_name != NULL ? t->root_name : "");
		}
		if ((rc = put_start(s, txn, t->start, t->id, homeb, false)) != 0)
			return rc;
	}
	return put_packed(txn, s->trace_sums, &sk, &sum.base, fresh ? MDB_APPEND : 0);
}

/* Counts spans and ScopeSpans so the scratch arrays are sized once. */
static void count_batch(const co_batch *b, size_t *n_spans, size_t *n_ctx, size_t *n_rs)
{
	*n_spans = *n_ctx = *n_rs = 0;
	for (size_t r = 0; r < b->n_traces; r++) {
		const tl_pb_export_req *req = b->traces[r];
		if (req == NULL)
			continue;
		*n_rs += req->n_resource_spans;
		for (size_t i = 0; i < req->n_resource_spans; i++) {
			const tl_pb_resource_spans *rs = req->resource_spans[i];
			*n_ctx += rs->n_scope_spans;
			for (size_t j = 0; j < rs->n_scope_spans; j++)
				*n_spans += rs->scope_spans[j]->n_spans;
		}
	}
}

static int store_trace(co_store *s, MDB_txn *txn, const co_batch *b, const sctx *ctx, const sref *refs,
                       const uint32_t *order, tl_pb_span **spans, const tacc *t, uint64_t now_ns)
{
	/* Groups: runs of spans that came from the same ScopeSpans. */
	size_t ng = 0;
	uint32_t prev = UINT32_MAX;
	for (uint32_t i = 0; i < t->count; i++) {
		const sref *r = &refs[order[t->off + i]];
		spans[t->off + i] = r->span;
		if (r->ctx != prev)
			ng++;
		prev = r->ctx;
	}
	st_group *groups = scratch_calloc(s, ng, sizeof(*groups));
	st_group **gp = scratch_calloc(s, ng, sizeof(*gp));
	if (groups == NULL || gp == NULL)
		return ENOMEM;
	size_t g = SIZE_MAX;
	prev = UINT32_MAX;
	for (uint32_t i = 0; i < t->count; i++) {
		const sref *r = &refs[order[t->off + i]];
		if (r->ctx != prev) {
			const sctx *c = &ctx[r->ctx];
			g++;
			threadline__store__v1__chunk_group__init(&groups[g]);
			gp[g] = &groups[g];
			groups[g].resource_hash.len = 16;
			groups[g].resource_hash.data = (uint8_t *)c->res_hash;
			groups[g].resource_schema_url = c->rs->schema_url;
			groups[g].scope = c->ss->scope;
			groups[g].scope_schema_url = c->ss->schema_url;
			groups[g].spans = &spans[t->off + i];
			prev = r->ctx;
		}
		groups[g].n_spans++;
	}
	st_chunk ch = THREADLINE__STORE__V1__CHUNK__INIT;
	ch.trace_id.len = 16;
	ch.trace_id.data = (uint8_t *)t->id;
	ch.n_groups = ng;
	ch.groups = gp;
	ch.agent_id.len = CO_AGENT_ID_LEN;
	ch.agent_id.data = (uint8_t *)b->agent_id;
	ch.seq = b->seq;
	ch.stored_unix_nano = now_ns;

	uint64_t id = s->next_chunk;
	uint8_t ck[8];
	tl_put_be64(ck, id);
	MDB_val k = {8, ck};
	int rc = put_packed(txn, s->spans, &k, &ch.base, MDB_APPEND);
	if (rc != 0)
		return rc;
	s->next_chunk++;

	/* The chunk's spans in order with their resource and service, for the search indexes. */
	co_index_span *is = scratch_calloc(s, t->count, sizeof(*is));
	if (t->count && is == NULL)
		return ENOMEM;
	for (uint32_t i = 0; i < t->count; i++) {
		const sref *r = &refs[order[t->off + i]];
		const sctx *c = &ctx[r->ctx];
		is[i] = (co_index_span){r->span, c->rs->resource, c->service};
	}
	if ((rc = co_index_put_trace(s->ix, txn, &s->scratch, t->id, id, is, t->count)) != 0)
		return rc;
	return file_chunk(s, txn, t, id);
}

static int store_lineage(co_store *s, MDB_txn *txn, const co_batch *b)
{
	for (size_t i = 0; i < b->n_lineage; i++) {
		st_raw raw = THREADLINE__STORE__V1__RAW_RECORD__INIT;
		raw.agent_id.len = CO_AGENT_ID_LEN;
		raw.agent_id.data = (uint8_t *)b->agent_id;
		raw.seq = b->seq;
		raw.accepted_unix_nano = b->lineage_accepted != NULL ? b->lineage_accepted[i] : 0;
		raw.body = b->lineage[i];
		uint8_t kb[8];
		tl_put_be64(kb, s->next_lineage);
		MDB_val k = {8, kb};
		int rc = put_packed(txn, s->lineage_raw, &k, &raw.base, MDB_APPEND);
		if (rc != 0)
			return rc;
		s->next_lineage++;
		if ((rc = co_lineage_apply_event(&s->lin, txn, raw.body.data, raw.body.len)) != 0)
			return rc;
	}
	return 0;
}

/* Stores one batch inside txn. Returns an LMDB code (or ENOMEM). */
static int commit_batch(co_store *s, MDB_txn *txn, co_batch *b, uint64_t now_ns)
{
	uint8_t dk[DEDUPE_KEY_LEN];
	memcpy(dk, b->agent_id, CO_AGENT_ID_LEN);
	tl_put_be64(dk + CO_AGENT_ID_LEN, b->seq);
	MDB_val dkey = {DEDUPE_KEY_LEN, dk}, dval;
	int rc = mdb_get(txn, s->dedupe, &dkey, &dval);
	if (rc == 0) {
		b->status = CO_BATCH_DUPLICATE;
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return rc;

	tl_arena_reset(&s->scratch);
	size_t n_spans, n_ctx, n_rs;
	count_batch(b, &n_spans, &n_ctx, &n_rs);
	if (n_spans > UINT32_MAX / 4 || n_ctx > UINT32_MAX / 4)
		return ENOMEM;
	sctx *ctx = scratch_calloc(s, n_ctx, sizeof(*ctx));
	sref *refs = scratch_calloc(s, n_spans, sizeof(*refs));
	tacc *tr = scratch_calloc(s, n_spans, sizeof(*tr));
	uint32_t *order = scratch_calloc(s, n_spans, sizeof(*order));
	tl_pb_span **spans = scratch_calloc(s, n_spans, sizeof(*spans));
	size_t hcap = 16;
	while (hcap < n_spans * 2)
		hcap *= 2;
	int32_t *ht = tl_arena_alloc(&s->scratch, hcap * sizeof(*ht));
	if ((n_ctx && !ctx) || (n_spans && (!refs || !tr || !order || !spans)) || ht == NULL)
		return ENOMEM;
	memset(ht, 0xff, hcap * sizeof(*ht));

	/* One pass over the spans: contexts, trace table, per-trace summaries. */
	size_t nc = 0, nr = 0, nt = 0, skipped = 0;
	for (size_t r = 0; r < b->n_traces; r++) {
		tl_pb_export_req *req = b->traces[r];
		if (req == NULL)
			continue;
		for (size_t i = 0; i < req->n_resource_spans; i++) {
			tl_pb_resource_spans *rs = req->resource_spans[i];
			uint8_t *hash = NULL;
			const char *svc = tl_otlp_service_name(rs->resource);
			for (size_t j = 0; j < rs->n_scope_spans; j++) {
				tl_pb_scope_spans *ss = rs->scope_spans[j];
				if (ss->n_spans == 0)
					continue;
				if (hash == NULL) {
					if ((hash = tl_arena_alloc(&s->scratch, 16)) == NULL)
						return ENOMEM;
					if ((rc = put_resource(s, txn, rs->resource, hash)) != 0)
						return rc;
				}
				uint32_t ci = (uint32_t)nc++;
				ctx[ci] = (sctx){rs, ss, hash, svc};
				for (size_t k = 0; k < ss->n_spans; k++) {
					tl_pb_span *sp = ss->spans[k];
					if (sp->trace_id.len != 16) {
						skipped++;
						continue;
					}
					uint64_t h =
					        tl_get_be64(sp->trace_id.data) ^ tl_get_be64(sp->trace_id.data + 8);
					h *= UINT64_C(0x9E3779B97F4A7C15);
					size_t slot = (size_t)(h >> 32) & (hcap - 1);
					while (ht[slot] >= 0 && memcmp(tr[ht[slot]].id, sp->trace_id.data, 16) != 0)
						slot = (slot + 1) & (hcap - 1);
					tacc *t;
					if (ht[slot] < 0) {
						ht[slot] = (int32_t)nt;
						t = &tr[nt++];
						t->id = sp->trace_id.data;
						t->start = UINT64_MAX;
					} else {
						t = &tr[ht[slot]];
					}
					t->count++;
					if (sp->start_time_unix_nano < t->start)
						t->start = sp->start_time_unix_nano;
					if (sp->end_time_unix_nano > t->end)
						t->end = sp->end_time_unix_nano;
					if (tl_otlp_span_failed(sp))
						t->errors++;
					if (!t->has_root && is_root(sp)) {
						t->has_root = true;
						t->root_service = svc;
						t->root_name = sp->name;
					}
					refs[nr++] = (sref){sp, ci, (uint32_t)(t - tr)};
					if ((rc = co_lineage_apply_span(&s->lin, txn, sp)) != 0)
						return rc;
				}
			}
		}
	}
	/* Counting sort by trace, keeping arrival order within a trace. */
	uint32_t off = 0;
	for (size_t t = 0; t < nt; t++) {
		tr[t].off = off;
		off += tr[t].count;
	}
	uint32_t *fill = scratch_calloc(s, nt, sizeof(*fill));
	if (nt && fill == NULL)
		return ENOMEM;
	for (size_t i = 0; i < nr; i++) {
		uint32_t t = refs[i].trace;
		order[tr[t].off + fill[t]++] = (uint32_t)i;
	}
	for (size_t t = 0; t < nt; t++)
		if ((rc = store_trace(s, txn, b, ctx, refs, order, spans, &tr[t], now_ns)) != 0)
			return rc;
	/* Latency histograms: one read-modify-write per (service, operation, minute) of the batch. */
	co_stats_span *stsp = scratch_calloc(s, nr, sizeof(*stsp));
	if (nr && stsp == NULL)
		return ENOMEM;
	for (size_t i = 0; i < nr; i++)
		stsp[i] = (co_stats_span){refs[i].span, ctx[refs[i].ctx].service};
	if ((rc = co_stats_put_batch(s->st, txn, &s->scratch, stsp, nr)) != 0)
		return rc;
	if ((rc = store_lineage(s, txn, b)) != 0)
		return rc;
	uint8_t nowb[8];
	tl_put_be64(nowb, now_ns);
	dval.mv_size = 8;
	dval.mv_data = nowb;
	if ((rc = mdb_put(txn, s->dedupe, &dkey, &dval, 0)) != 0)
		return rc;
	b->status = CO_BATCH_OK;
	b->spans_stored = nr;
	b->spans_skipped = skipped;
	return 0;
}

static void reset_status(co_batch *const *batches, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		batches[i]->status = CO_BATCH_PENDING;
		batches[i]->spans_stored = 0;
		batches[i]->spans_skipped = 0;
	}
}

int co_store_commit(co_store *s, co_batch *const *batches, size_t n, uint64_t now_ns)
{
	for (;;) {
		reset_status(batches, n);
		uint64_t chunk0 = s->next_chunk, lin0 = s->next_lineage, flush_txn = 0;
		homegen *fresh = NULL;
		MDB_txn *txn;
		pthread_rwlock_rdlock(&s->resize);
		int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (rc == 0) {
			for (size_t i = 0; i < n && rc == 0; i++)
				rc = commit_batch(s, txn, batches[i], now_ns);
			if (rc == 0)
				rc = co_index_flush(s->ix, txn);
			if (rc == 0 &&
			    (s->pend->n >= s->flush_at || s->next_chunk - s->home_mark >= HOME_FLUSH_CHUNKS) &&
			    (fresh = gen_new(HOME_GEN_CAP)) != NULL) {
				rc = flush_homes(s, txn, s->next_chunk);
				flush_txn = mdb_txn_id(txn);
			}
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		co_index_discard(s->ix);
		pthread_rwlock_unlock(&s->resize);
		tl_arena_reset(&s->scratch);
		if (rc == 0) {
			if (fresh != NULL)
				homes_flushed(s, fresh, flush_txn, s->next_chunk);
			return 0;
		}
		gen_free(fresh);
		home_rollback(s, chunk0);
		reset_status(batches, n);
		s->next_chunk = chunk0;
		s->next_lineage = lin0;
		if (rc == MDB_MAP_RESIZED) {
			if ((rc = adopt_map(s)) != 0)
				return tl_err_from_lmdb(rc);
			continue;
		}
		if (rc == MDB_MAP_FULL) {
			if ((rc = grow_map(s)) != 0)
				return rc == MDB_MAP_FULL ? TL_EFULL : tl_err_from_lmdb(rc);
			continue;
		}
		if (rc == ENOMEM)
			return -ENOMEM;
		return tl_err_from_lmdb(rc);
	}
}

int co_store_write(co_store *s, co_store_write_fn fn, void *ud)
{
	for (;;) {
		MDB_txn *txn;
		pthread_rwlock_rdlock(&s->resize);
		int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (rc == 0) {
			rc = fn(txn, ud);
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		pthread_rwlock_unlock(&s->resize);
		if (rc == MDB_MAP_RESIZED) {
			if ((rc = adopt_map(s)) != 0)
				return tl_err_from_lmdb(rc);
			continue;
		}
		if (rc == MDB_MAP_FULL) {
			if ((rc = grow_map(s)) != 0)
				return rc == MDB_MAP_FULL ? TL_EFULL : tl_err_from_lmdb(rc);
			continue;
		}
		if (rc == 0 || rc < 0)
			return rc;
		return rc == ENOMEM ? -ENOMEM : tl_err_from_lmdb(rc);
	}
}

int co_store_open_db(co_store *s, const char *name, MDB_dbi *out)
{
	MDB_txn *txn;
	pthread_rwlock_rdlock(&s->resize);
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, name, MDB_CREATE, out);
		rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
	}
	pthread_rwlock_unlock(&s->resize);
	return rc == 0 ? 0 : tl_err_from_lmdb(rc);
}

/* ---- reading ---- */

/* A value that does not unpack into the arena: the arena's cap, or corruption? */
static int unpack_failure(const ProtobufCMessageDescriptor *d, const MDB_val *v)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, v->mv_size, v->mv_data);
	if (m == NULL)
		return TL_ECORRUPT;
	protobuf_c_message_free_unpacked(m, NULL);
	return TL_ELIMIT;
}

int co_store_each_chunk(co_store *s, MDB_txn *txn, const uint8_t trace_id[16], co_chunk_fn fn, void *ud)
{
	const co_store_dbs *d = &s->dbs;
	uint8_t kb[CHUNKS_KEY_LEN] = {0};
	int rc = home_of(s, txn, trace_id, kb);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, d->trace_chunks, &c)) != 0)
		return tl_err_from_lmdb(rc);
	MDB_val k = {CHUNKS_KEY_LEN, kb}, v;
	int ret = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && ret == 0 && k.mv_size == CHUNKS_KEY_LEN && memcmp(k.mv_data, kb, 8) == 0) {
		MDB_val ck = {8, (uint8_t *)k.mv_data + 8}, cv;
		int grc = mdb_get(txn, d->spans, &ck, &cv);
		if (grc == 0)
			ret = fn(tl_get_be64(ck.mv_data), cv.mv_data, cv.mv_size, ud);
		else if (grc != MDB_NOTFOUND) /* a chunk that retention removed */
			ret = tl_err_from_lmdb(grc);
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	return ret;
}

typedef struct loader {
	tl_arena *a;
	st_chunk **arr;
	size_t n, cap;
} loader;

static int load_one(uint64_t chunk_id, const uint8_t *val, size_t len, void *ud)
{
	(void)chunk_id;
	loader *l = ud;
	st_chunk *ch = threadline__store__v1__chunk__unpack(tl_arena_allocator(l->a), len, val);
	if (ch == NULL)
		return unpack_failure(&threadline__store__v1__chunk__descriptor, &(MDB_val){len, (void *)val});
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		st_chunk **na = tl_arena_alloc(l->a, ncap * sizeof(*na));
		if (na == NULL)
			return TL_ELIMIT;
		if (l->n)
			memcpy(na, l->arr, l->n * sizeof(*na));
		l->arr = na;
		l->cap = ncap;
	}
	l->arr[l->n++] = ch;
	return 0;
}

static int load_chunks(co_store *s, MDB_txn *txn, const uint8_t *id, tl_arena *a, st_chunk ***out, size_t *nout)
{
	loader l = {.a = a};
	int rc = co_store_each_chunk(s, txn, id, load_one, &l);
	if (rc != 0)
		return rc;
	if (l.n == 0)
		return TL_ENOTFOUND;
	*out = l.arr;
	*nout = l.n;
	return 0;
}

typedef struct ores {
	const uint8_t *hash; /* 16 bytes, or NULL when the chunk named none */
	const char *schema;
	tl_pb_resource *res;
	size_t ngroups, fill;
} ores;

typedef struct ogroup {
	size_t res;
	const uint8_t *sk; /* the encoded scope, for grouping */
	size_t sklen;
	const char *sschema;
	tl_pb_scope *scope;
	size_t n, fill;
	tl_pb_span **spans;
} ogroup;

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool hash_eq(const uint8_t *a, const uint8_t *b)
{
	return a == NULL || b == NULL ? a == b : memcmp(a, b, 16) == 0;
}

int co_store_regroup(co_store *s, MDB_txn *txn, const co_store_piece *pieces, size_t np, tl_arena *a,
                     tl_pb_resource_spans ***out, size_t *n_out, size_t *unreadable)
{
	*out = NULL;
	*n_out = 0;
	size_t cap = np ? np : 1;
	ores *rv = tl_arena_alloc(a, cap * sizeof(*rv));
	ogroup *gv = tl_arena_alloc(a, cap * sizeof(*gv));
	size_t *gmap = tl_arena_alloc(a, cap * sizeof(*gmap));
	if (rv == NULL || gv == NULL || gmap == NULL)
		return TL_ELIMIT;
	size_t nr = 0, ng = 0;
	for (size_t i = 0; i < np; i++) {
		const st_group *g = pieces[i].g;
		const uint8_t *hash = g->resource_hash.len == 16 ? g->resource_hash.data : NULL;
		size_t r;
		for (r = 0; r < nr; r++)
			if (hash_eq(rv[r].hash, hash) && str_eq(rv[r].schema, g->resource_schema_url))
				break;
		if (r == nr)
			rv[nr++] = (ores){.hash = hash, .schema = g->resource_schema_url};
		size_t sklen = g->scope != NULL ? protobuf_c_message_get_packed_size(&g->scope->base) : 0;
		uint8_t *sk = tl_arena_alloc(a, sklen ? sklen : 1);
		if (sk == NULL)
			return TL_ELIMIT;
		if (g->scope != NULL)
			protobuf_c_message_pack(&g->scope->base, sk);
		size_t o;
		for (o = 0; o < ng; o++)
			if (gv[o].res == r && gv[o].sklen == sklen && memcmp(gv[o].sk, sk, sklen) == 0 &&
			    str_eq(gv[o].sschema, g->scope_schema_url))
				break;
		if (o == ng) {
			gv[ng++] = (ogroup){
			        .res = r, .sk = sk, .sklen = sklen, .sschema = g->scope_schema_url, .scope = g->scope};
			rv[r].ngroups++;
		}
		gv[o].n += pieces[i].n;
		gmap[i] = o;
	}
	for (size_t o = 0; o < ng; o++)
		if ((gv[o].spans = tl_arena_alloc(a, (gv[o].n ? gv[o].n : 1) * sizeof(tl_pb_span *))) == NULL)
			return TL_ELIMIT;
	for (size_t i = 0; i < np; i++) {
		ogroup *o = &gv[gmap[i]];
		memcpy(o->spans + o->fill, pieces[i].g->spans + pieces[i].from, pieces[i].n * sizeof(tl_pb_span *));
		o->fill += pieces[i].n;
	}
	/* Resources, decoded into the arena before the transaction ends. */
	for (size_t r = 0; r < nr; r++) {
		if (rv[r].hash == NULL)
			continue;
		MDB_val k = {16, (void *)rv[r].hash}, v;
		int mrc = mdb_get(txn, s->resources, &k, &v);
		if (mrc == MDB_NOTFOUND) {
			if (unreadable != NULL)
				(*unreadable)++;
			continue; /* keep the spans; the resource is shown as unknown */
		}
		if (mrc != 0)
			return tl_err_from_lmdb(mrc);
		rv[r].res = opentelemetry__proto__resource__v1__resource__unpack(tl_arena_allocator(a), v.mv_size,
		                                                                 v.mv_data);
		if (rv[r].res == NULL) {
			if (unpack_failure(&opentelemetry__proto__resource__v1__resource__descriptor, &v) == TL_ELIMIT)
				return TL_ELIMIT;
			if (unreadable != NULL)
				(*unreadable)++;
		}
	}
	tl_pb_resource_spans **rsv = tl_arena_alloc(a, (nr ? nr : 1) * sizeof(*rsv));
	tl_pb_resource_spans *rsa = tl_arena_alloc(a, (nr ? nr : 1) * sizeof(*rsa));
	tl_pb_scope_spans **ssv = tl_arena_alloc(a, (ng ? ng : 1) * sizeof(*ssv));
	tl_pb_scope_spans *ssa = tl_arena_alloc(a, (ng ? ng : 1) * sizeof(*ssa));
	if (rsv == NULL || rsa == NULL || ssv == NULL || ssa == NULL)
		return TL_ELIMIT;
	size_t off = 0;
	for (size_t r = 0; r < nr; r++) {
		opentelemetry__proto__trace__v1__resource_spans__init(&rsa[r]);
		rsv[r] = &rsa[r];
		rsa[r].resource = rv[r].res;
		rsa[r].schema_url = (char *)(rv[r].schema != NULL ? rv[r].schema : "");
		rsa[r].scope_spans = &ssv[off];
		rsa[r].n_scope_spans = rv[r].ngroups;
		rv[r].fill = off;
		off += rv[r].ngroups;
	}
	for (size_t o = 0; o < ng; o++) {
		opentelemetry__proto__trace__v1__scope_spans__init(&ssa[o]);
		ssa[o].scope = gv[o].scope;
		ssa[o].schema_url = (char *)(gv[o].sschema != NULL ? gv[o].sschema : "");
		ssa[o].spans = gv[o].spans;
		ssa[o].n_spans = gv[o].n;
		ssv[rv[gv[o].res].fill++] = &ssa[o];
	}
	*out = rsv;
	*n_out = nr;
	return 0;
}

/* A trace's chunks as one result: whole groups, regrouped by resource and scope. */
static int build_result(co_store *s, MDB_txn *txn, const uint8_t *id, st_chunk **chunks, size_t nch, tl_arena *a,
                        tl_pb_trace_result **out)
{
	size_t np = 0;
	for (size_t i = 0; i < nch; i++)
		np += chunks[i]->n_groups;
	co_store_piece *pv = tl_arena_alloc(a, (np ? np : 1) * sizeof(*pv));
	tl_pb_trace_result *res = tl_arena_alloc(a, sizeof(*res));
	uint8_t *idc = tl_arena_alloc(a, 16);
	if (pv == NULL || res == NULL || idc == NULL)
		return TL_ELIMIT;
	np = 0;
	for (size_t i = 0; i < nch; i++)
		for (size_t j = 0; j < chunks[i]->n_groups; j++)
			pv[np++] = (co_store_piece){chunks[i]->groups[j], 0, (uint32_t)chunks[i]->groups[j]->n_spans};
	threadline__v1__trace_result__init(res);
	memcpy(idc, id, 16);
	res->trace_id.len = 16;
	res->trace_id.data = idc;
	int rc = co_store_regroup(s, txn, pv, np, a, &res->resource_spans, &res->n_resource_spans, NULL);
	if (rc == 0)
		*out = res;
	return rc;
}

int co_store_get_trace(co_store *s, const uint8_t trace_id[16], tl_arena *arena, tl_pb_trace_result **out)
{
	*out = NULL;
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	st_chunk **chunks = NULL;
	size_t n = 0;
	rc = load_chunks(s, txn, trace_id, arena, &chunks, &n);
	if (rc == 0)
		rc = build_result(s, txn, trace_id, chunks, n, arena, out);
	end_read(s, txn);
	return rc;
}

static int decode_summary(const MDB_val *v, const uint8_t *id, co_trace_summary *out)
{
	st_summary *m = threadline__store__v1__trace_summary__unpack(NULL, v->mv_size, v->mv_data);
	if (m == NULL)
		return TL_ECORRUPT;
	memset(out, 0, sizeof(*out));
	memcpy(out->trace_id, id, 16);
	out->start_ns = m->start_unix_nano;
	out->end_ns = m->end_unix_nano;
	out->span_count = m->span_count;
	out->error_count = m->error_count;
	out->chunk_count = m->chunk_count;
	out->has_root = m->has_root;
	snprintf(out->root_service, sizeof(out->root_service), "%s", m->root_service ? m->root_service : "");
	snprintf(out->root_name, sizeof(out->root_name), "%s", m->root_name ? m->root_name : "");
	threadline__store__v1__trace_summary__free_unpacked(m, NULL);
	return 0;
}

int co_store_summary_txn(co_store *s, MDB_txn *txn, const uint8_t trace_id[16], co_trace_summary *out)
{
	uint8_t homeb[8];
	int rc = home_of(s, txn, trace_id, homeb);
	MDB_val k = {8, homeb}, v;
	if (rc == 0)
		rc = mdb_get(txn, s->trace_sums, &k, &v);
	return rc == 0 ? decode_summary(&v, trace_id, out) : tl_err_from_lmdb(rc);
}

int co_store_get_summary(co_store *s, const uint8_t trace_id[16], co_trace_summary *out)
{
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	rc = co_store_summary_txn(s, txn, trace_id, out);
	end_read(s, txn);
	return rc;
}

int co_store_scan_time(co_store *s, uint64_t from_ns, uint64_t to_ns, bool newest_first, co_trace_fn fn, void *ud)
{
	if (from_ns >= to_ns)
		return 0;
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->trace_starts, &c)) != 0) {
		end_read(s, txn);
		return tl_err_from_lmdb(rc);
	}
	uint8_t kb[TIME_KEY_LEN] = {0};
	MDB_val k = {TIME_KEY_LEN, kb}, v;
	if (newest_first) {
		tl_put_be64(kb, to_ns);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		rc = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV) : mdb_cursor_get(c, &k, &v, MDB_LAST);
	} else {
		tl_put_be64(kb, from_ns);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	}
	int ret = 0;
	while (rc == 0 && ret == 0) {
		if (k.mv_size != TIME_KEY_LEN || v.mv_size != 8) {
			ret = TL_ECORRUPT;
			break;
		}
		uint64_t t = tl_get_be64(k.mv_data);
		if (t < from_ns || t >= to_ns)
			break;
		const uint8_t *id = (const uint8_t *)k.mv_data + 8;
		MDB_val sk = {8, v.mv_data}, sv;
		int grc = mdb_get(txn, s->trace_sums, &sk, &sv);
		if (grc == 0) {
			co_trace_summary sum;
			if (decode_summary(&sv, id, &sum) == 0)
				ret = fn(&sum, ud);
		} else if (grc != MDB_NOTFOUND) {
			ret = tl_err_from_lmdb(grc);
			break;
		}
		rc = mdb_cursor_get(c, &k, &v, newest_first ? MDB_PREV : MDB_NEXT);
	}
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	mdb_cursor_close(c);
	end_read(s, txn);
	return ret;
}

int co_store_scan_chunks(co_store *s, uint64_t from_id, co_chunk_fn fn, void *ud)
{
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->spans, &c)) != 0) {
		end_read(s, txn);
		return tl_err_from_lmdb(rc);
	}
	uint8_t kb[8];
	tl_put_be64(kb, from_id);
	MDB_val k = {8, kb}, v;
	int ret = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && ret == 0) {
		if (k.mv_size != 8) {
			ret = TL_ECORRUPT;
			break;
		}
		ret = fn(tl_get_be64(k.mv_data), v.mv_data, v.mv_size, ud);
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	mdb_cursor_close(c);
	end_read(s, txn);
	return ret;
}

static int count_in(MDB_txn *txn, const co_store_count *m, size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		MDB_stat st;
		if ((rc = mdb_stat(txn, m[i].dbi, &st)) == 0)
			*m[i].n = st.ms_entries;
	}
	return rc;
}

int co_store_count_entries(co_store *s, const co_store_count *m, size_t n)
{
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	rc = count_in(txn, m, n);
	end_read(s, txn);
	return tl_err_from_lmdb(rc);
}

int co_store_counts_get(co_store *s, co_store_counts *out)
{
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	co_store_count m[] = {
	        {s->spans, &out->chunks},
	        {s->trace_chunks, &out->trace_idx},
	        {s->trace_home, &out->traces},
	        {s->trace_starts, &out->time_idx},
	        {s->resources, &out->resources},
	        {s->dedupe, &out->dedupe},
	        {s->lineage_raw, &out->lineage_raw},
	};
	rc = count_in(txn, m, sizeof(m) / sizeof(m[0]));
	/* Traces whose home is not in this snapshot's trace_home yet. */
	pthread_mutex_lock(&s->hm_mu);
	out->traces += s->pend->n;
	for (const homegen *g = s->retired; g != NULL; g = g->next)
		if (g->flush_txn > mdb_txn_id(txn))
			out->traces += g->n;
	pthread_mutex_unlock(&s->hm_mu);
	end_read(s, txn);
	return tl_err_from_lmdb(rc);
}

/* ---- schema 1 ---- */

/* Adds one stored chunk to the trace tables and the search indexes, as store_trace would have. */
static int refile(co_store *s, MDB_txn *txn, uint64_t id, const MDB_val *v)
{
	tl_arena_reset(&s->scratch);
	st_chunk *ch = threadline__store__v1__chunk__unpack(tl_arena_allocator(&s->scratch), v->mv_size, v->mv_data);
	if (ch == NULL || ch->trace_id.len != 16)
		return 0; /* unreadable: co_store_scan_chunks reports it; its spans cannot be filed */
	size_t n = 0;
	for (size_t g = 0; g < ch->n_groups; g++)
		n += ch->groups[g]->n_spans;
	co_index_span *is = scratch_calloc(s, n, sizeof(*is));
	if (n && is == NULL)
		return ENOMEM;
	tacc t = {.id = ch->trace_id.data, .start = UINT64_MAX, .count = (uint32_t)n};
	size_t k = 0;
	for (size_t g = 0; g < ch->n_groups; g++) {
		const st_group *gr = ch->groups[g];
		const tl_pb_resource *res = NULL;
		MDB_val rk = {gr->resource_hash.len, gr->resource_hash.data}, rv;
		if (gr->resource_hash.len == 16 && mdb_get(txn, s->resources, &rk, &rv) == 0)
			res = opentelemetry__proto__resource__v1__resource__unpack(tl_arena_allocator(&s->scratch),
			                                                           rv.mv_size, rv.mv_data);
		const char *svc = tl_otlp_service_name(res);
		for (size_t i = 0; i < gr->n_spans; i++) {
			tl_pb_span *sp = gr->spans[i];
			is[k++] = (co_index_span){sp, res, svc};
			if (sp->start_time_unix_nano < t.start)
				t.start = sp->start_time_unix_nano;
			if (sp->end_time_unix_nano > t.end)
				t.end = sp->end_time_unix_nano;
			if (tl_otlp_span_failed(sp))
				t.errors++;
			if (!t.has_root && is_root(sp)) {
				t.has_root = true;
				t.root_name = sp->name;
				t.root_service = svc;
			}
		}
	}
	if (t.count == 0)
		t.start = 0;
	int rc = co_index_put_trace(s->ix, txn, &s->scratch, t.id, id, is, n);
	return rc != 0 ? rc : file_chunk(s, txn, &t, id);
}

/*
 * Schema 1 kept the trace tables keyed by trace id (trace_idx, traces,
 * time_idx), and its search indexes used other time buckets. Both are
 * dropped and rebuilt from `spans` in the opening transaction: a crash part
 * way leaves schema 1 as it was.
 */
static int migrate_v1(co_store *s, MDB_txn *txn)
{
	static const char *const old[] = {"trace_idx", "traces", "time_idx"};
	for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
		MDB_dbi dbi;
		int rc = mdb_dbi_open(txn, old[i], 0, &dbi);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc == 0)
			rc = mdb_drop(txn, dbi, 1);
		if (rc != 0)
			return rc;
	}
	/* The search indexes of schema 1 had other time buckets: they are rebuilt too. */
	int rc = co_index_clear(s->ix, txn);
	MDB_cursor *c;
	if (rc != 0 || (rc = mdb_cursor_open(txn, s->spans, &c)) != 0)
		return rc;
	MDB_val k, v;
	uint64_t mark = 0, filed = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		if (k.mv_size == 8) {
			mark = tl_get_be64(k.mv_data) + 1;
			if ((rc = refile(s, txn, mark - 1, &v)) != 0)
				break;
		}
		/* Index blocks and homes are written as they would be in service, a pass at a time. */
		if (++filed % 1024 == 0) {
			rc = co_index_flush(s->ix, txn);
			co_index_discard(s->ix);
			if (rc != 0)
				break;
		}
		if (s->pend->n >= s->flush_at &&
		    ((rc = flush_homes(s, txn, mark)) != 0 || (rc = gen_rebuild(s->pend, s->pend->cap, 0)) != 0))
			break;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		rc = co_index_flush(s->ix, txn);
	co_index_discard(s->ix);
	if (rc == 0 && (rc = flush_homes(s, txn, mark)) == 0)
		rc = gen_rebuild(s->pend, s->pend->cap, 0);
	tl_arena_reset(&s->scratch);
	return rc;
}
