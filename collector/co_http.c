/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's HTTP API; see co_http.h. One thread runs a libuv loop
 * with a tl_http server; co_http_stop wakes it with a uv_async, closes the
 * server and joins the thread.
 */
#include "co_http.h"

#include "co_forward.h"
#include "co_index.h"
#include "co_jaeger.h"
#include "co_query.h"
#include "tl_arena.h"
#include "tl_buf.h"
#include "tl_http.h"
#include "tl_id.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MARQUEZ_DEFAULT_DEPTH 20
#define MARQUEZ_MAX_DEPTH 100

#define JAEGER_PARAM_MAX 4096             /* bytes of one decoded parameter */
#define JAEGER_TAGS_MAX 32                /* tag conditions in one search */
#define JAEGER_TRACE_IDS_MAX 100          /* traceID parameters in one search */
#define JAEGER_LIMIT_DEFAULT 100          /* traces per search when limit is absent or 0, as jaeger-query */
#define JAEGER_SEARCH_SPANS_MAX 200000    /* spans one search answer carries at most */
#define JAEGER_DEPS_LOOKBACK_MS 86400000u /* /api/dependencies without lookback: a day, as jaeger-query */

enum {
	R_LINEAGE,
	R_METRICS,
	R_HEALTHZ,
	R_OTHER,
	R_JAEGER_TRACE,
	R_JAEGER_SEARCH,
	R_JAEGER_SERVICES,
	R_JAEGER_OPERATIONS,
	R_JAEGER_DEPENDENCIES,
	R_COUNT
};
static const char *const route_names[R_COUNT] = {"lineage",         "metrics",           "healthz",
                                                 "other",           "jaeger_trace",      "jaeger_search",
                                                 "jaeger_services", "jaeger_operations", "jaeger_dependencies"};

struct co_http {
	uv_loop_t loop;
	uv_async_t stop;
	tl_http_server *server;
	co_store *store;
	co_writer *writer;
	co_forward *forward; /* may be NULL */
	tl_arena arena;      /* query answers; used on the loop thread only */
	tl_arena tarena;     /* one trace at a time while a Jaeger answer is built; loop thread only */
	pthread_t thread;
	bool started;
	uint64_t requests[R_COUNT]; /* by route */
};

static void respond_json(tl_http_req *req, int status, json_t *o)
{
	char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	if (body == NULL) {
		static const char oom[] = "{\"code\":500,\"message\":\"out of memory\"}";
		tl_http_respond(req, 500, "application/json", oom, sizeof(oom) - 1, NULL, 0);
		return;
	}
	tl_http_respond(req, status, "application/json", body, strlen(body), NULL, 0);
	free(body);
}

/* Marquez's error body: {"code": status, "message": ...}. */
static void respond_error(tl_http_req *req, int status, const char *msg)
{
	json_t *o = json_pack("{s:i,s:s}", "code", status, "message", msg);
	respond_json(req, status, o);
	json_decref(o);
}

/* ---- Marquez's lineage shape ---- */

static const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "";
}

/* Marquez's run states. */
static const char *marquez_state(const char *s)
{
	if (strcmp(s, "COMPLETE") == 0)
		return "COMPLETED";
	if (strcmp(s, "FAIL") == 0)
		return "FAILED";
	if (strcmp(s, "ABORT") == 0)
		return "ABORTED";
	if (strcmp(s, "START") == 0 || strcmp(s, "RUNNING") == 0)
		return "RUNNING";
	return "NEW";
}

/* Splits "type:ns:name" at the last ':' into a {namespace, name} object. */
static json_t *ns_name(const char *id)
{
	const char *first = strchr(id, ':');
	const char *last = strrchr(id, ':');
	if (first == NULL || last == first)
		return json_pack("{s:s,s:s}", "namespace", "", "name", first ? first + 1 : id);
	return json_pack("{s:s%,s:s}", "namespace", first + 1, (size_t)(last - first - 1), "name", last + 1);
}

/* The Marquez node for id (created on first use), in graph (an object keyed by id). */
static json_t *mnode(json_t *graph, const char *id, bool job)
{
	json_t *n = json_object_get(graph, id);
	if (n != NULL)
		return n;
	json_t *nn = ns_name(id);
	const char *ns = str_of(nn, "namespace"), *name = str_of(nn, "name");
	/* Every field of Marquez's LineageJob / LineageDataset (its web UI's types); what we do not know is null. */
	json_t *data =
	        job ? json_pack("{s:O,s:s,s:s,s:s,s:s,s:n,s:n,s:[],s:[],s:n,s:n,s:n,s:n,s:n,s:[]}", "id", nn, "type",
	                        "BATCH", "name", name, "simpleName", name, "namespace", ns, "createdAt", "updatedAt",
	                        "inputs", "outputs", "location", "description", "latestRun", "parentJobName",
	                        "parentJobUuid", "tags")
	            : json_pack("{s:O,s:s,s:s,s:s,s:s,s:s,s:n,s:n,s:[],s:{},s:[],s:n,s:n}", "id", nn, "type",
	                        "DB_TABLE", "name", name, "physicalName", name, "namespace", ns, "sourceName", ns,
	                        "createdAt", "updatedAt", "fields", "facets", "tags", "lastModifiedAt", "description");
	n = json_pack("{s:s,s:s,s:o,s:[],s:[]}", "id", id, "type", job ? "JOB" : "DATASET", "data", data, "inEdges",
	              "outEdges");
	json_decref(nn);
	json_object_set_new(graph, id, n);
	return n;
}

/* Adds origin -> destination once, to origin's outEdges and destination's inEdges. */
static void medge(json_t *graph, const char *origin, bool origin_job, const char *dest, bool dest_job)
{
	json_t *o = mnode(graph, origin, origin_job), *d = mnode(graph, dest, dest_job);
	json_t *out = json_object_get(o, "outEdges");
	for (size_t i = 0; i < json_array_size(out); i++)
		if (strcmp(str_of(json_array_get(out, i), "destination"), dest) == 0)
			return;
	json_array_append_new(out, json_pack("{s:s,s:s}", "origin", origin, "destination", dest));
	json_array_append_new(json_object_get(d, "inEdges"),
	                      json_pack("{s:s,s:s}", "origin", origin, "destination", dest));
	/* A job's inputs and outputs, as {namespace, name}. */
	if (origin_job && !dest_job)
		json_array_append_new(json_object_get(json_object_get(o, "data"), "outputs"), ns_name(dest));
	if (dest_job && !origin_job)
		json_array_append_new(json_object_get(json_object_get(d, "data"), "inputs"), ns_name(origin));
}

