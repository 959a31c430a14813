/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tl_note: signed notes, keys and checkpoints. Published vectors:
 *  - golang.org/x/mod/sumdb/note (note.go package docs, example_test.go,
 *    note_test.go): the PeterNeumann signer and verifier keys and signed
 *    note, the EnochRoot key (its example derives it from an all-zero seed)
 *    and its signature of the same text, and the malformed notes of TestOpen;
 *  - c2sp.org/signed-note: the example note (quasimodo.example/salvatore),
 *    whose text holds a blank line of its own;
 *  - c2sp.org/tlog-checkpoint: the example checkpoint.
 * Ed25519 is deterministic, so signing the published text with the
 * published key must give the published note byte for byte.
 */
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_note.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PETER_SKEY "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
#define PETER_VKEY "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#define ENOCH_VKEY "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
/* Go's example signs as EnochRoot with a key made from a reader of zeroes: seed = 32 zero bytes. */
#define ENOCH_SKEY "PRIVATE+KEY+EnochRoot+af0cfe78+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define GO_TEXT                                                                                                        \
	"If you think cryptography is the answer to your problem,\n"                                                   \
	"then you don't know what your problem is.\n"
#define PETER_SIG                                                                                                      \
	"\xe2\x80\x94 PeterNeumann "                                                                                   \
	"x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
#define ENOCH_SIG                                                                                                      \
	"\xe2\x80\x94 EnochRoot "                                                                                      \
	"rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

#define SALVATORE_NOTE                                                                                                 \
	"Ognuno sta solo sul cuor della terra\n"                                                                       \
	"trafitto da un raggio di sole:\n"                                                                             \
	"\n"                                                                                                           \
	"ed \xc3\xa8 subito sera.\n"                                                                                   \
	"\n"                                                                                                           \
	"\xe2\x80\x94 quasimodo.example/salvatore "                                                                    \
	"NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"

#define SOFA_CHECKPOINT                                                                                                \
	"example.com/behind-the-sofa\n"                                                                                \
	"20852163\n"                                                                                                   \
	"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"                                                               \
	"\n"                                                                                                           \
	"\xe2\x80\x94 example.com/behind-the-sofa "                                                                    \
	"Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"

static tl_note_verifier vkey(const char *s)
{
	tl_note_verifier v;
	tl_errmsg e = {{0}};
	int rc = tl_note_verifier_parse(s, strlen(s), &v, &e);
	cr_assert_eq(rc, 0, "verifier %s: %s", s, e.msg);
	return v;
}

static tl_note_signer skey(const char *s)
{
	tl_note_signer k;
	tl_errmsg e = {{0}};
	int rc = tl_note_signer_parse(s, strlen(s), &k, &e);
	cr_assert_eq(rc, 0, "signer: %s", e.msg);
	return k;
}

static int open_str(const char *msg, const tl_note_verifier *keys, size_t n, tl_note_opened *out, tl_errmsg *e)
{
	tl_note_opened dummy;
	return tl_note_open(msg, strlen(msg), keys, n, out ? out : &dummy, e);
}

/* ---- published vectors ---- */

Test(note_vectors, peterneumann_keys_and_signature_reproduce)
{
	tl_note_signer s = skey(PETER_SKEY);
	cr_assert_str_eq(s.name, "PeterNeumann");
	cr_assert_eq(s.key_id, 0xc74f20a3u);
	char str[TL_NOTE_KEY_STR_MAX];
	cr_assert_eq(tl_note_signer_format(&s, str, sizeof(str)), 0);
	cr_assert_str_eq(str, PETER_SKEY);
	tl_note_verifier v;
	tl_note_signer_verifier(&s, &v);
	cr_assert_eq(tl_note_verifier_format(&v, str, sizeof(str)), 0);
	cr_assert_str_eq(str, PETER_VKEY);

	tl_buf out;
	tl_buf_init(&out, 0);
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_sign(GO_TEXT, strlen(GO_TEXT), &s, &out, &e), 0, "%s", e.msg);
	const char *want = GO_TEXT "\n" PETER_SIG;
	cr_assert_eq(out.len, strlen(want));
	cr_assert(memcmp(out.data, want, out.len) == 0, "signed note differs from the published one:\n%.*s",
	          (int)out.len, out.data);
	tl_buf_fini(&out);
	tl_note_signer_wipe(&s);
	cr_assert_eq(s.key_id, 0);
}

