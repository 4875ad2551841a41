"""The daemon's own cost on the start path, measured three ways in one run
of alternating pairs:

- request to running: `POST /containers/{id}` until the 201, against bare
  `runc run -d` of the same read-only bundle, run the way a user runs it
  (the same runc binary, a fresh container each time, its stdio on
  /dev/null), pair by pair in alternating order;
- the runtime's own time inside the daemon's start: the shim stamps when it
  forked `runc run -d` and when it reaped it (the `Server-Timing` header
  carries them), so `total - runtime` is what the daemon adds, without the
  noise of comparing two separate runs;
- the breakdown of the daemon's part by phase (HTTP parse, spec read and
  write, shim start, record save, event, ...), from the same header.

    .venv/bin/python bench/startpath.py [--pairs N]
    .venv/bin/python bench/startpath.py --against CHECKOUT [--pairs N] [--json OUT]

With --against, an A/B: the daemon of another checkout (with its own
.venv, e.g. the main branch before a change) and this one's, each start
alternated with the other's and with bare `runc run -d` in one run; prints
both daemons' phases side by side.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import Samples  # noqa: E402


def parse_server_timing(value: str) -> dict[str, float]:
    """'runtime;dur=12.5, total;dur=15' -> {'runtime': 0.0125, ...} (s)."""
    out: dict[str, float] = {}
    for part in value.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            out[name] = out.get(name, 0.0) + float(dur) / 1000
    return out


class RawClient:
    """One keep-alive HTTP connection, as a client library would hold."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        data = json.dumps(body).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, dict(r.getheaders()), json.loads(raw) if raw else {}

    def delete(self, path: str) -> int:
        self.conn.request("DELETE", path)
        r = self.conn.getresponse()
        r.read()
        return r.status


