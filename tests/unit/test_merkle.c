/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tl_merkle: RFC 6962 hashing, the frontier, proofs and their verification.
 * The fixed expectations are the published RFC 6962 reference vectors used
 * by the certificate-transparency implementations, as given in
 * github.com/transparency-dev/merkle: testonly/constants.go (leaf inputs,
 * node hashes, root hashes for sizes 0..8, compact-tree states) and
 * proof/verify_test.go (inclusion and consistency proofs). A log whose
 * hashes no other implementation reproduces proves nothing to an auditor,
 * so these are checked byte for byte; the randomized part then checks that
 * every proof of every tree up to 64 leaves verifies, and that nothing else
 * does.
 */
#include "tl_error.h"
#include "tl_merkle.h"

#include <criterion/criterion.h>
#include <sodium.h>
#include <string.h>

#define H TL_MERKLE_HASH_LEN

static void unhex(const char *s, uint8_t *out, size_t want)
{
	size_t len = 0;
	cr_assert_eq(sodium_hex2bin(out, want, s, strlen(s), NULL, &len, NULL), 0, "bad hex %s", s);
	cr_assert_eq(len, want, "hex %s is %zu bytes, want %zu", s, len, want);
}

static void assert_hash(const uint8_t got[H], const char *want_hex, const char *what)
{
	uint8_t want[H];
	unhex(want_hex, want, H);
	char got_hex[2 * H + 1];
	sodium_bin2hex(got_hex, sizeof(got_hex), got, H);
	cr_assert(memcmp(got, want, H) == 0, "%s: got %s, want %s", what, got_hex, want_hex);
}

/* ---- the published vectors ---- */

static const char *const ref_inputs[8] = {
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
};

/* testonly/constants.go RootHashes(): index = tree size. */
static const char *const ref_roots[9] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

/* testonly/constants.go NodeHashes()[0]: the leaf hashes. */
static const char *const ref_leaf_hashes[8] = {
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
};

/* NodeHashes() levels 1 and 2. */
static const char *const ref_level1[4] = {
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
};
static const char *const ref_level2[2] = {
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
};

struct ref_proof {
	uint64_t a, b; /* inclusion: 0-based leaf index and size; consistency: m and n */
	size_t count;
	const char *hash[3];
};

