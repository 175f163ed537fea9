"""recommendations: "customers who bought this also bought". An ordinary Flask app.

GET /recommendations?product=B0001&user=alice&n=4
    -> {"instance", "product", "user", "items": [{"id", "name", "price", "score"}]}
GET /healthz -> ok

Nothing here knows about strata beyond reading $PORT (and, for display only,
$STRATA_INSTANCE); the catalog comes from a file the manifest places in $TMPDIR.
"""
import json
import os
import zlib

from flask import Flask, jsonify, request

app = Flask(__name__)


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


def also_bought(product, user, n):
    """A stand-in model: scores every other product by a hash of (product, other, user)."""
    scored = []
    for p in CATALOG:
        if p["id"] == product:
            continue
        h = zlib.crc32(f"{product}:{p['id']}".encode()) % 1000
        h += zlib.crc32(f"{user}:{p['id']}".encode()) % 200  # a little personalisation
        scored.append((h, p))
    scored.sort(key=lambda t: t[0], reverse=True)
    return [{"id": p["id"], "name": p["name"], "price": p["price"], "score": round(h / 1200, 3)}
            for h, p in scored[:n]]


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/recommendations")
@app.get("/")
def recommendations():
    product = request.args.get("product", "B0001")
    user = request.args.get("user", "guest")
    n = max(1, min(request.args.get("n", 4, type=int), 8))
    return jsonify(
        instance=os.environ.get("STRATA_INSTANCE", "recommendations-local"),
        product=product,
        user=user,
        items=also_bought(product, user, n),
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]))
