/* shim.sock: one request per connection, see docs/shim.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "shim.h"

#define REQ_MAX (1 << 20)

struct client *g_clients;

void ctl_accept(int lfd)
{
	struct client *c, **tail;
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				warn(errno, "accept on shim.sock");
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c)
			die(ENOMEM, "new client");
		c->fd = fd;
		c->state = C_READ;
		for (tail = &g_clients; *tail; tail = &(*tail)->next)
			;
		*tail = c;	/* at the tail: execs run in arrival order */
	}
}

void ctl_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->dead = 1;
}

void ctl_sweep(void)
{
	struct client **pp = &g_clients, *c;

	while ((c = *pp)) {
		if (c->dead) {
			*pp = c->next;
			free(c->req);
			free(c->f);
			free(c);
		} else {
			pp = &c->next;
		}
	}
}

static void send_all(struct client *c, const char *buf, size_t len)
{
	ssize_t w;

	while (len > 0) {
		w = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			if (errno != EPIPE && errno != ECONNRESET)
				warn(errno, "reply on shim.sock");
			ctl_close(c);
			return;
		}
		buf += w;
		len -= w;
	}
}

/* Reply and, unless it is a subscription, close. */
void ctl_reply(struct client *c, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	if (c->dead)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		send_all(c, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	if (c->state != C_SUB && c->state != C_ATTACH)
		ctl_close(c);
}

/* "err MSG\n", MSG on one line, without surrounding blanks. */
void ctl_reply_err(struct client *c, const char *msg, size_t len)
{
	char *buf;
	size_t i, n = 0;

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ' ||
			   msg[len - 1] == '\r' || msg[len - 1] == '\t'))
		len--;
	while (len > 0 && (*msg == '\n' || *msg == ' ' || *msg == '\r')) {
		msg++;
		len--;
	}
	buf = malloc(len + 6);
	if (!buf)
		die(ENOMEM, "reply");
	memcpy(buf, "err ", 4);
	n = 4;
	for (i = 0; i < len; i++)
		buf[n++] = (msg[i] == '\n' || msg[i] == '\0') ? ' ' : msg[i];
	buf[n++] = '\n';
	if (!c->dead)
		send_all(c, buf, n);
	free(buf);
	ctl_close(c);
}

static void reply_errf(struct client *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_errf(struct client *c, int err, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (err)
		n += snprintf(buf + n, sizeof(buf) - n, ": %s", strerror(err));
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	ctl_reply_err(c, buf, n);
}

void ctl_notify(pid_t pid, int status, long long ns)
{
	struct client *c;
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "exit %d %d %lld\n", (int)pid, status, ns);

	for (c = g_clients; c; c = c->next)
		if (c->state == C_SUB && !c->dead)
			send_all(c, buf, n);
}

/* Raw output of `p` to the clients attached to it, as it is read and
 * before it is cut into log lines: a prompt without a newline reaches an
 * attached terminal at once. Frames: stream byte ('1' stdout or pty, '2'
 * stderr), 4-byte big-endian length, bytes. */
void ctl_forward(struct proc *p, int idx, const char *buf, size_t n)
{
	struct client *c;
	unsigned char hdr[5];

	hdr[0] = idx == S_ERR ? '2' : '1';
	hdr[1] = (unsigned char)(n >> 24);
	hdr[2] = (unsigned char)(n >> 16);
	hdr[3] = (unsigned char)(n >> 8);
	hdr[4] = (unsigned char)n;
	for (c = g_clients; c; c = c->next) {
		if (c->state != C_ATTACH || c->dead || c->attached != p)
			continue;
		/* The container's output never waits for a reader: one that
		 * lets its socket buffer fill is disconnected (send_all). */
		send_all(c, (const char *)hdr, sizeof(hdr));
		if (!c->dead)
			send_all(c, buf, n);
	}
}

/* `p` will write no more output: its attached clients get EOF. */
void ctl_detach(struct proc *p)
{
	struct client *c;

	for (c = g_clients; c; c = c->next)
		if (c->state == C_ATTACH && c->attached == p && !c->dead)
			ctl_close(c);
}

void ctl_shutdown(void)
{
	struct client *c;

	for (c = g_clients; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->state == C_QUEUED || c->state == C_RUNNING)
			reply_errf(c, 0, "container exited");
		else
			ctl_close(c);
	}
}

static struct proc *req_proc(struct client *c, const char *arg)
{
	long long v;
	struct proc *p;

	if (parse_ll(arg, &v) < 0 || v > 0x7fffffff) {
		reply_errf(c, 0, "bad pid '%s'", arg);
		return NULL;
	}
	p = proc_find((pid_t)v);
	if (!p)
		reply_errf(c, 0, "no process %lld", v);
	return p;
}

