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

    v = c.kv_put("carts", "alice", {"items": []})            # -> version
    value, version = c.kv_get("carts", "alice")              # None when absent
    c.kv_put("carts", "alice", b"...", if_version=version)   # ConflictError(.current) if it moved
    meta = c.blob_put("images", "mug.png", open("mug.png", "rb"), content_type="image/png")
    c.cached("history", "alice")                             # read-through cache -> bytes or None

The HTTP contract is docs/queues.md (queues), docs/state.md (store and cache) and the
README's instance contract (calls). A client keeps one kept-alive connection to the
node; calls from several threads take turns on it, so give each thread its own client
to run them in parallel. Errors the node answers raise StrataError (status, message),
a failed compare-and-set its subclass ConflictError; network failures raise OSError.
"""
import base64
import collections
import http.client
import io
import json
import os
import stat
import threading
import urllib.parse

__all__ = ["Client", "StrataError", "ConflictError", "Message", "Reply", "Response",
           "Published", "BatchPublished", "Entry", "BlobStream", "parse_push"]

# Bytes a streamed body is read and sent in.
_BLOCK = 256 << 10


class StrataError(Exception):
    """A 4xx/5xx answer: `status` and the server's `error` message."""

    def __init__(self, status, message, body=b""):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class ConflictError(StrataError):
    """A write whose condition failed (412): `current` is the key's current version,
    None when there is no such key. Nothing was written."""

    def __init__(self, status, message, body=b"", current=None):
        super().__init__(status, message, body)
        self.current = current


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


class Entry(collections.namedtuple("Entry", "value version")):
    """A stored value and its version, as kv_get answers it: unpacks as (value, version)."""

    __slots__ = ()

    @property
    def text(self):
        """The value decoded as UTF-8."""
        return self.value.decode("utf-8")

    def json(self):
        """The value parsed as JSON."""
        return json.loads(self.value)


class BlobStream(io.RawIOBase):
    """A blob being read, as blob_open answers it: a binary file object (read, readinto,
    chunks) over its own connection, closed with it. `meta` is {"size", "etag",
    "content_type", "version"}; `headers` the answer's headers (lower-case names)."""

    def __init__(self, conn, resp, meta, headers):
        super().__init__()
        self._conn = conn
        self._resp = resp
        self.meta = meta
        self.headers = headers

    def readable(self):
        return True

    def readinto(self, buf):
        return self._resp.readinto(buf)

    def read(self, size=-1):
        """Up to `size` bytes (all that is left when -1); b"" at the end of the body. A body
        cut short raises http.client.IncompleteRead."""
        return self._resp.read(None if size is None or size < 0 else size)

    def readall(self):
        return self._resp.read()

    def chunks(self, size=_BLOCK):
        """The rest of the body, in pieces of up to `size` bytes."""
        while True:
            block = self._resp.read(size)
            if not block:
                return
            yield block

    def close(self):
        if not self.closed:
            try:
                self._resp.close()
            finally:
                self._conn.close()
        super().close()

    def __repr__(self):
        return f"BlobStream({self.meta!r})"


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


