"""What the CRI needs of images: resolve a reference to a root filesystem
and an image config, list, pull (from the local store, then the mirror
directory), remove, and the store's disk usage.

Until the daemon has its image store, images here are unpacked root
filesystem directories: `<root>/<key>/rootfs` plus `image.json` (names and
the OCI image config). `--image-mirror DIR` holds the same layout per
reference (`DIR/<reference with / and : as _>/rootfs`, optional
`config.json`); a pull links the mirror's rootfs into the store.
"""

import dataclasses
import hashlib
import json
import os
import shutil

from ..errors import Conflict, NotFound


def normalise(ref: str) -> str:
    """`busybox` -> `docker.io/library/busybox:latest`, as containerd does."""
    name, digest = (ref.split("@", 1) + [""])[:2]
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + name
    last = name.rsplit("/", 1)[1]
    if not digest and ":" not in last:
        name += ":latest"
    return name + ("@" + digest if digest else "")


def _mirror_key(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_").replace("@", "_")


@dataclasses.dataclass
class ImageInfo:
    id: str
    repo_tags: list
    repo_digests: list
    size: int
    config: dict
    rootfs: str


class DirImageStore:
    def __init__(self, root: str, mirror: str | None):
        self.root, self.mirror = root, mirror
        os.makedirs(root, mode=0o700, exist_ok=True)

    def _load(self, key: str) -> ImageInfo | None:
        try:
            with open(os.path.join(self.root, key, "image.json")) as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        names = meta["names"]
        return ImageInfo(id="sha256:" + key, repo_tags=[n for n in names if "@" not in n],
                         repo_digests=[n for n in names if "@" in n],
                         size=meta.get("size", 0), config=meta.get("config", {}),
                         rootfs=os.path.join(self.root, key, "rootfs"))

    def _save_names(self, key: str, names: list[str]) -> None:
        path = os.path.join(self.root, key, "image.json")
        with open(path) as f:
            meta = json.load(f)
        meta["names"] = names
        with open(path + ".tmp", "w") as f:
            json.dump(meta, f)
        os.replace(path + ".tmp", path)

    def list(self) -> list[ImageInfo]:
        return [i for i in (self._load(k) for k in sorted(os.listdir(self.root))) if i]

    def find(self, ref: str) -> ImageInfo | None:
        ref = ref.strip()
        if not ref:
            return None
        key = ref.removeprefix("sha256:")
        if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
            return self._load(key)
        want = normalise(ref)
        return next((i for i in self.list() if want in i.repo_tags + i.repo_digests), None)

    def status(self, ref: str) -> ImageInfo:
        info = self.find(ref)
        if info is None:
            raise NotFound(f"no such image: {ref!r}", image=ref)
        return info

    async def pull(self, ref: str) -> ImageInfo:
        info = self.find(ref)
        if info is not None:
            return info
        name = normalise(ref)
        src = None
        if self.mirror:
            for cand in (_mirror_key(name), _mirror_key(ref)):
                if os.path.isdir(os.path.join(self.mirror, cand, "rootfs")):
                    src = os.path.realpath(os.path.join(self.mirror, cand))
                    break
        if src is None:
            where = f"the image mirror {self.mirror}" if self.mirror else \
                "any image mirror (the daemon has no --image-mirror)"
            raise NotFound(f"image {ref!r} is not in the local store nor in {where}",
                           image=ref)
        config = {}
        if os.path.exists(os.path.join(src, "config.json")):
            with open(os.path.join(src, "config.json")) as f:
                config = json.load(f)
        rootfs = os.path.realpath(os.path.join(src, "rootfs"))
        # One image per mirror entry: names that link to the same entry are
        # tags of one image, as in a registry.
        key = hashlib.sha256(src.encode()).hexdigest()
        existing = self._load(key)
        if existing is not None:
            self._save_names(key, existing.repo_tags + existing.repo_digests + [name])
            return self._load(key)
        d = os.path.join(self.root, key)
        os.makedirs(d, exist_ok=True)
        if not os.path.lexists(os.path.join(d, "rootfs")):
            os.symlink(rootfs, os.path.join(d, "rootfs"))
        with open(os.path.join(d, "image.json"), "w") as f:
            json.dump({"names": [name], "config": config, "size": _du(rootfs)}, f)
        return self._load(key)

    def remove(self, ref: str, in_use) -> None:
        info = self.find(ref)
        if info is None:
            return  # the CRI: removing an absent image is not an error
        names = info.repo_tags + info.repo_digests
        key = info.id.removeprefix("sha256:")
        want = normalise(ref)
        if want in names and len(names) > 1:
            # A name of an image with others: only that name goes (untag).
            self._save_names(key, [n for n in names if n != want])
            return
        if in_use(info.id):
            raise Conflict(f"image {ref!r} is used by a container", image=ref, status="in use")
        shutil.rmtree(os.path.join(self.root, info.id.removeprefix("sha256:")))

    def fs_usage(self) -> tuple[str, int, int]:
        return self.root, _du(self.root), sum(len(f) for _, _, f in os.walk(self.root))


def _du(path: str) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(base, f)).st_size
            except OSError:
                pass
    return total
