"""Pod sandboxes: the CRI's notion of a pod, kept by the CRI front door.

No pause process. A sandbox is its namespaces, pinned by bind mounts under
the daemon's run dir (as `ip netns add` does, and as CRI-O's drop-infra mode
pins them with `pinns`): IPC and UTS (with the pod's hostname), plus the
pod's /etc/resolv.conf, /etc/hostname and /etc/hosts. The network namespace
is the network package's (NetworkService.create_netns): lo, and eth0 on the
daemon's default network through CNI with the pod's port_mappings, kept as
an owner of its own there so that a daemon restart neither loses nor
collects it; StopPodSandbox gives it back (CNI DEL: the veth, the lease and
the DNAT rules go). A host-network pod has none of this. Each container
joins the pod's namespaces through its spec's namespace paths. Why none:
a pause process costs a shim, a runtime start and a cgroup per pod and
does nothing a bind mount cannot do for these three namespaces; the state
survives a daemon restart the same way (the mounts stay). A pod-wide PID
namespace (NamespaceMode POD for pid, `shareProcessNamespace`) does need a
process to be its PID 1: a PID namespace dies with its init and cannot be
entered once it is gone. For such a pod (only) the sandbox starts one, as
CRI-O keeps its infra container for exactly this case: `unshare --pid
--fork` with a busybox shell as the namespace's init, which sleeps and
reaps the orphans reparented to it, and every container of the pod joins
its PID namespace.
"""

import base64
import ctypes
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from ..errors import Conflict, InvalidArgument, NotFound, RuntimeFailure
from ..events import now_ns
from ..network import check_ports
from ..network.etcfiles import resolv_conf
from ._gen import api_pb2 as pb

log = logging.getLogger("containerd_py.cri")

MNT_DETACH = 2
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

READY, NOTREADY = "ready", "notready"
PINNED = ("net", "ipc", "uts")
OWNER_KIND = "pod"  # the network service's word for a sandbox's netns
PROTOCOLS = {pb.TCP: "tcp", pb.UDP: "udp"}


@dataclasses.dataclass
class Sandbox:
    id: str
    config_b64: str  # the PodSandboxConfig as sent, serialised
    created_ns: int
    state: str = READY
    runtime_handler: str = ""
    dir: str = ""  # namespaces and the pod's /etc files
    # The init of the pod's PID namespace (pid = POD only), and its start
    # time, so that a reused pid is never taken for it.
    pid_holder: int = 0
    pid_holder_start: int = 0
    # The network service's namespace of the pod (empty: the host's, or a
    # record of a daemon that pinned a loopback-only one under dir).
    netns: str = ""

    @property
    def config(self) -> pb.PodSandboxConfig:
        cfg = pb.PodSandboxConfig()
        cfg.ParseFromString(base64.b64decode(self.config_b64))
        return cfg

    def ns_path(self, kind: str) -> str | None:
        """The pinned namespace a container joins; None means the host's."""
        if kind == "pid":
            if not self.pid_holder:
                return None
            if not _same_process(self.pid_holder, self.pid_holder_start):
                raise Conflict(f"the PID namespace of pod {self.id!r} is gone (its init "
                               f"{self.pid_holder} exited)", id=self.id, status="notready")
            return f"/proc/{self.pid_holder}/ns/pid"
        if kind == "net" and self.host_network:
            return None
        if kind == "net" and self.netns:
            return self.netns
        if kind == "ipc" and self.namespace_mode("ipc") == pb.NODE:
            return None
        if kind == "uts" and self.host_network:
            return None
        return os.path.join(self.dir, kind)

    @property
    def host_network(self) -> bool:
        return self.namespace_mode("network") == pb.NODE

    def namespace_mode(self, kind: str) -> int:
        opts = self.config.linux.security_context.namespace_options
        return getattr(opts, kind)

    def etc_file(self, name: str) -> str:
        return os.path.join(self.dir, name)


