#!/usr/bin/env python3
"""containerd-py benchmarks, side by side with the bare runtimes, containerd
and podman, in one run (`make bench`, or `.venv/bin/python bench/run.py`).

    bench/run.py            full run (~10-15 min on 2 cores)
    bench/run.py --quick    smoke run (~1-2 min, few iterations)

    bench/run.py --only cri critest --benchmark against containerd-py and
                            containerd 1.6's CRI plugin (bench/cri.py)

Writes docs/benchmarks.md, docs/bench-*.png and docs/benchmarks.json; with
--only, just the sections (and numbers) of the figures it ran.
Installs containerd, podman and the CNI plugins from Debian if they are
missing. Every daemon
runs on private state under a temporary work dir and is stopped at the end;
every container, mount and daemon is removed, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import itertools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import (Samples, Unavailable, memory_kb, one_line, run,  # noqa: E402
                    unmount_all_under)
import systems as S  # noqa: E402
import images as images_bench  # noqa: E402
import migrate as migrate_bench  # noqa: E402
import load as load_bench  # noqa: E402
import network as network_bench  # noqa: E402
import cri as cri_bench  # noqa: E402

REPO = S.REPO


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- installing the baselines ------------------------------------------------------

APT_PACKAGES = {"containerd": ["containerd", "ctr", "containerd-shim-runc-v2"],
                "podman": ["podman"], "conmon": ["conmon"],
                # containerd's CRI pods need a CNI network (bench/cri.py)
                "containernetworking-plugins": [os.path.join(cri_bench.CNI_BIN, p)
                                                for p in cri_bench.CNI_PLUGINS]}


def _have(binary: str) -> bool:
    return os.access(binary, os.X_OK) if os.path.isabs(binary) else bool(shutil.which(binary))


def install_baselines() -> dict:
    """apt-get install what is missing (idempotent: nothing runs when all the
    binaries are there). Returns {package: 'ok' | error}."""
    missing = [pkg for pkg, bins in APT_PACKAGES.items() if not all(_have(b) for b in bins)]
    status = {pkg: "ok" for pkg in APT_PACKAGES if pkg not in missing}
    if not missing:
        return status
    log(f"installing from Debian: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       capture_output=True, env=env)
    if p.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env)
        p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                           capture_output=True, env=env)
    for pkg in missing:
        ok = all(_have(b) for b in APT_PACKAGES[pkg])
        status[pkg] = "ok" if ok else \
            f"apt-get install failed: {one_line(p.stderr.decode(errors='replace'), 200)}"
    return status


def versions() -> dict:
    def v(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return one_line((out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr)
                            else "?", 120)
        except Exception as e:  # noqa: BLE001
            return f"unavailable: {one_line(e, 80)}"
    import containerd_py
    return {
        "containerd-py": containerd_py.__version__,
        "runc": v(["runc", "--version"]),
        "crun": v(["crun", "--version"]),
        "containerd": v(["containerd", "--version"]),
        "podman": v(["podman", "--version"]),
        "conmon": v(["conmon", "--version"]),
        "criu": v([S.CRIU, "--version"]) if os.path.exists(S.CRIU) else "not found",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


# -- ids ---------------------------------------------------------------------------

_ids = itertools.count()
_TAG = f"cpb{os.getpid() % 100000}"


def new_id() -> str:
    return f"{_TAG}-{next(_ids)}"


def rotated(items, i):
    i %= max(len(items), 1)
    return items[i:] + items[:i]


# -- figure 1: start latency -------------------------------------------------------

def fig_start(systems: list, rounds: int, warmup: int) -> dict:
    modes = {"running": "start", "exited": "run_true"}
    res = {s.key: {m: Samples() for m in modes} for s in systems}

    def once(s, mode, record: bool):
        sm = res[s.key][mode]
        if not sm.values and sm.failures >= 2:
            return  # unavailable: do not keep retrying
        cid = new_id()
        t0 = time.perf_counter()
        try:
            getattr(s, modes[mode])(cid)
            dt = time.perf_counter() - t0
            if record:
                sm.add(dt)
        except Unavailable as e:
            sm.failures += 1
            sm.error = str(e)
        finally:
            try:
                s.remove(cid)
            except Exception as e:  # noqa: BLE001
                print(f"  warning: remove {cid}: {one_line(e)}", file=sys.stderr)

    for i in range(warmup):
        for s in systems:
            for mode in modes:
                once(s, mode, False)
    for i in range(rounds):
        for s in rotated(systems, i):          # A B C ... then B C ... A
            for mode in (modes if i % 2 == 0 else list(modes)[::-1]):
                once(s, mode, True)
        if i % 5 == 4 or i == rounds - 1:
            log(f"  start latency: round {i + 1}/{rounds}")
    return {k: {m: sm.to_json() for m, sm in v.items()} for k, v in res.items()}


# -- figure 2: throughput ------------------------------------------------------------

def cpu_jiffies() -> int:
    """Busy jiffies of the whole machine (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def proc_cpu_jiffies(pid) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        return int(st[11]) + int(st[12])  # utime + stime
    except (OSError, TypeError):
        return 0


def fig_throughput(systems: list, sizes: list[int], reps: dict) -> dict:
    res = {s.key: {str(n): Samples() for n in sizes} for s in systems}
    cpu = {s.key: {str(n): Samples() for n in sizes} for s in systems}
    dcpu = {s.key: {str(n): Samples() for n in sizes} for s in systems}
    hz = os.sysconf("SC_CLK_TCK")
    for n in sizes:
        for rep in range(reps[n]):
            for s in rotated(systems, rep):
                sm = res[s.key][str(n)]
                if not sm.values and sm.failures >= 1:
                    continue
                ids = [new_id() for _ in range(n)]
                errors = []
                j0, dj0 = cpu_jiffies(), proc_cpu_jiffies(s.daemon_pid)
                t0 = time.perf_counter()
                with cf.ThreadPoolExecutor(n) as ex:
                    futs = [ex.submit(s.start, cid) for cid in ids]
                    for f in futs:
                        try:
                            f.result()
                        except Exception as e:  # noqa: BLE001
                            errors.append(one_line(e))
                dt = time.perf_counter() - t0
                j1, dj1 = cpu_jiffies(), proc_cpu_jiffies(s.daemon_pid)
                s.remove_many(ids)
                ok = n - len(errors)
                if ok:
                    cpu[s.key][str(n)].add((j1 - j0) / hz / ok)
                    if s.daemon_pid:
                        dcpu[s.key][str(n)].add((dj1 - dj0) / hz / ok)
                if errors:
                    sm.failures += len(errors)
                    sm.error = f"{len(errors)}/{n} failed, e.g. {errors[0]}"
                if ok:
                    sm.add(ok / dt)
                log(f"  throughput {s.key} n={n}: {ok}/{n} in {dt:.2f}s = {ok / dt:.1f}/s")
    out = {k: {n: sm.to_json() for n, sm in v.items()} for k, v in res.items()}
    for k in out:
        for n in out[k]:
            out[k][n]["cpu_s_per_container"] = cpu[k][n].median()
            out[k][n]["daemon_cpu_s_per_container"] = dcpu[k][n].median()
    return out


# -- figures 3 and 4: memory and API latency at scale ---------------------------------

def fill(system, ids: list[str], target: int, workers: int) -> None:
    need = [new_id() for _ in range(target - len(ids))]
    errors = []
    with cf.ThreadPoolExecutor(workers) as ex:
        for cid, f in zip(need, [ex.submit(system.start, c) for c in need]):
            try:
                f.result()
                ids.append(cid)
            except Exception as e:  # noqa: BLE001
                errors.append(one_line(e))
    if errors:
        raise Unavailable(f"{len(errors)} of {len(need)} starts failed, e.g. {errors[0]}")


def settle_memory(pid: int) -> dict:
    time.sleep(1.0)
    return memory_kb(pid)


def supervisor_pss(system, ids: list[str]) -> dict:
    vals, rss = [], []
    for cid in ids:
        pid = system.supervisor_pid(cid)
        if pid:
            try:
                m = memory_kb(pid)
            except OSError:
                continue
            vals.append(m["pss"])
            rss.append(m["rss"])
    if not vals:
        raise Unavailable(f"no {system.supervisor_name} process found")
    vals.sort()
    return {"n": len(vals), "pss_kb_median": vals[len(vals) // 2], "pss_kb_mean":
            sum(vals) / len(vals), "rss_kb_median": sorted(rss)[len(rss) // 2],
            "process": system.supervisor_name}


def api_latency(client, ids: list[str], k: int) -> dict:
    st, gt = Samples(), Samples()
    for i in range(k):                          # alternate the two requests
        t0 = time.perf_counter()
        client.state()
        st.add(time.perf_counter() - t0)
        cid = random.choice(ids)
        t0 = time.perf_counter()
        client.get(cid)
        gt.add(time.perf_counter() - t0)
    return {"GET /state": st.to_json(), "GET /containers/{id}": gt.to_json()}


def ctr_latency(ctd, ids: list[str], k: int) -> dict:
    """For context only: the ctr CLI (a process start + gRPC) on the same
    number of containers."""
    ls, info = Samples(), Samples()
    for i in range(k):
        t0 = time.perf_counter()
        run(ctd._ctr("task", "ls"))
        ls.add(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run(ctd._ctr("container", "info", random.choice(ids)))
        info.add(time.perf_counter() - t0)
    return {"ctr task ls": ls.to_json(), "ctr container info ID": info.to_json()}


def fig_scale_cpy(work: str, bundles: dict, levels: list[int], api_levels: list[int],
                  pss_level: int, k: int) -> dict:
    """A fresh daemon, filled to each level in turn."""
    out = {"daemon": {}, "api": {}, "supervisor": None, "errors": []}
    d = S.ContainerdPyDaemon(os.path.join(work, "scale"))
    sysm = S.ContainerdPy(d, "runc", bundles)
    ids: list[str] = []
    try:
        d.start()
        for level in levels:
            t0 = time.perf_counter()
            fill(sysm, ids, level, 8)
            fill_s = time.perf_counter() - t0
            m = settle_memory(d.pid)
            out["daemon"][str(level)] = {**m, "fill_s": fill_s}
            log(f"  containerd-py at {level}: daemon rss {m['rss'] / 1024:.1f} MiB "
                f"pss {m['pss'] / 1024:.1f} MiB (fill {fill_s:.1f}s)")
            if level in api_levels:
                out["api"][str(level)] = api_latency(d.client, ids, k)
            if level == pss_level:
                out["supervisor"] = supervisor_pss(sysm, ids)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(one_line(e))
        log(f"  containerd-py scale: {one_line(e)}")
    finally:
        d.close()
    return out


def fig_scale_containerd(work: str, rootfs: str, levels: list[int], api_levels: list[int],
                         pss_level: int, k: int) -> dict:
    out = {"daemon": {}, "api": {}, "supervisor": None, "errors": []}
    ctd = S.Containerd(os.path.join(work, "scale"), rootfs)
    ids: list[str] = []
    try:
        ctd.setup()
        for level in levels:
            t0 = time.perf_counter()
            fill(ctd, ids, level, 8)
            fill_s = time.perf_counter() - t0
            m = settle_memory(ctd.daemon_pid)
            out["daemon"][str(level)] = {**m, "fill_s": fill_s}
            log(f"  containerd at {level}: daemon rss {m['rss'] / 1024:.1f} MiB "
                f"pss {m['pss'] / 1024:.1f} MiB (fill {fill_s:.1f}s)")
            if level in api_levels:
                out["api"][str(level)] = ctr_latency(ctd, ids, max(5, k // 5))
            if level == pss_level:
                out["supervisor"] = supervisor_pss(ctd, ids)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(one_line(e))
        log(f"  containerd scale: {one_line(e)}")
    finally:
        ctd.close()
    return out


def fig_scale_podman(podman, pss_level: int) -> dict:
    out = {"supervisor": None, "errors": []}
    ids: list[str] = []
    try:
        fill(podman, ids, pss_level, 4)
        out["supervisor"] = supervisor_pss(podman, ids)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(one_line(e))
    finally:
        podman.remove_many(ids, 4)
    return out


# -- figure 5: time to ready, cold vs restore ---------------------------------------

def parse_cri_ts(ts: str) -> int:
    """'2026-11-25T18:00:00.123456789Z' -> ns since the epoch."""
    base, _, frac = ts.rstrip("Z").partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 10**9 + int((frac or "0").ljust(9, "0")[:9])


def shim_write_stdin(shim_dir: str, data: bytes) -> None:
    """Write to the container's stdin through its shim's control socket (the
    `stdin` request of docs/shim.md): the API has no attach route yet."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(os.path.join(shim_dir, "shim.sock"))
        s.sendall(b"stdin\x000\n")
        reply, fds, _, _ = socket.recv_fds(s, 4096, 1)
    finally:
        s.close()
    if not fds:
        raise Unavailable(f"shim stdin request: {reply!r}")
    try:
        os.write(fds[0], data)
    finally:
        os.close(fds[0])


def wait_log(client, cid: str, needle: str, timeout: float, since_ns: int = 0) -> int:
    """Poll GET /containers/{id}/logs until a line equals needle; returns the
    line's timestamp (ns, written by the shim when it read the line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in client.logs(cid, stderr=False):
            if e["line"] == needle:
                return parse_cri_ts(e["timestamp"])
        time.sleep(0.05)
    raise Unavailable(f"no {needle!r} in the logs of {cid} after {timeout:.0f}s")


def time_to_ready(d, cid: str, bundle: str, **opts) -> dict:
    """POST create (or restore) -> API returned, -> 'ready' logged (cold only),
    -> 'pong' logged in answer to a stdin ping."""
    token = f"ping-{cid}"
    t0_ns = time.time_ns()
    t0 = time.perf_counter()
    try:
        d.client.create(cid, bundle, **opts)
    except S.APIError as e:
        raise Unavailable(f"POST /containers/{{id}} {one_line(opts)} -> {e.status}: "
                          f"{one_line(e.body.get('error', e.body))}") from None
    api = time.perf_counter() - t0
    shim_write_stdin(os.path.join(d.state, "shims", cid), token.encode() + b"\n")
    pong = (wait_log(d.client, cid, f"pong {token}", 120) - t0_ns) / 1e9
    out = {"api": api, "pong": pong}
    if "checkpoint" not in opts:
        out["ready"] = (wait_log(d.client, cid, "ready", 5) - t0_ns) / 1e9
    return out


def fig_ready(d, work: str, sizes: list[int], reps: int, podman) -> dict:
    res: dict = {}
    for mb in sizes:
        r = res[str(mb)] = {"cold": {k: Samples() for k in ("api", "ready", "pong")},
                            "eager": {k: Samples() for k in ("api", "pong")},
                            "lazy": {k: Samples() for k in ("api", "pong")},
                            "checkpoint": Samples(), "errors": []}
        bundle = S.make_pyapp_bundle(work, mb)
        name = f"cp{mb}"
        # cold starts; the last one is checkpointed (and exits)
        for i in range(reps):
            cid = new_id()
            try:
                t = time_to_ready(d, cid, bundle)
                for k, v in t.items():
                    r["cold"][k].add(v)
                # every cold container is checkpointed (for the dump time);
                # the restores use the last one
                cp = name if i == reps - 1 else f"{name}-{i}"
                t0 = time.perf_counter()
                try:
                    d.client.checkpoint(cid, cp, exit=True)
                    r["checkpoint"].add(time.perf_counter() - t0)
                except S.APIError as e:
                    r["checkpoint"].error = (f"POST /containers/{{id}}/checkpoint/{{name}} "
                                             f"-> {e.status}: "
                                             f"{one_line(e.body.get('error', e.body))}")
                if cp != name:
                    shutil.rmtree(os.path.join(bundle, "checkpoints", cp), ignore_errors=True)
            except Unavailable as e:
                r["cold"]["pong"].error = str(e)
            finally:
                _delete(d, cid)
        log(f"  pyapp {mb} MiB: cold {fmt_s(r['cold']['pong'].median())}, checkpoint "
            f"{fmt_s(r['checkpoint'].median()) if r['checkpoint'].ok else r['checkpoint'].error}")
        if os.path.isdir(os.path.join(bundle, "checkpoints", name)):
            for i in range(reps):
                for mode in (("eager", "lazy") if i % 2 == 0 else ("lazy", "eager")):
                    if r[mode]["pong"].failures >= 2:
                        continue
                    cid = new_id()
                    try:
                        opts = {"checkpoint": name}
                        if mode == "lazy":
                            opts["lazy"] = True
                        t = time_to_ready(d, cid, bundle, **opts)
                        for k, v in t.items():
                            r[mode][k].add(v)
                    except Unavailable as e:
                        r[mode]["pong"].failures += 1
                        r[mode]["pong"].error = str(e)
                    finally:
                        _delete(d, cid)
            log(f"  pyapp {mb} MiB: restore eager {fmt_s(r['eager']['pong'].median())} "
                f"lazy {fmt_s(r['lazy']['pong'].median())}"
                + (f" ({r['lazy']['pong'].error})" if r['lazy']['pong'].error else "")
                + (f" ({r['eager']['pong'].error})" if r['eager']['pong'].error else ""))
        else:
            for mode in ("eager", "lazy"):
                r[mode]["pong"].error = "no checkpoint: " + str(r["checkpoint"].error)
        if mb == min(sizes) and os.path.isdir(os.path.join(bundle, "checkpoints", name)):
            r["clones"] = fig_clones(d, bundle, name, CLONE_COUNTS, reps)
        shutil.rmtree(os.path.join(bundle, "checkpoints"), ignore_errors=True)
        if podman is not None:
            r["podman"] = podman_ready(podman, bundle, mb, reps)
        res[str(mb)] = _jsonify(r)
    return res


CLONE_COUNTS = (1, 4, 8)


def fig_clones(d, bundle: str, name: str, counts, reps: int) -> dict:
    """N containers restored at once from one checkpoint, each under its own
    id, shim and overlay: wall time from the first request until every clone
    has answered its ping, and each clone's own time to answer."""
    out = {}
    for n in counts:
        wall, each = Samples(), Samples()
        for _ in range(reps):
            ids = [new_id() for _ in range(n)]
            t0 = time.perf_counter()
            try:
                with cf.ThreadPoolExecutor(n) as pool:
                    times = list(pool.map(
                        lambda cid: time_to_ready(d, cid, bundle, checkpoint=name)["pong"], ids))
                wall.add(time.perf_counter() - t0)
                for t in times:
                    each.add(t)
            except Unavailable as e:
                wall.error = str(e)
            finally:
                for cid in ids:
                    _delete(d, cid)
        out[str(n)] = {"wall": wall, "each": each}
        log(f"  {n} clone(s) at once: all answered in {fmt_s(wall.median())}, "
            f"each {fmt_s(each.median())}")
    return out


def _delete(d, cid):
    try:
        d.client.delete(cid, force=True)
    except S.APIError as e:
        if e.status != 404:
            print(f"  warning: delete {cid}: {e}", file=sys.stderr)


def _jsonify(obj):
    if isinstance(obj, Samples):
        return obj.to_json()
    if isinstance(obj, dict):
        return {k: _jsonify(v) for k, v in obj.items()}
    return obj


def podman_ready(podman, bundle: str, mb: int, reps: int) -> dict:
    """podman run -d -i of the same app (same rootfs, mounts and env) ->
    'ready' in its k8s-file log; then `podman container checkpoint` and
    `restore` in place."""
    import json
    out = {"cold_ready": Samples(), "checkpoint": Samples(), "restore": Samples()}
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    argv = podman.base() + ["run", "-d", "-i", "--network", "none", "--read-only",
                            *S.PODMAN_ULIMITS]
    for m in spec["mounts"]:
        if m["type"] == "bind":
            argv += ["-v", f"{m['source']}:{m['destination']}:ro"]
    for e in spec["process"]["env"]:
        argv += ["-e", e]
    cid = None
    for i in range(reps):
        cid = new_id()
        try:
            t0_ns = time.time_ns()
            S._detached(argv[:len(podman.base())] + ["run", "--name", cid]
                        + argv[len(podman.base()) + 1:]
                        + ["--rootfs", podman.rootfs] + spec["process"]["args"], env=podman.env)
            p = run(podman.base() + ["inspect", "--format", "{{.HostConfig.LogConfig.Path}}",
                                     cid], env=podman.env)
            path = p.stdout.decode().strip()
            deadline = time.monotonic() + 60
            ts = None
            while ts is None and time.monotonic() < deadline:
                try:
                    with open(path) as f:
                        for line in f:
                            parts = line.rstrip("\n").split(" ", 3)
                            if len(parts) == 4 and parts[1] == "stdout" and parts[3] == "ready":
                                ts = parse_cri_ts(parts[0])
                except FileNotFoundError:
                    pass
                time.sleep(0.02)
            if ts is None:
                raise Unavailable("podman: no 'ready' in the log after 60 s")
            out["cold_ready"].add((ts - t0_ns) / 1e9)
            if i < reps - 1:
                podman.remove(cid)
        except Unavailable as e:
            out["cold_ready"].error = str(e)
            podman.remove(cid)
            cid = None
            break
    if cid is not None:
        try:
            for i in range(reps):
                t0 = time.perf_counter()
                run(podman.base() + ["container", "checkpoint", cid], env=podman.env,
                    timeout=300)
                out["checkpoint"].add(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run(podman.base() + ["container", "restore", cid], env=podman.env, timeout=300)
                out["restore"].add(time.perf_counter() - t0)
        except Unavailable as e:
            (out["restore"] if out["checkpoint"].ok and len(out["checkpoint"].values) >
             len(out["restore"].values) else out["checkpoint"]).error = str(e)
            if not out["restore"].ok:
                out["restore"].error = out["restore"].error or "checkpoint failed: " + str(e)
        finally:
            podman.remove(cid)
    log(f"  podman pyapp {mb} MiB: cold {fmt_s(out['cold_ready'].median())} restore "
        f"{fmt_s(out['restore'].median()) if out['restore'].ok else out['restore'].error}")
    return out


def fmt_s(v):
    return "-" if v is None else f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


def daemon_log_summary(work: str) -> dict:
    """WARNING/ERROR lines of every containerd-py daemon log of this run,
    counted by message (container ids masked)."""
    import re
    counts: dict = {}
    for root, _, files in os.walk(work):
        if "daemon.log" in files:
            try:
                with open(os.path.join(root, "daemon.log"), errors="replace") as f:
                    for line in f:
                        if " WARNING " in line or " ERROR " in line or "Traceback" in line:
                            msg = re.sub(r"^\S+ \S+ ", "", line.strip())
                            msg = re.sub(_TAG + r"-\d+", "ID", msg)
                            msg = re.sub(r"/var/tmp/cpb-[^/ ]+", "WORK", msg)
                            counts[msg[:300]] = counts.get(msg[:300], 0) + 1
            except OSError:
                pass
    return dict(sorted(counts.items(), key=lambda x: -x[1])[:20])


# -- cgroups the baselines leave behind ------------------------------------------

# ctr puts containers under /default/ID, podman under /libpod_parent/...: the
# parents stay (empty) after the containers go.
# containerd's CRI puts pods without a cgroup parent under /k8s.io/ID.
BASELINE_CGROUP_PARENTS = ("default", "libpod_parent", "k8s.io")


def top_cgroups() -> set[str]:
    out = set()
    for ctl in os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else []:
        for name in BASELINE_CGROUP_PARENTS:
            if os.path.isdir(os.path.join("/sys/fs/cgroup", ctl, name)):
                out.add(os.path.join("/sys/fs/cgroup", ctl, name))
    return out


def remove_new_cgroups(before: set[str]) -> None:
    """rmdir (only empty cgroups can be removed) the parents that did not
    exist before the benchmark."""
    for top in top_cgroups() - before:
        dirs = [top] + [os.path.join(r, d) for r, ds, _ in os.walk(top) for d in ds]
        for path in sorted(dirs, key=len, reverse=True):
            try:
                os.rmdir(path)
            except OSError:
                pass


# -- main --------------------------------------------------------------------------

FIGURES = ["start", "throughput", "scale", "ready", "images", "goals", "migrate", "network",
           "load", "cri"]


def merge_previous(results: dict, only: set, json_path: str) -> dict:
    """A run of some figures: the previous benchmarks.json with this run's
    figures replaced (and when each was last run), so the file keeps every
    figure's numbers."""
    try:
        with open(json_path) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        return results
    merged = dict(prev)
    for fig in only:
        if fig in results:
            merged[fig] = results[fig]
    runs = dict(prev.get("figure_runs") or {})
    for fig in only:
        runs[fig] = {"started": results["started"], "duration_s": results.get("duration_s"),
                     "quick": results.get("quick"), "versions": results.get("versions")}
    merged["figure_runs"] = runs
    if results.get("interrupted"):
        merged["interrupted"] = results["interrupted"]
    return merged


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few iterations (~1-2 min)")
    ap.add_argument("--only", default="", help="comma list of figures to run: "
                    "start,throughput,scale,ready,images,goals,migrate,network,load,cri "
                    "(default: all). The report keeps the other figures' sections and numbers "
                    "as they are in docs/")
    ap.add_argument("--docs", default=None,
                    help="where benchmarks.md, benchmarks.json and the PNGs go "
                         "(default docs/, or bench/out/quick for --quick so a smoke run "
                         "never replaces the published report)")
    ap.add_argument("--keep-work", action="store_true", help="do not delete the work dir")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py must run as root (it creates containers)", file=sys.stderr)
        return 1
    only = set(filter(None, a.only.split(","))) or set(FIGURES)
    unknown = only - set(FIGURES)
    if unknown:
        ap.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}; "
                 f"known: {','.join(FIGURES)}")
    q = a.quick
    a.docs = a.docs or (os.path.join(HERE, "out", "quick") if q else os.path.join(REPO, "docs"))
    os.makedirs(a.docs, exist_ok=True)
    cfg = {
        "start_rounds": 5 if q else 40, "start_warmup": 1 if q else 2,
        "tp_sizes": [50] if q else [50, 200],
        "tp_reps": {50: 1, 200: 1} if q else {50: 3, 200: 2},
        "scale_levels": [0, 10, 50] if q else [0, 10, 100, 500],
        "api_levels": [10, 50] if q else [10, 100, 500],
        "pss_level": 50 if q else 100,
        "api_k": 50 if q else 300,
        "ready_sizes": [64] if q else [64, 256, 1024],
        "ready_reps": 1 if q else 3,
        "startpath_pairs": 10 if q else 40,
        "restore_reps": 3 if q else 10,
        "app_reps": 2 if q else 6,
        "pool_reps": 5 if q else 20,
    }

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    t_start = time.time()
    results = {"quick": q, "config": {k: v for k, v in cfg.items()},
               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds")}
    results["install"] = install_baselines()
    results["versions"] = versions()
    cgroups_before = top_cgroups()
    work = tempfile.mkdtemp(prefix="cpb-", dir="/var/tmp")
    log(f"work dir {work}")
    closers = []
    status: dict = {}
    results["availability"] = status
    try:
        bundles = S.make_bundles(work)
        d = S.ContainerdPyDaemon(os.path.join(work, "main"))
        closers.append(d.close)
        d.start()
        cands = [S.BareRuntime("runc", work, bundles), S.BareRuntime("crun", work, bundles),
                 S.Containerd(os.path.join(work, "main"), bundles["rootfs_copy"]),
                 S.Podman(work, bundles["rootfs_copy"]),
                 S.ContainerdPy(d, "runc", bundles), S.ContainerdPy(d, "crun", bundles)]
        systems = []
        for s in cands:
            try:
                s.setup()
                closers.append(s.close)
                systems.append(s)
                status[s.key] = "ok"
            except Unavailable as e:
                status[s.key] = f"unavailable: {e}"
                log(f"{s.key}: {e}")
        by_key = {s.key: s for s in systems}

        def figure(name, fn):
            if name not in only:
                return
            log(f"figure: {name}")
            t0 = time.time()
            try:
                results[name] = fn()
            except Exception as e:  # noqa: BLE001 - one figure's failure is a result
                traceback.print_exc()
                results[name] = {"error": one_line(f"{type(e).__name__}: {e}")}
            log(f"figure {name} done in {time.time() - t0:.0f}s")

        figure("start", lambda: fig_start(systems, cfg["start_rounds"], cfg["start_warmup"]))
        # throughput: only systems whose single start worked
        def tp_systems():
            st = results.get("start", {})
            return [s for s in systems if st.get(s.key, {}).get("running", {}).get("n", 1)]
        figure("throughput", lambda: fig_throughput(tp_systems(), cfg["tp_sizes"],
                                                    cfg["tp_reps"]))

        def scale():
            out = {"containerd-py": fig_scale_cpy(work, bundles, cfg["scale_levels"],
                                                  cfg["api_levels"], cfg["pss_level"],
                                                  cfg["api_k"])}
            if "containerd" in by_key:
                out["containerd"] = fig_scale_containerd(
                    work, bundles["rootfs_copy"], cfg["scale_levels"], cfg["api_levels"],
                    cfg["pss_level"], cfg["api_k"])
            if "podman" in by_key:
                out["podman"] = fig_scale_podman(by_key["podman"], cfg["pss_level"])
            return out
        figure("scale", scale)
        figure("ready", lambda: fig_ready(d, work, cfg["ready_sizes"], cfg["ready_reps"],
                                          by_key.get("podman")))
        figure("images", lambda: images_bench.fig_images(
            work, d, by_key.get("podman"), by_key.get("containerd"), q))

        def goals():
            import goals as G
            pyapp = S.make_pyapp_bundle(work, 64)
            return {"startpath": G.fig_startpath(d, work, bundles["sleep"],
                                                 cfg["startpath_pairs"]),
                    "restore": G.fig_restore_trivial(d, work, cfg["restore_reps"]),
                    "app": G.fig_restore_app(d, work, pyapp, cfg["app_reps"]),
                    "pools": G.fig_pools(d, work, bundles["sleep"], pyapp, cfg["pool_reps"])}
        figure("goals", goals)
        figure("migrate", lambda: migrate_bench.fig_migrate(work, q))
        figure("network", lambda: network_bench.fig_network(
            d, work, bundles, by_key.get("runc") or S.BareRuntime("runc", work, bundles),
            by_key.get("podman"), q))
        figure("load", lambda: load_bench.fig_load(work, q))
        figure("cri", lambda: cri_bench.fig_cri(work, q))
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        results["interrupted"] = str(e) or "KeyboardInterrupt"
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception as e:  # noqa: BLE001
                print(f"warning: cleanup: {one_line(e)}", file=sys.stderr)
        remove_new_cgroups(cgroups_before)
        results["daemon_log"] = daemon_log_summary(work)
        left = unmount_all_under(work)
        if left:
            log(f"unmounted {len(left)} leftover mounts under {work}")
        if not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    results["duration_s"] = duration = round(time.time() - t_start)
    import report
    json_path = os.path.join(a.docs, "benchmarks.json")
    partial = only != set(FIGURES) and os.path.exists(json_path) \
        and os.path.exists(os.path.join(a.docs, "benchmarks.md"))
    if partial:
        results = merge_previous(results, only, json_path)
    S.json_dump(results, json_path)
    report.write(results, a.docs, only=only if partial else None)
    log(f"done in {duration}s: {os.path.join(a.docs, 'benchmarks.md')}")
    return 130 if "interrupted" in results else 0


if __name__ == "__main__":
    sys.exit(main())
