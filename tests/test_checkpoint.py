"""Checkpoint and restore (issue 3) with real runc containers and real CRIU.

Everything is asserted the way a user would check it on the host: host
pids, files under /proc/PID/root, the images in <bundle>/checkpoints/,
shims, cgroups and /proc/mounts.
"""

import asyncio
import glob
import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from conftest import APIError, host_pid_alive, logs_text, wait_until

# A counter and a value that lives only in the shell's memory: $x is drawn
# once, at start; a process started afresh would draw another one and start
# counting at 1 again.
STATEFUL = ["sh", "-c",
            "x=$RANDOM$RANDOM$RANDOM; i=0; while true; do i=$((i+1)); "
            "echo $i > /tmp/count; echo $x > /tmp/v; sleep 0.05; done"]


@pytest.fixture(autouse=True)
def _needs_criu(api):
    status = api.info()["criu"]
    if not status.get("available"):
        pytest.skip(f"CRIU unavailable: {status.get('reason')}")


# -- host-side helpers ----------------------------------------------------------

def read_file(pid: int, path: str) -> str | None:
    """A file of the container as the host sees it, through its root."""
    try:
        with open(f"/proc/{pid}/root{path}") as f:
            return f.read().strip() or None
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None


def counter(pid: int) -> int:
    return int(wait_until(lambda: read_file(pid, "/tmp/count"), 10, 0.01,
                          what=f"/tmp/count of pid {pid}"))


def memory_value(pid: int) -> str:
    return wait_until(lambda: read_file(pid, "/tmp/v"), 10, 0.01, what=f"/tmp/v of pid {pid}")


def init_pid(api, c) -> int:
    return api.get(c)["processes"][0]["pid"]


def status_of(api, c) -> str:
    return api.get(c)["state"]["status"]


def shim_pid(daemon, c) -> int:
    with open(os.path.join(daemon.state_dir, "shims", c, "shim.pid")) as f:
        return int(f.read())


def cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def pidns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def mounts_under(path: str) -> list[str]:
    with open("/proc/mounts") as f:
        points = [ln.split()[1] for ln in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


def cgroup_dirs(c: str) -> list[str]:
    """The container's cgroup dirs left on the host (every hierarchy)."""
    return glob.glob(f"/sys/fs/cgroup/*/containerd-py*/{c}") + \
        glob.glob(f"/sys/fs/cgroup/containerd-py*/{c}")


def events_since(api, t0: float) -> list[dict]:
    return [json.loads(x) for x in api.stream("/events", {"since": str(t0), "follow": "false"})
            if x]


def raw(daemon, method, path, body=None):
    """An HTTP request sent exactly as written (no client-side quoting)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{daemon.address}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def assert_continues(pid: int, at_checkpoint: int, x: str) -> int:
    """The restored process carried on from its memory: the counter goes on
    from where it was (a fresh start would be back at 1) and $x is the value
    drawn before the checkpoint."""
    first = counter(pid)
    assert first >= at_checkpoint, f"counter restarted: {first} < {at_checkpoint}"
    wait_until(lambda: counter(pid) > first + 2, 10, what="restored counter to advance")
    assert counter(pid) > at_checkpoint
    assert memory_value(pid) == x, "the in-memory value was not restored"
    return first


def attach_say(daemon, c: str, line: str, timeout: float = 10) -> str:
    """Send a line to init's stdin over GET /containers/{id}/attach (a
    websocket) and return the first line of output that follows."""
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://{daemon.address}/containers/{c}/attach") as ws:
                await ws.send_str(line + "\n")
                msg = await asyncio.wait_for(ws.receive(), timeout)
                return msg.data.rstrip("\n") if isinstance(msg.data, str) else repr(msg)
    return asyncio.run(go())


def start_stateful(api, bundle, cid, **opts):
    b = bundle(STATEFUL, **opts)
    c = cid("orig")
    pid = api.create(c, b)["processes"][0]["pid"]
    wait_until(lambda: (read_file(pid, "/tmp/count") or "0").isdigit()
               and int(read_file(pid, "/tmp/count") or 0) >= 5, 10,
               what="counter to get going")
    return b, c, pid, memory_value(pid)


# -- tests ------------------------------------------------------------------------

def test_checkpoint_leave_running_lists_images_and_clone_continues(api, daemon, bundle, cid):
    b, c, pid, x = start_stateful(api, bundle, cid)
    before = counter(pid)
    t_cp = time.time()
    meta = api.checkpoint(c, "cp1")
    assert meta["name"] == "cp1" and meta["exit"] is False
    assert meta["size"] > 0 and meta["created"]
    # The container keeps running: same host pid, still counting.
    assert status_of(api, c) == "running"
    assert init_pid(api, c) == pid and host_pid_alive(pid)
    wait_until(lambda: counter(pid) > before + 3, what="original to keep counting")
    # Listed with its metadata, and the images are in the bundle.
    listed = api.checkpoints(c)
    assert [m["name"] for m in listed] == ["cp1"]
    m = listed[0]
    for key in ("exit", "tcp", "unixSockets", "shell"):
        assert m[key] is False, (key, m)
    assert m["size"] > 0 and m["created"] == meta["created"]
    images = os.path.join(b, "checkpoints", "cp1")
    files = os.listdir(images)
    assert "inventory.img" in files and any(f.startswith("pages-") for f in files), files
    assert sum(os.path.getsize(os.path.join(images, f)) for f in files) > 0
    # Nothing half-written is left next to it.
    assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["cp1"]
    assert any(e["type"] == "checkpoint" and e["id"] == c and e["checkpoint"] == "cp1"
               for e in events_since(api, t_cp))

    # Restore into a new id: the clone goes on from the checkpoint's memory.
    clone = cid("clone")
    t0 = time.time()
    created = api.create(clone, b, checkpoint="cp1")
    assert created["state"]["status"] == "running"
    cpid = created["processes"][0]["pid"]
    assert cpid != pid and host_pid_alive(cpid)
    assert_continues(cpid, before, x)
    assert api.get(clone).get("checkpoint") == "cp1"
    # Original and clone are two processes in two pid namespaces.
    assert pidns(cpid) != pidns(pid)
    assert host_pid_alive(pid)

    # Appears in /state with its process, and in the events.
    st = next(s for s in api.state()["containers"] if s["id"] == clone)
    assert st["state"]["status"] == "running"
    assert [p["pid"] for p in st["processes"]] == [cpid]
    assert st["processes"][0]["args"] == STATEFUL
    evs = [e for e in events_since(api, t0) if e["id"] == clone]
    assert evs and evs[0]["type"] == "start-container" and evs[0]["pid"] == cpid
    # A shim of its own.
    sp = shim_pid(daemon, clone)
    assert host_pid_alive(sp) and sp != shim_pid(daemon, c)
    # It can be exec'd into (and sees the restored tmpfs), paused and deleted.
    out = api.exec_sync(clone, ["cat", "/tmp/v"])
    assert out["exitStatus"] == 0 and out["stdout"].strip() == x
    api.pause(clone)
    frozen = counter(cpid)
    time.sleep(0.4)
    assert counter(cpid) == frozen, "clone kept counting while paused"
    api.resume(clone)
    wait_until(lambda: counter(cpid) > frozen, what="clone to count after resume")
    api.delete(clone, force=True)
    assert not host_pid_alive(cpid)
    wait_until(lambda: not host_pid_alive(sp), 10, what="clone's shim to exit")
    assert not mounts_under(os.path.join(daemon.state_dir, "shims", clone))
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", clone))
    # The original never noticed.
    assert host_pid_alive(pid) and status_of(api, c) == "running"

    api.delete_checkpoint(c, "cp1")
    assert api.checkpoints(c) == []
    assert not os.path.exists(images)
    api.delete(c, force=True)


def test_checkpoint_exit_then_start_from_checkpoint_in_same_id(api, daemon, bundle, cid):
    b, c, pid, x = start_stateful(api, bundle, cid)
    before = counter(pid)
    old_shim = shim_pid(daemon, c)
    meta = api.checkpoint(c, "stop-here", exit=True)
    assert meta["exit"] is True
    # The container is stopped, its process gone.
    assert status_of(api, c) == "stopped"
    wait_until(lambda: not host_pid_alive(pid), 10, what="checkpointed process to go")
    assert api.get(c)["processes"] == []
    assert api.checkpoints(c)[0]["exit"] is True
    # A stopped container cannot be checkpointed.
    with pytest.raises(APIError) as e:
        api.checkpoint(c, "again")
    assert e.value.status == 409
    assert [m["name"] for m in api.checkpoints(c)] == ["stop-here"]

    t0 = time.time()
    started = api.request("POST", f"/containers/{c}/start", {"checkpoint": "stop-here"})
    assert started["id"] == c and started["state"]["status"] == "running"
    npid = started["processes"][0]["pid"]
    assert npid != pid and host_pid_alive(npid)
    last = assert_continues(npid, before, x)
    assert last >= before
    # The restored process is the container's init, in a pid namespace of
    # its own, under a new shim, with a cgroup named after the container.
    assert c in cgroup_of(npid)
    sp = shim_pid(daemon, c)
    assert sp != old_shim and host_pid_alive(sp)
    types = [e["type"] for e in events_since(api, t0) if e["id"] == c]
    assert "start-container" in types, types
    top = api.top(c)
    assert npid in [p["pid"] for p in top["processes"]]
    out = api.exec_sync(c, ["sh", "-c", "cat /tmp/count"])
    assert out["exitStatus"] == 0 and int(out["stdout"]) >= before
    api.pause(c)
    assert status_of(api, c) == "paused"
    api.resume(c)
    # stop works on the restored init like on any other.
    api.stop(c, timeout=1)
    assert status_of(api, c) == "stopped"
    assert not host_pid_alive(npid)
    api.delete_checkpoint(c, "stop-here")
    api.delete(c)
    assert not mounts_under(os.path.join(daemon.state_dir, "shims", c))


def test_four_clones_restored_concurrently_are_isolated(api, daemon, bundle, cid):
    b, c, pid, x = start_stateful(api, bundle, cid)
    before = counter(pid)
    api.checkpoint(c, "base")
    clones = [cid(f"clone{i}") for i in range(4)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        created = list(pool.map(lambda i: api.create(i, b, checkpoint="base"), clones))
    elapsed = time.monotonic() - t0
    pids = [r["processes"][0]["pid"] for r in created]
    assert len(set(pids)) == 4 and all(host_pid_alive(p) for p in pids)
    shims = [shim_pid(daemon, k) for k in clones]
    assert len(set(shims)) == 4 and all(host_pid_alive(s) for s in shims)
    cgroups = [cgroup_of(p) for p in pids]
    assert len(set(cgroups)) == 4
    for k, cg in zip(clones, cgroups):
        assert k in cg, cg
        assert cgroup_dirs(k), f"no cgroup dir for {k}"
    assert len({pidns(p) for p in pids}) == 4
    # Each carries on from the one checkpoint, with the same memory.
    for p in pids:
        assert_continues(p, before, x)

    # Writes are private: each clone writes its own file at / (the overlay
    # makes the root writable) and changes /etc/hostname.
    for k in clones:
        out = api.exec_sync(k, ["sh", "-c", f"echo {k} > /{k} && echo {k} > /etc/hostname"])
        assert out["exitStatus"] == 0, out
    for k, p in zip(clones, pids):
        out = api.exec_sync(k, ["ls", "/"])
        seen = set(out["stdout"].split())
        assert k in seen
        assert not seen & (set(clones) - {k}), (k, seen)
        assert read_file(p, "/etc/hostname") == k
        assert read_file(p, f"/{k}") == k
    rootfs = json.load(open(os.path.join(b, "config.json")))["root"]["path"]
    rootfs = os.path.join(b, rootfs)
    for k in clones:
        assert not os.path.exists(os.path.join(rootfs, k)), "a clone wrote into the bundle"
    with open(os.path.join(rootfs, "etc/hostname")) as f:
        assert f.read().strip() not in clones
    # The original still sees the bundle's rootfs as it was.
    assert read_file(pid, "/etc/hostname") not in clones
    shim_dirs = [os.path.join(daemon.state_dir, "shims", k) for k in clones]
    assert all(mounts_under(d) for d in shim_dirs), "clones run without an overlay?"

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: api.delete(k, force=True), clones))
    assert not any(host_pid_alive(p) for p in pids)
    for d in shim_dirs:
        assert not mounts_under(d), mounts_under(d)
        assert not os.path.exists(d)
    for k in clones:
        wait_until(lambda: not cgroup_dirs(k), 10, what=f"cgroups of {k} to go")
    assert host_pid_alive(pid)
    api.delete_checkpoint(c, "base")
    api.delete(c, force=True)
    print(f"4 concurrent restores: {elapsed:.2f}s")


def test_lazy_restore(api, daemon, bundle, cid):
    b, c, pid, x = start_stateful(api, bundle, cid)
    before = counter(pid)
    api.checkpoint(c, "lazy")
    clone = cid("lazy")
    created = api.create(clone, b, checkpoint="lazy", lazy=True)
    cpid = created["processes"][0]["pid"]
    assert host_pid_alive(cpid)
    # The pages came from `criu lazy-pages`, not from the restore itself.
    work = os.path.join(daemon.state_dir, "shims", clone, "criu-work")
    assert os.path.exists(os.path.join(work, "lazy-pages.log")), os.listdir(work)
    assert_continues(cpid, before, x)
    assert api.exec_sync(clone, ["cat", "/tmp/v"])["stdout"].strip() == x
    api.delete(clone, force=True)
    assert not host_pid_alive(cpid)
    assert not mounts_under(os.path.join(daemon.state_dir, "shims", clone))
    api.delete_checkpoint(c, "lazy")
    api.delete(c, force=True)


def test_checkpoint_with_running_exec_process_is_refused(api, daemon, bundle, cid):
    """runc/CRIU dump init's process tree only, and a `runc exec` process is
    a child of the shim, not of init: a checkpoint would silently lose it.
    The daemon refuses with 409 instead, and works again once it is gone."""
    b = bundle(STATEFUL)
    c, clone = cid("withexec"), cid("clone")
    try:
        pid = api.create(c, b)["processes"][0]["pid"]
        counter(pid)
        worker = api.add_process(c, ["sh", "-c", "while true; do sleep 0.1; done"])
        wpid = worker["pid"]
        assert pidns(wpid) == pidns(pid)
        with pytest.raises(APIError) as e:
            api.checkpoint(c, "two")
        assert e.value.status == 409
        assert e.value.body["pids"] == [wpid] and "exec" in e.value.body["error"]
        assert api.checkpoints(c) == []
        assert not os.path.exists(os.path.join(b, "checkpoints", "two"))
        assert host_pid_alive(pid) and host_pid_alive(wpid)
        # Once the exec'd process is gone, the checkpoint goes through.
        api.signal_process(c, wpid, 9)
        wait_until(lambda: len(api.get(c)["processes"]) == 1, what="exec'd process to leave")
        api.checkpoint(c, "two")
        cpid = api.create(clone, b, checkpoint="two")["processes"][0]["pid"]
        assert host_pid_alive(cpid)
        api.delete(clone, force=True)
        api.delete_checkpoint(c, "two")
    finally:
        for k in (clone, c):
            try:
                api.delete(k, force=True)
            except APIError:
                pass


def test_checkpoint_errors(api, daemon, bundle, cid):
    b = bundle(["tail", "-f", "/dev/null"])
    c = cid("errs")
    pid = api.create(c, b)["processes"][0]["pid"]
    api.checkpoint(c, "one")
    # Duplicate name.
    with pytest.raises(APIError) as e:
        api.checkpoint(c, "one")
    assert e.value.status == 409
    # Names that could leave the checkpoints dir, or hide in it.
    for bad in ("%2E%2E", "..", "a%2Fb", "%2Fetc", ".hidden", "-x", "a%00b", "a" * 129):
        status, body = raw(daemon, "POST", f"/containers/{c}/checkpoint/{bad}", {})
        assert status == 400, (bad, status, body)
        assert body and body.get("error"), (bad, body)
        status, body = raw(daemon, "DELETE", f"/containers/{c}/checkpoint/{bad}")
        assert status == 400, ("DELETE", bad, status, body)
    for bad in ("..", "../x", "a/b", ".hidden", "", 5):
        status, body = raw(daemon, "POST", f"/containers/{cid()}",
                           {"bundlePath": b, "checkpoint": bad})
        assert status == 400, (bad, status, body)
        status, body = raw(daemon, "POST", f"/containers/{c}/start", {"checkpoint": bad})
        assert status in (400, 409), (bad, status, body)
    status, body = raw(daemon, "POST", f"/containers/{c}/checkpoint/x", {"bogus": True})
    assert status == 400, body
    status, body = raw(daemon, "POST", f"/containers/{c}/checkpoint/x", {"exit": "yes"})
    assert status == 400, body
    assert [m["name"] for m in api.checkpoints(c)] == ["one"]
    assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["one"]
    assert os.path.isdir("/etc") and not os.path.exists(os.path.join(b, "x"))
    # Unknown names: 404.
    with pytest.raises(APIError) as e:
        api.delete_checkpoint(c, "nope")
    assert e.value.status == 404
    with pytest.raises(APIError) as e:
        api.create(cid(), b, checkpoint="nope")
    assert e.value.status == 404
    # Unknown container: 404.
    with pytest.raises(APIError) as e:
        api.checkpoint("no-such-container", "x")
    assert e.value.status == 404
    # A deleted checkpoint cannot be restored.
    api.delete_checkpoint(c, "one")
    failed = cid("fromdeleted")
    with pytest.raises(APIError) as e:
        api.create(failed, b, checkpoint="one")
    assert e.value.status == 404, e.value.body
    with pytest.raises(APIError):
        api.get(failed)
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", failed))
    # Start from a checkpoint needs a stopped container.
    api.checkpoint(c, "two")
    with pytest.raises(APIError) as e:
        api.request("POST", f"/containers/{c}/start", {"checkpoint": "two"})
    assert e.value.status == 409
    api.kill(c, 9)
    wait_until(lambda: status_of(api, c) == "stopped", what="stop")
    with pytest.raises(APIError) as e:
        api.request("POST", f"/containers/{c}/start", {"checkpoint": "gone"})
    assert e.value.status == 404
    assert status_of(api, c) == "stopped"
    api.delete_checkpoint(c, "two")
    assert api.checkpoints(c) == []
    assert not host_pid_alive(pid)
    api.delete(c)


def test_criu_failure_is_500_with_its_log_and_leaves_container_running(api, daemon, bundle,
                                                                        cid):
    # An established TCP connection (over the container's own loopback):
    # CRIU refuses to dump it unless told to (--tcp-established).
    b = bundle(["sh", "-c", "tail -f /dev/null | nc -l -p 5555 > /dev/null & sleep 0.3; "
                "tail -f /dev/null | nc 127.0.0.1 5555"])
    c = cid("tcp")
    pid = api.create(c, b)["processes"][0]["pid"]

    def established():  # both ends, as the host sees the container's netns
        n = 0
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{pid}/net/{table}") as f:
                n += sum(1 for ln in f.readlines()[1:] if ln.split()[3] == "01")
        return n >= 2

    wait_until(established, 10, what="the TCP connection")
    procs_before = sorted(p["pid"] for p in api.top(c)["processes"])
    with pytest.raises(APIError) as e:
        api.checkpoint(c, "nope")
    assert e.value.status == 500, e.value.body
    err = e.value.body["error"]
    # CRIU's own words: the cause, not just "Dumping FAILED".
    assert "checkpoint failed" in err and "dump.log" in err, err
    assert "Connected TCP socket" in err and "--tcp-established" in err, err
    # Nothing listed, nothing half-written, and the container still runs.
    assert api.checkpoints(c) == []
    assert [f for f in os.listdir(os.path.join(b, "checkpoints"))] == []
    assert status_of(api, c) == "running" and host_pid_alive(pid)
    assert sorted(p["pid"] for p in api.top(c)["processes"]) == procs_before
    assert established()
    assert api.exec_sync(c, ["true"])["exitStatus"] == 0
    # The same name is free: nothing of the failure stayed behind. (With
    # the sockets gone; "tcp": true cannot help on this host: its kernel
    # refuses CRIU's SO_PASSCRED getsockopt on inet sockets.)
    assert api.exec_sync(c, ["killall", "nc"])["exitStatus"] == 0
    wait_until(lambda: not established(), 10, what="the connection to close")
    meta = api.checkpoint(c, "nope")
    assert meta["tcp"] is False
    assert [m["name"] for m in api.checkpoints(c)] == ["nope"]
    assert host_pid_alive(pid)
    api.delete_checkpoint(c, "nope")
    api.delete(c, force=True)


def test_restored_container_survives_daemon_kill9(private_daemon, bundle, cid):
    d = private_daemon.start()
    api = d.client
    b, c, pid, x = start_stateful(api, bundle, cid)
    before = counter(pid)
    api.checkpoint(c, "cp")
    keep, die = cid("keep"), cid("die")
    kpid = api.create(keep, b, checkpoint="cp")["processes"][0]["pid"]
    dpid = api.create(die, b, checkpoint="cp")["processes"][0]["pid"]
    kshim, dshim = shim_pid(d, keep), shim_pid(d, die)
    assert_continues(kpid, before, x)

    d.kill9()
    assert host_pid_alive(kpid) and host_pid_alive(dpid)
    assert host_pid_alive(kshim) and host_pid_alive(dshim)
    # One of them dies while the daemon is down.
    os.kill(dpid, signal.SIGKILL)
    wait_until(lambda: not host_pid_alive(dshim), 10, what="the dead clone's shim to exit")
    wait_until(lambda: counter(kpid) > before + 5, what="the clone to count unsupervised")

    d.start()
    got = api.get(keep)
    assert got["state"]["status"] == "running"
    assert got["processes"][0]["pid"] == kpid
    assert memory_value(kpid) == x
    dead = api.get(die)
    assert dead["state"]["status"] == "stopped" and dead["exitStatus"] == 137
    evs = events_since(api, 0)
    assert any(e["type"] == "exit" and e["id"] == die and e["status"] == 137 for e in evs)
    # Still fully manageable.
    assert api.exec_sync(keep, ["cat", "/tmp/v"])["stdout"].strip() == x
    api.stop(keep, timeout=1)
    assert status_of(api, keep) == "stopped" and not host_pid_alive(kpid)
    for k in (keep, die):
        api.delete(k)
        assert not mounts_under(os.path.join(d.state_dir, "shims", k))
    api.delete_checkpoint(c, "cp")
    api.delete(c, force=True)
    assert not mounts_under(d.state_dir)


def test_pyapp_restored_warm_answers_without_starting_again(api, daemon, cid, tmp_path):
    from build import pyapp_bundle

    b = str(pyapp_bundle(tmp_path / "pyapp"))
    c = cid("py")
    t0 = time.monotonic()
    pid = api.create(c, b)["processes"][0]["pid"]
    wait_until(lambda: "ready" in logs_text(api, c).split("\n"), 60, 0.02,
               what="the cold app to print ready")
    cold = time.monotonic() - t0
    assert attach_say(daemon, c, "before") == "pong before"

    api.checkpoint(c, "warm")
    clone = cid("pywarm")
    t1 = time.monotonic()
    cpid = api.create(clone, b, checkpoint="warm")["processes"][0]["pid"]
    restore = time.monotonic() - t1
    with open(f"/proc/{cpid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[1] == b"/app/app.py"
    # It answers at once, on the new container's stdin, without initialising
    # again: its log never says ready nor app: (that was before the
    # checkpoint), only the answer.
    assert attach_say(daemon, clone, "after") == "pong after"
    answered = time.monotonic() - t1
    lines = logs_text(api, clone).split("\n")
    assert lines == ["pong after"], lines
    # The original still answers on its own stdin, and only there.
    assert attach_say(daemon, c, "again") == "pong again"
    assert "pong again" not in logs_text(api, clone)
    assert host_pid_alive(pid)
    print(f"pyapp: cold start to ready {cold:.2f}s, restore {restore:.2f}s, "
          f"restore to first answer {answered:.2f}s")
    api.delete(clone, force=True)
    api.delete_checkpoint(c, "warm")
    api.delete(c, force=True)


def test_failed_restore_is_500_and_leaves_nothing(api, daemon, bundle, cid, tmp_path):
    # Checkpoint a container with a bind mount, then take the mount out of
    # the bundle's config: CRIU cannot rebuild the mount tree it saved.
    data = tmp_path / "data"
    data.mkdir()
    b = bundle(STATEFUL, mounts=[(str(data), "/data")])
    c = cid("mnt")
    pid = api.create(c, b)["processes"][0]["pid"]
    counter(pid)
    api.checkpoint(c, "with-mount")
    from build import write_bundle
    write_bundle(b, STATEFUL)  # same bundle, no /data any more
    shims = os.path.join(daemon.state_dir, "shims")
    for lazy in (False, True):
        clone = cid("broken")
        with pytest.raises(APIError) as e:
            api.create(clone, b, checkpoint="with-mount", lazy=lazy)
        assert e.value.status == 500, e.value.body
        err = e.value.body["error"]
        assert "restore.log" in err and "Error (" in err, err
        # No container, no shim dir, no overlay, no stray CRIU.
        with pytest.raises(APIError) as e:
            api.get(clone)
        assert e.value.status == 404
        assert not os.path.exists(os.path.join(shims, clone))
        assert not mounts_under(os.path.join(shims, clone))
        wait_until(lambda: not cgroup_dirs(clone), 10, what=f"cgroups of {clone} to go")
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, clone)]
    # The checkpoint is untouched and the original runs on.
    assert [m["name"] for m in api.checkpoints(c)] == ["with-mount"]
    assert host_pid_alive(pid) and status_of(api, c) == "running"
    api.delete_checkpoint(c, "with-mount")
    api.delete(c, force=True)


def _cmdline_has(pid: str, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return needle.encode() in f.read()
    except OSError:
        return False


def test_same_name_at_once_one_wins(api, bundle, cid):
    # Two containers of one bundle share its checkpoints dir: the same name
    # asked for at once gives one checkpoint and one 409, never a mix.
    b = bundle(["tail", "-f", "/dev/null"])
    a, z = cid("a"), cid("z")
    api.create(a, b)
    api.create(z, b)

    def attempt(k):
        try:
            return api.checkpoint(k, "race")["container"]
        except APIError as e:
            return e.status

    for pair in ((a, z), (a, a)):
        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(attempt, pair))
        assert sorted(map(str, outcomes)) in (sorted([str(409), pair[0]]),
                                              sorted([str(409), pair[1]])), outcomes
        winner = next(o for o in outcomes if o != 409)
        assert [m["name"] for m in api.checkpoints(a)] == ["race"]
        assert api.checkpoints(z)[0]["container"] == winner
        assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["race"]
        api.delete_checkpoint(z, "race")
    for k in (a, z):
        assert status_of(api, k) == "running"
        api.delete(k, force=True)


def test_clone_of_a_container_with_settings_restores_with_them(api, daemon, bundle, cid,
                                                                tmp_path):
    """The checkpoint keeps its container's create settings: a clone made
    from it without settings of its own gets the same command, env,
    hostname, mounts and init, and its own overlay."""
    host_file = tmp_path / "motd"
    host_file.write_text("hello from the host\n")
    b = bundle(["sh", "-c", "echo not this command"])
    c = cid("orig")
    obj = api.create(c, b, args=STATEFUL, env=["A=1"], hostname="warm-one", init=True,
                     overlay=True,
                     mounts=[f"type=bind,src={host_file},dst=/etc/motd,ro"])
    pid = obj["processes"][0]["pid"]
    wait_until(lambda: int(read_file(pid, "/tmp/count") or 0) >= 5, 10,
               what="counter to get going")
    x = memory_value(pid)
    api.checkpoint(c, "with-settings")
    before = counter(pid)
    clone = cid("clone")
    created = api.create(clone, b, checkpoint="with-settings")
    try:
        cpid = created["processes"][0]["pid"]
        assert_continues(cpid, before, x)
        for key in ("args", "env", "hostname", "init", "mounts"):
            assert created[key] == obj[key], key
        # tini is PID 1 again with the counter under it, as checkpointed.
        with open(f"/proc/{cpid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[:2] == [b"/dev/init", b"--"]
        r = api.exec_sync(clone, ["sh", "-c", "hostname; cat /etc/motd; echo $A"])
        assert r["stdout"].split("\n")[:3] == ["warm-one", "hello from the host", "1"], r
        # Its own overlay, not the bundle's rootfs nor the original's.
        assert mounts_under(os.path.join(daemon.state_dir, "shims", clone, "overlay"))
        # Settings given with the restore go over the checkpoint's.
        more = cid("clone")
        created = api.create(more, b, checkpoint="with-settings", env=["B=2"])
        assert "A=1" in created["env"] and "B=2" in created["env"]
        assert created["mounts"] == obj["mounts"] and created["init"] is True
        r = api.exec_sync(more, ["sh", "-c", "echo $A $B; cat /etc/motd"])
        assert r["stdout"] == "1 2\nhello from the host\n", r
        api.delete(more, force=True)
    finally:
        api.delete(clone, force=True)
        api.delete(c, force=True)
    assert not mounts_under(os.path.join(daemon.state_dir, "shims", clone))
