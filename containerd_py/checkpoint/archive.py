"""Tar archives that carry a checkpoint to another daemon: written in a
thread straight into an async sink (no copy on disk first), and extracted
from an async source with nothing allowed outside the target directory.

An archive ends with an END member: a stream cut at a member boundary is
otherwise indistinguishable from a complete one (tar's own end blocks are
optional to a streaming reader).
"""

import asyncio
import json
import os
import stat
import tarfile

END = "containerd-py-end.json"
# Whiteouts (0:0 character devices), fifos and the opaque-directory xattr
# exist only in an overlay's upper dir; CRIU images are plain files and the
# `parent` symlink of an incremental dump.
OPAQUE = "trusted.overlay.opaque"
CHUNK = 1 << 20


class ArchiveError(Exception):
    """The archive is corrupt, truncated or unsafe; nothing of it is kept."""


class _SyncWriter:
    """A file object for tarfile's stream mode whose writes are handed to
    an async `write` on the event loop (tarfile runs in a thread)."""

    def __init__(self, write, loop):
        self._write, self._loop, self.bytes = write, loop, 0
        self._buf = bytearray()

    def write(self, data) -> int:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            self.bytes += len(data)
            asyncio.run_coroutine_threadsafe(self._write(data), self._loop).result()


class _SyncReader:
    """A file object for tarfile's stream mode reading from an async
    `read(n)` (an aiohttp StreamReader) on the event loop."""

    def __init__(self, read, loop):
        self._read, self._loop, self.bytes = read, loop, 0

    def read(self, n: int = -1) -> bytes:
        data = asyncio.run_coroutine_threadsafe(self._read(n if n > 0 else CHUNK),
                                                self._loop).result()
        self.bytes += len(data)
        return data


