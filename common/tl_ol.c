/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenLineage event decoding. jansson parses the body once; a walk then
 * checks the fields Threadline relies on (tl_ol.h lists them) and points
 * into the document for them, so nothing is copied and the document itself
 * stays as it came, unknown facets included. Every error names the JSON
 * path of the offending field, because the 400 the agent answers is the
 * only thing a pipeline author sees.
 */
#include "tl_ol.h"

#include "tl_id.h"
#include "tl_time.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Long enough for any path this file builds ("outputs[9999999].facets.threadline_model.version"). */
#define PATH_LEN 128

enum ds_role { DS_STATIC, DS_INPUT, DS_OUTPUT };

static const char *const type_names[] = {
        [TL_OL_TYPE_NONE] = "",  [TL_OL_START] = "START", [TL_OL_RUNNING] = "RUNNING", [TL_OL_COMPLETE] = "COMPLETE",
        [TL_OL_ABORT] = "ABORT", [TL_OL_FAIL] = "FAIL",   [TL_OL_OTHER] = "OTHER",
};

const char *tl_ol_type_name(tl_ol_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "";
}

int tl_ol_type_parse(const char *s, tl_ol_type *out)
{
	for (unsigned t = TL_OL_START; t <= TL_OL_OTHER; t++) {
		if (s != NULL && strcmp(s, type_names[t]) == 0) {
			*out = (tl_ol_type)t;
			return 0;
		}
	}
	return TL_EINVALID;
}

void tl_ol_limits_default(tl_ol_limits *l)
{
	l->max_bytes = (size_t)4 << 20;
	l->max_datasets = 10000;
	l->max_depth = 64;
	l->max_batch = 10000;
}

/* Formats err like tl_errf, then makes it printable ASCII: jansson's text quotes input bytes, and a cut can split a
 * UTF-8 sequence; the message must stay safe to embed in a JSON response. */
static int fail(tl_errmsg *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(tl_errmsg *err, int code, const char *fmt, ...)
{
	if (err == NULL)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	for (char *p = err->msg; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c > 0x7e)
			*p = '?';
	}
	return code;
}

static const char *kind_of(const json_t *v)
{
	if (v == NULL)
		return "nothing";
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

/* path + "." + key, or key alone at the top (cut, never overflowed, if it ever outgrew PATH_LEN). */
static void join(char *buf, const char *path, const char *key)
{
	if (snprintf(buf, PATH_LEN, "%s%s%s", path, *path != '\0' ? "." : "", key) >= PATH_LEN)
		buf[PATH_LEN - 1] = '\0';
}

/*
 * obj[key] as a string: *out NULL when absent or null (an error when
 * required). Strings with a NUL byte inside are refused: everything
 * downstream treats them as C strings.
 */
static int get_str(json_t *obj, const char *path, const char *key, bool required, const char **out, tl_errmsg *err)
{
	char p[PATH_LEN];
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	join(p, path, key);
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		return fail(err, TL_EINVALID, v == NULL ? "%s: missing" : "%s: null, expected a string", p);
	}
	if (!json_is_string(v))
		return fail(err, TL_EINVALID, "%s: not a string (%s)", p, kind_of(v));
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return fail(err, TL_EINVALID, "%s: contains a NUL character", p);
	if (required && *s == '\0')
		return fail(err, TL_EINVALID, "%s: empty", p);
	*out = s;
	return 0;
}

/* obj[key] as an object: *out NULL when absent or null (an error when required). */
static int get_obj(json_t *obj, const char *path, const char *key, bool required, json_t **out, tl_errmsg *err)
{
	char p[PATH_LEN];
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	join(p, path, key);
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		return fail(err, TL_EINVALID, v == NULL ? "%s: missing" : "%s: null, expected an object", p);
	}
	if (!json_is_object(v))
		return fail(err, TL_EINVALID, "%s: not an object (%s)", p, kind_of(v));
	*out = v;
	return 0;
}

