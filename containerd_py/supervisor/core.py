"""The supervisor: containers, their state machine, per-container locks,
events, and recovery after a daemon restart.

The HTTP layer calls in with validated arguments; the supervisor decides
whether an operation is allowed (states.check), serialises operations on one
container with its lock, drives the runtime and the shim, persists the
record and emits the event. Exits arrive from each shim's `subscribe`
stream and are applied without the lock, because operations such as stop
hold the lock while they wait for exactly that exit.
"""

import asyncio
import logging
import os
import shutil

from .. import bundle as bundle_mod, failpoints, orphans, shim_loss
from .. import shim_spare, states, timing
from .. import stats as stats_mod
from ..checkpoint import after_restore, criu_log_tail
from ..checkpoint.service import CheckpointService
from ..checkpoint.store import CheckpointStore
from ..config import DaemonConfig
from ..errors import Conflict, InvalidArgument, NotFound, RuntimeFailure
from ..events import EventJournal, now_ns, parse_timestamp, rfc3339
from ..images import ImageStore, spec as image_spec
from ..network import DEFAULT_NETWORK, NetworkService
from ..pools import WarmPools
from ..runtime import SUPPORTED, OCIRuntime, failures, rootfs, signals, spec as runspec
from ..runtime.settings import ContainerSettings
from ..shim import ExitRecord, Shim
from ..states import Status
from ..interactive import ExecSession
from ..store import ContainerRecord, ContainerStore
from .network_ops import NetworkOperations
from .processes import ProcessOperations
from .system import SystemInfo

log = logging.getLogger("containerd_py.supervisor")

# How many exit statuses of finished exec'd processes a record keeps.
EXEC_EXITS_KEPT = 256


class Container:
    """A record plus what only lives while the daemon runs."""

    def __init__(self, record: ContainerRecord, shim: Shim):
        self.record = record
        self.shim = shim
        self.lock = asyncio.Lock()
        self.exited = asyncio.Event()
        self.watcher: asyncio.Task | None = None
        self.cleanup: asyncio.Task | None = None
        self.restart_task: asyncio.Task | None = None
        self.process_exited: dict[int, asyncio.Event] = {}
        # Websocket exec sessions with a pty, by pid: the daemon holds their
        # pty master, so it resizes them itself.
        self.sessions: dict[int, ExecSession] = {}
        self.last_stats: dict | None = None
        # Cgroup dirs of the running init, read once at start: after init
        # exits /proc/PID/cgroup is gone but the OOM counter still matters.
        self.cgroups: dict | None = None
        self.oom_seen = 0
        if record.status == Status.STOPPED:
            self.exited.set()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def rid(self) -> str:
        """The id the runtime knows it by: its own, or the warm-pool
        member's it was claimed from (runc fixes it at create)."""
        return self.record.runtime_id or self.record.id


