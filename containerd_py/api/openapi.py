"""The OpenAPI 3 document of the whole API, served at `GET /openapi.json`.

Written by hand next to the routes (a test checks that every route in
`api.ROUTES`, gathered from the route modules, is here and nothing else is), so it says what each endpoint
does and which errors it answers with, not just its shape.
"""

from .. import __version__

ERROR = {"$ref": "#/components/schemas/Error"}
CONTAINER = {"$ref": "#/components/schemas/Container"}
MIGRATION = {"type": "object"}
PROCESS_SPEC = {"$ref": "#/components/schemas/ProcessSpec"}
IMAGE = {"$ref": "#/components/schemas/Image"}
POOL = {"$ref": "#/components/schemas/Pool"}


def _resp(code: int, desc: str, schema=None, media="application/json") -> tuple:
    body = {"description": desc}
    if schema is not None:
        body["content"] = {media: {"schema": schema}}
    return str(code), body


def _errors(*codes: int) -> list[tuple]:
    text = {
        400: "invalid id, name, query parameter or body (the body says which field)",
        404: "no such container (or process, bundle, checkpoint, image)",
        409: "wrong state for the operation (the body carries the current `status`), "
             "or the id/name is taken",
        413: "request body larger than 1 MiB",
        500: "the OCI runtime, CRIU or the shim failed; their own output is in `error`",
        501: "checkpoint/restore is not available on this host (CRIU)",
    }
    return [_resp(c, text[c], ERROR) for c in codes]


def _op(summary: str, responses: list[tuple], body=None, params=(), desc: str = "",
        tag: str = "containers") -> dict:
    op = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    if desc:
        op["description"] = desc
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = [
            {"name": n, "in": "query", "required": False, "schema": {"type": t},
             "description": d} for n, t, d in params]
    return op


def _closed(props: dict, required=()) -> dict:
    """An object whose unknown fields are a 400 (the daemon says which)."""
    return {**_obj(props, required), "additionalProperties": False}


def _obj(props: dict, required=()) -> dict:
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


S, I, B, N = ({"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"})
STR_LIST = {"type": "array", "items": S}
STR_MAP = {"type": "object", "additionalProperties": S}
# An OCI process as PUT /process and exec take it; unknown fields are a 400.
PROCESS_PROPS = {
    "args": {**STR_LIST, "minItems": 1}, "env": STR_LIST, "cwd": S, "terminal": B,
    "user": _obj({"uid": I, "gid": I, "additionalGids": {"type": "array", "items": I}}),
    "capabilities": {"type": "object"}, "noNewPrivileges": B, "apparmorProfile": S,
    "selinuxLabel": S}
TIMEOUT = ("timeout", "integer", "seconds between the stop signal and SIGKILL (default 10)")

