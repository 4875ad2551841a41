"""Whether a stop signal sent to a container's init can have reached it.

The kernel drops a signal sent to the init of a PID namespace (its PID 1)
unless that process has a handler for it: the default action, terminate,
never applies to an init (SIGKILL and SIGSTOP from an ancestor namespace
aside). So a stop that arrives between a container's start and the moment
its program installs its SIGTERM handler is lost, and the stop then waits
out its whole grace period before SIGKILL, although the program would have
exited at once a few milliseconds later (critest stops a `top` right after
starting it and trips on exactly this). The supervisor looks before it
signals: if the init does not catch the signal yet, it watches for the
handler during the grace period and sends the signal again once the
handler is there. A process that ignores the signal (SIG_IGN), or never
installs a handler, still gets SIGKILL when the grace period ends.

The same loss happens a step earlier: StartContainer (`runc start`)
returns once runc's init has been let go, before that init has exec'd the
container's program. Until then PID 1 is runc's own init (a Go program
whose runtime catches every signal, so SigCgt says "caught"); a SIGTERM
it gets is gone with it at the exec. So a runtime's init still waiting to
exec counts as not catching the signal.
"""

import asyncio

# How often the init's handlers are looked at while a lost signal waits for
# one: a read of /proc/PID/status, cheap next to a grace period.
POLL_S = 0.05


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


# The names runtimes give their init before it execs the container's
# program (runc: "runc:[2:INIT]").
RUNTIME_INIT_PREFIXES = ("runc:[",)


def _program_catches(st: dict[str, str], sig: int) -> bool:
    """Does the container's own program (not a runtime's init about to exec
    it) have a handler for sig?"""
    if st.get("Name", "").startswith(RUNTIME_INIT_PREFIXES):
        return False
    return bool(int(st["SigCgt"], 16) >> (sig - 1) & 1)


def catches(pid: int, sig: int) -> bool:
    """Does pid's program have a handler installed for sig? (False when it
    is gone.)"""
    try:
        return _program_catches(_status(pid), sig)
    except (OSError, KeyError, ValueError):
        return False


def would_drop(pid: int, sig: int) -> bool:
    """Would sig sent to pid now be lost: pid is the init of its PID
    namespace and its program has no handler for it (yet)."""
    try:
        st = _status(pid)
        ns_init = st.get("NSpid", "").split()[-1:] == ["1"]
        return ns_init and not _program_catches(st, sig)
    except (OSError, KeyError, ValueError):
        return False


async def wait_exit(exited: asyncio.Event, pid: int, sig: int, dropped: bool,
                    timeout: float, resend) -> bool:
    """Wait up to `timeout` for `exited`. If the signal was sent while the
    init could not take it (`dropped`, from would_drop() just before the
    send), `resend()` it once as soon as the init catches it. True if it
    exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while dropped:
        left = deadline - loop.time()
        if left <= 0:
            return exited.is_set()
        try:
            await asyncio.wait_for(exited.wait(), min(left, POLL_S))
            return True
        except asyncio.TimeoutError:
            pass
        if catches(pid, sig):
            await resend()
            dropped = False
    try:
        await asyncio.wait_for(exited.wait(), max(0.0, deadline - loop.time()))
        return True
    except asyncio.TimeoutError:
        return False
