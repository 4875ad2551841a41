"""The supervisor's networking operations: deciding (state, lock), recording
and emitting; network/ does the work. A mixin of `Supervisor`, kept apart so
the supervisor does not grow with each capability."""

import logging

from .. import states

log = logging.getLogger("containerd_py.supervisor")


class NetworkOperations:
    # -- networks ------------------------------------------------------------

    def list_networks(self) -> list[dict]:
        return self.networks.networks()

    def get_network(self, name: str) -> dict:
        return self.networks.network(name)

    async def create_network(self, name: str, subnet, gateway=None,
                             internal: bool = False) -> dict:
        n = await self.networks.create_network(name, subnet, gateway, internal)
        self.events.emit("create-network", None, network=name, subnet=n["subnet"])
        return n

    async def delete_network(self, name: str) -> None:
        await self.networks.delete_network(name)
        self.events.emit("delete-network", None, network=name)

    # -- a container's networks ----------------------------------------------

    async def attach_network(self, ref: str, name: str) -> dict:
        c = self.get(ref)
        async with c.lock:
            states.check("network-attach", c.record.status, c.id)
            attachment = await self.networks.attach(c.record, name)
            c.record.networks = [*(c.record.networks or []), name]
            self.store.save(c.record)
            self.events.emit("network-attach", c.id, network=name, ip=attachment.get("ip"))
            return attachment

    async def detach_network(self, ref: str, name: str) -> None:
        c = self.get(ref)
        async with c.lock:
            states.check("network-detach", c.record.status, c.id)
            await self.networks.detach(c.record, name)
            c.record.networks = [n for n in (c.record.networks or []) if n != name]
            self.store.save(c.record)
            self.events.emit("network-detach", c.id, network=name)

    async def network_interfaces(self, ref: str) -> dict:
        """A running container's networks as recorded, and its interfaces
        as they are inside its namespace."""
        c = self.get(ref)
        states.check("network-interfaces", c.record.status, c.id)
        return {"id": c.id, "networks": (c.record.network or {}).get("attachments", {}),
                "interfaces": await self.networks.interfaces(c.record)}

    async def _release_network(self, c, save: bool = True) -> None:
        """CNI DEL and the netns gone; never fails the caller (an exit or a
        delete goes on), the plugin's words go to the log."""
        if not c.record.network:
            return
        try:
            await self.networks.release(c.record)
        except Exception as e:
            log.warning("container %s: network teardown: %s", c.id, e)
        if save and self.containers.get(c.id) is c:
            self.store.save(c.record)
