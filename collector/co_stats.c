/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SLIs and latency budgets (co_stats.h): the per-minute histogram cells the
 * store's commit feeds, and the `threadline stats` answer read from them
 * and, for a budget, from the critical paths of the traces that broke it.
 *
 * Writing: a batch's spans are keyed by their cell (the LMDB key itself,
 * built once per span), grouped with a hash table and a counting sort in
 * the store's scratch arena, and each distinct cell costs one mdb_get and
 * one mdb_put. A cell that does not decode is replaced by what the batch
 * brings rather than blocking every later batch of that minute.
 *
 * Reading: one cursor walk per answer. The keys of one (service,
 * operation) are contiguous and ordered by minute, so the walk seeks to the
 * window's first minute of each pair and jumps past its last one; cells
 * outside the window are never decoded.
 */
#include "co_stats.h"
#include "tl_be.h"

#include "co_analyze.h"
#include "co_index.h"
#include "tl_id.h"
#include "tl_time.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CELL_VERSION 1
#define KEY_MAX (2 + CO_STATS_NAME_MAX + 2 + CO_STATS_NAME_MAX + 4)
#define VARINT_MAX 10
#define CELL_MAX (1 + 6 * VARINT_MAX + CO_STATS_BUCKETS * 2 * VARINT_MAX)
#define UNKNOWN_SERVICE "unknown_service"
#define MIN_NS CO_STATS_MINUTE_NS
#define US_NS UINT64_C(1000)
#define OCTAVES 48

struct co_stats_db {
	MDB_dbi dbi;
	unsigned char hkey[crypto_shorthash_KEYBYTES]; /* keys the in-memory tables (random per process) */
	uint64_t acc[CO_STATS_BUCKETS];                /* the committing thread's merge buffer */
};

/* ---- histogram buckets ---- */

/* 2^(k/8) in Q31, rounded down. */
static const uint64_t OCT_Q31[8] = {2147483648u, 2341847523u, 2553802833u, 2784941737u,
                                    3037000499u, 3311872529u, 3611622602u, 3938502375u};
#define MID_Q31 UINT64_C(2242578744) /* 2^(1/16) in Q31 */

/* floor(a * m / 2^31) for m < 2^32, without overflow for a < 2^63. */
static uint64_t mul_q31(uint64_t a, uint64_t m)
{
	uint64_t hi = a >> 31, lo = a & ((UINT64_C(1) << 31) - 1);
	return hi * m + ((lo * m) >> 31);
}

uint64_t co_stats_bucket_lower(unsigned b)
{
	if (b == 0)
		return 0;
	if (b >= CO_STATS_BUCKETS)
		b = CO_STATS_BUCKETS - 1;
	unsigned e = (b - 1) / 8, k = (b - 1) % 8;
	return mul_q31(US_NS << e, OCT_Q31[k]);
}

unsigned co_stats_bucket(uint64_t d)
{
	if (d < US_NS)
		return 0;
	unsigned e = 63u - (unsigned)__builtin_clzll(d / US_NS);
	if (e >= OCTAVES)
		return CO_STATS_BUCKETS - 1;
	/* The largest k with d >= 1 µs * 2^e * 2^(k/8): a binary search over the octave's eight bounds. */
	uint64_t o = US_NS << e;
	unsigned k = 0;
	for (unsigned step = 4; step > 0; step /= 2)
		if (d >= mul_q31(o, OCT_Q31[k + step])) /* k + step <= 7 */
			k += step;
	return 1 + 8 * e + k;
}

/* The duration a percentile in bucket b is answered with, before clamping to [min, max]. */
static uint64_t bucket_mid(unsigned b)
{
	return b == 0 ? US_NS / 2 : mul_q31(co_stats_bucket_lower(b), MID_Q31);
}

/* ---- cells ---- */

typedef struct cell {
	uint64_t count, errors, sum, min, max;
	uint64_t *h;     /* CO_STATS_BUCKETS counts */
	unsigned lo, hi; /* every non-zero count is in h[lo..hi]; lo > hi when none */
} cell;

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void cell_clear(cell *c)
{
	c->count = c->errors = c->sum = c->max = 0;
	c->min = UINT64_MAX;
	if (c->lo <= c->hi)
		memset(c->h + c->lo, 0, (c->hi - c->lo + 1) * sizeof(*c->h));
	c->lo = CO_STATS_BUCKETS;
	c->hi = 0;
}

/* A cell with no counts over h (CO_STATS_BUCKETS zeroes, borrowed). */
static cell cell_init(uint64_t *h)
{
	return (cell){.min = UINT64_MAX, .h = h, .lo = CO_STATS_BUCKETS, .hi = 0};
}

static void cell_touch(cell *c, unsigned b)
{
	if (b < c->lo)
		c->lo = b;
	if (b > c->hi)
		c->hi = b;
}

/* Adds one span of duration d, which falls in bucket b. */
static void cell_add(cell *c, uint64_t d, unsigned b, bool error)
{
	c->count++;
	c->errors += error;
	c->sum = sat_add(c->sum, d);
	if (d < c->min)
		c->min = d;
	if (d > c->max)
		c->max = d;
	c->h[b]++;
	cell_touch(c, b);
}

/* Reads a varint at *p (below end). Returns false when truncated or longer than 64 bits. */
static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		if (shift == 63 && b > 1)
			return false;
		r |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* Encodes c (count > 0) into buf (CELL_MAX bytes). Returns the length. */
