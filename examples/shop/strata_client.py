"""A small client for a strata node's platform API. Python 3.8+, standard library only.

    from strata_client import Client, StrataError

    c = Client()                                  # base URL from $STRATA_URL
    c.create_queue("orders", lease_ms=10000)
    c.publish("orders", {"item": "B0001"}, dedupe_id="order-17")
    for m in c.fetch("orders", "billing", max=100, wait_ms=1000):
        print(m.offset, m.deliveries, m.text)
        c.ack("orders", "billing", [m])
    reply = c.request("orders", "ping", timeout_ms=2000)   # publish and wait for the reply
    page = c.call("recommendations", "/recommendations?n=4").json()

The HTTP contract is docs/queues.md (queues) and the README's instance contract (calls).
A client keeps one kept-alive connection to the node; calls from several threads take
turns on it, so give each thread its own client to run them in parallel. Errors the
node answers raise StrataError (status, message); network failures raise OSError.
"""
import base64
import collections
import http.client
import json
import os
import threading
import urllib.parse

__all__ = ["Client", "StrataError", "Message", "Reply", "Response", "Published",
           "BatchPublished", "parse_push"]


class StrataError(Exception):
    """A 4xx/5xx answer: `status` and the server's `error` message."""

    def __init__(self, status, message, body=b""):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class _Payload:
    """Bytes with text and JSON views."""

    __slots__ = ()

    @property
    def text(self):
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)


class Message(_Payload):
    """One message of a queue, as fetched (or pushed) to a consumer group."""

    __slots__ = ("offset", "deliveries", "timestamp_ms", "body", "reply_to",
                 "correlation_id", "queue", "group")

    def __init__(self, offset, body, deliveries=1, timestamp_ms=None, reply_to=None,
                 correlation_id=None, queue=None, group=None):
        self.offset = offset
        self.body = body
        self.deliveries = deliveries
        self.timestamp_ms = timestamp_ms
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self.queue = queue
        self.group = group

    @classmethod
    def from_json(cls, doc, queue=None, group=None):
        """A message from its JSON form in a fetch answer or a pushed batch."""
        return cls(offset=doc.get("offset"), body=_decode_body(doc),
                   deliveries=doc.get("deliveries", 1), timestamp_ms=doc.get("timestamp_ms"),
                   reply_to=doc.get("reply_to"), correlation_id=doc.get("correlation_id"),
                   queue=queue, group=group)

    def __repr__(self):
        return (f"Message(offset={self.offset!r}, deliveries={self.deliveries!r}, "
                f"body={self.body[:60]!r}{'...' if len(self.body) > 60 else ''})")


class Reply(_Payload):
    """The reply to a request: body, correlation_id, and `offset` of the request message."""

    __slots__ = ("body", "correlation_id", "offset")

    def __init__(self, body, correlation_id=None, offset=None):
        self.body = body
        self.correlation_id = correlation_id
        self.offset = offset

    def __repr__(self):
        return f"Reply(offset={self.offset!r}, correlation_id={self.correlation_id!r}, body={self.body[:60]!r})"


