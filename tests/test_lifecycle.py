"""Issue 4: the lifecycle endpoints, on real runc containers.

Every assertion is about what a user can check on the host as well as
through the API: pids alive or gone in /proc, exit statuses, the cgroup
files under /sys/fs/cgroup, files inside the container read through
/proc/PID/root.
"""

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import APIError, container_gone, Client, host_pid_alive, wait_until

COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"]
# Init scripts touch /tmp/ready once their traps are installed, so a test
# never signals a shell that has not set its handler yet.
IGNORE_TERM = ["sh", "-c", "trap '' TERM; touch /tmp/ready; while true; do sleep 0.1; done"]
TRAP_TERM_42 = ["sh", "-c", "trap 'exit 42' TERM; touch /tmp/ready; while true; do sleep 0.1; done"]
SLEEP = ["sleep", "3600"]
MiB = 1 << 20


# -- helpers -------------------------------------------------------------------

@pytest.fixture
def ctr(api, bundle, cid):
    """ctr(args, client=api, prefix="lc", bundle_opts=None, **create_options)
    -> the created record; every container made is force-deleted after the
    test, whatever happened."""
    made = []

    def create(args, client=None, prefix="lc", bundle_opts=None, **options):
        client = client or api
        c = options.pop("id", None) or cid(prefix)
        made.append((client, c))
        return client.create(c, bundle(args, **(bundle_opts or {})), **options)

    yield create
    for client, c in made:
        try:
            client.delete(c, force=True)
        except (APIError, OSError):
            pass


def status_of(api, c):
    return api.get(c)["state"]["status"]


def pid_of(record):
    return record["processes"][0]["pid"]


def wait_status(api, c, status, timeout=20):
    wait_until(lambda: status_of(api, c) == status, timeout, what=f"{c} to be {status}")
    return api.get(c)


def wait_file(pid, name, timeout=20):
    path = f"/proc/{pid}/root/tmp/{name}"
    wait_until(lambda: os.path.exists(path), timeout, what=path)
    return path


def read_counter(pid):
    with open(f"/proc/{pid}/root/tmp/count") as f:
        return int(f.read().strip() or 0)


def expect_409(fn, status, *args, **kwargs):
    """fn must fail with 409 and a body naming the container's status."""
    with pytest.raises(APIError) as e:
        fn(*args, **kwargs)
    assert e.value.status == 409, (fn, args, e.value.status, e.value.body)
    assert e.value.body.get("status") == status, (fn, args, e.value.body)
    assert e.value.body.get("error"), e.value.body
    return e.value.body


def events_since(api, t0, c=None):
    evs = [json.loads(x) for x in api.stream("/events", {"since": str(t0), "follow": "false"})
           if x]
    return [e for e in evs if c is None or e["id"] == c]


def cgroup_dir(pid, controller):
    """The v1 cgroup directory of `pid` for `controller`, from /proc/PID/cgroup."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctls, rel = line.rstrip("\n").split(":", 2)
            if controller in ctls.split(","):
                for mount in (ctls, controller):
                    path = f"/sys/fs/cgroup/{mount}{rel}"
                    if os.path.isdir(path):
                        return path
    raise AssertionError(f"no {controller} cgroup for pid {pid}")


def cgroup_file(pid, controller, name):
    with open(os.path.join(cgroup_dir(pid, controller), name)) as f:
        return f.read().strip()


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0")[:-1]]
    except FileNotFoundError:
        return None


def in_thread(fn, *args):
    """Run fn in a thread; returns (thread, result dict with 'value' or 'error')."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def raw_lines(api, path, query):
    return list(api.stream(path, query))


@pytest.fixture(scope="module", autouse=True)
def _cgroup_v1():
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("these tests read cgroup v1 files")


# -- stop / start / restart ----------------------------------------------------

def test_stop_escalates_to_sigkill_after_timeout_and_honours_traps(api, ctr):
    stubborn = ctr(IGNORE_TERM, prefix="stubborn")
    polite = ctr(TRAP_TERM_42, prefix="polite")
    plain = ctr(SLEEP, prefix="plain")  # pid 1 without a handler ignores TERM too
    frozen = ctr(TRAP_TERM_42, prefix="frozen")
    usr1 = ctr(["sh", "-c", "trap 'exit 7' USR1; touch /tmp/ready; while true; do sleep 0.1; done"],
               prefix="usr1",
               bundle_opts={"annotations": {"org.opencontainers.image.stopSignal": "SIGUSR1"}})
    for rec in (stubborn, polite, frozen, usr1):
        wait_file(pid_of(rec), "ready")
    api.pause(frozen["id"])

    def stop(rec, timeout):
        t = time.monotonic()
        got = api.stop(rec["id"], timeout=timeout)
        return got, time.monotonic() - t

    with ThreadPoolExecutor(5) as pool:
        f_stub = pool.submit(stop, stubborn, 2)
        f_pol = pool.submit(stop, polite, 10)
        f_plain = pool.submit(stop, plain, 1)
        f_frozen = pool.submit(stop, frozen, 10)
        f_usr1 = pool.submit(stop, usr1, 10)
        (s, s_took), (p, _), (pl, _) = f_stub.result(), f_pol.result(), f_plain.result()
        (fr, _), (u, _) = f_frozen.result(), f_usr1.result()

    assert s["state"]["status"] == "stopped" and s["exitStatus"] == 137, s
    assert s_took >= 1.9, f"SIGKILL came before the 2 s grace period ended ({s_took:.2f}s)"
    assert not host_pid_alive(pid_of(stubborn))
    assert p["state"]["status"] == "stopped" and p["exitStatus"] == 42, p
    assert not host_pid_alive(pid_of(polite))
    assert pl["exitStatus"] == 137 and not host_pid_alive(pid_of(plain))
    # A paused container is thawed so its trap runs; the image's stop signal is used.
    assert fr["exitStatus"] == 42 and not host_pid_alive(pid_of(frozen)), fr
    assert u["exitStatus"] == 7 and not host_pid_alive(pid_of(usr1)), u
    # What GET says agrees with what stop returned.
    assert api.get(stubborn["id"])["exitStatus"] == 137
    # Stopping a stopped container: 409 with its status.
    body = expect_409(api.stop, "stopped", polite["id"], timeout=1)
    assert polite["id"] in body["error"]


