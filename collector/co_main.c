/* SPDX-License-Identifier: Apache-2.0 */
/*
 * threadline-collector: opens the store, starts the writer, the intake and
 * the query service, and waits for SIGTERM/SIGINT. Shutdown runs in the
 * order that keeps the promise "nothing acknowledged is lost": stop
 * receiving, let the writer commit and ack what it has, then close LMDB.
 */
#include "co_forward.h"
#include "co_http.h"
#include "co_index.h"
#include "co_intake.h"
#include "co_query.h"
#include "co_store.h"
#include "co_writer.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_time.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
        "usage: threadline-collector --data DIR [--listen URL] [--query URL] [--map-size BYTES]\n"
        "                            [--fsync always|DURATION] [--index-attr KEY]... [--log-level LEVEL] [--help]\n"
        "                            [--forward-otlp URL [--forward-header 'K: V']... [--forward-batch-spans N]\n"
        "                             [--forward-batch-bytes BYTES]]\n"
        "\n"
        "  --data DIR          LMDB data directory (created if missing)\n"
        "  --listen URL        batch intake from agents (default tcp://0.0.0.0:7411)\n"
        "  --query URL         queries from the CLI (default tcp://127.0.0.1:7412)\n"
        "  --http HOST:PORT    HTTP API: Jaeger-compatible /api/* (services, operations, traces,\n"
        "                      dependencies), /api/v1/lineage (Marquez-compatible), /metrics, /healthz\n"
        "                      (default 127.0.0.1:7413; 'off' disables it)\n"
        "  --map-size BYTES    initial LMDB map size, K/M/G/T suffixes allowed (default 1G; grows)\n"
        "  --fsync MODE        always: fsync every group commit before acking (default); a duration\n"
        "                      such as 100ms: fsync that often (a power loss can lose that much)\n"
        "  --index-attr KEY    also index this span/resource attribute for `trace search --attr`\n"
        "                      (repeatable, at most 32; ml.prediction.id, ml.model.version and\n"
        "                      lineage.run_id always are); applies to spans stored from now on\n"
        "  --log-level LEVEL   debug, info, warn or error (default info)\n"
        "  --forward-otlp URL  also send every stored span to this OTLP/HTTP endpoint\n"
        "                      (e.g. http://jaeger:4318/v1/traces), from a durable cursor in the\n"
        "                      store: retried while the endpoint is down, resumed after a restart\n"
        "  --forward-header 'K: V'  an extra request header, e.g. 'Authorization: Bearer ...' (repeatable)\n"
        "  --forward-batch-spans N  spans per forwarded request (default 1000)\n"
        "  --forward-batch-bytes BYTES  encoded spans per request, K/M suffixes (default 4M; 64K..32M)\n";

/* Parses "123", "64M", "1G", "2T" (powers of 1024). Returns 0 or TL_EINVALID. */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	if (*s < '0' || *s > '9')
		return TL_EINVALID;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return TL_EINVALID;
	unsigned shift = 0;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return TL_EINVALID;
	}
	if (*end != '\0') {
		end++;
		if (*end == 'i')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end != '\0')
			return TL_EINVALID;
	}
	if (v == 0 || v > (SIZE_MAX >> shift))
		return TL_EINVALID;
	*out = (size_t)(v << shift);
	return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "threadline-collector: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", USAGE);
	return 2;
}

