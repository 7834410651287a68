"""Producing to and reading back from a real broker, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

Headers = list[tuple[str, bytes]]
# (key, value) or (key, value, headers)
Record = tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, Headers]
MAX_REQUEST_BYTES = 8 * 1024 * 1024


async def produce(bootstrap: str, topic: str, records: Iterable[Record], *, headers: Headers | None = None) -> int:
    """Send every record (acks=all, idempotent) and wait for all of them; returns how many were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_request_size=MAX_REQUEST_BYTES
    )
    await producer.start()
    try:
        futures = []
        for record in records:
            key, value = record[0], record[1]
            futures.append(await producer.send(topic, value=value, key=key, headers=_headers(record, headers)))
        for future in futures:
            await future
    finally:
        await producer.stop()
    return len(futures)


def _headers(record: Record, default: Headers | None) -> Headers | None:
    return record[2] if len(record) == 3 else default


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic) or set()
    if not found:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(found)]


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await _partitions(consumer, topic))
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, topic: str, group: str, partitions: Sequence[int]) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions}
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, *, timeout_s: float = 10) -> list[ConsumerRecord[Any, Any]]:
    """Every record now in ``topic``, from the beginning to the end offsets (no group, nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[ConsumerRecord[Any, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=200)
            out += [r for rs in batch.values() for r in rs]
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()
