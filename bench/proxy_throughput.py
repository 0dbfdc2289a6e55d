"""Proxy throughput in one run: direct upstream, nginx proxy, gateway with telemetry off and on.

A benchmark, not a test: it prints requests/s and the ratios DESIGN.md sets targets for
(gateway with full telemetry >= 90% of itself without, and >= 50% of nginx's proxy). Needs
the Debian packages ``wrk`` and ``nginx``. All traffic stays on 127.0.0.1.

    .venv/bin/python bench/proxy_throughput.py [--duration 10] [--connections 32]

"telemetry on" = metrics + ECS access log to a file + every event shipped (gzip NDJSON) to a
collector stand-in (an nginx location answering 200); "off" = metrics only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import free_port, gatewatch_cmd, wait_http  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/client_body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{upstream};
    location / {{ default_type text/plain; return 200 "hello from the upstream\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{proxy};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
  server {{
    listen 127.0.0.1:{sink};
    client_max_body_size 64m;
    location / {{ default_type application/json; return 200 '{{}}'; }}
  }}
}}
"""

GATEWAY_CONF = """
listen: "127.0.0.1:{port}"
admin_listen: "127.0.0.1:{admin}"
routes:
  - name: bench
    path_prefix: /
    upstreams:
      - address: "127.0.0.1:{upstream}"
telemetry:
  access_log:
    enabled: {log_enabled}
    path: "{log_path}"
{collector}
"""

COLLECTOR = """  collector:
    url: "http://127.0.0.1:{sink}/v1/events"
    gzip: true
"""


@dataclass
class Result:
    name: str
    rps: float
    latency: str
    requests: int
    cpu_us_per_request: float | None = None  # gateway CPU time per request (robust to a busy machine)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, duration: int, connections: int, threads: int) -> Result:
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out)
    return Result(url, rps, p99.group(1) if p99 else "?", requests)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def latency(url: str, duration: int) -> tuple[float, float]:
    """(p50, p99) in ms with one connection, one request at a time: the added-latency view."""
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", "1", "-d", f"{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    assert p50 and p99, out
    return _ms(p50.group(1)), _ms(p99.group(1))


def run_gateway(
    tmp: Path, name: str, upstream: int, sink: int, telemetry: bool
) -> tuple[subprocess.Popen[bytes], int]:
    port, admin = free_port(), free_port()
    conf = tmp / f"{name}.yaml"
    conf.write_text(
        GATEWAY_CONF.format(
            port=port,
            admin=admin,
            upstream=upstream,
            log_enabled="true" if telemetry else "false",
            log_path=tmp / f"{name}-access.log",
            collector=COLLECTOR.format(sink=sink) if telemetry else "",
        )
    )
    log = open(tmp / f"{name}.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        gatewatch_cmd("gateway", "--config", str(conf)), stdout=log, stderr=subprocess.STDOUT
    )
    wait_http(f"http://127.0.0.1:{admin}/healthz", proc=proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    args = parser.parse_args()
    for binary in ("wrk", "nginx"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed (Debian package {binary})", file=sys.stderr)
            return 2

    upstream, proxy, sink = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, proxy=proxy, sink=sink))
        nginx = subprocess.Popen(
            ["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], stderr=subprocess.PIPE
        )
        try:
            wait_http(f"http://127.0.0.1:{upstream}/", proc=nginx)  # type: ignore[arg-type]
            results: dict[str, Result] = {}

            def measure(name: str, url: str, pid: int | None = None) -> None:
                wrk(url, args.warmup, args.connections, args.threads)
                before = cpu_seconds(pid) if pid is not None else 0.0
                r = results[name] = wrk(url, args.duration, args.connections, args.threads)
                cpu = ""
                if pid is not None:
                    r.cpu_us_per_request = (cpu_seconds(pid) - before) / max(r.requests, 1) * 1e6
                    cpu = f"   gateway CPU {r.cpu_us_per_request:.0f} us/request"
                print(f"{name:<26} {r.rps:>10.0f} req/s   p99 {r.latency:>8}{cpu}", flush=True)

            measure("direct upstream (nginx)", f"http://127.0.0.1:{upstream}/")
            lat: dict[str, tuple[float, float]] = {"direct": latency(f"http://127.0.0.1:{upstream}/", 5)}
            measure("nginx proxy (1 worker)", f"http://127.0.0.1:{proxy}/")
            for name, telemetry in (("gateway telemetry off", False), ("gateway telemetry on", True)):
                gw, port = run_gateway(tmp, name.replace(" ", "-"), upstream, sink, telemetry)
                try:
                    measure(name, f"http://127.0.0.1:{port}/", gw.pid)
                    if telemetry:
                        lat["gateway"] = latency(f"http://127.0.0.1:{port}/", 5)
                finally:
                    code = stop(gw)
                if code != 0:
                    out = (tmp / (name.replace(" ", "-") + ".out")).read_text()
                    print(f"  gateway exited {code}: {out[-2000:]}")
                if telemetry:
                    lines = (tmp / "gateway-telemetry-on-access.log").read_bytes().count(b"\n")
                    print(f"  access log lines written: {lines}")
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
            time.sleep(0.1)

    on, off = results["gateway telemetry on"].rps, results["gateway telemetry off"].rps
    nginx_rps = results["nginx proxy (1 worker)"].rps
    print()
    print(f"telemetry on / off:          {on / off:6.1%}   (target >= 90%)")
    print(f"telemetry on / nginx proxy:  {on / nginx_rps:6.1%}   (target >= 50%)")
    print(f"telemetry off / nginx proxy: {off / nginx_rps:6.1%}")
    (d50, d99), (g50, g99) = lat["direct"], lat["gateway"]
    print(f"added latency, 1 connection: p50 {g50 - d50:.2f} ms (target <= 1)", end="")
    print(f", p99 {g99 - d99:.2f} ms (target <= 3)")
    cpu_on = results["gateway telemetry on"].cpu_us_per_request
    cpu_off = results["gateway telemetry off"].cpu_us_per_request
    if cpu_on and cpu_off:
        # On a shared machine rps moves with the neighbours; CPU per request does not.
        print(f"CPU per request off / on:    {cpu_off / cpu_on:6.1%}   (same target, measured as CPU cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
