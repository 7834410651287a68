"""The batch writer against a real PostgreSQL: idempotence, ordering, tombstones, concurrency, isolation, crashes.

Every test writes under its own dealer id, so the tests of this module share one migrated database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
import tenacity

from dev.stack import free_port
from worker.errors import TransientError, WriteRejected
from worker.normalise.model import Appointment, Delete, Intervention, NormalisedEvent, Note, Person, Upsert, Vehicle
from worker.normalise.records import Item, Offset
from worker.runtime.migrations import migrate
from worker.runtime.retry import policy
from worker.runtime.store import BatchResult, Store
from worker.runtime.tables import classify, planned

T0 = dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC)
TOPIC = "carsys.appointments"
APP_NAME = "store-under-test"


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    await migrate(database_url)
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=8, server_settings={"application_name": APP_NAME}
    )
    yield pool
    await pool.close()


@pytest.fixture
def dealer() -> str:
    return f"dealer-{uuid.uuid4().hex[:12]}"


def no_retry() -> tenacity.AsyncRetrying:
    return policy(attempts=1)


def quick_retry() -> tenacity.AsyncRetrying:
    return policy(attempts=5, initial_backoff_s=0.01, max_backoff_s=0.1, deadline_s=20)


def store(pool: asyncpg.Pool[asyncpg.Record], **kwargs: Any) -> Store:
    kwargs.setdefault("retrying", no_retry)
    return Store(pool, group_id=kwargs.pop("group_id", "test-group"), **kwargs)


# --- events ---------------------------------------------------------------------------------------------------


def person(pid: str, version: int) -> Person:
    return Person(
        id=pid,
        title="dhr.",
        first_name=f"Voornaam{version}",
        last_name="de Vries",
        street="Oudegracht",
        house_number="12",
        house_number_addition="A",
        postcode="3511 AB",
        city="Utrecht",
        email_private=f"v{version}@example.nl",
        mobile_private=f"+3161234{version % 10000:04d}",
        preferred_email=f"v{version}@example.nl",
        preferred_mobile=f"+3161234{version % 10000:04d}",
        notes=(Note(field="phone_private", rule="mobile_in_phone_field", action="moved"),),
    )


def upsert(
    dealer: str,
    dms: str,
    version: int,
    *,
    persons: Sequence[str] = ("p1",),
    vehicle: str | None = "plate:70RPJJ",
    interventions: int = 2,
    price: str = "95.50",
    event_id: str | None = None,
) -> Upsert:
    """An upsert whose values all carry ``version``; ``occurred_at`` grows with it (one minute per version)."""
    return Upsert(
        event_id=event_id or str(uuid.uuid4()),
        occurred_at=T0 + dt.timedelta(minutes=version),
        dealer_id=dealer,
        appointment=Appointment(
            dms_number=dms,
            created_at=T0,
            wo_number=f"WO-{version}",
            appointment_at=T0 + dt.timedelta(days=2, minutes=version),
            waiting_customer=version % 2 == 0,
            interventions=tuple(
                Intervention(title=f"Taak {version}.{i}", description="Controle", price=decimal.Decimal(price))
                for i in range(interventions)
            ),
            vehicle=None
            if vehicle is None
            else Vehicle(
                vehicle_key=vehicle,
                make="Volkswagen",
                model=f"Golf {version}",
                license_plate="70-RP-JJ",
                license_plate_key="70RPJJ",
                fuel="petrol",
                first_registration_date=dt.date(2019, 5, 1),
                apk_due_date=dt.date(2026, 5, 1),
                driver_id=persons[0] if persons else None,
                owner_id=persons[-1] if persons else None,
            ),
            persons=tuple(person(p, version) for p in persons),
            notes=(Note(field="wo_number", rule="trim", action="changed"),),
        ),
    )


def delete(dealer: str, dms: str, version: int) -> Delete:
    return Delete(
        event_id=str(uuid.uuid4()),
        occurred_at=T0 + dt.timedelta(minutes=version),
        dealer_id=dealer,
        dms_number=dms,
    )


def items(events: Sequence[NormalisedEvent], partition: int = 0, start: int = 0) -> list[Item]:
    return [Item(e, Offset(TOPIC, partition, start + i)) for i, e in enumerate(events)]


def batches(seq: Sequence[Item], size: int) -> list[Sequence[Item]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


# --- reading the tables back ----------------------------------------------------------------------------------

_TABLES = {
    "appointments": "dms_number",
    "interventions": "dms_number, position",
    "persons": "person_id",
    "vehicles": "vehicle_key",
}


async def snapshot(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the dealer, without the wall-clock ``updated_at``."""
    result: dict[str, list[dict[str, Any]]] = {}
    for table, order in _TABLES.items():
        rows = await pool.fetch(f"SELECT * FROM {table} WHERE dealer_id = $1 ORDER BY {order}", dealer)
        result[table] = [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]
    return result


