"""Warm pools: containers made ahead of demand, so that a claim starts one
in milliseconds instead of paying for the runtime's create (or a restore).

A pool keeps `size` members ready. A member of a bundle pool has had the
runtime's `create` under its own shim: namespaces, mounts and cgroup are
set up and its init waits on the runtime's exec fifo. A member of a
checkpoint pool has been restored (on an overlay of its own, so members
share nothing writable) and is kept frozen in the cgroup freezer. A claim
takes one, starts it (opens the fifo, or thaws the cgroup) and hands it to
the supervisor as container `{id}` with its own record, events and shim;
the runtime keeps knowing it by the member's id (`runtimeId`), which runc
fixed at create. The pool refills in the background.

Members are real containers whose records live under the pool's own dir
(`<data>/pools/<name>/members/`), never among the user's containers: after
a daemon restart the live ones are members again and the dead ones are
removed, runtime state, overlay and shim dir with them.
"""

import asyncio
import dataclasses
import json
import logging
import os
import select
import shutil
import uuid

from . import bundle as bundle_mod, failpoints, timing
from .errors import Conflict, InvalidArgument, NotFound, RuntimeFailure
from .events import now_ns, rfc3339
from .shim import Shim, pid_alive
from .states import Status
from .store import ContainerRecord, ContainerStore

log = logging.getLogger("containerd_py.pools")

MAX_SIZE = 64
# A member that fails to start: wait before the next try, doubling up to this.
RETRY_MAX_S = 30.0
FIFO_TIMEOUT_S = 5.0


@dataclasses.dataclass
class PoolSpec:
    name: str
    bundle_path: str
    size: int
    runtime: str
    checkpoint: str | None = None
    created: str = ""
    image: str | None = None    # a ref of the image store instead of a bundle

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class Pool:
    def __init__(self, spec: PoolSpec, store: ContainerStore):
        self.spec = spec
        self.store = store          # the members' records
        self.idle: list = []        # Containers ready to be claimed
        self.current: asyncio.Task | None = None   # the member being made
        self.refill: asyncio.Task | None = None
        self.wake = asyncio.Event()
        self.closing = False
        self.last_error: str | None = None
        self.claimed = 0
        self.fallbacks = 0
        # The runtime's `start` runs poststart hooks, which opening the exec
        # fifo ourselves would skip: a bundle with hooks is started by it.
        self.start_hooks = False
        # Pidfds of each idle member's shim and init, by runtime id: the
        # claim's liveness check is one poll (~5 us), not two reads of
        # /proc/PID/stat (~80 us each), and no pid can be reused under it.
        self.pidfds: dict[str, tuple[int, ...]] = {}

    def add_idle(self, m) -> None:
        fds: list[int] = []
        try:
            for pid in (m.record.shim_pid, m.record.init.pid):
                fds.append(os.pidfd_open(pid))
        except (OSError, TypeError):  # gone already: take_idle's check says so
            _close_all(fds)
            fds = []
        if fds:
            self.pidfds[m.id] = tuple(fds)
        self.idle.append(m)

    def take_idle(self):
        """(the oldest idle member, whether its shim and init still run)."""
        m = self.idle.pop(0)
        fds = self.pidfds.pop(m.id, None)
        if fds is None:
            return m, pid_alive(m.record.shim_pid) and pid_alive(m.record.init.pid)
        try:
            # A pidfd is readable once its process has exited (a zombie too).
            p = select.poll()
            for fd in fds:
                p.register(fd, select.POLLIN)
            return m, not p.poll(0)
        finally:
            _close_all(fds)

    def take_all_idle(self) -> list:
        members, self.idle = self.idle, []
        _close_all([fd for fds in self.pidfds.values() for fd in fds])
        self.pidfds = {}
        return members

    def to_api(self) -> dict:
        s = self.spec
        obj = {"name": s.name, "size": s.size,
               "runtime": s.runtime, "ready": len(self.idle),
               "starting": int(self.current is not None and not self.current.done()),
               "claimed": self.claimed, "fallbacks": self.fallbacks, "created": s.created}
        if s.image:
            obj["image"] = s.image
        else:
            obj["bundlePath"] = s.bundle_path
        if s.checkpoint:
            obj["checkpoint"] = s.checkpoint
        if self.last_error:
            obj["lastError"] = self.last_error
        return obj