/* proof/verify_test.go inclusionProofs (its leaf numbers are 1-based; these are 0-based). */
static const struct ref_proof ref_inclusion[] = {
        {0, 1, 0, {NULL}},
        {0,
         8,
         3,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {5,
         8,
         3,
         {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
        {1,
         5,
         3,
         {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

/* proof/verify_test.go consistencyProofs. */
static const struct ref_proof ref_consistency[] = {
        {1, 1, 0, {NULL}},
        {1,
         8,
         3,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {6,
         8,
         3,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2,
         5,
         2,
         {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
        {6,
         7,
         3,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

/* ---- an in-memory source ---- */

#define MAX_LEAVES 1100

struct mem_tree {
	uint8_t leaf[MAX_LEAVES][H];
	uint64_t n;
	unsigned leaf_calls;
	int fail_at; /* leaf index whose read fails, or -1 */
	/* cache of complete subtrees, keyed by (level, index) for level < 12 */
	uint8_t cache[12][MAX_LEAVES][H];
	uint8_t cached[12][MAX_LEAVES];
	unsigned puts, hits;
};

static int mem_leaf(void *ud, uint64_t index, uint8_t out[H])
{
	struct mem_tree *t = ud;
	cr_assert_lt(index, t->n, "leaf %llu read from a tree of %llu", (unsigned long long)index,
	             (unsigned long long)t->n);
	t->leaf_calls++;
	if (t->fail_at >= 0 && index == (uint64_t)t->fail_at)
		return -5; /* -EIO */
	memcpy(out, t->leaf[index], H);
	return 0;
}

static int mem_cache_get(void *ud, unsigned level, uint64_t index, uint8_t out[H])
{
	struct mem_tree *t = ud;
	if (level >= 12 || index >= MAX_LEAVES || !t->cached[level][index])
		return TL_ENOTFOUND;
	t->hits++;
	memcpy(out, t->cache[level][index], H);
	return 0;
}

static void mem_cache_put(void *ud, unsigned level, uint64_t index, const uint8_t hash[H])
{
	struct mem_tree *t = ud;
	cr_assert_geq(level, 1, "a single leaf was offered to the cache");
	cr_assert_leq((index + 1) << level, t->n, "subtree (%u, %llu) is not complete in a tree of %llu", level,
	              (unsigned long long)index, (unsigned long long)t->n);
	t->puts++;
	if (level < 12 && index < MAX_LEAVES) {
		memcpy(t->cache[level][index], hash, H);
		t->cached[level][index] = 1;
	}
}

static struct mem_tree *mem_new(uint64_t n)
{
	struct mem_tree *t = calloc(1, sizeof(*t));
	cr_assert_not_null(t);
	t->n = n;
	t->fail_at = -1;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t data[3] = {(uint8_t)i, (uint8_t)(i >> 8), (uint8_t)(i * 7)};
		tl_merkle_leaf_hash(data, 1 + i % 3, t->leaf[i]);
	}
	return t;
}

static struct mem_tree *mem_ref(void)
{
	struct mem_tree *t = calloc(1, sizeof(*t));
	cr_assert_not_null(t);
	t->n = 8;
	t->fail_at = -1;
	for (int i = 0; i < 8; i++) {
		uint8_t data[16];
		size_t len = strlen(ref_inputs[i]) / 2;
		unhex(ref_inputs[i], data, len);
		tl_merkle_leaf_hash(data, len, t->leaf[i]);
	}
	return t;
}

static tl_merkle_source src_of(struct mem_tree *t, int with_cache)
{
	tl_merkle_source s = {.leaf = mem_leaf, .ud = t};
	if (with_cache) {
		s.cache_get = mem_cache_get;
		s.cache_put = mem_cache_put;
	}
	return s;
}

/* ---- published vectors ---- */

Test(merkle_vectors, empty_root_is_sha256_of_nothing)
{
	uint8_t r[H];
	tl_merkle_empty_root(r);
	assert_hash(r, ref_roots[0], "empty root");
	tl_merkle_frontier f;
	tl_merkle_frontier_init(&f);
	tl_merkle_frontier_root(&f, r);
	assert_hash(r, ref_roots[0], "empty frontier root");
}

Test(merkle_vectors, leaf_and_node_hashes)
{
	struct mem_tree *t = mem_ref();
	for (int i = 0; i < 8; i++)
		assert_hash(t->leaf[i], ref_leaf_hashes[i], "leaf hash");
	uint8_t h[H];
	for (int i = 0; i < 4; i++) {
		tl_merkle_node_hash(t->leaf[2 * i], t->leaf[2 * i + 1], h);
		assert_hash(h, ref_level1[i], "level-1 node");
	}
	uint8_t a[H], b[H];
	unhex(ref_level1[0], a, H);
	unhex(ref_level1[1], b, H);
	tl_merkle_node_hash(a, b, a); /* out aliases left */
	assert_hash(a, ref_level2[0], "level-2 node, aliased output");
	free(t);
}

Test(merkle_vectors, roots_for_sizes_0_to_8_from_frontier_and_source)
{
	struct mem_tree *t = mem_ref();
	tl_merkle_source s = src_of(t, 0);
	tl_merkle_frontier f;
	tl_merkle_frontier_init(&f);
	uint8_t r[H];
	for (uint64_t n = 0; n <= 8; n++) {
		if (n > 0)
			cr_assert_eq(tl_merkle_frontier_append(&f, t->leaf[n - 1]), 0);
		cr_assert_eq(tl_merkle_frontier_size(&f), n);
		tl_merkle_frontier_root(&f, r);
		assert_hash(r, ref_roots[n], "frontier root");
		cr_assert_eq(tl_merkle_root(&s, n, r), 0);
		assert_hash(r, ref_roots[n], "source root");
	}
	free(t);
}

Test(merkle_vectors, frontier_holds_the_published_compact_trees)
{
	/* testonly/constants.go CompactTrees(): size 3 = {level1[0], leaf[2]},
	 * size 6 = {level2[0], level1[2]}, size 7 = {level2[0], level1[2], leaf[6]}. */
	struct mem_tree *t = mem_ref();
	tl_merkle_frontier f;
	tl_merkle_frontier_init(&f);
	for (int i = 0; i < 3; i++)
		tl_merkle_frontier_append(&f, t->leaf[i]);
	assert_hash(f.hash[1], ref_level1[0], "size 3, level 1");
	assert_hash(f.hash[0], ref_leaf_hashes[2], "size 3, level 0");
	for (int i = 3; i < 6; i++)
		tl_merkle_frontier_append(&f, t->leaf[i]);
	assert_hash(f.hash[2], ref_level2[0], "size 6, level 2");
	assert_hash(f.hash[1], ref_level1[2], "size 6, level 1");
	tl_merkle_frontier_append(&f, t->leaf[6]);
	assert_hash(f.hash[0], ref_leaf_hashes[6], "size 7, level 0");
	free(t);
}

static void load_proof(const struct ref_proof *p, uint8_t proof[][H])
{
	for (size_t i = 0; i < p->count; i++)
		unhex(p->hash[i], proof[i], H);
}

Test(merkle_vectors, inclusion_proofs_generate_and_verify)
{
	struct mem_tree *t = mem_ref();
	tl_merkle_source s = src_of(t, 0);
	for (size_t v = 0; v < sizeof(ref_inclusion) / sizeof(ref_inclusion[0]); v++) {
		const struct ref_proof *p = &ref_inclusion[v];
		uint8_t got[TL_MERKLE_PROOF_MAX][H], want[3][H], root[H];
		size_t count = 99;
		cr_assert_eq(tl_merkle_inclusion_proof(&s, p->a, p->b, got, &count), 0);
		cr_assert_eq(count, p->count, "vector %zu: %zu hashes, want %zu", v, count, p->count);
		for (size_t i = 0; i < count; i++)
			assert_hash(got[i], p->hash[i], "inclusion proof hash");
		load_proof(p, want);
		unhex(ref_roots[p->b], root, H);
		cr_assert_eq(tl_merkle_verify_inclusion(t->leaf[p->a], p->a, p->b, (const uint8_t(*)[H])want, p->count,
		                                        root),
		             0, "vector %zu does not verify", v);
		/* The same proof for the neighbouring leaf, or against the next root, fails. */
		if (p->b > 1)
			cr_assert_neq(tl_merkle_verify_inclusion(t->leaf[p->a], p->a ^ 1, p->b,
			                                         (const uint8_t(*)[H])want, p->count, root),
			              0);
		unhex(ref_roots[p->b - 1], root, H);
		cr_assert_eq(tl_merkle_verify_inclusion(t->leaf[p->a], p->a, p->b, (const uint8_t(*)[H])want, p->count,
		                                        root),
		             TL_ECORRUPT);
	}
	free(t);
}

Test(merkle_vectors, consistency_proofs_generate_and_verify)
{
	struct mem_tree *t = mem_ref();
	tl_merkle_source s = src_of(t, 0);
	for (size_t v = 0; v < sizeof(ref_consistency) / sizeof(ref_consistency[0]); v++) {
		const struct ref_proof *p = &ref_consistency[v];
		uint8_t got[TL_MERKLE_PROOF_MAX][H], want[3][H], r1[H], r2[H];
		size_t count = 99;
		cr_assert_eq(tl_merkle_consistency_proof(&s, p->a, p->b, got, &count), 0);
		cr_assert_eq(count, p->count, "vector %zu: %zu hashes, want %zu", v, count, p->count);
		for (size_t i = 0; i < count; i++)
			assert_hash(got[i], p->hash[i], "consistency proof hash");
		load_proof(p, want);
		unhex(ref_roots[p->a], r1, H);
		unhex(ref_roots[p->b], r2, H);
		cr_assert_eq(tl_merkle_verify_consistency(p->a, p->b, r1, r2, (const uint8_t(*)[H])want, p->count), 0,
		             "vector %zu does not verify", v);
		if (p->a != p->b) {
			/* Swapped roots: a forked history. */
			cr_assert_eq(
			        tl_merkle_verify_consistency(p->a, p->b, r2, r1, (const uint8_t(*)[H])want, p->count),
			        TL_ECORRUPT);
		}
	}
	free(t);
}

/* ---- verification edge cases (after proof/verify_test.go's probes) ---- */

Test(merkle_verify, inclusion_shapes_that_cannot_be_right)
{
	uint8_t leaf[H], root[H], proof[2][H];
	tl_merkle_leaf_hash("data", 4, leaf);
	memcpy(root, leaf, H);
	/* A one-leaf tree: the root is the leaf hash and the proof is empty. */
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 0, 1, NULL, 0, root), 0);
	root[31] ^= 1;
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 0, 1, NULL, 0, root), TL_ECORRUPT);
	root[31] ^= 1;
	memset(proof, 0xab, sizeof(proof));
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 0, 1, (const uint8_t(*)[H])proof, 1, root), TL_EINVALID);
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 0, 0, NULL, 0, root), TL_EINVALID);
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 1, 1, NULL, 0, root), TL_EINVALID);
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 2, 1, NULL, 0, root), TL_EINVALID);
	/* Too short a proof for a two-leaf tree. */
	cr_assert_eq(tl_merkle_verify_inclusion(leaf, 0, 2, NULL, 0, root), TL_EINVALID);
	/* Huge sizes neither overflow nor verify garbage. */
	uint8_t many[64][H];
	memset(many, 0x5a, sizeof(many));
	cr_assert_neq(tl_merkle_verify_inclusion(leaf, UINT64_MAX - 1, UINT64_MAX, (const uint8_t(*)[H])many, 64, root),
	              0);
	cr_assert_neq(tl_merkle_verify_inclusion(leaf, 0, UINT64_MAX, (const uint8_t(*)[H])many, 64, root), 0);
}

