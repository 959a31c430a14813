/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One thread, K non-blocking sockets, poll(). Each connection cycles:
 * copy a template into its buffer behind the HTTP header, patch fresh trace
 * ids in, send it all, parse the response with http-parser, count it, send
 * the next. A connection the server closes or resets is reopened (and the
 * event counted) so the run goes on with K connections.
 */
#include "bench_load.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tl_pb.h"
#include "tl_testkit.h"
#include "tl_time.h"

#define MAX_CONNS 256
#define RESP_BODY_CAP 1024
#define HDR_CAP 256
#define LAT_CAP (1u << 20)

typedef struct conn {
	int fd;
	http_parser hp;
	uint8_t *buf; /* header + body of the request being sent */
	size_t len, off;
	size_t body_len;
	bool in_flight;
	uint64_t sent_ns;
	uint8_t ids[BG_TRACES_PER_REQ][BG_TRACE_ID_LEN];
	/* response being parsed */
	bool done;
	bool keep_alive;
	int status;
	char body[RESP_BODY_CAP];
	size_t rbody_len;
	bool body_cut;
} conn;

typedef struct run {
	const bl_opts *o;
	bg_set *s;
	bl_result *res;
	conn c[MAX_CONNS];
	size_t next_tmpl;
	uint64_t t_measure, t_end;
	uint32_t *lat_us;
	size_t nlat;
	uint64_t seen; /* counted ok answers, for the reservoir */
	uint64_t rng;
	http_parser_settings st;
} run;

static uint64_t rnd(run *r)
{
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return r->rng;
}

static int on_headers_complete(http_parser *hp)
{
	conn *c = hp->data;
	c->status = (int)hp->status_code;
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	conn *c = hp->data;
	size_t room = RESP_BODY_CAP - c->rbody_len;
	if (len > room) {
		c->body_cut = true;
		len = room;
	}
	memcpy(c->body + c->rbody_len, at, len);
	c->rbody_len += len;
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	conn *c = hp->data;
	c->done = true;
	c->keep_alive = http_should_keep_alive(hp) != 0;
	return 0;
}

static void conn_close(conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
	}
	c->fd = -1;
	c->in_flight = false;
}

static int conn_open(run *r, conn *c)
{
	int fd = tk_connect(r->o->port);
	if (fd < 0) {
		return fd;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	http_parser_init(&c->hp, HTTP_RESPONSE);
	c->hp.data = c;
	return 0;
}

static void start_request(run *r, conn *c)
{
	const bg_req *t = &r->s->reqs[r->next_tmpl++ % r->s->nreqs];
	int h = snprintf((char *)c->buf, HDR_CAP,
	                 "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: threadline-bench\r\n"
	                 "Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
	                 r->o->port, t->len);
	memcpy(c->buf + h, t->body, t->len);
	bg_patch(r->s, t, c->buf + h, c->ids);
	c->len = (size_t)h + t->len;
	c->body_len = t->len;
	c->off = 0;
	c->in_flight = true;
	c->done = false;
	c->status = 0;
	c->rbody_len = 0;
	c->body_cut = false;
	c->sent_ns = tl_mono_ns();
}

/* Rejected spans in a 200's ExportTraceServiceResponse, or -1 if the body does not decode. */
static int64_t rejected_in(const conn *c)
{
	if (c->body_cut) {
		return -1;
	}
	tl_pb_export_resp *m = (tl_pb_export_resp *)protobuf_c_message_unpack(&TL_PB_EXPORT_RESP_DESC, NULL,
	                                                                      c->rbody_len, (const uint8_t *)c->body);
	if (m == NULL) {
		return -1;
	}
	int64_t n = m->partial_success != NULL ? m->partial_success->rejected_spans : 0;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return n;
}

static void answered(run *r, conn *c, uint64_t now)
{
	bl_result *res = r->res;
	c->in_flight = false;
	if (now < r->t_measure) {
		res->warmup_requests += c->status == 200;
		return;
	}
	if (now >= r->t_end) {
		return;
	}
	int64_t rej = c->status == 200 ? rejected_in(c) : -1;
	if (c->status != 200 || rej != 0) {
		res->non200++;
		res->last_non200 = c->status;
		if (rej > 0) {
			res->rejected_spans += (uint64_t)rej;
		}
		size_t n = c->rbody_len < sizeof(res->last_non200_body) - 1 ? c->rbody_len
		                                                            : sizeof(res->last_non200_body) - 1;
		memcpy(res->last_non200_body, c->body, n);
		res->last_non200_body[n] = 0;
		return;
	}
	res->ok_requests++;
	res->ok_spans += BG_SPANS_PER_REQ;
	res->ok_bytes += c->body_len;
	if (r->nlat < LAT_CAP) {
		r->lat_us[r->nlat++] = (uint32_t)((now - c->sent_ns) / 1000);
	}
	/* Reservoir sample of the committed traces, spread over the whole window. */
	uint64_t k = r->seen++;
	const uint8_t *id = c->ids[k % BG_TRACES_PER_REQ];
	if (res->nsample < BL_SAMPLE) {
		memcpy(res->sample[res->nsample++], id, BG_TRACE_ID_LEN);
	} else {
		uint64_t j = rnd(r) % (k + 1);
		if (j < BL_SAMPLE) {
			memcpy(res->sample[j], id, BG_TRACE_ID_LEN);
		}
	}
}

/* Sends what the socket takes. Returns 0 or -errno (not -EAGAIN). */
static int pump_send(conn *c)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		c->off += (size_t)n;
	}
	return 0;
}

