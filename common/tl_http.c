/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/1.1 server: libuv connections around the socket-free parsing
 * core in tl_http_parse.c. A connection hands one request at a time to the
 * handler and parses nothing more until it is answered; it keeps reading
 * meanwhile (into a fixed buffer, stopping when full) so that a client that
 * goes away is noticed and its pending request becomes orphaned. A request
 * owns no reference to its connection's memory: closing a connection only
 * clears req->conn, and tl_http_respond() then frees the request and
 * reports TL_ECLOSED.
 *
 * Each connection has one timer, used in turn as the idle timeout (no
 * request in progress), the read deadline (a request has begun), or the
 * linger deadline (a final response is being flushed and the rest of the
 * input discarded before the close, so the client gets to read it).
 */
#include "tl_http.h"

#include "tl_error.h"
#include "tl_http_parse.h"

#include <errno.h>
#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Socket read buffer per connection; also the most unparsed input a connection holds. */
#define IN_SIZE (64u * 1024)
/* Parsing pauses while more than this much response data waits for the client to read it. */
#define WRITE_BACKLOG (256u * 1024)
/* The longest a connection lingers after its final response. */
#define LINGER_MS 2000u
#define LISTEN_BACKLOG 511

enum { TM_NONE, TM_IDLE, TM_READ, TM_LINGER };

typedef struct conn conn;

struct tl_http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	tl_http_limits lim;
	tl_http_handler handler;
	void *ud;
	conn *conns;   /* open connections, for close */
	unsigned live; /* handles and connections not yet freed, the listener included */
	tl_http_stats stats;
	int port;
	bool listening;
	bool closing;
	void (*close_cb)(void *ud);
	void *close_ud;
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shut;
	tl_http_server *s;
	conn *prev, *next;
	tl_http_parse *parse;
	char *in; /* IN_SIZE bytes; unparsed input is in[in_off, in_len) */
	size_t in_off, in_len;
	tl_http_req *req; /* with the handler, not yet answered */
	unsigned writes;  /* uv_write requests in flight */
	int handles;      /* handles still to close before the memory goes */
	int timer_mode;
	bool reading;
	bool closing;
	bool draining; /* the final response is queued: input is discarded */
	bool eof;
	bool in_process; /* conn_process() is on the stack */
};

typedef struct wreq {
	uv_write_t w;
	conn *c;
	bool last; /* the connection closes once this is written */
	char data[];
} wreq;

static void conn_process(conn *c);
static void update_io(conn *c);

void tl_http_limits_default(tl_http_limits *l)
{
	l->max_header_bytes = 16u * 1024;
	l->max_body_bytes = 8u * 1024 * 1024;
	l->max_wire_body_bytes = 8u * 1024 * 1024;
	l->read_timeout_ms = 10000;
	l->idle_timeout_ms = 60000;
	l->max_connections = 1024;
}

static void maybe_free_server(tl_http_server *s)
{
	if (!s->closing || s->live > 0)
		return;
	void (*cb)(void *) = s->close_cb;
	void *ud = s->close_ud;
	free(s);
	if (cb != NULL)
		cb(ud);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
	conn *c = h->data;
	if (--c->handles > 0)
		return;
	tl_http_server *s = c->s;
	tl_http_parse_free(c->parse);
	free(c->in);
	free(c);
	s->live--;
	maybe_free_server(s);
}

/* Closes the connection now; a request still with the handler is orphaned. */
static void conn_close(conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->req != NULL) {
		c->req->conn = NULL;
		c->req = NULL;
	}
	tl_http_server *s = c->s;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	s->stats.connections_open--;
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void set_timer(conn *c, int mode, uint64_t ms);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	conn *c = req->data;
	if (status < 0 && !c->closing)
		conn_close(c);
}

static void on_write(uv_write_t *w, int status)
{
	wreq *wr = container_of(w, wreq, w);
	conn *c = wr->c;
	bool last = wr->last;
	free(wr);
	c->writes--;
	if (c->closing)
		return;
	if (status < 0 || (last && c->eof)) {
		conn_close(c);
		return;
	}
	if (last) {
		/* Half-close, then wait for the client's EOF (or the linger deadline). */
		c->shut.data = c;
		if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
			conn_close(c);
		return;
	}
	conn_process(c);
}

/* Queues wr (len bytes of data); takes ownership. Returns 0 or TL_ECLOSED (the connection is then closed). */
static int conn_write(conn *c, wreq *wr, size_t len, bool last)
{
	wr->c = c;
	wr->last = last;
	uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
	if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
		free(wr);
		conn_close(c);
		return TL_ECLOSED;
	}
	c->writes++;
	if (last) {
		/* Nothing more is parsed; what still arrives is read and dropped until the close. */
		c->draining = true;
		c->in_off = c->in_len = 0;
		set_timer(c, TM_LINGER, LINGER_MS);
		update_io(c);
	}
	return 0;
}

