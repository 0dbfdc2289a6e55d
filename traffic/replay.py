"""Send request specs as real HTTP requests to a base URL (the gateway), and count what came back.

- :func:`send_all` is the engine: one aiohttp session, keep-alive connections, ``concurrency``
  requests in flight, targets sent exactly as given (no re-encoding, no redirects followed, no
  decompression), response bodies read and discarded while counting bytes. A transport error
  (refused, reset, timeout) is counted and sampled, never fatal.
- Time compression: each spec's ``at`` (seconds on the traffic's clock) is sent at
  ``start + at / speed``; ``speed=None`` sends as fast as the concurrency allows.
- :func:`replay_file` replays an Apache/nginx access log; :func:`run_synthetic` the built-in mix.

Progress goes to a callback ``(done, total, errors)`` about ten times a second (``done`` counts
answered requests, transport errors and unparsed lines; ``errors`` counts transport errors);
``progress=True`` draws :class:`traffic.progress.TerminalProgress` on stderr.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from traffic.combined_log import LogReader, LogRecord, ParseError
from traffic.demo_response import DEMO_BYTES, DEMO_DELAY_MS, DEMO_STATUS
from traffic.progress import TerminalProgress
from traffic.spec import RequestSpec, spec_from_record

ProgressCallback = Callable[[int, int | None, int], None]

DEFAULT_CONCURRENCY = 32
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class UnparsedLine:
    line_no: int | None
    reason: str


@dataclass
class TrafficResult:
    """What a traffic run did. ``requests`` = answered + transport errors."""

    requests: int = 0
    responses: Counter[int] = field(default_factory=Counter)  # status -> count
    transport_errors: int = 0
    transport_error_samples: list[str] = field(default_factory=list)
    unparsed_lines: int = 0
    unparsed_samples: list[UnparsedLine] = field(default_factory=list)
    elapsed: float = 0.0  # seconds
    bytes_received: int = 0  # response body bytes
    in_flight: int = 0  # requests started and not finished (non-zero only after an interruption)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def describe(self) -> str:
        """A few human lines for the end of a run."""
        statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(self.responses.items()))
        lines = [
            f"{self.requests:,} requests in {self.elapsed:.1f}s ({self.requests_per_second:,.0f}/s), "
            f"{self.bytes_received / 1e6:,.1f} MB received",
            f"responses by status: {statuses or 'none'}",
        ]
        if self.in_flight:
            lines.append(
                f"interrupted with {self.in_flight:,} requests in flight (not counted above; the gateway "
                "may have answered some of them)"
            )
        if self.transport_errors:
            lines.append(
                f"transport errors: {self.transport_errors:,} (first: {self.transport_error_samples[0]})"
            )
        if self.unparsed_lines:
            first = "; ".join(
                f"line {u.line_no}: {u.reason}" if u.line_no is not None else u.reason
                for u in self.unparsed_samples[:3]
            )
            lines.append(f"unparsed lines: {self.unparsed_lines:,} ({first})")
        return "\n".join(lines)


def _resolve_progress(progress: bool | ProgressCallback | None, label: str) -> ProgressCallback | None:
    if progress is True:
        return TerminalProgress(label=label)
    if progress is False or progress is None:
        return None
    return progress


class _Sender:
    """Turns specs into requests on one session and accumulates a :class:`TrafficResult`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        keep_samples: int,
        result: TrafficResult | None = None,
    ) -> None:
        base = URL(base_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"base URL must be http(s)://host[:port], got {base_url!r}")
        self.session = session
        self.scheme = base.scheme
        self.host = base.host
        self.port = base.port
        self.prefix = base.raw_path.rstrip("/")
        self.keep_samples = keep_samples
        self.result = result if result is not None else TrafficResult()

    def url(self, target: str) -> URL:
        path, sep, query = target.partition("?")
        if sep and not query:
            path = target  # yarl drops an empty query; keep the lone "?" in the raw path
        return URL.build(
            scheme=self.scheme,
            host=self.host,
            port=self.port,
            path=self.prefix + path,
            query_string=query,
            encoded=True,  # exactly as logged: no quoting, no dot-segment removal
        )

    async def send(self, spec: RequestSpec) -> None:
        headers = {DEMO_STATUS: str(spec.status)}
        if spec.body_bytes is not None:
            headers[DEMO_BYTES] = str(spec.body_bytes)
        if spec.delay_ms > 0:
            headers[DEMO_DELAY_MS] = f"{spec.delay_ms:.3f}"
        if spec.client_ip is not None:
            headers["X-Forwarded-For"] = spec.client_ip
        if spec.user_agent is not None:
            headers["User-Agent"] = spec.user_agent
        headers.update(spec.headers)
        result = self.result
        result.in_flight += 1
        cancelled = False
        try:
            async with self.session.request(
                spec.method,
                self.url(spec.target),
                headers=headers,
                data=spec.body or None,
                allow_redirects=False,
            ) as resp:
                received = 0
                while chunk := await resp.content.readany():
                    received += len(chunk)
                result.responses[resp.status] += 1
                result.bytes_received += received
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C) mid-request: it stays counted in flight, neither sent nor lost,
            # because the gateway may already have answered (and the collector counted) it.
            cancelled = True
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            result.transport_errors += 1
            if len(result.transport_error_samples) < self.keep_samples:
                where = f"line {spec.line_no}: " if spec.line_no is not None else ""
                detail = str(exc) or type(exc).__name__
                result.transport_error_samples.append(
                    f"{where}{spec.method} {spec.target[:80]}: {type(exc).__name__}: {detail}"
                )
        finally:
            if not cancelled:
                result.in_flight -= 1
        result.requests += 1


