"""The ``gatewatch`` command. The only module that may import both the gateway and the collector.

Subcommands:
  gateway        run the sidecar gateway from its YAML config
  collector      run the collector from its YAML config
  demo-upstream  run the demo upstream service (answers as the request's x-demo-* headers say)
  generate       write dashboards/*.json and alerts/*.rules.yml from the metric catalog
  up             the main job: demo upstreams + gateway + collector + traffic, then a summary
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gatewatch.configfile import ConfigError, UnusableSetting, load_config


def _cmd_gateway(args: argparse.Namespace) -> int:
    from sidecar_gateway.config import GatewayConfig

    # The config is checked before the server modules are imported: a mistake is reported at once.
    config = load_config(GatewayConfig, args.config)
    from sidecar_gateway.server import run

    try:
        run(config)
    except UnusableSetting as exc:  # e.g. an access log in a directory that does not exist
        raise exc.config_error(args.config) from None
    return 0


def _cmd_collector(args: argparse.Namespace) -> int:
    from collector.config import CollectorConfig

    config = load_config(CollectorConfig, args.config)
    from collector.server import run

    run(config)
    return 0


def _cmd_demo_upstream(args: argparse.Namespace) -> int:
    from traffic.upstream import run

    run(args.listen)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from alerts.generate import write_all as write_alerts
    from dashboards.generate import write_all as write_dashboards

    root = Path(args.out)
    try:
        written = [*write_dashboards(root / "dashboards"), *write_alerts(root / "alerts")]
    except OSError as exc:
        print(
            f"gatewatch generate: cannot write {exc.filename or root}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    for path in written:
        print(path)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from gatewatch.up import UpOptions, option_conflict, run_up

    conflict = option_conflict(args)
    if conflict is not None:
        print(f"gatewatch up: {conflict}", file=sys.stderr)
        return 2
    return run_up(UpOptions.from_args(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewatch", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gateway", help="run the sidecar gateway")
    p.add_argument("--config", required=True, help="gateway YAML config file")
    p.set_defaults(func=_cmd_gateway)

    p = sub.add_parser("collector", help="run the collector")
    p.add_argument("--config", required=True, help="collector YAML config file")
    p.set_defaults(func=_cmd_collector)

    p = sub.add_parser("demo-upstream", help="run the demo upstream service")
    p.add_argument("--listen", default="127.0.0.1:8081", help="host:port to listen on")
    p.set_defaults(func=_cmd_demo_upstream)

    p = sub.add_parser("generate", help="write dashboards and alert rules from the metric catalog")
    p.add_argument("--out", default=".", help="project root; writes OUT/dashboards and OUT/alerts")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("up", help="run the whole stack with demo traffic")
    from gatewatch.up import add_up_arguments

    add_up_arguments(p)
    p.set_defaults(func=_cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"gatewatch: bad config:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