/* A header from the handler that holds CR or LF is left out: it could forge headers or a second response. */
static bool header_ok(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static const char *reason(int status)
{
	const char *r = http_status_str((enum http_status)status);
	return strcmp(r, "<unknown>") == 0 ? "Unknown" : r;
}

/*
 * Formats a complete response (status line, headers, body) into one
 * allocation and queues it. head: the body is counted but not sent.
 */
static int send_response(conn *c, int status, const char *ctype, const void *body, size_t len,
                         const tl_http_header *extra, size_t nextra, bool head, bool close, bool ka10)
{
	bool bodyless = (status >= 100 && status < 200) || status == 204 || status == 304;
	size_t cap = 160;
	if (header_ok(ctype))
		cap += strlen(ctype) + 16;
	for (size_t i = 0; i < nextra; i++)
		if (header_ok(extra[i].name) && header_ok(extra[i].value))
			cap += strlen(extra[i].name) + strlen(extra[i].value) + 4;
	size_t sent = (head || bodyless) ? 0 : len;
	wreq *wr = malloc(sizeof(*wr) + cap + sent);
	if (wr == NULL) {
		conn_close(c);
		return TL_ECLOSED;
	}
	char *p = wr->data;
	size_t n = 0;
	n += (size_t)snprintf(p + n, cap - n, "HTTP/1.1 %d %s\r\n", status, reason(status));
	if (header_ok(ctype) && n < cap)
		n += (size_t)snprintf(p + n, cap - n, "Content-Type: %s\r\n", ctype);
	if (!bodyless && n < cap)
		n += (size_t)snprintf(p + n, cap - n, "Content-Length: %zu\r\n", len);
	if (close && n < cap)
		n += (size_t)snprintf(p + n, cap - n, "Connection: close\r\n");
	else if (ka10 && n < cap)
		n += (size_t)snprintf(p + n, cap - n, "Connection: keep-alive\r\n");
	for (size_t i = 0; i < nextra && n < cap; i++)
		if (header_ok(extra[i].name) && header_ok(extra[i].value) && extra[i].name[0] != 0)
			n += (size_t)snprintf(p + n, cap - n, "%s: %s\r\n", extra[i].name, extra[i].value);
	if (n + 2 >= cap) {
		/* The estimate above always leaves room; refuse rather than send a cut header. */
		free(wr);
		conn_close(c);
		return TL_ECLOSED;
	}
	p[n++] = '\r';
	p[n++] = '\n';
	if (sent > 0) {
		memcpy(p + n, body, sent);
		n += sent;
	}
	return conn_write(c, wr, n, close);
}

/* Answers an error found by the server itself, then closes. */
static void send_error(conn *c, int status, const char *msg)
{
	tl_http_stats *st = &c->s->stats;
	if (status == 413 || status == 431)
		st->too_large++;
	else if (status == 408)
		st->timeouts++;
	else if (status == 400 || status == 415)
		st->bad_requests++;
	char body[320];
	int n = snprintf(body, sizeof(body), "%s\n", msg);
	size_t len = n < 0 ? 0 : (size_t)n >= sizeof(body) ? sizeof(body) - 1 : (size_t)n;
	send_response(c, status, "text/plain; charset=utf-8", body, len, NULL, 0, false, true, false);
}

static void on_timer(uv_timer_t *t)
{
	conn *c = t->data;
	int mode = c->timer_mode;
	c->timer_mode = TM_NONE;
	if (c->closing)
		return;
	if (mode == TM_READ && c->req == NULL && !c->draining) {
		char msg[96];
		snprintf(msg, sizeof(msg), "request not completed within %llu ms",
		         (unsigned long long)c->s->lim.read_timeout_ms);
		send_error(c, 408, msg);
		return;
	}
	conn_close(c);
}

static void set_timer(conn *c, int mode, uint64_t ms)
{
	if (mode == TM_NONE) {
		uv_timer_stop(&c->timer);
	} else {
		uv_timer_start(&c->timer, on_timer, ms, 0);
	}
	c->timer_mode = mode;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	conn *c = h->data;
	if (c->draining || c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
	} else if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	*buf = uv_buf_init(c->in + c->in_len, (unsigned)(IN_SIZE - c->in_len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	conn *c = st->data;
	if (c->closing)
		return;
	if (nread < 0) {
		/*
		 * EOF or an error. A client that half-closes is treated as gone:
		 * a request still with the handler is orphaned. Only a final
		 * response still being written is waited for.
		 */
		c->eof = true;
		if (c->draining && c->writes > 0) {
			uv_read_stop(st);
			c->reading = false;
			return;
		}
		conn_close(c);
		return;
	}
	if (c->draining)
		return;
	c->in_len += (size_t)nread;
	conn_process(c);
}

/* Starts or stops reading and picks the timer for the connection's state. */
static void update_io(conn *c)
{
	if (c->closing)
		return;
	bool want = !c->eof && (c->draining || c->in_len < IN_SIZE);
	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
			conn_close(c);
			return;
		}
		c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	if (c->draining)
		return;
	if (c->req != NULL) {
		if (c->timer_mode != TM_NONE)
			set_timer(c, TM_NONE, 0);
	} else if (tl_http_parse_started(c->parse)) {
		if (c->timer_mode != TM_READ)
			set_timer(c, TM_READ, c->s->lim.read_timeout_ms);
	} else if (c->timer_mode != TM_IDLE) {
		set_timer(c, TM_IDLE, c->s->lim.idle_timeout_ms);
	}
}

static bool write_backlog(conn *c)
{
	return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_BACKLOG;
}

static void dispatch(conn *c)
{
	tl_http_req *r = tl_http_parse_take(c->parse);
	if (r == NULL)
		return;
	r->conn = c;
	c->req = r;
	c->s->stats.requests++;
	/* The next request's deadline starts when its own first byte is parsed. */
	set_timer(c, TM_NONE, 0);
	c->s->handler(r, c->s->ud);
}

/* Parses buffered input and hands out requests while nothing blocks it. */
static void conn_process(conn *c)
{
	if (c->in_process || c->closing)
		return;
	c->in_process = true;
	while (!c->closing && !c->draining && c->req == NULL && c->in_off < c->in_len && !write_backlog(c)) {
		size_t used = 0;
		int ev = tl_http_parse_feed(c->parse, c->in + c->in_off, c->in_len - c->in_off, &used);
		c->in_off += used;
		if (ev == TL_HTTP_PARSE_REQUEST) {
			dispatch(c);
		} else if (ev == TL_HTTP_PARSE_CONTINUE) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			wreq *wr = malloc(sizeof(*wr) + sizeof(cont));
			if (wr == NULL) {
				conn_close(c);
				break;
			}
			memcpy(wr->data, cont, sizeof(cont) - 1);
			conn_write(c, wr, sizeof(cont) - 1, false);
		} else if (ev == TL_HTTP_PARSE_ERROR) {
			const char *msg;
			int status = tl_http_parse_error(c->parse, &msg);
			send_error(c, status, msg);
		}
	}
	if (!c->closing && c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	c->in_process = false;
	update_io(c);
}

static void on_refused_closed(uv_handle_t *h)
{
	tl_http_server *s = h->data;
	free(h);
	s->live--;
	maybe_free_server(s);
}

static void refuse(tl_http_server *s)
{
	uv_tcp_t *t = malloc(sizeof(*t));
	if (t == NULL || uv_tcp_init(s->loop, t) != 0) {
		free(t);
		return;
	}
	t->data = s;
	s->live++;
	if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t) == 0)
		s->stats.connections_refused++;
	uv_close((uv_handle_t *)t, on_refused_closed);
}

