"""The OCI runtime spec of a CRI container: its image's config, the
ContainerConfig's settings and its pod's namespaces and /etc files, on
top of the defaults containerd's CRI plugin uses."""

import os

from ..errors import InvalidArgument
from ._gen import api_pb2 as pb
from ..images import Image
from ..runtime import propagation, seccomp
from ..runtime.spec import resolve_user
from .sandbox import Sandbox, pod_hostname

# containerd's default capability set for CRI containers (Docker's too).
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
ALL_CAPS = DEFAULT_CAPS + [
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
# Capability numbers, as <linux/capability.h> orders them.
CAP_BY_NUMBER = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]


def _bounding_set() -> set[str]:
    """The daemon's own bounding set: a container cannot get a capability
    the daemon lacks (runc fails with EPERM), as when this host is itself
    a container without, say, CAP_SYS_RESOURCE."""
    try:
        with open("/proc/self/status") as f:
            bits = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return set(CAP_BY_NUMBER)
    return {name for i, name in enumerate(CAP_BY_NUMBER) if bits >> i & 1}


MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROPAGATION = {pb.PROPAGATION_PRIVATE: "rprivate", pb.PROPAGATION_HOST_TO_CONTAINER: "rslave",
               pb.PROPAGATION_BIDIRECTIONAL: "rshared"}
STOP_SIGNAL = "org.opencontainers.image.stopSignal"


def process_args(config: pb.ContainerConfig, image: Image) -> list[str]:
    """Kubernetes' rule: `command` replaces the image's Entrypoint (and its
    Cmd with it), `args` replaces Cmd."""
    ic = image.config
    if config.command:
        args = list(config.command) + list(config.args)
    else:
        args = list(ic.get("Entrypoint") or []) + (list(config.args) or list(ic.get("Cmd") or []))
    if not args:
        raise InvalidArgument("no command: the config has neither command nor args and "
                              f"image {image.names[:1] or image.id} has no Entrypoint/Cmd",
                              field="config.command")
    return args


def build(cid: str, config: pb.ContainerConfig, sb: Sandbox, image: Image,
          etc_root: str | None) -> dict:
    """The spec; its root is the image's (the supervisor mounts the
    container's overlay of the image's layers there)."""
    ic = image.config
    sc = config.linux.security_context
    privileged = sc.privileged
    env = list(ic.get("Env") or [DEFAULT_PATH])
    for kv in config.envs:
        env = [e for e in env if e.partition("=")[0] != kv.key] + [f"{kv.key}={kv.value}"]
    user = _user(sc, ic.get("User", ""), etc_root or "/nonexistent")
    allowed = _bounding_set()
    caps = [c for c in (ALL_CAPS if privileged else _caps(sc.capabilities)) if c in allowed]
    process = {
        "terminal": config.tty,
        "user": user,
        "args": process_args(config, image),
        "env": env,
        "cwd": config.working_dir or ic.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": sc.no_new_privs,
    }
    res = config.linux.resources
    if res.oom_score_adj:
        process["oomScoreAdj"] = res.oom_score_adj
    namespaces = [{"type": "mount"}]
    if sc.namespace_options.pid == pb.POD and sb.ns_path("pid"):
        namespaces.append({"type": "pid", "path": sb.ns_path("pid")})
    elif sc.namespace_options.pid != pb.NODE:
        namespaces.append({"type": "pid"})
    for kind, oci in (("net", "network"), ("ipc", "ipc"), ("uts", "uts")):
        path = sb.ns_path(kind)
        if path:
            namespaces.append({"type": oci, "path": path})
    annotations = dict(config.annotations)
    if ic.get("StopSignal"):
        annotations[STOP_SIGNAL] = ic["StopSignal"]
    spec = {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs", "readonly": sc.readonly_rootfs},
        "hostname": pod_hostname(sb.config),
        "mounts": _mounts(config, sb, privileged),
        "annotations": annotations,
        "linux": {
            "resources": _resources(res, privileged),
            "namespaces": namespaces,
            "sysctl": dict(sb.config.linux.sysctls),
        },
    }
    root_prop = None
    for m in config.mounts:
        root_prop = propagation.rootfs_propagation(
            root_prop, PROPAGATION.get(m.propagation, "rprivate"))
    if root_prop:
        spec["linux"]["rootfsPropagation"] = root_prop
    if sb.host_network:
        spec.pop("hostname")
    profile = _seccomp(sc, caps)
    if profile is not None:
        spec["linux"]["seccomp"] = profile
    if not privileged:
        spec["linux"]["maskedPaths"] = list(sc.masked_paths) if sc.masked_paths else MASKED_PATHS
        spec["linux"]["readonlyPaths"] = (list(sc.readonly_paths) if sc.readonly_paths
                                          else READONLY_PATHS)
    devices = _devices(config)
    if devices:
        spec["linux"]["devices"] = devices
        spec["linux"]["resources"]["devices"] += [
            {"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
             "access": "rwm"} for d in devices]
    return spec


# The deprecated seccomp_profile_path's words, as containerd 1.6 reads them.
SECCOMP_WORDS = {"runtime/default": pb.SecurityProfile.RuntimeDefault,
                 "docker/default": pb.SecurityProfile.RuntimeDefault,
                 "unconfined": pb.SecurityProfile.Unconfined}
LOCALHOST = "localhost/"


