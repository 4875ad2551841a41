"""Pure logic of spec writing: image config -> settings -> spec, users,
paths inside a root filesystem, the create body's forms, and the sorting of
runtime failures. No containers here: the real ones are in
test_create_settings.py."""

import os

import pytest

from containerd_py.api import create_body
from containerd_py.errors import InvalidArgument, RuntimeFailure
from containerd_py.runtime import failures, spec as runspec
from containerd_py.runtime.settings import ContainerSettings

IMAGE_CONFIG = {"architecture": "amd64", "os": "linux", "config": {
    "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/app/bin:/bin", "MODE=prod"],
    "WorkingDir": "/app", "User": "app", "Labels": {"org.example.version": "1.2"},
    "StopSignal": "SIGQUIT"}}


def build(config, req: ContainerSettings, rootfs):
    s = runspec.over(runspec.image_settings(config), req)
    spec = runspec.apply(runspec.default_spec(), s, str(rootfs), own_rootfs=True,
                         init_binary=None)
    return spec, s


@pytest.fixture
def rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nwheel:x:10:app,root\n")
    return tmp_path


def test_image_config_becomes_the_spec(rootfs):
    spec, s = build(IMAGE_CONFIG, ContainerSettings(), rootfs)
    p = spec["process"]
    assert p["args"] == ["/bin/app", "--serve"]
    assert "PATH=/app/bin:/bin" in p["env"] and "MODE=prod" in p["env"]
    assert sum(e.startswith("PATH=") for e in p["env"]) == 1
    assert p["cwd"] == "/app"
    assert p["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [10]}
    assert spec["annotations"]["org.example.version"] == "1.2"
    assert runspec.stop_signal(spec) == 3
    assert runspec.effective(spec, s)["stopSignal"] == "SIGQUIT"


def test_request_overrides_the_image(rootfs):
    spec, _ = build(IMAGE_CONFIG, ContainerSettings(args=["--debug"], env=["MODE=dev"],
                                                    user="0:0", cwd="/"), rootfs)
    p = spec["process"]
    assert p["args"] == ["/bin/app", "--debug"]
    assert "MODE=dev" in p["env"] and "MODE=prod" not in p["env"]
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [10]} and p["cwd"] == "/"
    # A new entrypoint drops the image's Cmd, as in Docker.
    spec, _ = build(IMAGE_CONFIG, ContainerSettings(entrypoint=["/bin/sh"]), rootfs)
    assert spec["process"]["args"] == ["/bin/sh"]
    spec, _ = build(IMAGE_CONFIG, ContainerSettings(entrypoint=[], args=["echo"]), rootfs)
    assert spec["process"]["args"] == ["echo"]


def test_no_command_at_all_is_400(rootfs):
    with pytest.raises(InvalidArgument) as e:
        build({"config": {}}, ContainerSettings(), rootfs)
    assert e.value.details["field"] == "args"


def test_init_wraps_the_command(rootfs, tmp_path):
    tini = tmp_path / "tini"
    tini.write_text("#!/bin/sh\n")
    tini.chmod(0o755)
    s = ContainerSettings(args=["sleep", "1"], init=True)
    spec = runspec.apply(runspec.default_spec(), s, str(rootfs), own_rootfs=True,
                         init_binary=str(tini))
    assert spec["process"]["args"] == ["/dev/init", "--", "sleep", "1"]
    assert spec["mounts"][-1] == {"destination": "/dev/init", "type": "bind",
                                  "source": str(tini), "options": ["bind", "ro", "nosuid"]}
    assert runspec.effective(spec, s)["args"] == ["sleep", "1"]


def test_users(rootfs):
    r = str(rootfs)
    assert runspec.resolve_user("0", r) == {"uid": 0, "gid": 0, "additionalGids": [10]}
    assert runspec.resolve_user("5000", r) == {"uid": 5000, "gid": 0}
    assert runspec.resolve_user("5000:7", r) == {"uid": 5000, "gid": 7}
    assert runspec.resolve_user("app:wheel", r) == {"uid": 1000, "gid": 10}
    for bad, field_words in (("nobody", "unknown user"), ("app:staff", "unknown group")):
        with pytest.raises(InvalidArgument) as e:
            runspec.resolve_user(bad, r)
        assert field_words in e.value.message and e.value.details["field"] == "user"


