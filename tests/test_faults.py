"""Faults injected on real containers, and what the host shows afterwards.

kill -9 of a shim; kill -9 of the daemon at each step of create and during
a checkpoint's dump (the daemon's failpoints, CONTAINERD_PY_FAILPOINT); a
truncated record, a corrupt journal, a full data filesystem. After each:
the daemon is up, every other container is intact, and nothing is left that
no record lists (runtime containers, shims, overlay mounts, zombies).
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import Daemon, host_pid_alive, wait_until

from containerd_py.client import APIError


def runtime_ids(d: Daemon) -> set[str]:
    root = os.path.join(d.state_dir, "runtime", "runc")
    if not os.path.isdir(root):
        return set()
    out = subprocess.run(["runc", "--root", root, "list", "--format", "json"],
                         capture_output=True, text=True, check=True)
    return {c["id"] for c in json.loads(out.stdout or "[]") or []}


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if ln.split()[1].startswith(path)]


def zombie_children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def shim_processes(state_dir: str) -> list[int]:
    """Live shim processes whose command line names this state dir."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"containerd-py-shim" in cmd and state_dir.encode() in cmd \
                and host_pid_alive(int(entry)):
            out.append(int(entry))
    return out


def assert_host_clean(d: Daemon, listed: set[str]):
    """Nothing of the daemon's on the host that it does not list."""
    assert runtime_ids(d) <= listed, runtime_ids(d)
    shims = os.path.join(d.state_dir, "shims")
    leftovers = set(os.listdir(shims)) - listed if os.path.isdir(shims) else set()
    assert not leftovers, leftovers
    for m in mounts_under(d.state_dir):
        assert any(f"/shims/{c}/" in m for c in listed), m


@pytest.fixture
def fresh(private_daemon):
    yield private_daemon
    private_daemon.env = {}


# -- shims ------------------------------------------------------------------------

def test_kill9_of_a_shim_is_reported_and_leaves_nothing(fresh, bundle, cid):
    d = fresh.start()
    api = d.client
    c, other = cid(), cid()
    pid = api.create(c, bundle(), overlay=True)["processes"][0]["pid"]
    other_pid = api.create(other, bundle())["processes"][0]["pid"]
    with open(os.path.join(d.state_dir, "shims", c, "shim.pid")) as f:
        shim = int(f.read())
    os.kill(shim, signal.SIGKILL)

    got = wait_until(lambda: (lambda x: x if x["status"] == "stopped" else None)(api.get(c)),
                     30, what="the container to be reported stopped")
    assert got["exitStatus"] == 137 and "shim died" in got["exitReason"], got
    assert not host_pid_alive(pid)  # its init did not run on unsupervised
    exits = [json.loads(ln) for ln in _events(d) if json.loads(ln)["type"] == "exit"]
    assert any(e["id"] == c and "shim died" in e.get("reason", "") for e in exits), exits
    wait_until(lambda: not zombie_children(d.proc.pid), 10, what="no zombie of the daemon")
    api.delete(c)
    assert not mounts_under(os.path.join(d.state_dir, "shims", c))
    assert c not in runtime_ids(d)
    # The other container was not touched.
    assert api.get(other)["status"] == "running" and host_pid_alive(other_pid)
    api.delete(other, force=True)
    assert_host_clean(d, set())


def _events(d: Daemon) -> list[str]:
    with open(os.path.join(d.state_dir, "data", "events.jsonl")) as f:
        return [ln for ln in f if ln.strip()]


# -- the daemon killed in the middle --------------------------------------------------

@pytest.mark.parametrize("step", ["create-before-shim", "create-after-shim"])
def test_daemon_killed_during_create_leaves_nothing_unlisted(fresh, bundle, cid, step):
    d = fresh
    d.start()
    keep = cid("keep")
    keep_pid = d.client.create(keep, bundle())["processes"][0]["pid"]
    d.stop()
    d.env = {"CONTAINERD_PY_FAILPOINT": step}
    d.start()
    c = cid()
    with pytest.raises(OSError):  # the daemon dies under the request
        d.client.create(c, bundle(), overlay=True)
    d.proc.wait(30)
    assert d.proc.returncode == -signal.SIGKILL
    if step == "create-after-shim":
        assert c in runtime_ids(d) and shim_processes(d.state_dir)  # what was left
    d.env = {}
    d.start()
    assert [x["id"] for x in d.client.list()] == [keep]
    assert d.client.get(keep)["status"] == "running" and host_pid_alive(keep_pid)
    wait_until(lambda: len(shim_processes(d.state_dir)) == 1, 20,
               what="only the listed container's shim")
    assert_host_clean(d, {keep})
    # The id is free, and works.
    d.client.create(c, bundle())
    d.client.delete(c, force=True)
    d.client.delete(keep, force=True)