Test(merkle_verify, consistency_edge_cases)
{
	uint8_t empty[H], a[H], b[H], proof[1][H];
	tl_merkle_empty_root(empty);
	tl_merkle_leaf_hash("a", 1, a);
	tl_merkle_leaf_hash("b", 1, b);
	memcpy(proof[0], empty, H);
	/* The empty tree is a prefix of every tree, with an empty proof. */
	cr_assert_eq(tl_merkle_verify_consistency(0, 0, empty, empty, NULL, 0), 0);
	cr_assert_eq(tl_merkle_verify_consistency(0, 5, empty, b, NULL, 0), 0);
	/* ...but a size-0 checkpoint must carry the empty root. */
	cr_assert_eq(tl_merkle_verify_consistency(0, 5, a, b, NULL, 0), TL_ECORRUPT);
	/* Equal sizes: equal roots, empty proof. */
	cr_assert_eq(tl_merkle_verify_consistency(1, 1, a, a, NULL, 0), 0);
	cr_assert_eq(tl_merkle_verify_consistency(1, 1, a, b, NULL, 0), TL_ECORRUPT);
	cr_assert_eq(tl_merkle_verify_consistency(1, 1, a, a, (const uint8_t(*)[H])proof, 1), TL_EINVALID);
	cr_assert_eq(tl_merkle_verify_consistency(0, 1, empty, a, (const uint8_t(*)[H])proof, 1), TL_EINVALID);
	/* Time travel and empty proofs between different sizes. */
	cr_assert_eq(tl_merkle_verify_consistency(2, 1, a, b, NULL, 0), TL_EINVALID);
	cr_assert_eq(tl_merkle_verify_consistency(1, 2, a, b, NULL, 0), TL_EINVALID);
	uint8_t out[TL_MERKLE_PROOF_MAX][H];
	size_t count = 7;
	struct mem_tree *t = mem_new(4);
	tl_merkle_source s = src_of(t, 0);
	cr_assert_eq(tl_merkle_consistency_proof(&s, 3, 2, out, &count), TL_EINVALID);
	cr_assert_eq(tl_merkle_inclusion_proof(&s, 2, 2, out, &count), TL_EINVALID);
	cr_assert_eq(tl_merkle_consistency_proof(&s, 0, 4, out, &count), 0);
	cr_assert_eq(count, 0);
	free(t);
}

