"""CRI-side records of containers: which pod, which CRI config and image,
where the CRI log goes. The container itself is the supervisor's; this is
only what the supervisor has no field for."""

import base64
import dataclasses
import json
import os
import shutil

from ._gen import api_pb2 as pb

# Labels every CRI container carries in the supervisor (and the REST API).
LABEL_KIND = "io.containerd-py.cri"
LABEL_SANDBOX = "io.kubernetes.pod.sandbox-id"
LABEL_NAME = "io.kubernetes.container.name"


@dataclasses.dataclass
class CRIContainer:
    id: str
    sandbox_id: str
    config_b64: str
    image_ref: str  # as the caller named it
    image_id: str
    created_ns: int
    log_path: str = ""  # absolute, or "" when the caller asked for none
    restored_from: str = ""  # the checkpoint archive it was made from

    @property
    def config(self) -> pb.ContainerConfig:
        cfg = pb.ContainerConfig()
        cfg.ParseFromString(base64.b64decode(self.config_b64))
        return cfg


class CRIContainerStore:
    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.items: dict[str, CRIContainer] = {}
        for name in sorted(os.listdir(directory)):
            if name.endswith(".json"):
                with open(os.path.join(directory, name)) as f:
                    c = CRIContainer(**json.load(f))
                self.items[c.id] = c

    def bundle_dir(self, cid: str) -> str:
        return os.path.join(self.dir, cid)

    def save(self, c: CRIContainer) -> None:
        path = os.path.join(self.dir, c.id + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(dataclasses.asdict(c), f)
        os.replace(path + ".tmp", path)
        self.items[c.id] = c

    def write_bundle(self, cid: str, spec: dict) -> str:
        d = self.bundle_dir(cid)
        os.makedirs(d, mode=0o700, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(spec, f)
        return d

    def remove(self, cid: str) -> None:
        self.items.pop(cid, None)
        shutil.rmtree(self.bundle_dir(cid), ignore_errors=True)
        try:
            os.unlink(os.path.join(self.dir, cid + ".json"))
        except FileNotFoundError:
            pass

    @staticmethod
    def encode(config: pb.ContainerConfig) -> str:
        return base64.b64encode(config.SerializeToString()).decode()
