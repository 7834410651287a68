"""Issue 10, part 2, through a real PostgreSQL: no date or timestamp changes between ``normalize`` and the row.

For dates and timestamps anywhere in Python's range (years 1-9999, any offset, or none: Amsterdam local time), each
event is decoded and normalised as the worker does, printed as ``normalize`` prints it, written with the real store
(unnest and COPY staging) and read back: every stored value equals what ``normalize`` showed (and the value sent,
when it is not a placeholder), is finite in PostgreSQL (asyncpg writes date.min/date.max and the timestamps at the
calendar's ends as -infinity/infinity), and a placeholder is null with its note, or, for a required timestamp, the
event is a NormaliseError (dead-lettered) naming the field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from worker.errors import NormaliseError
from worker.normalise.model import Upsert
from worker.normalise.normaliser import to_contract_shape
from worker.normalise.records import Item, Offset, to_event
from worker.runtime.migrations import migrate
from worker.runtime.retry import policy
from worker.runtime.store import Staging, Store

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
PLACEHOLDER_NOTE = {"rule": "placeholder", "action": "nulled"}

OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
_EDGES = [
    dt.datetime.min,
    dt.datetime.max,
    dt.datetime(1, 1, 1, 0, 30),
    dt.datetime(9999, 12, 31, 23, 30),
    dt.datetime(1899, 12, 30),
    dt.datetime(1900, 1, 1),
    dt.datetime(1900, 1, 2),
    dt.datetime(1937, 6, 30, 23, 59, 59),
    dt.datetime(2098, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2099, 1, 1),
]
_REAL = st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2098, 12, 31, 23, 59, 59, 999999))
# Amsterdam mean time (+00:19:32) for local timestamps: the offset RFC 3339 cannot write.
_MEAN_TIME = st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(1937, 6, 30, 23, 59, 59))
# Any wall clock of Python's range, with the calendar's ends and the window's edges drawn often.
ANY_TIME = st.one_of(st.sampled_from(_EDGES), st.datetimes(), _REAL, _MEAN_TIME)
# Mostly storable, so that most events get to the database; placeholders still come up.
REQUIRED_TIME = st.one_of(_REAL, _REAL, _MEAN_TIME, ANY_TIME)
ANY_DATE = st.one_of(
    st.sampled_from([dt.date.min, dt.date.max, dt.date(1900, 1, 2), dt.date(2098, 12, 31), dt.date(1899, 12, 30)]),
    st.dates(),
)


class Sent(msgspec.Struct, frozen=True):
    occurred_at: dt.datetime  # always with an offset (the contract requires one)
    created_at: dt.datetime
    appointment_at: dt.datetime | None
    first_registration_date: dt.date
    apk_due_date: dt.date


@st.composite
def sent(draw: st.DrawFn) -> Sent:
    def at(strategy: st.SearchStrategy[dt.datetime], offset: st.SearchStrategy[Any]) -> dt.datetime:
        wall_clock, tz = draw(strategy), draw(offset)
        return wall_clock if tz is None else wall_clock.replace(tzinfo=tz)

    return Sent(
        occurred_at=at(REQUIRED_TIME, OFFSETS),
        created_at=at(REQUIRED_TIME, st.none() | OFFSETS),
        appointment_at=at(ANY_TIME, st.none() | OFFSETS) if draw(st.integers(0, 4)) else None,
        first_registration_date=draw(ANY_DATE),
        apk_due_date=draw(ANY_DATE),
    )


def _value(s: Sent, dealer: str, n: int) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "appointment.upserted",
            "schema_version": 1,
            "occurred_at": s.occurred_at.isoformat(),
            "dealer_id": dealer,
            "appointment": {
                "dms_number": f"D-{n}",
                "created_at": s.created_at.isoformat(),
                "appointment_at": None if s.appointment_at is None else s.appointment_at.isoformat(),
                "vehicle": {
                    "vin": f"WVWZZZ1KZAW{n:06d}",
                    "first_registration_date": s.first_registration_date.isoformat(),
                    "apk_due_date": s.apk_due_date.isoformat(),
                },
            },
        }
    ).encode()


def _placeholder(value: dt.date) -> bool:
    """The rule restated independently of worker.normalise.dates: outside 1900-01-02..2098-12-31, as written."""
    day = value.date() if isinstance(value, dt.datetime) else value
    return not dt.date(1900, 1, 2) <= day <= dt.date(2098, 12, 31)


def _instant(value: dt.datetime) -> dt.datetime:
    """The instant a timestamp as sent means: without an offset it is Amsterdam local time."""
    return value if value.tzinfo is not None else value.replace(tzinfo=AMSTERDAM)


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    asyncio.run(migrate(database_url))
    return database_url


_READ_BACK = """
SELECT a.dms_number, a.occurred_at, a.created_at, a.appointment_at, a.notes AS appointment_notes,
       v.first_registration_date, v.apk_due_date, v.notes AS vehicle_notes,
       isfinite(a.occurred_at) AND isfinite(a.created_at) AND isfinite(coalesce(a.appointment_at, a.created_at))
       AND isfinite(coalesce(v.first_registration_date, current_date))
       AND isfinite(coalesce(v.apk_due_date, current_date)) AS finite
