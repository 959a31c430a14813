/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Configuration driven by one table per component. Each entry names a dotted
 * key ("storage.map_size"), its type, its default (written in the same syntax
 * a config file uses, so the docs show what a user would type), a one-line
 * description and where the value lives in the component's options struct.
 * The same table parses YAML files (nested mappings become dotted keys),
 * environment variables and flags, validates every value, fills defaults,
 * prints the effective settings as YAML and documents itself as Markdown.
 *
 * Precedence is the caller's order of calls: tl_config_apply_defaults, then
 * tl_config_load_file, tl_config_apply_env and tl_config_set for each flag;
 * each later call overwrites what the earlier ones set.
 *
 * Field types in the options struct, by entry type:
 *   TL_CFG_STRING    char *      heap copy owned by opts (NULL = unset); free with tl_config_free()
 *   TL_CFG_BOOL      bool        true/false, yes/no, on/off, 1/0
 *   TL_CFG_INT       int or int64_t, decimal, within [min, max]
 *   TL_CFG_SIZE      uint64_t    bytes; suffix K, M, G or T (powers of 1024), e.g. "64M"
 *   TL_CFG_DURATION  uint64_t    nanoseconds; "100ms", "5s", "1m", "1h30m" (tl_parse_duration), or "0"
 *   TL_CFG_ENUM      int         index into the entry's values
 *   TL_CFG_STRLIST   tl_strlist  a YAML sequence; comma-separated in env and flags
 *   TL_CFG_CUSTOM    -           the entry's set/get callbacks own the value
 *
 * On any error the options may be partly updated but stay consistent (every
 * string is either NULL or owned), so tl_config_free() is always safe; the
 * daemons report the message and exit 2.
 */
#ifndef TL_CONFIG_H
#define TL_CONFIG_H

#include "tl_error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Limits on every input this module reads. */
#define TL_CONFIG_MAX_FILE (1u << 20) /* bytes of YAML */
#define TL_CONFIG_MAX_KEY 128         /* bytes of a dotted key */
#define TL_CONFIG_MAX_VALUE 4096      /* bytes of one scalar value */
#define TL_CONFIG_MAX_LIST 1024       /* items in one string list */

typedef enum tl_config_type {
	TL_CFG_STRING,
	TL_CFG_BOOL,
	TL_CFG_INT,
	TL_CFG_SIZE,
	TL_CFG_DURATION,
	TL_CFG_ENUM,
	TL_CFG_STRLIST,
	TL_CFG_CUSTOM,
} tl_config_type;

/* A list of strings; v[0..n) are heap copies owned by the options struct. */
typedef struct tl_strlist {
	char **v;
	size_t n;
} tl_strlist;

typedef struct tl_config_entry {
	const char *key; /* dotted path of [a-z0-9_] components */
	tl_config_type type;
	const char *def;           /* default in config syntax; NULL: unset string, empty list, or zero */
	const char *desc;          /* one line, for --print-config and the README */
	size_t offset;             /* offsetof the field in the options struct (TL_CFG_FIELD) */
	size_t size;               /* sizeof the field, checked by tl_config_check_table */
	int64_t min, max;          /* INT, SIZE, DURATION: inclusive bounds; none when both are 0 */
	const char *const *values; /* ENUM: NULL-terminated allowed names */
	/* CUSTOM: parses value (borrowed) into opts; returns 0 or TL_EINVALID with a message (no key). */
	int (*set)(void *opts, const char *value, tl_errmsg *err);
	/* CUSTOM: formats the current value so that set() accepts it again; NUL-terminated, cut at n. */
	void (*get)(const void *opts, char *buf, size_t n);
} tl_config_entry;

/* Fills .offset and .size of an entry for member of struct type. */
#define TL_CFG_FIELD(type, member) .offset = offsetof(type, member), .size = sizeof(((type *)0)->member)

typedef struct tl_config_table {
	const char *name; /* component ("agent"), for messages and docs */
	const tl_config_entry *entries;
	size_t n;
} tl_config_table;

/*
 * Checks a table for programmer errors: bad key syntax, field sizes that do
 * not match the type, a key that is also a section ("a" and "a.b"), sections
 * not kept together (print would repeat them), two keys with one environment
 * name, missing enum values or custom callbacks, and defaults that do not
 * parse. Returns 0 or TL_EINVALID with the entry named in err.
 */
int tl_config_check_table(const tl_config_table *t, tl_errmsg *err);

/* The entry for key, or NULL. Valid as long as the table. */
const tl_config_entry *tl_config_find(const tl_config_table *t, const char *key);

/*
 * Checks the table, then sets every field to its default. opts must be
 * zeroed or previously filled by this module (old strings are freed).
 * Returns 0 or TL_EINVALID (bad table) / -ENOMEM.
 */
int tl_config_apply_defaults(const tl_config_table *t, void *opts, tl_errmsg *err);

/*
 * Reads a YAML file (at most TL_CONFIG_MAX_FILE bytes) into opts; path is
 * borrowed. Errors carry "path:LINE:COL: key: what is wrong" (1-based):
 *   TL_EPARSE    YAML syntax, duplicate key, aliases, several documents, a
 *                mapping or list where a scalar belongs (or the reverse)
 *   TL_EINVALID  unknown key, bad value, value out of range, unknown enum value
 *   TL_ELIMIT    file, key, value or list too long
 *   negative errno if the file cannot be read (message names the path).
 */
int tl_config_load_file(const tl_config_table *t, void *opts, const char *path, tl_errmsg *err);

/* The same from memory: data[0..len) (no NUL needed) borrowed, name used in messages. */
int tl_config_load_string(const tl_config_table *t, void *opts, const char *name, const char *data, size_t len,
                          tl_errmsg *err);

/*
 * Applies environment variables: key storage.map_size is read from
 * <prefix>STORAGE_MAP_SIZE. A variable that starts with prefix but matches no
 * key is an error too (a typo must not pass silently). Errors name the
 * variable: "THREADLINE_AGENT_STORAGE_MAP_SIZE: ...". Returns 0, TL_EINVALID,
 * TL_ELIMIT or -ENOMEM. prefix is borrowed.
 */
int tl_config_apply_env(const tl_config_table *t, void *opts, const char *prefix, tl_errmsg *err);

/* Sets one key from text (a flag); lists are comma-separated. Errors read "key: ...". */
int tl_config_set(const tl_config_table *t, void *opts, const char *key, const char *value, tl_errmsg *err);

/*
 * Prints the effective settings as YAML, one comment line with each
 * description, in a form tl_config_load_string reads back to the same
 * options. Returns 0 or -EIO if writing failed.
 */
int tl_config_print(const tl_config_table *t, const void *opts, FILE *out);

/* Prints a Markdown table: key, type, default, description. Returns 0 or -EIO. */
int tl_config_doc_markdown(const tl_config_table *t, FILE *out);

/* Frees the strings and lists the table's entries own in opts and sets them to NULL/empty. NULL opts is a no-op. */
void tl_config_free(const tl_config_table *t, void *opts);

#endif
