"""Each call of the platform API as an `Exchange`: the request to send and how to read
its answer, without I/O. The sync `Client` and the `AsyncClient` send the same
exchanges over their own transports, so the two cannot drift apart.

Paths are relative to the node's base URL; the clients add their prefix. The contract
is docs/queues.md (queues), docs/state.md (store and cache) and the README's instance
contract (calls).
"""
from __future__ import annotations

import json
import urllib.parse
from typing import (Any, Callable, Dict, Generic, Iterable, List, Mapping, NamedTuple, Optional,
                    Tuple, TypeVar, Union)

from ._trace import TRACEPARENT
from ._wire import (JSON, Body, body_fields, cond_headers, decode_body, json_bytes, message_fields,
                    page_query, quote, value_bytes)
from .errors import error_from_answer
from .models import BatchPublished, Entry, Message, Published, Reply, Response

T = TypeVar("T")

BatchItem = Union[Body, Mapping[str, Any]]
"""One message of a batch: a body, or a dict of publish's fields with a "body"."""

BlobMeta = Dict[str, Any]
"""{"size", "etag", "content_type", "version"} of a blob read."""


class Answer(NamedTuple):
    """What the node answered: status, headers (lower-case names), the whole body."""

    status: int
    headers: Dict[str, str]
    body: bytes


class Exchange(Generic[T]):
    """One request and the reading of its answer into a T (which raises StrataError for
    an error answer). `wait_s` is how long the node may hold the request on purpose (a
    long poll, a request waiting for its reply), added to the client's timeout;
    `timeout`, when set, replaces the client's timeout."""

    __slots__ = ("method", "path", "read", "body", "headers", "wait_s", "timeout")

    def __init__(self, method: str, path: str, read: Callable[[Answer], T], body: Optional[bytes] = None,
                 headers: Optional[Mapping[str, str]] = None, wait_s: float = 0.0,
                 timeout: Optional[float] = None) -> None:
        self.method = method
        self.path = path
        self.read = read
        self.body = body
        self.headers: Dict[str, str] = {"Accept": "application/json"}
        self.headers.update(headers or {})
        self.wait_s = wait_s
        self.timeout = timeout


def _raise(answer: Answer) -> Any:
    raise error_from_answer(answer.status, answer.body)


def _json_reader(ok: Tuple[int, ...]) -> Callable[[Answer], JSON]:
    def read(answer: Answer) -> JSON:
        if answer.status not in ok:
            _raise(answer)
        if not answer.body.strip():
            return {}
        doc = json.loads(answer.body)
        return doc if isinstance(doc, dict) else {"answer": doc}
    return read


def json_exchange(method: str, path: str, doc: object = None, ok: Tuple[int, ...] = (200, 201, 202),
                  wait_s: float = 0.0) -> Exchange[JSON]:
    """A request with a JSON body (or none) whose answer is a JSON object; a status
    outside `ok` raises StrataError."""
    body, headers = None, None
    if doc is not None:
        body, headers = json_bytes(doc), {"Content-Type": "application/json"}
    return Exchange(method, path, _json_reader(ok), body, headers, wait_s)


def _then(exchange: Exchange[JSON], finish: Callable[[JSON], T]) -> Exchange[T]:
    """The exchange with its JSON answer turned into a T."""
    read = exchange.read
    return Exchange(exchange.method, exchange.path, lambda a: finish(read(a)), exchange.body,
                    exchange.headers, exchange.wait_s, exchange.timeout)


# ---------------------------------------------------------------------- queues

def _queue(queue: str) -> str:
    return f"/v1/queues/{quote(queue)}"


def _group(queue: str, group: str) -> str:
    return f"{_queue(queue)}/groups/{quote(group)}"


def _offsets(items: Iterable[Union[int, Message]]) -> List[int]:
    return [m.offset if isinstance(m, Message) else m for m in items]


