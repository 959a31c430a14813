/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's LMDB spool; see ag_spool.h. Keys are big-endian sequence
 * numbers, so "batches" is in send order and appends use MDB_APPEND. Each
 * value starts with an 8-byte header: a format byte, a flags byte (bit 0: a
 * refusal reason follows the header as u16 length + bytes), two zero bytes
 * and the span count (u32). The counters in ag_spool_info are rebuilt by a
 * scan at open (it reads only the value headers) and kept in memory after.
 */
#include "ag_spool.h"
#include "tl_be.h"

#include "tl_id.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT 1
#define F_REASON 1
#define MAX_REASON 1024
/*
 * Room above max_bytes for LMDB's own pages (branch pages, the free list,
 * pages a reader still holds): half of max_bytes more, plus 4 MiB. Removing
 * acknowledged batches needs a few free pages; because appends stop at
 * max_bytes, the map always has them.
 */
#define MAP_SLACK ((size_t)4 << 20)

struct ag_spool {
	MDB_env *env;
	MDB_dbi meta, batches, dead;
	bool sync_each_commit;
	int lock_fd;
	bool reserved; /* the map's disk space is allocated */
	uint8_t agent_id[16];
	pthread_mutex_t mu; /* guards info */
	ag_spool_info info;
};

static const char K_AGENT_ID[] = "agent_id";
static const char K_NEXT_SEQ[] = "next_seq";

void ag_spool_opts_default(ag_spool_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_bytes = (size_t)1 << 30;
	o->sync_each_commit = true;
}

static int lmdb_fail(tl_errmsg *err, const char *what, int rc)
{
	if (rc == MDB_MAP_FULL)
		return tl_errf(err, TL_EFULL, "spool: %s: the spool file is full (%s)", what, mdb_strerror(rc));
	return tl_errf(err, tl_err_from_lmdb(rc), "spool: %s: %s", what, mdb_strerror(rc));
}

/* Takes an exclusive lock on DIR/agent.lock and writes our pid into it. */
static int take_lock(ag_spool *s, const char *dir, tl_errmsg *err)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/agent.lock", dir) >= (int)sizeof(path))
		return tl_errf(err, -ENAMETOOLONG, "spool %s: path too long", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return tl_errf(err, -errno, "spool %s: cannot open agent.lock: %s", dir, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			return tl_errf(err, TL_ECLOSED, "spool %s is in use by another threadline-agent (pid %s)", dir,
			               pid[0] ? pid : "unknown");
		return tl_errf(err, -e, "spool %s: cannot lock agent.lock: %s", dir, strerror(e));
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		int e = errno;
		close(fd);
		return tl_errf(err, -e, "spool %s: cannot write agent.lock: %s", dir, strerror(e));
	}
	s->lock_fd = fd;
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0750) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0750) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * Reserves the whole map on disk (fallocate), so a disk that fills up later
 * cannot fail a spool commit, and above all cannot stop the removal of
 * acknowledged batches (which needs a few new pages): a full disk would
 * otherwise keep a full spool full. Filesystems without fallocate are used
 * as they are (s->reserved stays false).
 */
static int reserve(ag_spool *s, const char *dir, size_t max, tl_errmsg *err)
{
	MDB_envinfo ei;
	int fd;
	int rc = mdb_env_info(s->env, &ei);
	if (rc == 0)
		rc = mdb_env_get_fd(s->env, &fd);
	if (rc != 0)
		return lmdb_fail(err, "env info", rc);
	if (fallocate(fd, 0, 0, (off_t)ei.me_mapsize) == 0) {
		s->reserved = true;
		return 0;
	}
	int e = errno;
	if (e == EOPNOTSUPP || e == ENOSYS)
		return 0;
	return tl_errf(err, -e,
	               "spool %s: cannot reserve %zu MiB of disk for a %zu MiB spool (--spool-max-bytes, plus room "
	               "for LMDB): %s",
	               dir, ei.me_mapsize >> 20, max >> 20, strerror(e));
}

