"""CreateContainer from a checkpoint archive: the other half of
CheckpointContainer (KEP-2008), as CRI-O and containerd 2.x do it.

When a ContainerConfig's `image.image` is an absolute path, it names a
checkpoint archive, never an image (an image reference cannot start with
`/`). The archive is the daemon's own checkpoint export format,
`containerd-py-checkpoint/1` (checkpoint/archive.py, service.py): a tar
whose first member is manifest.json, then the spec the container ran with
(config.json), the CRIU images (checkpoint/), its writable layer's changes
(rootfs-diff/), the CRI's own record of it (cri.json: the image as the
caller named it) and an end member. A REST export of a container made
from an image is one too.

The container is created in the new pod: the archive's spec with the new
pod's net, IPC and UTS namespaces (runc's restore hands CRIU the pinned
netns as the external one it was dumped with, and joins the others), its
/etc files, the new config's mounts, annotations and resources, over the
same image the checkpoint was taken on (which must be in the store). Its
writable layer is its own, seeded with the archive's rootfs-diff. Its
StartContainer restores the processes instead of a cold start.

Nothing is created until the archive is read and checked: a path that
does not exist is NotFound, anything that is not a complete archive of
ours is InvalidArgument, both naming the path.
"""

import contextlib
import copy
import dataclasses
import glob
import json
import os
import shutil
import struct
import tarfile
import uuid

from ..checkpoint.archive import ArchiveError, extract
from ..checkpoint.service import ARCHIVE_FORMAT, read_manifest
from ..checkpoint.store import META
from ..errors import DaemonError, InvalidArgument, NotFound
from ..runtime.settings import ContainerSettings
from . import spec as spec_mod
from .sandbox import Sandbox, pod_hostname

# The CRI's own member of an archive CheckpointContainer writes.
CRI_MEMBER = "cri.json"
FIELD = "config.image.image"
# OCI namespace types and the sandbox's names for the ones a pod pins.
POD_NAMESPACES = {"network": "net", "ipc": "ipc", "uts": "uts", "pid": "pid"}
ETC_FILES = ("hosts", "hostname", "resolv.conf")


def cri_member(c) -> dict:
    """What CheckpointContainer adds to the archive of CRI container `c`."""
    return {"image": c.image_ref, "imageId": c.image_id, "name": c.config.metadata.name}


def archive_path(ref: str) -> str | None:
    """The checkpoint archive `ref` names, or None when it is an image
    reference. NotFound/InvalidArgument naming it when it is a path that
    cannot be an archive."""
    if not ref.startswith("/"):
        return None
    path = os.path.normpath(ref)
    if not os.path.lexists(path):
        raise NotFound(f"checkpoint archive {ref!r} does not exist", field=FIELD, image=ref)
    if not os.path.isfile(path):
        raise InvalidArgument(f"{ref!r} is not a checkpoint archive: not a regular file",
                              field=FIELD, image=ref)
    return path


@dataclasses.dataclass
class Staged:
    """An archive read, checked and extracted into a dir of its own."""
    path: str      # the archive
    dir: str       # what it held
    meta: dict     # the checkpoint's (CheckpointMeta's fields)
    spec: dict     # the spec the container was dumped with
    image: object  # the store's Image it was taken on
    shown: str     # that image as its caller named it


@dataclasses.dataclass
class Restored:
    container: object  # the supervisor's Container
    image: str         # the image as the checkpointed container's caller named it
    image_id: str


