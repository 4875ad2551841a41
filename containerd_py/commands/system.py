"""System verbs: info, version, events, and bash completion."""

import json

from .. import __version__
from .output import add_format_flags, table


def cmd_info(cl, args) -> int:
    info = cl.info()
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    _print_tree(info)
    return 0


def _print_tree(obj, indent: int = 0) -> None:
    for key, value in obj.items():
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        elif isinstance(value, list):
            print(" " * indent + f"{key}: " + ", ".join(
                json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value))
        else:
            print(" " * indent + f"{key}: {value}")


def cmd_version(cl, args) -> int:
    server = cl.request("GET", "/version")
    if args.format == "json":
        print(json.dumps({"client": {"version": __version__}, "server": server}, indent=2))
        return 0
    table(["", "VERSION", "API"], [["client", __version__, "v1"],
                                   ["server", server.get("version"), server.get("apiVersion")]])
    return 0


def cmd_events(cl, args) -> int:
    query = {}
    if args.since:
        query["since"] = args.since
    if args.no_follow:
        query["follow"] = "false"
    wanted = {}
    for f in args.filter or []:
        key, _, value = f.partition("=")
        wanted.setdefault({"container": "id", "event": "type"}.get(key, key), set()).add(value)
    try:
        for line in cl.stream("/events", query or None):
            if not line:
                continue
            ev = json.loads(line)
            if any(str(ev.get(k)) not in vs for k, vs in wanted.items()):
                continue
            if args.format == "json":
                print(json.dumps(ev), flush=True)
            else:
                extra = " ".join(f"{k}={v}" for k, v in ev.items()
                                 if k not in ("type", "id", "timestamp", "ns"))
                print(f"{ev.get('timestamp', '')} {ev.get('type')} {ev.get('id', '')} {extra}"
                      .rstrip(), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


BASH = r'''# bash completion for containerd-py: eval "$(containerd-py completion bash)"
_containerd_py() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --address) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "%(commands)s" -- "$cur"))
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(containerd-py "$cmd" --help 2>/dev/null |
            grep -oE -- '--?[a-z][a-z-]*' | sort -u)" -- "$cur"))
        return
    fi
    local kind=containers
    case $cmd in
        rmi|tag) kind=images ;;
        network) kind=networks ;;
        pool) kind=pools ;;
        images|load|info|version|events|prune|completion|daemon) return ;;
    esac
    COMPREPLY=($(compgen -W "$(containerd-py __complete $kind 2>/dev/null)" -- "$cur"))
}
complete -o default -F _containerd_py containerd-py
'''


def cmd_completion(cl, args, commands=()) -> int:
    print(BASH % {"commands": " ".join(sorted(commands))}, end="")
    return 0


def cmd_complete(cl, args) -> int:
    """Names for the shell to offer; never an error on the user's screen."""
    try:
        if args.kind == "containers":
            for c in cl.list():
                print(c["id"])
                if c.get("name") and c["name"] != c["id"]:
                    print(c["name"])
        elif args.kind == "images":
            for img in cl.request("GET", "/images"):
                for n in img.get("names", []):
                    print(n)
        elif args.kind == "networks":
            for n in cl.request("GET", "/networks"):
                print(n["name"])
        elif args.kind == "pools":
            for p in cl.request("GET", "/pools"):
                print(p["name"])
    except Exception:
        pass
    return 0


def register(reg) -> None:
    g = "system"
    p = reg.add(g, "info", "the host, runtimes, CRIU and counts", cmd_info)
    add_format_flags(p, quiet=False)
    p = reg.add(g, "version", "client and daemon versions", cmd_version)
    add_format_flags(p, quiet=False)
    p = reg.add(g, "events", "stream events (ctrl-c ends)", cmd_events)
    p.add_argument("--since", help="replay from this time first (RFC 3339 or unix seconds; "
                   "0 for the whole journal)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="container=ID or event=TYPE (repeatable)")
    p.add_argument("--no-follow", action="store_true", help="stop after the replay")
    add_format_flags(p, quiet=False)
    p = reg.add(g, "completion", "print a bash completion script "
                '(eval "$(containerd-py completion bash)")',
                lambda cl, a: cmd_completion(cl, a, reg.names()), offline=True)
    p.add_argument("shell", choices=["bash"], help="the shell to complete for")
    p = reg.sub.add_parser("__complete")
    p.set_defaults(func=cmd_complete, offline=False)
    p.add_argument("kind", choices=["containers", "images", "networks", "pools"])
