"""Live migration of a container from this daemon to another.

Source side (`migrate`): offer the container to the target, which answers
with a one-time token; pre-copy rounds (CRIU pre-dumps with memory change
tracking) while the container runs, each streamed to the target as it is
taken; then freeze, a final dump of what changed since, stream it, and ask
the target to restore. Only once the target answers that its container runs
is the source copy deleted. Any failure before that thaws the source
container (CRIU left it frozen, its memory untouched), tells the target to
drop what it received, and ends the migration with the error.

Target side (`Inbox`): the sessions opened by sources, each holding what it
received in a directory of its own until the restore (or an abort, or
`IDLE_S` without a word from the source) ends it.
"""

import asyncio
import dataclasses
import hmac
import logging
import os
import secrets
import shutil
import time
import uuid

from .. import bundle as bundle_mod, validation
from ..errors import (Conflict, DaemonError, InvalidArgument, NotFound, PeerFailure,
                      RuntimeFailure, Unauthorized, Unavailable)
from ..events import now_ns, rfc3339
from ..states import Status
from .archive import ArchiveError, ArchivePlan, extract
from .criu import criu_log_tail, memory_tracking
from .store import CheckpointMeta

log = logging.getLogger("containerd_py.migration")

# A target drops a session the source has not touched for this long (the
# source died, or the network between them broke).
IDLE_S = 120
MAX_PRE_COPY = 16
FINAL = "final"


# -- target side ---------------------------------------------------------------

@dataclasses.dataclass
class Session:
    id: str
    token: str
    cid: str
    settings: dict
    dir: str
    rounds: list = dataclasses.field(default_factory=list)
    bytes: int = 0
    busy: bool = False
    timer: asyncio.TimerHandle | None = None
    # `criu page-server` receiving the final dump's memory straight from
    # the source's CRIU, while it dumps.
    pages: asyncio.subprocess.Process | None = None


