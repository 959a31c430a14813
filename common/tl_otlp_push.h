/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/HTTP push: POSTs an encoded ExportTraceServiceRequest to a remote
 * OTLP endpoint (Jaeger v2, Tempo, an OpenTelemetry Collector) with libcurl,
 * as the OTLP specification's "OTLP/HTTP Throttling" and "Retryable
 * response codes" sections ask: retry exactly on 429, 502, 503, 504 and on
 * connection errors and timeouts; wait Retry-After when the server gives
 * one, otherwise exponential backoff with full jitter; never retry any
 * other answer.
 *
 * curl_global_init (and sodium_init, for the jitter) run once, inside, on
 * the first call (pthread_once): callers need no setup and may push from
 * several threads at once (each call uses its own curl handle; a
 * process-wide curl share keeps connections alive between calls, so
 * batch after batch goes over one connection). Proxies follow curl's
 * environment variables (https_proxy, no_proxy, ...). Nothing here logs;
 * on_retry lets the caller say what is happening.
 */
#ifndef TL_OTLP_PUSH_H
#define TL_OTLP_PUSH_H

#include "tl_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tl_otlp_push_opts {
	const char *url;            /* full URL, e.g. http://127.0.0.1:4318/v1/traces */
	const char *const *headers; /* extra "Name: value" lines (e.g. Authorization), may be NULL */
	size_t n_headers;
	bool gzip;                   /* Content-Encoding: gzip (default on for callers) */
	unsigned max_attempts;       /* 0: 8 */
	uint64_t max_elapsed_ns;     /* give up after this long in total (0: 5 min) */
	uint64_t initial_backoff_ns; /* 0: 500 ms; doubled each retry, full jitter, capped at 30 s */
	uint64_t timeout_ns;         /* per request (0: 30 s) */
	/* Called before each retry sleep (may be NULL): attempt number, status, the wait chosen. */
	void (*on_retry)(void *ud, unsigned attempt, long status, uint64_t wait_ns, const char *why);
	void *ud;
	volatile const int *cancel; /* when non-NULL and *cancel != 0, stop waiting and return -ECANCELED */
	/* Added after the first contract; zero keeps the defaults. */
	uint64_t max_backoff_ns; /* the backoff's cap (0: 30 s); a server's Retry-After is not capped by it */
} tl_otlp_push_opts;

typedef struct tl_otlp_push_result {
	long status; /* last HTTP status, 0 when no response */
	unsigned attempts;
	uint64_t rejected_spans; /* from an ExportTraceServiceResponse partial_success, when present */
	char message[256];       /* partial_success.error_message or the start of an error body */
} tl_otlp_push_result;

#define TL_OTLP_PUSH_BODY_MAX (64u << 20)                /* a request body larger than this is refused (TL_ELIMIT) */
#define TL_OTLP_PUSH_RETRY_AFTER_MAX INT64_C(2147483648) /* seconds; RFC 9110's cap for delta-seconds */

/*
 * POSTs body (an encoded ExportTraceServiceRequest, borrowed) as
 * application/x-protobuf to o->url (o is borrowed), gzipped when o->gzip.
 * Retries exactly on 429, 502, 503, 504 and on connection errors/timeouts,
 * waiting Retry-After (delta-seconds or HTTP-date) when given, else
 * exponential backoff with full jitter: attempt n waits a uniformly random
 * time in [0, min(max_backoff, initial_backoff * 2^(n-1))]. It stops when
 * max_attempts requests were made, or when the next wait would end after
 * max_elapsed_ns since the call began. Redirects are not followed.
 *
 * res (may be NULL) receives the last status, the number of requests made
 * and, on 2xx, the partial_success of the answer (protobuf or JSON).
 *
 * Returns 0 on 2xx; otherwise err names the URL, the status and the reason
 * (the first line of the body, or curl's message):
 *   TL_EREJECTED   an answer that must not be retried (4xx other than 429,
 *                  5xx other than 502/503/504, 1xx/3xx);
 *   TL_ETRANSPORT  attempts or time ran out on retryable failures (the last
 *                  one is described);
 *   TL_EINVALID    a missing or unusable URL, a bad header line, or a curl
 *                  error no retry can fix (TLS verification, protocol);
 *   TL_ELIMIT      len above TL_OTLP_PUSH_BODY_MAX;
 *   -ECANCELED     *o->cancel became non-zero (checked while waiting and
 *                  during transfers);
 *   -ENOMEM.
 */
int tl_otlp_push(const tl_otlp_push_opts *o, const uint8_t *body, size_t len, tl_otlp_push_result *res, tl_errmsg *err);

/*
 * Parses a Retry-After field value (RFC 9110 §10.2.3; v[0..len), borrowed,
 * need not be NUL-terminated): delta-seconds ("120", capped at
 * TL_OTLP_PUSH_RETRY_AFTER_MAX) or an HTTP-date ("Wed, 21 Oct 2015
 * 07:28:00 GMT", and the obsolete forms curl_getdate reads), with optional
 * surrounding whitespace. A date is relative to now_unix_s; one in the past
 * means no wait. Returns 0 with *wait_ns, or TL_EPARSE (empty, signed,
 * fractional, trailing garbage, not a date, longer than 128 bytes).
 */
int tl_otlp_retry_after_parse(const char *v, size_t len, int64_t now_unix_s, uint64_t *wait_ns);

/* Whether an HTTP status must be retried by an OTLP exporter: 429, 502, 503, 504. */
bool tl_otlp_status_retryable(long status);

#endif
