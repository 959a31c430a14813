/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: the OpenLineage decoder as the agent runs it on a request
 * body, single event and batch array alike. Inputs are capped at 1 MiB.
 * A failure must come with one of the documented codes, a zeroed event and
 * a printable message; a success must hold every field the contract
 * promises, and the same document must decode the same way again, both as
 * a value (a batch element) and as its own re-serialization.
 */
#include "tl_ol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INPUT (1u << 20)
#define FUZZ_MAX_BATCH 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const tl_errmsg *err)
{
	const char *end = memchr(err->msg, '\0', sizeof(err->msg));
	if (end == NULL || end == err->msg)
		abort();
	for (const char *p = err->msg; p < end; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			abort();
	}
}

static void check_failure(int rc, const tl_ol_event *ev, const tl_errmsg *err)
{
	if (rc != TL_EPARSE && rc != TL_EINVALID && rc != TL_EUNSUPPORTED && rc != TL_ELIMIT)
		abort();
	if (ev->doc != NULL || ev->inputs != NULL || ev->outputs != NULL || ev->ninputs != 0 || ev->noutputs != 0 ||
	    ev->producer != NULL)
		abort();
	check_msg(err);
}

static void need(const char *s)
{
	if (s == NULL || s[0] == '\0')
		abort();
}

static void check_dataset(const tl_ol_dataset *d, const tl_ol_limits *lim)
{
	need(d->ns);
	need(d->name);
	if (d->is_model)
		need(d->model_name);
	else if (d->model_name != NULL || d->model_version != NULL || d->model_digest != NULL)
		abort();
	if (d->facets != NULL && !json_is_object(d->facets))
		abort();
}

static void check_uuid(const uint8_t id[16])
{
	char s[37];
	uint8_t back[16];
	tl_ol_uuid_format(id, s);
	if (strlen(s) != 36 || tl_ol_uuid_parse(s, back) != 0 || memcmp(id, back, 16) != 0)
		abort();
}

static void check_success(const tl_ol_event *ev, const tl_ol_limits *lim)
{
	if (ev->doc == NULL || !json_is_object(ev->doc))
		abort();
	need(ev->producer);
	if (ev->spec_major != 0 && ev->spec_major != 1 && ev->spec_major != 2)
		abort();
	tl_ol_type t;
	if (ev->type != TL_OL_TYPE_NONE &&
	    (tl_ol_type_parse(tl_ol_type_name(ev->type), &t) != 0 || t != ev->type || ev->kind != TL_OL_RUN_EVENT))
		abort();
	if (lim->max_datasets != 0 && ev->ninputs + ev->noutputs > lim->max_datasets)
		abort();
	switch (ev->kind) {
	case TL_OL_RUN_EVENT:
		if (!ev->has_run)
			abort();
		check_uuid(ev->run_id);
		/* fall through */
	case TL_OL_JOB_EVENT:
		need(ev->job_ns);
		need(ev->job_name);
		break;
	case TL_OL_DATASET_EVENT:
		check_dataset(&ev->dataset, lim);
		break;
	default:
		abort();
	}
	if (ev->has_parent) {
		check_uuid(ev->parent_run_id);
		need(ev->parent_job_ns);
		need(ev->parent_job_name);
	} else if (ev->has_root) {
		abort();
	}
	if (ev->has_root) {
		need(ev->root_job_ns);
		need(ev->root_job_name);
	}
	if ((ev->ninputs != 0) != (ev->inputs != NULL) || (ev->noutputs != 0) != (ev->outputs != NULL))
		abort();
	for (size_t i = 0; i < ev->ninputs; i++)
		check_dataset(&ev->inputs[i], lim);
	for (size_t i = 0; i < ev->noutputs; i++)
		check_dataset(&ev->outputs[i], lim);
}

static void same(const tl_ol_event *a, const tl_ol_event *b)
{
	if (a->kind != b->kind || a->type != b->type || a->event_time_ns != b->event_time_ns ||
	    memcmp(a->run_id, b->run_id, 16) != 0 || a->ninputs != b->ninputs || a->noutputs != b->noutputs ||
	    a->has_parent != b->has_parent || strcmp(a->producer, b->producer) != 0)
		abort();
}

/*
 * One event as a value: when it is the whole body (compare), the same verdict the text had; and on success
 * the same event again from its own serialization.
 */
static void check_value(json_t *v, const tl_ol_limits *lim, bool compare, int text_rc, const tl_ol_event *text_ev)
{
	tl_ol_event ev;
	tl_errmsg err;
	int rc = tl_ol_parse_value(v, lim, &ev, &err);
	if (compare && rc != text_rc)
		abort();
	if (rc != 0) {
		check_failure(rc, &ev, &err);
		return;
	}
	check_success(&ev, lim);
	if (text_ev != NULL)
		same(&ev, text_ev);
	char *dump = json_dumps(ev.doc, JSON_COMPACT);
	if (dump == NULL)
		abort();
	tl_ol_limits unbounded = *lim;
	unbounded.max_bytes = 0; /* reals may print longer than they came */
	tl_ol_event again;
	if (tl_ol_parse((const uint8_t *)dump, strlen(dump), &unbounded, &again, &err) != 0)
		abort();
	same(&ev, &again);
	tl_ol_event_fini(&again);
	free(dump);
	tl_ol_event_fini(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tl_ol_limits lim;
	tl_ol_event ev;
	tl_errmsg err;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	tl_ol_limits_default(&lim);
	lim.max_bytes = FUZZ_MAX_INPUT;
	lim.max_datasets = 256;
	/* The first byte picks a tighter depth now and then, so the limit paths run too. */
	if (size > 0 && data[0] == ' ')
		lim.max_depth = 4;

	int rc = tl_ol_parse(data, size, &lim, &ev, &err);
	if (rc != 0)
		check_failure(rc, &ev, &err);
	else
		check_success(&ev, &lim);

	json_t *doc;
	int lrc = tl_ol_json_load(data, size, lim.max_bytes, &doc, &err);
	if (lrc != 0) {
		if (rc == 0 || doc != NULL || (lrc != TL_EPARSE && lrc != TL_ELIMIT))
			abort();
		check_msg(&err);
	} else if (json_is_array(doc)) {
		size_t i;
		json_t *e;
		json_array_foreach(doc, i, e)
		{
			if (i >= FUZZ_MAX_BATCH)
				break;
			check_value(e, &lim, false, 0, NULL);
		}
	} else {
		check_value(doc, &lim, true, rc, rc == 0 ? &ev : NULL);
	}
	json_decref(doc);
	if (rc == 0)
		tl_ol_event_fini(&ev);
	return 0;
}
