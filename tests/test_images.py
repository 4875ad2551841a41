"""The image store on the real daemon: archives built offline from
busybox-static (bundles/archives.py) in both formats, real overlay mounts,
real containers, what a user sees inside them and on the host."""

import io
import json
import os
import tarfile
import uuid

import pytest

import archives as build  # bundles/archives.py
from conftest import APIError, wait_until

from containerd_py.images import refs

KEEP_ALIVE = {"Cmd": ["tail", "-f", "/dev/null"]}


@pytest.fixture(scope="module")
def base_layer():
    return build.dir_layer(build.BUSYBOX_ROOTFS)


def _name(prefix="app"):
    return f"localhost/{prefix}-{uuid.uuid4().hex[:8]}:1"


def _load(api, path):
    with open(path, "rb") as f:
        return api.load(f)


def _images_root(daemon):
    return os.path.join(daemon.state_dir, "data", "images")


def _snapshots(daemon):
    return set(os.listdir(os.path.join(_images_root(daemon), "snapshots")))


def _mounts_of(path):
    with open("/proc/mounts") as f:
        return [ln.split() for ln in f if path in ln]


def _lowerdirs(merged):
    for fields in _mounts_of(merged):
        if fields[1] == merged:
            opts = dict(o.split("=", 1) for o in fields[3].split(",") if "=" in o)
            return opts["lowerdir"].split(":")
    raise AssertionError(f"{merged} is not mounted")


def _sh(api, cid_, script):
    res = api.exec_sync(cid_, ["sh", "-c", script])
    assert res["exitStatus"] == 0, res
    return res["stdout"]


# -- references (pure logic) ------------------------------------------------------

