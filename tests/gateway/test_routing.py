from hypothesis import given
from hypothesis import strategies as st

from sidecar_gateway.routing import Router, prefix_matches, strip_prefix

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
