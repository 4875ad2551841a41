"""Requests checked against the API document, in one place.

The document (api/openapi.py) is the contract: this middleware validates each
request's path parameters, query and JSON body against the operation the
router matched, before its handler runs. What the document allows is thus
what the daemon accepts, and a constraint cannot be enforced without being
written down. Errors name the field (`restartPolicy.name`, `query.tail`).

Only the subset of JSON Schema the document uses is implemented: type,
enum, pattern, min/max (length, items, properties, value), required,
properties, additionalProperties, items, oneOf/anyOf/allOf, $ref.
"""

import json
import re
from functools import lru_cache

from aiohttp import web

from ..errors import InvalidArgument, TooLarge
from .common import MAX_BODY
from .openapi import document

_INT_RE = re.compile(r"^-?[0-9]+$")
_NUM_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


class Invalid(Exception):
    """`where` is the full path of the value (`mounts[0].type`); the error's
    `field` is its top-level field (`mounts`), or an unknown field's own name."""

    def __init__(self, where: str, message: str, field: str | None = None, **details):
        super().__init__(message)
        self.where, self.message, self.details = where, message, details
        self.field = field if field is not None else re.split(r"[.\[]", where, 1)[0]


@lru_cache(maxsize=1)
def _doc() -> dict:
    return document()


@lru_cache(maxsize=None)
def _pattern(p: str) -> re.Pattern:
    return re.compile(p)


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = _doc()["components"]["schemas"][name]
    return schema


