"""Create-time settings (issue 8): each one seen from inside a real container
or on the host, and every way to get them wrong answered with a 400 that
leaves nothing behind.
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import APIError, ROOT, host_pid_alive, wait_until

BUSYBOX_ROOTFS = os.path.join(ROOT, "bundles", "busybox", "rootfs")
SLEEPER = ["tail", "-f", "/dev/null"]


def sh(api, c, script: str, **options) -> dict:
    return api.exec_sync(c, ["sh", "-c", script], **options)


def out(api, c, script: str) -> str:
    r = sh(api, c, script)
    assert r["exitStatus"] == 0, r
    return r["stdout"].strip()


def init_pid(api, c) -> int:
    return api.get(c)["processes"][0]["pid"]


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def runs(pid: int, argv: list[str]) -> bool:
    """`pid` runs `argv`: waits out the moment where runc has been told to
    start the process but it has not finished its execve (cmdline empty or
    still runc's own)."""
    wait_until(lambda: cmdline(pid) == argv, 10, what=f"pid {pid} to run {argv}")
    return True


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def bad_create(api, c, bundle_path, **options) -> dict:
    with pytest.raises(APIError) as e:
        api.create(c, bundle_path, **options)
    assert e.value.status == 400, e.value.body
    return e.value.body


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def runc_ids(daemon) -> list[str]:
    out_ = subprocess.run(["runc", "--root", os.path.join(daemon.state_dir, "runtime", "runc"),
                           "list", "-q"], capture_output=True, text=True, check=True).stdout
    return out_.split()


def assert_nothing_left(api, daemon, c):
    with pytest.raises(APIError) as e:
        api.get(c)
    assert e.value.status == 404
    assert c not in runc_ids(daemon)
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", c))
    with open("/proc/mounts") as f:
        assert f"/shims/{c}/" not in f.read()
    assert not glob.glob(f"/sys/fs/cgroup/*/containerd-py*/{c}") + \
        glob.glob(f"/sys/fs/cgroup/containerd-py*/{c}")


@pytest.fixture
def users_rootfs(tmp_path):
    """A copy of the busybox rootfs with users and groups of its own."""
    root = tmp_path / "rootfs"
    shutil.copytree(BUSYBOX_ROOTFS, root, symlinks=True)
    with open(root / "etc" / "passwd", "a") as f:
        f.write("app:x:1000:1000:app:/home/app:/bin/sh\n")
    with open(root / "etc" / "group", "a") as f:
        f.write("app:x:1000:\nextra:x:2000:app\nstaff:x:50:\n")
    (root / "home" / "app").mkdir(parents=True)
    return str(root)


# -- each setting, seen from inside ------------------------------------------------

def test_args_env_cwd_hostname_from_inside(api, bundle, cid):
    b = bundle(["sh", "-c", "echo never"], env={"HOME": "/root", "KEEP": "bundle"})
    config_before = digest(os.path.join(b, "config.json"))
    c = cid()
    obj = api.create(c, b, args=SLEEPER, env=["A=1", "HOME=/home/x"], cwd="/tmp",
                     hostname="web-1", annotations={"org.example/team": "blue"})
    try:
        assert obj["args"] == SLEEPER and obj["cwd"] == "/tmp" and obj["hostname"] == "web-1"
        assert "A=1" in obj["env"] and "HOME=/home/x" in obj["env"]
        assert "KEEP=bundle" in obj["env"] and "HOME=/root" not in obj["env"]
        assert obj["annotations"]["org.example/team"] == "blue"
        # The container's init runs the args; exec'd processes inherit env and cwd.
        assert runs(init_pid(api, c), SLEEPER)
        env = out(api, c, "env").splitlines()
        assert "A=1" in env and "HOME=/home/x" in env and "KEEP=bundle" in env
        assert out(api, c, "pwd") == "/tmp"
        assert out(api, c, "hostname") == "web-1"
        with open(f"/proc/{init_pid(api, c)}/environ", "rb") as f:
            assert b"A=1" in f.read().split(b"\0")
    finally:
        api.delete(c, force=True)
    # The user's bundle is never modified.
    assert digest(os.path.join(b, "config.json")) == config_before


def test_entrypoint_and_args(api, bundle, cid):
    c = cid()
    api.create(c, bundle(), entrypoint=["tail", "-f"], args=["/dev/null"])
    try:
        assert runs(init_pid(api, c), SLEEPER)
        assert api.get(c)["args"] == SLEEPER
    finally:
        api.delete(c, force=True)


def test_user_by_number_and_by_name(api, bundle, cid, users_rootfs):
    b = bundle(rootfs=users_rootfs)
    for user, want_uid, want_gid, want_groups in (
            ("1234:4321", "1234", "4321", None), ("1000", "1000", "1000", None),
            ("app", "1000", "1000", "1000 2000"), ("app:staff", "1000", "50", "50 2000"),
            ("nobody", "65534", "65534", None)):
        c = cid()
        obj = api.create(c, b, user=user)
        try:
            pid = init_pid(api, c)
            with open(f"/proc/{pid}/status") as f:
                status = dict(ln.split(":", 1) for ln in f)
            assert status["Uid"].split()[0] == want_uid, user
            assert status["Gid"].split()[0] == want_gid, user
            assert out(api, c, "id -u") == want_uid
            assert out(api, c, "id -g") == want_gid
            if want_groups:
                assert sorted(out(api, c, "id -G").split()) == sorted(want_groups.split())
            assert obj["user"]["uid"] == int(want_uid)
        finally:
            api.delete(c, force=True)


def test_terminal(api, bundle, cid):
    c = cid()
    api.create(c, bundle(), terminal=True)
    try:
        assert api.get(c)["terminal"] is True
        assert os.readlink(f"/proc/{init_pid(api, c)}/fd/0").startswith("/dev/pts/")
    finally:
        api.delete(c, force=True)


def test_bind_mounts_ro_rw_and_tmpfs(api, bundle, cid, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("from the host\n")
    ro_file = tmp_path / "ro.txt"
    ro_file.write_text("read only\n")
    c = cid()
    obj = api.create(c, bundle(), overlay=True, mounts=[
        {"type": "bind", "source": str(shared), "destination": "/srv/data"},
        f"type=bind,src={ro_file},dst=/etc/ro.txt,ro",
        {"type": "tmpfs", "destination": "/scratch", "options": ["size=1m", "mode=0700"]},
        "type=tmpfs,dst=/cache,tmpfs-size=2m",
    ])
    try:
        assert [m["destination"] for m in obj["mounts"]] == [
            "/srv/data", "/etc/ro.txt", "/scratch", "/cache"]
        # rw bind: read and written from both sides.
        assert out(api, c, "cat /srv/data/hello.txt") == "from the host"
        out(api, c, "echo from the container > /srv/data/back.txt")
        assert (shared / "back.txt").read_text() == "from the container\n"
        # ro bind: readable, not writable.
        assert out(api, c, "cat /etc/ro.txt") == "read only"
        r = sh(api, c, "echo x > /etc/ro.txt")
        assert r["exitStatus"] != 0 and "Read-only file system" in r["stderr"]
        assert ro_file.read_text() == "read only\n"
        # tmpfs: in the container's /proc/mounts with its size.
        mounts = out(api, c, "cat /proc/mounts").splitlines()
        scratch = next(ln for ln in mounts if ln.split()[1] == "/scratch")
        assert scratch.split()[2] == "tmpfs" and "size=1024k" in scratch
        cache = next(ln for ln in mounts if ln.split()[1] == "/cache")
        assert cache.split()[2] == "tmpfs" and "size=2048k" in cache
    finally:
        api.delete(c, force=True)


def test_readonly_rootfs(api, bundle, cid):
    b = bundle()
    c, w = cid(), cid()
    # An overlay is writable by default; readonlyRootfs makes it read-only.
    api.create(c, b, overlay=True, readonlyRootfs=True)
    api.create(w, b, overlay=True)
    try:
        assert api.get(c)["readonlyRootfs"] is True
        r = sh(api, c, "touch /etc/new-file")
        assert r["exitStatus"] != 0 and "Read-only file system" in r["stderr"]
        assert api.get(w)["readonlyRootfs"] is False
        assert sh(api, w, "touch /etc/new-file")["exitStatus"] == 0
        assert not os.path.exists(os.path.join(BUSYBOX_ROOTFS, "etc", "new-file"))
    finally:
        api.delete(c, force=True)
        api.delete(w, force=True)


def test_readonly_rootfs_false_over_a_bundle_that_says_true(api, bundle, cid, users_rootfs):
    b = bundle(rootfs=users_rootfs, terminal=True)  # readonly root, a pty: the bundle's
    c = cid()
    obj = api.create(c, b, readonlyRootfs=False, terminal=False)
    try:
        assert obj["readonlyRootfs"] is False and obj["terminal"] is False
        assert sh(api, c, "echo written > /etc/by-container")["exitStatus"] == 0
        with open(os.path.join(users_rootfs, "etc", "by-container")) as f:
            assert f.read() == "written\n"
        assert not os.readlink(f"/proc/{init_pid(api, c)}/fd/0").startswith("/dev/pts/")
    finally:
        api.delete(c, force=True)


def test_resources_at_create(api, bundle, cid):
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("reads cgroup v1 files")
    c = cid()
    obj = api.create(c, bundle(), resources={"memory": "64M", "pidsLimit": 40})
    try:
        assert obj["resources"]["memory"]["limit"] == 64 << 20
        pid = init_pid(api, c)
        with open(f"/proc/{pid}/cgroup") as f:
            rel = next(ln.split(":", 2)[2].strip() for ln in f if ":memory:" in ln)
        with open(f"/sys/fs/cgroup/memory{rel}/memory.limit_in_bytes") as f:
            assert int(f.read()) == 64 << 20
        with open(f"/proc/{pid}/cgroup") as f:
            rel = next(ln.split(":", 2)[2].strip() for ln in f if ":pids:" in ln)
        with open(f"/sys/fs/cgroup/pids{rel}/pids.max") as f:
            assert f.read().strip() == "40"
    finally:
        api.delete(c, force=True)


def test_zun_names(api, bundle, cid):
    c = cid()
    obj = api.create(c, bundle(), command="tail -f /dev/null", environment={"ZUN": "yes"},
                     workdir="/tmp", memory="32M", cpu=0.5)
    try:
        assert runs(init_pid(api, c), SLEEPER)
        assert "ZUN=yes" in out(api, c, "env").splitlines()
        assert out(api, c, "pwd") == "/tmp"
        assert obj["resources"]["memory"]["limit"] == 32 << 20
        assert obj["resources"]["cpu"] == {"quota": 50000, "period": 100000}
    finally:
        api.delete(c, force=True)


def test_stop_signal(api, bundle, cid):
    # sh as PID 1 acts on signals it traps, and only those.
    script = "trap 'exit 7' USR1; trap '' TERM; while true; do sleep 0.1; done"
    for value in ("SIGUSR1", "USR1", 10, "10"):
        c = cid()
        api.create(c, bundle(["sh", "-c", script]), stopSignal=value)
        try:
            assert api.get(c)["stopSignal"] == "SIGUSR1"
            assert api.stop(c, timeout=120)["exitStatus"] == 7
        finally:
            api.delete(c, force=True)


def test_init_stops_a_service_that_ignores_sigterm(api, bundle, cid):
    """`tail` as PID 1 of its namespace gets no default action for SIGTERM,
    so a stop waits for the SIGKILL; under tini, which passes SIGTERM on to
    it, it dies of the signal at once."""
    b = bundle(SLEEPER)
    c = cid()
    api.create(c, b, init=True)
    try:
        obj = api.get(c)
        assert obj["init"] is True and obj["args"] == SLEEPER
        pid = init_pid(api, c)
        assert runs(pid, ["/dev/init", "--"] + SLEEPER)
        service = wait_until(lambda: children(pid), 10, what="tini's child")[0]
        assert runs(service, SLEEPER)
        ps = out(api, c, "ps -o pid,comm")
        assert "1 init" in " ".join(ps.split()) and "tail" in ps
        # Stopped by SIGTERM well before the timeout: 128+15, where the
        # timeout's SIGKILL would say 137.
        assert api.stop(c, timeout=120)["exitStatus"] == 143
        assert not host_pid_alive(pid) and not host_pid_alive(service)
    finally:
        api.delete(c, force=True)
    # Without init the same service ignores SIGTERM: only the kill ends it.
    c = cid()
    api.create(c, b)
    try:
        assert api.stop(c, timeout=1)["exitStatus"] == 137
    finally:
        api.delete(c, force=True)


def test_settings_survive_restarts(private_daemon, bundle, cid):
    d = private_daemon.start()
    api = d.client
    c = cid()
    api.create(c, bundle(), env=["A=1"], hostname="keeper", args=SLEEPER, init=True,
               stopSignal="SIGINT")
    before = api.get(c)
    d.kill9()
    d.start()
    after = api.get(c)
    for key in ("env", "hostname", "args", "init", "stopSignal", "cwd", "user"):
        assert after[key] == before[key], key
    # A restart writes the spec again from the record's settings.
    api.restart(c, timeout=30)
    assert out(api, c, "hostname") == "keeper"
    assert "A=1" in out(api, c, "env").splitlines()
    assert runs(init_pid(api, c), ["/dev/init", "--"] + SLEEPER)


# -- 400s ---------------------------------------------------------------------------

def test_unknown_fields(api, bundle, cid):
    b = bundle()
    body = bad_create(api, cid(), b, env=["A=1"], evn=["A=1"])
    assert body["field"] == "evn" and "evn" in body["error"]
    assert "env" in body["allowed"] and "bundlePath" in body["allowed"]
    assert "allowed:" in body["error"]
    body = bad_create(api, cid(), b, restartPolicy={"name": "always", "retries": 3})
    assert body["field"] == "retries"
    body = bad_create(api, cid(), b, mounts=[{"type": "bind", "source": "/tmp",
                                              "destination": "/x", "readonly": True}])
    assert body["field"] == "readonly"
    c = cid()
    api.create(c, b)
    try:
        api.stop(c, timeout=0)
        with pytest.raises(APIError) as e:
            api.request("POST", f"/containers/{c}/start", {"checkpont": "x"})
        assert e.value.status == 400 and e.value.body["field"] == "checkpont"
    finally:
        api.delete(c, force=True)


def test_unknown_fields_in_the_other_container_bodies(api, bundle, cid):
    c = cid()
    api.create(c, bundle())
    try:
        pid = init_pid(api, c)
        for method, path, body, field in (
                ("PUT", f"/containers/{c}/process", {"args": ["true"], "evn": []}, "evn"),
                ("POST", f"/containers/{c}/exec", {"args": ["true"], "timout": 1}, "timout"),
                ("PATCH", f"/containers/{c}", {"status": "paused", "colour": 1}, "colour"),
                ("POST", f"/containers/{c}/kill", {"sig": 9}, "sig"),
                ("POST", f"/containers/{c}/process/{pid}", {"signal": 9, "x": 1}, "x"),
                ("POST", f"/containers/{c}/rename?name=n", {"name": "n", "old": "o"}, "old")):
            with pytest.raises(APIError) as e:
                api.request(method, path, body)
            assert e.value.status == 400 and e.value.body["field"] == field, (path, e.value.body)
            assert field in e.value.body["error"] and e.value.body["allowed"]
        # Nothing of it happened: still running, same pid, same name.
        obj = api.get(c)
        assert obj["status"] == "running" and init_pid(api, c) == pid and obj["name"] == c
        assert len(obj["processes"]) == 1
    finally:
        api.delete(c, force=True)


@pytest.mark.parametrize("options, field, words", [
    ({"args": []}, "args", "must not be empty"),
    ({"args": "ls"}, "args", None),  # a string is a command line only for Zun's `command`
    ({"command": ""}, "command", "must not be empty"),
    ({"args": ["ls"], "command": "ls"}, "command", "not both"),
    ({"env": ["NOEQUALS"]}, "env", "KEY=VALUE"),
    ({"env": "A=1"}, "env", None),
    ({"cwd": "relative"}, "cwd", "absolute"),
    ({"user": "a b"}, "user", "uid[:gid]"),
    ({"hostname": "-bad-"}, "hostname", "RFC 1123"),
    ({"terminal": "yes"}, "terminal", "boolean"),
    ({"mounts": [{"type": "proc", "destination": "/p"}]}, "mounts", "not supported"),
    ({"mounts": [{"type": "bind", "source": "rel", "destination": "/x"}]}, "mounts",
     "absolute"),
    ({"mounts": ["type=bind,src=/tmp,dst=/x,bogus=1"]}, "mounts", "unknown option"),
    ({"mounts": [{"type": "tmpfs", "destination": "/"}]}, "mounts", "root"),
    ({"stopSignal": "SIGNOPE"}, "stopSignal", "unknown signal"),
    ({"stopSignal": 99}, "stopSignal", "unknown signal"),
    ({"resources": {"memory": "lots"}}, "resources", None),
    ({"annotations": {"a": 1}}, "annotations", "strings"),
    ({"init": "yes"}, "init", "boolean"),
])
def test_bad_settings_are_400(api, daemon, bundle, cid, options, field, words):
    c = cid()
    body = bad_create(api, c, bundle(), **options)
    assert body["field"] == field, body
    if words:
        assert words in body["error"], body
    assert_nothing_left(api, daemon, c)


def test_missing_mount_source_is_named(api, daemon, bundle, cid, tmp_path):
    c = cid()
    missing = str(tmp_path / "not-there")
    body = bad_create(api, c, bundle(), mounts=[f"type=bind,src={missing},dst=/x"])
    assert body["source"] == missing and missing in body["error"]
    assert_nothing_left(api, daemon, c)


def test_unknown_user_and_group(api, daemon, bundle, cid, users_rootfs):
    b = bundle(rootfs=users_rootfs)
    for user, words in (("nosuch", "unknown user 'nosuch'"),
                        ("app:nogroup-here", "unknown group 'nogroup-here'")):
        c = cid()
        body = bad_create(api, c, b, user=user, overlay=True)
        assert body["field"] == "user" and words in body["error"], body
        assert_nothing_left(api, daemon, c)


def test_missing_executable_is_400_with_runtimes_message(api, daemon, bundle, cid):
    for args, words in ((["nosuch-cmd"], "executable file not found"),
                        (["/etc/passwd"], "permission denied"),
                        (["/no/such/path"], "no such file or directory")):
        c = cid()
        body = bad_create(api, c, bundle(), args=args, overlay=True)
        assert body["field"] == "args" and words in body["error"], body
        assert_nothing_left(api, daemon, c)


def test_bad_cwd_is_400(api, daemon, bundle, cid):
    c = cid()
    # Not in the bundle's own rootfs: the runtime would create it there.
    body = bad_create(api, c, bundle(), cwd="/no/such/dir")
    assert body["field"] == "cwd" and "does not exist" in body["error"]
    assert not os.path.exists(os.path.join(BUSYBOX_ROOTFS, "no"))
    assert_nothing_left(api, daemon, c)
    c = cid()
    body = bad_create(api, c, bundle(), cwd="/etc/passwd", overlay=True)
    assert body["field"] == "cwd" and "not a directory" in body["error"]
    assert_nothing_left(api, daemon, c)


def test_bundle_without_command_is_400(api, daemon, tmp_path, bundle, cid):
    b = bundle()
    path = os.path.join(b, "config.json")
    with open(path) as f:
        spec = json.load(f)
    spec["process"]["args"] = []
    with open(path, "w") as f:
        json.dump(spec, f)
    c = cid()
    body = bad_create(api, c, b)
    assert body["field"] == "args"
    assert_nothing_left(api, daemon, c)
    # ... which args in the request make good.
    c = cid()
    api.create(c, b, args=SLEEPER)
    assert runs(init_pid(api, c), SLEEPER)
    api.delete(c, force=True)


def test_mount_point_missing_from_a_bundles_rootfs_is_400(api, daemon, bundle, cid, tmp_path):
    """runc would create it in the bundle's root filesystem, which is the
    user's own and shared with other containers; on an overlay it may."""
    c = cid()
    body = bad_create(api, c, bundle(), mounts=[f"type=bind,src={tmp_path},dst=/srv"])
    assert body["destination"] == "/srv" and "overlay" in body["error"]
    assert not os.path.exists(os.path.join(BUSYBOX_ROOTFS, "srv"))
    assert_nothing_left(api, daemon, c)
    # On a mount the runtime makes (the bundle's /tmp tmpfs) it may.
    c = cid()
    api.create(c, bundle(), mounts=[f"type=bind,src={tmp_path},dst=/tmp/host"])
    try:
        assert sh(api, c, "test -d /tmp/host")["exitStatus"] == 0
    finally:
        api.delete(c, force=True)


# -- image containers: the image config with the settings over it ------------------

@pytest.fixture(scope="module")
def app_image(daemon, tmp_path_factory):
    """An image whose config names a user of its own /etc/passwd, a working
    dir, an env and an Entrypoint + Cmd."""
    import archives  # bundles/archives.py
    base = archives.dir_layer(archives.BUSYBOX_ROOTFS)
    top = archives.layer([
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                       "svc:x:1500:1500:svc:/srv:/bin/sh\n"),
        ("etc/group", "root:x:0:\nsvc:x:1500:\nops:x:1600:svc\n"),
        ("srv/", ("dir",)), ("srv/data/", ("dir",)), ("srv/data/seed", "from the image\n"),
    ])
    name = f"localhost/settings-{os.getpid()}:1"
    path = archives.docker_archive(tmp_path_factory.mktemp("img") / "app.tar", [base, top], {
        "Entrypoint": ["tail"], "Cmd": ["-f", "/dev/null"], "Env": ["ROLE=image", "KEEP=1"],
        "WorkingDir": "/srv/data", "User": "svc"}, [name])
    with open(path, "rb") as f:
        daemon.client.load(f)
    return name


def test_image_container_with_settings_from_inside(api, daemon, cid, app_image, tmp_path):
    (tmp_path / "conf").write_text("mounted\n")
    tmp_path.chmod(0o755)  # read by the image's user, uid 1500
    c = cid()
    obj = api.create(c, image=app_image, env=["ROLE=request"], hostname="img-1",
                     mounts=[f"type=bind,src={tmp_path},dst=/etc/app,ro",
                             "type=tmpfs,dst=/cache"], init=True)
    try:
        assert obj["image"]["ref"] == app_image
        assert obj["args"] == ["tail", "-f", "/dev/null"] and obj["init"] is True
        assert obj["user"] == {"uid": 1500, "gid": 1500, "additionalGids": [1600]}
        pid = init_pid(api, c)
        assert runs(pid, ["/dev/init", "--", "tail", "-f", "/dev/null"])
        assert out(api, c, "id -u; id -g; pwd; hostname").split() == [
            "1500", "1500", "/srv/data", "img-1"]
        env = out(api, c, "env").splitlines()
        assert "ROLE=request" in env and "KEEP=1" in env and "ROLE=image" not in env
        assert out(api, c, "cat /etc/app/conf /srv/data/seed") == "mounted\nfrom the image"
        assert "/cache" in [ln.split()[1] for ln in out(api, c, "cat /proc/mounts").splitlines()]
        # The image's rootfs is the container's own: writable by default.
        # (as root: exec'd processes run as the container's user unless told)
        assert sh(api, c, "echo mine > /srv/data/new", user={"uid": 0, "gid": 0})[
            "exitStatus"] == 0
        assert sh(api, c, "echo theirs > /srv/data/new2")["exitStatus"] != 0
        # tini passes SIGTERM to tail, which is not PID 1: 128+15 at once.
        assert api.stop(c, timeout=120)["exitStatus"] == 143
    finally:
        api.delete(c, force=True)


def test_image_container_entrypoint_user_and_readonly(api, cid, app_image):
    c = cid()
    # A new entrypoint drops the image's Cmd; root by number; read-only root.
    api.create(c, image=app_image, entrypoint=["sleep"], args=["1000"], user="0",
               readonlyRootfs=True, cwd="/")
    try:
        assert runs(init_pid(api, c), ["sleep", "1000"])
        # Without a hostname setting, the container's id, as Docker's.
        assert out(api, c, "id -u; pwd; hostname").split() == ["0", "/", c]
        r = sh(api, c, "touch /srv/x")
        assert r["exitStatus"] != 0 and "Read-only file system" in r["stderr"]
    finally:
        api.delete(c, force=True)


def test_image_container_400s_leave_nothing(api, daemon, cid, app_image):
    active = os.path.join(daemon.state_dir, "data", "images", "active")
    for options, field in (({"user": "ghost"}, "user"),
                           ({"entrypoint": [], "args": ["no-such-thing"]}, "args"),
                           ({"entrypoint": ["nosuch"]}, "args"),
                           ({"bundlePath": "/tmp"}, "image"), ({"imag": "x"}, "imag")):
        c = cid()
        with pytest.raises(APIError) as e:
            if "imag" in options:
                api.create(c, "/tmp", **options)
            else:
                api.create(c, image=app_image, **options)
        assert e.value.status == 400 and e.value.body["field"] == field, (options,
                                                                          e.value.body)
        assert_nothing_left(api, daemon, c)
        assert not os.path.exists(os.path.join(active, c))


def test_image_container_settings_survive_a_daemon_restart(private_daemon, cid, tmp_path):
    import archives
    d = private_daemon.start()
    api = d.client
    name = "localhost/restart-settings:1"
    with open(archives.docker_archive(tmp_path / "r.tar", [archives.dir_layer(
            archives.BUSYBOX_ROOTFS)], {"Cmd": ["tail", "-f", "/dev/null"]}, [name]), "rb") as f:
        api.load(f)
    c = cid()
    before = api.create(c, image=name, env=["A=1"], hostname="kept", stopSignal="INT")
    d.kill9()
    d.start()
    after = api.get(c)
    for key in ("image", "env", "hostname", "stopSignal", "args", "user"):
        assert after[key] == before[key], key
    api.restart(c, timeout=1)  # tail as PID 1 ignores SIGINT: the kill ends it
    assert out(api, c, "hostname; echo $A").split() == ["kept", "1"]
