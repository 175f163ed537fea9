"""A client for a strata node's platform API. Python 3.8+, standard library only.

    from strata_client import Client, StrataError

    c = Client()                                  # base URL from $STRATA_URL, token from $STRATA_TOKEN
    c.create_queue("orders", lease_ms=10000)
    c.publish("orders", {"item": "B0001"}, dedupe_id="order-17")
    for m in c.fetch("orders", "billing", max=100, wait_ms=1000):
        print(m.offset, m.deliveries, m.text)
        c.ack("orders", "billing", [m])
    reply = c.request("orders", "ping", timeout_ms=2000)   # publish and wait for the reply
    page = c.call("recommendations", "/recommendations?n=4").json()

    v = c.kv_put("carts", "alice", {"items": []})            # -> version
    value, version = c.kv_get("carts", "alice")              # None when absent
    c.kv_put("carts", "alice", b"...", if_version=version)   # ConflictError(.current) if it moved
    meta = c.blob_put("images", "mug.png", open("mug.png", "rb"), content_type="image/png")
    c.cached("history", "alice")                             # read-through cache -> bytes or None

The same calls, awaited, on `AsyncClient` (strata_client.aio), which speaks HTTP/1.1 on
asyncio streams itself:

    async with AsyncClient() as c:
        await c.publish("orders", "hello")

Calls join the trace of the request a member serves through a view of the client
(docs/traces.md):

    t = c.traced_from(request.headers)            # or c.traced(traceparent, tracestate)
    t.call("recommendations", "/recommendations")  # a span of that trace
    t.publish("orders", "hello")                   # its messages carry the trace on
    m.traceparent, reply.traceparent               # what a message or a reply carries on

Every call carries the token (`Authorization: Bearer`, or `X-Strata-Token` when a call
passes an Authorization of its own on to the called service): strata gives each instance
its service's in $STRATA_TOKEN, which reaches what the service's manifest entry declares
(docs/access.md); a call beyond it raises StrataError 403 (code "forbidden"), one
without a valid token 401 ("unauthorized").

Errors the node answers raise StrataError (`status`, `code`, `message`), a failed
compare-and-set its subclass ConflictError (`current`); network failures raise OSError.

Modules: `client` (the blocking Client, over http.client), `aio` (AsyncClient, over
`_http11`, a small HTTP/1.1 connection on asyncio streams), `models` (what calls
answer), `errors`, `_trace` (trace context: checking it, the traced views), `_api` (each call as a request and the reading of its answer, no
I/O: both clients send the same), `_wire` (body encodings, paths, headers).
"""
from .aio import AsyncBlobStream, AsyncClient
from .client import BlobStream, Client
from .errors import ConflictError, StrataError
from ._trace import Trace
from .models import BatchPublished, Entry, Message, Published, Reply, Response, parse_push

__version__ = "0.2.0"

__all__ = ["Client", "AsyncClient", "StrataError", "ConflictError", "Message", "Reply", "Response",
           "Published", "BatchPublished", "Entry", "BlobStream", "AsyncBlobStream", "parse_push", "Trace"]
