"""The HTTP front door: parse and validate requests, call the supervisor, map
errors to status codes (in `error_middleware`, the one place that does).

One module of routes per resource; each declares its own `ROUTES` table.
"""

import asyncio
import logging

from aiohttp import web

from .. import __version__
from ..errors import DaemonError, TooLarge
from ..supervisor import Supervisor
from . import checkpoints, containers, images, migrations, networks, pools, sessions, system
from .access import AccessPolicy
from .common import MAX_BODY, SUPERVISOR, json_response
from .schema import validation_middleware

log = logging.getLogger("containerd_py.api")

ROUTES = [*system.ROUTES, *containers.ROUTES, *checkpoints.ROUTES, *sessions.ROUTES,
          *images.ROUTES, *migrations.ROUTES, *pools.ROUTES, *networks.ROUTES]


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except DaemonError as e:
        if e.http_status >= 500:
            log.error("%s %s: %s", request.method, request.path, e.message)
        return json_response(e.body(), e.http_status)
    except web.HTTPRequestEntityTooLarge as e:
        return json_response(TooLarge(f"request body too large: {e.text}",
                                      limit=MAX_BODY).body(), 413)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = json_response({"error": e.reason if e.status != 404 else
                              f"no route for {request.method} {request.path}"}, e.status)
        if "Allow" in e.headers:  # a 405 says what is allowed (RFC 9110)
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as e:  # a bug: say so, keep serving
        log.exception("%s %s", request.method, request.path)
        return json_response({"error": f"internal error: {type(e).__name__}: {e}"}, 500)


def make_app(config, policy: AccessPolicy | None = None) -> web.Application:
    policy = policy or AccessPolicy()
    # Access first: a refused caller learns nothing else about the daemon.
    app = web.Application(middlewares=[error_middleware, policy.middleware(),
                                       validation_middleware],
                          client_max_size=MAX_BODY)
    app.add_routes(ROUTES)

    async def supervisor_ctx(app: web.Application):
        sup = Supervisor(config)
        await sup.recover()
        app[SUPERVISOR] = sup
        log.info("containerd-py %s serving the API on %s (state %s, data %s, runtime %s)",
                 __version__, config.listen, config.state_dir, config.data_dir,
                 sup.default_runtime)
        yield
        await sup.close()

    app.cleanup_ctx.append(supervisor_ctx)
    return app
