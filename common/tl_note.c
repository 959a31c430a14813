/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C2SP signed notes with Ed25519 (libsodium) and tlog checkpoints. The
 * parser reads untrusted bytes (a dump handed to an auditor), so it checks
 * every length before it reads, caps everything, and decodes base64 only
 * through libsodium's strict decoder (padding required, no stray bits).
 */
#include "tl_note.h"

#include "tl_be.h"
#include "tl_utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIG_ED25519 0x01
#define EM_DASH "\xe2\x80\x94"
#define SIG_PREFIX EM_DASH " "
#define SIG_PREFIX_LEN 4
#define SIGNER_PREFIX "PRIVATE+KEY+"
#define SIGNER_PREFIX_LEN 12
#define KEY_B64_LEN 44 /* base64 of 33 bytes */

static int sodium_ready(tl_errmsg *err)
{
	if (sodium_init() < 0)
		return tl_errf(err, -ENOSYS, "libsodium could not be initialised");
	return 0;
}

/* Decodes one code point of valid UTF-8 at s (len > 0); *n gets its length. */
static uint32_t utf8_next(const unsigned char *s, size_t len, size_t *n)
{
	if (s[0] < 0x80 || len < 2) {
		*n = 1;
		return s[0];
	}
	if (s[0] < 0xe0) {
		*n = 2;
		return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
	}
	if (s[0] < 0xf0 || len < 4) {
		*n = 3;
		return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
	}
	*n = 4;
	return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
	       (s[3] & 0x3f);
}

/* Unicode White_Space. */
static int is_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

int tl_note_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > TL_NOTE_NAME_MAX || !tl_utf8_valid(name, len))
		return 0;
	const unsigned char *s = (const unsigned char *)name;
	for (size_t i = 0; i < len;) {
		size_t n;
		uint32_t c = utf8_next(s + i, len - i, &n);
		if (c < 0x20 || c == '+' || is_space(c))
			return 0;
		i += n;
	}
	return 1;
}

/* Note text rules: valid UTF-8, no control character but newline. */
static int text_chars_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 && s[i] != '\n')
			return 0;
	}
	return tl_utf8_valid(s, len);
}

uint32_t tl_note_key_id(const char *name, size_t len, const uint8_t pub[32])
{
	static const uint8_t sep[2] = {'\n', SIG_ED25519};
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)name, len);
	crypto_hash_sha256_update(&st, sep, sizeof(sep));
	crypto_hash_sha256_update(&st, pub, 32);
	crypto_hash_sha256_final(&st, h);
	return tl_get_be32(h);
}

/*
 * Standard base64 with padding, strictly: libsodium 1.0.18 decodes some
 * bytes above 0x7f as if they were base64 characters, so the alphabet is
 * checked here first. Returns 0 when all of s[0..len) decoded into
 * out[0..*out_len) (at most cap bytes).
 */
static int b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
		      c == '/' || c == '='))
			return -1;
	}
	const char *end = NULL;
	if (len == 0 || sodium_base642bin(out, cap, s, len, NULL, out_len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != s + len)
		return -1;
	return 0;
}

/* ---- keys ---- */

int tl_note_keygen(const char *name, tl_note_signer *out, tl_errmsg *err)
{
	int rc;
	size_t len = strlen(name);
	if (!tl_note_name_valid(name, len))
		return tl_errf(err, TL_EPARSE,
		               "invalid key name \"%.64s\": it must be non-empty, at most %d bytes, "
		               "without spaces or '+'",
		               name, TL_NOTE_NAME_MAX);
	if ((rc = sodium_ready(err)) != 0)
		return rc;
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	crypto_sign_keypair(pk, out->sk);
	memcpy(out->name, name, len + 1);
	out->key_id = tl_note_key_id(name, len, pk);
	return 0;
}

void tl_note_signer_wipe(tl_note_signer *s)
{
	if (s != NULL)
		sodium_memzero(s, sizeof(*s));
}

void tl_note_signer_verifier(const tl_note_signer *s, tl_note_verifier *out)
{
	memcpy(out->name, s->name, sizeof(out->name));
	out->key_id = s->key_id;
	crypto_sign_ed25519_sk_to_pk(out->pub, s->sk);
}

