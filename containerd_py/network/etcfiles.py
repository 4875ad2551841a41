"""/etc/hosts, /etc/resolv.conf and /etc/hostname of a container, written by
the daemon under its state dir and bind-mounted into the container (as
Docker and podman do), so a read-only or shared rootfs is never written.

hosts files are rewritten in place, never replaced: a bind mount holds the
inode, so a rename would leave the container reading the old file.
"""

import os

HOST_RESOLV = "/etc/resolv.conf"
FILES = ("hosts", "resolv.conf", "hostname")


def resolv_conf(host_path: str = HOST_RESOLV) -> str:
    """The host's resolv.conf without loopback nameservers (a resolver on
    the host's 127.0.0.53 is not reachable from the container's own
    namespace), as podman does."""
    lines = []
    try:
        with open(host_path) as f:
            for ln in f:
                parts = ln.split()
                if parts[:1] == ["nameserver"] and len(parts) > 1 and (
                        parts[1].startswith("127.") or parts[1] == "::1"):
                    continue
                lines.append(ln.rstrip("\n"))
    except FileNotFoundError:
        pass
    return "\n".join(lines) + "\n"


def hosts(own: list[tuple[str, list[str]]], peers: list[tuple[str, list[str]]]) -> str:
    out = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    seen = set()
    for ip, names in own + peers:
        names = [n for n in dict.fromkeys(names) if n not in seen]
        if names:
            out.append(f"{ip}\t{' '.join(names)}")
            seen.update(names)
    return "\n".join(out) + "\n"


def write_in_place(path: str, text: str) -> None:
    with open(path, "a+") as f:
        f.seek(0)
        if f.read() == text:
            return
        f.seek(0)
        f.truncate()
        f.write(text)


def mounts(directory: str) -> list[dict]:
    return [{"destination": f"/etc/{name}", "type": "bind",
             "source": os.path.join(directory, name), "options": ["rbind", "rw"]}
            for name in FILES]
