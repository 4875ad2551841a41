"""Routes of /pools: warm pools of containers made ahead of demand
(supervisor's pools.py). Claiming one is `POST /containers/{id}` with
`{"pool": NAME}` (api/containers.py)."""

from aiohttp import web

from .. import validation as v
from ..errors import InvalidArgument
from ..images import refs
from .common import json_response, read_body, supervisor_of


def pool_name(request: web.Request) -> str:
    return v.check_id(request.match_info["name"], "name")


async def create_pool(request: web.Request) -> web.Response:
    name = pool_name(request)
    body = await read_body(request)
    known = {"bundlePath", "image", "checkpoint", "size", "runtime"}
    unknown = set(body) - known
    if unknown:
        raise InvalidArgument(f"unknown pool options {sorted(unknown)}: use {sorted(known)}",
                              field=sorted(unknown)[0])
    image = body.get("image")
    if image is not None:
        refs.check_ref(image, "image")
        if "bundlePath" in body:
            raise InvalidArgument("give bundlePath or image, not both", field="image")
        bundle = None
    else:
        bundle = v.check_abs_path(body.get("bundlePath"), "bundlePath")
    checkpoint = body.get("checkpoint")
    if checkpoint is not None:
        v.check_id(checkpoint, "checkpoint")
    size = body.get("size")
    if size is None:
        raise InvalidArgument("size is required: how many members to keep ready", field="size")
    runtime = body.get("runtime")
    if runtime is not None and not isinstance(runtime, str):
        raise InvalidArgument("runtime must be a string", field="runtime")
    pool = await supervisor_of(request).pools.define(name, bundle, size, checkpoint=checkpoint,
                                                     runtime=runtime, image=image)
    return json_response(pool.to_api(), 201)


async def list_pools(request: web.Request) -> web.Response:
    return json_response([p.to_api() for p in supervisor_of(request).pools.list()])


async def get_pool(request: web.Request) -> web.Response:
    return json_response(supervisor_of(request).pools.get(pool_name(request)).to_api())


async def delete_pool(request: web.Request) -> web.Response:
    await supervisor_of(request).pools.remove(pool_name(request))
    return web.Response(status=204)


ROUTES = [
    web.post("/pools/{name}", create_pool),
    web.get("/pools", list_pools),
    web.get("/pools/{name}", get_pool),
    web.delete("/pools/{name}", delete_pool),
]
