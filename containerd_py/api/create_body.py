"""The body of `POST /containers/{id}`: every field checked before anything
touches a path, unknown fields refused, and Zun's names (`command`,
`environment`, `workdir`, `cpu`, `memory`, `interactive`) and the
podman/docker mount string (`type=bind,src=/srv,dst=/srv,ro`) translated
into the one form the supervisor takes (runtime.settings.ContainerSettings).
"""

import dataclasses
import os
import re
import shlex

from .. import validation as v
from ..errors import InvalidArgument
from ..images import refs
from ..runtime.settings import ContainerSettings
from ..runtime.spec import signal_number
from .common import bool_field, check_fields

SETTINGS_FIELDS = {"args", "entrypoint", "env", "cwd", "user", "hostname", "terminal",
                   "readonlyRootfs", "mounts", "resources", "annotations", "stopSignal",
                   "init", "seccomp"}
ZUN_FIELDS = {"command", "environment", "workdir", "cpu", "memory", "interactive"}
# Checked by api/networks.py (create_fields).
NETWORK_FIELDS = {"networks", "nets", "ports"}
CREATE_FIELDS = {"bundlePath", "image", "checkpoint", "lazy", "labels", "runtime", "name",
                 "autoRemove", "restartPolicy", "overlay", "start"} | SETTINGS_FIELDS | ZUN_FIELDS \
    | NETWORK_FIELDS
# The same thing under two names: giving both is ambiguous.
_ALIASES = [("args", "command"), ("env", "environment"), ("cwd", "workdir"),
            ("terminal", "interactive")]
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
MOUNT_TYPES = ("bind", "tmpfs")


@dataclasses.dataclass
class CreateRequest:
    bundle: str | None
    name: str | None
    labels: dict
    runtime: str | None
    checkpoint: str | None
    lazy: bool
    auto_remove: bool
    restart_policy: dict
    overlay: bool
    settings: ContainerSettings
    resources: dict
    image: str | None = None
    # False: only create it (podman's and docker's `create`); `start` runs it.
    start: bool = True


def parse(body: dict) -> CreateRequest:
    check_fields(body, CREATE_FIELDS, "the create body")
    for a, b in _ALIASES:
        if a in body and b in body:
            raise InvalidArgument(f"give {a} or {b} (Zun's name for it), not both", field=b)
    image = body.get("image")
    if image is not None:
        # An image of the store instead of a bundle.
        refs.check_ref(image, "image")
        if body.get("bundlePath") is not None:
            raise InvalidArgument("give bundlePath or image, not both", field="image")
        bundle = None
    else:
        bundle = v.check_abs_path(body.get("bundlePath"), "bundlePath")
    checkpoint = body.get("checkpoint")
    if checkpoint is not None:
        v.check_id(checkpoint, "checkpoint")
    runtime = body.get("runtime")
    if runtime is not None and not isinstance(runtime, str):
        raise InvalidArgument("runtime must be a string", field="runtime")
    name = body.get("name")
    if name is not None:
        v.check_id(name, "name")
    lazy = bool_field(body, "lazy")
    if lazy and checkpoint is None:
        raise InvalidArgument("lazy restores a checkpoint: give checkpoint too", field="lazy")
    resources = v.oci_resources(body) if {"resources", "cpu", "memory"} & set(body) else {}
    return CreateRequest(
        bundle=bundle, name=name, labels=_str_map(body, "labels"), runtime=runtime,
        checkpoint=checkpoint, lazy=lazy, auto_remove=bool_field(body, "autoRemove"),
        restart_policy=restart_policy(body.get("restartPolicy")),
        overlay=bool_field(body, "overlay"), settings=settings(body), resources=resources,
        image=image, start=body.get("start", True) if isinstance(body.get("start", True), bool)
        else _not_bool("start"))


def _not_bool(key: str):
    raise InvalidArgument(f"{key} must be a boolean", field=key)


