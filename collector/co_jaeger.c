/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stored traces in Jaeger's JSON model, and the small parsers of
 * jaeger-query's HTTP API; see co_jaeger.h. Everything is built with
 * jansson; a NULL from any constructor means ENOMEM and unwinds the whole
 * conversion.
 */
#include "co_jaeger.h"

#include "co_analyze.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_time.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JS_MAX_SAFE_INTEGER ((INT64_C(1) << 53) - 1)
#define MAX_DEPTH 64 /* nesting of arrays and maps inside one value */

/* ---- small JSON helpers ---- */

/* A JSON string of s (NULL: ""). Strings were checked for UTF-8 at intake; anything else is replaced, not lost. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s != NULL ? s : "");
	return j != NULL ? j : json_string("\xef\xbf\xbd");
}

/* Adds value to o under key, taking ownership of value. Returns false (value freed) on ENOMEM. */
static bool put(json_t *o, const char *key, json_t *value)
{
	return value != NULL && json_object_set_new(o, key, value) == 0;
}

static bool push(json_t *a, json_t *value)
{
	return value != NULL && json_array_append_new(a, value) == 0;
}

/* Lowercase hex of b as a JSON string. */
static json_t *hex_of(const uint8_t *b, size_t n)
{
	char buf[2 * 64 + 1];
	if (n > 64)
		n = 64;
	tl_hex_encode(b, n, buf);
	return json_string(buf);
}

/* A trace id as Jaeger prints it: 16 digits when the high half is zero, else 32. */
static json_t *trace_id_json(const ProtobufCBinaryData *id)
{
	if (id->len == 16 && tl_id_is_zero(id->data, 8))
		return hex_of(id->data + 8, 8);
	return hex_of(id->data, id->len);
}

static json_t *span_id_json(const ProtobufCBinaryData *id)
{
	return hex_of(id->data, id->len);
}

static json_t *base64_of(const uint8_t *b, size_t n)
{
	size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(cap);
	if (s == NULL)
		return NULL;
	sodium_bin2base64(s, cap, b, n, sodium_base64_VARIANT_ORIGINAL);
	json_t *j = json_string(s);
	free(s);
	return j;
}

/* A double as JSON; NaN and the infinities, which JSON cannot hold, as Go's strconv spells them. */
static json_t *real_of(double d)
{
	if (isnan(d))
		return json_string("NaN");
	if (isinf(d))
		return json_string(d > 0 ? "+Inf" : "-Inf");
	return json_real(d);
}

/* ---- values ---- */

