#!/usr/bin/env python3
"""Build the OCI bundles used by the tests, the benchmarks and `make run`.

Standard library only.  Run from the repository root as

    .venv/bin/python bundles/build.py           # build (idempotent, fast when done)
    .venv/bin/python bundles/build.py --clean   # remove generated output

It makes:

* ``bundles/busybox/rootfs/``: a tiny root filesystem from the host's static
  busybox (busybox-static): ``/bin/busybox`` plus a symlink per applet,
  ``/etc/passwd``, ``/etc/group``, ``/etc/hosts`` and the mount points
  ``/proc /sys /dev /tmp /usr /app``.  Containers mount it read-only (with a
  tmpfs at ``/tmp``), so any number of them can share it.
* ``bundles/busybox/config.json``: an OCI runtime spec like ``runc spec``
  makes, running a counter loop (one number a second on stdout).
* ``bundles/web/config.json``: busybox ``httpd`` on port 80 (the README's
  web server walk-through), on the same rootfs.
* ``bundles/pyapp/config.json``: a slow-starting Python service
  (``bundles/pyapp/app.py``) run by the host's ``/usr/bin/python3``, which is
  bind-mounted read-only into the busybox rootfs (host ``/usr``, plus
  ``/lib*`` where those are not symlinks into ``/usr``).  ``app.py`` prints
  ``ready`` after ~1-3 s of initialisation, then answers every stdin line with
  ``pong <line>``.  ``APP_MEMORY_MB`` makes it allocate and touch that much
  more memory (for restore benchmarks).

Tests build more bundles cheaply, all sharing the one rootfs::

    sys.path.insert(0, "bundles")
    from build import write_bundle, pyapp_bundle
    write_bundle(tmp_path / "b1", ["sh", "-c", "echo hi"])
    pyapp_bundle(tmp_path / "b2", memory_mb=64)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

HERE = Path(__file__).resolve().parent
# Run as a script (`python bundles/build.py`) or imported by the tests: the
# daemon's package is beside this folder either way.
sys.path.insert(0, str(HERE.parent))
from containerd_py.runtime.spec import default_spec  # noqa: E402

BUSYBOX_BUNDLE = HERE / "busybox"
BUSYBOX_ROOTFS = BUSYBOX_BUNDLE / "rootfs"
PYAPP_BUNDLE = HERE / "pyapp"
PYAPP_APP = PYAPP_BUNDLE / "app.py"
WEB_BUNDLE = HERE / "web"

HOST_BUSYBOX = Path("/bin/busybox")
HOST_PYTHON = "/usr/bin/python3"

# Bump when the rootfs layout changes, so existing rootfs dirs get rebuilt.
ROOTFS_VERSION = 1
STAMP_NAME = ".containerd-py-rootfs"

HOSTNAME = "containerd-py"
# The trap makes `stop` graceful: as PID 1 of its namespace, sh would
# otherwise ignore SIGTERM and only SIGKILL (after the timeout) would end it.
COUNTER_ARGS = ["sh", "-c",
                "trap 'exit 0' TERM; i=0; while true; do echo $i; i=$((i+1)); sleep 1; done"]
# bundles/web: busybox httpd on port 80 with a page saying when it started (a
# clone restored from a checkpoint shows its original's time). httpd forks
# into the background; sh stays PID 1 so that SIGTERM (the trap) stops it.
WEB_ARGS = ["sh", "-c",
            "trap 'exit 0' TERM; mkdir -p /tmp/www && "
            "echo \"hello from $(hostname), started $(date -u +%T)\" > /tmp/www/index.html && "
            "httpd -p 80 -h /tmp/www && tail -f /dev/null & wait"]
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "xterm",
    "HOME": "/root",
}
LIB_DIRS = ("lib", "lib32", "lib64", "libx32")


class BuildError(Exception):
    pass


# ----------------------------------------------------------------- OCI spec

def _mount_entry(m: Any) -> dict[str, Any]:
    """An OCI mount dict, or (source, destination[, options]) for a bind mount
    (read-only unless options say otherwise)."""
    if isinstance(m, Mapping):
        return dict(m)
    if isinstance(m, (tuple, list)) and len(m) in (2, 3):
        src, dst = str(m[0]), str(m[1])
        opts = list(m[2]) if len(m) == 3 else ["rbind", "ro"]
        if not any(o in ("bind", "rbind") for o in opts):
            opts = ["rbind"] + opts
        return {"destination": dst, "type": "bind", "source": os.path.abspath(src), "options": opts}
    raise TypeError(f"mount must be an OCI mount dict or (source, dest[, options]): {m!r}")


def _env_list(env: Mapping[str, str] | Sequence[str] | None) -> list[str]:
    merged = dict(DEFAULT_ENV)
    if env is None:
        pass
    elif isinstance(env, Mapping):
        merged.update({str(k): str(v) for k, v in env.items()})
    else:
        for item in env:
            k, sep, v = str(item).partition("=")
            if not sep:
                raise ValueError(f"env entry without '=': {item!r}")
            merged[k] = v
    return [f"{k}={v}" for k, v in merged.items()]


def make_spec(args: Sequence[str], *, rootfs: str | os.PathLike = "rootfs", terminal: bool = False,
              env: Mapping[str, str] | Sequence[str] | None = None, cwd: str = "/",
              readonly: bool = True, mounts: Iterable[Any] = (),
              annotations: Mapping[str, str] | None = None,
              memory_limit: int | None = None, hostname: str = HOSTNAME) -> dict[str, Any]:
    """The OCI runtime spec (as a dict) `runc spec` would make, adapted."""
    if isinstance(args, str) or not args:
        raise ValueError("args must be a non-empty list of strings")
    # The daemon's own base (`runc spec`'s defaults), so that a bundle built
    # here and an image container differ only in what the caller chose.
    spec: dict[str, Any] = default_spec()
    proc = spec["process"]
    proc["terminal"] = bool(terminal)
    proc["args"] = [str(a) for a in args]
    proc["env"] = _env_list(env)
    proc["cwd"] = cwd
    spec["root"] = {"path": str(rootfs), "readonly": bool(readonly)}
    spec["hostname"] = hostname
    # A private, writable /tmp (always: the shared rootfs is never written to).
    spec["mounts"] += [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}]
    spec["mounts"] += [_mount_entry(m) for m in mounts]
    if annotations:
        spec["annotations"] = {str(k): str(v) for k, v in annotations.items()}
    if memory_limit is not None:
        spec["linux"]["resources"]["memory"] = {"limit": int(memory_limit)}
    return spec


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def write_bundle(path: str | os.PathLike, args: Sequence[str], *,
                 rootfs: str | os.PathLike = BUSYBOX_ROOTFS, terminal: bool = False,
                 env: Mapping[str, str] | Sequence[str] | None = None, cwd: str = "/",
                 readonly: bool = True, mounts: Iterable[Any] = (),
                 annotations: Mapping[str, str] | None = None,
                 memory_limit: int | None = None) -> Path:
    """Write ``<path>/config.json`` (creating ``path``) for a container running
    ``args`` on the shared ``rootfs`` (an absolute path; default: the busybox
    rootfs, which must have been built).  Returns ``path`` as a Path.

    ``env`` (dict or ["K=V"]) is merged over PATH/TERM/HOME.  ``mounts`` are
    OCI mount dicts or ``(source, dest[, options])`` bind mounts (read-only by
    default).  ``memory_limit`` is in bytes."""
    path = Path(path)
    rootfs = Path(rootfs)
    if not rootfs.is_absolute():
        raise ValueError(f"rootfs must be an absolute path: {rootfs}")
    path.mkdir(parents=True, exist_ok=True)
    spec = make_spec(args, rootfs=str(rootfs), terminal=terminal, env=env, cwd=cwd,
                     readonly=readonly, mounts=mounts, annotations=annotations,
                     memory_limit=memory_limit)
    _write_if_changed(path / "config.json", json.dumps(spec, indent="\t") + "\n")
    return path


# -------------------------------------------------------- host Python mounts

def host_python_mounts() -> list[dict[str, Any]]:
    """Read-only bind mounts that make the host's /usr/bin/python3 work inside
    the busybox rootfs: /usr, and each /lib* that is a real directory (on a
    merged-/usr host those are symlinks into /usr, mirrored in the rootfs)."""
    mounts = [_mount_entry(("/usr", "/usr", ["rbind", "ro", "nosuid", "nodev"]))]
    for name in LIB_DIRS:
        p = Path("/") / name
        if p.is_dir() and not p.is_symlink():
            mounts.append(_mount_entry((str(p), f"/{name}", ["rbind", "ro", "nosuid", "nodev"])))
    return mounts


def pyapp_bundle(path: str | os.PathLike, *, memory_mb: int | None = None,
                 work: float | None = None, env: Mapping[str, str] | None = None,
                 app: str | os.PathLike = PYAPP_APP, **kw: Any) -> Path:
    """Write a bundle running the slow-starting Python app (see app.py).
    ``memory_mb`` sets APP_MEMORY_MB, ``work`` APP_WORK; other keyword
    arguments go to write_bundle."""
    app = Path(app).resolve()
    e = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    if memory_mb is not None:
        e["APP_MEMORY_MB"] = str(int(memory_mb))
    if work is not None:
        e["APP_WORK"] = str(work)
    e.update(env or {})
    mounts = host_python_mounts()
    mounts.append(_mount_entry((str(app.parent), "/app", ["rbind", "ro", "nosuid", "nodev"])))
    mounts.extend(kw.pop("mounts", ()))
    return write_bundle(path, [HOST_PYTHON, f"/app/{app.name}"], env=e, mounts=mounts, **kw)


# ---------------------------------------------------------------- the rootfs

def _is_static_elf(path: Path) -> bool:
    """True if path is an ELF executable without a PT_INTERP (dynamic loader)."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF":
            return False
        is64, little = ident[4] == 2, ident[5] == 1
        e = "<" if little else ">"
        if is64:
            phoff, = struct.unpack_from(e + "Q", ident, 0x20)
            phentsize, phnum = struct.unpack_from(e + "HH", ident, 0x36)
        else:
            phoff, = struct.unpack_from(e + "I", ident, 0x1C)
            phentsize, phnum = struct.unpack_from(e + "HH", ident, 0x2A)
        f.seek(phoff)
        for _ in range(phnum):
            ph = f.read(phentsize)
            if struct.unpack_from(e + "I", ph, 0)[0] == 3:  # PT_INTERP
                return False
    return True


