/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OTLP/HTTP receiver. Answers follow the OTLP/HTTP specification: the
 * response uses the request's encoding (protobuf or JSON); success is 200
 * with an ExportTraceServiceResponse, carrying partial_success when some
 * spans were rejected; errors carry a google.rpc.Status naming the problem;
 * 429 and 503 carry Retry-After so OTLP clients back off and retry.
 */
#include "ag_receiver.h"

#include "tl_arena.h"
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_ol.h"
#include "tl_pb.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* gRPC status codes used in google.rpc.Status bodies. */
enum {
	RPC_INVALID_ARGUMENT = 3,
	RPC_RESOURCE_EXHAUSTED = 8,
	RPC_UNIMPLEMENTED = 12,
	RPC_INTERNAL = 13,
	RPC_UNAVAILABLE = 14
};

enum reject_reason {
	RJ_MALFORMED,
	RJ_INVALID,
	RJ_UNSUPPORTED,
	RJ_SPOOL_FULL,
	RJ_MEMORY_FULL,
	RJ_TOO_LARGE,
	RJ_SPOOL_ERROR,
	RJ_TIMEOUT,
	RJ_SHUTDOWN,
	RJ_N
};
static const char *const reject_names[RJ_N] = {
        "malformed",           "invalid",     "unsupported", "spool_full", "memory_full",
        "too_large_for_spool", "spool_error", "timeout",     "shutdown",
};

struct ag_receiver {
	uv_loop_t *loop;
	tl_http_limits http_lim;
	tl_otlp_limits otlp_lim;
	tl_http_server *http;
	ag_pipeline *pipeline;
	ag_sender *sender;
	tl_arena arena; /* decoding is synchronous on the loop: one arena, reset per request */
	unsigned outstanding;
	void (*close_cb)(void *);
	void *close_ud;
	/* Counters for /metrics. */
	uint64_t requests_traces;
	uint64_t requests_lineage;
	uint64_t requests_other;
	uint64_t events_received;
	uint64_t events_accepted;
	uint64_t events_rejected;
	uint64_t spans_received;
	uint64_t spans_accepted;
	uint64_t spans_rejected_invalid;
	uint64_t requests_rejected[RJ_N];
};

typedef struct pending {
	ag_receiver *r;
	tl_http_req *req;
	bool json;
	uint64_t nspans;
	uint64_t rejected;
	char reject_msg[256];
} pending;

void ag_receiver_opts_default(ag_receiver_opts *o)
{
	o->listen = "127.0.0.1:4318";
	tl_http_limits_default(&o->http);
	tl_otlp_limits_default(&o->otlp);
}

static void respond_status(tl_http_req *req, bool json, int http_status, int rpc_code, const char *msg,
                           unsigned retry_after_s)
{
	char ra[24];
	tl_http_header extra[1] = {{"Retry-After", ra}};
	size_t nextra = 0;
	if (retry_after_s > 0) {
		snprintf(ra, sizeof(ra), "%u", retry_after_s);
		nextra = 1;
	}
	if (json) {
		json_t *o = json_pack("{s:i,s:s}", "code", rpc_code, "message", msg);
		char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
		tl_http_respond(req, http_status, "application/json", body != NULL ? body : "{}",
		                body != NULL ? strlen(body) : 2, extra, nextra);
		free(body);
		json_decref(o);
		return;
	}
	tl_pb_rpc_status st;
	google__rpc__status__init(&st);
	st.code = rpc_code;
	st.message = (char *)msg;
	uint8_t buf[1024];
	size_t n = google__rpc__status__get_packed_size(&st);
	if (n > sizeof(buf)) {
		st.message = "error message too long";
		n = google__rpc__status__get_packed_size(&st);
	}
	google__rpc__status__pack(&st, buf);
	tl_http_respond(req, http_status, "application/x-protobuf", buf, n, extra, nextra);
}