/* data.key = t when it is unset or t is later (later: true) or earlier (false). RFC 3339 UTC strings sort as text. */
static void keep_time(json_t *data, const char *key, const char *t, bool later)
{
	if (t[0] == '\0')
		return;
	const char *old = json_string_value(json_object_get(data, key));
	if (old == NULL || (later ? strcmp(t, old) > 0 : strcmp(t, old) < 0))
		json_object_set_new(data, key, json_string(t));
}

/* The value of key in o, or null. A new reference. */
static json_t *or_null(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return v != NULL ? json_incref(v) : json_null();
}

/* Marquez's jobVersion of a run: {namespace, name, version} from "job:NS:NAME#V", or null. */
static json_t *job_version(const char *jv)
{
	const char *hash = strrchr(jv, '#');
	if (strncmp(jv, "job:", 4) != 0 || hash == NULL)
		return json_null();
	const char *colon = hash;
	while (colon > jv + 4 && *colon != ':')
		colon--;
	if (colon == jv + 4 - 1 || *colon != ':')
		return json_null();
	return json_pack("{s:s%,s:s%,s:s}", "namespace", jv + 4, (size_t)(colon - jv - 4), "name", colon + 1,
	                 (size_t)(hash - colon - 1), "version", hash + 1);
}

/* A dataset's schema facet as Marquez's fields: [{name, type, tags, description}]. */
static json_t *schema_fields(json_t *facets)
{
	json_t *out = json_array(), *f;
	size_t i;
	json_array_foreach(json_object_get(json_object_get(facets, "schema"), "fields"), i, f)
	{
		if (json_is_string(json_object_get(f, "name")))
			json_array_append_new(out, json_pack("{s:O,s:o,s:[],s:o}", "name", json_object_get(f, "name"),
			                                     "type", or_null(f, "type"), "tags", "description",
			                                     or_null(f, "description")));
	}
	return out;
}

/* The Marquez id a node of the show document stands for: a job for a run, a dataset for a model, else itself. */
static const char *mid(json_t *nodes_by_id, const char *id, bool *job)
{
	json_t *n = json_object_get(nodes_by_id, id);
	const char *type = str_of(n, "type");
	*job = false;
	if (strcmp(type, "run") == 0) {
		*job = true;
		const char *j = json_string_value(json_object_get(n, "job"));
		return j;
	}
	if (strcmp(type, "job") == 0) {
		*job = true;
		const char *base = json_string_value(json_object_get(n, "job")); /* a job version's job */
		return base != NULL ? base : id;
	}
	if (strcmp(type, "model") == 0)
		return json_string_value(json_object_get(n, "dataset"));
	if (strcmp(type, "dataset") == 0)
		return id;
	return NULL; /* predictions, deployments: not in Marquez's model */
}

json_t *co_http_marquez_graph(json_t *show)
{
	json_t *byid = json_object(), *graph = json_object();
	if (byid == NULL || graph == NULL) {
		json_decref(byid);
		json_decref(graph);
		return NULL;
	}
	json_t *nodes = json_object_get(show, "nodes"), *edges = json_object_get(show, "edges");
	for (size_t i = 0; i < json_array_size(nodes); i++) {
		json_t *n = json_array_get(nodes, i);
		if (strcmp(str_of(n, "type"), "job") == 0 && json_is_string(json_object_get(n, "version"))) {
			/* Marquez has no job version nodes: one stands for its job. */
			json_t *c = json_copy(n);
			if (c != NULL && json_object_set_new(c, "job",
			                                     json_sprintf("job:%s:%s", str_of(n, "namespace"),
			                                                  str_of(n, "name"))) == 0) {
				json_object_set_new(byid, str_of(n, "id"), c);
				continue;
			}
			json_decref(c);
		}
		json_object_set(byid, str_of(n, "id"), n);
	}
	for (size_t i = 0; i < json_array_size(nodes); i++) {
		json_t *n = json_array_get(nodes, i);
		bool job;
		const char *id = mid(byid, str_of(n, "id"), &job);
		if (id == NULL)
			continue;
		json_t *m = mnode(graph, id, job);
		json_t *data = json_object_get(m, "data");
		const char *type = str_of(n, "type"), *first = str_of(n, "first_seen");
		/* A run tells its job's latest run (the document lists runs nearest first; keep the newest start). */
		if (strcmp(type, "run") == 0) {
			json_t *lr = json_object_get(data, "latestRun");
			const char *started = str_of(n, "started_at"), *ended = str_of(n, "ended_at");
			if (!json_is_object(lr) || strcmp(started, str_of(lr, "startedAt")) > 0) {
				const char *rid = str_of(n, "id");
				json_object_set_new(
				        data, "latestRun",
				        json_pack("{s:s,s:o,s:o,s:n,s:n,s:s,s:o,s:o,s:o,s:o,s:{},s:{}}", "id",
				                  strncmp(rid, "run:", 4) ? rid : rid + 4, "createdAt",
				                  started[0] ? json_string(started) : or_null(n, "first_seen"),
				                  "updatedAt", ended[0] ? json_string(ended) : or_null(n, "started_at"),
				                  "nominalStartTime", "nominalEndTime", "state",
				                  marquez_state(str_of(n, "state")), "jobVersion",
				                  job_version(str_of(n, "job_version")), "startedAt",
				                  or_null(n, "started_at"), "endedAt", or_null(n, "ended_at"),
				                  "durationMs", or_null(n, "duration_ms"), "args", "facets"));
			}
			keep_time(data, "updatedAt", ended[0] ? ended : started, true);
		} else {
			/* The job or dataset itself (a job version or a model stands for it: the earliest counts). */
			keep_time(data, "createdAt", first, false);
			keep_time(data, "updatedAt", first, true);
		}
		if (strcmp(type, "dataset") == 0 && json_is_object(json_object_get(n, "facets"))) {
			json_object_set(data, "facets", json_object_get(n, "facets"));
			json_object_set_new(data, "fields", schema_fields(json_object_get(n, "facets")));
		}
	}
	for (size_t i = 0; i < json_array_size(edges); i++) {
		json_t *e = json_array_get(edges, i);
		const char *type = str_of(e, "type");
		if (strcmp(type, "input") != 0 && strcmp(type, "output") != 0)
			continue;
		bool fj, tj;
		const char *from = mid(byid, str_of(e, "from"), &fj), *to = mid(byid, str_of(e, "to"), &tj);
		if (from != NULL && to != NULL && fj != tj) {
			medge(graph, from, fj, to, tj);
			/* A dataset was last modified when the latest run that wrote it ended. */
			const char *ended = str_of(json_object_get(byid, str_of(e, "from")), "ended_at");
			if (fj && !tj) {
				json_t *d = json_object_get(json_object_get(graph, to), "data");
				keep_time(d, "lastModifiedAt", ended, true);
				keep_time(d, "updatedAt", ended, true);
			}
		}
	}
	json_t *arr = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(graph, k, v) json_array_append(arr, v);
	json_decref(graph);
	json_decref(byid);
	json_t *out = json_pack("{s:o}", "graph", arr);
	return out;
}