Test(note_vectors, peterneumann_note_opens)
{
	tl_note_verifier v = vkey(PETER_VKEY);
	cr_assert_eq(v.key_id, 0xc74f20a3u);
	tl_note_opened o;
	tl_errmsg e = {{0}};
	const char *msg = GO_TEXT "\n" PETER_SIG;
	cr_assert_eq(open_str(msg, &v, 1, &o, &e), 0, "%s", e.msg);
	cr_assert_eq(o.text, msg);
	cr_assert_eq(o.text_len, strlen(GO_TEXT));
	cr_assert_eq(o.by, &v);
	cr_assert_eq(o.verified, 1);
	cr_assert_eq(o.unknown, 0);
}

Test(note_vectors, enochroot_from_a_zero_seed)
{
	tl_note_signer s = skey(ENOCH_SKEY);
	tl_note_verifier v;
	tl_note_signer_verifier(&s, &v);
	char str[TL_NOTE_KEY_STR_MAX];
	cr_assert_eq(tl_note_verifier_format(&v, str, sizeof(str)), 0);
	cr_assert_str_eq(str, ENOCH_VKEY);
	tl_buf out;
	tl_buf_init(&out, 0);
	cr_assert_eq(tl_note_sign(GO_TEXT, strlen(GO_TEXT), &s, &out, NULL), 0);
	const char *want = GO_TEXT "\n" ENOCH_SIG;
	cr_assert(out.len == strlen(want) && memcmp(out.data, want, out.len) == 0);
	tl_buf_fini(&out);
	tl_note_signer_wipe(&s);
}

Test(note_vectors, two_signatures_known_and_unknown)
{
	tl_note_verifier keys[2] = {vkey(PETER_VKEY), vkey(ENOCH_VKEY)};
	const char *msg = GO_TEXT "\n" PETER_SIG ENOCH_SIG;
	tl_note_opened o;
	tl_errmsg e = {{0}};
	cr_assert_eq(open_str(msg, keys, 1, &o, &e), 0, "%s", e.msg);
	cr_assert_eq(o.verified, 1);
	cr_assert_eq(o.unknown, 1);
	cr_assert_eq(open_str(msg, keys, 2, &o, &e), 0, "%s", e.msg);
	cr_assert_eq(o.verified, 2);
	cr_assert_eq(o.unknown, 0);
	cr_assert_eq(open_str(msg, keys + 1, 1, &o, &e), 0);
	cr_assert_eq(o.by, &keys[1]);
	cr_assert_eq(open_str(msg, NULL, 0, &o, &e), TL_ENOTFOUND);
	cr_assert(strstr(e.msg, "2 signatures from unknown keys") != NULL, "%s", e.msg);
}

Test(note_vectors, go_malformed_notes)
{
	tl_note_verifier v = vkey(PETER_VKEY);
	const char *peter = PETER_SIG;
	char buf[1024];
	const char *bad[] = {
	        GO_TEXT,
	        GO_TEXT "\n",
	        NULL, /* the signature without its final newline, below */
	        "\x01" GO_TEXT "\n" PETER_SIG,
	        "\xff" GO_TEXT "\n" PETER_SIG,
	        GO_TEXT "\n\xe2\x80\x94 Bad Name "
	                "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
	        GO_TEXT "\n" PETER_SIG "Unexpected line.\n",
	};
	snprintf(buf, sizeof(buf), "%s\n%.*s", GO_TEXT, (int)strlen(peter) - 1, peter);
	bad[2] = buf;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tl_errmsg e = {{0}};
		int rc = open_str(bad[i], &v, 1, NULL, &e);
		cr_assert_eq(rc, TL_EPARSE, "bad message %zu: %d (%s)", i, rc, e.msg);
		cr_assert(strstr(e.msg, "malformed note") != NULL, "%s", e.msg);
	}
}

Test(note_vectors, go_invalid_signature_is_named)
{
	/* note_test.go: "ABCD" spliced into the base64 at offset 60 of the line. */
	tl_note_verifier v = vkey(PETER_VKEY);
	const char *peter = PETER_SIG;
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s\n%.60sABCD%s", GO_TEXT, peter, peter + 60);
	tl_errmsg e = {{0}};
	cr_assert_eq(open_str(msg, &v, 1, NULL, &e), TL_ECORRUPT);
	cr_assert(strstr(e.msg, "bad signature from key PeterNeumann+c74f20a3") != NULL, "%s", e.msg);
}

