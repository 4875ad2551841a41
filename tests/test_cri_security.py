"""CRI security contexts on real containers, driven by crictl and checked
from inside the container and on the host: seccomp profiles (the runtime
default, a localhost/ file, a refused unprefixed path), masked and
read-only paths, the PID namespace modes and bidirectional mount
propagation."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from test_cri import CRICTL, cri, crictl, pod_config, write  # noqa: F401  (cri: the fixture)

pytestmark = pytest.mark.skipif(not os.access(CRICTL, os.X_OK),
                                reason=f"crictl not found at {CRICTL} (set CRI_TOOLS_DIR)")

BLOCK_CHMOD = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.fixture
def pod(cri):  # noqa: F811
    made = []

    def run(name, pod_linux=None):
        cfg = pod_config(cri, name)
        cfg["linux"] = pod_linux or {}
        path = write(cri, f"pod-{name}.json", cfg)
        pid = crictl(cri, "runp", path).stdout.strip()
        made.append(pid)
        return pid, path
    yield run
    for pid in made:
        crictl(cri, "stopp", pid, check=False)
        crictl(cri, "rmp", pid, check=False)


def container(d, pod_id, pod_json, name, security=None, command=("sleep", "3600"), **extra):
    cfg = write(d, f"ctr-{name}.json", {
        "metadata": {"name": name}, "image": {"image": "busybox"}, "command": list(command),
        "linux": {"security_context": security or {}}, **extra})
    r = crictl(d, "create", pod_id, cfg, pod_json, check=False)
    if r.returncode != 0:
        return None, r.stderr
    cid = r.stdout.strip()
    crictl(d, "start", cid)
    return cid, ""


def sh(d, cid, script):
    return crictl(d, "exec", "-s", cid, "sh", "-c", script, check=False)


def config_json(d, cid) -> dict:
    info = json.loads(crictl(d, "inspect", cid).stdout)["info"]
    return info.get("runtimeSpec") or _bundle_config(d, cid)


def _bundle_config(d, cid) -> dict:
    path = os.path.join(d.state_dir, "data", "cri", "containers", cid, "config.json")
    with open(path) as f:
        return json.load(f)


def test_runtime_default_seccomp_filters_and_blocks_what_it_lists_not(cri, pod):  # noqa: F811
    pid, pj = pod("sec-default")
    dflt, _ = container(cri, pid, pj, "dflt", {"seccomp": {"profile_type": 0}})
    old, _ = container(cri, pid, pj, "old", {"seccomp_profile_path": "docker/default"})
    free, _ = container(cri, pid, pj, "free", {"seccomp_profile_path": "unconfined"})
    prof = _bundle_config(cri, dflt)["linux"]["seccomp"]
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "SCMP_ARCH_X86_64" in prof["architectures"] or os.uname().machine != "x86_64"
    allowed = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
               for n in r["names"]}
    assert "read" in allowed and "unshare" not in allowed and "mount" not in allowed
    assert "seccomp" not in _bundle_config(cri, free)["linux"]
    for cid in (dflt, old):
        assert "Seccomp:\t2" in sh(cri, cid, "grep Seccomp: /proc/self/status").stdout
        # A user namespace needs no capability: only the filter stops it.
        r = sh(cri, cid, "unshare -U true")
        assert r.returncode != 0 and "Operation not permitted" in r.stdout + r.stderr
    assert "Seccomp:\t0" in sh(cri, free, "grep Seccomp: /proc/self/status").stdout
    # Unfiltered, the same call works wherever the host allows user namespaces:
    # what refused it above was the filter.
    with open("/proc/sys/user/max_user_namespaces") as f:
        if int(f.read()) > 0:
            r = sh(cri, free, "unshare -U true")
            assert r.returncode == 0, r.stderr


def test_default_profile_follows_capabilities(cri, pod):  # noqa: F811
    """CAP_SYS_ADMIN brings back what it guards (sethostname), as Docker's."""
    pid, pj = pod("sec-caps")
    plain, _ = container(cri, pid, pj, "plain", {"seccomp_profile_path": "runtime/default"})
    admin, _ = container(cri, pid, pj, "admin", {"seccomp_profile_path": "runtime/default",
                                                  "capabilities": {"add_capabilities":
                                                                   ["SYS_ADMIN"]}})
    assert sh(cri, plain, "hostname x1").returncode != 0
    assert sh(cri, admin, "hostname x2 && hostname").stdout.strip() == "x2"


def test_localhost_profile_is_applied(cri, pod):  # noqa: F811
    profile = write(cri, "block-chmod.json", BLOCK_CHMOD)
    pid, pj = pod("sec-local")
    new, _ = container(cri, pid, pj, "new", {"seccomp": {"profile_type": 2,
                                                          "localhost_ref": profile}})
    old, _ = container(cri, pid, pj, "old", {"seccomp_profile_path": "localhost/" + profile})
    for cid in (new, old):
        r = sh(cri, cid, "touch /tmp/f && chmod 600 /tmp/f")
        assert r.returncode != 0 and "Operation not permitted" in r.stderr + r.stdout
        assert sh(cri, cid, "touch /tmp/g && echo ok").stdout.strip() == "ok"