/* ---- routes ---- */

static void handle_lineage(co_http *h, tl_http_req *req)
{
	char node[1024], depth_s[32];
	int rc = tl_http_req_param(req, "nodeId", node, sizeof(node));
	if (rc == TL_ENOTFOUND || (rc == 0 && node[0] == '\0')) {
		respond_error(req, 400,
		              "nodeId is required (e.g. nodeId=dataset:NAMESPACE:NAME or job:NAMESPACE:NAME)");
		return;
	}
	if (rc != 0) {
		respond_error(req, 400, "nodeId is too long");
		return;
	}
	long depth = MARQUEZ_DEFAULT_DEPTH;
	if (tl_http_req_param(req, "depth", depth_s, sizeof(depth_s)) == 0) {
		char *end;
		depth = strtol(depth_s, &end, 10);
		if (end == depth_s || *end != '\0' || depth < 0 || depth > MARQUEZ_MAX_DEPTH) {
			char m[128];
			snprintf(m, sizeof(m), "depth must be an integer from 0 to %d", MARQUEZ_MAX_DEPTH);
			respond_error(req, 400, m);
			return;
		}
	}
	tl_pb_query_req q;
	threadline__v1__query_request__init(&q);
	tl_pb_lineage_show ls;
	threadline__v1__lineage_show__init(&ls);
	ls.node_id = node;
	ls.direction = THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_BOTH;
	ls.depth = (uint32_t)(depth == 0 ? 1 : depth);
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW;
	q.lineage_show = &ls;
	uint8_t buf[2048];
	size_t len = threadline__v1__query_request__get_packed_size(&q);
	threadline__v1__query_request__pack(&q, buf);
	tl_arena_reset(&h->arena);
	tl_pb_query_resp resp;
	co_query_answer(h->store, buf, len, &h->arena, &resp);
	if (resp.code != 0) {
		int status = resp.code == TL_ENOTFOUND ? 404 : resp.code == TL_EINVALID ? 400 : 500;
		respond_error(req, status, resp.error != NULL && resp.error[0] ? resp.error : tl_strerror(resp.code));
		return;
	}
	json_error_t je;
	json_t *show = json_loads(resp.json != NULL ? resp.json : "", 0, &je);
	json_t *out = show != NULL ? co_http_marquez_graph(show) : NULL;
	json_decref(show);
	if (out == NULL) {
		respond_error(req, 500, "the lineage answer could not be converted");
		return;
	}
	respond_json(req, 200, out);
	json_decref(out);
}

static void metric(tl_buf *b, const char *name, const char *type, const char *help)
{
	tl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void handle_metrics(co_http *h, tl_http_req *req)
{
	tl_buf b;
	tl_buf_init(&b, 1 << 20);
	co_store_counts c;
	if (co_store_counts_get(h->store, &c) == 0) {
		metric(&b, "threadline_collector_store_entries", "gauge", "Entries per LMDB database.");
		const struct {
			const char *db;
			size_t n;
		} dbs[] = {{"span_chunks", c.chunks},     {"trace_index", c.trace_idx}, {"traces", c.traces},
		           {"time_index", c.time_idx},    {"resources", c.resources},   {"dedupe", c.dedupe},
		           {"lineage_raw", c.lineage_raw}};
		for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++)
			tl_buf_printf(&b, "threadline_collector_store_entries{db=\"%s\"} %zu\n", dbs[i].db, dbs[i].n);
	}
	metric(&b, "threadline_collector_store_map_bytes", "gauge", "The LMDB map size (grows when full).");
	tl_buf_printf(&b, "threadline_collector_store_map_bytes %zu\n", co_store_map_size(h->store));
	if (h->writer != NULL) {
		uint64_t syncs = 0, fails = 0;
		co_writer_sync_stats(h->writer, &syncs, &fails);
		metric(&b, "threadline_collector_writer_queued_bytes", "gauge", "Batches received, not yet committed.");
		tl_buf_printf(&b, "threadline_collector_writer_queued_bytes %zu\n", co_writer_queued_bytes(h->writer));
		metric(&b, "threadline_collector_writer_syncs_total", "counter", "Periodic fsyncs (--fsync DURATION).");
		tl_buf_printf(&b, "threadline_collector_writer_syncs_total{outcome=\"ok\"} %llu\n",
		              (unsigned long long)syncs);
		tl_buf_printf(&b, "threadline_collector_writer_syncs_total{outcome=\"failed\"} %llu\n",
		              (unsigned long long)fails);
	}
	if (h->forward != NULL)
		co_forward_metrics(h->forward, &b);
	metric(&b, "threadline_collector_http_requests_total", "counter", "HTTP API requests, by route.");
	for (int i = 0; i < R_COUNT; i++)
		tl_buf_printf(&b, "threadline_collector_http_requests_total{route=\"%s\"} %llu\n", route_names[i],
		              (unsigned long long)h->requests[i]);
	tl_http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len, NULL, 0);
	tl_buf_fini(&b);
}

