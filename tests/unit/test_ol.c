/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenLineage decoder (common/tl_ol.h): events of spec 1.x and 2.x,
 * every required field missing or malformed, times, UUIDs, the facets the
 * graph reads, model detection, bad JSON, limits, and the fixtures in
 * tests/data/openlineage ($TL_OL_DATA) that the collector and CLI tests use.
 * JSON in this file is written with ' for " (see q()).
 */
#include "tl_ol.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns a malloc'd copy of s with every ' turned into ", so JSON can be written readably in C. */
static char *q(const char *s)
{
	char *r = strdup(s);
	cr_assert_not_null(r);
	for (char *p = r; *p != '\0'; p++) {
		if (*p == '\'')
			*p = '"';
	}
	return r;
}

static int parse_q(const char *json_q, const tl_ol_limits *lim, tl_ol_event *ev, tl_errmsg *err)
{
	char *s = q(json_q);
	int rc = tl_ol_parse((const uint8_t *)s, strlen(s), lim, ev, err);
	free(s);
	return rc;
}

static bool printable_ascii(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	}
	return true;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *const BASE =
        "{'eventType': 'COMPLETE', 'eventTime': '2026-11-22T02:00:21.884Z',"
        " 'run': {'runId': '8F3C2A6E-4B1D-4C9A-B7E5-2D0F1A9C3E41', 'facets': {"
        "   'parent': {'_producer': 'p', '_schemaURL': 's',"
        "     'run': {'runId': '019371a2-5c41-7b8d-a1e3-6f2c9d0e4b12'}, 'job': {'namespace': 'airflow', 'name': "
        "'dag.task'},"
        "     'root': {'run': {'runId': '019371a2-5c00-7e3a-9f2b-1d4c8e6a0b01'},"
        "              'job': {'namespace': 'airflow', 'name': 'dag'}}},"
        "   'errorMessage': {'message': 'boom', 'programmingLanguage': 'PYTHON', 'stackTrace': 'Traceback: x'},"
        "   'acme_custom': {'deep': [1, {'k': 'v'}], 'n': 12345678901234}}},"
        " 'job': {'namespace': 'spark-prod', 'name': 'build', 'facets': {'sourceCodeLocation': {"
        "   'type': 'git', 'url': 'https://g.example/x/blob/abc/f.py', 'repoUrl': 'https://g.example/x.git',"
        "   'path': 'f.py', 'version': 'abc', 'tag': 'v1', 'branch': 'main'}}},"
        " 'inputs': [{'namespace': 'postgres://db:5432', 'name': 'shop.orders', 'facets': {'schema': {'fields': []}},"
        "   'inputFacets': {'dataQualityMetrics': {'rowCount': 10, 'columnMetrics': {}}}}],"
        " 'outputs': [{'namespace': 'model://registry', 'name': 'churn',"
        "   'facets': {'version': {'datasetVersion': '7'},"
        "     'threadline_model': {'name': 'churn', 'version': '7', 'digest': 'sha256:ab'}},"
        "   'outputFacets': {'outputStatistics': {'rowCount': 1}}}],"
        " 'producer': 'https://example.com/producer',"
        " 'schemaURL': 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent',"
        " 'x_unknown_top': {'a': [true, null]}}";

/*
 * Applies one edit to BASE and parses the result as text: path is "a.b.0.c"
 * (numbers index arrays); val NULL deletes the member, else it is JSON
 * (with ') to put there.
 */
static int parse_edit(const char *base, const char *path, const char *val, tl_ol_event *ev, tl_errmsg *err)
{
	char *b = q(base);
	json_error_t je;
	json_t *doc = json_loads(b, 0, &je);
	free(b);
	cr_assert_not_null(doc, "base: %s", je.text);
	char *p = strdup(path);
	json_t *cur = doc;
	char *seg = p, *dot;
	while ((dot = strchr(seg, '.')) != NULL) {
		*dot = '\0';
		cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(seg)) : json_object_get(cur, seg);
		cr_assert_not_null(cur, "path %s: no %s", path, seg);
		seg = dot + 1;
	}
	if (val == NULL) {
		if (json_is_array(cur))
			json_array_remove(cur, (size_t)atoi(seg));
		else
			json_object_del(cur, seg);
	} else {
		char *v = q(val);
		json_t *nv = json_loads(v, JSON_DECODE_ANY, &je);
		free(v);
		cr_assert_not_null(nv, "value %s: %s", val, je.text);
		if (json_is_array(cur))
			json_array_set_new(cur, (size_t)atoi(seg), nv);
		else
			json_object_set_new(cur, seg, nv);
	}
	free(p);
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	int rc = tl_ol_parse((const uint8_t *)text, strlen(text), NULL, ev, err);
	free(text);
	return rc;
}

static void uuid_is(const uint8_t id[16], const char *want)
{
	char s[37];
	tl_ol_uuid_format(id, s);
	cr_assert_str_eq(s, want);
}

Test(ol, base_run_event_2x)
{
	tl_ol_event ev;
	tl_errmsg err = {{0}};
	int rc = parse_q(BASE, NULL, &ev, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_RUN_EVENT);
	cr_assert_eq(ev.type, TL_OL_COMPLETE);
	cr_assert_eq(ev.spec_major, 2);
	cr_assert_eq(ev.event_time_ns, UINT64_C(1795312821884000000));
	cr_assert_str_eq(ev.producer, "https://example.com/producer");
	cr_assert(ev.has_run);
	uuid_is(ev.run_id, "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41");
	cr_assert_str_eq(ev.job_ns, "spark-prod");
	cr_assert_str_eq(ev.job_name, "build");
	cr_assert_eq(ev.ninputs, 1);
	cr_assert_eq(ev.noutputs, 1);
	cr_assert_str_eq(ev.inputs[0].ns, "postgres://db:5432");
	cr_assert_str_eq(ev.inputs[0].name, "shop.orders");
	cr_assert_null(ev.inputs[0].version);
	cr_assert(!ev.inputs[0].is_model);
	cr_assert_null(ev.inputs[0].model_name);
	cr_assert_not_null(ev.inputs[0].input_facets);
	cr_assert_not_null(json_object_get(ev.inputs[0].input_facets, "dataQualityMetrics"));
	cr_assert_null(ev.inputs[0].output_facets);
	cr_assert_not_null(ev.outputs[0].output_facets);
	cr_assert_null(ev.outputs[0].input_facets);
	tl_ol_event_fini(&ev);
	cr_assert_null(ev.doc);
	cr_assert_null(ev.inputs);
}

