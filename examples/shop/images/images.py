"""images: resizes product pictures. CPU-bound on purpose, Python stdlib only.

GET /images?product=B0001&w=300&h=300            -> image/png bytes
GET /images?product=B0001&w=300&h=300&format=json -> {"instance", "data_url", ...}
GET /images?...&format=ppm                        -> image/x-portable-pixmap
GET /healthz                                      -> ok

The source picture of each product is drawn once (a stand-in for a photo loaded from
the blob store) and kept in memory; every request then does a bilinear resize in pure
Python and encodes a PNG, so the cost of a request grows with w*h and a busy pool is
what the App Service's autoscaler is meant to grow.
"""
import base64
import json
import math
import os
import signal
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = os.environ.get("STRATA_INSTANCE", "images-local")
SOURCE_SIZE = 384
MAX_SIDE = 1024


def load_catalog():
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (
        os.path.join(os.environ.get("TMPDIR", "/nonexistent"), "catalog.json"),
        os.path.join(here, "..", "catalog.json"),
    ):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return {p["id"]: p for p in json.load(f)["products"]}
    return {}


CATALOG = load_catalog()


# ---------------------------------------------------------------- drawing the source


def draw_product(shape, color, size=SOURCE_SIZE):
    """A size x size RGB picture of a shaded object on a light backdrop."""
    px = bytearray(size * size * 3)
    cr, cg, cb = color
    c = size / 2.0
    for y in range(size):
        v = y / size
        # backdrop: light vertical gradient with a soft floor shadow
        bg = 246 - int(18 * v)
        for x in range(size):
            u = x / size
            inside, shade = False, 1.0
            if shape == "ball":
                dx, dy = (x - c) / (0.34 * size), (y - c) / (0.34 * size)
                d2 = dx * dx + dy * dy
                if d2 <= 1.0:
                    inside = True
                    nz = math.sqrt(1.0 - d2)
                    shade = 0.35 + 0.65 * max(0.0, -0.4 * dx - 0.5 * dy + 0.77 * nz)
            elif shape == "box":
                if 0.2 <= u <= 0.8 and 0.18 <= v <= 0.85:
                    inside = True
                    shade = 0.75 + 0.25 * (1.0 - (u - 0.2) / 0.6) - 0.1 * v
                elif 0.8 < u <= 0.88 and 0.18 + (u - 0.8) * -1.0 + 0.08 <= v <= 0.85 - (u - 0.8):
                    inside = True
                    shade = 0.5
            elif shape == "cone":
                half = 0.08 + 0.3 * (1.0 - (v - 0.15) / 0.7)
                if 0.15 <= v <= 0.85 and abs(u - 0.5) <= half:
                    inside = True
                    t = (u - 0.5) / half
                    shade = 0.45 + 0.55 * math.cos(t * 1.2)
            else:  # mug: a shaded cylinder with a handle on the right
                if 0.22 <= u <= 0.66 and 0.2 <= v <= 0.82:
                    inside = True
                    t = (u - 0.44) / 0.22
                    shade = 0.4 + 0.6 * math.cos(t * 1.3 - 0.3)
                else:
                    dx, dy = (u - 0.66) / 0.14, (v - 0.5) / 0.17
                    d = math.sqrt(dx * dx + dy * dy)
                    if u > 0.66 and 0.62 <= d <= 1.0:
                        inside = True
                        shade = 0.55
            i = (y * size + x) * 3
            if inside:
                px[i] = min(255, int(cr * shade + 30 * shade * shade))
                px[i + 1] = min(255, int(cg * shade + 30 * shade * shade))
                px[i + 2] = min(255, int(cb * shade + 30 * shade * shade))
            else:
                floor = 0
                if v > 0.8:
                    dx, dy = (u - 0.5) / 0.35, (v - 0.86) / 0.04
                    if dx * dx + dy * dy < 1.0:
                        floor = 40
                px[i] = px[i + 1] = px[i + 2] = bg - floor
    return px


