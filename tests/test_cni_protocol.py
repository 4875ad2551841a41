"""The CNI protocol as network/cni.py speaks it, against recording plugins
(pure logic: what each plugin gets on stdin and in its environment)."""

import asyncio
import json
import os
import stat

import pytest

from containerd_py.network.cni import CNI, CNIError, ResultCache, first_ipv4

# A plugin that records its environment and stdin, then answers with its
# prevResult plus one address (or the CNI error object when told to fail).
PLUGIN = r"""#!/usr/bin/env python3
import json, os, sys
conf = json.load(sys.stdin)
log = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.jsonl")
with open(log, "a") as f:
    f.write(json.dumps({"env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")},
                        "conf": conf}) + "\n")
if conf.get("fail") and os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps({"cniVersion": "1.0.0", "code": 7, "msg": "no addresses left",
                      "details": "range 10.0.0.0/30 is full"}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] != "ADD":
    sys.exit(0)
res = conf.get("prevResult") or {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
if conf["type"] == "rec-a":
    res["interfaces"].append({"name": os.environ["CNI_IFNAME"], "mac": "aa:bb:cc:dd:ee:ff",
                              "sandbox": os.environ["CNI_NETNS"]})
    res["ips"].append({"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0})
print(json.dumps(res))
"""


@pytest.fixture
def plugins(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    for name in ("rec-a", "rec-b"):
        p = d / name
        p.write_text(PLUGIN)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return d


def calls(d):
    with open(d / "calls.jsonl") as f:
        return [json.loads(ln) for ln in f]


def conflist(fail=False):
    return {"cniVersion": "1.0.0", "name": "net1",
            "plugins": [{"type": "rec-a", "fail": fail},
                        {"type": "rec-b", "capabilities": {"portMappings": True}}]}


def test_add_chains_prev_result_and_del_runs_reversed_with_cached_result(plugins, tmp_path):
    cni = CNI(ResultCache(str(tmp_path / "cache")), str(plugins))
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]
    result = asyncio.run(cni.add(conflist(), "c1", "/run/ns/c1", "eth0",
                                 {"portMappings": ports}))
    assert first_ipv4(result, "eth0") == {"interface": "eth0", "mac": "aa:bb:cc:dd:ee:ff",
                                          "ip": "10.0.0.2", "prefixLen": 24,
                                          "gateway": "10.0.0.1"}
    a, b = calls(plugins)
    assert a["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                        "CNI_NETNS": "/run/ns/c1", "CNI_IFNAME": "eth0",
                        "CNI_PATH": str(plugins)}
    assert a["conf"]["name"] == "net1" and a["conf"]["cniVersion"] == "1.0.0"
    assert "prevResult" not in a["conf"] and "runtimeConfig" not in a["conf"]
    # The second plugin gets the first one's result, and the runtime value
    # of the capability it declares, as libcni gives them.
    assert b["conf"]["prevResult"]["ips"][0]["address"] == "10.0.0.2/24"
    assert b["conf"]["runtimeConfig"] == {"portMappings": ports}
    assert os.listdir(tmp_path / "cache" / "results") == ["net1-c1-eth0"]

    os.unlink(plugins / "calls.jsonl")
    # DEL with no conflist at hand (the network was deleted): the cache says.
    asyncio.run(cni.delete(None, "c1", "/run/ns/c1", "eth0", network="net1"))
    rb, ra = calls(plugins)
    assert [rb["conf"]["type"], ra["conf"]["type"]] == ["rec-b", "rec-a"]
    assert {rb["env"]["CNI_COMMAND"], ra["env"]["CNI_COMMAND"]} == {"DEL"}
    assert ra["conf"]["prevResult"]["ips"][0]["address"] == "10.0.0.2/24"
    assert rb["conf"]["runtimeConfig"] == {"portMappings": ports}
    assert os.listdir(tmp_path / "cache" / "results") == []


def test_plugin_error_is_typed_with_its_message_and_add_is_undone(plugins, tmp_path):
    cni = CNI(ResultCache(str(tmp_path / "cache")), str(plugins))
    with pytest.raises(CNIError) as e:
        asyncio.run(cni.add(conflist(fail=True), "c2", "/run/ns/c2", "eth0"))
    assert "no addresses left" in e.value.message and "range 10.0.0.0/30 is full" \
        in e.value.message
    assert e.value.details["plugin"] == "rec-a" and e.value.details["cniCode"] == 7
    assert e.value.http_status == 500
    # The failed ADD was followed by a DEL of the whole chain; nothing cached.
    assert [c["env"]["CNI_COMMAND"] for c in calls(plugins)] == ["ADD", "DEL", "DEL"]
    assert os.listdir(tmp_path / "cache" / "results") == []


def test_missing_plugin_names_the_package(tmp_path):
    cni = CNI(ResultCache(str(tmp_path / "cache")), str(tmp_path))
    with pytest.raises(CNIError) as e:
        asyncio.run(cni.add(conflist(), "c3", "/run/ns/c3", "eth0"))
    assert "containernetworking-plugins" in e.value.message
