"""The one decoder of Carsys event values, and the JSON Schema generated from the contract Structs.

Every message raised from here ends up in logs and dead-letter headers, so it names the JSON path and the
reason and never quotes a value from the record (AVG/GDPR). msgspec's own messages sometimes do
(``Invalid value 'x'``), which is why they are translated here instead of passed on, and why the original
exception is never chained.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any, Final

import msgspec

from schemas.contract import SCHEMA_VERSION, AppointmentUpserted, Event
from schemas.repairs import repaired

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
    """The JSON of a record value: without a Confluent wire-format header or a leading byte order mark, and the
    object inside when the value is that object's JSON once more, as a string."""
    if value[:1] == b"\x00" and value[_CONFLUENT_HEADER_BYTES : _CONFLUENT_HEADER_BYTES + 1] == b"{":
        return value[_CONFLUENT_HEADER_BYTES:]
    value = without_bom(value)
    return _unquoted(value) if value[:1] == b'"' else value


# A JSON serializer handed a string that is already JSON (Spring Kafka's JsonSerializer given a String, a
# JSON.stringify too many) sends the event as one JSON string. An object inside a string is no event any other way,
# so the object is read; any other string stays a contract error.
def _unquoted(value: bytes) -> bytes:
    try:
        inner = msgspec.json.decode(value, type=str)
        return inner.encode() if inner.lstrip(" \t\r\n")[:1] == "{" else value
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeEncodeError):  # "\ud800": no UTF-8 either
        return value


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


def _decode_repaired(value: bytes, message: str) -> Event:
    """``value``, which the decoder refused with ``message``, decoded after the repairs the refusals call for
    (schemas/repairs.py); what no repair reads is refused with the last refusal's reason."""
    return _repairing(value, message)[0]


def _repairing(value: bytes, message: str, done: tuple[str, ...] = ()) -> tuple[Event, tuple[str, ...]]:
    # Each repair rewrites every field of its kind at once and reports no change the second time, so this ends.
    fixed = repaired(value, message)
    if fixed is None:
        raise _rejected(value, message) from None
    done = (*done, message)
    try:
        return _DECODER.decode(fixed), done
    except msgspec.ValidationError as exc:
        return _repairing(fixed, str(exc), done)


def repairs_in(value: bytes) -> tuple[str, ...]:
    """What the worker reads in ``value`` only after a repair (schemas/repairs.py), one contract error per kind of
    repair, as the decoder would name it without the repairs: ``--strict`` reports them so that a producer learns
    the contract's own forms. Empty for a value that decodes as it is, or not at all."""
    value = json_text(value)
    try:
        _DECODER.decode(value)
    except msgspec.ValidationError as exc:
        with contextlib.suppress(Rejected):
            return tuple(contract_reason(message) for message in _repairing(value, str(exc))[1])
    except msgspec.DecodeError:
        pass
    return ()


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
