"""The systems the benchmark compares, behind one small interface.

Each system runs on private state (its own --root dirs, socket or port)
under the benchmark's work dir, is started and stopped by the benchmark,
and can remove every container it made (``close``), also after a failure.

    start(cid)        request -> container running   (sleep container)
    run_true(cid)     request -> container exited    (/bin/true)
    remove(cid)       force-remove, untimed
    supervisor_pid(cid)  the per-container supervising process, if any
    daemon_pid        the long-lived daemon, if any
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import (Unavailable, alive, kill, one_line, pids_with_cmdline_under, read_pid,
                    run, unmount_all_under)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bundles"))
sys.path.insert(0, REPO)

from build import BUSYBOX_ROOTFS, pyapp_bundle, write_bundle  # noqa: E402

from containerd_py.client import APIError, Client  # noqa: E402

CRIU = "/opt/containerd-py/bin/criu"
SLEEP_ARGS = ["/bin/sleep", "100000"]
TRUE_ARGS = ["/bin/true"]
# podman refuses this host's default limits without these (see docs/benchmarks.md)
PODMAN_ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _detached(argv: list[str], env=None, timeout: float = 120) -> None:
    """Run a CLI that leaves a container behind; its output goes to a file,
    not a pipe, since the container may inherit (and hold) our stdio."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                           timeout=timeout, env=env)
        if p.returncode != 0:
            out.seek(0)
            raise Unavailable(f"`{os.path.basename(argv[0])} {' '.join(argv[1:3])} ...` exited "
                              f"{p.returncode}: {one_line(out.read().decode(errors='replace'))}")


class System:
    key = "?"
    label = "?"
    supervisor_name: str | None = None
    daemon_pid: int | None = None

    def setup(self) -> None:
        pass

    def start(self, cid: str) -> None:
        raise NotImplementedError

    def run_true(self, cid: str) -> None:
        raise NotImplementedError

    def remove(self, cid: str) -> None:
        raise NotImplementedError

    def supervisor_pid(self, cid: str) -> int | None:
        return None

    def close(self) -> None:
        pass

    def remove_many(self, cids, workers: int = 8) -> None:
        with cf.ThreadPoolExecutor(workers) as ex:
            for f in [ex.submit(self.remove, c) for c in cids]:
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - close() sweeps what is left
                    print(f"  warning: {self.key}: remove: {one_line(e)}", file=sys.stderr)


# -- the bare OCI runtimes -------------------------------------------------------

class BareRuntime(System):
    """`runc run` / `crun run` on the benchmark's bundles, with a private --root."""

    def __init__(self, name: str, work: str, bundles: dict):
        self.name = name
        self.key = f"{name}"
        self.label = f"bare {name}"
        self.path = shutil.which(name) or name
        self.root = os.path.join(work, f"{name}-root")
        self.bundles = bundles
        os.makedirs(self.root, exist_ok=True)

    def _base(self):
        return [self.path, "--root", self.root]

    def start(self, cid):
        _detached(self._base() + ["run", "-d", "--bundle", self.bundles["sleep"], cid])

    def run_true(self, cid):
        p = run(self._base() + ["run", "--bundle", self.bundles["true"], cid], check=False)
        if p.returncode != 0:
            raise Unavailable(f"`{self.name} run` exited {p.returncode}: "
                              f"{one_line(p.stderr.decode(errors='replace'))}")

    def remove(self, cid):
        run(self._base() + ["delete", "-f", cid], check=False)

    def close(self):
        p = run(self._base() + ["list", "-q"], check=False)
        for cid in p.stdout.decode().split():
            self.remove(cid)


# -- containerd + ctr ------------------------------------------------------------

# What every private containerd of the benchmarks has: its own dirs and
# sockets, and the snapshotters and tracing it never uses switched off.
CONTAINERD_UNUSED = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                     "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                     "io.containerd.tracing.processor.v1.otlp",
                     "io.containerd.internal.v1.tracing"]
CONTAINERD_BASE = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


def containerd_config(directory: str, sock: str, disabled: list[str], plugins: str) -> str:
    """A private containerd's config.toml: the base, then `plugins` (TOML)."""
    return CONTAINERD_BASE.format(
        root=os.path.join(directory, "root"), state=os.path.join(directory, "state"),
        sock=sock, disabled=", ".join(f'"{p}"' for p in disabled)) + plugins


# Only what `ctr run --rootfs` needs: no CRI, no image snapshotters.
CTR_PLUGINS = """[plugins."io.containerd.runtime.v1.linux"]
  no_shim = false
"""


