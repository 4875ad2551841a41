"""Mount propagation of bind mounts: whether a host path's mount can carry
mounts into a container (slave or shared) and back out (shared), read from
the daemon's /proc/self/mountinfo as containerd's CRI checks it."""

import os

from ..errors import InvalidArgument


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field


def mount_of(path: str) -> tuple[str, set[str]]:
    """The mount point holding `path` and its propagation tags ("shared",
    "master"), from the last-mounted of the deepest matching mount points."""
    real = os.path.realpath(path)
    best, tags = "/", set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = _unescape(parts[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best = point
                optional = parts[6:parts.index("-")]
                tags = {o.split(":", 1)[0] for o in optional}
    return best, tags


def check(path: str, propagation: str, field: str) -> None:
    """rshared needs `path` on a shared mount, rslave on a shared or slave
    one: otherwise the container would silently get less than asked."""
    point, tags = mount_of(path)
    if propagation == "rshared" and "shared" not in tags:
        raise InvalidArgument(f"mount {path!r} asks for bidirectional propagation but it is "
                              f"on {point!r}, which is not a shared mount "
                              f"(mount --make-rshared {point})", field=field)
    if propagation == "rslave" and not tags & {"shared", "master"}:
        raise InvalidArgument(f"mount {path!r} asks for host-to-container propagation but "
                              f"it is on {point!r}, which is neither a shared nor a slave "
                              f"mount (mount --make-rshared {point})", field=field)


def rootfs_propagation(current: str | None, propagation: str) -> str | None:
    """The container's root propagation a bind mount needs: runc makes the
    container's mount tree rslave unless told otherwise, which stops
    container-to-host propagation even on an rshared bind mount."""
    if propagation == "rshared":
        return "rshared"
    if propagation == "rslave" and current not in ("rshared", "rslave"):
        return "rslave"
    return current
