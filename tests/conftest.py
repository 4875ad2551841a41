"""Fixtures that start the real daemon and make real bundles.

Every test here runs real containers with real runc (and CRIU): the daemon
is started as a subprocess on a free port with its own state dirs, exactly
as a user would start it.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bundles"))
sys.path.insert(0, ROOT)

from build import write_bundle  # noqa: E402  (bundles/build.py)

from containerd_py.client import APIError, Client  # noqa: E402

DAEMON = os.path.join(os.path.dirname(sys.executable), "containerd-py")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="containers need root")
        for item in items:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_subnet() -> str:
    """A /24 in 10.128.0.0/9 that no interface of the host is on."""
    import ipaddress
    import random
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = [ipaddress.IPv4Network(f.split()[3], strict=False) for f in out.splitlines()]
    while True:
        net = ipaddress.IPv4Network(f"10.{random.randint(128, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Daemon:
    """A real `containerd-py daemon` process on its own state dir."""

    def __init__(self, state_dir: str, runtime: str = "runc", extra_args=()):
        self.state_dir = state_dir
        self.runtime = runtime
        self.extra_args = list(extra_args)
        self.env: dict[str, str] = {}  # extra environment, e.g. a failpoint
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client = Client(self.address, timeout=120)
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(state_dir, "daemon.log")

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [DAEMON, "daemon", "--listen", self.address, "--state-dir", self.state_dir,
             "--runtime", self.runtime, *self.extra_args, *self._default_subnet()],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.env})

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log()}")
            try:
                return self.client.request("GET", "/ping")
            except OSError:
                return None

        wait_until(up, 30, what="daemon to answer /ping")
        return self

    def _default_subnet(self) -> list[str]:
        """Each test daemon's `default` network on a subnet of its own (image
        containers join it), so that daemons running side by side never
        make two bridges for one subnet. Kept across restarts."""
        if "--default-subnet" in self.extra_args:
            return []
        if not getattr(self, "default_subnet", None):
            self.default_subnet = free_subnet()
        return ["--default-subnet", self.default_subnet]

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        """Delete every container the tests left, then stop the daemon."""
        if self.proc and self.proc.poll() is None:
            # Pool members outlive a daemon stop, by design: remove them.
            for p in self.client.request("GET", "/pools"):
                try:
                    self.client.request("DELETE", f"/pools/{p['name']}")
                except APIError:
                    pass
            for c in self.client.list():
                try:
                    self.client.delete(c["id"], force=True)
                except APIError:
                    pass
        self.stop()


@pytest.fixture(scope="session")
def session_dir():
    d = tempfile.mkdtemp(prefix="cdpy-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(session_dir):
    d = Daemon(os.path.join(session_dir, "shared")).start()
    yield d
    d.cleanup()


@pytest.fixture
def api(daemon) -> Client:
    return daemon.client


@pytest.fixture
def private_daemon():
    """A daemon of the test's own, for tests that kill or restart it. Its
    state dir is short, as a real one is: the shims' sockets live below it."""
    state = tempfile.mkdtemp(prefix="cdpy-")
    d = Daemon(state)
    yield d
    if d.proc is None or d.proc.poll() is not None:
        d.start()
    d.cleanup()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def bundle(tmp_path):
    """make_bundle(args, **opts) -> path of a bundle sharing the busybox rootfs."""
    counter = iter(range(1000))

    def make(args=None, **opts):
        path = str(tmp_path / f"bundle{next(counter)}")
        return str(write_bundle(path, args or ["tail", "-f", "/dev/null"], **opts))

    return make


@pytest.fixture
def cid():
    """A fresh container id per call."""
    return lambda prefix="t": f"{prefix}-{uuid.uuid4().hex[:10]}"


def host_pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        # Gone between the open and the read (ESRCH), or before the open.
        return False


def container_gone(api, cid_) -> bool:
    """True once the daemon answers 404 for the container."""
    try:
        api.get(cid_)
        return False
    except APIError as e:
        return e.status == 404


def logs_text(api, cid_) -> str:
    return "\n".join(e["line"] for e in api.request("GET", f"/containers/{cid_}/logs"))
