"""Figure `migrate`: moving the pyapp (64 MiB, 256 MiB, 1 GiB of touched memory)
from one daemon to another, on two "hosts" (two network namespaces joined by a
veth pair, addresses only inside them; tests/twohosts.py):

* live: `POST /containers/{id}/migrate` (freeze, final dump streamed to the
  target, restored there with lazy pages);
* stop-and-copy, by hand, as podman's `container checkpoint --export` /
  `container restore --import` does it: checkpoint with exit, export the
  archive, copy it over the veth, import it on the other daemon. Podman itself
  is run the same way when it is installed and its export/import works here.

Downtime is what the application sees: the app's heartbeat thread ticks
every millisecond and reports the longest pause between two ticks (from its
last tick before the freeze to its first after the restore). Total time is
the migration request's wall time (or the sum of the hand steps). Both
daemons' state and data dirs, the bundles and the archives are on tmpfs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bundles"))

from common import Samples, Unavailable, replace_section  # noqa: E402

BEGIN = "<!-- migrate: begin (bench/migrate.py) -->"
END = "<!-- migrate: end -->"
COPY_PORT = 7450

# Receive one connection's bytes into a file / send a file to one address:
# the copy of the archive between the two namespaces, over the veth.
RECV = ("import socket,sys\n"
        "s=socket.create_server((sys.argv[1],int(sys.argv[2])));c,_=s.accept()\n"
        "f=open(sys.argv[3],'wb')\n"
        "while True:\n b=c.recv(1<<20)\n if not b: break\n f.write(b)\n"
        "f.close()\n")
SEND = ("import socket,sys,time,os\n"
        "for i in range(250):\n"
        " try: c=socket.create_connection((sys.argv[1],int(sys.argv[2])));break\n"
        " except OSError: time.sleep(0.02)\n"
        "f=open(sys.argv[3],'rb');c.sendfile(f);c.close()\n")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def say(host, cid: str, line: str, reply: str, timeout: float = 120) -> str:
    return host.say(cid, line, reply, timeout)


def gap_ms(host, cid: str) -> float:
    """The longest pause the app saw since the last ask (and reset it)."""
    ans = say(host, cid, "gaps", "gaps")
    return float(ans.split("max=")[1].split()[0])


def copy_over_veth(h, src: str, dst: str) -> None:
    recv = subprocess.Popen(["nsenter", f"--net=/run/netns/{h.b.netns}", sys.executable,
                             "-c", RECV, h.b.addr, str(COPY_PORT), dst])
    try:
        subprocess.run(["nsenter", f"--net=/run/netns/{h.a.netns}", sys.executable, "-c",
                        SEND, h.b.addr, str(COPY_PORT), src], check=True, timeout=300)
        recv.wait(300)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    if recv.returncode != 0:
        raise Unavailable(f"copy over the veth failed ({recv.returncode})")


def live_once(h, bundle: str, cid: str) -> dict:
    h.a.client.create(cid, bundle)
    try:
        who = say(h.a, cid, "whoami", "whoami")
        gap_ms(h.a, cid)  # reset: start-up pauses are not the migration's
        o = h.b.client.open_migration(cid)
        t0 = time.perf_counter()
        res = h.a.client.migrate(cid, h.b.url, migration=o["migration"], token=o["token"])
        total = time.perf_counter() - t0
        down = gap_ms(h.b, cid) / 1000
        if say(h.b, cid, "whoami", "whoami") != who:
            raise Unavailable("the migrated app lost its memory")
        return {"total": total, "down": down, "frozen": res["frozenMs"] / 1000,
                "steps": res.get("frozenSteps", {}), "bytes": res["bytes"],
                "preCopySkipped": res.get("preCopySkipped")}
    finally:
        for host in (h.a, h.b):
            try:
                host.client.delete(cid, force=True)
            except Exception:  # noqa: BLE001 - gone already
                pass


def stop_copy_once(h, bundle: str, cid: str, work: str) -> dict:
    h.a.client.create(cid, bundle)
    src = os.path.join(work, f"{cid}.tar")
    dst = os.path.join(work, f"{cid}.received.tar")
    try:
        who = say(h.a, cid, "whoami", "whoami")
        gap_ms(h.a, cid)
        t0 = time.perf_counter()
        h.a.client.checkpoint(cid, "move", exit=True)
        t1 = time.perf_counter()
        with open(src, "wb") as f:
            h.a.client.export_checkpoint(cid, "move", f)
        t2 = time.perf_counter()
        copy_over_veth(h, src, dst)
        t3 = time.perf_counter()
        with open(dst, "rb") as f:
            h.b.client.import_checkpoint(cid, f)
        t4 = time.perf_counter()
        down = gap_ms(h.b, cid) / 1000
        if say(h.b, cid, "whoami", "whoami") != who:
            raise Unavailable("the imported app lost its memory")
        return {"total": t4 - t0, "down": down,
                "steps": {"checkpointMs": round((t1 - t0) * 1000),
                          "exportMs": round((t2 - t1) * 1000),
                          "copyMs": round((t3 - t2) * 1000),
                          "importMs": round((t4 - t3) * 1000)},
                "bytes": os.path.getsize(src)}
    finally:
        for p in (src, dst):
            if os.path.exists(p):
                os.unlink(p)
        try:
            h.a.client.delete_checkpoint(cid, "move")
        except Exception:  # noqa: BLE001
            pass
        for host in (h.a, h.b):
            try:
                host.client.delete(cid, force=True)
            except Exception:  # noqa: BLE001
                pass


def fig_migrate(work: str, quick: bool, sizes: list[int] | None = None) -> dict:
    sizes = sizes or ([64] if quick else [64, 256, 1024])
    reps = 1 if quick else 3
    out: dict = {"sizes": {}, "baseline": "containerd-py export/import by hand "
                 "(checkpoint --exit, export, copy over the veth, import)",
                 "podman": podman_status()}
    # State and data dirs, bundles and archives on tmpfs, as /run is: what
    # is measured is the migration, not this shared machine's disk writeback.
    import tempfile
    work = tempfile.mkdtemp(prefix="cpb-mig-", dir="/dev/shm")
    out["loadavg"] = {"start": os.getloadavg()[0]}
    try:
        return _fig(work, sizes, reps, quick, out)
    finally:
        out["loadavg"]["end"] = os.getloadavg()[0]
        shutil.rmtree(work, ignore_errors=True)


def _fig(work, sizes, reps, quick, out) -> dict:
    from twohosts import TwoHosts
    with TwoHosts(base="/dev/shm") as h:
        pods = None
        if out["podman"] == "run":
            try:
                pods = podman_setup(h, work)
            except (Unavailable, subprocess.SubprocessError, OSError) as e:
                out["podman"] = f"unavailable: {e}"
        try:
            _sizes(h, pods, work, sizes, reps, quick, out)
        finally:
            if pods:
                pods[0].close()
                pods[1].close()
    return out


def _sizes(h, pods, work, sizes, reps, quick, out) -> None:
    from build import pyapp_bundle
    for mb in sizes:
        bundle = str(pyapp_bundle(os.path.join(work, f"pyapp-mig-{mb}"), memory_mb=mb,
                                  env={"APP_HEARTBEAT_MS": "1"}))
        r = out["sizes"][str(mb)] = {
            "live": {"total": Samples(), "down": Samples(), "frozen": Samples(),
                     "steps": [], "bytes": 0},
            "stopcopy": {"total": Samples(), "down": Samples(), "steps": [], "bytes": 0},
            "podman": {"total": Samples(), "down": Samples(), "steps": [], "bytes": 0}}
        n = 1 if mb >= 1024 and not quick else reps
        for i in range(n):
            # Interleaved, so that the machine's load falls on both.
            kinds = [("live", lambda c: live_once(h, bundle, c)),
                     ("stopcopy", lambda c: stop_copy_once(h, bundle, c, work))]
            if pods:
                kinds.append(("podman", lambda c: podman_once(*pods, bundle, c, work, h)))
            for kind, fn in kinds:
                cid = f"mig{mb}-{kind}-{i}"
                try:
                    got = fn(cid)
                except Exception as e:  # noqa: BLE001 - a failure is a result
                    r[kind]["total"].error = f"{type(e).__name__}: {e}"[:300]
                    log(f"  migrate {mb} MiB {kind}: {r[kind]['total'].error}")
                    continue
                for k in ("total", "down", "frozen"):
                    if k in got:
                        r[kind][k].add(got[k])
                r[kind]["steps"].append(got["steps"])
                r[kind]["bytes"] = got["bytes"]
                if got.get("preCopySkipped"):
                    out["preCopySkipped"] = got["preCopySkipped"]
        lv, sc, pm = r["live"], r["stopcopy"], r["podman"]
        log(f"  migrate {mb} MiB: live total {_ms(lv['total'].median())} down "
            f"{_ms(lv['down'].median())}; stop-and-copy total {_ms(sc['total'].median())}"
            f" down {_ms(sc['down'].median())}; podman total {_ms(pm['total'].median())}"
            f" down {_ms(pm['down'].median())} {pm['total'].error or ''}")
        for kind in r.values():
            for k, v in list(kind.items()):
                if isinstance(v, Samples):
                    kind[k] = v.to_json()
    return out


def podman_status() -> str:
    if not shutil.which("podman"):
        return "podman is not installed (`make bench` installs it from Debian)"
    return "run"


class PodmanHost:
    """podman on one of the two hosts: its own storage, run in that host's
    network namespace, the same working CRIU as the daemons."""

    def __init__(self, work: str, netns: str, name: str):
        self.dir = os.path.join(work, f"podman-{name}")
        self.netns = netns
        self.env = dict(os.environ)
        self.env["PATH"] = "/opt/containerd-py/bin:" + self.env.get("PATH", "")

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "podman",
                "--root", os.path.join(self.dir, "root"),
                "--runroot", os.path.join(self.dir, "run"), "--runtime", "runc",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--tmpdir", os.path.join(self.dir, "tmp"), *args]

    def run(self, *args: str, timeout: float = 300) -> str:
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise Unavailable(f"podman {args[0]} {args[1] if len(args) > 1 else ''}: "
                              f"{(p.stderr or p.stdout).strip()[-300:]}")
        return p.stdout

    def close(self) -> None:
        subprocess.run(self.argv("rm", "-a", "-f", "-t", "0"), capture_output=True,
                       env=self.env, timeout=120)
        subprocess.run(self.argv("system", "reset", "-f"), capture_output=True,
                       env=self.env, timeout=120)
        with open("/proc/mounts") as f:
            mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(self.dir)]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


def podman_setup(h, work: str) -> tuple:
    """A busybox image (bundles/archives.py) loaded into both podmans: the
    app runs from it with the host's Python bind-mounted, as the bundle."""
    image = "localhost/cdpy-migrate:1"
    tar = os.path.join(work, "busybox-image.tar")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "bundles",
                                                 "archives.py"), tar, "--name", image],
                   check=True, capture_output=True)
    pa, pb = PodmanHost(work, h.a.netns, "a"), PodmanHost(work, h.b.netns, "b")
    for p in (pa, pb):
        p.run("load", "-i", tar)
    return pa, pb, image


