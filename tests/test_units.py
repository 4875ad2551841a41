"""Pure logic: parsers and the state table (no containers needed)."""

import os

import pytest

from containerd_py import logs, states, validation as v
from containerd_py.errors import Conflict, InvalidArgument
from containerd_py.events import parse_timestamp, rfc3339


def test_cri_log_lines_join_partials_per_stream():
    lines = [
        "2026-01-01T00:00:00.000000001Z stdout P hel\n",
        "2026-01-01T00:00:00.000000002Z stderr F oops\n",
        "2026-01-01T00:00:00.000000003Z stdout F lo world\n",
        "2026-01-01T00:00:00.000000004Z stdout F \n",
        "garbage\n",
    ]
    got = [(e.stream, e.line) for e in logs.parse_lines(lines)]
    assert got == [("stderr", "oops"), ("stdout", "hello world"), ("stdout", "")]


def test_read_entries_filters_tail_since_and_rotation(tmp_path):
    path = tmp_path / "container.log"
    (tmp_path / "container.log.1").write_text(
        "".join(f"2026-01-01T00:00:0{i}.000000000Z stdout F old{i}\n" for i in range(3)))
    path.write_text("2026-01-01T00:00:05.000000000Z stderr F err\n"
                    "2026-01-01T00:00:06.000000000Z stdout F new\n")
    all_lines = [e.line for e in logs.read_entries(str(path))]
    assert all_lines == ["old0", "old1", "old2", "err", "new"]
    assert [e.line for e in logs.read_entries(str(path), tail=2)] == ["err", "new"]
    assert [e.line for e in logs.read_entries(str(path), tail=0)] == []
    assert [e.line for e in logs.read_entries(str(path), streams=("stderr",))] == ["err"]
    since = parse_timestamp("2026-01-01T00:00:02Z")
    assert [e.line for e in logs.read_entries(str(path), since_ns=since)] == ["old2", "err", "new"]


def test_timestamps_round_trip_with_nanoseconds():
    ns = 1795631526091498363
    assert parse_timestamp(rfc3339(ns)) == ns
    assert parse_timestamp("1795631526.5") == 1795631526_500000000
    with pytest.raises(InvalidArgument):
        parse_timestamp("yesterday")


@pytest.mark.parametrize("value,expected", [
    (1024, 1024), ("256M", 256 << 20), ("1g", 1 << 30), ("512k", 512 << 10),
    ("64MiB", 64 << 20), ("100", 100)])
def test_parse_size(value, expected):
    assert v.parse_size(value, "memory") == expected


@pytest.mark.parametrize("bad", [0, -1, "lots", True, None, "12X"])
def test_parse_size_rejects(bad):
    with pytest.raises(InvalidArgument):
        v.parse_size(bad, "memory")


def test_oci_resources_from_both_forms():
    assert v.oci_resources({"resources": {"memory": 1 << 20, "cpus": 0.5, "pidsLimit": 10}}) == {
        "memory": {"limit": 1 << 20, "swap": 1 << 20},
        "cpu": {"quota": 50000, "period": 100000},
        "pids": {"limit": 10}}
    assert v.oci_resources({"cpu": 1.5, "memory": "256M"}) == {
        "memory": {"limit": 256 << 20, "swap": 256 << 20},
        "cpu": {"quota": 150000, "period": 100000}}
    assert v.oci_resources({"resources": {"cpuShares": 512, "cpuQuota": 20000,
                                          "cpuPeriod": 50000}}) == {
        "cpu": {"shares": 512, "quota": 20000, "period": 50000}}
    for bad in ({"resources": {}}, {"resources": {"disk": 1}}, {"resources": {"cpus": -1}},
                {"resources": []}):
        with pytest.raises(InvalidArgument):
            v.oci_resources(bad)


def test_ids():
    for good in ("a", "A1", "web.1", "x_y-z", "a" * 128):
        assert v.check_id(good) == good
    for bad in ("", ".", "..", "-a", "_a", "a/b", "a b", "a" * 129, None, 5, "é"):
        with pytest.raises(InvalidArgument):
            v.check_id(bad)


