/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threadline error codes. Every function that can fail returns int: 0 on
 * success, a negative errno for system errors, or one of the TL_E* codes
 * below, which live in a reserved negative band (-31999..-31000) that no
 * errno, libuv or LMDB code uses. nng, LMDB and libuv codes are translated
 * to this scheme at one boundary each (tl_err_from_*).
 */
#ifndef TL_ERROR_H
#define TL_ERROR_H

enum {
	TL_EBASE = -31000,
	TL_EPARSE = -31001,       /* input is malformed (syntax, truncation) */
	TL_ELIMIT = -31002,       /* input exceeds a configured limit */
	TL_ENOTFOUND = -31003,    /* the thing asked for does not exist */
	TL_EPROTO = -31004,       /* a peer broke the protocol */
	TL_EUNSUPPORTED = -31005, /* valid but unsupported (content type, version) */
	TL_EINVALID = -31006,     /* well-formed input with an invalid value */
	TL_EFULL = -31007,        /* a bounded store or queue is full */
	TL_ESTORE = -31008,       /* the storage engine failed */
	TL_ETRANSPORT = -31009,   /* the transport (nng) failed */
	TL_ETIMEOUT = -31010,     /* a deadline passed */
	TL_ECLOSED = -31011,      /* the object is shutting down or closed */
	TL_ECORRUPT = -31012,     /* stored data failed an integrity check */
	TL_EREJECTED = -31013,    /* the peer refused the data for good */
	TL_EUSAGE = -31014,       /* bad command-line usage */
	TL_ELAST = -31015
};

/*
 * Returns a static, human-readable description of any code this project
 * returns: TL_E* codes, negative errnos, and 0. Never NULL.
 */
const char *tl_strerror(int err);

/* LMDB return code (0, positive errno or MDB_*) -> Threadline code. */
int tl_err_from_lmdb(int mdb_rc);

/* nng return code (0 or positive NNG_E*) -> Threadline code. */
int tl_err_from_nng(int nng_rc);

/*
 * A message naming what went wrong, for errors that carry detail (which
 * field, which byte offset). Fixed size: formatting never allocates, and a
 * long message is cut, never overflowed.
 */
typedef struct tl_errmsg {
	char msg[256];
} tl_errmsg;

/* Formats into e (NULL allowed: no-op). Returns code, so callers can write
 * `return tl_errf(e, TL_EPARSE, "...")`. */
int tl_errf(tl_errmsg *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
