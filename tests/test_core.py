"""The containerd REST API v1 on real runc containers."""

import json
import os
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import APIError, container_gone, host_pid_alive, wait_until

COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"]


def read_counter(pid: int) -> int:
    # The host's view of the container's file, through its root.
    with open(f"/proc/{pid}/root/tmp/count") as f:
        return int(f.read().strip() or 0)


def status_of(api, cid_):
    return api.get(cid_)["state"]["status"]


def test_create_runs_a_real_container(api, bundle, cid):
    b = bundle(["sleep", "3600"], env=["PATH=/bin", "HELLO=world"])
    c = cid()
    created = api.create(c, b, labels={"app": "sleepy"})
    assert created["state"]["status"] == "running"
    pid = created["processes"][0]["pid"]
    assert host_pid_alive(pid)

    def argv():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:2]

    # `runc run --detach` returns once it told its init to exec, which may
    # not have happened yet: until then the pid is `runc init`.
    wait_until(lambda: argv() == [b"sleep", b"3600"], 10, what="init to exec sleep")
    # It runs in namespaces of its own, not the host's.
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    state = api.state()
    mine = next(x for x in state["containers"] if x["id"] == c)
    assert mine["bundlePath"] == b
    assert mine["labels"] == {"app": "sleepy"}
    assert mine["processes"][0]["args"] == ["sleep", "3600"]
    assert "HELLO=world" in mine["processes"][0]["env"]
    assert state["machine"]["cpus"] == os.cpu_count()
    assert state["machine"]["memory"] > 1 << 30
    assert api.get(c)["id"] == c
    assert any(x["id"] == c for x in api.list())
    api.delete(c, force=True)
    wait_until(lambda: not host_pid_alive(pid), 10, what="init to die")


def test_init_exit_is_reported_and_container_stays_listed(api, bundle, cid):
    c = cid()
    api.create(c, bundle(["sh", "-c", "exit 3"]))
    wait_until(lambda: status_of(api, c) == "stopped", what="container to stop")
    got = api.get(c)
    assert got["exitStatus"] == 3
    assert got["exitedAt"]
    assert got["processes"] == []
    api.delete(c)
    with pytest.raises(APIError) as e:
        api.get(c)
    assert e.value.status == 404


def test_auto_remove_forgets_the_container_when_init_exits(api, bundle, cid):
    c = cid()
    api.create(c, bundle(["true"]), autoRemove=True)

    wait_until(lambda: container_gone(api, c), what="autoRemove")


def test_pause_stops_the_counter_and_resume_restarts_it(api, bundle, cid):
    c = cid()
    pid = api.create(c, bundle(COUNTER))["processes"][0]["pid"]
    wait_until(lambda: os.path.exists(f"/proc/{pid}/root/tmp/count"), what="counter file")
    paused = api.pause(c)
    assert paused["state"]["status"] == "paused"
    before = read_counter(pid)
    time.sleep(0.6)
    assert read_counter(pid) == before, "counter advanced while paused"
    # The host agrees: every process is frozen (cgroup freezer).
    with open(f"/proc/{pid}/status") as f:
        assert any(line.startswith("State:") for line in f)
    with pytest.raises(APIError) as e:
        api.pause(c)
    assert e.value.status == 409 and e.value.body["status"] == "paused"
    assert api.resume(c)["state"]["status"] == "running"
    wait_until(lambda: read_counter(pid) > before + 2, what="counter to advance again")
    api.delete(c, force=True)


def test_patch_signal_and_process_signal(api, bundle, cid):
    c = cid()
    b = bundle(["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"])
    pid = api.create(c, b)["processes"][0]["pid"]
    time.sleep(0.3)  # let sh install its trap
    api.request("PATCH", f"/containers/{c}", {"signal": 15})
    wait_until(lambda: status_of(api, c) == "stopped", what="stop on SIGTERM")
    assert api.get(c)["exitStatus"] == 42
    assert not host_pid_alive(pid)
    api.delete(c)

    c2 = cid()
    pid2 = api.create(c2, bundle(["sleep", "3600"]))["processes"][0]["pid"]
    api.signal_process(c2, pid2, 9)
    wait_until(lambda: status_of(api, c2) == "stopped", what="stop on SIGKILL")
    assert api.get(c2)["exitStatus"] == 128 + 9
    with pytest.raises(APIError) as e:
        api.signal_process(c2, pid2, 9)
    assert e.value.status in (404, 409)
    api.delete(c2)