class SandboxStore:
    """Sandbox records, one JSON file each in the data dir (they must
    outlive a daemon restart, as container records do)."""

    def __init__(self, records_dir: str, run_dir: str, networks):
        self.records_dir, self.run_dir = records_dir, run_dir
        self.networks = networks  # the daemon's NetworkService
        os.makedirs(records_dir, mode=0o700, exist_ok=True)
        os.makedirs(run_dir, mode=0o700, exist_ok=True)
        self.sandboxes: dict[str, Sandbox] = {}
        for name in sorted(os.listdir(records_dir)):
            if name.endswith(".json"):
                with open(os.path.join(records_dir, name)) as f:
                    sb = Sandbox(**json.load(f))
                self.sandboxes[sb.id] = sb

    def get(self, ref: str) -> Sandbox:
        sb = self.sandboxes.get(ref)
        if sb is None:
            # crictl passes what the user typed: a unique prefix is enough.
            hits = [s for s in self.sandboxes.values() if s.id.startswith(ref)] if ref else []
            if len(hits) == 1:
                return hits[0]
            raise NotFound(f"no such pod sandbox: {ref!r}", id=ref)
        return sb

    def save(self, sb: Sandbox) -> None:
        path = os.path.join(self.records_dir, sb.id + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(dataclasses.asdict(sb), f)
        os.replace(path + ".tmp", path)

    async def create(self, sid: str, config: pb.PodSandboxConfig,
                     runtime_handler: str) -> Sandbox:
        sb = Sandbox(id=sid, config_b64=base64.b64encode(config.SerializeToString()).decode(),
                     created_ns=now_ns(), runtime_handler=runtime_handler,
                     dir=os.path.join(self.run_dir, sid))
        mappings = port_mappings(config)
        os.makedirs(sb.dir, mode=0o711)
        try:
            ip = ""
            if not sb.host_network:
                net = await self.networks.create_netns(sid, OWNER_KIND, _owner_name(config),
                                                       ports=mappings)
                sb.netns = net["netns"]
                ip = pod_ip(net)
            _write_etc(sb, config, ip)
            _pin_namespaces(sb, pod_hostname(config))
            if pod_pid_namespace(config):
                sb.pid_holder, sb.pid_holder_start = _start_pid_holder()
            self.save(sb)
        except BaseException:
            await self._release_network(sb)
            _release(sb)
            raise
        self.sandboxes[sid] = sb
        return sb

    def ip(self, sb: Sandbox) -> str:
        """The pod's address on the default network while it has one."""
        return pod_ip(self.networks.netns_owner(sb.id) or {})

    async def _release_network(self, sb: Sandbox) -> None:
        await self.networks.release_netns(sb.id)

    async def stop(self, sb: Sandbox) -> None:
        """NOTREADY, and the network goes (the CRI: 'reclaim network
        resources'): CNI DEL, so the address, the veth and the published
        ports are free again; the record stays for status until
        RemovePodSandbox. NOTREADY is saved first: a daemon killed
        half-way finishes the teardown at its next start (reconcile)."""
        if sb.pid_holder and _same_process(sb.pid_holder, sb.pid_holder_start):
            os.kill(sb.pid_holder, signal.SIGKILL)
        if sb.state != NOTREADY:
            sb.state = NOTREADY
            self.save(sb)
        await self._release_network(sb)

    async def remove(self, sb: Sandbox) -> None:
        await self._release_network(sb)
        _release(sb)
        try:
            os.unlink(os.path.join(self.records_dir, sb.id + ".json"))
        except FileNotFoundError:
            pass
        self.sandboxes.pop(sb.id, None)

    async def reconcile(self) -> None:
        """At start: a pod network whose sandbox is gone or stopped (a
        daemon killed between the two steps of a run, stop or remove) is
        released, and so are the pinned namespaces of a sandbox whose
        record was never saved; a ready pod's are kept, its network still
        answering at its address."""
        for name in sorted(os.listdir(self.run_dir)):
            if name not in self.sandboxes:
                log.warning("pod %s: releasing the namespaces of a sandbox without a record",
                            name)
                _release(Sandbox(id=name, config_b64="", created_ns=0,
                                 dir=os.path.join(self.run_dir, name)))
        for oid in self.networks.netns_owners(OWNER_KIND):
            sb = self.sandboxes.get(oid)
            if sb is None or sb.state != READY:
                try:
                    await self.networks.release_netns(oid)
                except Exception as e:  # noqa: BLE001 -- the daemon starts anyway
                    log.warning("pod %s: network teardown: %s", oid, e)


def port_mappings(config: pb.PodSandboxConfig) -> list[dict]:
    """The pod's port_mappings in the network package's form. As containerd
    does, a mapping without a host port publishes nothing (the container
    port is reached at the pod's own address), and an empty host_ip means
    every address of the host."""
    out = []
    for i, p in enumerate(config.port_mappings):
        if p.host_port <= 0:
            continue
        if p.protocol not in PROTOCOLS:
            raise InvalidArgument(f"port_mappings[{i}].protocol "
                                  f"{pb.Protocol.Name(p.protocol)} is not supported: TCP or UDP",
                                  field="port_mappings")
        out.append({"hostPort": p.host_port, "containerPort": p.container_port,
                    "protocol": PROTOCOLS[p.protocol], "hostIp": p.host_ip or "0.0.0.0"})
    try:
        return check_ports(out)
    except InvalidArgument as e:
        raise InvalidArgument(f"port_mappings: {e}", field="port_mappings") from None


def pod_ip(net: dict) -> str:
    for a in (net.get("attachments") or {}).values():
        if a.get("ip"):
            return a["ip"]
    return ""


def _owner_name(config: pb.PodSandboxConfig) -> str:
    meta = config.metadata
    return f"{meta.name}_{meta.namespace}" if meta.namespace else meta.name


def pod_pid_namespace(config: pb.PodSandboxConfig) -> bool:
    """Does the pod ask for one PID namespace for all its containers? Only
    when it says so: NamespaceMode's zero value is POD, so a config without
    namespace options (crictl's minimal pod.json) would otherwise ask for it
    by accident; the kubelet always sends them."""
    sc = config.linux.security_context
    return sc.HasField("namespace_options") and sc.namespace_options.pid == pb.POD


def pod_hostname(config: pb.PodSandboxConfig) -> str:
    """The pod's hostname, else its name cut to what the kernel takes (64)."""
    return config.hostname or config.metadata.name[:63]


def _write_etc(sb: Sandbox, config: pb.PodSandboxConfig, ip: str) -> None:
    dns = config.dns_config
    if dns.servers or dns.searches or dns.options:
        lines = [f"nameserver {s}" for s in dns.servers]
        if dns.searches:
            lines.append("search " + " ".join(dns.searches))
        if dns.options:
            lines.append("options " + " ".join(dns.options))
        text = "\n".join(lines) + "\n"
    elif sb.host_network:
        # As containerd: no DNS config means the host's.
        try:
            with open("/etc/resolv.conf") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
    else:
        # The host's, without a loopback resolver (systemd-resolved's
        # 127.0.0.53 is the host's, not reachable from the pod's netns).
        text = resolv_conf()
    hostname = pod_hostname(config)
    if sb.host_network:
        hostname = os.uname().nodename
    files = {
        "resolv.conf": text,
        "hostname": hostname + "\n",
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"{ip or '127.0.1.1'}\t{hostname}\n",
    }
    for name, content in files.items():
        with open(sb.etc_file(name), "w") as f:
            f.write(content)
        os.chmod(sb.etc_file(name), 0o644)


def _pin_namespaces(sb: Sandbox, hostname: str) -> None:
    """One short-lived process unshares the pod's namespaces; util-linux's
    unshare bind-mounts each onto its file, so they outlive it."""
    kinds = [k for k in PINNED if sb.ns_path(k) == os.path.join(sb.dir, k)]
    if not kinds:
        return
    argv = ["unshare"]
    for k in kinds:
        path = sb.ns_path(k)
        open(path, "w").close()
        argv.append(f"--{k}={path}")
    script = []
    if "uts" in kinds:
        script.append('hostname "$0"')
    if "net" in kinds:
        script.append("ip link set lo up")
    argv += ["/bin/sh", "-c", " && ".join(script) or "true", hostname]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeFailure(f"pinning the pod's namespaces failed: "
                             f"{(r.stderr or r.stdout).strip() or r.returncode}")


def _start_pid_holder() -> tuple[int, int]:
    """The init of a pod's PID namespace (host pid, start time)."""
    script = "trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child",
                             "/bin/busybox", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        child = _child_of(proc.pid)
        if child:
            # unshare has forked the namespace's init; wait for its exec.
            try:
                if "busybox" in os.readlink(f"/proc/{child}/exe"):
                    return child, _start_time(child)
            except OSError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    raise RuntimeFailure("could not start the init of the pod's PID namespace "
                         "(unshare --pid --fork /bin/busybox sh)")


def _child_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return 0
    return int(kids[0]) if kids else 0


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def _same_process(pid: int, start: int) -> bool:
    try:
        return _start_time(pid) == start
    except (OSError, IndexError, ValueError):
        return False


def _release(sb: Sandbox) -> None:
    if sb.pid_holder and _same_process(sb.pid_holder, sb.pid_holder_start):
        # Its death ends the namespace and every process left in it.
        os.kill(sb.pid_holder, signal.SIGKILL)
    for k in PINNED:
        path = os.path.join(sb.dir, k)
        if os.path.exists(path):
            # Lazily: a container of the pod that is still being torn down
            # may hold it; the namespace goes with its last user.
            if _libc.umount2(path.encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (22,):  # EINVAL: not a mount point (never pinned)
                    raise RuntimeFailure(f"unmounting {path}: {os.strerror(err)}")
    shutil.rmtree(sb.dir, ignore_errors=True)


def connect_in_netns(netns: str | None, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:port inside a pod's network namespace
    (the CRI's PortForward). setns() moves only the calling thread, so a
    thread of its own enters the namespace, connects, and ends; the socket
    stays in the namespace it was made in."""
    result: dict = {}

    def run():
        try:
            if netns is not None:
                with open(netns) as f:
                    if _libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns {netns}")
            result["sock"] = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError as e:
            result["error"] = e

    # Never returned to a pool: the thread's namespace is not the daemon's.
    t = threading.Thread(target=run, name="cri-portforward")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    sock = result["sock"]
    sock.settimeout(None)
    return sock