Test(ol, minimal_events_of_each_kind)
{
	tl_ol_event ev;
	tl_errmsg err = {{0}};
	/* 1.x RunEvent without eventType (optional in the spec) and without schemaURL. */
	cr_assert_eq(parse_q("{'eventTime': '2021-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'run': {'runId': '3b452093-782c-4ef2-9c0c-aafe2aa6f34d'},"
	                     " 'job': {'namespace': 'n', 'name': 'j'}}",
	                     NULL, &ev, &err),
	             0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_RUN_EVENT);
	cr_assert_eq(ev.type, TL_OL_TYPE_NONE);
	cr_assert_eq(ev.spec_major, 0);
	cr_assert_null(ev.schema_url);
	cr_assert_null(ev.run_facets);
	cr_assert_null(ev.job_facets);
	cr_assert(!ev.has_parent);
	cr_assert_eq(ev.ninputs + ev.noutputs, 0);
	tl_ol_event_fini(&ev);

	cr_assert_eq(parse_q("{'eventType': 'START', 'eventTime': '2021-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'schemaURL': 'https://openlineage.io/spec/1-0-5/OpenLineage.json#/definitions/RunEvent',"
	                     " 'run': {'runId': '3b452093-782c-4ef2-9c0c-aafe2aa6f34d'},"
	                     " 'job': {'namespace': 'n', 'name': 'j'}, 'inputs': null, 'outputs': []}",
	                     NULL, &ev, &err),
	             0, "%s", err.msg);
	cr_assert_eq(ev.spec_major, 1);
	cr_assert_eq(ev.type, TL_OL_START);
	tl_ol_event_fini(&ev);

	/* JobEvent: by schemaURL, and by shape. */
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'schemaURL': 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent',"
	                     " 'job': {'namespace': 'n', 'name': 'j'},"
	                     " 'inputs': [{'namespace': 'a', 'name': 'b'}]}",
	                     NULL, &ev, &err),
	             0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_JOB_EVENT);
	cr_assert_eq(ev.type, TL_OL_TYPE_NONE);
	cr_assert(!ev.has_run);
	cr_assert_str_eq(ev.job_name, "j");
	cr_assert_eq(ev.ninputs, 1);
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p', 'job': {'namespace': 'n', 'name': "
	                     "'j'}}",
	                     NULL, &ev, &err),
	             0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_JOB_EVENT);
	tl_ol_event_fini(&ev);

	/* DatasetEvent: by schemaURL, and by shape. */
	cr_assert_eq(
	        parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                " 'schemaURL': 'https://openlineage.io/spec/2-0-0/OpenLineage.json#/$defs/DatasetEvent',"
	                " 'dataset': {'namespace': 'n', 'name': 'd', 'facets': {'version': {'datasetVersion': '3'}}}}",
	                NULL, &ev, &err),
	        0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_DATASET_EVENT);
	cr_assert_str_eq(ev.dataset.ns, "n");
	cr_assert_str_eq(ev.dataset.name, "d");
	cr_assert_str_eq(ev.dataset.version, "3");
	cr_assert_null(ev.job_ns);
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p', 'dataset': {'namespace': 'n', "
	                     "'name': 'd'}}",
	                     NULL, &ev, &err),
	             0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_DATASET_EVENT);
	tl_ol_event_fini(&ev);
}

Test(ol, kind_rules)
{
	tl_ol_event ev;
	tl_errmsg err;
	/* eventType without run: a RunEvent that lost its run, not a JobEvent. */
	cr_assert_eq(parse_q("{'eventType': 'START', 'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'job': {'namespace': 'n', 'name': 'j'}}",
	                     NULL, &ev, &err),
	             TL_EINVALID);
	cr_assert_str_eq(err.msg, "run: missing");
	cr_assert_null(ev.doc);
	/* The schemaURL fragment wins over the shape. */
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'schemaURL': 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent',"
	                     " 'run': {'runId': '3b452093-782c-4ef2-9c0c-aafe2aa6f34d'}, 'job': {'namespace': 'n', "
	                     "'name': 'j'}}",
	                     NULL, &ev, &err),
	             TL_EINVALID);
	cr_assert_str_eq(err.msg, "dataset: missing");
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p'}", NULL, &ev, &err), TL_EINVALID);
	cr_assert(starts_with(err.msg, "event: none of run, job or dataset"), "%s", err.msg);
	cr_assert_eq(parse_q("[{'eventTime': '2026-01-01T00:00:00Z'}]", NULL, &ev, &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "event: not an object (an array)");
	/* Spec majors other than 1 and 2. */
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'schemaURL': 'https://openlineage.io/spec/3-0-0/OpenLineage.json#/$defs/JobEvent',"
	                     " 'job': {'namespace': 'n', 'name': 'j'}}",
	                     NULL, &ev, &err),
	             TL_EUNSUPPORTED);
	cr_assert(starts_with(err.msg, "schemaURL: spec version 3-0-0 is not supported"), "%s", err.msg);
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'schemaURL': 'https://openlineage.io/spec/0-0-1/OpenLineage.json',"
	                     " 'job': {'namespace': 'n', 'name': 'j'}}",
	                     NULL, &ev, &err),
	             TL_EUNSUPPORTED);
	/* A schemaURL without a version, or with an unknown fragment, falls back to the shape. */
	cr_assert_eq(parse_q("{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p',"
	                     " 'schemaURL': 'https://raw.githubusercontent.com/OpenLineage/OpenLineage/main/spec/"
	                     "OpenLineage.json#/definitions/Something',"
	                     " 'job': {'namespace': 'n', 'name': 'j'}}",
	                     NULL, &ev, &err),
	             0, "%s", err.msg);
	cr_assert_eq(ev.kind, TL_OL_JOB_EVENT);
	cr_assert_eq(ev.spec_major, 0);
	tl_ol_event_fini(&ev);
}

struct edit_case {
	const char *path;
	const char *val; /* NULL: delete */
	int code;
	const char *msg; /* the message starts with this */
};