/* Sums a database's values; live says whether spans count. */
static int scan(MDB_txn *txn, MDB_dbi dbi, size_t *bytes, size_t *count, uint64_t *spans, uint64_t *last)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc != 0)
		return rc;
	MDB_val k, v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		*bytes += v.mv_size;
		(*count)++;
		if (v.mv_size >= AG_SPOOL_HDR && spans != NULL)
			*spans += tl_get_be32((const uint8_t *)v.mv_data + 4);
		if (k.mv_size == 8 && last != NULL)
			*last = tl_get_be64(k.mv_data);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Reads or creates the identity and the next sequence number, and rebuilds the counters. */
static int load(ag_spool *s, tl_errmsg *err)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	const char *what = "open databases";
	if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "batches", MDB_CREATE, &s->batches)) != 0 ||
	    (rc = mdb_dbi_open(txn, "dead", MDB_CREATE, &s->dead)) != 0)
		goto fail;
	MDB_val k = {sizeof(K_AGENT_ID) - 1, (void *)K_AGENT_ID}, v;
	what = "read agent id";
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(s->agent_id)) {
		memcpy(s->agent_id, v.mv_data, sizeof(s->agent_id));
	} else if (rc == MDB_NOTFOUND) {
		if (tl_random_bytes(s->agent_id, sizeof(s->agent_id)) != 0) {
			mdb_txn_abort(txn);
			return tl_errf(err, -EIO, "spool: cannot read random bytes for the agent id");
		}
		v.mv_size = sizeof(s->agent_id);
		v.mv_data = s->agent_id;
		what = "write agent id";
		if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0)
			goto fail;
	} else {
		if (rc == 0)
			rc = MDB_CORRUPTED;
		goto fail;
	}
	uint64_t next = 1, last = 0, dead_last = 0;
	k.mv_size = sizeof(K_NEXT_SEQ) - 1;
	k.mv_data = (void *)K_NEXT_SEQ;
	what = "read next_seq";
	rc = mdb_get(txn, s->meta, &k, &v);
	if (rc == 0 && v.mv_size == 8)
		next = tl_get_be64(v.mv_data);
	else if (rc != MDB_NOTFOUND)
		goto fail;
	ag_spool_info in = {0};
	what = "scan batches";
	if ((rc = scan(txn, s->batches, &in.bytes, &in.batches, &in.spans, &last)) != 0)
		goto fail;
	what = "scan dead batches";
	if ((rc = scan(txn, s->dead, &in.dead_bytes, &in.dead_batches, NULL, &dead_last)) != 0)
		goto fail;
	/* next_seq is written with every append, but never go below what is stored. */
	if (last >= next)
		next = last + 1;
	if (dead_last >= next)
		next = dead_last + 1;
	in.next_seq = next;
	what = "commit";
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_fail(err, what, rc);
	s->info = in;
	return 0;
fail:
	mdb_txn_abort(txn);
	return lmdb_fail(err, what, rc);
}

