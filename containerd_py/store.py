"""Container records and their one-file-per-container persistence.

A record is everything the daemon must remember about a container across
its own restarts. Each is written atomically (tmp + fsync + rename) so a
`kill -9` at any moment leaves either the old or the new file, never half.
"""

import dataclasses
import errno
import json
import logging
import os

from .errors import StorageFull

from .states import Status

log = logging.getLogger("containerd_py.store")
# Below this much free space a create is refused up front: its record, log
# and events must fit.
MIN_FREE_BYTES = 1024 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclasses.dataclass
class ProcessRecord:
    pid: int
    args: list[str]
    env: list[str] = dataclasses.field(default_factory=list)
    user: dict = dataclasses.field(default_factory=lambda: {"uid": 0, "gid": 0})
    terminal: bool = False
    cwd: str = "/"

    def to_api(self) -> dict:
        # Not dataclasses.asdict: its deep copy made `GET /state` at 500
        # containers spend most of its time here.
        return {"pid": self.pid, "args": self.args, "env": self.env, "user": self.user,
                "terminal": self.terminal, "cwd": self.cwd}


@dataclasses.dataclass
class ContainerRecord:
    id: str
    bundle_path: str
    runtime: str
    created: str
    name: str = ""
    labels: dict = dataclasses.field(default_factory=dict)
    status: Status = Status.STOPPED
    shim_pid: int | None = None
    init: ProcessRecord | None = None
    execs: list[ProcessRecord] = dataclasses.field(default_factory=list)
    # Exit statuses of exec'd processes that are gone, for process wait.
    exec_exits: dict[str, int] = dataclasses.field(default_factory=dict)
    exit_status: int | None = None
    # Why it stopped when that is not its own exit (its shim died).
    exit_reason: str | None = None
    exited_at: str | None = None
    started_at: str | None = None
    auto_remove: bool = False
    restart_policy: dict = dataclasses.field(default_factory=lambda: {"name": "no"})
    restart_count: int = 0
    stopped_by_user: bool = False
    oom_killed: bool = False
    checkpoint: str | None = None
    overlay: bool = False
    lazy: bool = False
    # Where `checkpoint` lives when it is not the bundle's: a checkpoint
    # this daemon received (an import, a migration).
    checkpoint_home: str | None = None
    # The last migration of this container: progress, then its outcome.
    migration: dict | None = None
    resources: dict = dataclasses.field(default_factory=dict)
    # The create settings as given (runtime.settings.ContainerSettings), and
    # what they came to in the last spec written: what the API shows.
    settings: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)
    stop_signal: int = 15
    image: dict | None = None  # {"ref", "id"} of an image container
    # Claimed from a warm pool: the runtime's (and the shim dir's) id of the
    # member, fixed when it was created, and the pool's name.
    runtime_id: str | None = None
    pool: str | None = None
    # Networks asked for at create (None: what the bundle's config.json
    # says), the ports to publish, and what network/ set up for this run.
    networks: list | None = None
    ports: list = dataclasses.field(default_factory=list)
    network: dict = dataclasses.field(default_factory=dict)

    def processes(self) -> list[ProcessRecord]:
        if self.status == Status.STOPPED or self.init is None:
            return []
        return [self.init] + self.execs

    def display_status(self) -> str:
        """What a user sees: a container made with `start: false` that has
        never run is `created` (podman's word), not `stopped`; to the state
        table it is stopped all the same, so `start` and `delete` apply."""
        if self.status == Status.STOPPED and not self.started_at and self.exit_status is None:
            return "created"
        return self.status.value

    def to_api(self) -> dict:
        status = self.display_status()
        obj = {
            "id": self.id,
            "name": self.name or self.id,
            "bundlePath": self.bundle_path,
            "runtime": self.runtime,
            "state": {"status": status},
            "status": status,
            "processes": [p.to_api() for p in self.processes()],
            "labels": self.labels,
            "created": self.created,
            "restartPolicy": self.restart_policy,
            "restartCount": self.restart_count,
            "autoRemove": self.auto_remove,
        }
        if self.init is not None and self.status != Status.STOPPED:
            obj["pid"] = self.init.pid
        if self.started_at:
            obj["startedAt"] = self.started_at
        if self.checkpoint:
            obj["checkpoint"] = self.checkpoint
        if self.exit_status is not None:
            obj["oomKilled"] = self.oom_killed
            obj["exitStatus"] = self.exit_status
            obj["exitedAt"] = self.exited_at
            if self.exit_reason:
                obj["exitReason"] = self.exit_reason
        if self.resources:
            obj["resources"] = self.resources
        if self.pool:
            obj["pool"] = self.pool
        if self.runtime_id:
            obj["runtimeId"] = self.runtime_id
        if self.migration:
            obj["migration"] = self.migration
        if self.image:
            obj["image"] = self.image
        obj.update(self.config)
        if self.networks is not None:
            obj.update(network_api(self))
        return obj

    def to_json(self) -> dict:
        # Not dataclasses.asdict: its deep copy made it ~20x dearer, and a
        # save is on every start path (a warm pool's claim is ~2 ms in
        # all). json.dumps reads the nested dicts and lists as they are.
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["status"] = self.status.value
        d["init"] = _process_json(self.init) if self.init is not None else None
        d["execs"] = [_process_json(p) for p in self.execs]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ContainerRecord":
        d = dict(d)
        d["status"] = Status(d["status"])
        d["init"] = ProcessRecord(**d["init"]) if d.get("init") else None
        d["execs"] = [ProcessRecord(**p) for p in d.get("execs", [])]
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(ContainerRecord))
_PROCESS_FIELDS = tuple(f.name for f in dataclasses.fields(ProcessRecord))


