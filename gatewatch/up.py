"""``gatewatch up``: the whole stack on one machine, with traffic, and a summary at the end.

It starts two demo upstreams, the collector and the sidecar gateway as child processes (each from
its own YAML file, written into the work directory so a person can read and reuse them), writes
the generated dashboards and alert rules, drives traffic through the gateway (a replayed access
log or the built-in synthetic mix), waits until the collector has every event, and prints the
per-route table. Child processes are always stopped, gateway first so its queue flushes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

# Routes for a replayed website log: the top-level folders that carry most of the traffic of a
# typical site, plus a catch-all so every logged request reaches an upstream and keeps its status.
REPLAY_ROUTES: tuple[tuple[str, str], ...] = (
    ("presentations", "/presentations/"),
    ("blog", "/blog/"),
    ("images", "/images/"),
    ("projects", "/projects/"),
    ("files", "/files/"),
    ("articles", "/articles/"),
    ("site", "/"),
)
# Routes the synthetic mix exercises (traffic.synthetic uses the same prefixes).
SYNTHETIC_ROUTES: tuple[tuple[str, str], ...] = (
    ("users", "/api/users"),
    ("orders", "/api/orders"),
    ("auth", "/auth/"),
    ("static", "/static/"),
    ("site", "/"),
)


DEFAULT_DURATION = 30.0  # seconds of synthetic traffic
DEFAULT_RPS = 200.0


@dataclass(frozen=True)
class UpOptions:
    replay: Path | None
    speed: float | None  # None: as fast as possible
    concurrency: int
    duration: float  # seconds of synthetic traffic
    rps: float  # synthetic target rate
    exit_when_done: bool
    summary_json: Path | None
    workdir: Path
    host: str
    gateway_port: int
    admin_port: int
    collector_port: int
    upstream_ports: tuple[int, int]

    @staticmethod
    def from_args(args: argparse.Namespace) -> UpOptions:
        return UpOptions(
            replay=Path(args.replay) if args.replay else None,
            speed=None if args.speed in (None, 0) else float(args.speed),
            concurrency=args.concurrency,
            duration=DEFAULT_DURATION if args.duration is None else args.duration,
            rps=DEFAULT_RPS if args.rps is None else args.rps,
            exit_when_done=args.exit_when_done,
            summary_json=Path(args.summary_json) if args.summary_json else None,
            workdir=Path(args.workdir),
            host="127.0.0.1",
            gateway_port=args.gateway_port,
            admin_port=args.admin_port,
            collector_port=args.collector_port,
            # Port 0 means "any free port" for both upstreams (0 + 1 would be port 1).
            upstream_ports=(
                args.upstream_port,
                args.upstream_port + 1 if 0 < args.upstream_port < 65535 else 0,
            ),
        )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0-65535)")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number >= 1")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replay", metavar="FILE", help="Apache/nginx combined-format access log to replay")
    p.add_argument(
        "--speed",
        type=_positive,
        default=None,
        help="time compression for --replay: 60 plays a minute of log per second (default: flat out)",
    )
    p.add_argument(
        "--concurrency", type=_at_least_one, default=32, help="requests in flight at once (default 32)"
    )
    # None = not given, so a synthetic-only option given with --replay is refused, not ignored.
    p.add_argument(
        "--duration",
        type=_positive,
        default=None,
        help=f"seconds of synthetic traffic (default {DEFAULT_DURATION:g})",
    )
    p.add_argument(
        "--rps", type=_positive, default=None, help=f"synthetic traffic rate (default {DEFAULT_RPS:g}/s)"
    )
    p.add_argument("--exit-when-done", action="store_true", help="stop once the traffic has been sent")
    p.add_argument("--summary-json", metavar="PATH", help="write the per-route summary as JSON")
    p.add_argument("--workdir", default="var/up", help="configs, logs, event store and generated files")
    p.add_argument("--gateway-port", type=_port, default=8080)
    p.add_argument("--admin-port", type=_port, default=9901)
    p.add_argument("--collector-port", type=_port, default=9300)
    p.add_argument(
        "--upstream-port", type=_port, default=8081, help="first of two demo upstream ports (0: any free)"
    )


def option_conflict(args: argparse.Namespace) -> str | None:
    """Options that would be silently ignored together: a person who gave them meant something."""
    if args.replay is None and args.speed is not None:
        return "--speed sets the pace of a --replay; without --replay use --rps for the synthetic mix"
    if args.replay is not None:
        given = [name for name in ("duration", "rps") if getattr(args, name) is not None]
        if given:
            flags = " and ".join(f"--{name}" for name in given)
            what = (
                "shape the synthetic mix and mean" if len(given) > 1 else "shapes the synthetic mix and means"
            )
            return f"{flags} {what} nothing with --replay (use --speed for a replay)"
    return None


def up_parser() -> argparse.ArgumentParser:
    """A parser with only the ``up`` options (the CLI adds them to its ``up`` subcommand)."""
    p = argparse.ArgumentParser(prog="gatewatch up")
    add_up_arguments(p)
    return p


# ---- summary ------------------------------------------------------------------------------------


class RouteSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    status_codes: dict[str, int]


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)

    requests: int
    unparsed_lines: int
    routes: dict[str, RouteSummary]


def summary_from_stats(stats: dict[str, Any], requests: int, unparsed: int) -> Summary:
    """Per-route summary from the collector's ``/api/v1/stats?window=total`` answer."""
    routes = {
        name: RouteSummary(
            requests=r["requests"],
            errors=r["errors"],
            p50_ms=r.get("p50_ms"),
            p95_ms=r.get("p95_ms"),
            p99_ms=r.get("p99_ms"),
            status_codes=r.get("status_codes", {}),
        )
        for name, r in sorted(stats.get("routes", {}).items())
    }
    return Summary(requests=requests, unparsed_lines=unparsed, routes=routes)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def render_table(summary: Summary) -> str:
    header = f"{'route':<16} {'requests':>9} {'errors':>7} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}"
    lines = [header, "-" * len(header)]
    for name, r in summary.routes.items():
        latencies = f"{_ms(r.p50_ms):>9} {_ms(r.p95_ms):>9} {_ms(r.p99_ms):>9}"
        lines.append(f"{name:<16} {r.requests:>9} {r.errors:>7} {latencies}")
    total = sum(r.requests for r in summary.routes.values())
    errors = sum(r.errors for r in summary.routes.values())
    lines.append("-" * len(header))
    lines.append(f"{'all routes':<16} {total:>9} {errors:>7}")
    lines.append(f"requests sent: {summary.requests}, unparsed log lines: {summary.unparsed_lines}")
    return "\n".join(lines)


