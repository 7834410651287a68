"""The one decoder of Carsys event values, and the JSON Schema generated from the contract Structs.

Every message raised from here ends up in logs and dead-letter headers, so it names the JSON path and the
reason and never quotes a value from the record (AVG/GDPR). msgspec's own messages sometimes do
(``Invalid value 'x'``), which is why they are translated here instead of passed on, and why the original
exception is never chained.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from schemas.contract import SCHEMA_VERSION, AppointmentUpserted, Event

SCHEMA_ID: Final = "https://carsys-ingest.invalid/schemas/carsys-event.v1.schema.json"

_DECODER: Final = msgspec.json.Decoder(Event)


class Rejected(Exception):
    """The value is not a v1 event. The message names the JSON path and the reason, never a value."""


class NotJson(Rejected):
    """The value is not UTF-8 JSON at all."""


class NotV1(Rejected):
    """Valid JSON that breaks the v1 contract."""


class _Envelope(msgspec.Struct):
    """Just enough of any version's envelope to tell "newer contract" apart from "broken v1 event"."""

    schema_version: Any = None


_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)


# RFC 8259 forbids a byte order mark before JSON but lets a parser ignore one. Windows and .NET tools write it (a
# StreamWriter with Encoding.UTF8), and refusing it would send every event of such a producer to the dead letters.
_UTF8_BOM = b"\xef\xbb\xbf"


def without_bom(value: bytes) -> bytes:
    """``value`` without a leading UTF-8 byte order mark."""
    return value[len(_UTF8_BOM) :] if value.startswith(_UTF8_BOM) else value


# Confluent's serializers (JSON Schema among them) put a zero byte and a 4-byte schema id before the JSON: a
# producer team used to Schema Registry sends it by habit. No JSON text begins with a zero byte, so it cannot be
# mistaken; the id is ignored (this worker uses no registry, the contract is the schema).
_CONFLUENT_HEADER_BYTES = 5


def json_text(value: bytes) -> bytes:
    """The JSON of a record value: without a Confluent wire-format header or a leading byte order mark."""
    if value[:1] == b"\x00" and value[_CONFLUENT_HEADER_BYTES : _CONFLUENT_HEADER_BYTES + 1] == b"{":
        return value[_CONFLUENT_HEADER_BYTES:]
    return without_bom(value)


def decode(value: bytes) -> Event:
    """Decode one record value. Raises NotJson (not UTF-8 JSON) or NotV1 (JSON, but not a v1 event)."""
    value = json_text(value)
    _require_utf8(value)
    try:
        event: Event = _DECODER.decode(value)
    except msgspec.ValidationError as exc:
        event = _decode_repaired(value, str(exc))
    except msgspec.DecodeError as exc:
        raise NotJson(f"not valid JSON ({_json_reason(str(exc))})") from None
    _require_finite_prices(event)
    return event


# Forms real producers send that the contract reads too, repaired only after the decoder refused a value (so a
# producer sending the contract's own forms pays nothing; one sending these pays a second decode per event):
#
# - .NET had no date-only type before .NET 6: a DateTime serialises a date as 2019-03-01T00:00:00 (default(DateTime)
#   as 0001-01-01T00:00:00). The vehicle's dates are read from a timestamp as its calendar date, in
#   Europe/Amsterdam when it has an offset (2019-02-28T23:00:00Z is 1 March there).
# - A price formatted for Dutch readers (a string built under the nl-NL culture): "49,95", "1.234,56", "€ 49,95".
#   Only unambiguous forms: "1,234" (a thousand, or one and a bit?) stays a contract error.
_VEHICLE_DATES: Final = ("first_registration_date", "apk_due_date")
_AMSTERDAM: Final = ZoneInfo("Europe/Amsterdam")
_MONEY: Final = re.compile(r"(?P<cur>€|EUR)?\s*(?P<n>-?[0-9][0-9.,]*)\s*(?P<cur2>€|EUR)?", re.IGNORECASE)
_DECIMAL_COMMA: Final = re.compile(r"-?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+),[0-9]{1,2}")
_THOUSANDS_COMMA: Final = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+\.[0-9]{1,2}")
_PLAIN: Final = re.compile(r"-?[0-9]+(?:\.[0-9]{1,2})?")


