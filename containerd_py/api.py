"""The HTTP layer: parse and validate requests, call the supervisor, map
errors to status codes (in `error_middleware`, the one place that does).

Routes are declared in one table at the bottom of the module.
"""

import asyncio
import dataclasses
import json
import logging
import os
import shlex

from aiohttp import web

from . import __version__, logs, validation as v
from .errors import DaemonError, InvalidArgument, TooLarge
from .events import parse_timestamp
from .openapi import document as openapi_document
from .states import Status
from .supervisor import Supervisor

log = logging.getLogger("containerd_py.api")

SUPERVISOR = web.AppKey("supervisor", Supervisor)
MAX_BODY = 1024 * 1024
EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except DaemonError as e:
        if e.http_status >= 500:
            log.error("%s %s: %s", request.method, request.path, e.message)
        return _json(e.body(), e.http_status)
    except web.HTTPRequestEntityTooLarge as e:
        return _json(TooLarge(f"request body too large: {e.text}", limit=MAX_BODY).body(), 413)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _json({"error": e.reason if e.status != 404 else
                      f"no route for {request.method} {request.path}"}, e.status)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as e:  # a bug: say so, keep serving
        log.exception("%s %s", request.method, request.path)
        return _json({"error": f"internal error: {type(e).__name__}: {e}"}, 500)


async def _body(request: web.Request, required: bool = True) -> dict:
    if not request.can_read_body:
        if required:
            raise InvalidArgument("a JSON object body is required")
        return {}
    raw = await request.read()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("body must be a JSON object")
    return body


def _sup(request: web.Request) -> Supervisor:
    return request.app[SUPERVISOR]


def _cid(request: web.Request) -> str:
    return v.check_id(request.match_info["id"])


def _bool_field(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key} must be a boolean", field=key)
    return value


# -- containers -------------------------------------------------------------

async def create_container(request: web.Request) -> web.Response:
    cid = _cid(request)
    body = await _body(request)
    bundle = v.check_abs_path(body.get("bundlePath"), "bundlePath")
    checkpoint = body.get("checkpoint")
    if checkpoint is not None:
        v.check_id(checkpoint, "checkpoint")
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in labels.items()):
        raise InvalidArgument("labels must be an object of strings", field="labels")
    runtime = body.get("runtime")
    if runtime is not None and not isinstance(runtime, str):
        raise InvalidArgument("runtime must be a string", field="runtime")
    name = body.get("name")
    if name is not None:
        v.check_id(name, "name")
    policy = _restart_policy(body.get("restartPolicy"))
    if _bool_field(body, "lazy") and checkpoint is None:
        raise InvalidArgument("lazy restores a checkpoint: give checkpoint too", field="lazy")
    c = await _sup(request).create(
        cid, bundle, name=name, labels=labels, runtime=runtime, checkpoint=checkpoint,
        auto_remove=_bool_field(body, "autoRemove"), restart_policy=policy,
        overlay=_bool_field(body, "overlay"), lazy=_bool_field(body, "lazy"))
    return _json(c.record.to_api(), 201)


