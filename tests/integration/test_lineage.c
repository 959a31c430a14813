/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lineage end to end on loopback: OpenLineage events POSTed to a real
 * threadline-agent (one at a time and in batches), bad events answered with
 * the field or the position that is wrong, good ones travelling the spool →
 * nng → collector path, and the graph read back through the collector's
 * Marquez-compatible HTTP API.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tl_error.h"
#include "tl_testkit.h"

#define HTTP_TIMEOUT_MS 15000
#define SCHEMA_2 "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
#define SCHEMA_1 "https://openlineage.io/spec/1-0-5/OpenLineage.json#/definitions/RunEvent"
#define PRODUCER "https://example.com/threadline-tests"

static tk_stack st;

static void setup(void)
{
	TK_STACK_START(&st, "lineage", NULL);
}

static void teardown(void)
{
	tk_stack_stop(&st, 10000);
}

#define must(cond, ...) TK_MUST(&st, cond, __VA_ARGS__)
#define stop_checked() TK_STACK_STOP_CHECKED(&st, 10000)

/* POSTs body to the agent; returns the parsed JSON answer (caller decrefs) and the status in *status. */
static json_t *post(const char *path, const char *body, int *status)
{
	tk_header h[1] = {{"Content-Type", "application/json"}};
	tk_http_resp r;
	int rc = tk_http(st.http_port, "POST", path, h, 1, body, strlen(body), HTTP_TIMEOUT_MS, &r);
	must(rc == 0, "POST %s: no answer: %s", path, tl_strerror(rc));
	*status = r.status;
	json_error_t je;
	json_t *j = json_loadb(r.body, r.body_len, 0, &je);
	must(j != NULL, "POST %s: %d with a body that is not JSON: %s", path, r.status, r.body);
	tk_http_resp_fini(&r);
	return j;
}

/* A RunEvent as a string (caller frees). Datasets as "ns|name" strings, NULL-terminated lists. */
static char *run_event(const char *schema, const char *type, const char *run_id, const char *job_ns,
                       const char *job_name, const char *const inputs[], const char *const outputs[])
{
	json_t *ins = json_array(), *outs = json_array();
	for (int k = 0; k < 2; k++) {
		const char *const *list = k == 0 ? inputs : outputs;
		for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
			const char *bar = strchr(list[i], '|');
			cr_assert_not_null(bar, "test bug: dataset '%s' is not ns|name", list[i]);
			json_array_append_new(k == 0 ? ins : outs, json_pack("{s:s%,s:s}", "namespace", list[i],
			                                                     (size_t)(bar - list[i]), "name", bar + 1));
		}
	}
	json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:{s:s},s:{s:s,s:s},s:o,s:o}", "eventType", type, "eventTime",
	                       "2026-11-20T10:00:00.123Z", "producer", PRODUCER, "schemaURL", schema, "run", "runId",
	                       run_id, "job", "namespace", job_ns, "name", job_name, "inputs", ins, "outputs", outs);
	cr_assert_not_null(ev);
	char *s = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	return s;
}

static double agent_metric(const char *series)
{
	double v = -1;
	must(tk_metric(st.http_port, series, &v) == 0, "agent /metrics lacks %s", series);
	return v;
}

/* Waits until the agent has delivered everything it accepted (its spool is empty). */
static void wait_delivered(void)
{
	char why[256] = "";
	must(tk_stack_wait_delivered(&st, 20000, why, sizeof(why)) == 0, "%s", why);
}

TestSuite(lineage, .init = setup, .fini = teardown, .timeout = 120);

