"""Networking benchmarks (`make bench`, figure "network"; `bench/run.py --only network`).

1. Request -> running with a bridge network and one published port:
   containerd-py (CNI bridge + portmap) against `podman run --network bridge -p`
   and bare `runc run -d` with no network at all, interleaved.
2. Time from the request to the first HTTP 200 from the container, through
   the published 127.0.0.1 port, for the pyapp web server (APP_HTTP_PORT) at
   64 MiB and 1 GiB: cold start against a clone restored from a checkpoint.

Traffic goes only to 127.0.0.1 (the published ports).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import random
import subprocess
import time

from common import Samples, Unavailable, free_port, one_line, run
import systems as S

HTTP_PORT = 8080
BEGIN = "<!-- network: begin (bench/network.py) -->"
END = "<!-- network: end -->"


def _free_subnet() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = [ipaddress.IPv4Network(f.split()[3], strict=False) for f in out.splitlines()]
    while True:
        net = ipaddress.IPv4Network(f"10.{random.randint(128, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)


def first_200(port: int, t0: float, timeout: float = 120) -> float:
    """Seconds from t0 until GET / on 127.0.0.1:port answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.005)
    raise Unavailable(f"no HTTP 200 on 127.0.0.1:{port} within {timeout}s")


def _podman_argv(podman, cid: str, port: int) -> list[str]:
    return podman.base() + ["run", "-d", "--name", cid, "--network", "bridge",
                            "-p", f"127.0.0.1:{port}:80", "--read-only", *S.PODMAN_ULIMITS,
                            "--rootfs", podman.rootfs, *S.SLEEP_ARGS]


def start_with_network(d, net: str, bundles: dict, runc, podman, rounds: int) -> dict:
    res = {k: Samples() for k in ("containerd-py", "podman", "runc")}
    for i in range(rounds):
        for key in ("containerd-py", "podman", "runc")[i % 3:] + \
                ("containerd-py", "podman", "runc")[:i % 3]:
            cid = f"nb-{key.split('-')[0]}-{i}-{random.randint(0, 1 << 20):x}"
            s = res[key]
            if s.error:
                continue
            try:
                if key == "containerd-py":
                    t0 = time.perf_counter()
                    d.client.create(cid, bundles["sleep"], networks=[net],
                                    ports=[{"hostPort": free_port(), "containerPort": 80}])
                    s.add(time.perf_counter() - t0)
                    d.client.delete(cid, force=True)
                elif key == "podman":
                    if podman is None:
                        s.error = "podman unavailable"
                        continue
                    argv = _podman_argv(podman, cid, free_port())
                    t0 = time.perf_counter()
                    p = run(argv, check=False, env=podman.env)
                    if p.returncode != 0:
                        s.error = one_line(p.stderr.decode(errors="replace"), 200)
                        continue
                    s.add(time.perf_counter() - t0)
                    podman.remove(cid)
                else:
                    t0 = time.perf_counter()
                    runc.start(cid)
                    s.add(time.perf_counter() - t0)
                    runc.remove(cid)
            except (S.APIError, Unavailable, OSError, subprocess.SubprocessError) as e:
                s.failures += 1
                s.error = one_line(e, 200)
    return {k: v.to_json() for k, v in res.items()}


def first_http(d, work: str, net: str, sizes: list[int], reps: int) -> dict:
    out = {}
    for mb in sizes:
        r = {"cold_api": Samples(), "cold": Samples(), "restored_api": Samples(),
             "restored": Samples(), "checkpoint": Samples()}
        out[str(mb)] = r
        bundle = str(S.pyapp_bundle(os.path.join(work, f"pyapp-http-{mb}"), memory_mb=mb,
                                    env={"APP_HTTP_PORT": str(HTTP_PORT)}))
        made = []
        try:
            src = f"web{mb}-src"
            port = free_port()
            t0 = time.perf_counter()
            d.client.create(src, bundle, networks=[net],
                            ports=[{"hostPort": port, "containerPort": HTTP_PORT}])
            made.append(src)
            first_200(port, t0)
            t0 = time.perf_counter()
            d.client.checkpoint(src, "warm")
            r["checkpoint"].add(time.perf_counter() - t0)
            for i in range(reps):
                for kind in (("cold", "restored") if i % 2 == 0 else ("restored", "cold")):
                    cid = f"web{mb}-{kind}-{i}"
                    port = free_port()
                    opts = {"checkpoint": "warm"} if kind == "restored" else {}
                    t0 = time.perf_counter()
                    d.client.create(cid, bundle, networks=[net], **opts,
                                    ports=[{"hostPort": port, "containerPort": HTTP_PORT}])
                    r[f"{kind}_api"].add(time.perf_counter() - t0)
                    made.append(cid)
                    r[kind].add(first_200(port, t0))
                    d.client.delete(cid, force=True)
                    made.remove(cid)
        except (S.APIError, Unavailable, OSError) as e:
            for s in r.values():
                s.error = s.error or one_line(e, 300)
        finally:
            for cid in made:
                try:
                    d.client.delete(cid, force=True)
                except S.APIError:
                    pass
            try:
                d.client.delete_checkpoint(f"web{mb}-src", "warm")
            except S.APIError:
                pass
        out[str(mb)] = {k: v.to_json() for k, v in r.items()}
    return out


def fig_network(d, work: str, bundles: dict, runc, podman, quick: bool) -> dict:
    net = f"bench{random.randint(0, 1 << 16):x}"
    d.client.create_network(net, _free_subnet())
    try:
        return {
            "start": start_with_network(d, net, bundles, runc, podman, 5 if quick else 30),
            "first_http": first_http(d, work, net, [64] if quick else [64, 1024],
                                     1 if quick else 3),
        }
    finally:
        d.client.delete_network(net)


def _ms(s: dict | None) -> str:
    v = (s or {}).get("median")
    return "—" if v is None else f"{v * 1000:.0f} ms"


def markdown(res: dict) -> list[str]:
    if not res:
        return []
    md = ["", "## Networking", ""]
    if "error" in res:
        return md + [f"Not measured: {res['error']}", ""]
    st = res.get("start") or {}
    md += ["Request → running with a bridge network and one published port (median of "
           "interleaved runs; bare runc has no network):", "",
           "| system | median | p95 | n | note |", "| --- | --- | --- | --- | --- |"]
    for key, label in (("containerd-py", "containerd-py (CNI bridge + portmap)"),
                       ("podman", "`podman run --network bridge -p`"),
                       ("runc", "bare `runc run -d`, no network")):
        s = st.get(key) or {}
        p95 = s.get("p95")
        md.append(f"| {label} | {_ms(s)} | {'—' if p95 is None else f'{p95 * 1000:.0f} ms'} "
                  f"| {s.get('n', 0)} | {s.get('error') or ''} |")
    md += ["", "Request → first HTTP 200 through the published 127.0.0.1 port, pyapp web "
           "server (median):", "",
           "| memory | cold: API answered | cold: first 200 | restored: API answered "
           "| restored: first 200 | checkpoint |",
           "| --- | --- | --- | --- | --- | --- |"]
    for mb, r in (res.get("first_http") or {}).items():
        err = next((v.get("error") for v in r.values() if v.get("error")), None)
        if err:
            md.append(f"| {mb} MiB | not measured: {err} | | | | |")
            continue
        md.append(f"| {mb} MiB | {_ms(r['cold_api'])} | {_ms(r['cold'])} | "
                  f"{_ms(r['restored_api'])} | {_ms(r['restored'])} | {_ms(r['checkpoint'])} |")
    return md + [""]
