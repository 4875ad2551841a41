"""Checkpointing a service: a container with a listening TCP socket (busybox
httpd) is checkpointed, restored into clones, and every clone answers HTTP
in a network namespace of its own (issue 9).

The containers have runc's loopback-only network namespace. The host talks
to each one inside its own namespace (`nsenter --net=/proc/PID/ns/net`), to
127.0.0.1 there: no traffic leaves namespaces this test created.
"""

import json
import os
import shutil
import subprocess

import pytest

from build import HOST_PYTHON, host_python_mounts
from conftest import host_pid_alive, wait_until
from containerd_py.checkpoint.criu import dumps_inet_sockets

PORT = 8080
NSENTER = shutil.which("nsenter")
BUSYBOX = shutil.which("busybox")
IP = shutil.which("ip")

# The page holds a token drawn when the server started: a restored clone
# serves the same one, a server started afresh would draw another.
HTTPD = ["sh", "-c",
         "mkdir -p /tmp/www && echo page-$RANDOM$RANDOM$RANDOM > /tmp/www/index.html && "
         f"exec httpd -f -p {PORT} -h /tmp/www"]


@pytest.fixture
def needs_inet_checkpoint(api):
    status = api.info()["criu"]
    if not status.get("available"):
        pytest.skip(f"CRIU unavailable: {status.get('reason')}")
    if not status.get("inetSockets"):
        pytest.skip(status.get("warning"))
    missing = [n for n, p in (("nsenter", NSENTER), ("busybox", BUSYBOX), ("ip", IP)) if not p]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH")


