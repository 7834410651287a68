"""The normaliser: a contract event in, the canonical event Claire relies on out. Pure: no I/O, no clock.

Every person, the vehicle and the appointment carry notes ``{field, rule, action}`` saying what was changed or
rejected; a note never holds a value (AVG/GDPR). The ``normalize`` command (worker/ops/preview.py) shows
a producer what Claire will store from its events.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from schemas import contract
from worker.errors import NormaliseError
from worker.normalise import dates, model
from worker.normalise.addresses import normalise_city, normalise_house_number, normalise_postcode
from worker.normalise.emails import Email, read_email, read_email_reference
from worker.normalise.phones import Phone, Phones, read_phones, read_phones_reference
from worker.normalise.plates import normalise_plate
from worker.normalise.text import Fixes, Result, clean, clean_id, collapse
from worker.normalise.titles import normalise_title
from worker.normalise.vehicles import normalise_fuel, normalise_vin

# Loaded once at import: a missing time zone database must stop the worker at start-up, not per event.
AMSTERDAM: Final = ZoneInfo("Europe/Amsterdam")


class Rules(NamedTuple):
    """The two expensive field rules, swappable so that the benchmark and the differential tests can run the
    straightforward library-everywhere version through the very same normaliser. Each reads a field's first
    value and a second one if the field holds two. ``cached``: persons and vehicles go through the snapshot caches."""

    phone: Callable[[str | None], Phones]
    email: Callable[[str | None], Email]
    cached: bool = True


FAST: Final = Rules(read_phones, read_email)
# The same rules without the snapshot caches: what the caches must always agree with.
UNCACHED: Final = Rules(read_phones, read_email, cached=False)
REFERENCE: Final = Rules(read_phones_reference, read_email_reference, cached=False)


class _Notes:
    """Collects the notes of one person, vehicle or appointment while its fields are normalised. The fields are
    normalised in the struct's field order (a person's two e-mail fields together, then each scope's phones), so
    the notes come out in a fixed order without sorting."""

    __slots__ = ("notes",)

    def __init__(self) -> None:
        self.notes: list[model.Note] = []

    def add(self, field: str, fixes: Fixes) -> None:
        for rule, action in fixes:
            self.notes.append(model.Note(field, rule, action))

    def take(self, field: str, result: Result) -> str | None:
        if result[1]:
            self.add(field, result[1])
        return result[0]

    def date(self, field: str, value: dt.date | None) -> dt.date | None:
        day, fixes = dates.clean_date(value)
        self.add(field, fixes)
        return day

    def done(self) -> tuple[model.Note, ...]:
        return tuple(self.notes)


def normalise(event: contract.Event, rules: Rules = FAST) -> model.NormalisedEvent:
    """The canonical form of one contract event. Raises NormaliseError when it holds nothing storable."""
    event_id = canonical_uuid(event.event_id)
    occurred_at = _required_timestamp(event.occurred_at, "$.occurred_at")
    # Trimmed like the other ids; the contract's pattern guarantees something is left.
    dealer_id = event.dealer_id.strip(contract.DEALER_ID_PADDING)
    if isinstance(event, contract.AppointmentDeleted):
        dms_number = _required_id(event.appointment.dms_number, "$.appointment.dms_number")
        return model.Delete(event_id, occurred_at, dealer_id, dms_number)
    return model.Upsert(event_id, occurred_at, dealer_id, _appointment(event.appointment, rules))


_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> str:
    """PostgreSQL's text form of a uuid; ValueError when ``value`` is none."""
    # Most producers already send the canonical form; uuid.UUID() costs more than the check.
    return value if _CANONICAL_UUID.fullmatch(value) else str(uuid.UUID(value))


def _required_id(value: str, path: str, n: int = 0) -> str:
    text = value.strip()
    if not text:
        raise NormaliseError(f"{path.format(n=n)}: only whitespace")
    return text


