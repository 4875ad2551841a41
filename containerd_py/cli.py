"""`containerd-py`: the daemon, and a thin command-line client of its API."""

import argparse
import hashlib
import json
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
        attach(app, config)
    try:
        sock = open_socket(args.listen, policy.gid, args.insecure_listen_anywhere)
    except ListenError as e:
        print(f"containerd-py daemon: {e}", file=sys.stderr)
        return 1
    if args.insecure_listen_anywhere and not is_unix(args.listen):
        print(f"containerd-py daemon: WARNING: serving {args.listen} beyond loopback; "
              "callers are still checked by uid, which only works for local peers",
              file=sys.stderr)
    try:
        web.run_app(app, sock=sock, print=None, handle_signals=True)
    finally:
        if is_unix(args.listen):
            try:
                os.unlink(args.listen[5:])
            except OSError:
                pass
        for lock in locks:
            lock.release()
    return 0


def _signal_arg(text: str) -> int:
    from .errors import InvalidArgument
    from .validation import check_signal
    try:
        return check_signal(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(e.message) from None


def _print(obj) -> None:
    if obj is not None:
        print(json.dumps(obj, indent=2))


def main(argv=None) -> int:
    argv, command = _split_command(sys.argv[1:] if argv is None else list(argv))
    p = argparse.ArgumentParser(prog="containerd-py", description=__doc__)
    p.add_argument("--address", default=os.environ.get("CONTAINERD_PY_ADDRESS", DEFAULT_LISTEN),
                   help="daemon address for client commands (HOST:PORT or unix:PATH)")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("daemon", help="run the daemon in the foreground")
    d.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT or unix:PATH")
    d.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help="volatile state (shims, logs); persistent data goes to "
                        "/var/lib/containerd-py, or DIR/data for a non-default DIR")
    d.add_argument("--data-dir", default=None, help="persistent state (records, journal)")
    d.add_argument("--runtime", default="runc", choices=["runc", "crun"])
    d.add_argument("--criu", default=None, help="path of the criu binary")
    d.add_argument("--log-max-bytes", type=int, default=64 * 1024 * 1024,
                   help="rotate a container's log past this size")
    d.add_argument("--group", default=None,
                   help="members of this group may use the API too (default: root only)")
    d.add_argument("--insecure-listen-anywhere", action="store_true",
                   help="allow --listen on a non-loopback address")
    d.add_argument("--cri-listen", default=None,
                   help="the CRI's gRPC socket, unix:///PATH (default: unix://STATE_DIR/cri.sock,"
                        " that is unix:///run/containerd-py/cri.sock; '' for none)")
    d.add_argument("--image-mirror", default=None, metavar="DIR",
                   help="where the CRI's PullImage finds images the local store lacks")
    d.add_argument("--debug", action="store_true")

    sub.add_parser("state", help="GET /state")
    ls = sub.add_parser("list", aliases=["ps"], help="list containers")
    ls.add_argument("--status")
    ls.add_argument("--label", action="append")
    for name in ("inspect", "pause", "resume", "start", "wait", "top", "stats",
                 "checkpoints"):
        sub.add_parser(name).add_argument("id")
    c = sub.add_parser("create", aliases=["run"], help="create and start a container")
    c.add_argument("id")
    c.add_argument("bundle", nargs="?", help="bundle dir (or --image)")
    c.add_argument("--image", help="an image of the daemon's store instead of a bundle")
    c.add_argument("--checkpoint")
    c.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    c.add_argument("--runtime")
    c.add_argument("--rm", action="store_true", help="autoRemove")
    c.add_argument("--restart", help="no | on-failure | always")
    _add_setting_flags(c)
    for name in ("stop", "restart"):
        s = sub.add_parser(name)
        s.add_argument("id")
        s.add_argument("--timeout", "-t", type=int)
    k = sub.add_parser("kill")
    k.add_argument("id")
    k.add_argument("--signal", "-s", type=_signal_arg, default=15,
                   help="a number or a name: 9, KILL, SIGKILL (default SIGTERM)")
    rm = sub.add_parser("delete", aliases=["rm"])
    rm.add_argument("id")
    rm.add_argument("--force", "-f", action="store_true")
    e = sub.add_parser("exec", help="run a command to completion, print its output")
    e.add_argument("id")
    e.add_argument("args", nargs=argparse.REMAINDER)
    lg = sub.add_parser("logs")
    lg.add_argument("id")
    lg.add_argument("--tail")
    lg.add_argument("--follow", "-f", action="store_true")
    cp = sub.add_parser("checkpoint")
    cp.add_argument("id")
    cp.add_argument("name")
    cp.add_argument("--exit", action="store_true")
    ev = sub.add_parser("events")
    ev.add_argument("--since")
    sub.add_parser("info")
    sub.add_parser("images", help="list images")
    ld = sub.add_parser("load", help="load a docker-archive or oci-archive")
    ld.add_argument("--input", "-i", help="the archive (default: stdin)")
    tg = sub.add_parser("tag", help="give an image another name")
    tg.add_argument("ref")
    tg.add_argument("name")
    rmi = sub.add_parser("rmi", help="untag or delete images")
    rmi.add_argument("refs", nargs="+")
    rmi.add_argument("--force", "-f", action="store_true")
    cm = sub.add_parser("commit", help="a new image from a container's changes")
    cm.add_argument("id")
    cm.add_argument("name", nargs="?")
    sub.add_parser("diff", help="paths a container added, changed, deleted").add_argument("id")
    ex = sub.add_parser("export", help="a container's filesystem as a tar")
    ex.add_argument("id")
    ex.add_argument("--output", "-o", help="file (default: stdout)")

    args = p.parse_args(argv)
    args.command = command
    if args.cmd == "daemon":
        return run_daemon(args)

    from .client import APIError, Client
    cl = Client(args.address)
    try:
        return _client_command(cl, args)
    except APIError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot reach the daemon at {args.address}: {err}", file=sys.stderr)
        return 1