int ag_spool_open(const ag_spool_opts *o, ag_spool **out, tl_errmsg *err)
{
	int rc = mkdir_p(o->dir);
	if (rc != 0)
		return tl_errf(err, rc, "spool %s: cannot create the directory: %s", o->dir, strerror(-rc));
	ag_spool *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return tl_errf(err, -ENOMEM, "spool: out of memory");
	s->lock_fd = -1;
	s->sync_each_commit = o->sync_each_commit;
	pthread_mutex_init(&s->mu, NULL);
	if ((rc = take_lock(s, o->dir, err)) != 0) {
		ag_spool_close(s);
		return rc;
	}
	size_t max = o->max_bytes ? o->max_bytes : (size_t)1 << 30;
	size_t map = max > SIZE_MAX / 4 ? SIZE_MAX / 2 : max + max / 2 + MAP_SLACK;
	unsigned flags = MDB_NOTLS | (o->sync_each_commit ? 0 : MDB_NOSYNC);
	if ((rc = mdb_env_create(&s->env)) != 0 || (rc = mdb_env_set_maxdbs(s->env, 4)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->env, map)) != 0) {
		rc = lmdb_fail(err, "create", rc);
		ag_spool_close(s);
		return rc;
	}
	if ((rc = mdb_env_open(s->env, o->dir, flags, 0640)) != 0) {
		rc = tl_errf(err, tl_err_from_lmdb(rc), "spool %s: %s", o->dir, mdb_strerror(rc));
		ag_spool_close(s);
		return rc;
	}
	if ((rc = reserve(s, o->dir, max, err)) != 0) {
		ag_spool_close(s);
		return rc;
	}
	int stale = 0;
	if ((rc = mdb_reader_check(s->env, &stale)) != 0) {
		rc = lmdb_fail(err, "reader check", rc);
		ag_spool_close(s);
		return rc;
	}
	if ((rc = load(s, err)) != 0) {
		ag_spool_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void ag_spool_close(ag_spool *s)
{
	if (s == NULL)
		return;
	if (s->env != NULL)
		mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&s->mu);
	free(s);
}

bool ag_spool_reserved(const ag_spool *s)
{
	return s->reserved;
}

const uint8_t *ag_spool_agent_id(const ag_spool *s)
{
	return s->agent_id;
}

