"""Reading a user's OCI bundle: its config.json and the process in it."""

import json
import os

from .errors import InvalidArgument, NotFound
from .store import ProcessRecord


def read_config(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    if not os.path.isdir(bundle):
        raise NotFound(f"bundle path {bundle} does not exist", bundlePath=bundle)
    try:
        with open(path) as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle} has no config.json", bundlePath=bundle) from None
    except ValueError as e:
        raise InvalidArgument(f"{path} is not valid JSON: {e}", bundlePath=bundle) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("process", {}), dict):
        raise InvalidArgument(f"{path} is not an OCI runtime spec", bundlePath=bundle)
    return spec


def process_record(p: dict, pid: int) -> ProcessRecord:
    user = p.get("user") or {}
    return ProcessRecord(
        pid=pid, args=list(p.get("args", [])), env=list(p.get("env", [])),
        user={k: v for k, v in user.items() if k in ("uid", "gid", "additionalGids")}
        or {"uid": 0, "gid": 0},
        terminal=bool(p.get("terminal", False)), cwd=p.get("cwd", "/"))