static const struct edit_case bad_fields[] = {
        {"eventTime", NULL, TL_EINVALID, "eventTime: missing"},
        {"eventTime", "5", TL_EINVALID, "eventTime: not a string (a number)"},
        {"eventTime", "'2026-11-22'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'2026-11-22T10:00:00'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'2026-11-22T10:00Z'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'2026-11-22 10:00:00Z'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'2026-11-22T10:00:00+0100'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'2026-11-22T10:00:00.Z'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'1700000000'", TL_EINVALID, "eventTime: not an RFC 3339 date-time"},
        {"eventTime", "'2026-02-30T10:00:00Z'", TL_EINVALID, "eventTime: not a valid date and time"},
        {"eventTime", "'2025-02-29T10:00:00Z'", TL_EINVALID, "eventTime: not a valid date and time"},
        {"eventTime", "'2026-11-22T24:00:00Z'", TL_EINVALID, "eventTime: not a valid date and time"},
        {"eventTime", "'2026-11-22T10:00:00+24:00'", TL_EINVALID, "eventTime: not a valid date and time"},
        {"eventTime", "'1969-12-31T23:59:59Z'", TL_EINVALID, "eventTime: out of range"},
        {"eventTime", "'2600-01-01T00:00:00Z'", TL_EINVALID, "eventTime: out of range"},
        {"producer", NULL, TL_EINVALID, "producer: missing"},
        {"producer", "''", TL_EINVALID, "producer: empty"},
        {"producer", "null", TL_EINVALID, "producer: null, expected a string"},
        {"producer", "['p']", TL_EINVALID, "producer: not a string (an array)"},
        {"schemaURL", "3", TL_EINVALID, "schemaURL: not a string (a number)"},
        {"schemaURL", "'https://openlineage.io/spec/10-0-0/OpenLineage.json#/$defs/RunEvent'", TL_EUNSUPPORTED,
         "schemaURL: spec version 10-0-0 is not supported"},
        {"eventType", "'start'", TL_EINVALID, "eventType: \"start\" is not one of START, RUNNING"},
        {"eventType", "''", TL_EINVALID, "eventType: \"\" is not one of"},
        {"eventType", "1", TL_EINVALID, "eventType: not a string (a number)"},
        {"run", NULL, TL_EINVALID, "run: missing"},
        {"run", "[]", TL_EINVALID, "run: not an object (an array)"},
        {"run", "null", TL_EINVALID, "run: null, expected an object"},
        {"run.runId", NULL, TL_EINVALID, "run.runId: missing"},
        {"run.runId", "''", TL_EINVALID, "run.runId: empty"},
        {"run.runId", "'run-1'", TL_EINVALID, "run.runId: not a UUID"},
        {"run.runId", "'8f3c2a6e4b1d4c9ab7e52d0f1a9c3e41'", TL_EINVALID, "run.runId: not a UUID"},
        {"run.runId", "'{8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41}'", TL_EINVALID, "run.runId: not a UUID"},
        {"run.runId", "'8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e4g'", TL_EINVALID, "run.runId: not a UUID"},
        {"run.runId", "12", TL_EINVALID, "run.runId: not a string (a number)"},
        {"run.facets", "[]", TL_EINVALID, "run.facets: not an object (an array)"},
        {"job", NULL, TL_EINVALID, "job: missing"},
        {"job", "'j'", TL_EINVALID, "job: not an object (a string)"},
        {"job.namespace", NULL, TL_EINVALID, "job.namespace: missing"},
        {"job.namespace", "''", TL_EINVALID, "job.namespace: empty"},
        {"job.name", NULL, TL_EINVALID, "job.name: missing"},
        {"job.name", "false", TL_EINVALID, "job.name: not a string (a boolean)"},
        {"job.facets", "1", TL_EINVALID, "job.facets: not an object (a number)"},
        {"inputs", "{}", TL_EINVALID, "inputs: not an array (an object)"},
        {"outputs", "'x'", TL_EINVALID, "outputs: not an array (a string)"},
        {"inputs.0", "'x'", TL_EINVALID, "inputs[0]: not an object (a string)"},
        {"inputs.0.namespace", NULL, TL_EINVALID, "inputs[0].namespace: missing"},
        {"inputs.0.name", "''", TL_EINVALID, "inputs[0].name: empty"},
        {"inputs.0.facets", "'f'", TL_EINVALID, "inputs[0].facets: not an object (a string)"},
        {"inputs.0.inputFacets", "[1]", TL_EINVALID, "inputs[0].inputFacets: not an object (an array)"},
        {"outputs.0.name", "7", TL_EINVALID, "outputs[0].name: not a string (a number)"},
        {"outputs.0.outputFacets", "true", TL_EINVALID, "outputs[0].outputFacets: not an object (a boolean)"},
        {"outputs.0.facets.version", "'7'", TL_EINVALID, "outputs[0].facets.version: not an object (a string)"},
        {"outputs.0.facets.version.datasetVersion", "7", TL_EINVALID,
         "outputs[0].facets.version.datasetVersion: not a string (a number)"},
        {"outputs.0.facets.threadline_model.digest", "true", TL_EINVALID,
         "outputs[0].facets.threadline_model.digest: not a string (a boolean)"},
        {"outputs.0.facets.threadline_model.version", "7", TL_EINVALID,
         "outputs[0].facets.threadline_model.version: not a string (a number)"},
        {"run.facets.parent", "'p'", TL_EINVALID, "run.facets.parent: not an object (a string)"},
        {"run.facets.parent.run", NULL, TL_EINVALID, "run.facets.parent.run: missing"},
        {"run.facets.parent.run.runId", "'x'", TL_EINVALID, "run.facets.parent.run.runId: not a UUID"},
        {"run.facets.parent.job", NULL, TL_EINVALID, "run.facets.parent.job: missing"},
        {"run.facets.parent.job.namespace", "''", TL_EINVALID, "run.facets.parent.job.namespace: empty"},
        {"run.facets.parent.root", "[]", TL_EINVALID, "run.facets.parent.root: not an object (an array)"},
        {"run.facets.parent.root.run.runId", NULL, TL_EINVALID, "run.facets.parent.root.run.runId: missing"},
        {"run.facets.parent.root.job.name", NULL, TL_EINVALID, "run.facets.parent.root.job.name: missing"},
        {"run.facets.errorMessage.message", "5", TL_EINVALID,
         "run.facets.errorMessage.message: not a string (a number)"},
        {"run.facets.errorMessage.stackTrace", "['a']", TL_EINVALID,
         "run.facets.errorMessage.stackTrace: not a string (an array)"},
        {"job.facets.sourceCodeLocation.version", "5", TL_EINVALID,
         "job.facets.sourceCodeLocation.version: not a string (a number)"},
        {"job.facets.sourceCodeLocation.url", "{}", TL_EINVALID,
         "job.facets.sourceCodeLocation.url: not a string (an object)"},
};

