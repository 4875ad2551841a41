#!/usr/bin/env python3
"""Image archives built offline with the standard library, for the tests
and the benchmarks: the busybox rootfs of bundles/build.py as a base layer,
more layers from small lists of files, written as a docker-archive (what
`docker save` / `podman save` write) or an oci-archive (an OCI image layout
in a tar).

    sys.path.insert(0, "bundles")
    import archives
    base = archives.dir_layer(archives.BUSYBOX_ROOTFS)
    top = archives.layer([("data/x", "hello\\n"), ("data/.wh.old", None)])
    archives.docker_archive("app.tar", [base, top], {"Cmd": ["sh"]}, ["localhost/app:1"])

Run as a script it writes one: `bundles/archives.py OUT.tar [--oci] [--name REF]
[--pad-mib N]` (a busybox image running a counter, like the example bundle;
--pad-mib adds a layer of N MiB of data).
"""

from __future__ import annotations

import argparse
import gzip as gzip_mod
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUSYBOX_ROOTFS = HERE / "busybox" / "rootfs"
MTIME = 1_700_000_000
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(entries) -> bytes:
    """A layer tar from (path, content) pairs: content str/bytes is a file,
    None an empty file (use it for whiteouts `.wh.NAME` and `.wh..wh..opq`),
    ("dir",) a directory, ("symlink", target), ("link", target) a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in entries:
            ti = tarfile.TarInfo(path)
            ti.mtime = MTIME
            ti.mode = 0o644
            data = None
            if isinstance(content, tuple):
                kind = content[0]
                if kind == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                elif kind == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, content[1]
                elif kind == "link":
                    ti.type, ti.linkname = tarfile.LNKTYPE, content[1]
                else:
                    raise ValueError(kind)
            else:
                data = content.encode() if isinstance(content, str) else (content or b"")
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def dir_layer(root: str | os.PathLike, exclude=(".containerd-py-rootfs",)) -> bytes:
    """A layer tar of a directory tree (the busybox rootfs)."""
    root = str(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                if name in exclude:
                    continue
                full = os.path.join(dirpath, name)
                ti = tar.gettarinfo(full, arcname=os.path.relpath(full, root))
                ti.uname = ti.gname = ""
                ti.mtime = MTIME
                if ti.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
    return buf.getvalue()


def pad_layer(mib: int, seed: int = 0) -> bytes:
    """A layer with `mib` MiB of incompressible data in /pad/*."""
    entries = []
    for i in range(mib):
        entries.append((f"pad/{i:04d}", hashlib.shake_256(f"{seed}-{i}".encode()).digest(1 << 20)))
    return layer(entries)


def image_config(layers: list[bytes], config: dict | None = None) -> bytes:
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(MTIME)),
        "architecture": ARCH, "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], **(config or {})},
        "rootfs": {"type": "layers", "diff_ids": [sha256(l) for l in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    return json.dumps(doc, sort_keys=True).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
    tar.addfile(ti, io.BytesIO(data))


def docker_archive(path, layers: list[bytes], config: dict | None = None,
                   repo_tags=(), raw_config: bytes | None = None) -> str:
    """What `docker save` writes: <id>/layer.tar per layer, <config>.json,
    manifest.json listing them, and `repositories`."""
    cfg = raw_config or image_config(layers, config)
    with tarfile.open(path, "w") as tar:
        names = []
        for data in layers:
            lid = hashlib.sha256(data).hexdigest()
            name = f"{lid}/layer.tar"
            if name not in names:
                _add(tar, name, data)
            names.append(name)
        cname = hashlib.sha256(cfg).hexdigest() + ".json"
        _add(tar, cname, cfg)
        manifest = [{"Config": cname, "RepoTags": list(repo_tags), "Layers": names}]
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return str(path)


def oci_archive(path, layers: list[bytes], config: dict | None = None, ref_name=None,
                gzip: bool = True) -> str:
    """An OCI image layout in a tar: oci-layout, index.json, blobs/sha256/*
    (layers gzip-compressed, as registries and `podman save --format
    oci-archive` have them)."""
    cfg = image_config(layers, config)
    blobs = {}
    descs = []
    for data in layers:
        blob = gzip_mod.compress(data, mtime=0) if gzip else data
        blobs[sha256(blob)] = blob
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" +
                      ("+gzip" if gzip else ""), "digest": sha256(blob), "size": len(blob)})
    blobs[sha256(cfg)] = cfg
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(cfg), "size": len(cfg)},
        "layers": descs}).encode()
    blobs[sha256(manifest)] = manifest
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest), "size": len(manifest)}
    if ref_name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode())
        for digest, blob in blobs.items():
            _add(tar, "blobs/sha256/" + digest.split(":")[1], blob)
    return str(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--oci", action="store_true")
    p.add_argument("--name", default="localhost/busybox:latest")
    p.add_argument("--pad-mib", type=int, default=0)
    args = p.parse_args(argv)
    layers = [dir_layer(BUSYBOX_ROOTFS)]
    if args.pad_mib:
        layers.append(pad_layer(args.pad_mib))
    # The example bundle's counter: a number a second, and a graceful stop.
    config = {"Cmd": ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do echo $i; "
                      "i=$((i+1)); sleep 1; done"]}
    if args.oci:
        oci_archive(args.out, layers, config, ref_name=args.name)
    else:
        docker_archive(args.out, layers, config, repo_tags=[args.name])
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
