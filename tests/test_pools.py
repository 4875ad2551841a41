"""Warm pools (issue 12) with real runc containers and real CRIU.

Members are real containers: the tests look at them the way a user would
on the host (`runc list`, pids, shim processes, overlay mounts, files under
/proc/PID/root) and check that a pool's delete, and a daemon restart, leave
nothing of the idle members behind.
"""

import json
import os
import shutil
import signal
import subprocess

import pytest

from conftest import APIError, host_pid_alive, logs_text, wait_until

RUNC = shutil.which("runc")


def runc_list(state_dir: str) -> dict[str, dict]:
    """The runtime's own view: id -> {status, pid}."""
    root = os.path.join(state_dir, "runtime", "runc")
    out = subprocess.run([RUNC, "--root", root, "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {c["id"]: c for c in json.loads(out or "null") or []}


def members(state_dir: str, pool: str) -> dict[str, dict]:
    return {k: v for k, v in runc_list(state_dir).items() if k.startswith(f"pool+{pool}+")}


def wait_ready(api, pool: str, n: int) -> dict:
    return wait_until(lambda: (p := api.pool(pool))["ready"] >= n and p, 60,
                      what=f"pool {pool} to have {n} ready members")


def shim_dirs(state_dir: str, pool: str) -> list[str]:
    return [d for d in os.listdir(os.path.join(state_dir, "shims"))
            if d.startswith(f"pool+{pool}+")]


def our_mounts(state_dir: str) -> list[str]:
    with open("/proc/mounts") as f:
        return [ln.split()[1] for ln in f if state_dir in ln]


def read_file(pid: int, path: str) -> str | None:
    try:
        with open(f"/proc/{pid}/root{path}") as f:
            return f.read().strip() or None
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None


def root_upperdir(pid: int) -> str:
    """The upper dir of the overlay that is the process's "/"."""
    with open(f"/proc/{pid}/mounts") as f:
        for ln in f:
            dev, mnt, fstype, opts = ln.split()[:4]
            if mnt == "/" and fstype == "overlay":
                return opts.split("upperdir=")[1].split(",")[0]
    raise AssertionError(f"the root of pid {pid} is not an overlay")


@pytest.fixture
def pool_name():
    import uuid
    names = []

    def make():
        names.append(f"p{uuid.uuid4().hex[:8]}")
        return names[-1]
    yield make


def _delete_pool(api, name):
    try:
        api.delete_pool(name)
    except APIError as e:
        if e.status != 404:
            raise


def test_claim_starts_a_created_member_and_the_pool_refills(api, daemon, bundle, cid,
                                                            pool_name):
    b = bundle(["sh", "-c", "echo started; exec tail -f /dev/null"])
    name = pool_name()
    try:
        created = api.create_pool(name, b, 2)
        assert created["size"] == 2 and created["bundlePath"] == b
        wait_ready(api, name, 2)
        idle = members(daemon.state_dir, name)
        # The runtime's create is done; nothing of the process runs yet.
        assert sorted(c["status"] for c in idle.values()) == ["created", "created"]
        # Members are not the user's containers.
        assert not any(c["id"].startswith("pool+") for c in api.list())

        c = cid()
        got = api.claim(c, name, labels={"app": "web"}, name=c + "-n")
        assert got["id"] == c and got["name"] == c + "-n"
        assert got["status"] == "running" and got["labels"] == {"app": "web"}
        assert got["pool"] == name and got["runtimeId"] in idle
        pid = got["pid"]
        assert host_pid_alive(pid)
        assert runc_list(daemon.state_dir)[got["runtimeId"]]["status"] == "running"
        assert idle[got["runtimeId"]]["pid"] == pid
        wait_until(lambda: "started" in logs_text(api, c), 10, what="the process's output")
        assert api.exec_sync(c, ["echo", "hi"])["stdout"] == "hi\n"
        assert [x["id"] for x in api.list() if x["id"] == c] == [c]

        # Refilled in the background to 2 idle members, the claimed one not
        # among them.
        p = wait_ready(api, name, 2)
        assert p["claimed"] == 1
        now = members(daemon.state_dir, name)
        assert len([k for k, v in now.items() if v["status"] == "created"]) == 2
        assert got["runtimeId"] in now

        # An ordinary container from here on: stop and delete as usual.
        api.stop(c, timeout=1)
        assert api.get(c)["status"] == "stopped"
        api.delete(c)
        wait_until(lambda: got["runtimeId"] not in runc_list(daemon.state_dir), 10,
                   what="the runtime state of the claimed container to go")
        assert not host_pid_alive(pid)
    finally:
        _delete_pool(api, name)


def test_claim_events_name_the_users_id(api, bundle, cid, pool_name):
    name = pool_name()
    try:
        api.create_pool(name, bundle(), 1)
        wait_ready(api, name, 1)
        c = cid()
        start = api.claim(c, name)
        lines = api.stream("/events", {"since": 0, "follow": "false"})
        events = [e for e in map(json.loads, filter(None, lines)) if e["id"] == c]
        assert [e["type"] for e in events] == ["start-container"]
        assert events[0]["pid"] == start["pid"]
        api.delete(c, force=True)
    finally:
        _delete_pool(api, name)


def test_empty_pool_falls_back_to_a_normal_start(api, daemon, bundle, cid, pool_name):
    name = pool_name()
    try:
        api.create_pool(name, bundle(), 0)
        c = cid()
        got = api.claim(c, name)
        assert got["status"] == "running" and host_pid_alive(got["pid"])
        assert "runtimeId" not in got and got["pool"] == name
        assert c in runc_list(daemon.state_dir)
        assert api.pool(name)["fallbacks"] == 1
        api.delete(c, force=True)
    finally:
        _delete_pool(api, name)


def test_a_member_that_died_idle_is_never_claimed(api, daemon, bundle, cid, pool_name):
    name = pool_name()
    try:
        api.create_pool(name, bundle(), 1)
        wait_ready(api, name, 1)
        (dead_id, dead), = members(daemon.state_dir, name).items()
        os.kill(dead["pid"], signal.SIGKILL)
        wait_until(lambda: not host_pid_alive(dead["pid"]), 10, what="the member to die")
        c = cid()
        got = api.claim(c, name)
        assert got["status"] == "running" and host_pid_alive(got["pid"])
        assert got.get("runtimeId") != dead_id and got["pid"] != dead["pid"]
        wait_until(lambda: dead_id not in runc_list(daemon.state_dir), 20,
                   what="the dead member's runtime state to go")
        assert dead_id not in shim_dirs(daemon.state_dir, name)
        api.delete(c, force=True)
    finally:
        _delete_pool(api, name)


def test_delete_pool_removes_idle_members_and_leaves_nothing(api, daemon, bundle, cid,
                                                              pool_name):
    name = pool_name()
    api.create_pool(name, bundle(), 3)
    wait_ready(api, name, 3)
    c = cid()
    kept = api.claim(c, name)
    wait_ready(api, name, 3)
    idle = {k: v for k, v in members(daemon.state_dir, name).items()
            if k != kept["runtimeId"]}
    assert len(idle) == 3
    api.delete_pool(name)
    with pytest.raises(APIError) as e:
        api.pool(name)
    assert e.value.status == 404
    # Idle members: runtime state, processes, shim dirs and records gone.
    assert set(members(daemon.state_dir, name)) == {kept["runtimeId"]}
    for m in idle.values():
        wait_until(lambda: not host_pid_alive(m["pid"]), 10, what=f"member pid {m['pid']}")
    assert shim_dirs(daemon.state_dir, name) == [kept["runtimeId"]]
    assert not os.path.exists(os.path.join(daemon.state_dir, "data", "pools", name))
    # The claimed container is the user's and keeps running.
    assert api.get(c)["status"] == "running" and host_pid_alive(kept["pid"])
    api.delete(c, force=True)
    assert members(daemon.state_dir, name) == {}
    assert shim_dirs(daemon.state_dir, name) == []


def test_pool_errors(api, bundle, cid, pool_name, tmp_path):
    name = pool_name()
    b = bundle()

    def status(method, path, body=None):
        with pytest.raises(APIError) as e:
            api.request(method, path, body)
        return e.value.status, e.value.body

    assert status("POST", f"/pools/{name}", {"bundlePath": b})[0] == 400  # no size
    assert status("POST", f"/pools/{name}", {"bundlePath": b, "size": -1})[0] == 400
    assert status("POST", f"/pools/{name}", {"bundlePath": b, "size": "2"})[0] == 400
    assert status("POST", f"/pools/{name}", {"bundlePath": b, "size": 1, "x": 1})[1][
        "field"] == "x"
    assert status("POST", f"/pools/{name}", {"bundlePath": "rel", "size": 1})[0] == 400
    assert status("POST", f"/pools/{name}",
                  {"bundlePath": str(tmp_path / "none"), "size": 1})[0] == 404
    assert status("POST", f"/pools/{name}",
                  {"bundlePath": b, "size": 1, "checkpoint": "nosuch"})[0] in (404, 501)
    assert status("POST", "/pools/-bad", {"bundlePath": b, "size": 1})[0] == 400
    assert status("POST", f"/containers/{cid()}", {"pool": "nosuch"})[0] == 404
    assert status("GET", "/pools/nosuch")[0] == 404
    assert status("DELETE", "/pools/nosuch")[0] == 404
    try:
        api.create_pool(name, b, 0)
        assert status("POST", f"/pools/{name}", {"bundlePath": b, "size": 1})[0] == 409
        code, body = status("POST", f"/containers/{cid()}", {"pool": name, "bundlePath": b})
        assert code == 400 and body["field"] == "bundlePath"
        taken = cid()
        api.claim(taken, name)
        assert status("POST", f"/containers/{taken}", {"pool": name})[0] == 409
        api.delete(taken, force=True)
        assert [p["name"] for p in api.pools() if p["name"] == name] == [name]
    finally:
        _delete_pool(api, name)


def test_members_survive_a_daemon_restart_and_dead_ones_are_removed(private_daemon, bundle,
                                                                    cid):
    d = private_daemon.start()
    api = d.client
    api.create_pool("web", bundle(), 2)
    wait_ready(api, "web", 2)
    before = members(d.state_dir, "web")
    d.kill9()
    # While the daemon is away one member dies.
    dead_id, dead = sorted(before.items())[0]
    os.kill(dead["pid"], signal.SIGKILL)
    wait_until(lambda: not host_pid_alive(dead["pid"]), 10, what="the member to die")
    d.start()
    p = wait_ready(api, "web", 2)
    assert p["size"] == 2
    now = members(d.state_dir, "web")
    alive_id = sorted(before)[1]
    assert alive_id in now and now[alive_id]["pid"] == before[alive_id]["pid"]
    assert dead_id not in now
    assert dead_id not in shim_dirs(d.state_dir, "web")
    # Still not the user's containers, and still claimable.
    assert api.list() == []
    c = cid()
    got = api.claim(c, "web")
    assert got["status"] == "running" and host_pid_alive(got["pid"])
    # A claimed container is the user's across a restart too.
    d.kill9()
    d.start()
    again = api.get(c)
    assert again["status"] == "running" and again["runtimeId"] == got["runtimeId"]
    assert got["runtimeId"] not in {k for k, v in members(d.state_dir, "web").items()
                                    if v["status"] == "created"}
    api.delete(c, force=True)
    api.delete_pool("web")
    assert members(d.state_dir, "web") == {}
    assert our_mounts(d.state_dir) == []


def test_daemon_killed_right_after_a_claims_answer(private_daemon, bundle, cid):
    """The claim answers before the member's record leaves the pool's
    store: a daemon killed at that moment comes back with the container
    the user's and the pool without it."""
    d = private_daemon
    d.env = {"CONTAINERD_PY_FAILPOINT": "pool-claim-answered"}
    d.start()
    api = d.client
    api.create_pool("web", bundle(), 1)
    wait_ready(api, "web", 1)
    c = cid()
    got = api.claim(c, "web")  # answered: the daemon dies just after
    d.proc.wait(30)
    assert d.proc.returncode == -signal.SIGKILL
    assert got["status"] == "running" and host_pid_alive(got["pid"])
    member_records = os.listdir(os.path.join(d.state_dir, "data", "pools", "web", "members"))
    assert got["runtimeId"] + ".json" in member_records  # what the kill left
    d.env = {}
    d.start()
    again = api.get(c)
    assert again["status"] == "running" and again["pid"] == got["pid"]
    assert again["runtimeId"] == got["runtimeId"]
    wait_ready(api, "web", 1)
    idle = {k for k, v in members(d.state_dir, "web").items() if v["status"] == "created"}
    assert got["runtimeId"] not in idle and len(idle) == 1
    assert got["runtimeId"] + ".json" not in os.listdir(
        os.path.join(d.state_dir, "data", "pools", "web", "members"))
    api.delete(c, force=True)
    assert not host_pid_alive(got["pid"])
    api.delete_pool("web")
    assert members(d.state_dir, "web") == {}
    assert our_mounts(d.state_dir) == []


def test_checkpoint_members_are_frozen_and_share_nothing_writable(api, daemon, bundle, cid,
                                                                   pool_name):
    if not api.info()["criu"].get("available"):
        pytest.skip("CRIU unavailable")
    b = bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; "
                "sleep 0.05; done"])
    src = cid()
    api.create(src, b)
    wait_until(lambda: read_file(api.get(src)["pid"], "/tmp/count"), 10, what="counter")
    api.checkpoint(src, "warm")
    name = pool_name()
    try:
        api.create_pool(name, b, 2, checkpoint="warm")
        assert api.pool(name)["checkpoint"] == "warm"
        wait_ready(api, name, 2)
        idle = members(daemon.state_dir, name)
        assert sorted(c["status"] for c in idle.values()) == ["paused", "paused"]
        # Frozen: the counter of an idle member does not move.
        m = next(iter(idle.values()))
        frozen = read_file(m["pid"], "/tmp/count")
        assert frozen is not None

        a, bb = cid(), cid()
        ca, cb = api.claim(a, name), api.claim(bb, name)
        assert ca["runtimeId"] != cb["runtimeId"]
        for got in (ca, cb):
            assert got["status"] == "running" and got["checkpoint"] == "warm"
            assert runc_list(daemon.state_dir)[got["runtimeId"]]["status"] == "running"
        # Thawed: both count on from the checkpoint's value.
        start = int(frozen)
        wait_until(lambda: int(read_file(ca["pid"], "/tmp/count") or 0) > start + 3, 10,
                   what="the first clone to count on")
        wait_until(lambda: int(read_file(cb["pid"], "/tmp/count") or 0) > start + 3, 10,
                   what="the second clone to count on")
        # Nothing writable shared: a file written in one is seen nowhere else.
        api.exec_sync(a, ["sh", "-c", "echo mine > /only-a"])
        assert read_file(ca["pid"], "/only-a") == "mine"
        assert read_file(cb["pid"], "/only-a") is None
        assert not os.path.exists(os.path.join(b, "rootfs", "only-a"))
        # Each root is an overlay with an upper dir of its own member's.
        uppers = [root_upperdir(x["pid"]) for x in (ca, cb)]
        for got, upper in zip((ca, cb), uppers):
            assert got["runtimeId"] in upper
        assert uppers[0] != uppers[1]
        for x in (a, bb):
            api.delete(x, force=True)
    finally:
        _delete_pool(api, name)
        api.delete(src, force=True)
    assert members(daemon.state_dir, name) == {}
    assert [m for m in our_mounts(daemon.state_dir) if name in m] == []