Test(ol, each_missing_or_malformed_field_is_named)
{
	for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
		const struct edit_case *c = &bad_fields[i];
		tl_ol_event ev;
		tl_errmsg err = {{0}};
		int rc = parse_edit(BASE, c->path, c->val, &ev, &err);
		cr_expect_eq(rc, c->code, "%s = %s: rc %d (%s)", c->path, c->val ? c->val : "(deleted)", rc, err.msg);
		cr_expect(starts_with(err.msg, c->msg), "%s = %s: got \"%s\", want \"%s...\"", c->path,
		          c->val ? c->val : "(deleted)", err.msg, c->msg);
		cr_expect(printable_ascii(err.msg));
		cr_expect_null(ev.doc, "a failed parse leaves the event zeroed");
		cr_expect_null(ev.inputs);
		cr_expect_eq(ev.ninputs, 0);
		if (rc == 0)
			tl_ol_event_fini(&ev);
	}
}

Test(ol, optional_fields_may_be_absent_or_null)
{
	static const char *const drop[] = {"eventType",
	                                   "schemaURL",
	                                   "inputs",
	                                   "outputs",
	                                   "run.facets",
	                                   "job.facets",
	                                   "run.facets.parent",
	                                   "run.facets.parent.root",
	                                   "run.facets.errorMessage",
	                                   "run.facets.errorMessage.message",
	                                   "job.facets.sourceCodeLocation.url",
	                                   "outputs.0.facets",
	                                   "outputs.0.facets.threadline_model.digest",
	                                   "inputs.0.inputFacets"};
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
		tl_ol_event ev;
		tl_errmsg err = {{0}};
		cr_expect_eq(parse_edit(BASE, drop[i], NULL, &ev, &err), 0, "without %s: %s", drop[i], err.msg);
		tl_ol_event_fini(&ev);
		cr_expect_eq(parse_edit(BASE, drop[i], "null", &ev, &err), 0, "%s null: %s", drop[i], err.msg);
		tl_ol_event_fini(&ev);
	}
}

Test(ol, event_types)
{
	static const char *const names[] = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"};
	static const tl_ol_type types[] = {TL_OL_START, TL_OL_RUNNING, TL_OL_COMPLETE,
	                                   TL_OL_ABORT, TL_OL_FAIL,    TL_OL_OTHER};
	for (size_t i = 0; i < 6; i++) {
		char val[32];
		snprintf(val, sizeof(val), "'%s'", names[i]);
		tl_ol_event ev;
		tl_errmsg err;
		cr_assert_eq(parse_edit(BASE, "eventType", val, &ev, &err), 0, "%s: %s", names[i], err.msg);
		cr_assert_eq(ev.type, types[i]);
		cr_assert_str_eq(tl_ol_type_name(ev.type), names[i]);
		tl_ol_type t = TL_OL_TYPE_NONE;
		cr_assert_eq(tl_ol_type_parse(names[i], &t), 0);
		cr_assert_eq(t, types[i]);
		tl_ol_event_fini(&ev);
	}
	cr_assert_str_eq(tl_ol_type_name(TL_OL_TYPE_NONE), "");
	cr_assert_str_eq(tl_ol_type_name((tl_ol_type)99), "");
	tl_ol_type t = TL_OL_FAIL;
	cr_assert_eq(tl_ol_type_parse("complete", &t), TL_EINVALID);
	cr_assert_eq(tl_ol_type_parse("", &t), TL_EINVALID);
	cr_assert_eq(tl_ol_type_parse(NULL, &t), TL_EINVALID);
	cr_assert_eq(t, TL_OL_FAIL, "untouched on error");
}

static uint64_t time_of(const char *t)
{
	char val[96];
	snprintf(val, sizeof(val), "'%s'", t);
	tl_ol_event ev;
	tl_errmsg err;
	cr_assert_eq(parse_edit(BASE, "eventTime", val, &ev, &err), 0, "%s: %s", t, err.msg);
	uint64_t ns = ev.event_time_ns;
	tl_ol_event_fini(&ev);
	return ns;
}

Test(ol, rfc3339_times_with_offsets_and_fractions)
{
	const uint64_t want = UINT64_C(1795315272500000000); /* 2026-11-22T02:41:12.5Z */
	cr_assert_eq(time_of("2026-11-22T02:41:12.5Z"), want);
	cr_assert_eq(time_of("2026-11-22T02:41:12.500000000Z"), want);
	cr_assert_eq(time_of("2026-11-22T02:41:12.5000000009Z"), want, "digits past ns are dropped");
	cr_assert_eq(time_of("2026-11-22t02:41:12.5z"), want);
	cr_assert_eq(time_of("2026-11-22T03:41:12.5+01:00"), want);
	cr_assert_eq(time_of("2026-11-21T21:11:12.5-05:30"), want);
	cr_assert_eq(time_of("2026-11-22T02:41:12.500000+00:00"), want);
	cr_assert_eq(time_of("2026-11-22T02:41:12.500-00:00"), want);
	cr_assert_eq(time_of("2026-11-22T02:41:12Z"), want - 500000000);
	cr_assert_eq(time_of("2024-02-29T00:00:00Z"), UINT64_C(1709164800000000000), "leap day");
	cr_assert_eq(time_of("1970-01-01T00:00:00Z"), 0);
	cr_assert_eq(time_of("1970-01-01T01:00:00.000000001+01:00"), 1);
}

