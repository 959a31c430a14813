/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixture of the unit tests that run against a real collector store in
 * a temporary directory: the store S, a test-data arena A, an answer arena
 * QA and a batch sequence counter. Include it once, from one test file;
 * that file's Criterion init and fini call store_fixture_setup() and
 * store_fixture_teardown().
 */
#ifndef STORE_FIXTURE_H
#define STORE_FIXTURE_H

#include "co_store.h"
#include "tl_arena.h"
#include "tl_error.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE_UNUSED __attribute__((unused))

static char dir[64];
static tl_arena A;  /* test data */
static tl_arena QA; /* answers */
static co_store *S;
static uint64_t seq;

static int store_fixture_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* (Re)opens S on dir. */
static FIXTURE_UNUSED void store_fixture_open(void)
{
	co_store_opts o = {.dir = dir, .map_size = 64 << 20};
	tl_errmsg err = {{0}};
	int rc = co_store_open(&o, &S, &err);
	cr_assert_eq(rc, 0, "open %s: %s (%s)", dir, tl_strerror(rc), err.msg);
}

/* A fresh directory /tmp/tl_<name>_XXXXXX with a store in it; A's blocks are data_block bytes. */
static FIXTURE_UNUSED void store_fixture_setup(const char *name, size_t data_block)
{
	snprintf(dir, sizeof(dir), "/tmp/tl_%s_XXXXXX", name);
	cr_assert_not_null(mkdtemp(dir));
	tl_arena_init(&A, data_block, 0);
	tl_arena_init(&QA, 64 << 10, 0);
	store_fixture_open();
	seq = 0;
}

static FIXTURE_UNUSED void store_fixture_teardown(void)
{
	co_store_close(S);
	nftw(dir, store_fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
	tl_arena_fini(&A);
	tl_arena_fini(&QA);
}

/* n zeroed bytes of test data. */
static FIXTURE_UNUSED void *az(size_t n)
{
	void *p = tl_arena_alloc(&A, n);
	cr_assert_not_null(p);
	memset(p, 0, n);
	return p;
}

/* A copy of s in the test-data arena. */
static FIXTURE_UNUSED char *as(const char *s)
{
	return tl_arena_strndup(&A, s, strlen(s));
}

#endif
