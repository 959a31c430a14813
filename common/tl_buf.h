/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable byte buffer created with its maximum size. Growing past the
 * maximum fails with TL_ELIMIT and leaves the contents as they were, so a
 * network-fed buffer can never grow without bound.
 */
#ifndef TL_BUF_H
#define TL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tl_buf {
	uint8_t *data; /* NULL until the first append */
	size_t len;
	size_t cap;
	size_t max;
} tl_buf;

/* Embedded init: empty, no allocation. max == 0 means SIZE_MAX. */
void tl_buf_init(tl_buf *b, size_t max);

/* Frees the storage; b may be reused after tl_buf_init. Accepts NULL. */
void tl_buf_fini(tl_buf *b);

/* Ensures room for extra more bytes. Returns 0, TL_ELIMIT or -ENOMEM. */
int tl_buf_reserve(tl_buf *b, size_t extra);

/* Appends n bytes (borrows p). Returns 0, TL_ELIMIT or -ENOMEM; on error b is unchanged. */
int tl_buf_append(tl_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string without its NUL. */
int tl_buf_puts(tl_buf *b, const char *s);

/* Appends printf output (no NUL counted in len, but one is kept after data[len]). */
int tl_buf_printf(tl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Empties the buffer, keeping its storage. */
void tl_buf_reset(tl_buf *b);

/*
 * Hands the storage to the caller (caller frees with free()) and leaves b
 * empty. *len gets the length. Returns NULL if the buffer never allocated.
 */
uint8_t *tl_buf_steal(tl_buf *b, size_t *len);

#endif
