"""Routes of live migration: the source's `migrate`, and the target's
endpoints that a source daemon calls (authenticated by the token the target
issued for that one migration)."""

from aiohttp import web

from .. import validation as v
from ..checkpoint.inbox import FINAL
from ..checkpoint.migration import MAX_PRE_COPY, check_request
from ..errors import InvalidArgument
from .access import SELF_AUTHENTICATED
from .common import bool_field, container_id, json_response, read_body, supervisor_of


def _service(request: web.Request):
    return supervisor_of(request).checkpointing


async def migrate(request: web.Request) -> web.Response:
    cid = container_id(request)
    target, pre_copy, lazy, lazy_restore, offer = check_request(await read_body(request))
    result = await _service(request).migrate(cid, target, pre_copy=pre_copy, lazy=lazy,
                                             lazy_restore=lazy_restore, offer=offer)
    return json_response(result)


async def open_migration(request: web.Request) -> web.Response:
    body = await read_body(request)
    cid = v.check_id(body.get("id"), "id")
    settings = body.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise InvalidArgument("settings must be an object (the container's settings)",
                              field="settings")
    s = _service(request).inbox.open(cid, settings)
    return json_response({"migration": s.id, "token": s.token, "id": cid}, 201)


def _session(request: web.Request):
    sid = v.check_id(request.match_info["migration"], "migration")
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else None
    return _service(request).inbox.authorize(sid, token)


async def receive_round(request: web.Request) -> web.Response:
    s = _session(request)
    name = request.match_info["round"]
    if name != FINAL and not (name[:1] == "r" and name[1:].isdigit()
                              and 1 <= int(name[1:]) <= MAX_PRE_COPY):
        raise InvalidArgument(f"round must be r1..r{MAX_PRE_COPY} or {FINAL}", field="round")
    return json_response(await _service(request).inbox.receive(s, name, request.content.read))


async def restore_migration(request: web.Request) -> web.Response:
    s = _session(request)
    body = await read_body(request, required=False)
    c = await _service(request).inbox.restore(s, bool_field(body, "lazy"))
    return json_response(c.record.to_api(), 201)


async def start_page_server(request: web.Request) -> web.Response:
    s = _session(request)
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname or not isinstance(sockname, tuple):
        raise InvalidArgument("a page server is offered over TCP only (the address the "
                              "source reached this daemon on)")
    return json_response(await _service(request).inbox.page_server(s, sockname[0]), 201)


async def abort_migration(request: web.Request) -> web.Response:
    s = _session(request)
    _service(request).inbox.abort(s)
    return web.Response(status=204)


SELF_AUTHENTICATED.update({receive_round, restore_migration, abort_migration,
                           start_page_server})

ROUTES = [
    web.post("/containers/{id}/migrate", migrate),
    web.post("/migrations", open_migration),
    web.put("/migrations/{migration}/rounds/{round}", receive_round),
    web.post("/migrations/{migration}/page-server", start_page_server),
    web.post("/migrations/{migration}/restore", restore_migration),
    web.delete("/migrations/{migration}", abort_migration),
]
