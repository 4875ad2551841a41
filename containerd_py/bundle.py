"""Reading a user's OCI bundle: its config.json and the process in it.

A bundle the runtime cannot run is the user's mistake, and is said so here
(a 4xx naming the field) instead of as the runtime's failure after a shim
has been started for it.
"""

import json
import os
import stat

from .errors import InvalidArgument, NotFound
from .store import ProcessRecord

# What runc's init falls back to when the process has no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_SYMLINKS = 40  # as the kernel's path walk


def resolve(bundle: str) -> str:
    """The bundle's real path (symlinks resolved once, here, so that what is
    checked is what is used), which must be a directory."""
    real = os.path.realpath(bundle)
    if not os.path.exists(real):
        raise NotFound(f"bundle path {bundle} does not exist", bundlePath=bundle)
    if not os.path.isdir(real):
        raise InvalidArgument(f"bundle path {bundle} is not a directory", field="bundlePath",
                              bundlePath=bundle)
    return real


def read_config(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    if not os.path.exists(bundle):
        raise NotFound(f"bundle path {bundle} does not exist", bundlePath=bundle)
    if not os.path.isdir(bundle):
        raise InvalidArgument(f"bundle path {bundle} is not a directory", field="bundlePath",
                              bundlePath=bundle)
    try:
        with open(path) as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle} has no config.json", bundlePath=bundle) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{path} is not valid JSON: {e}", bundlePath=bundle) from None
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}", bundlePath=bundle) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("process", {}), dict):
        raise InvalidArgument(f"{path} is not an OCI runtime spec", bundlePath=bundle)
    return spec


def _bad(bundle: str, field: str, what: str) -> InvalidArgument:
    return InvalidArgument(f"{os.path.join(bundle, 'config.json')}: {field} {what}",
                           field=field, bundlePath=bundle)


def check_runnable(bundle: str, spec: dict) -> None:
    """What runc would fail on, said before anything starts: the spec's
    types, the root filesystem and the process's executable."""
    version = spec.get("ociVersion")
    if not isinstance(version, str) or not version:
        raise _bad(bundle, "ociVersion", f"must be a string such as \"1.0.2\", not "
                                         f"{json.dumps(version)}")
    process = spec.get("process")
    if not isinstance(process, dict):
        raise _bad(bundle, "process", "is required (an object with args)")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise _bad(bundle, "process.args", f"must be a non-empty list of strings, not "
                                           f"{json.dumps(args)}")
    if not args[0]:
        raise _bad(bundle, "process.args[0]", "(the executable) is empty")
    env = process.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
        raise _bad(bundle, "process.env", "must be a list of KEY=VALUE strings")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise _bad(bundle, "process.cwd", "must be an absolute path")
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise _bad(bundle, "root.path", "is required (the root filesystem's directory)")
    rootfs = os.path.join(bundle, root["path"])
    if not os.path.isdir(rootfs):
        raise NotFound(f"{os.path.join(bundle, 'config.json')}: root.path {root['path']!r}: "
                       f"{rootfs} is not a directory", bundlePath=bundle, field="root.path")
    mounts = {os.path.normpath(m["destination"]) for m in spec.get("mounts") or []
              if isinstance(m, dict) and isinstance(m.get("destination"), str)}
    find_executable(rootfs, args[0], env, cwd, bundle, mounts)


def find_executable(root: str, name: str, env: list, cwd: str, where: str = "",
                    mounts: set = frozenset()) -> str | None:
    """The executable `name` resolves to inside `root` (as the container
    will see it, absolute symlinks included), or NotFound naming it. None
    when it lies below one of `mounts` (not there yet: the runtime decides)."""
    if "/" in name:
        candidates = [name if name.startswith("/") else os.path.join(cwd, name)]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for c in candidates:
        host = resolve_in_root(root, c if c.startswith("/") else os.path.join(cwd, c), mounts)
        if host is MOUNTED:
            return None
        if host is None:
            continue
        try:
            st = os.stat(host)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return c
    searched = "" if "/" in name else " in PATH " + ":".join(
        os.path.dirname(c) for c in candidates)
    raise NotFound(f"executable {name!r} not found{searched} in the container's root "
                   f"filesystem" + (f" (bundle {where})" if where else ""),
                   field="args", executable=name)


MOUNTED = "<below a mount>"


def resolve_in_root(root: str, path: str, mounts: set = frozenset()) -> str | None:
    """`path` as seen from a process whose root is `root`: the host path it
    names, symlinks followed without ever leaving `root` (an absolute link,
    or `..` past the top, stays inside, as it would in the container).
    MOUNTED if the walk enters one of `mounts` (container paths)."""
    parts = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        if mounts and "/" + "/".join([*done, part]) in mounts:
            return MOUNTED
        host = os.path.join(root, *done, part)
        try:
            st = os.lstat(host)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_SYMLINKS:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        done.append(part)
    return os.path.join(root, *done)


def process_record(p: dict, pid: int) -> ProcessRecord:
    user = p.get("user") or {}
    return ProcessRecord(
        pid=pid, args=list(p.get("args", [])), env=list(p.get("env", [])),
        user={k: v for k, v in user.items() if k in ("uid", "gid", "additionalGids")}
        or {"uid": 0, "gid": 0},
        terminal=bool(p.get("terminal", False)), cwd=p.get("cwd", "/"))
