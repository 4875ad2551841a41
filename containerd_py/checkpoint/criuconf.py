"""CRIU settings of one container's dumps and restores that runc has no flag
for, given to CRIU through its configuration file.

runc (and crun) hand CRIU the file named by the runtime config's
`org.criu.config` annotation, which CRIU reads after the runtime's own RPC
options and lets override them. The daemon points that annotation at a
file of its own per container (by runtime id, outside the shim dir that a
launch clears) and writes it right before each dump and restore:

- `network-lock skip` unless the dump needs the lock. CRIU locks the
  container's network namespace around a dump and a restore with iptables
  rules, so that no packet reaches a TCP connection it is dumping or
  restoring. That is four to seven `iptables-restore` runs (~50 ms of a
  trivial container's ~150 ms restore on the reference machine), and it
  protects nothing when no established connection is in the checkpoint and
  nothing outside can reach the namespace: a fresh one runc made, or ours
  with the loopback only. A restore uses the method its dump recorded in
  the images (inventory.img), so the dump decides for both.
"""

import json
import logging
import os

log = logging.getLogger("containerd_py.checkpoint")

ANNOTATION = "org.criu.config"


def path(state_dir: str, rid: str) -> str:
    return os.path.join(state_dir, "criu", f"{rid}.conf")


def runtime_annotations(spec: dict, conf: str) -> dict:
    """The annotation to add to the runtime config; none when the bundle
    names a CRIU configuration of its own (its settings win)."""
    if ANNOTATION in (spec.get("annotations") or {}):
        return {}
    return {ANNOTATION: conf}


def isolated(run_bundle: str, netns: str | None, attachments: dict | None) -> bool:
    """Can nothing outside the container reach its network namespace? True
    for a fresh one the runtime makes (the loopback only) and for ours
    without a network attached; False for the host's, a bundle's own path
    or ours with interfaces."""
    try:
        with open(os.path.join(run_bundle, "config.json")) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return False
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network":
            where = ns.get("path")
            return not where or (where == netns and not attachments)
    return False


def dump_options(*, tcp: bool, isolated: bool) -> list[str]:
    return [] if tcp or not isolated else ["network-lock skip"]


def write(conf: str, options: list[str]) -> None:
    """Write the options CRIU reads next (an empty file: CRIU's defaults)."""
    os.makedirs(os.path.dirname(conf), mode=0o700, exist_ok=True)
    tmp = conf + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(o + "\n" for o in options))
    os.replace(tmp, conf)


def remove(conf: str) -> None:
    try:
        os.unlink(conf)
    except FileNotFoundError:
        pass


def prune(state_dir: str, keep: set[str]) -> None:
    """After a restart: drop the files of runtime ids no container has."""
    d = os.path.join(state_dir, "criu")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for name in names:
        rid = name[:-len(".conf")] if name.endswith(".conf") else None
        if rid is None or rid not in keep:
            log.info("removing leftover CRIU settings %s", name)
            remove(os.path.join(d, name))
