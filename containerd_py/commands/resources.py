"""Images, networks, checkpoints and pools: the verbs of podman's `image`,
`network`, `container checkpoint` and our warm pools."""

import json
import os
import sys
import urllib.parse

from .output import Progress, add_format_flags, ago, emit, emit_object, human_size, short_id


def _q(ref: str) -> str:
    # Refs carry '/' and ':' (docker.io/library/busybox:latest): the routes
    # take them whole, but '@' and '%' must be quoted.
    return urllib.parse.quote(ref, safe="/:")


# -- images ------------------------------------------------------------------

def cmd_images(cl, args) -> int:
    items = cl.images()
    rows = []
    for img in items:
        names = img.get("names") or ["<none>"]
        for name in names:
            repo, _, tag = name.rpartition(":") if "@" not in name else (name, "", "")
            if "/" in tag:  # a registry port, not a tag
                repo, tag = name, ""
            rows.append((img, repo or name, tag or "<none>"))
    if args.format == "json":
        print(json.dumps(items, indent=2))
    elif args.quiet:
        for img in items:
            print(short_id(img["id"]))
    else:
        from .output import table
        table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
              [[repo, tag, short_id(img["id"]), ago(img.get("created")),
                human_size(img.get("size"))] for img, repo, tag in rows])
    return 0


def cmd_load(cl, args) -> int:
    src = open(args.input, "rb") if args.input else sys.stdin.buffer
    if src is sys.stdin.buffer and sys.stdin.isatty():
        raise SystemExit("error: give -i FILE or pipe an archive in (load < app.tar)")
    total = os.fstat(src.fileno()).st_size if args.input else None
    progress = Progress("loading", total)
    try:
        res = cl.upload("/images/load", src, progress=progress.add)
    finally:
        progress.finish()
    images = res.get("images", []) if isinstance(res, dict) else res
    if args.format == "json":
        print(json.dumps(res, indent=2))
    else:
        for img in images:
            for name in img.get("names") or [img["id"]]:
                print(f"Loaded image: {name}")
    return 0


def cmd_tag(cl, args) -> int:
    for name in args.names:
        cl.request("POST", f"/images/{_q(args.ref)}/tag", {"name": name})
    return 0


def cmd_rmi(cl, args) -> int:
    from ..client import APIError
    status = 0
    for ref in args.refs:
        try:
            res = cl.rmi(ref, args.force)
        except APIError as e:
            print(f"error: {ref}: {e.body.get('error', e)}", file=sys.stderr)
            status = 125
            continue
        for name in res.get("untagged", []):
            print(f"Untagged: {name}")
        if res.get("deleted"):
            print(f"Deleted: {res['deleted']}")
    return status


# -- networks ----------------------------------------------------------------

def cmd_network_create(cl, args) -> int:
    body = {"name": args.name}
    if args.subnet:
        body["subnet"] = args.subnet
    if args.gateway:
        body["gateway"] = args.gateway
    if args.internal:
        body["internal"] = True
    net = cl.request("POST", "/networks", body)
    emit_object(args, net, net.get("name", args.name))
    return 0


def cmd_network_ls(cl, args) -> int:
    items = cl.request("GET", "/networks")
    emit(args, items, ["NAME", "SUBNET", "GATEWAY", "INTERNAL", "CONTAINERS"],
         lambda n: [n["name"], n.get("subnet", ""), n.get("gateway", ""),
                    "yes" if n.get("internal") else "no", len(n.get("containers", []))],
         key=lambda n: n["name"])
    return 0


def cmd_network_inspect(cl, args) -> int:
    out = [cl.request("GET", f"/networks/{n}") for n in args.names]
    print(json.dumps(out if len(out) != 1 else out[0], indent=2))
    return 0


def cmd_network_rm(cl, args) -> int:
    for n in args.names:
        cl.request("DELETE", f"/networks/{n}")
        print(n)
    return 0


def cmd_network_connect(cl, args) -> int:
    c = cl.request("POST", f"/containers/{args.container}/networks/{args.network}")
    emit_object(args, c, args.container)
    return 0


def cmd_network_disconnect(cl, args) -> int:
    c = cl.request("DELETE", f"/containers/{args.container}/networks/{args.network}")
    emit_object(args, c, args.container)
    return 0