static size_t cell_encode(const cell *c, uint8_t *buf)
{
	size_t n = 0, nb = 0;
	for (unsigned b = c->lo; b <= c->hi; b++)
		nb += c->h[b] != 0;
	buf[n++] = CELL_VERSION;
	n += tl_put_varint(buf + n, c->count);
	n += tl_put_varint(buf + n, c->errors);
	n += tl_put_varint(buf + n, c->sum);
	n += tl_put_varint(buf + n, c->min);
	n += tl_put_varint(buf + n, c->max);
	n += tl_put_varint(buf + n, nb);
	unsigned prev = 0;
	bool first = true;
	for (unsigned b = c->lo; b <= c->hi; b++) {
		if (c->h[b] == 0)
			continue;
		n += tl_put_varint(buf + n, first ? b : b - prev);
		n += tl_put_varint(buf + n, c->h[b]);
		prev = b;
		first = false;
	}
	return n;
}

/*
 * Adds the cell encoded in v[0..len) to c. Checks everything before adding
 * anything, so c is unchanged when the value does not decode. Returns false then.
 */
static bool cell_merge(cell *c, const uint8_t *v, size_t len)
{
	const uint8_t *p = v, *end = v + len;
	uint64_t count, errors, sum, mn, mx, nb;
	if (len < 1 || *p++ != CELL_VERSION)
		return false;
	if (!get_varint(&p, end, &count) || !get_varint(&p, end, &errors) || !get_varint(&p, end, &sum) ||
	    !get_varint(&p, end, &mn) || !get_varint(&p, end, &mx) || !get_varint(&p, end, &nb))
		return false;
	if (count == 0 || errors > count || mn > mx || nb == 0 || nb > CO_STATS_BUCKETS)
		return false;
	/* First pass: validate the buckets and their total. */
	const uint8_t *hp = p;
	uint64_t total = 0, idx = 0;
	for (uint64_t i = 0; i < nb; i++) {
		uint64_t gap, n;
		if (!get_varint(&p, end, &gap) || !get_varint(&p, end, &n) || n == 0 || (i > 0 && gap == 0))
			return false;
		if (gap >= CO_STATS_BUCKETS || (idx += gap) >= CO_STATS_BUCKETS || n > count - total)
			return false;
		total += n;
	}
	if (total != count || p != end)
		return false;
	p = hp;
	idx = 0;
	for (uint64_t i = 0; i < nb; i++) {
		uint64_t gap, n;
		get_varint(&p, end, &gap);
		get_varint(&p, end, &n);
		idx += gap;
		c->h[idx] = sat_add(c->h[idx], n);
		cell_touch(c, (unsigned)idx);
	}
	c->count = sat_add(c->count, count);
	c->errors = sat_add(c->errors, errors);
	c->sum = sat_add(c->sum, sum);
	if (mn < c->min)
		c->min = mn;
	if (mx > c->max)
		c->max = mx;
	return true;
}

/* The nearest-rank percentile p (1..100) of c (count > 0), as co_stats.h describes. */
static uint64_t cell_percentile(const cell *c, unsigned p)
{
	uint64_t rank = c->count / 100 * p + (c->count % 100 * p + 99) / 100;
	if (rank == 0)
		rank = 1;
	uint64_t cum = 0;
	unsigned b = c->lo;
	for (; b <= c->hi; b++) {
		cum += c->h[b];
		if (cum >= rank)
			break;
	}
	if (b > c->hi) /* only when counts saturated */
		b = c->hi;
	uint64_t v = bucket_mid(b);
	if (v < c->min)
		v = c->min;
	if (v > c->max)
		v = c->max;
	return v;
}

/* ---- keys ---- */

/* How many of s's first len bytes to keep: at most CO_STATS_NAME_MAX, not splitting a UTF-8 character. */
static size_t name_cut(const char *s, size_t len)
{
	if (len <= CO_STATS_NAME_MAX)
		return len;
	size_t n = CO_STATS_NAME_MAX;
	/* Back off continuation bytes (10xxxxxx) so the cut lands on a character's first byte. */
	for (size_t back = 0; back < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; back++)
		n--;
	return n;
}

/* Writes lp(s) (cut) at p. Returns its length. */
static size_t lp_put(uint8_t *p, const char *s, size_t len)
{
	len = name_cut(s, len);
	tl_put_be16(p, (uint16_t)len);
	if (len)
		memcpy(p + 2, s, len);
	return 2 + len;
}

/* Writes the key of (service, operation) without the minute. Returns its length (<= KEY_MAX - 4). */
static size_t key_prefix(uint8_t *k, const char *svc, size_t svc_len, const char *op, size_t op_len)
{
	size_t n = lp_put(k, svc, svc_len);
	return n + lp_put(k + n, op, op_len);
}

static uint32_t minute_of(uint64_t ns)
{
	uint64_t m = ns / MIN_NS;
	return m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
}

/* A parsed key: service and operation (not terminated) and minute. Returns false when malformed. */
typedef struct pkey {
	const uint8_t *svc, *op;
	size_t svc_len, op_len, prefix_len;
	uint32_t minute;
} pkey;

