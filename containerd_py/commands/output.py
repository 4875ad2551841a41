"""How the command line prints: tables for people, JSON or ids for programs.

Every listing command takes `--format json|table` and `-q/--quiet`; the
choice is made here once, not in each command.
"""

import datetime
import json
import sys


def add_format_flags(p, quiet: bool = True) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table for people (default) or json for programs")
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="print ids only")


def short_id(value: str, n: int = 12) -> str:
    """Image ids and digests are sha256:<64 hex>: people read 12 of them, as
    with podman and docker. Container ids are chosen by the user: kept whole."""
    if value and value.startswith("sha256:"):
        return value[7:7 + n]
    return value or ""


def human_size(n) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}"


def ago(stamp: str | None) -> str:
    """'3 minutes ago' from an RFC 3339 time, as `podman ps` shows it."""
    if not stamp:
        return "-"
    try:
        t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    secs = (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if secs >= size:
            k = int(secs // size)
            return f"{k} {unit}{'s' if k != 1 else ''} ago"
    return "just now"


def table(headers: list[str], rows: list[list], out=None) -> None:
    out = out or sys.stdout
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r]
                                          for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def emit(args, items, headers: list[str], row, key=lambda x: x.get("id", "")) -> None:
    """Print `items` as the user asked: a table (`row(item)` gives the cells),
    JSON, or one id per line."""
    if getattr(args, "format", "table") == "json":
        print(json.dumps(items, indent=2))
    elif getattr(args, "quiet", False):
        for x in items:
            print(key(x))
    else:
        table(headers, [row(x) for x in items])


def emit_object(args, obj, text: str | None = None) -> None:
    """A command that changes one thing prints its id (podman's habit), or
    the whole object with --format json."""
    if getattr(args, "format", "table") == "json" or text is None:
        print(json.dumps(obj, indent=2))
    else:
        print(text)


class Progress:
    """Bytes and rate of a long transfer on a terminal's last line; silent
    when stderr is not a terminal (scripts and logs get no noise)."""

    def __init__(self, what: str, total: int | None = None, stream=None):
        import time
        self._time = time.monotonic
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.what, self.total, self.done = what, total, 0
        self.start = self._last = self._time()

    def add(self, n: int) -> None:
        self.done += n
        now = self._time()
        if self.enabled and now - self._last >= 0.2:
            self._last = now
            self._draw(now)

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K" + text + "\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        of = f" / {human_size(self.total)}" if self.total else ""
        self.stream.write(f"\r\x1b[K{self.what}: {human_size(self.done)}{of} "
                          f"({human_size(rate)}/s)")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(self._time())
            self.stream.write("\n")
            self.stream.flush()
