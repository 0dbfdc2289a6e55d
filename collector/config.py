"""The collector's YAML config, as typed models. Loaded with gatewatch.configfile.load_config."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatewatch.configfile import ConfigPath, HostPort


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Strict):
    """Embedded SQLite event store (Elasticsearch comes later as another backend)."""

    # Relative (the default too): to the config file, when loaded from one.
    path: ConfigPath = Field(default=Path("var/collector/events.sqlite3"), validate_default=True)
    retention_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("path")
    @classmethod
    def _a_file(cls, v: Path) -> Path:
        # Caught here, the mistake names its line; SQLite would only say "unable to open database file".
        if v == Path() or v.is_dir():
            raise ValueError(f"{str(v)!r} is a directory: give the path of the SQLite file")
        return v


class SketchConfig(_Strict):
    relative_accuracy: float = Field(default=0.005, gt=0, lt=0.5, description="quantile relative error bound")


class LimitsConfig(_Strict):
    """Bounds on what senders can make the collector remember. Every route and (route, backend)
    seen since start keeps sketches in every window and series in /metrics, so an unbounded
    number of names (a misconfigured or hostile sender) would grow memory and scrape time without
    end. Events over a limit are refused line by line (400, counted by reason) and not stored.
    Measured: each (route, backend) pair costs ~0.7 ms of every /metrics scrape and ~0.1 MB."""

    max_routes: int = Field(default=200, ge=1, le=100_000, description="distinct route names kept")
    max_backends_per_route: int = Field(
        default=32, ge=1, le=10_000, description="distinct backends kept per route"
    )
    max_future_seconds: float = Field(
        default=86_400.0,
        ge=0,
        le=10 * 365 * 86_400,
        description="events stamped further ahead of the collector's clock are refused",
    )


class CollectorConfig(_Strict):
    listen: HostPort = "127.0.0.1:9300"
    store: StoreConfig = StoreConfig()
    sketch: SketchConfig = SketchConfig()
    limits: LimitsConfig = LimitsConfig()
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="largest accepted ingest body")