static void req_stdin(struct client *c)
{
	struct proc *p = req_proc(c, c->f[1]);
	int fd;

	if (!p)
		return;
	fd = p->st[S_PTY].fd >= 0 ? p->st[S_PTY].fd : p->stdin_fd;
	if (fd < 0) {
		reply_errf(c, 0, "stdin of %d is closed", p->pid);
		return;
	}
	if (send_fd(c->fd, "ok\n", fd) < 0)
		warn(errno, "send stdin of %d", p->pid);
	ctl_close(c);
}

static void req_attach(struct client *c)
{
	struct proc *p = req_proc(c, c->f[1]);
	int sz = 4 << 20;

	if (!p)
		return;
	/* Room for bursts while the daemon is busy; root may exceed wmem_max. */
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	c->state = C_ATTACH;
	c->attached = p;
	ctl_reply(c, "ok\n");
	if (!c->dead && !proc_streams_open(p))
		ctl_close(c);	/* nothing more will come */
}

static void req_resize(struct client *c)
{
	struct proc *p = req_proc(c, c->f[1]);
	long long cols, rows;
	struct winsize ws;

	if (!p)
		return;
	if (parse_ll(c->f[2], &cols) < 0 || parse_ll(c->f[3], &rows) < 0 ||
	    cols > 0xffff || rows > 0xffff) {
		reply_errf(c, 0, "bad size %s x %s", c->f[2], c->f[3]);
		return;
	}
	if (p->st[S_PTY].fd < 0) {
		reply_errf(c, 0, "process %d has no terminal", p->pid);
		return;
	}
	memset(&ws, 0, sizeof(ws));
	ws.ws_col = (unsigned short)cols;
	ws.ws_row = (unsigned short)rows;
	if (ioctl(p->st[S_PTY].fd, TIOCSWINSZ, &ws) < 0) {
		reply_errf(c, errno, "TIOCSWINSZ");
		return;
	}
	ctl_reply(c, "ok\n");
}

static void req_closestdin(struct client *c)
{
	struct proc *p = req_proc(c, c->f[1]);

	if (!p)
		return;
	/* A pty has no write end of its own to close: nothing to do. */
	if (p->stdin_fd >= 0) {
		close(p->stdin_fd);
		p->stdin_fd = -1;
	}
	ctl_reply(c, "ok\n");
}

static void dispatch(struct client *c)
{
	const char *cmd = c->f[0];

	if (!strcmp(cmd, "exec") && c->nf >= 4 &&
	    (!strcmp(c->f[2], "0") || !strcmp(c->f[2], "1"))) {
		if (g_init_done) {
			reply_errf(c, 0, "container exited");
			return;
		}
		c->state = C_QUEUED;
		exec_kick();
	} else if (!strcmp(cmd, "subscribe") && c->nf == 1) {
		c->state = C_SUB;
	} else if (!strcmp(cmd, "attach") && c->nf == 2) {
		req_attach(c);
	} else if (!strcmp(cmd, "stdin") && c->nf == 2) {
		req_stdin(c);
	} else if (!strcmp(cmd, "resize") && c->nf == 4) {
		req_resize(c);
	} else if (!strcmp(cmd, "closestdin") && c->nf == 2) {
		req_closestdin(c);
	} else if (!strcmp(cmd, "reopenlog") && c->nf == 1) {
		log_reopen_now();
		ctl_reply(c, "ok\n");
	} else {
		reply_errf(c, 0, "bad request '%s' with %d fields", cmd, c->nf);
	}
}

void ctl_readable(struct client *c)
{
	char junk[256], *nl, *p;
	ssize_t n;
	int i;

	if (c->state != C_READ) {
		/* A subscriber has nothing to say: only its hangup matters. */
		n = read(c->fd, junk, sizeof(junk));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			ctl_close(c);
		return;
	}
	if (c->len == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 512;

		if (cap > REQ_MAX) {
			reply_errf(c, 0, "request too long");
			return;
		}
		p = realloc(c->req, cap);
		if (!p)
			die(ENOMEM, "request buffer");
		c->req = p;
		c->cap = cap;
	}
	n = read(c->fd, c->req + c->len, c->cap - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ctl_close(c);	/* gone before finishing its request */
		return;
	}
	c->len += n;
	nl = memchr(c->req, '\n', c->len);
	if (!nl)
		return;
	*nl = '\0';
	c->nf = 1;
	for (p = c->req; p < nl; p++)
		c->nf += *p == '\0';
	c->f = calloc(c->nf + 1, sizeof(char *));
	if (!c->f)
		die(ENOMEM, "request fields");
	for (i = 0, p = c->req; i < c->nf; i++, p += strlen(p) + 1)
		c->f[i] = p;
	dispatch(c);
}