# ---- configs ------------------------------------------------------------------------------------


def gateway_config(opts: UpOptions, routes: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    a, b = (f"{opts.host}:{p}" for p in opts.upstream_ports)
    # Absolute: a relative path in a config file means relative to the file, not to the workdir.
    work = opts.workdir.resolve()
    logs = work / "logs"
    return {
        "listen": f"{opts.host}:{opts.gateway_port}",
        "admin_listen": f"{opts.host}:{opts.admin_port}",
        "instance": "gateway-1",
        "trusted_proxies": ["127.0.0.0/8", "::1/128"],
        "routes": [
            {
                "name": name,
                "path_prefix": prefix,
                "upstreams": [{"address": a, "weight": 2}, {"address": b, "weight": 1}],
                "timeouts": {"connect": 2.0, "response": 30.0},
                "health_check": {"path": "/healthz", "interval": 2.0},
            }
            for name, prefix in routes
        ],
        "telemetry": {
            "access_log": {"enabled": True, "path": str(logs / "access.ndjson")},
            "collector": {
                "url": f"http://{opts.host}:{opts.collector_port}/v1/events",
                "batch_size": 1000,
                "flush_interval": 0.25,
                "spool_dir": str(work / "spool"),
            },
        },
    }


def collector_config(opts: UpOptions) -> dict[str, Any]:
    return {
        "listen": f"{opts.host}:{opts.collector_port}",
        "store": {"path": str(opts.workdir.resolve() / "collector" / "events.sqlite3")},
    }


# ---- processes ----------------------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def resolve_ports(opts: UpOptions) -> UpOptions:
    """Keep the requested ports where free; pick free ones (and say so) where taken or 0."""
    chosen: set[int] = set()

    def pick(port: int, what: str) -> int:
        if port and port not in chosen and _port_free(opts.host, port):
            chosen.add(port)
            return port
        new = _free_port(opts.host)
        while new in chosen:
            new = _free_port(opts.host)
        if port:
            print(f"port {port} for the {what} is taken; using {new}", file=sys.stderr)
        chosen.add(new)
        return new

    gw = pick(opts.gateway_port, "gateway")
    admin = pick(opts.admin_port, "gateway admin")
    coll = pick(opts.collector_port, "collector")
    ua = pick(opts.upstream_ports[0], "demo upstream a")
    ub = pick(opts.upstream_ports[1], "demo upstream b")
    return UpOptions(
        **{
            **opts.__dict__,
            "gateway_port": gw,
            "admin_port": admin,
            "collector_port": coll,
            "upstream_ports": (ua, ub),
        }
    )


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], log: Path, ready_url: str, timeout: float = 30.0) -> Child:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "wb")  # noqa: SIM115 - the child writes it until it stops
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatewatch.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop children in order
        )
        out.close()
        child = Child(name, proc, log)
        self.children.append(child)
        _wait_ready(child, ready_url, timeout)
        return child

    def child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    def exited(self) -> list[Child]:
        """Children that are no longer running (none should, until we stop them)."""
        return [c for c in self.children if c.proc.poll() is not None]

    def stop_child(self, child: Child, timeout: float = 20.0) -> None:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def stop(self) -> None:
        # Started as upstreams, collector, gateway: stop in reverse so the gateway ships its last
        # events to a collector that is still up, and the collector stores them before it goes.
        for child in reversed(self.children):
            self.stop_child(child)
        self.children.clear()

    def kill(self) -> None:
        """SIGKILL every child still running: the operator insisted (a second Ctrl-C)."""
        for child in self.children:
            if child.proc.poll() is None:
                with contextlib.suppress(OSError):
                    child.proc.kill()


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _healthz_pid(url: str) -> int | None:
    """The pid a ``/healthz`` answer names: None when nothing answers, -1 when the answer names
    no pid (an error status, not our JSON: some other program)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            raw = resp.read()
    except urllib.error.HTTPError:
        return -1
    except OSError:  # refused, reset, timed out: not listening (yet)
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return -1
    pid = body.get("pid") if isinstance(body, dict) else None
    return pid if isinstance(pid, int) else -1


def _wait_ready(child: Child, url: str, timeout: float) -> None:
    """Wait until *this* child answers ``url``. Ports are checked once before the start, so another
    program can take one in between: its answer must not count as our child being ready (traffic
    would go to it, and the child's bind failure would go unnoticed)."""
    deadline = time.monotonic() + timeout
    stranger: int | None = None
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise StartError(f"{child.name} exited with code {child.proc.returncode}:\n{_tail(child.log)}")
        pid = _healthz_pid(url)
        if pid == child.proc.pid:
            return
        if pid is not None:
            stranger = pid
        time.sleep(0.05)
    who = ""
    if stranger == -1:
        who = "; another program answers there"
    elif stranger is not None:
        who = f"; another process (pid {stranger}) answers there"
    raise StartError(f"{child.name} did not answer {url} within {timeout:.0f}s{who}:\n{_tail(child.log)}")


class StartError(RuntimeError):
    pass


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: stop the traffic and the stack in order."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM for the whole run, stopping included.

    The first signal, while children start or traffic runs, raises :class:`Interrupted` and an
    orderly stop follows. From then on (and once stopping has begun for any reason) a signal never
    raises: an exception in the middle of stopping would abandon the children still running. A
    further signal kills the children at once instead, so no process is ever left behind.
    """

    def __init__(self, on_force: Callable[[], None]) -> None:
        self._on_force = on_force
        self.stopping = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if not self.stopping:
            self.stopping = True
            raise Interrupted(signum)
        print("\nsignal while stopping: killing the child processes now", file=sys.stderr)
        self._on_force()


def _writable_dir(folder: Path) -> str | None:
    """None if files can be created in ``folder`` (made if missing), else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".gatewatch-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_inputs(opts: UpOptions) -> str | None:
    """The first problem with the options that would make the run fail, before anything starts."""
    if opts.replay is not None:
        path = opts.replay
        if not path.exists():
            return f"--replay {path}: no such file"
        if not path.is_file():
            return f"--replay {path}: not a regular file"
        try:
            with open(path, "rb") as f:
                first = f.read(1)
        except OSError as exc:
            return f"--replay {path}: cannot read it: {exc.strerror}"
        if not first:
            return f"--replay {path}: the file is empty; nothing to replay"
    reason = _writable_dir(opts.workdir)
    if reason is not None:
        return f"--workdir {opts.workdir}: cannot write there ({reason})"
    if opts.summary_json is not None:
        if opts.summary_json.is_dir():
            return f"--summary-json {opts.summary_json}: cannot write there (it is a directory)"
        reason = _writable_dir(opts.summary_json.parent)
        if reason is not None:
            return f"--summary-json {opts.summary_json}: cannot write there ({reason})"
    return None


# ---- the main job -------------------------------------------------------------------------------


def run_up(opts: UpOptions) -> int:
    from alerts.generate import write_all as write_alerts
    from collector.config import CollectorConfig
    from dashboards.generate import write_all as write_dashboards
    from sidecar_gateway.config import GatewayConfig
    from traffic.replay import TrafficResult, replay_file, run_synthetic

    problem = check_inputs(opts)
    if problem is not None:
        print(f"gatewatch up: {problem}", file=sys.stderr)
        return 2
    opts = resolve_ports(opts)
    work = opts.workdir
    for sub in ("logs", "collector", "spool", "config"):
        (work / sub).mkdir(parents=True, exist_ok=True)

    routes = REPLAY_ROUTES if opts.replay is not None else SYNTHETIC_ROUTES
    gw_cfg = gateway_config(opts, routes)
    GatewayConfig.model_validate(gw_cfg)  # the same models the services load: fail here, not there
    col_cfg = collector_config(opts)
    CollectorConfig.model_validate(col_cfg)
    gw_path, col_path = work / "config" / "gateway.yaml", work / "config" / "collector.yaml"
    gw_path.write_text(yaml.safe_dump(gw_cfg, sort_keys=False))
    col_path.write_text(yaml.safe_dump(col_cfg, sort_keys=False))
    # A fresh event store per run so the summary is this run's traffic; and no batches an earlier
    # run's gateway spooled (its collector went away): they belong to the store just removed.
    # The access log too: it is this run's log, beside this run's store.
    stale_files = [*(work / "collector").glob("events.sqlite3*"), *(work / "spool").iterdir()]
    for stale in [*stale_files, work / "logs" / "access.ndjson"]:
        if stale.is_file():
            stale.unlink()

    generated = [*write_dashboards(work / "dashboards"), *write_alerts(work / "alerts")]

    h = opts.host
    gateway_url = f"http://{h}:{opts.gateway_port}"
    admin_url = f"http://{h}:{opts.admin_port}"
    collector_url = f"http://{h}:{opts.collector_port}"
    stack = Stack()
    # Filled in as the traffic goes, so an interrupted run still reports what it sent.
    result = TrafficResult()
    stats: dict[str, Any] = {}
    code = 0
    with _Signals(stack.kill) as signals:
        try:
            try:
                for i, port in enumerate(opts.upstream_ports):
                    stack.start(
                        f"demo upstream {'ab'[i]}",
                        ["demo-upstream", "--listen", f"{h}:{port}"],
                        work / "logs" / f"upstream-{'ab'[i]}.log",
                        f"http://{h}:{port}/healthz",
                    )
                stack.start(
                    "collector",
                    ["collector", "--config", str(col_path)],
                    work / "logs" / "collector.log",
                    f"{collector_url}/healthz",
                )
                stack.start(
                    "gateway",
                    ["gateway", "--config", str(gw_path)],
                    work / "logs" / "gateway.log",
                    f"{admin_url}/healthz",
                )
            except StartError as exc:
                print(f"gatewatch up: {exc}", file=sys.stderr)
                return 1

            print(
                f"gateway     {gateway_url}\n"
                f"  metrics   {admin_url}/metrics\n"
                f"live view   {collector_url}/live\n"
                f"collector   {collector_url}/api/v1/stats?window=total\n"
                f"  metrics   {collector_url}/metrics\n"
                f"configs     {gw_path}  {col_path}\n"
                f"logs        {work / 'logs'}  (ECS access log: {work / 'logs' / 'access.ndjson'})",
                file=sys.stderr,
            )
            try:
                if opts.replay is not None:
                    asyncio.run(
                        replay_file(
                            opts.replay,
                            gateway_url,
                            speed=opts.speed,
                            concurrency=opts.concurrency,
                            progress=True,
                            result=result,
                        )
                    )
                else:
                    asyncio.run(
                        run_synthetic(
                            gateway_url,
                            duration=opts.duration,
                            rps=opts.rps,
                            concurrency=opts.concurrency,
                            progress=True,
                            result=result,
                        )
                    )
                if not opts.exit_when_done and not stack.exited():
                    print("traffic done; the stack keeps running — Ctrl-C to stop", file=sys.stderr)
                    while not stack.exited():
                        time.sleep(0.5)
                for child in stack.exited():
                    code = 1
                    print(
                        f"gatewatch up: the {child.name} exited with code {child.proc.returncode} during the "
                        f"run; its last log lines ({child.log}):\n{_tail(child.log)}",
                        file=sys.stderr,
                    )
            except Interrupted:
                print("\ninterrupted; stopping", file=sys.stderr)
            signals.stopping = True
            # The gateway first: on SIGTERM it ships every queued event to the collector (still up)
            # and exits once the collector has acknowledged them, so one read of the figures is
            # complete: no polling, no guessing how long the last batch takes.
            gateway = stack.child("gateway")
            if gateway is not None:
                stack.stop_child(gateway)
            stats = _final_stats(f"{collector_url}/api/v1/stats?window=total")
        except Interrupted:
            print("\ninterrupted while starting; stopping", file=sys.stderr)
            return 128 + signals.signum if signals.signum is not None else 130
        finally:
            signals.stopping = True
            stack.stop()

    sent, unparsed = result.requests, result.unparsed_lines
    summary = summary_from_stats(stats, sent, unparsed)
    print()
    print(render_table(summary))
    print(result.describe())  # rate, bytes, statuses, transport errors, unparsed lines and why
    if opts.summary_json is not None:
        try:
            opts.summary_json.write_text(json.dumps(summary.model_dump(), indent=2) + "\n")
            print(f"summary     {opts.summary_json}")
        except OSError as exc:
            print(f"gatewatch up: cannot write {opts.summary_json}: {exc.strerror}", file=sys.stderr)
            code = code or 1
    print("dashboards and rules written:")
    for path in generated:
        print(f"  {path}")
    seen = sum(r.requests for r in summary.routes.values())
    # Requests cut off by an interruption may or may not have reached the gateway.
    unknown = result.in_flight
    if seen > sent + unknown:
        # Someone else used the gateway during the run (curl, a browser): counted, not an error.
        print(f"note: the collector also counted {seen - sent - unknown} requests that this run did not send")
    if signals.signum is not None:
        return 128 + signals.signum
    if sent == 0 and unparsed > 0:
        print(
            f"gatewatch up: none of the {unparsed} lines of {opts.replay} could be parsed as an "
            "access log line (combined or common format); nothing was replayed",
            file=sys.stderr,
        )
        return 1
    if seen < sent and code == 0:
        print(f"gatewatch up: the collector saw only {seen} of {sent} requests", file=sys.stderr)
        return 1
    return code


def _final_stats(url: str) -> dict[str, Any]:
    try:
        stats: dict[str, Any] = get_json(url)
    except (OSError, ValueError) as exc:
        print(
            f"gatewatch up: cannot read the collector's figures ({exc}); the table is empty", file=sys.stderr
        )
        return {}
    return stats
