"""Daemon settings: where state lives and which runtime and CRIU to use."""

import dataclasses
import os
import shutil

DEFAULT_LISTEN = "127.0.0.1:8888"
DEFAULT_STATE_DIR = "/run/containerd-py"
DEFAULT_DATA_DIR = "/var/lib/containerd-py"
# Where native/setup-host.sh puts a CRIU that works on this kernel (Debian 12
# ships one that fails `criu check`); falls back to `criu` on PATH.
PRIVATE_CRIU = "/opt/containerd-py/bin/criu"


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

    @property
    def containers_dir(self) -> str:
        return os.path.join(self.data_dir, "containers")

    @property
    def runtime_root(self) -> str:
        return os.path.join(self.state_dir, "runtime", os.path.basename(self.runtime))

    def shim_dir(self, container_id: str) -> str:
        return os.path.join(self.state_dir, "shims", container_id)
