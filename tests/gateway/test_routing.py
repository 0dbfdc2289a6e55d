import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_gateway.routing import Router, normalize_path, prefix_form, prefix_matches, strip_prefix

segment = st.text(alphabet="abcxyz-_.0", min_size=1, max_size=5)
paths = st.lists(segment, min_size=0, max_size=5).map(lambda parts: "/" + "/".join(parts))


def test_longest_prefix_wins_regardless_of_config_order() -> None:
    router = Router([("/", "root"), ("/api/users", "users"), ("/api", "api")])
    assert router.match("/api/users/7") == "users"
    assert router.match("/api/orders") == "api"
    assert router.match("/static/x.css") == "root"


def test_prefix_matches_whole_segments_only() -> None:
    router = Router([("/api", "api")])
    assert router.match("/api") == "api"
    assert router.match("/api/") == "api"
    assert router.match("/api/v1") == "api"
    assert router.match("/apix") is None
    assert router.match("/ap") is None


def test_trailing_slash_prefix_and_root() -> None:
    assert prefix_matches("/api/", "/api/x")
    assert not prefix_matches("/api/", "/api")
    assert prefix_matches("/", "/anything/at/all")


def test_unknown_path_is_none() -> None:
    assert Router([("/a", 1)]).match("/b") is None


@given(st.lists(paths, min_size=1, max_size=6, unique=True), paths)
def test_match_is_the_longest_matching_prefix(prefixes: list[str], path: str) -> None:
    router = Router([(p, p) for p in prefixes])
    candidates = [p for p in prefixes if prefix_matches(p, path)]
    got = router.match(path)
    if not candidates:
        assert got is None
    else:
        assert got is not None and len(got) == max(len(c) for c in candidates)


def test_strip_prefix() -> None:
    assert strip_prefix("/api", b"/api/users?x") == b"/users?x"
    assert strip_prefix("/api", b"/api") == b"/"
    assert strip_prefix("/api/", b"/api/users") == b"/users"
    assert strip_prefix("/", b"/x") == b"/x"


# ---- path normalisation ---------------------------------------------------------------------------


def test_normalize_path_decodes_unreserved_escapes_and_upper_cases_the_rest() -> None:
    assert normalize_path(b"/r%61w/x") == b"/raw/x"
    assert normalize_path(b"/%7e%7E%41%2d%5F%2e") == b"/~~A-_."
    assert normalize_path(b"/caf%c3%a9/a%20b") == b"/caf%C3%A9/a%20b"
    assert normalize_path(b"/x%3f%23") == b"/x%3F%23"  # reserved: stays encoded


def test_an_encoded_slash_stays_encoded_and_is_not_a_segment_boundary() -> None:
    assert normalize_path(b"/raw%2fsecret") == b"/raw%2Fsecret"
    assert normalize_path(b"/demo%2f..%2fraw/x") == b"/demo%2F..%2Fraw/x"  # one segment, not ".."
    router = Router([("/raw", "raw"), ("/demo", "demo"), ("/", "root")])
    assert router.match(normalize_path(b"/raw%2fsecret").decode()) == "root"
    assert router.match(normalize_path(b"/demo%2f..%2fraw/x").decode()) == "root"


def test_dot_segments_are_removed_also_when_encoded() -> None:
    assert normalize_path(b"/a/b/../c") == b"/a/c"
    assert normalize_path(b"/a/./b/.") == b"/a/b/"
    assert normalize_path(b"/a/b/..") == b"/a/"
    assert normalize_path(b"/../../x") == b"/x"  # never above the root
    assert normalize_path(b"/..") == b"/"
    assert normalize_path(b"/a//../b") == b"/a/b"  # the empty segment is the one removed
    assert normalize_path(b"/demo/%2e%2E/raw/x") == b"/raw/x"
    assert normalize_path(b"/demo/.%2e/raw") == b"/raw"
    assert normalize_path(b"/.well-known/..x/...") == b"/.well-known/..x/..."  # not dot segments


def test_a_stray_percent_is_encoded_so_decoding_cannot_make_a_new_escape() -> None:
    assert normalize_path(b"/x%") == b"/x%25"
    assert normalize_path(b"/x%4g") == b"/x%254g"
    # %32 and %66 decode to "2f": after a bare '%' that would read as an encoded slash.
    assert normalize_path(b"/%%32%66") == b"/%252f"


def test_a_path_with_nothing_to_normalise_is_returned_as_is() -> None:
    for raw in (b"/", b"/api/users/7", b"/a//b/", b"/x.y/z."):
        assert normalize_path(raw) is raw


def test_prefix_form_puts_a_configured_prefix_in_request_form() -> None:
    assert prefix_form("/raw") == "/raw"
    assert prefix_form("/caf\u00e9") == "/caf%C3%A9"
    assert prefix_form("/a b/") == "/a%20b/"
    assert prefix_form("/a%20b") == "/a%2520b"  # a prefix is text as the client means it
    assert prefix_form("/x;v=1/@me") == "/x;v=1/@me"
    router = Router([(prefix_form("/caf\u00e9"), "cafe")])
    assert router.match(normalize_path(b"/caf%c3%a9/menu").decode()) == "cafe"


def _rfc_remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, transcribed rule by rule (an independent check of the segment version)."""
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = "/" + inp[4:]
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp == "/..":
            inp = "/"
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp in (".", ".."):
            inp = ""
        else:
            cut = inp.find("/", 1)
            cut = len(inp) if cut == -1 else cut
            out, inp = out + inp[:cut], inp[cut:]
    return out


# Escapes of every kind: unreserved (decoded; %32 %66 %46 decode to hex digits), reserved,
# non-ASCII, the escape character itself, and '%' that starts no escape.
_escapes = st.sampled_from(
    ["%2e", "%2E", "%2f", "%2F", "%41", "%7e", "%32", "%66", "%46", "%20", "%c3%a9", "%25", "%", "%4", "%zz"]
)
_pieces = st.lists(
    st.sampled_from(["/", ".", "..", "a", "B", "2", "-", "~", ":", "@"]) | _escapes, max_size=14
)
raw_paths = _pieces.map(lambda parts: ("/" + "".join(parts)).encode())


@settings(max_examples=1000)
@given(raw_paths)
def test_normalize_path_is_idempotent(raw: bytes) -> None:
    once = normalize_path(raw)
    assert normalize_path(once) == once


UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@given(raw_paths)
def test_normalized_paths_have_no_dot_segments_and_only_canonical_escapes(raw: bytes) -> None:
    out = normalize_path(raw)
    assert out.startswith(b"/")
    assert not {b".", b".."} & set(out.split(b"/")[1:])
    # Every '%' starts an upper-case escape of a byte that needs one.
    for escape in re.findall(rb"%(.?.?)", out):
        assert re.fullmatch(rb"[0-9A-F]{2}", escape), out
        assert int(escape, 16) not in UNRESERVED, out


def _decode_unreserved(raw: bytes) -> bytes:
    """Stray '%' encoded, unreserved escapes decoded, the others upper case (RFC 3986 6.2.2)."""

    def one(m: re.Match[bytes]) -> bytes:
        byte = int(m[1], 16)
        return bytes((byte,)) if byte in UNRESERVED else b"%" + m[1].upper()

    return re.sub(rb"%([0-9A-Fa-f]{2})", one, re.sub(rb"%(?![0-9A-Fa-f]{2})", b"%25", raw))


@given(raw_paths)
def test_normalize_path_removes_dot_segments_as_rfc_3986_does(raw: bytes) -> None:
    assert normalize_path(raw).decode() == _rfc_remove_dot_segments(_decode_unreserved(raw).decode())
