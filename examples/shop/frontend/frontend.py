"""frontend: composes the product page from three other services. Python stdlib and strata_client.

GET  /?product=B0001&user=alice              -> the HTML product page
GET  /?product=B0001&user=alice&format=json  -> which instance served each part, as JSON
POST /buy  product=B0001&user=alice&qty=2    -> places an order for one product (HTML; JSON
                                                with ?format=json or Accept: application/json)
POST /buy  cart=1&user=alice                 -> places an order for the user's cart (checkout)
POST /cart product=B0001&user=alice&qty=2    -> adds to the user's cart (HTML: back to the
                                                product page; JSON: the cart)
GET  /cart?user=alice                        -> the user's cart, as JSON
GET  /healthz                                -> ok

The page is put together from parallel calls made through the platform, by service
name, never by address:

    $STRATA_URL/v1/any/images/images?...             the product picture (CPU-bound resize)
    $STRATA_URL/v1/any/recommendations/recommendations?...
    $STRATA_URL/v1/any/history/history?user=...

A part whose call fails or times out is left out of the page with a note; the page
itself still renders (graceful degradation, as on the real thing).

An order goes through the durable queue `orders` rather than a call: POST /buy publishes
it with the Python client (the package clients/python, installed into .deps by the
manifest's setup step) and waits up to SHOP_ORDER_WAIT_MS for the `worker` pool's reply:
200 with the confirmation, or 202 when none came in time (the order is stored and will
still be fulfilled). The order id comes from the page's form, so a form sent twice is
one order: the queue drops a publish whose dedupe id it has seen.

A cart lives in the platform's store, not in this instance (there are several, and any
of them may serve the next request): the value of key USER in the namespace `carts`,
{"items": [{"product", "qty"}]}. Two requests may change one cart at once, so every
change is a compare-and-set: read the cart and its version, put the new cart only over
that version, and read again on a ConflictError. A checkout publishes the cart's lines
as one order, then takes what it ordered out of the cart (a compare-and-set again, so a
product added meanwhile stays). The purchase history shown on the page comes from the
`history` service, which reads what the workers wrote through a read-through cache.
"""
import html
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlsplit

INSTANCE = os.environ.get("STRATA_INSTANCE", "frontend-local")
STRATA_URL = os.environ.get("STRATA_URL", "").rstrip("/")
TIMEOUT_S = float(os.environ.get("SHOP_CALL_TIMEOUT_S", "5"))
IMAGE_SIDE = int(os.environ.get("SHOP_IMAGE_SIDE", "300"))
ORDER_WAIT_MS = int(os.environ.get("SHOP_ORDER_WAIT_MS", "3000"))
CARTS_NS = "carts"  # the store namespace of carts, one key per user
MAX_LINES = 20  # products in one cart
CAS_TRIES = 20
USERS = ["alice", "bob", "carol", "guest"]
HERE = os.path.dirname(os.path.abspath(__file__))

POOL = ThreadPoolExecutor(max_workers=32)


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
    """Kept-alive platform clients for the handler threads: one per order in flight."""

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


class CartError(Exception):
    """A cart change that cannot be made (HTTP 400 with the message)."""


def read_cart(client, user):
    """The user's cart -> (lines [{"product", "qty"}], version; None when there is none)."""
    got = client.kv_get(CARTS_NS, user)  # Entry(value, version), None: no such key
    if got is None:
        return [], None
    return got.json().get("items", []), got.version


def update_cart(user, change):
    """Applies change(lines) -> new lines to the user's cart by compare-and-set, trying
    again from a fresh read when another request changed the cart in between -> the
    cart's new lines. An empty cart is deleted."""
    client = CLIENTS.take()
    try:
        for _ in range(CAS_TRIES):
            lines, version = read_cart(client, user)
            new = change([dict(line) for line in lines])
            try:
                if not new:
                    if version is not None:
                        client.kv_delete(CARTS_NS, user, if_version=version)
                elif version is None:
                    client.kv_put(CARTS_NS, user, {"items": new}, if_absent=True)
                else:
                    client.kv_put(CARTS_NS, user, {"items": new}, if_version=version)
                return new
            except strata_client.ConflictError:
                continue  # changed meanwhile: read it again
        raise CartError("the cart kept changing; please try again")
    finally:
        CLIENTS.put(client)  # a client reconnects by itself after a failure


