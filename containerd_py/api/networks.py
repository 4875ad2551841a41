"""Routes of /networks, and a container's networks (attach/detach, also in
Zun's form: POST /containers/{id}/network_attach?network=NAME)."""

from aiohttp import web

from ..errors import InvalidArgument
from ..network import HOST, check_name, check_ports
from .common import bool_field, container_id, json_response, read_body, supervisor_of


def network_name(request: web.Request) -> str:
    return check_name(request.match_info["name"])


async def list_networks(request: web.Request) -> web.Response:
    return json_response(supervisor_of(request).list_networks())


async def create_network(request: web.Request) -> web.Response:
    body = await read_body(request)
    unknown = set(body) - {"name", "subnet", "gateway", "internal"}
    if unknown:
        raise InvalidArgument(f"unknown fields {sorted(unknown)}: a network takes name, "
                              "subnet, gateway and internal", field=sorted(unknown)[0])
    name = check_name(body.get("name"))
    gateway = body.get("gateway")
    if gateway is not None and not isinstance(gateway, str):
        raise InvalidArgument("gateway must be a string (an IPv4 address)", field="gateway")
    n = await supervisor_of(request).create_network(name, body.get("subnet"), gateway,
                                                    bool_field(body, "internal"))
    return json_response(n, 201)


async def get_network(request: web.Request) -> web.Response:
    return json_response(supervisor_of(request).get_network(network_name(request)))


async def delete_network(request: web.Request) -> web.Response:
    await supervisor_of(request).delete_network(network_name(request))
    return web.Response(status=204)


async def attach(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or request.query.get("network")
    if name is None:
        raise InvalidArgument("network is required (?network=NAME)", field="network")
    check_name(name)
    a = await supervisor_of(request).attach_network(container_id(request), name)
    return json_response({"network": name, **a}, 201 if "name" in request.match_info else 200)


async def detach(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or request.query.get("network")
    if name is None:
        raise InvalidArgument("network is required (?network=NAME)", field="network")
    check_name(name)
    await supervisor_of(request).detach_network(container_id(request), name)
    return web.Response(status=204)


async def container_networks(request: web.Request) -> web.Response:
    return json_response(await supervisor_of(request).network_interfaces(container_id(request)))


def create_fields(body: dict) -> dict:
    """`networks` (or Zun's `nets: [{"network": NAME}]`) and `ports` of a
    container create, validated: {} when neither is given."""
    out = {}
    networks = body.get("networks")
    if "nets" in body:
        if networks is not None:
            raise InvalidArgument("give networks or nets, not both", field="nets")
        nets = body["nets"]
        if not isinstance(nets, list) or not all(
                isinstance(n, dict) and isinstance(n.get("network"), str) for n in nets):
            raise InvalidArgument('nets must be a list of {"network": NAME}', field="nets")
        networks = [n["network"] for n in nets]
    if networks is not None:
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            raise InvalidArgument("networks must be a list of network names", field="networks")
        for n in networks:
            if n != HOST:
                try:
                    check_name(n)
                except InvalidArgument as e:
                    raise InvalidArgument(e.message, field="networks") from None
        out["networks"] = networks
    ports = check_ports(body.get("ports"))
    if ports:
        out["ports"] = ports
    return out


ROUTES = [
    web.get("/networks", list_networks),
    web.post("/networks", create_network),
    web.get("/networks/{name}", get_network),
    web.delete("/networks/{name}", delete_network),
    web.get("/containers/{id}/networks", container_networks),
    web.post("/containers/{id}/networks/{name}", attach),
    web.delete("/containers/{id}/networks/{name}", detach),
    web.post("/containers/{id}/network_attach", attach),
    web.post("/containers/{id}/network_detach", detach),
]