PATHS = {
    "/state": {"get": _op("Every container and the machine", [
        _resp(200, "containers and machine", _obj({
            "containers": {"type": "array", "items": CONTAINER},
            "machine": _obj({"cpus": I, "memory": I})}))], tag="daemon")},
    "/events": {"get": _op(
        "Stream of events (newline-delimited JSON)",
        [_resp(200, "one event per line", {"$ref": "#/components/schemas/Event"},
               "application/x-ndjson"), *_errors(400)],
        params=[("since", "string", "replay the journal after this time (unix seconds or "
                 "RFC3339) before streaming live events"),
                ("follow", "boolean", "keep streaming after the replay (default true)")],
        desc="Types: start-container, start-process, exit, pause, resume, delete, oom, "
             "stop, start, restart, rename, update, exec, checkpoint, delete-checkpoint, "
             "image-load, image-tag, image-delete, commit, export-checkpoint, "
             "import-checkpoint, migrate-start, migrate-round, migrate-precopy-skipped, "
             "migrate-freeze, migrate-done, migrate-failed, migration-open, migrated-in, "
             "migration-aborted, create-network, delete-network, network-attach, "
             "network-detach.",
        tag="daemon")},
    "/ping": {"get": _op("Liveness", [_resp(200, "ok", _obj({"ok": B}))], tag="daemon")},
    "/version": {"get": _op("Daemon and API version", [
        _resp(200, "versions", _obj({"version": S, "apiVersion": S}))], tag="daemon")},
    "/info": {"get": _op("Host, runtimes, CRIU, counts by status, state dirs", [
        _resp(200, "information", _obj({"criu": _obj({
            "available": B, "path": S, "version": S,
            "check": _obj({"ok": B, "exitCode": I, "output": S}),
            "inetSockets": B, "reason": S, "warning": S})}))],
        desc="`criu`: the CRIU the daemon uses, its version and what `criu check` said; "
             "`inetSockets` is false when this CRIU cannot dump a process with an internet "
             "socket on this kernel (CRIU < 4.2 on Linux >= 6.16; `warning` says why).",
        tag="daemon")},
    "/openapi.json": {"get": _op("This document", [_resp(200, "OpenAPI 3 document",
                                                          {"type": "object"})], tag="daemon")},
    "/containers": {
        "get": _op("List containers", [
            _resp(200, "containers", {"type": "array", "items": CONTAINER}), *_errors(400)],
            params=[("status", "string", "created, running, paused or stopped"),
                    ("label", "string", "KEY or KEY=VALUE; repeat to AND")]),
        "delete": _op("Prune stopped containers", [
            _resp(200, "ids deleted", _obj({"deleted": {"type": "array", "items": S}})),
            *_errors(400)], params=[("status", "string", "must be `stopped`")]),
    },
    "/containers/{id}": {
        "post": _op("Create and start a container from an OCI bundle (or restore a "
                    "checkpoint, or claim a warm pool's member), with its settings", [
                        _resp(201, "the container, running", CONTAINER),
                        *_errors(400, 404, 409, 413, 500, 501)],
                    body={"$ref": "#/components/schemas/CreateRequest"},
                    desc="An unknown field is a 400 naming it (`field`) with the allowed "
                         "ones (`allowed`). A command the container does not have, a cwd "
                         "it cannot enter, empty args or an unknown user is a 400 with "
                         "the runtime's own words; a bind mount whose source is missing "
                         "is a 400 naming it (`source`). `init: true` on a host without "
                         "tini is a 501."),
        "get": _op("One container (by id or name)", [_resp(200, "container", CONTAINER),
                                                     *_errors(400, 404)]),
        "patch": _op("Pause/resume, signal init, or update resources", [
            _resp(200, "the container", CONTAINER), *_errors(400, 404, 409, 500)],
            body=_closed({"status": {"type": "string", "enum": ["paused", "running"]},
                          "signal": I, "resources": {"$ref": "#/components/schemas/Resources"},
                          "cpu": N, "memory": {"oneOf": [I, S]}})),
        "delete": _op("Delete a stopped container", [
            _resp(204, "deleted"), *_errors(400, 404, 409, 500)],
            params=[("force", "boolean", "kill a running container first")]),
    },
    "/containers/{id}/process": {"put": _op(
        "Add a process to a running container", [
            _resp(201, "the process; pid is the host pid", {"$ref": "#/components/schemas/Process"}),
            *_errors(400, 404, 409, 500)], body=PROCESS_SPEC)},
    "/containers/{id}/processes": {"put": _op(
        "Same as PUT /containers/{id}/process", [
            _resp(201, "the process", {"$ref": "#/components/schemas/Process"}),
            *_errors(400, 404, 409, 500)], body=PROCESS_SPEC)},
    "/containers/{id}/process/{pid}": {"post": _op(
        "Signal one process of the container", [
            _resp(200, "signalled", _obj({"pid": I, "signal": I})), *_errors(400, 404, 500)],
        body=_closed({"signal": I}, ["signal"]))},
    "/containers/{id}/process/{pid}/wait": {"get": _op(
        "Wait for a process to exit", [_resp(200, "exit status", _obj({"pid": I,
                                                                       "exitStatus": I})),
                                       *_errors(400, 404)])},
    "/containers/{id}/stop": {"post": _op(
        "Stop: the stop signal, then SIGKILL after the timeout; answers once stopped",
        [_resp(200, "the stopped container", CONTAINER), *_errors(400, 404, 409, 500)],
        params=[TIMEOUT])},
    "/containers/{id}/start": {"post": _op(
        "Start a stopped container again (from its bundle, or from a checkpoint)",
        [_resp(200, "the running container", CONTAINER), *_errors(400, 404, 409, 500, 501)],
        body={**_obj({"checkpoint": S, "lazy": B}), "additionalProperties": False})},
    "/containers/{id}/restart": {"post": _op(
        "Stop (if running) and start again", [_resp(200, "the running container", CONTAINER),
                                              *_errors(400, 404, 409, 500)], params=[TIMEOUT])},
    "/containers/{id}/reboot": {"post": _op(
        "Zun's name for restart", [_resp(200, "the running container", CONTAINER),
                                   *_errors(400, 404, 409, 500)], params=[TIMEOUT])},
    "/containers/{id}/kill": {"post": _op(
        "Send a signal to init (default SIGKILL)", [_resp(200, "the container", CONTAINER),
                                                    *_errors(400, 404, 409, 500)],
        body=_closed({"signal": I}))},
    "/containers/{id}/pause": {"post": _op(
        "Freeze every process (cgroup freezer)", [_resp(200, "the container", CONTAINER),
                                                  *_errors(400, 404, 409, 500)])},
    "/containers/{id}/unpause": {"post": _op(
        "Thaw a paused container", [_resp(200, "the container", CONTAINER),
                                    *_errors(400, 404, 409, 500)])},
    "/containers/{id}/wait": {"get": _op(
        "Block until the container stops", [
            _resp(200, "exit status", _obj({"id": S, "exitStatus": I, "exitedAt": S})),
            *_errors(400, 404)])},
    "/containers/{id}/exec": {"post": _op(
        "Run a command to completion and return its output (ExecSync)", [
            _resp(200, "result", _obj({"exitStatus": I, "stdout": S, "stderr": S,
                                       "truncated": B, "timedOut": B})),
            *_errors(400, 404, 409, 500)],
        body=_closed({**PROCESS_PROPS, "timeout": N, "outputLimit": I}, ["args"]))},
    "/containers/{id}/exec/ws": {"get": _op(
        "Interactive exec over a websocket", [
            _resp(101, "websocket: binary frames are the process's input and output"),
            *_errors(400, 404, 409, 500)],
        params=[("command", "string", "the command line (split like a shell would)"),
                ("terminal", "boolean", "allocate a pty (default true)"),
                ("w", "integer", "pty columns (default 80)"),
                ("h", "integer", "pty rows (default 24)"),
                ("env", "string", "K=V added to the environment (repeatable)"),
                ("cwd", "string", "working directory (absolute)"),
                ("user", "string", "UID[:GID] to run as")],
        desc="Like Docker Cloud's exec websocket. Text or binary frames from the client "
             "go to the process's stdin; its output comes back as binary frames. The "
             "socket closes with the process; a final text frame "
             '`{"exitStatus": N}` reports how it ended. With a pty, a first text frame '
             '`{"pid": N}` gives the process\'s pid, for a live '
             "`POST /containers/{id}/resize?pid=`.")},
    "/containers/{id}/attach": {"get": _op(
        "Attach to init's stdin/stdout over a websocket", [
            _resp(101, "websocket"), *_errors(400, 404, 409, 500)],
        params=[("logs", "boolean", "replay this run's output first (default false)"),
                ("stdin", "boolean", "connect init's stdin (default true)")],
        desc="Frames from the client are written to init's stdin; init's output "
             "(as logged) is sent as text frames, until the container stops. A terminal's "
             "output comes as it is written (a prompt without its newline), with CR LF "
             "line ends for the client's raw terminal.")},
    "/containers/{id}/logs": {"get": _op(
        "Captured output of the container's processes", [
            _resp(200, "JSON list (or ndjson / text when streaming)",
                  {"type": "array", "items": {"$ref": "#/components/schemas/LogEntry"}}),
            *_errors(400, 404)],
        params=[("follow", "boolean", "stream until the container stops"),
                ("tail", "string", "last N lines, or `all` (default)"),
                ("since", "string", "only lines after this time"),
                ("stdout", "boolean", "include stdout (default true)"),
                ("stderr", "boolean", "include stderr (default true)"),
                ("timestamps", "boolean", "prefix text lines with their time"),
                ("format", "string", "`json` (default without follow) or `text`")])},
    "/containers/{id}/stats": {"get": _op(
        "Resource usage (Podman's field set)", [
            _resp(200, "stats", {"$ref": "#/components/schemas/Stats"}),
            *_errors(400, 404, 409)],
        params=[("stream", "boolean", "one object per second until the container stops")])},
    "/containers/{id}/top": {"get": _op(
        "Processes of the container", [_resp(200, "processes", {"type": "object"}),
                                       *_errors(400, 404, 409, 500)])},
    "/containers/{id}/rename": {"post": _op(
        "Rename (the id stays)", [_resp(200, "the container", CONTAINER),
                                  *_errors(400, 404, 409)],
        params=[("name", "string", "the new name")])},
    "/containers/{id}/resize": {"post": _op(
        "Resize the pty of init (or of `pid`)", [_resp(200, "resized", _obj({"w": I, "h": I})),
                                                 *_errors(400, 404, 409, 500)],
        params=[("w", "integer", "columns"), ("h", "integer", "rows"),
                ("pid", "integer", "an exec'd process (or websocket exec) instead of init")])},
    "/containers/{id}/checkpoint/{name}": {
        "post": _op("Checkpoint the container into its bundle", [
            _resp(201, "checkpoint metadata", {"$ref": "#/components/schemas/Checkpoint"}),
            *_errors(400, 404, 409, 500, 501)],
            body=_obj({"exit": B, "tcp": B, "unixSockets": B, "shell": B}), tag="checkpoints"),
        "delete": _op("Delete a checkpoint", [_resp(204, "deleted"), *_errors(400, 404)],
                      tag="checkpoints"),
    },
    "/containers/{id}/checkpoint": {"get": _op(
        "Checkpoints of the container's bundle", [
            _resp(200, "checkpoints", {"type": "array",
                                       "items": {"$ref": "#/components/schemas/Checkpoint"}}),
            *_errors(400, 404)], tag="checkpoints")},
    "/containers/{id}/checkpoint/{name}/export": {"get": _op(
        "Export a checkpoint as one archive", [
            _resp(200, "a tar stream: manifest.json (checkpoint metadata, the container's "
                  "settings), config.json (the bundle's spec), checkpoint/ (CRIU images), "
                  "rootfs-diff/ (the container's overlay upper dir, if it has one)",
                  {"type": "string", "format": "binary"}, "application/x-tar"),
            *_errors(400, 404)], tag="checkpoints",
        desc="As podman's `container checkpoint --export`. Import it on another daemon "
             "with POST /checkpoints/import.")},
    "/containers/{id}/migrate": {"post": _op(
        "Move a running container to another daemon (live migration)", [
            _resp(200, "the migration's outcome: frozenMs, bytes, rounds, the target's "
                  "container; the container is gone here", MIGRATION),
            _resp(400, "invalid target, preCopy, lazy, or migration without token", ERROR),
            _resp(404, "no such container", ERROR),
            _resp(409, "not running, exec'd processes run, or it exited during the "
                  "migration", ERROR),
            _resp(500, "runc or CRIU failed (their output is in `error`); the container "
                  "runs on here", ERROR),
            _resp(501, "CRIU unavailable, or lazy (post-copy) migration, which this host "
                  "cannot do (CRIU's own error in `criuError`)", ERROR),
            _resp(502, "the target refused, failed or could not be reached (`step`, "
                  "`targetStatus`); the container runs on here", ERROR)],
        body=_obj({"target": S, "preCopy": I, "lazy": B, "lazyRestore": B, "migration": S,
                   "token": S}, ["target"]), tag="migration",
        desc="Pre-copy rounds (CRIU pre-dumps with memory change tracking, when the "
             "kernel has it) while it runs, then frozen: the final dump, streamed to the "
             "target, restored there; the source copy is deleted once the target runs it. "
             "`migration` and `token` come from the target's POST /migrations when this "
             "daemon may not call it itself. Progress: the container's `migration` field "
             "and migrate-* events.")},
    "/migrations": {"post": _op(
        "Target side: open a migration into this daemon (a one-time token)", [
            _resp(201, "the migration's id and token", _obj({"migration": S, "token": S,
                                                             "id": S})),
            *_errors(400), _resp(404, "the settings' bundle or image is not here", ERROR),
            _resp(409, "the id is in use here", ERROR), *_errors(501)],
        body=_obj({"id": S, "settings": {"type": "object"}}, ["id"]), tag="migration")},
    "/migrations/{migration}/rounds/{round}": {"put": _op(
        "Target side: receive a round of images (r1..r16, or final) as a tar body", [
            _resp(200, "received", _obj({"round": S, "members": I, "bytes": I})),
            _resp(400, "invalid round, or a corrupt/unsafe archive", ERROR),
            _resp(401, "wrong or missing token (Authorization: Bearer)", ERROR),
            _resp(404, "no such migration", ERROR),
            _resp(409, "that round was already received", ERROR)], tag="migration")},
    "/migrations/{migration}/page-server": {"post": _op(
        "Target side: start a one-session criu page-server for the final dump's memory", [
            _resp(201, "where the source's CRIU sends the pages", _obj({"address": S,
                                                                       "port": I})),
            _resp(400, "not over TCP", ERROR),
            _resp(401, "wrong or missing token", ERROR),
            _resp(404, "no such migration", ERROR),
            _resp(409, "already started", ERROR), *_errors(500)], tag="migration")},
    "/migrations/{migration}/restore": {"post": _op(
        "Target side: restore the received container; answers once it runs", [
            _resp(201, "the container, running", CONTAINER), *_errors(400),
            _resp(401, "wrong or missing token", ERROR),
            _resp(404, "no such migration, or its bundle/image is not here", ERROR),
            _resp(409, "no final dump yet, or the id is taken", ERROR), *_errors(500, 501)],
        body=_obj({"lazy": B}), tag="migration")},
    "/migrations/{migration}": {"delete": _op(
        "Target side: abort, removing what was received", [
            _resp(204, "aborted"), _resp(401, "wrong or missing token", ERROR),
            _resp(404, "no such migration", ERROR)], tag="migration")},
    "/checkpoints/import": {"post": _op(
        "Restore an exported checkpoint archive as a new container", [
            _resp(201, "the container, running", CONTAINER),
            _resp(400, "invalid id, or the archive is corrupt, truncated or unsafe "
                  "(nothing is created)", ERROR),
            _resp(404, "the bundle the archive names (or bundlePath) does not exist here",
                  ERROR),
            _resp(409, "the id is already in use", ERROR), *_errors(500, 501)],
        params=[("id", "string", "the new container's id (required)"),
                ("bundlePath", "string", "where the bundle is on this host, if not at "
                 "the archive's path"), ("name", "string", "the new container's name")],
        tag="checkpoints",
        desc="The body is the archive of GET /containers/{id}/checkpoint/{name}/export "
             "(application/x-tar). The container gets the archive's labels, runtime and "
             "restart policy, its filesystem changes as its overlay, and restores from "
             "the archive's CRIU images.")},
    "/containers/{id}/checkpoints": {"get": _op(
        "Same as GET /containers/{id}/checkpoint", [
            _resp(200, "checkpoints", {"type": "array",
                                       "items": {"$ref": "#/components/schemas/Checkpoint"}}),
            *_errors(400, 404)], tag="checkpoints")},
    "/images/load": {"post": _op(
        "Load the images of an archive (the request body)", [
            _resp(201, "the images stored", {"type": "array", "items": IMAGE}),
            *_errors(400, 500)], tag="images",
        desc="The body is a docker-archive (`docker save`, `podman save`) or an "
             "oci-archive tar, streamed (it is not limited to 1 MiB). Every digest is "
             "verified: a config, manifest or layer whose content does not match is a 400 "
             "and nothing of the archive is kept. Names are normalised "
             "(`busybox` is `docker.io/library/busybox:latest`); a name another image had "
             "moves to the loaded one.")},
    "/images": {"get": _op("List images", [
        _resp(200, "images", {"type": "array", "items": IMAGE})], tag="images")},
    "/images/{ref}": {
        "get": _op("One image, by name, name@digest, digest, id or short id", [
            _resp(200, "the image", IMAGE), *_errors(400, 404)], tag="images"),
        "delete": _op("Untag a name, or delete the image", [
            _resp(200, "what was untagged and deleted", _obj({
                "untagged": {"type": "array", "items": S}, "deleted": S})),
            *_errors(400, 404, 409)], tag="images",
            params=[("force", "boolean", "delete even while containers use it (their "
                     "layers stay until they are deleted)")],
            desc="A name of an image that has other names only loses that name; an id, a "
                 "digest or the last name deletes the image, and the layer snapshots no "
                 "other image or container uses. 409 while containers use it."),
    },
    "/images/{ref}/tag": {"post": _op("Give an image another name", [
        _resp(201, "the image", IMAGE), *_errors(400, 404)],
        body=_obj({"name": S}, ["name"]), tag="images")},
    "/containers/{id}/commit": {"post": _op(
        "A new image: the container's image plus its writable layer on top", [
            _resp(201, "the new image", IMAGE), *_errors(400, 404, 409, 500)],
        body=_obj({"name": S, "author": S, "message": S}), tag="images")},
    "/containers/{id}/export": {"get": _op(
        "The container's filesystem as a tar", [
            _resp(200, "a tar stream", {"type": "string", "format": "binary"},
                  "application/x-tar"), *_errors(400, 404)], tag="images")},
    "/containers/{id}/changes": {"get": _op(
        "Paths the container added (A), changed (C) or deleted (D) over its image", [
            _resp(200, "changes", {"type": "array", "items": _obj({
                "path": S, "kind": {"type": "string", "enum": ["A", "C", "D"]}})}),
            *_errors(400, 404)], tag="images")},
    "/pools": {"get": _op("Warm pools and how many members each has ready", [
        _resp(200, "pools", {"type": "array", "items": POOL})], tag="pools")},
    "/pools/{name}": {
        "post": _op(
            "Keep `size` containers of a bundle or image (or of a checkpoint) ready to be claimed",
            [_resp(201, "the pool (members are made in the background)", POOL),
             *_errors(400, 404, 409, 413, 501)],
            body=_obj({"bundlePath": S, "image": {"type": "string", "description":
                                                  "an image of the store instead"},
                       "checkpoint": S, "size": I,
                       "runtime": {"type": "string", "enum": ["runc", "crun"]}}, ["size"]),
            desc="A bundle pool's members have had the runtime's create (their init waits "
                 "to be started); a checkpoint pool's are restored, each on an overlay of "
                 "its own, and frozen. Claim one with POST /containers/{id} "
                 '{"pool": NAME}; an empty pool starts one the normal way.', tag="pools"),
        "get": _op("One pool", [_resp(200, "the pool", POOL), *_errors(400, 404)],
                   tag="pools"),
        "delete": _op("Delete a pool and its idle members (claimed containers stay)", [
            _resp(204, "deleted"), *_errors(400, 404)], tag="pools"),
    },
}