class Containerd(System):
    key = "containerd"
    label = "containerd + ctr"
    supervisor_name = "containerd-shim-runc-v2"

    def __init__(self, work: str, rootfs: str):
        self.dir = os.path.join(work, "containerd")
        self.sock = os.path.join(self.dir, "c.sock")
        self.rootfs = rootfs
        self.proc: subprocess.Popen | None = None

    @property
    def daemon_pid(self):
        return self.proc.pid if self.proc else None

    def setup(self):
        if not shutil.which("containerd") or not shutil.which("ctr"):
            raise Unavailable("containerd/ctr not installed")
        os.makedirs(self.dir, exist_ok=True)
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(self.config_toml())
        self.log = open(os.path.join(self.dir, "containerd.log"), "wb")
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"containerd exited {self.proc.returncode} (see {self.log.name})")
            if run(self._ctr("version"), check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise Unavailable("containerd did not come up in 30 s")

    def config_toml(self) -> str:
        """The daemon's config (a subclass with the CRI plugin writes its own)."""
        return containerd_config(self.dir, self.sock,
                                 ["io.containerd.grpc.v1.cri", *CONTAINERD_UNUSED], CTR_PLUGINS)

    def _ctr(self, *args):
        return ["ctr", "--address", self.sock, *args]

    def start(self, cid):
        _detached(self._ctr("run", "-d", "--null-io", "--read-only", "--rootfs", self.rootfs,
                            cid, *SLEEP_ARGS))

    def run_true(self, cid):
        run(self._ctr("run", "--read-only", "--rootfs", self.rootfs, cid, *TRUE_ARGS))

    def remove(self, cid):
        run(self._ctr("task", "rm", "-f", cid), check=False)
        run(self._ctr("container", "rm", cid), check=False)

    def supervisor_pid(self, cid):
        for pid in pids_with_cmdline_under(self.sock):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0].decode()) == "containerd-shim-runc-v2" \
                    and cid.encode() in argv:
                return pid
        return None

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                tasks = run(self._ctr("task", "ls", "-q"), check=False, timeout=30).stdout.split()
                ctrs = run(self._ctr("container", "ls", "-q"), check=False,
                           timeout=30).stdout.split()
                self.remove_many([c.decode() for c in set(tasks) | set(ctrs)])
            except Exception as e:  # noqa: BLE001
                print(f"  warning: containerd cleanup: {one_line(e)}", file=sys.stderr)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # shims (and their containers) that outlived the daemon
        for pid in pids_with_cmdline_under(self.sock):
            kill(pid)
        unmount_all_under(self.dir)
        if self.proc:
            self.log.close()


# -- podman ----------------------------------------------------------------------

class Podman(System):
    key = "podman"
    label = "podman"
    supervisor_name = "conmon"

    def __init__(self, work: str, rootfs: str):
        self.dir = os.path.join(work, "podman")
        self.rootfs = rootfs
        self.env = dict(os.environ)
        # runc finds `criu` on PATH: give podman the same working CRIU as the daemon
        self.env["PATH"] = os.path.dirname(CRIU) + ":" + self.env.get("PATH", "")

    def base(self):
        return ["podman", "--root", os.path.join(self.dir, "root"),
                "--runroot", os.path.join(self.dir, "run"), "--runtime", "runc",
                "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--tmpdir", os.path.join(self.dir, "tmp")]

    def run_args(self, cid):
        return ["run", "--name", cid, "--network", "none", "--read-only", *PODMAN_ULIMITS,
                "--rootfs", self.rootfs]

    def setup(self):
        if not shutil.which("podman"):
            raise Unavailable("podman not installed")
        os.makedirs(self.dir, exist_ok=True)
        # containers.conf would also do; flags keep it visible in one place
        run(self.base() + ["info", "--format", "{{.Host.OCIRuntime.Name}}"], env=self.env)

    def start(self, cid):
        _detached(self.base() + self.run_args(cid)[:1] + ["-d"] + self.run_args(cid)[1:]
                  + SLEEP_ARGS, env=self.env)

    def run_true(self, cid):
        run(self.base() + self.run_args(cid) + TRUE_ARGS, env=self.env)

    def remove(self, cid):
        run(self.base() + ["rm", "-f", "-t", "0", cid], check=False, env=self.env)

    def supervisor_pid(self, cid):
        p = run(self.base() + ["inspect", "--format", "{{.State.ConmonPid}}", cid],
                check=False, env=self.env)
        try:
            return int(p.stdout.decode().strip())
        except ValueError:
            return None

    def close(self):
        if not os.path.isdir(self.dir):
            return
        run(self.base() + ["rm", "-a", "-f", "-t", "0"], check=False, timeout=600, env=self.env)
        for pid in pids_with_cmdline_under(self.dir):
            kill(pid)
        unmount_all_under(self.dir)


# -- containerd-py ---------------------------------------------------------------

