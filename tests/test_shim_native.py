"""The real shim (native/) with real runc on a busybox bundle: docs/shim.md.

Needs root, runc and busybox; skipped otherwise. Builds the shim with
native/build.py if needed.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = os.path.join(ROOT, "containerd_py", "_bin", "containerd-py-shim")
RUNC = shutil.which("runc")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not RUNC, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox"),
]

PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run([sys.executable, os.path.join(ROOT, "native", "build.py")],
                   check=True, cwd=ROOT)
    # Exited shims are reparented to us, not to a pid 1 that may never reap.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    reap_orphans()


def reap_orphans():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_gone(pid, timeout=10.0):
    """Wait for pid (a shim, orphaned to us) to exit; True when it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap_orphans()
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    reap_orphans()
        except OSError:     # gone, before the open or between open and read
            return True
        time.sleep(0.02)
    return False


def children(pid):
    """(pid, state) of each child of pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid:
            out.append((int(d), rest[0]))
    return out


def make_bundle(path, args, terminal=False):
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
    subprocess.run([RUNC, "spec"], cwd=path, check=True)
    with open(os.path.join(path, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["args"] = args
    spec["process"]["terminal"] = terminal
    spec["process"]["env"] = ["PATH=/bin", "TERM=xterm"]
    spec["root"]["readonly"] = False
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f)


def request(sock, *fields, want_fd=False, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall("\0".join(fields).encode() + b"\n")
        if want_fd:
            data, fds, _, _ = socket.recv_fds(s, 4096, 1)
            return data.decode(), (fds[0] if fds else None)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode()
    finally:
        s.close()


class Subscription:
    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(sock)
        self.s.sendall(b"subscribe\n")
        self.buf = b""
        self.eof = False
        time.sleep(0.05)  # no ack in the protocol: let the shim register us

    def lines(self, timeout=5.0, until=None):
        """Read lines until `until(lines)` holds, EOF or timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            if until and until(self.buf.decode().splitlines()):
                break
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                self.eof = True
            self.buf += chunk
        return self.buf.decode().splitlines()

    def close(self):
        self.s.close()