Test(note_vectors, go_verifier_key_manglings_are_refused)
{
	/* note_test.go TestNewVerifier: every proper substring and every byte + 1. */
	const char *k = PETER_VKEY;
	size_t n = strlen(k);
	tl_note_verifier v;
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i + 1; j <= n; j++) {
			if (i == 0 && j == n)
				continue;
			cr_assert_neq(tl_note_verifier_parse(k + i, j - i, &v, NULL), 0, "accepted %.*s", (int)(j - i),
			              k + i);
		}
	}
	char m[128];
	for (size_t i = 0; i < n; i++) {
		memcpy(m, k, n);
		m[i]++;
		cr_assert_neq(tl_note_verifier_parse(m, n, &v, NULL), 0, "accepted %.*s", (int)n, m);
	}
}

Test(note_vectors, c2sp_examples_parse_and_need_their_key)
{
	/* Neither spec publishes the verifier key of its example: both must parse and be refused as unknown. */
	tl_note_verifier peter = vkey(PETER_VKEY);
	tl_errmsg e = {{0}};
	cr_assert_eq(open_str(SALVATORE_NOTE, &peter, 1, NULL, &e), TL_ENOTFOUND, "%s", e.msg);
	cr_assert(strstr(e.msg, "1 signature from unknown keys") != NULL, "%s", e.msg);
	/* A key with the right name but another key ID is still someone else. */
	tl_note_signer s;
	cr_assert_eq(tl_note_keygen("quasimodo.example/salvatore", &s, &e), 0);
	tl_note_verifier same_name;
	tl_note_signer_verifier(&s, &same_name);
	cr_assert_eq(open_str(SALVATORE_NOTE, &same_name, 1, NULL, &e), TL_ENOTFOUND);
	/* Same name and ID but another key: the signature is checked and fails. */
	tl_note_verifier sig_id = same_name;
	sig_id.key_id = 0x367ba04bu; /* the first four bytes of the example's base64 "NnugSz..." */
	cr_assert_eq(open_str(SALVATORE_NOTE, &sig_id, 1, NULL, &e), TL_ECORRUPT, "%s", e.msg);
	tl_note_signer_wipe(&s);

	cr_assert_eq(open_str(SOFA_CHECKPOINT, NULL, 0, NULL, &e), TL_ENOTFOUND);
	const char *body = SOFA_CHECKPOINT;
	size_t body_len = (size_t)(strstr(body, "\n\n") - body) + 1;
	tl_checkpoint cp;
	cr_assert_eq(tl_checkpoint_parse(body, body_len, &cp, &e), 0, "%s", e.msg);
	cr_assert_str_eq(cp.origin, "example.com/behind-the-sofa");
	cr_assert_eq(cp.size, 20852163u);
	cr_assert_eq(cp.root[0], 0x0a); /* "CsUY..." */
	cr_assert_eq(cp.ext, NULL);
	tl_buf b;
	tl_buf_init(&b, 0);
	cr_assert_eq(tl_checkpoint_format(cp.origin, cp.size, cp.root, &b, &e), 0);
	cr_assert(b.len == body_len && memcmp(b.data, body, body_len) == 0, "reformatted: %.*s", (int)b.len, b.data);
	tl_buf_fini(&b);
}

/* ---- our own keys ---- */

struct pair {
	tl_note_signer s;
	tl_note_verifier v;
};

static struct pair new_pair(const char *name)
{
	struct pair p;
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_keygen(name, &p.s, &e), 0, "%s", e.msg);
	tl_note_signer_verifier(&p.s, &p.v);
	return p;
}

static void sign_checkpoint(const struct pair *p, uint64_t size, tl_buf *note)
{
	uint8_t root[32];
	for (int i = 0; i < 32; i++)
		root[i] = (uint8_t)(i * 9 + size);
	tl_buf body;
	tl_buf_init(&body, 0);
	cr_assert_eq(tl_checkpoint_format(p->s.name, size, root, &body, NULL), 0);
	tl_buf_init(note, TL_NOTE_MAX);
	cr_assert_eq(tl_note_sign((const char *)body.data, body.len, &p->s, note, NULL), 0);
	tl_buf_fini(&body);
}