def bare_run(runc: str, root: str, bundle: str, cid: str, err) -> float:
    """`runc run -d` as from a shell whose output goes to a file: not a
    pipe, which the detached container would inherit and hold open, so the
    caller would wait for its EOF as long as the container lives."""
    err.seek(0)
    err.truncate()
    t0 = time.perf_counter()
    p = subprocess.run([runc, "--root", root, "run", "-d", "--bundle", bundle, cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        err.seek(0)
        raise RuntimeError(f"runc run -d exited {p.returncode}: {err.read()[-300:]!r}")
    return dt


def bare_run_pipes(runc: str, root: str, bundle: str, cid: str, err) -> float:
    """`runc run -d` with pipes as its stdio, as a supervisor that captures
    the container's output must give it (runc takes measurably longer with
    pipes than with /dev/null or a file)."""
    err.seek(0)
    err.truncate()
    t0 = time.perf_counter()
    p = subprocess.Popen([runc, "--root", root, "run", "-d", "--bundle", bundle, cid],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    rc = p.wait()
    dt = time.perf_counter() - t0
    p.stdin.close()
    p.stdout.close()
    if rc != 0:
        err.seek(0)
        raise RuntimeError(f"runc run -d exited {rc}: {err.read()[-300:]!r}")
    return dt


def bare_delete(runc: str, root: str, cid: str) -> None:
    subprocess.run([runc, "--root", root, "delete", "-f", cid], capture_output=True)


# After each removal: the daemon's delete answers before its shim has
# drained and exited, and runc delete -f before the killed init is reaped;
# the next start must not pay for that (the old benchmark timed bare runc
# right after containerd-py's removal, which is part of why it showed
# containerd-py faster than the runtime it runs).
SETTLE_S = 0.15


def measure(port: int, bundle: str, runc: str, root: str, pairs: int, tag: str,
            warmup: int = 3, body_extra: dict | None = None) -> dict:
    """Alternating pairs; returns Samples-JSON of each series and the phase
    medians of the daemon's start."""
    import tempfile
    err = tempfile.TemporaryFile()
    c = RawClient(port)
    daemon, bare, runtime, added, server_added, bare_pipes = (Samples() for _ in range(6))
    phases: dict[str, list[float]] = {}
    ratios = []
    for i in range(warmup + pairs):
        record = i >= warmup
        order = ("daemon", "bare", "pipes") if i % 2 == 0 else ("pipes", "bare", "daemon")
        pair = {}
        for who in order:
            cid = f"{tag}-{who}-{i}"
            if who in ("bare", "pipes"):
                pair[who] = (bare_run if who == "bare" else bare_run_pipes)(
                    runc, root, bundle, cid, err)
                bare_delete(runc, root, cid)
                time.sleep(SETTLE_S)
                continue
            t0 = time.perf_counter()
            status, headers, body = c.post(f"/containers/{cid}",
                                           {"bundlePath": bundle, **(body_extra or {})})
            dt = time.perf_counter() - t0
            if status != 201:
                raise RuntimeError(f"POST /containers/{cid} -> {status}: {body}")
            pair["daemon"] = dt
            st = parse_server_timing(headers.get("Server-Timing", ""))
            c.delete(f"/containers/{cid}?force=true")
            time.sleep(SETTLE_S)
            if record:
                for k, v in st.items():
                    phases.setdefault(k, []).append(v)
                if "runtime" in st:
                    runtime.add(st["runtime"])
                    added.add(dt - st["runtime"])
                    server_added.add(st["total"] - st["runtime"])
        if record:
            daemon.add(pair["daemon"])
            bare.add(pair["bare"])
            bare_pipes.add(pair["pipes"])
            ratios.append(pair["daemon"] / pair["bare"])
    return {
        "pairs": pairs,
        "daemon": daemon.to_json(), "bare": bare.to_json(), "bare_pipes": bare_pipes.to_json(),
        "runtime": runtime.to_json(),
        "added": added.to_json(), "server_added": server_added.to_json(),
        "ratio_of_medians": daemon.median() / bare.median(),
        "ratio_median_of_pairs": statistics.median(ratios),
        "ratio_p25_p75": [_pct(ratios, 25), _pct(ratios, 75)],
        "phases": {k: statistics.median(v) for k, v in phases.items()},
    }


def _pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(r: dict) -> str:
    ms = lambda v: f"{v * 1000:.2f} ms"  # noqa: E731
    return (f"daemon {ms(r['daemon']['median'])}, bare runc run -d {ms(r['bare']['median'])}, "
            f"ratio {r['ratio_median_of_pairs']:.3f}x (p25-p75 {r['ratio_p25_p75'][0]:.3f}-"
            f"{r['ratio_p25_p75'][1]:.3f}); bare with pipes as stdio "
            f"{ms(r['bare_pipes']['median'])}; runtime inside the daemon "
            f"{ms(r['runtime']['median'])}, added {ms(r['added']['median'])} "
            f"(server side {ms(r['server_added']['median'])})")


def ab(ports: dict[str, int], bundle: str, runc: str, root: str, pairs: int,
       warmup: int = 3) -> dict:
    """Daemons (name -> port) and bare runc, one start of each per round in
    alternating order; medians of each daemon's phases, its added time and
    its runtime, and the wall times (s)."""
    import tempfile
    err = tempfile.TemporaryFile()
    clients = {k: RawClient(p) for k, p in ports.items()}
    names = list(ports) + ["bare"]
    wall = {k: Samples() for k in names}
    added = {k: Samples() for k in ports}
    phases: dict[str, dict[str, list[float]]] = {k: {} for k in ports}
    for i in range(warmup + pairs):
        for who in (names if i % 2 == 0 else names[::-1]):
            cid = f"ab-{who}-{i}"
            if who == "bare":
                dt = bare_run(runc, root, bundle, cid, err)
                bare_delete(runc, root, cid)
            else:
                t0 = time.perf_counter()
                status, headers, body = clients[who].post(f"/containers/{cid}",
                                                          {"bundlePath": bundle})
                dt = time.perf_counter() - t0
                if status != 201:
                    raise RuntimeError(f"{who}: POST /containers/{cid} -> {status}: {body}")
                st = parse_server_timing(headers.get("Server-Timing", ""))
                clients[who].delete(f"/containers/{cid}?force=true")
                if i >= warmup:
                    st["http"] = dt - st["total"]
                    for k, v in st.items():
                        phases[who].setdefault(k, []).append(v)
                    added[who].add(dt - st["runtime"])
            if i >= warmup:
                wall[who].add(dt)
            time.sleep(SETTLE_S)
    return {"pairs": pairs, "wall": {k: v.to_json() for k, v in wall.items()},
            "added": {k: v.to_json() for k, v in added.items()},
            "phases": {k: {p: statistics.median(v) for p, v in ph.items()}
                       for k, ph in phases.items()}}


def ab_table(r: dict) -> str:
    names = list(r["phases"])
    keys = [k for k in r["phases"][names[0]] if k not in ("runtime", "total")]
    rows = [f"{'phase':12}" + "".join(f"{n:>12}" for n in names)]
    for k in keys + ["runtime", "total"]:
        rows.append(f"{k:12}" + "".join(f"{r['phases'][n].get(k, 0) * 1000:12.3f}"
                                         for n in names))
    for n in names:
        rows.append(f"{n}: added {r['added'][n]['median'] * 1000:.2f} ms, request to running "
                    f"{r['wall'][n]['median'] * 1000:.2f} ms = "
                    f"{r['wall'][n]['median'] / r['wall']['bare']['median']:.3f}x bare "
                    f"({r['wall']['bare']['median'] * 1000:.2f} ms)")
    return "\n".join(rows)


def main(argv=None) -> int:
    import argparse
    import shutil
    import tempfile
    import systems as S
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--against", help="another checkout (with its .venv): A/B against it")
    ap.add_argument("--json", help="write the A/B's numbers here")
    a = ap.parse_args(argv)
    if a.against:
        return main_ab(a)
    work = tempfile.mkdtemp(prefix="cpb-start-", dir="/var/tmp")
    d = S.ContainerdPyDaemon(work)
    try:
        d.start()
        from build import write_bundle
        bundle = str(write_bundle(os.path.join(work, "bundle-sleep"), S.SLEEP_ARGS))
        root = os.path.join(work, "runc-root")
        os.makedirs(root)
        r = measure(d.port, bundle, shutil.which("runc"), root, a.pairs, "sp")
        print(summary(r))
        print(json.dumps(r["phases"], indent=1))
    finally:
        d.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main_ab(a) -> int:
    import shutil
    import tempfile
    import systems as S
    from build import write_bundle
    work = tempfile.mkdtemp(prefix="cpb-start-ab-", dir="/var/tmp")
    daemons = {"before": S.ContainerdPyDaemon(os.path.join(work, "before"),
                                              repo=os.path.abspath(a.against)),
               "after": S.ContainerdPyDaemon(os.path.join(work, "after"))}
    try:
        for d in daemons.values():
            d.start()
        bundle = str(write_bundle(os.path.join(work, "bundle-sleep"), S.SLEEP_ARGS))
        root = os.path.join(work, "runc-root")
        os.makedirs(root)
        load = open("/proc/loadavg").read().split()[:3]
        r = ab({k: d.port for k, d in daemons.items()}, bundle, shutil.which("runc"), root,
               a.pairs)
        r["loadavg"] = load + open("/proc/loadavg").read().split()[:3]
        print(f"load average before/after the run: {' '.join(r['loadavg'])}")
        print(ab_table(r))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=1)
    finally:
        for d in daemons.values():
            d.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
