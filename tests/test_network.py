"""Networks with the real CNI plugins: published ports, reachability by
address and name, isolation, attach/detach, teardown and restart promises,
checked on the host (ip link, ip netns, iptables, the IPAM dir).

Traffic goes only to 127.0.0.1 and to addresses inside the bridges and
namespaces these tests create.
"""

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request

import pytest

import criu_images
from conftest import Daemon, free_port, free_subnet, host_pid_alive, wait_until
from containerd_py.client import APIError

CNI_DIR = "/usr/lib/cni"
pytestmark = pytest.mark.skipif(
    not all(os.access(os.path.join(CNI_DIR, p), os.X_OK)
            for p in ("bridge", "host-local", "portmap", "firewall", "loopback", "tuning")),
    reason=f"CNI plugins missing from {CNI_DIR} (Debian's containernetworking-plugins; "
           "make setup)")

WEB = ["sh", "-c", "mkdir -p /tmp/www && hostname > /tmp/www/index.html && "
                   "exec httpd -f -p 80 -h /tmp/www"]


def sh(*args) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def exec_out(api, cid_, *args) -> dict:
    return api.exec_sync(cid_, list(args), timeout=30)


def start_daemon(state: str) -> Daemon:
    return Daemon(state).start()


@pytest.fixture(scope="module")
def net_daemon():
    state = tempfile.mkdtemp(prefix="cdpyn-")
    d = start_daemon(state)
    yield d
    d.cleanup()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def napi(net_daemon):
    return net_daemon.client


@pytest.fixture
def network(napi):
    """network() -> name of a fresh bridge network, deleted after the test."""
    made = []

    def make(**opts):
        name = f"n{random.randint(0, 1 << 30):x}"
        napi.create_network(name, free_subnet(), **opts)
        made.append(name)
        return name

    yield make
    for name in made:
        for cid_ in napi.network(name)["containers"]:
            napi.delete(cid_, force=True)
        napi.delete_network(name)


def leftovers(daemon: Daemon, c: dict) -> list[str]:
    """What the host still has of a container's networking."""
    out = []
    ids = [c["id"]] + [a["ip"] for a in c["networks"].values()]
    for table in ("filter", "nat"):
        rules = sh("iptables", "-t", table, "-S")
        out += [f"{table}: {ln}" for ln in rules.splitlines()
                if any(f'"{x}"' in ln or f"{x}/32" in ln or f"{x}:" in ln for x in ids)]
    netns_dir = os.path.join(daemon.state_dir, "netns")
    if os.path.exists(os.path.join(netns_dir, c["id"])):
        out.append("netns pin")
    ipam = os.path.join(daemon.state_dir, "data", "cni", "ipam")
    for name, a in c["networks"].items():
        if os.path.exists(os.path.join(ipam, name, a["ip"])):
            out.append(f"lease {a['ip']}")
    cache = os.path.join(daemon.state_dir, "data", "cni", "cache", "results")
    out += [f"cache {f}" for f in os.listdir(cache) if c["id"] in f]
    links = sh("ip", "-o", "link")
    for a in c["networks"].values():
        if a["mac"] and a["mac"] in links:
            out.append(f"link {a['mac']}")
    if f"/{c['id']} " in open("/proc/mounts").read():
        out.append("mount")
    return out


# -- networks ----------------------------------------------------------------

