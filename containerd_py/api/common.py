"""What every route module shares: the supervisor key, JSON in and out."""

import json

from aiohttp import web

from ..errors import InvalidArgument
from ..supervisor import Supervisor
from .. import validation as v
from ..validation import check_fields  # noqa: F401  (the route modules' import)

SUPERVISOR = web.AppKey("supervisor", Supervisor)
MAX_BODY = 1024 * 1024


def json_response(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def read_body(request: web.Request, required: bool = True) -> dict:
    if not request.body_exists:
        if required:
            raise InvalidArgument("a JSON object body is required")
        return {}
    raw = await request.read()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("body must be a JSON object")
    return body


def supervisor_of(request: web.Request) -> Supervisor:
    return request.app[SUPERVISOR]


def container_id(request: web.Request) -> str:
    return v.check_id(request.match_info["id"])


def bool_field(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key} must be a boolean", field=key)
    return value

