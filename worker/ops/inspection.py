"""``carsys-ingest dlq list`` and ``dlq show``: read the dead-letter topic and tell operators what is in it.

The topic is read without a consumer group (nothing is committed, the worker's group is untouched) from the
beginning, or the ``--offset`` start, up to the end offsets taken when reading starts: letters arriving meanwhile
are left for the next run, so a listing is a consistent snapshot and always finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from worker import config
from worker.errors import ConfigError, TransientError
from worker.headers import MAX_LETTER_BYTES
from worker.ops.letters import Filters, Letter, Origin, letter_view, render_summary, render_view, select, summarise
from worker.ops.progress import Progress
from worker.runtime.kafka import kafka_options

_FETCH_TIMEOUT_MS = 500


def consumer_for(settings: config.Settings, purpose: str) -> AIOKafkaConsumer:

    return AIOKafkaConsumer(
        **kafka_options(settings),
        client_id=f"{settings.kafka_client_id}-{purpose}",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_LETTER_BYTES,  # letters are as large as the dead-letter producer allows
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str, filters: Filters) -> list[TopicPartition]:
    if topic in await consumer.topics():
        # Without a subscription the consumer tracks no topic's metadata; aiokafka has no public call for one topic.
        await consumer._client.add_topic(topic)
    found = consumer.partitions_for_topic(topic)
    if not found:
        raise ConfigError(f"topic {topic} does not exist (KAFKA_DLQ_TOPIC; `carsys-ingest init` creates it)")
    wanted = sorted(p for p in found if filters.partitions is None or p in filters.partitions)
    return [TopicPartition(topic, p) for p in wanted]


async def _seek(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], filters: Filters
) -> tuple[dict[Any, int], dict[Any, int]]:
    """Position every partition at the first wanted offset; return where reading starts and stops (exclusive)."""
    consumer.assign(partitions)
    firsts = await consumer.beginning_offsets(partitions)
    ends: dict[Any, int] = await consumer.end_offsets(partitions)
    starts: dict[Any, int] = {}
    for tp in partitions:
        low = filters.offsets.low if filters.offsets else 0
        starts[tp] = max(firsts[tp], low)
        consumer.seek(tp, starts[tp])
        if filters.offsets and filters.offsets.high is not None:
            ends[tp] = min(ends[tp], filters.offsets.high + 1)
    return starts, ends


def _letter(record: Any) -> Letter:
    return Letter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=record.timestamp,
        key=record.key,
        value=record.value,
        headers=tuple((k, bytes(v or b"")) for k, v in record.headers),
    )


async def _pending(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> list[TopicPartition]:
    return [tp for tp, end in ends.items() if await consumer.position(tp) < end]


RawFilter = Callable[[bytes | None, bytes | None], bool]


def raw_filter(filters: Filters, keep: RawFilter | None) -> RawFilter | None:
    """A test on a record's key and value bytes, before a Letter is built: with ``--key`` (or ``keep``) most records
    of a large topic are dropped at the cost of a bytes comparison, never decoding a value or a header."""
    key = filters.key
    if key is None:
        return keep
    if keep is None:
        return lambda k, _v: k == key
    return lambda k, v: k == key or keep(k, v)


async def read_letters(
    settings: config.Settings, filters: Filters, *, keep: RawFilter | None = None, label: str = "reading dead letters"
) -> AsyncIterator[Letter]:
    """Every letter matching ``filters``, partition by partition in offset order, up to the snapshot's end.

    ``keep`` widens a ``--key`` filter (trace also wants the letters whose value names an event id); without a key
    filter it is the only raw test. Progress goes to stderr (worker.ops.progress).
    """
    consumer = consumer_for(settings, "dlq-reader")
    try:
        await consumer.start()  # inside: a consumer that failed to start still holds connections to close
        starts, ends = await _seek(consumer, await _partitions(consumer, settings.kafka_dlq_topic, filters), filters)
        test = raw_filter(filters, keep)
        progress = Progress(label, sum(max(0, ends[tp] - starts[tp]) for tp in ends))
        try:
            while pending := await _pending(consumer, ends):
                batch = await consumer.getmany(*pending, timeout_ms=_FETCH_TIMEOUT_MS)
                for tp in sorted(batch):
                    records = [r for r in batch[tp] if r.offset < ends[tp] and (test is None or test(r.key, r.value))]
                    for letter in select((_letter(r) for r in records), filters):
                        yield letter
                    if batch[tp]:
                        progress.advance(min(batch[tp][-1].offset + 1, ends[tp]) - batch[tp][0].offset)
        finally:
            progress.close()
    finally:
        await consumer.stop()


async def collect(settings: config.Settings, filters: Filters, limit: int | None = None) -> list[Letter]:
    letters: list[Letter] = []
    async for letter in read_letters(settings, filters):
        letters.append(letter)
        if limit is not None and len(letters) >= limit:
            break
    return letters


async def replayed_origins(dsn: str, origins: Iterable[Origin]) -> set[Origin] | None:
    """Which of ``origins`` ``dlq replay`` already republished; None when the progress table does not exist yet.

    Reads the replayed records of the origins' topics and intersects here: sending 100,000 origins to match them
    in SQL took seconds, while ``dlq_replays`` holds only what was ever replayed."""
    wanted = set(origins)
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"database unreachable: {type(exc).__name__}") from None
    try:
        rows = await conn.fetch(
            "SELECT original_topic, original_partition, original_offset FROM dlq_replays"
            " WHERE original_topic = ANY($1::text[])",
            sorted({o[0] for o in wanted}),
        )
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return {(r[0], r[1], r[2]) for r in rows} & wanted


def filters_or_exit(args: argparse.Namespace) -> Filters | None:
    try:
        return Filters.from_args(args)
    except ValueError as exc:
        print(f"carsys-ingest dlq: {exc}", file=sys.stderr)
        return None


def _print_json(document: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n")


def list_command(args: argparse.Namespace) -> int:
    """``dlq list``: counts by stage, error class and dealer, oldest/newest failure, how many were replayed."""
    filters = filters_or_exit(args)
    if filters is None:
        return 2
    settings = config.from_env()

    async def summary() -> Any:
        letters = await collect(settings, filters, args.limit)
        replayed = await replayed_origins(settings.database_url, (letter.identity for letter in letters))
        return summarise(letters, replayed)

    result = asyncio.run(summary())
    if args.json:
        _print_json({"topic": settings.kafka_dlq_topic, **msgspec.structs.asdict(result)})
    else:
        print(render_summary(settings.kafka_dlq_topic, result))
    return 0


def show_command(args: argparse.Namespace) -> int:
    """``dlq show``: matching letters with headers and error; payload values masked unless ``--reveal``."""
    filters = filters_or_exit(args)
    if filters is None:
        return 2
    settings = config.from_env()
    letters = asyncio.run(collect(settings, filters, args.limit))
    views = [letter_view(letter, reveal=args.reveal) for letter in letters]
    if args.json:
        _print_json(views)
    else:
        print("\n\n".join(render_view(view) for view in views) if views else "no matching letters")
    if args.reveal:
        print("carsys-ingest dlq show: payload values revealed (personal data): do not paste them", file=sys.stderr)
    return 0
