"""docker-compose.yml and deploy/: every file it mounts exists and every config it runs loads."""

from __future__ import annotations

from pathlib import Path

import yaml

from collector.config import CollectorConfig
from gatewatch.cli import build_parser
from gatewatch.configfile import load_config
from sidecar_gateway.config import GatewayConfig
from tests.support.procs import REPO


def compose() -> dict[str, dict[str, dict[str, object]]]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_deploy_configs_load_with_the_real_models() -> None:
    gw = load_config(GatewayConfig, REPO / "deploy" / "gateway.yaml")
    assert {r.name for r in gw.routes} == {"users", "orders", "site"}
    assert gw.telemetry.collector is not None
    load_config(CollectorConfig, REPO / "deploy" / "collector.yaml")


def test_compose_mounts_exist_and_commands_parse() -> None:
    services = compose()["services"]
    assert {"gateway-1", "gateway-2", "gateway-3", "collector", "prometheus", "alertmanager"} <= set(services)
    assert {"grafana", "elasticsearch", "kibana", "jaeger", "upstream-a", "upstream-b"} <= set(services)
    parser = build_parser()
    for name, svc in services.items():
        for volume in svc.get("volumes", []) or []:  # type: ignore[attr-defined]
            source = str(volume).split(":", 1)[0]
            if source.startswith("./") and source != "./secrets":
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
        command = svc.get("command")
        if isinstance(command, list) and svc.get("image") == "gatewatch:dev":
            parser.parse_args([str(c) for c in command])  # exits (fails the test) if unknown


def test_prometheus_scrapes_every_gateway_and_loads_the_generated_rules() -> None:
    prom = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    targets = jobs["api-gateway"]["static_configs"][0]["targets"]
    assert sorted(targets) == ["gateway-1:9901", "gateway-2:9901", "gateway-3:9901"]
    for rule_file in prom["rule_files"]:
        assert (REPO / "alerts" / Path(rule_file).name).exists()
