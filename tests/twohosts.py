"""Two daemons on one machine as two hosts: each in a network namespace of
its own, joined by a veth pair whose addresses exist only inside those two
namespaces. The test process talks to each daemon over a unix socket in
its state dir; the daemons talk to each other over the veth.

Daemons are started with `nsenter --net=/run/netns/NAME`, not `ip netns
exec`, which also remounts /sys and so hides the cgroup mounts runc needs.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import uuid

import sys
import time

from containerd_py.client import APIError, Client

# Self-contained (no pytest): bench/migrate.py uses it too.
DAEMON = os.path.join(os.path.dirname(sys.executable), "containerd-py")


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

# Link-local /30, configured only inside the two namespaces: no route to it
# exists anywhere else, so no packet can leave them.
ADDRS = ("169.254.77.1", "169.254.77.2")
PEER_PORT = 7443


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def mounts_under(path: str) -> list[str]:
    with open("/proc/mounts") as f:
        points = [ln.split()[1] for ln in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


class Host:
    def __init__(self, netns: str, addr: str, base: str | None = None):
        self.netns, self.addr = netns, addr
        self.state_dir = tempfile.mkdtemp(prefix="cdpy-", dir=base)
        self.sock = os.path.join(self.state_dir, "api.sock")
        self.client = Client(f"unix:{self.sock}", timeout=300)
        self.url = f"http://{addr}:{PEER_PORT}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.state_dir, "daemon.log")

    def start(self) -> "Host":
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", DAEMON, "daemon",
             "--listen", f"unix:{self.sock}", "--peer-listen", f"{self.addr}:{PEER_PORT}",
             "--state-dir", self.state_dir, "--runtime", "runc"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon in {self.netns} exited: {self.log()}")
            try:
                return self.client.request("GET", "/ping")
            except OSError:
                return None

        wait_until(up, 30, what=f"daemon in {self.netns} to answer")
        return self

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            for c in self.client.list():
                try:
                    self.client.delete(c["id"], force=True)
                except APIError:
                    pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def say(self, cid: str, line: str, reply: str, timeout: float = 30) -> str:
        """Write a line to the container's stdin (through its shim) and
        return the first log line after it that starts with `reply`."""
        import socket
        seen = len(self.client.logs(cid))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(os.path.join(self.state_dir, "shims", cid, "shim.sock"))
            s.sendall(b"stdin\x000\n")
            _, fds, _, _ = socket.recv_fds(s, 4096, 1)
        finally:
            s.close()
        try:
            os.write(fds[0], line.encode() + b"\n")
        finally:
            os.close(fds[0])

        def answer():
            for e in self.client.logs(cid)[seen:]:
                if e["line"].startswith(reply):
                    return e["line"]
            return None
        return wait_until(answer, timeout, 0.05, what=f"{reply!r} from {cid}")

    def received(self) -> list[str]:
        return os.listdir(os.path.join(self.state_dir, "data", "received"))


class TwoHosts:
    """`base`: where the daemons' state and data dirs go (default the
    temporary dir; the benchmark puts them on tmpfs, as /run is)."""

    def __init__(self, base: str | None = None):
        self.base = base
        tag = uuid.uuid4().hex[:6]
        self.names = (f"cdpy-mig-{tag}-a", f"cdpy-mig-{tag}-b")
        self.veths = (f"cdm{tag}a", f"cdm{tag}b")
        self.a = self.b = None

    def __enter__(self) -> "TwoHosts":
        try:
            for ns in self.names:
                ip("netns", "add", ns)
                ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "add", self.veths[0], "netns", self.names[0], "type", "veth",
               "peer", "name", self.veths[1], "netns", self.names[1])
            for ns, veth, addr in zip(self.names, self.veths, ADDRS):
                ip("-n", ns, "addr", "add", f"{addr}/30", "dev", veth)
                ip("-n", ns, "link", "set", veth, "up")
            self.a = Host(self.names[0], ADDRS[0], self.base).start()
            self.b = Host(self.names[1], ADDRS[1], self.base).start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in (self.a, self.b):
            if h is not None:
                h.stop()
                # Never rmtree through a mount left behind (runc's criu-root
                # is a bind mount of the bundle's rootfs).
                for m in sorted(mounts_under(h.state_dir), reverse=True):
                    subprocess.run(["umount", "-l", m], check=False)
                shutil.rmtree(h.state_dir, ignore_errors=True)
        for ns in self.names:
            ip("netns", "del", ns, check=False)  # takes its end of the veth pair along
