"""The real-world corpus (tests/unit/real_world_corpus.py) through the whole normaliser, fast and reference rules
alike, and hypothesis properties of the rules that read a field as a person does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas import contract
from tests.unit.builders import upsert
from tests.unit.real_world_corpus import EMAILS, FUELS, PHONES, PLATES
from worker.normalise import model
from worker.normalise.emails import is_dummy, normalise_email
from worker.normalise.normaliser import FAST, REFERENCE, Rules, normalise
from worker.normalise.plates import normalise_plate
from worker.normalise.vehicles import normalise_fuel

RULES = pytest.mark.parametrize("rules", [FAST, REFERENCE], ids=["fast", "reference"])


def _event(persons: list[dict[str, Any]] | None = None, vehicle: dict[str, Any] | None = None) -> contract.Event:
    return upsert(persons=persons or [], vehicle=vehicle)


def _person(rules: Rules = FAST, **fields: str | None) -> model.Person:
    event = normalise(_event(persons=[{"id": "p1", **fields}]), rules)
    assert isinstance(event, model.Upsert)
    return event.appointment.persons[0]


def _vehicle(rules: Rules = FAST, **fields: str | None) -> model.Vehicle:
    event = normalise(_event(vehicle=fields), rules)
    assert isinstance(event, model.Upsert)
    assert event.appointment.vehicle is not None
    return event.appointment.vehicle


def _notes_on(notes: tuple[model.Note, ...], field: str) -> list[tuple[str, str]]:
    return [(n.rule, n.action) for n in notes if n.field == field]


def _no_values_in(notes: tuple[model.Note, ...], raw: str) -> None:
    for note in notes:
        assert raw not in f"{note.field} {note.rule} {note.action}"


# --- the corpus -------------------------------------------------------------------------------------------------


@RULES
@pytest.mark.parametrize(("raw", "private", "business"), EMAILS)
def test_emails_as_typed(rules: Rules, raw: str, private: str | None, business: str | None) -> None:
    person = _person(rules, email_private=raw)
    assert (person.email_private, person.email_business) == (private, business)
    assert person.preferred_email == private  # a moved second address is never the preferred one
    if private != raw:  # changed, nulled or with something dropped: the field says so
        assert _notes_on(person.notes, "email_private")
    if business is not None:
        assert ("second_address", "moved_from_email_private") in _notes_on(person.notes, "email_business")
    _no_values_in(person.notes, raw)


@RULES
@pytest.mark.parametrize(("field", "raw", "phone", "mobile"), PHONES)
def test_phones_as_typed(rules: Rules, field: str, raw: str, phone: str | None, mobile: str | None) -> None:
    scope = field.split("_")[1]
    person = _person(rules, **{field: raw})
    assert (getattr(person, f"phone_{scope}"), getattr(person, f"mobile_{scope}")) == (phone, mobile)
    other = "business" if scope == "private" else "private"
    assert (getattr(person, f"phone_{other}"), getattr(person, f"mobile_{other}")) == (None, None)
    assert person.preferred_mobile == mobile
    if raw not in (phone, mobile):
        assert _notes_on(person.notes, field)
    _no_values_in(person.notes, raw)


@RULES
@pytest.mark.parametrize(("raw", "fuel"), FUELS)
def test_fuels_as_typed(rules: Rules, raw: str, fuel: str) -> None:
    vehicle = _vehicle(rules, fuel=raw)
    assert vehicle.fuel == fuel
    assert _notes_on(vehicle.notes, "fuel") or raw == fuel


@RULES
@pytest.mark.parametrize(("raw", "plate", "key"), PLATES)
def test_plates_as_typed(rules: Rules, raw: str, plate: str, key: str) -> None:
    vehicle = _vehicle(rules, license_plate=raw)
    assert (vehicle.license_plate, vehicle.license_plate_key, vehicle.vehicle_key) == (plate, key, f"plate:{key}")
    assert _notes_on(vehicle.notes, "license_plate") or raw == plate


# --- second values and where they go -----------------------------------------------------------------------------


def test_second_address_is_dropped_with_a_note_when_the_other_slot_is_taken() -> None:
    person = _person(email_private="jan@ziggo.nl; marie@gmail.com", email_business="jan@bedrijf.nl")
    assert (person.email_private, person.email_business) == ("jan@ziggo.nl", "jan@bedrijf.nl")
    assert _notes_on(person.notes, "email_private") == [("second_address", "dropped_slot_taken")]
    assert _notes_on(person.notes, "email_business") == []


def test_second_business_address_goes_to_an_empty_private_slot() -> None:
    person = _person(company_name="Garage Peeters", email_business="info@peeters.be; jan@gmail.com")
    assert (person.email_private, person.email_business) == ("jan@gmail.com", "info@peeters.be")
    assert person.preferred_email == "info@peeters.be"
    assert ("second_address", "moved_to_email_private") in _notes_on(person.notes, "email_business")


def test_a_second_address_never_goes_to_the_scope_the_person_is_mailed_at_first() -> None:
    # A company's contact is mailed at work first: the private field's second address, which the producer never
    # called a work address, would become the address Claire mails. Dropped, with a note.
    person = _person(company_name="Garage Peeters", email_private="jan@ziggo.nl; marie@gmail.com")
    assert (person.email_private, person.email_business, person.preferred_email) == (
        "jan@ziggo.nl",
        None,
        "jan@ziggo.nl",
    )
    assert _notes_on(person.notes, "email_private") == [("second_address", "dropped_other_scope_preferred")]
    person = _person(email_business="info@peeters.be; jan@gmail.com")  # a private customer: mailed privately first
    expected = (None, "info@peeters.be", "info@peeters.be")
    assert (person.email_private, person.email_business, person.preferred_email) == expected
    assert _notes_on(person.notes, "email_business") == [("second_address", "dropped_other_scope_preferred")]


def test_a_second_number_never_overwrites_a_value_the_producer_sent() -> None:
    person = _person(phone_private="020-1234567 / 06-12345678", mobile_private="06-87654321")
    assert (person.phone_private, person.mobile_private) == ("+31201234567", "+31687654321")
    assert ("second_number", "dropped_slot_taken") in _notes_on(person.notes, "phone_private")


def test_a_second_number_never_changes_scope() -> None:
    person = _person(mobile_private="06-12345678 / 06-87654321")
    assert (person.mobile_private, person.mobile_business, person.phone_private) == ("+31612345678", None, None)
    assert ("second_number", "dropped_slot_taken") in _notes_on(person.notes, "mobile_private")


def test_second_number_notes_name_both_fields() -> None:
    person = _person(mobile_private="06-12345678 / 020-1234567")
    assert ("second_number", "moved_to_phone_private") in _notes_on(person.notes, "mobile_private")
    assert ("second_number", "moved_from_mobile_private") in _notes_on(person.notes, "phone_private")
    person = _person(phone_private="06-12345678 / 020-1234567")  # first moves out, second takes its place
    assert ("phone_type", "moved_to_mobile_private") in _notes_on(person.notes, "phone_private")
    assert ("second_number", "kept") in _notes_on(person.notes, "phone_private")


# --- properties -----------------------------------------------------------------------------------------------------

LOCALS = st.from_regex(r"[a-z0-9]{1,12}(?:[._+-][a-z0-9]{1,8})?", fullmatch=True)
DOMAINS = st.from_regex(r"[a-z0-9]{1,12}(?:-[a-z0-9]{1,6})?\.(?:nl|be|com|de|eu|org)", fullmatch=True)
ADDRESSES = st.builds(lambda local, domain: f"{local}@{domain}", LOCALS, DOMAINS).filter(lambda a: not is_dummy(a))
WRAPPINGS = st.sampled_from(
    (
        "{a}",
        " {a} ",
        "mailto:{a}",
        "MAILTO:{a}",
        "Mailto:{a}",
        "<{a}>",
        "<mailto:{a}>",
        "Jan de Vries <{a}>",
        '"Vries, Jan de" <{a}>',
        "{a} (privé)",
        "{a} (werk)",
        "{a}.",
        "'{a}'",
        "e-mail: {a}",
    )
)
CASES = st.sampled_from((str, str.upper, str.title))
SEPARATORS = st.sampled_from(("; ", ";", ", ", ",", " / ", "/", " ", " of ", " en ", " | "))


@given(address=ADDRESSES, wrapping=WRAPPINGS, case=CASES)
def test_any_wrapped_address_normalises_to_the_bare_address(address: str, wrapping: str, case: Any) -> None:
    raw = wrapping.format(a=case(address))
    found, fixes = normalise_email(raw)
    assert found == address
    assert fixes or raw == address  # any change is noted


@given(first=ADDRESSES, second=ADDRESSES, separator=SEPARATORS, wrapping=WRAPPINGS)
def test_two_addresses_give_both(first: str, second: str, separator: str, wrapping: str) -> None:
    assume(first != second)
    raw = wrapping.format(a=first) + separator + second
    person = _person(email_private=raw)
    assert (person.email_private, person.email_business) == (first, second)
    assert person == _person(REFERENCE, email_private=raw)


MOBILES = st.from_regex(r"6[1-5][0-9]{7}", fullmatch=True)
LANDLINES = st.sampled_from(("20", "10", "30", "70", "40", "50")).flatmap(
    lambda area: st.from_regex(rf"{area}[2-9][0-9]{{6}}", fullmatch=True)
)
NOTATIONS = st.sampled_from(("0{n}", "0{a}-{b}", "0{a} {b}", "+31{n}", "+31 {a} {b}", "0031 {a} {b}", "+31 (0){a} {b}"))
PHONE_SEPARATORS = st.sampled_from((" / ", "/", " of ", " en ", ", ", ",", ";", "; ", " ", " - ", " | ", " & "))


def _written(national: str, notation: str) -> str:
    cut = 1 if national.startswith("6") else 2
    return notation.format(n=national, a=national[:cut], b=national[cut:])


@given(
    mobile=MOBILES,
    landline=LANDLINES,
    notations=st.tuples(NOTATIONS, NOTATIONS),
    separator=PHONE_SEPARATORS,
    mobile_first=st.booleans(),
    field=st.sampled_from(("phone_private", "mobile_private", "phone_business", "mobile_business")),
)
def test_a_mobile_and_a_landline_in_one_field_land_in_their_own_slots(
    mobile: str, landline: str, notations: tuple[str, str], separator: str, mobile_first: bool, field: str
) -> None:
    numbers = [_written(mobile, notations[0]), _written(landline, notations[1])]
    raw = separator.join(numbers if mobile_first else numbers[::-1])
    scope = field.split("_")[1]
    person = _person(FAST, **{field: raw})
    stored = (getattr(person, f"phone_{scope}"), getattr(person, f"mobile_{scope}"))
    assert stored == (f"+31{landline}", f"+31{mobile}"), raw
    assert person == _person(REFERENCE, **{field: raw})


DASH_VARIANTS = st.sampled_from(("-", "–", "—", "−", "‑", "‒", "－", " ", "\u00a0", ".", "", " - ", " – "))
DUTCH_PLATES = st.sampled_from(("70RPJJ", "GBB01B", "1KLM23", "AB1234", "12ABC3", "V123BB", "123AB4", "1ABC123"))


@given(plate=DUTCH_PLATES, dashes=st.tuples(DASH_VARIANTS, DASH_VARIANTS), lower=st.booleans())
def test_any_dash_variant_gives_the_same_plate_and_key(plate: str, dashes: tuple[str, str], lower: bool) -> None:
    canonical = normalise_plate(plate)
    a, b, _ = canonical.plate.split("-") if canonical.plate else ("", "", "")
    typed = f"{a}{dashes[0]}{b}{dashes[1]}{plate[len(a) + len(b) :]}"
    found = normalise_plate(typed.lower() if lower else typed)
    assert (found.plate, found.key) == (canonical.plate, canonical.key)
    assert found.fixes or typed == canonical.plate


COMBINED = st.sampled_from(
    [
        ("Benzine", "Elektriciteit", "hybrid"),
        ("Diesel", "Elektro", "hybrid"),
        ("Benzine", "LPG", "lpg"),
        ("Benzine", "CNG", "cng"),
        ("Plug-in hybride", "Benzine", "plugin_hybrid"),
        ("Hybride", "Diesel", "hybrid"),
    ]
)
FUEL_JOINS = st.sampled_from(("/", " / ", "+", " + ", ", ", " en ", " & "))


@given(combined=COMBINED, join=FUEL_JOINS, swap=st.booleans(), case=CASES)
def test_combined_fuels_in_any_order_and_notation(
    combined: tuple[str, str, str], join: str, swap: bool, case: Any
) -> None:
    first, second, fuel = combined
    parts = (second, first) if swap else (first, second)
    assert normalise_fuel(case(join.join(parts))) == (fuel, (("fuel", "mapped"),))


# --- differential: the fast rules read a field exactly as the reference rules do ----------------------------------

_PIECES: tuple[str, ...] = (
    "06-12345678",
    "020-1234567",
    "+32 475 12 34 56",
    "03/201.23.45",
    "0612345678",
    "06-1234",
    "0800 1234",
)
_PIECES += ("(werk)", "of", "/", " / ", ",", ";", "tel:", "06", "-", "–", "+31 (0)6 12345678", "0031 6 1234 5678")
_ADDRESS_PIECES: tuple[str, ...] = (
    "jan@ziggo.nl",
    "Piet@Gmail.com",
    "anna@bücher.de",
    "geen@geen.nl",
    "x@y",
    "mailto:",
    "<",
    ">",
)
_ADDRESS_PIECES += ('"Vries, de"', "(privé)", ";", ",", " / ", " of ", ".", "'", "jan@@x.nl", "Jan")


def _joined(seed: int, pieces: tuple[str, ...]) -> str:
    import random

    r = random.Random(seed)
    return r.choice(("", " ")).join(r.choice(pieces) for _ in range(r.randint(1, 5)))


def test_fast_equals_reference_on_generated_multi_value_fields() -> None:
    phones = [_joined(seed, _PIECES) for seed in range(3000)]
    emails = [_joined(seed, _ADDRESS_PIECES) for seed in range(3000)]
    assert [raw for raw in phones if FAST.phone(raw) != REFERENCE.phone(raw)] == []
    assert [raw for raw in emails if FAST.email(raw) != REFERENCE.email(raw)] == []
    assert sum(FAST.phone(raw)[1] is not None for raw in phones) > 300  # second numbers are exercised
    assert sum(FAST.email(raw)[2] is not None for raw in emails) > 50


@given(st.text(alphabet="0123456789 +-–/().,;ofwerk", max_size=40))
def test_phone_pairs_fast_equals_reference_on_any_string(raw: str) -> None:
    assert FAST.phone(raw) == REFERENCE.phone(raw)


@given(st.text())
def test_reading_any_string_never_raises_and_notes_no_value(raw: str) -> None:
    email = FAST.email(raw)
    phones = FAST.phone(raw)
    # The note vocabulary is lowercase words; a value made of those ("null") could only match by coincidence.
    assume(len(raw.strip()) > 3 and re.fullmatch(r"[a-z_ ]*", raw.strip()) is None)
    for rule, action in (*email[1], *phones[0].fixes):
        assert raw.strip() not in f"{rule} {action}"


def test_erasure_finds_a_person_by_either_value_of_a_two_value_field() -> None:
    from worker.ops.erasure import Target, _person_matches

    person = {"id": "p1", "email_private": "Jan <jan@ziggo.nl>; marie@gmail.com", "mobile_private": "06-1 / 020-1"}
    person["phone_private"] = "06-12345678 / 020-1234567"
    for emails, phones in (({"marie@gmail.com"}, set()), (set(), {"+31201234567"}), ({"jan@ziggo.nl"}, set())):
        assert _person_matches(person, Target(dealer="d1", ids=set(), emails=emails, phones=phones))
    assert not _person_matches(person, Target(dealer="d1", ids=set(), emails={"piet@x.nl"}, phones={"+31687654321"}))
