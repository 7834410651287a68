"""Store benchmark: the batch writer vs the plainest correct alternative, same events, same run.

    DATABASE_URL=postgresql://... .venv/bin/python bench/store_bench.py [--events 20000] [--batch 1000]

Creates a throwaway database next to DATABASE_URL's (needs CREATEDB), migrates it, and writes N realistic
normalised events (3 fully filled persons, a vehicle, 3 interventions; appointments updated several times,
persons and vehicles shared between appointments) three ways:

- ``store/unnest``: ``Store.apply`` in batches (the default staging),
- ``store/copy``:   ``Store.apply`` with COPY into temporary staging tables,
- ``plain``:        one transaction per event, one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE newer`` per row
                    (plus the applied-event and offset rows), i.e. the same guarantees without batching.

Each starts from empty tables; the resulting tables are compared (they must be identical). Prints rows/s, events/s
and the ratio to ``plain``. Not a test: timings depend on the machine and on PostgreSQL's fsync settings.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import decimal
import os
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from worker.normalise.model import Appointment, Intervention, NormalisedEvent, Note, Person, Upsert, Vehicle
from worker.normalise.records import Item, Offset
from worker.runtime.migrations import migrate
from worker.runtime.store import COPY_MIN_ROWS, Staging, Store
from worker.runtime.tables import canonical_event_id

TOPIC = "carsys.appointments"
FIRST = ["Jan", "Sanne", "Pieter", "Fatima", "Daan", "Emma", "Mohamed", "Lotte", "Bram", "Anouk"]
LAST = ["de Vries", "Jansen", "van den Berg", "Bakker", "El Amrani", "Visser", "Smit", "de Jong"]
CITIES = ["Utrecht", "Amsterdam", "'s-Hertogenbosch", "Den Haag", "Zwolle", "Antwerpen"]
MAKES = [("Volkswagen", "Golf"), ("Kia", "Niro"), ("Toyota", "Yaris"), ("Tesla", "Model 3"), ("Peugeot", "208")]
WORK = [("APK keuring", "45.00"), ("Kleine beurt", "189.95"), ("Remblokken voor", "245.50"), ("Banden wissel", "60")]


def _person(rng: random.Random, pid: str, version: int) -> Person:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    mobile = f"+316{rng.randrange(10**8):08d}"
    email = f"{first.lower()}.{version}@example.nl"
    return Person(
        id=pid,
        company_name=None if rng.random() < 0.7 else f"{last} Transport B.V.",
        title=rng.choice(["dhr.", "mevr.", None]),
        first_name=first,
        last_name=last,
        street="Oudegracht",
        house_number=str(rng.randrange(1, 300)),
        house_number_addition=rng.choice([None, "A", "BIS"]),
        postcode=f"{rng.randrange(1000, 9999)} {rng.choice(['AB', 'KL', 'XZ'])}",
        city=rng.choice(CITIES),
        email_private=email,
        phone_private=f"+3130{rng.randrange(10**7):07d}",
        mobile_private=mobile,
        email_business=f"info@{last.replace(' ', '').lower()}.nl",
        phone_business=f"+3120{rng.randrange(10**7):07d}",
        mobile_business=f"+316{rng.randrange(10**8):08d}",
        preferred_email=email,
        preferred_mobile=mobile,
        notes=(Note("phone_private", "e164", "reformatted"), Note("city", "title_case", "changed")),
    )


def _vehicle(rng: random.Random, key: int, persons: Sequence[str], version: int) -> Vehicle:
    make, model = MAKES[key % len(MAKES)]
    plate = f"{key % 100:02d}-RP-{chr(65 + key % 26)}{chr(65 + key // 26 % 26)}"
    return Vehicle(
        vehicle_key=f"plate:{plate.replace('-', '')}",
        make=make,
        model=f"{model} {version % 3}",
        license_plate=plate,
        license_plate_key=plate.replace("-", ""),
        vin=None,
        fuel=rng.choice(["petrol", "diesel", "electric", "hybrid"]),
        first_registration_date=dt.date(2015 + key % 9, 1 + key % 12, 1),
        apk_due_date=dt.date(2026, 1 + key % 12, 1),
        driver_id=persons[0],
        owner_id=persons[1],
        contractor_id=persons[2],
        notes=(Note("vin", "checksum", "kept"),),
    )


def generate(n: int, seed: int = 1) -> list[NormalisedEvent]:
    """n upserts: ~n/3 appointments updated ~3 times, each with 3 of a pool of n/2 persons, n/6 vehicles."""
    rng = random.Random(seed)
    t0 = dt.datetime(2025, 3, 1, 7, 0, tzinfo=dt.UTC)
    dealers = [f"dealer-{i:03d}" for i in range(5)]
    events: list[NormalisedEvent] = []
    for i in range(n):
        dealer = rng.choice(dealers)
        persons = [f"P{rng.randrange(max(1, n // 2))}" for _ in range(3)]
        work = rng.sample(WORK, 3)
        appointment = Appointment(
            dms_number=f"DMS-{rng.randrange(max(1, n // 3))}",
            created_at=t0,
            wo_number=f"WO-{i}",
            appointment_at=t0 + dt.timedelta(days=rng.randrange(30), hours=rng.randrange(8)),
            waiting_customer=rng.random() < 0.2,
            interventions=tuple(
                Intervention(title=t, description="Volgens fabrieksvoorschrift", price=decimal.Decimal(p))
                for t, p in work
            ),
            vehicle=_vehicle(rng, rng.randrange(max(1, n // 6)), persons, i),
            persons=tuple(_person(rng, p, i) for p in persons),
            notes=(Note("wo_number", "trim", "changed"),),
        )
        occurred = t0 + dt.timedelta(seconds=rng.randrange(86400 * 30))
        events.append(Upsert(str(uuid.uuid4()), occurred, dealer, appointment))
    return events


def rows_of(events: Sequence[NormalisedEvent]) -> int:
    total = 0
    for e in events:
        if isinstance(e, Upsert):
            a = e.appointment
            total += 1 + len(a.interventions) + len(a.persons) + (1 if a.vehicle and a.vehicle.vehicle_key else 0)
        else:
            total += 1
    return total


# --- the plain alternative ------------------------------------------------------------------------------------

_PERSON_FIELDS = [f for f in Person.__struct_fields__ if f not in ("id", "notes")]
_GUARD = "WHERE (t.occurred_at, t.event_id) < (EXCLUDED.occurred_at, EXCLUDED.event_id)"


def _upsert_sql(table: str, key: Sequence[str], cols: Sequence[str], returning: str = "") -> str:
    allcols = [*key, *cols, "notes", "occurred_at", "event_id"]
    params = ", ".join(f"${i}" for i in range(1, len(allcols) + 1))
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*cols, "notes", "occurred_at", "event_id"])
    return (
        f"INSERT INTO {table} AS t ({', '.join(allcols)}) VALUES ({params}) ON CONFLICT ({', '.join(key)}) "
        f"DO UPDATE SET {sets}, updated_at = now() {_GUARD} {returning}"
    )


_VEHICLE_COLS = [
    "make",
    "model",
    "license_plate",
    "license_plate_key",
    "vin",
    "fuel",
    "first_registration_date",
    "apk_due_date",
    "driver_id",
    "owner_id",
    "contractor_id",
]
_APPT_COLS = ["wo_number", "appointment_at", "created_at", "waiting_customer", "vehicle_key", "person_ids"]
PLAIN = {
    "applied": "INSERT INTO applied_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING event_id",
    "person": _upsert_sql("persons", ["dealer_id", "person_id"], _PERSON_FIELDS),
    "vehicle": _upsert_sql("vehicles", ["dealer_id", "vehicle_key"], _VEHICLE_COLS),
    "appointment": _upsert_sql("appointments", ["dealer_id", "dms_number"], _APPT_COLS, "RETURNING 1"),
    "del_interventions": "DELETE FROM interventions WHERE dealer_id = $1 AND dms_number = $2",
    "intervention": "INSERT INTO interventions (dealer_id, dms_number, position, title, description, price, "
    "occurred_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    "offset": "INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, partition) "
    "DO UPDATE SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset)",
}


def _notes(notes: Sequence[Note]) -> str:
    return msgspec.json.encode(notes).decode()


async def plain_one(conn: asyncpg.Connection, event: Upsert, offset: int) -> None:
    eid, when, dealer, a = canonical_event_id(event.event_id), event.occurred_at, event.dealer_id, event.appointment
    async with conn.transaction():
        if await conn.fetchval(PLAIN["applied"], eid) is not None:
            # Persons in key order, like the store, so that this alternative is deadlock-free too.
            for p in sorted({p.id: p for p in a.persons}.values(), key=lambda p: p.id):
                values = [getattr(p, f) for f in _PERSON_FIELDS]
                await conn.execute(PLAIN["person"], dealer, p.id, *values, _notes(p.notes), when, eid)
            v = a.vehicle
            if v is not None and v.vehicle_key:
                values = [getattr(v, f) for f in _VEHICLE_COLS]
                await conn.execute(PLAIN["vehicle"], dealer, v.vehicle_key, *values, _notes(v.notes), when, eid)
            vkey = v.vehicle_key if v else None
            ids = [p.id for p in a.persons]
            appt = [a.wo_number, a.appointment_at, a.created_at, a.waiting_customer, vkey, ids]
            won = await conn.fetchval(PLAIN["appointment"], dealer, a.dms_number, *appt, _notes(a.notes), when, eid)
            if won:
                await conn.execute(PLAIN["del_interventions"], dealer, a.dms_number)
                for pos, item in enumerate(a.interventions):
                    values = [item.title, item.description, item.price, when, eid]
                    await conn.execute(PLAIN["intervention"], dealer, a.dms_number, pos, *values)
        await conn.execute(PLAIN["offset"], "bench", TOPIC, 0, offset + 1)


# --- running --------------------------------------------------------------------------------------------------


async def _reset(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    await pool.execute("TRUNCATE appointments, interventions, persons, vehicles, applied_events, consumer_offsets")


async def _snapshot(pool: asyncpg.Pool[asyncpg.Record]) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in ("appointments", "interventions", "persons", "vehicles"):
        rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        out[table] = [tuple(v for k, v in r.items() if k != "updated_at") for r in rows]
    return out


async def run_store(
    pool: asyncpg.Pool[asyncpg.Record], events: Sequence[NormalisedEvent], batch: int, staging: str
) -> float:
    store = Store(pool, group_id="bench", staging=cast(Staging, staging), prune_every=0)
    items = [Item(e, Offset(TOPIC, 0, i)) for i, e in enumerate(events)]
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        await store.apply(items[i : i + batch])
    return time.perf_counter() - start


async def run_plain(pool: asyncpg.Pool[asyncpg.Record], events: Sequence[NormalisedEvent]) -> float:
    start = time.perf_counter()
    async with pool.acquire() as conn:
        for i, e in enumerate(events):
            assert isinstance(e, Upsert)
            await plain_one(conn, e, i)  # type: ignore[arg-type]
    return time.perf_counter() - start


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def main(n: int, batch: int, plain_n: int, repeat: int) -> None:
    base = os.environ.get("DATABASE_URL", "")
    if not base:
        raise SystemExit("set DATABASE_URL (postgresql://...) to a server where you may CREATE DATABASE")
    name = f"store_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_with_db(base, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await bench(_with_db(base, name), n, batch, plain_n, repeat)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def bench(dsn: str, n: int, batch: int, plain_n: int, repeat: int) -> None:
    await migrate(dsn)
    events = generate(n)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        settings = {
            r[0]: r[1]
            for r in await pool.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version')"
            )
        }
        print(
            f"PostgreSQL {settings['server_version']}, fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}; {n} events ({rows_of(events)} rows), batch {batch}, "
            f"auto = COPY from {COPY_MIN_ROWS} rows per table"
        )
        results: dict[str, tuple[int, float]] = {}
        snaps = {}
        subset = events[:plain_n]
        for _ in range(repeat):  # best of `repeat`: shared machines are noisy
            for staging in ("auto", "unnest", "copy"):
                await _reset(pool)
                seconds = await run_store(pool, events, batch, staging)
                results[f"store/{staging}"] = (n, min(seconds, results.get(f"store/{staging}", (n, seconds))[1]))
                snaps[staging] = await _snapshot(pool)
            await _reset(pool)
            seconds = await run_plain(pool, subset)
            results["plain"] = (len(subset), min(seconds, results.get("plain", (0, seconds))[1]))
        if plain_n == n:
            snaps["plain"] = await _snapshot(pool)
    finally:
        await pool.close()
    same = all(s == snaps["unnest"] for s in snaps.values())
    plain_rate = results["plain"][0] / results["plain"][1]
    print(f"{'method':<14}{'events':>8}{'rows':>9}{'seconds':>9}{'events/s':>11}{'rows/s':>11}{'x plain':>9}")
    for method, (count, seconds) in results.items():
        rows = rows_of(events[:count])
        print(
            f"{method:<14}{count:>8}{rows:>9}{seconds:>9.2f}{count / seconds:>11.0f}{rows / seconds:>11.0f}"
            f"{count / seconds / plain_rate:>9.1f}"
        )
    print(f"tables identical across methods: {same}" + ("" if plain_n == n else " (plain ran on a subset)"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000, help="events per Store.apply (default 1000)")
    parser.add_argument("--plain-events", type=int, help="events for the plain method (default: all)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per method, the best counts (default 2)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch, args.plain_events or args.events, args.repeat))
