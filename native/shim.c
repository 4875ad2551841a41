/*
 * containerd-py-shim: one small process per container (docs/shim.md).
 *
 *   containerd-py-shim -s STATEDIR [-c CONSOLESOCK] [-l LOGMAX] [-F] -- RUNTIME-ARGV...
 *
 * The foreground forks twice and waits on a sync pipe for the real shim's
 * answer; the real shim runs the runtime command, then lives in a poll()
 * loop until init has exited and its output is drained. With -F the
 * process started is the real shim itself and its stdout is the sync pipe
 * (the daemon reads the answer, 'O...' or 'E...', and is the shim's
 * subreaper anyway): two forks and a wait fewer on every start.
 *
 *   containerd-py-shim -W
 *
 * A spare shim, started by the daemon ahead of demand: it writes 'R' on
 * stdout, waits for its command line (the options and the runtime argv
 * above, NUL-terminated each) on stdin, then runs as with -F. The exec, the dynamic linking and
 * the process setup are then off the start path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

struct proc *g_init;
int g_init_done;

static struct proc *g_procs;
static long long g_deadline_ns;	/* end of the drain after init's exit */
static int g_sig_fd = -1, g_ctl_fd = -1;
static char g_sock_path[PATH_MAX], g_pid_path[PATH_MAX];
static const char *g_console_path;
static unsigned long g_seq;	/* bumped by every runtime command */
/* What failed of the setup done while init's runtime command runs. */
static char g_setup_err[PATH_MAX + 64];

/* The runtime command in flight (at most one: exec-console.sock is shared). */
static struct {
	pid_t pid;		/* 0: none */
	struct proc *proc;
	struct client *client;	/* NULL: the create/restore of init */
	int console_fd;
	char console_path[PATH_MAX];
	char pidfile[PATH_MAX];
	long long started_ns;	/* when it was forked, for the start reply */
} cmd;

/*
 * Children reaped before we knew their pid (a process that exits before
 * its runtime command has returned and its pid file was read).
 */
#define EARLY_MAX 64
static struct early {
	pid_t pid;
	int status;
	long long ns;
	unsigned long seq;
} early[EARLY_MAX];
static unsigned early_next;

static void early_add(pid_t pid, int status, long long ns)
{
	struct early *e = &early[early_next++ % EARLY_MAX];

	e->pid = pid;
	e->status = status;
	e->ns = ns;
	e->seq = g_seq;
}

static int early_take(pid_t pid, unsigned long since, int *status, long long *ns)
{
	int i;

	for (i = 0; i < EARLY_MAX; i++) {
		struct early *e = &early[i];

		if (e->pid == pid && e->seq >= since) {
			*status = e->status;
			*ns = e->ns;
			e->pid = 0;
			return 1;
		}
	}
	return 0;
}

/* -- processes ------------------------------------------------------------ */

struct proc *proc_find(pid_t pid)
{
	struct proc *p;

	if (pid == 0)
		return g_init && !g_init->capture ? g_init : NULL;
	for (p = g_procs; p; p = p->next)
		if (p->pid == pid && !p->dead)
			return p;
	return NULL;
}

static struct proc *proc_live(pid_t pid)
{
	struct proc *p;

	for (p = g_procs; p; p = p->next)
		if (p->pid == pid && !p->exited && !p->dead)
			return p;
	return NULL;
}

