"""A real Prometheus for tests: start it on a free loopback port, wait until ready, query its API.

    with running_prometheus(tmp_path / "prom", config_text, {"gateway.rules.yml": rules}) as prom:
        prom.wait_for(lambda: prom.firing("HighErrorRate"), timeout=30, what="HighErrorRate firing")

The config's ``rule_files`` are resolved relative to the config file, so pass rule files by
their bare names in ``files``. Everything Prometheus writes (TSDB, log) stays in ``workdir``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support.procs import free_port, require_binary, running

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """The API answered ``status: error`` (bad query, unknown endpoint...)."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        super().__init__(f"{error_type}: {message}")


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    values: list[tuple[float, float]]


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # "pending" or "firing"
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float


@dataclass(frozen=True)
class Target:
    job: str
    instance: str
    health: str  # "up", "down" or "unknown"
    last_error: str
    scrape_url: str


@dataclass(frozen=True)
class RuleStatus:
    name: str
    health: str  # "ok", "err" or "unknown"
    last_error: str


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, str | list[str]] | None = None) -> Any:
        query = urllib.parse.urlencode(params or {}, doseq=True)
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422/503 still carry the JSON error body
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(body.get("errorType", "unknown"), body.get("error", str(body)))
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError("unexpected", f"{expr} returned a {data['resultType']}")
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("/api/v1/query_range", params)
        return [
            RangeSeries(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        params: dict[str, str | list[str]] = {"match[]": [match]} if match else {}
        values: list[str] = self._get(f"/api/v1/label/{label}/values", params)
        return values

    def alerts(self) -> list[Alert]:
        return [
            Alert(
                a["labels"]["alertname"], a["state"], a["labels"], a.get("annotations", {}), float(a["value"])
            )
            for a in self._get("/api/v1/alerts")["alerts"]
        ]

    def firing(self, name: str, **labels: str) -> list[Alert]:
        return [
            a
            for a in self.alerts()
            if a.name == name and a.state == "firing" and all(a.labels.get(k) == v for k, v in labels.items())
        ]

    def targets(self) -> list[Target]:
        return [
            Target(t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"], t["scrapeUrl"])
            for t in self._get("/api/v1/targets", {"state": "active"})["activeTargets"]
        ]

    def rules(self) -> list[RuleStatus]:
        return [
            RuleStatus(r["name"], r["health"], r.get("lastError", ""))
            for g in self._get("/api/v1/rules")["groups"]
            for r in g["rules"]
        ]

    @staticmethod
    def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25) -> T:
        """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                result = check()
            except (OSError, PrometheusError) as exc:
                result, last = None, exc
            else:
                last = result
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"waited {timeout}s for {what}; last result: {last!r}")
            time.sleep(interval)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False  # refused while starting, or 503 until the TSDB is open


@contextmanager
def running_prometheus(
    workdir: Path, config: str, files: Mapping[str, str] | None = None, *, timeout: float = 30.0
) -> Iterator[PrometheusClient]:
    """Run Prometheus with ``config`` (prometheus.yml text) and extra ``files`` beside it."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(config)
    for name, content in (files or {}).items():
        (workdir / name).write_text(content)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "prometheus.log"
    cmd = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(cmd, log=log, cwd=workdir) as proc:
        deadline = time.monotonic() + timeout
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                exited = proc.poll() is not None
                state = f"exited with {proc.returncode}" if exited else f"not ready in {timeout}s"
                raise RuntimeError(f"prometheus {state}:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.1)
        yield PrometheusClient(url)