async def send_all(
    specs: Iterable[RequestSpec | ParseError],
    base_url: str,
    *,
    speed: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    total: int | None = None,
    progress: bool | ProgressCallback | None = None,
    timeout: float = 120.0,
    keep_samples: int = 10,
    label: str = "traffic",
    result: TrafficResult | None = None,
) -> TrafficResult:
    """Send every spec (a ParseError item is counted as an unparsed line) and return the counts.

    ``total`` is the number of items expected, for the progress display only. ``result``, when
    given, is filled in as the run goes (and returned), so a caller interrupted mid-run (Ctrl-C
    cancels this coroutine) still knows how much was sent.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (None: as fast as possible)")
    callback = _resolve_progress(progress, label)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60.0, enable_cleanup_closed=False)
    session = aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        # Only the headers the spec gives: no aiohttp User-Agent, no Accept-Encoding.
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10.0),
        read_bufsize=1 << 20,
    )
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    start_loop = loop.time()
    queue: asyncio.Queue[RequestSpec | None] = asyncio.Queue(maxsize=concurrency * 2)
    async with session:
        sender = _Sender(session, base_url, keep_samples, result)
        result = sender.result

        def report(final: bool = False) -> None:
            if callback is not None:
                done = result.requests + result.unparsed_lines
                # At the end the true total is known (a duration-bound mix only estimates it).
                callback(done, done if final else total, result.transport_errors)

        async def worker() -> None:
            while (spec := await queue.get()) is not None:
                await sender.send(spec)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.1)
                report()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        tick = asyncio.create_task(ticker()) if callback is not None else None
        try:
            for item in specs:
                if isinstance(item, ParseError):
                    result.unparsed_lines += 1
                    if len(result.unparsed_samples) < keep_samples:
                        result.unparsed_samples.append(UnparsedLine(item.line_no, item.reason))
                    continue
                if speed is not None:
                    wait = start_loop + item.at / speed - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                await queue.put(item)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            if tick is not None:
                tick.cancel()
            # Also when interrupted: the rate of a partial run is still worth reporting.
            result.elapsed = time.monotonic() - started
        report(final=True)
        if isinstance(callback, TerminalProgress):
            callback.finish()
    return result


def specs_from_log(reader: LogReader) -> Iterator[RequestSpec | ParseError]:
    """Request specs for a log's records, timed from its first parsed record."""
    origin = None
    for line_no, item in reader:
        if isinstance(item, ParseError):
            yield item
            continue
        record: LogRecord = item
        if origin is None:
            origin = record.timestamp
        try:
            yield spec_from_record(record, origin, line_no)
        except ParseError as exc:
            yield exc


def count_lines(path: Path) -> int:
    """Lines in a file, as :class:`LogReader` counts them (a last line without newline counts)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


async def replay_file(
    path: Path | str,
    base_url: str,
    *,
    speed: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool | ProgressCallback | None = None,
    timeout: float = 120.0,
    result: TrafficResult | None = None,
) -> TrafficResult:
    """Replay an Apache/nginx combined (or common) access log against ``base_url``."""
    path = Path(path)
    return await send_all(
        specs_from_log(LogReader(path)),
        base_url,
        speed=speed,
        concurrency=concurrency,
        total=count_lines(path),
        progress=progress,
        timeout=timeout,
        label=f"replay {path.name}",
        result=result,
    )


async def run_synthetic(
    base_url: str,
    *,
    duration: float | None = 30.0,
    count: int | None = None,
    rps: float = 200.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool | ProgressCallback | None = None,
    seed: int = 1,
    timeout: float = 120.0,
    result: TrafficResult | None = None,
) -> TrafficResult:
    """The built-in synthetic mix at ``rps`` for ``duration`` seconds (or ``count`` requests)."""
    from traffic.synthetic import SyntheticMix, expected_count

    mix = SyntheticMix(seed=seed, rps=rps, duration=duration, count=count)
    return await send_all(
        mix.specs(),
        base_url,
        speed=1.0,  # synthetic ``at`` values are real seconds
        concurrency=concurrency,
        total=expected_count(rps=rps, duration=duration, count=count),
        progress=progress,
        timeout=timeout,
        label="synthetic",
        result=result,
    )
