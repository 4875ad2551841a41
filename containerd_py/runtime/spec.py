"""The OCI runtime spec the daemon writes for each launch of a container.

The base is a bundle's config.json (read fresh for each launch) or, for an
image, runc's own defaults (`runc spec`, not rootless) with the image config
on top, as containerd's `oci.WithImageConfig` does. The create settings go
over either, and the result is written into the container's own dir in the
daemon's state dir: the user's files are never modified.
"""

import copy
import json
import os
import signal as signal_mod

from ..errors import InvalidArgument, Unavailable
from . import seccomp
from .settings import ContainerSettings

STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"
# Where `init: true` puts tini. /dev is the tmpfs runc mounts for every
# container, so the mount point is made there and never in a root
# filesystem the user shares between containers.
INIT_PATH = "/dev/init"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# `runc spec` (runc 1.1), as a dict: the base of an image container's spec.
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
_RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,  # `runc spec` says true; the daemon's containers run detached
        "user": {"uid": 0, "gid": 0},
        "args": [],
        "env": [DEFAULT_PATH, "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": False},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}


def default_spec() -> dict:
    return copy.deepcopy(_RUNC_SPEC)


# -- image config -> settings ---------------------------------------------------

def image_settings(config: dict, hostname: str | None = None) -> ContainerSettings:
    """What an OCI image config says about running it, as settings (its
    `config` object: Entrypoint, Cmd, Env, WorkingDir, User, Labels,
    StopSignal), with the default `hostname` (Docker's is the container's
    id) rather than runc's "runc"."""
    c = config.get("config", config) or {}
    stop = c.get("StopSignal")
    return ContainerSettings(
        entrypoint=list(c.get("Entrypoint") or []) or None,
        args=list(c.get("Cmd") or []) or None,
        env=list(c.get("Env") or []), cwd=c.get("WorkingDir") or None,
        user=c.get("User") or None,
        # The image spec lets a runtime copy labels into annotations;
        # CRI-O and podman do, so tools reading the spec see them.
        annotations=dict(c.get("Labels") or {}),
        stop_signal=signal_number(stop) if stop else None,
        hostname=hostname[:63] if hostname else None)


def over(base: ContainerSettings, req: ContainerSettings) -> ContainerSettings:
    """The request's settings over the image's (or a checkpoint's). As in
    Docker, a new entrypoint drops the image's Cmd too; a mount replaces
    the one on the same destination."""
    def pick(a, b):
        return b if b is not None else a
    args = req.args if req.args is not None else (
        None if req.entrypoint is not None else base.args)
    return ContainerSettings(
        args=args, entrypoint=pick(base.entrypoint, req.entrypoint),
        env=merge_env(base.env, req.env), cwd=pick(base.cwd, req.cwd),
        user=pick(base.user, req.user), hostname=pick(base.hostname, req.hostname),
        terminal=pick(base.terminal, req.terminal),
        readonly_rootfs=pick(base.readonly_rootfs, req.readonly_rootfs),
        mounts=[m for m in base.mounts
                if m["destination"] not in {r["destination"] for r in req.mounts}] + req.mounts,
        annotations={**base.annotations, **req.annotations},
        stop_signal=pick(base.stop_signal, req.stop_signal), init=base.init or req.init)


def merge_env(base: list[str], over_: list[str]) -> list[str]:
    """K=V lists: a key of `over_` replaces the same key of `base` in place."""
    merged = {}
    for item in list(base) + list(over_):
        key = item.partition("=")[0]
        merged[key] = item
    return list(merged.values())


# -- settings -> spec ---------------------------------------------------------------

def write_runtime_bundle(dest: str, spec: dict, settings: ContainerSettings, *, rootfs: str,
                         own_rootfs: bool, cgroups_path: str, resources: dict,
                         init_binary: str | None, runtime_annotations: dict | None = None
                         ) -> dict:
    """The whole of it: `spec` (a bundle's config.json or `default_spec()`,
    changed in place) with the settings applied, over `rootfs`, written as
    `dest`/config.json. Returns the spec as written, but for
    `runtime_annotations`: the daemon's own, for the runtime only (not
    shown as the container's)."""
    if own_rootfs:
        # The container's own overlay: writable unless the settings say not.
        spec.setdefault("root", {})["readonly"] = False
    apply(spec, settings, rootfs, own_rootfs=own_rootfs, init_binary=init_binary)
    write(dest, spec, rootfs=rootfs, cgroups_path=cgroups_path, resources=resources,
          annotations=runtime_annotations)
    return spec