int main(int argc, char **argv)
{
	const char *data = NULL, *listen = "tcp://0.0.0.0:7411", *query = "tcp://127.0.0.1:7412";
	const char *http = "127.0.0.1:7413";
	size_t map_size = (size_t)1 << 30;
	int level = TL_LOG_INFO;
	uint64_t sync_ms = 0;
	const char *index_attrs[CO_INDEX_ATTR_KEYS_MAX];
	size_t n_index_attrs = 0;
	co_forward_opts fo = {0};
	const char *fwd_headers[CO_FORWARD_HEADERS_MAX];
	enum {
		OPT_DATA = 1,
		OPT_LISTEN,
		OPT_QUERY,
		OPT_HTTP,
		OPT_MAP,
		OPT_FSYNC,
		OPT_LEVEL,
		OPT_HELP,
		OPT_INDEX_ATTR,
		OPT_FWD_URL,
		OPT_FWD_HEADER,
		OPT_FWD_SPANS,
		OPT_FWD_BYTES
	};
	static const struct option opts[] = {
	        {"data", required_argument, NULL, OPT_DATA},
	        {"listen", required_argument, NULL, OPT_LISTEN},
	        {"query", required_argument, NULL, OPT_QUERY},
	        {"http", required_argument, NULL, OPT_HTTP},
	        {"map-size", required_argument, NULL, OPT_MAP},
	        {"fsync", required_argument, NULL, OPT_FSYNC},
	        {"log-level", required_argument, NULL, OPT_LEVEL},
	        {"help", no_argument, NULL, OPT_HELP},
	        {"index-attr", required_argument, NULL, OPT_INDEX_ATTR},
	        {"forward-otlp", required_argument, NULL, OPT_FWD_URL},
	        {"forward-header", required_argument, NULL, OPT_FWD_HEADER},
	        {"forward-batch-spans", required_argument, NULL, OPT_FWD_SPANS},
	        {"forward-batch-bytes", required_argument, NULL, OPT_FWD_BYTES},
	        {NULL, 0, NULL, 0},
	};
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (ch) {
		case OPT_DATA:
			data = optarg;
			break;
		case OPT_LISTEN:
			listen = optarg;
			break;
		case OPT_QUERY:
			query = optarg;
			break;
		case OPT_HTTP:
			http = strcmp(optarg, "off") == 0 ? NULL : optarg;
			break;
		case OPT_MAP:
			if (parse_size(optarg, &map_size) != 0)
				return usage_error(
				        "--map-size: '%s' is not a size in bytes (e.g. 1073741824, 512M, 1G)", optarg);
			break;
		case OPT_FSYNC: {
			uint64_t ns = 0;
			if (strcmp(optarg, "always") == 0) {
				sync_ms = 0;
			} else if (tl_parse_duration(optarg, &ns) == 0 && ns >= TL_NS_PER_MS) {
				sync_ms = ns / TL_NS_PER_MS;
			} else {
				return usage_error("--fsync: '%s' is neither 'always' nor a duration like 100ms",
				                   optarg);
			}
			break;
		}
		case OPT_LEVEL:
			if (tl_log_parse_level(optarg, &level) != 0)
				return usage_error("--log-level: '%s' is not one of debug, info, warn, error", optarg);
			break;
		case OPT_INDEX_ATTR:
			if (optarg[0] == '\0' || strlen(optarg) > CO_INDEX_VALUE_MAX)
				return usage_error("--index-attr: '%s' is not an attribute key (1 to 128 bytes)",
				                   optarg);
			if (n_index_attrs == CO_INDEX_ATTR_KEYS_MAX)
				return usage_error("--index-attr %s: at most 32 keys", optarg);
			index_attrs[n_index_attrs++] = optarg;
			break;
		case OPT_FWD_URL:
			fo.url = optarg;
			break;
		case OPT_FWD_HEADER:
			if (strchr(optarg, ':') == NULL || optarg[0] == ':' || strpbrk(optarg, "\r\n") != NULL)
				return usage_error("--forward-header: '%s' is not 'Name: value'", optarg);
			if (fo.n_headers == CO_FORWARD_HEADERS_MAX)
				return usage_error("--forward-header %s: at most 32 headers", optarg);
			fwd_headers[fo.n_headers++] = optarg;
			break;
		case OPT_FWD_SPANS: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0 || v == 0 ||
			    v > CO_FORWARD_BATCH_SPANS_MAX)
				return usage_error("--forward-batch-spans: '%s' is not a number from 1 to 100000",
				                   optarg);
			fo.batch_spans = (size_t)v;
			break;
		}
		case OPT_FWD_BYTES:
			if (parse_size(optarg, &fo.batch_bytes) != 0 || fo.batch_bytes < CO_FORWARD_BATCH_BYTES_MIN ||
			    fo.batch_bytes > CO_FORWARD_BATCH_BYTES_MAX)
				return usage_error("--forward-batch-bytes: '%s' is not a size from 64K to 32M", optarg);
			break;
		case OPT_HELP:
			fputs(USAGE, stdout);
			return 0;
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown flag %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (data == NULL)
		return usage_error("%s is required", "--data");
	if (fo.url == NULL && (fo.n_headers > 0 || fo.batch_spans > 0 || fo.batch_bytes > 0))
		return usage_error("%s: the --forward-* flags need --forward-otlp URL", "forwarding");
	if (fo.url != NULL && strncmp(fo.url, "http://", 7) != 0 && strncmp(fo.url, "https://", 8) != 0)
		return usage_error("--forward-otlp: '%s' is not an http:// or https:// URL", fo.url);
	fo.headers = fwd_headers;
	tl_log_set_level(level);

	/* Every thread (nng's, the writer, the query threads) inherits this mask, so
	 * the signals are taken here by sigwait and nowhere else. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the commit (no ack) instead of killing us */

	tl_errmsg err = {{0}};
	co_store *store = NULL;
	co_writer *writer = NULL;
	co_intake *intake = NULL;
	co_query *qs = NULL;
	co_http *hs = NULL;
	co_forward *fwd = NULL;
	int rc, exit_code = 1;
	co_store_opts so = {.dir = data,
	                    .map_size = map_size,
	                    .no_sync = sync_ms > 0,
	                    .index_attrs = index_attrs,
	                    .n_index_attrs = n_index_attrs};
	if ((rc = co_store_open(&so, &store, &err)) != 0) {
		tl_log(TL_LOG_ERROR, "collector.store_failed", "data=%s err=\"%s\"", data, err.msg);
		return 1;
	}
	if (co_store_stale_readers(store) > 0)
		tl_log(TL_LOG_WARN, "store.stale_readers", "cleared=%d", co_store_stale_readers(store));
	co_writer_opts wo = {.sync_ms = sync_ms};
	if ((rc = co_writer_start(store, &wo, &writer)) != 0) {
		tl_log(TL_LOG_ERROR, "collector.writer_failed", "err=\"%s\"", tl_strerror(rc));
		goto out;
	}
	if (fo.url != NULL) {
		if ((rc = co_forward_start(store, &fo, &fwd, &err)) != 0) {
			tl_log(TL_LOG_ERROR, "collector.forward_failed", "err=\"%s\"", err.msg);
			goto out;
		}
		co_writer_set_commit_fn(writer, co_forward_on_commit, fwd);
	}
	co_intake_opts io = {.url = listen};
	if ((rc = co_intake_start(&io, writer, &intake, &err)) != 0) {
		tl_log(TL_LOG_ERROR, "collector.listen_failed", "listen=%s err=\"%s\"", listen, err.msg);
		goto out;
	}
	co_query_opts qo = {.url = query};
	if ((rc = co_query_start(&qo, store, &qs, &err)) != 0) {
		tl_log(TL_LOG_ERROR, "collector.listen_failed", "query=%s err=\"%s\"", query, err.msg);
		goto out;
	}
	if (http != NULL) {
		co_http_opts ho = {.listen = http, .forward = fwd};
		if ((rc = co_http_start(&ho, store, writer, &hs, &err)) != 0) {
			tl_log(TL_LOG_ERROR, "collector.listen_failed", "http=%s err=\"%s\"", http, err.msg);
			goto out;
		}
	}
	char fsync_mode[32] = "always";
	if (sync_ms > 0)
		snprintf(fsync_mode, sizeof(fsync_mode), "%llums", (unsigned long long)sync_ms);
	tl_log(TL_LOG_INFO, "collector.ready",
	       "listen=%s query=%s listen_port=%d query_port=%d http_port=%d data=%s map_size=%zu fsync=%s", listen,
	       query, co_intake_port(intake), co_query_port(qs), hs != NULL ? co_http_port(hs) : 0, data,
	       co_store_map_size(store), fsync_mode);

	int sig = 0;
	while (sigwait(&sigs, &sig) != 0)
		;
	tl_log(TL_LOG_INFO, "collector.stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
	exit_code = 0;
out:
	if (intake != NULL)
		co_intake_stop(intake); /* everything received is committed and acked */
	if (writer != NULL)
		co_writer_stop(writer);
	if (fwd != NULL)
		co_forward_stop(fwd); /* the push in flight finishes (bounded), the cursor is saved */
	co_http_stop(hs);
	co_forward_free(fwd);
	co_intake_free(intake);
	co_query_free(qs);
	co_writer_free(writer);
	co_store_close(store);
	if (exit_code == 0)
		tl_log(TL_LOG_INFO, "collector.stopped", "data=%s", data);
	return exit_code;
}