static void on_connection(uv_stream_t *l, int status)
{
	tl_http_server *s = l->data;
	if (status < 0 || s->closing)
		return;
	if (s->stats.connections_open >= s->lim.max_connections) {
		refuse(s);
		return;
	}
	conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		refuse(s);
		return;
	}
	c->s = s;
	c->in = malloc(IN_SIZE);
	if (c->in == NULL || tl_http_parse_new(&s->lim, &c->parse) != 0 || uv_tcp_init(s->loop, &c->tcp) != 0) {
		tl_http_parse_free(c->parse);
		free(c->in);
		free(c);
		refuse(s);
		return;
	}
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	s->live++;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->stats.connections_open++;
	if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	s->stats.connections_accepted++;
	uv_tcp_nodelay(&c->tcp, 1);
	update_io(c);
}

int tl_http_server_new(uv_loop_t *loop, const tl_http_limits *lim, tl_http_handler handler, void *ud,
                       tl_http_server **out)
{
	tl_http_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	tl_http_limits def;
	tl_http_limits_default(&def);
	s->lim = lim != NULL ? *lim : def;
	/* A zero limit means "not configured": take the default rather than refuse everything. */
	if (s->lim.max_header_bytes == 0)
		s->lim.max_header_bytes = def.max_header_bytes;
	if (s->lim.max_body_bytes == 0)
		s->lim.max_body_bytes = def.max_body_bytes;
	if (s->lim.max_wire_body_bytes == 0)
		s->lim.max_wire_body_bytes = def.max_wire_body_bytes;
	if (s->lim.read_timeout_ms == 0)
		s->lim.read_timeout_ms = def.read_timeout_ms;
	if (s->lim.idle_timeout_ms == 0)
		s->lim.idle_timeout_ms = def.idle_timeout_ms;
	if (s->lim.max_connections == 0)
		s->lim.max_connections = def.max_connections;
	s->loop = loop;
	s->handler = handler;
	s->ud = ud;
	int rc = uv_tcp_init(loop, &s->listener);
	if (rc != 0) {
		free(s);
		return rc;
	}
	s->listener.data = s;
	s->live = 1;
	*out = s;
	return 0;
}

