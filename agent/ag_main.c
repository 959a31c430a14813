/* SPDX-License-Identifier: Apache-2.0 */
/*
 * threadline-agent: the sidecar. One libuv loop owns the HTTP receivers,
 * the pipeline and the sender's callbacks. SIGTERM or SIGINT drains: the
 * agent keeps answering until what it accepted is acknowledged (or the
 * drain deadline passes), then closes everything and exits 0.
 */
#include "ag_pipeline.h"
#include "ag_receiver.h"
#include "ag_sender.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_log.h"
#include "tl_time.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
        "usage: threadline-agent [options]\n"
        "\n"
        "Sidecar agent: accepts OpenTelemetry spans over OTLP/HTTP and ships them to a\n"
        "threadline collector, answering each request once the collector has stored it.\n"
        "\n"
        "  --collector URL          collector intake (default tcp://127.0.0.1:7411)\n"
        "  --http HOST:PORT         OTLP/HTTP listen address (default 127.0.0.1:4318)\n"
        "  --spool DIR              spool directory (created if missing)\n"
        "  --window N               batches in flight to the collector (default 4)\n"
        "  --max-pending-bytes N    accepted-but-unacknowledged bytes before 429 (default 8388608)\n"
        "  --max-body-bytes N       largest request body after gzip (default 8388608)\n"
        "  --request-timeout DUR    answer 503 if the collector has not acknowledged by then (default 10s)\n"
        "  --drain-timeout DUR      on SIGTERM, wait this long for acknowledgements (default 5s)\n"
        "  --log-level LEVEL        debug, info, warn or error (default info)\n"
        "  --help, --version\n";

typedef struct agent {
	uv_loop_t loop;
	ag_sender *sender;
	ag_pipeline *pipeline;
	ag_receiver *receiver;
	uv_signal_t sigterm, sigint;
	uv_timer_t drain;
	uint64_t drain_deadline;
	uint64_t drain_timeout_ms;
	int stopping;
} agent;

static int parse_size(const char *flag, const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0) {
		fprintf(stderr, "threadline-agent: %s: expected a positive integer, got '%s'\n", flag, s);
		return TL_EUSAGE;
	}
	*out = (size_t)v;
	return 0;
}

static int parse_dur_ms(const char *flag, const char *s, uint64_t *out)
{
	uint64_t ns;
	if (tl_parse_duration(s, &ns) != 0 || ns < TL_NS_PER_MS) {
		fprintf(stderr, "threadline-agent: %s: expected a duration like 500ms or 10s, got '%s'\n", flag, s);
		return TL_EUSAGE;
	}
	*out = ns / TL_NS_PER_MS;
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0750) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0750) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void all_closed(void *ud)
{
	(void)ud;
}

