/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Table-driven configuration (common/tl_config): every type's parsing and
 * default, each kind of file error with its exact line and column, the
 * environment and flag overrides in the daemons' order, the table checks,
 * and --print-config output read back to the same options.
 */
#include "tl_config.h"
#include "tl_time.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct opts {
	char *listen;
	char *token;
	bool tls;
	int port;
	int64_t offset;
	uint64_t map_size;
	uint64_t flush;
	int level;
	tl_strlist redact;
	char custom[16];
} opts;

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static int set_custom(void *o, const char *value, tl_errmsg *err)
{
	opts *p = o;
	if (strlen(value) >= sizeof(p->custom) || strchr(value, 'x') != NULL)
		return tl_errf(err, TL_EINVALID, "bad custom \"%s\"", value);
	strcpy(p->custom, value);
	return 0;
}

static void get_custom(const void *o, char *buf, size_t n)
{
	snprintf(buf, n, "%s", ((const opts *)o)->custom);
}

static const tl_config_entry entries[] = {
        {"listen", TL_CFG_STRING, "127.0.0.1:4318", "OTLP/HTTP listen address", TL_CFG_FIELD(opts, listen)},
        {"auth.token", TL_CFG_STRING, NULL, "bearer token", TL_CFG_FIELD(opts, token)},
        {"auth.tls", TL_CFG_BOOL, "false", "use TLS", TL_CFG_FIELD(opts, tls)},
        {"port", TL_CFG_INT, "4318", "port", TL_CFG_FIELD(opts, port), .min = 1, .max = 65535},
        {"offset", TL_CFG_INT, "-5", "signed, unbounded", TL_CFG_FIELD(opts, offset)},
        {"storage.map_size", TL_CFG_SIZE, "64M", "LMDB map size", TL_CFG_FIELD(opts, map_size), .min = 1 << 20,
         .max = INT64_C(1) << 40},
        {"storage.flush.interval", TL_CFG_DURATION, "100ms", "flush every", TL_CFG_FIELD(opts, flush),
         .min = TL_NS_PER_MS, .max = 3600 * TL_NS_PER_S},
        {"log.level", TL_CFG_ENUM, "info", "log level", TL_CFG_FIELD(opts, level), .values = levels},
        {"redact.keys", TL_CFG_STRLIST, "user.email,*.password", "attribute keys | masked", TL_CFG_FIELD(opts, redact)},
        {"custom", TL_CFG_CUSTOM, "abc", "a custom value", TL_CFG_FIELD(opts, custom), .set = set_custom,
         .get = get_custom},
};

static const tl_config_table table = {"test", entries, sizeof(entries) / sizeof(entries[0])};

