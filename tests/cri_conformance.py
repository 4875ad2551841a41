#!/usr/bin/env python3
"""`make conformance`: critest (cri-tools v1.26.1) against a daemon this
script starts, and docs/conformance.md with every spec and its result.

    .venv/bin/python tests/cri_conformance.py [--focus REGEX] [--out docs/conformance.md]

critest comes from CRI_TOOLS_DIR (default: ../shared/tools/cri-tools-v1.26.1
next to the repository). There is no registry here: the images critest asks
for are stand-ins built offline from the busybox-static root filesystem of
bundles/busybox, one mirror entry per name (see IMAGES), served to the
daemon with --image-mirror.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
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


def _busybox_layer() -> bytes:
    """The busybox rootfs with its applets as hard links to bin/busybox, as
    in the busybox image: masking one applet (maskedPaths: /bin/ls) then
    hides that file only, where a symlink would take runc's mount through
    to the busybox binary every applet shares."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out, \
            tarfile.open(fileobj=io.BytesIO(archives.dir_layer(BUSYBOX_ROOTFS))) as src:
        members = src.getmembers()
        links = [m for m in members
                 if m.issym() and m.name.startswith("bin/") and m.linkname == "busybox"]
        for m in members:
            if m not in links:
                out.addfile(m, src.extractfile(m) if m.isreg() else None)
        for m in links:  # after their target
            m.type, m.linkname = tarfile.LNKTYPE, "bin/busybox"
            out.addfile(m)
    return buf.getvalue()


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
            archives.docker_archive(os.path.join(mirror, mirror_name(name)), [base, top],
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
    build_mirror(mirror)
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
    "MaskedPaths": "/bin/ls is masked (exec'ing /bin/ls is refused: permission denied; "
                   "tests/test_cri_security.py reads masked files empty), but Debian's "
                   "busybox-static shell runs its applets in-process (FEATURE_SH_STANDALONE), "
                   "so `sh -c ls` never execs /bin/ls and the spec's expected error never comes",
    "with digest": "pinned to upstream's manifest digest sha256:9700f9a2...; an archive "
                   "built offline cannot have that digest",
}


def write_doc(report_path: str, out: str, focus: str) -> None:
    with open(report_path) as f:
        suites = json.load(f)
    rows = []
    for suite in suites:
        for spec in suite.get("SpecReports", []):
            if spec.get("LeafNodeType") != "It":
                continue
            name = " ".join(spec.get("ContainerHierarchyTexts", []) + [spec["LeafNodeText"]])
            state = spec["State"]
            if state == "skipped":
                continue  # not selected by the focus
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
        f"it started, with stand-in images built offline from busybox-static "
        f"(tests/cri_conformance.py). Run: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.",
    ]
    if conf:
        lines += table("Conformance specs", conf)
    if rest:
        lines += table("The other specs", rest)
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
