/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Table-driven configuration: the YAML reader (libyaml's event API, so that
 * aliases can be refused before they expand and every value keeps its mark),
 * the value parsers shared by files, environment and flags, and the printers
 * for --print-config and the README.
 */
#include "tl_config.h"

#include "tl_time.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

extern char **environ;

/* ---- table helpers ---- */

static void *field(void *opts, const tl_config_entry *e)
{
	return (char *)opts + e->offset;
}

static const void *cfield(const void *opts, const tl_config_entry *e)
{
	return (const char *)opts + e->offset;
}

const tl_config_entry *tl_config_find(const tl_config_table *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->entries[i].key, key) == 0)
			return &t->entries[i];
	}
	return NULL;
}

/* True if some key starts with prefix followed by a dot. */
static bool is_section(const tl_config_table *t, const char *prefix)
{
	size_t n = strlen(prefix);
	for (size_t i = 0; i < t->n; i++) {
		if (strncmp(t->entries[i].key, prefix, n) == 0 && t->entries[i].key[n] == '.')
			return true;
	}
	return false;
}

static const char *type_name(tl_config_type type)
{
	switch (type) {
	case TL_CFG_STRING:
		return "string";
	case TL_CFG_BOOL:
		return "bool";
	case TL_CFG_INT:
		return "int";
	case TL_CFG_SIZE:
		return "size";
	case TL_CFG_DURATION:
		return "duration";
	case TL_CFG_ENUM:
		return "enum";
	case TL_CFG_STRLIST:
		return "string list";
	case TL_CFG_CUSTOM:
		return "string";
	}
	return "?";
}

static void strlist_clear(tl_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Appends a copy of s[0..len). Returns 0, TL_ELIMIT or -ENOMEM. */
static int strlist_push(tl_strlist *l, const char *s, size_t len)
{
	if (l->n >= TL_CONFIG_MAX_LIST)
		return TL_ELIMIT;
	char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	l->v = v;
	char *c = strndup(s, len);
	if (c == NULL)
		return -ENOMEM;
	l->v[l->n++] = c;
	return 0;
}

void tl_config_free(const tl_config_table *t, void *opts)
{
	if (opts == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		const tl_config_entry *e = &t->entries[i];
		if (e->type == TL_CFG_STRING) {
			char **p = field(opts, e);
			free(*p);
			*p = NULL;
		} else if (e->type == TL_CFG_STRLIST) {
			strlist_clear(field(opts, e));
		}
	}
}

/* ---- value parsers: text -> typed value, message without the key ---- */

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return TL_EINVALID;
}

static int parse_int(const char *s, int64_t *out)
{
	const char *p = s;
	bool neg = false;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (*p < '0' || *p > '9')
		return TL_EINVALID;
	uint64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return TL_ELIMIT;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p != '\0')
		return TL_EINVALID;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return TL_ELIMIT;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return TL_ELIMIT;
		*out = (int64_t)v;
	}
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	if (*p < '0' || *p > '9')
		return TL_EINVALID;
	uint64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return TL_ELIMIT;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	unsigned shift = 0;
	switch (*p) {
	case '\0':
		break;
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	default:
		return TL_EINVALID;
	}
	if (shift != 0 && *++p != '\0')
		return TL_EINVALID;
	if (v > (UINT64_MAX >> shift))
		return TL_ELIMIT;
	*out = v << shift;
	return 0;
}

static int parse_duration(const char *s, uint64_t *out)
{
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	int rc = tl_parse_duration(s, out);
	return rc == TL_ELIMIT ? TL_ELIMIT : rc != 0 ? TL_EINVALID : 0;
}

/* Checks [min, max] for a value seen as signed (INT) or unsigned (SIZE, DURATION). */
static bool in_range(const tl_config_entry *e, bool is_signed, int64_t sv, uint64_t uv)
{
	if (e->min == 0 && e->max == 0)
		return true;
	if (is_signed)
		return sv >= e->min && sv <= e->max;
	if (e->min > 0 && uv < (uint64_t)e->min)
		return false;
	return e->max >= 0 && uv <= (uint64_t)e->max;
}