Test(ol, uuids)
{
	uint8_t id[16], keep[16];
	char s[37];
	cr_assert_eq(tl_ol_uuid_parse("8F3C2A6E-4b1d-4C9A-B7E5-2D0F1A9C3E41", id), 0);
	tl_ol_uuid_format(id, s);
	cr_assert_str_eq(s, "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41");
	cr_assert_eq(id[0], 0x8f);
	cr_assert_eq(id[15], 0x41);
	uint8_t again[16];
	cr_assert_eq(tl_ol_uuid_parse(s, again), 0);
	cr_assert_eq(memcmp(id, again, 16), 0);
	cr_assert_eq(tl_ol_uuid_parse("00000000-0000-0000-0000-000000000000", again), 0, "the nil UUID is well-formed");
	memcpy(keep, id, 16);
	static const char *const bad[] = {
	        "",
	        "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e4",
	        "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e411",
	        "8f3c2a6e4b1d-4c9a-b7e5-2d0f1a9c3e41-",
	        "8f3c2a6e-4b1d-4c9ab7e5--2d0f1a9c3e41",
	        "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e4g",
	        "8f3c2a6e_4b1d_4c9a_b7e5_2d0f1a9c3e41",
	        "{f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e4}",
	        "+8f3c2a6-4b1d-4c9a-b7e5-2d0f1a9c3e41",
	        "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(tl_ol_uuid_parse(bad[i], id), TL_EINVALID, "\"%s\"", bad[i]);
	cr_assert_eq(tl_ol_uuid_parse(NULL, id), TL_EINVALID);
	cr_assert_eq(memcmp(id, keep, 16), 0, "out untouched on error");
}

Test(ol, parent_error_and_code_facets)
{
	tl_ol_event ev;
	tl_errmsg err;
	cr_assert_eq(parse_q(BASE, NULL, &ev, &err), 0, "%s", err.msg);
	cr_assert(ev.has_parent);
	uuid_is(ev.parent_run_id, "019371a2-5c41-7b8d-a1e3-6f2c9d0e4b12");
	cr_assert_str_eq(ev.parent_job_ns, "airflow");
	cr_assert_str_eq(ev.parent_job_name, "dag.task");
	cr_assert(ev.has_root);
	uuid_is(ev.root_run_id, "019371a2-5c00-7e3a-9f2b-1d4c8e6a0b01");
	cr_assert_str_eq(ev.root_job_name, "dag");
	cr_assert_str_eq(ev.error_message, "boom");
	cr_assert_str_eq(ev.error_language, "PYTHON");
	cr_assert_str_eq(ev.error_stack, "Traceback: x");
	cr_assert_str_eq(ev.code_url, "https://g.example/x/blob/abc/f.py");
	cr_assert_str_eq(ev.code_repo_url, "https://g.example/x.git");
	cr_assert_str_eq(ev.code_type, "git");
	cr_assert_str_eq(ev.code_path, "f.py");
	cr_assert_str_eq(ev.code_version, "abc");
	cr_assert_str_eq(ev.code_tag, "v1");
	cr_assert_str_eq(ev.code_branch, "main");
	tl_ol_event_fini(&ev);

	/* A 1.x parent (no root); sourceCodeLocation with only repoUrl. */
	cr_assert_eq(parse_edit(BASE, "run.facets.parent.root", NULL, &ev, &err), 0, "%s", err.msg);
	cr_assert(ev.has_parent);
	cr_assert(!ev.has_root);
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "job.facets.sourceCodeLocation.url", NULL, &ev, &err), 0, "%s", err.msg);
	cr_assert_str_eq(ev.code_url, "https://g.example/x.git", "url falls back to repoUrl");
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "run.facets", NULL, &ev, &err), 0, "%s", err.msg);
	cr_assert(!ev.has_parent);
	cr_assert(!ev.has_root);
	cr_assert_null(ev.error_message);
	tl_ol_event_fini(&ev);
	/* A facet marked deleted is not read. */
	cr_assert_eq(parse_edit(BASE, "job.facets.sourceCodeLocation", "{'_deleted': true, 'url': 5}", &ev, &err), 0,
	             "%s", err.msg);
	cr_assert_null(ev.code_url);
	tl_ol_event_fini(&ev);
}

Test(ol, dataset_versions)
{
	tl_ol_event ev;
	tl_errmsg err;
	/* 2.x "version" facet, the 1.x-era "datasetVersion" facet, and both (version wins). */
	cr_assert_eq(parse_edit(BASE, "inputs.0.facets.version", "{'datasetVersion': 'v2'}", &ev, &err), 0, "%s",
	             err.msg);
	cr_assert_str_eq(ev.inputs[0].version, "v2");
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "inputs.0.facets.datasetVersion", "{'datasetVersion': 'v1'}", &ev, &err), 0, "%s",
	             err.msg);
	cr_assert_str_eq(ev.inputs[0].version, "v1");
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "inputs.0.facets",
	                        "{'datasetVersion': {'datasetVersion': 'v1'}, 'version': {'datasetVersion': 'v2'}}",
	                        &ev, &err),
	             0, "%s", err.msg);
	cr_assert_str_eq(ev.inputs[0].version, "v2");
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "inputs.0.facets.version", "{'_deleted': true}", &ev, &err), 0, "%s", err.msg);
	cr_assert_null(ev.inputs[0].version);
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "inputs.0.facets.version", "{'_producer': 'p'}", &ev, &err), 0, "%s", err.msg);
	cr_assert_null(ev.inputs[0].version, "a version facet without datasetVersion gives no version");
	tl_ol_event_fini(&ev);
}

