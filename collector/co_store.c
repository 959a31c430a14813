/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LMDB span store. A batch is regrouped by trace in memory (one hash
 * table and one counting sort, all in a reused scratch arena), then each
 * trace costs one MDB_APPEND of its chunk, packed straight into LMDB's page
 * with MDB_RESERVE (the spans are encoded exactly once), and a few small
 * random puts: trace index, summary, time index. The schema is in co_store.h.
 */
#include "co_store.h"

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
#define TRACE_KEY_LEN (16 + 8)
#define TIME_KEY_LEN (8 + 16)
#define DEDUPE_KEY_LEN (CO_AGENT_ID_LEN + 8)

static const char META_VERSION_KEY[] = "schema_version";

struct co_store {
	MDB_env *env;
	MDB_dbi meta, spans, trace_idx, traces, time_idx, resources, dedupe, lineage_raw;
	co_lineage_db lin; /* the lineage graph's databases */
	co_index_db *ix;   /* the search indexes */
	co_stats_db *st;   /* per-minute latency histograms */
	co_store_dbs dbs;  /* copies of the handles above, for co_index.c */
	/* Readers and commits hold it shared; growing the map takes it exclusively. */
	pthread_rwlock_t resize;
	pthread_mutex_t map_mu;
	size_t map_size, map_max;
	uint64_t next_chunk, next_lineage; /* next append keys; owned by the committing thread */
	int stale_readers;
	tl_arena scratch; /* committing thread only; reset per batch */
};

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) / a * a;
}

/* ---- open / close ---- */

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
	        {"meta", &s->meta},           {"spans", &s->spans},
	        {"trace_idx", &s->trace_idx}, {"traces", &s->traces},
	        {"time_idx", &s->time_idx},   {"resources", &s->resources},
	        {"dedupe", &s->dedupe},       {"lineage_raw", &s->lineage_raw},
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
	s->dbs = (co_store_dbs){s->spans, s->trace_idx, s->traces, s->time_idx, s->resources};
	MDB_val k = {sizeof(META_VERSION_KEY) - 1, (void *)META_VERSION_KEY}, v;
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0) {
		const uint8_t *p = v.mv_data;
		uint32_t ver =
		        v.mv_size == 4 ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]) : 0;
		if (ver != CO_STORE_SCHEMA_VERSION) {
			mdb_txn_abort(txn);
			return tl_errf(err, TL_EUNSUPPORTED, "store schema version %u is not %d", ver,
			               CO_STORE_SCHEMA_VERSION);
		}
	} else if (rc == MDB_NOTFOUND) {
		uint8_t buf[4];
		put_be32(buf, CO_STORE_SCHEMA_VERSION);
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
				*next[i] = get_be64(ck.mv_data) + 1;
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
		int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
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

static const char *service_name(const tl_pb_resource *r)
{
	if (r == NULL)
		return NULL;
	for (size_t i = 0; i < r->n_attributes; i++) {
		const tl_pb_keyvalue *kv = r->attributes[i];
		if (kv->key != NULL && strcmp(kv->key, "service.name") == 0 && kv->value != NULL &&
		    kv->value->value_case == TL_PB_ANY_STRING)
			return kv->value->string_value;
	}
	return NULL;
}

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

static int update_summary(co_store *s, MDB_txn *txn, const tacc *t)
{
	MDB_val k = {16, (void *)t->id}, v;
	st_summary sum = THREADLINE__STORE__V1__TRACE_SUMMARY__INIT;
	st_summary *old = NULL;
	int rc = mdb_get(txn, s->traces, &k, &v);
	if (rc == 0)
		/* An undecodable summary is rebuilt from what this batch brings rather than
		 * blocking every later batch of the trace. */
		old = threadline__store__v1__trace_summary__unpack(tl_arena_allocator(&s->scratch), v.mv_size,
		                                                   v.mv_data);
	else if (rc != MDB_NOTFOUND)
		return rc;
	uint8_t tk[TIME_KEY_LEN];
	memcpy(tk + 8, t->id, 16);
	MDB_val tkv = {TIME_KEY_LEN, tk}, empty = {0, NULL};
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
			/* The time index holds the trace's current start only. */
			put_be64(tk, sum.start_unix_nano);
			rc = mdb_del(txn, s->time_idx, &tkv, NULL);
			if (rc != 0 && rc != MDB_NOTFOUND)
				return rc;
			sum.start_unix_nano = t->start;
			put_be64(tk, t->start);
			if ((rc = mdb_put(txn, s->time_idx, &tkv, &empty, 0)) != 0)
				return rc;
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
		put_be64(tk, t->start);
		if ((rc = mdb_put(txn, s->time_idx, &tkv, &empty, 0)) != 0)
			return rc;
	}
	return put_packed(txn, s->traces, &k, &sum.base, 0);
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
	put_be64(ck, id);
	MDB_val k = {8, ck};
	int rc = put_packed(txn, s->spans, &k, &ch.base, MDB_APPEND);
	if (rc != 0)
		return rc;
	s->next_chunk++;

	uint8_t tik[TRACE_KEY_LEN];
	memcpy(tik, t->id, 16);
	put_be64(tik + 16, id);
	MDB_val tk = {TRACE_KEY_LEN, tik}, empty = {0, NULL};
	if ((rc = mdb_put(txn, s->trace_idx, &tk, &empty, 0)) != 0)
		return rc;
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
	return update_summary(s, txn, t);
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
		put_be64(kb, s->next_lineage);
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
	put_be64(dk + CO_AGENT_ID_LEN, b->seq);
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
			const char *svc = service_name(rs->resource);
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
					uint64_t h = get_be64(sp->trace_id.data) ^ get_be64(sp->trace_id.data + 8);
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
					if (sp->status != NULL && sp->status->code == TL_PB_STATUS_ERROR)
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
	put_be64(nowb, now_ns);
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
		uint64_t chunk0 = s->next_chunk, lin0 = s->next_lineage;
		MDB_txn *txn;
		pthread_rwlock_rdlock(&s->resize);
		int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (rc == 0) {
			for (size_t i = 0; i < n && rc == 0; i++)
				rc = commit_batch(s, txn, batches[i], now_ns);
			if (rc == 0)
				rc = co_index_flush(s->ix, txn);
			if (rc == 0)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		co_index_discard(s->ix);
		pthread_rwlock_unlock(&s->resize);
		tl_arena_reset(&s->scratch);
		if (rc == 0)
			return 0;
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

typedef struct ogroup {
	uint32_t res;
	const uint8_t *sk; /* encoded scope, for grouping */
	size_t sklen;
	const char *sschema;
	tl_pb_scope *scope;
	size_t n, fill;
	tl_pb_span **spans;
} ogroup;

typedef struct ores {
	const uint8_t *hash;
	const char *schema;
	tl_pb_resource *res;
	size_t ngroups, fill;
} ores;

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* A value that does not unpack into the arena: the arena's cap, or corruption? */
static int unpack_failure(const ProtobufCMessageDescriptor *d, const MDB_val *v)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, v->mv_size, v->mv_data);
	if (m == NULL)
		return TL_ECORRUPT;
	protobuf_c_message_free_unpacked(m, NULL);
	return TL_ELIMIT;
}

