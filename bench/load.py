"""Figure `load`: a daemon with N running containers (500 in the full run)
and C concurrent clients (50) for T seconds (60), each doing what users do:
create+delete, exec, stats, logs, inspect. Measured: errors (there must be
none), p50/p99 latency per route, and the daemon's open fds and memory (RSS
and PSS) before and after, to show it leaks neither.

Alone: `python bench/load.py [--quick] [--docs DIR]` (run as root).
Traffic goes to 127.0.0.1 only; every request loop is bounded by time.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "bundles"))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from common import replace_section  # noqa: E402

BEGIN = "<!-- load: begin (bench/load.py) -->"
END = "<!-- load: end -->"
FULL = {"containers": 500, "clients": 50, "seconds": 60}
QUICK = {"containers": 20, "clients": 8, "seconds": 10}


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _proc_numbers(pid: int) -> dict:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                rss = int(ln.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    pss = int(ln.split()[1])
    except OSError:
        pass
    return {"fds": fds, "rssKiB": rss, "pssKiB": pss}


def fig_load(work: str, quick: bool, cfg: dict | None = None) -> dict:
    from conftest import Daemon  # tests/conftest.py: a real daemon on a free port
    from build import write_bundle  # bundles/build.py
    from containerd_py.client import APIError, Client

    cfg = cfg or (QUICK if quick else FULL)
    state = tempfile.mkdtemp(prefix="cdpy-load-", dir="/var/tmp")
    d = Daemon(state)
    d.client = Client(d.address, timeout=300)
    bundle = str(write_bundle(os.path.join(work, "load-bundle"),
                              ["sh", "-c", "trap 'exit 0' TERM; while :; do echo tick; "
                               "sleep 5; done"]))
    out: dict = {"config": cfg}
    try:
        d.start()
        api = d.client
        ids = [f"load-{i}" for i in range(cfg["containers"])]
        t0 = time.time()
        with cf.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: api.create(c, bundle), ids))
        out["startAllS"] = round(time.time() - t0, 1)
        # Warm every route once, then the daemon's numbers before the load.
        api.exec_sync(ids[0], ["true"])
        api.stats(ids[0])
        api.logs(ids[0], tail="5")
        time.sleep(2)
        out["before"] = _proc_numbers(d.proc.pid)

        lat: dict[str, list[float]] = {}
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + cfg["seconds"]

        def timed(route: str, fn):
            t = time.perf_counter()
            try:
                fn()
            except (APIError, OSError) as e:
                with lock:
                    errors.append(f"{route}: {e}")
                return
            ms = (time.perf_counter() - t) * 1000
            with lock:
                lat.setdefault(route, []).append(ms)

        def client(n: int) -> None:
            rnd = random.Random(n)
            k = 0
            cli = Client(d.address, timeout=300)
            while time.monotonic() < deadline:
                c = rnd.choice(ids)
                op = rnd.random()
                if op < 0.1:
                    new = f"churn-{n}-{k}"
                    k += 1
                    timed("POST /containers/{id}", lambda: cli.create(new, bundle))
                    timed("DELETE /containers/{id}?force", lambda: cli.delete(new, force=True))
                elif op < 0.35:
                    timed("POST /containers/{id}/exec",
                          lambda: cli.exec_sync(c, ["echo", "hi"]))
                elif op < 0.6:
                    timed("GET /containers/{id}/stats", lambda: cli.stats(c))
                elif op < 0.8:
                    timed("GET /containers/{id}/logs", lambda: cli.logs(c, tail="10"))
                elif op < 0.95:
                    timed("GET /containers/{id}", lambda: cli.get(c))
                else:
                    timed("GET /containers", lambda: cli.list())

        with cf.ThreadPoolExecutor(cfg["clients"]) as pool:
            list(pool.map(client, range(cfg["clients"])))
        time.sleep(2)
        out["after"] = _proc_numbers(d.proc.pid)
        out["errors"] = len(errors)
        out["errorSamples"] = errors[:5]
        out["routes"] = {r: {"n": len(v), "p50ms": round(_pct(v, 50), 1),
                             "p99ms": round(_pct(v, 99), 1)} for r, v in sorted(lat.items())}
        out["requests"] = sum(len(v) for v in lat.values())
        out["running"] = sum(1 for c in api.list() if c["status"] == "running")
        out["loadavg"] = [round(x, 2) for x in os.getloadavg()]  # others' load counts too
    finally:
        try:
            d.cleanup()
        finally:
            subprocess.run(["umount", "-R", state], capture_output=True)
            shutil.rmtree(state, ignore_errors=True)
    return out


def report_lines(res: dict) -> list[str]:
    if "error" in res:
        return ["## Load", "", f"Not measured: {res['error']}"]
    cfg, b, a = res["config"], res["before"], res["after"]
    lines = ["## Load: 50 clients against 500 running containers", "",
             f"{cfg['containers']} running containers (started in {res['startAllS']} s), "
             f"{cfg['clients']} concurrent clients for {cfg['seconds']} s doing creates and "
             "deletes, execs, stats, logs, inspects and lists (`bench/load.py`): "
             f"{res['requests']} requests, **{res['errors']} errors**; "
             f"{res['running']} containers still running afterwards."
             + (f" Host load average at the end: {res['loadavg'][0]} (1 min), "
                f"{res['loadavg'][1]} (5 min), on 2 cores shared with other jobs."
                if res.get("loadavg") else ""), "",
             "| route | requests | p50 (ms) | p99 (ms) |", "|---|---|---|---|"]
    for route, r in res["routes"].items():
        lines.append(f"| `{route}` | {r['n']} | {r['p50ms']} | {r['p99ms']} |")
    lines += ["", "The daemon before and after the load (after a 2 s settle):", "",
              "| | open fds | RSS (KiB) | PSS (KiB) |", "|---|---|---|---|",
              f"| before | {b['fds']} | {b['rssKiB']} | {b['pssKiB']} |",
              f"| after | {a['fds']} | {a['rssKiB']} | {a['pssKiB']} |"]
    if res.get("errorSamples"):
        lines += ["", "Errors: " + "; ".join(res["errorSamples"])]
    return lines


if __name__ == "__main__":
    import argparse
    import json
    ap = argparse.ArgumentParser(description="the daemon under load")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--docs", help="write the section into DIR/benchmarks.md")
    a = ap.parse_args()
    w = tempfile.mkdtemp(prefix="cpb-load-", dir="/var/tmp")
    try:
        res = fig_load(w, a.quick)
    finally:
        shutil.rmtree(w, ignore_errors=True)
    print(json.dumps(res, indent=1))
    if a.docs:
        replace_section(os.path.join(a.docs, "benchmarks.md"), BEGIN, END, report_lines(res))
