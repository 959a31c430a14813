/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The search indexes and the searches over them (co_index.h).
 *
 * Databases, in the store's LMDB environment. Integers are big-endian; a
 * string s is written lp(s): a u16 length, then the bytes, cut to their
 * first CO_INDEX_VALUE_MAX bytes when longer, with the length's top bit set
 * (0x8000) to say so (such an entry only nominates candidates, which are
 * then verified). tb is a time bucket, span start >> 30 (about 1.07 s);
 * chunk is the chunk's id in `spans` (its arrival order); seq is the first
 * chunk id of the transaction that wrote the entry.
 *
 *   ix_svc   lp(service) || tb u64 || chunk u64        -> span range || trace_id(16)
 *   ix_err   tb u64 || chunk u64                       -> span range || trace_id(16)
 *   ix_dur   lp(service) || tb u64 || log2 u8 || chunk u64
 *                      -> duration u64 || start u64 || span range || trace_id(16)
 *   ix_op    lp(service) || tb u64 || seq u64          -> block of records lp(name) || ...
 *   ix_attr  lp(key) || tb u64 || seq u64              -> block of records lp(value) || ...
 *   ix_cat   lp(service) || lp(name) || kind u8        -> last_seen u64
 *
 * span range is min_start u64 || max_start u64: the earliest and latest
 * start among the spans an entry stands for. A block is u32 count, u32
 * offsets[count] (from the block's start), then the records sorted by
 * value (lp() order: the length field, then the bytes) and chunk, each
 * lp(value) || chunk u64 || span range || trace_id(16).
 *
 * Entries are per chunk (one trace's spans from one batch), distinct key
 * and time bucket of the spans' starts, never per span: a chunk of a
 * thousand spans of one service costs a handful of records. Keys are ordered
 * by time bucket and then by arrival, never by exact start or trace id, so
 * a commit writes at the end of the current bucket of each key, a few hot
 * pages, whatever the spans' clocks say: ordered by start, agents that
 * re-send old timestamps (or a benchmark replaying templates) would scatter
 * the puts over the whole tree and rewrite a page per entry.
 *
 * ix_svc and ix_err hold spans by service and with status ERROR. ix_dur
 * holds per chunk, service and time bucket the longest span (its duration
 * and start; log2 of the duration, 1 + floor(log2(d)), in the key) with the
 * range of all the service's starts there, and under lp("") the same over
 * every span: a minimum-duration search reads, per time bucket, only the
 * entries from the minimum's log2 up, with or without a service. The lp("")
 * entries use buckets of 2^36 ns (about 69 s): every service's batches write
 * there, and a batch whose spans cover a minute would otherwise put one entry
 * in each of sixty buckets between other agents' entries, a page each.
 *
 * ix_op and ix_attr have high-cardinality values (span names with ids in
 * them; ml.prediction.id is often unique per span), so the records of one
 * transaction are gathered (co_index_put_trace), sorted, and written by
 * co_index_flush() as one block per service (ix_op) or attribute key
 * (ix_attr) and time bucket: a commit appends a few blocks, and a search
 * binary-searches each block of the key in the range for its value. Their
 * buckets are 2^33 ns (about 8.6 s), so that a batch of spans spread over
 * minutes writes tens of blocks, not hundreds of one record each, and a
 * search over a day reads ten thousand blocks, not ninety thousand. ix_attr
 * holds the built-in and configured keys, a span's own attribute taking
 * precedence over its resource's, in the string form of co_index.h.
 *
 * Spans without a service.name are only in the indexes that need none.
 * ix_cat is the service/operation catalog: the latest span start seen for
 * each (service, name, kind), read before it is written, so that a steady
 * stream costs a lookup and a put about once a second.
 *
 * A search runs in one read transaction: the most selective index gives
 * candidates, newest time bucket first; trace ids are deduped; a candidate
 * the entry cannot prove (its span range straddles the asked one, or the
 * index does not cover every condition) is verified by reading its chunks;
 * the best `limit` by trace start are kept. The walk stops when a whole
 * bucket is older than all of them (a trace starts no later than any of its
 * spans), or after max_examined entries, blocks and records (partial).
 */
#include "co_index.h"
#include "tl_be.h"
#include "tl_otlp.h"

#include "store.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Threadline__Store__V1__Chunk st_chunk;
typedef Threadline__Store__V1__ChunkGroup st_group;

#define TB_SHIFT 30     /* time buckets of 2^30 ns */
#define TB_ANY_SHIFT 36 /* ix_dur's all-services buckets: 2^36 ns, about 69 s */
#define TB_BLK_SHIFT 33 /* ix_op and ix_attr blocks: 2^33 ns, about 8.6 s */
#define TB_MAX (UINT64_MAX >> TB_SHIFT)
#define LP_CUT 0x8000u
#define ID_LEN 16
#define TIMED_TAIL 16              /* tb || chunk after the prefix */
#define TIME_IDX_LEN (8 + ID_LEN)  /* the store's trace_starts: start || trace_id */
#define VAL_LEN (16 + ID_LEN)      /* span range || trace_id */
#define REC_TAIL (8 + VAL_LEN)     /* a block record after its value: chunk || span range || trace_id */
#define DUR_VAL_LEN (16 + VAL_LEN) /* duration || start || span range || trace_id */
#define KEY_CAP (2 * (2 + CO_INDEX_VALUE_MAX) + 1 + 8 + 1 + 8 + 8)
#define NKEYS_MAX (3 + CO_INDEX_ATTR_KEYS_MAX)
#define KEYSET_CAP 128 /* power of two, > 2 * NKEYS_MAX */
#define DEPS_DEFAULT 10000
#define CAT_SLACK_NS (1000 * UINT64_C(1000000)) /* last_seen is kept to within a second */

const char *const co_index_builtin_keys[] = {"ml.prediction.id", "ml.model.version", "lineage.run_id", NULL};

/* A block record (ix_op, ix_attr) waiting for the end of its transaction. */
typedef struct pend {
	const uint8_t *pk, *vk; /* lp(prefix), lp(value), in the db's arena */
	uint64_t tb, chunk, lo, hi;
	uint8_t trace[ID_LEN];
	uint8_t which; /* B_OP or B_ATTR */
} pend;

enum { B_OP, B_ATTR };

struct co_index_db {
	MDB_dbi svc, op, err, attr, dur, cat;
	size_t nkeys;
	char *keys[NKEYS_MAX];
	size_t key_len[NKEYS_MAX];
	uint8_t keyset[KEYSET_CAP];                        /* open addressing: index + 1 into keys, 0 = empty */
	uint64_t key_lens[(CO_INDEX_VALUE_MAX + 64) / 64]; /* bit per length some key has */
	/* The current transaction's block records (committing thread only). */
	pend *pend;
	size_t npend, cappend;
	uint64_t seq; /* the transaction's first chunk id */
	tl_arena vals;
};

/* ---- encoding ---- */

static bool lp_is_cut(size_t len)
{
	return len > CO_INDEX_VALUE_MAX;
}

/* Writes lp(s) at p; returns the bytes written (at most 2 + CO_INDEX_VALUE_MAX). */
static size_t lp_put(uint8_t *p, const char *s, size_t len)
{
	size_t n = lp_is_cut(len) ? CO_INDEX_VALUE_MAX : len;
	unsigned l = (unsigned)n | (lp_is_cut(len) ? LP_CUT : 0);
	p[0] = (uint8_t)(l >> 8);
	p[1] = (uint8_t)l;
	if (n)
		memcpy(p + 2, s, n);
	return 2 + n;
}

/* Reads lp() at p (avail bytes). Returns the bytes it takes, or 0 when malformed. */
static size_t lp_get(const uint8_t *p, size_t avail, const char **s, size_t *len)
{
	if (avail < 2)
		return 0;
	size_t n = ((size_t)p[0] << 8 | p[1]) & ~(size_t)LP_CUT;
	if (n > CO_INDEX_VALUE_MAX || avail < 2 + n)
		return 0;
	*s = (const char *)p + 2;
	*len = n;
	return 2 + n;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* A fast hash of a short string, 8 bytes at a time. */
static uint64_t strhash(const char *p, size_t n)
{
	uint64_t h = (uint64_t)n * UINT64_C(0x9E3779B97F4A7C15), w;
	for (; n >= 8; n -= 8, p += 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
		h ^= h >> 32;
	}
	w = 0;
	memcpy(&w, p, n);
	h = (h ^ w) * UINT64_C(0xc4ceb9fe1a85ec53);
	return h ^ h >> 29;
}

static uint64_t hash_id(const uint8_t *id)
{
	return (tl_get_be64(id) ^ tl_get_be64(id + 8)) * UINT64_C(0x9E3779B97F4A7C15);
}

/*
 * The string form of a scalar AnyValue (co_index.h): strings as they are,
 * integers in decimal, booleans true/false, doubles as %.17g. buf holds
 * the formatted ones (cap >= 32). Returns false for arrays, maps, bytes and
 * empty values, which are neither indexed nor matched.
 */
static bool any_str(const tl_pb_anyvalue *v, char *buf, size_t cap, const char **s, size_t *len)
{
	if (v == NULL)
		return false;
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		*s = v->string_value != NULL ? v->string_value : "";
		*len = strlen(*s);
		return true;
	case TL_PB_ANY_INT:
		*len = (size_t)snprintf(buf, cap, "%" PRId64, v->int_value);
		break;
	case TL_PB_ANY_BOOL:
		*len = (size_t)snprintf(buf, cap, "%s", v->bool_value ? "true" : "false");
		break;
	case TL_PB_ANY_DOUBLE:
		*len = (size_t)snprintf(buf, cap, "%.17g", v->double_value);
		break;
	default:
		return false;
	}
	*s = buf;
	return true;
}

/* The ix_dur key's duration class: 0 for 0, else 1 + floor(log2(d)). */
static uint8_t dur_class(uint64_t d)
{
	return d == 0 ? 0 : (uint8_t)(64 - __builtin_clzll(d));
}

static uint64_t span_dur(const tl_pb_span *sp)
{
	return sp->end_time_unix_nano > sp->start_time_unix_nano ? sp->end_time_unix_nano - sp->start_time_unix_nano
	                                                         : 0;
}

/* ---- open ---- */

/* The index of key among the indexed keys, or -1. */
static int key_find(const co_index_db *db, const char *key, size_t len)
{
	if (len > CO_INDEX_VALUE_MAX || !(db->key_lens[len / 64] >> (len % 64) & 1))
		return -1;
	size_t slot = (size_t)strhash(key, len) & (KEYSET_CAP - 1);
	while (db->keyset[slot] != 0) {
		size_t i = db->keyset[slot] - 1u;
		if (db->key_len[i] == len && memcmp(db->keys[i], key, len) == 0)
			return (int)i;
		slot = (slot + 1) & (KEYSET_CAP - 1);
	}
	return -1;
}

static int key_add(co_index_db *db, const char *key, tl_errmsg *err)
{
	size_t len = strlen(key);
	if (len == 0)
		return tl_errf(err, TL_EINVALID, "index attribute: empty key");
	if (len > CO_INDEX_VALUE_MAX)
		return tl_errf(err, TL_EINVALID, "index attribute '%.40s...': longer than %d bytes", key,
		               CO_INDEX_VALUE_MAX);
	if (key_find(db, key, len) >= 0)
		return 0;
	if (db->nkeys == NKEYS_MAX)
		return tl_errf(err, TL_EINVALID, "index attribute '%s': more than %d configured keys", key,
		               CO_INDEX_ATTR_KEYS_MAX);
	if ((db->keys[db->nkeys] = strdup(key)) == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	db->key_len[db->nkeys] = len;
	db->key_lens[len / 64] |= UINT64_C(1) << (len % 64);
	size_t slot = (size_t)strhash(key, len) & (KEYSET_CAP - 1);
	while (db->keyset[slot] != 0)
		slot = (slot + 1) & (KEYSET_CAP - 1);
	db->keyset[slot] = (uint8_t)(db->nkeys + 1);
	db->nkeys++;
	return 0;
}

int co_index_db_open(MDB_txn *txn, const char *const *attr_keys, size_t n_attr_keys, co_index_db **out, tl_errmsg *err)
{
	*out = NULL;
	if (n_attr_keys > CO_INDEX_ATTR_KEYS_MAX)
		return tl_errf(err, TL_EINVALID, "index attributes: %zu configured keys, at most %d", n_attr_keys,
		               CO_INDEX_ATTR_KEYS_MAX);
	co_index_db *db = calloc(1, sizeof(*db));
	if (db == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	tl_arena_init(&db->vals, (size_t)256 << 10, 0);
	int rc = 0;
	for (size_t i = 0; co_index_builtin_keys[i] != NULL && rc == 0; i++)
		rc = key_add(db, co_index_builtin_keys[i], err);
	for (size_t i = 0; i < n_attr_keys && rc == 0; i++)
		rc = attr_keys[i] != NULL ? key_add(db, attr_keys[i], err)
		                          : tl_errf(err, TL_EINVALID, "index attribute %zu: no key", i);
	struct {
		const char *name;
		MDB_dbi *dbi;
	} dbs[] = {
	        {"ix_svc", &db->svc},   {"ix_op", &db->op},   {"ix_err", &db->err},
	        {"ix_attr", &db->attr}, {"ix_dur", &db->dur}, {"ix_cat", &db->cat},
	};
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]) && rc == 0; i++) {
		int mrc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
		if (mrc != 0)
			rc = tl_errf(err, tl_err_from_lmdb(mrc), "lmdb: open db %s: %s", dbs[i].name,
			             mdb_strerror(mrc));
	}
	if (rc != 0) {
		co_index_db_free(db);
		return rc;
	}
	*out = db;
	return 0;
}

void co_index_db_free(co_index_db *db)
{
	if (db == NULL)
		return;
	for (size_t i = 0; i < db->nkeys; i++)
		free(db->keys[i]);
	free(db->pend);
	tl_arena_fini(&db->vals);
	free(db);
}

/* ---- writing ---- */

enum { T_SVC = 1, T_OP, T_ERR, T_ATTR, T_DUR, T_CAT };

/* One index entry being gathered for a chunk. */
typedef struct agg {
	const char *a, *b; /* service / attribute key; operation / attribute value */
	uint32_t alen, blen;
	uint64_t c; /* time bucket, or span kind for T_CAT */
	uint64_t min, max;
	uint64_t dur, dur_start; /* T_DUR: the longest span */
	uint64_t h;
	uint8_t tag;
} agg;

typedef struct aggtab {
	agg *e;
	size_t cap, n;
	tl_arena *a;
} aggtab;

static uint64_t agg_hash(int tag, uint64_t ha, uint64_t hb, uint64_t c)
{
	uint64_t h = (ha * UINT64_C(0x9E3779B97F4A7C15)) ^ (hb * UINT64_C(0xc2b2ae3d27d4eb4f)) ^
	             ((c + (uint64_t)tag) * UINT64_C(0x165667b19e3779f9));
	return h ^ h >> 31;
}

static int agg_grow(aggtab *t)
{
	size_t ncap = t->cap ? t->cap * 2 : 64;
	if (ncap > SIZE_MAX / sizeof(agg))
		return ENOMEM;
	agg *ne = tl_arena_alloc(t->a, ncap * sizeof(agg));
	if (ne == NULL)
		return ENOMEM;
	memset(ne, 0, ncap * sizeof(agg));
	for (size_t i = 0; i < t->cap; i++) {
		const agg *o = &t->e[i];
		if (o->tag == 0)
			continue;
		size_t slot = (size_t)o->h & (ncap - 1);
		while (ne[slot].tag != 0)
			slot = (slot + 1) & (ncap - 1);
		ne[slot] = *o;
	}
	t->e = ne;
	t->cap = ncap;
	return 0;
}

/* A string with its length and hash. */
typedef struct hstr {
	const char *s;
	size_t len;
	uint64_t h;
} hstr;

static hstr hs(const char *s, size_t len)
{
	return (hstr){s, len, strhash(s, len)};
}

/*
 * Finds or adds the entry (tag, a, b, c) and folds start in. A new entry
 * copies b into the arena when copy_b (a formatted value). Returns the
 * entry, or NULL on ENOMEM.
 */
static agg *agg_upd(aggtab *t, int tag, const hstr *a, const hstr *b, bool copy_b, uint64_t c, uint64_t start)
{
	if ((t->n + 1) * 2 > t->cap && agg_grow(t) != 0)
		return NULL;
	uint64_t h = agg_hash(tag, a->h, b->h, c);
	size_t slot = (size_t)h & (t->cap - 1);
	for (;;) {
		agg *e = &t->e[slot];
		if (e->tag == 0)
			break;
		if (e->h == h && e->tag == tag && e->c == c && e->alen == a->len && e->blen == b->len &&
		    memcmp(e->a, a->s, a->len) == 0 && memcmp(e->b, b->s, b->len) == 0) {
			if (start < e->min)
				e->min = start;
			if (start > e->max)
				e->max = start;
			return e;
		}
		slot = (slot + 1) & (t->cap - 1);
	}
	agg *e = &t->e[slot];
	const char *bs = b->s;
	if (copy_b && (bs = tl_arena_strndup(t->a, b->s, b->len)) == NULL)
		return NULL;
	*e = (agg){.a = a->s,
	           .b = bs,
	           .alen = (uint32_t)a->len,
	           .blen = (uint32_t)b->len,
	           .c = c,
	           .min = start,
	           .max = start,
	           .dur_start = start,
	           .h = h,
	           .tag = (uint8_t)tag};
	t->n++;
	return e;
}

/* An indexed attribute of the current resource, in string form. */
typedef struct rattr {
	int key;
	const char *v;
	size_t len;
	bool copy;
} rattr;

static size_t lp_size(const uint8_t *p)
{
	return 2 + (((size_t)p[0] << 8 | p[1]) & ~(size_t)LP_CUT);
}

/* Orders lp() encodings by their length field, then their bytes. */
static int cmp_lp(const uint8_t *a, const uint8_t *b)
{
	unsigned fa = (unsigned)a[0] << 8 | a[1], fb = (unsigned)b[0] << 8 | b[1];
	if (fa != fb)
		return fa < fb ? -1 : 1;
	return memcmp(a + 2, b + 2, fa & ~LP_CUT);
}

/* Copies lp(s) into the arena. */
static const uint8_t *lp_dup(tl_arena *a, const char *s, size_t len)
{
	uint8_t *p = tl_arena_alloc(a, 2 + (lp_is_cut(len) ? CO_INDEX_VALUE_MAX : len));
	if (p != NULL)
		lp_put(p, s, len);
	return p;
}

/* Keeps a block record for co_index_flush(). Returns 0 or ENOMEM. */
static int pend_add(co_index_db *db, int which, const uint8_t *trace_id, uint64_t chunk, const agg *e)
{
	if (db->npend == db->cappend) {
		size_t ncap = db->cappend ? db->cappend * 2 : 1024;
		pend *np = realloc(db->pend, ncap * sizeof(*np));
		if (np == NULL)
			return ENOMEM;
		db->pend = np;
		db->cappend = ncap;
	}
	/* Records of one chunk often share a prefix (its service, an attribute key): keep one copy. */
	const uint8_t *pk = NULL;
	if (db->npend > 0) {
		const uint8_t *last = db->pend[db->npend - 1].pk;
		size_t n = lp_is_cut(e->alen) ? CO_INDEX_VALUE_MAX : e->alen;
		if (db->pend[db->npend - 1].which == which && lp_size(last) == 2 + n &&
		    ((unsigned)last[0] << 8 | last[1]) == (n | (lp_is_cut(e->alen) ? LP_CUT : 0)) &&
		    memcmp(last + 2, e->a, n) == 0)
			pk = last;
	}
	if (pk == NULL)
		pk = lp_dup(&db->vals, e->a, e->alen);
	const uint8_t *vk = lp_dup(&db->vals, e->b, e->blen);
	if (pk == NULL || vk == NULL)
		return ENOMEM;
	if (db->npend == 0 || chunk < db->seq)
		db->seq = chunk;
	pend *p = &db->pend[db->npend++];
	*p = (pend){
	        .pk = pk, .vk = vk, .tb = e->c, .chunk = chunk, .lo = e->min, .hi = e->max, .which = (uint8_t)which};
	memcpy(p->trace, trace_id, ID_LEN);
	return 0;
}

static void put_val(uint8_t *v, const agg *e, const uint8_t *trace_id)
{
	tl_put_be64(v, e->min);
	tl_put_be64(v + 8, e->max);
	memcpy(v + 16, trace_id, ID_LEN);
}

/* Puts one entry. Returns an LMDB code. */
static int emit(co_index_db *db, MDB_txn *txn, const uint8_t *trace_id, uint64_t chunk, const agg *e)
{
	uint8_t k[KEY_CAP], v[DUR_VAL_LEN];
	size_t n = 0;
	MDB_dbi dbi;
	MDB_val key, val = {VAL_LEN, v};
	switch (e->tag) {
	case T_SVC:
	case T_ERR:
		if (e->tag == T_SVC)
			n += lp_put(k, e->a, e->alen);
		tl_put_be64(k + n, e->c);
		tl_put_be64(k + n + 8, chunk);
		n += TIMED_TAIL;
		put_val(v, e, trace_id);
		dbi = e->tag == T_SVC ? db->svc : db->err;
		break;
	case T_OP:
		return pend_add(db, B_OP, trace_id, chunk, e);
	case T_ATTR:
		return pend_add(db, B_ATTR, trace_id, chunk, e);
	case T_DUR:
		n += lp_put(k, e->a, e->alen);
		tl_put_be64(k + n, e->c);
		k[n + 8] = dur_class(e->dur);
		tl_put_be64(k + n + 9, chunk);
		n += 17;
		tl_put_be64(v, e->dur);
		tl_put_be64(v + 8, e->dur_start);
		put_val(v + 16, e, trace_id);
		val.mv_size = DUR_VAL_LEN;
		dbi = db->dur;
		break;
	case T_CAT: {
		n += lp_put(k, e->a, e->alen);
		n += lp_put(k + n, e->b, e->blen);
		k[n++] = (uint8_t)e->c;
		key = (MDB_val){n, k};
		int rc = mdb_get(txn, db->cat, &key, &val);
		if (rc == 0 && val.mv_size == 8 && tl_get_be64(val.mv_data) + CAT_SLACK_NS >= e->max)
			return 0;
		if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
		tl_put_be64(v, e->max);
		val = (MDB_val){8, v};
		dbi = db->cat;
		break;
	}
	default:
		return 0;
	}
	key = (MDB_val){n, k};
	return mdb_put(txn, dbi, &key, &val, 0);
}

int co_index_put_trace(co_index_db *db, MDB_txn *txn, tl_arena *scratch, const uint8_t trace_id[16], uint64_t chunk_id,
                       const co_index_span *spans, size_t n)
{
	aggtab t = {.a = scratch};
	if (agg_grow(&t) != 0)
		return ENOMEM;
	const hstr none = hs("", 0);
	hstr svc = none, keys[NKEYS_MAX];
	const char *last_svc = NULL;
	for (size_t i = 0; i < db->nkeys; i++)
		keys[i] = hs(db->keys[i], db->key_len[i]);
	const tl_pb_resource *last_res = NULL;
	bool have_res = false;
	rattr ra[NKEYS_MAX];
	size_t nra = 0;
	char rbuf[NKEYS_MAX][32];
	char buf[32];
	agg *e;
	for (size_t i = 0; i < n; i++) {
		const tl_pb_span *sp = spans[i].span;
		if (i == 0 || spans[i].service != last_svc) {
			last_svc = spans[i].service;
			svc = last_svc != NULL ? hs(last_svc, strlen(last_svc)) : none;
		}
		uint64_t start = sp->start_time_unix_nano, dur = span_dur(sp);
		uint64_t bucket = start >> TB_SHIFT, blk = start >> TB_BLK_SHIFT;
		if (svc.len > 0) {
			if (agg_upd(&t, T_SVC, &svc, &none, false, bucket, start) == NULL)
				return ENOMEM;
			if (sp->name != NULL && sp->name[0] != '\0') {
				hstr name = hs(sp->name, strlen(sp->name));
				unsigned kind = sp->kind >= 0 && sp->kind <= 255 ? (unsigned)sp->kind : 0;
				if (agg_upd(&t, T_OP, &svc, &name, false, blk, start) == NULL ||
				    agg_upd(&t, T_CAT, &svc, &name, false, kind, start) == NULL)
					return ENOMEM;
			}
		}
		for (int any = 0; any < 2; any++) {
			if (!any && svc.len == 0)
				continue;
			uint64_t b = any ? start >> TB_ANY_SHIFT : bucket;
			if ((e = agg_upd(&t, T_DUR, any ? &none : &svc, &none, false, b, start)) == NULL)
				return ENOMEM;
			if (e->dur < dur) {
				e->dur = dur;
				e->dur_start = start;
			}
		}
		if (tl_otlp_span_failed(sp) && agg_upd(&t, T_ERR, &none, &none, false, bucket, start) == NULL)
			return ENOMEM;

		/* Attributes: the span's own, then its resource's for keys the span lacks. */
		uint64_t seen = 0;
		for (size_t j = 0; j < sp->n_attributes; j++) {
			const tl_pb_keyvalue *kv = sp->attributes[j];
			if (kv->key == NULL)
				continue;
			int ki = key_find(db, kv->key, strlen(kv->key));
			const char *v;
			size_t vlen;
			if (ki < 0 || (seen >> ki & 1) || !any_str(kv->value, buf, sizeof(buf), &v, &vlen))
				continue;
			seen |= UINT64_C(1) << ki;
			hstr hv = hs(v, vlen);
			if (agg_upd(&t, T_ATTR, &keys[ki], &hv, v == buf, blk, start) == NULL)
				return ENOMEM;
		}
		if (!have_res || spans[i].resource != last_res) {
			have_res = true;
			last_res = spans[i].resource;
			nra = 0;
			uint64_t rseen = 0;
			for (size_t j = 0; last_res != NULL && j < last_res->n_attributes; j++) {
				const tl_pb_keyvalue *kv = last_res->attributes[j];
				if (kv->key == NULL)
					continue;
				int ki = key_find(db, kv->key, strlen(kv->key));
				if (ki < 0 || (rseen >> ki & 1) ||
				    !any_str(kv->value, rbuf[nra], sizeof(rbuf[nra]), &ra[nra].v, &ra[nra].len))
					continue;
				rseen |= UINT64_C(1) << ki;
				ra[nra].key = ki;
				ra[nra].copy = ra[nra].v == rbuf[nra];
				nra++;
			}
		}
		for (size_t j = 0; j < nra; j++) {
			int ki = ra[j].key;
			if (seen >> ki & 1)
				continue;
			hstr hv = hs(ra[j].v, ra[j].len);
			if (agg_upd(&t, T_ATTR, &keys[ki], &hv, ra[j].copy, blk, start) == NULL)
				return ENOMEM;
		}
	}
	for (size_t i = 0; i < t.cap; i++) {
		if (t.e[i].tag == 0)
			continue;
		int rc = emit(db, txn, trace_id, chunk_id, &t.e[i]);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- blocks (ix_op, ix_attr) ---- */

static int cmp_pend(const void *x, const void *y)
{
	const pend *a = x, *b = y;
	if (a->which != b->which)
		return a->which < b->which ? -1 : 1;
	int c = a->pk == b->pk ? 0 : cmp_lp(a->pk, b->pk);
	if (c != 0)
		return c;
	if (a->tb != b->tb)
		return a->tb < b->tb ? -1 : 1;
	if ((c = cmp_lp(a->vk, b->vk)) != 0)
		return c;
	return (a->chunk > b->chunk) - (a->chunk < b->chunk);
}

static bool same_block(const pend *a, const pend *b)
{
	return a->which == b->which && a->tb == b->tb && (a->pk == b->pk || cmp_lp(a->pk, b->pk) == 0);
}

int co_index_flush(co_index_db *db, MDB_txn *txn)
{
	int rc = 0;
	if (db->npend > 1)
		qsort(db->pend, db->npend, sizeof(*db->pend), cmp_pend);
	for (size_t i = 0; i < db->npend && rc == 0;) {
		size_t j = i, bytes = 4;
		while (j < db->npend && same_block(&db->pend[j], &db->pend[i])) {
			bytes += 4 + lp_size(db->pend[j].vk) + REC_TAIL;
			j++;
		}
		if (bytes > UINT32_MAX) {
			rc = MDB_BAD_VALSIZE;
			break;
		}
		uint8_t k[2 + CO_INDEX_VALUE_MAX + 16];
		size_t kn = lp_size(db->pend[i].pk);
		memcpy(k, db->pend[i].pk, kn);
		tl_put_be64(k + kn, db->pend[i].tb);
		tl_put_be64(k + kn + 8, db->seq);
		MDB_val key = {kn + 16, k}, val = {bytes, NULL};
		if ((rc = mdb_put(txn, db->pend[i].which == B_OP ? db->op : db->attr, &key, &val, MDB_RESERVE)) != 0)
			break;
		uint8_t *b = val.mv_data;
		tl_put_be32(b, (uint32_t)(j - i));
		size_t off = 4 + 4 * (j - i);
		for (size_t r = i; r < j; r++) {
			const pend *p = &db->pend[r];
			size_t vn = lp_size(p->vk);
			tl_put_be32(b + 4 + 4 * (r - i), (uint32_t)off);
			memcpy(b + off, p->vk, vn);
			off += vn;
			tl_put_be64(b + off, p->chunk);
			tl_put_be64(b + off + 8, p->lo);
			tl_put_be64(b + off + 16, p->hi);
			memcpy(b + off + 24, p->trace, ID_LEN);
			off += REC_TAIL;
		}
		i = j;
	}
	co_index_discard(db);
	return rc;
}

void co_index_discard(co_index_db *db)
{
	db->npend = 0;
	tl_arena_reset(&db->vals);
}

int co_index_clear(co_index_db *db, MDB_txn *txn)
{
	MDB_dbi all[] = {db->svc, db->op, db->err, db->attr, db->dur, db->cat};
	int rc = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]) && rc == 0; i++)
		rc = mdb_drop(txn, all[i], 0);
	co_index_discard(db);
	return rc;
}