static int load_chunks(co_store *s, MDB_txn *txn, const uint8_t *id, tl_arena *a, st_chunk ***out, size_t *nout)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->trace_idx, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t kb[TRACE_KEY_LEN];
	memcpy(kb, id, 16);
	memset(kb + 16, 0, 8);
	MDB_val k = {TRACE_KEY_LEN, kb}, v;
	st_chunk **arr = NULL;
	size_t n = 0, cap = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == TRACE_KEY_LEN && memcmp(k.mv_data, id, 16) == 0) {
		uint8_t ck[8];
		memcpy(ck, (const uint8_t *)k.mv_data + 16, 8);
		MDB_val cv, ckey = {8, ck};
		if ((rc = mdb_get(txn, s->spans, &ckey, &cv)) != 0)
			break;
		st_chunk *ch = threadline__store__v1__chunk__unpack(tl_arena_allocator(a), cv.mv_size, cv.mv_data);
		if (ch == NULL) {
			mdb_cursor_close(c);
			return unpack_failure(&threadline__store__v1__chunk__descriptor, &cv);
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			st_chunk **na = tl_arena_alloc(a, ncap * sizeof(*na));
			if (na == NULL) {
				mdb_cursor_close(c);
				return TL_ELIMIT;
			}
			if (n)
				memcpy(na, arr, n * sizeof(*na));
			arr = na;
			cap = ncap;
		}
		arr[n++] = ch;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return tl_err_from_lmdb(rc);
	if (n == 0)
		return TL_ENOTFOUND;
	*out = arr;
	*nout = n;
	return 0;
}

