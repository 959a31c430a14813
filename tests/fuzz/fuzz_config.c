/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The config reader takes files that operators write by hand and that
 * templating tools generate, so it must survive anything: no crash, no read
 * past the input (given in a buffer of exactly its size), no leak, only its
 * documented codes, an error message that starts with the file name and a
 * line:column, and on success --print-config output that loads back and
 * prints the same text again.
 */
#include "tl_config.h"
#include "tl_time.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT_MAX (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct opts {
	char *s;
	char *s2;
	bool b;
	int i;
	int64_t i64;
	uint64_t size;
	uint64_t dur;
	int e;
	tl_strlist l;
	char c[8];
} opts;

static const char *const names[] = {"a", "b", "c", NULL};

static int set_c(void *o, const char *v, tl_errmsg *err)
{
	opts *p = o;
	if (strlen(v) >= sizeof(p->c))
		return tl_errf(err, TL_EINVALID, "too long");
	strcpy(p->c, v);
	return 0;
}

static void get_c(const void *o, char *buf, size_t n)
{
	snprintf(buf, n, "%s", ((const opts *)o)->c);
}

static const tl_config_entry entries[] = {
        {"s", TL_CFG_STRING, "x", "string", TL_CFG_FIELD(opts, s)},
        {"a.s2", TL_CFG_STRING, NULL, "string", TL_CFG_FIELD(opts, s2)},
        {"a.b", TL_CFG_BOOL, "true", "bool", TL_CFG_FIELD(opts, b)},
        {"a.n.i", TL_CFG_INT, "5", "int", TL_CFG_FIELD(opts, i), .min = -10, .max = 100000},
        {"a.n.j", TL_CFG_INT, "0", "int64", TL_CFG_FIELD(opts, i64)},
        {"z.size", TL_CFG_SIZE, "1M", "size", TL_CFG_FIELD(opts, size)},
        {"z.dur", TL_CFG_DURATION, "1s", "duration", TL_CFG_FIELD(opts, dur), .min = 0, .max = 3600 * TL_NS_PER_S},
        {"z.e", TL_CFG_ENUM, "b", "enum", TL_CFG_FIELD(opts, e), .values = names},
        {"z.l", TL_CFG_STRLIST, "p,q", "list", TL_CFG_FIELD(opts, l)},
        {"c", TL_CFG_CUSTOM, "k", "custom", TL_CFG_FIELD(opts, c), .set = set_c, .get = get_c},
};

static const tl_config_table table = {"fuzz", entries, sizeof(entries) / sizeof(entries[0])};

static char *print(const opts *o, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	if (f == NULL)
		abort();
	if (tl_config_print(&table, o, f) != 0)
		abort();
	fclose(f);
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	opts o;
	memset(&o, 0, sizeof(o));
	tl_errmsg err = {{0}};
	if (tl_config_apply_defaults(&table, &o, &err) != 0)
		abort();
	int rc = tl_config_load_string(&table, &o, "f.yaml", copy, size, &err);
	free(copy);
	if (rc != 0) {
		if (rc != TL_EPARSE && rc != TL_EINVALID && rc != TL_ELIMIT && rc != -ENOMEM)
			abort();
		unsigned line, col;
		if (strncmp(err.msg, "f.yaml:", 7) != 0 || sscanf(err.msg + 7, "%u:%u: ", &line, &col) != 2 ||
		    line == 0 || col == 0)
			abort();
		tl_config_free(&table, &o);
		return 0;
	}
	size_t len1, len2;
	char *t1 = print(&o, &len1);
	opts back;
	memset(&back, 0, sizeof(back));
	if (tl_config_apply_defaults(&table, &back, &err) != 0)
		abort();
	if (tl_config_load_string(&table, &back, "printed", t1, len1, &err) != 0)
		abort(); /* printed settings must load */
	char *t2 = print(&back, &len2);
	if (len1 != len2 || memcmp(t1, t2, len1) != 0)
		abort(); /* and mean the same */
	free(t1);
	free(t2);
	tl_config_free(&table, &back);
	tl_config_free(&table, &o);
	return 0;
}
