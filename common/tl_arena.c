/* SPDX-License-Identifier: Apache-2.0 */
/* Capped bump allocator, also serving as protobuf-c's allocator. */
#include "tl_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tl_arena_block {
	tl_arena_block *next;
	size_t size;
	size_t off;
	_Alignas(16) unsigned char mem[];
};

static void *pbc_alloc(void *ud, size_t n)
{
	return tl_arena_alloc(ud, n);
}

static void pbc_free(void *ud, void *p)
{
	(void)ud;
	(void)p;
}

void tl_arena_init(tl_arena *a, size_t block_sz, size_t max)
{
	a->head = NULL;
	a->spare = NULL;
	a->spare_bytes = 0;
	a->used = 0;
	a->max = max;
	a->block_sz = block_sz < 1024 ? 1024 : block_sz;
	a->retain = a->block_sz;
	a->pbc.alloc = pbc_alloc;
	a->pbc.free = pbc_free;
	a->pbc.allocator_data = a;
}

static void free_list(tl_arena_block *b)
{
	while (b != NULL) {
		tl_arena_block *n = b->next;
		free(b);
		b = n;
	}
}

void tl_arena_fini(tl_arena *a)
{
	if (a == NULL)
		return;
	free_list(a->head);
	free_list(a->spare);
	a->head = a->spare = NULL;
	a->spare_bytes = 0;
	a->used = 0;
}

void tl_arena_set_retain(tl_arena *a, size_t bytes)
{
	a->retain = bytes < a->block_sz ? a->block_sz : bytes;
}

void tl_arena_reset(tl_arena *a)
{
	tl_arena_block *b = a->head;
	while (b != NULL) {
		tl_arena_block *n = b->next;
		if (b->size == a->block_sz && a->spare_bytes + b->size <= a->retain) {
			b->off = 0;
			b->next = a->spare;
			a->spare = b;
			a->spare_bytes += b->size;
		} else {
			free(b);
		}
		b = n;
	}
	a->head = NULL;
	a->used = 0;
}

void *tl_arena_alloc(tl_arena *a, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - 15)
		return NULL;
	n = (n + 15) & ~(size_t)15;
	if (a->max != 0 && (n > a->max || a->used > a->max - n))
		return NULL;
	tl_arena_block *b = a->head;
	if (b == NULL || b->size - b->off < n) {
		size_t sz = n > a->block_sz ? n : a->block_sz;
		tl_arena_block *nb;
		if (sz == a->block_sz && a->spare != NULL) {
			nb = a->spare;
			a->spare = nb->next;
			a->spare_bytes -= nb->size;
		} else if ((nb = malloc(sizeof(*nb) + sz)) == NULL) {
			return NULL;
		}
		nb->size = sz;
		nb->off = 0;
		if (b != NULL && sz != a->block_sz) {
			/* An oversized block goes behind the current one so the current keeps filling. */
			nb->next = b->next;
			b->next = nb;
			nb->off = n;
			a->used += n;
			return nb->mem;
		}
		nb->next = b;
		a->head = b = nb;
	}
	void *p = b->mem + b->off;
	b->off += n;
	a->used += n;
	return p;
}

char *tl_arena_strndup(tl_arena *a, const char *s, size_t n)
{
	char *p = tl_arena_alloc(a, n + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

ProtobufCAllocator *tl_arena_allocator(tl_arena *a)
{
	return &a->pbc;
}