def _restart_policy(value) -> dict:
    if value is None:
        return {"name": "no"}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name", "no") not in ("no", "on-failure",
                                                                      "always"):
        raise InvalidArgument('restartPolicy.name must be "no", "on-failure" or "always"',
                              field="restartPolicy")
    retries = value.get("maximumRetryCount", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("restartPolicy.maximumRetryCount must be an integer >= 0",
                              field="restartPolicy")
    return {"name": value.get("name", "no"), "maximumRetryCount": retries}


async def list_containers(request: web.Request) -> web.Response:
    return _json([c.record.to_api() for c in _filtered(request)])


def _filtered(request: web.Request):
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise InvalidArgument(f"unknown status {status!r}: use running, paused or stopped",
                              field="status")
    labels = request.query.getall("label", [])
    out = []
    for c in _sup(request).all():
        if status and c.record.status.value != status:
            continue
        if not all(_label_matches(c.record.labels, sel) for sel in labels):
            continue
        out.append(c)
    return out


def _label_matches(labels: dict, selector: str) -> bool:
    key, eq, value = selector.partition("=")
    return key in labels and (not eq or labels[key] == value)


async def get_container(request: web.Request) -> web.Response:
    return _json(_sup(request).get(_cid(request)).record.to_api())


async def delete_container(request: web.Request) -> web.Response:
    force = v.parse_bool(request.query.get("force"), "force")
    await _sup(request).delete(_cid(request), force=force)
    return web.Response(status=204)


async def prune_containers(request: web.Request) -> web.Response:
    if request.query.get("status") != "stopped":
        raise InvalidArgument("only DELETE /containers?status=stopped (prune) is supported",
                              field="status")
    deleted = []
    for c in _filtered(request):
        try:
            await _sup(request).delete(c.id)
            deleted.append(c.id)
        except DaemonError:
            pass  # restarted or removed meanwhile
    return _json({"deleted": deleted})


async def patch_container(request: web.Request) -> web.Response:
    sup = _sup(request)
    cid = _cid(request)
    body = await _body(request)
    known = {"status", "signal", "resources", "cpu", "memory"}
    unknown = set(body) - known
    if unknown or not body:
        raise InvalidArgument(f"PATCH takes one of {sorted(known)}; got {sorted(body)}")
    if "status" in body:
        status = body["status"]
        if status == "paused":
            await sup.pause(cid)
        elif status == "running":
            await sup.resume(cid)
        else:
            raise InvalidArgument('status must be "paused" or "running"', field="status")
    if "signal" in body:
        await sup.kill(cid, v.check_signal(body["signal"]))
    if known & set(body) - {"status", "signal"}:
        await update_resources(sup, cid, body)
    return _json(sup.get(cid).record.to_api())


async def update_resources(sup: Supervisor, cid: str, body: dict) -> None:
    await sup.update(cid, v.oci_resources(body))


# -- processes ----------------------------------------------------------------

async def add_process(request: web.Request) -> web.Response:
    sup = _sup(request)
    c = sup.get(_cid(request))
    body = await _body(request)
    process = v.check_process(body, sup.process_defaults(c.id))
    p = await sup.exec(c.id, process)
    return _json(p.to_api(), 201)


async def signal_process(request: web.Request) -> web.Response:
    pid = v.parse_int(request.match_info["pid"], "pid", minimum=1)
    body = await _body(request)
    await _sup(request).signal_process(_cid(request), pid, v.check_signal(body.get("signal")))
    return _json({"pid": pid, "signal": body["signal"]})


async def wait_process(request: web.Request) -> web.Response:
    pid = v.parse_int(request.match_info["pid"], "pid", minimum=1)
    status = await _sup(request).wait_process(_cid(request), pid)
    return _json({"pid": pid, "exitStatus": status})


# -- lifecycle -----------------------------------------------------------------

def _timeout(request: web.Request) -> int:
    return v.parse_int(request.query.get("timeout"), "timeout", default=10)


async def stop_container(request: web.Request) -> web.Response:
    c = await _sup(request).stop(_cid(request), _timeout(request))
    return _json(c.record.to_api())


async def start_container(request: web.Request) -> web.Response:
    body = await _body(request, required=False)
    checkpoint = body.get("checkpoint")
    if checkpoint is not None:
        v.check_id(checkpoint, "checkpoint")
    if _bool_field(body, "lazy") and checkpoint is None:
        raise InvalidArgument("lazy restores a checkpoint: give checkpoint too", field="lazy")
    c = await _sup(request).start(_cid(request), checkpoint, _bool_field(body, "lazy"))
    return _json(c.record.to_api())


async def restart_container(request: web.Request) -> web.Response:
    c = await _sup(request).restart(_cid(request), _timeout(request))
    return _json(c.record.to_api())


async def kill_container(request: web.Request) -> web.Response:
    body = await _body(request, required=False)
    await _sup(request).kill(_cid(request), v.check_signal(body.get("signal", 9)))
    return _json(_sup(request).get(_cid(request)).record.to_api())


async def pause_container(request: web.Request) -> web.Response:
    return _json((await _sup(request).pause(_cid(request))).record.to_api())


async def unpause_container(request: web.Request) -> web.Response:
    return _json((await _sup(request).resume(_cid(request))).record.to_api())


async def wait_container(request: web.Request) -> web.Response:
    record = await _sup(request).wait(_cid(request))
    return _json({"id": record.id, "exitStatus": record.exit_status,
                  "exitedAt": record.exited_at})


async def exec_sync(request: web.Request) -> web.Response:
    sup = _sup(request)
    c = sup.get(_cid(request))
    body = await _body(request)
    process = v.check_process(body, _sup(request).process_defaults(c.id))
    if process["terminal"]:
        raise InvalidArgument("exec runs to completion without a terminal; use the "
                              "websocket form for interactive sessions", field="terminal")
    timeout = body.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise InvalidArgument("timeout must be a positive number of seconds", field="timeout")
    limit = body.get("outputLimit", EXEC_OUTPUT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgument("outputLimit must be a non-negative integer", field="outputLimit")
    return _json(await sup.exec_sync(c.id, process, timeout, limit))


async def get_logs(request: web.Request) -> web.StreamResponse:
    sup = _sup(request)
    c = sup.get(_cid(request))
    q = request.query
    follow = v.parse_bool(q.get("follow"), "follow")
    tail = None if q.get("tail") in (None, "", "all") else v.parse_int(q.get("tail"), "tail")
    since = parse_timestamp(q["since"]) if q.get("since") else 0
    streams = tuple(s for s in ("stdout", "stderr")
                    if v.parse_bool(q.get(s), s, default=True))
    timestamps = v.parse_bool(q.get("timestamps"), "timestamps")
    fmt = q.get("format", "text" if follow else "json")
    if fmt not in ("json", "text"):
        raise InvalidArgument('format must be "json" or "text"', field="format")

    def render(e) -> str:
        if fmt == "json":
            return json.dumps(e.to_api()) + "\n"
        return (f"{e.timestamp} " if timestamps else "") + e.line + "\n"

    path = c.shim.log_path
    if not follow and fmt == "json":
        return _json([e.to_api() for e in logs.read_entries(
            path, streams=streams, since_ns=since, tail=tail)])
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson" if fmt == "json"
                                       else "text/plain; charset=utf-8"})
    await resp.prepare(request)
    if not follow:
        for e in logs.read_entries(path, streams=streams, since_ns=since, tail=tail):
            await resp.write(render(e).encode())
        return resp
    async for e in logs.follow(path, sup.output_done(c), streams=streams, since_ns=since,
                               tail=tail):
        await resp.write(render(e).encode())
    return resp