def _client_command(cl, args) -> int:
    cmd = args.cmd
    if cmd == "state":
        _print(cl.state())
    elif cmd in ("list", "ps"):
        _print(cl.list(status=args.status, label=args.label))
    elif cmd == "inspect":
        _print(cl.get(args.id))
    elif cmd in ("create", "run"):
        opts = {"labels": dict(x.split("=", 1) for x in args.label)}
        if args.checkpoint:
            opts["checkpoint"] = args.checkpoint
        if args.runtime:
            opts["runtime"] = args.runtime
        if args.rm:
            opts["autoRemove"] = True
        if args.restart:
            opts["restartPolicy"] = {"name": args.restart}
        opts.update(_settings(args))
        if args.image:
            opts["image"] = args.image
        elif not args.bundle:
            print("error: give a bundle dir or --image", file=sys.stderr)
            return 2
        _print(cl.create(args.id, os.path.abspath(args.bundle) if args.bundle else None,
                         **opts))
    elif cmd in ("pause", "resume", "start", "wait", "top", "stats", "checkpoints"):
        _print(getattr(cl, cmd)(args.id))
    elif cmd in ("stop", "restart"):
        _print(getattr(cl, cmd)(args.id, args.timeout))
    elif cmd == "kill":
        _print(cl.kill(args.id, args.signal))
    elif cmd in ("delete", "rm"):
        cl.delete(args.id, args.force)
    elif cmd == "exec":
        res = cl.exec_sync(args.id, args.args)
        sys.stdout.write(res["stdout"])
        sys.stderr.write(res["stderr"])
        return res["exitStatus"]
    elif cmd == "logs":
        if args.follow:
            for line in cl.stream(f"/containers/{args.id}/logs",
                                  {"follow": "true", **({"tail": args.tail} if args.tail else {})}):
                print(line)
        else:
            for entry in cl.logs(args.id, tail=args.tail):
                print(entry["line"])
    elif cmd == "checkpoint":
        _print(cl.checkpoint(args.id, args.name, exit=args.exit))
    elif cmd == "events":
        for event in cl.events(args.since):
            print(json.dumps(event), flush=True)
    elif cmd == "info":
        _print(cl.info())
    elif cmd == "images":
        rows = [(",".join(i["names"]) or "<none>", i["shortId"], i["created"] or "",
                 i["size"]) for i in cl.images()]
        print(f"{'NAMES':50} {'ID':12} {'CREATED':20} SIZE")
        for names, sid, created, size in rows:
            print(f"{names:50} {sid:12} {created[:19]:20} {size}")
    elif cmd == "load":
        if args.input:
            with open(args.input, "rb") as f:
                loaded = cl.load(f)
        else:
            loaded = cl.load(sys.stdin.buffer)
        for i in loaded:
            print("Loaded image:", ", ".join(i["names"]) or i["id"])
    elif cmd == "tag":
        cl.tag(args.ref, args.name)
    elif cmd == "rmi":
        for ref in args.refs:
            res = cl.rmi(ref, args.force)
            for name in res["untagged"]:
                print("Untagged:", name)
            if res["deleted"]:
                print("Deleted:", res["deleted"])
    elif cmd == "commit":
        print(cl.commit(args.id, args.name)["id"])
    elif cmd == "diff":
        for ch in cl.changes(args.id):
            print(ch["kind"], ch["path"])
    elif cmd == "export":
        if args.output:
            with open(args.output, "wb") as f:
                cl.export(args.id, f)
        else:
            cl.export(args.id, sys.stdout.buffer)
    return 0


