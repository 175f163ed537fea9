"""The asyncio client: `AsyncClient`, the same calls as `Client`, awaited.

    from strata_client.aio import AsyncClient

    async with AsyncClient() as c:                      # base URL from $STRATA_URL
        await c.publish("orders", {"item": "B0001"})
        for m in await c.fetch("orders", "billing", max=100, wait_ms=1000):
            await c.ack("orders", "billing", [m])

It speaks HTTP/1.1 itself on asyncio streams (strata_client._http11): no thread per
call, so a thousand long polls cost a thousand sockets, not a thousand threads, and a
cancelled call closes its connection at once. Up to `max_connections` calls run at
once, each on a kept-alive connection of its own; more wait for a free one.
"""
from __future__ import annotations

import asyncio
import io
import ssl
from types import TracebackType
from typing import (IO, Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Dict, Iterable, List,
                    Mapping, Optional, Tuple, Type, TypeVar, Union, cast)

from . import _api
from ._api import Answer, BatchItem, BlobMeta, Exchange
from ._http11 import BodyReader, Connection, Dropped, OutBody, RequestBody
from ._trace import TraceViews, with_trace
from ._wire import BLOCK, JSON, Body, file_span, node_token, node_url, not_a_blob, with_token
from .models import BatchPublished, Entry, Message, Published, Reply, Response

T = TypeVar("T")

AsyncBlobData = Union[bytes, bytearray, memoryview, str, IO[bytes], Iterable[bytes], AsyncIterable[bytes]]
"""A blob body: bytes, str (UTF-8), a binary file object (read in a worker thread, block
by block), an iterable or an async iterable of bytes."""