static bool key_parse(const MDB_val *k, pkey *out)
{
	const uint8_t *p = k->mv_data;
	size_t len = k->mv_size;
	if (len < 2 + 2 + 4)
		return false;
	size_t ls = (size_t)p[0] << 8 | p[1];
	if (ls > CO_STATS_NAME_MAX || 2 + ls + 2 + 4 > len)
		return false;
	size_t lo = (size_t)p[2 + ls] << 8 | p[3 + ls];
	if (lo > CO_STATS_NAME_MAX || 2 + ls + 2 + lo + 4 != len)
		return false;
	out->svc = p + 2;
	out->svc_len = ls;
	out->op = p + 4 + ls;
	out->op_len = lo;
	out->prefix_len = 4 + ls + lo;
	out->minute = tl_get_be32(p + out->prefix_len);
	return true;
}

/* ---- a hash table of byte strings (keys borrowed), for grouping ---- */

typedef struct bytemap {
	const unsigned char *hkey;
	int32_t *slot; /* index + 1 into the caller's items; 0 = empty */
	uint64_t *hash;
	size_t cap; /* power of two */
} bytemap;

static uint64_t hash_bytes(const unsigned char *hkey, const uint8_t *p, size_t n)
{
	unsigned char h[crypto_shorthash_BYTES];
	crypto_shorthash(h, p, n, hkey);
	uint64_t v;
	memcpy(&v, h, sizeof(v));
	return v;
}

/* ---- writing ---- */

