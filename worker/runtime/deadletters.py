"""The dead-letter topic: what a letter is (pure), and the producer that sends them (I/O).

A letter is the original record, key and value byte-identical, original headers kept, plus ``dlq.*`` headers that
say where it came from and why it failed. Error messages never quote record values (see worker.errors).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from worker.errors import PermanentError, TransientError
from worker.normalise.records import SourceRecord

log = structlog.get_logger(__name__)

PREFIX = "dlq."
REPLAY_COUNT = "dlq.replay.count"
VALUE_OMITTED = "dlq.value.omitted"  # the letter was too large for the topic: value dropped, its size in bytes
MAX_MESSAGE_CHARS = 500
# A letter is the source record plus ~1 KB of headers, and the consumer fetches records of up to 8 MB
# (app.consumer_options): the producer (and the topic, see app.create_topics) must take at least that much, or a
# large invalid record is refused as MessageSizeTooLarge, retried as a TransientError forever, and blocks its partition.
MAX_LETTER_BYTES = 16 * 1024 * 1024


def worker_version() -> str:
    try:
        return importlib.metadata.version("carsys-ingest")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in reversed(headers):
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def replay_count(headers: Sequence[tuple[str, bytes]]) -> int:
    raw = header(headers, REPLAY_COUNT)
    return int(raw) if raw and raw.isdigit() else 0


def letter_headers(
    record: SourceRecord, error: PermanentError, *, failed_at: dt.datetime, version: str
) -> list[tuple[str, bytes]]:
    # Earlier dlq.* headers (a replayed letter failing again) are replaced, not stacked; the replay count carries on.
    kept = [(k, v) for k, v in record.headers if not k.startswith(PREFIX)]
    added = {
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.original.timestamp": str(record.timestamp),
        "dlq.stage": error.stage,
        "dlq.error.class": type(error).__name__,
        "dlq.error.message": str(error)[:MAX_MESSAGE_CHARS],
        "dlq.failed_at": failed_at.isoformat(timespec="milliseconds"),
        "dlq.worker.version": version,
        REPLAY_COUNT: str(replay_count(record.headers)),
    }
    return kept + [(k, v.encode()) for k, v in added.items()]


def producer_options(compression: str = "none") -> dict[str, Any]:
    # A letter is acknowledged by all in-sync replicas, exactly once per send, before the source offset moves.
    return {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_request_size": MAX_LETTER_BYTES,
        "compression_type": None if compression == "none" else compression,
    }


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


def dealer_of(key: bytes | None) -> str | None:
    """The dealer id from a contract key (``dealer/dms``); nothing from a key that is not one."""
    if not key or b"/" not in key:
        return None
    dealer = key.split(b"/", 1)[0]
    return dealer.decode("utf-8", "replace") if 0 < len(dealer) <= 64 else None
