/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test kit implementation: everything blocking and simple. Processes are
 * started with fork/exec (not posix_spawn) so the child can ask for
 * PR_SET_PDEATHSIG before exec: Criterion runs each test in its own worker
 * process, and a worker that dies must not leave daemons behind.
 */
#include "tl_testkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <zlib.h>

#include "tl_error.h"

#define RUN_CAP ((size_t)64 << 20)

int64_t tk_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
	int64_t r = deadline - tk_now_ms();
	return r < 0 ? 0 : (int)r;
}

void tk_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* ---- files and directories ---- */

int tk_tmpdir(const char *tag, char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	int n = snprintf(out, cap, "%s/tl-%s-XXXXXX", base, tag != NULL ? tag : "test");
	if (n < 0 || (size_t)n >= cap)
		return TL_ELIMIT;
	if (mkdtemp(out) == NULL)
		return -errno;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = (flag == FTW_DP || flag == FTW_D) ? rmdir(path) : unlink(path);
	return rc != 0 && errno != ENOENT ? -errno : 0;
}

int tk_rmrf(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return 0;
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return errno == ENOENT ? 0 : -errno;
	return 0;
}

char *tk_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf != NULL) {
		if (n + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	if (buf == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
}

int tk_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -errno;
	int rc = len > 0 && fwrite(data, 1, len, f) != len ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* One gzip member of data[0, len) appended to f. */
static int gz_member(FILE *f, const unsigned char *data, size_t len)
{
	uLong cap = compressBound((uLong)len) + 64;
	unsigned char *out = malloc(cap);
	if (out == NULL)
		return -ENOMEM;
	z_stream z;
	memset(&z, 0, sizeof(z));
	int rc = TL_EINVALID;
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
		z.next_in = (unsigned char *)(uintptr_t)data;
		z.avail_in = (uInt)len;
		z.next_out = out;
		z.avail_out = (uInt)cap;
		if (deflate(&z, Z_FINISH) == Z_STREAM_END)
			rc = fwrite(out, 1, z.total_out, f) == z.total_out ? 0 : -EIO;
		deflateEnd(&z);
	}
	free(out);
	return rc;
}

int tk_write_gz(const char *path, const void *data, size_t len, int members)
{
	if (members < 1)
		return TL_EINVALID;
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -errno;
	const unsigned char *p = data;
	size_t per = len / (size_t)members + 1;
	int rc = 0;
	size_t off = 0;
	do {
		size_t n = len - off < per ? len - off : per;
		rc = gz_member(f, p + off, n);
		off += n;
	} while (rc == 0 && off < len);
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* ---- ports ---- */

static void loopback(struct sockaddr_in *sa, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int tk_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa;
	loopback(&sa, 0);
	socklen_t sl = sizeof(sa);
	int rc = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
		rc = -errno;
	close(fd);
	return rc != 0 ? rc : ntohs(sa.sin_port);
}

int tk_listen(int port, int *bound)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa;
	loopback(&sa, port);
	socklen_t sl = sizeof(sa);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (bound != NULL)
		*bound = ntohs(sa.sin_port);
	return fd;
}

int tk_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa;
	loopback(&sa, port);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int tk_wait_port(int port, int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	for (;;) {
		int fd = tk_connect(port);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (tk_now_ms() >= deadline)
			return TL_ETIMEOUT;
		tk_sleep_ms(20);
	}
}

/* ---- processes ---- */

int tk_spawn(tk_proc *p, const char *dir, const char *name, char *const argv[])
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	if (snprintf(p->out_path, sizeof(p->out_path), "%s/%s.out", dir, name) >= (int)sizeof(p->out_path) ||
	    snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", dir, name) >= (int)sizeof(p->err_path))
		return TL_ELIMIT;
	int out = open(p->out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (out < 0)
		return -errno;
	int err = open(p->err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (err < 0) {
		int e = -errno;
		close(out);
		return e;
	}
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(out);
		close(err);
		return e;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here to exec. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		int in = open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(126);
		/* A signal mask inherited from the test runner must not reach the daemon. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out);
	close(err);
	p->pid = pid;
	return 0;
}

bool tk_alive(tk_proc *p)
{
	if (p->pid <= 0)
		return false;
	int st;
	pid_t r = waitpid(p->pid, &st, WNOHANG);
	if (r == p->pid || (r < 0 && errno == ECHILD)) {
		p->status = r == p->pid ? st : 0;
		p->pid = 0;
		return false;
	}
	return true;
}

bool tk_log_contains(const tk_proc *p, const char *needle)
{
	char *log = tk_read_file(p->err_path, NULL);
	bool found = log != NULL && strstr(log, needle) != NULL;
	free(log);
	return found;
}

int tk_wait_log(tk_proc *p, const char *needle, int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	for (;;) {
		if (tk_log_contains(p, needle))
			return 0;
		if (!tk_alive(p))
			return tk_log_contains(p, needle) ? 0 : -ECHILD;
		if (tk_now_ms() >= deadline)
			return TL_ETIMEOUT;
		tk_sleep_ms(20);
	}
}

static int wait_exit(tk_proc *p, int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	while (tk_alive(p)) {
		if (tk_now_ms() >= deadline)
			return TL_ETIMEOUT;
		tk_sleep_ms(10);
	}
	return 0;
}

void tk_kill(tk_proc *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	int st;
	while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
	}
	p->status = st;
	p->pid = 0;
}

int tk_stop(tk_proc *p, int timeout_ms)
{
	if (p->pid <= 0)
		return 0;
	kill(p->pid, SIGTERM);
	if (wait_exit(p, timeout_ms) == 0)
		return 0;
	tk_kill(p);
	return TL_ETIMEOUT;
}

int tk_exit_code(const tk_proc *p)
{
	if (p->pid > 0 || !WIFEXITED(p->status))
		return -1;
	return WEXITSTATUS(p->status);
}

/* ---- running a command to completion ---- */

typedef struct sink {
	char *buf;
	size_t len, cap;
} sink;

static int sink_add(sink *s, const char *d, size_t n)
{
	if (s->len + n + 1 > RUN_CAP)
		n = RUN_CAP - 1 - s->len;
	if (s->len + n + 1 > s->cap) {
		size_t nc = s->cap ? s->cap : 4096;
		while (nc < s->len + n + 1)
			nc *= 2;
		char *nb = realloc(s->buf, nc);
		if (nb == NULL)
			return -ENOMEM;
		s->buf = nb;
		s->cap = nc;
	}
	memcpy(s->buf + s->len, d, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return 0;
}

int tk_run(char *const argv[], int timeout_ms, tk_output *o)
{
	memset(o, 0, sizeof(*o));
	o->exit_code = -1;
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) != 0)
		return -errno;
	if (pipe2(pe, O_CLOEXEC) != 0) {
		int e = -errno;
		close(po[0]);
		close(po[1]);
		return e;
	}
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(po[0]);
		close(po[1]);
		close(pe[0]);
		close(pe[1]);
		return e;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		int in = open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	sink so = {0}, se = {0};
	sink_add(&so, "", 0);
	sink_add(&se, "", 0);
	struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
	sink *sinks[2] = {&so, &se};
	int open_fds = 2, rc = 0;
	int64_t deadline = tk_now_ms() + timeout_ms;
	while (open_fds > 0) {
		int left = remaining_ms(deadline);
		if (left == 0) {
			rc = TL_ETIMEOUT;
			break;
		}
		int n = poll(pf, 2, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pf[i].fd < 0 || pf[i].revents == 0)
				continue;
			char buf[16384];
			ssize_t got = read(pf[i].fd, buf, sizeof(buf));
			if (got > 0) {
				if (sink_add(sinks[i], buf, (size_t)got) != 0)
					rc = -ENOMEM;
			} else if (got == 0 || errno != EINTR) {
				close(pf[i].fd);
				pf[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (pf[i].fd >= 0)
			close(pf[i].fd);
	if (rc == TL_ETIMEOUT)
		kill(pid, SIGKILL);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	if (WIFEXITED(st)) {
		o->exit_code = WEXITSTATUS(st);
	} else if (WIFSIGNALED(st)) {
		o->signo = WTERMSIG(st);
	}
	o->out = so.buf;
	o->out_len = so.len;
	o->err = se.buf;
	o->err_len = se.len;
	return rc;
}

void tk_output_fini(tk_output *o)
{
	free(o->out);
	free(o->err);
	memset(o, 0, sizeof(*o));
	o->exit_code = -1;
}

/* ---- HTTP/1.1 client ---- */

int tk_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int tk_http_send(int fd, const char *method, const char *path, const tk_header *hdrs, size_t nhdrs, const void *body,
                 size_t body_len, bool *early)
{
	if (early != NULL)
		*early = false;
	sink head = {0};
	char line[1024];
	snprintf(line, sizeof(line), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path);
	int rc = sink_add(&head, line, strlen(line));
	bool has_len = false;
	for (size_t i = 0; i < nhdrs && rc == 0; i++) {
		if (strcasecmp(hdrs[i].name, "content-length") == 0)
			has_len = true;
		snprintf(line, sizeof(line), "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
		rc = sink_add(&head, line, strlen(line));
	}
	if (rc == 0 && body != NULL && !has_len) {
		snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body_len);
		rc = sink_add(&head, line, strlen(line));
	}
	if (rc == 0)
		rc = sink_add(&head, "\r\n", 2);
	if (rc == 0)
		rc = tk_send_all(fd, head.buf, head.len);
	free(head.buf);
	if (rc != 0 || body == NULL)
		return rc;

	/* The body goes in slices; between them, look for an early answer. */
	const char *p = body;
	size_t left = body_len;
	while (left > 0) {
		struct pollfd pf = {.fd = fd, .events = POLLIN | POLLOUT};
		if (poll(&pf, 1, 10000) <= 0)
			return TL_ETIMEOUT;
		if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (early != NULL)
				*early = true;
			return 0;
		}
		size_t n = left < 65536 ? left : 65536;
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		p += w;
		left -= (size_t)w;
	}
	return 0;
}

typedef struct resp_ctx {
	tk_http_resp *r;
	sink field;
	sink value;
	bool in_value;
	sink body;
	bool done;
	int err;
} resp_ctx;

static int flush_header(resp_ctx *c)
{
	if (c->field.len == 0)
		return 0;
	tk_http_resp *r = c->r;
	if (r->nheaders < TK_HTTP_MAX_HEADERS) {
		for (size_t i = 0; i < c->field.len; i++)
			c->field.buf[i] = (char)(c->field.buf[i] >= 'A' && c->field.buf[i] <= 'Z' ? c->field.buf[i] + 32
			                                                                          : c->field.buf[i]);
		r->headers[r->nheaders].name = strndup(c->field.buf, c->field.len);
		r->headers[r->nheaders].value = strndup(c->value.len ? c->value.buf : "", c->value.len);
		r->nheaders++;
	}
	c->field.len = 0;
	c->value.len = 0;
	c->in_value = false;
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	resp_ctx *c = hp->data;
	if (c->in_value)
		flush_header(c);
	return sink_add(&c->field, at, len) != 0 ? -1 : 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	resp_ctx *c = hp->data;
	c->in_value = true;
	return sink_add(&c->value, at, len) != 0 ? -1 : 0;
}

static int on_headers_complete(http_parser *hp)
{
	resp_ctx *c = hp->data;
	flush_header(c);
	c->r->status = hp->status_code;
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	resp_ctx *c = hp->data;
	return sink_add(&c->body, at, len) != 0 ? -1 : 0;
}

static int on_message_complete(http_parser *hp)
{
	resp_ctx *c = hp->data;
	c->done = true;
	c->r->keep_alive = http_should_keep_alive(hp) != 0;
	http_parser_pause(hp, 1);
	return 0;
}

int tk_http_read(int fd, int timeout_ms, tk_http_resp *r)
{
	memset(r, 0, sizeof(*r));
	http_parser_settings st;
	http_parser_settings_init(&st);
	st.on_header_field = on_header_field;
	st.on_header_value = on_header_value;
	st.on_headers_complete = on_headers_complete;
	st.on_body = on_body;
	st.on_message_complete = on_message_complete;
	http_parser hp;
	http_parser_init(&hp, HTTP_RESPONSE);
	resp_ctx c = {.r = r};
	hp.data = &c;
	sink_add(&c.body, "", 0);
	int64_t deadline = tk_now_ms() + timeout_ms;
	int rc = 0;
	bool any = false;
	while (!c.done) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int left = remaining_ms(deadline);
		int n = left > 0 ? poll(&pf, 1, left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			rc = TL_ETIMEOUT;
			break;
		}
		char buf[16384];
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			break;
		}
		/* At EOF http-parser is told so (len 0): that ends an until-close body. */
		size_t used = http_parser_execute(&hp, &st, buf, (size_t)got);
		if (c.done)
			break;
		if (HTTP_PARSER_ERRNO(&hp) != HPE_OK || used != (size_t)got) {
			rc = TL_EPARSE;
			break;
		}
		if (got == 0) {
			rc = any ? TL_EPARSE : TL_ECLOSED;
			break;
		}
		any = true;
	}
	free(c.field.buf);
	free(c.value.buf);
	r->body = c.body.buf;
	r->body_len = c.body.len;
	if (rc != 0)
		tk_http_resp_fini(r);
	return rc;
}

int tk_http(int port, const char *method, const char *path, const tk_header *hdrs, size_t nhdrs, const void *body,
            size_t body_len, int timeout_ms, tk_http_resp *r)
{
	memset(r, 0, sizeof(*r));
	int fd = tk_connect(port);
	if (fd < 0)
		return fd;
	int rc = tk_http_send(fd, method, path, hdrs, nhdrs, body, body_len, NULL);
	/* Even when sending failed part way, the server may have answered (413): read it. */
	int rrc = tk_http_read(fd, timeout_ms, r);
	close(fd);
	return rrc == 0 ? 0 : (rc != 0 ? rc : rrc);
}

const char *tk_http_header(const tk_http_resp *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

void tk_http_resp_fini(tk_http_resp *r)
{
	for (size_t i = 0; i < r->nheaders; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	free(r->body);
	memset(r, 0, sizeof(*r));
}

int tk_wait_closed(int fd, int timeout_ms)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int left = remaining_ms(deadline);
		int n = left > 0 ? poll(&pf, 1, left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return TL_ETIMEOUT;
		char buf[4096];
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
			return 0;
	}
}

/* ---- a collector + agent pair ---- */

const char *tk_bin(const char *env)
{
	const char *v = getenv(env);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

void tk_stack_dump_logs(const tk_stack *s)
{
	const tk_proc *ps[2] = {&s->collector, &s->agent};
	for (int i = 0; i < 2; i++) {
		if (ps[i]->err_path[0] == '\0')
			continue;
		size_t len = 0;
		char *log = tk_read_file(ps[i]->err_path, &len);
		if (log == NULL)
			continue;
		const char *tail = len > 3000 ? log + len - 3000 : log;
		fprintf(stderr, "---- %s stderr (%s) ----\n%s\n", ps[i]->name, ps[i]->err_path, tail);
		free(log);
	}
}

int tk_stack_stop_checked(tk_stack *s, int timeout_ms, char *why, size_t cap)
{
	static const char *const reports[] = {"runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"};
	tk_proc *ps[2] = {&s->agent, &s->collector};
	for (int i = 0; i < 2; i++) {
		int rc = tk_stop(ps[i], timeout_ms);
		if (rc != 0 || tk_exit_code(ps[i]) != 0) {
			snprintf(why, cap, "%s did not exit cleanly on SIGTERM: %s, wait status 0x%x (logs in %s)",
			         ps[i]->name, rc != 0 ? "had to be killed" : "non-zero exit", ps[i]->status, s->dir);
			return rc != 0 ? rc : TL_EINVALID;
		}
		for (size_t k = 0; k < sizeof(reports) / sizeof(reports[0]); k++) {
			if (tk_log_contains(ps[i], reports[k])) {
				snprintf(why, cap, "%s logged a sanitizer report (\"%s\"); see %s", ps[i]->name,
				         reports[k], ps[i]->err_path);
				return TL_EINVALID;
			}
		}
	}
	return 0;
}

int tk_stack_wait_delivered(const tk_stack *s, int timeout_ms, char *why, size_t cap)
{
	int64_t deadline = tk_now_ms() + timeout_ms;
	for (;;) {
		double batches = -1, pending = -1;
		int rc = tk_metric(s->http_port, "threadline_agent_spool_batches", &batches);
		if (rc == 0)
			rc = tk_metric(s->http_port, "threadline_agent_pending_bytes", &pending);
		if (rc == 0 && batches == 0 && pending == 0)
			return 0;
		if (tk_now_ms() >= deadline) {
			if (rc != 0)
				snprintf(why, cap,
				         "the agent's /metrics did not say its spool was empty within %d ms: %s",
				         timeout_ms, tl_strerror(rc));
			else
				snprintf(why, cap,
				         "the agent did not deliver its spool within %d ms: %.0f batches spooled, %.0f "
				         "bytes pending",
				         timeout_ms, batches, pending);
			return TL_ETIMEOUT;
		}
		tk_sleep_ms(50);
	}
}

static int start_once(tk_stack *s, char *const extra[], char *why, size_t cap)
{
	const char *col = tk_bin(TK_ENV_COLLECTOR), *agent = tk_bin(TK_ENV_AGENT);
	if (col == NULL || agent == NULL) {
		snprintf(why, cap, "%s or %s not set (run through meson test)", TK_ENV_COLLECTOR, TK_ENV_AGENT);
		return TL_EUSAGE;
	}
	int ports[4];
	for (int i = 0; i < 4; i++) {
		ports[i] = tk_free_port();
		if (ports[i] < 0) {
			snprintf(why, cap, "no free port: %s", strerror(-ports[i]));
			return ports[i];
		}
	}
	s->intake_port = ports[0];
	s->query_port = ports[1];
	s->http_port = ports[2];
	s->api_port = ports[3];
	snprintf(s->collector_url, sizeof(s->collector_url), "tcp://127.0.0.1:%d", s->query_port);

	char data[TK_PATH_MAX + 16], spool[TK_PATH_MAX + 16], listen[64], http[64], intake[64];
	snprintf(data, sizeof(data), "%s/data", s->dir);
	snprintf(spool, sizeof(spool), "%s/spool", s->dir);
	snprintf(intake, sizeof(intake), "tcp://127.0.0.1:%d", s->intake_port);
	snprintf(listen, sizeof(listen), "%s", intake);
	snprintf(http, sizeof(http), "127.0.0.1:%d", s->http_port);
	mkdir(data, 0700);
	mkdir(spool, 0700);

	char api[64];
	snprintf(api, sizeof(api), "127.0.0.1:%d", s->api_port);
	char *cargv[] = {(char *)col, "--data",         data,     "--listen", listen,
	                 "--query",   s->collector_url, "--http", api,        NULL};
	int rc = tk_spawn(&s->collector, s->dir, "collector", cargv);
	if (rc != 0) {
		snprintf(why, cap, "spawn %s: %s", col, tl_strerror(rc));
		return rc;
	}
	rc = tk_wait_log(&s->collector, "event=collector.ready", 15000);
	if (rc != 0) {
		snprintf(why, cap, "collector not ready (%s, exit %d)", rc == TL_ETIMEOUT ? "timeout" : "exited",
		         tk_exit_code(&s->collector));
		return rc;
	}

	char *aargv[64] = {(char *)agent, "--collector",       intake,      "--http", http, "--spool",
	                   spool,         "--spool-max-bytes", TK_SPOOL_MAX};
	size_t n = 9;
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
		aargv[n++] = extra[i];
	aargv[n] = NULL;
	rc = tk_spawn(&s->agent, s->dir, "agent", aargv);
	if (rc != 0) {
		snprintf(why, cap, "spawn %s: %s", agent, tl_strerror(rc));
		return rc;
	}
	rc = tk_wait_log(&s->agent, "event=agent.ready", 15000);
	if (rc != 0) {
		snprintf(why, cap, "agent not ready (%s, exit %d)", rc == TL_ETIMEOUT ? "timeout" : "exited",
		         tk_exit_code(&s->agent));
		return rc;
	}
	return 0;
}

int tk_stack_start(tk_stack *s, const char *tag, char *const extra_agent_args[], char *why, size_t cap)
{
	memset(s, 0, sizeof(*s));
	if (tk_bin(TK_ENV_COLLECTOR) == NULL || tk_bin(TK_ENV_AGENT) == NULL) {
		snprintf(why, cap, "%s or %s not set (run through meson test)", TK_ENV_COLLECTOR, TK_ENV_AGENT);
		return TL_EUSAGE;
	}
	int rc = tk_tmpdir(tag, s->dir, sizeof(s->dir));
	if (rc != 0) {
		snprintf(why, cap, "mkdtemp: %s", tl_strerror(rc));
		return rc;
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		rc = start_once(s, extra_agent_args, why, cap);
		if (rc == 0 || rc == TL_EUSAGE)
			return rc;
		/* A port may have been taken between probing and binding: try other ports, unless it is the binary. */
		bool port_clash = tk_log_contains(&s->collector, "in use") || tk_log_contains(&s->agent, "in use") ||
		                  tk_log_contains(&s->collector, "EADDRINUSE") ||
		                  tk_log_contains(&s->agent, "EADDRINUSE");
		tk_kill(&s->agent);
		tk_kill(&s->collector);
		if (!port_clash)
			break;
	}
	return rc;
}

int tk_stack_stop(tk_stack *s, int timeout_ms)
{
	int rc = 0;
	tk_proc *ps[2] = {&s->agent, &s->collector};
	for (int i = 0; i < 2; i++) {
		if (ps[i]->name[0] == '\0')
			continue; /* never started */
		int r = tk_stop(ps[i], timeout_ms);
		if (r != 0 && rc == 0)
			rc = r;
		else if (r == 0 && tk_exit_code(ps[i]) != 0 && rc == 0)
			rc = TL_EINVALID; /* exited non-zero or by a signal, now or earlier */
	}
	if (s->dir[0] != '\0' && rc == 0 && getenv("TL_TEST_KEEP") == NULL) {
		tk_rmrf(s->dir);
		s->dir[0] = '\0';
	}
	return rc;
}

int tk_stack_trace_show(const tk_stack *s, const char *trace_hex, bool json, tk_output *out)
{
	const char *cli = tk_bin(TK_ENV_CLI);
	if (cli == NULL) {
		memset(out, 0, sizeof(*out));
		return TL_EUSAGE;
	}
	char *argv[] = {(char *)cli, "--collector",     (char *)s->collector_url, "trace",
	                "show",      (char *)trace_hex, json ? "--json" : NULL,   NULL};
	return tk_run(argv, 20000, out);
}

/* ---- one daemon of a stack at a time; metrics; memory ---- */

static size_t count_substr(const char *text, const char *needle)
{
	size_t n = 0, nl = strlen(needle);
	if (text == NULL || nl == 0)
		return 0;
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + nl, needle))
		n++;
	return n;
}

size_t tk_log_count(const tk_proc *p, const char *needle)
{
	char *log = tk_read_file(p->err_path, NULL);
	size_t n = count_substr(log, needle);
	free(log);
	return n;
}

/* Size of a file, 0 when missing. */
static size_t file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* True if what was appended to path after offset says a port was taken. */
static bool port_clash_since(const char *path, size_t offset)
{
	size_t len = 0;
	char *log = tk_read_file(path, &len);
	bool clash = log != NULL && offset <= len &&
	             (strstr(log + offset, "in use") != NULL || strstr(log + offset, "EADDRINUSE") != NULL);
	free(log);
	return clash;
}

/*
 * Spawns p (named name, in s->dir) and waits for one more line containing
 * ready than its stderr file held before. Retries while the port is taken.
 */
static int start_daemon(tk_stack *s, tk_proc *p, const char *name, char *const argv[], const char *ready,
                        int timeout_ms, char *why, size_t cap)
{
	if (tk_alive(p)) {
		snprintf(why, cap, "%s is still running (pid %d)", name, (int)p->pid);
		return TL_EINVALID;
	}
	int64_t deadline = tk_now_ms() + timeout_ms;
	for (;;) {
		char err_path[TK_PATH_MAX + 80];
		snprintf(err_path, sizeof(err_path), "%s/%s.err", s->dir, name);
		size_t offset = file_size(err_path);
		char *log = tk_read_file(err_path, NULL);
		size_t before = count_substr(log, ready);
		free(log);
		int rc = tk_spawn(p, s->dir, name, argv);
		if (rc != 0) {
			snprintf(why, cap, "spawn %s: %s", argv[0], tl_strerror(rc));
			return rc;
		}
		for (;;) {
			if (tk_log_count(p, ready) > before)
				return 0;
			if (!tk_alive(p))
				break;
			if (tk_now_ms() >= deadline) {
				tk_kill(p);
				snprintf(why, cap, "%s not ready after %d ms", name, timeout_ms);
				return TL_ETIMEOUT;
			}
			tk_sleep_ms(20);
		}
		if (tk_log_count(p, ready) > before)
			return 0; /* ready, then exited: let the caller see the exit */
		if (!port_clash_since(err_path, offset) || tk_now_ms() >= deadline) {
			snprintf(why, cap, "%s exited before it was ready (exit %d, wait status 0x%x)", name,
			         tk_exit_code(p), p->status);
			return -ECHILD;
		}
		tk_sleep_ms(100);
	}
}

int tk_stack_start_collector(tk_stack *s, char *const extra_args[], int timeout_ms, char *why, size_t cap)
{
	const char *col = tk_bin(TK_ENV_COLLECTOR);
	if (col == NULL) {
		snprintf(why, cap, "%s not set (run through meson test)", TK_ENV_COLLECTOR);
		return TL_EUSAGE;
	}
	char data[TK_PATH_MAX + 16], listen[64];
	snprintf(data, sizeof(data), "%s/data", s->dir);
	snprintf(listen, sizeof(listen), "tcp://127.0.0.1:%d", s->intake_port);
	char api[64];
	snprintf(api, sizeof(api), "127.0.0.1:%d", s->api_port);
	char *argv[64] = {(char *)col, "--data", data, "--listen", listen, "--query", s->collector_url, "--http", api};
	size_t n = 9;
	for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 63; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	return start_daemon(s, &s->collector, "collector", argv, "event=collector.ready", timeout_ms, why, cap);
}

int tk_stack_start_agent(tk_stack *s, char *const extra_args[], int timeout_ms, char *why, size_t cap)
{
	const char *agent = tk_bin(TK_ENV_AGENT);
	if (agent == NULL) {
		snprintf(why, cap, "%s not set (run through meson test)", TK_ENV_AGENT);
		return TL_EUSAGE;
	}
	char spool[TK_PATH_MAX + 16], http[64], intake[64];
	snprintf(spool, sizeof(spool), "%s/spool", s->dir);
	snprintf(intake, sizeof(intake), "tcp://127.0.0.1:%d", s->intake_port);
	snprintf(http, sizeof(http), "127.0.0.1:%d", s->http_port);
	char *argv[64] = {(char *)agent, "--collector",       intake,      "--http", http, "--spool",
	                  spool,         "--spool-max-bytes", TK_SPOOL_MAX};
	size_t n = 9;
	for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 63; i++)
		argv[n++] = extra_args[i];
	argv[n] = NULL;
	return start_daemon(s, &s->agent, "agent", argv, "event=agent.ready", timeout_ms, why, cap);
}

int tk_metric_parse(const char *text, const char *series, double *value)
{
	size_t sl = strlen(series);
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *eol = strchr(line, '\n');
		if (strncmp(line, series, sl) == 0 && line[sl] == ' ') {
			char *end;
			errno = 0;
			double v = strtod(line + sl + 1, &end);
			if (errno != 0 || end == line + sl + 1 || (*end != '\n' && *end != '\0' && *end != ' '))
				return TL_EPARSE;
			*value = v;
			return 0;
		}
		line = eol != NULL ? eol + 1 : NULL;
	}
	return TL_ENOTFOUND;
}

int tk_metric(int port, const char *series, double *value)
{
	tk_http_resp r;
	int rc = tk_http(port, "GET", "/metrics", NULL, 0, NULL, 0, 10000, &r);
	if (rc != 0)
		return rc;
	rc = r.status == 200 ? tk_metric_parse(r.body, series, value) : TL_EPROTO;
	tk_http_resp_fini(&r);
	return rc;
}

int tk_rss_anon(pid_t pid, size_t *bytes)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	char *st = tk_read_file(path, NULL);
	if (st == NULL)
		return -errno;
	int rc = TL_ENOTFOUND;
	const char *p = strstr(st, "\nRssAnon:");
	unsigned long long kib;
	if (p != NULL && sscanf(p + 9, " %llu kB", &kib) == 1) {
		*bytes = (size_t)kib * 1024;
		rc = 0;
	}
	free(st);
	return rc;
}
