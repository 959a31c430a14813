/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test kit for the integration tests and benchmarks: temporary directories,
 * free loopback ports, starting and stopping the real binaries with their
 * output in files, running a command to completion, and a tiny blocking
 * HTTP/1.1 client (http-parser in response mode). Everything here is for
 * tests: it is synchronous, single-threaded and favours clear failures over
 * speed. Functions return 0 or a negative errno / TL_E* code like the rest
 * of the project; none of them logs.
 *
 * Binary paths come from the environment (TK_ENV_AGENT, ...), set by meson.
 *
 * The TK_* macros at the end are the Criterion glue the integration suites
 * share (a checked start, a checked stop, a failure that keeps the logs):
 * they expand to cr_assert_fail(), so only files that include
 * <criterion/criterion.h> may use them; the library itself does not link
 * Criterion (the benchmarks use it too).
 */
#ifndef TL_TESTKIT_H
#define TL_TESTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "tl_error.h"

#define TK_ENV_AGENT "TL_AGENT"
#define TK_ENV_COLLECTOR "TL_COLLECTOR"
#define TK_ENV_CLI "TL_CLI"

#define TK_PATH_MAX 512

/*
 * The agents a tk_stack starts get this spool bound (extra args may set
 * another): the spool reserves 1.5 times it on disk, and tests run two at a time.
 */
#define TK_SPOOL_MAX "128MiB"

/* ---- time ---- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t tk_now_ms(void);

/* Sleeps ms milliseconds (resumed when a signal interrupts it). */
void tk_sleep_ms(int ms);

/* ---- files and directories ---- */

/*
 * Creates a fresh private directory under $TMPDIR (or /tmp) named
 * "tl-<tag>-XXXXXX" and writes its path into out (cap bytes). Returns 0,
 * TL_ELIMIT if out is too small, or -errno.
 */
int tk_tmpdir(const char *tag, char *out, size_t cap);

/* Removes path and everything below it (does not follow symlinks). A missing path is not an error. */
int tk_rmrf(const char *path);

/*
 * Reads a whole file. Returns a NUL-terminated buffer (caller frees with
 * free()) and its length in *len (len may be NULL), or NULL with errno set.
 */
char *tk_read_file(const char *path, size_t *len);

/* Writes data (len bytes, borrowed) to path, replacing it. Returns 0 or -errno. */
int tk_write_file(const char *path, const void *data, size_t len);

/*
 * Writes data gzip-compressed to path, replacing it, as `members` gzip
 * members one after the other (what `cat a.gz b.gz` gives; members >= 1).
 * Empty data gives one empty member. Compressed with zlib, not with the
 * project's code. Returns 0, -errno, or TL_EINVALID when zlib fails.
 */
int tk_write_gz(const char *path, const void *data, size_t len, int members);

/* ---- ports ---- */

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close). Returns it or -errno. */
int tk_free_port(void);

/*
 * A listening TCP socket on 127.0.0.1:port (0: any free port; SO_REUSEADDR,
 * close-on-exec, backlog 16), for servers written in tests. The bound port
 * goes to *bound (may be NULL). Returns the fd (caller closes it) or -errno.
 */
int tk_listen(int port, int *bound);

/*
 * Waits until a TCP connect to 127.0.0.1:port succeeds. Returns 0, or
 * TL_ETIMEOUT after timeout_ms.
 */
int tk_wait_port(int port, int timeout_ms);

/* ---- processes ---- */

typedef struct tk_proc {
	pid_t pid;                  /* 0 when not running / reaped */
	int status;                 /* wait status once reaped */
	char name[64];              /* for messages */
	char out_path[TK_PATH_MAX]; /* its stdout */
	char err_path[TK_PATH_MAX]; /* its stderr */
} tk_proc;

/*
 * Starts argv[0] (a path) with argv, stdin from /dev/null, stdout and stderr
 * appended to <dir>/<name>.out and <dir>/<name>.err. The child gets SIGKILL
 * if the calling thread dies (PR_SET_PDEATHSIG), so a crashed test leaves no
 * daemon behind. argv is borrowed. Returns 0 or -errno (an exec failure
 * shows as exit status 127).
 */
