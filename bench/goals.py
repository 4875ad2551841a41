"""The start-path, restore and warm-pool goals, each measured against its
baseline in the same run (`make bench` figure `goals`), and their section
of docs/benchmarks.md with the start-path breakdown plot.

- start path: bench/startpath.py (alternating pairs with bare `runc run -d`,
  the runtime's own time from the shim, the daemon's phases);
- warm pools: claim of a ready member against bare `runc run -d`, pair by
  pair; a checkpoint pool's member: claim -> first answer of the app;
- restore of a trivial container against its cold start, pair by pair.
The 64 MiB app's eager restore and the 8 clones come from figure `ready`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import time

import startpath as SP
from common import Samples, Unavailable, one_line

COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"]
# Measured before this work on the same machine (commit bd3d2d5, which only
# adds the measurement): the daemon's phases of one start, medians of 20
# alternating pairs (bench/startpath.py), for the before/after plot.
BEFORE_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startpath-before.json")
# A warm pool's claim before this work and after, back to back (bench/goals.py's
# fig_pools against each daemon), for the claim's before/after table.
POOLS_BEFORE_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "pools-before.json")


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise Unavailable(f"timed out after {timeout}s waiting for {what}")


# -- measurements ----------------------------------------------------------------

def fig_startpath(d, work: str, bundle: str, pairs: int) -> dict:
    import shutil
    root = os.path.join(work, "startpath-runc-root")
    os.makedirs(root, exist_ok=True)
    return SP.measure(d.port, bundle, shutil.which("runc"), root, pairs, "gsp")


def _ping_first_answer(state_dir: str, shim_id: str, client, cid: str, token: str,
                       t0_ns: int, timeout: float = 30) -> float:
    """Write a line to the app's stdin through its shim; seconds from t0_ns
    to the shim's timestamp of the app's answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(os.path.join(state_dir, "shims", shim_id, "shim.sock"))
        s.sendall(b"stdin\x000\n")
        _, fds, _, _ = socket.recv_fds(s, 4096, 1)
    finally:
        s.close()
    if not fds:
        raise Unavailable("shim gave no stdin")
    try:
        os.write(fds[0], token.encode() + b"\n")
    finally:
        os.close(fds[0])
    from run import parse_cri_ts

    def answered():
        for e in client.logs(cid, stderr=False):
            if e["line"] == f"pong {token}":
                return parse_cri_ts(e["timestamp"])
        return None
    return (_wait(answered, timeout, f"the answer of {cid}") - t0_ns) / 1e9


