"""The expected FINAL database state after a set of valid event values, and the check against the real tables.

Computed without the worker's code paths except the contract decoder and the normaliser (what a value *means* is
theirs to say): the store's semantics, as its docstring states them, are re-derived here from scratch.

- ``applied_events``: exactly the (canonical) event ids of the valid events.
- ``persons`` / ``vehicles``: per key, the snapshot of the event with the greatest ``(occurred_at, event_id)`` among
  every event carrying that key, stale or not for its appointment.
- ``appointments``: per key, the newest event. An upsert gives the whole row and its interventions; a delete gives
  a tombstone: the key and the delete's bookkeeping, every snapshot column empty and no interventions (so that a
  tombstone does not depend on batch boundaries: an upsert collapsed into the same batch as its delete is never
  written).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from schemas.decoder import decode
from worker.normalise.model import Delete, Person, Upsert, Vehicle
from worker.normalise.normaliser import normalise

Key = tuple[str, ...]
Version = tuple[dt.datetime, str]

PERSON_COLUMNS = tuple(f for f in Person.__struct_fields__ if f not in ("id", "notes"))
VEHICLE_COLUMNS = tuple(f for f in Vehicle.__struct_fields__ if f not in ("vehicle_key", "notes"))
APPOINTMENT_DATA = ("wo_number", "appointment_at", "created_at", "waiting_customer", "vehicle_key", "person_ids")
CENTS = decimal.Decimal("0.01")
# What a tombstone holds of the snapshot (APPOINTMENT_DATA and notes): nothing.
EMPTY_SNAPSHOT: tuple[Any, ...] = (None, None, None, False, None, [], [])


def _notes(notes: Iterable[Any]) -> list[dict[str, str]]:
    return [msgspec.to_builtins(n) for n in notes]


def _price(value: decimal.Decimal | None) -> decimal.Decimal | None:
    # numeric(12, 2): PostgreSQL rounds half away from zero.
    return None if value is None else value.quantize(CENTS, rounding=decimal.ROUND_HALF_UP)


def canonical(event_id: str) -> str:
    return str(uuid.UUID(event_id))


@dataclass
class Expected:
    event_ids: set[str] = field(default_factory=set)
    persons: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    vehicles: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    # data + notes + deleted, deleted_at, occurred_at, event_id; tombstones included
    appointments: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    interventions: dict[Key, tuple[tuple[Any, ...], ...]] = field(default_factory=dict)  # non-empty sets only


def _snapshot(event: Upsert) -> tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]:
    a = event.appointment
    vehicle_key = a.vehicle.vehicle_key if a.vehicle is not None else None
    data = (a.wo_number, a.appointment_at, a.created_at, a.waiting_customer, vehicle_key, [p.id for p in a.persons])
    eid = canonical(event.event_id)
    interventions = tuple(
        (n, i.title, i.description, _price(i.price), event.occurred_at, eid) for n, i in enumerate(a.interventions)
    )
    return (*data, _notes(a.notes)), interventions


def _decode_all(values: Iterable[bytes]) -> dict[str, Upsert | Delete]:
    events: dict[str, Upsert | Delete] = {}
    raw_by_id: dict[str, bytes] = {}
    for value in values:
        event = normalise(decode(value))
        eid = canonical(event.event_id)
        if eid in raw_by_id and raw_by_id[eid] != value:
            # The store keeps whichever arrives first: a model of that would be a model of delivery order.
            raise ValueError(f"two different events share event id {eid}: the test data is ambiguous")
        raw_by_id[eid] = value
        events[eid] = event
    return events


def _version(event: Upsert | Delete) -> Version:
    return (event.occurred_at, canonical(event.event_id))


def _newest_rows(out: Expected, events: Iterable[Upsert]) -> None:
    """persons and vehicles: the newest snapshot per key over every event carrying it."""
    versions: dict[tuple[str, Key], Version] = {}

    def offer(table: dict[Key, tuple[Any, ...]], key: Key, event: Upsert, row: tuple[Any, ...]) -> None:
        current = versions.get((str(id(table)), key))
        if current is None or _version(event) > current:
            versions[(str(id(table)), key)] = _version(event)
            table[key] = row

    for event in events:
        eid, a = canonical(event.event_id), event.appointment
        for p in a.persons:
            row = tuple(getattr(p, c) for c in PERSON_COLUMNS)
            offer(out.persons, (event.dealer_id, p.id), event, (*row, _notes(p.notes), event.occurred_at, eid))
        v = a.vehicle
        if v is not None and v.vehicle_key is not None:
            row = tuple(getattr(v, c) for c in VEHICLE_COLUMNS)
            offer(
                out.vehicles, (event.dealer_id, v.vehicle_key), event, (*row, _notes(v.notes), event.occurred_at, eid)
            )


def expected_state(values: Iterable[bytes]) -> Expected:
    """The model of the tables after every value in ``values`` (each a valid event, any order, repeats allowed)."""
    events = _decode_all(values)
    out = Expected(event_ids=set(events))
    _newest_rows(out, (e for e in events.values() if isinstance(e, Upsert)))
    by_appointment: dict[Key, list[Upsert | Delete]] = {}
    for event in events.values():
        dms_number = event.dms_number if isinstance(event, Delete) else event.appointment.dms_number
        by_appointment.setdefault((event.dealer_id, dms_number), []).append(event)
    for key, history in by_appointment.items():
        newest = max(history, key=_version)
        eid = canonical(newest.event_id)
        if isinstance(newest, Delete):
            out.appointments[key] = (*EMPTY_SNAPSHOT, True, newest.occurred_at, newest.occurred_at, eid)
            continue
        data, interventions = _snapshot(newest)
        out.appointments[key] = (*data, False, None, newest.occurred_at, eid)
        if interventions:
            out.interventions[key] = interventions
    return out


# --- the real tables --------------------------------------------------------------------------------------------


@dataclass
class Actual:
    event_ids: set[str]
    persons: dict[Key, tuple[Any, ...]]
    vehicles: dict[Key, tuple[Any, ...]]
    appointments: dict[Key, tuple[Any, ...]]  # data + notes + deleted, deleted_at, occurred_at, event_id
    interventions: dict[Key, tuple[tuple[Any, ...], ...]]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def read_tables(conn: Any) -> Actual:
    """Every row of the four tables and every applied event id (``conn``: an asyncpg connection)."""
    event_ids = {r[0] for r in await conn.fetch("SELECT event_id::text FROM applied_events")}
    persons: dict[Key, tuple[Any, ...]] = {}
    cols = ", ".join(PERSON_COLUMNS)
    for r in await conn.fetch(f"SELECT dealer_id, person_id, {cols}, notes, occurred_at, event_id::text FROM persons"):
        row = tuple(r)
        persons[(row[0], row[1])] = (*row[2:-3], _json(row[-3]), *row[-2:])
    vehicles: dict[Key, tuple[Any, ...]] = {}
    cols = ", ".join(VEHICLE_COLUMNS)
    for r in await conn.fetch(
        f"SELECT dealer_id, vehicle_key, {cols}, notes, occurred_at, event_id::text FROM vehicles"
    ):
        row = tuple(r)
        vehicles[(row[0], row[1])] = (*row[2:-3], _json(row[-3]), *row[-2:])
    appointments: dict[Key, tuple[Any, ...]] = {}
    cols = ", ".join(APPOINTMENT_DATA)
    for r in await conn.fetch(
        f"SELECT dealer_id, dms_number, {cols}, notes, deleted, deleted_at, occurred_at, event_id::text "
        "FROM appointments"
    ):
        row = tuple(r)
        data = list(row[2:8])
        data[5] = list(data[5])  # person_ids: text[]
        appointments[(row[0], row[1])] = (*data, _json(row[8]), *row[9:])
    interventions: dict[Key, list[tuple[Any, ...]]] = {}
    for r in await conn.fetch(
        "SELECT dealer_id, dms_number, position, title, description, price, occurred_at, event_id::text "
        "FROM interventions ORDER BY dealer_id, dms_number, position"
    ):
        row = tuple(r)
        interventions.setdefault((row[0], row[1]), []).append(row[2:])
    return Actual(event_ids, persons, vehicles, appointments, {k: tuple(v) for k, v in interventions.items()})


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _diff(name: str, expected: Mapping[Any, Any], actual: Mapping[Any, Any], problems: list[str]) -> None:
    missing = [k for k in expected if k not in actual]
    extra = [k for k in actual if k not in expected]
    differ = [k for k in expected if k in actual and expected[k] != actual[k]]
    if missing or extra or differ:
        problems.append(
            f"{name}: {len(missing)} missing, {len(extra)} unexpected, {len(differ)} different "
            f"(of {len(expected)} expected)"
        )
    for k in missing[:3]:
        problems.append(f"  missing {_short(k)}")
    for k in extra[:3]:
        problems.append(f"  unexpected {_short(k)}: {_short(actual[k])}")
    for k in differ[:3]:
        problems.append(f"  {_short(k)}:\n    expected {_short(expected[k])}\n    actual   {_short(actual[k])}")


def compare(expected: Expected, actual: Actual) -> list[str]:
    """Every difference between the model and the tables, as readable lines (empty: they are equal)."""
    problems: list[str] = []
    missing_ids = expected.event_ids - actual.event_ids
    extra_ids = actual.event_ids - expected.event_ids
    if missing_ids or extra_ids:
        problems.append(f"applied_events: {len(missing_ids)} missing, {len(extra_ids)} unexpected")
    _diff("persons", expected.persons, actual.persons, problems)
    _diff("vehicles", expected.vehicles, actual.vehicles, problems)
    _diff("appointments", expected.appointments, actual.appointments, problems)
    _diff("interventions", expected.interventions, actual.interventions, problems)
    return problems


def assert_tables_equal(expected: Expected, actual: Actual) -> None:
    problems = compare(expected, actual)
    assert not problems, "tables differ from the model:\n" + "\n".join(problems)
