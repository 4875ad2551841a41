"""Reading image archives: docker-archive (`docker save`, `podman save`)
and oci-archive (an OCI image layout in a tar).

The archive is read as a stream, once: a member that is a layer (a tar,
or a gzip) is unpacked as it arrives, into a staging dir, while both its
blob digest and its diff id (the digest of the uncompressed tar) are
computed; any other file is written to the staging dir while its sha256 is
computed. So nothing is held in memory and no byte is read twice. Then the
archive's manifests say which staged member is which blob, and every digest
they claim is checked against what was computed: a config must hash to its
id, an OCI blob to its name, a layer to the config's diff id. Any mismatch
refuses the whole archive, and the staging dir goes with it.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import platform
import posixpath
import tarfile
import zlib

from ..errors import InvalidArgument
from . import layers as layers_mod, refs
from .layers import CHUNK, safe_name

MANIFEST_V2 = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}
# Small JSON documents (manifests, configs, index) are read whole.
JSON_MAX = 16 * 1024 * 1024
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64"}


@dataclasses.dataclass
class Staged:
    path: str | None        # a file of the staging dir, or None for a layer:
    digest: str
    size: int
    unpacked: str | None = None   # ...unpacked into this dir (fs/ and size)
    diff_id: str | None = None    # the digest of its uncompressed tar


@dataclasses.dataclass
class LayerPlan:
    path: str          # the staged blob (when not unpacked while staging)
    diff_id: str       # what the uncompressed tar must hash to
    blob_digest: str
    staged: Staged | None = None


class _Chain(io.RawIOBase):
    """`head` (bytes already read from `rest`), then the rest of `rest`."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        return self.rest.readinto(b) or 0


def _is_layer(head: bytes) -> bool:
    """A tar (ustar/GNU magic at 257) or a gzip stream (layers are tar or
    tar+gzip; configs, manifests and indexes are JSON)."""
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def _unpack_member(head: bytes, src, dest: str, name: str) -> Staged:
    os.makedirs(os.path.join(dest, "fs"))
    raw = layers_mod.HashingReader(_Chain(head, src))
    tar = gzip.GzipFile(fileobj=raw, mode="rb") if head[:2] == b"\x1f\x8b" else raw
    try:
        diff_id, tar_size = layers_mod.unpack(tar, os.path.join(dest, "fs"))
    except (OSError, EOFError, zlib.error) as e:
        raise InvalidArgument(f"layer {name!r} cannot be read: {e}", member=name) from None
    while raw.read(CHUNK):  # what gzip leaves after its stream, so the digest is whole
        pass
    with open(os.path.join(dest, "size"), "w") as f:
        f.write(str(tar_size))
    return Staged(None, raw.digest(), raw.size, unpacked=dest, diff_id=diff_id)


@dataclasses.dataclass
class ImagePlan:
    """One image of an archive, every digest verified but the layers'
    diff ids (checked while unpacking them)."""
    config: bytes
    config_digest: str
    manifest: bytes | None
    layers: list[LayerPlan]
    names: list[str]


def stage(fileobj, dest: str) -> dict[str, Staged]:
    """Stream the archive into `dest`; its regular files by member name
    (symlinks in the archive, as `docker save` writes for repeated layers,
    resolved to what they point at)."""
    files: dict[str, Staged] = {}
    links: dict[str, str] = {}
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|*")
    except tarfile.ReadError as e:
        raise InvalidArgument(f"the body is not a tar archive: {e}") from None
    try:
        for n, m in enumerate(tar):
            name = safe_name(m.name, "archive member")
            if m.isreg():
                src = tar.extractfile(m)
                head = src.read(512)
                if _is_layer(head):
                    files[name] = _unpack_member(head, src, os.path.join(dest, f"u{n}"), name)
                    continue
                path = os.path.join(dest, f"f{n}")
                h, size = hashlib.sha256(head), len(head)
                with open(path, "wb") as out:
                    out.write(head)
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                files[name] = Staged(path, "sha256:" + h.hexdigest(), size)
            elif m.issym() or m.islnk():
                target = m.linkname if m.islnk() else posixpath.join(
                    posixpath.dirname(name), m.linkname)
                links[name] = safe_name(posixpath.normpath(target), "archive link")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InvalidArgument(f"the archive is truncated or corrupt: {e}") from None
    for name, target in links.items():
        for _ in range(8):
            if target in files or target not in links:
                break
            target = links[target]
        if target in files:
            files[name] = files[target]
    return files


def plans(files: dict[str, Staged]) -> list[ImagePlan]:
    if "manifest.json" in files:
        return _docker(files)
    if "index.json" in files:
        return _oci(files)
    raise InvalidArgument("not an image archive: it has neither manifest.json "
                          "(docker-archive) nor index.json (oci-archive)")


def _json(files: dict[str, Staged], name: str, what: str):
    st = files.get(name)
    if st is None:
        raise InvalidArgument(f"the archive lacks {what} {name!r}", member=name)
    if st.size > JSON_MAX or st.path is None:
        raise InvalidArgument(f"{what} {name!r} is not a JSON document", member=name)
    with open(st.path, "rb") as f:
        raw = f.read()
    try:
        return raw, json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"{what} {name!r} is not valid JSON: {e}", member=name) from None


def _blob_name(digest: str) -> str:
    if not isinstance(digest, str) or not refs.DIGEST_RE.match(digest):
        raise InvalidArgument(f"unsupported or invalid digest {digest!r} (sha256 only)",
                              digest=str(digest))
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _check(files: dict[str, Staged], name: str, digest: str, what: str) -> Staged:
    st = files.get(name)
    if st is None:
        raise InvalidArgument(f"the archive lacks {what} {name!r}", member=name)
    if st.digest != digest:
        raise InvalidArgument(f"digest mismatch for {what} {name!r}: the archive says "
                              f"{digest}, its content is {st.digest}", member=name,
                              expected=digest, actual=st.digest)
    return st


