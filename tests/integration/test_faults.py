"""Fault injection: real `carsys-ingest run` processes, the real broker and PostgreSQL, faults from outside.

Every scenario ends with the same three checks (``verify``):
- the tables equal the model of tests/tables.py exactly (no lost, duplicated or stale row, every applied event id);
- the dead-letter topic holds every invalid record, each exactly once after de-duplicating by its origin
  (topic, partition, offset), with the right stage and its key, value and headers byte-identical, and nothing else:
  a dead letter caused by an outage would be an extra letter;
- PostgreSQL's stored offsets and Kafka's committed offsets are at the end of every partition (nothing stuck).

A crash between a dead letter's acknowledgement and the commit may legitimately send that letter twice: the raw
duplicates are counted and printed (``pytest -s``), never hidden. docs/testing.md says what each scenario proves.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from dev import stack as devstack
from dev.db import fetch, fetchval
from dev.kafka import committed_offsets, end_offsets, produce
from dev.process import WorkerProcess
from dev.waiting import eventually
from schemas.decoder import json_text
from tests import tables
from tests.conftest import TopicFactory
from tests.integration.faults.corpus import BIG, Record, Stream, corpus, scenario_stream
from tests.integration.faults.harness import (
    KeepBusy,
    Run,
    applied,
    kill_during_batch,
    stored_offsets,
    worker_backends_in_transaction,
)

pytestmark = pytest.mark.timeout(420)


@pytest.fixture
async def run(kafka_bootstrap: str, fresh_database_url: str, create_topic: TopicFactory, tmp_path: Path) -> Any:
    big = {"max.message.bytes": str(BIG + 1024 * 1024)}
    topic = await create_topic(f"faults.{uuid.uuid4().hex[:10]}", partitions=6, config=big)
    await create_topic(f"{topic}.dlq", config=big)
    r = Run(kafka_bootstrap, fresh_database_url, topic, tmp_path)
    try:
        yield r
    finally:
        for w in r.workers:
            if w.alive:
                w.kill()


# --- scenarios --------------------------------------------------------------------------------------------------


async def test_poison_corpus_each_kind_dead_lettered_or_stored_verbatim(run: Run) -> None:
    kinds = corpus()
    assert len({k.name for k in kinds}) == len(kinds)
    assert sum(1 for k in kinds if k.stage) >= 30
    filler = scenario_stream(seed=21, events=300, poison_every=10**9)
    records = list(filler.records)
    rng = random.Random(21)
    for kind in kinds:
        records.insert(rng.randrange(len(records) + 1), kind.record())
    stream = Stream(records, filler.valid + [k.value for k in kinds if k.stage is None and k.value], {
        k.name: k.stage for k in kinds
    })  # fmt: skip
    await produce(run.bootstrap, run.topic, records)
    worker = run.start("w")
    await run.until_consumed(workers=[worker], timeout_s=180)
    assert run.stop_all() == [0]
    figures = await run.verify(stream)
    assert figures["dead_letters"] == sum(1 for k in kinds if k.stage)
    for kind in kinds:
        for table, where, column, value in kind.verbatim:
            conditions = " AND ".join(f"{c} = ${i}" for i, c in enumerate(where, 1))
            args = [int(v) if c == "position" else v for c, v in where.items()]
            got = await fetchval(run.dsn, f"SELECT {column} FROM {table} WHERE {conditions}", *args)
            assert got == value, f"{kind.name}: {table}.{column} = {got!r:.200}, expected {value!r:.200}"
    expected_ids = {
        tables.canonical(json.loads(json_text(k.value))["event_id"]) for k in kinds if k.stage is None and k.value
    }
    stored_ids = {r["id"] for r in await fetch(run.dsn, "SELECT event_id::text AS id FROM applied_events")}
    assert expected_ids <= stored_ids
    await _the_model_sees_tampering(run.dsn, stream)


async def _the_model_sees_tampering(dsn: str, stream: Stream) -> None:
    """The comparison is only worth something if it fails: damage each table once and expect each damage reported."""
    expected = tables.expected_state(stream.valid)
    tombstone = next(k for k, row in expected.appointments.items() if row[len(tables.EMPTY_SNAPSHOT)])
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("UPDATE persons SET first_name = 'X' WHERE ctid = (SELECT min(ctid) FROM persons)")
            await conn.execute("DELETE FROM vehicles WHERE ctid = (SELECT min(ctid) FROM vehicles)")
            await conn.execute("DELETE FROM interventions WHERE ctid = (SELECT min(ctid) FROM interventions)")
            await conn.execute(
                "UPDATE appointments SET deleted = false, deleted_at = NULL, created_at = now() "
                "WHERE dealer_id = $1 AND dms_number = $2",
                *tombstone,
            )
            await conn.execute("DELETE FROM applied_events WHERE ctid = (SELECT min(ctid) FROM applied_events)")
            problems = "\n".join(tables.compare(expected, await tables.read_tables(conn)))
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    for table in ("persons:", "vehicles:", "interventions:", "appointments:", "applied_events:"):
        assert table in problems, f"tampering with {table} went unnoticed:\n{problems}"


class _Rollback(Exception):
    pass


async def test_kill_9_mid_batch_repeatedly_then_restart(run: Run) -> None:
    stream = scenario_stream(seed=31, events=3000)
    total = len(stream.records)
    offer = KeepBusy(run, stream.records, backlog=400, reserve=total)
    kills, mid_transaction = 0, 0
    for round_ in range(4):
        # Each round gets a share of its own: however fast the worker, the kill finds it with records to write
        # (a fixed reserve was eaten up by the third kill once the worker got faster).
        offer.allow(await offer.consumed() + ROUND_SHARE)
        worker = run.start(f"killed-{round_}", BATCH_MAX_RECORDS="250")
        floor = await applied(run.dsn)
        await eventually(
            functools.partial(_applied_above, run.dsn, floor + 150),
            timeout_s=120,
            every_s=0.02,
            workers=[worker],
            what="making progress before the kill",
        )
        # Rounds alternate: killed inside the batch's transaction, then right after its database commit.
        mid_transaction += await kill_during_batch(worker, run.dsn, after_commit=round_ % 2 == 1)
        kills += 1
        assert sum((await stored_offsets(run.dsn, run.topic)).values()) < total, "killed after the end: no fault"
    await offer.finish()
    last = run.start("survivor")
    await run.until_consumed(workers=[last])
    assert run.stop_all() == [0]
    figures = await run.verify(stream)
    resumed = sum(w.log_text().count("resuming from PostgreSQL's offset") for w in run.workers)
    print(f"[faults] kill -9: {kills} kills ({mid_transaction} timed on a transaction), {resumed} resumes from PG")
    print(f"[faults] kill -9: {figures}")
    assert mid_transaction >= 2


# Records offered per kill round: ~2.8 batches of 250, the first of which shows progress; 4 rounds take ~2,800 of
# the stream's ~3,170, the rest comes after the last kill.
ROUND_SHARE = 700


async def _applied_above(dsn: str, floor: int) -> bool:
    return await applied(dsn) > floor


async def test_postgres_stopped_30s_and_backends_terminated_mid_transaction(run: Run, local_stack: Any) -> None:
    if local_stack.postgres is None:
        pytest.skip("DATABASE_URL points at a server this test cannot stop")
    stream = scenario_stream(seed=41, events=3000)
    third = len(stream.records) // 3
    await produce(run.bootstrap, run.topic, stream.records[:third])
    worker = run.start("w", BATCH_MAX_RECORDS="200")
    await eventually(lambda: _applied_above(run.dsn, 100), timeout_s=120, workers=[worker], what="first progress")
    admin = await asyncpg.connect(run.dsn)
    terminated = 0
    # Records keep coming until the third termination, however fast the worker drains them.
    offer = KeepBusy(run, stream.records, backlog=300, reserve=third, sent=third)
    try:
        deadline = time.monotonic() + 60
        while terminated < 3 and time.monotonic() < deadline:
            terminated += await worker_backends_in_transaction(admin, run.dsn, terminate=True)
            await asyncio.sleep(0.01)
        offered = await offer.hold()
    finally:
        await admin.close()
    assert terminated >= 3, "never caught the worker inside a transaction"
    # A clean ("fast") stop: the test server runs with synchronous_commit=off, so an immediate stop could drop
    # commits that were already acknowledged -- a property of that setting, not of the worker.
    local_stack.postgres.stop("fast")
    try:
        await produce(run.bootstrap, run.topic, stream.records[offered:])
        await asyncio.sleep(30)
        assert worker.alive
    finally:
        local_stack.postgres.start()
    await run.until_consumed(workers=[worker])
    _, metrics = worker.get("/metrics")
    assert run.stop_all() == [0]
    figures = await run.verify(stream)
    retries = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("carsys_retries_total "))
    assert retries > 0
    print(f"[faults] postgres: {terminated} terminated mid-transaction, 30 s down, {retries:.0f} retries, {figures}")


async def test_kafka_broker_restarted_mid_stream(run: Run, local_stack: Any) -> None:
    if local_stack.kafka is None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS points at a broker this test cannot restart")
    stream = scenario_stream(seed=51, events=3000)
    half = len(stream.records) // 2
    await produce(run.bootstrap, run.topic, stream.records[:half])
    worker = run.start("w", BATCH_MAX_RECORDS="200")
    await eventually(lambda: _applied_above(run.dsn, 200), timeout_s=120, workers=[worker], what="first progress")
    started = time.monotonic()
    local_stack.kafka.stop()
    await asyncio.sleep(5)
    local_stack.kafka.start(devstack.kafka_libs())
    restart_s = time.monotonic() - started
    assert worker.alive
    await produce(run.bootstrap, run.topic, stream.records[half:])
    await run.until_consumed(workers=[worker])
    assert run.stop_all() == [0]
    figures = await run.verify(stream)
    print(f"[faults] broker restart: down and up again in {restart_s:.1f}s, {figures}")


async def scale_1_3_1(run: Run, events: int, seed: int) -> None:
    stream = scenario_stream(seed=seed, events=events)
    n = len(stream.records)
    phases = [stream.records[: n * 3 // 10], stream.records[n * 3 // 10 : n * 7 // 10], stream.records[n * 7 // 10 :]]

    async def offer(records: list[Record]) -> None:
        # A steady stream, so that every rebalance finds batches in flight.
        for i in range(0, len(records), 250):
            await produce(run.bootstrap, run.topic, records[i : i + 250])
            await asyncio.sleep(0.1)

    started = time.monotonic()
    producing = asyncio.create_task(offer(phases[0]))
    first = run.start("first")
    await eventually(lambda: _applied_above(run.dsn, n // 20), timeout_s=180, workers=[first], what="1 replica")
    # 1 -> 3 while the first works through its backlog.
    extra = [run.start("second"), run.start("third")]
    everyone = [first, *extra]
    for w in extra:
        await eventually(functools.partial(_probe_ok, w), timeout_s=120, workers=everyone, what="the newcomers joining")
    await producing
    producing = asyncio.create_task(offer(phases[1]))
    for w in extra:
        # Each newcomer must really have taken partitions over and consumed before it leaves again.
        await eventually(
            functools.partial(_metric_above, w, "carsys_events_consumed_total", 0),
            timeout_s=180,
            workers=everyone,
            what="3 replicas sharing the partitions",
        )
    await producing
    # 3 -> 1 while records keep arriving.
    producing = asyncio.create_task(offer(phases[2]))
    await asyncio.sleep(0.5)
    assert [w.stop() for w in extra] == [0, 0]
    await producing
    await run.until_consumed(workers=[first], timeout_s=600)
    assert run.stop_all() == [0]
    figures = await run.verify(stream)
    print(f"[faults] scale 1->3->1: {figures}, {time.monotonic() - started:.0f}s")


async def _metric_above(worker: WorkerProcess, name: str, floor: float) -> bool:
    _, body = worker.get("/metrics")
    values = [float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + " ")]
    return bool(values) and values[0] > floor


async def test_replicas_scaled_1_3_1_during_a_run(run: Run) -> None:
    await scale_1_3_1(run, events=6000, seed=61)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_replicas_scaled_1_3_1_during_a_large_run(run: Run) -> None:
    await scale_1_3_1(run, events=40_000, seed=62)


async def test_crash_between_database_and_kafka_commit_resumes_from_postgres(run: Run) -> None:
    """The state a kill -9 leaves when it lands between the two commits, made deterministic: PostgreSQL holds the
    batches, Kafka's committed offsets are behind. The next worker must read nothing again and catch Kafka up."""
    stream = scenario_stream(seed=71, events=800)
    await produce(run.bootstrap, run.topic, stream.records)
    first = run.start("first")
    await run.until_consumed(workers=[first])
    assert run.stop_all() == [0]
    ends = await end_offsets(run.bootstrap, run.topic)
    behind = {p: end // 2 for p, end in ends.items()}
    rewind = AIOKafkaConsumer(bootstrap_servers=run.bootstrap, group_id=run.topic, enable_auto_commit=False)
    await rewind.start()
    try:
        rewind.assign([TopicPartition(run.topic, p) for p in ends])
        await rewind.commit({TopicPartition(run.topic, p): offset for p, offset in behind.items()})
    finally:
        await rewind.stop()
    assert await committed_offsets(run.bootstrap, run.topic, run.topic, list(ends)) == behind
    second = run.start("second")
    await eventually(lambda: _probe_ok(second), timeout_s=120, workers=[second], what="the second worker joining")
    await run.verify(stream)  # includes: Kafka's committed offsets back at the end of every partition
    _, metrics = second.get("/metrics")
    consumed = [line for line in metrics.splitlines() if line.startswith("carsys_events_consumed_total ")]
    assert consumed == ["carsys_events_consumed_total 0.0"], "records already in PostgreSQL were read again"
    assert run.stop_all() == [0]


async def _probe_ok(worker: WorkerProcess) -> bool:
    return worker.get("/readyz")[0] == 200
