"""NetworkService: what the supervisor asks of networking.

    prepare(record, spec)   before the runtime starts: netns, CNI ADD, /etc files
    release(record)         after the container stopped or on delete: CNI DEL, netns gone
    attach / detach         a network on a running container
    create_netns / release_netns
                            a namespace of an owner that is not a container
                            (a CRI pod sandbox), kept across restarts (owners.py)
    create_network / delete_network / networks / network

The container's side of it lives in `record.network` (persisted with the
record by the supervisor): the pinned netns path, and per network the
interface, address, gateway and MAC the CNI result gave, plus the published
ports. Who is on which network is indexed here, rebuilt from the records
after a daemon restart (`restore`).
"""

import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import os
import shutil

from pyroute2 import IPRoute

from ..errors import Conflict, InvalidArgument, NotFound
from . import etcfiles, netns, ports as ports_mod
from .cni import CNI, CNIError, ResultCache, first_ipv4
from .isolation import Isolation
from .networks import DEFAULT_NETWORK, DEFAULT_SUBNET, HOST, Network, NetworkStore
from .owners import NetnsOwners, OwnerStore

log = logging.getLogger("containerd_py.network")

LOOPBACK_CONFLIST = {"cniVersion": "1.0.0", "name": "cdpy-loopback",
                     "plugins": [{"type": "loopback"}]}