def fig_pools(d, work: str, bundle: str, pyapp_bundle: str | None, reps: int) -> dict:
    """Claims from a bundle pool against bare `runc run -d` (pairs), and
    claims from a checkpoint pool of the 64 MiB app until its first answer."""
    import shutil
    out: dict = {"errors": []}
    c = d.client
    rc = SP.RawClient(d.port)
    root = os.path.join(work, "pools-runc-root")
    os.makedirs(root, exist_ok=True)
    runc = shutil.which("runc")
    err = tempfile.TemporaryFile()
    claim, bare, server = Samples(), Samples(), Samples()
    ratios = []
    phases: dict[str, list[float]] = {}
    try:
        c.create_pool("bench-web", bundle, 3)
        for i in range(reps + 2):
            _wait(lambda: c.pool("bench-web")["ready"] >= 1, 60, "a ready member")
            pair = {}
            for who in (("claim", "bare") if i % 2 == 0 else ("bare", "claim")):
                cid = f"gpool-{who}-{i}"
                if who == "bare":
                    pair["bare"] = SP.bare_run(runc, root, bundle, cid, err)
                    SP.bare_delete(runc, root, cid)
                    time.sleep(SP.SETTLE_S)
                    continue
                t0 = time.perf_counter()
                st, headers, body = rc.post(f"/containers/{cid}", {"pool": "bench-web"})
                pair["claim"] = time.perf_counter() - t0
                if st != 201 or "runtimeId" not in body:
                    raise Unavailable(f"claim -> {st}: {one_line(body)}")
                st_phases = SP.parse_server_timing(headers.get("Server-Timing", ""))
                server.add(st_phases.get("total", 0))
                if i >= 2:
                    st_phases["http"] = max(pair["claim"] - st_phases.get("total", 0), 0)
                    for k, v in st_phases.items():
                        phases.setdefault(k, []).append(v)
                rc.delete(f"/containers/{cid}?force=true")
                time.sleep(SP.SETTLE_S)
            if i >= 2:  # warm-up
                claim.add(pair["claim"])
                bare.add(pair["bare"])
                ratios.append(pair["claim"] / pair["bare"])
    except Exception as e:  # noqa: BLE001
        out["errors"].append(one_line(e))
    finally:
        try:
            c.delete_pool("bench-web")
        except Exception:  # noqa: BLE001
            pass
    out["claim"], out["bare"], out["claim_server"] = (claim.to_json(), bare.to_json(),
                                                      server.to_json())
    out["ratio_median_of_pairs"] = statistics.median(ratios) if ratios else None
    out["claim_phases"] = {k: statistics.median(v) for k, v in phases.items()}

    if pyapp_bundle:
        first = Samples()
        claim_cp = Samples()
        try:
            src = "gpool-src"
            c.create(src, pyapp_bundle)
            from run import wait_log
            wait_log(c, src, "ready", 60)
            c.checkpoint(src, "gpool", exit=True)
            c.delete(src, force=True)
            c.create_pool("bench-app", pyapp_bundle, 2, checkpoint="gpool")
            for i in range(reps):
                _wait(lambda: c.pool("bench-app")["ready"] >= 1, 120, "a ready app member")
                time.sleep(0.2)  # let the refill's restore not compete with this claim
                cid = f"gpool-app-{i}"
                t0_ns = time.time_ns()
                t0 = time.perf_counter()
                st, _, body = rc.post(f"/containers/{cid}", {"pool": "bench-app"})
                claim_cp.add(time.perf_counter() - t0)
                if st != 201 or "runtimeId" not in body:
                    raise Unavailable(f"claim -> {st}: {one_line(body)}")
                first.add(_ping_first_answer(d.state, body["runtimeId"], c, cid, f"p{i}",
                                             t0_ns))
                rc.delete(f"/containers/{cid}?force=true")
        except Exception as e:  # noqa: BLE001
            out["errors"].append(one_line(e))
        finally:
            try:
                c.delete_pool("bench-app")
            except Exception:  # noqa: BLE001
                pass
            shutil.rmtree(os.path.join(pyapp_bundle, "checkpoints", "gpool"),
                          ignore_errors=True)
        out["checkpoint_claim"] = claim_cp.to_json()
        out["checkpoint_first_answer"] = first.to_json()
        out["checkpoint_first_http"] = _pool_first_http(d, work, reps, out["errors"])
    return out


HTTP_PORT = 8080


def _get_in_netns(pid: int, port: int) -> tuple[float, bytes]:
    """GET / from 127.0.0.1:port inside the netns of `pid`, from a thread
    that joins it (setns is per thread); (perf_counter at the answer, the
    answer)."""
    import ctypes
    import threading
    libc = ctypes.CDLL(None, use_errno=True)
    out: list = []

    def run():
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = s.recv(4096)
            out.append((time.perf_counter(), data))
        except Exception as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if not out or isinstance(out[0], Exception):
        raise Unavailable(f"GET in the netns of {pid}: {out[0] if out else 'timed out'}")
    return out[0]


