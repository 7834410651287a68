"""Phones: the rules, and the fast path against the straightforward phonenumbers version (differential)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.normalise.phones import (
    candidates,
    fast_number,
    normalise_phone,
    normalise_phone_reference,
    reference_number,
)


@pytest.mark.parametrize(
    ("raw", "e164", "kind"),
    [
        ("06-12345678", "+31612345678", "mobile"),
        ("06 12 34 56 78", "+31612345678", "mobile"),
        ("+31612345678", "+31612345678", "mobile"),
        ("+31 (0)6 12345678", "+31612345678", "mobile"),
        ("0031 6 12345678", "+31612345678", "mobile"),
        ("020 - 123 45 67", "+31201234567", "landline"),
        ("010-1234567", "+31101234567", "landline"),
        ("088 123 4567", "+31881234567", "other"),
        ("+32 470 12 34 56", "+32470123456", "mobile"),
        ("0032 470 12 34 56", "+32470123456", "mobile"),
        # invalid as a Dutch national number, valid as a Belgian one
        ("0470 12 34 56", "+32470123456", "mobile"),
        ("03 201 23 45", "+3232012345", "landline"),
        ("03/201.23.45", "+3232012345", "landline"),
    ],
)
def test_valid_numbers_become_e164(raw: str, e164: str, kind: str) -> None:
    phone = normalise_phone(raw)
    assert (phone.e164, phone.kind) == (e164, kind)


@pytest.mark.parametrize(
    ("raw", "e164", "action"),
    [
        ("06-12345678 (werk)", "+31612345678", "text_removed"),
        ("werk: 06-12345678", "+31612345678", "text_removed"),
        ("mob. 06 1234 5678 / privé", "+31612345678", "text_removed"),
        ("06-12345678 of 020-1234567", "+31612345678", "text_removed"),
    ],
)
def test_text_around_the_number_never_becomes_digits(raw: str, e164: str, action: str) -> None:
    phone = normalise_phone(raw)
    assert phone.e164 == e164
    assert ("phone", action) in phone.fixes


def test_letters_are_not_read_as_vanity_digits() -> None:
    # phonenumbers alone would read "0800-FLOWERS"-style letters as digits.
    assert normalise_phone("06-1234 werk").e164 is None
    assert candidates("bel WERK") == []


@pytest.mark.parametrize("raw", ["", "-", "0", "n.v.t.", "NVT", "onbekend", "geen", "x", "0000000000", "00-000 0000"])
def test_placeholders_and_all_zero_numbers_become_null(raw: str) -> None:
    phone = normalise_phone(raw)
    assert phone.e164 is None
    assert ("placeholder", "nulled") in phone.fixes


@pytest.mark.parametrize("raw", ["06-1234", "12345", "+44 20 7946 0000 0000", "bellen via receptie", "+31 6 123"])
def test_invalid_numbers_become_null_with_a_note(raw: str) -> None:
    phone = normalise_phone(raw)
    assert phone.e164 is None
    assert phone.fixes[-1] == ("phone", "rejected")


def test_foreign_numbers_outside_nl_and_be_are_kept_when_valid() -> None:
    assert normalise_phone("+49 30 12345678").e164 == "+493012345678"


def test_none_is_none_without_notes() -> None:
    assert normalise_phone(None) == (None, None, ())


# --- differential: fast path == phonenumbers.parse + is_valid_number + format_number ---------------------------

_PREFIXES: tuple[str, ...] = (
    "0",
    "00",
    "+",
    "+31",
    "+31 ",
    "0031",
    "0031 ",
    "+32",
    "+32 ",
    "0032",
    "+31 (0)",
    "+32 (0)",
    "+310",
    "",
)
_PREFIXES += ("+44", "0044", "+49 ", "+3106", "00310", "+31-", "(0", "+", "000")
_SEPARATORS = ("", "", " ", "-", ".", "/", " - ")
_LEADING = ("6", "20", "10", "88", "85", "800", "900", "97", "4", "47", "2", "3", "9", "1", "66")
_SUFFIXES = ("", "", "", " (werk)", " privé", " of 020-1234567", " ", "x12", ";ext=3")


def _number(r: random.Random) -> str:
    digits = "".join(r.choice("0123456789") for _ in range(r.randint(1, 13)))
    if r.random() < 0.5:
        digits = r.choice(_LEADING) + digits
    cut = sorted(r.sample(range(1, max(2, len(digits))), k=min(r.randint(0, 3), max(0, len(digits) - 2))))
    parts = [digits[i:j] for i, j in zip([0, *cut], [*cut, len(digits)], strict=True)]
    return r.choice(_PREFIXES) + r.choice(_SEPARATORS).join(parts) + r.choice(_SUFFIXES)


CORPUS = [_number(random.Random(seed)) for seed in range(20_000)]


def test_differential_on_a_large_generated_corpus() -> None:
    mismatches = [raw for raw in CORPUS if normalise_phone(raw) != normalise_phone_reference(raw)]
    assert mismatches == []
    valid = sum(normalise_phone(raw).e164 is not None for raw in CORPUS)
    assert valid > len(CORPUS) // 10  # the corpus exercises the valid paths, not only rejections


def test_fast_number_agrees_with_phonenumbers_whenever_it_answers() -> None:
    answered = 0
    for raw in CORPUS:
        for span in candidates(raw):
            found = fast_number(span)
            if found is not False:
                answered += 1
                assert found == reference_number(span), span
    assert answered > len(CORPUS) // 2  # the fast path carries most of the work


@settings(max_examples=500)
@given(st.text(alphabet="0123456789 +-./()aAwerk", max_size=24))
def test_differential_on_hypothesis_strings(raw: str) -> None:
    assert normalise_phone(raw) == normalise_phone_reference(raw)


@given(st.text())
def test_no_exception_on_any_string(raw: str) -> None:
    phone = normalise_phone(raw)
    assert phone.e164 is None or phone.e164.startswith("+")


@given(st.one_of(st.sampled_from(CORPUS[:2000]), st.text(alphabet="0123456789 +-()", max_size=20)))
def test_idempotent(raw: str) -> None:
    once = normalise_phone(raw)
    twice = normalise_phone(once.e164)
    assert (twice.e164, twice.kind) == (once.e164, once.kind)
    assert twice.fixes == ()
