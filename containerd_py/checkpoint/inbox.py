"""The target side of a live migration: the sessions that source daemons
open here (each authenticated by its one-time token), holding what they
receive in a directory of their own until the restore, an abort, or
`IDLE_S` without a word from the source ends them.
"""

import asyncio
import dataclasses
import hmac
import logging
import os
import secrets
import shutil
import uuid

from .. import bundle as bundle_mod
from ..errors import Conflict, InvalidArgument, NotFound, RuntimeFailure, Unauthorized
from ..events import now_ns, rfc3339
from .archive import ArchiveError, extract
from .criu import log_summary
from .store import du

log = logging.getLogger("containerd_py.migration")

# A target drops a session the source has not touched for this long (the
# source died, or the network between them broke).
IDLE_S = 120
FINAL = "final"


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
        size = du(dest)
        s.rounds.append(name)
        s.bytes += size
        return {"round": name, "members": len(names), "bytes": size}

    async def restore(self, s: Session, lazy: bool) -> object:
        final = os.path.join(s.dir, FINAL)
        if FINAL not in s.rounds:
            raise Conflict(f"migration {s.id}: the final dump has not been received")
        from .service import read_manifest
        manifest = read_manifest(final)
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
                                     + (log_summary(os.path.join(s.dir, "page-server.log"), 6, 3) or "(no log)"))
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
                                 + (log_summary(os.path.join(s.dir, "page-server.log"), 6, 3) or "(no log)"))
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