def create_queue(name: str, config: Mapping[str, Any]) -> Exchange[bool]:
    def read(answer: Answer) -> bool:
        if answer.status not in (200, 201):
            _raise(answer)
        return answer.status == 201
    if config:
        return Exchange("PUT", _queue(name), read, json_bytes(dict(config)), {"Content-Type": "application/json"})
    return Exchange("PUT", _queue(name), read, b"")


def queues() -> Exchange[List[JSON]]:
    return _then(json_exchange("GET", "/v1/queues"), lambda doc: list(doc.get("queues", [])))


def stats(queue: str) -> Exchange[JSON]:
    return json_exchange("GET", _queue(queue))


def publish(queue: str, body: Body, dedupe_id: Optional[str], reply_to: Optional[str],
            correlation_id: Optional[str]) -> Exchange[Published]:
    return _then(json_exchange("POST", f"{_queue(queue)}/messages",
                               message_fields(body, dedupe_id, reply_to, correlation_id)),
                 lambda doc: Published(doc["offset"], bool(doc.get("duplicate", False))))


def publish_batch(queue: str, messages: Iterable[BatchItem]) -> Exchange[BatchPublished]:
    items = []
    for m in messages:
        if isinstance(m, Mapping):
            if "body" not in m:
                raise ValueError("a batch item given as a dict needs a \"body\"")
            items.append(message_fields(**m))
        else:
            items.append(body_fields(m))
    return _then(json_exchange("POST", f"{_queue(queue)}/messages", {"messages": items}),
                 lambda doc: BatchPublished(list(doc.get("offsets", [])), int(doc.get("duplicates", 0))))


def fetch(queue: str, group: str, max: Union[int, str], wait_ms: int, max_bytes: Optional[int],
          lease_ms: Optional[int]) -> Exchange[List[Message]]:
    params: Dict[str, Union[int, str]] = {"max": max}
    if wait_ms:
        params["wait_ms"] = wait_ms
    if max_bytes is not None:
        params["max_bytes"] = max_bytes
    if lease_ms is not None:
        params["lease_ms"] = lease_ms
    wait_s = wait_ms / 1000 if isinstance(wait_ms, (int, float)) else 0.0
    path = f"{_group(queue, group)}/fetch?{urllib.parse.urlencode(params)}"
    return _then(json_exchange("POST", path, wait_s=wait_s),
                 lambda doc: [Message.from_json(m, queue, group) for m in doc.get("messages", [])])


def ack(queue: str, group: str, offsets: Iterable[Union[int, Message]]) -> Exchange[JSON]:
    return json_exchange("POST", f"{_group(queue, group)}/ack", {"offsets": _offsets(offsets)})


def nack(queue: str, group: str, offsets: Iterable[Union[int, Message]]) -> Exchange[JSON]:
    return json_exchange("POST", f"{_group(queue, group)}/nack", {"offsets": _offsets(offsets)})


def delete(queue: str, group: str, offset: Union[int, Message]) -> Exchange[JSON]:
    if isinstance(offset, Message):
        offset = offset.offset
    return json_exchange("DELETE", f"{_group(queue, group)}/messages/{quote(offset)}")


def reply(message_or_reply_to: Union[Message, str], body: Body,
          correlation_id: Optional[str]) -> Exchange[JSON]:
    if isinstance(message_or_reply_to, Message):
        reply_to = message_or_reply_to.reply_to
        if correlation_id is None:
            correlation_id = message_or_reply_to.correlation_id
    else:
        reply_to = message_or_reply_to
    if not reply_to:
        raise ValueError("the message has no reply_to")
    doc = body_fields(body)
    doc["reply_to"] = reply_to
    if correlation_id is not None:
        doc["correlation_id"] = correlation_id
    exchange = json_exchange("POST", "/v1/reply", doc)
    # A reply to a traced message continues the message's trace: its span is a child of
    # the publish, and the publisher's answer names it (docs/traces.md).
    if isinstance(message_or_reply_to, Message) and message_or_reply_to.traceparent:
        exchange.headers[TRACEPARENT] = message_or_reply_to.traceparent
    return exchange


