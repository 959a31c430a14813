/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error analysis (co_errors.h): error groups with their impact, and the
 * explanation of one trace. Nothing here is stored: failed traces are found
 * with co_search, read one at a time into an arena that is reset per trace,
 * analysed with co_analyze, and the answer is built as a jansson document
 * that is serialized into the caller's arena at the end.
 *
 * The list keeps, per group, a few counters and strings; the impact sets
 * (predictions, models, deployments, runs) are (group, kind, value) pairs
 * in one array, deduped per trace as they are gathered and sorted once at
 * the end, so counting distinct values costs one sort whatever the number
 * of groups. Lineage is asked once per distinct run and model, after every
 * trace was read.
 */
#include "co_errors.h"

#include "co_index.h"
#include "co_lineage.h"
#include "tl_id.h"
#include "tl_ol.h"
#include "tl_time.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_CAP 512                     /* a model, deployment or run id built here; longer ones are skipped */
#define WALK_DEPTH 5                   /* downstream of a run */
#define WALK_NODES 1000                /* node cap of a run's walk */
#define MODEL_WALK_NODES 64            /* a model's walk: deployments come before predictions */
#define LINEAGE_MEM ((size_t)64 << 20) /* arena cap of one lineage answer read here */
#define WINDOW_STACK 192               /* pending halves of the window (64 bits of time: 2 per level) */

/* ---- small helpers ---- */

static bool is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static const char *nz(const char *s)
{
	return s != NULL ? s : "";
}

/* A JSON string; bytes that are not UTF-8 become '?'. Never NULL unless out of memory. */
static json_t *jstr(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	char *c = strdup(s);
	if (c == NULL)
		return NULL;
	for (char *p = c; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j;
}

/* A string, or null when empty. */
static json_t *jstr_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? jstr(s) : json_null();
}

/* Unix ns (or any u64) as a decimal string. */
static json_t *jns(uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	return json_string(b);
}

static json_t *jhex(const uint8_t *b, size_t n)
{
	if (n == 0 || n > 64)
		return json_null();
	char hex[129];
	tl_hex_encode(b, n, hex);
	return json_string(hex);
}

/* Sets o[k] = v (taking v), recording an allocation failure in *oom. */
static void set(json_t *o, const char *k, json_t *v, bool *oom)
{
	if (v == NULL || json_object_set_new(o, k, v) != 0)
		*oom = true;
}

static void push(json_t *a, json_t *v, bool *oom)
{
	if (v == NULL || json_array_append_new(a, v) != 0)
		*oom = true;
}

/* Serializes doc (taking it) NUL-terminated into arena. */
static int finish(json_t *doc, bool oom, tl_arena *arena, char **out, tl_errmsg *err)
{
	char *s = doc != NULL && !oom ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
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

/* A scalar attribute value as a string: strings as they are, numbers and booleans formatted into buf. */
static const char *any_str(const tl_pb_anyvalue *v, char *buf, size_t cap)
{
	if (v == NULL)
		return NULL;
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		return v->string_value;
	case TL_PB_ANY_INT:
		snprintf(buf, cap, "%" PRId64, v->int_value);
		return buf;
	case TL_PB_ANY_DOUBLE:
		snprintf(buf, cap, "%.17g", v->double_value);
		return buf;
	case TL_PB_ANY_BOOL:
		snprintf(buf, cap, "%s", v->bool_value ? "true" : "false");
		return buf;
	default:
		return NULL;
	}
}

static const tl_pb_anyvalue *attr_get(tl_pb_keyvalue *const *kvs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (kvs[i] != NULL && kvs[i]->key != NULL && strcmp(kvs[i]->key, key) == 0)
			return kvs[i]->value;
	return NULL;
}

static const char *attr_string(tl_pb_keyvalue *const *kvs, size_t n, const char *key)
{
	const tl_pb_anyvalue *v = attr_get(kvs, n, key);
	return v != NULL && v->value_case == TL_PB_ANY_STRING ? v->string_value : NULL;
}

/* ---- fingerprints ---- */

/* Output of the normaliser: whole tokens only, a pending space between them. */
typedef struct nout {
	char *b;
	size_t n, cap; /* cap excludes the NUL */
	bool space, full;
} nout;

static void nput(nout *o, const char *s, size_t n)
{
	if (o->full)
		return;
	size_t need = n + (o->space && o->n > 0 ? 1 : 0);
	if (o->n + need > o->cap) {
		o->full = true;
		return;
	}
	if (o->space && o->n > 0)
		o->b[o->n++] = ' ';
	o->space = false;
	memcpy(o->b + o->n, s, n);
	o->n += n;
}

/* The length of the UTF-8 sequence that starts with byte c (1 for anything unexpected). */
static size_t utf8_len(unsigned char c)
{
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	if (c >= 0xe0)
		return c <= 0xef ? 3 : 1;
	if (c >= 0xc2)
		return 2;
	return 1;
}

/* Whether s[0..len) starts with a UUID (8-4-4-4-12 hex digits) ending a word. */
static bool is_uuid_at(const char *s, size_t len)
{
	static const size_t groups[] = {8, 4, 4, 4, 12};
	if (len < 36)
		return false;
	size_t k = 0;
	for (size_t g = 0; g < 5; g++) {
		for (size_t i = 0; i < groups[g]; i++)
			if (!is_hex((unsigned char)s[k++]))
				return false;
		if (g < 4 && s[k++] != '-')
			return false;
	}
	return len == 36 || !is_alnum((unsigned char)s[36]);
}

/* Whether the word w[0..n) is an id: 0x and hex digits, or >= 8 hex digits with a digit and a letter. */
static bool is_hex_id(const char *w, size_t n)
{
	if (n > 2 && w[0] == '0' && (w[1] == 'x' || w[1] == 'X')) {
		for (size_t i = 2; i < n; i++)
			if (!is_hex((unsigned char)w[i]))
				return false;
		return true;
	}
	if (n < 8)
		return false;
	bool digit = false, letter = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)w[i];
		if (!is_hex(c))
			return false;
		if (is_digit(c))
			digit = true;
		else
			letter = true;
	}
	return digit && letter;
}