def _diff_ids(config: dict, n_layers: int, where: str) -> list[str]:
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != n_layers:
        raise InvalidArgument(f"{where}: rootfs.diff_ids does not list one digest per layer")
    for d in diff_ids:
        _blob_name(d)
    return diff_ids


def _names(tags, where: str) -> list[str]:
    out = []
    for t in tags or []:
        try:
            out.append(refs.normalise(t, "RepoTags"))
        except InvalidArgument as e:
            raise InvalidArgument(f"{where}: {e.message}", ref=str(t)) from None
    return out


def _docker(files: dict[str, Staged]) -> list[ImagePlan]:
    _, manifest = _json(files, "manifest.json", "docker-archive manifest")
    if not isinstance(manifest, list) or not manifest:
        raise InvalidArgument("manifest.json must be a non-empty list of images")
    out = []
    for i, entry in enumerate(manifest):
        where = f"manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise InvalidArgument(f"{where} needs Config and Layers")
        cname = safe_name(entry["Config"], "config")
        raw, config = _json(files, cname, "image config")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        # The config is named by its digest: `<hex>.json` or blobs/sha256/<hex>.
        stem = os.path.basename(cname).removesuffix(".json")
        if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) \
                and stem != digest.split(":")[1]:
            raise InvalidArgument(f"digest mismatch for image config {cname!r}: its content is "
                                  f"{digest}", member=cname, expected="sha256:" + stem,
                                  actual=digest)
        diff_ids = _diff_ids(config, len(entry["Layers"]), where)
        layers = []
        for lname, diff_id in zip(entry["Layers"], diff_ids):
            lname = safe_name(str(lname), "layer")
            st = files.get(lname)
            if st is None:
                raise InvalidArgument(f"the archive lacks layer {lname!r}", member=lname)
            if lname.startswith("blobs/sha256/"):
                _check(files, lname, "sha256:" + lname.rsplit("/", 1)[1], "layer")
            layers.append(LayerPlan(st.path, diff_id, st.digest, st))
        out.append(ImagePlan(raw, digest, None, layers, _names(entry.get("RepoTags"), where)))
    return out


def _oci(files: dict[str, Staged]) -> list[ImagePlan]:
    _, index = _json(files, "index.json", "OCI index")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise InvalidArgument("index.json lists no manifests")
    out = []
    for desc in manifests:
        plan = _oci_manifest(files, desc)
        ann = desc.get("annotations") or {}
        name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
        # A bare ref.name ("1.0") is a tag of nothing in particular: unnamed.
        if isinstance(name, str) and ("/" in name or ":" in name):
            plan.names = _names([name], "index.json")
        out.append(plan)
    return out


def _descriptor(desc, where: str) -> tuple[str, str]:
    if not isinstance(desc, dict):
        raise InvalidArgument(f"{where}: a descriptor must be an object")
    digest = desc.get("digest")
    return _blob_name(digest), digest


def _oci_manifest(files: dict[str, Staged], desc: dict, depth: int = 0) -> ImagePlan:
    name, digest = _descriptor(desc, "index.json")
    st = _check(files, name, digest, "manifest")
    raw, manifest = _json(files, name, "manifest")
    if not isinstance(manifest, dict):
        raise InvalidArgument(f"manifest {digest} is not an object")
    media = manifest.get("mediaType") or desc.get("mediaType")
    if media in (INDEX, DOCKER_LIST) or "manifests" in manifest:
        if depth > 2:
            raise InvalidArgument("image indexes nested too deeply")
        return _oci_manifest(files, _pick_platform(manifest.get("manifests") or []), depth + 1)
    if "size" in desc and desc["size"] != st.size:
        raise InvalidArgument(f"size mismatch for manifest {digest}", member=name)
    cname, cdigest = _descriptor(manifest.get("config"), f"manifest {digest}")
    _check(files, cname, cdigest, "image config")
    craw, config = _json(files, cname, "image config")
    descs = manifest.get("layers")
    if not isinstance(descs, list):
        raise InvalidArgument(f"manifest {digest} has no layers list")
    diff_ids = _diff_ids(config, len(descs), f"config {cdigest}")
    layers = []
    for ld, diff_id in zip(descs, diff_ids):
        lname, ldigest = _descriptor(ld, f"manifest {digest}")
        if ld.get("mediaType") not in LAYER_TYPES:
            raise InvalidArgument(f"layer {ldigest} has an unsupported media type "
                                  f"{ld.get('mediaType')!r} (tar and tar+gzip are)",
                                  mediaType=str(ld.get("mediaType")))
        lst = _check(files, lname, ldigest, "layer")
        if "size" in ld and ld["size"] != lst.size:
            raise InvalidArgument(f"size mismatch for layer {ldigest}", member=lname)
        layers.append(LayerPlan(lst.path, diff_id, ldigest, lst))
    return ImagePlan(craw, cdigest, raw, layers, [])


def _pick_platform(manifests: list) -> dict:
    if not manifests:
        raise InvalidArgument("an image index lists no manifests")
    arch = GOARCH.get(platform.machine(), platform.machine())
    for m in manifests:
        p = (m or {}).get("platform") or {}
        if p.get("os", "linux") == "linux" and p.get("architecture") == arch:
            return m
    return manifests[0]
