/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collector's Marquez-compatible lineage shape (co_http_marquez_graph):
 * a `lineage show` document with runs, a model and a prediction becomes
 * Marquez's job/dataset graph, with runs folded into their jobs and every
 * edge listed on both of its ends.
 */
#include <criterion/criterion.h>

#include "co_http.h"

#include <jansson.h>
#include <string.h>

static const char SHOW[] =
        "{\"root\":\"prediction:p-1\",\"direction\":\"upstream\",\"depth\":5,\"at\":null,\"truncated\":false,"
        "\"nodes\":["
        "{\"id\":\"prediction:p-1\",\"type\":\"prediction\",\"distance\":0,\"trace_id\":\"ab\",\"model\":\"model:churn:"
        "7\"},"
        "{\"id\":\"model:churn:7\",\"type\":\"model\",\"distance\":1,\"name\":\"churn\",\"version\":\"7\","
        "\"dataset\":\"dataset:model://registry:churn\"},"
        "{\"id\":\"run:11111111-1111-4111-8111-111111111111\",\"type\":\"run\",\"distance\":2,"
        "\"job\":\"job:ml:train_churn\",\"state\":\"COMPLETE\",\"started_at\":\"2026-11-20T10:00:00.000000000Z\","
        "\"ended_at\":\"2026-11-20T11:00:00.000000000Z\"},"
        "{\"id\":\"dataset:postgres://db:5432:features.users\",\"type\":\"dataset\",\"distance\":3,"
        "\"namespace\":\"postgres://"
        "db:5432\",\"name\":\"features.users\",\"first_seen\":\"2026-11-01T00:00:00.000000000Z\","
        "\"facets\":{\"schema\":{\"fields\":[{\"name\":\"user_id\",\"type\":\"long\"}]}}},"
        "{\"id\":\"run:22222222-2222-4222-8222-222222222222\",\"type\":\"run\",\"distance\":4,"
        "\"job\":\"job:airflow:build_features\",\"job_version\":\"job:airflow:build_features#3f71\",\"duration_ms\":"
        "300000,"
        "\"state\":\"FAIL\",\"started_at\":\"2026-11-19T10:00:00.000000000Z\","
        "\"ended_at\":\"2026-11-19T10:05:00.000000000Z\",\"error\":\"NaN rows\"},"
        "{\"id\":\"dataset:s3://raw:events\",\"type\":\"dataset\",\"distance\":5,\"namespace\":\"s3://raw\","
        "\"name\":\"events\"}],"
        "\"edges\":["
        "{\"from\":\"model:churn:7\",\"to\":\"prediction:p-1\",\"type\":\"served\"},"
        "{\"from\":\"run:11111111-1111-4111-8111-111111111111\",\"to\":\"model:churn:7\",\"type\":\"output\"},"
        "{\"from\":\"dataset:postgres://db:5432:features.users\",\"to\":\"run:11111111-1111-4111-8111-111111111111\","
        "\"type\":\"input\"},"
        "{\"from\":\"run:22222222-2222-4222-8222-222222222222\",\"to\":\"dataset:postgres://db:5432:features.users\","
        "\"type\":\"output\"},"
        "{\"from\":\"dataset:s3://raw:events\",\"to\":\"run:22222222-2222-4222-8222-222222222222\",\"type\":\"input\"}"
        "]}";

static json_t *node(json_t *graph, const char *id)
{
	json_t *arr = json_object_get(graph, "graph");
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(arr, i), "id")), id) == 0)
			return json_array_get(arr, i);
	return NULL;
}

static bool has_edge(json_t *n, const char *list, const char *origin, const char *dest)
{
	json_t *a = json_object_get(n, list);
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);
		if (strcmp(json_string_value(json_object_get(e, "origin")), origin) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "destination")), dest) == 0)
			return true;
	}
	return false;
}