static void format_size(uint64_t v, char *buf, size_t n)
{
	static const char suffix[] = "KMGT";
	int u = -1;
	while (u < 3 && v != 0 && (v & 1023) == 0) {
		v >>= 10;
		u++;
	}
	if (u < 0)
		snprintf(buf, n, "%" PRIu64, v);
	else
		snprintf(buf, n, "%" PRIu64 "%c", v, suffix[u]);
}

/* Exact: the largest unit that divides the value, so that parsing gives it back. */
static void format_duration(uint64_t ns, char *buf, size_t n)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {{"h", 3600 * TL_NS_PER_S},
	             {"m", 60 * TL_NS_PER_S},
	             {"s", TL_NS_PER_S},
	             {"ms", TL_NS_PER_MS},
	             {"us", 1000},
	             {"ns", 1}};
	if (ns == 0) {
		snprintf(buf, n, "0");
		return;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ns % units[i].ns == 0) {
			snprintf(buf, n, "%" PRIu64 "%s", ns / units[i].ns, units[i].name);
			return;
		}
	}
}

static void format_range(const tl_config_entry *e, char *buf, size_t n)
{
	char a[32], b[32];
	if (e->type == TL_CFG_SIZE) {
		format_size((uint64_t)e->min, a, sizeof(a));
		format_size((uint64_t)e->max, b, sizeof(b));
	} else if (e->type == TL_CFG_DURATION) {
		format_duration((uint64_t)e->min, a, sizeof(a));
		format_duration((uint64_t)e->max, b, sizeof(b));
	} else {
		snprintf(a, sizeof(a), "%" PRId64, e->min);
		snprintf(b, sizeof(b), "%" PRId64, e->max);
	}
	snprintf(buf, n, "%s..%s", a, b);
}

/*
 * Parses s into the entry's field. Lists take one item per call unless
 * split_list, which splits at commas and replaces the list. Returns 0 or an
 * error with a message that does not name the key (the caller prefixes it).
 */