static void respond_ok(tl_http_req *req, bool json, uint64_t rejected, const char *msg)
{
	if (json) {
		/* protobuf's JSON mapping writes int64 as a string. */
		char num[24];
		snprintf(num, sizeof(num), "%llu", (unsigned long long)rejected);
		json_t *o = rejected == 0 ? json_object()
		                          : json_pack("{s:{s:s,s:s}}", "partialSuccess", "rejectedSpans", num,
		                                      "errorMessage", msg);
		char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
		tl_http_respond(req, 200, "application/json", s != NULL ? s : "{}", s != NULL ? strlen(s) : 2, NULL, 0);
		free(s);
		json_decref(o);
		return;
	}
	tl_pb_export_resp resp;
	tl_pb_partial_success ps;
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__init(&resp);
	opentelemetry__proto__collector__trace__v1__export_trace_partial_success__init(&ps);
	if (rejected > 0) {
		ps.rejected_spans = (int64_t)rejected;
		ps.error_message = (char *)msg;
		resp.partial_success = &ps;
	}
	uint8_t buf[1024];
	size_t n = opentelemetry__proto__collector__trace__v1__export_trace_service_response__get_packed_size(&resp);
	if (n > sizeof(buf)) {
		ps.error_message = "";
		n = opentelemetry__proto__collector__trace__v1__export_trace_service_response__get_packed_size(&resp);
	}
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__pack(&resp, buf);
	tl_http_respond(req, 200, "application/x-protobuf", buf, n, NULL, 0);
}

static void traces_done(void *ud, int status, const char *msg)
{
	pending *pd = ud;
	ag_receiver *r = pd->r;
	r->outstanding--;
	if (status == 0) {
		r->spans_accepted += pd->nspans;
		respond_ok(pd->req, pd->json, pd->rejected, pd->reject_msg);
	} else if (status == TL_ESTORE) {
		r->requests_rejected[RJ_SPOOL_ERROR]++;
		char m[512];
		snprintf(m, sizeof(m), "agent cannot write its spool; spans not accepted, retry: %s", msg);
		respond_status(pd->req, pd->json, 503, RPC_UNAVAILABLE, m, 5);
	} else if (status == TL_ECLOSED) {
		r->requests_rejected[RJ_SHUTDOWN]++;
		respond_status(pd->req, pd->json, 503, RPC_UNAVAILABLE, "agent is shutting down", 5);
	} else {
		r->requests_rejected[RJ_TIMEOUT]++;
		respond_status(pd->req, pd->json, 503, RPC_UNAVAILABLE,
		               "agent spool did not commit in time; spans not accepted, retry", 5);
	}
	free(pd);
}

/* The media type of a Content-Type value, without parameters. */
static bool media_is(const char *ct, const char *want)
{
	size_t n = strlen(want);
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, want, n) != 0)
		return false;
	ct += n;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* Answers a request the pipeline would not take (see ag_pipeline_submit). */
static void refuse(ag_receiver *r, tl_http_req *req, bool json, int rc, size_t len)
{
	char m[300];
	if (rc == TL_EFULL) {
		r->requests_rejected[RJ_SPOOL_FULL]++;
		respond_status(req, json, 429, RPC_RESOURCE_EXHAUSTED,
		               "agent spool full: the collector is unreachable or behind; retry later", 5);
	} else if (rc == -ENOBUFS) {
		r->requests_rejected[RJ_MEMORY_FULL]++;
		respond_status(req, json, 429, RPC_RESOURCE_EXHAUSTED,
		               "agent busy: too many bytes waiting for the spool (--max-pending-bytes); retry later",
		               1);
	} else if (rc == TL_ELIMIT) {
		r->requests_rejected[RJ_TOO_LARGE]++;
		snprintf(m, sizeof(m),
		         "request holds %zu bytes of spans, more than the whole spool (--spool-max-bytes)", len);
		respond_status(req, json, 413, RPC_INVALID_ARGUMENT, m, 0);
	} else if (rc == TL_ECLOSED) {
		r->requests_rejected[RJ_SHUTDOWN]++;
		respond_status(req, json, 503, RPC_UNAVAILABLE, "agent is shutting down", 5);
	} else {
		r->requests_rejected[RJ_SPOOL_ERROR]++;
		snprintf(m, sizeof(m), "agent cannot take the request: %s", tl_strerror(rc));
		respond_status(req, json, 503, RPC_UNAVAILABLE, m, 1);
	}
}