def _value_bytes(value):
    """A stored value as bytes: bytes as they are, str as UTF-8, a dict or list as JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":")).encode("utf-8")
    raise TypeError(f"a value is bytes, str, dict or list, not {type(value).__name__}")


def _cond_headers(if_version=None, if_absent=False):
    if if_version is not None and if_absent:
        raise ValueError("give if_version or if_absent, not both")
    if if_version is not None:
        return {"If-Match": f'"{int(if_version)}"'}
    if if_absent:
        return {"If-None-Match": "*"}
    return {}


def _page_query(prefix, after, limit):
    params = {"limit": int(limit)}
    if prefix:
        params["prefix"] = prefix
    if after is not None:
        params["after"] = after
    return urllib.parse.urlencode(params)


class _Limited:
    """A file object read up to `length` bytes, so a file that grows while it is sent
    never sends more than the Content-Length announced."""

    def __init__(self, f, length):
        self._f = f
        self._left = length

    def read(self, size=-1):
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        block = self._f.read(size)
        self._left -= len(block)
        return block


def _stream_body(data):
    """A blob body for http.client → (body, headers, rewind). A file object is read in
    blocks, with a Content-Length when its size is known (os.fstat of a regular file,
    else seeking to its end), else sent chunked (http.client's Transfer-Encoding when a
    body has no length), as is an iterable of bytes. `rewind` puts the body back to its
    start for a second try, None when it cannot."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data, {}, lambda: None  # http.client gives the Content-Length
    if hasattr(data, "read"):
        if isinstance(data, io.TextIOBase):
            raise TypeError("a blob is read from a binary file object: open it with 'rb'")
        pos = None
        try:
            if data.seekable():
                pos = data.tell()
        except (AttributeError, OSError, ValueError):
            pos = None
        length = None
        try:
            st = os.fstat(data.fileno())
            if stat.S_ISREG(st.st_mode) and pos is not None:
                length = max(st.st_size - pos, 0)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            pass
        if length is None and pos is not None:
            try:
                length = max(data.seek(0, io.SEEK_END) - pos, 0)
                data.seek(pos)
            except (OSError, ValueError):
                length = None
        rewind = (lambda: data.seek(pos)) if pos is not None else None
        if length is None:
            return data, {}, rewind  # http.client sends it chunked
        return _Limited(data, length), {"Content-Length": str(length)}, rewind
    try:
        chunks = iter(data)
    except TypeError:
        raise TypeError("a blob body is bytes, str, a binary file object or an iterable of "
                        f"bytes, not {type(data).__name__}") from None
    return (bytes(c) for c in chunks), {}, None  # chunked too


def _blob_meta(headers):
    """A blob's metadata from the headers of a GET."""
    def number(name):
        try:
            return int(headers[name])
        except (KeyError, ValueError):
            return None
    return {"size": number("content-length"), "etag": headers.get("etag", "").strip('"'),
            "content_type": headers.get("content-type"), "version": number("x-strata-version")}


def _offsets(items):
    return [m.offset if isinstance(m, Message) else m for m in items]


# A kept-alive connection the node closed while idle fails like this on its next use.
_DROPPED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
            http.client.RemoteDisconnected, http.client.BadStatusLine)


