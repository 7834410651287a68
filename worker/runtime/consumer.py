"""The consumer runtime: fetch a batch, decode and normalise it, dead-letter what can never apply, write the rest in
one transaction (offsets included), then commit to Kafka.

What it guarantees (no loss, no duplicates, outages waited out paused, rebalances, undecodable batches held until
``carsys-ingest skip``) is stated once, in docs/guarantees.md; the comments below say how each piece serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from worker.config import Settings
from worker.errors import PermanentError, TransientError, WriteRejected
from worker.normalise.records import (
    Failure,
    Item,
    KeyMismatch,
    Offset,
    SourceRecord,
    key_mismatches,
    next_offsets,
    offset_of,
    split,
)
from worker.runtime import batches, retry
from worker.runtime.batches import BadBatch
from worker.runtime.deadletters import DeadLetterProducer
from worker.runtime.health import Health
from worker.runtime.metrics import Metrics, lag_of
from worker.runtime.store import BatchResult, Store
from worker.runtime.tables import Plan

log = structlog.get_logger(__name__)


class _Stopping(Exception):
    """Raised out of a retry wait when shutdown begins: the waiting batch is abandoned, uncommitted."""


class _Superseded(Exception):
    """Raised out of a retry wait when a rebalance began: the waiting batch is abandoned, uncommitted."""


# Records decoded and normalised between two yields to the event loop, ~1 ms of CPU: a concurrent write whose
# answer arrives meanwhile waits that long to send its next statement, and PostgreSQL with it (20 records drained
# 4% fewer events/s, 5 cost more CPU in yields than it gained; docs/benchmarks.md).
_PREPARE_CHUNK = 10
# While a partition is held at an undecodable batch: how often PostgreSQL's offset is re-read (to see a skip), and how
# often the error line is repeated (so that it is in any window of logs an operator looks at).
_HELD_RECHECK_S = 3.0
_HELD_REPEAT_S = 300.0
# How long stopping waits for the last batch's Kafka commit (running in the background, see Consumer._commit).
_LAST_KAFKA_COMMIT_S = 5.0


@dataclass
class _Batch:
    """Fetched records, decoded and normalised, tagged with the group generation they were fetched in."""

    generation: int
    records: list[SourceRecord]
    items: list[Item] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    key_mismatches: list[tuple[Item, KeyMismatch]] = field(default_factory=list)
    # Its rows, built ahead while the previous batch was written (under a backlog only).
    plan: Plan | None = None
    # Per partition, the last offset the fetch moved past without handing it out: a transaction's marker, an aborted
    # transaction's records. Committed with the batch, or the lag would never fall back to 0 behind a transactional
    # producer (a batch may consist of these alone).
    passed: list[Offset] = field(default_factory=list)


class Consumer(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        *,
        kafka: AIOKafkaConsumer,
        store: Store,
        dead_letters: DeadLetterProducer,
        settings: Settings,
        metrics: Metrics,
        health: Health,
    ) -> None:
        self._kafka = kafka
        self._store = store
        self._dead_letters = dead_letters
        self._settings = settings
        self._metrics = metrics
        self._health = health
        self._lock = asyncio.Lock()
        self._generation = 0
        self._stopping = asyncio.Event()
        # Letters already acknowledged for the batch in hand: a retry after a database failure must not send
        # them again (a crash can still duplicate one; letters carry their origin, so tools de-duplicate).
        self._sent: set[Offset] = set()
        self._seeking: set[TopicPartition] = set()
        # Next offset after the last record handed to the loop, per partition: where to rewind when a bad batch made
        # aiokafka drop good records fetched alongside it.
        self._delivered: dict[TopicPartition, int] = {}
        self._held: dict[TopicPartition, BadBatch] = {}
        self._held_checked_at = 0.0
        self._held_logged_at = 0.0
        # The group's position per assigned partition: the next offset after the last batch PostgreSQL committed.
        # The lag metric is measured from it, so records fetched but not yet committed (a batch being retried) count.
        self._positions: dict[TopicPartition, int] = {}
        # The Kafka commit of the last batch, still running: see _commit.
        self._kafka_commit: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------ the loop

    def subscribe(self) -> None:
        self._kafka.subscribe([self._settings.kafka_topic], listener=self)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop()``; returns after the in-flight batch is committed or abandoned.

        Under a backlog (full batches) it is pipelined by one batch: while batch N is written (mostly waiting on
        PostgreSQL), batch N+1, already fetched, is decoded and normalised and its rows are built. Writes stay
        strictly one after another, so order and commits are as without it; a prepared batch whose generation ended
        (a rebalance) or that is left at shutdown is dropped, uncommitted. Without a backlog it does not pipeline:
        fetching the next batch before the write would make what arrives meanwhile wait two batch durations instead
        of one.
        """
        try:
            await self._loop()
        finally:
            # Bounded: with Kafka unreachable a commit waits for its request timeout, and PostgreSQL has the offsets.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kafka_committed(), timeout=_LAST_KAFKA_COMMIT_S)

    async def _loop(self) -> None:
        ahead: _Batch | None = None
        limit = self._settings.batch_max_records
        while not self._stopping.is_set():
            current = ahead if ahead is not None and ahead.generation == self._generation else None
            if current is None:
                current = await self._prepare(*await self._fetch(self._settings.batch_max_wait_ms, limit))
            ahead = None
            if not current.records and not current.passed:
                continue
            if len(current.records) < limit:
                # No backlog: write now and fetch afterwards, so that what arrives meanwhile waits one batch, not two.
                await self._handle(current)
                continue
            # A backlog: prepare the next batch (only what the fetcher already holds, no waiting: a running write may
            # itself poll while paused) while this one is written.
            following = await self._fetch(0, limit)
            write = asyncio.create_task(self._handle(current))
            try:
                ahead = await self._prepare(*following, plan=True)
                await write
            finally:
                # Cancelled (shutdown timeout) while preparing: the write must not outlive the loop and its clients.
                write.cancel()

    async def _fetch(self, timeout_ms: int, max_records: int) -> tuple[list[SourceRecord], list[Offset]]:
        """The records fetched, in partition order, and the offsets passed without a record (``_Batch.passed``)."""
        try:
            batch = await self._kafka.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except Exception as exc:  # a codec raises anything; locate() keeps only failures to decode a batch
            bad = batches.locate(exc)
            if bad is None:
                raise
            batch = await self._on_bad_batch(bad, max_records)
        self._health.beat()
        if self._held:
            await self._check_held()
        passed = await self._passed(batch)
        return [r for tp in sorted(batch) for r in batch[tp]], passed

    async def _passed(self, batch: dict[TopicPartition, list[Any]]) -> list[Offset]:
        """Move ``_delivered`` to each partition's position; report where it went past the last record handed out.

        Reading committed records only, the fetcher steps over transaction markers and aborted records without
        handing them out. Only partitions read since their assignment are asked: their position is known, so asking
        does not wait."""
        passed: list[Offset] = []
        for tp in [*batch, *(tp for tp in self._delivered if tp not in batch)]:
            got = batch.get(tp)
            handed = got[-1].offset + 1 if got else self._delivered[tp]
            try:
                position = await self._kafka.position(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
            self._delivered[tp] = max(position, handed)
            if position > handed:
                passed.append(Offset(tp.topic, tp.partition, position - 1))
        return passed

    # ------------------------------------------------------------------------------------------ undecodable batches

    async def _on_bad_batch(self, bad: BadBatch, max_records: int) -> dict[TopicPartition, list[Any]]:
        """Salvage the records before ``bad``, then hold its partition there; the other partitions go on."""
        tp = TopicPartition(bad.topic, bad.partition)
        # aiokafka raised from inside getmany: the good records it had taken from other partitions are lost with the
        # exception, their positions already moved past them.
        await self._rewind(exclude=tp)
        salvaged, reached = await self._salvage(tp, max_records)
        if reached:
            self._hold(tp, bad)
        return {tp: salvaged} if salvaged else {}

    async def _rewind(self, *, exclude: TopicPartition | None) -> None:
        for tp in self._kafka.assignment():
            if tp == exclude or tp in self._held:
                continue
            if tp in self._delivered:
                self._kafka.seek(tp, self._delivered[tp])
                continue
            # Nothing handed out since the assignment, which left Kafka's committed offset where reading starts.
            committed = await self._kafka.committed(tp)
            if committed is not None:
                self._kafka.seek(tp, committed)
            else:
                await self._kafka.seek_to_beginning(tp)

    async def _salvage(self, tp: TopicPartition, max_records: int) -> tuple[list[Any], bool]:
        """Records of ``tp`` before the bad batch, one at a time (a larger read would hit the batch and drop them).

        Returns them and whether the bad batch was reached (not when ``max_records`` came first: the next fetch
        goes on from there).
        """
        salvaged: list[Any] = []
        while len(salvaged) < max_records:
            try:
                got = await self._kafka.getmany(tp, timeout_ms=1000, max_records=1)
            except Exception as exc:  # as in _fetch
                if batches.locate(exc) is None:
                    raise
                return salvaged, True
            if not got:
                return salvaged, False
            salvaged += got.get(tp, [])
        return salvaged, False

    def _hold(self, tp: TopicPartition, bad: BadBatch) -> None:
        self._kafka.pause(tp)
        if self._held.get(tp) != bad:
            self._held[tp] = bad
            log.error(batches.describe(bad), topic=bad.topic, partition=bad.partition, offset=bad.base_offset)
            self._held_logged_at = time.monotonic()
        self._held_checked_at = time.monotonic()
        self._metrics.held.set(len(self._held))

    async def _check_held(self) -> None:
        """Every few seconds: resume a held partition whose PostgreSQL offset an operator moved past the batch."""
        now = time.monotonic()
        if now - self._held_checked_at < _HELD_RECHECK_S:
            return
        self._held_checked_at = now
        if now - self._held_logged_at >= _HELD_REPEAT_S:
            self._held_logged_at = now
            for bad in self._held.values():
                log.error(batches.describe(bad), topic=bad.topic, partition=bad.partition, offset=bad.base_offset)
        try:
            stored = await self._store.stored_offsets(self._settings.kafka_topic)
        except (TransientError, PermanentError, OSError) as exc:
            log.warning("stored offsets unavailable; partitions stay held", error_class=type(exc).__name__)
            return
        for tp, bad in list(self._held.items()):
            position = stored.get(tp.partition)
            if position is not None and position > bad.base_offset:
                await self._release(tp, position)

    async def _release(self, tp: TopicPartition, position: int) -> None:
        del self._held[tp]
        self._metrics.held.set(len(self._held))
        self._kafka.seek(tp, position)
        self._delivered[tp] = position
        self._positions[tp] = position
        try:
            await self._kafka.commit({tp: position})
        except KafkaError as exc:
            log.warning("kafka commit failed; PostgreSQL has the offsets", error_class=type(exc).__name__)
        self._kafka.resume(tp)
        log.warning("held partition skipped past its bad batch by an operator", partition=tp.partition, offset=position)

    async def _prepare(self, records: list[SourceRecord], passed: list[Offset], *, plan: bool = False) -> _Batch:
        """Decode and normalise, yielding to the event loop often so that a running write keeps its pace.

        ``plan``: build the batch's rows too (tables.Plan), so that its write only sends them; worth it while another
        batch is being written, the CPU otherwise idle waiting for PostgreSQL."""
        batch = _Batch(generation=self._generation, records=records, passed=passed)
        rows = Plan() if plan else None
        for start in range(0, len(records), _PREPARE_CHUNK):
            chunk = records[start : start + _PREPARE_CHUNK]
            items, failures = split(chunk)
            batch.items += items
            batch.failures += failures
            batch.key_mismatches += key_mismatches(chunk, items)
            if rows is not None:
                rows.add(items)
            await asyncio.sleep(0)
        if rows is not None:
            for _ in rows.build():
                await asyncio.sleep(0)
            batch.plan = rows
        return batch

    async def _handle(self, batch: _Batch) -> None:
        started = time.monotonic()
        self._sent.clear()
        if batch.records:  # not a batch of passed offsets alone
            self._metrics.consumed.inc(len(batch.records))
            self._metrics.batch_size.observe(len(batch.records))
        self._report_key_mismatches(batch.key_mismatches)
        try:
            await self._process_until_done(batch)
        except (_Stopping, _Superseded) as why:
            log.info("in-flight batch abandoned, nothing of it committed", reason=type(why).__name__.strip("_"))
        finally:
            self._resume_all()
        self._metrics.batch_duration.observe(time.monotonic() - started)

    async def _process_until_done(self, batch: _Batch) -> None:
        # Each policy cycle is bounded (attempts and deadline); after one gives up we start another: an outage is
        # waited out for as long as it lasts, paused, never dead-lettered.
        while True:
            try:
                async for attempt in self._policy():
                    with attempt:
                        async with self._lock:
                            if batch.generation != self._generation:
                                raise _Superseded
                            await self._process(batch)
                return
            except TransientError as exc:
                # A statement that outlasts the whole cycle (a lock, a hung server) never reaches the paused sleep,
                # where retries are counted: count the new cycle here, or the counter says nothing is wrong.
                self._metrics.retries.inc()
                log.error("transient failure outlasted a retry cycle; still paused", error_class=type(exc).__name__)

    def _report_key_mismatches(self, mismatches: Sequence[tuple[Item, KeyMismatch]]) -> None:
        """Counted per record; logged once per batch, with the first record's coordinates (never the key: it holds
        the DMS number) so that a producer sending every record with a wrong key does not flood the log."""
        if not mismatches:
            return
        for _, part in mismatches:
            self._metrics.key_mismatches.labels(part).inc()
        item, part = mismatches[0]
        log.warning(
            "record key is not the event's dealer_id/dms_number; stored by the event",
            **_about(item),
            part=part,
            mismatched_in_batch=len(mismatches),
        )

    def _policy(self) -> Any:
        s = self._settings
        return retry.policy(
            attempts=1_000_000,
            deadline_s=s.retry_attempt_timeout_s,
            initial_backoff_s=s.retry_initial_backoff_s,
            max_backoff_s=s.retry_max_backoff_s,
            sleep=self._paused_sleep,
        )

    # ------------------------------------------------------------------------------------------ one batch

    async def _process(self, batch: _Batch) -> None:
        records, items, failures = batch.records, batch.items, batch.failures
        await self._send_letters([(f.record, f.error) for f in failures])
        by_offset = {offset_of(r): r for r in records}

        async def dead_letter_rejects(rejected: Sequence[tuple[Item, WriteRejected]]) -> None:
            await self._send_letters([(by_offset[item.offset], error) for item, error in rejected])

        result = await self._store.apply(
            items,
            extra_offsets=[*(offset_of(f.record) for f in failures), *batch.passed],
            on_rejected=dead_letter_rejects,
            plan=batch.plan,
        )
        self._health.db_ok()
        self._metrics.committed()
        self._count(result)
        self._log_batch(items, result)
        await self._commit(records, batch.passed)

    async def _send_letters(self, letters: Sequence[tuple[SourceRecord, PermanentError]]) -> None:
        new = [(record, error) for record, error in letters if offset_of(record) not in self._sent]
        await self._dead_letters.send(new)
        for record, error in new:
            self._sent.add(offset_of(record))
            self._metrics.dead_lettered.labels(error.stage).inc()

    def _count(self, result: BatchResult) -> None:
        m = self._metrics
        m.applied.inc(result.applied)
        m.duplicates.inc(result.duplicates)
        m.stale.inc(result.stale)

    def _log_batch(self, items: Sequence[Item], result: BatchResult) -> None:
        rejected = {item.offset: error for item, error in result.rejected}
        for item, error in result.rejected:
            log.warning(
                "rejected by the database",
                **_about(item),
                error_class=type(error).__name__,
                sqlstate=error.sqlstate,
            )
        # A line per record is for debugging only: not even its fields are gathered otherwise (~1% of the CPU).
        if log.is_enabled_for(logging.DEBUG):
            for item in items:
                if item.offset not in rejected:
                    log.debug("applied", **_about(item))

    async def _commit(self, records: Sequence[SourceRecord], passed: Sequence[Offset]) -> None:
        """After PostgreSQL's commit: the records are committed for good (the latency is measured to here). Kafka's
        copy of the offsets is only for lag tools and a fallback at assignment, so the next batch does not wait for
        it (a commit takes ~7 ms on a local broker, a third of a small batch's cycle); commits stay one at a time,
        in order, and a revocation or shutdown waits for the last one."""
        offsets = [*(offset_of(r) for r in records), *passed]
        positions = {TopicPartition(*tp): n for tp, n in next_offsets(offsets).items()}
        self._positions.update(positions)
        now_ms = time.time() * 1000
        for r in records:
            self._metrics.latency.observe(max(0.0, (now_ms - r.timestamp) / 1000))
        await self._kafka_committed()
        self._kafka_commit = asyncio.create_task(self._commit_to_kafka(positions))

    async def _commit_to_kafka(self, positions: dict[TopicPartition, int]) -> None:
        try:
            await self._kafka.commit(positions)
        except KafkaError as exc:
            # PostgreSQL already holds these offsets (same transaction as the data): resuming stays exact.
            log.warning("kafka commit failed; PostgreSQL has the offsets", error_class=type(exc).__name__)

    async def _kafka_committed(self) -> None:
        """Wait for the running Kafka commit, if any."""
        task, self._kafka_commit = self._kafka_commit, None
        if task is not None:
            await task

    # ------------------------------------------------------------------------------------------ lag

    def topic_known(self) -> bool:
        """The source topic is in the client's cluster metadata (refreshed by aiokafka every few minutes)."""
        return self._kafka.partitions_for_topic(self._settings.kafka_topic) is not None

    async def refresh_lag(self) -> None:
        """Lag per assigned partition: the log-end offset (asked of the broker, so paused and held partitions are
        measured too) minus the group's position. Series of partitions no longer assigned are removed."""
        assigned = [tp for tp in self._kafka.assignment() if tp not in self._seeking]
        ends: dict[TopicPartition, int] = await self._kafka.end_offsets(assigned) if assigned else {}
        await self._resolve_positions([tp for tp in assigned if tp not in self._positions])
        current = self._kafka.assignment()  # a rebalance may have run during the awaits
        lags = {
            (tp.topic, tp.partition): lag_of(ends[tp], self._positions[tp])
            for tp in assigned
            if tp in current and tp in self._positions and tp in ends
        }
        self._metrics.set_lags(lags, {self._settings.kafka_topic})

    async def _resolve_positions(self, unknown: list[TopicPartition]) -> None:
        """Partitions never committed by this replica: Kafka's committed offset, else the log start (the consumer
        reads from the earliest offset then)."""
        for tp in unknown:
            committed = await self._kafka.committed(tp)
            if committed is None:
                committed = (await self._kafka.beginning_offsets([tp]))[tp]
            self._positions.setdefault(tp, committed)

    # ------------------------------------------------------------------------------------------ waiting

    async def _paused_sleep(self, seconds: float) -> None:
        """Wait out a back-off with the partitions paused, still polling so that the group keeps us."""
        self._metrics.retries.inc()
        generation = self._generation
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stopping.is_set():
                raise _Stopping
            if generation != self._generation:
                raise _Superseded
            self._pause_all()
            try:
                stray = await self._kafka.getmany(timeout_ms=int(min(remaining, 1.0) * 1000) + 1)
            except Exception as exc:  # a bad batch on a partition assigned meanwhile: the main loop will meet it
                if batches.locate(exc) is None:
                    raise
                await self._rewind(exclude=None)
                stray = {}
            self._health.beat()
            for tp, got in stray.items():
                # A partition assigned since we paused can still deliver: rewind so it is read again later.
                self._kafka.seek(tp, got[0].offset)

    def _pause_all(self) -> None:
        assigned = self._kafka.assignment()
        self._kafka.pause(*assigned)
        self._metrics.paused.set(len(assigned))

    def _resume_all(self) -> None:
        # Partitions still being positioned by on_partitions_assigned stay paused until it has sought them.
        paused = self._kafka.paused() - self._seeking - set(self._held)
        if paused:
            self._kafka.resume(*paused)
            log.info("partitions resumed", partitions=len(paused))
        self._metrics.paused.set(0)

    # ------------------------------------------------------------------------------------------ rebalances

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._generation += 1
        for tp in revoked:
            # The next owner reads from the committed offset and meets (and reports) a bad batch itself.
            self._delivered.pop(tp, None)
            self._held.pop(tp, None)
            self._positions.pop(tp, None)
        self._metrics.held.set(len(self._held))
        self._metrics.forget({(tp.topic, tp.partition) for tp in revoked})
        self._health.joined = False  # rejoining: not ready until the group assigns again
        async with self._lock:
            # Taking the lock waits for an in-flight batch to commit; nothing else is uncommitted here. Its Kafka
            # commit is awaited too: after the revocation it would belong to a generation that is over.
            await self._kafka_committed()
            log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._health.joined = True
        if not assigned:
            return
        # Paused before the first await: the fetcher already reads from Kafka's committed offsets, and without this
        # getmany() handed those records to the loop before the seek below (replays, and duplicate dead letters, at
        # every assignment where PostgreSQL is ahead). Paused records are dropped, as are records from before a seek.
        self._seeking = set(assigned)
        for tp in assigned:
            self._delivered.pop(tp, None)
            self._positions.pop(tp, None)
        self._kafka.pause(*assigned)
        try:
            await self._resume_all_from_database(assigned)
        finally:
            self._seeking = set()
            self._kafka.resume(*assigned)
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    async def _resume_all_from_database(self, assigned: list[TopicPartition]) -> None:
        try:
            stored = await self._store.stored_offsets(self._settings.kafka_topic)
        except (TransientError, PermanentError, OSError) as exc:
            # Unless PostgreSQL lost commits, Kafka's committed offset is never ahead of its own: falling back to it
            # only replays.
            log.warning("stored offsets unavailable; resuming from Kafka's", error_class=type(exc).__name__)
            return
        for tp in assigned:
            await self._resume_from_database(tp, stored.get(tp.partition))

    async def _resume_from_database(self, tp: TopicPartition, stored: int | None) -> None:
        if stored is None:
            return
        self._positions[tp] = stored
        committed = await self._kafka.committed(tp)
        if committed is None or stored != committed:
            # Ahead: a crash between the two commits. Behind: PostgreSQL lost acknowledged commits (asynchronous
            # commit, failover to a lagging standby); Kafka's offset would skip events the database no longer has,
            # and replaying from PostgreSQL's is safe because applying is idempotent.
            if committed is not None and stored < committed:
                log.warning("PostgreSQL is behind Kafka: replaying", partition=tp.partition, behind=committed - stored)
            self._kafka.seek(tp, stored)
            log.info("resuming from PostgreSQL's offset", partition=tp.partition, offset=stored, kafka=committed)
            # Catch Kafka up too: a partition with nothing new to read would otherwise never be committed again,
            # and lag monitoring (Kafka's committed offsets) would report records that are long in PostgreSQL.
            try:
                await self._kafka.commit({tp: stored})
            except KafkaError as exc:
                log.warning("kafka commit failed; PostgreSQL has the offsets", error_class=type(exc).__name__)


def _about(item: Item) -> dict[str, Any]:
    """What every log line about a record carries: where it came from and which event it is, never its values."""
    return {
        "topic": item.offset.topic,
        "partition": item.offset.partition,
        "offset": item.offset.offset,
        "event_id": item.event.event_id,
        "dealer_id": item.event.dealer_id,
    }
