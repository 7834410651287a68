"""From Kafka records to store items: decode, then normalise. Pure: no I/O, so every branch is unit-tested.

A record either becomes an ``Item`` for the store or a ``Failure`` (the record plus the PermanentError saying why),
which goes to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

import msgspec

from schemas.contract import Event, key_for
from schemas.decoder import NotJson, NotV1, decode
from worker.errors import ContractError, DecodeError, NormaliseError, PermanentError
from worker.normalise.model import NormalisedEvent, dms_number_of
from worker.normalise.normaliser import normalise


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


class Offset(msgspec.Struct, frozen=True, gc=False):
    topic: str
    partition: int
    offset: int  # the offset of the record itself (the stored "next offset" is offset + 1)


class Item(msgspec.Struct, frozen=True, gc=False):
    """One record of a batch: its normalised event and where it came from, and the decoded event it was normalised
    from (the rows' source snapshots, sql/005; None where there is none, e.g. events built in tests). Never logged:
    it holds personal values as they arrived."""

    event: NormalisedEvent
    offset: Offset
    source: Event | None = None


def next_offsets(offsets: Iterable[Offset]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the next offset to consume once these records are done."""
    result: dict[tuple[str, int], int] = {}
    for off in offsets:
        key = (off.topic, off.partition)
        result[key] = max(result.get(key, 0), off.offset + 1)
    return result


class Failure(msgspec.Struct, frozen=True):
    record: SourceRecord
    error: PermanentError


TOMBSTONE = (
    "the record has a null value (a Kafka tombstone), not an event; the contract deletes with an"
    " appointment.deleted event"
)


def offset_of(record: SourceRecord) -> Offset:
    return Offset(topic=record.topic, partition=record.partition, offset=record.offset)


def decode_value(value: bytes | None) -> Event:
    """The contract event in one record value, or the worker's DecodeError / ContractError saying why not."""
    if value is None:
        # A null value is how Kafka deletes a key from a compacted topic; the contract expresses deletion as an
        # `appointment.deleted` event instead, so the producer made a mistake worth saying plainly.
        raise DecodeError(TOMBSTONE)
    try:
        return decode(value)
    except NotJson as exc:
        raise DecodeError(str(exc)) from None
    except NotV1 as exc:
        raise ContractError(str(exc)) from None
    except RecursionError:
        # msgspec refuses JSON nested deeper than Python's recursion limit (even inside an ignored field) with a
        # RecursionError: one such record used to crash the worker on every restart, blocking its partition.
        raise DecodeError("not valid JSON (nested too deeply)") from None


def to_event(value: bytes | None) -> NormalisedEvent:
    """Decode and normalise one record value, raising the PermanentError of the stage that refused it."""
    return normalised(decode_value(value))


def normalised(event: Event) -> NormalisedEvent:
    try:
        return normalise(event)
    except (ValueError, ArithmeticError) as exc:
        # The normaliser's own checks raise NormaliseError; anything else slipping out is a bug we must not crash on.
        raise NormaliseError(f"normalisation failed: {type(exc).__name__}") from None


def prepare(record: SourceRecord) -> Item | Failure:
    try:
        source = decode_value(record.value)
        return Item(event=normalised(source), offset=offset_of(record), source=source)
    except PermanentError as exc:
        return Failure(record=record, error=exc)


KeyMismatch = Literal["missing", "dealer_id", "dms_number"]


def key_mismatch(key: bytes | None, event: NormalisedEvent) -> KeyMismatch | None:
    """How a record's key disagrees with its event's ``"{dealer_id}/{dms_number}"`` (trimmed), or None if it agrees.

    The event wins either way: rows are keyed by its dealer_id and dms_number. A disagreeing or missing key is a
    producer bug all the same: the appointment's events may be spread over partitions and reach the worker out of
    order (the newest still wins, by occurred_at, but only once all have arrived). A dealer id never holds '/', so
    the key's first '/' separates the two parts.
    """
    if key == key_for(event.dealer_id, dms_number_of(event)):
        return None
    if key is None:
        return "missing"
    return "dealer_id" if key.partition(b"/")[0] != event.dealer_id.encode() else "dms_number"


def key_mismatches(records: Sequence[SourceRecord], items: Sequence[Item]) -> list[tuple[Item, KeyMismatch]]:
    """The items (prepared from ``records``) whose record key disagrees with the event."""
    keys = {offset_of(r): r.key for r in records}
    found: list[tuple[Item, KeyMismatch]] = []
    for item in items:
        mismatch = key_mismatch(keys[item.offset], item.event)
        if mismatch is not None:
            found.append((item, mismatch))
    return found


def split(records: Sequence[SourceRecord]) -> tuple[list[Item], list[Failure]]:
    items: list[Item] = []
    failures: list[Failure] = []
    for record in records:
        prepared = prepare(record)
        (items if isinstance(prepared, Item) else failures).append(prepared)  # type: ignore[arg-type]
    return items, failures
