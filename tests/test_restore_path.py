"""What the restore path skips, seen where CRIU says it: its own log."""

import json
import os

import pytest

import criu_images
from conftest import wait_until


def test_criu_loads_its_kernel_cache_instead_of_probing(api, daemon, bundle, cid):
    info = api.info()["criu"]
    if not info.get("available"):
        pytest.skip(f"CRIU unavailable: {info.get('reason')}")
    assert info["kernelCache"]
    assert os.path.exists("/run/criu.kdat")
    b = bundle(["sh", "-c", "while true; do sleep 0.1; done"])
    src, clone = cid(), cid()
    api.create(src, b)
    api.checkpoint(src, "k")
    try:
        api.create(clone, b, checkpoint="k")
        log = os.path.join(daemon.state_dir, "shims", clone, "criu-work", "restore.log")
        text = wait_until(lambda: os.path.exists(log) and open(log).read(), 10,
                          what="CRIU's restore log")
        assert "Loaded kdat cache from /run/criu.kdat" in text
        assert "does not exist" not in text.split("Loaded kdat")[0]
    finally:
        for c in (clone, src):
            api.delete(c, force=True)


def _needs_criu(api):
    info = api.info()["criu"]
    if not info.get("available"):
        pytest.skip(f"CRIU unavailable: {info.get('reason')}")


def _runtime_config(daemon, c) -> dict:
    with open(os.path.join(daemon.state_dir, "shims", c, "bundle", "config.json")) as f:
        return json.load(f)


def test_unreachable_container_is_dumped_and_restored_without_network_lock(api, daemon,
                                                                           bundle, cid):
    """A container in a network namespace of its own that nothing reaches
    (the loopback only) has no connection a packet could disturb: CRIU
    skips its iptables lock, and the restore (which locks as the dump did)
    too. The clone still runs, its loopback up."""
    _needs_criu(api)
    b = bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"])
    src, clone = cid(), cid()
    api.create(src, b)
    try:
        api.checkpoint(src, "quiet")
        assert criu_images.network_lock(os.path.join(b, "checkpoints", "quiet")) \
            == criu_images.NETWORK_LOCK_SKIP
        # Not the container's own: the daemon's, for the runtime only.
        assert "org.criu.config" not in api.get(src)["annotations"]
        api.create(clone, b, checkpoint="quiet")
        n = int(api.exec_sync(clone, ["cat", "/tmp/n"])["stdout"])
        wait_until(lambda: int(api.exec_sync(clone, ["cat", "/tmp/n"])["stdout"]) > n, 10,
                   what="the clone's counter to go on")
        lo = api.exec_sync(clone, ["ip", "-o", "link", "show", "lo"])["stdout"]
        assert "UP" in lo
        # The masked directories were not saved (no tar image of theirs) and
        # are still empty, unwritable and of the same mode in the clone.
        images = os.listdir(os.path.join(b, "checkpoints", "quiet"))
        with open(f"/proc/{api.get(src)['pid']}/mountinfo") as f:
            tmpfs = [ln for ln in f if " - tmpfs " in ln and ln.split()[3] == "/"]
        assert len([n for n in images if n.startswith("tmpfs-dev-")]) == len(tmpfs) - 2
        for path in ("/proc/acpi", "/sys/firmware"):
            got = api.exec_sync(clone, ["sh", "-c", f"ls -A {path}; stat -c %a {path}; "
                                        f"touch {path}/x 2>&1; echo rc=$?"])["stdout"]
            assert got.splitlines()[0] == "1777" and "Read-only file system" in got \
                and "rc=1" in got, got
        # CRIU left the cgroups to runc (which made them and put CRIU in
        # them): no yard of its own, and every task of the clone in the
        # clone's cgroup of every hierarchy.
        log = os.path.join(daemon.state_dir, "shims", clone, "criu-work", "restore.log")
        assert "Preparing cgroups yard" not in open(log).read()
        pid = api.get(clone)["pid"]
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/cgroup") as f:
                for line in f:
                    assert line.rstrip("\n").endswith(f"/{clone}"), line
        # With established TCP connections in the dump the lock stays.
        api.checkpoint(src, "tcp", tcp=True)
        assert criu_images.network_lock(os.path.join(b, "checkpoints", "tcp")) \
            == criu_images.NETWORK_LOCK_IPTABLES
    finally:
        for c in (clone, src):
            api.delete(c, force=True)
    for c in (src, clone):  # the daemon's CRIU settings go with the container
        assert not os.path.exists(os.path.join(daemon.state_dir, "criu", f"{c}.conf"))


def test_bundle_with_its_own_criu_config_keeps_it(api, daemon, bundle, cid, tmp_path):
    _needs_criu(api)
    conf = tmp_path / "criu.conf"
    conf.write_text("")  # CRIU's defaults: the iptables lock
    b = bundle(["sleep", "1000"], annotations={"org.criu.config": str(conf)})
    c = cid()
    api.create(c, b)
    try:
        assert _runtime_config(daemon, c)["annotations"]["org.criu.config"] == str(conf)
        api.checkpoint(c, "own")
        assert criu_images.network_lock(os.path.join(b, "checkpoints", "own")) \
            == criu_images.NETWORK_LOCK_IPTABLES
    finally:
        api.delete(c, force=True)
