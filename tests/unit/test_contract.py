"""The v1 contract: decoder behaviour, value-free error messages, and the JSON Schema in step with the Structs."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas.contract import AppointmentDeleted, AppointmentUpserted, record_key
from schemas.decoder import NotJson, NotV1, contract_reason, decode, json_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*.json"))
INVALID = sorted((SCHEMAS / "examples" / "invalid").glob("*.json"))
VALIDATOR = jsonschema.Draft202012Validator(json_schema(), format_checker=jsonschema.FormatChecker())


def _reason(example: Path) -> str:
    """The reason the worker gives, as written next to the example (tests/unit/test_contract_examples.py)."""
    lines = example.with_suffix(".reason.txt").read_text(encoding="utf-8").splitlines()
    return next(line.removeprefix("dlq.error.message: ") for line in lines if line.startswith("dlq.error.message: "))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _rich() -> dict[str, Any]:
    return _load(SCHEMAS / "examples" / "upsert-rich.json")  # type: ignore[no-any-return]


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def _message_or_none(doc: Any) -> str | None:
    try:
        decode(_encode(doc))
    except NotV1 as exc:
        return str(exc)
    return None


def _contract_error(doc: Any) -> str:
    with pytest.raises(NotV1) as info:
        decode(_encode(doc))
    return str(info.value)


# --- the checked-in schema and the examples -------------------------------------------------------------------


def test_checked_in_schema_is_generated_from_the_structs() -> None:
    checked_in = (SCHEMAS / "carsys-event.v1.schema.json").read_text(encoding="utf-8")
    assert checked_in == schema_text(), (
        "regenerate: .venv/bin/carsys-ingest schema > schemas/carsys-event.v1.schema.json"
    )


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_there_are_examples_of_every_kind() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"upsert-rich.json", "upsert-minimal.json", "delete.json"} <= names
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_for_schema_and_decoder(path: Path) -> None:
    VALIDATOR.validate(_load(path))
    decode(path.read_bytes())


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_example_is_rejected_by_schema_and_decoder(path: Path) -> None:
    assert not VALIDATOR.is_valid(_load(path))
    with pytest.raises(NotV1) as info:
        decode(path.read_bytes())
    assert str(info.value) == _reason(path)


def test_rich_example_has_three_persons_with_all_fields() -> None:
    persons = _rich()["appointment"]["persons"]
    assert len(persons) == 3
    assert all(len(p) == 15 and all(v is not None for k, v in p.items() if k != "company_name") for p in persons)


BROKEN: list[tuple[str, Any]] = [
    ("missing event_id", lambda d: d.pop("event_id")),
    ("schema_version 0", lambda d: d.update(schema_version=0)),
    ("schema_version as string", lambda d: d.update(schema_version="1")),
    ("empty dealer_id", lambda d: d.update(dealer_id="")),
    ("whitespace-only dealer_id", lambda d: d.update(dealer_id=" \t ")),
    ("dealer_id with a slash", lambda d: d.update(dealer_id="dealer/x")),
    ("dealer_id with a space inside", lambda d: d.update(dealer_id="dealer x")),
    ("dealer_id with a control character", lambda d: d.update(dealer_id="dealer\x00")),
    ("dealer_id with a non-breaking space around", lambda d: d.update(dealer_id="\u00a0dealer")),
    ("dealer_id with a non-ASCII letter", lambda d: d.update(dealer_id="garage-m\u00fcller")),
    ("dealer_id starting with a dash", lambda d: d.update(dealer_id="-")),
    ("waiting_customer as string", lambda d: d["appointment"].update(waiting_customer="misschien")),
    ("vehicle as list", lambda d: d["appointment"].update(vehicle=[])),
    ("person without id", lambda d: d["appointment"]["persons"][0].pop("id")),
    ("intervention without title", lambda d: d["appointment"]["interventions"][0].pop("title")),
    ("price NaN string", lambda d: d["appointment"]["interventions"][0].update(price="NaN")),
    ("date with slashes, day or month first", lambda d: d["appointment"]["vehicle"].update(apk_due_date="05/02/2025")),
    ("created_at not a timestamp", lambda d: d["appointment"].update(created_at="gisteren")),
    ("appointment missing", lambda d: d.pop("appointment")),
]


@pytest.mark.parametrize(("name", "breaks"), BROKEN, ids=[b[0] for b in BROKEN])
def test_schema_and_decoder_reject_broken_events(name: str, breaks: Any) -> None:
    doc = _rich()
    breaks(doc)
    assert not VALIDATOR.is_valid(doc), name
    with pytest.raises(NotV1):
        decode(_encode(doc))


# Dealer ids: the schema's pattern and the Struct's constraint accept exactly the same strings.
DEALER_ID_CHARS = st.sampled_from(list("aZ09._:-/ \t\r\n\x00\x0b\u00a0\u00fc\ufeff@+"))


@given(dealer_id=st.text(DEALER_ID_CHARS, max_size=66))
def test_schema_and_decoder_agree_on_dealer_ids(dealer_id: str) -> None:
    doc = copy.deepcopy(_RICH)
    doc["dealer_id"] = dealer_id
    assert VALIDATOR.is_valid(doc) == (_message_or_none(doc) is None)


@pytest.mark.parametrize("dealer_id", ["dealer-x", "Dealer_X.2", "carsys:1234", "7", "d" * 64])
def test_dealer_ids_as_real_dealers_have_them_are_valid(dealer_id: str) -> None:
    doc = copy.deepcopy(_RICH)
    doc["dealer_id"] = dealer_id
    assert VALIDATOR.is_valid(doc)
    assert decode(_encode(doc)).dealer_id == dealer_id


def test_a_padded_dealer_id_is_accepted_and_keyed_trimmed() -> None:
    doc = copy.deepcopy(_RICH)
    doc["dealer_id"] = " \tdealer-x \r\n"
    assert VALIDATOR.is_valid(doc)
    assert record_key(decode(_encode(doc))) == b"dealer-x/2025-004711"


# --- decoder behaviour ---------------------------------------------------------------------------------------


def test_decodes_upsert_and_delete() -> None:
    upsert = decode((SCHEMAS / "examples" / "upsert-rich.json").read_bytes())
    assert isinstance(upsert, AppointmentUpserted)
    assert len(upsert.appointment.persons) == 3
    assert record_key(upsert) == b"autobedrijf-de-vries/2025-004711"  # dms_number " 2025-004711 " trimmed
    delete = decode((SCHEMAS / "examples" / "delete.json").read_bytes())
    assert isinstance(delete, AppointmentDeleted)
    assert record_key(delete) == b"autobedrijf-de-vries/2025-004711"


def test_unknown_fields_are_ignored_everywhere() -> None:
    doc = _rich()
    doc["source"] = "carsys-2"
    doc["appointment"]["mileage_km"] = 120000
    doc["appointment"]["vehicle"]["colour"] = "blauw"
    doc["appointment"]["persons"][0]["iban"] = "NL00BANK0123456789"
    doc["appointment"]["interventions"][0]["vat"] = "21"
    assert decode(_encode(doc)) == decode(_encode(_rich()))
    assert VALIDATOR.is_valid(doc)


def test_price_as_number_and_as_string_is_an_exact_decimal() -> None:
    event = decode((SCHEMAS / "examples" / "upsert-rich.json").read_bytes())
    assert isinstance(event, AppointmentUpserted)
    prices = [i.price for i in event.appointment.interventions]
    assert [str(p) if p is not None else None for p in prices] == ["49.95", "289.00", None]


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_prices_are_contract_errors(price: str) -> None:
    doc = _rich()
    doc["appointment"]["interventions"][1]["price"] = price
    assert _contract_error(doc) == "$.appointment.interventions[1].price: expected a finite decimal number"


def test_local_timestamps_are_allowed_in_the_appointment_only() -> None:
    doc = _rich()
    doc["appointment"]["created_at"] = "2025-03-14T09:20:00"
    decode(_encode(doc))
    doc["occurred_at"] = "2025-03-14T09:20:00"
    assert _contract_error(doc).startswith("$.occurred_at: expected an RFC 3339 timestamp with offset")


@pytest.mark.parametrize("version", [2, 3, 99])
def test_newer_schema_version_is_a_contract_error_even_when_the_shape_changed(version: int) -> None:
    doc = {"event_id": "x", "event_type": "appointment.rescheduled", "schema_version": version, "payload": {}}
    assert _contract_error(doc) == "$.schema_version: unsupported schema version (this worker reads version 1)"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "not valid JSON (input data was truncated)"),
        (b"{", "not valid JSON (input data was truncated)"),
        (b"{} x", "not valid JSON (trailing characters (byte 4))"),
        (b'{"a": "\xff"}', "not valid UTF-8 (at byte 7)"),
        (b"\xfe\xff{}", "not valid UTF-8 (at byte 0)"),
    ],
)
def test_decode_errors(value: bytes, reason: str) -> None:
    with pytest.raises(NotJson) as info:
        decode(value)
    assert str(info.value) == reason


def test_a_leading_utf8_byte_order_mark_is_ignored_and_only_there() -> None:
    value = _encode(_rich())
    assert decode(b"\xef\xbb\xbf" + value) == decode(value)
    with pytest.raises(NotJson, match="invalid character"):
        decode(b" \xef\xbb\xbf" + value)
    with pytest.raises(NotJson, match="invalid character"):
        decode(b"\xef\xbb\xbf\xef\xbb\xbf" + value)


@pytest.mark.parametrize(
    ("written", "day"),
    [
        ("2019-03-01T00:00:00", "2019-03-01"),  # a .NET DateTime
        ("2019-03-01T00:00:00.0000000", "2019-03-01"),
        ("2019-03-01 14:35:00", "2019-03-01"),
        ("2019-02-28T23:00:00Z", "2019-03-01"),  # Amsterdam's midnight in UTC
        ("2019-03-01T00:00:00+01:00", "2019-03-01"),
        ("2019-03-01T00:30:00+05:00", "2019-02-28"),
        ("0001-01-01T00:00:00", "0001-01-01"),  # default(DateTime): a placeholder, nulled by the normaliser
        ("0001-01-01T00:00:00+01:00", "0001-01-01"),
    ],
)
def test_the_vehicle_dates_are_read_from_timestamps_too(written: str, day: str) -> None:
    doc = _rich()
    doc["appointment"]["vehicle"]["first_registration_date"] = written
    doc["appointment"]["vehicle"]["apk_due_date"] = written
    event = decode(_encode(doc))
    assert isinstance(event, AppointmentUpserted)
    assert event.appointment.vehicle is not None
    assert event.appointment.vehicle.first_registration_date == dt.date.fromisoformat(day)
    assert event.appointment.vehicle.apk_due_date == dt.date.fromisoformat(day)


def test_a_date_that_is_no_timestamp_either_is_still_a_contract_error_and_so_is_the_next_one() -> None:
    doc = _rich()
    doc["appointment"]["vehicle"]["first_registration_date"] = "01/03/2019"  # month-first in en-US
    assert _contract_error(doc) == "$.appointment.vehicle.first_registration_date: expected an ISO date (YYYY-MM-DD)"
    doc["appointment"]["vehicle"]["first_registration_date"] = "2019-03-01T00:00:00"
    doc["appointment"]["vehicle"]["apk_due_date"] = "31/12/2026"
    assert _contract_error(doc) == "$.appointment.vehicle.apk_due_date: expected an ISO date (YYYY-MM-DD)"
    doc["appointment"]["vehicle"]["apk_due_date"] = "2026-12-31T00:00:00"
    doc["appointment"]["waiting_customer"] = "misschien"
    assert _contract_error(doc) == "$.appointment.waiting_customer: expected a boolean, got a string"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("49,95", "49.95"),
        ("1.234,56", "1234.56"),
        ("-12,5", "-12.5"),
        ("€ 49,95", "49.95"),
        ("49,95 EUR", "49.95"),
        ("€49.95", "49.95"),
        ("eur 1,234.50", "1234.50"),
    ],
)
def test_prices_formatted_for_dutch_readers_are_read(written: str, read: str) -> None:
    doc = _rich()
    for intervention in doc["appointment"]["interventions"]:
        intervention["price"] = written
    event = decode(_encode(doc))
    assert isinstance(event, AppointmentUpserted)
    assert {i.price for i in event.appointment.interventions} == {Decimal(read)}


@pytest.mark.parametrize("written", ["1,234", "1.234,567", "49,95 USD", "€", "op aanvraag", "12,3,4", "1.23,45"])
def test_ambiguous_or_foreign_prices_stay_contract_errors(written: str) -> None:
    doc = _rich()
    doc["appointment"]["interventions"][0]["price"] = written
    assert _contract_error(doc) == "$.appointment.interventions[0].price: expected a decimal number"


@given(price=st.one_of(st.text(max_size=16), st.from_regex(r"\A[€ E]{0,2}-?[0-9.,]{1,12} ?(EUR|€)?\Z")), day=st.text())
def test_any_price_or_vehicle_date_is_read_or_refused_with_one_of_two_reasons(price: str, day: str) -> None:
    doc = _rich()
    doc["appointment"]["interventions"][1]["price"] = price
    doc["appointment"]["vehicle"]["first_registration_date"] = day
    reason = _message_or_none(doc)
    assert reason in {
        None,
        "$.appointment.interventions[1].price: expected a decimal number",
        "$.appointment.interventions[1].price: expected a finite decimal number",
        "$.appointment.vehicle.first_registration_date: expected an ISO date (YYYY-MM-DD)",
    }


def test_a_date_and_a_price_repaired_in_one_event() -> None:
    doc = _rich()
    doc["appointment"]["vehicle"]["apk_due_date"] = "2026-12-31T00:00:00"
    doc["appointment"]["interventions"][-1]["price"] = "12,50"
    event = decode(_encode(doc))
    assert isinstance(event, AppointmentUpserted)
    assert event.appointment.vehicle is not None
    assert event.appointment.vehicle.apk_due_date == dt.date(2026, 12, 31)
    assert event.appointment.interventions[-1].price == Decimal("12.50")


def test_an_event_sent_as_a_json_string_of_its_json_is_read_once_unwrapped() -> None:
    value = _encode(_rich())
    assert decode(json.dumps(value.decode()).encode()) == decode(value)
    assert decode(b"\xef\xbb\xbf" + json.dumps(" " + value.decode()).encode()) == decode(value)
    for other in (json.dumps(json.dumps(value.decode())), '"appointment.upserted"', '"[1]"'):
        with pytest.raises(NotV1, match=r"^\$: expected an object, got a string$"):
            decode(other.encode())
    for broken in (b'"{' + value[1:], b'"\\ud800{"'):  # an unterminated string; a lone surrogate
        with pytest.raises(NotJson):
            decode(broken)


def test_the_confluent_wire_format_header_is_skipped() -> None:
    value = _encode(_rich())
    for schema_id in (b"\x00\x00\x00\x01", b"\x00\x01\x86\xa0", b"\x00\x00\x00{"):
        assert decode(b"\x00" + schema_id + value) == decode(value)
    with pytest.raises(NotJson):
        decode(b"\x00" + value)  # a zero byte alone is no header
    with pytest.raises(NotJson):
        decode(b"\x00\x00\x00\x00\x01[" + value + b"]")  # the contract's value is an object


def test_not_an_object_is_a_contract_error() -> None:
    assert _contract_error([1, 2]) == "$: expected an object, got an array"


def test_errors_are_not_chained_to_msgspec_messages() -> None:
    # msgspec's own message may quote the value; a chained cause would carry it into tracebacks in the logs.
    doc = _rich()
    doc["event_type"] = "secret-jan@example.nl"
    with pytest.raises(NotV1) as info:
        decode(_encode(doc))
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Invalid value 'jan@example.nl' - at `$.event_type`", "$.event_type: unknown event type"),
        ("Invalid enum value 7 - at `$.schema_version`", "$.schema_version: unsupported schema version"),
        ("Something new 'Jan de Vries' - at `$.appointment.persons[0].last_name`", "invalid value"),
        ("Expected `str | null`, got `int` - at `$.x`", "$.x: expected a string or null, got an integer"),
        ("Expected `str` of length >= 1 - at `$.appointment.dms_number`", "must not be empty"),
        ("Object missing required field `title` - at `$.appointment.interventions[2]`", "[2].title: required"),
    ],
)
def test_contract_reason_translation(message: str, reason: str) -> None:
    translated = contract_reason(message)
    assert reason in translated
    assert "'" not in translated


PERSONAL = st.text(min_size=3, max_size=30).filter(lambda s: s.strip() and "$" not in s)


@given(value=PERSONAL, field=st.sampled_from(["event_type", "occurred_at", "event_id", "dealer_id", "schema_version"]))
def test_contract_errors_never_quote_the_value(value: str, field: str) -> None:
    doc = copy.deepcopy(_RICH)
    doc[field] = value if field != "dealer_id" else value * 30
    message = _message_or_none(doc)
    if message is not None:
        # A value that is a word of the message itself (e.g. "int" in "appointment") proves nothing either way.
        neutral = copy.deepcopy(_RICH)
        neutral[field] = "\u00a7" * 40
        assume(value not in (_message_or_none(neutral) or ""))
        assert value not in message
        assert message.startswith(f"$.{field}: ")


@given(value=st.one_of(st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=2), st.booleans()))
def test_wrong_types_inside_persons_never_leak(value: Any) -> None:
    doc = copy.deepcopy(_RICH)
    doc["appointment"]["persons"][1]["email_private"] = value
    doc["appointment"]["vehicle"]["first_registration_date"] = value
    message = _message_or_none(doc)
    if message is None:  # an ISO date string fits both fields
        return
    assert message.startswith("$.appointment.")
    if isinstance(value, str) and len(value) > 2:
        assert value not in message.split(": ", 1)[1]  # the path is ours ('app' is in '$.appointment')


@given(st.binary(max_size=200))
def test_decode_raises_only_its_own_errors_on_any_bytes(value: bytes) -> None:
    with contextlib.suppress(NotJson, NotV1):
        decode(value)


_RICH = _rich()
