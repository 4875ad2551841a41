"""Published ports: validation, and whether a host port is free before the
portmap plugin's DNAT rules would silently shadow whatever listens there."""

import errno
import ipaddress
import socket

from ..errors import Conflict, InvalidArgument

DEFAULT_HOST_IP = "127.0.0.1"


def check_ports(value) -> list[dict]:
    """`[{"hostPort", "containerPort", "protocol", "hostIp"}]` -> the
    portmap plugin's portMappings form (hostIP spelled its way)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument("ports must be a list of objects", field="ports")
    out, seen = [], set()
    for i, p in enumerate(value):
        where = f"ports[{i}]"
        if not isinstance(p, dict):
            raise InvalidArgument(f"{where} must be an object", field="ports")
        unknown = set(p) - {"hostPort", "containerPort", "protocol", "hostIp", "hostIP"}
        if unknown:
            raise InvalidArgument(f"{where}: unknown fields {sorted(unknown)}", field="ports")
        cport = p.get("containerPort")
        hport = p.get("hostPort", cport)
        for key, n in (("containerPort", cport), ("hostPort", hport)):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 65535:
                raise InvalidArgument(f"{where}.{key} must be an integer from 1 to 65535",
                                      field="ports")
        proto = p.get("protocol", "tcp")
        if proto not in ("tcp", "udp"):
            raise InvalidArgument(f'{where}.protocol must be "tcp" or "udp"', field="ports")
        host_ip = p.get("hostIp", p.get("hostIP", DEFAULT_HOST_IP))
        try:
            ip = ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidArgument(f"{where}.hostIp {host_ip!r} is not an IPv4 address",
                                  field="ports") from None
        key = (hport, proto)
        if key in seen:
            raise InvalidArgument(f"{where}: host port {hport}/{proto} given twice",
                                  field="ports")
        seen.add(key)
        out.append({"hostPort": hport, "containerPort": cport, "protocol": proto,
                    "hostIP": str(ip)})
    return out


def to_api(mappings: list[dict]) -> list[dict]:
    return [{"hostPort": m["hostPort"], "containerPort": m["containerPort"],
             "protocol": m["protocol"], "hostIp": m["hostIP"]} for m in mappings]


def _clash(a: dict, b: dict) -> bool:
    return a["hostPort"] == b["hostPort"] and a["protocol"] == b["protocol"] and (
        a["hostIP"] == b["hostIP"] or "0.0.0.0" in (a["hostIP"], b["hostIP"]))


def check_free(mappings: list[dict], published: dict[str, list[dict]]) -> None:
    """409 if a host port is published by another of our containers or
    bound by a process on the host."""
    for m in mappings:
        for owner, theirs in published.items():
            if any(_clash(m, t) for t in theirs):
                raise Conflict(f"host port {m['hostIP']}:{m['hostPort']}/{m['protocol']} is "
                               f"already published by container {owner!r}",
                               hostPort=m["hostPort"], id=owner)
        kind = socket.SOCK_STREAM if m["protocol"] == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            # A port in TIME_WAIT is free; a listener still refuses the bind.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((m["hostIP"], m["hostPort"]))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise Conflict(f"host port {m['hostIP']}:{m['hostPort']}/{m['protocol']} "
                                   "is already in use on the host", hostPort=m["hostPort"]) \
                        from None
                if e.errno == errno.EADDRNOTAVAIL:
                    raise InvalidArgument(f"hostIp {m['hostIP']} is not an address of this host",
                                          field="ports") from None
                raise
