"""history: a user's recently viewed products. Python stdlib only.

GET /history?user=alice -> {"instance", "user", "items": [{"id", "name", "price", "viewed"}]}
GET /healthz            -> ok

Stateless for now: the list is canned (a fixed pick per user name), so any instance
gives the same answer. Keeping real history belongs in the platform's store, not in
an instance's memory or scratch dir, which vanish when the instance stops.
"""
import json
import os
import signal
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = os.environ.get("STRATA_INSTANCE", "history-local")

CANNED = {
    "alice": ["B0004", "B0002", "B0008", "B0005"],
    "bob": ["B0009", "B0003"],
    "carol": ["B0010", "B0007", "B0001", "B0006", "B0002"],
}
VIEWED = ["2 minutes ago", "1 hour ago", "yesterday", "3 days ago", "last week"]


def load_catalog():
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (
        os.path.join(os.environ.get("TMPDIR", "/nonexistent"), "catalog.json"),
        os.path.join(here, "..", "catalog.json"),
    ):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)["products"]
    return []


CATALOG = load_catalog()
BY_ID = {p["id"]: p for p in CATALOG}


def recent_views(user):
    ids = CANNED.get(user)
    if ids is None and CATALOG:
        # any other user: a stable pick of three products derived from the name
        h = zlib.crc32(user.encode())
        ids = [CATALOG[(h + 3 * k) % len(CATALOG)]["id"] for k in range(3)]
    items = []
    for k, pid in enumerate(ids or []):
        p = BY_ID.get(pid, {"id": pid, "name": pid, "price": "?"})
        items.append({"id": pid, "name": p["name"], "price": p["price"],
                      "viewed": VIEWED[min(k, len(VIEWED) - 1)]})
    return items


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop-history/1"

    def log_message(self, fmt, *args):
        if os.environ.get("SHOP_LOG"):
            sys.stderr.write("%s %s\n" % (INSTANCE, fmt % args))

    def send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", INSTANCE)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        with self.server.tracker:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                return self.send(200, "text/plain", b"ok\n")
            if url.path.rstrip("/") not in ("/history", ""):
                return self.send(404, "text/plain", b"not found\n")
            user = parse_qs(url.query).get("user", ["guest"])[0]
            doc = {"instance": INSTANCE, "user": user, "items": recent_views(user)}
            return self.send(200, "application/json", json.dumps(doc).encode())


class Tracker:
    """Counts requests in flight so SIGTERM can drain them."""

    def __init__(self):
        self.n = 0
        self.cv = threading.Condition()

    def __enter__(self):
        with self.cv:
            self.n += 1

    def __exit__(self, *exc):
        with self.cv:
            self.n -= 1
            self.cv.notify_all()

    def drain(self, timeout):
        end = time.monotonic() + timeout
        with self.cv:
            while self.n and time.monotonic() < end:
                self.cv.wait(end - time.monotonic())


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.tracker = Tracker()

    def on_term(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    sys.stderr.write(f"{INSTANCE}: history listening on 127.0.0.1:{server.server_address[1]}\n")
    server.serve_forever()
    server.server_close()
    server.tracker.drain(10)


if __name__ == "__main__":
    main()
