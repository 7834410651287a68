"""Compressed batches end to end: a librdkafka producer (confluent-kafka, what many producers use) with every codec
Kafka defines, a real `carsys-ingest run` process, the real broker and PostgreSQL; then a batch damaged on the broker's
disk: the worker holds its partition with one line, and `carsys-ingest skip` moves it on.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from dev import samples
from dev import stack as devstack
from dev.db import fetch, fetchval
from dev.kafka import read_all
from dev.process import REPO, WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.batch_bytes import batches_in, damage_on_disk, garbage_payload, unknown_codec
from tests.conftest import TopicFactory
from worker.normalise.records import TOMBSTONE

pytestmark = pytest.mark.timeout(240)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
Record = tuple[bytes | None, bytes | None]


def librdkafka_produce(bootstrap: str, topic: str, records: list[Record], *, codec: str, partition: int = -1) -> None:
    """One librdkafka producer per call, batching everything it is given into compressed batches of ``codec``."""
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 50, "acks": "all"})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in records:
        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert errors == []


def log_dirs() -> list[Path]:
    """The log directories of the test broker, when it runs on this machine (it does under `make test`)."""
    dirs = sorted(devstack.STATE_ROOT.glob("*/kafka/data"))
    if not dirs:
        pytest.skip("the broker's segment files are not on this machine")
    return dirs


def codecs_on_disk(topic: str, partitions: int) -> set[int]:
    """The codec id of every batch of ``topic`` as the broker stored it."""
    found: set[int] = set()
    for d in log_dirs():
        for p in range(partitions):
            for segment in (d / f"{topic}-{p}").glob("*.log"):
                data = segment.read_bytes()
                found |= {data[pos + 22] & 0x07 for pos, _, _ in batches_in(data)}
    return found


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def records_of(events: list[dict[str, Any]]) -> list[Record]:
    return [(samples.key_of(e), samples.encode(e)) for e in events]


async def stored_offsets(dsn: str) -> dict[int, int]:
    try:
        rows = await fetch(dsn, "SELECT partition, next_offset FROM consumer_offsets")
    except Exception:  # not migrated yet
        return {}
    return {r["partition"]: r["next_offset"] for r in rows}


async def test_every_codec_from_librdkafka_lands_with_invalid_records(
    kafka_bootstrap: str, fresh_database_url: str, create_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=3, dlq=True)
    events = list(samples.stream(seed=21, events=250))
    invalid: list[Record] = [(b"dealer-bad/1", b"{not json"), (b"dealer-bad/2", b"[]"), (b"dealer-bad/3", None)]
    chunk = len(events) // len(CODECS) + 1
    for i, codec in enumerate(CODECS):
        mixed = records_of(events[i * chunk : (i + 1) * chunk])
        mixed[len(mixed) // 2 : len(mixed) // 2] = invalid  # in the middle of the compressed batch
        librdkafka_produce(kafka_bootstrap, topic, mixed, codec=codec)
    assert codecs_on_disk(topic, 3) == set(CODEC_IDS.values())

    env = worker_env(
        bootstrap=kafka_bootstrap,
        database_url=fresh_database_url,
        topic=topic,
        group=topic,
        KAFKA_DLQ_COMPRESSION="zstd",
    )
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    total = len(events) + len(invalid) * len(CODECS)
    try:
        await eventually(lambda: _sum_is(stored_offsets(fresh_database_url), total), timeout_s=90)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    await expected.assert_tables_match(fresh_database_url, events)

    letters = await read_all(kafka_bootstrap, f"{topic}.dlq")
    assert sorted(letter.value or b"" for letter in letters) == sorted((v or b"") for _, v in invalid * len(CODECS))
    tombstones = [dict(letter.headers) for letter in letters if letter.value is None]
    assert len(tombstones) == len(CODECS)
    assert {h["dlq.error.message"].decode() for h in tombstones} == {TOMBSTONE}
    # The letters are compressed as configured, and the dlq tools read them back.
    assert codecs_on_disk(f"{topic}.dlq", 1) == {CODEC_IDS["zstd"]}
    listed = cli("dlq", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["letters"] == len(letters)
    shown = cli("dlq", "show", "--stage", "decode", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "tombstone" in shown.stdout


async def _sum_is(offsets: Any, wanted: int) -> bool:
    return bool(sum((await offsets).values()) == wanted)


async def kafka_committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        committed: int | None = await consumer.committed(tp)
        return committed
    finally:
        await consumer.stop()


async def test_an_undecodable_batch_holds_its_partition_until_an_operator_skips_it(
    kafka_bootstrap: str, fresh_database_url: str, create_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    events = list(samples.stream(seed=22, events=46))
    before, damaged, after, other = events[0:3], events[3:6], events[6:9], events[15:]
    later, last = events[9:12], events[12:15]  # produced after the first skip
    # Partition 0: three lz4 batches (offsets 0-2, 3-5, 6-8), the middle one damaged on disk; partition 1: the rest.
    for part in (before, damaged, after):
        librdkafka_produce(kafka_bootstrap, topic, records_of(part), codec="lz4", partition=0)
    librdkafka_produce(kafka_bootstrap, topic, records_of(other), codec="zstd", partition=1)
    damage_on_disk(log_dirs(), topic, 0, 3, unknown_codec)

    env = worker_env(bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic)
    # Nothing consumed yet: a skip now would also skip offsets 0-2, which are readable.
    early = cli("skip", "--partition", "0", "--offset", "3", env=env)
    assert early.returncode == 1, early.stdout + early.stderr
    assert "before the batch at 3" in early.stderr

    worker = WorkerProcess(env, tmp_path / "w.log").start()
    try:
        # Everything readable lands, including the records of the same partition fetched with the bad batch.
        await eventually(lambda: _equals(stored_offsets(fresh_database_url), {0: 3, 1: len(other)}), timeout_s=90)
        await eventually(lambda: _has(worker, "carsys_held_partitions 1.0"))
        await asyncio.sleep(4)  # a while held: no exit, no retry loop, one line
        assert worker.alive
        lines = [json.loads(x) for x in worker.log_text().splitlines() if "undecodable record batch" in x]
        assert len(lines) == 1, lines
        event = lines[0]["event"]
        assert f"{topic}/0 offsets 3-5" in event
        assert "UnsupportedCodecError" in event
        assert "carsys-ingest skip --partition 0 --offset 3" in event
        assert "unreachable" not in worker.log_text()
        assert worker.get("/healthz")[0] == 200
        assert (await stored_offsets(fresh_database_url))[0] == 3

        readable = cli("skip", "--partition", "0", "--offset", "6", env=env)
        assert readable.returncode == 1
        assert "can be read: nothing to skip" in readable.stderr

        skipped = cli("skip", "--partition", "0", "--offset", "3", env=env)
        assert skipped.returncode == 0, skipped.stderr
        assert "skipped" in skipped.stdout
        assert "offsets 3-5" in skipped.stdout
        assert "the group has running members" in skipped.stdout
        # The holding worker sees PostgreSQL's offset move, seeks past the batch, commits it to Kafka and goes on.
        await eventually(lambda: _equals(stored_offsets(fresh_database_url), {0: 9, 1: len(other)}), timeout_s=30)
        tp = TopicPartition(topic, 0)
        await eventually(lambda: _equals(kafka_committed(kafka_bootstrap, topic, tp), 9), timeout_s=30)
        await eventually(lambda: _has(worker, "carsys_held_partitions 0.0"))
        again = cli("skip", "--partition", "0", "--offset", "3", env=env)
        assert again.returncode == 0, again.stderr
        assert "already past" in again.stdout
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]

    # With no worker running, the skip commits to Kafka itself; the next worker starts past the batch.
    for part in (later, last):
        librdkafka_produce(kafka_bootstrap, topic, records_of(part), codec="snappy", partition=0)
    damage_on_disk(log_dirs(), topic, 0, 9, garbage_payload)
    stopped = cli("skip", "--partition", "0", "--offset", "9", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "Kafka: committed offset 12" in stopped.stdout
    assert await kafka_committed(kafka_bootstrap, topic, TopicPartition(topic, 0)) == 12
    worker = WorkerProcess(env, tmp_path / "w2.log").start()
    try:
        await eventually(lambda: _at_least(stored_offsets(fresh_database_url), 0, 15), timeout_s=90)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    assert "undecodable" not in worker.log_text()
    landed = before + after + last + other
    await expected.assert_tables_match(fresh_database_url, landed)
    assert await fetchval(fresh_database_url, "SELECT count(*) FROM applied_events") == len(landed)
    assert await read_all(kafka_bootstrap, f"{topic}.dlq") == []


async def _at_least(offsets: Any, partition: int, wanted: int) -> bool:
    return bool((await offsets).get(partition, 0) >= wanted)


async def _equals(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def _has(worker: WorkerProcess, text: str) -> bool:
    return text in worker.get("/metrics")[1]