static void handle_traces(ag_receiver *r, tl_http_req *req)
{
	r->requests_traces++;
	const char *ct = tl_http_req_header(req, "Content-Type");
	bool json;
	if (ct != NULL && (media_is(ct, "application/x-protobuf") || media_is(ct, "application/protobuf"))) {
		json = false;
	} else if (ct != NULL && media_is(ct, "application/json")) {
		json = true;
	} else {
		r->requests_rejected[RJ_UNSUPPORTED]++;
		char m[300];
		snprintf(m, sizeof(m),
		         "unsupported Content-Type '%.200s': use application/x-protobuf or application/json\n",
		         ct != NULL ? ct : "");
		tl_http_respond(req, 415, "text/plain; charset=utf-8", m, strlen(m), NULL, 0);
		return;
	}
	size_t len;
	const uint8_t *body = tl_http_req_body(req, &len);
	tl_pb_export_req *er = NULL;
	tl_errmsg err = {{0}};
	tl_arena_reset(&r->arena);
	int rc = json ? tl_otlp_decode_json(body, len, &r->otlp_lim, tl_arena_allocator(&r->arena), &er, &err)
	              : tl_otlp_decode_proto(body, len, &r->otlp_lim, tl_arena_allocator(&r->arena), &er, &err);
	if (rc != 0) {
		r->requests_rejected[RJ_MALFORMED]++;
		char m[400];
		snprintf(m, sizeof(m), "malformed OTLP %s body: %s", json ? "JSON" : "protobuf",
		         err.msg[0] ? err.msg : tl_strerror(rc));
		/* 400 even for limits (nesting, span count, decoded size): the body's size was fine, its
		 * content is not, and the message names which limit. */
		respond_status(req, json, 400, RPC_INVALID_ARGUMENT, m, 0);
		return;
	}
	tl_otlp_verdict v;
	memset(&v, 0, sizeof(v));
	rc = tl_otlp_validate(er, &r->otlp_lim, &v);
	r->spans_received += v.spans_total;
	if (rc != 0) {
		r->requests_rejected[RJ_INVALID]++;
		r->spans_rejected_invalid += v.spans_total;
		char m[400];
		snprintf(m, sizeof(m), "%s", v.first_error.msg[0] ? v.first_error.msg : tl_strerror(rc));
		respond_status(req, json, rc == TL_ELIMIT ? 413 : 400, RPC_INVALID_ARGUMENT, m, 0);
		return;
	}
	r->spans_rejected_invalid += v.spans_rejected;
	size_t kept = v.spans_total - v.spans_rejected;
	if (v.spans_total > 0 && kept == 0) {
		r->requests_rejected[RJ_INVALID]++;
		char m[400];
		snprintf(m, sizeof(m), "all %zu spans rejected: %s", v.spans_total, v.first_error.msg);
		respond_status(req, json, 400, RPC_INVALID_ARGUMENT, m, 0);
		return;
	}
	if (kept == 0) {
		respond_ok(req, json, 0, "");
		return;
	}
	/* A protobuf body that validation left whole is forwarded as received: re-encoding it would
	 * give the same message and cost a fifth of the agent's CPU. */
	bool verbatim = !json && v.spans_rejected == 0;
	size_t plen =
	        verbatim
	                ? len
	                : opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(er);
	uint8_t *packed = malloc(plen ? plen : 1);
	pending *pd = calloc(1, sizeof(*pd));
	if (packed == NULL || pd == NULL) {
		free(packed);
		free(pd);
		respond_status(req, json, 503, RPC_UNAVAILABLE, "agent out of memory", 1);
		return;
	}
	if (verbatim)
		memcpy(packed, body, len);
	else
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(er, packed);
	tl_arena_reset(&r->arena);
	pd->r = r;
	pd->req = req;
	pd->json = json;
	pd->nspans = kept;
	pd->rejected = v.spans_rejected;
	snprintf(pd->reject_msg, sizeof(pd->reject_msg), "%s", v.first_error.msg);
	rc = ag_pipeline_submit(r->pipeline, AG_RECORD_OTLP_TRACES, packed, plen, kept, traces_done, pd);
	if (rc != 0) {
		free(packed);
		free(pd);
		refuse(r, req, json, rc, plen);
		return;
	}
	r->outstanding++;
}