int tk_spawn(tk_proc *p, const char *dir, const char *name, char *const argv[]);

/*
 * True if p is still running. Reaps it (and records its status) when it
 * has exited.
 */
bool tk_alive(tk_proc *p);

/*
 * Waits until a line of p's stderr contains needle. Returns 0, TL_ETIMEOUT
 * after timeout_ms, or -ECHILD if the process exited first.
 */
int tk_wait_log(tk_proc *p, const char *needle, int timeout_ms);

/* True if p's stderr contains needle now. */
bool tk_log_contains(const tk_proc *p, const char *needle);

/*
 * Sends SIGTERM and waits up to timeout_ms for p to exit, then SIGKILLs and
 * reaps it. Returns 0 if it exited by itself in time (its wait status is in
 * p->status), TL_ETIMEOUT if it had to be killed. A process that is not
 * running returns 0 with its recorded status.
 */
int tk_stop(tk_proc *p, int timeout_ms);

/* SIGKILL and reap. No-op when not running. */
void tk_kill(tk_proc *p);

/* Exit code of a reaped process that exited normally, or -1 (signal, or not reaped). */
int tk_exit_code(const tk_proc *p);

/* ---- running a command to completion ---- */

typedef struct tk_output {
	char *out; /* stdout, NUL-terminated; caller frees with tk_output_fini() */
	size_t out_len;
	char *err; /* stderr, NUL-terminated */
	size_t err_len;
	int exit_code; /* exit code, or -1 if killed by a signal (then signo says which) */
	int signo;
} tk_output;

/*
 * Runs argv[0] with argv to completion, capturing stdout and stderr (each
 * capped at 64 MiB). After timeout_ms the child is killed and TL_ETIMEOUT
 * returned (out still holds what was captured). Returns 0 or -errno.
 */
int tk_run(char *const argv[], int timeout_ms, tk_output *out);

/* Frees what tk_run() captured. Accepts a zeroed or already-freed out. */
void tk_output_fini(tk_output *out);

/* ---- HTTP/1.1 client ---- */

typedef struct tk_header {
	const char *name;
	const char *value;
} tk_header;

#define TK_HTTP_MAX_HEADERS 32

typedef struct tk_http_resp {
	int status;
	size_t nheaders;
	struct {
		char *name; /* lower-cased */
		char *value;
	} headers[TK_HTTP_MAX_HEADERS];
	char *body; /* NUL-terminated (the NUL is not counted in body_len) */
	size_t body_len;
	bool keep_alive; /* http-parser's verdict for this response */
} tk_http_resp;

/*
 * Connects to 127.0.0.1:port (blocking socket, SIGPIPE suppressed on send).
 * Returns the fd or -errno.
 */
int tk_connect(int port);

/* Sends all of buf (MSG_NOSIGNAL). Returns 0 or -errno. */
int tk_send_all(int fd, const void *buf, size_t len);

/*
 * Sends "METHOD path HTTP/1.1" with Host, the given headers, Content-Length
 * when body is not NULL, and the body. While sending it also watches for an
 * early response (a server may answer 413 and stop reading): in that case it
 * stops sending and returns 0 with *early set (early may be NULL). Returns 0
 * or -errno (-EPIPE, -ECONNRESET, ...).
 */
int tk_http_send(int fd, const char *method, const char *path, const tk_header *hdrs, size_t nhdrs, const void *body,
                 size_t body_len, bool *early);

/*
 * Reads one response from fd: status line, headers and a Content-Length (or
 * chunked, or until-close) body. Returns 0, TL_ETIMEOUT after timeout_ms,
 * TL_EPARSE for a malformed response, or -ECONNRESET / TL_ECLOSED if the
 * peer closed before a complete response. On success the caller frees r with
 * tk_http_resp_fini().
 */