static int set_value(const tl_config_entry *e, void *opts, const char *s, bool split_list, tl_errmsg *err)
{
	void *f = field(opts, e);
	int rc;
	char range[80];
	if (strlen(s) > TL_CONFIG_MAX_VALUE)
		return tl_errf(err, TL_ELIMIT, "value longer than %d bytes", TL_CONFIG_MAX_VALUE);
	switch (e->type) {
	case TL_CFG_STRING: {
		char *c = strdup(s);
		if (c == NULL)
			return tl_errf(err, -ENOMEM, "out of memory");
		free(*(char **)f);
		*(char **)f = c;
		return 0;
	}
	case TL_CFG_BOOL:
		if (parse_bool(s, f) != 0)
			return tl_errf(err, TL_EINVALID, "expected true or false, got \"%s\"", s);
		return 0;
	case TL_CFG_INT: {
		int64_t v;
		if ((rc = parse_int(s, &v)) != 0)
			return tl_errf(err, TL_EINVALID,
			               rc == TL_ELIMIT ? "\"%s\" is too large" : "expected an integer, got \"%s\"", s);
		if (!in_range(e, true, v, 0)) {
			format_range(e, range, sizeof(range));
			return tl_errf(err, TL_EINVALID, "%" PRId64 " is out of range %s", v, range);
		}
		if (e->size == 4 && (v < INT32_MIN || v > INT32_MAX))
			return tl_errf(err, TL_EINVALID, "%" PRId64 " is out of range %d..%d", v, INT32_MIN, INT32_MAX);
		if (e->size == 4)
			*(int *)f = (int)v;
		else
			*(int64_t *)f = v;
		return 0;
	}
	case TL_CFG_SIZE:
	case TL_CFG_DURATION: {
		uint64_t v;
		bool size = e->type == TL_CFG_SIZE;
		rc = size ? parse_size(s, &v) : parse_duration(s, &v);
		if (rc == TL_ELIMIT)
			return tl_errf(err, TL_EINVALID, "\"%s\" is too large", s);
		if (rc != 0)
			return tl_errf(err, TL_EINVALID,
			               size ? "expected a size like 512, 64K, 16M or 1G, got \"%s\""
			                    : "expected a duration like 100ms, 5s or 1m, got \"%s\"",
			               s);
		if (!in_range(e, false, 0, v)) {
			format_range(e, range, sizeof(range));
			return tl_errf(err, TL_EINVALID, "%s is out of range %s", s, range);
		}
		*(uint64_t *)f = v;
		return 0;
	}
	case TL_CFG_ENUM:
		for (int i = 0; e->values[i] != NULL; i++) {
			if (strcmp(e->values[i], s) == 0) {
				*(int *)f = i;
				return 0;
			}
		}
		char allowed[160] = "";
		for (int i = 0; e->values[i] != NULL; i++) {
			size_t l = strlen(allowed);
			snprintf(allowed + l, sizeof(allowed) - l, "%s%s", i ? ", " : "", e->values[i]);
		}
		return tl_errf(err, TL_EINVALID, "\"%s\" is not one of %s", s, allowed);
	case TL_CFG_STRLIST: {
		tl_strlist *l = f;
		if (!split_list) {
			rc = strlist_push(l, s, strlen(s));
		} else {
			tl_strlist nl = {0};
			rc = 0;
			for (const char *p = s; *s != '\0' && rc == 0;) {
				const char *c = strchr(p, ',');
				size_t len = c != NULL ? (size_t)(c - p) : strlen(p);
				rc = strlist_push(&nl, p, len);
				if (c == NULL)
					break;
				p = c + 1;
			}
			if (rc != 0) {
				strlist_clear(&nl);
			} else {
				strlist_clear(l);
				*l = nl;
			}
		}
		if (rc == TL_ELIMIT)
			return tl_errf(err, TL_ELIMIT, "more than %d items", TL_CONFIG_MAX_LIST);
		if (rc != 0)
			return tl_errf(err, rc, "out of memory");
		return 0;
	}
	case TL_CFG_CUSTOM:
		rc = e->set(opts, s, err);
		if (rc != 0 && err != NULL && err->msg[0] == '\0')
			tl_errf(err, rc, "invalid value \"%s\"", s);
		return rc;
	}
	return tl_errf(err, TL_EINVALID, "bad entry type");
}

/* Runs set_value and prefixes its message with where ("key: "). */
static int set_named(const tl_config_entry *e, void *opts, const char *s, bool split, const char *where, tl_errmsg *err)
{
	tl_errmsg m = {{0}};
	int rc = set_value(e, opts, s, split, &m);
	if (rc != 0)
		tl_errf(err, rc, "%s: %s", where, m.msg);
	return rc;
}

/* ---- table check and defaults ---- */