async def get_stats(request: web.Request) -> web.StreamResponse:
    sup = _sup(request)
    cid = _cid(request)
    if not v.parse_bool(request.query.get("stream"), "stream"):
        return _json(sup.stats(cid))
    first = sup.stats(cid)  # errors before the stream starts are plain 4xx
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    await resp.write((json.dumps(first) + "\n").encode())
    while True:
        await asyncio.sleep(1)
        try:
            await resp.write((json.dumps(sup.stats(cid)) + "\n").encode())
        except DaemonError:
            return resp  # stopped or deleted: the stream ends


async def get_top(request: web.Request) -> web.Response:
    cid = _cid(request)
    return _json({"id": cid, "titles": ["PID", "PPID", "USER", "COMMAND"],
                  "processes": await _sup(request).top(cid)})


async def rename_container(request: web.Request) -> web.Response:
    name = request.query.get("name")
    if name is None:
        body = await _body(request, required=False)
        name = body.get("name")
    v.check_id(name, "name")
    return _json((await _sup(request).rename(_cid(request), name)).record.to_api())


async def resize(request: web.Request) -> web.Response:
    q = request.query
    cols = v.parse_int(q.get("w"), "w", minimum=1)
    rows = v.parse_int(q.get("h"), "h", minimum=1)
    if cols is None or rows is None:
        raise InvalidArgument("w and h (columns and rows) are required")
    pid = v.parse_int(q.get("pid"), "pid", default=0)
    await _sup(request).resize(_cid(request), pid, cols, rows)
    return _json({"w": cols, "h": rows})


# -- websockets -----------------------------------------------------------------

async def exec_websocket(request: web.Request) -> web.WebSocketResponse:
    sup = _sup(request)
    c = sup.get(_cid(request))
    command = request.query.get("command")
    if not command:
        raise InvalidArgument("command is required", field="command")
    try:
        args = shlex.split(command)
    except ValueError as e:
        raise InvalidArgument(f"cannot parse command: {e}", field="command") from None
    terminal = v.parse_bool(request.query.get("terminal"), "terminal", default=True)
    process = v.check_process({"args": args, "terminal": terminal}, sup.process_defaults(c.id))
    cols = v.parse_int(request.query.get("w"), "w", default=80, minimum=1)
    rows = v.parse_int(request.query.get("h"), "h", default=24, minimum=1)
    # Started before the upgrade, so a failure is an ordinary JSON error.
    session = await sup.open_exec(c.id, process)
    session.resize(cols, rows)
    ws = web.WebSocketResponse()
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
    sup = _sup(request)
    c = sup.get(_cid(request))
    stdin_fd = await sup.stdin_of_init(c.id)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    loop = asyncio.get_running_loop()

    async def to_client():
        async for e in logs.follow(c.shim.log_path, sup.output_done(c), tail=0):
            await ws.send_str(e.line + "\n")

    async def from_client():
        async for msg in ws:
            data = msg.data.encode() if msg.type == web.WSMsgType.TEXT else msg.data
            if isinstance(data, bytes):
                await loop.run_in_executor(None, os.write, stdin_fd, data)

    out = asyncio.create_task(to_client())
    inp = asyncio.create_task(from_client())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        out.cancel()
        inp.cancel()
        os.close(stdin_fd)
        if not ws.closed:
            await ws.close()
    return ws


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