Test(marquez, runs_fold_into_jobs_and_edges_appear_on_both_ends)
{
	json_error_t je;
	json_t *show = json_loads(SHOW, 0, &je);
	cr_assert_not_null(show, "test document: %s", je.text);
	json_t *g = co_http_marquez_graph(show);
	cr_assert_not_null(g);
	cr_assert_eq(json_array_size(json_object_get(g, "graph")), 5, "2 jobs + 3 datasets (the model as its dataset)");
	cr_assert_null(node(g, "prediction:p-1"), "predictions are not in Marquez's model");
	cr_assert_null(node(g, "run:11111111-1111-4111-8111-111111111111"), "runs fold into their jobs");

	json_t *train = node(g, "job:ml:train_churn"), *feat = node(g, "job:airflow:build_features");
	json_t *users = node(g, "dataset:postgres://db:5432:features.users"), *raw = node(g, "dataset:s3://raw:events");
	json_t *model = node(g, "dataset:model://registry:churn");
	cr_assert(train && feat && users && raw && model);
	cr_assert_str_eq(json_string_value(json_object_get(train, "type")), "JOB");
	cr_assert_str_eq(json_string_value(json_object_get(users, "type")), "DATASET");

	/* dataset -> job -> dataset, on both ends. */
	cr_assert(has_edge(raw, "outEdges", "dataset:s3://raw:events", "job:airflow:build_features"));
	cr_assert(has_edge(feat, "inEdges", "dataset:s3://raw:events", "job:airflow:build_features"));
	cr_assert(
	        has_edge(feat, "outEdges", "job:airflow:build_features", "dataset:postgres://db:5432:features.users"));
	cr_assert(
	        has_edge(users, "inEdges", "job:airflow:build_features", "dataset:postgres://db:5432:features.users"));
	cr_assert(has_edge(users, "outEdges", "dataset:postgres://db:5432:features.users", "job:ml:train_churn"));
	cr_assert(has_edge(train, "outEdges", "job:ml:train_churn", "dataset:model://registry:churn"));
	cr_assert(has_edge(model, "inEdges", "job:ml:train_churn", "dataset:model://registry:churn"));

	/* Namespace and name split at the last ':' (namespaces hold ports). */
	json_t *uid = json_object_get(json_object_get(users, "data"), "id");
	cr_assert_str_eq(json_string_value(json_object_get(uid, "namespace")), "postgres://db:5432");
	cr_assert_str_eq(json_string_value(json_object_get(uid, "name")), "features.users");
	cr_assert_not_null(json_object_get(json_object_get(json_object_get(users, "data"), "facets"), "schema"),
	                   "dataset facets carried over");

	/* A job's latest run in Marquez's states; its inputs and outputs. */
	/* Marquez's web UI types (LineageDataset, LineageJob, Run): every field is there. */
	json_t *ud = json_object_get(users, "data"), *fd = json_object_get(feat, "data");
	const char *dkeys[] = {"id",        "type",           "name",       "physicalName", "createdAt",
	                       "updatedAt", "namespace",      "sourceName", "fields",       "facets",
	                       "tags",      "lastModifiedAt", "description"};
	for (size_t i = 0; i < sizeof(dkeys) / sizeof(dkeys[0]); i++)
		cr_assert_not_null(json_object_get(ud, dkeys[i]), "dataset data.%s", dkeys[i]);
	const char *jkeys[] = {"id",         "type",      "name",          "createdAt",     "updatedAt",
	                       "namespace",  "inputs",    "outputs",       "location",      "description",
	                       "simpleName", "latestRun", "parentJobName", "parentJobUuid", "tags"};
	for (size_t i = 0; i < sizeof(jkeys) / sizeof(jkeys[0]); i++)
		cr_assert_not_null(json_object_get(fd, jkeys[i]), "job data.%s", jkeys[i]);
	cr_assert_str_eq(json_string_value(json_object_get(ud, "createdAt")), "2026-11-01T00:00:00.000000000Z");
	cr_assert_str_eq(json_string_value(json_object_get(ud, "lastModifiedAt")), "2026-11-19T10:05:00.000000000Z",
	                 "when the run that wrote it ended");
	json_t *f0 = json_array_get(json_object_get(ud, "fields"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(f0, "name")), "user_id", "fields from the schema facet");
	cr_assert_str_eq(json_string_value(json_object_get(f0, "type")), "long");
	cr_assert_str_eq(json_string_value(json_object_get(fd, "updatedAt")), "2026-11-19T10:05:00.000000000Z");

	json_t *lr = json_object_get(json_object_get(feat, "data"), "latestRun");
	json_t *jv = json_object_get(lr, "jobVersion");
	cr_assert_str_eq(json_string_value(json_object_get(jv, "namespace")), "airflow");
	cr_assert_str_eq(json_string_value(json_object_get(jv, "name")), "build_features");
	cr_assert_str_eq(json_string_value(json_object_get(jv, "version")), "3f71");
	cr_assert_eq(json_integer_value(json_object_get(lr, "durationMs")), 300000);
	cr_assert(json_is_object(json_object_get(lr, "args")) && json_is_object(json_object_get(lr, "facets")));
	cr_assert_str_eq(json_string_value(json_object_get(lr, "state")), "FAILED");
	cr_assert_str_eq(json_string_value(json_object_get(lr, "id")), "22222222-2222-4222-8222-222222222222");
	json_t *outs = json_object_get(json_object_get(train, "data"), "outputs");
	cr_assert_eq(json_array_size(outs), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(outs, 0), "namespace")), "model://registry");
	json_t *ins = json_object_get(json_object_get(train, "data"), "inputs");
	cr_assert_eq(json_array_size(ins), 1);
	json_decref(g);
	json_decref(show);
}