def request(queue: str, body: Body, timeout_ms: int, correlation_id: Optional[str],
            dedupe_id: Optional[str]) -> Exchange[Reply]:
    def finish(doc: JSON) -> Reply:
        got = doc.get("reply") or {}
        return Reply(decode_body(got), got.get("correlation_id"), doc.get("offset"), got.get("traceparent"))
    return _then(json_exchange("POST", f"{_queue(queue)}/messages?wait_reply_ms={int(timeout_ms)}",
                               message_fields(body, dedupe_id=dedupe_id, correlation_id=correlation_id),
                               ok=(200,), wait_s=timeout_ms / 1000), finish)


# ---------------------------------------------------------------------- calls

def call(service: str, path: str, method: str, body: Union[Body, None], headers: Optional[Mapping[str, str]],
         mode: str, timeout: Optional[float]) -> Exchange[Response]:
    if mode not in ("any", "all"):
        raise ValueError(f"mode is 'any' or 'all', not {mode!r}")
    hdrs = {"Accept": "*/*"}
    hdrs.update(headers or {})
    data: Optional[bytes] = None
    if isinstance(body, str):
        data = body.encode("utf-8")
        hdrs.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif isinstance(body, (dict, list)):
        data = json.dumps(body).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    elif body is not None:
        raise TypeError(f"a call's body is bytes, str, dict or list, not {type(body).__name__}")
    rest = path.lstrip("/")
    target = f"/v1/{mode}/{quote(service)}" + (rest if rest.startswith("?") or not rest else "/" + rest)

    def read(answer: Answer) -> Response:
        if answer.status >= 400:
            _raise(answer)
        return Response(answer.status, answer.headers, answer.body)
    return Exchange(method, target, read, data, hdrs, timeout=timeout)


# ---------------------------------------------------------------------- store: key-value

def _kv(ns: str, key: Optional[str] = None) -> str:
    return f"/v1/kv/{quote(ns)}" + ("" if key is None else f"/{quote(key)}")


def _written_version(answer: Answer) -> int:
    if answer.status not in (200, 201):
        _raise(answer)
    return int(json.loads(answer.body)["version"])


def _deleted(answer: Answer) -> bool:
    if answer.status == 404:
        return False
    if answer.status != 200:
        _raise(answer)
    return bool(json.loads(answer.body).get("deleted", True))


def kv_put(ns: str, key: str, value: Body, if_version: Optional[int], if_absent: bool) -> Exchange[int]:
    headers = {"Content-Type": "application/octet-stream"}
    headers.update(cond_headers(if_version, if_absent))
    return Exchange("PUT", _kv(ns, key), _written_version, value_bytes(value), headers)


def kv_get(ns: str, key: str) -> Exchange[Optional[Entry]]:
    def read(answer: Answer) -> Optional[Entry]:
        if answer.status == 404:
            return None
        if answer.status != 200:
            _raise(answer)
        version = answer.headers.get("x-strata-version") or answer.headers.get("etag", "").strip('"')
        return Entry(answer.body, int(version))
    return Exchange("GET", _kv(ns, key), read)


def kv_delete(ns: str, key: str, if_version: Optional[int]) -> Exchange[bool]:
    return Exchange("DELETE", _kv(ns, key), _deleted, headers=cond_headers(if_version))


def kv_list(ns: str, prefix: str, after: Optional[str], limit: int) -> Exchange[JSON]:
    return json_exchange("GET", f"{_kv(ns)}?{page_query(prefix, after, limit)}", ok=(200,))


# ---------------------------------------------------------------------- store: blobs

def _blob(ns: str, name: Optional[str] = None) -> str:
    return f"/v1/blobs/{quote(ns)}" + ("" if name is None else f"/{quote(name)}")


