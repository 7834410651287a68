"""Progress of the tools' long runs (reading a whole dead-letter topic, a replay), on stderr so stdout stays the
result: a bar with rate and ETA redrawn in place on a terminal, periodic JSON lines otherwise (a CI log or a pipe
keeps one line per interval, not thousands of redraws). No dependency: a bar is a few characters.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

_BAR_WIDTH = 24
_REDRAW_S = 0.1  # a terminal redraw at most this often
_LINE_S = 5.0  # a JSON line at most this often


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far; None before there is a rate."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0, total - done) / (done / elapsed_s)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def bar_text(label: str, done: int, total: int, elapsed_s: float) -> str:
    """``label [#####-----]  45%  45,000/100,000  12,345/s  ETA 4s``."""
    fraction = min(1.0, done / total) if total > 0 else 1.0
    filled = int(fraction * _BAR_WIDTH)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"{label} [{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {fraction:4.0%}  {done:,}/{total:,}"
        f"  {rate:,.0f}/s  ETA {_duration(eta_s(done, total, elapsed_s))}"
    )


def line_text(label: str, done: int, total: int, elapsed_s: float, *, final: bool = False) -> str:
    eta = eta_s(done, total, elapsed_s)
    return json.dumps(
        {
            "progress": label,
            "done": done,
            "total": total,
            "elapsed_s": round(elapsed_s, 1),
            "rate_per_s": round(done / elapsed_s, 1) if elapsed_s > 0 else None,
            "eta_s": None if eta is None else round(eta, 1),
            "final": final,
        }
    )


class Progress:
    """``update(done)`` as work advances, ``close()`` at the end. ``total`` may grow (``grow``) as it becomes known."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interactive = self._stream.isatty() if interactive is None else interactive
        self._clock = clock
        self._started = clock()
        self._shown_at: float | None = None
        self._lines = 0

    def update(self, done: int) -> None:
        self.done = done
        now = self._clock()
        every = _REDRAW_S if self._interactive else _LINE_S
        if (now - (self._shown_at if self._shown_at is not None else self._started)) >= every:
            self._show(now)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def close(self) -> None:
        now = self._clock()
        if self._interactive and self._shown_at is not None:
            self._stream.write("\r" + bar_text(self.label, self.done, self.total, now - self._started) + "\n")
        elif not self._interactive and self._lines:
            # A final line only after periodic ones: a short run says nothing on stderr.
            self._stream.write(line_text(self.label, self.done, self.total, now - self._started, final=True) + "\n")
        self._stream.flush()

    def _show(self, now: float) -> None:
        self._shown_at = now
        elapsed = now - self._started
        if self._interactive:
            self._stream.write("\r" + bar_text(self.label, self.done, self.total, elapsed))
        else:
            self._stream.write(line_text(self.label, self.done, self.total, elapsed) + "\n")
            self._lines += 1
        self._stream.flush()
