/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/HTTP push on libcurl: one easy handle per call, reused across its
 * retries (so a kept-alive connection serves the next attempt), the body
 * gzipped once before the first attempt, the answer's body kept up to a
 * cap for the error message or the partial_success, and Retry-After read
 * from the headers of the final response.
 */
#include "tl_otlp_push.h"

#include "tl_buf.h"
#include "tl_gzip.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_ATTEMPTS 8
#define DEFAULT_ELAPSED_NS (300 * TL_NS_PER_S)
#define DEFAULT_BACKOFF_NS (500 * TL_NS_PER_MS)
#define DEFAULT_MAX_BACKOFF_NS (30 * TL_NS_PER_S)
#define DEFAULT_TIMEOUT_NS (30 * TL_NS_PER_S)
#define RESP_KEEP (64u << 10) /* bytes of an answer's body kept; the rest is read and dropped */
#define SLICE_NS (50 * TL_NS_PER_MS)
#define RETRY_AFTER_LEN_MAX 128
#define WHY_MAX 160

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

/*
 * One connection cache (and DNS cache) for every call in the process, so
 * consecutive pushes to the same endpoint reuse a kept-alive connection
 * (and its TLS session) even though each call has its own easy handle.
 * It lives as long as the process.
 */
static CURLSH *share;
static pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	(void)h, (void)access, (void)ud;
	pthread_mutex_lock(&share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	(void)h, (void)ud;
	pthread_mutex_unlock(&share_mu[data]);
}

static void global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || sodium_init() < 0) {
		init_rc = -ENOMEM;
		return;
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&share_mu[i], NULL);
	/* Without a share every call opens its own connection: slower, not wrong. */
	if ((share = curl_share_init()) != NULL &&
	    (curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
	     curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
	     curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
	     curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)) {
		curl_share_cleanup(share);
		share = NULL;
	}
}

bool tl_otlp_status_retryable(long status)
{
	return status == 429 || status == 502 || status == 503 || status == 504;
}

/* Transport failures worth another attempt: the connection, not the request, failed. */
static bool curl_retryable(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

int tl_otlp_retry_after_parse(const char *v, size_t len, int64_t now_unix_s, uint64_t *wait_ns)
{
	while (len > 0 && is_ows(v[0])) {
		v++;
		len--;
	}
	while (len > 0 && (is_ows(v[len - 1]) || v[len - 1] == '\r' || v[len - 1] == '\n'))
		len--;
	if (len == 0 || len > RETRY_AFTER_LEN_MAX)
		return TL_EPARSE;
	int64_t secs = 0;
	if (v[0] >= '0' && v[0] <= '9') {
		size_t i = 0;
		for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
			if (secs < TL_OTLP_PUSH_RETRY_AFTER_MAX)
				secs = secs * 10 + (v[i] - '0');
		}
		if (i == len) {
			if (secs > TL_OTLP_PUSH_RETRY_AFTER_MAX)
				secs = TL_OTLP_PUSH_RETRY_AFTER_MAX;
			*wait_ns = (uint64_t)secs * TL_NS_PER_S;
			return 0;
		}
		/* Not all digits: an HTTP-date never starts with one, but curl_getdate reads "21 Oct 2015 ...". */
	}
	if (v[0] == '+' || v[0] == '-')
		return TL_EPARSE;
	char buf[RETRY_AFTER_LEN_MAX + 1];
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\0' || (unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f)
			if (v[i] != '\t')
				return TL_EPARSE;
		buf[i] = v[i];
	}
	buf[len] = '\0';
	time_t t = curl_getdate(buf, NULL);
	if (t == (time_t)-1)
		return TL_EPARSE;
	int64_t d = (int64_t)t - now_unix_s;
	if (d < 0)
		d = 0;
	if (d > TL_OTLP_PUSH_RETRY_AFTER_MAX)
		d = TL_OTLP_PUSH_RETRY_AFTER_MAX;
	*wait_ns = (uint64_t)d * TL_NS_PER_S;
	return 0;
}

/* ---- one exchange ---- */

