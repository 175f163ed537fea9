"""frontend: composes the product page from three other services. Python stdlib only.

GET /?product=B0001&user=alice              -> the HTML product page
GET /?product=B0001&user=alice&format=json  -> which instance served each part, as JSON
GET /healthz                                -> ok

The page is put together from parallel calls made through the platform, by service
name, never by address:

    $STRATA_URL/v1/any/images/images?...             the product picture (CPU-bound resize)
    $STRATA_URL/v1/any/recommendations/recommendations?...
    $STRATA_URL/v1/any/history/history?user=...

A part whose call fails or times out is left out of the page with a note; the page
itself still renders (graceful degradation, as on the real thing).
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
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlencode, urlsplit

INSTANCE = os.environ.get("STRATA_INSTANCE", "frontend-local")
STRATA_URL = os.environ.get("STRATA_URL", "").rstrip("/")
TIMEOUT_S = float(os.environ.get("SHOP_CALL_TIMEOUT_S", "5"))
IMAGE_SIDE = int(os.environ.get("SHOP_IMAGE_SIDE", "300"))
USERS = ["alice", "bob", "carol", "guest"]

POOL = ThreadPoolExecutor(max_workers=32)


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


def call(service, path, params):
    """GET $STRATA_URL/v1/any/<service><path>?params and parse the JSON reply."""
    part = Part(service)
    t0 = time.perf_counter()
    try:
        if not STRATA_URL:
            raise RuntimeError("STRATA_URL is not set")
        url = f"{STRATA_URL}/v1/any/{quote(service)}{path}?{urlencode(params)}"
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
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


def compose(product, user):
    futures = {
        "images": POOL.submit(call, "images", "/images",
                              {"product": product, "w": IMAGE_SIDE, "h": IMAGE_SIDE, "format": "json"}),
        "recommendations": POOL.submit(call, "recommendations", "/recommendations",
                                       {"product": product, "user": user, "n": 4}),
        "history": POOL.submit(call, "history", "/history", {"user": user}),
    }
    return {name: f.result() for name, f in futures.items()}


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


def render(product, user, parts, started, request_id):
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
        hist_html = (f'<h2>Your browsing history, {esc(user)} {served(hist)}</h2>'
                     + (cards(hist.doc["items"], user,
                              lambda it: f'<br><small>viewed {esc(it["viewed"])}</small>')
                        if hist.doc["items"] else "<p>Nothing viewed yet.</p>"))
    else:
        hist_html = "<h2>Your browsing history</h2>" + unavailable(hist)
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
<p>Page composed by <span class="served">{esc(INSTANCE)}</span> in {total:.0f} ms</p>
</div>
</div>
{recs_html}
{hist_html}
</main>
<footer>frontend={esc(INSTANCE)} images={esc(img.instance if img.doc else "-")}
recommendations={esc(recs.instance if recs.doc else "-")}
history={esc(hist.instance if hist.doc else "-")}
request-id={esc(request_id or "-")}</footer>
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

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        with self.server.tracker:
            started = time.perf_counter()
            url = urlsplit(self.path)
            if url.path == "/healthz":
                return self.send(200, "text/plain", b"ok\n")
            if url.path not in ("/", "/index.html"):
                return self.send(404, "text/plain", b"not found\n")
            q = parse_qs(url.query)
            product = q.get("product", [CATALOG[0]["id"] if CATALOG else "B0001"])[0]
            user = q.get("user", ["alice"])[0]
            parts = compose(product, user)
            if q.get("format", [""])[0] == "json":
                doc = {"frontend": INSTANCE, "product": product, "user": user,
                       "ms": round((time.perf_counter() - started) * 1000, 1),
                       "parts": {k: v.summary() for k, v in parts.items()}}
                return self.send(200, "application/json", json.dumps(doc).encode())
            page = render(product, user, parts, started, self.headers.get("X-Request-Id"))
            return self.send(200, "text/html; charset=utf-8", page.encode())


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
