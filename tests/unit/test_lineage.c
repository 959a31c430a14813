/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lineage graph on a real LMDB in a temporary directory, fed the way the
 * collector feeds it: batches of OpenLineage records (written from the spec
 * as the Airflow, Spark and dbt integrations emit them) and spans with ml.*
 * and lineage.* attributes, through co_store_commit. Then the answers of
 * lineage show and lineage explain, read back as JSON: the chain raw data ->
 * feature run -> features -> training run -> model -> prediction, time
 * travel, state history, parent runs, dedupe, 1.x and 2.x events, the node
 * cap, the id helpers, and spans and OpenLineage events describing the same
 * run giving the same graph.
 */
#include "co_lineage.h"
#include "co_query.h"
#include "co_store.h"
#include "store_fixture.h"
#include "tl_arena.h"
#include "tl_pb.h"
#include "tl_time.h"

#include <criterion/criterion.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixtures ---- */

static void setup(void)
{
	store_fixture_setup("lineage", 64 << 10);
}

static void teardown(void)
{
	store_fixture_teardown();
}

TestSuite(lineage, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t T(const char *rfc3339)
{
	uint64_t ns;
	cr_assert_eq(tl_parse_time(rfc3339, 0, &ns), 0, "time %s", rfc3339);
	return ns;
}

/* ---- OpenLineage events ---- */

#define SCHEMA2 "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
#define SCHEMA1 "https://openlineage.io/spec/1-0-5/OpenLineage.json#/definitions/RunEvent"
#define AIRFLOW "https://github.com/apache/airflow/tree/providers-openlineage/1.8.0"
#define SPARK "https://github.com/OpenLineage/OpenLineage/tree/1.9.1/integration/spark"
#define DBT "https://github.com/OpenLineage/OpenLineage/tree/1.9.1/integration/dbt"
#define TRAINER "https://github.com/threadline/examples/trainer"

#define R_DAG "0190e4a2-8a4b-7c6e-9d1f-00000000d0a0"
#define R_FEAT "0190e4a2-8a4b-7c6e-9d1f-0000000fea71"
#define R_FEAT_FAIL "0190e4a2-8a4b-7c6e-9d1f-0000000fa11d"
#define R_TRAIN "0190e4a2-8a4b-7c6e-9d1f-00000007a1a1"
#define R_SPAN "0190e4a2-8a4b-7c6e-9d1f-00000005ba17"

#define RAW_EVENTS "dataset:s3://raw-bucket:events/2026-11-23"
#define RAW_USERS "dataset:postgres://db.internal:5432:public.users"
#define FEATURES "dataset:warehouse:features.users"

static ProtobufCBinaryData ev(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static ProtobufCBinaryData ev(const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	cr_assert(n > 0);
	char *c = tl_arena_alloc(&A, (size_t)n + 1);
	cr_assert_not_null(c);
	vsnprintf(c, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return (ProtobufCBinaryData){(size_t)n, (uint8_t *)c};
}

static const char PARENT_FACET[] =
        "\"parent\":{\"_producer\":\"" AIRFLOW "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/"
        "ParentRunFacet.json#/$defs/ParentRunFacet\",\"run\":{\"runId\":\"" R_DAG "\"},"
        "\"job\":{\"namespace\":\"airflow-prod\",\"name\":\"features_dag\"}}";

static const char RAW_INPUTS[] =
        "[{\"namespace\":\"s3://raw-bucket\",\"name\":\"events/2026-11-23\",\"facets\":{"
        "\"schema\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-1-1/"
        "SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet\",\"fields\":[{\"name\":\"user_id\",\"type\":\"long\"},"
        "{\"name\":\"event\",\"type\":\"string\"},{\"name\":\"ts\",\"type\":\"timestamp\"}]},"
        "\"dataSource\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/"
        "DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet\",\"name\":\"s3://raw-bucket\",\"uri\":"
        "\"s3://raw-bucket\"}}},"
        "{\"namespace\":\"postgres://db.internal:5432\",\"name\":\"public.users\",\"facets\":{},"
        "\"inputFacets\":{\"dataQualityMetrics\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":"
        "\"https://openlineage.io/spec/facets/1-0-2/DataQualityMetricsInputDatasetFacet.json#/$defs/"
        "DataQualityMetricsInputDatasetFacet\",\"rowCount\":120345,\"bytes\":9876543,\"columnMetrics\":{"
        "\"user_id\":{\"nullCount\":0,\"distinctCount\":120345}}}}}]";

static const char FEATURES_OUT[] =
        "[{\"namespace\":\"warehouse\",\"name\":\"features.users\",\"facets\":{"
        "\"version\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/"
        "DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet\",\"datasetVersion\":\"v42\"},"
        "\"schema\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-1-1/"
        "SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet\",\"fields\":[{\"name\":\"user_id\",\"type\":\"long\"},"
        "{\"name\":\"events_7d\",\"type\":\"int\"}]},"
        "\"columnLineage\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-2-0/"
        "ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet\",\"fields\":{\"events_7d\":{"
        "\"inputFields\":[{\"namespace\":\"s3://raw-bucket\",\"name\":\"events/2026-11-23\",\"field\":\"event\"}]}}}},"
        "\"outputFacets\":{\"outputStatistics\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":"
        "\"https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/"
        "OutputStatisticsOutputDatasetFacet\",\"rowCount\":120345,\"size\":4400123}}}]";

/* The Airflow DAG run, then its feature task run (Spark inside), which reads raw data and writes features. */
static void feature_events(ProtobufCBinaryData *out, size_t *n)
{
	out[(*n)++] =
	        ev("{\"eventType\":\"START\",\"eventTime\":\"2026-11-23T09:59:00.000Z\",\"producer\":\"" AIRFLOW
	           "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_DAG "\",\"facets\":{"
	           "\"nominalTime\":{\"_producer\":\"" AIRFLOW "\",\"_schemaURL\":\"https://openlineage.io/spec/"
	           "facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet\",\"nominalStartTime\":"
	           "\"2026-11-23T09:00:00Z\"}}},\"job\":{\"namespace\":\"airflow-prod\",\"name\":\"features_dag\","
	           "\"facets\":{}},\"inputs\":[],\"outputs\":[]}");
	out[(*n)++] =
	        ev("{\"eventType\":\"START\",\"eventTime\":\"2026-11-23T10:00:00.000Z\",\"producer\":\"" AIRFLOW
	           "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT "\",\"facets\":{%s}},"
	           "\"job\":{\"namespace\":\"airflow-prod\",\"name\":\"features_dag.build_user_features\","
	           "\"facets\":{\"jobType\":{\"_producer\":\"" AIRFLOW "\",\"_schemaURL\":\"https://openlineage.io/"
	           "spec/facets/2-0-2/JobTypeJobFacet.json#/$defs/JobTypeJobFacet\",\"processingType\":\"BATCH\","
	           "\"integration\":\"AIRFLOW\",\"jobType\":\"TASK\"}}},\"inputs\":%s,\"outputs\":[]}",
	           PARENT_FACET, RAW_INPUTS);
	out[(*n)++] =
	        ev("{\"eventType\":\"RUNNING\",\"eventTime\":\"2026-11-23T10:02:00.000Z\",\"producer\":\"" SPARK
	           "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT "\",\"facets\":{%s,"
	           "\"processing_engine\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/spec/"
	           "facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet\",\"version\":"
	           "\"3.5.1\",\"name\":\"spark\",\"openlineageAdapterVersion\":\"1.9.1\"}}},"
	           "\"job\":{\"namespace\":\"airflow-prod\",\"name\":\"features_dag.build_user_features\"},"
	           "\"inputs\":%s,\"outputs\":[]}",
	           PARENT_FACET, RAW_INPUTS);
	out[(*n)++] =
	        ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-23T10:05:00.000Z\",\"producer\":\"" AIRFLOW
	           "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT "\",\"facets\":{%s}},"
	           "\"job\":{\"namespace\":\"airflow-prod\",\"name\":\"features_dag.build_user_features\"},"
	           "\"inputs\":%s,\"outputs\":%s}",
	           PARENT_FACET, RAW_INPUTS, FEATURES_OUT);
}

/* The training run: reads features v42, writes model churn version 7. */
static void training_events(ProtobufCBinaryData *out, size_t *n, const char *input_version)
{
	char in[512];
	if (input_version != NULL)
		snprintf(in, sizeof(in),
		         "[{\"namespace\":\"warehouse\",\"name\":\"features.users\",\"facets\":{\"version\":{"
		         "\"_producer\":\"" TRAINER "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/"
		         "DatasetVersionDatasetFacet.json#/$defs/"
		         "DatasetVersionDatasetFacet\",\"datasetVersion\":\"%s\"}}}]",
		         input_version);
	else
		snprintf(in, sizeof(in), "[{\"namespace\":\"warehouse\",\"name\":\"features.users\"}]");
	static const char job[] =
	        "\"job\":{\"namespace\":\"ml\",\"name\":\"train_churn\",\"facets\":{\"sourceCodeLocation\":{"
	        "\"_producer\":\"" TRAINER "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/"
	        "SourceCodeLocationJobFacet.json#/$defs/SourceCodeLocationJobFacet\",\"type\":\"git\",\"url\":"
	        "\"https://github.com/acme/churn\",\"path\":\"train/train.py\",\"version\":\"9f1c2ab\"}}}";
	static const char facets[] =
	        "\"facets\":{\"threadline_params\":{\"_producer\":\"" TRAINER
	        "\",\"_schemaURL\":\"https://threadline.dev/"
	        "facets/ParamsRunFacet.json\",\"learning_rate\":0.1,\"max_depth\":6,\"random_seed\":42},"
	        "\"environmentVariables\":{\"_producer\":\"" TRAINER "\",\"_schemaURL\":\"https://openlineage.io/spec/"
	        "facets/1-0-0/EnvironmentVariablesRunFacet.json#/$defs/EnvironmentVariablesRunFacet\","
	        "\"environmentVariables\":[{\"name\":\"CUDA_VISIBLE_DEVICES\",\"value\":\"0\"},{\"name\":"
	        "\"PYTHONHASHSEED\",\"value\":\"0\"}]}}";
	out[(*n)++] = ev("{\"eventType\":\"START\",\"eventTime\":\"2026-11-23T11:00:00.000Z\",\"producer\":\"" TRAINER
	                 "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_TRAIN "\",%s},%s,"
	                 "\"inputs\":%s,\"outputs\":[]}",
	                 facets, job, in);
	out[(*n)++] =
	        ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-23T12:00:00.000Z\",\"producer\":\"" TRAINER
	           "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_TRAIN "\",%s},%s,"
	           "\"inputs\":%s,\"outputs\":[{\"namespace\":\"model://registry\",\"name\":\"churn\","
	           "\"facets\":{\"threadline_model\":{\"_producer\":\"" TRAINER "\",\"_schemaURL\":"
	           "\"https://threadline.dev/facets/ModelDatasetFacet.json\",\"name\":\"churn\",\"version\":\"7\","
	           "\"digest\":\"sha256:ab12cd34\"}}}]}",
	           facets, job, in);
}

/* ---- spans ---- */

static tl_pb_keyvalue *kv_str(const char *k, const char *v)
{
	tl_pb_keyvalue *kv = az(sizeof(*kv));
	opentelemetry__proto__common__v1__key_value__init(kv);
	kv->key = as(k);
	kv->value = az(sizeof(tl_pb_anyvalue));
	opentelemetry__proto__common__v1__any_value__init(kv->value);
	kv->value->value_case = TL_PB_ANY_STRING;
	kv->value->string_value = as(v);
	return kv;
}

static tl_pb_keyvalue *kv_int(const char *k, int64_t v)
{
	tl_pb_keyvalue *kv = kv_str(k, "");
	kv->value->value_case = TL_PB_ANY_INT;
	kv->value->int_value = v;
	return kv;
}

/* A string array attribute from a NULL-terminated list. */
static tl_pb_keyvalue *kv_arr(const char *k, const char *const *vals)
{
	tl_pb_keyvalue *kv = kv_str(k, "");
	size_t n = 0;
	while (vals[n] != NULL)
		n++;
	tl_pb_arrayvalue *a = az(sizeof(*a));
	opentelemetry__proto__common__v1__array_value__init(a);
	a->n_values = n;
	a->values = az(n * sizeof(*a->values));
	for (size_t i = 0; i < n; i++) {
		a->values[i] = az(sizeof(tl_pb_anyvalue));
		opentelemetry__proto__common__v1__any_value__init(a->values[i]);
		a->values[i]->value_case = TL_PB_ANY_STRING;
		a->values[i]->string_value = as(vals[i]);
	}
	kv->value->value_case = TL_PB_ANY_ARRAY;
	kv->value->array_value = a;
	return kv;
}

static ProtobufCBinaryData bytes_of(uint8_t v, size_t n)
{
	uint8_t *p = az(n);
	memset(p, v, n);
	p[n - 1] = (uint8_t)(v + 1);
	return (ProtobufCBinaryData){n, p};
}

static tl_pb_span *mk_span(uint8_t trace, uint8_t id, bool root, const char *name, uint64_t start, uint64_t end,
                           tl_pb_keyvalue **attrs, size_t nattrs)
{
	tl_pb_span *sp = az(sizeof(*sp));
	opentelemetry__proto__trace__v1__span__init(sp);
	sp->trace_id = bytes_of(trace, 16);
	sp->span_id = bytes_of(id, 8);
	if (!root)
		sp->parent_span_id = bytes_of((uint8_t)(id + 100), 8);
	sp->name = as(name);
	sp->start_time_unix_nano = start;
	sp->end_time_unix_nano = end;
	sp->attributes = attrs;
	sp->n_attributes = nattrs;
	return sp;
}

/* The serving span of prediction pid, as the OpenTelemetry JS SDK sends it from the model server. */
static tl_pb_span *prediction_span(uint8_t trace, uint8_t id, const char *pid, const char *model, const char *version,
                                   uint64_t start)
{
	tl_pb_keyvalue **a = az(6 * sizeof(*a));
	a[0] = kv_str("ml.prediction.id", pid);
	a[1] = kv_str("ml.model.name", model);
	a[2] = kv_str("ml.model.version", version);
	a[3] = kv_str("ml.input.digest", "sha256:in-0001");
	a[4] = kv_str("ml.output", "0.83");
	a[5] = kv_str("ml.deployment", "churn-prod");
	return mk_span(trace, id, false, "predict", start, start + 4000000, a, 6);
}

static tl_pb_export_req *mk_req(tl_pb_span **spans, size_t n)
{
	tl_pb_scope_spans *ss = az(sizeof(*ss));
	opentelemetry__proto__trace__v1__scope_spans__init(ss);
	ss->spans = spans;
	ss->n_spans = n;
	tl_pb_resource *res = az(sizeof(*res));
	opentelemetry__proto__resource__v1__resource__init(res);
	res->n_attributes = 1;
	res->attributes = az(sizeof(*res->attributes));
	res->attributes[0] = kv_str("service.name", "churn-server");
	tl_pb_resource_spans *rs = az(sizeof(*rs));
	opentelemetry__proto__trace__v1__resource_spans__init(rs);
	rs->resource = res;
	rs->n_scope_spans = 1;
	rs->scope_spans = az(sizeof(*rs->scope_spans));
	rs->scope_spans[0] = ss;
	tl_pb_export_req *r = az(sizeof(*r));
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(r);
	r->n_resource_spans = 1;
	r->resource_spans = az(sizeof(*r->resource_spans));
	r->resource_spans[0] = rs;
	return r;
}

/* ---- committing ---- */

static co_batch *mk_batch(uint64_t s, ProtobufCBinaryData *events, size_t nev, tl_pb_span **spans, size_t nspans)
{
	co_batch *b = az(sizeof(*b));
	memset(b->agent_id, 0xa1, sizeof(b->agent_id));
	b->seq = s;
	b->lineage = events;
	b->n_lineage = nev;
	if (nspans > 0) {
		b->traces = az(sizeof(*b->traces));
		b->traces[0] = mk_req(spans, nspans);
		b->n_traces = 1;
	}
	return b;
}

static void commit(co_batch *b, enum co_batch_status want)
{
	co_batch *bs[1] = {b};
	int rc = co_store_commit(S, bs, 1, tl_now_ns());
	cr_assert_eq(rc, 0, "commit: %s", tl_strerror(rc));
	cr_assert_eq(b->status, want, "batch status %d, want %d", b->status, want);
}

static void send(ProtobufCBinaryData *events, size_t nev, tl_pb_span **spans, size_t nspans)
{
	commit(mk_batch(++seq, events, nev, spans, nspans), CO_BATCH_OK);
}

/* Feature run, training run (reading features v42), and prediction p-1 served by churn:7. */
static void load_chain(void)
{
	ProtobufCBinaryData evs[8];
	size_t n = 0;
	feature_events(evs, &n);
	send(evs, n, NULL, 0);
	n = 0;
	training_events(evs, &n, "v42");
	send(evs, n, NULL, 0);
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = prediction_span(0x31, 1, "p-1", "churn", "7", T("2026-11-23T13:00:00Z"));
	send(NULL, 0, sp, 1);
}

/* ---- reading answers ---- */

static json_t *show(const char *node, co_lineage_dir direction, unsigned depth, const char *at, size_t cap)
{
	co_lineage_show_opts o = {.node_id = node, .dir = direction, .depth = depth, .max_nodes = cap};
	if (at != NULL)
		o.at_ns = T(at);
	char *js = NULL;
	tl_errmsg err = {{0}};
	int rc = co_lineage_show(S, &o, &QA, &js, &err);
	cr_assert_eq(rc, 0, "show %s: %s (%s)", node, tl_strerror(rc), err.msg);
	json_error_t je;
	json_t *doc = json_loads(js, 0, &je);
	cr_assert_not_null(doc, "answer is not JSON: %s", je.text);
	return doc;
}

static json_t *explain(const char *pid, const char *at)
{
	co_lineage_explain_opts o = {.prediction_id = pid};
	if (at != NULL)
		o.at_ns = T(at);
	char *js = NULL;
	tl_errmsg err = {{0}};
	int rc = co_lineage_explain(S, &o, &QA, &js, &err);
	cr_assert_eq(rc, 0, "explain %s: %s (%s)", pid, tl_strerror(rc), err.msg);
	json_t *doc = json_loads(js, 0, NULL);
	cr_assert_not_null(doc);
	return doc;
}

static json_t *node(json_t *doc, const char *id)
{
	size_t i;
	json_t *n;
	json_array_foreach(json_object_get(doc, "nodes"), i, n)
	{
		if (strcmp(json_string_value(json_object_get(n, "id")), id) == 0)
			return n;
	}
	return NULL;
}

static bool has_edge(json_t *doc, const char *from, const char *to, const char *type)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(doc, "edges"), i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "from")), from) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "to")), to) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "type")), type) == 0)
			return true;
	}
	return false;
}

