"""The CRI endpoint driven by the real crictl (cri-tools v1.26.1), each step
checked on the host: the container's process, its namespaces, its log file.

crictl comes from CRI_TOOLS_DIR (default: ../shared/tools/cri-tools-v1.26.1
next to the repository); without it these tests skip.
"""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

import archives  # bundles/archives.py
from conftest import ROOT, Daemon, host_pid_alive, wait_until

TOOLS = os.environ.get("CRI_TOOLS_DIR",
                       os.path.join(os.path.dirname(ROOT), "shared", "tools", "cri-tools-v1.26.1"))
CRICTL = os.path.join(TOOLS, "crictl")
BUSYBOX_ROOTFS = os.path.join(ROOT, "bundles", "busybox", "rootfs")

pytestmark = pytest.mark.skipif(not os.access(CRICTL, os.X_OK),
                                reason=f"crictl not found at {CRICTL} (set CRI_TOOLS_DIR)")


@pytest.fixture(scope="module")
def cri():
    """A daemon of its own with an image mirror holding 'busybox'."""
    state = tempfile.mkdtemp(prefix="cdpy-cri-")
    mirror = os.path.join(state, "mirror")
    os.makedirs(mirror)
    base = archives.dir_layer(BUSYBOX_ROOTFS)
    for name, file in (("docker.io/library/busybox:latest", "docker.io_library_busybox_latest"),
                       ("localhost/other:1", "localhost_other_1")):
        archives.docker_archive(os.path.join(mirror, file + ".tar"), [base],
                                {"Cmd": ["sh"], "Labels": {"name": name}}, [name])
    d = Daemon(os.path.join(state, "s"), extra_args=["--image-mirror", mirror]).start()
    d.cri_sock = os.path.join(d.state_dir, "cri.sock")
    d.work = state
    wait_until(lambda: os.path.exists(d.cri_sock), what="the CRI socket")
    crictl(d, "pull", "busybox")
    yield d
    # Pods a failed test left: their pinned namespaces outlive the daemon.
    crictl(d, "rmp", "-f", "-a", check=False)
    d.cleanup()
    shutil.rmtree(state, ignore_errors=True)


