/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Issue 2's benchmark in one run: OTLP/HTTP protobuf (100 spans per
 * request, 10 attributes per span) through threadline-agent and
 * threadline-collector into LMDB, next to two ceilings measured in the same
 * run on the same spans: raw LMDB appends of the spans encoded one by one,
 * and tl_otlp_decode_proto alone on the request bodies. It then reads a
 * sample of the delivered traces back with `threadline trace show --json`,
 * so the end-to-end number only counts spans that really landed, and
 * reports the agent's and the collector's resident memory.
 *
 * Everything runs on loopback in temporary directories, stops by itself
 * after warm-up + duration, and kills what it started. Without TL_AGENT /
 * TL_COLLECTOR / TL_CLI in the environment only the ceilings run.
 *
 *   bench_e2e [--duration S] [--warmup S] [--connections K] [--ceiling-only] [--strict]
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_gen.h"
#include "bench_load.h"
#include "bench_machine.h"
#include "tl_arena.h"
#include "tl_error.h"
#include "tl_id.h"
#include "tl_otlp.h"
#include "tl_testkit.h"
#include "tl_time.h"

#define NTEMPLATES 64
#define LMDB_MAX_PUTS 1000000
#define LMDB_MAX_S 3.0
#define DECODE_S 2.0
#define TARGET_SPANS 100000.0
#define TARGET_AGENT_KIB (16 * 1024)

typedef struct rate {
	double spans_s;
	double mb_s;
	uint64_t n;
	double secs;
} rate;

static double secs_since(uint64_t t0)
{
	return (double)(tl_mono_ns() - t0) / 1e9;
}

/* ---- ceiling 1: LMDB appends of the encoded spans ---- */

static int lmdb_ceiling(const bg_set *s, unsigned env_flags, rate *out, char *why, size_t cap)
{
	char dir[TK_PATH_MAX];
	int rc = tk_tmpdir("bench-lmdb", dir, sizeof(dir));
	if (rc != 0) {
		snprintf(why, cap, "tmpdir: %s", tl_strerror(rc));
		return rc;
	}
	MDB_env *env = NULL;
	MDB_dbi dbi;
	MDB_txn *txn = NULL;
	uint64_t bytes = 0, n = 0;
	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_mapsize(env, (size_t)4 << 30)) != 0 ||
	    (rc = mdb_env_open(env, dir, env_flags, 0600)) != 0) {
		snprintf(why, cap, "lmdb open %.200s: %s", dir, mdb_strerror(rc));
		goto out;
	}
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 || (rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		snprintf(why, cap, "lmdb dbi: %s", mdb_strerror(rc));
		txn = NULL;
		goto out;
	}
	txn = NULL;
	uint64_t t0 = tl_mono_ns();
	while (n < LMDB_MAX_PUTS && secs_since(t0) < LMDB_MAX_S) {
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) {
			snprintf(why, cap, "lmdb begin: %s", mdb_strerror(rc));
			goto out;
		}
		for (int i = 0; i < 1000; i++, n++) {
			uint8_t kb[8];
			for (int j = 0; j < 8; j++) {
				kb[j] = (uint8_t)(n >> (56 - 8 * j));
			}
			const bg_value *v = &s->spans[n % s->nspans];
			MDB_val k = {sizeof(kb), kb}, d = {v->len, v->data};
			if ((rc = mdb_put(txn, dbi, &k, &d, MDB_APPEND)) != 0) {
				snprintf(why, cap, "lmdb put: %s", mdb_strerror(rc));
				goto out;
			}
			bytes += v->len;
		}
		rc = mdb_txn_commit(txn);
		txn = NULL;
		if (rc != 0) {
			snprintf(why, cap, "lmdb commit: %s", mdb_strerror(rc));
			goto out;
		}
	}
	out->secs = secs_since(t0);
	out->n = n;
	out->spans_s = (double)n / out->secs;
	out->mb_s = (double)bytes / out->secs / 1e6;
out:
	if (txn != NULL) {
		mdb_txn_abort(txn);
	}
	if (env != NULL) {
		mdb_env_close(env);
	}
	tk_rmrf(dir);
	return rc == 0 ? 0 : TL_ESTORE;
}

/* ---- ceiling 2: the OTLP protobuf decoder alone (and with validation) ---- */

