/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A structural check of protobuf wire bytes against a protobuf-c message
 * descriptor, run before protobuf_c_message_unpack. It walks the bytes with
 * an explicit stack (never recursion), so a hostile body cannot make the
 * decoder recurse deeper than the bound given here, and it reports what is
 * wrong with the byte offset and field name, which unpack cannot.
 *
 * Checked: tags (field number 1..2^29-1, wire types 0, 1, 2, 5), varints (at
 * most 10 bytes, no overflow), lengths (no read past the enclosing message),
 * the wire type of every known field against its descriptor type (packed
 * repeated scalars included), no NUL byte inside string fields, and the
 * nesting depth of sub-messages. Unknown fields are skipped.
 */
#ifndef TL_PBWALK_H
#define TL_PBWALK_H

#include "tl_error.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Hard cap on message nesting, whatever max_depth asks for. */
#define TL_PBWALK_DEPTH_CAP 200

typedef struct tl_pbwalk_opts {
	unsigned max_depth; /* sub-message levels below the root (root = 0); capped at TL_PBWALK_DEPTH_CAP */
	/* Optional: count sub-messages of this type and fail past max_count (NULL: no counting). */
	const ProtobufCMessageDescriptor *count_desc;
	size_t max_count;
	const char *count_what; /* plural noun for the error message, e.g. "spans" */
} tl_pbwalk_opts;

/*
 * Walks buf[0..len) (borrows) as a message of type desc. Returns 0 when
 * protobuf_c_message_unpack will find the bytes well-formed; TL_EPARSE with
 * err naming the byte offset and field for a malformed or truncated body;
 * TL_ELIMIT when nesting or the counted messages exceed o.
 */
int tl_pbwalk_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len, const tl_pbwalk_opts *o,
                    tl_errmsg *err);

#endif