FROM appointments a JOIN vehicles v ON v.dealer_id = a.dealer_id AND v.vehicle_key = a.vehicle_key
WHERE a.dealer_id = $1
"""


async def _write_and_read(dsn: str, dealer: str, items: list[Item], staging: Staging) -> dict[str, asyncpg.Record]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        result = await Store(pool, group_id="dates", retrying=lambda: policy(attempts=1), staging=staging).apply(items)
        assert result.rejected == ()
        assert result.applied == len(items)
        return {r["dms_number"]: r for r in await pool.fetch(_READ_BACK, dealer)}
    finally:
        await pool.close()


def _shown(value: str | None, kind: type[dt.date]) -> Any:
    return None if value is None else msgspec.json.decode(json.dumps(value), type=kind)


def _placeholder_noted(notes: str, field: str) -> bool:
    return {"field": field, **PLACEHOLDER_NOTE} in json.loads(notes)


def _check_timestamps(s: Sent, shown: dict[str, Any], row: asyncpg.Record) -> None:
    for field in ("occurred_at", "created_at"):
        assert row[field] == _shown(shown[field], dt.datetime) == _instant(getattr(s, field)), field
    if s.appointment_at is None or _placeholder(s.appointment_at):
        assert row["appointment_at"] is None
        assert shown["appointment_at"] is None
        assert _placeholder_noted(row["appointment_notes"], "appointment_at") == (s.appointment_at is not None)
    else:
        assert row["appointment_at"] == _shown(shown["appointment_at"], dt.datetime) == _instant(s.appointment_at)


def _check_dates(s: Sent, shown: dict[str, Any], row: asyncpg.Record) -> None:
    for field in ("first_registration_date", "apk_due_date"):
        sent_day = getattr(s, field)
        kept = None if _placeholder(sent_day) else sent_day
        assert row[field] == _shown(shown[field], dt.date) == kept, field
        assert _placeholder_noted(row["vehicle_notes"], field) == (kept is None), field


def _normalised(s: Sent, dealer: str, n: int) -> Upsert | None:
    """The normalised event, or None when a required timestamp is a placeholder and the event is dead-lettered."""
    value = _value(s, dealer, n)
    required = [
        f for f, at in (("occurred_at", s.occurred_at), ("appointment.created_at", s.created_at)) if _placeholder(at)
    ]
    if required:
        # No null to fall back to: a NormaliseError naming the field, never the value.
        with pytest.raises(NormaliseError) as info:
            to_event(value)
        assert str(info.value) == f"$.{required[0]}: placeholder timestamp (outside 1900-01-02..2098-12-31)"
        return None
    event = to_event(value)
    assert isinstance(event, Upsert)
    return event


# 5 batches of 40 events, one transaction each (about 1.5 s). No shrinking: every step is a database round trip
# (minutes for a batch of 40); the assertion messages name the field, the falsifying batch is printed whole.
@settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(sent(), min_size=40, max_size=40), staging=st.sampled_from(["unnest", "copy"]))
def test_no_date_or_timestamp_changes_between_normalize_and_the_row(
    migrated: str, batch: list[Sent], staging: Staging
) -> None:
    dealer = f"dates-{uuid.uuid4().hex[:12]}"
    items: list[Item] = []
    shown: dict[str, dict[str, Any]] = {}
    for n, s in enumerate(batch):
        event = _normalised(s, dealer, n)
        if event is None:
            continue
        # Exactly what `carsys-ingest normalize` prints for the event.
        printed = json.loads(msgspec.json.encode(to_contract_shape(event)))
        shown[f"D-{n}"] = {"occurred_at": printed["occurred_at"], **printed["appointment"]}
        shown[f"D-{n}"].update(printed["appointment"]["vehicle"])
        items.append(Item(event, Offset("dates", 0, n)))
    rows = asyncio.run(_write_and_read(migrated, dealer, items, staging)) if items else {}
    assert set(rows) == set(shown)
    for n, s in enumerate(batch):
        row = rows.get(f"D-{n}")
        if row is None:
            continue
        assert row["finite"], "stored as infinity"
        _check_timestamps(s, shown[f"D-{n}"], row)
        _check_dates(s, shown[f"D-{n}"], row)
