"""The OpenAPI 3 document of the whole API, served at `GET /openapi.json`.

Written by hand next to the routes (a test checks that every route in
`api.ROUTES`, gathered from the route modules, is here and nothing else is), so
it says what each endpoint does and which errors it answers with, not just its
shape. It is the contract, not a description of it: `api.schema` validates
every request's path, query and body against it before a handler runs, so
what the document allows is what the daemon accepts. docs/api.md is generated
from it (`python -m containerd_py.api.openapi --markdown > docs/api.md`).

Extensions the tests read: `x-blocks` (the operation waits for something to
happen, e.g. a container to stop) and `x-streams` on a parameter (true makes
the answer a stream that lasts as long as the container).
"""

import re

from .. import __version__
from ..states import Status
from ..network.networks import NAME_RE as NETWORK_NAME_RE
from ..pools import MAX_SIZE as POOL_MAX_SIZE
from ..validation import ID_RE, SIGNAL_NAMES, SIGNALS

ERROR = {"$ref": "#/components/schemas/Error"}
CONTAINER = {"$ref": "#/components/schemas/Container"}
MIGRATION = {"type": "object"}
PROCESS_SPEC = {"$ref": "#/components/schemas/ProcessSpec"}
IMAGE = {"$ref": "#/components/schemas/Image"}
SIGNAL = {"$ref": "#/components/schemas/Signal"}
POOL = {"$ref": "#/components/schemas/Pool"}

ERROR_TEXT = {
    400: "invalid id, name, query parameter or body (the body says which field)",
    403: "the caller is not root nor a member of the daemon's --group",
    404: "no such container (or process, bundle, checkpoint, image)",
    409: "wrong state for the operation (the body carries the current `status`), "
         "or the id/name is taken",
    413: "request body larger than 1 MiB",
    500: "the OCI runtime, CRIU or the shim failed; their own output is in `error`",
    501: "checkpoint/restore is not available on this host (CRIU)",
    507: "the daemon's state or data filesystem is full: nothing new is started",
}


def _resp(code: int, desc: str, schema=None, media="application/json") -> tuple:
    body = {"description": desc}
    if schema is not None:
        media_types = media if isinstance(media, (list, tuple)) else [media]
        body["content"] = {m: {"schema": schema} for m in media_types}
    return str(code), body


def _errors(*codes: int) -> list[tuple]:
    return [_resp(c, ERROR_TEXT[c], ERROR) for c in codes]


def _param(spec, where: str = "query") -> dict:
    """A parameter from (name, type-or-schema, description[, required])."""
    name, schema, desc, *rest = spec
    schema = {"type": schema} if isinstance(schema, str) else dict(schema)
    out = {"name": name, "in": where, "required": bool(rest and rest[0]),
           "schema": schema, "description": desc}
    if schema.get("type") == "array":
        out.update(style="form", explode=True)
    if schema.pop("x-streams", False):
        out["x-streams"] = True
    return out


def _op(summary: str, responses: list[tuple], body=None, params=(), desc: str = "",
        tag: str = "containers", body_required: bool = True, blocks: bool = False,
        body_media: str = "application/json") -> dict:
    op = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    if desc:
        op["description"] = desc
    if body is not None:
        op["requestBody"] = {"required": body_required,
                             "content": {body_media: {"schema": body}}}
    if params:
        op["parameters"] = [p if isinstance(p, dict) else _param(p) for p in params]
    if blocks:
        op["x-blocks"] = True
    return op


def _closed(props: dict, required=(), **more) -> dict:
    """An object whose unknown fields are a 400 (the daemon says which)."""
    return _obj(props, required, closed=True, **more)


def _obj(props: dict, required=(), closed: bool = False, **more) -> dict:
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    out.update(more)
    return out


S, I, B, N = ({"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"})
STR_LIST = {"type": "array", "items": S}
STR_MAP = {"type": "object", "additionalProperties": {
    "type": "string", "x-error": "must be an object of strings"}}
ID = {"type": "string", "pattern": ID_RE.pattern}
NAT = {"type": "integer", "minimum": 0}
# Unix seconds or RFC3339 (what events.parse_timestamp reads).
TIMESTAMP = {"type": "string", "pattern":
             r"^([0-9]{1,11}(\.[0-9]{1,9})?|(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
             r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
             r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]))$"}
TIMEOUT = ("timeout", {"type": "integer", "minimum": 0, "maximum": 3600},
           "seconds between the stop signal and SIGKILL (default 10)")
NO_NUL = r"^[^\u0000]*$"
# Keep the runtime's rules on a body's names and values; a pattern it breaks
# is a 400 here rather than the runtime's failure later.
ENV_ITEM = {"type": "string", "pattern": r"^[^=\u0000]+=[^\u0000]*$", "maxLength": 32768,
            "x-error": "must be KEY=VALUE"}
ABS_PATH = {"type": "string", "pattern": r"^/[^\u0000]*$", "maxLength": 4096,
            "x-error": "must be an absolute path"}
