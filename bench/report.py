"""Turn docs/benchmarks.json into docs/benchmarks.md and docs/bench-*.png.

    .venv/bin/python bench/report.py [docs/benchmarks.json] [docs]
"""

from __future__ import annotations

import json
import os
import sys

LABELS = {"runc": "bare runc", "crun": "bare crun", "containerd": "containerd + ctr",
          "podman": "podman", "containerd-py/runc": "containerd-py (runc)",
          "containerd-py/crun": "containerd-py (crun)", "containerd-py": "containerd-py"}
ORDER = ["containerd-py/runc", "runc", "containerd", "podman", "containerd-py/crun", "crun"]
COLORS = {"containerd-py/runc": "#1f77b4", "runc": "#7f7f7f", "containerd": "#2ca02c",
          "podman": "#9467bd", "containerd-py/crun": "#aec7e8", "crun": "#c7c7c7",
          "containerd-py": "#1f77b4"}


def ms(v, digits=0):
    return "—" if v is None else f"{v * 1000:.{digits}f}"


def secs(v):
    return "—" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


def ratio(a, b):
    return "—" if not a or not b else f"{a / b:.2f}×"


def err_cell(s):
    e = (s or {}).get("error")
    return f"not available: {e}" if e else "not available"


def _keys(d):
    return [k for k in ORDER if k in d] + [k for k in d if k not in ORDER]


# -- plots ------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_start(res, path):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, mode, title in ((axes[0], "running", "request → running (sleep)"),
                            (axes[1], "exited", "request → exited (/bin/true)")):
        keys = [k for k in _keys(res) if res[k][mode]["n"]]
        med = [res[k][mode]["median"] * 1000 for k in keys]
        lo = [m - res[k][mode]["min"] * 1000 for k, m in zip(keys, med)]
        hi = [res[k][mode]["max"] * 1000 - m for k, m in zip(keys, med)]
        ax.bar(range(len(keys)), med, yerr=[lo, hi], capsize=4,
               color=[COLORS.get(k, "#888") for k in keys])
        ax.set_xticks(range(len(keys)), [LABELS.get(k, k) for k in keys], rotation=20,
                      ha="right")
        ax.set_ylabel("ms (median, min–max)")
        ax.set_title(title)
        for i, m in enumerate(med):
            ax.text(i, m / 2, f"{m:.0f}", ha="center", va="center", fontsize=9,
                    color="white", fontweight="bold")
    fig.suptitle("Start latency of a trivial container")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(res, path):
    plt = _plt()
    keys = [k for k in _keys(res) if any(v["n"] for v in res[k].values())]
    sizes = sorted({n for k in keys for n in res[k]}, key=int)
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / max(len(keys), 1)
    for j, k in enumerate(keys):
        xs, ys, lo, hi = [], [], [], []
        for i, n in enumerate(sizes):
            s = res[k].get(n)
            if s and s["n"]:
                xs.append(i + j * w)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
        ax.bar(xs, ys, w, yerr=[lo, hi], capsize=3, label=LABELS.get(k, k),
               color=COLORS.get(k, "#888"))
    ax.set_xticks([i + w * (len(keys) - 1) / 2 for i in range(len(sizes))],
                  [f"{n} concurrent" for n in sizes])
    ax.set_ylabel("containers started per second")
    ax.set_title("Throughput: N containers started concurrently")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(scale, path):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sup = [(k, v["supervisor"]) for k, v in scale.items() if v.get("supervisor")]
    ax = axes[0]
    names = [f"{v['process']}\n({LABELS.get(k, k)})" for k, v in sup]
    vals = [v["pss_kb_median"] / 1024 for _, v in sup]
    ax.bar(range(len(sup)), vals, color=[COLORS.get(k, "#888") for k, _ in sup])
    ax.set_xticks(range(len(sup)), names, fontsize=8)
    ax.set_ylabel("PSS per container, MiB (median)")
    ax.set_title("Per-container supervisor process")
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax = axes[1]
    for k, v in scale.items():
        pts = sorted((int(n), m["pss"] / 1024) for n, m in v.get("daemon", {}).items())
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=LABELS.get(k, k),
                    color=COLORS.get(k, "#888"))
    ax.set_xlabel("running containers")
    ax.set_ylabel("daemon PSS, MiB")
    ax.set_title("Daemon memory vs containers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_api(api, path):
    plt = _plt()
    levels = sorted(api, key=int)
    routes = list(next(iter(api.values())).keys()) if api else []
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / max(len(routes), 1)
    for j, r in enumerate(routes):
        med = [api[n][r]["median"] * 1000 for n in levels]
        p95 = [api[n][r]["p95"] * 1000 for n in levels]
        xs = [i + j * w for i in range(len(levels))]
        ax.bar(xs, med, w, label=f"{r} median")
        ax.scatter(xs, p95, marker="_", s=200, color="k", zorder=3,
                   label="p95" if j == 0 else None)
    ax.set_xticks([i + w * (len(routes) - 1) / 2 for i in range(len(levels))],
                  [f"{n} containers" for n in levels])
    ax.set_ylabel("ms")
    ax.set_title("containerd-py API latency at scale")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ready(ready, path):
    plt = _plt()
    sizes = sorted(ready, key=int)
    series = [("cold start", lambda r: r["cold"]["pong"]),
              ("restore (eager)", lambda r: r["eager"]["pong"]),
              ("restore (lazy)", lambda r: r["lazy"]["pong"]),
              ("podman cold", lambda r: (r.get("podman") or {}).get("cold_ready")),
              ("podman restore (CLI)", lambda r: (r.get("podman") or {}).get("restore"))]
    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.8 / len(series)
    for j, (name, get) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for i, mb in enumerate(sizes):
            s = get(ready[mb])
            if s and s.get("n"):
                xs.append(i + j * w)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
        if xs:
            ax.bar(xs, ys, w, yerr=[lo, hi], capsize=3, label=name)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(sizes))],
                  [f"APP_MEMORY_MB={mb}" for mb in sizes])
    ax.set_ylabel("seconds to ready (median, min–max)")
    ax.set_title("Slow-starting app: cold start vs CRIU restore")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- markdown ---------------------------------------------------------------------

