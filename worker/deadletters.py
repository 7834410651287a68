"""The dead-letter topic: what a letter is (pure), and the producer that sends them (I/O).

A letter is the original record, key and value byte-identical, original headers kept, plus ``dlq.*`` headers that
say where it came from and why it failed. Error messages never quote record values (see worker.errors).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker.errors import PermanentError, TransientError
from worker.records import SourceRecord

log = structlog.get_logger(__name__)

PREFIX = "dlq."
REPLAY_COUNT = "dlq.replay.count"
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


def producer_options() -> dict[str, Any]:
    # A letter is acknowledged by all in-sync replicas, exactly once per send, before the source offset moves.
    return {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_request_size": MAX_LETTER_BYTES}


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
        try:
            futures = [
                await self._producer.send(
                    self.topic,
                    value=record.value,
                    key=record.key,
                    headers=letter_headers(record, error, failed_at=now, version=self._version),
                )
                for record, error in failures
            ]
            for future in futures:
                await future
        except KafkaError as exc:
            raise TransientError(f"dead-letter topic unavailable: {type(exc).__name__}") from None
        for record, error in failures:
            log.warning(
                "dead-lettered",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                stage=error.stage,
                error_class=type(error).__name__,
                reason=str(error)[:MAX_MESSAGE_CHARS],
            )
