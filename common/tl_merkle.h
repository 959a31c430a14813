/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 6962 Merkle tree hashing (also RFC 9162 §2.1), SHA-256 via libsodium:
 * the building block of the collector's verifiable log. A leaf hashes as
 * SHA-256(0x00 || data), an interior node as SHA-256(0x01 || left || right),
 * and the empty tree as SHA-256(""). The tree over n leaves splits at the
 * largest power of two smaller than n, so a tree's shape depends only on n.
 *
 * Three parts:
 *  - tl_merkle_frontier: the append-only state (one hash per set bit of the
 *    size, at most 64) that gives the root after every append and can be
 *    saved to bytes and restored;
 *  - proof generation (inclusion PATH and consistency PROOF of RFC 6962
 *    §2.1.1/§2.1.2) from a leaf-hash accessor with an optional cache of
 *    complete subtree hashes;
 *  - proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2), which needs nothing
 *    but hashes and sizes.
 * Nothing here allocates or logs.
 */
#ifndef TL_MERKLE_H
#define TL_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define TL_MERKLE_HASH_LEN 32
/* Longest proof any tree of up to 2^64 - 1 leaves needs (inclusion: 64, consistency: 65). */
#define TL_MERKLE_PROOF_MAX 66
/* Largest serialised frontier: version byte, 8-byte size, 64 hashes. */
#define TL_MERKLE_FRONTIER_MAX (1 + 8 + 64 * TL_MERKLE_HASH_LEN)

/* SHA-256(0x00 || data). data may be NULL when len is 0. Borrows data. */
void tl_merkle_leaf_hash(const void *data, size_t len, uint8_t out[TL_MERKLE_HASH_LEN]);

/* SHA-256(0x01 || left || right). out may alias left or right. */
void tl_merkle_node_hash(const uint8_t left[TL_MERKLE_HASH_LEN], const uint8_t right[TL_MERKLE_HASH_LEN],
                         uint8_t out[TL_MERKLE_HASH_LEN]);

/* The root of the empty tree: SHA-256 of no bytes (e3b0c442...). */
void tl_merkle_empty_root(uint8_t out[TL_MERKLE_HASH_LEN]);

/*
 * The right border of the tree: for every set bit i of size, hash[i] is the
 * root of the complete subtree of 2^i leaves that bit stands for (the
 * largest subtrees hold the oldest leaves). Plain data: embed it, copy it.
 */
typedef struct tl_merkle_frontier {
	uint64_t size;
	uint8_t hash[64][TL_MERKLE_HASH_LEN];
} tl_merkle_frontier;

/* Embedded init: the empty tree. Never fails. */
void tl_merkle_frontier_init(tl_merkle_frontier *f);

/* Leaves in the tree. */
uint64_t tl_merkle_frontier_size(const tl_merkle_frontier *f);

/*
 * Appends one leaf by its leaf hash (tl_merkle_leaf_hash), in O(log n)
 * hashes. Returns 0, or TL_EFULL when the tree already holds 2^64 - 1
 * leaves (f unchanged).
 */
int tl_merkle_frontier_append(tl_merkle_frontier *f, const uint8_t leaf_hash[TL_MERKLE_HASH_LEN]);

/* The Merkle tree hash (MTH) of the leaves appended so far; the empty root when none. */
void tl_merkle_frontier_root(const tl_merkle_frontier *f, uint8_t out[TL_MERKLE_HASH_LEN]);

/*
 * Serialises f into out (cap bytes; TL_MERKLE_FRONTIER_MAX always suffices):
 * version byte 0x01, the size as 8 bytes big-endian, then the hash of each
 * set bit of the size from the lowest bit up. *len gets the byte count.
 * Returns 0 or TL_ELIMIT when cap is too small (out untouched).
 */
int tl_merkle_frontier_encode(const tl_merkle_frontier *f, uint8_t *out, size_t cap, size_t *len);

/*
 * Restores a frontier from tl_merkle_frontier_encode's bytes (borrows in).
 * Returns 0, or TL_ECORRUPT when the version, the length or the hash count
 * does not match (f unchanged).
 */
