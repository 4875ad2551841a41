"""runtime.v1.RuntimeService: pod sandboxes and containers, translated into
supervisor calls (as api/containers.py does for HTTP)."""

import asyncio
import json
import os
import uuid

from .. import __version__, bundle as bundle_mod, validation
from .. import states
from ..errors import Conflict, InvalidArgument, NotFound, Unavailable
from ..events import now_ns, parse_timestamp
from ..states import Status
from ..supervisor import Supervisor
from . import restore as restore_mod, spec as spec_mod
from ._gen import api_pb2 as pb, api_pb2_grpc as pbg
from .containers import LABEL_KIND, LABEL_NAME, LABEL_SANDBOX, CRIContainer, CRIContainerStore
from .errors import DeadlineExceeded, mapped
from ..runtime.settings import ContainerSettings
from .images import CRIImages
from .restore import CheckpointRestore
from .sandbox import READY, Sandbox, SandboxStore, connect_in_netns

CRI_API_VERSION = "v1"
RUNTIME_NAME = "containerd-py"
# The kubelet caps ExecSync output at 16 MiB as well.
EXEC_SYNC_LIMIT = 16 * 1024 * 1024


def new_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def _ns(ts: str | None) -> int:
    return parse_timestamp(ts) if ts else 0


def states_check(sup: Supervisor, cid: str, op: str) -> None:
    """Refuse a streaming URL for a container that cannot serve it now."""
    states.check(op, sup.get(cid).record.status, cid)


