"""Images: a content store of OCI images, layer snapshots shared between
images and containers, and each container's root filesystem as an overlay
on them (containerd's overlayfs snapshotter, in a few hundred lines).

The interface the supervisor and the front doors use:

    store = ImageStore(os.path.join(data_dir, "images"))
    store.load(fileobj) -> [Image]      # docker-archive or oci-archive, a stream
                                        # (blocking: run it in a thread); every
                                        # digest verified, all or nothing
    store.resolve(ref) -> Image         # name (normalised), name@digest, digest,
                                        # id or short id; NotFound naming ref
    store.list() -> [Image]
    store.tag(ref, name) -> Image
    store.delete(ref, force, in_use_by) -> {"untagged", "deleted"}
                                        # Conflict (409) while containers use it

    store.mount(image, key) -> path     # key: the container id; the overlay of
                                        # the image's snapshots + key's upper dir
    store.unmount(key)                  # keeps the upper dir
    store.remove(key)                   # deletes the upper dir, never a layer
                                        # another image or container uses
    store.changes(key) -> [{"path", "kind": "A"|"C"|"D"}]
    store.export(key, fileobj)          # the container's filesystem as a tar
    store.commit(key, name) -> Image    # image + the upper dir as a new layer

    Image: id (sha256 of the config), names, digest (of the manifest), size,
    created, layers (diff ids, bottom first), config (the OCI image config's
    Entrypoint, Cmd, Env, WorkingDir, User, Labels, StopSignal, ExposedPorts),
    image_config (the whole config document), to_api().

    refs.normalise(ref) -> "docker.io/library/busybox:latest" for "busybox"
    spec.bundle(store, image) -> the image's bundle dir (runc's default
        config.json, and its containers' checkpoints); the image config
        becomes settings through runtime.spec.image_settings.

The package knows nothing of HTTP: errors are the daemon's typed errors.
"""

from .refs import normalise
from .store import Image, ImageStore

__all__ = ["Image", "ImageStore", "normalise"]