def test_exec_processes_are_supervised(api, bundle, cid):
    c = cid()
    api.create(c, bundle(["sleep", "3600"]))
    # A process that keeps running shows up with its host pid...
    p = api.add_process(c, ["sleep", "1000"], env=["PATH=/bin"], cwd="/tmp")
    assert p["args"] == ["sleep", "1000"] and p["cwd"] == "/tmp"
    assert host_pid_alive(p["pid"])
    procs = api.get(c)["processes"]
    assert [x["pid"] for x in procs][1:] == [p["pid"]]
    # ...and signalling it through the API kills it on the host.
    api.signal_process(c, p["pid"], 9)
    wait_until(lambda: len(api.get(c)["processes"]) == 1, what="exec'd process to leave")
    assert not host_pid_alive(p["pid"])
    # The README's other path works too, and exit statuses are recorded.
    q = api.request("PUT", f"/containers/{c}/processes", {"args": ["sh", "-c", "exit 7"]})
    status = api.request("GET", f"/containers/{c}/process/{q['pid']}/wait")
    assert status["exitStatus"] == 7
    # An unknown pid is 404.
    with pytest.raises(APIError) as e:
        api.signal_process(c, 999999, 15)
    assert e.value.status == 404
    api.delete(c, force=True)


def test_exec_process_exit_statuses_in_events(api, bundle, cid):
    c = cid()
    api.create(c, bundle(["sleep", "3600"]))
    t0 = time.time()
    q = api.add_process(c, ["sh", "-c", "exit 5"])
    wait_until(lambda: len(api.get(c)["processes"]) == 1, what="exec exit")
    events = list(api.stream("/events", {"since": str(t0), "follow": "false"}))
    exits = [json.loads(x) for x in events if x]
    mine = [e for e in exits if e["id"] == c and e["type"] == "exit" and e["pid"] == q["pid"]]
    assert mine and mine[0]["status"] == 5
    api.delete(c, force=True)


def test_delete_refuses_running_container_and_force_kills_it(api, bundle, cid, daemon):
    c = cid()
    pid = api.create(c, bundle(["sleep", "3600"]))["processes"][0]["pid"]
    with pytest.raises(APIError) as e:
        api.delete(c)
    assert e.value.status == 409 and e.value.body["status"] == "running"
    assert host_pid_alive(pid)
    api.delete(c, force=True)
    assert not host_pid_alive(pid)
    # Nothing is left: no cgroup, no shim dir, no runtime state.
    cgroups = [d for d in os.listdir("/sys/fs/cgroup/memory") if d.startswith("containerd-py")]
    for parent in cgroups:
        assert not os.path.exists(f"/sys/fs/cgroup/memory/{parent}/{c}")
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", c))
    assert not os.path.exists(os.path.join(daemon.state_dir, "runtime", "runc", c))