class Client:
    """The platform API of one node: queues, replies, calls to services, the store
    (key-value and blobs) and the cache.

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
        self._conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = parts.hostname, parts.port
        self._conn = self._connection()
        self._lock = threading.Lock()

    def _connection(self):
        return self._conn_class(self._host, self._port, timeout=self.timeout, blocksize=_BLOCK)

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

    def _send(self, method, path, body=None, headers=None, timeout=None, rewind=lambda: None):
        """One request on the kept-alive connection → (status, headers, body). A request
        that fails on a reused connection the node had closed is sent once more on a new
        one (a publish with a dedupe_id is safe to send twice); a streamed body is sent
        again only when `rewind` (not None) can put it back to its start."""
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
                    if attempt == 2:
                        rewind()
                    conn.request(method, self._prefix + path, body=body, headers=hdrs)
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
                except _DROPPED as e:
                    conn.close()
                    if attempt == 2 or not reused or rewind is None:
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

    # ------------------------------------------------------------------ store: key-value

    def _kv_path(self, ns, key=None):
        return f"/v1/kv/{_q(ns)}" + ("" if key is None else f"/{_q(key)}")

    def kv_put(self, ns, key, value, if_version=None, if_absent=False):
        """Stores `value` (bytes, str as UTF-8, a dict/list as JSON) under `key` of
        namespace `ns` → its new version; answered once durable. `if_version=N` writes
        only over version N, `if_absent=True` only when the key does not exist; else
        ConflictError, whose `.current` is the current version (None: no such key)."""
        headers = {"Content-Type": "application/octet-stream"}
        headers.update(_cond_headers(if_version, if_absent))
        status, _, data = self._send("PUT", self._kv_path(ns, key), _value_bytes(value), headers)
        if status not in (200, 201):
            raise _error(status, data)
        return json.loads(data)["version"]

    def kv_get(self, ns, key):
        """The value of `key` → Entry(value bytes, version), which unpacks as a tuple;
        None when there is no such key."""
        status, headers, data = self._send("GET", self._kv_path(ns, key))
        if status == 404:
            return None
        if status != 200:
            raise _error(status, data)
        version = headers.get("x-strata-version") or headers.get("etag", "").strip('"')
        return Entry(data, int(version))

    def kv_delete(self, ns, key, if_version=None):
        """Deletes `key` → True, False when there was no such key. With `if_version=N`
        only if the key is at version N, else ConflictError."""
        status, _, data = self._send("DELETE", self._kv_path(ns, key),
                                     headers=_cond_headers(if_version))
        if status == 404:
            return False
        if status != 200:
            raise _error(status, data)
        return bool(json.loads(data).get("deleted", True))

    def kv_list(self, ns, prefix="", after=None, limit=100):
        """One page of keys of `ns` starting with `prefix`, in byte order, after key
        `after` → {"items": [{"key", "version", "size", "updated_ms"}], "next"}; pass
        `next` as `after` for the next page (None: it was the last)."""
        return self._json("GET", f"{self._kv_path(ns)}?{_page_query(prefix, after, limit)}", ok=(200,))

    def kv_iter(self, ns, prefix="", page_size=100):
        """Every key of `ns` starting with `prefix` (the items of kv_list), page after
        page. Each page is one snapshot; successive pages are not."""
        after = None
        while True:
            page = self.kv_list(ns, prefix, after, page_size)
            yield from page.get("items", [])
            after = page.get("next")
            if after is None:
                return

    # ------------------------------------------------------------------ store: blobs

    def _blob_path(self, ns, name=None):
        return f"/v1/blobs/{_q(ns)}" + ("" if name is None else f"/{_q(name)}")

    def blob_put(self, ns, name, data, content_type="application/octet-stream",
                 if_version=None, if_absent=False):
        """Stores blob `name` of `ns` from bytes, str, a binary file object (read from its
        current position in blocks, never whole: Content-Length from os.fstat when it is
        a regular file, chunked when its size is unknown) or an iterable of bytes (sent
        chunked) → {"size", "etag" (hex SHA-256), "content_type", "version",
        "updated_ms"}, answered once durable. Conditions as for kv_put."""
        body, headers, rewind = _stream_body(data)
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(_cond_headers(if_version, if_absent))
        status, _, data = self._send("PUT", self._blob_path(ns, name), body, headers, rewind=rewind)
        if status not in (200, 201):
            raise _error(status, data)
        return json.loads(data)

    def blob_get(self, ns, name):
        """The whole blob → (meta, bytes), meta being {"size", "etag", "content_type",
        "version"}; None when there is no such blob. For a large blob, blob_open."""
        status, headers, data = self._send("GET", self._blob_path(ns, name), headers={"Accept": "*/*"})
        if status == 404:
            return None
        if status != 200:
            raise _error(status, data)
        return _blob_meta(headers), data

    def blob_open(self, ns, name):
        """The blob as a stream → BlobStream (a binary file object with `.meta`; close it,
        or use `with`), read from the node as you read it, on a connection of its own;
        None when there is no such blob."""
        conn = self._connection()
        try:
            conn.request("GET", self._prefix + self._blob_path(ns, name), headers={"Accept": "*/*"})
            resp = conn.getresponse()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status != 200:
                data = resp.read()
                conn.close()
                if resp.status == 404:
                    return None
                raise _error(resp.status, data)
            return BlobStream(conn, resp, _blob_meta(headers), headers)
        except BaseException:
            conn.close()
            raise

    def blob_delete(self, ns, name, if_version=None):
        """Deletes blob `name` → True, False when there was no such blob. With
        `if_version=N` only if the blob is at version N, else ConflictError."""
        status, _, data = self._send("DELETE", self._blob_path(ns, name),
                                     headers=_cond_headers(if_version))
        if status == 404:
            return False
        if status != 200:
            raise _error(status, data)
        return bool(json.loads(data).get("deleted", True))

    def blob_list(self, ns, prefix="", after=None, limit=100):
        """One page of blobs → {"items": [{"name", "size", "etag", "content_type",
        "version", "updated_ms"}], "next"}; as kv_list."""
        return self._json("GET", f"{self._blob_path(ns)}?{_page_query(prefix, after, limit)}", ok=(200,))

    def blob_iter(self, ns, prefix="", page_size=100):
        """Every blob of `ns` starting with `prefix` (the items of blob_list)."""
        after = None
        while True:
            page = self.blob_list(ns, prefix, after, page_size)
            yield from page.get("items", [])
            after = page.get("next")
            if after is None:
                return

    # ------------------------------------------------------------------ cache

    def cache_get(self, key):
        """The raw cache's value of `key` → bytes, None when absent (never set, expired,
        evicted or lost: the cache is soft state)."""
        status, _, data = self._send("GET", f"/v1/cache/keys/{_q(key)}")
        if status == 404:
            return None
        if status != 200:
            raise _error(status, data)
        return data

    def cache_set(self, key, value, ttl_ms=None):
        """Sets `key` in the raw cache (bytes, str, dict/list as for kv_put), gone after
        `ttl_ms` when given."""
        path = f"/v1/cache/keys/{_q(key)}"
        if ttl_ms is not None:
            path += f"?ttl_ms={int(ttl_ms)}"
        status, _, data = self._send("PUT", path, _value_bytes(value),
                                     {"Content-Type": "application/octet-stream"})
        if status not in (200, 201, 204):
            raise _error(status, data)

    def cache_delete(self, key):
        """Drops `key` from the raw cache → whether it was there."""
        return bool(self._json("DELETE", f"/v1/cache/keys/{_q(key)}", ok=(200,)).get("deleted"))

    def cached(self, name, key):
        """`key` through the read-through cache `name` (declared under `caches` in the
        manifest, in front of a store namespace) → bytes, None when the store has no such
        key. A miss loads it from the store; a write through the node API drops the
        cached copy. StrataError 404 when no cache has that name."""
        status, _, data = self._send("GET", f"/v1/caches/{_q(name)}/{_q(key)}")
        if status == 200:
            return data
        err = _error(status, data)
        if status == 404 and not err.message.startswith("no cache named"):
            return None
        raise err

    def cache_stats(self):
        """The cache's stats: "total" and per shard hits, misses, evictions, bytes, keys;
        per read-through cache ("read_through") loads, coalesced, stale_served, ..."""
        return self._json("GET", "/v1/cache", ok=(200,))

    def cache_drop_shard(self, n):
        """Empties cache shard `n` (drills, tests) → {"shard", "dropped_keys"}."""
        return self._json("POST", f"/v1/cache/shards/{_q(n)}/drop", ok=(200,))


def _error(status, data):
    """StrataError from an error answer: the JSON "error" if there is one, else the text;
    a 412 (a write's condition failed) is a ConflictError with the current version."""
    message, doc = None, None
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            message = doc.get("error")
    except ValueError:
        pass
    if not message:
        message = data[:500].decode("utf-8", "replace").strip() or http.client.responses.get(status, "error")
    if status == 412:
        return ConflictError(status, message, data, doc.get("current") if isinstance(doc, dict) else None)
    return StrataError(status, message, data)
