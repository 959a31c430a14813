/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 6962 Merkle tree: hashing, the append-only frontier, proof generation
 * from a leaf accessor and proof verification (RFC 9162 §2.1.3.2 and
 * §2.1.4.2). The proofs follow the RFC's recursive definitions directly:
 * their depth is at most 64, and each level costs O(1) stack.
 */
#include "tl_merkle.h"

#include "tl_be.h"
#include "tl_error.h"

#include <sodium.h>
#include <string.h>

#define FRONTIER_VERSION 0x01

void tl_merkle_leaf_hash(const void *data, size_t len, uint8_t out[TL_MERKLE_HASH_LEN])
{
	static const uint8_t prefix = 0x00;
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, &prefix, 1);
	if (len > 0)
		crypto_hash_sha256_update(&st, data, len);
	crypto_hash_sha256_final(&st, out);
}

void tl_merkle_node_hash(const uint8_t left[TL_MERKLE_HASH_LEN], const uint8_t right[TL_MERKLE_HASH_LEN],
                         uint8_t out[TL_MERKLE_HASH_LEN])
{
	uint8_t buf[1 + 2 * TL_MERKLE_HASH_LEN];
	buf[0] = 0x01;
	memcpy(buf + 1, left, TL_MERKLE_HASH_LEN);
	memcpy(buf + 1 + TL_MERKLE_HASH_LEN, right, TL_MERKLE_HASH_LEN);
	crypto_hash_sha256(out, buf, sizeof(buf));
}

void tl_merkle_empty_root(uint8_t out[TL_MERKLE_HASH_LEN])
{
	crypto_hash_sha256(out, NULL, 0);
}

/* ---- frontier ---- */

void tl_merkle_frontier_init(tl_merkle_frontier *f)
{
	memset(f, 0, sizeof(*f));
}

uint64_t tl_merkle_frontier_size(const tl_merkle_frontier *f)
{
	return f->size;
}

int tl_merkle_frontier_append(tl_merkle_frontier *f, const uint8_t leaf_hash[TL_MERKLE_HASH_LEN])
{
	if (f->size == UINT64_MAX)
		return TL_EFULL;
	/* Like a binary increment: every set low bit is a complete subtree that
	 * the new one merges with, as the left (older) child. */
	uint8_t cur[TL_MERKLE_HASH_LEN];
	memcpy(cur, leaf_hash, TL_MERKLE_HASH_LEN);
	unsigned i = 0;
	while (f->size >> i & 1) {
		tl_merkle_node_hash(f->hash[i], cur, cur);
		i++;
	}
	memcpy(f->hash[i], cur, TL_MERKLE_HASH_LEN);
	f->size++;
	return 0;
}

void tl_merkle_frontier_root(const tl_merkle_frontier *f, uint8_t out[TL_MERKLE_HASH_LEN])
{
	if (f->size == 0) {
		tl_merkle_empty_root(out);
		return;
	}
	/* The smallest subtree is the rightmost; each larger one joins on its left. */
	uint8_t r[TL_MERKLE_HASH_LEN];
	unsigned i = (unsigned)__builtin_ctzll(f->size);
	memcpy(r, f->hash[i], TL_MERKLE_HASH_LEN);
	for (i++; i < 64; i++) {
		if (f->size >> i & 1)
			tl_merkle_node_hash(f->hash[i], r, r);
	}
	memcpy(out, r, TL_MERKLE_HASH_LEN);
}

int tl_merkle_frontier_encode(const tl_merkle_frontier *f, uint8_t *out, size_t cap, size_t *len)
{
	size_t need = 1 + 8 + (size_t)__builtin_popcountll(f->size) * TL_MERKLE_HASH_LEN;
	if (cap < need)
		return TL_ELIMIT;
	out[0] = FRONTIER_VERSION;
	tl_put_be64(out + 1, f->size);
	size_t off = 9;
	for (unsigned i = 0; i < 64; i++) {
		if (f->size >> i & 1) {
			memcpy(out + off, f->hash[i], TL_MERKLE_HASH_LEN);
			off += TL_MERKLE_HASH_LEN;
		}
	}
	*len = off;
	return 0;
}

