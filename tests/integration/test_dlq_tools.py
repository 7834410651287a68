"""dlq list / show / replay and publish against the real broker, PostgreSQL and a real `carsys-ingest run` process.

The story: a worker consumes a mixed stream. Broken records (not JSON, not the contract) are dead-lettered at the
decode and contract stages. Some valid events are refused by PostgreSQL (a too strict CHECK on work-order numbers,
"wo_number must start with WO", that rejects the legacy "LEG-" numbers of one dealer): stage ``write``. Operators
list and inspect the letters, dry-run a replay, fix the cause (drop the constraint) and replay; the contract-broken
ones keep failing until the loop guard stops them.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dev import samples
from dev.db import fetch, fetchval
from dev.kafka import produce, read_all
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory
from worker import cli
from worker.runtime import migrations

pytestmark = pytest.mark.timeout(300)

TRACE = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
STRICT_WO = "ALTER TABLE appointments ADD CONSTRAINT wo_number_format CHECK (wo_number IS NULL OR wo_number LIKE 'WO%')"
V2_REASON = "$.schema_version: unsupported schema version (this worker reads version 1)"
BROKEN: list[bytes] = [b"{not json", b"\xff\xfe garbage", b"[]", b'{"event_type": "appointment.upserted"}']


class World(msgspec.Struct):
    env: dict[str, str]
    topic: str
    dsn: str
    valid: list[dict[str, Any]]  # applied at once
    legacy: list[dict[str, Any]]  # refused by the strict constraint until it is dropped
    future: list[dict[str, Any]]  # schema_version 2: contract errors forever, and full of personal data
    personal: list[dict[str, Any]]  # v1 events holding every person of the stream (for the leak checks)
    worker: WorkerProcess


def legacy_events(valid: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out = []
    for i, source in enumerate(valid[:n]):
        event = copy.deepcopy(source)
        event["event_id"] = str(uuid.uuid4())
        event["appointment"]["dms_number"] = f"LEG{i:04d}"
        event["appointment"]["wo_number"] = f"LEG-{i:04d}"
        out.append(event)
    return out


def records(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(samples.key_of(e), samples.encode(e)) for e in events]


async def letters_now(world: World) -> list[Any]:
    return await read_all(world.env["KAFKA_BOOTSTRAP_SERVERS"], f"{world.topic}.dlq")


@pytest.fixture(scope="module")
async def world(
    kafka_bootstrap: str, database_url: str, create_topic: TopicFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    await migrations.migrate(database_url)
    await fetch(database_url, STRICT_WO)
    upserts = [e for e in samples.stream(seed=61, events=80) if e["event_type"] == "appointment.upserted"]
    valid, legacy = upserts[:40], legacy_events(upserts[40:], 5)
    future = [{**e, "schema_version": 2, "event_id": str(uuid.uuid4())} for e in upserts[45:48]]
    mixed = (
        records(valid[:20]) + records(legacy) + [(b"dealer-bad/" + str(i).encode(), v) for i, v in enumerate(BROKEN)]
    )
    mixed += records(future) + records(valid[20:])
    await produce(kafka_bootstrap, topic, mixed, headers=[TRACE])
    env = worker_env(bootstrap=kafka_bootstrap, database_url=database_url, topic=topic, group=topic)
    worker = WorkerProcess(env, tmp_path_factory.mktemp("dlq") / "worker.log").start()
    w = World(
        env=env,
        topic=topic,
        dsn=database_url,
        valid=valid,
        legacy=legacy,
        future=future,
        personal=upserts,
        worker=worker,
    )
    try:
        n_letters = len(legacy) + len(BROKEN) + len(future)
        await eventually(lambda: _count_is(fetchval(database_url, "SELECT count(*) FROM applied_events"), len(valid)))
        await eventually(lambda: _len_is(letters_now(w), n_letters))
        # A duplicate letter, as a worker crash between the letter's ack and the source commit leaves behind.
        first_write = next(x for x in await letters_now(w) if dict(x.headers)["dlq.stage"] == b"write")
        await produce(
            kafka_bootstrap, f"{topic}.dlq", [(first_write.key, first_write.value)], headers=list(first_write.headers)
        )
        yield w
    finally:
        assert worker.stop() == 0
    expected.assert_no_personal_data(worker.log_text(), [*upserts, *legacy])


async def _count_is(value: Any, wanted: int) -> bool:
    try:
        return int(await value) == wanted
    except Exception:
        return False


async def _len_is(value: Any, wanted: int) -> bool:
    return len(await value) == wanted


async def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], *args: str
) -> tuple[int, str, str]:
    """``carsys-ingest <args>`` in this process (its own event loop, on a thread), configured by the environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_counts_by_stage_class_and_dealer_and_dedupes(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "list", "--json")
    assert code == 0
    summary = msgspec.json.decode(out)
    n = len(world.legacy) + len(BROKEN) + len(world.future)
    assert (summary["letters"], summary["unique"], summary["duplicates"]) == (n + 1, n, 1)
    assert summary["by_stage"] == {"write": len(world.legacy), "contract": 5, "decode": 2}
    assert summary["by_error_class"] == {"WriteRejected": 5, "ContractError": 5, "DecodeError": 2}
    assert summary["by_dealer"]["dealer-bad"] == len(BROKEN)
    assert summary["replayed"] == 0
    assert summary["oldest_failure"] <= summary["newest_failure"]

    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "list", "--stage", "write")
    assert code == 0
    assert f"letters: {len(world.legacy) + 1} ({len(world.legacy)} records, 1 duplicate letters)" in out
    assert "WriteRejected" in out
    assert "ContractError" not in out
    expected.assert_no_personal_data(out, world.personal)