static void metric(tl_buf *b, const char *name, const char *type, const char *help)
{
	tl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void handle_metrics(ag_receiver *r, tl_http_req *req)
{
	tl_buf b;
	tl_buf_init(&b, 1 << 20);
	ag_pipeline_stats ps;
	ag_sender_stats ss;
	tl_http_stats hs;
	ag_pipeline_stats_get(r->pipeline, &ps);
	ag_sender_stats_get(r->sender, &ss);
	tl_http_server_stats(r->http, &hs);
	metric(&b, "threadline_agent_requests_total", "counter", "HTTP requests received, by route.");
	tl_buf_printf(&b, "threadline_agent_requests_total{route=\"traces\"} %llu\n",
	              (unsigned long long)r->requests_traces);
	tl_buf_printf(&b, "threadline_agent_requests_total{route=\"lineage\"} %llu\n",
	              (unsigned long long)r->requests_lineage);
	tl_buf_printf(&b, "threadline_agent_requests_total{route=\"other\"} %llu\n",
	              (unsigned long long)r->requests_other);
	metric(&b, "threadline_agent_requests_rejected_total", "counter", "Requests not accepted, by reason.");
	for (int i = 0; i < RJ_N; i++)
		tl_buf_printf(&b, "threadline_agent_requests_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
		              (unsigned long long)r->requests_rejected[i]);
	metric(&b, "threadline_agent_spans_received_total", "counter", "Spans in decoded requests.");
	tl_buf_printf(&b, "threadline_agent_spans_received_total %llu\n", (unsigned long long)r->spans_received);
	metric(&b, "threadline_agent_spans_accepted_total", "counter", "Spans answered 200: committed to the spool.");
	tl_buf_printf(&b, "threadline_agent_spans_accepted_total %llu\n", (unsigned long long)r->spans_accepted);
	metric(&b, "threadline_agent_spans_rejected_total", "counter", "Spans removed by validation.");
	tl_buf_printf(&b, "threadline_agent_spans_rejected_total{reason=\"invalid\"} %llu\n",
	              (unsigned long long)r->spans_rejected_invalid);
	metric(&b, "threadline_agent_lineage_events_total", "counter",
	       "OpenLineage events received, accepted (committed to the spool) and rejected (invalid).");
	tl_buf_printf(&b, "threadline_agent_lineage_events_total{outcome=\"received\"} %llu\n",
	              (unsigned long long)r->events_received);
	tl_buf_printf(&b, "threadline_agent_lineage_events_total{outcome=\"accepted\"} %llu\n",
	              (unsigned long long)r->events_accepted);
	tl_buf_printf(&b, "threadline_agent_lineage_events_total{outcome=\"rejected\"} %llu\n",
	              (unsigned long long)r->events_rejected);
	metric(&b, "threadline_agent_pending_bytes", "gauge",
	       "Encoded spans received and not yet committed to the spool.");
	tl_buf_printf(&b, "threadline_agent_pending_bytes %zu\n", ps.pending_bytes);
	metric(&b, "threadline_agent_spool_bytes", "gauge", "Bytes of unacknowledged batches in the spool.");
	tl_buf_printf(&b, "threadline_agent_spool_bytes %zu\n", ps.spool.bytes);
	metric(&b, "threadline_agent_spool_batches", "gauge", "Batches in the spool not yet acknowledged.");
	tl_buf_printf(&b, "threadline_agent_spool_batches %zu\n", ps.spool.batches);
	metric(&b, "threadline_agent_spool_spans", "gauge", "Spans in the spool not yet acknowledged.");
	tl_buf_printf(&b, "threadline_agent_spool_spans %llu\n", (unsigned long long)ps.spool.spans);
	metric(&b, "threadline_agent_spool_max_bytes", "gauge", "The spool's bound (--spool-max-bytes).");
	tl_buf_printf(&b, "threadline_agent_spool_max_bytes %zu\n", ps.spool_max_bytes);
	metric(&b, "threadline_agent_batches_dead", "gauge",
	       "Batches the collector refused for good, kept aside in the spool (never resent).");
	tl_buf_printf(&b, "threadline_agent_batches_dead %zu\n", ps.spool.dead_batches);
	metric(&b, "threadline_agent_batches_dead_bytes", "gauge", "Bytes of the batches kept aside.");
	tl_buf_printf(&b, "threadline_agent_batches_dead_bytes %zu\n", ps.spool.dead_bytes);
	metric(&b, "threadline_agent_spool_commits_total", "counter", "Spool transactions committed.");
	tl_buf_printf(&b, "threadline_agent_spool_commits_total %llu\n", (unsigned long long)ps.commits);
	metric(&b, "threadline_agent_spool_commit_errors_total", "counter", "Spool transactions that failed.");
	tl_buf_printf(&b, "threadline_agent_spool_commit_errors_total %llu\n", (unsigned long long)ps.commit_errors);
	metric(&b, "threadline_agent_spool_syncs_total", "counter", "Periodic fsyncs of the spool (--fsync DURATION).");
	tl_buf_printf(&b, "threadline_agent_spool_syncs_total %llu\n", (unsigned long long)ps.syncs);
	metric(&b, "threadline_agent_batches_spooled_total", "counter", "Batches written to the spool.");
	tl_buf_printf(&b, "threadline_agent_batches_spooled_total %llu\n", (unsigned long long)ps.batches_spooled);
	metric(&b, "threadline_agent_batches_sent_total", "counter", "Batches sent to the collector (first sends).");
	tl_buf_printf(&b, "threadline_agent_batches_sent_total %llu\n", (unsigned long long)ss.batches_sent);
	metric(&b, "threadline_agent_batch_retries_total", "counter", "Batch retransmissions.");
	tl_buf_printf(&b, "threadline_agent_batch_retries_total %llu\n", (unsigned long long)ss.retries);
	metric(&b, "threadline_agent_batches_acked_total", "counter",
	       "Batches the collector acknowledged (stored now or earlier).");
	tl_buf_printf(&b, "threadline_agent_batches_acked_total %llu\n", (unsigned long long)ps.batches_acked);
	metric(&b, "threadline_agent_batches_duplicate_total", "counter",
	       "Acknowledgements saying the collector already had the batch (a resend after a lost ack).");
	tl_buf_printf(&b, "threadline_agent_batches_duplicate_total %llu\n", (unsigned long long)ss.duplicates);
	metric(&b, "threadline_agent_batches_in_flight", "gauge", "Batches sent and awaiting an ack.");
	tl_buf_printf(&b, "threadline_agent_batches_in_flight %u\n", ss.in_flight);
	metric(&b, "threadline_agent_spans_delivered_total", "counter", "Spans in batches the collector acknowledged.");
	tl_buf_printf(&b, "threadline_agent_spans_delivered_total %llu\n", (unsigned long long)ps.spans_delivered);
	metric(&b, "threadline_agent_spans_dropped_total", "counter", "Spans accepted and then dropped, by reason.");
	tl_buf_printf(&b, "threadline_agent_spans_dropped_total{reason=\"collector_refused\"} %llu\n",
	              (unsigned long long)ps.spans_refused);
	metric(&b, "threadline_agent_http_connections", "gauge", "Open HTTP connections.");
	tl_buf_printf(&b, "threadline_agent_http_connections %u\n", hs.connections_open);
	metric(&b, "threadline_agent_http_errors_total", "counter", "HTTP-level errors answered by the server.");
	tl_buf_printf(&b, "threadline_agent_http_errors_total{kind=\"bad_request\"} %llu\n",
	              (unsigned long long)hs.bad_requests);
	tl_buf_printf(&b, "threadline_agent_http_errors_total{kind=\"too_large\"} %llu\n",
	              (unsigned long long)hs.too_large);
	tl_buf_printf(&b, "threadline_agent_http_errors_total{kind=\"timeout\"} %llu\n",
	              (unsigned long long)hs.timeouts);
	tl_http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len, NULL, 0);
	tl_buf_fini(&b);
}

