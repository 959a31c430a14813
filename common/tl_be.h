/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Big-endian integers in keys and fixed-size values, and the protobuf
 * base-128 varint, shared by the modules that lay out bytes by hand (store
 * keys, the spool's record headers, histogram cells). Big-endian so that
 * LMDB's byte order sorts numbers by value.
 */
#ifndef TL_BE_H
#define TL_BE_H
#include <stddef.h>
#include <stdint.h>

static inline void tl_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void tl_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t tl_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void tl_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t tl_get_be64(const void *vp)
{
	const uint8_t *p = vp;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Writes v as a protobuf varint (at most 10 bytes) at p. Returns the bytes written. */
static inline size_t tl_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

#endif