static const char *sget(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert_not_null(v, "no key %s", k);
	return json_is_null(v) ? NULL : json_string_value(v);
}

static json_int_t iget(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "%s is not an integer", k);
	return json_integer_value(v);
}

static bool in_array(json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

static void counts(co_lineage_counts *c)
{
	int rc = co_lineage_counts_get(S, c);
	cr_assert_eq(rc, 0, "counts: %s", tl_strerror(rc));
}

/* ---- the chain ---- */

Test(lineage, upstream_from_prediction_reaches_raw_data)
{
	load_chain();
	json_t *d = show("prediction:p-1", CO_LIN_UPSTREAM, 10, NULL, 0);
	cr_assert_str_eq(sget(d, "root"), "prediction:p-1");
	cr_assert_str_eq(sget(d, "direction"), "upstream");
	cr_assert(json_is_false(json_object_get(d, "truncated")));
	cr_assert(json_is_null(json_object_get(d, "at")));
	json_t *first = json_array_get(json_object_get(d, "nodes"), 0);
	cr_assert_str_eq(sget(first, "id"), "prediction:p-1");
	cr_assert_eq(iget(first, "distance"), 0);
	cr_assert_str_eq(sget(first, "model"), "model:churn:7");
	cr_assert_str_eq(sget(first, "input_digest"), "sha256:in-0001");
	cr_assert_str_eq(sget(first, "trace_id"), "31313131313131313131313131313132");
	cr_assert_str_eq(sget(first, "time"), "2026-11-23T13:00:00.000000000Z");

	json_t *m = node(d, "model:churn:7");
	cr_assert_not_null(m);
	cr_assert_eq(iget(m, "distance"), 1);
	cr_assert_str_eq(sget(m, "digest"), "sha256:ab12cd34");
	cr_assert_str_eq(sget(m, "dataset"), "dataset:model://registry:churn");
	json_t *tr = node(d, "run:" R_TRAIN);
	cr_assert_not_null(tr);
	cr_assert_eq(iget(tr, "distance"), 2);
	cr_assert_str_eq(sget(tr, "state"), "COMPLETE");
	cr_assert_str_eq(sget(tr, "job"), "job:ml:train_churn");
	cr_assert_eq(iget(tr, "duration_ms"), 3600000);
	cr_assert_not_null(node(d, "job:ml:train_churn"));
	json_t *f = node(d, FEATURES);
	cr_assert_not_null(f);
	cr_assert_eq(iget(f, "distance"), 3);
	cr_assert_str_eq(sget(f, "namespace"), "warehouse");
	cr_assert_str_eq(sget(f, "name"), "features.users");
	json_t *facets = json_object_get(f, "facets");
	cr_assert(json_is_object(json_object_get(facets, "schema")), "schema facet kept");
	cr_assert(json_is_object(json_object_get(facets, "columnLineage")), "columnLineage facet kept");
	cr_assert(json_is_object(json_object_get(facets, "outputStatistics")), "output facet kept");
	cr_assert_not_null(node(d, "run:" R_FEAT));
	cr_assert_eq(iget(node(d, "run:" R_FEAT), "distance"), 4);
	json_t *raw = node(d, RAW_EVENTS);
	cr_assert_not_null(raw, "upstream reaches the raw events");
	cr_assert_eq(iget(raw, "distance"), 5);
	json_t *users = node(d, RAW_USERS);
	cr_assert_not_null(users, "upstream reaches the raw users table (a namespace with ':')");
	cr_assert_str_eq(sget(users, "namespace"), "postgres://db.internal:5432");
	cr_assert(json_is_object(json_object_get(json_object_get(users, "facets"), "dataQualityMetrics")));
	/* The parent DAG run is upstream of the feature run. */
	cr_assert_not_null(node(d, "run:" R_DAG));

	cr_assert(has_edge(d, "model:churn:7", "prediction:p-1", "served"));
	cr_assert(has_edge(d, "run:" R_TRAIN, "model:churn:7", "output"));
	cr_assert(has_edge(d, FEATURES, "run:" R_TRAIN, "input"));
	cr_assert(has_edge(d, "run:" R_FEAT, FEATURES, "output"));
	cr_assert(has_edge(d, RAW_EVENTS, "run:" R_FEAT, "input"));
	cr_assert(has_edge(d, RAW_USERS, "run:" R_FEAT, "input"));
	cr_assert(has_edge(d, "job:ml:train_churn", "run:" R_TRAIN, "run"));
	cr_assert(has_edge(d, "run:" R_DAG, "run:" R_FEAT, "parent"));
	/* Nodes come by distance. */
	size_t i;
	json_t *n;
	json_int_t last = 0;
	json_array_foreach(json_object_get(d, "nodes"), i, n)
	{
		cr_assert_geq(iget(n, "distance"), last);
		last = iget(n, "distance");
	}
	json_decref(d);

	/* Depth limits the walk. */
	d = show("prediction:p-1", CO_LIN_UPSTREAM, 2, NULL, 0);
	cr_assert_not_null(node(d, "run:" R_TRAIN));
	cr_assert_null(node(d, FEATURES));
	json_decref(d);
}

Test(lineage, downstream_from_raw_reaches_prediction)
{
	load_chain();
	json_t *d = show(RAW_EVENTS, CO_LIN_DOWNSTREAM, 10, NULL, 0);
	cr_assert_str_eq(sget(d, "direction"), "downstream");
	cr_assert_not_null(node(d, "run:" R_FEAT));
	cr_assert_not_null(node(d, FEATURES));
	cr_assert_not_null(node(d, "run:" R_TRAIN));
	cr_assert_not_null(node(d, "model:churn:7"));
	json_t *p = node(d, "prediction:p-1");
	cr_assert_not_null(p, "downstream from raw data reaches the prediction");
	cr_assert_eq(iget(p, "distance"), 5);
	json_t *dep = node(d, "deployment:churn-prod");
	cr_assert_not_null(dep);
	cr_assert(has_edge(d, "model:churn:7", "deployment:churn-prod", "deployed"));
	/* Downstream does not climb to the other raw input or to jobs. */
	cr_assert_null(node(d, RAW_USERS));
	cr_assert_null(node(d, "job:ml:train_churn"));
	json_decref(d);

	/* Both directions from the features: the raw data above, the prediction below. */
	d = show(FEATURES, CO_LIN_BOTH, 10, NULL, 0);
	cr_assert_not_null(node(d, RAW_USERS));
	cr_assert_not_null(node(d, "prediction:p-1"));
	cr_assert_str_eq(sget(d, "direction"), "both");
	json_decref(d);
}

Test(lineage, at_shows_the_graph_as_it_stood)
{
	load_chain();
	/* 11:30: the training run had started but not produced the model. */
	json_t *d = show(RAW_EVENTS, CO_LIN_DOWNSTREAM, 10, "2026-11-23T11:30:00Z", 0);
	cr_assert_str_eq(sget(d, "at"), "2026-11-23T11:30:00.000000000Z");
	json_t *tr = node(d, "run:" R_TRAIN);
	cr_assert_not_null(tr);
	cr_assert_str_eq(sget(tr, "state"), "START");
	cr_assert_null(sget(tr, "ended_at"));
	cr_assert(json_is_null(json_object_get(tr, "duration_ms")));
	cr_assert_null(node(d, "model:churn:7"), "the model did not exist yet");
	cr_assert_null(node(d, "prediction:p-1"));
	json_decref(d);

	/* 10:03: the feature run was RUNNING and had written nothing yet. */
	d = show(RAW_EVENTS, CO_LIN_DOWNSTREAM, 10, "2026-11-23T10:03:00Z", 0);
	json_t *fr = node(d, "run:" R_FEAT);
	cr_assert_not_null(fr);
	cr_assert_str_eq(sget(fr, "state"), "RUNNING");
	cr_assert_str_eq(sget(fr, "started_at"), "2026-11-23T10:00:00.000000000Z");
	cr_assert_null(node(d, FEATURES));
	cr_assert_null(node(d, "run:" R_TRAIN));
	json_decref(d);

	/* A node asked for before it existed is not found, and the message says so. */
	co_lineage_show_opts o = {.node_id = "model:churn:7", .at_ns = T("2026-11-23T11:30:00Z")};
	char *js;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_lineage_show(S, &o, &QA, &js, &err), TL_ENOTFOUND);
	cr_assert(strstr(err.msg, "model:churn:7") != NULL, "message: %s", err.msg);
	co_lineage_explain_opts xo = {.prediction_id = "p-1", .at_ns = T("2026-11-23T12:30:00Z")};
	cr_assert_eq(co_lineage_explain(S, &xo, &QA, &js, &err), TL_ENOTFOUND);
}