/* Reads and parses what arrived. Returns 0, or -1 when the connection is to be reopened. */
static int pump_recv(run *r, conn *c)
{
	char buf[16384];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		if (n == 0) {
			return -1;
		}
		size_t used = http_parser_execute(&c->hp, &r->st, buf, (size_t)n);
		if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK || used != (size_t)n) {
			return -1;
		}
		if (c->done) {
			uint64_t now = tl_mono_ns();
			/* An answer before the whole request went out (413, 503) ends the connection too. */
			bool early = c->off < c->len;
			answered(r, c, now);
			if (!c->keep_alive || early) {
				return -1;
			}
			if (now < r->t_end) {
				start_request(r, c);
			}
			return 0;
		}
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int bl_run(const bl_opts *o, bg_set *s, bl_result *res)
{
	memset(res, 0, sizeof(*res));
	run *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		return -ENOMEM;
	}
	r->o = o;
	r->s = s;
	r->res = res;
	r->rng = UINT64_C(0x2545f4914f6cdd1d);
	r->lat_us = malloc(LAT_CAP * sizeof(*r->lat_us));
	unsigned k = o->conns < MAX_CONNS ? o->conns : MAX_CONNS;
	http_parser_settings_init(&r->st);
	r->st.on_headers_complete = on_headers_complete;
	r->st.on_body = on_body;
	r->st.on_message_complete = on_message_complete;
	int rc = 0;
	for (unsigned i = 0; i < k; i++) {
		r->c[i].fd = -1;
		r->c[i].buf = malloc(HDR_CAP + s->max_len);
		if (r->c[i].buf == NULL || r->lat_us == NULL) {
			rc = -ENOMEM;
			goto out;
		}
	}
	uint64_t t0 = tl_mono_ns();
	r->t_measure = t0 + (uint64_t)(o->warmup_s * 1e9);
	r->t_end = r->t_measure + (uint64_t)(o->duration_s * 1e9);
	uint64_t next_tick = r->t_measure;
	struct pollfd pf[MAX_CONNS];
	int open_fail = 0;
	for (;;) {
		uint64_t now = tl_mono_ns();
		if (now >= r->t_end) {
			break;
		}
		if (o->tick != NULL && now >= next_tick) {
			o->tick(o->tick_arg);
			next_tick = now + UINT64_C(200000000);
		}
		for (unsigned i = 0; i < k; i++) {
			conn *c = &r->c[i];
			pf[i].fd = -1;
			pf[i].events = 0;
			pf[i].revents = 0;
			if (c->fd < 0) {
				if ((rc = conn_open(r, c)) != 0) {
					if (++open_fail > 100) {
						goto out;
					}
					continue;
				}
				rc = 0;
			}
			if (!c->in_flight) {
				start_request(r, c);
			}
			pf[i].fd = c->fd;
			pf[i].events = (short)(POLLIN | (c->off < c->len ? POLLOUT : 0));
			pf[i].revents = 0;
		}
		int n = poll(pf, k, 20);
		if (n < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
		for (unsigned i = 0; n > 0 && i < k; i++) {
			conn *c = &r->c[i];
			if (pf[i].revents == 0 || c->fd < 0 || pf[i].fd != c->fd) {
				continue;
			}
			int bad = 0;
			if (pf[i].revents & POLLOUT) {
				bad = pump_send(c) != 0;
			}
			if (!bad && (pf[i].revents & (POLLIN | POLLHUP | POLLERR))) {
				bad = pump_recv(r, c) != 0;
			}
			if (bad) {
				/* A close after a complete, non-keep-alive answer is not an error. */
				if (c->in_flight) {
					res->errors++;
				}
				conn_close(c);
			}
		}
	}
out:
	res->seconds = o->duration_s;
	for (unsigned i = 0; i < k; i++) {
		conn_close(&r->c[i]);
		free(r->c[i].buf);
	}
	if (r->nlat > 0) {
		qsort(r->lat_us, r->nlat, sizeof(*r->lat_us), cmp_u32);
		res->lat_p50_ms = r->lat_us[r->nlat / 2] / 1000.0;
		res->lat_p99_ms = r->lat_us[(r->nlat * 99) / 100] / 1000.0;
		res->lat_max_ms = r->lat_us[r->nlat - 1] / 1000.0;
	}
	free(r->lat_us);
	free(r);
	return rc;
}