# Which figures each section of benchmarks.md is made from: a run of some
# figures (`bench/run.py --only ...`) replaces only the sections made from
# them and keeps the others as they are in the file.
CORE = {"start", "throughput", "scale", "ready"}
SECTIONS = {"headline": CORE | {"cri"}, "goals": {"goals"}, "reading": CORE, "setup": CORE,
            "start": {"start"}, "throughput": {"throughput"}, "scale": {"scale"},
            "api": {"scale"}, "ready": {"ready"}, "images": {"images"},
            "network": {"network"}, "migrate": {"migrate"}, "load": {"load"}, "cri": {"cri"},
            "daemon-log": CORE}
# Figures whose plots go with them (docs/bench-NAME.png).
PLOTS = {"start": ["start"], "throughput": ["throughput"], "scale": ["memory", "api"],
         "ready": ["ready"], "goals": ["startpath"]}


def markers(name: str) -> tuple[str, str]:
    """The comment lines around a section (the figure modules with a
    standalone runner have their own)."""
    mod = {"images": "images", "migrate": "migrate", "load": "load", "network": "network",
           "cri": "cri"}.get(name)
    if mod:
        m = __import__(mod)
        return m.BEGIN, m.END
    return f"<!-- {name}: begin -->", f"<!-- {name}: end -->"