def test_error_table(api, bundle, cid, daemon):
    base = f"http://{daemon.address}"

    def raw(method, path, data=None, headers=None):
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers=headers or {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    b = bundle()
    cases = [
        ("POST", "/containers/bad%20id", json.dumps({"bundlePath": b}).encode(), 400),
        ("POST", "/containers/%2E%2E", json.dumps({"bundlePath": b}).encode(), 400),
        ("POST", "/containers/-leading-dash", json.dumps({"bundlePath": b}).encode(), 400),
        ("POST", "/containers/" + "a" * 129, json.dumps({"bundlePath": b}).encode(), 400),
        ("POST", "/containers/x1", b"{not json", 400),
        ("POST", "/containers/x1", b"[1,2]", 400),
        ("POST", "/containers/x1", json.dumps({}).encode(), 400),
        ("POST", "/containers/x1", json.dumps({"bundlePath": "relative/path"}).encode(), 400),
        ("POST", "/containers/x1", json.dumps({"bundlePath": "/no/such/bundle"}).encode(), 404),
        ("POST", "/containers/x1", json.dumps({"bundlePath": b, "runtime": "nope"}).encode(), 400),
        ("POST", "/containers/x1", json.dumps({"bundlePath": b, "labels": [1]}).encode(), 400),
        ("POST", "/containers/x1", json.dumps({"bundlePath": b, "checkpoint": "../x"}).encode(), 400),
        ("POST", "/containers/x1", json.dumps({"bundlePath": b, "lazy": True}).encode(), 400),
        ("POST", "/containers/x1", b"{" + b'"a":"' + b"x" * (2 << 20) + b'"}', 413),
        ("GET", "/containers/nosuch", None, 404),
        ("PATCH", "/containers/nosuch", json.dumps({"status": "paused"}).encode(), 404),
        ("PUT", "/containers/nosuch/process", json.dumps({"args": ["true"]}).encode(), 404),
        ("DELETE", "/containers/nosuch", None, 404),
        ("GET", "/no/such/route", None, 404),
    ]
    for method, path, data, want in cases:
        status, body = raw(method, path, data)
        assert status == want, (method, path, status, body)
        assert isinstance(body, dict) and body.get("error"), (method, path, body)

    c = cid()
    api.create(c, b)
    status, body = raw("POST", f"/containers/{c}", json.dumps({"bundlePath": b}).encode())
    assert status == 409 and c in body["error"]
    for bad in ({"status": "sleeping"}, {"signal": 0}, {"signal": "TREM"}, {"bogus": 1}):
        status, body = raw("PATCH", f"/containers/{c}", json.dumps(bad).encode())
        assert status == 400, (bad, body)
    for bad in ({}, {"args": []}, {"args": "ls"}, {"args": ["ls"], "user": {"uid": -1}},
                {"args": ["ls"], "cwd": "relative"}):
        status, body = raw("PUT", f"/containers/{c}/process", json.dumps(bad).encode())
        assert status == 400, (bad, body)
    # A command the container does not have is a 400 with the runtime's own words.
    status, body = raw("PUT", f"/containers/{c}/process",
                       json.dumps({"args": ["/no/such/binary"]}).encode())
    assert status == 400 and "no such file" in body["error"].lower(), body
    assert body["field"] == "args"
    # The daemon is still up, the container still fine, nothing half-created.
    assert api.get(c)["state"]["status"] == "running"
    assert len(api.get(c)["processes"]) == 1
    assert not any(x["id"] == "x1" for x in api.list())
    api.delete(c, force=True)


def test_failed_create_leaves_nothing_behind(api, bundle, cid, daemon):
    c = cid()
    b = bundle(["/no/such/init"])
    with pytest.raises(APIError) as e:
        api.create(c, b)
    # The bundle's command is not in its rootfs: the user's mistake, a 400.
    assert e.value.status == 400 and "no such file" in e.value.body["error"].lower()
    with pytest.raises(APIError):
        api.get(c)
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", c))
    # The id is free again.
    api.create(c, bundle(["sleep", "10"]))
    api.delete(c, force=True)


def test_fifty_concurrent_creates(api, bundle, cid):
    b = bundle(["sleep", "3600"])
    ids = [cid("conc") for _ in range(50)]
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: api.create(i, b), ids))
    pids = {r["processes"][0]["pid"] for r in results}
    assert len(pids) == 50 and all(host_pid_alive(p) for p in pids)
    assert {c["id"] for c in api.list(status="running")} >= set(ids)
    # Same id twice at once: exactly one wins.
    dup = cid("dup")
    outcomes = []

    def attempt():
        try:
            api.create(dup, b)
            outcomes.append(201)
        except APIError as e:
            outcomes.append(e.status)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [201, 409, 409, 409]
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: api.delete(i, force=True), ids + [dup]))
    assert not any(host_pid_alive(p) for p in pids)


def test_events_stream_and_replay(api, bundle, cid):
    c = cid()
    got = []
    t0 = time.time()
    stream = api.stream("/events")

    def reader():
        for line in stream:
            if line:
                ev = json.loads(line)
                if ev["id"] == c:
                    got.append(ev)
                    if ev["type"] == "delete":
                        return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.2)
    api.create(c, bundle(["sleep", "3600"]))
    api.pause(c)
    api.resume(c)
    api.delete(c, force=True)
    t.join(15)
    types = [e["type"] for e in got]
    assert types[0] == "start-container"
    for want in ("pause", "resume", "exit", "delete"):
        assert want in types, types
    assert all(e["timestamp"] and "ns" in e for e in got)
    # Replay from the journal: the same events, in order.
    replay = [json.loads(x) for x in api.stream("/events", {"since": str(t0), "follow": "false"})
              if x]
    assert [e["type"] for e in replay if e["id"] == c] == types
    # `since` past the first event leaves it out.
    later = [json.loads(x) for x in api.stream(
        "/events", {"since": got[0]["timestamp"], "follow": "false"}) if x]
    assert [e["type"] for e in later if e["id"] == c] == types[1:]