def _host_lib_layout() -> dict[str, str]:
    """name -> 'symlink:<target>' or 'dir' for the host's /lib* entries."""
    layout = {}
    for name in LIB_DIRS:
        p = Path("/") / name
        if p.is_symlink():
            layout[name] = "symlink:" + os.readlink(p)
        elif p.is_dir():
            layout[name] = "dir"
    return layout


def _rootfs_stamp() -> str:
    st = HOST_BUSYBOX.stat()
    return json.dumps({"version": ROOTFS_VERSION, "busybox": [st.st_size, st.st_mtime_ns],
                       "lib": _host_lib_layout()}, sort_keys=True)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path (a safety check before deleting trees)."""
    prefix = str(path.resolve())
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp == prefix or mp.startswith(prefix + "/"):
                    found.append(mp)
    except OSError:
        pass
    return found


def _rmtree(path: Path) -> None:
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    busy = _mounts_under(path)
    if busy:
        raise BuildError(f"refusing to delete {path}: mounts below it: {busy}")
    shutil.rmtree(path)


def build_busybox_rootfs(force: bool = False) -> bool:
    """Build bundles/busybox/rootfs; returns True if it was (re)built."""
    if not HOST_BUSYBOX.exists():
        raise BuildError(f"{HOST_BUSYBOX} not found: install busybox-static (make setup)")
    if not _is_static_elf(HOST_BUSYBOX):
        raise BuildError(f"{HOST_BUSYBOX} is not statically linked: install busybox-static")
    stamp = _rootfs_stamp()
    stamp_file = BUSYBOX_ROOTFS / STAMP_NAME
    if not force:
        try:
            if stamp_file.read_text() == stamp:
                return False
        except OSError:
            pass

    out = subprocess.run([str(HOST_BUSYBOX), "--list"], capture_output=True, text=True)
    applets = sorted({a.strip() for a in out.stdout.split() if a.strip()})
    if out.returncode != 0 or "sh" not in applets:
        raise BuildError(f"`{HOST_BUSYBOX} --list` failed: {out.stderr.strip()}")

    new = BUSYBOX_ROOTFS.with_name("rootfs.new")
    _rmtree(new)
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "usr", "app",
              "run", "var", "var/tmp"):
        (new / d).mkdir(parents=True, exist_ok=True)
    os.chmod(new / "tmp", 0o1777)
    os.chmod(new / "var/tmp", 0o1777)
    os.chmod(new / "root", 0o700)
    shutil.copy2(HOST_BUSYBOX, new / "bin/busybox")
    os.chmod(new / "bin/busybox", 0o755)
    for a in applets:
        if a != "busybox" and "/" not in a:
            os.symlink("busybox", new / "bin" / a)
    # /lib* as on the host: symlinks into /usr (merged /usr) or mount points
    for name, kind in _host_lib_layout().items():
        if kind == "dir":
            (new / name).mkdir()
        else:
            os.symlink(kind.split(":", 1)[1], new / name)
    (new / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (new / "etc/group").write_text("root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n")
    (new / "etc/hosts").write_text(f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost\n")
    (new / "etc/hostname").write_text(HOSTNAME + "\n")
    (new / STAMP_NAME).write_text(stamp)

    old = BUSYBOX_ROOTFS.with_name("rootfs.old")
    _rmtree(old)
    if os.path.lexists(BUSYBOX_ROOTFS):
        os.rename(BUSYBOX_ROOTFS, old)
    os.rename(new, BUSYBOX_ROOTFS)
    _rmtree(old)
    print(f"bundles: built {BUSYBOX_ROOTFS.relative_to(HERE.parent)} ({len(applets)} busybox applets)")
    return True


# ------------------------------------------------------------------- drivers

def build(force: bool = False) -> None:
    build_busybox_rootfs(force=force)
    # bundles/busybox: the standard bundle layout, rootfs next to config.json
    spec = make_spec(COUNTER_ARGS, rootfs="rootfs")
    if _write_if_changed(BUSYBOX_BUNDLE / "config.json", json.dumps(spec, indent="\t") + "\n"):
        print(f"bundles: wrote {(BUSYBOX_BUNDLE / 'config.json').relative_to(HERE.parent)}")
    web = WEB_BUNDLE / "config.json"
    before = web.read_text() if web.exists() else None
    write_bundle(WEB_BUNDLE, WEB_ARGS)
    if web.read_text() != before:
        print(f"bundles: wrote {web.relative_to(HERE.parent)}")
    # bundles/pyapp: the busybox rootfs + the host's Python
    if not Path(HOST_PYTHON).exists():
        raise BuildError(f"{HOST_PYTHON} not found: install python3 (make setup)")
    cfg = PYAPP_BUNDLE / "config.json"
    before = cfg.read_text() if cfg.exists() else None
    pyapp_bundle(PYAPP_BUNDLE)
    if cfg.read_text() != before:
        print(f"bundles: wrote {cfg.relative_to(HERE.parent)}")


def clean() -> None:
    for bundle in sorted(p for p in HERE.iterdir() if p.is_dir()):
        for name in ("rootfs", "rootfs.new", "rootfs.old", "config.json"):
            p = bundle / name
            if os.path.lexists(p):
                _rmtree(p)
                print(f"bundles: removed {p.relative_to(HERE.parent)}")
    for p in HERE.glob(".stamp*"):
        p.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clean", action="store_true", help="remove generated rootfs and config.json files")
    ap.add_argument("--force", action="store_true", help="rebuild the rootfs even if up to date")
    a = ap.parse_args(argv)
    try:
        if a.clean:
            clean()
        else:
            build(force=a.force)
    except BuildError as e:
        print(f"bundles: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