/* ---- reading a trace back (verification, dependencies) ---- */

typedef struct rcache {
	const uint8_t *hash;
	const tl_pb_resource *res;
	const char *svc;
} rcache;

typedef struct reader {
	co_store *s;
	MDB_txn *txn;
	const co_store_dbs *d;
	tl_arena tmp; /* one trace at a time */
	rcache *rc;
	size_t nrc, caprc;
} reader;

/* Called per span; returns 0 to go on, > 0 to stop (returned), < 0 for an error. */
typedef int (*span_fn)(void *ud, const tl_pb_span *sp, const char *svc, const tl_pb_resource *res);

static void reader_init(reader *r, co_store *s, MDB_txn *txn)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->txn = txn;
	r->d = co_store_get_dbs(s);
	tl_arena_init(&r->tmp, (size_t)256 << 10, 0);
	tl_arena_set_retain(&r->tmp, (size_t)16 << 20);
}

static void reader_fini(reader *r)
{
	tl_arena_fini(&r->tmp);
	free(r->rc);
}

static int resolve(reader *r, const ProtobufCBinaryData *hash, const tl_pb_resource **res, const char **svc)
{
	*res = NULL;
	*svc = NULL;
	if (hash->len != 16)
		return 0;
	for (size_t i = 0; i < r->nrc; i++) {
		if (memcmp(r->rc[i].hash, hash->data, 16) == 0) {
			*res = r->rc[i].res;
			*svc = r->rc[i].svc;
			return 0;
		}
	}
	MDB_val k = {16, hash->data}, v;
	int rc = mdb_get(r->txn, r->d->resources, &k, &v);
	if (rc == 0) {
		*res = opentelemetry__proto__resource__v1__resource__unpack(tl_arena_allocator(&r->tmp), v.mv_size,
		                                                            v.mv_data);
		if (*res == NULL)
			return TL_ECORRUPT;
		*svc = tl_otlp_service_name(*res);
	} else if (rc != MDB_NOTFOUND) {
		return tl_err_from_lmdb(rc);
	}
	if (r->nrc == r->caprc) {
		size_t ncap = r->caprc ? r->caprc * 2 : 8;
		rcache *n = realloc(r->rc, ncap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		r->rc = n;
		r->caprc = ncap;
	}
	r->rc[r->nrc++] = (rcache){hash->data, *res, *svc};
	return 0;
}

/*
 * Calls fn for every span of the trace, chunk by chunk, with its resource
 * and service resolved when need_res. Everything fn sees is valid until the
 * next read_trace. Returns 0, fn's positive value, or a TL error.
 */
typedef struct trace_walk {
	reader *r;
	bool need_res;
	span_fn fn;
	void *ud;
} trace_walk;

static int walk_chunk(uint64_t chunk_id, const uint8_t *val, size_t len, void *ud)
{
	(void)chunk_id;
	trace_walk *w = ud;
	st_chunk *ch = threadline__store__v1__chunk__unpack(tl_arena_allocator(&w->r->tmp), len, val);
	if (ch == NULL)
		return TL_ECORRUPT;
	int ret = 0;
	for (size_t g = 0; g < ch->n_groups && ret == 0; g++) {
		const st_group *gr = ch->groups[g];
		const tl_pb_resource *res = NULL;
		const char *svc = NULL;
		if (w->need_res && (ret = resolve(w->r, &gr->resource_hash, &res, &svc)) != 0)
			break;
		for (size_t i = 0; i < gr->n_spans && ret == 0; i++)
			ret = w->fn(w->ud, gr->spans[i], svc, res);
	}
	return ret;
}

static int read_trace(reader *r, const uint8_t *id, bool need_res, span_fn fn, void *ud)
{
	tl_arena_reset(&r->tmp);
	r->nrc = 0;
	trace_walk w = {r, need_res, fn, ud};
	int rc = co_store_each_chunk(r->s, r->txn, id, walk_chunk, &w);
	return rc == TL_ENOTFOUND ? 0 : rc;
}

/* ---- search ---- */

typedef struct search {
	co_store *s;
	const co_index_db *db;
	const co_search_query *q;
	MDB_txn *txn;
	reader rd;
	const char *svc, *op; /* NULL: any */
	size_t svclen, oplen;
	uint64_t from, to; /* to: UINT64_MAX when unbounded */
	size_t limit, max_examined, examined;
	bool partial;
	/* the best `limit` so far: a min-heap by (start, trace id) */
	co_trace_summary *top;
	size_t ntop;
	/* trace ids already considered */
	uint8_t (*seen)[ID_LEN];
	uint8_t *used;
	size_t seen_cap, nseen;
} search;

/* a sorts before b in the answer's order (newest first, then by id). */
static bool newer(const co_trace_summary *a, const co_trace_summary *b)
{
	if (a->start_ns != b->start_ns)
		return a->start_ns > b->start_ns;
	return memcmp(a->trace_id, b->trace_id, ID_LEN) > 0;
}

static void heap_swap(co_trace_summary *h, size_t i, size_t j)
{
	co_trace_summary t = h[i];
	h[i] = h[j];
	h[j] = t;
}

static void top_add(search *S, const co_trace_summary *sum)
{
	co_trace_summary *h = S->top;
	size_t i;
	if (S->ntop < S->limit) {
		i = S->ntop++;
		h[i] = *sum;
		while (i > 0 && newer(&h[(i - 1) / 2], &h[i])) {
			heap_swap(h, i, (i - 1) / 2);
			i = (i - 1) / 2;
		}
		return;
	}
	if (!newer(sum, &h[0]))
		return;
	h[0] = *sum;
	i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < S->ntop && newer(&h[m], &h[l]))
			m = l;
		if (r < S->ntop && newer(&h[m], &h[r]))
			m = r;
		if (m == i)
			break;
		heap_swap(h, i, m);
		i = m;
	}
}

