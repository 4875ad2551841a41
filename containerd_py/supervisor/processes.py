"""The processes of a container: exec'd ones (detached, to completion, or
an interactive session), signals, waits, the init's stdio, top and resize.

A part of the supervisor (mixed into `Supervisor`), in a file of its own
because it is one concern: it uses the supervisor's registry, locks,
records and events, and the shim's exec and stdio requests.
"""

import asyncio
import json
import os
import uuid
from typing import TYPE_CHECKING

import psutil

from .. import bundle as bundle_mod, states
from ..errors import Conflict, DaemonError, NotFound, RuntimeFailure
from ..interactive import ExecSession
from ..runtime import failures
from ..states import Status
from ..store import ProcessRecord

if TYPE_CHECKING:
    from .core import Container


class ProcessOperations:
    async def exec(self, ref: str, process: dict) -> ProcessRecord:
        c = self.get(ref)
        async with c.lock:
            states.check("exec", c.record.status, c.id)
            rt = self.runtime(c.record.runtime)
            proc_file, pid_file = _write_process(c, process, "exec")
            # The shim listens on this one path and runs one exec at a time.
            console = (os.path.join(c.shim.dir, "exec-console.sock")
                       if process["terminal"] else None)
            try:
                pid = await c.shim.exec(
                    rt.exec_argv(c.rid, proc_file, pid_file, console_socket=console),
                    pid_file, process["terminal"])
            except RuntimeFailure as e:
                raise failures.classify(e) from None
            finally:
                for path in (proc_file, pid_file):
                    _unlink(path)
            p = bundle_mod.process_record(process, pid)
            c.record.execs.append(p)
            self.store.save(c.record)
            self.events.emit("start-process", c.id, pid=pid)
            # The process may already be gone, its exit line sent before we
            # knew its pid; the shim's exit file settles it.
            ex = c.shim.process_exit(pid)
            if ex is not None:
                self._on_process_exit(c, ex)
            return p

    async def signal_process(self, ref: str, pid: int, signal: int) -> None:
        c = self.get(ref)
        async with c.lock:
            states.check("signal-process", c.record.status, c.id)
            procs = c.record.processes()
            if not any(p.pid == pid for p in procs):
                raise NotFound(f"no process {pid} in container {c.id!r}", id=c.id, pid=pid)
            if pid == c.record.init.pid:
                await self._kill(c, signal)
            else:
                try:
                    os.kill(pid, signal)
                except ProcessLookupError:
                    raise NotFound(f"process {pid} has exited", id=c.id, pid=pid) from None

    async def wait_process(self, ref: str, pid: int) -> int:
        c = self.get(ref)
        r = c.record
        if str(pid) in r.exec_exits:
            return r.exec_exits[str(pid)]
        if r.init is not None and pid == r.init.pid:
            await c.exited.wait()
            return r.exit_status
        if not any(p.pid == pid for p in r.execs):
            raise NotFound(f"no process {pid} in container {c.id!r}", id=c.id, pid=pid)
        ev = c.process_exited.setdefault(pid, asyncio.Event())
        await ev.wait()
        if str(pid) not in r.exec_exits:
            raise NotFound(f"exit status of process {pid} is unknown", id=c.id, pid=pid)
        return r.exec_exits[str(pid)]

    async def exec_sync(self, ref: str, process: dict, timeout: float | None,
                        limit: int) -> dict:
        """Run a process to completion and return its output, like
        Kubernetes' ExecSync. The daemon runs `runtime exec` in the foreground
        (the shim is not involved: the caller waits for the result)."""
        c = self.get(ref)
        async with c.lock:
            states.check("exec", c.record.status, c.id)
        rt = self.runtime(c.record.runtime)
        proc_file, pid_file = _write_process(c, process, "sync")
        argv = rt.exec_argv(c.rid, proc_file, pid_file, detach=False)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        self.events.emit("exec", c.id, args=process["args"])
        out, err = _Capped(limit), _Capped(limit)
        pumps = asyncio.gather(out.pump(proc.stdout), err.pump(proc.stderr))
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(pumps), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            # Killing `runc exec` would orphan the process; kill the process
            # and its descendants (they hold its output pipes open). The pid
            # file appears only once runc has started it.
            for _ in range(50):
                if _kill_pid_file(pid_file) or proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            try:
                await asyncio.wait_for(asyncio.shield(pumps), 2)
            except asyncio.TimeoutError:
                # Something that escaped to init still holds the pipes, and
                # `runc exec` waits for their EOF too: stop both.
                pumps.cancel()
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        status = await proc.wait()
        for path in (proc_file, pid_file):
            _unlink(path)
        return {"exitStatus": status if status >= 0 else 128 - status,
                "stdout": out.text(), "stderr": err.text(),
                "truncated": out.truncated or err.truncated, "timedOut": timed_out}

    async def open_exec(self, ref: str, process: dict) -> ExecSession:
        """Start an interactive process; the caller pumps its input and
        output and must `close_exec` it."""
        c = self.get(ref)
        async with c.lock:
            states.check("exec", c.record.status, c.id)
        rt = self.runtime(c.record.runtime)
        proc_file, pid_file = _write_process(c, process, "ws")

        def argv(console):
            return rt.exec_argv(c.rid, proc_file, pid_file, detach=console is not None,
                                console_socket=console)

        try:
            session = await ExecSession.start(argv, process["terminal"], c.shim.dir, pid_file)
        except BaseException:
            _unlink(proc_file)
            raise
        # A foreground runtime may still be reading it: removed on close.
        session.process_file = proc_file
        if session.pid is not None:
            c.sessions[session.pid] = session
        self.events.emit("exec", c.id, pid=session.pid, args=process["args"])
        return session

    async def close_exec(self, ref: str, session: ExecSession) -> int:
        session.kill()  # no-op when it has exited
        status = await session.wait()
        c = self.containers.get(ref)
        if c is not None and c.sessions.get(session.pid) is session:
            del c.sessions[session.pid]
        _unlink(session.pid_file)
        _unlink(session.process_file)
        return status

    async def reopen_log(self, ref: str) -> None:
        """Make the shim open its log file again (after the caller moved it
        away, as the kubelet's log rotation does)."""
        c = self.get(ref)
        states.check("logs", c.record.status, c.id)
        if c.record.status == Status.STOPPED:
            raise Conflict(f"container {c.id!r} is not running", id=c.id, status="stopped")
        await c.shim.reopen_log()

    async def close_stdin_of_init(self, ref: str) -> None:
        """EOF on init's stdin (the CRI's StdinOnce, when the attach ends)."""
        c = self.get(ref)
        states.check("attach", c.record.status, c.id)
        await c.shim.close_stdin(0)

    async def output_of_init(self, ref: str):
        """init's raw output from now on (an AttachedOutput to close)."""
        c = self.get(ref)
        states.check("attach", c.record.status, c.id)
        return await c.shim.attach(0)

    async def stdin_of_init(self, ref: str) -> int:
        c = self.get(ref)
        states.check("attach", c.record.status, c.id)
        return await c.shim.stdin_fd(0)

    async def top(self, ref: str) -> list[dict]:
        c = self.get(ref)
        states.check("top", c.record.status, c.id)
        pids = await self.runtime(c.record.runtime).ps(c.rid)
        rows = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    rows.append({"pid": pid, "ppid": p.ppid(), "user": p.username(),
                                 "command": " ".join(p.cmdline()) or p.name(),
                                 "status": p.status(),
                                 "cpuPercent": p.cpu_percent(None),
                                 "rss": p.memory_info().rss})
            except psutil.Error:
                continue  # exited between ps and now
        return rows

    async def resize(self, ref: str, pid: int, cols: int, rows: int) -> None:
        c = self.get(ref)
        states.check("resize", c.record.status, c.id)
        if pid in c.sessions:
            c.sessions[pid].resize(cols, rows)
            return
        procs = {p.pid: p for p in c.record.processes()}
        target = procs.get(pid or c.record.init.pid)
        if target is None:
            raise NotFound(f"no process {pid} in container {c.id!r}", id=c.id, pid=pid)
        if not target.terminal:
            raise Conflict(f"process {target.pid} has no terminal", id=c.id, pid=target.pid)
        await c.shim.resize(0 if target is c.record.init else target.pid, cols, rows)

    @staticmethod
    def output_done(c: "Container"):
        """A predicate: has the container written its last log line? The
        shim reports init's exit before it drains the pipes, so a stopped
        container's log is complete only once its shim is gone too."""
        return lambda: c.exited.is_set() and not c.shim.alive()

    def process_defaults(self, ref: str) -> dict:
        """What an exec'd process inherits from init (env, user, cwd,
        capabilities): the spec the daemon wrote for it, settings included."""
        c = self.get(ref)
        for path in (os.path.join(c.shim.dir, "bundle"), c.record.bundle_path):
            try:
                return bundle_mod.read_config(path).get("process", {})
            except DaemonError:
                continue
        return {}


class _Capped:
    """Collects a stream up to `limit` bytes, then drains and drops the rest
    so the process never blocks on a full pipe."""

    def __init__(self, limit: int):
        self.limit, self.buf, self.truncated = limit, bytearray(), False

    async def pump(self, stream) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - len(self.buf)
            if len(chunk) > room:
                self.truncated = True
            self.buf += chunk[:max(room, 0)]

    def text(self) -> str:
        return self.buf.decode(errors="replace")


def _write_process(c: "Container", process: dict, kind: str) -> tuple[str, str]:
    """The OCI process file `runtime exec --process` reads, and the pid file
    it will write, unique per exec."""
    token = f"{kind}-{uuid.uuid4().hex[:12]}"
    proc_file = os.path.join(c.shim.dir, token + ".json")
    with open(proc_file, "w") as f:
        json.dump(process, f)
    return proc_file, os.path.join(c.shim.dir, token + ".pid")


def _kill_pid_file(path: str) -> bool:
    """SIGKILL the process in a pid file and its descendants; False if
    there is no pid file (yet)."""
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        family = [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        family = []
    for p in [pid] + family:
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
