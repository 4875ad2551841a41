"""Interactive sessions: a process whose input and output a client holds
open (the websocket exec endpoint).

Its output belongs to the client, not to the container's log, so the
daemon runs it rather than the shim. Without a terminal, `runtime exec`
runs in the foreground on pipes, like ExecSync. With one, the runtime only
hands over the pty master through a console socket when it detaches
(runc refuses otherwise), so the process is started detached: as subreaper
the daemon inherits it and waits for it through a pidfd.
"""

import array
import asyncio
import fcntl
import os
import socket
import struct
import tempfile
import termios

from .errors import RuntimeFailure


class ExecSession:
    def __init__(self, pid_file: str):
        self.pid_file = pid_file
        self.proc: asyncio.subprocess.Process | None = None  # the runtime
        self.master: int | None = None
        self.pid: int | None = None  # the process, when detached
        self.status: int | None = None

    @classmethod
    async def start(cls, runtime_argv_for, terminal: bool, work_dir: str,
                    pid_file: str) -> "ExecSession":
        """`runtime_argv_for(console_socket_or_None)` builds the exec argv
        (detached, with --tty, when given a console socket)."""
        session = cls(pid_file)
        if not terminal:
            session.proc = await asyncio.create_subprocess_exec(
                *runtime_argv_for(None), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            return session
        # Short: the shim dir's name is sized so that "exec-console.sock"
        # (17 bytes) still fits in sun_path below it; this one is 14.
        console = tempfile.mktemp(prefix="x", suffix=".sock", dir=work_dir)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(console)
        listener.listen(1)
        listener.setblocking(False)
        try:
            session.proc = await asyncio.create_subprocess_exec(
                *runtime_argv_for(console), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            session.master = await session._receive_master(listener)
            _, err = await session.proc.communicate()
            if session.proc.returncode != 0:
                raise RuntimeFailure(f"exec failed: {err.decode(errors='replace').strip()}")
            with open(pid_file) as f:
                session.pid = int(f.read().strip())
        except BaseException:
            if session.master is not None:
                os.close(session.master)
            raise
        finally:
            listener.close()
            os.unlink(console)
        return session

    async def _receive_master(self, listener: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        accept = loop.create_task(loop.sock_accept(listener))
        exited = loop.create_task(self.proc.wait())
        done, _ = await asyncio.wait({accept, exited}, timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        if accept not in done:
            accept.cancel()
            err = await self.proc.stderr.read() if exited in done else b"timed out"
            raise RuntimeFailure(f"exec failed: {err.decode(errors='replace').strip()}")
        exited.cancel()
        conn, _ = accept.result()
        with conn:
            conn.setblocking(True)
            fds = array.array("i")
            _, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_LEN(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:fds.itemsize])
        if not fds:
            raise RuntimeFailure("the runtime sent no pty master")
        os.set_blocking(fds[0], False)
        return fds[0]

    async def output(self):
        """Yield chunks of output until the process is done with it."""
        if self.master is not None:
            loop = asyncio.get_running_loop()
            while True:
                fut = loop.create_future()
                loop.add_reader(self.master, lambda: fut.done() or fut.set_result(None))
                try:
                    await fut
                finally:
                    loop.remove_reader(self.master)
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the last holder of the slave is gone
                    return
                if not data:
                    return
                yield data
        else:
            queue: asyncio.Queue = asyncio.Queue()

            async def pump(stream):
                while chunk := await stream.read(65536):
                    await queue.put(chunk)
                await queue.put(None)

            tasks = [asyncio.create_task(pump(s)) for s in (self.proc.stdout, self.proc.stderr)]
            open_streams = 2
            while open_streams:
                chunk = await queue.get()
                if chunk is None:
                    open_streams -= 1
                else:
                    yield chunk
            await asyncio.gather(*tasks)

    async def write(self, data: bytes) -> None:
        if self.master is not None:
            os.write(self.master, data)
        else:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    def close_input(self) -> None:
        if self.master is None and self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    @property
    def running(self) -> bool:
        return self.status is None

    def resize(self, cols: int, rows: int) -> None:
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def wait(self) -> int:
        if self.status is not None:
            return self.status
        if self.pid is None:
            status = await self.proc.wait()
            self.status = status if status >= 0 else 128 - status
        else:
            self.status = await _wait_adopted(self.pid)
        if self.master is not None:
            os.close(self.master)
            self.master = None
        return self.status

    def kill(self) -> None:
        """End the process itself: killing a foreground `runtime exec`
        would leave it running in the container."""
        pid = self.pid
        if pid is None:
            try:
                with open(self.pid_file) as f:
                    pid = int(f.read().strip())
            except (FileNotFoundError, ValueError):
                pid = None
        if pid is not None and self.status is None:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


async def _wait_adopted(pid: int) -> int:
    """Wait for a process the daemon inherited as subreaper."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        fut = loop.create_future()
        loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 255  # reaped elsewhere: its status is unknowable
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
        else 128 + os.WTERMSIG(status)
