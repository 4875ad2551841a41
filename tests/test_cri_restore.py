"""Restore of a checkpoint archive through CreateContainer, driven by the
real crictl: `crictl checkpoint --export` in one pod, `crictl create` with
the archive as the image in another, `crictl start`; checked on the host
(the process's memory state, its namespaces, its log, its filesystem).
"""

import io
import json
import os
import shutil
import tarfile

import pytest

from conftest import host_pid_alive, wait_until
# `cri`: a daemon of this module's own, with busybox in its mirror.
from test_cri import CRICTL, cri, crictl, pod_config, write  # noqa: F401

pytestmark = pytest.mark.skipif(not os.access(CRICTL, os.X_OK),
                                reason=f"crictl not found at {CRICTL} (set CRI_TOOLS_DIR)")

# A token made once in memory (a cold start would make another), a counter
# that lives only in the shell, and a file written before the checkpoint.
COUNTER = ("tok=$(cat /proc/sys/kernel/random/uuid); echo made > /tmp/before; i=0; "
           "while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; echo tick $tok $i; sleep 0.2; done")


def inspect(d, cid):
    return json.loads(crictl(d, "inspect", cid).stdout)


def pod_namespaces(d, pod):
    """The pod's pinned namespaces, as its verbose status gives them."""
    info = json.loads(crictl(d, "inspectp", pod).stdout)["info"]["namespaces"]
    sb_dir = os.path.join(d.state_dir, "cri", "sandboxes", pod)
    return {"net": info["net"], "ipc": info.get("ipc") or os.path.join(sb_dir, "ipc"),
            "uts": info.get("uts") or os.path.join(sb_dir, "uts")}


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def leftovers(d):
    """What a failed create could leave: CRI records, REST containers,
    received checkpoints, writable layers, mounts."""
    data = os.path.join(d.state_dir, "data")
    received = os.path.join(data, "received")
    active = [os.path.join(root, "active") for root, dirs, _ in os.walk(data)
              if "active" in dirs]
    with open("/proc/mounts") as f:
        mounts = [ln for ln in f if d.state_dir in ln and "/sandboxes/" not in ln]
    return {"cri": sorted(c["id"] for c in json.loads(
                crictl(d, "ps", "-a", "-o", "json").stdout)["containers"]),
            "rest": sorted(c["id"] for c in d.client.list()),
            "received": sorted(os.listdir(received)) if os.path.isdir(received) else [],
            "active": sorted(n for a in active for n in os.listdir(a)),
            "mounts": mounts}


@pytest.fixture(scope="module")
def checkpointed(cri):
    """A running counter in pod `src` and a checkpoint archive of it."""
    pod_json = write(cri, "pod-src.json", pod_config(cri, "src"))
    ctr_json = write(cri, "ctr-src.json", {"metadata": {"name": "counter"},
                                           "image": {"image": "busybox"},
                                           "command": ["sh", "-c", COUNTER],
                                           "log_path": "counter.log"})
    pod = crictl(cri, "runp", pod_json).stdout.strip()
    cid = crictl(cri, "create", pod, ctr_json, pod_json).stdout.strip()
    crictl(cri, "start", cid)
    pid = inspect(cri, cid)["info"]["pid"]
    wait_until(lambda: read_int(f"/proc/{pid}/root/tmp/n") >= 10, what="the counter to count")
    archive = os.path.join(cri.work, "counter.tar")
    # The dump happens between these two readings of the counter.
    lo = read_int(f"/proc/{pid}/root/tmp/n")
    r = crictl(cri, "checkpoint", f"--export={archive}", cid, check=False)
    if r.returncode != 0 and "checkpoint/restore is not available" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    hi = read_int(f"/proc/{pid}/root/tmp/n")
    log = os.path.join(cri.work, "logs", "src", "counter.log")
    token = wait_until(lambda: _token(log), what="the counter's first line")
    yield {"pod": pod, "cid": cid, "pid": pid, "archive": archive, "lo": lo, "hi": hi,
           "token": token, "pod_json": pod_json}
    crictl(cri, "rmp", "-f", pod, check=False)


def _token(log):
    try:
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[3] == "tick":
                    return parts[4]
    except OSError:
        return None
    return None