static bool key_ok(const char *k)
{
	if (k == NULL || *k == '\0' || strlen(k) > TL_CONFIG_MAX_KEY)
		return false;
	char prev = '.';
	for (const char *p = k; *p != '\0'; p++) {
		if (*p == '.' && prev == '.')
			return false;
		if (*p != '.' && *p != '_' && !(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9'))
			return false;
		prev = *p;
	}
	return prev != '.';
}

static size_t expected_size(const tl_config_entry *e)
{
	switch (e->type) {
	case TL_CFG_STRING:
		return sizeof(char *);
	case TL_CFG_BOOL:
		return sizeof(bool);
	case TL_CFG_INT:
		return e->size == sizeof(int) ? sizeof(int) : sizeof(int64_t);
	case TL_CFG_SIZE:
	case TL_CFG_DURATION:
		return sizeof(uint64_t);
	case TL_CFG_ENUM:
		return sizeof(int);
	case TL_CFG_STRLIST:
		return sizeof(tl_strlist);
	case TL_CFG_CUSTOM:
		return e->size;
	}
	return 0;
}

/* Environment name of a key after the prefix: dots become underscores, letters upper case. */
static void env_suffix(const char *key, char *buf, size_t n)
{
	size_t i = 0;
	for (; key[i] != '\0' && i + 1 < n; i++)
		buf[i] = key[i] == '.' ? '_' : (char)toupper((unsigned char)key[i]);
	buf[i] = '\0';
}

int tl_config_check_table(const tl_config_table *t, tl_errmsg *err)
{
	for (size_t i = 0; i < t->n; i++) {
		const tl_config_entry *e = &t->entries[i];
		if (!key_ok(e->key))
			return tl_errf(err, TL_EINVALID, "entry %zu: bad key \"%s\"", i, e->key ? e->key : "(null)");
		if (e->type > TL_CFG_CUSTOM || e->size != expected_size(e))
			return tl_errf(err, TL_EINVALID, "%s: field size %zu does not fit type %s", e->key, e->size,
			               type_name(e->type));
		if (e->type == TL_CFG_ENUM && (e->values == NULL || e->values[0] == NULL))
			return tl_errf(err, TL_EINVALID, "%s: enum without values", e->key);
		if (e->type == TL_CFG_CUSTOM && (e->set == NULL || e->get == NULL))
			return tl_errf(err, TL_EINVALID, "%s: custom entry needs set and get", e->key);
		if (e->min > e->max)
			return tl_errf(err, TL_EINVALID, "%s: min > max", e->key);
		if (is_section(t, e->key))
			return tl_errf(err, TL_EINVALID, "%s: is both a key and a section", e->key);
		char ei[TL_CONFIG_MAX_KEY + 1], ej[TL_CONFIG_MAX_KEY + 1];
		env_suffix(e->key, ei, sizeof(ei));
		for (size_t j = 0; j < i; j++) {
			const tl_config_entry *o = &t->entries[j];
			if (strcmp(o->key, e->key) == 0)
				return tl_errf(err, TL_EINVALID, "%s: listed twice", e->key);
			env_suffix(o->key, ej, sizeof(ej));
			if (strcmp(ei, ej) == 0)
				return tl_errf(err, TL_EINVALID, "%s and %s: same environment name", o->key, e->key);
		}
		/* Sections kept together: once left, a section (or any ancestor) is not entered again. */
		if (i > 0) {
			const char *prev = t->entries[i - 1].key;
			/* Every ancestor section of e that prev is not in must not appear before i. */
			for (size_t cut = 0; cut <= strlen(e->key); cut++) {
				if (e->key[cut] != '.')
					continue;
				if (strncmp(prev, e->key, cut + 1) == 0)
					continue;
				for (size_t j = 0; j + 1 < i; j++) {
					if (strncmp(t->entries[j].key, e->key, cut + 1) == 0)
						return tl_errf(err, TL_EINVALID, "%s: section %.*s is split", e->key,
						               (int)cut, e->key);
				}
			}
		}
	}
	return 0;
}

int tl_config_apply_defaults(const tl_config_table *t, void *opts, tl_errmsg *err)
{
	int rc = tl_config_check_table(t, err);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < t->n; i++) {
		const tl_config_entry *e = &t->entries[i];
		void *f = field(opts, e);
		switch (e->type) {
		case TL_CFG_STRING:
			free(*(char **)f);
			*(char **)f = NULL;
			break;
		case TL_CFG_STRLIST:
			strlist_clear(f);
			break;
		case TL_CFG_CUSTOM:
			break;
		default:
			memset(f, 0, e->size);
			break;
		}
		if (e->def != NULL && (rc = set_named(e, opts, e->def, true, e->key, err)) != 0)
			return rc;
	}
	return 0;
}

/* ---- YAML ---- */

typedef struct reader {
	const tl_config_table *t;
	void *opts;
	const char *name;
	yaml_parser_t parser;
	bool *seen; /* per entry: set by this file already */
	tl_errmsg *err;
} reader;

static int at(reader *r, yaml_mark_t m, int code, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

static int at(reader *r, yaml_mark_t m, int code, const char *key, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (key != NULL)
		return tl_errf(r->err, code, "%s:%zu:%zu: %s: %s", r->name, m.line + 1, m.column + 1, key, what);
	return tl_errf(r->err, code, "%s:%zu:%zu: %s", r->name, m.line + 1, m.column + 1, what);
}

static int next(reader *r, yaml_event_t *ev)
{
	if (yaml_parser_parse(&r->parser, ev))
		return 0;
	yaml_mark_t m = r->parser.problem_mark;
	if (r->parser.error == YAML_MEMORY_ERROR)
		return tl_errf(r->err, -ENOMEM, "%s: out of memory", r->name);
	if (r->parser.context != NULL)
		return at(r, m, TL_EPARSE, NULL, "YAML syntax error: %s %s", r->parser.problem ? r->parser.problem : "",
		          r->parser.context);
	return at(r, m, TL_EPARSE, NULL, "YAML syntax error: %s", r->parser.problem ? r->parser.problem : "");
}

static bool plain_null(const yaml_event_t *ev)
{
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)ev->data.scalar.value;
	return ev->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	       strcmp(s, "NULL") == 0;
}

static const char *node_kind(yaml_event_type_t t)
{
	return t == YAML_MAPPING_START_EVENT ? "a mapping" : t == YAML_SEQUENCE_START_EVENT ? "a list" : "an alias";
}

/* The value of key e (its event in ev, which the caller deletes). */
static int read_value(reader *r, const tl_config_entry *e, const char *key, yaml_event_t *ev)
{
	int rc;
	if (ev->type == YAML_ALIAS_EVENT)
		return at(r, ev->start_mark, TL_EPARSE, key, "aliases are not supported");
	if (e->type == TL_CFG_STRLIST) {
		if (ev->type != YAML_SEQUENCE_START_EVENT)
			return at(r, ev->start_mark, TL_EPARSE, key, "expected a list, got %s",
			          ev->type == YAML_SCALAR_EVENT ? "a scalar" : node_kind(ev->type));
		tl_strlist *l = field(r->opts, e);
		strlist_clear(l);
		for (;;) {
			yaml_event_t item;
			if ((rc = next(r, &item)) != 0)
				return rc;
			if (item.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&item);
				return 0;
			}
			if (item.type != YAML_SCALAR_EVENT) {
				rc = at(r, item.start_mark, TL_EPARSE, key, "list items must be strings, got %s",
				        node_kind(item.type));
			} else if (plain_null(&item)) {
				rc = at(r, item.start_mark, TL_EINVALID, key, "empty list item");
			} else {
				tl_errmsg m = {{0}};
				rc = set_value(e, r->opts, (const char *)item.data.scalar.value, false, &m);
				if (rc != 0)
					rc = at(r, item.start_mark, rc, key, "%s", m.msg);
			}
			yaml_event_delete(&item);
			if (rc != 0)
				return rc;
		}
	}
	if (ev->type != YAML_SCALAR_EVENT)
		return at(r, ev->start_mark, TL_EPARSE, key, "expected %s %s, got %s",
		          strchr("aeiou", type_name(e->type)[0]) ? "an" : "a", type_name(e->type), node_kind(ev->type));
	const char *s = (const char *)ev->data.scalar.value;
	if (plain_null(ev)) {
		if (e->type != TL_CFG_STRING)
			return at(r, ev->start_mark, TL_EINVALID, key, "has no value");
		char **p = field(r->opts, e);
		free(*p);
		*p = NULL;
		return 0;
	}
	if (strlen(s) != ev->data.scalar.length)
		return at(r, ev->start_mark, TL_EINVALID, key, "contains a NUL character");
	tl_errmsg m = {{0}};
	if ((rc = set_value(e, r->opts, s, false, &m)) != 0)
		return at(r, ev->start_mark, rc, key, "%s", m.msg);
	return 0;
}