/* ---- OpenLineage: POST /api/v1/lineage (one event) and /api/v1/lineage/batch (an array) ---- */

/* Answers {"code":..., "message":...} (the agent's JSON error body for lineage routes). */
static void lineage_error(tl_http_req *req, int status, const char *msg, unsigned retry_after_s)
{
	char ra[24];
	tl_http_header extra[1] = {{"Retry-After", ra}};
	snprintf(ra, sizeof(ra), "%u", retry_after_s);
	json_t *o = json_pack("{s:i,s:s}", "code", status, "message", msg);
	char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	tl_http_respond(req, status, "application/json", body != NULL ? body : "{}", body != NULL ? strlen(body) : 2,
	                extra, retry_after_s > 0 ? 1 : 0);
	free(body);
	json_decref(o);
}

/* One lineage request: the events it submitted and their answers. */
typedef struct lpending {
	ag_receiver *r;
	tl_http_req *req;
	bool batch;
	size_t n;        /* events in the request */
	size_t waiting;  /* submitted, not yet answered by the pipeline */
	json_t *results; /* batch: per-event results, by index */
	int worst;       /* the first pipeline failure, 0 if none */
	char worst_msg[256];
	size_t accepted;
} lpending;

static void lineage_finish(lpending *lp)
{
	ag_receiver *r = lp->r;
	r->outstanding--;
	r->events_accepted += lp->accepted;
	if (!lp->batch) {
		if (lp->worst == 0) {
			static const char ok[] = "{\"status\":\"accepted\"}";
			tl_http_respond(lp->req, 200, "application/json", ok, sizeof(ok) - 1, NULL, 0);
		} else if (lp->worst == TL_ECLOSED) {
			lineage_error(lp->req, 503, "agent is shutting down", 5);
		} else {
			lineage_error(lp->req, 503, lp->worst_msg, 5);
		}
	} else {
		/* The OpenLineage batch response: a status, a summary, and the events that failed by index
		 * (retriable when the spool could not take them, not when the event itself is invalid). */
		json_t *failed_events = json_array();
		size_t retriable = 0, non_retriable = 0;
		for (size_t i = 0; i < json_array_size(lp->results); i++) {
			json_t *e = json_array_get(lp->results, i);
			const char *st = json_string_value(json_object_get(e, "status"));
			if (st == NULL || strcmp(st, "accepted") == 0)
				continue;
			bool retry = strcmp(st, "failed") == 0;
			retry ? retriable++ : non_retriable++;
			json_array_append_new(failed_events,
			                      json_pack("{s:O,s:O,s:b}", "index", json_object_get(e, "index"), "reason",
			                                json_object_get(e, "error"), "retriable", retry));
		}
		const char *overall = retriable + non_retriable == 0 ? "success"
		                      : lp->accepted > 0             ? "partial_success"
		                                                     : "failure";
		json_t *o = json_pack("{s:s,s:{s:I,s:I,s:I,s:I,s:I},s:o}", "status", overall, "summary", "received",
		                      (json_int_t)lp->n, "successful", (json_int_t)lp->accepted, "failed",
		                      (json_int_t)(retriable + non_retriable), "retriable", (json_int_t)retriable,
		                      "non_retriable", (json_int_t)non_retriable, "failed_events", failed_events);
		char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
		int status = lp->accepted > 0 || lp->n == 0 ? 200 : (lp->worst != 0 ? 503 : 400);
		char ra[8] = "5";
		tl_http_header extra[1] = {{"Retry-After", ra}};
		tl_http_respond(lp->req, status, "application/json", body != NULL ? body : "{}",
		                body != NULL ? strlen(body) : 2, extra, status == 503 ? 1 : 0);
		free(body);
		json_decref(o);
	}
	json_decref(lp->results);
	free(lp);
}

