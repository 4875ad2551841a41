"""Checkpoints belong to the bundle, as in early containerd: CRIU images in
`<bundle>/checkpoints/<name>/` plus a small metadata file, so any container
started from that bundle can restore them.

A checkpoint is written into a hidden temporary directory and renamed into
place only once CRIU succeeded: a failed dump never appears in the list.
"""

import asyncio
import dataclasses
import json
import os
import shutil
import logging
import subprocess

from . import restored
from .errors import Conflict, NotFound
from .events import now_ns, rfc3339

log = logging.getLogger("containerd_py.checkpoints")

META = "containerd-py.json"


@dataclasses.dataclass
class CheckpointMeta:
    name: str
    exit: bool = False
    tcp: bool = False
    unixSockets: bool = False
    shell: bool = False
    created: str = ""
    size: int = 0
    container: str = ""
    # The create settings of the container it was taken from: a clone
    # restores with them, into the same spec.
    settings: dict = dataclasses.field(default_factory=dict)


class CheckpointStore:
    def __init__(self, bundle: str):
        self.root = os.path.join(bundle, "checkpoints")

    def path(self, name: str) -> str:
        # `name` is validated as an id by the HTTP layer (no '/', no '..'),
        # so this can never leave the checkpoints directory.
        return os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.path(name), META))

    def require(self, name: str) -> str:
        if not self.exists(name):
            raise NotFound(f"no checkpoint {name!r} in {self.root}", checkpoint=name)
        return self.path(name)

    def begin(self, name: str, token: str) -> str:
        if self.exists(name) or os.path.exists(self.path(name)):
            raise Conflict(f"checkpoint {name!r} already exists", checkpoint=name)
        tmp = os.path.join(self.root, f".{name}.{token}.tmp")
        os.makedirs(tmp)
        return tmp

    def commit(self, tmp: str, meta: CheckpointMeta) -> CheckpointMeta:
        meta.size = _du(tmp)
        meta.created = rfc3339(now_ns())
        with open(os.path.join(tmp, META), "w") as f:
            json.dump(dataclasses.asdict(meta), f)
        final = self.path(meta.name)
        try:
            # rename() onto an existing non-empty dir fails: two containers
            # of one bundle racing for a name cannot both win.
            if os.path.exists(final):
                raise FileExistsError(final)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Conflict(f"checkpoint {meta.name!r} already exists",
                           checkpoint=meta.name) from None
        return meta

    def meta(self, name: str) -> CheckpointMeta:
        with open(os.path.join(self.require(name), META)) as f:
            return CheckpointMeta(**json.load(f))

    def list(self) -> list[CheckpointMeta]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [self.meta(n) for n in names if not n.startswith(".") and self.exists(n)]

    def delete(self, name: str) -> None:
        path = self.require(name)
        # Rename first so a half-deleted checkpoint is never listed.
        doomed = os.path.join(self.root, f".{name}.deleted.{now_ns()}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def _du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


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
    if not inet:
        status["warning"] = (
            f"criu {version} cannot checkpoint a process with an internet socket on "
            f"kernel {kernel}: kernels >= 6.16 refuse SO_PASSCRED on inet sockets and "
            "CRIU before 4.2 fails on it; run make setup for CRIU >= 4.2")
    return status


async def restore_plan(rt, criu: str, cid: str, bundle_path: str, name: str, lazy: bool,
                       run_bundle: str, shim_dir: str, pid_file: str):
    """The runtime command that restores checkpoint `name` of the bundle as
    container `cid`, its CRIU work dir, and the lazy-pages server it needs
    (already listening) or None."""
    store = CheckpointStore(bundle_path)
    image = store.require(name)
    meta = store.meta(name)
    work = os.path.join(shim_dir, "criu-work")
    os.makedirs(work, exist_ok=True)
    pages = None
    if lazy:
        pages = LazyPages(criu, image, work)
        await pages.start()
    argv = rt.restore_argv(cid, run_bundle, image, work, pid_file, tcp=meta.tcp,
                           unix_sockets=meta.unixSockets, shell=meta.shell,
                           lazy=pages is not None)
    return argv, work, pages


async def after_restore(cid: str, pid: int, writable_root: bool) -> None:
    """What runc's restore leaves undone (see restored.py): the loopback of
    the container's fresh network namespace, and the writable root its
    runtime config asks for. A failure is logged, not raised: the restored
    processes run, and only that part of their surroundings is amiss."""
    problems = [("lo is not up in its network namespace", await restored.loopback_up(pid))]
    if writable_root:
        problems.append(("its root stays read-only", await restored.root_writable(pid)))
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
