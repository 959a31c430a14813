/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/JSON decoding: jansson parses the body, then one converter driven by
 * the protobuf-c descriptors fills the same structs protobuf decoding
 * produces, so validation and everything after it see no difference.
 *
 * The mapping follows the protobuf JSON mapping with OTLP's exceptions:
 * field names in lowerCamelCase (snake_case accepted), trace and span ids
 * as hex instead of base64, enums as integers (names accepted), 64-bit
 * integers as numbers or decimal strings, null as absent, unknown fields
 * ignored. Message nesting is bounded exactly as the protobuf wire walk
 * bounds it (tl_otlp_message_depth).
 */
#include "tl_otlp.h"

#include "tl_id.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jctx {
	ProtobufCAllocator *alloc; /* NULL: malloc */
	const tl_otlp_limits *lim;
	tl_errmsg *err;
	unsigned max_msg_depth;
	size_t spans;
	size_t plen;
	char path[200]; /* where the converter is, e.g. resourceSpans[0].scopeSpans[1] */
} jctx;

static void path_push(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void path_push(jctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = c->plen < sizeof c->path - 1 ? vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap) : 0;
	va_end(ap);
	if (n > 0)
		c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - 1 - c->plen;
}

static void path_pop(jctx *c, size_t to)
{
	c->plen = to;
	c->path[to] = '\0';
}

static int bad(jctx *c, int code, const char *what)
{
	return tl_errf(c->err, code, "%s: %s", c->plen > 0 ? c->path : "(root)", what);
}

static void *jalloc(jctx *c, size_t n)
{
	void *p = c->alloc != NULL ? c->alloc->alloc(c->alloc->allocator_data, n) : malloc(n);
	if (p == NULL)
		tl_errf(c->err, TL_ELIMIT, "decoded request exceeds %zu bytes", c->lim->max_decoded_bytes);
	return p;
}

/* True when the JSON key names the field: its proto name or its lowerCamelCase JSON name. */
static bool name_matches(const char *snake, const char *key)
{
	if (strcmp(snake, key) == 0)
		return true;
	while (*snake != '\0') {
		if (snake[0] == '_' && snake[1] != '\0') {
			if (*key != toupper((unsigned char)snake[1]))
				return false;
			snake += 2;
		} else {
			if (*key != *snake)
				return false;
			snake++;
		}
		key++;
	}
	return *key == '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
	for (unsigned i = 0; i < d->n_fields; i++) {
		if (name_matches(d->fields[i].name, key))
			return &d->fields[i];
	}
	return NULL;
}

/* OTLP writes these bytes fields as hex, not base64. */
static bool is_hex_id(const ProtobufCFieldDescriptor *f)
{
	return strcmp(f->name, "trace_id") == 0 || strcmp(f->name, "span_id") == 0 ||
	       strcmp(f->name, "parent_span_id") == 0;
}

/* Parses a decimal integer string (optional '-' when signed) without overflow. */
static bool parse_dec(const char *s, bool is_signed, uint64_t *mag, bool *neg)
{
	*neg = false;
	*mag = 0;
	if (*s == '-' && is_signed) {
		*neg = true;
		s++;
	}
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned dgt = (unsigned)(*s - '0');
		if (*mag > (UINT64_MAX - dgt) / 10)
			return false;
		*mag = *mag * 10 + dgt;
	}
	return true;
}

/* Reads a JSON integer, integral real or decimal string as a signed value in [lo, hi]. */
static int get_signed(jctx *c, json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t x;
	if (json_is_integer(v)) {
		x = json_integer_value(v);
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
			return bad(c, TL_EPARSE, "integer out of range");
		x = (int64_t)d;
	} else if (json_is_string(v)) {
		uint64_t mag;
		bool neg;
		if (!parse_dec(json_string_value(v), true, &mag, &neg))
			return bad(c, TL_EPARSE, "expected a decimal integer");
		if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
			return bad(c, TL_EPARSE, "integer out of range");
		x = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	} else {
		return bad(c, TL_EPARSE, "expected integer");
	}
	if (x < lo || x > hi)
		return bad(c, TL_EPARSE, "integer out of range");
	*out = x;
	return 0;
}

