"""From Kafka records to store items: decode, then normalise. Pure: no I/O, so every branch is unit-tested.

A record either becomes an ``Item`` for the store or a ``Failure`` (the record plus the PermanentError saying why),
which goes to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from schemas.decoder import decode
from worker.errors import DecodeError, NormaliseError, PermanentError
from worker.model import NormalisedEvent
from worker.normaliser import normalise
from worker.store import Item, Offset


class SourceRecord(Protocol):
    """The parts of an aiokafka ConsumerRecord the worker uses."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Failure(msgspec.Struct, frozen=True):
    record: SourceRecord
    error: PermanentError


TOMBSTONE = (
    "the record has a null value (a Kafka tombstone), not an event; the contract deletes with an"
    " appointment.deleted event"
)


def offset_of(record: SourceRecord) -> Offset:
    return Offset(topic=record.topic, partition=record.partition, offset=record.offset)


def to_event(value: bytes | None) -> NormalisedEvent:
    """Decode and normalise one record value, raising the PermanentError of the stage that refused it."""
    if value is None:
        # A null value is how Kafka deletes a key from a compacted topic; the contract expresses deletion as an
        # `appointment.deleted` event instead, so the producer made a mistake worth saying plainly.
        raise DecodeError(TOMBSTONE)
    try:
        event = decode(value)
    except RecursionError:
        # msgspec refuses JSON nested deeper than Python's recursion limit (even inside an ignored field) with a
        # RecursionError: one such record used to crash the worker on every restart, blocking its partition.
        raise DecodeError("not valid JSON (nested too deeply)") from None
    try:
        return normalise(event)
    except (ValueError, ArithmeticError) as exc:
        # The normaliser's own checks raise NormaliseError; anything else slipping out is a bug we must not crash on.
        raise NormaliseError(f"normalisation failed: {type(exc).__name__}") from None


def prepare(record: SourceRecord) -> Item | Failure:
    try:
        return Item(event=to_event(record.value), offset=offset_of(record))
    except PermanentError as exc:
        return Failure(record=record, error=exc)


def split(records: Sequence[SourceRecord]) -> tuple[list[Item], list[Failure]]:
    items: list[Item] = []
    failures: list[Failure] = []
    for record in records:
        prepared = prepare(record)
        (items if isinstance(prepared, Item) else failures).append(prepared)  # type: ignore[arg-type]
    return items, failures