Test(ol, model_detection)
{
	tl_ol_event ev;
	tl_errmsg err;
	cr_assert_eq(parse_q(BASE, NULL, &ev, &err), 0, "%s", err.msg);
	tl_ol_dataset *m = &ev.outputs[0];
	cr_assert(m->is_model);
	cr_assert_str_eq(m->model_name, "churn");
	cr_assert_str_eq(m->model_version, "7");
	cr_assert_str_eq(m->model_digest, "sha256:ab");
	cr_assert_str_eq(m->version, "7");
	tl_ol_event_fini(&ev);

	/* model:// namespace alone: the dataset's name and version. */
	cr_assert_eq(parse_edit(BASE, "outputs.0.facets.threadline_model", NULL, &ev, &err), 0, "%s", err.msg);
	cr_assert(ev.outputs[0].is_model);
	cr_assert_str_eq(ev.outputs[0].model_name, "churn");
	cr_assert_str_eq(ev.outputs[0].model_version, "7");
	cr_assert_null(ev.outputs[0].model_digest);
	tl_ol_event_fini(&ev);
	cr_assert_eq(
	        parse_edit(
	                BASE, "outputs.0",
	                "{'namespace': 'MODEL://Registry', 'name': 'fraud', 'facets': {'version': {'datasetVersion': "
	                "'3'}}}",
	                &ev, &err),
	        0, "%s", err.msg);
	cr_assert(ev.outputs[0].is_model, "the URI scheme is case-insensitive");
	cr_assert_str_eq(ev.outputs[0].model_name, "fraud");
	cr_assert_str_eq(ev.outputs[0].model_version, "3");
	tl_ol_event_fini(&ev);

	/* The facet alone, in any namespace; missing parts come from the dataset. */
	cr_assert_eq(
	        parse_edit(BASE, "outputs.0",
	                   "{'namespace': 's3://models', 'name': 'churn/model.pkl', 'facets': {'version': "
	                   "{'datasetVersion': '11'}, 'threadline_model': {'name': 'churn', 'digest': 'sha256:cd'}}}",
	                   &ev, &err),
	        0, "%s", err.msg);
	cr_assert(ev.outputs[0].is_model);
	cr_assert_str_eq(ev.outputs[0].model_name, "churn");
	cr_assert_str_eq(ev.outputs[0].model_version, "11");
	cr_assert_str_eq(ev.outputs[0].model_digest, "sha256:cd");
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "outputs.0",
	                        "{'namespace': 's3://models', 'name': 'm', 'facets': {'threadline_model': {}}}", &ev,
	                        &err),
	             0, "%s", err.msg);
	cr_assert(ev.outputs[0].is_model);
	cr_assert_str_eq(ev.outputs[0].model_name, "m");
	cr_assert_null(ev.outputs[0].model_version, "no version anywhere: NULL, the collector decides");
	tl_ol_event_fini(&ev);

	/* A model read as an input (batch scoring) is detected too; "model" elsewhere in the namespace is not. */
	cr_assert_eq(parse_edit(BASE, "inputs.0", "{'namespace': 'model://registry', 'name': 'churn'}", &ev, &err), 0,
	             "%s", err.msg);
	cr_assert(ev.inputs[0].is_model);
	tl_ol_event_fini(&ev);
	cr_assert_eq(parse_edit(BASE, "inputs.0", "{'namespace': 's3://model://x', 'name': 'churn'}", &ev, &err), 0,
	             "%s", err.msg);
	cr_assert(!ev.inputs[0].is_model);
	cr_assert_null(ev.inputs[0].model_name);
	tl_ol_event_fini(&ev);
}

Test(ol, invalid_json_names_the_position)
{
	tl_ol_event ev;
	tl_errmsg err;
	const char *s = "{\"eventTime\": \"2026-01-01T00:00:00Z\",\n \"producer\": \"p\",\n \"job\": {\"name\": }\n}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE);
	cr_assert(starts_with(err.msg, "invalid JSON at line 3, column "), "%s", err.msg);
	cr_assert(strstr(err.msg, "(byte ") != NULL, "%s", err.msg);
	cr_assert_null(ev.doc);

	s = "{\"a\": 1,}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE);
	cr_assert(starts_with(err.msg, "invalid JSON at line 1, column 9 (byte 9): "), "%s", err.msg);

	cr_assert_eq(tl_ol_parse((const uint8_t *)"", 0, NULL, &ev, &err), TL_EPARSE);
	cr_assert_eq(tl_ol_parse(NULL, 0, NULL, &ev, &err), TL_EPARSE);
	s = "{} {}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE, "trailing data");
	s = "\"just a string\"";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE);

	/* Duplicate keys are refused (readers would disagree on the value). */
	s = "{\"eventTime\": \"2026-01-01T00:00:00Z\", \"producer\": \"p\", \"producer\": \"q\", \"job\": {}}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE);
	cr_assert(strstr(err.msg, "duplicate") != NULL, "%s", err.msg);

	/* Invalid UTF-8 and NUL escapes are refused by jansson; the message stays printable ASCII. */
	s = "{\"producer\": \"a\xff\xfe\"}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE);
	cr_assert(printable_ascii(err.msg), "%s", err.msg);
	s = "{\"producer\": \"a\\u0000b\"}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE);
	s = "{\"n\": 123456789012345678901234567890}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, &err), TL_EPARSE, "integer beyond int64");

	/* A NUL byte inside the body ends nothing early: it is invalid JSON. */
	const char nul[] = "{\"a\": \"x\0y\"}";
	cr_assert_eq(tl_ol_parse((const uint8_t *)nul, sizeof(nul) - 1, NULL, &ev, &err), TL_EPARSE);
	cr_assert(printable_ascii(err.msg), "%s", err.msg);
}

Test(ol, non_ascii_values_in_messages_are_replaced)
{
	tl_ol_event ev;
	tl_errmsg err;
	cr_assert_eq(parse_edit(BASE, "eventType", "'ST\xc3\x84RT'", &ev, &err), TL_EINVALID);
	cr_assert(printable_ascii(err.msg), "%s", err.msg);
	cr_assert(starts_with(err.msg, "eventType: \"ST??RT\""), "%s", err.msg);
	cr_assert_eq(parse_edit(BASE, "eventType", "'a\\nb'", &ev, &err), TL_EINVALID);
	cr_assert(starts_with(err.msg, "eventType: \"a?b\""), "%s", err.msg);
}

