"""A transactional producer (librdkafka, as Java and Spring producers with exactly-once settings behave): what it
aborted never reaches PostgreSQL, what it committed does, and the lag falls to 0 although every transaction leaves a
marker record behind that no consumer is handed. A real `carsys-ingest run`, the real broker and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from confluent_kafka import Producer

from dev import samples
from dev.db import fetch
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory
from tests.integration.test_lag import lags

pytestmark = pytest.mark.timeout(240)


def produce_transactions(bootstrap: str, topic: str, transactions: list[tuple[list[dict[str, Any]], bool]]) -> None:
    """Each (events, commit) in a transaction of its own, committed or aborted, by one transactional producer."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"dms-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)
    for events, commit in transactions:
        producer.begin_transaction()
        for event in events:
            producer.produce(topic, value=samples.encode(event), key=samples.key_of(event))
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)


async def applied_ids(dsn: str) -> set[str]:
    try:
        return {r[0] for r in await fetch(dsn, "SELECT event_id::text FROM applied_events")}
    except (OSError, asyncpg.PostgresError):  # not migrated yet
        return set()


async def test_aborted_transactions_are_never_applied_and_markers_leave_no_lag(
    kafka_bootstrap: str, fresh_database_url: str, create_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await create_topic(f"carsys.txn.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    stream = list(samples.stream(seed=41, events=180))
    # Applied, an aborted event would be in applied_events, and in the tables wherever no later committed one wins.
    committed, aborted = stream[:60] + stream[120:], stream[60:120]
    # Last, an aborted transaction alone: the log ends with records no consumer is handed.
    aborted_last = list(samples.stream(seed=42, events=10))
    produce_transactions(
        kafka_bootstrap, topic, [(stream[:60], True), (aborted, False), (stream[120:], True), (aborted_last, False)]
    )

    env = worker_env(bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic)
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    wanted = {str(uuid.UUID(e["event_id"])) for e in committed}
    try:
        await eventually(lambda: _covers(applied_ids(fresh_database_url), wanted), workers=[worker], what="applied")
        await eventually(lambda: _lags_zero(worker, topic), workers=[worker], what="lag 0 on both partitions")
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    assert await applied_ids(fresh_database_url) == wanted
    await expected.assert_tables_match(fresh_database_url, committed)


async def _covers(got: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await got


async def _lags_zero(worker: WorkerProcess, topic: str) -> bool:
    seen = lags(worker)
    return sorted(p for (t, p) in seen if t == topic) == [0, 1] and not any(seen.values())