typedef struct lslot {
	lpending *lp;
	size_t index;
} lslot;

static void lineage_done(void *ud, int status, const char *msg)
{
	lslot *sl = ud;
	lpending *lp = sl->lp;
	if (status == 0) {
		lp->accepted++;
		if (lp->batch)
			json_array_set_new(
			        lp->results, sl->index,
			        json_pack("{s:I,s:s}", "index", (json_int_t)sl->index, "status", "accepted"));
	} else {
		if (lp->worst == 0) {
			lp->worst = status;
			snprintf(lp->worst_msg, sizeof(lp->worst_msg), "agent cannot write its spool; retry: %s",
			         status == TL_ECLOSED ? "agent is shutting down" : msg);
		}
		if (lp->batch)
			json_array_set_new(lp->results, sl->index,
			                   json_pack("{s:I,s:s,s:s}", "index", (json_int_t)sl->index, "status",
			                             "failed", "error",
			                             status == TL_ECLOSED ? "agent is shutting down" : msg));
	}
	free(sl);
	if (--lp->waiting == 0)
		lineage_finish(lp);
}

/* Submits one validated event's JSON. Returns 0 or the pipeline's refusal. */
static int lineage_submit(ag_receiver *r, lpending *lp, size_t index, const char *json, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	lslot *sl = calloc(1, sizeof(*sl));
	if (copy == NULL || sl == NULL) {
		free(copy);
		free(sl);
		return -ENOMEM;
	}
	memcpy(copy, json, len);
	sl->lp = lp;
	sl->index = index;
	int rc = ag_pipeline_submit(r->pipeline, AG_RECORD_OPENLINEAGE, copy, len, 0, lineage_done, sl);
	if (rc != 0) {
		free(copy);
		free(sl);
		return rc;
	}
	lp->waiting++;
	return 0;
}

