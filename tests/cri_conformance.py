#!/usr/bin/env python3
"""`make conformance`: critest (cri-tools v1.26.1) against a daemon this
script starts, and docs/conformance.md with every spec and its result.

    .venv/bin/python tests/cri_conformance.py [--focus REGEX] [--out docs/conformance.md]

critest comes from CRI_TOOLS_DIR (default: ../shared/tools/cri-tools-v1.26.1
next to the repository). There is no registry here: the images critest asks
for are stand-ins built offline from the busybox-static root filesystem of
bundles/busybox, one mirror entry per name (see IMAGES), served to the
daemon with --image-mirror. The default image (busybox:1.29-2) carries
Debian's dynamically linked busybox instead (see DEFAULT_BUSYBOX), fetched
once with `apt-get download busybox` into DEB_CACHE.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bundles"))
import archives  # noqa: E402  (bundles/archives.py)
from conftest import free_subnet  # noqa: E402  (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.environ.get("CRI_TOOLS_DIR",
                       os.path.join(os.path.dirname(ROOT), "shared", "tools", "cri-tools-v1.26.1"))
CRITEST = os.path.join(TOOLS, "critest")
DAEMON = os.path.join(ROOT, ".venv", "bin", "containerd-py")
BUSYBOX_ROOTFS = os.path.join(ROOT, "bundles", "busybox", "rootfs")
STAGING = "gcr.io/k8s-staging-cri-tools/"
E2E = "registry.k8s.io/e2e-test-images/"
# What critest runs its containers from (also the benchmark mode's image).
DEFAULT_IMAGE = E2E + "busybox:1.29-2"
# Debian's busybox package (dynamically linked; conflicts with busybox-static,
# so it is only ever unpacked, never installed) for the default image: its
# shell execs applets through /bin as the official busybox image's does,
# where busybox-static's (FEATURE_SH_STANDALONE) runs them in-process, and
# the MaskedPaths spec wants `sh -c ls` refused at the exec of a masked
# /bin/ls. Cached here so later runs need no network.
DEB_CACHE = os.environ.get("CDPY_DEB_CACHE", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "containerd-py", "debs"))
WEB_PAGE = "<html><body><h1>Welcome to nginx!</h1></body></html>\n"

# name -> (image entry, image config). Names that share an entry are tags
# of one image; distinct entries are distinct images.
IMAGES = {
    E2E + "busybox:1.29-2": ("busybox", {}),
    # As nginx: PID 1 is a process named nginx (`pidof nginx`) with "master
    # process" in its command line, and writes its pid file; the PID
    # namespace specs look for all three (see NGINX).
    E2E + "nginx:1.14-2": ("web", {"Cmd": ["nginx", "master process"]}),
    # Apache prints its command line at start; critest looks for it in the log.
    E2E + "httpd:2.4.39-4": ("httpd", {"Cmd": ["sh", "-c", "echo \"AH00094: Command line: "
                                              "'httpd -D FOREGROUND'\"; exec httpd -f -p 80 -h /www"]}),
    # As upstream's: a setuid-root program printing its effective uid (NNP).
    E2E + "nonewprivs:1.3": ("nnp", {"Entrypoint": ["/usr/local/bin/nnp"]}),
    STAGING + "hostnet-nginx-amd64:latest": (
        "hostnet-web", {"Cmd": ["httpd", "-f", "-p", "12003", "-h", "/www"]}),
    STAGING + "test-image-latest:latest": ("t-latest", {}),
    STAGING + "test-image-tag:test": ("t-tag", {}),
    STAGING + "test-image-tag:all": ("t-all", {}),
    STAGING + "test-image-digest@sha256:"
              "9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf": ("t-digest", {}),
    STAGING + "test-image-1:latest": ("t-1", {}),
    STAGING + "test-image-2:latest": ("t-2", {}),
    STAGING + "test-image-3:latest": ("t-3", {}),
    STAGING + "test-image-tags:1": ("t-tags", {}),
    STAGING + "test-image-tags:2": ("t-tags", {}),
    STAGING + "test-image-tags:3": ("t-tags", {}),
    STAGING + "test-image-user-uid:latest": ("u-uid", {"User": "1002"}),
    STAGING + "test-image-user-username:latest": ("u-name", {"User": "www-data"}),
    STAGING + "test-image-user-uid-group:latest": ("u-uid-group", {"User": "1003:1004"}),
    STAGING + "test-image-user-username-group:latest": ("u-name-group",
                                                         {"User": "www-data:1004"}),
    STAGING + "test-image-predefined-group:latest": ("u-predef", {"User": "1000"}),
}


def mirror_name(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_").replace("@", "_") + ".tar"


# Debian's busybox-static has no ipcs applet either: shared memory segments
# from /proc, in ipcs -m's columns.
IPCS = b"""#!/bin/sh
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 {printf "0x%08x %-10s %-10s %-10s %-10s %-10s\\n", $1, $2, $8, $3, $4, $7}' \\
    /proc/sysvipc/shm