class ContainerdPyDaemon:
    """One daemon on a private port and state dir; serves both runtimes (the
    runtime is chosen per container with the API's `runtime` option)."""

    def __init__(self, work: str, repo: str | None = None):
        # `repo`: another checkout (with its .venv) to run, for an A/B.
        self.repo = repo or REPO
        self.dir = os.path.join(work, "containerd-py")
        self.state = os.path.join(self.dir, "state")
        self.data = os.path.join(self.dir, "data")
        self.port = None
        self.proc: subprocess.Popen | None = None
        self.client: Client | None = None

    def start(self):
        from common import free_port
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        exe = os.path.join(self.repo, ".venv", "bin", "containerd-py")
        if not os.path.exists(exe) and self.repo == REPO:
            exe = shutil.which("containerd-py") or exe
        argv = [exe, "daemon", "--listen", f"127.0.0.1:{self.port}", "--state-dir", self.state,
                "--data-dir", self.data, "--runtime", "runc"]
        if os.access(CRIU, os.X_OK):
            argv += ["--criu", CRIU]
        self.log = open(os.path.join(self.dir, "daemon.log"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        self.client = Client(f"127.0.0.1:{self.port}", timeout=600)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"containerd-py daemon exited {self.proc.returncode}: "
                                  + one_line(open(self.log.name).read()[-500:]))
            try:
                self.client.request("GET", "/ping")
                return
            except OSError:
                time.sleep(0.05)
        raise Unavailable("containerd-py daemon did not answer /ping in 30 s")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def cgroup_parent(self) -> str:
        return "containerd-py-" + hashlib.sha1(os.path.abspath(self.state).encode()).hexdigest()[:8]

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                ids = [c["id"] for c in self.client.list()]
                with cf.ThreadPoolExecutor(8) as ex:
                    list(ex.map(self._force_delete, ids))
            except Exception as e:  # noqa: BLE001
                print(f"  warning: containerd-py cleanup: {one_line(e)}", file=sys.stderr)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Whatever outlived the daemon: runtime state, shims, mounts, cgroups.
        for rt in ("runc", "crun"):
            root = os.path.join(self.state, "runtime", rt)
            if os.path.isdir(root) and shutil.which(rt):
                for cid in os.listdir(root):
                    run([shutil.which(rt), "--root", root, "delete", "-f", cid], check=False)
        shims = os.path.join(self.state, "shims")
        if os.path.isdir(shims):
            for cid in os.listdir(shims):
                pid = read_pid(os.path.join(shims, cid, "shim.pid"))
                if alive(pid):
                    kill(pid)
        for pid in pids_with_cmdline_under(self.state):
            kill(pid)
        unmount_all_under(self.dir)
        parent = self.cgroup_parent()
        for ctl in os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else []:
            d = os.path.join("/sys/fs/cgroup", ctl, parent)
            if os.path.isdir(d):
                for sub in sorted((os.path.join(d, x) for x in os.listdir(d)
                                   if os.path.isdir(os.path.join(d, x))), reverse=True):
                    _rmdir(sub)
                _rmdir(d)
        if self.proc:
            self.log.close()

    def _force_delete(self, cid):
        try:
            self.client.delete(cid, force=True)
        except APIError as e:
            if e.status != 404:
                print(f"  warning: containerd-py delete {cid}: {e}", file=sys.stderr)


def _rmdir(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


class ContainerdPy(System):
    supervisor_name = "containerd-py-shim"

    def __init__(self, daemon: ContainerdPyDaemon, runtime: str, bundles: dict):
        self.d = daemon
        self.runtime = runtime
        self.key = f"containerd-py/{runtime}"
        self.label = f"containerd-py ({runtime})"
        self.bundles = bundles

    @property
    def daemon_pid(self):
        return self.d.pid

    def _create(self, cid, bundle, **opts):
        try:
            return self.d.client.create(cid, bundle, runtime=self.runtime, **opts)
        except APIError as e:
            raise Unavailable(f"POST /containers/{{id}} -> {e.status}: "
                              f"{one_line(e.body.get('error', e.body))}") from None

    def start(self, cid):
        self._create(cid, self.bundles["sleep"])

    def run_true(self, cid):
        self._create(cid, self.bundles["true"])
        res = self.d.client.wait(cid)
        if res.get("exitStatus") != 0:
            raise Unavailable(f"/bin/true exited {res.get('exitStatus')}")

    def remove(self, cid):
        try:
            self.d.client.delete(cid, force=True)
        except APIError as e:
            if e.status != 404:
                raise

    def supervisor_pid(self, cid):
        return read_pid(os.path.join(self.d.state, "shims", cid, "shim.pid"))


def make_bundles(work: str) -> dict:
    """Bundles shared by containerd-py and the bare runtimes (the busybox
    rootfs, read-only), and a private copy of the rootfs for ctr/podman,
    which may write into the rootfs they are given (podman adds /etc/mtab)."""
    b = {"sleep": str(write_bundle(os.path.join(work, "bundle-sleep"), SLEEP_ARGS)),
         "true": str(write_bundle(os.path.join(work, "bundle-true"), TRUE_ARGS))}
    copy = os.path.join(work, "rootfs-copy")
    if not os.path.isdir(copy):
        shutil.copytree(BUSYBOX_ROOTFS, copy, symlinks=True)
    b["rootfs_copy"] = copy
    return b


def make_pyapp_bundle(work: str, memory_mb: int) -> str:
    return str(pyapp_bundle(os.path.join(work, f"pyapp-{memory_mb}"), memory_mb=memory_mb))


def json_dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)