Test(lineage, one_event_accepted_and_delivered)
{
	static const char *const in[] = {"s3://raw|events", NULL}, *const out[] = {"warehouse|features.users", NULL};
	char *ev = run_event(SCHEMA_2, "COMPLETE", "3f1d7a6e-2b5c-4d8e-9f01-23456789abcd", "airflow", "build_features",
	                     in, out);
	int status;
	json_t *j = post("/api/v1/lineage", ev, &status);
	must(status == 200, "a valid RunEvent: status %d", status);
	json_decref(j);
	free(ev);
	/* A 1.x event too. */
	ev = run_event(SCHEMA_1, "START", "3f1d7a6e-2b5c-4d8e-9f01-23456789abce", "airflow", "build_features", in, out);
	j = post("/api/v1/lineage", ev, &status);
	must(status == 200, "a valid 1.x RunEvent: status %d", status);
	json_decref(j);
	free(ev);
	wait_delivered();
	must(agent_metric("threadline_agent_lineage_events_total{outcome=\"accepted\"}") == 2, "events not counted");
	double stored = -1;
	must(tk_metric(st.api_port, "threadline_collector_store_entries{db=\"lineage_raw\"}", &stored) == 0 &&
	             stored == 2,
	     "the collector holds %.0f raw lineage events, expected 2", stored);
	stop_checked();
}

Test(lineage, bad_events_are_refused_with_the_reason)
{
	int status;
	json_t *j = post("/api/v1/lineage", "{\"eventType\": \"START\",, }", &status);
	const char *msg = json_string_value(json_object_get(j, "message"));
	must(status == 400 && msg != NULL && strstr(msg, "line 1") != NULL && strstr(msg, "column") != NULL,
	     "invalid JSON: status %d, message %s", status, msg ? msg : "(none)");
	json_decref(j);

	static const char *const none[] = {NULL};
	char *ev = run_event(SCHEMA_2, "START", "not-a-uuid", "airflow", "job", none, none);
	j = post("/api/v1/lineage", ev, &status);
	msg = json_string_value(json_object_get(j, "message"));
	must(status == 400 && msg != NULL && strstr(msg, "run.runId") != NULL, "bad runId: status %d, message %s",
	     status, msg ? msg : "(none)");
	json_decref(j);
	free(ev);

	ev = run_event(SCHEMA_2, "FINISHED", "3f1d7a6e-2b5c-4d8e-9f01-23456789abcd", "airflow", "job", none, none);
	j = post("/api/v1/lineage", ev, &status);
	msg = json_string_value(json_object_get(j, "message"));
	must(status == 400 && msg != NULL && strstr(msg, "eventType") != NULL, "bad eventType: status %d, message %s",
	     status, msg ? msg : "(none)");
	json_decref(j);
	free(ev);

	j = post("/api/v1/lineage",
	         "{\"eventTime\":\"2026-11-20T10:00:00Z\",\"run\":{\"runId\":\"3f1d7a6e-2b5c-4d8e-9f01-23456789abcd\"},"
	         "\"job\":{\"namespace\":\"a\",\"name\":\"b\"},\"schemaURL\":\"" SCHEMA_2 "\"}",
	         &status);
	msg = json_string_value(json_object_get(j, "message"));
	must(status == 400 && msg != NULL && strstr(msg, "producer") != NULL, "missing producer: status %d, message %s",
	     status, msg ? msg : "(none)");
	json_decref(j);

	tk_header h[1] = {{"Content-Type", "text/plain"}};
	tk_http_resp r;
	must(tk_http(st.http_port, "POST", "/api/v1/lineage", h, 1, "{}", 2, HTTP_TIMEOUT_MS, &r) == 0 &&
	             r.status == 415,
	     "text/plain: status %d", r.status);
	tk_http_resp_fini(&r);
	must(agent_metric("threadline_agent_lineage_events_total{outcome=\"accepted\"}") == 0, "a bad event accepted");
	stop_checked();
}

