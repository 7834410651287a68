"""The dead-letter producer: sends letters (worker/headers.py says what a letter is) and waits for every
acknowledgement before the source offsets may move."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from worker.errors import PermanentError, TransientError
from worker.headers import MAX_MESSAGE_CHARS, VALUE_OMITTED, dealer_of, letter_headers, worker_version
from worker.normalise.records import SourceRecord

log = structlog.get_logger(__name__)


class DeadLetterProducer:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._version = worker_version()

    async def send(self, failures: Sequence[tuple[SourceRecord, PermanentError]]) -> None:
        """Send every letter and wait for all acknowledgements. A broker problem is a TransientError."""
        if not failures:
            return
        now = dt.datetime.now(dt.UTC)
        letters = [
            (record, error, letter_headers(record, error, failed_at=now, version=self._version))
            for record, error in failures
        ]
        try:
            outcomes = await self._send_all([(r.key, r.value, h) for r, _, h in letters])
            too_large = [
                (r.key, None, [*h, (VALUE_OMITTED, str(len(r.value or b"")).encode())])
                for (r, _, h), outcome in zip(letters, outcomes, strict=True)
                if isinstance(outcome, MessageSizeTooLargeError)
            ]
            # A letter the dead-letter topic refuses for its size would otherwise be retried for ever: it goes
            # without its value (the record stays in the source topic, at the coordinates the headers give).
            await self._send_all(too_large, raise_errors=True)
        except KafkaError as exc:
            raise TransientError(f"dead-letter topic unavailable: {type(exc).__name__}") from None
        for record, error, _ in letters:
            log.warning(
                "dead-lettered",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                dealer_id=dealer_of(record.key),
                stage=error.stage,
                error_class=type(error).__name__,
                reason=str(error)[:MAX_MESSAGE_CHARS],
            )

    async def _send_all(
        self,
        letters: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
        *,
        raise_errors: bool = False,
    ) -> list[BaseException | None]:
        """Send all, then wait for all; the outcome of each (None when acknowledged)."""
        outcomes: list[BaseException | None] = []
        futures = []
        for key, value, headers in letters:
            try:
                futures.append(await self._producer.send(self.topic, value=value, key=key, headers=headers))
            except MessageSizeTooLargeError as exc:  # refused before sending: larger than max_request_size
                futures.append(_failed(exc))
        for future in futures:
            try:
                await future
                outcomes.append(None)
            except MessageSizeTooLargeError as exc:
                if raise_errors:
                    raise
                outcomes.append(exc)
        return outcomes


def _failed(exc: BaseException) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future