/* Reads pairs until the mapping ends; prefix is "" at the top or "a.b". */
static int read_mapping(reader *r, const char *prefix)
{
	int rc;
	for (;;) {
		yaml_event_t kev, vev;
		if ((rc = next(r, &kev)) != 0)
			return rc;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			return 0;
		}
		if (kev.type != YAML_SCALAR_EVENT) {
			rc = at(r, kev.start_mark, TL_EPARSE, NULL, "keys must be plain strings, got %s",
			        node_kind(kev.type));
			yaml_event_delete(&kev);
			return rc;
		}
		char key[TL_CONFIG_MAX_KEY + 2];
		const char *k = (const char *)kev.data.scalar.value;
		int n = snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", k);
		if (n < 0 || (size_t)n >= sizeof(key) || strlen(k) != kev.data.scalar.length) {
			rc = at(r, kev.start_mark, TL_EINVALID, NULL, "unknown key \"%.40s...\"", key);
			yaml_event_delete(&kev);
			return rc;
		}
		yaml_mark_t km = kev.start_mark;
		yaml_event_delete(&kev);
		const tl_config_entry *e = tl_config_find(r->t, key);
		bool section = e == NULL && is_section(r->t, key);
		if (e == NULL && !section)
			return at(r, km, TL_EINVALID, key, "unknown key");
		if (e != NULL && r->seen[e - r->t->entries])
			return at(r, km, TL_EPARSE, key, "duplicate key");
		if ((rc = next(r, &vev)) != 0)
			return rc;
		if (section) {
			if (vev.type == YAML_MAPPING_START_EVENT)
				rc = read_mapping(r, key);
			else if (vev.type == YAML_SCALAR_EVENT && plain_null(&vev))
				rc = 0; /* an empty section */
			else
				rc = at(r, vev.start_mark, TL_EPARSE, key, "is a section: expected a mapping");
		} else {
			r->seen[e - r->t->entries] = true;
			rc = read_value(r, e, key, &vev);
		}
		yaml_event_delete(&vev);
		if (rc != 0)
			return rc;
	}
}