static const char *refusal_text(int rc)
{
	switch (rc) {
	case TL_EFULL:
		return "agent spool full: the collector is unreachable or behind; retry later";
	case -ENOBUFS:
		return "agent busy: too many bytes waiting for the spool (--max-pending-bytes); retry later";
	case TL_ELIMIT:
		return "event larger than the whole spool (--spool-max-bytes)";
	case TL_ECLOSED:
		return "agent is shutting down";
	default:
		return "agent cannot take the event";
	}
}

/* Answers a lineage request the pipeline would not take, like refuse() does for OTLP. */
static void lineage_refuse(ag_receiver *r, tl_http_req *req, int rc)
{
	static const struct {
		int rc, status, reason;
		unsigned retry_after;
	} map[] = {{TL_EFULL, 429, RJ_SPOOL_FULL, 5},
	           {-ENOBUFS, 429, RJ_MEMORY_FULL, 1},
	           {TL_ELIMIT, 413, RJ_TOO_LARGE, 0},
	           {TL_ECLOSED, 503, RJ_SHUTDOWN, 5}};
	int status = 503, reason = RJ_SPOOL_ERROR;
	unsigned ra = 1;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (map[i].rc == rc) {
			status = map[i].status;
			reason = map[i].reason;
			ra = map[i].retry_after;
		}
	}
	r->requests_rejected[reason]++;
	lineage_error(req, status, refusal_text(rc), ra);
}

static void handle_lineage(ag_receiver *r, tl_http_req *req, bool batch)
{
	r->requests_lineage++;
	const char *ct = tl_http_req_header(req, "Content-Type");
	if (ct == NULL || !media_is(ct, "application/json")) {
		r->requests_rejected[RJ_UNSUPPORTED]++;
		lineage_error(req, 415, "OpenLineage events must be sent as application/json", 0);
		return;
	}
	size_t len;
	const uint8_t *body = tl_http_req_body(req, &len);
	tl_ol_limits lim;
	tl_ol_limits_default(&lim);
	tl_errmsg err = {{0}};
	char m[400];
	lpending *lp = calloc(1, sizeof(*lp));
	if (lp == NULL) {
		lineage_error(req, 503, "agent out of memory", 1);
		return;
	}
	lp->r = r;
	lp->req = req;
	lp->batch = batch;
	if (!batch) {
		tl_ol_event ev;
		int rc = tl_ol_parse(body, len, &lim, &ev, &err);
		r->events_received++;
		if (rc != 0) {
			r->events_rejected++;
			r->requests_rejected[rc == TL_EPARSE ? RJ_MALFORMED : RJ_INVALID]++;
			snprintf(m, sizeof(m), "invalid OpenLineage event: %s", err.msg[0] ? err.msg : tl_strerror(rc));
			lineage_error(req, rc == TL_ELIMIT ? 413 : 400, m, 0);
			free(lp);
			return;
		}
		tl_ol_event_fini(&ev);
		lp->n = 1;
		/* Spooled verbatim: unknown facets and all. */
		rc = lineage_submit(r, lp, 0, (const char *)body, len);
		if (rc != 0) {
			free(lp);
			lineage_refuse(r, req, rc);
			return;
		}
		r->outstanding++;
		return;
	}
	json_t *doc = NULL;
	int lrc = tl_ol_json_load(body, len, 0, &doc, &err);
	json_t *arr = json_is_object(doc) ? json_object_get(doc, "events") : doc;
	if (lrc != 0 || !json_is_array(arr)) {
		r->requests_rejected[RJ_MALFORMED]++;
		if (lrc != 0)
			snprintf(m, sizeof(m), "%s", err.msg[0] ? err.msg : tl_strerror(lrc));
		else
			snprintf(m, sizeof(m),
			         "a batch is a JSON array of OpenLineage events (or {\"events\": [...]})");
		lineage_error(req, 400, m, 0);
		json_decref(doc);
		free(lp);
		return;
	}
	lp->n = json_array_size(arr);
	if (lp->n > lim.max_batch) {
		snprintf(m, sizeof(m), "a batch holds at most %zu events, got %zu", lim.max_batch, lp->n);
		lineage_error(req, 413, m, 0);
		json_decref(doc);
		free(lp);
		return;
	}
	lp->results = json_array();
	int refused = 0;
	for (size_t i = 0; i < lp->n; i++) {
		json_t *v = json_array_get(arr, i);
		tl_ol_event ev;
		r->events_received++;
		int rc = tl_ol_parse_value(v, &lim, &ev, &err);
		if (rc != 0) {
			r->events_rejected++;
			json_array_append_new(lp->results, json_pack("{s:I,s:s,s:s}", "index", (json_int_t)i, "status",
			                                             "rejected", "error", err.msg));
			continue;
		}
		tl_ol_event_fini(&ev);
		json_array_append_new(lp->results, json_null()); /* filled in when the spool answers */
		char *one = refused ? NULL : json_dumps(v, JSON_COMPACT);
		if (one != NULL) {
			rc = lineage_submit(r, lp, i, one, strlen(one));
			free(one);
		} else {
			rc = refused ? refused : -ENOMEM;
		}
		if (rc != 0) {
			refused = rc;
			json_array_set_new(lp->results, i,
			                   json_pack("{s:I,s:s,s:s}", "index", (json_int_t)i, "status", "failed",
			                             "error", refusal_text(rc)));
		}
	}
	json_decref(doc);
	if (lp->waiting > 0) {
		r->outstanding++;
		return;
	}
	/* Nothing went to the pipeline: answer now. */
	if (refused != 0 && lp->n > 0) {
		json_decref(lp->results);
		free(lp);
		lineage_refuse(r, req, refused);
		return;
	}
	r->outstanding++;
	lineage_finish(lp);
}