Test(marquez, an_empty_document_gives_an_empty_graph)
{
	json_t *show = json_pack("{s:s,s:[],s:[]}", "root", "dataset:a:b", "nodes", "edges");
	json_t *g = co_http_marquez_graph(show);
	cr_assert_not_null(g);
	cr_assert(json_is_array(json_object_get(g, "graph")));
	cr_assert_eq(json_array_size(json_object_get(g, "graph")), 0);
	json_decref(g);
	json_decref(show);
}

Test(marquez, a_job_version_stands_for_its_job)
{
	/* lineage show job:ml:train#9f1c2ab --downstream: the version, its run and what the run wrote. */
	json_t *show = json_loads(
	        "{\"root\":\"job:ml:train#9f1c2ab\",\"nodes\":["
	        "{\"id\":\"job:ml:train#9f1c2ab\",\"type\":\"job\",\"distance\":0,\"namespace\":\"ml\",\"name\":"
	        "\"train\","
	        "\"version\":\"9f1c2ab\"},"
	        "{\"id\":\"run:11111111-1111-4111-8111-111111111111\",\"type\":\"run\",\"distance\":1,\"job\":"
	        "\"job:ml:train\",\"job_version\":\"job:ml:train#9f1c2ab\",\"state\":\"COMPLETE\",\"started_at\":"
	        "\"2026-11-20T10:00:00.000000000Z\",\"ended_at\":\"2026-11-20T11:00:00.000000000Z\"},"
	        "{\"id\":\"dataset:wh:scores\",\"type\":\"dataset\",\"distance\":2,\"namespace\":\"wh\",\"name\":"
	        "\"scores\"}],\"edges\":["
	        "{\"from\":\"job:ml:train#9f1c2ab\",\"to\":\"run:11111111-1111-4111-8111-111111111111\",\"type\":"
	        "\"run\"},"
	        "{\"from\":\"run:11111111-1111-4111-8111-111111111111\",\"to\":\"dataset:wh:scores\",\"type\":"
	        "\"output\"}"
	        "]}",
	        0, NULL);
	cr_assert_not_null(show);
	json_t *g = co_http_marquez_graph(show);
	cr_assert_not_null(g);
	cr_assert_eq(json_array_size(json_object_get(g, "graph")), 2, "one job and one dataset");
	cr_assert_null(node(g, "job:ml:train#9f1c2ab"));
	json_t *job = node(g, "job:ml:train");
	cr_assert_not_null(job);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(job, "data"), "name")), "train");
	cr_assert(has_edge(job, "outEdges", "job:ml:train", "dataset:wh:scores"));
	json_decref(g);
	json_decref(show);
}
