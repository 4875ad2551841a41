"""Fault injection for tests, as containerd's failpoints: the daemon kills
itself with SIGKILL when it reaches the step named in CONTAINERD_PY_FAILPOINT,
so a test can check what a crash at exactly that moment leaves behind and
what a restarted daemon makes of it.

Steps: create-before-shim (the runtime bundle and overlay exist, no shim
yet), create-after-shim (the shim and init run, the record is not saved),
checkpoint-during-dump (CRIU is dumping), pool-claim-answered (a warm
pool's claim has been answered; the member's record is still in the
pool's store).
"""

import os
import signal

ENV = "CONTAINERD_PY_FAILPOINT"
_ARMED = os.environ.get(ENV, "")


def hit(step: str) -> None:
    if _ARMED == step:
        os.kill(os.getpid(), signal.SIGKILL)
