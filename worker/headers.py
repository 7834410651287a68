"""The dead-letter format: a letter is the original record, key and value byte-identical, original headers kept,
plus ``dlq.*`` headers that say where it came from and why it failed. Pure: the producer (worker/runtime/deadletters.py)
writes these headers, the operator tools (worker/ops/) read them. Messages never quote record values (worker.errors).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from collections.abc import Sequence

from worker.errors import PermanentError
from worker.normalise.records import SourceRecord

PREFIX = "dlq."
REPLAY_COUNT = "dlq.replay.count"
VALUE_OMITTED = "dlq.value.omitted"  # the letter was too large for the topic: value dropped, its size in bytes
MAX_MESSAGE_CHARS = 500
# A letter is the source record plus ~1 KB of headers, and the consumer fetches records of up to 8 MB
# (app.consumer_options): the producer (and the topic, see app.create_topics) must take at least that much, or a
# large invalid record is refused as MessageSizeTooLarge, retried as a TransientError forever, and blocks its partition.
MAX_LETTER_BYTES = 16 * 1024 * 1024

# Every dlq.* header a letter can carry, and what it means: the dead-letter channel of schemas/asyncapi.yaml is
# generated from this (dev/asyncapi.py), and a test checks that letter_headers writes exactly these names.
MEANINGS: dict[str, str] = {
    "dlq.original.topic": "Topic of the record that failed.",
    "dlq.original.partition": "Partition of the record that failed (decimal).",
    "dlq.original.offset": "Offset of the record that failed (decimal); the letter is identified by the three.",
    "dlq.original.timestamp": "Kafka timestamp of the record that failed, milliseconds since the epoch (decimal).",
    "dlq.stage": "Where it failed: decode (not UTF-8 JSON, or a null value), contract (not a v1 event), normalise "
    "(no storable values), write (PostgreSQL refused the row).",
    "dlq.error.class": "The worker's error class, one per stage.",
    "dlq.error.message": "Why: a JSON path and a reason, or a rule or SQLSTATE; never a value from the record.",
    "dlq.failed_at": "When the worker dead-lettered it (RFC 3339, milliseconds).",
    "dlq.worker.version": "The worker build that dead-lettered it.",
    REPLAY_COUNT: "How often this record had been replayed (carsys-ingest dlq replay) before it failed (again).",
    VALUE_OMITTED: "Only when the letter was too large for the dead-letter topic: the value's size in bytes; the "
    "letter then has no value, and the record stays in the source topic at the dlq.original.* coordinates.",
}


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


def dealer_of(key: bytes | None) -> str | None:
    """The dealer id from a contract key (``dealer/dms``); nothing from a key that is not one."""
    if not key or b"/" not in key:
        return None
    dealer = key.split(b"/", 1)[0]
    return dealer.decode("utf-8", "replace") if 0 < len(dealer) <= 64 else None
