"""Who may call the API: root, and the members of one configured group.

On a unix socket the kernel says who the peer is (SO_PEERCRED). On loopback
TCP it says so too, in its socket tables: the client's end of the connection
is a row of /proc/net/tcp (or tcp6) whose local address is our peer's and
whose remote address is ours, and that row carries the uid that owns the
socket; this is how identd answers. The answer is looked up once per
connection and kept for its requests.
"""

import grp
import pwd
import socket
import struct
import weakref

from aiohttp import web

from ..errors import Forbidden

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AccessPolicy:
    """Root is always let in; so is every member of `group` (by primary or
    supplementary membership), when one is configured."""

    def __init__(self, group: str | None = None):
        self.group = group
        self.gid = resolve_group(group) if group else None
        self._by_transport: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def allowed(self, uid: int) -> bool:
        if uid == 0:
            return True
        if self.gid is None:
            return False
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            return False
        if user.pw_gid == self.gid:
            return True
        try:
            return user.pw_name in grp.getgrgid(self.gid).gr_mem
        except KeyError:
            return False

    def verdict(self, transport) -> str | None:
        """None if the peer may call, else the one-line reason it may not."""
        try:
            return self._by_transport[transport]
        except (KeyError, TypeError):
            pass
        uid = peer_uid(transport)
        if uid is None:
            reason = "cannot tell which user is calling: refused"
        elif self.allowed(uid):
            reason = None
        else:
            who = _user_name(uid)
            reason = (f"user {who} may not use this daemon: only root"
                      + (f" and members of group {self.group!r}" if self.group else "")
                      + " (see the daemon's --group)")
        try:
            self._by_transport[transport] = reason
        except TypeError:
            pass
        return reason

    def middleware(self):
        @web.middleware
        async def access_middleware(request: web.Request, handler):
            # The route's own handler: `handler` may be the next middleware.
            if request.match_info.handler in SELF_AUTHENTICATED:
                # Another daemon's call (a migration's rounds): the handler
                # checks the one-time token its target issued.
                return await handler(request)
            reason = self.verdict(request.transport)
            if reason is not None:
                raise Forbidden(reason)
            return await handler(request)

        return access_middleware


# Route handlers that authenticate their callers themselves, by a token.
SELF_AUTHENTICATED: set = set()


def resolve_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise ValueError(f"no such group {name!r}") from None


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def peer_uid(transport) -> int | None:
    if transport is None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    if sock.family == socket.AF_UNIX:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        return _PEERCRED.unpack(raw)[1]
    peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    if not peer or not local:
        return None
    return tcp_socket_owner(sock.family, peer[:2], local[:2])


def tcp_socket_owner(family: int, client: tuple, server: tuple) -> int | None:
    """The uid owning the socket whose local end is `client` and remote end
    `server` (both ends are on this host: the connection is on loopback)."""
    want_local, want_remote = _encode(family, *client), _encode(family, *server)
    tables = ["/proc/net/tcp6", "/proc/net/tcp"] if family == socket.AF_INET6 \
        else ["/proc/net/tcp"]
    for table in tables:
        fam = socket.AF_INET6 if table.endswith("6") else socket.AF_INET
        if fam != family:
            # An IPv4 client of an IPv6 socket shows as ::ffff:a.b.c.d on our
            # side but as plain IPv4 in its own row.
            mapped = _unmap(client), _unmap(server)
            if None in mapped:
                continue
            want_local, want_remote = (_encode(socket.AF_INET, *mapped[0]),
                                       _encode(socket.AF_INET, *mapped[1]))
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1] == want_local and fields[2] == want_remote:
                        return int(fields[7])
        except OSError:
            continue
    return None


def _unmap(addr: tuple) -> tuple | None:
    host, port = addr
    if host.startswith("::ffff:") and "." in host:
        return host[7:], port
    return None


def _encode(family: int, host: str, port: int) -> str:
    """An address as /proc/net/tcp{,6} prints it: the raw in-kernel words
    (native byte order, 32 bits at a time) in hex, then the port in hex."""
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"