/* Parses "HOST:PORT" / "[V6]:PORT" into addr. */
static int parse_hostport(const char *hp, struct sockaddr_storage *addr)
{
	char host[64];
	const char *port;
	if (hp == NULL)
		return TL_EINVALID;
	if (hp[0] == '[') {
		const char *end = strchr(hp, ']');
		if (end == NULL || end[1] != ':' || (size_t)(end - hp - 1) >= sizeof(host))
			return TL_EINVALID;
		memcpy(host, hp + 1, (size_t)(end - hp - 1));
		host[end - hp - 1] = 0;
		port = end + 2;
	} else {
		const char *colon = strrchr(hp, ':');
		if (colon == NULL || (size_t)(colon - hp) >= sizeof(host) || memchr(hp, ':', (size_t)(colon - hp)))
			return TL_EINVALID;
		memcpy(host, hp, (size_t)(colon - hp));
		host[colon - hp] = 0;
		port = colon + 1;
	}
	if (*port == 0 || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
		return TL_EINVALID;
	int pnum = atoi(port);
	if (pnum > 65535)
		return TL_EINVALID;
	if (hp[0] == '[')
		return uv_ip6_addr(host, pnum, (struct sockaddr_in6 *)addr) == 0 ? 0 : TL_EINVALID;
	if (host[0] == 0)
		strcpy(host, "0.0.0.0");
	else if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	return uv_ip4_addr(host, pnum, (struct sockaddr_in *)addr) == 0 ? 0 : TL_EINVALID;
}

int tl_http_server_listen(tl_http_server *s, const char *hostport)
{
	struct sockaddr_storage addr;
	memset(&addr, 0, sizeof(addr));
	if (s->listening || s->closing)
		return TL_EINVALID;
	int rc = parse_hostport(hostport, &addr);
	if (rc != 0)
		return rc;
	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
	if (rc != 0)
		return rc;
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
	if (rc != 0)
		return rc;
	if (bound.ss_family == AF_INET6)
		s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
	else
		s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	s->listening = true;
	return 0;
}

int tl_http_server_port(const tl_http_server *s)
{
	return s->port;
}

static void on_listener_closed(uv_handle_t *h)
{
	tl_http_server *s = h->data;
	s->live--;
	maybe_free_server(s);
}

void tl_http_server_close(tl_http_server *s, void (*cb)(void *ud), void *ud)
{
	if (s == NULL || s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_ud = ud;
	while (s->conns != NULL)
		conn_close(s->conns);
	uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

void tl_http_server_stats(const tl_http_server *s, tl_http_stats *out)
{
	*out = s->stats;
}

int tl_http_respond(tl_http_req *req, int status, const char *content_type, const void *body, size_t len,
                    const tl_http_header *extra, size_t nextra)
{
	conn *c = req->conn;
	if (c == NULL || c->closing || c->req != req) {
		tl_http_req_free(req);
		return TL_ECLOSED;
	}
	bool close = !req->keep_alive || c->s->closing || tl_http_parse_done(c->parse);
	bool ka10 = !close && req->major == 1 && req->minor == 0;
	bool head = req->head;
	c->req = NULL;
	req->conn = NULL;
	int rc = send_response(c, status, content_type, body, len, extra, nextra, head, close, ka10);
	/* The body may point into the request (an echo): free it only after the copy. */
	tl_http_req_free(req);
	if (rc != 0)
		return rc;
	/* Synchronous answers return to conn_process()'s loop; later ones restart parsing here. */
	if (!c->in_process && !c->closing)
		conn_process(c);
	return 0;
}
