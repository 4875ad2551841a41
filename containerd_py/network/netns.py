"""Network namespaces pinned by a bind mount under the daemon's run dir.

pyroute2 does the work as iproute2 does (`ip netns add`): it makes the
directory a shared mount point, unshares a child into a new namespace and
bind-mounts the child's /proc/PID/ns/net onto a file there, so the namespace
outlives every process in it and a daemon restarted after kill -9 finds it
again at the same path. The runtime joins it through the spec's
linux.namespaces `path`; CNI plugins enter it through CNI_NETNS.
"""

import ctypes
import os
import threading

from pyroute2 import netns as _netns

MNT_DETACH = 2
_lock = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)


def create(path: str) -> None:
    with _lock:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if exists(path):
            return
        if os.path.lexists(path):
            os.unlink(path)  # a mount point file left by a create that died
        _netns.create(path)


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
