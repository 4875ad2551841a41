"""Container verbs, named and flagged as in podman and docker."""

import argparse
import asyncio
import json
import os
import shlex
import signal as signal_mod
import sys
import time

from .output import add_format_flags, ago, emit, emit_object, human_size, table


def parse_signal(text) -> int:
    """A signal by number or name: 9, KILL, SIGKILL, sigterm."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


def _key_values(pairs, what: str) -> dict:
    out = {}
    for item in pairs or []:
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise SystemExit(f"error: {what} must be KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def parse_volume(spec: str) -> dict:
    """-v SRC:DST[:ro|rw] as an OCI bind mount."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SystemExit(f"error: -v takes SRC:DST[:ro], got {spec!r}")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise SystemExit(f"error: -v mode must be ro or rw, got {mode!r}")
    return {"type": "bind", "source": os.path.abspath(parts[0]), "destination": parts[1],
            "options": ["rbind", mode]}


def parse_mount(spec: str) -> dict:
    """--mount type=bind,src=/srv,dst=/srv,ro (docker's form) as an OCI mount."""
    fields, options = {}, []
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            if key in ("ro", "readonly"):
                options.append("ro")
            elif key:
                options.append(key)
            continue
        fields[{"src": "source", "dst": "destination", "target": "destination",
                "destination": "destination", "source": "source"}.get(key, key)] = value
    kind = fields.get("type", "bind")
    if "destination" not in fields:
        raise SystemExit(f"error: --mount needs dst= (or target=): {spec!r}")
    if fields.get("readonly") in ("true", "1"):
        options.append("ro")
    mount = {"type": kind, "destination": fields["destination"]}
    if kind == "bind":
        if "source" not in fields:
            raise SystemExit(f"error: a bind --mount needs src=: {spec!r}")
        mount["source"] = os.path.abspath(fields["source"])
        mount["options"] = ["rbind", "ro" if "ro" in options else "rw"]
    elif kind == "tmpfs":
        mount["source"] = "tmpfs"
        opts = [o for o in options if o != "ro"] + (["ro"] if "ro" in options else [])
        if "tmpfs-size" in fields:
            opts.append(f"size={fields['tmpfs-size']}")
        mount["options"] = opts or ["nosuid", "nodev"]
    else:
        raise SystemExit(f"error: --mount type must be bind or tmpfs, got {kind!r}")
    return mount


def parse_publish(spec: str) -> dict:
    """-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]."""
    body, _, proto = spec.partition("/")
    parts = body.rsplit(":", 2)
    try:
        if len(parts) == 3:
            ip, host, ctr = parts
        elif len(parts) == 2:
            ip, (host, ctr) = None, parts
        else:
            raise ValueError
        port = {"hostPort": int(host), "containerPort": int(ctr), "protocol": proto or "tcp"}
    except ValueError:
        raise SystemExit(f"error: -p takes [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO], "
                         f"got {spec!r}") from None
    if ip:
        port["hostIp"] = ip.strip("[]")
    return port


def add_create_flags(p) -> None:
    p.add_argument("id", metavar="ID", help="the new container's id")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[BUNDLE] [COMMAND...]",
                   help="an OCI bundle directory (unless --image or --pool is given), then "
                        "the command to run instead of the image's or bundle's")
    src = p.add_argument_group("what to run")
    src.add_argument("--image", metavar="REF", help="run this image (see `images`)")
    src.add_argument("--checkpoint", metavar="NAME", help="restore this checkpoint")
    src.add_argument("--lazy", action="store_true",
                     help="restore lazily: pages arrive on fault (with --checkpoint)")
    src.add_argument("--pool", metavar="NAME", help="claim a ready member of this warm pool")
    src.add_argument("--entrypoint", help="replace the image's entrypoint")
    s = p.add_argument_group("settings")
    s.add_argument("--name", help="a name besides the id")
    s.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable (repeatable)")
    s.add_argument("-w", "--workdir", help="working directory inside the container")
    s.add_argument("-u", "--user", help="UID[:GID] or a user name of the image")
    s.add_argument("--hostname", help="the container's host name")
    s.add_argument("-l", "--label", action="append", default=[], metavar="K=V",
                   help="a label (repeatable)")
    s.add_argument("--annotation", action="append", default=[], metavar="K=V",
                   help="an OCI annotation (repeatable)")
    s.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind-mount a host path (repeatable)")
    s.add_argument("--mount", action="append", default=[],
                   metavar="type=bind,src=S,dst=D[,ro]", help="a bind or tmpfs mount")
    s.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    s.add_argument("--init", action="store_true",
                   help="run a tiny init as PID 1 that forwards signals and reaps")
    s.add_argument("--stop-signal", help="signal that stops the container (name or number)")
    s.add_argument("--restart", metavar="POLICY",
                   help="no, on-failure[:N] or always")
    s.add_argument("--runtime", help="runc or crun")
    r = p.add_argument_group("resources and network")
    r.add_argument("-m", "--memory", help="memory limit, e.g. 256m")
    r.add_argument("--cpus", type=float, help="number of CPUs, e.g. 0.5")
    r.add_argument("--pids-limit", type=int, help="most processes at once")
    r.add_argument("--network", "--net", action="append", default=None, metavar="NAME",
                   help="join this network (repeatable); none for loopback only, host "
                        "for the host's")
    r.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:]HOSTPORT:PORT[/PROTO]", help="publish a port on the host")