class Supervisor(ProcessOperations, NetworkOperations, SystemInfo):
    def __init__(self, config: DaemonConfig):
        self.config = config
        self.store = ContainerStore(config.containers_dir)
        self.events = EventJournal(os.path.join(config.data_dir, "events.jsonl"),
                                   config.events_journal_max)
        self.containers: dict[str, Container] = {}
        self.images = ImageStore(os.path.join(config.data_dir, "images"))
        self._runtimes: dict[str, OCIRuntime] = {}
        self.checkpointing = CheckpointService(self)
        self.default_runtime = self.runtime(config.runtime).name
        self.networks = NetworkService(config.data_dir, config.state_dir, config.default_subnet)
        os.makedirs(os.path.join(config.state_dir, "shims"), mode=0o700, exist_ok=True)
        self.pools = WarmPools(self)

    # -- lookup --------------------------------------------------------------

    def runtime(self, name: str) -> OCIRuntime:
        if name not in SUPPORTED:
            raise InvalidArgument(f"unknown runtime {name!r}: use one of {', '.join(SUPPORTED)}",
                                  field="runtime")
        if name not in self._runtimes:
            root = os.path.join(self.config.state_dir, "runtime", name)
            self._runtimes[name] = OCIRuntime(name, root, self.config.criu)
        return self._runtimes[name]

    def get(self, ref: str) -> Container:
        c = self.containers.get(ref)
        if c is None:
            # Like podman, a container can be named by its name as well.
            c = next((c for c in self.containers.values() if c.record.name == ref), None)
        if c is None:
            raise NotFound(f"no such container: {ref!r}", id=ref)
        return c

    def all(self) -> list[Container]:
        return sorted(self.containers.values(), key=lambda c: c.record.created)

    # -- recovery ------------------------------------------------------------

    async def recover(self) -> None:
        """Find the containers of a previous daemon again, through their
        records and what their shims left behind."""
        for record in self.store.load_all():
            c = Container(record, Shim(self.config.shim_dir(record.runtime_id or record.id)))
            self.containers[record.id] = c
            self.networks.restore(record)
            if record.status == Status.STOPPED:
                await self._release_network(c)  # the previous daemon died before it did
                # A restart the previous daemon had scheduled but not done.
                if self._should_restart(record):
                    c.restart_task = asyncio.create_task(self._policy_restart(c))
                continue
            for p in list(record.execs):
                ex = c.shim.process_exit(p.pid)
                if ex is not None:
                    self._on_process_exit(c, ex)
            if c.shim.alive():
                try:
                    c.cgroups = stats_mod.cgroup_paths(record.init.pid)
                except OSError:
                    pass
                c.watcher = asyncio.create_task(self._watch(c, record.init.pid))
            else:
                self._on_init_exit(c, c.shim.init_exit() or self._lost_exit(c))
        # Root filesystems are keyed by the runtime id; pool members have theirs.
        self.images.prune(keep={c.rid for c in self.containers.values()}
                          | self.pools.member_ids())
        await self.networks.collect_orphans(c.record for c in self.containers.values())
        log.info("recovered %d containers", len(self.containers))
        self.checkpointing.recover(set(self.containers))
        await self.pools.recover()
        await self._remove_orphans()
        status = self.checkpointing.criu_status
        log.info("checkpoint/restore: %s", "available (criu %s)" % status.get("version")
                 if status["available"] else "unavailable: %s" % status.get("reason"))
        if status.get("warning"):
            log.warning("checkpoint/restore: %s", status["warning"])

    async def _remove_orphans(self) -> None:
        # Runtime containers and shim dirs are named by the runtime id (a
        # pool member's, for a claimed one); unreadable records keep theirs.
        ids = ({c.rid for c in self.containers.values()} | self.pools.member_ids()
               | set(self.store.damaged))
        runtimes = [self.runtime(n) for n in SUPPORTED
                    if os.path.isdir(os.path.join(self.config.state_dir, "runtime", n))]
        await orphans.remove_orphans(runtimes, os.path.join(self.config.state_dir, "shims"),
                                     {self.config.shim_dir(i) for i in ids}, ids)
        self.checkpointing.prune_settings(ids)
        orphans.remove_partial_checkpoints(
            {p for c in self.containers.values()
             for p in (c.record.bundle_path, getattr(c.record, "checkpoint_home", None)) if p})

    def _lost_exit(self, c: Container) -> ExitRecord:
        return shim_loss.lost_exit(c.id, c.record)

    async def close(self) -> None:
        """Stop supervising; containers and shims keep running, as with
        containerd."""
        tasks = [t for c in self.containers.values()
                 for t in (c.watcher, c.restart_task, c.cleanup) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pools.close()
        self.events.close()
        shim_spare.release()
        # Not on each delete: a concurrent create could be between runc's
        # mkdir of the parent and of its own dir.
        stats_mod.remove_empty_parent(self.config.cgroup_parent)

    # -- create / start ------------------------------------------------------

    async def create(self, cid: str, bundle: str | None, *, name: str | None = None,
                     labels: dict | None = None, runtime: str | None = None,
                     checkpoint: str | None = None, auto_remove: bool = False,
                     restart_policy: dict | None = None, overlay: bool = False,
                     lazy: bool = False, settings: ContainerSettings | None = None,
                     resources: dict | None = None, start: bool = True,
                     image: str | None = None,
                     checkpoint_home: str | None = None,
                     networks: list[str] | None = None,
                     ports: list[dict] | None = None) -> Container:
        """Create a container and start it; with `start=False` only record
        it (the CRI's CreateContainer): its first `start` runs it. From a
        bundle, or from `image` (a ref of the image store). `checkpoint_home`
        holds `checkpoint` when it is not the bundle's (a received one)."""
        name = name or cid
        if cid in self.containers:
            raise Conflict(f"container id {cid!r} is already in use", id=cid)
        self._check_name_free(name)
        self.store.check_space(self.config.state_dir)
        if image and bundle is None and networks is None:
            # As podman's. A bundle keeps its config.json's, and the CRI's
            # containers (a spec of their own) join their pod's namespace.
            networks = [DEFAULT_NETWORK]
        self.networks.check_request(networks, ports or [])
        rt = self.runtime(runtime or self.default_runtime)
        # An image's container runs the image's bundle, unless the caller
        # wrote the whole spec itself (the CRI): then only the root
        # filesystem comes from the image.
        own_spec = bundle is not None
        if image:
            img = self.images.resolve(image)
            bundle = bundle or image_spec.bundle(self.images, img)
        else:
            bundle = bundle_mod.resolve(bundle)
        spec = bundle_mod.read_config(bundle)
        if not image:
            bundle_mod.check_runnable(bundle, spec)
        timing.mark("read-spec")
        settings = settings or ContainerSettings()
        if checkpoint:
            # The checkpoint was taken with its container's settings (mounts,
            # args, user): a clone restores into the same spec, with what the
            # request adds over it.
            settings = runspec.over(ContainerSettings.from_json(
                CheckpointStore(checkpoint_home or bundle).meta(checkpoint).settings), settings)
        if image and not own_spec:
            settings = runspec.over(runspec.image_settings(img.image_config, cid), settings)
        record = ContainerRecord(
            id=cid, name=name, bundle_path=bundle, runtime=rt.name,
            created=rfc3339(now_ns()), labels=labels or {}, auto_remove=auto_remove,
            restart_policy=restart_policy or {"name": "no"}, checkpoint=checkpoint,
            # A restored clone must never write into the bundle other clones
            # share, so restore always gets its own overlay.
            overlay=overlay or checkpoint is not None, lazy=lazy,
            settings=settings.to_json(), resources=dict(resources or {}),
            image={"ref": image, "id": img.id} if image else None,
            checkpoint_home=checkpoint_home,
            networks=networks, ports=ports or [])
        # The bundle's process until the first launch writes the spec.
        record.init = bundle_mod.process_record(spec.get("process", {}), 0)
        c = Container(record, Shim(self.config.shim_dir(cid)))
        # Registered before the first await: a concurrent create of the same
        # id sees it and gets 409; other operations wait on the lock.
        self.containers[cid] = c
        if not start:
            self.store.save(record)
            self.events.emit("create", cid)
            return c
        async with c.lock:
            try:
                await self._launch(c, spec)
            except BaseException:
                self.containers.pop(cid, None)
                await self._teardown(c)
                raise
        return c

    async def claim(self, cid: str, pool: str, *, name: str | None = None,
                    labels: dict | None = None) -> Container:
        """Container `cid` from a warm pool (pools.py)."""
        return await self.pools.claim(cid, pool, container_name=name, labels=labels)

    def _check_name_free(self, name: str, except_id: str | None = None) -> None:
        for other in self.containers.values():
            if other.id != except_id and (other.record.name == name or other.id == name):
                raise Conflict(f"name {name!r} is already in use by container {other.id!r}",
                               id=other.id)

    async def _launch(self, c: Container, spec: dict | None = None,
                      prestart: bool = False) -> None:
        """Networks first (the runtime joins their netns), then the
        processes; a failed start leaves no network behind."""
        if spec is None:
            spec = bundle_mod.read_config(c.record.bundle_path)
        if c.cleanup is not None:
            await c.cleanup  # the previous run's `runtime delete` and CNI DEL
            c.cleanup = None
        await self.networks.prepare(c.record, spec, hostname=ContainerSettings.from_json(
            c.record.settings).hostname or spec.get("hostname"))
        timing.mark("network")
        try:
            await self._launch_processes(c, spec, prestart)
        except BaseException:
            await self._release_network(c)
            raise

    async def _launch_processes(self, c: Container, spec: dict | None = None,
                                prestart: bool = False) -> None:
        """Start the container's processes (fresh, or restored from its
        checkpoint) under a new shim. Caller holds the lock. `prestart`
        (warm pools): only the runtime's create, or the restore, with the
        record left to the pool until a claim starts it."""
        r = c.record
        if spec is None:
            spec = bundle_mod.read_config(r.bundle_path)
        if c.cleanup is not None:
            await c.cleanup  # the previous run's `runtime delete`
            c.cleanup = None
        rt = self.runtime(r.runtime)
        shim_dir = c.shim.dir
        if os.path.isdir(shim_dir):
            if c.shim.alive():
                raise Conflict(f"container {c.id!r} still has a live shim", id=c.id)
            _clear_shim_files(shim_dir)
        os.makedirs(shim_dir, mode=0o700, exist_ok=True)
        timing.mark("prepare")
        run_bundle = self._write_runtime_bundle(c, spec)
        failpoints.hit("create-before-shim")
        timing.mark("write-spec")
        pid_file = c.shim.init_pid_file
        console = os.path.join(shim_dir, "console.sock") if r.init.terminal else None
        lazy = None
        if r.checkpoint:
            argv, lazy, work = await self.checkpointing.restore_argv(c, rt, run_bundle,
                                                                     pid_file)
        else:
            argv = (rt.create_argv if prestart else rt.run_argv)(c.rid, run_bundle, pid_file,
                                                                 console)
        # Taken before the spawn: the process may write before spawn returns,
        # and `attach?logs=true` replays this run's output from here.
        started = now_ns()
        try:
            shim_pid, init_pid = await c.shim.spawn(argv, console_socket=console,
                                                    log_max=self.config.log_max_bytes)
        except RuntimeFailure as e:
            if lazy:
                lazy.kill()
            if r.checkpoint:
                e.message += " " + criu_log_tail(work)
                raise
            raise failures.classify(e) from None
        timing.mark("shim-start", c.shim.runtime_ns[0])
        timing.mark("runtime", c.shim.runtime_ns[1])
        timing.mark("shim-reply")
        if lazy:
            asyncio.create_task(self.checkpointing.lazy_done(c, lazy))
        if r.checkpoint:
            await after_restore(c.id, init_pid, not spec["root"].get("readonly", False))
            timing.mark("after-restore")
        failpoints.hit("create-after-shim")
        r.shim_pid, r.init.pid = shim_pid, init_pid
        if not prestart:
            self._mark_running(c, init_pid, started)

    def _mark_running(self, c: Container, init_pid: int, started_ns: int | None = None) -> None:
        r = c.record
        r.status = Status.RUNNING
        r.execs, r.exit_status, r.exited_at = [], None, None
        r.stopped_by_user = False
        r.exit_reason = None
        r.started_at = rfc3339(started_ns or now_ns())
        c.exited.clear()
        c.last_stats, c.oom_seen = None, 0
        r.oom_killed = False
        c.cgroups = None  # read by the watcher, off the start path
        # Watched before it is saved: if the save fails (a full disk) the
        # container still runs, and its exit must still be seen.
        c.watcher = asyncio.create_task(self._watch(c, init_pid))
        self.store.save(r)
        timing.mark("save")
        self.events.emit("start-container", c.id, pid=init_pid)
        timing.mark("event")
        timing.mark("watch")

    def _write_runtime_bundle(self, c: Container, spec: dict) -> str:
        """The runtime gets the daemon's own spec (runtime/spec.py) over the
        bundle's or the image's root filesystem."""
        r = c.record
        if r.image:
            root, own = self.images.mount(r.image["id"], c.rid), True
        else:
            overlay = os.path.join(c.shim.dir, "overlay") if r.overlay else None
            root = rootfs.for_bundle(r.bundle_path, spec, overlay)
            own = overlay is not None
        settings = ContainerSettings.from_json(r.settings)
        bundle = os.path.join(c.shim.dir, "bundle")
        spec = runspec.write_runtime_bundle(
            bundle, spec, settings, rootfs=root, own_rootfs=own,
            cgroups_path=f"/{self.config.cgroup_parent}/{c.rid}", resources=r.resources,
            init_binary=self.config.init_binary,
            runtime_annotations=self.checkpointing.runtime_annotations(c, spec))
        r.init = bundle_mod.process_record(spec["process"], 0)
        r.config, r.stop_signal = runspec.effective(spec, settings), runspec.stop_signal(spec)
        return bundle

    # -- exits ---------------------------------------------------------------

    async def _watch(self, c: Container, init_pid: int) -> None:
        if c.cgroups is None:
            try:
                c.cgroups = stats_mod.cgroup_paths(init_pid)
            except OSError:  # init already exited (ESRCH for a zombie)
                pass
        try:
            async for ex in c.shim.subscribe():
                if c.record.init is None or c.record.init.pid != init_pid:
                    return  # a later run of this container owns the shim dir
                if ex.pid == init_pid:
                    self._on_init_exit(c, ex)
                    await _reap(c.record.shim_pid)
                    return
                self._on_process_exit(c, ex)
            # The stream ended without init's exit: the shim exited (its
            # exit file says how) or could not be reached while alive.
            while c.shim.alive() and c.shim.init_exit() is None:
                await asyncio.sleep(0.2)
            if c.record.init is not None and c.record.init.pid == init_pid \
                    and c.record.status != Status.STOPPED:
                self._on_init_exit(c, c.shim.init_exit() or self._lost_exit(c))
            await _reap(c.record.shim_pid)
            await _reap(init_pid)  # orphaned to the daemon (subreaper) by a dead shim
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watching container %s", c.id)

    def _on_process_exit(self, c: Container, ex: ExitRecord) -> None:
        r = c.record
        proc = next((p for p in r.execs if p.pid == ex.pid), None)
        if proc is None:
            return
        r.execs.remove(proc)
        if ex.status == 137:
            self._check_oom(c)
        r.exec_exits[str(ex.pid)] = ex.status
        while len(r.exec_exits) > EXEC_EXITS_KEPT:
            r.exec_exits.pop(next(iter(r.exec_exits)))
        self.store.save(r)
        self.events.emit("exit", c.id, pid=ex.pid, status=ex.status,
                         exitedAt=rfc3339(ex.exited_at_ns))
        ev = c.process_exited.pop(ex.pid, None)
        if ev:
            ev.set()

    def _on_init_exit(self, c: Container, ex: ExitRecord) -> None:
        r = c.record
        if r.status == Status.STOPPED:
            return
        for p in list(r.execs):
            # The PID namespace took them with init; their own exit lines may
            # still be in flight or lost.
            pex = c.shim.process_exit(p.pid) or ExitRecord(p.pid, 137, ex.exited_at_ns)
            self._on_process_exit(c, pex)
        if ex.status == 137:
            self._check_oom(c)
        r.status = Status.STOPPED
        r.exit_status = ex.status
        r.exited_at = rfc3339(ex.exited_at_ns)
        self.store.save(r)
        self.events.emit("exit", c.id, pid=ex.pid, status=ex.status, exitedAt=r.exited_at,
                         **({"reason": r.exit_reason} if r.exit_reason else {}))
        c.exited.set()
        for ev in c.process_exited.values():
            ev.set()
        c.process_exited.clear()
        c.cleanup = asyncio.create_task(self._after_exit(c))

    async def _after_exit(self, c: Container) -> bool:
        """Release the runtime's state and cgroup; then honour autoRemove or
        the restart policy. True if the runtime's state is gone."""
        try:
            await self.runtime(c.record.runtime).delete(c.rid, force=True)
            deleted = True
        except RuntimeFailure as e:
            log.warning("container %s: %s", c.id, e.message)
            deleted = False
        await self._release_network(c)
        if self.containers.get(c.id) is c:
            if c.record.auto_remove:
                asyncio.create_task(self._auto_remove(c))
            elif self._should_restart(c.record):
                c.restart_task = asyncio.create_task(self._policy_restart(c))
        return deleted

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self.delete(c.id)
        except (NotFound, Conflict):
            pass

    @staticmethod
    def _should_restart(r: ContainerRecord) -> bool:
        policy = r.restart_policy.get("name", "no")
        if r.stopped_by_user:
            return False
        if policy == "always":
            return True
        if policy == "on-failure" and r.exit_status != 0:
            limit = r.restart_policy.get("maximumRetryCount", 0)
            return not limit or r.restart_count < limit
        return False

    async def _policy_restart(self, c: Container) -> None:
        # Exponential backoff, as Docker: 100ms, 200ms, ... capped at 30s.
        delay = min(0.1 * 2 ** min(c.record.restart_count, 9), 30.0)
        await asyncio.sleep(delay)
        async with c.lock:
            if c.record.status != Status.STOPPED or self.containers.get(c.id) is not c:
                return
            c.record.restart_count += 1
            try:
                await self._launch(c)
            except Exception as e:
                log.warning("container %s: restart policy failed: %s", c.id, e)
                return
            self.events.emit("restart", c.id, pid=c.record.init.pid)

    # -- operations ----------------------------------------------------------


    async def kill(self, ref: str, signal: int) -> None:
        c = self.get(ref)
        async with c.lock:
            states.check("kill", c.record.status, c.id)
            await self._kill(c, signal)

    async def _kill(self, c: Container, signal: int) -> None:
        rt = self.runtime(c.record.runtime)
        try:
            await rt.kill(c.rid, signal)
        except RuntimeFailure:
            if c.record.init and not shim_loss.alive(c.record.init.pid):
                # Its init exited just now; the exit is on its way.
                raise Conflict(f"container {c.id!r} has exited", id=c.id,
                               status="stopped") from None
            raise
        if c.record.status == Status.PAUSED and signal in (9, 15):
            # A frozen process cannot act on the signal; thaw it so it dies,
            # as Docker does for kill on a paused container.
            try:
                await rt.resume(c.rid)
            except RuntimeFailure:
                # For SIGKILL runc thaws the cgroup itself (v1), so the
                # container may be "not paused" or gone by now.
                if signal != 9:
                    raise
            if c.record.status == Status.PAUSED:  # its exit may have come meanwhile
                c.record.status = Status.RUNNING
                self.store.save(c.record)
                self.events.emit("resume", c.id)

    async def pause(self, ref: str) -> Container:
        return await self._freeze(ref, "pause", Status.PAUSED)

    async def resume(self, ref: str) -> Container:
        return await self._freeze(ref, "resume", Status.RUNNING)

    async def _freeze(self, ref: str, op: str, status: Status) -> Container:
        """pause / resume: the runtime's cgroup freezer, then the new state."""
        c = self.get(ref)
        async with c.lock:
            states.check(op, c.record.status, c.id)
            await getattr(self.runtime(c.record.runtime), op)(c.rid)
            c.record.status = status
            self.store.save(c.record)
            self.events.emit(op, c.id)
        return c

    async def delete(self, ref: str, force: bool = False) -> None:
        c = self.get(ref)
        async with c.lock:
            await self.delete_locked(c, force)

    async def delete_locked(self, c: Container, force: bool = False) -> None:
        """Delete under the lock the caller holds (a migration that
        moved the container away)."""
        if c.record.status != Status.STOPPED:
            if not force:
                states.check("delete", c.record.status, c.id)
            await self._stop_locked(c, timeout=0)
        if c.restart_task:
            c.restart_task.cancel()
        # After an exit seen by this daemon, `_after_exit` has already
        # deleted the runtime's state: no second `runtime delete`.
        runtime_done = False
        if c.cleanup:
            runtime_done = await c.cleanup
            c.cleanup = None
        await self._teardown(c, runtime_done)
        self.containers.pop(c.id, None)
        self.store.remove(c.id)
        self.events.emit("delete", c.id)

    async def _teardown(self, c: Container, runtime_done: bool = False) -> None:
        """Remove everything of the container's but its record."""
        if c.watcher and not c.watcher.done():
            c.watcher.cancel()
        if not runtime_done:
            await self.runtime(c.record.runtime).delete(c.rid, force=True)
        await self._release_network(c, save=False)
        rootfs.remove_overlay(os.path.join(c.shim.dir, "overlay"))
        shutil.rmtree(c.shim.dir, ignore_errors=True)
        self.checkpointing.forget(c.record)
        if c.record.image:
            self.images.remove(c.rid)

    async def stop(self, ref: str, timeout: float = 10) -> Container:
        c = self.get(ref)
        async with c.lock:
            states.check("stop", c.record.status, c.id)
            await self._stop_locked(c, timeout)
            if c.cleanup:  # a stopped container has released its networks
                await asyncio.shield(c.cleanup)
            self.events.emit("stop", c.id, status=c.record.exit_status)
        return c

    async def _stop_locked(self, c: Container, timeout: float) -> None:
        if c.restart_task:
            c.restart_task.cancel()
        # A user's stop must not be undone by the restart policy (Docker's
        # rule too); the next start clears it.
        c.record.stopped_by_user = True
        if timeout > 0:
            sig, pid = c.record.stop_signal, c.record.init.pid if c.record.init else 0
            # Looked at before the send: an init without a handler yet
            # loses the signal (runtime/signals.py says why it is resent).
            dropped = bool(pid) and signals.would_drop(pid, sig)
            await self._kill(c, sig)
            if await signals.wait_exit(c.exited, pid, sig, dropped, timeout,
                                       lambda: self._resend(c, sig)):
                return
        try:
            await self._kill(c, 9)
        except RuntimeFailure:
            if not c.exited.is_set():
                raise
        await asyncio.wait_for(c.exited.wait(), 30)

    async def _resend(self, c: Container, sig: int) -> None:
        try:
            await self._kill(c, sig)
        except (Conflict, RuntimeFailure):
            pass  # it exited meanwhile: what the stop waits for

    async def wait(self, ref: str) -> ContainerRecord:
        c = self.get(ref)
        await c.exited.wait()
        return c.record


    async def start(self, ref: str, checkpoint: str | None = None,
                    lazy: bool = False) -> Container:
        """Start a stopped container again: from its bundle (same id, fresh
        processes), or by restoring one of its bundle's checkpoints (as
        `docker start --checkpoint`)."""
        c = self.get(ref)
        async with c.lock:
            states.check("start", c.record.status, c.id)
            c.record.checkpoint, c.record.lazy = checkpoint, lazy
            if checkpoint:
                c.record.overlay = True
            await self._launch(c)
            self.events.emit("start", c.id, pid=c.record.init.pid)
        return c

    async def restart(self, ref: str, timeout: float = 10) -> Container:
        c = self.get(ref)
        async with c.lock:
            states.check("restart", c.record.status, c.id)
            if c.record.status != Status.STOPPED:
                await self._stop_locked(c, timeout)
            c.record.checkpoint = None
            await self._launch(c)
            self.events.emit("restart", c.id, pid=c.record.init.pid)
        return c

    # -- stats, update, rename


    def stats(self, ref: str) -> dict:
        c = self.get(ref)
        states.check("stats", c.record.status, c.id)
        try:
            cur = stats_mod.sample(c.record.init.pid)
        except OSError:
            raise Conflict(f"container {c.id!r} has exited", id=c.id, status="stopped") from None
        prev = c.last_stats or {"read": _started_ns(c.record), "cpuNs": 0}
        c.last_stats = cur
        return stats_mod.to_api(c.id, cur, prev, os.cpu_count())

    async def update(self, ref: str, resources: dict) -> Container:
        """`resources` is an OCI LinuxResources object (the HTTP layer
        translates the API's forms)."""
        c = self.get(ref)
        async with c.lock:
            states.check("update", c.record.status, c.id)
            await self.runtime(c.record.runtime).update(c.rid, resources)
            runspec.merge_resources(c.record.resources, resources)
            self.store.save(c.record)
            self.events.emit("update", c.id, resources=resources)
        return c

    async def rename(self, ref: str, name: str) -> Container:
        c = self.get(ref)
        async with c.lock:
            self._check_name_free(name, except_id=c.id)
            old = c.record.name
            c.record.name = name
            self.store.save(c.record)
            self.events.emit("rename", c.id, oldName=old, name=name)
        return c


    def _check_oom(self, c: Container) -> None:
        """Emit `oom` once per OOM kill the container's memory cgroup
        counted since the last look (called on every exit, while the cgroup
        still exists)."""
        if c.record.init is None:
            return
        kills = stats_mod.oom_kills(c.record.init.pid) if c.cgroups is None \
            else stats_mod.sample_memory_oom(c.cgroups)
        if kills > c.oom_seen:
            c.oom_seen = kills
            c.record.oom_killed = True
            self.events.emit("oom", c.id, pid=c.record.init.pid)


# -- helpers -----------------------------------------------------------------


def _started_ns(r: ContainerRecord) -> int:
    return parse_timestamp(r.started_at) if r.started_at else now_ns()


def _clear_shim_files(shim_dir: str) -> None:
    """Remove a previous run's files but keep the overlay and the logs (a
    restart reuses the container's writable layer and appends to its log,
    as `docker restart` does)."""
    for name in os.listdir(shim_dir):
        if name in ("overlay", "container.log", "container.log.1"):
            continue
        path = os.path.join(shim_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            _unlink(path)


async def _reap(pid: int | None) -> None:
    """Collect an exited shim: the daemon is their subreaper (when it
    started them; a shim from before a daemon restart belongs to init)."""
    if not pid:
        return
    for _ in range(100):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        await asyncio.sleep(0.05)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
