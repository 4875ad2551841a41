"""Which dumps may skip CRIU's network lock (pure logic of criuconf.py)."""

import json

from containerd_py.checkpoint import criuconf


def _bundle(tmp_path, namespaces):
    (tmp_path / "config.json").write_text(json.dumps({"linux": {"namespaces": namespaces}}))
    return str(tmp_path)


def test_fresh_namespace_is_isolated(tmp_path):
    assert criuconf.isolated(_bundle(tmp_path, [{"type": "network"}]), None, None)


def test_our_namespace_is_isolated_only_without_interfaces(tmp_path):
    b = _bundle(tmp_path, [{"type": "network", "path": "/run/x/netns/c"}])
    assert criuconf.isolated(b, "/run/x/netns/c", {})
    assert not criuconf.isolated(b, "/run/x/netns/c", {"n1": {"interface": "eth0"}})


def test_host_network_and_foreign_namespace_are_not(tmp_path):
    assert not criuconf.isolated(_bundle(tmp_path, [{"type": "pid"}]), None, None)
    assert not criuconf.isolated(
        _bundle(tmp_path, [{"type": "network", "path": "/var/run/netns/other"}]), None, None)
    assert not criuconf.isolated(str(tmp_path / "missing"), None, None)


def test_dump_options():
    assert criuconf.dump_options(tcp=False, isolated=True) == ["network-lock skip"]
    assert criuconf.dump_options(tcp=True, isolated=True) == []
    assert criuconf.dump_options(tcp=False, isolated=False) == []


def test_a_bundle_naming_its_own_config_keeps_it():
    assert criuconf.runtime_annotations({"annotations": {criuconf.ANNOTATION: "/x"}}, "/y") == {}
    assert criuconf.runtime_annotations({}, "/y") == {criuconf.ANNOTATION: "/y"}


def test_cgroups_left_to_the_runtime_only_without_cap_sys_admin():
    ro = {"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["nosuid", "ro"]}
    plain = {"process": {"capabilities": {"bounding": ["CAP_KILL"]}}, "mounts": [ro]}
    assert criuconf.cannot_leave_cgroup(plain)
    assert criuconf.cannot_leave_cgroup({"process": {}})
    assert not criuconf.cannot_leave_cgroup(
        {"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}, "mounts": [ro]})
    assert not criuconf.cannot_leave_cgroup(
        {"process": {}, "mounts": [{**ro, "options": ["nosuid"]}]})