/* ---- randomized cross-checks ---- */

static void roots_up_to(struct mem_tree *t, uint64_t max, uint8_t roots[][H])
{
	tl_merkle_frontier f;
	tl_merkle_frontier_init(&f);
	tl_merkle_frontier_root(&f, roots[0]);
	for (uint64_t n = 1; n <= max; n++) {
		cr_assert_eq(tl_merkle_frontier_append(&f, t->leaf[n - 1]), 0);
		tl_merkle_frontier_root(&f, roots[n]);
	}
}

Test(merkle_random, every_inclusion_proof_up_to_64_verifies_and_a_flipped_bit_fails)
{
	struct mem_tree *t = mem_new(64);
	tl_merkle_source s = src_of(t, 0);
	uint8_t roots[65][H];
	roots_up_to(t, 64, roots);
	for (uint64_t n = 1; n <= 64; n++) {
		for (uint64_t m = 0; m < n; m++) {
			uint8_t proof[TL_MERKLE_PROOF_MAX][H];
			size_t count;
			cr_assert_eq(tl_merkle_inclusion_proof(&s, m, n, proof, &count), 0);
			const uint8_t(*cp)[H] = (const uint8_t(*)[H])proof;
			cr_assert_eq(tl_merkle_verify_inclusion(t->leaf[m], m, n, cp, count, roots[n]), 0,
			             "leaf %llu of %llu", (unsigned long long)m, (unsigned long long)n);
			for (size_t i = 0; i < count; i++) {
				unsigned bit = (unsigned)((m * 31 + n * 7 + i) % (H * 8));
				proof[i][bit / 8] ^= (uint8_t)(1u << (bit % 8));
				cr_assert_eq(tl_merkle_verify_inclusion(t->leaf[m], m, n, cp, count, roots[n]),
				             TL_ECORRUPT, "flipped bit %u of hash %zu, leaf %llu of %llu", bit, i,
				             (unsigned long long)m, (unsigned long long)n);
				proof[i][bit / 8] ^= (uint8_t)(1u << (bit % 8));
			}
			uint8_t leaf[H];
			memcpy(leaf, t->leaf[m], H);
			leaf[(m + n) % H] ^= 0x10;
			cr_assert_eq(tl_merkle_verify_inclusion(leaf, m, n, cp, count, roots[n]), TL_ECORRUPT);
			if (n > 1) {
				/* Another leaf's hash at this index, this leaf at another index. */
				uint64_t o = (m + 1) % n;
				cr_assert_neq(tl_merkle_verify_inclusion(t->leaf[o], m, n, cp, count, roots[n]), 0);
				cr_assert_neq(tl_merkle_verify_inclusion(t->leaf[m], o, n, cp, count, roots[n]), 0);
				/* A dropped hash. */
				if (count > 0)
					cr_assert_eq(
					        tl_merkle_verify_inclusion(t->leaf[m], m, n, cp, count - 1, roots[n]),
					        TL_EINVALID);
			}
			if (count < TL_MERKLE_PROOF_MAX) {
				memcpy(proof[count], roots[n], H);
				cr_assert_eq(tl_merkle_verify_inclusion(t->leaf[m], m, n, cp, count + 1, roots[n]),
				             TL_EINVALID, "trailing hash accepted");
			}
		}
	}
	free(t);
}