/* "<prefix><name>+<id>+<base64(0x01 || key32)>" */
static int key_format(const char *prefix, const char *name, uint32_t id, const uint8_t key[32], char *out, size_t cap)
{
	uint8_t raw[33];
	char b64[KEY_B64_LEN + 1];
	raw[0] = SIG_ED25519;
	memcpy(raw + 1, key, 32);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(raw, sizeof(raw));
	size_t need = strlen(prefix) + strlen(name) + 1 + 8 + 1 + KEY_B64_LEN + 1;
	if (cap < need) {
		sodium_memzero(b64, sizeof(b64));
		return TL_ELIMIT;
	}
	snprintf(out, cap, "%s%s+%08" PRIx32 "+%s", prefix, name, id, b64);
	sodium_memzero(b64, sizeof(b64));
	return 0;
}

int tl_note_verifier_format(const tl_note_verifier *v, char *out, size_t cap)
{
	return key_format("", v->name, v->key_id, v->pub, out, cap);
}

int tl_note_signer_format(const tl_note_signer *s, char *out, size_t cap)
{
	return key_format(SIGNER_PREFIX, s->name, s->key_id, s->sk, out, cap); /* sk starts with the seed */
}

/*
 * Splits "<name>+<8 hex>+<base64 of 33 bytes>" and decodes it. The name
 * cannot hold '+', so the first '+' ends it; the base64 may hold '+'.
 */
static int key_parse(const char *what, const char *s, size_t len, char name[TL_NOTE_NAME_MAX + 1], uint32_t *id,
                     uint8_t key[32], tl_errmsg *err)
{
	const char *plus = memchr(s, '+', len);
	if (plus == NULL)
		return tl_errf(err, TL_EPARSE, "%s key: no '+' after the key name", what);
	size_t name_len = (size_t)(plus - s);
	if (name_len > TL_NOTE_NAME_MAX)
		return tl_errf(err, TL_ELIMIT, "%s key: name longer than %d bytes", what, TL_NOTE_NAME_MAX);
	if (!tl_note_name_valid(s, name_len))
		return tl_errf(err, TL_EPARSE, "%s key: invalid key name", what);
	const char *p = plus + 1, *end = s + len;
	if (end - p < 9 || p[8] != '+')
		return tl_errf(err, TL_EPARSE, "%s key: the key ID is not 8 hex digits followed by '+'", what);
	uint32_t v = 0;
	for (int i = 0; i < 8; i++) {
		char c = p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return tl_errf(err, TL_EPARSE, "%s key: the key ID is not 8 hex digits", what);
		v = v << 4 | d;
	}
	p += 9;
	uint8_t raw[33];
	size_t raw_len = 0;
	if ((size_t)(end - p) != KEY_B64_LEN || b64_decode(p, (size_t)(end - p), raw, sizeof(raw), &raw_len) != 0 ||
	    raw_len != sizeof(raw)) {
		sodium_memzero(raw, sizeof(raw));
		return tl_errf(err, TL_EPARSE, "%s key: the key is not base64 of a type byte and 32 bytes", what);
	}
	if (raw[0] != SIG_ED25519) {
		int t = raw[0];
		sodium_memzero(raw, sizeof(raw));
		return tl_errf(err, TL_EUNSUPPORTED, "%s key: signature type 0x%02x is not Ed25519 (0x01)", what, t);
	}
	memcpy(name, s, name_len);
	name[name_len] = '\0';
	memcpy(key, raw + 1, 32);
	sodium_memzero(raw, sizeof(raw));
	*id = v;
	return 0;
}

int tl_note_verifier_parse(const char *s, size_t len, tl_note_verifier *out, tl_errmsg *err)
{
	tl_note_verifier v;
	int rc;
	if ((rc = sodium_ready(err)) != 0)
		return rc;
	if ((rc = key_parse("verifier", s, len, v.name, &v.key_id, v.pub, err)) != 0)
		return rc;
	uint32_t want = tl_note_key_id(v.name, strlen(v.name), v.pub);
	if (want != v.key_id)
		return tl_errf(err, TL_EINVALID,
		               "verifier key \"%.64s\": key ID %08" PRIx32 " does not match the key (%08" PRIx32 ")",
		               v.name, v.key_id, want);
	*out = v;
	return 0;
}