size_t co_errors_normalize(const char *msg, size_t len, char *out, size_t cap)
{
	if (cap == 0)
		return 0;
	nout o = {.b = out, .cap = cap - 1 < CO_ERRORS_MSG_MAX ? cap - 1 : CO_ERRORS_MSG_MAX};
	if (msg == NULL)
		len = 0;
	size_t i = 0;
	while (i < len && !o.full) {
		unsigned char c = (unsigned char)msg[i];
		if (c <= 0x20 || c == 0x7f) {
			o.space = true;
			i++;
			continue;
		}
		bool boundary = i == 0 || !is_alnum((unsigned char)msg[i - 1]);
		if ((c == '\'' || c == '"' || c == '`') && boundary) {
			size_t j = i + 1;
			while (j < len &&
			       !(msg[j] == (char)c && (j + 1 == len || !is_alnum((unsigned char)msg[j + 1]))))
				j++;
			if (j < len) {
				nput(&o, "<s>", 3);
				i = j + 1;
				continue;
			}
		}
		if (is_alnum(c) && boundary) {
			if (is_uuid_at(msg + i, len - i)) {
				nput(&o, "<id>", 4);
				i += 36;
				continue;
			}
			size_t e = i;
			while (e < len && is_alnum((unsigned char)msg[e]))
				e++;
			if (is_hex_id(msg + i, e - i)) {
				nput(&o, "<id>", 4);
				i = e;
				continue;
			}
		}
		if (is_digit(c)) {
			while (i < len && is_digit((unsigned char)msg[i]))
				i++;
			if (i + 1 < len && msg[i] == '.' && is_digit((unsigned char)msg[i + 1])) {
				i++;
				while (i < len && is_digit((unsigned char)msg[i]))
					i++;
			}
			nput(&o, "<n>", 3);
			continue;
		}
		size_t n = utf8_len(c);
		if (i + n > len)
			n = len - i;
		nput(&o, msg + i, n);
		i += n;
	}
	out[o.n] = '\0';
	return o.n;
}

void co_errors_exception(const tl_pb_span *sp, const char **type, const char **message)
{
	*type = NULL;
	*message = NULL;
	for (size_t i = sp->n_events; i-- > 0;) {
		const tl_pb_event *ev = sp->events[i];
		if (ev == NULL || ev->name == NULL || strcmp(ev->name, "exception") != 0)
			continue;
		const char *t = attr_string(ev->attributes, ev->n_attributes, "exception.type");
		const char *m = attr_string(ev->attributes, ev->n_attributes, "exception.message");
		if (t != NULL || m != NULL) {
			*type = nz(t);
			*message = nz(m);
			return;
		}
	}
	*type = nz(attr_string(sp->attributes, sp->n_attributes, "error.type"));
	*message = sp->status != NULL ? nz(sp->status->message) : "";
}