"""
# The nginx stand-in: a script, so that its process is named after the file
# (comm "nginx"), which stays PID 1 (a shell would exec httpd in its place)
# and passes TERM on to httpd.
NGINX = b"""#!/bin/sh
mkdir -p /var/run && echo $$ > /var/run/nginx.pid
httpd -f -p 80 -h /www &
trap 'kill $!; exit 0' TERM INT
wait
"""
# The nonewprivs stand-in's program; installed setuid root, it reports uid 0
# unless no_new_privs stops the setuid bit at exec.
NNP_C = b"""#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\\n", (int)geteuid()); return 0; }
"""
# Debian's busybox-static has no pgrep applet; the images critest expects do.
PGREP = b"""#!/bin/sh
ps -o pid,comm | awk -v n="$1" '$2 == n {print $1; f = 1} END {exit !f}'
"""
USERS = [("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n"
                        b"user1000:x:1000:1000::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"),
         ("etc/group", b"root:x:0:\nwww-data:x:33:\ngroup1004:x:1004:\n"
                       b"predef:x:50000:user1000\nnogroup:x:65534:\n")]


def _layer(files) -> bytes:
    """A layer tar of (path, bytes[, mode]); bin/ entries executable."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data, *mode in files:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime = len(data), 1700000000
            ti.mode = mode[0] if mode else 0o755 if "bin/" in path else 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _busybox_layer(busybox: str | None = None) -> bytes:
    """The busybox rootfs with its applets as hard links to bin/busybox, as
    in the busybox image: masking one applet (maskedPaths: /bin/ls) then
    hides that file only, where a symlink would take runc's mount through
    to the busybox binary every applet shares. With busybox (the path of
    another busybox binary), that one replaces the static one, its applets
    the static one's, and the shared libraries it loads come along."""
    applets = libs = None
    if busybox is not None:
        applets = set(subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                     check=True).stdout.split())
        libs = _shared_libraries(busybox)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out, \
            tarfile.open(fileobj=io.BytesIO(archives.dir_layer(BUSYBOX_ROOTFS))) as src:
        members = src.getmembers()
        links = [m for m in members
                 if m.issym() and m.name.startswith("bin/") and m.linkname == "busybox"]
        for m in members:
            if m in links:
                continue
            if busybox is not None and m.name == "bin/busybox":
                with open(busybox, "rb") as f:
                    data = f.read()
                m.size = len(data)
                out.addfile(m, io.BytesIO(data))
                continue
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
        names = {m.name for m in members}
        for path in libs or []:
            ti = out.gettarinfo(path, arcname=path.lstrip("/"))
            if ti.name in names:
                continue
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if ti.isreg():
                with open(path, "rb") as f:
                    out.addfile(ti, f)
            else:
                out.addfile(ti)
        for m in links:  # after their target
            if applets is not None and m.name[len("bin/"):] not in applets:
                continue
            m.type, m.linkname = tarfile.LNKTYPE, "bin/busybox"
            out.addfile(m)
    return buf.getvalue()