def test_default_network_and_network_crud(napi, network):
    names = {n["name"]: n for n in napi.networks()}
    assert "default" in names and names["default"]["bridge"].startswith("cdpy")
    subnet = free_subnet()
    n = napi.create_network("crud-a", subnet, internal=True)
    try:
        assert n["subnet"] == subnet and n["internal"] is True
        assert n["gateway"] == str(ipaddress.IPv4Network(subnet).network_address + 1)
        assert os.path.exists(os.path.join(napi_state(napi), "data", "networks",
                                           "crud-a.conflist"))
        conf = json.load(open(os.path.join(napi_state(napi), "data", "networks",
                                           "crud-a.conflist")))
        assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall",
                                                         "tuning"]
        assert conf["plugins"][0]["ipMasq"] is False
        for body, field in [({"name": "x1", "subnet": subnet}, "subnet"),  # overlaps
                            ({"name": "x1", "subnet": "10.1.2.3/24"}, "subnet"),  # host bits
                            ({"name": "x1", "subnet": "nonsense"}, "subnet"),
                            ({"name": "x1", "subnet": "10.1.0.0/33"}, "subnet"),
                            ({"name": "-bad", "subnet": free_subnet()}, "name"),
                            ({"name": "host", "subnet": free_subnet()}, "name"),
                            ({"name": "x1", "subnet": "10.1.0.0/24", "gateway": "10.2.0.1"},
                             "gateway"),
                            ({"name": "x1", "subnet": "10.1.0.0/24", "mtu": 9000}, "mtu")]:
            with pytest.raises(APIError) as e:
                napi.request("POST", "/networks", body)
            assert e.value.status == 400 and e.value.body["field"] == field, body
        with pytest.raises(APIError) as e:
            napi.create_network("crud-a", free_subnet())
        assert e.value.status == 409
        assert napi.network("crud-a")["containers"] == {}
    finally:
        napi.delete_network("crud-a")
    with pytest.raises(APIError) as e:
        napi.network("crud-a")
    assert e.value.status == 404
    assert "crud-a" not in {n["name"] for n in napi.networks()}


def napi_state(napi) -> str:
    return napi.info()["stateDir"]


def test_bad_network_requests_leave_nothing(napi, bundle, cid, network):
    net = network()
    b = bundle(WEB)
    for body, status in [({"networks": ["nosuch"]}, 404),
                         ({"networks": "n"}, 400),
                         ({"networks": ["host", net]}, 400),
                         ({"networks": [net, net]}, 400),
                         ({"nets": [{"net": net}]}, 400),
                         ({"ports": [{"containerPort": 80}]}, 400),  # no network
                         ({"networks": [], "ports": [{"containerPort": 80}]}, 400),
                         ({"networks": [net], "ports": [{"containerPort": 0}]}, 400),
                         ({"networks": [net], "ports": [{"containerPort": 80,
                                                         "protocol": "sctp"}]}, 400),
                         ({"networks": [net], "ports": [{"containerPort": 80,
                                                         "hostIp": "nope"}]}, 400)]:
        c = cid("bad")
        with pytest.raises(APIError) as e:
            napi.create(c, b, **body)
        assert e.value.status == status, (body, e.value.body)
        assert "error" in e.value.body
    assert napi.network(net)["containers"] == {}
    assert os.listdir(os.path.join(napi_state(napi), "netns")) == [] \
        if os.path.exists(os.path.join(napi_state(napi), "netns")) else True


# -- published ports, teardown -------------------------------------------------

