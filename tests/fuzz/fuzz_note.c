/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The signed-note, checkpoint and key-string parsers read what an auditor
 * is handed, so anyone may have written it. Each gets the input in a buffer
 * of exactly its size (no NUL after it) and must neither crash nor read past
 * it, return only its documented codes, and, when a note opens with the
 * (published) PeterNeumann key, hand back a text inside the input which
 * that key really signed: signing it again gives a signature line that is in
 * the input (Ed25519 is deterministic).
 */
#include "tl_buf.h"
#include "tl_error.h"
#include "tl_note.h"

#include <stdlib.h>
#include <string.h>

#define INPUT_MAX (TL_NOTE_MAX + 64)

/* golang.org/x/mod/sumdb/note's example key pair. */
#define PETER_SKEY "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int known(int rc, const int *codes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rc == codes[i])
			return 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tl_note_signer peter;
	static tl_note_verifier keys[1];
	static int ready;
	if (!ready) {
		if (tl_note_signer_parse(PETER_SKEY, strlen(PETER_SKEY), &peter, NULL) != 0)
			abort();
		tl_note_signer_verifier(&peter, &keys[0]);
		ready = 1;
	}
	if (size > INPUT_MAX)
		return 0;
	char *in = malloc(size ? size : 1);
	if (in == NULL)
		return 0;
	memcpy(in, data, size);

	static const int open_codes[] = {0, TL_EPARSE, TL_ELIMIT, TL_ENOTFOUND, TL_ECORRUPT, TL_EINVALID};
	tl_note_opened o;
	tl_errmsg e;
	int rc = tl_note_open(in, size, keys, 1, &o, &e);
	if (!known(rc, open_codes, sizeof(open_codes) / sizeof(open_codes[0])))
		abort();
	if (rc == 0) {
		if (o.text != in || o.text_len == 0 || o.text_len >= size || in[o.text_len - 1] != '\n' ||
		    o.by != &keys[0] || o.verified == 0)
			abort();
		tl_buf again;
		tl_buf_init(&again, 0);
		if (tl_note_sign(o.text, o.text_len, &peter, &again, NULL) != 0)
			abort();
		/* The signature line the key makes for this text must be one of the input's. */
		size_t sig_len = again.len - o.text_len - 1;
		const char *sig = (const char *)again.data + o.text_len + 1;
		int found = 0;
		for (size_t off = o.text_len + 1; off + sig_len <= size && !found; off++)
			found = memcmp(in + off, sig, sig_len) == 0;
		if (!found)
			abort();
		tl_buf_fini(&again);
		tl_checkpoint cp;
		rc = tl_checkpoint_parse(o.text, o.text_len, &cp, &e);
		if (rc != 0 && rc != TL_EPARSE && rc != TL_ELIMIT)
			abort();
	}
	/* With no keys, nothing can verify. */
	rc = tl_note_open(in, size, NULL, 0, &o, &e);
	if (rc == 0 || rc == TL_ECORRUPT)
		abort();

	tl_checkpoint cp;
	rc = tl_checkpoint_parse(in, size, &cp, &e);
	if (rc == 0) {
		if (cp.origin[0] == '\0' || (cp.ext != NULL && (cp.ext < in || cp.ext + cp.ext_len != in + size)))
			abort();
		tl_buf out;
		tl_buf_init(&out, 0);
		/* A checkpoint without extensions reformats to exactly its input. */
		if (tl_checkpoint_format(cp.origin, cp.size, cp.root, &out, NULL) == 0 && cp.ext == NULL &&
		    (out.len != size || memcmp(out.data, in, size) != 0))
			abort();
		tl_buf_fini(&out);
	} else if (rc != TL_EPARSE && rc != TL_ELIMIT) {
		abort();
	}

	static const int key_codes[] = {0, TL_EPARSE, TL_ELIMIT, TL_EUNSUPPORTED, TL_EINVALID};
	tl_note_verifier v;
	rc = tl_note_verifier_parse(in, size, &v, &e);
	if (!known(rc, key_codes, sizeof(key_codes) / sizeof(key_codes[0])))
		abort();
	if (rc == 0) {
		char str[TL_NOTE_KEY_STR_MAX];
		if (tl_note_verifier_format(&v, str, sizeof(str)) != 0 || strlen(str) != size)
			abort();
	}
	tl_note_signer s;
	rc = tl_note_signer_parse(in, size, &s, &e);
	if (!known(rc, key_codes, sizeof(key_codes) / sizeof(key_codes[0])))
		abort();
	tl_note_signer_wipe(&s);
	free(in);
	return 0;
}
