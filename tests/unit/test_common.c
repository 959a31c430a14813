/* SPDX-License-Identifier: Apache-2.0 */
/* common/ basics: errors, hex ids, durations and times, bounded buffers, the capped arena. */
#include "tl_arena.h"
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_time.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <lmdb.h>
#include <nng/nng.h>
#include <string.h>

Test(error, every_code_has_a_message)
{
	for (int c = TL_EPARSE; c > TL_ELAST; c--) {
		const char *m = tl_strerror(c);
		cr_assert(m != NULL && strcmp(m, "threadline error") != 0, "code %d has no message", c);
	}
	cr_assert_str_eq(tl_strerror(0), "success");
	cr_assert_str_eq(tl_strerror(-ENOENT), strerror(ENOENT));
	cr_assert_str_eq(tl_strerror(12345), "unknown error");
}

Test(error, library_codes_translate)
{
	cr_assert_eq(tl_err_from_lmdb(MDB_NOTFOUND), TL_ENOTFOUND);
	cr_assert_eq(tl_err_from_lmdb(MDB_MAP_FULL), TL_EFULL);
	cr_assert_eq(tl_err_from_lmdb(MDB_CORRUPTED), TL_ECORRUPT);
	cr_assert_eq(tl_err_from_lmdb(EIO), -EIO);
	cr_assert_eq(tl_err_from_nng(NNG_ETIMEDOUT), TL_ETIMEOUT);
	cr_assert_eq(tl_err_from_nng(NNG_ECONNREFUSED), -ECONNREFUSED);
	cr_assert_eq(tl_err_from_nng(NNG_EMSGSIZE), TL_ELIMIT);
	tl_errmsg e;
	cr_assert_eq(tl_errf(&e, TL_EPARSE, "field %s at %d", "name", 7), TL_EPARSE);
	cr_assert_str_eq(e.msg, "field name at 7");
	cr_assert_eq(tl_errf(NULL, TL_ELIMIT, "ignored"), TL_ELIMIT);
}

Test(hex, decodes_either_case_and_rejects_bad_input)
{
	uint8_t id[8], keep[8];
	cr_assert_eq(tl_hex_decode("EEE19b7ec3C1B174", 16, id, 8), 0);
	char out[17];
	tl_hex_encode(id, 8, out);
	cr_assert_str_eq(out, "eee19b7ec3c1b174");
	memcpy(keep, id, 8);
	cr_assert_eq(tl_hex_decode("eee19b7ec3c1b17", 15, id, 8), TL_ELIMIT);
	cr_assert_eq(tl_hex_decode("eee19b7ec3c1b17g", 16, id, 8), TL_EPARSE);
	cr_assert_eq(memcmp(id, keep, 8), 0, "out must be untouched on error");
	uint8_t zero[16] = {0};
	cr_assert(tl_id_is_zero(zero, 16));
	zero[15] = 1;
	cr_assert(!tl_id_is_zero(zero, 16));
}

Test(time, durations)
{
	uint64_t ns;
	cr_assert_eq(tl_parse_duration("250ms", &ns), 0);
	cr_assert_eq(ns, 250 * TL_NS_PER_MS);
	cr_assert_eq(tl_parse_duration("1h30m", &ns), 0);
	cr_assert_eq(ns, 5400 * TL_NS_PER_S);
	cr_assert_eq(tl_parse_duration("1.5s", &ns), 0);
	cr_assert_eq(ns, 1500 * TL_NS_PER_MS);
	cr_assert_eq(tl_parse_duration("2d", &ns), 0);
	cr_assert_eq(ns, 2 * 86400 * TL_NS_PER_S);
	cr_assert_eq(tl_parse_duration("10us", &ns), 0);
	cr_assert_eq(ns, 10000);
	cr_assert_eq(tl_parse_duration("", &ns), TL_EPARSE);
	cr_assert_eq(tl_parse_duration("10", &ns), TL_EPARSE, "a number without a unit is ambiguous");
	cr_assert_eq(tl_parse_duration("10parsecs", &ns), TL_EPARSE);
	cr_assert_eq(tl_parse_duration("-1s", &ns), TL_EPARSE);
	cr_assert_eq(tl_parse_duration("99999999999999999999d", &ns), TL_ELIMIT);
	cr_assert_eq(tl_parse_duration("300000d", &ns), TL_ELIMIT);
}

