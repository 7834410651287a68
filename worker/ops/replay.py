"""``carsys-ingest dlq replay``: republish dead letters to the topic they came from, once, with provenance.

What a replayed record is: the letter's key and value byte-identical, its original (non ``dlq.*``) headers, plus
``dlq.replay.count`` (the letter's count + 1; the worker carries it into a new letter if the record fails again),
``replay.of`` (``topic/partition/offset`` of the record that failed) and ``replay.at`` (when it was republished).

Guarantees, and where they come from:
- *Resumable, no double publishing*: progress is a PostgreSQL table (``dlq_replays``, sql/002), one row per original
  record, written right after the broker acknowledged the republished record. A second run skips what is there.
  A crash between the acknowledgement and the row republishes at most one chunk again on the next run, which is
  harmless: applying is idempotent (event ids, newest-wins guard), so PostgreSQL ends up the same.
- *Duplicate letters* of one original (a worker crash between letter and commit) are replayed once.
- *Loop guard*: a letter whose record was already replayed ``--max-replays`` times is refused unless ``--force``.
- *One replay at a time* per dead-letter topic (a PostgreSQL advisory lock), so two operators never race.

Why PostgreSQL rather than a compacted Kafka topic: the deployment already has it and migrates it, a primary key
makes "replayed once" a constraint instead of a convention, an advisory lock serialises concurrent runs, and
``dlq list`` answers "how many were replayed" with one query instead of reading a topic from the start.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from worker import config
from worker.errors import PermanentError, TransientError
from worker.headers import PREFIX, REPLAY_COUNT
from worker.normalise.records import to_event
from worker.ops.inspection import collect, filters_or_exit, replayed_origins
from worker.ops.letters import Filters, Letter, Origin, counts, origin_text, unique
from worker.ops.progress import Progress as Bar
from worker.runtime import migrations
from worker.runtime.kafka import kafka_options, producer_options

REPLAY_OF = "replay.of"
REPLAY_AT = "replay.at"
_CHUNK = 100

Status = Literal["replay", "already-replayed", "loop-guard", "no-origin"]


# --- pure parts -----------------------------------------------------------------------------------------------


def replay_headers(letter: Letter, origin: Origin, now: dt.datetime) -> list[tuple[str, bytes]]:
    """The republished record's headers: the original ones, a higher replay count and where it comes from."""
    # Earlier provenance (a record replayed before) is replaced: replay.of names the record that failed last.
    kept = [(k, v) for k, v in letter.headers if not k.startswith(PREFIX) and k not in (REPLAY_OF, REPLAY_AT)]
    return [
        *kept,
        (REPLAY_COUNT, str(letter.replay_count + 1).encode()),
        (REPLAY_OF, origin_text(origin).encode()),
        (REPLAY_AT, now.isoformat(timespec="milliseconds").encode()),
    ]


def status(letter: Letter, replayed: set[Origin], *, max_replays: int, force: bool) -> Status:
    if letter.origin is None:
        return "no-origin"
    if letter.origin in replayed:
        return "already-replayed"
    if letter.replay_count >= max_replays and not force:
        return "loop-guard"
    return "replay"


class Plan(msgspec.Struct, kw_only=True):
    to_replay: list[Letter]
    already_replayed: int
    duplicates: int
    refused: list[Letter]  # loop guard
    no_origin: list[Letter]


def plan(letters: Sequence[Letter], replayed: set[Origin], *, max_replays: int, force: bool, limit: int | None) -> Plan:
    kept, duplicates = unique(letters)
    by_status: dict[Status, list[Letter]] = {"replay": [], "already-replayed": [], "loop-guard": [], "no-origin": []}
    for letter in kept:
        by_status[status(letter, replayed, max_replays=max_replays, force=force)].append(letter)
    return Plan(
        to_replay=by_status["replay"][:limit] if limit is not None else by_status["replay"],
        already_replayed=len(by_status["already-replayed"]),
        duplicates=duplicates,
        refused=by_status["loop-guard"],
        no_origin=by_status["no-origin"],
    )


class Verdict(msgspec.Struct, kw_only=True):
    letter: str
    original: str
    would: Literal["succeed", "fail-again"]
    stage: str | None = None
    error_class: str | None = None
    reason: str | None = None


def verdict(letter: Letter) -> Verdict:
    """What the current code makes of the letter now. The write stage needs the database, so a letter that failed
    there and now decodes and normalises is reported as "succeed" with that caveat in the report."""
    where = {"letter": letter.coordinates, "original": origin_text(letter.identity)}
    try:
        to_event(letter.value)
    except PermanentError as exc:
        # PermanentError messages never quote record values (worker.errors), so they can be printed.
        return Verdict(**where, would="fail-again", stage=exc.stage, error_class=type(exc).__name__, reason=str(exc))
    return Verdict(**where, would="succeed")