def blob_meta(headers: Mapping[str, str]) -> BlobMeta:
    """A blob's metadata from the headers of a GET."""
    def number(name: str) -> Optional[int]:
        try:
            return int(headers[name])
        except (KeyError, ValueError):
            return None
    return {"size": number("content-length"), "etag": headers.get("etag", "").strip('"'),
            "content_type": headers.get("content-type"), "version": number("x-strata-version")}


def blob_put(ns: str, name: str, content_type: Optional[str], if_version: Optional[int],
             if_absent: bool) -> Exchange[JSON]:
    """The head of a blob upload; each client sends the body its own way, streamed."""
    headers = {"Content-Type": content_type} if content_type else {}
    headers.update(cond_headers(if_version, if_absent))

    def read(answer: Answer) -> JSON:
        if answer.status not in (200, 201):
            _raise(answer)
        doc: JSON = json.loads(answer.body)
        return doc
    return Exchange("PUT", _blob(ns, name), read, headers=headers)


def blob_get(ns: str, name: str) -> Exchange[Optional[Tuple[BlobMeta, bytes]]]:
    def read(answer: Answer) -> Optional[Tuple[BlobMeta, bytes]]:
        if answer.status == 404:
            return None
        if answer.status != 200:
            _raise(answer)
        return blob_meta(answer.headers), answer.body
    return Exchange("GET", _blob(ns, name), read, headers={"Accept": "*/*"})


def blob_open(ns: str, name: str) -> Exchange[None]:
    """The request of a streamed read: its answer's body is read by the stream; `read`
    is applied only to a status other than 200 (with the whole body): None for a 404,
    else it raises."""
    def read(answer: Answer) -> None:
        if answer.status != 404:
            _raise(answer)
    return Exchange("GET", _blob(ns, name), read, headers={"Accept": "*/*"})


def blob_delete(ns: str, name: str, if_version: Optional[int]) -> Exchange[bool]:
    return Exchange("DELETE", _blob(ns, name), _deleted, headers=cond_headers(if_version))


def blob_list(ns: str, prefix: str, after: Optional[str], limit: int) -> Exchange[JSON]:
    return json_exchange("GET", f"{_blob(ns)}?{page_query(prefix, after, limit)}", ok=(200,))


# ---------------------------------------------------------------------- cache

def cache_get(key: str) -> Exchange[Optional[bytes]]:
    def read(answer: Answer) -> Optional[bytes]:
        if answer.status == 404:
            return None
        if answer.status != 200:
            _raise(answer)
        return answer.body
    return Exchange("GET", f"/v1/cache/keys/{quote(key)}", read)


def cache_set(key: str, value: Body, ttl_ms: Optional[int]) -> Exchange[None]:
    path = f"/v1/cache/keys/{quote(key)}"
    if ttl_ms is not None:
        path += f"?ttl_ms={int(ttl_ms)}"

    def read(answer: Answer) -> None:
        if answer.status not in (200, 201, 204):
            _raise(answer)
    return Exchange("PUT", path, read, value_bytes(value), {"Content-Type": "application/octet-stream"})


def cache_delete(key: str) -> Exchange[bool]:
    return _then(json_exchange("DELETE", f"/v1/cache/keys/{quote(key)}", ok=(200,)),
                 lambda doc: bool(doc.get("deleted")))


def cached(name: str, key: str) -> Exchange[Optional[bytes]]:
    def read(answer: Answer) -> Optional[bytes]:
        if answer.status == 200:
            return answer.body
        err = error_from_answer(answer.status, answer.body)
        if answer.status == 404 and not err.message.startswith("no cache named"):
            return None
        raise err
    return Exchange("GET", f"/v1/caches/{quote(name)}/{quote(key)}", read)


def cache_stats() -> Exchange[JSON]:
    return json_exchange("GET", "/v1/cache", ok=(200,))


def cache_drop_shard(n: int) -> Exchange[JSON]:
    return json_exchange("POST", f"/v1/cache/shards/{quote(n)}/drop", ok=(200,))
