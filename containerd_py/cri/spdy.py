"""SPDY/3.1 framing, as much as the Kubernetes streaming protocols use
(the kubelet's and crictl's clients speak it through moby/spdystream):
SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, PING and GOAWAY, with the
zlib-compressed header blocks of the SPDY/3 draft. Those clients do no flow
control, so neither SETTINGS nor WINDOW_UPDATE is sent (both are read and
ignored).
"""

import asyncio
import logging
import struct
import zlib

log = logging.getLogger("containerd_py.cri.streaming")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_CANCEL = 5

# The zlib dictionary of SPDY/3 header blocks (draft 3, section 2.6.10.1):
# a protocol constant, byte for byte.
HEADER_DICTIONARY = bytes.fromhex(
    "000000076f7074696f6e73000000046865616400000004706f73740000000370757400000006"
    "64656c657465000000057472616365000000066163636570740000000e6163636570742d6368"
    "61727365740000000f6163636570742d656e636f64696e670000000f6163636570742d6c616e"
    "67756167650000000d6163636570742d72616e6765730000000361676500000005616c6c6f77"
    "0000000d617574686f72697a6174696f6e0000000d63616368652d636f6e74726f6c0000000a"
    "636f6e6e656374696f6e0000000c636f6e74656e742d6261736500000010636f6e74656e742d"
    "656e636f64696e6700000010636f6e74656e742d6c616e67756167650000000e636f6e74656e"
    "742d6c656e67746800000010636f6e74656e742d6c6f636174696f6e0000000b636f6e74656e"
    "742d6d64350000000d636f6e74656e742d72616e67650000000c636f6e74656e742d74797065"
    "0000000464617465000000046574616700000006657870656374000000076578706972657300"
    "00000466726f6d00000004686f73740000000869662d6d617463680000001169662d6d6f6469"
    "666965642d73696e63650000000d69662d6e6f6e652d6d617463680000000869662d72616e67"
    "650000001369662d756e6d6f6469666965642d73696e63650000000d6c6173742d6d6f646966"
    "696564000000086c6f636174696f6e0000000c6d61782d666f72776172647300000006707261"
    "676d610000001270726f78792d61757468656e7469636174650000001370726f78792d617574"
    "686f72697a6174696f6e0000000572616e676500000007726566657265720000000b72657472"
    "792d61667465720000000673657276657200000002746500000007747261696c657200000011"
    "7472616e736665722d656e636f64696e6700000007757067726164650000000a757365722d61"
    "67656e74000000047661727900000003766961000000077761726e696e67000000107777772d"
    "61757468656e746963617465000000066d6574686f6400000003676574000000067374617475"
    "7300000006323030204f4b0000000776657273696f6e00000008485454502f312e3100000003"
    "75726c000000067075626c69630000000a7365742d636f6f6b69650000000a6b6565702d616c"
    "697665000000066f726967696e31303031303132303132303232303532303633303033303233"
    "3033333034333035333036333037343032343035343036343037343038343039343130343131"
    "343132343133343134343135343136343137353032353034353035323033204e6f6e2d417574"
    "686f726974617469766520496e666f726d6174696f6e323034204e6f20436f6e74656e743330"
    "31204d6f766564205065726d616e656e746c7934303020426164205265717565737434303120"
    "556e617574686f72697a656434303320466f7262696464656e343034204e6f7420466f756e64"
    "35303020496e7465726e616c20536572766572204572726f72353031204e6f7420496d706c65"
    "6d656e746564353033205365727669636520556e617661696c61626c654a616e20466562204d"
    "617220417072204d6179204a756e204a756c204175672053657074204f6374204e6f76204465"
    "632030303a30303a3030204d6f6e2c205475652c205765642c205468752c204672692c205361"
    "742c2053756e2c20474d546368756e6b65642c746578742f68746d6c2c696d6167652f706e67"
    "2c696d6167652f6a70672c696d6167652f6769662c6170706c69636174696f6e2f786d6c2c61"
    "70706c69636174696f6e2f7868746d6c2b786d6c2c746578742f706c61696e2c746578742f6a"
    "6176617363726970742c7075626c6963707269766174656d61782d6167653d677a69702c6465"
    "666c6174652c73646368636861727365743d7574662d38636861727365743d69736f2d383835"
    "392d312c7574662d2c2a2c656e713d302e"
)


class ProtocolError(Exception):
    pass


class Stream:
    """One stream the client opened: its headers, and what it sent."""

    def __init__(self, conn: "Connection", sid: int, headers: dict):
        self.conn, self.id, self.headers = conn, sid, headers
        self.data: asyncio.Queue = asyncio.Queue()  # bytes, then None at FIN/reset
        self.closed_local = False

    async def write(self, data: bytes) -> None:
        if self.closed_local:
            return
        for i in range(0, len(data), 1 << 16):
            await self.conn.send_data(self.id, data[i:i + (1 << 16)])

    async def close(self) -> None:
        if not self.closed_local:
            self.closed_local = True
            await self.conn.send_data(self.id, b"", FLAG_FIN)

    async def read(self) -> bytes | None:
        return await self.data.get()


