/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline export jaeger`: stored traces, chosen by id or by a trace
 * search, sent to Jaeger (or any OTLP/HTTP receiver) as gzipped OTLP
 * protobuf in bounded batches with tl_otlp_push's retries, or written as
 * the Jaeger UI's upload file. Traces are fetched from the collector one at
 * a time over the query protocol, so memory is one trace plus one batch.
 */
#include "co_cli_export.h"
#include "co_cli_search.h"
#include "co_export.h"
#include "co_jaeger.h"

#include "tl_error.h"
#include "tl_id.h"
#include "tl_otlp_push.h"
#include "tl_time.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_LIMIT_DEFAULT CO_CLI_SEARCH_LIMIT_MAX
#define HEADERS_MAX 32
#define SEARCH_ARGS_MAX 128

static const char export_usage[] =
        "usage: threadline export jaeger (--trace ID... | SEARCH FILTERS) (--otlp URL | --file PATH)\n"
        "                                [--header 'Name: value']... [--batch-spans N] [--batch-bytes SIZE]\n"
        "                                [--no-gzip] [--json]\n"
        "\n"
        "  Sends stored traces to Jaeger v2 (or any OTLP/HTTP receiver: Tempo, an OpenTelemetry\n"
        "  Collector), or writes them as a file the Jaeger UI opens (Search, Upload JSON).\n"
        "\n"
        "  --trace ID          a trace to export (1 to 32 hex digits); repeat it for more\n"
        "  SEARCH FILTERS      --service S, --operation O, --since 1h|TIME, --until TIME, --error,\n"
        "                      --min-duration D, --max-duration D, --attr key=value, --limit N:\n"
        "                      every trace `trace search` finds (--limit defaults to 1500 here)\n"
        "  --otlp URL          OTLP/HTTP protobuf endpoint, e.g. http://jaeger:4318/v1/traces;\n"
        "                      gzipped, retried on 429/502/503/504 and connection errors with\n"
        "                      Retry-After or backoff with jitter; any other error stops the export\n"
        "  --file PATH         the Jaeger UI upload JSON ('-' for stdout)\n"
        "  --header 'K: V'     an extra request header (Authorization, X-Scope-OrgID); may repeat\n"
        "  --batch-spans N     spans per request (default 1000, at most 100000)\n"
        "  --batch-bytes SIZE  encoded bytes per request, K/M suffixes (default 4M; 64K..32M)\n"
        "  --no-gzip           send requests uncompressed\n"
        "  --json              the summary as JSON on stdout\n"
        "\n"
        "  Progress goes to stderr when it is a terminal; a summary line ends the export.\n"
        "  Exit codes: 0 ok; 1 the export failed (the receiver's status and answer are shown), a\n"
        "  trace was not found or the receiver rejected spans; 2 bad usage; 3 collector unreachable.\n";

static volatile int interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

typedef struct export_args {
	const char **trace_ids;
	size_t n_traces;
	const char *otlp, *file;
	const char *headers[HEADERS_MAX];
	size_t n_headers;
	size_t batch_spans, batch_bytes;
	bool no_gzip, json, help;
	char *search_argv[SEARCH_ARGS_MAX + 3]; /* "search", the filters, maybe --limit N */
	int search_argc;
	bool have_filters, have_limit;
} export_args;

typedef struct export_run {
	const co_cli *cli;
	const export_args *a;
	bool tty;
	tl_otlp_push_opts push;
	tl_errmsg err;  /* the push error that stopped the export */
	size_t traces;  /* exported */
	size_t total;   /* to export */
	uint64_t spans; /* pushed or written */
	uint64_t attempts, rejected, batches;
	char **not_found; /* trace ids (hex) the collector does not have */
	size_t n_not_found;
} export_run;

/* Parses "123", "64K", "4M" (powers of 1024). Returns 0 or TL_EINVALID. */
static int parse_size(const char *s, size_t *out)
{
	if (*s < '0' || *s > '9')
		return TL_EINVALID;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return TL_EINVALID;
	unsigned shift = 0;
	if (*end == 'k' || *end == 'K')
		shift = 10;
	else if (*end == 'm' || *end == 'M')
		shift = 20;
	else if (*end != '\0')
		return TL_EINVALID;
	if (shift != 0) {
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
	}
	if (*end != '\0' || v > (SIZE_MAX >> shift))
		return TL_EINVALID;
	*out = (size_t)(v << shift);
	return 0;
}

static bool is_flag(const char *arg, const char *name)
{
	size_t n = strlen(name);
	return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* Search flags that take a value: copied with it, so a value is never read as one of ours. */
static bool search_valued(const char *arg)
{
	static const char *const names[] = {"--service",      "--operation",    "--since", "--until",
	                                    "--min-duration", "--max-duration", "--attr",  "--limit"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(arg, names[i]) == 0)
			return true;
	return false;
}

static int parse_args(int argc, char **argv, export_args *a, tl_errmsg *err)
{
	memset(a, 0, sizeof(*a));
	a->search_argv[a->search_argc++] = "search";
	if ((a->trace_ids = calloc((size_t)argc + 1, sizeof(*a->trace_ids))) == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *v = NULL;
		int r;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			a->help = true;
			return 0;
		} else if (strcmp(arg, "--json") == 0) {
			a->json = true;
		} else if (strcmp(arg, "--no-gzip") == 0) {
			a->no_gzip = true;
		} else if ((r = co_cli_opt_value(argc, argv, &i, "--trace", &v)) != 0) {
			if (r < 0)
				return tl_errf(err, TL_EUSAGE, "--trace needs a trace id");
			uint8_t id[16];
			if (co_jaeger_parse_trace_id(v, id) != 0)
				return tl_errf(err, TL_EUSAGE, "--trace: expected 1 to 32 hex digits, got '%s'", v);
			a->trace_ids[a->n_traces++] = v;
		} else if ((r = co_cli_opt_value(argc, argv, &i, "--otlp", &v)) != 0) {
			if (r < 0 || v[0] == '\0')
				return tl_errf(err, TL_EUSAGE,
				               "--otlp needs a URL like http://127.0.0.1:4318/v1/traces");
			if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
				return tl_errf(err, TL_EUSAGE, "--otlp: expected an http:// or https:// URL, got '%s'",
				               v);
			if (a->otlp != NULL)
				return tl_errf(err, TL_EUSAGE, "--otlp given twice");
			a->otlp = v;
		} else if ((r = co_cli_opt_value(argc, argv, &i, "--file", &v)) != 0) {
			if (r < 0 || v[0] == '\0')
				return tl_errf(err, TL_EUSAGE, "--file needs a path ('-' for stdout)");
			if (a->file != NULL)
				return tl_errf(err, TL_EUSAGE, "--file given twice");
			a->file = v;
		} else if ((r = co_cli_opt_value(argc, argv, &i, "--header", &v)) != 0) {
			const char *colon = r > 0 ? strchr(v, ':') : NULL;
			if (r < 0 || colon == NULL || colon == v || strpbrk(v, "\r\n") != NULL)
				return tl_errf(err, TL_EUSAGE, "--header: expected 'Name: value', got '%s'",
				               r < 0 ? "" : v);
			if (a->n_headers == HEADERS_MAX)
				return tl_errf(err, TL_EUSAGE, "--header: at most %d of them", HEADERS_MAX);
			a->headers[a->n_headers++] = v;
		} else if ((r = co_cli_opt_value(argc, argv, &i, "--batch-spans", &v)) != 0) {
			char *end = NULL;
			unsigned long n = 0;
			if (r > 0 && v[0] >= '0' && v[0] <= '9') {
				errno = 0;
				n = strtoul(v, &end, 10);
			}
			if (r < 0 || end == NULL || *end != '\0' || errno != 0 || n == 0 ||
			    n > CO_EXPORT_BATCH_SPANS_MAX)
				return tl_errf(err, TL_EUSAGE,
				               "--batch-spans: expected a number from 1 to %d, got '%s'",
				               CO_EXPORT_BATCH_SPANS_MAX, r < 0 ? "" : v);
			a->batch_spans = n;
		} else if ((r = co_cli_opt_value(argc, argv, &i, "--batch-bytes", &v)) != 0) {
			if (r < 0 || parse_size(v, &a->batch_bytes) != 0 ||
			    a->batch_bytes < CO_EXPORT_BATCH_BYTES_MIN || a->batch_bytes > CO_EXPORT_BATCH_BYTES_MAX)
				return tl_errf(err, TL_EUSAGE,
				               "--batch-bytes: expected a size from 64K to 32M, got '%s'",
				               r < 0 ? "" : v);
		} else {
			/* Everything else is the search's to judge (it names an unknown flag). */
			bool valued = search_valued(arg) && i + 1 < argc;
			if (a->search_argc + (valued ? 2 : 1) > SEARCH_ARGS_MAX)
				return tl_errf(err, TL_EUSAGE, "too many search filters");
			if (is_flag(arg, "--limit"))
				a->have_limit = true;
			a->search_argv[a->search_argc++] = (char *)arg;
			if (valued)
				a->search_argv[a->search_argc++] = argv[++i];
			a->have_filters = true;
		}
	}
	if (a->otlp == NULL && a->file == NULL)
		return tl_errf(err, TL_EUSAGE, "say where to: --otlp URL or --file PATH");
	if (a->otlp != NULL && a->file != NULL)
		return tl_errf(err, TL_EUSAGE, "--otlp and --file exclude each other: export once for each");
	if (a->n_traces == 0 && !a->have_filters)
		return tl_errf(err, TL_EUSAGE, "say which traces: --trace ID, or search filters such as --since 1h");
	if (a->n_traces > 0 && a->have_filters)
		return tl_errf(err, TL_EUSAGE, "--trace and search filters (%s) exclude each other", a->search_argv[1]);
	if (a->file != NULL && (a->n_headers > 0 || a->batch_spans > 0 || a->batch_bytes > 0 || a->no_gzip))
		return tl_errf(err, TL_EUSAGE, "--header, --batch-spans, --batch-bytes and --no-gzip go with --otlp");
	if (a->have_filters && !a->have_limit) {
		static char limit[16];
		snprintf(limit, sizeof(limit), "%d", EXPORT_LIMIT_DEFAULT);
		a->search_argv[a->search_argc++] = "--limit";
		a->search_argv[a->search_argc++] = limit;
	}
	return 0;
}

/* ---- which traces ---- */

/* Runs the search; *ids gets the trace ids found (caller frees with free()). Returns an exit code. */
static int search_ids(const co_cli *cli, export_args *a, uint8_t (**ids)[16], size_t *n, size_t *limit, bool *partial)
{
	co_cli_search_args s;
	tl_errmsg err = {{0}};
	if (co_cli_search_parse(a->search_argc, a->search_argv, tl_now_ns(), &s, &err) != 0) {
		fprintf(stderr, "threadline export jaeger: %s\n%s", err.msg, export_usage);
		return CLI_USAGE;
	}
	*limit = s.q.limit;
	tl_pb_query_req q;
	threadline__v1__query_request__init(&q);
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_SEARCH;
	q.trace_search = &s.q;
	tl_pb_query_resp *resp = NULL;
	int rc = co_cli_query(cli, &q, &resp);
	co_cli_search_args_fini(&s);
	if (rc != 0)
		return CLI_UNREACHABLE;
	int code = CLI_OK;
	json_t *doc = NULL;
	if (resp->code != 0) {
		fprintf(stderr, "threadline export jaeger: the search failed: %s\n",
		        resp->error != NULL && resp->error[0] ? resp->error : tl_strerror(resp->code));
		code = resp->code == TL_EINVALID ? CLI_USAGE : CLI_ERR;
	} else if (resp->json == NULL || (doc = co_cli_load_doc(resp->json, strlen(resp->json), &err)) == NULL) {
		fprintf(stderr, "threadline export jaeger: the collector's search answer is unusable: %s\n",
		        resp->json == NULL ? "no document" : err.msg);
		code = CLI_ERR;
	} else {
		const json_t *traces = json_object_get(doc, "traces");
		*partial = json_is_true(json_object_get(doc, "partial"));
		*n = json_array_size(traces);
		*ids = calloc(*n ? *n : 1, sizeof(**ids));
		if (*ids == NULL) {
			code = CLI_ERR;
		} else {
			for (size_t i = 0; i < *n; i++) {
				const char *id =
				        json_string_value(json_object_get(json_array_get(traces, i), "trace_id"));
				if (id == NULL || tl_hex_decode(id, strlen(id), (*ids)[i], 16) != 0) {
					fprintf(stderr,
					        "threadline export jaeger: the search answer's trace %zu has no id\n",
					        i);
					code = CLI_ERR;
					break;
				}
			}
		}
	}
	json_decref(doc);
	threadline__v1__query_response__free_unpacked(resp, NULL);
	return code;
}

/* Fetches one trace. *resp is NULL when the collector does not have it. Returns 0 or an exit code. */
static int fetch(const co_cli *cli, const uint8_t id[16], tl_pb_query_resp **resp)
{
	tl_pb_query_req q;
	tl_pb_trace_get tg;
	threadline__v1__query_request__init(&q);
	threadline__v1__trace_get__init(&tg);
	tg.trace_id.data = (uint8_t *)id;
	tg.trace_id.len = 16;
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_GET;
	q.trace_get = &tg;
	*resp = NULL;
	if (co_cli_query(cli, &q, resp) != 0)
		return CLI_UNREACHABLE;
	if ((*resp)->code == TL_ENOTFOUND || ((*resp)->code == 0 && (*resp)->trace == NULL)) {
		threadline__v1__query_response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return 0;
	}
	if ((*resp)->code != 0) {
		char hex[33];
		tl_hex_encode(id, 16, hex);
		fprintf(stderr, "threadline export jaeger: trace %s: %s\n", hex,
		        (*resp)->error != NULL && (*resp)->error[0] ? (*resp)->error : tl_strerror((*resp)->code));
		threadline__v1__query_response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return CLI_ERR;
	}
	return 0;
}

/* ---- progress ---- */

static void progress(const export_run *r)
{
	if (!r->tty)
		return;
	fprintf(stderr, "\r\033[Kexport jaeger: %zu/%zu traces, %llu spans", r->traces, r->total,
	        (unsigned long long)r->spans);
	if (r->a->otlp != NULL)
		fprintf(stderr, ", %llu batch%s sent", (unsigned long long)r->batches, r->batches == 1 ? "" : "es");
	fflush(stderr);
}

static void progress_clear(const export_run *r)
{
	if (r->tty)
		fputs("\r\033[K", stderr);
}

static void on_retry(void *ud, unsigned attempt, long status, uint64_t wait_ns, const char *why)
{
	export_run *r = ud;
	(void)status;
	progress_clear(r);
	char d[32];
	tl_format_duration(wait_ns, d, sizeof(d));
	fprintf(stderr, "threadline export jaeger: attempt %u failed (%s); retrying in %s\n", attempt, why, d);
	progress(r);
}

static int push_batch(void *ud, const uint8_t *body, size_t len, size_t n_spans)
{
	export_run *r = ud;
	tl_otlp_push_result res;
	int rc = tl_otlp_push(&r->push, body, len, &res, &r->err);
	r->attempts += res.attempts;
	if (rc != 0)
		return rc;
	r->batches++;
	r->spans += n_spans;
	if (res.rejected_spans > 0 || res.message[0] != '\0') {
		progress_clear(r);
		fprintf(stderr, "threadline export jaeger: the receiver rejected %llu of %zu spans%s%s\n",
		        (unsigned long long)res.rejected_spans, n_spans, res.message[0] ? ": " : "", res.message);
		r->rejected += res.rejected_spans;
	}
	progress(r);
	return 0;
}

/* ---- the file ---- */

typedef struct out_file {
	FILE *f;
	char *tmp; /* NULL for stdout */
	const char *path;
} out_file;

static int file_open(out_file *o, const char *path, tl_errmsg *err)
{
	memset(o, 0, sizeof(*o));
	o->path = path;
	if (strcmp(path, "-") == 0) {
		o->f = stdout;
		return 0;
	}
	/* Written beside the target and renamed at the end: a failed export leaves no half file. */
	size_t n = strlen(path) + sizeof(".tmp.XXXXXX");
	if ((o->tmp = malloc(n)) == NULL)
		return tl_errf(err, -ENOMEM, "out of memory");
	snprintf(o->tmp, n, "%s.tmp.XXXXXX", path);
	int fd = mkstemp(o->tmp);
	if (fd < 0) {
		int e = errno;
		free(o->tmp);
		o->tmp = NULL;
		return tl_errf(err, -e, "%s: %s", path, strerror(e));
	}
	mode_t mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	if ((o->f = fdopen(fd, "w")) == NULL) {
		int e = errno;
		close(fd);
		unlink(o->tmp);
		free(o->tmp);
		o->tmp = NULL;
		return tl_errf(err, -e, "%s: %s", path, strerror(e));
	}
	return 0;
}

/* Finishes (commit) or abandons the file. Returns 0 or -errno with err set. */
static int file_close(out_file *o, bool commit, tl_errmsg *err)
{
	int rc = 0;
	if (o->f == NULL)
		return 0;
	if (o->tmp == NULL) {
		if (fflush(o->f) != 0)
			rc = tl_errf(err, -errno, "writing to stdout: %s", strerror(errno));
		o->f = NULL;
		return rc;
	}
	if (commit && (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0))
		rc = tl_errf(err, -errno, "%s: %s", o->path, strerror(errno));
	if (fclose(o->f) != 0 && rc == 0 && commit)
		rc = tl_errf(err, -errno, "%s: %s", o->path, strerror(errno));
	o->f = NULL;
	if (commit && rc == 0 && rename(o->tmp, o->path) != 0)
		rc = tl_errf(err, -errno, "%s: %s", o->path, strerror(errno));
	if (!commit || rc != 0)
		unlink(o->tmp);
	free(o->tmp);
	o->tmp = NULL;
	return rc;
}

/* ---- the command ---- */

static void summary(const export_run *r, const co_export_jaeger_summary *js, size_t limit, bool limited)
{
	const export_args *a = r->a;
	FILE *out = a->file != NULL && strcmp(a->file, "-") == 0 ? stderr : stdout;
	if (a->json || r->cli->json) {
		json_t *nf = json_array();
		for (size_t i = 0; i < r->n_not_found; i++)
			json_array_append_new(nf, json_string(r->not_found[i]));
		json_t *o = json_object();
		if (o == NULL || nf == NULL) {
			json_decref(o);
			json_decref(nf);
			return;
		}
		json_object_set_new(o, "to", json_string(a->otlp != NULL ? a->otlp : a->file));
		json_object_set_new(o, "traces", json_integer((json_int_t)r->traces));
		json_object_set_new(o, "spans", json_integer((json_int_t)r->spans));
		if (a->otlp != NULL) {
			json_object_set_new(o, "batches", json_integer((json_int_t)r->batches));
			json_object_set_new(o, "attempts", json_integer((json_int_t)r->attempts));
			json_object_set_new(o, "rejected_spans", json_integer((json_int_t)r->rejected));
		} else if (js != NULL) {
			json_object_set_new(o, "processes", json_integer((json_int_t)js->processes));
			json_object_set_new(o, "references", json_integer((json_int_t)js->references));
			json_object_set_new(o, "unresolved_references", json_integer((json_int_t)js->unresolved));
		}
		json_object_set_new(o, "not_found", nf);
		json_object_set_new(o, "search_limit_reached", json_boolean(limited));
		json_dumpf(o, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
		fputc('\n', out);
		json_decref(o);
		return;
	}
	if (a->otlp != NULL) {
		fprintf(out, "exported %zu trace%s, %llu span%s to %s in %llu batch%s (%llu request%s", r->traces,
		        r->traces == 1 ? "" : "s", (unsigned long long)r->spans, r->spans == 1 ? "" : "s", a->otlp,
		        (unsigned long long)r->batches, r->batches == 1 ? "" : "es", (unsigned long long)r->attempts,
		        r->attempts == 1 ? "" : "s");
		if (r->attempts > r->batches)
			fprintf(out, ", %llu retried", (unsigned long long)(r->attempts - r->batches));
		fputc(')', out);
		if (r->rejected > 0)
			fprintf(out, "; the receiver rejected %llu span%s", (unsigned long long)r->rejected,
			        r->rejected == 1 ? "" : "s");
	} else if (js != NULL) {
		fprintf(out, "wrote %zu trace%s, %llu span%s, %llu process%s to %s", js->traces,
		        js->traces == 1 ? "" : "s", (unsigned long long)js->spans, js->spans == 1 ? "" : "s",
		        (unsigned long long)js->processes, js->processes == 1 ? "" : "es",
		        strcmp(a->file, "-") == 0 ? "stdout" : a->file);
		if (js->unresolved > 0)
			fprintf(out, "; %llu of %llu references point to spans not in the file, e.g. %s",
			        (unsigned long long)js->unresolved, (unsigned long long)js->references,
			        js->first_unresolved);
	}
	if (r->n_not_found > 0)
		fprintf(out, "; %zu trace%s not found (%s%s)", r->n_not_found, r->n_not_found == 1 ? "" : "s",
		        r->not_found[0], r->n_not_found > 1 ? ", ..." : "");
	fputc('\n', out);
	if (limited)
		fprintf(stderr,
		        "threadline export jaeger: the search stopped at its limit of %zu traces; there may be more "
		        "(narrow --since/--until, or raise --limit up to %d)\n",
		        limit, CO_CLI_SEARCH_LIMIT_MAX);
}

static int note_missing(export_run *r, const uint8_t id[16])
{
	char **nf = realloc(r->not_found, (r->n_not_found + 1) * sizeof(*nf));
	if (nf == NULL)
		return -ENOMEM;
	r->not_found = nf;
	if ((nf[r->n_not_found] = malloc(33)) == NULL)
		return -ENOMEM;
	tl_hex_encode(id, 16, nf[r->n_not_found]);
	r->n_not_found++;
	progress_clear(r);
	fprintf(stderr, "threadline export jaeger: trace %s not found\n", nf[r->n_not_found - 1]);
	return 0;
}

static int run_export(export_run *r, uint8_t (*ids)[16], size_t n, co_export_jaeger_summary *js)
{
	const export_args *a = r->a;
	co_export_batcher b;
	co_export_jaeger j;
	out_file of = {0};
	memset(&j, 0, sizeof(j));
	memset(&b, 0, sizeof(b));
	tl_errmsg ferr = {{0}};
	int rc, code = CLI_OK;
	if (a->otlp != NULL) {
		if (co_export_batcher_init(&b, a->batch_spans, a->batch_bytes, push_batch, r) != 0) {
			fprintf(stderr, "threadline export jaeger: bad batch limits\n");
			return CLI_USAGE;
		}
	} else {
		if (file_open(&of, a->file, &ferr) != 0) {
			fprintf(stderr, "threadline export jaeger: cannot write %s\n", ferr.msg);
			return CLI_ERR;
		}
		if ((rc = co_export_jaeger_begin(&j, of.f)) != 0) {
			fprintf(stderr, "threadline export jaeger: %s: %s\n", a->file, tl_strerror(rc));
			file_close(&of, false, &ferr);
			return CLI_ERR;
		}
	}
	r->total = n;
	progress(r);
	rc = 0;
	for (size_t i = 0; i < n && rc == 0 && code == CLI_OK; i++) {
		if (interrupted) {
			rc = -ECANCELED;
			break;
		}
		tl_pb_query_resp *resp;
		if ((code = fetch(r->cli, ids[i], &resp)) != CLI_OK)
			break;
		if (resp == NULL) {
			rc = note_missing(r, ids[i]);
			continue;
		}
		if (a->otlp != NULL) {
			rc = co_export_batcher_add_trace(&b, resp->trace);
		} else {
			rc = co_export_jaeger_add(&j, resp->trace);
			if (rc == 0)
				r->spans = j.spans;
		}
		threadline__v1__query_response__free_unpacked(resp, NULL);
		if (rc == 0) {
			r->traces++;
			progress(r);
		}
	}
	if (rc == 0 && code == CLI_OK && a->otlp != NULL)
		rc = co_export_batcher_flush(&b);
	progress_clear(r);
	bool ok = rc == 0 && code == CLI_OK;
	if (a->file != NULL) {
		if (ok && (rc = co_export_jaeger_end(&j, js)) != 0)
			ok = false;
		co_export_jaeger_fini(&j);
		if (file_close(&of, ok, &ferr) != 0 && ok) {
			fprintf(stderr, "threadline export jaeger: cannot write %s\n", ferr.msg);
			return CLI_ERR;
		}
		if (!ok && rc != 0 && rc != -ECANCELED)
			fprintf(stderr, "threadline export jaeger: writing %s: %s\n", a->file, tl_strerror(rc));
	} else {
		co_export_batcher_fini(&b);
		if (rc != 0 && rc != -ECANCELED)
			fprintf(stderr, "threadline export jaeger: %s\n",
			        r->err.msg[0] != '\0' ? r->err.msg : tl_strerror(rc));
	}
	if (rc == -ECANCELED)
		fprintf(stderr, "threadline export jaeger: interrupted\n");
	if (!ok && a->otlp != NULL && r->batches > 0)
		fprintf(stderr,
		        "threadline export jaeger: %llu spans in %llu batches were delivered before it stopped\n",
		        (unsigned long long)r->spans, (unsigned long long)r->batches);
	if (code != CLI_OK)
		return code;
	return rc != 0 ? CLI_ERR : CLI_OK;
}

int co_cli_export(co_cli *cli, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "jaeger") != 0) {
		fprintf(stderr, "threadline export: expected a target: jaeger\n%s", export_usage);
		return CLI_USAGE;
	}
	export_args a;
	tl_errmsg err = {{0}};
	if (parse_args(argc - 2, argv + 2, &a, &err) != 0) {
		fprintf(stderr, "threadline export jaeger: %s\n%s", err.msg, export_usage);
		free(a.trace_ids);
		return CLI_USAGE;
	}
	if (a.help) {
		fputs(export_usage, stdout);
		free(a.trace_ids);
		return CLI_OK;
	}
	uint8_t(*ids)[16] = NULL;
	size_t n = 0, limit = 0;
	bool partial = false;
	int code = CLI_OK;
	if (a.n_traces > 0) {
		if ((ids = calloc(a.n_traces, sizeof(*ids))) == NULL) {
			free(a.trace_ids);
			return CLI_ERR;
		}
		for (size_t i = 0; i < a.n_traces; i++) {
			uint8_t id[16];
			co_jaeger_parse_trace_id(a.trace_ids[i], id); /* checked while parsing */
			bool dup = false;
			for (size_t k = 0; k < n && !dup; k++)
				dup = memcmp(ids[k], id, 16) == 0;
			if (!dup)
				memcpy(ids[n++], id, 16);
		}
	} else if ((code = search_ids(cli, &a, &ids, &n, &limit, &partial)) != CLI_OK) {
		free(ids);
		free(a.trace_ids);
		return code;
	}
	if (partial)
		fprintf(stderr, "threadline export jaeger: the search was partial (it stopped after examining its "
		                "maximum of index entries); narrow it with --since, --service or --attr\n");

	export_run r = {.cli = cli, .a = &a, .tty = isatty(STDERR_FILENO) != 0};
	r.push = (tl_otlp_push_opts){.url = a.otlp,
	                             .headers = a.headers,
	                             .n_headers = a.n_headers,
	                             .gzip = !a.no_gzip,
	                             .on_retry = on_retry,
	                             .ud = &r,
	                             .cancel = &interrupted};
	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	co_export_jaeger_summary js;
	memset(&js, 0, sizeof(js));
	code = run_export(&r, ids, n, &js);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (code == CLI_OK) {
		summary(&r, a.file != NULL ? &js : NULL, limit, a.n_traces == 0 && n >= limit && limit > 0);
		if (r.n_not_found > 0 || r.rejected > 0)
			code = CLI_ERR;
	}
	for (size_t i = 0; i < r.n_not_found; i++)
		free(r.not_found[i]);
	free(r.not_found);
	free(ids);
	free(a.trace_ids);
	return code;
}
