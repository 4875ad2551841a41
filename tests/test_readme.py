"""The README's CLI walk-through, run as it stands: what a new user copies
must work. Each line runs against a daemon of the test's own, from the
repository's root, and must succeed."""

import os
import re
import subprocess

from conftest import DAEMON, ROOT


def _walkthrough() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    block = re.search(r"<!-- cli-walkthrough -->\n```sh\n(.*?)```", text, re.S)
    assert block, "README.md lost its CLI walk-through block"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def test_readme_cli_walkthrough(private_daemon, tmp_path):
    d = private_daemon.start()
    env = {**os.environ, "CONTAINERD_PY_ADDRESS": d.address,
           "PATH": os.path.dirname(DAEMON) + ":" + os.environ["PATH"]}
    for line in _walkthrough():
        p = subprocess.run(["bash", "-o", "pipefail", "-ec", line], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"README line failed: {line}\n{p.stdout}\n{p.stderr}"
        assert "Traceback" not in p.stderr, line
        if line.startswith("containerd-py run -d --label"):
            assert p.stdout == "counter\n"
        if "echo $GREETING" in line:
            assert p.stdout == "hi\n"
        if line.startswith("containerd-py run --rm once"):
            assert p.stdout == "hello from a foreground run\n"
        if "echo $A" in line:
            assert p.stdout == "1\n"
    # Nothing of the walk-through is left behind.
    assert d.client.list() == []