def _required_timestamp(value: dt.datetime, path: str) -> dt.datetime:
    # A required timestamp has no null to fall back to: a placeholder there is a producer's mapping of "no value"
    # (e.g. .NET's default(DateTime)), as good as a missing field. occurred_at of 9999 would also win every later
    # change of the appointment, forever.
    if dates.is_placeholder(value):
        raise NormaliseError(f"{path}: placeholder timestamp (outside {dates.WINDOW})")
    return value


def _aware(value: dt.datetime, field: str, notes: _Notes) -> dt.datetime:
    if value.tzinfo is not None:
        return value
    notes.add(field, (("timezone", "assumed_europe_amsterdam"),))
    return dates.whole_minute_offset(value.replace(tzinfo=AMSTERDAM))


def _appointment(a: contract.Appointment, rules: Rules) -> model.Appointment:
    notes = _Notes()
    dms_number = _required_id(a.dms_number, "$.appointment.dms_number")
    created_at = _aware(_required_timestamp(a.created_at, "$.appointment.created_at"), "created_at", notes)
    wo_number = notes.take("wo_number", clean(a.wo_number))
    appointment_at = _optional_timestamp(a.appointment_at, notes)
    return model.Appointment(
        dms_number=dms_number,
        created_at=created_at,
        wo_number=wo_number,
        appointment_at=appointment_at,
        waiting_customer=a.waiting_customer,
        interventions=tuple(_intervention(i, n, notes) for n, i in enumerate(a.interventions)),
        vehicle=None if a.vehicle is None else _vehicle(a.vehicle, rules),
        persons=_distinct([_person(p, n, rules) for n, p in enumerate(a.persons)], notes),
        notes=notes.done(),
    )


def _optional_timestamp(value: dt.datetime | None, notes: _Notes) -> dt.datetime | None:
    at, fixes = dates.clean_date(value)
    notes.add("appointment_at", fixes)
    return None if at is None else _aware(at, "appointment_at", notes)


def _distinct(persons: list[model.Person], notes: _Notes) -> tuple[model.Person, ...]:
    """The persons without repeats: a DMS lists the driver who is also the owner once per role. Two different records
    under one id cannot both be stored, and merging them would be a guess."""
    first: dict[str, int] = {}
    kept: list[model.Person] = []
    for n, person in enumerate(persons):
        at = first.setdefault(person.id, n)
        if at == n:
            kept.append(person)
        elif person == persons[at]:
            notes.add(f"persons[{n}]", (("duplicate", "removed"),))
        else:
            raise NormaliseError(f"$.appointment.persons[{n}].id: same person id as persons[{at}], other values")
    return tuple(kept)


def _intervention(i: contract.Intervention, n: int, notes: _Notes) -> model.Intervention:
    # A title is free text and required: whitespace only, never nulled as a placeholder.
    title = collapse(i.title)
    if title != i.title:
        notes.add(f"interventions[{n}].title", (("whitespace", "collapsed"),))
    description = notes.take(f"interventions[{n}].description", clean(i.description))
    return model.Intervention(title, description, i.price)


# Carsys pushes whole snapshots: the same driver, owner, lease company and vehicle arrive with every change of every
# appointment they belong to, byte-identical. Contract structs are frozen (hashed and compared by value) and the
# normalised ones are immutable, so a bounded LRU from the raw struct to its normalised form returns what the rules
# would compute, without the work (tests/unit/test_normaliser_cache.py checks it against the uncached rules).
# Sizes bound the memory: measured ~1.8 KiB per entry (raw key + normalised value), ~43 MiB with both full. The
# platform team trades memory for CPU with SNAPSHOT_CACHE_ENTRIES (configure_caches; docs/deployment.md).
PERSON_CACHE_SIZE: Final = 16384
VEHICLE_CACHE_SIZE: Final = 8192


def _vehicle(v: contract.Vehicle, rules: Rules) -> model.Vehicle:
    # The rules are part of the key only so that the reference rules (benchmark, differential tests) never read
    # the fast rules' results; a vehicle uses neither rule.
    return _vehicle_cached(v, rules) if rules.cached else _normalise_vehicle(v)


