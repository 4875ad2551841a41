"""The settings of a create request, once the front door has checked and
normalised them: what the daemon applies over a bundle's config.json or an
image's config when it writes the runtime spec.

`None` (or empty) means "not given": the bundle's or the image's value stays.
The record keeps them (`to_json`), so a restart, a restore or a clone writes
the same spec again.
"""

import dataclasses


@dataclasses.dataclass
class ContainerSettings:
    args: list[str] | None = None         # replaces the image's Cmd (a bundle's args)
    entrypoint: list[str] | None = None   # replaces the image's Entrypoint
    env: list[str] = dataclasses.field(default_factory=list)  # K=V, merged over
    cwd: str | None = None
    user: str | None = None               # "uid[:gid]" or "name[:group]"
    hostname: str | None = None
    terminal: bool | None = None
    readonly_rootfs: bool | None = None
    mounts: list[dict] = dataclasses.field(default_factory=list)  # OCI mounts
    annotations: dict = dataclasses.field(default_factory=dict)
    stop_signal: int | None = None
    init: bool = False
    seccomp: str | None = None            # "default", "unconfined" or a profile's path

    def given(self) -> bool:
        return self != ContainerSettings()

    def to_json(self) -> dict:
        """The API's spelling (camelCase), only what was given: an explicit
        `false` (terminal, readonlyRootfs over a bundle that says true) is
        a setting too."""
        return {_CAMEL.get(k, k): v for k, v in dataclasses.asdict(self).items()
                if v is not None and v != [] and v != {} and not (k == "init" and not v)}

    @classmethod
    def from_json(cls, d: dict | None) -> "ContainerSettings":
        snake = {v: k for k, v in _CAMEL.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {snake.get(k, k): v for k, v in (d or {}).items()}
        return cls(**{k: v for k, v in kw.items() if k in names})


_CAMEL = {"readonly_rootfs": "readonlyRootfs", "stop_signal": "stopSignal"}
