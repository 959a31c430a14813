/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP protobuf decoding and the validation shared by both encodings.
 * Decoding walks the wire bytes first (tl_pbwalk), so protobuf-c's
 * recursive unpack only ever sees bodies whose nesting is bounded, then
 * unpacks through an allocator wrapper that tells "out of budget" apart from
 * "malformed". Validation is one pass over the decoded request that
 * compacts the span arrays in place.
 */
#include "tl_otlp.h"

#include "tl_id.h"
#include "tl_pbwalk.h"
#include "tl_utf8.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Message levels above the first AnyValue: request > ResourceSpans > ScopeSpans > Span > Event > KeyValue. */
#define FIXED_LEVELS 6

void tl_otlp_limits_default(tl_otlp_limits *l)
{
	l->max_spans = 100000;
	l->max_attributes = 128;
	l->max_events = 128;
	l->max_links = 128;
	l->max_key_bytes = 256;
	l->max_string_bytes = (size_t)64 * 1024;
	l->max_array_values = 1024;
	l->max_depth = 8;
	l->max_decoded_bytes = (size_t)64 * 1024 * 1024;
}

unsigned tl_otlp_message_depth(const tl_otlp_limits *lim)
{
	/*
	 * The k-th nested AnyValue sits at most 3 levels below the previous one
	 * (AnyValue > KeyValueList > KeyValue > AnyValue), and the deepest one
	 * may still hold an empty KeyValueList with a value-less KeyValue.
	 */
	unsigned long long d = lim->max_depth == 0 ? 1 : lim->max_depth;
	d = FIXED_LEVELS + 3 * (d - 1) + 2;
	return d > TL_PBWALK_DEPTH_CAP ? TL_PBWALK_DEPTH_CAP : (unsigned)d;
}

size_t tl_otlp_count_spans(const tl_pb_export_req *req)
{
	size_t n = 0;
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const tl_pb_resource_spans *rs = req->resource_spans[i];
		if (rs == NULL)
			continue;
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			if (rs->scope_spans[j] != NULL)
				n += rs->scope_spans[j]->n_spans;
		}
	}
	return n;
}

const char *tl_otlp_service_name(const tl_pb_resource *r)
{
	for (size_t i = 0; r != NULL && i < r->n_attributes; i++) {
		const tl_pb_keyvalue *kv = r->attributes[i];
		if (kv != NULL && kv->key != NULL && strcmp(kv->key, "service.name") == 0 && kv->value != NULL &&
		    kv->value->value_case == TL_PB_ANY_STRING)
			return kv->value->string_value;
	}
	return NULL;
}

bool tl_otlp_span_failed(const tl_pb_span *sp)
{
	return sp->status != NULL && sp->status->code == TL_PB_STATUS_ERROR;
}

/* ---- protobuf decoding ---- */

/* Forwards to the caller's allocator and remembers whether it ever said no. */
typedef struct track_alloc {
	ProtobufCAllocator pub;
	ProtobufCAllocator *inner; /* NULL: malloc */
	bool failed;
} track_alloc;

static void *track_do_alloc(void *ud, size_t n)
{
	track_alloc *t = ud;
	void *p = t->inner != NULL ? t->inner->alloc(t->inner->allocator_data, n) : malloc(n);
	if (p == NULL)
		t->failed = true;
	return p;
}

static void track_do_free(void *ud, void *p)
{
	track_alloc *t = ud;
	if (t->inner != NULL)
		t->inner->free(t->inner->allocator_data, p);
	else
		free(p);
}

int tl_otlp_decode_proto(const uint8_t *buf, size_t len, const tl_otlp_limits *lim, ProtobufCAllocator *alloc,
                         tl_pb_export_req **out, tl_errmsg *err)
{
	static const uint8_t empty[1];
	tl_pbwalk_opts o = {
	        .max_depth = tl_otlp_message_depth(lim),
	        .count_desc = &opentelemetry__proto__trace__v1__span__descriptor,
	        .max_count = lim->max_spans,
	        .count_what = "spans",
	};
	int rc;

	*out = NULL;
	if (buf == NULL)
		buf = empty; /* an empty body is an empty request */
	if ((rc = tl_pbwalk_check(&TL_PB_EXPORT_REQ_DESC, buf, len, &o, err)) != 0)
		return rc;

	track_alloc t = {{track_do_alloc, track_do_free, NULL}, alloc, false};
	t.pub.allocator_data = &t;
	ProtobufCMessage *m = protobuf_c_message_unpack(&TL_PB_EXPORT_REQ_DESC, &t.pub, len, buf);
	if (m == NULL) {
		if (t.failed)
			return tl_errf(err, TL_ELIMIT, "decoded request exceeds %zu bytes", lim->max_decoded_bytes);
		return tl_errf(err, TL_EPARSE, "malformed protobuf body");
	}
	*out = (tl_pb_export_req *)m;
	return 0;
}

/* ---- validation ---- */

/* Validation state: the limits, and where a reason goes (why == NULL: nobody wants it). */
typedef struct vctx {
	const tl_otlp_limits *lim;
	char *why;
	size_t whylen;
} vctx;