Test(ol, strings_with_nul_are_refused_in_values_built_by_callers)
{
	char *b = q(BASE);
	json_t *doc = json_loads(b, 0, NULL);
	free(b);
	cr_assert_not_null(doc);
	json_object_set_new(json_object_get(doc, "job"), "name", json_stringn("a\0b", 3));
	tl_ol_event ev;
	tl_errmsg err;
	cr_assert_eq(tl_ol_parse_value(doc, NULL, &ev, &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "job.name: contains a NUL character");
	cr_assert_eq(doc->refcount, 1, "a failed parse drops its reference");
	json_decref(doc);
}

Test(ol, limits)
{
	tl_ol_limits lim;
	tl_ol_limits_default(&lim);
	cr_assert_eq(lim.max_bytes, (size_t)4 << 20);
	cr_assert_eq(lim.max_datasets, 10000);
	cr_assert_eq(lim.max_depth, 64);
	cr_assert_eq(lim.max_batch, 10000);
	tl_ol_event ev;
	tl_errmsg err;
	char *base = q(BASE);
	size_t n = strlen(base);

	lim.max_bytes = n - 1;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), TL_ELIMIT);
	cr_assert(strstr(err.msg, "the limit is") != NULL, "%s", err.msg);
	lim.max_bytes = n;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), 0, "%s", err.msg);
	tl_ol_event_fini(&ev);

	/* BASE has 1 input and 1 output. */
	tl_ol_limits_default(&lim);
	lim.max_datasets = 1;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), TL_ELIMIT);
	cr_assert_str_eq(err.msg, "inputs + outputs: 2 datasets, the limit is 1");
	lim.max_datasets = 2;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), 0, "%s", err.msg);
	tl_ol_event_fini(&ev);

	/* BASE nests 6 levels: event, run, facets, acme_custom, deep, {k}. */
	tl_ol_limits_default(&lim);
	lim.max_depth = 5;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), TL_ELIMIT);
	cr_assert_str_eq(err.msg, "event: JSON nested deeper than 5 levels");
	lim.max_depth = 6;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), 0, "%s", err.msg);
	tl_ol_event_fini(&ev);
	lim.max_depth = 0;
	lim.max_datasets = 0;
	lim.max_bytes = 0;
	cr_assert_eq(tl_ol_parse((const uint8_t *)base, n, &lim, &ev, &err), 0, "0 means no limit: %s", err.msg);
	tl_ol_event_fini(&ev);
	free(base);

	/* Deeper than jansson's own cap (2048): a limit error, not a crash. */
	size_t depth = 5000;
	char *deep = malloc(2 * depth + 1);
	memset(deep, '[', depth);
	memset(deep + depth, ']', depth);
	deep[2 * depth] = '\0';
	cr_assert_eq(tl_ol_parse((const uint8_t *)deep, 2 * depth, NULL, &ev, &err), TL_ELIMIT);
	cr_assert(strstr(err.msg, "nested too deep") != NULL, "%s", err.msg);
	free(deep);
}

Test(ol, unknown_facets_and_fields_are_kept_verbatim)
{
	tl_ol_event ev;
	tl_errmsg err;
	cr_assert_eq(parse_q(BASE, NULL, &ev, &err), 0, "%s", err.msg);
	char *w = q("{'deep': [1, {'k': 'v'}], 'n': 12345678901234}");
	json_t *want = json_loads(w, 0, NULL);
	free(w);
	cr_assert(json_equal(json_object_get(ev.run_facets, "acme_custom"), want));
	json_decref(want);
	cr_assert_not_null(json_object_get(ev.doc, "x_unknown_top"));
	cr_assert_eq(ev.run_facets, json_object_get(json_object_get(ev.doc, "run"), "facets"), "borrowed from the doc");
	cr_assert_eq(ev.outputs[0].facets,
	             json_object_get(json_array_get(json_object_get(ev.doc, "outputs"), 0), "facets"));
	cr_assert_eq(ev.job_facets, json_object_get(json_object_get(ev.doc, "job"), "facets"));
	/* The whole document is there, as sent. */
	char *orig = q(BASE);
	json_t *o = json_loads(orig, 0, NULL);
	cr_assert(json_equal(ev.doc, o));
	json_decref(o);
	free(orig);
	tl_ol_event_fini(&ev);
}

Test(ol, batch_elements_via_parse_value)
{
	char *s = q("[{'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p', 'job': {'namespace': 'n', 'name': 'j'}},"
	            " {'eventTime': '2026-01-01T00:00:00Z', 'producer': 'p', 'eventType': 'FAIL',"
	            "  'run': {}, 'job': {'namespace': 'n', 'name': 'j'}},"
	            " 7]");
	json_t *arr;
	tl_errmsg err;
	cr_assert_eq(tl_ol_json_load((const uint8_t *)s, strlen(s), 0, &arr, &err), 0, "%s", err.msg);
	free(s);
	tl_ol_event ev;
	cr_assert_eq(tl_ol_parse_value(json_array_get(arr, 0), NULL, &ev, &err), 0, "%s", err.msg);
	tl_ol_event bad;
	cr_assert_eq(tl_ol_parse_value(json_array_get(arr, 1), NULL, &bad, &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "run.runId: missing", "paths are relative to the event");
	cr_assert_eq(json_array_get(arr, 1)->refcount, 1, "a failed parse drops its reference");
	cr_assert_eq(tl_ol_parse_value(json_array_get(arr, 2), NULL, &bad, &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "event: not an object (a number)");
	cr_assert_eq(tl_ol_parse_value(NULL, NULL, &bad, &err), TL_EINVALID);
	cr_assert_null(bad.doc);
	/* The event holds its own reference: the array can go first. */
	json_decref(arr);
	cr_assert_eq(ev.kind, TL_OL_JOB_EVENT);
	cr_assert_str_eq(ev.job_name, "j");
	tl_ol_event_fini(&ev);

	/* tl_ol_json_load's limits and error format. */
	cr_assert_eq(tl_ol_json_load((const uint8_t *)"[1,2]", 5, 4, &arr, &err), TL_ELIMIT);
	cr_assert_null(arr);
	cr_assert_eq(tl_ol_json_load((const uint8_t *)"[1,", 3, 0, &arr, &err), TL_EPARSE);
	cr_assert(starts_with(err.msg, "invalid JSON at line 1, column "), "%s", err.msg);
	cr_assert_eq(tl_ol_json_load((const uint8_t *)"{\"a\":1,\"a\":2}", 13, 0, &arr, &err), TL_EPARSE);
}

Test(ol, fini_and_null_err_are_safe)
{
	tl_ol_event ev;
	memset(&ev, 0, sizeof(ev));
	tl_ol_event_fini(&ev);
	tl_ol_event_fini(NULL);
	char *s = q(BASE);
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, strlen(s), NULL, &ev, NULL), 0);
	tl_ol_event_fini(&ev);
	cr_assert_eq(tl_ol_parse((const uint8_t *)s, 10, NULL, &ev, NULL), TL_EPARSE);
	free(s);
	cr_assert_eq(parse_edit(BASE, "job", NULL, &ev, NULL), TL_EINVALID);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static const char *fixture_dir(void)
{
	const char *d = getenv("TL_OL_DATA");
	cr_assert_not_null(d, "TL_OL_DATA (tests/data/openlineage) is not set; run through meson test");
	return d;
}

static void load_fixture(const char *name, tl_ol_event *ev)
{
	char path[1024];
	size_t n;
	tl_errmsg err;
	snprintf(path, sizeof(path), "%s/%s", fixture_dir(), name);
	char *buf = read_all(path, &n);
	cr_assert_eq(tl_ol_parse((const uint8_t *)buf, n, NULL, ev, &err), 0, "%s: %s", name, err.msg);
	free(buf);
}

Test(ol, every_fixture_parses)
{
	DIR *d = opendir(fixture_dir());
	cr_assert_not_null(d);
	struct dirent *e;
	int files = 0;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 5, ".json") != 0)
			continue;
		tl_ol_event ev;
		load_fixture(e->d_name, &ev);
		cr_expect_neq(ev.event_time_ns, 0);
		tl_ol_event_fini(&ev);
		files++;
	}
	closedir(d);
	cr_assert_geq(files, 15, "only %d fixtures", files);
}