# -- networks (containerd_py/api/networks.py) --------------------------------
NETWORK = {"$ref": "#/components/schemas/Network"}
ATTACHMENT = {"$ref": "#/components/schemas/NetworkAttachment"}
_NET_ERRORS = {
    400: "invalid network name, bad CIDR or gateway, or a subnet overlapping another "
         "network's or a host interface's",
    404: "no such network (or container)",
    409: "the network exists, or is in use by containers (listed in `containers`)",
}


def _net_errors(*codes: int) -> list[tuple]:
    return [_resp(c, _NET_ERRORS[c], ERROR) if c in _NET_ERRORS else _errors(c)[0]
            for c in codes]


PATHS.update({
    "/networks": {
        "get": _op("List networks", [_resp(200, "networks", {"type": "array",
                                                              "items": NETWORK})],
                   tag="networks"),
        "post": _op("Create a bridge network (a CNI conflist under the data dir)", [
            _resp(201, "the network", NETWORK), *_net_errors(400, 409, 413)],
            body=_obj({"name": S, "subnet": S, "gateway": S, "internal": B}, ["name"]),
            desc="subnet: default the first free 10.89.N.0/24. internal: no masquerade and "
                 "no default route out of the container.",
            tag="networks"),
    },
    "/networks/{name}": {
        "get": _op("One network, with the containers on it", [
            _resp(200, "the network", NETWORK), *_net_errors(400, 404)], tag="networks"),
        "delete": _op("Delete a network no container uses", [
            _resp(204, "deleted"), *_net_errors(400, 404, 409, 500)], tag="networks"),
    },
    "/containers/{id}/networks": {"get": _op(
        "A running container's networks, and its interfaces as seen inside its namespace "
        "(addresses, counters)", [
            _resp(200, "networks and interfaces", _obj({
                "id": S, "networks": {"type": "object", "additionalProperties": ATTACHMENT},
                "interfaces": {"type": "array", "items": {"$ref": "#/components/schemas/Interface"}}})),
            *_errors(400, 404, 409)], tag="networks")},
    "/containers/{id}/networks/{name}": {
        "post": _op("Attach a running container to a network (a new interface appears)", [
            _resp(201, "the new interface", ATTACHMENT), *_errors(400, 404, 409, 500)],
            tag="networks"),
        "delete": _op("Detach a running container from a network", [
            _resp(204, "detached"), *_errors(400, 404, 409, 500)], tag="networks"),
    },
    "/containers/{id}/network_attach": {"post": _op(
        "Zun's attach: POST /containers/{id}/networks/{name}", [
            _resp(200, "the new interface", ATTACHMENT), *_errors(400, 404, 409, 500)],
        params=[("network", "string", "the network's name")], tag="networks")},
    "/containers/{id}/network_detach": {"post": _op(
        "Zun's detach: DELETE /containers/{id}/networks/{name}", [
            _resp(204, "detached"), *_errors(400, 404, 409, 500)],
        params=[("network", "string", "the network's name")], tag="networks")},
})