# -- checkpoints -------------------------------------------------------------

def cmd_checkpoint_create(cl, args) -> int:
    flags = {k: True for k in ("exit", "tcp") if getattr(args, k)}
    if args.leave_running is False and not args.exit:
        pass
    meta = cl.checkpoint(args.id, args.name, **flags)
    emit_object(args, meta, meta.get("name", args.name))
    return 0


def cmd_checkpoint_ls(cl, args) -> int:
    items = cl.checkpoints(args.id)
    emit(args, items, ["NAME", "CONTAINER", "CREATED", "SIZE", "EXITED", "TCP"],
         lambda m: [m["name"], m.get("container", args.id), ago(m.get("created")),
                    human_size(m.get("size")), "yes" if m.get("exit") else "no",
                    "yes" if m.get("tcp") else "no"], key=lambda m: m["name"])
    return 0


def cmd_checkpoint_rm(cl, args) -> int:
    for name in args.names:
        cl.delete_checkpoint(args.id, name)
        print(name)
    return 0


def cmd_checkpoint_export(cl, args) -> int:
    out = open(args.output, "wb") if args.output else sys.stdout.buffer
    if out is sys.stdout.buffer and sys.stdout.isatty():
        raise SystemExit("error: refusing to write an archive to a terminal: use -o FILE")
    progress = Progress(f"exporting {args.id}/{args.name}")
    try:
        cl.download(f"/containers/{args.id}/checkpoint/{args.name}/export", out,
                    progress=progress.add)
    finally:
        progress.finish()
        if out is not sys.stdout.buffer:
            out.close()
    return 0


def cmd_checkpoint_import(cl, args) -> int:
    path = None if args.input in (None, "-") else args.input
    src = open(path, "rb") if path else sys.stdin.buffer
    total = os.fstat(src.fileno()).st_size if path else None
    query = {"id": args.id}
    if args.bundle:
        query["bundlePath"] = os.path.abspath(args.bundle)
    if args.name:
        query["name"] = args.name
    progress = Progress("importing", total)
    try:
        c = cl.upload("/checkpoints/import", src, query=query, progress=progress.add)
    finally:
        progress.finish()
    emit_object(args, c, (c or {}).get("id", args.id))
    return 0


def cmd_restore(cl, args) -> int:
    """Restore a checkpoint into a container: the same id (in place) or a new
    one (--as NEW, a clone of the same bundle or image)."""
    if args.as_id:
        src = cl.get(args.id)
        body = {"checkpoint": args.name}
        if src.get("image"):
            img = src["image"]
            body["image"] = img.get("ref") if isinstance(img, dict) else img
        else:
            body["bundlePath"] = src["bundlePath"]
        if args.lazy:
            body["lazy"] = True
        c = cl.request("POST", f"/containers/{args.as_id}", body)
    else:
        body = {"checkpoint": args.name, **({"lazy": True} if args.lazy else {})}
        c = cl.request("POST", f"/containers/{args.id}/start", body)
    emit_object(args, c, c["id"])
    return 0


def cmd_migrate(cl, args) -> int:
    body = {"target": args.to if "://" in args.to else f"http://{args.to}",
            "preCopy": args.pre_copy}
    if args.lazy:
        body["lazy"] = True
    if args.target_address:
        from ..client import Client
        offer = Client(args.target_address).open_migration(args.id)
        body.update(migration=offer["migration"], token=offer["token"])
    progress = Progress(f"migrating {args.id}")
    import threading

    stop = threading.Event()

    def watch():
        # Rounds and bytes arrive as events while the POST is under way.
        try:
            for line in cl.stream("/events", {"since": "0"}):
                if stop.is_set():
                    return
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("id") == args.id and ev.get("type", "").startswith("migrat"):
                    progress.message(f"{ev['type']}: " + ", ".join(
                        f"{k}={v}" for k, v in ev.items()
                        if k in ("round", "bytes", "frozenMs", "phase", "error")))
        except Exception:
            return

    if progress.enabled:
        threading.Thread(target=watch, daemon=True).start()
    try:
        res = cl.request("POST", f"/containers/{args.id}/migrate", body)
    finally:
        stop.set()
    emit_object(args, res, res.get("id", args.id) if isinstance(res, dict) else args.id)
    return 0


# -- pools -------------------------------------------------------------------

