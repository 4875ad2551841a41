"""A deliberately slow-starting Python service, to show what CRIU restore saves.

Start-up does real work, the kind a real application does before it can
serve: it imports a large part of the standard library, compiles a set of
regular expressions, builds an in-memory index and (optionally) allocates
APP_MEMORY_MB megabytes of touched memory.  That takes ~1-3 s cold.  It then
prints ``ready`` and answers each line read from stdin with ``pong <line>``.

Everything it holds survives a CRIU checkpoint/restore: no threads (but the
optional heartbeat), no inotify, no deleted or temporary files, no ctypes/ffi closures;
only stdin/stdout/stderr pipes, anonymous memory and, with APP_HTTP_PORT, one
listening TCP socket.

Environment:
  APP_MEMORY_MB  extra memory to allocate and touch (default 0), e.g. 64/256/1024
  APP_WORK       scale of the in-memory index (default 1.0)
  APP_HEARTBEAT_MS  tick every N ms; print "heartbeat-gap X ms" after a pause of
                 more than 20 ticks, and answer "gaps" with the longest pause seen

Besides "pong <line>", it answers "whoami" with "whoami <value drawn at
start> <MiB> <checksum of the ballast>".
"""

import os
import sys
import time

T0 = time.monotonic()

# -- 1. import a large part of the standard library -------------------------
MODULES = """
abc argparse array ast base64 binascii bisect bz2 calendar cmath codecs
collections collections.abc colorsys configparser contextlib copy csv
dataclasses datetime decimal difflib dis email email.mime.multipart
email.mime.text email.parser email.policy enum fnmatch fractions functools
getopt gettext glob graphlib gzip hashlib heapq hmac html html.parser
http http.client http.cookies http.server imaplib inspect io ipaddress
itertools json json.decoder keyword linecache locale logging logging.config
logging.handlers lzma mailbox math mimetypes numbers operator optparse
pathlib pickle pickletools pkgutil platform plistlib poplib pprint
pydoc_data queue quopri random re reprlib sched secrets selectors shlex
shutil smtplib socketserver sqlite3 statistics string stringprep struct
subprocess tabnanny tarfile textwrap timeit token tokenize tomllib trace
traceback types typing unicodedata unittest unittest.mock urllib.parse
urllib.request uuid warnings wave weakref xml.dom.minidom xml.etree.ElementTree
xml.sax xmlrpc.client zipfile zlib zoneinfo asyncio concurrent.futures
""".split()

import importlib  # noqa: E402

loaded = []
for name in MODULES:
    try:
        loaded.append(importlib.import_module(name))
    except Exception:  # a module missing from a minimal Python is fine
        pass
T_IMPORT = time.monotonic()

import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

# -- 2. build an in-memory index --------------------------------------------
work = float(os.environ.get("APP_WORK", "1.0") or 1.0)
n = max(1000, int(100_000 * work))
patterns = [re.compile(r"(?P<k%d>[a-z]{%d,%d})[-_.](?P<v%d>\d+)" % (i, 1 + i % 5, 6 + i % 7, i))
            for i in range(300)]
index = {}
for i in range(n):
    key = hashlib.sha1(i.to_bytes(8, "little")).hexdigest()[:16]
    index[key] = (i, key[::-1], i * i % 9973)
# JSON round trips of the index, as if loading a config or cache
for _ in range(3):
    cache_size = len(json.loads(json.dumps(index)))
# a prime sieve, as a stand-in for precomputed tables
limit = int(8_000_000 * work)
sieve = bytearray([1]) * (limit + 1)
sieve[0:2] = b"\x00\x00"
for p in range(2, int(limit ** 0.5) + 1):
    if sieve[p]:
        sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
primes = sum(sieve)
T_INDEX = time.monotonic()

# -- 3. optional ballast: APP_MEMORY_MB of touched anonymous memory ----------
mb = int(os.environ.get("APP_MEMORY_MB", "0") or 0)
ballast = bytearray(mb << 20)
if mb:
    view = memoryview(ballast)
    page = 4096
    view[::page] = bytes([0xA5]) * len(range(0, len(ballast), page))  # dirty every page
    del view
T_READY = time.monotonic()


def rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return -1


sys.stderr.write(
    "app: imports %.2fs index %.2fs memory %dMB %.2fs total %.2fs "
    "(%d modules, %d keys, %d primes, rss %dMB)\n"
    % (T_IMPORT - T0, T_INDEX - T_IMPORT, mb, T_READY - T_INDEX, T_READY - T0,
       len(loaded), len(index), primes, rss_mb()))
sys.stderr.flush()
sys.stdout.write("ready\n")
sys.stdout.flush()

# -- 4. serve: one answer per input line ------------------------------------
# "whoami" answers with what only this process's memory holds: a value drawn
# at start and a checksum of the ballast (a fresh start draws another).
BOOT = os.urandom(8).hex()


def checksum() -> int:
    return sum(ballast[::65536]) if mb else 0


# APP_HEARTBEAT_MS: a thread that ticks every N ms and remembers the longest
# gap between two ticks: how long the application was not running (frozen
# for a checkpoint or a migration), as it sees it itself.
beat_ms = float(os.environ.get("APP_HEARTBEAT_MS", "0") or 0)
gaps = {"max": 0.0, "last": 0.0}
if beat_ms:
    import threading

    def heartbeat():
        # The wall clock, not the monotonic one: CRIU restores a process in
        # a time namespace whose monotonic clock resumes where the dump left
        # it, so it would not show the time spent frozen.
        prev = time.time()
        while True:
            time.sleep(beat_ms / 1000)
            now = time.time()
            gap = (now - prev) * 1000
            if gap > gaps["max"]:
                gaps["max"] = gap
            if gap > 10 * beat_ms:
                gaps["last"] = gap
            if gap > 20 * beat_ms and gap > 20:
                # One write: whole even with the main thread answering.
                os.write(1, b"heartbeat-gap %.1f ms\n" % gap)
            prev = now

    threading.Thread(target=heartbeat, daemon=True).start()

# APP_HTTP_PORT: answer HTTP GETs on that port (a listening TCP socket, which
# CRIU checkpoints too), for the time-to-first-200 benchmark; else stdin.
http_port = int(os.environ.get("APP_HTTP_PORT", "0") or 0)
if http_port:
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"pong %d keys\n" % len(index)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("0.0.0.0", http_port), Handler).serve_forever()

stdin = sys.stdin.buffer
stdout = sys.stdout.buffer
while True:
    line = stdin.readline()
    if not line:
        break
    word = line.rstrip(b"\r\n")
    if word == b"whoami":
        stdout.write(b"whoami %s %d %d\n" % (BOOT.encode(), mb, checksum()))
    elif word == b"gaps":
        stdout.write(b"gaps max=%.1f last=%.1f\n" % (gaps["max"], gaps["last"]))
        gaps["max"] = gaps["last"] = 0.0
    else:
        stdout.write(b"pong " + word + b"\n")
    stdout.flush()
