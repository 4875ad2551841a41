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

from ..errors import Conflict, InvalidArgument
from .networks import DEFAULT_NETWORK, HOST, NAME_RE


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


class NetnsOwners:
    """NetworkService's calls for owners (mixed into it): the same setup
    and teardown paths as a container's (_setup, _release_locked), under
    the service's lock."""

    async def create_netns(self, owner_id: str, kind: str, name: str,
                           networks: list[str] | None = None,
                           ports: list[dict] | None = None) -> dict:
        """A network namespace of the service's own for `owner_id`, on
        `networks` (the default network unless given) with `ports` (the
        portmap form of ports.check_ports) published on the first; the
        owner writes its own /etc files. Returns its network state (the
        netns path, the attachments with their addresses). Persisted, so
        that a restarted daemon keeps it; `release_netns` ends it."""
        if not isinstance(owner_id, str) or not NAME_RE.match(owner_id):
            raise InvalidArgument(f"invalid network namespace owner {owner_id!r}", field="id")
        networks = [DEFAULT_NETWORK] if networks is None else networks
        self.check_request(networks, ports or [])
        if HOST in networks:
            raise InvalidArgument('a namespace of its own cannot be on "host"',
                                  field="networks")
        async with self._lock:
            if owner_id in self.owners.owners or os.path.lexists(self._netns_path(owner_id)):
                raise Conflict(f"{owner_id!r} has a network namespace already", id=owner_id)
            owner = NetnsOwner(id=owner_id, kind=kind, name=name or owner_id,
                               networks=list(networks), ports=list(ports or []))
            await self._setup(owner, owner.networks, None)
            try:
                self.owners.save(owner)
            except BaseException:
                await self._release_locked(owner)
                raise
            return owner.network

    def netns_owner(self, owner_id: str) -> dict | None:
        """The owner's network state as create_netns returned it, or None."""
        o = self.owners.owners.get(owner_id)
        return o.network if o else None

    def netns_owners(self, kind: str) -> list[str]:
        return sorted(o.id for o in self.owners.owners.values() if o.kind == kind)

    async def release_netns(self, owner_id: str) -> None:
        """CNI DEL of every interface (the leases and published ports go),
        the namespace unpinned. Idempotent. The owner's record goes last,
        so a daemon killed half-way still knows what to finish."""
        async with self._lock:
            o = self.owners.owners.get(owner_id)
            if o is None:
                return
            try:
                await self._release_locked(o)
            finally:
                self.owners.remove(owner_id)
