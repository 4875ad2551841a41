"""One daemon per state dir: an exclusive flock on a lock file in it.

Two daemons on the same dirs would both recover the same containers and
both handle their exits (duplicate `exit` events, one of them failing on
state the other removed). flock is released by the kernel when the holder
dies, even by SIGKILL, so a crashed daemon never leaves a stale lock; the
pid written into the file is only there to name the holder.
"""

import fcntl
import os

LOCK_NAME = "daemon.lock"


class DirLocked(Exception):
    """Another process holds the lock; the message names it."""


class DirLock:
    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self) -> "DirLock":
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        # O_CLOEXEC (Python's default): shims and runtimes the daemon
        # starts must not inherit the lock and keep it after the daemon dies.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DirLocked(f"{os.path.dirname(self.path)} is in use by another "
                            f"containerd-py daemon ({who} holds {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def lock_dirs(*dirs: str) -> list[DirLock]:
    """Lock each distinct dir (data dir and state dir may be one)."""
    locks: list[DirLock] = []
    try:
        for d in dict.fromkeys(os.path.realpath(d) for d in dirs):
            locks.append(DirLock(d).acquire())
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks
