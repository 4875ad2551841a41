/* Errors, paths, time, files and fd passing. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

const char *g_state_dir;
int g_sync_fd = -1;

static size_t format_msg(char *buf, size_t len, int err, const char *fmt,
			 va_list ap)
{
	size_t n = 0;
	int k;

	k = vsnprintf(buf, len, fmt, ap);
	if (k > 0)
		n = (size_t)k < len ? (size_t)k : len - 1;
	if (err) {
		k = snprintf(buf + n, len - n, ": %s", strerror(err));
		if (k > 0)
			n += (size_t)k < len - n ? (size_t)k : len - n - 1;
	}
	return n;
}

/* shim.log in the state dir: where the shim speaks once nobody listens. */
static void shim_log(const char *msg, size_t n)
{
	char path[PATH_MAX], ts[64];
	struct iovec iov[4];
	int fd;

	if (!g_state_dir)
		return;
	path_join(path, g_state_dir, "shim.log");
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	fmt_time(ts, sizeof(ts), now_ns());
	iov[0] = (struct iovec){ ts, strlen(ts) };
	iov[1] = (struct iovec){ (void *)" ", 1 };
	iov[2] = (struct iovec){ (void *)msg, n };
	iov[3] = (struct iovec){ (void *)"\n", 1 };
	if (writev(fd, iov, 4) < 0) {
		/* nowhere left to say it */
	}
	close(fd);
}

static void say(const char *msg, size_t n)
{
	char line[1200];
	int k = snprintf(line, sizeof(line), "containerd-py-shim: %.*s\n",
			 (int)n, msg);

	if (k > 0 && write(STDERR_FILENO, line,
			   (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1) < 0) {
		/* stderr is gone: shim.log still has it */
	}
	shim_log(msg, n);
}

void die(int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	size_t n;

	static const char pfx[] = "Econtainerd-py-shim: ";
	const size_t p = sizeof(pfx) - 1;

	va_start(ap, fmt);
	n = format_msg(msg + p, sizeof(msg) - p, err, fmt, ap);
	va_end(ap);
	if (g_sync_fd >= 0) {
		/* The foreground prints it and exits 1. */
		memcpy(msg, pfx, p);
		shim_cleanup();
		if (write(g_sync_fd, msg, p + n) < 0)
			say(msg + p, n);
	} else {
		say(msg + p, n);
	}
	exit(1);
}

void warn(int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = format_msg(msg, sizeof(msg), err, fmt, ap);
	va_end(ap);
	say(msg, n);
}

void path_join(char *buf, const char *dir, const char *name)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_MAX)
		die(ENAMETOOLONG, "path %s/%s", dir, name);
}

long long now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		die(errno, "clock_gettime");
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* RFC 3339, UTC, nanoseconds: 2026-11-25T18:00:00.123456789Z */
void fmt_time(char *buf, size_t len, long long ns)
{
	time_t sec = (time_t)(ns / 1000000000LL);
	struct tm tm;

	if (!gmtime_r(&sec, &tm)) {
		snprintf(buf, len, "1970-01-01T00:00:00.000000000Z");
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, ns % 1000000000LL);
}

/* Write path.tmp, then rename it over path. -1 with errno on failure. */
int write_atomic(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX];
	ssize_t w;
	int fd, n, err;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || n >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	w = write(fd, data, len);
	if (w != (ssize_t)len) {
		err = w < 0 ? errno : EIO;
		close(fd);
		unlink(tmp);
		errno = err;
		return -1;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		err = errno;
		unlink(tmp);
		errno = err;
		return -1;
	}
	return 0;
}

int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if ((unlink(path) < 0 && errno != ENOENT) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* Send msg with fd attached (SCM_RIGHTS). -1 with errno on failure. */
int send_fd(int sock, const char *msg, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { (void *)msg, strlen(msg) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;

	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		return -1;
	return 0;
}

/* Receive one fd (runc sends the pty's name with it). -1 with errno. */
int recv_fd(int sock)
{
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	char data[512];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm;
	int fd = -1, extra;
	size_t i, nfds;

	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) < 0)
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfds; i++) {
			if (fd < 0) {
				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			} else {
				memcpy(&extra, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(extra);
			}
		}
	}
	if (fd < 0)
		errno = ENOMSG;
	return fd;
}

void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die(errno, "fcntl O_NONBLOCK on fd %d", fd);
}

/* Strict non-negative decimal. 0 on success, -1 otherwise. */
int parse_ll(const char *s, long long *out)
{
	long long v = 0;
	const char *p = s;

	if (!*p)
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > (0x7fffffffffffffffLL - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return 0;
}

int read_pid_file(const char *path, pid_t *pid)
{
	char buf[32];
	ssize_t n;
	long long v;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (parse_ll(buf, &v) < 0 || v <= 0 || v > 0x7fffffff) {
		errno = EINVAL;
		return -1;
	}
	*pid = (pid_t)v;
	return 0;
}