int co_stats_db_open(MDB_txn *txn, co_stats_db **out, tl_errmsg *err)
{
	*out = NULL;
	if (sodium_init() < 0)
		return tl_errf(err, TL_ESTORE, "libsodium failed to initialise");
	co_stats_db *db = calloc(1, sizeof(*db));
	if (db == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	int rc = mdb_dbi_open(txn, "stats", MDB_CREATE, &db->dbi);
	if (rc != 0) {
		free(db);
		return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: open db stats: %s", mdb_strerror(rc));
	}
	randombytes_buf(db->hkey, sizeof(db->hkey));
	*out = db;
	return 0;
}

void co_stats_db_free(co_stats_db *db)
{
	free(db);
}

/* A cell of the batch being grouped: its key (in scratch) and where its spans are in the sorted order. */
typedef struct gcell {
	const uint8_t *key;
	uint32_t key_len;
	uint32_t count, off;
} gcell;

/* LMDB's default key order: bytes, then length. */
static int cmp_gcell(const void *x, const void *y)
{
	const gcell *a = x, *b = y;
	size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
	int c = memcmp(a->key, b->key, n);
	return c != 0 ? c : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static void *scratch_array(tl_arena *a, size_t n, size_t sz)
{
	if (n != 0 && sz > SIZE_MAX / n)
		return NULL;
	return tl_arena_alloc(a, n * sz != 0 ? n * sz : 1);
}

/* One span reduced to what its cell needs, read once in arrival order. */
typedef struct sample {
	uint64_t d;
	uint32_t cell;
	uint16_t bucket;
	uint8_t error;
} sample;

int co_stats_put_batch(co_stats_db *db, MDB_txn *txn, tl_arena *scratch, const co_stats_span *spans, size_t n)
{
	if (n == 0)
		return 0;
	if (n > INT32_MAX / 4)
		return ENOMEM;
	size_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	sample *smp = scratch_array(scratch, n, sizeof(*smp));
	sample *sorted = scratch_array(scratch, n, sizeof(*sorted));
	gcell *cells = scratch_array(scratch, n, sizeof(*cells));
	int32_t *slot = scratch_array(scratch, cap, sizeof(*slot));
	uint64_t *hashes = scratch_array(scratch, n, sizeof(*hashes));
	if (smp == NULL || sorted == NULL || cells == NULL || slot == NULL || hashes == NULL)
		return ENOMEM;
	memset(slot, 0, cap * sizeof(*slot));
	size_t nc = 0;
	/* Consecutive spans often share a cell (a service's spans of one minute, one operation). */
	const char *last_svc = NULL, *last_op = NULL;
	uint32_t last_min = 0, last_cell = UINT32_MAX;
	for (size_t i = 0; i < n; i++) {
		const tl_pb_span *sp = spans[i].span;
		const char *svc = spans[i].service != NULL ? spans[i].service : UNKNOWN_SERVICE;
		const char *op = sp->name != NULL ? sp->name : "";
		uint32_t minute = minute_of(sp->start_time_unix_nano);
		uint64_t d = co_an_duration(sp);
		smp[i] = (sample){d, 0, (uint16_t)co_stats_bucket(d), co_an_is_error(sp)};
		if (last_cell == UINT32_MAX || svc != last_svc || op != last_op || minute != last_min) {
			uint8_t k[KEY_MAX];
			size_t kl = key_prefix(k, svc, strlen(svc), op, strlen(op));
			tl_put_be32(k + kl, minute);
			kl += 4;
			uint64_t h = hash_bytes(db->hkey, k, kl);
			size_t sl = (size_t)h & (cap - 1);
			while (slot[sl] != 0) {
				const gcell *c = &cells[slot[sl] - 1];
				if (hashes[slot[sl] - 1] == h && c->key_len == kl && memcmp(c->key, k, kl) == 0)
					break;
				sl = (sl + 1) & (cap - 1);
			}
			if (slot[sl] == 0) {
				uint8_t *kc = tl_arena_alloc(scratch, kl);
				if (kc == NULL)
					return ENOMEM;
				memcpy(kc, k, kl);
				cells[nc] = (gcell){kc, (uint32_t)kl, 0, 0};
				hashes[nc] = h;
				slot[sl] = (int32_t)++nc;
			}
			last_cell = (uint32_t)(slot[sl] - 1);
			last_svc = svc;
			last_op = op;
			last_min = minute;
		}
		smp[i].cell = last_cell;
		cells[last_cell].count++;
	}
	/* Counting sort of the samples by cell. */
	uint32_t off = 0;
	for (size_t c = 0; c < nc; c++) {
		cells[c].off = off;
		off += cells[c].count;
		cells[c].count = 0;
	}
	for (size_t i = 0; i < n; i++) {
		gcell *c = &cells[smp[i].cell];
		sorted[c->off + c->count++] = smp[i];
	}
	/* In key order, so the cursor stays on a leaf page for the neighbouring cells of an operation. */
	if (nc > 1)
		qsort(cells, nc, sizeof(*cells), cmp_gcell);
	uint8_t *buf = tl_arena_alloc(scratch, CELL_MAX);
	if (buf == NULL)
		return ENOMEM;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, db->dbi, &cur);
	if (rc != 0)
		return rc;
	cell acc = cell_init(db->acc);
	for (size_t c = 0; c < nc && rc == 0; c++) {
		cell_clear(&acc);
		MDB_val k = {cells[c].key_len, (void *)cells[c].key}, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
		bool found = rc == 0;
		if (found)
			cell_merge(&acc, v.mv_data, v.mv_size); /* an undecodable cell is replaced */
		else if (rc != MDB_NOTFOUND)
			break;
		const sample *x = &sorted[cells[c].off];
		for (uint32_t j = 0; j < cells[c].count; j++)
			cell_add(&acc, x[j].d, x[j].bucket, x[j].error);
		v.mv_size = cell_encode(&acc, buf);
		v.mv_data = buf;
		k = (MDB_val){cells[c].key_len, (void *)cells[c].key};
		rc = mdb_cursor_put(cur, &k, &v, found ? MDB_CURRENT : 0);
	}
	mdb_cursor_close(cur);
	cell_clear(&acc); /* db->acc is all zeroes between calls */
	return rc;
}

/* ---- reading: the rows ---- */

typedef struct row {
	const char *svc, *op; /* in the work arena, NUL-terminated */
	size_t svc_len, op_len;
	uint64_t count, errors, sum, min, max, p50, p95, p99;
} row;

typedef struct rows {
	row *v;
	size_t n, cap;
} rows;

static int rows_push(rows *r, const row *x)
{
	if (r->n == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 64;
		row *nv = realloc(r->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		r->v = nv;
		r->cap = nc;
	}
	r->v[r->n++] = *x;
	return 0;
}

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c != 0 ? c : (al > bl) - (al < bl);
}

static int cmp_row(const void *x, const void *y)
{
	const row *a = x, *b = y;
	int c = cmp_bytes(a->svc, a->svc_len, b->svc, b->svc_len);
	if (c != 0)
		return c;
	if (a->p99 != b->p99)
		return a->p99 > b->p99 ? -1 : 1;
	return cmp_bytes(a->op, a->op_len, b->op, b->op_len);
}

typedef struct window {
	uint64_t since, until;     /* as asked (defaults resolved) */
	uint64_t start, end;       /* rounded to minutes */
	uint32_t from_min, to_min; /* cells [from_min, to_min) */
	double rate_seconds;
} window;

/* Ends the current row: its totals and percentiles, when it has cells in the window. */
static int row_finish(rows *r, tl_arena *work, const pkey *pk, cell *acc)
{
	if (acc->count == 0)
		return 0;
	row x = {0};
	char *svc = tl_arena_strndup(work, (const char *)pk->svc, pk->svc_len);
	char *op = tl_arena_strndup(work, (const char *)pk->op, pk->op_len);
	if (svc == NULL || op == NULL)
		return -ENOMEM;
	x.svc = svc;
	x.svc_len = pk->svc_len;
	x.op = op;
	x.op_len = pk->op_len;
	x.count = acc->count;
	x.errors = acc->errors;
	x.sum = acc->sum;
	x.min = acc->min;
	x.max = acc->max;
	x.p50 = cell_percentile(acc, 50);
	x.p95 = cell_percentile(acc, 95);
	x.p99 = cell_percentile(acc, 99);
	return rows_push(r, &x);
}

/* Walks the cells of the window (of one service when svc is set). */
static int scan_rows(co_store *s, const char *svc, const window *w, tl_arena *work, rows *r, bool *truncated,
                     size_t *skipped)
{
	const co_stats_db *db = co_store_stats_db(s);
	uint64_t *h = calloc(CO_STATS_BUCKETS, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	cell acc = cell_init(h);
	MDB_txn *txn;
	int rc = co_store_read_begin(s, &txn);
	if (rc != 0) {
		free(h);
		return rc;
	}
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, db->dbi, &c)) != 0) {
		co_store_read_end(s, txn);
		free(h);
		return tl_err_from_lmdb(rc);
	}
	uint8_t sk[KEY_MAX], kb[KEY_MAX];
	size_t skl = 0;
	MDB_val k, v;
	if (svc != NULL) {
		skl = lp_put(sk, svc, strlen(svc));
		k = (MDB_val){skl, sk};
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	}
	pkey cur = {0};
	uint8_t cur_prefix[KEY_MAX];
	bool have = false;
	int ret = 0;
	size_t cells = 0;
	while (rc == 0) {
		pkey pk;
		if (!key_parse(&k, &pk)) {
			(*skipped)++;
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
			continue;
		}
		if (svc != NULL && (k.mv_size < skl || memcmp(k.mv_data, sk, skl) != 0 || pk.svc_len + 2 != skl))
			break;
		if (!have || pk.prefix_len != cur.prefix_len || memcmp(k.mv_data, cur_prefix, pk.prefix_len) != 0) {
			if (have) {
				if ((ret = row_finish(r, work, &cur, &acc)) != 0)
					break;
				cell_clear(&acc);
				if (r->n >= CO_STATS_MAX_ROWS) {
					*truncated = true;
					break;
				}
			}
			memcpy(cur_prefix, k.mv_data, pk.prefix_len);
			cur = pk;
			cur.svc = cur_prefix + 2;
			cur.op = cur_prefix + 4 + pk.svc_len;
			have = true;
		}
		if (pk.minute < w->from_min || pk.minute >= w->to_min) {
			/* Before the window: seek its first minute; after it: past the pair's last cell. */
			bool before = pk.minute < w->from_min;
			memcpy(kb, cur_prefix, pk.prefix_len);
			tl_put_be32(kb + pk.prefix_len, before ? w->from_min : UINT32_MAX);
			k = (MDB_val){pk.prefix_len + 4, kb};
			rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			if (!before && rc == 0 && k.mv_size == pk.prefix_len + 4 &&
			    memcmp(k.mv_data, kb, pk.prefix_len + 4) == 0)
				rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
			continue;
		}
		if (++cells > CO_STATS_MAX_CELLS) {
			*truncated = true;
			break;
		}
		if (!cell_merge(&acc, v.mv_data, v.mv_size))
			(*skipped)++;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = tl_err_from_lmdb(rc);
	if (ret == 0 && have && r->n < CO_STATS_MAX_ROWS)
		ret = row_finish(r, work, &cur, &acc); /* after a cut by cells: the row as far as it was read */
	mdb_cursor_close(c);
	co_store_read_end(s, txn);
	free(h);
	return ret;
}

