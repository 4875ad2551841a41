"""What the daemon reports about itself and its host (`GET /info`): a
part of the supervisor, mixed into `Supervisor`."""

import os

import psutil

from .. import API_VERSION, __version__
from ..errors import DaemonError
from ..runtime import SUPPORTED
from ..states import Status


class SystemInfo:
    async def info(self) -> dict:
        counts = {s.value: 0 for s in Status}
        for c in self.containers.values():
            counts[c.record.status.value] += 1
        runtimes = {}
        for name in SUPPORTED:
            try:
                runtimes[name] = {"path": self.runtime(name).path,
                                  "version": await self.runtime(name).version()}
            except DaemonError as e:
                runtimes[name] = {"error": e.message}
        uname = os.uname()
        return {
            "version": __version__, "apiVersion": API_VERSION,
            "host": {"hostname": uname.nodename, "kernel": uname.release,
                     "os": _os_release(), **self.machine()},
            "defaultRuntime": self.default_runtime, "runtimes": runtimes,
            "criu": self.checkpointing.criu_status,
            "containers": {"total": len(self.containers), **counts},
            # Records that could not be read at start: their containers are
            # not managed (kept on disk for the user to look at).
            "damagedRecords": [{"id": k, "error": e} for k, e in self.store.damaged.items()],
            "stateDir": self.config.state_dir, "dataDir": self.config.data_dir,
            "listen": self.config.listen,
        }

    def machine(self) -> dict:
        return {"cpus": os.cpu_count(), "memory": psutil.virtual_memory().total}


def _os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(ln.rstrip().split("=", 1) for ln in f if "=" in ln)
        return fields.get("PRETTY_NAME", "").strip('"')
    except FileNotFoundError:
        return ""
