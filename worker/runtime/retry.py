"""The one retry policy factory: exponential backoff with full jitter, bounded by attempts *and* a deadline.

Only ``TransientError`` is retried. When the policy gives up it re-raises the last TransientError and the caller
decides (the consumer pauses its partitions and tries the same batch again; it never dead-letters an outage).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
import tenacity

from worker.errors import TransientError

log = structlog.get_logger(__name__)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    sleep_s = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "retrying after transient error",
        attempt=state.attempt_number,
        sleep_s=round(sleep_s, 3),
        error_class=type(exc).__name__ if exc else None,
    )


def policy(
    *,
    attempts: int = 8,
    deadline_s: float = 60.0,
    initial_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tenacity.AsyncRetrying:
    """A fresh AsyncRetrying: ``async for attempt in policy(): with attempt: ...``.

    ``sleep`` lets the consumer keep polling Kafka (partitions paused) while it waits, so it stays in its group.
    """
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=tenacity.wait_random_exponential(multiplier=initial_backoff_s, max=max_backoff_s),
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(deadline_s),
        before_sleep=_log_retry,
        sleep=sleep,
        reraise=True,
    )


__all__ = ["policy"]