class ArchivePlan:
    """What goes into one archive, in order: small JSON members, then trees
    of files (CRIU images, an upper dir)."""

    def __init__(self):
        self.items: list[tuple] = []

    def add_json(self, name: str, obj) -> "ArchivePlan":
        self.items.append(("bytes", name, json.dumps(obj, indent=1).encode()))
        return self

    def add_tree(self, arcname: str, path: str) -> "ArchivePlan":
        self.items.append(("tree", arcname, path))
        return self

    def _write(self, tar: tarfile.TarFile) -> int:
        count = 0
        for kind, name, what in self.items:
            if kind == "bytes":
                _add_bytes(tar, name, what)
                count += 1
            else:
                count += _add_tree(tar, name, what)
        _add_bytes(tar, END, json.dumps({"members": count}).encode())
        return count

    async def send(self, write) -> int:
        """Write the archive into `write(bytes)` (a coroutine function);
        returns the bytes written."""
        loop = asyncio.get_running_loop()
        out = _SyncWriter(write, loop)

        def build():
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                              bufsize=CHUNK) as tar:
                self._write(tar)
            out.flush()

        await asyncio.to_thread(build)
        return out.bytes

    def chunks(self):
        """The archive as an async iterator of chunks (an HTTP client body)."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        done = object()

        async def put(data):
            await queue.put(data)

        async def produce():
            try:
                await self.send(put)
            except BaseException as e:  # handed to the consumer
                await queue.put(e)
                return
            await queue.put(done)

        async def gen():
            task = asyncio.create_task(produce())
            try:
                while True:
                    item = await queue.get()
                    if item is done:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                if not task.done():
                    task.cancel()
                    # A blocked put in the thread waits on this loop: drain.
                    while not task.done():
                        try:
                            queue.get_nowait()
                        except asyncio.QueueEmpty:
                            await asyncio.sleep(0.01)

        return gen()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io
    import time
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o600, int(time.time())
    tar.addfile(ti, io.BytesIO(data))


def _add_tree(tar: tarfile.TarFile, arcname: str, root: str) -> int:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        base = arcname if rel == "." else f"{arcname}/{rel}"
        count += _add_one(tar, dirpath, base)
        for name in sorted(filenames) + [d for d in dirnames
                                         if os.path.islink(os.path.join(dirpath, d))]:
            count += _add_one(tar, os.path.join(dirpath, name), f"{base}/{name}")
    return count


def _add_one(tar: tarfile.TarFile, path: str, arcname: str) -> int:
    ti = tar.gettarinfo(path, arcname)
    if ti.isdir():
        try:
            if os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y":
                ti.pax_headers = {"SCHILY.xattr." + OPAQUE: "y"}
        except OSError:
            pass
    if ti.isreg():
        with open(path, "rb") as f:
            tar.addfile(ti, f)
    else:
        tar.addfile(ti)
    return 1


async def extract(read, dest: str, *, special_under: tuple[str, ...] = ()) -> list[str]:
    """Extract the archive read from `read(n)` into `dest` (which must not
    exist). Members may only land below `dest`; devices other than
    whiteouts, fifos and xattrs only below the `special_under` prefixes; a
    symlink outside those must point inside `dest`. Returns the member
    names. Raises ArchiveError (and leaves `dest` for the caller to
    remove) on anything corrupt, truncated or unsafe."""
    loop = asyncio.get_running_loop()
    src = _SyncReader(read, loop)
    os.makedirs(dest)
    return await asyncio.to_thread(_extract, src, os.path.realpath(dest), special_under)


def _extract(src, dest: str, special_under: tuple[str, ...]) -> list[str]:
    names, dirs, end = [], [], None
    try:
        with tarfile.open(fileobj=src, mode="r|", bufsize=CHUNK) as tar:
            for m in tar:
                if end is not None:
                    raise ArchiveError(f"member {m.name!r} after {END}")
                if m.name == END and m.isreg():
                    end = json.loads(tar.extractfile(m).read())
                    continue
                _extract_one(tar, m, dest, special_under, dirs)
                names.append(m.name)
    except tarfile.TarError as e:
        raise ArchiveError(f"not a valid tar archive: {e}") from None
    except (EOFError, ValueError, UnicodeError) as e:
        raise ArchiveError(f"corrupt archive: {e}") from None
    if end is None or end.get("members") != len(names):
        raise ArchiveError(f"truncated archive: {len(names)} members and no complete {END}")
    for path, mode in reversed(dirs):  # read-only dirs last, deepest first
        os.chmod(path, mode)
    return names


def _extract_one(tar, m: tarfile.TarInfo, dest: str, special_under, dirs) -> None:
    name = m.name.rstrip("/")
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]) \
            or parts[0] in ("", "..") or "\0" in name:
        raise ArchiveError(f"unsafe member name {m.name!r}")
    if parts[0] == ".":
        parts = parts[1:]
        if not parts:
            return
    path = os.path.join(dest, *parts)
    # Never write through a symlink: every parent must be a real directory
    # below dest (an earlier member could have made one a link).
    cur = dest
    for p in parts[:-1]:
        cur = os.path.join(cur, p)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ArchiveError(f"member {m.name!r} goes through a non-directory")
    special = any(name == s or name.startswith(s + "/") for s in special_under)
    if m.isdir():
        if not os.path.isdir(path) or os.path.islink(path):
            os.mkdir(path, 0o700)
        dirs.append((path, m.mode & 0o7777))
        if special and m.pax_headers.get("SCHILY.xattr." + OPAQUE) == "y":
            os.setxattr(path, OPAQUE, b"y", follow_symlinks=False)
    elif m.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            f = tar.extractfile(m)
            left = m.size
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise ArchiveError(f"truncated archive: {m.name!r} is cut short")
                out.write(chunk)
                left -= len(chunk)
        os.chmod(path, m.mode & 0o7777)
    elif m.issym():
        if not special:
            target = os.path.normpath(os.path.join(os.path.dirname(path), m.linkname))
            if os.path.isabs(m.linkname) or not (target + "/").startswith(dest + "/"):
                raise ArchiveError(f"symlink {m.name!r} -> {m.linkname!r} leaves the archive")
        os.symlink(m.linkname, path)
    elif m.islnk():
        target = os.path.normpath(os.path.join(dest, m.linkname))
        if os.path.isabs(m.linkname) or not target.startswith(dest + "/") \
                or os.path.islink(target) or not os.path.isfile(target):
            raise ArchiveError(f"hard link {m.name!r} -> {m.linkname!r} leaves the archive")
        os.link(target, path)
    elif special and m.ischr() and m.devmajor == 0 and m.devminor == 0:
        os.mknod(path, stat.S_IFCHR | 0o600, 0)  # an overlay whiteout
    elif special and m.isfifo():
        os.mkfifo(path, 0o600)
    else:
        raise ArchiveError(f"member {m.name!r}: type {m.type!r} is not allowed here")
    if not m.issym():
        os.chown(path, m.uid, m.gid, follow_symlinks=False)
        if not m.isdir():
            os.chmod(path, m.mode & 0o7777)
    else:
        os.lchown(path, m.uid, m.gid)
