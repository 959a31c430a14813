/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lineage graph in the collector's LMDB store (layout in co_lineage.h).
 * Nodes are interned to 8-byte numbers so an edge is 17 fixed bytes in a
 * DUPFIXED database and a node's edges are read a page at a time; a walk
 * reads only edges and the small node records, never facets. Writes happen
 * inside the store's commit transaction and are idempotent: edges keep the
 * earliest time that showed them, states and facets are keyed so that the
 * same event applied twice writes nothing new.
 */
#include "co_lineage.h"
#include "tl_be.h"
#include "tl_otlp.h"

#include "co_store.h"
#include "store.pb-c.h"
#include "tl_id.h"
#include "tl_ol.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef Threadline__Store__V1__LineageNode st_node;
typedef Threadline__Store__V1__LineageVersion st_ver;
typedef Threadline__Store__V1__LineagePrediction st_pred;

/* Node number types (top byte). A dataset or job version is its own type so a walk knows which edges to follow. */
enum { NT_DATASET = 1, NT_JOB, NT_RUN, NT_MODEL, NT_DEPLOYMENT, NT_PRED, NT_DSVERSION, NT_JOBVERSION };
/* Edge types; E_VER marks the edges of a dataset or job version node. */
enum { E_INPUT = 1, E_OUTPUT, E_RUN, E_PARENT, E_SERVED, E_DEPLOYED };
#define E_VER 0x80
#define E_TYPE(b) ((b)&0x7f)

#define EDGE_LEN 25
#define STATE_LEN 9
#define KEY_DIRECT_MAX 480
#define KEY_HASHED_PREFIX 448
#define KEY_MAX (KEY_HASHED_PREFIX + 1 + 16)
#define NT(nid) ((unsigned)((nid) >> 56))
#define ID_CAP (CO_LINEAGE_ID_MAX + 1)
#define SCRATCH_BLOCK ((size_t)64 << 10)
#define EDGES_PER_NODE 8 /* edge cap of an answer: this many per node cap */

static const char *last_char(const char *s, size_t n, char c)
{
	for (size_t i = n; i > 0; i--)
		if (s[i - 1] == c)
			return s + i - 1;
	return NULL;
}

static bool nonempty(const char *s)
{
	return s != NULL && *s != '\0';
}

/* ---- node ids ---- */

static const char *const type_names[] = {"", "dataset", "job", "run", "model", "deployment", "prediction"};

const char *co_lineage_type_name(co_lineage_type t)
{
	return (unsigned)t < sizeof(type_names) / sizeof(type_names[0]) ? type_names[t] : "";
}

int co_lineage_id_parse(const char *id, size_t len, co_lineage_id *out, tl_errmsg *err)
{
	memset(out, 0, sizeof(*out));
	if (len > CO_LINEAGE_ID_MAX)
		return tl_errf(err, TL_ELIMIT, "node id is %zu bytes, more than %d", len, CO_LINEAGE_ID_MAX);
	const char *colon = memchr(id, ':', len);
	size_t tlen = colon != NULL ? (size_t)(colon - id) : len;
	unsigned type = 0;
	for (unsigned t = CO_LIN_DATASET; t <= CO_LIN_PREDICTION; t++)
		if (strlen(type_names[t]) == tlen && memcmp(id, type_names[t], tlen) == 0)
			type = t;
	if (colon == NULL || type == 0)
		return tl_errf(err, TL_EINVALID,
		               "node id \"%.*s\": want dataset:NS:NAME, job:NS:NAME, run:UUID, model:NAME:VERSION, "
		               "deployment:NAME or prediction:ID",
		               (int)(len > 64 ? 64 : len), id);
	const char *rest = colon + 1;
	size_t rl = len - tlen - 1;
	out->type = (co_lineage_type)type;
	const char *c;
	switch (type) {
	case CO_LIN_DATASET:
	case CO_LIN_JOB:
		c = last_char(rest, rl, ':');
		if (c == NULL || c == rest || c == rest + rl - 1)
			return tl_errf(err, TL_EINVALID, "node id \"%.*s\": want %s:NAMESPACE:NAME",
			               (int)(len > 64 ? 64 : len), id, type_names[type]);
		out->ns = rest;
		out->ns_len = (size_t)(c - rest);
		out->name = c + 1;
		out->name_len = rl - out->ns_len - 1;
		const char *h = last_char(out->name, out->name_len, '#');
		if (h != NULL) {
			size_t nl = (size_t)(h - out->name);
			if (nl == 0 || nl + 1 == out->name_len)
				return tl_errf(err, TL_EINVALID, "node id \"%.*s\": want %s:NAMESPACE:NAME#VERSION",
				               (int)(len > 64 ? 64 : len), id, type_names[type]);
			out->version = h + 1;
			out->version_len = out->name_len - nl - 1;
			out->name_len = nl;
		}
		return 0;
	case CO_LIN_RUN: {
		char u[37];
		if (rl != 36)
			return tl_errf(err, TL_EINVALID, "node id \"%.*s\": want run:UUID", (int)(len > 64 ? 64 : len),
			               id);
		memcpy(u, rest, 36);
		u[36] = '\0';
		if (tl_ol_uuid_parse(u, out->run_id) != 0)
			return tl_errf(err, TL_EINVALID, "node id \"%.*s\": not a UUID", (int)(len > 64 ? 64 : len),
			               id);
		return 0;
	}
	case CO_LIN_MODEL:
		c = last_char(rest, rl, ':');
		if (c == NULL || c == rest || c == rest + rl - 1)
			return tl_errf(err, TL_EINVALID, "node id \"%.*s\": want model:NAME:VERSION",
			               (int)(len > 64 ? 64 : len), id);
		out->name = rest;
		out->name_len = (size_t)(c - rest);
		out->version = c + 1;
		out->version_len = rl - out->name_len - 1;
		return 0;
	default:
		if (rl == 0)
			return tl_errf(err, TL_EINVALID, "node id \"%.*s\": want %s:%s", (int)(len > 64 ? 64 : len), id,
			               type_names[type], type == CO_LIN_DEPLOYMENT ? "NAME" : "ID");
		out->name = rest;
		out->name_len = rl;
		return 0;
	}
}

typedef struct piece {
	const char *p;
	size_t n;
} piece;

static int join(char *buf, size_t cap, const piece *ps, size_t np)
{
	size_t total = 0;
	for (size_t i = 0; i < np; i++)
		total += ps[i].n;
	if (total > CO_LINEAGE_ID_MAX || total + 1 > cap) {
		if (cap > 0)
			buf[0] = '\0';
		return TL_ELIMIT;
	}
	size_t off = 0;
	for (size_t i = 0; i < np; i++) {
		memcpy(buf + off, ps[i].p, ps[i].n);
		off += ps[i].n;
	}
	buf[off] = '\0';
	return (int)off;
}

#define P(s) ((piece){(s), sizeof(s) - 1})

int co_lineage_id_format(const co_lineage_id *id, char *buf, size_t cap)
{
	if (cap > 0)
		buf[0] = '\0';
	switch (id->type) {
	case CO_LIN_DATASET:
	case CO_LIN_JOB:
		if (id->ns_len == 0 || id->name_len == 0 || id->ns == NULL || id->name == NULL)
			return TL_EINVALID;
		if (id->version != NULL && id->version_len > 0)
			return join(buf, cap,
			            (piece[]){{type_names[id->type], strlen(type_names[id->type])},
			                      P(":"),
			                      {id->ns, id->ns_len},
			                      P(":"),
			                      {id->name, id->name_len},
			                      P("#"),
			                      {id->version, id->version_len}},
			            7);
		return join(buf, cap,
		            (piece[]){{type_names[id->type], strlen(type_names[id->type])},
		                      P(":"),
		                      {id->ns, id->ns_len},
		                      P(":"),
		                      {id->name, id->name_len}},
		            5);
	case CO_LIN_RUN: {
		char u[37];
		tl_ol_uuid_format(id->run_id, u);
		return join(buf, cap, (piece[]){P("run:"), {u, 36}}, 2);
	}
	case CO_LIN_MODEL:
		if (id->name_len == 0 || id->version_len == 0 || id->name == NULL || id->version == NULL)
			return TL_EINVALID;
		return join(buf, cap,
		            (piece[]){P("model:"), {id->name, id->name_len}, P(":"), {id->version, id->version_len}},
		            4);
	case CO_LIN_DEPLOYMENT:
	case CO_LIN_PREDICTION:
		if (id->name_len == 0 || id->name == NULL)
			return TL_EINVALID;
		return join(buf, cap,
		            (piece[]){{type_names[id->type], strlen(type_names[id->type])},
		                      P(":"),
		                      {id->name, id->name_len}},
		            3);
	default:
		return TL_EINVALID;
	}
}

static size_t slen(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

/* A dataset or job id: "TYPE:NS:NAME", "#VERSION" appended when version is not NULL or empty. */
static int ns_name_id(co_lineage_type type, char *buf, size_t cap, const char *ns, const char *name,
                      const char *version)
{
	co_lineage_id id = {.type = type,
	                    .ns = ns,
	                    .ns_len = slen(ns),
	                    .name = name,
	                    .name_len = slen(name),
	                    .version = version,
	                    .version_len = slen(version)};
	return co_lineage_id_format(&id, buf, cap);
}

int co_lineage_id_dataset(char *buf, size_t cap, const char *ns, const char *name, const char *version)
{
	return ns_name_id(CO_LIN_DATASET, buf, cap, ns, name, version);
}

int co_lineage_id_job(char *buf, size_t cap, const char *ns, const char *name, const char *version)
{
	return ns_name_id(CO_LIN_JOB, buf, cap, ns, name, version);
}

int co_lineage_id_run(char *buf, size_t cap, const uint8_t run_id[16])
{
	co_lineage_id id = {.type = CO_LIN_RUN};
	memcpy(id.run_id, run_id, 16);
	return co_lineage_id_format(&id, buf, cap);
}

int co_lineage_id_model(char *buf, size_t cap, const char *name, const char *version)
{
	co_lineage_id id = {.type = CO_LIN_MODEL,
	                    .name = name,
	                    .name_len = slen(name),
	                    .version = version,
	                    .version_len = slen(version)};
	return co_lineage_id_format(&id, buf, cap);
}

int co_lineage_id_deployment(char *buf, size_t cap, const char *name)
{
	co_lineage_id id = {.type = CO_LIN_DEPLOYMENT, .name = name, .name_len = slen(name)};
	return co_lineage_id_format(&id, buf, cap);
}

int co_lineage_id_prediction(char *buf, size_t cap, const char *pid)
{
	co_lineage_id id = {.type = CO_LIN_PREDICTION, .name = pid, .name_len = slen(pid)};
	return co_lineage_id_format(&id, buf, cap);
}

/* ---- databases ---- */

int co_lineage_db_open(co_lineage_db *db, MDB_txn *txn, tl_errmsg *err)
{
	struct {
		const char *name;
		MDB_dbi *dbi;
		unsigned flags;
	} dbs[] = {
	        {"lin_ids", &db->ids, 0},
	        {"lin_nodes", &db->nodes, 0},
	        {"lin_down", &db->down, MDB_DUPSORT | MDB_DUPFIXED},
	        {"lin_up", &db->up, MDB_DUPSORT | MDB_DUPFIXED},
	        {"lin_states", &db->states, MDB_DUPSORT | MDB_DUPFIXED},
	        {"lin_facets", &db->facets, 0},
	        {"lin_preds", &db->preds, 0},
	        {"lin_model_preds", &db->model_preds, MDB_DUPSORT},
	};
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		int rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE | dbs[i].flags, dbs[i].dbi);
		if (rc != 0)
			return tl_errf(err, tl_err_from_lmdb(rc), "lmdb: open db %s: %s", dbs[i].name,
			               mdb_strerror(rc));
	}
	tl_arena_init(&db->scratch, SCRATCH_BLOCK, 0);
	return 0;
}

void co_lineage_db_fini(co_lineage_db *db)
{
	if (db != NULL)
		tl_arena_fini(&db->scratch);
}

/* The key of an id in lin_ids / lin_preds: the id itself, or for a long one a prefix and a hash of the whole. */
typedef struct idkey {
	size_t len;
	uint8_t b[KEY_MAX];
} idkey;

static void key_of(const char *id, size_t len, idkey *k)
{
	if (len <= KEY_DIRECT_MAX) {
		memcpy(k->b, id, len);
		k->len = len;
		return;
	}
	memcpy(k->b, id, KEY_HASHED_PREFIX);
	k->b[KEY_HASHED_PREFIX] = 0;
	crypto_generichash(k->b + KEY_HASHED_PREFIX + 1, 16, (const unsigned char *)id, len, NULL, 0);
	k->len = KEY_MAX;
}

