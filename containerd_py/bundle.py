"""Reading a user's OCI bundle: its config.json and the process in it.

A bundle the runtime cannot run is the user's mistake, and is said so here
(a 4xx naming the field) instead of as the runtime's failure after a shim
has been started for it.
"""

import json
import os

from .errors import InvalidArgument, NotFound
from .store import ProcessRecord



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
    types and the root filesystem. (A command the rootfs lacks comes back
    from the runtime, sorted by runtime/failures.py.)"""
    version = spec.get("ociVersion")
    if not isinstance(version, str) or not version:
        raise _bad(bundle, "ociVersion", f"must be a string such as \"1.0.2\", not "
                                         f"{json.dumps(version)}")
    process = spec.get("process")
    if not isinstance(process, dict):
        raise _bad(bundle, "process", "is required (an object with args)")
    args = process.get("args", [])
    # Empty args may be given at create (args, command): the runtime says so
    # if they are not (runtime/failures.py).
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _bad(bundle, "process.args", f"must be a list of strings, not "
                                           f"{json.dumps(args)}")
    env = process.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
        raise _bad(bundle, "process.env", "must be a list of KEY=VALUE strings")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise _bad(bundle, "process.cwd", "must be an absolute path")
    root = spec.get("root") or {}
    path = root.get("path", "rootfs") if isinstance(root, dict) else None
    if not isinstance(path, str) or not path:
        raise _bad(bundle, "root.path", "must be the root filesystem's directory")
    rootfs = os.path.join(bundle, path)
    if not os.path.isdir(rootfs):
        raise NotFound(f"{os.path.join(bundle, 'config.json')}: root.path {path!r}: "
                       f"{rootfs} is not a directory", bundlePath=bundle, field="root.path")


def process_record(p: dict, pid: int) -> ProcessRecord:
    user = p.get("user") or {}
    return ProcessRecord(
        pid=pid, args=list(p.get("args", [])), env=list(p.get("env", [])),
        user={k: v for k, v in user.items() if k in ("uid", "gid", "additionalGids")}
        or {"uid": 0, "gid": 0},
        terminal=bool(p.get("terminal", False)), cwd=p.get("cwd", "/"))
