/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline import FILE`: reads an OTLP/JSON Lines file twice -- once to
 * name it (BLAKE2b of its content, the agent id), once to send it -- and
 * ships its lines to the collector's intake as wire Batches, the way an
 * agent's sender does: nng REQ/REP, a window of requests in flight (one nng
 * context each), a resend with backoff when an ack does not come or the
 * collector asks to retry. Bad lines are named and skipped; the rest is
 * stored. gzip files are read with zlib's gz* API, which also reads a plain
 * file as it is.
 */
#include "co_cli_import.h"

#include "tl_buf.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_time.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define READ_CHUNK ((size_t)256 << 10)
#define MAX_ATTEMPTS 6
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ACK_MAX_BYTES ((size_t)64 << 10)
#define ERRORS_SHOWN_MAX 100
#define PROGRESS_EVERY_NS (200 * TL_NS_PER_MS)

static const char usage[] =
        "usage: threadline import FILE [--collector URL] [--json]\n"
        "\n"
        "Stores the traces of an OTLP/JSON Lines file: one TracesData (or ExportTraceServiceRequest)\n"
        "per line, as the OpenTelemetry Collector's file exporter writes them; gzip files too.\n"
        "The lines go to the collector's batch intake like an agent's batches, named by the file's\n"
        "content and line numbers: importing a file again stores nothing twice, and an interrupted\n"
        "import is finished by running it again. A bad line is reported (FILE:LINE: reason) and\n"
        "skipped; the others are stored.\n"
        "\n"
        "  --collector URL   the collector's intake, where agents send (default " CO_IMPORT_DEFAULT_URL ");\n"
        "                    not the query endpoint of the global --collector\n"
        "  --json            print the counts as one JSON object on stdout\n"
        "\n"
        "Exit codes: 0 every line stored (now or earlier), 1 a line or span failed or the file\n"
        "could not be read to its end, 2 bad usage, 3 the collector could not be reached.\n";

/* ---- reading ---- */

struct co_import_reader {
	gzFile gz;
	char *path;
	uint64_t size;
	size_t max_line;
	uint8_t *in;
	size_t in_pos, in_len;
	tl_buf line;   /* a line spread over reads */
	bool skipping; /* inside an overlong line */
	bool eof;
	uint64_t lineno;
	int err_rc; /* sticky */
	tl_errmsg err_msg;
	crypto_generichash_state hash; /* of every byte read, to see whether the file changed since it was named */
};

/* Opens path as a gzFile (plain files are read as they are). Returns 0, -errno or TL_EUNSUPPORTED. */
static int open_gz(const char *path, gzFile *gz, uint64_t *size, tl_errmsg *err)
{
	*gz = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno != 0 ? errno : EIO;
		return tl_errf(err, -e, "%s: %s", path, strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno != 0 ? errno : EIO;
		close(fd);
		return tl_errf(err, -e, "%s: %s", path, strerror(e));
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return tl_errf(err, -EISDIR, "%s: is a directory", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return tl_errf(err, -EINVAL, "%s: not a regular file (it is read twice: to name it, then to send it)",
		               path);
	}
	uint8_t magic[4];
	if (pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) && magic[0] == 0x28 && magic[1] == 0xb5 &&
	    magic[2] == 0x2f && magic[3] == 0xfd) {
		close(fd);
		return tl_errf(err, TL_EUNSUPPORTED, "%s: zstd-compressed; decompress it first (zstd -d)", path);
	}
	*gz = gzdopen(fd, "rb");
	if (*gz == NULL) {
		close(fd);
		return tl_errf(err, -ENOMEM, "%s: out of memory", path);
	}
	gzbuffer(*gz, (unsigned)READ_CHUNK);
	*size = (uint64_t)st.st_size;
	return 0;
}

/* After gzread returned 0 or less: the stream's error, or 0 when it simply ended. */
static int gz_error(gzFile gz, const char *path, const char *where, tl_errmsg *err)
{
	int zerr = Z_OK;
	const char *m = gzerror(gz, &zerr);
	if (zerr == Z_OK)
		return 0;
	if (zerr == Z_ERRNO) {
		int e = errno != 0 ? errno : EIO;
		return tl_errf(err, -e, "%s: read error %s: %s", path, where, strerror(e));
	}
	if (zerr == Z_MEM_ERROR)
		return tl_errf(err, -ENOMEM, "%s: out of memory %s", path, where);
	/* gzdopen names the file "<fd:N>" in its messages: the caller names it better. */
	if (m != NULL && strncmp(m, "<fd:", 4) == 0 && strstr(m, ">: ") != NULL)
		m = strstr(m, ">: ") + 3;
	/* Z_BUF_ERROR is zlib's "unexpected end of file": a gzip stream cut short. */
	return tl_errf(err, TL_EPARSE, "%s: gzip stream %s %s: %s", path, zerr == Z_BUF_ERROR ? "cut short" : "corrupt",
	               where, m != NULL ? m : "unknown error");
}

int co_import_file_id(const char *path, uint8_t id[16], co_import_progress_fn progress, void *ud, tl_errmsg *err)
{
	memset(id, 0, 16);
	if (sodium_init() < 0)
		return tl_errf(err, -ENOMEM, "libsodium cannot start");
	gzFile gz = NULL;
	uint64_t size = 0;
	int rc = open_gz(path, &gz, &size, err);
	if (rc != 0 || gz == NULL)
		return rc != 0 ? rc : -EIO;
	uint8_t *buf = malloc(READ_CHUNK);
	if (buf == NULL) {
		gzclose(gz);
		return tl_errf(err, -ENOMEM, "%s: out of memory", path);
	}
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, crypto_generichash_BYTES);
	uint64_t total = 0;
	for (;;) {
		int n = gzread(gz, buf, (unsigned)READ_CHUNK);
		if (n <= 0) {
			char where[64];
			snprintf(where, sizeof(where), "after %llu bytes", (unsigned long long)total);
			rc = gz_error(gz, path, where, err);
			break;
		}
		crypto_generichash_update(&h, buf, (unsigned long long)n);
		total += (uint64_t)n;
		if (progress != NULL)
			progress(ud, (uint64_t)gzoffset(gz), size);
	}
	uint8_t out[crypto_generichash_BYTES];
	crypto_generichash_final(&h, out, sizeof(out));
	if (rc == 0 || rc == TL_EPARSE)
		memcpy(id, out, 16);
	free(buf);
	gzclose(gz);
	return rc;
}

int co_import_reader_open(const char *path, size_t max_line, co_import_reader **out, tl_errmsg *err)
{
	*out = NULL;
	co_import_reader *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return tl_errf(err, -ENOMEM, "%s: out of memory", path);
	r->max_line = max_line ? max_line : CO_IMPORT_LINE_MAX;
	tl_buf_init(&r->line, r->max_line);
	r->path = strdup(path);
	r->in = malloc(READ_CHUNK);
	if (r->path == NULL || r->in == NULL) {
		co_import_reader_close(r);
		return tl_errf(err, -ENOMEM, "%s: out of memory", path);
	}
	int rc = open_gz(path, &r->gz, &r->size, err);
	if (rc != 0) {
		co_import_reader_close(r);
		return rc;
	}
	crypto_generichash_init(&r->hash, NULL, 0, crypto_generichash_BYTES);
	*out = r;
	return 0;
}

static int emit(co_import_reader *r, const uint8_t *p, size_t n, bool unterminated, co_import_line *line)
{
	r->lineno++;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (r->lineno == 1 && n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
		p += 3;
		n -= 3;
	}
	line->data = p;
	line->len = n;
	line->lineno = r->lineno;
	line->overlong = false;
	line->unterminated = unterminated;
	return 1;
}

static int emit_overlong(co_import_reader *r, bool unterminated, co_import_line *line)
{
	r->skipping = false;
	r->lineno++;
	line->data = NULL;
	line->len = 0;
	line->lineno = r->lineno;
	line->overlong = true;
	line->unterminated = unterminated;
	return 1;
}

static int sticky(co_import_reader *r, int rc, tl_errmsg *err)
{
	r->err_rc = rc;
	if (err != NULL)
		*err = r->err_msg;
	return rc;
}

int co_import_reader_next(co_import_reader *r, co_import_line *line, tl_errmsg *err)
{
	if (r->err_rc != 0)
		return sticky(r, r->err_rc, err);
	/* The line handed out last time, if it was assembled here, is done with. */
	tl_buf_reset(&r->line);
	for (;;) {
		if (r->in_pos < r->in_len) {
			uint8_t *s = r->in + r->in_pos;
			size_t avail = r->in_len - r->in_pos;
			uint8_t *nl = memchr(s, '\n', avail);
			size_t take = nl != NULL ? (size_t)(nl - s) : avail;
			r->in_pos += take + (nl != NULL ? 1 : 0);
			if (!r->skipping && nl != NULL && r->line.len == 0) {
				if (take > r->max_line)
					return emit_overlong(r, false, line);
				return emit(r, s, take, false, line);
			}
			if (!r->skipping) {
				if (r->line.len + take > r->max_line) {
					r->skipping = true;
					tl_buf_reset(&r->line);
				} else if (tl_buf_append(&r->line, s, take) != 0) {
					tl_errf(&r->err_msg, -ENOMEM, "%s: out of memory at line %llu", r->path,
					        (unsigned long long)r->lineno + 1);
					return sticky(r, -ENOMEM, err);
				}
			}
			if (nl == NULL)
				continue;
			if (r->skipping)
				return emit_overlong(r, false, line);
			return emit(r, r->line.data, r->line.len, false, line);
		}
		if (r->eof) {
			if (r->skipping)
				return emit_overlong(r, true, line);
			if (r->line.len > 0) {
				emit(r, r->line.data, r->line.len, true, line);
				/* Handed out now; the next call finds nothing more. */
				r->in_pos = r->in_len = 0;
				r->line.len = 0;
				return 1;
			}
			return 0;
		}
		int n = gzread(r->gz, r->in, (unsigned)READ_CHUNK);
		if (n <= 0) {
			char where[64];
			if (r->line.len > 0 || r->skipping)
				snprintf(where, sizeof(where), "in line %llu", (unsigned long long)r->lineno + 1);
			else
				snprintf(where, sizeof(where), "after line %llu", (unsigned long long)r->lineno);
			int rc = gz_error(r->gz, r->path, where, &r->err_msg);
			if (rc != 0) {
				tl_buf_reset(&r->line);
				return sticky(r, rc, err);
			}
			r->eof = true;
			continue;
		}
		crypto_generichash_update(&r->hash, r->in, (unsigned long long)n);
		r->in_pos = 0;
		r->in_len = (size_t)n;
	}
}

void co_import_reader_id(co_import_reader *r, uint8_t id[16])
{
	uint8_t out[crypto_generichash_BYTES];
	crypto_generichash_final(&r->hash, out, sizeof(out));
	memcpy(id, out, 16);
}

void co_import_reader_pos(const co_import_reader *r, uint64_t *done, uint64_t *total)
{
	z_off_t off = r->gz != NULL ? gzoffset(r->gz) : 0;
	*done = off > 0 ? (uint64_t)off : 0;
	*total = r->size;
}

void co_import_reader_close(co_import_reader *r)
{
	if (r == NULL)
		return;
	if (r->gz != NULL)
		gzclose(r->gz);
	tl_buf_fini(&r->line);
	free(r->in);
	free(r->path);
	free(r);
}

/* ---- one line ---- */

/* The other OTLP signals a file exporter writes, by their top-level key. */
static const char *other_signal(const uint8_t *line, size_t len)
{
	static const struct {
		const char *key;
		const char *what;
	} sigs[] = {
	        {"resourceMetrics", "metrics (resourceMetrics)"},
	        {"resource_metrics", "metrics (resource_metrics)"},
	        {"resourceLogs", "logs (resourceLogs)"},
	        {"resource_logs", "logs (resource_logs)"},
	        {"resourceProfiles", "profiles (resourceProfiles)"},
	};
	json_t *root = json_loadb((const char *)line, len, 0, NULL);
	const char *what = NULL;
	for (size_t i = 0; root != NULL && what == NULL && i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (json_object_get(root, sigs[i].key) != NULL)
			what = sigs[i].what;
	json_decref(root);
	return what;
}

int co_import_line_encode(const uint8_t *line, size_t len, const tl_otlp_limits *lim, tl_arena *arena,
                          co_import_encoded *out, tl_errmsg *err)
{
	memset(out, 0, sizeof(*out));
	tl_arena_reset(arena);
	tl_pb_export_req *req = NULL;
	tl_errmsg e = {{0}};
	int rc = tl_otlp_decode_json(line, len, lim, tl_arena_allocator(arena), &req, &e);
	if (rc != 0) {
		/* The decoder counts JSON lines; here there is only one. */
		static const char one[] = "invalid JSON at line 1, column ";
		if (strncmp(e.msg, one, sizeof(one) - 1) == 0)
			return tl_errf(err, rc, "invalid JSON at column %s", e.msg + sizeof(one) - 1);
		return tl_errf(err, rc, "%s", e.msg[0] ? e.msg : tl_strerror(rc));
	}
	if (req->n_resource_spans == 0) {
		const char *what = other_signal(line, len);
		if (what != NULL)
			return tl_errf(err, TL_EINVALID, "holds %s, not traces (resourceSpans)", what);
		return 0;
	}
	tl_otlp_verdict v;
	memset(&v, 0, sizeof(v));
	rc = tl_otlp_validate(req, lim, &v);
	if (rc != 0)
		return tl_errf(err, rc, "%s", v.first_error.msg[0] ? v.first_error.msg : tl_strerror(rc));
	size_t kept = v.spans_total - v.spans_rejected;
	if (kept == 0 && v.spans_total == 1)
		return tl_errf(err, TL_EINVALID, "its span was rejected: %s", v.first_error.msg);
	if (kept == 0 && v.spans_total > 0)
		return tl_errf(err, TL_EINVALID, "all %zu spans rejected: %s", v.spans_total, v.first_error.msg);
	out->spans_rejected = v.spans_rejected;
	out->why = v.first_error;
	if (kept == 0)
		return 0;
	size_t n = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(req);
	out->pb = malloc(n ? n : 1);
	if (out->pb == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, out->pb);
	out->pb_len = n;
	out->spans = kept;
	return 0;
}

/* ---- sending ---- */

/* A Batch in flight: one nng context and its aio. */
typedef struct slot {
	nng_ctx ctx;
	nng_aio *aio;
	bool busy;
	uint8_t *data; /* the packed Batch, kept for resends */
	size_t len;
	uint64_t seq;
	size_t n;                               /* records */
	uint64_t lines[CO_IMPORT_BATCH_LINES];  /* line number of each record */
	uint64_t nspans[CO_IMPORT_BATCH_LINES]; /* spans of each record */
} slot;

typedef struct importer {
	const char *path;
	const char *url;
	uint64_t timeout_ms;
	bool progress;
	uint8_t id[16];
	nng_socket sock;
	bool sock_open;
	slot slots[CO_IMPORT_WINDOW];
	unsigned head; /* next slot to fill, round robin: the oldest batch in flight */
	/* The batch being filled. */
	uint8_t *rec[CO_IMPORT_BATCH_LINES];
	size_t rec_len[CO_IMPORT_BATCH_LINES];
	uint64_t rec_line[CO_IMPORT_BATCH_LINES];
	uint64_t rec_spans[CO_IMPORT_BATCH_LINES];
	size_t nrec, rec_bytes;
	/* Counts. */
	uint64_t lines, lines_empty, lines_failed, lines_partial, lines_stored, lines_earlier;
	uint64_t spans_sent, spans_stored, spans_earlier, spans_rejected;
	uint64_t batches, batches_earlier;
	uint64_t errors_shown;
	bool progress_shown;
	uint64_t progress_ns;
	bool gave_up; /* the collector stopped answering (or no memory): stop sending */
	int gave_up_rc;
	tl_errmsg gave_up_why;
	co_import_reader *rd;
} importer;

static void progress_clear(importer *im)
{
	if (im->progress_shown) {
		fputs("\r\033[K", stderr);
		im->progress_shown = false;
	}
}

static void progress_show(importer *im, const char *what, uint64_t done, uint64_t total)
{
	if (!im->progress)
		return;
	uint64_t now = tl_mono_ns();
	if (now - im->progress_ns < PROGRESS_EVERY_NS)
		return;
	im->progress_ns = now;
	double pct = total > 0 ? 100.0 * (double)done / (double)total : 100.0;
	if (pct > 100.0)
		pct = 100.0;
	fprintf(stderr, "\r\033[Kimport %s: %s %3.0f%%", im->path, what, pct);
	if (im->lines > 0)
		fprintf(stderr, ", line %llu, %llu spans sent", (unsigned long long)im->lines,
		        (unsigned long long)im->spans_sent);
	fflush(stderr);
	im->progress_shown = true;
}

static void hash_progress(void *ud, uint64_t done, uint64_t total)
{
	progress_show(ud, "naming", done, total);
}

static void line_error(importer *im, uint64_t lineno, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Names a bad line on stderr (the first ERRORS_SHOWN_MAX of them). */
static void line_error(importer *im, uint64_t lineno, const char *fmt, ...)
{
	if (im->errors_shown++ >= ERRORS_SHOWN_MAX)
		return;
	progress_clear(im);
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "threadline: %s:%llu: %s\n", im->path, (unsigned long long)lineno, msg);
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Posts the send of s's Batch. Returns 0 or -ENOMEM. */
static int post(importer *im, slot *s)
{
	nng_msg *m;
	if (nng_msg_alloc(&m, s->len) != 0)
		return -ENOMEM;
	memcpy(nng_msg_body(m), s->data, s->len);
	nng_aio_set_msg(s->aio, m);
	nng_aio_set_timeout(s->aio, (nng_duration)im->timeout_ms);
	nng_ctx_send(s->ctx, s->aio);
	return 0;
}

/*
 * Waits for the posted send, then for the ack. Returns 0 with *ack (caller
 * frees with threadline__v1__ack__free_unpacked), TL_EPROTO for an answer
 * that is not this batch's Ack (no point resending), or a transport error
 * (worth resending); why says what happened.
 */
static int round_trip(importer *im, slot *s, tl_pb_ack **ack, tl_errmsg *why)
{
	*ack = NULL;
	nng_aio_wait(s->aio);
	int rv = nng_aio_result(s->aio);
	if (rv != 0) {
		/* A failed send leaves the message with us. */
		nng_msg *m = nng_aio_get_msg(s->aio);
		nng_aio_set_msg(s->aio, NULL);
		nng_msg_free(m);
		return tl_errf(why, tl_err_from_nng(rv), "sending: %s", nng_strerror(rv));
	}
	nng_aio_set_msg(s->aio, NULL);
	nng_aio_set_timeout(s->aio, (nng_duration)im->timeout_ms);
	nng_ctx_recv(s->ctx, s->aio);
	nng_aio_wait(s->aio);
	if ((rv = nng_aio_result(s->aio)) != 0)
		return tl_errf(why, tl_err_from_nng(rv), "no ack: %s", nng_strerror(rv));
	nng_msg *m = nng_aio_get_msg(s->aio);
	nng_aio_set_msg(s->aio, NULL);
	tl_pb_ack *a = threadline__v1__ack__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	if (a == NULL)
		return tl_errf(why, TL_EPROTO,
		               "the answer is not a threadline.v1.Ack: is %s the collector's intake (where agents "
		               "send, port 7411) and not its query endpoint?",
		               im->url);
	bool named = a->agent_id.len == 16 && memcmp(a->agent_id.data, im->id, 16) == 0 && a->seq == s->seq;
	/* A batch refused before the collector could read its name is acked without one. */
	bool anonymous = a->agent_id.len == 0 && a->status == THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED;
	if (!named && !anonymous) {
		threadline__v1__ack__free_unpacked(a, NULL);
		return tl_errf(why, TL_EPROTO, "the collector acked another batch than seq %llu",
		               (unsigned long long)s->seq);
	}
	*ack = a;
	return 0;
}

static void give_up(importer *im, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Records the first reason to stop sending. */
static void give_up(importer *im, int rc, const char *fmt, ...)
{
	if (im->gave_up)
		return;
	im->gave_up = true;
	im->gave_up_rc = rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(im->gave_up_why.msg, sizeof(im->gave_up_why.msg), fmt, ap);
	va_end(ap);
}

static void slot_release(slot *s)
{
	free(s->data);
	s->data = NULL;
	s->len = 0;
	s->n = 0;
	s->busy = false;
}

static void rejected(importer *im, slot *s, const char *msg);

/*
 * Waits for s's ack, resending on transport failures and when asked to
 * retry, up to MAX_ATTEMPTS, and counts the outcome. Releases s. Returns 0,
 * or an error after which nothing more should be sent (im->gave_up set).
 */
static int collect(importer *im, slot *s)
{
	int rc = 0;
	for (unsigned attempt = 1;; attempt++) {
		tl_pb_ack *a = NULL;
		tl_errmsg why = {{0}};
		rc = round_trip(im, s, &a, &why);
		uint64_t wait_ms = (uint64_t)BACKOFF_MIN_MS << (attempt - 1);
		if (wait_ms > BACKOFF_MAX_MS)
			wait_ms = BACKOFF_MAX_MS;
		if (rc == 0 && a != NULL) {
			switch (a->status) {
			case THREADLINE__V1__ACK__STATUS__ACK_STATUS_OK:
				im->batches++;
				im->lines_stored += s->n;
				im->spans_stored += a->spans_stored;
				break;
			case THREADLINE__V1__ACK__STATUS__ACK_STATUS_DUPLICATE:
				im->batches++;
				im->batches_earlier++;
				im->lines_earlier += s->n;
				for (size_t i = 0; i < s->n; i++)
					im->spans_earlier += s->nspans[i];
				break;
			case THREADLINE__V1__ACK__STATUS__ACK_STATUS_REJECTED:
				rejected(im, s, a->message != NULL && a->message[0] ? a->message : "rejected");
				break;
			default:
				rc = tl_errf(&why, TL_EFULL, "the collector asked to retry later: %s",
				             a->message != NULL && a->message[0] ? a->message : "(no reason given)");
				if (a->retry_after_ms > wait_ms)
					wait_ms = a->retry_after_ms < 60000 ? a->retry_after_ms : 60000;
				break;
			}
			threadline__v1__ack__free_unpacked(a, NULL);
			if (rc == 0) {
				slot_release(s);
				return 0;
			}
		}
		if (rc != TL_EPROTO && attempt < MAX_ATTEMPTS) {
			sleep_ms(wait_ms);
			int prc = post(im, s);
			if (prc == 0)
				continue;
			rc = tl_errf(&why, prc, "out of memory");
		}
		give_up(im, rc, "collector at %s, batch of lines %llu-%llu, %u attempts: %s", im->url,
		        (unsigned long long)s->lines[0], (unsigned long long)s->lines[s->n - 1], attempt, why.msg);
		slot_release(s);
		return rc;
	}
}

/*
 * A Batch is refused as a whole when one of its records cannot be stored.
 * Sends its lines one by one (each with its own line number as seq), so
 * that only the bad line fails and the message names it.
 */
static void rejected(importer *im, slot *s, const char *msg)
{
	if (s->n == 1) {
		line_error(im, s->lines[0], "rejected by the collector: %s", msg);
		im->lines_failed++;
		im->spans_rejected += s->nspans[0];
		return;
	}
	size_t n = s->n;
	uint64_t *lines = malloc(2 * n * sizeof(*lines));
	tl_pb_batch *b = threadline__v1__batch__unpack(NULL, s->len, s->data);
	if (lines == NULL || b == NULL || b->n_records != n) {
		for (size_t i = 0; i < n; i++) {
			line_error(im, s->lines[i], "rejected by the collector: %s", msg);
			im->spans_rejected += s->nspans[i];
		}
		im->lines_failed += n;
		free(lines);
		if (b != NULL)
			threadline__v1__batch__free_unpacked(b, NULL);
		return;
	}
	uint64_t *spans = lines + n;
	memcpy(lines, s->lines, n * sizeof(*lines));
	memcpy(spans, s->nspans, n * sizeof(*spans));
	for (size_t i = 0; i < n && !im->gave_up; i++) {
		tl_pb_batch one = THREADLINE__V1__BATCH__INIT;
		one.agent_id = b->agent_id;
		one.seq = lines[i];
		one.n_records = 1;
		one.records = &b->records[i];
		size_t len = threadline__v1__batch__get_packed_size(&one);
		uint8_t *d = malloc(len ? len : 1);
		if (d == NULL) {
			give_up(im, -ENOMEM, "out of memory");
			break;
		}
		threadline__v1__batch__pack(&one, d);
		free(s->data);
		s->data = d;
		s->len = len;
		s->seq = lines[i];
		s->n = 1;
		s->lines[0] = lines[i];
		s->nspans[0] = spans[i];
		s->busy = true;
		if (post(im, s) != 0) {
			slot_release(s);
			give_up(im, -ENOMEM, "out of memory");
			break;
		}
		collect(im, s);
	}
	threadline__v1__batch__free_unpacked(b, NULL);
	free(lines);
}

/* Packs the records gathered so far into a Batch and puts it in flight. Returns 0 or an error (im->gave_up set). */
static int flush(importer *im)
{
	int rc = 0;
	if (im->nrec == 0)
		return 0;
	slot *s = &im->slots[im->head];
	if (s->busy)
		collect(im, s);
	if (im->gave_up) {
		rc = TL_ETRANSPORT;
		goto done;
	}
	tl_pb_record recs[CO_IMPORT_BATCH_LINES];
	tl_pb_record *recp[CO_IMPORT_BATCH_LINES];
	uint64_t now = tl_now_ns();
	for (size_t i = 0; i < im->nrec; i++) {
		threadline__v1__record__init(&recs[i]);
		recs[i].accepted_unix_nano = now;
		recs[i].body_case = THREADLINE__V1__RECORD__BODY_OTLP_TRACES;
		recs[i].otlp_traces.data = im->rec[i];
		recs[i].otlp_traces.len = im->rec_len[i];
		recp[i] = &recs[i];
	}
	tl_pb_batch b = THREADLINE__V1__BATCH__INIT;
	b.agent_id.data = im->id;
	b.agent_id.len = sizeof(im->id);
	b.seq = im->rec_line[0];
	b.n_records = im->nrec;
	b.records = recp;
	s->len = threadline__v1__batch__get_packed_size(&b);
	s->data = malloc(s->len);
	if (s->data == NULL) {
		rc = -ENOMEM;
		goto done;
	}
	threadline__v1__batch__pack(&b, s->data);
	s->seq = b.seq;
	s->n = im->nrec;
	memcpy(s->lines, im->rec_line, im->nrec * sizeof(s->lines[0]));
	memcpy(s->nspans, im->rec_spans, im->nrec * sizeof(s->nspans[0]));
	if ((rc = post(im, s)) != 0) {
		slot_release(s);
		goto done;
	}
	s->busy = true;
	im->head = (im->head + 1) % CO_IMPORT_WINDOW;
done:
	if (rc == -ENOMEM)
		give_up(im, rc, "out of memory");
	for (size_t i = 0; i < im->nrec; i++)
		free(im->rec[i]);
	im->nrec = 0;
	im->rec_bytes = 0;
	return rc;
}

/* Adds an encoded line to the batch being filled (taking e->pb), first sending the batch if it is full. */
static int add(importer *im, co_import_encoded *e, uint64_t lineno)
{
	if (im->nrec > 0 && (im->nrec == CO_IMPORT_BATCH_LINES || im->rec_bytes + e->pb_len > CO_IMPORT_BATCH_BYTES)) {
		int rc = flush(im);
		if (rc != 0) {
			free(e->pb);
			e->pb = NULL;
			return rc;
		}
	}
	im->rec[im->nrec] = e->pb;
	im->rec_len[im->nrec] = e->pb_len;
	im->rec_line[im->nrec] = lineno;
	im->rec_spans[im->nrec] = e->spans;
	im->nrec++;
	im->rec_bytes += e->pb_len;
	im->spans_sent += e->spans;
	e->pb = NULL;
	return 0;
}

/* Waits for every batch in flight, oldest first. */
static void drain(importer *im)
{
	for (unsigned k = 0; k < CO_IMPORT_WINDOW && !im->gave_up; k++) {
		slot *s = &im->slots[(im->head + k) % CO_IMPORT_WINDOW];
		if (s->busy)
			collect(im, s);
	}
}

/* Opens the socket and dials the intake (blocking, so an absent collector is reported at once). Returns an exit
 * code. */
static int connect_intake(importer *im)
{
	int rv = nng_req0_open(&im->sock);
	if (rv != 0) {
		fprintf(stderr, "threadline: import: cannot open a socket: %s\n", nng_strerror(rv));
		return CLI_UNREACHABLE;
	}
	im->sock_open = true;
	nng_socket_set_size(im->sock, NNG_OPT_RECVMAXSZ, ACK_MAX_BYTES);
	/* Resends are ours (with backoff), not the REQ protocol's. */
	nng_socket_set_ms(im->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_ms(im->sock, NNG_OPT_RECONNMINT, 100);
	nng_socket_set_ms(im->sock, NNG_OPT_RECONNMAXT, 2000);
	for (unsigned i = 0; i < CO_IMPORT_WINDOW; i++) {
		slot *s = &im->slots[i];
		if ((rv = nng_ctx_open(&s->ctx, im->sock)) != 0 || (rv = nng_aio_alloc(&s->aio, NULL, NULL)) != 0) {
			fprintf(stderr, "threadline: import: cannot open a context: %s\n", nng_strerror(rv));
			return CLI_UNREACHABLE;
		}
	}
	if ((rv = nng_dial(im->sock, im->url, NULL, 0)) != 0) {
		if (rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP || rv == NNG_EINVAL) {
			fprintf(stderr, "threadline: import: --collector: '%s' is not a URL to dial (like %s): %s\n",
			        im->url, CO_IMPORT_DEFAULT_URL, nng_strerror(rv));
			return CLI_USAGE;
		}
		fprintf(stderr, "threadline: import: cannot reach the collector's intake at %s: %s\n", im->url,
		        nng_strerror(rv));
		return CLI_UNREACHABLE;
	}
	return CLI_OK;
}

static bool blank(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

static void summary(const importer *im, bool json, bool complete)
{
	char idhex[33];
	tl_hex_encode(im->id, sizeof(im->id), idhex);
	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "file",
		                      im->path, "agent_id", idhex, "complete", complete, "lines", (json_int_t)im->lines,
		                      "lines_stored", (json_int_t)im->lines_stored, "lines_stored_earlier",
		                      (json_int_t)im->lines_earlier, "lines_empty", (json_int_t)im->lines_empty,
		                      "lines_failed", (json_int_t)im->lines_failed, "lines_partial",
		                      (json_int_t)im->lines_partial, "spans_stored", (json_int_t)im->spans_stored,
		                      "spans_stored_earlier", (json_int_t)im->spans_earlier, "spans_rejected",
		                      (json_int_t)im->spans_rejected, "batches", (json_int_t)im->batches,
		                      "batches_stored_earlier", (json_int_t)im->batches_earlier);
		if (o != NULL) {
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		}
		return;
	}
	printf("%s: %llu line%s: %llu stored now, %llu stored earlier, %llu empty, %llu failed", im->path,
	       (unsigned long long)im->lines, im->lines == 1 ? "" : "s", (unsigned long long)im->lines_stored,
	       (unsigned long long)im->lines_earlier, (unsigned long long)im->lines_empty,
	       (unsigned long long)im->lines_failed);
	if (im->lines_partial > 0)
		printf(", %llu with spans rejected", (unsigned long long)im->lines_partial);
	printf("; spans: %llu stored now, %llu stored earlier, %llu rejected%s\n", (unsigned long long)im->spans_stored,
	       (unsigned long long)im->spans_earlier, (unsigned long long)im->spans_rejected,
	       complete ? "" : "; import incomplete");
}

static int run(importer *im, bool json)
{
	tl_errmsg err = {{0}};
	int rc = co_import_reader_open(im->path, 0, &im->rd, &err);
	if (rc != 0) {
		fprintf(stderr, "threadline: import: %s\n", err.msg);
		return CLI_ERR;
	}
	if ((rc = connect_intake(im)) != CLI_OK)
		return rc;
	/* A gzip stream that breaks off still names the file by what can be read; the reader stops there too. */
	rc = co_import_file_id(im->path, im->id, hash_progress, im, &err);
	if (rc != 0 && rc != TL_EPARSE) {
		progress_clear(im);
		fprintf(stderr, "threadline: import: %s\n", err.msg);
		return CLI_ERR;
	}
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	tl_arena arena;
	tl_arena_init(&arena, (size_t)1 << 20, lim.max_decoded_bytes);
	tl_arena_set_retain(&arena, (size_t)8 << 20);
	int read_rc = 0;
	tl_errmsg read_err = {{0}};
	while (!im->gave_up) {
		co_import_line ln = {0};
		int r = co_import_reader_next(im->rd, &ln, &read_err);
		if (r <= 0) {
			read_rc = r;
			break;
		}
		im->lines = ln.lineno;
		if (ln.overlong) {
			line_error(im, ln.lineno, "longer than %zu bytes: skipped", (size_t)CO_IMPORT_LINE_MAX);
			im->lines_failed++;
			continue;
		}
		if (blank(ln.data, ln.len)) {
			im->lines_empty++;
			continue;
		}
		co_import_encoded enc;
		tl_errmsg le = {{0}};
		if (co_import_line_encode(ln.data, ln.len, &lim, &arena, &enc, &le) != 0) {
			line_error(im, ln.lineno, "%s", le.msg);
			im->lines_failed++;
			continue;
		}
		if (enc.spans_rejected > 0) {
			line_error(im, ln.lineno, "%zu of %zu spans rejected: %s", enc.spans_rejected,
			           enc.spans + enc.spans_rejected, enc.why.msg);
			im->lines_partial++;
			im->spans_rejected += enc.spans_rejected;
		}
		if (enc.pb == NULL) {
			im->lines_empty++;
			continue;
		}
		if (add(im, &enc, ln.lineno) != 0)
			break;
		uint64_t done, total;
		co_import_reader_pos(im->rd, &done, &total);
		progress_show(im, "sending", done, total);
	}
	tl_arena_fini(&arena);
	if (!im->gave_up)
		flush(im);
	drain(im);
	progress_clear(im);
	bool changed = false;
	if (!im->gave_up) {
		uint8_t id[16];
		co_import_reader_id(im->rd, id);
		changed = memcmp(id, im->id, sizeof(id)) != 0;
	}
	if (im->errors_shown > ERRORS_SHOWN_MAX)
		fprintf(stderr, "threadline: %s: %llu more bad lines not shown\n", im->path,
		        (unsigned long long)(im->errors_shown - ERRORS_SHOWN_MAX));
	if (read_rc != 0)
		fprintf(stderr, "threadline: import: %s; the lines before it were imported\n", read_err.msg);
	if (changed)
		fprintf(stderr,
		        "threadline: import: %s changed while it was imported; import it again once nothing writes "
		        "to it (each version is a different file: lines that are in both are stored twice)\n",
		        im->path);
	if (im->gave_up)
		fprintf(stderr,
		        "threadline: import: gave up: %s\n"
		        "threadline: import: run the same command again to finish (what is stored is not stored "
		        "twice)\n",
		        im->gave_up_why.msg);
	summary(im, json, read_rc == 0 && !im->gave_up && !changed);
	if (im->gave_up)
		return im->gave_up_rc == -ENOMEM ? CLI_ERR : CLI_UNREACHABLE;
	if (read_rc != 0 || changed || im->lines_failed > 0 || im->spans_rejected > 0)
		return CLI_ERR;
	return CLI_OK;
}

static void importer_free(importer *im)
{
	if (im->sock_open)
		nng_close(im->sock);
	for (unsigned i = 0; i < CO_IMPORT_WINDOW; i++) {
		slot *s = &im->slots[i];
		if (s->aio != NULL) {
			nng_aio_stop(s->aio);
			/* A send that did not go through leaves its message on the aio. */
			nng_msg *m = nng_aio_result(s->aio) != 0 ? nng_aio_get_msg(s->aio) : NULL;
			if (m != NULL)
				nng_msg_free(m);
			nng_aio_free(s->aio);
		}
		free(s->data);
	}
	for (size_t i = 0; i < im->nrec; i++)
		free(im->rec[i]);
	co_import_reader_close(im->rd);
	free(im);
}

int co_cli_import(co_cli *cli, int argc, char **argv)
{
	const char *path = NULL, *url = CO_IMPORT_DEFAULT_URL;
	bool json = cli->json;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return CLI_OK;
		}
		if (strcmp(a, "--json") == 0) {
			json = true;
			continue;
		}
		int m = co_cli_opt_value(argc, argv, &i, "--collector", &v);
		if (m < 0 || (m > 0 && v[0] == '\0')) {
			fprintf(stderr, "threadline: import: --collector needs a URL like %s\n", CO_IMPORT_DEFAULT_URL);
			return CLI_USAGE;
		}
		if (m > 0) {
			url = v;
			continue;
		}
		if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "threadline: import: unknown option '%s'\n%s", a, usage);
			return CLI_USAGE;
		}
		if (path != NULL) {
			fprintf(stderr, "threadline: import: one FILE at a time ('%s', then '%s')\n", path, a);
			return CLI_USAGE;
		}
		path = a;
	}
	if (path == NULL) {
		fprintf(stderr, "threadline: import: which FILE?\n%s", usage);
		return CLI_USAGE;
	}
	if (strcmp(path, "-") == 0) {
		fprintf(stderr, "threadline: import: FILE must be a file: it is read twice (to name it, then to "
		                "send it); save the stream to a file first\n");
		return CLI_USAGE;
	}
	importer *im = calloc(1, sizeof(*im));
	if (im == NULL) {
		fprintf(stderr, "threadline: import: out of memory\n");
		return CLI_ERR;
	}
	im->path = path;
	im->url = url;
	im->timeout_ms = cli->timeout_ms;
	im->progress = isatty(STDERR_FILENO) != 0;
	int code = run(im, json);
	importer_free(im);
	return code;
}
