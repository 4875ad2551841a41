"""Live migration of a container from this daemon to another.

Source side (`migrate`): offer the container to the target, which answers
with a one-time token; pre-copy rounds (CRIU pre-dumps with memory change
tracking) while the container runs, each streamed to the target as it is
taken; then freeze, a final dump of what changed since, stream it, and ask
the target to restore. Only once the target answers that its container runs
is the source copy deleted. Any failure before that thaws the source
container (CRIU left it frozen, its memory untouched), tells the target to
drop what it received, and ends the migration with the error.

The target's side is inbox.py.
"""

import asyncio
import dataclasses
import logging
import os
import shutil
import time
import uuid

from .. import validation
from ..errors import (Conflict, DaemonError, InvalidArgument, PeerFailure, RuntimeFailure,
                      Unavailable)
from ..events import now_ns, rfc3339
from ..states import Status
from .archive import ArchivePlan
from .criu import criu_log_tail, memory_tracking
from .inbox import FINAL
from .store import CheckpointMeta

log = logging.getLogger("containerd_py.migration")

MAX_PRE_COPY = 16


class Peer:
    """The target daemon's migration endpoints, as its client."""

    def __init__(self, target: str):
        import aiohttp
        self.target = target.rstrip("/")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=120))
        self.sid: str | None = None
        self.token: str | None = None

    async def close(self) -> None:
        await self.http.close()

    async def call(self, step: str, method: str, path: str, **kw) -> dict:
        import aiohttp
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self.http.request(method, self.target + path, headers=headers,
                                         **kw) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else {}
                if resp.status >= 400:
                    err = body.get("error", body) if isinstance(body, dict) else body
                    raise PeerFailure(f"target {self.target} refused the {step}: "
                                      f"{resp.status}: {err}", step=step,
                                      targetStatus=resp.status, target=self.target)
                return body or {}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
            raise PeerFailure(f"target {self.target} failed during the {step}: "
                              f"{type(e).__name__}: {e}", step=step,
                              target=self.target) from None

    async def open(self, cid: str, settings: dict, offer: tuple | None) -> None:
        if offer:
            self.sid, self.token = offer
            return
        body = await self.call("offer", "POST", "/migrations",
                               json={"id": cid, "settings": settings})
        self.sid, self.token = body["migration"], body["token"]

    async def send(self, name: str, plan: ArchivePlan) -> dict:
        return await self.call(f"transfer of {name}", "PUT",
                               f"/migrations/{self.sid}/rounds/{name}", data=plan.chunks())

    async def page_server(self) -> dict | None:
        """The target's page server for the final dump's memory, or None if
        the target has none to offer (then the pages go in the archive)."""
        try:
            return await self.call("page server", "POST",
                                   f"/migrations/{self.sid}/page-server")
        except PeerFailure as e:
            if e.details.get("targetStatus") in (404, 405, 501):
                return None
            raise

    async def restore(self, lazy: bool) -> dict:
        return await self.call("restore", "POST", f"/migrations/{self.sid}/restore",
                               json={"lazy": lazy})

    async def abort(self) -> None:
        if self.sid:
            try:
                await self.call("abort", "DELETE", f"/migrations/{self.sid}")
            except PeerFailure as e:
                log.warning("migration %s: %s", self.sid, e.message)


