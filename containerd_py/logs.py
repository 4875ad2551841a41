"""Reading the container logs the shim writes (CRI format, see docs/shim.md).

Pure parsing and filtering here; the HTTP layer streams the result.
"""

import asyncio
import dataclasses
import os

from .events import parse_timestamp


@dataclasses.dataclass
class LogEntry:
    ns: int
    timestamp: str
    stream: str
    line: str
    complete: bool = True  # False: a CRI `P` record, more of the line follows

    def to_api(self) -> dict:
        return {"timestamp": self.timestamp, "stream": self.stream, "line": self.line}


def parse_lines(lines, pending: dict | None = None, partial: bool = False):
    """Yield LogEntry for each complete line; CRI `P` (partial) records are
    joined with what follows until the `F` record of the same stream
    (`partial=True`: yielded as they are, for a byte-exact copy of the
    output such as the CRI's attach)."""
    pending = {} if pending is None else pending
    for raw in lines:
        parts = raw.rstrip("\n").split(" ", 3)
        if len(parts) < 3:
            continue
        ts, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) == 4 else ""
        if tag == "P" and not partial:
            pending[stream] = pending.get(stream, "") + text
            continue
        text = pending.pop(stream, "") + text
        try:
            ns = parse_timestamp(ts)
        except Exception:
            continue
        yield LogEntry(ns, ts, stream, text, tag != "P")


def log_files(path: str) -> list[str]:
    return [p for p in (path + ".1", path) if os.path.exists(p)]


def read_entries(path: str, *, streams=("stdout", "stderr"), since_ns: int = 0,
                 tail: int | None = None, partial: bool = False) -> list[LogEntry]:
    out = []
    for p in log_files(path):
        with open(p, errors="replace") as f:
            for e in parse_lines(f, partial=partial):
                if e.stream in streams and e.ns >= since_ns:
                    out.append(e)
    if tail is not None:
        out = out[-tail:] if tail else []
    return out


async def follow(path: str, stopped, *, streams=("stdout", "stderr"), since_ns: int = 0,
                 tail: int | None = None, poll: float = 0.1, partial: bool = False):
    """Yield existing entries, then new ones as the shim appends them, until
    `stopped()` is true and everything written has been read. Survives
    rotation (the file is renamed to `.1` and a new one started)."""
    if tail != 0:
        for e in read_entries(path, streams=streams, since_ns=since_ns, tail=tail,
                              partial=partial):
            yield e
    f, ino = _open(path)
    if f is not None:
        f.seek(0, os.SEEK_END)
    pending: dict = {}
    buf = ""
    while True:
        done = stopped()
        if f is None:
            f, ino = _open(path)
        if f is not None:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                for e in parse_lines((ln + "\n" for ln in lines), pending, partial):
                    if e.stream in streams and e.ns >= since_ns:
                        yield e
                continue
            try:
                rotated = os.stat(path).st_ino != ino
            except FileNotFoundError:
                rotated = True
            if rotated:
                f.close()
                f, ino = _open(path)
                continue
        if done:
            if f is not None:
                f.close()
            return
        await asyncio.sleep(poll)


def _open(path: str):
    try:
        f = open(path, errors="replace")
    except FileNotFoundError:
        return None, None
    return f, os.fstat(f.fileno()).st_ino
