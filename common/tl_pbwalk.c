/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The protobuf wire walk. One loop reads one field at a time; entering a
 * known sub-message pushes a frame (descriptor, end offset) on a fixed
 * array, and reaching a frame's end pops it. Every length is checked
 * against the end of the innermost frame, so no field can reach past its
 * parent, and no offset arithmetic can overflow.
 */
#include "tl_pbwalk.h"

#include <stdio.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

typedef struct frame {
	const ProtobufCMessageDescriptor *desc;
	size_t end;
} frame;

/* read_varint's general case. */
static int read_varint_slow(const uint8_t *buf, size_t *pos, size_t end, uint64_t *out)
{
	uint64_t v = 0;
	size_t p = *pos;
	for (unsigned i = 0; i < 10; i++) {
		if (p >= end)
			return -1;
		uint8_t b = buf[p++];
		if (i == 9 && b > 1)
			return -2;
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*pos = p;
			*out = v;
			return 0;
		}
	}
	return -2;
}

/* Reads a varint of at most 10 bytes from buf[*pos..end). 0 ok, -1 truncated, -2 too long or overflowing. */
static inline int read_varint(const uint8_t *buf, size_t *pos, size_t end, uint64_t *out)
{
	size_t p = *pos;
	if (p < end && buf[p] < 0x80) { /* most tags and lengths: one byte */
		*out = buf[p];
		*pos = p + 1;
		return 0;
	}
	return read_varint_slow(buf, pos, end, out);
}

/* The field numbered num, or NULL. Generated descriptors list fields by number, so dense ones index directly. */
static inline const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, uint64_t num)
{
	if (num - 1 < d->n_fields && d->fields[num - 1].id == num)
		return &d->fields[num - 1];
	return protobuf_c_message_descriptor_get_field(d, (unsigned)num);
}

static const char *type_name(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
		return "int32";
	case PROTOBUF_C_TYPE_SINT32:
		return "sint32";
	case PROTOBUF_C_TYPE_SFIXED32:
		return "sfixed32";
	case PROTOBUF_C_TYPE_INT64:
		return "int64";
	case PROTOBUF_C_TYPE_SINT64:
		return "sint64";
	case PROTOBUF_C_TYPE_SFIXED64:
		return "sfixed64";
	case PROTOBUF_C_TYPE_UINT32:
		return "uint32";
	case PROTOBUF_C_TYPE_FIXED32:
		return "fixed32";
	case PROTOBUF_C_TYPE_UINT64:
		return "uint64";
	case PROTOBUF_C_TYPE_FIXED64:
		return "fixed64";
	case PROTOBUF_C_TYPE_FLOAT:
		return "float";
	case PROTOBUF_C_TYPE_DOUBLE:
		return "double";
	case PROTOBUF_C_TYPE_BOOL:
		return "bool";
	case PROTOBUF_C_TYPE_ENUM:
		return "enum";
	case PROTOBUF_C_TYPE_STRING:
		return "string";
	case PROTOBUF_C_TYPE_BYTES:
		return "bytes";
	case PROTOBUF_C_TYPE_MESSAGE:
		return "message";
	}
	return "?";
}

/* The wire type a scalar of type t uses outside packed encoding. */
static int wire_type_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return WT_I32;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return WT_I64;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return WT_LEN;
	default:
		return WT_VARINT;
	}
}

static const char *wire_name(unsigned wt)
{
	static const char *const names[8] = {"varint",    "fixed64", "length-delimited", "start-group",
	                                     "end-group", "fixed32", "invalid (6)",      "invalid (7)"};
	return names[wt & 7];
}

/* Formats "field N (name)" or "field N" into buf. */
static const char *field_label(char *buf, size_t n, uint64_t num, const ProtobufCFieldDescriptor *f)
{
	if (f != NULL)
		snprintf(buf, n, "field %llu (%s)", (unsigned long long)num, f->name);
	else
		snprintf(buf, n, "field %llu", (unsigned long long)num);
	return buf;
}

/* Checks the body of a packed repeated scalar field. */
static int packed_ok(const uint8_t *buf, size_t pos, size_t end, ProtobufCType t)
{
	size_t n = end - pos;
	switch (wire_type_of(t)) {
	case WT_I32:
		return n % 4 == 0;
	case WT_I64:
		return n % 8 == 0;
	default:
		while (pos < end) {
			uint64_t v;
			if (read_varint(buf, &pos, end, &v) != 0)
				return 0;
		}
		return 1;
	}
}