Test(note_roundtrip, checkpoint_sign_open_parse)
{
	struct pair p = new_pair("threadline.example/log");
	char str[TL_NOTE_KEY_STR_MAX];
	cr_assert_eq(tl_note_verifier_format(&p.v, str, sizeof(str)), 0);
	tl_note_verifier back = vkey(str);
	cr_assert_eq(back.key_id, p.v.key_id);
	cr_assert(memcmp(back.pub, p.v.pub, 32) == 0);
	cr_assert_eq(tl_note_signer_format(&p.s, str, sizeof(str)), 0);
	tl_note_signer sback = skey(str);
	cr_assert(memcmp(sback.sk, p.s.sk, 64) == 0);
	cr_assert_eq(tl_note_signer_format(&p.s, str, 20), TL_ELIMIT);

	tl_buf note;
	sign_checkpoint(&p, 1234567, &note);
	tl_note_opened o;
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, &back, 1, &o, &e), 0, "%s", e.msg);
	tl_checkpoint cp;
	cr_assert_eq(tl_checkpoint_parse(o.text, o.text_len, &cp, &e), 0, "%s", e.msg);
	cr_assert_str_eq(cp.origin, "threadline.example/log");
	cr_assert_eq(cp.size, 1234567);
	cr_assert_eq(cp.root[1], (uint8_t)(9 + 1234567));
	tl_buf_fini(&note);
	tl_note_signer_wipe(&p.s);
}

Test(note_tamper, every_text_byte_and_signature_char)
{
	struct pair p = new_pair("threadline.example/log");
	tl_buf note;
	sign_checkpoint(&p, 42, &note);
	char *m = (char *)note.data;
	size_t text_len = (size_t)(strstr(m, "\n\n") - m) + 1;
	for (size_t i = 0; i < note.len; i++) {
		if (i == text_len || m[i] == '\n')
			continue; /* moving newlines changes the structure; covered by the malformed cases */
		char orig = m[i];
		m[i] = (char)(orig == 'A' ? 'B' : 'A');
		tl_errmsg e = {{0}};
		int rc = tl_note_open(m, note.len, &p.v, 1, &(tl_note_opened){0}, &e);
		m[i] = orig;
		if (i < text_len) {
			cr_assert_eq(rc, TL_ECORRUPT, "text byte %zu changed: %d (%s)", i, rc, e.msg);
		} else {
			/* In the signature line: the dash (malformed), the name (unknown key), the
			 * key ID (unknown key), the signature (bad signature or bad base64). */
			cr_assert(rc == TL_EPARSE || rc == TL_ENOTFOUND || rc == TL_ECORRUPT, "byte %zu: %d", i, rc);
			cr_assert_neq(rc, 0);
		}
	}
	/* A changed key name is an unknown key. */
	char *name = strstr(m + text_len, "threadline");
	name[0] = 'T';
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_open(m, note.len, &p.v, 1, &(tl_note_opened){0}, &e), TL_ENOTFOUND);
	name[0] = 't';
	cr_assert_eq(tl_note_open(m, note.len, &p.v, 1, &(tl_note_opened){0}, &e), 0);
	tl_buf_fini(&note);
	tl_note_signer_wipe(&p.s);
}

