"""Isolation between bridge networks, as Docker's DOCKER-ISOLATION chains:
the CNI bridge plugin routes between bridges (the host forwards), and the
firewall plugin accepts a container's traffic whatever its destination, so
without this two networks could reach each other through the host.

Two chains of the daemon's own (named from a hash of its data dir, so that
several daemons on one host never share rules): FORWARD jumps to stage 1,
where a packet coming in on one of our bridges and leaving by another
interface goes to stage 2, which drops it if that interface is a bridge of
ours (any daemon's, "cdpy+"). Traffic out of the host is untouched.
"""

import asyncio
import hashlib
import os

from ..errors import RuntimeFailure


def chain_names(data_dir: str) -> tuple[str, str]:
    h = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:8]
    return f"CDPY-ISO1-{h}", f"CDPY-ISO2-{h}"


async def _iptables(*args: str, check: bool = True) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "iptables", "-w", *args, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0 and check:
        raise RuntimeFailure(f"iptables {' '.join(args)}: {err.decode().strip()}")
    return proc.returncode == 0


class Isolation:
    def __init__(self, data_dir: str):
        self.stage1, self.stage2 = chain_names(data_dir)

    async def _ensure_chains(self) -> None:
        for chain in (self.stage1, self.stage2):
            if not await _iptables("-n", "-L", chain, check=False):
                await _iptables("-N", chain)
        if not await _iptables("-C", "FORWARD", "-j", self.stage1, check=False):
            await _iptables("-I", "FORWARD", "1", "-j", self.stage1)
        rule = ("-o", "cdpy+", "-j", "DROP")
        if not await _iptables("-C", self.stage2, *rule, check=False):
            await _iptables("-A", self.stage2, *rule)

    def _rule(self, bridge: str) -> tuple[str, ...]:
        return ("-i", bridge, "!", "-o", bridge, "-j", self.stage2)

    async def add(self, bridge: str) -> None:
        await self._ensure_chains()
        if not await _iptables("-C", self.stage1, *self._rule(bridge), check=False):
            await _iptables("-A", self.stage1, *self._rule(bridge))

    async def remove(self, bridge: str) -> None:
        """Drop the bridge's rule; with no bridge left, the chains and the
        FORWARD jump go too, so an idle daemon leaves no rules behind."""
        while await _iptables("-D", self.stage1, *self._rule(bridge), check=False):
            pass
        proc = await asyncio.create_subprocess_exec(
            "iptables", "-w", "-S", self.stage1, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        if proc.returncode == 0 and "-A " not in out.decode():
            while await _iptables("-D", "FORWARD", "-j", self.stage1, check=False):
                pass
            for chain in (self.stage1, self.stage2):
                await _iptables("-F", chain, check=False)
                await _iptables("-X", chain, check=False)