/* ---- writing ---- */

typedef struct wctx {
	co_lineage_db *db;
	MDB_txn *txn;
	tl_arena *a;
	MDB_cursor *down, *up, *states, *nodes;
} wctx;

static void wctx_begin(wctx *w, co_lineage_db *db, MDB_txn *txn)
{
	memset(w, 0, sizeof(*w));
	w->db = db;
	w->txn = txn;
	w->a = &db->scratch;
	tl_arena_reset(w->a);
}

static void wctx_end(wctx *w)
{
	MDB_cursor *cs[] = {w->down, w->up, w->states, w->nodes};
	for (size_t i = 0; i < 4; i++)
		if (cs[i] != NULL)
			mdb_cursor_close(cs[i]);
	tl_arena_reset(w->a);
}

static int cursor(wctx *w, MDB_dbi dbi, MDB_cursor **c)
{
	return *c != NULL ? 0 : mdb_cursor_open(w->txn, dbi, c);
}

static char *wdup(wctx *w, const char *s, size_t n)
{
	return tl_arena_strndup(w->a, s, n);
}

/* Writes a message into a reserved value: encoded once, copied never. */
static int put_packed(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, const ProtobufCMessage *m)
{
	MDB_val v;
	v.mv_size = protobuf_c_message_get_packed_size(m);
	int rc = mdb_put(txn, dbi, k, &v, MDB_RESERVE);
	if (rc != 0)
		return rc;
	protobuf_c_message_pack(m, v.mv_data);
	return 0;
}

