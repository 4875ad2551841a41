"""Container networking: network namespaces, CNI networks, published ports,
and the container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

What is a library, what is a plugin, what is our own code, and why:

* The plugins (Debian's containernetworking-plugins, in /usr/lib/cni):
  `bridge` with `host-local` IPAM makes the veth pair, the bridge, the
  address and the masquerade rule; `portmap` the DNAT of published ports;
  `firewall` the FORWARD accept rules; `loopback` brings lo up; `tuning`
  sysctls. These are what containerd's CRI plugin and podman's CNI backend
  run, maintained by the CNI project: their iptables and IPAM semantics (a
  lease file per address, released on DEL) are the field's, and rewriting
  them would only add bugs.
* The library (pyroute2): netlink from Python without shelling out to `ip`:
  creating a network namespace and pinning it with a bind mount, as
  iproute2 does (netns.py), deleting an idle bridge, listing the host's
  addresses to refuse an overlapping subnet, and reading the interfaces,
  addresses and counters inside a container's namespace (from a short-lived
  process that nsenter puts there: pyroute2's in-process NetNS forks a
  helper, which is not safe among the daemon's gRPC threads).
* Our own code: the CNI protocol itself (cni.py: conflist chains with
  prevResult, the CNI_* environment, the result cache DEL reads, the
  plugin's error), because libcni is Go and the protocol is a small exec
  interface; network definitions as conflists (networks.py); port checks
  (ports.py); isolation between our bridges (isolation.py: neither plugin
  does it); the /etc files (etcfiles.py); and the bookkeeping of which
  container is on which network (service.py), which the supervisor calls.

Nothing here knows HTTP: the front doors validate and call the supervisor,
which calls `NetworkService`.
"""

from .networks import DEFAULT_NETWORK, DEFAULT_SUBNET, check_name  # noqa: F401
from .ports import check_ports  # noqa: F401
from .service import HOST, NetworkService  # noqa: F401
