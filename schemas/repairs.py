"""Forms real producers send that the contract reads too: a value the decoder refused, written the way it is meant.

Pure. ``repaired(value, message)`` takes a record value msgspec refused with ``message`` and returns the value with
every field of the refused kind rewritten (all persons' house numbers at once, not one per decode), or None when no
repair applies. ``schemas.decoder.decode`` calls it only after a refusal, so a producer sending the contract's own
forms pays nothing; one sending these pays a second decode per kind of repair.

What is read, and why (docs/contract.md "What the worker also reads" is the producer's version):

- A JSON integer where the contract wants text (ids, DMS and WO numbers, house numbers, postcodes, phone numbers)
  is its decimal digits: serialisers write numeric database columns as numbers. Never a float or a boolean.
- ``null`` for a list (``interventions``, ``persons``) is an empty list (.NET leaves an unset list null), and for
  ``waiting_customer`` it is ``false``, the field's default. A null intervention title is an empty one.
- ``waiting_customer`` as ``"true"``/``"false"``, ``"ja"``/``"nee"``, ``"J"``/``"N"``, ``"Y"``/``"N"``,
  ``"yes"``/``"no"``, ``1``/``0`` or ``""``: the forms DMS exports use for a flag.
- An empty (or blank) string for an optional date, timestamp or price is null: how forms say "no value".
- Dates: a timestamp is its calendar date (.NET's ``DateTime`` writes ``2019-03-01T00:00:00``; with an offset, the
  date in Europe/Amsterdam), a Dutch date (``1-3-2019``, ``01-03-2019``, ``01.03.2019``, with or without a time, as
  ``DateTime.ToString()`` writes under nl-NL), year first (``2019-3-1``, ``2019/03/01``) and the RDW's
  ``20190301`` (also as a number). Never ``1/3/2019``: with slashes, month-first (en-US) is as likely as day-first.
- Timestamps: a Dutch one (``1-3-2026 10:30``: local time, as the contract reads a timestamp without an offset), a
  date alone (``2026-03-01``, ``1-3-2026``: midnight, local time; Carsys calls both the appointment's and its
  creation's a date), nearly RFC 3339 (no seconds, a space before the offset, ``+01``, ``+0100``, ``UTC``, a
  decimal comma, Java's ``ZonedDateTime`` zone id after the offset), .NET's older JSON date
  (``/Date(1741940400000+0100)/``), an HTTP date (``Fri, 14 Mar 2025 08:26:53 GMT``), and a Unix time (seconds,
  or milliseconds from 10^11 on, as Java's ``Date`` and JavaScript write it), which is UTC. Unix time 0 is Unix's
  "no date": it is read as the placeholder ``0001-01-01``, which the normaliser nulls (optional) or refuses
  (required), as it does .NET's.
- A price written for Dutch readers: ``"49,95"``, ``"1.234,56"``, ``"€ 49,95"``, ``"1,234.50"``, ``"1 234,56"``,
  ``"49,-"``. ``"1,234"`` (a thousand, or one and a bit?) stays a contract error.
- An event id in braces (``{...}``, .NET's ``Guid.ToString("B")``) or as a URN (``urn:uuid:...``).

Numbers keep every digit through a repair (decoded as Decimal, written back as numbers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import email.utils
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import msgspec.inspect as mi

from schemas.contract import Event

_AMSTERDAM: Final = ZoneInfo("Europe/Amsterdam")
_DOC_DECODER: Final = msgspec.json.Decoder(float_hook=decimal.Decimal)
_DOC_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")


class _Keep:
    """A fix's answer when the value is not one it reads: left as it is."""


KEEP: Final = _Keep()
Fix = Callable[[Any], Any]


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


# --- dates and timestamps ----------------------------------------------------------------------------------------

# Day first, '-' or '.' between, optionally a time: what a Dutch (or German, Belgian) DateTime.ToString() writes.
_DUTCH: Final = re.compile(
    r"(?P<d>[0-9]{1,2})(?P<sep>[-.])(?P<m>[0-9]{1,2})(?P=sep)(?P<y>[0-9]{4})"
    r"(?:[ T]+(?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2}))?)?"
)
_COMPACT: Final = re.compile(r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})")
# Year first with any separator and unpadded numbers (2019-3-1, 2019/03/01, 2019.03.01): no one writes year-day-month.
_YEAR_FIRST: Final = re.compile(
    r"(?P<y>[0-9]{4})(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})"
    r"(?:[ T]+(?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2}))?)?"
)
# From here on a Unix time is in milliseconds: 10^11 seconds is the year 5138, 10^11 ms is March 1973.
_MILLIS_FROM: Final = 10**11
_PLACEHOLDER: Final = "0001-01-01T00:00:00Z"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _day(found: re.Match[str]) -> dt.date | None:
    try:
        return dt.date(int(found["y"]), int(found["m"]), int(found["d"]))
    except ValueError:  # 31-02-2019
        return None