def _process_json(p: ProcessRecord) -> dict:
    return {name: getattr(p, name) for name in _PROCESS_FIELDS}


def network_api(r: ContainerRecord) -> dict:
    """Each network's address, and the ports; also as Zun's `addresses`."""
    attachments = (r.network or {}).get("attachments") or {}
    ports = [{"hostPort": m["hostPort"], "containerPort": m["containerPort"],
              "protocol": m["protocol"], "hostIp": m["hostIP"]} for m in r.ports]
    return {
        "networks": {name: dict(a) for name, a in attachments.items()},
        "requestedNetworks": r.networks,
        "ports": ports,
        "addresses": {name: [{"addr": a.get("ip"), "version": 4, "port": a.get("interface"),
                              "preserve_on_delete": False, "subnet_id": name}]
                      for name, a in attachments.items()},
    }


class ContainerStore:
    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # Records that could not be read at the last load, by id: reported
        # (GET /info), kept on disk, and their containers left alone.
        self.damaged: dict[str, str] = {}

    def _path(self, cid: str) -> str:
        return os.path.join(self.dir, cid + ".json")

    def save(self, record: ContainerRecord) -> None:
        # rename() is atomic against a crash of the daemon, which is what we
        # guard against; an fsync per state change would cost milliseconds
        # on the start path and only helps against power loss, after which
        # every container is gone anyway.
        path = self._path(record.id)
        tmp = path + ".tmp"
        try:
            # One string, one write: json.dump writes each of the encoder's
            # hundreds of small chunks through the file object.
            data = json.dumps(record.to_json())
            with open(tmp, "w") as f:
                f.write(data)
            _replace(tmp, path)
        except OSError as e:
            _unlink(tmp)
            if e.errno in _FULL:
                raise StorageFull(f"cannot save the record of container {record.id!r}: "
                                  f"{self.dir} is full", id=record.id) from None
            raise
        self.damaged.pop(record.id, None)

    def check_space(self, *dirs: str) -> None:
        """StorageFull unless each dir has room for a new container's state."""
        for d in (self.dir, *dirs):
            st = os.statvfs(d)
            if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
                raise StorageFull(f"no space left for new containers: {d} has "
                                  f"{st.f_bavail * st.f_frsize} bytes free", path=d)

    def remove(self, cid: str) -> None:
        _unlink(self._path(cid))
        _unlink(self._path(cid) + ".old")

    def load_all(self) -> list[ContainerRecord]:
        """Every readable record; one that is truncated or corrupt is named
        in the log and in `damaged`, and costs no other container."""
        out = []
        self.damaged = {}
        names = set(os.listdir(self.dir))
        for name in sorted(n for n in names if n.endswith(".json.old")):
            current = name[:-len(".old")]
            if current in names:  # the new record is in place: the old one goes
                _unlink(os.path.join(self.dir, name))
            else:  # a crash between _replace's renames: the old record stands
                os.rename(os.path.join(self.dir, name), os.path.join(self.dir, current))
                names.add(current)
        for name in sorted(names):
            if not name.endswith(".json"):  # skips a torn .json.tmp
                continue
            cid = name[:-len(".json")]
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out.append(ContainerRecord.from_json(json.load(f)))
            except (OSError, ValueError, KeyError, TypeError) as e:
                reason = f"{type(e).__name__}: {e}"
                log.error("container %s: its record %s cannot be read (%s); the container "
                          "is not recovered, and the file is kept", cid,
                          os.path.join(self.dir, name), reason)
                self.damaged[cid] = reason
        return out


def _replace(tmp: str, path: str) -> None:
    """os.replace(tmp, path), without renaming over an existing file: at
    such a rename ext4 (auto_da_alloc, its default) starts writing the new
    file's data back and the caller waits for it (0.5-2 ms on this host, on
    every save of an existing record: the start of a created container, a
    restart, a stop; 0.1 ms this way). The old record steps aside as
    PATH.old first; load_all takes it back if a crash came in between, so
    a kill -9 at any point still leaves the old record or the new one."""
    old = path + ".old"
    try:
        os.rename(path, old)
    except FileNotFoundError:
        os.rename(tmp, path)
        return
    os.rename(tmp, path)
    _unlink(old)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
