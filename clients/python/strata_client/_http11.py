"""A small HTTP/1.1 client connection on asyncio streams, for the AsyncClient.

Just what talking to a strata node takes: one request at a time per connection, kept
alive between requests; a request body of known length (Content-Length) or streamed
chunked; an answer's body by Content-Length, chunked, or up to the close; 1xx answers
skipped. No redirects, no compression, no proxies, no pipelining.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import AsyncIterator, Dict, List, Mapping, Optional, Tuple, Union

# Longest status or header line taken (asyncio's StreamReader limit).
_LINE_LIMIT = 64 << 10
_MAX_HEADERS = 200
_METHODS_WITH_BODY = ("POST", "PUT", "PATCH")


class Dropped(ConnectionError):
    """The node closed the connection before answering (a kept-alive connection it had
    closed while idle fails so on its next use)."""


class OutBody:
    """A streamed request body: `length` bytes (None: unknown, sent chunked) of blocks."""

    def __init__(self, blocks: AsyncIterator[bytes], length: Optional[int]) -> None:
        self.blocks = blocks
        self.length = length


RequestBody = Union[None, bytes, OutBody]


class Connection:
    """One HTTP/1.1 connection. `request` sends a request and reads the answer's head;
    the body is then read through `body` (a BodyReader) before the next request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host_header: str) -> None:
        self._reader = reader
        self._writer = writer
        self._host_header = host_header
        self.body: Optional[BodyReader] = None
        self._keep_alive = True
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, tls: Optional[ssl.SSLContext], host_header: str) -> Connection:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls else None, limit=_LINE_LIMIT)
        return cls(reader, writer, host_header)

    @property
    def reusable(self) -> bool:
        """Whether a next request may go on this connection: the last answer was read
        whole, neither side asked to close, and the node has not closed it meanwhile."""
        return (not self.closed and self._keep_alive and (self.body is None or self.body.done)
                and not self._reader.at_eof() and not self._writer.is_closing())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._writer.close()
            except RuntimeError:
                # Its event loop is closed (the client moved to another loop): the
                # transport closes its socket when it is collected.
                pass

    async def wait_closed(self) -> None:
        self.close()
        try:
            await self._writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    @property
    def socket(self) -> object:
        """The socket under the connection (tests use it to drop the connection)."""
        return self._writer.get_extra_info("socket")

    async def request(self, method: str, target: str, headers: Mapping[str, str],
                      body: RequestBody) -> Tuple[int, Dict[str, str]]:
        """Sends a request and reads the head of its answer → (status, headers with
        lower-case names); the body is then in `self.body`. Dropped when the node closed
        the connection before any byte of an answer."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        names = {k.lower() for k in headers}
        for k, v in headers.items():
            lines.append(f"{_token(k)}: {_value(v)}")
        if isinstance(body, bytes):
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(body)}")
        elif isinstance(body, OutBody):
            if body.length is not None:
                if "content-length" not in names:
                    lines.append(f"Content-Length: {body.length}")
            else:
                lines.append("Transfer-Encoding: chunked")
        elif method in _METHODS_WITH_BODY and "content-length" not in names:
            lines.append("Content-Length: 0")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if isinstance(body, bytes):
            self._writer.write(body)
        elif isinstance(body, OutBody):
            await self._send_streamed(body)
        await self._writer.drain()
        return await self._read_head(method)

    async def _send_streamed(self, body: OutBody) -> None:
        left = body.length
        async for block in body.blocks:
            if not block:
                continue
            if left is None:
                self._writer.write(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                block = block[:left]
                left -= len(block)
                self._writer.write(block)
            await self._writer.drain()
            if left == 0:
                break
        if left is None:
            self._writer.write(b"0\r\n\r\n")
        elif left > 0:
            self.close()
            raise ValueError(f"the body ended {left} bytes before its announced length")

    async def _read_head(self, method: str) -> Tuple[int, Dict[str, str]]:
        first = True
        while True:
            line = await self._reader.readline()
            if not line:
                if first:
                    raise Dropped("the node closed the connection without answering")
                raise ConnectionError("the node closed the connection in the middle of an answer")
            first = False
            parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ConnectionError(f"not an HTTP answer: {line[:100]!r}")
            version, status = parts[0], int(parts[1])
            headers = await self._read_headers()
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and friends: the answer follows
            conn = headers.get("connection", "").lower()
            self._keep_alive = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
            no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            self.body = BodyReader(self._reader, headers, no_body)
            if self.body.until_close:
                self._keep_alive = False
            return status, headers

    async def _read_headers(self) -> Dict[str, str]:
        headers: Dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = await self._reader.readline()
            if not line:
                raise ConnectionError("the node closed the connection in the middle of an answer's headers")
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ConnectionError(f"not an HTTP header line: {line[:100]!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raise ConnectionError(f"an answer with more than {_MAX_HEADERS} headers")


class BodyReader:
    """The body of one answer, read as it comes: by its Content-Length, chunked, or up to
    the close of the connection."""

    def __init__(self, reader: asyncio.StreamReader, headers: Mapping[str, str], no_body: bool) -> None:
        self._reader = reader
        self._chunked = False
        self._left: Optional[int] = 0  # bytes left (of the current chunk when chunked)
        self.until_close = False
        self.done = False
        if no_body:
            self.done = True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise ConnectionError(f"a bad Content-Length: {headers['content-length']!r}") from None
            self.done = self._left == 0
        else:
            self._left = None
            self.until_close = True

    async def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes of the body (the rest when -1); b"" at its end. A body cut
        short raises ConnectionError."""
        if size < 0:
            return await self.read_all()
        while not self.done:
            if self._chunked and self._left == 0:
                await self._next_chunk()
                continue
            if self._left is None:  # up to the close
                block = await self._reader.read(size)
                if not block:
                    self.done = True
                return block
            block = await self._reader.read(min(size, self._left))
            if not block:
                raise ConnectionError(f"the node closed the connection {self._left} bytes before the end of the body")
            self._left -= len(block)
            if self._left == 0:
                if self._chunked:
                    await self._chunk_end()
                else:
                    self.done = True
            return block
        return b""

    async def read_all(self) -> bytes:
        parts: List[bytes] = []
        while True:
            block = await self.read(1 << 20)
            if not block:
                return b"".join(parts)
            parts.append(block)

    async def _next_chunk(self) -> None:
        line = await self._reader.readline()
        if not line:
            raise ConnectionError("the node closed the connection in the middle of a chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ConnectionError(f"a bad chunk size line: {line[:100]!r}") from None
        if size == 0:
            while True:  # trailers, up to the blank line
                line = await self._reader.readline()
                if not line or line in (b"\r\n", b"\n"):
                    break
            self.done = True
        else:
            self._left = size

    async def _chunk_end(self) -> None:
        line = await self._reader.readline()
        if line not in (b"\r\n", b"\n"):
            raise ConnectionError(f"a chunk not followed by CRLF: {line[:100]!r}")


def _token(name: str) -> str:
    if not name or any(c in name for c in " \t\r\n:"):
        raise ValueError(f"not a header name: {name!r}")
    return name


def _value(value: str) -> str:
    value = str(value)
    if "\r" in value or "\n" in value:
        raise ValueError(f"a header value cannot hold a line break: {value!r}")
    return value