def _pool_first_http(d, work: str, reps: int, errors: list) -> dict:
    """A checkpoint pool of the 64 MiB app serving HTTP: claim -> its first
    HTTP 200, from the host into the member's own netns (loopback only, as
    every member has; lo and the listening socket are CRIU's to restore)."""
    import shutil
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), "bundles"))
    from build import pyapp_bundle
    from run import wait_log
    c = d.client
    rc = SP.RawClient(d.port)
    first = Samples()
    bundle = str(pyapp_bundle(os.path.join(work, "pyapp-http"), memory_mb=64,
                              env={"APP_HTTP_PORT": str(HTTP_PORT)}))
    try:
        c.create("gpool-http-src", bundle)
        wait_log(c, "gpool-http-src", "ready", 60)

        def serving():
            try:
                return b" 200 " in _get_in_netns(c.get("gpool-http-src")["pid"], HTTP_PORT)[1]
            except Unavailable:  # not listening yet
                return False
        _wait(serving, 30, "the app's HTTP server")
        c.checkpoint("gpool-http-src", "ghttp", exit=True)
        c.delete("gpool-http-src", force=True)
        c.create_pool("bench-http", bundle, 2, checkpoint="ghttp")
        for i in range(reps):
            _wait(lambda: c.pool("bench-http")["ready"] >= 1, 120, "a ready app member")
            time.sleep(0.2)  # as above
            cid = f"gpool-http-{i}"
            t0 = time.perf_counter()
            st, _, body = rc.post(f"/containers/{cid}", {"pool": "bench-http"})
            if st != 201 or "pid" not in body:
                raise Unavailable(f"claim -> {st}: {one_line(body)}")
            t1, answer = _get_in_netns(body["pid"], HTTP_PORT)
            if b" 200 " not in answer.split(b"\r\n", 1)[0] + b" ":
                raise Unavailable(f"member answered {answer[:60]!r}")
            first.add(t1 - t0)
            rc.delete(f"/containers/{cid}?force=true")
    except Exception as e:  # noqa: BLE001
        errors.append(one_line(e))
    finally:
        try:
            c.delete_pool("bench-http")
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(os.path.join(bundle, "checkpoints", "ghttp"), ignore_errors=True)
    return first.to_json()


def criu_defaults_bundle(bundle: str, dest: str) -> str:
    """A copy of `bundle` whose config names a CRIU configuration of its own
    (an empty file: CRIU's defaults), so that the daemon's settings
    (containerd_py/checkpoint/criuconf.py) do not apply: its dumps and
    restores run as they did before them, for an A/B in one run."""
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    root = spec.setdefault("root", {})
    root["path"] = os.path.join(bundle, root.get("path", "rootfs"))  # absolute stays
    os.makedirs(dest, exist_ok=True)
    conf = os.path.join(dest, "criu-defaults.conf")
    open(conf, "w").close()
    spec.setdefault("annotations", {})["org.criu.config"] = conf
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(spec, f)
    return dest


