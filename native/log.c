/* container.log: CRI log lines, rotation to container.log.1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

static int log_fd = -1;
static long long log_size, log_max;
static char log_path[PATH_MAX], log_path1[PATH_MAX];
static int log_err;		/* last errno warned about, to warn once */

static void log_warn(int err, const char *what)
{
	if (err != log_err)
		warn(err, "%s %s", what, log_path);
	log_err = err;
}

static void log_reopen(void)
{
	struct stat st;

	log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (log_fd < 0) {
		log_warn(errno, "open");
		return;
	}
	if (fstat(log_fd, &st) < 0) {
		log_warn(errno, "fstat");
		st.st_size = 0;
	}
	log_size = st.st_size;
}

int log_try_open(const char *dir, long long max)
{
	path_join(log_path, dir, "container.log");
	path_join(log_path1, dir, "container.log.1");
	log_max = max;
	log_reopen();
	return log_fd < 0 ? -1 : 0;
}

/* The log file was moved away by someone else (the kubelet rotates CRI
 * logs by renaming them): write to a new file at the path again. */
void log_reopen_now(void)
{
	if (log_fd >= 0)
		close(log_fd);
	log_reopen();
}

static void log_rotate(void)
{
	if (rename(log_path, log_path1) < 0) {
		log_warn(errno, "rotate");
		log_size = 0;	/* don't retry on every line */
		return;
	}
	close(log_fd);
	log_reopen();
}

static void log_line(const char *stream, char tag, const char *p, size_t n)
{
	char hdr[80];
	struct iovec iov[3];
	ssize_t w;
	int h;

	fmt_time(hdr, sizeof(hdr), now_ns());
	h = (int)strlen(hdr);
	h += snprintf(hdr + h, sizeof(hdr) - h, " %s %c ", stream, tag);
	if (log_max > 0 && log_size > 0 &&
	    log_size + h + (long long)n + 1 > log_max)
		log_rotate();
	if (log_fd < 0) {
		log_reopen();
		if (log_fd < 0)
			return;
	}
	iov[0] = (struct iovec){ hdr, (size_t)h };
	iov[1] = (struct iovec){ (void *)p, n };
	iov[2] = (struct iovec){ (void *)"\n", 1 };
	w = writev(log_fd, iov, 3);
	if (w < 0) {
		log_warn(errno, "write");
		return;
	}
	log_err = 0;
	log_size += w;
}

static void emit(struct stream *s, char tag, const char *p, size_t n)
{
	if (s->pty && tag == 'F' && n > 0 && p[n - 1] == '\r')
		n--;
	log_line(s->name, tag, p, n);
}

/* Log every complete line in s->buf; keep the rest. */
void stream_feed(struct stream *s)
{
	char *p = s->buf, *end = s->buf + s->len, *nl;

	while (p < end && (nl = memchr(p, '\n', end - p))) {
		emit(s, 'F', p, nl - p);
		p = nl + 1;
	}
	/* A terminal's output is what a person is typing at: a prompt has no
	 * newline, so log what is left at once (a CRI partial record) rather
	 * than hold it until the line ends. Pipes keep whole lines. */
	if (p < end && (s->pty || (p == s->buf && s->len == CDPY_LINE_MAX))) {
		emit(s, 'P', p, end - p);
		p = end;
	}
	s->len = end - p;
	if (s->len && p != s->buf)
		memmove(s->buf, p, s->len);
}

/* Log what is left as a partial line, and let the buffer go. */
void stream_flush(struct stream *s)
{
	if (s->buf && s->len)
		emit(s, 'P', s->buf, s->len);
	free(s->buf);
	s->buf = NULL;
	s->len = 0;
}
