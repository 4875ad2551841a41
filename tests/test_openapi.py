"""The served OpenAPI document stays true to the routes, and is the contract:
docs/api.md is generated from it, and the daemon refuses what it does not allow."""

import http.client
import os
import re
import subprocess
import sys

from aiohttp import web

from containerd_py.api import ROUTES
from containerd_py.api.apidoc import markdown
from containerd_py.api.openapi import document

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _served() -> set:
    """(METHOD, path) of every route the app serves, HEAD included."""
    app = web.Application()
    app.add_routes(ROUTES)
    return {(r.method, _normalise(r.resource.canonical)) for r in app.router.routes()}


def test_every_route_is_documented_and_nothing_else(api):
    doc = api.request("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), _normalise(p)) for p, ops in doc["paths"].items()
                  for m in ops if m != "parameters"}
    served = _served()
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes that do not exist"


def test_every_operation_documents_its_errors(api):
    doc = api.request("GET", "/openapi.json")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            codes = set(op["responses"])
            websocket = "101" in ops.get("get", {}).get("responses", {})
            assert websocket or any(c.startswith("2") or c == "101" for c in codes), \
                (method, path)
            assert "403" in codes, (method, path)
            if "{id}" in path:
                assert "404" in codes, (method, path)
            if method == "head":
                continue
            for code in codes:
                if code.startswith(("4", "5")):
                    schema = op["responses"][code]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_every_path_parameter_and_body_is_constrained(api):
    """No free-form string where the daemon checks a pattern: ids are
    documented with the pattern the daemon enforces."""
    doc = api.request("GET", "/openapi.json")
    for path, item in doc["paths"].items():
        for p in item.get("parameters", []):
            if p["name"] in ("id", "name"):
                assert p["schema"].get("pattern"), (path, p)
    create = doc["components"]["schemas"]["CreateRequest"]
    assert create["additionalProperties"] is False
    links = doc["paths"]["/containers/{id}"]["post"]["responses"]["201"]["links"]
    assert {"get_containers_id", "delete_containers_id", "post_containers_id_stop"} <= set(links)


def test_docs_api_md_is_generated_from_the_document():
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        text = f.read()
    assert text == markdown(document()), (
        "docs/api.md is out of date with containerd_py/api/openapi.py: run "
        "`python -m containerd_py.api.openapi --markdown > docs/api.md`")
    out = subprocess.run([sys.executable, "-m", "containerd_py.api.openapi", "--markdown"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout == text
    for r in ROUTES:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", r.path)  # {ref:.+} is {ref}
        assert f"`{r.method} {path}`" in text, f"docs/api.md lacks {r.method} {path}"


def _raw(daemon, method, path, body=None, headers=None):
    host, port = daemon.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_405_says_what_is_allowed(daemon):
    status, headers, body = _raw(daemon, "TRACE", "/containers/x")
    assert status == 405
    allowed = {m.strip() for m in headers["Allow"].split(",")}
    assert {"GET", "POST", "PATCH", "DELETE", "HEAD"} <= allowed
    assert b"error" in body


def test_head_wherever_get(daemon, api, bundle, cid):
    c = cid()
    api.create(c, bundle())
    try:
        for path in ("/ping", "/state", "/containers", f"/containers/{c}",
                     f"/containers/{c}/logs", f"/containers/{c}/stats", "/events",
                     f"/containers/{c}/logs?follow=true", f"/containers/{c}/stats?stream=true"):
            status, headers, body = _raw(daemon, "HEAD", path)
            assert status == 200 and body == b"", (path, status)
            assert headers["Content-Type"].startswith(("application/", "text/")), path
        status, _, _ = _raw(daemon, "HEAD", "/containers/nosuch")
        assert status == 404
        # A streamed answer too (a handler that writes its body itself).
        status, _, body = _raw(daemon, "HEAD", f"/containers/{c}/logs?format=text")
        assert status == 200 and body == b""
        # A websocket route answers HEAD and a plain GET without starting anything.
        status, _, body = _raw(daemon, "GET", f"/containers/{c}/exec/ws?command=sleep+100")
        assert status == 400 and b"websocket" in body
        assert len(api.get(c)["processes"]) == 1
    finally:
        api.delete(c, force=True)


def test_requests_are_checked_against_the_document(api, bundle, cid):
    from containerd_py.client import APIError
    import pytest

    cases = [
        ("POST", "/containers/-bad", {"bundlePath": "/x"}, "id"),
        ("POST", f"/containers/{cid()}", {}, "bundlePath"),
        ("POST", f"/containers/{cid()}", {"bundlePath": "/x", "restartPolicy": {"name": "x"}},
         "restartPolicy"),
        ("POST", f"/containers/{cid()}", {"bundlePath": "/x", "nosuchfield": 1}, "nosuchfield"),
        ("POST", f"/containers/{cid()}", {"bundlePath": "/x", "lazy": True}, ""),
        ("GET", "/containers?status=sleeping", None, "status"),
        ("DELETE", "/containers", None, "status"),
        ("POST", "/containers/x/stop?timeout=abc", None, "timeout"),
        ("POST", "/containers/x/kill", {"signal": "SIGNOPE"}, "signal"),
        ("GET", "/containers/x/logs?tail=-1", None, "tail"),
        ("GET", "/events?since=yesterday", None, "since"),
        ("PATCH", "/containers/x", {}, ""),
        ("PUT", "/containers/x/process", {"args": []}, "args"),
        ("PUT", "/containers/x/process", {"args": ["ls"], "env": ["NOEQUALS"]}, "env"),
    ]
    for method, path, body, field in cases:
        with pytest.raises(APIError) as e:
            api.request(method, path, body)
        assert e.value.status == 400, (method, path, e.value.body)
        assert field in e.value.body.get("field", ""), (method, path, e.value.body)
        assert e.value.body["error"], (method, path)
