"""Websocket sessions: exec with or without a pty, and attach to init."""

import asyncio
import json
import os
import shlex

from aiohttp import web

from .. import logs, validation as v
from ..errors import InvalidArgument
from ..events import parse_timestamp
from .common import container_id, supervisor_of

def _require_upgrade(request: web.Request) -> web.WebSocketResponse:
    """Checked before anything starts: a plain GET (or HEAD) would otherwise
    start a process that no websocket ever closes."""
    ws = web.WebSocketResponse()
    if not ws.can_prepare(request).ok:
        raise InvalidArgument("this endpoint is a websocket: send a GET with "
                              "'Connection: Upgrade' and 'Upgrade: websocket'")
    return ws


async def exec_websocket(request: web.Request) -> web.WebSocketResponse:
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    ws = _require_upgrade(request)
    command = request.query.get("command")
    if not command:
        raise InvalidArgument("command is required", field="command")
    try:
        args = shlex.split(command)
    except ValueError as e:
        raise InvalidArgument(f"cannot parse command: {e}", field="command") from None
    terminal = v.parse_bool(request.query.get("terminal"), "terminal", default=True)
    spec = {"args": args, "terminal": terminal}
    # The rest of an exec's process, as `exec -it -e -w -u` gives it.
    env = request.query.getall("env", [])
    if env:
        spec["env"] = sup.process_defaults(c.id).get("env", []) + env
    if request.query.get("cwd"):
        spec["cwd"] = request.query["cwd"]
    if request.query.get("user"):
        uid, _, gid = request.query["user"].partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidArgument("user must be UID[:GID]", field="user")
        spec["user"] = {"uid": int(uid), "gid": int(gid or uid)}
    process = v.check_process(spec, sup.process_defaults(c.id))
    cols = v.parse_int(request.query.get("w"), "w", default=80, minimum=1)
    rows = v.parse_int(request.query.get("h"), "h", default=24, minimum=1)
    # Started before the upgrade, so a failure is an ordinary JSON error.
    session = await sup.open_exec(c.id, process)
    session.resize(cols, rows)
    await ws.prepare(request)
    if session.pid is not None:
        # What `POST /containers/{id}/resize?pid=` needs for a live resize;
        # a frame, not a header, so that a browser's WebSocket can read it.
        await ws.send_str(json.dumps({"pid": session.pid}))

    async def to_client():
        async for chunk in session.output():
            await ws.send_bytes(chunk)

    async def from_client():
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                await session.write(msg.data.encode())
            elif msg.type == web.WSMsgType.BINARY:
                if not msg.data:
                    # An empty binary frame is the end of the client's input
                    # (a websocket cannot half-close): `echo x | exec -i cat`.
                    session.close_input()
                    continue
                await session.write(msg.data)
        session.close_input()

    out = asyncio.create_task(to_client())
    inp = asyncio.create_task(from_client())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if out.done():
            status = await sup.close_exec(c.id, session)
            if not ws.closed:
                await ws.send_str(json.dumps({"exitStatus": status}))
                await ws.close()
    finally:
        inp.cancel()
        out.cancel()
        if session.running:
            await sup.close_exec(c.id, session)
    return ws


async def attach_websocket(request: web.Request) -> web.WebSocketResponse:
    """Attach to init: its output as text frames (pieces of a terminal's
    lines as they come, so prompts show), frames from the client to its
    stdin. `?logs=true` first replays this run's output, so a client that
    starts a container and then attaches (`run`, `start -a`) misses none."""
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    ws = _require_upgrade(request)
    replay = v.parse_bool(request.query.get("logs"), "logs")
    want_stdin = v.parse_bool(request.query.get("stdin"), "stdin", default=True)
    stdin_fd = await sup.stdin_of_init(c.id) if want_stdin else None
    record = c.record
    since = parse_timestamp(record.started_at) if replay and record.started_at else 0
    # A terminal's lines end in CR LF for the client's raw-mode terminal.
    newline = "\r\n" if record.init is not None and record.init.terminal else "\n"
    await ws.prepare(request)
    loop = asyncio.get_running_loop()

    async def to_client():
        async for e in logs.follow(c.shim.log_path, sup.output_done(c), since_ns=since,
                                   tail=None if replay else 0, partial=True):
            await ws.send_str(e.line + newline if e.complete else e.line)
        # The output is done when init has exited: say how, as exec does, so a
        # client of an autoRemove container still learns its status.
        try:
            await asyncio.wait_for(c.exited.wait(), 5)
        except asyncio.TimeoutError:
            return
        if c.record.exit_status is not None:
            await ws.send_str(json.dumps({"exitStatus": c.record.exit_status}))

    async def from_client():
        async for msg in ws:
            data = msg.data.encode() if msg.type == web.WSMsgType.TEXT else msg.data
            if isinstance(data, bytes) and stdin_fd is not None:
                await loop.run_in_executor(None, os.write, stdin_fd, data)

    out = asyncio.create_task(to_client())
    inp = asyncio.create_task(from_client())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        out.cancel()
        inp.cancel()
        if stdin_fd is not None:
            os.close(stdin_fd)
        if not ws.closed:
            await ws.close()
    return ws


ROUTES = [
    web.get("/containers/{id}/exec/ws", exec_websocket),
    web.get("/containers/{id}/attach", attach_websocket),
]