Test(lineage, explain_walks_back_with_reproducibility)
{
	load_chain();
	json_t *d = explain("p-1", NULL);
	json_t *p = json_object_get(d, "prediction");
	cr_assert_str_eq(sget(p, "id"), "p-1");
	cr_assert_str_eq(sget(p, "model"), "model:churn:7");
	cr_assert_str_eq(sget(p, "output"), "0.83");
	cr_assert_str_eq(sget(p, "deployment"), "churn-prod");
	json_t *m = json_object_get(d, "model");
	cr_assert_str_eq(sget(m, "run"), "run:" R_TRAIN);
	cr_assert_str_eq(sget(m, "version"), "7");
	json_t *runs = json_object_get(d, "runs");
	cr_assert_eq(json_array_size(runs), 2, "training and feature runs, got %zu", json_array_size(runs));
	json_t *tr = json_array_get(runs, 0), *fr = json_array_get(runs, 1);
	cr_assert_str_eq(sget(tr, "id"), "run:" R_TRAIN);
	cr_assert_eq(iget(tr, "distance"), 2);
	cr_assert_str_eq(sget(tr, "state"), "COMPLETE");
	cr_assert(in_array(json_object_get(tr, "inputs"), FEATURES));
	cr_assert(in_array(json_object_get(tr, "outputs"), "model:churn:7"));
	json_t *rep = json_object_get(tr, "reproducibility");
	cr_assert_str_eq(sget(rep, "code_url"), "https://github.com/acme/churn");
	cr_assert_str_eq(sget(rep, "code_path"), "train/train.py");
	cr_assert_str_eq(sget(rep, "code_version"), "9f1c2ab");
	cr_assert_str_eq(sget(rep, "job_version"), "job:ml:train_churn#9f1c2ab");
	cr_assert_str_eq(sget(tr, "job_version"), "job:ml:train_churn#9f1c2ab");
	json_t *params = json_object_get(rep, "parameters");
	cr_assert_eq(json_integer_value(json_object_get(params, "max_depth")), 6);
	cr_assert_null(json_object_get(params, "_producer"), "facet bookkeeping is not a parameter");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(rep, "seeds"), "random_seed")), 42);
	cr_assert_str_eq(sget(json_object_get(rep, "environment"), "CUDA_VISIBLE_DEVICES"), "0");
	cr_assert_str_eq(sget(json_object_get(rep, "input_versions"), FEATURES), "v42");
	cr_assert_str_eq(sget(json_object_get(rep, "output_versions"), "model:churn:7"), "sha256:ab12cd34");

	cr_assert_str_eq(sget(fr, "id"), "run:" R_FEAT);
	cr_assert_eq(iget(fr, "distance"), 4);
	cr_assert_str_eq(sget(fr, "job"), "job:airflow-prod:features_dag.build_user_features");
	cr_assert_str_eq(sget(fr, "parent"), "run:" R_DAG);
	const char *fv = sget(json_object_get(fr, "reproducibility"), "job_version");
	static const char fjob[] = "job:airflow-prod:features_dag.build_user_features#";
	cr_assert(fv != NULL && strncmp(fv, fjob, strlen(fjob)) == 0 && strlen(fv) == strlen(fjob) + 16,
	          "no code version: a digest (%s)", fv != NULL ? fv : "null");
	cr_assert(in_array(json_object_get(fr, "outputs"), FEATURES));
	json_t *env = json_object_get(json_object_get(fr, "reproducibility"), "environment");
	cr_assert_str_eq(sget(json_object_get(env, "processing_engine"), "name"), "spark");
	cr_assert_str_eq(sget(json_object_get(json_object_get(fr, "reproducibility"), "output_versions"), FEATURES),
	                 "v42");

	json_t *raw = json_object_get(d, "raw_inputs");
	cr_assert_eq(json_array_size(raw), 2);
	cr_assert(in_array(raw, RAW_EVENTS));
	cr_assert(in_array(raw, RAW_USERS));
	cr_assert_eq(json_array_size(json_object_get(d, "problems")), 0, "a healthy chain has no problems");
	cr_assert(has_edge(d, "model:churn:7", "prediction:p-1", "served"));
	cr_assert(has_edge(d, "run:" R_FEAT, FEATURES, "output"));
	cr_assert(has_edge(d, RAW_EVENTS, "run:" R_FEAT, "input"));
	json_decref(d);

	/* The "prediction:" prefix is tolerated. */
	d = explain("prediction:p-1", NULL);
	json_decref(d);
}

