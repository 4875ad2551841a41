"""One shim started ahead of the next container start (`containerd-py-shim
-W`, docs/shim.md): the start then only writes the shim its command line,
instead of paying for the exec, the dynamic linking and the process setup
of a new one (about a millisecond of the start path, measured by
bench/startpath.py as its `shim-start` phase). The next spare is started
after the start it served has answered; it is used once it has said it
is ready (a byte on its stdout), so an old shim binary without -W costs
nothing but a few spawns.

A spare knows no container until it has its command line: if the daemon
goes away first, the spare reads the end of its stdin and exits; it leaves
nothing behind.
"""

import asyncio
import logging
import os
import time

log = logging.getLogger("containerd_py.shim")

# The spare's argument strings are padded to this many bytes: the shim
# writes its real command line over them (so that ps and the daemon's
# orphan removal see the state dir there, as for any shim). A longer
# command line is started the ordinary way.
ROOM = 4096


class _Spare:
    def __init__(self, binary: str):
        self.binary = binary
        req_r, self.req_w = os.pipe2(os.O_CLOEXEC)
        self.out_r, out_w = os.pipe2(os.O_CLOEXEC)
        self.err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid = os.posix_spawn(binary, [binary, "-W", " " * ROOM], os.environ,
                                      file_actions=[(os.POSIX_SPAWN_DUP2, req_r, 0),
                                                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                                                    (os.POSIX_SPAWN_DUP2, err_w, 2)])
        except OSError:
            for fd in (self.req_w, self.out_r, self.err_r):
                os.close(fd)
            raise
        finally:
            for fd in (req_r, out_w, err_w):
                os.close(fd)
        self.room = len(binary) + 1 + len("-W") + 1 + ROOM + 1
        os.set_blocking(self.out_r, False)
        self.ready = False

    def check_ready(self) -> bool | None:
        """True once it wrote its ready byte; False (not yet) or None (it
        exited without: a shim built before -W, or killed)."""
        if not self.ready:
            try:
                b = os.read(self.out_r, 1)
            except BlockingIOError:
                return False
            if b != b"R":
                return None
            self.ready = True
        return True

    def close(self) -> None:
        """Let it go: it reads the end of its stdin and exits at once (or
        has exited already: killed by someone)."""
        for fd in (self.req_w, self.out_r, self.err_r):
            os.close(fd)
        for _ in range(100):
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.01)
        log.warning("the spare shim %d did not exit", self.pid)


_spare: _Spare | None = None
_refill_pending = False
# Spares in a row that exited unused: after a few, no more (the binary is
# older than -W: native/build.py rebuilds it).
_lost = 0
LOST_MAX = 3


def take(argv: list[str]) -> tuple[int, int, int] | None:
    """(pid, stdout read end, stderr read end) of the spare, now running
    `argv` (a `-F` command line); None without a spare (or for a command
    line longer than its room): the caller starts a shim itself."""
    global _spare, _lost
    spare = _spare
    if spare is None:
        return None
    ready = spare.check_ready()
    if ready is None:
        _spare = None
        spare.close()
        _lost += 1
        if _lost == LOST_MAX:
            log.warning("spare shims of %s exit before they are ready: starting each shim "
                        "anew (is the binary older than its -W? native/build.py)",
                        spare.binary)
        return None
    if not ready:
        return None  # not through its start yet: it stays for the next
    request = b"".join(os.fsencode(a) + b"\0" for a in argv)
    if len(request) > spare.room:
        return None
    _spare = None
    _lost = 0
    try:
        os.write(spare.req_w, request)
    except OSError as e:  # it died (EPIPE): killed by someone
        log.warning("the spare shim %d is gone (%s); starting one", spare.pid, e.strerror)
        spare.close()
        return None
    os.close(spare.req_w)
    return spare.pid, spare.out_r, spare.err_r


def refill_soon(binary: str) -> None:
    """Start the next spare once the current step (the start that took the
    last one, up to its answer) is done: never inside a start."""
    global _refill_pending
    if _spare is not None or _refill_pending or _lost >= LOST_MAX:
        return
    _refill_pending = True
    asyncio.get_running_loop().call_soon(_refill, binary)


def _refill(binary: str) -> None:
    global _spare, _refill_pending
    _refill_pending = False
    if _spare is not None:
        return
    try:
        _spare = _Spare(binary)
    except OSError as e:
        log.warning("cannot start a spare shim %s: %s", binary, e.strerror)


def release() -> None:
    """At the daemon's close."""
    global _spare
    if _spare is not None:
        _spare.close()
        _spare = None