int tl_merkle_frontier_decode(tl_merkle_frontier *f, const uint8_t *in, size_t len);

/*
 * Where proofs read the tree from. leaf gives the leaf hash at index (only
 * indexes below the tree size asked about are requested); it returns 0 or a
 * negative code, which is passed through. The optional cache covers complete
 * subtrees: the one of 2^level leaves starting at index << level.
 * cache_get returns 0 with the hash, or anything else for a miss (the hash is
 * then computed from the leaves); cache_put, when set, is told each complete
 * subtree of two or more leaves computed from below, and cannot fail.
 * Both may be NULL. ud is passed to every callback.
 */
typedef struct tl_merkle_source {
	int (*leaf)(void *ud, uint64_t index, uint8_t out[TL_MERKLE_HASH_LEN]);
	int (*cache_get)(void *ud, unsigned level, uint64_t index, uint8_t out[TL_MERKLE_HASH_LEN]);
	void (*cache_put)(void *ud, unsigned level, uint64_t index, const uint8_t hash[TL_MERKLE_HASH_LEN]);
	void *ud;
} tl_merkle_source;

/*
 * MTH of the first size leaves of src (borrows src). Returns 0, or the
 * leaf callback's error.
 */
int tl_merkle_root(const tl_merkle_source *src, uint64_t size, uint8_t out[TL_MERKLE_HASH_LEN]);

/*
 * The inclusion proof PATH(index, D[size]) of RFC 6962 §2.1.1, nearest the
 * leaf first, into proof (room for TL_MERKLE_PROOF_MAX hashes); *count gets
 * the number of hashes. Returns 0, TL_EINVALID when index >= size, or the
 * leaf callback's error.
 */
int tl_merkle_inclusion_proof(const tl_merkle_source *src, uint64_t index, uint64_t size,
                              uint8_t proof[][TL_MERKLE_HASH_LEN], size_t *count);

/*
 * The consistency proof PROOF(m, D[n]) of RFC 6962 §2.1.2 between the tree
 * of the first m leaves and that of the first n, into proof (room for
 * TL_MERKLE_PROOF_MAX hashes); *count gets the number of hashes, 0 when
 * m == 0 or m == n. Returns 0, TL_EINVALID when m > n, or the leaf
 * callback's error.
 */
int tl_merkle_consistency_proof(const tl_merkle_source *src, uint64_t m, uint64_t n,
                                uint8_t proof[][TL_MERKLE_HASH_LEN], size_t *count);

/*
 * Checks that leaf_hash is leaf number index of the tree of size leaves
 * whose root is root, by RFC 9162 §2.1.3.2. Borrows everything. Returns 0
 * when it is; TL_EINVALID when index >= size or the proof has the wrong
 * number of hashes for that index and size; TL_ECORRUPT when the hashes
 * do not lead to root.
 */
int tl_merkle_verify_inclusion(const uint8_t leaf_hash[TL_MERKLE_HASH_LEN], uint64_t index, uint64_t size,
                               const uint8_t proof[][TL_MERKLE_HASH_LEN], size_t count,
                               const uint8_t root[TL_MERKLE_HASH_LEN]);

/*
 * Checks that the tree of m leaves with root root_m is a prefix of the tree
 * of n leaves with root root_n, by RFC 9162 §2.1.4.2. Borrows everything.
 * m == n needs an empty proof and equal roots; m == 0 needs an empty proof
 * and root_m equal to the empty root (any later tree extends the empty one).
 * Returns 0 when consistent; TL_EINVALID when m > n or the proof has the
 * wrong number of hashes for m and n; TL_ECORRUPT when the hashes do not
 * lead to both roots.
 */
int tl_merkle_verify_consistency(uint64_t m, uint64_t n, const uint8_t root_m[TL_MERKLE_HASH_LEN],
                                 const uint8_t root_n[TL_MERKLE_HASH_LEN], const uint8_t proof[][TL_MERKLE_HASH_LEN],
                                 size_t count);

#endif