Test(lineage, failed_feature_run_is_a_problem)
{
	/* The feature run fails after writing part of its output; training reads it anyway. */
	ProtobufCBinaryData evs[4];
	size_t n = 0;
	evs[n++] = ev("{\"eventType\":\"START\",\"eventTime\":\"2026-11-23T10:00:00Z\",\"producer\":\"" DBT
	              "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT_FAIL "\"},\"job\":{\"namespace\":"
	              "\"dbt://analytics\",\"name\":\"analytics.features.users\"},\"inputs\":%s,\"outputs\":[]}",
	              RAW_INPUTS);
	evs[n++] = ev("{\"eventType\":\"FAIL\",\"eventTime\":\"2026-11-23T10:07:00Z\",\"producer\":\"" DBT
	              "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_FEAT_FAIL "\",\"facets\":{"
	              "\"errorMessage\":{\"_producer\":\"" DBT "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/"
	              "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet\",\"message\":\"Database Error in "
	              "model users: division by zero\",\"programmingLanguage\":\"SQL\"}}},\"job\":{\"namespace\":"
	              "\"dbt://analytics\",\"name\":\"analytics.features.users\"},\"inputs\":%s,\"outputs\":"
	              "[{\"namespace\":\"warehouse\",\"name\":\"features.users\"}]}",
	              RAW_INPUTS);
	send(evs, n, NULL, 0);
	n = 0;
	training_events(evs, &n, NULL);
	send(evs, n, NULL, 0);
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = prediction_span(0x32, 1, "p-2", "churn", "7", T("2026-11-23T13:00:00Z"));
	send(NULL, 0, sp, 1);

	json_t *d = explain("p-2", NULL);
	json_t *runs = json_object_get(d, "runs");
	cr_assert_eq(json_array_size(runs), 2);
	json_t *fr = json_array_get(runs, 1);
	cr_assert_str_eq(sget(fr, "id"), "run:" R_FEAT_FAIL);
	cr_assert_str_eq(sget(fr, "state"), "FAIL");
	cr_assert_str_eq(sget(fr, "error"), "Database Error in model users: division by zero");
	json_t *problems = json_object_get(d, "problems");
	cr_assert_eq(json_array_size(problems), 1);
	json_t *pr = json_array_get(problems, 0);
	cr_assert_str_eq(sget(pr, "node"), "run:" R_FEAT_FAIL);
	cr_assert_str_eq(sget(pr, "kind"), "failed");
	cr_assert(strstr(sget(pr, "message"), "division by zero") != NULL, "message: %s", sget(pr, "message"));
	json_decref(d);
}

Test(lineage, missing_and_running_upstream_are_problems)
{
	/* A model nobody is known to have trained, and a training run still running. */
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = prediction_span(0x33, 1, "p-orphan", "fraud", "3", T("2026-11-23T13:00:00Z"));
	send(NULL, 0, sp, 1);
	json_t *d = explain("p-orphan", NULL);
	json_t *pr = json_array_get(json_object_get(d, "problems"), 0);
	cr_assert_str_eq(sget(pr, "kind"), "missing_producer");
	cr_assert_str_eq(sget(pr, "node"), "model:fraud:3");
	cr_assert_null(sget(json_object_get(d, "model"), "run"));
	json_decref(d);

	ProtobufCBinaryData evs[2];
	size_t n = 0;
	training_events(evs, &n, NULL);
	send(evs, 1, NULL, 0); /* START only */
	tl_pb_keyvalue **a = az(2 * sizeof(*a));
	a[0] = kv_str("lineage.run_id", R_TRAIN);
	a[1] = kv_arr("lineage.outputs", (const char *const[]){"model:churn:9", NULL});
	tl_pb_span **s2 = az(2 * sizeof(*s2));
	s2[0] = mk_span(0x34, 1, false, "save_checkpoint", T("2026-11-23T11:10:00Z"), T("2026-11-23T11:11:00Z"), a, 2);
	s2[1] = prediction_span(0x35, 2, "p-early", "churn", "9", T("2026-11-23T11:20:00Z"));
	send(NULL, 0, s2, 2);
	d = explain("p-early", NULL);
	json_t *runs = json_object_get(d, "runs");
	cr_assert_eq(json_array_size(runs), 1);
	cr_assert_str_eq(sget(json_array_get(runs, 0), "state"), "START");
	cr_assert_str_eq(sget(json_array_get(runs, 0), "trace_id"), "34343434343434343434343434343435");
	pr = json_array_get(json_object_get(d, "problems"), 0);
	cr_assert_str_eq(sget(pr, "kind"), "running");
	cr_assert_str_eq(sget(pr, "node"), "run:" R_TRAIN);
	/* features.users has no producer here: a raw input. */
	cr_assert(in_array(json_object_get(d, "raw_inputs"), FEATURES));
	json_decref(d);
}

/* ---- runs ---- */

