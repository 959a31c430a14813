/* SPDX-License-Identifier: Apache-2.0 */
/*
 * threadline-agent: the sidecar. One libuv loop owns the HTTP receivers,
 * the pipeline and the sender's callbacks; spool commits run on the libuv
 * thread pool. SIGTERM or SIGINT drains: new requests get 503, what was
 * received is committed to the spool, and the sender keeps delivering until
 * the spool is empty or the drain deadline passes; then everything closes
 * and the agent exits 0. What was not delivered stays in the spool and is
 * sent by the next start.
 */
#include "ag_pipeline.h"
#include "ag_receiver.h"
#include "ag_sender.h"
#include "ag_spool.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_log.h"
#include "tl_time.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
        "usage: threadline-agent [options]\n"
        "\n"
        "Sidecar agent: accepts OpenTelemetry spans over OTLP/HTTP, answers 200 once they\n"
        "are committed to its local spool, and ships them to a threadline collector,\n"
        "removing them from the spool only when the collector has stored them.\n"
        "\n"
        "  --collector URL          collector intake (default tcp://127.0.0.1:7411)\n"
        "  --http HOST:PORT         OTLP/HTTP listen address (default 127.0.0.1:4318)\n"
        "  --spool DIR              spool directory, created if missing (default threadline-spool)\n"
        "  --spool-max-bytes N      bound on spooled bytes; past it, 429 (default 1GiB); the spool\n"
        "                           reserves 1.5 x N + 4MiB of disk at start\n"
        "  --fsync always|DUR       always: fsync every group commit (default); a duration such\n"
        "                           as 100ms: fsync that often (a power loss can lose that much)\n"
        "  --window N               batches in flight to the collector (default 4)\n"
        "  --batch-max-bytes N      largest batch sent to the collector (default 1MiB)\n"
        "  --max-pending-bytes N    received bytes waiting for a spool commit before 429 (default 8MiB)\n"
        "  --max-body-bytes N       largest request body after gzip (default 8MiB)\n"
        "  --request-timeout DUR    answer 503 if the spool has not committed by then (default 10s)\n"
        "  --drain-timeout DUR      on SIGTERM, keep delivering the spool this long (default 5s)\n"
        "  --log-level LEVEL        debug, info, warn or error (default info)\n"
        "  --help, --version\n";

typedef struct agent {
	uv_loop_t loop;
	ag_spool *spool;
	ag_sender *sender;
	ag_pipeline *pipeline;
	ag_receiver *receiver;
	uv_signal_t sigterm, sigint;
	uv_timer_t drain;
	uint64_t drain_deadline;
	uint64_t drain_timeout_ms;
	int stopping;
} agent;

/* A positive integer with an optional binary suffix: 65536, 64KiB, 8MiB, 1GiB (K, M, G also). */
static int parse_size(const char *flag, const char *s, size_t *out)
{
	static const struct {
		const char *sfx;
		unsigned shift;
	} units[] = {{"", 0}, {"K", 10}, {"KiB", 10}, {"M", 20}, {"MiB", 20}, {"G", 30}, {"GiB", 30}};
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == 0 && end != s && s[0] != '-' && v > 0) {
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (strcmp(end, units[i].sfx) == 0 && v <= (SIZE_MAX >> units[i].shift)) {
				*out = (size_t)v << units[i].shift;
				return 0;
			}
		}
	}
	fprintf(stderr, "threadline-agent: %s: expected a positive size like 65536, 64KiB or 1GiB, got '%s'\n", flag,
	        s);
	return TL_EUSAGE;
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

static void all_closed(void *ud)
{
	(void)ud;
}

/* The pipeline has answered every request it held: now the HTTP server can go. */
static void pipeline_closed(void *ud)
{
	agent *a = ud;
	ag_receiver_close(a->receiver, all_closed, a);
}

