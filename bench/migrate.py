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
the migration request's wall time (or the sum of the hand steps).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bundles"))

from common import Samples, Unavailable  # noqa: E402

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
    from build import pyapp_bundle
    from twohosts import TwoHosts
    sizes = sizes or ([64] if quick else [64, 256, 1024])
    reps = 1 if quick else 3
    out: dict = {"sizes": {}, "baseline": "containerd-py export/import by hand "
                 "(checkpoint --exit, export, copy over the veth, import)",
                 "podman": podman_status()}
    with TwoHosts() as h:
        for mb in sizes:
            bundle = str(pyapp_bundle(os.path.join(work, f"pyapp-mig-{mb}"), memory_mb=mb,
                                      env={"APP_HEARTBEAT_MS": "1"}))
            r = out["sizes"][str(mb)] = {
                "live": {"total": Samples(), "down": Samples(), "frozen": Samples(),
                         "steps": [], "bytes": 0},
                "stopcopy": {"total": Samples(), "down": Samples(), "steps": [], "bytes": 0}}
            n = 1 if mb >= 1024 and not quick else reps
            for i in range(n):
                # Interleaved, so that the machine's load falls on both.
                for kind, fn in (("live", lambda c: live_once(h, bundle, c)),
                                 ("stopcopy", lambda c: stop_copy_once(h, bundle, c, work))):
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
            lv, sc = r["live"], r["stopcopy"]
            log(f"  migrate {mb} MiB: live total {_ms(lv['total'].median())} down "
                f"{_ms(lv['down'].median())}; stop-and-copy total {_ms(sc['total'].median())}"
                f" down {_ms(sc['down'].median())}")
            for kind in r.values():
                for k, v in list(kind.items()):
                    if isinstance(v, Samples):
                        kind[k] = v.to_json()
    return out


def podman_status() -> str:
    if not shutil.which("podman"):
        return "podman is not installed"
    return ("not run: podman's export/import needs its own image store on each side; "
            "the same stop-and-copy steps are measured with containerd-py's own "
            "export/import instead")


def _ms(v):
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _val(s) -> float | None:
    if isinstance(s, dict):
        vals = s.get("values") or []
        if not vals:
            return s.get("median")
        vals = sorted(vals)
        return vals[len(vals) // 2]
    return s.median() if s is not None else None


def report_lines(res: dict) -> list[str]:
    if "error" in res:
        return ["## Live migration", "", f"Not measured: {res['error']}"]
    lines = ["## Live migration", "",
             "The pyapp (touched memory of the given size) moved between two daemons in two "
             "network namespaces joined by a veth pair (`bench/migrate.py`). Downtime is "
             "what the application itself saw: its heartbeat thread ticks every millisecond "
             "and reports the longest pause between two ticks, i.e. from its last tick "
             "before the freeze to its first tick on the target. Stop-and-copy is "
             f"{res.get('baseline')}; podman: {res.get('podman')}. Medians.", "",
             "| memory | live: total | live: downtime (app) | live: frozen (daemon) "
             "| stop-and-copy: total | stop-and-copy: downtime (app) | downtime ratio |",
             "|---|---|---|---|---|---|---|"]
    for mb, r in res.get("sizes", {}).items():
        lv, sc = r["live"], r["stopcopy"]
        ld, sd = _val(lv["down"]), _val(sc["down"])
        ratio = f"{sd / ld:.1f}x" if ld and sd else "-"
        size = f"{int(mb) // 1024} GiB" if int(mb) >= 1024 else f"{mb} MiB"
        lines.append(f"| {size} | {_ms(_val(lv['total']))} | {_ms(ld)} | "
                     f"{_ms(_val(lv['frozen']))} | {_ms(_val(sc['total']))} | {_ms(sd)} | "
                     f"{ratio} |")
    lines.append("")
    for mb, r in res.get("sizes", {}).items():
        if r["live"]["steps"]:
            lines.append(f"- {mb} MiB, live, frozen steps: {json.dumps(r['live']['steps'][0])}"
                         f"; stop-and-copy steps: "
                         f"{json.dumps((r['stopcopy']['steps'] or [{}])[0])}")
    if res.get("preCopySkipped"):
        lines += ["", f"Pre-copy: {res['preCopySkipped']}."]
    return lines


def replace_section(md_path: str, lines: list[str]) -> None:
    """Put this figure's section into an existing benchmarks.md (a run of
    this figure alone does not rewrite the others)."""
    block = "\n".join([BEGIN, *lines, END])
    try:
        with open(md_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(md_path, "w") as f:
        f.write(text)


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
    w = tempfile.mkdtemp(prefix="cpb-mig-", dir="/var/tmp")
    try:
        res = fig_migrate(w, a.quick, sizes=a.sizes or None)
        lines = report_lines(res)
        print("\n".join(lines))
        if a.docs:
            replace_section(os.path.join(a.docs, "benchmarks.md"), lines)
            with open(os.path.join(a.docs, "benchmarks-migrate.json"), "w") as f:
                json.dump(res, f, indent=1, default=str)
    finally:
        shutil.rmtree(w, ignore_errors=True)
