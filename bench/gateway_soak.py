"""Gateway memory under sustained load: RSS must stay <= 100 MB per worker and flat.

A benchmark, not a test. DESIGN.md's target: sidecar RSS <= 100 MB per worker under load, flat
(< 5% growth) over a 10-minute soak. It runs the real stack (demo upstream, collector, gateway
with full telemetry: metrics, ECS access log to a file, every event shipped to the collector),
drives it with wrk for ``--minutes``, samples the gateway's RSS every ``--every`` seconds and
prints the samples, the peak and the growth from the first sample taken under load (after
warm-up) to the last.

    .venv/bin/python bench/gateway_soak.py [--minutes 10] [--connections 16] [--every 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.procs import free_port, gatewatch_cmd, wait_http  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds before the baseline sample")
    args = ap.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("needs wrk (Debian package wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gatewatch-soak-"))
    up, gw, admin, col = free_port(), free_port(), free_port(), free_port()
    (tmp / "collector.yaml").write_text(f"listen: 127.0.0.1:{col}\nstore: {{path: {tmp}/events.sqlite3}}\n")
    (tmp / "gateway.yaml").write_text(
        f"listen: 127.0.0.1:{gw}\nadmin_listen: 127.0.0.1:{admin}\n"
        f"routes:\n  - name: api\n    path_prefix: /\n    upstreams: [{{address: '127.0.0.1:{up}'}}]\n"
        f"telemetry:\n  access_log: {{path: {tmp}/access.ndjson}}\n"
        f"  collector: {{url: 'http://127.0.0.1:{col}/v1/events', spool_dir: {tmp}/spool}}\n"
    )
    procs = [
        subprocess.Popen(gatewatch_cmd("demo-upstream", "--listen", f"127.0.0.1:{up}")),
        subprocess.Popen(gatewatch_cmd("collector", "--config", str(tmp / "collector.yaml"))),
    ]
    wait_http(f"http://127.0.0.1:{up}/healthz")
    wait_http(f"http://127.0.0.1:{col}/healthz")
    gateway = subprocess.Popen(gatewatch_cmd("gateway", "--config", str(tmp / "gateway.yaml")))
    procs.append(gateway)
    try:
        wait_http(f"http://127.0.0.1:{admin}/healthz")
        seconds = int(args.minutes * 60)
        load = subprocess.Popen(
            [wrk, "-t1", f"-c{args.connections}", f"-d{seconds}s", f"http://127.0.0.1:{gw}/api/items"],
            stdout=subprocess.PIPE,
            text=True,
        )
        start = time.monotonic()
        print(f"gateway pid {gateway.pid}; RSS before load {rss_mb(gateway.pid):.1f} MB")
        samples: list[tuple[float, float]] = []
        while load.poll() is None:
            time.sleep(args.every)
            if load.poll() is not None:
                break
            t, mb = time.monotonic() - start, rss_mb(gateway.pid)
            samples.append((t, mb))
            print(f"  t={t:6.0f}s  RSS {mb:6.1f} MB")
        out = load.communicate()[0]
        rps = next((line for line in out.splitlines() if "Requests/sec" in line), "").strip()
        under_load = [mb for t, mb in samples if t >= args.warmup] or [mb for _, mb in samples]
        peak, base, last = max(under_load), under_load[0], under_load[-1]
        growth = (last - base) / base
        print(f"\nwrk: {rps}")
        print(f"RSS after warm-up {base:.1f} MB, last {last:.1f} MB, peak {peak:.1f} MB")
        print(f"growth {growth:+.1%} (target < 5%): {'met' if growth < 0.05 else 'NOT met'}")
        print(f"peak <= 100 MB: {'met' if peak <= 100 else 'NOT met'}")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
