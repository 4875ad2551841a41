"""Layer tars <-> overlayfs directories.

`unpack` applies one OCI layer tar to an empty snapshot directory, turning
OCI whiteouts into overlayfs ones (`.wh.NAME` -> a 0/0 character device
NAME, `.wh..wh..opq` -> the `trusted.overlay.opaque=y` xattr on its
directory), as containerd's overlayfs snapshotter does. Nothing is ever
written outside the snapshot: member names with `..` or absolute paths are
refused, parents are never followed through symlinks, and hard links must
point inside the same layer.

`write_diff` does the reverse for a container's upper dir (commit), and
`changes` lists what an upper dir adds, changes and deletes over its lower
layers (podman's diff).
"""

import gzip
import hashlib
import io
import os
import stat
import tarfile

from ..errors import InvalidArgument

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
CHUNK = 1024 * 1024


class HashingReader(io.RawIOBase):
    """Reads through to `raw`, hashing and counting every byte."""

    def __init__(self, raw):
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        # Straight into the caller's buffer: layers are read through several
        # of these wrappers, and each copy costs on a 100 MiB layer.
        if hasattr(self.raw, "readinto"):
            n = self.raw.readinto(b) or 0
        else:
            data = self.raw.read(len(b))
            n = len(data)
            b[:n] = data
        with memoryview(b) as view:
            self.hash.update(view[:n])
        self.size += n
        return n

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def open_layer(path: str):
    """A layer blob, decompressed when it is gzip (OCI allows tar and
    tar+gzip; zstd is refused by the caller's media-type check)."""
    f = open(path, "rb")
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    return f


