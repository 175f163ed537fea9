"""How values travel on the node API: message bodies in JSON, stored values, paths and
query strings, condition headers, and the size of a file object to stream. No I/O."""
from __future__ import annotations

import base64
import io
import json
import os
import stat
import urllib.parse
from typing import IO, Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

# Bytes a streamed body is read and sent in.
BLOCK = 256 << 10

JSON = Dict[str, Any]
"""A JSON object as the node answers it."""

Body = Union[str, bytes, bytearray, memoryview, Dict[str, Any], List[Any]]
"""A message body or stored value: str (UTF-8), bytes, or a dict/list sent as JSON."""


class NodeURL(NamedTuple):
    """Where a node's API is: the URL as given (no trailing "/"), and its parts."""

    url: str
    https: bool
    host: str
    port: Optional[int]
    prefix: str


def node_url(url: Optional[str]) -> NodeURL:
    """The node's URL, `url` or else $STRATA_URL; ValueError when neither is an http(s) URL."""
    url = url or os.environ.get("STRATA_URL")
    if not url:
        raise ValueError("no node URL: pass url= or set STRATA_URL")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return NodeURL(url.rstrip("/"), parts.scheme == "https", parts.hostname, parts.port,
                   parts.path.rstrip("/"))


def node_token(token: Optional[str]) -> Optional[str]:
    """The token the node API wants, `token` or else $STRATA_TOKEN (strata gives each
    instance its service's); None when neither is set."""
    return token or os.environ.get("STRATA_TOKEN") or None


def with_token(token: Optional[str], headers: Mapping[str, str]) -> Dict[str, str]:
    """`headers` with the token added: as `Authorization: Bearer TOKEN`, or as
    `X-Strata-Token` when the headers carry an Authorization of the app's own (a call
    passing a user's credentials on to the called service)."""
    out = dict(headers)
    if token:
        if any(k.lower() == "authorization" for k in out):
            out["X-Strata-Token"] = token
        else:
            out["Authorization"] = f"Bearer {token}"
    return out


def quote(part: object) -> str:
    """One path segment: every reserved character escaped, "/" included."""
    return urllib.parse.quote(str(part), safe="")


def decode_body(doc: Mapping[str, Any]) -> bytes:
    """The bytes of a message in its JSON form: `body` (text) or `body_base64`."""
    if "body_base64" in doc:
        return base64.b64decode(doc["body_base64"])
    body = doc.get("body")
    return body.encode("utf-8") if body is not None else b""


def body_fields(body: Body) -> JSON:
    """The JSON fields carrying a message body: str as text, bytes as text when UTF-8
    else base64, a dict or list as JSON text."""
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


def message_fields(body: Body, dedupe_id: Optional[str] = None, reply_to: Optional[str] = None,
                   correlation_id: Optional[str] = None) -> JSON:
    """One message of a publish: its body and the optional attributes given."""
    doc = body_fields(body)
    for key, value in (("dedupe_id", dedupe_id), ("reply_to", reply_to),
                       ("correlation_id", correlation_id)):
        if value is not None:
            doc[key] = value
    return doc


def value_bytes(value: Body) -> bytes:
    """A stored value as bytes: bytes as they are, str as UTF-8, a dict or list as JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":")).encode("utf-8")
    raise TypeError(f"a value is bytes, str, dict or list, not {type(value).__name__}")


def json_bytes(doc: object) -> bytes:
    """A request's JSON body, compact."""
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def cond_headers(if_version: Optional[int] = None, if_absent: bool = False) -> Dict[str, str]:
    """The headers of a conditional write: If-Match a version, or If-None-Match: *."""
    if if_version is not None and if_absent:
        raise ValueError("give if_version or if_absent, not both")
    if if_version is not None:
        return {"If-Match": f'"{int(if_version)}"'}
    if if_absent:
        return {"If-None-Match": "*"}
    return {}


def page_query(prefix: str, after: Optional[str], limit: int) -> str:
    """The query string of one listing page."""
    params: Dict[str, Union[str, int]] = {"limit": int(limit)}
    if prefix:
        params["prefix"] = prefix
    if after is not None:
        params["after"] = after
    return urllib.parse.urlencode(params)


def file_span(f: IO[bytes]) -> Tuple[Optional[int], Optional[int]]:
    """Where a binary file object is and how many bytes are left from there → (position,
    length); position None when it cannot seek (so cannot be sent again), length None
    when unknown (sent chunked). The length of a regular file comes from os.fstat, else
    from seeking to the end and back."""
    if isinstance(f, io.TextIOBase):
        raise TypeError("a blob is read from a binary file object: open it with 'rb'")
    pos: Optional[int] = None
    try:
        if f.seekable():
            pos = f.tell()
    except (AttributeError, OSError, ValueError):
        pos = None
    length: Optional[int] = None
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and pos is not None:
            length = max(st.st_size - pos, 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    if length is None and pos is not None:
        try:
            length = max(f.seek(0, io.SEEK_END) - pos, 0)
            f.seek(pos)
        except (OSError, ValueError):
            length = None
    return pos, length


def not_a_blob(data: object) -> TypeError:
    """The error for a blob body of a kind neither client sends."""
    return TypeError("a blob body is bytes, str, a binary file object or an iterable of "
                     f"bytes, not {type(data).__name__}")
