"""Dates and timestamps (issue 10, part 2): placeholder dates, and what ``normalize`` shows is the instant stored.

The same property through a real PostgreSQL is tests/integration/test_dates_roundtrip.py.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decoder import decode
from worker.errors import NormaliseError
from worker.normalise import dates, model
from worker.normalise.normaliser import normalise, to_contract_shape

PLACEHOLDER_DATES = [
    "0001-01-01",  # .NET default(DateTime), and where asyncpg writes -infinity
    "1753-01-01",  # SQL Server datetime's first day
    "1899-12-30",  # Delphi / OLE automation day 0
    "1899-12-31",  # Excel day 0
    "1900-01-01",  # Excel day 1
    "2099-12-31",
    "2999-12-31",
    "9999-12-31",  # "never", and where asyncpg writes infinity
]
REAL_DATES = ["1900-01-02", "1936-06-01", "2019-05-01", "2026-05-01", "2098-12-31"]
NOTE = ("placeholder", "nulled")


def _event(appointment: dict[str, Any] | None = None, **envelope: Any) -> bytes:
    doc = {
        "event_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "event_type": "appointment.upserted",
        "schema_version": 1,
        "occurred_at": "2025-03-14T09:26:00+01:00",
        "dealer_id": "dealer-1",
        "appointment": {"dms_number": "1", "created_at": "2025-03-14T09:20:00+01:00", **(appointment or {})},
        **envelope,
    }
    return json.dumps(doc).encode()


def _upsert(**appointment: Any) -> model.Upsert:
    event = normalise(decode(_event(appointment)))
    assert isinstance(event, model.Upsert)
    return event


def _notes(notes: tuple[model.Note, ...], field: str) -> list[tuple[str, str]]:
    return [(n.rule, n.action) for n in notes if n.field == field]


@pytest.mark.parametrize("field", ["first_registration_date", "apk_due_date"])
@pytest.mark.parametrize("day", PLACEHOLDER_DATES)
def test_placeholder_dates_become_null_with_a_note(field: str, day: str) -> None:
    vehicle = _upsert(vehicle={"license_plate": "70-RP-JJ", field: day}).appointment.vehicle
    assert vehicle is not None
    assert getattr(vehicle, field) is None
    assert _notes(vehicle.notes, field) == [NOTE]


@pytest.mark.parametrize("field", ["first_registration_date", "apk_due_date"])
@pytest.mark.parametrize("day", REAL_DATES)
def test_real_dates_are_kept_without_a_note(field: str, day: str) -> None:
    vehicle = _upsert(vehicle={"license_plate": "70-RP-JJ", field: day}).appointment.vehicle
    assert vehicle is not None
    assert getattr(vehicle, field) == dt.date.fromisoformat(day)
    assert _notes(vehicle.notes, field) == []


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "1899-12-30T00:00:00+01:00", "9999-12-31T23:59:59.999999"]
)
def test_a_placeholder_appointment_time_becomes_null_with_a_note(at: str) -> None:
    appointment = _upsert(appointment_at=at).appointment
    assert appointment.appointment_at is None
    assert _notes(appointment.notes, "appointment_at") == [NOTE]  # no timezone note for a value that is gone


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00", "1900-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"])
def test_a_placeholder_created_at_is_a_normalise_error_naming_the_field_not_the_value(at: str) -> None:
    with pytest.raises(NormaliseError) as info:
        normalise(decode(_event({"created_at": at})))
    assert str(info.value) == "$.appointment.created_at: placeholder timestamp (outside 1900-01-02..2098-12-31)"


@pytest.mark.parametrize("event_type", ["appointment.upserted", "appointment.deleted"])
@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00", "1899-12-30T00:00:00Z"])
def test_a_placeholder_occurred_at_is_a_normalise_error(at: str, event_type: str) -> None:
    # A 9999 occurred_at would win over every later change of the appointment.
    value = _event(occurred_at=at, event_type=event_type)
    with pytest.raises(NormaliseError) as info:
        normalise(decode(value))
    assert str(info.value) == "$.occurred_at: placeholder timestamp (outside 1900-01-02..2098-12-31)"


def test_amsterdam_mean_time_is_given_in_utc_so_that_normalize_shows_the_exact_instant() -> None:
    # Before 1937 Amsterdam was +00:19:32; msgspec would write +00:20, 28 seconds off what PostgreSQL stores.
    appointment = _upsert(created_at="1930-05-01T10:00:00").appointment
    assert appointment.created_at == dt.datetime(1930, 5, 1, 9, 40, 28, tzinfo=dt.UTC)
    assert appointment.created_at.tzinfo is dt.UTC
    assert _notes(appointment.notes, "created_at") == [("timezone", "assumed_europe_amsterdam")]
    shown = to_contract_shape(_upsert(created_at="1930-05-01T10:00:00"))["appointment"]["created_at"]
    assert shown == "1930-05-01T09:40:28Z"


def test_summer_and_winter_time_keep_their_amsterdam_offset() -> None:
    appointment = _upsert(created_at="2025-07-01T10:00:00", appointment_at="2025-01-01T10:00:00").appointment
    assert appointment.created_at.utcoffset() == dt.timedelta(hours=2)
    assert appointment.appointment_at is not None
    assert appointment.appointment_at.utcoffset() == dt.timedelta(hours=1)


def test_is_placeholder_reads_a_timestamp_by_its_date_as_written() -> None:
    minus_one = dt.timezone(dt.timedelta(hours=-1))
    assert not dates.is_placeholder(dt.datetime(1900, 1, 2, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    assert dates.is_placeholder(dt.datetime(1900, 1, 1, 23, 30, tzinfo=minus_one))  # 1900-01-02 in UTC
    assert dates.is_placeholder(dt.date.max)
    assert dates.is_placeholder(dt.date.min)


# --- the property: whatever arrives, the normalised value is one JSON and PostgreSQL both hold exactly ---------

OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
# The calendar's ends, and both sides of the window's edges, more often than uniform drawing would find them.
EDGES = st.sampled_from(
    [
        dt.datetime.min,
        dt.datetime.max,
        dt.datetime(1900, 1, 1, 23, 59),
        dt.datetime(1900, 1, 2),
        dt.datetime(1937, 6, 30, 23, 59),
        dt.datetime(2098, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2099, 1, 1),
    ]
)
WALL_CLOCK = st.one_of(EDGES, st.datetimes())


def _wire(wall_clock: dt.datetime, offset: dt.timezone | None) -> str:
    return (wall_clock if offset is None else wall_clock.replace(tzinfo=offset)).isoformat()


@settings(max_examples=300)
@given(wall_clock=WALL_CLOCK, offset=st.none() | OFFSETS)
def test_a_timestamp_is_null_with_a_note_or_shown_as_exactly_the_instant_kept(
    wall_clock: dt.datetime, offset: dt.timezone | None
) -> None:
    event = _upsert(appointment_at=_wire(wall_clock, offset))
    kept = event.appointment.appointment_at
    if dates.is_placeholder(wall_clock):
        assert kept is None
        assert _notes(event.appointment.notes, "appointment_at") == [NOTE]
        return
    assert kept is not None
    shown = to_contract_shape(event)["appointment"]["appointment_at"]
    assert msgspec.json.decode(json.dumps(shown), type=dt.datetime) == kept
    assert kept.astimezone(dt.UTC).year in range(1899, 2100)  # the driver can convert it, and not to infinity


@settings(max_examples=300)
@given(day=st.one_of(st.sampled_from([dt.date.min, dt.date.max, dates.EARLIEST, dates.LATEST]), st.dates()))
def test_a_date_is_null_with_a_note_or_shown_as_itself(day: dt.date) -> None:
    vehicle = _upsert(vehicle={"vin": "WVWZZZ1KZAW000001", "apk_due_date": day.isoformat()}).appointment.vehicle
    assert vehicle is not None
    if dates.EARLIEST <= day <= dates.LATEST:
        assert vehicle.apk_due_date == day
        assert _notes(vehicle.notes, "apk_due_date") == []
    else:
        assert vehicle.apk_due_date is None
        assert _notes(vehicle.notes, "apk_due_date") == [NOTE]
