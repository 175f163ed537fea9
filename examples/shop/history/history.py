"""history: a customer's purchase history. Python stdlib and strata_client.

GET /history?user=alice -> {"instance", "user", "orders": [...], "items": [{"id", "name",
                            "price", "bought", "order_id"}]}
GET /healthz            -> ok

The history lives in the platform's store, not in this instance: the `worker` appends
each confirmed order to the value of key USER in the namespace `history` (a
compare-and-set, see worker.py). This service only reads it, through the read-through
cache `history` declared in the manifest (`"caches": {"history": {"namespace":
"history", "ttl_ms": 2000, "stale_ms": 10000}}`): `GET $STRATA_URL/v1/caches/history/USER`
answers from the cache, and a miss loads the key from the store, once however many
readers miss at once. A worker's write through the node API drops the cached copy, so a
purchase shows at once; a read of a popular customer's history costs the store nothing
for two seconds, then is served stale for up to ten more while one refresh runs.

`orders` are the latest first; `items` the products of the latest orders, each once.
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = os.environ.get("STRATA_INSTANCE", "history-local")
STRATA_URL = os.environ.get("STRATA_URL", "").rstrip("/")
TIMEOUT_S = float(os.environ.get("SHOP_CALL_TIMEOUT_S", "5"))
CACHE = "history"  # the read-through cache over the store namespace `history`
SHOW_ORDERS = 20
SHOW_ITEMS = 8
HERE = os.path.dirname(os.path.abspath(__file__))


def scratch_or_shop(name):
    """A file the manifest's `files` placed into the scratch dir, else the shop's own copy."""
    for d in (os.environ.get("TMPDIR", "/nonexistent"), os.path.join(HERE, "..")):
        if os.path.exists(os.path.join(d, name)):
            return d
    return None


def load_catalog():
    d = scratch_or_shop("catalog.json")
    if d is None:
        return []
    with open(os.path.join(d, "catalog.json"), encoding="utf-8") as f:
        return json.load(f)["products"]


CATALOG = load_catalog()
BY_ID = {p["id"]: p for p in CATALOG}

# The package clients/python, which the manifest's setup step installs into .deps (on
# PYTHONPATH); run by hand: PYTHONPATH=../../../clients/python.
import strata_client  # noqa: E402


class Clients:
    """Kept-alive platform clients for the handler threads: one per request in flight."""

    def __init__(self):
        self.free = []
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            if self.free:
                return self.free.pop()
        return strata_client.Client(STRATA_URL, timeout=TIMEOUT_S)

    def put(self, client):
        with self.lock:
            self.free.append(client)


CLIENTS = Clients()


def ago(ms):
    """How long ago a time in ms since the epoch was, in words."""
    if not isinstance(ms, (int, float)):
        return "some time ago"
    s = max(0, time.time() - ms / 1000)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = int(s // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def purchases(user):
    """The user's orders, latest first, read through the cache; [] when none yet."""
    client = CLIENTS.take()
    try:
        value = client.cached(CACHE, user)  # bytes, None: no such key in the store
    finally:
        CLIENTS.put(client)  # a client reconnects by itself after a failure
    if value is None:
        return []
    return list(reversed(json.loads(value).get("orders", [])))


def bought_items(orders):
    """The products of the latest orders, each once, latest first."""
    items, seen = [], set()
    for order in orders:
        for line in order.get("items", []):
            pid = line.get("product")
            if pid in seen:
                continue
            seen.add(pid)
            p = BY_ID.get(pid, {"id": pid, "name": line.get("name", pid), "price": line.get("price", "?")})
            items.append({"id": pid, "name": p["name"], "price": p["price"],
                          "bought": ago(order.get("fulfilled_ms") or order.get("ordered_ms")),
                          "order_id": order.get("order_id")})
            if len(items) == SHOW_ITEMS:
                return items
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

    def send_json(self, status, doc):
        self.send(status, "application/json", json.dumps(doc).encode())

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        with self.server.tracker:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                return self.send(200, "text/plain", b"ok\n")
            if url.path.rstrip("/") not in ("/history", ""):
                return self.send(404, "text/plain", b"not found\n")
            user = parse_qs(url.query).get("user", ["guest"])[0] or "guest"
            if not STRATA_URL:
                return self.send_json(503, {"instance": INSTANCE, "error": "STRATA_URL is not set"})
            try:
                orders = purchases(user)
            except (strata_client.StrataError, OSError, ValueError) as e:
                return self.send_json(503, {"instance": INSTANCE, "error": f"{type(e).__name__}: {e}"})
            doc = {"instance": INSTANCE, "user": user, "orders": orders[:SHOW_ORDERS],
                   "items": bought_items(orders)}
            return self.send_json(200, doc)


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
    sys.stderr.write(f"{INSTANCE}: history listening on 127.0.0.1:{server.server_address[1]}"
                     f" (STRATA_URL={STRATA_URL or 'unset'})\n")
    server.serve_forever()
    server.server_close()
    server.tracker.drain(10)


if __name__ == "__main__":
    main()