def crictl(d, *args, check=True):
    sock = "unix://" + d.cri_sock
    r = subprocess.run([CRICTL, "--runtime-endpoint", sock, "--image-endpoint", sock,
                        "--timeout", "60s", *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"crictl {' '.join(args)} failed: {r.stderr}")
    return r


def write(d, name, obj) -> str:
    path = os.path.join(d.work, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def pod_config(d, name):
    return {"metadata": {"name": name, "namespace": "default", "uid": name + "-uid",
                         "attempt": 1},
            "hostname": name + "-host", "log_directory": os.path.join(d.work, "logs", name),
            "dns_config": {"servers": ["10.9.9.9"], "searches": ["pods.test"]},
            "linux": {}}


def test_socket_mode(cri):
    assert oct(os.stat(cri.cri_sock).st_mode & 0o777) == "0o660"
    out = crictl(cri, "version").stdout
    assert "RuntimeName:  containerd-py" in out and "RuntimeApiVersion:  v1" in out


def test_pod_and_container_lifecycle(cri):
    pod = pod_config(cri, "web")
    pod_json = write(cri, "pod-web.json", pod)
    ctr_json = write(cri, "ctr-web.json", {
        "metadata": {"name": "counter"}, "image": {"image": "busybox"},
        "command": ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do echo tick $i; "
                    "i=$((i+1)); sleep 1; done"],
        "envs": [{"key": "GREETING", "value": "hello"}], "labels": {"app": "web"},
        "log_path": "counter.log"})
    crictl(cri, "pull", "busybox")
    assert "docker.io/library/busybox" in crictl(cri, "images").stdout

    pid_ = crictl(cri, "runp", pod_json).stdout.strip()
    pods = json.loads(crictl(cri, "pods", "-o", "json").stdout)["items"]
    assert [p["id"] for p in pods if p["state"] == "SANDBOX_READY"] == [pid_]

    cid = crictl(cri, "create", pid_, ctr_json, pod_json).stdout.strip()
    assert json.loads(crictl(cri, "inspect", cid).stdout)["status"]["state"] == \
        "CONTAINER_CREATED"
    # Visible in the REST API, labelled as a CRI container.
    rest = cri.client.get(cid)
    assert rest["labels"]["io.containerd-py.cri"] == "container"
    assert rest["labels"]["app"] == "web"
    # Its root is the image store's: an overlay of the image's layers.
    image_id = json.loads(crictl(cri, "inspecti", "busybox").stdout)["status"]["id"]
    assert rest["image"]["id"] == image_id

    crictl(cri, "start", cid)
    info = json.loads(crictl(cri, "inspect", cid).stdout)
    assert info["status"]["state"] == "CONTAINER_RUNNING"
    pid = info["info"]["pid"]
    assert host_pid_alive(pid)
    # On the host: the process is in the pod's pinned namespaces, not the host's.
    sb_dir = os.path.join(cri.state_dir, "cri", "sandboxes", pid_)
    # net is the network package's namespace of the pod (docs/cri.md).
    netns = json.loads(crictl(cri, "inspectp", pid_).stdout)["info"]["namespaces"]["net"]
    paths = {"net": netns, "uts": os.path.join(sb_dir, "uts"), "ipc": os.path.join(sb_dir, "ipc")}
    for kind, path in paths.items():
        assert os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(path).st_ino
        assert os.stat(f"/proc/{pid}/ns/{kind}").st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino

    r = crictl(cri, "exec", "-s", cid, "sh", "-c",
               "hostname; echo $GREETING; cat /etc/resolv.conf").stdout
    assert "web-host" in r and "hello" in r and "nameserver 10.9.9.9" in r
    assert "search pods.test" in r

    log_file = os.path.join(pod["log_directory"], "counter.log")
    wait_until(lambda: os.path.exists(log_file) and "tick 1" in open(log_file).read(),
               what="the CRI log file")
    first = open(log_file).readline().split(" ", 3)
    assert first[1] == "stdout" and first[2] == "F" and first[3].startswith("tick 0")
    assert "tick 0" in crictl(cri, "logs", cid).stdout

    stats = json.loads(crictl(cri, "stats", "-o", "json", "--id", cid).stdout)["stats"]
    assert int(stats[0]["memory"]["workingSetBytes"]["value"]) > 0
    pod_stats = json.loads(crictl(cri, "statsp", "-o", "json", "--id", pid_).stdout)["stats"]
    assert [c["attributes"]["id"] for c in pod_stats[0]["linux"]["containers"]] == [cid]
    assert int(pod_stats[0]["linux"]["memory"]["workingSetBytes"]["value"]) > 0

    crictl(cri, "stop", "--timeout", "10", cid)
    assert not host_pid_alive(pid)
    st = json.loads(crictl(cri, "inspect", cid).stdout)["status"]
    assert st["state"] == "CONTAINER_EXITED" and st["exitCode"] == 0
    assert st["reason"] == "Completed"
    crictl(cri, "rm", cid)
    assert cid not in crictl(cri, "ps", "-a", "-q").stdout
    # The log stays: it is the caller's (the kubelet removes it).
    assert os.path.exists(log_file)

    crictl(cri, "stopp", pid_)
    crictl(cri, "rmp", pid_)
    assert crictl(cri, "pods", "-q").stdout.strip() == ""
    with open("/proc/mounts") as f:
        mounts = f.read()
    assert sb_dir not in mounts and netns not in mounts
    assert not os.path.exists(sb_dir) and not os.path.exists(netns)


def test_exec_sync_timeout_and_exit_code(cri):
    pod_json = write(cri, "pod-ex.json", pod_config(cri, "ex"))
    ctr_json = write(cri, "ctr-ex.json", {"metadata": {"name": "sleeper"},
                                          "image": {"image": "busybox"},
                                          "command": ["tail", "-f", "/dev/null"]})
    pid_ = crictl(cri, "runp", pod_json).stdout.strip()
    cid = crictl(cri, "create", pid_, ctr_json, pod_json).stdout.strip()
    crictl(cri, "start", cid)
    r = crictl(cri, "exec", "-s", cid, "sh", "-c", "exit 3", check=False)
    assert r.returncode != 0 and "exited with 3" in r.stderr
    r = crictl(cri, "exec", "-s", "--timeout", "1", cid, "sleep", "30", check=False)
    assert r.returncode != 0 and "DeadlineExceeded" in r.stderr
    crictl(cri, "rmp", "-f", pid_)
    assert cid not in crictl(cri, "ps", "-a", "-q").stdout
    assert cri.client.list() == [] or all(c["id"] != cid for c in cri.client.list())


def test_images_pull_and_remove(cri):
    crictl(cri, "pull", "localhost/other:1")
    out = crictl(cri, "images").stdout
    assert "localhost/other" in out
    crictl(cri, "rmi", "localhost/other:1")
    assert "localhost/other" not in crictl(cri, "images").stdout
    r = crictl(cri, "pull", "localhost/nosuch:9", check=False)
    assert r.returncode != 0 and "localhost/nosuch:9" in r.stderr and "NotFound" in r.stderr


def test_errors(cri):
    r = crictl(cri, "inspectp", "0123456789abcdef", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    pod_json = write(cri, "pod-err.json", pod_config(cri, "err"))
    pid_ = crictl(cri, "runp", pod_json).stdout.strip()
    ctr_json = write(cri, "ctr-err.json", {"metadata": {"name": "x"},
                                           "image": {"image": "localhost/absent:1"},
                                           "command": ["true"]})
    r = crictl(cri, "create", "--no-pull", pid_, ctr_json, pod_json, check=False)
    assert r.returncode != 0 and "localhost/absent:1" in r.stderr
    # Nothing half-created.
    assert crictl(cri, "ps", "-a", "-q").stdout.strip() == ""
    crictl(cri, "rmp", "-f", pid_)


def test_streaming_exec_attach_and_port_forward(cri):
    """Exec, Attach and PortForward URLs, spoken over SPDY by crictl."""
    pod = pod_config(cri, "st")
    pod_json = write(cri, "pod-st.json", pod)
    web_json = write(cri, "ctr-web2.json", {
        "metadata": {"name": "web"}, "image": {"image": "busybox"},
        "command": ["sh", "-c", "mkdir -p /tmp/www && echo page-from-pod > /tmp/www/index.html"
                    " && exec httpd -f -p 80 -h /tmp/www"]})
    sh_json = write(cri, "ctr-sh.json", {"metadata": {"name": "shell"},
                                         "image": {"image": "busybox"}, "command": ["/bin/sh"],
                                         "stdin": True, "stdin_once": True})
    pid_ = crictl(cri, "runp", pod_json).stdout.strip()
    web = crictl(cri, "create", pid_, web_json, pod_json).stdout.strip()
    crictl(cri, "start", web)

    # exec: stdout and stderr apart, the exit code through the error stream
    r = crictl(cri, "exec", web, "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
    assert r.stdout == "out\n" and "err\n" in r.stderr
    assert "exit code 4" in r.stderr
    sock = "unix://" + cri.cri_sock
    r = subprocess.run([CRICTL, "--runtime-endpoint", sock, "exec", "-i", web, "sh"],
                       input="echo from-stdin\nexit 0\n", capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == "from-stdin\n", r.stderr

    # port-forward: a host port relayed to 127.0.0.1:80 inside the pod's
    # netns (the daemon connects from within it, not to the pod's address).
    import socket as socket_mod
    with socket_mod.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pf = subprocess.Popen([CRICTL, "--runtime-endpoint", sock, "port-forward", pid_,
                           f"{port}:80"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    try:
        assert "Forwarding from" in pf.stdout.readline()

        errors = []

        def fetch():
            try:
                with socket_mod.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while chunk := c.recv(4096):
                        data += chunk
                    return data.decode()
            except OSError as e:
                errors.append(repr(e))
                return ""
        try:
            page = wait_until(fetch, what="a page through port-forward")
        except AssertionError:
            raise AssertionError(f"{errors[-3:]} {cri.log()[-1500:]}")
        assert "page-from-pod" in page
    finally:
        pf.terminate()
        pf.wait(10)

    # attach: the shell's stdin and stdout; StdinOnce ends it with the attach
    sh = crictl(cri, "create", pid_, sh_json, pod_json).stdout.strip()
    crictl(cri, "start", sh)
    r = subprocess.run([CRICTL, "--runtime-endpoint", sock, "attach", "-i", sh],
                       input="echo attached $((6*7))\n", capture_output=True, text=True,
                       timeout=60)
    assert "attached 42" in r.stdout, r.stderr
    wait_until(lambda: json.loads(crictl(cri, "inspect", sh).stdout)["status"]["state"]
               == "CONTAINER_EXITED", what="the shell to exit with its stdin")

    # Output without a newline reaches an attached client while it is attached.
    sh2 = crictl(cri, "create", pid_, write(cri, "ctr-sh2.json", {
        "metadata": {"name": "shell2"}, "image": {"image": "busybox"}, "command": ["/bin/sh"],
        "stdin": True, "stdin_once": True}), pod_json).stdout.strip()
    crictl(cri, "start", sh2)
    import select
    att = subprocess.Popen([CRICTL, "--runtime-endpoint", sock, "attach", "-i", sh2],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        att.stdin.write(b"echo -n prompt-$((6*7))\n")
        att.stdin.flush()
        got = b""
        while b"prompt-42" not in got and select.select([att.stdout], [], [], 20)[0]:
            chunk = os.read(att.stdout.fileno(), 4096)
            if not chunk:
                break
            got += chunk
        assert b"prompt-42" in got
        assert att.poll() is None  # still attached: it came without the shell's exit
    finally:
        att.stdin.close()
        att.wait(30)
    crictl(cri, "rmp", "-f", pid_)


def test_checkpoint_writes_an_archive_and_the_container_runs_on(cri):
    import tarfile
    pod_json = write(cri, "pod-cp.json", pod_config(cri, "cp"))
    ctr_json = write(cri, "ctr-cp.json", {"metadata": {"name": "counter"},
                                          "image": {"image": "busybox"},
                                          "command": ["sh", "-c", "i=0; while true; do "
                                                      "i=$((i+1)); echo $i > /tmp/n; sleep 0.2;"
                                                      " done"]})
    pid_ = crictl(cri, "runp", pod_json).stdout.strip()
    cid = crictl(cri, "create", pid_, ctr_json, pod_json).stdout.strip()
    crictl(cri, "start", cid)
    pid = json.loads(crictl(cri, "inspect", cid).stdout)["info"]["pid"]
    archive = os.path.join(cri.work, "cp.tar")
    r = crictl(cri, "checkpoint", "--export", archive, cid, check=False)
    if r.returncode != 0 and "checkpoint/restore is not available" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and any(n.startswith("checkpoint/") for n in names)
    assert any(n.endswith(".img") for n in names)
    assert host_pid_alive(pid)  # it keeps running
    # Nothing of the checkpoint is kept besides the archive.
    bundle = cri.client.get(cid)["bundlePath"]
    assert not os.listdir(os.path.join(bundle, "checkpoints")) \
        if os.path.isdir(os.path.join(bundle, "checkpoints")) else True
    r = crictl(cri, "checkpoint", "--export", "relative.tar", cid, check=False)
    assert r.returncode != 0 and "InvalidArgument" in r.stderr
    crictl(cri, "rmp", "-f", pid_)


def test_pod_pid_namespace_is_shared_through_its_init(cri):
    """namespace_options.pid = POD: one PID namespace for the pod, whose
    init the sandbox runs; its containers see each other's processes."""
    pod = pod_config(cri, "pidpod")
    pod["linux"] = {"security_context": {"namespace_options": {"pid": 0}}}
    pod_json = write(cri, "pod-pid.json", pod)
    pid_ = crictl(cri, "runp", pod_json).stdout.strip()
    ids = []
    for name, secs in (("a", "1001"), ("b", "1002")):
        ctr = write(cri, f"ctr-pid-{name}.json", {
            "metadata": {"name": name}, "image": {"image": "busybox"},
            "command": ["sleep", secs],
            "linux": {"security_context": {"namespace_options": {"pid": 0}}}})
        cid = crictl(cri, "create", pid_, ctr, pod_json).stdout.strip()
        crictl(cri, "start", cid)
        ids.append(cid)
    pids = [json.loads(crictl(cri, "inspect", c).stdout)["info"]["pid"] for c in ids]
    assert os.stat(f"/proc/{pids[0]}/ns/pid").st_ino == os.stat(f"/proc/{pids[1]}/ns/pid").st_ino
    ps = crictl(cri, "exec", "-s", ids[0], "ps", "-o", "pid,args").stdout
    assert "sleep 1002" in ps and "sleep 3600" in ps  # the other container, the pod's init
    crictl(cri, "stopp", pid_)
    assert not any(host_pid_alive(p) for p in pids)
    crictl(cri, "rmp", pid_)