def test_bad_seccomp_profiles_are_refused_at_create(cri, pod):  # noqa: F811
    profile = write(cri, "block-chmod2.json", BLOCK_CHMOD)
    pid, pj = pod("sec-bad")
    cid, err = container(cri, pid, pj, "unprefixed", {"seccomp_profile_path": profile})
    assert cid is None and "InvalidArgument" in err and profile in err
    cid, err = container(cri, pid, pj, "missing",
                         {"seccomp_profile_path": "localhost/" + profile + ".absent"})
    assert cid is None and "InvalidArgument" in err and ".absent" in err
    # Nothing half-created.
    names = [c["metadata"]["name"] for c in
             json.loads(crictl(cri, "ps", "-a", "-p", pid, "-o", "json").stdout)["containers"]]
    assert not names


def test_masked_and_readonly_paths(cri, pod):  # noqa: F811
    pid, pj = pod("sec-paths")
    dflt, _ = container(cri, pid, pj, "dflt")
    # A default masked file this kernel has, with something in it.
    masked = next(p for p in ("/proc/timer_list", "/proc/keys", "/proc/kcore")
                  if os.path.exists(p) and open(p, "rb").read(1))
    r = sh(cri, dflt, f"wc -c < {masked}")
    assert r.stdout.strip() == "0", (r.stdout, r.stderr)
    r = sh(cri, dflt, "echo 1 > /proc/sys/kernel/domainname")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    own, _ = container(cri, pid, pj, "own", {"masked_paths": ["/etc/passwd"],
                                             "readonly_paths": ["/tmp"]})
    assert sh(cri, own, "cat /etc/passwd").stdout.strip() == ""
    assert "root" in sh(cri, dflt, "cat /etc/passwd").stdout
    r = sh(cri, own, "touch /tmp/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    # Privileged: nothing masked.
    priv, _ = container(cri, pid, pj, "priv", {"privileged": True})
    assert sh(cri, priv, f"wc -c < {masked}").stdout.strip() not in ("", "0")


def test_pid_namespace_modes(cri, pod):  # noqa: F811
    with open("/proc/1/comm") as f:
        host_init = f.read().strip()
    pid, pj = pod("pid-node", {"security_context": {"namespace_options": {"pid": 2}}})
    host, _ = container(cri, pid, pj, "host", {"namespace_options": {"pid": 2}})
    assert sh(cri, host, "cat /proc/1/comm").stdout.strip() == host_init
    # The container's init is visible under its host pid.
    info = json.loads(crictl(cri, "inspect", host).stdout)["info"]
    assert "sleep" in sh(cri, host, f"cat /proc/{info['pid']}/comm").stdout
    pid2, pj2 = pod("pid-ctr", {"security_context": {"namespace_options": {"pid": 1}}})
    own, _ = container(cri, pid2, pj2, "own", {"namespace_options": {"pid": 1}},
                       command=("sleep", "3601"))
    assert sh(cri, own, "tr '\\0' ' ' < /proc/1/cmdline").stdout.strip() == "sleep 3601"


def test_bidirectional_propagation(cri, pod):  # noqa: F811
    """rshared: a mount made inside shows on the host; an unshared source
    is refused naming the mount to make shared."""
    base = tempfile.mkdtemp(prefix="cdpy-prop-")
    src = os.path.join(base, "vol")
    os.makedirs(src)
    pid, pj = pod("prop")
    try:
        subprocess.run(["mount", "--bind", src, src], check=True)
        subprocess.run(["mount", "--make-private", src], check=True)
        mount = {"host_path": src, "container_path": "/vol", "propagation": 2}
        cid, err = container(cri, pid, pj, "refused", {"privileged": True}, mounts=[mount])
        assert cid is None and "InvalidArgument" in err and "not a shared mount" in err
        subprocess.run(["mount", "--make-rshared", src], check=True)
        cid, _ = container(cri, pid, pj, "shared", {"privileged": True}, mounts=[mount])
        assert _bundle_config(cri, cid)["linux"]["rootfsPropagation"] == "rshared"
        r = sh(cri, cid, "mkdir -p /vol/in && mount -t tmpfs tmp /vol/in && "
                         "echo hi > /vol/in/file")
        assert r.returncode == 0, r.stderr
        with open(os.path.join(src, "in", "file")) as f:
            assert f.read() == "hi\n"
        crictl(cri, "stop", cid)
    finally:
        subprocess.run(["umount", "-R", "-l", src], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
