"""Forms real producers send that the contract spells otherwise (schemas/repairs.py): each is read as the form the
contract names, what is still ambiguous stays a contract error, and a refusal never quotes a value."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.contract import AppointmentUpserted, Event
from schemas.decoder import NotV1, decode
from schemas.repairs import as_bool, as_date, as_timestamp

RICH: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "examples" / "upsert-rich.json").read_text(encoding="utf-8")
)
Change = Callable[[dict[str, Any]], Any]


def _decoded(change: Change) -> Event:
    doc = copy.deepcopy(RICH)
    change(doc)
    return decode(json.dumps(doc, ensure_ascii=False).encode())


def _event(**values: Any) -> Change:
    return lambda d: d.update(values)


def _appt(**values: Any) -> Change:
    return lambda d: d["appointment"].update(values)


def _vehicle(**values: Any) -> Change:
    return lambda d: d["appointment"]["vehicle"].update(values)


def _person(n: int, **values: Any) -> Change:
    return lambda d: d["appointment"]["persons"][n].update(values)


def _intervention(n: int, **values: Any) -> Change:
    return lambda d: d["appointment"]["interventions"][n].update(values)


# (what a producer sent, the same event as the contract spells it)
SAME: list[tuple[str, Change, Change]] = [
    ("house number as a number", _person(0, house_number=12), _person(0, house_number="12")),
    ("person id as a number", _person(1, id=4711), _person(1, id="4711")),
    ("role id as a number", _vehicle(driver_id=4711), _vehicle(driver_id="4711")),
    ("dms number as a number", _appt(dms_number=2025004711), _appt(dms_number="2025004711")),
    ("wo number as a number", _appt(wo_number=88), _appt(wo_number="88")),
    ("dealer id as a number", _event(dealer_id=1234), lambda d: d.update(dealer_id="1234")),
    ("mobile as a number", _person(0, mobile_private=612345678), _person(0, mobile_private="612345678")),
    ("postcode as a number (Belgium)", _person(0, postcode=2000), _person(0, postcode="2000")),
    ("interventions null", _appt(interventions=None), _appt(interventions=[])),
    ("persons null", _appt(persons=None), _appt(persons=[])),
    ("waiting customer null", _appt(waiting_customer=None), _appt(waiting_customer=False)),
    ("waiting customer 'ja'", _appt(waiting_customer="ja"), _appt(waiting_customer=True)),
    ("waiting customer 'N'", _appt(waiting_customer="N"), _appt(waiting_customer=False)),
    ("waiting customer 1", _appt(waiting_customer=1), _appt(waiting_customer=True)),
    ("waiting customer 'False'", _appt(waiting_customer="False"), _appt(waiting_customer=False)),
    ("title null", _intervention(0, title=None), _intervention(0, title="")),
    ("price empty", _intervention(0, price=""), _intervention(0, price=None)),
    ("price blank", _intervention(0, price="  "), _intervention(0, price=None)),
    ("vehicle date empty", _vehicle(apk_due_date=""), _vehicle(apk_due_date=None)),
    ("Dutch date", _vehicle(apk_due_date="1-3-2019"), _vehicle(apk_due_date="2019-03-01")),
    ("Dutch date, two digits", _vehicle(apk_due_date="01-03-2019"), _vehicle(apk_due_date="2019-03-01")),
    ("Dutch date with a time", _vehicle(apk_due_date="1-3-2019 00:00:00"), _vehicle(apk_due_date="2019-03-01")),
    ("German date", _vehicle(first_registration_date="01.03.2019"), _vehicle(first_registration_date="2019-03-01")),
    ("RDW date", _vehicle(first_registration_date="20190301"), _vehicle(first_registration_date="2019-03-01")),
    ("RDW date as a number", _vehicle(apk_due_date=20190301), _vehicle(apk_due_date="2019-03-01")),
    ("appointment_at empty", _appt(appointment_at=""), _appt(appointment_at=None)),
    ("Dutch timestamp", _appt(appointment_at="3-1-2026 9:05"), _appt(appointment_at="2026-01-03T09:05:00")),
    (
        "Dutch timestamp with seconds",
        _appt(created_at="14-03-2025 09:20:07"),
        _appt(created_at="2025-03-14T09:20:07"),
    ),
    (
        "Unix time in milliseconds",
        _event(occurred_at=1741940813123),
        _event(occurred_at="2025-03-14T08:26:53.123Z"),
    ),
    (
        "Unix time in seconds, fractional (Jackson's Instant)",
        _event(occurred_at=1741940813.123456),
        _event(occurred_at="2025-03-14T08:26:53.123456Z"),
    ),
    ("Unix time 0 is a placeholder", _appt(appointment_at=0), _appt(appointment_at="0001-01-01T00:00:00Z")),
    (
        ".NET's older JSON date",
        _event(occurred_at="/Date(1741940813123+0100)/"),
        _event(occurred_at="2025-03-14T08:26:53.123Z"),
    ),
    (
        ".NET's older JSON date, escaped",
        _appt(created_at="\\/Date(1741940400000)\\/"),
        _appt(created_at="2025-03-14T08:20:00Z"),
    ),
    (
        ".NET's older JSON date for a vehicle date",
        _vehicle(apk_due_date="/Date(1551394800000)/"),  # 2019-02-28T23:00Z: 1 March in Amsterdam
        _vehicle(apk_due_date="2019-03-01"),
    ),
    ("no seconds", _appt(appointment_at="2026-01-03T09:05"), _appt(appointment_at="2026-01-03T09:05:00")),
    ("a year-first date, unpadded", _vehicle(apk_due_date="2019-3-1"), _vehicle(apk_due_date="2019-03-01")),
    ("a year-first date with slashes", _vehicle(apk_due_date="2019/03/01"), _vehicle(apk_due_date="2019-03-01")),
    ("a year-first date alone", _appt(appointment_at="2026/1/3"), _appt(appointment_at="2026-01-03T00:00:00")),
    ("a year-first timestamp", _appt(appointment_at="2026/01/03 9:30"), _appt(appointment_at="2026-01-03T09:30:00")),
    (
        "Java's ZonedDateTime",
        _event(occurred_at="2025-03-14T09:26:53+01:00[Europe/Amsterdam]"),
        _event(occurred_at="2025-03-14T09:26:53+01:00"),
    ),
    (
        "a decimal comma in the seconds",
        _event(occurred_at="2025-03-14T09:26:53,5+01:00"),
        _event(occurred_at="2025-03-14T09:26:53.5+01:00"),
    ),
    (
        "UTC for Z",
        _event(occurred_at="2025-03-14 08:26:53 UTC"),
        _event(occurred_at="2025-03-14T08:26:53Z"),
    ),
    ("whole euros the Dutch way", _intervention(0, price="€ 49,-"), _intervention(0, price="49")),
    ("spaced thousands", _intervention(0, price="1 234,56"), _intervention(0, price="1234.56")),
    ("no-break spaced thousands", _intervention(0, price="12\u00a0345"), _intervention(0, price="12345")),
    ("a date alone", _appt(appointment_at="2026-01-03"), _appt(appointment_at="2026-01-03T00:00:00")),
    ("a Dutch date alone", _appt(created_at="3-1-2026"), _appt(created_at="2026-01-03T00:00:00")),
    (
        "an offset without its colon, or of hours only",
        _event(occurred_at="2025-03-14T09:26:53+01"),
        _event(occurred_at="2025-03-14T09:26:53+01:00"),
    ),
    (
        "a space before the offset",
        _event(occurred_at="2025-03-14 09:26:53 Z"),
        _event(occurred_at="2025-03-14T09:26:53Z"),
    ),
    (
        "an HTTP date",
        _event(occurred_at="Fri, 14 Mar 2025 08:26:53 GMT"),
        _event(occurred_at="2025-03-14T08:26:53Z"),
    ),
    (
        "event id in braces",
        lambda d: d.update(event_id="{" + d["event_id"] + "}"),
        lambda d: None,
    ),
    (
        "event id as a URN",
        lambda d: d.update(event_id="urn:uuid:" + d["event_id"].lower()),
        lambda d: d.update(event_id=d["event_id"].lower()),
    ),
]


@pytest.mark.parametrize(("name", "sent", "meant"), SAME, ids=[s[0] for s in SAME])
def test_a_producers_form_is_read_as_the_contracts(name: str, sent: Change, meant: Change) -> None:
    assert _decoded(sent) == _decoded(meant), name


def test_every_field_of_the_refused_kind_is_repaired_at_once() -> None:
    def numbers(d: dict[str, Any]) -> None:
        for n, person in enumerate(d["appointment"]["persons"]):
            person.update(id=100 + n, house_number=n + 1, phone_business=201234567)
        d["appointment"]["vehicle"].update(driver_id=100, owner_id=101, contractor_id=102)

    def texts(d: dict[str, Any]) -> None:
        for n, person in enumerate(d["appointment"]["persons"]):
            person.update(id=str(100 + n), house_number=str(n + 1), phone_business="201234567")
        d["appointment"]["vehicle"].update(driver_id="100", owner_id="101", contractor_id="102")

    assert _decoded(numbers) == _decoded(texts)


def test_prices_keep_every_digit_through_a_repair() -> None:
    def sent(d: dict[str, Any]) -> None:
        d["appointment"]["waiting_customer"] = "ja"  # makes the decoder refuse, and repair, the event
        d["appointment"]["interventions"][1]["price"] = Decimal("0.1000000000000000055511151231257827")

    doc = copy.deepcopy(RICH)
    sent(doc)
    value = json.dumps(doc, default=str).replace(
        '"0.1000000000000000055511151231257827"', "0.1000000000000000055511151231257827"
    )
    event = decode(value.encode())
    assert isinstance(event, AppointmentUpserted)
    assert event.appointment.interventions[1].price == Decimal("0.1000000000000000055511151231257827")


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        (
            "slashes: month-first is as likely",
            _vehicle(apk_due_date="01/03/2019"),
            "vehicle.apk_due_date: expected an ISO date",
        ),
        ("no such day", _vehicle(apk_due_date="31-02-2019"), "vehicle.apk_due_date: expected an ISO date"),
        (
            "a date alone for occurred_at: no offset",
            _event(occurred_at="2025-03-14"),
            "occurred_at: expected an RFC 3339 timestamp with offset",
        ),
        (
            "a Dutch occurred_at has no offset",
            _event(occurred_at="14-3-2025 9:26"),
            "occurred_at: expected an RFC 3339 timestamp with offset",
        ),
        (
            "a flag that is no flag",
            _appt(waiting_customer="misschien"),
            "waiting_customer: expected a boolean, got a string",
        ),
        ("a flag of 2", _appt(waiting_customer=2), "waiting_customer: expected a boolean, got an integer"),
        ("text as a float", _person(0, house_number=12.5), "house_number: expected a string or null, got a number"),
        ("text as a boolean", _person(0, house_number=True), "house_number: expected a string or null, got a boolean"),
        ("a required id null", _person(0, id=None), "persons[0].id: expected a string, got null"),
        ("a required timestamp empty", _appt(created_at=""), "created_at: expected a timestamp, got null"),
        ("schema version as text", _event(schema_version="1"), "schema_version: expected an integer"),
        ("an ambiguous price", _intervention(0, price="1,234"), "interventions[0].price: expected a decimal number"),
        (
            "a zone id without an offset",
            _event(occurred_at="2025-03-14T09:26:53[Europe/Amsterdam]"),
            "occurred_at: expected an RFC 3339 timestamp",
        ),
        (
            "spaces that are no thousands",
            _intervention(0, price="1 23,45"),
            "interventions[0].price: expected a decimal number",
        ),
        ("braces around no uuid", lambda d: d.update(event_id="{not-a-uuid}"), "event_id: expected a UUID"),
    ],
)
def test_what_stays_ambiguous_stays_a_contract_error(name: str, change: Change, reason: str) -> None:
    with pytest.raises(NotV1) as info:
        _decoded(change)
    assert reason in str(info.value), name


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("", None),
        (" ", None),
        ("29-2-2024", "2024-02-29"),
        ("29-2-2023", "keep"),
        ("2019-03-01T00:00:00", "2019-03-01"),
        ("x", "keep"),
        (True, "keep"),
    ],
)
def test_as_date(value: Any, read: str | None) -> None:
    out = as_date(value)
    assert (out if isinstance(out, str) or out is None else "keep") == read


def test_as_bool_and_as_timestamp_leave_what_they_do_not_read() -> None:
    assert [as_bool(v) for v in (None, 0, 1, " JA ", "nee", "")] == [False, False, True, True, False, False]
    assert as_bool(2) is as_bool("?") is as_bool(1.0)
    assert as_timestamp(10**30) is as_timestamp("gisteren") is as_timestamp(None)
    assert as_timestamp(-1) == "1969-12-31T23:59:59Z"
    assert dt.datetime.fromisoformat(as_timestamp(10**11)) == dt.datetime(1973, 3, 3, 9, 46, 40, tzinfo=dt.UTC)


# Any value in a field the repairs read: an event, or a refusal naming the path and never the value.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.from_regex(r"\A[0-9]{1,2}[-./][0-9]{1,2}[-./][0-9]{2,4}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?\Z"),
    st.lists(st.integers(), max_size=2),
)
FIELDS = [
    ("appointment", "waiting_customer"),
    ("appointment", "appointment_at"),
    ("appointment", "created_at"),
    ("appointment", "interventions"),
    ("appointment", "wo_number"),
    ("vehicle", "apk_due_date"),
    ("vehicle", "driver_id"),
    ("person", "house_number"),
    ("person", "id"),
    ("intervention", "title"),
    ("intervention", "price"),
    ("event", "occurred_at"),
    ("event", "event_id"),
]


def _place(doc: dict[str, Any], where: str) -> dict[str, Any]:
    appt: dict[str, Any] = doc["appointment"]
    places = {"event": doc, "appointment": appt, "vehicle": appt["vehicle"], "person": appt["persons"][0]}
    found: dict[str, Any] = places.get(where) or appt["interventions"][0]
    return found


@given(field=st.sampled_from(FIELDS), value=ODD)
def test_any_value_is_read_or_refused_with_its_path_only(field: tuple[str, str], value: Any) -> None:
    doc = copy.deepcopy(RICH)
    _place(doc, field[0])[field[1]] = value
    message = _refusal(json.dumps(doc).encode())
    if message is None:
        return
    assert message.startswith("$.")
    if isinstance(value, str) and len(value.strip()) >= 8:  # shorter ones may be words of any message
        assert value not in message


def _refusal(value: bytes) -> str | None:
    """The contract error for ``value``, or None when it decodes; a JSON value is never "not JSON"."""
    try:
        decode(value)
    except NotV1 as exc:
        return str(exc)
    return None
