"""Routes of /images (load, list, inspect, tag, delete) and of the
container operations that are about an image container's filesystem
(commit, export, changes)."""

import asyncio
import io

from aiohttp import web

from ..errors import Conflict, InvalidArgument
from ..images import refs
from .. import validation as v
from .common import container_id, json_response, read_body, supervisor_of

# Export streams through a bounded queue: the tar writer (a thread) waits
# while the client is slow, so a large filesystem is never held in memory.
QUEUE_CHUNKS = 16


class _BodyReader(io.RawIOBase):
    """The request body as a blocking file for a worker thread: each read
    waits on the event loop's read of the next chunk."""

    def __init__(self, content, loop):
        self.content, self.loop = content, loop

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = asyncio.run_coroutine_threadsafe(self.content.read(len(b)),
                                                    self.loop).result()
        except Exception as e:  # the client went away mid-body: a short archive
            raise OSError(f"the request body ended early: {e}") from None
        b[:len(data)] = data
        return len(data)


class _QueueWriter(io.RawIOBase):
    """A blocking file for a worker thread whose writes become chunks of a
    streamed response."""

    def __init__(self, queue: asyncio.Queue, loop):
        self.queue, self.loop = queue, loop

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        if data:
            asyncio.run_coroutine_threadsafe(self.queue.put(data), self.loop).result()
        return len(data)


def _ref(request: web.Request) -> str:
    return refs.check_ref(request.match_info["ref"])


async def load_images(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    if not request.can_read_body:
        raise InvalidArgument("the body must be an image archive (docker-archive or "
                              "oci-archive tar)")
    reader = io.BufferedReader(_BodyReader(request.content, asyncio.get_running_loop()),
                               1024 * 1024)
    images = await asyncio.to_thread(sup.images.load, reader)
    for img in images:
        sup.events.emit("image-load", img.id, names=img.names)
    return json_response([img.to_api() for img in images], 201)


async def list_images(request: web.Request) -> web.Response:
    return json_response([img.to_api() for img in supervisor_of(request).images.list()])


async def get_image(request: web.Request) -> web.Response:
    return json_response(supervisor_of(request).images.resolve(_ref(request)).to_api())


async def tag_image(request: web.Request) -> web.Response:
    body = await read_body(request)
    unknown = set(body) - {"name"}
    if unknown:
        raise InvalidArgument(f"unknown fields {sorted(unknown)}: tag takes name",
                              field=sorted(unknown)[0])
    sup = supervisor_of(request)
    img = sup.images.tag(_ref(request), body.get("name"))
    sup.events.emit("image-tag", img.id, name=refs.normalise(body["name"]))
    return json_response(img.to_api(), 201)


async def delete_image(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    ref = _ref(request)
    force = v.parse_bool(request.query.get("force"), "force")
    img = sup.images.resolve(ref)
    users = [c.id for c in sup.all() if c.record.image and c.record.image.get("id") == img.id]
    result = sup.images.delete(ref, force=force, in_use_by=users)
    sup.events.emit("image-delete", img.id, **result)
    return json_response(result)


# -- a container's filesystem ------------------------------------------------------

async def commit_container(request: web.Request) -> web.Response:
    body = await read_body(request, required=False)
    unknown = set(body) - {"name", "author", "message"}
    if unknown:
        raise InvalidArgument(f"unknown fields {sorted(unknown)}: commit takes name, author "
                              "and message", field=sorted(unknown)[0])
    for k in ("author", "message"):
        if not isinstance(body.get(k, ""), str):
            raise InvalidArgument(f"{k} must be a string", field=k)
    name = body.get("name")
    if name is not None:
        refs.parse(name, "name")
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    _image_container(c)
    img = await asyncio.to_thread(sup.images.commit, c.rid, name, body.get("author", ""),
                                  body.get("message", ""))
    sup.events.emit("commit", c.id, image=img.id, names=img.names)
    return json_response(img.to_api(), 201)


def _image_container(c) -> None:
    if not c.record.image:
        # The request is well formed; the container is the wrong kind for it.
        raise Conflict(f"container {c.id!r} runs from a bundle, not an image: it has "
                       "no layers of its own", id=c.id)


async def container_changes(request: web.Request) -> web.Response:
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    _image_container(c)
    return json_response(await asyncio.to_thread(sup.images.changes, c.rid))


async def export_container(request: web.Request) -> web.StreamResponse:
    sup = supervisor_of(request)
    c = sup.get(container_id(request))
    _image_container(c)
    sup.images.rootfs(c.rid)  # errors before the stream starts are plain 4xx
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
    writer = io.BufferedWriter(_QueueWriter(queue, loop), 1024 * 1024)

    def produce():
        try:
            sup.images.export(c.rid, writer)
            writer.flush()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await resp.prepare(request)
    task = asyncio.create_task(asyncio.to_thread(produce))
    try:
        while (chunk := await queue.get()) is not None:
            await resp.write(chunk)
    finally:
        if not task.done():
            # The client went away: let the writer finish into the void.
            async def drain():
                while await queue.get() is not None:
                    pass
            asyncio.create_task(drain())
    await task
    await resp.write_eof()
    return resp


ROUTES = [
    web.post("/images/load", load_images),
    web.get("/images", list_images),
    web.post("/images/{ref:.+}/tag", tag_image),
    web.get("/images/{ref:.+}", get_image),
    web.delete("/images/{ref:.+}", delete_image),
    web.post("/containers/{id}/commit", commit_container),
    web.get("/containers/{id}/export", export_container),
    web.get("/containers/{id}/changes", container_changes),
]