def podman_once(pa, pb, image: str, bundle: str, cid: str, work: str, h) -> dict:
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    argv = ["run", "-d", "-i", "--name", cid, "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    for m in spec["mounts"]:
        if m["type"] == "bind":
            argv += ["-v", f"{m['source']}:{m['destination']}:ro"]
    for e in spec["process"]["env"]:
        argv += ["-e", e]
    src = os.path.join(work, f"{cid}.tar.gz")
    dst = os.path.join(work, f"{cid}.received.tar.gz")
    try:
        pa.run(*argv, image, *spec["process"]["args"])
        deadline = time.monotonic() + 180
        while "ready" not in pa.run("logs", cid).split():
            if time.monotonic() > deadline:
                raise Unavailable("podman: no 'ready' from the app in 180 s")
            time.sleep(0.1)
        time.sleep(0.5)  # the heartbeat thread is ticking
        t0 = time.perf_counter()
        pa.run("container", "checkpoint", "--export", src, cid)
        t1 = time.perf_counter()
        copy_over_veth(h, src, dst)
        t2 = time.perf_counter()
        pb.run("container", "restore", "--import", dst)
        t3 = time.perf_counter()
        # The app's own report of its pause, printed by its heartbeat.
        down = None
        deadline = time.monotonic() + 30
        while down is None and time.monotonic() < deadline:
            for ln in pb.run("logs", "-t", cid).splitlines():
                parts = ln.split()
                if len(parts) >= 3 and parts[1] == "heartbeat-gap":
                    gap = float(parts[2]) / 1000
                    if gap >= (t1 - t0) * 0.5 and (down is None or gap > down):
                        down = gap
            time.sleep(0.1)
        if down is None:
            raise Unavailable("podman: the restored app reported no pause")
        return {"total": t3 - t0, "down": down,
                "steps": {"checkpointExportMs": round((t1 - t0) * 1000),
                          "copyMs": round((t2 - t1) * 1000),
                          "restoreImportMs": round((t3 - t2) * 1000)},
                "bytes": os.path.getsize(src)}
    finally:
        for p in (src, dst):
            if os.path.exists(p):
                os.unlink(p)
        for p in (pa, pb):
            subprocess.run(p.argv("rm", "-f", "-t", "0", cid), capture_output=True,
                           env=p.env, timeout=120)


def _ms(v):
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _val(s) -> float | None:
    if s is None:
        return None
    if isinstance(s, dict):
        vals = s.get("values") or []
        if not vals:
            return s.get("median")
        vals = sorted(vals)
        return vals[len(vals) // 2]
    return s.median() if s is not None else None


GOALS = [
    "Goals, and what stands in their way on this host: the kernel has no soft-dirty page "
    "tracking (CONFIG_MEM_SOFT_DIRTY is unset), so CRIU cannot pre-copy: all of the "
    "memory is dumped while the container is frozen, straight into the target's `criu "
    "page-server` (the dump step below); and lazy (post-copy) migration through a page "
    "server fails in CRIU here (`page-pipe: splice: -1: Bad file descriptor`). Downtime "
    "therefore grows with the memory: the 300 ms goal at 256 MiB is not met, and the live "
    "path's downtime is 4-10x below stop-and-copy's but only 2-4x below podman's (the 5x "
    "goal is not met)."]


def _podman_text(status) -> str:
    if status == "run":
        return ("podman's `container checkpoint --export` / `container restore --import` by "
                "hand on the same two namespaces (the same app, from an image loaded into "
                "each side's store; the archive copied over the veth)")
    return str(status)


def report_lines(res: dict) -> list[str]:
    if "error" in res:
        return ["## Live migration", "", f"Not measured: {res['error']}"]
    lines = ["## Live migration", "",
             "The pyapp (touched memory of the given size) moved between two daemons in two "
             "network namespaces joined by a veth pair (`bench/migrate.py`). Downtime is "
             "what the application itself saw: its heartbeat thread ticks every millisecond "
             "and reports the longest pause between two ticks, i.e. from its last tick "
             "before the freeze to its first tick on the target. State and data dirs, "
             "bundles and archives on tmpfs. Stop-and-copy is "
             f"{res.get('baseline')}; podman: {_podman_text(res.get('podman'))}. "
             "Medians (3 runs; 1 GiB: 1).", "", *GOALS, "",
             "| memory | live: total | live: downtime (app) | live: frozen (daemon) "
             "| stop-and-copy: total | stop-and-copy: downtime (app) "
             "| podman export/import: total | podman: downtime (app) "
             "| downtime ratio (stop-and-copy / live, podman / live) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mb, r in res.get("sizes", {}).items():
        lv, sc, pm = r["live"], r["stopcopy"], r.get("podman") or {}
        ld, sd, pd = _val(lv["down"]), _val(sc["down"]), _val(pm.get("down"))
        ratio = " / ".join(f"{x / ld:.1f}x" if ld and x else "-" for x in (sd, pd))
        size = f"{int(mb) // 1024} GiB" if int(mb) >= 1024 else f"{mb} MiB"
        lines.append(f"| {size} | {_ms(_val(lv['total']))} | {_ms(ld)} | "
                     f"{_ms(_val(lv['frozen']))} | {_ms(_val(sc['total']))} | {_ms(sd)} | "
                     f"{_ms(_val(pm.get('total')))} | {_ms(pd)} | {ratio} |")
    lines.append("")
    for mb, r in res.get("sizes", {}).items():
        if r["live"]["steps"]:
            lines.append(f"- {mb} MiB, live, frozen steps: {json.dumps(r['live']['steps'][0])}"
                         f"; stop-and-copy steps: "
                         f"{json.dumps((r['stopcopy']['steps'] or [{}])[0])}; podman steps: "
                         f"{json.dumps(((r.get('podman') or {}).get('steps') or [{}])[0])}")
        for kind in ("live", "stopcopy", "podman"):
            err = ((r.get(kind) or {}).get("total") or {})
            err = err.get("error") if isinstance(err, dict) else None
            if err:
                lines.append(f"- {mb} MiB, {kind}: failed: {err}")
    load = res.get("loadavg") or {}
    if load:
        lines += ["", f"Load average (1 min) on this {os.cpu_count()}-core machine: "
                  f"{load.get('start', 0):.1f} at the start, {load.get('end', 0):.1f} at the "
                  "end" + (f", {load['during']} during the run" if load.get("during") else "")
                  + " (other work shares it; every figure above moves with it)."]
    if res.get("preCopySkipped"):
        lines += ["", f"Pre-copy: {res['preCopySkipped']}."]
    return lines


if __name__ == "__main__":
    # Alone: python bench/migrate.py [--quick] [--docs DIR] [SIZES...], e.g. 64 256
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description="live migration vs stop-and-copy")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--docs", help="write the section into DIR/benchmarks.md and the raw "
                                   "numbers into DIR/benchmarks-migrate.json")
    ap.add_argument("sizes", nargs="*", type=int)
    a = ap.parse_args()
    w = tempfile.mkdtemp(prefix="cpb-mig-")
    try:
        res = fig_migrate(w, a.quick, sizes=a.sizes or None)
        lines = report_lines(res)
        print("\n".join(lines))
        if a.docs:
            replace_section(os.path.join(a.docs, "benchmarks.md"), BEGIN, END, lines)
            with open(os.path.join(a.docs, "benchmarks-migrate.json"), "w") as f:
                json.dump(res, f, indent=1, default=str)
    finally:
        shutil.rmtree(w, ignore_errors=True)