def _normalise_vehicle(v: contract.Vehicle) -> model.Vehicle:
    notes = _Notes()
    make = notes.take("make", clean(v.make))
    model_ = notes.take("model", clean(v.model))
    plate = normalise_plate(v.license_plate)
    notes.add("license_plate", plate.fixes)
    vin, vin_valid, vin_fixes = normalise_vin(v.vin)
    notes.add("vin", vin_fixes)
    return model.Vehicle(
        vehicle_key=f"vin:{vin}" if vin_valid else (f"plate:{plate.key}" if plate.key else None),
        make=make,
        model=model_,
        license_plate=plate.plate,
        license_plate_key=plate.key,
        vin=vin,
        fuel=notes.take("fuel", normalise_fuel(v.fuel)),
        first_registration_date=notes.date("first_registration_date", v.first_registration_date),
        apk_due_date=notes.date("apk_due_date", v.apk_due_date),
        driver_id=notes.take("driver_id", clean_id(v.driver_id)),
        owner_id=notes.take("owner_id", clean_id(v.owner_id)),
        contractor_id=notes.take("contractor_id", clean_id(v.contractor_id)),
        notes=notes.done(),
    )


class _Scope(NamedTuple):
    """One scope's (private or business) phone and mobile after the moves between them."""

    phone: str | None
    mobile: str | None
    mobile_is_mobile: bool


# NamedTuple's generated __new__ is Python code; building the tuple directly halves the cost, and _move() builds
# one per scope of every person.
_NEW: Final = tuple.__new__


def _move_notes(scope: str) -> dict[str, Fixes]:
    phone, mobile = f"phone_{scope}", f"mobile_{scope}"
    return {
        "swapped_phone": (("phone_type", f"swapped_with_{mobile}"),),
        "swapped_mobile": (("phone_type", f"swapped_with_{phone}"),),
        "to_mobile": (("phone_type", f"moved_to_{mobile}"),),
        "mobile_kept": (("phone_type", f"mobile_kept_{mobile}_taken"),),
        "to_phone": (("phone_type", f"moved_to_{phone}"),),
        "landline_kept": (("phone_type", f"landline_kept_{phone}_taken"),),
    }


_MOVE_NOTES: Final = {scope: _move_notes(scope) for scope in ("private", "business")}
# (phone field, mobile field) per scope, built once: formatting them costs more than the rest of a scope's rules.
_FIELDS: Final = {scope: (f"phone_{scope}", f"mobile_{scope}") for scope in ("private", "business")}


def _move(p: Phone, m: Phone, scope: str, notes: _Notes) -> _Scope:
    """A mobile number in phone_* moves to an empty mobile_*, a landline in mobile_* to an empty phone_*."""
    (phone_field, mobile_field), say = _FIELDS[scope], _MOVE_NOTES[scope]
    if p.kind == "mobile" and m.kind == "landline":
        # Both are in each other's place: each target is freed by the other move.
        notes.add(phone_field, say["swapped_phone"])
        notes.add(mobile_field, say["swapped_mobile"])
        return _NEW(_Scope, (m.e164, p.e164, True))
    if p.kind == "mobile":
        if m.e164 is None:
            notes.add(phone_field, say["to_mobile"])
            return _NEW(_Scope, (None, p.e164, True))
        notes.add(phone_field, say["mobile_kept"])
    elif m.kind == "landline":
        if p.e164 is None:
            notes.add(mobile_field, say["to_phone"])
            return _NEW(_Scope, (m.e164, None, False))
        notes.add(mobile_field, say["landline_kept"])
    return _NEW(_Scope, (p.e164, m.e164, m.kind == "mobile"))