def create_body(args) -> tuple[str, dict]:
    rest = list(args.rest)
    if rest and rest[0] == "--":
        rest = rest[1:]
    body: dict = {}
    if args.image:
        body["image"] = args.image
    elif args.pool and not rest:
        pass
    elif rest:
        body["bundlePath"] = os.path.abspath(rest.pop(0))
    else:
        raise SystemExit("error: give a BUNDLE directory, --image REF or --pool NAME")
    if args.pool:
        body["pool"] = args.pool
    if rest:
        if rest[0] == "--":
            rest = rest[1:]
        body["args"] = rest
    if args.entrypoint is not None:
        body["entrypoint"] = shlex.split(args.entrypoint)
    if args.checkpoint:
        body["checkpoint"] = args.checkpoint
    if args.lazy:
        body["lazy"] = True
    if args.name:
        body["name"] = args.name
    if args.env:
        body["env"] = [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in args.env]
    for flag, key in (("workdir", "cwd"), ("user", "user"), ("hostname", "hostname"),
                      ("runtime", "runtime")):
        if getattr(args, flag):
            body[key] = getattr(args, flag)
    if args.label:
        body["labels"] = _key_values(args.label, "--label")
    if args.annotation:
        body["annotations"] = _key_values(args.annotation, "--annotation")
    mounts = [parse_volume(x) for x in args.volume] + [parse_mount(x) for x in args.mount]
    if mounts:
        body["mounts"] = mounts
    if args.read_only:
        body["readonlyRootfs"] = True
    if args.init:
        body["init"] = True
    if args.stop_signal:
        body["stopSignal"] = parse_signal(args.stop_signal)
    if args.restart:
        name, _, count = args.restart.partition(":")
        body["restartPolicy"] = {"name": name, **({"maximumRetryCount": int(count)}
                                                   if count else {})}
    resources = {}
    if args.memory:
        resources["memory"] = args.memory
    if args.cpus:
        resources["cpus"] = args.cpus
    if args.pids_limit:
        resources["pidsLimit"] = args.pids_limit
    if resources:
        body["resources"] = resources
    if args.network is not None:
        nets = [n for n in args.network if n != "none"]
        body["networks"] = nets
    if args.publish:
        body["ports"] = [parse_publish(x) for x in args.publish]
    if getattr(args, "tty", False):
        body["terminal"] = True
    if getattr(args, "rm", False):
        body["autoRemove"] = True
    return args.id, body


# -- commands -----------------------------------------------------------------

def cmd_create(cl, args) -> int:
    cid, body = create_body(args)
    body["start"] = False
    c = cl.request("POST", f"/containers/{cid}", body)
    emit_object(args, c, c["id"])
    return 0


def cmd_run(cl, args) -> int:
    cid, body = create_body(args)
    # A foreground run without a terminal may end before the client has
    # attached; the daemon's autoRemove would then take its exit status with
    # it. So the client removes it itself once it has the status.
    remove_here = body.get("autoRemove") and not args.detach and not args.tty
    if remove_here:
        body["autoRemove"] = False
    c = cl.request("POST", f"/containers/{cid}", body)
    if args.detach:
        emit_object(args, c, c["id"])
        return 0
    try:
        return _follow_to_exit(cl, args, c["id"], tty_mode=args.tty, stdin=args.interactive)
    finally:
        if remove_here:
            cl.delete(c["id"], True)