static void shutdown_now(agent *a)
{
	uv_timer_stop(&a->drain);
	uv_close((uv_handle_t *)&a->drain, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	/* Sender first (its callbacks point into the pipeline), then the pipeline answers what is
	 * left with 503, then the HTTP server goes. */
	ag_sender_close(a->sender);
	ag_pipeline_close(a->pipeline);
	ag_receiver_close(a->receiver, all_closed, a);
}

static void drain_tick(uv_timer_t *t)
{
	agent *a = t->data;
	if (ag_receiver_outstanding(a->receiver) == 0 || tl_mono_ns() >= a->drain_deadline) {
		unsigned left = ag_receiver_outstanding(a->receiver);
		tl_log(left ? TL_LOG_WARN : TL_LOG_INFO, "agent.stop", "unacknowledged_requests=%u", left);
		shutdown_now(a);
	}
}

static void on_signal(uv_signal_t *s, int signum)
{
	agent *a = s->data;
	if (a->stopping++) {
		return;
	}
	tl_log(TL_LOG_INFO, "agent.draining", "signal=%d pending_requests=%u", signum,
	       ag_receiver_outstanding(a->receiver));
	a->drain_deadline = tl_mono_ns() + a->drain_timeout_ms * TL_NS_PER_MS;
	uv_timer_start(&a->drain, drain_tick, 0, 50);
}

int main(int argc, char **argv)
{
	enum {
		O_COLLECTOR = 256,
		O_HTTP,
		O_SPOOL,
		O_WINDOW,
		O_MAXPEND,
		O_MAXBODY,
		O_REQTIMEOUT,
		O_DRAIN,
		O_LOG,
		O_HELP,
		O_VERSION
	};
	static const struct option opts[] = {
	        {"collector", required_argument, NULL, O_COLLECTOR},
	        {"http", required_argument, NULL, O_HTTP},
	        {"spool", required_argument, NULL, O_SPOOL},
	        {"window", required_argument, NULL, O_WINDOW},
	        {"max-pending-bytes", required_argument, NULL, O_MAXPEND},
	        {"max-body-bytes", required_argument, NULL, O_MAXBODY},
	        {"request-timeout", required_argument, NULL, O_REQTIMEOUT},
	        {"drain-timeout", required_argument, NULL, O_DRAIN},
	        {"log-level", required_argument, NULL, O_LOG},
	        {"help", no_argument, NULL, O_HELP},
	        {"version", no_argument, NULL, O_VERSION},
	        {NULL, 0, NULL, 0},
	};
	ag_sender_opts so;
	ag_pipeline_opts po;
	ag_receiver_opts ro;
	ag_sender_opts_default(&so);
	ag_pipeline_opts_default(&po);
	ag_receiver_opts_default(&ro);
	const char *spool = NULL;
	uint64_t drain_ms = 5000;
	size_t n;
	int c, level;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_COLLECTOR:
			so.collector_url = optarg;
			break;
		case O_HTTP:
			ro.listen = optarg;
			break;
		case O_SPOOL:
			spool = optarg;
			break;
		case O_WINDOW:
			if (parse_size("--window", optarg, &n) != 0)
				return 2;
			if (n > 64) {
				fprintf(stderr, "threadline-agent: --window: at most 64\n");
				return 2;
			}
			so.window = (unsigned)n;
			break;
		case O_MAXPEND:
			if (parse_size("--max-pending-bytes", optarg, &po.max_pending_bytes) != 0)
				return 2;
			break;
		case O_MAXBODY:
			if (parse_size("--max-body-bytes", optarg, &ro.http.max_body_bytes) != 0)
				return 2;
			ro.http.max_wire_body_bytes = ro.http.max_body_bytes;
			break;
		case O_REQTIMEOUT:
			if (parse_dur_ms("--request-timeout", optarg, &po.request_deadline_ms) != 0)
				return 2;
			break;
		case O_DRAIN:
			if (parse_dur_ms("--drain-timeout", optarg, &drain_ms) != 0)
				return 2;
			break;
		case O_LOG:
			if (tl_log_parse_level(optarg, &level) != 0) {
				fprintf(stderr, "threadline-agent: --log-level: expected debug, info, warn or error\n");
				return 2;
			}
			tl_log_set_level(level);
			break;
		case O_HELP:
			fputs(usage, stdout);
			return 0;
		case O_VERSION:
			printf("threadline-agent %s\n", TL_VERSION);
			return 0;
		default:
			fprintf(stderr, "threadline-agent: unknown or incomplete option '%s'\n%s", argv[optind - 1],
			        usage);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "threadline-agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (strncmp(so.collector_url, "tcp://", 6) != 0 && strncmp(so.collector_url, "tls+tcp://", 10) != 0 &&
	    strncmp(so.collector_url, "ipc://", 6) != 0) {
		fprintf(stderr, "threadline-agent: --collector: expected tcp://HOST:PORT, got '%s'\n",
		        so.collector_url);
		return 2;
	}
	if (spool != NULL) {
		int rc = mkdir_p(spool);
		if (rc != 0) {
			fprintf(stderr, "threadline-agent: --spool %s: %s\n", spool, tl_strerror(rc));
			return 1;
		}
	}
	/* A fresh identity per process: without a durable spool, sequence numbers restart at 1, and
	 * reusing an id would make the collector take new batches for duplicates. */
	if (tl_random_bytes(po.agent_id, sizeof(po.agent_id)) != 0) {
		fprintf(stderr, "threadline-agent: cannot read random bytes for the agent id\n");
		return 1;
	}

	agent a;
	memset(&a, 0, sizeof(a));
	a.drain_timeout_ms = drain_ms;
	uv_loop_init(&a.loop);
	int rc = ag_sender_new(&a.loop, &so, &a.sender);
	if (rc != 0) {
		fprintf(stderr, "threadline-agent: --collector %s: %s\n", so.collector_url, tl_strerror(rc));
		return 1;
	}
	if ((rc = ag_pipeline_new(&a.loop, a.sender, &po, &a.pipeline)) != 0) {
		fprintf(stderr, "threadline-agent: %s\n", tl_strerror(rc));
		return 1;
	}
	if ((rc = ag_receiver_new(&a.loop, &ro, a.pipeline, a.sender, &a.receiver)) != 0) {
		fprintf(stderr, "threadline-agent: --http %s: %s\n", ro.listen, tl_strerror(rc));
		ag_sender_close(a.sender);
		ag_pipeline_close(a.pipeline);
		uv_run(&a.loop, UV_RUN_DEFAULT);
		uv_loop_close(&a.loop);
		return 1;
	}
	uv_signal_init(&a.loop, &a.sigterm);
	uv_signal_init(&a.loop, &a.sigint);
	a.sigterm.data = a.sigint.data = &a;
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_timer_init(&a.loop, &a.drain);
	a.drain.data = &a;
	char idhex[33];
	tl_hex_encode(po.agent_id, sizeof(po.agent_id), idhex);
	tl_log(TL_LOG_INFO, "agent.ready", "http=%s port=%d collector=%s agent_id=%s", ro.listen,
	       ag_receiver_port(a.receiver), so.collector_url, idhex);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&a.loop);
	tl_log(TL_LOG_INFO, "agent.exit", "loop_closed=%s", rc == 0 ? "true" : "false");
	return 0;
}
