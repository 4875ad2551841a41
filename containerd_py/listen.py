"""The daemon's listening socket: loopback TCP, or a unix socket only root
and one group can open.

Whoever reaches the API can run a container as root with any bundle, which
is root on the host (the reason containerd and Docker restrict their
sockets), so a non-loopback address needs an explicit opt-in.
"""

import ipaddress
import os
import socket


class ListenError(Exception):
    """The address cannot be served; the message is one line for the user."""


def is_unix(listen: str) -> bool:
    return listen.startswith("unix:")


def split_hostport(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"--listen {listen!r}: use HOST:PORT or unix:PATH")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it could resolve to anything


def open_socket(listen: str, gid: int | None, anywhere: bool = False) -> socket.socket:
    """A bound, listening socket for `listen`; ListenError says why not."""
    if is_unix(listen):
        return _unix_socket(listen[5:], gid)
    host, port = split_hostport(listen)
    if not is_loopback(host) and not anywhere:
        raise ListenError(
            f"refusing to listen on {host}:{port}, which is not a loopback address: anyone "
            "who reaches the API is root on this host. Use unix:PATH, a loopback address, "
            "or --insecure-listen-anywhere")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise ListenError(f"cannot listen on {host}:{port}: "
                          f"{os.strerror(e.errno) if (e.errno or 0) > 0 else e}") from None


def _unix_socket(path: str, gid: int | None) -> socket.socket:
    if not os.path.isabs(path):
        raise ListenError(f"--listen unix:{path}: the path must be absolute")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise ListenError(f"cannot listen on unix:{path}: another process is serving it")
        except (FileNotFoundError, ConnectionRefusedError):
            pass  # absent, or left by a daemon that died: ours to replace
        finally:
            probe.close()
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Created 0600 (umask), then opened to the group: never a moment in
        # which anyone else could connect.
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chown(path, 0, gid if gid is not None else 0)
        os.chmod(path, 0o660)
        sock.listen(128)
        return sock
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on unix:{path}: {e.strerror or e}") from None
    except ListenError:
        sock.close()
        raise