def _calendar_date(text: str) -> str | None:
    """The date of an RFC 3339 timestamp, in Europe/Amsterdam when it has an offset."""
    try:
        moment = msgspec.convert(text, dt.datetime)
    except msgspec.ValidationError:
        return None
    if moment.tzinfo is not None:
        # At the calendar's ends (0001-01-01T00:00:00+01:00) there is no Amsterdam date: a placeholder, read as written.
        with contextlib.suppress(OverflowError):
            moment = moment.astimezone(_AMSTERDAM)
    return moment.date().isoformat()


def as_date(value: Any) -> Any:
    if value is None or _blank(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return KEEP
    text = value.strip()
    found = _DUTCH.fullmatch(text) or _COMPACT.fullmatch(text) or _YEAR_FIRST.fullmatch(text)
    if found is not None:
        day = _day(found)
        return KEEP if day is None else day.isoformat()
    if (calendar := _calendar_date(text)) is not None:
        return calendar
    stamp = _timestamp_text(text)  # /Date(1551398400000)/, 2019-03-01 00:00 +01:00, ...
    return (stamp and _calendar_date(stamp)) or KEEP


def _local_timestamp(text: str) -> str | None:
    """A date, with or without a time, written day first, year first or as the RDW writes it: local time, as the
    contract reads a timestamp without an offset. A date alone is its midnight: Carsys calls both the appointment's
    and its creation's a date (Afspraakdatum, Aanmaakdatum)."""
    found = _DUTCH.fullmatch(text) or _YEAR_FIRST.fullmatch(text) or _COMPACT.fullmatch(text)
    day = None if found is None else _day(found)
    if found is None or day is None:
        return None
    hour, minute, second = (int(found.groupdict().get(part) or 0) for part in ("H", "M", "S"))
    if hour > 23 or minute > 59 or second > 59:
        return None
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"


def _unix_time(number: int | decimal.Decimal) -> str | None:
    seconds = decimal.Decimal(number)
    return _instant(seconds / 1000 if abs(seconds) >= _MILLIS_FROM else seconds)


def _instant(seconds: decimal.Decimal) -> str | None:
    """RFC 3339 in UTC of a Unix time; 0, Unix's "no date", as the placeholder."""
    if seconds == 0:
        return _PLACEHOLDER
    try:
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        moment = _EPOCH + dt.timedelta(seconds=whole, microseconds=micros)
    except (OverflowError, ValueError, decimal.InvalidOperation):  # past the year 9999
        return None
    return moment.isoformat().replace("+00:00", "Z")


# .NET's older JSON date (DataContractJsonSerializer, ASP.NET): milliseconds since 1970 in UTC; the offset after them
# only says which zone the value was shown in.
_MS_JSON_DATE: Final = re.compile(r"\\?/Date\((?P<ms>-?[0-9]+)(?:[+-][0-9]{4})?\)\\?/")
# RFC 3339 nearly: seconds left out (an HTML datetime-local input, JavaScript), a space before the offset, or an
# offset of hours only (+01) or without its colon.
_NEARLY_RFC3339: Final = re.compile(
    r"(?P<dt>[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2})(?P<s>:[0-9]{2}(?:[.,][0-9]+)?)?"
    r"\s*(?:(?P<z>[Zz]|UTC|GMT)|(?P<sign>[+-])(?P<oh>[0-9]{2}):?(?P<om>[0-9]{2})?)?(?P<zone>\[[A-Za-z0-9_+\-/]+\])?"
)


def _nearly_rfc3339(text: str) -> str | None:
    """Also a decimal comma in the seconds (ISO 8601 allows it), UTC or GMT for Z, and a zone id after the offset
    (Java's ZonedDateTime: ``2025-03-14T09:20:00+01:00[Europe/Amsterdam]``; the offset says the instant)."""
    found = _NEARLY_RFC3339.fullmatch(text)
    if found is None or (found["zone"] and not (found["z"] or found["sign"])):
        return None
    offset = "Z" if found["z"] else f"{found['sign']}{found['oh']}:{found['om'] or '00'}" if found["sign"] else ""
    return f"{found['dt']}{(found['s'] or ':00').replace(',', '.')}{offset}"


def _http_date(text: str) -> str | None:
    """RFC 1123 / 2822 (``Fri, 14 Mar 2025 09:20:00 GMT``: HTTP headers, JavaScript's toUTCString())."""
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.isoformat() if moment.tzinfo is not None else None


def _timestamp_text(text: str) -> str | None:
    ms = _MS_JSON_DATE.fullmatch(text)
    if ms is not None:
        return _instant(decimal.Decimal(ms["ms"]) / 1000)
    return _local_timestamp(text) or _nearly_rfc3339(text) or (_http_date(text) if "," in text else None)


def as_timestamp(value: Any) -> Any:
    if _blank(value):
        return None
    if isinstance(value, int | decimal.Decimal) and not isinstance(value, bool):
        return _unix_time(value) or KEEP
    if isinstance(value, str):
        return _timestamp_text(value.strip()) or KEEP
    return KEEP


# --- prices ------------------------------------------------------------------------------------------------------

_MONEY: Final = re.compile(r"(?P<cur>€|EUR)?\s*(?P<n>-?[0-9][0-9.,]*(?:,[-–])?)\s*(?P<cur2>€|EUR)?", re.IGNORECASE)
# A space (also a no-break or narrow one) between thousands: "1 234,56", as French and Belgian prices are written.
_SPACED_THOUSANDS: Final = re.compile(r"(?<=[0-9])[ \u00a0\u202f](?=[0-9]{3}(?![0-9]))")
# Whole euros the Dutch way: "49,-", "1.250,-".
_WHOLE_DASH: Final = re.compile(r"-?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+),[-–]")
_DECIMAL_COMMA: Final = re.compile(r"-?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+),[0-9]{1,2}")
_THOUSANDS_COMMA: Final = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+\.[0-9]{1,2}")
_PLAIN: Final = re.compile(r"-?[0-9]+(?:\.[0-9]{1,2})?")


def as_price(value: Any) -> Any:
    if _blank(value):
        return None
    text = value.strip() if isinstance(value, str) else ""
    joined = _SPACED_THOUSANDS.sub("", text)
    found = _MONEY.fullmatch(joined)
    if found is None:
        return KEEP
    number = found["n"]
    if _WHOLE_DASH.fullmatch(number):
        return number[:-2].replace(".", "")
    if _DECIMAL_COMMA.fullmatch(number):
        return number.replace(".", "").replace(",", ".")
    if _THOUSANDS_COMMA.fullmatch(number):
        return number.replace(",", "")
    if (found["cur"] or found["cur2"] or joined != text) and _PLAIN.fullmatch(number):
        return number
    return KEEP


# --- flags, lists, text, ids -------------------------------------------------------------------------------------

_TRUE: Final = frozenset({"true", "1", "j", "ja", "y", "yes", "waar"})
_FALSE: Final = frozenset({"false", "0", "n", "nee", "no", "onwaar", ""})


def as_bool(value: Any) -> Any:
    if value is None:
        return False
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else KEEP
    return KEEP


def as_list(value: Any) -> Any:
    return [] if value is None else KEEP


def as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else KEEP


def as_title(value: Any) -> Any:
    return "" if value is None else KEEP


_UUID_WRAPPED: Final = re.compile(r"\s*(?:\{(?P<braced>[^{}]*)\}|urn:uuid:(?P<urn>\S*))\s*", re.IGNORECASE)


def as_uuid(value: Any) -> Any:
    found = _UUID_WRAPPED.fullmatch(value) if isinstance(value, str) else None
    return KEEP if found is None else (found["braced"] or found["urn"] or "")


# --- where each fix applies --------------------------------------------------------------------------------------


def _text_fields(kind: mi.Type, shape: str) -> Iterator[str]:
    """The paths (list indices as ``[]``) of the contract's text fields."""
    if isinstance(kind, mi.Metadata):
        yield from _text_fields(kind.type, shape)
    elif isinstance(kind, mi.StrType):
        yield shape
    elif isinstance(kind, mi.UnionType):
        for option in kind.types:
            yield from _text_fields(option, shape)
    elif isinstance(kind, mi.VarTupleType | mi.ListType):
        yield from _text_fields(kind.item_type, f"{shape}[]")
    elif isinstance(kind, mi.StructType):
        for field in kind.fields:
            yield from _text_fields(field.type, f"{shape}.{field.encode_name}")


_TEXT: Final = tuple(sorted(set(_text_fields(mi.type_info(Event), "$"))))
_VEHICLE_DATES: Final = ("$.appointment.vehicle.first_registration_date", "$.appointment.vehicle.apk_due_date")
_TIMESTAMPS: Final = ("$.occurred_at", "$.appointment.created_at", "$.appointment.appointment_at")
# (msgspec's reason, the paths of the fields it applies to, list indices as [], the fix). A refusal at one field
# rewrites every field of that kind: a producer that writes house numbers as numbers does so for every person.
FIXES: Final[tuple[tuple[re.Pattern[str], tuple[str, ...], Fix], ...]] = tuple(
    (re.compile(reason), paths, fix)
    for reason, paths, fix in (
        (r"Invalid RFC3339 encoded date|Expected `date(?: \| null)?`, got `int`", _VEHICLE_DATES, as_date),
        (
            r"Invalid RFC3339 encoded datetime|Expected `datetime(?: \| null)?`, got `(?:int|float)`",
            _TIMESTAMPS,
            as_timestamp,
        ),
        (r"Invalid decimal string", ("$.appointment.interventions[].price",), as_price),
        (r"Expected `bool`, got `(?:null|str|int)`", ("$.appointment.waiting_customer",), as_bool),
        (r"Expected `array`, got `null`", ("$.appointment.interventions", "$.appointment.persons"), as_list),
        (r"Expected `str(?: \| null)?`, got `int`", _TEXT, as_text),
        (r"Expected `str`, got `null`", ("$.appointment.interventions[].title",), as_title),
        (r"Expected `str` matching regex", ("$.event_id",), as_uuid),
    )
)

_AT: Final = re.compile(r"^(?P<reason>.*?) - at `(?P<path>[^`]*)`$", re.DOTALL)
_INDEX: Final = re.compile(r"\[[0-9]+\]")
_STEP: Final = re.compile(r"\.(?P<field>[a-z_]+)|\[\]")


def _fix_for(message: str) -> tuple[Fix, tuple[str, ...]] | None:
    found = _AT.match(message)
    if found is None:
        return None
    shape = _INDEX.sub("[]", found["path"])
    for reason, paths, fix in FIXES:
        if shape in paths and reason.match(found["reason"]):
            return fix, paths
    return None


Trie = dict[Any, "Trie"]
_LEAF: Final = "$"  # never a field name (the steps are [a-z_]+) nor None (every list element)


@functools.cache
def _trie(paths: tuple[str, ...]) -> Trie:
    """The paths as a tree of steps, so that one walk of the event visits each of them."""
    root: Trie = {}
    for path in paths:
        node = root
        for step in (m["field"] for m in _STEP.finditer(path)):
            node = node.setdefault(step, {})
        node[_LEAF] = {}
    return root


def _places(node: Any, trie: Trie, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """(container, key) of every value of ``node`` at a path of ``trie`` (a None step: every list element)."""
    for step, below in trie.items():
        if step is None and isinstance(node, list):
            keys: Iterable[Any] = range(len(node))
        elif isinstance(step, str) and step != _LEAF and isinstance(node, dict) and step in node:
            keys = (step,)
        else:
            continue
        for key in keys:
            if _LEAF in below:
                out.append((node, key))
            _places(node[key], below, out)
    return out


def _apply(doc: Any, fix: Fix, paths: tuple[str, ...]) -> bool:
    changed = False
    for container, key in _places(doc, _trie(paths), []):
        old, new = container[key], fix(container[key])
        # By type too: True == 1, and 1 -> True is a change.
        if new is not KEEP and (type(new), new) != (type(old), old):
            container[key] = new
            changed = True
    return changed


def repaired(value: bytes, message: str) -> bytes | None:
    """``value`` with the fields of the kind msgspec refused (``message``) rewritten, or None when no repair applies
    or nothing changed (so that a caller repairing until the decoder accepts always ends)."""
    wanted = _fix_for(message)
    if wanted is None:
        return None
    try:
        doc = _DOC_DECODER.decode(value)
        return _DOC_ENCODER.encode(doc) if _apply(doc, *wanted) else None
    except (msgspec.DecodeError, RecursionError):  # not JSON throughout, or too deep to walk: refused as it is
        return None