/* ---- Jaeger's query API (jaeger-query's HTTP JSON API; shapes in co_jaeger.h) ---- */

/* Answers with o (taken); NULL (ENOMEM while building it) becomes a 500. */
static void respond_jaeger(tl_http_req *req, int status, json_t *o)
{
	if (o == NULL) {
		status = 500;
		o = co_jaeger_error(500, "out of memory");
	}
	respond_json(req, status, o);
	json_decref(o);
}

static void jaeger_fail(tl_http_req *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void jaeger_fail(tl_http_req *req, int status, const char *fmt, ...)
{
	char m[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	respond_jaeger(req, status, co_jaeger_error(status, m));
}

/* The HTTP status for an error from the store or the indexes. */
static int jaeger_status(int rc)
{
	switch (rc) {
	case TL_ENOTFOUND:
		return 404;
	case TL_EINVALID:
	case TL_EPARSE:
		return 400;
	case TL_EUNSUPPORTED:
		return 501;
	default:
		return 500;
	}
}

/* A parameter, decoded into buf. An empty value counts as absent (jaeger-query reads them so). */
static int jparam(tl_http_req *req, const char *name, size_t nth, char *buf, size_t cap, bool *found, tl_errmsg *err)
{
	int rc = tl_http_req_param_nth(req, name, nth, buf, cap);
	*found = rc == 0 && buf[0] != '\0';
	if (rc == TL_ELIMIT)
		return tl_errf(err, TL_EINVALID, "unable to parse param '%s': longer than %zu bytes", name, cap - 1);
	if (!*found && cap > 0)
		buf[0] = '\0';
	return 0;
}

/* A non-negative decimal integer parameter. */
static int jparam_uint(tl_http_req *req, const char *name, uint64_t *v, bool *found, tl_errmsg *err)
{
	char buf[64];
	int rc = jparam(req, name, 0, buf, sizeof(buf), found, err);
	if (rc != 0 || !*found)
		return rc;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(buf, &end, 10);
	if (buf[0] < '0' || buf[0] > '9' || *end != '\0' || errno == ERANGE)
		return tl_errf(err, TL_EINVALID, "unable to parse param '%s': \"%.40s\" is not a non-negative integer",
		               name, buf);
	*v = x;
	return 0;
}

/* A time parameter in unix units (1000 for µs, 1000000 for ms), as ns. */
static int jparam_time(tl_http_req *req, const char *name, uint64_t unit_ns, uint64_t *ns, bool *found, tl_errmsg *err)
{
	uint64_t v = 0;
	int rc = jparam_uint(req, name, &v, found, err);
	if (rc != 0 || !*found)
		return rc;
	if (v > UINT64_MAX / unit_ns)
		return tl_errf(err, TL_EINVALID, "unable to parse param '%s': %llu is too far in the future", name,
		               (unsigned long long)v);
	*ns = v * unit_ns;
	return 0;
}

/* minDuration / maxDuration: Go durations ("1.2ms", "100ms", "1s", "1m30s"). */
static int jparam_duration(tl_http_req *req, const char *name, uint64_t *ns, tl_errmsg *err)
{
	char buf[64];
	bool found;
	int rc = jparam(req, name, 0, buf, sizeof(buf), &found, err);
	*ns = 0;
	if (rc != 0 || !found)
		return rc;
	rc = co_jaeger_parse_duration(buf, ns);
	if (rc != 0)
		return tl_errf(
		        err, TL_EINVALID,
		        "unable to parse param '%s': \"%.40s\" is not a duration (Go syntax: a number and a unit "
		        "among ns, us, ms, s, m, h, such as 1.2ms, 100ms, 1s or 1m30s)%s",
		        name, buf, rc == TL_ELIMIT ? "; it is too long" : "");
	return 0;
}

/* One tag condition; error=true (or otel.status_code=ERROR) asks for failed spans. A repeated key keeps its last value.
 */
static int add_tag(co_search_query *q, co_search_attr *attrs, const char *key, const char *value, tl_arena *a,
                   tl_errmsg *err)
{
	if ((strcmp(key, "error") == 0 && strcmp(value, "true") == 0) ||
	    (strcmp(key, "otel.status_code") == 0 && strcmp(value, "ERROR") == 0)) {
		q->error_only = true;
		return 0;
	}
	if (key[0] == '\0')
		return tl_errf(err, TL_EINVALID, "malformed 'tag' parameter: the key is empty");
	char *v = tl_arena_strndup(a, value, strlen(value));
	if (v == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < q->n_attrs; i++)
		if (strcmp(attrs[i].key, key) == 0) {
			attrs[i].value = v;
			return 0;
		}
	if (q->n_attrs == JAEGER_TAGS_MAX)
		return tl_errf(err, TL_EINVALID, "too many tag conditions (at most %d)", JAEGER_TAGS_MAX);
	char *k = tl_arena_strndup(a, key, strlen(key));
	if (k == NULL)
		return -ENOMEM;
	attrs[q->n_attrs].key = k;
	attrs[q->n_attrs].value = v;
	q->n_attrs++;
	return 0;
}

/* tags={"k":"v",...} (JSON, repeatable) and tag=k:v (repeatable). */
static int parse_tags(tl_http_req *req, co_search_query *q, co_search_attr *attrs, tl_arena *a, char *buf,
                      tl_errmsg *err)
{
	bool found;
	int rc;
	for (size_t i = 0;; i++) {
		if ((rc = jparam(req, "tag", i, buf, JAEGER_PARAM_MAX, &found, err)) != 0)
			return rc;
		if (!found) {
			if (tl_http_req_param_nth(req, "tag", i, buf, JAEGER_PARAM_MAX) == 0)
				continue; /* tag= with nothing: skip, like an absent one */
			break;
		}
		char *colon = strchr(buf, ':');
		if (colon == NULL)
			return tl_errf(err, TL_EINVALID,
			               "malformed 'tag' parameter, expecting key:value, received: %.200s", buf);
		*colon = '\0';
		if ((rc = add_tag(q, attrs, buf, colon + 1, a, err)) != 0)
			return rc;
	}
	for (size_t i = 0;; i++) {
		if ((rc = jparam(req, "tags", i, buf, JAEGER_PARAM_MAX, &found, err)) != 0)
			return rc;
		if (!found) {
			if (tl_http_req_param_nth(req, "tags", i, buf, JAEGER_PARAM_MAX) == 0)
				continue;
			break;
		}
		json_error_t je;
		json_t *o = json_loads(buf, 0, &je);
		if (!json_is_object(o)) {
			json_decref(o);
			return tl_errf(err, TL_EINVALID,
			               "malformed 'tags' parameter, expecting a JSON object of strings such as "
			               "{\"http.status_code\":\"500\"}: %s",
			               o == NULL ? je.text : "not an object");
		}
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v)
		{
			char num[40];
			const char *sv = json_string_value(v);
			if (json_is_integer(v)) {
				snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
				sv = num;
			} else if (json_is_real(v)) {
				snprintf(num, sizeof(num), "%.17g", json_real_value(v));
				sv = num;
			} else if (json_is_boolean(v)) {
				sv = json_is_true(v) ? "true" : "false";
			}
			if (sv == NULL) {
				tl_errf(err, TL_EINVALID,
				        "malformed 'tags' parameter: the value of \"%.100s\" is not a string", k);
				json_decref(o);
				return TL_EINVALID;
			}
			if ((rc = add_tag(q, attrs, k, sv, a, err)) != 0) {
				json_decref(o);
				return rc;
			}
		}
		json_decref(o);
	}
	return 0;
}

/* Reads trace id and converts it; *jt gets NULL when the trace is unknown. Returns 0 or an error. */
static int jaeger_load(co_http *h, const uint8_t id[16], json_t **jt, size_t *spans)
{
	tl_arena_reset(&h->tarena);
	tl_pb_trace_result *tr = NULL;
	*jt = NULL;
	int rc = co_store_get_trace(h->store, id, &h->tarena, &tr);
	if (rc == TL_ENOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	*jt = co_jaeger_trace(tr);
	if (*jt == NULL)
		return -ENOMEM;
	*spans = json_array_size(json_object_get(*jt, "spans"));
	return 0;
}

/* The id as Jaeger prints it in errors. */
static void id_hex(const uint8_t id[16], char out[33])
{
	tl_hex_encode(tl_id_is_zero(id, 8) ? id + 8 : id, tl_id_is_zero(id, 8) ? 8 : 16, out);
}

/* GET /api/traces/{id} */
static void handle_jaeger_trace(co_http *h, tl_http_req *req, const char *id_s)
{
	uint8_t id[16];
	if (co_jaeger_parse_trace_id(id_s, id) != 0) {
		jaeger_fail(req, 400, "unable to parse param 'traceID': \"%.80s\" is not 1 to 32 hex digits", id_s);
		return;
	}
	/* start and end (µs) only narrow a lookup in jaeger-query; a trace id is enough here, but they must parse. */
	tl_errmsg err = {{0}};
	uint64_t ignored;
	bool found;
	if (jparam_time(req, "start", 1000, &ignored, &found, &err) != 0 ||
	    jparam_time(req, "end", 1000, &ignored, &found, &err) != 0) {
		jaeger_fail(req, 400, "%s", err.msg);
		return;
	}
	json_t *jt = NULL;
	size_t spans = 0;
	int rc = jaeger_load(h, id, &jt, &spans);
	tl_arena_reset(&h->tarena);
	if (rc != 0) {
		jaeger_fail(req, jaeger_status(rc), "reading the trace: %s", tl_strerror(rc));
		return;
	}
	if (jt == NULL) {
		jaeger_fail(req, 404, "trace not found");
		return;
	}
	json_t *data = json_array();
	if (data != NULL && json_array_append_new(data, jt) != 0) {
		json_decref(data);
		data = NULL;
	} else if (data == NULL) {
		json_decref(jt);
	}
	respond_jaeger(req, 200, data != NULL ? co_jaeger_envelope(data, 1, NULL) : NULL);
}

static int add_error(json_t *errors, int code, const char *msg, const char *trace_hex)
{
	return json_array_append_new(errors, co_jaeger_error_entry(code, msg, trace_hex)) == 0 ? 0 : -ENOMEM;
}

/* Adds a trace to data within the span budget; a trace that would pass it is left out with an error entry. */
static int add_trace(co_http *h, const uint8_t id[16], json_t *data, json_t *errors, size_t *total_spans,
                     bool missing_is_error)
{
	char hex[33];
	id_hex(id, hex);
	json_t *jt = NULL;
	size_t spans = 0;
	int rc = jaeger_load(h, id, &jt, &spans);
	tl_arena_reset(&h->tarena);
	if (rc == -ENOMEM)
		return rc;
	if (rc != 0)
		return add_error(errors, jaeger_status(rc), tl_strerror(rc), hex);
	if (jt == NULL) /* unknown, or removed since the search saw it */
		return missing_is_error ? add_error(errors, 404, "trace not found", hex) : 0;
	if (*total_spans + spans > JAEGER_SEARCH_SPANS_MAX && json_array_size(data) > 0) {
		json_decref(jt);
		char m[200];
		snprintf(m, sizeof(m),
		         "left out: the answer would carry more than %d spans; narrow the search or lower 'limit'",
		         JAEGER_SEARCH_SPANS_MAX);
		return add_error(errors, 413, m, hex);
	}
	*total_spans += spans;
	return json_array_append_new(data, jt) == 0 ? 0 : -ENOMEM;
}

/* The answer of a search: data and errors (null when empty). */
static void respond_traces(tl_http_req *req, json_t *data, json_t *errors)
{
	size_t n = json_array_size(data);
	if (json_array_size(errors) == 0) {
		json_decref(errors);
		errors = NULL;
	}
	respond_jaeger(req, 200, co_jaeger_envelope(data, n, errors));
}

/* GET /api/traces?traceID=...: those traces; unknown ones in errors. */
static void search_by_ids(co_http *h, tl_http_req *req, char *buf)
{
	uint8_t ids[JAEGER_TRACE_IDS_MAX][16];
	size_t n = 0;
	for (size_t i = 0;; i++) {
		int rc = tl_http_req_param_nth(req, "traceID", i, buf, JAEGER_PARAM_MAX);
		if (rc == TL_ENOTFOUND)
			break;
		if (rc != 0 || co_jaeger_parse_trace_id(buf, ids[n]) != 0) {
			jaeger_fail(req, 400, "unable to parse param 'traceID': \"%.80s\" is not 1 to 32 hex digits",
			            rc == 0 ? buf : "(too long)");
			return;
		}
		if (++n == JAEGER_TRACE_IDS_MAX &&
		    tl_http_req_param_nth(req, "traceID", i + 1, buf, 1) != TL_ENOTFOUND) {
			jaeger_fail(req, 400, "too many 'traceID' parameters (at most %d)", JAEGER_TRACE_IDS_MAX);
			return;
		}
	}
	json_t *data = json_array(), *errors = json_array();
	size_t total_spans = 0;
	int rc = data != NULL && errors != NULL ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = add_trace(h, ids[i], data, errors, &total_spans, true);
	if (rc != 0) {
		json_decref(data);
		json_decref(errors);
		jaeger_fail(req, 500, "%s", tl_strerror(rc));
		return;
	}
	respond_traces(req, data, errors);
}

/* GET /api/traces: search with jaeger-query's parameters. */
static void handle_jaeger_search(co_http *h, tl_http_req *req)
{
	char *buf = tl_arena_alloc(&h->arena, JAEGER_PARAM_MAX);
	if (buf == NULL) {
		jaeger_fail(req, 500, "out of memory");
		return;
	}
	if (tl_http_req_param_nth(req, "traceID", 0, buf, 1) != TL_ENOTFOUND) {
		search_by_ids(h, req, buf);
		return;
	}
	co_search_query q;
	memset(&q, 0, sizeof(q));
	co_search_attr *attrs = tl_arena_alloc(&h->arena, JAEGER_TAGS_MAX * sizeof(*attrs));
	char service[CO_INDEX_VALUE_MAX * 8], operation[CO_INDEX_VALUE_MAX * 8];
	tl_errmsg err = {{0}};
	bool found, have_start, have_end;
	uint64_t start = 0, end = 0, limit = 0;
	int rc = attrs != NULL ? 0 : -ENOMEM;
	if (rc == 0)
		rc = jparam(req, "service", 0, service, sizeof(service), &found, &err);
	if (rc == 0)
		rc = jparam(req, "operation", 0, operation, sizeof(operation), &found, &err);
	if (rc == 0)
		rc = jparam_time(req, "start", 1000, &start, &have_start, &err);
	if (rc == 0)
		rc = jparam_time(req, "end", 1000, &end, &have_end, &err);
	if (rc == 0 && !have_start) {
		/* The UI sends lookback ("1h", "2d", "custom") with start and end; alone, it means "the last ...". */
		char lb[64];
		rc = jparam(req, "lookback", 0, lb, sizeof(lb), &found, &err);
		uint64_t d;
		if (rc == 0 && found && strcmp(lb, "custom") != 0) {
			if (tl_parse_duration(lb, &d) != 0 && co_jaeger_parse_duration(lb, &d) != 0)
				rc = tl_errf(&err, TL_EINVALID,
				             "unable to parse param 'lookback': \"%.40s\" is not a duration such as 1h "
				             "or 2d",
				             lb);
			else {
				uint64_t now = tl_now_ns();
				start = d < now ? now - d : 0;
			}
		}
	}
	if (rc == 0 && have_start && have_end && start > end)
		rc = tl_errf(&err, TL_EINVALID, "'start' (%llu) is after 'end' (%llu)",
		             (unsigned long long)(start / 1000), (unsigned long long)(end / 1000));
	if (rc == 0)
		rc = jparam_duration(req, "minDuration", &q.min_duration_ns, &err);
	if (rc == 0)
		rc = jparam_duration(req, "maxDuration", &q.max_duration_ns, &err);
	if (rc == 0 && q.min_duration_ns != 0 && q.max_duration_ns != 0 && q.max_duration_ns < q.min_duration_ns)
		rc = tl_errf(&err, TL_EINVALID, "'maxDuration' should be greater than 'minDuration'");
	if (rc == 0)
		rc = jparam_uint(req, "limit", &limit, &found, &err);
	if (rc == 0 && limit > INT32_MAX)
		rc = tl_errf(&err, TL_EINVALID, "unable to parse param 'limit': %llu is too large",
		             (unsigned long long)limit);
	if (rc == 0)
		rc = parse_tags(req, &q, attrs, &h->arena, buf, &err);
	if (rc != 0) {
		if (rc == -ENOMEM)
			jaeger_fail(req, 500, "out of memory");
		else
			jaeger_fail(req, 400, "%s", err.msg);
		return;
	}
	q.service = service[0] != '\0' ? service : NULL;
	q.operation = operation[0] != '\0' ? operation : NULL;
	q.from_ns = start;
	if (have_end) /* end is a whole microsecond, included */
		q.to_ns = end <= UINT64_MAX - 1000 ? end + 1000 : UINT64_MAX;
	q.attrs = attrs;
	q.limit = limit != 0 ? (size_t)limit : JAEGER_LIMIT_DEFAULT;
	co_search_result res;
	rc = co_search(h->store, &q, &h->arena, &res, &err);
	if (rc != 0) {
		int status = jaeger_status(rc);
		jaeger_fail(req, status, "%s", err.msg[0] != '\0' ? err.msg : tl_strerror(rc));
		return;
	}
	json_t *data = json_array(), *errors = json_array();
	size_t total_spans = 0;
	rc = data != NULL && errors != NULL ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < res.n; i++)
		rc = add_trace(h, res.traces[i].trace_id, data, errors, &total_spans, false);
	if (rc != 0) {
		json_decref(data);
		json_decref(errors);
		jaeger_fail(req, 500, "%s", tl_strerror(rc));
		return;
	}
	respond_traces(req, data, errors);
}

/* GET /api/services */
static void handle_jaeger_services(co_http *h, tl_http_req *req)
{
	const char **names = NULL;
	size_t n = 0;
	int rc = co_index_services(h->store, &h->arena, &names, &n);
	if (rc != 0) {
		jaeger_fail(req, jaeger_status(rc), "reading the services: %s", tl_strerror(rc));
		return;
	}
	json_t *data = json_array();
	for (size_t i = 0; data != NULL && i < n; i++)
		if (json_array_append_new(data, json_string(names[i])) != 0) {
			json_decref(data);
			data = NULL;
		}
	respond_jaeger(req, 200, data != NULL ? co_jaeger_envelope(data, n, NULL) : NULL);
}

/*
 * GET /api/operations?service=S&spanKind=K ([{"name", "spanKind"}]) and
 * GET /api/services/{S}/operations (["name", ...], every kind, each name once).
 */
static void handle_jaeger_operations(co_http *h, tl_http_req *req, const char *path_service)
{
	char service[CO_INDEX_VALUE_MAX * 8], kind_s[32];
	bool found;
	tl_errmsg err = {{0}};
	int kind = -1;
	if (path_service != NULL) {
		if (tl_http_unescape(path_service, strlen(path_service), service, sizeof(service)) != 0) {
			jaeger_fail(req, 400, "unable to parse param 'service': longer than %zu bytes",
			            sizeof(service) - 1);
			return;
		}
	} else {
		if (jparam(req, "service", 0, service, sizeof(service), &found, &err) != 0 ||
		    jparam(req, "spanKind", 0, kind_s, sizeof(kind_s), &found, &err) != 0) {
			jaeger_fail(req, 400, "%s", err.msg);
			return;
		}
		if (service[0] == '\0') {
			jaeger_fail(req, 400, "parameter 'service' is required");
			return;
		}
		kind = co_jaeger_kind_from_name(kind_s);
		if (kind == -2) {
			jaeger_fail(
			        req, 400,
			        "unable to parse param 'spanKind': unsupported span kind \"%.31s\" (server, client, "
			        "producer, consumer or internal)",
			        kind_s);
			return;
		}
	}
	co_operation *ops = NULL;
	size_t n = 0;
	int rc = co_index_operations(h->store, service, kind, &h->arena, &ops, &n);
	if (rc != 0) {
		jaeger_fail(req, jaeger_status(rc), "reading the operations: %s", tl_strerror(rc));
		return;
	}
	json_t *data = json_array();
	for (size_t i = 0; data != NULL && i < n; i++) {
		json_t *e;
		if (path_service != NULL) {
			/* Sorted by name, then kind: one entry per name. */
			if (i > 0 && strcmp(ops[i].name, ops[i - 1].name) == 0)
				continue;
			e = json_string(ops[i].name);
		} else {
			e = json_pack("{s:s,s:s}", "name", ops[i].name, "spanKind", co_jaeger_kind_name(ops[i].kind));
		}
		if (json_array_append_new(data, e) != 0) {
			json_decref(data);
			data = NULL;
		}
	}
	respond_jaeger(req, 200, data != NULL ? co_jaeger_envelope(data, json_array_size(data), NULL) : NULL);
}

/* GET /api/dependencies?endTs=MS&lookback=MS[&service=S] */
static void handle_jaeger_dependencies(co_http *h, tl_http_req *req)
{
	tl_errmsg err = {{0}};
	bool have_end, have_lookback, found;
	uint64_t end = 0, lookback = (uint64_t)JAEGER_DEPS_LOOKBACK_MS * TL_NS_PER_MS;
	char service[CO_INDEX_VALUE_MAX * 8];
	if (jparam_time(req, "endTs", TL_NS_PER_MS, &end, &have_end, &err) != 0 ||
	    jparam_time(req, "lookback", TL_NS_PER_MS, &lookback, &have_lookback, &err) != 0 ||
	    jparam(req, "service", 0, service, sizeof(service), &found, &err) != 0) {
		jaeger_fail(req, 400, "%s", err.msg);
		return;
	}
	if (!have_end)
		end = tl_now_ns();
	if (!have_lookback)
		lookback = (uint64_t)JAEGER_DEPS_LOOKBACK_MS * TL_NS_PER_MS;
	uint64_t from = lookback < end ? end - lookback : 0;
	uint64_t to =
	        end <= UINT64_MAX - TL_NS_PER_MS ? end + TL_NS_PER_MS : UINT64_MAX; /* endTs's millisecond included */
	co_dependency *deps = NULL;
	size_t n = 0;
	bool partial = false;
	int rc = co_index_dependencies(h->store, from, to, 0, &h->arena, &deps, &n, &partial);
	if (rc != 0) {
		jaeger_fail(req, jaeger_status(rc), "reading the dependencies: %s", tl_strerror(rc));
		return;
	}
	json_t *data = json_array();
	for (size_t i = 0; data != NULL && i < n; i++) {
		if (service[0] != '\0' && strcmp(deps[i].parent, service) != 0 && strcmp(deps[i].child, service) != 0)
			continue;
		if (json_array_append_new(data, json_pack("{s:s,s:s,s:I}", "parent", deps[i].parent, "child",
		                                          deps[i].child, "callCount", (json_int_t)deps[i].calls)) !=
		    0) {
			json_decref(data);
			data = NULL;
		}
	}
	respond_jaeger(req, 200, data != NULL ? co_jaeger_envelope(data, json_array_size(data), NULL) : NULL);
}

/* Routes /api/... other than the Marquez lineage; false when path is not one of Jaeger's. */
static bool route_jaeger(co_http *h, tl_http_req *req, const char *path)
{
	static const char traces[] = "/api/traces/", services[] = "/api/services/", ops[] = "/operations";
	const char *svc = NULL;
	char svc_buf[CO_INDEX_VALUE_MAX * 8 * 3];
	int route = -1;
	if (strcmp(path, "/api/traces") == 0)
		route = R_JAEGER_SEARCH;
	else if (strncmp(path, traces, sizeof(traces) - 1) == 0 && strrchr(path, '/') == path + sizeof(traces) - 2)
		route = R_JAEGER_TRACE; /* one segment after /api/traces/ */
	else if (strcmp(path, "/api/services") == 0)
		route = R_JAEGER_SERVICES;
	else if (strcmp(path, "/api/operations") == 0)
		route = R_JAEGER_OPERATIONS;
	else if (strcmp(path, "/api/dependencies") == 0)
		route = R_JAEGER_DEPENDENCIES;
	else if (strncmp(path, services, sizeof(services) - 1) == 0) {
		const char *name = path + sizeof(services) - 1;
		size_t plen = strlen(name), olen = sizeof(ops) - 1;
		if (plen > olen && strcmp(name + plen - olen, ops) == 0 && plen - olen < sizeof(svc_buf) &&
		    memchr(name, '/', plen - olen) == NULL) {
			memcpy(svc_buf, name, plen - olen);
			svc_buf[plen - olen] = '\0';
			svc = svc_buf;
			route = R_JAEGER_OPERATIONS;
		}
	}
	if (route < 0)
		return false;
	h->requests[route]++;
	const char *method = tl_http_req_method(req);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const tl_http_header allow[] = {{"Allow", "GET, HEAD"}};
		json_t *o = co_jaeger_error(405, "use GET");
		char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		tl_http_respond(req, 405, "application/json", body != NULL ? body : "", body != NULL ? strlen(body) : 0,
		                allow, 1);
		free(body);
		return true;
	}
	tl_arena_reset(&h->arena);
	switch (route) {
	case R_JAEGER_SEARCH:
		handle_jaeger_search(h, req);
		break;
	case R_JAEGER_TRACE:
		handle_jaeger_trace(h, req, path + sizeof(traces) - 1);
		break;
	case R_JAEGER_SERVICES:
		handle_jaeger_services(h, req);
		break;
	case R_JAEGER_OPERATIONS:
		handle_jaeger_operations(h, req, svc);
		break;
	default:
		handle_jaeger_dependencies(h, req);
		break;
	}
	tl_arena_reset(&h->arena);
	return true;
}