def pace(sent: int, rate: float, started: float, now: float) -> float:
    """Seconds to wait before sending more so that ``sent`` letters took at least ``sent / rate`` seconds."""
    return max(0.0, started + sent / rate - now) if rate > 0 else 0.0


# --- progress (PostgreSQL) ------------------------------------------------------------------------------------


def _lock_key(dlq_topic: str) -> int:
    digest = hashlib.sha256(f"carsys-ingest:dlq-replay:{dlq_topic}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_RECORD = """
INSERT INTO dlq_replays (original_topic, original_partition, original_offset, dlq_topic, dlq_partition, dlq_offset,
                         replay_count, replayed_partition, replayed_offset)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::int[], $6::bigint[], $7::int[],
                     $8::int[], $9::bigint[])
ON CONFLICT DO NOTHING
"""


class Progress:
    """The ``dlq_replays`` table on one connection that also holds the replay lock for the run."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self._conn = conn

    async def lock(self, dlq_topic: str) -> bool:
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", _lock_key(dlq_topic)))

    async def record(self, done: Sequence[tuple[Letter, Any]]) -> None:
        rows = [(letter.origin, letter, meta) for letter, meta in done if letter.origin is not None]
        columns: list[list[Any]] = [
            [o[0] for o, _, _ in rows],
            [o[1] for o, _, _ in rows],
            [o[2] for o, _, _ in rows],
            [lt.topic for _, lt, _ in rows],
            [lt.partition for _, lt, _ in rows],
            [lt.offset for _, lt, _ in rows],
            [lt.replay_count + 1 for _, lt, _ in rows],
            [m.partition for _, _, m in rows],
            [m.offset for _, _, m in rows],
        ]
        await self._conn.execute(_RECORD, *columns)


# --- the run --------------------------------------------------------------------------------------------------


class Options(msgspec.Struct, frozen=True, kw_only=True):
    dry_run: bool
    rate: float
    max_replays: int
    force: bool
    limit: int | None
    to_topic: str | None = None  # a staging check: not the source topic, so nothing is recorded in dlq_replays
    verbose: bool = False


def producer_for(settings: config.Settings) -> AIOKafkaProducer:

    return AIOKafkaProducer(
        **kafka_options(settings), client_id=f"{settings.kafka_client_id}-replay", **producer_options()
    )


async def _send_chunk(
    producer: AIOKafkaProducer, chunk: Sequence[Letter], to_topic: str | None
) -> list[tuple[Letter, Any]]:
    now = dt.datetime.now(dt.UTC)
    futures = []
    for letter in chunk:
        assert letter.origin is not None  # plan() only lets letters with an origin through
        headers = replay_headers(letter, letter.origin, now)
        topic = to_topic or letter.origin[0]
        futures.append(await producer.send(topic, value=letter.value, key=letter.key, headers=headers))
    return [(letter, await future) for letter, future in zip(chunk, futures, strict=True)]


async def republish(
    settings: config.Settings, progress: Progress | None, letters: Sequence[Letter], options: Options
) -> int:
    """Send in chunks, each acknowledged by the broker and then recorded (unless ``progress`` is None: a replay to
    another topic), paced to ``options.rate`` letters per second; progress on stderr."""
    producer = producer_for(settings)
    await producer.start()
    rate = options.rate
    started, sent = time.monotonic(), 0
    step = max(1, min(_CHUNK, int(rate) if rate > 0 else _CHUNK))
    shown = Bar("replaying", len(letters))
    try:
        for i in range(0, len(letters), step):
            await asyncio.sleep(pace(sent, rate, started, time.monotonic()))
            done = await _send_chunk(producer, letters[i : i + step], options.to_topic)
            if progress is not None:
                await progress.record(done)
            sent += len(done)
            shown.update(sent)
    finally:
        shown.close()
        await producer.stop()
    return sent


async def _connect(dsn: str) -> asyncpg.Connection[Any]:
    try:
        return await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"database unreachable: {type(exc).__name__}") from None


async def _plan(settings: config.Settings, filters: Filters, options: Options) -> Plan:
    letters = await collect(settings, filters)
    replayed: set[Origin] = set()
    if options.to_topic is None:  # to another topic, what went back to the source before does not count
        replayed = await replayed_origins(settings.database_url, (letter.identity for letter in letters)) or set()
    return plan(letters, replayed, max_replays=options.max_replays, force=options.force, limit=options.limit)


