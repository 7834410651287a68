"""``carsys-ingest trace`` against the real broker, PostgreSQL and a running ``carsys-ingest run``.

One stream holds an appointment of each kind support asks about: stored (with an older event for the same key that
arrived later and did not win), tombstoned, dead-lettered (a v2 event), dead-lettered then replayed after the
cause was fixed (a too strict CHECK on work-order numbers), and a key nobody ever sent.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer

from dev import samples
from dev.db import fetch, fetchval
from dev.kafka import produce, read_all
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory
from worker import cli
from worker.ops.trace import librdkafka_partition_of, partition_of
from worker.runtime import migrations

pytestmark = pytest.mark.timeout(300)

STRICT_WO = "ALTER TABLE appointments ADD CONSTRAINT wo_number_format CHECK (wo_number IS NULL OR wo_number LIKE 'WO%')"
T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


class World(msgspec.Struct):
    env: dict[str, str]
    topic: str
    dsn: str
    events: dict[str, dict[str, Any]]  # by role: newer, older, upsert, delete, v2, legacy
    worker: WorkerProcess


def variant(base: dict[str, Any], dms: str, at: dt.datetime, **appointment: Any) -> dict[str, Any]:
    event = copy.deepcopy(base)
    event["event_id"] = str(uuid.uuid4())
    event["occurred_at"] = at.isoformat()
    event["appointment"]["dms_number"] = dms
    event["appointment"]["wo_number"] = "WO000001"
    event["appointment"].update(appointment)
    return event


def personal(events: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The v1 upserts: they hold every person of the stream (the v2 event is a copy of one)."""
    return [events[r] for r in ("newer", "older", "upsert", "legacy")]


def key(event: dict[str, Any]) -> str:
    return samples.key_of(event).decode()


def scenario() -> dict[str, dict[str, Any]]:
    base = next(e for e in samples.stream(seed=71, events=50) if e["event_type"] == "appointment.upserted")
    dealer = base["dealer_id"]
    return {
        "newer": variant(base, "TR-STORED", T0 + dt.timedelta(minutes=10)),
        "older": variant(base, "TR-STORED", T0),  # sent after "newer": seen, did not win
        "upsert": variant(base, "TR-TOMB", T0),
        "delete": {
            "event_id": str(uuid.uuid4()),
            "event_type": "appointment.deleted",
            "schema_version": 1,
            "occurred_at": (T0 + dt.timedelta(minutes=5)).isoformat(),
            "dealer_id": dealer,
            "appointment": {"dms_number": "TR-TOMB"},
        },
        "v2": {**variant(base, "TR-DEAD", T0), "schema_version": 2},
        "legacy": variant(base, "TR-REPLAY", T0, wo_number="LEG-0001"),
    }


async def run(env: dict[str, str], *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, list(args))
        out, err = capsys.readouterr()
    return code, out, err


async def _true(check: Any) -> bool:
    try:
        return bool(await check)
    except Exception:
        return False


