"""The supervisor's checkpoint operations: dump, list, delete, the restore
command of a launch, export and import.

The supervisor owns the containers, their locks and events; this class is
the part of it that knows CRIU images, archives and where received
checkpoints live. It takes the supervisor's own lock of a container for
anything that changes it, as every other operation does.
"""

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import uuid

from .. import bundle as bundle_mod, states
from ..errors import Conflict, DaemonError, InvalidArgument, RuntimeFailure, Unavailable
from ..runtime.settings import ContainerSettings
from . import criuconf
from .archive import ArchiveError, ArchivePlan, extract
from .criu import LazyPages, criu_log_tail, criu_status
from .store import META, CheckpointMeta, CheckpointStore

log = logging.getLogger("containerd_py.checkpoint")

ARCHIVE_FORMAT = "containerd-py-checkpoint/1"
# The container settings an archive (or a migration) carries, as the API
# names them; the bundle or image itself must exist on the receiving side.
SETTINGS = ("name", "labels", "runtime", "restartPolicy", "autoRemove", "bundlePath")


def settings_of(record) -> dict:
    return {"name": record.name or record.id, "labels": record.labels,
            "runtime": record.runtime, "restartPolicy": record.restart_policy,
            "autoRemove": record.auto_remove, "bundlePath": record.bundle_path,
            "resources": record.resources, "overlay": record.overlay,
            "settings": record.settings, "image": record.image,
            # By name: on the receiving daemon the container joins its
            # networks of the same names (its own addresses there).
            "networks": record.networks, "ports": record.ports}


def upper_dir(c, images) -> str | None:
    """The container's own filesystem changes (its overlay's upper dir):
    the image store's writable layer of an image's container, else the
    overlay over its bundle's rootfs."""
    if c.record.image:
        path = images.upper(c.rid)
        return path if os.path.isdir(path) else None
    path = os.path.join(c.shim.dir, "overlay", "upper")
    return path if c.record.overlay and os.path.isdir(path) else None


