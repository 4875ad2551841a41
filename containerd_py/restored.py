"""What a restore leaves undone, put right once the restored processes run.

- The loopback. `runc run` brings `lo` up in a network namespace it
  creates. A checkpoint does not carry that namespace (runc leaves it out of
  CRIU's images: there is no netdev or ifaddr image), and `runc restore`
  puts the restored processes into a fresh namespace whose `lo` stays down,
  so a restored web server listens but nothing inside reaches 127.0.0.1
  ("Network is unreachable"). Users expect a restored container's loopback
  to work as it did before the checkpoint.
- A writable root. A restore always runs on an overlay of its own (clones
  must never write into the bundle they share), and the runtime config
  says its root is writable. CRIU 4.2 restores the root mount's flags from
  the image, though, so a checkpoint of a container with a read-only root
  gives a clone a read-only root (CRIU 4.1 left it writable).

Both happen inside the container's namespaces. lo is set up by the real
tools (util-linux's nsenter, iproute2's ip). The remount runs in a child
Python that enters the mount namespace with setns(2) and calls mount(2)
itself: after entering it every path is the container's, so no host binary
could be found there, and entering a namespace from a thread of the daemon
itself would move that thread (Python 3.11 has no os.setns either).
"""

import asyncio
import logging
import os
import shutil
import sys

log = logging.getLogger("containerd_py.restored")

# Runs as `python -I -S -c`, argv[1] = /proc/PID/ns/mnt. Every import comes
# before setns: afterwards the interpreter's own files are out of sight.
_REMOUNT_ROOT_RW = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
if libc.setns(fd, 0x00020000) != 0:  # CLONE_NEWNS; root and cwd become the namespace's
    sys.exit("setns: " + os.strerror(ctypes.get_errno()))
flag = os.statvfs("/").f_flag
if not flag & os.ST_RDONLY:
    sys.exit(0)
# MS_REMOUNT|MS_BIND sets the per-mount flags to exactly these: keep all
# but read-only.
flags = 0x20 | 0x1000
for st, ms in ((os.ST_NOSUID, 0x2), (os.ST_NODEV, 0x4), (os.ST_NOEXEC, 0x8),
               (os.ST_NOATIME, 0x400), (os.ST_NODIRATIME, 0x800), (os.ST_RELATIME, 0x200000)):
    if flag & st:
        flags |= ms
if libc.mount(None, b"/", None, flags, None) != 0:
    sys.exit("mount -o remount,bind,rw /: " + os.strerror(ctypes.get_errno()))
"""


async def _run(argv: list[str], what: str) -> str | None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return f"{what} timed out"
    if proc.returncode != 0:
        return err.decode(errors="replace").strip() or f"{what} exited {proc.returncode}"
    return None


def _own_ns(pid: int, kind: str) -> bool:
    """Is the container's `kind` namespace the daemon's own (the host's)?"""
    a, b = os.stat(f"/proc/{pid}/ns/{kind}"), os.stat(f"/proc/self/ns/{kind}")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


async def loopback_up(pid: int) -> str | None:
    """Set `lo` up in the network namespace of host pid `pid`, unless that is
    the daemon's own (a container on the host network: never touch the
    host's interfaces). Returns None, or why it could not."""
    try:
        if _own_ns(pid, "net"):
            return None
    except OSError as e:
        return f"cannot read the network namespace of pid {pid}: {e.strerror}"
    nsenter, ip = shutil.which("nsenter"), shutil.which("ip")
    if not nsenter or not ip:
        return "nsenter or ip (util-linux, iproute2) not on PATH"
    return await _run([nsenter, f"--net=/proc/{pid}/ns/net", ip, "link", "set", "lo", "up"],
                      "ip link set lo up")


# Per-mount flags a bind remount must repeat (it sets them to exactly those
# given), as mountinfo spells them.
_MOUNT_FLAGS = ("nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime",
                "strictatime")


def _root_mount_options(pid: int) -> list[str] | None:
    """The per-mount options of the topmost mount on "/" of pid's mount
    namespace, from the host's side (/proc/PID/mountinfo)."""
    opts = None
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and fields[4] == "/":
                opts = fields[5].split(",")
    return opts


async def _remount_with_mount_n(pid: int) -> str | None:
    """util-linux's `mount -N` enters the namespace for the mount(2) call
    alone, so the host's binary does it: one exec, against a Python
    child's start-up (~20 ms on the restore path)."""
    mount = shutil.which("mount")
    if not mount:
        return "no mount (util-linux) on PATH"
    try:
        opts = _root_mount_options(pid)
    except OSError as e:
        return f"cannot read the mounts of pid {pid}: {e.strerror}"
    if opts is None:
        return f"pid {pid} has no root mount"
    if "ro" not in opts:
        return None
    keep = [o for o in opts if o in _MOUNT_FLAGS]
    return await _run([mount, "-N", f"/proc/{pid}/ns/mnt", "-o",
                       ",".join(["remount", "bind", "rw", *keep]), "/"],
                      "mount -o remount,bind,rw /")


async def root_writable(pid: int) -> str | None:
    """Make the root mount of host pid `pid`'s mount namespace writable again
    (a no-op when it is). Never the daemon's own namespace."""
    try:
        if _own_ns(pid, "mnt"):
            return None
    except OSError as e:
        return f"cannot read the mount namespace of pid {pid}: {e.strerror}"
    if await _remount_with_mount_n(pid) is None:
        return None
    # An older mount(8) without -N: a Python child that enters the namespace.
    return await _run([sys.executable, "-I", "-S", "-c", _REMOUNT_ROOT_RW,
                       f"/proc/{pid}/ns/mnt"], "remount of / read-write")