@pytest.mark.parametrize("ref,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("quay.io/podman/hello", "quay.io/podman/hello:latest"),
    ("localhost/x:1", "localhost/x:1"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("user/app", "docker.io/user/app:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
])
def test_references_normalise_as_containerd_does(ref, want):
    assert refs.normalise(ref) == want


@pytest.mark.parametrize("ref", ["", "Busybox", "a//b", "../x", "x:", "x:bad/tag", "-x",
                                 "x@sha256:1234", "a b", "x:" + "t" * 200])
def test_invalid_references_are_refused(ref):
    with pytest.raises(Exception) as e:
        refs.parse(ref)
    assert "invalid image reference" in str(e.value) or "non-empty" in str(e.value)


# -- load ---------------------------------------------------------------------------

def test_load_docker_archive_and_run_it(api, tmp_path, cid, base_layer):
    name = _name()
    path = build.docker_archive(tmp_path / "app.tar", [base_layer, build.layer(
        [("etc/motd", "hello from the image\n")])], {**KEEP_ALIVE, "Env": ["GREETING=hi"],
                                                      "WorkingDir": "/etc"}, [name])
    loaded = _load(api, path)
    assert [i["names"] for i in loaded] == [[name]]
    img = api.image(name)
    assert img["id"] == loaded[0]["id"] and img["digest"].startswith("sha256:")
    assert len(img["layers"]) == 2 and img["size"] > 1_000_000
    assert img["config"]["WorkingDir"] == "/etc"
    assert any(i["id"] == img["id"] for i in api.images())
    # By id, short id and digest too.
    assert api.image(img["id"])["names"] == [name]
    assert api.image(img["shortId"])["names"] == [name]
    assert api.image(name.rsplit(":", 1)[0] + "@" + img["digest"])["id"] == img["id"]

    c = cid()
    created = api.create(c, image=name)
    assert created["image"] == {"ref": name, "id": img["id"]}
    assert created["status"] == "running"
    assert _sh(api, c, "cat /etc/motd; echo $GREETING; readlink /proc/1/cwd") == \
        "hello from the image\nhi\n/etc\n"
    api.delete(c, force=True)


def test_load_oci_archive_with_gzip_layers(api, tmp_path, cid, base_layer):
    name = _name("oci")
    path = build.oci_archive(tmp_path / "oci.tar", [base_layer, build.layer(
        [("srv/", ("dir",)), ("srv/index.html", "oci\n")])], KEEP_ALIVE, name)
    [img] = _load(api, path)
    assert img["names"] == [name]
    c = cid()
    api.create(c, image=img["shortId"])
    assert _sh(api, c, "cat /srv/index.html") == "oci\n"
    api.delete(c, force=True)


def test_short_names_mean_docker_hub_library(api, tmp_path, base_layer):
    tag = f"t{uuid.uuid4().hex[:8]}"
    path = build.docker_archive(tmp_path / "bb.tar", [base_layer], KEEP_ALIVE,
                                [f"busybox:{tag}"])
    [img] = _load(api, path)
    assert img["names"] == [f"docker.io/library/busybox:{tag}"]
    assert api.image(f"busybox:{tag}")["id"] == img["id"]
    assert api.image(f"docker.io/library/busybox:{tag}")["id"] == img["id"]


def test_a_digest_mismatch_is_refused_and_nothing_is_kept(daemon, api, tmp_path, base_layer):
    before_images = {i["id"] for i in api.images()}
    before_snaps = _snapshots(daemon)
    good = build.layer([("new-layer-file", uuid.uuid4().hex)])
    # The config promises a layer whose content is different.
    cfg = json.loads(build.image_config([base_layer, good], KEEP_ALIVE))
    cfg["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    path = build.docker_archive(tmp_path / "bad.tar", [base_layer, good],
                                raw_config=json.dumps(cfg).encode(), repo_tags=[_name("bad")])
    with pytest.raises(APIError) as e:
        _load(api, path)
    assert e.value.status == 400
    assert "digest mismatch" in e.value.body["error"]
    assert e.value.body["expected"] == "sha256:" + "0" * 64
    # An OCI blob whose content does not match its name.
    oci = build.oci_archive(tmp_path / "oci.tar", [base_layer, good], KEEP_ALIVE, _name("bad"))
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(oci) as src, tarfile.open(tampered, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.startswith("blobs/") and data[:2] == b"\x1f\x8b" and len(data) < 10000:
                import gzip
                data = gzip.compress(gzip.decompress(data) + b"\0" * 512, mtime=0)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(APIError) as e:
        _load(api, tampered)
    assert e.value.status == 400 and "digest mismatch" in e.value.body["error"]
    assert {i["id"] for i in api.images()} == before_images
    assert _snapshots(daemon) == before_snaps
    assert os.listdir(os.path.join(_images_root(daemon), "tmp")) == []


@pytest.mark.parametrize("member", ["../escape", "/abs/path"])
def test_layer_members_that_escape_are_refused(daemon, api, tmp_path, base_layer, member):
    before = _snapshots(daemon)
    evil = build.layer([(member, "x")])
    path = build.docker_archive(tmp_path / "evil.tar", [base_layer, evil], KEEP_ALIVE,
                                [_name("evil")])
    with pytest.raises(APIError) as e:
        _load(api, path)
    assert e.value.status == 400 and member in e.value.body["error"]
    assert _snapshots(daemon) == before
    assert not os.path.exists(os.path.join(_images_root(daemon), "escape"))


def test_a_file_through_a_symlink_in_the_layer_is_refused(daemon, api, tmp_path, base_layer):
    target = tmp_path / "outside"
    target.mkdir()
    evil = build.layer([("link", ("symlink", str(target))), ("link/planted", "x")])
    path = build.docker_archive(tmp_path / "evil.tar", [base_layer, evil], KEEP_ALIVE,
                                [_name("evil")])
    with pytest.raises(APIError) as e:
        _load(api, path)
    assert e.value.status == 400
    assert os.listdir(target) == []


def test_bad_bodies_and_refs(api, tmp_path):
    with pytest.raises(APIError) as e:
        api.upload("/images/load", io.BytesIO(b"not a tar at all" * 100))
    assert e.value.status == 400
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(APIError) as e:
        _load(api, empty)
    assert e.value.status == 400 and "manifest.json" in e.value.body["error"]
    # Half an archive: refused, and nothing of it kept.
    whole = build.docker_archive(tmp_path / "whole.tar", [build.layer(
        [("f", "x" * 200000)])], KEEP_ALIVE, [_name("half")])
    with open(whole, "rb") as f:
        half = f.read()[:150000]
    before = {i["id"] for i in api.images()}
    with pytest.raises(APIError) as e:
        api.upload("/images/load", io.BytesIO(half))
    assert e.value.status == 400
    assert {i["id"] for i in api.images()} == before
    with pytest.raises(APIError) as e:
        api.image("Bad_Name")
    assert e.value.status == 400 and e.value.body["ref"] == "Bad_Name"
    with pytest.raises(APIError) as e:
        api.image("localhost/nosuch:1")
    assert e.value.status == 404 and e.value.body["ref"] == "localhost/nosuch:1"
    with pytest.raises(APIError) as e:
        api.create("t-noimage", image="localhost/nosuch:1")
    assert e.value.status == 404
    with pytest.raises(APIError) as e:
        api.create("t-both", "/tmp", image="localhost/nosuch:1")
    assert e.value.status == 400


# -- layers, whiteouts, sharing ----------------------------------------------------

def _three_layers(base_layer):
    lower = build.layer([
        ("data/", ("dir",)), ("data/keep", "kept\n"), ("data/gone", "deleted above\n"),
        ("old/", ("dir",)), ("old/a", "a"), ("old/sub/", ("dir",)), ("old/sub/b", "b")])
    upper = build.layer([
        ("data/.wh.gone", None),
        ("old/", ("dir",)), ("old/.wh..wh..opq", None), ("old/new", "replaced\n"),
        ("bin/.wh.vi", None), ("hardlink", ("link", "old/new"))])
    return [base_layer, lower, upper]


def test_whiteouts_and_opaque_dirs_seen_from_inside(api, tmp_path, cid, base_layer):
    name = _name("wh")
    _load(api, build.docker_archive(tmp_path / "wh.tar", _three_layers(base_layer),
                                    KEEP_ALIVE, [name]))
    c = cid()
    api.create(c, image=name)
    out = _sh(api, c, "ls /data; echo --; ls -A /old; echo --; cat /old/new /hardlink; "
                      "test -e /bin/vi && echo vi || echo no-vi; "
                      "test -e /data/gone && echo gone-present || echo gone-absent")
    assert out == "keep\n--\nnew\n--\nreplaced\nreplaced\nno-vi\ngone-absent\n"
    api.delete(c, force=True)


def test_two_containers_share_every_layer(daemon, api, tmp_path, cid, base_layer):
    name = _name("share")
    [img] = _load(api, build.docker_archive(tmp_path / "s.tar", _three_layers(base_layer),
                                            KEEP_ALIVE, [name]))
    a, b = cid(), cid()
    api.create(a, image=name)
    api.create(b, image=name)
    active = os.path.join(_images_root(daemon), "active")
    la = _lowerdirs(os.path.join(active, a, "merged"))
    lb = _lowerdirs(os.path.join(active, b, "merged"))
    assert la == lb and len(la) == 3
    snaps = os.path.join(_images_root(daemon), "snapshots")
    assert la == [os.path.join(snaps, d.split(":")[1], "fs") for d in reversed(img["layers"])]
    # Writes stay in each container's own upper dir.
    _sh(api, a, "echo mine > /data/keep; rm /old/new")
    assert _sh(api, b, "cat /data/keep; ls /old") == "kept\nnew\n"
    with open(os.path.join(la[1], "data", "keep")) as f:
        assert f.read() == "kept\n"
    # Deleting one removes its upper dir only.
    api.delete(a, force=True)
    assert not os.path.exists(os.path.join(active, a))
    assert all(os.path.isdir(d) for d in lb)
    assert _sh(api, b, "cat /data/keep") == "kept\n"
    api.delete(b, force=True)
    assert _mounts_of(os.path.join(active, b)) == []


def test_deleting_an_image_in_use_is_409_unless_forced(daemon, api, tmp_path, cid, base_layer):
    name = _name("inuse")
    own = build.layer([("own", uuid.uuid4().hex)])
    [img] = _load(api, build.docker_archive(tmp_path / "u.tar", [base_layer, own], KEEP_ALIVE,
                                            [name]))
    own_snap = img["layers"][1].split(":")[1]
    c = cid()
    api.create(c, image=name)
    with pytest.raises(APIError) as e:
        api.rmi(name)
    assert e.value.status == 409 and e.value.body["containers"] == [c]
    # A second name only untags.
    api.tag(name, name.replace(":1", ":2"))
    assert api.rmi(name.replace(":1", ":2")) == {"untagged": [name.replace(":1", ":2")],
                                                 "deleted": None}
    res = api.rmi(name, force=True)
    assert res["deleted"] == img["id"]
    with pytest.raises(APIError) as e:
        api.image(name)
    assert e.value.status == 404
    # The container keeps its layers while it exists; then they go.
    assert own_snap in _snapshots(daemon)
    assert _sh(api, c, "test -f /own && echo still-there") == "still-there\n"
    api.delete(c, force=True)
    assert own_snap not in _snapshots(daemon)


def test_refs_with_slashes_and_colons_work_in_paths(api, tmp_path, base_layer):
    name = _name("paths")
    [img] = _load(api, build.docker_archive(tmp_path / "p.tar", [base_layer], KEEP_ALIVE,
                                            [name]))
    other = "localhost:5000/team/app/web:v1.2"
    tagged = api.tag(name, other)
    assert other in tagged["names"]
    assert api.image(other)["id"] == img["id"]
    # A ref that ends in /tag is still an image for GET.
    with pytest.raises(APIError) as e:
        api.request("GET", "/images/localhost/x/tag")
    assert e.value.status == 404
    assert api.rmi(other)["untagged"] == [other]
    with pytest.raises(APIError) as e:
        api.tag(name, "Not Valid")
    assert e.value.status == 400
    api.rmi(img["id"])


# -- commit, export, changes --------------------------------------------------------

def test_commit_export_and_changes(api, tmp_path, cid, base_layer):
    name = _name("src")
    _load(api, build.docker_archive(tmp_path / "c.tar", _three_layers(base_layer), KEEP_ALIVE,
                                    [name]))
    c = cid()
    api.create(c, image=name)
    _sh(api, c, "echo changed > /data/keep; rm /old/new; echo hi > /added; "
                "rm -r /old; mkdir /old; echo fresh > /old/only")
    changes = {ch["path"]: ch["kind"] for ch in api.changes(c)}
    assert changes["/data/keep"] == "C" and changes["/added"] == "A"
    assert changes["/old"] == "C" and changes["/old/only"] == "A"
    assert changes["/data"] == "C"

    out = io.BytesIO()
    api.export(c, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as t:
        names = set(t.getnames())
        assert t.extractfile("data/keep").read() == b"changed\n"
    assert {"bin/busybox", "added", "old/only", "data/keep"} <= names
    assert "data/gone" not in names and "old/a" not in names

    new = _name("committed")
    img = api.commit(c, new)
    assert img["names"] == [new] and len(img["layers"]) == 4
    c2 = cid()
    api.create(c2, image=new)
    assert _sh(api, c2, "cat /data/keep /added; ls -A /old; test -e /data/gone || echo ok") \
        == "changed\nhi\nonly\nok\n"
    for x in (c, c2):
        api.delete(x, force=True)
    with pytest.raises(APIError) as e:
        api.changes("t-nosuch")
    assert e.value.status == 404


def test_bundle_containers_have_no_image_layers(api, bundle, cid):
    c = cid()
    api.create(c, bundle())
    with pytest.raises(APIError) as e:
        api.commit(c, _name())
    # A valid request, for the wrong kind of container.
    assert e.value.status == 409 and "bundle" in e.value.body["error"]
    api.delete(c, force=True)


# -- restart, cleanup ---------------------------------------------------------------

def test_images_and_containers_survive_a_daemon_restart_and_leave_nothing(
        private_daemon, tmp_path, cid, base_layer):
    d = private_daemon.start()
    api = d.client
    name = _name("restart")
    _load(api, build.oci_archive(tmp_path / "r.tar", _three_layers(base_layer), KEEP_ALIVE,
                                 name))
    c = cid()
    api.create(c, image=name)
    _sh(api, c, "echo before > /state")
    d.stop()
    d.start()
    assert api.image(name)["names"] == [name]
    assert api.get(c)["status"] == "running"
    assert _sh(api, c, "cat /state") == "before\n"
    # Stop and start again keeps the container's writes.
    api.stop(c, timeout=1)
    api.start(c)
    assert _sh(api, c, "cat /state") == "before\n"
    c2 = cid()
    api.create(c2, image=name)
    for x in (c, c2):
        api.delete(x, force=True)
    api.rmi(name)
    root = _images_root(d)
    assert os.listdir(os.path.join(root, "snapshots")) == []
    assert os.listdir(os.path.join(root, "active")) == []
    assert os.listdir(os.path.join(root, "images")) == []
    assert os.listdir(os.path.join(root, "blobs", "sha256")) == []
    assert _mounts_of(d.state_dir) == []
    assert os.listdir(os.path.join(root, "bundles")) == []


def test_cli_load_images_run_tag_rmi(daemon, tmp_path, cid, base_layer):
    from conftest import DAEMON
    import subprocess

    def cli(*args, stdin=None):
        p = subprocess.run([DAEMON, "--address", daemon.address, *args], stdin=stdin,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    name = _name("cli")
    path = build.docker_archive(tmp_path / "cli.tar", [base_layer], KEEP_ALIVE, [name])
    with open(path, "rb") as f:
        assert cli("load", stdin=f) == f"Loaded image: {name}\n"
    # podman's columns: repository and tag apart, a short id.
    repo, tag = name.rsplit(":", 1)
    rows = [line.split() for line in cli("images").splitlines()]
    assert rows[0][:3] == ["REPOSITORY", "TAG", "IMAGE"] and [repo, tag] in [r[:2] for r in rows]
    c = cid("cli")
    # The issue's own command line: settings over an image, a read-only bind.
    src = tmp_path / "srv"
    src.mkdir()
    (src / "index.html").write_text("served\n")
    created = json.loads(cli("run", "-d", "--format", "json", "--image", name, "--env", "A=1",
                             "--mount",
                             f"type=bind,src={src},dst=/srv,ro", c))
    assert created["image"]["ref"] == name
    assert cli("exec", c, "sh", "-c", "echo $A; cat /srv/index.html; "
               "touch /srv/x 2>/dev/null || echo read-only") == "1\nserved\nread-only\n"
    cli("exec", c, "sh", "-c", "echo x > /new")
    assert "A /new" in cli("diff", c).splitlines()
    cli("export", c, "-o", str(tmp_path / "out.tar"))
    with tarfile.open(tmp_path / "out.tar") as t:
        assert t.extractfile("new").read() == b"x\n"
    cli("rm", "-f", c)
    cli("tag", name, "localhost/cli-other:2")
    assert cli("rmi", "localhost/cli-other:2") == "Untagged: localhost/cli-other:2\n"
    out = cli("rmi", name)
    assert out.startswith(f"Untagged: {name}\nDeleted: sha256:")


# -- the image config and the request's settings -----------------------------------

def test_image_config_runs_and_request_settings_go_over_it(api, tmp_path, cid, base_layer):
    name = _name("cfg")
    _load(api, build.docker_archive(tmp_path / "cfg.tar", [base_layer], {
        "Entrypoint": ["sh", "-c"], "Cmd": ["echo image-cmd; exec tail -f /dev/null"],
        "Env": ["FROM_IMAGE=1", "SHARED=image"], "User": "nobody", "WorkingDir": "/tmp",
        "Labels": {"org.example.role": "web"}, "StopSignal": "SIGUSR1"}, [name]))
    c = cid()
    got = api.create(c, image=name, env=["SHARED=request"])
    assert got["user"]["uid"] == 65534 and got["cwd"] == "/tmp"
    assert got["stopSignal"] in ("SIGUSR1", 10)
    assert got["annotations"]["org.example.role"] == "web"
    env = _sh(api, c, "cat /proc/1/environ | tr '\\0' '\\n'")
    assert "FROM_IMAGE=1" in env.split() and "SHARED=request" in env.split()
    assert "SHARED=image" not in env.split()
    assert _sh(api, c, "stat -c %u /proc/1") == "65534\n"
    wait_until(lambda: "image-cmd" in [e["line"] for e in api.logs(c)], what="Cmd output")
    api.delete(c, force=True)
    # args replace Cmd, the Entrypoint stays.
    c2 = cid()
    api.create(c2, image=name, args=["echo from-args; exec tail -f /dev/null"])
    wait_until(lambda: "from-args" in [e["line"] for e in api.logs(c2)], what="args output")
    api.delete(c2, force=True)


def test_an_image_container_checkpoint_clones_with_its_own_upper_dir(
        daemon, api, tmp_path, cid, base_layer):
    if not api.info()["criu"]["available"]:
        pytest.skip(f"CRIU unavailable: {api.info()['criu'].get('reason')}")
    name = _name("ckpt")
    _load(api, build.docker_archive(tmp_path / "ck.tar", [base_layer], KEEP_ALIVE, [name]))
    c = cid()
    api.create(c, image=name)
    _sh(api, c, "echo original > /mark")
    api.checkpoint(c, "warm")
    clone = cid("clone")
    created = api.create(clone, image=name, checkpoint="warm")
    assert created["status"] == "running" and created["image"]["ref"] == name
    # The clone starts from the image plus nothing: the upper dir is its own.
    _sh(api, clone, "echo clone > /clone-only")
    assert _sh(api, c, "test -e /clone-only || echo absent") == "absent\n"
    active = os.path.join(_images_root(daemon), "active")
    assert _lowerdirs(os.path.join(active, c, "merged")) == \
        _lowerdirs(os.path.join(active, clone, "merged"))
    for x in (clone, c):
        api.delete(x, force=True)


# -- archives written by a real tool ---------------------------------------------------

@pytest.fixture(scope="module")
def podman_archives(tmp_path_factory):
    """An image built by podman itself (busybox-static imported, then two
    RUN steps whose layers delete a file and replace a directory), saved in
    both formats. Podman runs on private storage and is cleaned up after."""
    import shutil
    import subprocess
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (optional: `make bench` installs it)")
    d = tmp_path_factory.mktemp("podman")
    podman = ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"),
              "--tmpdir", str(d / "tmp"), "--cgroup-manager", "cgroupfs",
              "--events-backend", "file", "--storage-driver", "overlay", "--runtime", "runc"]

    def run(*args):
        p = subprocess.run(podman + list(args), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (args, p.stderr[-2000:])

    base = d / "base.tar"
    with tarfile.open(base, "w") as t:
        t.add(str(build.BUSYBOX_ROOTFS), arcname=".")
    ctx = d / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        "FROM localhost/cdpy-pm-base:1\n"
        "RUN mkdir -p /olddir/sub && echo a > /olddir/a && echo g > /etc/gone\n"
        "RUN rm /etc/gone && rm -rf /olddir && mkdir /olddir && echo new > /olddir/f\n"
        'CMD ["tail", "-f", "/dev/null"]\n')
    name = "localhost/cdpy-pm-app:1"
    try:
        run("import", str(base), "localhost/cdpy-pm-base:1")
        run("build", "--network", "none", "--ulimit", "nofile=1024:1024", "-t", name, str(ctx))
        run("save", "--format", "docker-archive", "-o", str(d / "docker.tar"), name)
        run("save", "--format", "oci-archive", "-o", str(d / "oci.tar"), name)
        yield {"docker": d / "docker.tar", "oci": d / "oci.tar", "name": name}
    finally:
        subprocess.run(podman + ["rmi", "-a", "-f"], capture_output=True, timeout=120)
        for fields in _mounts_of(str(d)):
            subprocess.run(["umount", "-l", fields[1]], capture_output=True)


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_an_archive_podman_saved_loads_and_runs(api, cid, podman_archives, fmt):
    name = podman_archives["name"]
    [img] = _load(api, podman_archives[fmt])
    assert img["names"] == [name] and len(img["layers"]) == 3
    c = cid()
    api.create(c, image=name)
    assert _sh(api, c, "ls -A /olddir; cat /olddir/f; test -e /etc/gone || echo gone") \
        == "f\nnew\ngone\n"
    api.delete(c, force=True)
    api.rmi(name)


def test_a_layer_twice_and_docker_save_symlinked_layers(api, tmp_path, cid, base_layer):
    """`docker save` writes a repeated layer once and symlinks the other
    place to it; the same layer at two places of an image is one snapshot."""
    name = _name("twice")
    again = build.layer([("etc/again", "top copy\n")])
    middle = build.layer([("etc/.wh.again", None), ("etc/middle", "m\n")])
    layers_ = [base_layer, again, middle, again]
    cfg = build.image_config(layers_, KEEP_ALIVE)
    path = tmp_path / "twice.tar"
    with tarfile.open(path, "w") as t:
        names = []
        for i, data in enumerate(layers_):
            lname = f"l{i}/layer.tar"
            names.append(lname)
            if i == 3:  # the repeat: a symlink to the first copy, as docker writes it
                ti = tarfile.TarInfo(lname)
                ti.type, ti.linkname = tarfile.SYMTYPE, "../l1/layer.tar"
                t.addfile(ti)
                continue
            ti = tarfile.TarInfo(lname)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        for member, data in (("c.json", cfg), ("manifest.json", json.dumps(
                [{"Config": "c.json", "RepoTags": [name], "Layers": names}]).encode())):
            ti = tarfile.TarInfo(member)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    [img] = _load(api, path)
    assert len(img["layers"]) == 4 and img["layers"][1] == img["layers"][3]
    c = cid()
    api.create(c, image=name)
    assert _sh(api, c, "cat /etc/again /etc/middle") == "top copy\nm\n"
    api.delete(c, force=True)
