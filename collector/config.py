"""The collector's YAML config, as typed models. Loaded with gatewatch.configfile.load_config."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gatewatch.configfile import HostPort


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    """Embedded SQLite event store (Elasticsearch comes later as another backend)."""

    path: Path = Path("var/collector/events.sqlite3")
    retention_days: int = Field(default=30, ge=1, le=3650)


class SketchConfig(_Strict):
    relative_accuracy: float = Field(default=0.005, gt=0, lt=0.5, description="quantile relative error bound")


class CollectorConfig(_Strict):
    listen: HostPort = "127.0.0.1:9300"
    store: StoreConfig = StoreConfig()
    sketch: SketchConfig = SketchConfig()
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="largest accepted ingest body")
