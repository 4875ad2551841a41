"""Daemon settings: where state lives and which runtime and CRIU to use."""

import dataclasses
import hashlib
import os
import shutil

DEFAULT_LISTEN = "127.0.0.1:8888"
DEFAULT_STATE_DIR = "/run/containerd-py"
DEFAULT_DATA_DIR = "/var/lib/containerd-py"
# Where native/setup-host.sh puts a CRIU that works on this kernel (>= 4.2:
# Debian 12's fails `criu check`, and 13's 4.1.1 cannot dump internet sockets
# on Linux >= 6.16); falls back to `criu` on PATH.
PRIVATE_CRIU = "/opt/containerd-py/bin/criu"
# `init: true` bind-mounts this into the container as its PID 1: Debian's
# tini package, static so it runs in any root filesystem.
TINI = "/usr/bin/tini-static"
# sizeof(sockaddr_un.sun_path) minus its terminating NUL.
SUN_PATH_MAX = 107
# Below this even a hashed shim dir name ("-" and 12 hex digits) would not fit.
MIN_SHIM_NAME = 13


def find_criu() -> str | None:
    if os.access(PRIVATE_CRIU, os.X_OK):
        return PRIVATE_CRIU
    return shutil.which("criu")


@dataclasses.dataclass
class DaemonConfig:
    listen: str = DEFAULT_LISTEN
    # Volatile: shim sockets, pid files, logs, the runtime's own state.
    state_dir: str = DEFAULT_STATE_DIR
    # Persistent: one state file per container, the event journal.
    data_dir: str = DEFAULT_DATA_DIR
    runtime: str = "runc"
    criu: str | None = dataclasses.field(default_factory=find_criu)
    log_max_bytes: int = 64 * 1024 * 1024
    events_journal_max: int = 10000
    cgroup_parent: str = "containerd-py"
    # The subnet of the `default` network, made on the first start.
    # None: podman's 10.88.0.0/16, unless the host already has it (podman's
    # own bridge does); then the first free /16 after it.
    default_subnet: str | None = None
    init_binary: str = TINI
    # The CRI's gRPC socket ("" serves none); None: cri.sock in the state dir,
    # which is /run/containerd-py/cri.sock for the default state dir.
    cri_listen: str | None = None
    # Where the CRI's PullImage looks after the local store.
    image_mirror: str | None = None

    def __post_init__(self):
        if self.cri_listen is None:
            self.cri_listen = "unix://" + os.path.join(self.state_dir, "cri.sock")

    @property
    def containers_dir(self) -> str:
        return os.path.join(self.data_dir, "containers")

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.state_dir, "runtime", os.path.basename(self.runtime))

    def shim_dir(self, container_id: str) -> str:
        """The container's shim dir: named by its id where the shim's unix
        sockets still fit in sun_path (108 bytes) below it, else by a prefix
        of the id and a hash of it."""
        budget = self.shim_name_budget()
        if len(container_id) <= budget:
            name = container_id
        else:
            digest = hashlib.sha256(container_id.encode()).hexdigest()[:12]
            name = container_id[:budget - 13] + "-" + digest
        return os.path.join(self.state_dir, "shims", name)

    def shim_name_budget(self) -> int:
        # The longest socket the shim makes is <dir>/exec-console.sock.
        return SUN_PATH_MAX - len(os.path.join(self.state_dir, "shims", "")) \
            - len("/exec-console.sock")
