"""The W3C trace context a client view sends with its calls (docs/traces.md): checking a
`traceparent` as the node does, reading one from a request's headers, and adding the
headers to a call. No I/O; both clients use it, so they cannot drift apart.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Mapping, NamedTuple, Optional, TypeVar

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_HEX = frozenset("0123456789abcdef")


class Trace(NamedTuple):
    """A trace to join: the `traceparent` naming the caller's span, and its `tracestate`
    (vendor data, passed along unchanged), both as sent on the wire."""

    traceparent: str
    tracestate: Optional[str] = None

    def headers(self) -> Dict[str, str]:
        """The headers that carry it."""
        out = {TRACEPARENT: self.traceparent}
        if self.tracestate is not None:
            out[TRACESTATE] = self.tracestate
        return out


def well_formed(traceparent: str) -> bool:
    """Whether the node takes `traceparent` (the W3C rules the node checks): version 00
    and exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, neither id all zeros; a
    later version (not ff) may carry more after a "-"."""
    v = traceparent
    if len(v) < 55 or v[2] != "-" or v[35] != "-" or v[52] != "-" or (len(v) > 55 and v[55] != "-"):
        return False
    if not all(c in _HEX for c in v[:2] + v[3:35] + v[36:52] + v[53:55]):
        return False
    version = v[:2]
    if version == "ff" or (version == "00" and len(v) != 55):
        return False
    return v[3:35] != "0" * 32 and v[36:52] != "0" * 16


def _header_safe(value: str) -> bool:
    return all(" " <= c <= "~" or c == "\t" for c in value)


def trace(traceparent: Optional[str], tracestate: Optional[str] = None) -> Optional[Trace]:
    """The trace a program asks to join → Trace, None when `traceparent` is None (an
    untraced view). A malformed `traceparent`, or a `tracestate` that is not one line of
    printable ASCII or that comes without a `traceparent`, raises ValueError: the node
    would ignore it and the calls would silently be left out of the trace."""
    if traceparent is None:
        if tracestate is not None:
            raise ValueError("a tracestate needs the traceparent it goes with")
        return None
    if not isinstance(traceparent, str) or not well_formed(traceparent):
        raise ValueError(f"not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lowercase, "
                         f"ids not all zero): {traceparent!r}")
    if tracestate is not None and (not isinstance(tracestate, str) or not _header_safe(tracestate)):
        raise ValueError(f"a tracestate is one line of printable ASCII: {tracestate!r}")
    return Trace(traceparent, tracestate)


def _header(headers: Any, name: str) -> Optional[str]:
    """Header `name` of any mapping-like collection of headers, found whatever the case
    of its name: Flask's and Werkzeug's `request.headers`, http.server's
    `self.headers`, a plain dict, a list of pairs."""
    get = getattr(headers, "get", None)
    if get is not None:
        for key in (name, name.title(), name.upper()):
            value = get(key)
            if value is not None:
                return str(value)
    items = headers.items() if hasattr(headers, "items") else headers
    for key, value in items:
        if str(key).lower() == name:
            return str(value)
    return None


def from_headers(headers: Any) -> Optional[Trace]:
    """The trace of an incoming request (a member's request, a pushed batch's POST)
    from its headers → Trace, None when it carries no well-formed `traceparent` (as
    the W3C recommendation says, a malformed one is ignored, and its `tracestate`
    with it: a request from outside does not make the member fail)."""
    traceparent = _header(headers, TRACEPARENT)
    if traceparent is None or not well_formed(traceparent.strip()):
        return None
    tracestate = _header(headers, TRACESTATE)
    if tracestate is not None and not _header_safe(tracestate):
        tracestate = None
    return Trace(traceparent.strip(), tracestate)


def with_trace(trace: Optional[Trace], headers: Mapping[str, str]) -> Dict[str, str]:
    """`headers` with the trace's added, unless they name a `traceparent` of their own
    (a call passing one by hand, a reply carrying its message's): then they are left as
    they are, `tracestate` included."""
    out = dict(headers)
    if trace is not None and not any(k.lower() == TRACEPARENT for k in out):
        out.update(trace.headers())
    return out


V = TypeVar("V", bound="TraceViews")


class TraceViews:
    """What `Client` and `AsyncClient` share for traces: views of the client that send
    a trace context with every call."""

    _trace: Optional[Trace] = None

    @property
    def trace(self) -> Optional[Trace]:
        """The trace this client's calls join, None when they are not traced."""
        return self._trace

    def traced(self: V, traceparent: Optional[str], tracestate: Optional[str] = None) -> V:
        """A view of this client whose every call carries `traceparent` (and
        `tracestate`), so that the node records it as a span of that trace, the span
        named by `traceparent` its parent: a call to a service, a publish (whose messages
        then carry the trace to their consumers), a fetch, ack, reply, store or cache
        call. The view shares the client's connections, token and timeout; closing
        either closes them for both. `traceparent=None` gives an untraced view, so a
        consumer can write `client.traced(message.traceparent)` for any message. A
        malformed `traceparent` raises ValueError (the node would ignore it)."""
        return self._view(trace(traceparent, tracestate))

    def traced_from(self: V, headers: Any) -> V:
        """The view of `traced` for the request being served, from its headers
        (Flask's `request.headers`, http.server's `self.headers`, a dict): the calls
        join the trace strata handed the member. Untraced when the headers carry no
        well-formed `traceparent` (a malformed one is ignored, not an error)."""
        return self._view(from_headers(headers))

    def _view(self: V, trace: Optional[Trace]) -> V:
        view = copy.copy(self)
        view._trace = trace
        return view
