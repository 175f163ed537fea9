"""worker: fulfils the shop's orders from the `orders` queue. Python stdlib and strata_client.

POST /orders  a batch of orders pushed by strata -> {"processed", "failed": [offsets]}
GET  /stats   {"instance", "batches", "confirmed", "rejected", "failed", "replied",
               "recorded", "conflicts"}
GET  /healthz ok

The worker has no route: nobody calls it. The manifest's `"consumes": {"queue": "orders",
"group": "fulfil", ...}` makes strata fetch batches of orders for the consumer group
`fulfil` and POST each batch to one ready instance. Each order is checked against the
catalog and priced (a stand-in for reserving stock and printing a shipping label);
when its sender waits for the outcome (the message has a `reply_to`: the frontend's
POST /buy publishes and waits), the worker replies to it through the platform.

A 2xx answer deletes the whole batch, except the offsets listed in "failed", which strata
hands out again (after `max_deliveries` tries, to the dead-letter queue `orders.dlq`):
a message that is not an order at all, or whose reply could not be sent. An order for
an unknown product is answered "rejected" and deleted: trying again would not help.
Delivery is at least once, so an order may come twice (a lease that ran out, a worker
that died mid-batch): fulfilment is keyed on the order id, and the outcome travels in
the reply, never in the instance's memory, which vanishes when it stops.

An order is one product (`product`, `qty`: "Buy now") or the lines of a cart (`items`:
[{"product", "qty"}], the frontend's checkout). A confirmed order is appended to the
customer's purchase history before the reply: the value of key USER in the store's
namespace `history`, {"orders": [...]}, which the `history` service reads through the
read-through cache declared in the manifest. Several workers may append to one customer's
history at once, so the append is a compare-and-set: read the value and its version, put
the new value only over that version (`if_version`), and on a ConflictError (another
worker wrote in between) read again and retry. An order id already in the history is not
appended again (a redelivered order); a history that could not be written sends the
order back to the queue.
"""
import json
import os
import signal
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

INSTANCE = os.environ.get("STRATA_INSTANCE", "worker-local")
STRATA_URL = os.environ.get("STRATA_URL", "").rstrip("/")
WORK_MS = float(os.environ.get("SHOP_WORK_MS", "5"))
MAX_BATCH_BYTES = 16 << 20
MAX_LINES = 20  # lines of one order
HISTORY_NS = "history"  # the store namespace of purchase histories, one key per customer
HISTORY_KEEP = 50  # orders kept per customer, the latest
CAS_TRIES = 20
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

# One batch is in flight per instance at a time, so one kept-alive client will do.
PLATFORM = strata_client.Client(STRATA_URL) if STRATA_URL else None

STATS = {"batches": 0, "confirmed": 0, "rejected": 0, "failed": 0, "replied": 0,
         "recorded": 0, "conflicts": 0}
STATS_LOCK = threading.Lock()


def count(key, n=1):
    with STATS_LOCK:
        STATS[key] += n


def log(msg):
    sys.stderr.write(f"{INSTANCE}: {msg}\n")


def order_lines(order):
    """The order's lines [(product, qty)] -> (lines, None) or (None, why it is rejected)."""
    raw = order.get("items")
    if raw is None:
        raw = [{"product": order.get("product"), "qty": order.get("qty", 1)}]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LINES:
        return None, f"an order has 1 to {MAX_LINES} lines"
    lines = []
    for line in raw:
        product = BY_ID.get(line.get("product")) if isinstance(line, dict) else None
        if product is None:
            return None, "unknown product"
        try:
            qty = int(line.get("qty", 1))
        except (TypeError, ValueError):
            qty = 0
        if not 1 <= qty <= 99:
            return None, "quantity must be 1 to 99"
        lines.append((product, qty))
    return lines, None


def fulfil(order, message):
    """The outcome of one order (a dict for the reply)."""
    outcome = {"order_id": order.get("order_id"), "worker": INSTANCE, "offset": message.offset,
               "deliveries": message.deliveries}
    lines, reason = order_lines(order)
    if lines is None:
        return dict(outcome, status="rejected", reason=reason)
    time.sleep(WORK_MS / 1000)  # stand-in for the real work: stock, payment, shipping label
    items = [{"product": p["id"], "name": p["name"], "qty": qty, "price": p["price"],
              "subtotal": f"{Decimal(p['price']) * qty:.2f}"} for p, qty in lines]
    total = sum(Decimal(it["subtotal"]) for it in items)
    outcome = dict(outcome, status="confirmed", items=items, total=f"{total:.2f}", ships="tomorrow")
    if len(items) == 1:  # "Buy now": the one product on top as well
        outcome.update(product=items[0]["product"], name=items[0]["name"], qty=items[0]["qty"])
    return outcome