typedef struct exchange {
	tl_buf body; /* the answer's body, its first RESP_KEEP bytes */
	char retry_after[RETRY_AFTER_LEN_MAX + 1];
	size_t retry_after_len; /* 0: none; RETRY_AFTER_LEN_MAX + 1: present but too long */
	char ctype[96];
	volatile const int *cancel;
} exchange;

static void exchange_reset(exchange *x)
{
	tl_buf_reset(&x->body);
	x->retry_after_len = 0;
	x->ctype[0] = '\0';
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	exchange *x = ud;
	size_t len = size * n;
	size_t room = RESP_KEEP > x->body.len ? RESP_KEEP - x->body.len : 0;
	if (room > 0 && tl_buf_append(&x->body, p, len < room ? len : room) != 0)
		return 0; /* out of memory: abort the transfer (CURLE_WRITE_ERROR) */
	return len;
}

/* Copies a header's value (after "name:") without surrounding whitespace. Returns its length or SIZE_MAX if it does
 * not fit. */
static size_t header_value(const char *p, size_t len, size_t name_len, char *out, size_t cap)
{
	const char *v = p + name_len;
	size_t n = len - name_len;
	while (n > 0 && is_ows(*v)) {
		v++;
		n--;
	}
	while (n > 0 && (is_ows(v[n - 1]) || v[n - 1] == '\r' || v[n - 1] == '\n'))
		n--;
	if (n >= cap)
		return SIZE_MAX;
	memcpy(out, v, n);
	out[n] = '\0';
	return n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	exchange *x = ud;
	size_t len = size * n;
	/* A new status line (after a 100 Continue, say): headers of earlier responses do not count. */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		x->retry_after_len = 0;
		x->ctype[0] = '\0';
		return len;
	}
	static const char ra[] = "retry-after:", ct[] = "content-type:";
	if (len >= sizeof(ra) - 1 && strncasecmp(p, ra, sizeof(ra) - 1) == 0) {
		size_t v = header_value(p, len, sizeof(ra) - 1, x->retry_after, sizeof(x->retry_after));
		x->retry_after_len = v == SIZE_MAX ? RETRY_AFTER_LEN_MAX + 1 : v;
	} else if (len >= sizeof(ct) - 1 && strncasecmp(p, ct, sizeof(ct) - 1) == 0) {
		if (header_value(p, len, sizeof(ct) - 1, x->ctype, sizeof(x->ctype)) == SIZE_MAX)
			x->ctype[0] = '\0';
	}
	return len;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	const exchange *x = ud;
	return x->cancel != NULL && *x->cancel != 0;
}

static bool ctype_is(const exchange *x, const char *sub)
{
	return strcasestr(x->ctype, sub) != NULL;
}

/* Copies s[0..n) to out as one printable line: stops at the first line break, control bytes become '?'. */
static void first_line(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
		s++;
		n--;
	}
	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n')
			break;
		out[o++] = c < 0x20 || c == 0x7f ? '?' : s[i];
	}
	out[o] = '\0';
}

/* What an error answer says: google.rpc.Status's message (OTLP/HTTP's error body), a JSON "message", or the text. */
static void error_text(const exchange *x, char *out, size_t cap)
{
	out[0] = '\0';
	if (x->body.len == 0)
		return;
	if (ctype_is(x, "protobuf")) {
		tl_pb_rpc_status *st = google__rpc__status__unpack(NULL, x->body.len, x->body.data);
		if (st != NULL) {
			if (st->message != NULL && st->message[0] != '\0')
				first_line(st->message, strlen(st->message), out, cap);
			google__rpc__status__free_unpacked(st, NULL);
			if (out[0] != '\0')
				return;
		}
		snprintf(out, cap, "(%zu bytes of protobuf)", x->body.len);
		return;
	}
	if (ctype_is(x, "json")) {
		json_t *doc = json_loadb((const char *)x->body.data, x->body.len, 0, NULL);
		const char *m = json_string_value(json_object_get(doc, "message"));
		if (m != NULL && m[0] != '\0')
			first_line(m, strlen(m), out, cap);
		json_decref(doc);
		if (out[0] != '\0')
			return;
	}
	first_line((const char *)x->body.data, x->body.len, out, cap);
}