static void shutdown_now(agent *a)
{
	uv_timer_stop(&a->drain);
	uv_close((uv_handle_t *)&a->drain, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	uv_close((uv_handle_t *)&a->sigint, NULL);
	/* Sender first (its callbacks point into the pipeline), then the pipeline answers what is
	 * left (503, or 200 for a commit that was running and succeeded), then the HTTP server goes. */
	ag_sender_close(a->sender);
	ag_pipeline_close(a->pipeline, pipeline_closed, a);
}

static void drain_tick(uv_timer_t *t)
{
	agent *a = t->data;
	bool drained = ag_receiver_outstanding(a->receiver) == 0 && ag_pipeline_drained(a->pipeline);
	if (drained || tl_mono_ns() >= a->drain_deadline) {
		unsigned left = ag_receiver_outstanding(a->receiver);
		ag_pipeline_stats ps;
		ag_pipeline_stats_get(a->pipeline, &ps);
		tl_log(drained ? TL_LOG_INFO : TL_LOG_WARN, "agent.stop",
		       "unanswered_requests=%u spooled_batches=%zu spooled_spans=%llu", left, ps.spool.batches,
		       (unsigned long long)ps.spool.spans);
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
	ag_pipeline_stop_accepting(a->pipeline);
	a->drain_deadline = tl_mono_ns() + a->drain_timeout_ms * TL_NS_PER_MS;
	uv_timer_start(&a->drain, drain_tick, 0, 50);
}

int main(int argc, char **argv)
{
	enum {
		O_COLLECTOR = 256,
		O_HTTP,
		O_SPOOL,
		O_SPOOLMAX,
		O_FSYNCMODE,
		O_WINDOW,
		O_BATCHMAX,
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
	        {"spool-max-bytes", required_argument, NULL, O_SPOOLMAX},
	        {"fsync", required_argument, NULL, O_FSYNCMODE},
	        {"window", required_argument, NULL, O_WINDOW},
	        {"batch-max-bytes", required_argument, NULL, O_BATCHMAX},
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
	ag_spool_opts sp;
	ag_spool_opts_default(&sp);
	sp.dir = "threadline-spool";
	ag_sender_opts_default(&so);
	ag_pipeline_opts_default(&po);
	ag_receiver_opts_default(&ro);
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
			sp.dir = optarg;
			break;
		case O_SPOOLMAX:
			if (parse_size("--spool-max-bytes", optarg, &sp.max_bytes) != 0)
				return 2;
			break;
		case O_FSYNCMODE:
			if (strcmp(optarg, "always") == 0) {
				sp.sync_each_commit = true;
				po.sync_interval_ms = 0;
			} else {
				if (parse_dur_ms("--fsync", optarg, &po.sync_interval_ms) != 0) {
					fprintf(stderr,
					        "threadline-agent: --fsync: use 'always' or a duration like 100ms\n");
					return 2;
				}
				sp.sync_each_commit = false;
			}
			break;
		case O_BATCHMAX:
			if (parse_size("--batch-max-bytes", optarg, &po.batch_max_bytes) != 0)
				return 2;
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
	po.spool_max_bytes = sp.max_bytes;
	/* A batch must fit in the collector's receive limit and in the spool. */
	if (po.batch_max_bytes > sp.max_bytes)
		po.batch_max_bytes = sp.max_bytes;

	agent a;
	memset(&a, 0, sizeof(a));
	a.drain_timeout_ms = drain_ms;
	/* A file-size limit (ulimit -f) must fail a write with EFBIG (a clear error), not kill the agent. */
	signal(SIGXFSZ, SIG_IGN);
	tl_errmsg err = {{0}};
	int rc = ag_spool_open(&sp, &a.spool, &err);
	if (rc != 0) {
		fprintf(stderr, "threadline-agent: --spool %s: %s\n", sp.dir, err.msg[0] ? err.msg : tl_strerror(rc));
		return 1;
	}
	/* The thread pool runs only spool commits, one at a time: one thread (and one malloc arena
	 * for the encoded batches) is enough. An explicit UV_THREADPOOL_SIZE wins. */
	setenv("UV_THREADPOOL_SIZE", "1", 0);
	uv_loop_init(&a.loop);
	if ((rc = ag_sender_new(&a.loop, &so, &a.sender)) != 0) {
		fprintf(stderr, "threadline-agent: --collector %s: %s\n", so.collector_url, tl_strerror(rc));
		ag_spool_close(a.spool);
		return 1;
	}
	if ((rc = ag_pipeline_new(&a.loop, a.spool, a.sender, &po, &a.pipeline)) != 0) {
		fprintf(stderr, "threadline-agent: %s\n", tl_strerror(rc));
		ag_sender_close(a.sender);
		uv_run(&a.loop, UV_RUN_DEFAULT);
		ag_spool_close(a.spool);
		return 1;
	}
	if ((rc = ag_receiver_new(&a.loop, &ro, a.pipeline, a.sender, &a.receiver)) != 0) {
		fprintf(stderr, "threadline-agent: --http %s: %s\n", ro.listen, tl_strerror(rc));
		ag_sender_close(a.sender);
		ag_pipeline_close(a.pipeline, NULL, NULL);
		uv_run(&a.loop, UV_RUN_DEFAULT);
		uv_loop_close(&a.loop);
		ag_spool_close(a.spool);
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
	tl_hex_encode(ag_spool_agent_id(a.spool), 16, idhex);
	ag_spool_info in;
	ag_spool_info_get(a.spool, &in);
	tl_log(TL_LOG_INFO, "agent.ready",
	       "http=%s port=%d collector=%s agent_id=%s spool=%s spooled_batches=%zu spooled_spans=%llu "
	       "dead_batches=%zu fsync=%s disk_reserved=%s",
	       ro.listen, ag_receiver_port(a.receiver), so.collector_url, idhex, sp.dir, in.batches,
	       (unsigned long long)in.spans, in.dead_batches, sp.sync_each_commit ? "always" : "periodic",
	       ag_spool_reserved(a.spool) ? "true" : "false");
	uv_run(&a.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&a.loop);
	ag_spool_close(a.spool);
	tl_log(TL_LOG_INFO, "agent.exit", "loop_closed=%s", rc == 0 ? "true" : "false");
	return 0;
}
