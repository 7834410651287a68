"""Fault injection: real `carsys-ingest run` processes, the real broker and PostgreSQL, faults from outside.

Every scenario ends with the same three checks (``verify``):
- the tables equal the model of tests/model.py exactly (no lost, duplicated or stale row, every applied event id);
- the dead-letter topic holds every invalid record, each exactly once after de-duplicating by its origin
  (topic, partition, offset), with the right stage and its key, value and headers byte-identical, and nothing else:
  a dead letter caused by an outage would be an extra letter;
- PostgreSQL's stored offsets and Kafka's committed offsets are at the end of every partition (nothing stuck).

A crash between a dead letter's acknowledgement and the commit may legitimately send that letter twice: the raw
duplicates are counted and printed (``pytest -s``), never hidden. The README says what each scenario proves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests import model
from tests.conftest import TopicFactory
from tests.support import WorkerProcess, fetch, fetchval, read_all, worker_env
from worker import samples

pytestmark = pytest.mark.timeout(420)

BIG = 8 * 1024 * 1024  # the worker fetches up to 8 MB per partition; these topics accept as much
KIND = "fault.kind"  # header naming the corpus kind of a record (kept in its dead letter, like any header)
APP_NAME = "carsys-ingest-under-test"  # marks the worker's PostgreSQL sessions, so faults hit only those
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


# --- the corpus of odd records ----------------------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of odd record: where it must end up (``stage`` of its dead letter, or None: stored)."""

    name: str
    value: bytes | None
    stage: str | None
    key: bytes | None = b"poison"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # (table, key columns -> values, column, value): must be stored exactly so.
    verbatim: list[tuple[str, dict[str, str], str, Any]] = field(default_factory=list)

    def record(self) -> Record:
        return self.key, self.value, [(KIND, self.name.encode()), *self.headers]


def _template(seed: int = 77) -> dict[str, Any]:
    return next(e for e in samples.stream(seed=seed, events=50) if e["event_type"] == "appointment.upserted")


def _fresh(name: str, n: int, seed: int = 77) -> dict[str, Any]:
    """A valid upsert of its own appointment and persons, newer than any generated stream event."""
    event = json.loads(samples.encode(_template(seed)))
    event["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fault-corpus/{name}"))
    event["occurred_at"] = (dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n)).isoformat()
    appointment = event["appointment"]
    appointment["dms_number"] = f"X-{name}"
    ids = {p["id"]: f"{name}-{i}" for i, p in enumerate(appointment["persons"])}
    for p in appointment["persons"]:
        p["id"] = ids[p["id"]]
    vehicle = appointment["vehicle"]
    for role in ("driver_id", "owner_id", "contractor_id"):
        if vehicle.get(role):
            vehicle[role] = ids.get(vehicle[role], vehicle[role])
    appointment["interventions"] = [{"title": "Grote beurt", "description": "Olie", "price": "289.00"}]
    return event


def _enc(event: dict[str, Any]) -> bytes:
    return samples.encode(event)


def _raw_price(event: dict[str, Any], literal: bytes) -> bytes:
    event["appointment"]["interventions"][0]["price"] = 987654321
    return _enc(event).replace(b"987654321", literal, 1)


def _with(name: str, n: int, change: Callable[[dict[str, Any]], Any]) -> bytes:
    event = _fresh(name, n)
    change(event)
    return _enc(event)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = event
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value

    return change


_DROP = object()