def test_a_stop_sent_before_the_init_has_its_handler_is_sent_again(api, ctr):
    # The init installs its TERM trap only once the test lets it: the stop's
    # SIGTERM lands on a PID 1 without a handler, which the kernel drops.
    # Without a second send the stop would end in SIGKILL (137) when the
    # 60 s grace period is over.
    late = ctr(["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                "trap 'exit 42' TERM; while true; do sleep 0.05; done"], prefix="late")
    pid = pid_of(late)
    with open(f"/proc/{pid}/status") as f:
        sigcgt = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
    assert not sigcgt >> (signal.SIGTERM - 1) & 1, "the init already catches SIGTERM"

    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(api.stop, late["id"], 60)
        time.sleep(0.5)  # the stop's SIGTERM has been sent and dropped by now
        assert not stopping.done(), stopping.result()
        with open(f"/proc/{pid}/root/tmp/go", "w"):
            pass
        got = stopping.result(timeout=50)
    assert got["exitStatus"] == 42, got
    assert not host_pid_alive(pid)


def test_a_runtime_init_that_has_not_exec_d_yet_counts_as_not_catching(bundle, tmp_path, cid):
    # Between `runc start` returning and the exec of the container's
    # program, PID 1 is runc's own init: Go's runtime catches every signal
    # there, yet a SIGTERM it gets is lost with it at the exec. A real
    # `runc create` leaves its init in exactly that state.
    from containerd_py.runtime import signals

    root, c = str(tmp_path / "runc"), cid("preexec")
    subprocess.run(["runc", "--root", root, "create", "-b", bundle(SLEEP), c], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        pid = json.loads(subprocess.run(["runc", "--root", root, "state", c], check=True,
                                        capture_output=True).stdout)["pid"]
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert st["Name"].startswith("runc:["), st["Name"]
        assert int(st["SigCgt"], 16) >> (signal.SIGTERM - 1) & 1, "Go's runtime catches TERM"
        assert signals.would_drop(pid, signal.SIGTERM)
        assert not signals.catches(pid, signal.SIGTERM)
    finally:
        subprocess.run(["runc", "--root", root, "delete", "-f", c], check=False)


def test_start_a_stopped_container_and_restart_reboot(api, ctr):
    t0 = time.time()
    rec = ctr(SLEEP)
    c, pid1 = rec["id"], pid_of(rec)
    expect_409(api.start, "running", c)
    assert api.stop(c, timeout=0)["exitStatus"] == 137
    assert not host_pid_alive(pid1)

    started = api.start(c)
    pid2 = pid_of(started)
    assert started["id"] == c and started["state"]["status"] == "running"
    assert pid2 != pid1 and host_pid_alive(pid2)
    assert "exitStatus" not in started, "a running container still reports the old exit"
    wait_until(lambda: cmdline(pid2) == ["sleep", "3600"], what="the new init to exec sleep")

    restarted = api.restart(c, timeout=1)
    pid3 = pid_of(restarted)
    assert restarted["state"]["status"] == "running" and pid3 not in (pid1, pid2)
    assert host_pid_alive(pid3) and not host_pid_alive(pid2)

    rebooted = api.request("POST", f"/containers/{c}/reboot", query={"timeout": 1})
    pid4 = pid_of(rebooted)
    assert rebooted["state"]["status"] == "running" and pid4 != pid3
    assert host_pid_alive(pid4) and not host_pid_alive(pid3)

    # restart of a stopped container just starts it.
    api.stop(c, timeout=0)
    pid5 = pid_of(api.restart(c))
    assert host_pid_alive(pid5) and status_of(api, c) == "running"

    evs = events_since(api, t0, c)
    restarts = [e["pid"] for e in evs if e["type"] == "restart"]
    assert restarts == [pid3, pid4, pid5], [(e["type"], e.get("pid")) for e in evs]
    assert [e["pid"] for e in evs if e["type"] == "start"] == [pid2]


def test_kill_with_a_signal_number(api, ctr):
    usr1 = ["sh", "-c", "trap 'echo got >> /tmp/usr1' USR1; trap 'exit 42' TERM; "
                        "touch /tmp/ready; while true; do sleep 0.1; done"]
    rec = ctr(usr1)
    c, pid = rec["id"], pid_of(rec)
    wait_file(pid, "ready")
    got = api.request("POST", f"/containers/{c}/kill", {"signal": int(signal.SIGUSR1)})
    assert got["state"]["status"] == "running"
    wait_file(pid, "usr1")
    assert status_of(api, c) == "running" and host_pid_alive(pid)

    api.request("POST", f"/containers/{c}/kill", {"signal": 15})
    assert api.wait(c)["exitStatus"] == 42
    assert not host_pid_alive(pid)
    expect_409(api.request, "stopped", "POST", f"/containers/{c}/kill", {"signal": 9})

    # Without a body the signal is SIGKILL.
    rec2 = ctr(SLEEP)
    api.request("POST", f"/containers/{rec2['id']}/kill")
    assert api.wait(rec2["id"])["exitStatus"] == 137
    assert not host_pid_alive(pid_of(rec2))
    with pytest.raises(APIError) as e:
        api.request("POST", f"/containers/{rec2['id']}/kill", {"signal": 0})
    assert e.value.status == 400


def test_pause_unpause_aliases_freeze_the_counter(api, ctr):
    rec = ctr(COUNTER)
    c, pid = rec["id"], pid_of(rec)
    wait_file(pid, "count")
    assert api.request("POST", f"/containers/{c}/pause")["state"]["status"] == "paused"
    assert cgroup_file(pid, "freezer", "freezer.state") == "FROZEN"
    before = read_counter(pid)
    time.sleep(0.5)
    assert read_counter(pid) == before, "the counter advanced while paused"
    assert api.request("POST", f"/containers/{c}/unpause")["state"]["status"] == "running"
    assert cgroup_file(pid, "freezer", "freezer.state") == "THAWED"
    wait_until(lambda: read_counter(pid) > before + 2, what="the counter to advance again")
    # Killing a paused container thaws it so it dies.
    api.request("POST", f"/containers/{c}/pause")
    api.request("POST", f"/containers/{c}/kill", {"signal": 9})
    assert api.wait(c)["exitStatus"] == 137
    assert status_of(api, c) == "stopped"
    assert not host_pid_alive(pid)
    # SIGTERM to a paused container reaches its trap once thawed.
    rec2 = ctr(TRAP_TERM_42)
    wait_file(pid_of(rec2), "ready")
    api.pause(rec2["id"])
    api.kill(rec2["id"], 15)
    assert api.wait(rec2["id"])["exitStatus"] == 42
    assert status_of(api, rec2["id"]) == "stopped"


def test_every_wrong_state_operation_is_409_with_the_status(api, ctr):
    rec = ctr(SLEEP)
    c, pid = rec["id"], pid_of(rec)
    P = f"/containers/{c}"
    req = api.request

    ops = {
        "start": lambda: req("POST", f"{P}/start"),
        "stop": lambda: req("POST", f"{P}/stop", query={"timeout": 1}),
        "kill": lambda: req("POST", f"{P}/kill", {"signal": 15}),
        "patch-signal": lambda: req("PATCH", P, {"signal": 15}),
        "signal-process": lambda: req("POST", f"{P}/process/{pid}", {"signal": 15}),
        "pause": lambda: req("POST", f"{P}/pause"),
        "patch-pause": lambda: req("PATCH", P, {"status": "paused"}),
        "resume": lambda: req("POST", f"{P}/unpause"),
        "patch-resume": lambda: req("PATCH", P, {"status": "running"}),
        "exec": lambda: req("PUT", f"{P}/process", {"args": ["true"]}),
        "exec-sync": lambda: req("POST", f"{P}/exec", {"args": ["true"]}),
        "checkpoint": lambda: req("POST", f"{P}/checkpoint/cp1", {}),
        "update": lambda: req("PATCH", P, {"resources": {"pidsLimit": 100}}),
        "top": lambda: req("GET", f"{P}/top"),
        "stats": lambda: req("GET", f"{P}/stats"),
        "stats-stream": lambda: req("GET", f"{P}/stats", query={"stream": "true"}),
        "resize": lambda: req("POST", f"{P}/resize", query={"w": 80, "h": 24}),
        "delete": lambda: req("DELETE", P),
    }
    refused = {
        "running": ["start", "resume", "patch-resume", "delete"],
        "paused": ["start", "pause", "patch-pause", "exec", "exec-sync", "checkpoint",
                   "delete"],
        "stopped": ["stop", "kill", "patch-signal", "signal-process", "pause", "patch-pause",
                    "resume", "patch-resume", "exec", "exec-sync", "checkpoint", "update",
                    "top", "stats", "stats-stream", "resize"],
    }
    failures = []

    def check(status):
        for name in refused[status]:
            try:
                ops[name]()
                failures.append(f"{name} on a {status} container succeeded")
            except APIError as e:
                if e.status != 409 or e.body.get("status") != status:
                    failures.append(f"{name} on a {status} container: {e.status} {e.body}")
            assert status_of(api, c) == status, f"{name} changed the status"

    check("running")
    assert host_pid_alive(pid)
    api.pause(c)
    check("paused")
    assert cgroup_file(pid, "freezer", "freezer.state") == "FROZEN"
    # What a paused container allows still works, and leaves it paused.
    assert api.stats(c)["pids"]["current"] == 1
    assert [r["pid"] for r in api.top(c)["processes"]] == [pid]
    api.update(c, pidsLimit=50)
    assert cgroup_file(pid, "pids", "pids.max") == "50"
    assert status_of(api, c) == "paused"
    assert cgroup_file(pid, "freezer", "freezer.state") == "FROZEN"
    api.resume(c)
    api.stop(c, timeout=0)
    check("stopped")
    assert not host_pid_alive(pid)
    assert not failures, "\n".join(failures)
    # What is allowed when stopped still works.
    assert api.wait(c)["exitStatus"] == 137
    assert req("GET", f"{P}/logs") == []


# -- wait ----------------------------------------------------------------------

def test_wait_blocks_until_stop_and_returns_at_once_when_stopped(api, ctr, daemon):
    rec = ctr(SLEEP)
    c, pid = rec["id"], pid_of(rec)
    slow = Client(daemon.address, timeout=60)
    t, out = in_thread(slow.wait, c)
    t.join(0.5)
    assert t.is_alive() and "error" not in out, f"wait returned while running: {out}"
    assert status_of(api, c) == "running"
    os.kill(pid, signal.SIGKILL)  # from the host, not through the API
    t.join(20)
    assert not t.is_alive(), "wait did not return after the container stopped"
    assert out["value"]["exitStatus"] == 137 and out["value"]["id"] == c, out
    assert out["value"]["exitedAt"]
    # On a stopped container it answers at once (a short client timeout).
    quick = Client(daemon.address, timeout=5)
    assert quick.wait(c)["exitStatus"] == 137
    with pytest.raises(APIError) as e:
        api.wait("no-such-container")
    assert e.value.status == 404


def test_process_wait_for_an_exec(api, ctr, daemon):
    rec = ctr(SLEEP)
    c = rec["id"]
    p = api.add_process(c, ["sleep", "1000"])
    slow = Client(daemon.address, timeout=60)
    t, out = in_thread(slow.request, "GET", f"/containers/{c}/process/{p['pid']}/wait")
    t.join(0.5)
    assert t.is_alive(), f"process wait returned while the process runs: {out}"
    assert host_pid_alive(p["pid"])
    os.kill(p["pid"], signal.SIGKILL)
    t.join(20)
    assert out.get("value") == {"pid": p["pid"], "exitStatus": 137}, out
    q = api.add_process(c, ["sh", "-c", "exit 6"])
    assert api.request("GET", f"/containers/{c}/process/{q['pid']}/wait")["exitStatus"] == 6
    # The container itself was not affected.
    assert status_of(api, c) == "running" and host_pid_alive(pid_of(rec))


def test_wait_survives_a_daemon_restart(private_daemon, ctr):
    d = private_daemon.start()
    rec = ctr(SLEEP, client=d.client)
    c, pid = rec["id"], pid_of(rec)
    d.kill9()
    assert host_pid_alive(pid)
    d.start()
    slow = Client(d.address, timeout=60)
    t, out = in_thread(slow.wait, c)
    t.join(0.5)
    assert t.is_alive(), f"wait returned while running: {out}"
    os.kill(pid, signal.SIGKILL)
    t.join(20)
    assert not t.is_alive(), "wait after a daemon restart never returned"
    assert out.get("value", {}).get("exitStatus") == 137, out
    assert not host_pid_alive(pid)


# -- exec (sync) -----------------------------------------------------------------

def test_exec_sync_output_exit_code_env_cwd_user(api, ctr):
    c = ctr(SLEEP)["id"]
    got = api.exec_sync(c, ["sh", "-c", "echo $FOO; pwd; id -u; id -g; echo oops >&2; exit 3"],
                        env=["FOO=bar", "PATH=/bin"], cwd="/tmp",
                        user={"uid": 65534, "gid": 65534})
    assert got == {"exitStatus": 3, "stdout": "bar\n/tmp\n65534\n65534\n", "stderr": "oops\n",
                   "truncated": False, "timedOut": False}
    assert api.exec_sync(c, ["true"])["exitStatus"] == 0
    assert api.exec_sync(c, ["sh", "-c", "kill -9 $$"])["exitStatus"] == 137
    # Env defaults to init's.
    assert "PATH=" in api.exec_sync(c, ["env"])["stdout"]
    # A missing binary: a failure with the runtime's words, not a hang.
    bad = api.exec_sync(c, ["/no/such/binary"])
    assert bad["exitStatus"] != 0 and "no such file" in bad["stderr"].lower(), bad
    # Nothing was left behind in the container.
    assert [r["command"] for r in api.top(c)["processes"]] == ["sleep 3600"]


def test_exec_sync_large_output_is_truncated_and_timeout_kills(api, ctr, daemon):
    c = ctr(SLEEP)["id"]
    guard = Client(daemon.address, timeout=60)  # "never hangs"
    big = ["sh", "-c", "yes | head -c 20000000; echo tail-err >&2"]

    def run(**opts):
        return guard.exec_sync(c, big, **opts)

    def slow(script):
        t = time.monotonic()
        return guard.exec_sync(c, ["sh", "-c", script], timeout=1), time.monotonic() - t

    with ThreadPoolExecutor(5) as pool:
        f_small, f_default = pool.submit(run, outputLimit=MiB), pool.submit(run)
        f_slow = pool.submit(slow, "exec sleep 100")
        # A child holding the output pipes open; one that escaped to init.
        f_child = pool.submit(slow, "sleep 100 & sleep 100")
        f_escaped = pool.submit(slow, "(sleep 101 &); sleep 100")
        small, default, (timed, took) = f_small.result(), f_default.result(), f_slow.result()
        children, escaped = f_child.result(), f_escaped.result()

    assert small["truncated"] is True and small["exitStatus"] == 0, {
        k: v for k, v in small.items() if k != "stdout"}
    assert len(small["stdout"]) == MiB and small["stdout"].startswith("y\ny\n")
    assert small["stderr"] == "tail-err\n"
    assert default["truncated"] is True
    assert len(default["stdout"]) == 16 * MiB, len(default["stdout"])

    assert timed["timedOut"] is True, timed
    assert timed["exitStatus"] == 137, timed
    assert took < 30, f"exec with timeout=1 took {took:.1f}s"
    for got, took in (children, escaped):
        assert got["timedOut"] is True and took < 30, (got, took)
    # The sleeps are gone from the container (all but the one that escaped).
    assert not any("sleep 100" in r["command"] for r in api.top(c)["processes"])
    for bad in ({"timeout": 0}, {"timeout": "1"}, {"outputLimit": -1}, {"terminal": True}):
        with pytest.raises(APIError) as e:
            api.exec_sync(c, ["true"], **bad)
        assert e.value.status == 400, (bad, e.value.body)


# -- logs --------------------------------------------------------------------------

def test_logs_complete_ordered_filtered(api, ctr):
    rec = ctr(["sh", "-c", "seq 1 10000; echo oops >&2"])
    c = rec["id"]
    assert api.wait(c)["exitStatus"] == 0
    entries = api.logs(c)
    out = [e for e in entries if e["stream"] == "stdout"]
    err = [e for e in entries if e["stream"] == "stderr"]
    assert [e["line"] for e in out] == [str(i) for i in range(1, 10001)]
    assert [e["line"] for e in err] == ["oops"]
    assert len(entries) == 10001
    assert all(e["timestamp"].endswith("Z") and len(e["timestamp"]) == 30 for e in entries)
    stamps = [e["timestamp"] for e in out]
    assert stamps == sorted(stamps), "stdout entries are not in time order"

    assert [e["line"] for e in api.logs(c, tail=3, stderr=False)] == ["9998", "9999", "10000"]
    assert api.logs(c, tail=0) == []
    assert api.logs(c, tail="all") == entries
    assert [e["line"] for e in api.logs(c, stdout=False)] == ["oops"]
    assert [e["line"] for e in api.logs(c, stderr=False)] == [str(i) for i in range(1, 10001)]
    assert api.logs(c, stdout=False, stderr=False) == []

    since = out[5000]["timestamp"]
    later = api.logs(c, since=since, stderr=False)
    assert later == [e for e in out if e["timestamp"] >= since]
    assert 0 < len(later) <= 5000 and later[-1]["line"] == "10000"
    assert api.logs(c, since=str(time.time() + 3600)) == []

    text = raw_lines(api, f"/containers/{c}/logs",
                     {"format": "text", "timestamps": "true", "stderr": "false"})
    assert len(text) == 10000
    for i, line in enumerate(text, 1):
        ts, _, body = line.partition(" ")
        assert body == str(i) and ts == out[i - 1]["timestamp"], line
    plain = raw_lines(api, f"/containers/{c}/logs", {"format": "text", "stderr": "false"})
    assert plain == [str(i) for i in range(1, 10001)]
    for bad in ({"format": "xml"}, {"tail": "x"}, {"since": "yesterday"}, {"stdout": "maybe"}):
        with pytest.raises(APIError) as e:
            api.logs(c, **bad)
        assert e.value.status == 400, bad


def test_logs_follow_streams_and_ends_when_the_container_stops(api, ctr, daemon):
    rec = ctr(["sh", "-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                           "seq 1 2000; echo last"])
    c, pid = rec["id"], pid_of(rec)
    got = []
    arrived = threading.Event()
    reader = Client(daemon.address, timeout=60)

    def follow():
        for line in reader.stream(f"/containers/{c}/logs", {"follow": "true"}):
            got.append(line)
            arrived.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert arrived.wait(20), "follow did not deliver the first line"
    assert got == ["first"] and status_of(api, c) == "running"
    with open(f"/proc/{pid}/root/tmp/go", "w"):
        pass
    t.join(30)
    assert not t.is_alive(), "the follow stream did not end when the container stopped"
    assert status_of(api, c) == "stopped"
    assert got == ["first"] + [str(i) for i in range(1, 2001)] + ["last"], (
        f"{len(got)} lines, last ones {got[-3:]}")
    # Following a stopped container returns what there is and ends.
    again = raw_lines(Client(daemon.address, timeout=10), f"/containers/{c}/logs",
                      {"follow": "true", "tail": "2", "format": "json"})
    assert [json.loads(x)["line"] for x in again] == ["2000", "last"]


def test_logs_survive_a_daemon_restart(private_daemon, ctr):
    d = private_daemon.start()
    rec = ctr(["sh", "-c", "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                           "echo after; echo err-after >&2; sleep 3600"], client=d.client)
    c, pid = rec["id"], pid_of(rec)
    wait_until(lambda: [e["line"] for e in d.client.logs(c)] == ["before"], what="first line")
    d.kill9()
    with open(f"/proc/{pid}/root/tmp/go", "w"):
        pass
    d.start()
    wait_until(lambda: len(d.client.logs(c)) == 3, what="lines written while the daemon was down")
    entries = d.client.logs(c)
    assert [(e["stream"], e["line"]) for e in entries if e["stream"] == "stdout"] == [
        ("stdout", "before"), ("stdout", "after")]
    assert [e["line"] for e in d.client.logs(c, stdout=False)] == ["err-after"]
    assert d.client.get(c)["processes"][0]["pid"] == pid


# -- stats, top ------------------------------------------------------------------

def test_stats_values_make_sense(api, ctr):
    busy = ctr(["sh", "-c", "while :; do :; done"], prefix="busy")
    idle = ctr(SLEEP, prefix="idle")
    c, pid = busy["id"], pid_of(busy)
    wait_until(lambda: api.stats(c)["cpu"]["totalNs"] > 50_000_000, what="some cpu time")
    # percent is the cpu time used since the previous sample over the wall
    # time between them; the host's cpuacct counter brackets totalNs.
    s0 = api.stats(c)
    time.sleep(0.5)
    host_before = int(cgroup_file(pid, "cpuacct", "cpuacct.usage"))
    s = api.stats(c)
    host_after = int(cgroup_file(pid, "cpuacct", "cpuacct.usage"))
    assert s["id"] == c
    assert s["cpu"]["onlineCpus"] == os.cpu_count()
    assert host_before <= s["cpu"]["totalNs"] <= host_after
    want = 100 * (s["cpu"]["totalNs"] - s0["cpu"]["totalNs"]) / (s["read"] - s0["read"])
    assert abs(s["cpu"]["percent"] - want) < 0.02, (s0["cpu"], s["cpu"], want)
    assert s["cpu"]["percent"] > 0, "a busy loop used no cpu in half a second"
    assert s["memory"]["usage"] > 0
    assert s["memory"]["limit"] > s["memory"]["usage"]
    assert s["memory"]["percent"] == round(100 * s["memory"]["usage"] / s["memory"]["limit"], 2)
    assert s["pids"]["current"] >= 1
    assert s["pids"]["current"] == int(cgroup_file(pid, "pids", "pids.current"))
    assert s["blockIO"]["readBytes"] >= 0 and s["blockIO"]["writeBytes"] >= 0
    assert "lo" in s["network"], s["network"]  # the container's own netns
    assert s["netInput"] >= 0 and s["netOutput"] >= 0

    wait_until(lambda: api.stats(idle["id"])["pids"]["current"] == 1, what="pids.current 1")
    assert api.stats(idle["id"])["memory"]["usage"] > 0
    # An exec'd process shows up in pids.current.
    api.add_process(idle["id"], ["sleep", "1000"])
    # (once `runc init`, whose threads count too, has exec'd sleep)
    wait_until(lambda: api.stats(idle["id"])["pids"]["current"] == 2,
               what="pids.current 2 after an exec")

    lines = []
    for line in api.stream(f"/containers/{c}/stats", {"stream": "true"}):
        lines.append(json.loads(line))
        if len(lines) == 2:
            break
    assert [x["id"] for x in lines] == [c, c]
    gap = (lines[1]["read"] - lines[0]["read"]) / 1e9
    assert 0.5 < gap < 5, f"stream samples {gap:.2f}s apart, want about 1s"
    assert lines[1]["cpu"]["totalNs"] > lines[0]["cpu"]["totalNs"]
    # The daemon still answers (the closed stream did not wedge anything).
    assert api.request("GET", "/ping") == {"ok": True}


def test_stats_stream_ends_when_the_container_stops(api, ctr, daemon):
    rec = ctr(["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done"])
    c, pid = rec["id"], pid_of(rec)
    n = []
    reader = Client(daemon.address, timeout=30)

    def read():
        for _ in reader.stream(f"/containers/{c}/stats", {"stream": "true"}):
            n.append(1)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    wait_until(lambda: n, what="a first stats sample")
    with open(f"/proc/{pid}/root/tmp/go", "w"):
        pass
    t.join(15)
    assert not t.is_alive(), "the stats stream went on after the container stopped"


def test_top_lists_the_containers_processes(api, ctr):
    rec = ctr(SLEEP)
    c, pid = rec["id"], pid_of(rec)
    p = api.add_process(c, ["sleep", "555"], user={"uid": 65534, "gid": 65534})
    # (an exec'd process is `runc init` for a moment before it execs sleep)
    wait_until(lambda: sorted(r["command"] for r in api.top(c)["processes"]) == [
        "sleep 3600", "sleep 555"], what="top to show both sleeps")
    top = api.top(c)
    assert top["id"] == c and top["titles"][:4] == ["PID", "PPID", "USER", "COMMAND"]
    rows = {r["pid"]: r for r in top["processes"]}
    assert set(rows) == {pid, p["pid"]}, rows
    assert rows[pid]["command"] == "sleep 3600" and rows[pid]["user"] == "root"
    assert rows[p["pid"]]["command"] == "sleep 555"
    assert rows[p["pid"]]["user"] == "nobody"
    # ppids are host pids, as in /proc.
    for r in rows.values():
        with open(f"/proc/{r['pid']}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == r["ppid"]


# -- update ----------------------------------------------------------------------

def test_update_resources_reach_the_cgroup_files(api, ctr):
    rec = ctr(SLEEP)
    c, pid = rec["id"], pid_of(rec)
    got = api.request("PATCH", f"/containers/{c}",
                      {"resources": {"memory": 64 * MiB, "cpus": 0.5, "pidsLimit": 20,
                                     "cpuShares": 512}})
    assert got["state"]["status"] == "running" and got["processes"][0]["pid"] == pid
    assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes")) == 64 * MiB
    assert int(cgroup_file(pid, "cpu", "cpu.cfs_quota_us")) == 50000
    assert int(cgroup_file(pid, "cpu", "cpu.cfs_period_us")) == 100000
    assert int(cgroup_file(pid, "cpu", "cpu.shares")) == 512
    assert cgroup_file(pid, "pids", "pids.max") == "20"
    s = api.stats(c)
    assert s["memory"]["limit"] == 64 * MiB and s["pids"]["limit"] == 20
    assert s["memory"]["percent"] > 0

    # Zun's form.
    api.request("PATCH", f"/containers/{c}", {"cpu": 0.25, "memory": "256M"})
    assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes")) == 256 * MiB
    assert int(cgroup_file(pid, "cpu", "cpu.cfs_quota_us")) == 25000
    assert api.stats(c)["memory"]["limit"] == 256 * MiB
    assert cgroup_file(pid, "pids", "pids.max") == "20"  # untouched

    # The limits are the container's: a restart keeps them.
    pid2 = pid_of(api.restart(c, timeout=0))
    assert pid2 != pid
    assert int(cgroup_file(pid2, "memory", "memory.limit_in_bytes")) == 256 * MiB
    assert int(cgroup_file(pid2, "cpu", "cpu.cfs_quota_us")) == 25000
    assert cgroup_file(pid2, "pids", "pids.max") == "20"

    for bad in ({"resources": {"memory": -1}}, {"resources": {"cpus": 0}},
                {"resources": {"bogus": 1}}, {"resources": {}}, {"memory": "lots"}):
        with pytest.raises(APIError) as e:
            api.request("PATCH", f"/containers/{c}", bad)
        assert e.value.status == 400, (bad, e.value.body)
    assert int(cgroup_file(pid2, "memory", "memory.limit_in_bytes")) == 256 * MiB


def test_memory_limit_is_enforced_oom_kill(api, ctr):
    t0 = time.time()
    hog = ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                       "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]
    rec = ctr(hog)
    c, pid = rec["id"], pid_of(rec)
    api.request("PATCH", f"/containers/{c}", {"resources": {"memory": 32 * MiB}})
    assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes")) == 32 * MiB
    with open(f"/proc/{pid}/root/tmp/go", "w"):
        pass
    done = Client(api.address, timeout=60).wait(c)
    assert done["exitStatus"] == 137, done
    got = api.get(c)
    assert got["oomKilled"] is True, got
    assert "survived" not in [e["line"] for e in api.logs(c)]
    assert not host_pid_alive(pid)
    ooms = [e for e in events_since(api, t0, c) if e["type"] == "oom"]
    assert len(ooms) == 1, events_since(api, t0, c)
    # A later clean run clears the flag.
    api.start(c)
    assert "oomKilled" not in api.get(c) or api.get(c)["oomKilled"] is False


def test_pids_limit_is_enforced(api, ctr):
    rec = ctr(SLEEP)
    c, pid = rec["id"], pid_of(rec)
    api.update(c, pidsLimit=8)
    assert cgroup_file(pid, "pids", "pids.max") == "8"
    forks = ["sh", "-c", "i=0; while [ $i -lt 20 ]; do "
                         "sleep 30 >/dev/null 2>&1 </dev/null & i=$((i+1)); done; echo forked"]
    got = api.exec_sync(c, forks, timeout=20)
    assert got["exitStatus"] != 0 and "forked" not in got["stdout"], (
        f"20 forks under pids.max=8 all succeeded: {got}")
    assert "can't fork" in got["stderr"], got
    assert int(cgroup_file(pid, "pids", "pids.current")) <= 8
    # Raised, the same script runs through.
    api.update(c, pidsLimit=100)
    got = api.exec_sync(c, forks, timeout=20)
    assert got["exitStatus"] == 0 and got["stdout"] == "forked\n", got


# -- rename ------------------------------------------------------------------------

def test_rename(api, ctr):
    a = ctr(SLEEP, name="alpha-lc")
    b = ctr(SLEEP, name="beta-lc")
    c, pid = a["id"], pid_of(a)
    new = f"renamed-{c}"
    got = api.request("POST", f"/containers/{c}/rename", query={"name": new})
    assert got["id"] == c and got["name"] == new
    by_name = api.get(new)
    assert by_name["id"] == c and by_name["processes"][0]["pid"] == pid
    assert by_name["state"]["status"] == "running" and host_pid_alive(pid)
    with pytest.raises(APIError) as e:
        api.get("alpha-lc")
    assert e.value.status == 404
    # Taken by another container's name or id: 409.
    for taken in ("beta-lc", b["id"]):
        with pytest.raises(APIError) as e:
            api.rename(c, taken)
        assert e.value.status == 409, (taken, e.value.body)
    assert api.get(c)["name"] == new
    # Renaming to its own name is fine.
    api.rename(c, "gamma-lc")
    api.rename(c, "gamma-lc")
    assert api.get("gamma-lc")["id"] == c
    with pytest.raises(APIError) as e:
        api.rename(c, "bad name")
    assert e.value.status == 400
    # Operations work through the name.
    api.stop("gamma-lc", timeout=0)
    assert not host_pid_alive(pid)
    api.rename(c, "delta-lc")  # a stopped container can be renamed
    assert api.get("delta-lc")["state"]["status"] == "stopped"


# -- restart policies, autoRemove ------------------------------------------------

def test_restart_policy_on_failure_gives_up_after_max_retries(api, ctr):
    t0 = time.time()
    rec = ctr(["sh", "-c", "echo run; exit 3"],
              restartPolicy={"name": "on-failure", "maximumRetryCount": 2})
    c = rec["id"]
    wait_until(lambda: api.get(c)["restartCount"] == 2 and status_of(api, c) == "stopped",
               what="two restarts")
    # The third backoff would be 400 ms: give it time to (wrongly) happen.
    time.sleep(1.5)
    got = api.get(c)
    assert got["state"]["status"] == "stopped" and got["restartCount"] == 2, got
    assert got["exitStatus"] == 3
    assert [e["line"] for e in api.logs(c)] == ["run", "run", "run"]
    evs = events_since(api, t0, c)
    assert [e["type"] for e in evs].count("restart") == 2
    assert [e["status"] for e in evs if e["type"] == "exit"] == [3, 3, 3]

    # on-failure does not restart a clean exit.
    ok = ctr(["true"], restartPolicy={"name": "on-failure"})
    api.wait(ok["id"])
    time.sleep(0.5)
    assert api.get(ok["id"])["restartCount"] == 0


def test_restart_policy_always_and_a_user_stop(api, ctr):
    rec = ctr(["sh", "-c", "while [ ! -e /tmp/stop ]; do sleep 0.05; done"],
              restartPolicy="always")
    c, pid = rec["id"], pid_of(rec)
    assert rec["restartPolicy"]["name"] == "always"
    os.kill(pid, signal.SIGKILL)  # dies behind the daemon's back
    wait_until(lambda: api.get(c)["restartCount"] == 1 and status_of(api, c) == "running",
               what="the always policy to restart it")
    pid2 = pid_of(api.get(c))
    assert pid2 != pid and host_pid_alive(pid2) and not host_pid_alive(pid)
    # A clean exit restarts too.
    with open(f"/proc/{pid2}/root/tmp/stop", "w"):
        pass
    wait_until(lambda: api.get(c)["restartCount"] == 2 and status_of(api, c) == "running",
               what="a second restart")
    pid3 = pid_of(api.get(c))
    # A user stop is not undone.
    api.stop(c, timeout=0)
    assert not host_pid_alive(pid3)
    time.sleep(1.0)
    got = api.get(c)
    assert got["state"]["status"] == "stopped" and got["restartCount"] == 2, got
    # ...and a user start clears that: the policy applies again afterwards.
    pid4 = pid_of(api.start(c))
    os.kill(pid4, signal.SIGKILL)
    wait_until(lambda: api.get(c)["restartCount"] == 3 and status_of(api, c) == "running",
               what="the policy to apply again after a user start")

    loop = ctr(["sh", "-c", "echo up"], restartPolicy={"name": "always"})
    wait_until(lambda: api.get(loop["id"])["restartCount"] >= 2,
               what="always to restart a clean exit")
    assert len([e for e in api.logs(loop["id"]) if e["line"] == "up"]) >= 2


def test_auto_remove_after_a_stop(api, ctr, daemon):
    rec = ctr(SLEEP, autoRemove=True)
    c, pid = rec["id"], pid_of(rec)
    assert rec["autoRemove"] is True
    api.stop(c, timeout=0)

    wait_until(lambda: container_gone(api, c), what="autoRemove after stop")
    assert not host_pid_alive(pid)
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", c))


# -- list filters and prune ------------------------------------------------------

def test_list_filters_and_prune(api, ctr, daemon):
    tag = f"lc{time.time_ns()}"
    run = ctr(SLEEP, labels={"suite": tag, "role": "run"})
    dead1 = ctr(["true"], labels={"suite": tag, "role": "dead"})
    dead2 = ctr(["sh", "-c", "exit 4"], labels={"suite": tag})
    paused = ctr(SLEEP, labels={"suite": tag, "role": "frozen"})
    api.pause(paused["id"])
    for d in (dead1, dead2):
        api.wait(d["id"])

    def ids(**q):
        return {x["id"] for x in api.list(**q)}

    mine = {run["id"], dead1["id"], dead2["id"], paused["id"]}
    assert ids(label=f"suite={tag}") == mine
    assert ids(label=f"suite={tag}", status="stopped") == {dead1["id"], dead2["id"]}
    assert ids(label=f"suite={tag}", status="running") == {run["id"]}
    assert ids(label=f"suite={tag}", status="paused") == {paused["id"]}
    assert ids(label=[f"suite={tag}", "role"]) == {run["id"], dead1["id"], paused["id"]}
    assert ids(label=[f"suite={tag}", "role=dead"]) == {dead1["id"]}
    assert ids(label=f"suite={tag}-nope") == set()
    assert all(x["state"]["status"] == "stopped" for x in api.list(status="stopped"))
    with pytest.raises(APIError) as e:
        api.list(status="sleeping")
    assert e.value.status == 400

    with pytest.raises(APIError) as e:
        api.request("DELETE", "/containers")
    assert e.value.status == 400
    pruned = api.request("DELETE", "/containers", query={"status": "stopped"})
    assert {dead1["id"], dead2["id"]} <= set(pruned["deleted"])
    assert not {run["id"], paused["id"]} & set(pruned["deleted"])
    assert ids(label=f"suite={tag}") == {run["id"], paused["id"]}
    for d in (dead1, dead2):
        assert not os.path.exists(os.path.join(daemon.state_dir, "shims", d["id"]))
    assert host_pid_alive(pid_of(run)) and host_pid_alive(pid_of(paused))
    assert status_of(api, paused["id"]) == "paused"


# -- ping, version, info -----------------------------------------------------------

def test_ping_version_info(api, ctr):
    assert api.request("GET", "/ping") == {"ok": True}
    v = api.request("GET", "/version")
    assert v["version"] and v["apiVersion"]
    run = ctr(SLEEP)
    stopped = ctr(["true"])
    paused = ctr(SLEEP)
    api.pause(paused["id"])
    api.wait(stopped["id"])
    info = api.info()
    listed = api.list()
    counts = info["containers"]
    assert counts["total"] == len(listed)
    for s in ("running", "paused", "stopped"):
        assert counts[s] == sum(1 for x in listed if x["state"]["status"] == s), (s, counts)
        assert counts[s] >= 1
    assert info["version"] == v["version"]
    assert info["defaultRuntime"] == "runc"
    assert "runc" in info["runtimes"] and info["runtimes"]["runc"]["version"].startswith("runc")
    assert os.access(info["runtimes"]["runc"]["path"], os.X_OK)
    assert isinstance(info["criu"]["available"], bool)
    if info["criu"]["available"]:
        assert info["criu"].get("version")
    else:
        assert info["criu"].get("reason")
    assert info["host"]["cpus"] == os.cpu_count()
    assert info["host"]["kernel"] == os.uname().release
    assert host_pid_alive(pid_of(run))


def test_logs_are_rotated_at_the_configured_size(private_daemon, bundle, cid):
    d = private_daemon
    d.extra_args = ["--log-max-bytes", "20000"]
    d.start()
    c = cid("rot")
    d.client.create(c, bundle(["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line$i; "
                                           "i=$((i+1)); done"]))
    assert d.client.wait(c)["exitStatus"] == 0
    log = os.path.join(d.state_dir, "shims", c, "container.log")
    wait_until(lambda: not os.path.exists(os.path.join(d.state_dir, "shims", c, "shim.sock")),
               what="the shim to drain and exit")
    assert os.path.getsize(log) <= 20000 and os.path.getsize(log + ".1") <= 20000
    lines = [e["line"] for e in d.client.logs(c)]
    # The newest lines are kept whole and in order, ending with the last one.
    assert lines[-1] == "line2999"
    first = int(lines[0][4:])
    assert first > 0, "nothing was rotated away"
    assert lines == [f"line{i}" for i in range(first, 3000)]
    d.client.delete(c)