/* Regroups chunk groups by (resource, scope) and resolves resources inside txn. */
static int build_result(co_store *s, MDB_txn *txn, const uint8_t *id, st_chunk **chunks, size_t nch, tl_arena *a,
                        tl_pb_trace_result **out)
{
	size_t G = 0;
	for (size_t i = 0; i < nch; i++)
		G += chunks[i]->n_groups;
	ogroup *og = G ? calloc(G, sizeof(*og)) : NULL;
	ores *orr = G ? calloc(G, sizeof(*orr)) : NULL;
	uint32_t *gmap = G ? calloc(G, sizeof(*gmap)) : NULL;
	int rc = 0;
	if (G && (og == NULL || orr == NULL || gmap == NULL)) {
		rc = -ENOMEM;
		goto done;
	}
	size_t nog = 0, nor = 0, gi = 0;
	for (size_t i = 0; i < nch; i++) {
		for (size_t j = 0; j < chunks[i]->n_groups; j++, gi++) {
			st_group *g = chunks[i]->groups[j];
			if (g->resource_hash.len != 16) {
				rc = TL_ECORRUPT;
				goto done;
			}
			size_t r;
			for (r = 0; r < nor; r++)
				if (memcmp(orr[r].hash, g->resource_hash.data, 16) == 0 &&
				    str_eq(orr[r].schema, g->resource_schema_url))
					break;
			if (r == nor) {
				orr[nor].hash = g->resource_hash.data;
				orr[nor].schema = g->resource_schema_url;
				nor++;
			}
			size_t sklen = g->scope != NULL ? protobuf_c_message_get_packed_size(&g->scope->base) : 0;
			uint8_t *sk = tl_arena_alloc(a, sklen);
			if (sk == NULL) {
				rc = TL_ELIMIT;
				goto done;
			}
			if (g->scope != NULL)
				protobuf_c_message_pack(&g->scope->base, sk);
			size_t o;
			for (o = 0; o < nog; o++)
				if (og[o].res == r && og[o].sklen == sklen && memcmp(og[o].sk, sk, sklen) == 0 &&
				    str_eq(og[o].sschema, g->scope_schema_url))
					break;
			if (o == nog) {
				og[nog] = (ogroup){.res = (uint32_t)r,
				                   .sk = sk,
				                   .sklen = sklen,
				                   .sschema = g->scope_schema_url,
				                   .scope = g->scope};
				orr[r].ngroups++;
				nog++;
			}
			og[o].n += g->n_spans;
			gmap[gi] = (uint32_t)o;
		}
	}
	for (size_t o = 0; o < nog; o++) {
		og[o].spans = tl_arena_alloc(a, (og[o].n ? og[o].n : 1) * sizeof(tl_pb_span *));
		if (og[o].spans == NULL) {
			rc = TL_ELIMIT;
			goto done;
		}
	}
	gi = 0;
	for (size_t i = 0; i < nch; i++) {
		for (size_t j = 0; j < chunks[i]->n_groups; j++, gi++) {
			ogroup *o = &og[gmap[gi]];
			st_group *g = chunks[i]->groups[j];
			memcpy(o->spans + o->fill, g->spans, g->n_spans * sizeof(tl_pb_span *));
			o->fill += g->n_spans;
		}
	}
	/* Resources, copied out of the map before the transaction ends. */
	for (size_t r = 0; r < nor; r++) {
		MDB_val k = {16, (void *)orr[r].hash}, v;
		int mrc = mdb_get(txn, s->resources, &k, &v);
		if (mrc == MDB_NOTFOUND)
			continue; /* keep the spans; the resource is shown as unknown */
		if (mrc != 0) {
			rc = tl_err_from_lmdb(mrc);
			goto done;
		}
		orr[r].res = opentelemetry__proto__resource__v1__resource__unpack(tl_arena_allocator(a), v.mv_size,
		                                                                  v.mv_data);
		if (orr[r].res == NULL) {
			rc = unpack_failure(&opentelemetry__proto__resource__v1__resource__descriptor, &v);
			goto done;
		}
	}
	tl_pb_trace_result *res = tl_arena_alloc(a, sizeof(*res));
	tl_pb_resource_spans **rsv = tl_arena_alloc(a, (nor ? nor : 1) * sizeof(*rsv));
	tl_pb_resource_spans *rsa = tl_arena_alloc(a, (nor ? nor : 1) * sizeof(*rsa));
	tl_pb_scope_spans **ssv = tl_arena_alloc(a, (nog ? nog : 1) * sizeof(*ssv));
	tl_pb_scope_spans *ssa = tl_arena_alloc(a, (nog ? nog : 1) * sizeof(*ssa));
	uint8_t *idc = tl_arena_alloc(a, 16);
	if (!res || !rsv || !rsa || !ssv || !ssa || !idc) {
		rc = TL_ELIMIT;
		goto done;
	}
	threadline__v1__trace_result__init(res);
	memcpy(idc, id, 16);
	res->trace_id.len = 16;
	res->trace_id.data = idc;
	res->n_resource_spans = nor;
	res->resource_spans = rsv;
	size_t ssoff = 0;
	for (size_t r = 0; r < nor; r++) {
		opentelemetry__proto__trace__v1__resource_spans__init(&rsa[r]);
		rsv[r] = &rsa[r];
		rsa[r].resource = orr[r].res;
		rsa[r].schema_url = (char *)(orr[r].schema != NULL ? orr[r].schema : "");
		rsa[r].scope_spans = &ssv[ssoff];
		rsa[r].n_scope_spans = orr[r].ngroups;
		orr[r].fill = ssoff;
		ssoff += orr[r].ngroups;
	}
	for (size_t o = 0; o < nog; o++) {
		opentelemetry__proto__trace__v1__scope_spans__init(&ssa[o]);
		ssa[o].scope = og[o].scope;
		ssa[o].schema_url = (char *)(og[o].sschema != NULL ? og[o].sschema : "");
		ssa[o].spans = og[o].spans;
		ssa[o].n_spans = og[o].n;
		ssv[orr[og[o].res].fill++] = &ssa[o];
	}
	*out = res;
done:
	free(og);
	free(orr);
	free(gmap);
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
	MDB_val k = {16, (void *)trace_id}, v;
	int rc = mdb_get(txn, s->traces, &k, &v);
	return rc == 0 ? decode_summary(&v, trace_id, out) : tl_err_from_lmdb(rc);
}

