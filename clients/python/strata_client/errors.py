"""Errors the node answers. Its error body is `{"error", "status", "code"}`: `code` is
stable and meant for programs ("not_found", "bad_request", "payload_too_large",
"duplicate", "no_reply", "condition_failed", "unavailable", "internal", "unauthorized"
(no token, or a stale one), "forbidden" (beyond the service's access), ...), `error`
is meant for people and may change. Network failures are OSError, not these."""
from __future__ import annotations

import http.client
import json
from typing import Any, Optional


class StrataError(Exception):
    """A 4xx/5xx answer: `status`, `code` (the body's stable "code"; None when the
    answer had no JSON error body, as a service's own answer to a call may not),
    `message` (the body's "error", else its text) and the raw `body`."""

    def __init__(self, status: int, message: str, body: bytes = b"", code: Optional[str] = None) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.code = code


class ConflictError(StrataError):
    """A write whose condition failed (412, code "condition_failed"): `current` is the
    key's current version, None when there is no such key. Nothing was written."""

    def __init__(self, status: int, message: str, body: bytes = b"", current: Optional[int] = None,
                 code: Optional[str] = None) -> None:
        super().__init__(status, message, body, code)
        self.current = current


def error_from_answer(status: int, data: bytes) -> StrataError:
    """The error an answer stands for: message and code from the JSON error body when
    there is one, else its text; a 412 (a write's condition failed) is a ConflictError
    with the current version."""
    message: Optional[str] = None
    code: Optional[str] = None
    doc: Any = None
    try:
        doc = json.loads(data)
    except ValueError:
        pass
    if isinstance(doc, dict):
        if isinstance(doc.get("error"), str):
            message = doc["error"]
        if isinstance(doc.get("code"), str):
            code = doc["code"]
    if not message:
        message = (data[:500].decode("utf-8", "replace").strip()
                   or http.client.responses.get(status, "error"))
    if status == 412:
        current = doc.get("current") if isinstance(doc, dict) else None
        return ConflictError(status, message, data, current if isinstance(current, int) else None, code)
    return StrataError(status, message, data, code)
