"""Routes of a container's checkpoints."""

import dataclasses

from aiohttp import web

from .. import validation as v
from ..errors import InvalidArgument
from .common import bool_field, container_id, json_response, read_body, supervisor_of


async def create_checkpoint(request: web.Request) -> web.Response:
    name = v.check_id(request.match_info["name"], "checkpoint")
    body = await read_body(request, required=False)
    flags = {k: bool_field(body, k) for k in ("exit", "tcp", "unixSockets", "shell")}
    unknown = set(body) - set(flags)
    if unknown:
        raise InvalidArgument(f"unknown checkpoint options {sorted(unknown)}")
    meta = await supervisor_of(request).checkpoint(
        container_id(request), name, exit=flags["exit"], tcp=flags["tcp"],
        unix_sockets=flags["unixSockets"], shell=flags["shell"])
    return json_response(dataclasses.asdict(meta), 201)


async def list_checkpoints(request: web.Request) -> web.Response:
    return json_response([dataclasses.asdict(m) for m in supervisor_of(request).checkpoints(container_id(request))])


async def delete_checkpoint(request: web.Request) -> web.Response:
    name = v.check_id(request.match_info["name"], "checkpoint")
    supervisor_of(request).delete_checkpoint(container_id(request), name)
    return web.Response(status=204)



ROUTES = [
    web.post("/containers/{id}/checkpoint/{name}", create_checkpoint),
    web.get("/containers/{id}/checkpoint", list_checkpoints),
    web.get("/containers/{id}/checkpoints", list_checkpoints),
    web.delete("/containers/{id}/checkpoint/{name}", delete_checkpoint),
]