class WarmPools:
    """The supervisor's pools. Uses the supervisor's own launch, start
    bookkeeping and teardown, so a claimed member is an ordinary container."""

    def __init__(self, sup):
        self.sup = sup
        self.dir = os.path.join(sup.config.data_dir, "pools")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.pools: dict[str, Pool] = {}

    # -- definitions ----------------------------------------------------------

    def _pool_dir(self, name: str) -> str:
        return os.path.join(self.dir, name)

    async def define(self, name: str, bundle: str | None, size: int, *,
                     checkpoint: str | None = None, runtime: str | None = None,
                     image: str | None = None) -> Pool:
        if name in self.pools:
            raise Conflict(f"pool {name!r} already exists", pool=name)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
            raise InvalidArgument(f"size must be an integer from 0 to {MAX_SIZE}", field="size")
        rt = self.sup.runtime(runtime or self.sup.default_runtime)
        # 404 / 400 now, not in the refill.
        source = _source(self.sup, bundle, image)
        bundle_mod.read_config(source[0])
        if checkpoint is not None:
            self.sup.checkpointing.criu()
            from .checkpoint.store import CheckpointStore
            CheckpointStore(source[0]).require(checkpoint)
        spec = PoolSpec(name=name, bundle_path=bundle or "", size=size, runtime=rt.name,
                        checkpoint=checkpoint, created=rfc3339(now_ns()), image=image)
        d = self._pool_dir(name)
        pool = Pool(spec, ContainerStore(os.path.join(d, "members")))
        _write_json(os.path.join(d, "pool.json"), spec.to_json())
        self.pools[name] = pool
        self._start_refill(pool)
        self.sup.events.emit("create-pool", name, size=size)
        return pool

    def member_ids(self) -> set[str]:
        """Runtime ids of every member on disk (before or after recovery)."""
        ids = set()
        for name in os.listdir(self.dir):
            d = os.path.join(self.dir, name, "members")
            if os.path.isdir(d):
                ids |= {f[:-5] for f in os.listdir(d) if f.endswith(".json")}
        return ids

    def get(self, name: str) -> Pool:
        pool = self.pools.get(name)
        if pool is None:
            raise NotFound(f"no such pool: {name!r}", pool=name)
        return pool

    def list(self) -> list[Pool]:
        return [self.pools[n] for n in sorted(self.pools)]

    async def remove(self, name: str) -> None:
        """Stop refilling and remove the idle members; claimed containers
        are the user's and stay."""
        pool = self.get(name)
        del self.pools[name]
        members = await self._stop_refill(pool)
        members = pool.take_all_idle() + members
        await asyncio.gather(*(self._discard(pool, m) for m in members))
        shutil.rmtree(self._pool_dir(name), ignore_errors=True)
        self.sup.events.emit("delete-pool", name)

    # -- recovery and shutdown --------------------------------------------------

    async def recover(self) -> None:
        from .supervisor import Container
        claimed = {c.record.runtime_id for c in self.sup.containers.values()
                   if c.record.runtime_id}
        for name in sorted(os.listdir(self.dir)):
            d = self._pool_dir(name)
            try:
                with open(os.path.join(d, "pool.json")) as f:
                    spec = PoolSpec(**json.load(f))
            except (OSError, ValueError, TypeError):
                log.warning("pool dir %s has no readable pool.json: its members are removed", d)
                spec = None
            store = ContainerStore(os.path.join(d, "members"))
            pool = Pool(spec or PoolSpec(name, "", 0, self.sup.default_runtime), store)
            dead = []
            for record in store.load_all():
                if record.id in claimed:
                    # Claimed just before the previous daemon died: the
                    # user's record is written first, so it is the user's.
                    store.remove(record.id)
                    continue
                m = Container(record, Shim(self.sup.config.shim_dir(record.id)))
                if spec and record.init and record.init.pid and m.shim.alive() \
                        and pid_alive(record.init.pid):
                    pool.add_idle(m)
                else:
                    dead.append(m)
            await asyncio.gather(*(self._discard(pool, m) for m in dead))
            if spec is None:
                shutil.rmtree(d, ignore_errors=True)
                continue
            self.pools[name] = pool
            try:
                pool.start_hooks = _has_start_hooks(_source(self.sup, spec.bundle_path,
                                                            spec.image)[0])
            except Exception:  # noqa: BLE001 - the refill will say what is wrong
                pool.start_hooks = True
            log.info("pool %s: %d members ready, %d dead removed", name, len(pool.idle),
                     len(dead))
            self._start_refill(pool)

    async def close(self) -> None:
        """Stop refilling; the members keep running for the next daemon."""
        await asyncio.gather(*(self._stop_refill(p) for p in self.pools.values()))

    # -- claiming -----------------------------------------------------------------

    async def claim(self, cid: str, name: str, *, container_name: str | None = None,
                    labels: dict | None = None):
        """Container `cid` from pool `name`: a ready member started, or (the
        pool is empty) a normal start of the pool's bundle or checkpoint."""
        sup = self.sup
        pool = self.get(name)
        container_name = container_name or cid
        if cid in sup.containers:
            raise Conflict(f"container id {cid!r} is already in use", id=cid)
        sup._check_name_free(container_name)
        try:
            return await self._claim(pool, cid, container_name, labels)
        finally:
            self._refill_after_response(pool)

    async def _claim(self, pool: Pool, cid: str, container_name: str, labels: dict | None):
        from .supervisor import Container
        sup, name = self.sup, pool.spec.name
        member = self._take(pool)
        timing.mark("take")
        if member is None:
            pool.fallbacks += 1
            # networks=[]: what a member has (loopback only; a CNI ADD per
            # claim would cost more than the pool saves), so that a claim
            # gives the same container whether the pool had one ready or not.
            c = await sup.create(cid, pool.spec.bundle_path or None, name=container_name,
                                 labels=labels, runtime=pool.spec.runtime,
                                 checkpoint=pool.spec.checkpoint, image=pool.spec.image,
                                 networks=[])
            c.record.pool = name
            sup.store.save(c.record)
            return c
        r = member.record
        r.runtime_id, r.id, r.name = r.id, cid, container_name
        r.labels, r.pool, r.created = labels or {}, name, rfc3339(now_ns())
        c = Container(r, member.shim)
        c.cgroups = member.cgroups
        sup.containers[cid] = c
        async with c.lock:
            try:
                await self._start_member(pool, c)
                timing.mark("start")
            except BaseException as e:
                sup.containers.pop(cid, None)
                await sup._teardown(c)
                pool.store.remove(r.runtime_id)
                if not isinstance(e, _MemberGone):
                    raise
                gone = e
            else:
                gone = None
                # The user's record first: a crash between the two leaves a
                # member record that recovery recognises as claimed. So the
                # member's record can go after the answer (an unlink is a
                # journal update of ext4, ~0.3 ms).
                sup._mark_running(c, r.init.pid)
                asyncio.get_running_loop().call_soon(_forget_member, pool, r.runtime_id)
        if gone is not None:
            # Died as it was taken (its liveness was checked just before):
            # the next member, or a normal start.
            log.warning("pool %s: member %s: %s", name, r.runtime_id, gone.message)
            return await self._claim(pool, cid, container_name, labels)
        pool.claimed += 1
        return c

    def _take(self, pool: Pool):
        """A live idle member, or None; dead ones go (in the background).
        The caller wakes the refill (_refill_after_response)."""
        while pool.idle:
            m, alive = pool.take_idle()
            if alive:
                return m
            asyncio.create_task(self._discard(pool, m))
        return None

    @staticmethod
    def _refill_after_response(pool: Pool) -> None:
        """Wake the refill once the claim's answer is out. Woken at once, it
        would run at the claim's first await: its spec write and shim spawn
        then hold the event loop, and the runtime's create the CPUs, while the claimed member's fifo is waited for, which costs the
        claim ~2 ms of its ~4 ms. Scheduled with call_soon from the claim's
        last synchronous step, it runs at the loop's next turn, after the
        handler has returned and aiohttp has written the 201 (which does
        not yield to the loop when the socket takes it at once): a burst of
        claims still refills as soon as each is answered."""
        asyncio.get_running_loop().call_soon(pool.wake.set)

    async def _start_member(self, pool: Pool, c) -> None:
        rt = self.sup.runtime(c.record.runtime)
        if c.record.checkpoint:
            if c.cgroups is None:  # recovered after a daemon restart
                from . import stats as stats_mod
                c.cgroups = stats_mod.cgroup_paths(c.record.init.pid)
            if not _thaw(c.cgroups):
                await rt.resume(c.rid)
            return
        fifo = rt.exec_fifo(c.rid)
        if os.path.exists(fifo) and not pool.start_hooks:
            await _open_exec_fifo(fifo, c.record.init.pid)
        else:
            await rt.start(c.rid)

    # -- filling ------------------------------------------------------------------

    def _start_refill(self, pool: Pool) -> None:
        pool.refill = asyncio.create_task(self._refill(pool))

    async def _stop_refill(self, pool: Pool) -> list:
        """Stop the refill; returns the member it was making, if that
        succeeded (its record is saved: it stays unless the caller
        discards it)."""
        pool.closing = True
        current = pool.current
        if pool.refill:
            pool.refill.cancel()
            await asyncio.gather(pool.refill, return_exceptions=True)
        # Never cancelled half-way: a member cut off in its runtime command
        # could outlive its record.
        if current is None:
            return []
        done = await asyncio.gather(current, return_exceptions=True)
        return [m for m in done if not isinstance(m, BaseException)]

    async def _refill(self, pool: Pool) -> None:
        delay = 0.5
        while not pool.closing:
            if len(pool.idle) >= pool.spec.size:
                pool.wake.clear()
                await pool.wake.wait()
                continue
            pool.current = asyncio.create_task(self._make_member(pool))
            try:
                # Cancelled (pool deleted, daemon stopping): the member is
                # finished by _stop_refill, which awaits it.
                member = await asyncio.shield(pool.current)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - said in GET /pools, retried
                pool.current = None
                msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                pool.last_error = msg
                log.warning("pool %s: a member failed to start: %s", pool.spec.name, msg)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            pool.current = None
            delay = 0.5
            pool.last_error = None
            pool.add_idle(member)

    async def _make_member(self, pool: Pool):
        from .supervisor import Container
        from . import stats as stats_mod
        sup, s = self.sup, pool.spec
        rid = f"pool+{s.name[:40]}+{uuid.uuid4().hex[:10]}"
        bundle, img = _source(sup, s.bundle_path, s.image)
        spec = bundle_mod.read_config(bundle)
        pool.start_hooks = _spec_has_start_hooks(spec)
        # The settings a create of the same bundle, image or checkpoint
        # would have (Supervisor.create).
        from .runtime import spec as runspec
        from .runtime.settings import ContainerSettings
        settings = ContainerSettings()
        if s.checkpoint:
            from .checkpoint.store import CheckpointStore
            settings = ContainerSettings.from_json(
                CheckpointStore(bundle).meta(s.checkpoint).settings)
        if img is not None:
            settings = runspec.over(runspec.image_settings(img.image_config), settings)
        record = ContainerRecord(
            id=rid, name=rid, bundle_path=bundle, runtime=s.runtime,
            created=rfc3339(now_ns()), checkpoint=s.checkpoint,
            overlay=s.checkpoint is not None, pool=s.name, settings=settings.to_json(),
            image={"ref": s.image, "id": img.id} if img is not None else None)
        record.init = bundle_mod.process_record(spec.get("process", {}), 0)
        m = Container(record, Shim(sup.config.shim_dir(rid)))
        # Recorded before anything exists, so that a crash from here on
        # leaves a record the next daemon cleans up from.
        pool.store.save(record)
        try:
            await sup._launch(m, spec, prestart=True)
            m.cgroups = stats_mod.cgroup_paths(record.init.pid)
            if s.checkpoint:
                # Restored and running: frozen until claimed.
                await sup.runtime(s.runtime).pause(rid)
        except BaseException:
            await self._discard(pool, m)
            raise
        record.status = Status.STOPPED
        pool.store.save(record)
        return m

    async def _discard(self, pool: Pool, m) -> None:
        try:
            await self.sup._teardown(m)
        except (RuntimeFailure, OSError) as e:
            log.warning("pool %s: removing member %s: %s", pool.spec.name, m.id, e)
        if m.record.shim_pid:
            from .supervisor.core import _reap
            asyncio.create_task(_reap(m.record.shim_pid))
        pool.store.remove(m.id)


