"""carsys-ingest renormalise against a real PostgreSQL filled by the real Store from real decoded events.

The rule sets are test doubles of ``worker.normalise.normaliser.Rules`` passed to ``renormalise`` (the function it
normalises with is a parameter): "old" rules drop every Belgian address (@voorbeeld.be), the current rules keep it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import msgspec
import pytest

from dev import samples
from schemas import contract
from tests.conftest import with_database
from worker import cli
from worker.normalise import model
from worker.normalise.emails import Email, read_email
from worker.normalise.normaliser import FAST, Rules, normalise
from worker.normalise.phones import read_phones
from worker.normalise.records import Item, Offset, decode_value
from worker.normalise.version import NORMALISER_VERSION
from worker.ops import erasure
from worker.ops.renormalise import KINDS, Options, Summary, renormalise, select_sql, write_chunk
from worker.runtime.migrations import migrate
from worker.runtime.retry import policy
from worker.runtime.store import Store

pytestmark = pytest.mark.timeout(240)
TOPIC = "carsys.renormalise"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BELGIAN = "@voorbeeld.be"

# The rules' version the tests renormalise to: newer than what the store writes.
NEW = NORMALISER_VERSION + 1


def _dropping_belgian(value: str | None) -> Email:
    address, fixes, extra = read_email(value)
    if address is not None and address.endswith(BELGIAN):
        return None, (*fixes, ("test_rule", "dropped")), extra
    return address, fixes, extra


OLD = Rules(phone=read_phones, email=_dropping_belgian)


def with_rules(rules: Rules) -> Callable[[contract.Event], model.NormalisedEvent]:
    return lambda event: normalise(event, rules)


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    await migrate(fresh_database_url)
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def events(seed: int, n: int) -> list[dict[str, Any]]:
    return list(samples.stream(seed, events=n, dealers=2, appointments_per_dealer=40, persons_per_dealer=30))


def items(raw: Sequence[dict[str, Any]], rules: Rules, start: int = 0) -> list[Item]:
    out = []
    for n, event in enumerate(raw, start):
        source = decode_value(samples.encode(event))
        out.append(Item(normalise(source, rules), Offset(TOPIC, 0, n), source))
    return out


async def apply(pool: asyncpg.Pool[asyncpg.Record], batch: Sequence[Item], size: int = 50) -> None:
    store = Store(pool, group_id="renormalise-test", retrying=lambda: policy(attempts=8, initial_backoff_s=0.01))
    for i in range(0, len(batch), size):
        await store.apply(batch[i : i + size])


async def run(pool: asyncpg.Pool[asyncpg.Record], rules: Rules, **options: Any) -> Summary:
    async with pool.acquire() as conn:
        return await renormalise(conn, with_rules(rules), Options(**{"rate": 1e6, **options}))


async def dump(pool: asyncpg.Pool[asyncpg.Record], without: Sequence[str] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table, without updated_at (a rewrite moves it)."""
    out = {}
    skip = {"updated_at", *without}
    for table, key in (("persons", 2), ("vehicles", 2), ("appointments", 2), ("interventions", 3)):
        rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY 1, 2{', 3' if key == 3 else ''}")
        out[table] = [tuple(v for k, v in r.items() if k not in skip) for r in rows]
    return out