def corpus() -> list[Kind]:
    """At least 30 kinds of invalid record, each with its dead-letter stage, plus valid oddities stored verbatim."""
    kinds: list[Kind] = []

    def bad(name: str, stage: str, value: bytes | None, **kw: Any) -> None:
        kinds.append(Kind(name, value, stage, **kw))

    def n() -> int:
        return len(kinds)

    full = _enc(_fresh("template", 0))
    # decode: not UTF-8 JSON at all
    bad("invalid-json", "decode", b'{"event_id": ')
    bad("truncated-json", "decode", full[: len(full) // 2])
    bad("trailing-garbage", "decode", full + b" }")
    bad("invalid-utf8", "decode", full.replace(b'"model":"', b'"model":"\xff\xfe', 1))
    bad("overlong-utf8", "decode", full.replace(b'"model":"', b'"model":"\xc0\xaf', 1))
    bad("lone-surrogate-escape", "decode", full.replace(b'"model":"', b'"model":"\\ud800', 1))
    bad("utf16-encoded", "decode", full.decode().encode("utf-16"))
    bad("empty-value", "decode", b"")
    bad("null-value-tombstone-record", "decode", None)
    bad("byte-order-mark", "decode", b"\xef\xbb\xbf" + full)
    bad("nan-literal", "decode", _raw_price(_fresh("nan-literal", n()), b"NaN"))
    bad("infinity-literal", "decode", _raw_price(_fresh("infinity-literal", n()), b"-Infinity"))
    bad("nul-byte", "decode", b"\x00")
    bad("deep-nesting", "decode", full[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}")
    bad("deep-nesting-objects", "decode", full[:-1] + b',"x":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}")
    # 5 MB: above the broker's default message.max.bytes, so these topics are created with max.message.bytes raised.
    bad("five-megabytes", "decode", b'{"event_id": "' + b"x" * (5 * 1024 * 1024))
    bad("binary-headers", "decode", b"{oops", headers=[("bin", b"\x00\xff\xfe"), ("empty", b""), ("bin", b"dup")])
    # contract: JSON, but not a v1 event
    bad("json-array", "contract", b"[" + full + b"]")
    bad("json-number", "contract", b"42")
    bad("json-string", "contract", b'"appointment.upserted"')
    bad("json-null", "contract", b"null")
    bad("empty-object", "contract", b"{}")
    bad("missing-event-id", "contract", _with("missing-event-id", n(), _set("event_id", _DROP)))
    bad("missing-appointment", "contract", _with("missing-appointment", n(), _set("appointment", _DROP)))
    bad("dealer-id-integer", "contract", _with("dealer-id-integer", n(), _set("dealer_id", 12345)))
    bad("waiting-customer-string", "contract", _with("wc", n(), _set("appointment.waiting_customer", "ja")))
    bad("unknown-event-type", "contract", _with("uet", n(), _set("event_type", "appointment.exploded")))
    bad("future-schema-version", "contract", _with("fsv", n(), _set("schema_version", 2)))
    # A number beyond float range is refused by the JSON parser itself, before any field is looked at.
    bad(
        "schema-version-1e400",
        "decode",
        _enc(_fresh("sv", n())).replace(b'"schema_version":1', b'"schema_version":1e400'),
    )
    bad(
        "huge-integer",
        "contract",
        _enc(_fresh("hi", n())).replace(b'"waiting_customer":', b'"waiting_customer":' + b"9" * 400 + b',"_":'),
    )
    bad("event-id-not-uuid", "contract", _with("eid", n(), _set("event_id", "not-a-uuid")))
    bad("occurred-at-without-offset", "contract", _with("oao", n(), _set("occurred_at", "2030-01-01T10:00:00")))
    bad("dealer-id-too-long", "contract", _with("dtl", n(), _set("dealer_id", "d" * 65)))
    bad("dealer-id-empty", "contract", _with("die", n(), _set("dealer_id", "")))
    bad("bad-date", "contract", _with("bd", n(), _set("appointment.vehicle.first_registration_date", "31-12-2020")))
    bad("price-nan-string", "contract", _with("pns", n(), _set("appointment.interventions.0.price", "NaN")))
    bad("price-infinity-string", "contract", _with("pis", n(), _set("appointment.interventions.0.price", "Infinity")))
    bad("interventions-not-array", "contract", _with("ina", n(), _set("appointment.interventions", {"title": "x"})))
    bad("person-without-id", "contract", _with("pwi", n(), _set("appointment.persons.0.id", _DROP)))
    bad("person-id-null", "contract", _with("pin", n(), _set("appointment.persons.0.id", None)))
    delete = {"event_id": str(uuid.uuid4()), "event_type": "appointment.deleted", "schema_version": 1}
    delete |= {"occurred_at": "2030-01-01T10:00:00+00:00", "dealer_id": "dealer-000"}
    bad("delete-without-dms-number", "contract", _enc({**delete, "appointment": {}}))
    # normalise: contract-valid, nothing storable
    bad("whitespace-dms-number", "normalise", _with("wdn", n(), _set("appointment.dms_number", "   ")))
    bad("whitespace-person-id", "normalise", _with("wpi", n(), _set("appointment.persons.0.id", " \t ")))

    def duplicate_person(event: dict[str, Any]) -> None:
        event["appointment"]["persons"].append(dict(event["appointment"]["persons"][0]))

    bad("duplicate-person-ids", "normalise", _with("dpi", n(), duplicate_person))
    bad("whitespace-dms-delete", "normalise", _enc({**delete, "appointment": {"dms_number": " "}}))
    bad("placeholder-created-at", "normalise", _with("pca", n(), _set("appointment.created_at", "0001-01-01T00:00:00")))
    bad("placeholder-occurred-at", "normalise", _with("poa", n(), _set("occurred_at", "9999-12-31T23:59:59Z")))
    # write: PostgreSQL refuses the value for good
    bad("price-overflow", "write", _with("po", n(), _set("appointment.interventions.0.price", 10**13)))
    bad("price-1e400", "write", _with("p1e400", n(), _set("appointment.interventions.0.price", "1e400")))
    bad("nul-char-in-text", "write", _with("ncit", n(), _set("appointment.interventions.0.description", "a\x00b")))
    rnd = random.Random(5)
    huge_key = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20_000))
    bad("dms-number-too-big-for-index", "write", _with("dnt", n(), _set("appointment.dms_number", huge_key)))

    # valid: stored, and exactly as sent where the normaliser has nothing to clean
    def ok(name: str, event: dict[str, Any], verbatim: list[tuple[str, str, Any]], *, key: bytes | None = None) -> None:
        appointment = {"dealer_id": event["dealer_id"], "dms_number": event["appointment"]["dms_number"]}
        checks = []
        for table, column, value in verbatim:
            where = dict(appointment)
            if table == "interventions":
                where["position"] = "0"
            if table == "persons":
                where = {"dealer_id": event["dealer_id"], "person_id": event["appointment"]["persons"][0]["id"]}
            checks.append((table, where, column, value))
        kinds.append(
            Kind(name, _enc(event), None, key=key if key is not None else samples.key_of(event), verbatim=checks)
        )

    sql = _fresh("sql-looking-strings", n())
    sql["appointment"]["dms_number"] = "1; DROP TABLE interventions; --"
    sql["appointment"]["wo_number"] = "WO1' OR '1'='1"
    sql["appointment"]["interventions"][0] |= {"title": "Robert'); DROP TABLE persons;--", "description": "$1 \\x00 %s"}
    sql["appointment"]["persons"][0] |= {"id": "P1'--", "last_name": "O'Brien\"; DELETE FROM persons; --"}
    sql["appointment"]["vehicle"]["driver_id"] = "P1'--"
    ok("sql-looking-strings", sql, [
        ("appointments", "wo_number", "WO1' OR '1'='1"),
        ("interventions", "title", "Robert'); DROP TABLE persons;--"),
        ("interventions", "description", "$1 \\x00 %s"),
        ("persons", "last_name", "O'Brien\"; DELETE FROM persons; --"),
    ])  # fmt: skip
    ctl = _fresh("control-characters", n())
    ctl["appointment"]["wo_number"] = "WO\x01\x02"
    ctl["appointment"]["interventions"][0]["description"] = "ctl\x01\x07\x1b[31m\x7fend"
    ok("control-characters", ctl, [
        ("appointments", "wo_number", "WO\x01\x02"),
        ("interventions", "description", "ctl\x01\x07\x1b[31m\x7fend"),
    ])  # fmt: skip
    uni = _fresh("unicode", n())
    text = "Ré\u0301paratie 🚗👨‍🔧 שלום مرحبا 修理 \u200d\ufeff"
    uni["appointment"]["interventions"][0]["description"] = text
    ok("unicode", uni, [("interventions", "description", text)])
    big = _fresh("huge-string", n())
    big_text = "".join(rnd.choice("abcdefghij") for _ in range(500_000))
    big["appointment"]["interventions"][0]["description"] = big_text
    ok("huge-string", big, [("interventions", "description", big_text)])
    dup_value = _enc(_fresh("duplicate-json-keys", n()))
    dup_value = dup_value.replace(b'"wo_number":', b'"wo_number":"WO-FIRST","wo_number":', 1)
    dup_event = json.loads(dup_value)  # Python's json keeps the last one too
    dup_event["appointment"]["wo_number"] = "WO-LAST"
    dup_value = _enc(dup_event).replace(b'"wo_number":', b'"wo_number":"WO-FIRST","wo_number":', 1)
    kinds.append(Kind("duplicate-json-keys", dup_value, None, key=samples.key_of(dup_event), verbatim=[
        ("appointments", {"dealer_id": dup_event["dealer_id"], "dms_number": "X-duplicate-json-keys"},
         "wo_number", "WO-LAST"),
    ]))  # fmt: skip
    unknown = _fresh("unknown-fields", n())
    unknown |= {"future_field": {"nested": [1, 2, {"deep": None}]}, "trace": "abc"}
    unknown["appointment"]["colour"] = "red"
    ok("unknown-fields", unknown, [("interventions", "title", "Grote beurt")])
    ok("wrong-key", _fresh("wrong-key", n()), [("interventions", "price", 289)], key=b"not/the-right-key")
    null_key = _fresh("null-key", n())
    kinds.append(Kind("null-key", _enc(null_key), None, key=None))
    upper = _fresh("uppercase-undashed-event-id", n())
    upper["event_id"] = upper["event_id"].upper().replace("-", "")
    ok("uppercase-undashed-event-id", upper, [("appointments", "event_id", uuid.UUID(upper["event_id"]))])
    # Placeholder dates (issue 10): null with a note, never -infinity/infinity; the model expects the nulls too.
    dates = _fresh("extreme-dates", n())
    dates["appointment"]["vehicle"] |= {"first_registration_date": "9999-12-31", "apk_due_date": "0001-01-01"}
    dates["appointment"]["appointment_at"] = "9999-12-30T23:59:59"
    ok("extreme-dates", dates, [("appointments", "appointment_at", None)])
    rounding = _fresh("price-rounding", n())
    rounding["appointment"]["interventions"] = [{"title": "a", "price": 1.005}, {"title": "b", "price": "0.004"}]
    ok("price-rounding", rounding, [("interventions", "price", decimal.Decimal("1.01"))])
    return kinds


# A few kinds sprinkled through every scenario's stream: outages must not add to, nor lose, their letters.
MIXED = ("invalid-json", "null-value-tombstone-record", "missing-event-id", "whitespace-dms-number", "price-overflow")


# --- streams ----------------------------------------------------------------------------------------------------


@dataclass
class Stream:
    records: list[Record]
    valid: list[bytes]  # the values the model is computed from (repeats allowed)
    stages: dict[str, str | None]  # corpus kind -> stage


def scenario_stream(seed: int, events: int, *, poison_every: int = 150) -> Stream:
    """Generated events plus exact replays, late older events and a few invalid records, interleaved."""
    rng = random.Random(seed)
    generated = list(samples.stream(seed=seed, events=events, dealers=4, appointments_per_dealer=max(50, events // 40)))
    kinds = {k.name: k for k in corpus() if k.name in MIXED}
    records: list[Record] = []
    valid: list[bytes] = []
    for i, event in enumerate(generated):
        value = samples.encode(event)
        records.append((samples.key_of(event), value, []))
        valid.append(value)
        if i and i % 37 == 0:
            # An exact replay of an earlier event: a no-op by its event id.
            old = rng.choice(records[: len(records) // 2 + 1])
            if old[2] == []:
                records.append(old)
        if i and i % 41 == 0:
            # A late, older event with its own id: stale for its appointment, maybe not for its persons.
            late = json.loads(samples.encode(rng.choice(generated[: i + 1])))
            late["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            late["occurred_at"] = (dt.datetime.fromisoformat(late["occurred_at"]) - dt.timedelta(hours=1)).isoformat()
            records.append((samples.key_of(late), samples.encode(late), []))
            valid.append(samples.encode(late))
        if i % poison_every == poison_every // 2:
            records.append(kinds[MIXED[(i // poison_every) % len(MIXED)]].record())
    return Stream(records, valid, {k.name: k.stage for k in kinds.values()})


# --- Kafka and PostgreSQL helpers --------------------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_request_size=BIG, linger_ms=10
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v, headers=h) for k, v, h in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, topic: str, group: str, partitions: Sequence[int]) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions}
    finally:
        await consumer.stop()


async def stored_offsets(dsn: str, topic: str) -> dict[int, int]:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return {}
    try:
        rows = await conn.fetch("SELECT partition, next_offset FROM consumer_offsets WHERE topic = $1", topic)
    except asyncpg.PostgresError:
        return {}  # not migrated yet
    finally:
        await conn.close()
    return {r["partition"]: r["next_offset"] for r in rows}


async def applied(dsn: str) -> int:
    try:
        return int(await fetchval(dsn, "SELECT count(*) FROM applied_events"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return -1


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, workers: Sequence[WorkerProcess] = (), what: str = ""
) -> None:
    """``check`` becomes true within the timeout, and no worker that should be running has died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive:
                tail = "\n".join(w.log_text().splitlines()[-15:])
                code = w.proc.poll() if w.proc else None
                raise AssertionError(f"worker {w.log_path.name} exited ({code}) while {what}:\n{tail}")
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not reached within {timeout_s:.0f}s: {what}")


def worker_dsn(dsn: str) -> str:
    # asyncpg passes unknown DSN parameters on as server settings: the worker's sessions carry this name.
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={APP_NAME}"


def db_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def worker_backends_in_transaction(conn: asyncpg.Connection, dsn: str, *, terminate: bool) -> int:
    """How many of the worker's sessions are inside a transaction right now (terminating them if asked)."""
    action = "pg_terminate_backend(pid)" if terminate else "true"
    rows = await conn.fetch(
        f"SELECT {action} AS hit FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 "
        "AND xact_start IS NOT NULL AND state IN ('active', 'idle in transaction')",
        db_name(dsn),
        APP_NAME,
    )
    return sum(1 for r in rows if r["hit"])


# --- the scenario harness ---------------------------------------------------------------------------------------


@dataclass
class Run:
    bootstrap: str
    dsn: str
    topic: str
    tmp_path: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    def start(self, name: str, **extra: str) -> WorkerProcess:
        env = worker_env(
            bootstrap=self.bootstrap, database_url=worker_dsn(self.dsn), topic=self.topic, group=self.topic
        )
        env |= {"LOG_LEVEL": "INFO", "BATCH_MAX_RECORDS": "500", **extra}
        worker = WorkerProcess(env, self.tmp_path / f"{name}.log").start()
        self.workers.append(worker)
        return worker

    async def until_consumed(self, *, timeout_s: float = 240, workers: Sequence[WorkerProcess] = ()) -> None:
        ends = await end_offsets(self.bootstrap, self.topic)

        async def done() -> bool:
            stored = await stored_offsets(self.dsn, self.topic)
            return all(stored.get(p, 0) >= end for p, end in ends.items())

        await until(done, timeout_s=timeout_s, workers=workers, what="consuming to the end of every partition")

    async def verify(self, stream: Stream) -> dict[str, int]:
        """The three end-of-scenario checks (module docstring). Returns figures for the report."""
        source = await read_all(self.bootstrap, self.topic, timeout_s=120)
        ends = await end_offsets(self.bootstrap, self.topic)
        assert len(source) == sum(ends.values()) == len(stream.records)
        expected_letters = {}
        for r in source:
            kind = dict(r.headers).get(KIND)
            if kind is not None and stream.stages[kind.decode()] is not None:
                expected_letters[(r.partition, r.offset)] = (r, stream.stages[kind.decode()])

        letters = await read_all(self.bootstrap, self.dlq, timeout_s=120)
        by_origin: dict[tuple[int, int], Any] = {}
        for letter in letters:
            h = dict(letter.headers)
            assert h["dlq.original.topic"] == self.topic.encode()
            origin = (int(h["dlq.original.partition"]), int(h["dlq.original.offset"]))
            if origin in by_origin:
                # A legitimate duplicate is the same letter sent again, nothing else.
                first = by_origin[origin]
                assert (first.key, first.value, dict(first.headers)["dlq.stage"]) == (
                    letter.key,
                    letter.value,
                    h["dlq.stage"],
                )
            by_origin.setdefault(origin, letter)
        unexpected = sorted(set(by_origin) - set(expected_letters))
        missing = sorted(set(expected_letters) - set(by_origin))
        assert not unexpected, f"{len(unexpected)} dead letters for valid records (an outage?): {unexpected[:5]}"
        assert not missing, f"{len(missing)} invalid records not dead-lettered: {missing[:5]}"
        for origin, (record, stage) in expected_letters.items():
            letter = by_origin[origin]
            kind = dict(record.headers)[KIND].decode()
            h = dict(letter.headers)
            assert h["dlq.stage"].decode() == stage, f"{kind}: stage {h['dlq.stage']!r}, expected {stage}"
            assert (letter.key, letter.value) == (record.key, record.value), f"{kind}: not byte-identical"
            assert [x for x in letter.headers if not x[0].startswith("dlq.")] == list(record.headers), kind
            assert int(h["dlq.original.timestamp"]) == record.timestamp

        conn = await asyncpg.connect(self.dsn)
        try:
            actual = await model.read_tables(conn)
        finally:
            await conn.close()
        model.assert_tables_equal(model.expected_state(stream.valid), actual)

        stored = await stored_offsets(self.dsn, self.topic)
        assert {p: stored.get(p, 0) for p in ends} == ends

        async def kafka_caught_up() -> bool:
            return await committed_offsets(self.bootstrap, self.topic, self.topic, list(ends)) == ends

        await until(kafka_caught_up, timeout_s=60, what="Kafka's committed offsets reaching the end")
        figures = {
            "records": len(source),
            "valid_events": len(stream.valid),
            "dead_letters": len(by_origin),
            "raw_dead_letter_duplicates": len(letters) - len(by_origin),
        }
        print(f"\n[faults] {self.topic}: {figures}")
        return figures

    def stop_all(self) -> list[int]:
        return [w.stop() for w in self.workers if w.alive]


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
    expected_ids = {model.canonical(json.loads(k.value)["event_id"]) for k in kinds if k.stage is None and k.value}
    stored_ids = {r["id"] for r in await fetch(run.dsn, "SELECT event_id::text AS id FROM applied_events")}
    assert expected_ids <= stored_ids
    await _the_model_sees_tampering(run.dsn, stream)


async def _the_model_sees_tampering(dsn: str, stream: Stream) -> None:
    """The comparison is only worth something if it fails: damage each table once and expect each damage reported."""
    expected = model.expected_state(stream.valid)
    tombstone = next(k for k, row in expected.appointments.items() if row[len(model.EMPTY_SNAPSHOT)])
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
            problems = "\n".join(model.compare(expected, await model.read_tables(conn)))
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    for table in ("persons:", "vehicles:", "interventions:", "appointments:", "applied_events:"):
        assert table in problems, f"tampering with {table} went unnoticed:\n{problems}"


class _Rollback(Exception):
    pass


async def kill_during_batch(worker: WorkerProcess, dsn: str, *, after_commit: bool, timeout_s: float = 20) -> bool:
    """SIGKILL the worker while one of its PostgreSQL sessions is inside a transaction, or (``after_commit``) just
    after that transaction ended: the window between the database commit and the Kafka commit. True when the
    transaction was seen; at the timeout the worker is killed anyway."""
    admin = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        seen = False
        while time.monotonic() < deadline:
            in_transaction = await worker_backends_in_transaction(admin, dsn, terminate=False) > 0
            seen = seen or in_transaction
            if seen and (in_transaction != after_commit):
                worker.kill()
                return True
            await asyncio.sleep(0.002)
    finally:
        await admin.close()
    worker.kill()
    return False


async def test_kill_9_mid_batch_repeatedly_then_restart(run: Run) -> None:
    stream = scenario_stream(seed=31, events=3000)
    await produce(run.bootstrap, run.topic, stream.records)
    total = len(stream.records)
    kills, mid_transaction = 0, 0
    for round_ in range(4):
        worker = run.start(f"killed-{round_}", BATCH_MAX_RECORDS="250")
        floor = await applied(run.dsn)
        await until(
            lambda floor=floor: _above(applied(run.dsn), floor + 150),
            timeout_s=120,
            workers=[worker],
            what="making progress before the kill",
        )
        # Rounds alternate: killed inside the batch's transaction, then right after its database commit.
        mid_transaction += await kill_during_batch(worker, run.dsn, after_commit=round_ % 2 == 1)
        kills += 1
        assert sum((await stored_offsets(run.dsn, run.topic)).values()) < total, "killed after the end: no fault"
    last = run.start("survivor")
    await run.until_consumed(workers=[last])
    assert run.stop_all() == [0]
    figures = await run.verify(stream)
    resumed = sum(w.log_text().count("resuming from PostgreSQL's offset") for w in run.workers)
    print(f"[faults] kill -9: {kills} kills ({mid_transaction} timed on a transaction), {resumed} resumes from PG")
    print(f"[faults] kill -9: {figures}")
    assert mid_transaction >= 2


async def _above(value: Awaitable[int], floor: int) -> bool:
    return await value > floor


async def test_postgres_stopped_30s_and_backends_terminated_mid_transaction(run: Run, local_stack: Any) -> None:
    if local_stack.postgres is None:
        pytest.skip("DATABASE_URL points at a server this test cannot stop")
    stream = scenario_stream(seed=41, events=3000)
    third = len(stream.records) // 3
    await produce(run.bootstrap, run.topic, stream.records[:third])
    worker = run.start("w", BATCH_MAX_RECORDS="200")
    await until(lambda: _above(applied(run.dsn), 100), timeout_s=120, workers=[worker], what="first progress")
    admin = await asyncpg.connect(run.dsn)
    terminated = 0
    try:
        producing = asyncio.create_task(produce(run.bootstrap, run.topic, stream.records[third : 2 * third]))
        deadline = time.monotonic() + 60
        while terminated < 3 and time.monotonic() < deadline:
            terminated += await worker_backends_in_transaction(admin, run.dsn, terminate=True)
            await asyncio.sleep(0.01)
        await producing
    finally:
        await admin.close()
    assert terminated >= 3, "never caught the worker inside a transaction"
    # A clean ("fast") stop: the test server runs with synchronous_commit=off, so an immediate stop could drop
    # commits that were already acknowledged -- a property of that setting, not of the worker.
    local_stack.postgres.stop("fast")
    try:
        await produce(run.bootstrap, run.topic, stream.records[2 * third :])
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
    import stack as devstack  # dev/, put on sys.path by tests/conftest.py

    stream = scenario_stream(seed=51, events=3000)
    half = len(stream.records) // 2
    await produce(run.bootstrap, run.topic, stream.records[:half])
    worker = run.start("w", BATCH_MAX_RECORDS="200")
    await until(lambda: _above(applied(run.dsn), 200), timeout_s=120, workers=[worker], what="first progress")
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
    await until(lambda: _above(applied(run.dsn), n // 20), timeout_s=180, workers=[first], what="1 replica")
    # 1 -> 3 while the first works through its backlog.
    extra = [run.start("second"), run.start("third")]
    everyone = [first, *extra]
    for w in extra:
        await until(lambda w=w: _probe_ok(w), timeout_s=120, workers=everyone, what="the newcomers joining")
    await producing
    producing = asyncio.create_task(offer(phases[1]))
    for w in extra:
        # Each newcomer must really have taken partitions over and consumed before it leaves again.
        await until(
            lambda w=w: _metric_above(w, "carsys_events_consumed_total", 0),
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
    await until(lambda: _probe_ok(second), timeout_s=120, workers=[second], what="the second worker joining")
    await run.verify(stream)  # includes: Kafka's committed offsets back at the end of every partition
    _, metrics = second.get("/metrics")
    consumed = [line for line in metrics.splitlines() if line.startswith("carsys_events_consumed_total ")]
    assert consumed == ["carsys_events_consumed_total 0.0"], "records already in PostgreSQL were read again"
    assert run.stop_all() == [0]


async def _probe_ok(worker: WorkerProcess) -> bool:
    return worker.get("/readyz")[0] == 200
