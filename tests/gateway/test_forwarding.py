import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from sidecar_gateway.forwarding import (
    TrustedProxies,
    append_forwarded_for,
    client_ip,
    new_request_id,
    sane_request_id,
    split_request_headers,
    strip_hop_by_hop,
    strip_response_hop_by_hop,
)

HOP = [
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
]
names = st.sampled_from(
    [b"accept", b"x-custom", b"cookie", b"x-foo", b"x-bar", b"host", *HOP, b"proxy-whatever"]
)
values = st.binary(min_size=0, max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)
header_lists = st.lists(st.tuples(names, values), max_size=12)


def test_strip_removes_hop_by_hop_and_connection_named_headers() -> None:
    headers = [
        (b"Connection", b"keep-alive, X-Secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Secret", b"1"),
        (b"TE", b"trailers"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"Proxy-Authorization", b"Basic x"),
        (b"Accept", b"*/*"),
        (b"X-Kept", b"2"),
    ]
    assert strip_hop_by_hop(headers) == [(b"Accept", b"*/*"), (b"X-Kept", b"2")]


@given(header_lists)
def test_strip_keeps_exactly_the_end_to_end_headers_in_order(headers: list[tuple[bytes, bytes]]) -> None:
    named = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",") if t.strip()}
    expected = [(n, v) for n, v in headers if n not in HOP and not n.startswith(b"proxy-") and n not in named]
    assert strip_hop_by_hop(headers) == expected
    # In an upstream response, Transfer-Encoding names the codings still on the body (the
    # upstream connection undid chunked and left it out), which the client must be told.
    kept = [(n, v) for n, v in headers if n == b"transfer-encoding" or (n, v) in expected]
    assert strip_response_hop_by_hop(headers) == kept


@given(header_lists)
def test_split_request_headers_forwards_no_hop_by_hop(headers: list[tuple[bytes, bytes]]) -> None:
    got = split_request_headers(headers).forward
    named = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",") if t.strip()}
    for n, _ in got:
        assert n not in HOP and not n.startswith(b"proxy-") and n not in named


def test_split_request_headers_picks_out_what_the_proxy_rewrites() -> None:
    got = split_request_headers(
        [
            (b"host", b"example"),
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"x-forwarded-for", b"5.6.7.8"),
            (b"x-request-id", b"abc"),
            (b"user-agent", b"ua"),
            (b"content-length", b"3"),
            (b"expect", b"100-continue"),
            (b"transfer-encoding", b"chunked"),
        ]
    )
    assert got.forward == [(b"host", b"example"), (b"user-agent", b"ua")]
    assert got.forwarded_for == [b"1.2.3.4", b"5.6.7.8"]
    assert (got.request_id, got.user_agent, got.content_length, got.chunked) == (b"abc", b"ua", b"3", True)


TRUSTED = TrustedProxies(["10.0.0.0/8", "127.0.0.0/8", "::1/128"])


def test_untrusted_peer_is_the_client_whatever_xff_says() -> None:
    assert client_ip("203.0.113.9", [b"1.1.1.1"], TRUSTED) == "203.0.113.9"


def test_rightmost_untrusted_address_wins() -> None:
    # client 198.51.100.7 forged "6.6.6.6"; then went through two of our proxies.
    xff = [b"6.6.6.6, 198.51.100.7, 10.0.0.2"]
    assert client_ip("10.0.0.1", xff, TRUSTED) == "198.51.100.7"


def test_multiple_xff_headers_are_one_list() -> None:
    assert client_ip("127.0.0.1", [b"6.6.6.6", b"198.51.100.7"], TRUSTED) == "198.51.100.7"


def test_all_trusted_gives_the_leftmost() -> None:
    assert client_ip("127.0.0.1", [b"10.1.1.1, 10.2.2.2"], TRUSTED) == "10.1.1.1"


def test_garbage_hop_stops_at_the_last_vouched_address() -> None:
    assert client_ip("127.0.0.1", [b"1.2.3.4, not-an-ip, 10.0.0.5"], TRUSTED) == "10.0.0.5"


def test_addresses_are_normalised() -> None:
    assert client_ip("::ffff:127.0.0.1", [b"::ffff:198.51.100.7"], TRUSTED) == "198.51.100.7"
    assert client_ip("::1", [b"[2001:db8::1]:443"], TRUSTED) == "2001:db8::1"
    assert client_ip("127.0.0.1", [b"198.51.100.7:5555"], TRUSTED) == "198.51.100.7"
    assert TRUSTED.client_ip("::ffff:203.0.113.1", []) == "203.0.113.1"


def test_no_peer_is_unspecified_address() -> None:
    assert client_ip(None, [b"1.2.3.4"], TRUSTED) == "0.0.0.0"


ipv4 = st.ip_addresses(v=4).map(str)


@given(st.lists(ipv4, min_size=1, max_size=6), ipv4)
def test_result_is_always_an_address_from_the_chain(chain: list[str], peer: str) -> None:
    got = client_ip(peer, [", ".join(chain).encode()], TRUSTED)
    assert got in [*chain, peer]
    ipaddress.ip_address(got)
    # Everything to the right of the answer is trusted.
    full = [*chain, peer]
    idx = len(full) - 1 - full[::-1].index(got)
    assert all(a in TRUSTED for a in full[idx + 1 :])


def test_append_forwarded_for() -> None:
    assert append_forwarded_for([], "1.2.3.4") == b"1.2.3.4"
    assert append_forwarded_for([b"a", b"b"], "c") == b"a, b, c"


def test_request_id_rules() -> None:
    assert sane_request_id(b"0f8fad5b-d9cb-469f-a165-70867728950e")
    assert not sane_request_id(b"")
    assert not sane_request_id(b"x" * 129)
    assert not sane_request_id(b"bad id with spaces")
    assert not sane_request_id(b'"><script>')
    rid = new_request_id()
    assert sane_request_id(rid) and len(rid) == 32 and rid != new_request_id()
