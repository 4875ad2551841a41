"""Checkpoint archives (issue 11): export a checkpoint from one daemon and
import it into another as a new container, with real runc and CRIU.

The second daemon has its own state and data dirs; both use the same bundle
path, as two hosts with the same bundle installed would.
"""

import io
import json
import os
import subprocess
import tarfile

import pytest

from conftest import DAEMON, APIError, container_gone, host_pid_alive, wait_until
from test_checkpoint import STATEFUL, counter, memory_value, read_file

# Writes into the root filesystem (its overlay) and removes a file of the
# bundle's: both must reach the importing daemon as the container's changes.
WRITER = ["sh", "-c",
          "echo written-before > /data.txt; rm /etc/group; mkdir -p /opt/d; "
          "echo in-dir > /opt/d/f; " + STATEFUL[2]]


@pytest.fixture(autouse=True)
def _needs_criu(api):
    status = api.info()["criu"]
    if not status.get("available"):
        pytest.skip(f"CRIU unavailable: {status.get('reason')}")


def received_dir(d) -> str:
    return os.path.join(d.state_dir, "data", "received")


def nothing_of(d, c: str) -> None:
    """What a failed import must leave: no container, no shim dir, no
    received checkpoint."""
    assert container_gone(d.client, c)
    assert not os.path.exists(os.path.join(d.state_dir, "shims", c))
    assert os.listdir(received_dir(d)) == []


def start(api, bundle, cid, args=STATEFUL, **opts):
    b = bundle(args)
    c = cid("src")
    pid = api.create(c, b, **opts)["processes"][0]["pid"]
    wait_until(lambda: int(read_file(pid, "/tmp/count") or 0) >= 5, 10, what="counter")
    return b, c, pid, memory_value(pid)


def export_bytes(api, c: str, name: str) -> bytes:
    buf = io.BytesIO()
    api.export_checkpoint(c, name, buf)
    return buf.getvalue()