/* A JSON int64 as OTLP/JSON writes it: a number or a decimal string. */
static uint64_t json_u64(const json_t *j)
{
	if (json_is_integer(j))
		return json_integer_value(j) > 0 ? (uint64_t)json_integer_value(j) : 0;
	const char *s = json_string_value(j);
	if (s == NULL || *s < '0' || *s > '9')
		return 0;
	return strtoull(s, NULL, 10);
}

/* partial_success of a 2xx answer, protobuf or JSON. An undecodable body is ignored: the data was accepted. */
static void partial_success(const exchange *x, tl_otlp_push_result *res)
{
	if (x->body.len == 0)
		return;
	if (ctype_is(x, "json")) {
		json_t *doc = json_loadb((const char *)x->body.data, x->body.len, 0, NULL);
		const json_t *ps = json_object_get(doc, "partialSuccess");
		if (ps == NULL)
			ps = json_object_get(doc, "partial_success");
		if (json_is_object(ps)) {
			const json_t *r = json_object_get(ps, "rejectedSpans");
			const json_t *m = json_object_get(ps, "errorMessage");
			res->rejected_spans = json_u64(r != NULL ? r : json_object_get(ps, "rejected_spans"));
			if (m == NULL)
				m = json_object_get(ps, "error_message");
			if (json_string_value(m) != NULL)
				first_line(json_string_value(m), strlen(json_string_value(m)), res->message,
				           sizeof(res->message));
		}
		json_decref(doc);
		return;
	}
	tl_pb_export_resp *r = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
	        NULL, x->body.len, x->body.data);
	if (r == NULL)
		return;
	if (r->partial_success != NULL) {
		res->rejected_spans =
		        r->partial_success->rejected_spans > 0 ? (uint64_t)r->partial_success->rejected_spans : 0;
		const char *m = r->partial_success->error_message;
		if (m != NULL)
			first_line(m, strlen(m), res->message, sizeof(res->message));
	}
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(r, NULL);
}

/* ---- waiting ---- */

static uint64_t backoff_ns(uint64_t initial, uint64_t cap, unsigned attempt)
{
	uint64_t b = initial;
	for (unsigned i = 1; i < attempt && b < cap; i++)
		b = b > UINT64_MAX / 2 ? UINT64_MAX : b * 2;
	if (b > cap)
		b = cap;
	/* Full jitter in microseconds: randombytes_uniform takes a 32-bit bound (2^32 µs is over an hour). */
	uint64_t us = b / 1000;
	if (us >= UINT32_MAX)
		us = UINT32_MAX - 1;
	return (uint64_t)randombytes_uniform((uint32_t)us + 1) * 1000;
}

/* Sleeps ns, in slices when it can be cancelled. Returns 0 or -ECANCELED. */
static int wait_for(uint64_t ns, volatile const int *cancel)
{
	uint64_t end = tl_mono_ns() + ns;
	for (;;) {
		if (cancel != NULL && *cancel != 0)
			return -ECANCELED;
		uint64_t now = tl_mono_ns();
		if (now >= end)
			return 0;
		uint64_t d = end - now;
		if (cancel != NULL && d > SLICE_NS)
			d = SLICE_NS;
		struct timespec ts = {.tv_sec = (time_t)(d / TL_NS_PER_S), .tv_nsec = (long)(d % TL_NS_PER_S)};
		nanosleep(&ts, NULL); /* EINTR: the loop recomputes what is left */
	}
}

/* ---- the push ---- */