def apply(spec: dict, s: ContainerSettings, rootfs: str, *, own_rootfs: bool,
          init_binary: str | None) -> dict:
    """Apply settings to `spec` (in place) for a container whose root
    filesystem is mounted at `rootfs`; `own_rootfs` when it is the
    container's own (an overlay), so the runtime may create paths in it."""
    p = spec.setdefault("process", {})
    if s.entrypoint is not None or s.args is not None:
        p["args"] = list(s.entrypoint or []) + list(s.args or [])
    if not p.get("args"):
        raise InvalidArgument("the container has no command: give args (or entrypoint), "
                              "the image has neither Entrypoint nor Cmd", field="args")
    p["env"] = merge_env(p.get("env") or [DEFAULT_PATH], s.env)
    mounts = spec.setdefault("mounts", [])
    for m in s.mounts:
        if m["type"] == "bind" and not os.path.exists(m["source"]):
            raise InvalidArgument(f"mount source {m['source']} does not exist",
                                  field="mounts", source=m["source"])
        if not own_rootfs and not _exists(rootfs, m["destination"], mounts):
            raise InvalidArgument(
                f"mount destination {m['destination']} does not exist in the bundle's root "
                "filesystem, and the runtime would create it there: give overlay: true or "
                "an existing path", field="mounts", destination=m["destination"])
        mounts.append(dict(m))
    if s.cwd is not None:
        p["cwd"] = s.cwd
    p.setdefault("cwd", "/")
    _check_cwd(rootfs, p["cwd"], mounts, own_rootfs)
    if s.user is not None:
        p["user"] = resolve_user(s.user, rootfs)
    if s.terminal is not None:
        p["terminal"] = s.terminal
    if s.hostname is not None:
        spec["hostname"] = s.hostname
    if s.readonly_rootfs is not None:
        spec.setdefault("root", {})["readonly"] = s.readonly_rootfs
    annotations = {**(spec.get("annotations") or {}), **s.annotations}
    if s.stop_signal is not None:
        annotations[STOP_SIGNAL_ANNOTATION] = signal_mod.Signals(s.stop_signal).name
    if annotations:
        spec["annotations"] = annotations
    if s.seccomp is not None:
        _apply_seccomp(spec, s.seccomp)
    if s.init:
        if not init_binary or not os.access(init_binary, os.X_OK):
            raise Unavailable(f"init: true runs tini, and {init_binary or 'tini-static'} is "
                              "not on this host (Debian's tini package; make setup "
                              "installs it)", field="init")
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": init_binary,
                       "options": ["bind", "ro", "nosuid"]})
        # tini as PID 1 passes signals on to the service, which is no longer
        # PID 1 and so gets the kernel's default actions (SIGTERM kills).
        p["args"] = [INIT_PATH, "--"] + p["args"]
    return spec


def _apply_seccomp(spec: dict, choice: str) -> None:
    """The filter a create asked for, over whatever the bundle had; the
    default's capability-guarded syscalls follow the spec's bounding set."""
    linux = spec.setdefault("linux", {})
    if choice == "unconfined":
        linux.pop("seccomp", None)
        return
    if not seccomp.supported():
        raise Unavailable("this kernel has no seccomp: only \"unconfined\" works",
                          field="seccomp")
    if choice == "default":
        caps = (spec.get("process", {}).get("capabilities") or {}).get("bounding") or []
        linux["seccomp"] = seccomp.default_profile(caps)
    else:
        linux["seccomp"] = seccomp.load_profile(choice, field="seccomp")


def _check_cwd(rootfs: str, cwd: str, mounts: list[dict], own_rootfs: bool) -> None:
    path = in_root(rootfs, cwd)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidArgument(f"cwd {cwd} is not a directory in the container", field="cwd")
    if not own_rootfs and not _exists(rootfs, cwd, mounts):
        # runc would create it, in a root filesystem that is the user's own
        # (and maybe shared by other containers).
        raise InvalidArgument(f"cwd {cwd} does not exist in the bundle's root filesystem",
                              field="cwd")


def _exists(rootfs: str, path: str, mounts: list[dict]) -> bool:
    """`path` is in the root filesystem, or on a mount the runtime makes
    (where creating it touches nothing of the user's)."""
    return os.path.lexists(in_root(rootfs, path)) or any(
        path == m.get("destination") or
        path.startswith(m.get("destination", "").rstrip("/") + "/") for m in mounts)


