"""Header rules for forwarding a request or response. Pure: no I/O, no globals.

- hop-by-hop headers (RFC 9110 7.6.1) never cross the proxy, nor any header a Connection
  header names;
- X-Forwarded-For is believed only when the peer is a trusted proxy, and then the rightmost
  untrusted address is the client (everything left of it could be forged by that client);
- X-Request-ID is kept when it is short and made of safe characters, otherwise replaced.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence

from gatewatch.events import normalise_ip

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")

Header = tuple[bytes, bytes]


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})

# Transfer-Encoding is hop-by-hop, but in an upstream response as UpstreamConnection.headers has
# it, it names only the codings still on the body (the chunked framing is undone and not listed
# there): the client must be told, or it takes gzip bytes for the content.
_RESPONSE_HOP_BY_HOP = HOP_BY_HOP - {b"transfer-encoding"}


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """Header names listed in Connection headers (lower case)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            if value in _PLAIN_CONNECTION:
                continue  # the usual value names only hop-by-hop headers anyway
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def is_hop_by_hop(name: bytes, named: frozenset[bytes] = frozenset()) -> bool:
    lower = name.lower()
    return lower in HOP_BY_HOP or lower.startswith(b"proxy-") or lower in named


def strip_hop_by_hop(headers: Sequence[Header]) -> list[Header]:
    """The headers that may be forwarded, in their original order."""
    named = connection_tokens(headers)
    return [(n, v) for n, v in headers if not is_hop_by_hop(n, named)]


def strip_response_hop_by_hop(headers: Sequence[Header]) -> list[Header]:
    """Like :func:`strip_hop_by_hop` for an upstream response's headers (names lower case),
    except that Transfer-Encoding is kept: there it names the codings left on the body.

    One pass (this runs for every response): a Connection header that names more than the
    usual keep-alive/close triggers a second, filtering pass.
    """
    out: list[Header] = []
    named: frozenset[bytes] | None = None
    for header in headers:
        name = header[0]
        if name in _RESPONSE_HOP_BY_HOP:
            if name == b"connection" and header[1] not in _PLAIN_CONNECTION:
                named = connection_tokens(headers)
            continue
        if name[:6] == b"proxy-":
            continue
        out.append(header)
    if named:
        out = [h for h in out if h[0] not in named or h[0] == b"transfer-encoding"]
    return out


def sane_request_id(value: bytes | None) -> bool:
    return value is not None and _REQUEST_ID_RE.fullmatch(value) is not None


class _RequestIds:
    """32 hex digits: a random per-process prefix and a counter. Unique without a syscall per
    request (os.urandom is one, and syscalls are what a proxy's CPU goes to)."""

    __slots__ = ("_next", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._next = int.from_bytes(os.urandom(4), "big")

    def new(self) -> bytes:
        self._next += 1
        return f"{self._prefix}{self._next & 0xFFFFFFFFFFFFFFFF:016x}".encode()


new_request_id = _RequestIds().new


class IncomingRequest:
    """What the proxy needs from the client's headers, split in one pass.

    A plain slotted class: built once per request, and a dataclass with default factories
    costs twice as much to construct.
    """

    __slots__ = ("chunked", "content_length", "forward", "forwarded_for", "forwarded_proto", "host",
                 "request_id", "user_agent")  # fmt: skip

    def __init__(self) -> None:
        self.forward: list[Header] = []  # end-to-end headers to pass on as-is
        self.forwarded_for: list[bytes] = []  # X-Forwarded-For values, in order
        self.forwarded_proto: bytes | None = None
        self.request_id: bytes | None = None
        self.user_agent: bytes | None = None
        self.content_length: bytes | None = None
        self.chunked = False
        self.host: bytes | None = None


# Headers the proxy rewrites itself; Expect is answered by the front server (100-continue).
_REWRITTEN = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-request-id", b"content-length", b"expect"}
)


def split_request_headers(headers: Sequence[Header]) -> IncomingRequest:
    """Split lower-case ASGI request headers into forwarded ones and the ones the proxy sets."""
    out = IncomingRequest()
    named: frozenset[bytes] = frozenset()
    for name, _ in headers:
        if name == b"connection":
            named = connection_tokens(headers)
            break
    forward = out.forward
    for name, value in headers:
        if name in HOP_BY_HOP or name in named or name.startswith(b"proxy-") or name in _REWRITTEN:
            if name == b"transfer-encoding":
                out.chunked = b"chunked" in value.lower()
            elif name == b"x-forwarded-for":
                out.forwarded_for.append(value)
            elif name == b"x-request-id":
                out.request_id = value
            elif name == b"content-length":
                out.content_length = value
            elif name == b"x-forwarded-proto":
                out.forwarded_proto = value
            continue
        if name == b"user-agent":
            out.user_agent = value
        elif name == b"host":
            out.host = value
        forward.append((name, value))
    return out


def append_forwarded_for(values: Sequence[bytes], peer: str) -> bytes:
    """The X-Forwarded-For value to send upstream: what came in, plus the peer."""
    if not values:
        return peer.encode()
    return b", ".join((*values, peer.encode()))


class TrustedProxies:
    """A set of CIDRs whose X-Forwarded-For claims are believed. Lookups are cached."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        self._cache: dict[str, bool] = {}
        self._direct: dict[str, str] = {}  # peer -> client IP when no X-Forwarded-For came

    def client_ip(self, peer: str | None, forwarded_for: Sequence[bytes]) -> str:
        """:func:`client_ip` with the common case (no X-Forwarded-For) cached per peer."""
        if forwarded_for or peer is None:
            return client_ip(peer, forwarded_for, self)
        hit = self._direct.get(peer)
        if hit is None:
            hit = client_ip(peer, (), self)
            if len(self._direct) >= 4096:
                self._direct.clear()
            self._direct[peer] = hit
        return hit

    def __contains__(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is not None:
            return hit
        try:
            addr = ipaddress.ip_address(normalise_ip(ip))
        except ValueError:
            result = False
        else:
            result = any(addr in net for net in self._networks)
        if len(self._cache) >= 4096:  # bounded: peers are attacker-chosen
            self._cache.clear()
        self._cache[ip] = result
        return result


def _normalised_or_none(value: str) -> str | None:
    try:
        return normalise_ip(value)
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: Sequence[bytes], trusted: TrustedProxies) -> str:
    """The client address: the peer, or - through trusted proxies - the rightmost untrusted hop.

    A malformed entry stops the walk: the nearest address we could still vouch for wins.
    """
    current = _normalised_or_none(peer) if peer else None
    if current is None:
        return "0.0.0.0"
    if current not in trusted:
        return current
    hops = [h.strip() for v in forwarded_for for h in v.decode("latin-1").split(",")]
    for raw in reversed(hops):
        if not raw:
            continue
        addr = _normalised_or_none(_strip_port(raw))
        if addr is None:
            return current
        current = addr
        if addr not in trusted:
            return addr
    return current


def _strip_port(value: str) -> str:
    """Some proxies write ``1.2.3.4:5678`` or ``[::1]:5678``; keep the address."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value