def _calendar_date(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        moment = msgspec.convert(value, dt.datetime)
    except msgspec.ValidationError:
        return None
    if moment.tzinfo is not None:
        # At the calendar's ends (0001-01-01T00:00:00+01:00) there is no Amsterdam date: a placeholder, read as written.
        with contextlib.suppress(OverflowError):
            moment = moment.astimezone(_AMSTERDAM)
    return moment.date().isoformat()


def _decimal(value: object) -> str | None:
    found = _MONEY.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        return None
    number = found["n"]
    if _DECIMAL_COMMA.fullmatch(number):
        return number.replace(".", "").replace(",", ".")
    if _THOUSANDS_COMMA.fullmatch(number):
        return number.replace(",", "")
    if (found["cur"] or found["cur2"]) and _PLAIN.fullmatch(number):
        return number
    return None


def _repair_dates(doc: Any) -> bool:
    vehicle = doc["appointment"]["vehicle"]
    found = {
        name: day
        for name in _VEHICLE_DATES
        if (day := _calendar_date(vehicle.get(name))) not in (None, vehicle.get(name))
    }
    vehicle.update(found)
    return bool(found)


def _repair_prices(doc: Any) -> bool:
    changed = False
    for intervention in doc["appointment"]["interventions"]:
        number = _decimal(intervention.get("price"))
        if number not in (None, intervention.get("price")):
            intervention["price"] = number
            changed = True
    return changed


_REPAIRS: Final[tuple[tuple[re.Pattern[str], Callable[[Any], bool]], ...]] = (
    (re.compile(r"^Invalid RFC3339 encoded date - at `\$\.appointment\.vehicle\.[a-z_]+`$"), _repair_dates),
    (re.compile(r"^Invalid decimal string - at `\$\.appointment\.interventions\[\d+\]\.price`$"), _repair_prices),
)


def _decode_repaired(value: bytes, message: str) -> Event:
    """``value``, which the decoder refused with ``message``, decoded after the repair that message calls for."""
    repair = next((r for pattern, r in _REPAIRS if pattern.match(message)), None)
    fixed = None if repair is None else _repaired(value, repair)
    if fixed is None:
        raise _rejected(value, message) from None
    try:
        event: Event = _DECODER.decode(fixed)
    except msgspec.ValidationError as exc:
        # Another repair may apply further on. Each changes all it can at once and reports no change the second
        # time, so this ends.
        return _decode_repaired(fixed, str(exc))
    return event


def _repaired(value: bytes, repair: Callable[[Any], bool]) -> bytes | None:
    try:
        doc = msgspec.json.decode(value)
        return msgspec.json.encode(doc) if repair(doc) else None
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError, RecursionError):  # not the shape repaired
        return None


def _rejected(value: bytes, message: str) -> Rejected:
    # msgspec validates while it parses, so '{} x' fails validation before the trailing garbage is seen:
    # only a value that is JSON throughout is a contract error.
    try:
        msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        return NotJson(f"not valid JSON ({_json_reason(str(exc))})")
    return NotV1(_newer_version(value) or contract_reason(message))


def _require_utf8(value: bytes) -> None:
    # msgspec skips unknown fields without validating their UTF-8, so check the whole value up front.
    if value.isascii():
        return
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJson(f"not valid UTF-8 (at byte {exc.start})") from None


def _json_reason(message: str) -> str:
    # msgspec's JSON syntax messages carry a byte offset, never content; keep them but lowercase the start.
    reason = message.removeprefix("JSON is malformed: ")
    return reason[:1].lower() + reason[1:]


def _newer_version(value: bytes) -> str | None:
    try:
        version = _ENVELOPE_DECODER.decode(value).schema_version
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return f"$.schema_version: unsupported schema version (this worker reads version {SCHEMA_VERSION})"
    return None


def _require_finite_prices(event: Event) -> None:
    if not isinstance(event, AppointmentUpserted):
        return
    for i, intervention in enumerate(event.appointment.interventions):
        if intervention.price is not None and not intervention.price.is_finite():
            raise NotV1(f"$.appointment.interventions[{i}].price: expected a finite decimal number")


_JSON_TYPES: Final = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "decimal": "a decimal number",
    "bool": "a boolean",
    "null": "null",
    "object": "an object",
    "array": "an array",
    "datetime": "a timestamp",
    "date": "a date",
}

_FIELD_REASONS: Final = {
    "$.event_id": "expected a UUID",
    "$.event_type": "unknown event type (expected appointment.upserted or appointment.deleted)",
    "$.schema_version": f"unsupported schema version (this worker reads version {SCHEMA_VERSION})",
    "$.dealer_id": "expected a dealer id: letters, digits and . _ - : beginning with a letter or digit",
}


def _type_names(spec: str) -> str:
    names = [_JSON_TYPES.get(part.strip(), "a value") for part in spec.split("|")]
    return " or ".join(dict.fromkeys(names))


def _expected_type(m: re.Match[str]) -> str:
    return f"expected {_type_names(m['want'])}, got {_type_names(m['got'])}"