int tl_merkle_frontier_decode(tl_merkle_frontier *f, const uint8_t *in, size_t len)
{
	if (len < 9 || in[0] != FRONTIER_VERSION)
		return TL_ECORRUPT;
	uint64_t size = tl_get_be64(in + 1);
	if (len != 9 + (size_t)__builtin_popcountll(size) * TL_MERKLE_HASH_LEN)
		return TL_ECORRUPT;
	tl_merkle_frontier_init(f);
	f->size = size;
	size_t off = 9;
	for (unsigned i = 0; i < 64; i++) {
		if (size >> i & 1) {
			memcpy(f->hash[i], in + off, TL_MERKLE_HASH_LEN);
			off += TL_MERKLE_HASH_LEN;
		}
	}
	return 0;
}

/* ---- proofs from a source ---- */

/* Largest power of two strictly smaller than n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
	return UINT64_C(1) << (63 - __builtin_clzll(n - 1));
}

static int is_pow2(uint64_t n)
{
	return n != 0 && (n & (n - 1)) == 0;
}

/* MTH(D[start : start + n]), n >= 1. */
static int subtree_hash(const tl_merkle_source *src, uint64_t start, uint64_t n, uint8_t out[TL_MERKLE_HASH_LEN])
{
	if (n == 1)
		return src->leaf(src->ud, start, out);
	/* Only aligned complete subtrees are cacheable: they never change as the log grows. */
	int complete = is_pow2(n) && start % n == 0;
	unsigned level = complete ? (unsigned)__builtin_ctzll(n) : 0;
	if (complete && src->cache_get != NULL && src->cache_get(src->ud, level, start >> level, out) == 0)
		return 0;
	uint64_t k = split_point(n);
	uint8_t left[TL_MERKLE_HASH_LEN], right[TL_MERKLE_HASH_LEN];
	int rc = subtree_hash(src, start, k, left);
	if (rc == 0)
		rc = subtree_hash(src, start + k, n - k, right);
	if (rc != 0)
		return rc;
	tl_merkle_node_hash(left, right, out);
	if (complete && src->cache_put != NULL)
		src->cache_put(src->ud, level, start >> level, out);
	return 0;
}

int tl_merkle_root(const tl_merkle_source *src, uint64_t size, uint8_t out[TL_MERKLE_HASH_LEN])
{
	if (size == 0) {
		tl_merkle_empty_root(out);
		return 0;
	}
	return subtree_hash(src, 0, size, out);
}

/* Appends one hash to a proof, refusing to run past TL_MERKLE_PROOF_MAX. */
static int proof_push(const tl_merkle_source *src, uint64_t start, uint64_t n, uint8_t proof[][TL_MERKLE_HASH_LEN],
                      size_t *count)
{
	if (*count >= TL_MERKLE_PROOF_MAX)
		return TL_ELIMIT; /* unreachable for sizes below 2^64 */
	int rc = subtree_hash(src, start, n, proof[*count]);
	if (rc == 0)
		(*count)++;
	return rc;
}

/* PATH(m, D[start : start + n]): RFC 6962 §2.1.1. */
static int path(const tl_merkle_source *src, uint64_t m, uint64_t start, uint64_t n,
                uint8_t proof[][TL_MERKLE_HASH_LEN], size_t *count)
{
	if (n == 1)
		return 0;
	uint64_t k = split_point(n);
	int rc;
	if (m < k) {
		if ((rc = path(src, m, start, k, proof, count)) != 0)
			return rc;
		return proof_push(src, start + k, n - k, proof, count);
	}
	if ((rc = path(src, m - k, start + k, n - k, proof, count)) != 0)
		return rc;
	return proof_push(src, start, k, proof, count);
}

int tl_merkle_inclusion_proof(const tl_merkle_source *src, uint64_t index, uint64_t size,
                              uint8_t proof[][TL_MERKLE_HASH_LEN], size_t *count)
{
	*count = 0;
	if (index >= size)
		return TL_EINVALID;
	return path(src, index, 0, size, proof, count);
}

