"""What the CRI needs of the daemon's image store (containerd_py/images):
resolve, list, pull, remove, disk usage, and where an image's /etc/passwd
is for user names.

There is no registry: PullImage resolves the reference in the store, then
loads it from the mirror directory (`--image-mirror DIR`), which holds
image archives (docker-archive or oci-archive) named for the reference
they stand for, with `/`, `:` and `@` written as `_`:
`DIR/docker.io_library_busybox_latest.tar` is `busybox`.
"""

import asyncio
import os

from ..errors import Conflict, InvalidArgument, NotFound
from ..images import Image, ImageStore, refs


def mirror_name(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_").replace("@", "_") + ".tar"


class CRIImages:
    def __init__(self, store: ImageStore, mirror: str | None):
        self.store, self.mirror = store, mirror

    def find(self, ref: str) -> Image | None:
        if not ref:
            return None
        try:
            return self.store.resolve(ref)
        except NotFound:
            return None

    def status(self, ref: str) -> Image:
        img = self.find(ref)
        if img is None:
            raise NotFound(f"no such image: {ref!r} (pull it first)", image=ref)
        return img

    def list(self) -> list[Image]:
        return self.store.list()

    async def pull(self, ref: str) -> Image:
        img = self.find(ref)
        if img is not None:
            return img
        name = refs.normalise(ref, "image")
        path = None
        if self.mirror:
            for cand in (mirror_name(name), mirror_name(ref)):
                if os.path.isfile(os.path.join(self.mirror, cand)):
                    path = os.path.join(self.mirror, cand)
                    break
        if path is None:
            where = (f"the image mirror {self.mirror} (no {mirror_name(name)} there)"
                     if self.mirror else "any mirror (the daemon has no --image-mirror)")
            raise NotFound(f"image {ref!r} is not in the local store nor in {where}",
                           image=ref)

        def load():
            with open(path, "rb") as f:
                return self.store.load(f)
        loaded = await asyncio.to_thread(load)
        img = self.find(ref)
        if img is None and len(loaded) == 1 and "@" not in ref:
            # The archive stands for this name even if it was saved under
            # another: give it the name it was pulled by.
            img = self.store.tag(loaded[0].id, name)
        if img is None:
            raise NotFound(f"{path} does not hold an image named {ref!r} "
                           f"(it has {[n for i in loaded for n in i.names]})", image=ref)
        return img

    def remove(self, ref: str, in_use_by) -> None:
        try:
            self.store.delete(ref, in_use_by=in_use_by)
        except NotFound:
            return  # the CRI: removing an absent image is not an error
        except Conflict as e:
            raise Conflict(e.message, image=ref, status="in use") from None

    def fs_usage(self) -> tuple[str, int, int]:
        root = self.store.root if hasattr(self.store, "root") else ""
        used = sum(i.size for i in self.store.list())
        return root, used, sum(len(i.layers) for i in self.store.list())

    def etc_root(self, img: Image) -> str | None:
        """The top-most layer that has /etc/passwd: what a container of the
        image reads its users from (before it has an overlay of its own)."""
        for d in self.store.lowerdirs(img.layers):
            if os.path.lexists(os.path.join(d, "etc", "passwd")):
                return d
        return None


def repo_digests(img: Image) -> list[str]:
    if not img.digest:
        return []
    return sorted({n.split("@", 1)[0].rsplit(":", 1)[0] + "@" + img.digest
                   if "@" not in n else n for n in img.names})


def check_ref(ref: str) -> str:
    if not ref:
        raise InvalidArgument("image.image is required", field="image")
    return ref