def test_host_fetches_page_through_published_loopback_port(net_daemon, napi, bundle, cid,
                                                           network):
    net = network()
    port = free_port()
    c = napi.create(cid("web"), bundle(WEB), networks=[net],
                    ports=[{"hostPort": port, "containerPort": 80}])
    a = c["networks"][net]
    assert a["interface"] == "eth0" and ipaddress.IPv4Address(a["ip"]) in \
        ipaddress.IPv4Network(napi.network(net)["subnet"])
    assert a["prefixLen"] == 24 and a["gateway"] and a["mac"]
    assert c["ports"] == [{"hostPort": port, "containerPort": 80, "protocol": "tcp",
                           "hostIp": "127.0.0.1"}]
    assert c["addresses"][net][0]["addr"] == a["ip"]
    # DNAT to a container from the host's own 127.0.0.1 (portmap's snat).
    page = wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page via port")
    assert page.strip() == "containerd-py"
    assert http_get(f"http://{a['ip']}/").strip() == "containerd-py"
    # Inside: lo up, eth0 with the address, the /etc files.
    out = exec_out(napi, c["id"], "ip", "-o", "addr")["stdout"]
    assert "lo    inet 127.0.0.1/8" in out.replace("\\", "") or "127.0.0.1/8" in out
    assert a["ip"] in out
    hosts = exec_out(napi, c["id"], "cat", "/etc/hosts")["stdout"]
    assert a["ip"] in hosts and c["id"] in hosts
    assert exec_out(napi, c["id"], "cat", "/etc/hostname")["stdout"].strip() == "containerd-py"
    assert exec_out(napi, c["id"], "test", "-f", "/etc/resolv.conf")["exitStatus"] == 0
    # The namespace is pinned under the daemon's state dir, not /run/netns.
    pin = os.path.join(net_daemon.state_dir, "netns", c["id"])
    assert os.path.exists(pin)
    assert os.stat(pin).st_ino == os.stat(f"/proc/{c['pid']}/ns/net").st_ino
    assert napi.network(net)["containers"][c["id"]]["ip"] == a["ip"]
    rules = sh("iptables", "-t", "nat", "-S")
    assert f"--dport {port}" in rules
    assert leftovers(net_daemon, c), "the container's rules should be there while it runs"

    napi.delete(c["id"], force=True)
    assert leftovers(net_daemon, c) == []
    assert f"--dport {port}" not in sh("iptables", "-t", "nat", "-S")
    assert napi.network(net)["containers"] == {}
    # The network's bridge went with its last container.
    assert napi.network(net)["bridge"] not in sh("ip", "-o", "link")


def _try_get(url):
    try:
        return http_get(url)
    except OSError:
        return None


def test_host_port_taken_is_409_and_nothing_is_left(net_daemon, napi, bundle, cid, network):
    net = network()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        c = cid("taken")
        with pytest.raises(APIError) as e:
            napi.create(c, bundle(WEB), networks=[net],
                        ports=[{"hostPort": taken, "containerPort": 80}])
        assert e.value.status == 409 and str(taken) in e.value.body["error"]
    port = free_port()
    first = napi.create(cid("first"), bundle(WEB), networks=[net],
                        ports=[{"hostPort": port, "containerPort": 80}])
    with pytest.raises(APIError) as e:
        napi.create(cid("second"), bundle(WEB), networks=[net],
                    ports=[{"hostPort": port, "containerPort": 8080}])
    assert e.value.status == 409 and e.value.body["id"] == first["id"]
    # UDP on the same number is another port.
    udp = napi.create(cid("udp"), bundle(WEB), networks=[net],
                      ports=[{"hostPort": port, "containerPort": 53, "protocol": "udp"}])
    assert set(napi.network(net)["containers"]) == {first["id"], udp["id"]}
    leases = os.listdir(os.path.join(net_daemon.state_dir, "data", "cni", "ipam", net))
    assert sorted(x for x in leases if x[0].isdigit()) == sorted(
        [first["networks"][net]["ip"], udp["networks"][net]["ip"]])


def test_network_in_use_cannot_be_deleted(napi, bundle, cid, network):
    net = network()
    c = napi.create(cid("user"), bundle(), networks=[net])
    with pytest.raises(APIError) as e:
        napi.delete_network(net)
    assert e.value.status == 409 and e.value.body["containers"] == [c["id"]]
    napi.delete(c["id"], force=True)