void co_errors_fingerprint_id(const char *service, const char *operation, const char *type, const char *normalized,
                              char id[17])
{
	const char *parts[4] = {nz(service), nz(operation), nz(type), nz(normalized)};
	crypto_generichash_state h;
	uint8_t d[8];
	crypto_generichash_init(&h, NULL, 0, sizeof(d));
	for (size_t i = 0; i < 4; i++)
		crypto_generichash_update(&h, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
	crypto_generichash_final(&h, d, sizeof(d));
	tl_hex_encode(d, sizeof(d), id);
}

/* A span's fingerprint parts; norm is the caller's buffer. */
typedef struct fprint {
	const char *service, *operation, *type, *message;
	char norm[CO_ERRORS_MSG_MAX + 1];
} fprint;

static void fprint_of(const co_an_span *as, fprint *f)
{
	f->service = nz(as->service);
	f->operation = nz(as->span->name);
	co_errors_exception(as->span, &f->type, &f->message);
	co_errors_normalize(f->message, strlen(f->message), f->norm, sizeof(f->norm));
}

static bool fprint_eq(const fprint *a, const fprint *b)
{
	return strcmp(a->service, b->service) == 0 && strcmp(a->operation, b->operation) == 0 &&
	       strcmp(a->type, b->type) == 0 && strcmp(a->norm, b->norm) == 0;
}

/* ---- span JSON (explain) ---- */

static const char *const kind_names[] = {"UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"};

static const char *status_name(const tl_pb_span *sp)
{
	if (sp->status == NULL)
		return "UNSET";
	switch (sp->status->code) {
	case TL_PB_STATUS_OK:
		return "OK";
	case TL_PB_STATUS_ERROR:
		return "ERROR";
	default:
		return "UNSET";
	}
}

/* One hop of a chain: the span's identity, status, exception and timing. */
static json_t *hop_json(const co_analysis *an, size_t i, bool *oom)
{
	const co_an_span *as = &an->spans[i];
	const tl_pb_span *sp = as->span;
	json_t *o = json_object();
	if (o == NULL) {
		*oom = true;
		return NULL;
	}
	const char *type, *message;
	co_errors_exception(sp, &type, &message);
	bool failed = co_an_is_error(sp);
	set(o, "span_id", jhex(sp->span_id.data, sp->span_id.len), oom);
	set(o, "parent_span_id", jhex(sp->parent_span_id.data, sp->parent_span_id.len), oom);
	set(o, "service", jstr(as->service), oom);
	set(o, "operation", jstr(nz(sp->name)), oom);
	set(o, "kind", json_string(sp->kind >= 0 && sp->kind < 6 ? kind_names[sp->kind] : "UNSPECIFIED"), oom);
	set(o, "status", json_string(status_name(sp)), oom);
	set(o, "status_message", jstr_or_null(sp->status != NULL ? sp->status->message : NULL), oom);
	set(o, "exception_type", jstr_or_null(failed ? type : NULL), oom);
	set(o, "exception_message", jstr_or_null(failed ? message : NULL), oom);
	set(o, "start_unix_nano", jns(sp->start_time_unix_nano), oom);
	set(o, "duration_nano", jns(co_an_duration(sp)), oom);
	set(o, "failed", json_boolean(failed), oom);
	set(o, "root_cause", json_boolean((as->flags & CO_AN_CAUSE) != 0), oom);
	set(o, "missing_parent", json_boolean((as->flags & CO_AN_ORPHAN) != 0), oom);
	return o;
}

static const char *outcome_name(co_an_outcome o)
{
	return o == CO_AN_FAILED ? "failed" : o == CO_AN_RECOVERED ? "recovered" : "ok";
}

/* Sets outcome, root_cause, fingerprint and chain of an analysed trace on o. */
static void trace_fields(json_t *o, const co_analysis *an, bool *oom)
{
	set(o, "outcome", json_string(outcome_name(an->outcome)), oom);
	json_t *chain = json_array();
	if (chain == NULL)
		*oom = true;
	for (size_t k = 0; chain != NULL && k < an->n_cause_chain; k++)
		push(chain, hop_json(an, an->cause_chain[k], oom), oom);
	if (an->cause != CO_AN_NONE) {
		set(o, "root_cause", hop_json(an, an->cause, oom), oom);
		fprint f;
		fprint_of(&an->spans[an->cause], &f);
		char id[17];
		co_errors_fingerprint_id(f.service, f.operation, f.type, f.norm, id);
		json_t *fp = json_object();
		if (fp != NULL) {
			set(fp, "id", json_string(id), oom);
			set(fp, "service", jstr(f.service), oom);
			set(fp, "operation", jstr(f.operation), oom);
			set(fp, "exception_type", jstr(f.type), oom);
			set(fp, "message", jstr(f.norm), oom);
		}
		set(o, "fingerprint", fp, oom);
	} else {
		set(o, "root_cause", json_null(), oom);
		set(o, "fingerprint", json_null(), oom);
	}
	set(o, "chain", chain, oom);
}

/* ---- error groups ---- */

enum { K_PRED, K_MODEL, K_DEP, K_RUN, K_COUNT };

typedef struct pair {
	uint32_t group;
	uint32_t kind;
	const char *s; /* in the list's arena */
} pair;

typedef struct group {
	char id[17];
	uint64_t hash;
	const char *service, *operation, *type, *norm, *sample;
	size_t traces, spans, failed, recovered;
	uint64_t first, last;
	uint8_t samples[CO_ERRORS_SAMPLES][16];
	size_t nsamples;
	size_t count[K_COUNT];                  /* distinct impact values, filled at the end */
	size_t ids_at[K_COUNT], ids_n[K_COUNT]; /* the first shown ids in the sorted pairs */
} group;

/* What one lineage walk found downstream of a run or model. */
typedef struct lres {
	const char *id;
	const char **models, **deps;
	size_t nm, nd;
} lres;

typedef struct lctx {
	co_store *s;
	tl_arena ga; /* strings kept for the answer: group names, impact values, lineage results */
	tl_arena ta; /* one trace at a time */
	tl_arena la; /* one lineage answer at a time */
	group *g;
	size_t ng, capg;
	uint32_t *gh; /* open addressing: group index + 1 */
	size_t ghcap;
	pair *p;
	size_t np, capp;
	uint8_t (*seen)[16]; /* trace ids read, open addressing (all-zero: empty) */
	size_t nseen, capseen;
	bool zero_seen; /* the all-zero trace id (never valid, but kept apart from "empty") */
	size_t read;
	size_t walks;
	bool partial;
	tl_errmsg *err;
} lctx;

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

static uint64_t id_hash(const uint8_t id[16])
{
	uint64_t a, b;
	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	return mix64(a ^ mix64(b));
}

/* Adds a trace id to the seen set. Returns 1 when new, 0 when seen before, -ENOMEM. */
static int seen_add(lctx *c, const uint8_t id[16])
{
	static const uint8_t zero[16];
	if (memcmp(id, zero, 16) == 0) {
		bool was = c->zero_seen;
		c->zero_seen = true;
		return was ? 0 : 1;
	}
	if ((c->nseen + 1) * 2 > c->capseen) {
		size_t nc = c->capseen ? c->capseen * 2 : 1024;
		uint8_t(*ns)[16] = calloc(nc, 16);
		if (ns == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < c->capseen; i++) {
			if (memcmp(c->seen[i], zero, 16) == 0)
				continue;
			size_t k = (size_t)id_hash(c->seen[i]) & (nc - 1);
			while (memcmp(ns[k], zero, 16) != 0)
				k = (k + 1) & (nc - 1);
			memcpy(ns[k], c->seen[i], 16);
		}
		free(c->seen);
		c->seen = ns;
		c->capseen = nc;
	}
	size_t k = (size_t)id_hash(id) & (c->capseen - 1);
	while (memcmp(c->seen[k], zero, 16) != 0) {
		if (memcmp(c->seen[k], id, 16) == 0)
			return 0;
		k = (k + 1) & (c->capseen - 1);
	}
	memcpy(c->seen[k], id, 16);
	c->nseen++;
	return 1;
}

static const char *keep(lctx *c, const char *s)
{
	return tl_arena_strndup(&c->ga, s, strlen(s));
}

static uint64_t fp_hash(const char id[17])
{
	uint8_t b[8];
	tl_hex_decode(id, 16, b, 8);
	uint64_t h;
	memcpy(&h, b, 8);
	return h;
}

/* The group of fingerprint f (created when new). Returns its index, or -ENOMEM. */
static int64_t group_of(lctx *c, const fprint *f)
{
	char id[17];
	co_errors_fingerprint_id(f->service, f->operation, f->type, f->norm, id);
	uint64_t h = fp_hash(id);
	if (c->ghcap != 0) {
		size_t k = (size_t)mix64(h) & (c->ghcap - 1);
		while (c->gh[k] != 0) {
			group *g = &c->g[c->gh[k] - 1];
			if (g->hash == h && strcmp(g->service, f->service) == 0 &&
			    strcmp(g->operation, f->operation) == 0 && strcmp(g->type, f->type) == 0 &&
			    strcmp(g->norm, f->norm) == 0)
				return (int64_t)(c->gh[k] - 1);
			k = (k + 1) & (c->ghcap - 1);
		}
	}
	if (c->ng == c->capg) {
		size_t nc = c->capg ? c->capg * 2 : 64;
		group *ng = realloc(c->g, nc * sizeof(*ng));
		if (ng == NULL)
			return -ENOMEM;
		c->g = ng;
		c->capg = nc;
	}
	if ((c->ng + 1) * 2 > c->ghcap) {
		size_t nc = c->ghcap ? c->ghcap * 2 : 128;
		uint32_t *nh = calloc(nc, sizeof(*nh));
		if (nh == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < c->ng; i++) {
			size_t k = (size_t)mix64(c->g[i].hash) & (nc - 1);
			while (nh[k] != 0)
				k = (k + 1) & (nc - 1);
			nh[k] = (uint32_t)(i + 1);
		}
		free(c->gh);
		c->gh = nh;
		c->ghcap = nc;
	}
	group *g = &c->g[c->ng];
	memset(g, 0, sizeof(*g));
	memcpy(g->id, id, sizeof(g->id));
	g->hash = h;
	g->service = keep(c, f->service);
	g->operation = keep(c, f->operation);
	g->type = keep(c, f->type);
	g->norm = keep(c, f->norm);
	char sample[CO_ERRORS_MSG_MAX + 1];
	size_t n = strlen(f->message);
	if (n > CO_ERRORS_MSG_MAX) {
		n = CO_ERRORS_MSG_MAX;
		while (n > 0 && ((unsigned char)f->message[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(sample, f->message, n);
	sample[n] = '\0';
	g->sample = keep(c, sample);
	if (g->service == NULL || g->operation == NULL || g->type == NULL || g->norm == NULL || g->sample == NULL)
		return -ENOMEM;
	g->first = UINT64_MAX;
	size_t k = (size_t)mix64(h) & (c->ghcap - 1);
	while (c->gh[k] != 0)
		k = (k + 1) & (c->ghcap - 1);
	c->gh[k] = (uint32_t)(c->ng + 1);
	return (int64_t)c->ng++;
}

/* Adds an impact pair. capped: counts against CO_ERRORS_IMPACT_MAX. Returns 0 or -ENOMEM. */
static int pair_add(lctx *c, uint32_t gi, uint32_t kind, const char *s, bool capped)
{
	if (capped && c->np >= CO_ERRORS_IMPACT_MAX) {
		c->partial = true;
		return 0;
	}
	if (c->np == c->capp) {
		size_t nc = c->capp ? c->capp * 2 : 256;
		pair *np = realloc(c->p, nc * sizeof(*np));
		if (np == NULL)
			return -ENOMEM;
		c->p = np;
		c->capp = nc;
	}
	const char *k = keep(c, s);
	if (k == NULL)
		return -ENOMEM;
	c->p[c->np++] = (pair){gi, kind, k};
	return 0;
}

static int cmp_pair(const void *x, const void *y)
{
	const pair *a = x, *b = y;
	if (a->group != b->group)
		return a->group < b->group ? -1 : 1;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	return strcmp(a->s, b->s);
}

/* Sorts p[from..np) and drops repeats there. */
static void pairs_unique(lctx *c, size_t from)
{
	size_t n = c->np - from;
	if (n < 2)
		return;
	qsort(c->p + from, n, sizeof(*c->p), cmp_pair);
	size_t w = from + 1;
	for (size_t r = from + 1; r < c->np; r++)
		if (cmp_pair(&c->p[r], &c->p[w - 1]) != 0)
			c->p[w++] = c->p[r];
	c->np = w;
}

/* The impact values one span names: its prediction, model version, deployment and run. */
static int span_impact(lctx *c, uint32_t gi, const tl_pb_span *sp)
{
	const char *pred = NULL, *mname = NULL, *dep = NULL, *run = NULL;
	const tl_pb_anyvalue *mver = NULL, *pv = NULL;
	for (size_t i = 0; i < sp->n_attributes; i++) {
		const tl_pb_keyvalue *kv = sp->attributes[i];
		if (kv == NULL || kv->key == NULL || kv->value == NULL)
			continue;
		const char *k = kv->key;
		if (strncmp(k, "ml.", 3) == 0) {
			k += 3;
			if (strcmp(k, "prediction.id") == 0)
				pv = kv->value;
			else if (strcmp(k, "model.name") == 0 && kv->value->value_case == TL_PB_ANY_STRING)
				mname = kv->value->string_value;
			else if (strcmp(k, "model.version") == 0)
				mver = kv->value;
			else if (strcmp(k, "deployment") == 0 && kv->value->value_case == TL_PB_ANY_STRING)
				dep = kv->value->string_value;
		} else if (strcmp(k, "lineage.run_id") == 0 && kv->value->value_case == TL_PB_ANY_STRING) {
			run = kv->value->string_value;
		}
	}
	char b1[64], b2[64], id[ID_CAP];
	int rc = 0;
	pred = any_str(pv, b1, sizeof(b1));
	if (pred != NULL && pred[0] != '\0')
		rc = pair_add(c, gi, K_PRED, pred, true);
	const char *ver = any_str(mver, b2, sizeof(b2));
	if (rc == 0 && mname != NULL && mname[0] != '\0' && ver != NULL && ver[0] != '\0' &&
	    co_lineage_id_model(id, sizeof(id), mname, ver) > 0)
		rc = pair_add(c, gi, K_MODEL, id, true);
	if (rc == 0 && dep != NULL && dep[0] != '\0' && co_lineage_id_deployment(id, sizeof(id), dep) > 0)
		rc = pair_add(c, gi, K_DEP, id, true);
	uint8_t rid[16];
	if (rc == 0 && run != NULL && tl_ol_uuid_parse(run, rid) == 0 && co_lineage_id_run(id, sizeof(id), rid) > 0)
		rc = pair_add(c, gi, K_RUN, id, true);
	return rc;
}

/* Reads, analyses and counts one failed trace. Returns 0 or a fatal error (err set). */
static int take_trace(lctx *c, const uint8_t tid[16])
{
	tl_arena_reset(&c->ta);
	tl_pb_trace_result *res = NULL;
	int rc = co_store_get_trace(c->s, tid, &c->ta, &res);
	if (rc == TL_ENOTFOUND)
		return 0; /* gone since the index answered (retention) */
	if (rc == TL_ELIMIT || rc == TL_ECORRUPT) {
		c->partial = true;
		return 0;
	}
	if (rc != 0) {
		char hex[33];
		tl_hex_encode(tid, 16, hex);
		return tl_errf(c->err, rc, "errors: reading trace %s: %s", hex, tl_strerror(rc));
	}
	co_analysis *an = NULL;
	if ((rc = co_analyze(res, &an)) != 0) {
		if (rc == TL_ELIMIT) {
			c->partial = true;
			return 0;
		}
		return tl_errf(c->err, rc, "errors: analysing a trace: %s", tl_strerror(rc));
	}
	c->read++;
	if (an->cause == CO_AN_NONE) {
		co_analysis_free(an);
		return 0;
	}
	fprint *f = malloc(2 * sizeof(*f));
	if (f == NULL) {
		co_analysis_free(an);
		return tl_errf(c->err, -ENOMEM, "out of memory");
	}
	fprint_of(&an->spans[an->cause], &f[0]);
	int64_t gi = group_of(c, &f[0]);
	if (gi < 0) {
		free(f);
		co_analysis_free(an);
		return tl_errf(c->err, (int)gi, "out of memory");
	}
	group *g = &c->g[gi];
	g->traces++;
	if (an->outcome == CO_AN_RECOVERED)
		g->recovered++;
	else
		g->failed++;
	if (g->nsamples < CO_ERRORS_SAMPLES)
		memcpy(g->samples[g->nsamples++], tid, 16);
	/* Cause spans: every failing span without a failing descendant that has the group's fingerprint. */
	for (size_t i = 0; i < an->count; i++) {
		const co_an_span *as = &an->spans[i];
		if ((as->flags & (CO_AN_ERROR | CO_AN_ERROR_BELOW)) != CO_AN_ERROR)
			continue;
		if (i != an->cause) {
			fprint_of(as, &f[1]);
			if (!fprint_eq(&f[0], &f[1]))
				continue;
		}
		g->spans++;
		uint64_t t = as->span->start_time_unix_nano;
		if (t < g->first)
			g->first = t;
		if (t > g->last)
			g->last = t;
	}
	free(f);
	size_t from = c->np;
	for (size_t i = 0; i < an->count && rc == 0; i++)
		rc = span_impact(c, (uint32_t)gi, an->spans[i].span);
	co_analysis_free(an);
	if (rc != 0)
		return tl_errf(c->err, rc, "out of memory");
	pairs_unique(c, from);
	return 0;
}

typedef struct window {
	uint64_t from, to;
} window;

/* Finds failed traces in [since, until) with co_search, newest halves first, and takes each once. */
static int gather(lctx *c, uint64_t since, uint64_t until, size_t max_traces, size_t page)
{
	window st[WINDOW_STACK];
	size_t n = 0;
	st[n++] = (window){since, until};
	tl_arena sa;
	tl_arena_init(&sa, (size_t)64 << 10, 0);
	int rc = 0;
	bool stop = false;
	while (n > 0 && !stop && rc == 0) {
		window w = st[--n];
		if (w.from >= w.to)
			continue;
		tl_arena_reset(&sa);
		co_search_query q = {.from_ns = w.from, .to_ns = w.to, .error_only = true, .limit = page};
		co_search_result r;
		tl_errmsg e = {{0}};
		if ((rc = co_search(c->s, &q, &sa, &r, &e)) != 0) {
			rc = tl_errf(c->err, rc, "errors: %s", e.msg[0] ? e.msg : tl_strerror(rc));
			break;
		}
		bool full = r.n >= page || r.partial;
		if (full && w.to - w.from >= 2 && n + 2 <= WINDOW_STACK) {
			uint64_t mid = w.from + (w.to - w.from) / 2;
			st[n++] = (window){w.from, mid}; /* older half: popped after the newer one */
			st[n++] = (window){mid, w.to};
			continue;
		}
		if (full)
			c->partial = true; /* cannot split further: some traces of this window may be missing */
		for (size_t i = 0; i < r.n && rc == 0; i++) {
			int fresh = seen_add(c, r.traces[i].trace_id);
			if (fresh < 0) {
				rc = tl_errf(c->err, fresh, "out of memory");
				break;
			}
			if (fresh == 0)
				continue;
			if (c->nseen + (c->zero_seen ? 1 : 0) > max_traces) {
				c->partial = true;
				stop = true;
				break;
			}
			rc = take_trace(c, r.traces[i].trace_id);
		}
	}
	tl_arena_fini(&sa);
	return rc;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int cmp_lres(const void *x, const void *y)
{
	return strcmp(((const lres *)x)->id, ((const lres *)y)->id);
}

static lres *lres_find(lres *v, size_t n, const char *id)
{
	lres key = {.id = id};
	return n > 0 ? bsearch(&key, v, n, sizeof(*v), cmp_lres) : NULL;
}

/*
 * Walks downstream of node id (a run: WALK_DEPTH edges; a model: one) and
 * records the model and deployment nodes found in *r (strings in ga).
 * Returns 0 (an unknown node finds nothing) or a fatal error.
 */
static int walk_one(lctx *c, const char *id, bool model, lres *r)
{
	r->id = id;
	if (c->walks >= CO_ERRORS_LINEAGE_WALKS) {
		c->partial = true;
		return 0;
	}
	c->walks++;
	tl_arena_reset(&c->la);
	co_lineage_show_opts o = {.node_id = id,
	                          .dir = CO_LIN_DOWNSTREAM,
	                          .depth = model ? 1 : WALK_DEPTH,
	                          .max_nodes = model ? MODEL_WALK_NODES : WALK_NODES};
	char *js = NULL;
	tl_errmsg e = {{0}};
	int rc = co_lineage_show(c->s, &o, &c->la, &js, &e);
	if (rc == TL_ENOTFOUND || rc == TL_EINVALID)
		return 0;
	if (rc == TL_ELIMIT) {
		c->partial = true;
		return 0;
	}
	if (rc != 0)
		return tl_errf(c->err, rc, "errors: lineage of %s: %s", id, e.msg[0] ? e.msg : tl_strerror(rc));
	json_t *doc = json_loads(js, 0, NULL);
	const json_t *nodes = json_object_get(doc, "nodes");
	size_t nn = json_array_size(nodes);
	r->models = tl_arena_alloc(&c->ga, (nn ? nn : 1) * sizeof(*r->models));
	r->deps = tl_arena_alloc(&c->ga, (nn ? nn : 1) * sizeof(*r->deps));
	if (doc == NULL || r->models == NULL || r->deps == NULL) {
		json_decref(doc);
		return tl_errf(c->err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < nn; i++) {
		const json_t *n = json_array_get(nodes, i);
		const char *t = json_string_value(json_object_get(n, "type"));
		const char *nid = json_string_value(json_object_get(n, "id"));
		if (t == NULL || nid == NULL || strcmp(nid, id) == 0)
			continue;
		bool is_model = strcmp(t, "model") == 0, is_dep = strcmp(t, "deployment") == 0;
		if (!is_model && !is_dep)
			continue;
		const char *k = keep(c, nid);
		if (k == NULL) {
			json_decref(doc);
			return tl_errf(c->err, -ENOMEM, "out of memory");
		}
		if (is_model)
			r->models[r->nm++] = k;
		else
			r->deps[r->nd++] = k;
	}
	if (json_is_true(json_object_get(doc, "truncated")))
		c->partial = true;
	json_decref(doc);
	return 0;
}

/* Distinct values of one kind among the pairs (and extra[0..nextra)), sorted, as lres entries. */
static int distinct_of(lctx *c, uint32_t kind, lres **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cnt = 0;
	for (size_t i = 0; i < c->np; i++)
		cnt += c->p[i].kind == kind;
	if (cnt == 0)
		return 0;
	const char **v = malloc(cnt * sizeof(*v));
	lres *r = calloc(cnt, sizeof(*r));
	if (v == NULL || r == NULL) {
		free(v);
		free(r);
		return -ENOMEM;
	}
	size_t k = 0;
	for (size_t i = 0; i < c->np; i++)
		if (c->p[i].kind == kind)
			v[k++] = c->p[i].s;
	qsort(v, cnt, sizeof(*v), cmp_str);
	size_t m = 0;
	for (size_t i = 0; i < cnt; i++)
		if (m == 0 || strcmp(v[i], r[m - 1].id) != 0)
			r[m++].id = v[i];
	free(v);
	*out = r;
	*n = m;
	return 0;
}

/*
 * The lineage part of the impact: models and deployments downstream of the
 * groups' runs, then the deployments of every model (named by spans or
 * found downstream). Adds them to the pairs.
 */
static int lineage_impact(lctx *c)
{
	lres *runs = NULL, *models = NULL;
	size_t nr = 0, nm = 0;
	int rc = distinct_of(c, K_RUN, &runs, &nr);
	if (rc != 0)
		return tl_errf(c->err, rc, "out of memory");
	for (size_t i = 0; i < nr && rc == 0; i++)
		rc = walk_one(c, runs[i].id, false, &runs[i]);
	size_t n0 = c->np;
	for (size_t i = 0; i < n0 && rc == 0; i++) {
		if (c->p[i].kind != K_RUN)
			continue;
		const lres *r = lres_find(runs, nr, c->p[i].s);
		uint32_t g = c->p[i].group;
		for (size_t k = 0; r != NULL && k < r->nm && rc == 0; k++)
			rc = pair_add(c, g, K_MODEL, r->models[k], false);
		for (size_t k = 0; r != NULL && k < r->nd && rc == 0; k++)
			rc = pair_add(c, g, K_DEP, r->deps[k], false);
	}
	free(runs);
	if (rc != 0)
		return rc == -ENOMEM ? tl_errf(c->err, rc, "out of memory") : rc;
	pairs_unique(c, 0);
	if ((rc = distinct_of(c, K_MODEL, &models, &nm)) != 0)
		return tl_errf(c->err, rc, "out of memory");
	for (size_t i = 0; i < nm && rc == 0; i++)
		rc = walk_one(c, models[i].id, true, &models[i]);
	n0 = c->np;
	for (size_t i = 0; i < n0 && rc == 0; i++) {
		if (c->p[i].kind != K_MODEL)
			continue;
		const lres *r = lres_find(models, nm, c->p[i].s);
		for (size_t k = 0; r != NULL && k < r->nd && rc == 0; k++)
			rc = pair_add(c, c->p[i].group, K_DEP, r->deps[k], false);
	}
	free(models);
	if (rc != 0)
		return rc == -ENOMEM ? tl_errf(c->err, rc, "out of memory") : rc;
	pairs_unique(c, 0);
	return 0;
}

/* Ranking: predictions, traces, cause spans (all descending), the latest last seen, then the id. */
static int cmp_rank(const void *x, const void *y, void *ud)
{
	const group *g = ud, *a = &g[*(const size_t *)x], *b = &g[*(const size_t *)y];
	if (a->count[K_PRED] != b->count[K_PRED])
		return a->count[K_PRED] > b->count[K_PRED] ? -1 : 1;
	if (a->traces != b->traces)
		return a->traces > b->traces ? -1 : 1;
	if (a->spans != b->spans)
		return a->spans > b->spans ? -1 : 1;
	if (a->last != b->last)
		return a->last > b->last ? -1 : 1;
	return strcmp(a->id, b->id);
}

static json_t *id_set_json(const lctx *c, const group *g, unsigned kind, bool *oom)
{
	json_t *o = json_object(), *ids = json_array();
	if (o == NULL || ids == NULL) {
		json_decref(o);
		json_decref(ids);
		*oom = true;
		return NULL;
	}
	set(o, "count", json_integer((json_int_t)g->count[kind]), oom);
	for (size_t k = 0; k < g->ids_n[kind]; k++)
		push(ids, jstr(c->p[g->ids_at[kind] + k].s), oom);
	set(o, "ids", ids, oom);
	return o;
}

static json_t *group_json(const lctx *c, const group *g, bool *oom)
{
	json_t *o = json_object();
	if (o == NULL) {
		*oom = true;
		return NULL;
	}
	set(o, "id", json_string(g->id), oom);
	set(o, "service", jstr(g->service), oom);
	set(o, "operation", jstr(g->operation), oom);
	set(o, "exception_type", jstr(g->type), oom);
	set(o, "message", jstr(g->norm), oom);
	set(o, "sample_message", jstr(g->sample), oom);
	set(o, "traces", json_integer((json_int_t)g->traces), oom);
	set(o, "cause_spans", json_integer((json_int_t)g->spans), oom);
	set(o, "first_seen_unix_nano", jns(g->first != UINT64_MAX ? g->first : 0), oom);
	set(o, "last_seen_unix_nano", jns(g->last), oom);
	json_t *oc = json_object();
	if (oc != NULL) {
		set(oc, "failed", json_integer((json_int_t)g->failed), oom);
		set(oc, "recovered", json_integer((json_int_t)g->recovered), oom);
	}
	set(o, "outcomes", oc, oom);
	json_t *samples = json_array();
	for (size_t k = 0; samples != NULL && k < g->nsamples; k++)
		push(samples, jhex(g->samples[k], 16), oom);
	set(o, "sample_trace_ids", samples, oom);
	json_t *im = json_object();
	if (im != NULL) {
		set(im, "traces", json_integer((json_int_t)g->traces), oom);
		set(im, "predictions", json_integer((json_int_t)g->count[K_PRED]), oom);
		set(im, "models", id_set_json(c, g, K_MODEL, oom), oom);
		set(im, "deployments", id_set_json(c, g, K_DEP, oom), oom);
		set(im, "runs", id_set_json(c, g, K_RUN, oom), oom);
	}
	set(o, "impact", im, oom);
	return o;
}

static void lctx_fini(lctx *c)
{
	tl_arena_fini(&c->ga);
	tl_arena_fini(&c->ta);
	tl_arena_fini(&c->la);
	free(c->g);
	free(c->gh);
	free(c->p);
	free(c->seen);
}

int co_errors_list(co_store *s, const co_errors_opts *o, tl_arena *arena, char **json, tl_errmsg *err)
{
	*json = NULL;
	uint64_t until = o->until_ns != 0 ? o->until_ns : tl_now_ns();
	uint64_t since = o->since_ns;
	if (since == 0)
		since = until > CO_ERRORS_WINDOW_NS ? until - CO_ERRORS_WINDOW_NS : 1;
	if (since > until)
		return tl_errf(err, TL_EINVALID, "since_unix_nano (%" PRIu64 ") is after until_unix_nano (%" PRIu64 ")",
		               since, until);
	size_t limit = o->limit == 0                    ? CO_ERRORS_LIMIT_DEFAULT
	               : o->limit > CO_ERRORS_LIMIT_MAX ? CO_ERRORS_LIMIT_MAX
	                                                : o->limit;
	size_t max_traces = o->max_traces != 0 ? o->max_traces : CO_ERRORS_MAX_TRACES;
	size_t page =
	        o->search_page != 0 && o->search_page < CO_SEARCH_LIMIT_MAX ? o->search_page : CO_SEARCH_LIMIT_MAX;
	lctx c = {.s = s, .err = err};
	tl_arena_init(&c.ga, (size_t)64 << 10, 0);
	tl_arena_init(&c.ta, (size_t)64 << 10, CO_ERRORS_TRACE_MEM);
	tl_arena_init(&c.la, (size_t)64 << 10, LINEAGE_MEM);
	int rc = gather(&c, since, until, max_traces, page);
	if (rc == 0) {
		pairs_unique(&c, 0);
		rc = lineage_impact(&c);
	}
	size_t *order = rc == 0 ? malloc((c.ng ? c.ng : 1) * sizeof(*order)) : NULL;
	if (order == NULL) {
		lctx_fini(&c);
		return rc != 0 ? rc : tl_errf(err, -ENOMEM, "out of memory");
	}
	/* Distinct counts per group and kind, and where each group's shown ids start. */
	for (size_t i = 0; i < c.np; i++) {
		group *g = &c.g[c.p[i].group];
		unsigned k = c.p[i].kind;
		if (g->count[k]++ == 0)
			g->ids_at[k] = i;
		if (g->ids_n[k] < CO_ERRORS_IDS_SHOWN)
			g->ids_n[k]++;
	}
	for (size_t i = 0; i < c.ng; i++)
		order[i] = i;
	qsort_r(order, c.ng, sizeof(*order), cmp_rank, c.g);
	bool oom = false;
	json_t *doc = json_object(), *groups = json_array();
	if (doc == NULL || groups == NULL)
		oom = true;
	for (size_t i = 0; i < c.ng && i < limit && !oom; i++)
		push(groups, group_json(&c, &c.g[order[i]], &oom), &oom);
	if (doc != NULL) {
		set(doc, "since_unix_nano", jns(since), &oom);
		set(doc, "until_unix_nano", jns(until), &oom);
		set(doc, "traces_examined", json_integer((json_int_t)c.read), &oom);
		set(doc, "groups_total", json_integer((json_int_t)c.ng), &oom);
		set(doc, "partial", json_boolean(c.partial), &oom);
		set(doc, "groups", groups, &oom);
	} else {
		json_decref(groups);
	}
	free(order);
	lctx_fini(&c);
	return finish(doc, oom, arena, json, err);
}

/* ---- explain ---- */

enum { X_MAIN, X_LINK, X_LINEAGE };

typedef struct xitem {
	uint8_t trace[16];
	unsigned depth;
	int kind;
	json_t *entry; /* borrowed from the document: the object this trace's fields go into */
	uint8_t span[8];
	size_t span_len; /* X_LINK: the linked span, to show it */
} xitem;

typedef struct xctx {
	co_store *s;
	tl_arena ta, la;
	xitem q[CO_ERRORS_EXPLAIN_TRACES];
	size_t qh, qt;
	json_t *linked, *upstream;
	json_t *by_run; /* run id -> its upstream entry (borrowed) */
	bool truncated, oom;
	tl_errmsg *err;
} xctx;

/* Whether trace id is queued or explained already. */
static bool x_known(const xctx *x, const uint8_t id[16])
{
	for (size_t i = 0; i < x->qt; i++)
		if (memcmp(x->q[i].trace, id, 16) == 0)
			return true;
	return false;
}

/* Queues a trace; false (and truncated) when the trace budget is spent. */
static bool x_enqueue(xctx *x, const uint8_t id[16], unsigned depth, int kind, json_t *entry)
{
	if (x->qt >= CO_ERRORS_EXPLAIN_TRACES) {
		x->truncated = true;
		return false;
	}
	xitem *it = &x->q[x->qt++];
	memset(it, 0, sizeof(*it));
	memcpy(it->trace, id, 16);
	it->depth = depth;
	it->kind = kind;
	it->entry = entry;
	return true;
}

/* The span links of the cause chain that lead into other traces: one entry (and a queued trace) each. */
static void x_links(xctx *x, const xitem *it, const co_analysis *an)
{
	for (size_t k = 0; k < an->n_cause_links && !x->oom; k++) {
		const co_an_link *l = &an->cause_links[k];
		if (l->same_trace || l->link->trace_id.len != 16 || tl_id_is_zero(l->link->trace_id.data, 16))
			continue;
		if (x_known(x, l->link->trace_id.data))
			continue;
		if (it->depth + 1 > CO_ERRORS_EXPLAIN_DEPTH) {
			x->truncated = true;
			continue;
		}
		const tl_pb_span *from = an->spans[l->span].span;
		json_t *e = json_object();
		if (e == NULL) {
			x->oom = true;
			return;
		}
		set(e, "depth", json_integer((json_int_t)it->depth + 1), &x->oom);
		set(e, "from_trace_id", jhex(it->trace, 16), &x->oom);
		set(e, "from_span_id", jhex(from->span_id.data, from->span_id.len), &x->oom);
		set(e, "trace_id", jhex(l->link->trace_id.data, 16), &x->oom);
		set(e, "span_id", jhex(l->link->span_id.data, l->link->span_id.len), &x->oom);
		if (!x_enqueue(x, l->link->trace_id.data, it->depth + 1, X_LINK, e)) {
			json_decref(e);
			continue;
		}
		xitem *q = &x->q[x->qt - 1];
		if (l->link->span_id.len <= sizeof(q->span)) {
			memcpy(q->span, l->link->span_id.data, l->link->span_id.len);
			q->span_len = l->link->span_id.len;
		}
		push(x->linked, e, &x->oom);
	}
}

static const json_t *find_run(const json_t *runs, const char *id)
{
	size_t i;
	const json_t *r;
	json_array_foreach(runs, i, r)
	{
		const char *rid = json_string_value(json_object_get(r, "id"));
		if (rid != NULL && strcmp(rid, id) == 0)
			return r;
	}
	return NULL;
}

static bool array_has(const json_t *a, const char *s)
{
	size_t i;
	const json_t *v;
	json_array_foreach(a, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

/* The upstream causes of one prediction: its lineage explanation's failed and aborted runs. */
static int x_prediction(xctx *x, const xitem *it, const char *pid)
{
	tl_arena_reset(&x->la);
	co_lineage_explain_opts o = {.prediction_id = pid};
	char *js = NULL;
	tl_errmsg e = {{0}};
	int rc = co_lineage_explain(x->s, &o, &x->la, &js, &e);
	if (rc == TL_ENOTFOUND || rc == TL_EINVALID)
		return 0;
	if (rc == TL_ELIMIT) {
		x->truncated = true;
		return 0;
	}
	if (rc != 0)
		return tl_errf(x->err, rc, "errors explain: lineage of prediction %s: %s", pid,
		               e.msg[0] ? e.msg : tl_strerror(rc));
	json_t *doc = json_loads(js, 0, NULL);
	if (doc == NULL)
		return tl_errf(x->err, -ENOMEM, "out of memory");
	if (json_is_true(json_object_get(doc, "truncated")))
		x->truncated = true;
	const json_t *runs = json_object_get(doc, "runs"), *problems = json_object_get(doc, "problems");
	size_t i;
	const json_t *p;
	json_array_foreach(problems, i, p)
	{
		const char *kind = json_string_value(json_object_get(p, "kind"));
		const char *node = json_string_value(json_object_get(p, "node"));
		if (kind == NULL || node == NULL || (strcmp(kind, "failed") != 0 && strcmp(kind, "aborted") != 0))
			continue;
		json_t *have = json_object_get(x->by_run, node);
		if (have != NULL) {
			json_t *preds = json_object_get(have, "affected_predictions");
			if (!array_has(preds, pid))
				push(preds, jstr(pid), &x->oom);
			continue;
		}
		const json_t *r = find_run(runs, node);
		const char *thex = json_string_value(json_object_get(r, "trace_id"));
		json_t *en = json_object(), *preds = json_array();
		if (en == NULL || preds == NULL) {
			json_decref(en);
			json_decref(preds);
			x->oom = true;
			break;
		}
		push(preds, jstr(pid), &x->oom);
		set(en, "depth", json_integer((json_int_t)it->depth + 1), &x->oom);
		set(en, "from_trace_id", jhex(it->trace, 16), &x->oom);
		set(en, "affected_predictions", preds, &x->oom);
		set(en, "run", jstr(node), &x->oom);
		set(en, "kind", jstr(kind), &x->oom);
		set(en, "job", jstr_or_null(json_string_value(json_object_get(r, "job"))), &x->oom);
		set(en, "state", jstr_or_null(json_string_value(json_object_get(r, "state"))), &x->oom);
		set(en, "error", jstr_or_null(json_string_value(json_object_get(r, "error"))), &x->oom);
		set(en, "message", jstr_or_null(json_string_value(json_object_get(p, "message"))), &x->oom);
		set(en, "ended_at", jstr_or_null(json_string_value(json_object_get(r, "ended_at"))), &x->oom);
		set(en, "trace_id", jstr_or_null(thex), &x->oom);
		uint8_t tid[16];
		bool has_trace = thex != NULL && tl_hex_decode(thex, strlen(thex), tid, 16) == 0;
		/* found: false when no trace is known; "repeated" when it is explained elsewhere in this answer;
		 * neither (and truncated) when a bound kept it from being followed. */
		if (!has_trace)
			set(en, "found", json_boolean(false), &x->oom);
		else if (x_known(x, tid))
			set(en, "repeated", json_true(), &x->oom);
		else if (!x_enqueue(x, tid, it->depth + 1, X_LINEAGE, en))
			x->truncated = true;
		if (json_object_set(x->by_run, node, en) != 0)
			x->oom = true;
		push(x->upstream, en, &x->oom);
	}
	json_decref(doc);
	return 0;
}

/* The distinct ml.prediction.id values of a trace (span order), explained through lineage. */
static int x_lineage(xctx *x, const xitem *it, const co_analysis *an)
{
	const char *preds[CO_ERRORS_EXPLAIN_PREDICTIONS];
	char bufs[CO_ERRORS_EXPLAIN_PREDICTIONS][64];
	size_t np = 0;
	for (size_t i = 0; i < an->count; i++) {
		const tl_pb_span *sp = an->spans[i].span;
		char b[64];
		const char *p = any_str(attr_get(sp->attributes, sp->n_attributes, "ml.prediction.id"), b, sizeof(b));
		if (p == NULL || p[0] == '\0')
			continue;
		bool dup = false;
		for (size_t k = 0; k < np && !dup; k++)
			dup = strcmp(preds[k], p) == 0;
		if (dup)
			continue;
		if (np == CO_ERRORS_EXPLAIN_PREDICTIONS) {
			x->truncated = true;
			break;
		}
		if (p == b) {
			memcpy(bufs[np], b, sizeof(b));
			p = bufs[np];
		}
		preds[np++] = p;
	}
	json_t *list = json_object_get(it->entry, "predictions");
	for (size_t k = 0; k < np; k++) {
		if (list != NULL)
			push(list, jstr(preds[k]), &x->oom);
		if (it->depth + 1 > CO_ERRORS_EXPLAIN_DEPTH) {
			x->truncated = true; /* its upstream would lie beyond the depth bound */
			continue;
		}
		int rc = x_prediction(x, it, preds[k]);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Reads, analyses and explains the queued trace it. Returns 0 or a fatal error. */
static int x_trace(xctx *x, xitem *it)
{
	tl_arena_reset(&x->ta);
	tl_pb_trace_result *res = NULL;
	char hex[33];
	tl_hex_encode(it->trace, 16, hex);
	int rc = co_store_get_trace(x->s, it->trace, &x->ta, &res);
	if (it->kind == X_MAIN && rc == TL_ENOTFOUND)
		return tl_errf(x->err, rc, "trace %s not found", hex);
	if (it->kind == X_MAIN && rc == TL_ELIMIT)
		return tl_errf(x->err, rc, "trace %s is too large to explain", hex);
	if (rc == TL_ENOTFOUND || rc == TL_ELIMIT || rc == TL_ECORRUPT) {
		set(it->entry, "found", json_boolean(false), &x->oom);
		if (rc != TL_ENOTFOUND)
			x->truncated = true;
		return 0;
	}
	if (rc != 0)
		return tl_errf(x->err, rc, "trace %s: %s", hex, tl_strerror(rc));
	co_analysis *an = NULL;
	if ((rc = co_analyze(res, &an)) != 0)
		return tl_errf(x->err, rc, "trace %s: %s", hex, tl_strerror(rc));
	if (it->kind != X_MAIN)
		set(it->entry, "found", json_true(), &x->oom);
	trace_fields(it->entry, an, &x->oom);
	if (it->kind == X_LINK) {
		size_t t = co_analysis_find(an, it->span, it->span_len);
		set(it->entry, "linked_span", t != CO_AN_NONE ? hop_json(an, t, &x->oom) : json_null(), &x->oom);
	}
	set(it->entry, "predictions", json_array(), &x->oom);
	x_links(x, it, an);
	rc = x_lineage(x, it, an);
	co_analysis_free(an);
	return rc;
}

int co_errors_explain(co_store *s, const uint8_t trace_id[16], tl_arena *arena, char **json, tl_errmsg *err)
{
	*json = NULL;
	xctx x = {.s = s, .err = err};
	tl_arena_init(&x.ta, (size_t)64 << 10, CO_ERRORS_TRACE_MEM);
	tl_arena_init(&x.la, (size_t)64 << 10, LINEAGE_MEM);
	json_t *doc = json_object();
	x.linked = json_array();
	x.upstream = json_array();
	x.by_run = json_object();
	int rc = 0;
	if (doc == NULL || x.linked == NULL || x.upstream == NULL || x.by_run == NULL)
		rc = tl_errf(err, -ENOMEM, "out of memory");
	if (rc == 0) {
		set(doc, "trace_id", jhex(trace_id, 16), &x.oom);
		x_enqueue(&x, trace_id, 0, X_MAIN, doc);
	}
	/* Breadth first: nearer continuations are explained before farther ones. */
	while (rc == 0 && x.qh < x.qt && !x.oom)
		rc = x_trace(&x, &x.q[x.qh++]);
	if (rc == 0 && doc != NULL) {
		set(doc, "linked", json_incref(x.linked), &x.oom);
		set(doc, "upstream", json_incref(x.upstream), &x.oom);
		set(doc, "truncated", json_boolean(x.truncated), &x.oom);
	}
	json_decref(x.linked);
	json_decref(x.upstream);
	json_decref(x.by_run);
	tl_arena_fini(&x.ta);
	tl_arena_fini(&x.la);
	if (rc != 0) {
		json_decref(doc);
		return rc;
	}
	return finish(doc, x.oom, arena, json, err);
}

int co_errors_answer(co_store *s, const tl_pb_query_req *req, tl_arena *arena, char **json, tl_errmsg *err)
{
	if (req->query_case == THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_LIST && req->errors_list != NULL) {
		const tl_pb_errors_list *q = req->errors_list;
		co_errors_opts o = {.since_ns = q->since_unix_nano,
		                    .until_ns = q->until_unix_nano,
		                    .limit = q->limit,
		                    .max_traces = q->max_traces};
		return co_errors_list(s, &o, arena, json, err);
	}
	if (req->query_case == THREADLINE__V1__QUERY_REQUEST__QUERY_ERRORS_EXPLAIN && req->errors_explain != NULL) {
		const ProtobufCBinaryData *t = &req->errors_explain->trace_id;
		if (t->len != 16)
			return tl_errf(err, TL_EINVALID, "errors_explain: trace_id is %zu bytes, want 16", t->len);
		return co_errors_explain(s, t->data, arena, json, err);
	}
	return tl_errf(err, TL_EUNSUPPORTED, "query: not an errors query");
}
