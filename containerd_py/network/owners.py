"""Network namespaces the service keeps for owners that are not container
records: the CRI's pod sandboxes, whose containers join one namespace of
the pod's. An owner has what NetworkService's setup reads of a container
record (id, name, networks, ports) and the `network` state it fills in; it
is persisted here, one JSON file each under DATA_DIR/cni/owners/, as soon
as its setup succeeded, so that a daemon restarted after kill -9 counts it
as owned (collect_orphans) and indexes its address and ports again, before
any front door has loaded records of its own.
"""

import dataclasses
import json
import os


@dataclasses.dataclass
class NetnsOwner:
    id: str
    kind: str  # who asked: "pod" for the CRI's sandboxes
    name: str
    networks: list[str]
    ports: list[dict]
    network: dict = dataclasses.field(default_factory=dict)


class OwnerStore:
    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.owners: dict[str, NetnsOwner] = {}
        for fname in sorted(os.listdir(directory)):
            if not fname.endswith(".json"):
                continue
            try:
                with open(os.path.join(directory, fname)) as f:
                    o = NetnsOwner(**json.load(f))
            except (OSError, ValueError, TypeError):
                continue  # a half-written file: its netns is collected as an orphan
            self.owners[o.id] = o

    def save(self, owner: NetnsOwner) -> None:
        path = os.path.join(self.dir, owner.id + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(dataclasses.asdict(owner), f)
        os.replace(path + ".tmp", path)
        self.owners[owner.id] = owner

    def remove(self, owner_id: str) -> None:
        self.owners.pop(owner_id, None)
        try:
            os.unlink(os.path.join(self.dir, owner_id + ".json"))
        except FileNotFoundError:
            pass