Test(lineage, run_state_history_and_parent)
{
	/* The events arrive out of order: COMPLETE first. */
	ProtobufCBinaryData evs[8];
	size_t n = 0;
	feature_events(evs, &n);
	ProtobufCBinaryData rev[8];
	for (size_t i = 0; i < n; i++)
		rev[i] = evs[n - 1 - i];
	send(rev, n, NULL, 0);
	static const struct {
		const char *at, *state, *ended;
	} want[] = {
	        {"2026-11-23T10:00:30Z", "START", NULL},
	        {"2026-11-23T10:02:00Z", "RUNNING", NULL},
	        {"2026-11-23T10:05:00Z", "COMPLETE", "2026-11-23T10:05:00.000000000Z"},
	        {NULL, "COMPLETE", "2026-11-23T10:05:00.000000000Z"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		json_t *d = show("run:" R_FEAT, CO_LIN_UPSTREAM, 1, want[i].at, 0);
		json_t *r = node(d, "run:" R_FEAT);
		cr_assert_str_eq(sget(r, "state"), want[i].state, "at %s", want[i].at);
		cr_assert_str_eq(sget(r, "started_at"), "2026-11-23T10:00:00.000000000Z");
		if (want[i].ended != NULL)
			cr_assert_str_eq(sget(r, "ended_at"), want[i].ended);
		else
			cr_assert_null(sget(r, "ended_at"));
		cr_assert_str_eq(sget(r, "parent"), "run:" R_DAG);
		json_t *p = node(d, "run:" R_DAG);
		cr_assert_not_null(p, "the parent run is upstream");
		cr_assert_str_eq(sget(p, "job"), "job:airflow-prod:features_dag");
		cr_assert(has_edge(d, "run:" R_DAG, "run:" R_FEAT, "parent"));
		cr_assert(has_edge(d, "job:airflow-prod:features_dag.build_user_features", "run:" R_FEAT, "run"));
		json_decref(d);
	}
	json_t *d = show("run:" R_FEAT, CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert_eq(iget(node(d, "run:" R_FEAT), "duration_ms"), 300000);
	json_decref(d);
	/* The run id is matched whatever its case. */
	d = show("run:0190E4A2-8A4B-7C6E-9D1F-0000000FEA71", CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert_str_eq(sget(d, "root"), "run:" R_FEAT);
	json_decref(d);
	/* The DAG's job knows its latest run; the parent run's children are downstream. */
	d = show("job:airflow-prod:features_dag", CO_LIN_DOWNSTREAM, 2, NULL, 0);
	json_t *j = node(d, "job:airflow-prod:features_dag");
	cr_assert_str_eq(sget(j, "latest_run"), "run:" R_DAG);
	cr_assert_str_eq(sget(j, "latest_state"), "START");
	cr_assert_not_null(node(d, "run:" R_FEAT));
	json_decref(d);
}

Test(lineage, span_derived_run_and_prediction)
{
	/* A training script instrumented with OpenTelemetry only: its root span carries the run. */
	tl_pb_keyvalue **a = az(5 * sizeof(*a));
	a[0] = kv_str("lineage.run_id", R_SPAN);
	a[1] = kv_arr("lineage.inputs", (const char *const[]){FEATURES "#v43", "s3://raw-bucket:labels", NULL});
	a[2] = kv_arr("lineage.outputs", (const char *const[]){"model:churn:8", NULL});
	a[3] = kv_str("lineage.job.namespace", "ml");
	a[4] = kv_str("lineage.job.name", "train_churn");
	tl_pb_span **sp = az(2 * sizeof(*sp));
	sp[0] = mk_span(0x41, 1, true, "train", T("2026-11-24T08:00:00Z"), T("2026-11-24T08:30:00Z"), a, 5);
	tl_pb_keyvalue **b = az(3 * sizeof(*b));
	b[0] = kv_str("ml.prediction.id", "p-8");
	b[1] = kv_str("ml.model.name", "churn");
	b[2] = kv_int("ml.model.version", 8);
	sp[1] = mk_span(0x42, 1, true, "predict", T("2026-11-24T09:00:00Z"), T("2026-11-24T09:00:01Z"), b, 3);
	send(NULL, 0, sp, 2);

	json_t *d = show("prediction:p-8", CO_LIN_UPSTREAM, 5, NULL, 0);
	cr_assert_str_eq(sget(node(d, "prediction:p-8"), "model"), "model:churn:8", "an int version is a version");
	json_t *r = node(d, "run:" R_SPAN);
	cr_assert_not_null(r);
	cr_assert_str_eq(sget(r, "state"), "COMPLETE");
	cr_assert_str_eq(sget(r, "trace_id"), "41414141414141414141414141414142");
	cr_assert_str_eq(sget(r, "job"), "job:ml:train_churn");
	cr_assert_eq(iget(r, "duration_ms"), 1800000);
	cr_assert_not_null(node(d, FEATURES));
	cr_assert_not_null(node(d, "dataset:s3://raw-bucket:labels"), "a bare NS:NAME is a dataset");
	cr_assert(has_edge(d, "run:" R_SPAN, "model:churn:8", "output"));
	json_decref(d);

	/* The version it read is a node of its own, upstream of the run only. */
	d = show(FEATURES "#v43", CO_LIN_DOWNSTREAM, 1, NULL, 0);
	json_t *v = node(d, FEATURES "#v43");
	cr_assert_str_eq(sget(v, "version"), "v43");
	cr_assert_str_eq(sget(v, "name"), "features.users");
	cr_assert(has_edge(d, FEATURES "#v43", "run:" R_SPAN, "input"));
	json_decref(d);

	d = explain("p-8", NULL);
	json_t *rep = json_object_get(json_array_get(json_object_get(d, "runs"), 0), "reproducibility");
	cr_assert_str_eq(sget(json_object_get(rep, "input_versions"), FEATURES), "v43");
	json_decref(d);

	/* A failing root span fails its run, with the status message as the error. */
	tl_pb_keyvalue **c = az(sizeof(*c));
	c[0] = kv_str("lineage.run_id", R_SPAN);
	tl_pb_span **s2 = az(sizeof(*s2));
	s2[0] = mk_span(0x41, 9, true, "retrain", T("2026-11-24T10:00:00Z"), T("2026-11-24T10:01:00Z"), c, 1);
	s2[0]->status = az(sizeof(tl_pb_status));
	opentelemetry__proto__trace__v1__status__init(s2[0]->status);
	s2[0]->status->code = TL_PB_STATUS_ERROR;
	s2[0]->status->message = as("CUDA out of memory");
	send(NULL, 0, s2, 1);
	d = show("run:" R_SPAN, CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert_str_eq(sget(node(d, "run:" R_SPAN), "state"), "FAIL");
	cr_assert_str_eq(sget(node(d, "run:" R_SPAN), "error"), "CUDA out of memory");
	json_decref(d);
}

/* ---- storage properties ---- */

Test(lineage, same_events_twice_change_nothing)
{
	ProtobufCBinaryData evs[8];
	size_t n = 0;
	feature_events(evs, &n);
	training_events(evs, &n, "v42");
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = prediction_span(0x31, 1, "p-1", "churn", "7", T("2026-11-23T13:00:00Z"));
	co_batch *b = mk_batch(100, evs, n, sp, 1);
	commit(b, CO_BATCH_OK);
	co_lineage_counts c1, c2;
	counts(&c1);
	cr_assert_gt(c1.nodes, 8);
	cr_assert_eq(c1.ids, c1.nodes);
	cr_assert_eq(c1.edges_down, c1.edges_up, "every edge is stored both ways");
	cr_assert_eq(c1.preds, 1);
	cr_assert_eq(c1.model_preds, 1);
	cr_assert_eq(c1.states, 6, "DAG START, feature START/RUNNING/COMPLETE, training START/COMPLETE");

	/* The same batch again is a duplicate for the store... */
	commit(mk_batch(100, evs, n, sp, 1), CO_BATCH_DUPLICATE);
	/* ...and the same events in a new batch (another agent re-sending) change nothing in the graph. */
	commit(mk_batch(101, evs, n, sp, 1), CO_BATCH_OK);
	counts(&c2);
	cr_assert_eq(memcmp(&c1, &c2, sizeof(c1)), 0,
	             "ids %zu/%zu nodes %zu/%zu edges %zu/%zu states %zu/%zu facets %zu/%zu preds %zu/%zu", c1.ids,
	             c2.ids, c1.nodes, c2.nodes, c1.edges_down, c2.edges_down, c1.states, c2.states, c1.facets,
	             c2.facets, c1.preds, c2.preds);
	json_t *d = explain("p-1", NULL);
	cr_assert_eq(json_array_size(json_object_get(d, "runs")), 2);
	cr_assert_eq(json_array_size(json_object_get(d, "raw_inputs")), 2);
	json_decref(d);

	/* A later copy of an earlier edge keeps the earliest time. */
	d = show(RAW_EVENTS, CO_LIN_DOWNSTREAM, 1, "2026-11-23T10:00:00Z", 0);
	cr_assert_not_null(node(d, "run:" R_FEAT));
	json_decref(d);
}

Test(lineage, spec_1x_and_2x_and_other_event_kinds)
{
	ProtobufCBinaryData evs[4];
	size_t n = 0;
	/* 1.x, as older Spark integrations send it, with the 1.x datasetVersion facet name. */
	evs[n++] = ev(
	        "{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-23T08:00:00.123456+01:00\",\"producer\":\"" SPARK
	        "\",\"schemaURL\":\"" SCHEMA1 "\",\"run\":{\"runId\":\"" R_FEAT "\"},\"job\":{\"namespace\":"
	        "\"spark-cluster\",\"name\":\"etl.clean_events\"},\"inputs\":[{\"namespace\":\"s3://raw-bucket\","
	        "\"name\":\"events/2026-11-23\"}],\"outputs\":[{\"namespace\":\"s3://clean\",\"name\":\"events\","
	        "\"facets\":{\"datasetVersion\":{\"_producer\":\"" SPARK "\",\"_schemaURL\":\"https://openlineage.io/"
	        "spec/facets/1-0-0/DatasetVersionDatasetFacet.json\",\"datasetVersion\":\"2026-11-23\"}}}]}");
	/* 2.x DatasetEvent and JobEvent (static lineage, as dbt declares it). */
	evs[n++] = ev(
	        "{\"eventTime\":\"2026-11-23T08:30:00Z\",\"producer\":\"" DBT "\",\"schemaURL\":"
	        "\"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent\",\"dataset\":{"
	        "\"namespace\":\"s3://clean\",\"name\":\"events\",\"facets\":{\"documentation\":{\"_producer\":\"" DBT
	        "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/DocumentationDatasetFacet.json\","
	        "\"description\":\"Cleaned events\"}}}}");
	evs[n++] = ev("{\"eventTime\":\"2026-11-23T08:31:00Z\",\"producer\":\"" DBT "\",\"schemaURL\":"
	              "\"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent\",\"job\":{\"namespace\":"
	              "\"dbt://analytics\",\"name\":\"analytics.daily\"},\"inputs\":[{\"namespace\":\"s3://clean\","
	              "\"name\":\"events\"}],\"outputs\":[{\"namespace\":\"warehouse\",\"name\":\"daily\"}]}");
	/* Not an event at all: skipped, the batch still commits. */
	evs[n++] = ev("{\"eventType\":\"START\",\"producer\":\"x\"");
	send(evs, n, NULL, 0);
	co_store_counts sc;
	cr_assert_eq(co_store_counts_get(S, &sc), 0);
	cr_assert_eq(sc.lineage_raw, 4, "every record is kept raw");

	json_t *d = show("dataset:s3://clean:events", CO_LIN_BOTH, 3, NULL, 0);
	json_t *ds = node(d, "dataset:s3://clean:events");
	cr_assert_str_eq(sget(json_object_get(json_object_get(ds, "facets"), "documentation"), "description"),
	                 "Cleaned events");
	json_t *r = node(d, "run:" R_FEAT);
	cr_assert_not_null(r);
	cr_assert_str_eq(sget(r, "ended_at"), "2026-11-23T07:00:00.123456000Z", "offsets become UTC");
	cr_assert_not_null(node(d, RAW_EVENTS));
	cr_assert(has_edge(d, "dataset:s3://clean:events", "job:dbt://analytics:analytics.daily", "input"));
	cr_assert_not_null(node(d, "dataset:warehouse:daily"));
	json_decref(d);
	d = show("dataset:s3://clean:events#2026-11-23", CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert(has_edge(d, "run:" R_FEAT, "dataset:s3://clean:events#2026-11-23", "output"));
	json_decref(d);
}

Test(lineage, fan_out_is_capped)
{
	/* One model serving 10,050 predictions. */
	size_t n = 10050;
	tl_pb_span **sp = az(n * sizeof(*sp));
	char pid[32];
	uint64_t t0 = T("2026-11-23T13:00:00Z");
	for (size_t i = 0; i < n; i++) {
		snprintf(pid, sizeof(pid), "p-%05zu", i);
		tl_pb_keyvalue **a = az(3 * sizeof(*a));
		a[0] = kv_str("ml.prediction.id", pid);
		a[1] = kv_str("ml.model.name", "churn");
		a[2] = kv_str("ml.model.version", "7");
		sp[i] = mk_span((uint8_t)(i % 200), (uint8_t)(i % 250 + 1), false, "predict", t0 + i * 1000,
		                t0 + i * 1000 + 5, a, 3);
	}
	send(NULL, 0, sp, n);
	co_lineage_counts c;
	counts(&c);
	cr_assert_eq(c.preds, n);
	cr_assert_eq(c.model_preds, n);
	cr_assert_eq(c.nodes, 1, "predictions stay out of the generic graph");

	json_t *d = show("model:churn:7", CO_LIN_DOWNSTREAM, 1, NULL, 0);
	cr_assert(json_is_true(json_object_get(d, "truncated")));
	cr_assert_eq(json_array_size(json_object_get(d, "nodes")), CO_LINEAGE_MAX_NODES);
	cr_assert_eq(json_array_size(json_object_get(d, "edges")), CO_LINEAGE_MAX_NODES - 1);
	json_decref(d);
	d = show("model:churn:7", CO_LIN_DOWNSTREAM, 1, NULL, 20);
	cr_assert(json_is_true(json_object_get(d, "truncated")));
	cr_assert_eq(json_array_size(json_object_get(d, "nodes")), 20);
	/* The newest predictions come first. */
	cr_assert_not_null(node(d, "prediction:p-10049"));
	cr_assert_not_null(node(d, "prediction:p-10031"));
	cr_assert_null(node(d, "prediction:p-10030"));
	json_decref(d);
	/* At a time, only the predictions made by then. */
	d = show("model:churn:7", CO_LIN_DOWNSTREAM, 1, "2026-11-23T13:00:00.000004999Z", 0);
	cr_assert(json_is_false(json_object_get(d, "truncated")));
	cr_assert_eq(json_array_size(json_object_get(d, "nodes")), 6);
	cr_assert_not_null(node(d, "prediction:p-00004"));
	json_decref(d);
	d = show("model:churn:7", CO_LIN_DOWNSTREAM, 1, "2026-11-23T13:00:00.000004999Z", 3);
	cr_assert(json_is_true(json_object_get(d, "truncated")));
	cr_assert_not_null(node(d, "prediction:p-00004"));
	cr_assert_not_null(node(d, "prediction:p-00003"));
	cr_assert_null(node(d, "prediction:p-00005"));
	json_decref(d);
}

Test(lineage, daily_runs_collapse_to_the_latest_per_job)
{
	/* A daily job rewrites the features; a second job also writes them once; a third reads them daily. */
	ProtobufCBinaryData evs[16];
	size_t n = 0;
	for (int day = 1; day <= 5; day++) {
		evs[n++] =
		        ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-0%dT02:00:00Z\",\"producer\":\"" AIRFLOW
		           "\",\"run\":{\"runId\":\"0190e4a2-8a4b-7c6e-9d1f-00000000da0%d\"},\"job\":{\"namespace\":"
		           "\"airflow\",\"name\":\"daily_features\"},\"inputs\":[{\"namespace\":\"s3://raw\",\"name\":"
		           "\"day%d\"}],\"outputs\":[{\"namespace\":\"warehouse\",\"name\":\"features.users\"}]}",
		           day, day, day);
		evs[n++] =
		        ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-0%dT03:00:00Z\",\"producer\":\"" AIRFLOW
		           "\",\"run\":{\"runId\":\"0190e4a2-8a4b-7c6e-9d1f-00000000cc0%d\"},\"job\":{\"namespace\":"
		           "\"airflow\",\"name\":\"daily_report\"},\"inputs\":[{\"namespace\":\"warehouse\",\"name\":"
		           "\"features.users\"}],\"outputs\":[]}",
		           day, day);
	}
	evs[n++] = ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-02T05:00:00Z\",\"producer\":\"" AIRFLOW
	              "\",\"run\":{\"runId\":\"0190e4a2-8a4b-7c6e-9d1f-00000000bac0\"},\"job\":{\"namespace\":"
	              "\"airflow\",\"name\":\"backfill\"},\"inputs\":[],\"outputs\":[{\"namespace\":\"warehouse\","
	              "\"name\":\"features.users\"}]}");
	send(evs, n, NULL, 0);

	json_t *d = show(FEATURES, CO_LIN_BOTH, 2, NULL, 0);
	cr_assert_not_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000da05"), "the latest daily run");
	cr_assert_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000da04"), "older runs of the same job are history");
	cr_assert_not_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000bac0"), "each job's latest run is kept");
	cr_assert_not_null(node(d, "dataset:s3://raw:day5"));
	cr_assert_null(node(d, "dataset:s3://raw:day4"));
	cr_assert_not_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000cc05"));
	cr_assert_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000cc01"));
	json_decref(d);

	/* As it stood on the 3rd: that day's runs. */
	d = show(FEATURES, CO_LIN_BOTH, 2, "2026-11-03T12:00:00Z", 0);
	cr_assert_not_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000da03"));
	cr_assert_not_null(node(d, "dataset:s3://raw:day3"));
	cr_assert_not_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000cc03"));
	cr_assert_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-00000000da05"));
	json_decref(d);

	/* A run itself still shows all it read. */
	d = show("run:0190e4a2-8a4b-7c6e-9d1f-00000000da02", CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert_not_null(node(d, "dataset:s3://raw:day2"));
	json_decref(d);
}

/* ---- job versions ---- */

/* A run of ml:train_churn that reads features.users and writes churn VERSION, with the given code version. */
static ProtobufCBinaryData train_run(const char *run_id, const char *type, const char *time, const char *code,
                                     const char *model_version)
{
	char codefacet[256] = "";
	if (code != NULL)
		snprintf(codefacet, sizeof(codefacet),
		         "\"sourceCodeLocation\":{\"_producer\":\"" TRAINER
		         "\",\"_schemaURL\":\"https://openlineage.io/"
		         "spec/facets/1-0-1/SourceCodeLocationJobFacet.json\",\"type\":\"git\",\"url\":\"https://"
		         "github.com/acme/churn\",\"version\":\"%s\"}",
		         code);
	return ev("{\"eventType\":\"%s\",\"eventTime\":\"%s\",\"producer\":\"" TRAINER "\",\"run\":{\"runId\":\"%s\"},"
	          "\"job\":{\"namespace\":\"ml\",\"name\":\"train_churn\",\"facets\":{%s}},\"inputs\":[{\"namespace\":"
	          "\"warehouse\",\"name\":\"features.users\"}],\"outputs\":[{\"namespace\":\"model://registry\","
	          "\"name\":\"churn\",\"facets\":{\"threadline_model\":{\"_producer\":\"" TRAINER "\",\"_schemaURL\":"
	          "\"https://threadline.dev/facets/ModelDatasetFacet.json\",\"name\":\"churn\",\"version\":\"%s\"}}}]}",
	          type, time, run_id, codefacet, model_version);
}

Test(lineage, job_versions_from_code_version)
{
	ProtobufCBinaryData evs[4];
	evs[0] = train_run("0190e4a2-8a4b-7c6e-9d1f-0000000c0d01", "COMPLETE", "2026-11-20T10:00:00Z", "9f1c2ab", "7");
	evs[1] = train_run("0190e4a2-8a4b-7c6e-9d1f-0000000c0d02", "COMPLETE", "2026-11-21T10:00:00Z", "9f1c2ab", "8");
	evs[2] = train_run("0190e4a2-8a4b-7c6e-9d1f-0000000c0d03", "START", "2026-11-22T10:00:00Z", "a0b1c2d", "9");
	send(evs, 3, NULL, 0);

	/* The version node lists the runs of that code version, and only those. */
	json_t *d = show("job:ml:train_churn#9f1c2ab", CO_LIN_DOWNSTREAM, 1, NULL, 0);
	json_t *root = node(d, "job:ml:train_churn#9f1c2ab");
	cr_assert_str_eq(sget(root, "type"), "job");
	cr_assert_str_eq(sget(root, "version"), "9f1c2ab");
	cr_assert_str_eq(sget(root, "name"), "train_churn");
	cr_assert_str_eq(sget(root, "latest_run"), "run:0190e4a2-8a4b-7c6e-9d1f-0000000c0d02");
	cr_assert_str_eq(sget(root, "first_seen"), "2026-11-20T10:00:00.000000000Z", "its first run's event");
	cr_assert(has_edge(d, "job:ml:train_churn#9f1c2ab", "run:0190e4a2-8a4b-7c6e-9d1f-0000000c0d01", "run"));
	cr_assert(has_edge(d, "job:ml:train_churn#9f1c2ab", "run:0190e4a2-8a4b-7c6e-9d1f-0000000c0d02", "run"));
	cr_assert_null(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-0000000c0d03"), "another code version");
	json_decref(d);

	/* A code version is known from the first event: a run still going has it. */
	d = show("run:0190e4a2-8a4b-7c6e-9d1f-0000000c0d03", CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert_str_eq(sget(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-0000000c0d03"), "job_version"),
	                 "job:ml:train_churn#a0b1c2d");
	cr_assert_null(node(d, "job:ml:train_churn#a0b1c2d"), "a run's walk leaves version nodes out");
	cr_assert_not_null(node(d, "job:ml:train_churn"));
	cr_assert_str_eq(sget(node(d, "job:ml:train_churn"), "latest_version"), "job:ml:train_churn#a0b1c2d");
	json_decref(d);

	/* --at: the version did not exist before its first run. */
	co_lineage_show_opts o = {.node_id = "job:ml:train_churn#a0b1c2d", .at_ns = T("2026-11-21T12:00:00Z")};
	char *js;
	tl_errmsg err = {{0}};
	cr_assert_eq(co_lineage_show(S, &o, &QA, &js, &err), TL_ENOTFOUND);
	cr_assert(strstr(err.msg, "did not exist yet") != NULL, "%s", err.msg);
}

Test(lineage, job_versions_from_inputs_and_outputs)
{
	/* No code version: the version is a digest of what the run read and wrote, fixed when it ends. */
	ProtobufCBinaryData evs[8];
	size_t n = 0;
	evs[n++] = train_run("0190e4a2-8a4b-7c6e-9d1f-0000000d0101", "START", "2026-11-20T10:00:00Z", NULL, "7");
	send(evs, n, NULL, 0);
	json_t *d = show("run:0190e4a2-8a4b-7c6e-9d1f-0000000d0101", CO_LIN_UPSTREAM, 1, NULL, 0);
	cr_assert(json_is_null(json_object_get(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-0000000d0101"), "job_version")),
	          "not known before the run ends");
	json_decref(d);

	n = 0;
	evs[n++] = train_run("0190e4a2-8a4b-7c6e-9d1f-0000000d0101", "COMPLETE", "2026-11-20T11:00:00Z", NULL, "7");
	/* The next day's run writes a new model version of the same model: the same job version. */
	evs[n++] = train_run("0190e4a2-8a4b-7c6e-9d1f-0000000d0102", "COMPLETE", "2026-11-21T11:00:00Z", NULL, "8");
	/* A run that also reads labels is another version of the job. */
	evs[n++] = ev("{\"eventType\":\"FAIL\",\"eventTime\":\"2026-11-22T11:00:00Z\",\"producer\":\"" TRAINER
	              "\",\"run\":{\"runId\":\"0190e4a2-8a4b-7c6e-9d1f-0000000d0103\"},\"job\":{\"namespace\":\"ml\","
	              "\"name\":\"train_churn\"},\"inputs\":[{\"namespace\":\"warehouse\",\"name\":\"features.users\"},"
	              "{\"namespace\":\"s3://raw\",\"name\":\"labels\"}],\"outputs\":[]}");
	send(evs, n, NULL, 0);

	const char *v[3];
	json_t *docs[3];
	for (int i = 0; i < 3; i++) {
		char id[64];
		snprintf(id, sizeof(id), "run:0190e4a2-8a4b-7c6e-9d1f-0000000d010%d", i + 1);
		docs[i] = show(id, CO_LIN_UPSTREAM, 1, NULL, 0);
		v[i] = sget(node(docs[i], id), "job_version");
		cr_assert_not_null(v[i], "%s has a job version once it ended", id);
		cr_assert(strncmp(v[i], "job:ml:train_churn#", 19) == 0 && strlen(v[i]) == 19 + 16, "%s", v[i]);
	}
	cr_assert_str_eq(v[0], v[1], "same code location, inputs and outputs: same version");
	cr_assert_str_neq(v[0], v[2], "another input: another version");
	d = show(v[0], CO_LIN_DOWNSTREAM, 1, NULL, 0);
	cr_assert_eq(json_array_size(json_object_get(d, "nodes")), 3, "the version and its two runs");
	json_decref(d);
	for (int i = 0; i < 3; i++)
		json_decref(docs[i]);

	/* --at before the run ended: its version was not known yet. */
	d = show("run:0190e4a2-8a4b-7c6e-9d1f-0000000d0101", CO_LIN_UPSTREAM, 1, "2026-11-20T10:30:00Z", 0);
	cr_assert(json_is_null(json_object_get(node(d, "run:0190e4a2-8a4b-7c6e-9d1f-0000000d0101"), "job_version")));
	json_decref(d);
}

/* ---- errors and the query path ---- */

Test(lineage, unknown_and_malformed_nodes)
{
	load_chain();
	char *js;
	tl_errmsg err = {{0}};
	co_lineage_show_opts o = {.node_id = "dataset:warehouse:nope"};
	cr_assert_eq(co_lineage_show(S, &o, &QA, &js, &err), TL_ENOTFOUND);
	cr_assert(strstr(err.msg, "dataset:warehouse:nope") != NULL, "message: %s", err.msg);
	o.node_id = "prediction:p-404";
	cr_assert_eq(co_lineage_show(S, &o, &QA, &js, &err), TL_ENOTFOUND);
	cr_assert(strstr(err.msg, "prediction:p-404") != NULL, "message: %s", err.msg);
	co_lineage_explain_opts xo = {.prediction_id = "p-404"};
	cr_assert_eq(co_lineage_explain(S, &xo, &QA, &js, &err), TL_ENOTFOUND);
	cr_assert(strstr(err.msg, "p-404") != NULL, "message: %s", err.msg);
	const char *bad[] = {
	        "warehouse:features", "dataset:nonamespace", "run:not-a-uuid", "model:churn", "job::x", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.node_id = bad[i];
		cr_assert_eq(co_lineage_show(S, &o, &QA, &js, &err), TL_EINVALID, "%s", bad[i]);
	}
}

Test(lineage, answers_through_the_query_service)
{
	load_chain();
	Threadline__V1__LineageShow ls = THREADLINE__V1__LINEAGE_SHOW__INIT;
	ls.node_id = "prediction:p-1";
	ls.direction = THREADLINE__V1__LINEAGE_SHOW__DIRECTION__DIRECTION_UPSTREAM;
	tl_pb_query_req req = THREADLINE__V1__QUERY_REQUEST__INIT;
	req.version = 1;
	req.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_SHOW;
	req.lineage_show = &ls;
	uint8_t buf[512];
	size_t len = threadline__v1__query_request__pack(&req, buf);
	tl_pb_query_resp resp;
	co_query_answer(S, buf, len, &QA, &resp);
	cr_assert_eq(resp.code, 0, "%s", resp.error);
	json_t *d = json_loads(resp.json, 0, NULL);
	cr_assert_not_null(node(d, RAW_EVENTS), "depth 0 means the default (5), which reaches the raw data");
	cr_assert_eq(iget(d, "depth"), 5);
	json_decref(d);

	Threadline__V1__LineageExplain le = THREADLINE__V1__LINEAGE_EXPLAIN__INIT;
	le.prediction_id = "p-missing";
	req.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_LINEAGE_EXPLAIN;
	req.lineage_show = NULL;
	req.lineage_explain = &le;
	len = threadline__v1__query_request__pack(&req, buf);
	co_query_answer(S, buf, len, &QA, &resp);
	cr_assert_eq(resp.code, TL_ENOTFOUND);
	cr_assert(strstr(resp.error, "prediction:p-missing") != NULL, "error: %s", resp.error);
}

/* ---- ids ---- */

Test(lineage, id_helpers)
{
	co_lineage_id id;
	const char *s = "dataset:postgres://db:5432:public.users#v7";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, NULL), 0);
	cr_assert_eq(id.type, CO_LIN_DATASET);
	cr_assert_eq(id.ns_len, strlen("postgres://db:5432"));
	cr_assert_eq(strncmp(id.ns, "postgres://db:5432", id.ns_len), 0);
	cr_assert_eq(strncmp(id.name, "public.users", id.name_len), 0);
	cr_assert_eq(id.name_len, strlen("public.users"));
	cr_assert_eq(strncmp(id.version, "v7", id.version_len), 0);
	char buf[128];
	cr_assert_eq(co_lineage_id_format(&id, buf, sizeof(buf)), (int)strlen(s));
	cr_assert_str_eq(buf, s);

	s = "model:churn:7";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, NULL), 0);
	cr_assert_eq(id.type, CO_LIN_MODEL);
	cr_assert_eq(id.name_len, 5);
	cr_assert_eq(id.version_len, 1);
	s = "run:0190E4A2-8A4B-7C6E-9D1F-0000000FEA71";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, NULL), 0);
	co_lineage_id_format(&id, buf, sizeof(buf));
	cr_assert_str_eq(buf, "run:" R_FEAT);
	cr_assert_eq(co_lineage_id_run(buf, sizeof(buf), id.run_id), 40);
	s = "prediction:a:b:c";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, NULL), 0);
	cr_assert_eq(id.type, CO_LIN_PREDICTION);
	cr_assert_eq(id.name_len, 5);

	cr_assert_eq(co_lineage_id_job(buf, sizeof(buf), "airflow", "dag.task", NULL), 20);
	cr_assert_str_eq(buf, "job:airflow:dag.task");
	cr_assert_eq(co_lineage_id_dataset(buf, sizeof(buf), "ns", "n", NULL), 12);
	cr_assert_eq(co_lineage_id_model(buf, sizeof(buf), "m", ""), TL_EINVALID);
	cr_assert_eq(co_lineage_id_deployment(buf, sizeof(buf), "churn-prod"), 21);
	cr_assert_eq(co_lineage_id_prediction(buf, sizeof(buf), NULL), TL_EINVALID);
	cr_assert_eq(co_lineage_id_dataset(buf, 8, "ns", "name", NULL), TL_ELIMIT);
	cr_assert_str_eq(buf, "", "a cut id is never half written");

	tl_errmsg err = {{0}};
	s = "table:x:y";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, &err), TL_EINVALID);
	cr_assert(strstr(err.msg, "table:x:y") != NULL);
	s = "dataset:ns:name#";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, &err), TL_EINVALID);
	s = "job:airflow:dag.task#9f1c2ab";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, &err), 0);
	cr_assert_eq(id.type, CO_LIN_JOB);
	cr_assert_eq(id.name_len, strlen("dag.task"));
	cr_assert_eq(strncmp(id.version, "9f1c2ab", id.version_len), 0);
	cr_assert_eq(co_lineage_id_job(buf, sizeof(buf), "airflow", "dag.task", "9f1c2ab"), (int)strlen(s));
	cr_assert_str_eq(buf, s);
	s = "job:airflow:#v";
	cr_assert_eq(co_lineage_id_parse(s, strlen(s), &id, &err), TL_EINVALID);
	cr_assert(strstr(err.msg, "job:NAMESPACE:NAME#VERSION") != NULL, "%s", err.msg);
	static char big[CO_LINEAGE_ID_MAX + 16];
	memcpy(big, "dataset:a:", 10);
	memset(big + 10, 'x', CO_LINEAGE_ID_MAX);
	cr_assert_eq(co_lineage_id_parse(big, strlen(big), &id, &err), TL_ELIMIT);
	cr_assert_str_eq(co_lineage_type_name(CO_LIN_DEPLOYMENT), "deployment");
}