def _shared_libraries(binary: str) -> list[str]:
    """What the dynamic loader maps for binary on this host (its libc and
    loader included): each file under the path it is asked for by, with
    its directories resolved (the image's /lib* are the host's layout,
    bundles/build.py, so those paths resolve the same inside it), then
    what that is a symlink to; and the directories above them, first."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    files = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            path = os.path.join(os.path.realpath(os.path.dirname(m.group(1))),
                                os.path.basename(m.group(1)))
            files |= {path, os.path.realpath(path)}
    dirs = {d for f in files for d in _parents(f)}
    return sorted(dirs) + sorted(files)


def _parents(path: str) -> list[str]:
    out = []
    while (path := os.path.dirname(path)) != "/":
        out.append(path)
    return out


def default_busybox(into: str) -> str:
    """Debian's busybox binary, unpacked under into from the package in
    DEB_CACHE, downloaded there first if absent; RuntimeError (saying how
    to provide it offline) if it cannot be had."""
    os.makedirs(DEB_CACHE, exist_ok=True)
    debs = sorted(f for f in os.listdir(DEB_CACHE) if f.startswith("busybox_") and f.endswith(".deb"))
    if not debs:
        try:
            r = subprocess.run(["apt-get", "download", "busybox"], cwd=DEB_CACHE,
                               capture_output=True, text=True)
        except OSError as e:  # not a Debian host
            r = subprocess.CompletedProcess(e.filename, 1, "", str(e))
        debs = sorted(f for f in os.listdir(DEB_CACHE)
                      if f.startswith("busybox_") and f.endswith(".deb"))
        if r.returncode != 0 or not debs:
            raise RuntimeError(
                "the default stand-in image needs Debian's busybox package (its shell execs "
                f"applets through /bin), and `apt-get download busybox` failed: "
                f"{(r.stderr or r.stdout).strip()[-500:]}; offline, put its busybox_*.deb "
                f"into {DEB_CACHE} (or CDPY_DEB_CACHE)")
    subprocess.run(["dpkg-deb", "-x", os.path.join(DEB_CACHE, debs[-1]), into], check=True)
    return os.path.join(into, "bin", "busybox")


def _nnp_binary() -> bytes | None:
    """The nonewprivs program, compiled static (gcc and libc6-dev are
    setup dependencies for the native shim already); None without a C
    compiler, and the NoNewPrivs specs then fail saying so."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "nnp.c"), "wb") as f:
            f.write(NNP_C)
        r = subprocess.run([cc, "-static", "-O2", "-o", os.path.join(d, "nnp"),
                            os.path.join(d, "nnp.c")], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"nonewprivs stand-in not built: {r.stderr.strip()}", file=sys.stderr)
            return None
        with open(os.path.join(d, "nnp"), "rb") as f:
            return f.read()


def build_mirror(mirror: str) -> None:
    """One docker-archive per name, all on the busybox layer; the entries
    differ in a small top layer of their own (so distinct entries are
    distinct images, and names sharing an entry share one image)."""
    os.makedirs(mirror, exist_ok=True)
    base = _busybox_layer()
    with tempfile.TemporaryDirectory() as d:
        default_base = _busybox_layer(default_busybox(d))
    nnp = _nnp_binary()
    by_entry: dict[str, list[str]] = {}
    for name, (entry, _) in IMAGES.items():
        by_entry.setdefault(entry, []).append(name)
    for entry, names in by_entry.items():
        config = IMAGES[names[0]][1]
        files = [("bin/pgrep", PGREP), ("bin/ipcs", IPCS),
                 ("stand-in-for", entry.encode() + b"\n")]
        if "web" in entry or entry == "httpd":
            files.append(("www/index.html", WEB_PAGE.encode()))
        if entry == "web":
            files.append(("usr/sbin/nginx", NGINX))
        if entry == "nnp" and nnp is not None:
            files.append(("usr/local/bin/nnp", nnp, 0o4755))
        if entry.startswith("u-"):
            files += USERS
        top = _layer(files)
        tags = [n for n in names if "@" not in n]
        cfg = {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], **config}
        for name in names:
            archives.docker_archive(os.path.join(mirror, mirror_name(name)),
                                    [default_base if entry == "busybox" else base, top],
                                    cfg, tags)


def write_images_file(path: str) -> str:
    """critest's --test-images-file: the two images it lets a runner choose."""
    with open(path, "w") as f:
        f.write(f"defaultTestContainerImage: {DEFAULT_IMAGE}\n"
                f"webServerTestImage: {E2E}nginx:1.14-2\n")
    return path


