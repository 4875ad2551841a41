"""A first OCI runtime spec for a container of an image: runc's defaults
(`runc spec`) with the image config's process (Entrypoint + Cmd, Env,
WorkingDir, numeric User) and stop signal.

Kept deliberately small: the create-time settings of the request (env,
args, mounts, user by name, init...) are the spec writer's business; this
only makes an image runnable as it is.
"""

import json
import os

from .store import Image

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
          "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _user(value: str) -> dict:
    uid, _, gid = (value or "0").partition(":")
    return {"uid": int(uid) if uid.isdigit() else 0, "gid": int(gid) if gid.isdigit() else 0}


def image_spec(image: Image, hostname: str) -> dict:
    cfg = image.config
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    spec = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False, "user": _user(cfg.get("User", "")), "args": args or ["sh"],
            "env": env, "cwd": cfg.get("WorkingDir") or "/",
            "capabilities": {k: list(CAPS) for k in
                             ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "annotations": {"org.opencontainers.image.ref.id": image.id},
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED), "readonlyPaths": list(READONLY),
        },
    }
    if cfg.get("StopSignal"):
        spec["annotations"]["org.opencontainers.image.stopSignal"] = cfg["StopSignal"]
    return spec


def write_bundle(image: Image, bundle_dir: str, hostname: str) -> str:
    """The daemon's own bundle for a container of `image` (its config.json;
    the root is the image store's mount, put in at launch)."""
    os.makedirs(bundle_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(bundle_dir, "config.json"), "w") as f:
        json.dump(image_spec(image, hostname), f, indent=1)
    return bundle_dir
