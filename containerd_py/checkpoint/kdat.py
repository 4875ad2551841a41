"""CRIU's cache of what it probed about the kernel (`/run/criu.kdat`).

Every CRIU run first needs to know the kernel's features (pagemap scan,
vdso layout, compat tasks, ...). CRIU probes them once and keeps the
result in /run/criu.kdat, but it only writes that file on a tmpfs (so that
a reboot drops it; kerndat.c: "Can't keep kdat cache on non-tempfs"). On a
host whose /run is a plain directory of the root filesystem (some VMs and
minimal images) the cache is never written and every restore and dump
probes again: 40-100 ms of a trivial container's restore.

`prime` makes the cache as CRIU would on a tmpfs /run: `criu check` in a
private mount namespace with a tmpfs on /run, and the file it wrote copied
to the real /run. CRIU checks the cache's boot id itself when it loads it
(a stale file is removed and probed again), so a reboot is safe.
"""

import logging
import os
import shutil
import subprocess
import tempfile

log = logging.getLogger("containerd_py.checkpoint")

CACHE = "/run/criu.kdat"


def _fstype(path: str) -> str:
    """The file system type of the mount that holds `path`."""
    best, fstype = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mnt = left.split()[4]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, right.split()[0]
    return fstype


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def prime(criu: str) -> str:
    """Make sure CRIU finds its kernel cache; returns what was done (for
    the log and GET /info)."""
    run_dir = os.path.dirname(CACHE)
    if _fstype(run_dir) == "tmpfs":
        return "CRIU keeps its own cache (/run is a tmpfs)"
    try:
        if os.path.getmtime(CACHE) > _boot_time():
            return f"{CACHE} present"
    except OSError:
        pass
    unshare = shutil.which("unshare")
    if not unshare:
        return "no unshare (util-linux): CRIU probes the kernel on every run"
    with tempfile.TemporaryDirectory(prefix="cdpy-kdat-") as tmp:
        out = os.path.join(tmp, "criu.kdat")
        script = ('mount -t tmpfs -o size=1m,mode=755 cdpy-kdat /run && "$1" check '
                  '>/dev/null 2>&1; cp /run/criu.kdat "$2"')
        p = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", script,
                            "sh", criu, out], capture_output=True, text=True, timeout=60)
        if p.returncode != 0 or not os.path.exists(out):
            return f"could not make {CACHE}: {(p.stderr or p.stdout).strip()[-200:]}"
        tmp_cache = CACHE + ".cdpy"
        shutil.copyfile(out, tmp_cache)
        os.chmod(tmp_cache, 0o600)
        os.replace(tmp_cache, CACHE)
    return f"{CACHE} made for CRIU (/run is not a tmpfs)"
