"""Waiting for a condition in a test, the demo or a benchmark: polled, bounded, and failing with what was awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from dev.process import WorkerProcess


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float = 60,
    every_s: float = 0.25,
    workers: Sequence[WorkerProcess] = (),
    what: str = "a condition",
) -> None:
    """``check`` becomes true within the timeout, and no worker that should be running dies meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive:
                raise AssertionError(w.death_note(what))
        if await check():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"not reached within {timeout_s:.0f}s: {what}")
