"""After a crash: what a previous daemon started but never recorded.

A daemon killed between starting a shim and saving the record leaves a
runtime container, a shim, maybe an overlay mount, that no record lists.
Nothing would ever stop or delete them, so recovery removes them, the way
containerd's shim loader cleans up a shim it cannot reconnect to. Dirs of
records that could not be read are kept: their container may be the user's
to inspect.
"""

import json
import logging
import os
import shutil
import signal

from .runtime import rootfs

log = logging.getLogger("containerd_py.orphans")


async def remove_orphans(runtimes, shims_dir: str, known_dirs: set[str],
                         known_ids: set[str]) -> list[str]:
    """Delete runtime containers whose id is not in `known_ids`, and shim
    dirs not in `known_dirs` (killing their shim); returns what was removed."""
    removed = []
    for rt in runtimes:
        for cid in await _runtime_ids(rt):
            if cid not in known_ids:
                log.warning("removing %s container %s: no record of it (a crash "
                            "during its create?)", rt.name, cid)
                await rt.delete(cid, force=True)
                removed.append(cid)
    try:
        names = os.listdir(shims_dir)
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(shims_dir, name)
        if path in known_dirs or not os.path.isdir(path):
            continue
        log.warning("removing shim dir %s: no record of it", path)
        _kill_shim(path)
        rootfs.remove_overlay(os.path.join(path, "overlay"))
        shutil.rmtree(path, ignore_errors=True)
        removed.append(name)
    return removed


async def _runtime_ids(rt) -> list[str]:
    if not os.path.isdir(rt.root):
        return []
    rc, out, _ = await rt.run("list", "--format", "json", check=False)
    if rc != 0:
        return []
    try:
        return [c["id"] for c in json.loads(out or "[]") or []]
    except (ValueError, KeyError, TypeError):
        return []


def _kill_shim(shim_dir: str) -> None:
    try:
        with open(os.path.join(shim_dir, "shim.pid")) as f:
            pid = int(f.read().strip())
        # Only our shim: a pid can be reused by anything once it is gone.
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if b"containerd-py-shim" not in cmdline:
            return
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def remove_partial_checkpoints(bundles: set[str]) -> list[str]:
    """Checkpoint dirs a dump never committed (`.NAME.TOKEN.tmp`: the daemon
    died during the dump): never listed, never restorable, only disk."""
    removed = []
    for b in bundles:
        root = os.path.join(b, "checkpoints")
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                log.warning("removing %s: a checkpoint that was never completed",
                            os.path.join(root, name))
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                removed.append(os.path.join(root, name))
    return removed