def write(dest: str, spec: dict, *, rootfs: str, cgroups_path: str,
          resources: dict, annotations: dict | None = None) -> str:
    """Write `spec` as `dest`/config.json with the root path, the daemon's
    cgroup and the resource limits; return `dest`."""
    spec.setdefault("root", {})["path"] = rootfs
    linux = spec.setdefault("linux", {})
    if not linux.get("cgroupsPath"):
        linux["cgroupsPath"] = cgroups_path
    if resources:
        merge_resources(linux.setdefault("resources", {}), resources)
    os.makedirs(dest, exist_ok=True)
    if annotations:
        spec = {**spec, "annotations": {**(spec.get("annotations") or {}), **annotations}}
    data = json.dumps(spec)  # one write: json.dump writes each token apart
    with open(os.path.join(dest, "config.json"), "w") as f:
        f.write(data)
    return dest


def merge_resources(linux_resources: dict, resources: dict) -> None:
    for key, value in resources.items():
        if isinstance(value, dict):
            linux_resources.setdefault(key, {}).update(value)
        else:
            linux_resources[key] = value


def effective(spec: dict, s: ContainerSettings) -> dict:
    """What the container object shows: the settings as they ended up."""
    p = spec.get("process", {})
    args = p.get("args", [])
    return {
        "args": args[2:] if s.init else args, "env": p.get("env", []),
        "cwd": p.get("cwd", "/"), "user": p.get("user", {"uid": 0, "gid": 0}),
        "hostname": spec.get("hostname", ""), "terminal": bool(p.get("terminal")),
        "readonlyRootfs": bool(spec.get("root", {}).get("readonly")),
        "mounts": s.mounts, "annotations": spec.get("annotations", {}),
        "stopSignal": signal_mod.Signals(stop_signal(spec)).name, "init": s.init,
        "seccomp": s.seccomp or ("bundle" if spec.get("linux", {}).get("seccomp")
                                 else "unconfined"),
    }


def stop_signal(spec: dict) -> int:
    sig = (spec.get("annotations") or {}).get(STOP_SIGNAL_ANNOTATION)
    try:
        return signal_number(sig) if sig else 15
    except InvalidArgument:
        return 15  # a bundle's own odd annotation: stop as everyone else


def signal_number(value) -> int:
    """15, "15", "TERM" or "SIGTERM" -> 15."""
    if isinstance(value, bool):
        raise InvalidArgument(f"unknown signal {value!r}", field="stopSignal")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        n = int(value)
        if 1 <= n <= 64:
            try:
                return int(signal_mod.Signals(n))
            except ValueError:
                pass
    elif isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal_mod.Signals.__members__:
            return int(signal_mod.Signals[name])
    raise InvalidArgument(f"unknown signal {value!r}: use a name such as SIGTERM or TERM, "
                          "or a number", field="stopSignal")


# -- users and paths inside the root filesystem -------------------------------------

def resolve_user(user: str, rootfs: str) -> dict:
    """"uid[:gid]" or "name[:group]" -> an OCI user, names looked up in the
    container's own /etc/passwd and /etc/group, as Docker does."""
    name, _, group = user.partition(":")
    passwd = _table(rootfs, "/etc/passwd")
    groups = _table(rootfs, "/etc/group")
    entry = None
    if name.isdigit():
        uid = int(name)
        entry = next((e for e in passwd if e[2] == name), None)
    else:
        entry = next((e for e in passwd if e[0] == name), None)
        if entry is None:
            raise InvalidArgument(f"unknown user {name!r}: no such user in the container's "
                                  "/etc/passwd", field="user")
        uid = _int(entry[2])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in groups if e[0] == group), None)
            if g is None:
                raise InvalidArgument(f"unknown group {group!r}: no such group in the "
                                      "container's /etc/group", field="user")
            gid = _int(g[2])
    else:
        gid = _int(entry[3]) if entry else 0
    out = {"uid": uid, "gid": gid}
    if entry is not None:
        extra = sorted({_int(g[2]) for g in groups
                        if len(g) > 3 and entry[0] in g[3].split(",") and _int(g[2]) != gid})
        if extra:
            out["additionalGids"] = extra
    return out


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"the container's /etc/passwd or /etc/group has a bad id "
                              f"{text!r}", field="user") from None


def _table(rootfs: str, path: str) -> list[list[str]]:
    try:
        with open(in_root(rootfs, path), errors="replace") as f:
            return [ln.rstrip("\n").split(":") for ln in f
                    if ln.strip() and not ln.startswith("#") and ln.count(":") >= 3]
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []


def in_root(root: str, path: str) -> str:
    """`path` as seen inside `root`: symlinks followed as if `root` were
    /, so an absolute link in an image cannot point at the host's files."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if cur:
                cur.pop()
            continue
        full = os.path.join(root, *cur, part)
        if os.path.islink(full):
            hops += 1
            if hops > 40:
                raise InvalidArgument(f"too many symbolic links in {path}")
            target = os.readlink(full)
            if target.startswith("/"):
                cur = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        cur.append(part)
    return os.path.join(root, *cur)
