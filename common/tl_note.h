/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed notes (c2sp.org/signed-note) with Ed25519 keys, and the
 * transparency-log checkpoint body they carry (c2sp.org/tlog-checkpoint).
 * The collector signs its log's checkpoints with these, and `audit verify`
 * checks them with nothing but the public key.
 *
 * A signed note is its text (ending in a newline), a blank line, and one or
 * more lines "— <key name> <base64(4-byte key ID || signature)>" (U+2014 em
 * dash). The key ID of an Ed25519 key is the first four bytes of
 * SHA-256(name || 0x0A || 0x01 || 32-byte public key), big-endian.
 *
 * Key strings follow the format of Go's golang.org/x/mod/sumdb/note, so
 * keys interoperate with the transparency tools that use it:
 *   verifier (public): "<name>+<8 hex key ID>+<base64(0x01 || public key)>"
 *   signer (private):  "PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>"
 *
 * Errors, each with a tl_errmsg naming what went wrong:
 *   TL_EPARSE       malformed note, key string or checkpoint
 *   TL_ELIMIT       note, name or signature past the limits below
 *   TL_ENOTFOUND    no signature from any key we were given (unknown key)
 *   TL_ECORRUPT     a signature from a key we were given does not verify
 *   TL_EUNSUPPORTED a key of a signature type other than Ed25519 (0x01)
 *   TL_EINVALID     well-formed but wrong: a key ID that does not match its
 *                   key, a private key file others can read
 * Library code: nothing here logs.
 */
#ifndef TL_NOTE_H
#define TL_NOTE_H

#include "tl_buf.h"
#include "tl_error.h"

#include <stddef.h>
#include <stdint.h>

#define TL_NOTE_NAME_MAX 255    /* bytes in a key name or a checkpoint origin */
#define TL_NOTE_MAX 65536       /* bytes in a whole signed note */
#define TL_NOTE_SIGS_MAX 32     /* signature lines in a note (the spec asks for at least 16) */
#define TL_NOTE_SIG_MAX 8192    /* decoded bytes in one signature (post-quantum ones reach ~5 kB) */
#define TL_NOTE_KEY_STR_MAX 400 /* a formatted key string, with its NUL */

/* Someone whose signatures we check: plain data. */
typedef struct tl_note_verifier {
	char name[TL_NOTE_NAME_MAX + 1];
	uint32_t key_id;
	uint8_t pub[32];
} tl_note_verifier;

/* Someone who signs: holds the secret key. Wipe with tl_note_signer_wipe() when done. */
typedef struct tl_note_signer {
	char name[TL_NOTE_NAME_MAX + 1];
	uint32_t key_id;
	uint8_t sk[64]; /* libsodium layout: seed || public key */
} tl_note_signer;

/* True when name is a valid key name: non-empty, valid UTF-8, at most
 * TL_NOTE_NAME_MAX bytes, no Unicode space and no '+'. Borrows name. */
int tl_note_name_valid(const char *name, size_t len);

/* The Ed25519 key ID of (name, pub). Borrows both. */
uint32_t tl_note_key_id(const char *name, size_t len, const uint8_t pub[32]);

/*
 * Makes a new random Ed25519 key named name (NUL-terminated, borrowed).
 * Returns 0, TL_EPARSE for an invalid name, or -ENOSYS if libsodium cannot
 * start (every function here that needs libsodium may return that).
 */
int tl_note_keygen(const char *name, tl_note_signer *out, tl_errmsg *err);

/* Zeroes the secret key. Accepts NULL. */
void tl_note_signer_wipe(tl_note_signer *s);

/* The verifier (public half) of s. */
void tl_note_signer_verifier(const tl_note_signer *s, tl_note_verifier *out);

/*
 * Formats the key string ("PRIVATE+KEY+..." for a signer) into out, cap
 * bytes with the NUL (TL_NOTE_KEY_STR_MAX always suffices). Returns 0 or
 * TL_ELIMIT.
 */
int tl_note_verifier_format(const tl_note_verifier *v, char *out, size_t cap);
int tl_note_signer_format(const tl_note_signer *s, char *out, size_t cap);