def _length(m: re.Match[str]) -> str:
    if m["op"] == ">=":
        return "must not be empty" if m["n"] == "1" else f"must be at least {m['n']} characters"
    return f"must be at most {m['n']} characters"


# (msgspec reason pattern, safe reason). Only type names and limits msgspec reports are reused, never values.
_REASONS: Final[tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...]] = (
    (re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$"), _expected_type),
    (re.compile(r"^Expected `str` of length (?P<op>[<>]=) (?P<n>\d+)$"), _length),
    (re.compile(r"^Invalid RFC3339 encoded date$"), lambda _: "expected an ISO date (YYYY-MM-DD)"),
    (re.compile(r"^Invalid RFC3339 encoded datetime$"), lambda _: "expected an RFC 3339 timestamp"),
    (
        re.compile(r"^Expected `datetime` with a timezone component$"),
        lambda _: "expected an RFC 3339 timestamp with offset (e.g. +01:00 or Z)",
    ),
    (re.compile(r"^Invalid decimal string$"), lambda _: "expected a decimal number"),
)

_MESSAGE: Final = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING: Final = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def contract_reason(message: str) -> str:
    """Translate a msgspec ValidationError message into ``"<json path>: <reason>"`` without any value."""
    m = _MESSAGE.match(message)
    reason, path = (m["reason"], m["path"] or "$") if m else (message, "$")
    missing = _MISSING.match(reason)
    if missing:
        return f"{path}.{missing['field']}: required field is missing"
    for pattern, safe in _REASONS:
        found = pattern.match(reason)
        if found:
            return f"{path}: {safe(found)}"
    # Whatever msgspec said is not known to be value-free: say only where.
    return f"{path}: {_FIELD_REASONS.get(path, 'invalid value')}"


def json_schema() -> dict[str, Any]:
    """The v1 JSON Schema, generated from the contract Structs (what ``carsys-ingest schema`` prints).

    Post-processed from msgspec's output so that standard validators report the failing field itself: the event
    types are ``if``/``then`` on ``event_type`` (a bare ``anyOf`` fails as a whole, naming no field), and an
    optional scalar is one schema with ``"type": [..., "null"]`` rather than an ``anyOf``. Dates and timestamps carry
    ``format``, which validators check only when told to (docs/contract.md).
    """
    schema = msgspec.json.schema(Event)
    _widen_decimals(schema)
    _inline_nullables(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Carsys appointment event, v1",
        "description": (
            "One Kafka record value (key '{dealer_id}/{dms_number}'). Unknown fields are ignored. "
            "Validate with format checks enabled (date, date-time)."
        ),
        **_tagged_union(schema),
    }


def _tagged_union(schema: dict[str, Any]) -> dict[str, Any]:
    # msgspec writes the tagged union as anyOf + an OpenAPI-style discriminator, which JSON Schema validators ignore.
    discriminator = schema.pop("discriminator")
    schema.pop("anyOf")
    tag: str = discriminator["propertyName"]
    mapping: dict[str, str] = discriminator["mapping"]
    return {
        "type": "object",
        "required": [tag],
        "properties": {tag: {"enum": list(mapping)}},
        "allOf": [
            {"if": {"properties": {tag: {"const": value}}, "required": [tag]}, "then": {"$ref": ref}}
            for value, ref in mapping.items()
        ],
        **schema,
    }


def _widen_decimals(node: Any) -> None:
    # msgspec publishes Decimal as a string; the contract also takes a JSON number (read exactly, not float).
    # "decimal" is no format JSON Schema defines (strict validators such as ajv refuse unknown formats): the pattern
    # says what a decimal string is.
    if isinstance(node, dict):
        if node.get("format") == "decimal":
            del node["format"]
            node["type"] = ["number", "string"]
        for child in node.values():
            _widen_decimals(child)
    elif isinstance(node, list):
        for child in node:
            _widen_decimals(child)


def _inline_nullables(node: Any) -> None:
    # {"anyOf": [{"type": "string", ...}, {"type": "null"}]} -> {"type": ["string", "null"], ...}: the same set of
    # values (pattern and format apply to strings only), but an error names the keyword that failed.
    if isinstance(node, list):
        for child in node:
            _inline_nullables(child)
        return
    if not isinstance(node, dict):
        return
    for child in node.values():
        _inline_nullables(child)
    options = node.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and options[1] == {"type": "null"}):
        return
    inner = options[0]
    if "type" not in inner or "$ref" in inner:
        return
    types = inner["type"] if isinstance(inner["type"], list) else [inner["type"]]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    node.clear()
    node.update({**inner, "type": [*types, "null"]}, **rest)


def schema_text() -> str:
    """The schema exactly as checked in at ``schemas/carsys-event.v1.schema.json``."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
