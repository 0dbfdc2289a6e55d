"""Config files: a bad file is rejected with file, line and field; a good one loads typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import CollectorConfig
from gatewatch.configfile import ConfigError, load_config
from sidecar_gateway.config import GatewayConfig

GOOD = """\
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9901
routes:
  - name: users
    path_prefix: /api/users
    upstreams:
      - address: 127.0.0.1:8081
        weight: 3
      - address: 127.0.0.1:8082
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_good_gateway_config_loads_typed(tmp_path: Path) -> None:
    cfg = load_config(GatewayConfig, write(tmp_path, GOOD))
    assert cfg.routes[0].upstreams[0].weight == 3
    assert cfg.routes[0].upstreams[1].weight == 1
    assert cfg.routes[0].timeouts.response == 30.0
    assert cfg.instance_name == "127.0.0.1:8080"


def test_bad_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("weight: 3", "weight: -3"))
    with pytest.raises(ConfigError) as exc:
        load_config(GatewayConfig, path)
    message = str(exc.value)
    assert f"{path}:8: routes.0.upstreams.0.weight:" in message
    assert "greater than or equal to 1" in message


def test_unknown_key_is_rejected_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "    retries: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(GatewayConfig, path)
    assert f"{path}:10: routes.0.retries: Extra inputs are not permitted" in str(exc.value)


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    path_prefix: /api/users\n", ""))
    with pytest.raises(ConfigError) as exc:
        load_config(GatewayConfig, path)
    assert f"{path}:4: routes.0.path_prefix: Field required" in str(exc.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("        weight: 3", "        weight: [3"))
    with pytest.raises(ConfigError) as exc:
        load_config(GatewayConfig, path)
    assert str(exc.value).startswith(f"{path}:9: invalid YAML")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("127.0.0.1:9901", "nowhere").replace("weight: 3", "weight: x"))
    with pytest.raises(ConfigError) as exc:
        load_config(GatewayConfig, path)
    fields = [p.field for p in exc.value.problems]
    assert fields == ["admin_listen", "routes.0.upstreams.0.weight"]
    assert [p.line for p in exc.value.problems] == [2, 8]


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(CollectorConfig, tmp_path / "absent.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(CollectorConfig, path)


def test_duplicate_route_and_reserved_name(tmp_path: Path) -> None:
    dup = GOOD + GOOD.split("routes:\n")[1]
    with pytest.raises(
        ConfigError, match=r"gateway.yaml:10: routes.1.name: route name 'users' is already used by routes.0"
    ):
        load_config(GatewayConfig, write(tmp_path, dup))
    with pytest.raises(ConfigError, match="reserved"):
        load_config(GatewayConfig, write(tmp_path, GOOD.replace("name: users", "name: unmatched")))


def test_relative_paths_are_relative_to_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)  # elsewhere than the file
    gateway = folder / "gateway.yaml"
    gateway.write_text(
        GOOD + "telemetry:\n  access_log: {path: logs/access.ndjson}\n"
        "  collector: {url: 'http://127.0.0.1:9300/v1/events', spool_dir: ../spool}\n"
    )
    cfg = load_config(GatewayConfig, Path("etc/gateway.yaml"))
    assert cfg.telemetry.access_log.path == "etc/logs/access.ndjson"
    assert cfg.telemetry.collector is not None
    assert cfg.telemetry.collector.spool_dir == Path("etc/../spool")
    collector = folder / "collector.yaml"
    collector.write_text("store: {path: data/events.sqlite3}\n")
    assert load_config(CollectorConfig, collector).store.path == folder / "data" / "events.sqlite3"
    collector.write_text("store: {retention_days: 3}\n")  # the default path, too
    assert load_config(CollectorConfig, collector).store.path == folder / "var/collector/events.sqlite3"
    # absolute paths and "-" (stdout) are kept as they are
    sink = f"{{url: 'http://h:1/', spool_dir: {tmp_path}}}"
    gateway.write_text(GOOD + f"telemetry:\n  access_log: {{path: '-'}}\n  collector: {sink}\n")
    cfg = load_config(GatewayConfig, gateway)
    assert cfg.telemetry.access_log.path == "-"
    assert cfg.telemetry.collector is not None and cfg.telemetry.collector.spool_dir == tmp_path