async def test_show_redacts_payload_values_unless_revealed(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "show", "--error-class", "ContractError")
    assert code == 0
    assert out.count("letter ") == 5
    assert "unsupported schema version" in out
    assert '"first_name": "<string>"' in out
    assert '"email_private": "<string>"' in out
    assert '"schema_version": 2' in out  # the envelope stays readable: it explains the failure
    assert "traceparent: <55 bytes>" in out
    expected.assert_no_personal_data(out, world.personal)

    code, out, err = await run(monkeypatch, capsys, world.env, "dlq", "show", "--json", "--stage", "decode")
    assert code == 0
    views = msgspec.json.decode(out)
    assert sorted(v["payload"] for v in views) == sorted(f"<{len(v)} bytes, not JSON>" for v in BROKEN[:2])
    assert all(v["headers"]["dlq.original.topic"] == world.topic for v in views)

    code, out, err = await run(monkeypatch, capsys, world.env, "dlq", "show", "--json", "--reveal", "--limit", "20")
    person = world.future[0]["appointment"]["persons"][0]
    assert person["last_name"] in out
    assert "personal data" in err


async def test_list_groups_by_reason_and_dealer_by_reason(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "list", "--json")
    assert code == 0
    summary = msgspec.json.decode(out)
    assert sum(summary["by_reason"].values()) == summary["unique"]
    assert summary["by_reason"][f"contract ContractError: {V2_REASON}"] == len(world.future)
    assert sum(summary["by_dealer_reason"]["dealer-bad"].values()) == len(BROKEN)
    for dealer, reasons in summary["by_dealer_reason"].items():
        assert sum(reasons.values()) == summary["by_dealer"][dealer]
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "list")
    assert "by reason (stage, class, message):" in out
    assert "by dealer | reason:" in out
    assert "dealer-bad | decode DecodeError:" in out
    expected.assert_no_personal_data(out, world.personal)


async def test_key_filter_on_list_show_and_dry_run(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = samples.key_of(world.legacy[0]).decode()
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "list", "--json", "--key", key)
    assert code == 0
    summary = msgspec.json.decode(out)
    assert (summary["unique"], summary["by_stage"]) == (1, {"write": 1})
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "show", "--json", "--key", key)
    assert {v["key"] for v in msgspec.json.decode(out)} == {key}
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--dry-run", "--key", key)
    assert "1 letter(s) would be replayed" in out
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "show", "--key", "dealer-none/0")
    assert "no matching letters" in out


async def test_limit_must_be_at_least_one(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in ("0", "-1"):
        with pytest.raises(SystemExit) as exited:
            await run(monkeypatch, capsys, world.env, "dlq", "show", "--limit", value)
        assert exited.value.code == 2
    _, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "show", "--json", "--limit", "2")
    assert len(msgspec.json.decode(out)) == 2


async def test_replay_to_another_topic_is_a_check_not_a_replay(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], create_topic: TopicFactory
) -> None:
    staging = await create_topic(f"staging.{uuid.uuid4().hex[:8]}")
    bootstrap = world.env["KAFKA_BOOTSTRAP_SERVERS"]
    before = len(await read_all(bootstrap, world.topic))
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--stage", "write", "--to-topic", staging)
    assert code == 0
    assert f"replayed: 5 to {staging} (a check: not recorded in dlq_replays)" in out
    copies = await read_all(bootstrap, staging)
    legacy_keys = sorted(samples.key_of(e) for e in world.legacy)
    assert sorted(r.key for r in copies) == legacy_keys
    assert all(dict(r.headers)["replay.of"].decode().startswith(f"{world.topic}/") for r in copies)
    assert len(await read_all(bootstrap, world.topic)) == before
    assert await fetchval(world.dsn, "SELECT count(*) FROM dlq_replays") == 0