/* A value as plain JSON (inside arrays and maps, which Jaeger carries as JSON text). */
static json_t *plain_json(const tl_pb_anyvalue *v, int depth)
{
	if (v == NULL || depth > MAX_DEPTH)
		return json_null();
	switch (v->value_case) {
	case TL_PB_ANY_STRING:
		return jstr(v->string_value);
	case TL_PB_ANY_BOOL:
		return json_boolean(v->bool_value);
	case TL_PB_ANY_INT:
		return json_integer((json_int_t)v->int_value);
	case TL_PB_ANY_DOUBLE:
		return real_of(v->double_value);
	case TL_PB_ANY_BYTES:
		return base64_of(v->bytes_value.data, v->bytes_value.len);
	case TL_PB_ANY_ARRAY: {
		json_t *a = json_array();
		const tl_pb_arrayvalue *av = v->array_value;
		for (size_t i = 0; a != NULL && av != NULL && i < av->n_values; i++)
			if (!push(a, plain_json(av->values[i], depth + 1))) {
				json_decref(a);
				return NULL;
			}
		return a;
	}
	case TL_PB_ANY_KVLIST: {
		json_t *o = json_object();
		const tl_pb_kvlist *kl = v->kvlist_value;
		for (size_t i = 0; o != NULL && kl != NULL && i < kl->n_values; i++) {
			const tl_pb_keyvalue *kv = kl->values[i];
			if (kv == NULL || kv->key == NULL)
				continue;
			if (!put(o, kv->key, plain_json(kv->value, depth + 1))) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	default:
		return json_null();
	}
}

/* {"key", "type", "value"} for an OTLP value; NULL on ENOMEM. */
static json_t *tag_of(const char *key, const tl_pb_anyvalue *v)
{
	const char *type = "string";
	json_t *val = NULL;
	int vc = v != NULL ? (int)v->value_case : (int)TL_PB_ANY_NONE;
	switch (vc) {
	case TL_PB_ANY_STRING:
		val = jstr(v->string_value);
		break;
	case TL_PB_ANY_BOOL:
		type = "bool";
		val = json_boolean(v->bool_value);
		break;
	case TL_PB_ANY_INT:
		type = "int64";
		if (v->int_value > JS_MAX_SAFE_INTEGER || v->int_value < -JS_MAX_SAFE_INTEGER) {
			char buf[24];
			snprintf(buf, sizeof(buf), "%lld", (long long)v->int_value);
			val = json_string(buf);
		} else {
			val = json_integer((json_int_t)v->int_value);
		}
		break;
	case TL_PB_ANY_DOUBLE:
		type = "float64";
		val = real_of(v->double_value);
		break;
	case TL_PB_ANY_BYTES:
		type = "binary";
		val = base64_of(v->bytes_value.data, v->bytes_value.len);
		break;
	case TL_PB_ANY_ARRAY:
	case TL_PB_ANY_KVLIST: {
		json_t *j = plain_json(v, 0);
		char *text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		json_decref(j);
		if (text == NULL)
			return NULL;
		val = json_string(text);
		free(text);
		break;
	}
	default:
		val = json_string("");
		break;
	}
	/* json_pack takes the "o" references even when it fails (a NULL among them fails it). */
	return json_pack("{s:o,s:s,s:o}", "key", jstr(key), "type", type, "value", val);
}

static json_t *str_tag(const char *key, const char *value)
{
	tl_pb_anyvalue v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	v.value_case = TL_PB_ANY_STRING;
	v.string_value = (char *)value;
	return tag_of(key, &v);
}

/* Appends a tag per attribute (skipping one key when skip is not NULL). Returns false on ENOMEM. */
static bool push_attrs(json_t *tags, tl_pb_keyvalue *const *kv, size_t n, const char *skip)
{
	for (size_t i = 0; i < n; i++) {
		if (kv[i] == NULL || kv[i]->key == NULL)
			continue;
		if (skip != NULL && strcmp(kv[i]->key, skip) == 0)
			continue;
		if (!push(tags, tag_of(kv[i]->key, kv[i]->value)))
			return false;
	}
	return true;
}

static const tl_pb_anyvalue *attr_get(tl_pb_keyvalue *const *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (kv[i] != NULL && kv[i]->key != NULL && strcmp(kv[i]->key, key) == 0)
			return kv[i]->value;
	return NULL;
}

/* ---- processes ---- */

/* The process of a resource: {"serviceName", "tags"}. */
static json_t *process_of(const tl_pb_resource *r)
{
	tl_pb_keyvalue *const *kv = r != NULL ? r->attributes : NULL;
	size_t n = r != NULL ? r->n_attributes : 0;
	const tl_pb_anyvalue *sv = attr_get(kv, n, "service.name");
	json_t *name = NULL;
	if (sv == NULL)
		name = json_string(CO_JAEGER_NO_SERVICE);
	else if (sv->value_case == TL_PB_ANY_STRING)
		name = jstr(sv->string_value);
	else {
		/* A service.name that is not a string: its JSON text (7, true, [...]). */
		json_t *j = plain_json(sv, 0);
		char *text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		json_decref(j);
		name = text != NULL ? jstr(text) : NULL;
		free(text);
	}
	json_t *tags = json_array();
	if (tags != NULL && !push_attrs(tags, kv, n, "service.name")) {
		json_decref(tags);
		tags = NULL;
	}
	return json_pack("{s:o,s:o}", "serviceName", name, "tags", tags);
}

/*
 * The process id of r's process, adding it to processes when new. seen maps
 * a process's compact JSON to its id. Returns a borrowed id string, or NULL
 * on ENOMEM.
 */
static const char *process_id(json_t *processes, json_t *seen, const tl_pb_resource *r)
{
	json_t *p = process_of(r);
	char *key = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
	if (key == NULL) {
		json_decref(p);
		return NULL;
	}
	json_t *id = json_object_get(seen, key);
	if (id == NULL) {
		char buf[32];
		snprintf(buf, sizeof(buf), "p%zu", json_object_size(processes) + 1);
		if (!put(processes, buf, json_incref(p)) || !put(seen, key, json_string(buf))) {
			free(key);
			json_decref(p);
			return NULL;
		}
		id = json_object_get(seen, key);
	}
	free(key);
	json_decref(p);
	return json_string_value(id);
}

/* ---- spans ---- */

static const char *kind_names[] = {"", "internal", "server", "client", "producer", "consumer"};

const char *co_jaeger_kind_name(int otlp_kind)
{
	if (otlp_kind < 0 || otlp_kind >= (int)(sizeof(kind_names) / sizeof(kind_names[0])))
		return "";
	return kind_names[otlp_kind];
}

int co_jaeger_kind_from_name(const char *s)
{
	if (s == NULL || s[0] == '\0')
		return -1;
	for (int i = 1; i < (int)(sizeof(kind_names) / sizeof(kind_names[0])); i++)
		if (strcmp(s, kind_names[i]) == 0)
			return i;
	return -2;
}

static bool id_set(const ProtobufCBinaryData *id)
{
	return id->len > 0 && !tl_id_is_zero(id->data, id->len);
}

static bool same_id(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static json_t *ref_of(const char *type, const ProtobufCBinaryData *trace, const ProtobufCBinaryData *span)
{
	return json_pack("{s:s,s:o,s:o}", "refType", type, "traceID", trace_id_json(trace), "spanID",
	                 span_id_json(span));
}

/* The parent first (CHILD_OF), then the links; a link to the parent only sets the parent's type. */
static json_t *references_of(const tl_pb_span *sp, const ProtobufCBinaryData *trace_id)
{
	json_t *refs = json_array();
	if (refs == NULL)
		return NULL;
	bool parent = id_set(&sp->parent_span_id);
	if (parent && !push(refs, ref_of("CHILD_OF", trace_id, &sp->parent_span_id)))
		goto fail;
	for (size_t i = 0; i < sp->n_links; i++) {
		const tl_pb_link *l = sp->links[i];
		if (l == NULL)
			continue;
		const tl_pb_anyvalue *rt = attr_get(l->attributes, l->n_attributes, "opentracing.ref_type");
		bool child_of = rt != NULL && rt->value_case == TL_PB_ANY_STRING && rt->string_value != NULL &&
		                strcmp(rt->string_value, "child_of") == 0;
		const char *type = child_of ? "CHILD_OF" : "FOLLOWS_FROM";
		if (parent && same_id(&l->trace_id, trace_id) && same_id(&l->span_id, &sp->parent_span_id)) {
			if (!put(json_array_get(refs, 0), "refType", json_string(type)))
				goto fail;
			continue;
		}
		if (!push(refs, ref_of(type, &l->trace_id, &l->span_id)))
			goto fail;
	}
	return refs;
fail:
	json_decref(refs);
	return NULL;
}

static json_t *tags_of(const tl_pb_span *sp, const tl_pb_scope *scope)
{
	json_t *tags = json_array();
	if (tags == NULL)
		return NULL;
	if (scope != NULL && scope->name != NULL && scope->name[0] != '\0' &&
	    !push(tags, str_tag("otel.scope.name", scope->name)))
		goto fail;
	if (scope != NULL && scope->version != NULL && scope->version[0] != '\0' &&
	    !push(tags, str_tag("otel.scope.version", scope->version)))
		goto fail;
	if (!push_attrs(tags, sp->attributes, sp->n_attributes, NULL))
		goto fail;
	const char *kind = co_jaeger_kind_name((int)sp->kind);
	if (kind[0] != '\0' && !push(tags, str_tag("span.kind", kind)))
		goto fail;
	int code = sp->status != NULL ? (int)sp->status->code : (int)TL_PB_STATUS_UNSET;
	if (code == TL_PB_STATUS_OK && !push(tags, str_tag("otel.status_code", "OK")))
		goto fail;
	if (code == TL_PB_STATUS_ERROR) {
		tl_pb_anyvalue t = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
		t.value_case = TL_PB_ANY_BOOL;
		t.bool_value = 1;
		if (!push(tags, str_tag("otel.status_code", "ERROR")) || !push(tags, tag_of("error", &t)))
			goto fail;
	}
	if (sp->status != NULL && sp->status->message != NULL && sp->status->message[0] != '\0' &&
	    !push(tags, str_tag("otel.status_description", sp->status->message)))
		goto fail;
	if (sp->trace_state != NULL && sp->trace_state[0] != '\0' &&
	    !push(tags, str_tag("w3c.tracestate", sp->trace_state)))
		goto fail;
	return tags;
fail:
	json_decref(tags);
	return NULL;
}

static json_t *logs_of(const tl_pb_span *sp)
{
	json_t *logs = json_array();
	for (size_t i = 0; logs != NULL && i < sp->n_events; i++) {
		const tl_pb_event *e = sp->events[i];
		if (e == NULL)
			continue;
		json_t *fields = json_array();
		bool ok = fields != NULL;
		if (ok && e->name != NULL && e->name[0] != '\0' &&
		    attr_get(e->attributes, e->n_attributes, "event") == NULL)
			ok = push(fields, str_tag("event", e->name));
		ok = ok && push_attrs(fields, e->attributes, e->n_attributes, NULL);
		if (!ok) {
			json_decref(fields);
			fields = NULL;
		}
		json_t *log =
		        json_pack("{s:I,s:o}", "timestamp", (json_int_t)(e->time_unix_nano / 1000), "fields", fields);
		if (!push(logs, log)) {
			json_decref(logs);
			return NULL;
		}
	}
	return logs;
}

/* Takes warnings (NULL: JSON null). */
static json_t *span_of(const tl_pb_span *sp, const tl_pb_scope *scope, const char *pid,
                       const ProtobufCBinaryData *trace_id, json_t *warnings)
{
	const ProtobufCBinaryData *tid = sp->trace_id.len > 0 ? &sp->trace_id : trace_id;
	uint64_t start = sp->start_time_unix_nano, end = sp->end_time_unix_nano;
	return json_pack("{s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:o,s:s,s:o,s:I}", "traceID", trace_id_json(tid), "spanID",
	                 span_id_json(&sp->span_id), "operationName", jstr(sp->name), "references",
	                 references_of(sp, tid), "startTime", (json_int_t)(start / 1000), "duration",
	                 (json_int_t)(end > start ? (end - start) / 1000 : 0), "tags", tags_of(sp, scope), "logs",
	                 logs_of(sp), "processID", pid, "warnings", warnings != NULL ? warnings : json_null(), "flags",
	                 (json_int_t)(sp->flags & 0xff));
}

/* ---- warnings (co_analyze.h): what the UI should know about a span, never rewritten ---- */

static bool warn(json_t **list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool warn(json_t **list, const char *fmt, ...)
{
	char m[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (*list == NULL && (*list = json_array()) == NULL)
		return false;
	return push(*list, jstr(m));
}

static void free_warnings(json_t **w, size_t n)
{
	for (size_t i = 0; w != NULL && i < n; i++)
		json_decref(w[i]);
	free(w);
}

/*
 * Per span, by its position in tr (resource, scope, span order): a list of
 * warnings or NULL. *out stays NULL when no span needs one, or when the
 * trace is too large to analyse. Returns 0 or -ENOMEM.
 */
static int span_warnings(const tl_pb_trace_result *tr, json_t ***out, size_t *n)
{
	co_analysis *a = NULL;
	*out = NULL;
	*n = 0;
	int rc = co_analyze(tr, &a);
	if (rc != 0)
		return rc == TL_ELIMIT ? 0 : rc;
	if (a->n_orphans + a->n_dup_ids + a->n_skewed == 0) {
		co_analysis_free(a);
		return 0;
	}
	json_t **w = calloc(a->count, sizeof(*w));
	bool ok = w != NULL;
	for (size_t i = 0; ok && i < a->count; i++) {
		const co_an_span *s = &a->spans[i];
		const tl_pb_span *sp = s->span;
		json_t **list = &w[s->arrival];
		char pid[2 * 64 + 1] = "", sid[2 * 64 + 1] = "", d[32];
		tl_hex_encode(sp->parent_span_id.data, sp->parent_span_id.len > 64 ? 64 : sp->parent_span_id.len, pid);
		tl_hex_encode(sp->span_id.data, sp->span_id.len > 64 ? 64 : sp->span_id.len, sid);
		if ((s->flags & CO_AN_CYCLE) != 0)
			ok = warn(list, "the parent link to %s closes a cycle of parent links: it was cut", pid);
		else if ((s->flags & CO_AN_ORPHAN) != 0)
			ok = warn(list, "parent span %s is not in this trace (it never arrived); shown as a root", pid);
		if (ok && (s->flags & CO_AN_DUP_ID) != 0)
			ok = warn(list, "span id %s is used by more than one span of this trace", sid);
		if (ok && (s->flags & CO_AN_SKEW) != 0 && s->skew_before_ns > 0) {
			tl_format_duration(s->skew_before_ns, d, sizeof(d));
			ok = warn(list, "clock skew: starts %s before its parent %s (times are shown as recorded)", d,
			          pid);
		}
		if (ok && (s->flags & CO_AN_SKEW) != 0 && s->skew_after_ns > 0) {
			tl_format_duration(s->skew_after_ns, d, sizeof(d));
			ok = warn(list, "clock skew: ends %s after its parent %s (times are shown as recorded)", d,
			          pid);
		}
	}
	size_t count = a->count;
	co_analysis_free(a);
	if (!ok) {
		free_warnings(w, count);
		return -ENOMEM;
	}
	*out = w;
	*n = count;
	return 0;
}

json_t *co_jaeger_trace(const tl_pb_trace_result *tr)
{
	json_t **warnings = NULL;
	size_t n_warnings = 0, at = 0;
	if (span_warnings(tr, &warnings, &n_warnings) != 0)
		return NULL;
	json_t *spans = json_array(), *processes = json_object(), *seen = json_object();
	if (spans == NULL || processes == NULL || seen == NULL)
		goto fail;
	/* The trace's id; a result without one takes its first span's. */
	const ProtobufCBinaryData *tid = &tr->trace_id;
	for (size_t i = 0; tid->len == 0 && i < tr->n_resource_spans; i++)
		for (size_t j = 0; tid->len == 0 && j < tr->resource_spans[i]->n_scope_spans; j++)
			if (tr->resource_spans[i]->scope_spans[j]->n_spans > 0)
				tid = &tr->resource_spans[i]->scope_spans[j]->spans[0]->trace_id;
	for (size_t i = 0; i < tr->n_resource_spans; i++) {
		const tl_pb_resource_spans *rs = tr->resource_spans[i];
		const char *pid = NULL;
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const tl_pb_scope_spans *ss = rs->scope_spans[j];
			for (size_t k = 0; k < ss->n_spans; k++) {
				if (pid == NULL && (pid = process_id(processes, seen, rs->resource)) == NULL)
					goto fail;
				json_t *w = NULL;
				if (warnings != NULL && at < n_warnings) {
					w = warnings[at];
					warnings[at] = NULL;
				}
				at++;
				if (!push(spans, span_of(ss->spans[k], ss->scope, pid, tid, w)))
					goto fail;
			}
		}
	}
	json_decref(seen);
	free_warnings(warnings, n_warnings);
	return json_pack("{s:o,s:o,s:o,s:n}", "traceID", trace_id_json(tid), "spans", spans, "processes", processes,
	                 "warnings");
fail:
	free_warnings(warnings, n_warnings);
	json_decref(seen);
	json_decref(spans);
	json_decref(processes);
	return NULL;
}

/* ---- the HTTP API's pieces ---- */

json_t *co_jaeger_envelope(json_t *data, size_t total, json_t *errors)
{
	return json_pack("{s:o,s:I,s:i,s:i,s:o}", "data", data != NULL ? data : json_null(), "total", (json_int_t)total,
	                 "limit", 0, "offset", 0, "errors", errors != NULL ? errors : json_null());
}

json_t *co_jaeger_error_entry(int code, const char *msg, const char *trace_id)
{
	if (trace_id != NULL)
		return json_pack("{s:i,s:o,s:o}", "code", code, "msg", jstr(msg), "traceID", jstr(trace_id));
	return json_pack("{s:i,s:o}", "code", code, "msg", jstr(msg));
}

json_t *co_jaeger_error(int code, const char *msg)
{
	json_t *errors = json_array();
	if (errors == NULL || !push(errors, co_jaeger_error_entry(code, msg, NULL))) {
		json_decref(errors);
		return NULL;
	}
	return co_jaeger_envelope(NULL, 0, errors);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int co_jaeger_parse_duration(const char *s, uint64_t *out_ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {{"ns", 1},
	             {"us", 1000},
	             {"\xc2\xb5s", 1000}, /* U+00B5 MICRO SIGN */
	             {"\xce\xbcs", 1000}, /* U+03BC GREEK SMALL LETTER MU */
	             {"ms", 1000000},
	             {"s", UINT64_C(1000000000)},
	             {"m", UINT64_C(60000000000)},
	             {"h", UINT64_C(3600000000000)}};
	const uint64_t max = (uint64_t)INT64_MAX;
	const char *p = s;
	if (p == NULL)
		return TL_EPARSE;
	if (*p == '+')
		p++;
	if (strcmp(p, "0") == 0) {
		*out_ns = 0;
		return 0;
	}
	if (*p == '\0')
		return TL_EPARSE;
	uint64_t total = 0;
	while (*p != '\0') {
		bool pre = false, post = false;
		uint64_t whole = 0;
		while (is_digit(*p)) {
			pre = true;
			if (whole > (max - 9) / 10)
				return TL_ELIMIT;
			whole = whole * 10 + (uint64_t)(*p++ - '0');
		}
		uint64_t frac = 0, scale = 1;
		if (*p == '.') {
			p++;
			while (is_digit(*p)) {
				post = true;
				if (scale < UINT64_C(1000000000)) { /* finer than 1e-9 of an hour is below a
					                               nanosecond's worth */
					frac = frac * 10 + (uint64_t)(*p - '0');
					scale *= 10;
				}
				p++;
			}
		}
		if (!pre && !post)
			return TL_EPARSE;
		const char *u = p;
		while (*p != '\0' && *p != '.' && !is_digit(*p))
			p++;
		size_t ulen = (size_t)(p - u);
		uint64_t mult = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0)
				mult = units[i].ns;
		if (mult == 0)
			return TL_EPARSE;
		if (whole > max / mult)
			return TL_ELIMIT;
		uint64_t v = whole * mult;
		/* frac < scale <= 1e9, so (mult % scale) * frac < 1e18 fits. */
		v += (mult / scale) * frac + (mult % scale) * frac / scale;
		if (v > max || total > max - v)
			return TL_ELIMIT;
		total += v;
	}
	*out_ns = total;
	return 0;
}

int co_jaeger_parse_trace_id(const char *s, uint8_t out[16])
{
	size_t n = s != NULL ? strlen(s) : 0;
	if (n == 0 || n > 32)
		return TL_EPARSE;
	char padded[33];
	memset(padded, '0', 32 - n);
	memcpy(padded + 32 - n, s, n);
	padded[32] = '\0';
	return tl_hex_decode(padded, 32, out, 16) == 0 ? 0 : TL_EPARSE;
}