def write(results: dict, docs: str, only: set | None = None) -> None:
    """docs/benchmarks.md from results. With `only` (the figures of a partial
    run, results holding the previous figures too), the sections made from
    those figures replace theirs in the existing file, and the rest of the
    file stays; the plots of other figures are not rewritten either."""
    md_path = os.path.join(docs, "benchmarks.md")
    if only is not None and os.path.exists(md_path):
        import tempfile
        import shutil
        from common import replace_section
        with tempfile.TemporaryDirectory() as tmp:
            write(results, tmp)
            with open(os.path.join(tmp, "benchmarks.md")) as f:
                new = f.read()
            for fig in only:
                for name in PLOTS.get(fig, []):
                    src = os.path.join(tmp, f"bench-{name}.png")
                    if os.path.exists(src):
                        shutil.copy(src, os.path.join(docs, f"bench-{name}.png"))
        for name, figs in SECTIONS.items():
            b, e = markers(name)
            if figs & only and b in new:
                inner = new.split(b, 1)[1].split(e, 1)[0].strip("\n").split("\n")
                replace_section(md_path, b, e, inner, before=markers("daemon-log")[0])
        return
    os.makedirs(docs, exist_ok=True)
    md = []
    add = md.append

    def begin(name):
        add(markers(name)[0])

    def end(name):
        add(markers(name)[1])
        add("")
    q = results.get("quick")
    start = results.get("start") or {}
    tp = results.get("throughput") or {}
    scale = results.get("scale") or {}
    ready = results.get("ready") or {}
    plots = {}

    def plot(name, fn, *args):
        path = os.path.join(docs, f"bench-{name}.png")
        try:
            fn(*args, path)
            plots[name] = os.path.basename(path)
        except Exception as e:  # noqa: BLE001
            print(f"report: plot {name}: {e}", file=sys.stderr)

    if start and "error" not in start:
        plot("start", plot_start, start)
    if tp and "error" not in tp:
        plot("throughput", plot_throughput, tp)
    if scale and "error" not in scale:
        plot("memory", plot_memory, scale)
        api = (scale.get("containerd-py") or {}).get("api")
        if api:
            plot("api", plot_api, api)
    if ready and "error" not in ready:
        plot("ready", plot_ready, ready)

    add("# Benchmarks")
    add("")
    add("Generated by `make bench` (`bench/run.py`"
        + (" --quick: a smoke run with few iterations, not for quoting" if q else "")
        + f") on {results.get('started', '?')}, in {results.get('duration_s', '?')} s. "
        "Raw numbers: `docs/benchmarks.json`. Every comparison runs in the same invocation, "
        "interleaved (A B C … then B C … A), each daemon on private state dirs and its own "
        "socket/port, started and stopped by the benchmark. A run of some figures "
        "(`bench/run.py --only FIGURE,...`) replaces only the sections made from them "
        "(between their `<!-- NAME: begin/end -->` markers); each such section says when "
        "it ran.")
    add("")

    # ---------------------------------------------------------------- headline
    begin("headline")
    add("## Headline")
    add("")
    add("| metric | containerd-py | baseline | ratio (containerd-py / baseline) |")
    add("| --- | --- | --- | --- |")
    cpy = start.get("containerd-py/runc", {}) if "error" not in start else {}
    for mode, what in (("running", "start → running (sleep)"),
                       ("exited", "start → exited (`/bin/true`)")):
        a = (cpy.get(mode) or {}).get("median")
        for base in ("runc", "containerd", "podman"):
            b = (start.get(base, {}).get(mode) or {}).get("median")
            if a and b:
                add(f"| {what}, median | {ms(a, 1)} ms | {LABELS[base]}: {ms(b, 1)} ms "
                    f"| **{ratio(a, b)}** |")
    if tp and "error" not in tp:
        for n in sorted({n for v in tp.values() for n in v}, key=int):
            a = (tp.get("containerd-py/runc", {}).get(n) or {}).get("median")
            for base in ("runc", "containerd", "podman"):
                b = (tp.get(base, {}).get(n) or {}).get("median")
                if a and b:
                    add(f"| throughput, {n} concurrent | {a:.1f}/s | {LABELS[base]}: "
                        f"{b:.1f}/s | **{ratio(a, b)}** |")
    if scale and "error" not in scale:
        s_cpy = (scale.get("containerd-py") or {}).get("supervisor")
        for base in ("containerd", "podman"):
            s_b = (scale.get(base) or {}).get("supervisor")
            if s_cpy and s_b:
                add(f"| per-container supervisor PSS | {s_cpy['pss_kb_median']} KiB "
                    f"(`{s_cpy['process']}`) | {s_b['pss_kb_median']} KiB (`{s_b['process']}`)"
                    f" | **{ratio(s_cpy['pss_kb_median'], s_b['pss_kb_median'])}** |")
        g_cpy = _growth(scale.get("containerd-py"))
        g_ctd = _growth(scale.get("containerd"))
        if g_cpy and g_ctd:
            add(f"| daemon PSS growth per container (0→{g_cpy[1]}) | {g_cpy[0]:.1f} KiB | "
                f"containerd: {g_ctd[0]:.1f} KiB | **{ratio(g_cpy[0], g_ctd[0])}** |")
    if ready and "error" not in ready:
        for mb, r in sorted(ready.items(), key=lambda x: int(x[0])):
            cold = r["cold"]["pong"].get("median")
            for mode in ("eager", "lazy"):
                rest = r[mode]["pong"].get("median")
                if cold and rest:
                    add(f"| time to ready, {mb} MiB app: restore ({mode}) vs cold start | "
                        f"{secs(rest)} | cold: {secs(cold)} | **{ratio(rest, cold)}** "
                        f"({cold / rest:.1f}× faster) |")
    import cri as cri_bench
    md.extend(cri_bench.headline_rows(results.get("cri") or {}))
    add("")
    add("Ratios below 1× mean containerd-py is faster (or smaller); above 1×, slower "
        "(or larger). Medians; see the sections below for spread.")
    end("headline")
    import goals
    begin("goals")
    md.extend(goals.markdown(results, docs))
    end("goals")
    notes = reading(results)
    begin("reading")
    if notes:
        add("### Reading the numbers")
        add("")
        md.extend(f"- {n}" for n in notes)
    end("reading")

    # ---------------------------------------------------------------- setup
    begin("setup")
    add("## Setup")
    add("")
    v = results.get("versions", {})
    add("| component | version |")
    add("| --- | --- |")
    for k, val in v.items():
        add(f"| {k} | {val} |")
    add("")
    add("Availability of each system on this host:")
    add("")
    for k, val in (results.get("availability") or {}).items():
        add(f"- **{LABELS.get(k, k)}**: {val}")
    if results.get("install"):
        add(f"- Debian packages: {', '.join(f'{k} {v}' for k, v in results['install'].items())}")
    add("")
    cfg = results.get("config", {})
    add("How each system is driven:")
    add("")
    add("- **containerd-py**: the daemon (`containerd-py daemon --listen 127.0.0.1:PORT "
        "--state-dir D --criu /opt/containerd-py/bin/criu`), via `containerd_py.client`. "
        "*running* = `POST /containers/{id}` returned (it returns once the container runs); "
        "*exited* = that POST, then `GET /containers/{id}/wait`. The `crun` rows ask for "
        "`\"runtime\": \"crun\"` per container.")
    add("- **bare runc / crun**: `runc --root R run -d --bundle B ID` (running) and "
        "`runc --root R run --bundle B ID` (exited), on the same bundle containerd-py uses "
        "(shared read-only busybox rootfs, `runc spec`-like config).")
    add("- **containerd + ctr**: a private `containerd --config` (own root, state and "
        "socket; CRI and unused snapshotters disabled); `ctr run -d --null-io --read-only "
        "--rootfs R ID /bin/sleep …` and `ctr run --read-only --rootfs R ID /bin/true`.")
    add("- **podman**: `podman --root/--runroot/--tmpdir (private) --runtime runc "
        "--cgroup-manager cgroupfs --events-backend file run [-d] --network none --read-only "
        "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --rootfs R …` (the ulimits are "
        "needed on this host).")
    add("- Removal is never timed. CLI baselines pay a process start per request "
        "(that is how they are used); containerd-py pays an HTTP round trip.")
    add("")

    # ---------------------------------------------------------------- fig 1
    end("setup")
    begin("start")
    add("## 1. Start latency")
    add("")
    if not start or "error" in start:
        add(f"Not available: {start.get('error', 'not run')}")
    else:
        add(f"{cfg.get('start_rounds')} interleaved rounds after {cfg.get('start_warmup')} "
            "warm-up round(s); milliseconds.")
        add("")
        add("| system | → running: median | min–max | → exited: median | min–max |"
            " overhead vs bare runc (running / exited) |")
        add("| --- | --- | --- | --- | --- | --- |")
        base = start.get("runc", {})
        for k in _keys(start):
            cells = []
            for mode in ("running", "exited"):
                s = start[k][mode]
                if s["n"]:
                    cells += [ms(s["median"], 1), f"{ms(s['min'], 1)}–{ms(s['max'], 1)}"]
                else:
                    cells += [err_cell(s), ""]
            ov = " / ".join(ratio(start[k][m]["median"], (base.get(m) or {}).get("median"))
                            for m in ("running", "exited"))
            add(f"| {LABELS.get(k, k)} | " + " | ".join(cells) + f" | {ov} |")
        if "start" in plots:
            add("")
            add(f"![start latency]({plots['start']})")
    add("")

    # ---------------------------------------------------------------- fig 2
    end("start")
    begin("throughput")
    add("## 2. Throughput")
    add("")
    if not tp or "error" in tp:
        add(f"Not available: {tp.get('error', 'not run')}")
    else:
        add("N containers (sleep) started at once from N threads (containerd-py: N concurrent "
            "POSTs; the others: N concurrent CLI processes); containers running per second "
            "of wall time until the last start returned. Repetitions: "
            + ", ".join(f"{n}: {r}" for n, r in (cfg.get("tp_reps") or {}).items()) + ".")
        add("")
        sizes = sorted({n for v in tp.values() for n in v}, key=int)
        add("| system | " + " | ".join(f"{n} concurrent: median (min–max) /s" for n in sizes)
            + " |")
        add("| --- | " + " | ".join("---" for _ in sizes) + " |")
        for k in _keys(tp):
            cells = []
            for n in sizes:
                s = tp[k].get(n) or {}
                if s.get("n"):
                    c = f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})"
                    if s.get("error"):
                        c += f"; {s['error']}"
                    cells.append(c)
                else:
                    cells.append(err_cell(s))
            add(f"| {LABELS.get(k, k)} | " + " | ".join(cells) + " |")
        add("")
        add("CPU time per container started (busy jiffies of the whole machine from "
            "`/proc/stat`, and of the daemon process itself, over the start phase; "
            "median over repetitions; ms):")
        add("")
        add("| system | " + " | ".join(f"{n}: machine / daemon" for n in sizes) + " |")
        add("| --- | " + " | ".join("---" for _ in sizes) + " |")
        for k in _keys(tp):
            cells = []
            for n in sizes:
                s = tp[k].get(n) or {}
                c = s.get("cpu_s_per_container")
                dc = s.get("daemon_cpu_s_per_container")
                cells.append("—" if c is None else f"{c * 1000:.0f} / "
                             + ("—" if dc is None else f"{dc * 1000:.0f}"))
            add(f"| {LABELS.get(k, k)} | " + " | ".join(cells) + " |")
        if "throughput" in plots:
            add("")
            add(f"![throughput]({plots['throughput']})")
    add("")

    # ---------------------------------------------------------------- fig 3
    end("throughput")
    begin("scale")
    add("## 3. Memory per running container")
    add("")
    if not scale or "error" in scale:
        add(f"Not available: {scale.get('error', 'not run')}")
    else:
        add(f"Per-container supervisor: PSS (from `/proc/PID/smaps_rollup`) of each "
            f"container's supervising process, with {cfg.get('pss_level')} sleep containers "
            "running (PSS splits shared pages among the processes sharing them).")
        add("")
        add("| system | process | containers | PSS median | PSS mean | RSS median |")
        add("| --- | --- | --- | --- | --- | --- |")
        for k, v in scale.items():
            s = v.get("supervisor")
            if s:
                add(f"| {LABELS.get(k, k)} | `{s['process']}` | {s['n']} | "
                    f"{s['pss_kb_median']} KiB | {s['pss_kb_mean']:.0f} KiB | "
                    f"{s['rss_kb_median']} KiB |")
            else:
                add(f"| {LABELS.get(k, k)} | | | not available: "
                    f"{'; '.join(v.get('errors') or ['not measured'])} | | |")
        add("")
        add("Daemon memory as containers are added (a fresh daemon for this figure; "
            "the containers are sleep containers started 8 at a time):")
        add("")
        add("| daemon | containers | RSS | PSS | PSS growth per container since 0 | fill time |")
        add("| --- | --- | --- | --- | --- | --- |")
        for k, v in scale.items():
            dd = v.get("daemon") or {}
            base_pss = (dd.get("0") or {}).get("pss")
            for n, m in sorted(dd.items(), key=lambda x: int(x[0])):
                g = f"{(m['pss'] - base_pss) / int(n):.1f} KiB" if base_pss and int(n) else ""
                add(f"| {LABELS.get(k, k)} | {n} | {m['rss'] / 1024:.1f} MiB | "
                    f"{m['pss'] / 1024:.1f} MiB | {g} | {m['fill_s']:.1f} s |")
            for e in v.get("errors") or []:
                if dd:
                    add(f"| {LABELS.get(k, k)} | error | {e} | | | |")
        if "memory" in plots:
            add("")
            add(f"![memory]({plots['memory']})")
    add("")

    # ---------------------------------------------------------------- fig 4
    end("scale")
    begin("api")
    add("## 4. API latency at scale")
    add("")
    api = (scale.get("containerd-py") or {}).get("api") if isinstance(scale, dict) else None
    if not api:
        add("Not available: " + "; ".join((scale.get("containerd-py") or {}).get("errors")
                                          or ["not run"]))
    else:
        add(f"{cfg.get('api_k')} requests of each route, alternating, one connection per "
            "request (as `containerd_py.client` does), on the daemon of figure 3; ms.")
        add("")
        add("| containers | route | median | p95 | max |")
        add("| --- | --- | --- | --- | --- |")
        for n, routes in sorted(api.items(), key=lambda x: int(x[0])):
            for r, s in routes.items():
                add(f"| {n} | `{r}` | {ms(s['median'], 2)} | {ms(s['p95'], 2)} | "
                    f"{ms(s['max'], 2)} |")
        capi = (scale.get("containerd") or {}).get("api")
        if capi:
            add("")
            add("For context, the `ctr` CLI against containerd with the same numbers of "
                "containers (each call is a new process plus a gRPC call, so this is not "
                "the daemon's latency alone):")
            add("")
            add("| containers | command | median | p95 |")
            add("| --- | --- | --- | --- |")
            for n, routes in sorted(capi.items(), key=lambda x: int(x[0])):
                for r, s in routes.items():
                    add(f"| {n} | `{r}` | {ms(s['median'], 1)} | {ms(s['p95'], 1)} |")
        if "api" in plots:
            add("")
            add(f"![api latency]({plots['api']})")
    add("")

    # ---------------------------------------------------------------- fig 5
    end("api")
    begin("ready")
    add("## 5. Time to ready: cold start vs CRIU restore")
    add("")
    if not ready or "error" in ready:
        add(f"Not available: {ready.get('error', 'not run')}")
    else:
        add("The slow-starting Python app (`bundles/pyapp`, `APP_MEMORY_MB` of touched "
            "memory). *ready* = the request was sent → the app answered a line written to "
            "its stdin (`pong …` in `GET /containers/{id}/logs`, timed by the shim's log "
            "timestamp). The stdin line goes through the shim's `stdin` control request "
            "(docs/shim.md), which keeps the benchmark's client stdlib-only (the API's attach "
            "is a websocket). Cold: `POST /containers/{id}` "
            "with the bundle; the last cold container is checkpointed with "
            "`POST /containers/{id}/checkpoint/{name}` `{\"exit\": true}`; restore: "
            "`POST /containers/{id}` with `{\"bundlePath\": B, \"checkpoint\": NAME}` "
            "(`\"lazy\": true` for lazy). "
            f"{cfg.get('ready_reps')} repetitions each.")
        add("")
        add("| app memory | cold: API returned | cold: `ready` logged | cold: ping answered |"
            " checkpoint (dump+exit), median | restore eager: API / ping | restore lazy: API / ping |"
            " speed-up (cold / eager, cold / lazy) |")
        add("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for mb, r in sorted(ready.items(), key=lambda x: int(x[0])):
            def pair(m):
                s = r[m]
                if s["pong"].get("n"):
                    return f"{secs(s['api']['median'])} / {secs(s['pong']['median'])}"
                return err_cell(s["pong"])
            cold = r["cold"]["pong"].get("median")
            sp = ", ".join(f"{cold / r[m]['pong']['median']:.1f}×"
                           if cold and r[m]["pong"].get("median") else "—"
                           for m in ("eager", "lazy"))
            cp = secs(r["checkpoint"]["median"]) if r["checkpoint"].get("n") \
                else err_cell(r["checkpoint"])
            c = r["cold"]
            if c["pong"].get("n"):
                add(f"| {mb} MiB | {secs(c['api']['median'])} | {secs(c['ready']['median'])} |"
                    f" {secs(c['pong']['median'])} | {cp} | {pair('eager')} | {pair('lazy')} "
                    f"| {sp} |")
            else:
                add(f"| {mb} MiB | {err_cell(c['pong'])} | | | | | | |")
        if any(r.get("podman") for r in ready.values()):
            add("")
            add("podman on the same app (same rootfs copy, bind mounts and environment, "
                "`podman run -d -i`; *ready* from `ready` in its k8s-file log). Its "
                "restore is `podman container checkpoint ID` then `podman container restore "
                "ID` in place; *restore* is the CLI's duration (the app is running again "
                "when it returns).")
            add("")
            add("| app memory | podman cold → `ready` | podman checkpoint: first (of the "
                "cold-started app) | podman checkpoint: median of all | podman restore |")
            add("| --- | --- | --- | --- | --- |")
            for mb, r in sorted(ready.items(), key=lambda x: int(x[0])):
                p = r.get("podman") or {}

                def cell(s):
                    s = s or {}
                    return secs(s["median"]) if s.get("n") else err_cell(s)
                first = (p.get("checkpoint") or {}).get("values") or []
                add(f"| {mb} MiB | {cell(p.get('cold_ready'))} | "
                    f"{secs(first[0]) if first else '—'} | {cell(p.get('checkpoint'))} "
                    f"| {cell(p.get('restore'))} |")
        clones = next((x["clones"] for _, x in sorted(ready.items(), key=lambda y: int(y[0]))
                       if x.get("clones")), None)
        if clones:
            mb = next(m for m, x in ready.items() if x.get("clones") is clones)
            add("")
            add(f"Clones: N containers restored at once from one checkpoint of the {mb} MiB "
                "app, each under its own id, cgroup, shim and overlay (so none sees "
                "another's writes). *all answered* = from the first request until every "
                "clone answered its ping; *each* = one clone's request to answer.")
            add("")
            add("| clones at once | all answered (median) | each (median) | each (max) |")
            add("| --- | --- | --- | --- |")
            for n, c in sorted(clones.items(), key=lambda x: int(x[0])):
                w, e = c["wall"], c["each"]
                if w.get("n"):
                    add(f"| {n} | {secs(w['median'])} | {secs(e['median'])} | {secs(e['max'])} |")
                else:
                    add(f"| {n} | {err_cell(w)} | | |")
        if "ready" in plots:
            add("")
            add(f"![time to ready]({plots['ready']})")
    add("")
    end("ready")
    import images as images_bench
    import migrate as migrate_bench
    import load as load_bench
    import network as network_bench
    for name, lines in (("images", images_bench.report_lines), ("network", network_bench.markdown),
                        ("migrate", migrate_bench.report_lines), ("load", load_bench.report_lines),
                        ("cri", cri_bench.report_lines)):
        if results.get(name):
            begin(name)
            md.extend(lines(results[name]))
            end(name)
    dl = results.get("daemon_log")
    begin("daemon-log")
    if dl:
        add("## containerd-py daemon log")
        add("")
        add("Warnings and errors the containerd-py daemons logged during this run "
            "(container ids and work paths masked), with counts:")
        add("")
        for msg, n in dl.items():
            add(f"- {n}× `{msg.replace('`', chr(39))}`")
    end("daemon-log")
    if results.get("interrupted"):
        add(f"**This run was interrupted ({results['interrupted']}); results are partial.**")
        add("")
    with open(md_path, "w") as f:
        f.write("\n".join(md))


def reading(results) -> list[str]:
    """Plain-language notes computed from the numbers: where containerd-py is
    behind a baseline, and by how much."""
    out = []
    start = results.get("start") or {}
    tp = results.get("throughput") or {}
    scale = results.get("scale") or {}
    ready = results.get("ready") or {}
    g = lambda d, *ks: _get(d, *ks)  # noqa: E731
    for mode, what in (("running", "to running"), ("exited", "to exited")):
        a, b = g(start, "containerd-py/runc", mode, "median"), g(start, "runc", mode, "median")
        if a and b:
            out.append(f"Start {what}: containerd-py (runc) {ms(a, 1)} ms vs bare runc "
                       f"{ms(b, 1)} ms: {'+' if a >= b else ''}{ms(a - b, 1)} ms "
                       f"({ratio(a, b)}). The difference is the daemon's own path: an HTTP "
                       "request, forking the shim, which runs runc and reads its pid file, "
                       "persisting the record and emitting the event"
                       + ("; for `/bin/true` also the exit's trip back (shim reaps it, "
                          "notifies the daemon over its socket, `GET /wait` returns: a few "
                          "ms). containerd-py always starts detached (`runc run --detach` "
                          "under the shim), while bare `runc run` in the foreground just "
                          "waits for its child, which on this host is cheaper than `run -d`"
                          + (f" ({ms(g(start, 'runc', 'exited', 'median'), 1)} vs "
                             f"{ms(g(start, 'runc', 'running', 'median'), 1)} ms)"
                             if g(start, 'runc', 'running', 'median') else "")
                          + "." if mode == "exited" else "."))
    for k in ("crun", "containerd-py/crun"):
        e = g(start, k, "running", "error")
        if e and not g(start, k, "running", "n"):
            out.append(f"{LABELS[k]} is not available on this host: {e}")
    for n in sorted({n for v in tp.values() if isinstance(v, dict) for n in v}, key=int):
        a, b = g(tp, "containerd-py/runc", n, "median"), g(tp, "runc", n, "median")
        if a and b:
            ca = g(tp, "containerd-py/runc", n, "cpu_s_per_container")
            cb = g(tp, "runc", n, "cpu_s_per_container")
            dc = g(tp, "containerd-py/runc", n, "daemon_cpu_s_per_container")
            t = (f"Throughput at {n} concurrent: {a:.1f}/s vs bare runc {b:.1f}/s "
                 f"({ratio(a, b)}).")
            if ca and cb:
                t += (f" On 2 cores starting containers is CPU-bound: the machine spent "
                      f"{ca * 1000:.0f} ms of CPU per container under containerd-py vs "
                      f"{cb * 1000:.0f} ms for bare runc"
                      + (f", {dc * 1000:.0f} ms of it in the Python daemon" if dc else "")
                      + " (the rest is runc, the kernel and the shim).")
            out.append(t)
    c = _get(scale, "containerd-py", "api")
    if c:
        top = max(c, key=int)
        st = c[top].get("GET /state") or {}
        gt = c[top].get("GET /containers/{id}") or {}
        if st.get("median") and gt.get("median"):
            out.append(f"API at {top} containers: `GET /state` median {ms(st['median'], 1)} ms "
                       f"(p95 {ms(st['p95'], 1)}), `GET /containers/{{id}}` "
                       f"{ms(gt['median'], 2)} ms: /state serialises every record, so it "
                       "grows linearly with the number of containers.")
    for mb, r in sorted(ready.items(), key=lambda x: int(x[0])):
        cp, pcp = _get(r, "checkpoint", "median"), _get(r, "podman", "checkpoint", "median")
        pv = _get(r, "podman", "checkpoint", "values") or []
        if cp and pv:
            t = (f"Checkpoint (dump and exit) of the {mb} MiB app: containerd-py {secs(cp)} "
                 f"(median; every one is of a cold-started app) vs podman's first "
                 f"`podman container checkpoint` (also of a cold-started app) {secs(pv[0])} "
                 f"({ratio(cp, pv[0])})")
            if len(pv) > 1:
                t += (f"; podman's later checkpoints, of the app it had just restored "
                      f"(same image dir), take {secs(sorted(pv[1:])[len(pv[1:]) // 2])}, "
                      f"so podman's overall median ({secs(pcp)}) is not the like-for-like "
                      "number")
            out.append(t + ".")
        e, l_ = _get(r, "eager", "pong", "median"), _get(r, "lazy", "pong", "median")
        if e and l_ and l_ > e:
            out.append(f"Lazy restore is slower than eager for the {mb} MiB app "
                       f"({secs(l_)} vs {secs(e)}): it has a fixed cost (the lazy-pages "
                       "server, page-fault handling) that only pays off for larger images.")
        pr = _get(r, "podman", "restore", "median")
        if e and pr:
            out.append(f"Restore of the {mb} MiB app: containerd-py eager {secs(e)} to the "
                       f"first answer vs `podman container restore` {secs(pr)} (until the CLI returned)"
                       + (f"; lazy {secs(l_)} (lazy only defers page copies: memory is "
                          "faulted in from the page server as the app touches it)"
                          if l_ else "") + ".")
    return out


def _get(d, *ks):
    for k in ks:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _growth(v):
    dd = (v or {}).get("daemon") or {}
    if "0" not in dd:
        return None
    top = max((int(n) for n in dd), default=0)
    if not top:
        return None
    return (dd[str(top)]["pss"] - dd["0"]["pss"]) / top, top


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(here), "docs",
                                                               "benchmarks.json")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(here), "docs")
    with open(src) as f:
        write(json.load(f), out)