SCHEMAS = {
    "Error": _obj({"error": S}, ["error"]),
    "ProcessSpec": _closed(PROCESS_PROPS, ["args"]),
    "Process": _obj({"pid": I, "args": {"type": "array", "items": S},
                     "env": {"type": "array", "items": S}, "cwd": S, "terminal": B,
                     "user": {"type": "object"}}),
    "Container": _obj({
        "id": S, "name": S, "bundlePath": S, "runtime": S,
        "state": _obj({"status": {"type": "string",
                                  "enum": ["created", "running", "paused", "stopped"]}}),
        "status": S, "pid": I,
        "processes": {"type": "array", "items": {"$ref": "#/components/schemas/Process"}},
        "labels": {"type": "object", "additionalProperties": S}, "created": S,
        "startedAt": S, "exitStatus": I, "exitedAt": S, "oomKilled": B,
        "restartPolicy": {"type": "object"}, "restartCount": I, "autoRemove": B,
        "checkpoint": S, "resources": {"type": "object"}, "pool": S, "runtimeId": S,
        "migration": {"type": "object"},
        # The settings in effect (bundle or image, with the create settings).
        "args": STR_LIST, "env": STR_LIST, "cwd": S,
        "user": _obj({"uid": I, "gid": I, "additionalGids": {"type": "array", "items": I}}),
        "hostname": S, "terminal": B, "readonlyRootfs": B,
        "mounts": {"type": "array", "items": {"$ref": "#/components/schemas/Mount"}},
        "annotations": STR_MAP, "stopSignal": S, "init": B,
        "image": _obj({"ref": S, "id": S}),
        "networks": {"type": "object", "additionalProperties": ATTACHMENT},
        "requestedNetworks": {"type": "array", "items": S},
        "ports": {"type": "array", "items": {"$ref": "#/components/schemas/Port"}},
        "addresses": {"type": "object", "description": "Zun's form of `networks`"}}),
    "CreateRequest": {**_obj({
        "bundlePath": S, "image": {"type": "string", "description": "an image of the "
                                   "store instead of bundlePath"},
        "checkpoint": S, "lazy": B, "labels": STR_MAP,
        "pool": {"type": "string", "description": "claim a member of this warm pool "
                 "(then only name and labels may be given)"},
        "runtime": {"type": "string", "enum": ["runc", "crun"]}, "name": S,
        "autoRemove": B, "overlay": B,
        "start": {"type": "boolean", "description": "false: only create it (status "
                  "`created`); `POST /containers/{id}/start` runs it (default true)"},
        "restartPolicy": {**_obj({"name": {"type": "string",
                                           "enum": ["no", "on-failure", "always"]},
                                  "maximumRetryCount": I}), "additionalProperties": False},
        # Settings, over the bundle's config.json (in the daemon's copy).
        "args": {**STR_LIST, "minItems": 1, "description": "the command (replaces Cmd)"},
        "entrypoint": {**STR_LIST, "description": "replaces the Entrypoint; [] clears it"},
        "env": {**STR_LIST, "description": "KEY=VALUE, merged over the bundle's"},
        "cwd": S, "user": {"oneOf": [S, I], "description": "uid[:gid] or name[:group], "
                           "names from the container's /etc/passwd and /etc/group"},
        "hostname": S, "terminal": B, "readonlyRootfs": B,
        "mounts": {"type": "array", "items": {"oneOf": [
            {"$ref": "#/components/schemas/Mount"},
            {"type": "string", "description": "type=bind,src=/srv,dst=/srv[,ro], "
                                              "type=tmpfs,dst=/run[,tmpfs-size=64m] or "
                                              "SRC:DST[:ro]"}]}},
        "resources": {"$ref": "#/components/schemas/Resources"},
        "annotations": STR_MAP,
        "stopSignal": {"oneOf": [S, I], "description": "SIGTERM, TERM or 15"},
        "init": {"type": "boolean", "description": "tini as PID 1 (docker run --init)"},
        # Zun's names.
        "command": {"oneOf": [S, STR_LIST], "description": "Zun: args, or a command line"},
        "environment": STR_MAP, "workdir": S, "cpu": N, "memory": {"oneOf": [I, S]},
        "interactive": {"type": "boolean", "description": "Zun: terminal"},
        # Networks (network/).
        "networks": {"type": "array", "items": S,
                     "description": '[] loopback only, ["host"] the host\'s namespace'},
        "nets": {"type": "array", "items": _obj({"network": S}), "description": "Zun: networks"},
        "ports": {"type": "array", "items": {"$ref": "#/components/schemas/Port"}},
    }), "additionalProperties": False},
    "Mount": {**_obj({"destination": S, "type": {"type": "string", "enum": ["bind", "tmpfs"]},
                      "source": S, "options": STR_LIST}, ["destination"]),
              "additionalProperties": False},
    "Resources": _obj({"memory": {"oneOf": [I, S]}, "cpus": N, "cpuShares": I,
                       "cpuQuota": I, "cpuPeriod": I, "pidsLimit": I}),
    "Event": _obj({"type": S, "id": S, "pid": I, "status": I, "timestamp": S, "ns": I}),
    "LogEntry": _obj({"timestamp": S, "stream": S, "line": S}),
    "Stats": {"type": "object"},
    "Network": _obj({"name": S, "subnet": S, "gateway": S, "internal": B, "bridge": S,
                     "driver": S, "containers": {"type": "object"}}),
    "NetworkAttachment": _obj({"network": S, "interface": S, "ip": S, "prefixLen": I,
                               "gateway": S, "mac": S}),
    "Interface": _obj({"name": S, "mac": S, "up": B, "mtu": I,
                       "addresses": {"type": "array", "items": S}, "rxBytes": I, "txBytes": I,
                       "rxPackets": I, "txPackets": I}),
    "Port": _obj({"hostPort": I, "containerPort": I,
                  "protocol": {"type": "string", "enum": ["tcp", "udp"]},
                  "hostIp": S}, ["containerPort"]),
    "Image": _obj({"id": S, "shortId": S, "names": {"type": "array", "items": S},
                   "digest": S, "size": I, "created": S, "loaded": S,
                   "layers": {"type": "array", "items": S}, "architecture": S, "os": S,
                   "config": {"type": "object"}}),
    "Pool": _obj({"name": S, "bundlePath": S, "image": S, "checkpoint": S, "size": I, "runtime": S,
                  "ready": I, "starting": I, "claimed": I, "fallbacks": I, "created": S,
                  "lastError": S}),
    "Checkpoint": _obj({"name": S, "exit": B, "tcp": B, "unixSockets": B, "shell": B,
                        "created": S, "size": I, "container": S,
                        "settings": {"type": "object", "description": "the create settings "
                                     "of its container; a clone without its own gets these"}}),
}


def document() -> dict:
    paths = {}
    for path, ops in PATHS.items():
        params = [{"name": n, "in": "path", "required": True,
                   "schema": {"type": "integer" if n == "pid" else "string"}}
                  for n in ("id", "pid", "name", "ref", "migration", "round")
                  if "{" + n + "}" in path]
        item = dict(ops)
        if params:
            item["parameters"] = params
        paths[path] = item
    return {
        "openapi": "3.0.3",
        "info": {"title": "containerd-py", "version": __version__,
                 "description": "The containerd REST API v1, extended with the container "
                                "lifecycle of Zun, Podman and Docker Cloud."},
        "servers": [{"url": "http://127.0.0.1:8888"}],
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