def _follow_to_exit(cl, args, cid: str, *, tty_mode: bool, stdin: bool,
                    replay: bool = True) -> int:
    """Foreground run and attach: show the container's output (and feed its
    stdin) until it exits; the command's status is the container's."""
    from .terminal import Detached, SessionRefused, run_session
    query = {"logs": str(replay).lower(), "stdin": str(stdin).lower()}

    async def resize(w, h):
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: cl.request("POST", f"/containers/{cid}/resize",
                                     query={"w": w, "h": h}))

    if tty_mode:
        from .terminal import terminal_size
        w, h = terminal_size()
        try:
            cl.request("POST", f"/containers/{cid}/resize", query={"w": w, "h": h})
        except Exception:
            pass  # exited already: the attach below says so
    try:
        status = run_session(cl.address, f"/containers/{cid}/attach", query,
                             tty_mode=tty_mode, stdin=stdin, resize=resize)
        if status is not None:
            return status
    except Detached:
        print(f"\r\ndetached from {cid}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        return 130
    except SessionRefused as e:
        if e.status != 409:
            cl.get(cid)  # the daemon's own words for what is wrong (404 ...)
            raise
        # Exited before the attach could begin: its whole output is logged.
        if replay:
            for entry in cl.logs(cid):
                stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
                print(entry["line"], file=stream)
    try:
        status = cl.wait(cid).get("exitStatus")
    except Exception:  # --rm: gone already
        status = None
    return status if isinstance(status, int) else 0


def cmd_start(cl, args) -> int:
    for cid in args.ids:
        body = {"checkpoint": args.checkpoint} if args.checkpoint else None
        c = cl.request("POST", f"/containers/{cid}/start", body)
        emit_object(args, c, c["id"])
    if args.attach and len(args.ids) == 1:
        return _follow_to_exit(cl, args, args.ids[0], tty_mode=False,
                               stdin=args.interactive)
    return 0


def _each(op):
    """A verb applied to each id in turn (stop, kill, pause...): prints each
    id, or each container with --format json, as podman does."""
    def run(cl, args) -> int:
        for cid in args.ids:
            emit_object(args, op(cl, args, cid), cid)
        return 0
    return run


cmd_stop = _each(lambda cl, args, cid: cl.stop(cid, args.time))
cmd_restart = _each(lambda cl, args, cid: cl.restart(cid, args.time))
cmd_kill = _each(lambda cl, args, cid: cl.kill(cid, args.signal))
cmd_pause = _each(lambda cl, args, cid: cl.pause(cid))
cmd_unpause = _each(lambda cl, args, cid: cl.resume(cid))


def cmd_rm(cl, args) -> int:
    from ..client import APIError
    status = 0
    for cid in args.ids:
        try:
            cl.delete(cid, args.force)
            print(cid)
        except APIError as e:
            print(f"error: {cid}: {e.body.get('error', e)}", file=sys.stderr)
            status = 125 if e.status >= 500 else 1
    return status


def cmd_prune(cl, args) -> int:
    res = cl.request("DELETE", "/containers", query={"status": "stopped"})
    for cid in res["deleted"]:
        print(cid)
    return 0


def cmd_wait(cl, args) -> int:
    for cid in args.ids:
        res = cl.wait(cid)
        emit_object(args, res, str(res.get("exitStatus")))
    return 0


def cmd_rename(cl, args) -> int:
    c = cl.rename(args.id, args.name)
    emit_object(args, c, c["id"])
    return 0


def cmd_update(cl, args) -> int:
    resources = {}
    if args.memory:
        resources["memory"] = args.memory
    if args.cpus:
        resources["cpus"] = args.cpus
    if args.pids_limit:
        resources["pidsLimit"] = args.pids_limit
    if args.cpu_shares:
        resources["cpuShares"] = args.cpu_shares
    if not resources:
        raise SystemExit("error: update needs --memory, --cpus, --cpu-shares or --pids-limit")
    for cid in args.ids:
        c = cl.update(cid, **resources)
        emit_object(args, c, c["id"])
    return 0


def cmd_ps(cl, args) -> int:
    status = args.status if args.status or args.all else "running"
    items = cl.list(status=status, label=args.filter_label or None)

    def row(c):
        init = (c.get("processes") or [{}])[0]
        command = " ".join(init.get("args", []))
        if not command and c.get("args"):
            command = " ".join(c["args"])
        image = (c.get("image") or {}).get("ref") if isinstance(c.get("image"), dict) \
            else c.get("image")
        state = c["status"]
        if state == "stopped" and c.get("exitStatus") is not None:
            state = f"exited ({c['exitStatus']})"
        ports = ", ".join(_port_text(p) for p in c.get("ports", []))
        return [c["id"], c.get("name", c["id"]) if c.get("name") != c["id"] else "",
                image or c.get("bundlePath", ""), command[:30], ago(c.get("created")),
                state, ports]

    emit(args, items, ["ID", "NAME", "IMAGE/BUNDLE", "COMMAND", "CREATED", "STATUS", "PORTS"],
         row)
    return 0


def _port_text(p: dict) -> str:
    return (f"{p.get('hostIp', '127.0.0.1')}:{p['hostPort']}->{p['containerPort']}"
            f"/{p.get('protocol', 'tcp')}")


def cmd_port(cl, args) -> int:
    c = cl.get(args.id)
    for p in c.get("ports", []):
        print(f"{p['containerPort']}/{p.get('protocol', 'tcp')} -> "
              f"{p.get('hostIp', '127.0.0.1')}:{p['hostPort']}")
    return 0


def cmd_inspect(cl, args) -> int:
    out = []
    for ref in args.ids:
        if args.type in ("container", "auto"):
            try:
                out.append(cl.get(ref))
                continue
            except Exception as e:
                if args.type == "container":
                    raise
                err = e
        if args.type in ("image", "auto"):
            try:
                out.append(cl.request("GET", f"/images/{ref}"))
                continue
            except Exception:
                if args.type == "image":
                    raise
        raise err
    print(json.dumps(out if len(out) != 1 else out[0], indent=2))
    return 0


def cmd_top(cl, args) -> int:
    res = cl.top(args.id)
    if args.format == "json":
        print(json.dumps(res, indent=2))
        return 0
    table(res["titles"], [[p.get(k.lower(), "") if isinstance(p, dict) else p[i]
                          for i, k in enumerate(res["titles"])] for p in res["processes"]])
    return 0


def _stats_row(cid: str, s: dict) -> list:
    mem = s.get("memory", {}) or {}
    usage = mem.get("usage", mem.get("usageBytes"))
    limit = mem.get("limit", mem.get("limitBytes"))
    cpu = s.get("cpu", {}) or {}
    pct = cpu.get("percent")
    net = s.get("network", {}) or {}
    rx = sum(v.get("rxBytes", 0) for v in net.values()) if isinstance(net, dict) else None
    tx = sum(v.get("txBytes", 0) for v in net.values()) if isinstance(net, dict) else None
    pids = (s.get("pids") or {}).get("current")
    return [cid, f"{pct:.2f}%" if isinstance(pct, (int, float)) else "-",
            f"{human_size(usage)} / {human_size(limit)}",
            f"{human_size(rx)} / {human_size(tx)}", pids if pids is not None else "-"]


def cmd_stats(cl, args) -> int:
    ids = args.ids or [c["id"] for c in cl.list(status="running")]
    headers = ["ID", "CPU %", "MEM USAGE / LIMIT", "NET I/O", "PIDS"]
    if args.format == "json" or args.no_stream:
        stats = {cid: cl.stats(cid) for cid in ids}
        if args.format == "json":
            print(json.dumps(stats, indent=2))
        else:
            table(headers, [_stats_row(cid, s) for cid, s in stats.items()])
        return 0
    # Like `docker stats`: redraw in place once a second until ctrl-c.
    try:
        while True:
            rows = []
            for cid in ids:
                try:
                    rows.append(_stats_row(cid, cl.stats(cid)))
                except Exception:
                    continue
            sys.stdout.write("\x1b[H\x1b[2J" if sys.stdout.isatty() else "")
            table(headers, rows)
            sys.stdout.flush()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0


def cmd_logs(cl, args) -> int:
    query = {"timestamps": args.timestamps}
    if args.tail is not None:
        query["tail"] = args.tail
    if args.since:
        query["since"] = args.since
    if args.follow:
        query.update(follow="true", format="text")
        try:
            for line in cl.stream(f"/containers/{args.id}/logs",
                                  {k: str(v).lower() if isinstance(v, bool) else v
                                   for k, v in query.items()}):
                print(line, flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    for entry in cl.logs(args.id, **query):
        prefix = f"{entry['timestamp']} " if args.timestamps else ""
        stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
        print(prefix + entry["line"], file=stream)
    return 0


def _exec_user(text: str | None) -> dict | None:
    if not text:
        return None
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise SystemExit("error: exec -u takes UID[:GID]")
    return {"uid": int(uid), "gid": int(gid or uid)}


def cmd_exec(cl, args) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise SystemExit("error: exec needs a command")
    env = [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in args.env]
    user = _exec_user(args.user)
    if args.tty or args.interactive:
        from .terminal import Detached, run_session, terminal_size
        cols, rows = terminal_size()
        query = {"command": shlex.join(command), "terminal": str(args.tty).lower(),
                 "w": cols, "h": rows}
        if env:
            query["env"] = env
        if args.workdir:
            query["cwd"] = args.workdir
        if user:
            query["user"] = f"{user['uid']}:{user['gid']}"
        pid: list[int] = []

        async def on_pid(p):
            pid.append(p)

        async def resize(w, h):
            if pid:
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: cl.request("POST", f"/containers/{args.id}/resize",
                                             query={"pid": pid[0], "w": w, "h": h}))
        try:
            status = run_session(cl.address, f"/containers/{args.id}/exec/ws", query,
                                 tty_mode=args.tty, stdin=args.interactive, on_pid=on_pid,
                                 resize=resize)
        except Detached:
            return 0
        return status if isinstance(status, int) else 0
    opts = {}
    if env:
        # The API's env replaces the process's whole environment; -e adds to
        # the container's, as in podman.
        init = (cl.get(args.id).get("processes") or [{}])[0]
        opts["env"] = init.get("env", []) + env
    if args.workdir:
        opts["cwd"] = args.workdir
    if user:
        opts["user"] = user
    if args.detach:
        p = cl.add_process(args.id, command, **opts)
        print(p["pid"])
        return 0
    res = cl.exec_sync(args.id, command, **opts)
    sys.stdout.write(res["stdout"])
    sys.stderr.write(res["stderr"])
    return res["exitStatus"]


def cmd_attach(cl, args) -> int:
    terminal = bool((cl.get(args.id).get("processes") or [{}])[0].get("terminal"))
    return _follow_to_exit(cl, args, args.id, tty_mode=terminal and sys.stdin.isatty()
                           and not args.no_stdin, stdin=not args.no_stdin, replay=False)


def cmd_diff(cl, args) -> int:
    res = cl.request("GET", f"/containers/{args.id}/changes")
    if args.format == "json":
        print(json.dumps(res, indent=2))
        return 0
    for ch in res:
        print(ch["kind"], ch["path"])
    return 0


def cmd_commit(cl, args) -> int:
    res = cl.commit(args.id, args.name)
    emit_object(args, res, res.get("id", args.name))
    return 0


def cmd_export(cl, args) -> int:
    from .output import Progress
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    if out is sys.stdout.buffer and sys.stdout.isatty():
        raise SystemExit("error: refusing to write a tar to a terminal: use -o FILE or a pipe")
    progress = Progress(f"exporting {args.id}")
    try:
        cl.download(f"/containers/{args.id}/export", out, progress=progress.add)
    finally:
        progress.finish()
        if out is not sys.stdout.buffer:
            out.close()
    return 0


def register(reg) -> None:
    g = "containers"
    p = reg.add(g, "ps", "list containers (running ones; -a for all)", cmd_ps, ["list"])
    p.add_argument("-a", "--all", action="store_true", help="stopped containers too")
    p.add_argument("--status", choices=["created", "running", "paused", "stopped"],
                   help="only these")
    p.add_argument("--filter-label", "--label", action="append", metavar="KEY[=VALUE]",
                   help="only containers with this label (repeatable: all must match)")
    add_format_flags(p)

    p = reg.add(g, "run", "create and start a container; in the foreground unless -d",
                cmd_run)
    p.add_argument("-d", "--detach", action="store_true", help="print the id and return")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    p.add_argument("--rm", action="store_true", help="delete the container when it exits")
    add_format_flags(p, quiet=False)
    add_create_flags(p)

    p = reg.add(g, "create", "create a container without starting it", cmd_create)
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    add_format_flags(p, quiet=False)
    add_create_flags(p)

    p = reg.add(g, "start", "start stopped or created containers", cmd_start)
    p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
    p.add_argument("-a", "--attach", action="store_true", help="attach to its output")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin too")
    p.add_argument("--checkpoint", help="start from this checkpoint (restore in place)")
    add_format_flags(p, quiet=False)

    for name, func, text in (("stop", cmd_stop, "stop containers: stop signal, then SIGKILL"),
                             ("restart", cmd_restart, "stop and start containers")):
        p = reg.add(g, name, text, func)
        p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
        p.add_argument("-t", "--time", "--timeout", type=int, default=None,
                       help="seconds to wait before SIGKILL (default 10)")
        add_format_flags(p, quiet=False)

    p = reg.add(g, "kill", "send a signal to containers' init (default SIGKILL)", cmd_kill)
    p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
    p.add_argument("-s", "--signal", type=parse_signal, default=signal_mod.SIGKILL.value,
                   help="name (TERM, SIGTERM) or number")
    add_format_flags(p, quiet=False)

    for name, func, text in (("pause", cmd_pause, "freeze all processes of containers"),
                             ("unpause", cmd_unpause, "thaw paused containers")):
        p = reg.add(g, name, text, func, ["resume"] if name == "unpause" else ())
        p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
        add_format_flags(p, quiet=False)

    p = reg.add(g, "rm", "delete containers", cmd_rm, ["delete"])
    p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
    p.add_argument("-f", "--force", action="store_true", help="kill running ones first")

    reg.add(g, "prune", "delete all stopped containers", cmd_prune)

    p = reg.add(g, "wait", "wait for containers to exit; print their exit statuses", cmd_wait)
    p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "rename", "give a container a new name", cmd_rename)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    p.add_argument("name", metavar="NAME", help="its new name")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "update", "change running containers' resource limits", cmd_update)
    p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
    p.add_argument("-m", "--memory", help="memory limit, e.g. 256m")
    p.add_argument("--cpus", type=float, help="number of CPUs")
    p.add_argument("--cpu-shares", type=int, help="relative CPU weight")
    p.add_argument("--pids-limit", type=int, help="most processes at once")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "exec", "run a command in a running container", cmd_exec)
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    p.add_argument("-d", "--detach", action="store_true", help="start it and print its pid")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable (repeatable)")
    p.add_argument("-w", "--workdir", help="working directory")
    p.add_argument("-u", "--user", help="UID[:GID]")
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND...",
                   help="the command and its arguments")

    p = reg.add(g, "attach", "attach to a running container's output and input "
                "(ctrl-p ctrl-q detaches)", cmd_attach)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    p.add_argument("--no-stdin", action="store_true", help="do not send input")

    p = reg.add(g, "logs", "print a container's output", cmd_logs)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--tail", help="only the last N lines (or all)")
    p.add_argument("--since", help="only after this time (RFC 3339 or unix seconds)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")

    p = reg.add(g, "inspect", "everything about containers (or images)", cmd_inspect)
    p.add_argument("ids", nargs="+", metavar="ID", help="containers, by id or name")
    p.add_argument("--type", choices=["auto", "container", "image"], default="auto",
                   help="what the names refer to")

    p = reg.add(g, "top", "the processes of a container", cmd_top)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "stats", "live resource use (refreshes in place; ctrl-c ends)", cmd_stats)
    p.add_argument("ids", nargs="*", metavar="ID", help="default: every running container")
    p.add_argument("--no-stream", action="store_true", help="print once and exit")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "port", "a container's published ports", cmd_port)
    p.add_argument("id", metavar="ID", help="the container, by id or name")

    p = reg.add(g, "diff", "files added (A), changed (C) or deleted (D) in a container",
                cmd_diff)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "commit", "make an image of a container's filesystem changes", cmd_commit)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    p.add_argument("name", metavar="IMAGE", nargs="?", help="the new image's name[:tag]")
    add_format_flags(p, quiet=False)

    p = reg.add(g, "export", "write a container's filesystem as a tar", cmd_export)
    p.add_argument("id", metavar="ID", help="the container, by id or name")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