async def row(pool: asyncpg.Pool[asyncpg.Record], sql: str, *args: Any) -> asyncpg.Record:
    found = await pool.fetchrow(sql, *args)
    assert found is not None
    return found


def newest(events: Sequence[Upsert], key: Any) -> Upsert:
    """The event that must win for a row: the greatest (occurred_at, event_id) among those carrying it."""
    return max((e for e in events if key(e)), key=lambda e: (e.occurred_at, e.event_id))


# --- tests ----------------------------------------------------------------------------------------------------


async def test_a_batch_lands_in_every_table(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    event = upsert(dealer, "A-1", 1, persons=("p1", "p2"))
    result = await store(pool).apply(items([event]))

    assert result == BatchResult(applied=1, duplicates=0, stale=0, rejected=())
    snap = await snapshot(pool, dealer)
    [appointment] = snap["appointments"]
    assert appointment["wo_number"] == "WO-1"
    assert appointment["vehicle_key"] == "plate:70RPJJ"
    assert appointment["person_ids"] == ["p1", "p2"]
    assert appointment["deleted"] is False
    assert appointment["event_id"] == uuid.UUID(event.event_id)
    assert appointment["occurred_at"] == event.occurred_at
    assert json.loads(appointment["notes"]) == [{"field": "wo_number", "rule": "trim", "action": "changed"}]
    assert [(i["position"], i["title"], i["price"]) for i in snap["interventions"]] == [
        (0, "Taak 1.0", decimal.Decimal("95.50")),
        (1, "Taak 1.1", decimal.Decimal("95.50")),
    ]
    assert [p["person_id"] for p in snap["persons"]] == ["p1", "p2"]
    assert snap["persons"][0]["house_number_addition"] == "A"
    [vehicle] = snap["vehicles"]
    assert (vehicle["driver_id"], vehicle["owner_id"], vehicle["contractor_id"]) == ("p1", "p2", None)
    assert vehicle["first_registration_date"] == dt.date(2019, 5, 1)


async def test_replaying_the_same_events_twice_leaves_identical_tables(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    rng = random.Random(4)
    events: list[NormalisedEvent] = []
    for version in range(1, 301):
        dms = f"A-{rng.randrange(30)}"
        if rng.random() < 0.1:
            events.append(delete(dealer, dms, version))
        else:
            persons = rng.sample([f"p{i}" for i in range(15)], k=rng.randint(0, 3))
            events.append(upsert(dealer, dms, version, persons=persons, vehicle=f"plate:V{rng.randrange(10)}"))
    rng.shuffle(events)
    writer = store(pool)

    first = [await writer.apply(b) for b in batches(items(events), 64)]
    before = await snapshot(pool, dealer)
    second = [await writer.apply(b) for b in batches(items(events), 37)]
    after = await snapshot(pool, dealer)

    assert after == before
    assert sum(r.applied + r.stale for r in first) == len(events)
    assert sum(r.duplicates for r in second) == len(events)
    assert sum(r.applied for r in second) == 0

    # Past the de-duplication window (ids pruned), a replay is still a no-op: every row is as new as it gets.
    ids = [e.event_id for e in events]
    await pool.execute("DELETE FROM applied_events WHERE event_id = ANY($1::uuid[])", ids)
    third = [await writer.apply(b) for b in batches(items(events), 100)]
    assert await snapshot(pool, dealer) == before
    assert sum(r.stale for r in third) == len(events)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_shuffled_delivery_yields_the_newest_state(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str, seed: int
) -> None:
    rng = random.Random(seed)
    # The same appointment, person and vehicle updated 40 times; other appointments share the person and vehicle.
    events = [
        upsert(dealer, rng.choice(["A-1", "A-1", "A-2", "A-3"]), version, persons=("p1", f"p{rng.randrange(2, 5)}"))
        for version in range(1, 41)
    ]
    rng.shuffle(events)
    writer = store(pool)
    sequence = items(events)
    while sequence:  # random batch sizes, so keys collapse inside some batches and race across others
        size = rng.randint(1, 9)
        await writer.apply(sequence[:size])
        sequence = sequence[size:]

    for dms in ("A-1", "A-2", "A-3"):
        if not any(e.appointment.dms_number == dms for e in events):
            continue
        winner = newest(events, lambda e, dms=dms: e.appointment.dms_number == dms)
        got = await row(pool, "SELECT * FROM appointments WHERE dealer_id = $1 AND dms_number = $2", dealer, dms)
        assert got["event_id"] == uuid.UUID(winner.event_id)
        assert got["wo_number"] == winner.appointment.wo_number
        titles = await pool.fetch(
            "SELECT title FROM interventions WHERE dealer_id = $1 AND dms_number = $2 ORDER BY position", dealer, dms
        )
        assert [t["title"] for t in titles] == [i.title for i in winner.appointment.interventions]
    for pid in ("p1", "p2", "p3", "p4"):
        carriers = [e for e in events if any(p.id == pid for p in e.appointment.persons)]
        if not carriers:
            continue
        winner = newest(carriers, lambda e: True)
        got = await row(pool, "SELECT * FROM persons WHERE dealer_id = $1 AND person_id = $2", dealer, pid)
        assert got["first_name"] == next(p.first_name for p in winner.appointment.persons if p.id == pid)
        assert got["occurred_at"] == winner.occurred_at
    vehicle = await row(pool, "SELECT * FROM vehicles WHERE dealer_id = $1", dealer)
    assert vehicle["model"] == newest(events, lambda e: True).appointment.vehicle.model  # type: ignore[union-attr]


async def test_same_key_twice_in_one_batch_collapses_to_the_newest(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    older, newer = upsert(dealer, "A-1", 1), upsert(dealer, "A-1", 2, interventions=1)
    result = await store(pool).apply(items([newer, older]))

    assert (result.applied, result.stale, result.duplicates) == (1, 1, 0)
    got = await row(pool, "SELECT wo_number FROM appointments WHERE dealer_id = $1", dealer)
    assert got["wo_number"] == "WO-2"
    assert await pool.fetchval("SELECT count(*) FROM interventions WHERE dealer_id = $1", dealer) == 1


async def test_equal_occurred_at_is_decided_by_event_id(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    low = upsert(dealer, "A-1", 5, event_id="00000000-0000-4000-8000-000000000001")
    high = upsert(dealer, "A-1", 5, event_id="ffffffff-0000-4000-8000-000000000001", interventions=0)
    writer = store(pool)
    await writer.apply(items([high]))
    result = await writer.apply(items([low]))
    assert result.stale == 1
    got = await row(pool, "SELECT event_id FROM appointments WHERE dealer_id = $1", dealer)
    assert got["event_id"] == uuid.UUID(high.event_id)


async def test_delete_then_late_older_upsert_stays_deleted(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    writer = store(pool)
    await writer.apply(items([upsert(dealer, "A-1", 1)]))
    await writer.apply(items([delete(dealer, "A-1", 3)]))
    late = await writer.apply(items([upsert(dealer, "A-1", 2)]))

    assert (late.applied, late.stale) == (0, 1)
    got = await row(pool, "SELECT * FROM appointments WHERE dealer_id = $1", dealer)
    assert got["deleted"] is True
    assert got["deleted_at"] == T0 + dt.timedelta(minutes=3)
    assert got["occurred_at"] == T0 + dt.timedelta(minutes=3)
    # The tombstone keeps no snapshot: what it holds must not depend on how the stream was batched.
    assert (got["wo_number"], got["created_at"], got["vehicle_key"], got["person_ids"]) == (None, None, None, [])
    assert await pool.fetchval("SELECT count(*) FROM interventions WHERE dealer_id = $1", dealer) == 0


async def test_delete_of_an_unseen_appointment_blocks_its_older_upsert(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    writer = store(pool)
    await writer.apply(items([delete(dealer, "A-9", 10)]))
    result = await writer.apply(items([upsert(dealer, "A-9", 4)]))

    assert result.stale == 1
    got = await row(pool, "SELECT deleted, created_at FROM appointments WHERE dealer_id = $1", dealer)
    assert (got["deleted"], got["created_at"]) == (True, None)
    assert await pool.fetchval("SELECT count(*) FROM interventions WHERE dealer_id = $1", dealer) == 0


async def test_newer_upsert_after_delete_revives_the_appointment(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    writer = store(pool)
    await writer.apply(items([upsert(dealer, "A-1", 1), delete(dealer, "A-1", 2)]))
    await writer.apply(items([upsert(dealer, "A-1", 3, interventions=1)]))
    got = await row(pool, "SELECT deleted, deleted_at, wo_number FROM appointments WHERE dealer_id = $1", dealer)
    assert (got["deleted"], got["deleted_at"], got["wo_number"]) == (False, None, "WO-3")


async def test_duplicates_inside_and_across_batches_are_no_ops(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    event = upsert(dealer, "A-1", 1)
    writer = store(pool)
    assert await writer.apply(items([event, event])) == BatchResult(1, 1, 0, ())
    # The normaliser's canonical id is lowercase, but an uppercase spelling is the same uuid.
    shouted = Upsert(event.event_id.upper(), event.occurred_at, event.dealer_id, event.appointment)
    assert await writer.apply(items([shouted])) == BatchResult(0, 1, 0, ())


async def test_vehicle_without_key_is_not_stored(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    await store(pool).apply(items([upsert(dealer, "A-1", 1, vehicle=None, persons=())]))
    got = await row(pool, "SELECT vehicle_key, person_ids FROM appointments WHERE dealer_id = $1", dealer)
    assert (got["vehicle_key"], got["person_ids"]) == (None, [])
    assert await pool.fetchval("SELECT count(*) FROM vehicles WHERE dealer_id = $1", dealer) == 0


async def test_offsets_are_stored_with_the_data_and_never_move_back(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    writer = store(pool, group_id=f"g-{dealer}")
    first = items([upsert(dealer, f"A-{i}", i) for i in range(3)], partition=0, start=10)
    await writer.apply(first, extra_offsets=[Offset(TOPIC, 0, 20), Offset(TOPIC, 2, 5)])
    assert await writer.stored_offsets(TOPIC) == {0: 21, 2: 6}

    # Only dead-lettered records in this batch: offsets still advance.
    await writer.apply([], extra_offsets=[Offset(TOPIC, 1, 7)])
    # A zombie replica's older batch must not move the offset backwards.
    await writer.apply(items([upsert(dealer, "A-0", 99)], partition=0, start=3))
    assert await writer.stored_offsets(TOPIC) == {0: 21, 1: 8, 2: 6}
    assert await writer.stored_offsets("other.topic") == {}
    assert await store(pool, group_id="another-group").stored_offsets(TOPIC) == {}


async def test_two_concurrent_writers_with_overlapping_persons_never_deadlock(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    rng = random.Random(7)
    shared = [f"p{i}" for i in range(80)]
    vehicles = [f"plate:V{i}" for i in range(20)]
    events = [
        upsert(dealer, f"A-{n}", rng.randrange(1, 5000), persons=rng.sample(shared, 4), vehicle=rng.choice(vehicles))
        for n in range(1000)
    ]
    # Each writer has its own partition's appointments but shares every person and vehicle with the other.
    halves = [events[:500], events[500:]]
    writers = [store(pool, retrying=no_retry), store(pool, retrying=no_retry)]

    async def run(writer: Store, evs: Sequence[Upsert], partition: int) -> list[BatchResult]:
        return [await writer.apply(b) for b in batches(items(evs, partition), 50)]

    # A per-row delay keeps both writers inside their person/vehicle merges at the same time: without the sorted
    # lock order this deadlocks on nearly every batch (checked by shuffling the ORDER BY of the merges).
    await pool.execute(
        "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END$$"
    )
    for table in ("persons", "vehicles"):
        await pool.execute(
            f"CREATE TRIGGER slow_{table} BEFORE INSERT ON {table} FOR EACH ROW "
            f"WHEN (NEW.dealer_id = '{dealer}') EXECUTE FUNCTION slow_row()"
        )
    deadlocks_before = await pool.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    try:
        results = await asyncio.gather(*(run(w, h, p) for p, (w, h) in enumerate(zip(writers, halves, strict=True))))
    finally:
        await pool.execute("DROP FUNCTION slow_row() CASCADE")

    assert sum(r.applied for rs in results for r in rs) == 1000
    for pid in shared:
        winner = newest(events, lambda e, pid=pid: any(p.id == pid for p in e.appointment.persons))
        got = await row(
            pool, "SELECT first_name, event_id FROM persons WHERE dealer_id = $1 AND person_id = $2", dealer, pid
        )
        assert got["event_id"] == uuid.UUID(winner.event_id)
    for key in vehicles:
        winner = newest(
            events, lambda e, key=key: e.appointment.vehicle is not None and e.appointment.vehicle.vehicle_key == key
        )
        got = await row(pool, "SELECT event_id FROM vehicles WHERE dealer_id = $1 AND vehicle_key = $2", dealer, key)
        assert got["event_id"] == uuid.UUID(winner.event_id)
    await pool.execute("SELECT pg_stat_force_next_flush()")
    await asyncio.sleep(0.2)
    assert (
        await pool.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        == deadlocks_before
    )


async def test_the_same_events_applied_by_two_replicas_at_once_apply_once(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str
) -> None:
    # A rebalance can leave a zombie replica writing the batch its successor is also writing.
    events = [upsert(dealer, f"A-{i}", i, persons=("p1", f"p{i % 7}")) for i in range(300)]
    batch = items(events)
    first, second = await asyncio.gather(store(pool).apply(batch), store(pool).apply(batch[::-1]))

    assert first.applied + second.applied == 300
    assert first.duplicates + second.duplicates == 300
    assert await pool.fetchval("SELECT count(*) FROM interventions WHERE dealer_id = $1", dealer) == 600


def _bad_events(dealer: str) -> dict[str, tuple[Upsert, str, str]]:
    """Each: (an event PostgreSQL must refuse, its SQLSTATE, a fragment of the bad value the message must not quote)."""
    ok = upsert(dealer, "A-bad", 1)
    name = Person(id="p-nul", first_name="Jan\x00Geheim")
    return {
        "price overflows numeric(12,2)": (upsert(dealer, "A-bad", 1, price="123456789012345"), "22003", "12345678"),
        "NUL in a person's name": (
            Upsert(ok.event_id, ok.occurred_at, dealer, msgspec_replace(ok.appointment, persons=(name,))),
            "22021",
            "Geheim",
        ),
        "lone surrogate the driver cannot encode": (
            Upsert(ok.event_id, ok.occurred_at, dealer, msgspec_replace(ok.appointment, wo_number="WO\ud800Geheim")),
            "22000",
            "Geheim",
        ),
        "dms number too big for an index row": (
            upsert(dealer, "Geheim" + random.Random(1).randbytes(8000).hex(), 1),
            "54000",
            "Geheim",
        ),
        "dealer id longer than 64": (upsert("d" * 65 + "Geheim", "A-bad", 1), "22001", "Geheim"),
        "event id not a uuid": (upsert(dealer, "A-bad", 1, event_id="not-a-uuid-Geheim"), "22P02", "Geheim"),
    }


def msgspec_replace(appointment: Appointment, **changes: Any) -> Appointment:
    return msgspec.structs.replace(appointment, **changes)


@pytest.mark.parametrize("case", list(_bad_events("x")))
async def test_one_bad_event_in_500_is_isolated_and_499_apply(
    pool: asyncpg.Pool[asyncpg.Record], dealer: str, case: str
) -> None:
    bad, sqlstate, secret = _bad_events(dealer)[case]
    events: list[NormalisedEvent] = [upsert(dealer, f"A-{i}", i, persons=(f"p{i % 40}",)) for i in range(500)]
    events[317] = bad
    writer = store(pool, group_id=f"g-{dealer}")
    handed_over: list[Item] = []

    async def dead_letter(rejected: Sequence[tuple[Item, WriteRejected]]) -> None:
        handed_over.extend(item for item, _ in rejected)

    result = await writer.apply(items(events), on_rejected=dead_letter)

    assert (result.applied, result.duplicates, result.stale) == (499, 0, 0)
    [(item, error)] = result.rejected
    assert item.offset == Offset(TOPIC, 0, 317)
    assert handed_over == [item]
    assert error.sqlstate == sqlstate
    assert secret not in str(error)
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE dealer_id = $1", dealer) == 499
    assert await pool.fetchval("SELECT count(*) FROM interventions WHERE dealer_id = $1", dealer) == 998
    assert await pool.fetchval("SELECT count(*) FROM applied_events WHERE event_id = $1::uuid", events[0].event_id) == 1
    assert await writer.stored_offsets(TOPIC) == {0: 500}  # the rejected record is covered: it was handed over


async def _kill_when_waiting(admin: asyncpg.Connection) -> int:
    """Terminate the store's backend once it is blocked on a lock, mid-transaction with its data written."""
    for _ in range(500):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", APP_NAME
        )
        if pid is not None:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("the store never blocked on the held offset row")


async def _kill_mid_transaction(
    pool: asyncpg.Pool[asyncpg.Record], database_url: str, writer: Store, batch: Sequence[Item], group: str
) -> BatchResult | BaseException:
    # Hold the offset row, so the batch writes all its data and then waits for it, inside its transaction.
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute(
                "SELECT 1 FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = 0 FOR UPDATE",
                group,
                TOPIC,
            )
            task = asyncio.create_task(writer.apply(batch))
            await _kill_when_waiting(admin)
        done = await asyncio.gather(task, return_exceptions=True)
    finally:
        await admin.close()
    return done[0]


async def test_killed_connection_mid_transaction_writes_nothing_without_retry(
    pool: asyncpg.Pool[asyncpg.Record], database_url: str, dealer: str
) -> None:
    group = f"g-{dealer}"
    writer = store(pool, group_id=group, retrying=no_retry)
    await writer.apply(items([upsert(dealer, "A-first", 1)]))
    batch = items([upsert(dealer, f"A-{i}", i, persons=(f"p{i}",)) for i in range(200)], start=1)

    outcome = await _kill_mid_transaction(pool, database_url, writer, batch, group)

    assert isinstance(outcome, TransientError)
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE dealer_id = $1", dealer) == 1
    assert await pool.fetchval("SELECT count(*) FROM persons WHERE dealer_id = $1", dealer) == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM applied_events WHERE event_id = ANY($1::uuid[])", [i.event.event_id for i in batch]
        )
        == 0
    )
    assert await writer.stored_offsets(TOPIC) == {0: 1}


async def test_killed_connection_mid_transaction_is_retried_and_applied_once(
    pool: asyncpg.Pool[asyncpg.Record], database_url: str, dealer: str
) -> None:
    group = f"g-{dealer}"
    writer = store(pool, group_id=group, retrying=quick_retry)
    await writer.apply(items([upsert(dealer, "A-first", 1)]))
    events = [upsert(dealer, f"A-{i}", i, persons=(f"p{i}",)) for i in range(200)]
    batch = items(events, start=1)

    outcome = await _kill_mid_transaction(pool, database_url, writer, batch, group)

    assert outcome == BatchResult(applied=200, duplicates=0, stale=0, rejected=())
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE dealer_id = $1", dealer) == 201
    assert await pool.fetchval("SELECT count(*) FROM interventions WHERE dealer_id = $1", dealer) == 402
    assert await writer.stored_offsets(TOPIC) == {0: 201}
    # And the retried batch is now a set of duplicates.
    assert (await writer.apply(batch)).duplicates == 200


async def test_transient_errors_are_retried_by_the_policy(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    calls = 0

    def counting() -> tenacity.AsyncRetrying:
        nonlocal calls
        calls += 1
        return quick_retry()

    failures = iter([TransientError("first"), TransientError("second")])

    async def flaky(rejected: Sequence[tuple[Item, WriteRejected]]) -> None:
        err = next(failures, None)
        if err is not None:
            raise err

    bad = upsert(dealer, "A-1", 1, price="1e20")
    result = await store(pool, retrying=counting).apply(items([bad, upsert(dealer, "A-2", 2)]), on_rejected=flaky)
    assert calls == 1
    assert (result.applied, len(result.rejected)) == (1, 1)
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE dealer_id = $1", dealer) == 1


async def test_prune_forgets_only_old_event_ids(pool: asyncpg.Pool[asyncpg.Record], dealer: str) -> None:
    old, recent = str(uuid.uuid4()), str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO applied_events (event_id, applied_at) VALUES ($1, now() - interval '20 days'), ($2, now())",
        old,
        recent,
    )
    writer = store(pool, retention_days=14)
    assert await writer.prune() >= 1
    remaining = await pool.fetch(
        "SELECT event_id::text FROM applied_events WHERE event_id = ANY($1::uuid[])", [old, recent]
    )
    assert [r[0] for r in remaining] == [recent]


async def test_ping_answers_while_the_database_does_and_is_transient_when_it_does_not(
    pool: asyncpg.Pool[asyncpg.Record], database_url: str
) -> None:
    await store(pool).ping()
    nobody = urlunsplit(urlsplit(database_url)._replace(netloc=f"127.0.0.1:{free_port()}"))
    unreachable = await asyncpg.create_pool(nobody, min_size=0, max_size=1)
    try:
        with pytest.raises(TransientError):
            await store(unreachable).ping()
    finally:
        await unreachable.close()


async def test_copy_staging_writes_the_same_tables_as_unnest(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    rng = random.Random(11)
    dealers = {"unnest": f"d-u-{uuid.uuid4().hex[:8]}", "copy": f"d-c-{uuid.uuid4().hex[:8]}"}
    plan = [(f"A-{rng.randrange(20)}", v, rng.sample(["p1", "p2", "p3", "p4"], 2)) for v in range(1, 150)]
    snaps = {}
    for staging, dealer in dealers.items():
        events: list[NormalisedEvent] = [upsert(dealer, dms, v, persons=ps) for dms, v, ps in plan]
        events.append(delete(dealer, "A-3", 1000))
        writer = store(pool, staging=staging)
        for b in batches(items(events), 40):
            await writer.apply(b)
        snaps[staging] = await snapshot(pool, dealer)

    def strip(snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        return {
            t: [{k: v for k, v in r.items() if k not in ("dealer_id", "event_id")} for r in rs]
            for t, rs in snap.items()
        }

    assert strip(snaps["copy"]) == strip(snaps["unnest"])
    assert len(snaps["copy"]["appointments"]) > 10


async def test_a_plan_built_ahead_writes_what_the_store_builds_itself(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    # The consumer builds the next batch's rows while the current one is written; the store uses them only when
    # every event in them is new (else a replayed event would write its rows again, and `duplicates` would lie).
    rng = random.Random(5)
    plan = [(f"A-{rng.randrange(30)}", v, rng.sample(["p1", "p2", "p3", "p4", "p5"], 2)) for v in range(1, 400)]
    dealers = {"planned": f"d-p-{uuid.uuid4().hex[:8]}", "built": f"d-b-{uuid.uuid4().hex[:8]}"}
    snaps, results = {}, {}
    for how, dealer in dealers.items():
        batch = items([upsert(dealer, dms, v, persons=ps) for dms, v, ps in plan])
        writer = store(pool, staging="copy")
        outcomes = []
        for chunk in (batch[:200], batch[150:]):  # the second one replays 50 events of the first
            ahead = planned(chunk) if how == "planned" else None
            outcomes.append(await writer.apply(chunk, plan=ahead))
        results[how] = outcomes
        snaps[how] = await snapshot(pool, dealer)

    def strip(snap: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        return {
            t: [{k: v for k, v in r.items() if k not in ("dealer_id", "event_id")} for r in rs]
            for t, rs in snap.items()
        }

    assert results["planned"] == results["built"]
    assert results["planned"][1].duplicates == 50
    assert strip(snaps["planned"]) == strip(snaps["built"])
    assert len(snaps["planned"]["interventions"]) > 20


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.DeadlockDetectedError("deadlock"), TransientError),
        (asyncpg.SerializationError("serialization"), TransientError),
        (asyncpg.AdminShutdownError("terminated"), TransientError),
        (asyncpg.CannotConnectNowError("starting up"), TransientError),
        (asyncpg.ConnectionDoesNotExistError("gone"), TransientError),
        (asyncpg.TooManyConnectionsError("full"), TransientError),
        (asyncpg.InterfaceError("connection is closed"), TransientError),
        (ConnectionResetError("reset"), TransientError),
        (asyncpg.NumericValueOutOfRangeError("numeric field overflow"), WriteRejected),
        (asyncpg.UniqueViolationError("duplicate key"), WriteRejected),
        (asyncpg.CheckViolationError("check"), WriteRejected),
        (asyncpg.UndefinedTableError("relation does not exist"), type(None)),
        (ValueError("a bug"), type(None)),
    ],
)
def test_classify_maps_sqlstates(error: BaseException, expected: type) -> None:
    assert isinstance(classify(error, "ctx"), expected)


def test_write_rejected_message_names_objects_not_values() -> None:
    exc = asyncpg.StringDataRightTruncationError("value too long for type character varying(64)")
    exc.detail = "Failing row contains (Jan Geheim, 0612345678)."
    exc.table_name = "persons"
    exc.column_name = "dealer_id"
    err = classify(exc, "merging persons")
    assert isinstance(err, WriteRejected)
    assert err.sqlstate == "22001"
    assert str(err) == "merging persons: StringDataRightTruncationError (SQLSTATE 22001) table=persons column=dealer_id"
