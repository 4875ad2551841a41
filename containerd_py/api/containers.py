"""Routes of /containers: create, inspect, lifecycle, processes, logs, stats."""

import asyncio
import json

from aiohttp import web

from .. import logs, timing, validation as v
from ..errors import DaemonError, InvalidArgument
from ..events import parse_timestamp
from ..states import Status
from ..supervisor import Supervisor
from . import create_body
from .common import (bool_field, check_fields, container_id, json_response, read_body,
                     supervisor_of)
from .networks import create_fields as network_fields

EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024


async def create_container(request: web.Request) -> web.Response:
    trace = timing.begin()
    try:
        resp = await _create_container(request)
        timing.mark("respond")
        resp.headers["Server-Timing"] = trace.header()
        return resp
    finally:
        timing.end(trace)


async def _create_container(request: web.Request) -> web.Response:
    cid = container_id(request)
    body = await read_body(request)
    if "pool" in body:
        return await _claim_from_pool(request, cid, body)
    req = create_body.parse(body)
    timing.mark("parse")
    c = await supervisor_of(request).create(
        cid, req.bundle, name=req.name, labels=req.labels, runtime=req.runtime,
        checkpoint=req.checkpoint, auto_remove=req.auto_remove,
        restart_policy=req.restart_policy, overlay=req.overlay, lazy=req.lazy,
        settings=req.settings, resources=req.resources, image=req.image, start=req.start,
        **network_fields(body))
    return json_response(c.record.to_api(), 201)


async def _claim_from_pool(request: web.Request, cid: str, body: dict) -> web.Response:
    """A container from a warm pool: what the pool made it from is fixed,
    only its name and labels are the claimer's."""
    pool = v.check_id(body["pool"], "pool")
    unknown = set(body) - {"pool", "name", "labels"}
    if unknown:
        raise InvalidArgument(f"a pool's containers are made ahead of the claim: only name and "
                              f"labels apply, not {sorted(unknown)}", field=sorted(unknown)[0])
    labels = _labels(body)
    name = body.get("name")
    if name is not None:
        v.check_id(name, "name")
    timing.mark("parse")
    c = await supervisor_of(request).claim(cid, pool, name=name, labels=labels)
    return json_response(c.record.to_api(), 201)


def _labels(body: dict) -> dict:
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in labels.items()):
        raise InvalidArgument("labels must be an object of strings", field="labels")
    return labels


async def list_containers(request: web.Request) -> web.Response:
    return json_response([c.record.to_api() for c in _filtered(request)])


def _filtered(request: web.Request):
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in Status} | {"created"}:
        raise InvalidArgument(f"unknown status {status!r}: use created, running, paused or "
                              "stopped", field="status")
    labels = request.query.getall("label", [])
    out = []
    for c in supervisor_of(request).all():
        if status and c.record.display_status() != status:
            continue
        if not all(_label_matches(c.record.labels, sel) for sel in labels):
            continue
        out.append(c)
    return out


def _label_matches(labels: dict, selector: str) -> bool:
    key, eq, value = selector.partition("=")
    return key in labels and (not eq or labels[key] == value)


async def get_container(request: web.Request) -> web.Response:
    return json_response(supervisor_of(request).get(container_id(request)).record.to_api())


async def delete_container(request: web.Request) -> web.Response:
    force = v.parse_bool(request.query.get("force"), "force")
    await supervisor_of(request).delete(container_id(request), force=force)
    return web.Response(status=204)


async def prune_containers(request: web.Request) -> web.Response:
    if request.query.get("status") != "stopped":
        raise InvalidArgument("only DELETE /containers?status=stopped (prune) is supported",
                              field="status")
    deleted = []
    for c in _filtered(request):
        try:
            await supervisor_of(request).delete(c.id)
            deleted.append(c.id)
        except DaemonError:
            pass  # restarted or removed meanwhile
    return json_response({"deleted": deleted})