# A kept-alive connection the node closed while idle fails like this on its next use.
_DROPPED = (Dropped, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class AsyncClient(TraceViews):
    """The platform API of one node, for asyncio: queues, replies, calls to services,
    the store (key-value and blobs) and the cache; every method of `Client`, awaited.

    `url` defaults to $STRATA_URL and `token` to $STRATA_TOKEN (sent with every call as
    `Authorization: Bearer`); `timeout` (seconds) bounds each call, on top of any
    wait the call asks the node for (`wait_ms`, `timeout_ms`), and a call past it raises
    TimeoutError. Up to `max_connections` calls are in flight at once, each on its own
    kept-alive connection. A client belongs to the event loop that uses it; used from
    another loop, it starts afresh there.

    `traced(traceparent)` (or `traced_from(request.headers)`) is a view of the client
    whose calls join a trace (docs/traces.md); it shares the client's connections.
    """

    def __init__(self, url: Optional[str] = None, timeout: float = 30.0, max_connections: int = 10,
                 token: Optional[str] = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections is 1 or more")
        node = node_url(url)
        self.url = node.url
        self._token = node_token(token)
        self.timeout = timeout
        self.max_connections = max_connections
        self._prefix = node.prefix
        self._host = node.host
        self._port = node.port or (443 if node.https else 80)
        self._tls = ssl.create_default_context() if node.https else None
        self._host_header = node.host if node.port is None else f"{node.host}:{node.port}"
        if ":" in node.host:  # an IPv6 literal
            self._host_header = f"[{node.host}]" + ("" if node.port is None else f":{node.port}")
        self._conns = _Conns()  # shared with the client's traced views

    async def close(self) -> None:
        """Closes the idle connections (a later call opens a new one)."""
        idle, self._conns.idle = self._conns.idle, []
        for conn in idle:
            await conn.wait_closed()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    def __repr__(self) -> str:
        if self._trace is not None:
            return f"AsyncClient({self.url!r}, traceparent={self._trace.traceparent!r})"
        return f"AsyncClient({self.url!r})"

    # ------------------------------------------------------------------ transport

    def _pool(self) -> asyncio.Semaphore:
        """The semaphore of in-flight calls, of this event loop."""
        loop = asyncio.get_running_loop()
        pool = self._conns
        if pool.slots is None or pool.loop is not loop:
            for conn in pool.idle:  # of another loop: unusable here
                conn.close()
            pool.idle = []
            pool.slots = asyncio.Semaphore(self.max_connections)
            pool.loop = loop
        return pool.slots

    def _take_idle(self) -> Optional[Connection]:
        while self._conns.idle:
            conn = self._conns.idle.pop()
            if conn.reusable:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: Connection) -> None:
        if conn.reusable and len(self._conns.idle) < self.max_connections:
            self._conns.idle.append(conn)
        else:
            conn.close()

    async def _connect(self) -> Connection:
        return await Connection.open(self._host, self._port, self._tls, self._host_header)

    async def _send(self, method: str, path: str, headers: Mapping[str, str], body: Callable[[int], Awaitable[RequestBody]],
                    resendable: bool, timeout: float) -> Answer:
        """One request on a kept-alive connection → Answer. A request that fails on a
        reused connection the node had closed is sent once more on a new one (a publish
        with a dedupe_id is safe to send twice) when `resendable`; `body(attempt)` gives
        the body for each attempt (rewound for the second)."""
        target = self._prefix + path
        headers = with_token(self._token, with_trace(self._trace, headers))
        async with self._pool():
            for attempt in (1, 2):
                conn = self._take_idle()
                reused = conn is not None

                async def exchange() -> Answer:
                    nonlocal conn
                    if conn is None:
                        conn = await self._connect()
                    status, head = await conn.request(method, target, headers, await body(attempt))
                    assert conn.body is not None
                    return Answer(status, head, await conn.body.read_all())

                try:
                    answer = await _within(exchange(), timeout, method, path)
                except _DROPPED as e:
                    if conn is not None:
                        conn.close()
                    if attempt == 2 or not reused or not resendable:
                        raise ConnectionError(f"{method} {path}: connection dropped ({e!r})") from e
                    continue
                except BaseException:
                    if conn is not None:
                        conn.close()  # its state is unknown: never reuse it
                    raise
                assert conn is not None
                self._give_back(conn)
                return answer
        raise AssertionError("unreachable")

    async def _run(self, exchange: Exchange[T], upload: Optional[_Upload] = None) -> T:
        """Sends an exchange (with `upload` as its body when given) and reads its answer."""
        if upload is None:
            upload = _Upload.of_bytes(exchange.body)
        else:
            exchange.headers.update(upload.headers)
        timeout = (self.timeout if exchange.timeout is None else exchange.timeout) + exchange.wait_s
        answer = await self._send(exchange.method, exchange.path, exchange.headers, upload.body,
                                  upload.resendable, timeout)
        return exchange.read(answer)

    async def _json(self, method: str, path: str, doc: object = None, timeout: Optional[float] = None,
                    ok: Tuple[int, ...] = (200, 201, 202)) -> JSON:
        """A request with a JSON body (or none) whose answer is JSON; a status outside
        `ok` raises StrataError. For node API routes this client has no method for."""
        exchange = _api.json_exchange(method, path, doc, ok)
        exchange.timeout = timeout
        return await self._run(exchange)

    # ------------------------------------------------------------------ queues

    async def create_queue(self, name: str, **config: Any) -> bool:
        """Creates queue `name` (manifest queue fields); True if created, False if it existed
        with those settings; raises if it exists with others (409)."""
        return await self._run(_api.create_queue(name, config))

    async def queues(self) -> List[JSON]:
        """Stats of every queue."""
        return await self._run(_api.queues())

    async def stats(self, queue: str) -> JSON:
        """Stats of one queue: offsets, messages, bytes, and per group unread, leased, backlog."""
        return await self._run(_api.stats(queue))

    async def publish(self, queue: str, body: Body, dedupe_id: Optional[str] = None,
                      reply_to: Optional[str] = None, correlation_id: Optional[str] = None) -> Published:
        """Appends one message → Published(offset, duplicate), once durable. As Client.publish."""
        return await self._run(_api.publish(queue, body, dedupe_id, reply_to, correlation_id))

    async def publish_batch(self, queue: str, messages: Iterable[BatchItem]) -> BatchPublished:
        """Appends messages in order, synced together → BatchPublished(offsets, duplicates)."""
        return await self._run(_api.publish_batch(queue, messages))

    async def fetch(self, queue: str, group: str, max: Union[int, str] = 1, wait_ms: int = 0,
                    max_bytes: Optional[int] = None, lease_ms: Optional[int] = None) -> List[Message]:
        """Leases the group's next messages → [Message], waiting up to `wait_ms` for one.
        Cancelled while it waits, it closes its connection, which ends the long poll."""
        return await self._run(_api.fetch(queue, group, max, wait_ms, max_bytes, lease_ms))

    async def ack(self, queue: str, group: str, offsets: Iterable[Union[int, Message]]) -> JSON:
        """Deletes leased messages (offsets or Messages, any order) → {"acked", "ignored"}."""
        return await self._run(_api.ack(queue, group, offsets))

    async def nack(self, queue: str, group: str, offsets: Iterable[Union[int, Message]]) -> JSON:
        """Gives leased messages back for immediate redelivery → {"nacked", "ignored"}."""
        return await self._run(_api.nack(queue, group, offsets))

    async def delete(self, queue: str, group: str, offset: Union[int, Message]) -> JSON:
        """Deletes one leased message; StrataError 404 when it is not leased to the group."""
        return await self._run(_api.delete(queue, group, offset))

    async def reply(self, message_or_reply_to: Union[Message, str], body: Body,
                    correlation_id: Optional[str] = None) -> JSON:
        """Replies to a message's sender (a Message, or its reply_to string)."""
        return await self._run(_api.reply(message_or_reply_to, body, correlation_id))

    async def request(self, queue: str, body: Body, timeout_ms: int = 5000, correlation_id: Optional[str] = None,
                      dedupe_id: Optional[str] = None) -> Reply:
        """Publishes one message and waits up to `timeout_ms` for a consumer's reply →
        Reply; StrataError 504 (code "no_reply") when none came in time."""
        return await self._run(_api.request(queue, body, timeout_ms, correlation_id, dedupe_id))

    # ------------------------------------------------------------------ calls

    async def call(self, service: str, path: str = "/", method: str = "GET", body: Optional[Body] = None,
                   headers: Optional[Mapping[str, str]] = None, mode: str = "any",
                   timeout: Optional[float] = None) -> Response:
        """Calls a service through the platform (mode "any" or "all") → Response."""
        return await self._run(_api.call(service, path, method, body, headers, mode, timeout))

    # ------------------------------------------------------------------ store: key-value

    async def kv_put(self, ns: str, key: str, value: Body, if_version: Optional[int] = None,
                     if_absent: bool = False) -> int:
        """Stores `value` → its new version, once durable; ConflictError when a condition fails."""
        return await self._run(_api.kv_put(ns, key, value, if_version, if_absent))

    async def kv_get(self, ns: str, key: str) -> Optional[Entry]:
        """The value of `key` → Entry(value, version); None when there is no such key."""
        return await self._run(_api.kv_get(ns, key))

    async def kv_delete(self, ns: str, key: str, if_version: Optional[int] = None) -> bool:
        """Deletes `key` → True, False when there was no such key; ConflictError."""
        return await self._run(_api.kv_delete(ns, key, if_version))

    async def kv_list(self, ns: str, prefix: str = "", after: Optional[str] = None, limit: int = 100) -> JSON:
        """One page of keys → {"items", "next"}; pass `next` as `after` for the next page."""
        return await self._run(_api.kv_list(ns, prefix, after, limit))

    async def kv_iter(self, ns: str, prefix: str = "", page_size: int = 100) -> AsyncIterator[JSON]:
        """Every key of `ns` starting with `prefix`, page after page: `async for item in ...`."""
        after = None
        while True:
            page = await self.kv_list(ns, prefix, after, page_size)
            for item in page.get("items", []):
                yield item
            after = page.get("next")
            if after is None:
                return

    # ------------------------------------------------------------------ store: blobs

    async def blob_put(self, ns: str, name: str, data: AsyncBlobData,
                       content_type: Optional[str] = "application/octet-stream",
                       if_version: Optional[int] = None, if_absent: bool = False) -> JSON:
        """Stores a blob, streamed, never whole in memory → {"size", "etag", "content_type",
        "version", "updated_ms"}, once durable. A binary file object is read block by block
        in a worker thread (Content-Length when its size is known, else chunked); an
        iterable or async iterable of bytes is sent chunked. Conditions as for kv_put."""
        exchange = _api.blob_put(ns, name, content_type, if_version, if_absent)
        return await self._run(exchange, _Upload.of_blob(data))

    async def blob_get(self, ns: str, name: str) -> Optional[Tuple[BlobMeta, bytes]]:
        """The whole blob → (meta, bytes); None when there is no such blob."""
        return await self._run(_api.blob_get(ns, name))

    async def blob_open(self, ns: str, name: str) -> Optional[AsyncBlobStream]:
        """The blob as a stream → AsyncBlobStream (`await read(n)`, `async for block in
        stream`, `.meta`; use `async with` or close it), read from the node as you read
        it, on a connection of its own; None when there is no such blob."""
        exchange = _api.blob_open(ns, name)
        conn: Optional[Connection] = None
        try:
            conn = await _within(self._connect(), self.timeout, "GET", exchange.path)
            status, headers = await _within(conn.request("GET", self._prefix + exchange.path,
                                                          with_token(self._token,
                                                                     with_trace(self._trace, exchange.headers)),
                                                          None),
                                            self.timeout, "GET", exchange.path)
            assert conn.body is not None
            if status != 200:
                data = await _within(conn.body.read_all(), self.timeout, "GET", exchange.path)
                conn.close()
                exchange.read(Answer(status, headers, data))
                return None
            return AsyncBlobStream(conn, conn.body, _api.blob_meta(headers), headers, self.timeout)
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    async def blob_delete(self, ns: str, name: str, if_version: Optional[int] = None) -> bool:
        """Deletes a blob → True, False when there was no such blob; ConflictError."""
        return await self._run(_api.blob_delete(ns, name, if_version))

    async def blob_list(self, ns: str, prefix: str = "", after: Optional[str] = None, limit: int = 100) -> JSON:
        """One page of blobs → {"items", "next"}; as kv_list."""
        return await self._run(_api.blob_list(ns, prefix, after, limit))

    async def blob_iter(self, ns: str, prefix: str = "", page_size: int = 100) -> AsyncIterator[JSON]:
        """Every blob of `ns` starting with `prefix`: `async for item in ...`."""
        after = None
        while True:
            page = await self.blob_list(ns, prefix, after, page_size)
            for item in page.get("items", []):
                yield item
            after = page.get("next")
            if after is None:
                return

    # ------------------------------------------------------------------ cache

    async def cache_get(self, key: str) -> Optional[bytes]:
        """The raw cache's value of `key` → bytes, None when absent."""
        return await self._run(_api.cache_get(key))

    async def cache_set(self, key: str, value: Body, ttl_ms: Optional[int] = None) -> None:
        """Sets `key` in the raw cache, gone after `ttl_ms` when given."""
        await self._run(_api.cache_set(key, value, ttl_ms))

    async def cache_delete(self, key: str) -> bool:
        """Drops `key` from the raw cache → whether it was there."""
        return await self._run(_api.cache_delete(key))

    async def cached(self, name: str, key: str) -> Optional[bytes]:
        """`key` through the read-through cache `name` → bytes, None when the store has
        no such key; StrataError 404 when no cache has that name."""
        return await self._run(_api.cached(name, key))

    async def cache_stats(self) -> JSON:
        """The cache's stats, per shard and per read-through cache."""
        return await self._run(_api.cache_stats())

    async def cache_drop_shard(self, n: int) -> JSON:
        """Empties cache shard `n` (drills, tests) → {"shard", "dropped_keys"}."""
        return await self._run(_api.cache_drop_shard(n))


class _Conns:
    """The idle connections and the in-flight slots of one event loop, shared by a
    client and its traced views."""

    __slots__ = ("idle", "slots", "loop")

    def __init__(self) -> None:
        self.idle: List[Connection] = []
        self.slots: Optional[asyncio.Semaphore] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None


class AsyncBlobStream:
    """A blob being read, as AsyncClient.blob_open answers it, over a connection of its
    own, closed with it: `await read(n)`, `await readall()`, `async for block in
    stream` (or `stream.chunks(size)`). `meta` is {"size", "etag", "content_type",
    "version"}; `headers` the answer's headers (lower-case names)."""

    def __init__(self, conn: Connection, body: BodyReader, meta: BlobMeta, headers: Dict[str, str],
                 timeout: float) -> None:
        self._conn = conn
        self._body = body
        self._timeout = timeout
        self.meta = meta
        self.headers = headers

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when -1); b"" at the end of the body. A body
        cut short raises ConnectionError; each read waits at most the client's timeout."""
        if self._conn.closed:
            raise ValueError("read of a closed blob stream")
        return await _within(self._body.read(size), self._timeout, "GET", "blob body")

    async def readall(self) -> bytes:
        return await self.read(-1)

    async def chunks(self, size: int = BLOCK) -> AsyncIterator[bytes]:
        """The rest of the body, in pieces of up to `size` bytes."""
        while True:
            block = await self.read(size)
            if not block:
                return
            yield block

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks()

    async def close(self) -> None:
        await self._conn.wait_closed()

    async def __aenter__(self) -> AsyncBlobStream:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncBlobStream({self.meta!r})"