class NetworkService(NetnsOwners):
    def __init__(self, data_dir: str, state_dir: str, default_subnet: str | None = None,
                 cni_path: str | None = None):
        self.store = NetworkStore(data_dir)
        self.cni = CNI(ResultCache(os.path.join(data_dir, "cni", "cache")),
                       cni_path or os.environ.get("CNI_PATH") or "/usr/lib/cni")
        self.isolation = Isolation(data_dir)
        self.netns_dir = os.path.join(state_dir, "netns")
        self.files_root = os.path.join(state_dir, "network")
        # network name -> {container id: {"names": [...], "ip": ...}}
        self.members: dict[str, dict[str, dict]] = {}
        self.published: dict[str, list[dict]] = {}
        self._lock = asyncio.Lock()
        self._hostnames: dict[str, str] = {}
        # Known before any front door loads its records: a restart's orphan
        # collection must not take an owner's namespace away.
        self.owners = OwnerStore(os.path.join(data_dir, "cni", "owners"))
        for owner in self.owners.owners.values():
            self.restore(owner)
        if DEFAULT_NETWORK not in {n.name for n in self.store.all()}:
            # From the first start on. A subnet the user gave is taken as it
            # is (a daemon must start); the built-in one steps aside from a
            # host interface that has it already (podman's cni-podman0 has
            # 10.88.0.0/16: a second bridge there would get no traffic).
            subnet = default_subnet or _free_default_subnet()
            self.store.create(DEFAULT_NETWORK, subnet)
            if subnet != (default_subnet or DEFAULT_SUBNET):
                log.info("default network: %s is in use on this host, took %s",
                         DEFAULT_SUBNET, subnet)

    # -- networks ------------------------------------------------------------

    def networks(self) -> list[dict]:
        return [self._network_api(n) for n in self.store.all()]

    def network(self, name: str) -> dict:
        return self._network_api(self.store.get(name))

    def _network_api(self, n: Network) -> dict:
        members = self.members.get(n.name, {})
        return {**n.to_api(), "containers": {cid: {"name": m["names"][0], "ip": m["ip"]}
                                             for cid, m in sorted(members.items())}}

    async def create_network(self, name: str, subnet, gateway=None,
                             internal: bool = False) -> dict:
        # pyroute2's synchronous API runs an event loop of its own: a thread.
        host = await asyncio.to_thread(_host_networks, {n.bridge for n in self.store.all()})
        async with self._lock:
            return self._network_api(self.store.create(name, subnet, gateway, internal,
                                                       host_networks=host))

    async def delete_network(self, name: str) -> None:
        async with self._lock:
            n = self.store.get(name)
            users = sorted(self.members.get(name, {}))
            if users:
                raise Conflict(f"network {name!r} is in use by containers {users}",
                               network=name, containers=users)
            self.store.remove(name)
            await self._drop_bridge(n)
            shutil.rmtree(os.path.join(self.store.ipam_dir, name), ignore_errors=True)

    def check_request(self, networks: list[str] | None, mappings: list[dict]) -> None:
        """Validate a create's networks and ports against what exists."""
        if networks is None:
            if mappings:
                raise InvalidArgument("ports need a network: give networks too", field="ports")
            return
        if HOST in networks and len(networks) > 1:
            raise InvalidArgument('"host" cannot be combined with other networks',
                                  field="networks")
        if len(set(networks)) != len(networks):
            raise InvalidArgument("a network is listed twice", field="networks")
        for name in networks:
            if name != HOST:
                self.store.get(name)
        if mappings and (not networks or networks == [HOST]):
            raise InvalidArgument("ports are published on a bridge network: give one in "
                                  "networks", field="ports")
        ports_mod.check_free(mappings, self.published)

    def plugins_missing(self, network: str = DEFAULT_NETWORK) -> list[str]:
        """The CNI plugins of `network`'s chain (and loopback) that are not
        in the plugin path: what a setup on it would fail for."""
        types = [p["type"] for p in self.store.get(network).conflist["plugins"]]
        missing = []
        for t in dict.fromkeys(["loopback", *types]):
            try:
                self.cni.plugin_binary(t)
            except CNIError:
                missing.append(t)
        return missing

    # -- containers ----------------------------------------------------------

    def restore(self, record) -> None:
        """Index a recovered container's attachments and ports."""
        net = record.network or {}
        for name, a in (net.get("attachments") or {}).items():
            self.members.setdefault(name, {})[record.id] = {
                "names": _names(record), "ip": a.get("ip")}
        if net.get("ports"):
            self.published[record.id] = net["ports"]
        if net.get("hostname"):
            self._hostnames[record.id] = net["hostname"]

    async def collect_orphans(self, records) -> None:
        """After a restart: CNI DEL and unpin what a daemon killed half-way
        through a setup left behind (cached results and namespaces that no
        record names)."""
        owned = {_cni_id(r) for r in records if (r.network or {}).get("netns")}
        owned |= {_cni_id(o) for o in self.owners.owners.values()}
        async with self._lock:
            for entry in self.cni.cache.entries():
                try:
                    with open(os.path.join(self.cni.cache.dir, entry)) as f:
                        e = json.load(f)
                    cid, name, ifname = e["containerId"], e["networkName"], e["ifName"]
                except (OSError, ValueError, KeyError):
                    continue
                if cid in owned:
                    continue
                log.warning("container %s: releasing an orphaned %s on %s", cid, ifname, name)
                try:
                    await self.cni.delete(None, cid, self._netns_path(cid), ifname,
                                          network=name)
                except Exception as err:
                    log.warning("container %s: %s", cid, err)
            for cid in netns.listing(self.netns_dir):
                if cid not in owned:
                    await asyncio.to_thread(netns.remove, self._netns_path(cid))
                    shutil.rmtree(self._files_dir(cid), ignore_errors=True)
            # A network no container is on has no bridge (nor isolation rule).
            for n in self.store.all():
                if not self.members.get(n.name):
                    await self._drop_bridge(n)

    def _files_dir(self, cid: str) -> str:
        return os.path.join(self.files_root, cid)

    def _netns_path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    async def prepare(self, record, spec: dict, hostname: str | None = None) -> None:
        """Give the container the networks it asked for before the runtime
        starts it: a pinned netns (written into the spec's namespaces), CNI
        ADD for each network (ports on the first), and its /etc files. On a
        failure nothing is left."""
        requested = record.networks
        if requested is None:
            return  # a bundle keeps what its config.json says
        linux = spec.setdefault("linux", {})
        namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
        if requested == [HOST]:
            linux["namespaces"] = namespaces
            return
        async with self._lock:
            path = await self._setup(record, requested, hostname or record.name or record.id)
        namespaces.append({"type": "network", "path": path})
        linux["namespaces"] = namespaces
        dests = {m.get("destination") for m in spec.get("mounts", [])}
        spec.setdefault("mounts", []).extend(
            m for m in etcfiles.mounts(self._files_dir(record.id)) if m["destination"] not in dests)

    async def _setup(self, record, requested: list[str], hostname: str | None) -> str:
        """A pinned netns with lo up and an interface on each network (the
        ports on the first); the /etc files when `hostname` is given. Caller
        holds the lock. On a failure nothing is left."""
        path = self._netns_path(record.id)
        ports_mod.check_free(record.ports or [], {k: v for k, v in self.published.items()
                                                  if k != record.id})
        # The CNI container id, fixed here: a record's id can change
        # (a warm pool's member claimed under the user's id).
        record.network = {"netns": path, "attachments": {}, "ports": [], "cniId": record.id}
        try:
            await asyncio.to_thread(netns.create, path)
            await self.cni.add(LOOPBACK_CONFLIST, record.id, path, "lo")
            for i, name in enumerate(requested):
                await self._add(record, name, f"eth{i}", record.ports if i == 0 else [])
            if hostname is not None:
                self._write_files(record, hostname)
        except BaseException:
            await self._release_locked(record)
            raise
        return path

    async def _add(self, record, name: str, ifname: str, mappings: list[dict]) -> None:
        n = self.store.get(name)
        await self._check_subnet_free(n)
        await self.isolation.add(n.bridge)
        runtime = {"portMappings": mappings} if mappings else {}
        result = await self.cni.add(n.conflist, _cni_id(record), record.network["netns"], ifname,
                                    runtime)
        a = first_ipv4(result, ifname)
        record.network["attachments"][name] = a
        if mappings:
            record.network["ports"] = mappings
            self.published[record.id] = mappings
        self.members.setdefault(name, {})[record.id] = {"names": _names(record), "ip": a.get("ip")}

    async def _check_subnet_free(self, n: Network) -> None:
        """Before the bridge plugin makes a network's bridge (its first
        member; the bridge goes with the last): no other interface of the
        host may be on its subnet by then. The subnet was free when the
        network was made, but another daemon's bridge comes and goes with
        its containers, and of two bridges on one subnet one gets no
        traffic: a clear 409 instead of a pod nobody can reach."""
        def host_networks():
            with IPRoute() as ipr:
                if ipr.link_lookup(ifname=n.bridge):
                    return []
            return _host_networks({x.bridge for x in self.store.all()})
        subnet = ipaddress.IPv4Network(n.subnet)
        for ifname, h in await asyncio.to_thread(host_networks):
            if h.overlaps(subnet):
                fix = ("start the daemon with another --default-subnet"
                       if n.name == DEFAULT_NETWORK else "use a network on a free subnet")
                raise Conflict(f"network {n.name!r} is on {n.subnet}, which host interface "
                               f"{ifname!r} has ({h}): its traffic would go there; {fix}",
                               network=n.name, interface=ifname)

    async def _del(self, record, name: str, a: dict) -> None:
        try:
            n = self.store.get(name)
            conflist = n.conflist
        except NotFound:
            n, conflist = None, None  # deleted meanwhile: the cached config says how
        try:
            await self.cni.delete(conflist, _cni_id(record), record.network.get("netns") or "",
                                  a.get("interface", "eth0"), network=name)
        finally:
            # Even when the plugin failed (its words reach the caller's log):
            # the container has left the network all the same, and a stale
            # member would keep `DELETE /networks/{name}` a 409 for ever.
            record.network["attachments"].pop(name, None)
            members = self.members.get(name, {})
            members.pop(record.id, None)
            if not members:
                self.members.pop(name, None)
        if not self.members.get(name) and n is not None:
            await self._drop_bridge(n)

    async def _drop_bridge(self, n: Network) -> None:
        """The last container left: the bridge plugin leaves its bridge,
        we remove it (and its isolation rule), as it is recreated on the
        next ADD."""
        await self.isolation.remove(n.bridge)

        def drop():
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=n.bridge)
                if idx:
                    ipr.link("del", index=idx[0])
        await asyncio.to_thread(drop)

    async def release(self, record) -> None:
        """CNI DEL of every network, loopback too, and the netns and files
        removed. Idempotent: called on every exit and again on delete."""
        if not record.network:
            return
        async with self._lock:
            await self._release_locked(record)

    async def _release_locked(self, record) -> None:
        net = record.network
        errors = []
        for name, a in list((net.get("attachments") or {}).items()):
            try:
                await self._del(record, name, a)
            except Exception as e:  # the rest still goes
                log.warning("container %s: %s", record.id, e)
                errors.append(e)
        path = net.get("netns")
        if path:
            try:
                await self.cni.delete(LOOPBACK_CONFLIST, _cni_id(record), path, "lo")
            except Exception as e:
                log.warning("container %s: %s", record.id, e)
            await asyncio.to_thread(netns.remove, path)
        self.published.pop(record.id, None)
        self._hostnames.pop(record.id, None)
        shutil.rmtree(self._files_dir(_cni_id(record)), ignore_errors=True)
        record.network = {}
        self._refresh_hosts()
        if errors:
            raise errors[0]

    async def attach(self, record, name: str) -> dict:
        n = self.store.get(name)
        net = record.network or {}
        if not net.get("netns"):
            raise Conflict(f"container {record.id!r} has no network namespace of the daemon's "
                           "to attach to (created without networks, or on the host's)",
                           id=record.id)
        async with self._lock:
            if name in net["attachments"]:
                raise Conflict(f"container {record.id!r} is already on network {name!r}",
                               id=record.id, network=name)
            used = {a["interface"] for a in net["attachments"].values()}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            await self._add(record, n.name, ifname, [])
            self._refresh_hosts()
            return net["attachments"][name]

    async def detach(self, record, name: str) -> None:
        net = record.network or {}
        async with self._lock:
            a = (net.get("attachments") or {}).get(name)
            if a is None:
                raise NotFound(f"container {record.id!r} is not on network {name!r}",
                               id=record.id, network=name)
            if net.get("ports") and next(iter(net["attachments"])) == name:
                raise Conflict(f"network {name!r} carries the container's published ports",
                               id=record.id, network=name)
            await self._del(record, name, a)
            self._refresh_hosts()

    async def interfaces(self, record) -> list[dict]:
        path = (record.network or {}).get("netns")
        if not path:
            raise Conflict(f"container {record.id!r} has no network namespace of the daemon's "
                           "(created without networks, or on the host's)", id=record.id)
        return await netns.interfaces(path)

    # -- /etc files ----------------------------------------------------------

    def _write_files(self, record, hostname: str) -> None:
        d = self._files_dir(record.id)
        os.makedirs(d, mode=0o755, exist_ok=True)
        etcfiles.write_in_place(os.path.join(d, "hostname"), hostname + "\n")
        etcfiles.write_in_place(os.path.join(d, "resolv.conf"), etcfiles.resolv_conf())
        self._hostnames[record.id] = hostname
        record.network["hostname"] = hostname
        own = [(a["ip"], [hostname, *_names(record)])
               for a in record.network["attachments"].values() if a.get("ip")]
        etcfiles.write_in_place(os.path.join(d, "hosts"), etcfiles.hosts(own, []))
        self._refresh_hosts()

    def _refresh_hosts(self) -> None:
        """Every container's /etc/hosts names the other containers on its
        networks; rewritten (in place) whenever one joins or leaves."""
        by_cid: dict[str, list[tuple[str, dict]]] = {}
        for name, members in self.members.items():
            for cid, m in members.items():
                by_cid.setdefault(cid, []).append((name, m))
        for cid, nets in by_cid.items():
            d = self._files_dir(cid)
            if not os.path.isdir(d):
                continue
            names = nets[0][1]["names"]
            own_names = [self._hostnames.get(cid) or names[0], *names]
            own = [(nets[0][1]["ip"], own_names)] + [(m["ip"], names) for _, m in nets[1:]]
            peers = [(m["ip"], m["names"]) for name, _ in nets
                     for other, m in sorted(self.members[name].items()) if other != cid]
            try:
                etcfiles.write_in_place(os.path.join(d, "hosts"), etcfiles.hosts(own, peers))
            except OSError as e:
                log.warning("container %s: hosts file: %s", cid, e)


