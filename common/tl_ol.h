/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenLineage events: parsing and validation (jansson). One decoder serves
 * the agent (which checks events and spools their JSON verbatim, unknown
 * facets and all) and the collector (which reads the same bytes to build
 * the lineage graph).
 *
 * Accepted: RunEvent, JobEvent and DatasetEvent of spec versions 1.x and
 * 2.x. The kind comes from the schemaURL fragment when there is one
 * (".../OpenLineage.json#/definitions/RunEvent", "#/$defs/JobEvent", ...),
 * otherwise from the shape: "run" or "eventType" → RunEvent (so a RunEvent
 * that lost its run is reported as such, not taken for a JobEvent),
 * "dataset" → DatasetEvent, "job" alone → JobEvent. The spec version comes
 * from the schemaURL path ("/spec/2-0-2/"); majors other than 1 and 2 are
 * refused; a schemaURL without a version (or no schemaURL) is accepted.
 *
 * Required (a missing or malformed one is an error naming the field by its
 * JSON path, e.g. "run.runId: not a UUID"): eventTime (RFC 3339 with a
 * time zone) and producer (a non-empty string) on every event; run.runId
 * (a UUID), job.namespace and job.name on a RunEvent; eventType on a
 * RunEvent is optional in the spec and, when present, one of START,
 * RUNNING, COMPLETE, ABORT, FAIL, OTHER; job.namespace and job.name on a
 * JobEvent; dataset.namespace and dataset.name on a DatasetEvent; every
 * input/output dataset has a namespace and a name. Required strings must be
 * non-empty. Unknown fields and facets are allowed (and kept: out->doc is
 * the whole document). The facets this decoder reads (parent, errorMessage,
 * sourceCodeLocation, version / datasetVersion, threadline_model) may lack
 * optional fields, but a field of the wrong type is an error naming it, as
 * is a parent facet without its run.runId / job.namespace / job.name; a
 * facet marked {"_deleted": true} is ignored. eventTime must be RFC 3339
 * with seconds and a zone ("2026-11-22T10:00:00.123456+01:00"), 1970..2554.
 *
 * JSON: jansson with JSON_REJECT_DUPLICATES (TL_OL_JSON_FLAGS). The agent
 * spools the bytes verbatim and other readers (the collector, Marquez, an
 * auditor's tools) read them again; with a key given twice each parser may
 * pick a different value, so such an event is refused up front. Integers
 * beyond int64 and reals beyond double are refused by jansson too.
 * Every err->msg this module writes is printable ASCII (other bytes become
 * '?'), so it can go into a JSON response as it is.
 *
 * Library code: never logs. Not thread-safe per event; events are independent.
 */
#ifndef TL_OL_H
#define TL_OL_H

#include "tl_error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tl_ol_kind { TL_OL_RUN_EVENT = 1, TL_OL_JOB_EVENT, TL_OL_DATASET_EVENT } tl_ol_kind;

typedef enum tl_ol_type {
	TL_OL_TYPE_NONE = 0, /* absent (allowed: RunEvent without eventType, JobEvent, DatasetEvent) */
	TL_OL_START,
	TL_OL_RUNNING,
	TL_OL_COMPLETE,
	TL_OL_ABORT,
	TL_OL_FAIL,
	TL_OL_OTHER,
} tl_ol_type;

/* "START", ... ; "" for TL_OL_TYPE_NONE. */
const char *tl_ol_type_name(tl_ol_type t);

/* "START", ..., "OTHER" (exact case) -> the type. Returns 0 or TL_EINVALID (*out untouched). */
int tl_ol_type_parse(const char *s, tl_ol_type *out);

/* 0 in any field means no limit (jansson still stops nesting at 2048 levels). */
typedef struct tl_ol_limits {
	size_t max_bytes;    /* one event's JSON (default 4 MiB) */
	size_t max_datasets; /* inputs + outputs of one event (default 10,000) */
	size_t max_depth;    /* JSON nesting of arrays and objects, the event object is level 1 (default 64) */
	size_t max_batch;    /* events in one batch array (default 10,000) */
} tl_ol_limits;

void tl_ol_limits_default(tl_ol_limits *l);

/*
 * One dataset of an event. Strings are borrowed from the event's document
 * and valid until tl_ol_event_fini(); NULL when absent.
 */
typedef struct tl_ol_dataset {
	const char *ns;
	const char *name;
	const char *version; /* facets.version.datasetVersion (2.x) or facets.datasetVersion.datasetVersion (1.x) */
	/* A model version: a "threadline_model" dataset facet {name, version, digest}, or a namespace that
	 * starts with "model://" (any case); on inputs too (a scoring job reads a model). name and version come
	 * from the facet when present (and non-empty), else the dataset name and its version; model_version is
	 * NULL when neither gives one (the collector decides), model_digest when the facet has none. All three
	 * are NULL when !is_model. */
	bool is_model;
	const char *model_name;
	const char *model_version;
	const char *model_digest;
	json_t *facets;        /* borrowed, may be NULL */
	json_t *input_facets;  /* inputFacets (inputs only), may be NULL */
	json_t *output_facets; /* outputFacets (outputs only), may be NULL */
} tl_ol_dataset;

typedef struct tl_ol_event {
	tl_ol_kind kind;
	tl_ol_type type;
	uint64_t event_time_ns; /* unix ns, UTC */
	const char *producer;
	const char *schema_url; /* NULL when absent */
	int spec_major;         /* 1 or 2 from schemaURL ("/spec/1-0-5/", "/spec/2-0-2/"); 0 when unknown */

	bool has_run;
	uint8_t run_id[16];
	const char *job_ns, *job_name; /* RunEvent and JobEvent */

	/* run.facets.parent: the parent run and its job, when present. */
	bool has_parent;
	uint8_t parent_run_id[16];
	const char *parent_job_ns, *parent_job_name;
	/* run.facets.parent.root (ParentRunFacet 1-1-0): the top of the run hierarchy, when present. */
	bool has_root;
	uint8_t root_run_id[16];
	const char *root_job_ns, *root_job_name;

	/* run.facets.errorMessage */
	const char *error_message;
	const char *error_language;
	const char *error_stack;

	/* job.facets.sourceCodeLocation: url / repoUrl, path, version (commit), tag, branch. */
	const char *code_url; /* url, else repoUrl */
	const char *code_path;
	const char *code_version;
	const char *code_type;     /* "git", "svn" */
	const char *code_repo_url; /* repoUrl */
	const char *code_tag;
	const char *code_branch;

	json_t *run_facets; /* borrowed, may be NULL */
	json_t *job_facets; /* borrowed, may be NULL */

	tl_ol_dataset *inputs; /* malloc'd array (freed by fini) */
	size_t ninputs;
	tl_ol_dataset *outputs;
	size_t noutputs;
	tl_ol_dataset dataset; /* DatasetEvent only */

	json_t *doc; /* the whole parsed document (owned; freed by fini) */
} tl_ol_event;

/* jansson decoding flags for OpenLineage bodies (single events and batch arrays alike). */
#define TL_OL_JSON_FLAGS JSON_REJECT_DUPLICATES

/*
 * Loads any JSON body the way tl_ol_parse() does (for a batch array, whose
 * elements then go to tl_ol_parse_value()): borrows json; on success *out is
 * a new reference the caller frees with json_decref(). Returns TL_ELIMIT
 * when len > max_bytes (0: no limit) or nesting exceeds jansson's 2048 levels,
 * TL_EPARSE for invalid JSON (err: "invalid JSON at line L, column C
 * (byte B): <jansson's text>"); *out is NULL on failure.
 */
int tl_ol_json_load(const uint8_t *json, size_t len, size_t max_bytes, json_t **out, tl_errmsg *err);

/*
 * Parses and validates one event. lim NULL means the defaults. On success
 * *out owns its document; the caller frees it with tl_ol_event_fini(). On
 * failure returns TL_EPARSE (invalid JSON: err says "invalid JSON at line L,
 * column C (byte B): <jansson's text>"), TL_EINVALID (a missing or malformed
 * field: err names its JSON path, e.g. "inputs[2].namespace: missing"),
 * TL_EUNSUPPORTED (a schemaURL of another major version) or TL_ELIMIT
 * (bytes, nesting depth or inputs + outputs over lim), and *out is zeroed.
 */
int tl_ol_parse(const uint8_t *json, size_t len, const tl_ol_limits *lim, tl_ol_event *out, tl_errmsg *err);

/*
 * The same for a value already parsed (an element of a batch array);
 * borrows v (takes a reference of its own, so out->doc stays valid after
 * the caller drops the array). Errors name paths relative to the event.
 * lim->max_bytes is not checked here: the caller checked the body.
 */
int tl_ol_parse_value(json_t *v, const tl_ol_limits *lim, tl_ol_event *out, tl_errmsg *err);

/* Frees what parse filled in; *ev is zeroed. Accepts a zeroed event. */
void tl_ol_event_fini(tl_ol_event *ev);

/* Formats a UUID as 36 lowercase characters plus NUL. */
void tl_ol_uuid_format(const uint8_t id[16], char out[37]);

/* Parses a UUID (any case, with hyphens). Returns 0 or TL_EINVALID. */
int tl_ol_uuid_parse(const char *s, uint8_t out[16]);

#endif
