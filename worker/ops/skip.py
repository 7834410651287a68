"""``carsys-ingest skip --partition P --offset O``: an operator's explicit decision to give up a record batch that
cannot be decoded (see worker.runtime.batches), so that its partition moves on.

It skips only what the worker itself could not read, never a readable record:
- the batch at P/O is read with the worker's own client and settings; if it decodes here, nothing is skipped (exit 1);
- the group's next offset for P must already stand at that batch: records between it and the batch (not yet consumed)
  would be skipped too, so that is refused unless ``--force``;
- it moves forward only, to the offset after the batch, in PostgreSQL (``consumer_offsets``, where the consumer resumes
  from) and in Kafka's committed offsets. A second run is a no-op ("already past").

Workers may be running: the one holding P re-reads PostgreSQL's offset every few seconds, seeks past the batch and
commits it to Kafka itself (Kafka refuses a commit from outside a group that has members, which is then reported).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from worker import config
from worker.runtime import batches, migrations
from worker.runtime.app import open_pool
from worker.runtime.batches import BadBatch
from worker.runtime.kafka import consumer_options
from worker.runtime.store import Store

_READ_TIMEOUT_S = 10.0

_ADVANCE = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()
"""


class Refused(Exception):
    """The skip would lose readable records or has nothing to skip; the message says why."""


async def first_at(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int | None) -> Any:
    """The first thing at ``offset`` (None: the partition's start): a record, a BadBatch, or None at the end."""
    if offset is None:
        await consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, offset)
    deadline = time.monotonic() + _READ_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
        except Exception as exc:  # whatever the codec raised; only a located batch is ours to report
            bad = batches.locate(exc)
            if bad is None:
                raise
            return bad
        if got.get(tp):
            return got[tp][0]
    return None


async def skip(settings: config.Settings, *, partition: int, offset: int, force: bool) -> str:
    topic = settings.kafka_topic
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(**{**consumer_options(settings), "client_id": f"{settings.kafka_client_id}-skip"})
    await consumer.start()
    try:
        consumer.assign([tp])
        bad = await first_at(consumer, tp, offset)
        if not isinstance(bad, BadBatch):
            raise Refused(f"the record(s) at {topic}/{partition} offset {offset} can be read: nothing to skip")
        await migrations.migrate(settings.database_url)
        pool = await open_pool(settings)
        try:
            return await _advance(consumer, pool, settings, bad, force=force)
        finally:
            await pool.close()
    finally:
        await consumer.stop()


async def _advance(
    consumer: AIOKafkaConsumer, pool: asyncpg.Pool, settings: config.Settings, bad: BadBatch, *, force: bool
) -> str:
    tp = TopicPartition(bad.topic, bad.partition)
    target = bad.last_offset + 1
    stored = (await Store(pool, group_id=settings.kafka_group_id).stored_offsets(bad.topic)).get(bad.partition)
    committed = await consumer.committed(tp)
    current = stored if stored is not None else committed
    if current is not None and current >= target and (committed or 0) >= target:
        return f"already past: {bad.topic}/{bad.partition} resumes at offset {current}; nothing changed"
    if not force and (current is None or current < bad.base_offset):
        await _refuse_unread(consumer, tp, current, bad)
    await pool.execute(_ADVANCE, settings.kafka_group_id, bad.topic, bad.partition, target)
    lines = [
        f"skipped {bad.topic}/{bad.partition} offsets {bad.base_offset}-{bad.last_offset} (codec {bad.codec};"
        f" {bad.cause}): those records are not applied and not dead-lettered",
        f"PostgreSQL: group {settings.kafka_group_id} resumes partition {bad.partition} at offset {target}",
    ]
    try:
        await consumer.commit({tp: target})
        lines.append(f"Kafka: committed offset {target}")
    except KafkaError as exc:
        lines.append(
            f"Kafka: not committed from here ({type(exc).__name__}: the group has running members); the worker"
            f" holding partition {bad.partition} seeks past the batch within seconds and commits it"
        )
    return "\n".join(lines)


async def _refuse_unread(consumer: AIOKafkaConsumer, tp: TopicPartition, current: int | None, bad: BadBatch) -> None:
    first = await first_at(consumer, tp, current)
    if first is not None and not isinstance(first, BadBatch) and first.offset < bad.base_offset:
        raise Refused(
            f"the group resumes {tp.topic}/{tp.partition} at offset {first.offset}, before the batch at"
            f" {bad.base_offset}: skipping now would also skip the records in between, which the worker has not"
            " read yet; wait until it reports this batch, or pass --force"
        )


def skip_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    if args.partition < 0 or args.offset < 0:
        print("carsys-ingest skip: --partition and --offset must not be negative", file=sys.stderr)
        return 2
    try:
        print(asyncio.run(skip(settings, partition=args.partition, offset=args.offset, force=args.force)))
    except Refused as exc:
        print(f"carsys-ingest skip: refused: {exc}", file=sys.stderr)
        return 1
    return 0
