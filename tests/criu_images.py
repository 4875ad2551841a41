"""Reading what CRIU wrote into a checkpoint's images: a few protobuf
fields, decoded by hand (CRIU's crit tool is not installed with it)."""

import os
import struct

# cr_options.h's enum NETWORK_LOCK_METHOD, as inventory.img stores it.
NETWORK_LOCK_IPTABLES, NETWORK_LOCK_NFTABLES, NETWORK_LOCK_SKIP = 0, 1, 2


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def _fields(msg: bytes) -> dict[int, int | bytes]:
    """The top-level fields of one protobuf message (the last of each)."""
    out, i = {}, 0
    while i < len(msg):
        key, i = _varint(msg, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = _varint(msg, i)
        elif wire == 2:
            n, i = _varint(msg, i)
            out[num], i = msg[i:i + n], i + n
        elif wire == 5:
            out[num], i = msg[i:i + 4], i + 4
        elif wire == 1:
            out[num], i = msg[i:i + 8], i + 8
        else:
            raise ValueError(f"protobuf wire type {wire}")
    return out


def inventory(image_dir: str) -> dict[int, int | bytes]:
    """inventory.img's inventory_entry: two magics, a size, the message."""
    with open(os.path.join(image_dir, "inventory.img"), "rb") as f:
        data = f.read()
    size, = struct.unpack_from("<I", data, 8)
    return _fields(data[12:12 + size])


def network_lock(image_dir: str) -> int:
    """How CRIU locked the network for this dump; its restore does the same
    (inventory_entry.network_lock_method, field 11)."""
    return inventory(image_dir).get(11, NETWORK_LOCK_IPTABLES)