def test_daemon_kill9_loses_nothing(private_daemon, bundle, cid):
    d = private_daemon.start()
    api = d.client
    survivor, dier, paused = cid("keep"), cid("die"), cid("paused")
    pid_keep = api.create(survivor, bundle(["sleep", "3600"]))["processes"][0]["pid"]
    pid_die = api.create(dier, bundle(["sh", "-c", "read x; exit 9"]))["processes"][0]["pid"]
    api.create(paused, bundle(COUNTER))
    api.pause(paused)
    exec_pid = api.add_process(survivor, ["sh", "-c", "read x; exit 4"])["pid"]
    shim_pids = {c["id"]: _shim_pid(d, c["id"]) for c in api.list()}

    d.kill9()
    # Containers and shims keep running without the daemon.
    assert host_pid_alive(pid_keep) and host_pid_alive(pid_die)
    assert all(host_pid_alive(p) for p in shim_pids.values())
    # While it is down, one container exits, and an exec'd process.
    os.kill(pid_die, signal.SIGKILL)
    os.kill(exec_pid, signal.SIGKILL)
    wait_until(lambda: not host_pid_alive(shim_pids[dier]), what="shim of the exited container")
    t_down = time.time()

    d.start()
    keep = api.get(survivor)
    assert keep["state"]["status"] == "running"
    assert keep["processes"][0]["pid"] == pid_keep
    assert [p["pid"] for p in keep["processes"]] == [pid_keep]
    died = api.get(dier)
    assert died["state"]["status"] == "stopped" and died["exitStatus"] == 137
    assert api.get(paused)["state"]["status"] == "paused"
    events = [json.loads(x) for x in api.stream("/events", {"since": "0", "follow": "false"}) if x]
    assert any(e["type"] == "exit" and e["id"] == dier and e["status"] == 137 for e in events)
    assert any(e["type"] == "exit" and e.get("pid") == exec_pid and e["status"] == 137
               for e in events)
    assert api.request("GET", f"/containers/{survivor}/process/{exec_pid}/wait")["exitStatus"] == 137
    assert t_down  # the exit happened while the daemon was down
    # And it can still act on them.
    api.resume(paused)
    api.pause(survivor)
    api.resume(survivor)
    api.kill(survivor, 9)
    wait_until(lambda: api.get(survivor)["state"]["status"] == "stopped", what="stop after restart")
    assert api.get(survivor)["exitStatus"] == 137
    for c in (survivor, dier, paused):
        api.delete(c, force=True)
    assert not host_pid_alive(pid_keep)


def test_sigterm_stops_daemon_but_not_containers(private_daemon, bundle, cid):
    d = private_daemon.start()
    c = cid()
    pid = d.client.create(c, bundle(["sleep", "3600"]))["processes"][0]["pid"]
    d.stop()
    assert d.proc.returncode == 0
    assert host_pid_alive(pid)
    d.start()
    assert d.client.get(c)["processes"][0]["pid"] == pid
    d.client.delete(c, force=True)


def _shim_pid(d, c) -> int:
    with open(os.path.join(d.state_dir, "shims", c, "shim.pid")) as f:
        return int(f.read())


def test_crun_runtime(api, bundle, cid):
    c = cid("crun")
    try:
        created = api.create(c, bundle(["sleep", "3600"]), runtime="crun")
    except APIError as e:
        if "hybrid" in e.body.get("error", ""):
            pytest.skip(f"crun refuses this host's cgroup layout: {e.body['error']}")
        raise
    pid = created["processes"][0]["pid"]
    assert host_pid_alive(pid)
    assert api.get(c)["runtime"] == "crun"
    api.pause(c)
    api.resume(c)
    api.delete(c, force=True)
    assert not host_pid_alive(pid)


def test_longest_valid_id_works_end_to_end(api, bundle, cid):
    # 128 characters: the shim's sockets could not live in a dir named by it.
    c = ("long" + cid("x") + "z" * 128)[:128]
    pid = api.create(c, bundle(["sleep", "3600"]))["processes"][0]["pid"]
    assert host_pid_alive(pid)
    p = api.add_process(c, ["sleep", "100"], terminal=True)
    assert os.readlink(f"/proc/{p['pid']}/fd/0").startswith("/dev/pts/")
    api.pause(c)
    api.resume(c)
    api.delete(c, force=True)
    assert not host_pid_alive(pid)