def _seccomp(sc: pb.LinuxContainerSecurityContext, caps: list[str]) -> dict | None:
    """The container's seccomp filter, or None for none: `seccomp` if set,
    else the deprecated `seccomp_profile_path`; neither set is unconfined
    (containerd's default), and a privileged container is never filtered."""
    if sc.HasField("seccomp"):
        kind, ref, field = sc.seccomp.profile_type, sc.seccomp.localhost_ref, "seccomp"
        if kind != pb.SecurityProfile.Localhost and ref:
            raise InvalidArgument("seccomp.localhost_ref is only for profile_type Localhost",
                                  field="linux.security_context.seccomp")
        ref = ref.removeprefix(LOCALHOST)
    elif sc.seccomp_profile_path:
        path, field = sc.seccomp_profile_path, "seccomp_profile_path"
        if path in SECCOMP_WORDS:
            kind, ref = SECCOMP_WORDS[path], ""
        elif path.startswith(LOCALHOST):
            kind, ref = pb.SecurityProfile.Localhost, path[len(LOCALHOST):]
        else:
            raise InvalidArgument(
                f"seccomp profile {path!r}: use runtime/default, docker/default, unconfined "
                f"or localhost/<absolute path of a profile file>",
                field="linux.security_context.seccomp_profile_path")
    else:
        return None
    if sc.privileged or kind == pb.SecurityProfile.Unconfined:
        return None
    if not seccomp.supported():
        raise InvalidArgument("this kernel has no seccomp: only an unconfined profile works",
                              field="linux.security_context." + field)
    if kind == pb.SecurityProfile.Localhost:
        return seccomp.load_profile(ref, field="linux.security_context." + field)
    return seccomp.default_profile(caps)


def _caps(cap: pb.Capability) -> list[str]:
    def norm(c):
        c = c.upper()
        return c if c.startswith("CAP_") else "CAP_" + c
    add, drop = [norm(c) for c in cap.add_capabilities], [norm(c) for c in cap.drop_capabilities]
    base = ALL_CAPS if "CAP_ALL" in add else DEFAULT_CAPS
    if "CAP_ALL" in drop:
        base = []
    return [c for c in dict.fromkeys(base + [a for a in add if a != "CAP_ALL"]) if c not in drop]


def _user(sc: pb.LinuxContainerSecurityContext, image_user: str, rootfs: str) -> dict:
    """run_as_user / run_as_username over the image's User, looked up in
    the image's /etc/passwd and /etc/group (runtime.spec.resolve_user, the
    one lookup REST containers use too); run_as_group and
    supplemental_groups on top."""
    if sc.HasField("run_as_group") and not (sc.HasField("run_as_user") or sc.run_as_username):
        # As containerd: a group alone would pair with whatever user the
        # image has, which is not what the caller asked for.
        raise InvalidArgument("run_as_group needs run_as_user or run_as_username",
                              field="linux.security_context.run_as_group")
    if sc.HasField("run_as_user"):
        wanted, field = str(sc.run_as_user.value), "linux.security_context.run_as_user"
    elif sc.run_as_username:
        wanted, field = sc.run_as_username, "linux.security_context.run_as_username"
    else:
        wanted, field = image_user or "0", "image"
    try:
        user = resolve_user(wanted, rootfs)
    except InvalidArgument as e:
        raise InvalidArgument(e.message, field=field) from None
    if sc.HasField("run_as_group"):
        user["gid"] = sc.run_as_group.value
    extra = list(user.pop("additionalGids", [])) + list(sc.supplemental_groups)
    extra = [g for g in dict.fromkeys(extra) if g != user["gid"]]
    if extra:
        user["additionalGids"] = extra
    return user


def _mounts(config: pb.ContainerConfig, sb: Sandbox, privileged: bool) -> list[dict]:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if privileged else "ro"]},
    ]
    wanted = {m.container_path for m in config.mounts}
    for name in ("hosts", "hostname", "resolv.conf"):
        if "/etc/" + name not in wanted:
            mounts.append({"destination": "/etc/" + name, "type": "bind",
                           "source": sb.etc_file(name), "options": ["rbind", "rprivate", "rw"]})
    for m in config.mounts:
        if not m.container_path.startswith("/"):
            raise InvalidArgument(f"mount container_path {m.container_path!r} is not absolute",
                                  field="config.mounts")
        if not os.path.exists(m.host_path):
            raise InvalidArgument(f"mount host_path {m.host_path!r} does not exist",
                                  field="config.mounts")
        prop = PROPAGATION.get(m.propagation, "rprivate")
        propagation.check(m.host_path, prop, "config.mounts")
        opts = ["rbind", prop, "ro" if m.readonly else "rw"]
        mounts.append({"destination": m.container_path, "type": "bind",
                       "source": m.host_path, "options": opts})
    return mounts


def _resources(res: pb.LinuxContainerResources, privileged: bool) -> dict:
    out: dict = {"devices": [{"allow": privileged, "access": "rwm"}]}
    cpu = {}
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if res.memory_limit_in_bytes:
        out["memory"] = {"limit": res.memory_limit_in_bytes,
                         "swap": res.memory_swap_limit_in_bytes or res.memory_limit_in_bytes}
    if res.hugepage_limits:
        out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit}
                                 for h in res.hugepage_limits]
    if res.unified:
        out["unified"] = dict(res.unified)
    return out


def oci_resources(res: pb.LinuxContainerResources) -> dict:
    """UpdateContainerResources: only what was set (runc update leaves the
    rest as it is)."""
    out = _resources(res, False)
    out.pop("devices")
    return out


def _devices(config: pb.ContainerConfig) -> list[dict]:
    out = []
    for d in config.devices:
        try:
            st = os.stat(d.host_path)
        except OSError as e:
            raise InvalidArgument(f"device {d.host_path!r}: {e.strerror}",
                                  field="config.devices") from None
        import stat
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else None
        if kind is None:
            raise InvalidArgument(f"{d.host_path!r} is not a device", field="config.devices")
        out.append({"path": d.container_path or d.host_path, "type": kind,
                    "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                    "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0})
    return out
