"""Checks on user input that must happen before anything touches a path."""

import os
import re
import signal

from .errors import InvalidArgument

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_id(value, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidArgument(
            f"invalid {what} {value!r}: must match {ID_RE.pattern}", field=what
        )
    return value


def _signal_names() -> dict[str, int]:
    names = {}
    for name, sig in signal.Signals.__members__.items():
        if name.startswith("SIG") and not name.startswith("SIG_"):
            names[name] = int(sig)
            names[name[3:]] = int(sig)
    return names


SIGNALS = _signal_names()
SIGNAL_NAMES = sorted(SIGNALS)


def check_signal(value) -> int:
    """A signal as a number (1-64, or its digits) or a name, with or
    without SIG, in any case: 15, "15", "SIGTERM", "TERM", "term"."""
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            value = int(text)
        elif text in SIGNALS:
            return SIGNALS[text]
        elif ("SIG" + text) in SIGNALS:
            return SIGNALS["SIG" + text]
        else:
            raise InvalidArgument(
                f"invalid signal {value!r}: use a number from 1 to 64 or a name such as "
                "SIGTERM or TERM", field="signal")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise InvalidArgument(
            f"invalid signal {value!r}: must be an integer from 1 to 64 or a name such as "
            "SIGTERM", field="signal"
        )
    return value


def check_abs_path(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} is required and must be a string", field=what)
    if not os.path.isabs(value) or "\0" in value:
        raise InvalidArgument(f"{what} must be an absolute path: {value!r}", field=what)
    return os.path.normpath(value)


def _str_list(value, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what} must be a list of strings", field=what)
    if any("\0" in v for v in value):
        raise InvalidArgument(f"{what} must not contain NUL bytes", field=what)
    return value


def check_fields(body: dict, allowed, what: str) -> None:
    """An unknown field is a mistake (a misspelt setting would otherwise be
    silently dropped): name it and list what is allowed."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidArgument(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"in {what}; allowed: {', '.join(sorted(allowed))}",
            field=unknown[0], unknown=unknown, allowed=sorted(allowed))


# What an OCI process of a request may say (PUT /process, exec).
PROCESS_FIELDS = {"args", "env", "cwd", "terminal", "user", "capabilities",
                  "noNewPrivileges", "apparmorProfile", "selinuxLabel"}


def check_process(body, defaults: dict) -> dict:
    """Validate an OCI process from a request and fill it from `defaults`
    (the init process of the container), as `runc exec --process` needs a
    complete one."""
    if not isinstance(body, dict):
        raise InvalidArgument("body must be a JSON object (an OCI process)")
    args = body.get("args")
    if not args:
        raise InvalidArgument("args is required: a non-empty list of strings", field="args")
    _str_list(args, "args")
    env = _str_list(body.get("env", defaults.get("env", [])), "env")
    # Like `docker exec`, the container's own cwd and user unless given.
    cwd = body.get("cwd", defaults.get("cwd", "/")) or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidArgument("cwd must be an absolute path", field="cwd")
    terminal = body.get("terminal", False)
    if not isinstance(terminal, bool):
        raise InvalidArgument("terminal must be a boolean", field="terminal")
    user = body.get("user", defaults.get("user", {"uid": 0, "gid": 0}))
    if not isinstance(user, dict):
        raise InvalidArgument("user must be an object {uid, gid, additionalGids}", field="user")
    out_user = {}
    for key in ("uid", "gid"):
        v = user.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidArgument(f"user.{key} must be a non-negative integer", field="user")
        out_user[key] = v
    extra = user.get("additionalGids")
    if extra is not None:
        if not isinstance(extra, list) or not all(
            isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in extra
        ):
            raise InvalidArgument("user.additionalGids must be a list of gids", field="user")
        out_user["additionalGids"] = extra
    process = {"args": args, "env": env, "cwd": cwd, "terminal": terminal, "user": out_user}
    # Without these the exec'd process would run with no capabilities at all
    # (runc does not inherit them from init); copy init's, as Docker does.
    for key in ("capabilities", "noNewPrivileges", "apparmorProfile", "selinuxLabel"):
        if key in body:
            process[key] = body[key]
        elif key in defaults:
            process[key] = defaults[key]
    return process


def parse_bool(value: str | None, what: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    low = value.lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"{what} must be true or false, not {value!r}", field=what)


def parse_int(value: str | None, what: str, default: int | None = None,
              minimum: int | None = 0) -> int | None:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"{what} must be an integer, not {value!r}", field=what) from None
    if minimum is not None and n < minimum:
        raise InvalidArgument(f"{what} must be >= {minimum}", field=what)
    return n


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value, what: str) -> int:
    """Bytes from an integer or a string like Zun's "256M"."""
    n = None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([bkmgtBKMGT]?)(?:i?[bB])?\s*", value)
        if m:
            n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n is None:
        raise InvalidArgument(f"{what} must be a positive number of bytes or a size like "
                              "'256M'", field=what)
    return n


def _positive_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidArgument(f"{what} must be a positive number", field=what)
    return value


def oci_resources(body: dict) -> dict:
    """The API's resource forms -> an OCI LinuxResources object.

    `{"resources": {"memory", "cpus", "cpuShares", "cpuQuota", "cpuPeriod",
    "pidsLimit"}}`, or Zun's `{"cpu": 0.5, "memory": "256M"}`."""
    res = body.get("resources", {})
    if not isinstance(res, dict):
        raise InvalidArgument("resources must be an object", field="resources")
    res = dict(res)
    if "cpu" in body:
        res.setdefault("cpus", body["cpu"])
    if "memory" in body:
        res.setdefault("memory", body["memory"])
    known = {"memory", "cpus", "cpuShares", "cpuQuota", "cpuPeriod", "pidsLimit"}
    if not res or set(res) - known:
        raise InvalidArgument(f"resources takes {sorted(known)}; got {sorted(res)}",
                              field="resources")
    out: dict = {}
    if "memory" in res:
        limit = parse_size(res["memory"], "memory")
        # swap == limit: no swap on top of the limit, and on cgroup v1 the
        # memsw limit must never be below the memory limit.
        out["memory"] = {"limit": limit, "swap": limit}
    cpu: dict = {}
    period = int(_positive_number(res["cpuPeriod"], "cpuPeriod")) if "cpuPeriod" in res else None
    if "cpus" in res:
        period = period or 100000
        # The kernel refuses a quota under 1 ms per period.
        cpu["quota"] = max(1000, int(_positive_number(res["cpus"], "cpus") * period))
        cpu["period"] = period
    if "cpuQuota" in res:
        cpu["quota"] = int(_positive_number(res["cpuQuota"], "cpuQuota"))
    if period:
        cpu["period"] = period
    if "cpuShares" in res:
        cpu["shares"] = int(_positive_number(res["cpuShares"], "cpuShares"))
    if cpu:
        out["cpu"] = cpu
    if "pidsLimit" in res:
        out["pids"] = {"limit": int(_positive_number(res["pidsLimit"], "pidsLimit"))}
    return out
