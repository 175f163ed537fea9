"""receipts: a function, not a service. Python stdlib and strata_client.

The manifest declares it under `functions` with a store trigger on the namespace
`history`: whenever a customer's purchase history is written (the worker appends each
fulfilled order), strata POSTs the change here as JSON,
  {"trigger": "store", "namespace": "history", "key": USER, "kind", "version", "deleted"},
starting this program first when no instance runs (it is stopped again after
`keep_warm_ms` without events). It writes the customer's receipt summary to the store,
namespace `receipts`, key USER: {"user", "orders", "last_order_id", "spent", "history_version"}.

A non-2xx answer makes strata try the event again (three attempts in all). Events may
come twice or out of order, so the summary is rebuilt from the history as it is now, and
a summary already built from a newer history version is not overwritten.

POST /        one store event -> {"user", "orders"} or {"skipped": why}
GET  /healthz ok
"""
import json
import os
import sys
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The package clients/python, which the manifest's setup step installs into .deps (on
# PYTHONPATH); run by hand: PYTHONPATH=../../../clients/python.
import strata_client

PLATFORM = strata_client.Client(os.environ["STRATA_URL"])


def summarise(user):
    entry = PLATFORM.kv_get("history", user)
    if entry is None:
        return {"skipped": "no history"}
    orders = entry.json().get("orders", [])
    receipt = {
        "user": user,
        "orders": len(orders),
        "last_order_id": orders[-1]["order_id"] if orders else None,
        "spent": str(sum((Decimal(o["total"]) for o in orders), Decimal("0.00"))),
        "history_version": entry.version,
    }
    while True:
        current = PLATFORM.kv_get("receipts", user)
        if current is not None and current.json().get("history_version", 0) >= entry.version:
            return {"skipped": "a receipt from a newer history is there"}
        try:
            if current is None:
                PLATFORM.kv_put("receipts", user, receipt, if_absent=True)
            else:
                PLATFORM.kv_put("receipts", user, receipt, if_version=current.version)
            return receipt
        except strata_client.ConflictError:
            continue  # another instance wrote in between: look again


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def reply(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "POST store events to /"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = json.loads(self.rfile.read(length))
            user = event["key"]
        except (ValueError, KeyError, TypeError) as e:
            self.reply(400, {"error": f"not a store event: {e}"})
            return
        if event.get("deleted"):
            self.reply(200, {"skipped": "history deleted"})
            return
        try:
            self.reply(200, summarise(user))
        except strata_client.StrataError as e:
            print(f"receipts: {user}: {e}", file=sys.stderr, flush=True)
            self.reply(503, {"error": str(e)})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()
