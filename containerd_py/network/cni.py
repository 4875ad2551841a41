"""Running CNI plugins with the CNI protocol (spec 1.0.0), as libcni does.

A network is a conflist: a name, a cniVersion and a chain of plugin configs.
ADD runs the chain in order, each plugin getting the previous one's result
as `prevResult`; DEL runs it in reverse with the result ADD produced (read
back from the cache, as libcni keeps it under its cache dir, so DEL still
works after a daemon restart); CHECK runs it in order with that result.
Every plugin gets the CNI_* environment and its config on stdin; a failure
is a `CNIError` carrying the plugin's own `msg` and `details`.

Plugins that declare a capability (`"capabilities": {"portMappings": true}`)
get the matching runtime value injected as `runtimeConfig`, as libcni does.
"""

import asyncio
import base64
import json
import os

from ..errors import RuntimeFailure

CNI_VERSION = "1.0.0"
# Debian's containernetworking-plugins puts the plugins here.
DEFAULT_CNI_PATH = "/usr/lib/cni"
PLUGIN_TIMEOUT = 60


class CNIError(RuntimeFailure):
    """A CNI plugin failed: its error code, message and details as it
    reported them on stdout (CNI's error object), or its stderr."""

    def __init__(self, plugin: str, command: str, network: str, code: int | None,
                 msg: str, details: str = ""):
        text = f"CNI {command} of network {network!r}: plugin {plugin} failed: {msg}"
        if details and details not in msg:
            text += f" ({details})"
        super().__init__(text, plugin=plugin, cniCommand=command, network=network,
                         cniCode=code)


class ResultCache:
    """libcni's result cache: one file per (network, container, ifname)
    holding the config ADD ran with and the result it returned, under
    <dir>/results/ (the same layout as /var/lib/cni/results)."""

    def __init__(self, directory: str):
        self.dir = os.path.join(directory, "results")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def _path(self, network: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.dir, f"{network}-{container_id}-{ifname}")

    def save(self, network: str, container_id: str, ifname: str, conflist: dict,
             result: dict) -> None:
        path = self._path(network, container_id, ifname)
        entry = {"kind": "cniCacheV1", "containerId": container_id, "ifName": ifname,
                 "networkName": network,
                 "config": base64.b64encode(json.dumps(conflist).encode()).decode(),
                 "result": result}
        with open(path + ".tmp", "w") as f:
            json.dump(entry, f)
        os.replace(path + ".tmp", path)

    def load(self, network: str, container_id: str, ifname: str) -> tuple[dict, dict] | None:
        try:
            with open(self._path(network, container_id, ifname)) as f:
                entry = json.load(f)
            return json.loads(base64.b64decode(entry["config"])), entry.get("result") or {}
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def remove(self, network: str, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self._path(network, container_id, ifname))
        except FileNotFoundError:
            pass

    def entries(self) -> list[str]:
        return sorted(os.listdir(self.dir))


