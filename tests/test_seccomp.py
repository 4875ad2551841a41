"""`seccomp` on REST create: the runtime default seen from inside a real
container (filtered, a syscall outside the allow list refused), a profile
file applied, and bad values a 400 that leaves nothing behind; plus the
default profile's rules as pure logic."""

import json
import os

import pytest

from containerd_py.runtime import seccomp
from test_create_settings import SLEEPER, assert_nothing_left, bad_create, out, sh


def test_default_profile_rules():
    plain = seccomp.default_profile(["CAP_CHOWN"], arch="x86_64")
    admin = seccomp.default_profile(["CAP_SYS_ADMIN"], arch="x86_64")
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]

    def unconditional(p):
        return {n for r in p["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
                for n in r["names"]}
    for name in ("read", "getuid32", "fstat64", "clock_gettime64", "arch_prctl"):
        assert name in unconditional(plain), name
    for name in ("mount", "unshare", "sethostname", "setns", "clone", "reboot", "ptrace"):
        assert name not in unconditional(plain), name
    assert {"mount", "unshare", "sethostname", "clone"} <= unconditional(admin)
    # Without CAP_SYS_ADMIN: clone only without namespace flags, clone3 ENOSYS.
    clone = next(r for r in plain["syscalls"] if r["names"] == ["clone"])
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" and clone["args"][0]["value"] & 0x10000000
    assert next(r for r in plain["syscalls"] if r["names"] == ["clone3"])["errnoRet"] == 38
    assert not any(r["names"] == ["clone3"] for r in admin["syscalls"])


def test_rest_default_filters_inside(api, bundle, cid):
    c = cid()
    api.create(c, bundle(SLEEPER), seccomp="default")
    try:
        assert api.get(c)["seccomp"] == "default"
        assert out(api, c, "grep Seccomp: /proc/self/status") == "Seccomp:\t2"
        r = sh(api, c, "unshare -U true")
        assert r["exitStatus"] == 1
        assert "unshare(0x10000000): Operation not permitted" in r["stderr"], r
    finally:
        api.delete(c, force=True)
    c = cid()
    api.create(c, bundle(SLEEPER))
    try:
        assert api.get(c)["seccomp"] == "unconfined"
        assert out(api, c, "grep Seccomp: /proc/self/status") == "Seccomp:\t0"
    finally:
        api.delete(c, force=True)


def test_rest_profile_file(api, bundle, cid, tmp_path):
    profile = tmp_path / "no-chmod.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}))
    c = cid()
    api.create(c, bundle(SLEEPER), seccomp=str(profile))
    try:
        r = sh(api, c, "touch /tmp/f && chmod 600 /tmp/f")
        assert r["exitStatus"] != 0 and "Operation not permitted" in r["stderr"]
    finally:
        api.delete(c, force=True)


@pytest.mark.parametrize("value, words", [
    ("strict", "absolute path"), (1, "absolute path"),
    ("/nonexistent/profile.json", "No such file"), ("/etc/hostname", "not JSON"),
])
def test_rest_bad_seccomp_is_400(api, daemon, bundle, cid, value, words):
    c = cid()
    body = bad_create(api, c, bundle(SLEEPER), seccomp=value)
    assert body["field"] == "seccomp" and words in body["error"], body
    assert_nothing_left(api, daemon, c)
