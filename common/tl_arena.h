/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bump allocator with a hard cap, usable as a ProtobufCAllocator. Decoding
 * a request into an arena costs one free for the whole message, and the cap
 * bounds how much memory one hostile request can make us allocate: past it,
 * allocation fails and protobuf-c's unpack returns NULL.
 */
#ifndef TL_ARENA_H
#define TL_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct tl_arena_block tl_arena_block;

typedef struct tl_arena {
	tl_arena_block *head;
	tl_arena_block *spare; /* ordinary blocks kept by reset for reuse */
	size_t spare_bytes;
	size_t retain;   /* most bytes of blocks reset keeps (default: one block) */
	size_t used;     /* bytes handed out, for the cap */
	size_t max;      /* cap on bytes handed out; 0 = no cap */
	size_t block_sz; /* size of ordinary blocks */
	ProtobufCAllocator pbc;
} tl_arena;

/* Embedded init; allocates nothing until first use. */
void tl_arena_init(tl_arena *a, size_t block_sz, size_t max);

/* Frees every block. Accepts NULL. */
void tl_arena_fini(tl_arena *a);

/*
 * Frees everything handed out. Ordinary blocks are kept for reuse up to the
 * retain size (see tl_arena_set_retain), so an arena reused for requests of
 * similar size stops calling malloc and touching fresh pages.
 */
void tl_arena_reset(tl_arena *a);

/* Sets how many bytes of blocks reset keeps (rounded down to whole blocks; at least one block). */
void tl_arena_set_retain(tl_arena *a, size_t bytes);

/* 16-byte aligned memory valid until reset/fini, or NULL past the cap or on ENOMEM. */
void *tl_arena_alloc(tl_arena *a, size_t n);

/* Copies n bytes (plus a NUL) into the arena; NULL on failure. */
char *tl_arena_strndup(tl_arena *a, const char *s, size_t n);

/* The arena as a protobuf-c allocator (free is a no-op). Valid as long as a. */
ProtobufCAllocator *tl_arena_allocator(tl_arena *a);

#endif