def in_netns(pid: int, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
    """Run argv on the host, inside the network namespace of host pid `pid`."""
    return subprocess.run([NSENTER, f"--net=/proc/{pid}/ns/net", *argv],
                          capture_output=True, text=True, timeout=timeout)


def http_get(pid: int, path: str = "/") -> str | None:
    """GET http://127.0.0.1:PORT/path inside the container's namespace; None
    if nothing answers."""
    # (no -T: Debian 12's static busybox wget crashes with it)
    r = in_netns(pid, BUSYBOX, "wget", "-q", "-O", "-", f"http://127.0.0.1:{PORT}{path}")
    return r.stdout.strip() if r.returncode == 0 else None


def lo_is_up(pid: int) -> bool:
    links = json.loads(in_netns(pid, IP, "-j", "link", "show", "lo").stdout or "[]")
    return bool(links) and "UP" in links[0]["flags"]


def netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def listening(pid: int) -> bool:
    """Is a TCP socket listening on PORT in the container's namespace? (state
    0A in /proc/net/tcp6 or tcp, as the container sees them; httpd listens
    on [::], which takes IPv4 too)"""
    rows = []
    for table in ("tcp6", "tcp"):
        with open(f"/proc/{pid}/net/{table}") as f:
            rows += [ln.split() for ln in f.readlines()[1:]]
    return any(r[1].endswith(f":{PORT:04X}") and r[3] == "0A" for r in rows)


def test_info_reports_criu_version_and_check_as_the_host_sees_them(api):
    criu = api.info()["criu"]
    if not criu.get("path"):
        pytest.skip(f"no CRIU: {criu.get('reason')}")
    ver = subprocess.run([criu["path"], "--version"], capture_output=True, text=True)
    assert f"Version: {criu['version']}" in ver.stdout
    check = subprocess.run([criu["path"], "check"], capture_output=True, text=True)
    assert criu["check"]["exitCode"] == check.returncode
    # The verdict, not every line: `criu check` also prints notes that come
    # and go with the host's passing state (e.g. "Can't check shutdown state
    # of inet socket" while other sockets are being torn down).
    host_out = (check.stdout + check.stderr).strip()
    assert criu["check"]["output"].splitlines()[-1] == host_out.splitlines()[-1]
    assert criu["check"]["ok"] == criu["available"] == ("Looks good" in criu["check"]["output"])
    assert criu["inetSockets"] == dumps_inet_sockets(criu["version"], os.uname().release)
    assert ("warning" in criu) == (not criu["inetSockets"])


def test_which_criu_dumps_inet_sockets_on_which_kernel():
    # Linux >= 6.16 refuses SO_PASSCRED on inet sockets; CRIU 4.2 copes.
    assert not dumps_inet_sockets("4.1.1", "6.18.44-fc-v669")
    assert not dumps_inet_sockets("3.17.1", "6.16.0")
    assert dumps_inet_sockets("4.2", "6.18.0")
    assert dumps_inet_sockets("4.2.1", "6.18.44-fc-v669")
    assert dumps_inet_sockets("4.10", "7.1.0")
    assert dumps_inet_sockets("4.1.1", "6.15.9")
    assert dumps_inet_sockets("3.17.1", "6.1.0-13-amd64")


def test_web_server_checkpoints_and_every_clone_answers(needs_inet_checkpoint, api, daemon,
                                                         bundle, cid):
    b = bundle(HTTPD)
    c = cid("web")
    pid = api.create(c, b)["processes"][0]["pid"]
    page = wait_until(lambda: http_get(pid), 10, 0.05, what="httpd to answer")
    assert page.startswith("page-")
    assert netns(pid) != netns(os.getpid()), "the container shares the host's network"

    # This dump is what CRIU < 4.2 fails on Linux >= 6.16 ("Can't get 1:16 opt").
    meta = api.checkpoint(c, "web")
    assert meta["name"] == "web" and meta["exit"] is False
    assert http_get(pid) == page, "the original stopped answering after the checkpoint"

    clones = [cid(f"webclone{i}") for i in range(2)]
    pids = [api.create(k, b, checkpoint="web")["processes"][0]["pid"] for k in clones]
    assert all(host_pid_alive(p) for p in pids)
    # Each clone has a network namespace of its own, not the original's.
    assert len({netns(p) for p in [pid, *pids]}) == 3
    for k, p in zip(clones, pids):
        assert api.get(k)["checkpoint"] == "web"
        # The restored process is the server that was listening: its socket
        # came back listening, and it serves the page drawn before the dump.
        assert listening(p), f"{k}: no listening socket on {PORT} after restore"
        # The daemon brings the restored namespace's loopback up (runc
        # leaves a fresh namespace's lo down on restore).
        assert lo_is_up(p), f"{k}: lo is down in the restored container"
        assert http_get(p) == page, f"clone {k} does not answer with the checkpointed page"
    # The original carries on answering too.
    assert http_get(pid) == page

    for k in clones:
        api.delete(k, force=True)
    assert not any(host_pid_alive(p) for p in pids)
    api.delete_checkpoint(c, "web")
    api.delete(c, force=True)
    assert not host_pid_alive(pid)
    out = subprocess.run(["runc", "--root", os.path.join(daemon.state_dir, "runtime", "runc"),
                          "list", "-q"], capture_output=True, text=True).stdout.split()
    assert not set(out) & {c, *clones}


def test_web_server_checkpointed_with_exit_answers_again_in_same_id(needs_inet_checkpoint, api,
                                                                   bundle, cid):
    b = bundle(HTTPD)
    c = cid("webexit")
    pid = api.create(c, b)["processes"][0]["pid"]
    page = wait_until(lambda: http_get(pid), 10, 0.05, what="httpd to answer")
    api.checkpoint(c, "stop-here", exit=True)
    wait_until(lambda: not host_pid_alive(pid), 10, what="checkpointed server to go")
    assert api.get(c)["state"]["status"] == "stopped"

    api.request("POST", f"/containers/{c}/start", {"checkpoint": "stop-here"})
    new = api.get(c)["processes"][0]["pid"]
    assert new != pid and host_pid_alive(new)
    assert lo_is_up(new)
    assert http_get(new) == page
    api.delete_checkpoint(c, "stop-here")
    api.delete(c, force=True)
    assert not host_pid_alive(new)


def test_python_http_server_clones_answer(needs_inet_checkpoint, api, bundle, cid):
    """The host's Python `http.server` (its /usr bind-mounted read-only, as
    the pyapp bundle does) checkpoints and its clones answer."""
    b = bundle(["sh", "-c",
                "mkdir -p /tmp/www && echo py-$RANDOM$RANDOM > /tmp/www/index.html && "
                f"exec {HOST_PYTHON} -m http.server {PORT} --bind 127.0.0.1 -d /tmp/www"],
               mounts=host_python_mounts())
    c = cid("pyweb")
    pid = api.create(c, b)["processes"][0]["pid"]
    page = wait_until(lambda: http_get(pid, "/index.html"), 30, 0.05, what="http.server")
    assert page.startswith("py-")
    api.checkpoint(c, "warm")
    clone = cid("pyclone")
    cpid = api.create(clone, b, checkpoint="warm")["processes"][0]["pid"]
    assert netns(cpid) != netns(pid)
    assert http_get(cpid, "/index.html") == page
    assert http_get(pid, "/index.html") == page
    api.delete(clone, force=True)
    api.delete_checkpoint(c, "warm")
    api.delete(c, force=True)
    assert not host_pid_alive(cpid) and not host_pid_alive(pid)