_sources = {}
_sources_lock = threading.Lock()


def source_for(product_id):
    with _sources_lock:
        src = _sources.get(product_id)
    if src is None:
        p = CATALOG.get(product_id, {"shape": "ball", "color": [150, 150, 150]})
        src = draw_product(p.get("shape", "ball"), tuple(p.get("color", (150, 150, 150))))
        with _sources_lock:
            _sources[product_id] = src
    return src


# ---------------------------------------------------------------- resizing and encoding


def resize_bilinear(src, sw, sh, dw, dh):
    """Bilinear resize of packed RGB, fixed point (8 fractional bits)."""
    out = bytearray(dw * dh * 3)
    xs = []
    for x in range(dw):
        fx = (x + 0.5) * sw / dw - 0.5
        x0 = min(max(int(math.floor(fx)), 0), sw - 1)
        x1 = min(x0 + 1, sw - 1)
        wx = int((fx - math.floor(fx)) * 256) if fx > 0 else 0
        xs.append((x0 * 3, x1 * 3, wx))
    o = 0
    row = sw * 3
    for y in range(dh):
        fy = (y + 0.5) * sh / dh - 0.5
        y0 = min(max(int(math.floor(fy)), 0), sh - 1)
        y1 = min(y0 + 1, sh - 1)
        wy = int((fy - math.floor(fy)) * 256) if fy > 0 else 0
        r0, r1 = y0 * row, y1 * row
        iwy = 256 - wy
        for a, b, wx in xs:
            iwx = 256 - wx
            for ch in (0, 1, 2):
                top = src[r0 + a + ch] * iwx + src[r0 + b + ch] * wx
                bot = src[r1 + a + ch] * iwx + src[r1 + b + ch] * wx
                out[o] = (top * iwy + bot * wy) >> 16
                o += 1
    return out


def encode_png(px, w, h):
    raw = bytearray()
    stride = w * 3
    for y in range(h):
        raw.append(0)  # filter: none
        raw += px[y * stride:(y + 1) * stride]

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + chunk(b"IEND", b""))


def encode_ppm(px, w, h):
    return b"P6\n%d %d\n255\n" % (w, h) + bytes(px)


# ---------------------------------------------------------------- HTTP


def int_arg(q, name, default):
    try:
        v = int(q.get(name, [default])[0])
    except ValueError:
        raise ValueError(f"{name} must be an integer")
    if not 1 <= v <= MAX_SIDE:
        raise ValueError(f"{name} must be between 1 and {MAX_SIDE}")
    return v


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop-images/1"

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
            if url.path.rstrip("/") not in ("/images", ""):
                return self.send(404, "text/plain", b"not found\n")
            q = parse_qs(url.query)
            try:
                w = int_arg(q, "w", 300)
                h = int_arg(q, "h", w)
            except ValueError as e:
                return self.send(400, "text/plain", (str(e) + "\n").encode())
            product = q.get("product", ["B0001"])[0]
            fmt = q.get("format", ["png"])[0]
            t0 = time.perf_counter()
            px = resize_bilinear(source_for(product), SOURCE_SIZE, SOURCE_SIZE, w, h)
            if fmt == "ppm":
                return self.send(200, "image/x-portable-pixmap", encode_ppm(px, w, h))
            png = encode_png(px, w, h)
            if fmt == "json":
                doc = {
                    "instance": INSTANCE,
                    "product": product,
                    "w": w,
                    "h": h,
                    "ms": round((time.perf_counter() - t0) * 1000, 1),
                    "data_url": "data:image/png;base64," + base64.b64encode(png).decode(),
                }
                return self.send(200, "application/json", json.dumps(doc).encode())
            return self.send(200, "image/png", png)


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
        # stop accepting, then let the requests in flight finish
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    sys.stderr.write(f"{INSTANCE}: images listening on 127.0.0.1:{server.server_address[1]}\n")
    server.serve_forever()
    server.server_close()
    server.tracker.drain(10)


if __name__ == "__main__":
    main()
