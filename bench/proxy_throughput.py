"""Proxy throughput and added latency in one run: direct upstream, nginx proxy, gateway
with telemetry off and on.

A benchmark, not a test. It prints medians over interleaved rounds and the ratios DESIGN.md
sets targets for, side by side:

- gateway with full telemetry >= 90% of itself with telemetry off,
- gateway with full telemetry >= 50% of nginx's proxy (one worker each),
- added latency at 1,000 requests/s: p50 <= 1 ms, p99 <= 3 ms over the direct upstream.

Needs the Debian packages ``wrk`` and ``nginx``. All traffic stays on 127.0.0.1.

    .venv/bin/python bench/proxy_throughput.py [--rounds 3] [--duration 8] [--connections 32]

Built for a noisy shared 2-core machine:
- the upstream and the nginx proxy are two separate nginx instances (one worker each), so
  "nginx proxy" is a proxy worker of its own, like the gateway, not a worker that also serves
  the upstream;
- the server under test (nginx proxy or gateway) is pinned to one core, wrk and the upstream
  to the other (``--no-pin`` turns that off);
- configurations are interleaved round by round (the order rotates) and the medians are
  reported, so a neighbour's burst hits every configuration alike;
- besides requests/s it reports the server's CPU time per request (from /proc), which moves
  much less with the neighbours than requests/s does.

"telemetry on" = metrics + ECS access log to a file + every event shipped (gzip NDJSON) to a
collector stand-in (an nginx location answering 200); "off" = metrics only.

Added latency uses wrk with a Lua script that paces every connection (``delay()``), so the
offered load is a fixed ~1,000 requests/s far below saturation; p50/p99 through the gateway
minus p50/p99 direct.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import free_port, gatewatch_cmd, wait_http  # noqa: E402

NGINX_COMMON = """
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/{name}-client_body;
  proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fastcgi;
  uwsgi_temp_path {tmp}/{name}-uwsgi;
  scgi_temp_path {tmp}/{name}-scgi;
  keepalive_requests 1000000;
{servers}
}}
"""

UPSTREAM_SERVERS = """
  server {{
    listen 127.0.0.1:{upstream};
    location / {{ default_type text/plain; return 200 "hello from the upstream\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{sink};
    client_max_body_size 64m;
    location / {{ default_type application/json; return 200 '{{}}'; }}
  }}
"""

PROXY_SERVERS = """
  upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{proxy};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
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

# Each connection waits `delay` ms after every response: N connections x (1000 / delay) per
# second is the offered rate; done() prints exact percentiles (wrk's --latency rounds).
PACED_LUA = """
local pause = {delay_ms}
function delay() return pause end
done = function(summary, latency, requests)
  io.write(string.format("PACED p50_us=%d p99_us=%d n=%d\\n",
    latency:percentile(50), latency:percentile(99), summary.requests))
end
"""

SERVER_CORE = 1  # the server under test
CLIENT_CORE = 0  # wrk and the upstream


@dataclass
class Target:
    name: str
    url: str
    pid: int | None  # process whose CPU time is charged to the configuration
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def pin(pid: int, core: int, enabled: bool) -> None:
    """Pin a process and all its threads to one core."""
    if not enabled:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {core})


def wrk_cmd(pin_enabled: bool) -> list[str]:
    return ["taskset", "-c", str(CLIENT_CORE), "wrk"] if pin_enabled else ["wrk"]


def run_wrk(args: list[str], pin_enabled: bool) -> str:
    return subprocess.run([*wrk_cmd(pin_enabled), *args], capture_output=True, text=True, check=True).stdout


def throughput(t: Target, duration: int, warmup: int, connections: int, pin_enabled: bool) -> None:
    load = ["-t", "1", "-c", str(connections)]
    if warmup:
        run_wrk([*load, "-d", f"{warmup}s", t.url], pin_enabled)
    before = cpu_seconds(t.pid) if t.pid is not None else 0.0
    out = run_wrk([*load, "-d", f"{duration}s", t.url], pin_enabled)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    t.rps.append(rps)
    cpu = ""
    if t.pid is not None:
        per = (cpu_seconds(t.pid) - before) / max(requests, 1) * 1e6
        t.cpu_us.append(per)
        cpu = f"   CPU {per:5.1f} us/request"
    print(f"  {t.name:<24} {rps:>9.0f} req/s{cpu}", flush=True)


def paced(t: Target, script: Path, rate: int, duration: int, pin_enabled: bool) -> None:
    connections = 10
    out = run_wrk(
        ["-t", "1", "-c", str(connections), "-d", f"{duration}s", "-s", str(script), t.url], pin_enabled
    )
    m = re.search(r"PACED p50_us=(\d+) p99_us=(\d+) n=(\d+)", out)
    assert m, out
    p50, p99, n = int(m.group(1)) / 1000, int(m.group(2)) / 1000, int(m.group(3))
    t.p50_ms.append(p50)
    t.p99_ms.append(p99)
    print(
        f"  {t.name:<24} paced {n / duration:>6.0f} req/s   p50 {p50:.3f} ms   p99 {p99:.3f} ms", flush=True
    )


def start_nginx(tmp: Path, name: str, servers: str) -> subprocess.Popen[bytes]:
    conf = tmp / f"{name}.conf"
    conf.write_text(NGINX_COMMON.format(tmp=tmp, name=name, servers=servers))
    return subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)], stderr=subprocess.PIPE)


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


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per throughput run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--latency-duration", type=int, default=6, help="seconds per paced run")
    parser.add_argument("--rate", type=int, default=1000, help="paced requests/s for added latency")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to cores")
    args = parser.parse_args()
    for binary in ("wrk", "nginx", "taskset"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed", file=sys.stderr)
            return 2
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        args.pin = False
    upstream, proxy, sink = free_port(), free_port(), free_port()
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            up = start_nginx(tmp, "upstream", UPSTREAM_SERVERS.format(upstream=upstream, sink=sink))
            procs.append((up, signal.SIGQUIT))
            wait_http(f"http://127.0.0.1:{upstream}/", proc=up)
            px = start_nginx(tmp, "proxy", PROXY_SERVERS.format(upstream=upstream, proxy=proxy))
            procs.append((px, signal.SIGQUIT))
            wait_http(f"http://127.0.0.1:{proxy}/", proc=px)
            gw_off, off_port = run_gateway(tmp, "gateway-off", upstream, sink, False)
            procs.append((gw_off, signal.SIGTERM))
            gw_on, on_port = run_gateway(tmp, "gateway-on", upstream, sink, True)
            procs.append((gw_on, signal.SIGTERM))

            up_worker, px_worker = children(up.pid)[0], children(px.pid)[0]
            pin(up.pid, CLIENT_CORE, args.pin)
            pin(up_worker, CLIENT_CORE, args.pin)
            for pid in (px.pid, px_worker, gw_off.pid, gw_on.pid):
                pin(pid, SERVER_CORE, args.pin)
            if args.pin:
                print(
                    f"pinned: server under test on core {SERVER_CORE}; "
                    f"wrk and the upstream nginx on core {CLIENT_CORE}"
                )
            else:
                print("not pinned")
            direct = Target("direct upstream", f"http://127.0.0.1:{upstream}/", up_worker)
            nginx_proxy = Target("nginx proxy (1 worker)", f"http://127.0.0.1:{proxy}/", px_worker)
            off = Target("gateway telemetry off", f"http://127.0.0.1:{off_port}/", gw_off.pid)
            on = Target("gateway telemetry on", f"http://127.0.0.1:{on_port}/", gw_on.pid)
            targets = [direct, nginx_proxy, off, on]
            print(
                f"wrk -t1 -c{args.connections}, {args.duration}s per run, {args.rounds} rounds, interleaved"
            )

            script = tmp / "paced.lua"
            connections = 10
            script.write_text(PACED_LUA.format(delay_ms=connections * 1000 // args.rate))

            for r in range(args.rounds):
                order = targets[r % len(targets) :] + targets[: r % len(targets)]
                print(f"round {r + 1}/{args.rounds}", flush=True)
                for t in order:
                    throughput(t, args.duration, args.warmup, args.connections, args.pin)
                for t in (direct, on, off) if r % 2 else (on, off, direct):
                    paced(t, script, args.rate, args.latency_duration, args.pin)
        finally:
            for proc, sig in reversed(procs):
                code = stop(proc, sig)
                if sig == signal.SIGTERM and code != 0:
                    print(f"  gateway exited {code}")
            time.sleep(0.1)
        lines = (tmp / "gateway-on-access.log").read_bytes().count(b"\n")

    print()
    print(f"medians over {args.rounds} rounds         req/s    CPU us/request")
    for t in targets:
        cpu = f"{med(t.cpu_us):10.1f}" if t.cpu_us else ""
        print(f"  {t.name:<24} {med(t.rps):>9.0f} {cpu}")
    print(f"  (access log lines written with telemetry on: {lines})")
    print()
    # Medians of the ratios within each round too: the two sides of a pair ran seconds apart,
    # so a neighbour's burst that spans a round cancels out of them.
    print("ratio                          req/s (paired)    CPU/request (paired)   target")
    for label, a, b, target in (
        ("telemetry on / off", on, off, ">= 90%"),
        ("telemetry on / nginx proxy", on, nginx_proxy, ">= 50%"),
        ("telemetry off / nginx proxy", off, nginx_proxy, ""),
    ):
        by_rps = med(a.rps) / med(b.rps)
        by_cpu = med(b.cpu_us) / med(a.cpu_us)
        paired_rps = med([x / y for x, y in zip(a.rps, b.rps, strict=True)])
        paired_cpu = med([y / x for x, y in zip(a.cpu_us, b.cpu_us, strict=True)])
        rps_text = f"{by_rps:6.1%} ({paired_rps:6.1%})"
        print(f"  {label:<28} {rps_text}    {by_cpu:6.1%} ({paired_cpu:6.1%})      {target}")
    print()
    print(f"added latency at {args.rate} req/s (paced, medians)   p50        p99")
    for t in (on, off):
        d50 = med(t.p50_ms) - med(direct.p50_ms)
        d99 = med(t.p99_ms) - med(direct.p99_ms)
        print(f"  {t.name:<36} {d50:+.3f} ms  {d99:+.3f} ms   (target <= 1 / <= 3 ms)")
    print(
        f"  (direct: p50 {med(direct.p50_ms):.3f} ms, p99 {med(direct.p99_ms):.3f} ms; "
        f"telemetry on: p50 {med(on.p50_ms):.3f} ms, p99 {med(on.p99_ms):.3f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