def _matches(labels, selector) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@mapped
class RuntimeService(pbg.RuntimeServiceServicer):
    def __init__(self, sup: Supervisor, sandboxes: SandboxStore, containers: CRIContainerStore,
                 images: CRIImages, streaming=None):
        self.sup, self.sandboxes, self.containers, self.images = sup, sandboxes, containers, images
        self.streaming = streaming
        # Sandbox create/stop/remove and container create under one lock: a
        # container is never created into a sandbox that is being removed.
        self.lock = asyncio.Lock()
        self.restorer = CheckpointRestore(sup, images, containers)

    # -- runtime ---------------------------------------------------------------

    async def Version(self, request, context):
        return pb.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME,
                                  runtime_version=__version__,
                                  runtime_api_version=CRI_API_VERSION)

    async def Status(self, request, context):
        # The kubelet schedules no pod network on a node whose NetworkReady
        # is false: it is, when the default network's CNI plugins are there.
        missing = self.sup.networks.plugins_missing()
        network = pb.RuntimeCondition(type="NetworkReady", status=not missing)
        if missing:
            network.reason = "NetworkPluginNotReady"
            network.message = (f"CNI plugins {missing} not found in "
                               f"{self.sup.networks.cni.path}")
        conditions = [pb.RuntimeCondition(type="RuntimeReady", status=True), network]
        info = {}
        if request.verbose:
            info["config"] = json.dumps({"runtime": self.sup.default_runtime,
                                         "stateDir": self.sup.config.state_dir})
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions), info=info)

    async def UpdateRuntimeConfig(self, request, context):
        # The pod CIDR matters to a CNI config that uses it; ours do not yet.
        return pb.UpdateRuntimeConfigResponse()

    # -- sandboxes ---------------------------------------------------------------

    async def RunPodSandbox(self, request, context):
        cfg = request.config
        if not cfg.metadata.name:
            raise InvalidArgument("config.metadata.name is required", field="config.metadata")
        async with self.lock:
            sb = await self.sandboxes.create(new_id(), cfg, request.runtime_handler)
        return pb.RunPodSandboxResponse(pod_sandbox_id=sb.id)

    def _pod_containers(self, sb: Sandbox) -> list[CRIContainer]:
        return [c for c in self.containers.items.values() if c.sandbox_id == sb.id]

    async def StopPodSandbox(self, request, context):
        try:
            sb = self.sandboxes.get(request.pod_sandbox_id)
        except NotFound:
            return pb.StopPodSandboxResponse()  # the CRI: idempotent
        async with self.lock:
            for c in self._pod_containers(sb):
                await self._stop(c.id, 0)
            await self.sandboxes.stop(sb)
        return pb.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request, context):
        try:
            sb = self.sandboxes.get(request.pod_sandbox_id)
        except NotFound:
            return pb.RemovePodSandboxResponse()
        async with self.lock:
            for c in self._pod_containers(sb):
                await self._remove(c.id)
            await self.sandboxes.remove(sb)
        return pb.RemovePodSandboxResponse()

    def _sandbox_status(self, sb: Sandbox) -> pb.PodSandboxStatus:
        cfg = sb.config
        return pb.PodSandboxStatus(
            id=sb.id, metadata=cfg.metadata,
            state=pb.SANDBOX_READY if sb.state == READY else pb.SANDBOX_NOTREADY,
            created_at=sb.created_ns,
            network=pb.PodSandboxNetworkStatus(ip=self.sandboxes.ip(sb)),
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(
                options=cfg.linux.security_context.namespace_options)),
            labels=cfg.labels, annotations=cfg.annotations,
            runtime_handler=sb.runtime_handler)

    async def PodSandboxStatus(self, request, context):
        sb = self.sandboxes.get(request.pod_sandbox_id)
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"namespaces": {k: sb.ns_path(k) for k in
                                                      ("net", "ipc", "uts")},
                                       "network": self.sup.networks.netns_owner(sb.id),
                                       "pauseProcess": False})
        return pb.PodSandboxStatusResponse(status=self._sandbox_status(sb), info=info)

    async def ListPodSandbox(self, request, context):
        f = request.filter
        items = []
        for sb in sorted(self.sandboxes.sandboxes.values(), key=lambda s: s.created_ns):
            cfg = sb.config
            state = pb.SANDBOX_READY if sb.state == READY else pb.SANDBOX_NOTREADY
            if f.id and not sb.id.startswith(f.id):
                continue
            if f.HasField("state") and f.state.state != state:
                continue
            if not _matches(cfg.labels, f.label_selector):
                continue
            items.append(pb.PodSandbox(id=sb.id, metadata=cfg.metadata, state=state,
                                       created_at=sb.created_ns, labels=cfg.labels,
                                       annotations=cfg.annotations,
                                       runtime_handler=sb.runtime_handler))
        return pb.ListPodSandboxResponse(items=items)

    # -- containers ----------------------------------------------------------------

    async def CreateContainer(self, request, context):
        cfg, scfg = request.config, request.sandbox_config
        if not cfg.metadata.name:
            raise InvalidArgument("config.metadata.name is required", field="config.metadata")
        if not cfg.image.image:
            raise InvalidArgument("config.image.image is required", field="config.image")
        archive = restore_mod.archive_path(cfg.image.image)
        async with self.restorer.staged(archive) as staged, self.lock:
            sb = self.sandboxes.get(request.pod_sandbox_id)
            if sb.state != READY:
                raise Conflict(f"pod sandbox {sb.id!r} is not ready", id=sb.id,
                               status="notready")
            image = None if archive else self.images.status(cfg.image.image)
            cid = new_id()
            meta = sb.config.metadata
            name = (f"{cfg.metadata.name}_{meta.name}_{meta.namespace}_{meta.uid}_"
                    f"{cfg.metadata.attempt}")
            log_path = ""
            log_dir = scfg.log_directory or sb.config.log_directory
            if cfg.log_path and log_dir:
                log_path = os.path.join(log_dir, cfg.log_path)
            labels = {**cfg.labels, LABEL_KIND: "container", LABEL_SANDBOX: sb.id,
                      LABEL_NAME: cfg.metadata.name}
            try:
                if archive:
                    # Made from a checkpoint: its first start restores it.
                    made = await self.restorer.create(cid, staged, cfg, sb, name=name,
                                                      labels=labels)
                    c, image_id = made.container, made.image_id
                    cfg.image.image = made.image  # shown as the image it runs
                else:
                    c, image_id = await self._create_from_image(cid, cfg, sb, image, name,
                                                                labels), image.id
                if log_path:
                    os.makedirs(os.path.dirname(log_path), exist_ok=True)
                    os.makedirs(c.shim.dir, mode=0o700, exist_ok=True)
                    # The shim writes its CRI-format log through this link,
                    # so the file is where the caller looks for it.
                    os.symlink(log_path, c.shim.log_path)
                self.containers.save(CRIContainer(
                    id=cid, sandbox_id=sb.id, config_b64=CRIContainerStore.encode(cfg),
                    image_ref=cfg.image.image, image_id=image_id, created_ns=now_ns(),
                    log_path=log_path, restored_from=archive or ""))
            except BaseException:
                if cid in self.sup.containers:
                    await self.sup.delete(cid, force=True)
                self.containers.remove(cid)
                raise
        return pb.CreateContainerResponse(container_id=cid)

    async def _create_from_image(self, cid, cfg, sb, image, name, labels):
        spec = spec_mod.build(cid, cfg, sb, image, self.images.etc_root(image))
        bundle = self.containers.write_bundle(cid, spec)
        ro = spec["root"]["readonly"]
        return await self.sup.create(
            cid, bundle, name=name, labels=labels, image=image.id, start=False,
            settings=ContainerSettings(readonly_rootfs=True if ro else None))

    def _get(self, ref: str) -> CRIContainer:
        c = self.containers.items.get(ref)
        if c is None:
            hits = [x for x in self.containers.items.values() if x.id.startswith(ref)] \
                if ref else []
            if len(hits) != 1:
                raise NotFound(f"no such container: {ref!r}", id=ref)
            c = hits[0]
        return c

    async def StartContainer(self, request, context):
        c = self._get(request.container_id)
        record = self.sup.get(c.id).record
        if record.started_at is not None:
            raise Conflict(f"container {c.id!r} was started before: the CRI starts a "
                           f"container once", id=c.id, status=record.status.value)
        # One made from a checkpoint archive is restored, not started cold.
        await self.sup.start(c.id, checkpoint=record.checkpoint)
        return pb.StartContainerResponse()

    async def _stop(self, cid: str, timeout: float) -> None:
        try:
            record = self.sup.get(cid).record
        except NotFound:
            return
        if record.status == Status.STOPPED:
            return
        try:
            await self.sup.stop(cid, timeout=timeout)
        except Conflict:
            # It exited while we asked: stopped is what was wanted.
            if self.sup.get(cid).record.status != Status.STOPPED:
                raise

    async def StopContainer(self, request, context):
        c = self._get(request.container_id)
        await self._stop(c.id, max(request.timeout, 0))
        return pb.StopContainerResponse()

    async def _remove(self, cid: str) -> None:
        try:
            await self.sup.delete(cid, force=True)
        except NotFound:
            pass
        self.containers.remove(cid)

    async def RemoveContainer(self, request, context):
        try:
            c = self._get(request.container_id)
        except NotFound:
            return pb.RemoveContainerResponse()
        await self._remove(c.id)
        return pb.RemoveContainerResponse()

    def _state(self, record) -> int:
        if record.status in (Status.RUNNING, Status.PAUSED):
            return pb.CONTAINER_RUNNING
        return pb.CONTAINER_EXITED if record.started_at else pb.CONTAINER_CREATED

    def _records(self):
        for c in list(self.containers.items.values()):
            try:
                yield c, self.sup.get(c.id).record
            except NotFound:
                continue  # removed through the REST API meanwhile

    async def ListContainers(self, request, context):
        f = request.filter
        out = []
        for c, r in self._records():
            cfg = c.config
            state = self._state(r)
            if f.id and not c.id.startswith(f.id):
                continue
            if f.pod_sandbox_id and not c.sandbox_id.startswith(f.pod_sandbox_id):
                continue
            if f.HasField("state") and f.state.state != state:
                continue
            if not _matches(cfg.labels, f.label_selector):
                continue
            out.append(pb.Container(id=c.id, pod_sandbox_id=c.sandbox_id, metadata=cfg.metadata,
                                    image=cfg.image, image_ref=c.image_id, state=state,
                                    created_at=c.created_ns, labels=cfg.labels,
                                    annotations=cfg.annotations))
        out.sort(key=lambda x: x.created_at)
        return pb.ListContainersResponse(containers=out)

    async def ContainerStatus(self, request, context):
        c = self._get(request.container_id)
        r = self.sup.get(c.id).record
        cfg = c.config
        state = self._state(r)
        reason = message = ""
        if state == pb.CONTAINER_EXITED:
            reason = "OOMKilled" if r.oom_killed else (
                "Completed" if r.exit_status == 0 else "Error")
        status = pb.ContainerStatus(
            id=c.id, metadata=cfg.metadata, state=state, created_at=c.created_ns,
            started_at=_ns(r.started_at), finished_at=_ns(r.exited_at) if state ==
            pb.CONTAINER_EXITED else 0,
            exit_code=r.exit_status or 0 if state == pb.CONTAINER_EXITED else 0,
            image=cfg.image, image_ref=c.image_id, reason=reason, message=message,
            labels=cfg.labels, annotations=cfg.annotations, mounts=cfg.mounts,
            log_path=c.log_path,
            resources=pb.ContainerResources(linux=self._current_resources(c)))
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"pid": r.init.pid if r.init and state ==
                                       pb.CONTAINER_RUNNING else 0,
                                       "sandboxID": c.sandbox_id,
                                       "bundle": r.bundle_path,
                                       "restoredFrom": c.restored_from or None,
                                       "runtime": r.runtime})
        return pb.ContainerStatusResponse(status=status, info=info)

    def _current_resources(self, c: CRIContainer) -> pb.LinuxContainerResources:
        res = pb.LinuxContainerResources()
        res.CopyFrom(c.config.linux.resources)
        return res

    async def UpdateContainerResources(self, request, context):
        c = self._get(request.container_id)
        resources = spec_mod.oci_resources(request.linux)
        r = self.sup.get(c.id).record
        if r.status == Status.STOPPED:
            # Not running yet: the spec it will start with gets them.
            path = os.path.join(r.bundle_path, "config.json")
            spec = bundle_mod.read_config(r.bundle_path)
            spec.setdefault("linux", {}).setdefault("resources", {}).update(resources)
            with open(path, "w") as f:
                json.dump(spec, f)
        elif resources:
            await self.sup.update(c.id, resources)
        cfg = c.config
        cfg.linux.resources.MergeFrom(request.linux)
        c.config_b64 = CRIContainerStore.encode(cfg)
        self.containers.save(c)
        return pb.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(self, request, context):
        c = self._get(request.container_id)
        await self.sup.reopen_log(c.id)
        return pb.ReopenContainerLogResponse()

    async def ExecSync(self, request, context):
        c = self._get(request.container_id)
        if not request.cmd:
            raise InvalidArgument("cmd is required", field="cmd")
        process = self._exec_process(c.id, list(request.cmd), tty=False)
        timeout = request.timeout if request.timeout > 0 else None
        result = await self.sup.exec_sync(c.id, process, timeout, EXEC_SYNC_LIMIT)
        if result["timedOut"]:
            raise DeadlineExceeded(f"command {list(request.cmd)} timed out after "
                                   f"{request.timeout}s", id=c.id)
        return pb.ExecSyncResponse(stdout=result["stdout"].encode(),
                                   stderr=result["stderr"].encode(),
                                   exit_code=result["exitStatus"])

    def _exec_process(self, cid: str, cmd: list[str], tty: bool) -> dict:
        """An exec'd process runs as the container's init does: same user,
        cwd, environment and capabilities."""
        defaults = self.sup.process_defaults(cid)
        body = {"args": cmd, "terminal": tty, "cwd": defaults.get("cwd", "/")}
        if "user" in defaults:
            body["user"] = defaults["user"]
        return validation.check_process(body, defaults)

    # -- streaming ---------------------------------------------------------------

    def _streaming(self):
        if self.streaming is None:
            raise Unavailable("the streaming server is not running")
        return self.streaming

    async def Exec(self, request, context):
        c = self._get(request.container_id)
        if not request.cmd:
            raise InvalidArgument("cmd is required", field="cmd")
        if not (request.stdin or request.stdout or request.stderr):
            raise InvalidArgument("one of stdin, stdout, stderr must be true", field="stdin")
        states_check(self.sup, c.id, "exec")
        url = self._streaming().url("exec", {
            "container_id": c.id, "cmd": list(request.cmd), "tty": request.tty,
            "stdin": request.stdin, "stdout": request.stdout, "stderr": request.stderr})
        return pb.ExecResponse(url=url)

    async def Attach(self, request, context):
        c = self._get(request.container_id)
        if not (request.stdin or request.stdout or request.stderr):
            raise InvalidArgument("one of stdin, stdout, stderr must be true", field="stdin")
        states_check(self.sup, c.id, "attach")
        cfg = c.config
        url = self._streaming().url("attach", {
            "container_id": c.id, "tty": cfg.tty, "stdin": request.stdin and cfg.stdin,
            "stdout": request.stdout, "stderr": request.stderr,
            "stdin_once": cfg.stdin_once})
        return pb.AttachResponse(url=url)

    async def PortForward(self, request, context):
        sb = self.sandboxes.get(request.pod_sandbox_id)
        netns = sb.ns_path("net")

        async def connect(port):
            loop = asyncio.get_running_loop()
            sock = await loop.run_in_executor(None, connect_in_netns, netns, port)
            return await asyncio.open_connection(sock=sock)

        url = self._streaming().url("portforward", {"sandbox_id": sb.id, "connect": connect})
        return pb.PortForwardResponse(url=url)

    # -- checkpoint -----------------------------------------------------------------

    async def CheckpointContainer(self, request, context):
        """KEP-2008, as the kubelet's checkpoint API asks: a checkpoint of
        the running container (it keeps running) written as one archive at
        `location` (the CRIU images, the spec, the container's settings and
        its own filesystem changes: the daemon's checkpoint export)."""
        c = self._get(request.container_id)
        location = request.location
        if not location or not os.path.isabs(location):
            raise InvalidArgument("location must be an absolute path of the archive to write",
                                  field="location")
        if not os.path.isdir(os.path.dirname(location)):
            raise InvalidArgument(f"the directory of {location!r} does not exist",
                                  field="location")
        name = "cri-" + uuid.uuid4().hex[:12]
        checkpoints = self.sup.checkpointing
        dump = checkpoints.checkpoint(c.id, name)
        if request.timeout > 0:
            try:
                await asyncio.wait_for(dump, request.timeout)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"checkpoint of {c.id!r} took longer than "
                                       f"{request.timeout}s", id=c.id) from None
        else:
            await dump
        tmp = f"{location}.{name}.tmp"
        try:
            plan = checkpoints.export_plan(c.id, name)
            plan.add_json(restore_mod.CRI_MEMBER, restore_mod.cri_member(c))
            with open(tmp, "wb") as f:
                async def write(data):
                    f.write(data)
                await plan.send(write)
            os.replace(tmp, location)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            checkpoints.delete(c.id, name)
        return pb.CheckpointContainerResponse()

    # -- stats ---------------------------------------------------------------------

    def _stats(self, c: CRIContainer, r) -> pb.ContainerStats:
        cfg = c.config
        attrs = pb.ContainerAttributes(id=c.id, metadata=cfg.metadata, labels=cfg.labels,
                                       annotations=cfg.annotations)
        out = pb.ContainerStats(attributes=attrs)
        if r.status == Status.STOPPED:
            return out
        try:
            s = self.sup.stats(c.id)
        except Conflict:
            return out
        ts = s["read"]
        out.cpu.timestamp = ts
        if s["cpu"]["totalNs"] is not None:
            out.cpu.usage_core_nano_seconds.value = s["cpu"]["totalNs"]
        # percent of one core -> nanocores
        out.cpu.usage_nano_cores.value = int(s["cpu"]["percent"] * 1e7)
        out.memory.timestamp = ts
        if s["memory"]["usage"] is not None:
            out.memory.working_set_bytes.value = s["memory"]["usage"]
            out.memory.usage_bytes.value = s["memory"]["usage"]
        out.writable_layer.timestamp = ts
        out.writable_layer.fs_id.mountpoint = r.bundle_path
        out.writable_layer.used_bytes.value = 0
        return out

    async def ContainerStats(self, request, context):
        c = self._get(request.container_id)
        return pb.ContainerStatsResponse(stats=self._stats(c, self.sup.get(c.id).record))

    async def ListContainerStats(self, request, context):
        f = request.filter
        out = []
        for c, r in self._records():
            if f.id and not c.id.startswith(f.id):
                continue
            if f.pod_sandbox_id and not c.sandbox_id.startswith(f.pod_sandbox_id):
                continue
            if not _matches(c.config.labels, f.label_selector):
                continue
            out.append(self._stats(c, r))
        return pb.ListContainerStatsResponse(stats=out)

    # -- pod stats: the sum of its containers' -------------------------------------

    def _pod_stats(self, sb: Sandbox) -> pb.PodSandboxStats:
        cfg = sb.config
        out = pb.PodSandboxStats(attributes=pb.PodSandboxAttributes(
            id=sb.id, metadata=cfg.metadata, labels=cfg.labels, annotations=cfg.annotations))
        linux = out.linux
        now = now_ns()
        linux.cpu.timestamp = linux.memory.timestamp = linux.process.timestamp = now
        cpu = nano = mem = procs = 0
        for c in self._pod_containers(sb):
            try:
                r = self.sup.get(c.id).record
            except NotFound:
                continue
            st = self._stats(c, r)
            linux.containers.append(st)
            cpu += st.cpu.usage_core_nano_seconds.value
            nano += st.cpu.usage_nano_cores.value
            mem += st.memory.working_set_bytes.value
            procs += len(r.processes())
        linux.cpu.usage_core_nano_seconds.value = cpu
        linux.cpu.usage_nano_cores.value = nano
        linux.memory.working_set_bytes.value = mem
        linux.process.process_count.value = procs
        return out

    async def PodSandboxStats(self, request, context):
        sb = self.sandboxes.get(request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=self._pod_stats(sb))

    async def ListPodSandboxStats(self, request, context):
        f = request.filter
        out = [self._pod_stats(sb) for sb in self.sandboxes.sandboxes.values()
               if (not f.id or sb.id.startswith(f.id))
               and _matches(sb.config.labels, f.label_selector)]
        return pb.ListPodSandboxStatsResponse(stats=out)