async def test_dry_run_then_fix_then_replay_lands_once_and_the_loop_guard_holds(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = world.env["KAFKA_BOOTSTRAP_SERVERS"]
    before = len(await read_all(bootstrap, world.topic))

    # Dry run: verdicts from the current code, nothing produced, no progress recorded.
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--dry-run")
    assert code == 0
    assert "would now succeed: 5" in out
    assert "would fail again: 7" in out
    assert "duplicate letters skipped: 1" in out
    # Grouped by reason; one line per letter only with --verbose.
    assert "      5  failed with write WriteRejected:" in out
    assert f"      {len(world.future)}  contract ContractError: {V2_REASON}" in out
    assert "would fail-again at" not in out
    assert "(per-letter lines with --verbose)" in out
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--dry-run", "--verbose")
    assert out.count("would fail-again at contract: ContractError") == 5
    assert out.count("would fail-again at decode: DecodeError") == 2
    assert len(await read_all(bootstrap, world.topic)) == before
    assert await fetchval(world.dsn, "SELECT count(*) FROM dlq_replays") == 0

    # The cause is fixed; replay the write-stage letters while the worker runs.
    await fetch(world.dsn, "ALTER TABLE appointments DROP CONSTRAINT wo_number_format")
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--stage", "write", "--rate", "50")
    assert code == 0
    assert "replayed: 5" in out
    assert "duplicate letters skipped: 1" in out
    landed = world.valid + world.legacy
    await eventually(lambda: _count_is(fetchval(world.dsn, "SELECT count(*) FROM applied_events"), len(landed)))
    await expected.assert_tables_match(world.dsn, landed)
    await assert_replayed_records(world, expected_count=5)

    # A second replay publishes nothing new.
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--stage", "write")
    assert "replayed: 0" in out
    assert "already replayed: 5" in out
    await assert_replayed_records(world, expected_count=5)

    # Contract-broken letters keep failing: replayed once, dead-lettered again with dlq.replay.count 1, then refused.
    code, out, _ = await run(
        monkeypatch, capsys, world.env, "dlq", "replay", "--stage", "contract", "--max-replays", "1"
    )
    assert "replayed: 5" in out
    await eventually(lambda: _replayed_letters(world, 5))
    code, out, _ = await run(
        monkeypatch, capsys, world.env, "dlq", "replay", "--stage", "contract", "--max-replays", "1"
    )
    assert "replayed: 0" in out
    assert "already replayed: 5" in out
    assert "refused by the loop guard (dlq.replay.count >= --max-replays; --force overrides): 5" in out
    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "replay", "--stage", "contract", "--force")
    assert "replayed: 5" in out  # --force: forced past the guard (count 1 < 3 would pass anyway here)

    code, out, _ = await run(monkeypatch, capsys, world.env, "dlq", "list", "--json")
    summary = msgspec.json.decode(out)
    assert summary["replayed"] == 15
    assert summary["failed_after_replay"] >= 5
    assert await fetchval(world.dsn, "SELECT count(*) FROM applied_events") == len(landed)  # nothing applied twice


async def _replayed_letters(world: World, n: int) -> bool:
    return sum(1 for x in await letters_now(world) if dict(x.headers).get("dlq.replay.count") == b"1") >= n


async def assert_replayed_records(world: World, *, expected_count: int) -> None:
    source = await read_all(world.env["KAFKA_BOOTSTRAP_SERVERS"], world.topic)
    replayed = [r for r in source if "replay.of" in dict(r.headers) and dict(r.headers)["dlq.replay.count"] == b"1"]
    replayed = [r for r in replayed if r.key and r.key.split(b"/")[1].startswith(b"LEG")]
    assert len(replayed) == expected_count
    letters = {dict(x.headers)["dlq.original.offset"]: x for x in await letters_now(world)}
    for record in replayed:
        headers = dict(record.headers)
        topic, partition, offset = headers["replay.of"].decode().rsplit("/", 2)
        assert topic == world.topic
        letter = next(x for x in letters.values() if dict(x.headers)["dlq.original.offset"] == offset.encode()
                      and dict(x.headers)["dlq.original.partition"] == partition.encode())  # fmt: skip
        assert (record.key, record.value) == (letter.key, letter.value)  # byte-identical
        assert headers["traceparent"] == TRACE[1]
        assert headers["replay.at"]
        assert not [k for k in headers if k.startswith("dlq.") and k != "dlq.replay.count"]


async def test_publish_validates_and_keys_by_contract(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    create_topic: TopicFactory,
) -> None:
    topic = await create_topic(f"pub.{uuid.uuid4().hex[:8]}")
    good = world.valid[:3]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(samples.encode(e) for e in good) + b"\n" + BROKEN[0] + b"\n")
    code, _, err = await run(monkeypatch, capsys, world.env, "publish", str(path), "--topic", topic)
    assert code == 1
    assert "line 4: DecodeError" in err
    assert "nothing published" in err
    assert await read_all(world.env["KAFKA_BOOTSTRAP_SERVERS"], topic) == []

    code, out, _ = await run(monkeypatch, capsys, world.env, "publish", str(path), "--topic", topic, "--allow-invalid")
    assert code == 0
    assert "published 4 event(s)" in out
    published = await read_all(world.env["KAFKA_BOOTSTRAP_SERVERS"], topic)
    assert sorted(((r.key, r.value) for r in published), key=str) == sorted(
        [*records(good), (None, BROKEN[0])], key=str
    )