def settings(body: dict) -> ContainerSettings:
    s = ContainerSettings()
    if "args" in body or "command" in body:
        key = "args" if "args" in body else "command"
        s.args = _command(body[key], key)
        if not s.args:
            raise InvalidArgument(f"{key} must not be empty", field=key)
    if "entrypoint" in body:
        # [] clears an image's Entrypoint, as `--entrypoint ""`.
        s.entrypoint = _command(body["entrypoint"], "entrypoint")
    if "env" in body:
        s.env = _env(body["env"])
    elif "environment" in body:
        s.env = [f"{k}={x}" for k, x in _str_map(body, "environment").items()]
    for key in ("cwd", "workdir"):
        if key in body:
            cwd = body[key]
            if not isinstance(cwd, str) or not cwd.startswith("/") or "\0" in cwd:
                raise InvalidArgument(f"{key} must be an absolute path", field=key)
            s.cwd = os.path.normpath(cwd)
    if "user" in body:
        s.user = _user(body["user"])
    if "hostname" in body:
        if not isinstance(body["hostname"], str) or not HOSTNAME_RE.match(body["hostname"]):
            raise InvalidArgument(f"invalid hostname {body['hostname']!r}: letters, digits, "
                                  "'-' and '.' (RFC 1123)", field="hostname")
        s.hostname = body["hostname"]
    for key in ("terminal", "interactive"):
        if key in body:
            s.terminal = bool_field(body, key)
    if "readonlyRootfs" in body:
        s.readonly_rootfs = bool_field(body, "readonlyRootfs")
    if "mounts" in body:
        if not isinstance(body["mounts"], list):
            raise InvalidArgument("mounts must be a list of OCI mounts or mount strings",
                                  field="mounts")
        s.mounts = [_mount(m) for m in body["mounts"]]
        dests = [m["destination"] for m in s.mounts]
        if len(set(dests)) != len(dests):
            raise InvalidArgument("two mounts have the same destination", field="mounts")
    s.annotations = _str_map(body, "annotations")
    if "stopSignal" in body:
        s.stop_signal = signal_number(body["stopSignal"])
    s.init = bool_field(body, "init")
    if "seccomp" in body:
        s.seccomp = _seccomp(body["seccomp"])
    return s


def _seccomp(value) -> str:
    """"default" (the runtime default, as Docker's), "unconfined" or the
    absolute path of a profile file in the OCI form (read at create)."""
    if value in ("default", "unconfined"):
        return value
    if isinstance(value, str) and value.startswith("/") and "\0" not in value:
        return os.path.normpath(value)
    raise InvalidArgument(f"seccomp {value!r}: use \"default\", \"unconfined\" or the "
                          "absolute path of a profile file", field="seccomp")


def restart_policy(value) -> dict:
    if value is None:
        return {"name": "no"}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or value.get("name", "no") not in ("no", "on-failure",
                                                                      "always"):
        raise InvalidArgument('restartPolicy.name must be "no", "on-failure" or "always"',
                              field="restartPolicy")
    check_fields(value, {"name", "maximumRetryCount"}, "restartPolicy")
    retries = value.get("maximumRetryCount", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("restartPolicy.maximumRetryCount must be an integer >= 0",
                              field="restartPolicy")
    return {"name": value.get("name", "no"), "maximumRetryCount": retries}


# -- fields ----------------------------------------------------------------------

def _str_map(body: dict, key: str) -> dict:
    value = body.get(key, {})
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in value.items()):
        raise InvalidArgument(f"{key} must be an object of strings", field=key)
    return value


def _command(value, key: str) -> list[str]:
    """A list of strings, or for Zun's `command` one string split like a
    shell would."""
    if isinstance(value, str) and key == "command":
        try:
            return shlex.split(value)
        except ValueError as e:
            raise InvalidArgument(f"{key}: {e}", field=key) from None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value) \
            or any("\0" in a for a in value):
        raise InvalidArgument(f"{key} must be a list of strings or a command line",
                              field=key)
    return value


