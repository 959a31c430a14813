/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stored traces re-framed for export: OTLP request batches bounded by span
 * count and bytes, and the Jaeger UI upload file; see co_export.h.
 *
 * An ExportTraceServiceRequest is nothing but its ResourceSpans, each as
 * field 1 (length-delimited), one after the other. So a request is built by
 * appending one ResourceSpans at a time, encoded at once from the caller's
 * messages: the batcher keeps bytes, never pointers into data the caller
 * frees after the call.
 */
#include "co_export.h"
#include "tl_be.h"

#include "co_jaeger.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- OTLP batches ---- */

#define VARINT_MAX 10

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

int co_export_batcher_init(co_export_batcher *b, size_t max_spans, size_t max_bytes, co_export_batch_fn emit, void *ud)
{
	memset(b, 0, sizeof(*b));
	if (max_spans == 0)
		max_spans = CO_EXPORT_BATCH_SPANS_DEFAULT;
	if (max_bytes == 0)
		max_bytes = CO_EXPORT_BATCH_BYTES_DEFAULT;
	if (emit == NULL || max_spans > CO_EXPORT_BATCH_SPANS_MAX || max_bytes < CO_EXPORT_BATCH_BYTES_MIN ||
	    max_bytes > CO_EXPORT_BATCH_BYTES_MAX)
		return TL_EINVALID;
	b->max_spans = max_spans;
	b->max_bytes = max_bytes;
	b->emit = emit;
	b->ud = ud;
	/* An oversized span may need more than max_bytes: the buffer is bounded by the input, not by this. */
	tl_buf_init(&b->buf, 0);
	return 0;
}

void co_export_batcher_fini(co_export_batcher *b)
{
	if (b == NULL)
		return;
	tl_buf_fini(&b->buf);
	b->n_spans = 0;
}

int co_export_batcher_flush(co_export_batcher *b)
{
	if (b->n_spans == 0)
		return 0;
	int rc = b->emit(b->ud, b->buf.data, b->buf.len, b->n_spans);
	if (rc == 0) {
		b->batches++;
		b->spans += b->n_spans;
		b->bytes += b->buf.len;
	}
	tl_buf_reset(&b->buf);
	b->n_spans = 0;
	return rc;
}

/* Appends rs (one scope's spans) to the request as field 1. */
static int append_rs(co_export_batcher *b, const tl_pb_resource_spans *rs)
{
	size_t n = opentelemetry__proto__trace__v1__resource_spans__get_packed_size(rs);
	int rc = tl_buf_reserve(&b->buf, 1 + VARINT_MAX + n);
	if (rc != 0)
		return rc;
	uint8_t *p = b->buf.data + b->buf.len;
	p[0] = 0x0a; /* field 1, wire type 2 */
	size_t h = 1 + tl_put_varint(p + 1, n);
	size_t w = opentelemetry__proto__trace__v1__resource_spans__pack(rs, p + h);
	if (w != n)
		return TL_EPROTO; /* protobuf-c disagrees with itself: cannot happen */
	b->buf.len += h + n;
	return 0;
}

/* The spans of one ResourceSpans' ScopeSpans, in request-sized slices. */
static int add_scope(co_export_batcher *b, const tl_pb_resource_spans *rs, const tl_pb_scope_spans *ss)
{
	/* Copies of the two messages with our own lists: the caller's stay untouched. */
	tl_pb_scope_spans one = *ss;
	tl_pb_scope_spans *onep = &one;
	tl_pb_resource_spans wrap = *rs;
	wrap.scope_spans = &onep;
	wrap.n_scope_spans = 1;
	one.n_spans = 0;
	one.spans = NULL;
	/*
	 * An upper bound of what a slice costs: the field's tag and length
	 * (1 + 5), the wrapper without spans, and 4 more bytes for the
	 * ScopeSpans' length prefix growing as spans join it.
	 */
	size_t base = 1 + 5 + opentelemetry__proto__trace__v1__resource_spans__get_packed_size(&wrap) + 4;
	size_t i = 0;
	while (i < ss->n_spans) {
		size_t j = i, est = base;
		while (j < ss->n_spans && b->n_spans + (j - i) < b->max_spans) {
			size_t sz = opentelemetry__proto__trace__v1__span__get_packed_size(ss->spans[j]);
			size_t add = 1 + varint_len(sz) + sz;
			if (b->buf.len + est + add > b->max_bytes) {
				if (j > i || b->n_spans > 0)
					break;
				b->oversized++; /* alone in an empty request and still too big: it goes alone */
			}
			est += add;
			j++;
		}
		if (j == i) { /* the request is full */
			int rc = co_export_batcher_flush(b);
			if (rc != 0)
				return rc;
			continue;
		}
		one.spans = ss->spans + i;
		one.n_spans = j - i;
		int rc = append_rs(b, &wrap);
		if (rc != 0)
			return rc;
		b->n_spans += j - i;
		i = j;
		if (b->n_spans >= b->max_spans || b->buf.len >= b->max_bytes) {
			if ((rc = co_export_batcher_flush(b)) != 0)
				return rc;
		}
	}
	return 0;
}