int tl_pbwalk_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len, const tl_pbwalk_opts *o,
                    tl_errmsg *err)
{
	frame stack[TL_PBWALK_DEPTH_CAP + 1];
	unsigned max_depth = o->max_depth > TL_PBWALK_DEPTH_CAP ? TL_PBWALK_DEPTH_CAP : o->max_depth;
	unsigned top = 0;
	size_t pos = 0, counted = 0;
	char lbl[96];

	stack[0].desc = desc;
	stack[0].end = len;
	for (;;) {
		while (pos == stack[top].end) {
			if (top == 0)
				return 0;
			top--;
		}
		const size_t end = stack[top].end;
		const size_t at = pos;
		uint64_t tag;
		int rc = read_varint(buf, &pos, end, &tag);
		if (rc == -1)
			return tl_errf(err, TL_EPARSE, "truncated tag at byte %zu", at);
		if (rc != 0 || pos - at > 5 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
			return tl_errf(err, TL_EPARSE, "invalid tag at byte %zu", at);
		const uint64_t num = tag >> 3;
		const unsigned wt = (unsigned)(tag & 7);
		const ProtobufCFieldDescriptor *f = find_field(stack[top].desc, num);

		if (wt == WT_SGROUP || wt == WT_EGROUP || wt > WT_I32)
			return tl_errf(err, TL_EPARSE, "unsupported wire type %s in %s at byte %zu", wire_name(wt),
			               field_label(lbl, sizeof lbl, num, f), at);
		if (f != NULL && wt != (unsigned)wire_type_of(f->type) &&
		    !(wt == WT_LEN && f->label == PROTOBUF_C_LABEL_REPEATED)) {
			return tl_errf(err, TL_EPARSE, "wire type %s does not match %s %s at byte %zu", wire_name(wt),
			               type_name(f->type), field_label(lbl, sizeof lbl, num, f), at);
		}

		uint64_t v;
		switch (wt) {
		case WT_VARINT:
			rc = read_varint(buf, &pos, end, &v);
			if (rc != 0)
				return tl_errf(err, TL_EPARSE, "%s varint %s at byte %zu",
				               rc == -1 ? "truncated" : "overlong",
				               field_label(lbl, sizeof lbl, num, f), at);
			break;
		case WT_I64:
		case WT_I32: {
			size_t need = wt == WT_I64 ? 8 : 4;
			if (end - pos < need)
				return tl_errf(err, TL_EPARSE, "truncated %s %s at byte %zu", wire_name(wt),
				               field_label(lbl, sizeof lbl, num, f), at);
			pos += need;
			break;
		}
		case WT_LEN: {
			const size_t lat = pos;
			rc = read_varint(buf, &pos, end, &v);
			if (rc == 0 && v > end - pos)
				rc = -1;
			if (rc == -1)
				return tl_errf(err, TL_EPARSE, "truncated length-delimited %s at byte %zu",
				               field_label(lbl, sizeof lbl, num, f), at);
			/* protobuf-c reads lengths as uint32 varints of at most 5 bytes. */
			if (rc != 0 || v > UINT32_MAX || pos - lat > 5)
				return tl_errf(err, TL_EPARSE, "invalid length of %s at byte %zu",
				               field_label(lbl, sizeof lbl, num, f), at);
			if (f == NULL || f->type == PROTOBUF_C_TYPE_BYTES) {
				pos += v;
			} else if (f->type == PROTOBUF_C_TYPE_STRING) {
				if (memchr(buf + pos, 0, v) != NULL)
					return tl_errf(err, TL_EPARSE, "NUL byte in string %s at byte %zu",
					               field_label(lbl, sizeof lbl, num, f), at);
				pos += v;
			} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
				const ProtobufCMessageDescriptor *sub = f->descriptor;
				if (top >= max_depth)
					return tl_errf(err, TL_ELIMIT,
					               "nesting deeper than %u messages at %s, byte %zu", max_depth,
					               field_label(lbl, sizeof lbl, num, f), at);
				if (o->count_desc != NULL && sub == o->count_desc && ++counted > o->max_count)
					return tl_errf(err, TL_ELIMIT, "more than %zu %s (%s at byte %zu)",
					               o->max_count, o->count_what != NULL ? o->count_what : "messages",
					               field_label(lbl, sizeof lbl, num, f), at);
				stack[++top] = (frame){sub, pos + v};
			} else {
				/* packed repeated scalars */
				if (!packed_ok(buf, pos, pos + v, f->type))
					return tl_errf(err, TL_EPARSE, "malformed packed %s at byte %zu",
					               field_label(lbl, sizeof lbl, num, f), at);
				pos += v;
			}
			break;
		}
		}
	}
}
