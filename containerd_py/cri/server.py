"""The CRI's gRPC server: grpc.aio on a unix socket, in the daemon's own
event loop, started and closed with the HTTP app (one cleanup context) and
sharing its one Supervisor."""

import logging
import os

from ..errors import InvalidArgument

log = logging.getLogger("containerd_py.cri")


def socket_path(listen: str) -> str:
    if not listen.startswith("unix://"):
        raise InvalidArgument(f"--cri-listen must be unix:///PATH, got {listen!r}",
                              field="cri-listen")
    return listen[len("unix://"):]


def attach(app, config, gid: int | None = None) -> None:
    """Serve the CRI for the life of `app` (after the supervisor is up).
    The socket is root's and `gid`'s (--cri-group, else the daemon's
    --group), mode 0660: whoever can open it can run anything as root."""
    from ..api.common import SUPERVISOR

    async def cri_ctx(app):
        import grpc

        try:
            from ._gen import api_pb2_grpc as pbg
        except ImportError as e:
            raise SystemExit("the CRI's gRPC stubs are missing (generated at build time): "
                             f"run `make setup` ({e})")
        from .containers import CRIContainerStore
        from .image_service import ImageService
        from .images import CRIImages
        from .runtime_service import RuntimeService
        from .sandbox import SandboxStore
        from .streaming import StreamingServer

        sup = app[SUPERVISOR]
        data = os.path.join(config.data_dir, "cri")
        run = os.path.join(config.state_dir, "cri")
        sandboxes = SandboxStore(os.path.join(data, "sandboxes"), os.path.join(run, "sandboxes"),
                                 sup.networks)
        await sandboxes.reconcile()
        containers = CRIContainerStore(os.path.join(data, "containers"))
        images = CRIImages(sup.images, config.image_mirror)
        streaming = StreamingServer(sup, None)
        runtime = RuntimeService(sup, sandboxes, containers, images, streaming)
        streaming.exec_process = runtime._exec_process
        await streaming.start()
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 << 20),
                                          ("grpc.max_send_message_length", 16 << 20)])
        pbg.add_RuntimeServiceServicer_to_server(runtime, server)
        pbg.add_ImageServiceServicer_to_server(ImageService(images, containers), server)
        path = socket_path(config.cri_listen)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        server.add_insecure_port("unix://" + path)
        # The socket lets its users run anything as root: owner and group only.
        old = os.umask(0o117)
        try:
            await server.start()
        finally:
            os.umask(old)
        os.chown(path, 0, gid if gid is not None else 0)
        os.chmod(path, 0o660)
        log.info("serving the CRI (runtime.v1) on unix://%s", path)
        yield
        await server.stop(grace=2)
        await streaming.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    app.cleanup_ctx.append(cri_ctx)
