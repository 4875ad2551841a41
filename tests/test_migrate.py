"""Live migration (issue 11) between two daemons on two "hosts": two network
namespaces joined by a veth pair (tests/twohosts.py), real runc and CRIU.

What a user checks: the container runs on the target with its memory (a
value drawn at start, the counter going on, the same pid inside), the
source has nothing left, and when anything fails the source container
still runs with its memory.
"""

import json
import os
import signal
import threading
import time

import pytest

from conftest import APIError, container_gone, host_pid_alive, wait_until
from build import pyapp_bundle, write_bundle
from twohosts import TwoHosts

# $x lives only in the shell's memory; a child whose pid inside the
# container is written down, to find it again after the move.
COUNTER = ["sh", "-c",
           "x=$RANDOM$RANDOM$RANDOM; tail -f /dev/null & echo $! > /tmp/child; i=0; "
           "while true; do i=$((i+1)); echo $i > /tmp/count; echo $x > /tmp/v; "
           "sleep 0.05; done"]


@pytest.fixture(scope="module")
def hosts():
    if not os.path.exists("/usr/bin/nsenter"):
        pytest.skip("nsenter (util-linux) is not installed")
    with TwoHosts() as h:
        if not h.a.client.info()["criu"].get("available"):
            pytest.skip(f"CRIU unavailable: {h.a.client.info()['criu'].get('reason')}")
        yield h
    for ns in h.names:
        assert not os.path.exists(f"/run/netns/{ns}"), "a network namespace was left"


def read_file(pid: int, path: str) -> str | None:
    try:
        with open(f"/proc/{pid}/root{path}") as f:
            return f.read().strip() or None
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None


def count(pid: int) -> int:
    return int(wait_until(lambda: read_file(pid, "/tmp/count"), 10, 0.01, what="count"))


