"""Network namespaces pinned by a bind mount under the daemon's run dir.

pyroute2 does the work as iproute2 does (`ip netns add`): it makes the
directory a shared mount point and bind-mounts a new namespace (here a
short-lived thread's, not a forked child's: see create) onto a file there, so the namespace
outlives every process in it and a daemon restarted after kill -9 finds it
again at the same path. The runtime joins it through the spec's
linux.namespaces `path`; CNI plugins enter it through CNI_NETNS.
"""

import asyncio
import ctypes
import json
import os
import sys
import threading

from pyroute2 import netns as _netns

from ..errors import RuntimeFailure

MNT_DETACH = 2
CLONE_NEWNET = 0x40000000
_lock = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)


def create(path: str) -> None:
    with _lock:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if exists(path):
            return
        if os.path.lexists(path):
            os.unlink(path)  # a mount point file left by a create that died
        _create_in_thread(path)


def _create_in_thread(path: str) -> None:
    """pyroute2's netns.create forks a child to unshare in, and a fork
    among the daemon's gRPC threads can crash the child (SIGSEGV: gRPC's
    fork handlers are skipped while its threads are busy). A network
    namespace belongs to a thread, not to the whole process: a thread of
    its own unshares, pyroute2 pins that thread's namespace (attach()
    mounts /proc/thread-self/ns/net, with the iproute2 steps for the
    directory), and the thread ends. Never a pooled thread: its namespace
    is no longer the daemon's."""
    result: dict = {}

    def run():
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            _netns.attach(path, "thread-self")
        except Exception as e:  # noqa: BLE001 -- re-raised in the caller
            result["error"] = e

    t = threading.Thread(target=run, name="netns-create")
    t.start()
    t.join()
    if "error" in result:
        if os.path.lexists(path) and not exists(path):
            os.unlink(path)
        raise result["error"]


def exists(path: str) -> bool:
    """Is a namespace mounted at path (not just the empty mount point)?"""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except FileNotFoundError:
        return False


def remove(path: str) -> None:
    """Unmount and remove the pin; the namespace goes away with its last
    process. When the directory is left empty, its own shared bind mount is
    undone too, so nothing of ours stays in /proc/mounts."""
    with _lock:
        if os.path.lexists(path):
            _libc.umount2(path.encode(), MNT_DETACH)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        d = os.path.dirname(path)
        try:
            if not os.listdir(d):
                _libc.umount2(d.encode(), MNT_DETACH)
        except FileNotFoundError:
            pass


def listing(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []



async def interfaces(path: str) -> list[dict]:
    """The interfaces inside the namespace as its processes see them, with
    their addresses and counters (netlink's IFLA_STATS64), read by pyroute2
    in a short-lived process that nsenter(1) put into the namespace: a
    namespace switch inside the daemon (pyroute2's NetNS forks a helper)
    is unsafe among its gRPC threads."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={path}", sys.executable, "-m", __name__,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeFailure(f"reading the interfaces in {path}: "
                             f"{err.decode(errors='replace').strip()[-500:]}")
    return json.loads(out)


def _interfaces_here() -> list[dict]:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        addrs: dict[int, list[str]] = {}
        for a in ipr.get_addr():
            addrs.setdefault(a["index"], []).append(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        out = []
        for link in ipr.get_links():
            st = link.get_attr("IFLA_STATS64") or {}
            out.append({"name": link.get_attr("IFLA_IFNAME"),
                        "mac": link.get_attr("IFLA_ADDRESS"), "up": bool(link["flags"] & 1),
                        "mtu": link.get_attr("IFLA_MTU"), "addresses": addrs.get(link["index"], []),
                        "rxBytes": st.get("rx_bytes", 0), "txBytes": st.get("tx_bytes", 0),
                        "rxPackets": st.get("rx_packets", 0), "txPackets": st.get("tx_packets", 0)})
        return out


if __name__ == "__main__":
    json.dump(_interfaces_here(), sys.stdout)
