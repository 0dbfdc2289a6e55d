"""Every kind of config-file mistake, through the real CLI: a non-zero exit naming file, line and
field, never a traceback and never a hang (a YAML alias bomb must be refused, not expanded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from collector.config import CollectorConfig
from gatewatch.configfile import ConfigError, load_config
from tests.support.procs import gatewatch_cmd

ROUTE = "  - name: {name}\n    path_prefix: {prefix}\n    upstreams: [{{address: 127.0.0.1:9}}]\n"
GATEWAY = "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9901\nroutes:\n" + ROUTE.format(
    name="a", prefix="/a"
)

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def run_cli(command: str, path: Path) -> subprocess.CompletedProcess[str]:
    # The timeout is a hang detector, not a timing assertion: every case here exits in about a second.
    return subprocess.run(
        gatewatch_cmd(command, "--config", str(path)), capture_output=True, text=True, timeout=30
    )


def refused(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


# (name, command, file content, expected text after "<path>")
CASES: list[tuple[str, str, bytes, str]] = [
    ("billion_laughs", "collector", LAUGHS.encode(), ":6: invalid YAML: aliases expand to more than"),
    (
        "laughs_in_a_list_field",
        "gateway",
        (GATEWAY + LAUGHS + "trusted_proxies: *i\n").encode(),
        ":12: invalid YAML: aliases expand",
    ),
    ("deep_nesting", "collector", b"store: " + b"[" * 5000 + b"]" * 5000 + b"\n", ":1: invalid YAML: nested"),
    (
        "duplicate_key",
        "collector",
        b"listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
        ":2: listen: duplicate key",
    ),
    (
        "duplicate_nested_key",
        "gateway",
        GATEWAY.replace("    path_prefix: /a\n", "    path_prefix: /a\n    path_prefix: /b\n").encode(),
        ":6: routes.0.path_prefix: duplicate key",
    ),
    ("empty_file", "collector", b"", ":1: the file is empty"),
    ("comment_only", "gateway", b"# nothing here\n", ":1: the file is empty"),
    ("tab_indent", "collector", b"store:\n\tpath: x\n", ":2: invalid YAML"),
    (
        "not_utf8",
        "collector",
        b"# ok\nlisten: \xff\xfe\n",
        ":2: config file is not UTF-8: invalid start byte at byte 13",
    ),
    (
        "ipv6_without_brackets",
        "collector",
        b"listen: '::1:9300'\n",
        ":1: listen: Value error, expected host:port",
    ),
    ("space_in_host", "collector", b"listen: 'a b:9300'\n", ":1: listen: Value error, expected host:port"),
    (
        "non_ascii_port",
        "collector",
        "listen: '127.0.0.1:٩٣٠٠'\n".encode(),
        ":1: listen: Value error, expected host:port",
    ),
    (
        "port_out_of_range",
        "gateway",
        GATEWAY.replace("127.0.0.1:9}", "127.0.0.1:70000}").encode(),
        ":6: routes.0.upstreams.0.address: Value error",
    ),
    (
        "wrong_type",
        "collector",
        b"max_body_bytes: lots\n",
        ":1: max_body_bytes: Input should be a valid integer",
    ),
    (
        "unknown_key",
        "gateway",
        (GATEWAY + "colour: red\n").encode(),
        ":7: colour: Extra inputs are not permitted",
    ),
    ("empty_routes", "gateway", b"routes: []\n", ":1: routes: List should have at least 1 item"),
    ("no_routes", "gateway", b"listen: 127.0.0.1:8080\n", ":1: routes: Field required"),
]


@pytest.mark.parametrize(("name", "command", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_cli_refuses_a_bad_config_with_file_line_and_field(
    tmp_path: Path, name: str, command: str, content: bytes, expected: str
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    assert f"{path}{expected}" in refused(run_cli(command, path))


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert f"{tmp_path}: cannot read config file: Is a directory" in refused(run_cli("gateway", tmp_path))


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("listen: 127.0.0.1:9300\n# " + "x" * (2 * 1024 * 1024) + "\n")
    assert f"{path}: config file is larger than" in refused(run_cli("collector", path))


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    # Aliases are fine in moderation: only an explosion is refused.
    path = tmp_path / "ok.yaml"
    path.write_text(
        "defaults: &d {retention_days: 3}\nstore:\n  <<: *d\n  path: x.sqlite3\n".replace("defaults", "x-d")
    )
    with pytest.raises(ConfigError) as exc:
        load_config(CollectorConfig, path)
    # The anchor's own key is unknown to the model; the merged store section is fine.
    assert [p.field for p in exc.value.problems] == ["x-d"]
    path.write_text("store: &s\n  path: x.sqlite3\n  retention_days: 3\n")
    assert load_config(CollectorConfig, path).store.retention_days == 3


def test_bracketed_ipv6_and_hostnames_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    for listen in ("'[::1]:9300'", "0.0.0.0:9300", "collector:9300", "my_host.example-1.org:1"):
        path.write_text(f"listen: {listen}\n")
        assert load_config(CollectorConfig, path).listen == listen.strip("'")


def test_duplicate_route_name_names_the_second_route(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY + ROUTE.format(name="a", prefix="/b"))
    assert f"{path}:7: routes.1.name:" in refused(run_cli("gateway", path))


@pytest.mark.parametrize("same", ["/a", "/a/", "/a/.", "/b/../a", "/x/./../a"])
def test_duplicate_path_prefix_is_refused_in_any_spelling(tmp_path: Path, same: str) -> None:
    # Requests are routed on the normalised path, so these all route exactly what "/a" does.
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY + ROUTE.format(name="b", prefix=same))
    assert f"{path}:8: routes.1.path_prefix:" in refused(run_cli("gateway", path))


def test_listen_and_admin_listen_must_differ(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY.replace("127.0.0.1:9901", "127.0.0.1:8080"))
    assert f"{path}:2: admin_listen:" in refused(run_cli("gateway", path))


def test_a_model_validator_can_blame_a_field_with_field_value_error(tmp_path: Path) -> None:
    from pydantic import BaseModel, model_validator

    from gatewatch.configfile import FieldValueError

    class Item(BaseModel):
        name: str

    class Items(BaseModel):
        items: list[Item]

        @model_validator(mode="after")
        def _unique(self) -> Items:
            names = [i.name for i in self.items]
            for index, name in enumerate(names):
                if name in names[:index]:
                    raise FieldValueError(("items", index, "name"), f"name {name!r} is used twice")
            return self

    path = tmp_path / "items.yaml"
    path.write_text("items:\n  - name: a\n  - name: b\n  - name: a\n")
    with pytest.raises(ConfigError) as exc:
        load_config(Items, path)
    assert str(exc.value) == f"{path}:4: items.2.name: name 'a' is used twice"


@pytest.mark.parametrize("store_path", ['""', "{tmp}"])
def test_store_path_must_name_a_file(tmp_path: Path, store_path: str) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(f"listen: 127.0.0.1:9300\nstore:\n  path: {store_path.format(tmp=tmp_path)}\n")
    stderr = refused(run_cli("collector", path))
    assert f"{path}:3: store.path: Value error, " in stderr
    assert "is a directory: give the path of the SQLite file" in stderr
