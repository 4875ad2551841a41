"""runtime.v1.ImageService over the daemon's images."""

from ..events import now_ns
from ._gen import api_pb2 as pb, api_pb2_grpc as pbg
from .containers import CRIContainerStore
from .errors import mapped
from .images import CRIImages, repo_digests
from ..images import Image


def _image(i: Image) -> pb.Image:
    img = pb.Image(id=i.id, repo_tags=[n for n in i.names if "@" not in n],
                   repo_digests=repo_digests(i), size=i.size, spec=pb.ImageSpec(image=i.id))
    user = (i.config.get("User") or "").partition(":")[0]
    if user.isdigit():
        img.uid.value = int(user)
    elif user:
        img.username = user
    return img


@mapped
class ImageService(pbg.ImageServiceServicer):
    def __init__(self, images: CRIImages, containers: CRIContainerStore):
        self.images, self.containers = images, containers

    async def ListImages(self, request, context):
        want = request.filter.image.image
        items = self.images.list()
        if want:
            found = self.images.find(want)
            items = [found] if found else []
        return pb.ListImagesResponse(images=[_image(i) for i in items])

    async def ImageStatus(self, request, context):
        # The CRI: an absent image is an empty answer, not an error.
        found = self.images.find(request.image.image)
        if found is None:
            return pb.ImageStatusResponse()
        return pb.ImageStatusResponse(image=_image(found))

    async def PullImage(self, request, context):
        info = await self.images.pull(request.image.image)
        return pb.PullImageResponse(image_ref=info.id)

    async def RemoveImage(self, request, context):
        img = self.images.find(request.image.image)
        if img is not None:
            users = [c.id for c in self.containers.items.values() if c.image_id == img.id]
            self.images.remove(request.image.image, users)
        return pb.RemoveImageResponse()

    async def ImageFsInfo(self, request, context):
        mountpoint, used, inodes = self.images.fs_usage()
        usage = pb.FilesystemUsage(timestamp=now_ns(),
                                   fs_id=pb.FilesystemIdentifier(mountpoint=mountpoint))
        usage.used_bytes.value = used
        usage.inodes_used.value = inodes
        return pb.ImageFsInfoResponse(image_filesystems=[usage])
