"""The command-line client, run as a user would, against the real daemon."""

import json
import os
import subprocess

from conftest import DAEMON, ROOT, host_pid_alive, wait_until


def cli(daemon, *args, check=True):
    p = subprocess.run([DAEMON, "--address", daemon.address, *args],
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def test_cli_walkthrough(daemon, api, cid):
    c = cid("cli")
    bundle = os.path.join(ROOT, "bundles", "busybox")
    created = json.loads(cli(daemon, "run", "-d", "--format", "json", "--label", "app=demo",
                             c, bundle).stdout)
    pid = created["processes"][0]["pid"]
    assert host_pid_alive(pid) and created["labels"] == {"app": "demo"}
    listed = json.loads(cli(daemon, "ps", "--label", "app=demo", "--format", "json").stdout)
    assert c in [x["id"] for x in listed]
    p = cli(daemon, "exec", c, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    # The example bundle counts every second: its log grows.
    wait_until(lambda: cli(daemon, "logs", c).stdout.split()[:2] == ["0", "1"],
               what="the counter in the logs")
    assert cli(daemon, "logs", c, "--tail", "1").stdout.count("\n") == 1
    # Commands that change a container print its id, as podman's do.
    assert cli(daemon, "pause", c).stdout == c + "\n"
    assert api.get(c)["status"] == "paused"
    assert cli(daemon, "unpause", c).stdout == c + "\n"
    assert api.get(c)["status"] == "running"
    stopped = json.loads(cli(daemon, "stop", "-t", "5", "--format", "json", c).stdout)
    assert stopped["status"] == "stopped" and stopped["exitStatus"] == 0
    assert not host_pid_alive(pid)
    cli(daemon, "rm", c)
    p = cli(daemon, "inspect", c, check=False)
    # podman's exit status for an error of the engine, and one line saying it.
    assert p.returncode == 125 and "no such container" in p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_cli_reports_an_unreachable_daemon():
    p = subprocess.run([DAEMON, "--address", "127.0.0.1:1", "ps"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and "cannot reach the daemon" in p.stderr
    assert "containerd-py daemon" in p.stderr  # says how to start one


def test_cli_run_with_settings(daemon, cid, tmp_path):
    (tmp_path / "motd").write_text("hi from the host\n")
    c = cid("cli")
    bundle = os.path.join(ROOT, "bundles", "busybox")
    created = json.loads(cli(
        daemon, "run", "-d", "--format", "json", "--env", "A=1", "-e", "B=2", "--hostname", "clihost", "--init",
        "--mount", f"type=bind,src={tmp_path},dst=/app,ro", "--workdir", "/app",
        "--memory", "64M", c, bundle, "--", "tail", "-f", "/dev/null").stdout)
    try:
        assert created["args"] == ["tail", "-f", "/dev/null"] and created["init"] is True
        p = cli(daemon, "exec", c, "sh", "-c", "echo $A$B; hostname; pwd; cat motd")
        assert p.stdout.split("\n")[:4] == ["12", "clihost", "/app", "hi from the host"]
        # A setting the daemon refuses is the daemon's 400 on stderr.
        p = cli(daemon, "run", "-d", "--user", "nosuch", cid("cli"), bundle, check=False)
        assert p.returncode == 125 and "unknown user 'nosuch'" in p.stderr
    finally:
        cli(daemon, "rm", "-f", c)
