"""The CRI streaming server (Exec, Attach, PortForward URLs over SPDY/3.1).

The framing and the server's HTTP front are tested as pure logic against
frames built here the way a SPDY/3 client (moby/spdystream, which crictl
and the kubelet's clients use) builds them. The rest is crictl v1.26.1
end to end against a daemon of its own, each result checked where a user
sees it: the terminal crictl prints to, the bytes a forwarded connection
returns, the container's state.
"""

import asyncio
import fcntl
import hashlib
import json
import os
import select
import socket
import struct
import subprocess
import termios
import time
import zlib

import pytest

from conftest import wait_until
from containerd_py.cri import spdy
from containerd_py.cri.streaming import StreamingServer, _sizes, _status
from test_cri import CRICTL, cri, crictl, pod_config, write  # noqa: F401 (cri: fixture)

needs_crictl = pytest.mark.skipif(not os.access(CRICTL, os.X_OK),
                                  reason=f"crictl not found at {CRICTL} (set CRI_TOOLS_DIR)")


# -- SPDY framing: pure logic ---------------------------------------------------

class Client:
    """The client's half of a SPDY/3 session: its own header compressor,
    whose zlib stream runs across all the header blocks it sends."""

    def __init__(self):
        self.deflate = zlib.compressobj(zdict=spdy.HEADER_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)

    def block(self, headers: dict) -> bytes:
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def control(kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload

    def syn_stream(self, sid: int, headers: dict, fin: bool = False) -> bytes:
        payload = struct.pack(">IIH", sid, 0, 0) + self.block(headers)
        return self.control(spdy.SYN_STREAM, spdy.FLAG_FIN if fin else 0, payload)

    @staticmethod
    def data(sid: int, data: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", sid, ((spdy.FLAG_FIN if fin else 0) << 24) | len(data)) + data


def parse_frames(buf: bytes):
    """(control kind or None, flags, stream id or None, payload) per frame."""
    out = []
    while buf:
        first, second = struct.unpack(">II", buf[:8])
        length = second & 0xFFFFFF
        payload, buf = buf[8:8 + length], buf[8 + length:]
        if first & 0x80000000:
            assert (first >> 16) & 0x7FFF == 3, "SPDY version 3"
            out.append(((first & 0xFFFF), second >> 24, None, payload))
        else:
            out.append((None, second >> 24, first, payload))
    return out


class Wire:
    """The server's transport: what it writes is kept to be read back."""

    def __init__(self):
        self.sent = b""

    def write(self, b):
        self.sent += b

    async def drain(self):
        pass

    def close(self):
        pass

    async def wait_closed(self):
        pass


def serve(frames: bytes):
    """Run a server Connection over `frames` (then EOF); return the
    streams it saw and what it wrote."""
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(frames)
        reader.feed_eof()
        wire, seen = Wire(), []
        conn = spdy.Connection(reader, wire, seen.append)
        await conn.serve()
        received = []
        for st in seen:
            chunks = []
            while (c := st.data.get_nowait()) is not None:
                chunks.append(c)
            received.append((st.id, st.headers, b"".join(chunks)))
        return received, wire.sent
    return asyncio.run(run())


def test_spdy3_dictionary_is_the_drafts():
    # SPDY/3 section 2.6.10.1: 1423 bytes, ending in the accept-charset list.
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options") and d.endswith(b"enq=0.")


def test_spdy_streams_headers_and_data_round_trip():
    """Header blocks share one zlib stream per direction: the second
    SYN_STREAM only inflates after the first (as spdystream sends them)."""
    c = Client()
    frames = (c.syn_stream(1, {"streamtype": "error"}) +
              c.syn_stream(3, {"streamtype": "stdin", "x-multi": "a\0b"}) +
              c.data(3, b"hello ") + c.data(3, b"world", fin=True) +
              c.syn_stream(5, {"streamtype": "stdout"}, fin=True) +
              c.control(spdy.PING, 0, struct.pack(">I", 7)))
    received, sent = serve(frames)
    assert received == [(1, {"streamtype": "error"}, b""),
                        (3, {"streamtype": "stdin", "x-multi": "a"}, b"hello world"),
                        (5, {"streamtype": "stdout"}, b"")]
    replies = parse_frames(sent)
    assert [(k, sid) for k, _, sid, _ in replies[:3]] == [(spdy.SYN_REPLY, None)] * 3
    # Each SYN_REPLY names its stream and carries a header block the client
    # can inflate with the same dictionary, in order.
    for (kind, _, _, payload), want in zip(replies[:3], (1, 3, 5)):
        assert struct.unpack(">I", payload[:4])[0] == want
        raw = c.inflate.decompress(payload[4:])
        assert struct.unpack(">I", raw[:4])[0] == 0
    assert replies[3] == (spdy.PING, 0, None, struct.pack(">I", 7))


def test_spdy_reset_ends_a_stream_and_unknown_frames_are_skipped():
    c = Client()
    frames = (c.syn_stream(1, {"streamtype": "stdin"}) + c.data(1, b"x") +
              c.control(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 1, 65536)) +
              c.control(spdy.SETTINGS, 0, struct.pack(">I", 0)) +
              c.control(spdy.RST_STREAM, 0, struct.pack(">II", 1, spdy.RST_CANCEL)) +
              c.data(9, b"to a stream nobody opened"))
    received, _ = serve(frames)
    assert received == [(1, {"streamtype": "stdin"}, b"x")]


def test_spdy_malformed_frames_end_the_session_only():
    bad_frames = (
        Client.control(spdy.SYN_STREAM, 0, struct.pack(">IIH", 3, 0, 0) + b"not zlib"),
        Client.control(spdy.SYN_STREAM, 0, b"\x00\x00"),  # too short
        struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\x00" * 4)  # SPDY/2
    for bad in bad_frames:
        c = Client()
        frames = c.syn_stream(1, {"streamtype": "stdin"}) + c.data(1, b"before") + bad
        received, _ = serve(frames + c.data(1, b"after"))
        # What came before is delivered, then the stream ends (EOF).
        assert received == [(1, {"streamtype": "stdin"}, b"before")]


def test_spdy_server_frames():
    async def run():
        wire = Wire()
        conn = spdy.Connection(asyncio.StreamReader(), wire, lambda st: None)
        st = spdy.Stream(conn, 3, {})
        conn.streams[3] = st
        await st.write(b"a" * 70000)  # more than one DATA frame's worth
        await st.close()
        await st.write(b"after close")  # dropped
        await conn.goaway()
        return wire.sent
    frames = parse_frames(asyncio.run(run()))
    assert [(k, f, sid, len(p)) for k, f, sid, p in frames] == [
        (None, 0, 3, 65536), (None, 0, 3, 70000 - 65536), (None, spdy.FLAG_FIN, 3, 0),
        (spdy.GOAWAY, 0, None, 8)]
    assert struct.unpack(">II", frames[-1][3]) == (3, 0)


def test_resize_events_across_frames():
    class Feed:
        def __init__(self, parts):
            self.parts = list(parts)

        async def read(self):
            return self.parts.pop(0) if self.parts else None

    async def run():
        return [s async for s in _sizes(Feed([b'{"Width":100,', b'"Height":30}{"Wid',
                                              b'th":80,"Height":24}\n', b"[1]"]))]
    assert asyncio.run(run()) == [(100, 30), (80, 24)]


def test_exit_status_documents():
    assert json.loads(_status(0)) == {"metadata": {}, "status": "Success"}
    st = json.loads(_status(3))
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert st["message"].startswith("command terminated with non-zero exit code")


def test_urls_are_one_time_and_speak_spdy_only():
    """The HTTP front: an unknown token is a 404, a known one without the
    SPDY upgrade a 400, and a token works once."""
    async def request(port, path, headers=""):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        await w.drain()
        line = (await r.readline()).decode()
        w.close()
        return int(line.split()[1])

    async def run():
        srv = StreamingServer(None, None)
        await srv.start()
        try:
            url = srv.url("exec", {"container_id": "x"})
            assert url.startswith(f"http://127.0.0.1:{srv.port}/exec/")
            path = url.split(str(srv.port), 1)[1]
            codes = [await request(srv.port, "/exec/not-a-token"),
                     await request(srv.port, path),
                     await request(srv.port, path)]
            url = srv.url("exec", {"container_id": "x"})
            path = url.split(str(srv.port), 1)[1]
            codes.append(await request(srv.port, path, "Connection: Upgrade\r\n"
                                       "Upgrade: SPDY/3.1\r\n"
                                       "X-Stream-Protocol-Version: v9.nothing\r\n"))
            return codes
        finally:
            await srv.close()
    assert asyncio.run(run()) == [404, 400, 404, 403]


# -- crictl end to end ---------------------------------------------------------

def in_pty(args, keys: bytes, until: bytes, size=(33, 101), timeout=60):
    """Run crictl on a terminal of its own (`-t` needs one) sized `size`,
    type `keys` and read what it prints until `until` or it exits."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    out = b""
    try:
        os.write(master, keys)
        deadline = time.monotonic() + timeout
        while until not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: crictl exited and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        rc = p.wait(timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return rc, out.decode(errors="replace")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def runp(d, name, *ctrs):
    pod_json = write(d, f"pod-{name}.json", pod_config(d, name))
    pod = crictl(d, "runp", pod_json).stdout.strip()
    ids = []
    for i, ctr in enumerate(ctrs):
        path = write(d, f"ctr-{name}-{i}.json", ctr)
        cid = crictl(d, "create", pod, path, pod_json).stdout.strip()
        crictl(d, "start", cid)
        ids.append(cid)
    return pod, ids


def sock(d):
    return "unix://" + d.cri_sock


def state(d, cid):
    return json.loads(crictl(d, "inspect", cid).stdout)["status"]["state"]


SLEEPER = {"metadata": {"name": "sleeper"}, "image": {"image": "busybox"},
           "command": ["sleep", "3600"]}


@needs_crictl
def test_exec_output_streams_exit_code_and_volume(cri):
    pod, (cid,) = runp(cri, "exec", SLEEPER)
    try:
        r = crictl(cri, "exec", cid, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
        assert r.stdout == "out\n" and r.stderr.startswith("err\n")
        # crictl reads the exit code from the v4 error stream's Status.
        assert r.returncode != 0 and "command terminated with exit code 3" in r.stderr
        r = crictl(cri, "exec", cid, "true")
        assert r.returncode == 0 and r.stdout == "" and r.stderr == ""

        # Far past SPDY's 64 KiB initial window, both ways: neither side
        # waits for a WINDOW_UPDATE.
        r = subprocess.run([CRICTL, "--runtime-endpoint", sock(cri), "exec", cid, "sh", "-c",
                            "head -c 3000000 /dev/zero | tr '\\0' x"],
                           capture_output=True, timeout=120)
        assert r.returncode == 0 and r.stdout == b"x" * 3000000
        blob = os.urandom(1 << 20)
        r = subprocess.run([CRICTL, "--runtime-endpoint", sock(cri), "exec", "-i", cid,
                            "md5sum"], input=blob, capture_output=True, timeout=120)
        assert r.stdout.split()[0].decode() == hashlib.md5(blob).hexdigest(), r.stderr

        # Nothing left running in the container but its init.
        procs = crictl(cri, "exec", "-s", cid, "ps", "-o", "comm").stdout.split()[1:]
        assert sorted(procs) == ["ps", "sleep"]
    finally:
        crictl(cri, "rmp", "-f", pod)


@needs_crictl
def test_exec_tty_through_a_terminal(cri):
    pod, (cid,) = runp(cri, "tty", SLEEPER)
    try:
        rc, out = in_pty([CRICTL, "--runtime-endpoint", sock(cri), "exec", "-it", cid, "sh"],
                         b"stty size; tty; echo $((6*7))-done; exit 5\r", until=b"exit code",
                         size=(33, 101))
        # The command ran on a pty of its own, sized as crictl's terminal
        # (the resize stream), and its exit code came back.
        assert "33 101\r\n" in out and "/dev/pts/" in out and "42-done" in out, out
        assert rc != 0 and "command terminated with exit code 5" in out, out
    finally:
        crictl(cri, "rmp", "-f", pod)


@needs_crictl
def test_attach_gets_output_without_a_newline_at_once(cri):
    """crictl attach -i to a shell on stdin (StdinOnce): what it prints
    without a newline arrives while the attach is still open, not when
    the line or the container ends."""
    shell = {"metadata": {"name": "shell"}, "image": {"image": "busybox"},
             "command": ["/bin/sh"], "stdin": True, "stdin_once": True}
    pod, (cid,) = runp(cri, "att", shell)
    p = subprocess.Popen([CRICTL, "--runtime-endpoint", sock(cri), "attach", "-i", cid],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"echo -n no-newline-$((6*7))\n")
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + 60
        while b"no-newline-42" not in got and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 1)[0]:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                got += chunk
        assert got == b"no-newline-42", (got, p.poll())
        assert state(cri, cid) == "CONTAINER_RUNNING"
        p.stdin.write(b"echo bye >&2\n")
        p.stdin.close()  # StdinOnce: the shell's stdin ends with it
        err = p.stderr.read()
        assert p.wait(60) == 0 and b"bye\n" in err
        wait_until(lambda: state(cri, cid) == "CONTAINER_EXITED", what="the shell to exit")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        crictl(cri, "rmp", "-f", pod)


@needs_crictl
def test_attach_without_stdin_splits_streams_and_ends_with_init(cri):
    chatty = {"metadata": {"name": "chatty"}, "image": {"image": "busybox"},
              "command": ["sh", "-c", "while [ ! -e /tmp/go ]; do echo waiting; sleep 0.1; done;"
                          " echo -n to-stdout; echo to-stderr >&2; exit 0"]}
    pod, (cid,) = runp(cri, "att2", chatty)
    p = subprocess.Popen([CRICTL, "--runtime-endpoint", sock(cri), "attach", cid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Attached once its output flows; then let init finish.
        assert p.stdout.readline() == b"waiting\n"
        crictl(cri, "exec", "-s", cid, "touch", "/tmp/go")
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.replace(b"waiting\n", b"") == b"to-stdout"
        assert err == b"to-stderr\n"
        wait_until(lambda: state(cri, cid) == "CONTAINER_EXITED", what="init's exit")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        crictl(cri, "rmp", "-f", pod)


@needs_crictl
def test_attach_tty_resizes_init_and_ends_with_it(cri):
    shell = {"metadata": {"name": "tty"}, "image": {"image": "busybox"},
             "command": ["/bin/sh"], "stdin": True, "tty": True}
    pod, (cid,) = runp(cri, "atty", shell)
    try:
        rc, out = in_pty([CRICTL, "--runtime-endpoint", sock(cri), "attach", "-it", cid],
                         b"stty size; echo -n $((6*7))-nonl; exit\r", until=b"\x00never",
                         size=(41, 123))
        assert rc == 0 and "41 123\r\n" in out and "42-nonl" in out, out
        wait_until(lambda: state(cri, cid) == "CONTAINER_EXITED", what="init to exit")
    finally:
        crictl(cri, "rmp", "-f", pod)


@needs_crictl
def test_port_forward_carries_megabytes(cri):
    """A host port relayed into the pod's own network namespace (loopback
    only: the host reaches it only through the forward)."""
    web = {"metadata": {"name": "web"}, "image": {"image": "busybox"},
           "command": ["sh", "-c", "mkdir -p /tmp/www && head -c 2500000 /dev/urandom > "
                       "/tmp/www/blob && md5sum /tmp/www/blob > /tmp/www/sum && "
                       "exec httpd -f -p 8080 -h /tmp/www"]}
    pod, (cid,) = runp(cri, "pf", web)
    # Serving before the forward starts: crictl ends a forward at the first
    # connection the pod refuses.
    wait_until(lambda: crictl(cri, "exec", "-s", cid, "wget", "-q", "-O", "-",
                              "http://127.0.0.1:8080/sum", check=False).stdout,
               60, what="httpd in the pod")
    port, closed = free_ports(2)
    pf = subprocess.Popen([CRICTL, "--runtime-endpoint", sock(cri), "port-forward", pod,
                           f"{port}:8080", f"{closed}:9999"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)

    def get(path, port=port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
                c.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
        except OSError:
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        return body if head.split(b"\r\n")[0].split()[1:2] == [b"200"] else None

    try:
        # Listening on both host ports once it names the second.
        while f"127.0.0.1:{closed} " not in (line := pf.stdout.readline()):
            assert "Forwarding from" in line, line
        want = get("/sum")
        blob = get("/blob")
        assert len(blob) == 2500000 and hashlib.md5(blob).hexdigest() == want.split()[0].decode()
        # A port nothing listens on in the pod: the daemon's reason comes
        # back on that connection's error stream, and crictl (client-go's
        # port-forward) then ends the whole forward, as with the kubelet.
        assert get("/sum", closed) is None
        rest = pf.communicate(timeout=60)[0]
        assert "failed to connect to port 9999 in the pod" in rest, rest
        assert "lost connection to pod" in rest, rest
    finally:
        pf.terminate()
        pf.wait(10)
        crictl(cri, "rmp", "-f", pod)


def fds(pid):
    return sorted(os.listdir(f"/proc/{pid}/fd"), key=int)


@needs_crictl
def test_sessions_leave_no_descriptors_behind(cri):
    """Exec, attach and port-forward sessions, ended every way they end,
    leave the daemon and the container's shim with the descriptors they
    had (like containerd's TestShimDoesNotLeakPipes)."""
    shell = {"metadata": {"name": "sh"}, "image": {"image": "busybox"},
             "command": ["sh", "-c", "httpd -p 8080 -h /etc; exec sh"], "stdin": True}
    pod, (cid,) = runp(cri, "fds", shell)
    init = json.loads(crictl(cri, "inspect", cid).stdout)["info"]["pid"]
    with open(f"/proc/{init}/stat") as f:  # init's parent: the shim (subreaper)
        shim = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{shim}/comm") as f:
        assert f.read().startswith("containerd-py-s")  # comm: 15 characters
    port, = free_ports(1)

    def sessions():
        crictl(cri, "exec", cid, "true")
        crictl(cri, "exec", cid, "false", check=False)
        subprocess.run([CRICTL, "--runtime-endpoint", sock(cri), "exec", "-i", cid, "cat"],
                       input=b"x" * 100000, capture_output=True, timeout=60)
        in_pty([CRICTL, "--runtime-endpoint", sock(cri), "exec", "-it", cid, "sh"],
               b"exit 0\r", until=b"\x00never")
        # An attach that the client ends (its stdin closes; no StdinOnce).
        subprocess.run([CRICTL, "--runtime-endpoint", sock(cri), "attach", "-i", cid],
                       input=b"echo hi\n", capture_output=True, timeout=60)
        pf = subprocess.Popen([CRICTL, "--runtime-endpoint", sock(cri), "port-forward", pod,
                               f"{port}:8080"], stdout=subprocess.PIPE, text=True)
        assert "Forwarding from" in pf.stdout.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            c.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
            while c.recv(65536):
                pass
        pf.terminate()
        pf.wait(10)

    sessions()  # the first of each may open what stays open (thread pools)
    def now():
        return fds(cri.proc.pid), fds(shim)

    before = now()
    sessions()
    sessions()
    try:
        wait_until(lambda: now() == before, 30, what="the descriptors of before")
    except AssertionError:
        raise AssertionError(f"daemon, shim descriptors: {before} -> {now()}") from None
    assert state(cri, cid) == "CONTAINER_RUNNING"
    crictl(cri, "rmp", "-f", pod)