int tl_note_signer_parse(const char *s, size_t len, tl_note_signer *out, tl_errmsg *err)
{
	tl_note_signer k;
	uint8_t seed[32], pk[crypto_sign_PUBLICKEYBYTES];
	int rc;
	if ((rc = sodium_ready(err)) != 0)
		return rc;
	if (len < SIGNER_PREFIX_LEN || memcmp(s, SIGNER_PREFIX, SIGNER_PREFIX_LEN) != 0)
		return tl_errf(err, TL_EPARSE, "signer key: does not start with \"" SIGNER_PREFIX "\"");
	rc = key_parse("signer", s + SIGNER_PREFIX_LEN, len - SIGNER_PREFIX_LEN, k.name, &k.key_id, seed, err);
	if (rc == 0) {
		crypto_sign_seed_keypair(pk, k.sk, seed);
		uint32_t want = tl_note_key_id(k.name, strlen(k.name), pk);
		if (want != k.key_id)
			rc = tl_errf(err, TL_EINVALID,
			             "signer key \"%.64s\": key ID %08" PRIx32 " does not match the key", k.name,
			             k.key_id);
		else
			*out = k;
	}
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(&k, sizeof(k));
	return rc;
}

int tl_note_key_write(const char *path, const tl_note_signer *s, tl_errmsg *err)
{
	char line[TL_NOTE_KEY_STR_MAX + 1];
	int rc = tl_note_signer_format(s, line, sizeof(line) - 1);
	if (rc != 0)
		return tl_errf(err, rc, "signer key too long to format");
	size_t len = strlen(line);
	line[len++] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		sodium_memzero(line, sizeof(line));
		return tl_errf(err, rc, "cannot create key file %s: %s", path, strerror(-rc));
	}
	/* The umask may only remove bits, but be explicit about the mode anyway. */
	rc = fchmod(fd, 0600) != 0 ? -errno : 0;
	for (size_t off = 0; rc == 0 && off < len;) {
		ssize_t n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = n < 0 ? -errno : -EIO;
		else
			off += (size_t)n;
	}
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	sodium_memzero(line, sizeof(line));
	if (rc != 0) {
		unlink(path);
		return tl_errf(err, rc, "cannot write key file %s: %s", path, strerror(-rc));
	}
	return 0;
}

int tl_note_key_read(const char *path, tl_note_signer *out, tl_errmsg *err)
{
	char buf[TL_NOTE_KEY_STR_MAX + 2];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		return tl_errf(err, rc, "cannot open key file %s: %s", path, strerror(-rc));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = -errno;
		close(fd);
		return tl_errf(err, rc, "cannot stat key file %s: %s", path, strerror(-rc));
	}
	if (st.st_mode & 077) {
		close(fd);
		return tl_errf(err, TL_EINVALID,
		               "key file %s has mode %04o: a private key must be readable by its owner only (0600)",
		               path, (unsigned)(st.st_mode & 07777));
	}
	size_t len = 0;
	int rc = 0;
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (rc == 0 && len == sizeof(buf))
		rc = tl_errf(err, TL_ELIMIT, "key file %s is longer than a key", path);
	else if (rc != 0)
		tl_errf(err, rc, "cannot read key file %s: %s", path, strerror(-rc));
	if (rc == 0) {
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		rc = tl_note_signer_parse(buf, len, out, err);
	}
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

/* ---- notes ---- */

static int text_check(const char *text, size_t len, tl_errmsg *err)
{
	if (len == 0 || text[len - 1] != '\n')
		return tl_errf(err, TL_EPARSE, "malformed note: the text does not end in a newline");
	if (!text_chars_valid(text, len))
		return tl_errf(err, TL_EPARSE, "malformed note: the text is not UTF-8 without control characters");
	return 0;
}

int tl_note_sign(const char *text, size_t len, const tl_note_signer *s, tl_buf *out, tl_errmsg *err)
{
	int rc;
	if ((rc = sodium_ready(err)) != 0)
		return rc;
	if ((rc = text_check(text, len, err)) != 0)
		return rc;
	size_t name_len = strlen(s->name);
	/* A whole note must fit TL_NOTE_MAX so that tl_note_open takes it back. */
	size_t sig_b64 = sodium_base64_ENCODED_LEN(4 + crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL);
	if (len > TL_NOTE_MAX || TL_NOTE_MAX - len < 1 + SIG_PREFIX_LEN + name_len + 1 + sig_b64)
		return tl_errf(err, TL_ELIMIT, "note text too long: a signed note is at most %d bytes", TL_NOTE_MAX);
	uint8_t sig[4 + crypto_sign_BYTES];
	char b64[sodium_base64_ENCODED_LEN(4 + crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)];
	tl_put_be32(sig, s->key_id);
	crypto_sign_detached(sig + 4, NULL, (const uint8_t *)text, len, s->sk);
	sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
	size_t old = out->len;
	if ((rc = tl_buf_append(out, text, len)) != 0 ||
	    (rc = tl_buf_append(out, "\n" SIG_PREFIX, 1 + SIG_PREFIX_LEN)) != 0 ||
	    (rc = tl_buf_append(out, s->name, name_len)) != 0 || (rc = tl_buf_append(out, " ", 1)) != 0 ||
	    (rc = tl_buf_append(out, b64, strlen(b64))) != 0 || (rc = tl_buf_append(out, "\n", 1)) != 0) {
		out->len = old;
		return tl_errf(err, rc, "cannot grow the output buffer");
	}
	return 0;
}