BOOL_Q = {"type": "boolean"}
PORT_NUMBER = {"type": "integer", "minimum": 1, "maximum": 65535}
NETWORK_NAME = {"type": "string", "pattern": NETWORK_NAME_RE.pattern}
IPV4 = {"type": "string", "pattern": r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
                                     r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$"}
CIDR4 = {"type": "string", "pattern": IPV4["pattern"][:-1] + "/([0-9]|[12][0-9]|3[0-2])$"}
# At least 6 MiB (Docker's minimum, below which runc's init cannot start): 6-999999 M
# or 1-9999 G.
MEMORY_PATTERN = ("^(([6-9]|[1-9][0-9]{1,5})[mM]|[1-9][0-9]{0,3}[gG])(i?[bB])?$")
_COMPONENT = "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*"
_LABEL = "[a-z0-9]([a-z0-9-]*[a-z0-9])?"
# What images.refs accepts, narrowed to the forms that need no second look
# (a lowercase domain with a dot, or localhost): a name, or an id.
IMAGE_REF = {"type": "string", "maxLength": 255, "pattern":
             f"^((sha256:)?[a-f0-9]{{4,64}}|(({_LABEL}(\\.{_LABEL})+|localhost)(:[0-9]{{1,5}})?/)?"
             f"{_COMPONENT}(/{_COMPONENT})*(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
             f"(@sha256:[a-f0-9]{{64}})?)$"}
HOSTNAME = {"type": "string", "maxLength": 253,
            "pattern": "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       "(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
            "x-error": "letters, digits, '-' and '.' (RFC 1123)"}
USER_SPEC = {"type": "string", "maxLength": 256,
             "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$"}

# Schemas of the path parameters, by name; a path with another parameter
# gets a plain string unless its name is added here.
PATH_PARAMS = {
    "id": (ID, "container id (or name)"),
    "pid": ({"type": "integer", "minimum": 1, "maximum": 4194304}, "host pid of the process"),
    "name": (ID, "checkpoint name"),
    "ref": (IMAGE_REF, "image name, name@digest, digest, id or short id"),
    "migration": (ID, "migration id (from POST /migrations)"),
    "round": ({"type": "string", "pattern": "^(r([1-9]|1[0-6])|final)$"},
              "pre-copy round r1..r16, or final"),
}


def _streams(schema: dict) -> dict:
    return {**schema, "x-streams": True}


CONTAINER_ERRORS = (404, 409, 500)

PATHS = {
    "/state": {"get": _op("Every container and the machine", [
        _resp(200, "containers and machine", _obj({
            "containers": {"type": "array", "items": CONTAINER},
            "machine": _obj({"cpus": I, "memory": I})}, ["containers", "machine"]))],
        tag="daemon")},
    "/events": {"get": _op(
        "Stream of events (newline-delimited JSON)",
        [_resp(200, "one event per line", {"$ref": "#/components/schemas/Event"},
               "application/x-ndjson")],
        params=[("since", TIMESTAMP, "replay the journal after this time (unix seconds or "
                 "RFC3339) before streaming live events"),
                ("follow", _streams({"type": "boolean", "default": True}),
                 "keep streaming after the replay (default true)")],
        desc="Types: start-container, start-process, exit, pause, resume, delete, oom, "
             "stop, start, restart, rename, update, exec, checkpoint, delete-checkpoint, "
             "image-load, image-tag, image-delete, commit, export-checkpoint, "
             "import-checkpoint, migrate-start, migrate-round, migrate-precopy-skipped, "
             "migrate-freeze, migrate-done, migrate-failed, migration-open, migrated-in, "
             "migration-aborted, create-network, delete-network, network-attach, "
             "network-detach.",
        tag="daemon")},
    "/ping": {"get": _op("Liveness", [_resp(200, "ok", _obj({"ok": B}, ["ok"]))],
                         tag="daemon")},
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
            _resp(200, "containers", {"type": "array", "items": CONTAINER})],
            params=[("status", {"type": "string", "enum": [s.value for s in Status]},
                     "only containers in this state"),
                    ("label", {"type": "array", "items": S},
                     "KEY or KEY=VALUE; repeat to AND")]),
        "delete": _op("Prune stopped containers", [
            _resp(200, "ids deleted", _obj({"deleted": {"type": "array", "items": S}},
                                           ["deleted"]))],
            params=[("status", {"type": "string", "enum": ["stopped"]},
                     "must be `stopped`", True),
                    ("label", {"type": "array", "items": S},
                     "only those with these labels (KEY or KEY=VALUE)")]),
    },
    "/containers/{id}": {
        "post": _op("Create and start a container from an OCI bundle (or restore a "
                    "checkpoint, or claim a warm pool's member), with its settings", [
                        _resp(201, "the container, running", CONTAINER),
                        *_errors(409, 413, 500, 501, 507)],
                    body={"$ref": "#/components/schemas/CreateRequest"},
                    desc="An unknown field is a 400 naming it (`field`) with the allowed "
                         "ones (`allowed`). A command the container does not have, a cwd "
                         "it cannot enter, empty args or an unknown user is a 400 with "
                         "the runtime's own words; a bind mount whose source is missing "
                         "is a 400 naming it (`source`). `init: true` on a host without "
                         "tini is a 501. A bundle path that does not exist, or whose "
                         "root.path does not, is a 404; a config.json that is not a "
                         "runnable OCI spec (ociVersion not a string, args not a "
                         "non-empty list of strings) is a 400 naming the field."),
        "get": _op("One container (by id or name)", [_resp(200, "container", CONTAINER)]),
        "patch": _op("Pause/resume, signal init, or update resources", [
            _resp(200, "the container", CONTAINER), *_errors(*CONTAINER_ERRORS)],
            body=_obj({"status": {"type": "string", "enum": ["paused", "running"]},
                       "signal": SIGNAL, "resources": {"$ref": "#/components/schemas/Resources"},
                       "cpu": {"$ref": "#/components/schemas/Cpus"},
                       "memory": {"$ref": "#/components/schemas/Memory"}},
                      closed=True, minProperties=1)),
        "delete": _op("Delete a stopped container", [
            _resp(204, "deleted"), *_errors(*CONTAINER_ERRORS)],
            params=[("force", BOOL_Q, "kill a running container first")]),
    },
    "/containers/{id}/process": {"put": _op(
        "Add a process to a running container", [
            _resp(201, "the process; pid is the host pid", {"$ref": "#/components/schemas/Process"}),
            *_errors(*CONTAINER_ERRORS)], body=PROCESS_SPEC)},
    "/containers/{id}/processes": {"put": _op(
        "Same as PUT /containers/{id}/process", [
            _resp(201, "the process", {"$ref": "#/components/schemas/Process"}),
            *_errors(*CONTAINER_ERRORS)], body=PROCESS_SPEC)},
    "/containers/{id}/process/{pid}": {"post": _op(
        "Signal one process of the container", [
            _resp(200, "signalled", _obj({"pid": I, "signal": I}, ["pid", "signal"])),
            *_errors(*CONTAINER_ERRORS)],
        body=_obj({"signal": SIGNAL}, ["signal"], closed=True))},
    "/containers/{id}/process/{pid}/wait": {"get": _op(
        "Wait for a process to exit", [_resp(200, "exit status", _obj({"pid": I,
                                                                       "exitStatus": I}))],
        blocks=True)},
    "/containers/{id}/stop": {"post": _op(
        "Stop: the stop signal, then SIGKILL after the timeout; answers once stopped",
        [_resp(200, "the stopped container", CONTAINER), *_errors(*CONTAINER_ERRORS)],
        params=[TIMEOUT])},
    "/containers/{id}/start": {"post": _op(
        "Start a stopped container again (from its bundle, or from a checkpoint)",
        [_resp(200, "the running container", CONTAINER), *_errors(*CONTAINER_ERRORS, 501, 507)],
        body=_obj({"checkpoint": ID, "lazy": B}, closed=True,
                  anyOf=[{"properties": {"lazy": {"enum": [False]}}},
                         {"required": ["checkpoint"]}]),
        body_required=False, desc="`lazy` restores a `checkpoint`: it needs one.")},
    "/containers/{id}/restart": {"post": _op(
        "Stop (if running) and start again", [_resp(200, "the running container", CONTAINER),
                                              *_errors(*CONTAINER_ERRORS, 507)],
        params=[TIMEOUT])},
    "/containers/{id}/reboot": {"post": _op(
        "Zun's name for restart", [_resp(200, "the running container", CONTAINER),
                                   *_errors(*CONTAINER_ERRORS, 507)], params=[TIMEOUT])},
    "/containers/{id}/kill": {"post": _op(
        "Send a signal to init (default SIGKILL)", [_resp(200, "the container", CONTAINER),
                                                    *_errors(*CONTAINER_ERRORS)],
        body=_obj({"signal": SIGNAL}, closed=True), body_required=False)},
    "/containers/{id}/pause": {"post": _op(
        "Freeze every process (cgroup freezer)", [_resp(200, "the container", CONTAINER),
                                                  *_errors(*CONTAINER_ERRORS)])},
    "/containers/{id}/unpause": {"post": _op(
        "Thaw a paused container", [_resp(200, "the container", CONTAINER),
                                    *_errors(*CONTAINER_ERRORS)])},
    "/containers/{id}/wait": {"get": _op(
        "Block until the container stops", [
            _resp(200, "exit status", _obj({"id": S, "exitStatus": I, "exitedAt": S}))],
        blocks=True)},
    "/containers/{id}/exec": {"post": _op(
        "Run a command to completion and return its output (ExecSync)", [
            _resp(200, "result", _obj({"exitStatus": I, "stdout": S, "stderr": S,
                                       "truncated": B, "timedOut": B})),
            *_errors(*CONTAINER_ERRORS)],
        body={"$ref": "#/components/schemas/ExecRequest"})},
    "/containers/{id}/exec/ws": {"get": _op(
        "Interactive exec over a websocket", [
            _resp(101, "websocket: binary frames are the process's input and output"),
            *_errors(*CONTAINER_ERRORS)],
        params=[("command", {"type": "string", "minLength": 1, "maxLength": 65536},
                 "the command line (split like a shell would)", True),
                ("terminal", BOOL_Q, "allocate a pty (default true)"),
                ("w", {"type": "integer", "minimum": 1, "maximum": 65535},
                 "pty columns (default 80)"),
                ("h", {"type": "integer", "minimum": 1, "maximum": 65535},
                 "pty rows (default 24)"),
                ("env", {"type": "array", "items": ENV_ITEM},
                 "K=V added to the environment (repeatable)"),
                ("cwd", ABS_PATH, "working directory (absolute)"),
                ("user", {"type": "string", "pattern": "^[0-9]{1,10}(:[0-9]{1,10})?$"},
                 "UID[:GID] to run as")],
        desc="Like Docker Cloud's exec websocket. Text or binary frames from the client "
             "go to the process's stdin; its output comes back as binary frames. The "
             "socket closes with the process; a final text frame "
             '`{"exitStatus": N}` reports how it ended. With a pty, a first text frame '
             '`{"pid": N}` gives the process\'s pid, for a live '
             "`POST /containers/{id}/resize?pid=`.")},
    "/containers/{id}/attach": {"get": _op(
        "Attach to init's stdin/stdout over a websocket", [
            _resp(101, "websocket"), *_errors(*CONTAINER_ERRORS)],
        params=[("logs", BOOL_Q, "replay this run's output first (default false)"),
                ("stdin", BOOL_Q, "connect init's stdin (default true)")],
        desc="Frames from the client are written to init's stdin; init's output "
             "(as logged) is sent as text frames, until the container stops. A terminal's "
             "output comes as it is written (a prompt without its newline), with CR LF "
             "line ends for the client's raw terminal.")},
    "/containers/{id}/logs": {"get": _op(
        "Captured output of the container's processes", [
            _resp(200, "JSON list (or ndjson / text when streaming)",
                  {"type": "array", "items": {"$ref": "#/components/schemas/LogEntry"}}),
            # The streamed forms, as media types of their own.
            ],
        params=[("follow", _streams(BOOL_Q), "stream until the container stops"),
                ("tail", {"type": "string", "pattern": "^(all|[0-9]{1,9})$"},
                 "last N lines, or `all` (default)"),
                ("since", TIMESTAMP, "only lines after this time"),
                ("stdout", BOOL_Q, "include stdout (default true)"),
                ("stderr", BOOL_Q, "include stderr (default true)"),
                ("timestamps", BOOL_Q, "prefix text lines with their time"),
                ("format", {"type": "string", "enum": ["json", "text"]},
                 "`json` (default without follow) or `text`")])},
    "/containers/{id}/stats": {"get": _op(
        "Resource usage (Podman's field set)", [
            _resp(200, "stats", {"$ref": "#/components/schemas/Stats"},
                  ["application/json", "application/x-ndjson"]),
            *_errors(409)],
        params=[("stream", _streams(BOOL_Q),
                 "one object per second until the container stops")])},
    "/containers/{id}/top": {"get": _op(
        "Processes of the container", [_resp(200, "processes", _obj({
            "id": S, "titles": {"type": "array", "items": S},
            "processes": {"type": "array", "items": {"type": "object"}}})),
            *_errors(*CONTAINER_ERRORS)])},
    "/containers/{id}/rename": {"post": _op(
        "Rename (the id stays)", [_resp(200, "the container", CONTAINER), *_errors(409)],
        params=[("name", ID, "the new name", True)],
        body=_closed({"name": {**ID, "description": "the query's name (the query decides)"}}),
        body_required=False)},
    "/containers/{id}/resize": {"post": _op(
        "Resize the pty of init (or of `pid`)", [_resp(200, "resized", _obj({"w": I, "h": I})),
                                                 *_errors(*CONTAINER_ERRORS)],
        params=[("w", {"type": "integer", "minimum": 1, "maximum": 65535}, "columns", True),
                ("h", {"type": "integer", "minimum": 1, "maximum": 65535}, "rows", True),
                ("pid", {"type": "integer", "minimum": 0, "maximum": 4194304},
                 "an exec'd process (or websocket exec) instead of init")])},
    "/containers/{id}/checkpoint/{name}": {
        "post": _op("Checkpoint the container into its bundle", [
            _resp(201, "checkpoint metadata", {"$ref": "#/components/schemas/Checkpoint"}),
            *_errors(*CONTAINER_ERRORS, 501, 507)],
            body=_obj({"exit": B, "tcp": B, "unixSockets": B, "shell": B}, closed=True),
            body_required=False, tag="checkpoints"),
        "delete": _op("Delete a checkpoint", [_resp(204, "deleted")], tag="checkpoints"),
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
        body=_obj({"id": ID, "settings": {"type": "object"}}, ["id"]), tag="migration")},
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
        params=[("id", ID, "the new container's id", True),
                ("bundlePath", ABS_PATH, "where the bundle is on this host, if not at "
                 "the archive's path"), ("name", ID, "the new container's name")],
        body={"type": "string", "format": "binary"}, body_media="application/x-tar",
        tag="checkpoints",
        desc="The body is the archive of GET /containers/{id}/checkpoint/{name}/export "
             "(application/x-tar). The container gets the archive's labels, runtime and "
             "restart policy, its filesystem changes as its overlay, and restores from "
             "the archive's CRIU images.")},
    "/containers/{id}/checkpoints": {"get": _op(
        "Same as GET /containers/{id}/checkpoint", [
            _resp(200, "checkpoints", {"type": "array",
                                       "items": {"$ref": "#/components/schemas/Checkpoint"}})],
        tag="checkpoints")},
    "/images/load": {"post": _op(
        "Load the images of an archive (the request body)", [
            _resp(201, "the images stored", {"type": "array", "items": IMAGE}),
            *_errors(400, 500, 507)], tag="images",
        body={"type": "string", "format": "binary"}, body_media="application/x-tar",
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
            _resp(200, "the image", IMAGE)], tag="images"),
        "delete": _op("Untag a name, or delete the image", [
            _resp(200, "what was untagged and deleted", _obj({
                "untagged": {"type": "array", "items": S}, "deleted": S})),
            *_errors(409)], tag="images",
            params=[("force", BOOL_Q, "delete even while containers use it (their "
                     "layers stay until they are deleted)")],
            desc="A name of an image that has other names only loses that name; an id, a "
                 "digest or the last name deletes the image, and the layer snapshots no "
                 "other image or container uses. 409 while containers use it."),
    },
    "/images/{ref}/tag": {"post": _op("Give an image another name", [
        _resp(201, "the image", IMAGE)],
        body=_obj({"name": IMAGE_REF}, ["name"], closed=True), tag="images")},
    "/containers/{id}/commit": {"post": _op(
        "A new image: the container's image plus its writable layer on top", [
            _resp(201, "the new image", IMAGE), *_errors(409, 500, 507)],
        body=_obj({"name": IMAGE_REF, "author": S, "message": S}, closed=True),
        body_required=False, tag="images")},
    "/containers/{id}/export": {"get": _op(
        "The container's filesystem as a tar", [
            _resp(200, "a tar stream", {"type": "string", "format": "binary"},
                  "application/x-tar"), *_errors(409)], tag="images")},
    "/containers/{id}/changes": {"get": _op(
        "Paths the container added (A), changed (C) or deleted (D) over its image", [
            _resp(200, "changes", {"type": "array", "items": _obj({
                "path": S, "kind": {"type": "string", "enum": ["A", "C", "D"]}})}),
            *_errors(409)], tag="images")},
    "/pools": {"get": _op("Warm pools and how many members each has ready", [
        _resp(200, "pools", {"type": "array", "items": POOL})], tag="pools")},
    "/pools/{name}": {
        "post": _op(
            "Keep `size` containers of a bundle or image (or of a checkpoint) ready to be claimed",
            [_resp(201, "the pool (members are made in the background)", POOL),
             *_errors(400, 404, 409, 413, 501)],
            body=_obj({"bundlePath": ABS_PATH, "image": {**IMAGE_REF, "description":
                                                         "an image of the store instead"},
                       "checkpoint": ID, "size": {"type": "integer", "minimum": 0,
                                                  "maximum": POOL_MAX_SIZE},
                       "runtime": {"type": "string", "enum": ["runc", "crun"]}}, ["size"],
                      closed=True, allOf=[{
                          "oneOf": [{"required": ["bundlePath"]}, {"required": ["image"]}],
                          "description": "give bundlePath or image (one of them)"}]),
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
# An archive cannot be generated from a schema: a fuzzer leaves these out.
for _path, _method in (("/images/load", "post"), ("/checkpoints/import", "post"),
                       ("/migrations/{migration}/rounds/{round}", "put")):
    if _path in PATHS:
        PATHS[_path][_method]["x-opaque-body"] = True
# It connects to another daemon (`target`): a fuzzer must not make it call
# whatever host it generates.
if "/containers/{id}/migrate" in PATHS:
    PATHS["/containers/{id}/migrate"]["post"]["x-reaches-out"] = True

# The streamed forms of the log answer.
PATHS["/containers/{id}/logs"]["get"]["responses"]["200"]["content"].update({
    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/LogEntry"}},
    "text/plain": {"schema": S}})

_USER = _obj({"uid": {"type": "integer", "minimum": 0, "maximum": 4294967294},
              "gid": {"type": "integer", "minimum": 0, "maximum": 4294967294},
              "additionalGids": {"type": "array", "maxItems": 64,
                                 "items": {"type": "integer", "minimum": 0,
                                           "maximum": 4294967294}}}, closed=True)
_PROCESS_FIELDS = {
    "args": {"type": "array", "minItems": 1, "maxItems": 1024,
             "items": {"type": "string", "pattern": NO_NUL, "maxLength": 32768}},
    "env": {"type": "array", "maxItems": 1024, "items": ENV_ITEM},
    "cwd": ABS_PATH, "terminal": B, "user": _USER,
    # As in an OCI process; init's are used when not given (validation.py).
    "capabilities": _closed({k: {"type": "array", "maxItems": 64,
                                 "items": {"type": "string", "pattern": "^CAP_[A-Z_]{1,32}$"}}
                             for k in ("bounding", "effective", "inheritable", "permitted",
                                       "ambient")}),
    "noNewPrivileges": B,
    "apparmorProfile": {"type": "string", "maxLength": 256, "pattern": NO_NUL},
    "selinuxLabel": {"type": "string", "maxLength": 256, "pattern": NO_NUL},
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
            body=_obj({"name": NETWORK_NAME, "subnet": CIDR4, "gateway": IPV4, "internal": B},
                      ["name"], closed=True),
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
    "Error": _obj({"error": S, "field": S}, ["error"]),
    "Signal": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 64},
                         {"type": "string", "enum": SIGNAL_NAMES},
                         {"type": "string", "pattern": "^([1-9]|[1-5][0-9]|6[0-4])$"}],
               "description": "a number, or a name with or without SIG (SIGTERM, TERM)",
               "x-error": "unknown signal: use a number from 1 to 64 or a name such as "
                          "SIGTERM or TERM"},
    # A stop signal is kept by name (SIGUSR1): only signals that have one.
    "StopSignal": {"oneOf": [{"type": "integer", "enum": sorted(set(SIGNALS.values()))},
                             {"type": "string", "enum": SIGNAL_NAMES},
                             {"type": "string",
                              "enum": [str(n) for n in sorted(set(SIGNALS.values()))]}],
                   "description": "a signal that has a name: SIGTERM, TERM or 15",
                   "x-error": "unknown signal: use a name such as SIGTERM or TERM, or its "
                              "number"},
    "ProcessSpec": _obj(_PROCESS_FIELDS, ["args"], closed=True),
    "ExecRequest": _obj({
        **_PROCESS_FIELDS,
        "terminal": {"type": "boolean", "enum": [False],
                     "description": "exec runs to completion without a terminal; use "
                                    "the websocket form for interactive sessions"},
        "timeout": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                    "maximum": 86400},
        "outputLimit": {"type": "integer", "minimum": 0, "maximum": 64 * 1024 * 1024}},
        ["args"], closed=True),
    "Process": _obj({"pid": I, "args": {"type": "array", "items": S},
                     "env": {"type": "array", "items": S}, "cwd": S, "terminal": B,
                     "user": {"type": "object"}}, ["pid", "args"]),
    "Container": _obj({
        "id": S, "name": S, "bundlePath": S, "runtime": S,
        "state": _obj({"status": {"type": "string", "enum": [s.value for s in Status]}}),
        "status": {"type": "string", "enum": [s.value for s in Status]}, "pid": I,
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
        "seccomp": {"type": "string", "description": "default, unconfined, a profile's path, "
                    "or bundle (the bundle's own filter)"},
        "image": _obj({"ref": S, "id": S}),
        "networks": {"type": "object", "additionalProperties": ATTACHMENT},
        "requestedNetworks": {"type": "array", "items": S},
        "ports": {"type": "array", "items": {"$ref": "#/components/schemas/Port"}},
        "addresses": {"type": "object", "description": "Zun's form of `networks`"}},
        ["id", "name", "state", "status", "processes", "labels", "created"]),
    # The create body's fields: a new create-time setting adds its entry here
    # (the daemon refuses fields this does not list).
    "CreateRequest": _obj({
        "bundlePath": ABS_PATH,
        "image": {**IMAGE_REF, "description": "an image of the store instead of bundlePath"},
        "checkpoint": ID, "lazy": B, "labels": STR_MAP,
        "pool": {**ID, "description": "claim a member of this warm pool "
                 "(then only name and labels may be given)"},
        "runtime": {"type": "string", "enum": ["runc", "crun"]}, "name": ID,
        "autoRemove": B, "overlay": B,
        "start": {"type": "boolean", "description": "false: only create it (status "
                  "`created`); `POST /containers/{id}/start` runs it (default true)"},
        "restartPolicy": {"oneOf": [
            {"type": "string", "enum": ["no", "on-failure", "always"]},
            _obj({"name": {"type": "string", "enum": ["no", "on-failure", "always"]},
                  "maximumRetryCount": NAT}, closed=True)]},
        # Settings, over the bundle's config.json (in the daemon's copy).
        "args": {**_PROCESS_FIELDS["args"], "description": "the command (replaces Cmd)"},
        "entrypoint": {**_PROCESS_FIELDS["args"], "minItems": 0,
                       "description": "replaces the Entrypoint; [] clears it"},
        "env": {**_PROCESS_FIELDS["env"], "description": "KEY=VALUE, merged over the bundle's"},
        "cwd": ABS_PATH,
        "user": {"oneOf": [USER_SPEC, {"type": "integer", "minimum": 0,
                                       "maximum": 4294967294}],
                 "description": "uid[:gid] or name[:group], names from the container's "
                                "/etc/passwd and /etc/group"},
        "hostname": HOSTNAME, "terminal": B, "readonlyRootfs": B,
        "mounts": {"type": "array", "maxItems": 64, "items": {"oneOf": [
            {"$ref": "#/components/schemas/Mount"},
            {"type": "string", "pattern": "^[^{]", "description":
             "type=bind,src=/srv,dst=/srv[,ro], type=tmpfs,dst=/run[,tmpfs-size=64m] or "
             "SRC:DST[:ro]"}]}},
        "resources": {"$ref": "#/components/schemas/Resources"},
        "annotations": STR_MAP,
        "stopSignal": {"$ref": "#/components/schemas/StopSignal"},
        "init": {"type": "boolean", "description": "tini as PID 1 (docker run --init)"},
        "seccomp": {"oneOf": [{"type": "string", "enum": ["default", "unconfined"]}, ABS_PATH],
                    "description": "the syscall filter: the runtime default (an allow list "
                                   "following the capabilities), none, or an OCI-form profile "
                                   "file; without it the bundle's own stays",
                    "x-error": 'use "default", "unconfined" or the absolute path of a '
                               'profile file'},
        # Zun's names.
        "command": {"oneOf": [{"type": "string", "minLength": 1, "pattern": NO_NUL},
                              _PROCESS_FIELDS["args"]],
                    "description": "Zun: args, or a command line",
                    "x-error": "must not be empty: a command line or a list of strings"},
        "environment": STR_MAP, "workdir": ABS_PATH,
        "cpu": {"$ref": "#/components/schemas/Cpus"},
        "memory": {"$ref": "#/components/schemas/Memory"},
        "interactive": {"type": "boolean", "description": "Zun: terminal"},
        # Networks (network/).
        "networks": {"type": "array", "maxItems": 16, "items": NETWORK_NAME,
                     "description": '[] loopback only, ["host"] the host\'s namespace'},
        "nets": {"type": "array", "maxItems": 16,
                 "items": _obj({"network": NETWORK_NAME}, ["network"]),
                 "description": "Zun: networks"},
        "ports": {"type": "array", "maxItems": 64,
                  "items": {"$ref": "#/components/schemas/Port"}}},
        closed=True,
        allOf=[{"anyOf": [{"properties": {"lazy": {"enum": [False]}}},
                          {"required": ["checkpoint"]}],
                "description": "`lazy` restores a `checkpoint`: it needs one"},
               {"anyOf": [{"not": {"required": ["pool"]}},
                          {"properties": {"pool": {}, "name": {}, "labels": {}},
                           "additionalProperties": False}],
                "description": "with pool, only name and labels may be given"},
               {"oneOf": [{"required": ["bundlePath"]}, {"required": ["image"]},
                          {"required": ["pool"]}], "x-field": "image",
                "description": "give bundlePath, image or pool (one of them)"},

               ],
        # Pairs of names for one setting (ours, Zun's): one of each pair at
        # most. An extension rather than `not: {required: [a, b]}`, which
        # generators of test data cannot handle; api/schema.py enforces it.
        **{"x-exclusive": [["args", "command"], ["env", "environment"], ["cwd", "workdir"],
                           ["terminal", "interactive"], ["networks", "nets"]]},
        description="A bundle (`bundlePath`), an image (`image`) or a pool's member "
                    "(`pool`), with settings over its own; `lazy` needs a `checkpoint`; "
                    "of args/command, env/environment, cwd/workdir, terminal/interactive, "
                    "networks/nets (Zun's names) one of each pair at most."),
    "Mount": _obj({"destination": ABS_PATH, "type": {"type": "string", "enum": ["bind", "tmpfs"]},
                   "source": ABS_PATH, "options": {"type": "array", "maxItems": 32,
                                                   "items": {"type": "string",
                                                             "pattern": "^[a-z0-9=_,.-]+$"}}},
                  ["destination"], closed=True),
    "Cpus": {"type": "number", "minimum": 0.01, "maximum": 1024,
             "description": "CPUs (0.5 is half a CPU)"},
    "Memory": {"oneOf": [{"type": "integer", "minimum": 6 * 1024 * 1024,
                          "maximum": 2 ** 62},
                         {"type": "string", "pattern": MEMORY_PATTERN}],
               "description": "bytes (at least 6 MiB, as Docker), or a size such as 256M "
                              "or 1G"},
    "Resources": _obj({"memory": {"$ref": "#/components/schemas/Memory"},
                       "cpus": {"$ref": "#/components/schemas/Cpus"},
                       "cpuShares": {"type": "integer", "minimum": 2, "maximum": 262144},
                       "cpuQuota": {"type": "integer", "minimum": 1000,
                                    "maximum": 1000000000},
                       "cpuPeriod": {"type": "integer", "minimum": 1000, "maximum": 1000000},
                       "pidsLimit": {"type": "integer", "minimum": 1, "maximum": 4194304}},
                      closed=True, minProperties=1),
    "Event": _obj({"type": S, "id": S, "pid": I, "status": I, "timestamp": S, "ns": I},
                  ["type", "id", "timestamp", "ns"]),
    "LogEntry": _obj({"timestamp": S, "stream": S, "line": S}),
    "Stats": {"type": "object"},
    "Network": _obj({"name": S, "subnet": S, "gateway": S, "internal": B, "bridge": S,
                     "driver": S, "containers": {"type": "object"}}),
    "NetworkAttachment": _obj({"network": S, "interface": S, "ip": S, "prefixLen": I,
                               "gateway": S, "mac": S}),
    "Interface": _obj({"name": S, "mac": S, "up": B, "mtu": I,
                       "addresses": {"type": "array", "items": S}, "rxBytes": I, "txBytes": I,
                       "rxPackets": I, "txPackets": I}),
    "Port": _obj({"hostPort": PORT_NUMBER, "containerPort": PORT_NUMBER,
                  "protocol": {"type": "string", "enum": ["tcp", "udp"]},
                  "hostIp": IPV4, "hostIP": IPV4}, ["containerPort"], closed=True),
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


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path).strip("/").replace(".", "_").split("/")
    return "_".join([method, *words])