def test_loopback_only_and_host_network(napi, bundle, cid):
    c = napi.create(cid("lo"), bundle(), networks=[])
    out = exec_out(napi, c["id"], "ip", "-o", "link")["stdout"]
    assert [ln.split(":")[1].strip() for ln in out.splitlines()] == ["lo"]
    assert "UP" in out and c["networks"] == {}
    h = napi.create(cid("host"), bundle(), networks=["host"])
    assert os.stat(f"/proc/{h['pid']}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    for x in (c, h):
        napi.delete(x["id"], force=True)


def test_bundle_keeps_its_own_namespace_without_networks(napi, bundle, cid):
    c = napi.create(cid("plain"), bundle())
    assert "networks" not in c
    out = exec_out(napi, c["id"], "ip", "-o", "link")["stdout"]
    assert len(out.splitlines()) == 1
    napi.delete(c["id"], force=True)


# -- between containers --------------------------------------------------------

def test_two_containers_reach_each_other_by_address_and_name(napi, bundle, cid, network):
    net = network()
    a = napi.create(cid("a"), bundle(WEB), networks=[net], name=f"alpha{random.randint(0, 999)}")
    b = napi.create(cid("b"), bundle(WEB), networks=[net])
    b_ip = b["networks"][net]["ip"]
    r = exec_out(napi, a["id"], "timeout", "10", "wget", "-q", "-O", "-", f"http://{b_ip}/")
    assert r["exitStatus"] == 0 and r["stdout"].strip() == "containerd-py"
    # By name: b's /etc/hosts names a (written after b joined, in place).
    hosts = exec_out(napi, b["id"], "cat", "/etc/hosts")["stdout"]
    assert a["name"] in hosts and a["networks"][net]["ip"] in hosts
    r = exec_out(napi, a["id"], "timeout", "10", "wget", "-q", "-O", "-", f"http://{b['id']}/")
    assert r["exitStatus"] == 0, r
    r = exec_out(napi, b["id"], "timeout", "10", "wget", "-q", "-O", "-", f"http://{a['name']}/")
    assert r["exitStatus"] == 0, r
    napi.delete(b["id"], force=True)
    assert b["id"] not in exec_out(napi, a["id"], "cat", "/etc/hosts")["stdout"]


def test_two_networks_are_isolated(napi, bundle, cid, network):
    n1, n2 = network(), network()
    a = napi.create(cid("iso-a"), bundle(WEB), networks=[n1])
    b = napi.create(cid("iso-b"), bundle(WEB), networks=[n2])
    b_ip = b["networks"][n2]["ip"]
    # Reachable from the host (so the server is up) but not from the other network.
    assert wait_until(lambda: _try_get(f"http://{b_ip}/"), what="b serving")
    r = exec_out(napi, a["id"], "timeout", "3", "wget", "-q", "-O", "-", f"http://{b_ip}/")
    assert r["exitStatus"] != 0, r
    # ... and the other way round.
    a_ip = a["networks"][n1]["ip"]
    r = exec_out(napi, b["id"], "timeout", "3", "wget", "-q", "-O", "-", f"http://{a_ip}/")
    assert r["exitStatus"] != 0, r


def test_attach_and_detach_on_a_running_container(net_daemon, napi, bundle, cid, network):
    n1, n2 = network(), network()
    a = napi.create(cid("att"), bundle(WEB), networks=[n1])
    peer = napi.create(cid("peer"), bundle(WEB), networks=[n2])
    peer_ip = peer["networks"][n2]["ip"]
    att = napi.attach_network(a["id"], n2)
    assert att["interface"] == "eth1" and att["network"] == n2
    links = exec_out(napi, a["id"], "ip", "-o", "addr")["stdout"]
    assert "eth1" in links and att["ip"] in links
    # The same seen from the host, over netlink in the container's namespace.
    seen = {i["name"]: i for i in napi.container_networks(a["id"])["interfaces"]}
    assert set(seen) == {"lo", "eth0", "eth1"} and all(i["up"] for i in seen.values())
    assert f"{att['ip']}/24" in seen["eth1"]["addresses"] and seen["eth1"]["mac"] == att["mac"]
    r = exec_out(napi, a["id"], "timeout", "10", "wget", "-q", "-O", "-", f"http://{peer_ip}/")
    assert r["exitStatus"] == 0, r
    got = napi.get(a["id"])
    assert set(got["networks"]) == {n1, n2} and got["requestedNetworks"] == [n1, n2]
    assert a["id"] in napi.network(n2)["containers"]
    with pytest.raises(APIError) as e:
        napi.attach_network(a["id"], n2)
    assert e.value.status == 409
    napi.detach_network(a["id"], n2)
    assert "eth1" not in exec_out(napi, a["id"], "ip", "-o", "link")["stdout"]
    assert "eth1" not in {i["name"] for i in napi.container_networks(a["id"])["interfaces"]}
    assert not os.path.exists(os.path.join(net_daemon.state_dir, "data", "cni", "ipam", n2,
                                           att["ip"]))
    with pytest.raises(APIError) as e:
        napi.detach_network(a["id"], n2)
    assert e.value.status == 404
    # Zun's forms.
    napi.request("POST", f"/containers/{a['id']}/network_attach", query={"network": n2})
    assert "eth1" in exec_out(napi, a["id"], "ip", "-o", "link")["stdout"]
    napi.request("POST", f"/containers/{a['id']}/network_detach", query={"network": n2})
    assert "eth1" not in exec_out(napi, a["id"], "ip", "-o", "link")["stdout"]
    # A stopped container has nothing to attach to.
    napi.stop(a["id"], timeout=0)
    with pytest.raises(APIError) as e:
        napi.attach_network(a["id"], n2)
    assert e.value.status == 409


def test_zun_nets_form(napi, bundle, cid, network):
    net = network()
    c = napi.create(cid("zun"), bundle(), nets=[{"network": net}])
    assert list(c["addresses"]) == [net]
    assert c["addresses"][net][0]["addr"] == c["networks"][net]["ip"]
    napi.delete(c["id"], force=True)


def test_fifty_containers_get_distinct_addresses(net_daemon, napi, bundle, cid, network):
    net = network()
    b = bundle()
    made = [napi.create(cid("many"), b, networks=[net]) for _ in range(50)]
    ips = [c["networks"][net]["ip"] for c in made]
    assert len(set(ips)) == 50
    assert len(napi.network(net)["containers"]) == 50
    for c in made:
        napi.delete(c["id"], force=True)
    for c in made:
        assert leftovers(net_daemon, c) == []


# -- stop, restart policy, daemon restart ------------------------------------------

def test_stop_releases_and_start_sets_up_again(net_daemon, napi, bundle, cid, network):
    net = network()
    port = free_port()
    c = napi.create(cid("stop"), bundle(WEB), networks=[net],
                    ports=[{"hostPort": port, "containerPort": 80}])
    wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page")
    stopped = napi.stop(c["id"], timeout=0)
    assert stopped["networks"] == {}
    assert leftovers(net_daemon, c) == []
    again = napi.start(c["id"])
    assert again["networks"][net]["ip"]
    assert wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page again")


def test_restart_policy_brings_the_container_back_with_its_networks(napi, bundle, cid,
                                                                     network):
    net = network()
    port = free_port()
    c = napi.create(cid("policy"), bundle(WEB), networks=[net], restartPolicy="always",
                    ports=[{"hostPort": port, "containerPort": 80}])
    wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page")
    os.kill(c["pid"], signal.SIGKILL)
    back = wait_until(lambda: (lambda x: x if x["restartCount"] >= 1 and x["status"] ==
                               "running" and x["networks"] else None)(napi.get(c["id"])),
                      what="restart by policy")
    assert back["networks"][net]["ip"]
    assert wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page after restart")
    napi.delete(c["id"], force=True)


def test_daemon_killed_keeps_networks_and_leases(bundle, cid):
    state = tempfile.mkdtemp(prefix="cdpyn-")
    d = start_daemon(state)
    try:
        api = d.client
        net = "keep"
        api.create_network(net, free_subnet())
        port = free_port()
        c = api.create(cid("kept"), bundle(WEB), networks=[net],
                       ports=[{"hostPort": port, "containerPort": 80}])
        wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page")
        d.kill9()
        # Still served with no daemon at all.
        assert http_get(f"http://127.0.0.1:{port}/")
        d.start()
        got = api.get(c["id"])
        assert got["networks"] == c["networks"] and got["ports"] == c["ports"]
        assert api.network(net)["containers"][c["id"]]["ip"] == c["networks"][net]["ip"]
        assert http_get(f"http://127.0.0.1:{port}/")
        # The lease is not handed out twice, and the port stays ours.
        other = api.create(cid("other"), bundle(WEB), networks=[net])
        assert other["networks"][net]["ip"] != c["networks"][net]["ip"]
        with pytest.raises(APIError) as e:
            api.create(cid("clash"), bundle(WEB), networks=[net],
                       ports=[{"hostPort": port, "containerPort": 80}])
        assert e.value.status == 409
        api.delete(c["id"], force=True)
        api.delete(other["id"], force=True)
        assert leftovers(d, c) == [] and leftovers(d, other) == []
        api.delete_network(net)
    finally:
        if d.proc.poll() is not None:
            d.start()
        d.cleanup()
        shutil.rmtree(state, ignore_errors=True)
    assert not host_pid_alive(c["pid"])


# -- checkpoint and clones ------------------------------------------------------------

def test_checkpointed_web_server_clones_all_answer(net_daemon, napi, bundle, cid, network):
    info = napi.info()["criu"]
    if not info.get("available"):
        pytest.skip(f"CRIU unavailable: {info.get('reason')}")
    net = network()
    b = bundle(WEB)
    port = free_port()
    src = napi.create(cid("src"), b, networks=[net],
                      ports=[{"hostPort": port, "containerPort": 80}])
    wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"), what="page")
    try:
        napi.checkpoint(src["id"], "warm")
    except APIError as e:
        pytest.skip(f"CRIU cannot checkpoint a listening socket here: {e.body['error']}")
    # Reachable from the host: CRIU keeps its network lock around the dump.
    assert criu_images.network_lock(os.path.join(b, "checkpoints", "warm")) \
        == criu_images.NETWORK_LOCK_IPTABLES
    clones = []
    for _ in range(3):
        p = free_port()
        clone = napi.create(cid("clone"), b, checkpoint="warm", networks=[net],
                            ports=[{"hostPort": p, "containerPort": 80}])
        clones.append((clone, p))
    ips = {src["networks"][net]["ip"]} | {c["networks"][net]["ip"] for c, _ in clones}
    assert len(ips) == 4
    for clone, p in clones:
        assert http_get(f"http://127.0.0.1:{p}/").strip() == "containerd-py"
        assert http_get(f"http://{clone['networks'][net]['ip']}/").strip() == "containerd-py"
        pin = os.path.join(net_daemon.state_dir, "netns", clone["id"])
        assert os.stat(pin).st_ino == os.stat(f"/proc/{clone['pid']}/ns/net").st_ino
        lo = exec_out(napi, clone["id"], "ip", "-o", "link", "show", "lo")["stdout"]
        assert "UP" in lo
    assert http_get(f"http://127.0.0.1:{port}/")
    for clone, _ in clones:
        napi.delete(clone["id"], force=True)
        assert leftovers(net_daemon, clone) == []
    napi.delete(src["id"], force=True)


# -- image containers -----------------------------------------------------------------

def test_image_container_is_on_the_default_network_unless_told(napi, tmp_path, cid):
    import archives  # bundles/archives.py: a busybox image built offline
    name = f"localhost/netimg-{random.randint(0, 1 << 30):x}:1"
    path = archives.docker_archive(tmp_path / "img.tar", [archives.dir_layer(
        archives.BUSYBOX_ROOTFS)], {"Cmd": ["tail", "-f", "/dev/null"]}, [name])
    with open(path, "rb") as f:
        napi.load(f)
    c = napi.create(cid("img"), image=name)
    default = napi.network("default")
    assert list(c["networks"]) == ["default"]
    assert ipaddress.IPv4Address(c["networks"]["default"]["ip"]) in \
        ipaddress.IPv4Network(default["subnet"])
    assert c["id"] in default["containers"]
    lo_only = napi.create(cid("img"), image=name, networks=[])
    assert lo_only["networks"] == {}
    for x in (c, lo_only):
        napi.delete(x["id"], force=True)
    napi.rmi(name)
    # The default network's bridge went with its last container.
    assert default["bridge"] not in sh("ip", "-o", "link")


def napi_subnet(daemon, name):
    return daemon.client.network(name)["subnet"]


def test_cli_networks_and_published_port(net_daemon, cid):
    from conftest import DAEMON, ROOT

    def cli(*args):
        p = subprocess.run([DAEMON, "--address", net_daemon.address, *args],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    name = f"cli{random.randint(0, 1 << 30):x}"
    cli("network", "create", name, "--subnet", free_subnet())
    assert name in cli("network", "ls")
    auto = f"cla{random.randint(0, 1 << 30):x}"
    cli("network", "create", auto)  # a subnet picked for it, as podman does
    assert napi_subnet(net_daemon, auto).startswith("10.89.")
    cli("network", "rm", auto)
    port = free_port()
    c = cid("cliweb")
    created = json.loads(cli("run", "-d", "--format", "json", "--network", name,
                             "-p", f"127.0.0.1:{port}:80", c, os.path.join(ROOT, "bundles", "web")))
    assert created["ports"][0]["hostPort"] == port
    assert "hello from" in wait_until(lambda: _try_get(f"http://127.0.0.1:{port}/"),
                                      what="page via the CLI's -p")
    assert c in json.loads(cli("network", "inspect", name))["containers"]
    cli("rm", "-f", c)
    cli("network", "rm", name)
    assert name not in cli("network", "ls")


def test_restart_releases_what_a_daemon_killed_midway_left(bundle, cid):
    """A daemon killed after CNI ADD but before it recorded the container:
    the next one DELs the orphaned attachment and unpins the namespace."""
    state = tempfile.mkdtemp(prefix="cdpyn-")
    d = start_daemon(state)
    try:
        api = d.client
        api.create_network("orph", free_subnet())
        c = api.create(cid("orph"), bundle(), networks=["orph"],
                       ports=[{"hostPort": free_port(), "containerPort": 80}])
        d.kill9()
        # What a daemon that died before saving the record leaves: the
        # namespace, the veth, the lease, the rules, and no record.
        subprocess.run(["runc", "--root", os.path.join(state, "runtime", "runc"), "delete",
                        "-f", c["id"]], check=True, capture_output=True)
        os.unlink(os.path.join(state, "data", "containers", c["id"] + ".json"))
        assert leftovers(d, c)
        d.start()
        assert leftovers(d, c) == []
        assert c["id"] not in api.network("orph")["containers"]
        api.delete_network("orph")
    finally:
        if d.proc.poll() is not None:
            d.start()
        d.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def test_default_network_steps_aside_from_a_subnet_the_host_has():
    """On a host where podman's bridge already holds 10.88.0.0/16 (as
    cni-podman0 does once podman has run), a first start's default network
    takes a free /16 instead: a second bridge there would get no traffic."""
    from conftest import DAEMON, Client, free_port, wait_until
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    host = [ipaddress.IPv4Network(f.split()[3], strict=False) for f in out.splitlines()]
    made = None
    if not any(n.overlaps(ipaddress.IPv4Network("10.88.0.0/16")) for n in host):
        # Stand in for podman's bridge: an empty bridge of our own, no traffic.
        made = f"cdpyt{random.randint(0, 99999)}"
        subprocess.run(["ip", "link", "add", made, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "10.88.0.1/16", "dev", made], check=True)
    state = tempfile.mkdtemp(prefix="cdpy-")
    port = free_port()
    proc = subprocess.Popen([DAEMON, "daemon", "--listen", f"127.0.0.1:{port}", "--state-dir",
                             state, "--cri-listen", ""], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        c = Client(f"127.0.0.1:{port}", timeout=30)

        def up():
            try:
                return c.request("GET", "/networks/default")
            except OSError:
                return None
        net = ipaddress.IPv4Network(wait_until(up, 30, what="the daemon")["subnet"])
        out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        host = [ipaddress.IPv4Network(f.split()[3], strict=False) for f in out.splitlines()]
        assert not any(net.overlaps(h) for h in host), (net, host)
        assert net.prefixlen == 16 and net != ipaddress.IPv4Network("10.88.0.0/16")
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(state, ignore_errors=True)
        if made:
            subprocess.run(["ip", "link", "del", made], check=False)