static void stream_close(struct stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static void proc_kill(struct proc *p)
{
	int i;

	ctl_detach(p);
	for (i = 0; i < S_N; i++) {
		stream_close(&p->st[i]);
		free(p->st[i].buf);
		p->st[i].buf = NULL;
	}
	if (p->stdin_fd >= 0)
		close(p->stdin_fd);
	p->stdin_fd = -1;
	p->dead = 1;
}

static void proc_sweep(void)
{
	struct proc **pp = &g_procs, *p;

	while ((p = *pp)) {
		if (p->dead && p != g_init) {
			*pp = p->next;
			free(p);
		} else {
			pp = &p->next;
		}
	}
}

int proc_streams_open(const struct proc *p)
{
	int i;

	for (i = 0; i < S_N; i++)
		if (p->st[i].fd >= 0)
			return 1;
	return 0;
}

/* Write the exit file; subscribers are told by the caller (ctl_notify). */
static void proc_exited(struct proc *p, int status, long long ns)
{
	char buf[64], name[32], path[PATH_MAX];
	int n = cdpy_format_exit(buf, sizeof(buf), status, ns);

	if (p->is_init) {
		path_join(path, g_state_dir, "exit");
	} else {
		snprintf(name, sizeof(name), "exits/%d", (int)p->pid);
		path_join(path, g_state_dir, name);
	}
	if (n < 0 || write_atomic(path, buf, n) < 0)
		warn(errno, "write %s", path);
	p->exited = 1;
	if (p->stdin_fd >= 0)
		close(p->stdin_fd);
	p->stdin_fd = -1;
	if (p->is_init) {
		g_init_done = 1;
		g_deadline_ns = now_ns() + CDPY_DRAIN_MS * 1000000LL;
	}
	if (!p->is_init && !proc_streams_open(p))
		p->dead = 1;
}

static void stream_eof(struct proc *p, struct stream *s)
{
	stream_close(s);
	if (!proc_streams_open(p))
		ctl_detach(p);	/* attached clients see EOF: no more output */
	if (!p->capture) {
		stream_flush(s);
		if (p->exited && !p->is_init && !proc_streams_open(p))
			p->dead = 1;
	}
}

/* One read; in capture mode (runtime running) only buffer it. */
static void stream_read(struct proc *p, struct stream *s)
{
	ssize_t n;

	if (!s->buf && !(s->buf = malloc(CDPY_LINE_MAX)))
		die(ENOMEM, "stream buffer");
	if (s->len == CDPY_LINE_MAX)
		return;
	n = read(s->fd, s->buf + s->len, CDPY_LINE_MAX - s->len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		if (errno != EIO)	/* EIO: the pty has no slave left */
			warn(errno, "read %s of %d", s->name, (int)p->pid);
		stream_eof(p, s);
		return;
	}
	if (n == 0) {
		stream_eof(p, s);
		return;
	}
	if (!p->capture)
		ctl_forward(p, (int)(s - p->st), s->buf + s->len, (size_t)n);
	s->len += n;
	if (!p->capture)
		stream_feed(s);
}

/* -- runtime commands ------------------------------------------------------ */

static void pipe_or_die(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		die(errno, "pipe");
}

/* Returns 0, or -1 with errno (create: dies instead). */
static int cmd_start(char *const argv[], const char *pidfile,
		     const char *console, struct client *c)
{
	int in[2], out[2], err[2], i;
	struct proc *p;
	pid_t pid;

	if (snprintf(cmd.pidfile, sizeof(cmd.pidfile), "%s", pidfile) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (unlink(pidfile) < 0 && errno != ENOENT)
		return -1;
	cmd.console_fd = -1;
	if (console) {
		snprintf(cmd.console_path, sizeof(cmd.console_path), "%s", console);
		cmd.console_fd = listen_unix(console);
		if (cmd.console_fd < 0)
			return -1;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		die(ENOMEM, "new process");
	pipe_or_die(in);
	pipe_or_die(out);
	pipe_or_die(err);
	g_seq++;
	cmd.started_ns = now_ns();
	pid = fork();
	if (pid < 0)
		die(errno, "fork");
	if (pid == 0) {
		sigset_t all;
		char msg[PATH_MAX + 128];
		int n;

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(127);
		execvp(argv[0], argv);
		n = snprintf(msg, sizeof(msg), "containerd-py-shim: exec %s: %s\n",
			     argv[0], strerror(errno));
		if (write(2, msg, n) < 0)
			_exit(127);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	p->stdin_fd = in[1];
	p->capture = 1;
	p->is_init = !c;
	p->start_seq = g_seq;
	for (i = 0; i < S_N; i++)
		p->st[i].fd = -1;
	p->st[S_OUT] = (struct stream){ .fd = out[0], .name = "stdout" };
	p->st[S_ERR] = (struct stream){ .fd = err[0], .name = "stderr" };
	p->st[S_PTY] = (struct stream){ .fd = -1, .name = "stdout", .pty = 1 };
	set_nonblock(out[0]);
	set_nonblock(err[0]);
	p->next = g_procs;
	g_procs = p;
	if (!c)
		g_init = p;
	cmd.pid = pid;
	cmd.proc = p;
	cmd.client = c;
	if (c)
		c->state = C_RUNNING;
	return 0;
}

/* Is pid our child (alive or a zombie)? WNOWAIT: a zombie stays for reap(). */
static int is_child(pid_t pid)
{
	siginfo_t info;

	return waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 || errno != ECHILD;
}

/* The runtime may have handed over the pty master before exiting. */
static int console_take(void)
{
	int conn, fd;

	conn = accept4(cmd.console_fd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return -1;
	fd = recv_fd(conn);
	close(conn);
	return fd;
}

static void report(const char *msg, size_t len)
{
	if (write(g_sync_fd, msg, len) < 0) {
		/* the foreground is gone: nobody to tell */
	}
	close(g_sync_fd);
	g_sync_fd = -1;
}

static void cmd_done(int status)
{
	struct proc *p = cmd.proc;
	struct client *c = cmd.client;
	char errbuf[PATH_MAX + 128], line[128];
	int master = -1, i, n, st;
	long long ns, ended_ns = now_ns();
	pid_t pid = 0;

	cmd.pid = 0;
	/* Whatever it wrote before exiting is in the pipes now. */
	for (i = S_OUT; i <= S_ERR; i++)
		while (p->st[i].fd >= 0 && p->st[i].len < CDPY_LINE_MAX) {
			size_t before = p->st[i].len;

			stream_read(p, &p->st[i]);
			if (p->st[i].len == before)
				break;
		}
	errbuf[0] = '\0';
	if (cmd.console_fd >= 0) {
		master = console_take();
		if (master < 0)
			snprintf(errbuf, sizeof(errbuf), "no pty master on %s: %s",
				 cmd.console_path, strerror(errno));
		close(cmd.console_fd);
		cmd.console_fd = -1;
		unlink(cmd.console_path);
	}
	if (status != 0)
		snprintf(errbuf, sizeof(errbuf), "runtime exited with status %d", status);
	else if (!errbuf[0] && read_pid_file(cmd.pidfile, &pid) < 0)
		snprintf(errbuf, sizeof(errbuf), "read %s: %s", cmd.pidfile,
			 strerror(errno));
	if (!c && status == 0 && g_setup_err[0]) {
		/* The runtime made a container we cannot supervise: its init
		 * (our child now) goes, the daemon deletes the rest. */
		if (!errbuf[0] && pid > 0 && kill(pid, SIGKILL) == 0)
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
		snprintf(errbuf, sizeof(errbuf), "%s", g_setup_err);
	}

	if (errbuf[0]) {
		/* The runtime's own words (stderr, then stdout) say the most. */
		size_t elen = p->st[S_ERR].len, olen = p->st[S_OUT].len;
		char *msg = malloc(elen + olen + sizeof(errbuf) + 4);
		size_t m = 0;

		if (!msg)
			die(ENOMEM, "error message");
		if (!c)
			msg[m++] = 'E';
		if (status == 0) {
			/* It said it worked: our complaint first. */
			size_t k = strlen(errbuf);

			memcpy(msg + m, errbuf, k);
			m += k;
			if (elen + olen)
				memcpy(msg + m, ": ", 2), m += 2;
		}
		if (elen)
			memcpy(msg + m, p->st[S_ERR].buf, elen), m += elen;
		if (olen) {
			if (elen && msg[m - 1] != '\n')
				msg[m++] = '\n';
			memcpy(msg + m, p->st[S_OUT].buf, olen), m += olen;
		}
		if (status != 0 && !elen && !olen) {
			size_t k = strlen(errbuf);

			memcpy(msg + m, errbuf, k);
			m += k;
		}
		if (master >= 0)
			close(master);
		if (g_init == p)
			g_init = NULL;
		proc_kill(p);
		if (c) {
			ctl_reply_err(c, msg, m);
			free(msg);
			exec_kick();
			return;
		}
		/* Clean first: once the foreground answers, the daemon may
		 * reuse the state dir. */
		shim_cleanup();
		report(msg, m);
		exit(1);
	}

	p->pid = pid;
	p->capture = 0;
	for (i = S_OUT; i <= S_ERR; i++) {
		if (p->st[i].buf)
			stream_feed(&p->st[i]);
		if (p->st[i].fd < 0)
			stream_flush(&p->st[i]);
	}
	if (master >= 0) {
		set_nonblock(master);
		p->st[S_PTY].fd = master;
		close(p->stdin_fd);	/* the pty is its stdin */
		p->stdin_fd = -1;
	}
	st = 0;
	ns = 0;
	n = early_take(pid, p->start_seq, &st, &ns);
	if (!n && !is_child(pid)) {
		/* Not ours and not reaped by us: someone else reaped it (a
		 * runtime that waits for what it started). Waiting for it
		 * would hang forever; its status is lost. */
		warn(ECHILD, "process %d from %s is not the shim's child", (int)pid,
		     cmd.pidfile);
		st = 255;
		ns = now_ns();
		n = 1;
	}
	if (n)
		proc_exited(p, st, ns);
	if (c) {
		ctl_reply(c, "ok %d\n", (int)pid);
	} else {
		/* The runtime's own start and end: the daemon tells its own
		 * cost on the start path from the runtime's. */
		int k = snprintf(line, sizeof(line), "O%d %d %lld %lld\n", (int)getpid(),
				 (int)pid, cmd.started_ns, ended_ns);

		report(line, k);
	}
	if (n)
		ctl_notify(pid, st, ns);
	exec_kick();
}

void exec_kick(void)
{
	struct client *c;

	if (cmd.pid)
		return;
	for (c = g_clients; c; c = c->next) {
		char path[PATH_MAX];
		int terminal;

		if (c->dead || c->state != C_QUEUED)
			continue;
		if (g_init_done) {
			ctl_reply_err(c, "container exited", 16);
			continue;
		}
		terminal = !strcmp(c->f[2], "1");
		if (terminal)
			path_join(path, g_state_dir, "exec-console.sock");
		if (cmd_start(&c->f[3], c->f[1], terminal ? path : NULL, c) == 0)
			return;
		{
			char msg[PATH_MAX + 64];
			int m = snprintf(msg, sizeof(msg), "start %s: %s", c->f[3],
					 strerror(errno));

			if (cmd.console_fd >= 0) {
				close(cmd.console_fd);
				cmd.console_fd = -1;
			}
			ctl_reply_err(c, msg, m < (int)sizeof(msg) ? m : (int)sizeof(msg) - 1);
		}
	}
}

/* -- the loop --------------------------------------------------------------- */

static int wait_status(int ws)
{
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws))
		return CDPY_SIGNAL_BASE + WTERMSIG(ws);
	return 255;
}

static void reap(void)
{
	struct signalfd_siginfo si;
	struct proc *p;
	int ws, status;
	long long ns;
	pid_t pid;

	while (read(g_sig_fd, &si, sizeof(si)) == sizeof(si))
		;
	for (;;) {
		pid = waitpid(-1, &ws, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			break;
		status = wait_status(ws);
		ns = now_ns();
		if (cmd.pid && pid == cmd.pid) {
			cmd_done(status);
		} else if ((p = proc_live(pid))) {
			proc_exited(p, status, ns);
			ctl_notify(pid, status, ns);
		} else {
			early_add(pid, status, ns);
		}
	}
}

enum { K_SIG, K_CTL, K_CLIENT, K_STREAM };

struct slot {
	int kind;
	void *ptr;
	int idx;
};

static struct pollfd *pfds;
static struct slot *slots;
static size_t npfd, capfd;

static void watch(int fd, int kind, void *ptr, int idx)
{
	if (npfd == capfd) {
		size_t cap = capfd ? capfd * 2 : 16;
		void *a = realloc(pfds, cap * sizeof(*pfds));

		if (!a)
			die(ENOMEM, "poll set");
		pfds = a;
		a = realloc(slots, cap * sizeof(*slots));
		if (!a)
			die(ENOMEM, "poll set");
		slots = a;
		capfd = cap;
	}
	pfds[npfd] = (struct pollfd){ .fd = fd, .events = POLLIN };
	slots[npfd] = (struct slot){ kind, ptr, idx };
	npfd++;
}

static int any_stream_open(void)
{
	struct proc *p;

	for (p = g_procs; p; p = p->next)
		if (!p->dead && proc_streams_open(p))
			return 1;
	return 0;
}

static void loop(void)
{
	struct client *c;
	struct proc *p;
	size_t i;
	int timeout, n;

	for (;;) {
		proc_sweep();
		ctl_sweep();
		timeout = -1;
		if (g_init_done) {
			long long left = g_deadline_ns - now_ns();

			if (left <= 0 || (!any_stream_open() && !cmd.pid))
				return;
			timeout = (int)((left + 999999) / 1000000);
		}
		npfd = 0;
		watch(g_sig_fd, K_SIG, NULL, 0);
		watch(g_ctl_fd, K_CTL, NULL, 0);
		for (c = g_clients; c; c = c->next)
			if (!c->dead && (c->state == C_READ || c->state == C_SUB ||
					 c->state == C_ATTACH))
				watch(c->fd, K_CLIENT, c, 0);
		for (p = g_procs; p; p = p->next)
			for (n = 0; n < S_N; n++)
				if (!p->dead && p->st[n].fd >= 0 &&
				    p->st[n].len < CDPY_LINE_MAX)
					watch(p->st[n].fd, K_STREAM, p, n);
		n = poll(pfds, npfd, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(errno, "poll");
		}
		/* Streams and clients first: a reap may free what they point to. */
		for (i = 1; i < npfd; i++) {
			struct slot *s = &slots[i];

			if (!pfds[i].revents)
				continue;
			if (s->kind == K_CTL) {
				ctl_accept(g_ctl_fd);
			} else if (s->kind == K_CLIENT) {
				c = s->ptr;
				if (!c->dead && c->fd == pfds[i].fd)
					ctl_readable(c);
			} else {
				p = s->ptr;
				if (!p->dead && p->st[s->idx].fd == pfds[i].fd)
					stream_read(p, &p->st[s->idx]);
			}
		}
		if (pfds[0].revents)
			reap();
	}
}

/* -- start ------------------------------------------------------------------ */

void shim_cleanup(void)
{
	if (g_sock_path[0])
		unlink(g_sock_path);
	if (g_pid_path[0])
		unlink(g_pid_path);
	if (g_console_path)
		unlink(g_console_path);
}

static void finish(void)
{
	struct proc *p;
	int i;

	for (p = g_procs; p; p = p->next)
		for (i = 0; i < S_N; i++) {
			if (p->capture)
				continue;
			stream_close(&p->st[i]);
			stream_flush(&p->st[i]);
		}
	ctl_shutdown();
	unlink(g_sock_path);
	exit(0);
}

static void setup_failed(const char *what, const char *path)
{
	snprintf(g_setup_err, sizeof(g_setup_err), "shim: %s %s: %s", what, path,
		 strerror(errno));
}

static void setup(long long logmax)
{
	char path[PATH_MAX], buf[32];
	int n;

	path_join(path, g_state_dir, "exits");
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return setup_failed("mkdir", path);
	path_join(path, g_state_dir, "exit");
	if (unlink(path) < 0 && errno != ENOENT)	/* a previous run's */
		return setup_failed("unlink", path);
	path_join(g_pid_path, g_state_dir, "shim.pid");
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write_atomic(g_pid_path, buf, n) < 0)
		return setup_failed("write", g_pid_path);
	path_join(path, g_state_dir, "shim.sock");
	g_ctl_fd = listen_unix(path);
	if (g_ctl_fd < 0)
		return setup_failed("listen on", path);
	strcpy(g_sock_path, path);
	if (log_try_open(g_state_dir, logmax) < 0)
		return setup_failed("open", "container.log");
}

static void shim_main(char *const argv[], long long logmax, int direct)
{
	char path[PATH_MAX];
	sigset_t set;
	int fd;

	/*
	 * Out of the caller's process group, so that a Ctrl-C of a daemon in
	 * the foreground does not reach us. Started by the daemon (-F, -W):
	 * our own process group only, as containerd's shims, not our own
	 * session: with the scheduler's autogroups each new session is a new
	 * scheduling group, which costs its creation on every start and, on a
	 * loaded host, made the runtime run ~15% slower under the shim than
	 * from a shell (init gets a session of its own from the runtime
	 * anyway). Detached from a terminal (no -F): a session, as daemons do.
	 */
	if (direct) {
		if (setpgid(0, 0) < 0)
			die(errno, "setpgid");
	} else if (setsid() < 0 && getsid(0) != getpid()) {
		die(errno, "setsid");
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		die(errno, "prctl PR_SET_CHILD_SUBREAPER");
	/* Our stdio may be the daemon's pipes: let go of them. */
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die(errno, "open /dev/null");
	if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		die(errno, "dup2 /dev/null");
	close(fd);
	if (signal(SIGTERM, SIG_IGN) == SIG_ERR || signal(SIGINT, SIG_IGN) == SIG_ERR ||
	    signal(SIGHUP, SIG_IGN) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die(errno, "signal");
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die(errno, "sigprocmask");
	g_sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (g_sig_fd < 0)
		die(errno, "signalfd");

	path_join(path, g_state_dir, "init.pid");
	if (cmd_start(argv, path, g_console_path, NULL) < 0)
		die(errno, "start %s", argv[0]);
	/*
	 * The rest of the setup runs while the runtime command does: nothing
	 * of it is used before the runtime has exited (its output is held
	 * until then, and the daemon connects and reads shim.pid after our
	 * answer), and it was a third of the shim's part of the start path.
	 * A failure here fails the start once the runtime is done (cmd_done).
	 */
	setup(logmax);
	loop();
	finish();
}

/* The daemon's fds are none of our business: close all but stdio. */
static void close_inherited(void)
{
	long max;
	int fd;

	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = 3; fd < max; fd++)
		close(fd);
}

/* Print what the real shim answers; our exit code is the verdict. */
static int foreground(int rfd)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;

	for (;;) {
		if (len == cap) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 4096);

			if (!b)
				die(ENOMEM, "sync buffer");
			buf = b;
		}
		n = read(rfd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(errno, "read sync pipe");
		if (n == 0)
			break;
		len += n;
	}
	if (len > 0 && buf[0] == 'O') {
		if (write(STDOUT_FILENO, buf + 1, len - 1) != (ssize_t)(len - 1))
			return 1;
		return 0;
	}
	if (len > 1 && buf[0] == 'E') {
		if (write(STDERR_FILENO, buf + 1, len - 1) < 0 ||
		    (buf[len - 1] != '\n' && write(STDERR_FILENO, "\n", 1) < 0))
			return 1;
		return 1;
	}
	die(0, "the shim exited without an answer");
}

static void usage(void)
{
	die(0, "usage: containerd-py-shim -s STATEDIR [-c CONSOLESOCK] "
	       "[-l LOGMAX] [-F] -- RUNTIME-ARGV... | containerd-py-shim -W");
}

/*
 * -W: the command line, NUL-terminated fields, read from stdin to its end.
 * It is written over our own argument strings too, which the daemon padded
 * to room enough (it sends nothing longer): shims are told apart (by the
 * daemon's orphan removal, by ps) by the state dir in their command line.
 */
static char **read_request(int argc0, char *argv0[], int *argc)
{
	char *area = argv0[0];
	size_t room = (size_t)(argv0[argc0 - 1] + strlen(argv0[argc0 - 1]) + 1 - area);
	size_t len = 0, cap = 0, i;
	char *buf = NULL, **argv;
	ssize_t n;
	int k;

	for (;;) {
		if (len == cap) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 4096);

			if (!b)
				die(ENOMEM, "request buffer");
			buf = b;
		}
		n = read(STDIN_FILENO, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(errno, "read the request");
		if (n == 0)
			break;
		len += n;
	}
	if (len == 0)
		exit(0);	/* the daemon let its spare go */
	if (buf[len - 1] != '\0')
		die(0, "request not NUL-terminated");
	for (i = 0, *argc = 0; i < len; i++)
		*argc += buf[i] == '\0';
	argv = calloc(*argc + 1, sizeof(*argv));
	if (!argv)
		die(ENOMEM, "request argv");
	for (i = 0, k = 0; k < *argc; i += strlen(buf + i) + 1)
		argv[k++] = buf + i;
	if (len > room)
		die(0, "request of %zu bytes, room for %zu", len, room);
	/* The argument strings are contiguous; ending in NULs, the kernel
	 * shows them as they are, NUL-separated. */
	memcpy(area, buf, len);
	memset(area + len, 0, room - len);
	return argv;
}

static void parse_args(int argc, char *argv[], long long *logmax, int *direct, int *spare)
{
	int opt;

	optind = 0;	/* glibc: start over (a spare parses twice) */
	while ((opt = getopt(argc, argv, "+s:c:l:FW")) != -1) {
		switch (opt) {
		case 's':
			g_state_dir = optarg;
			break;
		case 'c':
			g_console_path = optarg;
			break;
		case 'l':
			if (parse_ll(optarg, logmax) < 0)
				die(0, "bad -l %s", optarg);
			break;
		case 'F':
			*direct = 1;
			break;
		case 'W':
			*spare = 1;
			break;
		default:
			usage();
		}
	}
}

int main(int argc, char *argv[])
{
	long long logmax = 0;
	int sync[2], fd, ws, direct = 0, spare = 0;
	pid_t pid;

	/* pipe() must not hand out 0, 1 or 2. */
	do {
		fd = open("/dev/null", O_RDWR);
		if (fd < 0)
			die(errno, "open /dev/null");
	} while (fd <= 2);
	close(fd);

	parse_args(argc, argv, &logmax, &direct, &spare);
	if (spare) {
		close_inherited();
		/* Ready: the daemon hands its command line only to a spare that
		 * said so (a shim built before -W existed never does). */
		if (write(STDOUT_FILENO, "R", 1) != 1)
			die(errno, "write the ready byte");
		argv = read_request(argc, argv, &argc);
		spare = 0;
		parse_args(argc, argv, &logmax, &direct, &spare);
		if (spare || !direct)
			die(0, "a spare shim's request must be a -F command line");
	}
	if (!g_state_dir || optind >= argc)
		usage();

	close_inherited();
	if (direct) {
		/* Off fd 1, which shim_main points at /dev/null. */
		g_sync_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
		if (g_sync_fd < 0)
			die(errno, "dup stdout");
		shim_main(&argv[optind], logmax, 1);
		return 0;
	}
	if (pipe2(sync, O_CLOEXEC) < 0)
		die(errno, "pipe");
	pid = fork();
	if (pid < 0)
		die(errno, "fork");
	if (pid > 0) {
		close(sync[1]);
		while (waitpid(pid, &ws, 0) < 0)
			if (errno != EINTR)
				die(errno, "waitpid");
		return foreground(sync[0]);
	}
	close(sync[0]);
	g_sync_fd = sync[1];
	pid = fork();
	if (pid < 0)
		die(errno, "fork");
	if (pid > 0)
		_exit(0);
	shim_main(&argv[optind], logmax, 0);
	return 0;
}