Test(lineage, a_batch_keeps_the_good_events_and_lists_the_bad_ones)
{
	static const char *const in[] = {"s3://raw|events", NULL}, *const out[] = {"warehouse|features.users", NULL};
	char *good1 = run_event(SCHEMA_2, "START", "3f1d7a6e-2b5c-4d8e-9f01-23456789abc1", "dbt", "model_a", in, out);
	char *bad = run_event(SCHEMA_2, "START", "zzz", "dbt", "model_b", in, out);
	char *good2 =
	        run_event(SCHEMA_2, "COMPLETE", "3f1d7a6e-2b5c-4d8e-9f01-23456789abc1", "dbt", "model_a", in, out);
	char body[8192];
	snprintf(body, sizeof(body), "[%s,%s,%s]", good1, bad, good2);
	int status;
	json_t *j = post("/api/v1/lineage/batch", body, &status);
	char *dump = json_dumps(j, JSON_COMPACT);
	must(status == 200, "a batch with 2 good events and 1 bad: status %d: %s", status, dump);
	json_t *sum = json_object_get(j, "summary");
	must(strcmp(json_string_value(json_object_get(j, "status")), "partial_success") == 0 &&
	             json_integer_value(json_object_get(sum, "received")) == 3 &&
	             json_integer_value(json_object_get(sum, "successful")) == 2 &&
	             json_integer_value(json_object_get(sum, "failed")) == 1 &&
	             json_integer_value(json_object_get(sum, "non_retriable")) == 1,
	     "batch summary: %s", dump);
	json_t *fe = json_object_get(j, "failed_events");
	must(json_array_size(fe) == 1, "one failed event: %s", dump);
	json_t *f0 = json_array_get(fe, 0);
	must(json_integer_value(json_object_get(f0, "index")) == 1 && json_is_false(json_object_get(f0, "retriable")) &&
	             strstr(json_string_value(json_object_get(f0, "reason")), "run.runId") != NULL,
	     "the bad event's entry: %s", dump);
	free(dump);
	json_decref(j);

	/* All bad: 400 with the same per-event list. */
	snprintf(body, sizeof(body), "[%s]", bad);
	j = post("/api/v1/lineage/batch", body, &status);
	must(status == 400 && strcmp(json_string_value(json_object_get(j, "status")), "failure") == 0,
	     "an all-bad batch: status %d", status);
	json_decref(j);
	j = post("/api/v1/lineage/batch", "{\"not\": \"an array\"}", &status);
	must(status == 400, "a batch that is not an array: status %d", status);
	json_decref(j);
	free(good1);
	free(bad);
	free(good2);
	wait_delivered();
	double stored = -1;
	must(tk_metric(st.api_port, "threadline_collector_store_entries{db=\"lineage_raw\"}", &stored) == 0 &&
	             stored == 2,
	     "the collector holds %.0f raw lineage events, expected 2", stored);
	stop_checked();
}

/* ---- the whole chain: fixtures through the agent, a prediction span, the CLI and the Marquez API ---- */

#define RUN_FEATURES "run:8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41"
#define RUN_TRAIN "run:3e9d7b1c-2a4f-4e6b-9c8d-5f1a2b3c4d5e"
#define RAW_CUSTOMERS "dataset:postgres://prod-db:5432:shop.public.customers"
#define RAW_ORDERS "dataset:postgres://prod-db:5432:shop.public.orders"
#define FEATURES "dataset:s3://acme-warehouse:features/churn_users"
#define PRED_TRACE "5b8efff798038103d269b633813fc60c"

static void post_fixture(const char *name)
{
	const char *dir = getenv("TL_OL_DATA");
	must(dir != NULL, "TL_OL_DATA is not set (run through meson test)");
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	size_t len;
	char *body = tk_read_file(path, &len);
	must(body != NULL, "cannot read %s", path);
	int status;
	json_t *j = post("/api/v1/lineage", body, &status);
	must(status == 200, "fixture %s: status %d", name, status);
	json_decref(j);
	free(body);
}

/* A prediction served by model churn:7, as the serving stage's OpenTelemetry SDK would send it. */
static void post_prediction_span(void)
{
	static const char body[] =
	        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
	        "\"stringValue\":"
	        "\"churn-serving\"}}]},\"scopeSpans\":[{\"spans\":[{\"traceId\":\"" PRED_TRACE "\",\"spanId\":"
	        "\"051581bf3cb55c13\",\"name\":\"predict\",\"kind\":2,\"startTimeUnixNano\":\"1763863200000000000\","
	        "\"endTimeUnixNano\":\"1763863200012000000\",\"attributes\":["
	        "{\"key\":\"ml.prediction.id\",\"value\":{\"stringValue\":\"p-42\"}},"
	        "{\"key\":\"ml.model.name\",\"value\":{\"stringValue\":\"churn\"}},"
	        "{\"key\":\"ml.model.version\",\"value\":{\"stringValue\":\"7\"}},"
	        "{\"key\":\"ml.input.digest\",\"value\":{\"stringValue\":\"sha256:0a1b2c\"}}]}]}]}]}";
	tk_header h[1] = {{"Content-Type", "application/json"}};
	tk_http_resp r;
	int rc = tk_http(st.http_port, "POST", "/v1/traces", h, 1, body, sizeof(body) - 1, HTTP_TIMEOUT_MS, &r);
	must(rc == 0 && r.status == 200, "the prediction span: %s, status %d: %s", tl_strerror(rc), r.status, r.body);
	tk_http_resp_fini(&r);
}