int tk_http_read(int fd, int timeout_ms, tk_http_resp *r);

/*
 * One request on a fresh connection: connect, send, read the response,
 * close. Same returns as above.
 */
int tk_http(int port, const char *method, const char *path, const tk_header *hdrs, size_t nhdrs, const void *body,
            size_t body_len, int timeout_ms, tk_http_resp *r);

/* A response header's value (name matched case-insensitively), or NULL. Valid until tk_http_resp_fini(). */
const char *tk_http_header(const tk_http_resp *r, const char *name);

/* Frees what tk_http_read() filled in; r is zeroed. */
void tk_http_resp_fini(tk_http_resp *r);

/*
 * Waits until the peer closes fd (read returns 0 or an error), discarding
 * any data. Returns 0 when closed, TL_ETIMEOUT after timeout_ms.
 */
int tk_wait_closed(int fd, int timeout_ms);

/* ---- a collector + agent pair ---- */

typedef struct tk_stack {
	char dir[TK_PATH_MAX]; /* temp dir holding data/, spool/ and the logs */
	int intake_port;
	int query_port;
	int http_port;          /* the agent's OTLP/HTTP port */
	int api_port;           /* the collector's HTTP API (--http) */
	char collector_url[64]; /* tcp://127.0.0.1:<query_port>, for the CLI */
	tk_proc collector;
	tk_proc agent;
} tk_stack;

/*
 * Starts a collector and an agent on free loopback ports in a fresh temp
 * dir, waiting for their ready lines (collector.ready, agent.ready). Retries
 * with other ports if a port was taken meanwhile. extra_agent_args (NULL-
 * terminated, may be NULL) are appended to the agent's argv. On failure
 * everything started is stopped, the logs are kept, and a reason is written
 * to why (cap bytes). Returns 0 or an error.
 */
int tk_stack_start(tk_stack *s, const char *tag, char *const extra_agent_args[], char *why, size_t cap);

/*
 * SIGTERMs agent then collector (timeout_ms each). Returns 0 if both exited
 * by themselves with status 0, TL_ETIMEOUT if one had to be killed, or
 * TL_EINVALID if one exited non-zero or by a signal. The temp dir is removed
 * when the result is 0 and TL_TEST_KEEP is not set in the environment;
 * otherwise it is kept (its path is in s->dir) for a post-mortem. Safe to
 * call twice.
 */
int tk_stack_stop(tk_stack *s, int timeout_ms);

/*
 * SIGTERMs agent then collector (timeout_ms each): each must exit 0 by
 * itself, and its stderr must hold no sanitizer report (under -Db_sanitize
 * the daemons report there). Stops at the first that does not, with a reason
 * in why (cap bytes): returns TL_ETIMEOUT if it had to be killed,
 * TL_EINVALID for a non-zero exit or a report, 0 when both were clean. The
 * temp dir stays (tk_stack_stop() removes it).
 */
int tk_stack_stop_checked(tk_stack *s, int timeout_ms, char *why, size_t cap);

/*
 * A 200 from the agent means committed to its spool; the collector has the
 * data once the spool is empty again. Polls the agent's /metrics until
 * threadline_agent_spool_batches and threadline_agent_pending_bytes are
 * both 0. Returns 0, or TL_ETIMEOUT after timeout_ms with the last values
 * (or the last error reading them) in why (cap bytes).
 */
int tk_stack_wait_delivered(const tk_stack *s, int timeout_ms, char *why, size_t cap);

/* Writes the last lines of the agent's and the collector's stderr to stderr (for failure messages). */
void tk_stack_dump_logs(const tk_stack *s);

/*
 * Runs `threadline --collector URL trace show TRACE_ID [--json]` to
 * completion (timeout 20 s). Returns like tk_run().
 */
int tk_stack_trace_show(const tk_stack *s, const char *trace_hex, bool json, tk_output *out);

/* Path of a binary from its env var (TK_ENV_*), or NULL if unset. */
const char *tk_bin(const char *env);

