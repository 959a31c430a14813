/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's HTTP API; see co_http.h. One thread runs a libuv loop
 * with a tl_http server; co_http_stop wakes it with a uv_async, closes the
 * server and joins the thread.
 */
#include "co_http.h"

#include "co_query.h"
#include "tl_arena.h"
#include "tl_buf.h"
#include "tl_http.h"
#include "tl_pb.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MARQUEZ_DEFAULT_DEPTH 20
#define MARQUEZ_MAX_DEPTH 100

struct co_http {
	uv_loop_t loop;
	uv_async_t stop;
	tl_http_server *server;
	co_store *store;
	co_writer *writer;
	tl_arena arena; /* query answers; used on the loop thread only */
	pthread_t thread;
	bool started;
	uint64_t requests[4]; /* by route: lineage, metrics, healthz, other */
};

enum { R_LINEAGE, R_METRICS, R_HEALTHZ, R_OTHER };

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
	json_t *data = job ? json_pack("{s:O,s:s,s:s,s:s,s:s,s:[],s:[],s:n}", "id", nn, "type", "BATCH", "name", name,
	                               "simpleName", name, "namespace", ns, "inputs", "outputs", "latestRun")
	                   : json_pack("{s:O,s:s,s:s,s:s,s:s,s:s,s:[],s:n}", "id", nn, "type", "DB_TABLE", "name", name,
	                               "physicalName", name, "namespace", ns, "sourceName", ns, "fields", "facets");
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
		/* A run tells its job's latest run (the document lists runs nearest first; keep the newest start). */
		if (strcmp(str_of(n, "type"), "run") == 0) {
			json_t *data = json_object_get(m, "data");
			json_t *lr = json_object_get(data, "latestRun");
			const char *started = str_of(n, "started_at");
			if (!json_is_object(lr) || strcmp(started, str_of(lr, "startedAt")) > 0) {
				const char *rid = str_of(n, "id");
				json_object_set_new(data, "latestRun",
				                    json_pack("{s:s,s:s,s:s,s:s}", "id",
				                              strncmp(rid, "run:", 4) ? rid : rid + 4, "state",
				                              marquez_state(str_of(n, "state")), "startedAt", started,
				                              "endedAt", str_of(n, "ended_at")));
			}
		}
		if (strcmp(str_of(n, "type"), "dataset") == 0 && json_is_object(json_object_get(n, "facets")))
			json_object_set(json_object_get(m, "data"), "facets", json_object_get(n, "facets"));
	}
	for (size_t i = 0; i < json_array_size(edges); i++) {
		json_t *e = json_array_get(edges, i);
		const char *type = str_of(e, "type");
		if (strcmp(type, "input") != 0 && strcmp(type, "output") != 0)
			continue;
		bool fj, tj;
		const char *from = mid(byid, str_of(e, "from"), &fj), *to = mid(byid, str_of(e, "to"), &tj);
		if (from != NULL && to != NULL && fj != tj)
			medge(graph, from, fj, to, tj);
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
	metric(&b, "threadline_collector_http_requests_total", "counter", "HTTP API requests, by route.");
	static const char *const routes[] = {"lineage", "metrics", "healthz", "other"};
	for (int i = 0; i < 4; i++)
		tl_buf_printf(&b, "threadline_collector_http_requests_total{route=\"%s\"} %llu\n", routes[i],
		              (unsigned long long)h->requests[i]);
	tl_http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len, NULL, 0);
	tl_buf_fini(&b);
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
	tl_arena_init(&h->arena, 64 * 1024, 256u << 20);
	tl_arena_set_retain(&h->arena, 1 << 20);
	int rc = uv_loop_init(&h->loop);
	if (rc != 0) {
		tl_arena_fini(&h->arena);
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
	free(h);
}
