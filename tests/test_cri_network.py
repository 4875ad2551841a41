"""Pod networking through CNI for CRI sandboxes, driven by crictl and
checked on the host: the pod's address on the default network's bridge,
its published host port, what StopPodSandbox gives back (the veth, the
netns pin, the DNAT rules, the host-local lease), and a pod that outlives
a daemon killed with SIGKILL.

Traffic goes only to 127.0.0.1 and to pod addresses on the bridge of the
test's own daemon (its default network is on a free /24 of its own).
"""

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

import archives  # bundles/archives.py
from conftest import Daemon, free_port, wait_until
from test_cri import BUSYBOX_ROOTFS, CRICTL, crictl, write

pytestmark = pytest.mark.skipif(not os.access(CRICTL, os.X_OK),
                                reason=f"crictl not found at {CRICTL} (set CRI_TOOLS_DIR)")

PAGE = "page-from-the-pod"


def start_daemon(state: str) -> Daemon:
    mirror = os.path.join(state, "mirror")
    if not os.path.isdir(mirror):
        os.makedirs(mirror)
        archives.docker_archive(os.path.join(mirror, "docker.io_library_busybox_latest.tar"),
                                [archives.dir_layer(BUSYBOX_ROOTFS)], {"Cmd": ["sh"]},
                                ["docker.io/library/busybox:latest"])
    d = Daemon(os.path.join(state, "s"), extra_args=["--image-mirror", mirror])
    d.work = state
    return restart(d)


def restart(d: Daemon) -> Daemon:
    d.start()
    d.cri_sock = os.path.join(d.state_dir, "cri.sock")
    wait_until(lambda: os.path.exists(d.cri_sock), what="the CRI socket")
    return d


def finish(d: Daemon) -> None:
    if d.proc is None or d.proc.poll() is not None:
        restart(d)
    crictl(d, "rmp", "-f", "-a", check=False)
    d.cleanup()
    shutil.rmtree(d.work, ignore_errors=True)


@pytest.fixture(scope="module")
def net_daemon():
    d = start_daemon(tempfile.mkdtemp(prefix="cdpy-crinet-"))
    crictl(d, "pull", "busybox")
    yield d
    finish(d)


def run_web_pod(d, name, host_port=None, **extra) -> tuple[str, str]:
    """A pod (published host_port -> 80 when given) with busybox httpd
    serving PAGE on port 80; (pod id, container id)."""
    pod = {"metadata": {"name": name, "namespace": "default", "uid": name + "-uid"},
           "hostname": name + "-host", "linux": {}, **extra}
    if host_port:
        pod["port_mappings"] = [{"container_port": 80, "host_port": host_port,
                                 "host_ip": "127.0.0.1"}]
    pod_json = write(d, f"pod-{name}.json", pod)
    ctr_json = write(d, f"ctr-{name}.json", {
        "metadata": {"name": "web"}, "image": {"image": "busybox"},
        "command": ["sh", "-c", f"mkdir -p /tmp/www && echo {PAGE} > /tmp/www/index.html"
                    " && exec httpd -f -p 80 -h /tmp/www"]})
    pod_id = crictl(d, "runp", pod_json).stdout.strip()
    cid = crictl(d, "create", pod_id, ctr_json, pod_json).stdout.strip()
    crictl(d, "start", cid)
    return pod_id, cid


def runtime_call(d, method: str, pod_id: str):
    import grpc
    from containerd_py.cri._gen import api_pb2 as pb, api_pb2_grpc as pbg
    with grpc.insecure_channel("unix://" + d.cri_sock) as ch:
        stub = pbg.RuntimeServiceStub(ch)
        return getattr(stub, method)(getattr(pb, method + "Request")(pod_sandbox_id=pod_id),
                                     timeout=60)


def inspectp(d, pod_id) -> dict:
    return json.loads(crictl(d, "inspectp", pod_id).stdout)


