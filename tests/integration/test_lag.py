"""The lag metric tells the truth: real `carsys-ingest run` processes, the real broker and PostgreSQL.

- While the worker cannot commit (a test transaction holds a lock every batch needs), the lag rises to exactly the
  number of records waiting, while the batch is retried, and falls to 0 after.
- After a rebalance a replica exports only the partitions it owns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from pathlib import Path

import asyncpg
import pytest

from dev import samples
from dev.db import fetchval
from dev.kafka import produce
from dev.process import WorkerProcess, worker_env
from dev.stack import free_port
from dev.waiting import eventually
from tests.conftest import TopicFactory

pytestmark = pytest.mark.timeout(240)

_LAG = re.compile(r'^carsys_consumer_lag_records\{partition="(\d+)",topic="([^"]+)"\} (\S+)$', re.MULTILINE)


@pytest.fixture
async def topic(create_topic: TopicFactory) -> str:
    name = await create_topic(f"carsys.lag.{uuid.uuid4().hex[:10]}", partitions=4)
    await create_topic(f"{name}.dlq")
    return name


def lags(worker: WorkerProcess) -> dict[tuple[str, int], float]:
    """The lag series of a scrape; none while the worker does not answer (yet)."""
    status, body = worker.get("/metrics")
    return {(t, int(p)): float(v) for p, t, v in _LAG.findall(body)} if status == 200 else {}


def gauge(worker: WorkerProcess, name: str) -> float:
    body = worker.get("/metrics")[1]
    return next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(f"{name} "))


def start(tmp_path: Path, name: str, env: dict[str, str]) -> WorkerProcess:
    return WorkerProcess(env, tmp_path / f"{name}.log").start()


async def applied(dsn: str) -> int:
    try:
        return int(await fetchval(dsn, "SELECT count(*) FROM applied_events"))
    except (OSError, asyncpg.PostgresError):  # not migrated yet
        return -1


async def test_lag_counts_every_waiting_record_while_stuck_and_returns_to_zero(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    first = list(samples.stream(seed=31, events=40))
    waiting = list(samples.stream(seed=32, events=37))
    env = worker_env(
        bootstrap=kafka_bootstrap,
        database_url=fresh_database_url,
        topic=topic,
        group=topic,
        LOG_LEVEL="INFO",
        # A blocked statement gives up after 3 s: the batch is retried with its partitions paused.
        RETRY_ATTEMPT_TIMEOUT_S="3",
    )
    worker = start(tmp_path, "w", env)
    try:
        await produce(kafka_bootstrap, topic, [(samples.key_of(e), samples.encode(e)) for e in first])
        await eventually(lambda: _is(applied(fresh_database_url), len(first)), workers=[worker], what="first batch")
        await eventually(lambda: _lags_are(worker, topic, 0), workers=[worker], what="lag 0 on all 4 partitions")

        blocker = await asyncpg.connect(fresh_database_url)
        try:
            tx = blocker.transaction()
            await tx.start()
            # Every batch upserts its offsets here; EXCLUSIVE still lets the worker read them (and ping).
            await blocker.execute("LOCK TABLE consumer_offsets IN EXCLUSIVE MODE")
            await produce(kafka_bootstrap, topic, [(samples.key_of(e), samples.encode(e)) for e in waiting])
            await eventually(
                lambda: _stuck_with(worker, topic, len(waiting)), workers=[worker], what="lag = waiting, retrying"
            )
            # Measured again a refresh later: still every waiting record, and no commit meanwhile.
            await eventually(lambda: _commit_older_than(worker, 6.0), workers=[worker], what="no commit for 6 s")
            assert sum(lags(worker).values()) == len(waiting)
            assert await applied(fresh_database_url) == len(first)
            await tx.rollback()
        finally:
            await blocker.close()

        total = len(first) + len(waiting)
        await eventually(lambda: _is(applied(fresh_database_url), total), workers=[worker], what="all applied")
        await eventually(lambda: _lags_are(worker, topic, 0), workers=[worker], what="lag back to 0")
        assert gauge(worker, "carsys_commits_total") >= 2
        assert gauge(worker, "carsys_last_commit_age_seconds") < 30
    finally:
        assert worker.stop() == 0


async def test_a_replica_exports_only_the_partitions_it_owns_after_a_rebalance(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    events = list(samples.stream(seed=33, events=30))
    await produce(kafka_bootstrap, topic, [(samples.key_of(e), samples.encode(e)) for e in events])
    env = worker_env(
        bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic, LOG_LEVEL="INFO"
    )
    first = start(tmp_path, "a", env)
    second: WorkerProcess | None = None
    try:
        await eventually(lambda: _owns(first, topic, 4), workers=[first], what="a owns all 4 partitions")
        second = start(tmp_path, "b", {**env, "METRICS_PORT": str(free_port())})
        await eventually(lambda: _owns(first, topic, 2), workers=[first, second], timeout_s=90, what="a owns 2")
        await eventually(lambda: _owns(second, topic, 2), workers=[first, second], what="b owns 2")
        a, b = set(lags(first)), set(lags(second))
        assert a.isdisjoint(b), "a partition is exported by both replicas"
        assert a | b == {(topic, p) for p in range(4)}
        assert gauge(first, f'carsys_assigned_partitions{{topic="{topic}"}}') == 2
        assert gauge(first, "carsys_ready") == 1
    finally:
        codes = [w.stop() for w in (first, second) if w is not None]
    assert codes == [0] * len(codes)


async def _is(value: Awaitable[int], wanted: int) -> bool:
    return await value == wanted


async def _lags_are(worker: WorkerProcess, topic: str, value: float) -> bool:
    seen = lags(worker)
    return set(seen) == {(topic, p) for p in range(4)} and all(v == value for v in seen.values())


async def _stuck_with(worker: WorkerProcess, topic: str, waiting: int) -> bool:
    seen = lags(worker)
    return sum(seen.values()) == waiting and len(seen) == 4 and gauge(worker, "carsys_retries_total") > 0


async def _commit_older_than(worker: WorkerProcess, seconds: float) -> bool:
    return gauge(worker, "carsys_last_commit_age_seconds") > seconds


async def _owns(worker: WorkerProcess, topic: str, partitions: int) -> bool:
    seen = lags(worker)
    return len(seen) == partitions and all(t == topic for t, _ in seen)