def fig_restore_trivial(d, work: str, reps: int) -> dict:
    """Cold start of the busybox counter against a restore of its
    checkpoint (request -> 201), pair by pair; and the same restore with
    CRIU's defaults (its network lock: as before criuconf.py)."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), "bundles"))
    from build import write_bundle
    bundle = str(write_bundle(os.path.join(work, "bundle-counter"), COUNTER))
    old = criu_defaults_bundle(bundle, os.path.join(work, "bundle-counter-criu-defaults"))
    c = d.client
    rc = SP.RawClient(d.port)
    cold, restore, restore_old = Samples(), Samples(), Samples()
    phases: dict[str, list[float]] = {}
    criu: dict[str, list[float]] = {}
    out: dict = {"errors": []}
    arms = ("cold", "restore", "restore-old")
    try:
        for b in (bundle, old):
            c.create("grs-src", b)
            time.sleep(0.5)
            c.checkpoint("grs-src", "trivial")
            c.delete("grs-src", force=True)
        for i in range(reps + 1):
            for who in (arms if i % 2 == 0 else arms[::-1]):
                cid = f"grs-{who}-{i}"
                body = {"bundlePath": old if who == "restore-old" else bundle}
                if who != "cold":
                    body["checkpoint"] = "trivial"
                t0 = time.perf_counter()
                st, headers, resp = rc.post(f"/containers/{cid}", body)
                dt = time.perf_counter() - t0
                if st != 201:
                    raise Unavailable(f"{who} -> {st}: {one_line(resp)}")
                if who != "cold" and i >= 1:
                    crit = criu_phases(os.path.join(d.state, "shims", cid, "criu-work",
                                                    "restore.log"))
                    for k, v in (crit or {}).items():
                        criu.setdefault(who, {}).setdefault(k, []).append(v)
                    for k, v in SP.parse_server_timing(
                            headers.get("Server-Timing", "")).items():
                        phases.setdefault(who, {}).setdefault(k, []).append(v)
                if i >= 1:
                    {"cold": cold, "restore": restore, "restore-old": restore_old}[who].add(dt)
                rc.delete(f"/containers/{cid}?force=true")
                time.sleep(SP.SETTLE_S)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(one_line(e))
    out["cold"], out["restore"] = cold.to_json(), restore.to_json()
    out["restore_criu_defaults"] = restore_old.to_json()
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
    out["restore_phases"] = med(phases.get("restore", {}))
    out["criu_phases"] = med(criu.get("restore", {}))
    out["restore_phases_criu_defaults"] = med(phases.get("restore-old", {}))
    out["criu_phases_criu_defaults"] = med(criu.get("restore-old", {}))
    # What CRIU saved with tar (one image per tmpfs it fills on restore).
    out["tmpfs_images"] = {k: _tar_images(os.path.join(b, "checkpoints", "trivial"))
                           for k, b in (("after", bundle), ("before", old))}
    return out


def _tar_images(image_dir: str) -> int | None:
    try:
        return sum(n.startswith("tmpfs-dev-") for n in os.listdir(image_dir))
    except OSError:
        return None


def fig_restore_app(d, work: str, pyapp_bundle: str, reps: int) -> dict:
    """The 64 MiB app: request -> its answer to a ping, eager restore of its
    checkpoint (dumped with --exit after a cold start); 8 clones restored at
    once until all answered, and one alone. Each against the same with
    CRIU's defaults (criu_defaults_bundle), alternated."""
    from run import time_to_ready, wait_log
    c = d.client
    old = criu_defaults_bundle(pyapp_bundle, os.path.join(work, "pyapp-64-criu-defaults"))
    bundles = {"new": pyapp_bundle, "old": old}
    out: dict = {"errors": []}
    eager = {k: Samples() for k in bundles}
    clones = {k: {n: Samples() for n in (1, 8)} for k in bundles}
    criu: dict[str, list[float]] = {}
    seq = iter(range(10**6))
    try:
        for k, b in bundles.items():
            src = f"gapp-src-{k}"
            c.create(src, b)
            wait_log(c, src, "ready", 120)
            c.checkpoint(src, "gapp", exit=True)
            c.delete(src, force=True)
        for i in range(reps):
            for k in (("new", "old") if i % 2 == 0 else ("old", "new")):
                cid = f"gapp-{k}-{next(seq)}"
                try:
                    eager[k].add(time_to_ready(d, cid, bundles[k], checkpoint="gapp")["pong"])
                    ph = criu_phases(os.path.join(d.state, "shims", cid, "criu-work",
                                                  "restore.log"))
                    for name, v in (ph or {}).items():
                        criu.setdefault(k, {}).setdefault(name, []).append(v)
                finally:
                    c.delete(cid, force=True)
                time.sleep(SP.SETTLE_S)
        import concurrent.futures as cf
        for i in range(max(2, reps // 2)):
            for n in (8, 1):
                for k in (("new", "old") if i % 2 == 0 else ("old", "new")):
                    ids = [f"gclone-{k}-{next(seq)}" for _ in range(n)]
                    t0 = time.perf_counter()
                    try:
                        with cf.ThreadPoolExecutor(n) as pool:
                            list(pool.map(lambda cid: time_to_ready(
                                d, cid, bundles[k], checkpoint="gapp"), ids))
                        clones[k][n].add(time.perf_counter() - t0)
                    finally:
                        for cid in ids:
                            try:
                                c.delete(cid, force=True)
                            except Exception:  # noqa: BLE001
                                pass
                    time.sleep(0.5)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(one_line(e))
    finally:
        import shutil
        for b in bundles.values():
            shutil.rmtree(os.path.join(b, "checkpoints", "gapp"), ignore_errors=True)
    out["eager"] = {k: v.to_json() for k, v in eager.items()}
    out["clones"] = {k: {str(n): s.to_json() for n, s in v.items()} for k, v in clones.items()}
    out["criu_phases"] = {k: statistics.median(v) for k, v in criu.get("new", {}).items()}
    out["criu_phases_criu_defaults"] = {k: statistics.median(v)
                                        for k, v in criu.get("old", {}).items()}
    return out


CRIU_MARKS = [("kernel features", ("cpu: x86_family",)),
              ("tasks, cgroups, namespaces", ("Restoring mount namespace",)),
              ("mount namespace", ("Running post-setup-namespaces scripts",)),
              ("to the restorer", ("Switched to the restorer",)),
              ("restorer (memory, files, resume)", ())]


def criu_phases(path: str) -> dict | None:
    """CRIU's own phases of one restore, from the timestamps of its log
    (seconds), and how many tmpfs mounts it filled from a tar image."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return None
    stamps = []
    for ln in lines:
        if ln.startswith("(") and ")" in ln:
            try:
                stamps.append((float(ln[1:ln.index(")")]), ln))
            except ValueError:
                pass
    if not stamps:
        return None
    out, last = {}, 0.0
    for name, needles in CRIU_MARKS:
        t = stamps[-1][0] if not needles else next(
            (ts for ts, ln in stamps if ts >= last and any(n in ln for n in needles)), None)
        if t is None:
            continue
        out[name] = t - last
        last = t
    out["total"] = stamps[-1][0]
    out["tmpfs mounts"] = sum("Mounting tmpfs" in ln for _, ln in stamps)
    return out


# -- report ----------------------------------------------------------------------------

def _ms(v, digits=1):
    return "—" if v is None else f"{v * 1000:.{digits}f} ms"


def _spread(s: dict) -> str:
    if not s or not s.get("n"):
        return "—"
    return f"{_ms(s['median'])} (p5–p95 {_ms(_p(s, 5))}–{_ms(s.get('p95'))}, n={s['n']})"


def _p(s, p):
    xs = sorted(s.get("values") or [])
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _verdict(ok) -> str:
    return "—" if ok is None else ("**met**" if ok else "not met")


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(goal, measured, baseline, verdict) of every goal of this work."""
    g = results.get("goals") or {}
    out = []
    sp = g.get("startpath") or {}
    if sp.get("added"):
        a = sp["added"]["median"]
        out.append(("daemon's added time on the start path ≤ 2 ms (request → 201 minus "
                    "the runtime's own time, as the shim saw it)", _spread(sp["added"]),
                    f"runtime inside the daemon: {_spread(sp['runtime'])}",
                    _verdict(a <= 0.002)))
        r = sp["ratio_median_of_pairs"]
        out.append(("request → running ≤ 1.05× bare `runc run -d`", _spread(sp["daemon"])
                    + f"; **{r:.3f}×** (pairs p25–p75 {sp['ratio_p25_p75'][0]:.3f}–"
                    f"{sp['ratio_p25_p75'][1]:.3f})",
                    f"bare `runc run -d`: {_spread(sp['bare'])}; the same with pipes as its "
                    f"stdio (as a supervisor that captures output must): "
                    f"{_spread(sp.get('bare_pipes'))}", _verdict(r <= 1.05)))
    rs = g.get("restore") or {}
    if (rs.get("restore") or {}).get("n"):
        a, b = rs["restore"]["median"], rs["cold"]["median"]
        base = f"cold start: {_spread(rs['cold'])}"
        if (rs.get("restore_criu_defaults") or {}).get("n"):
            base += ("; restore with CRIU's defaults (as before): "
                     f"{_spread(rs['restore_criu_defaults'])}")
        out.append(("trivial container: restore ≤ cold start", _spread(rs["restore"]),
                    base, _verdict(a <= b)))
    app = g.get("app") or {}
    ready = (results.get("ready") or {}).get("64") or {}
    eager = ((app.get("eager") or {}).get("new") or
             (ready.get("eager") or {}).get("pong") or {})
    if eager.get("n"):
        base = (f"with CRIU's defaults (as before): {_spread(app['eager']['old'])}"
                if app.get("eager") else f"cold start: {_spread(ready['cold']['pong'])}")
        out.append(("64 MiB app ready ≤ 120 ms after the request (eager restore)",
                    _spread(eager), base, _verdict(eager["median"] <= 0.120)))
    ac = app.get("clones") or {}
    clones = (((ac.get("new") or {}).get("8")) or
              ((ready.get("clones") or {}).get("8") or {}).get("wall") or {})
    if clones.get("n"):
        one = ((ac.get("new") or {}).get("1") or
               ((ready.get("clones") or {}).get("1") or {}).get("wall") or {})
        base = f"one clone: {_spread(one)}"
        if ac.get("old"):
            base += f"; 8 with CRIU's defaults (as before): {_spread(ac['old'].get('8'))}"
        out.append(("8 clones restored at once all answer ≤ 400 ms", _spread(clones),
                    base, _verdict(clones["median"] <= 0.400)))
    po = g.get("pools") or {}
    if (po.get("claim") or {}).get("n"):
        r = po.get("ratio_median_of_pairs")
        out.append(("warm pool: request → running ≤ 5 ms with a member ready",
                    _spread(po["claim"]) + (f"; {1 / r:.1f}× faster than bare" if r else ""),
                    f"bare `runc run -d`: {_spread(po['bare'])}",
                    _verdict(po["claim"]["median"] <= 0.005)))
    fa = po.get("checkpoint_first_answer") or {}
    if fa.get("n"):
        out.append(("checkpoint pool (64 MiB app): first answer ≤ 10 ms after the claim",
                    _spread(fa), f"eager restore, request → answer: {_spread(eager)}",
                    _verdict(fa["median"] <= 0.010)))
    fh = po.get("checkpoint_first_http") or {}
    if fh.get("n"):
        out.append(("checkpoint pool (64 MiB app serving HTTP): first HTTP 200 ≤ 10 ms after "
                    "the claim (from the host, into the member's netns)", _spread(fh),
                    f"the same app answering on stdin: {_spread(fa)}",
                    _verdict(fh["median"] <= 0.010)))
    return out


PHASE_ORDER = ["http", "parse", "read-spec", "network", "prepare", "write-spec", "shim-start",
               "shim-reply", "cgroups", "save", "event", "watch", "respond"]


CLAIM_PHASES = ["http", "parse", "take", "start", "save", "event", "respond", "total"]


def breakdown(sp: dict) -> dict[str, float]:
    """The daemon's part of one start by phase (s), `http` being the client's
    round trip outside the handler (client total − server total)."""
    ph = dict(sp.get("phases") or {})
    out = {k: ph[k] for k in PHASE_ORDER if k in ph}
    if sp.get("daemon") and "total" in ph:
        out["http"] = max(sp["daemon"]["median"] - ph["total"], 0)
    return out


def runtime_gap(sp: dict) -> str:
    """The runtime inside the daemon against bare runc, and why they differed."""
    rt, bare = sp["runtime"]["median"], sp["bare"]["median"]
    pipes = (sp.get("bare_pipes") or {}).get("median")
    return (f"The runtime inside the daemon took {rt * 1000:.1f} ms in this run, bare "
            f"`runc run -d` {bare * 1000:.1f} ms"
            + (f" ({pipes * 1000:.1f} ms with pipes as its stdio, as the shim gives it)"
               if pipes else "") + ". "
            "Under load it used to be much slower inside the daemon (138.9 against "
            "104.8 ms in a loaded run) while its CPU time was the same (`perf stat` of "
            "runc's process tree: 21.6 against 20.3 ms task-clock, 448 against 438 "
            "context switches): runc waited longer for a CPU. Each shim's `setsid()` "
            "made a new session, which with the kernel's scheduler autogroups is a new "
            "scheduling group created on every start, and runc ran in it. Shims now "
            "take a process group of their own (as containerd's shims), and runc runs "
            "in the daemon's group, as a shell's `runc` runs in the shell's: in an A/B "
            "of both daemons in one run at load average 7.8 the runtime inside the "
            "daemon went from 60.3 to 48.5 ms, bare runc took 48.3 ms.")


def plot_breakdown(before: dict, after: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.2))
    cmap = plt.get_cmap("tab20")
    labels = [("before", before), ("after", after)]
    seen = set()
    for row, (name, b) in enumerate(labels):
        left = 0.0
        for i, k in enumerate(PHASE_ORDER):
            v = b.get(k, 0) * 1000
            if v <= 0:
                continue
            ax.barh(row, v, left=left, color=cmap(i), label=None if k in seen else k,
                    edgecolor="white")
            seen.add(k)
            if v > 0.25:
                ax.text(left + v / 2, row, f"{v:.1f}", ha="center", va="center", fontsize=7)
            left += v
        ax.text(left + 0.05, row, f"{left:.2f} ms", va="center", fontsize=9)
    ax.set_yticks(range(len(labels)), [n for n, _ in labels])
    ax.set_xlabel("ms added by the daemon to one start (median per phase; the runtime's "
                  "own time excluded)")
    ax.legend(ncol=6, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title("Where the daemon's time on the start path goes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict, docs: str) -> list[str]:
    g = results.get("goals") or {}
    md = ["## Start path, restore and warm pools: the goals", ""]
    if not g:
        return md + ["Not run.", ""]
    md += ["Each goal against its baseline, measured in this run (medians, with p5–p95 "
           "and the number of samples).", "",
           "| goal | measured | baseline | |", "| --- | --- | --- | --- |"]
    md += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(results)]
    md.append("")
    sp = g.get("startpath") or {}
    if sp.get("phases"):
        after = breakdown(sp)
        before = {}
        try:
            with open(BEFORE_JSON) as f:
                before = breakdown(json.load(f))
        except (OSError, ValueError):
            pass
        try:
            plot_breakdown(before, after, os.path.join(docs, "bench-startpath.png"))
            md += ["![start path breakdown](bench-startpath.png)", ""]
        except Exception as e:  # noqa: BLE001
            md += [f"(plot failed: {one_line(e)})", ""]
        md += ["| phase | before | after |", "| --- | --- | --- |"]
        for k in PHASE_ORDER:
            if k in before or k in after:
                md.append(f"| {k} | {_ms(before.get(k), 2)} | {_ms(after.get(k), 2)} |")
        md += [f"| **sum** | {_ms(sum(before.values()), 2)} | {_ms(sum(after.values()), 2)} |",
               "", "*http* is the client's round trip outside the route handler (client "
               "time − the handler's total): aiohttp's parsing, the schema validation, the "
               "answer's write, the client itself, and waking the daemon's and the "
               "client's CPUs after the runtime's wait, in which they idled (a `GET /ping` "
               "took 0.87 ms after 30 ms idle against 0.41 ms back to back, on this VM); "
               "*shim-start* from the daemon handing the shim its command line (a spare "
               "shim started ahead, or a new one) to the shim's fork of the runtime; "
               "*shim-reply* from the runtime's exit (reaped by the shim) to the daemon "
               "holding the shim's answer (a wake-up of the idle daemon again).", ""]
        if sp.get("runtime") and sp.get("bare"):
            md += [runtime_gap(sp), ""]
    rs = g.get("restore") or {}
    if rs.get("restore_phases"):
        cols = [(rs.get("restore_phases_criu_defaults") or {},
                 rs.get("criu_phases_criu_defaults") or {}),
                (rs["restore_phases"], rs.get("criu_phases") or {})]

        def cell(ph, cp, key):
            if key == "runc":
                v = ph.get("runtime", 0) - cp["total"] if cp.get("total") else None
            elif key.startswith("criu:"):
                v = cp.get(key[5:])
            else:
                v = ph.get(key)
            return "—" if v is None else f"{v * 1000:.1f}"
        md += ["Where a trivial container's restore goes (medians; the runtime's part "
               "split by CRIU's own log). *Before*: the same restore in the same run with "
               "CRIU's defaults (its iptables network lock, every tmpfs through tar), as "
               "before the daemon's CRIU settings (containerd_py/checkpoint/criuconf.py); "
               "*after*: as the daemon restores now.", "",
               "| part | before, ms | after, ms |", "| --- | --- | --- |"]
        rows_ = [("daemon: shim-start", "shim-start"), ("daemon: runtime", "runtime"),
                 ("daemon: after-restore", "after-restore"),
                 ("runc restore outside CRIU (Go start, spec, cgroups, CRIU's version "
                  "check and start)", "runc")]
        rows_ += [(f"CRIU: {name}", f"criu:{name}") for name, _ in CRIU_MARKS]
        rows_.append(("CRIU: total (its log)", "criu:total"))
        for label, key in rows_:
            md.append(f"| {label} | {cell(*cols[0], key)} | {cell(*cols[1], key)} |")
        tars = rs.get("tmpfs_images") or {}
        if tars.get("after") is not None:
            md += ["", f"tmpfs mounts CRIU saves and fills with `tar --gzip`: "
                   f"{tars.get('before')} before, {tars.get('after')} after (the "
                   "read-only empty masks over /proc/acpi and /sys/firmware are external "
                   "mounts now; /dev, /dev/shm, /tmp and the cgroup v1 tmpfs are writable "
                   "and stay). The iptables lock's `iptables-restore` runs were in the "
                   "restorer row (the unlock) and before the mount namespace (the lock)."]
        md.append("")
    ap = (g.get("app") or {}).get("criu_phases") or {}
    if ap.get("total"):
        bp = (g.get("app") or {}).get("criu_phases_criu_defaults") or {}
        f = lambda d, k: "—" if k not in d else f"{d[k] * 1000:.1f}"  # noqa: E731
        md += ["Where the 64 MiB app's eager restore goes inside CRIU (medians, from its "
               "log; before: with CRIU's defaults, alternated in the same run). The "
               "restorer's part is mostly reading the ~135 MiB of pages (the app's heap "
               "and its 64 MiB ballast) into fresh anonymous memory:", "",
               "| CRIU part | before, ms | after, ms |", "| --- | --- | --- |"]
        for name, _ in CRIU_MARKS + [("total", ())]:
            md.append(f"| {name} | {f(bp, name)} | {f(ap, name)} |")
        md.append("")
    po = g.get("pools") or {}
    cl = po.get("claim_phases")
    if cl:
        ab = {}
        try:
            with open(POOLS_BEFORE_JSON) as f:
                ab = json.load(f)
        except (OSError, ValueError):
            pass
        b, a = (ab.get("before") or {}).get("phases", {}), (ab.get("after") or {}).get("phases", {})
        md += ["Where a claim from a bundle pool goes (medians of the daemon's phases, "
               "`Server-Timing` of each claim). *Before* and *after*: the same figure run "
               "back to back against the daemon before this work (commit "
               f"{(ab.get('before') or {}).get('commit', '?')}) and after it, on a loaded "
               "machine (load average 6-9, bench/pools-before.json), where the refill's "
               "competition showed most; *this run*: this report's run.", "",
               "| phase | before, ms | after, ms | this run, ms |", "| --- | --- | --- | --- |"]
        for k in CLAIM_PHASES:
            if k in cl or k in b:
                cells = [f"{x[k] * 1000:.2f}" if k in x else "—" for x in (b, a, cl)]
                md.append(f"| {k} | " + " | ".join(cells) + " |")
        if ab.get("before") and ab.get("after"):
            md.append(f"| client: request → 201 | {ab['before']['claim'] * 1000:.2f} | "
                      f"{ab['after']['claim'] * 1000:.2f} | "
                      f"{(po.get('claim') or {}).get('median', 0) * 1000:.2f} |")
        md += ["", "*http*: the client's round trip outside the route handler (request "
               "parsing and schema validation, the answer's write, the client); *take*: "
               "the pool's member and its liveness; *start*: the member's exec fifo "
               "opened and its init seen exec'ing (no runtime command); *save*: the "
               "user's record written (the member's record goes after the answer, as "
               "does the refill's start); *respond*: the answer built (before: with the "
               "member's record unlinked, and the refill's own work on the event loop). "
               "Before, the refill woke at the claim's first await and its spec write, "
               "shim spawn and `runc create` ran while the claimed member's fifo was "
               "waited for: most of *start*.", ""]
    for key, what in (("startpath", "start path"), ("restore", "restore"), ("app", "app"),
                      ("pools", "pools")):
        errs = (g.get(key) or {}).get("errors")
        if errs:
            md += [f"Errors ({what}): " + "; ".join(errs), ""]
    return md
