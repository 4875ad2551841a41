"""Routes of a container's checkpoints, and of checkpoint archives
(export from one daemon, import into another)."""

import dataclasses

from aiohttp import web

from .. import validation as v
from ..errors import InvalidArgument
from .common import bool_field, container_id, json_response, read_body, supervisor_of


def _checkpoints(request: web.Request):
    return supervisor_of(request).checkpointing


async def create_checkpoint(request: web.Request) -> web.Response:
    name = v.check_id(request.match_info["name"], "checkpoint")
    body = await read_body(request, required=False)
    flags = {k: bool_field(body, k) for k in ("exit", "tcp", "unixSockets", "shell")}
    unknown = set(body) - set(flags)
    if unknown:
        raise InvalidArgument(f"unknown checkpoint options {sorted(unknown)}")
    meta = await _checkpoints(request).checkpoint(
        container_id(request), name, exit=flags["exit"], tcp=flags["tcp"],
        unix_sockets=flags["unixSockets"], shell=flags["shell"])
    return json_response(dataclasses.asdict(meta), 201)


async def list_checkpoints(request: web.Request) -> web.Response:
    return json_response([dataclasses.asdict(m)
                          for m in _checkpoints(request).list(container_id(request))])


async def delete_checkpoint(request: web.Request) -> web.Response:
    name = v.check_id(request.match_info["name"], "checkpoint")
    _checkpoints(request).delete(container_id(request), name)
    return web.Response(status=204)


async def export_checkpoint(request: web.Request) -> web.StreamResponse:
    name = v.check_id(request.match_info["name"], "checkpoint")
    cid = container_id(request)
    # Everything that can fail with a status is checked before the 200 goes out.
    plan = _checkpoints(request).export_plan(cid, name)
    resp = web.StreamResponse(headers={
        "Content-Type": "application/x-tar",
        "Content-Disposition": f'attachment; filename="{cid}-{name}.tar"'})
    await resp.prepare(request)
    await plan.send(resp.write)
    await resp.write_eof()
    return resp


async def import_checkpoint(request: web.Request) -> web.Response:
    cid = v.check_id(request.query.get("id"), "id")
    bundle = request.query.get("bundlePath")
    if bundle is not None:
        bundle = v.check_abs_path(bundle, "bundlePath")
    name = request.query.get("name")
    if name is not None:
        v.check_id(name, "name")
    if not request.can_read_body:
        raise InvalidArgument("the body must be a checkpoint archive (from .../export)",
                              field="body")
    c = await _checkpoints(request).import_archive(cid, request.content.read, bundle=bundle,
                                                   name=name)
    return json_response(c.record.to_api(), 201)


ROUTES = [
    web.post("/containers/{id}/checkpoint/{name}", create_checkpoint),
    web.get("/containers/{id}/checkpoint", list_checkpoints),
    web.get("/containers/{id}/checkpoints", list_checkpoints),
    web.delete("/containers/{id}/checkpoint/{name}", delete_checkpoint),
    web.get("/containers/{id}/checkpoint/{name}/export", export_checkpoint),
    web.post("/checkpoints/import", import_checkpoint),
]