class CheckpointService:
    def __init__(self, sup):
        self.sup = sup
        self._status: dict | None = None
        self._inbox = None
        # Checkpoints that came from elsewhere (imports, migrations), one
        # store per container that was made from one; removed with it.
        self.received_dir = os.path.join(sup.config.data_dir, "received")
        os.makedirs(self.received_dir, mode=0o700, exist_ok=True)

    # -- CRIU ------------------------------------------------------------------

    @property
    def criu_status(self) -> dict:
        if self._status is None:
            self._status = criu_status(self.sup.config.criu)
        return self._status

    def criu(self) -> str:
        if not self.criu_status.get("available"):
            raise Unavailable("checkpoint/restore is not available on this host: "
                              f"{self.criu_status.get('reason')}", criu=self.criu_status)
        return self.sup.config.criu

    # -- dump, list, delete ----------------------------------------------------

    async def checkpoint(self, ref: str, name: str, *, exit: bool = False, tcp: bool = False,
                         unix_sockets: bool = False, shell: bool = False) -> CheckpointMeta:
        c = self.sup.get(ref)
        async with c.lock:
            self.check_dumpable(c, "checkpoint")
            store = CheckpointStore(c.record.bundle_path)
            token = uuid.uuid4().hex[:12]
            tmp = store.begin(name, token)
            work = os.path.join(c.shim.dir, f"criu-dump-{token}")
            os.makedirs(work)
            try:
                self.before_dump(c, tcp=tcp)
                await self.sup.runtime(c.record.runtime).checkpoint(
                    c.rid, tmp, work, leave_running=not exit, tcp=tcp,
                    unix_sockets=unix_sockets, shell=shell)
                meta = store.commit(tmp, CheckpointMeta(
                    name=name, exit=exit, tcp=tcp, unixSockets=unix_sockets, shell=shell,
                    container=c.id, settings=c.record.settings))
            except RuntimeFailure as e:
                e.message += " " + criu_log_tail(work)
                raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
            self.sup.events.emit("checkpoint", c.id, checkpoint=name, exit=exit)
            if exit:
                # CRIU killed the tasks; the exit arrives from the shim. The
                # shim itself goes a moment later (it drains the output
                # first): wait for that too, so that a start from this
                # checkpoint right after the answer finds no live shim.
                c.record.stopped_by_user = True
                await asyncio.wait_for(c.exited.wait(), 30)
                for _ in range(100):
                    if not c.shim.alive():
                        break
                    await asyncio.sleep(0.05)
            return meta

    # -- CRIU's settings of a container (criuconf.py) --------------------------

    def _conf(self, c) -> str:
        return criuconf.path(self.sup.config.state_dir, c.rid)

    def runtime_annotations(self, c, spec: dict) -> dict:
        """For the runtime config: where CRIU finds this container's settings."""
        return criuconf.runtime_annotations(spec, self._conf(c))

    def before_dump(self, c, *, tcp: bool) -> None:
        net = c.record.network or {}
        criuconf.write(self._conf(c), criuconf.dump_options(
            tcp=tcp, isolated=criuconf.isolated(os.path.join(c.shim.dir, "bundle"),
                                                net.get("netns"), net.get("attachments")),
            empty_mounts=criuconf.empty_readonly_tmpfs(c.record.init.pid)))

    def prune_settings(self, rids: set[str]) -> None:
        criuconf.prune(self.sup.config.state_dir, rids)

    def check_dumpable(self, c, op: str) -> None:
        states.check(op, c.record.status, c.id)
        self.criu()
        if c.record.execs:
            # runc hands CRIU init's process tree only, and an exec'd
            # process is the shim's child, not init's: CRIU would leave it
            # out without a word. Refuse rather than lose it.
            pids = [p.pid for p in c.record.execs]
            raise Conflict(
                f"cannot checkpoint container {c.id!r} while exec'd processes run "
                f"(pids {pids}): only init's process tree can be checkpointed; "
                "wait for them or signal them first", id=c.id, pids=pids,
                status=c.record.status.value)

    def list(self, ref: str) -> list[CheckpointMeta]:
        return CheckpointStore(self.sup.get(ref).record.bundle_path).list()

    def delete(self, ref: str, name: str) -> None:
        c = self.sup.get(ref)
        CheckpointStore(c.record.bundle_path).delete(name)
        self.sup.events.emit("delete-checkpoint", c.id, checkpoint=name)

    # -- restore (part of a launch) ------------------------------------------

    async def restore_argv(self, c, rt, run_bundle: str, pid_file: str):
        """The runtime's restore command for a launch from the container's
        checkpoint, and the lazy-pages daemon serving it (or None). The
        checkpoint is the bundle's, or one this daemon received."""
        r = c.record
        self.criu()
        store = CheckpointStore(r.checkpoint_home or r.bundle_path)
        image = store.require(r.checkpoint)
        meta = store.meta(r.checkpoint)
        work = os.path.join(c.shim.dir, "criu-work")
        os.makedirs(work, exist_ok=True)
        # (A previous dump's settings are not a restore's.)
        try:
            own_cgroup = criuconf.cannot_leave_cgroup(bundle_mod.read_config(run_bundle))
        except DaemonError:
            own_cgroup = False
        criuconf.write(self._conf(c), criuconf.restore_options(
            os.path.join(self.sup.config.state_dir, "criu", "empty"),
            own_cgroup_only=own_cgroup))
        lazy = None
        if r.lazy:
            lazy = LazyPages(self.criu(), image, work)
            await lazy.start()
        argv = rt.restore_argv(c.rid, run_bundle, image, work, pid_file, tcp=meta.tcp,
                               unix_sockets=meta.unixSockets, shell=meta.shell,
                               lazy=lazy is not None)
        return argv, lazy, work

    async def lazy_done(self, c, lazy: LazyPages) -> None:
        rc = await lazy.finish()
        if rc != 0:
            log.warning("container %s: criu lazy-pages exited %d: %s", c.id, rc,
                        criu_log_tail(lazy.work))

    def forget(self, record) -> None:
        """Remove a received checkpoint with the container made from it, and
        the container's CRIU settings."""
        criuconf.remove(criuconf.path(self.sup.config.state_dir,
                                      record.runtime_id or record.id))
        home = record.checkpoint_home
        if home and os.path.dirname(home) == self.received_dir:
            shutil.rmtree(home, ignore_errors=True)

    def recover(self, known: set[str]) -> None:
        """After a restart: drop what half-finished imports and migrations
        left (their receivers are gone with the previous daemon)."""
        for name in os.listdir(self.received_dir):
            path = os.path.join(self.received_dir, name)
            if name.startswith(".") or name not in known:
                log.info("removing leftover received checkpoint %s", path)
                _kill_page_server(os.path.join(path, "page-server.pid"))
                shutil.rmtree(path, ignore_errors=True)

    # -- export ----------------------------------------------------------------

    def export_plan(self, ref: str, name: str) -> ArchivePlan:
        """Everything a restore elsewhere needs, as podman's --export: the
        CRIU images, the checkpoint's metadata, the container's settings,
        its bundle's config.json and its own filesystem changes."""
        c = self.sup.get(ref)
        r = c.record
        store = CheckpointStore(r.checkpoint_home or r.bundle_path)
        if not store.exists(name):
            store = CheckpointStore(r.bundle_path)
        image = store.require(name)
        meta = store.meta(name)
        try:
            spec = bundle_mod.read_config(r.bundle_path)
        except DaemonError:
            spec = None
        upper = upper_dir(c, self.sup.images)
        plan = ArchivePlan().add_json("manifest.json", {
            "format": ARCHIVE_FORMAT, "checkpoint": dataclasses.asdict(meta),
            "container": {"id": r.id, **settings_of(r)}, "rootfsDiff": upper is not None})
        if spec is not None:
            plan.add_json("config.json", spec)
        plan.add_tree("checkpoint", image)
        if upper:
            plan.add_tree("rootfs-diff", upper)
        self.sup.events.emit("export-checkpoint", c.id, checkpoint=name)
        return plan

    # -- import ----------------------------------------------------------------

    async def import_archive(self, cid: str, read, *, bundle: str | None = None,
                             name: str | None = None):
        """Restore an exported archive as a new container `cid`. Nothing is
        left behind when it fails."""
        self.criu()
        self._check_id_free(cid)
        tmp = os.path.join(self.received_dir, f".import-{uuid.uuid4().hex[:12]}")
        try:
            try:
                await extract(read, tmp, special_under=("rootfs-diff",))
            except ArchiveError as e:
                raise InvalidArgument(f"checkpoint archive: {e}", field="body") from None
            manifest = read_manifest(tmp)
            return await self.create_from(cid, tmp, manifest["checkpoint"],
                                          manifest["container"], bundle=bundle, name=name,
                                          event=("import-checkpoint", {}))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def create_from(self, cid: str, staged: str, meta: dict, settings: dict, *,
                          bundle: str | None = None, name: str | None = None,
                          lazy: bool = False, event=None):
        """Create container `cid` restored from a checkpoint staged in
        `staged` (checkpoint/ with the images, optionally rootfs-diff/).
        The staged dir is moved into the container's own places."""
        image = (settings.get("image") or {}).get("ref") if not bundle else None
        if image:
            self.sup.images.resolve(image)  # 404 naming the image if it is not here
            bundle = None
        else:
            bundle = bundle or settings.get("bundlePath")
            if not isinstance(bundle, str) or not os.path.isabs(bundle):
                raise InvalidArgument("the checkpoint names no absolute bundlePath; give one",
                                      field="bundlePath")
            bundle_mod.read_config(bundle)  # 404 naming the bundle if it is not here
        runtime = settings.get("runtime") or None
        home = os.path.join(self.received_dir, cid)
        images = os.path.join(home, "checkpoints", meta["name"])
        self._check_id_free(cid)
        try:
            os.mkdir(home, 0o700)
        except FileExistsError:
            raise Conflict(f"container id {cid!r} is already in use", id=cid) from None
        try:
            os.makedirs(os.path.dirname(images))
            os.rename(os.path.join(staged, "checkpoint"), images)
            # A migration's pre-copy rounds go next to the final images,
            # where their `parent` links (../r1) point.
            rounds = os.path.join(staged, "rounds")
            for name in sorted(os.listdir(rounds)) if os.path.isdir(rounds) else ():
                os.rename(os.path.join(rounds, name), os.path.join(home, "checkpoints", name))
            with open(os.path.join(images, META), "w") as f:
                json.dump(meta, f)
            diff = os.path.join(staged, "rootfs-diff")
            upper_parent = os.path.join(self.sup.config.shim_dir(cid), "overlay")
            # No await from this check to create()'s own registration of
            # the id: the shim dir filled here cannot be another's.
            self._check_id_free(cid)
            if os.path.isdir(diff) and image:
                # An image's container mounts its writable layer from the
                # image store (its first mount keeps an upper dir it finds).
                upper = self.sup.images.upper(cid)
                os.makedirs(os.path.dirname(upper), exist_ok=True)
                shutil.move(diff, upper)
            elif os.path.isdir(diff):
                os.makedirs(upper_parent, exist_ok=True)
                shutil.move(diff, os.path.join(upper_parent, "upper"))
            c = await self.sup.create(
                cid, bundle, name=name or cid, labels=settings.get("labels") or {},
                runtime=runtime, checkpoint=meta["name"], checkpoint_home=home,
                auto_remove=bool(settings.get("autoRemove")),
                restart_policy=settings.get("restartPolicy") or {"name": "no"}, lazy=lazy,
                settings=ContainerSettings.from_json(settings.get("settings") or
                                                     meta.get("settings") or {}),
                resources=settings.get("resources") or {}, image=image,
                networks=settings.get("networks"), ports=settings.get("ports") or None)
        except BaseException:
            if cid not in self.sup.containers:  # else the id is another's now
                shutil.rmtree(home, ignore_errors=True)
                shutil.rmtree(self.sup.config.shim_dir(cid), ignore_errors=True)
                if image:
                    self.sup.images.remove(cid)
            raise
        if event:
            self.sup.events.emit(event[0], cid, checkpoint=meta["name"], **event[1])
        return c

    # -- migration -------------------------------------------------------------

    async def migrate(self, ref: str, target: str, *, pre_copy: int = 2, lazy: bool = False,
                      lazy_restore: bool = True, offer: tuple | None = None) -> dict:
        """Move a running container to the daemon at `target` (migration.py).
        Holds the container's lock throughout: nothing else changes it
        while it moves."""
        from .migration import Migration, lazy_unavailable
        c = self.sup.get(ref)
        async with c.lock:
            self.check_dumpable(c, "checkpoint")
            if lazy:
                raise lazy_unavailable()
            return await Migration(self, c, target, pre_copy, lazy_restore, offer).run()

    @property
    def inbox(self):
        """The target side: migrations other daemons opened here."""
        if self._inbox is None:
            from .inbox import Inbox
            self._inbox = Inbox(self)
        return self._inbox

    def _check_id_free(self, cid: str) -> None:
        if cid in self.sup.containers:
            raise Conflict(f"container id {cid!r} is already in use", id=cid)