/* No trace whose spans start before ts can enter the answer any more. */
static bool top_closed(const search *S, uint64_t ts)
{
	return S->ntop == S->limit && ts < S->top[0].start_ns;
}

/* Every span of time bucket tb of 2^shift ns (and of older ones) starts before this. */
static uint64_t tb_end_shift(uint64_t tb, unsigned shift)
{
	return tb >= (UINT64_MAX >> shift) ? UINT64_MAX : (tb + 1) << shift;
}

/* Returns 1 when id is new (and remembers it), 0 when seen, or -ENOMEM. */
static int seen_add(search *S, const uint8_t *id)
{
	if ((S->nseen + 1) * 2 > S->seen_cap) {
		size_t ncap = S->seen_cap ? S->seen_cap * 2 : 1024;
		uint8_t(*ns)[ID_LEN] = malloc(ncap * ID_LEN);
		uint8_t *nu = calloc(ncap, 1);
		if (ns == NULL || nu == NULL) {
			free(ns);
			free(nu);
			return -ENOMEM;
		}
		for (size_t i = 0; i < S->seen_cap; i++) {
			if (!S->used[i])
				continue;
			size_t slot = (size_t)hash_id(S->seen[i]) & (ncap - 1);
			while (nu[slot])
				slot = (slot + 1) & (ncap - 1);
			nu[slot] = 1;
			memcpy(ns[slot], S->seen[i], ID_LEN);
		}
		free(S->seen);
		free(S->used);
		S->seen = ns;
		S->used = nu;
		S->seen_cap = ncap;
	}
	size_t slot = (size_t)hash_id(id) & (S->seen_cap - 1);
	while (S->used[slot]) {
		if (memcmp(S->seen[slot], id, ID_LEN) == 0)
			return 0;
		slot = (slot + 1) & (S->seen_cap - 1);
	}
	S->used[slot] = 1;
	memcpy(S->seen[slot], id, ID_LEN);
	S->nseen++;
	return 1;
}