def fetch(url: str) -> str:
    """The page, or "" while nothing answers yet (httpd just started)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def no_proxy():
    # Only 127.0.0.1 and our own bridge: never through a proxy of the host.
    return urllib.request.install_opener(urllib.request.build_opener(
        urllib.request.ProxyHandler({})))


def host_veth(netns: str) -> str:
    """The host side of the pod's eth0: the link eth0@ifN's N names (netlink,
    as `ip` reads it in the namespace; /sys would still be the host's)."""
    out = subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    idx = re.search(r"eth0@if(\d+)", out).group(1)
    for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        if line.split(":", 1)[0] == idx:
            return line.split(":")[1].strip().split("@")[0]
    raise AssertionError(f"no host link with index {idx}")


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def iptables() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def lease_dir(d) -> str:
    return os.path.join(d.state_dir, "data", "cni", "ipam", "default")


def leases_of(d, pod_id) -> list[str]:
    """The host-local lease files (one per address) naming the pod."""
    out = []
    for name in os.listdir(lease_dir(d)):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            continue  # lock, last_reserved_ip.0
        with open(os.path.join(lease_dir(d), name)) as f:
            if pod_id in f.read():
                out.append(name)
    return out


def mounts() -> str:
    with open("/proc/mounts") as f:
        return f.read()


def test_pod_gets_an_address_and_its_port_and_stop_gives_them_back(net_daemon):
    d = net_daemon
    no_proxy()
    port = free_port()
    pod_id, cid = run_web_pod(d, "webnet", port,
                              dns_config={"servers": ["10.9.9.9"], "searches": ["pods.test"]})
    info = inspectp(d, pod_id)
    ip = info["status"]["network"]["ip"]
    netns = info["info"]["namespaces"]["net"]
    default = d.client.request("GET", "/networks/default")
    # An address from the default network's IPAM, on its bridge.
    assert ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(default["subnet"])
    assert ip != default["gateway"]
    veth = host_veth(netns)
    assert f"master {default['bridge']}" in subprocess.run(
        ["ip", "-o", "link", "show", "dev", veth], capture_output=True, text=True).stdout
    assert leases_of(d, pod_id) == [ip]
    # The container sees eth0 with that address; DNS config and hostname are the pod's.
    r = crictl(d, "exec", "-s", cid, "sh", "-c",
               "ip -4 -o addr show dev eth0; hostname; cat /etc/resolv.conf /etc/hosts").stdout
    assert f"inet {ip}/" in r and "webnet-host" in r
    assert "nameserver 10.9.9.9" in r and "search pods.test" in r
    assert f"{ip}\twebnet-host" in r
    # The REST API shows the pod on the default network.
    assert default["containers"][pod_id]["ip"] == ip

    # From the host: at the pod's address, and through the published port.
    assert PAGE in wait_until(lambda: fetch(f"http://{ip}/"), what="the page at the pod IP")
    assert PAGE in wait_until(lambda: fetch(f"http://127.0.0.1:{port}/"),
                              what="the page through the host port")
    assert f"--dport {port}" in iptables() and pod_id in iptables()

    crictl(d, "stopp", pod_id)
    status = inspectp(d, pod_id)["status"]
    assert status["state"] == "SANDBOX_NOTREADY" and status["network"]["ip"] == ""
    assert not link_exists(veth)
    assert not os.path.exists(netns) and netns not in mounts()
    rules = iptables()
    assert f"--dport {port}" not in rules and pod_id not in rules
    assert leases_of(d, pod_id) == []
    assert pod_id not in d.client.request("GET", "/networks/default")["containers"]
    # The CRI: both idempotent, in either order (through the stubs: crictl
    # itself asks for the status first).
    crictl(d, "stopp", pod_id)
    crictl(d, "rmp", pod_id)
    runtime_call(d, "RemovePodSandbox", pod_id)
    runtime_call(d, "StopPodSandbox", pod_id)
    assert crictl(d, "pods", "-q").stdout.strip() == ""
    assert not os.listdir(os.path.join(d.state_dir, "data", "cni", "owners"))


def test_remove_without_stop_releases_the_network(net_daemon):
    d = net_daemon
    port = free_port()
    pod_id, _ = run_web_pod(d, "rmonly", port)
    netns = inspectp(d, pod_id)["info"]["namespaces"]["net"]
    veth = host_veth(netns)
    crictl(d, "rmp", "-f", pod_id)
    assert not link_exists(veth) and not os.path.exists(netns) and netns not in mounts()
    assert leases_of(d, pod_id) == [] and f"--dport {port}" not in iptables()


def test_bad_port_mappings_leave_nothing(net_daemon):
    d = net_daemon
    port = free_port()
    first, _ = run_web_pod(d, "holder", port)
    before = sorted(os.listdir(lease_dir(d)))
    pod = {"metadata": {"name": "clash", "namespace": "default", "uid": "clash-uid"},
           "port_mappings": [{"container_port": 80, "host_port": port, "host_ip": "127.0.0.1"}],
           "linux": {}}
    r = crictl(d, "runp", write(d, "pod-clash.json", pod), check=False)
    assert r.returncode != 0 and str(port) in r.stderr and first in r.stderr
    pod["port_mappings"] = [{"container_port": 80, "host_port": free_port(), "protocol": 2}]
    r = crictl(d, "runp", write(d, "pod-sctp.json", pod), check=False)
    assert r.returncode != 0 and "InvalidArgument" in r.stderr and "SCTP" in r.stderr
    # Nothing half-created: no sandbox, no lease, no namespace of theirs.
    assert crictl(d, "pods", "-q").stdout.split() == [first]
    assert sorted(os.listdir(lease_dir(d))) == before
    assert os.listdir(os.path.join(d.state_dir, "netns")) == [first]
    crictl(d, "rmp", "-f", first)


def test_host_network_pod_has_no_cni(net_daemon):
    d = net_daemon
    pod = {"metadata": {"name": "hostnet", "namespace": "default", "uid": "hostnet-uid"},
           "linux": {"security_context": {"namespace_options": {"network": 2}}}}
    pod_id = crictl(d, "runp", write(d, "pod-hostnet.json", pod)).stdout.strip()
    info = inspectp(d, pod_id)
    assert info["info"]["namespaces"]["net"] is None and info["info"]["network"] is None
    assert info["status"]["network"]["ip"] == ""
    assert leases_of(d, pod_id) == []
    assert pod_id not in os.listdir(os.path.join(d.state_dir, "netns")) \
        if os.path.isdir(os.path.join(d.state_dir, "netns")) else True
    crictl(d, "rmp", "-f", pod_id)


def test_pod_network_survives_a_daemon_kill9():
    """The restarted daemon's orphan collection counts the pod as an owner:
    its netns, veth, lease and DNAT stay, and it answers at its address; a
    new pod does not get its address; stop and remove release it all."""
    d = start_daemon(tempfile.mkdtemp(prefix="cdpy-crinet-"))
    try:
        no_proxy()
        crictl(d, "pull", "busybox")
        port = free_port()
        pod_id, cid = run_web_pod(d, "survivor", port)
        info = inspectp(d, pod_id)
        ip, netns = info["status"]["network"]["ip"], info["info"]["namespaces"]["net"]
        veth = host_veth(netns)
        assert PAGE in wait_until(lambda: fetch(f"http://{ip}/"), what="the page at the pod IP")

        d.kill9()
        restart(d)
        assert inspectp(d, pod_id)["status"]["network"]["ip"] == ip
        assert os.path.exists(netns) and netns in mounts() and link_exists(veth)
        assert leases_of(d, pod_id) == [ip]
        assert PAGE in fetch(f"http://{ip}/")
        assert PAGE in wait_until(lambda: fetch(f"http://127.0.0.1:{port}/"),
                                  what="the page through the host port")
        # Its lease is not handed out again.
        other, _ = run_web_pod(d, "newcomer")
        other_ip = inspectp(d, other)["status"]["network"]["ip"]
        assert other_ip and other_ip != ip
        assert PAGE in fetch(f"http://{ip}/")

        crictl(d, "stopp", pod_id)
        crictl(d, "rmp", pod_id)
        assert not link_exists(veth) and not os.path.exists(netns) and netns not in mounts()
        assert leases_of(d, pod_id) == [] and f"--dport {port}" not in iptables()
        crictl(d, "rmp", "-f", other)
    finally:
        finish(d)


def test_a_stopped_pod_is_not_brought_back_by_a_restart():
    """A pod stopped before the daemon died has no network after the
    restart; one whose network the dead daemon left (killed between
    saving NOTREADY and the CNI DEL: here its record is made so while the
    daemon is down) is released at start."""
    d = start_daemon(tempfile.mkdtemp(prefix="cdpy-crinet-"))
    try:
        crictl(d, "pull", "busybox")
        stopped, _ = run_web_pod(d, "stopped", free_port())
        crictl(d, "stopp", stopped)
        half, _ = run_web_pod(d, "halfway", free_port())
        netns = inspectp(d, half)["info"]["namespaces"]["net"]
        veth = host_veth(netns)
        # And one killed before its sandbox record was saved (its network
        # set up, its IPC/UTS pinned): here its record is taken away.
        unsaved = crictl(d, "runp", write(d, "pod-unsaved.json", {
            "metadata": {"name": "unsaved", "namespace": "default", "uid": "u"},
            "linux": {}})).stdout.strip()
        unsaved_netns = inspectp(d, unsaved)["info"]["namespaces"]["net"]
        d.kill9()
        records = os.path.join(d.state_dir, "data", "cri", "sandboxes")
        with open(os.path.join(records, half + ".json")) as f:
            rec = json.load(f)
        rec["state"] = "notready"
        with open(os.path.join(records, half + ".json"), "w") as f:
            json.dump(rec, f)
        os.unlink(os.path.join(records, unsaved + ".json"))
        restart(d)
        for pod_id in (stopped, half):
            assert inspectp(d, pod_id)["status"]["state"] == "SANDBOX_NOTREADY"
            assert inspectp(d, pod_id)["status"]["network"]["ip"] == ""
            assert leases_of(d, pod_id) == [] and pod_id not in iptables()
        assert not link_exists(veth) and not os.path.exists(netns) and netns not in mounts()
        assert crictl(d, "inspectp", unsaved, check=False).returncode != 0
        assert leases_of(d, unsaved) == [] and not os.path.exists(unsaved_netns)
        assert not os.path.exists(os.path.join(d.state_dir, "cri", "sandboxes", unsaved))
        assert unsaved not in mounts()
        crictl(d, "rmp", stopped)
        crictl(d, "rmp", half)
    finally:
        finish(d)


def test_network_ready_follows_the_cni_plugins(net_daemon, tmp_path):
    conditions = {c["type"]: c for c in
                  json.loads(crictl(net_daemon, "info").stdout)["status"]["conditions"]}
    assert conditions["NetworkReady"]["status"] is True
    # A daemon whose plugin path has none of them: not ready, saying which,
    # and a pod fails with the plugin's name, leaving nothing.
    d = Daemon(str(tmp_path / "s"))
    d.work = str(tmp_path)
    d.env["CNI_PATH"] = str(tmp_path / "no-plugins")
    restart(d)
    try:
        ready = {c["type"]: c for c in
                 json.loads(crictl(d, "info").stdout)["status"]["conditions"]}["NetworkReady"]
        assert ready["status"] is False and ready["reason"] == "NetworkPluginNotReady"
        assert "bridge" in ready["message"] and "loopback" in ready["message"]
        pod = {"metadata": {"name": "noplugins", "namespace": "default", "uid": "np"},
               "linux": {}}
        r = crictl(d, "runp", write(d, "pod-np.json", pod), check=False)
        assert r.returncode != 0 and "loopback" in r.stderr and "not found" in r.stderr
        assert crictl(d, "pods", "-q").stdout.strip() == ""
        assert not os.listdir(os.path.join(d.state_dir, "netns")) \
            if os.path.isdir(os.path.join(d.state_dir, "netns")) else True
        assert netns_pins(d) == ""
    finally:
        d.cleanup()


def netns_pins(d) -> str:
    return "\n".join(ln for ln in mounts().splitlines() if d.state_dir in ln)


def test_a_subnet_another_interface_took_meanwhile_is_refused(tmp_path):
    """The default network's subnet was free at the first start, but its
    bridge comes only with the first pod: when another interface (here a
    bridge of the test's own, standing in for another daemon's) has the
    subnet by then, RunPodSandbox says so instead of giving the pod an
    address nobody reaches; nothing is left, and it works once it is gone."""
    d = start_daemon(str(tmp_path))
    other = f"cdpyt{os.getpid() % 100000}"
    try:
        crictl(d, "pull", "busybox")
        subnet = ipaddress.IPv4Network(d.client.request("GET", "/networks/default")["subnet"])
        subprocess.run(["ip", "link", "add", other, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{subnet.broadcast_address - 1}/{subnet.prefixlen}",
                        "dev", other], check=True)
        pod = {"metadata": {"name": "clash", "namespace": "default", "uid": "c"}, "linux": {}}
        pod_json = write(d, "pod-subnet.json", pod)
        r = crictl(d, "runp", pod_json, check=False)
        assert r.returncode != 0 and other in r.stderr and str(subnet) in r.stderr
        assert "--default-subnet" in r.stderr
        assert crictl(d, "pods", "-q").stdout.strip() == ""
        assert not os.path.isdir(lease_dir(d)) or \
            [n for n in os.listdir(lease_dir(d)) if n[0].isdigit()] == []
        assert netns_pins(d) == ""
        subprocess.run(["ip", "link", "del", other], check=True)
        pod_id = crictl(d, "runp", pod_json).stdout.strip()
        assert ipaddress.IPv4Address(inspectp(d, pod_id)["status"]["network"]["ip"]) in subnet
        crictl(d, "rmp", "-f", pod_id)
    finally:
        subprocess.run(["ip", "link", "del", other], capture_output=True)
        finish(d)