def cmd_pool_create(cl, args) -> int:
    body = {"size": args.size}
    if args.image:
        body["image"] = args.image
    elif args.bundle:
        body["bundlePath"] = os.path.abspath(args.bundle)
    else:
        raise SystemExit("error: pool create needs a BUNDLE or --image REF")
    if args.checkpoint:
        body["checkpoint"] = args.checkpoint
    pool = cl.request("POST", f"/pools/{args.name}", body)
    emit_object(args, pool, args.name)
    return 0


def cmd_pool_ls(cl, args) -> int:
    items = cl.request("GET", "/pools")
    emit(args, items, ["NAME", "SOURCE", "CHECKPOINT", "SIZE", "READY"],
         lambda p: [p["name"], p.get("image") or p.get("bundlePath", ""),
                    p.get("checkpoint") or "-", p.get("size"), p.get("ready", "-")],
         key=lambda p: p["name"])
    return 0


def cmd_pool_rm(cl, args) -> int:
    for name in args.names:
        cl.request("DELETE", f"/pools/{name}")
        print(name)
    return 0


def _sub(subparsers, name: str, text: str, aliases=()):
    """A subcommand of a group verb (`network create`): its text both in
    the group's list and in its own --help."""
    return subparsers.add_parser(name, aliases=list(aliases), help=text, description=text)


