"""What the restore path skips, seen where CRIU says it: its own log."""

import os

import pytest

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