/* Runs the CLI against the stack's collector; returns its output (caller tk_output_fini's). */
static void cli(tk_output *o, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5)
{
	const char *bin = tk_bin(TK_ENV_CLI);
	must(bin != NULL, "TL_CLI is not set");
	char *argv[10] = {(char *)bin, "--collector", st.collector_url, (char *)a1, (char *)a2,
	                  (char *)a3,  (char *)a4,    (char *)a5,       NULL};
	int rc = tk_run(argv, 20000, o);
	must(rc == 0, "threadline %s %s: %s", a1, a2, tl_strerror(rc));
}

static bool str_in(json_t *arr, const char *want)
{
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (json_is_string(json_array_get(arr, i)) &&
		    strcmp(json_string_value(json_array_get(arr, i)), want) == 0)
			return true;
	return false;
}

static json_t *find_id(json_t *arr, const char *id)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		const char *v = json_string_value(json_object_get(json_array_get(arr, i), "id"));
		if (v != NULL && strcmp(v, id) == 0)
			return json_array_get(arr, i);
	}
	return NULL;
}

Test(lineage, a_prediction_explained_back_to_its_raw_data, .timeout = 180)
{
	static const char *const chain[] = {"01_airflow_dag_start.json",
	                                    "02_airflow_build_features_start.json",
	                                    "03_spark_build_features_start.json",
	                                    "04_spark_build_features_running.json",
	                                    "05_spark_build_features_complete.json",
	                                    "06_airflow_build_features_complete.json",
	                                    "07_train_churn_start.json",
	                                    "08_train_churn_complete.json",
	                                    "09_airflow_dag_complete.json"};
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
		post_fixture(chain[i]);
	post_prediction_span();
	wait_delivered();

	/* explain: prediction -> model churn:7 -> training run -> features #42 -> feature run -> raw data. */
	tk_output o;
	cli(&o, "lineage", "explain", "prediction:p-42", "--json", NULL);
	must(o.exit_code == 0, "lineage explain: exit %d: %s", o.exit_code, o.err);
	json_error_t je;
	json_t *ex = json_loads(o.out, 0, &je);
	must(ex != NULL, "lineage explain --json printed invalid JSON: %s", je.text);
	char *dump = json_dumps(ex, JSON_COMPACT);
	json_t *pred = json_object_get(ex, "prediction");
	must(strcmp(json_string_value(json_object_get(pred, "trace_id")), PRED_TRACE) == 0, "prediction trace: %s",
	     dump);
	must(strcmp(json_string_value(json_object_get(pred, "model")), "model:churn:7") == 0, "prediction model: %s",
	     dump);
	json_t *runs = json_object_get(ex, "runs");
	json_t *train = find_id(runs, RUN_TRAIN), *feat = find_id(runs, RUN_FEATURES);
	must(train != NULL && feat != NULL, "explain lacks the training or the feature run: %s", dump);
	must(strcmp(json_string_value(json_object_get(train, "state")), "COMPLETE") == 0 &&
	             strcmp(json_string_value(json_object_get(feat, "state")), "COMPLETE") == 0,
	     "run states: %s", dump);
	must(json_integer_value(json_object_get(train, "distance")) <
	             json_integer_value(json_object_get(feat, "distance")),
	     "runs are not nearest first: %s", dump);
	json_t *repro = json_object_get(train, "reproducibility");
	must(json_string_value(json_object_get(repro, "code_version")) != NULL &&
	             json_is_object(json_object_get(repro, "parameters")) &&
	             json_is_object(json_object_get(repro, "seeds")),
	     "the training run's reproducibility record: %s", dump);
	json_t *raw = json_object_get(ex, "raw_inputs");
	must(str_in(raw, RAW_CUSTOMERS) && str_in(raw, RAW_ORDERS), "raw inputs: %s", dump);
	must(json_array_size(json_object_get(ex, "problems")) == 0, "a healthy chain has problems: %s", dump);
	free(dump);
	json_decref(ex);
	tk_output_fini(&o);

	/* The text view and the DOT view of the upstream graph. */
	cli(&o, "lineage", "explain", "prediction:p-42", NULL, NULL);
	must(o.exit_code == 0 && strstr(o.out, RUN_TRAIN) != NULL && strstr(o.out, RAW_ORDERS) != NULL,
	     "lineage explain (text): exit %d:\n%s", o.exit_code, o.out);
	tk_output_fini(&o);
	cli(&o, "lineage", "show", "prediction:p-42", "--upstream", "--format=dot");
	must(o.exit_code == 0 && strncmp(o.out, "digraph", 7) == 0 && strstr(o.out, RAW_CUSTOMERS) != NULL &&
	             strstr(o.out, "model:churn:7") != NULL,
	     "lineage show --format=dot: exit %d:\n%s%s", o.exit_code, o.out, o.err);
	tk_output_fini(&o);

	/* The Marquez-compatible API: dataset -> job -> dataset around the features. */
	tk_http_resp r;
	int rc = tk_http(st.api_port, "GET", "/api/v1/lineage?nodeId=" FEATURES "&depth=5", NULL, 0, NULL, 0,
	                 HTTP_TIMEOUT_MS, &r);
	must(rc == 0 && r.status == 200, "Marquez lineage: %s, status %d: %s", tl_strerror(rc), r.status, r.body);
	json_t *mg = json_loadb(r.body, r.body_len, 0, &je);
	json_t *graph = json_object_get(mg, "graph");
	must(find_id(graph, FEATURES) != NULL && find_id(graph, "job:spark-prod:build_churn_features") != NULL &&
	             find_id(graph, "job:ml:train_churn") != NULL && find_id(graph, RAW_ORDERS) != NULL,
	     "Marquez graph lacks a node: %s", r.body);
	json_t *fnode = find_id(graph, FEATURES);
	must(json_array_size(json_object_get(fnode, "inEdges")) >= 1 &&
	             json_array_size(json_object_get(fnode, "outEdges")) >= 1,
	     "the features node has no in/out edges: %s", r.body);
	json_decref(mg);
	tk_http_resp_fini(&r);
	rc = tk_http(st.api_port, "GET", "/api/v1/lineage?nodeId=dataset:no:such", NULL, 0, NULL, 0, HTTP_TIMEOUT_MS,
	             &r);
	must(rc == 0 && r.status == 404, "Marquez lineage of an unknown node: status %d", r.status);
	tk_http_resp_fini(&r);

	/* The next night the feature job fails: the job's latest run, upstream of the features, says so. */
	post_fixture("fail_spark_build_features_start.json");
	post_fixture("fail_spark_build_features_fail.json");
	wait_delivered();
	cli(&o, "lineage", "show", FEATURES, "--upstream", "--format=json");
	must(o.exit_code == 0, "lineage show after the failure: exit %d: %s", o.exit_code, o.err);
	json_t *sh = json_loads(o.out, 0, &je);
	json_t *fail = find_id(json_object_get(sh, "nodes"), "run:c4b8e2d0-7f3a-4d1e-8b6c-9a0e1f2d3c47");
	must(fail != NULL && strcmp(json_string_value(json_object_get(fail, "state")), "FAIL") == 0 &&
	             json_string_value(json_object_get(fail, "error")) != NULL,
	     "the failed run upstream of the features: %s", o.out);
	json_decref(sh);
	tk_output_fini(&o);
	cli(&o, "lineage", "show", "dataset:no:such", NULL, NULL);
	must(o.exit_code == 1 && strstr(o.err, "not found") != NULL, "unknown node: exit %d: %s", o.exit_code, o.err);
	tk_output_fini(&o);
	stop_checked();
}