static char dir[] = "/tmp/tl_config_XXXXXX";
static opts o;
static tl_errmsg err;

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	memset(&o, 0, sizeof(o));
	memset(&err, 0, sizeof(err));
	cr_assert_eq(tl_config_apply_defaults(&table, &o, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
	tl_config_free(&table, &o);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes text to dir/name and loads it; returns the rc. */
static int load(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return tl_config_load_file(&table, &o, path, &err);
}

/* Asserts that loading text fails with code and the message "<path>:<suffix>". */
static void load_fails(const char *text, int code, const char *suffix)
{
	int rc = load("c.yaml", text);
	char want[256];
	snprintf(want, sizeof(want), "%s/c.yaml:%s", dir, suffix);
	cr_assert_eq(rc, code, "rc %d (%s) for %s", rc, err.msg, text);
	cr_assert_str_eq(err.msg, want);
}

Test(config, defaults)
{
	cr_assert_str_eq(o.listen, "127.0.0.1:4318");
	cr_assert_null(o.token);
	cr_assert_eq(o.tls, false);
	cr_assert_eq(o.port, 4318);
	cr_assert_eq(o.offset, -5);
	cr_assert_eq(o.map_size, 64u << 20);
	cr_assert_eq(o.flush, 100 * TL_NS_PER_MS);
	cr_assert_eq(o.level, 1);
	cr_assert_eq(o.redact.n, 2);
	cr_assert_str_eq(o.redact.v[0], "user.email");
	cr_assert_str_eq(o.redact.v[1], "*.password");
	cr_assert_str_eq(o.custom, "abc");
	/* Applying again frees what the first call allocated (ASan would see a leak) and gives the same. */
	cr_assert_eq(tl_config_apply_defaults(&table, &o, &err), 0);
	cr_assert_str_eq(o.listen, "127.0.0.1:4318");
}

Test(config, every_type_nested)
{
	int rc = load("a.yaml", "# agent\n"
	                        "listen: \"0.0.0.0:9000\"\n"
	                        "auth:\n"
	                        "  token: 's3cret'\n"
	                        "  tls: yes\n"
	                        "port: 8080\n"
	                        "offset: -9223372036854775808\n"
	                        "storage:\n"
	                        "  map_size: 2G\n"
	                        "  flush:\n"
	                        "    interval: 1m30s\n"
	                        "log:\n"
	                        "  level: error\n"
	                        "redact:\n"
	                        "  keys:\n"
	                        "    - a.b\n"
	                        "    - \"c,d\"\n"
	                        "custom: hello\n");
	cr_assert_eq(rc, 0, "%s", err.msg);
	cr_assert_str_eq(o.listen, "0.0.0.0:9000");
	cr_assert_str_eq(o.token, "s3cret");
	cr_assert_eq(o.tls, true);
	cr_assert_eq(o.port, 8080);
	cr_assert_eq(o.offset, INT64_MIN);
	cr_assert_eq(o.map_size, UINT64_C(2) << 30);
	cr_assert_eq(o.flush, 90 * TL_NS_PER_S);
	cr_assert_eq(o.level, 3);
	cr_assert_eq(o.redact.n, 2);
	cr_assert_str_eq(o.redact.v[0], "a.b");
	cr_assert_str_eq(o.redact.v[1], "c,d");
	cr_assert_str_eq(o.custom, "hello");
}

Test(config, dotted_keys_and_partial_files)
{
	cr_assert_eq(load("a.yaml", "storage.map_size: 1m\nstorage:\n  flush.interval: 5s\nredact: {keys: []}\n"), 0,
	             "%s", err.msg);
	cr_assert_eq(o.map_size, 1u << 20);
	cr_assert_eq(o.flush, 5 * TL_NS_PER_S);
	cr_assert_eq(o.redact.n, 0);
	cr_assert_eq(o.port, 4318, "keys the file does not name keep their value");
	/* Empty file, comments only, an empty document and an empty section are all fine. */
	cr_assert_eq(load("b.yaml", ""), 0);
	cr_assert_eq(load("b.yaml", "# nothing\n"), 0);
	cr_assert_eq(load("b.yaml", "---\n"), 0);
	cr_assert_eq(load("b.yaml", "storage:\n"), 0);
	/* A null string unsets it. */
	cr_assert_eq(load("b.yaml", "listen: ~\n"), 0);
	cr_assert_null(o.listen);
}

Test(config, value_parsers)
{
	static const struct {
		const char *k, *v;
		int rc;
	} cases[] = {
	        {"auth.tls", "on", 0},
	        {"auth.tls", "FALSE", 0},
	        {"auth.tls", "maybe", TL_EINVALID},
	        {"port", "+80", 0},
	        {"port", "0", TL_EINVALID},
	        {"port", "65536", TL_EINVALID},
	        {"port", "8o", TL_EINVALID},
	        {"port", "", TL_EINVALID},
	        {"offset", "99999999999999999999", TL_EINVALID},
	        {"storage.map_size", "1T", 0},
	        {"storage.map_size", "1048576", 0},
	        {"storage.map_size", "2T", TL_EINVALID},
	        {"storage.map_size", "1MB", TL_EINVALID},
	        {"storage.map_size", "-1M", TL_EINVALID},
	        {"storage.map_size", "99999999999999999999G", TL_EINVALID},
	        {"storage.flush.interval", "1h", 0},
	        {"storage.flush.interval", "250us", TL_EINVALID},
	        {"storage.flush.interval", "5", TL_EINVALID},
	        {"storage.flush.interval", "0", TL_EINVALID},
	        {"log.level", "warn", 0},
	        {"log.level", "WARN", TL_EINVALID},
	        {"custom", "xyz", TL_EINVALID},
	        {"nope", "1", TL_EINVALID},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = tl_config_set(&table, &o, cases[i].k, cases[i].v, &err);
		cr_assert_eq(rc, cases[i].rc, "%s=%s: %d %s", cases[i].k, cases[i].v, rc, err.msg);
		if (rc != 0)
			cr_assert(strncmp(err.msg, cases[i].k, strlen(cases[i].k)) == 0, "%s", err.msg);
	}
	cr_assert_eq(o.map_size, UINT64_C(1) << 20);
	cr_assert_eq(o.flush, 3600 * TL_NS_PER_S);
	cr_assert_eq(o.level, 2);
	cr_assert_eq(o.tls, false);
	cr_assert_eq(tl_config_set(&table, &o, "port", "70000", &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "port: 70000 is out of range 1..65535");
	cr_assert_eq(tl_config_set(&table, &o, "log.level", "trace", &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "log.level: \"trace\" is not one of debug, info, warn, error");
	cr_assert_eq(tl_config_set(&table, &o, "redact.keys", "x,,y", &err), 0);
	cr_assert_eq(o.redact.n, 3);
	cr_assert_str_eq(o.redact.v[1], "");
	cr_assert_eq(tl_config_set(&table, &o, "redact.keys", "", &err), 0);
	cr_assert_eq(o.redact.n, 0);
}

Test(config, unknown_key)
{
	load_fails("port: 1\nstorage:\n  mapsize: 1G\n", TL_EINVALID, "3:3: storage.mapsize: unknown key");
	load_fails("storage.nope.x: 1\n", TL_EINVALID, "1:1: storage.nope.x: unknown key");
}

Test(config, wrong_type)
{
	load_fails("port: abc\n", TL_EINVALID, "1:7: port: expected an integer, got \"abc\"");
	load_fails("auth:\n  tls: 2\n", TL_EINVALID, "2:8: auth.tls: expected true or false, got \"2\"");
	load_fails("port:\n  a: 1\n", TL_EPARSE, "2:3: port: expected an int, got a mapping");
	load_fails("redact:\n  keys: a\n", TL_EPARSE, "2:9: redact.keys: expected a list, got a scalar");
	load_fails("redact:\n  keys:\n  - [a]\n", TL_EPARSE,
	           "3:5: redact.keys: list items must be strings, got a list");
	load_fails("storage: 1\n", TL_EPARSE, "1:10: storage: is a section: expected a mapping");
	load_fails("port:\n", TL_EINVALID, "1:6: port: has no value");
	load_fails("- a\n", TL_EPARSE, "1:1: expected a mapping of settings, got a list");
	load_fails("? [a]\n: 1\n", TL_EPARSE, "1:3: keys must be plain strings, got a list");
	load_fails("log: {level: loud}\n", TL_EINVALID,
	           "1:14: log.level: \"loud\" is not one of debug, info, warn, error");
	load_fails("storage:\n  flush:\n    interval: 5\n", TL_EINVALID,
	           "3:15: storage.flush.interval: expected a duration like 100ms, 5s or 1m, got \"5\"");
}

Test(config, out_of_range)
{
	load_fails("\n\nport:    0\n", TL_EINVALID, "3:10: port: 0 is out of range 1..65535");
	load_fails("storage: {map_size: 512K}\n", TL_EINVALID, "1:21: storage.map_size: 512K is out of range 1M..1T");
	load_fails("storage.flush.interval: 2h\n", TL_EINVALID,
	           "1:25: storage.flush.interval: 2h is out of range 1ms..1h");
}

Test(config, duplicate_key)
{
	load_fails("port: 1\nlisten: a\nport: 2\n", TL_EPARSE, "3:1: port: duplicate key");
	load_fails("storage.map_size: 1G\nstorage:\n  map_size: 2G\n", TL_EPARSE,
	           "3:3: storage.map_size: duplicate key");
}

Test(config, syntax_error)
{
	/* libyaml's own words; marks printed 1-based. */
	load_fails("port: 1\nlisten: a: b\n", TL_EPARSE,
	           "2:10: YAML syntax error: mapping values are not allowed in this context");
	load_fails("listen: \"abc\n", TL_EPARSE,
	           "2:1: YAML syntax error: found unexpected end of stream while scanning a quoted scalar");
	load_fails("port: 1\n\tlisten: x\n", TL_EPARSE,
	           "2:1: YAML syntax error: found a tab character that violates indentation while scanning a "
	           "plain scalar");
}

Test(config, aliases_and_documents_refused)
{
	load_fails("listen: &a x\ncustom: *a\n", TL_EPARSE, "2:9: custom: aliases are not supported");
	load_fails("port: 1\n---\nport: 2\n", TL_EPARSE, "2:1: only one YAML document is allowed");
}

Test(config, file_limits)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/missing.yaml", dir);
	cr_assert_eq(tl_config_load_file(&table, &o, path, &err), -ENOENT);
	cr_assert(strstr(err.msg, "missing.yaml") != NULL);
	size_t n = TL_CONFIG_MAX_FILE + 1;
	char *big = malloc(n + 1);
	memset(big, '#', n);
	big[n] = '\0';
	cr_assert_eq(load("big.yaml", big), TL_ELIMIT);
	free(big);
	char longv[TL_CONFIG_MAX_VALUE + 16];
	memset(longv, 'a', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	cr_assert_eq(tl_config_set(&table, &o, "listen", longv, &err), TL_ELIMIT);
	cr_assert_eq(tl_config_load_string(&table, &o, "mem", "listen: x\0y", 11, &err), TL_EPARSE);
}

Test(config, env_overrides)
{
	cr_assert_eq(load("a.yaml", "port: 1000\nstorage: {map_size: 8M}\n"), 0);
	setenv("THREADLINE_TEST_STORAGE_MAP_SIZE", "16M", 1);
	setenv("THREADLINE_TEST_REDACT_KEYS", "a,b,c", 1);
	setenv("THREADLINE_TEST_AUTH_TOKEN", "t", 1);
	setenv("THREADLINE_OTHER_PORT", "x", 1); /* another component's prefix: ignored */
	cr_assert_eq(tl_config_apply_env(&table, &o, "THREADLINE_TEST_", &err), 0, "%s", err.msg);
	cr_assert_eq(o.port, 1000, "the file's value stays when no variable is set");
	cr_assert_eq(o.map_size, 16u << 20);
	cr_assert_eq(o.redact.n, 3);
	cr_assert_str_eq(o.token, "t");
	/* Flags win over the environment. */
	cr_assert_eq(tl_config_set(&table, &o, "storage.map_size", "32M", &err), 0);
	cr_assert_eq(o.map_size, 32u << 20);

	setenv("THREADLINE_TEST_PORT", "99999", 1);
	cr_assert_eq(tl_config_apply_env(&table, &o, "THREADLINE_TEST_", &err), TL_EINVALID);
	cr_assert_str_eq(err.msg, "THREADLINE_TEST_PORT: 99999 is out of range 1..65535");
	unsetenv("THREADLINE_TEST_PORT");
	setenv("THREADLINE_TEST_STORAGE_MAPSIZE", "1G", 1);
	cr_assert_eq(tl_config_apply_env(&table, &o, "THREADLINE_TEST_", &err), TL_EINVALID);
	cr_assert(strncmp(err.msg, "THREADLINE_TEST_STORAGE_MAPSIZE: unknown setting", 48) == 0, "%s", err.msg);
}

static void assert_same(const opts *a, const opts *b)
{
	if (a->listen == NULL || b->listen == NULL)
		cr_assert_eq(a->listen, b->listen);
	else
		cr_assert_str_eq(a->listen, b->listen);
	if (a->token == NULL || b->token == NULL)
		cr_assert_eq(a->token, b->token);
	else
		cr_assert_str_eq(a->token, b->token);
	cr_assert_eq(a->tls, b->tls);
	cr_assert_eq(a->port, b->port);
	cr_assert_eq(a->offset, b->offset);
	cr_assert_eq(a->map_size, b->map_size);
	cr_assert_eq(a->flush, b->flush);
	cr_assert_eq(a->level, b->level);
	cr_assert_eq(a->redact.n, b->redact.n);
	for (size_t i = 0; i < a->redact.n; i++)
		cr_assert_str_eq(a->redact.v[i], b->redact.v[i]);
	cr_assert_str_eq(a->custom, b->custom);
}

static void round_trip(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_eq(tl_config_print(&table, &o, f), 0);
	fclose(f);
	opts back;
	memset(&back, 0, sizeof(back));
	cr_assert_eq(tl_config_apply_defaults(&table, &back, &err), 0);
	/* Start from other values so that a key print forgets would show. */
	tl_config_set(&table, &back, "port", "7", &err);
	tl_config_set(&table, &back, "listen", "elsewhere", &err);
	cr_assert_eq(tl_config_load_string(&table, &back, "printed", text, len, &err), 0, "%s\n%s", err.msg, text);
	assert_same(&o, &back);
	tl_config_free(&table, &back);
	free(text);
}

Test(config, print_round_trip)
{
	round_trip();
	cr_assert_eq(tl_config_set(&table, &o, "listen", "q\"uo\\te\nnl\ttab \x01 é: #x", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "auth.token", "", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "auth.tls", "true", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "offset", "-9223372036854775808", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "storage.map_size", "1537K", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "storage.flush.interval", "1.5s", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "log.level", "debug", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "redact.keys", "- x,[y],{z}: ,'q'", &err), 0);
	cr_assert_eq(tl_config_set(&table, &o, "custom", "c d", &err), 0);
	round_trip();
	cr_assert_eq(tl_config_set(&table, &o, "redact.keys", "", &err), 0);
	cr_assert_eq(load("n.yaml", "listen: ~\n"), 0);
	round_trip();
}

Test(config, print_format)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_eq(tl_config_print(&table, &o, f), 0);
	fclose(f);
	cr_assert(strstr(text, "storage:\n  # LMDB map size\n  map_size: 64M\n  flush:\n    # flush every\n"
	                       "    interval: 100ms\n") != NULL,
	          "%s", text);
	cr_assert(strstr(text, "  keys: [\"user.email\", \"*.password\"]\n") != NULL, "%s", text);
	cr_assert(strstr(text, "  token: ~\n") != NULL, "%s", text);
	free(text);
}

Test(config, doc_markdown)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_eq(tl_config_doc_markdown(&table, f), 0);
	fclose(f);
	const char *head = "| key | type | default | description |\n| --- | --- | --- | --- |\n";
	cr_assert(strncmp(text, head, strlen(head)) == 0, "%s", text);
	cr_assert(strstr(text, "| `port` | int (1..65535) | `4318` | port |\n") != NULL, "%s", text);
	cr_assert(strstr(text, "| `storage.map_size` | size (1M..1T) | `64M` | LMDB map size |\n") != NULL, "%s", text);
	cr_assert(strstr(text, "| `log.level` | enum: `debug`, `info`, `warn`, `error` | `info` | log level |\n") !=
	                  NULL,
	          "%s", text);
	cr_assert(strstr(text, "| `auth.token` | string |  | bearer token |\n") != NULL, "%s", text);
	cr_assert(strstr(text, "attribute keys \\| masked") != NULL, "%s", text);
	/* One row per entry. */
	size_t rows = 0;
	for (char *p = text; (p = strchr(p, '\n')) != NULL; p++)
		rows++;
	cr_assert_eq(rows, 2 + table.n);
	free(text);
}

/* Each bad table is rejected with a message naming the entry. */
Test(config, table_checks)
{
	static const tl_config_entry size_mismatch[] = {
	        {"port", TL_CFG_SIZE, NULL, "", TL_CFG_FIELD(opts, port)},
	};
	static const tl_config_entry key_and_section[] = {
	        {"a", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, port)},
	        {"a.b", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, offset)},
	};
	static const tl_config_entry split[] = {
	        {"a.x", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, port)},
	        {"b", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, offset)},
	        {"a.y", TL_CFG_BOOL, NULL, "", TL_CFG_FIELD(opts, tls)},
	};
	static const tl_config_entry env_clash[] = {
	        {"a.b_c", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, port)},
	        {"a_b.c", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, offset)},
	};
	static const tl_config_entry bad_default[] = {
	        {"p", TL_CFG_INT, "0", "", TL_CFG_FIELD(opts, port), .min = 1, .max = 2},
	};
	static const tl_config_entry bad_key[] = {
	        {"Port", TL_CFG_INT, NULL, "", TL_CFG_FIELD(opts, port)},
	};
	static const tl_config_entry no_values[] = {
	        {"l", TL_CFG_ENUM, NULL, "", TL_CFG_FIELD(opts, level)},
	};
	static const struct {
		const tl_config_entry *e;
		size_t n;
		const char *msg;
	} bad[] = {
	        {size_mismatch, 1, "port: field size 4 does not fit type size"},
	        {key_and_section, 2, "a: is both a key and a section"},
	        {split, 3, "a.y: section a is split"},
	        {env_clash, 2, "a.b_c and a_b.c: same environment name"},
	        {bad_default, 1, "p: 0 is out of range 1..2"},
	        {bad_key, 1, "entry 0: bad key \"Port\""},
	        {no_values, 1, "l: enum without values"},
	};
	cr_assert_eq(tl_config_check_table(&table, &err), 0, "%s", err.msg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tl_config_table t = {"bad", bad[i].e, bad[i].n};
		opts x;
		memset(&x, 0, sizeof(x));
		cr_assert_eq(tl_config_apply_defaults(&t, &x, &err), TL_EINVALID, "%zu", i);
		cr_assert_str_eq(err.msg, bad[i].msg);
	}
}