Test(note_tamper, wrong_key)
{
	struct pair a = new_pair("threadline.example/log"), b = new_pair("threadline.example/log");
	tl_buf note;
	sign_checkpoint(&a, 7, &note);
	tl_errmsg e = {{0}};
	/* Same name, other key: a different key ID, so an unknown key. */
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, &b.v, 1, &(tl_note_opened){0}, &e), TL_ENOTFOUND);
	/* Forged to share the key ID: the signature itself fails. */
	tl_note_verifier forged = b.v;
	forged.key_id = a.v.key_id;
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, &forged, 1, &(tl_note_opened){0}, &e),
	             TL_ECORRUPT);
	/* Two keys sharing a name and ID are ambiguous, as in Go's TestOpen. */
	tl_note_verifier twice[2] = {a.v, forged};
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, twice, 2, &(tl_note_opened){0}, &e), TL_EINVALID);
	cr_assert(strstr(e.msg, "ambiguous key") != NULL, "%s", e.msg);
	/* A bad signature from a known key sinks the note even when another key verifies:
	 * cosign with b, then damage b's signature. */
	const char *m = (const char *)note.data;
	size_t text_len = (size_t)(strstr(m, "\n\n") - m) + 1;
	tl_buf cosig;
	tl_buf_init(&cosig, 0);
	cr_assert_eq(tl_note_sign(m, text_len, &b.s, &cosig, NULL), 0);
	tl_buf_append(&note, cosig.data + text_len + 1, cosig.len - text_len - 1);
	tl_note_verifier both[2] = {a.v, b.v};
	tl_note_opened o;
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, both, 2, &o, &e), 0, "%s", e.msg);
	cr_assert_eq(o.verified, 2);
	note.data[note.len - 10] = note.data[note.len - 10] == 'A' ? 'B' : 'A';
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, both, 2, &o, &e), TL_ECORRUPT);
	cr_assert_eq(tl_note_open((const char *)note.data, note.len, both, 1, &o, &e), 0, "%s", e.msg);
	cr_assert_eq(o.unknown, 1);
	tl_buf_fini(&cosig);
	tl_buf_fini(&note);
	tl_note_signer_wipe(&a.s);
	tl_note_signer_wipe(&b.s);
}

Test(note_limits, signature_count_and_size)
{
	struct pair p = new_pair("log");
	tl_buf note;
	sign_checkpoint(&p, 1, &note);
	const char *m = (const char *)note.data;
	size_t text_len = (size_t)(strstr(m, "\n\n") - m) + 2;
	const char *line = m + text_len;
	size_t line_len = note.len - text_len;
	/* 16 unknown signatures then ours: accepted (the spec's minimum). */
	tl_buf many;
	tl_buf_init(&many, 0);
	tl_buf_append(&many, m, text_len);
	for (int i = 0; i < 16; i++)
		tl_buf_append(&many, ENOCH_SIG, strlen(ENOCH_SIG));
	tl_buf_append(&many, line, line_len);
	tl_note_opened o;
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_open((const char *)many.data, many.len, &p.v, 1, &o, &e), 0, "%s", e.msg);
	cr_assert_eq(o.unknown, 16);
	for (int i = 0; i < TL_NOTE_SIGS_MAX - 16; i++)
		tl_buf_append(&many, line, line_len);
	cr_assert_eq(tl_note_open((const char *)many.data, many.len, &p.v, 1, &o, &e), TL_ELIMIT);
	tl_buf_fini(&many);
	/* Too long a note. */
	char *big = malloc(TL_NOTE_MAX + 2);
	memset(big, 'a', TL_NOTE_MAX + 1);
	big[TL_NOTE_MAX] = '\n';
	cr_assert_eq(tl_note_open(big, TL_NOTE_MAX + 1, &p.v, 1, &o, &e), TL_ELIMIT);
	tl_buf out;
	tl_buf_init(&out, 0);
	cr_assert_eq(tl_note_sign(big, TL_NOTE_MAX - 10, &p.s, &out, &e), TL_EPARSE); /* no final newline */
	big[TL_NOTE_MAX - 11] = '\n';
	cr_assert_eq(tl_note_sign(big, TL_NOTE_MAX - 10, &p.s, &out, &e), TL_ELIMIT);
	cr_assert_eq(out.len, 0);
	free(big);
	tl_buf_fini(&out);
	tl_buf_fini(&note);
	tl_note_signer_wipe(&p.s);
}

Test(note_sign, refuses_bad_text_and_keeps_the_buffer)
{
	tl_note_signer s = skey(PETER_SKEY);
	tl_buf out;
	tl_buf_init(&out, 0);
	tl_buf_puts(&out, "keep");
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_sign("no newline", 10, &s, &out, &e), TL_EPARSE);
	cr_assert_eq(tl_note_sign("", 0, &s, &out, &e), TL_EPARSE);
	cr_assert_eq(tl_note_sign("tab\there\n", 9, &s, &out, &e), TL_EPARSE);
	cr_assert_eq(tl_note_sign("bad \xc3\x28\n", 7, &s, &out, &e), TL_EPARSE);
	cr_assert_eq(out.len, 4);
	/* A bounded buffer too small for the signature line is left as it was. */
	tl_buf small;
	tl_buf_init(&small, 80);
	cr_assert_eq(tl_note_sign(GO_TEXT, strlen(GO_TEXT), &s, &small, &e), TL_ELIMIT);
	cr_assert_eq(small.len, 0);
	tl_buf_fini(&small);
	tl_buf_fini(&out);
}