static int get_unsigned(jctx *c, json_t *v, uint64_t hi, uint64_t *out)
{
	uint64_t x;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0)
			return bad(c, TL_EPARSE, "integer out of range");
		x = (uint64_t)i;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d != floor(d) || d < 0 || d >= 18446744073709551616.0)
			return bad(c, TL_EPARSE, "integer out of range");
		x = (uint64_t)d;
	} else if (json_is_string(v)) {
		bool neg;
		if (!parse_dec(json_string_value(v), false, &x, &neg))
			return bad(c, TL_EPARSE, "expected a decimal integer");
	} else {
		return bad(c, TL_EPARSE, "expected integer");
	}
	if (x > hi)
		return bad(c, TL_EPARSE, "integer out of range");
	*out = x;
	return 0;
}

static int get_double(jctx *c, json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return bad(c, TL_EPARSE, "expected number");
	const char *s = json_string_value(v);
	if (strcmp(s, "NaN") == 0) {
		*out = NAN;
	} else if (strcmp(s, "Infinity") == 0) {
		*out = INFINITY;
	} else if (strcmp(s, "-Infinity") == 0) {
		*out = -INFINITY;
	} else {
		char *end;
		errno = 0;
		double d = strtod(s, &end);
		/* strtod also takes hex, "inf" and "nan" spellings; JSON numbers start with a digit or '-'. */
		if (*s == '\0' || *end != '\0' || errno == ERANGE || !(isdigit((unsigned char)*s) || *s == '-') ||
		    !isfinite(d))
			return bad(c, TL_EPARSE, "expected number");
		*out = d;
	}
	return 0;
}

static int get_bytes(jctx *c, const ProtobufCFieldDescriptor *f, json_t *v, ProtobufCBinaryData *out)
{
	if (!json_is_string(v))
		return bad(c, TL_EPARSE, "expected string");
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	out->len = 0;
	out->data = NULL;
	if (n == 0)
		return 0;
	if (is_hex_id(f)) {
		/* Any even length decodes; tl_otlp_validate rejects the span if the length is wrong. */
		if (n % 2 != 0)
			return bad(c, TL_EPARSE, "odd number of hex digits");
		uint8_t *p = jalloc(c, n / 2);
		if (p == NULL)
			return TL_ELIMIT;
		out->data = p; /* attached now, so an error leaves a freeable message */
		if (tl_hex_decode(s, n, p, n / 2) != 0)
			return bad(c, TL_EPARSE, "expected hex digits");
		out->len = n / 2;
		return 0;
	}
	/* libsodium 1.0.18 takes any byte above 0x7f for a base64 digit: check the alphabet first. */
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
		      ch == '/' || ch == '-' || ch == '_' || ch == '='))
			return bad(c, TL_EPARSE, "expected base64");
	}
	size_t max = n / 4 * 3 + 3;
	uint8_t *p = jalloc(c, max);
	if (p == NULL)
		return TL_ELIMIT;
	out->data = p;
	/* Standard base64 as the mapping asks, but also URL-safe and unpadded, as protobuf parsers accept. */
	static const int variants[] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
	                               sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
	for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
		size_t bin_len;
		const char *end;
		if (sodium_base642bin(p, max, s, n, NULL, &bin_len, &end, variants[i]) == 0 && end == s + n) {
			out->len = bin_len;
			return 0;
		}
	}
	return bad(c, TL_EPARSE, "expected base64");
}

static int conv_message(jctx *c, const ProtobufCMessageDescriptor *d, json_t *obj, unsigned depth,
                        ProtobufCMessage **out);

/* Size of one element of a repeated field in its array. */
static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default:
		return sizeof(uint32_t);
	}
}

