"""An ordinary Flask app: nothing strata-specific except reading $PORT.

strata runs it as a member of the `api` pool; the gateway relays /api/... here.
"""
import os
import socket
import urllib.request

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/api/hello")
def hello():
    return jsonify(
        message="hello from strata",
        app=os.environ.get("STRATA_APP"),
        service=os.environ.get("STRATA_SERVICE"),
        instance=os.environ.get("STRATA_INSTANCE"),
        pid=os.getpid(),
        host=socket.gethostname(),
    )


@app.get("/api/web")
def web():
    """Calls the bound `web` service through the platform, by name, never by address."""
    url = os.environ["STRATA_URL"].rstrip("/") + "/v1/any/web/index.html"
    # The platform answers only callers with this service's token.
    token = os.environ.get("STRATA_TOKEN", "")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return jsonify(
        instance=os.environ.get("STRATA_INSTANCE"),
        web_status=resp.status,
        web_bytes=len(body),
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]))