class Migration:
    """One container leaving this daemon; its progress is the record's
    `migration` field and `migrate-*` events."""

    def __init__(self, service, c, target: str, pre_copy: int, lazy_restore: bool,
                 offer: tuple | None = None):
        self.offer = offer
        self.service, self.sup, self.c = service, service.sup, c
        self.target, self.pre_copy, self.lazy_restore = target, pre_copy, lazy_restore
        self.rt = self.sup.runtime(c.record.runtime)
        self.work = os.path.join(c.shim.dir, f"migrate-{uuid.uuid4().hex[:8]}")
        self.progress = {"target": target, "phase": "offering", "round": 0, "bytes": 0,
                         "startedAt": rfc3339(now_ns())}
        self.frozen_at: float | None = None

    def _update(self, event: str | None = None, **fields) -> None:
        self.progress.update(fields)
        self.c.record.migration = dict(self.progress)
        self.sup.store.save(self.c.record)
        if event:
            self.sup.events.emit(event, self.c.id, **{k: v for k, v in self.progress.items()
                                                      if k != "startedAt"})

    async def run(self) -> dict:
        c, r = self.c, self.c.record
        t0 = time.monotonic()
        peer = Peer(self.target)
        os.makedirs(self.work)
        self._update("migrate-start")
        try:
            from .service import settings_of
            await peer.open(c.id, settings_of(r), self.offer)
            parent = await self._pre_copy(peer)
            # Started before the freeze: its start-up is not downtime.
            ps = await peer.page_server() if parent is None else None
            page_server = f"{ps['address']}:{ps['port']}" if ps else None
            if ":" in (ps or {}).get("address", ""):
                page_server = f"[{ps['address']}]:{ps['port']}"
            self.frozen_at = time.monotonic()
            steps = {}
            lap = Lap(steps)
            try:
                await self.rt.pause(c.rid)
            except RuntimeFailure:
                self.frozen_at = None
                await self._if_exited()
                raise
            r.status = Status.PAUSED
            lap("pauseMs")
            self._update("migrate-freeze", phase="frozen")
            final = os.path.join(self.work, FINAL)
            await self._dump(final, parent=parent, pre_dump=False, page_server=page_server)
            lap("dumpMs")
            self._update(None, phase="transferring")
            sent = await peer.send(FINAL, self._final_plan(final))
            lap("transferMs")
            self._update("migrate-round", phase="restoring", round=self.progress["round"] + 1,
                         bytes=self.progress["bytes"] + sent["bytes"])
            arrived = await peer.restore(self.lazy_restore)
            lap("restoreMs")
            frozen_ms = round((time.monotonic() - self.frozen_at) * 1000, 1)
            self.progress["frozenSteps"] = steps
        except BaseException as e:
            await self._fail(peer, e)
            raise
        finally:
            await peer.close()
            shutil.rmtree(self.work, ignore_errors=True)
        # The target runs it: the source copy goes (still frozen, so it never
        # runs again here).
        self._update("migrate-done", phase="done", frozenMs=frozen_ms,
                     totalMs=round((time.monotonic() - t0) * 1000, 1))
        result = dict(self.progress, id=c.id, container=arrived)
        try:
            await self.sup.delete_locked(c, force=True)
        except DaemonError as e:
            # It runs on the target: the migration is done, only the frozen
            # source copy is left for the user to delete.
            log.error("migration of %s: done, but the source copy stays: %s", c.id, e.message)
            result["sourceLeft"] = e.message
        return result

    async def _pre_copy(self, peer: Peer) -> str | None:
        if not self.pre_copy:
            return None
        why = memory_tracking(self.service.criu())
        if why:
            # Without dirty-page tracking a pre-dump cannot tell the final
            # dump what it already sent: every page would go again, frozen.
            self._update("migrate-precopy-skipped", preCopySkipped=(
                f"pre-copy needs CRIU's memory change tracking, which this kernel lacks "
                f"(criu check --feature mem_dirty_track: {why}); the whole memory is "
                "copied while the container is frozen"))
            return None
        parent = None
        for n in range(1, self.pre_copy + 1):
            name = f"r{n}"
            d = os.path.join(self.work, name)
            await self._dump(d, parent=parent, pre_dump=True)
            sent = await peer.send(name, ArchivePlan().add_tree(".", d))
            self._update("migrate-round", phase="pre-copy", round=n,
                         bytes=self.progress["bytes"] + sent["bytes"], roundBytes=sent["bytes"])
            parent = f"../{name}"
        return parent

    async def _dump(self, image: str, *, parent: str | None, pre_dump: bool,
                    page_server: str | None = None) -> None:
        c = self.c
        if c.exited.is_set():
            raise Conflict(f"container {c.id!r} exited during its migration", id=c.id,
                           status="stopped", exitStatus=c.record.exit_status)
        wdir = image + "-work"
        os.makedirs(image)
        os.makedirs(wdir)
        try:
            # The final dump leaves the container running, i.e. as it was:
            # frozen (CRIU restores the freezer state it found), so that a
            # failure later only has to thaw it.
            self.service.before_dump(c, tcp=False)
            await self.rt.checkpoint(c.rid, image, wdir, leave_running=True, pre_dump=pre_dump,
                                     parent=parent, page_server=page_server)
        except RuntimeFailure as e:
            await self._if_exited()
            e.message += " " + criu_log_tail(wdir)
            raise

    async def _if_exited(self) -> None:
        """Raise the clear error if the runtime failed because the container
        exited meanwhile (its exit may be a moment behind the failure)."""
        c = self.c
        try:
            await asyncio.wait_for(asyncio.shield(c.exited.wait()), 2)
        except asyncio.TimeoutError:
            return
        raise Conflict(f"container {c.id!r} exited during its migration (status "
                       f"{c.record.exit_status})", id=c.id, status="stopped",
                       exitStatus=c.record.exit_status)

    def _final_plan(self, final: str) -> ArchivePlan:
        from .service import ARCHIVE_FORMAT, settings_of, upper_dir
        r = self.c.record
        meta = CheckpointMeta(name=f"migrated-{uuid.uuid4().hex[:8]}", exit=True,
                              container=r.id, settings=r.settings, created=rfc3339(now_ns()))
        plan = ArchivePlan().add_json("manifest.json", {
            "format": ARCHIVE_FORMAT, "checkpoint": dataclasses.asdict(meta),
            "container": {"id": r.id, **settings_of(r)}})
        plan.add_tree("checkpoint", final)
        upper = upper_dir(self.c, self.sup.images)
        if upper:
            plan.add_tree("rootfs-diff", upper)
        return plan

    async def _fail(self, peer: Peer, e: BaseException) -> None:
        c, r = self.c, self.c.record
        resumed = None
        if self.frozen_at is not None and r.status == Status.PAUSED:
            try:
                await self.rt.resume(c.rid)
                r.status = Status.RUNNING
                resumed = True
            except RuntimeFailure as err:
                resumed = False
                log.error("migration of %s: could not thaw it: %s", c.id, err.message)
        await peer.abort()
        msg = e.message if isinstance(e, DaemonError) else f"{type(e).__name__}: {e}"
        fields = {"phase": "failed", "error": msg}
        if self.frozen_at is not None:
            fields["frozenMs"] = round((time.monotonic() - self.frozen_at) * 1000, 1)
            fields["resumed"] = resumed
        self._update("migrate-failed", **fields)