class CNI:
    """Runs conflists' plugin chains from the plugin directories `path`."""

    def __init__(self, cache: ResultCache, path: str = DEFAULT_CNI_PATH):
        self.cache = cache
        self.path = path

    def plugin_binary(self, name: str) -> str:
        for d in self.path.split(":"):
            candidate = os.path.join(d, name)
            if os.access(candidate, os.X_OK):
                return candidate
        raise CNIError(name, "FIND", "", None,
                       f"plugin {name!r} not found in CNI_PATH {self.path} "
                       "(Debian's containernetworking-plugins package; `make setup`)")

    async def _exec(self, command: str, plugin_conf: dict, conflist: dict, container_id: str,
                    netns: str, ifname: str) -> dict:
        ptype = plugin_conf["type"]
        binary = self.plugin_binary(ptype)
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
               "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": self.path,
               # iptables and ip are looked up on PATH by the plugins.
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        proc = await asyncio.create_subprocess_exec(
            binary, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(json.dumps(plugin_conf).encode()), PLUGIN_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise CNIError(ptype, command, conflist["name"], None,
                           f"timed out after {PLUGIN_TIMEOUT}s") from None
        if proc.returncode != 0:
            try:
                e = json.loads(out)
                raise CNIError(ptype, command, conflist["name"], e.get("code"),
                               e.get("msg") or "(no message)", e.get("details", ""))
            except (ValueError, AttributeError):
                raise CNIError(ptype, command, conflist["name"], None,
                               (err or out).decode(errors="replace").strip()
                               or f"exit status {proc.returncode}") from None
        if not out.strip():
            return {}
        try:
            return json.loads(out)
        except ValueError:
            raise CNIError(ptype, command, conflist["name"], None,
                           f"result is not JSON: {out[:200]!r}") from None

    @staticmethod
    def _plugin_conf(conflist: dict, plugin: dict, prev: dict | None,
                     runtime: dict) -> dict:
        conf = dict(plugin)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist["cniVersion"]
        if prev is not None:
            conf["prevResult"] = prev
        caps = {k: runtime[k] for k, on in (plugin.get("capabilities") or {}).items()
                if on and k in runtime}
        if caps:
            conf["runtimeConfig"] = caps
        return conf

    async def add(self, conflist: dict, container_id: str, netns: str, ifname: str,
                  runtime: dict | None = None) -> dict:
        """ADD the container to the network; on a failure part-way, DEL what
        was added (as CRI runtimes do) and raise the plugin's error."""
        runtime = runtime or {}
        prev = None
        # Cached before the first plugin runs, so that a crash mid-ADD still
        # leaves what a later DEL needs to know.
        self.cache.save(conflist["name"], container_id, ifname, _with_runtime(conflist, runtime),
                        {})
        try:
            for plugin in conflist["plugins"]:
                prev = await self._exec("ADD", self._plugin_conf(conflist, plugin, prev, runtime),
                                        conflist, container_id, netns, ifname)
        except BaseException:
            try:
                await self.delete(conflist, container_id, netns, ifname)
            except CNIError:
                pass
            # Whatever DEL managed, nobody will DEL this attachment again.
            self.cache.remove(conflist["name"], container_id, ifname)
            raise
        self.cache.save(conflist["name"], container_id, ifname,
                        _with_runtime(conflist, runtime), prev or {})
        return prev or {}

    async def delete(self, conflist: dict | None, container_id: str, netns: str,
                     ifname: str, network: str | None = None) -> None:
        """DEL in reverse plugin order with the cached result and config (the
        conflist may have been deleted meanwhile). A plugin must tolerate
        a DEL of what it never added, so this is idempotent."""
        name = conflist["name"] if conflist else network
        cached = self.cache.load(name, container_id, ifname)
        runtime = {}
        prev = None
        if cached is not None:
            cached_conf, prev = cached
            runtime = cached_conf.pop("runtimeConfig", {})
            conflist = conflist or cached_conf
            prev = prev or None
        if conflist is None:
            return
        errors = []
        for plugin in reversed(conflist["plugins"]):
            try:
                await self._exec("DEL", self._plugin_conf(conflist, plugin, prev, runtime),
                                 conflist, container_id, netns, ifname)
            except CNIError as e:
                errors.append(e)
        if errors:
            raise errors[0]
        self.cache.remove(name, container_id, ifname)

    async def check(self, conflist: dict, container_id: str, netns: str, ifname: str) -> None:
        cached = self.cache.load(conflist["name"], container_id, ifname)
        if cached is None:
            raise CNIError("-", "CHECK", conflist["name"], None,
                           f"no cached ADD result for container {container_id!r}")
        cached_conf, prev = cached
        runtime = cached_conf.get("runtimeConfig", {})
        for plugin in conflist["plugins"]:
            await self._exec("CHECK", self._plugin_conf(conflist, plugin, prev, runtime),
                             conflist, container_id, netns, ifname)


def _with_runtime(conflist: dict, runtime: dict) -> dict:
    return {**conflist, "runtimeConfig": runtime} if runtime else dict(conflist)


def first_ipv4(result: dict, ifname: str) -> dict:
    """The container-side interface of a CNI result: ip, prefixLen,
    gateway, mac, interface."""
    ifaces = result.get("interfaces") or []
    out = {"interface": ifname}
    for idx, iface in enumerate(ifaces):
        if iface.get("name") == ifname and iface.get("sandbox"):
            out["mac"] = iface.get("mac")
            sandbox_idx = idx
            break
    else:
        sandbox_idx = None
    for ip in result.get("ips") or []:
        if sandbox_idx is not None and ip.get("interface") not in (None, sandbox_idx):
            continue
        addr, _, plen = ip["address"].partition("/")
        if ":" in addr:
            continue
        out.update(ip=addr, prefixLen=int(plen or 32), gateway=ip.get("gateway"))
        break
    return out