Test(lineage, long_ids_are_stored_by_hash)
{
	/* Two dataset names that share their first 600 bytes stay two nodes. */
	char name1[700], name2[700];
	memset(name1, 'a', 650);
	name1[650] = '\0';
	memcpy(name2, name1, 651);
	name2[649] = 'b';
	ProtobufCBinaryData evs[1];
	evs[0] = ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-23T10:00:00Z\",\"producer\":\"" SPARK
	            "\",\"run\":{\"runId\":\"" R_FEAT "\"},\"job\":{\"namespace\":\"j\",\"name\":\"long\"},"
	            "\"inputs\":[{\"namespace\":\"s3://b\",\"name\":\"%s\"}],\"outputs\":[{\"namespace\":\"s3://b\","
	            "\"name\":\"%s\"}]}",
	            name1, name2);
	send(evs, 1, NULL, 0);
	char id[800];
	snprintf(id, sizeof(id), "dataset:s3://b:%s", name2);
	json_t *d = show(id, CO_LIN_UPSTREAM, 2, NULL, 0);
	cr_assert_eq(json_array_size(json_object_get(d, "nodes")), 4, "output, run, job, input");
	snprintf(id, sizeof(id), "dataset:s3://b:%s", name1);
	cr_assert_not_null(node(d, id));
	json_decref(d);
}