def safe_name(name: str, what: str = "layer member") -> str:
    """The member's path relative to the snapshot root, or InvalidArgument."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise InvalidArgument(f"{what} {name!r} escapes the layer (absolute path or '..')",
                              member=name)
    return "/".join(parts)


def _check_parents(root: str, rel: str) -> str:
    """Create the member's missing parent dirs, refusing to go through a
    symlink (which could point out of the snapshot). Returns the full path."""
    cur = root
    for part in rel.split("/")[:-1]:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"layer member {rel!r} goes through {part!r}, which is not "
                                  "a directory in this layer", member=rel)
    return os.path.join(root, rel)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil
        shutil.rmtree(path)
    else:
        os.unlink(path)


def unpack(fileobj, root: str) -> tuple[str, int]:
    """Apply the layer tar read from `fileobj` into the empty dir `root`;
    returns the digest of the uncompressed tar (the layer's diff id) and
    its size."""
    # A stream that is already being hashed (an uncompressed layer as it
    # arrives) is not hashed twice.
    reader = fileobj if isinstance(fileobj, HashingReader) else HashingReader(fileobj)
    buffered = io.BufferedReader(reader, CHUNK)
    dir_times = []
    try:
        tar = tarfile.open(fileobj=buffered, mode="r|")
    except tarfile.ReadError as e:
        raise InvalidArgument(f"layer is not a tar archive: {e}") from None
    try:
        for m in tar:
            _apply_member(tar, m, root, dir_times)
    except tarfile.TarError as e:
        raise InvalidArgument(f"layer tar is corrupt: {e}") from None
    # The diff id covers the whole tar, end-of-archive blocks included.
    while buffered.read(CHUNK):
        pass
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return reader.digest(), reader.size


def _apply_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root: str, dir_times: list) -> None:
    rel = safe_name(m.name)
    if not rel:
        return  # the root itself ("./")
    base = os.path.basename(rel)
    path = _check_parents(root, rel)
    if base == OPAQUE:
        os.setxattr(os.path.dirname(path), OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_PREFIX):
        target = os.path.join(os.path.dirname(path), base[len(WHITEOUT_PREFIX):])
        _remove(target)
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    mode = m.mode & 0o7777
    if m.isdir():
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(path)
                os.mkdir(path)
        except FileNotFoundError:
            os.mkdir(path)
    else:
        _remove(path)
        if m.isreg():
            src = tar.extractfile(m)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            target = os.path.join(root, safe_name(m.linkname, "hard link target"))
            st = _lstat(target)
            if st is None or not stat.S_ISREG(st.st_mode) or _through_symlink(
                    root, safe_name(m.linkname)):
                raise InvalidArgument(f"hard link {m.name!r} -> {m.linkname!r}: the target is "
                                      "not a file of this layer", member=m.name)
            os.link(target, path, follow_symlinks=False)
            return  # shares the target's inode: owner and mode are the target's
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | mode, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, mode)
        else:
            raise InvalidArgument(f"layer member {m.name!r} has an unsupported type {m.type!r}",
                                  member=m.name)
    os.lchown(path, m.uid, m.gid)
    for key, value in (m.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            try:
                os.setxattr(path, key[len("SCHILY.xattr."):],
                            value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError:
                pass  # e.g. a user.* xattr on a symlink: not fatal to the image
    if not m.issym():
        os.chmod(path, mode)  # after chown, which clears setuid bits
    if m.isdir():
        dir_times.append((path, m.mtime))
    else:
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def _through_symlink(root: str, rel: str) -> bool:
    cur = root
    for part in rel.split("/")[:-1]:
        cur = os.path.join(cur, part)
        st = _lstat(cur)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return True
    return False


def _lstat(path: str):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}-{id(data):x}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(top: str):
    """(relative path, lstat) of everything under `top`, parents first,
    sorted so that the same tree always gives the same tar."""
    stack = [""]
    while stack:
        rel = stack.pop()
        names = sorted(os.listdir(os.path.join(top, rel)), reverse=True)
        for name in names:
            r = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(top, r))
            yield r, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(r)


def _walk_sorted(top: str):
    out = []
    for rel, st in _walk(top):
        out.append((rel, st))
    out.sort(key=lambda x: x[0].split("/"))
    return out


def write_diff(upper: str, fileobj) -> None:
    """Write `upper` (an overlayfs upper dir) to `fileobj` as an OCI layer
    tar: whiteout devices become `.wh.NAME`, opaque dirs get `.wh..wh..opq`."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in _walk_sorted(upper):
            path = os.path.join(upper, rel)
            if is_whiteout(st):
                d, base = os.path.split(rel)
                ti = tarfile.TarInfo(os.path.join(d, WHITEOUT_PREFIX + base))
                ti.mtime = int(st.st_mtime)
                tar.addfile(ti)
                continue
            _add(tar, path, rel, st)
            if stat.S_ISDIR(st.st_mode) and is_opaque(path):
                ti = tarfile.TarInfo(f"{rel}/{OPAQUE}")
                ti.mtime = int(st.st_mtime)
                tar.addfile(ti)


def _add(tar: tarfile.TarFile, path: str, rel: str, st, links: dict | None = None) -> None:
    ti = tar.gettarinfo(path, arcname=rel)
    ti.uname = ti.gname = ""
    xattrs = {}
    try:
        for key in os.listxattr(path, follow_symlinks=False):
            if key.startswith("trusted.overlay."):
                continue  # overlayfs' own bookkeeping, not the image's
            xattrs["SCHILY.xattr." + key] = os.getxattr(
                path, key, follow_symlinks=False).decode("utf-8", "surrogateescape")
    except OSError:
        pass
    if xattrs:
        ti.pax_headers = xattrs
    if ti.isreg():
        with open(path, "rb") as f:
            tar.addfile(ti, f)
    else:
        tar.addfile(ti)


def write_tree(top: str, fileobj) -> None:
    """A plain tar of a directory tree (export of a mounted rootfs)."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in _walk_sorted(top):
            _add(tar, os.path.join(top, rel), rel, st)


def changes(upper: str, lowers: list[str]) -> list[dict]:
    """What `upper` changes over `lowers` (top first): podman's diff, as
    {"path", "kind"} with kind A (added), C (changed) or D (deleted)."""
    out = []
    for rel, st in _walk_sorted(upper):
        if is_whiteout(st):
            out.append({"path": "/" + rel, "kind": "D"})
            continue
        out.append({"path": "/" + rel, "kind": "C" if _in_lowers(rel, lowers) else "A"})
    return out


def _in_lowers(rel: str, lowers: list[str]) -> bool:
    """Does `rel` exist in the merged lower layers (whiteouts and opaque
    dirs of upper layers hiding lower ones)?"""
    parts = rel.split("/")
    for layer in lowers:
        # An opaque parent or a whiteout in this layer ends the search.
        hidden = False
        for i in range(1, len(parts)):
            parent = os.path.join(layer, *parts[:i])
            st = _lstat(parent)
            if st is not None and is_whiteout(st):
                return False
            if st is not None and stat.S_ISDIR(st.st_mode) and is_opaque(parent):
                # Found in this layer or nowhere below it.
                hidden = True
        st = _lstat(os.path.join(layer, rel))
        if st is not None:
            return not is_whiteout(st)
        if hidden:
            return False
    return False


def tree_size(top: str) -> int:
    total = 0
    for _, st in _walk(top):
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total