static void on_request(tl_http_req *req, void *ud)
{
	co_http *h = ud;
	const char *method = tl_http_req_method(req);
	const char *path = tl_http_req_path(req);
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	if (strcmp(path, "/api/v1/lineage") == 0 || strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0) {
		if (!get) {
			static const tl_http_header allow[] = {{"Allow", "GET, HEAD"}};
			tl_http_respond(req, 405, "text/plain", "use GET\n", 8, allow, 1);
			return;
		}
	}
	if (strcmp(path, "/api/v1/lineage") == 0) {
		h->requests[R_LINEAGE]++;
		handle_lineage(h, req);
	} else if (strcmp(path, "/metrics") == 0) {
		h->requests[R_METRICS]++;
		handle_metrics(h, req);
	} else if (strcmp(path, "/healthz") == 0) {
		h->requests[R_HEALTHZ]++;
		tl_http_respond(req, 200, "text/plain", "ok\n", 3, NULL, 0);
	} else if (route_jaeger(h, req, path)) {
		/* answered */
	} else if (strncmp(path, "/api/", 5) == 0) {
		h->requests[R_OTHER]++;
		jaeger_fail(req, 404, "no route for %.16s %.200s", method, path);
	} else {
		h->requests[R_OTHER]++;
		char m[300];
		snprintf(m, sizeof(m), "no route for %.16s %.200s", method, path);
		respond_error(req, 404, m);
	}
}