@pytest.fixture(scope="module")
async def world(
    kafka_bootstrap: str, database_url: str, create_topic: TopicFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    await migrations.migrate(database_url)
    await fetch(database_url, STRICT_WO)
    events = scenario()
    order = ["newer", "upsert", "delete", "v2", "legacy"]
    await produce(kafka_bootstrap, topic, [(samples.key_of(events[r]), samples.encode(events[r])) for r in order])
    # Separately and afterwards, so that it is certainly processed after "newer" (a later batch).
    env = worker_env(bootstrap=kafka_bootstrap, database_url=database_url, topic=topic, group=topic)
    worker = WorkerProcess(env, tmp_path_factory.mktemp("trace") / "worker.log").start()
    try:
        applied = "SELECT count(*) = 3 FROM applied_events"
        await eventually(lambda: _true(fetchval(database_url, applied)))
        await eventually(lambda: _true(_letters_are(kafka_bootstrap, f"{topic}.dlq", 2)))
        older = events["older"]
        await produce(kafka_bootstrap, topic, [(samples.key_of(older), samples.encode(older))])
        await eventually(lambda: _true(fetchval(database_url, "SELECT count(*) = 4 FROM applied_events")))
        yield World(env=env, topic=topic, dsn=database_url, events=events, worker=worker)
    finally:
        assert worker.stop() == 0
    expected.assert_no_personal_data(worker.log_text(), personal(events))


async def _letters_are(bootstrap: str, topic: str, n: int) -> bool:
    return len(await read_all(bootstrap, topic)) == n


async def _record_at(world: World, partition: int, offset: int) -> dict[str, Any]:
    records = await read_all(world.env["KAFKA_BOOTSTRAP_SERVERS"], world.topic)
    found = next(r for r in records if (r.partition, r.offset) == (partition, offset))
    document: dict[str, Any] = msgspec.json.decode(found.value)
    return document


async def test_a_stored_key_shows_row_provenance_events_seen_and_position(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    newer, older = world.events["newer"], world.events["older"]
    code, out, _ = await run(world.env, "trace", key(newer), "--json", capsys=capsys)
    assert code == 0
    report = msgspec.json.decode(out)
    row = report["appointment"]
    assert (row["deleted"], row["event_id"], row["source_topic"]) == (False, newer["event_id"], world.topic)
    # The provenance points at the very record that carried the winning event.
    assert (await _record_at(world, row["source_partition"], row["source_offset"]))["event_id"] == newer["event_id"]
    assert len(report["interventions"]) == len(newer["appointment"]["interventions"])
    assert all(i["description"] in ("<string>", None) for i in report["interventions"])
    assert all(i["source_offset"] == row["source_offset"] for i in report["interventions"])
    assert {p["person_id"] for p in report["persons"]} == {p["id"] for p in newer["appointment"]["persons"]}
    assert all(p["last_name"] in ("<string>", None) for p in report["persons"])
    assert report["vehicle"]["vin"] in ("<string>", None)
    seen = {e["event_id"]: e["won"] for e in report["events_seen"]}
    assert seen == {newer["event_id"]: True, older["event_id"]: False}
    assert report["dead_letters"] == []
    consumer = report["consumer"]
    assert consumer["partition"] == row["source_partition"]
    assert consumer["record_consumed"] is True
    assert consumer["lag"] == 0
    expected.assert_no_personal_data(out, personal(world.events))

    code, out, _ = await run(world.env, "trace", "--dealer", newer["dealer_id"], "--dms", "TR-STORED", capsys=capsys)
    assert code == 0
    assert "stored appointment: live" in out
    assert f"{older['event_id']} occurred_at" in out
    assert "did not win" in out
    assert "the record at offset" in out
    assert ": consumed" in out
    expected.assert_no_personal_data(out, personal(world.events))

    # By the id of the event that lost: applied_events knows its appointment.
    code, out, _ = await run(world.env, "trace", "--event-id", older["event_id"].upper(), "--json", capsys=capsys)
    assert code == 0
    assert msgspec.json.decode(out)["key"] == key(newer)

    code, out, err = await run(world.env, "trace", key(newer), "--reveal", capsys=capsys)
    assert code == 0
    assert newer["appointment"]["persons"][0]["last_name"] in out
    assert "revealed" in err


async def test_a_tombstoned_key(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run(world.env, "trace", key(world.events["delete"]), "--json", capsys=capsys)
    assert code == 0
    report = msgspec.json.decode(out)
    assert report["appointment"]["deleted"] is True
    assert report["appointment"]["event_id"] == world.events["delete"]["event_id"]
    assert report["interventions"] == []
    assert report["persons"] == []
    assert {e["event_id"]: e["won"] for e in report["events_seen"]} == {
        world.events["upsert"]["event_id"]: False,
        world.events["delete"]["event_id"]: True,
    }
    code, out, _ = await run(world.env, "trace", key(world.events["delete"]), capsys=capsys)
    assert "stored appointment: tombstone (deleted at" in out


async def test_a_dead_lettered_key_by_key_and_by_event_id(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v2 = world.events["v2"]
    code, out, _ = await run(world.env, "trace", key(v2), "--json", capsys=capsys)
    assert code == 0
    report = msgspec.json.decode(out)
    assert report["appointment"] is None
    assert report["events_seen"] == []
    [letter] = report["dead_letters"]
    assert (letter["stage"], letter["error_class"], letter["replayed"]) == ("contract", "ContractError", None)
    assert "schema version" in letter["error_message"]
    assert report["consumer"]["record_consumed"] is True

    # PostgreSQL never saw this event id: the dead-letter topic is searched for its bytes.
    code, out, _ = await run(world.env, "trace", "--event-id", v2["event_id"], capsys=capsys)
    assert code == 0
    assert f"trace {key(v2)} event {v2['event_id']}" in out
    assert "contract / ContractError" in out
    assert "stored appointment: none" in out
    expected.assert_no_personal_data(out, personal(world.events))


async def test_a_replayed_key_shows_the_replay_and_the_row_it_wrote(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = world.events["legacy"]
    code, out, _ = await run(world.env, "trace", key(legacy), "--json", capsys=capsys)
    assert code == 0
    before = msgspec.json.decode(out)
    assert before["appointment"] is None
    assert [(lt["stage"], lt["replayed"]) for lt in before["dead_letters"]] == [("write", None)]

    await fetch(world.dsn, "ALTER TABLE appointments DROP CONSTRAINT wo_number_format")
    code, out, _ = await run(world.env, "dlq", "replay", "--key", key(legacy), capsys=capsys)
    assert code == 0
    assert "replayed: 1" in out
    query = "SELECT count(*) = 1 FROM appointments WHERE dms_number = 'TR-REPLAY'"
    await eventually(lambda: _true(fetchval(world.dsn, query)))

    code, out, _ = await run(world.env, "trace", key(legacy), "--json", capsys=capsys)
    assert code == 0
    report = msgspec.json.decode(out)
    [letter] = report["dead_letters"]
    replayed = letter["replayed"]
    row = report["appointment"]
    assert replayed["to"] == f"{world.topic}/{row['source_partition']}/{row['source_offset']}"
    assert replayed["outcome"].startswith("no letter since")
    assert row["event_id"] == legacy["event_id"]
    code, out, _ = await run(world.env, "trace", key(legacy), capsys=capsys)
    assert "replayed at" in out


async def test_an_unknown_key_exits_1(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    dealer = world.events["newer"]["dealer_id"]
    code, out, _ = await run(world.env, "trace", f"{dealer}/NEVER-SENT", capsys=capsys)
    assert code == 1
    assert "nothing known" in out
    assert "consumer:" in out  # where the key's partition stands still helps: was it read at all?
    code, _, _ = await run(world.env, "trace", "--event-id", str(uuid.uuid4()), "--json", capsys=capsys)
    assert code == 1


async def test_arguments_are_checked(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["no-slash"], ["--dealer", "d"], ["--event-id", "nope"], ["a/b", "--event-id", str(uuid.uuid4())]):
        code, _, err = await run(world.env, "trace", *args, capsys=capsys)
        assert code == 2, args
        assert "carsys-ingest trace:" in err


def _keys_apart(dealer: str, partitions: int) -> str:
    """A key that Java's and librdkafka's default partitioners put on different partitions."""
    keys = (f"{dealer}/NEVER-{i}" for i in range(1000))
    return next(
        k for k in keys if partition_of(k.encode(), partitions) != librdkafka_partition_of(k.encode(), partitions)
    )


async def test_librdkafkas_default_partitioner_is_crc32_of_the_key(
    kafka_bootstrap: str, create_topic: TopicFactory
) -> None:
    topic = await create_topic(f"carsys.partitioner.{uuid.uuid4().hex[:10]}", partitions=6)
    keys = [f"dealer-{i % 7}/2026-{i:05d}".encode() for i in range(120)]
    landed: dict[bytes, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None
        landed[msg.key()] = msg.partition()

    producer = Producer({"bootstrap.servers": kafka_bootstrap})  # the default partitioner, as .NET producers have it
    for k in keys:
        producer.produce(topic, value=b"{}", key=k, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert landed == {k: librdkafka_partition_of(k, 6) for k in keys}
    assert sum(landed[k] != partition_of(k, 6) for k in keys) > len(keys) // 2  # the two families mostly disagree


async def test_an_unknown_key_shows_both_families_partitions(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    wanted = _keys_apart(world.events["newer"]["dealer_id"], 2)
    code, out, _ = await run(world.env, "trace", wanted, "--json", capsys=capsys)
    assert code == 1
    consumer = msgspec.json.decode(out)["consumer"]
    assert consumer["partition"] == partition_of(wanted.encode(), 2)
    assert consumer["librdkafka"]["partition"] == librdkafka_partition_of(wanted.encode(), 2)
    assert consumer["librdkafka"]["lag"] == 0
    code, out, _ = await run(world.env, "trace", wanted, capsys=capsys)
    assert "(where Java clients, publish and dlq replay put this key)" in out
    assert f"where librdkafka's clients (.NET, Python, Go, kcat) put it: partition {1 - consumer['partition']}" in out