class Inbox:
    def __init__(self, service):
        self.service = service
        self.sessions: dict[str, Session] = {}

    def open(self, cid: str, settings: dict | None) -> Session:
        """A migration of container `cid` into this daemon. With the
        source's settings, their bundle or image is checked at once (404
        naming it); else when the final dump brings them."""
        self.service.criu()
        if cid in self.service.sup.containers or any(
                s.cid == cid for s in self.sessions.values()):
            raise Conflict(f"container id {cid!r} is already in use here", id=cid)
        settings = settings or {}
        image = (settings.get("image") or {}).get("ref")
        if image:
            self.service.sup.images.resolve(image)
        elif "bundlePath" in settings:
            bundle = settings["bundlePath"]
            if not isinstance(bundle, str) or not os.path.isabs(bundle):
                raise InvalidArgument("settings.bundlePath must be an absolute path",
                                      field="bundlePath")
            bundle_mod.read_config(bundle)  # 404 naming the bundle if it is not here
        sid = uuid.uuid4().hex[:16]
        s = Session(id=sid, token=secrets.token_urlsafe(32), cid=cid, settings=settings,
                    dir=os.path.join(self.service.received_dir, f".migration-{sid}"))
        os.makedirs(os.path.join(s.dir, "rounds"))
        self.sessions[sid] = s
        self._touch(s)
        self.service.sup.events.emit("migration-open", cid, migration=sid)
        return s

    def authorize(self, sid: str, token: str | None) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            raise NotFound(f"no such migration: {sid!r}", migration=sid)
        if not token or not hmac.compare_digest(token, s.token):
            raise Unauthorized(f"migration {sid!r}: wrong or missing token")
        self._touch(s)
        return s

    def _touch(self, s: Session) -> None:
        if s.timer:
            s.timer.cancel()
        s.timer = asyncio.get_running_loop().call_later(IDLE_S, self._expire, s.id)

    def _expire(self, sid: str) -> None:
        s = self.sessions.get(sid)
        if s and s.busy:  # a transfer under way: look again later
            self._touch(s)
        elif s:
            log.warning("migration %s of %s: no word from the source for %ds, dropped",
                        sid, s.cid, IDLE_S)
            self.abort(s, "the source went silent")

    async def receive(self, s: Session, name: str, read) -> dict:
        """One round's images (`r1`, `r2`, ...) or the final dump."""
        if name in s.rounds:
            raise Conflict(f"migration {s.id}: round {name!r} was already received")
        dest = os.path.join(s.dir, "rounds", name) if name != FINAL \
            else os.path.join(s.dir, FINAL)
        s.busy = True
        try:
            names = await extract(read, dest, special_under=("rootfs-diff",))
        except ArchiveError as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise InvalidArgument(f"migration {s.id}: round {name}: {e}", field="body") from None
        finally:
            s.busy = False
            self._touch(s)
        if name == FINAL and s.pages is not None:
            s.busy = True
            try:
                await self._pages_done(s, os.path.join(dest, "checkpoint"))
            finally:
                s.busy = False
        size = _du(dest)
        s.rounds.append(name)
        s.bytes += size
        return {"round": name, "members": len(names), "bytes": size}

    async def restore(self, s: Session, lazy: bool) -> object:
        final = os.path.join(s.dir, FINAL)
        if FINAL not in s.rounds:
            raise Conflict(f"migration {s.id}: the final dump has not been received")
        from .service import _read_manifest
        manifest = _read_manifest(final)
        # What the target's operator opened the migration for, the source
        # cannot change: the token is for that bundle or image only.
        for key in ("bundlePath", "image"):
            if key in s.settings and manifest["container"].get(key) != s.settings[key]:
                self.abort(s, f"{key} differs from the one the migration was opened for")
                raise InvalidArgument(
                    f"migration {s.id}: the source's {key} {manifest['container'].get(key)!r} "
                    f"is not the {s.settings[key]!r} it was opened for", field=key)
        # The pre-copy rounds sit next to the final images, where its
        # `parent` links ("../r1") point.
        s.busy = True
        try:
            os.rename(os.path.join(s.dir, "rounds"), os.path.join(final, "rounds"))
            c = await self.service.create_from(
                s.cid, final, manifest["checkpoint"], manifest["container"], lazy=lazy,
                event=("migrated-in", {"migration": s.id, "bytes": s.bytes}))
        except BaseException as e:
            self.abort(s, str(e))
            raise
        finally:
            s.busy = False
        c.record.migration = {"phase": "arrived", "migration": s.id, "receivedBytes": s.bytes,
                              "rounds": len(s.rounds) - 1, "arrivedAt": rfc3339(now_ns())}
        self.service.sup.store.save(c.record)
        self._close(s)
        return c

    def abort(self, s: Session, why: str = "aborted by the source") -> None:
        self._close(s)
        self.service.sup.events.emit("migration-aborted", s.cid, migration=s.id, error=why)

    async def page_server(self, s: Session, address: str) -> dict:
        """Start a one-session `criu page-server` on `address` (where the
        source reached this daemon), writing into the final dump's images.
        CRIU's own protocol, unauthenticated: it lives only for this
        migration and serves one connection."""
        if s.pages is not None:
            raise Conflict(f"migration {s.id}: its page server was already started")
        pages = os.path.join(s.dir, "pages")
        os.makedirs(pages)
        import socket
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family) as probe:  # a free port on that address
            probe.bind((address, 0))
            port = probe.getsockname()[1]
        s.pages = await asyncio.create_subprocess_exec(
            self.service.criu(), "page-server", "--images-dir", pages,
            "--work-dir", s.dir, "--address", address, "--port", str(port),
            "-o", "page-server.log", "-v2", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        # For the next daemon, should this one die first (service.recover).
        with open(os.path.join(s.dir, "page-server.pid"), "w") as f:
            f.write(str(s.pages.pid))
        for _ in range(500):
            if s.pages.returncode is not None:
                raise RuntimeFailure("criu page-server exited at once: "
                                     + _log_tail(os.path.join(s.dir, "page-server.log")))
            if _listening(port):
                return {"address": address, "port": port}
            await asyncio.sleep(0.005)
        raise RuntimeFailure("criu page-server did not listen within 2.5 s")

    async def _pages_done(self, s: Session, final_images: str) -> None:
        """Wait for the page server to finish its session and put what it
        wrote (pagemap and pages images) beside the rest of the dump."""
        try:
            rc = await asyncio.wait_for(s.pages.wait(), 60)
        except asyncio.TimeoutError:
            raise RuntimeFailure("criu page-server still running after the final dump "
                                 "arrived") from None
        if rc != 0:
            raise RuntimeFailure(f"criu page-server exited {rc}: "
                                 + _log_tail(os.path.join(s.dir, "page-server.log")))
        pages = os.path.join(s.dir, "pages")
        for name in os.listdir(pages):
            os.rename(os.path.join(pages, name), os.path.join(final_images, name))

    def _close(self, s: Session) -> None:
        if s.pages is not None and s.pages.returncode is None:
            s.pages.kill()
        if s.timer:
            s.timer.cancel()
        self.sessions.pop(s.id, None)
        shutil.rmtree(s.dir, ignore_errors=True)


# -- source side -------------------------------------------------------------

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
        upper = upper_dir(self.c)
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


def _listening(port: int) -> bool:
    """Is something of this network namespace listening on TCP `port`?"""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for ln in rows:
            fields = ln.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return True
    return False


def _log_tail(path: str, lines: int = 6) -> str:
    try:
        with open(path, errors="replace") as f:
            kept = [ln.strip() for ln in f if "RLIMIT_NOFILE" not in ln]
    except FileNotFoundError:
        return "(no log)"
    errors = [ln for ln in kept if "Error (" in ln][:3]
    return " | ".join(errors or kept[-lines:])


def _du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total