class Connection:
    """The server side of one SPDY session over an upgraded HTTP connection.
    `on_stream(stream)` is called for every SYN_STREAM, after the reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_stream):
        self.reader, self.writer, self.on_stream = reader, writer, on_stream
        self.streams: dict[int, Stream] = {}
        self.inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)
        self.deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)
        self.lock = asyncio.Lock()
        self.closed = False

    # -- writing ---------------------------------------------------------------

    async def _send(self, frame: bytes) -> None:
        if self.closed:
            return
        async with self.lock:
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                self.closed = True

    def _control(self, kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def _headers(self, headers: dict) -> bytes:
        raw = struct.pack(">I", len(headers))
        for k, v in headers.items():
            kb, vb = k.lower().encode(), v.encode()
            raw += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    async def send_data(self, sid: int, data: bytes, flags: int = 0) -> None:
        await self._send(struct.pack(">II", sid & 0x7FFFFFFF, (flags << 24) | len(data)) + data)

    async def reply(self, sid: int, headers: dict | None = None) -> None:
        # The compressor is stateful: frames must go out in the order they
        # are compressed, so both happen under the lock.
        async with self.lock:
            frame = self._control(SYN_REPLY, 0,
                                  struct.pack(">I", sid) + self._headers(headers or {}))
            try:
                self.writer.write(frame)
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                self.closed = True

    async def reset(self, sid: int, status: int = RST_CANCEL) -> None:
        await self._send(self._control(RST_STREAM, 0, struct.pack(">II", sid, status)))

    async def goaway(self) -> None:
        last = max(self.streams, default=0)
        await self._send(self._control(GOAWAY, 0, struct.pack(">II", last, 0)))

    # -- reading ---------------------------------------------------------------

    def _parse_headers(self, block: bytes) -> dict:
        raw = self.inflate.decompress(block)
        n, = struct.unpack_from(">I", raw, 0)
        off, out = 4, {}
        for _ in range(n):
            kl, = struct.unpack_from(">I", raw, off)
            k = raw[off + 4:off + 4 + kl].decode()
            off += 4 + kl
            vl, = struct.unpack_from(">I", raw, off)
            v = raw[off + 4:off + 4 + vl].decode()
            off += 4 + vl
            out[k.lower()] = v.split("\0")[0]
        return out

    async def serve(self) -> None:
        """Read frames until the client goes away."""
        try:
            while True:
                head = await self.reader.readexactly(8)
                first, second = struct.unpack(">II", head)
                flags, length = second >> 24, second & 0xFFFFFF
                payload = await self.reader.readexactly(length) if length else b""
                if first & 0x80000000:
                    await self._control_frame((first >> 16) & 0x7FFF, first & 0xFFFF, flags,
                                              payload)
                else:
                    st = self.streams.get(first & 0x7FFFFFFF)
                    if st is not None:
                        if payload:
                            st.data.put_nowait(payload)
                        if flags & FLAG_FIN:
                            st.data.put_nowait(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ProtocolError, zlib.error, struct.error, UnicodeDecodeError) as e:
            # A client that breaks the framing or the header compression
            # cannot be read further: its session ends, the daemon goes on.
            log.warning("SPDY session ended: malformed frame (%s)", e)
        finally:
            self.closed = True
            for st in self.streams.values():
                st.data.put_nowait(None)

    async def _control_frame(self, version: int, kind: int, flags: int, payload: bytes) -> None:
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}")
        if kind == SYN_STREAM:
            sid, = struct.unpack_from(">I", payload, 0)
            sid &= 0x7FFFFFFF
            st = Stream(self, sid, self._parse_headers(payload[10:]))
            self.streams[sid] = st
            await self.reply(sid)
            if flags & FLAG_FIN:
                st.data.put_nowait(None)
            self.on_stream(st)
        elif kind == RST_STREAM:
            sid, _ = struct.unpack(">II", payload[:8])
            st = self.streams.get(sid & 0x7FFFFFFF)
            if st is not None:
                st.closed_local = True
                st.data.put_nowait(None)
        elif kind == PING:
            await self._send(self._control(PING, 0, payload[:4]))
        elif kind == GOAWAY:
            raise ConnectionError("client sent GOAWAY")
        elif kind == HEADERS:
            self._parse_headers(payload[4:])  # keeps the inflater in step
        # SETTINGS, WINDOW_UPDATE: no flow control with these clients.

    async def close(self) -> None:
        if not self.closed:
            await self.goaway()
        self.closed = True
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, RuntimeError):
            pass
