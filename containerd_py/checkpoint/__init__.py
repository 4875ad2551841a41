"""Checkpoints: CRIU images and their store (store.py), CRIU itself
(criu.py), archives that carry a checkpoint to another daemon (archive.py),
live migration between daemons (migration.py: the source's side;
inbox.py: the target's), and the supervisor's
checkpoint operations that use them (service.py)."""

from .criu import (LazyPages, after_restore, criu_log_tail, criu_status, dumps_inet_sockets,
                   memory_tracking)
from .store import META, CheckpointMeta, CheckpointStore

__all__ = ["CheckpointMeta", "CheckpointStore", "LazyPages", "META", "after_restore",
           "criu_log_tail", "criu_status", "dumps_inet_sockets", "memory_tracking"]