def record_purchase(user, outcome, message):
    """Appends a confirmed order to the customer's history in the store, by
    compare-and-set; True once it is there (now or by an earlier delivery)."""
    entry = {"order_id": outcome["order_id"], "items": outcome["items"], "total": outcome["total"],
             "ordered_ms": message.timestamp_ms, "fulfilled_ms": int(time.time() * 1000),
             "worker": INSTANCE}
    for _ in range(CAS_TRIES):
        current = PLATFORM.kv_get(HISTORY_NS, user)  # (value, version), None: no history yet
        if current is None:
            history, version = {"orders": []}, None
        else:
            history, version = json.loads(current.value), current.version
        orders = history.get("orders", [])
        if any(o.get("order_id") == entry["order_id"] for o in orders):
            return True  # a redelivered order: recorded the first time
        history["orders"] = (orders + [entry])[-HISTORY_KEEP:]
        try:
            if version is None:
                PLATFORM.kv_put(HISTORY_NS, user, history, if_absent=True)
            else:
                PLATFORM.kv_put(HISTORY_NS, user, history, if_version=version)
            count("recorded")
            return True
        except strata_client.ConflictError:
            count("conflicts")  # another worker wrote in between: read it again
    log(f"order {entry['order_id']}: the history of {user!r} kept changing; "
        "the order goes back to the queue")
    return False


def handle(message):
    """Processes one pushed message; False when it must be delivered again."""
    try:
        order = message.json()
        if not isinstance(order, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        log(f"offset {message.offset} (delivery {message.deliveries}) is not an order ({e}); "
            "it goes back to the queue")
        return False
    outcome = fulfil(order, message)
    if outcome["status"] == "confirmed" and PLATFORM is not None:
        user = str(order.get("user") or "guest")
        try:
            if not record_purchase(user, outcome, message):
                return False
        except (strata_client.StrataError, OSError, ValueError, AttributeError) as e:
            log(f"order {order.get('order_id')}: recording it in the history failed ({e}); "
                "it goes back to the queue")
            return False
    count(outcome["status"])
    if message.reply_to:
        if PLATFORM is None:
            log(f"order {order.get('order_id')}: cannot reply without STRATA_URL")
            return True
        try:
            PLATFORM.reply(message, outcome)
            count("replied")
        except strata_client.StrataError as e:
            if e.code != "not_found":  # the buyer stopped waiting; the order stands
                log(f"order {order.get('order_id')}: reply failed ({e}); it goes back to the queue")
                return False
        except OSError as e:
            log(f"order {order.get('order_id')}: reply failed ({e}); it goes back to the queue")
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop-worker/1"

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
            path = urlsplit(self.path).path
            if path == "/healthz":
                return self.send(200, "text/plain", b"ok\n")
            if path == "/stats":
                with STATS_LOCK:
                    return self.send_json(200, dict(STATS, instance=INSTANCE))
            return self.send(404, "text/plain", b"not found\n")

    def do_POST(self):
        with self.server.tracker:
            if urlsplit(self.path).path != "/orders":
                return self.send(404, "text/plain", b"not found\n")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BATCH_BYTES:
                return self.send(413, "text/plain", b"batch too large\n")
            try:
                messages = strata_client.parse_push(self.rfile.read(length))
            except (ValueError, KeyError, TypeError) as e:
                # Not a batch: answering non-2xx gives any messages back for redelivery.
                return self.send(400, "text/plain", f"not a pushed batch: {e}\n".encode())
            count("batches")
            failed = [m.offset for m in messages if not handle(m)]
            count("failed", len(failed))
            return self.send_json(200, {"processed": len(messages) - len(failed), "failed": failed})


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
    sys.stderr.write(f"{INSTANCE}: worker listening on 127.0.0.1:{server.server_address[1]}"
                     f" (STRATA_URL={STRATA_URL or 'unset'})\n")
    server.serve_forever()
    server.server_close()
    server.tracker.drain(10)


if __name__ == "__main__":
    main()