def belgian_persons(raw: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """The persons whose newest snapshot (the stream's occurred_at grows) holds a Belgian address: from the raw
    events, independently of the code under test."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in raw:
        for p in event["appointment"].get("persons", []) if event["event_type"] == "appointment.upserted" else []:
            newest[(event["dealer_id"], p["id"])] = p
    return {
        k for k, p in newest.items() if any(BELGIAN in (p.get(f) or "") for f in ("email_private", "email_business"))
    }


async def test_a_changed_rule_renormalises_exactly_the_affected_rows_and_twice_is_a_no_op(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    raw = events(seed=5, n=240)
    await apply(pool, items(raw, OLD))
    expected = belgian_persons(raw)
    stored = {(r[0], r[1]) for r in await pool.fetch("SELECT dealer_id, person_id FROM persons")}
    assert expected
    assert expected < stored
    dropped = await pool.fetchval("SELECT count(*) FROM persons WHERE email_private LIKE '%voorbeeld.be'")
    assert dropped == 0  # the old rules dropped them

    dry = await run(pool, FAST, version=NEW, dry_run=True)
    assert dry["persons"].changed == len(expected)
    assert await pool.fetchval(f"SELECT count(*) FROM persons WHERE normaliser_version = {NEW}") == 0  # wrote nothing

    summary = await run(pool, FAST, version=NEW)
    changed = {
        (r[0], r[1])
        for r in await pool.fetch(
            "SELECT dealer_id, person_id FROM persons WHERE email_private LIKE '%voorbeeld.be'"
            " OR email_business LIKE '%voorbeeld.be'"
        )
    }
    assert changed == expected
    assert summary["persons"].changed == len(expected) == dry["persons"].changed
    assert summary["persons"].changes == dry["persons"].changes
    # Counted by field and rule: the e-mail fields under the test double's rule name, no values.
    assert any(field.startswith("email_") and "test_rule" in rule for field, rule in summary["persons"].changes)
    assert summary["vehicles"].changed == summary["appointments"].changed == 0  # the rule touches no other table
    # Which rows are still on the old rules: one query, and none are.
    for kind in KINDS:
        assert await pool.fetchval(f"SELECT count(*) FROM {kind.table} WHERE normaliser_version < {NEW}") == 0

    # Every row equals the new rules' output of its own (newest) snapshot.
    for dealer, pid in expected:
        row = await pool.fetchrow("SELECT * FROM persons WHERE dealer_id = $1 AND person_id = $2", dealer, pid)
        assert row is not None
        source = msgspec.json.decode(row["source"], type=contract.Person)
        assert row["preferred_email"] is not None
        assert row["email_private"] == normalise_person(source).email_private
        assert row["email_business"] == normalise_person(source).email_business

    before = await dump(pool)
    again = await run(pool, FAST, version=NEW)
    assert all(t.read == 0 for t in again.values())
    assert await dump(pool) == before


def normalise_person(source: contract.Person) -> model.Person:
    event = contract.AppointmentUpserted(
        event_id=str(uuid.uuid4()),
        schema_version=1,
        occurred_at=T0,
        dealer_id="d",
        appointment=contract.Appointment(dms_number="1", created_at=T0, persons=(source,)),
    )
    out = normalise(event)
    assert isinstance(out, model.Upsert)
    return out.appointment.persons[0]


async def test_never_overwrites_a_row_a_newer_event_wrote_after_it_was_read(
    pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    raw = events(seed=9, n=120)
    await apply(pool, items(raw, OLD))
    persons = KINDS[0]
    async with pool.acquire() as conn:
        rows = await conn.fetch(select_sql(persons), 2, None, "", "", 10_000)
        outcomes = [persons.outcome(r, with_rules(FAST)) for r in rows]
        # A worker writes a newer event for every person now, with the old rules, between the read and the write.
        newer = []
        for event in raw:
            if event["event_type"] == "appointment.upserted":
                newer.append({**event, "event_id": str(uuid.uuid4()), "occurred_at": "2027-01-01T00:00:00+00:00"})
        await apply(pool, items(newer, OLD, start=len(raw)))
        superseded = await write_chunk(conn, persons, rows, outcomes, NEW)
    assert superseded == len(rows)
    assert await pool.fetchval(f"SELECT count(*) FROM persons WHERE normaliser_version = {NEW}") == 0
    assert await pool.fetchval("SELECT count(*) FROM persons WHERE email_private LIKE '%voorbeeld.be'") == 0


async def test_concurrent_renormalise_and_worker_converge_to_the_newest_events(
    pool: asyncpg.Pool[asyncpg.Record], pg_admin_dsn: str
) -> None:
    raw = events(seed=13, n=400)
    first, later = raw[:200], raw[200:]
    await apply(pool, items(first, OLD))

    async def renormalise_repeatedly() -> None:
        for _ in range(6):
            await run(pool, FAST, version=NEW, chunk=7)
            await asyncio.sleep(0)

    # The worker keeps writing newer events (old rules, version 1) while renormalise rewrites.
    await asyncio.gather(apply(pool, items(later, OLD, start=200), size=9), renormalise_repeatedly())
    await run(pool, FAST, version=NEW)  # whatever the worker wrote last with the old rules

    # The same events applied in one go with the current rules: what the tables must now hold.
    reference = await _reference(pg_admin_dsn, items(raw, FAST))
    assert await dump(pool, without=("normaliser_version",)) == reference
    for kind in KINDS:
        assert await pool.fetchval(f"SELECT count(*) FROM {kind.table} WHERE normaliser_version < {NEW}") == 0


async def _reference(admin_dsn: str, batch: Sequence[Item]) -> dict[str, list[tuple[Any, ...]]]:
    name = f"t_renorm_ref_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = with_database(admin_dsn, name)
    await migrate(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await apply(pool, batch, size=len(batch))
        return await dump(pool, without=("normaliser_version",))
    finally:
        await pool.close()


async def test_a_value_the_old_rules_dropped_comes_back_with_one_command(
    pool: asyncpg.Pool[asyncpg.Record],
    fresh_database_url: str,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = events(seed=21, n=120)
    await apply(pool, items(raw, OLD))
    # The rows as the previous release (older normaliser version) left them.
    for kind in KINDS:
        await pool.execute(f"UPDATE {kind.table} SET normaliser_version = {NORMALISER_VERSION - 1}")
    expected = belgian_persons(raw)
    assert expected
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)

    assert await asyncio.to_thread(cli.main, ["renormalise", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"persons: {await pool.fetchval('SELECT count(*) FROM persons')} read, would change {len(expected)}" in out
    assert "voorbeeld" not in out  # counts, fields and rules; never a value

    assert await asyncio.to_thread(cli.main, ["renormalise"]) == 0
    out = capsys.readouterr().out
    assert f"changed {len(expected)}," in out
    back = await pool.fetchval(
        "SELECT count(*) FROM persons WHERE email_private LIKE '%voorbeeld.be' OR email_business LIKE '%voorbeeld.be'"
    )
    assert back == len(expected)
    assert await asyncio.to_thread(cli.main, ["renormalise", "--dealer", "dealer-000"]) == 0
    assert "persons: 0 read" in capsys.readouterr().out


async def test_erase_finds_a_person_by_an_address_only_the_snapshot_holds(
    pool: asyncpg.Pool[asyncpg.Record], fresh_database_url: str
) -> None:
    raw = events(seed=5, n=240)
    await apply(pool, items(raw, OLD))
    dealer, pid = sorted(belgian_persons(raw))[0]
    source = msgspec.json.decode(
        await pool.fetchval("SELECT source::text FROM persons WHERE dealer_id = $1 AND person_id = $2", dealer, pid)
    )
    address = next(v for f in ("email_private", "email_business") if BELGIAN in (v := source.get(f) or ""))
    email = read_email(address)[0]
    assert email is not None
    assert await pool.fetchval("SELECT count(*) FROM persons WHERE $1 IN (email_private, email_business)", email) == 0
    conn = await asyncpg.connect(fresh_database_url)
    try:
        erased, _ = await erasure.erase(conn, erasure.Target(dealer=dealer, ids=set(), emails={email}, phones=set()))
    finally:
        await conn.close()
    assert pid in erased.person_ids
    row = await pool.fetchrow(
        "SELECT source, erased_at FROM persons WHERE dealer_id = $1 AND person_id = $2", dealer, pid
    )
    assert row is not None
    assert row["source"] is None
    assert row["erased_at"] is not None
    # And renormalise cannot bring anything of the person back, nor the vehicles' links to them.
    await run(pool, FAST, version=NEW)
    assert (
        await pool.fetchval("SELECT first_name FROM persons WHERE dealer_id = $1 AND person_id = $2", dealer, pid)
        is None
    )
    linked = "SELECT count(*) FROM vehicles WHERE dealer_id = $1 AND $2 IN (driver_id, owner_id, contractor_id)"
    assert await pool.fetchval(linked, dealer, pid) == 0