class CheckpointRestore:
    def __init__(self, sup, images, containers):
        self.sup, self.images, self.containers = sup, images, containers

    @contextlib.asynccontextmanager
    async def staged(self, path: str | None):
        """The archive at `path` extracted and checked (None for None),
        removed on the way out. Done before the CRI's lock is taken: a big
        archive holds up no other pod's calls."""
        if path is None:
            yield None
            return
        self.sup.checkpointing.criu()  # Unavailable before anything is read
        _peek(path)
        tmp = os.path.join(self.sup.checkpointing.received_dir,
                           f".cri-restore-{uuid.uuid4().hex[:12]}")
        try:
            yield await self._stage(path, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def _stage(self, path: str, tmp: str) -> Staged:
        with open(path, "rb") as f:
            async def read(n):
                return f.read(n)  # a local file: short reads, no thread needed
            try:
                await extract(read, tmp, special_under=("rootfs-diff",))
            except ArchiveError as e:
                raise InvalidArgument(f"checkpoint archive {path!r}: {e}", field=FIELD,
                                      image=path) from None
        try:
            manifest = read_manifest(tmp)
        except InvalidArgument as e:
            raise InvalidArgument(f"{path!r}: {e.message}", field=FIELD, image=path) from None
        settings = manifest["container"]
        spec = _load(tmp, "config.json", path, required=True)
        cri = _load(tmp, CRI_MEMBER, path) or {}
        img_ref = (settings.get("image") or {}).get("id") or \
            (settings.get("image") or {}).get("ref")
        if not img_ref:
            raise InvalidArgument(f"checkpoint archive {path!r} is of a container made "
                                  "from a bundle, not an image: the CRI can only restore "
                                  "an image's container", field=FIELD, image=path)
        try:
            image = self.images.status(img_ref)
        except NotFound:
            named = cri.get("image") or img_ref
            raise NotFound(f"checkpoint archive {path!r} was taken on image {named!r}, "
                           "which is not in the image store (pull it first)",
                           field=FIELD, image=named) from None
        shown = cri.get("image") or (image.names[0] if image.names else image.id)
        return Staged(path=path, dir=tmp, meta=manifest["checkpoint"], spec=spec,
                      image=image, shown=shown)

    async def create(self, cid: str, staged: Staged, cfg, sb: Sandbox, *, name: str,
                     labels: dict) -> Restored:
        """Container `cid` in pod `sb`, to be restored from the staged
        archive by its first start. Leaves nothing behind when it fails
        before the supervisor has the container (after that, deleting the
        container removes everything)."""
        meta, image = staged.meta, staged.image
        spec = retarget(staged.spec, cfg, sb)
        readonly = bool(spec.get("root", {}).get("readonly"))
        home = os.path.join(self.sup.checkpointing.received_dir, cid)
        try:
            # Into the container's own places: the CRIU images where a
            # received checkpoint lives, the filesystem changes as its
            # writable layer, the spec as its CRI bundle.
            os.mkdir(home, 0o700)
            images_dir = os.path.join(home, "checkpoints", meta["name"])
            os.makedirs(os.path.dirname(images_dir))
            os.rename(os.path.join(staged.dir, "checkpoint"), images_dir)
            with open(os.path.join(images_dir, META), "w") as f:
                json.dump(meta, f)
            if sb.ns_path("uts"):
                rehost(images_dir, pod_hostname(sb.config))
            diff = os.path.join(staged.dir, "rootfs-diff")
            if os.path.isdir(diff):
                upper = self.sup.images.upper(cid)
                os.makedirs(os.path.dirname(upper), exist_ok=True)
                shutil.move(diff, upper)
            bundle = self.containers.write_bundle(cid, spec)
            c = await self.sup.create(
                cid, bundle, name=name, labels=labels, image=image.id, start=False,
                checkpoint=meta["name"], checkpoint_home=home,
                settings=ContainerSettings(readonly_rootfs=True if readonly else None))
        except BaseException:
            if cid not in self.sup.containers:
                shutil.rmtree(home, ignore_errors=True)
                self.sup.images.remove(cid)
                self.containers.remove(cid)
            raise
        self.sup.events.emit("import-checkpoint", cid, checkpoint=meta["name"],
                             archive=staged.path)
        return Restored(container=c, image=staged.shown, image_id=image.id)


def _peek(path: str) -> None:
    """Refuse what is not one of our archives by its first member, before
    anything is extracted (a docker image tar, a text file)."""
    try:
        with tarfile.open(path, "r|") as tar:
            first = tar.next()
            if first is None or first.name != "manifest.json" or not first.isreg():
                raise InvalidArgument(
                    f"{path!r} is not a checkpoint archive: it does not begin with "
                    f"manifest.json (format {ARCHIVE_FORMAT})", field=FIELD, image=path)
            manifest = json.loads(tar.extractfile(first).read(1 << 20))
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as e:
        raise InvalidArgument(f"{path!r} is not a checkpoint archive: {e}", field=FIELD,
                              image=path) from None
    except OSError as e:
        raise InvalidArgument(f"checkpoint archive {path!r}: {e.strerror}", field=FIELD,
                              image=path) from None
    got = manifest.get("format") if isinstance(manifest, dict) else None
    if got != ARCHIVE_FORMAT:
        raise InvalidArgument(f"{path!r} is not a checkpoint archive: format {got!r}, "
                              f"expected {ARCHIVE_FORMAT}", field=FIELD, image=path)


def _load(root: str, member: str, path: str, required: bool = False) -> dict | None:
    try:
        with open(os.path.join(root, member)) as f:
            obj = json.load(f)
    except FileNotFoundError:
        if not required:
            return None
        raise InvalidArgument(f"checkpoint archive {path!r} has no {member}", field=FIELD,
                              image=path) from None
    except ValueError as e:
        raise InvalidArgument(f"checkpoint archive {path!r}: {member} is not JSON: {e}",
                              field=FIELD, image=path) from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"checkpoint archive {path!r}: {member} is not an object",
                              field=FIELD, image=path)
    return obj