static bool str_is(const char *s, const char *want, size_t wantlen)
{
	return s != NULL && strlen(s) == wantlen && memcmp(s, want, wantlen) == 0;
}

/* The effective value of key for a span: its own attribute, else its resource's. */
static const tl_pb_anyvalue *attr_of(const tl_pb_span *sp, const tl_pb_resource *res, const char *key)
{
	for (size_t i = 0; i < sp->n_attributes; i++)
		if (sp->attributes[i]->key != NULL && strcmp(sp->attributes[i]->key, key) == 0)
			return sp->attributes[i]->value;
	for (size_t i = 0; res != NULL && i < res->n_attributes; i++)
		if (res->attributes[i]->key != NULL && strcmp(res->attributes[i]->key, key) == 0)
			return res->attributes[i]->value;
	return NULL;
}

static int match_span(void *ud, const tl_pb_span *sp, const char *svc, const tl_pb_resource *res)
{
	const search *S = ud;
	const co_search_query *q = S->q;
	uint64_t st = sp->start_time_unix_nano, d = span_dur(sp);
	if (st < S->from || st >= S->to)
		return 0;
	if (q->error_only && !tl_otlp_span_failed(sp))
		return 0;
	if ((q->min_duration_ns && d < q->min_duration_ns) || (q->max_duration_ns && d > q->max_duration_ns))
		return 0;
	if (S->svc != NULL && !str_is(svc, S->svc, S->svclen))
		return 0;
	if (S->op != NULL && !str_is(sp->name, S->op, S->oplen))
		return 0;
	for (size_t i = 0; i < q->n_attrs; i++) {
		char buf[32];
		const char *v;
		size_t vlen;
		const char *want = q->attrs[i].value != NULL ? q->attrs[i].value : "";
		if (!any_str(attr_of(sp, res, q->attrs[i].key), buf, sizeof(buf), &v, &vlen) || vlen != strlen(want) ||
		    memcmp(v, want, vlen) != 0)
			return 0;
	}
	return 1;
}

