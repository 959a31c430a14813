/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline emit span` through a real agent and collector: two shell steps
 * chained through TRACEPARENT land in one trace, the second a child of the
 * first, with typed attributes, kind, status and times as given; and the
 * exit codes a script sees when the agent is unreachable (3), refuses the
 * span (1) or TRACEPARENT is malformed (2).
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_error.h"
#include "tl_testkit.h"

static tk_stack st;

static void setup(void)
{
	unsetenv("TRACEPARENT");
	unsetenv("THREADLINE_AGENT");
	TK_STACK_START(&st, "emitspan", NULL);
}

static void teardown(void)
{
	tk_stack_stop(&st, 10000);
}

#define must(cond, ...) TK_MUST(&st, cond, __VA_ARGS__)

/* Runs `threadline ARGS...` (NULL-terminated, at most 24) to completion; caller tk_output_fini's o. */
static void cli(tk_output *o, const char *const args[])
{
	const char *bin = tk_bin(TK_ENV_CLI);
	must(bin != NULL, "TL_CLI is not set");
	char *argv[32] = {(char *)bin, "--collector", st.collector_url};
	size_t n = 3;
	for (size_t i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	int rc = tk_run(argv, 20000, o);
	must(rc == 0, "threadline %s %s: %s", args[0], args[1], tl_strerror(rc));
}

static json_t *span_named(json_t *spans, const char *name)
{
	for (size_t i = 0; i < json_array_size(spans); i++) {
		const char *n = json_string_value(json_object_get(json_array_get(spans, i), "name"));
		if (n != NULL && strcmp(n, name) == 0)
			return json_array_get(spans, i);
	}
	return NULL;
}

/* Checks "00-<32 hex>-<16 hex>-01\n" and splits it. */
static void split_tp(const char *out, char trace[33], char span[17])
{
	must(strlen(out) == 56 && out[55] == '\n' && strncmp(out, "00-", 3) == 0 && out[35] == '-' &&
	             strncmp(out + 52, "-01", 3) == 0,
	     "not a traceparent line: '%s'", out);
	memcpy(trace, out + 3, 32);
	trace[32] = '\0';
	memcpy(span, out + 36, 16);
	span[16] = '\0';
}

Test(emit_span, two_chained_steps_form_one_trace, .init = setup, .fini = teardown, .timeout = 120)
{
	char agent[64];
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d", st.http_port);
	tk_output o1 = {0}, o2 = {0};
	const char *step1[] = {
	        "emit",       "span", "--name", "fetch",     "--agent", agent, "--start", "1795428000000000000",
	        "--duration", "2s",   "--attr", "rows=1200", NULL};
	cli(&o1, step1);
	must(o1.exit_code == 0, "step 1 exited %d: %s", o1.exit_code, o1.err);
	char trace[33], span1[17], trace2[33], span2[17];
	split_tp(o1.out, trace, span1);

	char tp[56];
	memcpy(tp, o1.out, 55);
	tp[55] = '\0';
	setenv("TRACEPARENT", tp, 1);
	const char *step2[] = {"emit",     "span",      "--name",        "train",      "--agent",
	                       agent,      "--service", "trainer",       "--kind",     "client",
	                       "--attr",   "rows=1200", "--attr",        "loss=0.125", "--attr",
	                       "gpu=true", "--attr",    "model=churn-7", "--attr",     "ver=1.2.3",
	                       "--status", "error",     "--message",     "diverged",   NULL};
	cli(&o2, step2);
	unsetenv("TRACEPARENT");
	must(o2.exit_code == 0, "step 2 exited %d: %s", o2.exit_code, o2.err);
	split_tp(o2.out, trace2, span2);
	must(strcmp(trace, trace2) == 0, "step 2 left the trace: %s vs %s", trace, trace2);
	must(strcmp(span1, span2) != 0, "step 2 reused the span id");

	char why[512] = "";
	must(tk_stack_wait_delivered(&st, 20000, why, sizeof(why)) == 0, "not delivered: %s", why);
	json_t *doc = NULL, *spans = NULL;
	for (int tries = 0; tries < 50; tries++) {
		tk_output so = {0};
		must(tk_stack_trace_show(&st, trace, true, &so) == 0, "trace show did not run");
		json_decref(doc);
		doc = so.exit_code == 0 ? json_loads(so.out, 0, NULL) : NULL;
		tk_output_fini(&so);
		spans = json_object_get(doc, "spans");
		if (json_array_size(spans) == 2)
			break;
		tk_sleep_ms(200);
	}
	must(json_array_size(spans) == 2, "trace %s does not have both spans", trace);
	json_t *a = span_named(spans, "fetch"), *b = span_named(spans, "train");
	must(a != NULL && b != NULL, "spans fetch and train not both found");

	must(strcmp(json_string_value(json_object_get(a, "span_id")), span1) == 0, "step 1's span id");
	must(strcmp(json_string_value(json_object_get(a, "parent_span_id")), "") == 0, "step 1 has a parent");
	must(strcmp(json_string_value(json_object_get(a, "service")), "shell") == 0, "default service");
	must(strcmp(json_string_value(json_object_get(a, "kind")), "INTERNAL") == 0, "default kind");
	must(strcmp(json_string_value(json_object_get(a, "start_unix_nano")), "1795428000000000000") == 0 &&
	             strcmp(json_string_value(json_object_get(a, "end_unix_nano")), "1795428002000000000") == 0,
	     "step 1's times");

	must(strcmp(json_string_value(json_object_get(b, "span_id")), span2) == 0, "step 2's span id");
	must(strcmp(json_string_value(json_object_get(b, "parent_span_id")), span1) == 0,
	     "step 2's parent is %s, not step 1 (%s)", json_string_value(json_object_get(b, "parent_span_id")), span1);
	must(strcmp(json_string_value(json_object_get(b, "service")), "trainer") == 0, "--service");
	must(strcmp(json_string_value(json_object_get(b, "kind")), "CLIENT") == 0, "--kind");
	json_t *status = json_object_get(b, "status");
	must(strcmp(json_string_value(json_object_get(status, "code")), "ERROR") == 0 &&
	             strcmp(json_string_value(json_object_get(status, "message")), "diverged") == 0,
	     "--status/--message");
	json_t *attrs = json_object_get(b, "attributes");
	json_t *rows = json_object_get(attrs, "rows"), *loss = json_object_get(attrs, "loss"),
	       *gpu = json_object_get(attrs, "gpu"), *model = json_object_get(attrs, "model"),
	       *ver = json_object_get(attrs, "ver");
	must(json_is_integer(rows) && json_integer_value(rows) == 1200, "rows is not the integer 1200");
	must(json_is_real(loss) && json_real_value(loss) == 0.125, "loss is not the double 0.125");
	must(json_is_true(gpu), "gpu is not the boolean true");
	must(json_is_string(model) && strcmp(json_string_value(model), "churn-7") == 0, "model is not a string");
	must(json_is_string(ver) && strcmp(json_string_value(ver), "1.2.3") == 0, "ver is not a string");
	json_decref(doc);
	tk_output_fini(&o1);
	tk_output_fini(&o2);
	TK_STACK_STOP_CHECKED(&st, 10000);
}

Test(emit_span, exit_codes_for_scripts, .init = setup, .fini = teardown, .timeout = 120)
{
	char agent[64], dead[64];
	snprintf(agent, sizeof(agent), "http://127.0.0.1:%d", st.http_port);
	snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", tk_free_port());
	tk_output o = {0};

	const char *unreachable[] = {"emit", "span", "--name", "x", "--agent", dead, NULL};
	cli(&o, unreachable);
	must(o.exit_code == 3 && strstr(o.err, "unreachable") != NULL && o.out_len == 0,
	     "unreachable agent: exit %d: %s", o.exit_code, o.err);
	tk_output_fini(&o);

	/* The agent's validation refuses a key longer than 256 bytes; its reason is quoted. */
	char key[400];
	memset(key, 'k', 300);
	strcpy(key + 300, "=1");
	const char *refused[] = {"emit", "span", "--name", "x", "--agent", agent, "--attr", key, NULL};
	cli(&o, refused);
	must(o.exit_code == 1 && strstr(o.err, "refused") != NULL && o.out_len == 0, "refused span: exit %d: %s",
	     o.exit_code, o.err);
	tk_output_fini(&o);

	setenv("TRACEPARENT", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", 1);
	const char *badparent[] = {"emit", "span", "--name", "x", "--agent", agent, NULL};
	cli(&o, badparent);
	unsetenv("TRACEPARENT");
	must(o.exit_code == 2 && strstr(o.err, "TRACEPARENT") != NULL, "bad TRACEPARENT: exit %d: %s", o.exit_code,
	     o.err);
	tk_output_fini(&o);

	const char *badflag[] = {"emit", "span", "--name", "x", "--agent", agent, "--start", "soon", NULL};
	cli(&o, badflag);
	must(o.exit_code == 2 && strstr(o.err, "--start") != NULL, "bad --start: exit %d: %s", o.exit_code, o.err);
	tk_output_fini(&o);
	TK_STACK_STOP_CHECKED(&st, 10000);
}