static int check_header(const char *h)
{
	const char *colon = strchr(h, ':');
	if (colon == NULL || colon == h || strpbrk(h, "\r\n") != NULL)
		return TL_EINVALID;
	for (const char *p = h; p < colon; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return TL_EINVALID;
	return 0;
}

static int build_headers(const tl_otlp_push_opts *o, struct curl_slist **out, tl_errmsg *err)
{
	struct curl_slist *l = NULL, *t;
	static const char *const fixed[] = {"Content-Type: application/x-protobuf", "Expect:"};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if ((t = curl_slist_append(l, fixed[i])) == NULL)
			goto nomem;
		l = t;
	}
	if (o->gzip) {
		if ((t = curl_slist_append(l, "Content-Encoding: gzip")) == NULL)
			goto nomem;
		l = t;
	}
	for (size_t i = 0; o->headers != NULL && i < o->n_headers; i++) {
		if (o->headers[i] == NULL || check_header(o->headers[i]) != 0) {
			curl_slist_free_all(l);
			return tl_errf(err, TL_EINVALID, "header %zu is not a \"Name: value\" line", i + 1);
		}
		if ((t = curl_slist_append(l, o->headers[i])) == NULL)
			goto nomem;
		l = t;
	}
	*out = l;
	return 0;
nomem:
	curl_slist_free_all(l);
	return tl_errf(err, -ENOMEM, "out of memory");
}

static int setup(CURL *h, const tl_otlp_push_opts *o, struct curl_slist *hdrs, exchange *x, char *errbuf,
                 const void *body, size_t len)
{
	CURLcode c = CURLE_OK;
#define SET(opt, val)                                                                                                  \
	do {                                                                                                           \
		if (c == CURLE_OK)                                                                                     \
			c = curl_easy_setopt(h, opt, val);                                                             \
	} while (0)
	SET(CURLOPT_URL, o->url);
	if (share != NULL)
		SET(CURLOPT_SHARE, share);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_USERAGENT, "threadline/" TL_VERSION);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, x);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, on_progress);
	SET(CURLOPT_XFERINFODATA, x);
#undef SET
	return c == CURLE_OK ? 0 : (c == CURLE_OUT_OF_MEMORY ? -ENOMEM : TL_EINVALID);
}

/* Seconds with one decimal, for messages. */
static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

