"""Daemon-wide routes: state, events, ping, version, info, the API document."""

import asyncio
import json

from aiohttp import web

from .. import __version__, validation as v
from ..events import parse_timestamp
from .common import json_response, supervisor_of
from .openapi import document as openapi_document


async def get_state(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    return json_response({"containers": [c.record.to_api() for c in sup.all()],
                  "machine": sup.machine()})


async def events(request: web.Request) -> web.StreamResponse:
    sup = supervisor_of(request)
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
    return json_response({"ok": True})


async def version(request: web.Request) -> web.Response:
    return json_response({"version": __version__, "apiVersion": "v1"})


async def info(request: web.Request) -> web.Response:
    return json_response(await supervisor_of(request).info())



async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


ROUTES = [
    web.get("/state", get_state),
    web.get("/events", events),
    web.get("/ping", ping),
    web.get("/version", version),
    web.get("/info", info),
    web.get("/openapi.json", openapi),
]
