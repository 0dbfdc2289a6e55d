"""The progress line and the terminal renderer."""

from __future__ import annotations

import io

from traffic.progress import TerminalProgress, format_progress


def test_progress_with_total_shows_bar_rate_and_eta() -> None:
    text = format_progress(2_500, 10_000, 3, elapsed=5.0, width=10)
    assert text == "[##........]  25%  2,500/10,000  ETA 15s  500/s  transport errors 3"


def test_progress_at_the_end_shows_elapsed_time() -> None:
    text = format_progress(10, 10, 0, elapsed=125.0, width=4)
    assert text == "[####] 100%  10/10  in 2m05s  0/s  transport errors 0"


def test_progress_without_total_or_rate() -> None:
    assert format_progress(0, None, 0, elapsed=0.0) == "0 done in 0s  0/s  transport errors 0"
    assert "ETA --" in format_progress(0, 5, 0, elapsed=0.0)
    assert "ETA 1h23m" in format_progress(1, 5_000, 0, elapsed=1.0)


def test_terminal_redraws_in_place() -> None:
    out = io.StringIO()
    bar = TerminalProgress(out, label="t", tty=True, interval=0.0)
    bar(1, 4, 0)
    bar(2, 4, 0)
    bar.finish()
    text = out.getvalue()
    assert text.count("\r") == 3
    assert "\n" not in text[:-1] and text.endswith("\n")


def test_non_terminal_prints_plain_lines_and_throttles() -> None:
    out = io.StringIO()
    bar = TerminalProgress(out, label="t", tty=False, line_interval=3600.0)
    for i in range(100):
        bar(i, 100, 0)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first call and the final state
    assert "\r" not in out.getvalue()
    assert "99/100" in lines[-1]


def test_non_terminal_final_line_is_not_repeated() -> None:
    out = io.StringIO()
    bar = TerminalProgress(out, tty=False, line_interval=0.0)
    bar(5, 5, 0)
    bar.finish()
    assert len(out.getvalue().splitlines()) == 1