/* 1 when some span of the trace meets every condition, 0 when none, or a TL error. */
static int verify(search *S, const uint8_t *id)
{
	bool need_res = S->svc != NULL || S->q->n_attrs > 0;
	return read_trace(&S->rd, id, need_res, match_span, S);
}

/* Considers a candidate: dedupe, summary, verification unless proven. Returns 0 or a TL error. */
static int consider(search *S, const uint8_t *id, bool proven)
{
	int rc = seen_add(S, id);
	if (rc <= 0)
		return rc;
	co_trace_summary sum;
	rc = co_store_summary_txn(S->s, S->txn, id, &sum);
	if (rc == TL_ENOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (S->ntop == S->limit && !newer(&sum, &S->top[0]))
		return 0;
	if (!proven) {
		rc = verify(S, id);
		if (rc <= 0)
			return rc;
	}
	top_add(S, &sum);
	return 0;
}

/* Positions c on the last key below seek (within nothing in particular). */
static int seek_before(MDB_cursor *c, const uint8_t *seek, size_t len, MDB_val *k, MDB_val *v)
{
	k->mv_size = len;
	k->mv_data = (void *)seek;
	int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
	if (rc == 0)
		return mdb_cursor_get(c, k, v, MDB_PREV);
	if (rc == MDB_NOTFOUND)
		return mdb_cursor_get(c, k, v, MDB_LAST);
	return rc;
}

/* Whether another entry may be read; sets partial when the budget is spent. */
static bool budget(search *S)
{
	if (S->examined >= S->max_examined) {
		S->partial = true;
		return false;
	}
	S->examined++;
	return true;
}

/*
 * Decides on one entry from its span range: skips it when none of its spans
 * starts in [from, to), else considers its trace, proven when base_proven
 * and the range shows a span inside (its earliest or latest start).
 */
static int consider_range(search *S, const uint8_t *val, bool base_proven)
{
	uint64_t lo = tl_get_be64(val), hi = tl_get_be64(val + 8);
	if (hi < S->from || lo >= S->to)
		return 0;
	bool inside = lo >= S->from || hi < S->to;
	return consider(S, val + 16, base_proven && inside);
}

/* Called for each entry of a walk: returns 0 to go on, or a TL error. */
typedef int (*entry_fn)(search *S, const MDB_val *v, const void *ud);

/*
 * Walks the keys prefix || tb || 8 bytes (tb: buckets of 2^shift ns),
 * newest bucket first, over the search's time range, calling fn for each
 * entry until a bucket is older than every kept trace, the budget runs out
 * or the search is partial.
 */
static int walk_newest(search *S, MDB_dbi dbi, const uint8_t *pre, size_t plen, unsigned shift, entry_fn fn,
                       const void *ud)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(S->txn, dbi, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t seek[KEY_CAP];
	memcpy(seek, pre, plen);
	tl_put_be64(seek + plen, ((S->to - 1) >> shift) + 1);
	uint64_t tb_lo = S->from >> shift;
	MDB_val k, v;
	int ret = 0;
	rc = seek_before(c, seek, plen + 8, &k, &v);
	while (rc == 0 && ret == 0 && !S->partial) {
		const uint8_t *kp = k.mv_data;
		if (k.mv_size < plen + TIMED_TAIL || memcmp(kp, pre, plen) != 0)
			break;
		uint64_t tb = tl_get_be64(kp + plen);
		if (tb < tb_lo || top_closed(S, tb_end_shift(tb, shift)) || !budget(S))
			break;
		if (k.mv_size == plen + TIMED_TAIL)
			ret = fn(S, &v, ud);
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
	}
	mdb_cursor_close(c);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	return ret;
}

/* An entry prefix || tb || chunk -> span range || trace_id. */
static int timed_entry(search *S, const MDB_val *v, const void *ud)
{
	const bool *base_proven = ud;
	return v->mv_size == VAL_LEN ? consider_range(S, v->mv_data, *base_proven) : 0;
}

/*
 * Compares the record at off in block b (size bytes) with want (lp()
 * bytes): by the length field, then the bytes, as co_index_flush() sorted
 * them. *bad is set when the record does not fit the block.
 */
static int rec_cmp(const uint8_t *b, size_t size, size_t off, const uint8_t *want, size_t wlen, bool *bad)
{
	if (off > size || size - off < 2) {
		*bad = true;
		return 0;
	}
	unsigned lf = (unsigned)b[off] << 8 | b[off + 1], wf = (unsigned)want[0] << 8 | want[1];
	size_t n = lf & ~LP_CUT;
	if (n > CO_INDEX_VALUE_MAX || size - off < 2 + n + REC_TAIL) {
		*bad = true;
		return 0;
	}
	if (lf != wf)
		return lf < wf ? -1 : 1;
	return memcmp(b + off + 2, want + 2, wlen - 2);
}

typedef struct block_want {
	const uint8_t *want; /* lp() bytes */
	size_t wlen;
	bool base_proven;
} block_want;

/* A block of ix_op or ix_attr: the records of the wanted value, found by binary search. */
static int block_entry(search *S, const MDB_val *v, const void *ud)
{
	const block_want *w = ud;
	const uint8_t *b = v->mv_data;
	size_t size = v->mv_size, count = size >= 4 ? tl_get_be32(b) : 0;
	bool bad = size < 4 || count > (size - 4) / 4;
	size_t lo = 0, hi = bad ? 0 : count;
	while (lo < hi && !bad) {
		size_t mid = lo + (hi - lo) / 2;
		if (rec_cmp(b, size, tl_get_be32(b + 4 + 4 * mid), w->want, w->wlen, &bad) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	int ret = 0;
	for (size_t i = lo; i < count && !bad && ret == 0; i++) {
		size_t off = tl_get_be32(b + 4 + 4 * i);
		if (rec_cmp(b, size, off, w->want, w->wlen, &bad) != 0 || bad)
			break;
		if (!budget(S))
			break;
		ret = consider_range(S, b + off + w->wlen + 8, w->base_proven);
	}
	return ret;
}

/* Reads one time bucket of ix_dur from the minimum's duration class up. */
static int walk_dur_bucket(search *S, MDB_cursor *c, const uint8_t *pre, size_t plen, uint64_t tb, bool base_proven)
{
	uint64_t mind = S->q->min_duration_ns, maxd = S->q->max_duration_ns;
	uint8_t seek[KEY_CAP];
	memcpy(seek, pre, plen);
	tl_put_be64(seek + plen, tb);
	seek[plen + 8] = dur_class(mind);
	MDB_val k = {plen + 9, seek}, v;
	int ret = 0;
	int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && ret == 0) {
		const uint8_t *kp = k.mv_data;
		if (k.mv_size != plen + 17 || memcmp(kp, pre, plen) != 0 || tl_get_be64(kp + plen) != tb)
			break;
		if (!budget(S))
			break;
		const uint8_t *vp = v.mv_data;
		if (v.mv_size == DUR_VAL_LEN && tl_get_be64(vp) >= mind) {
			uint64_t d = tl_get_be64(vp), st = tl_get_be64(vp + 8);
			/* The longest span itself, when inside every bound, proves the entry. */
			bool longest = (maxd == 0 || d <= maxd) && st >= S->from && st < S->to;
			uint64_t lo = tl_get_be64(vp + 16), hi = tl_get_be64(vp + 24);
			if (hi >= S->from && lo < S->to)
				ret = consider(S, vp + 32, base_proven && longest);
		}
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	return ret;
}

/* Walks ix_dur under prefix, newest time bucket first. */
static int walk_dur(search *S, const uint8_t *pre, size_t plen, bool base_proven)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(S->txn, S->db->dur, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t seek[KEY_CAP];
	memcpy(seek, pre, plen);
	/* lp("") is two zero bytes: the all-services entries, in coarser buckets. */
	unsigned shift = plen == 2 ? TB_ANY_SHIFT : TB_SHIFT;
	uint64_t next = ((S->to - 1) >> shift) + 1, tb_lo = S->from >> shift;
	int ret = 0;
	for (;;) {
		/* The newest bucket below `next` that has entries. */
		MDB_val k, v;
		tl_put_be64(seek + plen, next);
		rc = seek_before(c, seek, plen + 8, &k, &v);
		if (rc != 0 || k.mv_size != plen + 17 || memcmp(k.mv_data, pre, plen) != 0)
			break;
		uint64_t tb = tl_get_be64((const uint8_t *)k.mv_data + plen);
		if (tb < tb_lo || top_closed(S, tb_end_shift(tb, shift)) || !budget(S))
			break;
		if ((ret = walk_dur_bucket(S, c, pre, plen, tb, base_proven)) != 0 || S->partial)
			break;
		next = tb;
	}
	mdb_cursor_close(c);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	return ret;
}

/* Walks the store's trace_starts newest first. */
static int walk_traces(search *S, bool base_proven)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(S->txn, co_store_get_dbs(S->s)->trace_starts, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t seek[8];
	tl_put_be64(seek, S->to);
	MDB_val k, v;
	int ret = 0;
	rc = seek_before(c, seek, 8, &k, &v);
	while (rc == 0 && ret == 0) {
		if (k.mv_size != TIME_IDX_LEN)
			break;
		uint64_t ts = tl_get_be64(k.mv_data);
		if (ts < S->from || top_closed(S, ts) || !budget(S))
			break;
		if (ts < S->to)
			ret = consider(S, (const uint8_t *)k.mv_data + 8, base_proven);
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
	}
	mdb_cursor_close(c);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	return ret;
}

static int cmp_newest(const void *x, const void *y)
{
	const co_trace_summary *a = x, *b = y;
	return newer(a, b) ? -1 : newer(b, a) ? 1 : 0;
}

static int run_search(search *S)
{
	const co_search_query *q = S->q;
	uint8_t pre[KEY_CAP], tail[2 + CO_INDEX_VALUE_MAX];
	size_t plen = 0, tlen = 0;
	/* Which conditions the chosen index proves by itself. */
	bool cov_svc = false, cov_op = false, cov_err = false, cov_min = false, cov_max = false;
	size_t cov_attr = SIZE_MAX;
	enum { W_TIMED, W_BLOCKS, W_DUR, W_TRACES } how = W_TRACES;
	MDB_dbi dbi = 0;
	for (size_t i = 0; i < q->n_attrs; i++) {
		const char *key = q->attrs[i].key, *val = q->attrs[i].value != NULL ? q->attrs[i].value : "";
		int ki = key_find(S->db, key, strlen(key));
		if (ki < 0)
			continue;
		plen = lp_put(pre, key, strlen(key));
		tlen = lp_put(tail, val, strlen(val));
		if (!lp_is_cut(strlen(val)))
			cov_attr = i;
		how = W_BLOCKS;
		dbi = S->db->attr;
		break;
	}
	if (how == W_TRACES && S->svc != NULL && S->op != NULL) {
		plen = lp_put(pre, S->svc, S->svclen);
		tlen = lp_put(tail, S->op, S->oplen);
		cov_svc = cov_op = !lp_is_cut(S->svclen) && !lp_is_cut(S->oplen);
		how = W_BLOCKS;
		dbi = S->db->op;
	} else if (how == W_TRACES && S->svc != NULL && q->min_duration_ns > 0) {
		plen = lp_put(pre, S->svc, S->svclen);
		cov_svc = !lp_is_cut(S->svclen);
		cov_min = cov_max = true;
		how = W_DUR;
	} else if (how == W_TRACES && S->svc != NULL) {
		plen = lp_put(pre, S->svc, S->svclen);
		cov_svc = !lp_is_cut(S->svclen);
		how = W_TIMED;
		dbi = S->db->svc;
	} else if (how == W_TRACES && q->error_only) {
		cov_err = true;
		how = W_TIMED;
		dbi = S->db->err;
	} else if (how == W_TRACES && q->min_duration_ns > 0) {
		plen = lp_put(pre, "", 0);
		cov_min = cov_max = true;
		how = W_DUR;
	}
	bool proven = (S->svc == NULL || cov_svc) && (S->op == NULL || cov_op) && (!q->error_only || cov_err) &&
	              (q->min_duration_ns == 0 || cov_min) && (q->max_duration_ns == 0 || cov_max);
	for (size_t i = 0; i < q->n_attrs && proven; i++)
		proven = i == cov_attr;
	switch (how) {
	case W_TIMED:
		return walk_newest(S, dbi, pre, plen, TB_SHIFT, timed_entry, &proven);
	case W_BLOCKS:
		return walk_newest(S, dbi, pre, plen, TB_BLK_SHIFT, block_entry, &(block_want){tail, tlen, proven});
	case W_DUR:
		return walk_dur(S, pre, plen, proven);
	default:
		return walk_traces(S, proven);
	}
}

int co_search(co_store *s, const co_search_query *q, tl_arena *arena, co_search_result *out, tl_errmsg *err)
{
	memset(out, 0, sizeof(*out));
	if (q->to_ns != 0 && q->from_ns > q->to_ns)
		return tl_errf(err, TL_EINVALID, "from_unix_nano (%" PRIu64 ") is after to_unix_nano (%" PRIu64 ")",
		               q->from_ns, q->to_ns);
	if (q->min_duration_ns != 0 && q->max_duration_ns != 0 && q->min_duration_ns > q->max_duration_ns)
		return tl_errf(err, TL_EINVALID,
		               "min_duration_nano (%" PRIu64 ") is larger than max_duration_nano (%" PRIu64 ")",
		               q->min_duration_ns, q->max_duration_ns);
	for (size_t i = 0; i < q->n_attrs; i++)
		if (q->attrs[i].key == NULL || q->attrs[i].key[0] == '\0')
			return tl_errf(err, TL_EINVALID, "attrs[%zu]: empty key", i);
	search S = {
	        .s = s,
	        .db = co_store_index_db(s),
	        .q = q,
	        .from = q->from_ns,
	        .to = q->to_ns != 0 ? q->to_ns : UINT64_MAX,
	        .limit = q->limit == 0                    ? CO_SEARCH_LIMIT_DEFAULT
	                 : q->limit > CO_SEARCH_LIMIT_MAX ? CO_SEARCH_LIMIT_MAX
	                                                  : q->limit,
	        .max_examined = q->max_examined != 0 ? q->max_examined : CO_SEARCH_EXAMINE_DEFAULT,
	};
	if (q->service != NULL && q->service[0] != '\0') {
		S.svc = q->service;
		S.svclen = strlen(q->service);
	}
	if (q->operation != NULL && q->operation[0] != '\0') {
		S.op = q->operation;
		S.oplen = strlen(q->operation);
	}
	S.top = malloc(S.limit * sizeof(*S.top));
	if (S.top == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	int rc = co_store_read_begin(s, &S.txn);
	if (rc != 0) {
		free(S.top);
		return tl_errf(err, rc, "search: %s", tl_strerror(rc));
	}
	reader_init(&S.rd, s, S.txn);
	rc = S.from < S.to ? run_search(&S) : 0;
	reader_fini(&S.rd);
	co_store_read_end(s, S.txn);
	free(S.seen);
	free(S.used);
	if (rc == 0 && S.ntop > 0) {
		qsort(S.top, S.ntop, sizeof(*S.top), cmp_newest);
		out->traces = tl_arena_alloc(arena, S.ntop * sizeof(*out->traces));
		if (out->traces == NULL)
			rc = TL_ELIMIT;
		else
			memcpy(out->traces, S.top, S.ntop * sizeof(*out->traces));
	}
	free(S.top);
	if (rc != 0) {
		out->traces = NULL;
		return tl_errf(err, rc, "search: %s", tl_strerror(rc));
	}
	out->n = S.ntop;
	out->examined = S.examined;
	out->partial = S.partial;
	return 0;
}

/* ---- catalog ---- */

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int co_index_services(co_store *s, tl_arena *arena, const char ***names, size_t *n)
{
	*names = NULL;
	*n = 0;
	const co_index_db *db = co_store_index_db(s);
	MDB_txn *txn;
	int rc = co_store_read_begin(s, &txn);
	if (rc != 0)
		return rc;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, db->cat, &c)) != 0) {
		co_store_read_end(s, txn);
		return tl_err_from_lmdb(rc);
	}
	const char **v = NULL;
	size_t cnt = 0, cap = 0;
	int ret = 0;
	MDB_val k, val;
	rc = mdb_cursor_get(c, &k, &val, MDB_FIRST);
	while (rc == 0) {
		const char *svc;
		size_t len;
		size_t used = lp_get(k.mv_data, k.mv_size, &svc, &len);
		if (used == 0) {
			ret = TL_ECORRUPT;
			break;
		}
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			const char **nv = tl_arena_alloc(arena, ncap * sizeof(*nv));
			if (nv == NULL) {
				ret = TL_ELIMIT;
				break;
			}
			if (cnt)
				memcpy(nv, v, cnt * sizeof(*nv));
			v = nv;
			cap = ncap;
		}
		if ((v[cnt] = tl_arena_strndup(arena, svc, len)) == NULL) {
			ret = TL_ELIMIT;
			break;
		}
		cnt++;
		/* Skip this service's operations: the next key after every lp(op) of it. */
		uint8_t seek[2 + CO_INDEX_VALUE_MAX + 2];
		memcpy(seek, k.mv_data, used);
		seek[used] = seek[used + 1] = 0xff;
		k.mv_size = used + 2;
		k.mv_data = seek;
		rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE);
	}
	mdb_cursor_close(c);
	co_store_read_end(s, txn);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	if (ret != 0)
		return ret;
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), cmp_str);
	*names = v;
	*n = cnt;
	return 0;
}