/* facets[name] when present and not marked {"_deleted": true}; path is the facets' path. */
static int get_facet(json_t *facets, const char *path, const char *name, json_t **out, tl_errmsg *err)
{
	*out = NULL;
	if (facets == NULL)
		return 0;
	int rc = get_obj(facets, path, name, false, out, err);
	if (rc == 0 && *out != NULL && json_is_true(json_object_get(*out, "_deleted")))
		*out = NULL;
	return rc;
}

static int get_uuid(json_t *obj, const char *path, const char *key, uint8_t id[16], tl_errmsg *err)
{
	const char *s;
	int rc = get_str(obj, path, key, true, &s, err);
	if (rc != 0)
		return rc;
	if (tl_ol_uuid_parse(s, id) != 0) {
		char p[PATH_LEN];
		join(p, path, key);
		return fail(err, TL_EINVALID, "%s: not a UUID", p);
	}
	return 0;
}

/* True when v nests arrays/objects deeper than limit levels; v itself sits at level depth + 1. Recursion stops at
 * limit + 1 levels, and jansson's parser caps real documents at 2048. */
static bool deeper_than(json_t *v, size_t limit, size_t depth)
{
	if (!json_is_object(v) && !json_is_array(v))
		return false;
	if (depth >= limit)
		return true;
	if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
		{
			if (deeper_than(e, limit, depth + 1))
				return true;
		}
		return false;
	}
	const char *k;
	json_t *e;
	json_object_foreach(v, k, e)
	{
		if (deeper_than(e, limit, depth + 1))
			return true;
	}
	return false;
}

/* "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)": the RFC 3339 date-time production (seconds and zone required, 'T'
 * and 'Z' either case). Values (month 13, Feb 30, offset 25:00) are left to tl_parse_time. */
