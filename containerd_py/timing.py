"""Where the time of one start request goes: named phases, marked as the
request passes them, reported to the client in a `Server-Timing` header
(the benchmark reads it to draw the start-path breakdown).

The marks live in a context variable, so concurrent requests never mix
theirs and code outside a traced request pays one lookup per mark.
"""

import contextvars
import time

_current: contextvars.ContextVar["StartTrace | None"] = contextvars.ContextVar(
    "start_trace", default=None)


class StartTrace:
    def __init__(self):
        self.token = None
        self.done = False
        self.t0 = time.time_ns()
        self.last = self.t0
        self.phases: list[tuple[str, int]] = []

    def mark(self, phase: str, at_ns: int | None = None) -> None:
        """The time since the previous mark (or `at_ns`, a stamp taken by
        another process on the same clock) was spent in `phase`."""
        now = at_ns if at_ns is not None else time.time_ns()
        self.phases.append((phase, now - self.last))
        self.last = now

    def header(self) -> str:
        total = time.time_ns() - self.t0
        parts = [f"{name};dur={ns / 1e6:.3f}" for name, ns in self.phases]
        return ", ".join(parts + [f"total;dur={total / 1e6:.3f}"])


def begin() -> StartTrace:
    trace = StartTrace()
    trace.token = _current.set(trace)
    return trace


def end(trace: StartTrace) -> None:
    # A keep-alive connection serves its next requests in the same task:
    # they must not mark into this one.
    _current.reset(trace.token)
    # Tasks started during the request (the exit watcher) copied the
    # context and still see the trace: it must not grow in them.
    trace.done = True


def mark(phase: str, at_ns: int | None = None) -> None:
    trace = _current.get()
    if trace is not None and not trace.done:
        trace.mark(phase, at_ns)
