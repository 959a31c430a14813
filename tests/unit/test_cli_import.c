/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline import` in-process: the line reader (chunk boundaries, CRLF,
 * BOM, overlong lines, gzip members, cut and foreign compression), the file
 * id (BLAKE2b of the decompressed content), one line's decoding and
 * validation, and the sender against a fake intake on inproc:// that
 * refuses, asks to retry, loses an ack, never answers or acks the wrong
 * batch.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <errno.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "co_cli_import.h"
#include "tl_testkit.h"
#include "tl_time.h"

static char dir[TK_PATH_MAX];

static void mkdir_tmp(void)
{
	int rc = tk_tmpdir("import", dir, sizeof(dir));
	cr_assert_eq(rc, 0, "tk_tmpdir: %s", tl_strerror(rc));
}

static void rm_tmp(void)
{
	cr_expect_eq(tk_rmrf(dir), 0);
}

static const char *path_of(const char *name)
{
	static char p[4][TK_PATH_MAX + 64];
	static int k;
	char *out = p[k++ % 4];
	snprintf(out, sizeof(p[0]), "%s/%s", dir, name);
	return out;
}

static const char *put(const char *name, const void *data, size_t len)
{
	const char *p = path_of(name);
	int rc = tk_write_file(p, data, len);
	cr_assert_eq(rc, 0, "cannot write %s: %s", p, tl_strerror(rc));
	return p;
}

/* data as gzip, in `members` concatenated members. */
static const char *put_gz(const char *name, const void *data, size_t len, int members)
{
	const char *p = path_of(name);
	int rc = tk_write_gz(p, data, len, members);
	cr_assert_eq(rc, 0, "cannot write %s: %s", p, tl_strerror(rc));
	return p;
}

/* Reads every line of path into lines[] ("<overlong>" for a skipped one). Returns the reader's last result. */
static int read_all(const char *path, size_t max_line, char **lines, size_t cap, size_t *n, tl_errmsg *err)
{
	co_import_reader *r = NULL;
	int rc = co_import_reader_open(path, max_line, &r, err);
	*n = 0;
	if (rc != 0)
		return rc;
	co_import_line ln;
	while ((rc = co_import_reader_next(r, &ln, err)) == 1) {
		cr_assert_lt(*n, cap);
		cr_assert_eq(ln.lineno, *n + 1, "line numbers count every line");
		lines[(*n)++] = ln.overlong ? strdup("<overlong>") : strndup((const char *)ln.data, ln.len);
	}
	if (rc != 0) {
		tl_errmsg again = {{0}};
		cr_expect_eq(co_import_reader_next(r, &ln, &again), rc, "errors are sticky");
	}
	co_import_reader_close(r);
	return rc;
}

static void free_lines(char **lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
}

/* Reads path to its end without an error: its lines must be want[0..nwant) (a NULL entry is not compared). */
static void expect_lines(const char *path, size_t max_line, const char *const *want, size_t nwant)
{
	char *l[8];
	size_t n;
	tl_errmsg err = {{0}};
	cr_assert_eq(read_all(path, max_line, l, 8, &n, &err), 0, "%s: %s", path, err.msg);
	cr_assert_eq(n, nwant, "%s: %zu lines, want %zu", path, n, nwant);
	for (size_t i = 0; i < n; i++)
		if (want[i] != NULL)
			cr_expect_str_eq(l[i], want[i], "%s: line %zu", path, i + 1);
	free_lines(l, n);
}

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

TestSuite(reader, .init = mkdir_tmp, .fini = rm_tmp);

Test(reader, crlf_bom_blank_and_unterminated_lines)
{
	static const char text[] = "\xef\xbb\xbf{\"a\":1}\r\n\n  \nsecond\nlast without newline";
	static const char *const want[] = {"{\"a\":1}", "", "  ", "second", "last without newline"};
	expect_lines(put("a.jsonl", text, sizeof(text) - 1), 0, want, N_OF(want));
	expect_lines(put("empty", "", 0), 0, NULL, 0);
}

Test(reader, lines_across_read_chunks)
{
	/* A 700 KiB line spans several 256 KiB reads; the lines around it stay intact. */
	size_t big = (size_t)700 * 1024;
	char *text = malloc(big + 64);
	size_t k = 0;
	k += (size_t)sprintf(text + k, "first\n");
	for (size_t i = 0; i < big; i++)
		text[k++] = (char)('a' + i % 26);
	k += (size_t)sprintf(text + k, "\nthird\n");
	char *l[8];
	size_t n;
	tl_errmsg err = {{0}};
	cr_assert_eq(read_all(put("big.jsonl", text, k), 0, l, 8, &n, &err), 0, "%s", err.msg);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(l[0], "first");
	cr_expect_eq(strlen(l[1]), big);
	cr_expect_eq(memcmp(l[1], text + 6, big), 0);
	cr_expect_str_eq(l[2], "third");
	free_lines(l, n);

	/* The same with max_line below it: skipped and counted, the next line read as usual. */
	static const char *const skipped[] = {"first", "<overlong>", "third"};
	expect_lines(path_of("big.jsonl"), 1000, skipped, N_OF(skipped));
	free(text);
}

Test(reader, overlong_lines_at_every_place)
{
	/* An overlong last line without newline is reported too. */
	static const char text[] = "0123456789abcdefXYZ\nshort\n0123456789abcdefXYZ";
	static const char *const want[] = {"<overlong>", "short", "<overlong>"};
	expect_lines(put("o.jsonl", text, sizeof(text) - 1), 16, want, N_OF(want));
	/* Exactly max_line bytes is not overlong. */
	static const char *const exact[] = {"0123456789abcdef"};
	expect_lines(put("x.jsonl", "0123456789abcdef\n", 17), 16, exact, N_OF(exact));
}

Test(reader, gzip_members_read_as_one_text)
{
	static const char text[] = "one\ntwo\nthree\nfour\nfive\n";
	static const char *const want[] = {"one", "two", "three", "four", "five"};
	expect_lines(put_gz("m.gz", text, sizeof(text) - 1, 3), 0, want, N_OF(want));
}

Test(reader, cut_gzip_is_an_error_after_the_whole_lines)
{
	/* Text that does not compress, so cutting the file cuts the text. */
	unsigned char rnd[3000];
	randombytes_buf(rnd, sizeof(rnd));
	char text[8192];
	size_t k = (size_t)sprintf(text, "line one\nline two\n");
	for (size_t i = 0; i < sizeof(rnd); i++)
		k += (size_t)sprintf(text + k, "%02x", rnd[i]);
	text[k++] = '\n';
	const char *p = put_gz("cut.gz", text, k, 1);
	size_t len;
	FILE *f = fopen(p, "rb");
	cr_assert_not_null(f);
	char *gz = malloc(16384);
	len = fread(gz, 1, 16384, f);
	fclose(f);
	put("cut.gz", gz, len / 2);
	free(gz);
	char *l[8];
	size_t n;
	tl_errmsg err = {{0}};
	int rc = read_all(p, 0, l, 8, &n, &err);
	cr_expect_eq(rc, TL_EPARSE, "rc %d: %s", rc, err.msg);
	cr_expect_eq(n, 2, "the two whole lines, not the cut one");
	cr_expect(strstr(err.msg, "cut short in line 3") != NULL, "%s", err.msg);
	cr_expect(strstr(err.msg, "cut.gz") != NULL, "names the file: %s", err.msg);
	free_lines(l, n);
}

Test(reader, files_it_cannot_read)
{
	co_import_reader *r = NULL;
	tl_errmsg err = {{0}};
	cr_expect_eq(co_import_reader_open(dir, 0, &r, &err), -EISDIR);
	cr_expect_eq(co_import_reader_open(path_of("missing"), 0, &r, &err), -ENOENT);
	cr_expect(strstr(err.msg, "missing") != NULL, "%s", err.msg);
	static const unsigned char zstd[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x00, 0x00};
	cr_expect_eq(co_import_reader_open(put("z.zst", zstd, sizeof(zstd)), 0, &r, &err), TL_EUNSUPPORTED);
	cr_expect(strstr(err.msg, "zstd") != NULL, "%s", err.msg);
	cr_expect_null(r);
}

Test(reader, file_id_is_blake2b_of_the_decompressed_content)
{
	static const char text[] = "{\"resourceSpans\":[]}\n{\"resourceSpans\":[]}\n";
	uint8_t want[crypto_generichash_BYTES];
	crypto_generichash(want, sizeof(want), (const unsigned char *)text, sizeof(text) - 1, NULL, 0);
	uint8_t a[16], b[16], c[16];
	tl_errmsg err = {{0}};
	cr_assert_eq(co_import_file_id(put("p.jsonl", text, sizeof(text) - 1), a, NULL, NULL, &err), 0, "%s", err.msg);
	cr_expect_eq(memcmp(a, want, 16), 0, "the first 16 bytes of BLAKE2b-256");
	cr_assert_eq(co_import_file_id(put_gz("p.jsonl.gz", text, sizeof(text) - 1, 2), b, NULL, NULL, &err), 0);
	cr_expect_eq(memcmp(a, b, 16), 0, "plain and gzip: the same file");
	cr_assert_eq(co_import_file_id(put("q.jsonl", text, sizeof(text) - 2), c, NULL, NULL, &err), 0);
	cr_expect_neq(memcmp(a, c, 16), 0, "another content, another id");
	cr_expect_eq(co_import_file_id(path_of("nothing"), c, NULL, NULL, &err), -ENOENT);
}

/* ---- one line ---- */

static tl_otlp_limits lim;
static tl_arena arena;

static void line_setup(void)
{
	tl_otlp_limits_default(&lim);
	tl_arena_init(&arena, (size_t)64 * 1024, lim.max_decoded_bytes);
}

static void line_teardown(void)
{
	tl_arena_fini(&arena);
}

static int enc(const char *line, co_import_encoded *out, tl_errmsg *err)
{
	return co_import_line_encode((const uint8_t *)line, strlen(line), &lim, &arena, out, err);
}

#define SPAN(id, name) "{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"" id "\",\"name\":\"" name "\"}"
#define LINE(spans) "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[" spans "]}]}]}"

TestSuite(line, .init = line_setup, .fini = line_teardown);

Test(line, the_spec_example_encodes)
{
	const char *td = getenv("TL_TESTDATA");
	cr_assert_not_null(td);
	char p[512];
	snprintf(p, sizeof(p), "%s/otlp/trace.json", td);
	json_t *doc = json_load_file(p, 0, NULL);
	cr_assert_not_null(doc);
	char *line = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	co_import_encoded e;
	tl_errmsg err = {{0}};
	cr_assert_eq(enc(line, &e, &err), 0, "%s", err.msg);
	free(line);
	cr_expect_eq(e.spans, 1);
	cr_expect_eq(e.spans_rejected, 0);
	tl_pb_export_req *req =
	        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, e.pb_len, e.pb);
	cr_assert_not_null(req, "the encoding is an ExportTraceServiceRequest");
	cr_expect_str_eq(req->resource_spans[0]->scope_spans[0]->spans[0]->name, "I'm a server span");
	cr_expect_eq(req->resource_spans[0]->scope_spans[0]->spans[0]->start_time_unix_nano,
	             UINT64_C(1544712660000000000));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
	free(e.pb);
}

Test(line, errors_name_the_column_or_field)
{
	co_import_encoded e;
	tl_errmsg err = {{0}};
	cr_expect_eq(enc("{\"resourceSpans\": [ oops", &e, &err), TL_EPARSE);
	cr_expect(strstr(err.msg, "invalid JSON at column ") != NULL, "one line: no line number: %s", err.msg);
	cr_expect_eq(enc(LINE(SPAN("eee19b7ec3c1b174", "a") "," SPAN("zz", "b")), &e, &err), TL_EPARSE);
	cr_expect(strstr(err.msg, "spans[1].spanId") != NULL, "%s", err.msg);
	cr_expect_null(e.pb);
	cr_expect_eq(enc("{\"resourceMetrics\":[{\"scopeMetrics\":[]}]}", &e, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "metrics") != NULL, "%s", err.msg);
	cr_expect_eq(enc("{\"resourceLogs\":[]}", &e, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "logs") != NULL, "%s", err.msg);
	cr_expect_eq(enc("[1,2]", &e, &err), TL_EPARSE);
}

Test(line, validation_removes_bad_spans_and_counts_them)
{
	co_import_encoded e;
	tl_errmsg err = {{0}};
	/* A 4-byte span id decodes (even hex) but breaks the OTLP rule: that span goes, the other stays. */
	cr_assert_eq(enc(LINE(SPAN("eee19b7ec3c1b174", "good") "," SPAN("eee19b7e", "short id")), &e, &err), 0, "%s",
	             err.msg);
	cr_expect_eq(e.spans, 1);
	cr_expect_eq(e.spans_rejected, 1);
	cr_expect(strstr(e.why.msg, "span_id") != NULL, "%s", e.why.msg);
	free(e.pb);
	cr_expect_eq(enc(LINE(SPAN("eee19b7e", "short id")), &e, &err), TL_EINVALID);
	cr_expect(strstr(err.msg, "rejected") != NULL, "%s", err.msg);
	/* No spans at all is not an error: nothing to send. */
	cr_expect_eq(enc("{}", &e, &err), 0);
	cr_expect_null(e.pb);
	cr_expect_eq(enc("{\"resourceSpans\":[]}", &e, &err), 0);
	cr_expect_null(e.pb);
}

/* ---- the sender, against a fake intake ---- */

enum policy {
	P_REJECT_POISON, /* refuse a Batch with several records, and a single one holding span "poison" */
	P_RETRY_FIRST,   /* ACK_STATUS_RETRY to the first request */
	P_DROP_FIRST,    /* no answer to the first request */
	P_SILENT,        /* never answers */
	P_WRONG_SEQ,     /* acks seq + 1 */
};

typedef struct fake {
	nng_socket sock;
	char url[64];
	enum policy policy;
	pthread_t thr;
	volatile int stop;
	int requests;
	uint64_t seqs[64];
	size_t records[64];
	uint64_t first_ns, second_ns;
} fake;

static bool has_poison(const tl_pb_record *r)
{
	tl_pb_export_req *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	        NULL, r->otlp_traces.len, r->otlp_traces.data);
	bool p = false;
	for (size_t i = 0; q != NULL && i < q->n_resource_spans; i++)
		for (size_t j = 0; j < q->resource_spans[i]->n_scope_spans; j++)
			for (size_t k = 0; k < q->resource_spans[i]->scope_spans[j]->n_spans; k++)
				p |= strcmp(q->resource_spans[i]->scope_spans[j]->spans[k]->name, "poison") == 0;
	if (q != NULL)
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(q, NULL);
	return p;
}

static void *fake_run(void *arg)
{
	fake *f = arg;
	while (!f->stop) {
		nng_msg *m;
		if (nng_recvmsg(f->sock, &m, 0) != 0)
			continue;
		tl_pb_batch *b = threadline__v1__batch__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		cr_assert_not_null(b, "the CLI sent something that is not a Batch");
		int k = f->requests++;
		if (k < 64) {
			f->seqs[k] = b->seq;
			f->records[k] = b->n_records;
		}
		if (k == 0)
			f->first_ns = tl_mono_ns();
		else if (k == 1)
			f->second_ns = tl_mono_ns();
		tl_pb_ack ack = THREADLINE__V1__ACK__INIT;
		ack.agent_id = b->agent_id;
		ack.seq = b->seq;
		ack.status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK;
		ack.spans_stored = b->n_records;
		bool answer = true;
		switch (f->policy) {
		case P_REJECT_POISON:
			if (b->n_records > 1 || has_poison(b->records[0])) {
				ack.status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED;
				ack.message = b->n_records > 1 ? "batch seq 1: record 1: poison" : "record 0: poison";
				ack.spans_stored = 0;
			}
			break;
		case P_RETRY_FIRST:
			if (k == 0) {
				ack.status = THREADLINE__V1__ACK__STATUS__ACK_STATUS_RETRY;
				ack.retry_after_ms = 300;
				ack.spans_stored = 0;
			}
			break;
		case P_DROP_FIRST:
			answer = k > 0;
			break;
		case P_SILENT:
			answer = false;
			break;
		case P_WRONG_SEQ:
			ack.seq = b->seq + 1;
			break;
		}
		if (answer) {
			size_t n = threadline__v1__ack__get_packed_size(&ack);
			nng_msg_clear(m);
			cr_assert_eq(nng_msg_realloc(m, n), 0);
			threadline__v1__ack__pack(&ack, nng_msg_body(m));
			if (nng_sendmsg(f->sock, m, 0) != 0)
				nng_msg_free(m);
		} else {
			nng_msg_free(m);
		}
		threadline__v1__batch__free_unpacked(b, NULL);
	}
	return NULL;
}

static void fake_start(fake *f, enum policy p)
{
	static int n;
	memset(f, 0, sizeof(*f));
	f->policy = p;
	snprintf(f->url, sizeof(f->url), "inproc://tl-import-%d-%d", (int)getpid(), n++);
	cr_assert_eq(nng_rep0_open(&f->sock), 0);
	nng_socket_set_ms(f->sock, NNG_OPT_RECVTIMEO, 100);
	cr_assert_eq(nng_listen(f->sock, f->url, NULL, 0), 0);
	cr_assert_eq(pthread_create(&f->thr, NULL, fake_run, f), 0);
}

static void fake_stop(fake *f)
{
	f->stop = 1;
	pthread_join(f->thr, NULL);
	nng_close(f->sock);
}

static const char *three_lines(void)
{
	static const char text[] = LINE(SPAN("eee19b7ec3c1b171", "a")) "\n" LINE(
	        SPAN("eee19b7ec3c1b172", "poison")) "\n" LINE(SPAN("eee19b7ec3c1b173", "c")) "\n";
	return put("three.jsonl", text, sizeof(text) - 1);
}

/* Runs `import PATH --collector URL --json` in-process with the given ack timeout. */
static int import(const char *path, const char *url, uint64_t timeout_ms)
{
	co_cli cli = {.collector = "unused", .timeout_ms = timeout_ms, .json = true};
	char *argv[] = {"import", (char *)path, "--collector", (char *)url, NULL};
	int code = co_cli_import(&cli, 4, argv);
	fflush(stdout);
	fflush(stderr);
	return code;
}

static json_t *summary(void)
{
	FILE *f = cr_get_redirected_stdout();
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	json_t *j = json_loads(buf, 0, NULL);
	cr_assert_not_null(j, "no JSON summary on stdout: %s", buf);
	return j;
}

static long long num(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void sender_setup(void)
{
	mkdir_tmp();
	cr_redirect_stdout();
	cr_redirect_stderr();
}

/*
 * Imports three_lines() against a fake intake with policy p, waiting
 * timeout_ms for each ack; the exit code must be want_code. f keeps what the
 * fake intake saw.
 */
static void import_against(fake *f, enum policy p, uint64_t timeout_ms, int want_code, const char *why)
{
	fake_start(f, p);
	int code = import(three_lines(), f->url, timeout_ms);
	fake_stop(f);
	cr_expect_eq(code, want_code, "%s: exit %d, want %d", why, code, want_code);
}

TestSuite(sender, .init = sender_setup, .fini = rm_tmp, .timeout = 60);

Test(sender, a_refused_batch_is_resent_line_by_line)
{
	fake f;
	import_against(&f, P_REJECT_POISON, 2000, 1, "a line failed");
	/* The whole batch (seq 1, 3 records), then each line alone with its own line number. */
	cr_assert_eq(f.requests, 4);
	cr_expect_eq(f.seqs[0], 1);
	cr_expect_eq(f.records[0], 3);
	for (int i = 1; i < 4; i++) {
		cr_expect_eq(f.seqs[i], (uint64_t)i);
		cr_expect_eq(f.records[i], 1);
	}
	json_t *s = summary();
	cr_expect_eq(num(s, "lines_stored"), 2);
	cr_expect_eq(num(s, "lines_failed"), 1);
	cr_expect_eq(num(s, "spans_rejected"), 1);
	json_decref(s);
}

Test(sender, retry_is_honoured)
{
	fake f;
	import_against(&f, P_RETRY_FIRST, 2000, 0, "all stored");
	cr_assert_eq(f.requests, 2);
	cr_expect_eq(f.seqs[1], f.seqs[0], "the same batch again");
	cr_expect_geq(f.second_ns - f.first_ns, 300 * TL_NS_PER_MS, "waited retry_after_ms");
	json_t *s = summary();
	cr_expect_eq(num(s, "lines_stored"), 3);
	json_decref(s);
}

Test(sender, a_lost_ack_is_resent)
{
	fake f;
	import_against(&f, P_DROP_FIRST, 300, 0, "all stored");
	cr_assert_eq(f.requests, 2);
	cr_expect_eq(f.seqs[1], f.seqs[0]);
}

Test(sender, a_silent_collector_is_given_up)
{
	fake f;
	import_against(&f, P_SILENT, 150, 3, "gave up");
	cr_expect_eq(f.requests, 6, "MAX_ATTEMPTS sends");
	json_t *s = summary();
	cr_expect(json_is_false(json_object_get(s, "complete")));
	cr_expect_eq(num(s, "lines_stored"), 0);
	json_decref(s);
}

Test(sender, an_ack_for_another_batch_stops_at_once)
{
	fake f;
	import_against(&f, P_WRONG_SEQ, 2000, 3, "a protocol error");
	cr_expect_eq(f.requests, 1, "no resend of a protocol error");
}

Test(reader, reading_names_the_file_too)
{
	/* The reader hashes what it reads: equal to the naming pass, unless the file changed in between. */
	static const char text[] = "one\ntwo\nthree";
	const char *p = put_gz("r.gz", text, sizeof(text) - 1, 2);
	uint8_t named[16], read[16];
	tl_errmsg err = {{0}};
	cr_assert_eq(co_import_file_id(p, named, NULL, NULL, &err), 0, "%s", err.msg);
	co_import_reader *r = NULL;
	cr_assert_eq(co_import_reader_open(p, 0, &r, &err), 0);
	co_import_line ln;
	while (co_import_reader_next(r, &ln, &err) == 1)
		;
	co_import_reader_id(r, read);
	co_import_reader_close(r);
	cr_expect_eq(memcmp(named, read, 16), 0);

	p = put("r.gz", "one\ntwo\nthree, longer now\n", 26);
	cr_assert_eq(co_import_reader_open(p, 0, &r, &err), 0);
	while (co_import_reader_next(r, &ln, &err) == 1)
		;
	co_import_reader_id(r, read);
	co_import_reader_close(r);
	cr_expect_neq(memcmp(named, read, 16), 0, "another content read than named");
}
