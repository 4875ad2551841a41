"""Helpers shared by the benchmark: statistics, timing, process memory,
mounts, and running commands. Standard library, plus the daemon's own
pid check."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from containerd_py.shim import pid_alive  # noqa: E402


class Unavailable(Exception):
    """A system (or one of its operations) cannot do this work here; the
    message says why and goes into the report."""


# -- statistics -----------------------------------------------------------------

@dataclass
class Samples:
    """Timings (seconds) of one measured thing, plus why it failed if it did."""
    values: list[float] = field(default_factory=list)
    error: str | None = None
    failures: int = 0

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def ok(self) -> bool:
        return bool(self.values)

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def pct(self, p: float) -> float | None:
        if not self.values:
            return None
        xs = sorted(self.values)
        k = (len(xs) - 1) * p / 100
        lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

    def lo(self) -> float | None:
        return min(self.values) if self.values else None

    def hi(self) -> float | None:
        return max(self.values) if self.values else None

    def to_json(self) -> dict:
        return {"n": len(self.values), "median": self.median(), "min": self.lo(),
                "max": self.hi(), "p95": self.pct(95), "error": self.error,
                "failures": self.failures, "values": self.values}


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- commands -------------------------------------------------------------------

def run(argv: list[str], *, check: bool = True, timeout: float = 120,
        env: dict | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, stdin=subprocess.DEVNULL if input is None else None,
                       input=input, capture_output=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise Unavailable(f"`{' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv[:4]))} ...` "
                          f"exited {p.returncode}: "
                          f"{one_line(p.stderr.decode(errors='replace') or p.stdout.decode(errors='replace'))}")
    return p


def timed(argv: list[str], **kw) -> float:
    t0 = time.perf_counter()
    run(argv, **kw)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes and memory -------------------------------------------------------

def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    """Running (not a zombie): the daemon's own check."""
    return pid_alive(pid)


def kill(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def memory_kb(pid: int) -> dict:
    """{'rss': kB, 'pss': kB} of a process, from /proc/PID/smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0])
    return out


def children_of(pid: int) -> list[int]:
    """Direct children of pid (from /proc/*/stat)."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            kids.append(int(d))
    return kids


def pids_with_cmdline_under(prefix: str) -> list[int]:
    """Processes whose command line mentions a path under prefix (our own
    state dirs): how the cleanup finds leftovers without matching by name."""
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if prefix in cmd:
            found.append(int(d))
    return found


# -- mounts ---------------------------------------------------------------------

def mounts_under(prefix: str) -> list[str]:
    prefix = os.path.realpath(prefix)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix + "/"):
                found.append(mp)
    return found


def unmount_all_under(prefix: str) -> list[str]:
    """Lazily unmount everything below prefix, deepest first; returns what
    was mounted."""
    left = mounts_under(prefix)
    for mp in sorted(set(left), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    return left


def replace_section(md_path: str, begin: str, end: str, lines: list[str],
                    before: str | None = None) -> None:
    """Put one figure's section, between its `begin` and `end` markers, into
    an existing benchmarks.md: a run of that figure alone does not rewrite
    the others' sections. A section the file does not have yet goes before
    the line `before` if the file has it, else at the end."""
    block = "\n".join([begin, *lines, end])
    try:
        with open(md_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    elif before and before in text:
        head, rest = text.split(before, 1)
        text = head + block + "\n\n" + before + rest
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(md_path, "w") as f:
        f.write(text)