def inner_pids(init: int) -> dict[int, str]:
    """{pid inside the container: command} of every process in init's pid
    namespace, as the host sees them."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{p}/ns/pid") != ns:
                continue
            with open(f"/proc/{p}/status") as f:
                nspid = next(ln for ln in f if ln.startswith("NSpid:")).split()[-1]
            with open(f"/proc/{p}/cmdline") as f:
                out[int(nspid)] = f.read().replace("\0", " ").strip()
        except (OSError, StopIteration):
            continue
    return out


def offer(h, cid: str, **settings) -> dict:
    """The target's one-time token, asked for by its operator: the source
    daemon, in another namespace, may not call POST /migrations itself."""
    o = h.b.client.open_migration(cid, settings or None)
    return {"migration": o["migration"], "token": o["token"]}


def events(host, since: float) -> list[dict]:
    return [json.loads(x) for x in host.client.stream(
        "/events", {"since": str(since), "follow": "false"}) if x]


def say(host, cid: str, line: str, reply: str, timeout: float = 30) -> str:
    return host.say(cid, line, reply, timeout)


def test_counter_migrates_with_its_memory_and_pids(hosts, tmp_path):
    h = hosts
    b = str(write_bundle(tmp_path / "counter", COUNTER))
    c = "counter"
    pid = h.a.client.create(c, b, labels={"app": "demo"})["processes"][0]["pid"]
    wait_until(lambda: read_file(pid, "/tmp/child") and count(pid) >= 5, 10, what="start")
    x, child = read_file(pid, "/tmp/v"), int(read_file(pid, "/tmp/child"))
    before_pids = inner_pids(pid)
    assert before_pids[1].startswith("sh -c") and before_pids[child] == "tail -f /dev/null"
    t0 = time.time()
    at = count(pid)
    res = h.a.client.migrate(c, h.b.url, **offer(h, c))
    assert res["phase"] == "done" and res["frozenMs"] > 0 and res["bytes"] > 0
    # The source has nothing left: no container, no process, no runc state.
    assert container_gone(h.a.client, c)
    assert not host_pid_alive(pid)
    assert not os.path.exists(os.path.join(h.a.state_dir, "shims", c))
    # The target runs it with its memory: same value, counter going on from
    # where it was, the same pids inside.
    got = h.b.client.get(c)
    assert got["state"]["status"] == "running" and got["labels"] == {"app": "demo"}
    assert got["migration"]["phase"] == "arrived"
    npid = got["processes"][0]["pid"]
    assert npid != pid and host_pid_alive(npid)
    assert read_file(npid, "/tmp/v") == x
    assert count(npid) >= at
    wait_until(lambda: count(npid) > at + 5, 10, what="the counter to go on on the target")
    after_pids = inner_pids(npid)
    assert after_pids[1] == before_pids[1] and after_pids[child] == "tail -f /dev/null"
    # Progress and outcome in the events of both sides.
    src = [e for e in events(h.a, t0) if e["id"] == c]
    types = [e["type"] for e in src]
    assert types[0] == "migrate-start" and "migrate-freeze" in types
    done = next(e for e in src if e["type"] == "migrate-done")
    assert done["frozenMs"] == res["frozenMs"] and done["target"] == h.b.url
    assert types[-1] == "delete"
    assert any(e["type"] == "migrated-in" and e["id"] == c for e in events(h.b, t0))
    # Deleting it on the target removes what was received.
    h.b.client.delete(c, force=True)
    assert not host_pid_alive(npid) and h.b.received() == []


def test_cli_migrate_moves_a_running_container(hosts, tmp_path):
    """The command a user types: `containerd-py migrate ID --to URL`, with
    the target's operator address to open the migration there."""
    import subprocess

    from conftest import DAEMON
    h = hosts
    b = str(write_bundle(tmp_path / "clicounter", COUNTER))
    c = "clicounter"
    pid = h.a.client.create(c, b)["processes"][0]["pid"]
    wait_until(lambda: count(pid) >= 3, 10, what="start")
    x = read_file(pid, "/tmp/v")
    p = subprocess.run([DAEMON, "--address", f"unix:{h.a.sock}", "migrate", c, "--to", h.b.url,
                        "--target-address", f"unix:{h.b.sock}"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout == c + "\n"  # the id, as the other changing commands print
    assert container_gone(h.a.client, c) and not host_pid_alive(pid)
    npid = h.b.client.get(c)["processes"][0]["pid"]
    assert read_file(npid, "/tmp/v") == x
    h.b.client.delete(c, force=True)


def test_pyapp_64mib_keeps_its_memory(hosts):
    h = hosts
    b = str(pyapp_bundle(os.path.join(h.a.state_dir, "pyapp64"), memory_mb=64))
    c = "pyapp"
    h.a.client.create(c, b)
    who = say(h.a, c, "whoami", "whoami", 120)
    assert who.split()[2] == "64" and int(who.split()[3]) > 0
    res = h.a.client.migrate(c, h.b.url, preCopy=2, **offer(h, c))
    assert res["bytes"] > 64 << 20
    assert container_gone(h.a.client, c)
    # The same process memory answers on the target.
    assert say(h.b, c, "whoami", "whoami") == who
    assert say(h.b, c, "hello", "pong") == "pong hello"
    h.b.client.delete(c, force=True)


def test_target_refusals_leave_the_source_running(hosts, tmp_path):
    h = hosts
    b = str(write_bundle(tmp_path / "r", COUNTER))
    c = "refused"
    pid = h.a.client.create(c, b)["processes"][0]["pid"]
    wait_until(lambda: count(pid) >= 3, 10, what="start")
    x = read_file(pid, "/tmp/v")
    # Without a token the target does not let another host in.
    with pytest.raises(APIError) as e:
        h.a.client.migrate(c, h.b.url)
    assert e.value.status == 502 and e.value.body["step"] == "offer"
    assert e.value.body["targetStatus"] == 403
    # A wrong token.
    o = offer(h, c)
    with pytest.raises(APIError) as e:
        h.a.client.migrate(c, h.b.url, migration=o["migration"], token="not-it")
    assert e.value.status == 502 and e.value.body["targetStatus"] == 401
    # Nobody listening there (an address of the veth with no daemon).
    with pytest.raises(APIError) as e:
        h.a.client.migrate(c, "http://169.254.77.2:9", **offer(h, c + "2"))
    assert e.value.status == 502
    # The target lacks the bundle: the operator hears it at once.
    with pytest.raises(APIError) as e:
        h.b.client.open_migration(c + "4", {"bundlePath": str(tmp_path / "nope")})
    assert e.value.status == 404 and "nope" in e.value.body["error"]
    # Bad requests.
    for body, field in (({"target": "ftp://x"}, "target"),
                        ({"target": h.b.url, "preCopy": -1}, "preCopy"),
                        ({"target": h.b.url, "token": "t"}, "token")):
        with pytest.raises(APIError) as e:
            h.a.client.request("POST", f"/containers/{c}/migrate", body)
        assert e.value.status == 400 and e.value.body["field"] == field
    # Lazy (post-copy) migration: CRIU's words on why not, and nothing moved.
    with pytest.raises(APIError) as e:
        h.a.client.migrate(c, h.b.url, lazy=True, **offer(h, c + "3"))
    assert e.value.status == 501 and "page" in e.value.body["error"]
    # Through all of it the source container ran on, with its memory.
    got = h.a.client.get(c)
    assert got["state"]["status"] == "running" and got["processes"][0]["pid"] == pid
    assert got["migration"]["phase"] == "failed" and got["migration"]["error"]
    assert read_file(pid, "/tmp/v") == x
    n = count(pid)
    wait_until(lambda: count(pid) > n + 3, 10, what="the source to keep counting")
    assert h.b.client.list() == []
    h.a.client.delete(c, force=True)


def _migrate_in_thread(h, c, **opts):
    out = {}

    def run():
        try:
            out["result"] = h.a.client.migrate(c, h.b.url, **opts)
        except APIError as e:
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def _wait_frozen(h, c):
    wait_until(lambda: (h.a.client.get(c).get("migration") or {}).get("phase")
               in ("frozen", "transferring", "restoring"), 60, 0.01, what="the migration to freeze")


def test_target_killed_mid_transfer_source_resumes(hosts):
    h = hosts
    b = str(pyapp_bundle(os.path.join(h.a.state_dir, "pyapp-kill"), memory_mb=64))
    c = "victim"
    h.a.client.create(c, b)
    who = say(h.a, c, "whoami", "whoami", 120)
    o = offer(h, c)
    t, out = _migrate_in_thread(h, c, **o)
    try:
        # Once the container is frozen the target daemon stops answering
        # (its page server still takes the memory), so the final transfer
        # stalls; then the target dies.
        _wait_frozen(h, c)
        h.b.signal(signal.SIGSTOP)
        wait_until(lambda: (h.a.client.get(c).get("migration") or {}).get("phase")
                   == "transferring", 60, 0.01, what="the final transfer to start")
    finally:
        h.b.kill9()
    t.join(120)
    assert "error" in out, out
    err = out["error"]
    assert err.status == 502 and err.body["step"].startswith(("transfer", "restore"))
    # The source thawed it: running, same process, same memory.
    got = h.a.client.get(c)
    assert got["state"]["status"] == "running"
    assert got["migration"]["phase"] == "failed" and got["migration"]["resumed"] is True
    assert say(h.a, c, "whoami", "whoami") == who
    # The target, started again, drops what it had received.
    h.b.start()
    assert h.b.received() == [] and h.b.client.list() == []
    h.a.client.delete(c, force=True)


def test_container_that_exits_during_migration(hosts, tmp_path):
    h = hosts
    b = str(write_bundle(tmp_path / "exits", COUNTER))
    c = "exits"
    pid = h.a.client.create(c, b)["processes"][0]["pid"]
    wait_until(lambda: count(pid) >= 3, 10, what="start")
    o = offer(h, c)
    t, out = _migrate_in_thread(h, c, **o)
    try:
        _wait_frozen(h, c)
        h.b.signal(signal.SIGSTOP)  # holds the migration while the container is frozen
        os.kill(pid, signal.SIGKILL)  # delivered when thawed
    finally:
        h.b.kill9()
    t.join(120)
    assert out["error"].status in (409, 502), out
    wait_until(lambda: h.a.client.get(c)["state"]["status"] == "stopped", 20,
               what="the source container to be seen stopped")
    got = h.a.client.get(c)
    assert got["exitStatus"] == 137 and got["migration"]["phase"] == "failed"
    h.b.start()
    assert h.b.received() == [] and h.b.client.list() == []
    h.a.client.delete(c)