def test_in_root_keeps_symlinks_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "real").write_text("inside")
    os.symlink("/real", root / "etc" / "abs")
    os.symlink("../../../../../real", root / "etc" / "up")
    os.symlink("/etc/passwd", root / "etc" / "host")
    assert runspec.in_root(str(root), "/etc/abs") == str(root / "real")
    assert runspec.in_root(str(root), "/etc/up") == str(root / "real")
    assert runspec.in_root(str(root), "/etc/host") == str(root / "etc" / "passwd")
    assert runspec.in_root(str(root), "/../../etc") == str(root / "etc")


def test_signals():
    for v in ("SIGTERM", "TERM", "term", 15, "15"):
        assert runspec.signal_number(v) == 15
    for bad in ("SIGNOPE", 0, 65, True, None, 1.5):
        with pytest.raises(InvalidArgument):
            runspec.signal_number(bad)


def test_env_merge_keeps_order():
    assert runspec.merge_env(["A=1", "B=2"], ["B=3", "C=4"]) == ["A=1", "B=3", "C=4"]


def test_mount_forms():
    m = create_body._mount("type=bind,src=/srv,dst=/data,ro")
    assert m == {"destination": "/data", "type": "bind", "source": "/srv",
                 "options": ["rbind", "ro"]}
    m = create_body._mount("/srv:/data:ro")
    assert m["options"] == ["rbind", "ro"] and m["destination"] == "/data"
    m = create_body._mount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1777")
    assert m == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "size=64m", "mode=1777"]}
    m = create_body._mount({"type": "bind", "source": "/a", "destination": "/b",
                            "options": ["ro"]})
    assert m["options"] == ["rbind", "ro"]
    for bad in ("type=bind,src=/a", "nonsense", "type=volume,src=x,dst=/y",
                {"type": "bind", "source": "/a", "destination": "/b", "options": "ro"},
                {"destination": "/b", "source": "/a", "propagation": "x"}):
        with pytest.raises(InvalidArgument):
            create_body._mount(bad)


def test_settings_round_trip():
    s = create_body.settings({"command": "sh -c 'echo hi'", "environment": {"A": "1"},
                              "workdir": "/tmp/", "interactive": True,
                              "readonlyRootfs": True, "stopSignal": "INT"})
    assert s.args == ["sh", "-c", "echo hi"] and s.env == ["A=1"] and s.cwd == "/tmp"
    assert s.terminal is True and s.readonly_rootfs is True and s.stop_signal == 2
    assert ContainerSettings.from_json(s.to_json()) == s
    assert s.to_json()["readonlyRootfs"] is True and s.to_json()["stopSignal"] == 2
    # An explicit false overrides a bundle's true: kept through the record.
    off = ContainerSettings(terminal=False, readonly_rootfs=False)
    assert off.to_json() == {"terminal": False, "readonlyRootfs": False}
    assert ContainerSettings.from_json(off.to_json()) == off


def test_unknown_field_names_it_and_lists_the_allowed():
    with pytest.raises(InvalidArgument) as e:
        create_body.parse({"bundlePath": "/b", "envv": [], "zzz": 1})
    assert e.value.details["field"] == "envv" and e.value.details["unknown"] == ["envv", "zzz"]
    assert "bundlePath" in e.value.details["allowed"]


@pytest.mark.parametrize("message, field", [
    ('runc failed: time="x" level=error msg="runc run failed: unable to start container '
     'process: exec: \\"nosuch\\": executable file not found in $PATH"', "args"),
    ('runc failed: msg="runc run failed: args must not be empty"', "args"),
    ("crun failed: executable file `nosuch` not found in $PATH: No such file", "args"),
    ('runc failed: msg="chdir to cwd (\\"/x\\") set in config.json failed: not a directory"',
     "cwd"),
])
def test_runtime_messages_that_are_the_users_mistake(message, field):
    err = failures.classify(RuntimeFailure(message, exitCode=1))
    assert isinstance(err, InvalidArgument) and err.details["field"] == field
    assert "time=" not in err.message and '\\"' not in err.message


def test_other_runtime_failures_stay_500():
    e = RuntimeFailure('runc failed: msg="cgroup: permission denied"')
    assert failures.classify(e) is e


def test_a_mount_replaces_the_one_on_the_same_destination():
    a = {"destination": "/d", "type": "tmpfs", "source": "tmpfs", "options": []}
    b = {"destination": "/d", "type": "bind", "source": "/srv", "options": ["rbind"]}
    c = {"destination": "/e", "type": "tmpfs", "source": "tmpfs", "options": []}
    merged = runspec.over(ContainerSettings(mounts=[a, c]), ContainerSettings(mounts=[b]))
    assert merged.mounts == [c, b]