Test(time, points_in_time)
{
	uint64_t ns, now = 1800000000ull * TL_NS_PER_S;
	cr_assert_eq(tl_parse_time("2018-12-13T14:51:00Z", now, &ns), 0);
	cr_assert_eq(ns, 1544712660ull * TL_NS_PER_S);
	cr_assert_eq(tl_parse_time("2018-12-13T15:51:00.25+01:00", now, &ns), 0);
	cr_assert_eq(ns, 1544712660ull * TL_NS_PER_S + 250 * TL_NS_PER_MS);
	cr_assert_eq(tl_parse_time("1544712660", now, &ns), 0, "unix seconds");
	cr_assert_eq(ns, 1544712660ull * TL_NS_PER_S);
	cr_assert_eq(tl_parse_time("1544712660000000001", now, &ns), 0, "unix nanoseconds");
	cr_assert_eq(ns, 1544712660000000001ull);
	cr_assert_eq(tl_parse_time("1h", now, &ns), 0, "relative to now");
	cr_assert_eq(ns, now - 3600 * TL_NS_PER_S);
	cr_assert_eq(tl_parse_time("2018-13-01T00:00:00Z", now, &ns), TL_EPARSE);
	cr_assert_eq(tl_parse_time("2018-12-13T14:51:00Zjunk", now, &ns), TL_EPARSE);
	cr_assert_eq(tl_parse_time("yesterday", now, &ns), TL_EPARSE);
	char buf[40];
	tl_format_time(1544712660ull * TL_NS_PER_S + 1500, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2018-12-13T14:51:00.000001Z");
	tl_format_duration(1500 * TL_NS_PER_MS, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.5s");
	tl_format_duration(212 * TL_NS_PER_MS, buf, sizeof(buf));
	cr_assert_str_eq(buf, "212ms");
}

Test(buf, grows_to_its_maximum_and_no_further)
{
	tl_buf b;
	tl_buf_init(&b, 100);
	char chunk[40];
	memset(chunk, 'x', sizeof(chunk));
	cr_assert_eq(tl_buf_append(&b, chunk, 40), 0);
	cr_assert_eq(tl_buf_append(&b, chunk, 40), 0);
	cr_assert_eq(tl_buf_append(&b, chunk, 40), TL_ELIMIT);
	cr_assert_eq(b.len, 80, "a failed append leaves the contents as they were");
	cr_assert_eq(tl_buf_printf(&b, "%d", 1234567890), 0);
	cr_assert_eq(b.len, 90);
	cr_assert_eq(b.data[b.len], 0, "text stays NUL-terminated");
	cr_assert_eq(tl_buf_printf(&b, "%s", "this does not fit"), TL_ELIMIT);
	cr_assert_eq(tl_buf_append(&b, chunk, SIZE_MAX), TL_ELIMIT, "no overflow on huge sizes");
	size_t len;
	uint8_t *p = tl_buf_steal(&b, &len);
	cr_assert_eq(len, 90);
	cr_assert_null(b.data);
	free(p);
	tl_buf_fini(&b);
	tl_buf_fini(NULL);
}

Test(arena, cap_bounds_memory_and_reset_reuses_blocks)
{
	tl_arena a;
	tl_arena_init(&a, 4096, 64 * 1024);
	tl_arena_set_retain(&a, 3 * 4096);
	size_t got = 0;
	while (tl_arena_alloc(&a, 1000) != NULL)
		got += 1000;
	cr_assert(got <= 64 * 1024 && got >= 60 * 1024, "cap honoured (%zu)", got);
	cr_assert_null(tl_arena_alloc(&a, 32), "nothing past the cap");
	cr_assert_null(tl_arena_alloc(&a, SIZE_MAX), "no overflow on huge sizes");
	void *p = tl_arena_alloc(&a, 0);
	(void)p;
	tl_arena_reset(&a);
	cr_assert_eq(a.used, 0);
	cr_assert_eq(a.spare_bytes, 3 * 4096, "reset keeps exactly the retained blocks");
	char *s = tl_arena_strndup(&a, "hello world", 5);
	cr_assert_str_eq(s, "hello");
	cr_assert_eq(((uintptr_t)tl_arena_alloc(&a, 3)) % 16, 0, "16-byte alignment");
	cr_assert_eq(a.spare_bytes, 2 * 4096, "a retained block was reused, not a new one");
	/* protobuf-c's allocator interface goes through the same cap. */
	ProtobufCAllocator *pa = tl_arena_allocator(&a);
	cr_assert_not_null(pa->alloc(pa->allocator_data, 100));
	cr_assert_null(pa->alloc(pa->allocator_data, 1 << 20));
	tl_arena_fini(&a);
	tl_arena_fini(NULL);
}
