#!/usr/bin/env python3
"""Image benchmarks: containerd-py's image store against podman and
containerd on the same image archive.

    request -> running   POST /containers/{id} {"image", "networks": []} vs `podman run -d
                         --network none IMAGE` vs `ctr run -d IMAGE` (after
                         `ctr images import`), a `tail -f /dev/null` container
    load                 POST /images/load of a ~100 MiB docker-archive vs
                         `podman load -i` vs `ctr images import`
    disk                 20 containers of that image (shared layers, `du` of
                         the store) vs 20 copies of its root filesystem (what 20
                         bundles of it take)

Part of `make bench` (bench/run.py, figure `images`); alone, as root:
`.venv/bin/python bench/images.py [--quick]` runs only this figure and
replaces the "Images" section of docs/benchmarks.md (between its markers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import Samples, Unavailable, one_line, replace_section, run  # noqa: E402
import systems as S  # noqa: E402
import archives  # noqa: E402  (bundles/archives.py, on the path through systems)

BEGIN, END = "<!-- images:begin -->", "<!-- images:end -->"
KEEP_ALIVE = ["tail", "-f", "/dev/null"]


def du_kib(*paths) -> int:
    """Disk blocks used, hard links counted once (one `du` invocation),
    not descending into mounts (the containers' merged overlays)."""
    out = run(["du", "-x", "-s", "-k", "-c", *paths], timeout=600).stdout.decode().splitlines()
    return int(out[-1].split()[0])


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_archives(work: str, pad_mib: int) -> dict:
    base = archives.dir_layer(archives.BUSYBOX_ROOTFS)
    small = os.path.join(work, "small.tar")
    archives.docker_archive(small, [base], {"Cmd": KEEP_ALIVE}, ["localhost/bench-small:1"])
    big = os.path.join(work, "big.tar")
    archives.docker_archive(big, [base, archives.pad_layer(pad_mib)], {"Cmd": KEEP_ALIVE},
                            ["localhost/bench-big:1"])
    return {"small": small, "small_ref": "localhost/bench-small:1", "big": big,
            "big_ref": "localhost/bench-big:1", "big_bytes": os.path.getsize(big)}


# -- containerd-py ----------------------------------------------------------------

def cpy_figures(d, arc: dict, rounds: int, load_reps: int, n_disk: int) -> dict:
    c = d.client
    out = {}
    with open(arc["small"], "rb") as f:
        c.load(f)
    start = Samples()
    for _ in range(rounds):
        cid = "img-" + uuid.uuid4().hex[:8]
        # No network, as `podman run --network none` (an image container
        # otherwise joins the default bridge network).
        start.add(_timed(lambda: c.create(cid, image=arc["small_ref"], networks=[])))
        c.delete(cid, force=True)
    out["start"] = start.to_json()
    load = Samples()
    for _ in range(load_reps):
        def one():
            with open(arc["big"], "rb") as f:
                c.load(f)
        load.add(_timed(one))
        c.rmi(arc["big_ref"])  # the next load unpacks again
    out["load"] = load.to_json()
    with open(arc["big"], "rb") as f:
        c.load(f)
    ids = []
    try:
        for i in range(n_disk):
            cid = f"disk-{i}-" + uuid.uuid4().hex[:6]
            c.create(cid, image=arc["big_ref"], networks=[])
            ids.append(cid)
        store = os.path.join(d.data, "images")
        out["disk_kib"] = du_kib(os.path.join(store, "snapshots"), os.path.join(store, "active"))
        out["containers"] = len(ids)
        # The bundle way: one copy of the image's root filesystem per container.
        merged = os.path.join(store, "active", ids[0], "merged")
        copies = os.path.join(d.dir, "bundle-copies")
        os.makedirs(copies)
        for i in range(n_disk):
            run(["cp", "-a", merged, os.path.join(copies, str(i))], timeout=600)
        out["bundle_copies_kib"] = du_kib(copies)
        shutil.rmtree(copies)
    finally:
        for cid in ids:
            c.delete(cid, force=True)
        c.rmi(arc["big_ref"])
    return out


# -- podman and containerd ----------------------------------------------------------

def podman_figures(p, arc: dict, rounds: int, load_reps: int, n_disk: int) -> dict:
    base, env = p.base(), p.env
    out = {}
    run(base + ["load", "-i", arc["small"]], env=env, timeout=600)
    start = Samples()
    for _ in range(rounds):
        cid = "img-" + uuid.uuid4().hex[:8]
        start.add(_timed(lambda: S._detached(
            base + ["run", "-d", "--name", cid, "--network", "none", *S.PODMAN_ULIMITS,
                    arc["small_ref"]], env=env)))
        p.remove(cid)
    out["start"] = start.to_json()
    load = Samples()
    for _ in range(load_reps):
        load.add(_timed(lambda: run(base + ["load", "-i", arc["big"]], env=env, timeout=600)))
        run(base + ["rmi", "-f", arc["big_ref"]], env=env, check=False)
    out["load"] = load.to_json()
    run(base + ["load", "-i", arc["big"]], env=env, timeout=600)
    ids = []
    try:
        for i in range(n_disk):
            cid = f"disk-{i}-" + uuid.uuid4().hex[:6]
            S._detached(base + ["run", "-d", "--name", cid, "--network", "none",
                                *S.PODMAN_ULIMITS, arc["big_ref"]], env=env)
            ids.append(cid)
        out["disk_kib"] = du_kib(os.path.join(p.dir, "root"))
    finally:
        for cid in ids:
            p.remove(cid)
        run(base + ["rmi", "-f", arc["big_ref"]], env=env, check=False)
    return out


def ctr_figures(ctd, arc: dict, rounds: int, load_reps: int) -> dict:
    ctr = ctd._ctr
    out = {}
    run(ctr("images", "import", arc["small"]), timeout=600)
    start = Samples()
    for _ in range(rounds):
        cid = "img-" + uuid.uuid4().hex[:8]
        start.add(_timed(lambda: S._detached(ctr("run", "-d", "--null-io",
                                                  arc["small_ref"], cid))))
        ctd.remove(cid)
        run(ctr("snapshots", "rm", cid), check=False)
    out["start"] = start.to_json()
    load = Samples()
    for _ in range(load_reps):
        load.add(_timed(lambda: run(ctr("images", "import", arc["big"]), timeout=600)))
        run(ctr("images", "rm", "--sync", arc["big_ref"]), check=False)
        run(ctr("content", "prune", "references"), check=False)
    out["load"] = load.to_json()
    return out


def fig_images(work: str, d, podman=None, containerd=None, quick: bool = False) -> dict:
    rounds, load_reps, n_disk = (3, 1, 5) if quick else (20, 3, 20)
    pad = 20 if quick else 100
    arc = make_archives(work, pad)
    res = {"config": {"rounds": rounds, "load_reps": load_reps, "containers": n_disk,
                      "archive_bytes": arc["big_bytes"], "pad_mib": pad}}
    systems = [("containerd-py", lambda: cpy_figures(d, arc, rounds, load_reps, n_disk))]
    if podman is not None:
        systems.append(("podman", lambda: podman_figures(podman, arc, rounds, load_reps,
                                                         n_disk)))
    if containerd is not None:
        systems.append(("containerd", lambda: ctr_figures(containerd, arc, rounds, load_reps)))
    for key, fn in systems:
        try:
            res[key] = fn()
        except (Unavailable, subprocess.SubprocessError, OSError) as e:
            res[key] = {"error": one_line(f"{type(e).__name__}: {e}")}
    return res


# -- report -----------------------------------------------------------------------

def _med(s) -> str:
    if not s or not s.get("n"):
        return "—"
    m = s["median"]
    return f"{m * 1000:.0f} ms" if m < 1 else f"{m:.2f} s"


def report_lines(res: dict) -> list[str]:
    if not res or "error" in res:
        return ["## Images", "", f"Not measured: {(res or {}).get('error', 'skipped')}", ""]
    cfg = res["config"]
    mib = cfg["archive_bytes"] / (1 << 20)
    rows = [("containerd-py", res.get("containerd-py")), ("podman", res.get("podman")),
            ("containerd + ctr", res.get("containerd"))]
    out = ["## Images", "",
           "`bench/images.py`: one busybox-static image (a docker-archive written by "
           "`bundles/archives.py`) under every system, each on private state. *request → "
           "running*: `POST /containers/{id}` with `{\"image\": REF, \"networks\": []}` "
           "(answers once the container runs), `podman run -d --network none REF`, "
           "`ctr run -d --null-io REF` (no network either) "
           f"after `ctr images import`; median of {cfg['rounds']}. *load*: the same image "
           f"with a {cfg['pad_mib']} MiB layer of incompressible data ({mib:.0f} MiB archive), "
           f"POST /images/load vs `podman load -i` vs `ctr images import`; median of "
           f"{cfg['load_reps']}, the image deleted between loads."
           + (" Versions: " + "; ".join(f"{k} {v}" for k, v in res["versions"].items())
              + "." if res.get("versions") else "")
           + (f" Host load average (1 min) {res['loadavg'][0]} before, {res['loadavg'][1]} "
              f"after, on {os.cpu_count()} CPUs." if res.get("loadavg") else ""), "",
           "| system | request → running | load ~%d MiB archive |" % round(mib),
           "| --- | --- | --- |"]
    for label, r in rows:
        if r is None:
            continue
        if "error" in r:
            out.append(f"| {label} | {r['error']} | |")
        else:
            out.append(f"| {label} | {_med(r.get('start'))} | {_med(r.get('load'))} |")
    cpy = res.get("containerd-py") or {}
    if cpy.get("disk_kib"):
        n = cpy["containers"]
        out += ["", f"Disk used by {n} running containers of the {mib:.0f} MiB image "
                "(`du -xsk`: hard links counted once, the containers' mounted roots not "
                "descended into):", "",
                "| layout | disk |", "| --- | --- |",
                f"| containerd-py: shared layer snapshots + {n} upper dirs | "
                f"{cpy['disk_kib'] / 1024:.1f} MiB |",
                f"| {n} bundle copies of the image's root filesystem | "
                f"{cpy['bundle_copies_kib'] / 1024:.1f} MiB |"]
        pod = res.get("podman") or {}
        if pod.get("disk_kib"):
            out.append(f"| podman: its whole storage (image + {n} containers) | "
                       f"{pod['disk_kib'] / 1024:.1f} MiB |")
    out.append("")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--docs", default=None)
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/images.py must run as root", file=sys.stderr)
        return 1
    import run as bench_run
    docs = a.docs or (os.path.join(HERE, "out", "quick") if a.quick
                      else os.path.join(S.REPO, "docs"))
    os.makedirs(docs, exist_ok=True)
    install = bench_run.install_baselines()
    work = tempfile.mkdtemp(prefix="cpb-img-", dir="/var/tmp")
    closers = []
    try:
        d = S.ContainerdPyDaemon(os.path.join(work, "cpy"))
        closers.append(d.close)
        d.start()
        others = {}
        for key, make in (("podman", lambda: S.Podman(work, archives.BUSYBOX_ROOTFS)),
                          ("containerd", lambda: S.Containerd(work, archives.BUSYBOX_ROOTFS))):
            s = make()
            try:
                s.setup()
                closers.append(s.close)
                others[key] = s
            except Unavailable as e:
                print(f"{key}: {e}", file=sys.stderr)
        load_before = os.getloadavg()[0]
        res = fig_images(work, d, others.get("podman"), others.get("containerd"), a.quick)
        # Other work on the host slows every system; the reader should know.
        res["loadavg"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        res["install"] = install
        res["versions"] = {k: v for k, v in bench_run.versions().items()
                           if k in ("containerd-py", "runc", "containerd", "podman", "kernel")}
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception as e:  # noqa: BLE001
                print(f"warning: cleanup: {one_line(e)}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(docs, "bench-images.json"), "w") as f:
        json.dump(res, f, indent=1)
    replace_section(os.path.join(docs, "benchmarks.md"), BEGIN, END, report_lines(res))
    print("\n".join(report_lines(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