/* SUBPROOF(m, D[start : start + n], b): RFC 6962 §2.1.2. */
static int subproof(const tl_merkle_source *src, uint64_t m, uint64_t start, uint64_t n, int b,
                    uint8_t proof[][TL_MERKLE_HASH_LEN], size_t *count)
{
	if (m == n)
		return b ? 0 : proof_push(src, start, n, proof, count);
	uint64_t k = split_point(n);
	int rc;
	if (m <= k) {
		if ((rc = subproof(src, m, start, k, b, proof, count)) != 0)
			return rc;
		return proof_push(src, start + k, n - k, proof, count);
	}
	if ((rc = subproof(src, m - k, start + k, n - k, 0, proof, count)) != 0)
		return rc;
	return proof_push(src, start, k, proof, count);
}

int tl_merkle_consistency_proof(const tl_merkle_source *src, uint64_t m, uint64_t n,
                                uint8_t proof[][TL_MERKLE_HASH_LEN], size_t *count)
{
	*count = 0;
	if (m > n)
		return TL_EINVALID;
	if (m == 0 || m == n)
		return 0;
	return subproof(src, m, 0, n, 1, proof, count);
}

/* ---- verification ---- */

static int hash_eq(const uint8_t a[TL_MERKLE_HASH_LEN], const uint8_t b[TL_MERKLE_HASH_LEN])
{
	return memcmp(a, b, TL_MERKLE_HASH_LEN) == 0;
}

int tl_merkle_verify_inclusion(const uint8_t leaf_hash[TL_MERKLE_HASH_LEN], uint64_t index, uint64_t size,
                               const uint8_t proof[][TL_MERKLE_HASH_LEN], size_t count,
                               const uint8_t root[TL_MERKLE_HASH_LEN])
{
	if (index >= size)
		return TL_EINVALID;
	uint64_t fn = index, sn = size - 1;
	uint8_t r[TL_MERKLE_HASH_LEN];
	memcpy(r, leaf_hash, TL_MERKLE_HASH_LEN);
	for (size_t i = 0; i < count; i++) {
		if (sn == 0)
			return TL_EINVALID; /* more hashes than the path has levels */
		if ((fn & 1) || fn == sn) {
			tl_merkle_node_hash(proof[i], r, r);
			/* Climb past the levels where this node is the lone rightmost child. */
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			tl_merkle_node_hash(r, proof[i], r);
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return TL_EINVALID; /* fewer hashes than the path has levels */
	return hash_eq(r, root) ? 0 : TL_ECORRUPT;
}

int tl_merkle_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[TL_MERKLE_HASH_LEN],
                                 const uint8_t root_n[TL_MERKLE_HASH_LEN], const uint8_t proof[][TL_MERKLE_HASH_LEN],
                                 size_t count)
{
	if (m > n)
		return TL_EINVALID;
	if (m == 0 || m == n) {
		if (count != 0)
			return TL_EINVALID;
		if (m == 0) {
			uint8_t empty[TL_MERKLE_HASH_LEN];
			tl_merkle_empty_root(empty);
			return hash_eq(root_m, empty) ? 0 : TL_ECORRUPT;
		}
		return hash_eq(root_m, root_n) ? 0 : TL_ECORRUPT;
	}
	if (count == 0)
		return TL_EINVALID;
	/* When m is a power of two, the old root is itself a node of the new
	 * tree and the proof leaves it out: it starts the walk instead. */
	size_t i = 0;
	const uint8_t *first = proof[0];
	if (is_pow2(m))
		first = root_m;
	else
		i = 1;
	uint64_t fn = m - 1, sn = n - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	uint8_t fr[TL_MERKLE_HASH_LEN], sr[TL_MERKLE_HASH_LEN];
	memcpy(fr, first, TL_MERKLE_HASH_LEN);
	memcpy(sr, first, TL_MERKLE_HASH_LEN);
	for (; i < count; i++) {
		const uint8_t *c = proof[i];
		if (sn == 0)
			return TL_EINVALID;
		if ((fn & 1) || fn == sn) {
			tl_merkle_node_hash(c, fr, fr);
			tl_merkle_node_hash(c, sr, sr);
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			tl_merkle_node_hash(sr, c, sr);
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return TL_EINVALID;
	return hash_eq(fr, root_m) && hash_eq(sr, root_n) ? 0 : TL_ECORRUPT;
}