static int read_stream(reader *r)
{
	yaml_event_t ev;
	int rc;
	int docs = 0;
	for (;;) {
		if ((rc = next(r, &ev)) != 0)
			return rc;
		yaml_event_type_t type = ev.type;
		yaml_mark_t m = ev.start_mark;
		rc = 0;
		switch (type) {
		case YAML_STREAM_END_EVENT:
			yaml_event_delete(&ev);
			return 0;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = at(r, m, TL_EPARSE, NULL, "only one YAML document is allowed");
			break;
		case YAML_MAPPING_START_EVENT:
			rc = read_mapping(r, "");
			break;
		case YAML_SCALAR_EVENT:
			if (!plain_null(&ev))
				rc = at(r, m, TL_EPARSE, NULL, "expected a mapping of settings");
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_ALIAS_EVENT:
			rc = at(r, m, TL_EPARSE, NULL, "expected a mapping of settings, got %s", node_kind(type));
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		if (rc != 0)
			return rc;
	}
}

int tl_config_load_string(const tl_config_table *t, void *opts, const char *name, const char *data, size_t len,
                          tl_errmsg *err)
{
	if (len > TL_CONFIG_MAX_FILE)
		return tl_errf(err, TL_ELIMIT, "%s: larger than %u bytes", name, TL_CONFIG_MAX_FILE);
	reader r = {.t = t, .opts = opts, .name = name, .err = err};
	r.seen = calloc(t->n + 1, sizeof(bool));
	if (r.seen == NULL)
		return tl_errf(err, -ENOMEM, "%s: out of memory", name);
	if (!yaml_parser_initialize(&r.parser)) {
		free(r.seen);
		return tl_errf(err, -ENOMEM, "%s: out of memory", name);
	}
	yaml_parser_set_input_string(&r.parser, (const unsigned char *)data, len);
	int rc = read_stream(&r);
	yaml_parser_delete(&r.parser);
	free(r.seen);
	return rc;
}

int tl_config_load_file(const tl_config_table *t, void *opts, const char *path, tl_errmsg *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return tl_errf(err, -errno, "%s: %s", path, strerror(errno));
	char *buf = malloc(TL_CONFIG_MAX_FILE + 1);
	if (buf == NULL) {
		fclose(f);
		return tl_errf(err, -ENOMEM, "%s: out of memory", path);
	}
	size_t n = fread(buf, 1, TL_CONFIG_MAX_FILE + 1, f);
	int rc;
	if (ferror(f))
		rc = tl_errf(err, -EIO, "%s: read error", path);
	else
		rc = tl_config_load_string(t, opts, path, buf, n, err);
	fclose(f);
	free(buf);
	return rc;
}

/* ---- environment and flags ---- */

int tl_config_apply_env(const tl_config_table *t, void *opts, const char *prefix, tl_errmsg *err)
{
	size_t pl = strlen(prefix);
	for (char **ep = environ; ep != NULL && *ep != NULL; ep++) {
		const char *var = *ep;
		const char *eq = strchr(var, '=');
		if (eq == NULL || strncmp(var, prefix, pl) != 0)
			continue;
		size_t nl = (size_t)(eq - var);
		const tl_config_entry *e = NULL;
		char suf[TL_CONFIG_MAX_KEY + 1];
		for (size_t i = 0; i < t->n && e == NULL; i++) {
			env_suffix(t->entries[i].key, suf, sizeof(suf));
			if (strlen(suf) == nl - pl && strncmp(var + pl, suf, nl - pl) == 0)
				e = &t->entries[i];
		}
		char name[TL_CONFIG_MAX_KEY + 64];
		snprintf(name, sizeof(name), "%.*s", (int)nl, var);
		if (e == NULL)
			return tl_errf(err, TL_EINVALID, "%s: unknown setting (no %s key matches)", name, t->name);
		int rc = set_named(e, opts, eq + 1, true, name, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int tl_config_set(const tl_config_table *t, void *opts, const char *key, const char *value, tl_errmsg *err)
{
	const tl_config_entry *e = tl_config_find(t, key);
	if (e == NULL)
		return tl_errf(err, TL_EINVALID, "%s: unknown key", key);
	return set_named(e, opts, value, true, key, err);
}

/* ---- printing ---- */

/* Length of the UTF-8 sequence at p and its code point, or 0 if it is not valid UTF-8. */
static size_t utf8_next(const unsigned char *p, uint32_t *cp)
{
	size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
	if (n == 0 || p[0] > 0xf4)
		return 0;
	uint32_t c = p[0] & (0x3f >> (n - 1));
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
	if (c < least[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/*
 * A YAML double-quoted scalar that reads back as s: characters YAML does not
 * allow raw (controls, C1, line separators, the BOM) are escaped. Bytes that
 * are not UTF-8 (possible only from env or flags) become U+FFFD.
 */
static void put_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0';) {
		if (*p < 0x80) {
			if (*p == '"' || *p == '\\')
				fprintf(out, "\\%c", *p);
			else if (*p == '\n')
				fputs("\\n", out);
			else if (*p == '\t')
				fputs("\\t", out);
			else if (*p < 0x20 || *p == 0x7f)
				fprintf(out, "\\x%02x", *p);
			else
				fputc(*p, out);
			p++;
			continue;
		}
		uint32_t cp;
		size_t n = utf8_next(p, &cp);
		if (n == 0) {
			fputs("\\uFFFD", out);
			p++;
			continue;
		}
		if ((cp >= 0xa0 && cp <= 0xd7ff && cp != 0x2028 && cp != 0x2029) ||
		    (cp >= 0xe000 && cp <= 0xfffd && cp != 0xfeff) || cp >= 0x10000)
			fwrite(p, 1, n, out);
		else
			fprintf(out, "\\u%04X", (unsigned)cp);
		p += n;
	}
	fputc('"', out);
}

static void put_value(const tl_config_entry *e, const void *opts, FILE *out)
{
	const void *f = cfield(opts, e);
	char buf[TL_CONFIG_MAX_VALUE + 1];
	switch (e->type) {
	case TL_CFG_STRING:
		if (*(char *const *)f == NULL)
			fputs("~", out);
		else
			put_quoted(out, *(char *const *)f);
		break;
	case TL_CFG_BOOL:
		fputs(*(const bool *)f ? "true" : "false", out);
		break;
	case TL_CFG_INT:
		fprintf(out, "%" PRId64, e->size == 4 ? (int64_t) * (const int *)f : *(const int64_t *)f);
		break;
	case TL_CFG_SIZE:
		format_size(*(const uint64_t *)f, buf, sizeof(buf));
		fputs(buf, out);
		break;
	case TL_CFG_DURATION:
		format_duration(*(const uint64_t *)f, buf, sizeof(buf));
		fputs(buf, out);
		break;
	case TL_CFG_ENUM: {
		int i = *(const int *)f, n = 0;
		while (e->values[n] != NULL)
			n++;
		put_quoted(out, i >= 0 && i < n ? e->values[i] : "?");
		break;
	}
	case TL_CFG_STRLIST: {
		const tl_strlist *l = f;
		fputc('[', out);
		for (size_t i = 0; i < l->n; i++) {
			if (i > 0)
				fputs(", ", out);
			put_quoted(out, l->v[i]);
		}
		fputc(']', out);
		break;
	}
	case TL_CFG_CUSTOM:
		buf[0] = '\0';
		e->get(opts, buf, sizeof(buf));
		put_quoted(out, buf);
		break;
	}
}

int tl_config_print(const tl_config_table *t, const void *opts, FILE *out)
{
	const char *prev = "";
	for (size_t i = 0; i < t->n; i++) {
		const char *k = t->entries[i].key;
		/* Common whole sections with the previous key stay open; open the rest. */
		size_t common = 0;
		for (size_t j = 0; k[j] != '\0' && k[j] == prev[j]; j++) {
			if (k[j] == '.')
				common = j + 1;
		}
		int depth = 0;
		for (size_t j = 0; j < common; j++)
			depth += k[j] == '.';
		const char *p = k + common;
		const char *dot;
		while ((dot = strchr(p, '.')) != NULL) {
			fprintf(out, "%*s%.*s:\n", depth * 2, "", (int)(dot - p), p);
			depth++;
			p = dot + 1;
		}
		if (t->entries[i].desc != NULL)
			fprintf(out, "%*s# %s\n", depth * 2, "", t->entries[i].desc);
		fprintf(out, "%*s%s: ", depth * 2, "", p);
		put_value(&t->entries[i], opts, out);
		fputc('\n', out);
		prev = k;
	}
	return ferror(out) ? -EIO : 0;
}

static void put_md(FILE *out, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '\n')
			fputc(' ', out);
		else
			fputc(*s, out);
	}
}

int tl_config_doc_markdown(const tl_config_table *t, FILE *out)
{
	fputs("| key | type | default | description |\n| --- | --- | --- | --- |\n", out);
	for (size_t i = 0; i < t->n; i++) {
		const tl_config_entry *e = &t->entries[i];
		fprintf(out, "| `%s` | %s", e->key, type_name(e->type));
		if (e->type == TL_CFG_ENUM) {
			fputs(": ", out);
			for (int j = 0; e->values[j] != NULL; j++)
				fprintf(out, "%s`%s`", j ? ", " : "", e->values[j]);
		} else if ((e->type == TL_CFG_INT || e->type == TL_CFG_SIZE || e->type == TL_CFG_DURATION) &&
		           (e->min != 0 || e->max != 0)) {
			char range[80];
			format_range(e, range, sizeof(range));
			fprintf(out, " (%s)", range);
		}
		fputs(" | ", out);
		if (e->def != NULL && *e->def != '\0') {
			fputc('`', out);
			put_md(out, e->def);
			fputc('`', out);
		}
		fputs(" | ", out);
		put_md(out, e->desc);
		fputs(" |\n", out);
	}
	return ferror(out) ? -EIO : 0;
}