def register(reg) -> None:
    g = "images"
    p = reg.add(g, "images", "list images", cmd_images)
    add_format_flags(p)
    p = reg.add(g, "load", "load images from a docker-archive or oci-archive "
                "(load < app.tar)", cmd_load)
    p.add_argument("-i", "--input", help="archive file (default: standard input)")
    add_format_flags(p, quiet=False)
    p = reg.add(g, "tag", "give an image more names", cmd_tag)
    p.add_argument("ref", metavar="IMAGE", help="the image: a name, id or digest")
    p.add_argument("names", nargs="+", metavar="NAME", help="new names (name:tag)")
    p = reg.add(g, "rmi", "remove images", cmd_rmi)
    p.add_argument("refs", nargs="+", metavar="IMAGE", help="images: names, ids or digests")
    p.add_argument("-f", "--force", action="store_true", help="even if containers use it")

    g = "networks"
    net = reg.add(g, "network", "manage networks: create, ls, inspect, rm, connect, "
                  "disconnect", None)
    nsub = net.add_subparsers(dest="network_cmd", metavar="SUBCOMMAND", required=True)
    p = _sub(nsub, "create", "create a bridge network")
    p.set_defaults(func=cmd_network_create)
    p.add_argument("name", metavar="NAME", help="the network's name")
    p.add_argument("--subnet", help="CIDR, e.g. 10.89.1.0/24")
    p.add_argument("--gateway", help="the bridge's address (default: first of the subnet)")
    p.add_argument("--internal", action="store_true", help="no traffic out of the host")
    add_format_flags(p, quiet=False)
    p = _sub(nsub, "ls", "list networks", aliases=["list"])
    p.set_defaults(func=cmd_network_ls)
    add_format_flags(p)
    p = _sub(nsub, "inspect", "a network with its containers")
    p.set_defaults(func=cmd_network_inspect)
    p.add_argument("names", nargs="+", metavar="NAME", help="network names")
    p = _sub(nsub, "rm", "remove networks", aliases=["remove"])
    p.set_defaults(func=cmd_network_rm)
    p.add_argument("names", nargs="+", metavar="NAME", help="network names")
    for verb, func, text in (("connect", cmd_network_connect, "attach a running container"),
                             ("disconnect", cmd_network_disconnect, "detach a container")):
        p = _sub(nsub, verb, text)
        p.set_defaults(func=func)
        p.add_argument("network", metavar="NETWORK", help="the network's name")
        p.add_argument("container", metavar="CONTAINER", help="the container, by id or name")
        add_format_flags(p, quiet=False)

    g = "checkpoints"
    cp = reg.add(g, "checkpoint", "manage checkpoints: create, ls, rm, export, import", None)
    csub = cp.add_subparsers(dest="checkpoint_cmd", metavar="SUBCOMMAND", required=True)
    p = _sub(csub, "create", "checkpoint a running container (CRIU)")
    p.set_defaults(func=cmd_checkpoint_create)
    p.add_argument("id", metavar="CONTAINER", help="the container, by id or name")
    p.add_argument("name", metavar="NAME", help="the checkpoint's name")
    p.add_argument("--exit", action="store_true", help="stop the container after the dump")
    p.add_argument("--leave-running", action="store_true", default=True,
                   help="keep it running (the default)")
    p.add_argument("--tcp", action="store_true", help="include established TCP connections")
    add_format_flags(p, quiet=False)
    p = _sub(csub, "ls", "a container's checkpoints", aliases=["list"])
    p.set_defaults(func=cmd_checkpoint_ls)
    p.add_argument("id", metavar="CONTAINER", help="the container, by id or name")
    add_format_flags(p)
    p = _sub(csub, "rm", "delete checkpoints", aliases=["remove"])
    p.set_defaults(func=cmd_checkpoint_rm)
    p.add_argument("id", metavar="CONTAINER", help="the container, by id or name")
    p.add_argument("names", nargs="+", metavar="NAME", help="checkpoint names")
    p = _sub(csub, "export", "write a checkpoint as one archive (for import "
                        "elsewhere)")
    p.set_defaults(func=cmd_checkpoint_export)
    p.add_argument("id", metavar="CONTAINER", help="the container, by id or name")
    p.add_argument("name", metavar="NAME", help="the checkpoint's name")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p = _sub(csub, "import", "restore an exported checkpoint as a new container")
    p.set_defaults(func=cmd_checkpoint_import)
    p.add_argument("id", metavar="NEW_ID", help="the new container's id")
    p.add_argument("input", nargs="?", metavar="FILE", help="the archive (default or -: "
                   "standard input)")
    p.add_argument("--bundle", help="the bundle's path on this host, if not the archive's")
    p.add_argument("--name", help="the new container's name")
    add_format_flags(p, quiet=False)
    p = reg.add(g, "restore", "restore a checkpoint, in place or as a clone (--as)",
                cmd_restore)
    p.add_argument("id", metavar="CONTAINER", help="the container, by id or name")
    p.add_argument("name", metavar="CHECKPOINT", help="the checkpoint's name")
    p.add_argument("--as", dest="as_id", metavar="NEW_ID", help="restore into a new container")
    p.add_argument("--lazy", action="store_true", help="pages arrive on fault")
    add_format_flags(p, quiet=False)
    p = reg.add(g, "migrate", "move a running container to another daemon (live)",
                cmd_migrate)
    p.add_argument("id", metavar="CONTAINER", help="the container, by id or name")
    p.add_argument("--to", required=True, metavar="http://HOST:PORT",
                   help="the target daemon")
    p.add_argument("--pre-copy", type=int, default=2, metavar="N",
                   help="memory rounds copied while it runs (default 2)")
    p.add_argument("--lazy", action="store_true", help="copy the rest on fault after resume")
    p.add_argument("--target-address", metavar="HOST:PORT|unix:PATH",
                   help="the target's API as this client reaches it: the migration is opened "
                        "there first and its one-time token handed to the source (needed "
                        "when the target does not let the source daemon in)")
    add_format_flags(p, quiet=False)

    g = "pools"
    pool = reg.add(g, "pool", "manage warm pools: create, ls, rm", None)
    psub = pool.add_subparsers(dest="pool_cmd", metavar="SUBCOMMAND", required=True)
    p = _sub(psub, "create", "keep N containers ready to claim")
    p.set_defaults(func=cmd_pool_create)
    p.add_argument("name", metavar="NAME", help="the pool's name")
    p.add_argument("bundle", nargs="?", metavar="BUNDLE", help="an OCI bundle directory")
    p.add_argument("--image", metavar="REF", help="an image instead of a bundle")
    p.add_argument("--checkpoint", help="members are restored from this checkpoint, frozen")
    p.add_argument("--size", type=int, default=1, help="how many to keep ready")
    add_format_flags(p, quiet=False)
    p = _sub(psub, "ls", "list pools", aliases=["list"])
    p.set_defaults(func=cmd_pool_ls)
    add_format_flags(p)
    p = _sub(psub, "rm", "remove pools and their idle members", aliases=["remove"])
    p.set_defaults(func=cmd_pool_rm)
    p.add_argument("names", nargs="+", metavar="NAME", help="pool names")
