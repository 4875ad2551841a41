"""The supervisor: the one owner of container state.

`core` holds the registry, per-container locks, the create/launch path,
exits, recovery and the lifecycle; the other modules are parts of the same
`Supervisor` by concern: a container's processes (`processes`), its
networks (`network_ops`), and what the daemon reports (`system`).
"""

from .core import Container, Supervisor  # noqa: F401