Test(merkle_random, every_consistency_proof_up_to_64_verifies_and_a_flipped_bit_fails)
{
	struct mem_tree *t = mem_new(64);
	tl_merkle_source s = src_of(t, 0);
	uint8_t roots[65][H];
	roots_up_to(t, 64, roots);
	for (uint64_t n = 0; n <= 64; n++) {
		for (uint64_t m = 0; m <= n; m++) {
			uint8_t proof[TL_MERKLE_PROOF_MAX][H];
			size_t count;
			cr_assert_eq(tl_merkle_consistency_proof(&s, m, n, proof, &count), 0);
			const uint8_t(*cp)[H] = (const uint8_t(*)[H])proof;
			cr_assert_eq(tl_merkle_verify_consistency(m, n, roots[m], roots[n], cp, count), 0,
			             "%llu -> %llu", (unsigned long long)m, (unsigned long long)n);
			for (size_t i = 0; i < count; i++) {
				unsigned bit = (unsigned)((m * 13 + n * 5 + i) % (H * 8));
				proof[i][bit / 8] ^= (uint8_t)(1u << (bit % 8));
				cr_assert_eq(tl_merkle_verify_consistency(m, n, roots[m], roots[n], cp, count),
				             TL_ECORRUPT, "flipped bit %u of hash %zu, %llu -> %llu", bit, i,
				             (unsigned long long)m, (unsigned long long)n);
				proof[i][bit / 8] ^= (uint8_t)(1u << (bit % 8));
			}
			if (m > 0 && m < n) {
				/* A forked history: the old root of a different tree. */
				uint8_t other[H];
				memcpy(other, roots[m], H);
				other[0] ^= 0x80;
				cr_assert_eq(tl_merkle_verify_consistency(m, n, other, roots[n], cp, count),
				             TL_ECORRUPT);
				memcpy(other, roots[n], H);
				other[H - 1] ^= 0x01;
				cr_assert_eq(tl_merkle_verify_consistency(m, n, roots[m], other, cp, count),
				             TL_ECORRUPT);
				/* The proof is for these sizes only. */
				if (m + 1 < n)
					cr_assert_neq(tl_merkle_verify_consistency(m + 1, n, roots[m + 1], roots[n], cp,
					                                           count),
					              0);
				cr_assert_neq(tl_merkle_verify_consistency(m, n, roots[m], roots[n], cp, count - 1), 0);
			}
		}
	}
	free(t);
}