class Response(_Payload):
    """The answer to a call: status, headers (lower-case names), body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"Response(status={self.status!r}, body={self.body[:60]!r})"


Published = collections.namedtuple("Published", "offset duplicate")
Published.__doc__ = "The answer to one publish: its offset, and whether it was a duplicate."

BatchPublished = collections.namedtuple("BatchPublished", "offsets duplicates")
BatchPublished.__doc__ = "The answer to a batch publish: the offsets in order, and how many were duplicates."


def parse_push(body):
    """The messages of a batch strata pushed to a consumer (the POST body), in order."""
    doc = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
    queue, group = doc.get("queue"), doc.get("group")
    return [Message.from_json(m, queue, group) for m in doc.get("messages", [])]


def _decode_body(doc):
    if "body_base64" in doc:
        return base64.b64decode(doc["body_base64"])
    body = doc.get("body")
    return body.encode("utf-8") if body is not None else b""


def _body_fields(body):
    """The JSON fields carrying a body: str as text, bytes as text when UTF-8 else base64,
    a dict or list as JSON text."""
    if isinstance(body, str):
        return {"body": body}
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        try:
            return {"body": raw.decode("utf-8")}
        except UnicodeDecodeError:
            return {"body_base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(body, (dict, list)):
        return {"body": json.dumps(body, separators=(",", ":"))}
    raise TypeError(f"a message body is str, bytes, dict or list, not {type(body).__name__}")


def _message_fields(body, dedupe_id=None, reply_to=None, correlation_id=None):
    doc = _body_fields(body)
    for key, value in (("dedupe_id", dedupe_id), ("reply_to", reply_to),
                       ("correlation_id", correlation_id)):
        if value is not None:
            doc[key] = value
    return doc


def _q(part):
    return urllib.parse.quote(str(part), safe="")


def _offsets(items):
    return [m.offset if isinstance(m, Message) else m for m in items]


# A kept-alive connection the node closed while idle fails like this on its next use.
_DROPPED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
            http.client.RemoteDisconnected, http.client.BadStatusLine)


class Client:
    """The platform API of one node: queues, replies, and calls to services.

    `url` defaults to $STRATA_URL; `timeout` (seconds) bounds each call, on top of any
    wait the call asks the node for (`wait_ms`, `timeout_ms`).
    """

    def __init__(self, url=None, timeout=30.0):
        url = url or os.environ.get("STRATA_URL")
        if not url:
            raise ValueError("no node URL: pass url= or set STRATA_URL")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._prefix = parts.path.rstrip("/")
        conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._conn = conn_class(parts.hostname, parts.port, timeout=timeout)
        self._lock = threading.Lock()

    def close(self):
        """Closes the connection (a later call opens a new one)."""
        with self._lock:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Client({self.url!r})"

    # ------------------------------------------------------------------ transport

    def _send(self, method, path, body=None, headers=None, timeout=None):
        """One request on the kept-alive connection → (status, headers, body). A request
        that fails on a reused connection the node had closed is sent once more on a new
        one (a publish with a dedupe_id is safe to send twice)."""
        hdrs = {"Accept": "application/json"}
        hdrs.update(headers or {})
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn
                reused = conn.sock is not None
                conn.timeout = timeout
                if reused:
                    conn.sock.settimeout(timeout)
                try:
                    conn.request(method, self._prefix + path, body=body, headers=hdrs)
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
                except _DROPPED as e:
                    conn.close()
                    if attempt == 2 or not reused:
                        if isinstance(e, OSError):
                            raise
                        raise ConnectionError(f"{method} {path}: connection dropped ({e!r})") from e
                except BaseException:
                    conn.close()  # the connection's state is unknown: never reuse it
                    raise
        raise AssertionError("unreachable")

    def _json(self, method, path, doc=None, timeout=None, ok=(200, 201, 202)):
        """A request with a JSON body (or none) whose answer is JSON; a status outside
        `ok` raises StrataError."""
        body, headers = None, None
        if doc is not None:
            body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
            headers = {"Content-Type": "application/json"}
        status, _, data = self._send(method, path, body, headers, timeout)
        if status not in ok:
            raise _error(status, data)
        if not data.strip():
            return {}
        return json.loads(data)

    # ------------------------------------------------------------------ queues

    def create_queue(self, name, **config):
        """Creates queue `name` with the manifest's queue fields (fsync, lease_ms,
        max_message_bytes, ...); True if it was created, False if it existed."""
        body, headers = b"", None
        if config:
            body = json.dumps(config).encode("utf-8")
            headers = {"Content-Type": "application/json"}
        status, _, data = self._send("PUT", f"/v1/queues/{_q(name)}", body, headers)
        if status not in (200, 201):
            raise _error(status, data)
        return status == 201

    def queues(self):
        """Stats of every queue."""
        return self._json("GET", "/v1/queues").get("queues", [])

    def stats(self, queue):
        """Stats of one queue: offsets, messages, bytes, and per group unread, leased, backlog."""
        return self._json("GET", f"/v1/queues/{_q(queue)}")

    def publish(self, queue, body, dedupe_id=None, reply_to=None, correlation_id=None):
        """Appends one message (str, bytes, or a dict/list sent as JSON) → Published(offset,
        duplicate). Answered once the message is durable."""
        doc = self._json("POST", f"/v1/queues/{_q(queue)}/messages",
                         _message_fields(body, dedupe_id, reply_to, correlation_id))
        return Published(doc["offset"], bool(doc.get("duplicate", False)))

    def publish_batch(self, queue, messages):
        """Appends messages in order, written and synced together → BatchPublished(offsets,
        duplicates). Each item is a body (str, bytes) or a dict of publish's fields, e.g.
        {"body": ..., "dedupe_id": ...}."""
        items = []
        for m in messages:
            if isinstance(m, dict):
                if "body" not in m:
                    raise ValueError("a batch item given as a dict needs a \"body\"")
                items.append(_message_fields(**m))
            else:
                items.append(_body_fields(m))
        doc = self._json("POST", f"/v1/queues/{_q(queue)}/messages", {"messages": items})
        return BatchPublished(doc.get("offsets", []), doc.get("duplicates", 0))

    def fetch(self, queue, group, max=1, wait_ms=0, max_bytes=None, lease_ms=None):
        """Leases the group's next messages → [Message]: `max` (1.. or "all"), waiting up to
        `wait_ms` for one when none is pending. Empty when none came."""
        params = {"max": max}
        if wait_ms:
            params["wait_ms"] = wait_ms
        if max_bytes is not None:
            params["max_bytes"] = max_bytes
        if lease_ms is not None:
            params["lease_ms"] = lease_ms
        path = f"/v1/queues/{_q(queue)}/groups/{_q(group)}/fetch?{urllib.parse.urlencode(params)}"
        wait_s = wait_ms / 1000 if isinstance(wait_ms, (int, float)) else 0
        doc = self._json("POST", path, timeout=self.timeout + wait_s)
        return [Message.from_json(m, queue, group) for m in doc.get("messages", [])]

    def ack(self, queue, group, offsets):
        """Deletes leased messages (offsets or Messages, any order) → {"acked", "ignored"}."""
        return self._json("POST", f"/v1/queues/{_q(queue)}/groups/{_q(group)}/ack",
                          {"offsets": _offsets(offsets)})

    def nack(self, queue, group, offsets):
        """Gives leased messages back for immediate redelivery → {"nacked", "ignored"}."""
        return self._json("POST", f"/v1/queues/{_q(queue)}/groups/{_q(group)}/nack",
                          {"offsets": _offsets(offsets)})

    def delete(self, queue, group, offset):
        """Deletes one leased message; StrataError 404 when it is not leased to the group."""
        if isinstance(offset, Message):
            offset = offset.offset
        return self._json("DELETE", f"/v1/queues/{_q(queue)}/groups/{_q(group)}/messages/{_q(offset)}")

    def reply(self, message_or_reply_to, body, correlation_id=None):
        """Replies to a message's sender (a Message, or its reply_to string); the
        correlation id defaults to the message's. → the node's answer ({"offset"} when
        reply_to is a queue)."""
        if isinstance(message_or_reply_to, Message):
            reply_to = message_or_reply_to.reply_to
            if correlation_id is None:
                correlation_id = message_or_reply_to.correlation_id
        else:
            reply_to = message_or_reply_to
        if not reply_to:
            raise ValueError("the message has no reply_to")
        doc = _body_fields(body)
        doc["reply_to"] = reply_to
        if correlation_id is not None:
            doc["correlation_id"] = correlation_id
        return self._json("POST", "/v1/reply", doc)

    def request(self, queue, body, timeout_ms=5000, correlation_id=None, dedupe_id=None):
        """Publishes one message and waits up to `timeout_ms` for a consumer's reply →
        Reply. StrataError 504 when none came in time (the message stays published)."""
        doc = self._json(
            "POST", f"/v1/queues/{_q(queue)}/messages?wait_reply_ms={int(timeout_ms)}",
            _message_fields(body, dedupe_id=dedupe_id, correlation_id=correlation_id),
            timeout=self.timeout + timeout_ms / 1000, ok=(200,))
        reply = doc.get("reply") or {}
        return Reply(_decode_body(reply), reply.get("correlation_id"), doc.get("offset"))

    # ------------------------------------------------------------------ calls

    def call(self, service, path="/", method="GET", body=None, headers=None, mode="any",
             timeout=None):
        """Calls a service through the platform (`/v1/any/SERVICE/PATH`; mode="all" asks
        every ready member) → Response. A body may be bytes, str, or a dict/list sent as
        JSON. A 4xx/5xx answer raises StrataError."""
        if mode not in ("any", "all"):
            raise ValueError(f"mode is 'any' or 'all', not {mode!r}")
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode("utf-8")
            hdrs.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, memoryview):
            body = bytes(body)
        hdrs.setdefault("Accept", "*/*")
        rest = path.lstrip("/")
        target = f"/v1/{mode}/{_q(service)}" + (rest if rest.startswith("?") or not rest else "/" + rest)
        status, resp_headers, data = self._send(method, target, body, hdrs, timeout)
        if status >= 400:
            raise _error(status, data)
        return Response(status, resp_headers, data)


def _error(status, data):
    """StrataError from an error answer: the JSON "error" if there is one, else the text."""
    message = None
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            message = doc.get("error")
    except ValueError:
        pass
    if not message:
        message = data[:500].decode("utf-8", "replace").strip() or http.client.responses.get(status, "error")
    return StrataError(status, message, data)