/* Finds the last "\n\n" in msg; returns the offset of its first newline, or -1. */
static ptrdiff_t last_blank_line(const char *msg, size_t len)
{
	for (size_t i = len - 1; i > 0; i--) {
		if (msg[i] == '\n' && msg[i - 1] == '\n')
			return (ptrdiff_t)(i - 1);
	}
	return -1;
}

int tl_note_open(const char *msg, size_t len, const tl_note_verifier *keys, size_t nkeys, tl_note_opened *out,
                 tl_errmsg *err)
{
	int rc;
	if ((rc = sodium_ready(err)) != 0)
		return rc;
	if (len > TL_NOTE_MAX)
		return tl_errf(err, TL_ELIMIT, "note of %zu bytes is longer than the limit of %d", len, TL_NOTE_MAX);
	if (len < 2 || msg[len - 1] != '\n')
		return tl_errf(err, TL_EPARSE, "malformed note: it does not end in a newline");
	if (!text_chars_valid(msg, len))
		return tl_errf(err, TL_EPARSE, "malformed note: not UTF-8 without control characters");
	ptrdiff_t blank = last_blank_line(msg, len);
	if (blank < 0)
		return tl_errf(err, TL_EPARSE, "malformed note: no blank line before the signatures");
	size_t text_len = (size_t)blank + 1;
	const char *p = msg + text_len + 1, *end = msg + len;
	if (p == end)
		return tl_errf(err, TL_EPARSE, "malformed note: no signature lines");

	tl_note_opened res = {.text = msg, .text_len = text_len};
	const tl_note_verifier *bad = NULL;
	unsigned lines = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		/* The text ends in a newline, so every line does. */
		if (++lines > TL_NOTE_SIGS_MAX)
			return tl_errf(err, TL_ELIMIT, "note has more than %d signatures", TL_NOTE_SIGS_MAX);
		size_t line_no = lines;
		if ((size_t)(nl - p) < SIG_PREFIX_LEN || memcmp(p, SIG_PREFIX, SIG_PREFIX_LEN) != 0)
			return tl_errf(err, TL_EPARSE,
			               "malformed note: signature line %zu does not start with an em dash and a space",
			               line_no);
		const char *name = p + SIG_PREFIX_LEN;
		const char *sp = memchr(name, ' ', (size_t)(nl - name));
		if (sp == NULL)
			return tl_errf(err, TL_EPARSE,
			               "malformed note: signature line %zu has no space after the key name", line_no);
		size_t name_len = (size_t)(sp - name);
		if (!tl_note_name_valid(name, name_len))
			return tl_errf(err, TL_EPARSE, "malformed note: signature line %zu has an invalid key name",
			               line_no);
		const char *b64 = sp + 1;
		size_t b64_len = (size_t)(nl - b64);
		if (b64_len > sodium_base64_ENCODED_LEN(TL_NOTE_SIG_MAX, sodium_base64_VARIANT_ORIGINAL))
			return tl_errf(err, TL_ELIMIT, "signature line %zu is longer than %d bytes", line_no,
			               TL_NOTE_SIG_MAX);
		uint8_t sig[TL_NOTE_SIG_MAX];
		size_t sig_len = 0;
		if (b64_decode(b64, b64_len, sig, sizeof(sig), &sig_len) != 0 || sig_len < 5)
			return tl_errf(err, TL_EPARSE,
			               "malformed note: signature line %zu is not base64 of a key ID and a signature",
			               line_no);
		uint32_t id = tl_get_be32(sig);
		const tl_note_verifier *k = NULL;
		for (size_t i = 0; i < nkeys; i++) {
			if (keys[i].key_id != id || strlen(keys[i].name) != name_len ||
			    memcmp(keys[i].name, name, name_len) != 0)
				continue;
			if (k != NULL)
				return tl_errf(err, TL_EINVALID, "ambiguous key %s+%08" PRIx32 ": given twice", k->name,
				               id);
			k = &keys[i];
		}
		if (k == NULL) {
			res.unknown++;
		} else if (sig_len != 4 + crypto_sign_BYTES ||
		           crypto_sign_verify_detached(sig + 4, (const uint8_t *)msg, text_len, k->pub) != 0) {
			if (bad == NULL)
				bad = k;
		} else {
			res.verified++;
			if (res.by == NULL)
				res.by = k;
		}
		p = nl + 1;
	}
	/* The whole note is parsed first, so a malformed line is reported as such even after a bad signature. */
	if (bad != NULL)
		return tl_errf(err, TL_ECORRUPT,
		               "bad signature from key %s+%08" PRIx32 ": the note was altered or signed by another key",
		               bad->name, bad->key_id);
	if (res.verified == 0)
		return tl_errf(err, TL_ENOTFOUND, "no signature from a known key (%u signature%s from unknown keys)",
		               res.unknown, res.unknown == 1 ? "" : "s");
	*out = res;
	return 0;
}