def _container_links(paths: dict) -> dict:
    """Links from a created container to every operation on it, so that a
    stateful client (or fuzzer) can follow a create to real containers."""
    links = {}
    for path, item in paths.items():
        if not path.startswith("/containers/{id}"):
            continue
        extra = set(re.findall(r"\{(\w+)\}", path)) - {"id"}
        if extra:
            continue  # needs more than the container's id
        for method in item:
            if method in ("parameters", "head") or (path, method) == ("/containers/{id}", "post"):
                continue
            links[_operation_id(method, path)] = {
                "operationId": _operation_id(method, path),
                "parameters": {"path.id": "$response.body#/id"}}
    return links


def document() -> dict:
    paths = {}
    for path, ops in PATHS.items():
        names = re.findall(r"\{(\w+)\}", path)
        params = [{"name": n, "in": "path", "required": True,
                   "schema": PATH_PARAMS.get(n, (S, n))[0],
                   "description": PATH_PARAMS.get(n, (S, n))[1]} for n in names]
        item = {}
        for method, op in ops.items():
            op = dict(op, responses=dict(op["responses"]))
            op.setdefault("operationId", _operation_id(method, path))
            # What every operation can answer, so that no entry forgets it.
            auto = [403]
            if params or op.get("parameters") or op.get("requestBody"):
                auto.append(400)
            if params:
                auto.append(404)
            for code in auto:
                op["responses"].setdefault(str(code), _resp(code, ERROR_TEXT[code], ERROR)[1])
            op["responses"] = dict(sorted(op["responses"].items()))
            item[method] = op
            if method == "get":
                # HEAD is served wherever GET is (aiohttp's allow_head).
                item["head"] = _head_of(op, path)
        if params:
            item["parameters"] = params
        paths[path] = item
    _add_links(paths)
    return {
        "openapi": "3.0.3",
        "info": {"title": "containerd-py", "version": __version__,
                 "description": "The containerd REST API v1, extended with the container "
                                "lifecycle of Zun, Podman and Docker Cloud. Served to root "
                                "and the members of the daemon's --group only."},
        "servers": [{"url": "http://127.0.0.1:8888"}],
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


def _head_of(get: dict, path: str) -> dict:
    head = {k: v for k, v in get.items() if k not in ("responses", "description")}
    head["summary"] = f"Headers of GET {path}"
    head["operationId"] = _operation_id("head", path)
    # No body; streaming parameters are ignored (a HEAD never streams).
    head["responses"] = {code: {"description": r["description"]}
                         for code, r in get["responses"].items() if code != "101"}
    if "101" in get["responses"]:
        head["responses"].setdefault("400", {"description": "HEAD cannot open a websocket"})
    return head


def _add_links(paths: dict) -> None:
    create = paths.get("/containers/{id}", {}).get("post")
    if create:
        create["responses"]["201"]["links"] = _container_links(paths)
    for add in ("/containers/{id}/process", "/containers/{id}/processes"):
        op = paths.get(add, {}).get("put")
        if op:
            op["responses"]["201"]["links"] = {
                name: {"operationId": _operation_id(m, p),
                       "parameters": {"path.id": "$request.path.id",
                                      "path.pid": "$response.body#/pid"}}
                for name, m, p in (("signal", "post", "/containers/{id}/process/{pid}"),
                                   ("wait", "get", "/containers/{id}/process/{pid}/wait"))}
    op = paths.get("/containers/{id}/checkpoint/{name}", {}).get("post")
    if op:
        op["responses"]["201"]["links"] = {
            "delete": {"operationId": _operation_id("delete", "/containers/{id}/checkpoint/{name}"),
                       "parameters": {"path.id": "$request.path.id",
                                      "path.name": "$response.body#/name"}}}


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m containerd_py.api.openapi",
                                description="print the API document")
    p.add_argument("--markdown", action="store_true", help="docs/api.md instead of JSON")
    args = p.parse_args(argv)
    if args.markdown:
        from .apidoc import markdown
        sys.stdout.write(markdown(document()))
    else:
        json.dump(document(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
