"""Names never escape their directories, and a bundle is what it resolves to.

Ids, names, checkpoint names and image refs with `..`, `/`, NUL or too many
characters are refused before they touch a path; a bundle path is resolved
(symlinks included) once, and what it names must be a runnable bundle.
"""

import http.client
import json
import os
import subprocess

import pytest

from conftest import DAEMON

from containerd_py.client import APIError

BAD_NAMES = ["..", ".", "../etc", "a/../../b", "%2e%2e", "a%2Fb", "%00", "a%00b",
             "x" * 129, "-lead", ".hidden"]


def _raw(daemon, method, path, body=None):
    host, port = daemon.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _state_files(daemon) -> set[str]:
    out = set()
    for root, dirs, files in os.walk(daemon.state_dir):
        out.update(os.path.join(root, x) for x in dirs + files)
    return out


def test_bad_ids_and_names_touch_nothing(daemon, api, bundle, cid):
    b = bundle()
    c = cid()
    api.create(c, b)
    before = _state_files(daemon)
    try:
        for bad in BAD_NAMES:
            for method, path, body in [
                    ("POST", f"/containers/{bad}", {"bundlePath": b}),
                    ("DELETE", f"/containers/{bad}", None),
                    ("POST", f"/containers/{c}/checkpoint/{bad}", {}),
                    ("DELETE", f"/containers/{c}/checkpoint/{bad}", None),
                    ("POST", f"/containers/{c}/rename?name={bad}", None),
                    ("POST", f"/containers/{cid()}", {"bundlePath": b, "name": bad}),
                    ("POST", f"/containers/{cid()}", {"bundlePath": b, "checkpoint": bad}),
                    ("GET", f"/images/{bad}", None),
                    ("POST", f"/containers/{cid()}", {"image": bad})]:
                status, raw = _raw(daemon, method, path, body)
                # 400 names the field; 404 only where the router found no route
                # (a '/' that splits the path).
                assert status in (400, 404), (method, path, status, raw)
                assert json.loads(raw)["error"], (method, path)
        assert api.get(c)["status"] == "running"
        after = _state_files(daemon)
        new = {p for p in after - before if "/shims/" + c not in p}
        assert not {p for p in new if "events.jsonl" not in p}, new
        assert not os.path.exists(os.path.join(os.path.dirname(b), "etc"))
    finally:
        api.delete(c, force=True)


def test_bundle_path_symlinks_are_resolved(api, bundle, cid, tmp_path):
    real = bundle()
    link = str(tmp_path / "link-to-bundle")
    os.symlink(real, link)
    c = cid()
    got = api.create(c, link)
    try:
        assert got["bundlePath"] == os.path.realpath(real)
    finally:
        api.delete(c, force=True)


@pytest.mark.parametrize("change, status, words", [
    (lambda spec, b: spec.update(ociVersion=1), 400, "ociVersion"),
    (lambda spec, b: spec["process"].update(args="sh"), 400, "process.args"),
    (lambda spec, b: spec["process"].update(args=[]), 400, "args"),
    (lambda spec, b: spec["process"].update(args=["/no/such/init"]), 400, "no such file"),
    (lambda spec, b: spec["root"].update(path=os.path.join(b, "nothing-here")), 404,
     "root.path"),
])
def test_bundles_that_cannot_run_are_4xx_naming_the_field(api, daemon, bundle, cid, change,
                                                           status, words):
    b = bundle()
    path = os.path.join(b, "config.json")
    with open(path) as f:
        spec = json.load(f)
    change(spec, b)
    with open(path, "w") as f:
        json.dump(spec, f)
    c = cid()
    with pytest.raises(APIError) as e:
        api.create(c, b)
    assert e.value.status == status, e.value.body
    assert words in e.value.body["error"], e.value.body
    assert not os.path.exists(os.path.join(daemon.state_dir, "shims", c))


def test_bundle_path_that_is_a_file(api, cid):
    with pytest.raises(APIError) as e:
        api.create(cid(), "/etc/passwd")
    assert e.value.status == 400 and "is not a directory" in e.value.body["error"]
    with pytest.raises(APIError) as e:
        api.create(cid(), "/no/such/dir")
    assert e.value.status == 404 and "does not exist" in e.value.body["error"]


def test_signals_by_name_in_the_api_and_the_cli(daemon, api, bundle, cid):
    for sig in ("SIGKILL", "KILL", 9):
        c = cid()
        api.create(c, bundle())
        api.kill(c, sig)
        assert api.wait(c)["exitStatus"] == 137, sig
        api.delete(c)
    c = cid()
    api.create(c, bundle())
    out = subprocess.run([DAEMON, "--address", daemon.address, "kill", "-s", "KILL", c],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert api.wait(c)["exitStatus"] == 137
    out = subprocess.run([DAEMON, "--address", daemon.address, "kill", "-s", "NOPE", c],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "unknown signal" in out.stderr
    api.delete(c)