def _scope(phones: Phones, mobiles: Phones, scope: str, notes: _Notes) -> _Scope:
    phone, mobile = phones[0], mobiles[0]
    if phone.fixes:
        notes.add(_FIELDS[scope][0], phone.fixes)
    if mobile.fixes:
        notes.add(_FIELDS[scope][1], mobile.fixes)
    moved = _move(phone, mobile, scope, notes)
    if phones[1] is None and mobiles[1] is None:
        return moved
    return _seconds(moved, phones[1], mobiles[1], scope, notes)


def _seconds(s: _Scope, in_phone: Phone | None, in_mobile: Phone | None, scope: str, notes: _Notes) -> _Scope:
    """A field's second number goes to the empty slot of its kind in the same scope, after the firsts have moved;
    a number is never put in another scope (the producer said whose it is) and never overwrites one."""
    for source, second in zip(_FIELDS[scope], (in_phone, in_mobile), strict=True):
        if second is not None:
            s = _second(s, second, source, scope, notes)
    return s


def _second(s: _Scope, second: Phone, source: str, scope: str, notes: _Notes) -> _Scope:
    if second.kind == "mobile" and s.mobile is None:
        target, placed = f"mobile_{scope}", _Scope(s.phone, second.e164, True)
    elif second.kind != "mobile" and s.phone is None:
        target, placed = f"phone_{scope}", _Scope(second.e164, s.mobile, s.mobile_is_mobile)
    else:
        notes.add(source, _SLOT_TAKEN[SECOND_NUMBER])
        return s
    _note_second(SECOND_NUMBER, source, target, notes)
    return placed


SECOND_NUMBER: Final = "second_number"
SECOND_ADDRESS: Final = "second_address"


def _note_second(rule: str, source: str, target: str, notes: _Notes) -> None:
    if target == source:
        notes.add(source, ((rule, "kept"),))
        return
    notes.add(source, ((rule, f"moved_to_{target}"),))
    notes.add(target, ((rule, f"moved_from_{source}"),))


def _first(a: str | None, b: str | None) -> str | None:
    return a if a is not None else b


def _emails(private: Email, business: Email, company: bool, notes: _Notes) -> tuple[str | None, str | None]:
    """``(email_private, email_business)``. A field's second address has one place in the contract: the other
    scope's slot. It goes there when the producer left that slot empty and it is the scope the person is reached
    at second (business for a private customer, private for a company's contact), so it never displaces the
    address the person is mailed at first; otherwise it is dropped, with a note."""
    if private[1]:
        notes.add("email_private", private[1])
    if business[1]:
        notes.add("email_business", business[1])
    if private[2] is None and business[2] is None:
        return private[0], business[0]
    return _second_address(private, business, company, notes)


def _second_address(private: Email, business: Email, company: bool, notes: _Notes) -> tuple[str | None, str | None]:
    # "main" is the scope the person is mailed at first, "other" the other one.
    (main, _, main_extra), (other, _, other_extra) = (business, private) if company else (private, business)
    main_field, other_field = ("email_business", "email_private") if company else ("email_private", "email_business")
    if other is None and main_extra is not None:
        other = main_extra
        _note_second(SECOND_ADDRESS, main_field, other_field, notes)
    elif main_extra is not None:
        notes.add(main_field, _SLOT_TAKEN[SECOND_ADDRESS])
    if other_extra is not None:
        notes.add(other_field, _PREFERRED_SCOPE)
    return (other, main) if company else (main, other)


_SLOT_TAKEN: Final = {rule: ((rule, "dropped_slot_taken"),) for rule in (SECOND_NUMBER, SECOND_ADDRESS)}
# The other scope is where the person is reached first: moving an address there would change who is mailed.
_PREFERRED_SCOPE: Final = ((SECOND_ADDRESS, "dropped_other_scope_preferred"),)


def _person(p: contract.Person, n: int, rules: Rules) -> model.Person:
    # The only way a person fails is an empty id, and that error names the position: checked outside the cache.
    person_id = _required_id(p.id, "$.appointment.persons[{n}].id", n)
    return _person_cached(p, rules) if rules.cached else _normalise_person(p, person_id, rules)


