"""The tables as data: rows by column name, and database errors classified by SQLSTATE without a server."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from asyncpg.exceptions._base import PostgresMessageMeta

from tests.unit.builders import upsert
from worker.errors import TransientError, WriteRejected
from worker.normalise.model import Appointment, Delete, Intervention, NormalisedEvent, Person, Upsert, Vehicle
from worker.normalise.normaliser import normalise
from worker.normalise.records import Item, Offset
from worker.runtime import tables
from worker.runtime.tables import APPOINTMENTS, PERSONS, VEHICLES, Rows, classify

AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
EID = "6f1c1d9e-7d33-4a63-9a7e-0c1c3c0b1a01"


def _error(sqlstate: str) -> asyncpg.PostgresError:
    """The exception asyncpg raises for this SQLSTATE (its own class for the code)."""
    cls: type[asyncpg.PostgresError] = PostgresMessageMeta.get_message_class_for_sqlstate(sqlstate)  # type: ignore[attr-defined]
    assert cls.sqlstate == sqlstate
    return cls("from the server")


@pytest.mark.parametrize("sqlstate", ["08006", "53300", "57P01", "40001", "40P01", "57014", "55P03"])
def test_outages_and_contention_are_transient(sqlstate: str) -> None:
    assert isinstance(classify(_error(sqlstate), "merging"), TransientError)


@pytest.mark.parametrize("sqlstate", ["22001", "22P02", "23505", "23502", "54000"])
def test_the_records_own_values_are_rejected_for_good_with_the_sqlstate(sqlstate: str) -> None:
    err = classify(_error(sqlstate), "merging persons")
    assert isinstance(err, WriteRejected)
    assert err.sqlstate == sqlstate
    assert "from the server" not in str(err)  # PostgreSQL's own text may quote values


@pytest.mark.parametrize("sqlstate", ["42P01", "42501", "XX000"])
def test_a_deployment_problem_or_bug_is_neither(sqlstate: str) -> None:
    assert classify(_error(sqlstate), "merging") is None


def test_connection_failures_are_transient() -> None:
    assert isinstance(classify(ConnectionResetError(), "applying"), TransientError)
    assert isinstance(classify(TimeoutError(), "applying"), TransientError)


def test_every_listed_code_is_classified_the_way_its_list_says() -> None:
    for code in tables.TRANSIENT_SQLSTATES:
        assert isinstance(classify(_error(code), "x"), TransientError)
    for code in tables.PERMANENT_SQLSTATES:
        assert isinstance(classify(_error(code), "x"), WriteRejected)


def test_a_row_names_every_column_once() -> None:
    names = [c[0] for c in PERSONS.columns]
    row = PERSONS.row(**{n: n.upper() for n in names})
    assert row == tuple(n.upper() for n in names)
    with pytest.raises(KeyError):
        PERSONS.row(**{n: 1 for n in names[:-1]}, unknown=1)
    with pytest.raises(TypeError):
        PERSONS.row(**{n: 1 for n in names[1:]})


def as_dict(table: tables.Table, row: tables.Row) -> dict[str, object]:
    return dict(zip([c[0] for c in table.columns], row, strict=True))


def test_rows_put_each_value_in_its_own_column() -> None:
    person = Person(id="p1", first_name="Jan", mobile_private="+31612345678")
    vehicle = Vehicle(vehicle_key="plate:AB123C", license_plate="AB-123-C", apk_due_date=dt.date(2027, 5, 1))
    appointment = Appointment(dms_number="A-1", created_at=AT, wo_number="WO-9", vehicle=vehicle, persons=(person,))
    rows = Rows()
    rows.add(Upsert(EID, AT, "dealer-1", appointment))
    (prow,) = rows.persons()
    (vrow,) = rows.vehicles()
    (arow,) = rows.appointments()
    assert as_dict(PERSONS, prow)["mobile_private"] == "+31612345678"
    assert as_dict(PERSONS, prow)["first_name"] == "Jan"
    assert as_dict(VEHICLES, vrow)["apk_due_date"] == dt.date(2027, 5, 1)
    assert as_dict(VEHICLES, vrow)["license_plate"] == "AB-123-C"
    assert as_dict(APPOINTMENTS, arow)["wo_number"] == "WO-9"
    assert as_dict(APPOINTMENTS, arow)["person_ids"] == '["p1"]'


def test_a_tombstone_keeps_only_its_key_and_bookkeeping() -> None:
    rows = Rows()
    rows.add(Delete(EID, AT, "dealer-1", "A-1"))
    (arow,) = rows.appointments()
    row = dict(zip([c[0] for c in APPOINTMENTS.columns], arow, strict=True))
    assert (row["deleted"], row["deleted_at"], row["occurred_at"]) == (True, AT, AT)
    assert (row["dealer_id"], row["dms_number"], row["event_id"]) == ("dealer-1", "A-1", EID)
    assert (row["created_at"], row["vehicle_key"], row["person_ids"]) == (None, None, "[]")


def _batch(n: int) -> list[Item]:
    """n events over fewer appointments, persons and vehicles (so keys collapse), one of them a delete."""
    events: list[NormalisedEvent] = []
    for i in range(n):
        persons = (Person(id=f"p{i % 7}", first_name=f"V{i}"), Person(id=f"p{(i + 3) % 7}", city="Utrecht"))
        vehicle = Vehicle(vehicle_key=f"plate:{i % 5}", license_plate=f"AB-{i % 5}")
        interventions = tuple(Intervention(title=f"T{i}.{k}", price=decimal.Decimal("9.50")) for k in range(i % 3))
        appointment = Appointment(
            dms_number=f"A-{i % 11}", created_at=AT, vehicle=vehicle, persons=persons, interventions=interventions
        )
        eid = f"6f1c1d9e-7d33-4a63-9a7e-{i:012d}"
        events.append(Upsert(eid, AT + dt.timedelta(minutes=i), "d", appointment))
    events.append(Delete("6f1c1d9e-7d33-4a63-9a7e-999999999999", AT + dt.timedelta(minutes=n), "d", "A-3"))
    return [Item(e, Offset("t", 0, i)) for i, e in enumerate(events)]


def test_a_plan_holds_the_rows_the_store_would_build_and_builds_them_in_slices() -> None:
    batch = _batch(600)
    plan = tables.Plan()
    plan.add(batch[:300])
    plan.add(batch[300:] + batch[:5])  # a repeated id is a duplicate: the first item counts
    steps = sum(1 for _ in plan.build())

    rows = Rows()
    for eid, item in tables.unique_items(batch).items():
        rows.add(item.event, item.source, item.offset, eid)
    assert (plan.persons(), plan.vehicles(), plan.appointments()) == (
        rows.persons(),
        rows.vehicles(),
        rows.appointments(),
    )
    assert steps >= 3  # the caller can yield between slices
    upserts = sorted((k, e) for k, e in rows.candidates() if isinstance(e, Upsert))
    winners = [k for k, _ in upserts]
    events = [e for _, e in upserts]
    sources = {tables.canonical_event_id(i.event.event_id): i.offset for i in batch}
    assert plan.interventions(winners) == tables.intervention_rows(events, sources)
    assert tables.planned(batch).appointments() == plan.appointments()


def test_a_person_listed_twice_has_one_row_whose_source_is_its_first_record() -> None:
    driver = {"id": "P1", "first_name": "Jan", "last_name": "Jansen"}
    source = upsert(persons=[driver, {"id": "P2"}, {**driver, "id": " P1"}])
    event = normalise(source)
    rows = Rows()
    rows.add(event, source)
    persons: dict[Any, dict[str, Any]] = {as_dict(PERSONS, r)["person_id"]: as_dict(PERSONS, r) for r in rows.persons()}
    assert sorted(persons) == ["P1", "P2"]
    assert msgspec.json.decode(persons["P1"]["source"])["id"] == "P1"
    assert as_dict(APPOINTMENTS, rows.appointments()[0])["person_ids"] == '["P1","P2"]'