static void on_request(tl_http_req *req, void *ud)
{
	ag_receiver *r = ud;
	const char *method = tl_http_req_method(req);
	const char *path = tl_http_req_path(req);
	if (strcmp(path, "/v1/traces") == 0) {
		if (strcmp(method, "POST") != 0) {
			static const tl_http_header allow[] = {{"Allow", "POST"}};
			tl_http_respond(req, 405, "text/plain", "use POST\n", 9, allow, 1);
			return;
		}
		handle_traces(r, req);
		return;
	}
	bool lin_one = strcmp(path, "/api/v1/lineage") == 0, lin_batch = strcmp(path, "/api/v1/lineage/batch") == 0;
	if (lin_one || lin_batch) {
		if (strcmp(method, "POST") != 0) {
			static const tl_http_header allow[] = {{"Allow", "POST"}};
			tl_http_respond(req, 405, "text/plain", "use POST\n", 9, allow, 1);
			return;
		}
		handle_lineage(r, req, lin_batch);
		return;
	}
	r->requests_other++;
	if (strcmp(path, "/healthz") == 0 && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)) {
		tl_http_respond(req, 200, "text/plain", "ok\n", 3, NULL, 0);
		return;
	}
	if (strcmp(path, "/metrics") == 0 && strcmp(method, "GET") == 0) {
		handle_metrics(r, req);
		return;
	}
	char m[300];
	snprintf(m, sizeof(m), "no route for %.16s %.200s\n", method, path);
	tl_http_respond(req, 404, "text/plain", m, strlen(m), NULL, 0);
}

int ag_receiver_new(uv_loop_t *loop, const ag_receiver_opts *o, ag_pipeline *pipeline, ag_sender *sender,
                    ag_receiver **out)
{
	ag_receiver *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->loop = loop;
	r->http_lim = o->http;
	r->otlp_lim = o->otlp;
	r->pipeline = pipeline;
	r->sender = sender;
	/* A typical request decodes to a few hundred KiB; keep that much warm, no more (RSS budget). */
	tl_arena_init(&r->arena, 256 * 1024, o->otlp.max_decoded_bytes);
	tl_arena_set_retain(&r->arena, 1 << 20);
	int rc = tl_http_server_new(loop, &r->http_lim, on_request, r, &r->http);
	if (rc == 0)
		rc = tl_http_server_listen(r->http, o->listen);
	if (rc != 0) {
		tl_http_server_close(r->http, NULL, NULL);
		tl_arena_fini(&r->arena);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int ag_receiver_port(const ag_receiver *r)
{
	return tl_http_server_port(r->http);
}

unsigned ag_receiver_outstanding(const ag_receiver *r)
{
	return r->outstanding;
}

static void http_closed(void *ud)
{
	ag_receiver *r = ud;
	void (*cb)(void *) = r->close_cb;
	void *cud = r->close_ud;
	tl_arena_fini(&r->arena);
	free(r);
	if (cb != NULL)
		cb(cud);
}

void ag_receiver_close(ag_receiver *r, void (*cb)(void *ud), void *ud)
{
	if (r == NULL) {
		if (cb != NULL)
			cb(ud);
		return;
	}
	r->close_cb = cb;
	r->close_ud = ud;
	tl_http_server_close(r->http, http_closed, r);
}