static int next_nid(wctx *w, unsigned type, uint64_t *out)
{
	int rc = cursor(w, w->db->nodes, &w->nodes);
	if (rc != 0)
		return rc;
	uint8_t kb[8];
	tl_put_be64(kb, (uint64_t)(type + 1) << 56);
	MDB_val k = {8, kb}, v;
	rc = mdb_cursor_get(w->nodes, &k, &v, MDB_SET_RANGE);
	if (rc == 0)
		rc = mdb_cursor_get(w->nodes, &k, &v, MDB_PREV);
	else if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(w->nodes, &k, &v, MDB_LAST);
	*out = ((uint64_t)type << 56) | 1;
	if (rc == 0 && k.mv_size == 8 && NT(tl_get_be64(k.mv_data)) == type)
		*out = tl_get_be64(k.mv_data) + 1;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Finds the node of id (NUL-terminated, idlen bytes), creating it with the
 * fields of rec (may be NULL) when missing; its first_seen is lowered to t.
 */
static int node_ensure(wctx *w, unsigned type, const char *id, size_t idlen, uint64_t t, const st_node *rec,
                       uint64_t *nid, bool *created)
{
	idkey ik;
	key_of(id, idlen, &ik);
	MDB_val k = {ik.len, ik.b}, v;
	uint8_t vb[16];
	if (created != NULL)
		*created = false;
	int rc = mdb_get(w->txn, w->db->ids, &k, &v);
	if (rc == 0) {
		if (v.mv_size != 16)
			return MDB_CORRUPTED;
		*nid = tl_get_be64(v.mv_data);
		if (t >= tl_get_be64((const uint8_t *)v.mv_data + 8))
			return 0;
		tl_put_be64(vb, *nid);
		tl_put_be64(vb + 8, t);
		MDB_val nv = {16, vb};
		return mdb_put(w->txn, w->db->ids, &k, &nv, 0);
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	if ((rc = next_nid(w, type, nid)) != 0)
		return rc;
	tl_put_be64(vb, *nid);
	tl_put_be64(vb + 8, t);
	MDB_val nv = {16, vb};
	if ((rc = mdb_put(w->txn, w->db->ids, &k, &nv, 0)) != 0)
		return rc;
	st_node r = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
	if (rec != NULL)
		r = *rec;
	r.id = (char *)id;
	uint8_t kb[8];
	tl_put_be64(kb, *nid);
	MDB_val nk = {8, kb};
	if ((rc = put_packed(w->txn, w->db->nodes, &nk, &r.base)) != 0)
		return rc;
	if (created != NULL)
		*created = true;
	return 0;
}

/* Loads a node record into the scratch arena; a missing or undecodable one comes back fresh, named id. */
static int node_load(wctx *w, uint64_t nid, const char *id, st_node **out)
{
	uint8_t kb[8];
	tl_put_be64(kb, nid);
	MDB_val k = {8, kb}, v;
	*out = NULL;
	int rc = mdb_get(w->txn, w->db->nodes, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (rc == 0)
		*out = threadline__store__v1__lineage_node__unpack(tl_arena_allocator(w->a), v.mv_size, v.mv_data);
	if (*out == NULL) {
		if ((*out = tl_arena_alloc(w->a, sizeof(st_node))) == NULL)
			return ENOMEM;
		threadline__store__v1__lineage_node__init(*out);
		(*out)->id = (char *)id;
	}
	return 0;
}

static int node_store(wctx *w, uint64_t nid, const st_node *r)
{
	uint8_t kb[8];
	tl_put_be64(kb, nid);
	MDB_val k = {8, kb};
	return put_packed(w->txn, w->db->nodes, &k, &r->base);
}

/*
 * One side of an edge in a DUPFIXED database: type u8 || other node u64 ||
 * time u64 || group u64, inserted once with the earliest time. The group is
 * the job of the run at either end (0: none), so a walk can keep the latest
 * run per job without reading the runs.
 */
static int half_edge(MDB_cursor *c, uint64_t key, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	uint8_t kb[8], vb[EDGE_LEN];
	tl_put_be64(kb, key);
	vb[0] = type;
	tl_put_be64(vb + 1, other);
	memset(vb + 9, 0, EDGE_LEN - 9);
	MDB_val k = {8, kb}, v = {EDGE_LEN, vb};
	int rc = mdb_cursor_get(c, &k, &v, MDB_GET_BOTH_RANGE);
	if (rc == 0 && v.mv_size == EDGE_LEN && memcmp(v.mv_data, vb, 9) == 0) {
		uint64_t old_group = tl_get_be64((const uint8_t *)v.mv_data + 17);
		if (tl_get_be64((const uint8_t *)v.mv_data + 9) <= t && (old_group != 0 || group == 0))
			return 0;
		if (tl_get_be64((const uint8_t *)v.mv_data + 9) < t)
			t = tl_get_be64((const uint8_t *)v.mv_data + 9);
		if (group == 0)
			group = old_group;
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			return rc;
	} else if (rc != 0 && rc != MDB_NOTFOUND) {
		return rc;
	}
	tl_put_be64(vb + 9, t);
	tl_put_be64(vb + 17, group);
	k = (MDB_val){8, kb};
	v = (MDB_val){EDGE_LEN, vb};
	rc = mdb_cursor_put(c, &k, &v, MDB_NODUPDATA);
	return rc == MDB_KEYEXIST ? 0 : rc;
}

static int edge_put(wctx *w, uint64_t from, uint64_t to, uint8_t type, uint64_t t, uint64_t group)
{
	if (from == to)
		return 0;
	int rc = cursor(w, w->db->down, &w->down);
	if (rc == 0)
		rc = cursor(w, w->db->up, &w->up);
	if (rc == 0)
		rc = half_edge(w->down, from, type, to, t, group);
	if (rc == 0)
		rc = half_edge(w->up, to, type, from, t, group);
	return rc;
}

static int state_put(wctx *w, uint64_t run, uint64_t t, tl_ol_type st)
{
	if (st < TL_OL_START || st > TL_OL_FAIL)
		return 0;
	int rc = cursor(w, w->db->states, &w->states);
	if (rc != 0)
		return rc;
	uint8_t kb[8], vb[STATE_LEN];
	tl_put_be64(kb, run);
	tl_put_be64(vb, t);
	vb[8] = (uint8_t)st;
	MDB_val k = {8, kb}, v = {STATE_LEN, vb};
	rc = mdb_cursor_put(w->states, &k, &v, MDB_NODUPDATA);
	return rc == MDB_KEYEXIST ? 0 : rc;
}

/* Keeps the latest (by event time) value of one facet of a node. */
static int facet_put(wctx *w, uint64_t nid, const char *name, json_t *val, uint64_t t)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > CO_LINEAGE_FACET_NAME_MAX)
		return 0;
	uint8_t kb[8 + CO_LINEAGE_FACET_NAME_MAX];
	tl_put_be64(kb, nid);
	memcpy(kb + 8, name, nl);
	MDB_val k = {8 + nl, kb}, v;
	int rc = mdb_get(w->txn, w->db->facets, &k, &v);
	if (rc == 0 && v.mv_size >= 8 && tl_get_be64(v.mv_data) > t)
		return 0;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	char *js = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
	if (js == NULL)
		return ENOMEM;
	size_t jl = strlen(js);
	if (rc == 0 && v.mv_size == 8 + jl && memcmp((const uint8_t *)v.mv_data + 8, js, jl) == 0) {
		free(js);
		return 0;
	}
	MDB_val nv = {8 + jl, NULL};
	rc = mdb_put(w->txn, w->db->facets, &k, &nv, MDB_RESERVE);
	if (rc == 0) {
		tl_put_be64(nv.mv_data, t);
		memcpy((uint8_t *)nv.mv_data + 8, js, jl);
	}
	free(js);
	return rc;
}

static int facets_put(wctx *w, uint64_t nid, json_t *obj, uint64_t t)
{
	if (!json_is_object(obj))
		return 0;
	const char *key;
	json_t *val;
	json_object_foreach(obj, key, val)
	{
		int rc = facet_put(w, nid, key, val, t);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Records the version (or digest) of a dataset a run read or wrote. Returns 0 or ENOMEM. */
static int add_version(wctx *w, st_ver ***list, size_t *n, uint64_t nid, const char *version)
{
	if (!nonempty(version))
		return 0;
	for (size_t i = 0; i < *n; i++) {
		if ((*list)[i]->node == nid) {
			(*list)[i]->version = (char *)version;
			return 0;
		}
	}
	st_ver **nl = tl_arena_alloc(w->a, (*n + 1) * sizeof(*nl));
	st_ver *e = tl_arena_alloc(w->a, sizeof(*e));
	if (nl == NULL || e == NULL)
		return ENOMEM;
	threadline__store__v1__lineage_version__init(e);
	e->node = nid;
	e->version = (char *)version;
	if (*n > 0)
		memcpy(nl, *list, *n * sizeof(*nl));
	nl[(*n)++] = e;
	*list = nl;
	return 0;
}

/* A dataset or model a run touched: its node, its version node, and the version it had. */
typedef struct dsref {
	uint64_t nid, vnid;
	const char *version;
} dsref;

static int ensure_model(wctx *w, const char *name, const char *version, const char *digest, const char *dataset_id,
                        uint64_t t, dsref *out)
{
	char id[ID_CAP];
	int n = co_lineage_id_model(id, ID_CAP, name, version);
	if (n < 0)
		return 0;
	st_node rec = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
	rec.name = (char *)name;
	rec.version = (char *)version;
	rec.digest = (char *)(digest != NULL ? digest : "");
	rec.dataset = (char *)(dataset_id != NULL ? dataset_id : "");
	bool created;
	int rc = node_ensure(w, NT_MODEL, id, (size_t)n, t, &rec, &out->nid, &created);
	if (rc != 0)
		return rc;
	if (!created && (nonempty(digest) || nonempty(dataset_id))) {
		st_node *old;
		if ((rc = node_load(w, out->nid, id, &old)) != 0)
			return rc;
		bool dirty = false;
		if (nonempty(digest) && strcmp(old->digest, digest) != 0) {
			old->digest = (char *)digest;
			dirty = true;
		}
		if (nonempty(dataset_id) && !nonempty(old->dataset)) {
			old->dataset = (char *)dataset_id;
			dirty = true;
		}
		if (dirty && (rc = node_store(w, out->nid, old)) != 0)
			return rc;
	}
	out->version = nonempty(digest) ? digest : version;
	return 0;
}

static int ensure_dataset(wctx *w, const char *ns, const char *name, const char *version, uint64_t t, dsref *out)
{
	char id[ID_CAP];
	int n = co_lineage_id_dataset(id, ID_CAP, ns, name, NULL);
	if (n < 0)
		return 0;
	st_node rec = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
	rec.namespace_ = (char *)ns;
	rec.name = (char *)name;
	int rc = node_ensure(w, NT_DATASET, id, (size_t)n, t, &rec, &out->nid, NULL);
	if (rc != 0 || !nonempty(version))
		return rc;
	char vid[ID_CAP];
	if ((n = co_lineage_id_dataset(vid, ID_CAP, ns, name, version)) < 0)
		return 0;
	rec.version = (char *)version;
	out->version = version;
	return node_ensure(w, NT_DSVERSION, vid, (size_t)n, t, &rec, &out->vnid, NULL);
}

/* A dataset of an OpenLineage event: a model version, or a dataset (and its version); facets kept. */
static int apply_dataset(wctx *w, const tl_ol_dataset *ds, uint64_t t, dsref *out)
{
	memset(out, 0, sizeof(*out));
	int rc;
	if (ds->is_model && nonempty(ds->model_name) && nonempty(ds->model_version)) {
		char did[ID_CAP];
		bool ok = co_lineage_id_dataset(did, ID_CAP, ds->ns, ds->name, NULL) >= 0;
		rc = ensure_model(w, ds->model_name, ds->model_version, ds->model_digest, ok ? did : NULL, t, out);
	} else {
		rc = ensure_dataset(w, ds->ns, ds->name, ds->version, t, out);
		if (rc == 0 && out->version == NULL && json_is_object(ds->facets)) {
			/* No version facet: a digest facet identifies what was read or written. */
			json_t *d = json_object_get(json_object_get(ds->facets, "threadline_digest"), "digest");
			if (json_is_string(d))
				out->version = json_string_value(d);
		}
	}
	if (rc != 0 || out->nid == 0)
		return rc;
	if ((rc = facets_put(w, out->nid, ds->facets, t)) == 0 &&
	    (rc = facets_put(w, out->nid, ds->input_facets, t)) == 0)
		rc = facets_put(w, out->nid, ds->output_facets, t);
	return rc;
}

static int ensure_job(wctx *w, const char *ns, const char *name, uint64_t t, uint64_t *nid)
{
	*nid = 0;
	char id[ID_CAP];
	int n = co_lineage_id_job(id, ID_CAP, ns, name, NULL);
	if (n < 0)
		return 0;
	st_node rec = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
	rec.namespace_ = (char *)ns;
	rec.name = (char *)name;
	return node_ensure(w, NT_JOB, id, (size_t)n, t, &rec, nid, NULL);
}

/* Finds or creates a run and loads its record for updating. */
static int ensure_run(wctx *w, const uint8_t run_id[16], uint64_t job, uint64_t t, uint64_t *nid, st_node **rec)
{
	char id[ID_CAP];
	int n = co_lineage_id_run(id, ID_CAP, run_id);
	st_node init = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
	init.job = job;
	int rc = node_ensure(w, NT_RUN, id, (size_t)n, t, &init, nid, NULL);
	if (rc == 0 && rec != NULL) {
		/* The record outlives this frame: name it with a copy. */
		char *keep = wdup(w, id, (size_t)n);
		rc = keep != NULL ? node_load(w, *nid, keep, rec) : ENOMEM;
	}
	return rc;
}

static int apply_io(wctx *w, uint64_t node, st_node *run, const tl_ol_dataset *ds, size_t n, bool input, uint64_t t)
{
	uint64_t group = run != NULL ? run->job : 0;
	for (size_t i = 0; i < n; i++) {
		dsref r;
		int rc = apply_dataset(w, &ds[i], t, &r);
		if (rc == 0 && r.nid != 0)
			rc = input ? edge_put(w, r.nid, node, E_INPUT, t, group)
			           : edge_put(w, node, r.nid, E_OUTPUT, t, group);
		if (rc == 0 && r.vnid != 0)
			rc = input ? edge_put(w, r.vnid, node, E_INPUT | E_VER, t, group)
			           : edge_put(w, node, r.vnid, E_OUTPUT | E_VER, t, group);
		if (rc == 0 && run != NULL && r.nid != 0)
			rc = input ? add_version(w, &run->input_versions, &run->n_input_versions, r.nid, r.version)
			           : add_version(w, &run->output_versions, &run->n_output_versions, r.nid, r.version);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The ids of the datasets and models a run read (up) or wrote (!up), sorted,
 * in the scratch arena. Returns 0 or an LMDB/ENOMEM code.
 */
static int run_io_ids(wctx *w, uint64_t run, bool up, const char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	MDB_cursor **cp = up ? &w->up : &w->down;
	int rc = cursor(w, up ? w->db->up : w->db->down, cp);
	if (rc != 0)
		return rc;
	uint8_t kb[8];
	tl_put_be64(kb, run);
	MDB_val k = {8, kb}, v;
	size_t cap = 0;
	for (rc = mdb_cursor_get(*cp, &k, &v, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(*cp, &k, &v, MDB_NEXT_DUP)) {
		if (v.mv_size != EDGE_LEN)
			return MDB_CORRUPTED;
		uint8_t type = *(const uint8_t *)v.mv_data;
		if (type != (up ? E_INPUT : E_OUTPUT))
			continue;
		uint64_t other = tl_get_be64((const uint8_t *)v.mv_data + 1);
		st_node *rec;
		if ((rc = node_load(w, other, "", &rec)) != 0)
			return rc;
		/* A model version counts as its model, "model:NAME": a new version is the same output. */
		const char *id = rec->id != NULL ? rec->id : "";
		if (NT(other) == NT_MODEL && nonempty(rec->name)) {
			size_t nl = strlen(rec->name);
			char *m = tl_arena_alloc(w->a, nl + 7);
			if (m == NULL)
				return ENOMEM;
			memcpy(m, "model:", 6);
			memcpy(m + 6, rec->name, nl + 1);
			id = m;
		}
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			const char **nl = tl_arena_alloc(w->a, nc * sizeof(*nl));
			if (nl == NULL)
				return ENOMEM;
			if (*n > 0)
				memcpy(nl, *out, *n * sizeof(*nl));
			*out = nl;
			cap = nc;
		}
		(*out)[(*n)++] = id;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), cmp_str);
	return 0;
}

static void hash_str(crypto_generichash_state *h, const char *s)
{
	crypto_generichash_update(h, (const unsigned char *)(s != NULL ? s : ""), strlen(s != NULL ? s : "") + 1);
}

/*
 * Records the version of the job the run executed, once: the code version of
 * its sourceCodeLocation facet when it has one, else (when the run ends) the
 * first 16 hex digits of the BLAKE2b of the code location and the sorted ids
 * of the datasets the run read and wrote. The job version node
 * "job:NS:NAME#VERSION" gets an edge to the run, so it lists the runs of that
 * version. Returns 0 or an LMDB/ENOMEM code.
 */
static int job_version_set(wctx *w, uint64_t run, st_node *r, uint64_t t, bool ended)
{
	if (r->job_version != 0 || r->job == 0)
		return 0;
	const char *v = r->code_version;
	char hex[17];
	if (!nonempty(v) || strchr(v, '#') != NULL) {
		if (!ended)
			return 0;
		const char **in, **out;
		size_t nin, nout;
		int rc = run_io_ids(w, run, true, &in, &nin);
		if (rc == 0)
			rc = run_io_ids(w, run, false, &out, &nout);
		if (rc != 0)
			return rc;
		crypto_generichash_state h;
		crypto_generichash_init(&h, NULL, 0, 8);
		hash_str(&h, r->code_url);
		hash_str(&h, r->code_path);
		hash_str(&h, "inputs");
		for (size_t i = 0; i < nin; i++)
			hash_str(&h, in[i]);
		hash_str(&h, "outputs");
		for (size_t i = 0; i < nout; i++)
			hash_str(&h, out[i]);
		unsigned char d[8];
		crypto_generichash_final(&h, d, sizeof(d));
		sodium_bin2hex(hex, sizeof(hex), d, sizeof(d));
		v = hex;
	}
	st_node *job;
	int rc = node_load(w, r->job, "", &job);
	if (rc != 0)
		return rc;
	char id[ID_CAP];
	int n = co_lineage_id_job(id, ID_CAP, job->namespace_, job->name, v);
	if (n < 0)
		return 0; /* too long to name: the run stays without a job version */
	st_node rec = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
	rec.namespace_ = job->namespace_;
	rec.name = job->name;
	rec.version = (char *)v;
	uint64_t jv;
	if ((rc = node_ensure(w, NT_JOBVERSION, id, (size_t)n, t, &rec, &jv, NULL)) != 0)
		return rc;
	r->job_version = jv;
	return edge_put(w, jv, run, E_RUN | E_VER, t, 0);
}

static int apply_run_event(wctx *w, const tl_ol_event *ev)
{
	uint64_t t = ev->event_time_ns, job, run;
	st_node *r;
	int rc = ensure_job(w, ev->job_ns, ev->job_name, t, &job);
	if (rc == 0)
		rc = ensure_run(w, ev->run_id, job, t, &run, &r);
	if (rc == 0 && job != 0)
		rc = edge_put(w, job, run, E_RUN, t, 0);
	if (rc != 0)
		return rc;
	if (r->job == 0)
		r->job = job;
	if (ev->has_parent && memcmp(ev->parent_run_id, ev->run_id, 16) != 0) {
		uint64_t pjob = 0, prun;
		if (nonempty(ev->parent_job_ns) && nonempty(ev->parent_job_name))
			rc = ensure_job(w, ev->parent_job_ns, ev->parent_job_name, t, &pjob);
		st_node *pr;
		if (rc == 0)
			rc = ensure_run(w, ev->parent_run_id, pjob, t, &prun, &pr);
		if (rc == 0 && pjob != 0 && pr->job == 0) {
			/* The parent was known without its job until now. */
			pr->job = pjob;
			rc = node_store(w, prun, pr);
		}
		if (rc == 0 && pjob != 0)
			rc = edge_put(w, pjob, prun, E_RUN, t, 0);
		if (rc == 0)
			rc = edge_put(w, prun, run, E_PARENT, t, 0);
		if (rc != 0)
			return rc;
		if (r->parent == 0)
			r->parent = prun;
	}
	if ((rc = state_put(w, run, t, ev->type)) != 0)
		return rc;
	if (nonempty(ev->error_message) && (t >= r->error_time || !nonempty(r->error))) {
		r->error = (char *)ev->error_message;
		r->error_time = t;
	}
	if ((ev->code_url != NULL || ev->code_path != NULL || ev->code_version != NULL) && t >= r->code_time) {
		r->code_url = (char *)(ev->code_url != NULL ? ev->code_url : "");
		r->code_path = (char *)(ev->code_path != NULL ? ev->code_path : "");
		r->code_version = (char *)(ev->code_version != NULL ? ev->code_version : "");
		r->code_time = t;
	}
	if ((rc = facets_put(w, run, ev->run_facets, t)) != 0 ||
	    (job != 0 && (rc = facets_put(w, job, ev->job_facets, t)) != 0))
		return rc;
	if ((rc = apply_io(w, run, r, ev->inputs, ev->ninputs, true, t)) != 0 ||
	    (rc = apply_io(w, run, r, ev->outputs, ev->noutputs, false, t)) != 0)
		return rc;
	bool ended = ev->type == TL_OL_COMPLETE || ev->type == TL_OL_FAIL || ev->type == TL_OL_ABORT;
	if ((rc = job_version_set(w, run, r, t, ended)) != 0)
		return rc;
	return node_store(w, run, r);
}

static int apply_job_event(wctx *w, const tl_ol_event *ev)
{
	uint64_t t = ev->event_time_ns, job;
	int rc = ensure_job(w, ev->job_ns, ev->job_name, t, &job);
	if (rc != 0 || job == 0)
		return rc;
	if ((rc = facets_put(w, job, ev->job_facets, t)) == 0 &&
	    (rc = apply_io(w, job, NULL, ev->inputs, ev->ninputs, true, t)) == 0)
		rc = apply_io(w, job, NULL, ev->outputs, ev->noutputs, false, t);
	return rc;
}

int co_lineage_apply_event(co_lineage_db *db, MDB_txn *txn, const uint8_t *json, size_t len)
{
	tl_ol_limits lim;
	tl_ol_limits_default(&lim);
	if (len > lim.max_bytes)
		lim.max_bytes = len; /* the agent's limit admitted it */
	tl_ol_event ev;
	tl_errmsg e;
	if (tl_ol_parse(json, len, &lim, &ev, &e) != 0)
		return 0;
	wctx w;
	wctx_begin(&w, db, txn);
	int rc = 0;
	if (ev.kind == TL_OL_RUN_EVENT) {
		rc = apply_run_event(&w, &ev);
	} else if (ev.kind == TL_OL_JOB_EVENT) {
		rc = apply_job_event(&w, &ev);
	} else if (ev.kind == TL_OL_DATASET_EVENT) {
		dsref r;
		rc = apply_dataset(&w, &ev.dataset, ev.event_time_ns, &r);
	}
	wctx_end(&w);
	tl_ol_event_fini(&ev);
	return rc;
}

/* ---- spans ---- */

typedef struct span_lin {
	const char *run_id, *job_ns, *job_name;
	const tl_pb_anyvalue *inputs, *outputs;
	const char *pred, *model, *model_version, *digest, *output, *deployment;
} span_lin;

/* A scalar attribute as a string (numbers formatted into the scratch arena); NULL for anything else. */
static const char *any_str(wctx *w, const tl_pb_anyvalue *v)
{
	char buf[64];
	if (v == NULL)
		return NULL;
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		return v->string_value;
	case TL_PB_ANY_INT:
		snprintf(buf, sizeof(buf), "%lld", (long long)v->int_value);
		break;
	case TL_PB_ANY_DOUBLE:
		snprintf(buf, sizeof(buf), "%.17g", v->double_value);
		break;
	case TL_PB_ANY_BOOL:
		snprintf(buf, sizeof(buf), "%s", v->bool_value ? "true" : "false");
		break;
	default:
		return NULL;
	}
	return wdup(w, buf, strlen(buf));
}

/* Resolves a dataset or model id named by a span ("dataset:NS:NAME[#V]", "model:N:V" or a bare "NS:NAME"). */
static int span_ref(wctx *w, const char *s, uint64_t t, dsref *out)
{
	memset(out, 0, sizeof(*out));
	size_t n = strlen(s);
	if (n == 0 || n > CO_LINEAGE_ID_MAX)
		return 0;
	char b[ID_CAP];
	if (strncmp(s, "dataset:", 8) != 0 && strncmp(s, "model:", 6) != 0) {
		int m = join(b, ID_CAP, (piece[]){P("dataset:"), {s, n}}, 2);
		if (m < 0)
			return 0;
		s = b;
		n = (size_t)m;
	}
	co_lineage_id id;
	if (co_lineage_id_parse(s, n, &id, NULL) != 0)
		return 0;
	if (id.type == CO_LIN_MODEL) {
		char *name = wdup(w, id.name, id.name_len), *ver = wdup(w, id.version, id.version_len);
		if (name == NULL || ver == NULL)
			return ENOMEM;
		return ensure_model(w, name, ver, NULL, NULL, t, out);
	}
	if (id.type != CO_LIN_DATASET)
		return 0;
	char *ns = wdup(w, id.ns, id.ns_len), *name = wdup(w, id.name, id.name_len);
	char *ver = id.version != NULL ? wdup(w, id.version, id.version_len) : NULL;
	if (ns == NULL || name == NULL || (id.version != NULL && ver == NULL))
		return ENOMEM;
	return ensure_dataset(w, ns, name, ver, t, out);
}

static int span_io(wctx *w, uint64_t run, st_node *r, const tl_pb_anyvalue *list, bool input, uint64_t t)
{
	if (list == NULL)
		return 0;
	const char *one = NULL;
	size_t n = 1;
	tl_pb_anyvalue **vals = NULL;
	if (list->value_case == TL_PB_ANY_ARRAY && list->array_value != NULL) {
		vals = list->array_value->values;
		n = list->array_value->n_values;
	} else if (list->value_case == TL_PB_ANY_STRING) {
		one = list->string_value;
	} else {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = one;
		if (vals != NULL) {
			if (vals[i] == NULL || vals[i]->value_case != TL_PB_ANY_STRING)
				continue;
			s = vals[i]->string_value;
		}
		dsref d;
		int rc = span_ref(w, s, t, &d);
		if (rc == 0 && d.nid != 0)
			rc = input ? edge_put(w, d.nid, run, E_INPUT, t, r->job)
			           : edge_put(w, run, d.nid, E_OUTPUT, t, r->job);
		if (rc == 0 && d.vnid != 0)
			rc = input ? edge_put(w, d.vnid, run, E_INPUT | E_VER, t, r->job)
			           : edge_put(w, run, d.vnid, E_OUTPUT | E_VER, t, r->job);
		if (rc == 0 && d.nid != 0)
			rc = input ? add_version(w, &r->input_versions, &r->n_input_versions, d.nid, d.version)
			           : add_version(w, &r->output_versions, &r->n_output_versions, d.nid, d.version);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static bool span_is_root(const tl_pb_span *sp)
{
	return sp->parent_span_id.len == 0 || tl_id_is_zero(sp->parent_span_id.data, sp->parent_span_id.len);
}

static int span_run(wctx *w, const tl_pb_span *sp, const span_lin *l, const uint8_t *trace)
{
	uint8_t rid[16];
	if (tl_ol_uuid_parse(l->run_id, rid) != 0)
		return 0;
	uint64_t t = sp->start_time_unix_nano, job = 0, run;
	st_node *r;
	int rc = 0;
	if (nonempty(l->job_ns) && nonempty(l->job_name))
		rc = ensure_job(w, l->job_ns, l->job_name, t, &job);
	if (rc == 0)
		rc = ensure_run(w, rid, job, t, &run, &r);
	if (rc == 0 && job != 0)
		rc = edge_put(w, job, run, E_RUN, t, 0);
	if (rc != 0)
		return rc;
	if (r->job == 0)
		r->job = job;
	if (trace != NULL && r->trace_id.len == 0) {
		r->trace_id.len = 16;
		r->trace_id.data = (uint8_t *)trace;
	}
	if (span_is_root(sp)) {
		uint64_t end = sp->end_time_unix_nano;
		bool failed = tl_otlp_span_failed(sp);
		if ((rc = state_put(w, run, t, TL_OL_START)) != 0)
			return rc;
		if (end >= t && end != 0 && (rc = state_put(w, run, end, failed ? TL_OL_FAIL : TL_OL_COMPLETE)) != 0)
			return rc;
		if (failed && nonempty(sp->status->message) && (end >= r->error_time || !nonempty(r->error))) {
			r->error = sp->status->message;
			r->error_time = end;
		}
	}
	if ((rc = span_io(w, run, r, l->inputs, true, t)) != 0 || (rc = span_io(w, run, r, l->outputs, false, t)) != 0)
		return rc;
	bool ended = span_is_root(sp) && sp->end_time_unix_nano >= t && sp->end_time_unix_nano != 0;
	if (ended && (rc = job_version_set(w, run, r, sp->end_time_unix_nano, true)) != 0)
		return rc;
	return node_store(w, run, r);
}

static int model_pred_put(wctx *w, uint64_t model, uint64_t t, const idkey *pk, bool del)
{
	uint8_t kb[8], vb[8 + KEY_MAX];
	tl_put_be64(kb, model);
	tl_put_be64(vb, t);
	memcpy(vb + 8, pk->b, pk->len);
	MDB_val k = {8, kb}, v = {8 + pk->len, vb};
	int rc = del ? mdb_del(w->txn, w->db->model_preds, &k, &v)
	             : mdb_put(w->txn, w->db->model_preds, &k, &v, MDB_NODUPDATA);
	return rc == MDB_KEYEXIST || rc == MDB_NOTFOUND ? 0 : rc;
}

static int span_prediction(wctx *w, const tl_pb_span *sp, const span_lin *l, const uint8_t *trace, uint64_t model)
{
	size_t pl = strlen(l->pred);
	if (pl == 0 || pl > CO_LINEAGE_ID_MAX)
		return 0;
	uint64_t t = sp->start_time_unix_nano;
	idkey pk;
	key_of(l->pred, pl, &pk);
	MDB_val k = {pk.len, pk.b}, v;
	int rc = mdb_get(w->txn, w->db->preds, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	st_pred *p = NULL;
	if (rc == 0)
		p = threadline__store__v1__lineage_prediction__unpack(tl_arena_allocator(w->a), v.mv_size, v.mv_data);
	bool dirty = false;
	if (p == NULL) {
		if ((p = tl_arena_alloc(w->a, sizeof(*p))) == NULL)
			return ENOMEM;
		threadline__store__v1__lineage_prediction__init(p);
		p->id = (char *)l->pred;
		p->time = t;
		dirty = true;
	} else if (t < p->time) {
		/* An earlier report of the same prediction: it happened then. */
		if (p->model != 0 && (rc = model_pred_put(w, p->model, p->time, &pk, true)) != 0)
			return rc;
		if (p->model != 0 && (rc = model_pred_put(w, p->model, t, &pk, false)) != 0)
			return rc;
		p->time = t;
		dirty = true;
	}
	if (trace != NULL && p->trace_id.len == 0) {
		p->trace_id.len = 16;
		p->trace_id.data = (uint8_t *)trace;
		dirty = true;
	}
	if (model != 0 && p->model == 0) {
		p->model = model;
		if ((rc = model_pred_put(w, model, p->time, &pk, false)) != 0)
			return rc;
		dirty = true;
	}
	const char *src[] = {l->digest, l->output, l->deployment};
	char **dst[] = {&p->input_digest, &p->output, &p->deployment};
	for (size_t i = 0; i < 3; i++) {
		if (nonempty(src[i]) && !nonempty(*dst[i])) {
			*dst[i] = (char *)src[i];
			dirty = true;
		}
	}
	if (!dirty)
		return 0;
	return put_packed(w->txn, w->db->preds, &k, &p->base);
}

int co_lineage_apply_span(co_lineage_db *db, MDB_txn *txn, const tl_pb_span *sp)
{
	span_lin l = {0};
	const tl_pb_anyvalue *mver = NULL, *out = NULL;
	bool any = false;
	for (size_t i = 0; i < sp->n_attributes; i++) {
		const tl_pb_keyvalue *kv = sp->attributes[i];
		const char *k = kv->key;
		if (k == NULL || kv->value == NULL)
			continue;
		if (k[0] == 'm' && k[1] == 'l' && k[2] == '.') {
			k += 3;
			const tl_pb_anyvalue *v = kv->value;
			const char *s = v->value_case == TL_PB_ANY_STRING ? v->string_value : NULL;
			if (strcmp(k, "prediction.id") == 0)
				l.pred = s;
			else if (strcmp(k, "model.name") == 0)
				l.model = s;
			else if (strcmp(k, "model.version") == 0)
				mver = v;
			else if (strcmp(k, "input.digest") == 0)
				l.digest = s;
			else if (strcmp(k, "output") == 0)
				out = v;
			else if (strcmp(k, "deployment") == 0)
				l.deployment = s;
			else
				continue;
			any = true;
		} else if (strncmp(k, "lineage.", 8) == 0) {
			k += 8;
			const tl_pb_anyvalue *v = kv->value;
			const char *s = v->value_case == TL_PB_ANY_STRING ? v->string_value : NULL;
			if (strcmp(k, "run_id") == 0)
				l.run_id = s;
			else if (strcmp(k, "inputs") == 0)
				l.inputs = v;
			else if (strcmp(k, "outputs") == 0)
				l.outputs = v;
			else if (strcmp(k, "job.namespace") == 0)
				l.job_ns = s;
			else if (strcmp(k, "job.name") == 0)
				l.job_name = s;
			else
				continue;
			any = true;
		}
	}
	if (!any || (l.run_id == NULL && !nonempty(l.pred) && !(nonempty(l.deployment) && nonempty(l.model))))
		return 0;
	wctx w;
	wctx_begin(&w, db, txn);
	l.model_version = any_str(&w, mver);
	l.output = any_str(&w, out);
	const uint8_t *trace =
	        sp->trace_id.len == 16 && !tl_id_is_zero(sp->trace_id.data, 16) ? sp->trace_id.data : NULL;
	uint64_t t = sp->start_time_unix_nano;
	int rc = 0;
	if (l.run_id != NULL)
		rc = span_run(&w, sp, &l, trace);
	dsref m = {0};
	if (rc == 0 && nonempty(l.model) && nonempty(l.model_version))
		rc = ensure_model(&w, l.model, l.model_version, NULL, NULL, t, &m);
	if (rc == 0 && nonempty(l.pred))
		rc = span_prediction(&w, sp, &l, trace, m.nid);
	if (rc == 0 && m.nid != 0 && nonempty(l.deployment)) {
		char id[ID_CAP];
		int n = co_lineage_id_deployment(id, ID_CAP, l.deployment);
		uint64_t dep;
		st_node rec = THREADLINE__STORE__V1__LINEAGE_NODE__INIT;
		rec.name = (char *)l.deployment;
		if (n > 0 && (rc = node_ensure(&w, NT_DEPLOYMENT, id, (size_t)n, t, &rec, &dep, NULL)) == 0)
			rc = edge_put(&w, m.nid, dep, E_DEPLOYED, t, 0);
	}
	wctx_end(&w);
	return rc;
}

/* ---- reading ---- */

typedef struct qn {
	uint64_t nid; /* node number; a prediction: NT_PRED in the top byte and a hash of its key */
	idkey *pkey;  /* predictions: key in lin_preds */
	st_node *rec; /* other nodes */
	st_pred *pred;
	const char *pid; /* predictions: "prediction:ID" */
	uint32_t dist;
	uint8_t walks; /* 1: reached walking upstream, 2: downstream */
} qn;

typedef struct qe {
	uint32_t from, to;
	uint8_t type;
} qe;

typedef struct grp {
	uint64_t group, t, other;
	uint8_t type;
} grp;

typedef struct graph {
	const co_lineage_db *db;
	MDB_txn *txn;
	tl_arena a;
	uint64_t at;
	size_t max_nodes, max_edges;
	qn *n;
	size_t nn, ncap;
	uint32_t *ht; /* node index + 1; 0 empty */
	size_t hcap;
	qe *e;
	size_t ne, ecap;
	uint32_t *eht;
	size_t ehcap;
	uint32_t *q, *qd; /* the walk's queue: node indexes and distances */
	size_t qh, qt;
	struct grp *gt; /* the latest run per job around one dataset (see walk_edge) */
	size_t gn, gcap;
	uint32_t *gh; /* group index + 1; 0 empty */
	size_t ghcap;
	bool truncated;
	int err; /* first error (TL code) */
} graph;

static int graph_init(graph *g, co_store *s, uint64_t at, size_t max_nodes)
{
	memset(g, 0, sizeof(*g));
	g->db = co_store_lineage_db(s);
	g->at = at != 0 ? at : UINT64_MAX;
	g->max_nodes = max_nodes != 0 ? max_nodes : CO_LINEAGE_MAX_NODES;
	g->max_edges = g->max_nodes * EDGES_PER_NODE;
	tl_arena_init(&g->a, SCRATCH_BLOCK, 0);
	return co_store_read_begin(s, &g->txn);
}

static void graph_fini(graph *g, co_store *s)
{
	if (g->txn != NULL)
		co_store_read_end(s, g->txn);
	g->txn = NULL;
	tl_arena_fini(&g->a);
	free(g->n);
	free(g->ht);
	free(g->e);
	free(g->eht);
	free(g->q);
	free(g->qd);
	free(g->gt);
	free(g->gh);
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

static uint64_t pred_tag(const idkey *k)
{
	uint64_t h = UINT64_C(1469598103934665603);
	for (size_t i = 0; i < k->len; i++)
		h = (h ^ k->b[i]) * UINT64_C(1099511628211);
	return ((uint64_t)NT_PRED << 56) | (h & ((UINT64_C(1) << 56) - 1));
}

static int rehash(uint32_t **ht, size_t *hcap, size_t want, uint64_t (*keyf)(const graph *, uint32_t), const graph *g,
                  size_t n)
{
	size_t cap = *hcap != 0 ? *hcap : 64;
	while (cap < want * 2)
		cap *= 2;
	if (cap == *hcap)
		return 0;
	uint32_t *nt = calloc(cap, sizeof(*nt));
	if (nt == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t s = (size_t)mix(keyf(g, (uint32_t)i)) & (cap - 1);
		while (nt[s] != 0)
			s = (s + 1) & (cap - 1);
		nt[s] = (uint32_t)i + 1;
	}
	free(*ht);
	*ht = nt;
	*hcap = cap;
	return 0;
}

static uint64_t node_key(const graph *g, uint32_t i)
{
	return g->n[i].nid;
}

static uint64_t edge_key(const graph *g, uint32_t i)
{
	const qe *e = &g->e[i];
	return ((uint64_t)e->from << 32 | e->to) ^ ((uint64_t)e->type << 56);
}

static int64_t node_find(const graph *g, uint64_t nid)
{
	if (g->hcap == 0)
		return -1;
	size_t s = (size_t)mix(nid) & (g->hcap - 1);
	while (g->ht[s] != 0) {
		if (g->n[g->ht[s] - 1].nid == nid)
			return g->ht[s] - 1;
		s = (s + 1) & (g->hcap - 1);
	}
	return -1;
}

static void set_err(graph *g, int rc)
{
	if (g->err == 0)
		g->err = rc;
}

/* Reads a node record into the graph's arena. Returns 0, TL_ENOTFOUND or another TL code. */
static int read_node(graph *g, uint64_t nid, st_node **out)
{
	uint8_t kb[8];
	tl_put_be64(kb, nid);
	MDB_val k = {8, kb}, v;
	int rc = mdb_get(g->txn, g->db->nodes, &k, &v);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	*out = threadline__store__v1__lineage_node__unpack(tl_arena_allocator(&g->a), v.mv_size, v.mv_data);
	return *out != NULL ? 0 : TL_ECORRUPT;
}

static int read_pred(graph *g, const idkey *pk, st_pred **out)
{
	MDB_val k = {pk->len, (void *)pk->b}, v;
	int rc = mdb_get(g->txn, g->db->preds, &k, &v);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	*out = threadline__store__v1__lineage_prediction__unpack(tl_arena_allocator(&g->a), v.mv_size, v.mv_data);
	return *out != NULL ? 0 : TL_ECORRUPT;
}

/*
 * Index of the node (a prediction when pk != NULL), adding it at distance
 * dist when new. Returns the index, -1 when the node cap stopped it (the
 * answer is truncated), -2 when it cannot be read (skipped; g->err set for
 * store errors).
 */
static int64_t node_add(graph *g, uint64_t nid, const idkey *pk, uint32_t dist, bool *added)
{
	if (pk != NULL)
		nid = pred_tag(pk);
	*added = false;
	int64_t i = node_find(g, nid);
	if (i >= 0) {
		if (g->n[i].dist > dist)
			g->n[i].dist = dist;
		return i;
	}
	if (g->nn >= g->max_nodes) {
		g->truncated = true;
		return -1;
	}
	qn x = {.nid = nid, .dist = dist};
	int rc;
	if (pk != NULL) {
		x.pkey = tl_arena_alloc(&g->a, sizeof(*x.pkey));
		if (x.pkey == NULL) {
			set_err(g, -ENOMEM);
			return -2;
		}
		*x.pkey = *pk;
		rc = read_pred(g, pk, &x.pred);
		if (rc == 0) {
			size_t n = strlen(x.pred->id) + 12;
			char *id = tl_arena_alloc(&g->a, n);
			if (id == NULL) {
				set_err(g, -ENOMEM);
				return -2;
			}
			snprintf(id, n, "prediction:%s", x.pred->id);
			x.pid = id;
		}
	} else {
		rc = read_node(g, nid, &x.rec);
	}
	if (rc != 0) {
		if (rc != TL_ENOTFOUND && rc != TL_ECORRUPT)
			set_err(g, rc);
		return -2;
	}
	if (g->nn == g->ncap) {
		/* The walk's queue holds each node at most once per walk: it grows with the table. */
		size_t nc = g->ncap ? g->ncap * 2 : 256;
		qn *nn = realloc(g->n, nc * sizeof(*nn));
		if (nn != NULL)
			g->n = nn;
		uint32_t *q = realloc(g->q, nc * sizeof(*q));
		if (q != NULL)
			g->q = q;
		uint32_t *qd = realloc(g->qd, nc * sizeof(*qd));
		if (qd != NULL)
			g->qd = qd;
		if (nn == NULL || q == NULL || qd == NULL) {
			set_err(g, -ENOMEM);
			return -2;
		}
		g->ncap = nc;
	}
	g->n[g->nn++] = x;
	if (g->nn * 2 > g->hcap && rehash(&g->ht, &g->hcap, g->nn, node_key, g, g->nn) != 0) {
		g->nn--;
		set_err(g, -ENOMEM);
		return -2;
	}
	size_t s = (size_t)mix(nid) & (g->hcap - 1);
	while (g->ht[s] != 0)
		s = (s + 1) & (g->hcap - 1);
	g->ht[s] = (uint32_t)g->nn;
	*added = true;
	return (int64_t)g->nn - 1;
}

static void edge_add(graph *g, uint32_t from, uint32_t to, uint8_t type)
{
	qe e = {from, to, (uint8_t)E_TYPE(type)};
	if (g->ehcap != 0) {
		uint64_t key = ((uint64_t)e.from << 32 | e.to) ^ ((uint64_t)e.type << 56);
		size_t s = (size_t)mix(key) & (g->ehcap - 1);
		while (g->eht[s] != 0) {
			const qe *o = &g->e[g->eht[s] - 1];
			if (o->from == e.from && o->to == e.to && o->type == e.type)
				return;
			s = (s + 1) & (g->ehcap - 1);
		}
	}
	if (g->ne >= g->max_edges) {
		g->truncated = true;
		return;
	}
	if (g->ne == g->ecap) {
		size_t nc = g->ecap ? g->ecap * 2 : 256;
		qe *ne = realloc(g->e, nc * sizeof(*ne));
		if (ne == NULL) {
			set_err(g, -ENOMEM);
			return;
		}
		g->e = ne;
		g->ecap = nc;
	}
	g->e[g->ne++] = e;
	if (g->ne * 2 > g->ehcap) {
		if (rehash(&g->eht, &g->ehcap, g->ne, edge_key, g, g->ne) != 0)
			set_err(g, -ENOMEM);
		return; /* rehash placed the new edge too */
	}
	uint64_t key = edge_key(g, (uint32_t)(g->ne - 1));
	size_t s = (size_t)mix(key) & (g->ehcap - 1);
	while (g->eht[s] != 0)
		s = (s + 1) & (g->ehcap - 1);
	g->eht[s] = (uint32_t)g->ne;
}

/*
 * Calls fn for each edge of nid (lin_up when up, else lin_down) visible at
 * g->at: a page of fixed-size values per cursor call. fn returns false to
 * stop. Returns 0 or a TL code.
 */
typedef bool (*edge_fn)(graph *g, void *ud, uint8_t type, uint64_t other, uint64_t t, uint64_t group);

static int edges_each(graph *g, uint64_t nid, bool up, edge_fn fn, void *ud)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(g->txn, up ? g->db->up : g->db->down, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t kb[8];
	tl_put_be64(kb, nid);
	MDB_val k = {8, kb}, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	if (rc == 0)
		rc = mdb_cursor_get(c, &k, &v, MDB_GET_MULTIPLE);
	bool go = true;
	while (rc == 0 && go) {
		if (v.mv_size % EDGE_LEN != 0) {
			mdb_cursor_close(c);
			return TL_ECORRUPT;
		}
		const uint8_t *p = v.mv_data;
		for (size_t i = 0; i < v.mv_size / EDGE_LEN && go; i++, p += EDGE_LEN) {
			uint64_t t = tl_get_be64(p + 9);
			if (t <= g->at)
				go = fn(g, ud, p[0], tl_get_be64(p + 1), t, tl_get_be64(p + 17));
		}
		if (go)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_MULTIPLE);
	}
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : tl_err_from_lmdb(rc);
}

/* Reached node j from the current node in this walk: queue it when new to the walk. */
static void walk_reach(graph *g, int64_t j, uint8_t bit, uint32_t d)
{
	if (j < 0 || (g->n[j].walks & bit))
		return;
	g->n[j].walks |= bit;
	g->q[g->qt] = (uint32_t)j;
	g->qd[g->qt++] = d;
}

typedef struct step {
	uint32_t from; /* the node being expanded */
	uint32_t d;    /* distance of its neighbours */
	bool up;
	bool version;  /* it is a dataset or job version: only version edges count */
	bool collapse; /* it is a dataset or model: keep the latest run of each job */
} step;

/* Keeps (other, t) for its group when it is the group's latest so far. Returns false on ENOMEM. */
static bool group_keep(graph *g, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	if ((g->gn + 1) * 2 > g->ghcap) {
		size_t nc = g->ghcap ? g->ghcap * 2 : 64;
		uint32_t *nh = calloc(nc, sizeof(*nh));
		grp *ng = realloc(g->gt, nc / 2 * sizeof(*ng));
		if (ng != NULL)
			g->gt = ng;
		if (nh == NULL || ng == NULL) {
			free(nh);
			set_err(g, -ENOMEM);
			return false;
		}
		for (size_t i = 0; i < g->gn; i++) {
			size_t sl = (size_t)mix(g->gt[i].group) & (nc - 1);
			while (nh[sl] != 0)
				sl = (sl + 1) & (nc - 1);
			nh[sl] = (uint32_t)i + 1;
		}
		free(g->gh);
		g->gh = nh;
		g->ghcap = nc;
		g->gcap = nc / 2;
	}
	size_t sl = (size_t)mix(group) & (g->ghcap - 1);
	while (g->gh[sl] != 0) {
		grp *e = &g->gt[g->gh[sl] - 1];
		if (e->group == group) {
			if (t > e->t || (t == e->t && other > e->other)) {
				e->t = t;
				e->other = other;
				e->type = type;
			}
			return true;
		}
		sl = (sl + 1) & (g->ghcap - 1);
	}
	g->gt[g->gn] = (grp){group, t, other, type};
	g->gh[sl] = (uint32_t)++g->gn;
	return true;
}

static void group_reset(graph *g)
{
	if (g->gn != 0)
		memset(g->gh, 0, g->ghcap * sizeof(*g->gh));
	g->gn = 0;
}

static bool walk_add(graph *g, const step *st, uint8_t type, uint64_t other);

/*
 * One edge of the node being expanded. Around a dataset or model version,
 * only the latest run of each job (as of g->at) is followed: the older runs
 * of a daily job are history, and following them all would drown the answer.
 */
static bool walk_edge(graph *g, void *ud, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	step *st = ud;
	if (((type & E_VER) != 0) != st->version)
		return true;
	if (st->collapse && group != 0 && NT(other) == NT_RUN)
		return group_keep(g, type, other, t, group);
	return walk_add(g, st, type, other);
}

static bool walk_add(graph *g, const step *st, uint8_t type, uint64_t other)
{
	bool added;
	int64_t j = node_add(g, other, NULL, st->d, &added);
	if (j == -1 || g->err != 0)
		return false;
	if (j < 0)
		return true;
	if (st->up)
		edge_add(g, (uint32_t)j, st->from, type);
	else
		edge_add(g, st->from, (uint32_t)j, type);
	walk_reach(g, j, st->up ? 1 : 2, st->d);
	return !g->truncated;
}

/* Predictions a model served (downstream), newest first from g->at back. */
static int walk_preds(graph *g, step *st, uint64_t model)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(g->txn, g->db->model_preds, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t kb[8];
	tl_put_be64(kb, model);
	MDB_val k = {8, kb}, v;
	uint8_t tb[8];
	tl_put_be64(tb, g->at != UINT64_MAX ? g->at + 1 : UINT64_MAX);
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	if (rc == 0) {
		/* Values are time || id: position after the last one made by g->at. */
		MDB_val tv = {8, tb};
		rc = g->at != UINT64_MAX ? mdb_cursor_get(c, &k, &tv, MDB_GET_BOTH_RANGE) : MDB_NOTFOUND;
		rc = rc == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV_DUP) : mdb_cursor_get(c, &k, &v, MDB_LAST_DUP);
	}
	while (rc == 0) {
		if (v.mv_size < 8 || v.mv_size > 8 + KEY_MAX) {
			rc = MDB_CORRUPTED;
			break;
		}
		if (tl_get_be64(v.mv_data) > g->at) {
			rc = mdb_cursor_get(c, &k, &v, MDB_PREV_DUP);
			continue;
		}
		idkey pk;
		pk.len = v.mv_size - 8;
		memcpy(pk.b, (const uint8_t *)v.mv_data + 8, pk.len);
		bool added;
		int64_t j = node_add(g, 0, &pk, st->d, &added);
		if (j == -1 || g->err != 0)
			break;
		if (j >= 0) {
			edge_add(g, st->from, (uint32_t)j, E_SERVED);
			walk_reach(g, j, 2, st->d);
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_PREV_DUP);
	}
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : tl_err_from_lmdb(rc);
}

static int walk(graph *g, uint32_t root, bool up, unsigned depth)
{
	uint8_t bit = up ? 1 : 2;
	g->qh = g->qt = 0;
	g->n[root].walks |= bit;
	g->q[g->qt] = root;
	g->qd[g->qt++] = 0;
	while (g->qh < g->qt && !g->truncated && g->err == 0) {
		uint32_t i = g->q[g->qh], d = g->qd[g->qh];
		g->qh++;
		if (d >= depth)
			continue;
		unsigned nt = NT(g->n[i].nid);
		step st = {.from = i,
		           .d = d + 1,
		           .up = up,
		           .version = nt == NT_DSVERSION || nt == NT_JOBVERSION,
		           .collapse = nt == NT_DATASET || nt == NT_DSVERSION || nt == NT_MODEL};
		int rc = 0;
		if (NT(g->n[i].nid) == NT_PRED) {
			const st_pred *p = g->n[i].pred;
			if (up && p->model != 0)
				walk_edge(g, &st, E_SERVED, p->model, p->time, 0);
		} else {
			group_reset(g);
			rc = edges_each(g, g->n[i].nid, up, walk_edge, &st);
			for (size_t k = 0; rc == 0 && k < g->gn && !g->truncated && g->err == 0; k++)
				walk_add(g, &st, g->gt[k].type, g->gt[k].other);
			if (rc == 0 && !up && NT(g->n[i].nid) == NT_MODEL && !g->truncated && g->err == 0)
				rc = walk_preds(g, &st, g->n[i].nid);
		}
		if (rc != 0)
			set_err(g, rc);
	}
	return g->err;
}

/* ---- what a node looked like at g->at ---- */

typedef struct run_info {
	tl_ol_type state;
	uint64_t state_time, started, ended;
} run_info;

static int run_info_get(graph *g, uint64_t run, run_info *ri)
{
	memset(ri, 0, sizeof(*ri));
	MDB_cursor *c;
	int rc = mdb_cursor_open(g->txn, g->db->states, &c);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	uint8_t kb[8];
	tl_put_be64(kb, run);
	MDB_val k = {8, kb}, v;
	uint64_t first = 0, start = 0;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
	if (rc == 0)
		rc = mdb_cursor_get(c, &k, &v, MDB_GET_MULTIPLE);
	bool done = false;
	while (rc == 0 && !done) {
		if (v.mv_size % STATE_LEN != 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		const uint8_t *p = v.mv_data;
		for (size_t i = 0; i < v.mv_size / STATE_LEN; i++, p += STATE_LEN) {
			uint64_t t = tl_get_be64(p);
			if (t > g->at) {
				done = true;
				break;
			}
			ri->state = (tl_ol_type)p[8];
			ri->state_time = t;
			if (first == 0)
				first = t;
			if (start == 0 && ri->state == TL_OL_START)
				start = t;
		}
		if (!done)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_MULTIPLE);
	}
	mdb_cursor_close(c);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return tl_err_from_lmdb(rc);
	ri->started = start != 0 ? start : first;
	if (ri->state == TL_OL_COMPLETE || ri->state == TL_OL_FAIL || ri->state == TL_OL_ABORT)
		ri->ended = ri->state_time;
	return 0;
}

static void fmt_time(uint64_t ns, char *buf, size_t cap)
{
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&sec, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	         tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000u));
}

static json_t *jtime(uint64_t ns)
{
	if (ns == 0 || ns == UINT64_MAX)
		return json_null();
	char buf[48];
	fmt_time(ns, buf, sizeof(buf));
	return json_string(buf);
}

/* A string, or null when empty; bytes that are not UTF-8 become '?'. */
static json_t *jstr(const char *s)
{
	if (!nonempty(s))
		return json_null();
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	char *c = strdup(s);
	if (c == NULL)
		return json_null();
	for (char *p = c; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j != NULL ? j : json_null();
}

static json_t *jtrace(const ProtobufCBinaryData *b)
{
	if (b->len != 16)
		return json_null();
	char hex[33];
	tl_hex_encode(b->data, 16, hex);
	return json_string(hex);
}

static const char *qn_id(const qn *x)
{
	return x->rec != NULL ? x->rec->id : x->pid != NULL ? x->pid : "";
}

static json_t *node_id_json(graph *g, uint64_t nid)
{
	if (nid == 0)
		return json_null();
	int64_t i = node_find(g, nid);
	if (i >= 0)
		return jstr(qn_id(&g->n[i]));
	st_node *r = NULL;
	return read_node(g, nid, &r) == 0 ? jstr(r->id) : json_null();
}

/* Latest facets of a node as one object (null when none); parsed only here, to answer. */
static json_t *facets_json(graph *g, uint64_t nid)
{
	MDB_cursor *c;
	if (mdb_cursor_open(g->txn, g->db->facets, &c) != 0)
		return json_null();
	uint8_t kb[8];
	tl_put_be64(kb, nid);
	MDB_val k = {8, kb}, v;
	json_t *obj = NULL;
	int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > 8 && memcmp(k.mv_data, kb, 8) == 0) {
		if (v.mv_size >= 8) {
			char name[CO_LINEAGE_FACET_NAME_MAX + 1];
			size_t nl =
			        k.mv_size - 8 < CO_LINEAGE_FACET_NAME_MAX ? k.mv_size - 8 : CO_LINEAGE_FACET_NAME_MAX;
			memcpy(name, (const uint8_t *)k.mv_data + 8, nl);
			name[nl] = '\0';
			json_t *f = json_loadb((const char *)v.mv_data + 8, v.mv_size - 8, JSON_DECODE_ANY, NULL);
			if (f != NULL) {
				if (obj == NULL)
					obj = json_object();
				json_object_set_new(obj, name, f);
			}
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return obj != NULL ? obj : json_null();
}

/* One facet of a node, parsed (caller owns the reference), or NULL. */
static json_t *facet_get(graph *g, uint64_t nid, const char *name)
{
	size_t nl = strlen(name);
	uint8_t kb[8 + CO_LINEAGE_FACET_NAME_MAX];
	tl_put_be64(kb, nid);
	memcpy(kb + 8, name, nl);
	MDB_val k = {8 + nl, kb}, v;
	if (mdb_get(g->txn, g->db->facets, &k, &v) != 0 || v.mv_size < 8)
		return NULL;
	return json_loadb((const char *)v.mv_data + 8, v.mv_size - 8, JSON_DECODE_ANY, NULL);
}

typedef struct latest {
	uint8_t want; /* E_RUN for a job, E_RUN | E_VER for a job version */
	uint64_t run, t;
} latest;

static bool latest_run_edge(graph *g, void *ud, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	(void)group;
	(void)g;
	latest *l = ud;
	if (type == l->want && (t > l->t || (t == l->t && other > l->run))) {
		l->run = other;
		l->t = t;
	}
	return true;
}

static void set(json_t *o, const char *k, json_t *v)
{
	json_object_set_new(o, k, v != NULL ? v : json_null());
}

/* Whether the run's job version was known by g->at: its edge to the run carries the time it was set. */
static bool version_known(graph *g, uint64_t run, uint64_t jv)
{
	if (g->at == UINT64_MAX)
		return true;
	MDB_cursor *c;
	if (mdb_cursor_open(g->txn, g->db->up, &c) != 0)
		return false;
	uint8_t kb[8], vb[EDGE_LEN] = {E_RUN | E_VER};
	tl_put_be64(kb, run);
	tl_put_be64(vb + 1, jv);
	MDB_val k = {8, kb}, v = {EDGE_LEN, vb};
	bool known = mdb_cursor_get(c, &k, &v, MDB_GET_BOTH_RANGE) == 0 && v.mv_size == EDGE_LEN &&
	             memcmp(v.mv_data, vb, 9) == 0 && tl_get_be64((const uint8_t *)v.mv_data + 9) <= g->at;
	mdb_cursor_close(c);
	return known;
}

static json_t *run_fields(graph *g, uint64_t nid, const st_node *r, json_t *o)
{
	run_info ri;
	int rc = run_info_get(g, nid, &ri);
	if (rc != 0)
		set_err(g, rc);
	set(o, "job", node_id_json(g, r->job));
	set(o, "job_version",
	    r->job_version != 0 && version_known(g, nid, r->job_version) ? node_id_json(g, r->job_version)
	                                                                 : json_null());
	set(o, "state", ri.state != TL_OL_TYPE_NONE ? json_string(tl_ol_type_name(ri.state)) : json_null());
	set(o, "started_at", jtime(ri.started));
	set(o, "ended_at", jtime(ri.ended));
	set(o, "duration_ms",
	    ri.started != 0 && ri.ended >= ri.started ? json_integer((json_int_t)((ri.ended - ri.started) / 1000000u))
	                                              : json_null());
	set(o, "trace_id", jtrace(&r->trace_id));
	set(o, "error", r->error_time <= g->at ? jstr(r->error) : json_null());
	set(o, "parent", node_id_json(g, r->parent));
	return o;
}

static int lookup(graph *g, const char *id, size_t len, uint64_t *nid, uint64_t *first);

static json_t *node_json(graph *g, const qn *x)
{
	json_t *o = json_object();
	unsigned t = NT(x->nid);
	set(o, "id", jstr(qn_id(x)));
	static const char *const tn[] = {"",           "dataset",    "job",     "run", "model",
	                                 "deployment", "prediction", "dataset", "job"};
	set(o, "type", json_string(t < sizeof(tn) / sizeof(tn[0]) ? tn[t] : "unknown"));
	set(o, "distance", json_integer(x->dist));
	if (t != NT_PRED) {
		/* The event time that first showed the node. */
		uint64_t nid, first = 0;
		const char *id = qn_id(x);
		int rc = lookup(g, id, strlen(id), &nid, &first);
		if (rc != 0)
			set_err(g, rc);
		set(o, "first_seen", jtime(first));
	}
	const st_node *r = x->rec;
	switch (t) {
	case NT_DATASET:
	case NT_DSVERSION:
		set(o, "namespace", jstr(r->namespace_));
		set(o, "name", jstr(r->name));
		set(o, "version", jstr(r->version));
		set(o, "facets", t == NT_DATASET ? facets_json(g, x->nid) : json_null());
		break;
	case NT_JOB:
	case NT_JOBVERSION: {
		latest l = {t == NT_JOB ? E_RUN : E_RUN | E_VER, 0, 0};
		int rc = edges_each(g, x->nid, false, latest_run_edge, &l);
		run_info ri = {0};
		st_node *lr = NULL;
		if (rc == 0 && l.run != 0 && (rc = run_info_get(g, l.run, &ri)) == 0)
			rc = read_node(g, l.run, &lr);
		if (rc != 0)
			set_err(g, rc);
		set(o, "namespace", jstr(r->namespace_));
		set(o, "name", jstr(r->name));
		if (t == NT_JOBVERSION)
			set(o, "version", jstr(r->version));
		else
			set(o, "latest_version", lr != NULL ? node_id_json(g, lr->job_version) : json_null());
		set(o, "latest_run", node_id_json(g, l.run));
		set(o, "latest_state",
		    ri.state != TL_OL_TYPE_NONE ? json_string(tl_ol_type_name(ri.state)) : json_null());
		break;
	}
	case NT_RUN:
		run_fields(g, x->nid, r, o);
		break;
	case NT_MODEL:
		set(o, "name", jstr(r->name));
		set(o, "version", jstr(r->version));
		set(o, "digest", jstr(r->digest));
		set(o, "dataset", jstr(r->dataset));
		break;
	case NT_DEPLOYMENT:
		set(o, "name", jstr(r->name));
		break;
	case NT_PRED: {
		const st_pred *p = x->pred;
		set(o, "trace_id", jtrace(&p->trace_id));
		set(o, "model", node_id_json(g, p->model));
		set(o, "input_digest", jstr(p->input_digest));
		set(o, "output", jstr(p->output));
		set(o, "deployment", jstr(p->deployment));
		set(o, "time", jtime(p->time));
		break;
	}
	default:
		break;
	}
	return o;
}

static const char *edge_name(uint8_t type)
{
	static const char *const n[] = {"", "input", "output", "run", "parent", "served", "deployed"};
	type = (uint8_t)E_TYPE(type);
	return type < sizeof(n) / sizeof(n[0]) ? n[type] : "unknown";
}

static json_t *edges_json(graph *g)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < g->ne; i++) {
		json_t *e = json_object();
		set(e, "from", jstr(qn_id(&g->n[g->e[i].from])));
		set(e, "to", jstr(qn_id(&g->n[g->e[i].to])));
		set(e, "type", json_string(edge_name(g->e[i].type)));
		json_array_append_new(arr, e);
	}
	return arr;
}

/* Serializes doc into arena. Takes the reference. */
static int finish(json_t *doc, tl_arena *arena, char **out, tl_errmsg *err)
{
	char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(16)) : NULL;
	json_decref(doc);
	if (s == NULL)
		return tl_errf(err, -ENOMEM, "out of memory building the answer");
	size_t n = strlen(s);
	*out = tl_arena_strndup(arena, s, n);
	free(s);
	if (*out == NULL)
		return tl_errf(err, TL_ELIMIT, "the answer (%zu bytes) does not fit the answer memory", n);
	return 0;
}

/* Looks a node id up: its number and first_seen. Returns 0, TL_ENOTFOUND or a store error. */
static int lookup(graph *g, const char *id, size_t len, uint64_t *nid, uint64_t *first)
{
	idkey ik;
	key_of(id, len, &ik);
	MDB_val k = {ik.len, ik.b}, v;
	int rc = mdb_get(g->txn, g->db->ids, &k, &v);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	if (v.mv_size != 16)
		return TL_ECORRUPT;
	*nid = tl_get_be64(v.mv_data);
	*first = tl_get_be64((const uint8_t *)v.mv_data + 8);
	return 0;
}

static int not_found(tl_errmsg *err, const char *id, uint64_t first, uint64_t at)
{
	if (first == 0)
		return tl_errf(err, TL_ENOTFOUND, "%s not found", id);
	char t[48];
	fmt_time(at, t, sizeof(t));
	return tl_errf(err, TL_ENOTFOUND, "%s did not exist yet at %s", id, t);
}

/* Node indexes by distance, in discovery order within one distance (a stable counting sort). */
static uint32_t *by_distance(const graph *g)
{
	uint32_t maxd = 0;
	for (size_t i = 0; i < g->nn; i++)
		if (g->n[i].dist > maxd)
			maxd = g->n[i].dist;
	uint32_t *order = malloc((g->nn ? g->nn : 1) * sizeof(*order));
	size_t *start = calloc((size_t)maxd + 2, sizeof(*start));
	if (order == NULL || start == NULL) {
		free(order);
		free(start);
		return NULL;
	}
	for (size_t i = 0; i < g->nn; i++)
		start[g->n[i].dist + 1]++;
	for (uint32_t d = 1; d <= maxd + 1; d++)
		start[d] += start[d - 1];
	for (size_t i = 0; i < g->nn; i++)
		order[start[g->n[i].dist]++] = (uint32_t)i;
	free(start);
	return order;
}

/* Adds the root named by a parsed id. Returns 0 or a TL code (err set). */
static int add_root(graph *g, const co_lineage_id *id, const char *norm, size_t nlen, tl_errmsg *err)
{
	bool added;
	int rc;
	if (id->type == CO_LIN_PREDICTION) {
		idkey pk;
		key_of(id->name, id->name_len, &pk);
		st_pred *p = NULL;
		if ((rc = read_pred(g, &pk, &p)) != 0)
			return rc == TL_ENOTFOUND ? not_found(err, norm, 0, 0)
			                          : tl_errf(err, rc, "%s: %s", norm, tl_strerror(rc));
		if (p->time > g->at)
			return not_found(err, norm, p->time, g->at);
		rc = node_add(g, 0, &pk, 0, &added) == 0 ? 0 : (g->err != 0 ? g->err : TL_ECORRUPT);
	} else {
		uint64_t nid, first;
		if ((rc = lookup(g, norm, nlen, &nid, &first)) != 0)
			return rc == TL_ENOTFOUND ? not_found(err, norm, 0, 0)
			                          : tl_errf(err, rc, "%s: %s", norm, tl_strerror(rc));
		if (first > g->at)
			return not_found(err, norm, first, g->at);
		rc = node_add(g, nid, NULL, 0, &added) == 0 ? 0 : (g->err != 0 ? g->err : TL_ECORRUPT);
	}
	if (rc != 0)
		return tl_errf(err, rc, "%s: %s", norm, tl_strerror(rc));
	return 0;
}

int co_lineage_show(co_store *s, const co_lineage_show_opts *o, tl_arena *arena, char **json, tl_errmsg *err)
{
	*json = NULL;
	const char *raw = o->node_id != NULL ? o->node_id : "";
	co_lineage_id id;
	int rc = co_lineage_id_parse(raw, strlen(raw), &id, err);
	if (rc != 0)
		return rc;
	char norm[ID_CAP];
	int nlen = co_lineage_id_format(&id, norm, sizeof(norm));
	if (nlen < 0)
		return tl_errf(err, TL_EINVALID, "node id \"%.64s\" is not valid", raw);
	unsigned depth = o->depth != 0 ? o->depth : CO_LINEAGE_DEFAULT_DEPTH;
	if (depth > CO_LINEAGE_MAX_DEPTH)
		depth = CO_LINEAGE_MAX_DEPTH;
	graph g;
	if ((rc = graph_init(&g, s, o->at_ns, o->max_nodes)) != 0) {
		graph_fini(&g, s);
		return tl_errf(err, rc, "lineage: %s", tl_strerror(rc));
	}
	if ((rc = add_root(&g, &id, norm, (size_t)nlen, err)) != 0) {
		graph_fini(&g, s);
		return rc;
	}
	if (o->dir != CO_LIN_DOWNSTREAM)
		walk(&g, 0, true, depth);
	if (o->dir != CO_LIN_UPSTREAM && g.err == 0)
		walk(&g, 0, false, depth);
	json_t *doc = NULL;
	if (g.err == 0) {
		doc = json_object();
		set(doc, "root", json_string(norm));
		set(doc, "direction",
		    json_string(o->dir == CO_LIN_UPSTREAM     ? "upstream"
		                : o->dir == CO_LIN_DOWNSTREAM ? "downstream"
		                                              : "both"));
		set(doc, "depth", json_integer(depth));
		set(doc, "at", o->at_ns != 0 ? jtime(o->at_ns) : json_null());
		set(doc, "truncated", json_boolean(g.truncated));
		uint32_t *order = by_distance(&g);
		json_t *nodes = json_array();
		if (order != NULL) {
			for (size_t i = 0; i < g.nn; i++)
				json_array_append_new(nodes, node_json(&g, &g.n[order[i]]));
			free(order);
		} else {
			set_err(&g, -ENOMEM);
		}
		set(doc, "nodes", nodes);
		set(doc, "edges", edges_json(&g));
	}
	rc = g.err;
	graph_fini(&g, s);
	if (rc != 0) {
		json_decref(doc);
		return tl_errf(err, rc, "lineage show %s: %s", norm, tl_strerror(rc));
	}
	return finish(doc, arena, json, err);
}

/* ---- explain ---- */

typedef struct producers {
	uint64_t best, best_t; /* latest run that wrote it no later than bound */
	uint64_t first, first_t;
	uint64_t bound;
	bool version; /* scanning a version node: only its version edges */
} producers;

static bool producer_edge(graph *g, void *ud, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	(void)group;
	(void)g;
	producers *p = ud;
	if (E_TYPE(type) != E_OUTPUT || ((type & E_VER) != 0) != p->version || NT(other) != NT_RUN)
		return true;
	if (t <= p->bound && (p->best == 0 || t > p->best_t || (t == p->best_t && other > p->best))) {
		p->best = other;
		p->best_t = t;
	}
	if (p->first == 0 || t < p->first_t || (t == p->first_t && other < p->first)) {
		p->first = other;
		p->first_t = t;
	}
	return true;
}

/* The run explain follows upstream of node (read at time bound, in version when known), or 0. */
static uint64_t pick_producer(graph *g, uint64_t node, const st_node *rec, uint64_t bound, const char *version)
{
	int rc;
	if (nonempty(version) && NT(node) == NT_DATASET && rec != NULL) {
		char vid[ID_CAP];
		int n = co_lineage_id_dataset(vid, sizeof(vid), rec->namespace_, rec->name, version);
		uint64_t vnid, first;
		if (n > 0 && lookup(g, vid, (size_t)n, &vnid, &first) == 0 && first <= g->at) {
			producers p = {.bound = UINT64_MAX, .version = true};
			if ((rc = edges_each(g, vnid, true, producer_edge, &p)) != 0)
				set_err(g, rc);
			if (p.best != 0)
				return p.best;
		}
	}
	producers p = {.bound = bound};
	if ((rc = edges_each(g, node, true, producer_edge, &p)) != 0)
		set_err(g, rc);
	return p.best != 0 ? p.best : p.first;
}

static const char *version_of(st_ver **list, size_t n, uint64_t nid)
{
	for (size_t i = 0; i < n; i++)
		if (list[i]->node == nid)
			return list[i]->version;
	return NULL;
}

static json_t *versions_json(graph *g, st_ver **list, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++) {
		json_t *id = node_id_json(g, list[i]->node);
		if (json_is_string(id))
			set(o, json_string_value(id), jstr(list[i]->version));
		json_decref(id);
	}
	return o;
}

/* A facet object without its _producer / _schemaURL bookkeeping; NULL when nothing is left. */
static json_t *strip_meta(json_t *f)
{
	if (!json_is_object(f))
		return NULL;
	json_t *o = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(f, k, v)
	{
		if (k[0] != '_')
			json_object_set(o, k, v);
	}
	if (json_object_size(o) == 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static bool has_seed(const char *k)
{
	for (const char *p = k; *p != '\0'; p++)
		if (strncasecmp(p, "seed", 4) == 0)
			return true;
	return false;
}

static json_t *repro_json(graph *g, uint64_t run, const st_node *r)
{
	json_t *o = json_object();
	set(o, "code_url", jstr(r->code_url));
	set(o, "code_path", jstr(r->code_path));
	set(o, "code_version", jstr(r->code_version));
	set(o, "job_version",
	    r->job_version != 0 && version_known(g, run, r->job_version) ? node_id_json(g, r->job_version)
	                                                                 : json_null());
	json_t *params = NULL;
	static const char *const pnames[] = {"threadline_params", "parameters"};
	for (size_t i = 0; i < 2 && params == NULL; i++) {
		json_t *f = facet_get(g, run, pnames[i]);
		params = strip_meta(f);
		json_decref(f);
	}
	json_t *sf = facet_get(g, run, "threadline_seeds");
	json_t *seeds = strip_meta(sf);
	json_decref(sf);
	if (seeds == NULL && params != NULL) {
		const char *k;
		json_t *v;
		json_object_foreach(params, k, v)
		{
			if (has_seed(k)) {
				if (seeds == NULL)
					seeds = json_object();
				json_object_set(seeds, k, v);
			}
		}
	}
	json_t *env = NULL;
	json_t *ev = facet_get(g, run, "environmentVariables");
	json_t *list = json_object_get(ev, "environmentVariables");
	size_t i;
	json_t *item;
	json_array_foreach(list, i, item)
	{
		json_t *n = json_object_get(item, "name");
		if (json_is_string(n)) {
			if (env == NULL)
				env = json_object();
			json_t *val = json_object_get(item, "value");
			json_object_set(env, json_string_value(n), val != NULL ? val : json_null());
		}
	}
	json_decref(ev);
	json_t *pf = facet_get(g, run, "processing_engine");
	json_t *pe = strip_meta(pf);
	json_decref(pf);
	if (pe != NULL) {
		if (env == NULL)
			env = json_object();
		json_object_set_new(env, "processing_engine", pe);
	}
	set(o, "parameters", params);
	set(o, "seeds", seeds);
	set(o, "environment", env);
	set(o, "input_versions", versions_json(g, r->input_versions, r->n_input_versions));
	set(o, "output_versions", versions_json(g, r->output_versions, r->n_output_versions));
	return o;
}

typedef struct xctx {
	uint32_t run; /* index of the run being explained */
	uint32_t d;
	json_t *inputs, *outputs, *raw;
	uint32_t *rq; /* queue of run indexes */
	size_t rqh, rqt, rqcap;
} xctx;

static void push_run(graph *g, xctx *x, int64_t j)
{
	if (j < 0)
		return;
	if (x->rqt == x->rqcap) {
		size_t nc = x->rqcap ? x->rqcap * 2 : 64;
		uint32_t *nq = realloc(x->rq, nc * sizeof(*nq));
		if (nq == NULL) {
			set_err(g, -ENOMEM);
			return;
		}
		x->rq = nq;
		x->rqcap = nc;
	}
	x->rq[x->rqt++] = (uint32_t)j;
}

static bool explain_input(graph *g, void *ud, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	(void)group;
	xctx *x = ud;
	if (type != E_INPUT)
		return true;
	bool added;
	int64_t j = node_add(g, other, NULL, x->d + 1, &added);
	if (j == -1 || g->err != 0)
		return false;
	if (j < 0)
		return true;
	edge_add(g, (uint32_t)j, x->run, E_INPUT);
	json_array_append_new(x->inputs, jstr(qn_id(&g->n[j])));
	if (!added)
		return true;
	const st_node *r = g->n[x->run].rec;
	const char *ver = version_of(r->input_versions, r->n_input_versions, other);
	uint64_t p = pick_producer(g, other, g->n[j].rec, t, ver);
	if (p == 0) {
		json_array_append_new(x->raw, jstr(qn_id(&g->n[j])));
		return true;
	}
	bool padded;
	int64_t k = node_add(g, p, NULL, x->d + 2, &padded);
	if (k == -1)
		return false;
	if (k >= 0) {
		edge_add(g, (uint32_t)k, (uint32_t)j, E_OUTPUT);
		if (padded)
			push_run(g, x, k);
	}
	return !g->truncated && g->err == 0;
}

static bool explain_output(graph *g, void *ud, uint8_t type, uint64_t other, uint64_t t, uint64_t group)
{
	(void)group;
	(void)t;
	xctx *x = ud;
	if (type == E_OUTPUT)
		json_array_append_new(x->outputs, node_id_json(g, other));
	return true;
}

static void problem(json_t *problems, const char *node, const char *kind, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void problem(json_t *problems, const char *node, const char *kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *p = json_object();
	set(p, "node", jstr(node));
	set(p, "kind", json_string(kind));
	set(p, "message", jstr(msg));
	json_array_append_new(problems, p);
}

static void run_problem(graph *g, json_t *problems, const qn *x, const json_t *run)
{
	const char *state = json_string_value(json_object_get(run, "state"));
	const char *job = json_string_value(json_object_get(run, "job"));
	const char *err = json_string_value(json_object_get(run, "error"));
	const char *id = qn_id(x);
	char when[48] = "";
	const char *t = json_string_value(json_object_get(run, "ended_at"));
	if (t == NULL)
		t = json_string_value(json_object_get(run, "started_at"));
	snprintf(when, sizeof(when), "%s", t != NULL ? t : "an unknown time");
	(void)g;
	if (state == NULL)
		return;
	if (strcmp(state, "FAIL") == 0)
		problem(problems, id, "failed", "%s (%s) failed at %s%s%s", id, job != NULL ? job : "no job", when,
		        err != NULL ? ": " : "", err != NULL ? err : "");
	else if (strcmp(state, "ABORT") == 0)
		problem(problems, id, "aborted", "%s (%s) was aborted at %s%s%s", id, job != NULL ? job : "no job",
		        when, err != NULL ? ": " : "", err != NULL ? err : "");
	else if (strcmp(state, "START") == 0 || strcmp(state, "RUNNING") == 0)
		problem(problems, id, "running", "%s (%s) has not finished: %s since %s", id,
		        job != NULL ? job : "no job", state, when);
}

int co_lineage_explain(co_store *s, const co_lineage_explain_opts *o, tl_arena *arena, char **json, tl_errmsg *err)
{
	*json = NULL;
	const char *pid = o->prediction_id != NULL ? o->prediction_id : "";
	if (strncmp(pid, "prediction:", 11) == 0)
		pid += 11;
	size_t pl = strlen(pid);
	if (pl == 0)
		return tl_errf(err, TL_EINVALID, "explain: no prediction id");
	if (pl > CO_LINEAGE_ID_MAX)
		return tl_errf(err, TL_ELIMIT, "explain: the prediction id is %zu bytes, more than %d", pl,
		               CO_LINEAGE_ID_MAX);
	char norm[ID_CAP];
	co_lineage_id_prediction(norm, sizeof(norm), pid);
	co_lineage_id id = {.type = CO_LIN_PREDICTION, .name = pid, .name_len = pl};
	graph g;
	int rc = graph_init(&g, s, o->at_ns, o->max_nodes);
	if (rc != 0) {
		graph_fini(&g, s);
		return tl_errf(err, rc, "lineage: %s", tl_strerror(rc));
	}
	if ((rc = add_root(&g, &id, norm, strlen(norm), err)) != 0) {
		graph_fini(&g, s);
		return rc;
	}
	json_t *doc = json_object(), *runs = json_array(), *problems = json_array();
	xctx x = {.raw = json_array()};
	const st_pred *p = g.n[0].pred;
	json_t *pj = json_object();
	set(pj, "id", jstr(p->id));
	set(pj, "trace_id", jtrace(&p->trace_id));
	set(pj, "time", jtime(p->time));
	set(pj, "model", node_id_json(&g, p->model));
	set(pj, "input_digest", jstr(p->input_digest));
	set(pj, "output", jstr(p->output));
	set(pj, "deployment", jstr(p->deployment));
	set(doc, "prediction", pj);
	json_t *mj = json_null();
	bool added;
	int64_t mi = p->model != 0 ? node_add(&g, p->model, NULL, 1, &added) : -2;
	if (mi >= 0) {
		const st_node *m = g.n[mi].rec;
		edge_add(&g, (uint32_t)mi, 0, E_SERVED);
		uint64_t prod = pick_producer(&g, p->model, m, p->time, NULL);
		int64_t ri = prod != 0 ? node_add(&g, prod, NULL, 2, &added) : -2;
		mj = json_object();
		set(mj, "id", jstr(m->id));
		set(mj, "name", jstr(m->name));
		set(mj, "version", jstr(m->version));
		set(mj, "digest", jstr(m->digest));
		set(mj, "run", ri >= 0 ? jstr(qn_id(&g.n[ri])) : json_null());
		if (ri >= 0) {
			edge_add(&g, (uint32_t)ri, (uint32_t)mi, E_OUTPUT);
			push_run(&g, &x, ri);
		} else {
			problem(problems, m->id, "missing_producer", "%s: no known run produced this model version",
			        m->id);
		}
	} else {
		problem(problems, norm, "missing_producer", "%s names no known model version", norm);
	}
	set(doc, "model", mj);
	while (x.rqh < x.rqt && g.err == 0) {
		uint32_t ri = x.rq[x.rqh++];
		qn *rn = &g.n[ri];
		x.run = ri;
		x.d = rn->dist;
		x.inputs = json_array();
		x.outputs = json_array();
		json_t *rj = json_object();
		set(rj, "id", jstr(qn_id(rn)));
		run_fields(&g, rn->nid, rn->rec, rj);
		set(rj, "distance", json_integer(rn->dist));
		if (!g.truncated && (rc = edges_each(&g, rn->nid, true, explain_input, &x)) != 0)
			set_err(&g, rc);
		if ((rc = edges_each(&g, g.n[ri].nid, false, explain_output, &x)) != 0)
			set_err(&g, rc);
		rn = &g.n[ri]; /* node_add may have moved the table */
		set(rj, "inputs", x.inputs);
		set(rj, "outputs", x.outputs);
		set(rj, "reproducibility", repro_json(&g, rn->nid, rn->rec));
		run_problem(&g, problems, rn, rj);
		json_array_append_new(runs, rj);
	}
	set(doc, "runs", runs);
	set(doc, "raw_inputs", x.raw);
	set(doc, "problems", problems);
	set(doc, "truncated", json_boolean(g.truncated));
	set(doc, "edges", edges_json(&g));
	free(x.rq);
	rc = g.err;
	graph_fini(&g, s);
	if (rc != 0) {
		json_decref(doc);
		return tl_errf(err, rc, "lineage explain %s: %s", norm, tl_strerror(rc));
	}
	return finish(doc, arena, json, err);
}

int co_lineage_answer(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err)
{
	if (req->query_case == THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW && req->lineage_show != NULL) {
		const Threadline__V1__LineageShow *q = req->lineage_show;
		co_lineage_show_opts o = {.node_id = q->node_id, .depth = q->depth, .at_ns = q->at_unix_nano};
		switch (q->direction) {
		case THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_UPSTREAM:
			o.dir = CO_LIN_UPSTREAM;
			break;
		case THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_DOWNSTREAM:
			o.dir = CO_LIN_DOWNSTREAM;
			break;
		default:
			o.dir = CO_LIN_BOTH;
			break;
		}
		return co_lineage_show(s, &o, arena, json, err);
	}
	if (req->query_case == THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN && req->lineage_explain != NULL) {
		co_lineage_explain_opts o = {.prediction_id = req->lineage_explain->prediction_id,
		                             .at_ns = req->lineage_explain->at_unix_nano};
		return co_lineage_explain(s, &o, arena, json, err);
	}
	return tl_errf(err, TL_EUNSUPPORTED, "query: not a lineage query");
}

int co_lineage_counts_get(co_store *s, co_lineage_counts *out)
{
	memset(out, 0, sizeof(*out));
	const co_lineage_db *db = co_store_lineage_db(s);
	co_store_count m[] = {
	        {db->ids, &out->ids},         {db->nodes, &out->nodes},
	        {db->down, &out->edges_down}, {db->up, &out->edges_up},
	        {db->states, &out->states},   {db->facets, &out->facets},
	        {db->preds, &out->preds},     {db->model_preds, &out->model_preds},
	};
	return co_store_count_entries(s, m, sizeof(m) / sizeof(m[0]));
}