def _type_ok(value, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    return True


_ARTICLE = {"integer": "an integer", "number": "a number", "boolean": "a boolean (true or false)",
            "string": "a string", "array": "a list", "object": "an object"}


def check(value, schema: dict, where: str) -> None:
    """Raise Invalid(where, message) unless `value` matches `schema`."""
    schema = _resolve(schema)
    t = schema.get("type")
    if t and not _type_ok(value, t):
        raise Invalid(where, schema.get("x-error") and f"{where}: {schema['x-error']}"
                      or f"{where} must be {_ARTICLE.get(t, t)}, not {_show(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(where, f"{where} {_show(value)} is not supported: use one of "
                             f"{_enum_text(schema['enum'])}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise Invalid(where, f"{where} must not be empty" if schema["minLength"] == 1
                          else f"{where} must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise Invalid(where, f"{where} is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise Invalid(where, f"invalid {where} {value!r}: "
                          + (schema.get("x-error") or f"must match {schema['pattern']}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and (value < low or (schema.get("exclusiveMinimum") and value == low)):
            raise Invalid(where, f"{where} must be {'>' if schema.get('exclusiveMinimum') else '>='}"
                                 f" {low}, not {value}")
        if high is not None and (value > high or (schema.get("exclusiveMaximum") and value == high)):
            raise Invalid(where, f"{where} must be <= {high}, not {value}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise Invalid(where, f"{where} must not be empty" if schema["minItems"] == 1
                          else f"{where} must have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise Invalid(where, f"{where} has more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                check(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        _check_object(value, schema, where)
    for sub in schema.get("allOf", ()):
        check(value, sub, where)
    if "not" in schema:
        try:
            check(value, schema["not"], where)
        except Invalid:
            pass
        else:
            raise Invalid(where, f"{where or 'the body'}: "
                          + (schema.get("x-error") or schema.get("description")
                             or "this combination is not allowed"),
                          field=schema.get("x-field"))
    if "anyOf" in schema:
        errors = _failures(value, schema["anyOf"], where)
        if len(errors) == len(schema["anyOf"]):
            raise _combined(where, schema, errors)
    if "oneOf" in schema:
        errors = _failures(value, schema["oneOf"], where)
        passed = len(schema["oneOf"]) - len(errors)
        if passed == 0:
            raise _combined(where, schema, errors, field=None)
        if passed > 1:
            text = schema.get("x-error") or schema.get("description") \
                or "it matches more than one form"
            raise Invalid(where, f"{where or 'the body'}: {text}",
                          field=schema.get("x-field"))


def _check_object(value: dict, schema: dict, where: str) -> None:
    props = schema.get("properties", {})
    prefix = f"{where}." if where else ""
    for name in schema.get("required", ()):
        if name not in value:
            raise Invalid(prefix + name, f"{prefix}{name} is required")
    if len(value) < schema.get("minProperties", 0):
        raise Invalid(where, f"{where or 'the body'} must have at least one of "
                             f"{sorted(props)}" if props else f"{where} must not be empty")
    for a, b in schema.get("x-exclusive", ()):
        if a in value and b in value:
            raise Invalid(prefix + b, f"give {a} or {b} (another name for it), not both")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            check(item, props[key], prefix + key)
        elif extra is False:
            raise Invalid(prefix + key, f"unknown field {key!r} in "
                                        f"{where or 'the body'}; allowed: "
                                        f"{', '.join(sorted(props))}",
                          field=key, allowed=sorted(props))
        elif isinstance(extra, dict):
            check(item, extra, prefix + key)


def _failures(value, options: list, where: str) -> list[Invalid]:
    out = []
    for sub in options:
        try:
            check(value, sub, where)
        except Invalid as e:
            out.append(e)
    return out


def _combined(where: str, schema: dict, errors: list[Invalid], field: str | None = "") -> Invalid:
    """One error for a value that matched no alternative. `x-field` names
    the field for anyOf; for oneOf it names the one given too many."""
    text = schema.get("x-error") or schema.get("description")
    if text:
        named = [e.field for e in errors if e.field]
        chosen = schema.get("x-field") if field == "" else None
        return Invalid(where or errors[0].where, f"{where or 'the body'}: {text}",
                       # none of oneOf's forms: the first one's field; an
                       # anyOf's condition: the field that broke it (the last)
                       field=chosen or ((named[0] if field is None else named[-1])
                                        if named and not where else None))
    # The deepest complaint is usually the one that says what to fix.
    best = max(errors, key=lambda e: e.where.count(".") + e.where.count("["))
    if best.where == where:
        return Invalid(where, "; or ".join(dict.fromkeys(e.message for e in errors)))
    return best


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _enum_text(values: list) -> str:
    if len(values) > 12:
        return ", ".join(json.dumps(v) for v in values[:12]) + ", ..."
    return ", ".join(json.dumps(v) for v in values)


# -- parameters -------------------------------------------------------------------

def _coerce(raw: str, schema: dict, where: str):
    """A query or path string as the type its schema names (strictly:
    booleans are true/false, integers are digits)."""
    t = _resolve(schema).get("type")
    if t == "integer":
        if not _INT_RE.match(raw):
            raise Invalid(where, f"{where} must be an integer, not {raw!r}")
        return int(raw)
    if t == "number":
        if not _NUM_RE.match(raw):
            raise Invalid(where, f"{where} must be a number, not {raw!r}")
        return float(raw)
    if t == "boolean":
        if raw not in ("true", "false"):
            raise Invalid(where, f"{where} must be true or false, not {raw!r}")
        return raw == "true"
    return raw


def _check_params(request: web.Request, params: list) -> None:
    for p in params:
        name, where, schema = p["name"], p["in"], p["schema"]
        if where == "path":
            raw = request.match_info.get(name)
            if raw is None:
                continue
            try:
                check(_coerce(raw, schema, name), schema, name)
            except Invalid as e:
                e.details.setdefault(name, raw)  # as the handlers' own errors name it
                raise
        elif where == "query":
            if name not in request.query:
                if p.get("required"):
                    raise Invalid(name, f"query parameter {name} is required")
                continue
            if _resolve(schema).get("type") == "array":
                items = _resolve(schema).get("items", {})
                values = [_coerce(v, items, name) for v in request.query.getall(name)]
                check(values, schema, name)
            else:
                values = request.query.getall(name)
                if len(values) > 1:
                    raise Invalid(name, f"query parameter {name} is given {len(values)} times")
                check(_coerce(values[0], schema, name), schema, name)


@lru_cache(maxsize=1)
def _operations() -> dict:
    ops = {}
    for path, item in _doc()["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method != "parameters":
                ops[(method.upper(), path)] = (op, shared + op.get("parameters", []))
    return ops


async def validate_request(request: web.Request) -> None:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return
    entry = _operations().get((request.method, resource.canonical))
    if entry is None:
        return  # not documented: tests/test_openapi.py reports it
    op, params = entry
    try:
        _check_params(request, params)
        body_spec = op.get("requestBody")
        if body_spec is None:
            return
        if "application/json" not in body_spec["content"]:
            return  # a stream (an archive): its handler reads and checks it
        schema = body_spec["content"]["application/json"]["schema"]
        raw = await request.read() if request.body_exists else b""
        if not raw.strip():
            if body_spec.get("required"):
                raise Invalid("", "a JSON object body is required")
            return
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise Invalid("", f"body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise Invalid("", "body must be a JSON object")
        check(body, schema, "")
    except Invalid as e:
        raise InvalidArgument(e.message, **({"field": e.field} if e.field else {}),
                              **e.details) from None
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"request body larger than {MAX_BODY} bytes", limit=MAX_BODY) from None


@web.middleware
async def validation_middleware(request: web.Request, handler):
    await validate_request(request)
    if request.method == "HEAD":
        request = _without_streaming(request)
        _discard_body(request)
    return await handler(request)


def _discard_body(request: web.Request) -> None:
    """aiohttp leaves a Response's body out of a HEAD answer, but not what
    a handler writes to a StreamResponse (a log, an export's tar): that
    would go out after the headers and be read as the next answer on the
    connection. The writer is this request's own, so only it is muted."""
    writer = request._payload_writer

    async def nothing(chunk, *args, **kwargs) -> None:
        return None

    writer.write = nothing


def _without_streaming(request: web.Request) -> web.Request:
    """A HEAD never streams: its `follow`/`stream` parameters are false, so
    that it answers with the headers a GET would and ends."""
    route = request.match_info.route
    entry = _operations().get(("HEAD", route.resource.canonical)) if route.resource else None
    names = [p["name"] for p in (entry[1] if entry else []) if p.get("x-streams")]
    if not names:
        return request
    return request.clone(rel_url=request.rel_url.update_query({n: "false" for n in names}))
