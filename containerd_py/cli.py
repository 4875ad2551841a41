"""`containerd-py`: the daemon, and a thin command-line client of its API."""

import argparse
import hashlib
import logging
import os
import socket
import sys

from . import __version__
from .config import (DEFAULT_LISTEN, DEFAULT_STATE_DIR, MIN_SHIM_NAME, SUN_PATH_MAX,
                     DaemonConfig)


def run_daemon(args) -> int:
    from aiohttp import web

    from .api import make_app
    from .api.access import AccessPolicy
    from .dirlock import DirLocked, lock_dirs
    from .listen import ListenError, is_unix, open_socket

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.debug:
        # One line per request costs more than the request on the start path.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        print("containerd-py daemon must run as root (it creates containers)", file=sys.stderr)
        return 1
    import prctl
    # Shims double-fork away from the daemon; as subreaper the daemon, not
    # the host's init, inherits them and reaps them when they exit.
    prctl.set_child_subreaper(1)
    state_dir = os.path.abspath(args.state_dir)
    data_dir = os.path.abspath(args.data_dir or (
        "/var/lib/containerd-py" if state_dir == DEFAULT_STATE_DIR
        else os.path.join(state_dir, "data")))
    config = DaemonConfig(listen=args.listen, state_dir=state_dir, data_dir=data_dir,
                          runtime=args.runtime, log_max_bytes=args.log_max_bytes,
                          cri_listen=args.cri_listen,
                          image_mirror=os.path.abspath(args.image_mirror)
                          if args.image_mirror else None)
    if args.criu:
        config.criu = args.criu
    if args.default_subnet:
        from .errors import InvalidArgument
        from .network.networks import parse_subnet
        try:
            parse_subnet(args.default_subnet)
        except InvalidArgument as e:
            print(f"--default-subnet: {e.message}", file=sys.stderr)
            return 1
        config.default_subnet = args.default_subnet
    if config.shim_name_budget() < MIN_SHIM_NAME:
        print(f"--state-dir {state_dir} is too long: the shims' unix sockets below it would "
              f"not fit in {SUN_PATH_MAX} bytes", file=sys.stderr)
        return 1
    if state_dir != DEFAULT_STATE_DIR:
        # Two daemons on one host must not share cgroups for equal ids.
        config.cgroup_parent = "containerd-py-" + hashlib.sha1(state_dir.encode()).hexdigest()[:8]
    try:
        locks = lock_dirs(state_dir, data_dir)
    except DirLocked as e:
        print(f"containerd-py daemon: {e}", file=sys.stderr)
        return 1
    try:
        policy = AccessPolicy(args.group)
    except ValueError as e:
        print(f"containerd-py daemon: --group: {e}", file=sys.stderr)
        return 1
    app = make_app(config, policy)
    if config.cri_listen:
        from .cri.server import attach, socket_path
        from .errors import InvalidArgument
        try:
            socket_path(config.cri_listen)
        except InvalidArgument as e:
            print(e.message, file=sys.stderr)
            return 1
        # The socket's group: --cri-group (containerd's grpc.gid), else the
        # API's --group, else root's alone.
        cri_gid = policy.gid
        if args.cri_group:
            from .api.access import resolve_group
            try:
                cri_gid = resolve_group(args.cri_group)
            except ValueError as e:
                print(f"containerd-py daemon: --cri-group: {e}", file=sys.stderr)
                return 1
        attach(app, config, cri_gid)
    try:
        sock = open_socket(args.listen, policy.gid, args.insecure_listen_anywhere)
        # Where other daemons reach this one (a migration's rounds): every
        # route is served, but only the token-authenticated ones answer a
        # caller whose uid cannot be told, i.e. anyone not on this host.
        peers = [open_socket(a, policy.gid, anywhere=True) for a in args.peer_listen]
    except ListenError as e:
        print(f"containerd-py daemon: {e}", file=sys.stderr)
        return 1
    if args.insecure_listen_anywhere and not is_unix(args.listen):
        print(f"containerd-py daemon: WARNING: serving {args.listen} beyond loopback; "
              "callers are still checked by uid, which only works for local peers",
              file=sys.stderr)
    try:
        web.run_app(app, sock=[sock, *peers], print=None, handle_signals=True)
    finally:
        if is_unix(args.listen):
            try:
                os.unlink(args.listen[5:])
            except OSError:
                pass
        for lock in locks:
            lock.release()
    return 0