Test(merkle_random, frontier_agrees_with_the_recursive_definition_up_to_1000)
{
	struct mem_tree *t = mem_new(1000);
	tl_merkle_source s = src_of(t, 0);
	tl_merkle_frontier f;
	tl_merkle_frontier_init(&f);
	for (uint64_t n = 1; n <= 1000; n++) {
		cr_assert_eq(tl_merkle_frontier_append(&f, t->leaf[n - 1]), 0);
		if (n % 37 == 0 || n == 512 || n == 1000) {
			uint8_t a[H], b[H];
			tl_merkle_frontier_root(&f, a);
			cr_assert_eq(tl_merkle_root(&s, n, b), 0);
			cr_assert(memcmp(a, b, H) == 0, "size %llu", (unsigned long long)n);
		}
	}
	free(t);
}

/* ---- the cache and the accessor ---- */

Test(merkle_source, cache_saves_leaf_reads_and_changes_nothing)
{
	struct mem_tree *t = mem_new(1000);
	tl_merkle_source plain = src_of(t, 0), cached = src_of(t, 1);
	uint8_t want[H], got[H];
	cr_assert_eq(tl_merkle_root(&plain, 1000, want), 0);
	unsigned cold = t->leaf_calls;
	cr_assert_eq(cold, 1000);
	t->leaf_calls = 0;
	cr_assert_eq(tl_merkle_root(&cached, 1000, got), 0); /* fills the cache */
	cr_assert(memcmp(want, got, H) == 0);
	cr_assert_gt(t->puts, 0);
	t->leaf_calls = 0;
	cr_assert_eq(tl_merkle_root(&cached, 1000, got), 0);
	cr_assert(memcmp(want, got, H) == 0);
	cr_assert_lt(t->leaf_calls, 10, "%u leaf reads with a warm cache", t->leaf_calls);
	cr_assert_gt(t->hits, 0);
	/* Proofs from the cache are the proofs from the leaves. */
	uint8_t p1[TL_MERKLE_PROOF_MAX][H], p2[TL_MERKLE_PROOF_MAX][H];
	size_t c1, c2;
	cr_assert_eq(tl_merkle_consistency_proof(&plain, 300, 1000, p1, &c1), 0);
	cr_assert_eq(tl_merkle_consistency_proof(&cached, 300, 1000, p2, &c2), 0);
	cr_assert_eq(c1, c2);
	cr_assert(memcmp(p1, p2, c1 * H) == 0);
	cr_assert_eq(tl_merkle_inclusion_proof(&plain, 777, 1000, p1, &c1), 0);
	cr_assert_eq(tl_merkle_inclusion_proof(&cached, 777, 1000, p2, &c2), 0);
	cr_assert_eq(c1, c2);
	cr_assert(memcmp(p1, p2, c1 * H) == 0);
	free(t);
}

Test(merkle_source, leaf_errors_pass_through)
{
	struct mem_tree *t = mem_new(20);
	tl_merkle_source s = src_of(t, 0);
	t->fail_at = 13;
	uint8_t r[H], proof[TL_MERKLE_PROOF_MAX][H];
	size_t count;
	cr_assert_eq(tl_merkle_root(&s, 20, r), -5);
	cr_assert_eq(tl_merkle_root(&s, 13, r), 0); /* leaf 13 is not in the first 13 */
	cr_assert_eq(tl_merkle_inclusion_proof(&s, 2, 20, proof, &count), -5);
	cr_assert_eq(tl_merkle_consistency_proof(&s, 5, 20, proof, &count), -5);
	free(t);
}

