"""Network definitions: one CNI conflist per network in
<data_dir>/networks/NAME.conflist, the only record of a network (its subnet,
gateway, bridge and whether it is internal are read back from it).

A bridge network's chain is podman's: bridge (with host-local IPAM whose
leases live under the daemon's data dir, so they survive a restart and are
never handed out twice), portmap (published ports), firewall (lets the
container's traffic through a FORWARD policy of DROP) and tuning.
"""

import dataclasses
import hashlib
import ipaddress
import json
import os
import re

from ..errors import Conflict, InvalidArgument, NotFound
from .cni import CNI_VERSION

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Names with a meaning of their own in "networks": [...].
RESERVED = {"host", "none", "bridge"}
DEFAULT_NETWORK = "default"
HOST = "host"  # "networks": ["host"]: the host's namespace
DEFAULT_SUBNET = "10.88.0.0/16"  # podman's, so a host that runs both sees one plan


@dataclasses.dataclass
class Network:
    name: str
    subnet: str
    gateway: str
    internal: bool
    bridge: str
    conflist: dict

    def to_api(self) -> dict:
        return {"name": self.name, "subnet": self.subnet, "gateway": self.gateway,
                "internal": self.internal, "bridge": self.bridge, "driver": "bridge"}


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"invalid network name {name!r}: must match {NAME_RE.pattern}",
                              field="name")
    return name


def parse_subnet(subnet, gateway=None) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    if not isinstance(subnet, str):
        raise InvalidArgument("subnet is required: an IPv4 CIDR such as 10.89.0.0/24",
                              field="subnet")
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {subnet!r}: {e}", field="subnet") from None
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {subnet} is too small: at most /30", field="subnet")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
        raise InvalidArgument(f"subnet {subnet} is not usable for containers", field="subnet")
    if gateway is None:
        gw = net.network_address + 1
    else:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError as e:
            raise InvalidArgument(f"invalid gateway {gateway!r}: {e}", field="gateway") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"gateway {gw} is not a host address of subnet {net}",
                                  field="gateway")
    return net, gw


def bridge_name(data_dir: str, name: str) -> str:
    """Unique per daemon and network, within IFNAMSIZ (15): two daemons on
    one host (tests run several) never share a bridge."""
    digest = hashlib.sha256(f"{os.path.realpath(data_dir)}\0{name}".encode()).hexdigest()
    return "cdpy" + digest[:10]


def make_conflist(name: str, net, gw, internal: bool, bridge: str, ipam_dir: str) -> dict:
    ipam = {"type": "host-local", "dataDir": ipam_dir,
            "ranges": [[{"subnet": str(net), "gateway": str(gw)}]],
            # An internal network has no default route out of the container.
            "routes": [] if internal else [{"dst": "0.0.0.0/0"}]}
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True,
             "ipMasq": not internal, "hairpinMode": True, "ipam": ipam},
            # snat: DNAT to a container works for connections from the host's
            # 127.0.0.1 too (portmap sets route_localnet and masquerades them).
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall", "backend": "iptables"},
            {"type": "tuning"},
        ],
    }


def from_conflist(conflist: dict) -> Network:
    bridge = conflist["plugins"][0]
    rng = bridge["ipam"]["ranges"][0][0]
    return Network(name=conflist["name"], subnet=rng["subnet"], gateway=rng["gateway"],
                   internal=not bridge.get("ipMasq", False), bridge=bridge["bridge"],
                   conflist=conflist)


class NetworkStore:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.dir = os.path.join(data_dir, "networks")
        self.ipam_dir = os.path.join(data_dir, "cni", "ipam")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.makedirs(self.ipam_dir, mode=0o700, exist_ok=True)
        self._networks: dict[str, Network] = {}
        for fname in sorted(os.listdir(self.dir)):
            if fname.endswith(".conflist"):
                with open(os.path.join(self.dir, fname)) as f:
                    n = from_conflist(json.load(f))
                self._networks[n.name] = n

    def get(self, name: str) -> Network:
        n = self._networks.get(name)
        if n is None:
            raise NotFound(f"no such network: {name!r}", network=name)
        return n

    def all(self) -> list[Network]:
        return [self._networks[k] for k in sorted(self._networks)]

    def create(self, name: str, subnet, gateway=None, internal: bool = False,
               host_networks=()) -> Network:
        check_name(name)
        if name in RESERVED:
            raise InvalidArgument(f"network name {name!r} is reserved", field="name")
        if name in self._networks:
            raise Conflict(f"network {name!r} already exists", network=name)
        if subnet is None and gateway is None:
            subnet = self._free_subnet(host_networks)
        net, gw = parse_subnet(subnet, gateway)
        for other in self._networks.values():
            if net.overlaps(ipaddress.IPv4Network(other.subnet)):
                raise InvalidArgument(f"subnet {net} overlaps network {other.name!r} "
                                      f"({other.subnet})", field="subnet", network=other.name)
        for iface, hnet in host_networks:
            if net.overlaps(hnet):
                raise InvalidArgument(f"subnet {net} overlaps {hnet} of host interface {iface}",
                                      field="subnet", interface=iface)
        bridge = bridge_name(self.data_dir, name)
        conflist = make_conflist(name, net, gw, internal, bridge, self.ipam_dir)
        path = os.path.join(self.dir, name + ".conflist")
        with open(path + ".tmp", "w") as f:
            json.dump(conflist, f, indent=2)
        os.replace(path + ".tmp", path)
        n = from_conflist(conflist)
        self._networks[name] = n
        return n

    def _free_subnet(self, host_networks) -> str:
        """The first 10.89.N.0/24 that neither a network of ours nor a host
        interface uses, as podman picks one."""
        used = [ipaddress.IPv4Network(n.subnet) for n in self._networks.values()]
        used += [h for _, h in host_networks]
        for n in range(256):
            net = ipaddress.IPv4Network(f"10.89.{n}.0/24")
            if not any(net.overlaps(u) for u in used):
                return str(net)
        raise Conflict("no free subnet left in 10.89.0.0/16: give one", field="subnet")

    def remove(self, name: str) -> Network:
        n = self.get(name)
        try:
            os.unlink(os.path.join(self.dir, name + ".conflist"))
        except FileNotFoundError:
            pass
        del self._networks[name]
        return n
