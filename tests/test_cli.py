"""The command-line client, run as a user would, against the real daemon:
a subprocess for every command, a real pty for the interactive ones."""

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

from conftest import DAEMON, ROOT, host_pid_alive, wait_until

BUSYBOX = os.path.join(ROOT, "bundles", "busybox")


def cli(daemon, *args, check=True, input=None):
    p = subprocess.run([DAEMON, "--address", daemon.address, *args], input=input,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


class Terminal:
    """The CLI on a real pty, as a person at a terminal runs it."""

    def __init__(self, daemon, *args, cols=100, rows=30):
        self.master, slave = pty.openpty()
        self.resize(cols, rows, signal_child=False)
        self.proc = subprocess.Popen([DAEMON, "--address", daemon.address, *args],
                                     stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.seen = b""

    def resize(self, cols, rows, signal_child=True):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if signal_child:
            os.killpg(self.proc.pid, signal.SIGWINCH)

    def send(self, data: bytes):
        os.write(self.master, data)

    def expect(self, text: bytes, timeout=20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; the terminal shows {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the CLI exited and closed the pty
                    continue
        return self.seen

    def wait(self, timeout=30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            os.close(self.master)


def test_cli_walkthrough(daemon, api, cid):
    c = cid("cli")
    created = json.loads(cli(daemon, "run", "-d", "--format", "json", "--label", "app=demo",
                             c, BUSYBOX).stdout)
    pid = created["processes"][0]["pid"]
    assert host_pid_alive(pid) and created["labels"] == {"app": "demo"}
    listed = json.loads(cli(daemon, "ps", "--label", "app=demo", "--format", "json").stdout)
    assert c in [x["id"] for x in listed]
    # A table for people: aligned columns under a header.
    rows = cli(daemon, "ps").stdout.splitlines()
    assert rows[0].split()[:2] == ["ID", "NAME"]
    assert any(r.split()[0] == c and "running" in r for r in rows[1:])
    assert c in cli(daemon, "ps", "-q").stdout.split()
    p = cli(daemon, "exec", c, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert cli(daemon, "exec", "-e", "FOO=bar", "-w", "/tmp", c, "sh", "-c",
               "echo $FOO; pwd").stdout == "bar\n/tmp\n"
    # The example bundle counts every second: its log grows.
    wait_until(lambda: cli(daemon, "logs", c).stdout.split()[:2] == ["0", "1"],
               what="the counter in the logs")
    assert cli(daemon, "logs", c, "--tail", "1").stdout.count("\n") == 1
    stamped = cli(daemon, "logs", "-t", "--tail", "1", c).stdout.split()
    assert stamped[0].startswith("20") and stamped[0].endswith("Z")
    # Commands that change a container print its id, as podman's do.
    assert cli(daemon, "pause", c).stdout == c + "\n"
    assert api.get(c)["status"] == "paused"
    assert cli(daemon, "unpause", c).stdout == c + "\n"
    assert api.get(c)["status"] == "running"
    assert cli(daemon, "rename", c, c + "-n").stdout == c + "\n"
    assert api.get(c)["name"] == c + "-n"
    assert cli(daemon, "update", "--memory", "64m", c).stdout == c + "\n"
    assert api.get(c)["resources"]["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    top = cli(daemon, "top", c).stdout.splitlines()
    assert top[0].split()[0] == "PID" and str(pid) in top[1].split()
    stats = cli(daemon, "stats", "--no-stream", c).stdout.splitlines()
    assert stats[0].startswith("ID") and stats[1].split()[0] == c
    stopped = json.loads(cli(daemon, "stop", "-t", "5", "--format", "json", c).stdout)
    assert stopped["status"] == "stopped" and stopped["exitStatus"] == 0
    assert not host_pid_alive(pid)
    assert cli(daemon, "wait", c).stdout == "0\n"
    cli(daemon, "rm", c)
    p = cli(daemon, "inspect", c, check=False)
    # podman's exit status for an error of the engine, and one line saying it.
    assert p.returncode == 125 and "no such container" in p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_cli_kill_takes_signal_names(daemon, api, cid):
    a, b = cid("kill"), cid("kill")
    for c in (a, b):
        cli(daemon, "run", "-d", c, BUSYBOX, "--", "sh", "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done")
    # The bundle's trap turns SIGTERM into exit 42; names and numbers alike.
    assert cli(daemon, "kill", "-s", "TERM", a).stdout == a + "\n"
    assert cli(daemon, "kill", "--signal", "SIGTERM", b).stdout == b + "\n"
    for c in (a, b):
        wait_until(lambda: api.get(c)["status"] == "stopped", what="stopped by TERM")
        assert api.get(c)["exitStatus"] == 42
    p = cli(daemon, "kill", "-s", "NOSUCH", a, check=False)
    assert p.returncode == 2 and "unknown signal" in p.stderr
    # rm takes several ids.
    assert cli(daemon, "rm", a, b).stdout.split() == [a, b]


def test_cli_foreground_run_create_start(daemon, api, cid):
    c = cid("fg")
    p = cli(daemon, "run", c, BUSYBOX, "--", "sh", "-c", "echo first; exit 5", check=False)
    # The container's own output and exit status, none of it lost to the
    # time between the start and the attach.
    assert (p.returncode, p.stdout) == (5, "first\n")
    cli(daemon, "rm", c)
    gone = cid("fg")
    p = cli(daemon, "run", "--rm", gone, BUSYBOX, "--", "sh", "-c",
            "sleep 0.3; echo bye; exit 6", check=False)
    assert (p.returncode, p.stdout) == (6, "bye\n")
    assert gone not in [x["id"] for x in api.list()]
    c = cid("cs")
    assert cli(daemon, "create", c, BUSYBOX, "--", "sh", "-c", "echo hi; exit 4").stdout \
        == c + "\n"
    assert api.get(c)["status"] == "created"
    assert "created" in cli(daemon, "ps", "-a").stdout
    p = cli(daemon, "start", "-a", c, check=False)
    assert p.returncode == 4 and "hi\n" in p.stdout
    cli(daemon, "rm", c)


def test_cli_run_it_is_a_real_terminal(daemon, api, cid):
    c = cid("tty")
    t = Terminal(daemon, "run", "-it", "--rm", c, BUSYBOX, "--", "sh", cols=91, rows=27)
    t.expect(b"# ")
    t.send(b"echo $((6*7)); stty size\r")
    t.expect(b"42")
    t.expect(b"27 91")
    # A resize of the user's terminal reaches the container's pty.
    t.resize(120, 40)
    time.sleep(0.5)
    t.send(b"stty size\r")
    t.expect(b"40 120")
    t.send(b"exit 3\r")
    assert t.wait() == 3
    wait_until(lambda: c not in [x["id"] for x in api.list()], what="--rm to delete it")


def test_cli_detach_and_attach(daemon, api, cid):
    c = cid("det")
    t = Terminal(daemon, "run", "-it", c, BUSYBOX, "--", "sh")
    t.expect(b"# ")
    t.send(b"echo one\r")
    t.expect(b"one")
    t.send(b"\x10\x11")  # ctrl-p ctrl-q
    assert t.wait() == 0
    assert api.get(c)["status"] == "running"
    t = Terminal(daemon, "attach", c)
    # Typed before the client is up: kept, not flushed when it goes raw.
    t.send(b"echo two; exit 9\r")
    t.expect(b"two")
    assert t.wait() == 9
    assert api.get(c)["exitStatus"] == 9
    cli(daemon, "rm", c)


def test_cli_exec_it_and_pipes(daemon, cid):
    c = cid("ex")
    cli(daemon, "run", "-d", c, BUSYBOX)
    try:
        t = Terminal(daemon, "exec", "-it", "-e", "X=y", c, "sh", cols=81, rows=21)
        t.expect(b"# ")
        t.send(b"echo $X; stty size; tty\r")
        t.expect(b"21 81")
        assert b"/dev/pts/" in t.expect(b"/dev/pts/")
        t.send(b"exit 7\r")
        assert t.wait() == 7
        # Without a terminal: stdin is a pipe, its end ends the process's input.
        p = cli(daemon, "exec", "-i", c, "sh", "-c", "cat; exit 2", input="piped\n",
                check=False)
        assert (p.returncode, p.stdout) == (2, "piped\n")
    finally:
        cli(daemon, "rm", "-f", c)


def test_cli_help_describes_every_command():
    import argparse

    from containerd_py.cli import build_parser
    p = subprocess.run([DAEMON, "--help"], capture_output=True, text=True)
    for group in ("containers:", "images:", "networks:", "checkpoints:", "pools:", "system:"):
        assert group in p.stdout

    def parsers(parser, path):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                seen = set()
                for name, sub in action.choices.items():
                    if id(sub) not in seen and not name.startswith("__"):
                        seen.add(id(sub))
                        yield from parsers(sub, path + [name])

    listed = set()
    for path, parser in parsers(build_parser(), []):
        if len(path) == 1:
            listed.add(path[0])
            # Each command is in the grouped list with its one-line text.
            assert f"  {path[0]}" in p.stdout, path
        if path:
            assert parser.description, f"{' '.join(path)} has no description"
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction,
                                   argparse._VersionAction)):
                continue
            assert action.help, f"{' '.join(path)}: {action.dest} has no help text"
    assert {"run", "exec", "images", "network", "checkpoint", "pool", "events",
            "attach", "update", "migrate", "restore"} <= listed


def test_cli_completion_and_events(daemon, cid):
    c = cid("comp")
    cli(daemon, "run", "-d", c, BUSYBOX)
    script = cli(daemon, "completion", "bash").stdout
    assert "complete -o default -F _containerd_py containerd-py" in script
    # The names the shell offers come from the daemon.
    assert c in cli(daemon, "__complete", "containers").stdout.split()
    out = subprocess.run(["bash", "-c", script + f"""
COMP_WORDS=(containerd-py --address {daemon.address} rm {c[:6]}); COMP_CWORD=4
CONTAINERD_PY_ADDRESS={daemon.address} _containerd_py; echo "${{COMPREPLY[@]}}" """],
                         capture_output=True, text=True, env={**os.environ,
                         "PATH": os.path.dirname(DAEMON) + ":" + os.environ["PATH"]})
    assert c in out.stdout.split(), out
    cli(daemon, "rm", "-f", c)
    ev = cli(daemon, "events", "--since", "0", "--no-follow", "--filter", f"container={c}",
             "--format", "json").stdout.splitlines()
    types = [json.loads(x)["type"] for x in ev]
    assert types[0] == "start-container" and "delete" in types
    assert all(json.loads(x)["id"] == c for x in ev)


def test_cli_reports_an_unreachable_daemon():
    p = subprocess.run([DAEMON, "--address", "127.0.0.1:1", "ps"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and "cannot reach the daemon" in p.stderr
    assert "containerd-py daemon" in p.stderr  # says how to start one
    assert "Traceback" not in p.stderr


def test_cli_run_with_settings(daemon, cid, tmp_path):
    (tmp_path / "motd").write_text("hi from the host\n")
    c = cid("cli")
    created = json.loads(cli(
        daemon, "run", "-d", "--format", "json", "--env", "A=1", "-e", "B=2",
        "--hostname", "clihost", "--init",
        "--mount", f"type=bind,src={tmp_path},dst=/app,ro", "--workdir", "/app",
        "--memory", "64M", c, BUSYBOX, "--", "tail", "-f", "/dev/null").stdout)
    try:
        assert created["args"] == ["tail", "-f", "/dev/null"] and created["init"] is True
        p = cli(daemon, "exec", c, "sh", "-c", "echo $A$B; hostname; pwd; cat motd")
        assert p.stdout.split("\n")[:4] == ["12", "clihost", "/app", "hi from the host"]
        # A setting the daemon refuses is the daemon's 400 on stderr.
        p = cli(daemon, "run", "-d", "--user", "nosuch", cid("cli"), BUSYBOX, check=False)
        assert p.returncode == 125 and "unknown user 'nosuch'" in p.stderr
    finally:
        cli(daemon, "rm", "-f", c)