/* ---- the integrations' events (tests/data/openlineage, from helper "ol") ---- */

static ProtobufCBinaryData fixture(const char *name)
{
	const char *d = getenv("TL_OL_DATA");
	cr_assert_not_null(d, "TL_OL_DATA is not set");
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", d, name);
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	char *buf = tl_arena_alloc(&A, 1 << 16);
	cr_assert_not_null(buf);
	size_t n = fread(buf, 1, 1 << 16, f);
	fclose(f);
	cr_assert(n > 0 && n < (1 << 16), "%s: %zu bytes", path, n);
	return (ProtobufCBinaryData){n, (uint8_t *)buf};
}

#define FX_SPARK "run:8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41"
#define FX_TRAIN "run:3e9d7b1c-2a4f-4e6b-9c8d-5f1a2b3c4d5e"
#define FX_FAIL "run:c4b8e2d0-7f3a-4d1e-8b6c-9a0e1f2d3c47"
#define FX_FEATURES "dataset:s3://acme-warehouse:features/churn_users"
#define FX_CUSTOMERS "dataset:postgres://prod-db:5432:shop.public.customers"
#define FX_ORDERS "dataset:postgres://prod-db:5432:shop.public.orders"

Test(lineage, events_as_the_integrations_send_them)
{
	static const char *const chain[] = {
	        "job_event_train_churn.json",
	        "dataset_event_raw_customers.json",
	        "dbt_test_raw_orders_start.json",
	        "dbt_test_raw_orders_complete.json",
	        "01_airflow_dag_start.json",
	        "02_airflow_build_features_start.json",
	        "03_spark_build_features_start.json",
	        "04_spark_build_features_running.json",
	        "05_spark_build_features_complete.json",
	        "06_airflow_build_features_complete.json",
	        "07_train_churn_start.json",
	        "08_train_churn_complete.json",
	        "09_airflow_dag_complete.json",
	};
	size_t n = sizeof(chain) / sizeof(chain[0]);
	ProtobufCBinaryData *evs = az(n * sizeof(*evs));
	for (size_t i = 0; i < n; i++)
		evs[i] = fixture(chain[i]);
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = prediction_span(0x51, 1, "churn-2026-11-22-000001", "churn", "7", T("2026-11-22T09:15:00Z"));
	send(evs, n, sp, 1);

	json_t *d = explain("churn-2026-11-22-000001", NULL);
	json_t *m = json_object_get(d, "model");
	cr_assert_str_eq(sget(m, "run"), FX_TRAIN);
	cr_assert(strncmp(sget(m, "digest"), "sha256:9b1e4c7a", 15) == 0);
	json_t *runs = json_object_get(d, "runs");
	cr_assert_eq(json_array_size(runs), 2);
	json_t *tr = json_array_get(runs, 0), *sr = json_array_get(runs, 1);
	cr_assert_str_eq(sget(tr, "id"), FX_TRAIN);
	cr_assert_str_eq(sget(tr, "started_at"), "2026-11-22T02:07:00.250000000Z");
	cr_assert_str_eq(sget(tr, "ended_at"), "2026-11-22T02:41:12.500000000Z");
	cr_assert_str_eq(sget(tr, "parent"), "run:019371a2-5c00-7e3a-9f2b-1d4c8e6a0b01");
	json_t *rep = json_object_get(tr, "reproducibility");
	cr_assert_str_eq(sget(rep, "code_version"), "4f9c1e2a7b3d5c8e9f0a1b2c3d4e5f6a7b8c9d0e");
	cr_assert_str_eq(sget(rep, "code_path"), "train.py");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(rep, "seeds"), "xgboost")), 1337);
	cr_assert_str_eq(sget(json_object_get(rep, "input_versions"), FX_FEATURES), "42");
	cr_assert_str_eq(sget(sr, "id"), FX_SPARK);
	cr_assert_str_eq(sget(sr, "state"), "COMPLETE");
	cr_assert_str_eq(sget(sr, "job"), "job:spark-prod:build_churn_features");
	cr_assert_str_eq(sget(sr, "parent"), "run:019371a2-5c41-7b8d-a1e3-6f2c9d0e4b12");
	json_t *raw = json_object_get(d, "raw_inputs");
	cr_assert(in_array(raw, FX_CUSTOMERS));
	cr_assert(in_array(raw, FX_ORDERS));
	cr_assert_eq(json_array_size(json_object_get(d, "problems")), 0);
	json_decref(d);

	/* The dbt test run read the raw orders; the JobEvent's facets and the DatasetEvent's are kept. */
	d = show(FX_ORDERS, CO_LIN_DOWNSTREAM, 1, NULL, 0);
	cr_assert_not_null(node(d, "run:a7f0c3e9-6d2b-4a18-b5c4-e3d2c1b0a9f8"));
	cr_assert_not_null(node(d, FX_SPARK));
	json_decref(d);
	d = show(FX_CUSTOMERS, CO_LIN_DOWNSTREAM, 0, NULL, 0);
	json_t *cf = json_object_get(node(d, FX_CUSTOMERS), "facets");
	cr_assert(json_is_object(json_object_get(cf, "documentation")), "DatasetEvent facet kept");
	cr_assert(json_is_object(json_object_get(cf, "schema")));
	cr_assert_not_null(node(d, "prediction:churn-2026-11-22-000001"), "the default depth reaches the prediction");
	json_decref(d);

	/* The next night the Spark run fails; a new model trained on its output is flagged. */
	ProtobufCBinaryData f2[4];
	f2[0] = fixture("fail_spark_build_features_start.json");
	f2[1] = fixture("fail_spark_build_features_fail.json");
	f2[2] = ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"2026-11-23T03:00:00Z\",\"producer\":\"" TRAINER
	           "\",\"run\":{\"runId\":\"0190e4a2-8a4b-7c6e-9d1f-000000000008\"},\"job\":{\"namespace\":\"ml\","
	           "\"name\":\"train_churn\"},\"inputs\":[{\"namespace\":\"s3://acme-warehouse\",\"name\":"
	           "\"features/churn_users\"}],\"outputs\":[{\"namespace\":\"model://registry\",\"name\":\"churn\","
	           "\"facets\":{\"version\":{\"datasetVersion\":\"8\"}}}]}");
	tl_pb_span **s2 = az(sizeof(*s2));
	s2[0] = prediction_span(0x52, 1, "churn-2026-11-23-000001", "churn", "8", T("2026-11-23T09:00:00Z"));
	send(f2, 3, s2, 1);
	d = explain("churn-2026-11-23-000001", NULL);
	cr_assert_str_eq(sget(json_object_get(d, "model"), "version"), "8", "a model:// dataset's version names it");
	json_t *pr = json_array_get(json_object_get(d, "problems"), 0);
	cr_assert_not_null(pr);
	cr_assert_str_eq(sget(pr, "node"), FX_FAIL);
	cr_assert_str_eq(sget(pr, "kind"), "failed");
	cr_assert(strstr(sget(pr, "message"), "PSQLException") != NULL, "message: %s", sget(pr, "message"));
	json_decref(d);
	/* The older prediction still explains through the run that completed. */
	d = explain("churn-2026-11-22-000001", NULL);
	cr_assert_str_eq(sget(json_array_get(json_object_get(d, "runs"), 1), "id"), FX_SPARK);
	json_decref(d);
}