int tl_otlp_push(const tl_otlp_push_opts *o, const uint8_t *body, size_t len, tl_otlp_push_result *res, tl_errmsg *err)
{
	tl_otlp_push_result dummy;
	if (res == NULL)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (o == NULL || o->url == NULL || o->url[0] == '\0')
		return tl_errf(err, TL_EINVALID, "no URL to push to");
	if (body == NULL && len > 0)
		return tl_errf(err, TL_EINVALID, "POST %s: no body", o->url);
	if (len > TL_OTLP_PUSH_BODY_MAX)
		return tl_errf(err, TL_ELIMIT, "POST %s: body of %zu bytes is over the %u byte limit", o->url, len,
		               TL_OTLP_PUSH_BODY_MAX);
	pthread_once(&init_once, global_init);
	if (init_rc != 0)
		return tl_errf(err, init_rc, "libcurl or libsodium could not be initialised");

	unsigned max_attempts = o->max_attempts ? o->max_attempts : DEFAULT_ATTEMPTS;
	uint64_t max_elapsed = o->max_elapsed_ns ? o->max_elapsed_ns : DEFAULT_ELAPSED_NS;
	uint64_t backoff0 = o->initial_backoff_ns ? o->initial_backoff_ns : DEFAULT_BACKOFF_NS;
	uint64_t backoff_cap = o->max_backoff_ns ? o->max_backoff_ns : DEFAULT_MAX_BACKOFF_NS;
	uint64_t timeout = o->timeout_ns ? o->timeout_ns : DEFAULT_TIMEOUT_NS;

	int rc;
	struct curl_slist *hdrs = NULL;
	if ((rc = build_headers(o, &hdrs, err)) != 0)
		return rc;
	tl_buf gz;
	tl_buf_init(&gz, 0);
	const void *payload = body != NULL ? (const void *)body : "";
	size_t payload_len = len;
	if (o->gzip) {
		if ((rc = tl_gzip_deflate(TL_GZIP_GZIP, body, len, -1, &gz)) != 0) {
			curl_slist_free_all(hdrs);
			tl_buf_fini(&gz);
			return tl_errf(err, rc, "POST %s: gzip: %s", o->url, tl_strerror(rc));
		}
		payload = gz.data;
		payload_len = gz.len;
	}
	exchange x = {.cancel = o->cancel};
	tl_buf_init(&x.body, RESP_KEEP);
	char errbuf[CURL_ERROR_SIZE];
	CURL *h = curl_easy_init();
	if (h == NULL) {
		rc = tl_errf(err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = setup(h, o, hdrs, &x, errbuf, payload, payload_len)) != 0) {
		rc = tl_errf(err, rc, "POST %s: libcurl refused an option", o->url);
		goto out;
	}

	uint64_t start = tl_mono_ns();
	char why[WHY_MAX];
	for (unsigned attempt = 1;; attempt++) {
		uint64_t elapsed = tl_mono_ns() - start;
		uint64_t left = max_elapsed > elapsed ? max_elapsed - elapsed : 0;
		uint64_t t = timeout < left ? timeout : left;
		long t_ms = (long)(t / TL_NS_PER_MS);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, t_ms > 0 ? t_ms : 1L);
		exchange_reset(&x);
		errbuf[0] = '\0';
		CURLcode c = curl_easy_perform(h);
		res->attempts = attempt;
		res->status = 0;
		if (c == CURLE_ABORTED_BY_CALLBACK && o->cancel != NULL && *o->cancel != 0) {
			rc = tl_errf(err, -ECANCELED, "POST %s: cancelled", o->url);
			goto out;
		}
		if (c == CURLE_OK) {
			long status = 0;
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
			res->status = status;
			if (status >= 200 && status < 300) {
				res->message[0] = '\0'; /* an earlier attempt's error text is not this answer's */
				partial_success(&x, res);
				rc = 0;
				goto out;
			}
			char text[200];
			error_text(&x, text, sizeof(text));
			snprintf(res->message, sizeof(res->message), "%s", text);
			if (!tl_otlp_status_retryable(status)) {
				rc = tl_errf(err, TL_EREJECTED, "POST %s: HTTP %ld%s%s", o->url, status,
				             text[0] ? ": " : " (empty body)", text);
				goto out;
			}
			snprintf(why, sizeof(why), "HTTP %ld%s%s", status, text[0] ? ": " : "", text);
		} else if (curl_retryable(c)) {
			snprintf(why, sizeof(why), "%s", errbuf[0] ? errbuf : curl_easy_strerror(c));
		} else {
			rc = tl_errf(err, c == CURLE_OUT_OF_MEMORY ? -ENOMEM : TL_EINVALID, "POST %s: %s", o->url,
			             errbuf[0] ? errbuf : curl_easy_strerror(c));
			goto out;
		}

		if (attempt >= max_attempts) {
			rc = tl_errf(err, TL_ETRANSPORT, "POST %s: gave up after %u attempts: %s", o->url, attempt,
			             why);
			goto out;
		}
		uint64_t wait;
		bool server_said = x.retry_after_len > 0 && x.retry_after_len <= RETRY_AFTER_LEN_MAX &&
		                   tl_otlp_retry_after_parse(x.retry_after, x.retry_after_len,
		                                             (int64_t)(tl_now_ns() / TL_NS_PER_S), &wait) == 0;
		if (!server_said)
			wait = backoff_ns(backoff0, backoff_cap, attempt);
		elapsed = tl_mono_ns() - start;
		if (elapsed + wait > max_elapsed) {
			rc = tl_errf(err, TL_ETRANSPORT,
			             "POST %s: gave up after %u attempts in %.1f s (%s %.1f s more would pass the "
			             "%.0f s limit): %s",
			             o->url, attempt, secs(elapsed), server_said ? "Retry-After asks" : "waiting",
			             secs(wait), secs(max_elapsed), why);
			goto out;
		}
		if (o->on_retry != NULL)
			o->on_retry(o->ud, attempt, res->status, wait, why);
		if ((rc = wait_for(wait, o->cancel)) != 0) {
			rc = tl_errf(err, rc, "POST %s: cancelled while waiting to retry (%s)", o->url, why);
			goto out;
		}
	}
out:
	if (h != NULL)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	tl_buf_fini(&x.body);
	tl_buf_fini(&gz);
	return rc;
}