async def run_replay(settings: config.Settings, args: argparse.Namespace, options: Options) -> int:
    filters = filters_or_exit(args)
    if filters is None:
        return 2
    if options.dry_run:
        report_dry_run(await _plan(settings, filters, options), verbose=options.verbose)
        return 0
    if options.to_topic is not None:
        # A staging check: not a replay of record, so neither the lock nor dlq_replays is involved.
        the_plan = await _plan(settings, filters, options)
        sent = await republish(settings, None, the_plan.to_replay, options)
        report(the_plan, sent, options.to_topic)
        return 0
    await migrations.migrate(settings.database_url)  # creates dlq_replays on a database the workers did not touch
    conn = await _connect(settings.database_url)
    try:
        progress = Progress(conn)
        # Planned under the lock: a run that finished just before ours is then already in dlq_replays.
        if not await progress.lock(settings.kafka_dlq_topic):
            print("carsys-ingest dlq replay: another replay of this topic is running; try again later", file=sys.stderr)
            return 3
        the_plan = await _plan(settings, filters, options)
        sent = await republish(settings, progress, the_plan.to_replay, options)
    finally:
        await conn.close()  # also releases the advisory lock
    report(the_plan, sent, None)
    return 0


# --- reports (coordinates and reasons only, never values) -----------------------------------------------------


def _skipped_lines(p: Plan) -> list[str]:
    lines = [
        f"already replayed: {p.already_replayed}",
        f"duplicate letters skipped: {p.duplicates}",
        f"refused by the loop guard (dlq.replay.count >= --max-replays; --force overrides): {len(p.refused)}",
    ]
    lines += [f"  refused {lt.coordinates} (replayed {lt.replay_count} times)" for lt in p.refused]
    if p.no_origin:
        lines.append(f"without dlq.original.* headers, cannot replay: {len(p.no_origin)}")
        lines += [f"  no origin {lt.coordinates}" for lt in p.no_origin]
    return lines


def report(p: Plan, sent: int, to_topic: str | None) -> None:
    where = f" to {to_topic} (a check: not recorded in dlq_replays)" if to_topic else ""
    print("\n".join([f"replayed: {sent}{where}", *_skipped_lines(p)]))


def verdicts_of(letters: Sequence[Letter]) -> list[Verdict]:
    shown = Bar("dry run: decoding and normalising", len(letters))
    verdicts = []
    for n, letter in enumerate(letters, 1):
        verdicts.append(verdict(letter))
        shown.update(n)
    shown.close()
    return verdicts


def dry_run_summary(letters: Sequence[Letter], verdicts: Sequence[Verdict]) -> list[str]:
    """Grouped: how many would succeed (by the reason they failed with) and would fail again (by today's reason)."""
    succeed = counts(lt.reason for lt, v in zip(letters, verdicts, strict=True) if v.would == "succeed")
    again = counts(f"{v.stage} {v.error_class}: {v.reason}" for v in verdicts if v.would == "fail-again")
    lines = [
        f"dry run: nothing produced; {len(verdicts)} letter(s) would be replayed",
        f"would now succeed: {sum(succeed.values())} (decode and normalise pass; write-stage checks need the database)",
    ]
    lines += [f"  {n:>7}  failed with {reason}" for reason, n in succeed.items()]
    lines.append(f"would fail again: {sum(again.values())}")
    lines += [f"  {n:>7}  {reason}" for reason, n in again.items()]
    return lines


def report_dry_run(p: Plan, *, verbose: bool = False) -> None:
    verdicts = verdicts_of(p.to_replay)
    lines = dry_run_summary(p.to_replay, verdicts)
    if verbose:
        lines.append("per letter:")
        for v in verdicts:
            why = "" if v.would == "succeed" else f" at {v.stage}: {v.error_class}: {v.reason}"
            lines.append(f"  {v.letter} (original {v.original}) would {v.would}{why}")
    else:
        lines.append("(per-letter lines with --verbose)")
    print("\n".join([*lines, *_skipped_lines(p)]))


def replay_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    if args.rate <= 0 or args.max_replays < 1:
        print("carsys-ingest dlq replay: --rate must be > 0 and --max-replays >= 1", file=sys.stderr)
        return 2
    options = Options(
        dry_run=args.dry_run,
        rate=args.rate,
        max_replays=args.max_replays,
        force=args.force,
        limit=args.limit,
        to_topic=args.to_topic,
        verbose=args.verbose,
    )
    return asyncio.run(run_replay(settings, args, options))