def _add_daemon_parser(sub) -> None:
    d = sub.add_parser("daemon", description="run the daemon in the foreground")
    d.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT or unix:PATH")
    d.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help="volatile state (shims, logs); persistent data goes to "
                        "/var/lib/containerd-py, or DIR/data for a non-default DIR")
    d.add_argument("--data-dir", default=None, help="persistent state (records, journal)")
    d.add_argument("--runtime", default="runc", choices=["runc", "crun"],
                   help="the OCI runtime containers run with by default")
    d.add_argument("--criu", default=None, help="path of the criu binary")
    d.add_argument("--log-max-bytes", type=int, default=64 * 1024 * 1024,
                   help="rotate a container's log past this size")
    d.add_argument("--group", default=None,
                   help="members of this group may use the API too (default: root only)")
    d.add_argument("--peer-listen", action="append", default=[], metavar="HOST:PORT",
                   help="also serve HOST:PORT for other daemons (live migration's target "
                        "side, authenticated by one-time tokens); may be repeated")
    d.add_argument("--insecure-listen-anywhere", action="store_true",
                   help="allow --listen on a non-loopback address")
    d.add_argument("--cri-listen", default=None,
                   help="the CRI's gRPC socket, unix:///PATH (default: unix://STATE_DIR/cri.sock,"
                        " that is unix:///run/containerd-py/cri.sock; '' for none)")
    d.add_argument("--cri-group", default=None, metavar="NAME",
                   help="group of the CRI socket, which is mode 0660 (as containerd's "
                        "grpc.gid; default: --group's, else root's)")
    d.add_argument("--image-mirror", default=None, metavar="DIR",
                   help="where the CRI's PullImage finds images the local store lacks")
    d.add_argument("--default-subnet", default=None, metavar="CIDR",
                   help="subnet of the `default` network when it is first made "
                        "(default 10.88.0.0/16)")
    d.add_argument("--debug", action="store_true", help="log every request")
    d.set_defaults(func=None, offline=True)


def build_parser():
    from .commands import register_all
    p = argparse.ArgumentParser(
        prog="containerd-py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A container supervisor daemon and its command line. "
                    "`containerd-py COMMAND --help` tells more of each command.")
    p.add_argument("--address", default=os.environ.get("CONTAINERD_PY_ADDRESS", DEFAULT_LISTEN),
                   help="the daemon's address, HOST:PORT or unix:PATH (default "
                        f"{DEFAULT_LISTEN}, or $CONTAINERD_PY_ADDRESS)")
    p.add_argument("--version", action="version", version=__version__,
                   help="print the client's version")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _add_daemon_parser(sub)
    reg = register_all(sub)
    p.epilog = reg.grouped_help()
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "daemon":
        return run_daemon(args)

    from .client import APIError, Client
    from .commands.terminal import SessionRefused
    cl = Client(args.address)
    try:
        return args.func(cl, args) or 0
    except APIError as err:
        # One line, the daemon's own words; podman's 125 for "the engine said no".
        print(f"error: {err.body.get('error', err) if isinstance(err.body, dict) else err}",
              file=sys.stderr)
        return 125
    except SessionRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 125
    except (ConnectionRefusedError, FileNotFoundError, socket.gaierror) as err:
        print(f"error: cannot reach the daemon at {args.address} ({err.strerror or err}); "
              "start it with `containerd-py daemon` (as root) or `make run`, or point "
              "--address at it", file=sys.stderr)
        return 125
    except OSError as err:
        print(f"error: talking to the daemon at {args.address}: {err}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