/* ---- checkpoints ---- */

int tl_checkpoint_format(const char *origin, uint64_t size, const uint8_t root[32], tl_buf *out, tl_errmsg *err)
{
	size_t olen = strlen(origin);
	if (olen == 0 || olen > TL_NOTE_NAME_MAX || memchr(origin, '\n', olen) != NULL ||
	    !text_chars_valid(origin, olen))
		return tl_errf(err, TL_EPARSE,
		               "invalid checkpoint origin: it must be one non-empty line of at most %d bytes",
		               TL_NOTE_NAME_MAX);
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b64, sizeof(b64), root, 32, sodium_base64_VARIANT_ORIGINAL);
	size_t old = out->len;
	int rc = tl_buf_printf(out, "%s\n%" PRIu64 "\n%s\n", origin, size, b64);
	if (rc != 0) {
		out->len = old;
		return tl_errf(err, rc, "cannot grow the output buffer");
	}
	return 0;
}

/* The next line of [*p, end) without its newline; 0 when there is none. */
static int next_line(const char **p, const char *end, const char **line, size_t *len)
{
	if (*p >= end)
		return 0;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	if (nl == NULL)
		return 0;
	*line = *p;
	*len = (size_t)(nl - *p);
	*p = nl + 1;
	return 1;
}

int tl_checkpoint_parse(const char *text, size_t len, tl_checkpoint *out, tl_errmsg *err)
{
	if (len > TL_NOTE_MAX)
		return tl_errf(err, TL_ELIMIT, "checkpoint longer than %d bytes", TL_NOTE_MAX);
	if (len == 0 || text[len - 1] != '\n')
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: it does not end in a newline");
	if (!text_chars_valid(text, len))
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: not UTF-8 without control characters");
	const char *p = text, *end = text + len, *line;
	size_t n;
	tl_checkpoint cp = {0};

	if (!next_line(&p, end, &line, &n) || n == 0)
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: empty origin line");
	if (n > TL_NOTE_NAME_MAX)
		return tl_errf(err, TL_ELIMIT, "checkpoint origin longer than %d bytes", TL_NOTE_NAME_MAX);
	memcpy(cp.origin, line, n);
	cp.origin[n] = '\0';

	if (!next_line(&p, end, &line, &n) || n == 0)
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: no tree size line");
	if (n > 1 && line[0] == '0')
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: the tree size has a leading zero");
	for (size_t i = 0; i < n; i++) {
		if (line[i] < '0' || line[i] > '9')
			return tl_errf(err, TL_EPARSE, "malformed checkpoint: the tree size is not a decimal number");
		unsigned d = (unsigned)(line[i] - '0');
		if (cp.size > (UINT64_MAX - d) / 10)
			return tl_errf(err, TL_EPARSE, "malformed checkpoint: the tree size does not fit 64 bits");
		cp.size = cp.size * 10 + d;
	}

	if (!next_line(&p, end, &line, &n) || n == 0)
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: no root hash line");
	size_t root_len = 0;
	if (b64_decode(line, n, cp.root, sizeof(cp.root), &root_len) != 0 || root_len != sizeof(cp.root))
		return tl_errf(err, TL_EPARSE, "malformed checkpoint: the root hash is not base64 of 32 bytes");

	if (p < end) {
		cp.ext = p;
		cp.ext_len = (size_t)(end - p);
		while (next_line(&p, end, &line, &n)) {
			if (n == 0)
				return tl_errf(err, TL_EPARSE, "malformed checkpoint: empty extension line");
		}
	}
	*out = cp;
	return 0;
}
