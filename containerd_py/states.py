"""The container state machine: statuses and which operation each allows.

One table, checked in one function, instead of `if` statements scattered
through the supervisor (the same table is served in the API docs).
"""

import enum

from .errors import Conflict


class Status(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


R, P, S = Status.RUNNING, Status.PAUSED, Status.STOPPED

ALLOWED: dict[str, frozenset[Status]] = {
    "start": frozenset({S}),
    "stop": frozenset({R, P}),
    "restart": frozenset({R, P, S}),
    "kill": frozenset({R, P}),
    "signal-process": frozenset({R, P}),
    "pause": frozenset({R}),
    "resume": frozenset({P}),
    "exec": frozenset({R}),
    "delete": frozenset({S}),
    "checkpoint": frozenset({R}),
    "update": frozenset({R, P}),
    "top": frozenset({R, P}),
    "stats": frozenset({R, P}),
    "resize": frozenset({R, P}),
    "attach": frozenset({R, P}),
    "network-attach": frozenset({R, P}),
    "network-detach": frozenset({R, P}),
    "network-interfaces": frozenset({R, P}),
    "rename": frozenset({R, P, S}),
    "wait": frozenset({R, P, S}),
    "logs": frozenset({R, P, S}),
}


def check(operation: str, status: Status, container_id: str) -> None:
    allowed = ALLOWED[operation]
    if status not in allowed:
        raise Conflict(
            f"cannot {operation} container {container_id!r}: it is {status.value}"
            f" (allowed when {', '.join(sorted(s.value for s in allowed))})",
            id=container_id,
            status=status.value,
        )
