"""The CRI streaming server: the URLs that Exec, Attach and PortForward
return, served over SPDY/3.1 with the Kubernetes stream protocols
(v4.channel.k8s.io for exec and attach, portforward.k8s.io), as the
kubelet's own streaming server does. crictl and critest connect to it
directly; it listens on 127.0.0.1 only.

A URL carries a one-time token for the request it was made for, valid for
a minute (the kubelet's cache uses the same lifetime).
"""

import asyncio
import json
import logging
import os
import secrets
import time

from ..errors import InvalidArgument, NotFound
from . import spdy

log = logging.getLogger("containerd_py.cri.streaming")

TOKEN_TTL = 60.0
# How long the client has to open the streams its request asks for.
STREAMS_TIMEOUT = 30.0
EXEC_PROTOCOLS = ("v4.channel.k8s.io",)
PORTFORWARD_PROTOCOL = "portforward.k8s.io"


def _status(exit_code: int | None, error: str | None = None) -> bytes:
    """The v4 error stream's last word: a metav1.Status."""
    if error is not None:
        return json.dumps({"metadata": {}, "status": "Failure", "message": error,
                           "reason": "InternalError", "code": 500}).encode()
    if not exit_code:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}).encode()


class StreamingServer:
    def __init__(self, sup, exec_process, host: str = "127.0.0.1", port: int = 0):
        self.sup = sup
        # (container id, argv, tty) -> the OCI process an exec runs
        self.exec_process = exec_process
        self.host, self.port = host, port
        self.pending: dict[str, tuple[str, dict, float]] = {}
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("CRI streaming server on http://%s:%d", self.host, self.port)

    async def close(self) -> None:
        if self.server:
            self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def url(self, kind: str, request: dict) -> str:
        now = time.monotonic()
        for tok, (_, _, exp) in list(self.pending.items()):
            if exp < now:
                del self.pending[tok]
        token = secrets.token_urlsafe(18)
        self.pending[token] = (kind, request, now + TOKEN_TTL)
        return f"http://{self.host}:{self.port}/{kind}/{token}"

    # -- HTTP: the request and the upgrade ---------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.TimeoutError:
            # No request line, or not the streams its request needs, in time.
            log.warning("streaming connection: the client did not go on in time")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("streaming connection")
        finally:
            self.tasks.discard(task)
            writer.close()

    async def _handle(self, reader, writer):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
        headers: dict[str, list[str]] = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers.setdefault(k.strip().lower(), []).extend(
                    x.strip() for x in v.split(","))
        parts = path.split("?")[0].strip("/").split("/")
        entry = self.pending.pop(parts[1], None) if len(parts) == 2 else None
        if entry is None or entry[0] != parts[0] or entry[2] < time.monotonic():
            return await _respond(writer, 404, "unknown or expired streaming URL")
        kind, req, _ = entry
        if "spdy/3.1" not in [u.lower() for u in headers.get("upgrade", [])]:
            return await _respond(writer, 400, "this endpoint speaks SPDY/3.1 only")
        offered = headers.get("x-stream-protocol-version", [])
        wanted = (PORTFORWARD_PROTOCOL,) if kind == "portforward" else EXEC_PROTOCOLS
        proto = next((p for p in offered if p in wanted), None)
        if proto is None:
            return await _respond(writer, 403, f"no common stream protocol: offered {offered}, "
                                               f"served {list(wanted)}")
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      f"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {proto}\r\n\r\n"
                      ).encode())
        await writer.drain()
        arrived: asyncio.Queue = asyncio.Queue()
        conn = spdy.Connection(reader, writer, arrived.put_nowait)
        reading = asyncio.create_task(conn.serve())
        try:
            if kind == "portforward":
                await self._portforward(conn, req, arrived, reading)
            else:
                await self._exec_or_attach(kind, conn, req, arrived)
        finally:
            await conn.close()
            reading.cancel()

    # -- exec and attach ------------------------------------------------------------

    async def _streams(self, arrived: asyncio.Queue, want: set[str]) -> dict:
        got = {}
        deadline = time.monotonic() + STREAMS_TIMEOUT
        while not want <= set(got):
            st = await asyncio.wait_for(arrived.get(), max(deadline - time.monotonic(), 0.01))
            got[st.headers.get("streamtype", "")] = st
        return got

    async def _exec_or_attach(self, kind, conn, req, arrived):
        tty = req["tty"]
        want = {"error"}
        for name in ("stdin", "stdout"):
            if req[name]:
                want.add(name)
        if req["stderr"] and not tty:
            want.add("stderr")
        if tty:
            want.add("resize")
        streams = await self._streams(arrived, want)
        err = streams["error"]
        try:
            if kind == "exec":
                code = await self._exec(req, streams)
            else:
                code = await self._attach(req, streams)
            await err.write(_status(code))
        except Exception as e:
            msg = e.message if hasattr(e, "message") else str(e)
            await err.write(_status(None, msg))
        for st in streams.values():
            await st.close()

    async def _exec(self, req, streams) -> int:
        process = self.exec_process(req["container_id"], req["cmd"], req["tty"])
        session = await self.sup.open_exec(req["container_id"], process)
        pumps = []
        try:
            if req["tty"]:
                pumps.append(asyncio.create_task(self._pump_iter(session.output(),
                                                                 streams.get("stdout"))))
                pumps.append(asyncio.create_task(self._resizes(streams["resize"], session)))
            else:
                for name in ("stdout", "stderr"):
                    pumps.append(asyncio.create_task(
                        self._pump_reader(getattr(session.proc, name), streams.get(name))))
            feeding = None
            if "stdin" in streams:
                feeding = asyncio.create_task(self._feed(streams["stdin"], session))
            else:
                session.close_input()
            outputs = pumps[:1] if req["tty"] else pumps
            await asyncio.gather(*outputs)
            if feeding:
                feeding.cancel()
            return await self.sup.close_exec(req["container_id"], session)
        finally:
            for t in pumps:
                t.cancel()
            if session.running:
                await self.sup.close_exec(req["container_id"], session)

    @staticmethod
    async def _pump_iter(chunks, stream):
        async for chunk in chunks:
            if stream is not None:
                await stream.write(chunk)

    @staticmethod
    async def _pump_reader(reader, stream):
        while chunk := await reader.read(65536):
            if stream is not None:
                await stream.write(chunk)

    @staticmethod
    async def _feed(stream, session):
        while (data := await stream.read()) is not None:
            await session.write(data)
        session.close_input()

    @staticmethod
    async def _resizes(stream, session):
        async for cols, rows in _sizes(stream):
            session.resize(cols, rows)

    async def _attach(self, req, streams) -> int:
        """The container's init: its stdin through the shim, its output as
        the shim reads it (raw, from now on: a prompt or `echo -n` reaches
        the client without waiting for a newline, as the log would)."""
        cid = req["container_id"]
        # Subscribed before stdin is fed, so no answer to it is missed.
        output = await self.sup.output_of_init(cid)
        stdin_fd = None
        loop = asyncio.get_running_loop()

        async def pump():
            async for name, data in output.chunks():
                st = streams.get("stderr" if name == "stderr" and not req["tty"]
                                 else "stdout")
                if st is not None:
                    await st.write(data)

        async def feed():
            while (data := await streams["stdin"].read()) is not None:
                await loop.run_in_executor(None, os.write, stdin_fd, data)

        try:
            if "stdin" in streams:
                stdin_fd = await self.sup.stdin_of_init(cid)
            out = asyncio.create_task(pump())
            tasks = {out}
            if stdin_fd is not None:
                tasks.add(asyncio.create_task(feed()))
            resizing = asyncio.create_task(self._resize_init(cid, streams["resize"])) \
                if "resize" in streams else None
            try:
                # The output ending (init exited) or the client's stdin
                # ending (it detached) ends the attach.
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if out not in done and req.get("stdin_once"):
                    # StdinOnce: the container's stdin ends with the attach's.
                    os.close(stdin_fd)
                    stdin_fd = None
                    await self.sup.close_stdin_of_init(cid)
                    await out
            finally:
                for t in tasks | ({resizing} if resizing else set()):
                    t.cancel()
        finally:
            output.close()
            if stdin_fd is not None:
                os.close(stdin_fd)
        return 0

    async def _resize_init(self, cid, stream):
        """Resize events of an attach with a tty go to init's pty."""
        async for cols, rows in _sizes(stream):
            try:
                await self.sup.resize(cid, 0, cols, rows)
            except Exception as e:  # the container went away meanwhile
                log.debug("attach resize: %s", e)
                return

    # -- port forward -------------------------------------------------------------

    async def _portforward(self, conn, req, arrived, reading):
        """portforward.k8s.io: per forwarded connection the client opens an
        `error` and a `data` stream with the same requestID and port; the
        data is relayed to that port inside the pod's network namespace."""
        pairs: dict[str, dict] = {}
        relays = set()
        get = asyncio.create_task(arrived.get())
        while True:
            done, _ = await asyncio.wait({get, reading}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                break
            st = get.result()
            get = asyncio.create_task(arrived.get())
            rid = st.headers.get("requestid", "")
            pair = pairs.setdefault(rid, {})
            pair[st.headers.get("streamtype", "")] = st
            if "error" in pair and "data" in pair:
                del pairs[rid]
                relays.add(asyncio.create_task(self._relay(req, pair)))
        for t in relays:
            t.cancel()

    async def _relay(self, req, pair):
        data, err = pair["data"], pair["error"]
        try:
            port = int(data.headers.get("port", ""))
        except ValueError:
            await err.write(b"invalid port")
            await err.close()
            return
        try:
            reader, writer = await req["connect"](port)
        except (OSError, NotFound, InvalidArgument) as e:
            await err.write(f"failed to connect to port {port} in the pod: {e}".encode())
            await err.close()
            await data.close()
            return

        async def up():
            while (chunk := await data.read()) is not None:
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()

        async def down():
            while chunk := await reader.read(65536):
                await data.write(chunk)
            await data.close()

        # The pod's side closing ends the forwarded connection: the client
        # waits for the error stream's end before it closes its own.
        sending = asyncio.create_task(up())
        try:
            await down()
        finally:
            sending.cancel()
            writer.close()
            await err.close()


async def _sizes(stream):
    """(cols, rows) for each TerminalSize JSON object ({"Width", "Height"})
    the client writes on a resize stream; objects may span DATA frames."""
    buf = ""
    decoder = json.JSONDecoder()
    while (data := await stream.read()) is not None:
        buf = (buf + data.decode(errors="replace")).lstrip()
        while buf:
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break
            if isinstance(obj, dict):
                yield int(obj.get("Width") or 80), int(obj.get("Height") or 24)
            buf = buf[end:].lstrip()


async def _respond(writer, status: int, text: str) -> None:
    body = text.encode()
    reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