static bool rfc3339_shape(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd";
	for (size_t i = 0; i < sizeof(pat) - 1; i++) {
		char c = s[i];
		if (pat[i] == 'd' ? !(c >= '0' && c <= '9') : pat[i] == 'T' ? (c != 'T' && c != 't') : c != pat[i])
			return false;
	}
	const char *p = s + sizeof(pat) - 1;
	if (*p == '.') {
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z')
		return p[1] == '\0';
	if (*p != '+' && *p != '-')
		return false;
	for (int i = 1; i <= 5; i++) {
		if (i == 3 ? p[i] != ':' : !(p[i] >= '0' && p[i] <= '9'))
			return false;
	}
	return p[6] == '\0';
}

static int parse_time(json_t *doc, uint64_t *ns, tl_errmsg *err)
{
	const char *s;
	int rc = get_str(doc, "", "eventTime", true, &s, err);
	if (rc != 0)
		return rc;
	if (!rfc3339_shape(s))
		return fail(
		        err, TL_EINVALID,
		        "eventTime: not an RFC 3339 date-time with seconds and a time zone (2026-11-22T10:00:00.5Z)");
	rc = tl_parse_time(s, 0, ns);
	if (rc == TL_ELIMIT)
		return fail(err, TL_EINVALID, "eventTime: out of range (1970 to 2554)");
	if (rc != 0)
		return fail(err, TL_EINVALID, "eventTime: not a valid date and time");
	return 0;
}

/* Kind from the schemaURL fragment ("#/$defs/RunEvent", "#/definitions/JobEvent"); 0 when it names none. */
static tl_ol_kind kind_from_url(const char *url)
{
	const char *frag = strchr(url, '#');
	if (frag == NULL)
		return 0;
	const char *last = strrchr(frag, '/');
	const char *name = last != NULL ? last + 1 : frag + 1;
	if (strcmp(name, "RunEvent") == 0)
		return TL_OL_RUN_EVENT;
	if (strcmp(name, "JobEvent") == 0)
		return TL_OL_JOB_EVENT;
	if (strcmp(name, "DatasetEvent") == 0)
		return TL_OL_DATASET_EVENT;
	return 0;
}

static size_t span_digits(const char *s, size_t max)
{
	size_t n = 0;
	while (n < max && s[n] >= '0' && s[n] <= '9')
		n++;
	return n;
}

/* The spec version in ".../spec/<major>-<minor>-<patch>/OpenLineage.json": sets *major (0 when the URL names no
 * version); TL_EUNSUPPORTED for a major other than 1 or 2. */
static int spec_version(const char *url, int *major, tl_errmsg *err)
{
	*major = 0;
	const char *end = strchr(url, '#');
	for (const char *p = strstr(url, "/spec/"); p != NULL && (end == NULL || p < end);
	     p = strstr(p + 1, "/spec/")) {
		const char *v = p + 6, *q = v;
		size_t n1 = span_digits(q, 4);
		if (n1 == 0 || q[n1] != '-')
			continue;
		q += n1 + 1;
		size_t n2 = span_digits(q, 4);
		if (n2 == 0 || q[n2] != '-')
			continue;
		q += n2 + 1;
		size_t n3 = span_digits(q, 4);
		if (n3 == 0 || q[n3] != '/')
			continue;
		q += n3;
		int m = 0;
		for (size_t i = 0; i < n1; i++)
			m = m * 10 + (v[i] - '0');
		if (m != 1 && m != 2)
			return fail(err, TL_EUNSUPPORTED,
			            "schemaURL: spec version %.*s is not supported (1-x-x and 2-x-x are)", (int)(q - v),
			            v);
		*major = m;
		return 0;
	}
	return 0;
}

/* {"run": {"runId"}, "job": {"namespace", "name"}}: the shape of the parent facet and of its root. */
static int parse_run_ref(json_t *obj, const char *path, uint8_t id[16], const char **ns, const char **name,
                         tl_errmsg *err)
{
	char p[PATH_LEN];
	json_t *run, *job;
	int rc;
	if ((rc = get_obj(obj, path, "run", true, &run, err)) != 0)
		return rc;
	join(p, path, "run");
	if ((rc = get_uuid(run, p, "runId", id, err)) != 0)
		return rc;
	if ((rc = get_obj(obj, path, "job", true, &job, err)) != 0)
		return rc;
	join(p, path, "job");
	if ((rc = get_str(job, p, "namespace", true, ns, err)) != 0 ||
	    (rc = get_str(job, p, "name", true, name, err)) != 0)
		return rc;
	return 0;
}

static int parse_run_facets(tl_ol_event *ev, tl_errmsg *err)
{
	json_t *f;
	int rc;
	if ((rc = get_facet(ev->run_facets, "run.facets", "parent", &f, err)) != 0)
		return rc;
	if (f != NULL) {
		if ((rc = parse_run_ref(f, "run.facets.parent", ev->parent_run_id, &ev->parent_job_ns,
		                        &ev->parent_job_name, err)) != 0)
			return rc;
		ev->has_parent = true;
		json_t *root;
		if ((rc = get_obj(f, "run.facets.parent", "root", false, &root, err)) != 0)
			return rc;
		if (root != NULL) {
			if ((rc = parse_run_ref(root, "run.facets.parent.root", ev->root_run_id, &ev->root_job_ns,
			                        &ev->root_job_name, err)) != 0)
				return rc;
			ev->has_root = true;
		}
	}
	if ((rc = get_facet(ev->run_facets, "run.facets", "errorMessage", &f, err)) != 0)
		return rc;
	if (f != NULL) {
		const char *p = "run.facets.errorMessage";
		if ((rc = get_str(f, p, "message", false, &ev->error_message, err)) != 0 ||
		    (rc = get_str(f, p, "programmingLanguage", false, &ev->error_language, err)) != 0 ||
		    (rc = get_str(f, p, "stackTrace", false, &ev->error_stack, err)) != 0)
			return rc;
	}
	return 0;
}

static int parse_job(json_t *doc, tl_ol_event *ev, tl_errmsg *err)
{
	json_t *job, *f;
	int rc;
	if ((rc = get_obj(doc, "", "job", true, &job, err)) != 0)
		return rc;
	if ((rc = get_str(job, "job", "namespace", true, &ev->job_ns, err)) != 0 ||
	    (rc = get_str(job, "job", "name", true, &ev->job_name, err)) != 0 ||
	    (rc = get_obj(job, "job", "facets", false, &ev->job_facets, err)) != 0)
		return rc;
	if ((rc = get_facet(ev->job_facets, "job.facets", "sourceCodeLocation", &f, err)) != 0)
		return rc;
	if (f != NULL) {
		const char *p = "job.facets.sourceCodeLocation", *url;
		if ((rc = get_str(f, p, "type", false, &ev->code_type, err)) != 0 ||
		    (rc = get_str(f, p, "url", false, &url, err)) != 0 ||
		    (rc = get_str(f, p, "repoUrl", false, &ev->code_repo_url, err)) != 0 ||
		    (rc = get_str(f, p, "path", false, &ev->code_path, err)) != 0 ||
		    (rc = get_str(f, p, "version", false, &ev->code_version, err)) != 0 ||
		    (rc = get_str(f, p, "tag", false, &ev->code_tag, err)) != 0 ||
		    (rc = get_str(f, p, "branch", false, &ev->code_branch, err)) != 0)
			return rc;
		ev->code_url = url != NULL ? url : ev->code_repo_url;
	}
	return 0;
}

/* One dataset at path ("inputs[3]", "dataset"). */
static int parse_dataset(json_t *d, const char *path, enum ds_role role, tl_ol_dataset *ds, tl_errmsg *err)
{
	char p[PATH_LEN], fp[PATH_LEN];
	json_t *f;
	int rc;
	if (!json_is_object(d))
		return fail(err, TL_EINVALID, "%s: not an object (%s)", path, kind_of(d));
	if ((rc = get_str(d, path, "namespace", true, &ds->ns, err)) != 0 ||
	    (rc = get_str(d, path, "name", true, &ds->name, err)) != 0 ||
	    (rc = get_obj(d, path, "facets", false, &ds->facets, err)) != 0)
		return rc;
	if (role == DS_INPUT && (rc = get_obj(d, path, "inputFacets", false, &ds->input_facets, err)) != 0)
		return rc;
	if (role == DS_OUTPUT && (rc = get_obj(d, path, "outputFacets", false, &ds->output_facets, err)) != 0)
		return rc;
	join(fp, path, "facets");
	/* DatasetVersionDatasetFacet is "version"; some 1.x producers named it "datasetVersion". */
	static const char *const version_facets[] = {"version", "datasetVersion"};
	for (size_t i = 0; i < 2 && ds->version == NULL; i++) {
		if ((rc = get_facet(ds->facets, fp, version_facets[i], &f, err)) != 0)
			return rc;
		if (f == NULL)
			continue;
		join(p, fp, version_facets[i]);
		if ((rc = get_str(f, p, "datasetVersion", false, &ds->version, err)) != 0)
			return rc;
	}
	if ((rc = get_facet(ds->facets, fp, "threadline_model", &f, err)) != 0)
		return rc;
	if (f != NULL) {
		join(p, fp, "threadline_model");
		if ((rc = get_str(f, p, "name", false, &ds->model_name, err)) != 0 ||
		    (rc = get_str(f, p, "version", false, &ds->model_version, err)) != 0 ||
		    (rc = get_str(f, p, "digest", false, &ds->model_digest, err)) != 0)
			return rc;
		ds->is_model = true;
	}
	if (strncasecmp(ds->ns, "model://", 8) == 0)
		ds->is_model = true;
	if (ds->is_model) {
		if (ds->model_name == NULL || *ds->model_name == '\0')
			ds->model_name = ds->name;
		if (ds->model_version == NULL || *ds->model_version == '\0')
			ds->model_version = ds->version;
	}
	return 0;
}

/* doc[key] as an array (NULL when absent or null). */
static int get_array(json_t *doc, const char *key, json_t **out, tl_errmsg *err)
{
	json_t *v = json_object_get(doc, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return fail(err, TL_EINVALID, "%s: not an array (%s)", key, kind_of(v));
	*out = v;
	return 0;
}

static int parse_list(json_t *arr, const char *key, enum ds_role role, tl_ol_dataset **out, size_t *n, tl_errmsg *err)
{
	size_t cnt = arr != NULL ? json_array_size(arr) : 0;
	if (cnt == 0)
		return 0;
	tl_ol_dataset *ds = calloc(cnt, sizeof(*ds));
	if (ds == NULL)
		return -ENOMEM;
	*out = ds; /* owned by the event from here on: fini frees it on any later error */
	for (size_t i = 0; i < cnt; i++) {
		char p[PATH_LEN];
		snprintf(p, sizeof(p), "%s[%zu]", key, i);
		int rc = parse_dataset(json_array_get(arr, i), p, role, &ds[i], err);
		if (rc != 0)
			return rc;
		*n = i + 1;
	}
	return 0;
}

static int parse_io(json_t *doc, const tl_ol_limits *lim, tl_ol_event *ev, tl_errmsg *err)
{
	json_t *in, *outs;
	int rc;
	if ((rc = get_array(doc, "inputs", &in, err)) != 0 || (rc = get_array(doc, "outputs", &outs, err)) != 0)
		return rc;
	size_t nin = in != NULL ? json_array_size(in) : 0, nout = outs != NULL ? json_array_size(outs) : 0;
	if (lim->max_datasets != 0 && nin + nout > lim->max_datasets)
		return fail(err, TL_ELIMIT, "inputs + outputs: %zu datasets, the limit is %zu", nin + nout,
		            lim->max_datasets);
	if ((rc = parse_list(in, "inputs", DS_INPUT, &ev->inputs, &ev->ninputs, err)) != 0)
		return rc;
	return parse_list(outs, "outputs", DS_OUTPUT, &ev->outputs, &ev->noutputs, err);
}

static int parse_event(json_t *doc, const tl_ol_limits *lim, tl_ol_event *ev, tl_errmsg *err)
{
	int rc;
	if (!json_is_object(doc))
		return fail(err, TL_EINVALID, "event: not an object (%s)", kind_of(doc));
	if (lim->max_depth != 0 && deeper_than(doc, lim->max_depth, 0))
		return fail(err, TL_ELIMIT, "event: JSON nested deeper than %zu levels", lim->max_depth);
	if ((rc = get_str(doc, "", "schemaURL", false, &ev->schema_url, err)) != 0)
		return rc;
	if (ev->schema_url != NULL) {
		if ((rc = spec_version(ev->schema_url, &ev->spec_major, err)) != 0)
			return rc;
		ev->kind = kind_from_url(ev->schema_url);
	}
	if (ev->kind == 0) {
		if (json_object_get(doc, "run") != NULL || json_object_get(doc, "eventType") != NULL)
			ev->kind = TL_OL_RUN_EVENT;
		else if (json_object_get(doc, "dataset") != NULL)
			ev->kind = TL_OL_DATASET_EVENT;
		else if (json_object_get(doc, "job") != NULL)
			ev->kind = TL_OL_JOB_EVENT;
		else
			return fail(err, TL_EINVALID, "event: none of run, job or dataset (not an OpenLineage event)");
	}
	if ((rc = parse_time(doc, &ev->event_time_ns, err)) != 0 ||
	    (rc = get_str(doc, "", "producer", true, &ev->producer, err)) != 0)
		return rc;

	if (ev->kind == TL_OL_DATASET_EVENT) {
		json_t *d;
		if ((rc = get_obj(doc, "", "dataset", true, &d, err)) != 0)
			return rc;
		return parse_dataset(d, "dataset", DS_STATIC, &ev->dataset, err);
	}
	if (ev->kind == TL_OL_RUN_EVENT) {
		json_t *run;
		const char *type;
		if ((rc = get_obj(doc, "", "run", true, &run, err)) != 0 ||
		    (rc = get_uuid(run, "run", "runId", ev->run_id, err)) != 0 ||
		    (rc = get_obj(run, "run", "facets", false, &ev->run_facets, err)) != 0)
			return rc;
		ev->has_run = true;
		if ((rc = get_str(doc, "", "eventType", false, &type, err)) != 0)
			return rc;
		if (type != NULL && tl_ol_type_parse(type, &ev->type) != 0)
			return fail(err, TL_EINVALID,
			            "eventType: \"%.40s\" is not one of START, RUNNING, COMPLETE, ABORT, FAIL, OTHER",
			            type);
	}
	if ((rc = parse_job(doc, ev, err)) != 0)
		return rc;
	if (ev->kind == TL_OL_RUN_EVENT && (rc = parse_run_facets(ev, err)) != 0)
		return rc;
	return parse_io(doc, lim, ev, err);
}

int tl_ol_json_load(const uint8_t *json, size_t len, size_t max_bytes, json_t **out, tl_errmsg *err)
{
	json_error_t je;
	*out = NULL;
	if (max_bytes != 0 && len > max_bytes)
		return fail(err, TL_ELIMIT, "body is %zu bytes, the limit is %zu", len, max_bytes);
	json_t *v = json_loadb(json != NULL ? (const char *)json : "", len, TL_OL_JSON_FLAGS, &je);
	if (v == NULL) {
		if (json_error_code(&je) == json_error_stack_overflow)
			return fail(err, TL_ELIMIT, "JSON nested too deep at line %d, column %d (byte %d)", je.line,
			            je.column, je.position);
		return fail(err, TL_EPARSE, "invalid JSON at line %d, column %d (byte %d): %s", je.line, je.column,
		            je.position, je.text);
	}
	*out = v;
	return 0;
}

/* Takes ownership of doc (one reference) in every case. */
static int parse_doc(json_t *doc, const tl_ol_limits *lim, tl_ol_event *out, tl_errmsg *err)
{
	tl_ol_limits def;
	if (lim == NULL) {
		tl_ol_limits_default(&def);
		lim = &def;
	}
	memset(out, 0, sizeof(*out));
	out->doc = doc;
	int rc = parse_event(doc, lim, out, err);
	if (rc == -ENOMEM)
		fail(err, rc, "out of memory");
	if (rc != 0)
		tl_ol_event_fini(out);
	return rc;
}

int tl_ol_parse(const uint8_t *json, size_t len, const tl_ol_limits *lim, tl_ol_event *out, tl_errmsg *err)
{
	json_t *doc;
	tl_ol_limits def;
	if (lim == NULL) {
		tl_ol_limits_default(&def);
		lim = &def;
	}
	memset(out, 0, sizeof(*out));
	int rc = tl_ol_json_load(json, len, lim->max_bytes, &doc, err);
	if (rc != 0)
		return rc;
	return parse_doc(doc, lim, out, err);
}

int tl_ol_parse_value(json_t *v, const tl_ol_limits *lim, tl_ol_event *out, tl_errmsg *err)
{
	if (v == NULL) {
		memset(out, 0, sizeof(*out));
		return fail(err, TL_EINVALID, "event: missing");
	}
	return parse_doc(json_incref(v), lim, out, err);
}

void tl_ol_event_fini(tl_ol_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->inputs);
	free(ev->outputs);
	json_decref(ev->doc);
	memset(ev, 0, sizeof(*ev));
}

void tl_ol_uuid_format(const uint8_t id[16], char out[37])
{
	static const size_t groups[] = {4, 2, 2, 2, 6};
	char *p = out;
	const uint8_t *b = id;
	for (size_t g = 0; g < 5; g++) {
		if (g > 0)
			*p++ = '-';
		tl_hex_encode(b, groups[g], p);
		p += 2 * groups[g];
		b += groups[g];
	}
	*p = '\0';
}

int tl_ol_uuid_parse(const char *s, uint8_t out[16])
{
	static const size_t groups[] = {4, 2, 2, 2, 6};
	uint8_t tmp[16];
	if (s == NULL || strnlen(s, 37) != 36)
		return TL_EINVALID;
	const char *p = s;
	uint8_t *b = tmp;
	for (size_t g = 0; g < 5; g++) {
		if (g > 0 && *p++ != '-')
			return TL_EINVALID;
		if (tl_hex_decode(p, 2 * groups[g], b, groups[g]) != 0)
			return TL_EINVALID;
		p += 2 * groups[g];
		b += groups[g];
	}
	memcpy(out, tmp, 16);
	return 0;
}