def add_to_cart(user, product, qty):
    def change(lines):
        for line in lines:
            if line["product"] == product:
                line["qty"] = min(99, line["qty"] + qty)
                return lines
        if len(lines) >= MAX_LINES:
            raise CartError(f"a cart holds up to {MAX_LINES} products")
        return lines + [{"product": product, "qty": qty}]
    return update_cart(user, change)


def take_out_of_cart(user, ordered):
    """Removes the ordered quantities ({product: qty}) from the cart -> the lines left."""
    def change(lines):
        left = []
        for line in lines:
            qty = line["qty"] - ordered.get(line["product"], 0)
            if qty > 0:
                left.append(dict(line, qty=qty))
        return left
    return update_cart(user, change)


def cart_view(user):
    """The user's cart for a page -> {"items": [{"id", "name", "price", "qty"}], "total",
    "error"}."""
    view = {"items": [], "total": "0.00", "error": None}
    if not STRATA_URL:
        return dict(view, error="STRATA_URL is not set")
    client = CLIENTS.take()
    try:
        lines, _ = read_cart(client, user)
    except Exception as e:  # the store is unavailable: the page renders without the cart
        return dict(view, error=f"{type(e).__name__}: {e}")
    finally:
        CLIENTS.put(client)
    total = Decimal(0)
    for line in lines:
        p = BY_ID.get(line["product"], {"id": line["product"], "name": line["product"], "price": "0"})
        view["items"].append({"id": p["id"], "name": p["name"], "price": p["price"], "qty": line["qty"]})
        total += Decimal(p["price"]) * line["qty"]
    view["total"] = f"{total:.2f}"
    return view


class Part:
    """The outcome of one call to another service."""

    def __init__(self, service):
        self.service = service
        self.doc = None
        self.error = None
        self.status = None
        self.ms = 0.0

    @property
    def instance(self):
        return (self.doc or {}).get("instance", "?")

    def summary(self):
        return {"service": self.service, "ok": self.doc is not None, "status": self.status,
                "instance": self.instance if self.doc is not None else None,
                "ms": round(self.ms, 1), "error": self.error}


def call(service, path, params, traceparent=None):
    """GET $STRATA_URL/v1/any/<service><path>?params and parse the JSON reply. Passing
    on the page request's `traceparent` makes the call a span of the page's trace
    (`strata trace REQUEST_ID` shows them together)."""
    part = Part(service)
    t0 = time.perf_counter()
    try:
        if not STRATA_URL:
            raise RuntimeError("STRATA_URL is not set")
        url = f"{STRATA_URL}/v1/any/{quote(service)}{path}?{urlencode(params)}"
        # The platform answers only callers with this service's token ($STRATA_TOKEN).
        token = os.environ.get("STRATA_TOKEN", "")
        headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
        if traceparent:
            headers["traceparent"] = traceparent
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            part.status = resp.status
            part.doc = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        part.status = e.code
        part.error = f"HTTP {e.code}: {e.read(200).decode('utf-8', 'replace').strip()}"
    except Exception as e:  # timeouts, refused connections, bad JSON: the part is missing
        part.error = f"{type(e).__name__}: {e}"
    part.ms = (time.perf_counter() - t0) * 1000
    return part


def compose(product, user, traceparent=None):
    futures = {
        "images": POOL.submit(call, "images", "/images",
                              {"product": product, "w": IMAGE_SIDE, "h": IMAGE_SIDE, "format": "json"},
                              traceparent),
        "recommendations": POOL.submit(call, "recommendations", "/recommendations",
                                       {"product": product, "user": user, "n": 4}, traceparent),
        "history": POOL.submit(call, "history", "/history", {"user": user}, traceparent),
    }
    cart = POOL.submit(cart_view, user)
    return {name: f.result() for name, f in futures.items()}, cart.result()