class _Upload:
    """A request body for each attempt: `body(attempt)` (the second rewound), whether it
    can be sent twice at all, and the headers it brings."""

    def __init__(self, body: Callable[[int], Awaitable[RequestBody]], resendable: bool,
                 headers: Optional[Dict[str, str]] = None) -> None:
        self.body = body
        self.resendable = resendable
        self.headers = headers or {}

    @classmethod
    def of_bytes(cls, data: Optional[bytes]) -> _Upload:
        async def body(attempt: int) -> RequestBody:
            return data
        return cls(body, True)

    @classmethod
    def of_blob(cls, data: AsyncBlobData) -> _Upload:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            return cls.of_bytes(bytes(data))
        if hasattr(data, "read"):
            f = cast(IO[bytes], data)
            pos, length = file_span(f)

            async def file_body(attempt: int) -> RequestBody:
                if attempt > 1 and pos is not None:
                    f.seek(pos)
                return OutBody(_file_blocks(f, length), length)
            return cls(file_body, pos is not None)
        if hasattr(data, "__aiter__"):
            ablocks = _async_blocks(cast(AsyncIterable[bytes], data))

            async def async_body(attempt: int) -> RequestBody:
                return OutBody(ablocks, None)
            return cls(async_body, False)
        try:
            blocks = iter(data)
        except TypeError:
            raise not_a_blob(data) from None

        async def iter_body(attempt: int) -> RequestBody:
            return OutBody(_iter_blocks(blocks), None)
        return cls(iter_body, False)


async def _file_blocks(f: IO[bytes], length: Optional[int]) -> AsyncIterator[bytes]:
    """A file's blocks, up to `length` bytes; a real file is read in a worker thread so
    the event loop never waits on the disk."""
    loop = asyncio.get_running_loop()
    in_memory = isinstance(f, io.BytesIO)
    left = length
    while left is None or left > 0:
        n = BLOCK if left is None else min(BLOCK, left)
        block = f.read(n) if in_memory else await loop.run_in_executor(None, f.read, n)
        if not block:
            return
        if left is not None:
            left -= len(block)
        yield bytes(block)


async def _async_blocks(blocks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for block in blocks:
        yield bytes(block)


async def _iter_blocks(blocks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for block in blocks:
        yield bytes(block)


async def _within(work: Awaitable[T], timeout: float, method: str, path: str) -> T:
    """`work`, given up after `timeout` seconds with TimeoutError (an OSError, like any
    network failure; asyncio's own TimeoutError is not one before Python 3.11)."""
    try:
        return await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{method} {path}: no answer within {timeout:g}s") from None


__all__ = ["AsyncClient", "AsyncBlobStream", "AsyncBlobData"]