def test_image_pool_members_get_the_images_settings_and_own_layers(api, daemon, cid,
                                                                    pool_name, tmp_path):
    import uuid
    import archives as build  # bundles/archives.py
    ref = f"localhost/pooled-{uuid.uuid4().hex[:8]}:1"
    path = build.docker_archive(tmp_path / "app.tar", [build.dir_layer(build.BUSYBOX_ROOTFS)],
                                {"Cmd": ["tail", "-f", "/dev/null"], "Env": ["GREETING=hi"],
                                 "WorkingDir": "/etc"}, [ref])
    with open(path, "rb") as f:
        api.load(f)
    name = pool_name()
    try:
        assert api.create_pool(name, None, 2, image=ref)["image"] == ref
        wait_ready(api, name, 2)
        a, b = cid(), cid()
        ca, cb = api.claim(a, name), api.claim(b, name)
        for got in (ca, cb):
            assert got["image"]["ref"] == ref and got["status"] == "running"
        out = api.exec_sync(a, ["sh", "-c", "echo $GREETING; pwd; echo x > /mine"])
        assert out["stdout"] == "hi\n/etc\n"
        assert read_file(cb["pid"], "/mine") is None
        # Emptied, the pool falls back to a normal start of its image, which
        # gives the same container a member would: loopback only (an image
        # container made directly would join the default network).
        api.request("DELETE", f"/pools/{name}")
        api.create_pool(name, None, 0, image=ref)
        c = cid()
        fb = api.claim(c, name)
        assert api.pool(name)["fallbacks"] == 1 and fb["image"]["ref"] == ref
        assert not (fb.get("network") or {}).get("attachments")
        with open(f"/proc/{fb['pid']}/net/dev") as f:
            assert [ln.split(":")[0].strip() for ln in f.readlines()[2:]] == ["lo"]
        for x in (a, b, c):
            api.delete(x, force=True)
    finally:
        _delete_pool(api, name)
    assert members(daemon.state_dir, name) == {}
    assert [m for m in our_mounts(daemon.state_dir) if name in m] == []
