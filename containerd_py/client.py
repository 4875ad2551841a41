"""A small synchronous client for the containerd-py API, for the CLI and for
engines that embed the daemon. Stdlib only, so embedding costs nothing.

    from containerd_py.client import Client
    c = Client()                      # http://127.0.0.1:8888
    c.create("web", "/path/to/bundle")
    c.exec_sync("web", ["ls", "/"])
"""

import http.client
import io
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

    def upload(self, path: str, fileobj, query: dict | None = None, progress=None):
        """POST a file (an image or checkpoint archive) as the raw body, in
        chunks, so a large archive is never held in memory."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        if isinstance(fileobj, (bytes, bytearray)):
            fileobj = io.BytesIO(fileobj)

        def chunks():
            while True:
                block = fileobj.read(1 << 20)
                if not block:
                    return
                if progress:
                    progress(len(block))
                yield block

        conn = self._conn()
        try:
            conn.request("POST", path, body=chunks(), encode_chunked=True,
                         headers={"Content-Type": "application/x-tar"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        payload = json.loads(raw) if raw.strip() else None
        if resp.status >= 400:
            raise APIError(resp.status, payload if isinstance(payload, dict) else {"error": raw})
        return payload

    def download(self, path: str, out, query: dict | None = None, progress=None) -> int:
        """GET a streamed archive into the file `out`; returns its size."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = self._conn()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status >= 400:
                raw = resp.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"error": raw.decode(errors="replace")}
                raise APIError(resp.status, body if isinstance(body, dict) else {"error": body})
            total = 0
            while True:
                block = resp.read(1 << 20)
                if not block:
                    return total
                out.write(block)
                total += len(block)
                if progress:
                    progress(len(block))
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

    def claim(self, cid, pool, **options):
        """A container from a warm pool (options: name, labels)."""
        return self.request("POST", f"/containers/{cid}", {"pool": pool, **options})

    def create_pool(self, name, bundle_path, size, **options):
        """Keep `size` containers of the bundle (or `image=REF` with
        bundle_path None; or of a `checkpoint`) ready."""
        body = {"size": size, **options}
        if bundle_path is not None:
            body["bundlePath"] = bundle_path
        return self.request("POST", f"/pools/{name}", body)

    def pools(self):
        return self.request("GET", "/pools")

    def pool(self, name):
        return self.request("GET", f"/pools/{name}")

    def delete_pool(self, name):
        return self.request("DELETE", f"/pools/{name}")

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

    def export_checkpoint(self, cid, name, out) -> int:
        """Write the checkpoint's archive into the binary file `out`;
        returns its size."""
        conn = self._conn()
        try:
            conn.request("GET", f"/containers/{cid}/checkpoint/{name}/export")
            resp = conn.getresponse()
            if resp.status >= 400:
                raise APIError(resp.status, json.loads(resp.read() or b"{}"))
            size = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
            return size
        finally:
            conn.close()

    def import_checkpoint(self, cid, archive, **query):
        """Create container `cid` from an archive (a binary file object or
        bytes); `query` may give bundlePath (where the bundle is here) and
        name."""
        return self.upload("/checkpoints/import", archive, {"id": cid, **query})

    def migrate(self, cid, target, **options):
        """Move a running container to the daemon at `target`
        (http://HOST:PORT); options: preCopy, lazy, lazyRestore, and
        migration + token from `open_migration` on the target."""
        return self.request("POST", f"/containers/{cid}/migrate", {"target": target, **options})

    def open_migration(self, cid, settings=None):
        """On the target: a migration of `cid` into it, with its token."""
        body = {"id": cid}
        if settings is not None:
            body["settings"] = settings
        return self.request("POST", "/migrations", body)

    def events(self, since=None):
        for line in self.stream("/events", {"since": since} if since else None):
            if line:
                yield json.loads(line)

    def info(self):
        return self.request("GET", "/info")

    # -- networks --------------------------------------------------------------

    def networks(self):
        return self.request("GET", "/networks")

    def network(self, name):
        return self.request("GET", f"/networks/{name}")

    def create_network(self, name, subnet, gateway=None, internal=False):
        body = {"name": name, "subnet": subnet, "internal": internal}
        if gateway is not None:
            body["gateway"] = gateway
        return self.request("POST", "/networks", body)

    def delete_network(self, name):
        return self.request("DELETE", f"/networks/{name}")

    def container_networks(self, cid):
        return self.request("GET", f"/containers/{cid}/networks")

    def attach_network(self, cid, name):
        return self.request("POST", f"/containers/{cid}/networks/{name}")

    def detach_network(self, cid, name):
        return self.request("DELETE", f"/containers/{cid}/networks/{name}")

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