def _env(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise InvalidArgument("env must be a list of KEY=VALUE strings", field="env")
    for e in value:
        if not e.partition("=")[0] or "=" not in e or "\0" in e:
            raise InvalidArgument(f"env entry {e!r} is not KEY=VALUE", field="env")
    return value


def _user(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, dict) and set(value) <= {"uid", "gid"} and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value.values()):
        return f"{value.get('uid', 0)}:{value.get('gid', 0)}"
    if not isinstance(value, str) or not USER_RE.match(value):
        raise InvalidArgument(f"invalid user {value!r}: use uid[:gid] or name[:group]",
                              field="user")
    return value


def _mount(value) -> dict:
    if isinstance(value, str):
        value = _mount_string(value)
    if not isinstance(value, dict):
        raise InvalidArgument("a mount is an OCI mount object {destination, type, source, "
                              "options} or a string like type=bind,src=/srv,dst=/srv,ro",
                              field="mounts")
    check_fields(value, {"destination", "type", "source", "options"}, "a mount")
    kind = value.get("type", "bind")
    if kind not in MOUNT_TYPES:
        raise InvalidArgument(f"mount type {kind!r} is not supported: use one of "
                              f"{', '.join(MOUNT_TYPES)}", field="mounts")
    dest = v.check_abs_path(value.get("destination"), "mounts")
    if dest == "/":
        raise InvalidArgument("a mount cannot replace the root filesystem", field="mounts")
    options = value.get("options", [])
    if not isinstance(options, list) or not all(
            isinstance(o, str) and "," not in o and "\0" not in o for o in options):
        raise InvalidArgument(f"options of the mount on {dest} must be a list of strings",
                              field="mounts")
    if kind == "tmpfs":
        return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                "options": options or ["nosuid", "nodev", "mode=1777"]}
    source = v.check_abs_path(value.get("source"), "mounts")
    if not any(o in ("bind", "rbind") for o in options):
        options = ["rbind"] + options
    return {"destination": dest, "type": "bind", "source": source, "options": options}


def _mount_string(text: str) -> dict:
    """`type=bind,src=/srv,dst=/srv,ro` (podman and docker's --mount),
    `type=tmpfs,dst=/run,tmpfs-size=64m`, or `/srv:/srv[:ro]` (-v)."""
    if "=" not in text:
        parts = text.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise InvalidArgument(f"mount {text!r}: use SRC:DST[:ro] or "
                                  "type=bind,src=...,dst=...[,ro]", field="mounts")
        return {"type": "bind", "source": parts[0], "destination": parts[1],
                "options": ["rbind", parts[2] if len(parts) == 3 else "rw"]}
    out: dict = {"type": "bind"}
    options: list[str] = []
    for item in text.split(","):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if key == "type":
            out["type"] = val
        elif key in ("source", "src"):
            out["source"] = val
        elif key in ("destination", "dst", "target"):
            out["destination"] = val
        elif key in ("ro", "readonly"):
            if val.lower() not in ("", "true", "1", "false", "0"):
                raise InvalidArgument(f"mount {text!r}: {key}={val}?", field="mounts")
            options.append("ro" if val.lower() in ("", "true", "1") else "rw")
        elif key == "rw" and not eq:
            options.append("rw")
        elif key == "tmpfs-size":
            options.append(f"size={val}")
        elif key == "tmpfs-mode":
            options.append(f"mode={val}")
        elif key == "bind-propagation" and val in ("private", "rprivate", "slave", "rslave",
                                                   "shared", "rshared"):
            options.append(val)
        else:
            raise InvalidArgument(f"mount {text!r}: unknown option {item!r} (known: type, "
                                  "src, dst, ro, rw, tmpfs-size, tmpfs-mode, "
                                  "bind-propagation)", field="mounts")
    if out["type"] == "tmpfs":
        options = ["nosuid", "nodev"] + (options or ["mode=1777"])
    out["options"] = options
    return out
