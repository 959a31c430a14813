/* SPDX-License-Identifier: Apache-2.0 */
/*
 * threadline: the command-line client of the collector. Global options,
 * dispatch to commands, and the query round trip over nng.
 */
#include "co_cli.h"
#include "co_cli_errors.h"
#include "co_cli_export.h"
#include "co_cli_import.h"
#include "co_cli_search.h"
#include "co_cli_stats.h"

#include "tl_error.h"
#include "tl_time.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
        "usage: threadline [--collector URL] [--timeout DUR] [--json] COMMAND ...\n"
        "\n"
        "Commands:\n"
        "  trace show TRACE_ID [--json]   waterfall of one trace (critical path marked with *)\n"
        "  trace search [--service S] [--operation O] [--since 1h|TIME] [--until TIME] [--error]\n"
        "               [--min-duration 250ms] [--max-duration 2s] [--attr key=value]... [--limit N]\n"
        "                                 traces with a span that meets every condition, newest first\n"
        "  errors [--since 24h|TIME] [--until TIME] [--limit N]\n"
        "                                 failures grouped by fingerprint, ranked by impact (predictions,\n"
        "                                 traces, models and deployments hit)\n"
        "  errors explain TRACE_ID        causal chain: root span to root cause, continued across span\n"
        "                                 links and lineage (failed upstream runs)\n"
        "  stats [--service S] [--since 1h|TIME] [--until TIME] [--budget 200ms]\n"
        "                                 rate, error rate, p50/p95/p99 per service and operation;\n"
        "                                 with a budget, the stages that consumed it and the traces\n"
        "                                 that broke it\n"
        "  lineage show NODE [--upstream|--downstream] [--depth N] [--at TIME]\n"
        "               [--format text|json|dot|mermaid]   lineage graph around a node\n"
        "  lineage explain prediction:ID  the path from a prediction to its raw data, with each\n"
        "                                 run's state, trace and reproducibility record\n"
        "  export jaeger (--trace ID... | trace search filters) (--otlp URL | --file PATH)\n"
        "               [--header 'K: V']... [--batch-spans N] [--batch-bytes SIZE] [--no-gzip]\n"
        "                                 send traces to Jaeger/any OTLP endpoint (gzip, retries on\n"
        "                                 429/502/503/504 with Retry-After), or write a Jaeger UI file\n"
        "  emit lineage --job NS:NAME --event START|COMPLETE|FAIL [--run-id UUID] [--input ID]...\n"
        "               [--output ID]...  send an OpenLineage run event to the local agent\n"
        "  emit span --name NAME [--service S] [--kind internal|server|client|producer|consumer]\n"
        "            [--start TIME] [--end TIME | --duration DUR] [--attr key=value]...\n"
        "            [--status ok|error] [--message MSG] [--agent URL]\n"
        "                                 send one span for a shell step to the local agent (parent\n"
        "                                 from $TRACEPARENT); prints the new span's traceparent\n"
        "  import FILE [--collector URL]  store an OTLP/JSON Lines file (what the OpenTelemetry\n"
        "                                 Collector's file exporter writes; .gz too) through the\n"
        "                                 collector's intake (default tcp://127.0.0.1:7411);\n"
        "                                 importing it again stores nothing twice\n"
        "  demo [--keep]                  start a collector and an agent on a temporary data dir,\n"
        "                                 send an ML pipeline trace, show it, stop everything\n"
        "  version                        print the version\n"
        "\n"
        "Options:\n"
        "  --collector URL   collector query endpoint (default tcp://127.0.0.1:7412,\n"
        "                    or $THREADLINE_COLLECTOR)\n"
        "  --timeout DUR     how long to wait for the collector (default 10s)\n"
        "  --json            machine-readable output on stdout\n"
        "\n"
        "Exit codes: 0 ok, 1 error (e.g. not found), 2 bad usage, 3 collector unreachable.\n";

int main(int argc, char **argv)
{
	co_cli cli = {
	        .collector = "tcp://127.0.0.1:7412",
	        .timeout_ms = 10000,
	        .json = false,
	        .color = false,
	};
	const char *env = getenv("THREADLINE_COLLECTOR");
	if (env != NULL && env[0] != '\0')
		cli.collector = env;
	const char *nc = getenv("NO_COLOR");
	cli.color = isatty(STDOUT_FILENO) && (nc == NULL || nc[0] == '\0');
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return CLI_OK;
		} else if (strcmp(a, "--version") == 0) {
			printf("threadline %s\n", TL_VERSION);
			return CLI_OK;
		} else if (strcmp(a, "--json") == 0) {
			cli.json = true;
		} else if (strcmp(a, "--collector") == 0 || strncmp(a, "--collector=", 12) == 0) {
			if (a[11] == '=') {
				cli.collector = a + 12;
			} else if (i + 1 < argc) {
				cli.collector = argv[++i];
			} else {
				fprintf(stderr, "threadline: --collector needs a URL like tcp://127.0.0.1:7412\n");
				return CLI_USAGE;
			}
		} else if (strcmp(a, "--timeout") == 0 && i + 1 < argc) {
			uint64_t ns;
			if (tl_parse_duration(argv[++i], &ns) != 0 || ns < TL_NS_PER_MS) {
				fprintf(stderr, "threadline: --timeout: expected a duration like 5s, got '%s'\n",
				        argv[i]);
				return CLI_USAGE;
			}
			cli.timeout_ms = ns / TL_NS_PER_MS;
		} else {
			fprintf(stderr, "threadline: unknown option '%s'\n%s", a, usage);
			return CLI_USAGE;
		}
	}
	if (i >= argc) {
		fputs(usage, stderr);
		return CLI_USAGE;
	}
	const char *cmd = argv[i];
	if (strcmp(cmd, "trace") == 0 && i + 1 < argc && strcmp(argv[i + 1], "search") == 0)
		return co_cli_search(&cli, argc - i, argv + i);
	if (strcmp(cmd, "trace") == 0)
		return co_cli_trace(&cli, argc - i, argv + i);
	if (strcmp(cmd, "stats") == 0)
		return co_cli_stats(&cli, argc - i, argv + i);
	if (strcmp(cmd, "errors") == 0)
		return co_cli_errors(&cli, argc - i, argv + i);
	if (strcmp(cmd, "lineage") == 0)
		return co_cli_lineage(&cli, argc - i, argv + i);
	if (strcmp(cmd, "export") == 0)
		return co_cli_export(&cli, argc - i, argv + i);
	if (strcmp(cmd, "emit") == 0)
		return co_cli_emit(&cli, argc - i, argv + i);
	if (strcmp(cmd, "import") == 0)
		return co_cli_import(&cli, argc - i, argv + i);
	if (strcmp(cmd, "demo") == 0)
		return co_cli_demo(&cli, argc - i, argv + i, argv[0]);
	if (strcmp(cmd, "version") == 0) {
		printf("threadline %s\n", TL_VERSION);
		return CLI_OK;
	}
	if (strcmp(cmd, "help") == 0) {
		fputs(usage, stdout);
		return CLI_OK;
	}
	fprintf(stderr, "threadline: unknown command '%s'\n%s", cmd, usage);
	return CLI_USAGE;
}
