/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline demo`: the end-to-end story on a temporary data dir. It starts
 * a collector and an agent (the real binaries, found next to this one),
 * sends one ML pipeline trace over OTLP/HTTP as any OpenTelemetry SDK would
 * (ingest -> features -> predict, in which a feature step fails), prints its
 * waterfall from the collector's store, and stops everything it started.
 */
#include "co_cli.h"

#include "tl_buf.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct child {
	const char *name;
	pid_t pid;
	char log[PATH_MAX];
} child;

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	close(fd);
	return ntohs(a.sin_port);
}

/* Finds a sibling binary: next to argv0's real path, or in ../agent (the build tree). */
static int find_binary(const char *self, const char *name, char *out, size_t outlen)
{
	char dir[PATH_MAX];
	if (realpath("/proc/self/exe", dir) == NULL && realpath(self, dir) == NULL)
		return -errno;
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		return TL_ENOTFOUND;
	*slash = '\0';
	static const char *const subdirs[] = {"", "/../agent", "/../collector"};
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		int n = snprintf(out, outlen, "%s%s/%s", dir, subdirs[i], name);
		if (n > 0 && (size_t)n < outlen && access(out, X_OK) == 0)
			return 0;
	}
	return TL_ENOTFOUND;
}

static int start(child *c, char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	int rc = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		c->pid = 0;
		return -rc;
	}
	return 0;
}

/* Waits until the child's log holds `event=<event>`; fails early if it exits. */
static int wait_ready(child *c, const char *event, uint64_t timeout_ms)
{
	char want[128];
	snprintf(want, sizeof(want), "event=%s", event);
	uint64_t deadline = tl_mono_ns() + timeout_ms * TL_NS_PER_MS;
	while (tl_mono_ns() < deadline) {
		FILE *f = fopen(c->log, "r");
		if (f != NULL) {
			char line[4096];
			while (fgets(line, sizeof(line), f) != NULL) {
				if (strstr(line, want) != NULL) {
					fclose(f);
					return 0;
				}
			}
			fclose(f);
		}
		int st;
		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			c->pid = 0;
			return TL_ECLOSED;
		}
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return TL_ETIMEOUT;
}

static size_t trace_spans(const tl_pb_trace_result *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n_resource_spans; i++)
		for (size_t j = 0; j < t->resource_spans[i]->n_scope_spans; j++)
			n += t->resource_spans[i]->scope_spans[j]->n_spans;
	return n;
}

static void stop(child *c)
{
	if (c->pid <= 0)
		return;
	kill(c->pid, SIGTERM);
	uint64_t deadline = tl_mono_ns() + 10 * TL_NS_PER_S;
	int st;
	while (tl_mono_ns() < deadline) {
		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			c->pid = 0;
			return;
		}
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(c->pid, SIGKILL);
	waitpid(c->pid, &st, 0);
	c->pid = 0;
}

static void show_log(const child *c)
{
	FILE *f = fopen(c->log, "r");
	if (f == NULL)
		return;
	fprintf(stderr, "--- %s log (%s) ---\n", c->name, c->log);
	char line[4096];
	while (fgets(line, sizeof(line), f) != NULL)
		fputs(line, stderr);
	fclose(f);
}

typedef struct resp {
	int status;
	bool done;
	tl_buf body;
} resp;

static int on_body(http_parser *p, const char *at, size_t n)
{
	resp *r = p->data;
	return tl_buf_append(&r->body, at, n) == 0 ? 0 : -1;
}

static int on_done(http_parser *p)
{
	resp *r = p->data;
	r->status = (int)p->status_code;
	r->done = true;
	return 0;
}

/* POSTs body to 127.0.0.1:port path and parses the answer with http-parser. */
static int http_post(int port, const char *path, const char *ctype, const uint8_t *body, size_t len, resp *r)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = {
	        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	char head[512];
	int hn = snprintf(head, sizeof(head),
	                  "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                  "Connection: close\r\n\r\n",
	                  path, port, ctype, len);
	if (write(fd, head, (size_t)hn) != hn || write(fd, body, len) != (ssize_t)len) {
		int e = -errno;
		close(fd);
		return e ? e : -EIO;
	}
	http_parser p;
	http_parser_settings s;
	http_parser_init(&p, HTTP_RESPONSE);
	http_parser_settings_init(&s);
	s.on_body = on_body;
	s.on_message_complete = on_done;
	p.data = r;
	tl_buf_init(&r->body, 1 << 20);
	char buf[4096];
	while (!r->done) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;
			close(fd);
			return e;
		}
		size_t used = http_parser_execute(&p, &s, buf, (size_t)n);
		if (p.http_errno != HPE_OK || used != (size_t)n || n == 0)
			break;
	}
	close(fd);
	return r->done ? 0 : TL_EPROTO;
}

/* ---- The demo trace: one prediction through a three-stage ML pipeline. ---- */

typedef struct demo_span {
	const char *service;
	const char *name;
	int parent; /* index, -1 for the root */
	int kind;
	uint64_t start_ms, end_ms;
	const char *error; /* status message when the span failed */
	const char *attrs[8][2];
} demo_span;

static const demo_span demo_spans[] = {
        {"serving-api",
         "POST /v1/predict",
         -1,
         2,
         0,
         212,
         "prediction failed: model input contains NaN",
         {{"http.request.method", "POST"},
          {"ml.prediction.id", "pred-7f3a"},
          {"ml.model.name", "churn"},
          {"ml.model.version", "12"}}},
        {"serving-api", "features.lookup", 0, 3, 4, 150, NULL, {{"peer.service", "feature-store"}}},
        {"feature-store", "GET /features/user", 1, 2, 9, 146, NULL, {{"ml.feature.view", "user_profile_v3"}}},
        {"feature-store",
         "ingest.read_partition",
         2,
         1,
         12,
         58,
         NULL,
         {{"dataset", "s3://raw/events/2026-11-23"}, {"lineage.run_id", "4d1c2a9e-5b7f-4e21-9c3a-2f6d8e0b1a77"}}},
        {"feature-store",
         "features.normalize",
         2,
         1,
         60,
         141,
         "ValueError: column 'age' has 312 NaN rows after join",
         {{"lineage.run_id", "4d1c2a9e-5b7f-4e21-9c3a-2f6d8e0b1a77"}, {"ml.feature.count", "48"}}},
        {"model-server",
         "predict.score",
         0,
         3,
         152,
         208,
         "model input contains NaN",
         {{"ml.model.name", "churn"}, {"ml.model.version", "12"}, {"ml.deployment", "churn-prod"}}},
        {"model-server", "onnx.run", 5, 1, 158, 201, NULL, {{"ml.input.digest", "sha256:9b1c04e2"}}},
};
#define DEMO_N (sizeof(demo_spans) / sizeof(demo_spans[0]))

static const char *const demo_services[] = {"serving-api", "feature-store", "model-server"};

/* Encodes the demo trace as an OTLP ExportTraceServiceRequest. Caller frees *out with free(). */
static int build_trace(const uint8_t tid[16], uint8_t **out, size_t *len)
{
	uint64_t t0 = tl_now_ns() - 2 * TL_NS_PER_S;
	static uint8_t sids[DEMO_N][8];
	tl_pb_span spans[DEMO_N];
	tl_pb_span *span_ptrs[DEMO_N];
	tl_pb_status status[DEMO_N];
	tl_pb_keyvalue kv[DEMO_N][8];
	tl_pb_keyvalue *kvp[DEMO_N][8];
	tl_pb_anyvalue av[DEMO_N][8];
	tl_pb_event ev[DEMO_N];
	tl_pb_event *evp[DEMO_N];
	tl_pb_keyvalue evkv[DEMO_N];
	tl_pb_keyvalue *evkvp[DEMO_N];
	tl_pb_anyvalue evav[DEMO_N];
	for (size_t i = 0; i < DEMO_N; i++) {
		tl_random_bytes(sids[i], 8);
		sids[i][0] |= 1;
	}
	for (size_t i = 0; i < DEMO_N; i++) {
		const demo_span *d = &demo_spans[i];
		tl_pb_span *s = &spans[i];
		opentelemetry__proto__trace__v1__span__init(s);
		s->trace_id.data = (uint8_t *)tid;
		s->trace_id.len = 16;
		s->span_id.data = sids[i];
		s->span_id.len = 8;
		if (d->parent >= 0) {
			s->parent_span_id.data = sids[d->parent];
			s->parent_span_id.len = 8;
		}
		s->name = (char *)d->name;
		s->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)d->kind;
		s->start_time_unix_nano = t0 + d->start_ms * TL_NS_PER_MS;
		s->end_time_unix_nano = t0 + d->end_ms * TL_NS_PER_MS;
		size_t na = 0;
		for (; na < 8 && d->attrs[na][0] != NULL; na++) {
			opentelemetry__proto__common__v1__key_value__init(&kv[i][na]);
			opentelemetry__proto__common__v1__any_value__init(&av[i][na]);
			kv[i][na].key = (char *)d->attrs[na][0];
			av[i][na].value_case = TL_PB_ANY_STRING;
			av[i][na].string_value = (char *)d->attrs[na][1];
			kv[i][na].value = &av[i][na];
			kvp[i][na] = &kv[i][na];
		}
		s->attributes = kvp[i];
		s->n_attributes = na;
		if (d->error != NULL) {
			opentelemetry__proto__trace__v1__status__init(&status[i]);
			status[i].code = TL_PB_STATUS_ERROR;
			status[i].message = (char *)d->error;
			s->status = &status[i];
			opentelemetry__proto__trace__v1__span__event__init(&ev[i]);
			ev[i].name = "exception";
			ev[i].time_unix_nano = s->end_time_unix_nano - TL_NS_PER_MS;
			opentelemetry__proto__common__v1__key_value__init(&evkv[i]);
			opentelemetry__proto__common__v1__any_value__init(&evav[i]);
			evkv[i].key = "exception.message";
			evav[i].value_case = TL_PB_ANY_STRING;
			evav[i].string_value = (char *)d->error;
			evkv[i].value = &evav[i];
			evkvp[i] = &evkv[i];
			ev[i].attributes = &evkvp[i];
			ev[i].n_attributes = 1;
			evp[i] = &ev[i];
			s->events = &evp[i];
			s->n_events = 1;
		}
		span_ptrs[i] = s;
	}
	/* One ResourceSpans per service, as three SDKs would send them (here in one request). */
	tl_pb_resource_spans rs[3];
	tl_pb_resource_spans *rsp[3];
	tl_pb_resource res[3];
	tl_pb_keyvalue rkv[3];
	tl_pb_keyvalue *rkvp[3];
	tl_pb_anyvalue rav[3];
	tl_pb_scope_spans ss[3];
	tl_pb_scope_spans *ssp[3];
	tl_pb_scope scope;
	tl_pb_span *by_svc[3][DEMO_N];
	opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
	scope.name = "threadline-demo";
	scope.version = TL_VERSION;
	for (size_t k = 0; k < 3; k++) {
		opentelemetry__proto__trace__v1__resource_spans__init(&rs[k]);
		opentelemetry__proto__resource__v1__resource__init(&res[k]);
		opentelemetry__proto__common__v1__key_value__init(&rkv[k]);
		opentelemetry__proto__common__v1__any_value__init(&rav[k]);
		opentelemetry__proto__trace__v1__scope_spans__init(&ss[k]);
		rkv[k].key = "service.name";
		rav[k].value_case = TL_PB_ANY_STRING;
		rav[k].string_value = (char *)demo_services[k];
		rkv[k].value = &rav[k];
		rkvp[k] = &rkv[k];
		res[k].attributes = &rkvp[k];
		res[k].n_attributes = 1;
		rs[k].resource = &res[k];
		size_t n = 0;
		for (size_t i = 0; i < DEMO_N; i++)
			if (strcmp(demo_spans[i].service, demo_services[k]) == 0)
				by_svc[k][n++] = span_ptrs[i];
		ss[k].scope = &scope;
		ss[k].spans = by_svc[k];
		ss[k].n_spans = n;
		ssp[k] = &ss[k];
		rs[k].scope_spans = &ssp[k];
		rs[k].n_scope_spans = 1;
		rsp[k] = &rs[k];
	}
	tl_pb_export_req req;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
	req.resource_spans = rsp;
	req.n_resource_spans = 3;
	*len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(&req);
	*out = malloc(*len);
	if (*out == NULL)
		return -ENOMEM;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, *out);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const char demo_usage[] = "usage: threadline demo [--keep]\n"
                                 "  --keep   leave the temporary data dir in place and print its path\n";

int co_cli_demo(co_cli *cli, int argc, char **argv, const char *argv0)
{
	bool keep = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--keep") == 0) {
			keep = true;
		} else if (strcmp(argv[i], "--help") == 0) {
			fputs(demo_usage, stdout);
			return CLI_OK;
		} else {
			fprintf(stderr, "threadline demo: unknown argument '%s'\n%s", argv[i], demo_usage);
			return CLI_USAGE;
		}
	}
	char agent_bin[PATH_MAX], collector_bin[PATH_MAX];
	if (find_binary(argv0, "threadline-agent", agent_bin, sizeof(agent_bin)) != 0 ||
	    find_binary(argv0, "threadline-collector", collector_bin, sizeof(collector_bin)) != 0) {
		fprintf(stderr, "threadline demo: threadline-agent and threadline-collector must be installed next "
		                "to threadline (or in the build tree)\n");
		return CLI_ERR;
	}
	char tmpl[] = "/tmp/threadline-demo-XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (dir == NULL) {
		fprintf(stderr, "threadline demo: cannot create a temporary dir: %s\n", strerror(errno));
		return CLI_ERR;
	}
	int p_in = free_port(), p_q = free_port(), p_http = free_port();
	char data[PATH_MAX], spool[PATH_MAX], listen[64], query[64], dial[64], http[64];
	snprintf(data, sizeof(data), "%s/collector", dir);
	snprintf(spool, sizeof(spool), "%s/agent-spool", dir);
	snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", p_in);
	snprintf(dial, sizeof(dial), "tcp://127.0.0.1:%d", p_in);
	snprintf(query, sizeof(query), "tcp://127.0.0.1:%d", p_q);
	snprintf(http, sizeof(http), "127.0.0.1:%d", p_http);
	mkdir(data, 0750);
	child col = {.name = "collector"}, ag = {.name = "agent"};
	snprintf(col.log, sizeof(col.log), "%s/collector.log", dir);
	snprintf(ag.log, sizeof(ag.log), "%s/agent.log", dir);
	int code = CLI_ERR;
	uint8_t *body = NULL;
	resp r = {0};

	printf("Threadline demo — data dir %s\n\n", dir);
	char *col_argv[] = {collector_bin, "--data", data,     "--listen",    listen,
	                    "--query",     query,    "--http", "127.0.0.1:0", NULL};
	char *ag_argv[] = {agent_bin, "--collector", dial, "--http", http, "--spool", spool, NULL};
	printf("1. Starting the collector (intake %s, query %s)\n", listen, query);
	if (start(&col, col_argv) != 0 || wait_ready(&col, "collector.ready", 10000) != 0) {
		fprintf(stderr, "threadline demo: the collector did not start\n");
		show_log(&col);
		goto out;
	}
	printf("2. Starting the sidecar agent (OTLP/HTTP on %s)\n", http);
	if (start(&ag, ag_argv) != 0 || wait_ready(&ag, "agent.ready", 10000) != 0) {
		fprintf(stderr, "threadline demo: the agent did not start\n");
		show_log(&ag);
		goto out;
	}
	uint8_t tid[16];
	tl_random_bytes(tid, sizeof(tid));
	char tidhex[33];
	tl_hex_encode(tid, 16, tidhex);
	size_t len;
	if (build_trace(tid, &body, &len) != 0)
		goto out;
	printf("3. A prediction request flows serving-api -> feature-store -> model-server;\n"
	       "   the feature store's normalize step fails and the prediction fails with it.\n"
	       "   Sending its %zu spans to the agent as OTLP/HTTP protobuf (%zu bytes)...\n",
	       DEMO_N, len);
	int rc = http_post(p_http, "/v1/traces", "application/x-protobuf", body, len, &r);
	if (rc != 0 || r.status != 200) {
		fprintf(stderr, "threadline demo: the agent answered %d (%s)\n", r.status, rc ? tl_strerror(rc) : "");
		show_log(&ag);
		goto out;
	}
	printf("   The agent answered 200: the spans are committed to its spool, and the agent\n"
	       "   now ships them to the collector, deleting them only once LMDB has them.\n\n");
	printf("4. threadline --collector %s trace show %s\n\n", query, tidhex);
	fflush(stdout);
	tl_pb_query_req q;
	tl_pb_trace_get tg;
	threadline__v1__query_request__init(&q);
	threadline__v1__trace_get__init(&tg);
	tg.trace_id.data = tid;
	tg.trace_id.len = 16;
	q.version = 1;
	q.query_case = THREADLINE__V1__QUERY_REQUEST__QUERY_TRACE_GET;
	q.trace_get = &tg;
	co_cli qc = *cli;
	qc.collector = query;
	tl_pb_query_resp *qr = NULL;
	/* Delivery takes a round trip after the 200: ask until every span is there (10 s at most). */
	for (int i = 0;; i++) {
		if (co_cli_query(&qc, &q, &qr) != 0)
			goto out;
		if (qr->code == 0 && qr->trace != NULL && trace_spans(qr->trace) >= DEMO_N)
			break;
		if (i == 200) {
			fprintf(stderr, "threadline demo: %s\n",
			        qr->error && qr->error[0] ? qr->error
			                                  : "the trace did not reach the collector in 10 s");
			threadline__v1__query_response__free_unpacked(qr, NULL);
			goto out;
		}
		threadline__v1__query_response__free_unpacked(qr, NULL);
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	co_cli_trace_print(&qc, qr->trace, stdout);
	char cause[512];
	if (co_cli_trace_root_cause(qr->trace, cause, sizeof(cause)) == 0)
		printf("\nRoot cause (the failing span with no failing child that started first):\n  %s\n\n", cause);
	threadline__v1__query_response__free_unpacked(qr, NULL);
	code = CLI_OK;
out:
	printf("5. Stopping the agent and the collector\n");
	stop(&ag);
	stop(&col);
	free(body);
	tl_buf_fini(&r.body);
	if (keep) {
		printf("   Data kept in %s\n", dir);
	} else {
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		printf("   Removed %s\n", dir);
	}
	return code;
}