/* Converts one value of field f into dst (a struct member or an array element). */
static int conv_value(jctx *c, const ProtobufCFieldDescriptor *f, json_t *v, void *dst, unsigned depth)
{
	int rc;
	int64_t i = 0;
	uint64_t u = 0;

	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_is_string(v))
			return bad(c, TL_EPARSE, "expected string");
		size_t n = json_string_length(v);
		char *p = jalloc(c, n + 1);
		if (p == NULL)
			return TL_ELIMIT;
		memcpy(p, json_string_value(v), n);
		p[n] = '\0';
		*(char **)dst = p;
		return 0;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return get_bytes(c, f, v, dst);
	case PROTOBUF_C_TYPE_MESSAGE:
		return conv_message(c, f->descriptor, v, depth + 1, dst);
	case PROTOBUF_C_TYPE_ENUM:
		if (json_is_string(v)) {
			const ProtobufCEnumValue *ev =
			        protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, json_string_value(v));
			if (ev != NULL) {
				*(int *)dst = ev->value;
				return 0;
			}
		}
		if ((rc = get_signed(c, v, INT32_MIN, INT32_MAX, &i)) != 0)
			return json_is_string(v) ? bad(c, TL_EPARSE, "unknown enum value") : rc;
		*(int *)dst = (int)i;
		return 0;
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			return bad(c, TL_EPARSE, "expected true or false");
		*(protobuf_c_boolean *)dst = json_is_true(v);
		return 0;
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if ((rc = get_signed(c, v, INT32_MIN, INT32_MAX, &i)) != 0)
			return rc;
		*(int32_t *)dst = (int32_t)i;
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if ((rc = get_unsigned(c, v, UINT32_MAX, &u)) != 0)
			return rc;
		*(uint32_t *)dst = (uint32_t)u;
		return 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if ((rc = get_signed(c, v, INT64_MIN, INT64_MAX, &i)) != 0)
			return rc;
		*(int64_t *)dst = i;
		return 0;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if ((rc = get_unsigned(c, v, UINT64_MAX, &u)) != 0)
			return rc;
		*(uint64_t *)dst = u;
		return 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return get_double(c, v, dst);
	case PROTOBUF_C_TYPE_FLOAT: {
		double d = 0;
		if ((rc = get_double(c, v, &d)) != 0)
			return rc;
		*(float *)dst = (float)d;
		return 0;
	}
	}
	return bad(c, TL_EPARSE, "unsupported field type");
}

static int conv_repeated(jctx *c, const ProtobufCFieldDescriptor *f, json_t *v, ProtobufCMessage *msg, unsigned depth)
{
	if (!json_is_array(v))
		return bad(c, TL_EPARSE, "expected array");
	size_t n = json_array_size(v), es = elem_size(f->type);
	if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &opentelemetry__proto__trace__v1__span__descriptor) {
		c->spans += n;
		if (c->spans > c->lim->max_spans)
			return tl_errf(c->err, TL_ELIMIT, "%s: more than %zu spans", c->path, c->lim->max_spans);
	}
	if (n == 0)
		return 0;
	if (n > SIZE_MAX / es)
		return tl_errf(c->err, TL_ELIMIT, "decoded request exceeds %zu bytes", c->lim->max_decoded_bytes);
	uint8_t *arr = jalloc(c, n * es);
	if (arr == NULL)
		return TL_ELIMIT;
	memset(arr, 0, n * es);
	/* Attached before the elements are filled, so an error leaves a freeable message. */
	*(size_t *)((uint8_t *)msg + f->quantifier_offset) = n;
	*(void **)((uint8_t *)msg + f->offset) = arr;
	for (size_t i = 0; i < n; i++) {
		size_t save = c->plen;
		path_push(c, "[%zu]", i);
		json_t *e = json_array_get(v, i);
		int rc = json_is_null(e) && f->type != PROTOBUF_C_TYPE_MESSAGE
		                 ? bad(c, TL_EPARSE, "null in array")
		                 : conv_value(c, f, e, arr + i * es, depth);
		if (rc != 0)
			return rc;
		path_pop(c, save);
	}
	return 0;
}

