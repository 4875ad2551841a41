"""Each container's writable layer over its image's layer snapshots (an
"active" snapshot, in containerd's words): the overlay mount, the lease
that keeps the layers while the container exists, and what is read from
the upper dir (changes, export, commit).

A mixin of ImageStore: it shares the store's lock, layout and collection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid

from ..errors import Conflict, InvalidArgument, NotFound
from ..events import now_ns, rfc3339
from ..runtime import rootfs
from . import archive, layers, refs

log = logging.getLogger("containerd_py.images")

# A mount's options must fit in one page; each lower dir costs ~100 bytes.
MOUNT_OPTS_MAX = 4000
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


class ContainerLayers:

    def _active(self, key: str, *parts: str) -> str:
        # A container's runtime id: a user's id, or a warm-pool member's,
        # which has a '+' that no user id can have (pools.py).
        if not KEY_RE.match(key):
            raise InvalidArgument(f"invalid container key {key!r}", field="id")
        return self._path("active", key, *parts)

    def lowerdirs(self, layer_ids: list[str]) -> list[str]:
        """The overlay's lower dirs, top layer first. A layer an image has
        twice (the same diff id at two places) is one snapshot: only its top
        place is kept, which gives the same files, since that top copy puts
        back whatever the layers between them changed of it."""
        out = []
        for d in reversed(layer_ids):
            path = os.path.join(self.snapshot_dir(d), "fs")
            if path not in out:
                out.append(path)
        return out

    def mount(self, image, key: str) -> str:
        """The root filesystem of container `key`: an overlay of the image's
        layer snapshots under the container's own upper dir (kept across
        unmounts: a restarted container keeps its writes). Returns the path
        of the merged dir. Idempotent; once mounted, the container stays on
        the layers it was created from (`image` may be an id then)."""
        base = self._active(key)
        lease_path = os.path.join(base, "lease.json")
        os.makedirs(base, exist_ok=True)
        if os.path.exists(lease_path):
            with open(lease_path) as f:
                lease = json.load(f)
        else:
            if isinstance(image, str):
                image = self.resolve(image)
            lease = {"image": image.id, "layers": image.layers,
                     "config": image.image_config}
            # The lease first: from here the layers outlive a forced rmi.
            with self._lock:
                layers.write_atomic(lease_path, json.dumps(lease).encode())
        return self._mount_lease(base, lease)

    def _mount_lease(self, base: str, lease: dict) -> str:
        lowers = self.lowerdirs(lease["layers"])
        if not lowers:
            empty = os.path.join(base, "empty")
            os.makedirs(empty, exist_ok=True)
            lowers = [empty]
        lower = ":".join(lowers)
        if len(lower) > MOUNT_OPTS_MAX:
            raise InvalidArgument(f"image has too many layers ({len(lowers)}) for one "
                                  "overlay mount on this data dir path")
        return rootfs.mount_overlay(lower, base)

    def rootfs(self, key: str) -> str:
        """The merged dir of a container, mounted again if needed (after a
        reboot of the host)."""
        base = self._active(key)
        lease = self._lease(key)
        return self._mount_lease(base, lease)

    def _lease(self, key: str) -> dict:
        try:
            with open(self._active(key, "lease.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise NotFound(f"container {key!r} has no image root filesystem", id=key) from None

    def upper(self, key: str) -> str:
        """Where container `key`'s own writes are (its overlay's upper dir):
        what a checkpoint archive carries as the container's filesystem
        changes, and where a container restored from one gets them back
        before its first mount."""
        return self._active(key, "upper")

    def unmount(self, key: str) -> None:
        rootfs.unmount(self._active(key, "merged"))

    def remove(self, key: str) -> None:
        """Unmount and delete the container's writable layer; the image's
        snapshots stay (unless a forced rmi left them to this lease)."""
        base = self._active(key)
        if not os.path.isdir(base):
            return
        rootfs.remove_overlay(base)
        with self._lock:
            shutil.rmtree(base, ignore_errors=True)
            self._gc()

    def prune(self, keep) -> list[str]:
        """Remove the writable layers of containers not in `keep` (left by a
        create that a crash interrupted); returns their keys."""
        gone = [k for k in os.listdir(self._path("active")) if k not in set(keep)]
        for key in gone:
            log.warning("removing the root filesystem of unknown container %s", key)
            self.remove(key)
        return gone

    def changes(self, key: str) -> list[dict]:
        lease = self._lease(key)
        return layers.changes(self._active(key, "upper"), self.lowerdirs(lease["layers"]))

    def export(self, key: str, fileobj) -> None:
        """The container's whole filesystem as a tar (blocking)."""
        layers.write_tree(self.rootfs(key), fileobj)

    def commit(self, key: str, name: str | None, author: str = "",
               message: str = ""):
        """A new image: the container's image plus its upper dir as the top
        layer (whiteouts and opaque dirs turned back into OCI ones)."""
        new_name = refs.normalise(name, "name") if name else None
        lease = self._lease(key)
        tmp = self._path("tmp", "commit-" + uuid.uuid4().hex[:12])
        os.makedirs(tmp)
        pinned = []
        try:
            tar_path = os.path.join(tmp, "layer.tar")
            with open(tar_path, "wb") as f:
                layers.write_diff(self._active(key, "upper"), f)
            with open(tar_path, "rb") as f:
                diff_id = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            pinned = list(lease["layers"]) + [diff_id]
            self._pin(pinned)
            for d in lease["layers"]:
                if not os.path.isdir(self.snapshot_dir(d)):
                    raise Conflict(f"a layer of container {key!r}'s image is gone", id=key)
            sizes = {}
            dest = os.path.join(tmp, "snap")
            if not os.path.isdir(self.snapshot_dir(diff_id)):
                sizes[diff_id] = self._unpack(tar_path, dest, diff_id)
            config = json.loads(json.dumps(lease["config"]))
            now = rfc3339(now_ns())
            config["created"] = now
            config.setdefault("rootfs", {"type": "layers"})["diff_ids"] = \
                list(lease["layers"]) + [diff_id]
            hist = {"created": now, "created_by": "containerd-py commit"}
            if author:
                hist["author"] = config["author"] = author
            if message:
                hist["comment"] = message
            config.setdefault("history", []).append(hist)
            raw = json.dumps(config, separators=(",", ":")).encode()
            cdigest = "sha256:" + hashlib.sha256(raw).hexdigest()
            plans = [archive.LayerPlan("", d, d) for d in config["rootfs"]["diff_ids"]]
            with self._lock:
                if sizes and not os.path.isdir(self.snapshot_dir(diff_id)):
                    os.rename(dest, self.snapshot_dir(diff_id))
                return self._store(raw, cdigest, None, plans, sizes,
                                   [new_name] if new_name else [])
        finally:
            self._unpin(pinned)
            shutil.rmtree(tmp, ignore_errors=True)
