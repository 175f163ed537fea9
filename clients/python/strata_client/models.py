"""What calls answer: messages, replies, responses of services, publish receipts and
stored entries. Plain values, shared by the sync and the async client."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Union

from ._wire import decode_body


class _Payload:
    """Bytes with text and JSON views."""

    __slots__ = ()
    body: bytes

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Message(_Payload):
    """One message of a queue, as fetched (or pushed) to a consumer group."""

    __slots__ = ("offset", "deliveries", "timestamp_ms", "body", "reply_to",
                 "correlation_id", "queue", "group", "traceparent", "dead_letter")

    def __init__(self, offset: int, body: bytes, deliveries: int = 1, timestamp_ms: Optional[int] = None,
                 reply_to: Optional[str] = None, correlation_id: Optional[str] = None,
                 queue: Optional[str] = None, group: Optional[str] = None,
                 traceparent: Optional[str] = None,
                 dead_letter: Optional[Dict[str, Any]] = None) -> None:
        self.offset = offset
        self.body = body
        self.deliveries = deliveries
        self.timestamp_ms = timestamp_ms
        self.reply_to = reply_to
        self.correlation_id = correlation_id
        self.queue = queue
        self.group = group
        #: The W3C traceparent to continue the publisher's trace with (its delivery's
        #: span, or the publish span on a fetch); None when the publish was not traced.
        self.traceparent = traceparent
        #: In a dead-letter queue (NAME.dlq): where it came from, a dict with "group"
        #: (that gave up on it), "offset" and "timestamp_ms" (in NAME) and "deliveries";
        #: None for any other message.
        self.dead_letter = dead_letter

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], queue: Optional[str] = None,
                  group: Optional[str] = None) -> Message:
        """A message from its JSON form in a fetch answer or a pushed batch."""
        return cls(offset=doc["offset"], body=decode_body(doc),
                   deliveries=doc.get("deliveries", 1), timestamp_ms=doc.get("timestamp_ms"),
                   reply_to=doc.get("reply_to"), correlation_id=doc.get("correlation_id"),
                   queue=queue, group=group, traceparent=doc.get("traceparent"),
                   dead_letter=doc.get("dead_letter"))

    def __repr__(self) -> str:
        return (f"Message(offset={self.offset!r}, deliveries={self.deliveries!r}, "
                f"body={self.body[:60]!r}{'...' if len(self.body) > 60 else ''})")


class Reply(_Payload):
    """The reply to a request: body, correlation_id, `offset` of the request message, and
    `traceparent` naming the reply's span when the consumer replied within the trace
    (None when the reply was not traced)."""

    __slots__ = ("body", "correlation_id", "offset", "traceparent")

    def __init__(self, body: bytes, correlation_id: Optional[str] = None, offset: Optional[int] = None,
                 traceparent: Optional[str] = None) -> None:
        self.body = body
        self.correlation_id = correlation_id
        self.offset = offset
        self.traceparent = traceparent

    def __repr__(self) -> str:
        return f"Reply(offset={self.offset!r}, correlation_id={self.correlation_id!r}, body={self.body[:60]!r})"


class Response(_Payload):
    """The answer to a call: status, headers (lower-case names), body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Response(status={self.status!r}, body={self.body[:60]!r})"


class Published(NamedTuple):
    """The answer to one publish: its offset, and whether it was a duplicate."""

    offset: int
    duplicate: bool


class BatchPublished(NamedTuple):
    """The answer to a batch publish: the offsets in order, and how many were duplicates."""

    offsets: List[int]
    duplicates: int


class Entry(NamedTuple):
    """A stored value and its version, as kv_get answers it: unpacks as (value, version)."""

    value: bytes
    version: int

    @property
    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode("utf-8")

    def json(self) -> Any:
        """The value parsed as JSON."""
        return json.loads(self.value)


def parse_push(body: Union[bytes, bytearray, str, Mapping[str, Any]]) -> List[Message]:
    """The messages of a batch strata pushed to a consumer (the POST body), in order,
    each with `.queue` and `.group`."""
    doc = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
    queue, group = doc.get("queue"), doc.get("group")
    return [Message.from_json(m, queue, group) for m in doc.get("messages", [])]
