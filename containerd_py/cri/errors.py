"""The one place that knows gRPC status codes: the daemon's typed errors
mapped for the CRI, as api.error_middleware maps them to HTTP."""

import functools
import inspect
import logging

import grpc

from ..errors import (Conflict, DaemonError, InvalidArgument, NotFound, RuntimeFailure,
                      TooLarge, Unavailable)

log = logging.getLogger("containerd_py.cri")


class DeadlineExceeded(DaemonError):
    """A CRI call's own timeout passed (ExecSync)."""


def grpc_code(e: DaemonError) -> grpc.StatusCode:
    if isinstance(e, InvalidArgument):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(e, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(e, Conflict):
        # A Conflict that names the container's state is a wrong-state error;
        # one without it is an id or name already taken.
        return (grpc.StatusCode.FAILED_PRECONDITION if "status" in e.details
                else grpc.StatusCode.ALREADY_EXISTS)
    if isinstance(e, TooLarge):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(e, Unavailable):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(e, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(e, RuntimeFailure):
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.UNKNOWN


def mapped(cls):
    """Wrap every RPC coroutine of a servicer class so that a DaemonError
    becomes the gRPC status of `grpc_code`, and anything else INTERNAL with
    its text (logged with its traceback: it is a bug here)."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not inspect.iscoroutinefunction(fn):
            continue

        @functools.wraps(fn)
        async def rpc(self, request, context, _fn=fn, _name=name):
            try:
                return await _fn(self, request, context)
            except DaemonError as e:
                log.debug("%s: %s", _name, e.message)
                await context.abort(grpc_code(e), e.message)
            except (grpc.aio.AbortError, grpc.RpcError):
                raise
            except Exception as e:
                log.exception("CRI %s", _name)
                await context.abort(grpc.StatusCode.INTERNAL, f"{_name}: {e}")
        setattr(cls, name, rpc)
    return cls
