"""CRIU itself: whether it works on this host (and what it can dump), its
logs, what a restore leaves undone, and the `criu lazy-pages` daemon."""

import asyncio
import logging
import os
import subprocess

from .. import restored

log = logging.getLogger("containerd_py.checkpoint")


def criu_log_tail(work: str, lines: int = 12) -> str:
    """CRIU's own `Error` lines (the cause is usually far above the end,
    e.g. "Connected TCP socket, consider using --tcp-established option"),
    then the end of its log."""
    for name in ("dump.log", "restore.log", "lazy-pages.log"):
        summary = log_summary(os.path.join(work, name), lines)
        if summary is not None:
            return f"{name}: {summary}"
    return ""


def log_summary(path: str, lines: int = 12, max_errors: int = 6) -> str | None:
    """One CRIU log (dump, restore, page server) in a line: its `Error`
    lines first, then its last lines; None if there is no such log."""
    try:
        with open(path, errors="replace") as f:
            kept = [ln.rstrip() for ln in f.readlines() if "RLIMIT_NOFILE" not in ln]
    except FileNotFoundError:
        return None
    errors = [ln for ln in kept if "Error (" in ln][:max_errors]
    tail = [ln for ln in kept[-lines:] if ln not in errors]
    return " | ".join(errors + tail)


# Kernels from 6.16 refuse SO_PASSCRED on inet sockets; CRIU before 4.2
# asks for it on every socket it dumps and fails ("Can't get 1:16 opt").
INET_SOCKETS_KERNEL = (6, 16)
INET_SOCKETS_CRIU = (4, 2)


def _version_tuple(text: str) -> tuple[int, ...]:
    """The leading numbers of "4.2.1" or "6.18.44-fc-v669"."""
    parts = []
    for piece in text.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):
            break
    return tuple(parts)


def dumps_inet_sockets(criu_version: str, kernel: str) -> bool:
    """Can this CRIU dump a process that has an internet socket on this kernel?"""
    return (_version_tuple(kernel)[:2] < INET_SOCKETS_KERNEL
            or _version_tuple(criu_version) >= INET_SOCKETS_CRIU)


def criu_status(criu: str | None) -> dict:
    """Whether checkpointing works on this host, and why not: CRIU's version,
    what `criu check` said, and whether it can dump internet sockets here."""
    if not criu:
        return {"available": False, "reason": "criu not found (run make setup)"}
    try:
        ver = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=10)
        check = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"available": False, "path": criu, "reason": str(e)}
    version = next((ln.split(":", 1)[1].strip() for ln in ver.stdout.splitlines()
                    if ln.startswith("Version")), ver.stdout.strip())
    out = (check.stdout + check.stderr).strip()
    ok = check.returncode == 0 and "Looks good" in out
    kernel = os.uname().release
    inet = dumps_inet_sockets(version, kernel)
    status = {"available": ok, "path": criu, "version": version,
              "check": {"ok": ok, "exitCode": check.returncode, "output": out},
              "inetSockets": inet}
    if not ok:
        status["reason"] = out.splitlines()[-1] if out else f"criu check exited {check.returncode}"
    else:
        from . import kdat
        try:
            status["kernelCache"] = kdat.prime(criu)
        except (OSError, subprocess.SubprocessError) as e:
            status["kernelCache"] = f"not made: {e}"
    if not inet:
        status["warning"] = (
            f"criu {version} cannot checkpoint a process with an internet socket on "
            f"kernel {kernel}: kernels >= 6.16 refuse SO_PASSCRED on inet sockets and "
            "CRIU before 4.2 fails on it; run make setup for CRIU >= 4.2")
    return status


async def after_restore(cid: str, pid: int, writable_root: bool) -> None:
    """What runc's restore leaves undone (see restored.py): the loopback of
    the container's fresh network namespace, and the writable root its
    runtime config asks for. A failure is logged, not raised: the restored
    processes run, and only that part of their surroundings is amiss."""
    # Both at once: each is a process start (nsenter + ip, a Python child),
    # on the restore's path.
    whats = ["lo is not up in its network namespace"]
    steps = [restored.loopback_up(pid)]
    if writable_root:
        whats.append("its root stays read-only")
        steps.append(restored.root_writable(pid))
    problems = zip(whats, await asyncio.gather(*steps))
    for what, why in problems:
        if why:
            log.warning("container %s: restored, but %s: %s", cid, what, why)


class LazyPages:
    """`criu lazy-pages` serving a checkpoint's memory over userfaultfd while
    the restored process already runs; it exits once every page is copied."""

    def __init__(self, criu: str, image: str, work: str):
        self.criu, self.image, self.work = criu, image, work
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.criu, "lazy-pages", "--images-dir", self.image, "--work-dir", self.work,
            "--log-file", "lazy-pages.log", "-v4",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        sock = os.path.join(self.work, "lazy-pages.socket")
        for _ in range(200):  # the socket appears within ~50 ms
            if os.path.exists(sock):
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.01)
        raise OSError(f"criu lazy-pages did not start: {criu_log_tail(self.work)}")

    async def finish(self) -> int:
        return await self.proc.wait() if self.proc else 0

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()


def memory_tracking(criu: str) -> str | None:
    """None if CRIU can track which pages a process dirtied since a
    pre-dump (the kernel's soft-dirty bits, CONFIG_MEM_SOFT_DIRTY), else
    CRIU's own words for why not. Without it a pre-dump saves nothing: every
    page would be sent again while the container is frozen."""
    try:
        p = subprocess.run([criu, "check", "--feature", "mem_dirty_track"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    out = (p.stdout + p.stderr).strip()
    if p.returncode == 0 and "OFF" not in out:
        return None
    return out.splitlines()[-1] if out else f"criu check exited {p.returncode}"
