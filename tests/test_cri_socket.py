"""The CRI socket's owner and mode: root's and --cri-group's, 0660."""

import grp
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import DAEMON, Daemon, free_port, wait_until


@pytest.fixture
def state():
    d = tempfile.mkdtemp(prefix="cdpy-crisock-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_cri_group_owns_the_socket(state):
    d = Daemon(os.path.join(state, "s"), extra_args=["--cri-group", "nogroup"]).start()
    try:
        sock = os.path.join(d.state_dir, "cri.sock")
        wait_until(lambda: os.path.exists(sock), what="the CRI socket")
        st = os.stat(sock)
        assert oct(st.st_mode & 0o777) == "0o660"
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("nogroup").gr_gid)
    finally:
        d.cleanup()


def test_cri_group_that_does_not_exist_stops_the_start(state):
    r = subprocess.run([DAEMON, "daemon", "--listen", f"127.0.0.1:{free_port()}",
                        "--state-dir", os.path.join(state, "s"),
                        "--cri-group", "no-such-group-here"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "--cri-group: no such group 'no-such-group-here'" in r.stderr