Test(ol, fixture_chain_from_raw_data_to_the_model)
{
	tl_ol_event ev;
	load_fixture("05_spark_build_features_complete.json", &ev);
	cr_assert_eq(ev.type, TL_OL_COMPLETE);
	cr_assert_eq(ev.spec_major, 2);
	uuid_is(ev.run_id, "8f3c2a6e-4b1d-4c9a-b7e5-2d0f1a9c3e41");
	cr_assert_str_eq(ev.job_ns, "spark-prod");
	cr_assert_str_eq(ev.job_name, "build_churn_features");
	cr_assert(ev.has_parent && ev.has_root);
	uuid_is(ev.parent_run_id, "019371a2-5c41-7b8d-a1e3-6f2c9d0e4b12");
	cr_assert_str_eq(ev.parent_job_name, "churn_pipeline.build_features");
	uuid_is(ev.root_run_id, "019371a2-5c00-7e3a-9f2b-1d4c8e6a0b01");
	cr_assert_eq(ev.ninputs, 2);
	cr_assert_str_eq(ev.inputs[0].ns, "postgres://prod-db:5432");
	cr_assert_str_eq(ev.inputs[0].name, "shop.public.customers");
	cr_assert_str_eq(ev.inputs[1].name, "shop.public.orders");
	cr_assert_not_null(json_object_get(ev.inputs[1].input_facets, "dataQualityMetrics"));
	cr_assert_eq(ev.noutputs, 1);
	cr_assert_str_eq(ev.outputs[0].ns, "s3://acme-warehouse");
	cr_assert_str_eq(ev.outputs[0].name, "features/churn_users");
	cr_assert_str_eq(ev.outputs[0].version, "42");
	cr_assert_not_null(json_object_get(ev.outputs[0].facets, "columnLineage"));
	cr_assert_not_null(json_object_get(ev.outputs[0].facets, "schema"));
	cr_assert(!ev.outputs[0].is_model);
	tl_ol_event_fini(&ev);

	load_fixture("08_train_churn_complete.json", &ev);
	uuid_is(ev.run_id, "3e9d7b1c-2a4f-4e6b-9c8d-5f1a2b3c4d5e");
	cr_assert_str_eq(ev.job_ns, "ml");
	cr_assert_str_eq(ev.job_name, "train_churn");
	cr_assert_eq(ev.event_time_ns, UINT64_C(1795315272500000000), "03:41:12.5+01:00");
	cr_assert_str_eq(ev.inputs[0].name, "features/churn_users");
	cr_assert_str_eq(ev.inputs[0].version, "42");
	cr_assert(ev.outputs[0].is_model);
	cr_assert_str_eq(ev.outputs[0].ns, "model://registry");
	cr_assert_str_eq(ev.outputs[0].model_name, "churn");
	cr_assert_str_eq(ev.outputs[0].model_version, "7");
	cr_assert(starts_with(ev.outputs[0].model_digest, "sha256:"));
	cr_assert_str_eq(ev.code_version, "4f9c1e2a7b3d5c8e9f0a1b2c3d4e5f6a7b8c9d0e");
	cr_assert_str_eq(ev.code_path, "train.py");
	cr_assert_not_null(json_object_get(ev.run_facets, "environmentVariables"));
	cr_assert_not_null(json_object_get(ev.run_facets, "threadline_params"));
	uuid_is(ev.parent_run_id, "019371a2-5c00-7e3a-9f2b-1d4c8e6a0b01");
	tl_ol_event_fini(&ev);

	load_fixture("04_spark_build_features_running.json", &ev);
	cr_assert_eq(ev.type, TL_OL_RUNNING);
	tl_ol_event_fini(&ev);
}

Test(ol, fixture_failed_run_dbt_and_static_events)
{
	tl_ol_event ev;
	load_fixture("fail_spark_build_features_fail.json", &ev);
	cr_assert_eq(ev.type, TL_OL_FAIL);
	uuid_is(ev.run_id, "c4b8e2d0-7f3a-4d1e-8b6c-9a0e1f2d3c47");
	cr_assert_str_eq(ev.job_name, "build_churn_features");
	cr_assert(starts_with(ev.error_message, "org.apache.spark.SparkException"));
	cr_assert_str_eq(ev.error_language, "JAVA");
	cr_assert(strstr(ev.error_stack, "PSQLException") != NULL);
	cr_assert_null(ev.outputs[0].version);
	tl_ol_event_fini(&ev);

	load_fixture("dbt_test_raw_orders_complete.json", &ev);
	cr_assert_eq(ev.spec_major, 1);
	cr_assert_eq(ev.type, TL_OL_COMPLETE);
	cr_assert_str_eq(ev.inputs[0].version, "2026-11-22T01:55:00Z", "1.x datasetVersion facet");
	cr_assert_not_null(json_object_get(ev.inputs[0].input_facets, "dataQualityAssertions"));
	cr_assert(ev.has_parent && !ev.has_root);
	tl_ol_event_fini(&ev);

	load_fixture("job_event_train_churn.json", &ev);
	cr_assert_eq(ev.kind, TL_OL_JOB_EVENT);
	cr_assert_str_eq(ev.job_name, "train_churn");
	cr_assert_not_null(ev.code_url);
	tl_ol_event_fini(&ev);

	load_fixture("dataset_event_raw_customers.json", &ev);
	cr_assert_eq(ev.kind, TL_OL_DATASET_EVENT);
	cr_assert_str_eq(ev.dataset.name, "shop.public.customers");
	cr_assert_not_null(json_object_get(ev.dataset.facets, "schema"));
	tl_ol_event_fini(&ev);
}