def _normalise_person(p: contract.Person, person_id: str, rules: Rules) -> model.Person:
    notes = _Notes()
    company_name = notes.take("company_name", clean(p.company_name))
    title = notes.take("title", normalise_title(p.title))
    first_name = notes.take("first_name", clean(p.first_name))
    last_name = notes.take("last_name", clean(p.last_name))
    street = notes.take("street", clean(p.street))
    house_number, addition, house_fixes = normalise_house_number(p.house_number)
    notes.add("house_number", house_fixes)
    postcode = notes.take("postcode", normalise_postcode(p.postcode))
    city = notes.take("city", normalise_city(p.city))
    email_private, email_business = _emails(
        rules.email(p.email_private), rules.email(p.email_business), company_name is not None, notes
    )
    private = _scope(rules.phone(p.phone_private), rules.phone(p.mobile_private), "private", notes)
    business = _scope(rules.phone(p.phone_business), rules.phone(p.mobile_business), "business", notes)
    mobiles = (
        private.mobile if private.mobile_is_mobile else None,
        business.mobile if business.mobile_is_mobile else None,
    )
    # A company's contact is reached at work first; a private customer privately first.
    emails = (email_business, email_private) if company_name is not None else (email_private, email_business)
    if company_name is not None:
        mobiles = (mobiles[1], mobiles[0])
    return model.Person(
        id=person_id,
        company_name=company_name,
        title=title,
        first_name=first_name,
        last_name=last_name,
        street=street,
        house_number=house_number,
        house_number_addition=addition,
        postcode=postcode,
        city=city,
        email_private=email_private,
        phone_private=private.phone,
        mobile_private=private.mobile,
        email_business=email_business,
        phone_business=business.phone,
        mobile_business=business.mobile,
        preferred_email=_first(*emails),
        preferred_mobile=_first(*mobiles),
        notes=notes.done(),
    )


def _person_snapshot(p: contract.Person, rules: Rules) -> model.Person:
    return _normalise_person(p, p.id.strip(), rules)


def _vehicle_snapshot(v: contract.Vehicle, rules: Rules) -> model.Vehicle:
    return _normalise_vehicle(v)


_person_cached = functools.lru_cache(maxsize=PERSON_CACHE_SIZE)(_person_snapshot)
_vehicle_cached = functools.lru_cache(maxsize=VEHICLE_CACHE_SIZE)(_vehicle_snapshot)


def configure_caches(persons: int) -> None:
    """Bound the snapshot caches anew (emptying them): ``persons`` entries for persons, half as many for vehicles
    (an appointment has one vehicle and up to three persons). 0 turns them off. Set once, at start-up, from
    SNAPSHOT_CACHE_ENTRIES by the composition root."""
    global _person_cached, _vehicle_cached
    _person_cached = functools.lru_cache(maxsize=persons)(_person_snapshot)
    _vehicle_cached = functools.lru_cache(maxsize=persons // 2)(_vehicle_snapshot)


def cache_info() -> dict[str, dict[str, int]]:
    """Hits, misses and sizes of the snapshot caches (the benchmark prints them)."""
    infos = {"persons": _person_cached.cache_info(), "vehicles": _vehicle_cached.cache_info()}
    return {name: {"hits": i.hits, "misses": i.misses, "size": i.currsize} for name, i in infos.items()}


def clear_caches() -> None:
    _person_cached.cache_clear()
    _vehicle_cached.cache_clear()


def to_contract_shape(event: model.NormalisedEvent) -> dict[str, Any]:
    """The normalised event in the contract's shape and field names, plus the derived fields and the notes."""
    body = msgspec.to_builtins(event)
    appointment = {"dms_number": body.pop("dms_number")} if isinstance(event, model.Delete) else body.pop("appointment")
    return {
        "event_id": body["event_id"],
        "event_type": body["event_type"],
        "schema_version": contract.SCHEMA_VERSION,
        "occurred_at": body["occurred_at"],
        "dealer_id": body["dealer_id"],
        "appointment": appointment,
    }