static bool fail(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(vctx *c, const char *fmt, ...)
{
	if (c->why != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->why, c->whylen, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* Prefixes the current reason with "prefix: " or "prefix." (a path step). */
static bool fail_in(vctx *c, const char *step, size_t idx, const char *sep)
{
	if (c->why != NULL) {
		char tmp[256];
		snprintf(tmp, sizeof tmp, "%s", c->why);
		if (idx == (size_t)-1)
			snprintf(c->why, c->whylen, "%s%s%s", step, sep, tmp);
		else
			snprintf(c->why, c->whylen, "%s[%zu]%s%s", step, idx, sep, tmp);
	}
	return false;
}

static bool check_len_str(vctx *c, const char *s, size_t max, const char *what)
{
	if (s == NULL)
		return true;
	size_t n = strlen(s);
	if (n > max)
		return fail(c, "%s is longer than %zu bytes", what, max);
	if (!tl_utf8_valid(s, n))
		return fail(c, "%s is not valid UTF-8", what);
	return true;
}

static bool check_id(vctx *c, const ProtobufCBinaryData *b, size_t want, bool optional, const char *what)
{
	if (b->len == 0 && optional)
		return true;
	if (b->len != want)
		return fail(c, "%s must be %zu bytes, got %zu", what, want, b->len);
	if (tl_id_is_zero(b->data, b->len))
		return fail(c, "%s is all zero", what);
	return true;
}

static bool check_attrs(vctx *c, size_t n, tl_pb_keyvalue *const *kv, unsigned depth, const char *what);

/* depth: the nesting level of v itself (an attribute's value is level 1). */
static bool check_any(vctx *c, const tl_pb_anyvalue *v, unsigned depth)
{
	if (v == NULL)
		return true;
	if (depth > c->lim->max_depth)
		return fail(c, "value nested deeper than %u levels", c->lim->max_depth);
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		return check_len_str(c, v->string_value, c->lim->max_string_bytes, "string value");
	case TL_PB_ANY_BYTES:
		if (v->bytes_value.len > c->lim->max_string_bytes)
			return fail(c, "bytes value is longer than %zu bytes", c->lim->max_string_bytes);
		return true;
	case TL_PB_ANY_ARRAY: {
		const tl_pb_arrayvalue *a = v->array_value;
		if (a == NULL)
			return true;
		if (a->n_values > c->lim->max_array_values)
			return fail(c, "array of %zu values, more than %zu", a->n_values, c->lim->max_array_values);
		for (size_t i = 0; i < a->n_values; i++) {
			if (!check_any(c, a->values[i], depth + 1))
				return false; /* the attribute is named; the path inside it is not worth the bytes */
		}
		return true;
	}
	case TL_PB_ANY_KVLIST: {
		const tl_pb_kvlist *l = v->kvlist_value;
		if (l == NULL)
			return true;
		if (l->n_values > c->lim->max_array_values)
			return fail(c, "key-value list of %zu values, more than %zu", l->n_values,
			            c->lim->max_array_values);
		return check_attrs(c, l->n_values, l->values, depth + 1, NULL);
	}
	default:
		return true;
	}
}

/* Attribute-like lists; depth is the level of their values; what names the list in reasons (NULL: inside a value). */
static bool check_attrs(vctx *c, size_t n, tl_pb_keyvalue *const *kv, unsigned depth, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		const tl_pb_keyvalue *a = kv[i];
		if (a == NULL)
			continue;
		bool ok;
		if (a->key == NULL || a->key[0] == '\0')
			ok = fail(c, "key is empty");
		else
			ok = check_len_str(c, a->key, c->lim->max_key_bytes, "key");
		if (!ok)
			return what != NULL ? fail_in(c, what, i, ".") : false;
		if (!check_any(c, a->value, depth))
			return what != NULL ? fail_in(c, what, i, ".value: ") : false;
	}
	return true;
}

static bool check_top_attrs(vctx *c, size_t n, tl_pb_keyvalue *const *kv)
{
	if (n > c->lim->max_attributes)
		return fail(c, "attributes: %zu, more than %zu", n, c->lim->max_attributes);
	return check_attrs(c, n, kv, 1, "attributes");
}

static bool check_resource(vctx *c, const tl_pb_resource_spans *rs)
{
	if (rs->resource != NULL && !check_top_attrs(c, rs->resource->n_attributes, rs->resource->attributes))
		return fail_in(c, "resource", (size_t)-1, ".");
	return check_len_str(c, rs->schema_url, c->lim->max_string_bytes, "schema_url");
}

static bool check_scope(vctx *c, const tl_pb_scope_spans *ss)
{
	const tl_pb_scope *s = ss->scope;
	if (s != NULL) {
		if (!check_len_str(c, s->name, c->lim->max_string_bytes, "name") ||
		    !check_len_str(c, s->version, c->lim->max_string_bytes, "version") ||
		    !check_top_attrs(c, s->n_attributes, s->attributes))
			return fail_in(c, "scope", (size_t)-1, ".");
	}
	return check_len_str(c, ss->schema_url, c->lim->max_string_bytes, "schema_url");
}

static bool check_span(vctx *c, const tl_pb_span *sp)
{
	const tl_otlp_limits *l = c->lim;

	if (!check_id(c, &sp->trace_id, TL_TRACE_ID_LEN, false, "trace_id") ||
	    !check_id(c, &sp->span_id, TL_SPAN_ID_LEN, false, "span_id"))
		return false;
	if (sp->parent_span_id.len != 0 && sp->parent_span_id.len != TL_SPAN_ID_LEN)
		return fail(c, "parent_span_id must be empty or %d bytes, got %zu", TL_SPAN_ID_LEN,
		            sp->parent_span_id.len);
	if (!check_len_str(c, sp->name, l->max_string_bytes, "name") ||
	    !check_len_str(c, sp->trace_state, l->max_string_bytes, "trace_state"))
		return false;
	if (sp->end_time_unix_nano < sp->start_time_unix_nano)
		return fail(c, "end_time_unix_nano %llu is before start_time_unix_nano %llu",
		            (unsigned long long)sp->end_time_unix_nano, (unsigned long long)sp->start_time_unix_nano);
	if (!check_top_attrs(c, sp->n_attributes, sp->attributes))
		return false;
	if (sp->n_events > l->max_events)
		return fail(c, "events: %zu, more than %zu", sp->n_events, l->max_events);
	for (size_t i = 0; i < sp->n_events; i++) {
		const tl_pb_event *e = sp->events[i];
		if (e == NULL)
			continue;
		if (!check_len_str(c, e->name, l->max_string_bytes, "name") ||
		    !check_top_attrs(c, e->n_attributes, e->attributes))
			return fail_in(c, "events", i, ".");
	}
	if (sp->n_links > l->max_links)
		return fail(c, "links: %zu, more than %zu", sp->n_links, l->max_links);
	for (size_t i = 0; i < sp->n_links; i++) {
		const tl_pb_link *k = sp->links[i];
		if (k == NULL)
			continue;
		if (!check_id(c, &k->trace_id, TL_TRACE_ID_LEN, false, "trace_id") ||
		    !check_id(c, &k->span_id, TL_SPAN_ID_LEN, false, "span_id") ||
		    !check_len_str(c, k->trace_state, l->max_string_bytes, "trace_state") ||
		    !check_top_attrs(c, k->n_attributes, k->attributes))
			return fail_in(c, "links", i, ".");
	}
	if (sp->status != NULL && !check_len_str(c, sp->status->message, l->max_string_bytes, "message"))
		return fail_in(c, "status", (size_t)-1, ".");
	return true;
}

int tl_otlp_validate(tl_pb_export_req *req, const tl_otlp_limits *lim, tl_otlp_verdict *v)
{
	char rwhy[256], swhy[256], why[256];
	vctx c = {lim, NULL, 0};
	size_t rkeep = 0;

	memset(v, 0, sizeof(*v));
	v->spans_total = tl_otlp_count_spans(req);
	if (v->spans_total > lim->max_spans) {
		v->spans_rejected = v->spans_total;
		tl_errf(&v->first_error, TL_ELIMIT, "request has %zu spans, more than %zu", v->spans_total,
		        lim->max_spans);
		req->n_resource_spans = 0;
		return TL_ELIMIT;
	}
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		tl_pb_resource_spans *rs = req->resource_spans[i];
		if (rs == NULL)
			continue;
		c.why = rwhy;
		c.whylen = sizeof rwhy;
		const bool rok = check_resource(&c, rs);
		size_t skeep = 0;
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			tl_pb_scope_spans *ss = rs->scope_spans[j];
			if (ss == NULL)
				continue;
			c.why = swhy;
			c.whylen = sizeof swhy;
			const bool sok = rok && check_scope(&c, ss);
			size_t keep = 0;
			for (size_t k = 0; k < ss->n_spans; k++) {
				tl_pb_span *sp = ss->spans[k];
				bool first = v->spans_rejected == 0;
				c.why = first ? why : NULL;
				c.whylen = sizeof why;
				bool ok = sok && sp != NULL && check_span(&c, sp);
				if (ok) {
					ss->spans[keep++] = sp;
					continue;
				}
				v->spans_rejected++;
				if (!first)
					continue;
				if (!rok)
					tl_errf(&v->first_error, TL_EINVALID, "resource_spans[%zu].%s", i, rwhy);
				else if (!sok)
					tl_errf(&v->first_error, TL_EINVALID, "resource_spans[%zu].scope_spans[%zu].%s",
					        i, j, swhy);
				else if (sp == NULL)
					tl_errf(&v->first_error, TL_EINVALID,
					        "resource_spans[%zu].scope_spans[%zu].spans[%zu]: missing", i, j, k);
				else
					tl_errf(&v->first_error, TL_EINVALID,
					        "resource_spans[%zu].scope_spans[%zu].spans[%zu]: %s", i, j, k, why);
			}
			ss->n_spans = keep;
			if (keep > 0)
				rs->scope_spans[skeep++] = ss;
		}
		rs->n_scope_spans = skeep;
		if (skeep > 0)
			req->resource_spans[rkeep++] = rs;
	}
	req->n_resource_spans = rkeep;
	return 0;
}