/* ---- reading: the budget ---- */

typedef struct stage {
	const char *svc, *op; /* in the work arena */
	uint64_t self;        /* critical-path self time over the traces over budget */
	uint64_t traces;      /* traces whose critical path it is on */
	uint64_t top_in;      /* traces where it had the most self time */
	uint64_t cur;         /* this trace's sum (reset per trace) */
	bool touched;
} stage;

typedef struct slow {
	uint8_t id[16];
	uint64_t start, dur;
	const char *root_svc, *root_op; /* in the work arena */
	size_t top;                     /* stage index, or SIZE_MAX */
	uint64_t top_self;
} slow;

typedef struct budget {
	const unsigned char *hkey;
	tl_arena *work;
	stage *st;
	size_t nst, capst;
	int32_t *slot; /* index + 1 into st */
	uint64_t *hash;
	size_t cap;
	slow *sl;
	size_t nsl;
	size_t candidates, examined, skipped;
	bool partial;
} budget;

static int stage_grow(budget *b)
{
	size_t ncap = b->cap ? b->cap * 2 : 64;
	int32_t *ns = calloc(ncap, sizeof(*ns));
	stage *nst = realloc(b->st, ncap / 2 * sizeof(*nst));
	uint64_t *nh = realloc(b->hash, ncap / 2 * sizeof(*nh));
	if (nst != NULL)
		b->st = nst;
	if (nh != NULL)
		b->hash = nh;
	if (ns == NULL || nst == NULL || nh == NULL) {
		free(ns);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b->nst; i++) {
		size_t s = (size_t)b->hash[i] & (ncap - 1);
		while (ns[s] != 0)
			s = (s + 1) & (ncap - 1);
		ns[s] = (int32_t)(i + 1);
	}
	free(b->slot);
	b->slot = ns;
	b->cap = ncap;
	b->capst = ncap / 2;
	return 0;
}

/* The stage of (svc, op), added when new. Returns its index or a negative code. */
static long stage_of(budget *b, const char *svc, const char *op)
{
	uint8_t k[KEY_MAX];
	size_t ls = strlen(svc), lo = strlen(op);
	size_t kl = key_prefix(k, svc, ls, op, lo);
	uint64_t h = hash_bytes(b->hkey, k, kl);
	if (b->nst + 1 > b->capst) {
		int rc = stage_grow(b);
		if (rc != 0)
			return rc;
	}
	size_t s = (size_t)h & (b->cap - 1);
	size_t cs = name_cut(svc, ls), co = name_cut(op, lo);
	while (b->slot[s] != 0) {
		const stage *x = &b->st[b->slot[s] - 1];
		if (b->hash[b->slot[s] - 1] == h && strlen(x->svc) == cs && memcmp(x->svc, svc, cs) == 0 &&
		    strlen(x->op) == co && memcmp(x->op, op, co) == 0)
			return b->slot[s] - 1;
		s = (s + 1) & (b->cap - 1);
	}
	char *sv = tl_arena_strndup(b->work, svc, cs), *ov = tl_arena_strndup(b->work, op, co);
	if (sv == NULL || ov == NULL)
		return -ENOMEM;
	b->st[b->nst] = (stage){.svc = sv, .op = ov};
	b->hash[b->nst] = h;
	b->slot[s] = (int32_t)(b->nst + 1);
	return (long)b->nst++;
}

