"""A small synchronous client for the containerd-py API, for the CLI and for
engines that embed the daemon. Stdlib only, so embedding costs nothing.

    from containerd_py.client import Client
    c = Client()                      # http://127.0.0.1:8888
    c.create("web", "/path/to/bundle")
    c.exec_sync("web", ["ls", "/"])
"""

import http.client
import json
import socket
import urllib.parse


class APIError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Client:
    def __init__(self, address: str = "127.0.0.1:8888", timeout: float = 300):
        """`address` is HOST:PORT, http://HOST:PORT or unix:PATH."""
        self.address = address.removeprefix("http://")
        self.timeout = timeout

    def _conn(self) -> http.client.HTTPConnection:
        if self.address.startswith("unix:"):
            return _UnixConnection(self.address[5:], self.timeout)
        host, _, port = self.address.rpartition(":")
        # http.client strips an IPv6 literal's brackets only from "host:port".
        return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=self.timeout)

    def request(self, method: str, path: str, body=None, query: dict | None = None):
        if query:
            path += "?" + urllib.parse.urlencode(
                {k: str(v).lower() if isinstance(v, bool) else v
                 for k, v in query.items() if v is not None}, doseq=True)
        conn = self._conn()
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        payload = json.loads(raw) if raw.strip() else None
        if resp.status >= 400:
            raise APIError(resp.status, payload if isinstance(payload, dict) else {"error": raw})
        return payload

    def upload(self, path: str, fileobj):
        """POST a file-like body, sent in chunks (an image archive)."""
        conn = self._conn()
        try:
            conn.request("POST", path, body=fileobj,
                         headers={"Content-Type": "application/x-tar"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        payload = json.loads(raw) if raw.strip() else None
        if resp.status >= 400:
            raise APIError(resp.status, payload if isinstance(payload, dict) else {"error": raw})
        return payload

    def download(self, path: str, out) -> int:
        """GET a binary stream into the file `out`; returns its size."""
        conn = self._conn()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status >= 400:
                raise APIError(resp.status, json.loads(resp.read() or b"{}"))
            n = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                n += len(chunk)
            return n
        finally:
            conn.close()

    def stream(self, path: str, query: dict | None = None):
        """Yield lines of a streaming endpoint (events, logs?follow)."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = self._conn()
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status >= 400:
            raise APIError(resp.status, json.loads(resp.read() or b"{}"))
        try:
            for line in resp:
                yield line.decode(errors="replace").rstrip("\n")
        finally:
            conn.close()

    # -- the API, one method per route ----------------------------------------

    def state(self):
        return self.request("GET", "/state")

    def list(self, **filters):
        return self.request("GET", "/containers", query=filters)

    def get(self, cid):
        return self.request("GET", f"/containers/{cid}")

    def create(self, cid, bundle_path=None, **options):
        """From a bundle, or from an image with `image="REF"`."""
        body = {"bundlePath": bundle_path} if bundle_path is not None else {}
        return self.request("POST", f"/containers/{cid}", {**body, **options})

    def delete(self, cid, force=False):
        return self.request("DELETE", f"/containers/{cid}", query={"force": force})

    def add_process(self, cid, args, **process):
        return self.request("PUT", f"/containers/{cid}/process", {"args": args, **process})

    def signal_process(self, cid, pid, signal):
        return self.request("POST", f"/containers/{cid}/process/{pid}", {"signal": signal})

    def pause(self, cid):
        return self.request("PATCH", f"/containers/{cid}", {"status": "paused"})

    def resume(self, cid):
        return self.request("PATCH", f"/containers/{cid}", {"status": "running"})

    def kill(self, cid, signal=15):
        return self.request("POST", f"/containers/{cid}/kill", {"signal": signal})

    def stop(self, cid, timeout=None):
        return self.request("POST", f"/containers/{cid}/stop", query={"timeout": timeout})

    def start(self, cid):
        return self.request("POST", f"/containers/{cid}/start")

    def restart(self, cid, timeout=None):
        return self.request("POST", f"/containers/{cid}/restart", query={"timeout": timeout})

    def wait(self, cid):
        return self.request("GET", f"/containers/{cid}/wait")

    def exec_sync(self, cid, args, **options):
        return self.request("POST", f"/containers/{cid}/exec", {"args": args, **options})

    def logs(self, cid, **query):
        return self.request("GET", f"/containers/{cid}/logs", query=query)

    def stats(self, cid):
        return self.request("GET", f"/containers/{cid}/stats")

    def top(self, cid):
        return self.request("GET", f"/containers/{cid}/top")

    def update(self, cid, **resources):
        return self.request("PATCH", f"/containers/{cid}", {"resources": resources})

    def rename(self, cid, name):
        return self.request("POST", f"/containers/{cid}/rename", query={"name": name})

    def checkpoint(self, cid, name, **flags):
        return self.request("POST", f"/containers/{cid}/checkpoint/{name}", flags)

    def checkpoints(self, cid):
        return self.request("GET", f"/containers/{cid}/checkpoint")

    def delete_checkpoint(self, cid, name):
        return self.request("DELETE", f"/containers/{cid}/checkpoint/{name}")

    def events(self, since=None):
        for line in self.stream("/events", {"since": since} if since else None):
            if line:
                yield json.loads(line)

    def info(self):
        return self.request("GET", "/info")

    # -- images ------------------------------------------------------------------

    def load(self, fileobj):
        """Load a docker-archive or oci-archive (a binary file object)."""
        return self.upload("/images/load", fileobj)

    def images(self):
        return self.request("GET", "/images")

    def image(self, ref):
        return self.request("GET", f"/images/{_quote_ref(ref)}")

    def tag(self, ref, name):
        return self.request("POST", f"/images/{_quote_ref(ref)}/tag", {"name": name})

    def rmi(self, ref, force=False):
        return self.request("DELETE", f"/images/{_quote_ref(ref)}", query={"force": force})

    def commit(self, cid, name=None, **options):
        return self.request("POST", f"/containers/{cid}/commit",
                            {**({"name": name} if name else {}), **options})

    def changes(self, cid):
        return self.request("GET", f"/containers/{cid}/changes")

    def export(self, cid, out) -> int:
        return self.download(f"/containers/{cid}/export", out)


def _quote_ref(ref: str) -> str:
    # '/' and ':' stay as they are: the routes take them literally.
    return urllib.parse.quote(ref, safe="/:@")