int ag_spool_info_get(ag_spool *s, ag_spool_info *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->info;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int append(ag_spool *s, MDB_txn *txn, const ag_spool_put *p)
{
	uint8_t kb[8];
	tl_put_be64(kb, p->seq);
	MDB_val k = {8, kb}, v = {AG_SPOOL_HDR + p->len, NULL};
	int rc = mdb_put(txn, s->batches, &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc != 0)
		return rc;
	uint8_t *d = v.mv_data;
	memset(d, 0, AG_SPOOL_HDR);
	d[0] = FORMAT;
	tl_put_be32(d + 4, p->nspans);
	memcpy(d + AG_SPOOL_HDR, p->data, p->len);
	return 0;
}

/* Removes one batch; a refused one is rewritten into "dead" with its reason first. */
static int finish(ag_spool *s, MDB_txn *txn, const ag_spool_done *dn, ag_spool_delta *d)
{
	uint8_t kb[8];
	tl_put_be64(kb, dn->seq);
	MDB_val k = {8, kb}, v;
	int rc = mdb_get(txn, s->batches, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (v.mv_size < AG_SPOOL_HDR)
		return MDB_CORRUPTED;
	size_t len = v.mv_size;
	uint32_t nspans = tl_get_be32((const uint8_t *)v.mv_data + 4);
	if (dn->reason != NULL) {
		size_t rl = strnlen(dn->reason, MAX_REASON);
		MDB_val dv = {len + 2 + rl, NULL};
		/* v points into the map; copy it before a put that may move pages. */
		uint8_t *copy = malloc(len);
		if (copy == NULL)
			return ENOMEM;
		memcpy(copy, v.mv_data, len);
		rc = mdb_put(txn, s->dead, &k, &dv, MDB_RESERVE);
		if (rc == 0) {
			uint8_t *o = dv.mv_data;
			memcpy(o, copy, AG_SPOOL_HDR);
			o[1] |= F_REASON;
			o[AG_SPOOL_HDR] = (uint8_t)(rl >> 8);
			o[AG_SPOOL_HDR + 1] = (uint8_t)rl;
			memcpy(o + AG_SPOOL_HDR + 2, dn->reason, rl);
			memcpy(o + AG_SPOOL_HDR + 2 + rl, copy + AG_SPOOL_HDR, len - AG_SPOOL_HDR);
			d->dead_bytes += dv.mv_size;
			d->dead_batches++;
		}
		free(copy);
		if (rc != 0)
			return rc;
	}
	if ((rc = mdb_del(txn, s->batches, &k, NULL)) != 0)
		return rc;
	d->removed_bytes += len;
	d->removed_batches++;
	d->removed_spans += nspans;
	return 0;
}

int ag_spool_write(ag_spool *s, const ag_spool_put *puts, size_t nputs, const ag_spool_done *done, size_t ndone,
                   ag_spool_delta *delta, tl_errmsg *err)
{
	ag_spool_delta d = {0};
	pthread_mutex_lock(&s->mu);
	uint64_t next_seq = s->info.next_seq;
	pthread_mutex_unlock(&s->mu);
	/* A reused sequence number would be dropped by the collector as a duplicate: refuse it. */
	if (nputs > 0 && puts[0].seq < next_seq)
		return tl_errf(err, TL_EINVALID, "spool: batch seq %llu is below the next sequence number %llu",
		               (unsigned long long)puts[0].seq, (unsigned long long)next_seq);
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return lmdb_fail(err, "begin", rc);
	const char *what = "remove acknowledged batches";
	for (size_t i = 0; i < ndone; i++)
		if ((rc = finish(s, txn, &done[i], &d)) != 0)
			goto fail;
	what = "append batch";
	uint64_t next = 0;
	for (size_t i = 0; i < nputs; i++) {
		if ((rc = append(s, txn, &puts[i])) != 0)
			goto fail;
		d.added_bytes += AG_SPOOL_HDR + puts[i].len;
		d.added_batches++;
		d.added_spans += puts[i].nspans;
		next = puts[i].seq + 1;
	}
	if (next != 0) {
		uint8_t nb[8];
		tl_put_be64(nb, next);
		MDB_val k = {sizeof(K_NEXT_SEQ) - 1, (void *)K_NEXT_SEQ}, v = {8, nb};
		what = "write next_seq";
		if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0)
			goto fail;
	}
	what = "commit";
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_fail(err, what, rc);
	pthread_mutex_lock(&s->mu);
	s->info.bytes += d.added_bytes;
	s->info.bytes -= d.removed_bytes;
	s->info.batches += d.added_batches;
	s->info.batches -= d.removed_batches;
	s->info.spans += d.added_spans;
	s->info.spans -= d.removed_spans;
	s->info.dead_bytes += d.dead_bytes;
	s->info.dead_batches += d.dead_batches;
	if (next != 0)
		s->info.next_seq = next;
	pthread_mutex_unlock(&s->mu);
	if (delta != NULL)
		*delta = d;
	return 0;
fail:
	mdb_txn_abort(txn);
	return lmdb_fail(err, what, rc);
}

int ag_spool_sync(ag_spool *s)
{
	int rc = mdb_env_sync(s->env, 1);
	return rc == 0 ? 0 : (rc > 0 ? -rc : rc);
}

int ag_spool_read_next(ag_spool *s, uint64_t after, uint64_t *seq, uint8_t **data, size_t *len, uint32_t *nspans)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return tl_err_from_lmdb(rc);
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->batches, &c)) != 0) {
		mdb_txn_abort(txn);
		return tl_err_from_lmdb(rc);
	}
	uint8_t kb[8];
	tl_put_be64(kb, after == UINT64_MAX ? after : after + 1);
	MDB_val k = {8, kb}, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	int out = 0;
	if (rc == MDB_NOTFOUND || (rc == 0 && after == UINT64_MAX)) {
		out = TL_ENOTFOUND;
	} else if (rc != 0) {
		out = tl_err_from_lmdb(rc);
	} else if (k.mv_size != 8 || v.mv_size < AG_SPOOL_HDR || ((const uint8_t *)v.mv_data)[0] != FORMAT) {
		out = TL_ECORRUPT;
	} else {
		size_t n = v.mv_size - AG_SPOOL_HDR;
		uint8_t *copy = malloc(n ? n : 1);
		if (copy == NULL) {
			out = -ENOMEM;
		} else {
			memcpy(copy, (const uint8_t *)v.mv_data + AG_SPOOL_HDR, n);
			*seq = tl_get_be64(k.mv_data);
			*data = copy;
			*len = n;
			*nspans = tl_get_be32((const uint8_t *)v.mv_data + 4);
		}
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return out;
}
