"""The daemon's side of the shim contract (docs/shim.md).

A shim is a tiny C process per container. The daemon starts it, talks to it
over `shim.sock`, and, when the daemon has been away, reads what it left in
files: `shim.pid`, `init.pid`, `exit` and `exits/PID`.
"""

import asyncio
import dataclasses
import os
import socket

from . import shim_spare
from ._native import ffi as _ffi, lib as _lib
from .errors import RuntimeFailure

SHIM_BINARY = os.path.join(os.path.dirname(__file__), "_bin", "containerd-py-shim")


@dataclasses.dataclass
class ExitRecord:
    pid: int
    status: int
    exited_at_ns: int


def read_exit_file(path: str, pid: int = 0) -> ExitRecord | None:
    """Parsed by the shim's own C parser (the cffi module built from
    native/protocol.c), so both sides agree on the format by construction."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
    except FileNotFoundError:
        return None
    status, ns = _ffi.new("int *"), _ffi.new("long long *")
    if _lib.cdpy_parse_exit(raw, status, ns) != 0:
        # The shim writes exit files with rename(), so a malformed one was
        # written by something else: unknown rather than a crash.
        return None
    return ExitRecord(pid, status[0], ns[0])


def pid_alive(pid: int | None) -> bool:
    """Running, that is: a zombie (exited, not yet reaped by whoever
    inherited it) is not alive, or a crashed shim would look alive until
    the host's init got round to it."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Shim:
    """Files and control socket of one container's shim."""

    def __init__(self, directory: str):
        self.dir = directory
        self.sock_path = os.path.join(directory, "shim.sock")
        self.log_path = os.path.join(directory, "container.log")
        self.init_pid_file = os.path.join(directory, "init.pid")
        self.exit_file = os.path.join(directory, "exit")
        self.exits_dir = os.path.join(directory, "exits")
        self.runtime_ns: tuple[int, int] | None = None

    # -- start ---------------------------------------------------------------

    async def spawn(self, runtime_argv: list[str], *, console_socket: str | None,
                    log_max: int) -> tuple[int, int]:
        """Start the shim, which runs `runtime_argv`; return (shim pid, init
        pid). `runtime_ns` is then (start, end) of the runtime command as the
        shim saw it."""
        # -F: the process started is the shim itself, answering on its
        # stdout (no foreground and double fork: the daemon is the
        # subreaper of its shims anyway); it takes a process group of its
        # own at once, so a Ctrl-C of a foreground daemon does not reach it.
        # Usually the process is a spare shim started ahead (shim_spare.py)
        # that gets this command line on its stdin.
        argv = [SHIM_BINARY, "-F", "-s", self.dir, "-l", str(log_max)]
        if console_socket:
            argv += ["-c", console_socket]
        argv += ["--"] + runtime_argv
        try:
            pid, out_r, err_r = shim_spare.take(argv) or _spawn(argv)
            try:
                out, err = await asyncio.gather(_read_to_eof(out_r), _read_to_eof(err_r))
            finally:
                os.close(out_r)
                os.close(err_r)
        finally:
            shim_spare.refill_soon(SHIM_BINARY)
        if not out.startswith(b"O"):
            # 'E' and the runtime's words, or nothing: the shim has
            # cleaned up and exits.
            returncode = await _wait_exit(pid)
            text = (out[1:] if out.startswith(b"E") else out) or err
            text = text.decode(errors="replace").strip()
            raise RuntimeFailure(f"{os.path.basename(runtime_argv[0])} failed: "
                                 f"{_one_line(text) or 'no output'}",
                                 exitCode=returncode or 1)
        try:
            shim_pid, init_pid, t0, t1 = (int(x) for x in out[1:].split())
        except ValueError:
            raise RuntimeFailure(f"shim answered {out!r}, expected "
                                 "'SHIMPID INITPID START_NS END_NS'") from None
        self.runtime_ns = (t0, t1)
        return shim_pid, init_pid

    # -- control protocol ----------------------------------------------------

    async def _request(self, *fields: str, want_fd: bool = False,
                       timeout: float = 60) -> tuple[str, int | None]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, self.sock_path)
            await loop.sock_sendall(sock, "\0".join(fields).encode() + b"\n")
            if want_fd:
                # recv_fds has no asyncio form; the reply comes at once.
                await asyncio.wait_for(_readable(loop, sock), timeout)
                data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
                fd = fds[0] if fds else None
            else:
                data, fd = b"", None
                while not data.endswith(b"\n"):
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
                    if not chunk:
                        break
                    data += chunk
        except (OSError, asyncio.TimeoutError) as e:
            raise RuntimeFailure(f"shim at {self.sock_path} unreachable: {e}") from None
        finally:
            sock.close()
        line = data.decode(errors="replace").strip()
        if line.startswith("ok"):
            return line[2:].strip(), fd
        raise RuntimeFailure(line[4:] if line.startswith("err") else f"shim said {line!r}")

    async def exec(self, runtime_argv: list[str], pid_file: str, terminal: bool) -> int:
        reply, _ = await self._request("exec", pid_file, "1" if terminal else "0",
                                       *runtime_argv)
        return int(reply)

    async def stdin_fd(self, pid: int = 0) -> int:
        _, fd = await self._request("stdin", str(pid), want_fd=True)
        if fd is None:
            raise RuntimeFailure("shim sent no stdin descriptor")
        return fd

    async def attach(self, pid: int = 0) -> "AttachedOutput":
        """The process's raw output from now on, as the shim reads it (not
        cut into log lines: a prompt without a newline comes at once)."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.sock_path)
        except OSError as e:
            raise RuntimeFailure(f"shim at {self.sock_path} unreachable: {e}") from None
        try:
            writer.write(f"attach\0{pid}\n".encode())
            await writer.drain()
            line = (await reader.readline()).decode(errors="replace").strip()
        except OSError as e:
            writer.close()
            raise RuntimeFailure(f"shim at {self.sock_path} unreachable: {e}") from None
        if not line.startswith("ok"):
            writer.close()
            raise RuntimeFailure(line[4:] if line.startswith("err") else
                                 f"shim said {line!r}")
        return AttachedOutput(reader, writer)

    async def close_stdin(self, pid: int = 0) -> None:
        await self._request("closestdin", str(pid))

    async def reopen_log(self) -> None:
        await self._request("reopenlog")

    async def resize(self, pid: int, cols: int, rows: int) -> None:
        await self._request("resize", str(pid), str(cols), str(rows))

    async def subscribe(self):
        """Yield ExitRecords as the shim reaps processes; ends when the shim
        exits (or cannot be reached: the caller then reads the files)."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.sock_path)
        except OSError:
            return
        try:
            writer.write(b"subscribe\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    return
                parts = line.decode().split()
                if len(parts) == 4 and parts[0] == "exit":
                    yield ExitRecord(int(parts[1]), int(parts[2]), int(parts[3]))
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    # -- files ---------------------------------------------------------------

    def shim_pid(self) -> int | None:
        try:
            with open(os.path.join(self.dir, "shim.pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def init_exit(self) -> ExitRecord | None:
        return read_exit_file(self.exit_file)

    def process_exit(self, pid: int) -> ExitRecord | None:
        return read_exit_file(os.path.join(self.exits_dir, str(pid)), pid)

    def alive(self) -> bool:
        pid = self.shim_pid()
        return pid_alive(pid) and os.path.exists(self.sock_path)


class AttachedOutput:
    """One `attach` connection to the shim (docs/shim.md)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def chunks(self):
        """Yield ("stdout" | "stderr", bytes) until the process has no
        output left (EOF from the shim). A terminal's output is stdout."""
        try:
            while True:
                head = await self.reader.readexactly(5)
                data = await self.reader.readexactly(int.from_bytes(head[1:], "big"))
                yield ("stderr" if head[:1] == b"2" else "stdout"), data
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    def close(self) -> None:
        self.writer.close()


def _spawn(argv: list[str]) -> tuple[int, int, int]:
    """A new shim running `argv`: (pid, stdout read end, stderr read end)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        # posix_spawn (a vfork): neither a copy of the daemon's page
        # tables nor a child-watcher thread per start, which asyncio's
        # subprocess costs.
        pid = os.posix_spawn(SHIM_BINARY, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except OSError as e:
        os.close(out_r)
        os.close(err_r)
        raise RuntimeFailure(f"cannot start the shim {SHIM_BINARY}: {e}") from None
    finally:
        os.close(out_w)
        os.close(err_w)
    return pid, out_r, err_r


async def _readable(loop, sock) -> None:
    fut = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


async def _read_to_eof(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    done = loop.create_future()
    chunks = []

    def readable():
        try:
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        except BlockingIOError:
            return
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


async def _wait_exit(pid: int) -> int:
    """Exit code of our child `pid`: its pidfd becomes readable when it has
    exited (the shim's foreground exits right after its answer)."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    if pidfd is not None:
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0) if pidfd is None \
        else os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-6:])
