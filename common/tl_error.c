/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error codes: one table of messages for Threadline's band, and the single
 * translation points from LMDB's and nng's codes.
 */
#include "tl_error.h"

#include <errno.h>
#include <lmdb.h>
#include <nng/nng.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const tl_msgs[] = {
        [0] = "threadline error",
        [1] = "malformed input",
        [2] = "input exceeds a configured limit",
        [3] = "not found",
        [4] = "protocol error",
        [5] = "unsupported",
        [6] = "invalid value",
        [7] = "full",
        [8] = "storage error",
        [9] = "transport error",
        [10] = "timed out",
        [11] = "closed",
        [12] = "stored data is corrupt",
        [13] = "rejected by peer",
        [14] = "usage error",
};

const char *tl_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err <= TL_EBASE && err > TL_ELAST) {
		int i = TL_EBASE - err;
		if ((size_t)i < sizeof(tl_msgs) / sizeof(tl_msgs[0]) && tl_msgs[i] != NULL)
			return tl_msgs[i];
		return "threadline error";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

int tl_err_from_lmdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return TL_ENOTFOUND;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
	case MDB_DBS_FULL:
	case MDB_READERS_FULL:
		return TL_EFULL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return TL_ECORRUPT;
	default:
		if (rc > 0)
			return -rc;
		return TL_ESTORE;
	}
}

int tl_err_from_nng(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case NNG_ETIMEDOUT:
		return TL_ETIMEOUT;
	case NNG_ECLOSED:
	case NNG_ECANCELED:
		return TL_ECLOSED;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return -EINVAL;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_ECONNREFUSED:
		return -ECONNREFUSED;
	case NNG_EMSGSIZE:
		return TL_ELIMIT;
	case NNG_EPROTO:
		return TL_EPROTO;
	default:
		return TL_ETRANSPORT;
	}
}

int tl_errf(tl_errmsg *e, int code, const char *fmt, ...)
{
	if (e != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}