/* ---- names and key strings ---- */

Test(note_keys, names)
{
	cr_assert(tl_note_name_valid("example.com/log42", 17));
	cr_assert(tl_note_name_valid("\xc3\xa9t\xc3\xa9", 5)); /* "été" */
	cr_assert(!tl_note_name_valid("", 0));
	cr_assert(!tl_note_name_valid("a+b", 3));
	cr_assert(!tl_note_name_valid("a b", 3));
	cr_assert(!tl_note_name_valid("a\tb", 3));
	cr_assert(!tl_note_name_valid("a\xc2\xa0"
	                              "b",
	                              4)); /* U+00A0 no-break space */
	cr_assert(!tl_note_name_valid("a\xe3\x80\x80"
	                              "b",
	                              5)); /* U+3000 ideographic space */
	cr_assert(!tl_note_name_valid("a\xff", 2));
	char longname[TL_NOTE_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname));
	cr_assert(tl_note_name_valid(longname, TL_NOTE_NAME_MAX));
	cr_assert(!tl_note_name_valid(longname, TL_NOTE_NAME_MAX + 1));
	tl_note_signer s;
	tl_errmsg e = {{0}};
	cr_assert_eq(tl_note_keygen("bad name", &s, &e), TL_EPARSE);
	cr_assert(strstr(e.msg, "invalid key name") != NULL, "%s", e.msg);
}

Test(note_keys, key_strings_that_do_not_add_up)
{
	tl_note_verifier v;
	tl_errmsg e = {{0}};
	/* Go's TestNewVerifier: wrong key length and unknown algorithm, each with an adjusted key hash. */
	const char *wrong_len = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
	cr_assert_eq(tl_note_verifier_parse(wrong_len, strlen(wrong_len), &v, &e), TL_EPARSE);
	/* Right shape, right name, key ID off by one: the ID must be derived from the key. */
	const char *wrong_id = "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
	cr_assert_eq(tl_note_verifier_parse(wrong_id, strlen(wrong_id), &v, &e), TL_EINVALID);
	cr_assert(strstr(e.msg, "does not match") != NULL, "%s", e.msg);
	/* Type byte 0x02 (ECDSA): well-formed, not ours. "Ahpc..." is the same key with 0x02. */
	const char *ecdsa = "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
	cr_assert_eq(tl_note_verifier_parse(ecdsa, strlen(ecdsa), &v, &e), TL_EUNSUPPORTED);
	const char *high = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy1\xd8\xaf";
	cr_assert_eq(tl_note_verifier_parse(high, strlen(high), &v, &e), TL_EPARSE);
	/* Upper-case hex is the same ID. */
	const char *upper = "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
	cr_assert_eq(tl_note_verifier_parse(upper, strlen(upper), &v, &e), 0, "%s", e.msg);
	/* A signer string is not a verifier string and the reverse. */
	tl_note_signer s;
	cr_assert_neq(tl_note_verifier_parse(PETER_SKEY, strlen(PETER_SKEY), &v, &e), 0);
	cr_assert_eq(tl_note_signer_parse(PETER_VKEY, strlen(PETER_VKEY), &s, &e), TL_EPARSE);
	/* The private key's ID is checked against the key it makes. */
	const char *bad_skey = "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
	cr_assert_eq(tl_note_signer_parse(bad_skey, strlen(bad_skey), &s, &e), TL_EINVALID);
}

/* ---- key files ---- */

static char tmpdir[64];

