"""The bundle an image container is created from: a dir of the image
store, one per image, whose config.json is runc's defaults
(runtime.spec.default_spec). The image config's process, env, user...
come in as settings (runtime.spec.image_settings) at create, and the
root filesystem is the store's mount at each launch.

One per image, not per container: a checkpoint of an image container is
kept there (checkpoints live in their container's bundle), so a clone of
the same image finds it, and it goes with the image.
"""

import json
import os

from ..runtime.spec import default_spec
from .store import Image, ImageStore


def bundle(store: ImageStore, image: Image) -> str:
    path = store.bundle_dir(image)
    config = os.path.join(path, "config.json")
    if not os.path.exists(config):
        tmp = config + ".tmp"
        with open(tmp, "w") as f:
            json.dump(default_spec(), f, indent=1)
        os.replace(tmp, config)
    return path