async def patch_container(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    cid = container_id(request)
    body = await read_body(request)
    known = {"status", "signal", "resources", "cpu", "memory"}
    check_fields(body, known, "the PATCH body")
    if not body:
        raise InvalidArgument(f"PATCH takes one of {sorted(known)}; got none")
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
    return json_response(sup.get(cid).record.to_api())


async def update_resources(sup: Supervisor, cid: str, body: dict) -> None:
    await sup.update(cid, v.oci_resources(body))


# -- processes ----------------------------------------------------------------

async def add_process(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    body = await read_body(request)
    check_fields(body, v.PROCESS_FIELDS, "the process")
    process = v.check_process(body, sup.process_defaults(c.id))
    p = await sup.exec(c.id, process)
    return json_response(p.to_api(), 201)


async def signal_process(request: web.Request) -> web.Response:
    pid = v.parse_int(request.match_info["pid"], "pid", minimum=1)
    body = await read_body(request)
    check_fields(body, {"signal"}, "the signal body")
    sig = v.check_signal(body.get("signal"))
    await supervisor_of(request).signal_process(container_id(request), pid, sig)
    return json_response({"pid": pid, "signal": sig})


async def wait_process(request: web.Request) -> web.Response:
    pid = v.parse_int(request.match_info["pid"], "pid", minimum=1)
    status = await supervisor_of(request).wait_process(container_id(request), pid)
    return json_response({"pid": pid, "exitStatus": status})


# -- lifecycle -----------------------------------------------------------------

def _timeout(request: web.Request) -> int:
    return v.parse_int(request.query.get("timeout"), "timeout", default=10)


async def stop_container(request: web.Request) -> web.Response:
    c = await supervisor_of(request).stop(container_id(request), _timeout(request))
    return json_response(c.record.to_api())


async def start_container(request: web.Request) -> web.Response:
    body = await read_body(request, required=False)
    check_fields(body, {"checkpoint", "lazy"}, "the start body")
    checkpoint = body.get("checkpoint")
    if checkpoint is not None:
        v.check_id(checkpoint, "checkpoint")
    if bool_field(body, "lazy") and checkpoint is None:
        raise InvalidArgument("lazy restores a checkpoint: give checkpoint too", field="lazy")
    timing.mark("parse")
    c = await supervisor_of(request).start(container_id(request), checkpoint, bool_field(body, "lazy"))
    return json_response(c.record.to_api())


async def restart_container(request: web.Request) -> web.Response:
    c = await supervisor_of(request).restart(container_id(request), _timeout(request))
    return json_response(c.record.to_api())


async def kill_container(request: web.Request) -> web.Response:
    body = await read_body(request, required=False)
    check_fields(body, {"signal"}, "the kill body")
    await supervisor_of(request).kill(container_id(request), v.check_signal(body.get("signal", 9)))
    return json_response(supervisor_of(request).get(container_id(request)).record.to_api())


async def pause_container(request: web.Request) -> web.Response:
    return json_response((await supervisor_of(request).pause(container_id(request))).record.to_api())


async def unpause_container(request: web.Request) -> web.Response:
    return json_response((await supervisor_of(request).resume(container_id(request))).record.to_api())


async def wait_container(request: web.Request) -> web.Response:
    record = await supervisor_of(request).wait(container_id(request))
    return json_response({"id": record.id, "exitStatus": record.exit_status,
                  "exitedAt": record.exited_at})


async def exec_sync(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    body = await read_body(request)
    check_fields(body, v.PROCESS_FIELDS | {"timeout", "outputLimit"}, "the exec body")
    process = v.check_process(body, supervisor_of(request).process_defaults(c.id))
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
    return json_response(await sup.exec_sync(c.id, process, timeout, limit))


async def get_logs(request: web.Request) -> web.StreamResponse:
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
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
        return json_response([e.to_api() for e in logs.read_entries(
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
    sup = supervisor_of(request)
    cid = container_id(request)
    if not v.parse_bool(request.query.get("stream"), "stream"):
        return json_response(sup.stats(cid))
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
    cid = container_id(request)
    return json_response({"id": cid, "titles": ["PID", "PPID", "USER", "COMMAND"],
                  "processes": await supervisor_of(request).top(cid)})


async def rename_container(request: web.Request) -> web.Response:
    name = v.check_id(request.query.get("name"), "name")
    return json_response((await supervisor_of(request).rename(container_id(request), name)).record.to_api())


async def resize(request: web.Request) -> web.Response:
    q = request.query
    cols = v.parse_int(q.get("w"), "w", minimum=1)
    rows = v.parse_int(q.get("h"), "h", minimum=1)
    if cols is None or rows is None:
        raise InvalidArgument("w and h (columns and rows) are required")
    pid = v.parse_int(q.get("pid"), "pid", default=0)
    await supervisor_of(request).resize(container_id(request), pid, cols, rows)
    return json_response({"w": cols, "h": rows})



ROUTES = [
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
]