/* depth: message level of obj (the request is 0). A null message yields an empty one. */
static int conv_message(jctx *c, const ProtobufCMessageDescriptor *d, json_t *obj, unsigned depth,
                        ProtobufCMessage **out)
{
	if (!json_is_object(obj) && !json_is_null(obj))
		return bad(c, TL_EPARSE, "expected object");
	if (depth > c->max_msg_depth)
		return tl_errf(c->err, TL_ELIMIT, "%s: nesting deeper than %u messages", c->path, c->max_msg_depth);
	ProtobufCMessage *msg = jalloc(c, d->sizeof_message);
	if (msg == NULL)
		return TL_ELIMIT;
	protobuf_c_message_init(d, msg);
	*out = msg;

	const char *key;
	json_t *v;
	uint64_t seen = 0; /* fields already set, by index (messages with more than 64 fields: not tracked) */
	json_object_foreach(obj, key, v)
	{
		const ProtobufCFieldDescriptor *f = find_field(d, key);
		if (f == NULL || json_is_null(v))
			continue;
		size_t save = c->plen;
		path_push(c, c->plen > 0 ? ".%s" : "%s", key);
		unsigned idx = (unsigned)(f - d->fields);
		if (idx < 64) {
			/* jansson keeps the last of duplicate keys; this catches "traceId" next to "trace_id". */
			if (seen & ((uint64_t)1 << idx))
				return bad(c, TL_EPARSE, "field given twice");
			seen |= (uint64_t)1 << idx;
		}
		uint8_t *qp = (uint8_t *)msg + f->quantifier_offset;
		int rc;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			rc = conv_repeated(c, f, v, msg, depth);
		} else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
			if (*(uint32_t *)qp != 0)
				return bad(c, TL_EPARSE, "more than one value of a oneof");
			*(uint32_t *)qp = f->id; /* set first, so an error leaves a freeable message */
			rc = conv_value(c, f, v, (uint8_t *)msg + f->offset, depth);
		} else {
			rc = conv_value(c, f, v, (uint8_t *)msg + f->offset, depth);
			if (rc == 0 && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
			    f->type != PROTOBUF_C_TYPE_MESSAGE)
				*(protobuf_c_boolean *)qp = 1;
		}
		if (rc != 0)
			return rc;
		path_pop(c, save);
	}
	return 0;
}

int tl_otlp_decode_json(const uint8_t *buf, size_t len, const tl_otlp_limits *lim, ProtobufCAllocator *alloc,
                        tl_pb_export_req **out, tl_errmsg *err)
{
	json_error_t je;
	jctx c = {.alloc = alloc, .lim = lim, .err = err, .max_msg_depth = tl_otlp_message_depth(lim)};

	*out = NULL;
	json_t *root = json_loadb((const char *)buf, len, 0, &je);
	if (root == NULL && json_error_code(&je) == json_error_stack_overflow)
		return tl_errf(err, TL_ELIMIT, "JSON nested too deeply at line %d, column %d", je.line, je.column);
	if (root == NULL)
		return tl_errf(err, TL_EPARSE, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return tl_errf(err, TL_EPARSE, "invalid OTLP/JSON: expected an object at the top");
	}
	ProtobufCMessage *m = NULL;
	int rc = conv_message(&c, &TL_PB_EXPORT_REQ_DESC, root, 0, &m);
	json_decref(root);
	if (rc != 0) {
		/* The partial message is always consistent: free it (a no-op walk for an arena). */
		if (m != NULL)
			protobuf_c_message_free_unpacked(m, alloc);
		return rc;
	}
	*out = (tl_pb_export_req *)m;
	return 0;
}