static int decode_ceiling(const bg_set *s, bool validate, rate *out, char *why, size_t cap)
{
	tl_otlp_limits lim;
	tl_otlp_limits_default(&lim);
	tl_arena a;
	tl_arena_init(&a, 256 * 1024, lim.max_decoded_bytes);
	uint64_t spans = 0, bytes = 0, n = 0;
	int rc = 0;
	uint64_t t0 = tl_mono_ns();
	while (secs_since(t0) < DECODE_S) {
		for (int k = 0; k < 16; k++, n++) {
			const bg_req *r = &s->reqs[n % s->nreqs];
			tl_pb_export_req *req = NULL;
			tl_errmsg em = {{0}};
			tl_arena_reset(&a);
			if ((rc = tl_otlp_decode_proto(r->body, r->len, &lim, tl_arena_allocator(&a), &req, &em)) !=
			    0) {
				snprintf(why, cap, "decode: %s", em.msg);
				goto out;
			}
			if (validate) {
				tl_otlp_verdict v;
				if ((rc = tl_otlp_validate(req, &lim, &v)) != 0) {
					snprintf(why, cap, "validate: %s", tl_strerror(rc));
					goto out;
				}
			}
			spans += tl_otlp_count_spans(req);
			bytes += r->len;
		}
	}
	out->secs = secs_since(t0);
	out->n = spans;
	out->spans_s = (double)spans / out->secs;
	out->mb_s = (double)bytes / out->secs / 1e6;
out:
	tl_arena_fini(&a);
	return rc;
}

/* ---- memory of the daemons ---- */

typedef struct mem {
	long rss_max_kib; /* largest VmRSS seen while measuring */
	long rss_last_kib;
	long anon_max_kib; /* largest RssAnon: heap and stacks, what the configured bounds cap */
	long file_max_kib; /* largest RssFile: mapped file pages (LMDB), reclaimable page cache */
	long hwm_kib;      /* VmHWM after the run */
	double cpu0, cpu1; /* utime + stime (s) at the start and the end of the measured window */
} mem;