# -- helpers ---------------------------------------------------------------------

def _close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


def _forget_member(pool: Pool, rid: str) -> None:
    failpoints.hit("pool-claim-answered")
    pool.store.remove(rid)


def _source(sup, bundle: str | None, image: str | None):
    """(bundle dir, image or None) a pool's members are made from."""
    if image:
        from .images import spec as image_spec
        img = sup.images.resolve(image)
        return image_spec.bundle(sup.images, img), img
    return bundle, None


def _write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _has_start_hooks(bundle: str) -> bool:
    try:
        return _spec_has_start_hooks(bundle_mod.read_config(bundle))
    except Exception:  # noqa: BLE001 - unreadable: let the runtime start it
        return True


def _spec_has_start_hooks(spec: dict) -> bool:
    hooks = spec.get("hooks") or {}
    return bool(hooks.get("poststart") or hooks.get("startContainer"))


class _MemberGone(RuntimeFailure):
    """The member's init exited before it was released."""


async def _open_exec_fifo(fifo: str, init_pid: int) -> None:
    """What `runc start` does, without starting a Go binary (~10 ms): open
    the exec fifo for reading, which lets the waiting init go on; its one
    byte and then EOF (its end is close-on-exec) mean it has exec'd the
    container's process. Then remove the fifo, which is how the runtime
    tells `created` from `running`.

    Opened non-blocking and watched by the event loop, not a thread: a
    FIFO's reader is woken only by data or by a writer that came and went
    (Linux pipe_poll), so an init that has not opened its end yet is simply
    waited for. The init's pidfd is watched too: an init that dies
    instead (killed as it was claimed) is not waited for."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(init_pid)
    except OSError:
        raise _MemberGone(f"container init {init_pid} is gone") from None
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        os.close(pidfd)
        raise
    data = bytearray()
    done = loop.create_future()

    def readable():
        try:
            while chunk := os.read(fd, 64):
                data.extend(chunk)
        except BlockingIOError:
            return  # the init is still between its write and its exec
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        if not done.done():
            done.set_result(None)

    def init_exited():
        # Released (its byte is there) and then exited: started, as the
        # runtime's `start` would say; else it died waiting.
        try:
            while chunk := os.read(fd, 64):
                data.extend(chunk)
        except OSError:
            pass
        if not done.done():
            if data:
                done.set_result(None)
            else:
                done.set_exception(_MemberGone(f"container init {init_pid} exited "
                                               "before it was started"))

    loop.add_reader(fd, readable)
    loop.add_reader(pidfd, init_exited)
    try:
        await asyncio.wait_for(done, FIFO_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise RuntimeFailure(f"container init did not start within {FIFO_TIMEOUT_S}s") from None
    finally:
        loop.remove_reader(fd)
        loop.remove_reader(pidfd)
        os.close(fd)
        os.close(pidfd)
    if not data:
        raise _MemberGone(f"container init closed {fifo} without starting")
    os.unlink(fifo)


def _thaw(cgroups: dict | None) -> bool:
    """Thaw the container's cgroup by writing the freezer directly (the
    runtime's `resume` is a Go binary start); False if not possible here."""
    if not cgroups:
        return False
    try:
        if "freezer" in cgroups:
            with open(os.path.join(cgroups["freezer"], "freezer.state"), "w") as f:
                f.write("THAWED")
            return True
        if "" in cgroups and os.path.exists(os.path.join(cgroups[""], "cgroup.freeze")):
            with open(os.path.join(cgroups[""], "cgroup.freeze"), "w") as f:
                f.write("0")
            return True
    except OSError as e:
        log.warning("thaw %s: %s", cgroups, e)
    return False