def place_order(order):
    """Publishes the order to `orders` and waits for a worker's reply -> (status, doc)."""
    t0 = time.perf_counter()
    doc = {"order": order, "frontend": INSTANCE}
    if not STRATA_URL:
        return 503, dict(doc, status="unavailable", error="STRATA_URL is not set")
    client = CLIENTS.take()
    try:
        reply = client.request("orders", order, timeout_ms=ORDER_WAIT_MS, dedupe_id=order["order_id"])
        CLIENTS.put(client)
        outcome = reply.json()
        doc.update(status=outcome.get("status", "confirmed"), confirmation=outcome, offset=reply.offset)
        code = 200 if doc["status"] == "confirmed" else 409
    except strata_client.StrataError as e:
        CLIENTS.put(client)
        if e.code == "no_reply":
            # Published and durable, but no worker answered in time: it will be fulfilled.
            doc.update(status="accepted", note=f"no confirmation within {ORDER_WAIT_MS} ms; "
                                               "the order is queued and will be fulfilled")
            code = 202
        elif e.code == "duplicate":
            # The same form sent again: the queue already holds this order (dedupe id).
            doc.update(status="accepted", note="this order was already placed; it is queued once")
            code = 202
        else:
            doc.update(status="unavailable", error=f"HTTP {e.status}: {e.message}")
            code = 503
    except Exception as e:  # refused connections, timeouts, a bad reply: nothing was confirmed
        doc.update(status="unavailable", error=f"{type(e).__name__}: {e}")
        code = 503
    doc["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return code, doc


def product_and_qty(fields):
    """The product and quantity of a form -> (product, qty, None) or (None, None, what is wrong)."""
    product = fields.get("product", "")
    if product not in BY_ID:
        return None, None, f"unknown product {product!r}"
    try:
        qty = int(fields.get("qty", "1"))
    except ValueError:
        qty = 0
    if not 1 <= qty <= 99:
        return None, None, "qty must be a whole number from 1 to 99"
    return product, qty, None


def order_from(fields):
    """The order in a POST /buy -> (order, None) or (None, what is wrong): the form's
    product, or with cart=1 the lines of the user's cart (read from the store)."""
    order_id = fields.get("order_id") or uuid.uuid4().hex
    if len(order_id) > 64:
        return None, "order_id is too long"
    user = fields.get("user") or "guest"
    if fields.get("cart"):
        if not STRATA_URL:
            return None, "STRATA_URL is not set"
        client = CLIENTS.take()
        try:
            lines, _ = read_cart(client, user)
        finally:
            CLIENTS.put(client)
        if not lines:
            return None, "the cart is empty"
        return {"order_id": order_id, "items": lines, "user": user}, None
    product, qty, problem = product_and_qty(fields)
    if problem:
        return None, problem
    return {"order_id": order_id, "product": product, "qty": qty, "user": user}, None


def order_lines(order):
    """An order's lines [{"product", "qty"}], whether one product or a cart."""
    return order.get("items") or [{"product": order["product"], "qty": order["qty"]}]


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#eaeded;color:#0f1111}
header{background:#131921;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header b{font-size:1.3rem} header a{color:#fff;text-decoration:none;margin-right:.6rem}
header .me{font-weight:bold;text-decoration:underline}
main{max-width:62rem;margin:1rem auto;background:#fff;padding:1.2rem 1.6rem;border-radius:6px}
.product{display:flex;gap:2rem;flex-wrap:wrap}
.product img{width:300px;height:300px;border:1px solid #ddd;border-radius:4px}
.price{color:#b12704;font-size:1.6rem}
h2{font-size:1.15rem;border-top:1px solid #ddd;padding-top:1rem;margin-top:1.4rem}
ul.cards{list-style:none;padding:0;display:flex;gap:1rem;flex-wrap:wrap}
ul.cards li{border:1px solid #ddd;border-radius:4px;padding:.6rem .8rem;width:12rem}
ul.cards a{color:#007185;text-decoration:none}
.served{display:inline-block;font:12px ui-monospace,monospace;background:#f0f7ff;
        border:1px solid #b6d4fe;color:#084298;border-radius:3px;padding:1px 6px;margin-left:.4rem}
.down{background:#fff3cd;border:1px solid #ffe69c;padding:.6rem;border-radius:4px;color:#664d03}
.buy button{background:#ffd814;border:1px solid #fcd200;border-radius:20px;padding:.4rem 1.4rem;cursor:pointer}
.buy input{width:3.5rem}
.buy button.cart{background:#ffa41c;border-color:#ff8f00}
table.cart td{padding:.2rem .8rem .2rem 0}
footer{max-width:62rem;margin:0 auto 2rem;font:12px ui-monospace,monospace;color:#555}
"""


def esc(s):
    return html.escape(str(s), quote=True)


def served(part):
    return f'<span class="served">served by {esc(part.instance)} in {part.ms:.0f} ms</span>'


def unavailable(part):
    return (f'<p class="down">{esc(part.service)} is unavailable right now '
            f'({esc(part.error or "no answer")}); the rest of the page still works.</p>')


def link(pid, user):
    return "/?" + urlencode({"product": pid, "user": user})


def cards(items, user, extra):
    out = ['<ul class="cards">']
    for it in items:
        out.append(f'<li><a href="{esc(link(it["id"], user))}">{esc(it["name"])}</a>'
                   f'<br><span class="price" style="font-size:1rem">${esc(it["price"])}</span>'
                   f'{extra(it)}</li>')
    out.append("</ul>")
    return "".join(out)


def render_cart(cart, user):
    if cart["error"]:
        return ('<h2>Your cart</h2><p class="down">The cart is unavailable right now '
                f'({esc(cart["error"])}); the rest of the page still works.</p>')
    if not cart["items"]:
        return "<h2>Your cart</h2><p>Your cart is empty.</p>"
    rows = "".join(f'<tr><td><a href="{esc(link(it["id"], user))}">{esc(it["name"])}</a></td>'
                   f'<td>{esc(it["qty"])} &times; ${esc(it["price"])}</td></tr>'
                   for it in cart["items"])
    return f"""<h2>Your cart</h2>
<table class="cart">{rows}<tr><td><b>Total</b></td><td><b>${esc(cart["total"])}</b></td></tr></table>
<form class="buy" method="post" action="/buy">
<input type="hidden" name="cart" value="1">
<input type="hidden" name="user" value="{esc(user)}">
<input type="hidden" name="order_id" value="{uuid.uuid4().hex}">
<button>Check out</button>
</form>"""


def render(product, user, parts, cart, started, request_id):
    p = BY_ID.get(product, {"id": product, "name": f"Unknown product {product}", "price": "?"})
    img, recs, hist = parts["images"], parts["recommendations"], parts["history"]
    users = " ".join(
        f'<a class="{"me" if u == user else ""}" href="{esc(link(product, u))}">{esc(u)}</a>'
        for u in USERS)
    if img.doc:
        picture = (f'<div><img alt="{esc(p["name"])}" src="{esc(img.doc["data_url"])}">'
                   f'<br>{served(img)}</div>')
    else:
        picture = f'<div style="width:300px">{unavailable(img)}</div>'
    if recs.doc:
        recs_html = (f'<h2>Customers who bought this item also bought {served(recs)}</h2>'
                     + cards(recs.doc["items"], user, lambda it: ""))
    else:
        recs_html = "<h2>Customers who bought this item also bought</h2>" + unavailable(recs)
    if hist.doc:
        hist_html = (f'<h2>Bought before, {esc(user)} {served(hist)}</h2>'
                     + (cards(hist.doc["items"], user,
                              lambda it: f'<br><small>bought {esc(it["bought"])}</small>')
                        if hist.doc["items"] else "<p>No orders yet.</p>"))
    else:
        hist_html = "<h2>Bought before</h2>" + unavailable(hist)
    total = (time.perf_counter() - started) * 1000
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(p["name"])} - strata shop</title>
<style>{CSS}</style></head>
<body>
<header><b>strata shop</b><span>signed in as: {users}</span></header>
<main>
<div class="product">
{picture}
<div>
<h1>{esc(p["name"])}</h1>
<p class="price">${esc(p["price"])}</p>
<p>In stock. Ships from and sold by strata shop.</p>
<form class="buy" method="post" action="/buy">
<input type="hidden" name="product" value="{esc(p["id"])}">
<input type="hidden" name="user" value="{esc(user)}">
<input type="hidden" name="order_id" value="{uuid.uuid4().hex}">
<label>Qty <input type="number" name="qty" value="1" min="1" max="99"></label>
<button>Buy now</button>
<button class="cart" formaction="/cart">Add to cart</button>
</form>
<p>Page composed by <span class="served">{esc(INSTANCE)}</span> in {total:.0f} ms</p>
</div>
</div>
{render_cart(cart, user)}
{recs_html}
{hist_html}
</main>
<footer>frontend={esc(INSTANCE)} images={esc(img.instance if img.doc else "-")}
recommendations={esc(recs.instance if recs.doc else "-")}
history={esc(hist.instance if hist.doc else "-")}
request-id={esc(request_id or "-")}</footer>
</body></html>
"""


def render_order(code, doc):
    order = doc["order"]
    lines = order_lines(order)
    what = ", ".join(f'{esc(line["qty"])} &times; '
                     f'{esc(BY_ID.get(line["product"], {"name": line["product"]})["name"])}'
                     for line in lines)
    back = esc(link(lines[0]["product"], order["user"]))
    c = doc.get("confirmation") or {}
    if code == 200:
        head = "Order confirmed"
        text = (f'<p>{what}, total '
                f'<span class="price" style="font-size:1rem">${esc(c.get("total", "?"))}</span>; '
                f'ships {esc(c.get("ships", "soon"))}.</p>'
                f'<p>Fulfilled by <span class="served">{esc(c.get("worker", "?"))}</span> '
                f'from the queue (offset {esc(doc.get("offset"))}), confirmed in {doc["ms"]:.0f} ms.</p>')
    elif code == 202:
        head = "Order received"
        text = f'<p>{what}. {esc(doc["note"])}.</p>'
    elif code == 409:
        head = "Order not accepted"
        text = f'<p class="down">{esc(c.get("reason", doc["status"]))}</p>'
    else:
        head = "Ordering is unavailable right now"
        text = f'<p class="down">{esc(doc.get("error", ""))}; nothing was ordered. Please try again.</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{head} - strata shop</title>
<style>{CSS}</style></head>
<body>
<header><b>strata shop</b><span>signed in as: {esc(order["user"])}</span></header>
<main>
<h1>{head}</h1>
{text}
<p>Order <code>{esc(order["order_id"])}</code>, placed by <span class="served">{esc(INSTANCE)}</span>.</p>
<p><a href="{back}">Back to the shop</a></p>
</main>
</body></html>
"""


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop-frontend/1"

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
            started = time.perf_counter()
            url = urlsplit(self.path)
            if url.path == "/healthz":
                return self.send(200, "text/plain", b"ok\n")
            q = parse_qs(url.query)
            if url.path == "/cart":
                user = q.get("user", ["alice"])[0] or "guest"
                cart = cart_view(user)
                return self.send_json(503 if cart["error"] else 200, dict(cart, user=user))
            if url.path not in ("/", "/index.html"):
                return self.send(404, "text/plain", b"not found\n")
            product = q.get("product", [CATALOG[0]["id"] if CATALOG else "B0001"])[0]
            user = q.get("user", ["alice"])[0]
            parts, cart = compose(product, user, self.headers.get("traceparent"))
            if q.get("format", [""])[0] == "json":
                doc = {"frontend": INSTANCE, "product": product, "user": user,
                       "ms": round((time.perf_counter() - started) * 1000, 1),
                       "parts": {k: v.summary() for k, v in parts.items()}, "cart": cart}
                return self.send_json(200, doc)
            page = render(product, user, parts, cart, started, self.headers.get("X-Request-Id"))
            return self.send(200, "text/html; charset=utf-8", page.encode())

    def do_POST(self):
        with self.server.tracker:
            url = urlsplit(self.path)
            if url.path not in ("/buy", "/cart"):
                return self.send(404, "text/plain", b"not found\n")
            if "Content-Length" not in self.headers and self.headers.get("Transfer-Encoding"):
                self.close_connection = True  # the unread body would be taken for the next request
                return self.send(411, "text/plain", b"send the form with a Content-Length\n")
            length = int(self.headers.get("Content-Length") or 0)
            if length > 64 << 10:
                return self.send(413, "text/plain", b"form too large\n")
            raw = self.rfile.read(length).decode("utf-8", "replace")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            ctype = self.headers.get("Content-Type", "")
            try:
                form = json.loads(raw) if ctype.startswith("application/json") else \
                    {k: v[0] for k, v in parse_qs(raw).items()}
                fields = {**query, **{k: str(v) for k, v in form.items()}}
            except (ValueError, AttributeError):
                return self.send(400, "text/plain", b"the body is neither a form nor a JSON object\n")
            as_json = query.get("format") == "json" or "application/json" in self.headers.get("Accept", "")

            def refuse(code, problem):
                if as_json:
                    return self.send_json(code, {"error": problem})
                return self.send(code, "text/plain", (problem + "\n").encode())

            if url.path == "/cart":
                return self.add_to_cart(fields, as_json, refuse)
            try:
                order, problem = order_from(fields)
            except (strata_client.StrataError, OSError, ValueError) as e:  # reading the cart
                return refuse(503, f"the cart is unavailable right now ({type(e).__name__}: {e})")
            if order is None:
                return refuse(400, problem)
            code, doc = place_order(order)
            if "items" in order and code in (200, 202):
                # Ordered (or durably queued): take what was ordered out of the cart.
                ordered = {}
                for line in order["items"]:
                    ordered[line["product"]] = ordered.get(line["product"], 0) + line["qty"]
                try:
                    doc["cart_left"] = take_out_of_cart(order["user"], ordered)
                except (strata_client.StrataError, OSError, ValueError, CartError) as e:
                    doc["cart_error"] = f"{type(e).__name__}: {e}"
            if as_json:
                return self.send_json(code, doc)
            return self.send(code, "text/html; charset=utf-8", render_order(code, doc).encode())

    def add_to_cart(self, fields, as_json, refuse):
        product, qty, problem = product_and_qty(fields)
        if problem:
            return refuse(400, problem)
        if not STRATA_URL:
            return refuse(503, "STRATA_URL is not set")
        user = fields.get("user") or "guest"
        try:
            lines = add_to_cart(user, product, qty)
        except CartError as e:
            return refuse(400, str(e))
        except (strata_client.StrataError, OSError, ValueError) as e:
            return refuse(503, f"the cart is unavailable right now ({type(e).__name__}: {e})")
        if as_json:
            return self.send_json(200, {"user": user, "items": lines})
        # Back to the product page, which shows the cart (POST, redirect, GET).
        self.send_response(303)
        self.send_header("Location", link(product, user))
        self.send_header("Content-Length", "0")
        self.send_header("X-Served-By", INSTANCE)
        self.end_headers()


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
    sys.stderr.write(f"{INSTANCE}: frontend listening on 127.0.0.1:{server.server_address[1]}"
                     f" (STRATA_URL={STRATA_URL or 'unset'})\n")
    server.serve_forever()
    server.server_close()
    server.tracker.drain(10)


if __name__ == "__main__":
    main()