def read_manifest(root: str) -> dict:
    try:
        with open(os.path.join(root, "manifest.json")) as f:
            manifest = json.load(f)
    except (FileNotFoundError, ValueError) as e:
        raise InvalidArgument(f"checkpoint archive has no valid manifest.json: {e}",
                              field="body") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise InvalidArgument(f"checkpoint archive: unknown format "
                              f"{manifest.get('format') if isinstance(manifest, dict) else None!r}"
                              f" (expected {ARCHIVE_FORMAT})", field="body")
    meta, settings = manifest.get("checkpoint"), manifest.get("container")
    if not isinstance(meta, dict) or not isinstance(settings, dict):
        raise InvalidArgument("checkpoint archive: manifest lacks checkpoint or container",
                              field="body")
    known = {f.name for f in dataclasses.fields(CheckpointMeta)}
    meta = {k: v for k, v in meta.items() if k in known}
    from .. import validation
    validation.check_id(meta.get("name"), "checkpoint")
    if not os.path.isfile(os.path.join(root, "checkpoint", "inventory.img")):
        raise InvalidArgument("checkpoint archive has no CRIU images (checkpoint/inventory.img)",
                              field="body")
    manifest["checkpoint"] = meta
    return manifest



def _kill_page_server(pid_file: str) -> None:
    """A migration's `criu page-server` that outlived its daemon."""
    try:
        with open(pid_file) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"page-server" not in f.read():
                return  # the pid was reused
        os.kill(pid, 9)
    except (OSError, ValueError):
        pass
