/* containerd-py-shim: shared declarations. See docs/shim.md. */
#ifndef CDPY_SHIM_H
#define CDPY_SHIM_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "protocol.h"

enum { S_OUT, S_ERR, S_PTY, S_N };

struct stream {
	int fd;			/* read end, O_NONBLOCK; -1 when closed */
	const char *name;	/* "stdout" or "stderr" */
	int pty;		/* strip the '\r' of "\r\n" */
	char *buf;		/* CDPY_LINE_MAX bytes, allocated on first read */
	size_t len;
};

/* A supervised process: init or an exec'd one. */
struct proc {
	struct proc *next;
	pid_t pid;		/* 0 while its runtime command runs */
	int is_init;
	int capture;		/* runtime still running: buffer, don't log */
	int exited;
	int dead;		/* to be freed at the top of the loop */
	int stdin_fd;		/* write end of its stdin pipe, or -1 */
	unsigned long start_seq;
	struct stream st[S_N];
};

enum client_state { C_READ, C_QUEUED, C_RUNNING, C_SUB, C_ATTACH };

struct client {
	struct client *next;
	int fd;
	int dead;
	enum client_state state;
	char *req;
	size_t len, cap;
	char **f;		/* request fields, NULL-terminated */
	int nf;
	struct proc *attached;	/* C_ATTACH: whose output it receives */
};

/* util.c */
extern const char *g_state_dir;
extern int g_sync_fd;		/* to the foreground until it has its answer */
__attribute__((noreturn, format(printf, 2, 3)))
void die(int err, const char *fmt, ...);
__attribute__((format(printf, 2, 3)))
void warn(int err, const char *fmt, ...);
void path_join(char *buf, const char *dir, const char *name);
long long now_ns(void);
void fmt_time(char *buf, size_t len, long long ns);
int write_atomic(const char *path, const char *data, size_t len);
int listen_unix(const char *path);
int send_fd(int sock, const char *msg, int fd);
int recv_fd(int sock);
void set_nonblock(int fd);
int parse_ll(const char *s, long long *out);
int read_pid_file(const char *path, pid_t *pid);

/* log.c */
int log_try_open(const char *dir, long long max);	/* -1 with errno */
void log_reopen_now(void);
void stream_feed(struct stream *s);
void stream_flush(struct stream *s);

/* ctl.c */
extern struct client *g_clients;
void ctl_accept(int lfd);
void ctl_readable(struct client *c);
void ctl_reply(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void ctl_reply_err(struct client *c, const char *msg, size_t len);
void ctl_notify(pid_t pid, int status, long long ns);
void ctl_forward(struct proc *p, int idx, const char *buf, size_t n);
void ctl_detach(struct proc *p);
int proc_streams_open(const struct proc *p);
void ctl_close(struct client *c);
void ctl_sweep(void);
void ctl_shutdown(void);

/* shim.c */
extern struct proc *g_init;
extern int g_init_done;
struct proc *proc_find(pid_t pid);	/* 0: init; exited ones too */
void exec_kick(void);			/* start the next queued exec */
void shim_cleanup(void);		/* files of a shim that failed to start */

#endif
