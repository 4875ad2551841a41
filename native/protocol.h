/*
 * What the shim and the daemon share, compiled into both the shim and the
 * cffi module containerd_py._native (see build.py and docs/shim.md).
 */
#ifndef CDPY_PROTOCOL_H
#define CDPY_PROTOCOL_H

#include <stddef.h>

/* A line of output longer than this is cut into `P` (partial) log lines. */
#define CDPY_LINE_MAX 16384
/* STATUS of a process killed by signal N is CDPY_SIGNAL_BASE + N. */
#define CDPY_SIGNAL_BASE 128
/* How long the shim keeps draining output after init has exited. */
#define CDPY_DRAIN_MS 2000

/*
 * Exit files (`exit`, `exits/PID`) hold "STATUS EXITED_AT_NS\n".
 * cdpy_format_exit writes that into buf and returns its length, or -1 if
 * it does not fit.  cdpy_parse_exit accepts exactly that (the newline may
 * be missing) and returns 0, or -1 for anything else.
 */
int cdpy_format_exit(char *buf, size_t len, int status, long long ns);
int cdpy_parse_exit(const char *buf, int *status, long long *ns);

#endif