def _spare_shims(daemon_pid: int) -> list[int]:
    """The daemon's spare shims (containerd-py-shim -W, waiting for a start)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == daemon_pid and b"containerd-py-shim" in args[0] and args[1:2] == [b"-W"]:
            out.append(int(entry))
    return out


def test_daemon_killed_right_after_a_start_knows_the_container(fresh, bundle, cid):
    """kill -9 right after the 201: the restarted daemon has the container
    (running, its shim kept), and the spare shim started for the next start
    goes with the daemon, leaving nothing."""
    d = fresh
    d.start()
    c = cid()
    pid = d.client.create(c, bundle())["processes"][0]["pid"]
    spares = wait_until(lambda: _spare_shims(d.proc.pid), 10, what="a spare shim")
    d.proc.kill()
    d.proc.wait(30)
    wait_until(lambda: not any(host_pid_alive(s) for s in spares), 10,
               what="the spare shim to exit with its daemon")
    d.start()
    got = d.client.get(c)
    assert got["status"] == "running" and got["pid"] == pid and host_pid_alive(pid)
    assert len(shim_processes(d.state_dir)) == 1
    assert_host_clean(d, {c})
    d.client.delete(c, force=True)
    assert_host_clean(d, set())


def test_daemon_killed_during_a_checkpoint_dump(fresh, bundle, cid):
    d = fresh
    d.env = {"CONTAINERD_PY_FAILPOINT": "checkpoint-during-dump"}
    d.start()
    info = d.client.info()
    if not info["criu"]["available"]:
        pytest.skip(f"CRIU unavailable: {info['criu'].get('reason')}")
    b = bundle()
    c = cid()
    pid = d.client.create(c, b)["processes"][0]["pid"]
    with pytest.raises(OSError):
        d.client.checkpoint(c, "cp1")
    d.proc.wait(30)
    # The runtime's dump outlives the daemon; let it end before looking.
    wait_until(lambda: not _processes_with(f"checkpoint", c), 60, what="the dump to end")
    d.env = {}
    d.start()
    assert d.client.get(c)["status"] == "running" and host_pid_alive(pid)
    names = [m["name"] for m in d.client.checkpoints(c)]
    leftovers = [n for n in os.listdir(os.path.join(b, "checkpoints"))
                 if n.endswith(".tmp")] if os.path.isdir(os.path.join(b, "checkpoints")) else []
    assert not leftovers, leftovers
    assert "cp1" not in names or d.client.checkpoints(c)  # never a half one listed
    if "cp1" not in names:
        d.client.checkpoint(c, "cp1")  # the name is free again
    assert_host_clean(d, {c})
    d.client.delete(c, force=True)


def _processes_with(*words: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if all(w in cmd for w in words):
            out.append(int(entry))
    return out


# -- damaged state ----------------------------------------------------------------

def test_truncated_record_costs_only_its_container(fresh, bundle, cid):
    d = fresh.start()
    bad, good = cid("bad"), cid("good")
    d.client.create(bad, bundle())
    good_pid = d.client.create(good, bundle())["processes"][0]["pid"]
    d.kill9()
    record = os.path.join(d.state_dir, "data", "containers", bad + ".json")
    with open(record, "r+") as f:
        f.truncate(os.path.getsize(record) // 2)
    d.start()
    listed = [x["id"] for x in d.client.list()]
    assert listed == [good] and host_pid_alive(good_pid)
    damaged = d.client.info()["damagedRecords"]
    assert [x["id"] for x in damaged] == [bad] and damaged[0]["error"]
    assert bad in d.log() and "cannot be read" in d.log()
    # Its container was left alone for the user, not deleted as an orphan.
    assert bad in runtime_ids(d)
    d.client.delete(good, force=True)
    root = os.path.join(d.state_dir, "runtime", "runc")
    subprocess.run(["runc", "--root", root, "delete", "--force", bad], check=True)


def test_corrupt_journal_lines_are_skipped(fresh, bundle, cid):
    d = fresh.start()
    c = cid()
    d.client.create(c, bundle())
    d.stop()
    journal = os.path.join(d.state_dir, "data", "events.jsonl")
    with open(journal, "ab") as f:
        f.write(b'{"type": "exit", "id": "x", "ns": "soon"}\n[1, 2]\n\xff\xfe garbage\n'
                b'{"type": "torn", "id":')
    d.start()
    events = [json.loads(ln) for ln in d.client.stream("/events",
                                                       {"since": "0", "follow": "false"})
              if ln]
    assert any(e["type"] == "start-container" and e["id"] == c for e in events)
    assert all(isinstance(e["ns"], int) for e in events)
    d.client.delete(c, force=True)
    assert d.client.request("GET", "/ping") == {"ok": True}


def test_full_data_filesystem_refuses_new_work_and_keeps_the_rest(bundle, cid):
    if shutil.which("mount") is None:
        pytest.skip("mount is not installed")
    state = tempfile.mkdtemp(prefix="cdpy-")
    data = tempfile.mkdtemp(prefix="cdpy-data-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", data], check=True)
    d = Daemon(state, extra_args=["--data-dir", data])
    try:
        d.start()
        a = cid()
        a_pid = d.client.create(a, bundle())["processes"][0]["pid"]
        filler = os.path.join(data, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"],
                       capture_output=True)  # until the disk is full
        with pytest.raises(APIError) as e:
            d.client.create(cid(), bundle())
        assert e.value.status == 507 and data in e.value.body["error"], e.value.body
        # The daemon is up and the running container is intact.
        assert d.client.get(a)["status"] == "running" and host_pid_alive(a_pid)
        assert_host_clean(d, {a})
        os.unlink(filler)
        b = cid()
        d.client.create(b, bundle())
        d.client.delete(b, force=True)
        d.client.delete(a, force=True)
    finally:
        d.cleanup()
        subprocess.run(["umount", data], check=False)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