int co_export_batcher_add(co_export_batcher *b, tl_pb_resource_spans *const *rs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rs[i] == NULL)
			continue;
		for (size_t k = 0; k < rs[i]->n_scope_spans; k++) {
			const tl_pb_scope_spans *ss = rs[i]->scope_spans[k];
			if (ss == NULL || ss->n_spans == 0)
				continue;
			int rc = add_scope(b, rs[i], ss);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

int co_export_batcher_add_trace(co_export_batcher *b, const tl_pb_trace_result *tr)
{
	return co_export_batcher_add(b, tr->resource_spans, tr->n_resource_spans);
}

/* ---- the Jaeger UI file ---- */

int co_export_jaeger_begin(co_export_jaeger *j, FILE *out)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
	j->ids = json_object();
	j->refs = json_array();
	if (j->ids == NULL || j->refs == NULL) {
		co_export_jaeger_fini(j);
		return -ENOMEM;
	}
	if (fputs("{\"data\":[", out) == EOF)
		return -EIO;
	return 0;
}

/* "traceID/spanID" into buf. */
static void id_key(const char *trace, const char *span, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", trace != NULL ? trace : "?", span != NULL ? span : "?");
}

/* Remembers the trace's span ids and references for the check at the end. */
static int note_ids(co_export_jaeger *j, const json_t *trace)
{
	const json_t *spans = json_object_get(trace, "spans");
	size_t i;
	const json_t *sp;
	char key[2 * 32 + 2 * 16 + 2];
	json_array_foreach(spans, i, sp)
	{
		const char *tid = json_string_value(json_object_get(sp, "traceID"));
		const char *sid = json_string_value(json_object_get(sp, "spanID"));
		id_key(tid, sid, key, sizeof(key));
		if (json_object_set_new(j->ids, key, json_true()) != 0)
			return -ENOMEM;
		size_t r;
		const json_t *ref;
		json_array_foreach(json_object_get(sp, "references"), r, ref)
		{
			j->references++;
			char from[CO_EXPORT_REF_EXAMPLE_MAX];
			snprintf(from, sizeof(from), "%s from span %s",
			         json_string_value(json_object_get(ref, "refType")), sid != NULL ? sid : "?");
			id_key(json_string_value(json_object_get(ref, "traceID")),
			       json_string_value(json_object_get(ref, "spanID")), key, sizeof(key));
			json_t *e = json_pack("[ss]", key, from);
			if (e == NULL || json_array_append_new(j->refs, e) != 0)
				return -ENOMEM;
		}
	}
	return 0;
}

int co_export_jaeger_add(co_export_jaeger *j, const tl_pb_trace_result *tr)
{
	json_t *t = co_jaeger_trace(tr);
	if (t == NULL)
		return -ENOMEM;
	int rc = note_ids(j, t);
	if (rc == 0) {
		j->spans += json_array_size(json_object_get(t, "spans"));
		j->processes += json_object_size(json_object_get(t, "processes"));
		if ((j->traces > 0 && fputc(',', j->out) == EOF) || fputc('\n', j->out) == EOF ||
		    json_dumpf(t, j->out, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0)
			rc = -EIO;
		else
			j->traces++;
	}
	json_decref(t);
	return rc;
}

int co_export_jaeger_end(co_export_jaeger *j, co_export_jaeger_summary *sum)
{
	/* The envelope's own text after "data":[ -- one source for its shape. */
	json_t *env = co_jaeger_envelope(json_array(), j->traces, NULL);
	char *text = env != NULL ? json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(env);
	if (text == NULL)
		return -ENOMEM;
	const char *rest = strstr(text, "[]");
	int rc = 0;
	if (rest == NULL)
		rc = TL_EPROTO;
	else if (fputs("\n", j->out) == EOF || fputs(rest + 1, j->out) == EOF || fputc('\n', j->out) == EOF)
		rc = -EIO;
	free(text);
	if (sum != NULL) {
		memset(sum, 0, sizeof(*sum));
		sum->traces = j->traces;
		sum->spans = j->spans;
		sum->processes = j->processes;
		sum->references = j->references;
		size_t i;
		const json_t *e;
		json_array_foreach(j->refs, i, e)
		{
			const char *key = json_string_value(json_array_get(e, 0));
			if (json_object_get(j->ids, key) != NULL)
				continue;
			if (sum->unresolved++ == 0) {
				const char *slash = strchr(key, '/');
				int tl = slash != NULL ? (int)(slash - key) : (int)strlen(key);
				snprintf(sum->first_unresolved, sizeof(sum->first_unresolved),
				         "span %s of trace %.*s (%s)", slash != NULL ? slash + 1 : "?", tl, key,
				         json_string_value(json_array_get(e, 1)));
			}
		}
	}
	return rc;
}

void co_export_jaeger_fini(co_export_jaeger *j)
{
	if (j == NULL)
		return;
	json_decref(j->ids);
	json_decref(j->refs);
	j->ids = NULL;
	j->refs = NULL;
}