class Container:
    def __init__(self, tmp_path, args, terminal=False, log_max=0):
        self.id = "shimtest-" + uuid.uuid4().hex[:10]
        self.root = str(tmp_path / "runc-root")
        self.bundle = str(tmp_path / "bundle")
        self.state = str(tmp_path / "state")
        os.makedirs(self.state)
        make_bundle(self.bundle, args, terminal)
        self.sock = os.path.join(self.state, "shim.sock")
        self.log = os.path.join(self.state, "container.log")
        self.terminal = terminal
        self.log_max = log_max
        self.shim_pid = self.init_pid = None

    def runc(self, *args, check=True):
        return subprocess.run([RUNC, "--root", self.root, *args], check=check,
                              capture_output=True, text=True)

    def create(self):
        argv = [SHIM, "-s", self.state, "-l", str(self.log_max)]
        runtime = [RUNC, "--root", self.root, "create", "--bundle", self.bundle,
                   "--pid-file", os.path.join(self.state, "init.pid")]
        if self.terminal:
            cs = os.path.join(self.state, "console.sock")
            argv += ["-c", cs]
            runtime += ["--console-socket", cs]
        p = subprocess.run(argv + ["--"] + runtime + [self.id], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        self.shim_pid, self.init_pid = map(int, p.stdout.split()[:2])
        return self

    def start(self):
        self.runc("start", self.id)

    def exec(self, args, terminal=False):
        proc = {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args,
                "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/"}
        name = uuid.uuid4().hex[:8]
        pf = os.path.join(self.state, f"exec-{name}.pid")
        spec = os.path.join(self.state, f"exec-{name}.json")
        with open(spec, "w") as f:
            json.dump(proc, f)
        argv = [RUNC, "--root", self.root, "exec", "-d", "--pid-file", pf,
                "--process", spec]
        if terminal:
            argv += ["--console-socket", os.path.join(self.state, "exec-console.sock")]
        return request(self.sock, "exec", pf, "1" if terminal else "0", *argv, self.id)

    def log_lines(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def wait_log(self, text, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.log_lines()
            if any(text in ln for ln in lines):
                return lines
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not in log: {self.log_lines()!r}")

    def destroy(self):
        self.runc("delete", "-f", self.id, check=False)
        if self.shim_pid:
            assert wait_gone(self.shim_pid), "shim still running after delete"


@pytest.fixture
def containers():
    made = []
    yield made
    for c in made:
        c.destroy()


def test_log_exec_subscribe_stdin_exit(tmp_path, containers):
    c = Container(tmp_path, ["sh", "-c", "echo hello; echo oops >&2; printf tail; "
                             "exec sleep 1000"])
    containers.append(c)
    c.create()
    with open(os.path.join(c.state, "shim.pid")) as f:
        assert int(f.read()) == c.shim_pid
    with open(os.path.join(c.state, "init.pid")) as f:
        assert int(f.read()) == c.init_pid
    # The shim kept none of our fds and holds its stdio on /dev/null.
    fds = os.listdir(f"/proc/{c.shim_pid}/fd")
    for fd in ("0", "1", "2"):
        assert os.readlink(f"/proc/{c.shim_pid}/fd/{fd}") == "/dev/null"
    assert len(fds) < 12, fds
    c.start()
    lines = c.wait_log("stderr F oops")
    assert any(ln.endswith(" stdout F hello") for ln in lines), lines
    ts = lines[0].split()[0]
    assert len(ts) == 30 and ts.endswith("Z") and ts[10] == "T", ts

    sub = Subscription(c.sock)
    # Short-lived execs: some exit before runc has even written the pid file.
    pids = []
    for _ in range(5):
        r = c.exec(["true"])
        assert r.startswith("ok "), r
        pids.append(int(r.split()[1]))
    r = c.exec(["sh", "-c", "echo exec-out; exit 3"])
    assert r.startswith("ok "), r
    pid3 = int(r.split()[1])
    want = {f"exit {p} 0" for p in pids} | {f"exit {pid3} 3"}
    got = sub.lines(until=lambda ls: want <= {ln.rsplit(" ", 1)[0] for ln in ls})
    assert want <= {ln.rsplit(" ", 1)[0] for ln in got}, got
    for p in pids:
        with open(os.path.join(c.state, "exits", str(p))) as f:
            status, ns = f.read().split()
        assert status == "0" and abs(int(ns) - time.time_ns()) < 60e9
    c.wait_log("stdout F exec-out")

    r = c.exec(["nonexistent-binary"])
    assert r.startswith("err ") and "nonexistent-binary" in r and r.count("\n") == 1, r

    # stdin: the write end of cat's stdin pipe.
    r = c.exec(["cat"])
    assert r.startswith("ok "), r
    cat = int(r.split()[1])
    r, fd = request(c.sock, "stdin", str(cat), want_fd=True)
    assert r == "ok\n" and fd is not None
    os.write(fd, b"via stdin\n")
    os.close(fd)
    c.wait_log("stdout F via stdin")
    assert request(c.sock, "closestdin", str(cat)) == "ok\n"
    got = sub.lines(until=lambda ls: any(ln.startswith(f"exit {cat} 0 ") for ln in ls))
    assert any(ln.startswith(f"exit {cat} 0 ") for ln in got), got

    assert request(c.sock, "resize", str(c.init_pid), "80", "24").startswith("err ")
    assert request(c.sock, "bogus").startswith("err ")
    assert request(c.sock, "stdin", "0", want_fd=True)[0] == "ok\n"

    # No zombies under the shim, and it stays small.
    assert [s for _, s in children(c.shim_pid)] == ["S"], children(c.shim_pid)
    with open(f"/proc/{c.shim_pid}/smaps_rollup") as f:
        pss = [int(ln.split()[1]) for ln in f if ln.startswith("Pss:")][0]
    assert pss < 1024, f"shim PSS {pss} kB"

    # SIGTERM/SIGINT/SIGHUP do not end it.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(c.shim_pid, sig)
    time.sleep(0.1)
    assert os.path.exists(f"/proc/{c.shim_pid}/fd")

    c.runc("kill", c.id, "KILL")
    got = sub.lines(timeout=10)
    assert sub.eof and got[-1].startswith(f"exit {c.init_pid} 137 "), got
    with open(os.path.join(c.state, "exit")) as f:
        assert f.read().split()[0] == "137"
    assert wait_gone(c.shim_pid)
    assert not os.path.exists(c.sock)
    assert c.log_lines()[-1].endswith(" stdout P tail")
    sub.close()


def test_terminal_init_and_exec(tmp_path, containers):
    c = Container(tmp_path, ["sh", "-c", "stty -echo; while read l; do "
                             "echo got:$l; stty size; done"], terminal=True)
    containers.append(c)
    c.create()
    c.start()
    assert request(c.sock, "resize", "0", "123", "45") == "ok\n"
    r, fd = request(c.sock, "stdin", "0", want_fd=True)
    assert r == "ok\n"
    time.sleep(0.2)
    os.write(fd, b"abc\n")
    os.close(fd)
    lines = c.wait_log("45 123")
    assert any(ln.endswith(" stdout F got:abc") for ln in lines), lines

    r = c.exec(["sh", "-c", "read l; stty size; echo x$l"], terminal=True)
    assert r.startswith("ok "), r
    pid = int(r.split()[1])
    assert not os.path.exists(os.path.join(c.state, "exec-console.sock"))
    assert request(c.sock, "resize", str(pid), "77", "11") == "ok\n"
    r, fd = request(c.sock, "stdin", str(pid), want_fd=True)
    os.write(fd, b"yz\n")
    os.close(fd)
    c.wait_log("11 77")
    c.wait_log("xyz")
    deadline = time.monotonic() + 5
    while not os.path.exists(os.path.join(c.state, "exits", str(pid))):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [s for _, s in children(c.shim_pid)] == ["S"], children(c.shim_pid)


def test_init_exits_by_itself(tmp_path, containers):
    c = Container(tmp_path, ["sh", "-c", "echo bye; exit 7"])
    containers.append(c)
    c.create()
    c.start()
    assert wait_gone(c.shim_pid)
    with open(os.path.join(c.state, "exit")) as f:
        assert f.read().split()[0] == "7"
    assert c.log_lines()[-1].endswith(" stdout F bye")


def test_create_failure(tmp_path):
    c = Container(tmp_path, ["does-not-exist"])
    os.unlink(os.path.join(c.bundle, "config.json"))
    p = subprocess.run([SHIM, "-s", c.state, "--", RUNC, "--root", c.root, "create",
                        "--bundle", c.bundle, "--pid-file",
                        os.path.join(c.state, "init.pid"), c.id],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and p.stdout == ""
    assert "config.json" in p.stderr, p.stderr
    assert not os.path.exists(c.sock)
    assert not os.path.exists(os.path.join(c.state, "shim.pid"))
    reap_orphans()


def test_log_rotation(tmp_path, containers):
    c = Container(tmp_path, ["sh", "-c", "i=0; while [ $i -lt 200 ]; do "
                             "echo line-$i; i=$((i+1)); done"], log_max=2000)
    containers.append(c)
    c.create()
    c.start()
    assert wait_gone(c.shim_pid)
    assert os.path.getsize(c.log) <= 2000
    assert os.path.getsize(c.log + ".1") <= 2000
    assert c.log_lines()[-1].endswith(" stdout F line-199")


def test_drain_is_bounded(tmp_path):
    """A pipe held open by a process outside the container must not keep the
    shim alive after init's exit. A fake runtime leaves such a process."""
    state = str(tmp_path / "state")
    os.makedirs(state)
    holder = str(tmp_path / "holder.pid")
    runtime = ["/bin/sh", "-c",
               f"(sleep 0.3; echo done; exit 5) & echo $! > {state}/init.pid; "
               f"sleep 60 & echo $! > {holder}"]
    p = subprocess.run([SHIM, "-s", state, "--"] + runtime, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    shim_pid, init_pid = map(int, p.stdout.split()[:2])
    t0 = time.monotonic()
    try:
        assert wait_gone(shim_pid, timeout=8)
        elapsed = time.monotonic() - t0
        # Bounded: well before the holder's `sleep 60`, after a grace period.
        assert 1.5 < elapsed < 30, elapsed
        with open(os.path.join(state, "exit")) as f:
            assert f.read().split()[0] == "5"
        with open(os.path.join(state, "container.log")) as f:
            assert f.read().rstrip().endswith(" stdout F done")
    finally:
        with open(holder) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        time.sleep(0.05)
        reap_orphans()


def start_fake_shim(state: str) -> tuple[int, int]:
    """A shim whose "runtime" is a shell leaving a `sleep 60` as init."""
    p = subprocess.run([SHIM, "-s", state, "--", "/bin/sh", "-c",
                        f"(sleep 60 & echo $! > {state}/init.pid)"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    shim_pid, init_pid = map(int, p.stdout.split()[:2])
    return shim_pid, init_pid


def early_exit_runtime(tmp_path, code: int, pid_file: str) -> str:
    """A fake runtime command whose process exits with `code` before the
    command returns. The process exits only once it has been orphaned to
    the shim (the subreaper), so that the shim reaps it and never the
    subshell that started it: a subshell may reap its own background job,
    and then the status is lost (255) by design. The command returns only
    after the shim has reaped it."""
    path = tmp_path / f"exit-{code}.sh"
    path.write_text('until [ "$(cat /proc/$(cut -d" " -f4 /proc/$$/stat)/comm)" = '
                    f'"{os.path.basename(SHIM)[:15]}" ]; do sleep 0.01; done\n'
                    f'echo early; exit {code}\n')
    return (f"(exec /bin/sh {path} & echo $! > {pid_file}); "
            f"while kill -0 $(cat {pid_file}) 2>/dev/null; do sleep 0.01; done")


def test_exits_before_pid_file_is_read(tmp_path):
    """Processes that exit (and are reaped) while their runtime command still
    runs get their exit file and notification once the pid file is read.
    Fake runtimes: the shim only knows 'run argv, read the pid file'."""
    state = str(tmp_path / "state")
    os.makedirs(state)
    sock = os.path.join(state, "shim.sock")
    shim_pid, init_pid = start_fake_shim(state)
    try:
        sub = Subscription(sock)
        pf = os.path.join(state, "e.pid")
        r = request(sock, "exec", pf, "0", "/bin/sh", "-c", early_exit_runtime(tmp_path, 4, pf))
        assert r.startswith("ok "), r
        pid = int(r.split()[1])
        with open(os.path.join(state, "exits", str(pid))) as f:
            assert f.read().split()[0] == "4"
        got = sub.lines(until=lambda ls: ls)
        assert got and got[0].startswith(f"exit {pid} 4 "), got
        r = request(sock, "exec", pf, "0", "/bin/sh", "-c", "echo no pid file")
        assert r.startswith("err read ") and "no pid file" in r, r
        r = request(sock, "exec", pf, "0", "/bin/sh", "-c", "echo broken >&2; exit 2")
        assert r == "err broken\n", r
        sub.close()
    finally:
        os.kill(init_pid, signal.SIGKILL)
        assert wait_gone(shim_pid)
    with open(os.path.join(state, "exit")) as f:
        assert f.read().split()[0] == "137"

    # init itself gone before the runtime returns: still a success, then exit.
    state2 = str(tmp_path / "state2")
    os.makedirs(state2)
    p = subprocess.run([SHIM, "-s", state2, "--", "/bin/sh", "-c",
                        early_exit_runtime(tmp_path, 9, f"{state2}/init.pid")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    shim_pid, init_pid = map(int, p.stdout.split()[:2])
    assert wait_gone(shim_pid)
    with open(os.path.join(state2, "exit")) as f:
        assert f.read().split()[0] == "9"


def test_long_lines_and_queued_execs(tmp_path):
    import threading

    state = str(tmp_path / "state")
    os.makedirs(state)
    sock = os.path.join(state, "shim.sock")
    shim_pid, init_pid = start_fake_shim(state)
    try:
        # Two execs at once: the second waits for the first's runtime.
        replies = {}

        def run(n):
            pf = os.path.join(state, f"q{n}.pid")
            replies[n] = request(sock, "exec", pf, "0", "/bin/sh", "-c",
                                 f"(exec sleep 0.5 & echo $! > {pf}); sleep 0.3")
        ts = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert all(r.startswith("ok ") for r in replies.values()), replies
        assert time.monotonic() - t0 >= 0.55

        pf = os.path.join(state, "long.pid")
        r = request(sock, "exec", pf, "0", "/bin/sh", "-c",
                    f"(exec /bin/sh -c 'head -c 40000 /dev/zero | tr \"\\0\" a; echo; "
                    f"printf end' & echo $! > {pf})")
        assert r.startswith("ok "), r
        log = os.path.join(state, "container.log")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(log) as f:
                lines = f.read().splitlines()
            if lines and lines[-1].endswith(" stdout P end"):
                break
            time.sleep(0.02)
        tags = [(ln.split(" ", 3)[2], len(ln.split(" ", 3)[3])) for ln in lines]
        assert tags == [("P", 16384), ("P", 16384), ("F", 40000 - 32768),
                        ("P", 3)], tags
    finally:
        os.kill(init_pid, signal.SIGKILL)
        assert wait_gone(shim_pid)


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").split(b"\0")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def test_spare_shim_takes_its_command_line_from_stdin(tmp_path, containers):
    """-W: started ahead, the shim waits for its -F command line on stdin;
    then it runs the runtime as a -F shim does and shows that command line
    as its own (orphan removal and ps tell shims by their state dir)."""
    c = Container(tmp_path, ["sleep", "60"])
    containers.append(c)
    spare = subprocess.Popen([SHIM, "-W", " " * 4096], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while _cmdline(spare.pid)[:1] != [SHIM.encode()]:  # until its execve is done
            assert time.monotonic() < deadline, _cmdline(spare.pid)
            time.sleep(0.01)
        assert _cmdline(spare.pid)[1] == b"-W"
        argv = [SHIM, "-F", "-s", c.state, "-l", "0", "--", RUNC, "--root", c.root, "create",
                "--bundle", c.bundle, "--pid-file", os.path.join(c.state, "init.pid"), c.id]
        spare.stdin.write(b"".join(a.encode() + b"\0" for a in argv))
        spare.stdin.close()
        answer = spare.stdout.read().decode()
        # 'R' (ready, written before it reads its command line), the answer
        assert answer.startswith("RO"), (answer, spare.stderr.read())
        c.shim_pid, c.init_pid = map(int, answer[2:].split()[:2])
        assert c.shim_pid == spare.pid
        assert _cmdline(spare.pid) == [a.encode() for a in argv]
        # A process group of its own, in our session: no new session (a
        # scheduling autogroup) per start.
        st = _stat(spare.pid)
        assert int(st[2]) == spare.pid and int(st[3]) == os.getsid(0)
        c.start()
        c.runc("kill", c.id, "KILL")
        assert spare.wait(10) == 0
        with open(os.path.join(c.state, "exit")) as f:
            assert f.read().split()[0] == "137"
        c.shim_pid = None
    finally:
        if spare.poll() is None:
            spare.kill()
            spare.wait()


def test_spare_shim_let_go_leaves_nothing(tmp_path):
    spare = subprocess.Popen([SHIM, "-W", " " * 64], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    spare.stdin.close()
    assert spare.wait(10) == 0
    assert spare.stdout.read() == b"R" and spare.stderr.read() == b""
    assert os.listdir(tmp_path) == []


def test_spare_shim_refuses_a_command_line_longer_than_its_room(tmp_path):
    state = str(tmp_path / "state")
    os.makedirs(state)
    spare = subprocess.Popen([SHIM, "-W", " " * 16], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    argv = [SHIM, "-F", "-s", state, "--", "/bin/true"]
    out, err = spare.communicate(b"".join(a.encode() + b"\0" for a in argv), timeout=10)
    assert spare.returncode == 1 and out == b"R" and b"room" in err
    assert os.listdir(state) == []


def test_setup_failure_after_the_runtime_started_leaves_no_process(tmp_path):
    """The shim's own files are made while the runtime command runs: one
    that cannot be made fails the start once the runtime is done, with
    init killed (nothing runs unsupervised) and the shim's files gone."""
    c = Container(tmp_path, ["sleep", "60"])
    os.makedirs(os.path.join(c.state, "exit", "x"))  # unlink(exit) fails: EISDIR
    p = subprocess.run([SHIM, "-s", c.state, "--", RUNC, "--root", c.root, "create",
                        "--bundle", c.bundle, "--pid-file", os.path.join(c.state, "init.pid"),
                        c.id], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    try:
        assert p.returncode == 1 and p.stdout == ""
        assert "shim: unlink" in p.stderr and "exit" in p.stderr, p.stderr
        with open(os.path.join(c.state, "init.pid")) as f:
            init = int(f.read())
        assert wait_gone(init), "init still running"
        assert not os.path.exists(c.sock)
        assert not os.path.exists(os.path.join(c.state, "shim.pid"))
        state = json.loads(c.runc("state", c.id).stdout)
        assert state["status"] == "stopped"
    finally:
        c.runc("delete", "-f", c.id, check=False)
    reap_orphans()


def test_a_shim_binary_without_spare_mode_is_never_handed_a_start():
    """A spare that exits before its ready byte (a shim built before -W)
    is not used, and after a few such the daemon stops starting spares."""
    import asyncio
    from containerd_py import shim_spare

    async def main():
        shim_spare._lost = 0
        for _ in range(shim_spare.LOST_MAX + 2):
            shim_spare.refill_soon("/bin/false")  # exits at once, writes nothing
            await asyncio.sleep(0.2)
            assert shim_spare.take([SHIM, "-F", "-s", "/nonexistent", "--", "true"]) is None
        assert shim_spare._spare is None and shim_spare._lost == shim_spare.LOST_MAX
        shim_spare._lost = 0
        shim_spare.refill_soon(SHIM)
        await asyncio.sleep(0.2)
        assert shim_spare._spare is not None and shim_spare._spare.check_ready()
        shim_spare.release()
    asyncio.run(main())
