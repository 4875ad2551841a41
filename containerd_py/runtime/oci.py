"""The OCI runtime driver: argv for runc and crun, and running them.

Both runtimes share the runc command line for everything used here, so one
class builds the argv; only their names and quirks differ. Commands that
create processes (create, restore, exec) are not run here but handed to the
container's shim, so the processes they leave behind become the shim's
children (it is their subreaper), not the daemon's.
"""

import asyncio

from .. import failpoints
import json
import os
import shutil

from .. import failpoints
from ..errors import NotFound, RuntimeFailure

SUPPORTED = ("runc", "crun")


class OCIRuntime:
    def __init__(self, name: str, root: str, criu: str | None = None):
        path = shutil.which(name) if not os.path.isabs(name) else name
        if path is None:
            raise NotFound(f"OCI runtime {name!r} not found on PATH", runtime=name)
        self.name = os.path.basename(name)
        self.path = path
        self.root = root
        self.criu = criu
        os.makedirs(root, mode=0o700, exist_ok=True)

    def _base(self) -> list[str]:
        return [self.path, "--root", self.root]

    # -- argv handed to the shim ------------------------------------------

    def run_argv(self, cid: str, bundle: str, pid_file: str,
                 console_socket: str | None = None) -> list[str]:
        # `run --detach` is create + start in one runtime process: one Go
        # runtime start-up (~30 ms) less than containerd's create, then start.
        argv = self._base() + ["run", "--detach", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            argv += ["--console-socket", console_socket]
        return argv + [cid]

    def create_argv(self, cid: str, bundle: str, pid_file: str,
                    console_socket: str | None = None) -> list[str]:
        # A warm pool's member: the runtime's create only. Its init waits on
        # the runtime's exec fifo until a claim starts it.
        argv = self._base() + ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            argv += ["--console-socket", console_socket]
        return argv + [cid]

    def exec_fifo(self, cid: str) -> str:
        """Where runc's and crun's init waits to be started (opened for
        writing, it blocks until `start` opens it for reading)."""
        return os.path.join(self.root, cid, "exec.fifo")

    async def start(self, cid: str) -> None:
        await self.run("start", cid)

    def exec_argv(self, cid: str, process_file: str, pid_file: str, *, detach: bool = True,
                  console_socket: str | None = None) -> list[str]:
        # runc only hands a pty master to a console socket when it detaches.
        argv = self._base() + ["exec", "--process", process_file, "--pid-file", pid_file]
        if detach:
            argv.append("--detach")
        if console_socket:
            argv += ["--console-socket", console_socket]
        return argv + [cid]

    def restore_argv(self, cid: str, bundle: str, image: str, work: str,
                     pid_file: str, *, tcp=False, unix_sockets=False, shell=False,
                     lazy: bool = False) -> list[str]:
        argv = self._criu_base() + [
            "restore", "--detach", "--bundle", bundle, "--image-path", image,
            "--work-path", work, "--pid-file", pid_file,
        ]
        argv += _criu_flags(tcp, unix_sockets, shell)
        if lazy:
            # Pages come from the `criu lazy-pages` daemon listening in `work`.
            argv += ["--lazy-pages"]
        return argv + [cid]

    def _criu_base(self) -> list[str]:
        argv = self._base()
        if self.criu and self.name == "runc":
            argv += ["--criu", self.criu]
        return argv

    # -- commands the daemon runs itself ----------------------------------

    async def run(self, *args: str, timeout: float = 60, check: bool = True,
                  argv: list[str] | None = None) -> tuple[int, str, str]:
        argv = argv or self._base() + list(args)
        what = f"{self.name} {args[0]}" if args else self.name
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        if args and args[0] == "checkpoint":
            failpoints.hit("checkpoint-during-dump")
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeFailure(f"{what} timed out after {timeout}s", argv=argv) from None
        out_s, err_s = out.decode(errors="replace"), err.decode(errors="replace")
        if check and proc.returncode != 0:
            raise RuntimeFailure(f"{what} failed: {_clean(err_s or out_s)}",
                                 runtime=self.name, exitCode=proc.returncode)
        return proc.returncode, out_s, err_s

    async def kill(self, cid: str, signal: int) -> None:
        await self.run("kill", cid, str(signal))

    async def pause(self, cid: str) -> None:
        await self.run("pause", cid)

    async def resume(self, cid: str) -> None:
        await self.run("resume", cid)

    async def delete(self, cid: str, force: bool = False) -> None:
        # A restore that failed half-way can leave runc's `criu-root` (a
        # bind mount of the container's root filesystem) mounted in its
        # state dir; runc's delete would then remove the files of the
        # bundle's rootfs through it. Seen with a broken lazy restore.
        from .rootfs import unmount
        criu_root = os.path.join(self.root, cid, "criu-root")
        if os.path.ismount(criu_root):
            unmount(criu_root)
        rc, out, err = await self.run("delete", *(["--force"] if force else []), cid,
                                      check=False)
        if rc != 0 and "does not exist" not in err and "not exist" not in out:
            raise RuntimeFailure(f"{self.name} delete failed: {_clean(err or out)}")

    async def update(self, cid: str, resources: dict) -> None:
        # `update -r -` reads a LinuxResources object from stdin; flags would
        # differ between runc and crun.
        argv = self._base() + ["update", "--resources", "-", cid]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(json.dumps(resources).encode())
        if proc.returncode != 0:
            raise RuntimeFailure(f"{self.name} update failed: "
                                 f"{_clean(err.decode(errors='replace') or out.decode())}")

    async def ps(self, cid: str) -> list[int]:
        _, out, _ = await self.run("ps", "--format", "json", cid)
        return json.loads(out) or []

    async def checkpoint(self, cid: str, image: str, work: str, *, leave_running: bool,
                         tcp=False, unix_sockets=False, shell=False, pre_dump: bool = False,
                         parent: str | None = None, page_server: str | None = None) -> None:
        """`pre_dump`: memory only, the container keeps running (CRIU's
        pre-dump, with memory change tracking); `parent`: the previous
        round's image dir, relative to `image`, so that only pages changed
        since it are dumped."""
        argv = self._criu_base() + ["checkpoint", "--image-path", image, "--work-path", work]
        if pre_dump:
            argv.append("--pre-dump")
        elif leave_running:
            argv.append("--leave-running")
        if parent:
            argv += ["--parent-path", parent]
        if page_server:
            # Memory pages go to `criu page-server` at ADDR:PORT as they are
            # dumped, not into `image`.
            argv += ["--page-server", page_server]
        argv += _criu_flags(tcp, unix_sockets, shell)
        await self.run("checkpoint", argv=argv + [cid], timeout=600)

    async def version(self) -> str:
        _, out, _ = await self.run("--version", argv=[self.path, "--version"], check=False)
        return out.splitlines()[0] if out else ""


def _criu_flags(tcp: bool, unix_sockets: bool, shell: bool) -> list[str]:
    flags = []
    if tcp:
        flags.append("--tcp-established")
    if unix_sockets:
        flags.append("--ext-unix-sk")
    if shell:
        flags.append("--shell-job")
    return flags


def _clean(text: str) -> str:
    """runc logs as logfmt on stderr; keep the message readable in one line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-5:]) if lines else "(no output)"