static int cmp_op(const void *x, const void *y)
{
	const co_operation *a = x, *b = y;
	int c = strcmp(a->name, b->name);
	return c != 0 ? c : (a->kind > b->kind) - (a->kind < b->kind);
}

int co_index_operations(co_store *s, const char *service, int kind, tl_arena *arena, co_operation **ops, size_t *n)
{
	*ops = NULL;
	*n = 0;
	if (service == NULL || service[0] == '\0')
		return 0;
	const co_index_db *db = co_store_index_db(s);
	uint8_t pre[2 + CO_INDEX_VALUE_MAX];
	size_t svclen = strlen(service);
	size_t plen = lp_put(pre, service, svclen);
	MDB_txn *txn;
	int rc = co_store_read_begin(s, &txn);
	if (rc != 0)
		return rc;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, db->cat, &c)) != 0) {
		co_store_read_end(s, txn);
		return tl_err_from_lmdb(rc);
	}
	co_operation *v = NULL;
	size_t cnt = 0, cap = 0;
	int ret = 0;
	MDB_val k = {plen, pre}, val;
	rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > plen && memcmp(k.mv_data, pre, plen) == 0) {
		const char *op;
		size_t oplen;
		size_t used = lp_get((const uint8_t *)k.mv_data + plen, k.mv_size - plen, &op, &oplen);
		if (used == 0 || k.mv_size != plen + used + 1) {
			ret = TL_ECORRUPT;
			break;
		}
		int kd = ((const uint8_t *)k.mv_data)[plen + used];
		if (kind < 0 || kd == kind) {
			if (cnt == cap) {
				size_t ncap = cap ? cap * 2 : 32;
				co_operation *nv = tl_arena_alloc(arena, ncap * sizeof(*nv));
				if (nv == NULL) {
					ret = TL_ELIMIT;
					break;
				}
				if (cnt)
					memcpy(nv, v, cnt * sizeof(*nv));
				v = nv;
				cap = ncap;
			}
			if ((v[cnt].name = tl_arena_strndup(arena, op, oplen)) == NULL) {
				ret = TL_ELIMIT;
				break;
			}
			v[cnt].kind = kd;
			cnt++;
		}
		rc = mdb_cursor_get(c, &k, &val, MDB_NEXT);
	}
	mdb_cursor_close(c);
	co_store_read_end(s, txn);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	if (ret != 0)
		return ret;
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), cmp_op);
	*ops = v;
	*n = cnt;
	return 0;
}

