/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline emit span`: a shell step reports itself as one span. The flags
 * become an OTLP/JSON ExportTraceServiceRequest POSTed to the local agent's
 * /v1/traces with the CLI's small HTTP client (co_cli_http_post_json). The
 * parent is the W3C traceparent in $TRACEPARENT, else the span starts a new
 * trace; the new span's traceparent goes to stdout so the next step can be
 * its child. Attribute values are typed: an integer that fits int64, a
 * decimal number with '.' or an exponent, true/false, else a string.
 */
#include "co_cli_emit_span.h"

#include "tl_time.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_AGENT "http://127.0.0.1:4318"
#define DEFAULT_SERVICE "shell"
#define SCOPE_NAME "threadline-cli"

static const char *const kinds[] = {"internal", "server", "client", "producer", "consumer"}; /* OTLP 1..5 */

static bool is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int co_cli_traceparent_parse(const char *s, co_cli_traceparent *out, tl_errmsg *err)
{
	size_t n = strlen(s);
	if (n < CO_CLI_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return tl_errf(err, TL_EINVALID, "'%.80s' is not a traceparent like 00-<32 hex>-<16 hex>-01", s);
	if (!is_lower_hex(s, 2) || !is_lower_hex(s + 3, 32) || !is_lower_hex(s + 36, 16) || !is_lower_hex(s + 53, 2))
		return tl_errf(err, TL_EINVALID, "'%.80s': expected lowercase hex digits in every field", s);
	if (strncmp(s, "ff", 2) == 0)
		return tl_errf(err, TL_EINVALID, "'%.80s': version ff is invalid", s);
	if (strncmp(s, "00", 2) == 0 && n != CO_CLI_TRACEPARENT_LEN)
		return tl_errf(err, TL_EINVALID, "'%.80s': a version 00 traceparent ends after the flags", s);
	if (n > CO_CLI_TRACEPARENT_LEN && s[CO_CLI_TRACEPARENT_LEN] != '-')
		return tl_errf(err, TL_EINVALID, "'%.80s': unexpected characters after the flags", s);
	co_cli_traceparent tp;
	tl_hex_decode(s + 3, 32, tp.trace_id, sizeof(tp.trace_id));
	tl_hex_decode(s + 36, 16, tp.span_id, sizeof(tp.span_id));
	tl_hex_decode(s + 53, 2, &tp.flags, 1);
	if (tl_id_is_zero(tp.trace_id, sizeof(tp.trace_id)))
		return tl_errf(err, TL_EINVALID, "'%.80s': the trace id is all zeros", s);
	if (tl_id_is_zero(tp.span_id, sizeof(tp.span_id)))
		return tl_errf(err, TL_EINVALID, "'%.80s': the parent id is all zeros", s);
	*out = tp;
	return 0;
}

/* An attribute value as an OTLP/JSON AnyValue: int, double, bool, else string. */
static json_t *typed_value(const char *v)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
		return json_pack("{s:b}", "boolValue", v[0] == 't');
	bool num = v[0] != '\0', frac = false;
	size_t digits = 0;
	for (const char *p = v; *p != '\0' && num; p++) {
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (*p == '.' || *p == 'e' || *p == 'E')
			frac = true;
		else if (*p != '-' && *p != '+')
			num = false;
	}
	if (num && digits > 0) {
		char *end;
		errno = 0;
		if (!frac) {
			long long i = strtoll(v, &end, 10);
			/* One that does not fit int64 stays a string: ids must not be rounded. */
			if (*end == '\0' && errno == 0) {
				char buf[24];
				snprintf(buf, sizeof(buf), "%lld", i); /* "+7" and "007" as 7 */
				return json_pack("{s:s}", "intValue", buf);
			}
		} else {
			double d = strtod(v, &end);
			if (*end == '\0' && errno == 0 && isfinite(d))
				return json_pack("{s:f}", "doubleValue", d);
		}
	}
	return json_pack("{s:s}", "stringValue", v);
}

static json_t *kv_new(const char *key, size_t klen, json_t *value)
{
	if (value == NULL)
		return NULL;
	return json_pack("{s:s%,s:o}", "key", key, klen, "value", value);
}

static json_t *ns_str(uint64_t ns)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)ns);
	return json_string(buf);
}

/* Works out [start, end] from the flags. Returns 0 or TL_EINVALID naming the flag. */
static int span_times(const co_cli_span_opts *o, uint64_t now_ns, uint64_t *start, uint64_t *end, tl_errmsg *err)
{
	uint64_t s = 0, e = now_ns, d = 0;
	if (o->end != NULL && o->duration != NULL)
		return tl_errf(err, TL_EINVALID, "--end and --duration exclude each other");
	if (o->duration != NULL && tl_parse_duration(o->duration, &d) != 0)
		return tl_errf(err, TL_EINVALID, "--duration: expected a duration like 250ms or 1m30s, got '%s'",
		               o->duration);
	if (o->start != NULL && (tl_parse_time(o->start, now_ns, &s) != 0 || s == 0))
		return tl_errf(err, TL_EINVALID,
		               "--start: expected RFC 3339, unix seconds, unix nanoseconds or a duration ago, got '%s'",
		               o->start);
	if (o->end != NULL && (tl_parse_time(o->end, now_ns, &e) != 0 || e == 0))
		return tl_errf(err, TL_EINVALID,
		               "--end: expected RFC 3339, unix seconds, unix nanoseconds or a duration ago, got '%s'",
		               o->end);
	if (o->duration != NULL && o->start != NULL) {
		if (d > UINT64_MAX - s)
			return tl_errf(err, TL_EINVALID, "--duration: '%s' is too long", o->duration);
		e = s + d;
	} else if (o->duration != NULL) {
		if (d > e)
			return tl_errf(err, TL_EINVALID, "--duration: '%s' reaches before 1970", o->duration);
		s = e - d;
	} else if (o->start == NULL) {
		s = e;
	}
	if (s > e)
		return tl_errf(err, TL_EINVALID, "--start is after the end (%s)", o->end != NULL ? "--end" : "now");
	*start = s;
	*end = e;
	return 0;
}

/* The span's attributes, each "key=value" typed, into *out (caller decrefs). Returns 0, TL_EINVALID or -ENOMEM. */
static int span_attrs(const co_cli_span_opts *o, json_t **out, tl_errmsg *err)
{
	int rc = TL_EINVALID;
	json_t *arr = json_array();
	if (arr == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < o->nattrs; i++) {
		const char *a = o->attrs[i], *eq = strchr(a, '=');
		if (eq == NULL || eq == a) {
			tl_errf(err, TL_EINVALID, "--attr: expected key=value, got '%s'", a);
			goto fail;
		}
		size_t klen = (size_t)(eq - a);
		for (size_t j = 0; j < i; j++)
			if (strncmp(o->attrs[j], a, klen + 1) == 0) {
				tl_errf(err, TL_EINVALID, "--attr: key '%.*s' given twice", (int)klen, a);
				goto fail;
			}
		json_t *kv = kv_new(a, klen, typed_value(eq + 1));
		if (kv == NULL || json_array_append_new(arr, kv) != 0) {
			/* jansson refuses invalid UTF-8 too */
			tl_errf(err, TL_EINVALID, "--attr: '%s' is not valid UTF-8 text", a);
			goto fail;
		}
	}
	*out = arr;
	return 0;
fail:
	json_decref(arr);
	return rc;
}

static int check_text(const char *flag, const char *s, tl_errmsg *err)
{
	json_t *j = json_string(s);
	if (j == NULL)
		return tl_errf(err, TL_EINVALID, "%s: not valid UTF-8 text", flag);
	json_decref(j);
	return 0;
}

int co_cli_span_build(const co_cli_span_opts *o, uint64_t now_ns, const uint8_t trace_id[TL_TRACE_ID_LEN],
                      const uint8_t span_id[TL_SPAN_ID_LEN], char **json, char traceparent[CO_CLI_TRACEPARENT_LEN + 1],
                      tl_errmsg *err)
{
	*json = NULL;
	if (o->name == NULL || o->name[0] == '\0')
		return tl_errf(err, TL_EINVALID, "--name: the span needs a name");
	const char *service = o->service != NULL ? o->service : DEFAULT_SERVICE;
	if (service[0] == '\0')
		return tl_errf(err, TL_EINVALID, "--service: the service name is empty");
	int rc;
	if ((rc = check_text("--name", o->name, err)) != 0 || (rc = check_text("--service", service, err)) != 0 ||
	    (o->message != NULL && (rc = check_text("--message", o->message, err)) != 0))
		return rc;
	int kind = 1;
	if (o->kind != NULL) {
		kind = 0;
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			if (strcmp(o->kind, kinds[k]) == 0)
				kind = (int)k + 1;
		if (kind == 0)
			return tl_errf(err, TL_EINVALID,
			               "--kind: expected internal, server, client, producer or consumer, got '%s'",
			               o->kind);
	}
	int code = 0; /* STATUS_CODE_UNSET */
	if (o->status != NULL) {
		if (strcmp(o->status, "ok") == 0)
			code = 1;
		else if (strcmp(o->status, "error") == 0)
			code = 2;
		else
			return tl_errf(err, TL_EINVALID, "--status: expected ok or error, got '%s'", o->status);
	}
	if (o->message != NULL && code != 2)
		return tl_errf(err, TL_EINVALID, "--message: a status message goes with --status error");
	co_cli_traceparent parent;
	bool has_parent = o->traceparent != NULL && o->traceparent[0] != '\0';
	if (has_parent) {
		tl_errmsg perr = {{0}};
		if (co_cli_traceparent_parse(o->traceparent, &parent, &perr) != 0)
			return tl_errf(err, TL_EINVALID, "TRACEPARENT: %s", perr.msg);
	}
	uint64_t start = 0, end = 0;
	if ((rc = span_times(o, now_ns, &start, &end, err)) != 0)
		return rc;
	json_t *attrs = NULL;
	if ((rc = span_attrs(o, &attrs, err)) != 0)
		return rc;

	char tid[2 * TL_TRACE_ID_LEN + 1], sid[2 * TL_SPAN_ID_LEN + 1], pid[2 * TL_SPAN_ID_LEN + 1];
	tl_hex_encode(has_parent ? parent.trace_id : trace_id, TL_TRACE_ID_LEN, tid);
	tl_hex_encode(span_id, TL_SPAN_ID_LEN, sid);
	if (has_parent)
		tl_hex_encode(parent.span_id, TL_SPAN_ID_LEN, pid);

	json_t *span =
	        json_pack("{s:s,s:s,s:s,s:i,s:o,s:o,s:o}", "traceId", tid, "spanId", sid, "name", o->name, "kind", kind,
	                  "startTimeUnixNano", ns_str(start), "endTimeUnixNano", ns_str(end), "attributes", attrs);
	if (span != NULL && has_parent)
		json_object_set_new(span, "parentSpanId", json_string(pid));
	if (span != NULL && code != 0) {
		json_t *st = json_pack("{s:i}", "code", code);
		if (st != NULL && o->message != NULL)
			json_object_set_new(st, "message", json_string(o->message));
		json_object_set_new(span, "status", st);
	}
	json_t *req = span == NULL ? NULL
	                           : json_pack("{s:[{s:{s:[o]},s:[{s:{s:s,s:s},s:[o]}]}]}", "resourceSpans", "resource",
	                                       "attributes",
	                                       kv_new("service.name", strlen("service.name"),
	                                              json_pack("{s:s}", "stringValue", service)),
	                                       "scopeSpans", "scope", "name", SCOPE_NAME, "version", TL_VERSION,
	                                       "spans", span);
	*json = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (*json == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	snprintf(traceparent, CO_CLI_TRACEPARENT_LEN + 1, "00-%s-%s-01", tid, sid);
	return 0;
}

/* ---- the command ---- */

static const char span_usage[] =
        "usage: threadline emit span --name NAME [--service S] [--kind internal|server|client|producer|consumer]\n"
        "                            [--start TIME] [--end TIME | --duration DUR] [--attr key=value]...\n"
        "                            [--status ok|error] [--message MSG] [--agent URL]\n"
        "\n"
        "Sends one span to the local agent (OTLP/JSON, POST URL/v1/traces) and prints its traceparent,\n"
        "so the next step can be its child:\n"
        "  export TRACEPARENT=$(threadline emit span --name fetch --start \"$T0\" --attr rows=1200)\n"
        "The parent is $TRACEPARENT (W3C trace-context, 00-<trace id>-<span id>-<flags>); without it the\n"
        "span starts a new trace.\n"
        "--service  the resource's service.name (default " DEFAULT_SERVICE ")\n"
        "--kind     the span kind (default internal)\n"
        "--start, --end   RFC 3339, unix seconds, unix nanoseconds (T0=$(date +%s%N)) or a duration ago\n"
        "           (5m); the end defaults to now, the start to the end minus --duration, else the end\n"
        "--attr     key=value; the value is sent as an int (fits int64), a double (digits with '.' or an\n"
        "           exponent), a bool (true/false) or else a string\n"
        "--status   ok or error (default unset); --message gives an error's description\n"
        "--agent    the agent (default " DEFAULT_AGENT ", or $THREADLINE_AGENT)\n"
        "Exit codes: 0 sent, 1 the agent refused the span, 2 bad usage, 3 the agent is unreachable.\n";

/* True when the agent took the span: 2xx without a partialSuccess that rejected it. */
static bool accepted(const co_cli_http_answer *a, char *reason, size_t cap)
{
	if (a->status < 200 || a->status > 299) {
		co_cli_http_answer_reason(a, reason, cap);
		return false;
	}
	json_t *j = json_loadb(a->body.len > 0 ? (const char *)a->body.data : "{}", a->body.len > 0 ? a->body.len : 2,
	                       0, NULL);
	const json_t *ps = json_object_get(j, "partialSuccess");
	const json_t *rej = json_object_get(ps, "rejectedSpans");
	bool ok = rej == NULL || (json_is_string(rej) && strcmp(json_string_value(rej), "0") == 0) ||
	          (json_is_integer(rej) && json_integer_value(rej) == 0);
	if (!ok) {
		const char *m = json_string_value(json_object_get(ps, "errorMessage"));
		snprintf(reason, cap, "%s", m != NULL && m[0] != '\0' ? m : "span rejected");
	}
	json_decref(j);
	return ok;
}

int co_cli_emit_span(co_cli *cli, int argc, char **argv)
{
	co_cli_span_opts o = {0};
	const char *agent = getenv("THREADLINE_AGENT");
	if (agent == NULL || agent[0] == '\0')
		agent = DEFAULT_AGENT;
	o.traceparent = getenv("TRACEPARENT");
	const char **attrs = calloc((size_t)argc, sizeof(*attrs));
	if (attrs == NULL) {
		fprintf(stderr, "threadline emit span: out of memory\n");
		return CLI_ERR;
	}
	o.attrs = attrs;
	static const char *const flags[] = {"--name",     "--service", "--kind",   "--start",   "--end",
	                                    "--duration", "--attr",    "--status", "--message", "--agent"};
	const char **slots[] = {&o.name,     &o.service, &o.kind,   &o.start,   &o.end,
	                        &o.duration, NULL,       &o.status, &o.message, &agent};
	int code = CLI_OK;
	for (int i = 2; i < argc && code == CLI_OK; i++) {
		const char *a = argv[i], *val = NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(span_usage, stdout);
			free(attrs);
			return CLI_OK;
		}
		int m = 0;
		size_t f = 0;
		for (; f < sizeof(flags) / sizeof(flags[0]); f++)
			if ((m = co_cli_opt_value(argc, argv, &i, flags[f], &val)) != 0)
				break;
		if (m == 0) {
			fprintf(stderr, "threadline emit span: %s '%s'\n%s",
			        a[0] == '-' ? "unknown option" : "unexpected argument", a, span_usage);
			code = CLI_USAGE;
		} else if (m < 0) {
			fprintf(stderr, "threadline emit span: %s needs a value\n%s", flags[f], span_usage);
			code = CLI_USAGE;
		} else if (slots[f] == NULL) {
			attrs[o.nattrs++] = val;
		} else {
			*slots[f] = val;
		}
	}
	if (code == CLI_OK && o.name == NULL) {
		fprintf(stderr, "threadline emit span: missing --name NAME\n%s", span_usage);
		code = CLI_USAGE;
	}
	uint8_t tid[TL_TRACE_ID_LEN], sid[TL_SPAN_ID_LEN];
	if (code == CLI_OK && sodium_init() < 0) {
		fprintf(stderr, "threadline emit span: cannot make ids: libsodium did not start\n");
		code = CLI_ERR;
	}
	if (code == CLI_OK) {
		do
			randombytes_buf(tid, sizeof(tid));
		while (tl_id_is_zero(tid, sizeof(tid)));
		do
			randombytes_buf(sid, sizeof(sid));
		while (tl_id_is_zero(sid, sizeof(sid)));
	}
	char *body = NULL, tp[CO_CLI_TRACEPARENT_LEN + 1];
	tl_errmsg err = {{0}};
	if (code == CLI_OK) {
		int rc = co_cli_span_build(&o, tl_now_ns(), tid, sid, &body, tp, &err);
		if (rc != 0) {
			fprintf(stderr, "threadline emit span: %s\n", err.msg[0] ? err.msg : tl_strerror(rc));
			code = rc == TL_EINVALID ? CLI_USAGE : CLI_ERR;
		}
	}
	free(attrs);
	if (code != CLI_OK)
		return code;
	co_cli_http_answer a;
	int rc = co_cli_http_post_json(agent, "/v1/traces", body, strlen(body), cli->timeout_ms, &a, &err);
	free(body);
	if (rc == TL_EUSAGE) {
		fprintf(stderr, "threadline emit span: --agent: %s\n", err.msg);
		return CLI_USAGE;
	}
	if (rc == TL_ETRANSPORT || rc == TL_ETIMEOUT) {
		fprintf(stderr, "threadline emit span: the agent is unreachable: %s\n", err.msg);
		return CLI_UNREACHABLE;
	}
	if (rc != 0) {
		fprintf(stderr, "threadline emit span: %s\n", err.msg[0] ? err.msg : tl_strerror(rc));
		return CLI_ERR;
	}
	char reason[1024];
	if (accepted(&a, reason, sizeof(reason))) {
		printf("%s\n", tp);
		code = fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
	} else {
		fprintf(stderr, "threadline emit span: the agent refused the span (HTTP %d): \"%s\"\n", a.status,
		        reason);
		code = CLI_ERR;
	}
	tl_buf_fini(&a.body);
	return code;
}
