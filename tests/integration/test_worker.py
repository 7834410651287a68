"""The consumer runtime end to end: real `carsys-ingest run` processes against the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import functools
import signal
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dev import samples
from dev.db import fetch, fetchval
from dev.kafka import committed_offsets, produce, read_all
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def topic(create_topic: TopicFactory) -> str:
    name = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=4)
    await create_topic(f"{name}.dlq")
    return name


_STORED = "SELECT partition, next_offset FROM consumer_offsets"


def records(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(samples.key_of(e), samples.encode(e)) for e in events]


async def applied_count(dsn: str) -> int:
    try:
        return int(await fetchval(dsn, "SELECT count(*) FROM applied_events"))
    except Exception:  # tables not migrated yet, or the server is down on purpose
        return -1


async def assert_state_matches(dsn: str, events: list[dict[str, Any]]) -> None:
    await expected.assert_tables_match(dsn, events)


def start_worker(tmp_path: Path, name: str, **env: str) -> WorkerProcess:
    return WorkerProcess(worker_env(**env), tmp_path / f"{name}.log").start()  # type: ignore[arg-type]


async def test_valid_stream_lands_exactly_once_and_probes_answer(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    events = list(samples.stream(seed=11, events=400))
    await produce(kafka_bootstrap, topic, records(events))
    worker = start_worker(
        tmp_path, "w", bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic
    )
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(events)), timeout_s=90)
        await assert_state_matches(fresh_database_url, events)
        offsets = await fetch(fresh_database_url, "SELECT sum(next_offset) AS n FROM consumer_offsets")
        assert offsets[0]["n"] == len(events)
        await eventually(lambda: _probe(worker, "/readyz", 200))
        status, body = worker.get("/healthz")
        assert status == 200
        status, body = worker.get("/metrics")
        assert status == 200
        # Older snapshots of an appointment in the same batch are collapsed and counted stale: together, all 400.
        outcomes = ("carsys_events_applied_total", "carsys_events_stale_total", "carsys_events_duplicate_total")
        assert sum(float(_metric(body, name)) for name in outcomes) == len(events)
        assert float(_metric(body, "carsys_events_applied_total")) > 0
        assert 'carsys_events_dead_lettered_total{stage="contract"}' not in body
        assert "carsys_batch_duration_seconds_count" in body
        assert f'carsys_consumer_lag_records{{partition="0",topic="{topic}"}}' in body
        assert worker.get("/nope")[0] == 404
    finally:
        assert worker.stop() == 0
    assert await read_all(kafka_bootstrap, f"{topic}.dlq") == []
    # Kafka's copy of the offsets is committed in the background after each batch; a clean stop waits for the last.
    stored = {r["partition"]: r["next_offset"] for r in await fetch(fresh_database_url, _STORED)}
    assert await committed_offsets(kafka_bootstrap, topic, topic, sorted(stored)) == stored
    expected.assert_no_personal_data(worker.log_text(), events)


async def _probe(worker: WorkerProcess, path: str, status: int) -> bool:
    return worker.get(path)[0] == status


async def _equals(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


POISON: list[tuple[str, bytes]] = [
    ("decode", b"{not json"),
    ("decode", b"\xff\xfe\x00garbage"),
    ("decode", b""),
    ("contract", b"[]"),
    ("contract", b"42"),
    ("contract", b'{"event_type": "appointment.upserted"}'),
    ("contract", b'{"event_id": "x", "event_type": "appointment.exploded", "schema_version": 1}'),
]


def poison_events(valid: dict[str, Any]) -> list[tuple[str, bytes]]:
    future = {**valid, "schema_version": 2}
    bad_date = msgspec.json.decode(samples.encode(valid))
    bad_date["appointment"]["vehicle"]["first_registration_date"] = "13-13-2020"
    wrong_type = {**valid, "dealer_id": True}
    return [
        *POISON,
        ("contract", samples.encode(future)),
        ("contract", samples.encode(bad_date)),
        ("contract", samples.encode(wrong_type)),
    ]


async def test_mixed_stream_dead_letters_bad_records_byte_identical(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    valid = [e for e in samples.stream(seed=12, events=60) if e["event_type"] == "appointment.upserted"]
    poison = poison_events(valid[0])
    mixed: list[tuple[bytes, bytes]] = []
    for i, (_, value) in enumerate(poison):
        mixed += records(valid[i * 5 : i * 5 + 5])
        mixed.append((b"dealer-bad/" + str(i).encode(), value))
    mixed += records(valid[len(poison) * 5 :])
    await produce(kafka_bootstrap, topic, mixed, headers=[("traceparent", b"00-abc-01")])

    # A password in the DSN (the test server trusts local connections and ignores it): it must never be shown.
    secret = f"pw-{uuid.uuid4().hex}"
    with_secret = fresh_database_url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    assert secret in with_secret
    worker = start_worker(tmp_path, "w", bootstrap=kafka_bootstrap, database_url=with_secret, topic=topic, group=topic)
    metrics_body = ""
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(valid)), timeout_s=90)
        metrics_body = worker.get("/metrics")[1]
        letters = []
        for _ in range(40):
            letters = await read_all(kafka_bootstrap, f"{topic}.dlq")
            if len(letters) >= len(poison):
                break
            await asyncio.sleep(0.5)
    finally:
        assert worker.stop() == 0
    await assert_state_matches(fresh_database_url, valid)
    by_key = {letter.key: letter for letter in letters}
    assert len(letters) == len(poison)
    for i, (stage, value) in enumerate(poison):
        letter = by_key[b"dealer-bad/" + str(i).encode()]
        headers = dict(letter.headers)
        assert letter.value == value
        assert headers["traceparent"] == b"00-abc-01"
        assert headers["dlq.stage"].decode() == stage
        assert headers["dlq.original.topic"].decode() == topic
        assert int(headers["dlq.original.offset"]) >= 0
        assert headers["dlq.error.class"] in (b"DecodeError", b"ContractError")
        assert headers["dlq.error.message"]
        assert headers["dlq.replay.count"] == b"0"
        for name in ("dlq.original.partition", "dlq.original.timestamp", "dlq.failed_at", "dlq.worker.version"):
            assert headers[name]
    # A later contract version (docs/contract.md, versioning) is a contract letter saying so, replayed after an upgrade.
    future = dict(by_key[b"dealer-bad/" + str(len(POISON)).encode()].headers)["dlq.error.message"]
    assert future == b"$.schema_version: unsupported schema version (this worker reads version 1)"
    expected.assert_no_personal_data(worker.log_text() + repr([x.headers for x in letters]), valid)
    assert "carsys_events_applied_total" in metrics_body
    expected.assert_no_secrets(worker.log_text() + repr([x.headers for x in letters]) + metrics_body, [secret])


async def test_postgres_outage_is_waited_out_without_dead_letters(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path, local_stack: Any
) -> None:
    if local_stack.postgres is None:
        pytest.skip("DATABASE_URL points at a server this test cannot stop")
    events = list(samples.stream(seed=13, events=600))
    await produce(kafka_bootstrap, topic, records(events[:300]))
    worker = start_worker(
        tmp_path, "w", bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic
    )
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), 300), timeout_s=90)
        local_stack.postgres.stop()
        try:
            await produce(kafka_bootstrap, topic, records(events[300:]))
            await asyncio.sleep(20)
            assert worker.alive
        finally:
            local_stack.postgres.start()
        await eventually(lambda: _equals(applied_count(fresh_database_url), 600), timeout_s=120)
        _, body = worker.get("/metrics")
        assert "carsys_retries_total" in body
        assert float(_metric(body, "carsys_retries_total")) > 0
    finally:
        assert worker.stop() == 0
    await assert_state_matches(fresh_database_url, events)
    assert await read_all(kafka_bootstrap, f"{topic}.dlq") == []


def _metric(body: str, name: str) -> str:
    return next(line.split()[-1] for line in body.splitlines() if line.startswith(name + " "))


async def test_sigterm_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    events = list(samples.stream(seed=14, events=3000))
    await produce(kafka_bootstrap, topic, records(events))
    env = {"bootstrap": kafka_bootstrap, "database_url": fresh_database_url, "topic": topic, "group": topic}
    first = start_worker(tmp_path, "first", **env, BATCH_MAX_RECORDS="100")
    await eventually(lambda: _greater(applied_count(fresh_database_url), 0), timeout_s=90)
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert "shutting down" in first.log_text()
    between = await applied_count(fresh_database_url)
    second = start_worker(tmp_path, "second", **env)
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(events)), timeout_s=120)
        metrics = second.get("/metrics")[1]
    finally:
        assert second.stop() == 0
    await assert_state_matches(fresh_database_url, events)
    # The first committed everything it applied before leaving: the second resumed exactly there.
    assert 0 < between < len(events)
    assert float(_metric(metrics, "carsys_events_duplicate_total")) == 0
    assert float(_metric(metrics, "carsys_events_consumed_total")) == len(events) - between
    assert await read_all(kafka_bootstrap, f"{topic}.dlq") == []


async def _greater(value: Any, floor: int) -> bool:
    return bool(await value > floor)


async def test_two_workers_split_the_partitions_and_apply_everything_once(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    env = {"bootstrap": kafka_bootstrap, "database_url": fresh_database_url, "topic": topic, "group": topic}
    workers = [start_worker(tmp_path, f"w{i}", **env) for i in range(2)]
    try:
        for w in workers:
            await eventually(functools.partial(_probe, w, "/readyz", 200), timeout_s=60)
        await asyncio.sleep(3)  # let the second join settle into a 2/2 split
        events = list(samples.stream(seed=15, events=1200))
        await produce(kafka_bootstrap, topic, records(events))
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(events)), timeout_s=120)
        applied = [float(_metric(w.get("/metrics")[1], "carsys_events_applied_total")) for w in workers]
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0]
    assert all(n > 0 for n in applied), applied
    await assert_state_matches(fresh_database_url, events)


async def test_postgres_behind_kafka_is_replayed_from_postgres(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    """PostgreSQL lost acknowledged commits (restored from a backup, failover to a lagging standby): Kafka's offset
    would skip events the database no longer has, so the worker resumes from PostgreSQL's and replays them."""
    events = list(samples.stream(seed=16, events=500))
    await produce(kafka_bootstrap, topic, records(events))
    env = {"bootstrap": kafka_bootstrap, "database_url": fresh_database_url, "topic": topic, "group": topic}
    first = start_worker(tmp_path, "first", **env)
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(events)), timeout_s=90)
    finally:
        assert first.stop() == 0
    # The database as it was before any event: every table empty, the stored offsets back at the start.
    await fetch(fresh_database_url, "TRUNCATE appointments, interventions, vehicles, persons, applied_events")
    await fetch(fresh_database_url, "UPDATE consumer_offsets SET next_offset = 0")
    second = start_worker(tmp_path, "second", **env)
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(events)), timeout_s=90)
    finally:
        assert second.stop() == 0
    await assert_state_matches(fresh_database_url, events)
    assert "PostgreSQL is behind Kafka: replaying" in second.log_text()


async def test_a_letter_too_large_for_the_dead_letter_topic_goes_without_its_value(
    kafka_bootstrap: str, fresh_database_url: str, create_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=1)
    await create_topic(f"{topic}.dlq", config={"max.message.bytes": "100000"})
    valid = list(samples.stream(seed=17, events=20))
    huge = b'{"event_type": "appointment.upserted", "padding": "' + b"x" * 400_000 + b'"}'
    await produce(kafka_bootstrap, topic, [*records(valid[:10]), (b"dealer-x/huge", huge), *records(valid[10:])])
    worker = start_worker(
        tmp_path, "w", bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic
    )
    try:
        await eventually(lambda: _equals(applied_count(fresh_database_url), len(valid)), timeout_s=90)
    finally:
        assert worker.stop() == 0
    letters = await read_all(kafka_bootstrap, f"{topic}.dlq")
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert letters[0].key == b"dealer-x/huge"
    assert letters[0].value is None
    assert headers["dlq.value.omitted"] == str(len(huge)).encode()
    assert headers["dlq.stage"] == b"contract"
    assert headers["dlq.original.offset"] == b"10"