@contextlib.contextmanager
def cri_daemon(work: str, mirror: str):
    """A daemon on private dirs under work, its CRI on work/s/cri.sock and
    PullImage served from mirror; yields the socket's path. On the way out
    it removes what the callers left (pods keep their pinned namespaces and
    containers their overlays after the daemon stops) and stops the
    daemon; the state dir goes, its log (work/daemon.log) stays."""
    state = os.path.join(work, "s")
    os.makedirs(state)
    sock = os.path.join(state, "cri.sock")
    log = open(os.path.join(work, "daemon.log"), "w")
    # Pods get addresses on the default network: a subnet no other daemon
    # of this host has (the built-in one steps aside only from a bridge that
    # is up when the daemon starts; another daemon's comes and goes with its
    # pods, and two bridges on one subnet lose each other's traffic).
    daemon = subprocess.Popen([DAEMON, "daemon", "--listen", "unix:" + os.path.join(state, "api.sock"),
                               "--state-dir", state, "--image-mirror", mirror,
                               "--default-subnet", free_subnet()],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(300):
            if os.path.exists(sock) or daemon.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(sock):
            raise RuntimeError("the daemon's CRI socket did not appear; its log ends: "
                               + open(log.name).read()[-3000:])
        yield sock
    finally:
        crictl = os.path.join(TOOLS, "crictl")
        if os.access(crictl, os.X_OK) and os.path.exists(sock):
            subprocess.run([crictl, "--runtime-endpoint", "unix://" + sock, "rmp", "-f", "-a"],
                           capture_output=True, timeout=300)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def run(args) -> int:
    if not os.access(CRITEST, os.X_OK):
        print(f"critest not found at {CRITEST} (set CRI_TOOLS_DIR)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="cdpy-critest-")
    mirror = os.path.join(work, "mirror")
    try:
        build_mirror(mirror)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"stand-in images: {len(os.listdir(mirror))} archives in {mirror}", flush=True)
    images_file = write_images_file(os.path.join(work, "test-images.yaml"))
    report = os.path.join(work, "report.json")
    try:
        with cri_daemon(work, mirror) as sock:
            cmd = [CRITEST, "--runtime-endpoint", "unix://" + sock,
                   "--image-endpoint", "unix://" + sock, "--test-images-file", images_file,
                   "--ginkgo.focus", args.focus, "--ginkgo.no-color",
                   "--ginkgo.json-report", report]
            if args.skip:
                cmd += ["--ginkgo.skip", args.skip]
            print("running:", " ".join(cmd), flush=True)
            with open(os.path.join(work, "critest.log"), "w") as out:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=work).returncode
            print(f"critest exited {rc}; its output: {out.name}", flush=True)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    write_doc(report, args.out, args.focus)
    # The logs stay for a look at a failure; the daemon's dirs go.
    shutil.rmtree(mirror, ignore_errors=True)
    print(f"wrote {args.out} (logs in {work})")
    return 0


# Why a spec cannot pass here, by a word of its name; filled in from what
# the failures say, never to hide one.
KNOWN = {
    "with digest": "pinned to upstream's manifest digest sha256:9700f9a2...; an archive "
                   "built offline cannot have that digest",
}


def _started(suites: list) -> str:
    """When critest started (its report says), so that a doc regenerated
    from a report keeps the run's own time."""
    stamp = (suites[0].get("StartTime") or "")[:16] if suites else ""
    try:
        return datetime.datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M}"


def write_doc(report_path: str, out: str, focus: str) -> None:
    with open(report_path) as f:
        suites = json.load(f)
    rows, benchmarks = [], []
    for suite in suites:
        for spec in suite.get("SpecReports", []):
            if spec.get("LeafNodeType") != "It":
                continue
            name = " ".join(spec.get("ContainerHierarchyTexts", []) + [spec["LeafNodeText"]])
            state = spec["State"]
            if state == "skipped":
                # Not selected by the focus; the benchmark specs only run
                # with --benchmark.
                if "benchmark" in name.lower():
                    benchmarks.append(name)
                continue
            why = ""
            if state not in ("passed", "pending"):
                msg = (spec.get("Failure") or {}).get("Message", "").strip().splitlines()
                why = next((v for k, v in KNOWN.items() if k in name), "")
                first = msg[0] if msg else ""
                why = (why + ": " if why else "") + first[:200]
            rows.append((name, state, why))
    conf = [r for r in rows if "[Conformance]" in r[0]]
    rest = [r for r in rows if "[Conformance]" not in r[0]]

    def table(title, part):
        passed = sum(1 for r in part if r[1] == "passed")
        lines = ["", f"## {title}: {passed} of {len(part)} pass", "",
                 "| spec | result | why not |", "|---|---|---|"]
        for name, state, why in sorted(part):
            lines.append(f"| {name.replace('|', '/')} | {state} | {why.replace('|', '/')} |")
        return lines

    lines = [
        "# critest",
        "",
        f"`make conformance` ran critest 1.26.1 (`--ginkgo.focus={focus}`) against a daemon "
        f"it started, with stand-in images built offline from busybox-static and, for the "
        f"default image, Debian's busybox (whose shell execs applets through /bin, as "
        f"upstream's does; tests/cri_conformance.py). Run: {_started(suites)} UTC.",
    ]
    if conf:
        lines += table("Conformance specs", conf)
    if rest:
        lines += table("The other specs", rest)
    if benchmarks:
        lines += ["", f"## Benchmark specs: {len(benchmarks)}", "",
                  "These run only in critest's `--benchmark` mode: `bench/run.py --only cri` "
                  "(part of `make bench`) runs them against containerd-py and containerd 1.6's "
                  "CRI; docs/benchmarks.md, \"CRI: critest --benchmark\", has the figures.", ""]
        lines += [f"- {name}" for name in sorted(benchmarks)]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--focus", default="Conformance")
    p.add_argument("--skip", default="")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "conformance.md"))
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
