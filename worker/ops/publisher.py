"""``carsys-ingest publish [FILE|-]``: validate events with the worker's own decoder and produce them, keyed as the
contract says. What the Carsys side (and our tests and demos) use to put events on the topic.

All documents are validated before anything is produced: a file with one invalid event publishes nothing (exit 1)
unless ``--allow-invalid``, which publishes the invalid ones too, to exercise the dead-letter path. Reasons are the
decoder's value-free messages, so this output never quotes personal data.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from schemas.contract import record_key
from schemas.strict import findings
from worker import config
from worker.errors import PermanentError
from worker.normalise.records import decode_value
from worker.ops.inputs import documents, read_input
from worker.runtime.kafka import kafka_options, producer_options


class Prepared(msgspec.Struct, frozen=True):
    where: str  # "line 3", or "" for a single document
    key: bytes | None
    value: bytes
    error: str | None = None  # "ContractError: $.dealer_id: ..." when invalid


def fallback_key(value: bytes) -> bytes | None:
    """An invalid event's key when its dealer and appointment can still be read, so it lands where the valid events
    of the same appointment do; otherwise no key (any partition)."""
    try:
        raw = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None
    appointment = raw.get("appointment") if isinstance(raw, dict) else None
    dealer = raw.get("dealer_id") if isinstance(raw, dict) else None
    number = appointment.get("dms_number") if isinstance(appointment, dict) else None
    if isinstance(dealer, str) and isinstance(number, str):
        return f"{dealer}/{number}".encode()
    return None


def prepare(where: str, value: bytes, *, strict: bool = False) -> Prepared:
    """One event ready to produce, or invalid with the decoder's reason; with ``strict``, fields the contract does
    not define (which the worker ignores) and values it reads only after a repair make it invalid too."""
    try:
        event = decode_value(value)
    except PermanentError as exc:
        return Prepared(where, fallback_key(value), value, f"{type(exc).__name__}: {exc}")
    found = findings(value) if strict else []
    if found:
        return Prepared(where, record_key(event), value, "; ".join(found))
    return Prepared(where, record_key(event), value)


async def produce(settings: config.Settings, topic: str, records: Sequence[Prepared]) -> None:

    producer = AIOKafkaProducer(
        **kafka_options(settings), client_id=f"{settings.kafka_client_id}-publish", **producer_options()
    )
    try:
        await producer.start()  # inside: a producer that failed to start still holds connections to close
        futures: list[Any] = [await producer.send(topic, value=r.value, key=r.key) for r in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


def _label(p: Prepared) -> str:
    return p.where or "document"


def publish_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    try:
        strict: bool = getattr(args, "strict", False)
        prepared = [prepare(where, value, strict=strict) for where, value in documents(read_input(args.file))]
    except OSError as exc:
        print(f"carsys-ingest publish: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    invalid = [p for p in prepared if p.error]
    for p in invalid:
        print(f"{_label(p)}: {p.error}", file=sys.stderr)
    if invalid and not args.allow_invalid:
        print(f"carsys-ingest publish: {len(invalid)} invalid event(s); nothing published", file=sys.stderr)
        return 1
    topic = args.topic or settings.kafka_topic
    asyncio.run(produce(settings, topic, prepared))
    print(f"published {len(prepared)} event(s) to {topic} ({len(invalid)} invalid, allowed)")
    return 0