def _split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`run ... ID BUNDLE -- CMD ARGS...`: what follows `--` is the command,
    never options of run."""
    if "--" in argv and any(a in ("run", "create") for a in argv[:argv.index("--")]):
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, None


def _add_setting_flags(c) -> None:
    """The create settings as flags, named as podman's and docker's run."""
    c.add_argument("--env", "-e", action="append", default=[], help="KEY=VALUE")
    c.add_argument("--mount", action="append", default=[],
                   help="type=bind,src=/srv,dst=/srv[,ro] or type=tmpfs,dst=/cache")
    c.add_argument("--volume", "-v", action="append", default=[], help="SRC:DST[:ro]")
    c.add_argument("--user", "-u", help="uid[:gid] or name[:group]")
    c.add_argument("--workdir", "-w")
    c.add_argument("--hostname")
    c.add_argument("--entrypoint", help="a command line (replaces the image's Entrypoint)")
    c.add_argument("--init", action="store_true", help="tini as PID 1")
    c.add_argument("--tty", "-t", action="store_true")
    c.add_argument("--read-only", action="store_true")
    c.add_argument("--stop-signal")
    c.add_argument("--annotation", action="append", default=[], help="KEY=VALUE")
    c.add_argument("--memory", "-m", help="a size like 256M")
    c.add_argument("--cpus", type=float)


def _settings(args) -> dict:
    import shlex
    opts: dict = {}
    if args.command:
        opts["args"] = args.command
    if args.env:
        opts["env"] = args.env
    if args.mount or args.volume:
        opts["mounts"] = args.mount + args.volume
    for key, value in (("user", args.user), ("cwd", args.workdir),
                       ("hostname", args.hostname), ("stopSignal", args.stop_signal),
                       ("memory", args.memory), ("cpu", args.cpus)):
        if value is not None:
            opts[key] = value
    if args.entrypoint is not None:
        opts["entrypoint"] = shlex.split(args.entrypoint)
    for key, flag in (("init", args.init), ("terminal", args.tty),
                      ("readonlyRootfs", args.read_only)):
        if flag:
            opts[key] = True
    if args.annotation:
        opts["annotations"] = dict(a.split("=", 1) for a in args.annotation)
    return opts


if __name__ == "__main__":
    sys.exit(main())