/* ---- the thread ---- */

static void *run(void *arg)
{
	co_http *h = arg;
	uv_run(&h->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void on_stop(uv_async_t *a)
{
	co_http *h = a->data;
	tl_http_server_close(h->server, NULL, NULL);
	h->server = NULL;
	uv_close((uv_handle_t *)&h->stop, NULL);
}

int co_http_start(const co_http_opts *o, co_store *store, co_writer *writer, co_http **out, tl_errmsg *err)
{
	co_http *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return tl_errf(err, -ENOMEM, "http: out of memory");
	h->store = store;
	h->writer = writer;
	h->forward = o->forward;
	tl_arena_init(&h->arena, 64 * 1024, 256u << 20);
	tl_arena_set_retain(&h->arena, 1 << 20);
	tl_arena_init(&h->tarena, 64 * 1024, 256u << 20);
	tl_arena_set_retain(&h->tarena, 1 << 20);
	int rc = uv_loop_init(&h->loop);
	if (rc != 0) {
		tl_arena_fini(&h->arena);
		tl_arena_fini(&h->tarena);
		free(h);
		return tl_errf(err, rc, "http: %s", uv_strerror(rc));
	}
	uv_async_init(&h->loop, &h->stop, on_stop);
	h->stop.data = h;
	tl_http_limits lim;
	tl_http_limits_default(&lim);
	lim.max_body_bytes = lim.max_wire_body_bytes = 64 * 1024; /* the API takes no large bodies */
	rc = tl_http_server_new(&h->loop, &lim, on_request, h, &h->server);
	if (rc == 0)
		rc = tl_http_server_listen(h->server, o->listen);
	if (rc == 0) {
		rc = -pthread_create(&h->thread, NULL, run, h);
		h->started = rc == 0;
	}
	if (rc != 0) {
		tl_errf(err, rc, "http: listen %s: %s", o->listen, tl_strerror(rc));
		tl_http_server_close(h->server, NULL, NULL);
		uv_close((uv_handle_t *)&h->stop, NULL);
		uv_run(&h->loop, UV_RUN_DEFAULT);
		uv_loop_close(&h->loop);
		tl_arena_fini(&h->arena);
		tl_arena_fini(&h->tarena);
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

int co_http_port(const co_http *h)
{
	return tl_http_server_port(h->server);
}

void co_http_stop(co_http *h)
{
	if (h == NULL)
		return;
	if (h->started) {
		uv_async_send(&h->stop);
		pthread_join(h->thread, NULL);
	}
	uv_loop_close(&h->loop);
	tl_arena_fini(&h->arena);
	tl_arena_fini(&h->tarena);
	free(h);
}