/* ---- dependencies ---- */

typedef struct dspan {
	uint64_t id, parent; /* 8-byte span ids as integers; parent 0: none */
	const char *svc;
} dspan;

typedef struct dpair {
	const char *parent, *child;
	uint64_t calls;
	bool used;
} dpair;

typedef struct deps {
	dspan *sp;
	size_t n, cap;
	dpair *pairs;
	size_t npairs, pcap;
	tl_arena *out;
} deps;

static int collect_span(void *ud, const tl_pb_span *sp, const char *svc, const tl_pb_resource *res)
{
	(void)res;
	deps *D = ud;
	if (sp->span_id.len != 8 || svc == NULL || svc[0] == '\0')
		return 0;
	if (D->n == D->cap) {
		size_t ncap = D->cap ? D->cap * 2 : 256;
		dspan *ns = realloc(D->sp, ncap * sizeof(*ns));
		if (ns == NULL)
			return -ENOMEM;
		D->sp = ns;
		D->cap = ncap;
	}
	dspan *d = &D->sp[D->n++];
	d->id = tl_get_be64(sp->span_id.data);
	d->parent = sp->parent_span_id.len == 8 ? tl_get_be64(sp->parent_span_id.data) : 0;
	d->svc = svc;
	return 0;
}

static int cmp_dspan(const void *x, const void *y)
{
	const dspan *a = x, *b = y;
	return (a->id > b->id) - (a->id < b->id);
}