/* Attributes one trace (analysed) that broke the budget. */
static int budget_add(budget *b, const co_analysis *a, const co_trace_summary *sum, uint64_t dur)
{
	long top = -1;
	/* Per-stage sums of this trace, then the totals. */
	size_t *touched = calloc(a->n_critical ? a->n_critical : 1, sizeof(*touched));
	if (touched == NULL)
		return -ENOMEM;
	size_t nt = 0;
	for (size_t i = 0; i < a->n_critical; i++) {
		const co_an_span *sp = &a->spans[a->critical[i]];
		long st = stage_of(b, sp->service, sp->span->name != NULL ? sp->span->name : "");
		if (st < 0) {
			free(touched);
			return (int)st;
		}
		stage *x = &b->st[st];
		if (!x->touched) {
			x->touched = true;
			x->cur = 0;
			touched[nt++] = (size_t)st;
		}
		x->cur = sat_add(x->cur, sp->self_ns);
	}
	for (size_t i = 0; i < nt; i++) {
		stage *x = &b->st[touched[i]];
		x->self = sat_add(x->self, x->cur);
		x->traces++;
		x->touched = false;
		if (top < 0 || x->cur > b->st[top].cur)
			top = (long)touched[i];
	}
	slow *sl = &b->sl[b->nsl++];
	memcpy(sl->id, sum->trace_id, 16);
	sl->start = a->start_ns;
	sl->dur = dur;
	const co_an_span *root = &a->spans[a->main_root];
	sl->root_svc = tl_arena_strndup(b->work, root->service, strlen(root->service));
	const char *rn = root->span->name != NULL ? root->span->name : "";
	sl->root_op = tl_arena_strndup(b->work, rn, strlen(rn));
	if (sl->root_svc == NULL || sl->root_op == NULL) {
		free(touched);
		return -ENOMEM;
	}
	sl->top = top >= 0 ? (size_t)top : SIZE_MAX;
	sl->top_self = top >= 0 ? b->st[top].cur : 0;
	if (top >= 0)
		b->st[top].top_in++;
	free(touched);
	return 0;
}

static int run_budget(co_store *s, const co_stats_opts *o, const window *w, size_t max_traces, budget *b,
                      tl_errmsg *err)
{
	co_search_query q = {
	        .service = o->service,
	        .from_ns = w->since,
	        .to_ns = w->until,
	        .min_duration_ns = o->budget_ns,
	        .limit = max_traces + 1 < CO_SEARCH_LIMIT_MAX ? max_traces + 1 : CO_SEARCH_LIMIT_MAX,
	};
	co_search_result res = {0};
	int rc = co_search(s, &q, b->work, &res, err);
	if (rc != 0)
		return rc;
	b->candidates = res.n;
	b->partial = res.partial || res.n > max_traces;
	size_t n = res.n < max_traces ? res.n : max_traces;
	b->sl = tl_arena_alloc(b->work, (n ? n : 1) * sizeof(*b->sl));
	if (b->sl == NULL)
		return tl_errf(err, TL_ELIMIT, "stats: out of answer memory");
	tl_arena ta;
	tl_arena_init(&ta, (size_t)256 << 10, CO_STATS_TRACE_MEM);
	for (size_t i = 0; i < n; i++) {
		tl_arena_reset(&ta);
		tl_pb_trace_result *tr = NULL;
		rc = co_store_get_trace(s, res.traces[i].trace_id, &ta, &tr);
		if (rc == TL_ENOTFOUND || rc == TL_ELIMIT || rc == TL_ECORRUPT) {
			b->skipped++;
			rc = 0;
			continue;
		}
		if (rc != 0)
			break;
		co_analysis *a = NULL;
		if ((rc = co_analyze(tr, &a)) != 0) {
			if (rc == TL_ELIMIT) {
				b->skipped++;
				rc = 0;
				continue;
			}
			break;
		}
		b->examined++;
		uint64_t dur = a->main_root != CO_AN_NONE ? co_an_duration(a->spans[a->main_root].span) : 0;
		if (dur > o->budget_ns)
			rc = budget_add(b, a, &res.traces[i], dur);
		co_analysis_free(a);
		if (rc != 0)
			break;
	}
	tl_arena_fini(&ta);
	if (rc != 0)
		return tl_errf(err, rc, "stats: budget: %s", tl_strerror(rc));
	return 0;
}

static void budget_fini(budget *b)
{
	free(b->st);
	free(b->slot);
	free(b->hash);
}

static int cmp_stage(const void *x, const void *y)
{
	const stage *a = x, *b = y;
	if (a->self != b->self)
		return a->self > b->self ? -1 : 1;
	if (a->top_in != b->top_in)
		return a->top_in > b->top_in ? -1 : 1;
	int c = strcmp(a->svc, b->svc);
	return c != 0 ? c : strcmp(a->op, b->op);
}

static int cmp_slow(const void *x, const void *y)
{
	const slow *a = x, *b = y;
	if (a->dur != b->dur)
		return a->dur > b->dur ? -1 : 1;
	return memcmp(a->id, b->id, 16);
}

/* ---- the answer ---- */

/* A JSON string of s[0..n); bytes that are not valid UTF-8 become '?'. */
static json_t *jstrn(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (j != NULL)
		return j;
	char *c = malloc(n + 1);
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		c[i] = (unsigned char)s[i] >= 0x80 || s[i] == '\0' ? '?' : s[i];
	j = json_stringn(c, n);
	free(c);
	return j;
}

static json_t *jstr(const char *s)
{
	return jstrn(s, strlen(s));
}

static json_t *ju64(uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	return json_string(b);
}