static void mk_tmp(void)
{
	strcpy(tmpdir, "/tmp/tl_note_test.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

Test(note_keyfile, write_read_mode_and_refusals, .init = mk_tmp, .fini = rm_tmp)
{
	struct pair p = new_pair("threadline.example/log");
	char path[128];
	snprintf(path, sizeof(path), "%s/log.key", tmpdir);
	mode_t old = umask(0);
	tl_errmsg e = {{0}};
	int rc = tl_note_key_write(path, &p.s, &e);
	umask(old);
	cr_assert_eq(rc, 0, "%s", e.msg);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	tl_note_signer back;
	cr_assert_eq(tl_note_key_read(path, &back, &e), 0, "%s", e.msg);
	cr_assert(memcmp(back.sk, p.s.sk, 64) == 0);
	cr_assert_str_eq(back.name, p.s.name);
	/* Never replaces a key. */
	cr_assert_eq(tl_note_key_write(path, &p.s, &e), -EEXIST);
	cr_assert_eq(tl_note_key_read(path, &back, &e), 0);
	cr_assert(memcmp(back.sk, p.s.sk, 64) == 0);
	/* A key others can read is refused. */
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(tl_note_key_read(path, &back, &e), TL_EINVALID);
	cr_assert(strstr(e.msg, "0644") != NULL, "%s", e.msg);
	/* Garbage, and a missing file. */
	snprintf(path, sizeof(path), "%s/junk.key", tmpdir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello\n", 6), 6);
	close(fd);
	cr_assert_eq(tl_note_key_read(path, &back, &e), TL_EPARSE);
	snprintf(path, sizeof(path), "%s/none.key", tmpdir);
	cr_assert_eq(tl_note_key_read(path, &back, &e), -ENOENT);
	tl_note_signer_wipe(&p.s);
	tl_note_signer_wipe(&back);
}

/* ---- checkpoints ---- */

static int cp_parse(const char *s, tl_checkpoint *cp)
{
	tl_errmsg e;
	return tl_checkpoint_parse(s, strlen(s), cp, &e);
}

#define ROOT64 "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="

Test(checkpoint, sizes_roots_and_extensions)
{
	tl_checkpoint cp;
	cr_assert_eq(cp_parse("o\n0\n" ROOT64 "\n", &cp), 0);
	cr_assert_eq(cp.size, 0);
	cr_assert_eq(cp_parse("o\n18446744073709551615\n" ROOT64 "\n", &cp), 0);
	cr_assert_eq(cp.size, UINT64_MAX);
	cr_assert_eq(cp_parse("o\n18446744073709551616\n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n99999999999999999999\n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n01\n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n-1\n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n1 \n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n\n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("\n1\n" ROOT64 "\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n1\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n1\n" ROOT64, &cp), TL_EPARSE);
	/* Not 32 bytes, unpadded, URL-safe, stray bits in the last character. */
	cr_assert_eq(cp_parse("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n", &cp), TL_EPARSE);
	/* libsodium 1.0.18 alone would decode bytes above 0x7f as base64 (found by fuzz_note). */
	cr_assert_eq(cp_parse("o\n1\nCsUYapGGPo4dkMgIAUqog/Xajj\xd8\xaf+RIVATE+KEY+q2I=\n", &cp), TL_EPARSE);
	/* Extension lines: kept, but none may be empty. */
	const char *ext = "o\n5\n" ROOT64 "\nfirst ext\nsecond\n";
	cr_assert_eq(cp_parse(ext, &cp), 0);
	cr_assert_eq(cp.ext_len, strlen("first ext\nsecond\n"));
	cr_assert(memcmp(cp.ext, "first ext\nsecond\n", cp.ext_len) == 0);
	cr_assert_eq(cp_parse("o\n5\n" ROOT64 "\next\n\n", &cp), TL_EPARSE);
	cr_assert_eq(cp_parse("o\n5\n" ROOT64 "\n\next\n", &cp), TL_EPARSE);
	/* Origins: anything on one line, within the limit. */
	char longo[TL_NOTE_NAME_MAX + 80];
	memset(longo, 'x', TL_NOTE_NAME_MAX + 1);
	snprintf(longo + TL_NOTE_NAME_MAX + 1, 70, "\n1\n%s\n", ROOT64);
	cr_assert_eq(cp_parse(longo, &cp), TL_ELIMIT);
	tl_buf b;
	tl_buf_init(&b, 0);
	uint8_t root[32] = {0};
	cr_assert_eq(tl_checkpoint_format("", 1, root, &b, NULL), TL_EPARSE);
	cr_assert_eq(tl_checkpoint_format("two\nlines", 1, root, &b, NULL), TL_EPARSE);
	cr_assert_eq(tl_checkpoint_format("with space/and+plus", 0, root, &b, NULL), 0);
	cr_assert_eq(tl_checkpoint_parse((const char *)b.data, b.len, &cp, NULL), 0);
	cr_assert_str_eq(cp.origin, "with space/and+plus");
	cr_assert_eq(cp.size, 0);
	tl_buf_fini(&b);
}