def test_process_is_completed_from_init():
    init = {"env": ["PATH=/bin"], "capabilities": {"bounding": ["CAP_KILL"]}}
    p = v.check_process({"args": ["ls"]}, init)
    assert p == {"args": ["ls"], "env": ["PATH=/bin"], "cwd": "/", "terminal": False,
                 "user": {"uid": 0, "gid": 0}, "capabilities": {"bounding": ["CAP_KILL"]}}
    p = v.check_process({"args": ["id"], "user": {"uid": 1, "gid": 2, "additionalGids": [3]},
                         "env": []}, init)
    assert p["user"] == {"uid": 1, "gid": 2, "additionalGids": [3]} and p["env"] == []


def test_state_table():
    states.check("pause", states.Status.RUNNING, "c")
    with pytest.raises(Conflict) as e:
        states.check("pause", states.Status.PAUSED, "c")
    assert e.value.details["status"] == "paused"
    with pytest.raises(Conflict):
        states.check("exec", states.Status.STOPPED, "c")
    # Every operation is allowed in some state, and delete only when stopped.
    assert all(states.ALLOWED.values())
    assert states.ALLOWED["delete"] == {states.Status.STOPPED}


def test_exit_files_are_read_with_the_shims_own_parser(tmp_path):
    from containerd_py.shim import read_exit_file
    path = tmp_path / "exit"
    path.write_text("137 1795634760609466710\n")
    rec = read_exit_file(str(path), 42)
    assert (rec.pid, rec.status, rec.exited_at_ns) == (42, 137, 1795634760609466710)
    for bad in ("", "137", "137 x\n", "-1 5\n", "1 2 3\n", "99999999999 1\n"):
        path.write_text(bad)
        assert read_exit_file(str(path)) is None, bad
    assert read_exit_file(str(tmp_path / "missing")) is None


def test_cri_port_mappings_in_the_network_packages_form():
    from containerd_py.cri._gen import api_pb2 as pb
    from containerd_py.cri.sandbox import port_mappings
    cfg = pb.PodSandboxConfig(port_mappings=[
        pb.PortMapping(container_port=80, host_port=8080),
        pb.PortMapping(container_port=53, host_port=5353, protocol=pb.UDP, host_ip="127.0.0.1"),
        pb.PortMapping(container_port=9000),  # no host port: reached at the pod's address
    ])
    assert port_mappings(cfg) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "0.0.0.0"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]
    for bad, word in ((pb.PortMapping(container_port=80, host_port=81, protocol=pb.SCTP), "SCTP"),
                      (pb.PortMapping(container_port=0, host_port=81), "containerPort"),
                      (pb.PortMapping(container_port=80, host_port=81, host_ip="::1"), "IPv4")):
        with pytest.raises(InvalidArgument, match=word) as e:
            port_mappings(pb.PodSandboxConfig(port_mappings=[bad]))
        assert e.value.details["field"] == "port_mappings"


def test_record_saves_never_rename_over_and_a_crash_between_keeps_a_record(tmp_path):
    """A save of an existing record moves the old one aside (PATH.old) before
    the new one takes its name, not renaming over it (ext4 writes the data
    back at such a rename, and the save waits); a kill -9 between the two
    renames leaves PATH.old alone, which the next load takes back."""
    from containerd_py.store import ContainerRecord, ContainerStore
    store = ContainerStore(str(tmp_path))
    r = ContainerRecord(id="c1", bundle_path="/b", runtime="runc", created="t")
    store.save(r)
    r.restart_count = 1
    store.save(r)
    assert sorted(os.listdir(tmp_path)) == ["c1.json"]
    assert [x.restart_count for x in store.load_all()] == [1]
    # The crash between the renames: only the old record, aside.
    os.rename(tmp_path / "c1.json", tmp_path / "c1.json.old")
    assert [x.restart_count for x in store.load_all()] == [1]
    assert sorted(os.listdir(tmp_path)) == ["c1.json"]
    # The crash after the second rename: the new record wins, the old goes.
    (tmp_path / "c1.json.old").write_text((tmp_path / "c1.json").read_text()
                                          .replace('"restart_count": 1', '"restart_count": 0'))
    assert [x.restart_count for x in store.load_all()] == [1]
    assert sorted(os.listdir(tmp_path)) == ["c1.json"]
    (tmp_path / "c1.json.old").write_text("{}")
    store.remove("c1")
    assert os.listdir(tmp_path) == []