/* CPU seconds (user + system, all threads) a process has used, or -1. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* Fields after the command name, which is in parentheses and may hold spaces. */
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
		return -1;
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static long proc_status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long v = -1;
	size_t fl = strlen(field);
	if (f == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
			v = strtol(line + fl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

typedef struct watch {
	tk_stack *st;
	mem agent, collector;
	bool started;
	double self0; /* the load generator's own CPU at the start of the window */
} watch;

static void sample_one(pid_t pid, mem *m)
{
	long a = proc_status_kib(pid, "RssAnon"), f = proc_status_kib(pid, "RssFile");
	if (a > m->anon_max_kib)
		m->anon_max_kib = a;
	if (f > m->file_max_kib)
		m->file_max_kib = f;
	long v = proc_status_kib(pid, "VmRSS");
	if (v > 0) {
		m->rss_last_kib = v;
		if (v > m->rss_max_kib) {
			m->rss_max_kib = v;
		}
	}
}

static void tick(void *arg)
{
	watch *w = arg;
	if (!w->started) {
		w->started = true;
		w->agent.cpu0 = proc_cpu_s(w->st->agent.pid);
		w->collector.cpu0 = proc_cpu_s(w->st->collector.pid);
		w->self0 = self_cpu_s();
	}
	sample_one(w->st->agent.pid, &w->agent);
	sample_one(w->st->collector.pid, &w->collector);
}

/* ---- read-back ---- */

/* 1 if `trace show --json` returns the trace with all its spans, 0 if not (yet), <0 on a hard error. */
static int trace_complete(const tk_stack *st, const uint8_t *id, char *why, size_t cap)
{
	char hex[2 * BG_TRACE_ID_LEN + 1];
	tl_hex_encode(id, BG_TRACE_ID_LEN, hex);
	tk_output out = {0};
	int rc = tk_stack_trace_show(st, hex, true, &out);
	int ok = 0;
	if (rc != 0) {
		snprintf(why, cap, "trace show %s: %s", hex, tl_strerror(rc));
		ok = rc;
		goto done;
	}
	if (out.exit_code != 0) {
		snprintf(why, cap, "trace show %s: exit %d: %.200s", hex, out.exit_code, out.err);
		goto done;
	}
	json_error_t je;
	json_t *j = json_loads(out.out, 0, &je);
	const char *tid = json_string_value(json_object_get(j, "trace_id"));
	json_t *spans = json_object_get(j, "spans");
	size_t with_attrs = 0;
	for (size_t i = 0; i < json_array_size(spans); i++) {
		with_attrs +=
		        json_object_size(json_object_get(json_array_get(spans, i), "attributes")) == BG_ATTRS_PER_SPAN;
	}
	if (tid != NULL && strcmp(tid, hex) == 0 && json_array_size(spans) == BG_SPANS_PER_TRACE &&
	    with_attrs == BG_SPANS_PER_TRACE) {
		ok = 1;
	} else {
		snprintf(why, cap, "trace %s: %zu spans (%zu with %d attributes), want %d", hex, json_array_size(spans),
		         with_attrs, BG_ATTRS_PER_SPAN, BG_SPANS_PER_TRACE);
	}
	json_decref(j);
done:
	tk_output_fini(&out);
	return ok;
}

static int verify(const tk_stack *st, const bl_result *res, size_t *found, char *why, size_t cap)
{
	*found = 0;
	bool done[BL_SAMPLE] = {false};
	uint64_t t0 = tl_mono_ns();
	/* A 200 means committed; the retry only makes a slow collector visible as a delay, not a failure. */
	for (int round = 0; *found < res->nsample && (round == 0 || secs_since(t0) < 10.0); round++) {
		if (round > 0) {
			usleep(500000);
		}
		for (size_t i = 0; i < res->nsample; i++) {
			if (done[i]) {
				continue;
			}
			int rc = trace_complete(st, res->sample[i], why, cap);
			if (rc < 0) {
				return rc;
			}
			if (rc == 1) {
				done[i] = true;
				(*found)++;
			}
		}
	}
	return *found == res->nsample ? 0 : TL_ENOTFOUND;
}

/* A series' value in the agent's /metrics, or -1. */
static long long agent_metric(const tk_stack *st, const char *series)
{
	double v;
	return tk_metric(st->http_port, series, &v) == 0 ? (long long)v : -1;
}

/*
 * A 200 means committed to the agent's spool; waits until the agent has
 * delivered everything (its spool is empty). Returns the seconds it took, or
 * -1 after 60 s.
 */
static double wait_drained(const tk_stack *st)
{
	uint64_t t0 = tl_mono_ns();
	while (secs_since(t0) < 60.0) {
		if (agent_metric(st, "threadline_agent_spool_batches") == 0 &&
		    agent_metric(st, "threadline_agent_pending_bytes") == 0)
			return secs_since(t0);
		usleep(10000);
	}
	return -1;
}

/* ---- report ---- */

static void usage(void)
{
	fprintf(stderr, "usage: bench_e2e [--duration S] [--warmup S] [--connections K] [--agent-fsync always|DUR]\n"
	                "                 [--ceiling-only] [--strict]\n");
}

int main(int argc, char **argv)
{
	double duration = 10, warmup = 2;
	unsigned conns = 16;
	bool ceiling_only = false, strict = false;
	const char *agent_fsync = "always";
	static const struct option opts[] = {
	        {"agent-fsync", required_argument, NULL, 'f'},
	        {"duration", required_argument, NULL, 'd'},
	        {"warmup", required_argument, NULL, 'w'},
	        {"connections", required_argument, NULL, 'c'},
	        {"ceiling-only", no_argument, NULL, 'C'},
	        {"strict", no_argument, NULL, 's'},
	        {NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			duration = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 'c':
			conns = (unsigned)atoi(optarg);
			break;
		case 'C':
			ceiling_only = true;
			break;
		case 'f':
			agent_fsync = optarg;
			break;
		case 's':
			strict = true;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (duration <= 0 || duration > 120 || warmup < 0 || warmup > 60 || conns < 1 || conns > 256) {
		usage();
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_machine();

	char why[512] = "";
	bg_set set;
	int rc = bg_set_init(&set, NTEMPLATES);
	if (rc != 0 || (rc = bg_self_check(&set, why, sizeof(why))) != 0) {
		fprintf(stderr, "bench: workload: %s %s\n", tl_strerror(rc), why);
		return 1;
	}
	size_t span_bytes = 0;
	for (size_t i = 0; i < set.nspans; i++) {
		span_bytes += set.spans[i].len;
	}
	size_t req_bytes = 0;
	for (size_t i = 0; i < set.nreqs; i++) {
		req_bytes += set.reqs[i].len;
	}
	printf("workload: %d templates, %d spans/request (%d traces x %d), %d attributes/span; "
	       "request body %.1f KiB avg, span %.0f B avg encoded alone\n",
	       NTEMPLATES, BG_SPANS_PER_REQ, BG_TRACES_PER_REQ, BG_SPANS_PER_TRACE, BG_ATTRS_PER_SPAN,
	       (double)req_bytes / set.nreqs / 1024, (double)span_bytes / set.nspans);

	rate lm = {0}, lmns = {0}, dec = {0}, decv = {0};
	if ((rc = lmdb_ceiling(&set, 0, &lm, why, sizeof(why))) != 0 ||
	    (rc = lmdb_ceiling(&set, MDB_NOSYNC, &lmns, why, sizeof(why))) != 0 ||
	    (rc = decode_ceiling(&set, false, &dec, why, sizeof(why))) != 0 ||
	    (rc = decode_ceiling(&set, true, &decv, why, sizeof(why))) != 0) {
		fprintf(stderr, "bench: ceiling: %s\n", why);
		bg_set_fini(&set);
		return 1;
	}

	bool have_bins = tk_bin(TK_ENV_AGENT) && tk_bin(TK_ENV_COLLECTOR) && tk_bin(TK_ENV_CLI);
	bl_result res;
	memset(&res, 0, sizeof(res));
	watch w;
	memset(&w, 0, sizeof(w));
	tk_stack st;
	memset(&st, 0, sizeof(st));
	int status = 0;
	size_t found = 0;
	double e2e = 0, self_cpu = 0, drain_s = 0;
	bool ran = false;
	if (!ceiling_only && !have_bins) {
		printf("end to end: skipped (set TL_AGENT, TL_COLLECTOR and TL_CLI, or run through meson)\n");
	}
	if (!ceiling_only && have_bins) {
		char *agent_args[] = {"--fsync", (char *)agent_fsync, NULL};
		if ((rc = tk_stack_start(&st, "bench", agent_args, why, sizeof(why))) != 0) {
			fprintf(stderr, "bench: cannot start collector + agent: %s (%s)\n", why, tl_strerror(rc));
			tk_stack_dump_logs(&st);
			bg_set_fini(&set);
			return 1;
		}
		printf("stack: agent pid %d on 127.0.0.1:%d (spool fsync %s), collector pid %d, data in %s\n",
		       (int)st.agent.pid, st.http_port, agent_fsync, (int)st.collector.pid, st.dir);
		w.st = &st;
		bl_opts lo = {.port = st.http_port,
		              .conns = conns,
		              .warmup_s = warmup,
		              .duration_s = duration,
		              .tick = tick,
		              .tick_arg = &w};
		rc = bl_run(&lo, &set, &res);
		ran = true;
		w.agent.cpu1 = proc_cpu_s(st.agent.pid);
		w.collector.cpu1 = proc_cpu_s(st.collector.pid);
		self_cpu = self_cpu_s() - w.self0;
		w.agent.hwm_kib = proc_status_kib(st.agent.pid, "VmHWM");
		w.collector.hwm_kib = proc_status_kib(st.collector.pid, "VmHWM");
		if (rc != 0) {
			fprintf(stderr, "bench: load: %s\n", tl_strerror(rc));
			status = 1;
		}
		e2e = (double)res.ok_spans / res.seconds;
		if (!tk_alive(&st.agent) || !tk_alive(&st.collector)) {
			fprintf(stderr, "bench: a daemon died during the run\n");
			status = 1;
		}
		drain_s = wait_drained(&st);
		if (drain_s < 0) {
			fprintf(stderr, "bench: the agent's spool did not drain within 60 s of the load's end\n");
			status = 1;
		}
		if (res.ok_requests == 0) {
			fprintf(stderr, "bench: no request was answered 200 (last status %d: %s)\n", res.last_non200,
			        res.last_non200_body);
			status = 1;
		} else if ((rc = verify(&st, &res, &found, why, sizeof(why))) != 0) {
			fprintf(stderr, "bench: read-back: %zu of %zu sampled traces complete: %s\n", found,
			        res.nsample, why);
			status = 1;
		}
		if (status != 0) {
			tk_stack_dump_logs(&st);
		}
		int src = tk_stack_stop(&st, 15000);
		if (src != 0) {
			fprintf(stderr, "bench: agent/collector did not stop cleanly: %s (kept %s)\n", tl_strerror(src),
			        st.dir);
		}
	}

	printf("\n| measured (same spans, same run)                      |      spans/s |   MB/s |\n");
	printf("|------------------------------------------------------|-------------:|-------:|\n");
	printf("| ceiling: LMDB MDB_APPEND, 1 span/put, 1,000 puts/txn | %12.0f | %6.1f |\n", lm.spans_s, lm.mb_s);
	printf("| (same, MDB_NOSYNC: no fsync per commit)               | %12.0f | %6.1f |\n", lmns.spans_s, lmns.mb_s);
	printf("| ceiling: tl_otlp_decode_proto alone (1 thread)       | %12.0f | %6.1f |\n", dec.spans_s, dec.mb_s);
	printf("| tl_otlp_decode_proto + tl_otlp_validate (1 thread)   | %12.0f | %6.1f |\n", decv.spans_s, decv.mb_s);
	if (ran) {
		printf("| end to end: HTTP -> agent -> nng -> collector -> LMDB | %12.0f | %6.1f |\n", e2e,
		       (double)res.ok_bytes / res.seconds / 1e6);
		printf("\nend to end: %u connections, %.0f s warm-up + %.0f s measured: %llu requests answered 200 "
		       "(%llu spans), %llu other answers (last %d), %llu connection errors, %llu rejected spans\n",
		       conns, warmup, duration, (unsigned long long)res.ok_requests, (unsigned long long)res.ok_spans,
		       (unsigned long long)res.non200, res.last_non200, (unsigned long long)res.errors,
		       (unsigned long long)res.rejected_spans);
		printf("latency per request (send -> 200): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", res.lat_p50_ms,
		       res.lat_p99_ms, res.lat_max_ms);
		printf("delivery: the agent's spool was empty %.2f s after the load stopped\n", drain_s);
		printf("read-back: %zu of %zu sampled traces complete in `threadline trace show --json` (%d spans, "
		       "%d attributes each)\n",
		       found, res.nsample, BG_SPANS_PER_TRACE, BG_ATTRS_PER_SPAN);
		printf("ratios: end to end / LMDB ceiling = %.3f, end to end / decode ceiling = %.3f\n",
		       e2e / lm.spans_s, e2e / dec.spans_s);
		printf("\n| process   | VmRSS during run (max / last) | of which RssAnon / RssFile (max) | VmHWM after "
		       "run |\n");
		printf("|-----------|------------------------------:|---------------------------------:|---------------"
		       "-:|\n");
		printf("| agent     | %12.1f / %6.1f MiB | %16.1f / %6.1f MiB | %11.1f MiB |\n",
		       w.agent.rss_max_kib / 1024.0, w.agent.rss_last_kib / 1024.0, w.agent.anon_max_kib / 1024.0,
		       w.agent.file_max_kib / 1024.0, w.agent.hwm_kib / 1024.0);
		printf("| collector | %12.1f / %6.1f MiB | %16.1f / %6.1f MiB | %11.1f MiB |\n",
		       w.collector.rss_max_kib / 1024.0, w.collector.rss_last_kib / 1024.0,
		       w.collector.anon_max_kib / 1024.0, w.collector.file_max_kib / 1024.0,
		       w.collector.hwm_kib / 1024.0);
		double ca = (w.agent.cpu1 - w.agent.cpu0) / res.seconds,
		       cc = (w.collector.cpu1 - w.collector.cpu0) / res.seconds, cl = self_cpu / res.seconds,
		       per = e2e > 0 ? 100000.0 / e2e : 0;
		printf("\nCPU while measuring (cores busy): agent %.2f, collector %.2f, load generator %.2f; "
		       "per 100,000 spans/s: agent %.2f + collector %.2f = %.2f cores (the machine has %ld)\n",
		       ca, cc, cl, ca * per, cc * per, (ca + cc) * per, sysconf(_SC_NPROCESSORS_ONLN));
		/* The agent's own memory is its anonymous RSS; RssFile is the spool's mapped pages (page cache). */
		bool t1 = e2e >= TARGET_SPANS,
		     t2 = w.agent.anon_max_kib > 0 && w.agent.anon_max_kib <= TARGET_AGENT_KIB;
		printf("\ntargets: end to end >= 100,000 spans/s: %s (%.0f); agent anonymous RSS <= 16 MiB: %s "
		       "(%.1f MiB peak)\n",
		       t1 ? "MET" : "MISSED", e2e, t2 ? "MET" : "MISSED", w.agent.anon_max_kib / 1024.0);
		if (strict && (!t1 || !t2)) {
			status = 1;
		}
	}
	bg_set_fini(&set);
	return status;
}
