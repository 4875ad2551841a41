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
- The runtime's read-only empty tmpfs mounts (those over masked
  directories: /proc/acpi, /sys/firmware, ...) as external mounts. CRIU
  saves every tmpfs with `tar --create --gzip` and fills it again on restore
  with `tar --extract --gzip` (two processes and gzip's each, ~3-5 ms per
  mount); a mount that is read-only, empty and whose superblock is
  read-only has nothing to save. The restore bind-mounts an empty
  directory of the daemon's there instead, read-only as the dump found it:
  the same empty, unwritable directory (mountinfo shows the directory's
  filesystem rather than tmpfs).
- `manage-cgroups=ignore` on restore when the container's processes cannot
  have left its cgroup: without CAP_SYS_ADMIN they can neither mount a
  cgroup filesystem nor write one the runtime mounted read-only, so every
  task of the dump was in the container's own cgroup, and runc has already
  created it, set its limits and put CRIU in it (the restored tasks are
  CRIU's children there). CRIU's default ('soft') would mount every
  controller into a yard of its own and move each task again: 5-12 ms,
  more while other containers start (the kernel's cgroup lock).
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


# The key CRIU files the empty mounts under: the same for all, so that a
# restore needs nothing from the dump to name them.
EMPTY_KEY = "containerd-py-empty"


def empty_readonly_tmpfs(pid: int) -> list[str]:
    """Mount points (as the container sees them) of pid's tmpfs mounts that
    are read-only, read-only in their superblock too, mounted from the
    filesystem's root and empty."""
    out = []
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return []
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields, sup = pre.split(), post.split()
        if len(fields) < 6 or len(sup) < 3 or sup[0] != "tmpfs":
            continue
        root, point, opts = fields[3], fields[4], fields[5].split(",")
        if root != "/" or "ro" not in opts or "ro" not in sup[2].split(","):
            continue
        if not point.startswith("/") or any(ch in point for ch in "\\[] \t"):
            continue  # escaped in mountinfo, or not sayable in CRIU's option
        try:
            if os.listdir(f"/proc/{pid}/root{point}"):
                continue
        except OSError:
            continue
        out.append(point)
    return out


def dump_options(*, tcp: bool, isolated: bool, empty_mounts: list[str] = ()) -> list[str]:
    opts = [] if tcp or not isolated else ["network-lock skip"]
    return opts + [f"external mnt[{m}]:{EMPTY_KEY}" for m in empty_mounts]


def restore_options(empty_dir: str, *, own_cgroup_only: bool) -> list[str]:
    """Where the dump's empty mounts come from (unused if it had none):
    mode 1777 as the runtime's tmpfs was, reachable by root only (its
    parent is 0700), read-only where it is mounted. `own_cgroup_only`: see
    cannot_leave_cgroup."""
    os.makedirs(os.path.dirname(empty_dir), mode=0o700, exist_ok=True)
    try:
        os.mkdir(empty_dir)
    except FileExistsError:
        pass
    os.chmod(empty_dir, 0o1777)
    opts = [f"external mnt[{EMPTY_KEY}]:{empty_dir}"]
    # The option's argument is optional: only "=" gives it (a space would not).
    return opts + (["manage-cgroups=ignore"] if own_cgroup_only else [])


def cannot_leave_cgroup(spec: dict) -> bool:
    """Can no process of a container with runtime config `spec` have moved
    to another cgroup? True without CAP_SYS_ADMIN in any of its capability
    sets: it cannot mount cgroupfs, nor remount the runtime's read-only
    one, and the spec mounts none writable."""
    caps = (spec.get("process") or {}).get("capabilities") or {}
    if any("CAP_SYS_ADMIN" in (caps.get(k) or []) for k in
           ("bounding", "effective", "permitted", "inheritable", "ambient")):
        return False
    for m in spec.get("mounts") or []:
        if m.get("type") in ("cgroup", "cgroup2") and "ro" not in (m.get("options") or []):
            return False
    return True


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
        if not name.endswith(".conf"):
            continue  # the empty directory of restore_options, and temporaries
        if name[:-len(".conf")] not in keep:
            log.info("removing leftover CRIU settings %s", name)
            remove(os.path.join(d, name))