int co_store_get_summary(co_store *s, const uint8_t trace_id[16], co_trace_summary *out)
{
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	MDB_val k = {16, (void *)trace_id}, v;
	rc = mdb_get(txn, s->traces, &k, &v);
	rc = rc == 0 ? decode_summary(&v, trace_id, out) : tl_err_from_lmdb(rc);
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
	if ((rc = mdb_cursor_open(txn, s->time_idx, &c)) != 0) {
		end_read(s, txn);
		return tl_err_from_lmdb(rc);
	}
	uint8_t kb[TIME_KEY_LEN] = {0};
	MDB_val k = {TIME_KEY_LEN, kb}, v;
	if (newest_first) {
		put_be64(kb, to_ns);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		rc = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV) : mdb_cursor_get(c, &k, &v, MDB_LAST);
	} else {
		put_be64(kb, from_ns);
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	}
	int ret = 0;
	while (rc == 0 && ret == 0) {
		if (k.mv_size != TIME_KEY_LEN) {
			ret = TL_ECORRUPT;
			break;
		}
		uint64_t t = get_be64(k.mv_data);
		if (t < from_ns || t >= to_ns)
			break;
		const uint8_t *id = (const uint8_t *)k.mv_data + 8;
		MDB_val sk = {16, (void *)id}, sv;
		int grc = mdb_get(txn, s->traces, &sk, &sv);
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
	put_be64(kb, from_id);
	MDB_val k = {8, kb}, v;
	int ret = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && ret == 0) {
		if (k.mv_size != 8) {
			ret = TL_ECORRUPT;
			break;
		}
		ret = fn(get_be64(k.mv_data), v.mv_data, v.mv_size, ud);
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	mdb_cursor_close(c);
	end_read(s, txn);
	return ret;
}

int co_store_counts_get(co_store *s, co_store_counts *out)
{
	MDB_txn *txn;
	int rc = begin_read(s, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	struct {
		MDB_dbi dbi;
		size_t *n;
	} m[] = {
	        {s->spans, &out->chunks},
	        {s->trace_idx, &out->trace_idx},
	        {s->traces, &out->traces},
	        {s->time_idx, &out->time_idx},
	        {s->resources, &out->resources},
	        {s->dedupe, &out->dedupe},
	        {s->lineage_raw, &out->lineage_raw},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]) && rc == 0; i++) {
		MDB_stat st;
		rc = mdb_stat(txn, m[i].dbi, &st);
		*m[i].n = st.ms_entries;
	}
	end_read(s, txn);
	return tl_err_from_lmdb(rc);
}