static int pair_count(deps *D, const char *parent, const char *child)
{
	if ((D->npairs + 1) * 2 > D->pcap) {
		size_t ncap = D->pcap ? D->pcap * 2 : 64;
		dpair *np = calloc(ncap, sizeof(*np));
		if (np == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < D->pcap; i++) {
			if (!D->pairs[i].used)
				continue;
			uint64_t h = fnv(
			        fnv(UINT64_C(0xcbf29ce484222325), D->pairs[i].parent, strlen(D->pairs[i].parent) + 1),
			        D->pairs[i].child, strlen(D->pairs[i].child));
			size_t slot = (size_t)h & (ncap - 1);
			while (np[slot].used)
				slot = (slot + 1) & (ncap - 1);
			np[slot] = D->pairs[i];
		}
		free(D->pairs);
		D->pairs = np;
		D->pcap = ncap;
	}
	uint64_t h = fnv(fnv(UINT64_C(0xcbf29ce484222325), parent, strlen(parent) + 1), child, strlen(child));
	size_t slot = (size_t)h & (D->pcap - 1);
	while (D->pairs[slot].used) {
		dpair *p = &D->pairs[slot];
		if (strcmp(p->parent, parent) == 0 && strcmp(p->child, child) == 0) {
			p->calls++;
			return 0;
		}
		slot = (slot + 1) & (D->pcap - 1);
	}
	char *pc = tl_arena_strndup(D->out, parent, strlen(parent));
	char *cc = tl_arena_strndup(D->out, child, strlen(child));
	if (pc == NULL || cc == NULL)
		return TL_ELIMIT;
	D->pairs[slot] = (dpair){pc, cc, 1, true};
	D->npairs++;
	return 0;
}

static int trace_deps(deps *D)
{
	if (D->n > 1)
		qsort(D->sp, D->n, sizeof(*D->sp), cmp_dspan);
	for (size_t i = 0; i < D->n; i++) {
		const dspan *c = &D->sp[i];
		if (c->parent == 0)
			continue;
		size_t lo = 0, hi = D->n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (D->sp[mid].id < c->parent)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == D->n || D->sp[lo].id != c->parent || strcmp(D->sp[lo].svc, c->svc) == 0)
			continue;
		int rc = pair_count(D, D->sp[lo].svc, c->svc);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int cmp_dep(const void *x, const void *y)
{
	const co_dependency *a = x, *b = y;
	int c = strcmp(a->parent, b->parent);
	return c != 0 ? c : strcmp(a->child, b->child);
}

int co_index_dependencies(co_store *s, uint64_t from_ns, uint64_t to_ns, size_t max_traces, tl_arena *arena,
                          co_dependency **out, size_t *n, bool *partial)
{
	*out = NULL;
	*n = 0;
	*partial = false;
	if (max_traces == 0)
		max_traces = DEPS_DEFAULT;
	uint64_t to = to_ns != 0 ? to_ns : UINT64_MAX;
	if (from_ns >= to)
		return 0;
	MDB_txn *txn;
	int rc = co_store_read_begin(s, &txn);
	if (rc != 0)
		return rc;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, co_store_get_dbs(s)->trace_starts, &c)) != 0) {
		co_store_read_end(s, txn);
		return tl_err_from_lmdb(rc);
	}
	reader rd;
	reader_init(&rd, s, txn);
	deps D = {.out = arena};
	uint8_t seek[8];
	tl_put_be64(seek, to);
	MDB_val k, v;
	size_t traces = 0;
	int ret = 0;
	rc = seek_before(c, seek, 8, &k, &v);
	while (rc == 0 && ret == 0) {
		if (k.mv_size != TIME_IDX_LEN || tl_get_be64(k.mv_data) < from_ns)
			break;
		if (traces == max_traces) {
			*partial = true;
			break;
		}
		traces++;
		D.n = 0;
		ret = read_trace(&rd, (const uint8_t *)k.mv_data + 8, true, collect_span, &D);
		if (ret == 0)
			ret = trace_deps(&D);
		if (ret == 0)
			rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
	}
	mdb_cursor_close(c);
	reader_fini(&rd);
	co_store_read_end(s, txn);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	co_dependency *res = NULL;
	if (ret == 0 && D.npairs > 0) {
		res = tl_arena_alloc(arena, D.npairs * sizeof(*res));
		if (res == NULL) {
			ret = TL_ELIMIT;
		} else {
			size_t j = 0;
			for (size_t i = 0; i < D.pcap; i++)
				if (D.pairs[i].used)
					res[j++] =
					        (co_dependency){D.pairs[i].parent, D.pairs[i].child, D.pairs[i].calls};
			qsort(res, D.npairs, sizeof(*res), cmp_dep);
		}
	}
	free(D.sp);
	free(D.pairs);
	if (ret != 0) {
		*partial = false;
		return ret;
	}
	*out = res;
	*n = res != NULL ? D.npairs : 0;
	return 0;
}

/* ---- counts ---- */

int co_index_counts_get(co_store *s, co_index_counts *out)
{
	memset(out, 0, sizeof(*out));
	const co_index_db *db = co_store_index_db(s);
	co_store_count m[] = {
	        {db->svc, &out->svc},   {db->op, &out->op},   {db->err, &out->err},
	        {db->attr, &out->attr}, {db->dur, &out->dur}, {db->cat, &out->cat},
	};
	return co_store_count_entries(s, m, sizeof(m) / sizeof(m[0]));
}
