"""CRIU itself: whether it works on this host, its logs, and the
`criu lazy-pages` daemon."""

import asyncio
import os
import subprocess


def criu_log_tail(work: str, lines: int = 12) -> str:
    """CRIU's own `Error` lines (the cause is usually far above the end,
    e.g. "Connected TCP socket, consider using --tcp-established option"),
    then the end of its log."""
    for name in ("dump.log", "restore.log", "lazy-pages.log"):
        path = os.path.join(work, name)
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                kept = [ln.rstrip() for ln in f.readlines() if "RLIMIT_NOFILE" not in ln]
            errors = [ln for ln in kept if "Error (" in ln][:6]
            tail = [ln for ln in kept[-lines:] if ln not in errors]
            return f"{name}: " + " | ".join(errors + tail)
    return ""


def criu_status(criu: str | None) -> dict:
    """Whether checkpointing works on this host, and why not."""
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
    status = {"available": ok, "path": criu, "version": version}
    if not ok:
        status["reason"] = out.splitlines()[-1] if out else f"criu check exited {check.returncode}"
    return status


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
