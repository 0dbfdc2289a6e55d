"""Quantile accuracy: the collector's sketch vs Prometheus-style classic buckets, side by side.

A benchmark, not a test. DESIGN.md's target: P50/P95/P99 within 1% relative error of the exact
value. For several latency shapes it prints the exact quantile (0-based rank floor(q*(n-1))),
the sketch's answer and the answer ``histogram_quantile`` would give from the gateway's
LATENCY_BUCKETS (linear interpolation inside the bucket), with their relative errors.

    .venv/bin/python bench/quantile_accuracy.py [--n 200000] [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.sketch import QuantileSketch
from gatewatch.catalog import LATENCY_BUCKETS

QUANTILES = (0.5, 0.95, 0.99)


def classic_bucket_quantile(values: list[float], q: float, bounds: tuple[float, ...]) -> float:
    """What PromQL's histogram_quantile answers from cumulative bucket counts."""
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[bisect_left(bounds, v)] += 1
    rank = q * len(values)
    running = 0
    for i, c in enumerate(counts):
        if running + c >= rank:
            if i == len(bounds):
                return bounds[-1]  # +Inf bucket: Prometheus answers the highest finite bound
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * ((rank - running) / c if c else 0.0)
        running += c
    return bounds[-1]


def shapes(rng: random.Random) -> dict[str, Callable[[], float]]:
    return {
        "lognormal 20ms": lambda: rng.lognormvariate(math.log(0.020), 0.8),
        "fast 0.3ms": lambda: rng.lognormvariate(math.log(0.0003), 0.4),
        "bimodal cache": lambda: rng.gauss(0.002, 0.0003) if rng.random() < 0.8 else rng.gauss(0.180, 0.02),
        "long tail": lambda: rng.paretovariate(1.5) * 0.005,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"{'shape':<16} {'q':>5} {'exact':>11} {'sketch':>11} {'err':>7} {'buckets':>11} {'err':>8}")
    sketch_errors: list[float] = []
    bucket_errors: list[float] = []
    for name, draw in shapes(rng).items():
        values = sorted(max(0.0, draw()) for _ in range(args.n))
        sketch = QuantileSketch(0.005)
        sketch.add_many(values)
        for q in QUANTILES:
            exact = values[math.floor(q * (len(values) - 1))]
            est = sketch.quantile(q)
            assert est is not None
            classic = classic_bucket_quantile(values, q, LATENCY_BUCKETS)
            se, be = abs(est - exact) / exact, abs(classic - exact) / exact
            sketch_errors.append(se)
            bucket_errors.append(be)
            print(
                f"{name:<16} {q:>5} {exact * 1e3:>9.3f}ms {est * 1e3:>9.3f}ms {se:>7.2%}"
                f" {classic * 1e3:>9.3f}ms {be:>8.1%}"
            )
    print(
        f"\nsketch:  median error {statistics.median(sketch_errors):.3%}, worst {max(sketch_errors):.3%}"
        f"  (target <= 1%: {'met' if max(sketch_errors) <= 0.01 else 'NOT met'})"
    )
    print(
        f"buckets: median error {statistics.median(bucket_errors):.1%}, worst {max(bucket_errors):.1%}"
        f"  ({len(LATENCY_BUCKETS)} classic buckets, histogram_quantile interpolation)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
