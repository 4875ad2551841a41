"""Resource usage of a container from its cgroups, on cgroup v1 (each
controller its own hierarchy) and v2 alike, found through /proc/PID/cgroup
so the paths the runtime chose never need guessing."""

import os
import time

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_paths(pid: int) -> dict[str, str]:
    """controller -> absolute cgroup directory of process `pid`
    ("" is the unified v2 hierarchy)."""
    paths = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, rel = line.rstrip("\n").split(":", 2)
            if controllers == "":
                base = os.path.join(CGROUP_ROOT, "unified")
                if not os.path.isdir(base):
                    base = CGROUP_ROOT
                paths[""] = base + rel
                continue
            for ctl in controllers.split(","):
                ctl = ctl.removeprefix("name=")
                paths[ctl] = os.path.join(CGROUP_ROOT, controllers, rel.lstrip("/"))
                if not os.path.isdir(paths[ctl]):
                    paths[ctl] = os.path.join(CGROUP_ROOT, ctl, rel.lstrip("/"))
    return paths


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (FileNotFoundError, OSError):
        return None


def _int(path: str) -> int | None:
    value = _read(path)
    if value is None or value == "max":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _kv(path: str) -> dict[str, int]:
    out = {}
    for line in (_read(path) or "").splitlines():
        k, _, val = line.partition(" ")
        if val.strip().isdigit():
            out[k] = int(val)
    return out


def _v1_or_v2(paths: dict, controller: str):
    """(path, is_v2) for a controller: a v1 hierarchy if mounted, else v2."""
    if controller in paths and os.path.isdir(paths[controller]):
        return paths[controller], False
    return paths.get(""), True


def sample(pid: int) -> dict:
    paths = cgroup_paths(pid)
    out = {"read": time.time_ns()}
    cpu, v2 = _v1_or_v2(paths, "cpuacct")
    if v2:
        usec = _kv(os.path.join(cpu, "cpu.stat")).get("usage_usec")
        out["cpuNs"] = usec * 1000 if usec is not None else None
    else:
        out["cpuNs"] = _int(os.path.join(cpu, "cpuacct.usage"))
    mem, v2 = _v1_or_v2(paths, "memory")
    if v2:
        out["memUsage"] = _int(os.path.join(mem, "memory.current"))
        out["memLimit"] = _int(os.path.join(mem, "memory.max"))
        out["oomKills"] = _kv(os.path.join(mem, "memory.events")).get("oom_kill", 0)
    else:
        out["memUsage"] = _int(os.path.join(mem, "memory.usage_in_bytes"))
        limit = _int(os.path.join(mem, "memory.limit_in_bytes"))
        # v1 reports "no limit" as a huge page-aligned number.
        out["memLimit"] = limit if limit is not None and limit < 1 << 62 else None
        out["oomKills"] = _kv(os.path.join(mem, "memory.oom_control")).get("oom_kill", 0)
    pids, v2 = _v1_or_v2(paths, "pids")
    out["pids"] = _int(os.path.join(pids, "pids.current"))
    out["pidsLimit"] = _int(os.path.join(pids, "pids.max"))
    blk, v2 = _v1_or_v2(paths, "blkio")
    read = write = 0
    if v2:
        for line in (_read(os.path.join(blk, "io.stat")) or "").splitlines():
            fields = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
            read += int(fields.get("rbytes", 0))
            write += int(fields.get("wbytes", 0))
    else:
        for line in (_read(os.path.join(blk, "blkio.throttle.io_service_bytes")) or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                read += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                write += int(parts[2])
    out["blockRead"], out["blockWrite"] = read, write
    out["networks"] = _net(pid)
    return out


def _net(pid: int) -> dict:
    """Per-interface counters of the container's own network namespace."""
    nets = {}
    for line in (_read(f"/proc/{pid}/net/dev") or "").splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 16:
            nets[name.strip()] = {"rxBytes": int(f[0]), "rxPackets": int(f[1]),
                                  "txBytes": int(f[8]), "txPackets": int(f[9])}
    return nets


def oom_kills(pid: int) -> int:
    try:
        return sample_memory_oom(cgroup_paths(pid))
    except OSError:
        return 0


def sample_memory_oom(paths: dict) -> int:
    mem, v2 = _v1_or_v2(paths, "memory")
    if mem is None:
        return 0
    if v2:
        return _kv(os.path.join(mem, "memory.events")).get("oom_kill", 0)
    return _kv(os.path.join(mem, "memory.oom_control")).get("oom_kill", 0)


def to_api(cid: str, cur: dict, prev: dict | None, ncpus: int) -> dict:
    """Podman's field set (ContainerStats), camelCase."""
    cpu_pct = 0.0
    if prev and cur.get("cpuNs") is not None and prev.get("cpuNs") is not None:
        wall = cur["read"] - prev["read"]
        if wall > 0:
            cpu_pct = 100.0 * (cur["cpuNs"] - prev["cpuNs"]) / wall
    mem_pct = 0.0
    limit = cur.get("memLimit")
    if limit is None:
        import psutil
        limit = psutil.virtual_memory().total
    if cur.get("memUsage") is not None and limit:
        mem_pct = 100.0 * cur["memUsage"] / limit
    nets = cur["networks"]
    return {
        "id": cid,
        "read": cur["read"],
        "cpu": {"totalNs": cur.get("cpuNs"), "percent": round(cpu_pct, 2), "onlineCpus": ncpus},
        "memory": {"usage": cur.get("memUsage"), "limit": limit, "percent": round(mem_pct, 2)},
        "pids": {"current": cur.get("pids"), "limit": cur.get("pidsLimit")},
        "blockIO": {"readBytes": cur["blockRead"], "writeBytes": cur["blockWrite"]},
        "network": nets,
        "netInput": sum(n["rxBytes"] for n in nets.values()),
        "netOutput": sum(n["txBytes"] for n in nets.values()),
    }


def remove_empty_parent(name: str) -> None:
    """Remove the daemon's cgroup parent dirs once no container is left in
    them (runc removes each container's own dir, never the parent)."""
    for base in os.listdir(CGROUP_ROOT):
        path = os.path.join(CGROUP_ROOT, base, name)
        try:
            os.rmdir(path)
        except OSError:
            pass  # absent, or still holds containers