def test_export_import_restores_in_another_daemon(api, daemon, private_daemon, bundle, cid,
                                                  tmp_path):
    b, c, pid, x = start(api, bundle, cid, args=WRITER, overlay=True)
    api.checkpoint(c, "move", exit=True)
    archive = tmp_path / "move.tar"
    # The CLI writes the archive; it is one tar with everything in it.
    subprocess.run([DAEMON, "--address", daemon.address, "checkpoint", "export", c, "move",
                    "-o", str(archive)], check=True)
    with tarfile.open(archive) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("manifest.json"))
    assert names[0] == "manifest.json" and "config.json" in names
    assert "checkpoint/inventory.img" in names
    assert any(n.startswith("checkpoint/pages-") for n in names)
    assert "rootfs-diff/data.txt" in names and "rootfs-diff/etc/group" in names
    assert manifest["container"]["bundlePath"] == b
    assert manifest["checkpoint"]["name"] == "move" and manifest["checkpoint"]["exit"] is True

    target = private_daemon.start().client
    new = cid("imported")
    out = subprocess.run([DAEMON, "--address", private_daemon.address, "checkpoint",
                          "import", "--format", "json", new, str(archive)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["id"] == new and created["state"]["status"] == "running"
    npid = created["processes"][0]["pid"]
    assert host_pid_alive(npid)
    # The process went on from its memory: same value, counter continued.
    assert memory_value(npid) == x
    assert counter(npid) >= 5
    wait_until(lambda: counter(npid) > 8, 10, what="imported counter to advance")
    # Its filesystem changes came along, the removed file stays removed.
    assert read_file(npid, "/data.txt") == "written-before"
    assert read_file(npid, "/opt/d/f") == "in-dir"
    assert not os.path.exists(f"/proc/{npid}/root/etc/group")
    assert os.path.exists(f"/proc/{npid}/root/etc/passwd")
    assert target.get(new)["labels"] == {} and target.get(new)["checkpoint"] == "move"
    # The bundle itself was not written to by the import.
    assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["move"]
    # Importing twice under one id: 409, the first one untouched.
    with pytest.raises(APIError) as e:
        target.import_checkpoint(new, archive.read_bytes())
    assert e.value.status == 409 and new in e.value.body["error"]
    assert host_pid_alive(npid) and target.get(new)["state"]["status"] == "running"
    # Deleting it removes what was received.
    assert os.listdir(received_dir(private_daemon)) == [new]
    target.delete(new, force=True)
    assert not host_pid_alive(npid)
    assert os.listdir(received_dir(private_daemon)) == []
    api.delete_checkpoint(c, "move")
    api.delete(c, force=True)


def test_import_of_a_running_containers_checkpoint_keeps_settings(api, private_daemon,
                                                                  bundle, cid):
    b, c, pid, x = start(api, bundle, cid, labels={"app": "demo"})
    api.checkpoint(c, "warm")
    data = export_bytes(api, c, "warm")
    target = private_daemon.start().client
    new = cid("copy")
    created = target.import_checkpoint(new, data, name=new + "-n")
    npid = created["processes"][0]["pid"]
    assert created["labels"] == {"app": "demo"} and created["name"] == new + "-n"
    assert memory_value(npid) == x
    # The source never stopped.
    assert host_pid_alive(pid) and api.get(c)["state"]["status"] == "running"
    target.delete(new, force=True)
    api.delete_checkpoint(c, "warm")
    api.delete(c, force=True)


def test_import_needs_the_bundle_here(api, private_daemon, bundle, cid, tmp_path):
    b, c, pid, x = start(api, bundle, cid)
    api.checkpoint(c, "cp")
    data = export_bytes(api, c, "cp")
    target = private_daemon.start().client
    new = cid("nobundle")
    missing = str(tmp_path / "not-here")
    with pytest.raises(APIError) as e:
        target.import_checkpoint(new, data, bundlePath=missing)
    assert e.value.status == 404 and missing in e.value.body["error"]
    nothing_of(private_daemon, new)
    api.delete_checkpoint(c, "cp")
    api.delete(c, force=True)


def test_corrupt_truncated_or_unsafe_archives_are_400_with_nothing_created(
        api, private_daemon, bundle, cid, tmp_path):
    b, c, pid, x = start(api, bundle, cid)
    api.checkpoint(c, "cp")
    data = export_bytes(api, c, "cp")
    target = private_daemon.start().client
    new = cid("bad")
    cases = {
        "truncated mid-file": data[:len(data) // 2],
        "truncated at a member boundary": _cut_before_end(data),
        "not a tar": b"this is not an archive" * 100,
        "empty": b"",
    }
    escape = tmp_path / "escaped"
    cases["path escape"] = _tar({"manifest.json": b"{}", f"../../../../{escape}": b"x"})
    cases["absolute symlink"] = _tar({"manifest.json": b"{}"},
                                     symlinks={"checkpoint/parent": "/etc"})
    cases["no manifest"] = _tar({"checkpoint/inventory.img": b"x"}, end=1)
    for what, body in cases.items():
        with pytest.raises(APIError) as e:
            target.import_checkpoint(new, body)
        assert e.value.status == 400, (what, e.value.body)
        assert e.value.body["error"], what
        nothing_of(private_daemon, new)
    assert not escape.exists()
    # The good archive still imports under that id afterwards.
    created = target.import_checkpoint(new, data)
    assert memory_value(created["processes"][0]["pid"]) == x
    target.delete(new, force=True)
    api.delete_checkpoint(c, "cp")
    api.delete(c, force=True)


def test_export_errors(api, bundle, cid):
    b, c, pid, x = start(api, bundle, cid)
    with pytest.raises(APIError) as e:
        export_bytes(api, c, "nope")
    assert e.value.status == 404 and "nope" in e.value.body["error"]
    with pytest.raises(APIError) as e:
        export_bytes(api, "no-such-container", "x")
    assert e.value.status == 404
    with pytest.raises(APIError) as e:
        api.import_checkpoint("-bad", b"")
    assert e.value.status == 400 and e.value.body["field"] == "id"
    api.delete(c, force=True)


def _cut_before_end(data: bytes) -> bytes:
    """The archive without its END member (cut exactly at a member boundary)."""
    src = tarfile.open(fileobj=io.BytesIO(data))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for m in src.getmembers():
            if m.name == "containerd-py-end.json":
                continue
            t.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out.getvalue()


def _tar(files: dict, symlinks: dict | None = None, end: int | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, content in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(content)
            t.addfile(ti, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)
        if end is not None:
            data = json.dumps({"members": end}).encode()
            ti = tarfile.TarInfo("containerd-py-end.json")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def test_an_image_containers_own_files_travel_with_its_archive(api, cid, tmp_path):
    """An image's container writes into the image store's writable layer,
    not a bundle overlay: its archive carries that layer, and the imported
    container gets it back on a writable layer of its own."""
    import archives  # bundles/archives.py
    name = f"localhost/export-{os.getpid()}:1"
    image_tar = tmp_path / "image.tar"
    archives.docker_archive(str(image_tar), [archives.dir_layer(archives.BUSYBOX_ROOTFS)],
                            {"Cmd": ["sh", "-c", "echo made > /tmp/before; rm /etc/group; "
                                     "while true; do sleep 0.2; done"]}, [name])
    with open(image_tar, "rb") as f:
        api.load(f)
    c = cid("img-src")
    pid = api.create(c, image=name)["processes"][0]["pid"]
    wait_until(lambda: read_file(pid, "/tmp/before") == "made", 10, what="the file")
    api.checkpoint(c, "withfiles")
    data = export_bytes(api, c, "withfiles")
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        names = t.getnames()
    assert "rootfs-diff/tmp/before" in names and "rootfs-diff/etc/group" in names
    new = cid("img-copy")
    npid = api.import_checkpoint(new, data)["processes"][0]["pid"]
    assert read_file(npid, "/tmp/before") == "made"
    assert not os.path.exists(f"/proc/{npid}/root/etc/group")  # the whiteout came too
    api.exec_sync(new, ["sh", "-c", "echo mine > /tmp/copy-only"])
    assert not os.path.exists(f"/proc/{pid}/root/tmp/copy-only")
    api.delete(new, force=True)
    api.delete(c, force=True)
    api.rmi(name)
