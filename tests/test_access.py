"""Who may use the daemon, and one daemon per state dir.

A real unprivileged user (`nobody`, through runuser/setpriv) makes real
requests with curl; the daemon must tell it, in one line, why not.
"""

import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import DAEMON, Daemon, free_port

from containerd_py.client import Client

NOBODY = "nobody"


def _need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} is not installed")


def _as_nobody(*argv, group: str | None = None) -> subprocess.CompletedProcess:
    """Run argv as the unprivileged user `nobody` (no supplementary groups)."""
    if group is None:
        cmd = ["runuser", "-u", NOBODY, "--", *argv]
    else:
        cmd = ["setpriv", "--reuid", NOBODY, "--regid", group, "--clear-groups", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")


def _curl(url: str, *extra, group: str | None = None) -> tuple[int, str]:
    """(HTTP status, body) of a GET made by nobody; status 0 if it could not connect."""
    out = _as_nobody("curl", "-s", "-o", "-", "-w", "\n%{http_code}", *extra, url, group=group)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


def _first_line_of_failed_start(argv) -> list[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]


def test_second_daemon_on_same_dirs_refuses_naming_the_holder(private_daemon):
    d = private_daemon.start()
    lines = _first_line_of_failed_start(
        [DAEMON, "daemon", "--listen", f"127.0.0.1:{free_port()}", "--state-dir", d.state_dir])
    assert len(lines) == 1, lines
    assert f"pid {d.proc.pid}" in lines[0] and d.state_dir in lines[0], lines
    # The first one is untouched and still answers.
    assert d.client.request("GET", "/ping") == {"ok": True}


def test_data_dir_is_locked_too(private_daemon):
    d = private_daemon.start()
    other = tempfile.mkdtemp(prefix="cdpy-")
    try:
        lines = _first_line_of_failed_start(
            [DAEMON, "daemon", "--listen", f"127.0.0.1:{free_port()}", "--state-dir", other,
             "--data-dir", os.path.join(d.state_dir, "data")])
        assert len(lines) == 1 and f"pid {d.proc.pid}" in lines[0], lines
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_lock_is_released_when_the_daemon_is_killed(private_daemon):
    d = private_daemon.start()
    d.kill9()
    d.start()  # would refuse if a SIGKILLed daemon left its lock behind
    assert d.client.request("GET", "/ping") == {"ok": True}


def test_port_in_use_is_one_line():
    state = tempfile.mkdtemp(prefix="cdpy-")
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        lines = _first_line_of_failed_start(
            [DAEMON, "daemon", "--listen", f"127.0.0.1:{port}", "--state-dir", state])
        assert len(lines) == 1, lines
        assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines
        assert "Traceback" not in lines[0]
    finally:
        busy.close()
        shutil.rmtree(state, ignore_errors=True)


def test_non_loopback_needs_explicit_flag():
    state = tempfile.mkdtemp(prefix="cdpy-")
    try:
        lines = _first_line_of_failed_start(
            [DAEMON, "daemon", "--listen", f"0.0.0.0:{free_port()}", "--state-dir", state])
        assert len(lines) == 1 and "--insecure-listen-anywhere" in lines[0], lines
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_insecure_listen_anywhere_warns_and_still_checks_callers():
    _need("runuser", "curl")
    state = tempfile.mkdtemp(prefix="cdpy-")
    d = Daemon(state)
    d.extra_args = ["--listen", f"0.0.0.0:{d.port}", "--insecure-listen-anywhere"]
    try:
        d.start()
        assert "WARNING" in d.log() and "beyond loopback" in d.log()
        status, body = _curl(f"http://{d.address}/ping")
        assert status == 403, body
    finally:
        d.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def test_tcp_unprivileged_user_gets_403_with_reason(daemon):
    _need("runuser", "curl")
    status, body = _curl(f"http://{daemon.address}/containers")
    assert status == 403, body
    assert "'nobody'" in body and "only root" in body
    assert "\n" not in body.strip()
    # Every route, not only some: a POST that would create a container too.
    out = _as_nobody("curl", "-s", "-w", "\n%{http_code}", "-XPOST",
                     f"http://{daemon.address}/containers/evil",
                     "-d", '{"bundlePath": "/"}')
    assert out.stdout.rstrip().endswith("403"), out
    assert not any(c["id"] == "evil" for c in daemon.client.list())
    # Root, on the same daemon, is served.
    assert daemon.client.request("GET", "/ping") == {"ok": True}


def test_tcp_group_members_are_served(private_daemon):
    _need("runuser", "curl")
    private_daemon.extra_args = ["--group", "nogroup"]  # nobody's primary group
    d = private_daemon.start()
    status, body = _curl(f"http://{d.address}/ping")
    assert (status, body) == (200, '{"ok": true}')


def test_ipv6_loopback_is_checked_too():
    _need("runuser", "curl")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    state = tempfile.mkdtemp(prefix="cdpy-")
    port = free_port()
    d = Daemon(state, extra_args=["--listen", f"[::1]:{port}"])
    d.address, d.client = f"[::1]:{port}", Client(f"[::1]:{port}")
    try:
        d.start()
        status, body = _curl(f"http://[::1]:{port}/ping")
        assert status == 403 and "'nobody'" in body, body
    finally:
        d.cleanup()
        shutil.rmtree(state, ignore_errors=True)


class _UnixDaemon(Daemon):
    def __init__(self, state_dir, group=None):
        self.sock = os.path.join(state_dir, "api.sock")
        super().__init__(state_dir, extra_args=["--listen", f"unix:{self.sock}",
                                                *(["--group", group] if group else [])])
        self.address = f"unix:{self.sock}"
        self.client = Client(self.address, timeout=60)


@pytest.fixture
def unix_daemon():
    state = tempfile.mkdtemp(prefix="cdpy-")
    os.chmod(state, 0o755)  # so that nobody can reach the socket file itself
    made = []

    def start(group=None):
        d = _UnixDaemon(state, group)
        made.append(d)
        return d.start()

    yield start
    for d in made:
        d.cleanup()
    shutil.rmtree(state, ignore_errors=True)


def test_unix_socket_is_0660_root_and_the_group(unix_daemon):
    d = unix_daemon(group="nogroup")
    st = os.stat(d.sock)
    assert oct(st.st_mode & 0o777) == "0o660"
    assert (st.st_uid, st.st_gid) == (0, 65534)
    _need("runuser", "curl")
    status, body = _curl("http://localhost/ping", "--unix-socket", d.sock)
    assert (status, body) == (200, '{"ok": true}')


def test_unix_socket_non_member_is_refused_by_peer_credentials(unix_daemon):
    _need("setpriv", "curl")
    d = unix_daemon(group="users")
    # nobody with gid `users` can open the socket file (its group), but is no
    # member of `users`: the daemon's check of SO_PEERCRED refuses it.
    status, body = _curl("http://localhost/ping", "--unix-socket", d.sock, group="users")
    assert status == 403, body
    assert "'nobody'" in body and "'users'" in body
    # Without the group, the socket's mode alone keeps nobody out.
    status, _ = _curl("http://localhost/ping", "--unix-socket", d.sock)
    assert status == 0
    assert d.client.request("GET", "/ping") == {"ok": True}


def test_unix_socket_stale_file_is_replaced(unix_daemon):
    d = unix_daemon()
    d.kill9()
    assert os.path.exists(d.sock)
    d.start()
    assert d.client.request("GET", "/ping") == {"ok": True}
