"""A mergeable quantile sketch with a relative-error guarantee (the DDSketch idea).

Values are counted in logarithmic buckets: bucket ``k`` holds the values in
``(gamma**(k-1), gamma**k]`` with ``gamma = (1 + a) / (1 - a)`` for relative accuracy ``a``.
Every value of a bucket is answered as ``2 * gamma**k / (gamma + 1)``, which is within ``a`` of
any value the bucket can hold, so a quantile is within ``a`` (relative) of the true value of the
same rank whatever the data's distribution. Zeros (a 0 ns request) get their own counter.

Merging adds bucket counts, so a sketch of slot A merged with a sketch of slot B is *exactly*
the sketch of A and B's values together: sliding windows keep one sketch per time slot and
merge the slots of a window when asked.

Rank definition (what "the exact quantile" means in this project): for ``n`` values sorted
ascending ``v[0] <= ... <= v[n-1]``, the q-quantile is ``v[floor(q * (n - 1))]`` (0-based
rank, no interpolation). The sketch finds the bucket holding that rank, so its answer is within
the relative accuracy of that very value.

Memory is a dict of the buckets in use: a range of 1 us to 100 s at a = 0.005 is at most
~1,850 buckets, and real latencies use a few hundred.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence


class QuantileSketch:
    """Counts non-negative values (seconds, here) in log buckets; answers quantiles."""

    __slots__ = (
        "_bins",
        "_gamma",
        "_inv_log_gamma",
        "count",
        "max",
        "min",
        "relative_accuracy",
        "sum",
        "zero_count",
    )

    def __init__(self, relative_accuracy: float = 0.005) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        self.relative_accuracy = relative_accuracy
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        self._bins: dict[int, int] = {}
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    # ---- adding ---------------------------------------------------------------------------------

    def key(self, value: float) -> int:
        """Bucket index of a positive value."""
        return math.ceil(math.log(value) * self._inv_log_gamma)

    def bucket_value(self, key: int) -> float:
        """The value every member of bucket ``key`` is answered with."""
        return 2.0 * self._gamma**key / (self._gamma + 1.0)

    def add(self, value: float) -> None:
        self.add_many((value,))

    def add_many(self, values: Iterable[float]) -> None:
        """Add values; rejects negatives, NaN and infinities (a latency is none of these)."""
        batch = values if isinstance(values, list) else list(values)
        if not batch:
            return
        # Fast path, the ingest hot loop: builtins (min, max, sum, Counter) do the per-value work
        # in C. A NaN anywhere makes the sum NaN, so one check covers every value.
        total = sum(batch)
        lo = min(batch)
        if not (lo >= 0.0 and total < math.inf):
            self._add_checked(batch)
            return
        inv = self._inv_log_gamma
        log = math.log
        ceil = math.ceil
        if lo > 0.0:
            keys = Counter([ceil(log(v) * inv) for v in batch])
        else:
            keys = Counter([ceil(log(v) * inv) for v in batch if v > 0.0])
            self.zero_count += len(batch) - keys.total()
        bins = self._bins
        for k, c in keys.items():
            bins[k] = bins.get(k, 0) + c
        self.count += len(batch)
        self.sum += total
        self.min = min(self.min, lo)
        self.max = max(self.max, max(batch))

    def _add_checked(self, values: list[float]) -> None:
        """One value at a time; raises at the first value that is not a latency. The values before
        it stay counted, consistently with their buckets."""
        for v in values:
            if not (v >= 0.0 and v < math.inf):
                raise ValueError(f"a sketch counts finite values >= 0, got {v!r}")
            if v == 0.0:
                self.zero_count += 1
            else:
                k = self.key(v)
                self._bins[k] = self._bins.get(k, 0) + 1
            self.count += 1
            self.sum += v
            self.min = min(self.min, v)
            self.max = max(self.max, v)

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s counts to this sketch (both must have the same accuracy)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different relative accuracy")
        if other.count == 0:
            return
        bins = self._bins
        for k, c in other._bins.items():
            bins[k] = bins.get(k, 0) + c
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> QuantileSketch:
        out = QuantileSketch(self.relative_accuracy)
        out.merge(self)
        return out

    # ---- reading --------------------------------------------------------------------------------

    @property
    def bins(self) -> Mapping[int, int]:
        return self._bins

    def quantile(self, q: float) -> float | None:
        """The q-quantile (see the module doc for the rank), or None for an empty sketch."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles with one pass over the sorted buckets."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self.count == 0:
            return [None for _ in qs]
        ranks = sorted((math.floor(q * (self.count - 1)), i) for i, q in enumerate(qs))
        out: list[float | None] = [None] * len(qs)
        keys = iter(sorted(self._bins))
        seen = self.zero_count  # values with rank < seen are already placed
        current = 0.0  # answer for ranks below ``seen``
        for rank, i in ranks:
            while rank >= seen:
                k = next(keys)
                seen += self._bins[k]
                current = self.bucket_value(k)
            # Clamping to the observed range keeps the bound (the true value lies inside it)
            # and makes q=0 and q=1 exact.
            out[i] = min(max(current, self.min), self.max)
        return out
