"""Terminals and websockets on real containers: attach to init, interactive
exec with and without a pty, a terminal init and its resize."""

import asyncio
import json
import os

import aiohttp
import pytest

from conftest import APIError, host_pid_alive, wait_until


def in_container(pid: int, path: str) -> str | None:
    """A file's content as the container sees it (through its root)."""
    try:
        with open(f"/proc/{pid}/root{path}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


async def _ws(daemon, path):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"http://{daemon.address}{path}")
    return session, ws


async def test_attach_writes_stdin_and_reads_output(api, daemon, bundle, cid):
    c = cid()
    api.create(c, bundle(["sh", "-c", "while read l; do echo got:$l; done"]))
    session, ws = await _ws(daemon, f"/containers/{c}/attach")
    try:
        await ws.send_str("hello\n")
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.data == "got:hello\n"
        await ws.send_str("again\n")
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.data == "got:again\n"
    finally:
        await ws.close()
        await session.close()
    # What went through attach is in the container's log too.
    lines = [e["line"] for e in api.logs(c)]
    assert lines == ["got:hello", "got:again"]
    api.delete(c, force=True)


async def test_websocket_exec_with_a_terminal(api, daemon, bundle, cid):
    c = cid()
    api.create(c, bundle(["sleep", "3600"]))
    session, ws = await _ws(daemon, f"/containers/{c}/exec/ws?command=sh&w=100&h=40")
    out, final = b"", None
    try:
        first = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        assert host_pid_alive(first["pid"])
        await ws.send_str("stty size; tty; echo $((6*7)); read go; stty size; exit 3\n")
        while b"42" not in out:
            out += (await asyncio.wait_for(ws.receive_bytes(), 10))
        # Resized live while the shell waits: its second `stty size` sees it.
        api.request("POST", f"/containers/{c}/resize",
                    query={"w": 61, "h": 17, "pid": first["pid"]})
        await ws.send_str("go\n")
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                out += msg.data
            elif msg.type == aiohttp.WSMsgType.TEXT:
                final = json.loads(msg.data)
    finally:
        await session.close()
    text = out.decode(errors="replace")
    assert "40 100" in text  # the size asked for
    assert "/dev/pts/" in text  # a real pty inside the container
    assert "42" in text
    assert "17 61" in text  # the live resize
    assert final == {"exitStatus": 3}
    # The shell is gone from the container.
    assert not any("sh" == p["command"] for p in api.top(c)["processes"])
    api.delete(c, force=True)


async def test_websocket_exec_without_terminal_and_disconnect_kills(api, daemon, bundle, cid):
    c = cid()
    api.create(c, bundle(["sleep", "3600"]))
    session, ws = await _ws(daemon, f"/containers/{c}/exec/ws?command=cat&terminal=false")
    try:
        await ws.send_str("piped\n")
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.data == b"piped\n"
        cat = [p for p in api.top(c)["processes"] if p["command"] == "cat"]
        assert len(cat) == 1
    finally:
        await ws.close()
        await session.close()
    # Leaving the websocket ends the process, not only the runtime.
    wait_until(lambda: not host_pid_alive(cat[0]["pid"]), 10, what="cat to be killed")
    api.delete(c, force=True)


async def test_websocket_exec_errors_are_json(api, daemon, bundle, cid):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{daemon.address}/containers/nosuch/exec/ws?command=sh") as r:
            assert r.status == 404 and "nosuch" in (await r.json())["error"]
        c = cid()
        api.create(c, bundle(["true"]))
        wait_until(lambda: api.get(c)["status"] == "stopped", what="exit")
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket",
                   "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        async with s.get(f"http://{daemon.address}/containers/{c}/exec/ws?command=sh",
                         headers=upgrade) as r:
            body = await r.json()
            assert r.status == 409 and body["status"] == "stopped"
        async with s.get(f"http://{daemon.address}/containers/{c}/exec/ws") as r:
            assert r.status == 400
        api.delete(c)


def test_terminal_init_and_resize(api, bundle, cid):
    c = cid()
    b = bundle(["sh", "-c", "while true; do stty size > /tmp/size; sleep 0.1; done"],
               terminal=True)
    pid = api.create(c, b)["processes"][0]["pid"]
    assert os.readlink(f"/proc/{pid}/fd/0").startswith("/dev/pts/")
    api.request("POST", f"/containers/{c}/resize", query={"w": 123, "h": 45})
    wait_until(lambda: in_container(pid, "/tmp/size") == "45 123",
               what="the pty to take the new size")
    with pytest.raises(APIError) as e:
        api.request("POST", f"/containers/{c}/resize", query={"w": 0, "h": 45})
    assert e.value.status == 400
    api.delete(c, force=True)


def test_resize_without_terminal_is_409(api, bundle, cid):
    c = cid()
    api.create(c, bundle(["sleep", "3600"]))
    with pytest.raises(APIError) as e:
        api.request("POST", f"/containers/{c}/resize", query={"w": 80, "h": 24})
    assert e.value.status == 409
    api.delete(c, force=True)


def test_exec_process_with_terminal_and_its_resize(api, bundle, cid):
    c = cid()
    api.create(c, bundle(["sleep", "3600"]))
    p = api.add_process(c, ["sh", "-c", "while true; do stty size > /tmp/xsize; sleep 0.1; done"],
                        terminal=True)
    assert p["terminal"] is True
    assert os.readlink(f"/proc/{p['pid']}/fd/0").startswith("/dev/pts/")
    api.request("POST", f"/containers/{c}/resize", query={"w": 77, "h": 11, "pid": p["pid"]})
    wait_until(lambda: in_container(p["pid"], "/tmp/xsize") == "11 77",
               what="the exec'd pty to take the new size")
    api.signal_process(c, p["pid"], 9)
    wait_until(lambda: len(api.get(c)["processes"]) == 1, what="the process to leave")
    api.delete(c, force=True)