def test_restore_into_a_new_pod_continues_the_process(cri, checkpointed):
    cp = checkpointed
    pod_json = write(cri, "pod-dst.json", pod_config(cri, "dst"))
    ctr_json = write(cri, "ctr-dst.json", {"metadata": {"name": "restored"},
                                           "image": {"image": cp["archive"]},
                                           "log_path": "restored.log",
                                           "labels": {"restored": "yes"}})
    pod = crictl(cri, "runp", pod_json).stdout.strip()
    cid = crictl(cri, "create", pod, ctr_json, pod_json).stdout.strip()
    info = inspect(cri, cid)
    assert info["status"]["state"] == "CONTAINER_CREATED"
    assert info["status"]["image"]["image"] == "busybox"  # the image it was taken on
    assert info["info"]["restoredFrom"] == cp["archive"]

    # The created container is a record on disk: it survives a daemon restart.
    cri.stop()
    cri.start()
    wait_until(lambda: os.path.exists(cri.cri_sock), what="the CRI socket")

    crictl(cri, "start", cid)
    info = inspect(cri, cid)
    assert info["status"]["state"] == "CONTAINER_RUNNING"
    assert cid in crictl(cri, "ps", "-q").stdout.split()
    pid = info["info"]["pid"]
    assert host_pid_alive(pid) and pid != cp["pid"]

    # Its memory: the restored shell prints the token the original made in
    # memory, and its counter goes on from where the dump left it.
    log = os.path.join(cri.work, "logs", "dst", "restored.log")
    assert info["status"]["logPath"] == log
    wait_until(lambda: _token(log), what="the restored counter's output")
    assert _token(log) == cp["token"]
    with open(log) as f:
        first = int(next(ln for ln in f if " tick " in ln).split()[-1])
    assert cp["lo"] <= first <= cp["hi"] + 1
    wait_until(lambda: read_int(f"/proc/{pid}/root/tmp/n") > first + 2,
               what="the restored counter to go on")
    # Its filesystem: a file written before the checkpoint, in a writable
    # layer of its own (the original's is not this one).
    assert crictl(cri, "exec", "-s", cid, "cat", "/tmp/before").stdout.strip() == "made"
    crictl(cri, "exec", "-s", cid, "sh", "-c", "echo mine > /tmp/only-restored")
    assert not os.path.exists(f"/proc/{cp['pid']}/root/tmp/only-restored")

    # On the host: in the new pod's pinned namespaces, not the old pod's.
    new_ns, old_ns = pod_namespaces(cri, pod), pod_namespaces(cri, cp["pod"])
    for kind in ("net", "ipc", "uts"):
        mine = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        assert mine == os.stat(new_ns[kind]).st_ino, kind
        assert mine != os.stat(old_ns[kind]).st_ino, kind
    ip = json.loads(crictl(cri, "inspectp", pod).stdout)["status"]["network"]["ip"]
    if ip:  # the new pod's address, on its interface
        assert ip + "/" in crictl(cri, "exec", "-s", cid, "ip", "-4", "addr").stdout
    assert crictl(cri, "exec", "-s", cid, "hostname").stdout.strip() == "dst-host"

    # A daemon restart finds it running, as any container.
    cri.stop()
    cri.start()
    wait_until(lambda: os.path.exists(cri.cri_sock), what="the CRI socket")
    info = inspect(cri, cid)
    assert info["status"]["state"] == "CONTAINER_RUNNING" and info["info"]["pid"] == pid

    # The original is independent of it: removing it and its pod leaves the
    # restored one running.
    crictl(cri, "rm", "-f", cp["cid"])
    crictl(cri, "rmp", "-f", cp["pod"])
    assert host_pid_alive(pid) and not host_pid_alive(cp["pid"])
    before = read_int(f"/proc/{pid}/root/tmp/n")
    wait_until(lambda: read_int(f"/proc/{pid}/root/tmp/n") > before, what="it to go on")

    crictl(cri, "rmp", "-f", pod)
    assert not host_pid_alive(pid)
    assert not os.path.exists(os.path.join(cri.state_dir, "data", "received", cid))


def test_bad_archives_are_refused_and_leave_nothing(cri, checkpointed):
    pod_json = write(cri, "pod-bad.json", pod_config(cri, "bad"))
    pod = crictl(cri, "runp", pod_json).stdout.strip()
    before = leftovers(cri)
    text = os.path.join(cri.work, "not-a-tar.txt")
    with open(text, "w") as f:
        f.write("hello\n")
    cut = os.path.join(cri.work, "cut.tar")
    with open(checkpointed["archive"], "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(os.path.getsize(checkpointed["archive"]) // 2))
    # Cut at a member boundary (no end member), and one of another format.
    whole = os.path.join(cri.work, "no-end.tar")
    other = os.path.join(cri.work, "other-format.tar")
    with tarfile.open(checkpointed["archive"]) as src, tarfile.open(whole, "w") as a, \
            tarfile.open(other, "w") as b:
        for m in src:
            if m.name == "containerd-py-end.json":
                continue
            data = src.extractfile(m) if m.isreg() else None
            a.addfile(m, data)
            if m.name == "manifest.json":
                manifest = json.loads(src.extractfile(m).read())
                manifest["format"] = "something-else/1"
                raw = json.dumps(manifest).encode()
                m.size = len(raw)
                b.addfile(m, io.BytesIO(raw))
    image_tar = os.path.join(cri.work, "mirror", "docker.io_library_busybox_latest.tar")
    cases = [(os.path.join(cri.work, "missing.tar"), "NotFound", "does not exist"),
             (cri.work, "InvalidArgument", "not a regular file"),
             (text, "InvalidArgument", "not a checkpoint archive"),
             (image_tar, "InvalidArgument", "does not begin with manifest.json"),
             # Cut inside a member: tar's own reader sees the end.
             (cut, "InvalidArgument", "unexpected end of data"),
             (whole, "InvalidArgument", "truncated archive"),
             (other, "InvalidArgument", "format 'something-else/1'")]
    for path, code, words in cases:
        ctr_json = write(cri, "ctr-bad.json", {"metadata": {"name": "bad"},
                                               "image": {"image": path}})
        r = crictl(cri, "create", pod, ctr_json, pod_json, check=False)
        assert r.returncode != 0, path
        assert code in r.stderr and path in r.stderr and words in r.stderr, r.stderr
        assert leftovers(cri) == before, path
    crictl(cri, "rmp", "-f", pod)
