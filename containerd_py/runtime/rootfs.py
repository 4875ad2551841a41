"""Per-container writable root filesystems: an overlay over the bundle's
rootfs, so containers cloned from one checkpoint never see each other's
writes, nor write into the bundle."""

import ctypes
import ctypes.util
import errno
import os
import shutil

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MNT_DETACH = 2


def for_bundle(bundle: str, spec: dict, overlay: str | None) -> str:
    """The root filesystem of a bundle container: the bundle's own rootfs
    (its `root.path`, relative to the bundle), or an overlay over it in the
    container's `overlay` dir."""
    lower = os.path.join(bundle, (spec.get("root") or {}).get("path", "rootfs"))
    return mount_overlay(lower, overlay) if overlay else lower


def mount_overlay(lower: str, base: str) -> str:
    upper, work, merged = (os.path.join(base, d) for d in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.makedirs(d, exist_ok=True)
    if os.path.ismount(merged):
        return merged
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", merged.encode(), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay on {merged}: {os.strerror(err)}")
    return merged


def unmount(path: str) -> None:
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted: fine
            raise OSError(err, f"umount {path}: {os.strerror(err)}")


def remove_overlay(base: str) -> None:
    merged = os.path.join(base, "merged")
    if os.path.exists(merged):
        unmount(merged)
    shutil.rmtree(base, ignore_errors=True)
