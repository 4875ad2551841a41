"""The image store: content (configs, manifests) by digest, image records
with their names, layer snapshots shared by every image that has the layer,
and each container's writable layer (an "active" snapshot, containerd's
word) with a lease on the layers under it.

Layout under the store's root:

    blobs/sha256/HEX       image configs and manifests, by digest
    images/HEX.json        one record per image (HEX of its id)
    snapshots/HEX/         one unpacked layer, by its diff id
    active/KEY/            a container's upper, work and merged dirs, and
                           lease.json: the image and layers it stands on
    bundles/HEX/           the bundle containers of the image are created from
                           (runc's default config.json; their checkpoints)
    tmp/                   staging of loads and commits (cleared on start)

Reference counting is computed, not stored: a snapshot lives while an image
record or a lease lists it, so a crash can never leave a count wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import uuid

from ..errors import Conflict, InvalidArgument, NotFound
from ..events import now_ns, rfc3339
from . import archive, layers, refs
from .containers import ContainerLayers

log = logging.getLogger("containerd_py.images")

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


@dataclasses.dataclass
class Image:
    id: str                     # sha256:HEX of the config, as docker and podman
    names: list[str]
    digest: str                 # of the manifest
    size: int                   # uncompressed, all layers
    created: str | None
    layers: list[str]           # diff ids, bottom first
    layer_sizes: list[int]
    image_config: dict          # the whole OCI image config document
    loaded: str = ""

    @property
    def config(self) -> dict:
        """Entrypoint, Cmd, Env, WorkingDir, User, Labels, StopSignal,
        ExposedPorts... (the `config` of the OCI image config)."""
        return self.image_config.get("config") or {}

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    def to_api(self) -> dict:
        return {"id": self.id, "shortId": self.short_id, "names": self.names,
                "digest": self.digest, "size": self.size, "created": self.created,
                "loaded": self.loaded, "layers": self.layers,
                "architecture": self.image_config.get("architecture"),
                "os": self.image_config.get("os"), "config": self.config}

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


class ImageStore(ContainerLayers):
    def __init__(self, root: str):
        self.root = root
        for d in ("blobs/sha256", "images", "snapshots", "active", "bundles", "tmp"):
            os.makedirs(os.path.join(root, d), mode=0o700, exist_ok=True)
        # Leftovers of loads or commits a previous daemon did not finish.
        for name in os.listdir(self._path("tmp")):
            shutil.rmtree(self._path("tmp", name), ignore_errors=True)
        # Loads run in threads; the records and the snapshot set change
        # only under this lock. Layers being unpacked are pinned, so a
        # concurrent delete's collection leaves them alone.
        self._lock = threading.RLock()
        self._pinned: dict[str, int] = {}
        self._images: dict[str, Image] = {}
        for name in os.listdir(self._path("images")):
            if name.endswith(".json"):
                with open(self._path("images", name)) as f:
                    img = Image(**json.load(f))
                self._images[img.id] = img
        self._gc()

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def bundle_dir(self, image: Image) -> str:
        path = self._path("bundles", _hex(image.id))
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def snapshot_dir(self, diff_id: str) -> str:
        return self._path("snapshots", _hex(diff_id))

    # -- lookup ----------------------------------------------------------------

    def list(self) -> list[Image]:
        with self._lock:
            return sorted(self._images.values(), key=lambda i: (i.loaded, i.id))

    def resolve(self, ref: str) -> Image:
        """An image by name (normalised), name@digest, manifest digest, id
        or unique short id; NotFound naming the ref."""
        refs.check_ref(ref)
        with self._lock:
            images = list(self._images.values())
        if refs.looks_like_id(ref):
            hexpart = ref.removeprefix("sha256:")
            hits = [i for i in images if _hex(i.id).startswith(hexpart)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise InvalidArgument(f"short id {ref!r} matches {len(hits)} images: give more "
                                      "digits", ref=ref)
            if ref.startswith("sha256:") or len(hexpart) == 64:
                raise NotFound(f"no such image: {ref!r}", ref=ref)
            # else maybe a name that happens to be hex, like `cafe`
        r = refs.parse(ref)
        for img in images:
            if r.digest:
                if img.digest == r.digest or img.id == r.digest:
                    return img
            elif str(r) in img.names:
                return img
        raise NotFound(f"no such image: {ref!r}", ref=ref)

    # -- load ------------------------------------------------------------------

    def load(self, fileobj) -> list[Image]:
        """Import every image of a docker-archive or oci-archive read from
        `fileobj` (a stream; blocking: call it in a thread). All or
        nothing: a bad digest anywhere refuses the whole archive."""
        tmp = self._path("tmp", "load-" + uuid.uuid4().hex[:12])
        os.makedirs(tmp)
        pinned: list[str] = []
        try:
            staged = os.path.join(tmp, "staged")
            os.makedirs(staged)
            files = archive.stage(fileobj, staged)
            plans = archive.plans(files)
            for p in plans:
                for layer in p.layers:
                    pinned.append(layer.diff_id)
            self._pin(pinned)
            unpacked = {}
            sizes = {}
            for p in plans:
                for layer in p.layers:
                    if layer.diff_id in unpacked or os.path.isdir(self.snapshot_dir(layer.diff_id)):
                        continue
                    st = layer.staged
                    if st is not None and st.unpacked:  # while it streamed in
                        if st.diff_id != layer.diff_id:
                            raise InvalidArgument(
                                f"digest mismatch for layer {layer.diff_id}: its uncompressed "
                                f"content is {st.diff_id}", expected=layer.diff_id,
                                actual=st.diff_id)
                        dest = st.unpacked
                        sizes[layer.diff_id] = self._snapshot_size_at(dest)
                    else:
                        dest = os.path.join(tmp, "snap-" + _hex(layer.diff_id)[:16])
                        sizes[layer.diff_id] = self._unpack(layer.path, dest, layer.diff_id)
                    unpacked[layer.diff_id] = dest
            with self._lock:
                for diff_id, dest in unpacked.items():
                    if not os.path.isdir(self.snapshot_dir(diff_id)):
                        os.rename(dest, self.snapshot_dir(diff_id))
                return [self._store(p.config, p.config_digest, p.manifest, p.layers, sizes,
                                    p.names) for p in plans]
        finally:
            self._unpin(pinned)
            shutil.rmtree(tmp, ignore_errors=True)

    def _unpack(self, blob: str, dest: str, diff_id: str) -> int:
        """Unpack a layer blob into `dest`; refuses it if its tar does not
        hash to the diff id the config says. Returns the tar's size."""
        os.makedirs(os.path.join(dest, "fs"))
        src = layers.open_layer(blob)
        try:
            actual, size = layers.unpack(src, os.path.join(dest, "fs"))
        except (OSError, EOFError) as e:
            raise InvalidArgument(f"layer {diff_id}: cannot read it: {e}") from None
        finally:
            src.close()
        if actual != diff_id:
            raise InvalidArgument(f"digest mismatch for layer {diff_id}: its uncompressed "
                                  f"content is {actual}", expected=diff_id, actual=actual)
        with open(os.path.join(dest, "size"), "w") as f:
            f.write(str(size))
        return size

    def _store(self, config_raw: bytes, config_digest: str, manifest_raw: bytes | None,
               layer_plans, sizes: dict, names: list[str]) -> Image:
        """Write the blobs and the record of a verified, unpacked image
        (caller holds the lock); names move to it from any other image."""
        config = json.loads(config_raw)
        diff_ids = [lp.diff_id for lp in layer_plans]
        layer_sizes = [sizes.get(d) or self._snapshot_size(d) for d in diff_ids]
        if manifest_raw is None:
            # A docker-archive has no manifest; make the OCI one a registry
            # would hold for these uncompressed layers, so the image has a
            # digest to be named by.
            manifest_raw = json.dumps({
                "schemaVersion": 2, "mediaType": archive.MANIFEST_V2,
                "config": {"mediaType": CONFIG_TYPE, "digest": config_digest,
                           "size": len(config_raw)},
                "layers": [{"mediaType": LAYER_TAR, "digest": d, "size": s}
                           for d, s in zip(diff_ids, layer_sizes)]},
                separators=(",", ":"), sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(manifest_raw).hexdigest()
        for raw, d in ((config_raw, config_digest), (manifest_raw, digest)):
            path = self._path("blobs", "sha256", _hex(d))
            if not os.path.exists(path):
                layers.write_atomic(path, raw)
        img = self._images.get(config_digest)
        if img is None:
            img = Image(id=config_digest, names=[], digest=digest, size=sum(layer_sizes),
                        created=config.get("created"), layers=diff_ids,
                        layer_sizes=layer_sizes, image_config=config,
                        loaded=rfc3339(now_ns()))
        for n in names:
            self._take_name(n, img)
        self._save(img)
        return img

    def _snapshot_size(self, diff_id: str) -> int:
        return self._snapshot_size_at(self.snapshot_dir(diff_id))

    @staticmethod
    def _snapshot_size_at(path: str) -> int:
        try:
            with open(os.path.join(path, "size")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def _take_name(self, name: str, img: Image) -> None:
        for other in list(self._images.values()):
            if other is not img and name in other.names:
                other.names.remove(name)
                self._save(other)  # left untagged, as docker and podman do
        if name not in img.names:
            img.names.append(name)

    def _save(self, img: Image) -> None:
        self._images[img.id] = img
        layers.write_atomic(self._path("images", _hex(img.id) + ".json"),
                      json.dumps(img.to_json()).encode())

    def _pin(self, diff_ids) -> None:
        with self._lock:
            for d in diff_ids:
                self._pinned[d] = self._pinned.get(d, 0) + 1

    def _unpin(self, diff_ids) -> None:
        with self._lock:
            for d in diff_ids:
                self._pinned[d] -= 1
                if not self._pinned[d]:
                    del self._pinned[d]

    # -- names and deletion ----------------------------------------------------------

    def tag(self, ref: str, name: str) -> Image:
        new = refs.normalise(name, "name")
        img = self.resolve(ref)
        with self._lock:
            self._take_name(new, img)
            self._save(img)
        return img

    def delete(self, ref: str, force: bool = False, in_use_by=()) -> dict:
        """Remove a name, or the image when it is named by id, digest or its
        last name. 409 while containers use it (`in_use_by`, or this store's
        own leases) unless `force`; a forced delete keeps the layers those
        containers stand on until they are gone."""
        img = self.resolve(ref)
        with self._lock:
            if not refs.looks_like_id(ref) and "@" not in ref and len(img.names) > 1:
                name = refs.normalise(ref)
                img.names.remove(name)
                self._save(img)
                return {"untagged": [name], "deleted": None}
            users = sorted(set(in_use_by) | {k for k, lease in self._leases().items()
                                            if lease.get("image") == img.id})
            if users and not force:
                raise Conflict(f"image {ref!r} is in use by containers {users}: delete them "
                               "first or use force", ref=ref, id=img.id, containers=users)
            os.unlink(self._path("images", _hex(img.id) + ".json"))
            del self._images[img.id]
            self._gc()
            return {"untagged": img.names, "deleted": img.id}

    def _leases(self) -> dict[str, dict]:
        out = {}
        for key in os.listdir(self._path("active")):
            try:
                with open(self._path("active", key, "lease.json")) as f:
                    out[key] = json.load(f)
            except (OSError, ValueError):
                continue
        return out

    def _gc(self) -> None:
        """Remove snapshots and blobs that no image, lease or load in
        progress uses (caller holds the lock, or is the constructor)."""
        with self._lock:
            used = set(self._pinned)
            blobs = set()
            for img in self._images.values():
                used.update(img.layers)
                blobs.update((img.id, img.digest))
            images = set(self._images)
            for lease in self._leases().values():
                used.update(lease.get("layers", []))
                images.add(lease.get("image"))
            for name in os.listdir(self._path("bundles")):
                if "sha256:" + name not in images:
                    shutil.rmtree(self._path("bundles", name), ignore_errors=True)
            for name in os.listdir(self._path("snapshots")):
                if "sha256:" + name not in used:
                    shutil.rmtree(self._path("snapshots", name), ignore_errors=True)
                    log.info("removed layer snapshot %s", name[:12])
            for name in os.listdir(self._path("blobs", "sha256")):
                if "sha256:" + name not in blobs:
                    os.unlink(self._path("blobs", "sha256", name))

    def disk_usage(self) -> dict:
        return {"snapshots": len(os.listdir(self._path("snapshots"))),
                "active": len(os.listdir(self._path("active")))}
