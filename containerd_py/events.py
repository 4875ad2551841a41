"""Events: one per state change, fanned out to `/events` streams and kept
in a bounded on-disk journal so a client that reconnects with `?since=`
misses nothing, even across a daemon restart."""

import asyncio
import datetime
import json
import logging
import os
import time

from .errors import InvalidArgument


def now_ns() -> int:
    return time.time_ns()


def rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return base.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_timestamp(value: str) -> int:
    """`since` as unix seconds (int or float) or RFC3339; returns ns."""
    try:
        return int(float(value) * 1_000_000_000)
    except ValueError:
        pass
    text = value.strip().replace("Z", "+00:00")
    frac_ns = 0
    # datetime parses at most microseconds; keep the nanoseconds ourselves.
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        frac_ns = int((digits + "000000000")[:9]) if digits else 0
        text = head + rest
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"invalid timestamp {value!r}: use unix seconds or RFC3339",
                              field="since") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


def _parse(line: str) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("ns"), int):
        return None
    return event


class EventJournal:
    def __init__(self, path: str, max_events: int = 10000):
        self.path = path
        self.max_events = max_events
        self._subscribers: set[asyncio.Queue] = set()
        self._last_ns = 0
        self.lost = 0
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._count = self._load_count()
        self._file = open(path, "a", buffering=1)

    def _load_count(self) -> int:
        try:
            with open(self.path, errors="replace") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return 0
        for line in reversed(lines):  # the last good line: the end may be torn
            event = _parse(line)
            if event is not None:
                self._last_ns = event["ns"]
                break
        return len(lines)

    def emit(self, type_: str, cid: str, pid: int | None = None, status: int | None = None,
             ns: int | None = None, **extra) -> dict:
        # Strictly increasing stamps make `since` replay exact.
        ns = max(ns or now_ns(), self._last_ns + 1)
        self._last_ns = ns
        event = {"type": type_, "id": cid, "timestamp": rfc3339(ns), "ns": ns}
        if pid is not None:
            event["pid"] = pid
        if status is not None:
            event["status"] = status
        event.update(extra)
        try:
            self._file.write(json.dumps(event) + "\n")
            self._count += 1
        except OSError as e:
            # A full disk must not fail the operation that emits: the event
            # still goes to live subscribers; only its replay is lost.
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                logging.getLogger("containerd_py.events").error(
                    "event journal %s: %s (%d events not journalled)", self.path,
                    e.strerror, self.lost)
            self._reopen()
        if self._count > 2 * self.max_events:
            self._compact()
        for q in list(self._subscribers):
            q.put_nowait(event)
        return event

    def _compact(self) -> None:
        with open(self.path, errors="replace") as f:
            keep = f.readlines()[-self.max_events:]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file.close()
        self._file = open(self.path, "a", buffering=1)
        self._count = len(keep)

    def _reopen(self) -> None:
        # A failed buffered write leaves its bytes in the buffer; drop them so
        # that a later write does not start with half a line.
        try:
            self._file.close()
        except OSError:
            pass
        self._file = open(self.path, "a", buffering=1)

    def replay(self, since_ns: int) -> list[dict]:
        out = []
        with open(self.path, errors="replace") as f:
            for line in f:
                event = _parse(line)  # None for a torn or corrupt line: skipped
                if event is not None and event["ns"] > since_ns:
                    out.append(event)
        return out

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    def close(self) -> None:
        self._file.close()
