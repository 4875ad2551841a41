"""Checkpoints belong to the bundle, as in early containerd: CRIU images in
`<bundle>/checkpoints/<name>/` plus a small metadata file, so any container
started from that bundle can restore them.

A checkpoint is written into a hidden temporary directory and renamed into
place only once CRIU succeeded: a failed dump never appears in the list.
"""

import dataclasses
import json
import os
import shutil

from ..errors import Conflict, NotFound
from ..events import now_ns, rfc3339

META = "containerd-py.json"


@dataclasses.dataclass
class CheckpointMeta:
    name: str
    exit: bool = False
    tcp: bool = False
    unixSockets: bool = False
    shell: bool = False
    created: str = ""
    size: int = 0
    container: str = ""
    # The create settings of the container it was taken from: a clone
    # restores with them, into the same spec.
    settings: dict = dataclasses.field(default_factory=dict)


class CheckpointStore:
    def __init__(self, bundle: str):
        self.root = os.path.join(bundle, "checkpoints")

    def path(self, name: str) -> str:
        # `name` is validated as an id by the HTTP layer (no '/', no '..'),
        # so this can never leave the checkpoints directory.
        return os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.path(name), META))

    def require(self, name: str) -> str:
        if not self.exists(name):
            raise NotFound(f"no checkpoint {name!r} in {self.root}", checkpoint=name)
        return self.path(name)

    def begin(self, name: str, token: str) -> str:
        if self.exists(name) or os.path.exists(self.path(name)):
            raise Conflict(f"checkpoint {name!r} already exists", checkpoint=name)
        tmp = os.path.join(self.root, f".{name}.{token}.tmp")
        os.makedirs(tmp)
        return tmp

    def commit(self, tmp: str, meta: CheckpointMeta) -> CheckpointMeta:
        meta.size = du(tmp)
        meta.created = rfc3339(now_ns())
        with open(os.path.join(tmp, META), "w") as f:
            json.dump(dataclasses.asdict(meta), f)
        final = self.path(meta.name)
        try:
            # rename() onto an existing non-empty dir fails: two containers
            # of one bundle racing for a name cannot both win.
            if os.path.exists(final):
                raise FileExistsError(final)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Conflict(f"checkpoint {meta.name!r} already exists",
                           checkpoint=meta.name) from None
        return meta

    def meta(self, name: str) -> CheckpointMeta:
        with open(os.path.join(self.require(name), META)) as f:
            return CheckpointMeta(**json.load(f))

    def list(self) -> list[CheckpointMeta]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [self.meta(n) for n in names if not n.startswith(".") and self.exists(n)]

    def delete(self, name: str) -> None:
        path = self.require(name)
        # Rename first so a half-deleted checkpoint is never listed.
        doomed = os.path.join(self.root, f".{name}.deleted.{now_ns()}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def du(path: str) -> int:
    """Bytes in the files under `path` (a checkpoint's size)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total
