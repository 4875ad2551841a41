"""A shim that died (kill -9, OOM) without writing its container's exit.

Its init may still run: nothing would collect its output or its exit any
more, and a new shim cannot adopt it. The daemon kills it and reports the
container stopped, with the reason and 128+SIGKILL, as containerd does for a
shim it cannot reach (`shim_load.go`: "cleanup dead shim").
"""

import logging
import os
import signal

from .events import now_ns
from .shim import ExitRecord

log = logging.getLogger("containerd_py.supervisor")


def lost_exit(cid: str, record) -> ExitRecord:
    pid = record.init.pid if record.init else 0
    if pid and alive(pid):
        log.warning("container %s: its shim died; killing its init %d, which no one "
                    "supervises any more", cid, pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        record.exit_reason = "its shim died: init was killed (SIGKILL)"
        return ExitRecord(pid, 128 + signal.SIGKILL, now_ns())
    log.warning("container %s: shim gone without an exit file", cid)
    record.exit_reason = "its shim died without recording init's exit"
    return ExitRecord(pid, 255, now_ns())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