/* Sets o[key] = v (taking v). Returns false when v is NULL or out of memory. */
static bool set(json_t *o, const char *key, json_t *v)
{
	return v != NULL && json_object_set_new(o, key, v) == 0;
}

static json_t *rows_json(const rows *r, double secs)
{
	json_t *arr = json_array();
	bool ok = arr != NULL;
	for (size_t i = 0; ok && i < r->n; i++) {
		const row *x = &r->v[i];
		json_t *o = json_object();
		ok = o != NULL && json_array_append_new(arr, o) == 0;
		ok = ok && set(o, "service", jstrn(x->svc, x->svc_len)) && set(o, "operation", jstrn(x->op, x->op_len));
		ok = ok && set(o, "count", json_integer((json_int_t)x->count)) &&
		     set(o, "errors", json_integer((json_int_t)x->errors)) &&
		     set(o, "error_rate", json_real((double)x->errors / (double)x->count)) &&
		     set(o, "rate_per_second", json_real(secs > 0 ? (double)x->count / secs : 0));
		ok = ok && set(o, "p50_nano", ju64(x->p50)) && set(o, "p95_nano", ju64(x->p95)) &&
		     set(o, "p99_nano", ju64(x->p99)) && set(o, "min_nano", ju64(x->min)) &&
		     set(o, "max_nano", ju64(x->max)) && set(o, "mean_nano", ju64(x->sum / x->count));
	}
	if (!ok) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

static json_t *budget_json(budget *b, uint64_t budget_ns)
{
	/* Sorting moves the stages: note each slow trace's top stage by name first. */
	const char **top_svc = calloc(b->nsl ? b->nsl : 1, sizeof(*top_svc));
	const char **top_op = calloc(b->nsl ? b->nsl : 1, sizeof(*top_op));
	json_t *o = json_object(), *stages = json_array(), *slowest = json_array();
	bool ok = top_svc != NULL && top_op != NULL && o != NULL && stages != NULL && slowest != NULL;
	for (size_t i = 0; ok && i < b->nsl; i++) {
		if (b->sl[i].top != SIZE_MAX) {
			top_svc[i] = b->st[b->sl[i].top].svc;
			top_op[i] = b->st[b->sl[i].top].op;
		}
	}
	uint64_t total = 0;
	for (size_t i = 0; ok && i < b->nst; i++)
		total = sat_add(total, b->st[i].self);
	if (ok && b->nst > 1)
		qsort(b->st, b->nst, sizeof(*b->st), cmp_stage);
	if (ok) {
		for (size_t i = 0; i < b->nsl; i++)
			b->sl[i].top = top_svc[i] != NULL ? i : SIZE_MAX; /* now an index into top_svc/top_op */
		if (b->nsl > 1)
			qsort(b->sl, b->nsl, sizeof(*b->sl), cmp_slow);
	}
	for (size_t i = 0; ok && i < b->nst; i++) {
		const stage *x = &b->st[i];
		json_t *e = json_object();
		ok = e != NULL && json_array_append_new(stages, e) == 0;
		ok = ok && set(e, "service", jstr(x->svc)) && set(e, "operation", jstr(x->op)) &&
		     set(e, "self_nano", ju64(x->self)) &&
		     set(e, "share", json_real(total > 0 ? (double)x->self / (double)total : 0)) &&
		     set(e, "traces", json_integer((json_int_t)x->traces)) &&
		     set(e, "top_in", json_integer((json_int_t)x->top_in));
	}
	for (size_t i = 0; ok && i < b->nsl && i < CO_STATS_SLOWEST; i++) {
		const slow *x = &b->sl[i];
		char hex[33];
		tl_hex_encode(x->id, 16, hex);
		json_t *e = json_object();
		ok = e != NULL && json_array_append_new(slowest, e) == 0;
		ok = ok && set(e, "trace_id", json_string(hex)) && set(e, "start_unix_nano", ju64(x->start)) &&
		     set(e, "duration_nano", ju64(x->dur)) && set(e, "over_nano", ju64(x->dur - budget_ns)) &&
		     set(e, "root_service", jstr(x->root_svc)) && set(e, "root_name", jstr(x->root_op));
		if (ok && x->top != SIZE_MAX) {
			json_t *t = json_object();
			ok = set(e, "top_stage", t) && set(t, "service", jstr(top_svc[x->top])) &&
			     set(t, "operation", jstr(top_op[x->top])) && set(t, "self_nano", ju64(x->top_self));
		} else if (ok) {
			ok = set(e, "top_stage", json_null());
		}
	}
	ok = ok && set(o, "budget_nano", ju64(budget_ns)) &&
	     set(o, "candidates", json_integer((json_int_t)b->candidates)) &&
	     set(o, "examined", json_integer((json_int_t)b->examined)) &&
	     set(o, "over_budget", json_integer((json_int_t)b->nsl)) &&
	     set(o, "skipped", json_integer((json_int_t)b->skipped)) && set(o, "partial", json_boolean(b->partial));
	if (ok) {
		ok = json_object_set_new(o, "stages", stages) == 0;
		stages = NULL;
	}
	if (ok) {
		ok = json_object_set_new(o, "slowest", slowest) == 0;
		slowest = NULL;
	}
	json_decref(stages);
	json_decref(slowest);
	free(top_svc);
	free(top_op);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Serializes doc into arena. Takes the reference. */
static int finish(json_t *doc, tl_arena *arena, char **out, tl_errmsg *err)
{
	char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
	json_decref(doc);
	if (s == NULL)
		return tl_errf(err, -ENOMEM, "stats: out of memory building the answer");
	size_t n = strlen(s);
	*out = tl_arena_strndup(arena, s, n);
	free(s);
	if (*out == NULL)
		return tl_errf(err, TL_ELIMIT, "stats: the answer (%zu bytes) does not fit the answer memory", n);
	return 0;
}

static int resolve_window(const co_stats_opts *o, window *w, tl_errmsg *err)
{
	uint64_t now = o->now_ns != 0 ? o->now_ns : tl_now_ns();
	w->until = o->until_ns != 0 ? o->until_ns : now;
	w->since = o->since_ns != 0
	                   ? o->since_ns
	                   : (w->until > CO_STATS_DEFAULT_WINDOW_NS ? w->until - CO_STATS_DEFAULT_WINDOW_NS : 0);
	if (w->since >= w->until)
		return tl_errf(err, TL_EINVALID, "stats: since (%" PRIu64 ") is not before until (%" PRIu64 ")",
		               w->since, w->until);
	w->from_min = minute_of(w->since);
	uint64_t to = w->until / MIN_NS + (w->until % MIN_NS != 0);
	w->to_min = to > UINT32_MAX ? UINT32_MAX : (uint32_t)to;
	w->start = (uint64_t)w->from_min * MIN_NS;
	w->end = (uint64_t)w->to_min * MIN_NS;
	uint64_t rate_end = w->end;
	if (now < rate_end && now > w->start)
		rate_end = now;
	w->rate_seconds = (double)(rate_end - w->start) / 1e9;
	return 0;
}

int co_stats_query(co_store *s, const co_stats_opts *o, tl_arena *arena, char **json, tl_errmsg *err)
{
	*json = NULL;
	window w = {0};
	int rc = resolve_window(o, &w, err);
	if (rc != 0)
		return rc;
	const char *svc = o->service != NULL && o->service[0] != '\0' ? o->service : NULL;
	tl_arena work;
	tl_arena_init(&work, (size_t)64 << 10, 0);
	rows r = {0};
	bool truncated = false;
	size_t skipped = 0;
	budget b = {.hkey = co_store_stats_db(s)->hkey, .work = &work};
	json_t *doc = NULL;
	rc = scan_rows(s, svc, &w, &work, &r, &truncated, &skipped);
	if (rc != 0) {
		tl_errf(err, rc, "stats: %s", tl_strerror(rc));
		goto done;
	}
	if (r.n > 1)
		qsort(r.v, r.n, sizeof(*r.v), cmp_row);
	if (o->budget_ns != 0) {
		co_stats_opts bo = *o;
		bo.service = svc;
		size_t maxt = o->max_traces != 0 ? o->max_traces : CO_STATS_BUDGET_TRACES;
		if (maxt >= CO_SEARCH_LIMIT_MAX)
			maxt = CO_SEARCH_LIMIT_MAX - 1; /* one more is asked for, to know when there were more */
		if ((rc = run_budget(s, &bo, &w, maxt, &b, err)) != 0)
			goto done;
	}
	doc = json_object();
	json_t *ops = rows_json(&r, w.rate_seconds);
	json_t *bj = o->budget_ns != 0 ? budget_json(&b, o->budget_ns) : json_null();
	bool ok = doc != NULL && ops != NULL && bj != NULL;
	ok = ok && set(doc, "service", svc != NULL ? jstr(svc) : json_null()) &&
	     set(doc, "since_unix_nano", ju64(w.since)) && set(doc, "until_unix_nano", ju64(w.until)) &&
	     set(doc, "window_start_unix_nano", ju64(w.start)) && set(doc, "window_end_unix_nano", ju64(w.end)) &&
	     set(doc, "rate_seconds", json_real(w.rate_seconds)) && set(doc, "operations", ops);
	ops = NULL;
	ok = ok && set(doc, "truncated", json_boolean(truncated)) &&
	     set(doc, "skipped_cells", json_integer((json_int_t)skipped)) && set(doc, "budget", bj);
	bj = NULL;
	json_decref(ops);
	json_decref(bj);
	if (!ok) {
		json_decref(doc);
		rc = tl_errf(err, -ENOMEM, "stats: out of memory building the answer");
		goto done;
	}
	rc = finish(doc, arena, json, err);
done:
	budget_fini(&b);
	free(r.v);
	tl_arena_fini(&work);
	return rc;
}

int co_stats_answer(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err)
{
	if (req->query_case != THREADLINE__V1__QUERY_REQUEST__QUERY_STATS || req->stats == NULL)
		return tl_errf(err, TL_EUNSUPPORTED, "query: not a stats query");
	const tl_pb_stats *q = req->stats;
	co_stats_opts o = {
	        .service = q->service,
	        .since_ns = q->since_unix_nano,
	        .until_ns = q->until_unix_nano,
	        .budget_ns = q->budget_nano,
	};
	return co_stats_query(s, &o, arena, json, err);
}

int co_stats_count(co_store *s, size_t *cells)
{
	*cells = 0;
	MDB_txn *txn;
	int rc = co_store_read_begin(s, &txn);
	if (rc != 0)
		return rc;
	MDB_stat st;
	rc = mdb_stat(txn, co_store_stats_db(s)->dbi, &st);
	if (rc == 0)
		*cells = st.ms_entries;
	co_store_read_end(s, txn);
	return tl_err_from_lmdb(rc);
}