/* ---- one daemon of a stack at a time; metrics; memory (issue 3) ---- */

/*
 * Starts s's collector again on the same data dir and ports, e.g. after
 * tk_kill(&s->collector) or tk_stop(): s must come from a successful
 * tk_stack_start() and s->collector must not be running. extra_args
 * (NULL-terminated, may be NULL; borrowed) are appended to its argv. Its
 * stderr file is appended to, so it waits for a ready line that was not
 * there before; while the old process's port is still held it retries for
 * up to timeout_ms. Returns 0, or an error with a reason in why (cap bytes).
 */
int tk_stack_start_collector(tk_stack *s, char *const extra_args[], int timeout_ms, char *why, size_t cap);

/*
 * The same for the agent, on the same spool dir and HTTP port, pointed at
 * the same collector. extra_args are the agent's (pass the ones the stack
 * was started with to get the same configuration).
 */
int tk_stack_start_agent(tk_stack *s, char *const extra_args[], int timeout_ms, char *why, size_t cap);

/* Number of lines of p's stderr that contain needle (0 when it cannot be read). */
size_t tk_log_count(const tk_proc *p, const char *needle);

/*
 * Finds a sample in Prometheus text: the first line that starts with series
 * (name and labels exactly as printed, e.g. foo_total{reason="x"}) followed
 * by a space, and parses its value. text is borrowed. Returns 0,
 * TL_ENOTFOUND if no line matches, or TL_EPARSE for an unreadable value.
 */
int tk_metric_parse(const char *text, const char *series, double *value);

/*
 * GET /metrics from 127.0.0.1:port (fresh connection, timeout 10 s) and
 * tk_metric_parse() on the body. Returns 0, TL_ENOTFOUND, TL_EPARSE, TL_EPROTO
 * when the status is not 200, or the HTTP client's error.
 */
int tk_metric(int port, const char *series, double *value);

/*
 * RssAnon of a running process (anonymous resident memory: heap, stacks;
 * not file-backed maps such as an LMDB environment) in bytes, from
 * /proc/PID/status. Returns 0, -errno, or TL_ENOTFOUND when the field is
 * missing.
 */
int tk_rss_anon(pid_t pid, size_t *bytes);

/* ---- Criterion glue (see the top of this file) ---- */

/*
 * Fails the test when cond is false: keeps the stack's temp dir for a
 * post-mortem (TL_TEST_KEEP, in this test's worker process only), writes
 * the daemons' last log lines to stderr, then cr_assert_fail(__VA_ARGS__).
 */
#define TK_MUST(s, cond, ...)                                                                                          \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			setenv("TL_TEST_KEEP", "1", 1);                                                                \
			tk_stack_dump_logs(s);                                                                         \
			cr_assert_fail(__VA_ARGS__);                                                                   \
		}                                                                                                      \
	} while (0)

/* tk_stack_start() for a test's .init: fails the test, with the logs, when the stack does not come up. */
#define TK_STACK_START(s, tag, extra_agent_args)                                                                       \
	do {                                                                                                           \
		char tk_why_[512] = "";                                                                                \
		int tk_rc_ = tk_stack_start((s), (tag), (extra_agent_args), tk_why_, sizeof(tk_why_));                 \
		TK_MUST((s), tk_rc_ == 0, "cannot start collector + agent: %s (%s); logs in %s", tk_why_,              \
		        tl_strerror(tk_rc_), (s)->dir);                                                                \
	} while (0)

/* tk_stack_stop_checked() as the last step of a test: fails it, with the logs, when a daemon was not clean. */
#define TK_STACK_STOP_CHECKED(s, timeout_ms)                                                                           \
	do {                                                                                                           \
		char tk_why_[1024] = "";                                                                               \
		int tk_rc_ = tk_stack_stop_checked((s), (timeout_ms), tk_why_, sizeof(tk_why_));                       \
		TK_MUST((s), tk_rc_ == 0, "%s", tk_why_);                                                              \
	} while (0)

#endif