class Lap:
    """Milliseconds of each step, into a dict."""

    def __init__(self, into: dict):
        self.into, self.t = into, time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.into[name] = round((now - self.t) * 1000, 1)
        self.t = now


def check_request(body: dict) -> tuple:
    target = body.get("target")
    if not isinstance(target, str) or not target.startswith(("http://", "https://")) \
            or len(target) > 300:
        raise InvalidArgument('target must be the other daemon\'s URL, "http://HOST:PORT"',
                              field="target")
    pre = body.get("preCopy", 2)
    if isinstance(pre, bool) or not isinstance(pre, int) or not 0 <= pre <= MAX_PRE_COPY:
        raise InvalidArgument(f"preCopy must be an integer from 0 to {MAX_PRE_COPY}",
                              field="preCopy")
    lazy = body.get("lazy", False)
    if not isinstance(lazy, bool):
        raise InvalidArgument("lazy must be a boolean", field="lazy")
    lazy_restore = body.get("lazyRestore", True)
    if not isinstance(lazy_restore, bool):
        raise InvalidArgument("lazyRestore must be a boolean", field="lazyRestore")
    offer = None
    if "migration" in body or "token" in body:
        # Opened on the target beforehand by whoever may use it (its
        # POST /migrations), when this daemon may not call it itself.
        mid, token = body.get("migration"), body.get("token")
        if not isinstance(mid, str) or not isinstance(token, str) or not token:
            raise InvalidArgument("migration and token go together: the target's answer "
                                  "to POST /migrations", field="token")
        offer = (validation.check_id(mid, "migration"), token)
    unknown = set(body) - {"target", "preCopy", "lazy", "lazyRestore", "migration", "token"}
    if unknown:
        raise InvalidArgument(f"unknown migrate options {sorted(unknown)}")
    return target, pre, lazy, lazy_restore, offer


# What a lazy (post-copy) migration through CRIU's page server met on this
# kind of host, tried by hand with runc 1.1.5: `runc checkpoint --lazy-pages
# --page-server` dumps and serves, and the target's `criu lazy-pages
# --page-server` fails as soon as the restored process faults in its first
# page, in the source's page server.
LAZY_ERROR = ("criu dump --lazy-pages --page-server fails on this kernel when the target's "
              "lazy-pages daemon pulls the first page: 'Error (criu/page-pipe.c:424): "
              "page-pipe: splice: -1: Bad file descriptor' (CRIU 4.2.1; CRIU 4.1.1 said "
              "'page-pipe: tee: Operation not permitted'), then 'Lazy pages transfer FAILED'")


def lazy_unavailable() -> Unavailable:
    return Unavailable("lazy migration (CRIU page server + lazy-pages) is not available on "
                       f"this host: {LAZY_ERROR}; migrate with pre-copy (\"lazy\": false)",
                       field="lazy", criuError=LAZY_ERROR)
