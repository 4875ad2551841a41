"""schemathesis against a live daemon: every check, the stateful phase
included (it follows the document's links from a create to real
containers), and no failure.

Two runs. Invalid requests (--mode negative) against the daemon's document
exactly as it serves it: each must be refused, and since validation refuses
them before any handler runs they need no real bundle. Valid requests
(--mode positive, all phases) against a narrowed copy: creates use one real
bundle and commands it has, streams are off and stop timeouts short, and
what would touch the host beyond containers (networks, published ports,
connections to other daemons) is left out. Narrowing only ever removes valid
inputs, so each of these is still valid against the real document.

A new endpoint is fuzzed as soon as it is in the document; when it fails,
this test prints schemathesis' own account of each failure (the request to
replay it with curl, what was expected).
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import Daemon, write_bundle

SCHEMATHESIS = os.path.join(os.path.dirname(sys.executable), "schemathesis")
# Bounded so the run stays well within a few minutes of CPU on 2 cores.
MAX_EXAMPLES = int(os.environ.get("CDPY_FUZZ_EXAMPLES", "4"))
SEED = int(os.environ.get("CDPY_FUZZ_SEED", "20261201"))


# Commands that exist in the busybox rootfs and end (or idle) harmlessly: a
# valid request naming a command the rootfs lacks is a 400 by design, which a
# fuzzer would read as "valid data rejected".
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
COMMANDS = [STOPPABLE, ["true"], ["sh", "-c", "exit 3"]]
EXEC_COMMANDS = [["true"], ["ls", "/"], ["id"], ["echo", "fuzz"], ["sh", "-c", "exit 3"]]
ENVS = [["PATH=/usr/bin:/bin"], ["PATH=/bin", "FUZZ=1"]]


def _only_runc(node) -> None:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict) and props.get("runtime", {}).get("enum"):
            props["runtime"] = {"type": "string", "enum": ["runc"]}
        for v in node.values():
            _only_runc(v)
    elif isinstance(node, list):
        for v in node:
            _only_runc(v)


def narrowed(doc: dict, bundle: str) -> dict:
    doc = copy.deepcopy(doc)
    schemas = doc["components"]["schemas"]
    create = schemas["CreateRequest"]["properties"]
    create["bundlePath"] = {"type": "string", "enum": [bundle]}
    create.pop("image", None)  # image containers: tests/test_images.py
    # One name of each pair (x-exclusive): a generator does not know the rule.
    for _, other in schemas["CreateRequest"].get("x-exclusive", ()):
        create.pop(other, None)
    # The host's default runtime: another one may not work here at all (crun
    # refuses hybrid cgroup hierarchies), which is the runtime's 500 to report.
    _only_runc(doc)
    for key, value in (("args", {"enum": COMMANDS}), ("command", {"enum": ["true"]}),
                       ("entrypoint", {"enum": [[]]}), ("env", {"enum": ENVS}),
                       ("cwd", {"enum": ["/"]}), ("workdir", {"enum": ["/"]}),
                       ("user", {"enum": [0, "0:0"]}),
                       ("mounts", {"type": "array", "maxItems": 0}),
                       # Loopback only, nothing published: no bridge, address or
                       # iptables rule on the host comes from generated data.
                       ("networks", {"enum": [[]]}), ("nets", {"type": "array", "maxItems": 0}),
                       ("ports", {"type": "array", "maxItems": 0}),
                       ("environment", {"type": "object", "maxProperties": 0})):
        if key in create:
            create[key] = value
    for name in ("ProcessSpec", "ExecRequest"):
        if name in schemas:
            props = schemas[name]["properties"]
            props["args"] = {"enum": EXEC_COMMANDS}
            props["env"] = {"enum": ENVS}
            props["cwd"] = {"enum": ["/"]}
            # Init's own: a generated capability set or profile would only
            # fail in the runtime, for the runtime's reasons.
            for key in ("capabilities", "apparmorProfile", "selinuxLabel"):
                props.pop(key, None)
    # Bounded waits: a valid but long timeout would only make the run slow.
    if "ExecRequest" in schemas:
        schemas["ExecRequest"]["properties"]["timeout"] = {"type": "number", "minimum": 0.5,
                                                           "maximum": 2}
    for path, item in doc["paths"].items():
        for method in [m for m in item if m != "parameters"]:
            op = item[method]
            for p in op.get("parameters", []):
                if p.get("x-streams") and not p["schema"].get("default"):
                    p["schema"] = {"type": "boolean", "enum": [False]}
                if p["name"] == "timeout" and p["schema"].get("type") == "integer":
                    p["schema"]["maximum"] = 1
    # Links only to what is fuzzed.
    skipped = set(excluded(doc))
    for item in doc["paths"].values():
        for op in (o for m, o in item.items() if m != "parameters"):
            for resp in op["responses"].values():
                for name in [n for n, link in resp.get("links", {}).items()
                             if link["operationId"] in skipped]:
                    del resp["links"][name]
    return doc


def excluded(doc: dict) -> list[str]:
    """Operations left out of the run (they stay in the document, so that
    what a 405's Allow lists is still documented): those that wait for a
    container to stop, endless streams, websockets, bodies no schema can
    generate, and what would connect to a host named in the request."""
    out = []
    for item in doc["paths"].values():
        get = item.get("get", {})
        websocket = "101" in get.get("responses", {})
        for method, op in item.items():
            if method == "parameters":
                continue
            # A stream by default (GET /events) never ends unless told to: a
            # fuzzer may leave its parameter out.
            streams = any(p.get("x-streams") and p["schema"].get("default")
                          for p in op.get("parameters", []))
            # Networks are the host's (bridges, iptables): made by
            # tests/test_network.py with addresses it chose, never generated.
            host_networks = "networks" in op.get("tags", []) and method != "get" \
                and method != "head"
            if op.get("x-blocks") or get.get("x-blocks") or websocket or streams \
                    or op.get("x-opaque-body") or op.get("x-reaches-out") or host_networks:
                out.append(op["operationId"])
    return out


def _summary(output: str) -> str:
    """The failures section of schemathesis' report, or its tail."""
    start = output.find("FAILURES")
    text = output[start:] if start >= 0 else output[-6000:]
    return text if len(text) < 20000 else text[:20000] + "\n... (cut)"


@pytest.fixture
def fuzz_daemon():
    state = tempfile.mkdtemp(prefix="cdpy-")
    d = Daemon(state).start()
    yield d
    d.cleanup()
    shutil.rmtree(state, ignore_errors=True)


# GET and DELETE /images/{ref} take refs with slashes, so one that ends in
# /tag is theirs too (tests/test_images.py relies on that GET): an OPTIONS of
# /images/x/tag lists their methods as well as the tag route's POST, and a GET
# of it looks for an image. Those two are not sent there.
CONFIG = """
[[operations]]
include-path = "/images/{ref}/tag"
phases.coverage.unexpected-methods = ["TRACE", "PATCH", "PUT"]
"""


def _run(spec, daemon, mode: str, phases: str, skip: list[str], cwd) -> tuple[int, str]:
    config = os.path.join(cwd, "schemathesis.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    out = subprocess.run(
        [SCHEMATHESIS, "--config-file", config, "run", str(spec),
         "--url", f"http://{daemon.address}",
         *[a for op in skip for a in ("--exclude-operation-id", op)],
         "--checks", "all", "--mode", mode, "--phases", phases,
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
         "--request-timeout", "60", "--no-color", "--suppress-health-check", "all",
         "--generation-database", "none", "--output-truncate", "true"],
        capture_output=True, text=True, timeout=900, cwd=cwd)
    report = out.stdout + out.stderr
    cases = re.search(r"(\d+) generated", report)
    print(f"schemathesis --mode {mode}: {cases.group(0) if cases else 'cases unknown'}; "
          f"exit {out.returncode}")
    print(report[-2500:])
    return out.returncode, report


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing(fuzz_daemon, tmp_path):
    """Two runs. Invalid requests against the daemon's own document, as it
    is: every one must be refused (they never get past validation, so they
    need no real bundle). Valid requests, all phases with the stateful one,
    against the narrowed document: every one must be accepted or refused for
    a stated reason (404, 409), never a 5xx, and every answer as documented."""
    if not os.access(SCHEMATHESIS, os.X_OK):
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    # Ends on SIGTERM within a second (tail as PID 1 ignores it): a stop
    # need not wait for its SIGKILL.
    bundle = str(write_bundle(tmp_path / "bundle", STOPPABLE))
    doc = fuzz_daemon.client.request("GET", "/openapi.json")
    as_is, narrow = tmp_path / "openapi.json", tmp_path / "openapi-narrowed.json"
    as_is.write_text(json.dumps(doc))
    narrow.write_text(json.dumps(narrowed(doc, bundle)))
    failed = []
    for spec, mode, phases in ((as_is, "negative", "examples,coverage,fuzzing"),
                               (narrow, "positive", "examples,coverage,fuzzing,stateful")):
        rc, report = _run(spec, fuzz_daemon, mode, phases, excluded(doc), tmp_path)
        if rc != 0:
            failed.append(f"--mode {mode}:\n" + _summary(report))
    assert not failed, "schemathesis found failures:\n" + "\n".join(failed)
    # The daemon outlived it, and logged no error of its own (aiohttp's
    # account of a malformed request it answered with a 400 is not one).
    assert fuzz_daemon.client.request("GET", "/ping") == {"ok": True}
    with open(fuzz_daemon.log_path) as f:
        ours = [ln for ln in f if " ERROR containerd_py" in ln]
    assert not ours, ours[:5]