/* ---- frontier persistence ---- */

Test(merkle_frontier, encode_decode_round_trip)
{
	struct mem_tree *t = mem_new(300);
	tl_merkle_frontier f, g;
	tl_merkle_frontier_init(&f);
	uint8_t buf[TL_MERKLE_FRONTIER_MAX];
	size_t len;
	for (uint64_t n = 0; n <= 300; n++) {
		if (n > 0)
			tl_merkle_frontier_append(&f, t->leaf[n - 1]);
		cr_assert_eq(tl_merkle_frontier_encode(&f, buf, sizeof(buf), &len), 0);
		cr_assert_eq(len, 9 + (size_t)__builtin_popcountll(n) * H);
		cr_assert_eq(tl_merkle_frontier_decode(&g, buf, len), 0);
		cr_assert_eq(tl_merkle_frontier_size(&g), n);
		uint8_t a[H], b[H];
		tl_merkle_frontier_root(&f, a);
		tl_merkle_frontier_root(&g, b);
		cr_assert(memcmp(a, b, H) == 0);
	}
	/* A restored frontier keeps growing like the original. */
	tl_merkle_frontier_append(&g, t->leaf[0]);
	tl_merkle_frontier_append(&f, t->leaf[0]);
	uint8_t a[H], b[H];
	tl_merkle_frontier_root(&f, a);
	tl_merkle_frontier_root(&g, b);
	cr_assert(memcmp(a, b, H) == 0);
	free(t);
}

Test(merkle_frontier, decode_rejects_damage_and_encode_respects_cap)
{
	uint8_t leaf[H];
	tl_merkle_leaf_hash("x", 1, leaf);
	tl_merkle_frontier f, g;
	tl_merkle_frontier_init(&f);
	for (int i = 0; i < 5; i++)
		tl_merkle_frontier_append(&f, leaf);
	uint8_t buf[TL_MERKLE_FRONTIER_MAX];
	size_t len = 0;
	cr_assert_eq(tl_merkle_frontier_encode(&f, buf, 9 + H, &len), TL_ELIMIT); /* needs 2 hashes */
	cr_assert_eq(len, 0);
	cr_assert_eq(tl_merkle_frontier_encode(&f, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 9 + 2 * H);
	tl_merkle_frontier_init(&g);
	g.size = 42;
	cr_assert_eq(tl_merkle_frontier_decode(&g, buf, len - 1), TL_ECORRUPT);
	cr_assert_eq(tl_merkle_frontier_decode(&g, buf, 8), TL_ECORRUPT);
	cr_assert_eq(tl_merkle_frontier_decode(&g, buf, 0), TL_ECORRUPT);
	buf[0] = 2;
	cr_assert_eq(tl_merkle_frontier_decode(&g, buf, len), TL_ECORRUPT);
	buf[0] = 1;
	buf[8] = 7; /* size 7 needs three hashes, two are there */
	cr_assert_eq(tl_merkle_frontier_decode(&g, buf, len), TL_ECORRUPT);
	cr_assert_eq(g.size, 42, "a failed decode changed the frontier");
}

Test(merkle_frontier, full_tree_refuses_another_leaf)
{
	uint8_t buf[TL_MERKLE_FRONTIER_MAX], leaf[H];
	memset(buf, 0x33, sizeof(buf));
	buf[0] = 1;
	memset(buf + 1, 0xff, 8);
	tl_merkle_frontier f;
	cr_assert_eq(tl_merkle_frontier_decode(&f, buf, sizeof(buf)), 0);
	cr_assert_eq(tl_merkle_frontier_size(&f), UINT64_MAX);
	tl_merkle_leaf_hash(NULL, 0, leaf);
	cr_assert_eq(tl_merkle_frontier_append(&f, leaf), TL_EFULL);
	cr_assert_eq(tl_merkle_frontier_size(&f), UINT64_MAX);
	size_t len;
	cr_assert_eq(tl_merkle_frontier_encode(&f, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, TL_MERKLE_FRONTIER_MAX);
}