def retarget(original: dict, cfg, sb: Sandbox) -> dict:
    """The checkpointed container's spec moved into pod `sb`. The process,
    its mounts' destinations, its capabilities and root stay as they were
    dumped (CRIU restores into the same layout); what is the pod's becomes
    the new pod's."""
    spec = copy.deepcopy(original)
    linux = spec.setdefault("linux", {})
    namespaces = []
    for ns in linux.get("namespaces") or []:
        kind = POD_NAMESPACES.get(ns.get("type"))
        if kind is None or "path" not in ns:
            namespaces.append(ns)  # its own: CRIU makes it again
            continue
        try:
            target = sb.ns_path(kind)
        except DaemonError as e:
            raise InvalidArgument(e.message, field="pod_sandbox_id") from None
        if not target:
            raise InvalidArgument(
                f"the checkpointed container was in its pod's {ns['type']} namespace, and "
                f"pod {sb.id!r} has none of its own to restore it into", field="pod_sandbox_id")
        namespaces.append({"type": ns["type"], "path": target})
    had = {ns["type"] for ns in namespaces}
    for oci, kind in POD_NAMESPACES.items():
        if kind != "pid" and oci not in had and sb.ns_path(kind):
            raise InvalidArgument(
                f"the checkpointed container ran in the host's {oci} namespace; it cannot "
                f"be restored into pod {sb.id!r}, which has its own", field="pod_sandbox_id")
    linux["namespaces"] = namespaces
    if "hostname" in spec and sb.ns_path("uts"):
        spec["hostname"] = pod_hostname(sb.config)

    # Mounts by destination: the new config's binds, the new pod's /etc
    # files, else the dumped ones (their sources must exist here).
    wanted = {m.container_path: m for m in cfg.mounts}
    mounts = []
    for m in spec.get("mounts") or []:
        m = dict(m)
        dest = m.get("destination", "")
        if dest in wanted:
            w = wanted[dest]
            if not os.path.exists(w.host_path):
                raise InvalidArgument(f"mount host_path {w.host_path!r} does not exist",
                                      field="config.mounts")
            m["source"] = w.host_path
        elif m.get("type") == "bind" and dest in (f"/etc/{n}" for n in ETC_FILES):
            m["source"] = sb.etc_file(os.path.basename(dest))
        if m.get("type") == "bind" and not os.path.exists(m.get("source", "")):
            raise InvalidArgument(
                f"the checkpointed container had {m.get('source')!r} mounted at {dest!r}, "
                f"which does not exist here: give a mount for {dest!r} in the config",
                field="config.mounts")
        mounts.append(m)
    extra = set(wanted) - {m.get("destination") for m in mounts}
    if extra:
        raise InvalidArgument(f"mounts {sorted(extra)} were not in the checkpointed "
                              "container: a restore cannot add mounts", field="config.mounts")
    spec["mounts"] = mounts
    spec["annotations"] = {**(spec.get("annotations") or {}), **dict(cfg.annotations)}
    linux["sysctl"] = dict(sb.config.linux.sysctls)
    resources = spec_mod.oci_resources(cfg.linux.resources)
    if resources:
        linux.setdefault("resources", {}).update(resources)
    return spec


# CRIU's image files: two magics, then entries of a u32 size and a protobuf.
UTSNS_MAGICS = struct.pack("<II", 0x54564319, 0x54473203)


def rehost(images_dir: str, hostname: str) -> None:
    """Give the dumped UTS namespace the new pod's hostname. CRIU joins the
    pod's UTS namespace (runc's join_ns) but still sets the hostname it
    dumped in it: without this the new pod, and every container in it,
    would be renamed after the old one. The entry is CRIU's UtsnsEntry
    (1: nodename, 2: domainname), rewritten whole."""
    for path in glob.glob(os.path.join(images_dir, "utsns-*.img")):
        with open(path, "rb") as f:
            data = f.read()
        fields = _utsns_fields(data)
        if fields is None:
            raise InvalidArgument(f"the checkpoint's {os.path.basename(path)} is not a CRIU "
                                  "UTS namespace image", field=FIELD)
        fields[1] = hostname.encode()
        body = b"".join(bytes([tag << 3 | 2]) + _varint(len(v)) + v
                        for tag, v in sorted(fields.items()))
        with open(path + ".tmp", "wb") as f:
            f.write(UTSNS_MAGICS + struct.pack("<I", len(body)) + body)
        os.replace(path + ".tmp", path)


def _utsns_fields(data: bytes) -> dict[int, bytes] | None:
    if not data.startswith(UTSNS_MAGICS) or len(data) < 12:
        return None
    (size,) = struct.unpack_from("<I", data, 8)
    body, fields, i = data[12:12 + size], {}, 0
    if len(body) != size or len(data) != 12 + size:
        return None
    while i < len(body):
        key = body[i]
        i += 1
        if key & 7 != 2:
            return None
        n, i = _read_varint(body, i)
        fields[key >> 3] = body[i:i + n]
        i += n
    return fields if i == len(body) and 1 in fields else None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7f, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while i < len(data):
        b = data[i]
        i += 1
        n |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return n, i
    return n, i