/* ---- spans and OpenLineage events give the same graph ---- */

#define R_EQ "0190e4a2-8a4b-7c6e-9d1f-0000000e0a11"
#define EQ_FEATURES_V FEATURES "#v42"
#define EQ_LABELS "dataset:s3://raw-bucket:labels"
#define EQ_SCORES "dataset:warehouse:scores.churn"

/*
 * The fields of a "lineage show" node that only one source can know, left
 * out of the comparison:
 *   run      trace_id   only a span belongs to a trace; an event has none
 *   dataset  facets     events carry dataset facets (the version facet
 *                       here, schema and the like elsewhere); the span
 *                       attributes have no way to say them
 *   model    dataset    an event names the model's registry dataset
 *                       (dataset:model://registry:churn); "model:N:V" in
 *                       lineage.outputs does not
 *   model    digest     from the threadline_model facet only (absent from
 *                       the events here, so null on both sides anyway)
 *   any      first_seen a span shows its outputs at its start, the events
 *                       at COMPLETE (the same holds for edge times below)
 * Everything else must be equal: ids, types, distances, job, state, start
 * and end times, duration, error, parent, names, versions, the job's latest
 * run and state, and the edges. One more difference is not in these
 * answers: an edge carries the event time that first showed it, and a span
 * dates all of its edges at its start while the events date the outputs at
 * COMPLETE, so an --at between the two would differ; the answers compared
 * are as of now.
 */
static bool only_one_source_knows(const char *type, const char *key)
{
	return strcmp(key, "first_seen") == 0 || (strcmp(type, "run") == 0 && strcmp(key, "trace_id") == 0) ||
	       (strcmp(type, "dataset") == 0 && strcmp(key, "facets") == 0) ||
	       (strcmp(type, "model") == 0 && (strcmp(key, "dataset") == 0 || strcmp(key, "digest") == 0));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The elements of arr, each as compact JSON with sorted keys (nodes without the ignored fields), sorted, one a line. */
static char *canon_set(json_t *arr, bool nodes)
{
	size_t n = json_array_size(arr), len = 0, i;
	char **s = az((n ? n : 1) * sizeof(*s));
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		json_t *c = json_deep_copy(e);
		if (nodes) {
			const char *type = json_string_value(json_object_get(c, "type"));
			cr_assert_not_null(type);
			const char *key;
			json_t *v;
			void *tmp;
			json_object_foreach_safe(c, tmp, key, v)
			{
				if (only_one_source_knows(type, key))
					json_object_del(c, key);
			}
		}
		char *d = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
		cr_assert_not_null(d);
		s[i] = as(d);
		free(d);
		json_decref(c);
		len += strlen(s[i]) + 1;
	}
	qsort(s, n, sizeof(*s), cmp_str);
	char *out = az(len + 1);
	for (i = 0; i < n; i++) {
		strcat(out, s[i]);
		strcat(out, "\n");
	}
	return out;
}

/* show() on store s (the fixture's S is swapped for the call). */
static json_t *show_in(co_store *s, const char *id)
{
	co_store *keep = S;
	S = s;
	json_t *d = show(id, CO_LIN_BOTH, 0, NULL, 0);
	S = keep;
	return d;
}

Test(lineage, spans_and_events_give_the_same_edges)
{
	const char *t0 = "2026-11-25T06:00:00Z", *t1 = "2026-11-25T06:42:30.125Z";

	/* Store 1: the training run as an OpenLineage integration reports it. */
	static const char inputs[] =
	        "[{\"namespace\":\"warehouse\",\"name\":\"features.users\",\"facets\":{\"version\":{\"_producer\":"
	        "\"" TRAINER "\",\"_schemaURL\":\"https://openlineage.io/spec/facets/1-0-1/"
	        "DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet\",\"datasetVersion\":\"v42\"}}},"
	        "{\"namespace\":\"s3://raw-bucket\",\"name\":\"labels\",\"facets\":{}}]";
	static const char outputs[] =
	        "[{\"namespace\":\"warehouse\",\"name\":\"scores.churn\",\"facets\":{}},"
	        "{\"namespace\":\"model://registry\",\"name\":\"churn\",\"facets\":{\"threadline_model\":{"
	        "\"_producer\":\"" TRAINER "\",\"_schemaURL\":\"https://threadline.dev/facets/ModelDatasetFacet.json\","
	        "\"name\":\"churn\",\"version\":\"9\"}}}]";
	static const char job[] = "\"job\":{\"namespace\":\"ml\",\"name\":\"train_eq\",\"facets\":{}}";
	ProtobufCBinaryData evs[2];
	evs[0] =
	        ev("{\"eventType\":\"START\",\"eventTime\":\"%s\",\"producer\":\"" TRAINER "\",\"schemaURL\":\"" SCHEMA2
	           "\",\"run\":{\"runId\":\"" R_EQ "\",\"facets\":{}},%s,\"inputs\":%s,\"outputs\":[]}",
	           t0, job, inputs);
	evs[1] = ev("{\"eventType\":\"COMPLETE\",\"eventTime\":\"%s\",\"producer\":\"" TRAINER
	            "\",\"schemaURL\":\"" SCHEMA2 "\",\"run\":{\"runId\":\"" R_EQ
	            "\",\"facets\":{}},%s,\"inputs\":%s,\"outputs\":%s}",
	            t1, job, inputs, outputs);
	send(evs, 2, NULL, 0);

	/* Store 2 (fresh): the same run from a training script instrumented with OpenTelemetry only. */
	char dir2[sizeof(dir) + 8];
	snprintf(dir2, sizeof(dir2), "%s/spans", dir); /* removed with dir by teardown */
	co_store_opts o = {.dir = dir2, .map_size = 64 << 20};
	co_store *S2 = NULL;
	tl_errmsg err = {{0}};
	int rc = co_store_open(&o, &S2, &err);
	cr_assert_eq(rc, 0, "open %s: %s (%s)", dir2, tl_strerror(rc), err.msg);
	tl_pb_keyvalue **a = az(5 * sizeof(*a));
	a[0] = kv_str("lineage.run_id", R_EQ);
	a[1] = kv_arr("lineage.inputs", (const char *const[]){EQ_FEATURES_V, "s3://raw-bucket:labels", NULL});
	a[2] = kv_arr("lineage.outputs", (const char *const[]){"warehouse:scores.churn", "model:churn:9", NULL});
	a[3] = kv_str("lineage.job.namespace", "ml");
	a[4] = kv_str("lineage.job.name", "train_eq");
	tl_pb_span **sp = az(sizeof(*sp));
	sp[0] = mk_span(0x61, 1, true, "train", T(t0), T(t1), a, 5);
	co_store *S1 = S;
	S = S2;
	send(NULL, 0, sp, 1);
	S = S1;

	static const char *const ids[] = {"run:" R_EQ, "job:ml:train_eq", FEATURES,       EQ_FEATURES_V,
	                                  EQ_LABELS,   EQ_SCORES,         "model:churn:9"};
	/* Nodes and edges of each answer: each direction is walked on its own from the root, and the
	 * version node is reached only from itself (co_lineage.h). */
	static const size_t want[][2] = {{6, 5}, {4, 3}, {4, 3}, {4, 3}, {4, 3}, {5, 4}, {5, 4}};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		json_t *de = show_in(S1, ids[i]), *ds = show_in(S2, ids[i]);
		const char *top[] = {"root", "direction", "depth", "at", "truncated"};
		for (size_t k = 0; k < sizeof(top) / sizeof(top[0]); k++)
			cr_assert(json_equal(json_object_get(de, top[k]), json_object_get(ds, top[k])),
			          "%s: \"%s\" differs", ids[i], top[k]);
		const char *sn = canon_set(json_object_get(ds, "nodes"), true),
		           *en = canon_set(json_object_get(de, "nodes"), true);
		cr_assert_str_eq(sn, en, "%s: the nodes differ\nfrom spans:\n%sfrom events:\n%s", ids[i], sn, en);
		const char *se = canon_set(json_object_get(ds, "edges"), false),
		           *ee = canon_set(json_object_get(de, "edges"), false);
		cr_assert_str_eq(se, ee, "%s: the edges differ\nfrom spans:\n%sfrom events:\n%s", ids[i], se, ee);
		/* Not equal by being empty: the run, its job and what it read and wrote are around every node. */
		cr_assert_eq(json_array_size(json_object_get(de, "nodes")), want[i][0], "%s: nodes", ids[i]);
		cr_assert_eq(json_array_size(json_object_get(de, "edges")), want[i][1], "%s: edges", ids[i]);
		json_decref(de);
		json_decref(ds);
	}

	/* What both answers hold, spelled out once. */
	json_t *d = show_in(S2, "run:" R_EQ);
	cr_assert(has_edge(d, "job:ml:train_eq", "run:" R_EQ, "run"));
	cr_assert(has_edge(d, FEATURES, "run:" R_EQ, "input"));
	cr_assert(has_edge(d, EQ_LABELS, "run:" R_EQ, "input"));
	cr_assert(has_edge(d, "run:" R_EQ, EQ_SCORES, "output"));
	cr_assert(has_edge(d, "run:" R_EQ, "model:churn:9", "output"));
	json_t *r = node(d, "run:" R_EQ);
	cr_assert_str_eq(sget(r, "state"), "COMPLETE");
	cr_assert_not_null(sget(r, "job_version"), "both sources give the run the same job version, not none");
	cr_assert_str_eq(sget(r, "started_at"), "2026-11-25T06:00:00.000000000Z");
	cr_assert_str_eq(sget(r, "ended_at"), "2026-11-25T06:42:30.125000000Z");
	cr_assert_str_eq(sget(r, "trace_id"), "61616161616161616161616161616162");
	json_decref(d);
	d = show_in(S2, EQ_FEATURES_V);
	cr_assert(has_edge(d, EQ_FEATURES_V, "run:" R_EQ, "input"), "the version read is an input of its own");
	json_decref(d);
	d = show_in(S1, "run:" R_EQ);
	cr_assert(json_is_null(json_object_get(node(d, "run:" R_EQ), "trace_id")));
	cr_assert_str_eq(sget(node(d, "model:churn:9"), "dataset"), "dataset:model://registry:churn");
	json_decref(d);
	co_store_close(S2);
}
