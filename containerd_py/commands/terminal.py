"""Interactive sessions for `run -it`, `exec -it` and `attach`: the user's
terminal in raw mode, joined to a websocket of the daemon.

Keys pass through untouched except the detach sequence (ctrl-p ctrl-q, as
in docker and podman), which leaves the container running. SIGWINCH resizes
the remote pty. The session's exit status becomes the command's.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty
import urllib.parse

DETACH = b"\x10\x11"  # ctrl-p ctrl-q


class Detached(Exception):
    pass


def _ws_target(address: str):
    """aiohttp connector and base URL for HOST:PORT or unix:PATH."""
    import aiohttp
    address = address.removeprefix("http://")
    if address.startswith("unix:"):
        return aiohttp.UnixConnector(path=address[5:]), "http://localhost"
    return aiohttp.TCPConnector(), f"http://{address}"


@contextlib.contextmanager
def raw_terminal(enabled: bool):
    fd = sys.stdin.fileno()
    if not enabled or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSANOW, not setraw's default TCSAFLUSH: what the user typed while the
    # client was starting is sent, not thrown away.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size() -> tuple[int, int]:
    # The terminal itself first: COLUMNS/LINES in the environment (which
    # shutil prefers) may be stale, and the remote pty must match the screen.
    for fd in (sys.stdin.fileno(), sys.stdout.fileno()):
        try:
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
        except OSError:
            continue
    size = shutil.get_terminal_size((80, 24))
    return size.columns, size.lines


async def _session(address: str, path: str, query: dict, *, tty_mode: bool, stdin: bool,
                   on_pid=None, resize=None) -> int | None:
    """Run one websocket session; returns the exit status the daemon sent
    (None if it sent none), raises Detached on ctrl-p ctrl-q."""
    import aiohttp
    connector, base = _ws_target(address)
    url = f"{base}{path}?{urllib.parse.urlencode(query, doseq=True)}"
    loop = asyncio.get_running_loop()
    status: list[int | None] = [None]
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.ws_connect(url, max_msg_size=0) as ws:
            out = sys.stdout.buffer

            async def from_daemon():
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        out.write(msg.data)
                        out.flush()
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        data = msg.data
                        if data.startswith("{"):
                            try:
                                obj = json.loads(data)
                            except ValueError:
                                obj = None
                            if isinstance(obj, dict) and "exitStatus" in obj:
                                status[0] = obj["exitStatus"]
                                continue
                            if isinstance(obj, dict) and set(obj) == {"pid"}:
                                if on_pid:
                                    await on_pid(obj["pid"])
                                continue
                        out.write(data.encode())
                        out.flush()

            async def to_daemon():
                if not stdin:
                    await asyncio.Event().wait()
                reader = asyncio.StreamReader()
                transport, _ = await loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
                prev = b""
                try:
                    while True:
                        data = await reader.read(4096)
                        if not data:
                            # End of input: the process's stdin closes (an
                            # empty frame says so); its output still comes.
                            await ws.send_bytes(b"")
                            await asyncio.Event().wait()
                        if tty_mode and DETACH in prev[-1:] + data:
                            raise Detached()
                        prev = data
                        await ws.send_bytes(data)
                finally:
                    transport.close()

            if resize and tty_mode:
                loop.add_signal_handler(signal.SIGWINCH,
                                        lambda: asyncio.ensure_future(resize(*terminal_size())))
            reading = asyncio.create_task(from_daemon())
            writing = asyncio.create_task(to_daemon())
            try:
                # The session ends with the daemon's side (the process exited)
                # or with a detach; the end of our stdin alone ends nothing.
                done, _ = await asyncio.wait({reading, writing},
                                             return_when=asyncio.FIRST_COMPLETED)
                if writing in done and writing.exception():
                    raise writing.exception()
                await reading
            finally:
                writing.cancel()
                reading.cancel()
                if resize and tty_mode:
                    loop.remove_signal_handler(signal.SIGWINCH)
    return status[0]


class SessionRefused(Exception):
    """The daemon answered the websocket upgrade with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def run_session(address: str, path: str, query: dict, *, tty_mode: bool, stdin: bool,
                on_pid=None, resize=None) -> int | None:
    import aiohttp
    try:
        with raw_terminal(tty_mode):
            return asyncio.run(_session(address, path, query, tty_mode=tty_mode, stdin=stdin,
                                        on_pid=on_pid, resize=resize))
    except aiohttp.WSServerHandshakeError as e:
        raise SessionRefused(e.status, e.message) from None
