"""The blocking client: `Client`, over http.client, one kept-alive connection."""
from __future__ import annotations

import http.client
import io
import threading
from types import TracebackType
from typing import (IO, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Type,
                    TypeVar, Union, cast)

from . import _api
from ._api import Answer, BatchItem, BlobMeta, Exchange
from ._trace import TraceViews, with_trace
from ._wire import BLOCK, JSON, Body, file_span, node_token, node_url, not_a_blob, with_token
from .models import BatchPublished, Entry, Message, Published, Reply, Response

T = TypeVar("T")

BlobData = Union[bytes, bytearray, memoryview, str, IO[bytes], Iterable[bytes]]
"""A blob body: bytes, str (UTF-8), a binary file object, or an iterable of bytes."""

# A kept-alive connection the node closed while idle fails like this on its next use.
_DROPPED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
            http.client.RemoteDisconnected, http.client.BadStatusLine)


class Client(TraceViews):
    """The platform API of one node: queues, replies, calls to services, the store
    (key-value and blobs) and the cache.

    `url` defaults to $STRATA_URL and `token` to $STRATA_TOKEN (sent with every call as
    `Authorization: Bearer`; strata gives each instance its service's, and the CLI's is
    in the app's .strata/control.token); `timeout` (seconds) bounds each call, on top of any
    wait the call asks the node for (`wait_ms`, `timeout_ms`). One kept-alive
    connection: calls from several threads take turns on it, so give each thread its
    own Client to run them in parallel.

    `traced(traceparent)` (or `traced_from(request.headers)`) is a view of the client
    whose calls join a trace (docs/traces.md).
    """

    def __init__(self, url: Optional[str] = None, timeout: float = 30.0, token: Optional[str] = None) -> None:
        node = node_url(url)
        self.url = node.url
        self._token = node_token(token)
        self.timeout = timeout
        self._prefix = node.prefix
        self._conn_class: Type[http.client.HTTPConnection] = (
            http.client.HTTPSConnection if node.https else http.client.HTTPConnection)
        self._host, self._port = node.host, node.port
        self._conn = self._connection()
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        return self._conn_class(self._host, self._port, timeout=self.timeout, blocksize=BLOCK)

    def close(self) -> None:
        """Closes the connection (a later call opens a new one)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._trace is not None:
            return f"Client({self.url!r}, traceparent={self._trace.traceparent!r})"
        return f"Client({self.url!r})"

    # ------------------------------------------------------------------ transport

    def _send(self, method: str, path: str, body: Any = None, headers: Optional[Mapping[str, str]] = None,
              timeout: Optional[float] = None,
              rewind: Optional[Callable[[], object]] = lambda: None) -> Tuple[int, Dict[str, str], bytes]:
        """One request on the kept-alive connection → (status, headers, body). A request
        that fails on a reused connection the node had closed is sent once more on a new
        one (a publish with a dedupe_id is safe to send twice); a streamed body is sent
        again only when `rewind` (not None) can put it back to its start."""
        hdrs = {"Accept": "application/json"}
        hdrs.update(headers or {})
        hdrs = with_token(self._token, with_trace(self._trace, hdrs))
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn
                reused = conn.sock is not None
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                try:
                    if attempt == 2 and rewind is not None:
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

    def _run(self, exchange: Exchange[T], body: Any = None,
             rewind: Optional[Callable[[], object]] = lambda: None) -> T:
        """Sends an exchange (with `body` instead of its own when given) and reads its answer."""
        timeout = (self.timeout if exchange.timeout is None else exchange.timeout) + exchange.wait_s
        status, headers, data = self._send(exchange.method, exchange.path,
                                           exchange.body if body is None else body,
                                           exchange.headers, timeout, rewind)
        return exchange.read(Answer(status, headers, data))

    def _json(self, method: str, path: str, doc: object = None, timeout: Optional[float] = None,
              ok: Tuple[int, ...] = (200, 201, 202)) -> JSON:
        """A request with a JSON body (or none) whose answer is JSON; a status outside
        `ok` raises StrataError. For node API routes this client has no method for."""
        exchange = _api.json_exchange(method, path, doc, ok)
        exchange.timeout = timeout
        return self._run(exchange)

    # ------------------------------------------------------------------ queues

    def create_queue(self, name: str, **config: Any) -> bool:
        """Creates queue `name` with the manifest's queue fields (fsync, lease_ms,
        max_message_bytes, ...); True if it was created, False if it existed with those
        settings. One that exists with other settings raises (409: settings are fixed
        when a queue is made)."""
        return self._run(_api.create_queue(name, config))

    def queues(self) -> List[JSON]:
        """Stats of every queue."""
        return self._run(_api.queues())

    def stats(self, queue: str) -> JSON:
        """Stats of one queue: offsets, messages, bytes, and per group unread, leased, backlog."""
        return self._run(_api.stats(queue))

    def publish(self, queue: str, body: Body, dedupe_id: Optional[str] = None, reply_to: Optional[str] = None,
                correlation_id: Optional[str] = None) -> Published:
        """Appends one message (str, bytes, or a dict/list sent as JSON) → Published(offset,
        duplicate). Answered once the message is durable."""
        return self._run(_api.publish(queue, body, dedupe_id, reply_to, correlation_id))

    def publish_batch(self, queue: str, messages: Iterable[BatchItem]) -> BatchPublished:
        """Appends messages in order, written and synced together → BatchPublished(offsets,
        duplicates). Each item is a body (str, bytes) or a dict of publish's fields, e.g.
        {"body": ..., "dedupe_id": ...}."""
        return self._run(_api.publish_batch(queue, messages))

    def fetch(self, queue: str, group: str, max: Union[int, str] = 1, wait_ms: int = 0,
              max_bytes: Optional[int] = None, lease_ms: Optional[int] = None) -> List[Message]:
        """Leases the group's next messages → [Message]: `max` (1.. or "all"), waiting up to
        `wait_ms` for one when none is pending. Empty when none came."""
        return self._run(_api.fetch(queue, group, max, wait_ms, max_bytes, lease_ms))

    def ack(self, queue: str, group: str, offsets: Iterable[Union[int, Message]]) -> JSON:
        """Deletes leased messages (offsets or Messages, any order) → {"acked", "ignored"}."""
        return self._run(_api.ack(queue, group, offsets))

    def nack(self, queue: str, group: str, offsets: Iterable[Union[int, Message]]) -> JSON:
        """Gives leased messages back for immediate redelivery → {"nacked", "ignored"}."""
        return self._run(_api.nack(queue, group, offsets))

    def delete(self, queue: str, group: str, offset: Union[int, Message]) -> JSON:
        """Deletes one leased message; StrataError 404 when it is not leased to the group."""
        return self._run(_api.delete(queue, group, offset))

    def reply(self, message_or_reply_to: Union[Message, str], body: Body,
              correlation_id: Optional[str] = None) -> JSON:
        """Replies to a message's sender (a Message, or its reply_to string); the
        correlation id defaults to the message's. → the node's answer ({"offset"} when
        reply_to is a queue)."""
        return self._run(_api.reply(message_or_reply_to, body, correlation_id))

    def request(self, queue: str, body: Body, timeout_ms: int = 5000, correlation_id: Optional[str] = None,
                dedupe_id: Optional[str] = None) -> Reply:
        """Publishes one message and waits up to `timeout_ms` for a consumer's reply →
        Reply. StrataError 504 (code "no_reply") when none came in time (the message
        stays published)."""
        return self._run(_api.request(queue, body, timeout_ms, correlation_id, dedupe_id))

    # ------------------------------------------------------------------ calls

    def call(self, service: str, path: str = "/", method: str = "GET", body: Optional[Body] = None,
             headers: Optional[Mapping[str, str]] = None, mode: str = "any",
             timeout: Optional[float] = None) -> Response:
        """Calls a service through the platform (`/v1/any/SERVICE/PATH`; mode="all" asks
        every ready member and answers a JSON list of their replies) → Response. A body
        may be bytes, str, or a dict/list sent as JSON. A 4xx/5xx answer raises
        StrataError."""
        return self._run(_api.call(service, path, method, body, headers, mode, timeout))

    # ------------------------------------------------------------------ store: key-value

    def kv_put(self, ns: str, key: str, value: Body, if_version: Optional[int] = None,
               if_absent: bool = False) -> int:
        """Stores `value` (bytes, str as UTF-8, a dict/list as JSON) under `key` of
        namespace `ns` → its new version; answered once durable. `if_version=N` writes
        only over version N, `if_absent=True` only when the key does not exist; else
        ConflictError, whose `.current` is the current version (None: no such key)."""
        return self._run(_api.kv_put(ns, key, value, if_version, if_absent))

    def kv_get(self, ns: str, key: str) -> Optional[Entry]:
        """The value of `key` → Entry(value bytes, version), which unpacks as a tuple;
        None when there is no such key."""
        return self._run(_api.kv_get(ns, key))

    def kv_delete(self, ns: str, key: str, if_version: Optional[int] = None) -> bool:
        """Deletes `key` → True, False when there was no such key. With `if_version=N`
        only if the key is at version N, else ConflictError."""
        return self._run(_api.kv_delete(ns, key, if_version))

    def kv_list(self, ns: str, prefix: str = "", after: Optional[str] = None, limit: int = 100) -> JSON:
        """One page of keys of `ns` starting with `prefix`, in byte order, after key
        `after` → {"items": [{"key", "version", "size", "updated_ms"}], "next"}; pass
        `next` as `after` for the next page (None: it was the last)."""
        return self._run(_api.kv_list(ns, prefix, after, limit))

    def kv_iter(self, ns: str, prefix: str = "", page_size: int = 100) -> Iterator[JSON]:
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

    def blob_put(self, ns: str, name: str, data: BlobData, content_type: Optional[str] = "application/octet-stream",
                 if_version: Optional[int] = None, if_absent: bool = False) -> JSON:
        """Stores blob `name` of `ns` from bytes, str, a binary file object (read from its
        current position in blocks, never whole: Content-Length from os.fstat when it is
        a regular file, chunked when its size is unknown) or an iterable of bytes (sent
        chunked) → {"size", "etag" (hex SHA-256), "content_type", "version",
        "updated_ms"}, answered once durable. Conditions as for kv_put."""
        exchange = _api.blob_put(ns, name, content_type, if_version, if_absent)
        body, headers, rewind = _stream_body(data)
        exchange.headers.update(headers)
        return self._run(exchange, body, rewind)

    def blob_get(self, ns: str, name: str) -> Optional[Tuple[BlobMeta, bytes]]:
        """The whole blob → (meta, bytes), meta being {"size", "etag", "content_type",
        "version"}; None when there is no such blob. For a large blob, blob_open."""
        return self._run(_api.blob_get(ns, name))

    def blob_open(self, ns: str, name: str) -> Optional[BlobStream]:
        """The blob as a stream → BlobStream (a binary file object with `.meta`; close it,
        or use `with`), read from the node as you read it, on a connection of its own;
        None when there is no such blob."""
        exchange = _api.blob_open(ns, name)
        conn = self._connection()
        try:
            conn.request("GET", self._prefix + exchange.path,
                         headers=with_token(self._token, with_trace(self._trace, exchange.headers)))
            resp = conn.getresponse()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status != 200:
                data = resp.read()
                conn.close()
                exchange.read(Answer(resp.status, headers, data))
                return None
            return BlobStream(conn, resp, _api.blob_meta(headers), headers)
        except BaseException:
            conn.close()
            raise

    def blob_delete(self, ns: str, name: str, if_version: Optional[int] = None) -> bool:
        """Deletes blob `name` → True, False when there was no such blob. With
        `if_version=N` only if the blob is at version N, else ConflictError."""
        return self._run(_api.blob_delete(ns, name, if_version))

    def blob_list(self, ns: str, prefix: str = "", after: Optional[str] = None, limit: int = 100) -> JSON:
        """One page of blobs → {"items": [{"name", "size", "etag", "content_type",
        "version", "updated_ms"}], "next"}; as kv_list."""
        return self._run(_api.blob_list(ns, prefix, after, limit))

    def blob_iter(self, ns: str, prefix: str = "", page_size: int = 100) -> Iterator[JSON]:
        """Every blob of `ns` starting with `prefix` (the items of blob_list)."""
        after = None
        while True:
            page = self.blob_list(ns, prefix, after, page_size)
            yield from page.get("items", [])
            after = page.get("next")
            if after is None:
                return

    # ------------------------------------------------------------------ cache

    def cache_get(self, key: str) -> Optional[bytes]:
        """The raw cache's value of `key` → bytes, None when absent (never set, expired,
        evicted or lost: the cache is soft state)."""
        return self._run(_api.cache_get(key))

    def cache_set(self, key: str, value: Body, ttl_ms: Optional[int] = None) -> None:
        """Sets `key` in the raw cache (bytes, str, dict/list as for kv_put), gone after
        `ttl_ms` when given."""
        self._run(_api.cache_set(key, value, ttl_ms))

    def cache_delete(self, key: str) -> bool:
        """Drops `key` from the raw cache → whether it was there."""
        return self._run(_api.cache_delete(key))

    def cached(self, name: str, key: str) -> Optional[bytes]:
        """`key` through the read-through cache `name` (declared under `caches` in the
        manifest, in front of a store namespace) → bytes, None when the store has no such
        key. A miss loads it from the store; a write through the node API drops the
        cached copy. StrataError 404 when no cache has that name."""
        return self._run(_api.cached(name, key))

    def cache_stats(self) -> JSON:
        """The cache's stats: "total" and per shard hits, misses, evictions, bytes, keys;
        per read-through cache ("read_through") loads, coalesced, stale_served, ..."""
        return self._run(_api.cache_stats())

    def cache_drop_shard(self, n: int) -> JSON:
        """Empties cache shard `n` (drills, tests) → {"shard", "dropped_keys"}."""
        return self._run(_api.cache_drop_shard(n))


class BlobStream(io.RawIOBase):
    """A blob being read, as blob_open answers it: a binary file object (read, readinto,
    chunks) over its own connection, closed with it. `meta` is {"size", "etag",
    "content_type", "version"}; `headers` the answer's headers (lower-case names)."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, meta: BlobMeta,
                 headers: Dict[str, str]) -> None:
        super().__init__()
        self._conn = conn
        self._resp = resp
        self.meta = meta
        self.headers = headers

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self._resp.readinto(buf)

    def read(self, size: Optional[int] = -1) -> bytes:
        """Up to `size` bytes (all that is left when -1); b"" at the end of the body. A body
        cut short raises http.client.IncompleteRead."""
        return self._resp.read(None if size is None or size < 0 else size)

    def readall(self) -> bytes:
        return self._resp.read()

    def chunks(self, size: int = BLOCK) -> Iterator[bytes]:
        """The rest of the body, in pieces of up to `size` bytes."""
        while True:
            block = self._resp.read(size)
            if not block:
                return
            yield block

    def close(self) -> None:
        if not self.closed:
            try:
                self._resp.close()
            finally:
                self._conn.close()
        super().close()

    def __enter__(self) -> BlobStream:
        return self

    def __repr__(self) -> str:
        return f"BlobStream({self.meta!r})"


class _Limited:
    """A file object read up to `length` bytes, so a file that grows while it is sent
    never sends more than the Content-Length announced."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self._f = f
        self._left = length

    def read(self, size: Optional[int] = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        block = self._f.read(size)
        self._left -= len(block)
        return block


def _stream_body(data: BlobData) -> Tuple[Any, Dict[str, str], Optional[Callable[[], object]]]:
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
        f = cast(IO[bytes], data)
        pos, length = file_span(f)
        rewind = (lambda: f.seek(pos)) if pos is not None else None
        if length is None:
            return f, {}, rewind  # http.client sends it chunked
        return _Limited(f, length), {"Content-Length": str(length)}, rewind
    try:
        chunks = iter(data)
    except TypeError:
        raise not_a_blob(data) from None
    return (bytes(c) for c in chunks), {}, None  # chunked too


__all__ = ["Client", "BlobStream", "BlobData"]