def _cni_id(record) -> str:
    return (record.network or {}).get("cniId") or record.id


def _names(record) -> list[str]:
    return list(dict.fromkeys([record.name or record.id, record.id]))


def _free_default_subnet() -> str:
    """DEFAULT_SUBNET, or the first 10.N.0.0/16 after it that no host
    interface has."""
    # pyroute2 runs an event loop of its own: not on the daemon's (running)
    # loop's thread. And a host it cannot read still gets its daemon.
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            host_networks = pool.submit(_host_networks, set()).result(10)
    except Exception as e:  # noqa: BLE001
        log.warning("default network: cannot read the host's addresses (%s); taking %s",
                    e, DEFAULT_SUBNET)
        return DEFAULT_SUBNET
    first = ipaddress.IPv4Network(DEFAULT_SUBNET)
    for n in range(first.network_address.packed[1], 256):
        net = ipaddress.IPv4Network(f"10.{n}.0.0/16")
        if n == 89:
            continue  # where user networks get their /24s (NetworkStore._free_subnet)
        if not any(net.overlaps(h) for _, h in host_networks):
            return str(net)
    return DEFAULT_SUBNET


def _host_networks(ours: set[str]) -> list[tuple[str, ipaddress.IPv4Network]]:
    """IPv4 networks on the host's interfaces, except our own bridges."""
    out = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for addr in ipr.get_addr(family=2):
            ifname = names.get(addr["index"], "?")
            if ifname in ours or ifname == "lo":
                continue
            out.append((ifname, ipaddress.IPv4Network(
                f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False)))
    return out