# -- checkpoints ----------------------------------------------------------------

async def create_checkpoint(request: web.Request) -> web.Response:
    name = v.check_id(request.match_info["name"], "checkpoint")
    body = await _body(request, required=False)
    flags = {k: _bool_field(body, k) for k in ("exit", "tcp", "unixSockets", "shell")}
    unknown = set(body) - set(flags)
    if unknown:
        raise InvalidArgument(f"unknown checkpoint options {sorted(unknown)}")
    meta = await _sup(request).checkpoint(
        _cid(request), name, exit=flags["exit"], tcp=flags["tcp"],
        unix_sockets=flags["unixSockets"], shell=flags["shell"])
    return _json(dataclasses.asdict(meta), 201)


async def list_checkpoints(request: web.Request) -> web.Response:
    return _json([dataclasses.asdict(m) for m in _sup(request).checkpoints(_cid(request))])


async def delete_checkpoint(request: web.Request) -> web.Response:
    name = v.check_id(request.match_info["name"], "checkpoint")
    _sup(request).delete_checkpoint(_cid(request), name)
    return web.Response(status=204)


# -- state, events ------------------------------------------------------------

async def get_state(request: web.Request) -> web.Response:
    sup = _sup(request)
    return _json({"containers": [c.record.to_api() for c in sup.all()],
                  "machine": sup.machine()})


async def events(request: web.Request) -> web.StreamResponse:
    sup = _sup(request)
    since = request.query.get("since")
    since_ns = parse_timestamp(since) if since else None
    follow = v.parse_bool(request.query.get("follow"), "follow", default=True)
    queue = sup.events.subscribe()
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    try:
        last = 0
        if since_ns is not None:
            for ev in sup.events.replay(since_ns):
                await resp.write((json.dumps(ev) + "\n").encode())
                last = ev["ns"]
        if not follow:
            return resp
        while True:
            ev = await queue.get()
            if ev["ns"] > last:  # skip what the replay already sent
                await resp.write((json.dumps(ev) + "\n").encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        sup.events.unsubscribe(queue)
    return resp


async def ping(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def version(request: web.Request) -> web.Response:
    return _json({"version": __version__, "apiVersion": "v1"})


async def info(request: web.Request) -> web.Response:
    return _json(await _sup(request).info())


ROUTES = [
    web.get("/state", get_state),
    web.get("/events", events),
    web.get("/ping", ping),
    web.get("/version", version),
    web.get("/containers", list_containers),
    web.delete("/containers", prune_containers),
    web.post("/containers/{id}", create_container),
    web.get("/containers/{id}", get_container),
    web.patch("/containers/{id}", patch_container),
    web.delete("/containers/{id}", delete_container),
    web.put("/containers/{id}/process", add_process),
    web.put("/containers/{id}/processes", add_process),
    web.post("/containers/{id}/process/{pid}", signal_process),
    web.get("/containers/{id}/process/{pid}/wait", wait_process),
    web.post("/containers/{id}/stop", stop_container),
    web.post("/containers/{id}/start", start_container),
    web.post("/containers/{id}/restart", restart_container),
    web.post("/containers/{id}/reboot", restart_container),
    web.post("/containers/{id}/kill", kill_container),
    web.post("/containers/{id}/pause", pause_container),
    web.post("/containers/{id}/unpause", unpause_container),
    web.get("/containers/{id}/wait", wait_container),
    web.post("/containers/{id}/exec", exec_sync),
    web.get("/containers/{id}/logs", get_logs),
    web.get("/containers/{id}/stats", get_stats),
    web.get("/containers/{id}/top", get_top),
    web.post("/containers/{id}/rename", rename_container),
    web.post("/containers/{id}/resize", resize),
    web.post("/containers/{id}/checkpoint/{name}", create_checkpoint),
    web.get("/containers/{id}/checkpoint", list_checkpoints),
    web.get("/containers/{id}/checkpoints", list_checkpoints),
    web.delete("/containers/{id}/checkpoint/{name}", delete_checkpoint),
    web.get("/info", info),
    web.get("/openapi.json", openapi),
    web.get("/containers/{id}/exec/ws", exec_websocket),
    web.get("/containers/{id}/attach", attach_websocket),
]


def make_app(config) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app.add_routes(ROUTES)

    async def supervisor_ctx(app: web.Application):
        sup = Supervisor(config)
        await sup.recover()
        app[SUPERVISOR] = sup
        log.info("containerd-py %s serving the API on %s (state %s, data %s, runtime %s)",
                 __version__, config.listen, config.state_dir, config.data_dir,
                 sup.default_runtime)
        yield
        await sup.close()

    app.cleanup_ctx.append(supervisor_ctx)
    return app