/*
 * Parses a key string of len bytes (borrows s; no trailing newline). The
 * key ID in the string must match the one computed from name and key.
 * Returns 0, TL_EPARSE, TL_ELIMIT, TL_EUNSUPPORTED or TL_EINVALID.
 */
int tl_note_verifier_parse(const char *s, size_t len, tl_note_verifier *out, tl_errmsg *err);
int tl_note_signer_parse(const char *s, size_t len, tl_note_signer *out, tl_errmsg *err);

/*
 * Writes s's signer key string and a newline to a new file at path, created
 * with mode 0600 (never replacing an existing file: -EEXIST) and synced.
 * Returns 0 or a negative errno; on failure no partial file is left.
 */
int tl_note_key_write(const char *path, const tl_note_signer *s, tl_errmsg *err);

/*
 * Reads a signer key file written by tl_note_key_write (one optional
 * trailing newline). Returns 0, a negative errno, TL_EINVALID when group or
 * others may read or write the file, or a tl_note_signer_parse error.
 */
int tl_note_key_read(const char *path, tl_note_signer *out, tl_errmsg *err);

/*
 * Signs text (len bytes, borrowed) with s and appends the whole signed note
 * (text, blank line, one signature line) to out. The text must end in a
 * newline, be valid UTF-8 and hold no control character but newline.
 * Returns 0, TL_EPARSE for such text, TL_ELIMIT, or a tl_buf error
 * (out keeps what it had on failure).
 */
int tl_note_sign(const char *text, size_t len, const tl_note_signer *s, tl_buf *out, tl_errmsg *err);

/* What tl_note_open found. */
typedef struct tl_note_opened {
	const char *text;           /* the note text with its final newline: borrows msg, valid while msg is */
	size_t text_len;            /* its length */
	const tl_note_verifier *by; /* first key given whose signature verified: borrows keys */
	unsigned verified;          /* signatures from keys given, all verified */
	unsigned unknown;           /* signatures from other keys, ignored as the spec requires */
} tl_note_opened;

/*
 * Parses the signed note msg (len bytes, borrowed; no NUL needed) and checks
 * it against keys[0..nkeys). A signature line counts for a key when both
 * its name and key ID match; others are ignored. Succeeds when at least one
 * signature from a key given verifies and none fails. Returns 0 (out
 * filled), TL_EPARSE (malformed note), TL_ELIMIT, TL_ENOTFOUND (no signature
 * from a key given), TL_ECORRUPT (a bad signature; err names the key) or
 * TL_EINVALID (a signature matches two of the keys given: ambiguous).
 */
int tl_note_open(const char *msg, size_t len, const tl_note_verifier *keys, size_t nkeys, tl_note_opened *out,
                 tl_errmsg *err);

/* A tlog-checkpoint body. */
typedef struct tl_checkpoint {
	char origin[TL_NOTE_NAME_MAX + 1];
	uint64_t size;
	uint8_t root[32];
	const char *ext; /* extension lines, each ending in a newline, or NULL: borrows the text parsed */
	size_t ext_len;
} tl_checkpoint;

/*
 * Appends the checkpoint body "<origin>\n<size>\n<base64 root>\n" to out
 * (no extension lines: the spec advises against them). origin is
 * NUL-terminated and borrowed; it must be non-empty, at most
 * TL_NOTE_NAME_MAX bytes of valid UTF-8 without control characters.
 * Returns 0, TL_EPARSE for a bad origin, or a tl_buf error.
 */
int tl_checkpoint_format(const char *origin, uint64_t size, const uint8_t root[32], tl_buf *out, tl_errmsg *err);

/*
 * Parses a checkpoint body (a note's text, len bytes, borrowed): origin,
 * decimal tree size without leading zeroes, base64 of a 32-byte root, then
 * optional non-empty extension lines. Returns 0, TL_EPARSE or TL_ELIMIT.
 */
int tl_checkpoint_parse(const char *text, size_t len, tl_checkpoint *out, tl_errmsg *err);

#endif
